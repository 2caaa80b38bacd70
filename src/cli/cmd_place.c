/* armada's placement commands: a host group's reserves, goal and weights
 * (group set-reserves, group show-policy), host ratings for a VM's demand
 * (vm rate) and placement rules (rule list/create/update/delete). */
#include "cli.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const WEIGHT_NAMES[] = { "cpu", "memory", "disk", "disk_io", "network" };

/* Whether the terminal's character set is UTF-8 (for the star glyphs). */
static bool utf8_locale(void) {
        const char *vars[] = { "LC_ALL", "LC_CTYPE", "LANG" };
        for (size_t i = 0; i < ELEMENTSOF(vars); i++) {
                const char *v = getenv(vars[i]);
                if (v && *v)
                        return strcasestr(v, "utf-8") || strcasestr(v, "utf8");
        }
        return false;
}

/* 0..5 stars in half steps: "★★★★½" ("****+" without UTF-8); empty
 * places as "☆" ("."). */
static void stars_text(double stars, char out[64]) {
        bool u = utf8_locale();
        int half = (int) (stars * 2 + 0.5);
        if (half < 0) half = 0;
        if (half > 10) half = 10;
        size_t k = 0;
        out[0] = 0;
        for (int i = 0; i < 5; i++) {
                const char *g = half >= 2 * (i + 1) ? (u ? "★" : "*") : half == 2 * i + 1 ? (u ? "½" : "+") : (u ? "☆" : ".");
                k += (size_t) snprintf(out + k, 64 - k, "%s", g);
        }
}

/* ---- group set-reserves / show-policy ---- */

/* A reserve option: a number, or "inherit" (null). */
static int reserve_value(const char *opt, const char *s, json_t **ret) {
        if (strcasecmp(s, "inherit") == 0) {
                *ret = json_null();
                return 0;
        }
        char *end = NULL;
        double v = strtod(s, &end);
        if (!*s || *end || v < 0)
                return fail("--%s needs a number of 0 or more, or 'inherit', not '%s'", opt, s);
        *ret = json_real(v);
        return 0;
}

/* "cpu=1,memory=2" into {"cpu":1,"memory":2}; "inherit" into null. */
static int parse_weights(const char *s, json_t **ret) {
        if (strcasecmp(s, "inherit") == 0) {
                *ret = json_null();
                return 0;
        }
        json_t *o = json_object();
        _cleanup_free_ char *copy = xstrdup(s);
        char *save = NULL;
        for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(item, '=');
                if (!eq) {
                        json_decref(o);
                        return fail("--weights needs RESOURCE=WEIGHT pairs such as 'cpu=1,memory=2', not '%s'", item);
                }
                *eq = 0;
                bool known = false;
                for (size_t i = 0; i < ELEMENTSOF(WEIGHT_NAMES); i++)
                        known = known || streq(item, WEIGHT_NAMES[i]);
                if (!known) {
                        json_decref(o);
                        return fail("--weights: unknown resource '%s'; the resources are cpu, memory, disk, disk_io, network", item);
                }
                char *end = NULL;
                double v = strtod(eq + 1, &end);
                if (!eq[1] || *end || v < 0) {
                        json_decref(o);
                        return fail("--weights: the weight of '%s' must be a number of 0 or more, not '%s'", item, eq + 1);
                }
                json_object_set_new(o, item, json_real(v));
        }
        *ret = o;
        return 0;
}

static int group_id_of(Ctx *c, const char *path, int64_t *ret) {
        _cleanup_free_ char *norm = group_path_normalize(path);
        if (!norm[0]) {
                *ret = 1; /* the root */
                return 0;
        }
        return resolve(c, "host-groups", "path", path, "host group", ret, NULL);
}

static void fmt_num(json_t *v, const char *unit, char out[64]) {
        if (!v || json_is_null(v)) {
                snprintf(out, 64, "-");
                return;
        }
        snprintf(out, 64, "%g%s%s", json_number_value(v), unit[0] ? " " : "", unit);
}

static int print_policy(Ctx *c, json_t *p) {
        if (c->output == OUTPUT_JSON) {
                print_json(p);
                return 0;
        }
        static const struct { const char *key, *label, *unit; } rows[] = {
                { "cpu_pct", "CPU reserve", "%" }, { "memory_mib", "memory reserve", "MiB" }, { "disk_gib", "disk reserve", "GiB" },
                { "disk_io_pct", "disk I/O reserve", "%" }, { "network_pct", "network reserve", "%" },
        };
        json_t *own = json_object_get(p, "own"), *eff = json_object_get(p, "effective");
        json_t *from = json_object_get(eff, "inherited_from");
        outf("Placement policy of host group '%s'", jstr(p, "group_path") ? jstr(p, "group_path") : "?");
        _cleanup_table_ Table *t = table_new("SETTING", ">EFFECTIVE", ">OWN", "FROM", NULL);
        char a[64], b[64];
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                table_add(t, rows[i].label);
                fmt_num(json_object_get(eff, rows[i].key), rows[i].unit, a);
                fmt_num(json_object_get(own, rows[i].key), rows[i].unit, b);
                table_add(t, a);
                table_add(t, b);
                table_add(t, jstr(from, rows[i].key));
        }
        table_add(t, "goal");
        table_add(t, jstr(eff, "goal"));
        table_add(t, jstr(own, "goal"));
        table_add(t, jstr(from, "goal"));
        for (size_t i = 0; i < ELEMENTSOF(WEIGHT_NAMES); i++) {
                table_addf(t, "weight %s", WEIGHT_NAMES[i]);
                fmt_num(json_object_get(json_object_get(eff, "weights"), WEIGHT_NAMES[i]), "", a);
                fmt_num(json_object_get(json_object_get(own, "weights"), WEIGHT_NAMES[i]), "", b);
                table_add(t, a);
                table_add(t, b);
                table_add(t, jstr(json_object_get(from, "weights"), WEIGHT_NAMES[i]));
        }
        table_print(t, stdout);
        return 0;
}

int cmd_group_set_reserves(Ctx *c, const Command *cmd, const Args *a) {
        static const struct { const char *opt, *field; } nums[] = {
                { "cpu", "cpu_pct" }, { "memory", "memory_mib" }, { "disk", "disk_gib" },
                { "disk-io", "disk_io_pct" }, { "network", "network_pct" },
        };
        _cleanup_json_ json_t *body = json_object();
        for (size_t i = 0; i < ELEMENTSOF(nums); i++) {
                const char *v = args_get(a, nums[i].opt);
                if (!v)
                        continue;
                json_t *j = NULL;
                if (reserve_value(nums[i].opt, v, &j))
                        return EXIT_ERROR;
                json_object_set_new(body, nums[i].field, j);
        }
        const char *goal = args_get(a, "goal");
        if (goal) {
                if (strcasecmp(goal, "inherit") == 0)
                        json_object_set_new(body, "goal", json_null());
                else if (streq(goal, "load-balancing") || streq(goal, "resource-maximization"))
                        json_object_set_new(body, "goal", json_string(goal));
                else
                        return fail("--goal must be 'load-balancing', 'resource-maximization' or 'inherit', not '%s'", goal);
        }
        const char *w = args_get(a, "weights");
        if (w) {
                json_t *j = NULL;
                if (parse_weights(w, &j))
                        return EXIT_ERROR;
                json_object_set_new(body, "weights", j);
        }
        if (json_object_size(body) == 0)
                return fail("group set-reserves needs at least one of --cpu, --memory, --disk, --disk-io, --network, --goal, --weights");
        int64_t id;
        int r = group_id_of(c, a->pos[0], &id);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/host-groups/%" PRId64 "/placement-policy", id);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "PUT", path, body, &reply);
        if (r)
                return r;
        return print_policy(c, reply);
}

int cmd_group_show_policy(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = group_id_of(c, a->pos[0], &id);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/host-groups/%" PRId64 "/placement-policy", id);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "GET", path, NULL, &reply);
        if (r)
                return r;
        return print_policy(c, reply);
}

/* ---- vm rate ---- */

int cmd_vm_rate(Ctx *c, const Command *cmd, const Args *a) {
        const char *cpus_s = args_get(a, "cpus"), *mem_s = args_get(a, "memory"), *disk = args_get(a, "disk");
        int64_t cpus = 1;
        uint64_t mem_bytes = 512ULL << 20, disk_bytes = 0;
        if (cpus_s && (parse_i64(cpus_s, &cpus) < 0 || cpus < 1 || cpus > 4096))
                return fail("--cpus must be a whole number from 1 to 4096, not '%s'", cpus_s);
        if (mem_s && (size_parse(mem_s, 1ULL << 20, &mem_bytes) < 0 || mem_bytes < (1ULL << 20) || mem_bytes % (1ULL << 20) != 0 ||
                      (mem_bytes >> 20) > INT32_MAX))
                return fail("--memory must be a number of MiB (or a size such as '4G'), not '%s'", mem_s);
        if (disk && size_parse(disk, 1ULL << 30, &disk_bytes) < 0)
                return fail("--disk must be a size such as '20G' or '512M', not '%s'", disk);
        const char *goal = args_get(a, "goal");
        if (goal && !streq(goal, "load-balancing") && !streq(goal, "resource-maximization"))
                return fail("--goal must be 'load-balancing' or 'resource-maximization', not '%s'", goal);
        _cleanup_json_ json_t *body = json_pack("{s:I, s:I, s:I}", "cpus", (json_int_t) cpus, "memory_mib",
                                                (json_int_t) (mem_bytes >> 20), "disk_bytes", (json_int_t) disk_bytes);
        if (args_get(a, "group"))
                json_object_set_new(body, "group", json_string(args_get(a, "group")));
        if (goal)
                json_object_set_new(body, "goal", json_string(goal));
        if (args_get(a, "name"))
                json_object_set_new(body, "name", json_string(args_get(a, "name")));
        const char *limit_s = args_get(a, "limit");
        int64_t limit = 0;
        if (limit_s && (parse_i64(limit_s, &limit) < 0 || limit < 1 || limit > 100000))
                return fail("--limit must be a whole number from 1 to 100000, not '%s'", limit_s);
        if (limit)
                json_object_set_new(body, "limit", json_integer(limit));
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", "/placement/ratings", body, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        json_t *items = json_object_get(reply, "items");
        if (json_array_size(items) == 0) {
                outf("No hosts in host group '%s'.", jstr(reply, "group") ? jstr(reply, "group") : "?");
                return 0;
        }
        _cleanup_table_ Table *t = table_new("HOST", ">RATING", "STARS", "REASON", NULL);
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
                char s[64];
                json_t *rv = json_object_get(it, "rating"), *sv = json_object_get(it, "stars");
                stars_text(json_number_value(sv), s);
                table_add(t, jstr(it, "host_name"));
                table_addf(t, "%.1f", json_number_value(rv));
                table_add(t, s);
                const char *reason = jstr(it, "reason");
                table_add(t, reason && *reason ? reason : "");
        }
        table_print(t, stdout);
        json_int_t total = json_integer_value(json_object_get(reply, "total"));
        if (total > (json_int_t) json_array_size(items))
                outf("(the best %zu of %lld hosts)", json_array_size(items), (long long) total);
        return 0;
}

/* ---- rules ---- */

static int rule_find(Ctx *c, const char *name, int64_t *ret) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/placement/rules", NULL, &reply);
        if (r)
                return r;
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(reply, "items"), i, it)
                if (jstr(it, "name") && streq(jstr(it, "name"), name)) {
                        *ret = jint(it, "id", 0);
                        return 0;
                }
        return fail("no placement rule named '%s'", name);
}

static json_t *vms_array(const char *list) {
        json_t *arr = json_array();
        _cleanup_free_ char *copy = xstrdup(list);
        char *save = NULL;
        for (char *v = strtok_r(copy, ",", &save); v; v = strtok_r(NULL, ",", &save)) {
                while (isspace((unsigned char) *v)) v++;
                if (*v)
                        json_array_append_new(arr, json_string(v));
        }
        return arr;
}

static void rule_row(Table *t, json_t *it) {
        table_add(t, jstr(it, "name"));
        table_add(t, jstr(it, "kind"));
        StrBuf b = {0};
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(it, "vms"), i, v)
                strbuf_printf(&b, "%s%s", i ? "," : "", json_string_value(v) ? json_string_value(v) : "?");
        table_add(t, b.s ? b.s : "");
        strbuf_free(&b);
}

int cmd_rule_list(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/placement/rules", NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        _cleanup_table_ Table *t = table_new("NAME", "KIND", "VMS", NULL);
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(reply, "items"), i, it)
                rule_row(t, it);
        table_print(t, stdout);
        return 0;
}

static int print_rule(Ctx *c, json_t *rule) {
        if (c->output == OUTPUT_JSON) {
                print_json(rule);
                return 0;
        }
        _cleanup_table_ Table *t = table_new("NAME", "KIND", "VMS", NULL);
        rule_row(t, rule);
        table_print(t, stdout);
        return 0;
}

int cmd_rule_create(Ctx *c, const Command *cmd, const Args *a) {
        const char *kind = args_get(a, "kind"), *vms = args_get(a, "vms");
        if (!kind || !vms)
                return fail("rule create needs --kind anti-affinity|affinity and --vms VM1,VM2");
        if (!streq(kind, "anti-affinity") && !streq(kind, "affinity"))
                return fail("--kind must be 'anti-affinity' or 'affinity', not '%s'", kind);
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s, s:o}", "name", a->pos[0], "kind", kind, "vms", vms_array(vms));
        if (!body)
                return fail("arguments must be valid UTF-8");
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", "/placement/rules", body, &reply);
        if (r)
                return r;
        return print_rule(c, reply);
}

int cmd_rule_update(Ctx *c, const Command *cmd, const Args *a) {
        const char *vms = args_get(a, "vms");
        if (!vms)
                return fail("rule update needs --vms VM1,VM2 (the rule's new members)");
        int64_t id;
        int r = rule_find(c, a->pos[0], &id);
        if (r)
                return r;
        _cleanup_json_ json_t *body = json_pack("{s:o}", "vms", vms_array(vms));
        _cleanup_free_ char *path = xasprintf("/placement/rules/%" PRId64, id);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "PATCH", path, body, &reply);
        if (r)
                return r;
        return print_rule(c, reply);
}

int cmd_rule_delete(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = rule_find(c, a->pos[0], &id);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/placement/rules/%" PRId64, id);
        r = api_call(c, "DELETE", path, NULL, NULL);
        if (r)
                return r;
        if (c->output == OUTPUT_TABLE)
                outf("placement rule '%s' deleted", a->pos[0]);
        return 0;
}

/* ---- plan consolidate ---- */

int cmd_plan_consolidate(Ctx *c, const Command *cmd, const Args *a) {
        const char *file = a->pos[0];
        json_error_t err;
        _cleanup_json_ json_t *body = streq(file, "-") ? json_loadf(stdin, 0, &err) : json_load_file(file, 0, &err);
        if (!body)
                return fail("cannot read the plan '%s': %s (line %d)", file, err.text, err.line);
        if (json_is_array(body)) {
                /* A bare list of servers: the host model comes from the options. */
                json_t *servers = steal_ptr(body);
                body = json_pack("{s:o, s:{}}", "servers", servers, "host");
        }
        json_t *host = json_object_get(body, "host");
        if (!json_is_object(host))
                return fail("the plan '%s' needs a \"host\" object (or --host-cpus and --host-memory)", file);
        static const struct { const char *opt, *key; } opts[] = {
                { "host-cpus", "cpus" }, { "host-memory", "memory_mib" }, { "host-disk", "disk_gib" },
        };
        for (size_t i = 0; i < ELEMENTSOF(opts); i++) {
                const char *v = args_get(a, opts[i].opt);
                if (!v)
                        continue;
                char *end = NULL;
                double x = strtod(v, &end);
                if (!*v || *end || x < 0)
                        return fail("--%s needs a number of 0 or more, not '%s'", opts[i].opt, v);
                json_object_set_new(host, opts[i].key, json_real(x));
        }
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", "/placement/consolidation", body, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        int64_t n_hosts = jint(reply, "hosts_used", 0);
        outf("%" PRId64 " host%s needed (lower bound %" PRId64 ")%s", n_hosts, n_hosts == 1 ? "" : "s", jint(reply, "lower_bound", 0),
             json_array_size(json_object_get(reply, "unplaceable")) ? "; some servers fit no host" : "");
        _cleanup_table_ Table *t = table_new(">HOST", ">CPU", ">MEMORY MIB", ">DISK GIB", "SERVERS", NULL);
        size_t i;
        json_t *h;
        json_array_foreach(json_object_get(reply, "hosts"), i, h) {
                json_t *used = json_object_get(h, "used");
                table_addf(t, "%" PRId64, jint(h, "host", 0));
                table_addf(t, "%g", json_number_value(json_object_get(used, "cpu")));
                table_addf(t, "%g", json_number_value(json_object_get(used, "memory_mib")));
                table_addf(t, "%g", json_number_value(json_object_get(used, "disk_gib")));
                StrBuf b = {0};
                size_t k;
                json_t *s;
                json_array_foreach(json_object_get(h, "servers"), k, s)
                        strbuf_printf(&b, "%s%s", k ? "," : "", json_string_value(s) ? json_string_value(s) : "?");
                table_add(t, b.s ? b.s : "");
                strbuf_free(&b);
        }
        table_print(t, stdout);
        json_array_foreach(json_object_get(reply, "unplaceable"), i, h)
                outf("server '%s' does not fit an empty host", json_string_value(h) ? json_string_value(h) : "?");
        return 0;
}
