/* Unit tests of ha's pure parts (failure declaration with injected time,
 * restart order and candidates, priorities, fence argv, the command
 * runner), the migration flags and URIs of hv-migrate, and store-ha's SQL
 * on a temporary database. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <libvirt/libvirt.h>

#include "ha/ha.h"
#include "hv/hv-migrate.h"
#include "store/store-ha.h"

static void test_watch_declares_after_bounded_time(void **state) {
        HaWatch w = {0};
        /* Never seen alive: never declared (armadad may start while it is down). */
        assert_int_equal(ha_watch_step(&w, false, 0, 3000), HA_EV_NONE);
        assert_int_equal(ha_watch_step(&w, false, 100000, 3000), HA_EV_NONE);
        assert_int_equal(ha_watch_step(&w, true, 100000, 3000), HA_EV_UP);
        assert_int_equal(ha_watch_step(&w, true, 100100, 3000), HA_EV_NONE);
        /* Dead from 100200 on: suspect at once, failed 3 s after the last
         * time it was alive, and only once. */
        assert_int_equal(ha_watch_step(&w, false, 100200, 3000), HA_EV_SUSPECT);
        assert_int_equal(ha_watch_step(&w, false, 103099, 3000), HA_EV_NONE);
        assert_int_equal(ha_watch_step(&w, false, 103100, 3000), HA_EV_FAILED);
        assert_int_equal(w.state, HA_WATCH_FAILED);
        assert_int_equal(ha_watch_step(&w, false, 200000, 3000), HA_EV_NONE);
        assert_int_equal(ha_watch_step(&w, true, 200100, 3000), HA_EV_BACK);
        assert_int_equal(w.state, HA_WATCH_OK);
}

static void test_watch_blip_is_not_a_failure(void **state) {
        HaWatch w = {0};
        ha_watch_step(&w, true, 0, 3000);
        assert_int_equal(ha_watch_step(&w, false, 1000, 3000), HA_EV_SUSPECT);
        assert_int_equal(ha_watch_step(&w, true, 2500, 3000), HA_EV_BACK);
        assert_int_equal(ha_watch_step(&w, false, 4000, 3000), HA_EV_SUSPECT);
        assert_int_equal(ha_watch_step(&w, false, 5400, 3000), HA_EV_NONE);
        assert_int_equal(ha_watch_step(&w, false, 5500, 3000), HA_EV_FAILED);
}

static void test_watch_sparse_ticks(void **state) {
        /* A tick that comes late (a long failover elsewhere) declares at once. */
        HaWatch w = {0};
        ha_watch_step(&w, true, 0, 3000);
        assert_int_equal(ha_watch_step(&w, false, 9000, 3000), HA_EV_FAILED);
}

static void test_restart_order(void **state) {
        StoreHaRef r[] = { { 7, 3 }, { 2, 0 }, { 5, 1 }, { 1, 2 }, { 3, 1 }, { 9, 0 }, { 4, 2 } };
        ha_restart_order(r, ELEMENTSOF(r));
        const int64_t want[] = { 3, 5, 1, 4, 7, 2, 9 };
        for (size_t i = 0; i < ELEMENTSOF(r); i++)
                assert_int_equal(r[i].vm_id, want[i]);
        ha_restart_order(r, 0);
}

static void test_candidates(void **state) {
        /* Rated best first; 0 = cannot take it. Members 2, 3, 4; 1 failed. */
        HaRated rated[] = { { 9, 90 }, { 3, 80 }, { 1, 70 }, { 4, 0 }, { 2, 10 } };
        int64_t members[] = { 1, 2, 3, 4 };
        int64_t out[8];
        size_t n = ha_candidates(rated, 5, members, 4, 1, out, 8);
        assert_int_equal(n, 2);
        assert_int_equal(out[0], 3);
        assert_int_equal(out[1], 2);
        assert_int_equal(ha_candidates(rated, 5, members, 4, 1, out, 1), 1);
        assert_int_equal(ha_candidates(rated, 5, members, 0, 1, out, 8), 0);
        HaRated none[] = { { 2, 0 }, { 3, 0 } };
        assert_int_equal(ha_candidates(none, 2, members, 4, 1, out, 8), 0);
}

static void test_priority(void **state) {
        int p = -1;
        assert_int_equal(ha_priority_parse("high", &p), 0);
        assert_int_equal(p, 1);
        assert_int_equal(ha_priority_parse("low", &p), 0);
        assert_int_equal(p, 3);
        assert_int_equal(ha_priority_parse("off", &p), 0);
        assert_int_equal(p, 0);
        assert_int_equal(ha_priority_parse("HIGH", &p), -EINVAL);
        assert_int_equal(ha_priority_parse(NULL, &p), -EINVAL);
        assert_string_equal(ha_priority_name(2), "medium");
        assert_string_equal(ha_priority_name(42), "off");
}

static void test_argv_parse(void **state) {
        char why[256];
        char **a = ha_argv_parse("[\"fence_ipmilan\", \"-a\", \"10.0.0.5\"]", why, sizeof why);
        assert_non_null(a);
        assert_string_equal(a[0], "fence_ipmilan");
        assert_string_equal(a[2], "10.0.0.5");
        assert_null(a[3]);
        ha_argv_free(a);
        assert_null(ha_argv_parse("\"poweroff; rm -rf /\"", why, sizeof why));
        assert_null(ha_argv_parse("[]", why, sizeof why));
        assert_null(ha_argv_parse("[\"ok\", 3]", why, sizeof why));
        assert_non_null(strstr(why, "Argument 2"));
        assert_null(ha_argv_parse("[\"\"]", why, sizeof why));
        assert_null(ha_argv_parse("[\"a\\u0000b\"]", why, sizeof why));
        assert_null(ha_argv_parse(NULL, why, sizeof why));
        ha_argv_free(NULL);
}

static void test_run_command(void **state) {
        char why[512];
        char *ok[] = { "true", NULL };
        assert_int_equal(ha_run_command(ok, 5000, why, sizeof why), 0);
        char *bad[] = { "sh", "-c", "echo the BMC said no >&2; exit 3", NULL };
        assert_int_equal(ha_run_command(bad, 5000, why, sizeof why), -EIO);
        assert_non_null(strstr(why, "exited with status 3"));
        assert_non_null(strstr(why, "the BMC said no"));
        /* No shell: the argument is one word, not a command line. */
        char *literal[] = { "test", "-n", "$(false); exit 1", NULL };
        assert_int_equal(ha_run_command(literal, 5000, why, sizeof why), 0);
        char *slow[] = { "sleep", "10", NULL };
        int64_t t0 = mono_ms();
        assert_int_equal(ha_run_command(slow, 300, why, sizeof why), -ETIMEDOUT);
        assert_true(mono_ms() - t0 < 3000);
        assert_non_null(strstr(why, "did not finish within 300 ms"));
        char *missing[] = { "/nonexistent/armada-fence", NULL };
        assert_true(ha_run_command(missing, 1000, why, sizeof why) < 0);
        /* A fence command that echoes its secret: the quoted output does not. */
        char *echo[] = { "sh", "-c", "echo \"login with $0 failed\"; exit 1", "s3cret-bmc", NULL };
        assert_int_equal(ha_run_command(echo, 5000, why, sizeof why), -EIO);
        assert_null(strstr(why, "s3cret-bmc"));
        assert_non_null(strstr(why, "login with *** failed"));
        char text[] = "ipmitool -H 10.0.0.5 -P hunter22 -P hunter22 off";
        char *args[] = { "fence_ipmilan", "--ip", "10.0.0.5", "--password", "hunter22", "--action", "off", NULL };
        assert_int_equal(ha_redact_args(text, args), strlen("ipmitool -H *** -P *** -P *** off"));
        assert_string_equal(text, "ipmitool -H *** -P *** -P *** off");
}

static void test_migrate_uri_and_flags(void **state) {
        char *u = hv_migrate_uri_for("qemu+tcp://10.253.77.12/system");
        assert_string_equal(u, "tcp://10.253.77.12");
        free(u);
        u = hv_migrate_uri_for("qemu+ssh://root@kvm2.example.com:2222/system?keyfile=/k");
        assert_string_equal(u, "tcp://kvm2.example.com");
        free(u);
        u = hv_migrate_uri_for("qemu+tls://[fd00::2]/system");
        assert_string_equal(u, "tcp://[fd00::2]");
        free(u);
        assert_null(hv_migrate_uri_for("qemu:///system"));
        assert_null(hv_migrate_uri_for("test:///default"));
        assert_null(hv_migrate_uri_for(NULL));

        HvMigrateOptions o = { .dest_uri = "x" };
        unsigned long base = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PERSIST_DEST | VIR_MIGRATE_UNDEFINE_SOURCE;
        assert_int_equal(hv_migrate_flags(&o), base);
        o.shared_storage_known = true;
        assert_int_equal(hv_migrate_flags(&o), base | VIR_MIGRATE_UNSAFE);
        /* Copying the disks is never "unsafe": UNSAFE only for shared storage. */
        o.with_storage = true;
        assert_int_equal(hv_migrate_flags(&o), base | VIR_MIGRATE_NON_SHARED_DISK);
        o = (HvMigrateOptions) { .auto_converge = true, .postcopy = true };
        assert_int_equal(hv_migrate_flags(&o), base | VIR_MIGRATE_AUTO_CONVERGE | VIR_MIGRATE_POSTCOPY);
}

/* ---- store-ha ---- */

static Store *open_db(char path[64]) {
        snprintf(path, 64, "/tmp/armada-test-ha-XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        Store *st = NULL;
        assert_int_equal(store_open(path, &st), 0);
        return st;
}

static void close_db(Store *st, const char *path) {
        store_free(st);
        unlink(path);
        char p[80];
        snprintf(p, sizeof p, "%s-wal", path);
        unlink(p);
        snprintf(p, sizeof p, "%s-shm", path);
        unlink(p);
}

static int64_t add_vm(Store *st, const char *name, int64_t host, const char *state) {
        StoreVm vm = { .host_id = host, .cpus = 1, .memory_mib = 64 };
        uuid_generate(vm.uuid);
        snprintf(vm.name, sizeof vm.name, "%s", name);
        snprintf(vm.state, sizeof vm.state, "%s", state);
        int64_t id;
        assert_int_equal(store_vm_insert(st, &vm, &id), 0);
        return id;
}

static void test_store_clusters_and_ha(void **state) {
        char path[64];
        Store *st = open_db(path);
        int64_t h[4];
        for (int i = 0; i < 4; i++) {
                char n[8];
                snprintf(n, sizeof n, "h%d", i + 1);
                assert_int_equal(store_host_insert(st, n, "test:///default", STORE_ROOT_GROUP_ID, "armada", "/x", &h[i]), 0);
        }
        int64_t c;
        assert_int_equal(store_cluster_insert(st, "c1", "/srv/c1", 1, h, 3, &c), 0);
        int64_t c2;
        /* h3 is taken; nothing of c2 remains. */
        assert_int_equal(store_cluster_insert(st, "c2", "/srv/c2", 1, &h[2], 2, &c2), -EEXIST);
        assert_int_equal(store_cluster_find(st, "c2", &c2), -ENOENT);
        assert_int_equal(store_cluster_insert(st, "c1", "/srv/c1", 1, &h[3], 1, &c2), -EEXIST);
        int64_t bogus = 999;
        assert_int_equal(store_cluster_insert(st, "c3", "/srv/c3", 0, &bogus, 1, &c2), -ENOENT);

        int64_t got;
        char *shared = NULL;
        assert_int_equal(store_cluster_of_host(st, h[1], &got, &shared), 0);
        assert_int_equal(got, c);
        assert_string_equal(shared, "/srv/c1");
        free(shared);
        assert_int_equal(store_cluster_of_host(st, h[3], &got, NULL), -ENOENT);
        int64_t *m = NULL;
        assert_int_equal(store_cluster_members(st, c, &m), 3);
        assert_int_equal(m[0], h[0]);
        free(m);

        int64_t a = add_vm(st, "a", h[0], "running"), b = add_vm(st, "b", h[0], "running"), x = add_vm(st, "x", h[0], "stopped");
        assert_int_equal(store_vm_ha_set(st, b, 1), 0);
        assert_int_equal(store_vm_ha_set(st, a, 3), 0);
        assert_int_equal(store_vm_ha_set(st, a, 2), 0);
        int p;
        assert_int_equal(store_vm_ha_get(st, a, &p), 0);
        assert_int_equal(p, 2);
        StoreHaRef *refs = NULL;
        assert_int_equal(store_ha_vms_on_host(st, h[0], &refs), 3);
        assert_int_equal(refs[0].vm_id, b);
        assert_int_equal(refs[1].vm_id, a);
        assert_int_equal(refs[2].vm_id, x);
        assert_int_equal(refs[2].priority, 0);
        free(refs);
        assert_int_equal(store_vm_ha_set(st, a, 0), 0);
        assert_int_equal(store_vm_ha_get(st, a, &p), -ENOENT);

        json_t *cl = NULL;
        assert_int_equal(store_cluster_get_json(st, c, &cl), 0);
        assert_non_null(cl);
        assert_int_equal(json_array_size(json_object_get(cl, "hosts")), 3);
        assert_int_equal(json_integer_value(json_object_get(cl, "n_ha_vms")), 1);
        json_decref(cl);

        char *argv = NULL;
        assert_int_equal(store_host_fence_get(st, h[0], &argv), -ENOENT);
        assert_int_equal(store_host_fence_set(st, h[0], "[\"true\"]"), 0);
        assert_int_equal(store_host_fence_set(st, h[0], "[\"false\"]"), 0);
        assert_int_equal(store_host_fence_get(st, h[0], &argv), 0);
        assert_string_equal(argv, "[\"false\"]");
        free(argv);
        assert_int_equal(store_host_fence_set(st, h[0], NULL), 0);
        assert_int_equal(store_host_fence_get(st, h[0], &argv), -ENOENT);

        assert_int_equal(store_ha_pending_add(st, b, h[0], "no room"), 0);
        assert_int_equal(store_ha_pending_add(st, b, h[0], "still no room"), 0);
        assert_int_equal(store_ha_pending_list(st, &refs), 1);
        assert_int_equal(refs[0].vm_id, b);
        assert_int_equal(refs[0].priority, 1);
        free(refs);
        json_t *pj = NULL;
        assert_int_equal(store_ha_pending_json(st, &pj), 0);
        assert_string_equal(json_string_value(json_object_get(json_array_get(pj, 0), "reason")), "still no room");
        json_decref(pj);
        assert_int_equal(store_ha_pending_remove(st, b), 0);
        assert_int_equal(store_ha_pending_list(st, &refs), 0);
        free(refs);

        int64_t *ids = NULL;
        assert_int_equal(store_ha_vms_without_xml(st, &ids), 1);
        free(ids);
        assert_int_equal(store_vm_xml_set(st, b, "<domain/>"), 0);
        assert_int_equal(store_ha_vms_without_xml(st, &ids), 0);
        free(ids);
        char *xml = NULL;
        assert_int_equal(store_vm_xml_get(st, b, &xml), 0);
        assert_string_equal(xml, "<domain/>");
        free(xml);

        /* Deleting the cluster leaves hosts and VMs. */
        assert_int_equal(store_cluster_delete(st, c), 0);
        assert_int_equal(store_cluster_delete(st, c), -ENOENT);
        assert_int_equal(store_cluster_of_host(st, h[0], &got, NULL), -ENOENT);
        StoreVm vm;
        assert_int_equal(store_vm_get(st, b, &vm), 0);
        close_db(st, path);
}

int main(void) {
        log_set_level(LOG_LEVEL_ERROR);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_watch_declares_after_bounded_time),
                cmocka_unit_test(test_watch_blip_is_not_a_failure),
                cmocka_unit_test(test_watch_sparse_ticks),
                cmocka_unit_test(test_restart_order),
                cmocka_unit_test(test_candidates),
                cmocka_unit_test(test_priority),
                cmocka_unit_test(test_argv_parse),
                cmocka_unit_test(test_run_command),
                cmocka_unit_test(test_migrate_uri_and_flags),
                cmocka_unit_test(test_store_clusters_and_ha),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
