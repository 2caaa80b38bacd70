/* Command-line option parsing for armada: long options ("--name VALUE",
 * "--name=VALUE"), single-letter short ones ("-o json"), flags, and
 * positionals in any order, with "--" ending the options. The parser knows
 * which options take a value, so a value that looks like an option
 * ("--description --wait") is still taken as the value. */
#include "cli.h"

#include <string.h>

static const OptSpec *find_long(const OptSpec *const *specs, const char *name, size_t len) {
        for (size_t i = 0; specs[i]; i++)
                for (const OptSpec *o = specs[i]; o->name; o++)
                        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
                                return o;
        return NULL;
}

static const OptSpec *find_short(const OptSpec *const *specs, char c) {
        for (size_t i = 0; specs[i]; i++)
                for (const OptSpec *o = specs[i]; o->name; o++)
                        if (o->short_name && o->short_name == c)
                                return o;
        return NULL;
}

static void add_opt(Args *a, const char *name, const char *value) {
        a->opts = xrealloc(a->opts, (a->n_opts + 1) * sizeof *a->opts);
        a->opts[a->n_opts++] = (OptVal) { .name = name, .value = value };
}

static void add_pos(Args *a, const char *s) {
        a->pos = xrealloc(a->pos, (a->n_pos + 1) * sizeof *a->pos);
        a->pos[a->n_pos++] = s;
}

int args_parse(int argc, char **argv, const OptSpec *const *specs, Args *args) {
        bool only_pos = false;

        for (int i = 0; i < argc; i++) {
                const char *arg = argv[i];
                const OptSpec *o;
                const char *value = NULL;

                if (only_pos || arg[0] != '-' || arg[1] == 0) {
                        add_pos(args, arg);
                        continue;
                }
                if (streq(arg, "--")) {
                        only_pos = true;
                        continue;
                }
                if (arg[1] == '-') {
                        const char *name = arg + 2;
                        const char *eq = strchr(name, '=');
                        size_t len = eq ? (size_t) (eq - name) : strlen(name);
                        o = find_long(specs, name, len);
                        if (!o)
                                return fail("unknown option '--%.*s'; see 'armada --help'", (int) len, name);
                        if (eq) {
                                if (!o->has_arg)
                                        return fail("option '--%s' takes no value", o->name);
                                value = eq + 1;
                        }
                } else {
                        o = find_short(specs, arg[1]);
                        if (!o)
                                return fail("unknown option '%s'; see 'armada --help'", arg);
                        if (arg[2]) {
                                if (!o->has_arg)
                                        return fail("option '-%c' takes no value", arg[1]);
                                value = arg + 2;
                        }
                }
                if (o->has_arg && !value) {
                        if (i + 1 >= argc)
                                return fail("option '--%s' needs a value (%s)", o->name,
                                            o->arg_name ? o->arg_name : "VALUE");
                        value = argv[++i];
                }
                add_opt(args, o->name, value);
        }
        return 0;
}

const char *args_get(const Args *a, const char *name) {
        const char *v = NULL;
        for (size_t i = 0; i < a->n_opts; i++)
                if (streq(a->opts[i].name, name))
                        v = a->opts[i].value;
        return v;
}

bool args_has(const Args *a, const char *name) {
        for (size_t i = 0; i < a->n_opts; i++)
                if (streq(a->opts[i].name, name))
                        return true;
        return false;
}

const char **args_get_all(const Args *a, const char *name, size_t *ret_n) {
        const char **v = xcalloc(a->n_opts + 1, sizeof *v);
        size_t n = 0;
        for (size_t i = 0; i < a->n_opts; i++)
                if (streq(a->opts[i].name, name))
                        v[n++] = a->opts[i].value;
        *ret_n = n;
        return v;
}

void args_done(Args *a) {
        free(a->pos);
        free(a->opts);
        *a = (Args) {0};
}
