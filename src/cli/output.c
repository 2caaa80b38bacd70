/* Output helpers for armada: aligned tables, "Label: value" blocks, sizes and
 * times in human form, tolerant JSON field access and JSON pretty-printing.
 * Everything a server sends is treated as untrusted text: control characters
 * are replaced before they reach the terminal. */
#include "cli.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

int fail(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fputs("armada: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        return EXIT_ERROR;
}

int parse_count(const char *opt, const char *s, int64_t *ret) {
        int64_t v;
        if (parse_i64(s, &v) < 0 || v <= 0 || v > 1000000000)
                return fail("option '--%s' needs a positive whole number, not '%s'", opt, s);
        *ret = v;
        return 0;
}

int body_set_count(json_t *body, const char *key, const char *opt, const char *s) {
        int64_t n = 0;
        int r = parse_count(opt, s, &n);
        if (r)
                return r;
        json_object_set_new(body, key, json_integer(n));
        return 0;
}

/* Copies s, replacing control characters (and DEL) with '?' so that a
 * table stays aligned and no escape sequence reaches the terminal. */
static char *sanitize(const char *s) {
        char *r = xstrdup(s ? s : "-");
        for (unsigned char *p = (unsigned char *) r; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        *p = '?';
        return r;
}

/* Display width: counts UTF-8 lead bytes, not continuation bytes. */
static size_t display_width(const char *s) {
        size_t n = 0;
        for (; *s; s++)
                if (((unsigned char) *s & 0xc0) != 0x80)
                        n++;
        return n;
}

void outf(const char *fmt, ...) {
        va_list ap;
        char *s;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                abort();
        va_end(ap);
        _cleanup_free_ char *clean = sanitize(s);
        free(s);
        puts(clean);
}

Table *table_new(const char *first, ...) {
        Table *t = xcalloc(1, sizeof *t);
        va_list ap;
        va_start(ap, first);
        for (const char *h = first; h; h = va_arg(ap, const char *)) {
                t->headers = xrealloc(t->headers, (t->n_cols + 1) * sizeof *t->headers);
                t->right = xrealloc(t->right, (t->n_cols + 1) * sizeof *t->right);
                t->right[t->n_cols] = h[0] == '>';
                t->headers[t->n_cols] = xstrdup(h[0] == '>' ? h + 1 : h);
                t->n_cols++;
        }
        va_end(ap);
        assert(t->n_cols > 0);
        return t;
}

void table_add(Table *t, const char *s) {
        t->cells = xrealloc(t->cells, (t->n_cells + 1) * sizeof *t->cells);
        t->cells[t->n_cells++] = sanitize(s);
}

void table_addf(Table *t, const char *fmt, ...) {
        va_list ap;
        char *s;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        table_add(t, s);
        free(s);
}

void table_print(const Table *t, FILE *f) {
        _cleanup_free_ size_t *w = xcalloc(t->n_cols, sizeof *w);
        size_t n_rows = (t->n_cells + t->n_cols - 1) / t->n_cols;

        if (!t->no_header)
                for (size_t c = 0; c < t->n_cols; c++)
                        w[c] = display_width(t->headers[c]);
        for (size_t i = 0; i < t->n_cells; i++) {
                size_t dw = display_width(t->cells[i]);
                if (dw > w[i % t->n_cols])
                        w[i % t->n_cols] = dw;
        }
        for (size_t r = (t->no_header ? 1 : 0); r <= n_rows; r++) {
                for (size_t c = 0; c < t->n_cols; c++) {
                        const char *s;
                        if (r == 0)
                                s = t->headers[c];
                        else if ((r - 1) * t->n_cols + c < t->n_cells)
                                s = t->cells[(r - 1) * t->n_cols + c];
                        else
                                s = "";
                        size_t pad = w[c] - display_width(s);
                        bool last = c + 1 == t->n_cols;
                        if (c > 0)
                                fputs("  ", f);
                        if (t->right[c])
                                fprintf(f, "%*s%s", (int) pad, "", s);
                        else if (last)
                                fputs(s, f);
                        else
                                fprintf(f, "%s%*s", s, (int) pad, "");
                }
                fputc('\n', f);
        }
}

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_cols; i++)
                free(t->headers[i]);
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->headers);
        free(t->right);
        free(t->cells);
        free(t);
        return NULL;
}

Table *kv_new(void) {
        Table *t = table_new("KEY", "VALUE", NULL);
        t->no_header = true;
        return t;
}

void kv_add(Table *t, const char *label, const char *value) {
        table_addf(t, "%s:", label);
        table_add(t, value);
}

void fmt_bytes(uint64_t bytes, char out[32]) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
        double v = (double) bytes;
        size_t u = 0;
        while (v >= 1024.0 && u + 1 < ELEMENTSOF(units)) {
                v /= 1024.0;
                u++;
        }
        if (u == 0)
                snprintf(out, 32, "%llu B", (unsigned long long) bytes);
        else if (v < 10.0 && fmod(round(v * 10.0), 10.0) != 0.0)
                snprintf(out, 32, "%.1f %s", v, units[u]);
        else
                snprintf(out, 32, "%.0f %s", v, units[u]);
}

void fmt_time(const char *s, char out[64]) {
        int Y, M, D, h, m, sec, n = 0;
        if (!s) {
                snprintf(out, 64, "-");
                return;
        }
        if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &n) != 6 || n == 0)
                goto raw;
        const char *p = s + n;
        if (*p == '.')
                for (p++; *p >= '0' && *p <= '9'; p++)
                        ;
        long off = 0;
        if (*p == 'Z' || *p == 'z')
                p++;
        else if (*p == '+' || *p == '-') {
                int oh, om, k = 0;
                if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k == 0)
                        goto raw;
                off = (oh * 60L + om) * 60L * (*p == '-' ? -1 : 1);
                p += 1 + k;
        } else
                goto raw;
        if (*p)
                goto raw;
        struct tm tm = { .tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D,
                         .tm_hour = h, .tm_min = m, .tm_sec = sec };
        time_t t = timegm(&tm) - off;
        struct tm lt;
        if (!localtime_r(&t, &lt) || strftime(out, 64, "%Y-%m-%d %H:%M:%S", &lt) == 0)
                goto raw;
        return;
raw:
        snprintf(out, 64, "%s", s);
}

void fmt_time_of(json_t *o, const char *key, char out[64]) {
        json_t *v = json_object_get(o, key);
        if (json_is_integer(v)) {
                /* Milliseconds since the epoch, as some answers carry them. */
                char iso[32];
                time_format((int64_t) json_integer_value(v), iso);
                fmt_time(iso, out);
        } else
                fmt_time(json_string_value(v), out);
}

const char *jstr(json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

int64_t jint(json_t *o, const char *key, int64_t dflt) {
        json_t *v = json_object_get(o, key);
        if (json_is_integer(v))
                return (int64_t) json_integer_value(v);
        if (json_is_real(v))
                return (int64_t) json_real_value(v);
        return dflt;
}

char *jtext(json_t *o, const char *key) {
        json_t *v = json_object_get(o, key);
        switch (json_typeof(v)) {
        case JSON_STRING:
                return xstrdup(json_string_value(v));
        case JSON_INTEGER:
                return xasprintf("%lld", (long long) json_integer_value(v));
        case JSON_REAL:
                return xasprintf("%g", json_real_value(v));
        case JSON_TRUE:
                return xstrdup("true");
        case JSON_FALSE:
                return xstrdup("false");
        case JSON_OBJECT:
        case JSON_ARRAY: {
                char *s = json_dumps(v, JSON_COMPACT);
                return s ? s : xstrdup("?");
        }
        default:
                return NULL;
        }
}

void print_json(json_t *j) {
        if (!j)
                return;
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
        fputc('\n', stdout);
}
