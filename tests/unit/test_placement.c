/* Unit tests for the placement module (placement/): the inputs cache —
 * ratings served without reading the store while nothing changed, and
 * read again after any change, from this connection, another one, or a
 * transaction that rolls back — and the placement operations' errors
 * (status, code, field, audit) for callers of each role. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "placement/placement.h"
#include "place/place.h"
#include "store/store-place.h"
#include "store/store-ha.h"
#include "store/store-monitor.h"

#include "tmpstore.h"

typedef TmpStore Fixture;

static int setup(void **state) {
        Fixture *f = tmpstore_new("placement");
        if (!f)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        return tmpstore_free(*state);
}

static int64_t add_host(Store *st, const char *name, unsigned cpus, uint64_t mem) {
        int64_t id;
        assert_int_equal(store_host_insert(st, name, "test:///default", 1, "armada", NULL, &id), 0);
        assert_int_equal(store_host_set_facts(st, id, cpus, mem, mem, "TEST", "test", name, "/tmp"), 0);
        assert_true(store_host_set_state(st, id, "ok", NULL) >= 0);
        return id;
}

static int64_t add_vm(Store *st, const char *name, int64_t host, unsigned cpus, uint64_t mem) {
        StoreVm vm = { .host_id = host, .cpus = cpus, .memory_mib = mem };
        uuid_generate(vm.uuid);
        snprintf(vm.name, sizeof vm.name, "%s", name);
        snprintf(vm.state, sizeof vm.state, "running");
        snprintf(vm.origin, sizeof vm.origin, "created");
        int64_t id;
        assert_int_equal(store_vm_insert(st, &vm, &id), 0);
        return id;
}

/* The reason of host h for 6000 MiB ("" when it fits). */
static void reason_of(Store *st, int64_t h, char *out, size_t size) {
        PlacementDemand d = { .cpus = 1, .memory_mib = 6000 };
        PlacementRating *r = NULL;
        int n = placement_rate(st, 0, &d, &r);
        assert_true(n > 0);
        out[0] = 0;
        for (int i = 0; i < n; i++)
                if (r[i].host_id == h)
                        snprintf(out, size, "%s", r[i].reason);
        free(r);
}

static void expect_stats(Store *st, uint64_t hits, uint64_t misses) {
        uint64_t h, m;
        placement_cache_stats(st, &h, &m);
        assert_int_equal(h, hits);
        assert_int_equal(m, misses);
}

static void test_cache(void **state) {
        Fixture *f = *state;
        Store *st = f->st;
        char why[PLACE_REASON_MAX];
        int64_t h1 = add_host(st, "h1", 4, 8192);
        add_host(st, "h2", 4, 8192);
        reason_of(st, h1, why, sizeof why);
        assert_string_equal(why, "");
        expect_stats(st, 0, 1);
        reason_of(st, h1, why, sizeof why);
        reason_of(st, h1, why, sizeof why);
        expect_stats(st, 2, 1);         /* nothing changed: no query */
        /* a refresh that writes the same facts changes nothing either */
        assert_int_equal(store_host_set_facts(st, h1, 4, 8192, 8000, "TEST", "test", "h1", "/tmp"), 0);
        assert_false(store_host_set_state(st, h1, "ok", NULL) > 0);
        reason_of(st, h1, why, sizeof why);
        expect_stats(st, 3, 1);

        /* a change through this connection */
        add_vm(st, "a", h1, 1, 4000);
        reason_of(st, h1, why, sizeof why);
        assert_string_equal(why, "memory: needs 6000 MiB, 3680 MiB left after the 512 MiB reserve");
        expect_stats(st, 3, 2);

        /* another connection (another process would do the same) */
        Store *other = NULL;
        assert_int_equal(store_open(f->path, &other), 0);
        assert_int_equal(store_host_set_state(other, h1, "maintenance", NULL) >= 0, 1);
        store_free(other);
        reason_of(st, h1, why, sizeof why);
        assert_string_equal(why, "host is in maintenance");
        expect_stats(st, 3, 3);
        assert_true(store_host_set_state(st, h1, "ok", NULL) >= 0);

        /* measured usage, a policy */
        assert_int_equal(store_exec(st, "INSERT INTO host_usage(host_id, cpu_pct, memory_used_mib, sampled_at) VALUES (?, 50, 7000, ?)",
                                    "ii", h1, now_ms()), 0);
        reason_of(st, h1, why, sizeof why);
        assert_string_equal(why, "memory: needs 6000 MiB, 680 MiB left after the 512 MiB reserve");
        StoreGroupPolicy p;
        assert_int_equal(store_policy_get(st, 1, &p), 0);
        p.set[STORE_POLICY_MEMORY_MIB] = true;
        p.value[STORE_POLICY_MEMORY_MIB] = 100;
        assert_int_equal(store_policy_set(st, &p), 0);
        reason_of(st, h1, why, sizeof why);
        assert_string_equal(why, "memory: needs 6000 MiB, 1092 MiB left after the 100 MiB reserve");

        /* inside a transaction that rolls back: seen inside, not kept */
        assert_int_equal(store_exec(st, "DELETE FROM host_usage", ""), 0);
        reason_of(st, h1, why, sizeof why);
        assert_string_equal(why, "memory: needs 6000 MiB, 4092 MiB left after the 100 MiB reserve");
        assert_int_equal(placement_lock(st), 0);
        add_vm(st, "b", h1, 1, 1000);
        reason_of(st, h1, why, sizeof why);
        assert_string_equal(why, "memory: needs 6000 MiB, 3092 MiB left after the 100 MiB reserve");
        assert_int_equal(placement_unlock(st, -EIO), -EIO);
        reason_of(st, h1, why, sizeof why);
        assert_string_equal(why, "memory: needs 6000 MiB, 4092 MiB left after the 100 MiB reserve");
        /* the same generation again after the rollback: still the truth */
        add_vm(st, "c", h1, 1, 2000);
        reason_of(st, h1, why, sizeof why);
        assert_string_equal(why, "memory: needs 6000 MiB, 2092 MiB left after the 100 MiB reserve");
}

/* The inputs in memory equal a whole read of the store, and ratings from
 * them (of a group, of a placed VM) equal those of a store opened afresh
 * (which reads everything once). */
static void expect_same(Fixture *f, int64_t group_id, int64_t vm_id) {
        char why[200] = "";
        int r = placement_inputs_verify(f->st, why, sizeof why);
        if (r != 0)
                fail_msg("inputs in memory differ from the store: %s (%d)", why, r);
        Store *fresh = NULL;
        assert_int_equal(store_open(f->path, &fresh), 0);
        PlacementDemand d = { .cpus = 2, .memory_mib = 3000, .vm_id = vm_id };
        PlacementRating *a = NULL, *b = NULL;
        int na = placement_rate(f->st, group_id, &d, &a), nb = placement_rate(fresh, group_id, &d, &b);
        assert_int_equal(na, nb);
        for (int i = 0; i < na; i++) {
                assert_int_equal(a[i].host_id, b[i].host_id);
                assert_true(a[i].rating == b[i].rating);
                assert_string_equal(a[i].reason, b[i].reason);
        }
        free(a);
        free(b);
        store_free(fresh);
}

static void test_incremental_equals_rebuild(void **state) {
        Fixture *f = *state;
        Store *st = f->st;
        int64_t h1 = add_host(st, "h1", 8, 16384), h2 = add_host(st, "h2", 4, 8192);
        expect_same(f, 0, 0);
        int64_t h3 = add_host(st, "h3", 16, 32768);                             /* a host added */
        int64_t v1 = add_vm(st, "v1", h1, 2, 2048), v2 = add_vm(st, "v2", h2, 1, 1024);
        expect_same(f, 0, v1);
        assert_int_equal(store_vm_set_host(st, v1, h3), 0);                      /* a VM moved */
        expect_same(f, 0, v1);
        assert_int_equal(store_vm_update_hw(st, v2, 4, 6000, "kvm"), 0);         /* resized */
        expect_same(f, 0, 0);
        assert_true(store_vm_set_state(st, v2, "shutoff") >= 0);                /* state changed */
        expect_same(f, 0, v2);
        StoreDisk disk = { .size_bytes = 20ULL << 30 };
        snprintf(disk.target, sizeof disk.target, "vda");
        snprintf(disk.path, sizeof disk.path, "/tmp/v1.qcow2");
        assert_int_equal(store_vm_disk_add(st, v1, &disk), 0);                   /* a disk */
        assert_int_equal(store_place_pool_set(st, h3, 100ULL << 30, 60ULL << 30), 0);
        expect_same(f, 0, 0);
        StoreGroupPolicy p;                                                      /* a reserve changed */
        assert_int_equal(store_policy_get(st, 1, &p), 0);
        p.set[STORE_POLICY_MEMORY_MIB] = true;
        p.value[STORE_POLICY_MEMORY_MIB] = 4096;
        assert_int_equal(store_policy_set(st, &p), 0);
        expect_same(f, 0, 0);
        int64_t g = 0;                                                           /* a host into a subgroup */
        assert_int_equal(store_group_create_path(st, "rack1", &g, NULL), 0);
        assert_int_equal(store_exec(st, "UPDATE host SET group_id = ? WHERE id = ?", "ii", g, h2), 0);
        expect_same(f, g, 0);
        expect_same(f, g, v2);
        assert_int_equal(store_host_usage_set(st, h1, 40, 9000, 5, 5, now_ms()), 0);   /* measured usage */
        expect_same(f, 0, 0);
        PlacementDemand d = { .cpus = 1, .memory_mib = 512, .vm_id = v2 };     /* a move in flight */
        assert_int_equal(placement_reserve(st, &d, h1), 0);
        expect_same(f, 0, 0);
        expect_same(f, 0, v2);
        int64_t members[] = { h1, h3 }, cl = 0;                                  /* a cluster with an HA VM */
        assert_int_equal(store_cluster_insert(st, "c1", "nfs:/x", 1, members, 2, &cl), 0);
        assert_int_equal(store_vm_ha_set(st, v1, 1), 0);
        expect_same(f, 0, v1);
        int64_t vms[] = { v1, v2 }, rule = 0;                                    /* a rule */
        assert_int_equal(store_rule_insert(st, "apart", "anti-affinity", vms, 2, &rule), 0);
        expect_same(f, 0, v1);
        assert_int_equal(placement_release(st, v2, 0), 0);
        assert_int_equal(store_vm_delete(st, v1), 0);                            /* a VM removed */
        assert_true(store_host_set_state(st, h3, "maintenance", NULL) >= 0);
        expect_same(f, 0, 0);
        assert_int_equal(store_cluster_delete(st, cl), 0);
        assert_int_equal(store_host_delete(st, h3, true), 0);                    /* a host removed */
        expect_same(f, 0, 0);
        assert_int_equal(store_exec(st, "DELETE FROM host_usage WHERE host_id = ?", "i", h1), 0);
        expect_same(f, 0, 0);

        /* another connection's change, then a transaction's own one (seen
         * inside, dropped with its rollback) */
        Store *other = NULL;
        assert_int_equal(store_open(f->path, &other), 0);
        add_vm(other, "v9", h1, 1, 100);
        store_free(other);
        expect_same(f, 0, 0);
        char why[PLACE_REASON_MAX];
        assert_int_equal(placement_lock(st), 0);
        add_vm(st, "big", h1, 1, 15000);
        reason_of(st, h1, why, sizeof why);
        assert_true(strstr(why, "memory: needs 6000 MiB") != NULL);
        assert_int_equal(placement_unlock(st, -EIO), -EIO);
        reason_of(st, h1, why, sizeof why);
        assert_string_equal(why, "");
        expect_same(f, 0, 0);

        /* a patch reads what changed, not every host: the usage of one host
         * among many is one patch, and a rating after it reads nothing */
        for (int i = 0; i < 50; i++) {
                char name[16];
                snprintf(name, sizeof name, "m%02d", i);
                add_host(st, name, 4, 4096);
        }
        expect_same(f, 0, 0);
        uint64_t h0, m0, h_, m_;
        placement_cache_stats(st, &h0, &m0);
        assert_int_equal(store_host_usage_set(st, h2, 10, 100, 0, 0, now_ms()), 0);
        assert_int_equal(placement_refresh(st), 0);
        reason_of(st, h1, why, sizeof why);
        placement_cache_stats(st, &h_, &m_);
        assert_int_equal(m_, m0 + 1);
        assert_int_equal(h_, h0 + 1);
        (void) h3;
}

static OpCaller caller(AuthRole role) {
        return (OpCaller) { .subj = { .user_id = 7, .role = role }, .user_id = 7, .user_name = "u", .role_name = "r" };
}

static void test_ops_errors(void **state) {
        Store *st = ((Fixture *) *state)->st;
        add_host(st, "h1", 4, 8192);
        OpCaller admin = caller(ROLE_ADMIN), ro = caller(ROLE_READ_ONLY), self = caller(ROLE_SELF_SERVICE);
        OpError err = {0};
        json_t *out = NULL;

        _cleanup_json_ json_t *bad_goal = json_pack("{s:s}", "goal", "fastest");
        assert_int_equal(placement_policy_set(st, &admin, 1, bad_goal, &out, &err), -EINVAL);
        assert_int_equal(err.status, 400);
        assert_string_equal(err.field, "goal");
        _cleanup_json_ json_t *zero = json_pack("{s:{s:i,s:i,s:i,s:i,s:i}}", "weights", "cpu", 0, "memory", 0, "disk", 0,
                                                "disk_io", 0, "network", 0);
        assert_int_equal(placement_policy_set(st, &admin, 1, zero, &out, &err), -EINVAL);
        assert_int_equal(err.status, 422);
        assert_string_equal(err.field, "weights");
        assert_int_equal(placement_policy_set(st, &ro, 1, NULL, &out, &err), -EPERM);
        assert_int_equal(err.status, 403);
        assert_string_equal(err.code, "forbidden");
        assert_int_equal(placement_policy_get(st, &admin, 999, &out, &err), -ENOENT);
        assert_int_equal(err.status, 404);

        PlacementRateSpec rs = { .cpus = 1, .memory_mib = 512, .goal = "fastest" };
        assert_int_equal(placement_ratings(st, &admin, &rs, &out, &err), -EINVAL);
        assert_string_equal(err.field, "goal");
        rs = (PlacementRateSpec) { .cpus = 1, .memory_mib = 512, .group = "/nowhere" };
        assert_int_equal(placement_ratings(st, &admin, &rs, &out, &err), -EINVAL);
        assert_int_equal(err.status, 422);
        rs.group = NULL;
        assert_int_equal(placement_ratings(st, &ro, &rs, &out, &err), 0);
        assert_int_equal(json_array_size(json_object_get(out, "items")), 1);
        json_decref(out);

        assert_int_equal(placement_rule_may_create(st, &ro, &err), -EPERM);
        assert_int_equal(placement_rule_list(st, &self, &out, &err), -EPERM);
        PlacementRuleSpec rule = { .name = "r1", .kind = "sideways" };
        assert_int_equal(placement_rule_create(st, &admin, &rule, &out, &err), -EINVAL);
        assert_string_equal(err.field, "kind");
        assert_int_equal(placement_consolidation(st, &self, NULL, NULL, &out, &err), -EPERM);

        PlacementVmSpec vs = { .name = "huge", .cpus = 1, .memory_mib = 1 << 20 };
        int64_t host;
        assert_int_equal(placement_new_vm(st, &admin, &vs, &host, &out, &err), -ENOSPC);
        assert_int_equal(err.status, 409);
        assert_string_equal(err.code, "no_capacity");

        /* denials are audited */
        _cleanup_json_ json_t *audit = NULL;
        assert_int_equal(store_audit_list(st, 10, &audit), 0);
        size_t i;
        json_t *a;
        int denied = 0;
        json_array_foreach(audit, i, a)
                denied += streq(json_string_value(json_object_get(a, "result")), "denied");
        assert_int_equal(denied, 4);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
                cmocka_unit_test_setup_teardown(test_incremental_equals_rebuild, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ops_errors, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
