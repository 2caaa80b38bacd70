/* Benchmark of monitor/: collection rounds over 100 and 1,000 test-driver
 * hosts with 20 VMs each and 200 hosts with 50 (round wall time and the
 * collector's CPU time per round, including the batched database writes and
 * rule evaluation), and
 * time-series query latency for one VM over 30 days of stored data.
 * Prints a markdown report and writes it to <out>/monitor.md.
 * Usage: bench_monitor [--out DIR] [--quick] */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_START_INSTRUMENTATION do { } while (0)
#define CALLGRIND_STOP_INSTRUMENTATION do { } while (0)
#endif

#include "monitor/monitor.h"
#include "store/store-monitor.h"

static double mono_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}
static double cpu_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}
static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

typedef struct {
        HvConn **conns;
        int64_t *ids;
        size_t n;
} Source;

static int each(void *source, MonitorConnFn fn, void *userdata) {
        Source *s = source;
        for (size_t i = 0; i < s->n; i++)
                fn(userdata, s->ids[i], s->conns[i]);
        return (int) s->n;
}

static char dir[64];

static Store *fresh_store(void) {
        snprintf(dir, sizeof dir, "/tmp/armada-bench-monitor-XXXXXX");
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                exit(1);
        }
        _cleanup_free_ char *path = xasprintf("%s/armada.db", dir);
        Store *st = NULL;
        if (store_open(path, &st) < 0)
                exit(1);
        return st;
}
static void drop_store(Store *st) {
        store_free(st);
        _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", dir);
        if (system(cmd) != 0)
                fprintf(stderr, "cannot remove %s\n", dir);
}

typedef struct {
        size_t hosts, vms;
        double wall_med, wall_max, cpu_med, cpu_max, setup_s;
        int samples;
} RoundResult;

/* --only: rounds after the first are run under callgrind's instrumentation
 * (valgrind --tool=callgrind --instr-atstart=no): instructions per round
 * without the set-up's; and the rows each round changed are printed. */
static bool only_mode;

static int64_t count_rows(Store *st, const char *sql) {
        int64_t n = -1;
        (void) store_query_i64(st, &n, sql, "");
        return n;
}

static RoundResult bench_rounds(size_t n_hosts, size_t vms_per_host, int rounds) {
        RoundResult res = { .hosts = n_hosts, .vms = n_hosts * vms_per_host };
        double t0 = mono_s();
        Store *st = fresh_store();
        Source src = { xcalloc(n_hosts, sizeof(HvConn *)), xcalloc(n_hosts, sizeof(int64_t)), n_hosts };
        (void) store_begin(st);
        for (size_t h = 0; h < n_hosts; h++) {
                _cleanup_free_ char *path = xasprintf("%s/h%zu.xml", dir, h);
                StrBuf x = {0};
                strbuf_append(&x, "<?xml version='1.0'?>\n<node><cpu><mhz>2000</mhz><model>x86</model><active>32</active><max>32</max></cpu>"
                                  "<memory>268435456</memory>\n");
                char name[64];
                snprintf(name, sizeof name, "h%zu", h);
                _cleanup_free_ char *uri = xasprintf("test://%s", path);
                (void) store_host_insert(st, name, uri, STORE_ROOT_GROUP_ID, "default-pool", "/tmp", &src.ids[h]);
                (void) store_host_set_facts(st, src.ids[h], 32, 262144, 0, "TEST", "test", name, NULL);
                (void) store_host_set_state(st, src.ids[h], "ok", NULL);
                for (size_t k = 0; k < vms_per_host; k++) {
                        StoreVm vm = { .host_id = src.ids[h], .cpus = 2, .memory_mib = 2048 };
                        snprintf(vm.uuid, sizeof vm.uuid, "%08x-0000-4000-8000-%012x", (unsigned) h & 0xffffffffu, (unsigned) k & 0xffffu);
                        snprintf(vm.name, sizeof vm.name, "h%zu-vm%zu", h, k);
                        snprintf(vm.state, sizeof vm.state, k % 5 == 4 ? "stopped" : "running");
                        snprintf(vm.origin, sizeof vm.origin, "discovered");
                        int64_t id;
                        (void) store_vm_insert(st, &vm, &id);
                        strbuf_printf(&x, "<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'><name>%s</name>"
                                          "<uuid>%s</uuid><memory>2097152</memory><vcpu>2</vcpu><os><type>hvm</type></os>"
                                          "<test:runstate>%d</test:runstate></domain>\n", vm.name, vm.uuid, k % 5 == 4 ? 5 : 1);
                }
                strbuf_append(&x, "</node>\n");
                if (file_write_atomic(path, x.s, x.len, 0644) < 0)
                        exit(1);
                strbuf_free(&x);
                if (hv_connect(uri, 0, 0, NULL, NULL, &src.conns[h]) < 0) {
                        fprintf(stderr, "cannot open %s: %s\n", uri, hv_last_error());
                        exit(1);
                }
        }
        (void) store_commit(st);
        res.setup_s = mono_s() - t0;
        MonitorConfig cfg = { .interval_ms = 10000, .each_conn = each, .conn_source = &src };
        Monitor *m = NULL;
        (void) monitor_new(st, &cfg, &m);
        double *wall = xcalloc((size_t) rounds, sizeof *wall), *cpu = xcalloc((size_t) rounds, sizeof *cpu);
        int64_t now = 1790000000000LL;
        for (int r = 0; r < rounds; r++, now += 10000) {
                double w0 = mono_s(), c0 = cpu_s();
                if (only_mode && r == 1)
                        CALLGRIND_START_INSTRUMENTATION;
                int64_t changes0 = only_mode ? count_rows(st, "SELECT total_changes()") : 0;
                res.samples = monitor_round(m, now);
                if (only_mode) {
                        double c1 = cpu_s();
                        _cleanup_free_ char *same = xasprintf(
                                "SELECT count(*) FROM perf_raw a JOIN perf_raw b ON b.kind = a.kind AND b.object_id = a.object_id"
                                " AND b.at = a.at - 10000 WHERE a.at = %lld AND a.cpu IS b.cpu AND a.memory IS b.memory"
                                " AND a.memory_pct IS b.memory_pct AND a.disk_read IS b.disk_read AND a.disk_write IS b.disk_write"
                                " AND a.disk_iops IS b.disk_iops AND a.net_rx IS b.net_rx AND a.net_tx IS b.net_tx"
                                " AND a.pool_pct IS b.pool_pct", (long long) now);
                        printf("round %d: %d samples (%lld as the round before), %lld rows written, %.3f s CPU\n", r, res.samples,
                               (long long) count_rows(st, same),
                               (long long) (count_rows(st, "SELECT total_changes()") - changes0), c1 - c0);
                }
                wall[r] = mono_s() - w0;
                cpu[r] = cpu_s() - c0;
        }
        if (only_mode)
                CALLGRIND_STOP_INSTRUMENTATION;
        qsort(wall, (size_t) rounds, sizeof *wall, cmp_double);
        qsort(cpu, (size_t) rounds, sizeof *cpu, cmp_double);
        res.wall_med = wall[rounds / 2];
        res.wall_max = wall[rounds - 1];
        res.cpu_med = cpu[rounds / 2];
        res.cpu_max = cpu[rounds - 1];
        monitor_free(m);
        for (size_t h = 0; h < n_hosts; h++)
                hv_conn_free(src.conns[h]);
        free(src.conns);
        free(src.ids);
        free(wall);
        free(cpu);
        drop_store(st);
        return res;
}

typedef struct {
        const char *what;
        int64_t window_s;
        double med_ms, max_ms;
        const char *tier;
        size_t points;
} QueryResult;

/* 30 days for n_vms VMs: raw for the last day at 10 s, 5-minute rollups for
 * 30 days, 1-hour rollups for 30 days. Returns the rows written. */
static size_t fill_history(Store *st, size_t n_vms, int64_t now) {
        size_t rows = 0;
        const int64_t day = 86400000LL;
        (void) store_begin(st);
        for (size_t v = 1; v <= n_vms; v++) {
                size_t nraw = (size_t) (day / 10000);
                StorePerfSample *s = xcalloc(nraw, sizeof *s);
                for (size_t i = 0; i < nraw; i++) {
                        s[i].kind = STORE_PERF_VM;
                        s[i].object_id = (int64_t) v;
                        s[i].at = now - day + (int64_t) i * 10000;
                        for (int k = 0; k < STORE_PERF__COUNT; k++) s[i].v[k] = NAN;
                        s[i].v[STORE_PERF_CPU] = 50 + 40 * sin((double) i / 100);
                        s[i].v[STORE_PERF_MEMORY] = 1024;
                        s[i].v[STORE_PERF_NET_RX] = 1e5;
                }
                (void) store_perf_insert_raw(st, s, nraw);
                rows += nraw;
                free(s);
                for (int tier = STORE_TIER_5M; tier <= STORE_TIER_1H; tier++) {
                        int64_t step = tier == STORE_TIER_5M ? MON_STEP_5M_MS : MON_STEP_1H_MS;
                        size_t n = (size_t) (30 * day / step);
                        StorePerfRollup *r = xcalloc(n, sizeof *r);
                        for (size_t i = 0; i < n; i++) {
                                r[i] = (StorePerfRollup) { .kind = STORE_PERF_VM, .object_id = (int64_t) v,
                                                           .at = mon_bucket(now - 30 * day, step) + (int64_t) i * step, .n = 30 };
                                for (int k = 0; k < STORE_PERF__COUNT; k++) r[i].avg[k] = r[i].max[k] = NAN;
                                r[i].avg[STORE_PERF_CPU] = 50 + 40 * sin((double) i / 10);
                                r[i].max[STORE_PERF_CPU] = r[i].avg[STORE_PERF_CPU] + 5;
                                r[i].avg[STORE_PERF_MEMORY] = r[i].max[STORE_PERF_MEMORY] = 1024;
                        }
                        (void) store_perf_insert_rollups(st, (StorePerfTier) tier, r, n);
                        rows += n;
                        free(r);
                }
                if (v % 20 == 0) {
                        (void) store_commit(st);
                        (void) store_begin(st);
                }
        }
        (void) store_commit(st);
        return rows;
}

static QueryResult bench_query(Store *st, const char *what, int64_t window_s, const char *metric, int64_t now) {
        QueryResult q = { .what = what, .window_s = window_s };
        enum { RUNS = 21 };
        double t[RUNS];
        static char tier[8];
        for (int i = 0; i < RUNS; i++) {
                char why[256];
                double t0 = mono_s();
                json_t *j = monitor_series_json(st, STORE_PERF_VM, 10, metric, now - window_s * 1000, now, 0, NULL, why, sizeof why);
                t[i] = (mono_s() - t0) * 1000;
                if (!j) {
                        fprintf(stderr, "query failed: %s\n", why);
                        exit(1);
                }
                snprintf(tier, sizeof tier, "%s", json_string_value(json_object_get(j, "tier")));
                q.points = json_array_size(json_object_get(json_array_get(json_object_get(j, "series"), 0), "points"));
                json_decref(j);
        }
        qsort(t, RUNS, sizeof *t, cmp_double);
        q.med_ms = t[RUNS / 2];
        q.max_ms = t[RUNS - 1];
        q.tier = tier;
        return q;
}

int main(int argc, char **argv) {
        const char *out_dir = NULL;
        bool quick = false;
        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--out") && i + 1 < argc)
                        out_dir = argv[++i];
                else if (streq(argv[i], "--quick"))
                        quick = true;
                else if (streq(argv[i], "--only") && i + 3 < argc) {
                        /* --only HOSTS VMS_PER_HOST ROUNDS: those rounds alone */
                        size_t h = strtoul(argv[i + 1], NULL, 10), v = strtoul(argv[i + 2], NULL, 10);
                        int n = atoi(argv[i + 3]);
                        log_set_level(LOG_LEVEL_WARN);
                        if (hv_init() < 0 || h == 0 || n < 2)
                                return 1;
                        only_mode = true;
                        RoundResult r = bench_rounds(h, v, n);
                        printf("%zu hosts, %zu VMs, %d rounds: CPU median %.3f s, max %.3f s\n", r.hosts, r.vms, n, r.cpu_med, r.cpu_max);
                        return 0;
                } else {
                        fprintf(stderr, "usage: bench_monitor [--out DIR] [--quick] [--only HOSTS VMS_PER_HOST ROUNDS]\n");
                        return 2;
                }
        }
        log_set_level(LOG_LEVEL_WARN);
        if (hv_init() < 0)
                return 1;
        StrBuf md = {0};
        struct utsname u;
        uname(&u);
        char when[32];
        time_format(now_ms(), when);
        strbuf_printf(&md, "# Monitoring benchmark\n\n`bench_monitor` on %s %s, %ld CPUs, %s. Load average at start: ",
                      u.sysname, u.release, sysconf(_SC_NPROCESSORS_ONLN), when);
        double load[3] = {0};
        if (getloadavg(load, 3) == 3)
                strbuf_printf(&md, "%.1f (other work shares this machine; figures are upper bounds).\n\n", load[0]);
        else
                strbuf_append(&md, "unknown.\n\n");
        strbuf_append(&md, "## Collection rounds (libvirt test-driver hosts, 1 VM in 5 shut off)\n\n"
                           "One round = one bulk stats call per host plus node stats and pools, rates, the batched\n"
                           "transaction (raw samples, latest values, rollups, host_usage, pool usage), alert-rule\n"
                           "evaluation (the 4 built-in rules) and the health tree. CPU is the collector thread's.\n\n"
                           "| hosts | VMs | rounds | round wall, median | max | round CPU, median | max | CPU share at a 10 s interval | set-up |\n"
                           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        static const size_t sizes[][2] = { { 100, 20 }, { 200, 50 }, { 1000, 20 } };
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                int rounds = quick ? 3 : (sizes[i][0] >= 1000 ? 5 : 10);
                RoundResult r = bench_rounds(sizes[i][0], sizes[i][1], rounds);
                strbuf_printf(&md, "| %zu | %zu | %d | %.3f s | %.3f s | %.3f s | %.3f s | %.1f %% of one core | %.1f s |\n", r.hosts,
                              r.vms, rounds, r.wall_med, r.wall_max, r.cpu_med, r.cpu_max, r.cpu_med / 10.0 * 100.0, r.setup_s);
                fprintf(stderr, "%zu hosts: round %.3f s wall, %.3f s CPU (%d samples)\n", r.hosts, r.wall_med, r.cpu_med, r.samples);
        }
        size_t n_vms = quick ? 20 : 100;
        Store *st = fresh_store();
        int64_t now = now_ms(); /* the tier choice looks at the real clock */
        double t0 = mono_s();
        size_t rows = fill_history(st, n_vms, now);
        double fill = mono_s() - t0;
        strbuf_printf(&md, "\n## Series query latency, one VM, 30 days stored\n\n"
                           "%zu VMs with 30 days each: raw 10 s samples for the last day, 5-minute and 1-hour rollups for\n"
                           "30 days: %zu rows (written in %.1f s). `monitor_series_json()` for VM 10, 21 runs each, step\n"
                           "chosen for about 300 points:\n\n"
                           "| window | metric | tier | points | median | max |\n|---|---|---|---:|---:|---:|\n", n_vms, rows, fill);
        static const struct { const char *what; int64_t s; const char *metric; } Q[] = {
                { "1 hour", 3600, "cpu" }, { "24 hours", 86400, "cpu" }, { "7 days", 7 * 86400, "cpu" },
                { "30 days", 30 * 86400, "cpu" }, { "30 days, every metric", 30 * 86400, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(Q); i++) {
                QueryResult q = bench_query(st, Q[i].what, Q[i].s, Q[i].metric, now);
                strbuf_printf(&md, "| %s | %s | %s | %zu | %.2f ms | %.2f ms |\n", q.what, Q[i].metric ? Q[i].metric : "all",
                              q.tier, q.points, q.med_ms, q.max_ms);
        }
        drop_store(st);
        strbuf_append(&md, "\nReproduce: `ninja -C build bench/bench_monitor && build/bench/bench_monitor --out bench/results`.\n");
        fputs(md.s, stdout);
        if (out_dir) {
                _cleanup_free_ char *path = xasprintf("%s/monitor.md", out_dir);
                if (file_write_atomic(path, md.s, md.len, 0644) < 0) {
                        fprintf(stderr, "cannot write %s\n", path);
                        return 1;
                }
        }
        strbuf_free(&md);
        return 0;
}
