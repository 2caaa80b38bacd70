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
                cmocka_unit_test_setup_teardown(test_ops_errors, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
