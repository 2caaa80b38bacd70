/* Unit tests of the capabilities' store files (store-monitor, -place,
 * -protect, -library, -ha, -network) where the two engines differ: what
 * SQLite's INSERT OR REPLACE, rowid, json_group_array and triggers gave,
 * each file must give on PostgreSQL too. Run on SQLite, and on PostgreSQL
 * when ARMADA_TEST_PG_URL is set (tmpstore.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "store/store.h"
#include "store/store-copy.h"
#include "store/store-ha.h"
#include "store/store-library.h"
#include "store/store-monitor.h"
#include "store/store-network.h"
#include "store/store-place.h"
#include "store/store-protect.h"
#include "tmpstore.h"

typedef struct {
        TmpStore *t;
        Store *st;
        int64_t host, vm, vm2;
} Fixture;

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof *f);
        f->t = tmpstore_new("caps");
        if (!f->t) {
                free(f);
                return -1;
        }
        f->st = f->t->st;
        if (store_host_insert(f->st, "h1", "test:///default", STORE_ROOT_GROUP_ID, "default", "/var/lib/x", &f->host) < 0)
                return -1;
        StoreVm v = { .host_id = f->host, .cpus = 1, .memory_mib = 512 };
        snprintf(v.uuid, sizeof v.uuid, "00000000-0000-4000-8000-000000000001");
        snprintf(v.name, sizeof v.name, "zz-vm");
        snprintf(v.state, sizeof v.state, "running");
        snprintf(v.origin, sizeof v.origin, "created");
        if (store_vm_insert(f->st, &v, &f->vm) < 0)
                return -1;
        snprintf(v.uuid, sizeof v.uuid, "00000000-0000-4000-8000-000000000002");
        snprintf(v.name, sizeof v.name, "aa-vm");
        if (store_vm_insert(f->st, &v, &f->vm2) < 0)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        int r = tmpstore_free(f->t);
        free(f);
        return r;
}

/* A VM's snapshots come back in the order they were first written (parents
 * before children), also when they share a creation time and one is
 * rewritten: SQLite's rowid, PostgreSQL's seq column. */
static void test_snapshots_in_insertion_order(void **state) {
        Fixture *f = *state;
        static const char *const names[] = { "root", "child", "alpha", "grandchild" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                assert_int_equal(store_snapshot_put(f->st, f->vm, names[i], 1000, false, "<domainsnapshot/>"), 0);
        /* rewritten: keeps its place, takes the new values */
        assert_int_equal(store_snapshot_put(f->st, f->vm, "child", 1000, true, "<domainsnapshot><x/></domainsnapshot>"), 0);
        _cleanup_json_ json_t *a = NULL;
        assert_int_equal(store_snapshot_list(f->st, f->vm, &a), 0);
        assert_int_equal(json_array_size(a), ELEMENTSOF(names));
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                assert_string_equal(jget_str(json_array_get(a, i), "name"), names[i]);
        json_t *child = json_array_get(a, 1);
        assert_true(json_is_true(json_object_get(child, "current")));
        assert_string_equal(jget_str(child, "xml"), "<domainsnapshot><x/></domainsnapshot>");
        assert_true(json_is_false(json_object_get(json_array_get(a, 0), "current")));

        /* the VM's count is written only when it changes */
        assert_int_equal(store_vm_snapshots_set(f->st, f->vm, 4), 0);
        assert_int_equal(store_changes(f->st), 1);
        assert_int_equal(store_vm_snapshots_set(f->st, f->vm, 4), 0);
        assert_int_equal(store_changes(f->st), 0);
}

/* The JSON arrays built in SQL are [] over no rows (PostgreSQL's json_agg
 * gives NULL there) and sorted as documented. */
static void test_json_arrays(void **state) {
        Fixture *f = *state;
        int64_t rule;
        assert_int_equal(store_rule_insert(f->st, "r-empty", "anti-affinity", NULL, 0, &rule), 0);
        _cleanup_json_ json_t *r = NULL;
        assert_int_equal(store_rule_get_json(f->st, rule, &r), 0);
        assert_true(json_is_array(json_object_get(r, "vms")));
        assert_int_equal(json_array_size(json_object_get(r, "vms")), 0);

        int64_t both[] = { f->vm, f->vm2, f->vm };   /* a VM named twice is a member once */
        assert_int_equal(store_rule_set_members(f->st, rule, both, 3), 0);
        json_decref(r);
        r = NULL;
        assert_int_equal(store_rule_get_json(f->st, rule, &r), 0);
        json_t *vms = json_object_get(r, "vms");
        assert_int_equal(json_array_size(vms), 2);
        assert_string_equal(json_string_value(json_array_get(vms, 0)), "aa-vm");
        assert_string_equal(json_string_value(json_array_get(vms, 1)), "zz-vm");

        int64_t cluster;
        assert_int_equal(store_cluster_insert(f->st, "c-empty", "/srv/shared", 1, NULL, 0, &cluster), 0);
        _cleanup_json_ json_t *c = NULL;
        assert_int_equal(store_cluster_get_json(f->st, cluster, &c), 0);
        assert_true(json_is_array(json_object_get(c, "hosts")));
        assert_int_equal(json_array_size(json_object_get(c, "hosts")), 0);

        StoreNetwork n = { .group_id = STORE_ROOT_GROUP_ID, .is_default = true };
        snprintf(n.name, sizeof n.name, "net1");
        snprintf(n.mode, sizeof n.mode, "nat");
        int64_t net;
        assert_int_equal(store_network_insert(f->st, &n, &net), 0);
        _cleanup_json_ json_t *nl = NULL;
        assert_int_equal(store_network_list(f->st, "net1", &nl), 0);
        assert_int_equal(json_array_size(nl), 1);
        assert_true(json_is_true(json_object_get(json_array_get(nl, 0), "is_default")));
        assert_int_equal(json_array_size(json_object_get(json_array_get(nl, 0), "recorded")), 0);
        assert_true(json_is_array(json_object_get(json_array_get(nl, 0), "recorded")));
        char def[64];
        assert_int_equal(store_network_default_for_host(f->st, f->host, def), 0);
        assert_string_equal(def, "net1");

        int64_t user, grant;
        assert_int_equal(store_user_insert(f->st, "carol", "x", "user", &user), 0);
        StoreGrant g = { .user_id = user, .group_id = STORE_ROOT_GROUP_ID, .points = 5, .max_vms = -1, .max_cpus = -1,
                         .max_memory_mib = -1, .actions = "start" };
        assert_int_equal(store_grant_insert(f->st, &g, NULL, 0, &grant), 0);
        _cleanup_json_ json_t *gj = NULL;
        assert_int_equal(store_grant_get_json(f->st, grant, &gj), 0);
        assert_true(json_is_array(json_object_get(gj, "templates")));
        assert_int_equal(json_array_size(json_object_get(gj, "templates")), 0);
        assert_string_equal(jget_str(gj, "user_name"), "carol");
        assert_true(json_is_integer(json_object_get(gj, "used_points")));
        assert_int_equal(jget_int(gj, "used_points"), 0);
}

/* Setting a policy twice replaces it (one row, same id), for a VM and for a
 * group: each has its own conflict target. */
static void test_backup_policy_upsert(void **state) {
        Fixture *f = *state;
        StoreBackupPolicy p = { .group_id = STORE_ROOT_GROUP_ID, .every_s = 3600, .keep = { 1 } };
        int64_t id1, id2, id3, id4;
        assert_int_equal(store_backup_policy_set(f->st, &p, &id1), 0);
        p.every_s = 60;
        assert_int_equal(store_backup_policy_set(f->st, &p, &id2), 0);
        assert_int_equal(id1, id2);
        StoreBackupPolicy v = { .vm_id = f->vm, .every_s = 600, .keep = { 2 } };
        assert_int_equal(store_backup_policy_set(f->st, &v, &id3), 0);
        assert_int_not_equal(id3, id1);
        v.every_s = 900;
        assert_int_equal(store_backup_policy_set(f->st, &v, &id4), 0);
        assert_int_equal(id3, id4);
        _cleanup_json_ json_t *a = NULL;
        assert_int_equal(store_backup_policy_list(f->st, &a), 0);
        assert_int_equal(json_array_size(a), 2);
        assert_int_equal(jget_int(json_array_get(a, 0), "every_s"), 60);
        assert_int_equal(jget_int(json_array_get(a, 1), "every_s"), 900);
}

/* The monitor's bulk writes replace a row with the same key, every column
 * (detail too), as INSERT OR REPLACE did. */
static void test_perf_writes_replace(void **state) {
        Fixture *f = *state;
        StorePerfSample s = { .kind = 1, .object_id = f->vm, .at = 60000 };
        for (int m = 0; m < STORE_PERF__COUNT; m++)
                s.v[m] = m;
        const char *detail[] = { "{\"a\":1}" };
        assert_int_equal(store_perf_insert_raw(f->st, &s, 1), 0);
        assert_int_equal(store_perf_set_latest(f->st, &s, detail, 1), 0);
        s.v[0] = 42;
        s.v[1] = NAN;
        assert_int_equal(store_perf_insert_raw(f->st, &s, 1), 0);
        assert_int_equal(store_perf_set_latest(f->st, &s, NULL, 1), 0);
        StorePerfPoint *pts = NULL;
        int n = store_perf_query(f->st, STORE_TIER_RAW, 1, f->vm, 0, 0, 120000, &pts);
        assert_int_equal(n, 1);
        assert_true(pts[0].avg == 42);
        free(pts);
        n = store_perf_query(f->st, STORE_TIER_RAW, 1, f->vm, 1, 0, 120000, &pts);
        assert_int_equal(n, 0);     /* replaced by NULL */
        free(pts);
        _cleanup_json_ json_t *l = NULL;
        assert_int_equal(store_perf_latest_json(f->st, &l), 0);
        assert_int_equal(json_array_size(l), 1);
        assert_true(json_is_null(json_object_get(json_array_get(l, 0), "detail")));
        assert_true(json_real_value(json_object_get(json_array_get(l, 0), "cpu")) == 42);

        /* Many rows in one call (PostgreSQL writes them in batches), a key
         * twice among them: the later row wins, as row after row would. */
        enum { N = 700 };
        StorePerfSample *many = calloc(N, sizeof *many);
        for (size_t i = 0; i < N; i++) {
                many[i] = (StorePerfSample) { .kind = 1, .object_id = f->vm2, .at = (int64_t) (i % 200) * 1000 };
                for (int m = 0; m < STORE_PERF__COUNT; m++)
                        many[i].v[m] = (double) i;
        }
        assert_int_equal(store_perf_insert_raw(f->st, many, N), 0);
        assert_int_equal(store_perf_set_latest(f->st, many, NULL, N), 0);
        n = store_perf_query(f->st, STORE_TIER_RAW, 1, f->vm2, 0, 0, 10000000, &pts);
        assert_int_equal(n, 200);
        assert_true(pts[0].avg == 600);      /* rows 0, 200, 400 and 600 write at 0: the last wins */
        assert_true(pts[99].avg == 699);
        assert_true(pts[100].avg == 500);
        assert_true(pts[199].avg == 599);
        free(pts);
        StorePerfRollup *roll = calloc(N, sizeof *roll);
        for (size_t i = 0; i < N; i++) {
                roll[i] = (StorePerfRollup) { .kind = 1, .object_id = f->vm2, .at = (int64_t) (i % 150) * 300000, .n = (int64_t) i };
                for (int m = 0; m < STORE_PERF__COUNT; m++)
                        roll[i].avg[m] = roll[i].max[m] = (double) i;
        }
        assert_int_equal(store_perf_insert_rollups(f->st, STORE_TIER_5M, roll, N), 0);
        n = store_perf_query(f->st, STORE_TIER_5M, 1, f->vm2, 0, 0, INT64_MAX, &pts);
        assert_int_equal(n, 150);
        assert_int_equal(pts[0].n, 600);
        assert_int_equal(pts[99].n, 699);
        assert_int_equal(pts[100].n, 550);
        free(pts);
        free(roll);
        free(many);
        json_decref(l);
        l = NULL;
        assert_int_equal(store_perf_latest_json(f->st, &l), 0);
        assert_int_equal(json_array_size(l), 2);

        /* a removed VM's history goes with it (a trigger on both engines) */
        assert_int_equal(store_exec(f->st, "DELETE FROM vm WHERE id = ?", "i", f->vm2), 0);
        assert_int_equal(store_exec(f->st, "DELETE FROM vm WHERE id = ?", "i", f->vm), 0);
        json_decref(l);
        l = NULL;
        assert_int_equal(store_perf_latest_json(f->st, &l), 0);
        assert_int_equal(json_array_size(l), 0);
}

/* place_dirty: an insert notes the host and the clusters' key, an update
 * of a watched column notes it again, an update that changes nothing
 * watched notes nothing. */
static void test_place_dirty(void **state) {
        Fixture *f = *state;
        int64_t s0, s1, s2;
        assert_int_equal(store_place_seq(f->st, &s0), 0);
        int64_t h2;
        assert_int_equal(store_host_insert(f->st, "h2", "test:///default", STORE_ROOT_GROUP_ID, "default", "/x", &h2), 0);
        int64_t *keys = NULL;
        int n = store_place_changed_keys(f->st, s0, &keys);
        assert_int_equal(n, 2);
        assert_int_equal(keys[0], -2);
        assert_int_equal(keys[1], h2);
        free(keys);
        assert_int_equal(store_place_seq(f->st, &s1), 0);
        assert_true(s1 > s0);
        assert_int_equal(store_exec(f->st, "UPDATE host SET state = state WHERE id = ?", "i", h2), 0);
        assert_int_equal(store_place_seq(f->st, &s2), 0);
        assert_int_equal(s2, s1);
        assert_int_equal(store_host_usage_set(f->st, h2, 10, 100, 1, 1, 5000), 0);
        StorePlaceUsage *u = NULL;
        n = store_place_usage_changed(f->st, s2, &u);
        assert_int_equal(n, 1);
        assert_int_equal(u[0].host_id, h2);
        assert_true(u[0].cpu_pct == 10);
        free(u);
        /* an upsert of the same host's usage replaces it */
        assert_int_equal(store_host_usage_set(f->st, h2, 20, 100, 1, 1, 6000), 0);
        StorePlaceHost *hosts = NULL;
        n = store_place_hosts(f->st, 0, 0, &hosts);
        assert_true(n >= 2);
        bool seen = false;
        for (int i = 0; i < n; i++)
                if (hosts[i].id == h2) {
                        seen = true;
                        assert_true(hosts[i].cpu_pct == 20);
                        assert_int_equal(hosts[i].usage_at, 6000);
                        assert_false(hosts[i].has_pool);
                }
        assert_true(seen);
        free(hosts);
}

/* A delivery's outcome and its webhook's last status are one write: a
 * reader never sees the delivery counted while the webhook still shows
 * the attempt before it (test_monitor's webhook test read "HTTP 500" next
 * to a delivered count). The webhook's own update failing takes the
 * delivery's back with it. */
static void test_webhook_delivery_is_one_write(void **state) {
        Fixture *f = *state;
        int64_t hook;
        assert_int_equal(store_webhook_insert(f->st, "http://127.0.0.1:9/hook", NULL, &hook), 0);
        assert_int_equal(store_webhook_enqueue(f->st, "{}", 1000), 1);
        StoreDelivery *due = NULL;
        assert_int_equal(store_delivery_due(f->st, 2000, 4, &due), 1);
        int64_t id = due[0].id;
        free(due[0].payload);
        free(due);
        assert_int_equal(store_delivery_done(f->st, id, hook, false, 3000, "HTTP 500", 2000), 0);
        assert_int_equal(tmpstore_break_table(f->st, "webhook"), 0);
        assert_true(store_delivery_done(f->st, id, hook, true, 0, "HTTP 200", 4000) < 0);
        int64_t n = -1;
        assert_int_equal(store_query_i64(f->st, &n, "SELECT attempts FROM webhook_delivery WHERE id = ? AND state = 'pending'"
                                         " AND last_status = 'HTTP 500'", "i", id), 0);
        assert_int_equal(n, 1);
}

/* armada-admin migrate-store carries every sequence: after a copy, a new
 * VM's id is above every copied one (removed ones included) and a new
 * snapshot is listed after the copied ones (PostgreSQL's vm_snapshot.seq,
 * copied with explicit values between two PostgreSQL stores, is an
 * identity the copy did not move). */
static void test_copy_carries_every_sequence(void **state) {
        Fixture *f = *state;
        static const char *const names[] = { "root", "child", "grandchild" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                assert_int_equal(store_snapshot_put(f->st, f->vm, names[i], 1000, false, "<domainsnapshot/>"), 0);
        StoreVm v = { .host_id = f->host, .cpus = 1, .memory_mib = 512 };
        snprintf(v.uuid, sizeof v.uuid, "00000000-0000-4000-8000-000000000003");
        snprintf(v.name, sizeof v.name, "gone");
        snprintf(v.state, sizeof v.state, "stopped");
        snprintf(v.origin, sizeof v.origin, "created");
        int64_t gone;
        assert_int_equal(store_vm_insert(f->st, &v, &gone), 0);
        assert_int_equal(store_exec(f->st, "DELETE FROM vm WHERE id = ?", "i", gone), 0);

        TmpStore *t = tmpstore_new("caps-copy");
        assert_non_null(t);
        StoreCopyReport seed = {0}, rep = {0};
        char err[256];
        assert_int_equal(store_copy_seed_counts(t->st, &seed), 0);
        assert_int_equal(store_copy(f->st, t->st, &seed, &rep, err, sizeof err), 0);
        assert_true(rep.ok);
        store_copy_report_clear(&seed);
        store_copy_report_clear(&rep);

        assert_int_equal(store_snapshot_put(t->st, f->vm, "after-move", 1000, true, "<domainsnapshot/>"), 0);
        _cleanup_json_ json_t *a = NULL;
        assert_int_equal(store_snapshot_list(t->st, f->vm, &a), 0);
        assert_int_equal(json_array_size(a), ELEMENTSOF(names) + 1);
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                assert_string_equal(jget_str(json_array_get(a, i), "name"), names[i]);
        assert_string_equal(jget_str(json_array_get(a, ELEMENTSOF(names)), "name"), "after-move");
        snprintf(v.uuid, sizeof v.uuid, "00000000-0000-4000-8000-000000000004");
        snprintf(v.name, sizeof v.name, "after-move");
        int64_t id;
        assert_int_equal(store_vm_insert(t->st, &v, &id), 0);
        assert_true(id > gone);
        assert_int_equal(tmpstore_free(t), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_snapshots_in_insertion_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_json_arrays, setup, teardown),
                cmocka_unit_test_setup_teardown(test_backup_policy_upsert, setup, teardown),
                cmocka_unit_test_setup_teardown(test_perf_writes_replace, setup, teardown),
                cmocka_unit_test_setup_teardown(test_place_dirty, setup, teardown),
                cmocka_unit_test_setup_teardown(test_webhook_delivery_is_one_write, setup, teardown),
                cmocka_unit_test_setup_teardown(test_copy_carries_every_sequence, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
