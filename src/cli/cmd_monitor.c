/* armada perf, health, alert, alert-rule, webhook and assess commands: the
 * monitoring side of Armada (performance series, the health tree, alerts
 * and their rules, webhooks, and the consolidation assessment). */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <time.h>

/* "90", "90s", "15m", "1h", "7d" -> seconds. EXIT_ERROR after printing. */
static int parse_duration(const char *opt, const char *s, int64_t *ret) {
        char *end;
        double v = strtod(s, &end);
        int64_t mult = 1;
        if (end == s || v < 0 || !isfinite(v))
                goto bad;
        if (streq(end, "") || streq(end, "s")) mult = 1;
        else if (streq(end, "m")) mult = 60;
        else if (streq(end, "h")) mult = 3600;
        else if (streq(end, "d")) mult = 86400;
        else goto bad;
        *ret = (int64_t) (v * (double) mult);
        return 0;
bad:
        return fail("--%s must be a duration such as 90s, 15m, 1h or 7d, not '%s'", opt, s);
}

static void add_time_ms(Table *t, int64_t ms) {
        time_t s = (time_t) (ms / 1000);
        struct tm tm;
        char buf[32];
        localtime_r(&s, &tm);
        strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
        table_add(t, buf);
}

static void add_value(Table *t, json_t *v, const char *unit) {
        if (!json_is_number(v)) {
                table_add(t, NULL);
                return;
        }
        double x = json_number_value(v);
        if (unit && streq(unit, "bytes/s")) {
                char b[32];
                fmt_bytes((uint64_t) (x < 0 ? 0 : x), b);
                table_addf(t, "%s/s", b);
        } else if (unit && streq(unit, "percent"))
                table_addf(t, "%.1f%%", x);
        else if (unit && streq(unit, "MiB"))
                table_addf(t, "%.0f MiB", x);
        else
                table_addf(t, "%.1f", x);
}

/* ---- perf ---- */

/* One metric's series: a row per time with its average and maximum. */
static void perf_print_one(json_t *reply, json_t *s, bool host, const char *name) {
        const char *unit = jstr(s, "unit");
        _cleanup_table_ Table *t = table_new("TIME", ">AVG", ">MAX", NULL);
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(s, "points"), i, p) {
                add_time_ms(t, jint(p, "t", 0));
                add_value(t, json_object_get(p, "avg"), unit);
                add_value(t, json_object_get(p, "max"), unit);
        }
        outf("%s of %s '%s' (%s, step %" PRId64 " s, tier %s):", jstr(s, "metric"), host ? "host" : "VM", name,
             unit ? unit : "", jint(reply, "step_ms", 0) / 1000, jstr(reply, "tier") ? jstr(reply, "tier") : "?");
        table_print(t, stdout);
}

/* Several metrics: one row per time, one column (the average) per metric
 * that has points. */
static void perf_print_many(json_t *reply, json_t *series, bool host, const char *name) {
        size_t ns = json_array_size(series);
        json_t *cols = json_array();
        for (size_t i = 0; i < ns; i++)
                if (json_array_size(json_object_get(json_array_get(series, i), "points")))
                        json_array_append(cols, json_array_get(series, i));
        size_t nc = json_array_size(cols);
        /* table_new takes its headers as arguments: at most ten metrics. */
        const char *h[12] = { "TIME" };
        char hdr[12][40];
        for (size_t k = 0; k < nc && k < 10; k++) {
                json_t *s = json_array_get(cols, k);
                snprintf(hdr[k], sizeof hdr[k], ">%s", jstr(s, "metric"));
                h[k + 1] = hdr[k];
        }
        size_t ncols = nc < 10 ? nc : 10;
        Table *t = table_new(h[0], ncols > 0 ? h[1] : NULL, ncols > 1 ? h[2] : NULL, ncols > 2 ? h[3] : NULL, ncols > 3 ? h[4] : NULL,
                      ncols > 4 ? h[5] : NULL, ncols > 5 ? h[6] : NULL, ncols > 6 ? h[7] : NULL, ncols > 7 ? h[8] : NULL,
                      ncols > 8 ? h[9] : NULL, ncols > 9 ? h[10] : NULL, NULL);
        /* Times: the union of every column's, in order (each is sorted). */
        size_t *pos = xcalloc(ncols + 1, sizeof *pos);
        for (;;) {
                int64_t next = INT64_MAX;
                for (size_t k = 0; k < ncols; k++) {
                        json_t *pts = json_object_get(json_array_get(cols, k), "points");
                        if (pos[k] < json_array_size(pts)) {
                                int64_t tt = jint(json_array_get(pts, pos[k]), "t", 0);
                                if (tt < next) next = tt;
                        }
                }
                if (next == INT64_MAX)
                        break;
                add_time_ms(t, next);
                for (size_t k = 0; k < ncols; k++) {
                        json_t *s = json_array_get(cols, k), *pts = json_object_get(s, "points");
                        json_t *p = pos[k] < json_array_size(pts) ? json_array_get(pts, pos[k]) : NULL;
                        if (p && jint(p, "t", 0) == next) {
                                add_value(t, json_object_get(p, "avg"), jstr(s, "unit"));
                                pos[k]++;
                        } else
                                table_add(t, NULL);
                }
        }
        outf("%s '%s', averages per %" PRId64 " s (tier %s):", host ? "host" : "VM", name, jint(reply, "step_ms", 0) / 1000,
             jstr(reply, "tier") ? jstr(reply, "tier") : "?");
        table_print(t, stdout);
        table_free(t);
        free(pos);
        json_decref(cols);
}

int cmd_perf_show(Ctx *c, const Command *cmd, const Args *a) {
        const char *name = a->pos[0];
        bool host = args_has(a, "host");
        int64_t id, last = 3600, step = 0;
        int r;
        if (args_get(a, "last") && (r = parse_duration("last", args_get(a, "last"), &last)))
                return r;
        if (args_get(a, "step") && (r = parse_duration("step", args_get(a, "step"), &step)))
                return r;
        if (last <= 0)
                return fail("--last must be longer than 0 seconds");
        r = resolve(c, host ? "hosts" : "vms", "name", name, host ? "host" : "VM", &id, NULL);
        if (r)
                return r;
        StrBuf b = {0};
        strbuf_printf(&b, "/metrics/%s/%" PRId64, host ? "host" : "vm", id);
        char num[32];
        snprintf(num, sizeof num, "%" PRId64, last);
        query_add(c, &b, "last", num);
        if (step) {
                snprintf(num, sizeof num, "%" PRId64, step);
                query_add(c, &b, "step", num);
        }
        if (args_get(a, "metric"))
                query_add(c, &b, "metric", args_get(a, "metric"));
        _cleanup_free_ char *path = strbuf_steal(&b);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "GET", path, NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        json_t *series = json_object_get(reply, "series");
        size_t ns = json_array_size(series), total = 0;
        for (size_t i = 0; i < ns; i++)
                total += json_array_size(json_object_get(json_array_get(series, i), "points"));
        if (total == 0)
                outf("no samples of %s '%s' in the last %" PRId64 " s (Armada samples every host and VM it can reach)",
                     host ? "host" : "VM", name, last);
        else if (ns == 1)
                perf_print_one(reply, json_array_get(series, 0), host, name);
        else
                perf_print_many(reply, series, host, name);
        return 0;
}

/* ---- health ---- */

static void health_print(json_t *n, int depth, Table *t) {
        const char *kind = jstr(n, "kind");
        _cleanup_free_ char *name = xasprintf("%*s%s %s", depth * 2, "", streq(kind ? kind : "", "vm") ? "VM" : kind ? kind : "?",
                                              jstr(n, "name") ? jstr(n, "name") : "?");
        table_add(t, name);
        table_add(t, jstr(n, "health"));
        json_t *reasons = json_object_get(n, "reasons");
        StrBuf b = {0};
        size_t i;
        json_t *r;
        json_array_foreach(reasons, i, r)
                if (json_is_string(r))
                        strbuf_printf(&b, "%s%s", b.len ? "; " : "", json_string_value(r));
        _cleanup_free_ char *why = strbuf_steal(&b);
        table_add(t, *why ? why : NULL);
        json_array_foreach(json_object_get(n, "children"), i, r)
                health_print(r, depth + 1, t);
}

int cmd_health(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/health", NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        _cleanup_table_ Table *t = table_new("OBJECT", "HEALTH", "REASONS", NULL);
        health_print(reply, 0, t);
        table_print(t, stdout);
        return 0;
}

/* ---- alerts ---- */

int cmd_alert_list(Ctx *c, const Command *cmd, const Args *a) {
        const char *state = args_get(a, "state");
        if (state && !streq(state, "open") && !streq(state, "resolved") && !streq(state, "all"))
                return fail("--state must be open, resolved or all, not '%s'", state);
        StrBuf b = {0};
        strbuf_append(&b, "/alerts");
        query_add(c, &b, "state", state ? state : "open");
        _cleanup_free_ char *path = strbuf_steal(&b);
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", path, NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        _cleanup_table_ Table *t = table_new(">ID", "SEVERITY", "STATE", "ACK", "RULE", "OBJECT", "OPENED", "MESSAGE", NULL);
        size_t i;
        json_t *al;
        json_array_foreach(json_object_get(reply, "items"), i, al) {
                char buf[64];
                table_addf(t, "%" PRId64, jint(al, "id", 0));
                table_add(t, jstr(al, "severity"));
                table_add(t, jstr(al, "state"));
                table_add(t, json_is_true(json_object_get(al, "acknowledged")) ? jstr(al, "acknowledged_by") : "no");
                table_add(t, jstr(al, "rule_name"));
                table_addf(t, "%s %s", jstr(al, "object_kind") ? jstr(al, "object_kind") : "?",
                           jstr(al, "object_name") ? jstr(al, "object_name") : "?");
                fmt_time_of(al, "opened_at", buf);
                table_add(t, buf);
                table_add(t, jstr(al, "message"));
        }
        table_print(t, stdout);
        return 0;
}

int cmd_alert_ack(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        if (parse_i64(a->pos[0], &id) < 0 || id <= 0)
                return fail("'%s' is not an alert id (a positive whole number, as in 'armada alert list')", a->pos[0]);
        _cleanup_free_ char *path = xasprintf("/alerts/%" PRId64 "/actions/acknowledge", id);
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", path, NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON)
                print_json(reply);
        else
                outf("alert %" PRId64 " acknowledged", id);
        return 0;
}

/* ---- alert rules ---- */

int cmd_alert_rule_list(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/alert-rules", NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        _cleanup_table_ Table *t = table_new("NAME", "ON", "CONDITION", ">FOR", "SEVERITY", "SCOPE", "ENABLED", NULL);
        size_t i;
        json_t *ru;
        json_array_foreach(json_object_get(reply, "items"), i, ru) {
                table_add(t, jstr(ru, "name"));
                table_add(t, jstr(ru, "object_kind"));
                if (streq(jstr(ru, "metric") ? jstr(ru, "metric") : "", "state"))
                        table_addf(t, "state %s %s", jstr(ru, "comparison"), jstr(ru, "state_value") ? jstr(ru, "state_value") : "?");
                else
                        table_addf(t, "%s %s %g", jstr(ru, "metric"), jstr(ru, "comparison"),
                                   json_number_value(json_object_get(ru, "threshold")));
                table_addf(t, "%" PRId64 " s", jint(ru, "duration_s", 0));
                table_add(t, jstr(ru, "severity"));
                if (streq(jstr(ru, "scope") ? jstr(ru, "scope") : "all", "all"))
                        table_add(t, "all");
                else
                        table_addf(t, "%s %" PRId64, jstr(ru, "scope"), jint(ru, "scope_id", 0));
                table_add(t, json_is_true(json_object_get(ru, "enabled")) ? "yes" : "no");
        }
        table_print(t, stdout);
        return 0;
}

int cmd_alert_rule_create(Ctx *c, const Command *cmd, const Args *a) {
        const char *kind = args_get(a, "on"), *metric = args_get(a, "metric"), *cmp = args_get(a, "comparison");
        if (!kind || !metric || !cmp)
                return fail("alert-rule create needs --on host|vm, --metric METRIC and --comparison OP");
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "name", a->pos[0], "object_kind", kind, "metric", metric,
                                                "comparison", cmp);
        if (!body)
                return fail("arguments must be valid UTF-8");
        int r;
        const char *v;
        if ((v = args_get(a, "threshold"))) {
                char *end;
                double x = strtod(v, &end);
                if (end == v || *end || !isfinite(x))
                        return fail("--threshold must be a number, not '%s'", v);
                json_object_set_new(body, "threshold", json_real(x));
        }
        if ((v = args_get(a, "state")))
                json_object_set_new(body, "state", json_string(v));
        if ((v = args_get(a, "severity")))
                json_object_set_new(body, "severity", json_string(v));
        if ((v = args_get(a, "for"))) {
                int64_t secs;
                if ((r = parse_duration("for", v, &secs)))
                        return r;
                json_object_set_new(body, "duration_s", json_integer(secs));
        }
        if ((v = args_get(a, "group"))) {
                int64_t gid;
                if ((r = resolve(c, "host-groups", "path", v, "host group", &gid, NULL)))
                        return r;
                json_object_set_new(body, "scope", json_string("group"));
                json_object_set_new(body, "scope_id", json_integer(gid));
        } else if ((v = args_get(a, "object"))) {
                int64_t oid;
                bool vm = streq(kind, "vm");
                if ((r = resolve(c, vm ? "vms" : "hosts", "name", v, vm ? "VM" : "host", &oid, NULL)))
                        return r;
                json_object_set_new(body, "scope", json_string("object"));
                json_object_set_new(body, "scope_id", json_integer(oid));
        }
        if ((v = args_get(a, "description")))
                json_object_set_new(body, "description", json_string(v));
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "POST", "/alert-rules", body, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON)
                print_json(reply);
        else
                outf("alert rule '%s' created", a->pos[0]);
        return 0;
}

static int rule_toggle(Ctx *c, const Args *a, bool enabled) {
        int64_t id;
        int r = resolve(c, "alert-rules", "name", a->pos[0], "alert rule", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/alert-rules/%" PRId64, id);
        _cleanup_json_ json_t *body = json_pack("{s:b}", "enabled", enabled);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "PATCH", path, body, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON)
                print_json(reply);
        else
                outf("alert rule '%s' %s", a->pos[0], enabled ? "enabled" : "disabled");
        return 0;
}
int cmd_alert_rule_enable(Ctx *c, const Command *cmd, const Args *a) { return rule_toggle(c, a, true); }
int cmd_alert_rule_disable(Ctx *c, const Command *cmd, const Args *a) { return rule_toggle(c, a, false); }

int cmd_alert_rule_delete(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "alert-rules", "name", a->pos[0], "alert rule", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/alert-rules/%" PRId64, id);
        r = api_call(c, "DELETE", path, NULL, NULL);
        if (r)
                return r;
        if (c->output == OUTPUT_TABLE)
                outf("alert rule '%s' deleted", a->pos[0]);
        return 0;
}

/* ---- webhooks ---- */

int cmd_webhook_list(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/webhooks", NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        _cleanup_table_ Table *t = table_new(">ID", "URL", "LAST STATUS", ">PENDING", ">DELIVERED", ">FAILED", "DESCRIPTION", NULL);
        size_t i;
        json_t *w;
        json_array_foreach(json_object_get(reply, "items"), i, w) {
                table_addf(t, "%" PRId64, jint(w, "id", 0));
                table_add(t, jstr(w, "url"));
                table_add(t, jstr(w, "last_status"));
                table_addf(t, "%" PRId64, jint(w, "pending", 0));
                table_addf(t, "%" PRId64, jint(w, "delivered", 0));
                table_addf(t, "%" PRId64, jint(w, "failed", 0));
                table_add(t, jstr(w, "description"));
        }
        table_print(t, stdout);
        return 0;
}

int cmd_webhook_add(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *body = json_pack("{s:s}", "url", a->pos[0]);
        if (!body)
                return fail("the URL must be valid UTF-8");
        if (args_get(a, "description"))
                json_object_set_new(body, "description", json_string(args_get(a, "description")));
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", "/webhooks", body, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON)
                print_json(reply);
        else
                outf("webhook %" PRId64 " added: %s", jint(reply, "id", 0), a->pos[0]);
        return 0;
}

int cmd_webhook_delete(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        if (parse_i64(a->pos[0], &id) < 0 || id <= 0)
                return fail("'%s' is not a webhook id (a positive whole number, as in 'armada webhook list')", a->pos[0]);
        _cleanup_free_ char *path = xasprintf("/webhooks/%" PRId64, id);
        int r = api_call(c, "DELETE", path, NULL, NULL);
        if (r)
                return r;
        if (c->output == OUTPUT_TABLE)
                outf("webhook %" PRId64 " deleted", id);
        return 0;
}

/* ---- consolidation assessment ---- */

int cmd_assess_add(Ctx *c, const Command *cmd, const Args *a) {
        const char *url = args_get(a, "node-exporter"), *ssh = args_get(a, "ssh");
        if (!url && !ssh)
                return fail("assess add needs --node-exporter URL (the server's node_exporter, e.g. http://%s:9100)", a->pos[0]);
        _cleanup_json_ json_t *body = json_pack("{s:s}", "name", a->pos[0]);
        if (url)
                json_object_set_new(body, "node_exporter", json_string(url));
        if (ssh)
                json_object_set_new(body, "ssh", json_string(ssh));
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", "/assessments", body, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON)
                print_json(reply);
        else
                outf("server '%s' added to the assessment; it is sampled from %s", a->pos[0], jstr(reply, "url") ? jstr(reply, "url") : url);
        return 0;
}

int cmd_assess_list(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/assessments", NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        _cleanup_table_ Table *t = table_new("NAME", "SOURCE", ">CPUS", ">MEMORY", ">SAMPLES", "LAST SAMPLE", "ERROR", NULL);
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(reply, "items"), i, s) {
                char buf[64];
                table_add(t, jstr(s, "name"));
                table_add(t, jstr(s, "url"));
                table_addf(t, "%" PRId64, jint(s, "cpus", 0));
                fmt_bytes((uint64_t) (json_number_value(json_object_get(s, "memory_mib")) * 1048576.0), buf);
                table_add(t, buf);
                table_addf(t, "%" PRId64, jint(s, "samples", 0));
                fmt_time_of(s, "last_sample_at", buf);
                table_add(t, buf);
                table_add(t, jstr(s, "last_error"));
        }
        table_print(t, stdout);
        return 0;
}

int cmd_assess_remove(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "assessments", "name", a->pos[0], "assessed server", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/assessments/%" PRId64, id);
        r = api_call(c, "DELETE", path, NULL, NULL);
        if (r)
                return r;
        if (c->output == OUTPUT_TABLE)
                outf("server '%s' removed from the assessment", a->pos[0]);
        return 0;
}

static void add_stat(Table *t, json_t *s, const char *key, int decimals) {
        json_t *v = json_object_get(s, key);
        if (!json_is_object(v)) {
                table_add(t, NULL);
                return;
        }
        char a[24], b[24];
        snprintf(a, sizeof a, "%.*f", decimals, json_number_value(json_object_get(v, "mean")));
        snprintf(b, sizeof b, "%.*f", decimals, json_number_value(json_object_get(v, "p95")));
        table_addf(t, "%s / %s", a, b);
}

int cmd_assess_report(Ctx *c, const Command *cmd, const Args *a) {
        StrBuf b = {0};
        strbuf_append(&b, "/assessments/report");
        static const struct { const char *opt, *query; } Q[] = {
                { "host-cpus", "host_cpus" }, { "host-memory-mib", "host_memory_mib" }, { "host-disk-iops", "host_disk_iops" },
                { "host-network-mbit", "host_network_mbit" }, { "reserve-cpu-pct", "reserve_cpu_pct" },
                { "reserve-memory-mib", "reserve_memory_mib" },
        };
        for (size_t i = 0; i < ELEMENTSOF(Q); i++)
                if (args_get(a, Q[i].opt))
                        query_add(c, &b, Q[i].query, args_get(a, Q[i].opt));
        if (args_get(a, "window")) {
                int64_t secs;
                int r = parse_duration("window", args_get(a, "window"), &secs);
                if (r) {
                        strbuf_free(&b);
                        return r;
                }
                char num[32];
                snprintf(num, sizeof num, "%" PRId64, secs);
                query_add(c, &b, "window_s", num);
        }
        _cleanup_free_ char *path = strbuf_steal(&b);
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", path, NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        json_t *plan = json_object_get(reply, "plan");
        if (json_array_size(json_object_get(reply, "leaderboard")) == 0) {
                outf("no server in the assessment has samples in the window yet ('armada assess list' shows them)");
                return 0;
        }
        _cleanup_table_ Table *t = table_new(">RANK", "SERVER", ">CPUS", "CPU % MEAN/P95", "MEMORY MIB MEAN/P95", "DISK IOPS MEAN/P95",
                                             "NET MBIT MEAN/P95", "SPIKY", ">TARGET HOST", NULL);
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(reply, "leaderboard"), i, s) {
                table_addf(t, "%" PRId64, jint(s, "rank", 0));
                table_add(t, jstr(s, "name"));
                table_addf(t, "%" PRId64, jint(s, "cpus", 0));
                add_stat(t, s, "cpu_pct", 1);
                add_stat(t, s, "memory_used_mib", 0);
                add_stat(t, s, "disk_iops", 0);
                add_stat(t, s, "net_mbit", 1);
                table_add(t, json_is_true(json_object_get(s, "spiky")) ? "SPIKY" : "steady");
                json_t *h = json_object_get(s, "plan_host");
                if (json_is_integer(h))
                        table_addf(t, "%" PRId64, (int64_t) json_integer_value(h));
                else
                        table_add(t, "does not fit");
        }
        table_print(t, stdout);
        /* outf() turns control characters into '?': the blank line goes on its own. */
        putchar('\n');
        outf("Consolidation plan: %" PRId64 " host(s) needed; lower bound %" PRId64 "; %" PRId64 " server(s) too big for one host.",
             jint(plan, "hosts_needed", 0), jint(plan, "lower_bound", 0), jint(plan, "unplaceable", 0));
        json_t *nd = json_object_get(reply, "no_data");
        if (json_array_size(nd) > 0) {
                StrBuf names = {0};
                json_array_foreach(nd, i, s)
                        strbuf_printf(&names, "%s'%s'", i ? ", " : "", json_string_value(s) ? json_string_value(s) : "?");
                _cleanup_free_ char *n = strbuf_steal(&names);
                outf("Not sampled yet (left out): %s.", n);
        }
        return 0;
}
