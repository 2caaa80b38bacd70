/* bench_ratings: the ratings operation (placement_ratings(), what
 * GET /placement/ratings calls, and the JSON it prints) at 1,000 and
 * 10,000 hosts, in process: the API's own cost on top (HTTP, the token)
 * is measured through the API by bench/placement-ratings.
 *
 * Each size: N hosts (16 CPUs, 64 GiB, ok) with 2 running VMs each in a
 * temporary store. Then REQUESTS ratings, and between them what an idle
 * estate does: every 20th request is preceded by a "monitor round" (every
 * host's measured usage written in one transaction, then
 * placement_refresh(), as monitor.c does after its commit), and every
 * 5th by one VM's state change that no one refreshes (the request itself
 * patches it). Reports p50/p99 of the request (rating + JSON printed), of
 * placement_refresh() after a round, and of a whole read of the inputs
 * (a store opened afresh rating once: what every rating after any change
 * paid before the inputs were patched).
 *
 * Usage: bench_ratings [--hosts N] [--requests R] [--out DIR]
 * (--hosts: one size; default 1000 and 10000). With --out, writes
 * DIR/placement-live.md. */
#include <errno.h>
#include <math.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "placement/placement.h"
#include "store/store-monitor.h"
#include "store/store-place.h"

/* --limit: the best N hosts only (the API's limit); 0 every host. */
static int bench_limit;

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p) {
        if (n == 0)
                return NAN;
        qsort(v, n, sizeof *v, cmp_d);
        size_t i = (size_t) (p / 100.0 * (double) n);
        return v[i < n ? i : n - 1];
}

typedef struct {
        int hosts, requests;
        double req_p50, req_p99, refresh_p50, refresh_p99, whole_p50, whole_p99;
        size_t body;
} Result;

static int populate(Store *st, int hosts, int64_t **ret_vms) {
        int64_t *vms = calloc((size_t) hosts * 2, sizeof *vms);
        int r = store_begin(st);
        for (int i = 0; r >= 0 && i < hosts; i++) {
                char name[32], uri[64];
                snprintf(name, sizeof name, "h%05d", i);
                snprintf(uri, sizeof uri, "test:///bench/%05d.xml", i);
                int64_t id;
                r = store_host_insert(st, name, uri, STORE_ROOT_GROUP_ID, "armada", NULL, &id);
                if (r >= 0)
                        r = store_host_set_facts(st, id, 16, 65536, 60000, "TEST", "test", name, "/tmp");
                if (r >= 0)
                        r = store_host_set_state(st, id, "ok", NULL);
                for (int k = 0; r >= 0 && k < 2; k++) {
                        StoreVm vm = { .host_id = id, .cpus = 2, .memory_mib = 4096 };
                        uuid_generate(vm.uuid);
                        snprintf(vm.name, sizeof vm.name, "h%05d-vm%d", i, k);
                        snprintf(vm.state, sizeof vm.state, "running");
                        snprintf(vm.origin, sizeof vm.origin, "created");
                        r = store_vm_insert(st, &vm, &vms[i * 2 + k]);
                }
        }
        r = store_end(st, r < 0 ? r : 0);
        *ret_vms = vms;
        return r;
}

static int monitor_round(Store *st, int hosts, int round) {
        int r = store_begin(st);
        for (int i = 0; r >= 0 && i < hosts; i++)
                r = store_host_usage_set(st, i + 1, 10.0 + (i + round) % 50, 8000.0 + (i * 7 + round) % 4000, 1, 1, now_ms());
        return store_end(st, r < 0 ? r : 0);
}

static int run(int hosts, int requests, Result *res) {
        char dir[] = "/tmp/armada-bench-ratings-XXXXXX";
        if (!mkdtemp(dir))
                return -errno;
        char path[128];
        snprintf(path, sizeof path, "%s/t.db", dir);
        Store *st = NULL;
        int r = store_open(path, &st);
        if (r < 0)
                return r;
        int64_t *vms = NULL;
        double t0 = now_s();
        r = populate(st, hosts, &vms);
        if (getenv("BENCH_VERBOSE"))
                fprintf(stderr, "populated %d hosts in %.1f s\n", hosts, now_s() - t0);
        if (r >= 0)
                r = monitor_round(st, hosts, 0);
        OpCaller c = { .subj = { .user_id = 1, .role = ROLE_ADMIN }, .user_id = 1, .user_name = "admin", .role_name = "administrator" };
        PlacementRateSpec spec = { .cpus = 2, .memory_mib = 4096, .limit = bench_limit };
        double *req = calloc((size_t) requests + 1, sizeof *req), *ref = calloc((size_t) requests + 1, sizeof *ref);
        size_t nref = 0;
        for (int i = -10; r >= 0 && i < requests; i++) {
                if (i >= 0 && i % 20 == 0 && !getenv("BENCH_QUIET")) {
                        r = monitor_round(st, hosts, i);
                        double t = now_s();
                        if (r >= 0)
                                r = placement_refresh(st);
                        ref[nref++] = (now_s() - t) * 1000;
                }
                if (i >= 0 && i % 5 == 2 && r >= 0 && !getenv("BENCH_QUIET")) {
                        int64_t vm = vms[(size_t) (i * 7919) % ((size_t) hosts * 2)];
                        r = store_vm_set_state(st, vm, i % 10 == 2 ? "stopped" : "running");
                        r = r < 0 ? r : 0;
                }
                if (r < 0)
                        break;
                double t = now_s();
                OpError err = {0};
                json_t *j = NULL;
                r = placement_ratings(st, &c, &spec, &j, &err);
                if (r < 0)
                        break;
                char *text = json_dumps(j, JSON_COMPACT);
                if (i >= 0)
                        req[i] = (now_s() - t) * 1000;
                res->body = strlen(text);
                free(text);
                json_decref(j);
        }
        double whole[5];
        for (int k = 0; r >= 0 && k < 5; k++) {
                Store *fresh = NULL;
                r = store_open(path, &fresh);
                PlacementDemand d = { .cpus = 2, .memory_mib = 4096 };
                PlacementRating *out = NULL;
                double t = now_s();
                if (r >= 0)
                        r = placement_rate(fresh, 0, &d, &out);
                whole[k] = (now_s() - t) * 1000;
                free(out);
                store_free(fresh);
        }
        if (r >= 0) {
                res->hosts = hosts;
                res->requests = requests;
                res->req_p50 = pct(req, (size_t) requests, 50);
                res->req_p99 = pct(req, (size_t) requests, 99);
                res->refresh_p50 = pct(ref, nref, 50);
                res->refresh_p99 = pct(ref, nref, 99);
                res->whole_p50 = pct(whole, 5, 50);
                res->whole_p99 = pct(whole, 5, 99);
        }
        free(req);
        free(ref);
        free(vms);
        store_free(st);
        char cmd[160];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                fprintf(stderr, "cannot remove %s\n", dir);
        return r < 0 ? r : 0;
}

int main(int argc, char **argv) {
        int sizes[2] = { 1000, 10000 }, nsizes = 2, requests = 400;
        const char *out = NULL;
        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--hosts") && i + 1 < argc) {
                        sizes[0] = atoi(argv[++i]);
                        nsizes = 1;
                } else if (streq(argv[i], "--requests") && i + 1 < argc)
                        requests = atoi(argv[++i]);
                else if (streq(argv[i], "--out") && i + 1 < argc)
                        out = argv[++i];
                else if (streq(argv[i], "--limit") && i + 1 < argc)
                        bench_limit = atoi(argv[++i]);
                else {
                        fprintf(stderr, "usage: bench_ratings [--hosts N] [--requests R] [--limit N] [--out DIR]\n");
                        return 2;
                }
        }
        log_set_level(LOG_LEVEL_WARN);
        mallopt(M_MMAP_THRESHOLD, 8 << 20);    /* as armadad's main() */
        mallopt(M_TRIM_THRESHOLD, 32 << 20);
        Result res[2] = {0};
        for (int s = 0; s < nsizes; s++) {
                int r = run(sizes[s], requests, &res[s]);
                if (r < 0) {
                        fprintf(stderr, "bench_ratings: %d hosts failed: %s\n", sizes[s], strerror(-r));
                        return 1;
                }
        }
        double load[1] = {0};
        if (getloadavg(load, 1) < 1)
                load[0] = NAN;
        StrBuf b = {0};
        strbuf_printf(&b, "# Ratings from the live inputs (bench_ratings)\n\n"
                          "`build/bench/bench_ratings` (bench/run runs it): `placement_ratings()` — what GET "
                          "/placement/ratings calls — plus printing its JSON, in process, on a store of N hosts x 2 "
                          "VMs; a monitor round (every host's usage, one transaction, then `placement_refresh()`) "
                          "before every 20th request and one unrefreshed VM state change before every 5th. "
                          "\"Whole read\" is one rating on a store opened afresh: what every rating after a change "
                          "paid before the inputs were patched. Load average %.1f at the end.\n\n"
                          "| hosts | requests | request p50 | request p99 | body | refresh after a round p50 | p99 |"
                          " whole read p50 | p99 |\n|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n", load[0]);
        for (int s = 0; s < nsizes; s++)
                strbuf_printf(&b, "| %d | %d | %.2f ms | %.2f ms | %zu | %.2f ms | %.2f ms | %.1f ms | %.1f ms |\n",
                              res[s].hosts, res[s].requests, res[s].req_p50, res[s].req_p99, res[s].body, res[s].refresh_p50,
                              res[s].refresh_p99, res[s].whole_p50, res[s].whole_p99);
        fputs(b.s, stdout);
        if (out) {
                char path[512];
                snprintf(path, sizeof path, "%s/placement-live.md", out);
                FILE *f = fopen(path, "w");
                if (!f || fputs(b.s, f) < 0 || fclose(f) != 0) {
                        fprintf(stderr, "cannot write %s\n", path);
                        return 1;
                }
        }
        strbuf_free(&b);
        return 0;
}
