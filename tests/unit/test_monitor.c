/* Unit tests for monitor/: rates from counters (resets, gaps), rollup
 * arithmetic and retention, re-bucketing, percentiles, rule steps with
 * injected time, health words, the Prometheus text format, node_exporter
 * parsing, backoff; then the store's series tables and whole collection
 * rounds against libvirt's test driver with injected times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "monitor/monitor.h"
#include "store/store-monitor.h"

#define NOW0 1790000000000LL  /* a fixed wall time, ms */

static void test_rates(void **state) {
        /* 1000 bytes over 2 s. */
        assert_float_equal(mon_rate(1000, NOW0, 3000, NOW0 + 2000, 30000), 1000.0, 1e-9);
        /* No previous sample, time going backwards, a gap, a reset. */
        assert_true(isnan(mon_rate(0, 0, 3000, NOW0, 30000)));
        assert_true(isnan(mon_rate(1000, NOW0, 3000, NOW0, 30000)));
        assert_true(isnan(mon_rate(1000, NOW0, 3000, NOW0 + 60000, 30000)));
        assert_true(isnan(mon_rate(5000, NOW0, 100, NOW0 + 10000, 30000)));
        /* After the reset the next interval is right again. */
        assert_float_equal(mon_rate(100, NOW0 + 10000, 1100, NOW0 + 20000, 30000), 100.0, 1e-9);

        /* 2 vCPUs, 1 s of CPU time in 1 s: 50 %; 3 s in 1 s clamps at 100. */
        assert_float_equal(mon_cpu_pct(0, NOW0, 1000000000ULL, NOW0 + 1000, 2, 30000), 50.0, 1e-9);
        assert_float_equal(mon_cpu_pct(0, NOW0, 3000000000ULL, NOW0 + 1000, 2, 30000), 100.0, 1e-9);
        assert_true(isnan(mon_cpu_pct(0, NOW0, 1, NOW0 + 1000, 0, 30000)));
        /* A VM restart: cpu.time starts again from a small number. */
        assert_true(isnan(mon_cpu_pct(90000000000ULL, NOW0, 2000000ULL, NOW0 + 10000, 1, 30000)));

        assert_float_equal(mon_busy_pct(1000, 800, 2000, 1550), 25.0, 1e-9);
        assert_true(isnan(mon_busy_pct(1000, 800, 1000, 800)));
        assert_true(isnan(mon_busy_pct(1000, 800, 900, 700)));
}

static void test_rollup_arithmetic(void **state) {
        MonAgg a;
        memset(&a, 0, sizeof a);
        double v[STORE_PERF__COUNT];
        for (int i = 0; i < STORE_PERF__COUNT; i++) v[i] = NAN;
        /* cpu 10, 20, missing, 60; memory only once. */
        v[STORE_PERF_CPU] = 10; v[STORE_PERF_MEMORY] = 512;
        mon_agg_add(&a, v);
        v[STORE_PERF_CPU] = 20; v[STORE_PERF_MEMORY] = NAN;
        mon_agg_add(&a, v);
        v[STORE_PERF_CPU] = NAN;
        mon_agg_add(&a, v);
        v[STORE_PERF_CPU] = 60;
        mon_agg_add(&a, v);
        StorePerfRollup r;
        mon_agg_result(&a, &r);
        assert_int_equal(r.n, 4);
        assert_float_equal(r.avg[STORE_PERF_CPU], 30.0, 1e-9);
        assert_float_equal(r.max[STORE_PERF_CPU], 60.0, 1e-9);
        assert_float_equal(r.avg[STORE_PERF_MEMORY], 512.0, 1e-9);
        assert_true(isnan(r.avg[STORE_PERF_NET_RX]));
        assert_true(isnan(r.max[STORE_PERF_NET_RX]));

        assert_int_equal(mon_bucket(NOW0 + 123456, MON_STEP_5M_MS) % MON_STEP_5M_MS, 0);
        assert_true(mon_bucket(NOW0 + 123456, MON_STEP_5M_MS) <= NOW0 + 123456);
        assert_true(mon_bucket(NOW0 + 123456, MON_STEP_5M_MS) > NOW0 + 123456 - MON_STEP_5M_MS);

        /* Re-bucketing: weights by n, max of max. */
        StorePerfPoint in[] = {
                { .at = 0, .avg = 10, .max = 15, .n = 1 },
                { .at = 500, .avg = 40, .max = 90, .n = 3 },
                { .at = 1000, .avg = 7, .max = 7, .n = 2 },
        }, out[3];
        size_t k = mon_downsample(in, 3, 1000, out);
        assert_int_equal(k, 2);
        assert_int_equal(out[0].at, 0);
        assert_float_equal(out[0].avg, (10.0 + 120.0) / 4.0, 1e-9);
        assert_float_equal(out[0].max, 90.0, 1e-9);
        assert_int_equal(out[0].n, 4);
        assert_int_equal(out[1].at, 1000);
        assert_float_equal(out[1].avg, 7.0, 1e-9);
        assert_int_equal(mon_downsample(in, 0, 1000, out), 0);
}

static void test_retention(void **state) {
        MonRetention r = {0};
        mon_retention_defaults(&r);
        assert_int_equal(r.raw_ms, 24 * 3600 * 1000LL);
        assert_int_equal(r.rollup_5m_ms, 30 * 24 * 3600 * 1000LL);
        assert_int_equal(r.rollup_1h_ms, 365 * 24 * 3600 * 1000LL);
        int64_t cut[3];
        mon_retention_cutoffs(&r, NOW0, cut);
        assert_int_equal(cut[STORE_TIER_RAW], NOW0 - r.raw_ms);
        assert_int_equal(cut[STORE_TIER_1H], NOW0 - r.rollup_1h_ms);
        /* The last hour at 10 s: raw; a week: 5 min (raw is gone); a
         * quarter: 1 h; the last hour at a 1-hour step: 1 h. */
        assert_int_equal(mon_tier_for(&r, NOW0, NOW0 - 3600 * 1000LL, 10000), STORE_TIER_RAW);
        assert_int_equal(mon_tier_for(&r, NOW0, NOW0 - 7 * 86400 * 1000LL, 10000), STORE_TIER_5M);
        assert_int_equal(mon_tier_for(&r, NOW0, NOW0 - 90 * 86400 * 1000LL, 300000), STORE_TIER_1H);
        assert_int_equal(mon_tier_for(&r, NOW0, NOW0 - 3600 * 1000LL, MON_STEP_1H_MS), STORE_TIER_1H);
        /* "The last 24 hours", asked a moment before now: still raw. */
        assert_int_equal(mon_tier_for(&r, NOW0 + 50, NOW0 - r.raw_ms, 288000), STORE_TIER_RAW);
        assert_int_equal(mon_tier_for(&r, NOW0, NOW0 - r.raw_ms - 3600 * 1000LL, 10000), STORE_TIER_5M);
}

static void test_percentiles(void **state) {
        double v[100];
        for (int i = 0; i < 100; i++) v[i] = 100 - i; /* 100 .. 1, unsorted */
        assert_float_equal(mon_percentile(v, 100, 95), 95.0, 1e-9);
        assert_float_equal(mon_percentile(v, 100, 100), 100.0, 1e-9);
        assert_float_equal(mon_percentile(v, 100, 0), 1.0, 1e-9);
        double w[] = { NAN, 3, NAN, 1, 2 };
        assert_float_equal(mon_percentile(w, 5, 50), 2.0, 1e-9);
        double none[] = { NAN, NAN };
        assert_true(isnan(mon_percentile(none, 2, 95)));

        /* Steady at 20 %: not spiky. Mostly 2 % with bursts to 80 %: spiky. */
        double steady[40], spiky[40];
        for (int i = 0; i < 40; i++) {
                steady[i] = 20 + (i % 3);
                spiky[i] = i % 10 < 2 ? 80 : 2;
        }
        MonStat s1 = mon_stat(steady, 40), s2 = mon_stat(spiky, 40);
        assert_false(mon_is_spiky(&s1));
        assert_true(mon_is_spiky(&s2));
        assert_float_equal(s2.max, 80, 1e-9);
        assert_float_equal(s2.p95, 80, 1e-9);
        assert_int_equal(s1.n, 40);
}

static void test_rule_steps(void **state) {
        int64_t since = 0, t = NOW0;
        const int64_t d = 300000; /* 5 minutes */
        assert_int_equal(mon_rule_step(1, false, &since, t, d), MON_RULE_NONE);
        assert_int_equal(since, t);
        assert_int_equal(mon_rule_step(1, false, &since, t + 299999, d), MON_RULE_NONE);
        /* A missing sample changes nothing, not even the pending start. */
        assert_int_equal(mon_rule_step(-1, false, &since, t + 299999, d), MON_RULE_NONE);
        assert_int_equal(since, t);
        assert_int_equal(mon_rule_step(1, false, &since, t + 300000, d), MON_RULE_OPEN);
        assert_int_equal(mon_rule_step(1, true, &since, t + 310000, d), MON_RULE_UPDATE);
        assert_int_equal(mon_rule_step(-1, true, &since, t + 320000, d), MON_RULE_NONE);
        assert_int_equal(mon_rule_step(0, true, &since, t + 330000, d), MON_RULE_RESOLVE);
        assert_int_equal(since, 0);
        /* A dip resets the clock: it must hold for the whole duration again. */
        assert_int_equal(mon_rule_step(1, false, &since, t + 400000, d), MON_RULE_NONE);
        assert_int_equal(mon_rule_step(0, false, &since, t + 500000, d), MON_RULE_NONE);
        assert_int_equal(mon_rule_step(1, false, &since, t + 600000, d), MON_RULE_NONE);
        assert_int_equal(mon_rule_step(1, false, &since, t + 899999, d), MON_RULE_NONE);
        assert_int_equal(mon_rule_step(1, false, &since, t + 900000, d), MON_RULE_OPEN);
        /* Duration 0 opens at once. */
        since = 0;
        assert_int_equal(mon_rule_step(1, false, &since, t, 0), MON_RULE_OPEN);

        MonCmp c;
        assert_int_equal(mon_cmp_parse(">=", &c), 0);
        assert_int_equal(c, MON_CMP_GE);
        assert_int_equal(mon_cmp_parse("=>", &c), -EINVAL);
        assert_int_equal(mon_cmp_parse(NULL, &c), -EINVAL);
        assert_true(mon_cmp_num(MON_CMP_GT, 91, 90));
        assert_false(mon_cmp_num(MON_CMP_GT, 90, 90));
        assert_true(mon_cmp_num(MON_CMP_GE, 90, 90));
        assert_true(mon_cmp_num(MON_CMP_LT, 1, 2));
        assert_true(mon_cmp_num(MON_CMP_NE, 1, 2));
        assert_false(mon_cmp_num(MON_CMP_GT, NAN, 0));
        assert_false(mon_cmp_num(MON_CMP_NE, NAN, 0));
        assert_true(mon_cmp_str(MON_CMP_EQ, "crashed", "crashed"));
        assert_true(mon_cmp_str(MON_CMP_NE, "running", "crashed"));
        assert_false(mon_cmp_str(MON_CMP_GT, "b", "a"));
}

/* A host 't1' with VMs a and b (a warning, b healthy or critical) under the
 * root group: the JSON monitor_health_json() gives, reduced to what
 * mon_health_changes() reads. */
static json_t *health_tree(const char *b_health, const char *host_health, const char *host_own) {
        json_t *t = json_pack("{s:s, s:i, s:s, s:s, s:[{s:s, s:i, s:s, s:s, s:s, s:s, s:[s, s*], s:[{s:s, s:i, s:s, s:s, s:s, s:s,"
                              " s:[s]}, {s:s, s:i, s:s, s:s, s:s, s:s*}]}]}",
                              "kind", "group", "id", 1, "name", "All Hosts", "health", host_health, "children",
                              "kind", "host", "id", 1, "name", "t1", "health", host_health, "own_health", host_own,
                              "own_reason", streq(host_own, "healthy") ? "" : "it is in maintenance mode",
                              "reasons", "VM 'a' is warning", streq(b_health, "healthy") ? NULL : "VM 'b' is critical",
                              "children",
                              "kind", "vm", "id", 1, "name", "a", "health", "warning", "own_health", "warning",
                              "own_reason", "alert 1 (warning): VM 'a' is paused", "reasons", "alert 1 (warning): VM 'a' is paused",
                              "kind", "vm", "id", 2, "name", "b", "health", b_health, "own_health", b_health,
                              "own_reason", streq(b_health, "healthy") ? NULL : "it crashed");
        assert_non_null(t);
        return t;
}

static void test_health_changes(void **state) {
        json_t *prev = NULL, *now = NULL;
        /* The first round compares nothing. */
        json_t *t = health_tree("healthy", "warning", "healthy");
        json_t *ch = mon_health_changes(t, NULL, &prev);
        assert_int_equal(json_array_size(ch), 0);
        assert_non_null(json_object_get(prev, "vm:2"));
        json_decref(ch);
        json_decref(t);

        /* VM 'b' crashes: the host and the group turn critical, and the
         * events name 'b', not 'a' (the first reason, already warning). */
        t = health_tree("critical", "critical", "healthy");
        ch = mon_health_changes(t, prev, &now);
        assert_int_equal(json_array_size(ch), 2);
        json_t *g = json_array_get(ch, 0), *h = json_array_get(ch, 1);
        assert_string_equal(json_string_value(json_object_get(g, "kind")), "group");
        assert_string_equal(json_string_value(json_object_get(g, "message")),
                            "Host group 'All Hosts' is now critical (was warning): VM 'b' is now critical (was healthy): it crashed.");
        assert_string_equal(json_string_value(json_object_get(h, "kind")), "host");
        assert_string_equal(json_string_value(json_object_get(h, "name")), "t1");
        assert_int_equal(json_integer_value(json_object_get(h, "id")), 1);
        assert_string_equal(json_string_value(json_object_get(h, "health")), "critical");
        assert_string_equal(json_string_value(json_object_get(h, "message")),
                            "Host 't1' is now critical (was warning): VM 'b' is now critical (was healthy): it crashed.");
        json_decref(ch);
        json_decref(t);
        json_decref(prev);
        prev = now;

        /* 'b' recovers: the host is warning again because of 'a', and the
         * event names 'b' as what changed. */
        t = health_tree("healthy", "warning", "healthy");
        ch = mon_health_changes(t, prev, &now);
        assert_int_equal(json_array_size(ch), 2);
        assert_string_equal(json_string_value(json_object_get(json_array_get(ch, 1), "message")),
                            "Host 't1' is now warning (was critical): VM 'b' is now healthy (was critical).");
        json_decref(ch);
        json_decref(t);
        json_decref(prev);
        prev = now;

        /* The host's own state: the host itself is the cause. */
        t = health_tree("critical", "critical", "critical");
        json_object_set_new(json_array_get(json_object_get(t, "children"), 0), "own_reason", json_string("it is unreachable"));
        ch = mon_health_changes(t, prev, &now);
        assert_string_equal(json_string_value(json_object_get(json_array_get(ch, 1), "message")),
                            "Host 't1' is now critical (was warning): it is unreachable.");
        json_decref(ch);
        json_decref(t);
        json_decref(prev);
        json_decref(now);
}

static void test_health_words(void **state) {
        const char *why;
        assert_int_equal(mon_health_vm_state("running", &why), MON_HEALTH_HEALTHY);
        assert_null(why);
        assert_int_equal(mon_health_vm_state("crashed", &why), MON_HEALTH_CRITICAL);
        assert_non_null(why);
        assert_int_equal(mon_health_vm_state("missing", &why), MON_HEALTH_WARNING);
        assert_int_equal(mon_health_vm_state("unknown", &why), MON_HEALTH_UNKNOWN);
        assert_int_equal(mon_health_host_state("ok", &why), MON_HEALTH_HEALTHY);
        assert_int_equal(mon_health_host_state("unreachable", &why), MON_HEALTH_CRITICAL);
        assert_string_equal(why, "it is unreachable");
        assert_int_equal(mon_health_host_state("maintenance", &why), MON_HEALTH_WARNING);
        assert_int_equal(mon_health_host_state("connecting", &why), MON_HEALTH_UNKNOWN);
        assert_int_equal(mon_health_of_severity("critical"), MON_HEALTH_CRITICAL);
        assert_int_equal(mon_health_of_severity("info"), MON_HEALTH_WARNING);
        assert_true(MON_HEALTH_CRITICAL > MON_HEALTH_WARNING && MON_HEALTH_WARNING > MON_HEALTH_UNKNOWN &&
                    MON_HEALTH_UNKNOWN > MON_HEALTH_HEALTHY);
        assert_string_equal(mon_health_name(MON_HEALTH_WARNING), "warning");
}

static void test_exposition(void **state) {
        StrBuf b = {0}, l = {0};
        mon_expo_family(&b, "armada_x", "gauge", "A help\\text\nwith a newline.");
        mon_expo_label(&l, "vm", "we\"b\\01\n");
        mon_expo_label(&l, "host", "h1");
        mon_expo_sample(&b, "armada_x", l.s, 42);
        mon_expo_sample(&b, "armada_x", NULL, 0.25);
        mon_expo_sample(&b, "armada_x", "", NAN);
        mon_expo_sample(&b, "armada_x", NULL, INFINITY);
        mon_expo_sample(&b, "armada_x", NULL, -INFINITY);
        mon_expo_sample(&b, "armada_x", NULL, 3221225472.0);
        assert_string_equal(b.s,
                "# HELP armada_x A help\\\\text\\nwith a newline.\n"
                "# TYPE armada_x gauge\n"
                "armada_x{vm=\"we\\\"b\\\\01\\n\",host=\"h1\"} 42\n"
                "armada_x 0.25\n"
                "armada_x NaN\n"
                "armada_x +Inf\n"
                "armada_x -Inf\n"
                "armada_x 3221225472\n");
        strbuf_free(&b);
        strbuf_free(&l);
}

static char *data_file(const char *name) {
        const char *dir = getenv("ARMADA_TEST_DATA");
        _cleanup_free_ char *path = xasprintf("%s/monitor/%s", dir ? dir : "tests/data", name);
        char *text = NULL;
        assert_int_equal(file_read_all(path, &text, NULL), 0);
        return text;
}

static void test_node_exporter(void **state) {
        _cleanup_free_ char *text = data_file("node_exporter.txt");
        MonNodeExporter ne;
        assert_int_equal(mon_node_exporter_parse(text, &ne), 0);
        assert_true(ne.has_cpu && ne.has_memory && ne.has_disk && ne.has_net);
        assert_int_equal(ne.cpus, 2);
        assert_float_equal(ne.cpu_total_s, 2000, 1e-9);
        assert_float_equal(ne.cpu_idle_s, 1710, 1e-9);
        assert_float_equal(ne.memory_total_b, 8589934592.0, 1);
        assert_float_equal(ne.memory_available_b, 6442450944.0, 1);
        assert_float_equal(ne.disk_read_b, 1000, 1e-9);   /* dm-0 and loop0 left out */
        assert_float_equal(ne.disk_written_b, 2000, 1e-9);
        assert_float_equal(ne.disk_reads + ne.disk_writes, 30, 1e-9);
        assert_float_equal(ne.net_rx_b, 3000, 1e-9);      /* lo left out */
        assert_float_equal(ne.net_tx_b, 4001, 1e-9);      /* an escaped quote in a label */
        assert_int_equal(mon_node_exporter_parse("# nothing\nfoo 1\n", &ne), -EINVAL);
        assert_int_equal(mon_node_exporter_parse("", &ne), -EINVAL);
        /* Garbage does not crash it. */
        assert_int_equal(mon_node_exporter_parse("node_cpu_seconds_total{cpu=\"0\" 12\nnode_cpu_seconds_total{cpu=\"0\"} x\n", &ne), -EINVAL);
}

static void test_backoff(void **state) {
        assert_int_equal(mon_backoff_ms(1, 1000, 300000), 1000);
        assert_int_equal(mon_backoff_ms(2, 1000, 300000), 2000);
        assert_int_equal(mon_backoff_ms(4, 1000, 300000), 8000);
        assert_int_equal(mon_backoff_ms(40, 1000, 300000), 300000);
        assert_int_equal(mon_backoff_ms(0, 1000, 300000), 1000);
}

/* ------------------------------------------------------------------ */
/* the store's series tables */

static char tmpdir[64];

static Store *open_store(void) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/armada-test-monitor-XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
        _cleanup_free_ char *path = xasprintf("%s/armada.db", tmpdir);
        Store *st = NULL;
        assert_int_equal(store_open(path, &st), 0);
        return st;
}

static void close_store(Store *st) {
        store_free(st);
        _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", tmpdir);
        assert_int_equal(system(cmd), 0);
}

static void test_store_series(void **state) {
        Store *st = open_store();
        /* Two days of a synthetic VM at one sample a minute: cpu = minute % 60. */
        size_t n = 2 * 24 * 60;
        StorePerfSample *s = xcalloc(n, sizeof *s);
        for (size_t i = 0; i < n; i++) {
                s[i].kind = STORE_PERF_VM;
                s[i].object_id = 7;
                s[i].at = NOW0 - (int64_t) (n - i) * 60000;
                for (int m = 0; m < STORE_PERF__COUNT; m++) s[i].v[m] = NAN;
                s[i].v[STORE_PERF_CPU] = (double) (i % 60);
        }
        assert_int_equal(store_begin(st), 0);
        assert_int_equal(store_perf_insert_raw(st, s, n), 0);
        assert_int_equal(store_commit(st), 0);
        /* Retention: everything older than a day goes. */
        assert_int_equal(store_perf_prune(st, STORE_TIER_RAW, NOW0 - 24 * 3600 * 1000LL), (int) (n / 2));
        StorePerfPoint *pts = NULL;
        int k = store_perf_query(st, STORE_TIER_RAW, STORE_PERF_VM, 7, STORE_PERF_CPU, 0, NOW0 + 1, &pts);
        assert_int_equal(k, (int) (n / 2));
        assert_true(pts[0].at >= NOW0 - 24 * 3600 * 1000LL);
        /* The memory column was never set: no points. */
        free(pts);
        pts = NULL;
        assert_int_equal(store_perf_query(st, STORE_TIER_RAW, STORE_PERF_VM, 7, STORE_PERF_MEMORY, 0, NOW0 + 1, &pts), 0);
        free(pts);

        /* Rollups: one 5-minute row; avg and max come back. */
        StorePerfRollup r = { .kind = STORE_PERF_VM, .object_id = 7, .at = mon_bucket(NOW0, MON_STEP_5M_MS), .n = 30 };
        for (int m = 0; m < STORE_PERF__COUNT; m++) r.avg[m] = r.max[m] = NAN;
        r.avg[STORE_PERF_CPU] = 12.5;
        r.max[STORE_PERF_CPU] = 99;
        assert_int_equal(store_perf_insert_rollups(st, STORE_TIER_5M, &r, 1), 0);
        assert_int_equal(store_perf_insert_rollups(st, STORE_TIER_RAW, &r, 1), -EINVAL);
        pts = NULL;
        assert_int_equal(store_perf_query(st, STORE_TIER_5M, STORE_PERF_VM, 7, STORE_PERF_CPU, 0, NOW0 + 1000000, &pts), 1);
        assert_float_equal(pts[0].avg, 12.5, 1e-9);
        assert_float_equal(pts[0].max, 99, 1e-9);
        assert_int_equal(pts[0].n, 30);
        free(pts);
        assert_int_equal(store_perf_prune(st, STORE_TIER_5M, r.at + 1), 1);
        free(s);
        close_store(st);
}

/* ------------------------------------------------------------------ */
/* whole rounds against libvirt's test driver, with injected times */

typedef struct {
        HvConn *conn;
        int64_t host_id;
} FakeSource;

static int fake_each(void *source, MonitorConnFn fn, void *userdata) {
        FakeSource *f = source;
        if (!f->conn)
                return 0;
        fn(userdata, f->host_id, f->conn);
        return 1;
}

static int64_t count(Store *st, const char *sql) {
        int64_t n = -1;
        assert_int_equal(store_query_i64(st, &n, sql, ""), 0);
        return n;
}

static void test_rounds(void **state) {
        Store *st = open_store();
        FakeSource src = {0};
        assert_int_equal(hv_connect("test:///default", 0, 0, NULL, NULL, &src.conn), 0);
        assert_int_equal(store_host_insert(st, "t1", "test:///default", STORE_ROOT_GROUP_ID, "default-pool", "/tmp", &src.host_id), 0);
        assert_int_equal(store_host_set_facts(st, src.host_id, 16, 3072, 0, "TEST", "test", "t1", NULL), 0);
        assert_int_equal(store_host_set_state(st, src.host_id, "ok", NULL), 1);
        StoreVm vm = { .host_id = src.host_id, .cpus = 2, .memory_mib = 8192 };
        snprintf(vm.uuid, sizeof vm.uuid, "6695eb01-f6a4-8304-79aa-97f2502e193f");
        snprintf(vm.name, sizeof vm.name, "test");
        snprintf(vm.state, sizeof vm.state, "running");
        snprintf(vm.origin, sizeof vm.origin, "discovered");
        int64_t vm_id;
        assert_int_equal(store_vm_insert(st, &vm, &vm_id), 0);
        /* A rule with a duration: the VM must be running for 60 s. */
        StoreAlertRule rule = { .duration_s = 60, .enabled = true };
        snprintf(rule.name, sizeof rule.name, "vm-running");
        snprintf(rule.object_kind, sizeof rule.object_kind, "vm");
        snprintf(rule.metric, sizeof rule.metric, "state");
        snprintf(rule.comparison, sizeof rule.comparison, "==");
        snprintf(rule.state_value, sizeof rule.state_value, "running");
        snprintf(rule.severity, sizeof rule.severity, "warning");
        snprintf(rule.scope, sizeof rule.scope, "all");
        int64_t rule_id, hook_id;
        assert_int_equal(store_alert_rule_insert(st, &rule, NULL, &rule_id), 0);
        assert_int_equal(store_webhook_insert(st, "http://127.0.0.1:9/hook", NULL, &hook_id), 0);

        MonitorConfig cfg = { .interval_ms = 10000, .each_conn = fake_each, .conn_source = &src };
        Monitor *m = NULL;
        assert_int_equal(monitor_new(st, &cfg, &m), 0);
        int64_t t = mon_bucket(NOW0, MON_STEP_1H_MS) + 10000;
        /* Round 1: one host and one VM sampled; the rule is pending. */
        assert_int_equal(monitor_round(m, t), 2);
        assert_int_equal(count(st, "SELECT count(*) FROM perf_raw"), 2);
        assert_int_equal(count(st, "SELECT count(*) FROM perf_latest"), 2);
        assert_int_equal(count(st, "SELECT count(*) FROM alert WHERE state = 'open'"), 0);
        assert_int_equal(count(st, "SELECT count(*) FROM host_usage"), 1);
        assert_int_equal(count(st, "SELECT count(*) FROM host_pool"), 1);
        /* 30 s later: still pending. 70 s later: open, an event, a delivery. */
        assert_int_equal(monitor_round(m, t + 30000), 2);
        assert_int_equal(count(st, "SELECT count(*) FROM alert WHERE state = 'open'"), 0);
        assert_int_equal(monitor_round(m, t + 70000), 2);
        assert_int_equal(count(st, "SELECT count(*) FROM alert WHERE state = 'open' AND rule_name = 'vm-running'"), 1);
        assert_int_equal(count(st, "SELECT count(*) FROM event WHERE kind = 'alert.opened'"), 1);
        assert_int_equal(count(st, "SELECT count(*) FROM webhook_delivery WHERE state = 'pending'"), 1);
        /* The VM stops (as reconcile would record): resolved, notified. */
        assert_int_equal(store_vm_set_state(st, vm_id, "stopped"), 1);
        assert_int_equal(monitor_round(m, t + 80000), 2);
        assert_int_equal(count(st, "SELECT count(*) FROM alert WHERE state = 'resolved'"), 1);
        assert_int_equal(count(st, "SELECT count(*) FROM webhook_delivery WHERE state = 'pending'"), 2);
        /* The 5-minute bucket closes at t + 290 s: one rollup row per object. */
        assert_int_equal(count(st, "SELECT count(*) FROM perf_5m"), 0);
        assert_int_equal(monitor_round(m, t + 300000), 2);
        assert_int_equal(count(st, "SELECT count(*) FROM perf_5m"), 2);
        assert_int_equal(count(st, "SELECT n FROM perf_5m WHERE kind = 1"), 4);
        /* The host loses its connection: no samples, the state rule opens. */
        assert_int_equal(store_host_set_state(st, src.host_id, "unreachable", "test"), 1);
        HvConn *conn = src.conn;
        src.conn = NULL;
        assert_int_equal(monitor_round(m, t + 310000), 0);
        assert_int_equal(count(st, "SELECT count(*) FROM alert WHERE state = 'open' AND rule_name = 'host-unreachable'"), 1);
        _cleanup_json_ json_t *tree = monitor_health_json(st);
        assert_non_null(tree);
        assert_string_equal(json_string_value(json_object_get(tree, "health")), "critical");
        json_t *host = json_array_get(json_object_get(tree, "children"), 0);
        assert_string_equal(json_string_value(json_object_get(host, "health")), "critical");
        assert_true(json_array_size(json_object_get(host, "reasons")) >= 1);
        /* The Prometheus text names the host. */
        MonitorProcess self;
        assert_int_equal(monitor_process_read(&self), 0);
        assert_true(self.resident_bytes > 0);
        _cleanup_free_ char *text = monitor_prometheus_text(st, &self, 7);
        assert_non_null(strstr(text, "armada_host_up{host=\"t1\",group=\"All Hosts\"} 0\n"));
        assert_non_null(strstr(text, "armada_alerts_open{severity=\"critical\"} 1\n"));
        assert_non_null(strstr(text, "armada_monitor_rounds_total 6\n"));
        assert_non_null(strstr(text, "# TYPE armada_login_rate_limited_total counter\narmada_login_rate_limited_total 7\n"));
        /* The same from the read model's snapshot, without SQL for hosts
         * and VMs (what GET /health and /metrics use). */
        Model *model = NULL;
        assert_int_equal(model_new(st, &model), 0);
        ModelSnap *snap = model_snap(model);
        _cleanup_json_ json_t *tree2 = monitor_health_json_from(st, snap);
        assert_true(json_equal(tree, tree2));
        _cleanup_free_ char *text2 = monitor_prometheus_text_from(st, snap, &self, 7);
        assert_string_equal(text, text2);
        model_snap_unref(snap);
        assert_int_equal(store_vm_set_state(st, vm_id, "crashed"), 1);
        snap = model_snap(model);
        _cleanup_free_ char *text3 = monitor_prometheus_text_from(st, snap, &self, 7);
        assert_non_null(strstr(text3, "state=\"crashed\"} 1\n"));
        model_snap_unref(snap);
        model_free(model);
        /* A series query over the raw tier. */
        char why[256];
        _cleanup_json_ json_t *series = monitor_series_json(st, STORE_PERF_HOST, src.host_id, "memory", t - 1, t + 400000, 10,
                                                            NULL, why, sizeof why);
        assert_non_null(series);
        assert_null(monitor_series_json(st, STORE_PERF_HOST, src.host_id, "bogus", t, t + 1, 0, NULL, why, sizeof why));
        assert_non_null(strstr(why, "bogus"));
        monitor_free(m);
        hv_conn_free(conn);
        close_store(st);
}

/* Every object's perf_latest row holds the figures of its newest raw
 * sample (the invariant the skipping of unchanged rows must keep). */
static void assert_latest_is_newest_raw(Store *st) {
        static const char *const sql =
                "SELECT count(*) FROM perf_latest l JOIN perf_raw r ON r.kind = l.kind AND r.object_id = l.object_id"
                " AND r.at = (SELECT max(at) FROM perf_raw x WHERE x.kind = l.kind AND x.object_id = l.object_id)"
                " WHERE NOT (l.cpu IS r.cpu AND l.memory IS r.memory AND l.memory_pct IS r.memory_pct AND l.disk_read IS r.disk_read"
                " AND l.disk_write IS r.disk_write AND l.disk_iops IS r.disk_iops AND l.net_rx IS r.net_rx AND l.net_tx IS r.net_tx"
                " AND l.pool_pct IS r.pool_pct)";
        assert_int_equal(count(st, sql), 0);
        assert_int_equal(count(st, "SELECT count(*) FROM perf_latest"),
                         count(st, "SELECT count(DISTINCT kind || ':' || object_id) FROM perf_raw"));
}

/* An idle round (nothing measured changed) writes its raw samples but no
 * perf_latest row, does not move the /metrics generation and builds no
 * health tree; a change is written in the round that sees it: a paused
 * domain changes its host's detail (domains_running), a VM recorded as
 * crashed the health tree (a health.changed event). */
static void test_idle_round_writes_only_changes(void **state) {
        Store *st = open_store();
        FakeSource src = {0};
        assert_int_equal(hv_connect("test:///default", 0, 0, NULL, NULL, &src.conn), 0);
        assert_int_equal(store_host_insert(st, "t1", "test:///default", STORE_ROOT_GROUP_ID, "default-pool", "/tmp", &src.host_id), 0);
        assert_int_equal(store_host_set_facts(st, src.host_id, 16, 3072, 0, "TEST", "test", "t1", NULL), 0);
        assert_int_equal(store_host_set_state(st, src.host_id, "ok", NULL), 1);
        StoreVm vm = { .host_id = src.host_id, .cpus = 2, .memory_mib = 8192 };
        snprintf(vm.uuid, sizeof vm.uuid, "6695eb01-f6a4-8304-79aa-97f2502e193f");
        snprintf(vm.name, sizeof vm.name, "test");
        snprintf(vm.state, sizeof vm.state, "running");
        snprintf(vm.origin, sizeof vm.origin, "discovered");
        int64_t vm_id;
        assert_int_equal(store_vm_insert(st, &vm, &vm_id), 0);
        MonitorConfig cfg = { .interval_ms = 10000, .each_conn = fake_each, .conn_source = &src };
        Monitor *m = NULL;
        assert_int_equal(monitor_new(st, &cfg, &m), 0);
        int64_t t = mon_bucket(NOW0, MON_STEP_1H_MS) + 10000;
        assert_int_equal(monitor_round(m, t), 2);
        _cleanup_free_ char *at_t = xasprintf("SELECT count(*) FROM perf_latest WHERE at = %lld", (long long) t);
        assert_int_equal(count(st, at_t), 2);
        assert_latest_is_newest_raw(st);
        MonitorRoundStats rs;
        monitor_round_stats(m, &rs);
        uint64_t health_builds = rs.health_builds, written = rs.latest_written;
        assert_int_equal(written, 2);
        uint64_t gen = monitor_round_generation();
        /* Idle: raw samples, no latest row, same generation, no tree. */
        assert_int_equal(monitor_round(m, t + 10000), 2);
        assert_int_equal(count(st, "SELECT count(*) FROM perf_raw"), 4);
        assert_int_equal(count(st, at_t), 2);
        assert_int_equal(monitor_round_generation(), gen);
        monitor_round_stats(m, &rs);
        assert_int_equal(rs.health_builds, health_builds);
        assert_int_equal(rs.health_skips, 1);
        assert_int_equal(rs.latest_written, written);
        assert_int_equal(rs.latest_skipped, 2);
        assert_latest_is_newest_raw(st);
        /* The domain pauses (as reconcile records it): its host's row is
         * rewritten in this round, the generation moves, the tree is built. */
        assert_int_equal(hv_domain_pause(src.conn, vm.uuid), 0);
        assert_int_equal(store_vm_set_state(st, vm_id, "crashed"), 1);   /* a state the health tree tells */
        int64_t events = count(st, "SELECT count(*) FROM event WHERE kind = 'health.changed'");
        assert_int_equal(monitor_round(m, t + 20000), 2);
        _cleanup_free_ char *host_now = xasprintf("SELECT count(*) FROM perf_latest WHERE kind = 0 AND at = %lld"
                                                  " AND json_extract(detail, '$.domains_running') = 0", (long long) (t + 20000));
        assert_int_equal(count(st, host_now), 1);
        assert_true(monitor_round_generation() > gen);
        monitor_round_stats(m, &rs);
        assert_int_equal(rs.health_builds, health_builds + 1);
        assert_true(count(st, "SELECT count(*) FROM event WHERE kind = 'health.changed'") > events);
        assert_latest_is_newest_raw(st);
        /* and back */
        assert_int_equal(hv_domain_resume(src.conn, vm.uuid), 0);
        assert_int_equal(store_vm_set_state(st, vm_id, "running"), 1);
        assert_int_equal(monitor_round(m, t + 30000), 2);
        _cleanup_free_ char *host_back = xasprintf("SELECT count(*) FROM perf_latest WHERE kind = 0 AND at = %lld"
                                                   " AND json_extract(detail, '$.domains_running') = 1", (long long) (t + 30000));
        assert_int_equal(count(st, host_back), 1);
        assert_latest_is_newest_raw(st);
        monitor_free(m);
        hv_conn_free(src.conn);
        close_store(st);
}

/* A host's state change is judged at once, without a round: failed, then
 * fenced, then back; each alert opens and resolves with its delivery. */
static void test_host_state_changed(void **state) {
        Store *st = open_store();
        int64_t host, hook;
        assert_int_equal(store_host_insert(st, "t1", "test:///default", STORE_ROOT_GROUP_ID, "default-pool", "/tmp", &host), 0);
        assert_int_equal(store_webhook_insert(st, "http://127.0.0.1:9/hook", NULL, &hook), 0);
        Monitor *m = NULL;
        assert_int_equal(monitor_new(st, &(MonitorConfig) { .interval_ms = 10000 }, &m), 0);
        assert_int_equal(monitor_host_state_changed(m, host), 0); /* connecting: nothing */
        assert_int_equal(count(st, "SELECT count(*) FROM alert"), 0);
        assert_int_equal(store_host_set_state(st, host, "failed", "test"), 1);
        assert_int_equal(monitor_host_state_changed(m, host), 0);
        assert_int_equal(count(st, "SELECT count(*) FROM alert WHERE state = 'open' AND rule_name = 'host-failed'"), 1);
        assert_int_equal(count(st, "SELECT count(*) FROM webhook_delivery WHERE state = 'pending'"), 1);
        assert_int_equal(monitor_host_state_changed(m, host), 0); /* again: nothing new */
        assert_int_equal(count(st, "SELECT count(*) FROM alert"), 1);
        assert_int_equal(store_host_set_state(st, host, "fenced", "test"), 1);
        assert_int_equal(monitor_host_state_changed(m, host), 0);
        assert_int_equal(count(st, "SELECT count(*) FROM alert WHERE state = 'open' AND rule_name = 'host-fenced'"), 1);
        assert_int_equal(count(st, "SELECT count(*) FROM alert WHERE state = 'resolved' AND rule_name = 'host-failed'"), 1);
        assert_int_equal(store_host_set_state(st, host, "ok", NULL), 1);
        assert_int_equal(monitor_host_state_changed(m, host), 0);
        assert_int_equal(count(st, "SELECT count(*) FROM alert WHERE state = 'open'"), 0);
        assert_int_equal(count(st, "SELECT count(*) FROM webhook_delivery WHERE state = 'pending'"), 4);
        assert_int_equal(count(st, "SELECT count(*) FROM event WHERE kind = 'alert.opened'"), 2);
        assert_int_equal(monitor_host_state_changed(m, host + 100), 0); /* no such host: nothing */
        assert_int_equal(monitor_host_state_changed(NULL, host), 0);
        monitor_free(m);
        close_store(st);
}

/* The answers' builder, one step at a time (no thread, no timing): the first
 * step builds both answers, a step without change none, many changes one
 * build, a host's last_seen_at alone none; a request gets the newest answer
 * without building, fresh (administrators only) builds for it. */
static const char *vm_state_in(const MonitorAnswer *a) {
        json_t *host = json_array_get(json_object_get(a->tree, "children"), 0);
        return json_string_value(json_object_get(json_array_get(json_object_get(host, "children"), 0), "state"));
}

static void test_answers_builder(void **state) {
        (void) state;
        Store *st = open_store();
        int64_t h, v;
        assert_int_equal(store_host_insert(st, "a1", "test:///default", STORE_ROOT_GROUP_ID, "default-pool", "/tmp", &h), 0);
        assert_int_equal(store_host_set_facts(st, h, 16, 3072, 0, "TEST", "test", "a1", NULL), 0);
        assert_int_equal(store_host_set_state(st, h, "ok", NULL), 1);
        StoreVm vm = { .host_id = h, .cpus = 2, .memory_mib = 512 };
        snprintf(vm.uuid, sizeof vm.uuid, "6695eb01-f6a4-8304-79aa-97f2502e1940");
        snprintf(vm.name, sizeof vm.name, "a1-vm");
        snprintf(vm.state, sizeof vm.state, "running");
        snprintf(vm.origin, sizeof vm.origin, "discovered");
        assert_int_equal(store_vm_insert(st, &vm, &v), 0);
        Model *model = NULL;
        assert_int_equal(model_new(st, &model), 0);
        ModelSnap *snap = model_snap(model);
        assert_int_equal(monitor_answers_step(st, snap), 3);
        assert_int_equal(monitor_answers_step(st, snap), 0);
        model_snap_unref(snap);
        /* Three changes between two steps: one build of each. */
        assert_int_equal(store_vm_set_state(st, v, "paused"), 1);
        assert_int_equal(store_vm_set_state(st, v, "running"), 1);
        assert_int_equal(store_vm_set_state(st, v, "crashed"), 1);
        snap = model_snap(model);
        assert_int_equal(monitor_answers_step(st, snap), 3);
        assert_int_equal(monitor_answers_step(st, snap), 0);
        /* A quiet refresh (last_seen_at moves, nothing the answers show). */
        uint64_t hosts_gen = snap->hosts->generation;
        model_snap_unref(snap);
        sleep(1);
        assert_int_equal(store_host_set_facts(st, h, 16, 3072, 0, "TEST", "test", "a1", NULL), 0);
        snap = model_snap(model);
        assert_true(snap->hosts->generation != hosts_gen);
        assert_int_equal(monitor_answers_step(st, snap), 0);
        model_snap_unref(snap);
        /* A request takes the newest answer, stale or not, without building. */
        assert_int_equal(store_vm_set_state(st, v, "running"), 1);
        snap = model_snap(model);
        OpCaller admin = { .subj = { .role = ROLE_ADMIN }, .user_id = 1, .user_name = "admin" };
        OpError err = {0};
        MonitorHealthReply rep;
        assert_int_equal(monitor_op_health_answer(st, snap, &admin, false, &rep, &err), 0);
        assert_true(rep.whole);
        assert_string_equal(vm_state_in(rep.answer), "crashed");
        assert_non_null(strstr(rep.answer->text, "\"generated_at\":\""));
        MonitorAnswer *old = rep.answer;
        /* A row's health from the answer's index: the VM's own, the host's
         * rolled up (its reasons name the VM), nothing for an id or kind the
         * answer does not hold. */
        size_t flen = 0;
        const char *frag = monitor_answer_health(old, true, v, &flen);
        assert_non_null(frag);
        assert_int_equal(flen, strlen(frag));
        _cleanup_free_ char *row = xasprintf("{%s}", frag);
        _cleanup_json_ json_t *rj = json_loads(row, 0, NULL);
        assert_non_null(rj);
        assert_string_equal(json_string_value(json_object_get(rj, "health")), "critical");
        assert_true(json_array_size(json_object_get(rj, "health_reasons")) >= 1);
        frag = monitor_answer_health(old, false, h, &flen);
        assert_non_null(frag);
        assert_non_null(strstr(frag, "\"health\":\"critical\""));
        assert_non_null(strstr(frag, "'a1-vm' is critical"));
        assert_null(monitor_answer_health(old, true, v + 1000, &flen));
        assert_null(monitor_answer_health(NULL, true, v, &flen));
        /* fresh: built for the request. */
        assert_int_equal(monitor_op_health_answer(st, snap, &admin, true, &rep, &err), 0);
        assert_ptr_not_equal(rep.answer, old);
        assert_string_equal(vm_state_in(rep.answer), "running");
        assert_string_not_equal(rep.etag, old->etag);
        monitor_answer_unref(rep.answer);
        monitor_answer_unref(old);   /* still valid after the swap: its own reference */
        /* A caller who sees a part: a view built once per answer and scope. */
        OpCaller self = { .subj = { .role = ROLE_SELF_SERVICE, .user_id = 3 }, .user_id = 3, .user_name = "self" };
        assert_int_equal(monitor_op_health_answer(st, snap, &self, false, &rep, &err), 0);
        assert_false(rep.whole);
        assert_string_not_equal(rep.etag, rep.answer->etag);
        MonitorView *owned = NULL;
        const MonitorView *view = monitor_health_view(st, &self, &rep, &owned);
        assert_null(owned);
        assert_null(strstr(view->text, "a1-vm"));            /* not theirs */
        assert_non_null(strstr(view->text, "\"generated_at\""));
        assert_ptr_equal(monitor_health_view(st, &self, &rep, &owned), view);
        assert_null(strstr(rep.answer->text, "\"kind\":\"view\""));   /* the shared tree is untouched */
        monitor_answer_unref(rep.answer);
        OpCaller ro = { .subj = { .role = ROLE_READ_ONLY }, .user_id = 2, .user_name = "ro" };
        assert_int_equal(monitor_op_health_answer(st, snap, &ro, true, &rep, &err), -EPERM);
        assert_int_equal(err.status, 403);
        assert_string_equal(err.field, "fresh");
        model_snap_unref(snap);
        monitor_answers_stop();
        model_free(model);
        close_store(st);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rates),
                cmocka_unit_test(test_rollup_arithmetic),
                cmocka_unit_test(test_retention),
                cmocka_unit_test(test_percentiles),
                cmocka_unit_test(test_rule_steps),
                cmocka_unit_test(test_health_words),
                cmocka_unit_test(test_health_changes),
                cmocka_unit_test(test_exposition),
                cmocka_unit_test(test_node_exporter),
                cmocka_unit_test(test_backoff),
                cmocka_unit_test(test_store_series),
                cmocka_unit_test(test_rounds),
                cmocka_unit_test(test_idle_round_writes_only_changes),
                cmocka_unit_test(test_host_state_changed),
                cmocka_unit_test(test_answers_builder),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
