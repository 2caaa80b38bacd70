/* The monitor's pure arithmetic (see the second half of monitor.h): rates
 * from counters, rollup accumulators, retention and tier choice,
 * re-bucketing, percentiles, rule steps, health words, the Prometheus text
 * format and node_exporter's. No I/O. */
#include "monitor.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void mon_retention_defaults(MonRetention *r) {
        if (r->raw_ms <= 0) r->raw_ms = 24 * 3600 * 1000LL;
        if (r->rollup_5m_ms <= 0) r->rollup_5m_ms = 30 * 24 * 3600 * 1000LL;
        if (r->rollup_1h_ms <= 0) r->rollup_1h_ms = 365 * 24 * 3600 * 1000LL;
}

double mon_rate(uint64_t prev, int64_t prev_at, uint64_t cur, int64_t cur_at, int64_t max_gap_ms) {
        if (prev_at <= 0 || cur_at <= prev_at || (max_gap_ms > 0 && cur_at - prev_at > max_gap_ms) || cur < prev)
                return NAN;
        return (double) (cur - prev) * 1000.0 / (double) (cur_at - prev_at);
}

double mon_cpu_pct(uint64_t prev_ns, int64_t prev_at, uint64_t cur_ns, int64_t cur_at, unsigned ncpus, int64_t max_gap_ms) {
        if (ncpus == 0)
                return NAN;
        double ns_per_s = mon_rate(prev_ns, prev_at, cur_ns, cur_at, max_gap_ms);
        if (isnan(ns_per_s))
                return NAN;
        double pct = ns_per_s / 1e9 / ncpus * 100.0;
        return pct > 100.0 ? 100.0 : pct;
}

double mon_busy_pct(uint64_t prev_total, uint64_t prev_idle, uint64_t cur_total, uint64_t cur_idle) {
        if (cur_total <= prev_total || cur_idle < prev_idle)
                return NAN;
        double total = (double) (cur_total - prev_total), idle = (double) (cur_idle - prev_idle);
        double pct = (1.0 - idle / total) * 100.0;
        return pct < 0 ? 0 : pct > 100 ? 100 : pct;
}

void mon_agg_add(MonAgg *a, const double v[STORE_PERF__COUNT]) {
        a->samples++;
        for (int m = 0; m < STORE_PERF__COUNT; m++) {
                if (!isfinite(v[m]))
                        continue;
                if (a->n[m] == 0 || v[m] > a->max[m])
                        a->max[m] = v[m];
                a->sum[m] += v[m];
                a->n[m]++;
        }
}

void mon_agg_result(const MonAgg *a, StorePerfRollup *out) {
        out->n = a->samples;
        for (int m = 0; m < STORE_PERF__COUNT; m++) {
                out->avg[m] = a->n[m] ? a->sum[m] / a->n[m] : NAN;
                out->max[m] = a->n[m] ? a->max[m] : NAN;
        }
}

int64_t mon_bucket(int64_t at, int64_t step) {
        return step > 0 ? at - at % step : at;
}

void mon_retention_cutoffs(const MonRetention *r, int64_t now, int64_t out[3]) {
        out[STORE_TIER_RAW] = now - r->raw_ms;
        out[STORE_TIER_5M] = now - r->rollup_5m_ms;
        out[STORE_TIER_1H] = now - r->rollup_1h_ms;
}

StorePerfTier mon_tier_for(const MonRetention *r, int64_t now, int64_t from, int64_t step) {
        /* A few minutes' slack, so that "the last 24 hours" asked a moment
         * ago still reads the raw tier (its oldest minutes may be pruned). */
        const int64_t slack = MON_STEP_5M_MS;
        if (step < MON_STEP_5M_MS && from >= now - r->raw_ms - slack)
                return STORE_TIER_RAW;
        if (step < MON_STEP_1H_MS && from >= now - r->rollup_5m_ms - slack)
                return STORE_TIER_5M;
        return STORE_TIER_1H;
}

size_t mon_downsample(const StorePerfPoint *in, size_t n, int64_t step, StorePerfPoint *out) {
        size_t k = 0;
        double wsum = 0;
        int64_t wn = 0;
        for (size_t i = 0; i < n; i++) {
                int64_t b = mon_bucket(in[i].at, step);
                int64_t w = in[i].n > 0 ? in[i].n : 1;
                if (k == 0 || out[k - 1].at != b) {
                        if (k > 0)
                                out[k - 1].avg = wsum / (double) wn;
                        out[k++] = (StorePerfPoint) { .at = b, .avg = 0, .max = in[i].max, .n = 0 };
                        wsum = 0;
                        wn = 0;
                }
                StorePerfPoint *o = &out[k - 1];
                wsum += in[i].avg * (double) w;
                wn += w;
                o->n += w;
                if (in[i].max > o->max)
                        o->max = in[i].max;
        }
        if (k > 0)
                out[k - 1].avg = wsum / (double) wn;
        return k;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

double mon_percentile(const double *v, size_t n, double p) {
        double *c = xmalloc((n ? n : 1) * sizeof *c);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
                if (isfinite(v[i]))
                        c[k++] = v[i];
        if (k == 0) {
                free(c);
                return NAN;
        }
        qsort(c, k, sizeof *c, cmp_double);
        /* Nearest rank: the smallest value with at least p % of the values at or below it. */
        double rank = ceil(p / 100.0 * (double) k);
        size_t idx = rank < 1 ? 0 : (size_t) rank - 1;
        if (idx >= k)
                idx = k - 1;
        double r = c[idx];
        free(c);
        return r;
}

MonStat mon_stat(const double *v, size_t n) {
        MonStat s = { .n = 0, .mean = NAN, .p95 = NAN, .max = NAN };
        double sum = 0;
        for (size_t i = 0; i < n; i++) {
                if (!isfinite(v[i]))
                        continue;
                if (s.n == 0 || v[i] > s.max)
                        s.max = v[i];
                sum += v[i];
                s.n++;
        }
        if (s.n == 0)
                return s;
        s.mean = sum / (double) s.n;
        s.p95 = mon_percentile(v, n, 95);
        return s;
}

bool mon_is_spiky(const MonStat *s) {
        return s->n > 0 && isfinite(s->mean) && s->p95 >= 10.0 && s->p95 > 2.0 * s->mean;
}

/* ------------------------------------------------------------------ */

int mon_cmp_parse(const char *s, MonCmp *ret) {
        static const char *const words[] = { ">", ">=", "<", "<=", "==", "!=" };
        for (size_t i = 0; s && i < ELEMENTSOF(words); i++)
                if (streq(s, words[i])) {
                        *ret = (MonCmp) i;
                        return 0;
                }
        return -EINVAL;
}

bool mon_cmp_num(MonCmp c, double value, double threshold) {
        if (!isfinite(value))
                return false;
        switch (c) {
        case MON_CMP_GT: return value > threshold;
        case MON_CMP_GE: return value >= threshold;
        case MON_CMP_LT: return value < threshold;
        case MON_CMP_LE: return value <= threshold;
        case MON_CMP_EQ: return value == threshold;
        case MON_CMP_NE: return value != threshold;
        }
        return false;
}

bool mon_cmp_str(MonCmp c, const char *value, const char *expected) {
        if (!value || !expected)
                return false;
        if (c == MON_CMP_EQ)
                return streq(value, expected);
        if (c == MON_CMP_NE)
                return !streq(value, expected);
        return false;
}

MonRuleAction mon_rule_step(int condition, bool is_open, int64_t *pending_since, int64_t now, int64_t duration_ms) {
        if (condition < 0)
                return MON_RULE_NONE;
        if (condition == 0) {
                *pending_since = 0;
                return is_open ? MON_RULE_RESOLVE : MON_RULE_NONE;
        }
        if (is_open)
                return MON_RULE_UPDATE;
        if (*pending_since == 0)
                *pending_since = now;
        return now - *pending_since >= duration_ms ? MON_RULE_OPEN : MON_RULE_NONE;
}

/* ------------------------------------------------------------------ */

const char *mon_health_name(MonHealth h) {
        switch (h) {
        case MON_HEALTH_HEALTHY: return "healthy";
        case MON_HEALTH_UNKNOWN: return "unknown";
        case MON_HEALTH_WARNING: return "warning";
        case MON_HEALTH_CRITICAL: return "critical";
        }
        return "unknown";
}

MonHealth mon_health_vm_state(const char *state, const char **ret_reason) {
        *ret_reason = NULL;
        if (!state || streq(state, "unknown")) {
                *ret_reason = "its state is unknown";
                return MON_HEALTH_UNKNOWN;
        }
        if (streq(state, "crashed")) {
                *ret_reason = "it crashed";
                return MON_HEALTH_CRITICAL;
        }
        if (streq(state, "missing")) {
                *ret_reason = "it is missing from its host";
                return MON_HEALTH_WARNING;
        }
        return MON_HEALTH_HEALTHY;
}

MonHealth mon_health_host_state(const char *state, const char **ret_reason) {
        *ret_reason = NULL;
        if (!state || streq(state, "connecting")) {
                *ret_reason = "it has not been reached yet";
                return MON_HEALTH_UNKNOWN;
        }
        if (streq(state, "unreachable") || streq(state, "failed") || streq(state, "fenced")) {
                *ret_reason = streq(state, "unreachable") ? "it is unreachable" : streq(state, "failed") ? "it failed" : "it was fenced";
                return MON_HEALTH_CRITICAL;
        }
        if (streq(state, "not-responding")) {
                *ret_reason = "it does not respond";
                return MON_HEALTH_CRITICAL;
        }
        if (streq(state, "maintenance")) {
                *ret_reason = "it is in maintenance mode";
                return MON_HEALTH_WARNING;
        }
        if (streq(state, "duplicate")) {
                *ret_reason = "it reaches a hypervisor that another host already registers";
                return MON_HEALTH_WARNING;
        }
        if (!streq(state, "ok")) {
                *ret_reason = "its state is not ok";
                return MON_HEALTH_WARNING;
        }
        return MON_HEALTH_HEALTHY;
}

MonHealth mon_health_of_severity(const char *severity) {
        return severity && streq(severity, "critical") ? MON_HEALTH_CRITICAL : MON_HEALTH_WARNING;
}

MonHealth mon_health_parse(const char *name) {
        if (!name)
                return MON_HEALTH_HEALTHY;
        if (streq(name, "unknown"))
                return MON_HEALTH_UNKNOWN;
        if (streq(name, "warning"))
                return MON_HEALTH_WARNING;
        if (streq(name, "critical"))
                return MON_HEALTH_CRITICAL;
        return MON_HEALTH_HEALTHY;
}

static void health_key(json_t *node, char key[64]) {
        snprintf(key, 64, "%s:%lld", json_string_value(json_object_get(node, "kind")) ?: "?",
                 (long long) json_integer_value(json_object_get(node, "id")));
}

/* The node's health now and in the remembered round; *ret_known is false
 * for a node the last round did not have (then "before" is healthy). */
static void health_pair(json_t *node, json_t *prev, const char *member, MonHealth *ret_now, MonHealth *ret_before,
                        bool *ret_known) {
        char key[64];
        health_key(node, key);
        json_t *p = json_object_get(prev, key);
        *ret_now = mon_health_parse(json_string_value(json_object_get(node, streq(member, "own") ? "own_health" : "health")));
        *ret_before = mon_health_parse(json_string_value(json_object_get(p, member)));
        if (ret_known)
                *ret_known = p != NULL;
}

/* The node under (or at) n whose own state or alerts made n's health
 * change: n itself when its own health moved the same way, else the cause
 * under the first child that moved to n's new level (getting worse) or away
 * from its old one (getting better). A changed child whose cause cannot be
 * found further down is the cause itself. NULL when none explains it (a
 * child was removed, say). Borrowed. */
static json_t *health_cause(json_t *n, json_t *prev) {
        MonHealth now, before, own_now, own_before;
        health_pair(n, prev, "health", &now, &before, NULL);
        health_pair(n, prev, "own", &own_now, &own_before, NULL);
        bool worse = now > before;
        if (own_now != own_before && (worse ? own_now == now : own_before == before))
                return n;
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(n, "children"), i, c) {
                MonHealth cn, cb;
                health_pair(c, prev, "health", &cn, &cb, NULL);
                if (worse ? (cn == now && cn > cb) : (cb == before && cn < cb)) {
                        json_t *d = health_cause(c, prev);
                        return d ? d : c;
                }
        }
        return NULL;
}

static const char *health_kind_word(json_t *node, bool capital) {
        const char *k = json_string_value(json_object_get(node, "kind")) ?: "";
        if (streq(k, "vm"))
                return "VM";
        if (streq(k, "group"))
                return capital ? "Host group" : "host group";
        return capital ? "Host" : "host";
}

/* "Host 't1' is now critical (was warning): VM 'db1' is now critical (was
 * healthy): it crashed." */
static char *health_change_message(json_t *n, json_t *prev) {
        MonHealth now, before;
        health_pair(n, prev, "health", &now, &before, NULL);
        StrBuf b = {0};
        strbuf_printf(&b, "%s '%s' is now %s (was %s)", health_kind_word(n, true), json_string_value(json_object_get(n, "name")) ?: "?",
                      mon_health_name(now), mon_health_name(before));
        json_t *d = health_cause(n, prev);
        const char *why = NULL;
        if (d && d != n) {
                MonHealth dn, db;
                bool known;
                health_pair(d, prev, "health", &dn, &db, &known);
                if (known)
                        strbuf_printf(&b, ": %s '%s' is now %s (was %s)", health_kind_word(d, false),
                                      json_string_value(json_object_get(d, "name")) ?: "?", mon_health_name(dn), mon_health_name(db));
                else
                        strbuf_printf(&b, ": %s '%s' (new) is %s", health_kind_word(d, false),
                                      json_string_value(json_object_get(d, "name")) ?: "?", mon_health_name(dn));
                why = json_string_value(json_object_get(d, "own_reason"));
        } else if (d)
                why = json_string_value(json_object_get(d, "own_reason"));
        else {
                /* Nothing that changed explains it: say why the node is as it is now. */
                json_t *reasons = json_object_get(n, "reasons");
                why = json_array_size(reasons) ? json_string_value(json_array_get(reasons, 0)) : NULL;
        }
        if (why && *why)
                strbuf_printf(&b, ": %s", why);
        if (b.len == 0 || b.s[b.len - 1] != '.')
                strbuf_append(&b, ".");
        return strbuf_steal(&b);
}

static void health_walk(json_t *n, json_t *prev, json_t *now_map, json_t *changes) {
        char key[64];
        health_key(n, key);
        const char *kind = json_string_value(json_object_get(n, "kind")) ?: "";
        const char *health = json_string_value(json_object_get(n, "health")) ?: "healthy";
        const char *own = json_string_value(json_object_get(n, "own_health")) ?: "healthy";
        json_object_set_new(now_map, key, json_pack("{s:s, s:s}", "health", health, "own", own));
        json_t *p = prev ? json_object_get(prev, key) : NULL;
        const char *before = json_string_value(json_object_get(p, "health"));
        if (!streq(kind, "vm") && before && !streq(before, health)) {
                _cleanup_free_ char *msg = health_change_message(n, prev);
                json_array_append_new(changes, json_pack("{s:s, s:I, s:s, s:s, s:s}", "kind", kind,
                                                         "id", json_integer_value(json_object_get(n, "id")),
                                                         "name", json_string_value(json_object_get(n, "name")) ?: "?",
                                                         "health", health, "message", msg));
        }
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(n, "children"), i, c)
                health_walk(c, prev, now_map, changes);
}

json_t *mon_health_changes(json_t *tree, json_t *prev, json_t **ret_now) {
        json_t *now_map = json_object(), *changes = json_array();
        if (tree)
                health_walk(tree, prev, now_map, changes);
        *ret_now = now_map;
        return changes;
}

/* ------------------------------------------------------------------ */

void mon_expo_family(StrBuf *b, const char *name, const char *type, const char *help) {
        strbuf_printf(b, "# HELP %s ", name);
        for (const char *p = help; *p; p++) {
                if (*p == '\\') strbuf_append(b, "\\\\");
                else if (*p == '\n') strbuf_append(b, "\\n");
                else strbuf_appendn(b, p, 1);
        }
        strbuf_printf(b, "\n# TYPE %s %s\n", name, type);
}

void mon_expo_label(StrBuf *labels, const char *key, const char *value) {
        if (labels->len)
                strbuf_append(labels, ",");
        strbuf_printf(labels, "%s=\"", key);
        for (const char *p = value ? value : ""; *p; p++) {
                if (*p == '\\') strbuf_append(labels, "\\\\");
                else if (*p == '"') strbuf_append(labels, "\\\"");
                else if (*p == '\n') strbuf_append(labels, "\\n");
                else strbuf_appendn(labels, p, 1);
        }
        strbuf_append(labels, "\"");
}

void mon_expo_sample(StrBuf *b, const char *name, const char *labels, double v) {
        char num[48];
        if (isnan(v))
                snprintf(num, sizeof num, "NaN");
        else if (isinf(v))
                snprintf(num, sizeof num, v > 0 ? "+Inf" : "-Inf");
        else if (v == floor(v) && fabs(v) < 1e15)
                snprintf(num, sizeof num, "%.0f", v);
        else
                snprintf(num, sizeof num, "%.6g", v);
        if (labels && *labels)
                strbuf_printf(b, "%s{%s} %s\n", name, labels, num);
        else
                strbuf_printf(b, "%s %s\n", name, num);
}

/* ------------------------------------------------------------------ */

/* Finds label key's value inside a {...} label set; copies it to out. */
static bool label_value(const char *labels, size_t len, const char *key, char *out, size_t out_size) {
        size_t kl = strlen(key);
        const char *end = labels + len;
        for (const char *p = labels; p < end; ) {
                while (p < end && (*p == ' ' || *p == ',')) p++;
                const char *eq = memchr(p, '=', (size_t) (end - p));
                if (!eq || eq + 1 >= end || eq[1] != '"')
                        return false;
                bool match = (size_t) (eq - p) == kl && memcmp(p, key, kl) == 0;
                size_t k = 0;
                const char *q = eq + 2;
                for (; q < end && *q != '"'; q++) {
                        char ch = *q;
                        if (ch == '\\' && q + 1 < end) {
                                q++;
                                ch = *q == 'n' ? '\n' : *q;
                        }
                        if (match && k + 1 < out_size)
                                out[k++] = ch;
                }
                if (match) {
                        out[k] = 0;
                        return true;
                }
                p = q + 1;
        }
        return false;
}

static bool skip_disk(const char *dev) {
        return strncmp(dev, "loop", 4) == 0 || strncmp(dev, "ram", 3) == 0 || strncmp(dev, "dm-", 3) == 0;
}

int mon_node_exporter_parse(const char *text, MonNodeExporter *ret) {
        MonNodeExporter r;
        memset(&r, 0, sizeof r);
        bool cpu_seen[1024] = { false };
        bool any = false;
        for (const char *line = text; line && *line; ) {
                const char *nl = strchr(line, '\n');
                size_t len = nl ? (size_t) (nl - line) : strlen(line);
                const char *next = nl ? nl + 1 : NULL;
                if (len == 0 || line[0] == '#') {
                        line = next;
                        continue;
                }
                char name[128];
                size_t nlen = strcspn(line, "{ \t");
                if (nlen >= sizeof name || nlen > len) {
                        line = next;
                        continue;
                }
                memcpy(name, line, nlen);
                name[nlen] = 0;
                const char *p = line + nlen, *lend = line + len;
                const char *labels = NULL;
                size_t labels_len = 0;
                if (p < lend && *p == '{') {
                        const char *close = p + 1;
                        bool in_str = false;
                        for (; close < lend; close++) {
                                if (in_str && *close == '\\') { close++; continue; }
                                if (*close == '"') in_str = !in_str;
                                else if (*close == '}' && !in_str) break;
                        }
                        if (close >= lend) {
                                line = next;
                                continue;
                        }
                        labels = p + 1;
                        labels_len = (size_t) (close - labels);
                        p = close + 1;
                }
                char num[64];
                while (p < lend && (*p == ' ' || *p == '\t')) p++;
                size_t vl = strcspn(p, " \t\n");
                if (vl == 0 || vl >= sizeof num || p + vl > lend) {
                        line = next;
                        continue;
                }
                memcpy(num, p, vl);
                num[vl] = 0;
                char *e;
                double v = strtod(num, &e);
                if (*e || !isfinite(v)) {
                        line = next;
                        continue;
                }
                char dev[64] = "", mode[32] = "", cpu[16] = "";
                if (streq(name, "node_cpu_seconds_total")) {
                        any = r.has_cpu = true;
                        r.cpu_total_s += v;
                        if (labels && label_value(labels, labels_len, "mode", mode, sizeof mode) &&
                            (streq(mode, "idle") || streq(mode, "iowait")))
                                r.cpu_idle_s += v;
                        if (labels && label_value(labels, labels_len, "cpu", cpu, sizeof cpu)) {
                                long c = strtol(cpu, &e, 10);
                                if (!*e && c >= 0 && c < 1024 && !cpu_seen[c]) {
                                        cpu_seen[c] = true;
                                        r.cpus++;
                                }
                        }
                } else if (streq(name, "node_memory_MemTotal_bytes")) {
                        any = r.has_memory = true;
                        r.memory_total_b = v;
                } else if (streq(name, "node_memory_MemAvailable_bytes")) {
                        any = true;
                        r.memory_available_b = v;
                } else if (strncmp(name, "node_disk_", 10) == 0) {
                        if (labels && label_value(labels, labels_len, "device", dev, sizeof dev) && skip_disk(dev)) {
                                line = next;
                                continue;
                        }
                        double *slot = streq(name, "node_disk_read_bytes_total") ? &r.disk_read_b
                                : streq(name, "node_disk_written_bytes_total") ? &r.disk_written_b
                                : streq(name, "node_disk_reads_completed_total") ? &r.disk_reads
                                : streq(name, "node_disk_writes_completed_total") ? &r.disk_writes : NULL;
                        if (slot) {
                                any = r.has_disk = true;
                                *slot += v;
                        }
                } else if (streq(name, "node_network_receive_bytes_total") || streq(name, "node_network_transmit_bytes_total")) {
                        if (labels && label_value(labels, labels_len, "device", dev, sizeof dev) && streq(dev, "lo")) {
                                line = next;
                                continue;
                        }
                        any = r.has_net = true;
                        if (name[13] == 'r')
                                r.net_rx_b += v;
                        else
                                r.net_tx_b += v;
                }
                line = next;
        }
        if (!any)
                return -EINVAL;
        *ret = r;
        return 0;
}

int64_t mon_backoff_ms(int attempts, int64_t base_ms, int64_t max_ms) {
        if (attempts < 1)
                attempts = 1;
        int64_t d = base_ms;
        for (int i = 1; i < attempts && d < max_ms; i++)
                d *= 2;
        return d > max_ms ? max_ms : d;
}
