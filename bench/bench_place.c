/* Benchmark of place/: rating one VM against 100 to 100,000 random hosts
 * (median time per placement), and consolidation of 1,000 and 10,000 random
 * servers (hosts used against the lower bound, and time). Prints a markdown
 * report and writes it to <out>/placement.md. Usage: bench_place [--out DIR] */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "place/place.h"

static uint64_t rng_state;

static uint64_t rng_next(void) {          /* splitmix64 */
        uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static double rng_unit(void) {
        return (double) (rng_next() >> 11) * 0x1.0p-53;
}

static double rng_range(double lo, double hi) {
        return lo + (hi - lo) * rng_unit();
}

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static const PlaceMember bench_members[] = { { 7, "web01" }, { 9, "db01" } };

static void random_hosts(PlaceHost *hosts, size_t n) {
        static const double cores[] = { 16, 32, 64, 128 };
        static const double mem[] = { 131072, 262144, 524288, 1048576 };
        for (size_t i = 0; i < n; i++) {
                PlaceHost *h = &hosts[i];
                *h = (PlaceHost) {
                        .id = (int64_t) i,
                        .name = "kvm",
                        .state = rng_unit() < 0.02 ? PLACE_HOST_MAINTENANCE : PLACE_HOST_OK,
                        .cap = { cores[rng_next() % 4] * 100, mem[rng_next() % 4],
                                 rng_range(2000, 20000), rng_range(50000, 500000),
                                 rng_unit() < 0.5 ? 25000 : 100000 },
                        .reserve = { 10, 4096, 100, 10, 10 },
                        .failover_reserve_mib = rng_unit() < 0.5 ? 16384 : 0,
                };
                for (int r = 0; r < PLACE_R__COUNT; r++)
                        h->used[r] = h->cap[r] * rng_range(0, 0.97);
                if (rng_unit() < 0.01) {
                        h->members = bench_members;
                        h->n_members = 2;
                }
        }
}

/* The inputs both engine benchmarks rate: n random hosts (all_full: every
 * one out of memory, the worst case for the reasons, as every host then
 * needs its sentence), one VM with an anti-affinity rule, the default
 * load-balancing policy. The caller frees the hosts. */
static PlaceHost *bench_inputs(size_t n, bool all_full, PlaceDemand *ret_d, PlacePolicy *ret_p) {
        PlaceHost *hosts = xcalloc(n, sizeof *hosts);
        random_hosts(hosts, n);
        for (size_t i = 0; all_full && i < n; i++)
                hosts[i].used[PLACE_R_MEMORY] = hosts[i].cap[PLACE_R_MEMORY];
        static const int32_t anti[] = { 7 };
        *ret_d = (PlaceDemand) {
                .vm_name = "web02",
                .demand = { 400, 8192, 100, 500, 200 },
                .anti_affinity = anti, .n_anti_affinity = 1,
        };
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, ret_p);
        return hosts;
}

typedef struct {
        size_t n;
        double median_us, min_us;
        int fit;
} RateRow;

static RateRow bench_rate(size_t n, int reps, bool all_full) {
        PlaceDemand d;
        PlacePolicy p;
        PlaceHost *hosts = bench_inputs(n, all_full, &d, &p);
        PlaceRating *out = xcalloc(n, sizeof *out);
        double *t = xcalloc((size_t) reps, sizeof *t);
        RateRow row = { .n = n };
        volatile ssize_t sink = 0;
        for (int k = 0; k < reps; k++) {
                double t0 = now_s();
                int fit = place_rate_hosts(hosts, n, &d, &p, out);
                sink += place_best(out, n);
                t[k] = (now_s() - t0) * 1e6;
                row.fit = fit;
        }
        (void) sink;
        qsort(t, (size_t) reps, sizeof *t, cmp_double);
        row.median_us = t[reps / 2];
        row.min_us = t[0];
        free(t);
        free(out);
        free(hosts);
        return row;
}

/* The same estates rated through a prepared table (place_table_new() once,
 * outside the timing, then place_table_rate() + place_score_best() each
 * time), and the scan floor: one pass over five doubles per host (the room
 * left per resource, structure of arrays) summing a weighted score and
 * keeping the best, which no rating of every host can beat by much. */
typedef struct {
        double table_us, table_min_us, build_us, floor_us, floor_min_us;
        int fit;
} TableRow;

static TableRow bench_table(size_t n, int reps, bool all_full) {
        PlaceDemand d;
        PlacePolicy p;
        PlaceHost *hosts = bench_inputs(n, all_full, &d, &p);
        PlaceScore *out = xcalloc(n, sizeof *out);
        double *t = xcalloc((size_t) reps, sizeof *t);
        TableRow row = {0};
        /* the build: the fastest of five (the first pays the page faults
         * of fresh memory, which a daemon that rates often does not) */
        PlaceTable *tab = NULL;
        double t0;
        row.build_us = INFINITY;
        for (int k = 0; k < 5; k++) {
                tab = place_table_free(tab);
                t0 = now_s();
                if (place_table_new(hosts, n, &tab) < 0)
                        abort();
                row.build_us = fmin(row.build_us, (now_s() - t0) * 1e6);
        }
        volatile ssize_t sink = 0;
        for (int k = 0; k < reps; k++) {
                t0 = now_s();
                row.fit = place_table_rate(tab, &d, &p, out);
                sink += place_score_best(out, n);
                t[k] = (now_s() - t0) * 1e6;
        }
        qsort(t, (size_t) reps, sizeof *t, cmp_double);
        row.table_us = t[reps / 2];
        row.table_min_us = t[0];

        /* the floor: free[r][i] = percent left of resource r on host i */
        double *free_pct[PLACE_R__COUNT];
        for (int r = 0; r < PLACE_R__COUNT; r++) {
                free_pct[r] = xcalloc(n, sizeof(double));
                for (size_t i = 0; i < n; i++)
                        free_pct[r][i] = hosts[i].cap[r] > 0 ? 100.0 * (1 - hosts[i].used[r] / hosts[i].cap[r]) : 0;
        }
        for (int k = 0; k < reps; k++) {
                t0 = now_s();
                double best = -1;
                size_t best_i = 0;
                for (size_t i = 0; i < n; i++) {
                        double sum = 0;
                        for (int r = 0; r < PLACE_R__COUNT; r++)
                                sum += p.weight[r] * free_pct[r][i];
                        if (sum > best) {
                                best = sum;
                                best_i = i;
                        }
                }
                sink += (ssize_t) best_i;
                t[k] = (now_s() - t0) * 1e6;
        }
        (void) sink;
        qsort(t, (size_t) reps, sizeof *t, cmp_double);
        row.floor_us = t[reps / 2];
        row.floor_min_us = t[0];
        for (int r = 0; r < PLACE_R__COUNT; r++)
                free(free_pct[r]);
        place_table_free(tab);
        free(t);
        free(out);
        free(hosts);
        return row;
}

/* P2V-like servers for a 64-core, 512 GiB host: a few cores' worth of CPU at
 * the 95th percentile, 2-64 GiB of memory, modest disks and I/O. */
static void random_servers(PlaceServer *s, size_t n, bool mixed) {
        for (size_t i = 0; i < n; i++) {
                if (mixed) {
                        /* memory-heavy databases next to CPU-heavy web servers */
                        if (rng_next() % 2)
                                s[i] = (PlaceServer) { .demand = { rng_range(0, 200), rng_range(20000, 80000),
                                                                   100, 500, 50 } };
                        else
                                s[i] = (PlaceServer) { .demand = { rng_range(300, 1200), rng_range(2048, 6144),
                                                                   100, 500, 50 } };
                        continue;
                }
                double vcpus = (double) (2u << (rng_next() % 4));       /* 2..16 */
                s[i] = (PlaceServer) { .demand = {
                        vcpus * 100 * rng_range(0.1, 0.8),
                        (double) (2048u << (rng_next() % 5)) * rng_range(0.5, 1.0),
                        rng_range(40, 1500),
                        rng_range(50, 6000),
                        rng_range(5, 800),
                } };
        }
}

typedef struct {
        size_t n;
        PlaceConsolidation c;
        double ms;
} ConsRow;

static ConsRow bench_consolidate(size_t n, bool mixed) {
        PlaceServer *s = xcalloc(n, sizeof *s);
        ssize_t *host_of = xcalloc(n, sizeof *host_of);
        random_servers(s, n, mixed);
        PlaceHostModel model = {
                .cap = { 6400, 524288, 20000, 200000, 20000 },
                .reserve = { 10, 8192, 500, 10, 10 },
        };
        ConsRow row = { .n = n };
        double t0 = now_s();
        int r = place_consolidate(s, n, &model, host_of, &row.c);
        row.ms = (now_s() - t0) * 1e3;
        if (r < 0) {
                fprintf(stderr, "place_consolidate: %s\n", strerror(-r));
                exit(EXIT_FAILURE);
        }
        free(host_of);
        free(s);
        return row;
}

static void machine_info(StrBuf *b) {
        struct utsname u;
        if (uname(&u) == 0)
                strbuf_printf(b, "- uname -a: `%s %s %s %s %s`\n", u.sysname, u.nodename, u.release,
                              u.version, u.machine);
        char *cpuinfo = NULL;
        size_t len;
        if (file_read_all("/proc/cpuinfo", &cpuinfo, &len) == 0) {
                char *m = strstr(cpuinfo, "model name");
                if (m) {
                        char *colon = strchr(m, ':'), *nl = strchr(m, '\n');
                        if (colon && nl && colon < nl) {
                                *nl = 0;
                                strbuf_printf(b, "- CPU: %s\n", colon + 2);
                        }
                }
                free(cpuinfo);
        }
        strbuf_printf(b, "- nproc: %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
}

int main(int argc, char **argv) {
        const char *out_dir = NULL;
        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--out") && i + 1 < argc)
                        out_dir = argv[++i];
                else {
                        fprintf(stderr, "usage: %s [--out DIR]\n", argv[0]);
                        return EXIT_FAILURE;
                }
        }

        StrBuf b = {0};
        strbuf_append(&b, "# Placement benchmark (place/)\n\n");
        machine_info(&b);
        strbuf_printf(&b, "- command: `%s%s%s` (`make bench` runs every `build/bench/bench_*` this way)\n",
                      argv[0], out_dir ? " --out " : "", out_dir ? out_dir : "");
        strbuf_printf(&b, "- compiler: gcc %s, %s%s\n\n", __VERSION__,
#ifdef __OPTIMIZE__
                      "optimized",
#else
                      "NOT optimized (numbers meaningless)",
#endif
#ifdef __SANITIZE_ADDRESS__
                      ", with AddressSanitizer (numbers meaningless)"
#else
                      ""
#endif
                      );

        strbuf_append(&b, "## Rating one VM (load balancing, default weights, anti-affinity rule)\n\n"
                          "Random hosts (16-128 cores, 128 GiB-1 TiB, 0-97% used, 2% in maintenance, "
                          "1% running a conflicting VM). Time of `place_rate_hosts()` + `place_best()`.\n\n"
                          "| hosts | repetitions | median | fastest | hosts that fit |\n"
                          "|------:|------------:|-------:|--------:|---------------:|\n");
        static const size_t sizes[] = { 100, 1000, 10000, 100000, 10000 };
        static const int reps[] = { 5000, 2000, 300, 40, 300 };
        rng_state = 42;
        for (size_t k = 0; k < ELEMENTSOF(sizes); k++) {
                bool all_full = k == ELEMENTSOF(sizes) - 1;
                RateRow r = bench_rate(sizes[k], reps[k], all_full);
                strbuf_printf(&b, "| %zu%s | %d | %.1f µs | %.1f µs | %d |\n", r.n,
                              all_full ? " (all full: a reason each)" : "", reps[k], r.median_us, r.min_us, r.fit);
        }

        strbuf_append(&b, "\n## Rating through a prepared table, against the scan floor\n\n"
                          "The same estates. `place_table_new()` once (\"build\": the fastest of five), then each repetition "
                          "`place_table_rate()` + `place_score_best()` (ratings identical to `place_rate_hosts()`; "
                          "reasons written only on demand, with `place_table_reason()`). The scan floor is one pass "
                          "over five doubles per host (room left per resource, an array per resource) keeping the "
                          "best weighted sum: the least any rating of every host costs, timed in the same run.\n\n"
                          "| hosts | build | table: median | table: fastest | scan floor: median | scan floor: fastest | hosts that fit |\n"
                          "|------:|------:|--------------:|---------------:|-------------------:|--------------------:|---------------:|\n");
        rng_state = 42;
        for (size_t k = 0; k < ELEMENTSOF(sizes); k++) {
                bool all_full = k == ELEMENTSOF(sizes) - 1;
                TableRow r = bench_table(sizes[k], reps[k], all_full);
                strbuf_printf(&b, "| %zu%s | %.1f µs | %.1f µs | %.1f µs | %.1f µs | %.1f µs | %d |\n", sizes[k],
                              all_full ? " (all full)" : "", r.build_us, r.table_us, r.table_min_us, r.floor_us,
                              r.floor_min_us, r.fit);
        }

        strbuf_append(&b, "\n## Consolidation (P2V assessment)\n\n"
                          "Random servers (2-16 vCPUs at 10-80%, 1-32 GiB at 50-100%, 40-1500 GiB, "
                          "50-6000 IOPS, 5-800 Mbit/s) onto 64-core, 512 GiB hosts with reserves "
                          "(10%, 8 GiB, 500 GiB, 10%, 10%).\n\n"
                          "\"Mixed\" sets are half memory-heavy (20-80 GiB, under 2 cores), half "
                          "CPU-heavy (3-12 cores, 2-6 GiB).\n\n"
                          "| servers | profile | hosts used | lower bound | ratio | unplaceable | time |\n"
                          "|--------:|:--------|-----------:|------------:|------:|------------:|-----:|\n");
        static const size_t cons[] = { 1000, 10000, 1000, 10000 };
        rng_state = 7;
        for (size_t k = 0; k < ELEMENTSOF(cons); k++) {
                bool mixed = k >= 2;
                ConsRow r = bench_consolidate(cons[k], mixed);
                strbuf_printf(&b, "| %zu | %s | %zu | %zu | %.3f | %zu | %.1f ms |\n", r.n,
                              mixed ? "mixed" : "P2V-like", r.c.n_hosts,
                              r.c.lower_bound, (double) r.c.n_hosts / (double) r.c.lower_bound,
                              r.c.n_unplaceable, r.ms);
        }

        fputs(b.s, stdout);
        int ret = EXIT_SUCCESS;
        if (out_dir) {
                _cleanup_free_ char *path = xasprintf("%s/placement.md", out_dir);
                /* What follows the marker in the old report (numbers measured
                 * by other means, e.g. bench/placement-ratings) is kept. */
                static const char marker[] = "<!-- kept by bench_place: everything below -->";
                _cleanup_free_ char *old = NULL;
                size_t old_len;
                if (file_read_all(path, &old, &old_len) == 0 && strstr(old, marker))
                        strbuf_printf(&b, "\n%s", strstr(old, marker));
                int r = mkdir_p(out_dir, 0755);
                if (r >= 0)
                        r = file_write_atomic(path, b.s, b.len, 0644);
                if (r < 0) {
                        fprintf(stderr, "cannot write '%s': %s\n", path, strerror(-r));
                        ret = EXIT_FAILURE;
                }
        }
        strbuf_free(&b);
        return ret;
}
