/* Benchmark of the protection policies' scan (protect-policy.c) at 20,000
 * VMs: 200 hosts of 100 VMs in 20 host groups, a policy on the parent group
 * (every VM), one on each of 10 rack groups, 200 VMs with their own; each
 * VM one recent point (none is due, the steady state). Times, on one
 * store on /tmp:
 *   - the scan as it was: store_backup_policy_vms() (two correlated
 *     subqueries per VM) and store_backup_last_point_ms() per VM;
 *   - protect_scheduler_round() reading the VMs from the read model: the
 *     first round (every point read) and the next ones (the points indexed
 *     since: none, then 100 new ones).
 * Prints the times; with --out DIR also writes DIR/protect-policy.md.
 * Usage: bench_policy [--vms N] [--rounds N] [--out DIR] */
#define PROTECT_PRIV_ALLOW 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jobs/jobs.h"
#include "model/model.h"
#include "protect/protect-priv.h"
#include "protect/protect.h"
#include "store/store-protect.h"
#include "util/cleanup.h"
#include "util/util.h"

static double bench_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

static void add_point(Store *st, int64_t vm_id, const char *uuid, const char *name, int n) {
        char pid[32];
        snprintf(pid, sizeof pid, "20261201T%06dZ", n);
        StoreBackupPoint p = { .datastore = "ds1", .vm_uuid = uuid, .vm_name = name, .vm_id = vm_id, .point_id = pid,
                               .consistency = "crash", .size_bytes = 1 << 30 };
        if (store_backup_point_add(st, &p) < 0)
                exit(1);
}

int main(int argc, char **argv) {
        size_t n_vms = 20000;
        int rounds = 5;
        const char *out = NULL;
        for (int i = 1; i + 1 < argc; i += 2) {
                if (!strcmp(argv[i], "--vms"))
                        n_vms = (size_t) atol(argv[i + 1]);
                else if (!strcmp(argv[i], "--rounds"))
                        rounds = atoi(argv[i + 1]);
                else if (!strcmp(argv[i], "--out"))
                        out = argv[i + 1];
        }
        char dir[] = "/tmp/armada-bench-policy-XXXXXX";
        if (!mkdtemp(dir))
                return 1;
        _cleanup_free_ char *path = xasprintf("%s/armada.db", dir);
        Store *st = NULL;
        if (store_open(path, &st) < 0)
                return 1;
        size_t per_host = 100, n_hosts = (n_vms + per_host - 1) / per_host;
        double t0 = bench_ms();
        int64_t dc = 0, racks[20];
        if (store_group_create_path(st, "dc", &dc, NULL) < 0)
                return 1;
        for (int g = 0; g < 20; g++) {
                _cleanup_free_ char *gp = xasprintf("dc/rack%02d", g);
                if (store_group_create_path(st, gp, &racks[g], NULL) < 0)
                        return 1;
        }
        (void) store_begin(st); /* the rows below in one transaction (their functions take none) */
        int64_t pid;
        StoreBackupPolicy pol = { .group_id = dc, .every_s = 900, .keep = { 4 } };
        (void) store_backup_policy_set(st, &pol, &pid);
        for (int g = 0; g < 10; g++) {
                pol = (StoreBackupPolicy){ .group_id = racks[g], .every_s = 3600, .keep = { 0, 24 } };
                (void) store_backup_policy_set(st, &pol, &pid);
        }
        size_t made = 0;
        for (size_t h = 0; h < n_hosts; h++) {
                char name[64];
                snprintf(name, sizeof name, "h%zu", h);
                _cleanup_free_ char *uri = xasprintf("test:///h%zu", h);
                int64_t hid;
                if (store_host_insert(st, name, uri, racks[h % 20], "default-pool", "/tmp", &hid) < 0)
                        return 1;
                for (size_t k = 0; k < per_host && made < n_vms; k++, made++) {
                        StoreVm vm = { .host_id = hid, .cpus = 2, .memory_mib = 2048 };
                        snprintf(vm.uuid, sizeof vm.uuid, "%08x-0000-4000-8000-%012x", (unsigned) (h & 0xffffffu), (unsigned) k);
                        snprintf(vm.name, sizeof vm.name, "h%zu-vm%zu", h, k);
                        snprintf(vm.state, sizeof vm.state, k % 5 == 4 ? "stopped" : "running");
                        snprintf(vm.origin, sizeof vm.origin, "discovered");
                        int64_t id;
                        if (store_vm_insert(st, &vm, &id) < 0)
                                return 1;
                        if (made % 100 == 7) {
                                pol = (StoreBackupPolicy){ .vm_id = id, .every_s = 600, .keep = { 10 } };
                                (void) store_backup_policy_set(st, &pol, &pid);
                        }
                        add_point(st, id, vm.uuid, vm.name, (int) (made % 100000));
                }
        }
        (void) store_commit(st);
        double t_seed = bench_ms() - t0;

        /* The scan as it was. */
        double t_old[3];
        for (int pass = 0; pass < 3; pass++) {
                t0 = bench_ms();
                _cleanup_json_ json_t *vms = NULL;
                if (store_backup_policy_vms(st, &vms) < 0)
                        return 1;
                size_t i;
                json_t *v;
                json_array_foreach(vms, i, v) {
                        int64_t last = 0;
                        (void) store_backup_last_point_ms(st, jget_str(v, "vm_uuid"), &last);
                }
                t_old[pass] = bench_ms() - t0;
                if (pass == 0)
                        printf("old scan: %zu VMs covered\n", json_array_size(vms));
        }

        /* The round on the read model. */
        Model *m = NULL;
        Jobs *jobs = NULL;
        ProtectScheduler *s = NULL;
        if (model_new(st, &m) < 0 || jobs_new(st, 1, &jobs) < 0 || protect_scheduler_new(st, jobs, 30000, &s) < 0)
                return 1;
        protect_scheduler_set_model(s, m);
        t0 = bench_ms();
        protect_scheduler_round(s);
        double t_first = bench_ms() - t0, t_next = 0, t_new = 0;
        for (int r = 0; r < rounds; r++) {
                t0 = bench_ms();
                protect_scheduler_round(s);
                t_next += bench_ms() - t0;
        }
        t_next /= rounds;
        /* 100 new points since the last round. */
        (void) store_begin(st);
        for (int k = 0; k < 100; k++) {
                char uuid[64];
                snprintf(uuid, sizeof uuid, "%08x-0000-4000-8000-%012x", k, 0);
                add_point(st, 0, uuid, "x", 99000 + k);
        }
        (void) store_commit(st);
        t0 = bench_ms();
        protect_scheduler_round(s);
        t_new = bench_ms() - t0;
        int64_t queued = 0;
        (void) store_query_i64(st, &queued, "SELECT count(*) FROM job WHERE kind = 'vm.backup'", "");

        char when[64];
        time_t now = time(NULL);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
        double load[3] = { 0 };
        if (getloadavg(load, 3) < 0)
                load[0] = -1;
        _cleanup_free_ char *text = xasprintf(
                "# The protection policies' scan at %zu VMs (bench_policy)\n\n"
                "%s, load %.2f %.2f %.2f on %ld CPUs. %zu VMs on %zu hosts in 20 groups; policies on the parent group,"
                " 10 racks and %zu VMs; one recent point per VM (none due: the steady state). Seeded in %.0f ms.\n\n"
                "| scan | ms |\n|---|---:|\n"
                "| as it was: store_backup_policy_vms() + store_backup_last_point_ms() per VM (3 runs) | %.0f / %.0f / %.0f |\n"
                "| protect_scheduler_round() on the read model, first round (every point read) | %.0f |\n"
                "| the same, next rounds (no new point; mean of %d) | %.1f |\n"
                "| the same, after 100 new points | %.1f |\n\n"
                "Backups queued by the rounds: %lld (none is due).\n",
                n_vms, when, load[0], load[1], load[2], sysconf(_SC_NPROCESSORS_ONLN), n_vms, n_hosts, n_vms / 100,
                t_seed, t_old[0], t_old[1], t_old[2], t_first, rounds, t_next, t_new, (long long) queued);
        fputs(text, stdout);
        if (out) {
                _cleanup_free_ char *p = xasprintf("%s/protect-policy.md", out);
                FILE *f = fopen(p, "w");
                if (f) {
                        fputs(text, f);
                        fclose(f);
                }
        }
        protect_scheduler_free(s);
        model_free(m);
        jobs_free(jobs);
        store_free(st);
        _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", dir);
        return system(cmd) == 0 && queued == 0 ? 0 : 1;
}
