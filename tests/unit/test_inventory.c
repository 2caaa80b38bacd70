/* Unit tests for the placement glue (placement/placement.c) and the
 * policy inheritance it uses (store-place.c): host arrays built from a real
 * database — allocations, measured usage, reserves, rules, the cluster
 * failover reserve — and the sentences that explain a 0. */
#include <ctype.h>
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
#include "inventory/inventory.h"
#include "store/store-place.h"
#include "inventory/inventory-priv.h"
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "tmpstore.h"

typedef TmpStore Fixture;

static int setup(void **state) {
        Fixture *f = tmpstore_new("inventory");
        if (!f)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        return tmpstore_free(*state);
}

static int64_t add_host(Store *st, const char *name, int64_t group, unsigned cpus, uint64_t mem, const char *state) {
        int64_t id;
        assert_int_equal(store_host_insert(st, name, "test:///default", group, "armada", NULL, &id), 0);
        assert_int_equal(store_host_set_facts(st, id, cpus, mem, mem, "TEST", "test", name, "/tmp"), 0);
        assert_true(store_host_set_state(st, id, state, NULL) >= 0);
        return id;
}

static int64_t add_vm(Store *st, const char *name, int64_t host, unsigned cpus, uint64_t mem, const char *state) {
        StoreVm vm = { .host_id = host, .cpus = cpus, .memory_mib = mem };
        uuid_generate(vm.uuid);
        snprintf(vm.name, sizeof vm.name, "%s", name);
        snprintf(vm.state, sizeof vm.state, "%s", state);
        snprintf(vm.origin, sizeof vm.origin, "created");
        int64_t id;
        assert_int_equal(store_vm_insert(st, &vm, &id), 0);
        return id;
}

static const PlacementRating *find(const PlacementRating *r, int n, const char *host) {
        for (int i = 0; i < n; i++)
                if (streq(r[i].host_name, host))
                        return &r[i];
        fail_msg("host '%s' not rated", host);
        return NULL;
}

static void test_policy_resolve(void **state) {
        (void) state;
        StoreGroupPolicy all[3] = {
                { .group_id = 1, .parent_id = 0 },
                { .group_id = 2, .parent_id = 1 },
                { .group_id = 3, .parent_id = 2 },
        };
        all[0].set[STORE_POLICY_MEMORY_MIB] = true;
        all[0].value[STORE_POLICY_MEMORY_MIB] = 1024;
        all[1].set[STORE_POLICY_CPU_PCT] = true;
        all[1].value[STORE_POLICY_CPU_PCT] = 20;
        snprintf(all[1].goal, sizeof all[1].goal, "resource-maximization");
        all[2].set[STORE_POLICY_MEMORY_MIB] = true;
        all[2].value[STORE_POLICY_MEMORY_MIB] = 256;
        all[2].set[STORE_POLICY_W_CPU] = true;
        all[2].value[STORE_POLICY_W_CPU] = 3;
        StoreEffectivePolicy e;
        store_policy_resolve(all, 3, 3, &e);
        assert_true(e.value[STORE_POLICY_MEMORY_MIB] == 256 && e.from[STORE_POLICY_MEMORY_MIB] == 3);
        assert_true(e.value[STORE_POLICY_CPU_PCT] == 20 && e.from[STORE_POLICY_CPU_PCT] == 2);
        assert_true(e.value[STORE_POLICY_DISK_GIB] == store_policy_defaults[STORE_POLICY_DISK_GIB]);
        assert_int_equal(e.from[STORE_POLICY_DISK_GIB], 0);
        assert_string_equal(e.goal, "resource-maximization");
        assert_int_equal(e.goal_from, 2);
        assert_true(e.value[STORE_POLICY_W_CPU] == 3 && e.value[STORE_POLICY_W_MEMORY] == 1);
        store_policy_resolve(all, 3, 1, &e);
        assert_true(e.value[STORE_POLICY_MEMORY_MIB] == 1024 && e.from[STORE_POLICY_MEMORY_MIB] == 1);
        assert_true(e.value[STORE_POLICY_CPU_PCT] == 10 && e.from[STORE_POLICY_CPU_PCT] == 0);
        assert_string_equal(e.goal, STORE_POLICY_DEFAULT_GOAL);
        store_policy_resolve(all, 3, 99, &e);   /* unknown: the defaults */
        assert_true(e.value[STORE_POLICY_MEMORY_MIB] == 512 && e.from[STORE_POLICY_MEMORY_MIB] == 0);
}

static void test_policy_roundtrip(void **state) {
        Store *st = ((Fixture *) *state)->st;
        StoreGroupPolicy p;
        assert_int_equal(store_policy_get(st, 1, &p), 0);
        assert_false(p.set[STORE_POLICY_MEMORY_MIB]);
        p.set[STORE_POLICY_MEMORY_MIB] = true;
        p.value[STORE_POLICY_MEMORY_MIB] = 2048;
        snprintf(p.goal, sizeof p.goal, "load-balancing");
        assert_int_equal(store_policy_set(st, &p), 0);
        StoreGroupPolicy q;
        assert_int_equal(store_policy_get(st, 1, &q), 0);
        assert_true(q.set[STORE_POLICY_MEMORY_MIB] && q.value[STORE_POLICY_MEMORY_MIB] == 2048);
        assert_string_equal(q.goal, "load-balancing");
        memset(q.set, 0, sizeof q.set);
        q.goal[0] = 0;
        assert_int_equal(store_policy_set(st, &q), 0);
        int64_t n = -1;
        assert_int_equal(store_query_i64(st, &n, "SELECT count(*) FROM host_group_policy", ""), 0);
        assert_int_equal(n, 0);
        assert_int_equal(store_policy_get(st, 4242, &q), -ENOENT);
}

static void test_rate_allocations_states_and_order(void **state) {
        Store *st = ((Fixture *) *state)->st;
        int64_t h1 = add_host(st, "h1", 1, 4, 8192, "ok");
        int64_t h2 = add_host(st, "h2", 1, 8, 16384, "ok");
        add_host(st, "h3", 1, 64, 262144, "maintenance");
        add_host(st, "h4", 1, 64, 262144, "unreachable");
        add_vm(st, "big", h2, 2, 8192, "running");
        add_vm(st, "off", h1, 4, 6000, "stopped");      /* stopped: does not count */
        PlacementDemand d = { .cpus = 1, .memory_mib = 1024 };
        PlacementRating *r = NULL;
        int n = placement_rate(st, 0, &d, &r);
        assert_int_equal(n, 4);
        assert_int_equal(r[0].host_id, h1);
        assert_true(r[0].stars == 5);
        assert_true(r[1].host_id == h2 && r[1].rating > 0 && r[1].rating < r[0].rating);
        assert_string_equal(find(r, n, "h3")->reason, "host is in maintenance");
        assert_string_equal(find(r, n, "h4")->reason, "host is unreachable");
        assert_true(find(r, n, "h3")->rating == 0 && find(r, n, "h3")->stars == 0);
        free(r);

        /* 7681 MiB: h2 has 16384 - 8192 - 512 = 7680 left. */
        d.memory_mib = 7681;
        n = placement_rate(st, 0, &d, &r);
        assert_string_equal(find(r, n, "h2")->reason, "memory: needs 7681 MiB, 7680 MiB left after the 512 MiB reserve");
        free(r);
        /* A VM being re-placed does not count against its own host. */
        int64_t big;
        assert_int_equal(store_vm_find(st, "big", &big), 0);
        d.vm_id = big;
        d.memory_mib = 8192;
        n = placement_rate(st, 0, &d, &r);
        assert_true(find(r, n, "h2")->rating > 0);
        free(r);
}

static void test_choose_pending_and_exclude(void **state) {
        Store *st = ((Fixture *) *state)->st;
        int64_t h1 = add_host(st, "h1", 1, 4, 8192, "ok");
        int64_t h2 = add_host(st, "h2", 1, 4, 8192, "ok");
        PlacementDemand d = { .cpus = 1, .memory_mib = 4096 };
        int64_t id = 0;
        char why[512];
        assert_int_equal(placement_choose(st, 0, &d, &id, why, sizeof why), 0);
        assert_int_equal(id, h1);           /* equal hosts: lowest id */
        d.exclude_host_id = h1;
        assert_int_equal(placement_choose(st, 0, &d, &id, why, sizeof why), 0);
        assert_int_equal(id, h2);
        PlacementPending p = { .host_id = h2, .cpus = 1, .memory_mib = 4000 };
        d.pending = &p;
        d.n_pending = 1;
        assert_int_equal(placement_choose(st, 0, &d, &id, why, sizeof why), -ENOSPC);
        assert_string_equal(why, "host 'h2': memory: needs 4096 MiB, 3680 MiB left after the 512 MiB reserve");
        d = (PlacementDemand) { .cpus = 1, .memory_mib = 100000 };
        assert_int_equal(placement_choose(st, 0, &d, &id, why, sizeof why), -ENOSPC);
        assert_non_null(strstr(why, "host 'h1': memory: needs 100000 MiB"));
        assert_non_null(strstr(why, "; host 'h2': memory: needs 100000 MiB"));
        char small[24];
        assert_int_equal(placement_choose(st, 0, &d, &id, small, sizeof small), -ENOSPC);
        assert_int_equal(strlen(small), sizeof small - 1);
        assert_string_equal(small + sizeof small - 4, "...");
        /* Errors: an unknown group, a bad goal. */
        assert_int_equal(placement_choose(st, 4242, &d, &id, why, sizeof why), -ENOENT);
        d.goal = "fastest";
        assert_int_equal(placement_choose(st, 0, &d, &id, why, sizeof why), -EINVAL);
        PlacementRating *r = NULL;
        assert_int_equal(placement_rate(st, 0, NULL, &r), -EINVAL);
}

/* A scope leaves every other host out: not chosen, not named, and an
 * affinity partner there is not seen either. */
static void test_scope(void **state) {
        Store *st = ((Fixture *) *state)->st;
        int64_t a, a_sub, b;
        assert_int_equal(store_group_create_path(st, "A/Sub", &a_sub, NULL), 0);
        assert_int_equal(store_group_find(st, "A", &a), 0);
        assert_int_equal(store_group_create_path(st, "B", &b, NULL), 0);
        int64_t a1 = add_host(st, "a1", a, 4, 2048, "ok");
        int64_t a2 = add_host(st, "a2", a_sub, 4, 1024, "ok");
        int64_t b1 = add_host(st, "b1", b, 64, 262144, "ok");
        int64_t scope[] = { a };
        PlacementDemand d = { .cpus = 1, .memory_mib = 4096, .scope = scope, .n_scope = 1 };
        PlacementRating *r = NULL;
        assert_int_equal(placement_rate(st, 0, &d, &r), 2);   /* a1 and a2 (below A), not b1 */
        for (int i = 0; i < 2; i++)
                assert_true(r[i].host_id == a1 || r[i].host_id == a2);
        assert_true(r[0].why & PLACE_WHY_MEMORY);
        free(r);
        int64_t id = 0;
        char why[512];
        assert_int_equal(placement_choose(st, 0, &d, &id, why, sizeof why), -ENOSPC);
        assert_null(strstr(why, "b1"));
        assert_non_null(strstr(why, "host 'a2'"));
        d.n_scope = 0;
        assert_int_equal(placement_choose(st, 0, &d, &id, why, sizeof why), 0);
        assert_int_equal(id, b1);
        /* An affinity partner outside the scope does not pull the VM there
         * (nor is its host named): the rule has no member in sight. */
        int64_t partner = add_vm(st, "partner", b1, 1, 64, "running");
        int64_t me = add_vm(st, "me", 0, 1, 64, "stopped");
        int64_t ids[] = { partner, me }, rule;
        assert_int_equal(store_rule_insert(st, "together", "affinity", ids, 2, &rule), 0);
        d = (PlacementDemand) { .cpus = 1, .memory_mib = 64, .vm_id = me, .vm_name = "me", .scope = scope, .n_scope = 1 };
        int n = placement_rate(st, 0, &d, &r);
        assert_int_equal(n, 2);
        for (int i = 0; i < n; i++) {
                assert_true(r[i].rating > 0);
                assert_null(strstr(r[i].reason, "b1"));
        }
        free(r);
        d.scope = NULL;
        assert_int_equal(placement_rate(st, 0, &d, &r), -EINVAL);   /* n_scope without scope */
}

/* Room reserved for a move in flight counts as used on its target until it
 * is released, both from allocations and from a fresh measured sample; a VM
 * the database already places there counts once. */
static void test_reservations(void **state) {
        Store *st = ((Fixture *) *state)->st;
        int64_t h1 = add_host(st, "h1", 1, 4, 8192, "ok");
        int64_t h2 = add_host(st, "h2", 1, 4, 8192, "ok");
        int64_t mover = add_vm(st, "mover", h1, 2, 4000, "running");
        PlacementDemand m = { .cpus = 2, .memory_mib = 4000, .vm_id = mover, .vm_name = "mover", .exclude_host_id = h1 };
        assert_int_equal(placement_lock(st), 0);
        int64_t to = 0;
        char why[512];
        assert_int_equal(placement_choose(st, 0, &m, &to, why, sizeof why), 0);
        assert_int_equal(to, h2);
        assert_int_equal(placement_reserve(st, &m, to), 0);
        assert_int_equal(placement_unlock(st, 0), 0);
        PlacementDemand d = { .cpus = 1, .memory_mib = 4096, .exclude_host_id = h1 };
        assert_int_equal(placement_choose(st, 0, &d, &to, why, sizeof why), -ENOSPC);
        assert_string_equal(why, "host 'h2': memory: needs 4096 MiB, 3680 MiB left after the 512 MiB reserve");
        /* The mover's own reservation does not count against itself. */
        assert_int_equal(placement_choose(st, 0, &m, &to, why, sizeof why), 0);
        /* Measured: the reservation adds to the sample. */
        assert_int_equal(store_exec(st, "INSERT INTO host_usage(host_id, cpu_pct, memory_used_mib, disk_io_pct, network_pct,"
                                        " sampled_at) VALUES (?, 0, 100, 0, 0, ?)", "ii", h2, now_ms()), 0);
        assert_int_equal(placement_choose(st, 0, &d, &to, why, sizeof why), -ENOSPC);
        assert_string_equal(why, "host 'h2': memory: needs 4096 MiB, 3580 MiB left after the 512 MiB reserve");
        assert_int_equal(store_exec(st, "DELETE FROM host_usage", ""), 0);
        /* Moved: its allocation counts there instead, once. */
        assert_int_equal(store_vm_set_host(st, mover, h2), 0);
        assert_int_equal(placement_choose(st, 0, &d, &to, why, sizeof why), -ENOSPC);
        assert_string_equal(why, "host 'h2': memory: needs 4096 MiB, 3680 MiB left after the 512 MiB reserve");
        assert_int_equal(store_vm_set_host(st, mover, h1), 0);
        /* Released (only the one on the named host; any with 0). */
        assert_int_equal(placement_release(st, mover, h1), 0);
        assert_int_equal(placement_choose(st, 0, &d, &to, why, sizeof why), -ENOSPC);
        assert_int_equal(placement_release(st, mover, 0), 0);
        assert_int_equal(placement_choose(st, 0, &d, &to, why, sizeof why), 0);
        assert_int_equal(to, h2);
        /* A lock given up with an error keeps nothing. */
        assert_int_equal(placement_lock(st), 0);
        assert_int_equal(placement_reserve(st, &m, h2), 0);
        assert_int_equal(placement_unlock(st, -ECANCELED), -ECANCELED);
        assert_int_equal(placement_choose(st, 0, &d, &to, why, sizeof why), 0);
        assert_int_equal(placement_reserve(st, &m, h2), 0);
        assert_int_equal(placement_release_all(st), 0);
        assert_int_equal(placement_choose(st, 0, &d, &to, why, sizeof why), 0);
        PlacementDemand no_vm = { .cpus = 1, .memory_mib = 1 };
        assert_int_equal(placement_reserve(st, &no_vm, h2), -EINVAL);
}

/* Whose move may go where: administrators and the system anywhere, a
 * delegated administrator inside its scopes, anyone else (or a user that
 * is gone) inside the VM's own group. */
static void test_scope_of(void **state) {
        Store *st = ((Fixture *) *state)->st;
        int64_t g1, g2, admin, deleg, ss;
        assert_int_equal(store_group_create_path(st, "G1", &g1, NULL), 0);
        assert_int_equal(store_group_create_path(st, "G2", &g2, NULL), 0);
        assert_int_equal(store_user_insert(st, "root", "x", "administrator", &admin), 0);
        assert_int_equal(store_user_insert(st, "deleg", "x", "delegated-administrator", &deleg), 0);
        assert_int_equal(store_user_insert(st, "ss", "x", "self-service", &ss), 0);
        int64_t sc[] = { g1, g2 };
        assert_int_equal(store_user_scopes_set(st, deleg, sc, 2), 0);
        int64_t *r = NULL;
        assert_int_equal(placement_scope_of(st, 0, g1, &r), 0);
        assert_null(r);
        assert_int_equal(placement_scope_of(st, admin, g1, &r), 0);
        assert_null(r);
        assert_int_equal(placement_scope_of(st, deleg, 1, &r), 2);
        assert_true((r[0] == g1 && r[1] == g2) || (r[0] == g2 && r[1] == g1));
        free(r);
        assert_int_equal(placement_scope_of(st, ss, g2, &r), 1);
        assert_int_equal(r[0], g2);
        free(r);
        assert_int_equal(placement_scope_of(st, 4242, g1, &r), 1);
        assert_int_equal(r[0], g1);
        free(r);
}

static void test_group_subtree_reserve_and_goal(void **state) {
        Store *st = ((Fixture *) *state)->st;
        int64_t seattle, prod;
        assert_int_equal(store_group_create_path(st, "Seattle/Production", &prod, NULL), 0);
        assert_int_equal(store_group_find(st, "Seattle", &seattle), 0);
        int64_t big = add_host(st, "big", prod, 16, 32768, "ok");
        int64_t small = add_host(st, "small", seattle, 4, 8192, "ok");
        add_host(st, "elsewhere", 1, 64, 262144, "ok");
        PlacementDemand d = { .cpus = 1, .memory_mib = 1024 };
        PlacementRating *r = NULL;
        assert_int_equal(placement_rate(st, seattle, &d, &r), 2);
        assert_int_equal(r[0].host_id, big);
        free(r);
        d.goal = "resource-maximization";
        assert_int_equal(placement_rate(st, seattle, &d, &r), 2);
        assert_int_equal(r[0].host_id, small);
        free(r);
        /* Seattle's reserve reaches Production's host unless overridden. */
        StoreGroupPolicy p;
        assert_int_equal(store_policy_get(st, seattle, &p), 0);
        p.set[STORE_POLICY_MEMORY_MIB] = true;
        p.value[STORE_POLICY_MEMORY_MIB] = 32000;
        assert_int_equal(store_policy_set(st, &p), 0);
        d.goal = NULL;
        assert_int_equal(placement_rate(st, prod, &d, &r), 1);
        assert_string_equal(r[0].reason, "memory: needs 1024 MiB, 768 MiB left after the 32000 MiB reserve");
        free(r);
        assert_int_equal(store_policy_get(st, prod, &p), 0);
        p.set[STORE_POLICY_MEMORY_MIB] = true;
        p.value[STORE_POLICY_MEMORY_MIB] = 0;
        assert_int_equal(store_policy_set(st, &p), 0);
        assert_int_equal(placement_rate(st, prod, &d, &r), 1);
        assert_true(r[0].rating > 0);
        free(r);
}

static void test_measured_usage(void **state) {
        Store *st = ((Fixture *) *state)->st;
        int64_t h1 = add_host(st, "h1", 1, 4, 8192, "ok");
        add_vm(st, "creating", h1, 1, 1000, "creating");
        assert_int_equal(store_exec(st, "INSERT INTO host_usage(host_id, cpu_pct, memory_used_mib, sampled_at) VALUES (?, 50, 6000, ?)",
                                    "ii", h1, now_ms()), 0);
        PlacementDemand d = { .cpus = 1, .memory_mib = 1000 };
        PlacementRating *r = NULL;
        int n = placement_rate(st, 0, &d, &r);
        /* 8192 - (6000 measured + 1000 being created) - 512 = 680 */
        assert_string_equal(find(r, n, "h1")->reason, "memory: needs 1000 MiB, 680 MiB left after the 512 MiB reserve");
        free(r);
        assert_int_equal(store_exec(st, "UPDATE host_usage SET sampled_at = ? WHERE host_id = ?", "ii", now_ms() - 121000, h1), 0);
        n = placement_rate(st, 0, &d, &r);
        assert_true(find(r, n, "h1")->rating > 0);   /* stale: allocations (1000 MiB) */
        free(r);
}

static void test_failover_reserve(void **state) {
        Store *st = ((Fixture *) *state)->st;
        int64_t h[3];
        h[0] = add_host(st, "c1", 1, 8, 16384, "ok");
        h[1] = add_host(st, "c2", 1, 8, 16384, "ok");
        h[2] = add_host(st, "c3", 1, 8, 16384, "ok");
        int64_t v1 = add_vm(st, "ha1", h[0], 1, 3000, "running");
        int64_t v2 = add_vm(st, "ha2", h[1], 1, 1000, "running");
        add_vm(st, "noha", h[2], 1, 5000, "running");
        assert_int_equal(store_exec(st, "INSERT INTO vm_ha(vm_id) VALUES (?), (?)", "ii", v1, v2), 0);
        assert_int_equal(store_exec(st, "INSERT INTO cluster(id, name, shared_storage, tolerate, created_at) VALUES (1, 'c', '/s', 1, 0)", ""), 0);
        for (int i = 0; i < 3; i++)
                assert_int_equal(store_exec(st, "INSERT INTO cluster_member(cluster_id, host_id) VALUES (1, ?)", "i", h[i]), 0);
        /* tolerate 1: the largest member's 3000 MiB over the 2 others = 1500 */
        PlacementDemand d = { .cpus = 1, .memory_mib = 14000 };
        PlacementRating *r = NULL;
        int n = placement_rate(st, 0, &d, &r);
        assert_string_equal(find(r, n, "c2")->reason,
                            "failover reserve: needs 14000 MiB, 13372 MiB left after the 512 MiB reserve and the 1500 MiB kept free"
                            " for the cluster's N+1 failover");
        free(r);
        /* tolerate 2: (3000 + 1000) over the 1 other member = 4000 */
        assert_int_equal(store_exec(st, "UPDATE cluster SET tolerate = 2", ""), 0);
        d.memory_mib = 10000;
        n = placement_rate(st, 0, &d, &r);
        assert_non_null(strstr(find(r, n, "c3")->reason, "the 4000 MiB kept free"));
        free(r);
        /* tolerate 3 of 3 members: nothing survives, no reserve */
        assert_int_equal(store_exec(st, "UPDATE cluster SET tolerate = 3", ""), 0);
        n = placement_rate(st, 0, &d, &r);
        assert_true(find(r, n, "c3")->rating > 0);
        free(r);
        /* A member that fails uses up the tolerated failure: its VMs restart
         * into the reserve (no reserve while it is down). One in maintenance
         * just leaves: c2's 1000 MiB over the one other member (c3). */
        assert_int_equal(store_exec(st, "UPDATE cluster SET tolerate = 1", ""), 0);
        assert_true(store_host_set_state(st, h[0], "failed", NULL) >= 0);
        d = (PlacementDemand) { .cpus = 1, .memory_mib = 10800, .exclude_host_id = h[0] };
        n = placement_rate(st, 0, &d, &r);
        assert_int_equal(n, 2);
        assert_true(find(r, n, "c3")->rating > 0);
        free(r);
        assert_true(store_host_set_state(st, h[0], "maintenance", NULL) >= 0);
        n = placement_rate(st, 0, &d, &r);
        assert_string_equal(find(r, n, "c3")->reason,
                            "failover reserve: needs 10800 MiB, 9872 MiB left after the 512 MiB reserve and the 1000 MiB kept free"
                            " for the cluster's N+1 failover");
        free(r);
        assert_true(store_host_set_state(st, h[0], "ok", NULL) >= 0);
        /* The HA VM being moved does not reserve room for itself. */
        assert_int_equal(store_exec(st, "UPDATE cluster SET tolerate = 1", ""), 0);
        d = (PlacementDemand) { .cpus = 1, .memory_mib = 10500, .vm_id = v1 };
        n = placement_rate(st, 0, &d, &r);
        assert_non_null(strstr(find(r, n, "c3")->reason, "the 500 MiB kept free"));
        free(r);
}

static void test_rules(void **state) {
        Store *st = ((Fixture *) *state)->st;
        int64_t h1 = add_host(st, "h1", 1, 8, 16384, "ok");
        int64_t h2 = add_host(st, "h2", 1, 8, 16384, "ok");
        int64_t w1 = add_vm(st, "web01", h1, 1, 512, "running");
        int64_t w2 = add_vm(st, "web02", h2, 1, 512, "running");
        int64_t db = add_vm(st, "db01", h2, 1, 512, "running");
        int64_t ids[] = { w1, w2 }, aff[] = { db, w1 };
        int64_t rule;
        assert_int_equal(store_rule_insert(st, "web", "anti-affinity", ids, 2, &rule), 0);
        assert_int_equal(store_rule_insert(st, "web", "affinity", ids, 2, &rule), -EEXIST);
        PlacementDemand d = { .cpus = 1, .memory_mib = 512, .vm_id = w2, .vm_name = "web02" };
        PlacementRating *r = NULL;
        int n = placement_rate(st, 0, &d, &r);
        assert_string_equal(find(r, n, "h1")->reason, "anti-affinity: runs 'web01', which must not share a host with 'web02'");
        assert_true(find(r, n, "h2")->rating > 0);
        free(r);
        int64_t rule2;
        assert_int_equal(store_rule_insert(st, "db-web", "affinity", aff, 2, &rule2), 0);
        d = (PlacementDemand) { .cpus = 1, .memory_mib = 512, .vm_id = w1, .vm_name = "web01" };
        n = placement_rate(st, 0, &d, &r);
        /* web01 must join db01 on h2, where web02 (anti-affine) runs: nowhere. */
        assert_true(find(r, n, "h1")->rating == 0 && find(r, n, "h2")->rating == 0);
        assert_non_null(strstr(find(r, n, "h1")->reason, "affinity: 'web01' must share a host with 'db01', which runs on 'h2'"));
        free(r);
        json_t *j = NULL;
        assert_int_equal(store_rule_get_json(st, rule, &j), 0);
        assert_string_equal(json_string_value(json_array_get(json_object_get(j, "vms"), 0)), "web01");
        json_decref(j);
        assert_int_equal(store_vm_delete(st, w2), 0);   /* members go with their VM */
        assert_int_equal(store_rule_get_json(st, rule, &j), 0);
        assert_int_equal(json_array_size(json_object_get(j, "vms")), 1);
        json_decref(j);
        assert_int_equal(store_rule_delete(st, rule), 0);
        assert_int_equal(store_rule_delete(st, rule), -ENOENT);
}

static void vnc_for(const char *uri, char listen[16], char password[9]) {
        StoreHost h = {0};
        snprintf(h.uri, sizeof h.uri, "%s", uri);
        inventory_vnc_for_host(&h, listen, password);
}

static void test_vnc_for_host(void **state) {
        char listen[16], pw[9], pw2[9];
        static const char *const local[] = { "qemu:///system", "test:///default", "qemu+tcp://localhost/system",
                                             "qemu+ssh://root@127.0.0.1/system", "qemu+tcp://127.0.0.2:16509/system" };
        for (size_t i = 0; i < sizeof local / sizeof local[0]; i++) {
                vnc_for(local[i], listen, pw);
                assert_string_equal(listen, "127.0.0.1");
                assert_string_equal(pw, "");
        }
        static const char *const remote[] = { "qemu+tcp://10.253.77.11/system", "qemu+ssh://root@kvm7.example/system",
                                               "qemu+tls://kvm7:16514/system" };
        for (size_t i = 0; i < sizeof remote / sizeof remote[0]; i++) {
                vnc_for(remote[i], listen, pw);
                assert_string_equal(listen, "0.0.0.0");
                assert_int_equal(strlen(pw), 8);
                for (int k = 0; k < 8; k++)
                        assert_true(isalnum((unsigned char) pw[k]));
        }
        vnc_for(remote[0], listen, pw2);
        assert_string_not_equal(pw, pw2);
}

/* ---- per-host throttles (inventory-throttle.c) ---- */

typedef struct {
        Inventory *inv;
        StoreHost h;
        bool priority;
        atomic_int *order;
        int got;                 /* the order it took the slot in */
        int64_t waited_ms;
        bool give_back;          /* give the slot back at once */
} Taker;

static void *taker_main(void *arg) {
        Taker *t = arg;
        int64_t t0 = mono_ms();
        assert_int_equal(inventory_slot_take(t->inv, &t->h, INVENTORY_SLOT_START, NULL, t->priority, NULL), 0);
        t->waited_ms = mono_ms() - t0;
        t->got = atomic_fetch_add(t->order, 1);
        if (t->give_back)
                inventory_slot_give(t->inv, t->h.id, INVENTORY_SLOT_START);
        return NULL;
}

static void wait_waiting(Inventory *inv, int64_t host_id, int n) {
        int64_t deadline = mono_ms() + 10000;
        while (throttle_waiting(inv, host_id, INVENTORY_SLOT_START) != n) {
                if (mono_ms() > deadline)
                        fail_msg("timed out after 10 s waiting for %d waiter(s) in the start queue (there are %d)", n,
                                 throttle_waiting(inv, host_id, INVENTORY_SLOT_START));
                struct timespec ts = { 0, 5 * 1000000 };
                nanosleep(&ts, NULL);
        }
}

/* A quiet host (no domain event since it was listed, link alive) is asked
 * for its facts every few rounds, not every round, and still within six. */
static void test_quiet_host_facts_every_few_rounds(void **state) {
        Fixture *f = *state;
        Inventory *inv = NULL;
        InventoryConfig cfg = { .refresh_interval_ms = 100, .full_refresh_ms = 60000, .allow_test_hosts = true };
        assert_int_equal(inventory_new(f->st, NULL, &cfg, &inv), 0);
        int64_t id = add_host(f->st, "t1", STORE_ROOT_GROUP_ID, 4, 4096, "ok");
        uint64_t facts, quiet;
        /* the first round lists it (and the import of the test driver's
         * domain changes nothing on the hypervisor) */
        assert_int_equal(inventory_refresh_round(inv, id), 0);
        assert_int_equal(inventory_refresh_round(inv, id), 0);
        inventory_refresh_stats(inv, &facts, &quiet);
        uint64_t facts0 = facts;
        assert_true(facts0 >= 1);
        /* rounds every 100 ms: quiet ones make no call, and a call comes
         * again within six rounds */
        int rounds = 0;
        while (facts == facts0 && rounds < 20) {
                struct timespec ts = { 0, 100 * 1000 * 1000 };
                nanosleep(&ts, NULL);
                assert_int_equal(inventory_refresh_round(inv, id), 0);
                rounds++;
                inventory_refresh_stats(inv, &facts, &quiet);
        }
        assert_int_equal(facts, facts0 + 1);
        assert_true(rounds >= 2);       /* not every round (fewer rounds only when the machine is slow) */
        assert_true(rounds <= 6);
        assert_true(quiet >= 2);
        /* a full refresh always asks */
        assert_int_equal(inventory_refresh_host(inv, id, NULL, 0), 0);
        inventory_refresh_stats(inv, &facts, &quiet);
        assert_int_equal(facts, facts0 + 2);
        inventory_free(inv);
}

/* A HA restart (priority) is served before a job start queued earlier. */
static void test_throttle_priority_first(void **state) {
        Fixture *f = *state;
        Inventory *inv = NULL;
        InventoryConfig cfg = { .max_parallel_starts = 1, .priority_wait_ms = 60000 };
        assert_int_equal(inventory_new(f->st, NULL, &cfg, &inv), 0);
        StoreHost h;
        assert_int_equal(store_host_get(f->st, add_host(f->st, "t1", STORE_ROOT_GROUP_ID, 4, 4096, "ok"), &h), 0);
        assert_int_equal(inventory_slot_take(inv, &h, INVENTORY_SLOT_START, NULL, false, NULL), 0);
        atomic_int order = 0;
        Taker job = { inv, h, false, &order, -1, 0, true }, ha = { inv, h, true, &order, -1, 0, true };
        pthread_t tj, th;
        assert_int_equal(pthread_create(&tj, NULL, taker_main, &job), 0);
        wait_waiting(inv, h.id, 1);
        assert_int_equal(pthread_create(&th, NULL, taker_main, &ha), 0);
        wait_waiting(inv, h.id, 2);
        inventory_slot_give(inv, h.id, INVENTORY_SLOT_START);
        pthread_join(th, NULL);
        pthread_join(tj, NULL);
        assert_int_equal(ha.got, 0);
        assert_int_equal(job.got, 1);
        inventory_free(inv);
}

/* A HA restart never waits longer than priority_wait_ms, even when the
 * host's starts never come back. */
static void test_throttle_priority_bounded(void **state) {
        Fixture *f = *state;
        Inventory *inv = NULL;
        InventoryConfig cfg = { .max_parallel_starts = 1, .priority_wait_ms = 200 };
        assert_int_equal(inventory_new(f->st, NULL, &cfg, &inv), 0);
        StoreHost h;
        assert_int_equal(store_host_get(f->st, add_host(f->st, "t1", STORE_ROOT_GROUP_ID, 4, 4096, "ok"), &h), 0);
        assert_int_equal(inventory_slot_take(inv, &h, INVENTORY_SLOT_START, NULL, false, NULL), 0);
        atomic_int order = 0;
        Taker ha = { inv, h, true, &order, -1, 0, false };
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, taker_main, &ha), 0);
        pthread_join(th, NULL); /* returns although the only slot is still held */
        assert_true(ha.waited_ms >= 200);
        inventory_slot_give(inv, h.id, INVENTORY_SLOT_START);
        inventory_slot_give(inv, h.id, INVENTORY_SLOT_START);
        /* The host's own limit wins over the default: 2 fit at once. */
        assert_int_equal(store_host_set_throttle(f->st, h.id, 2, -1), 0);
        assert_int_equal(store_host_get(f->st, h.id, &h), 0);
        assert_int_equal(h.max_parallel_starts, 2);
        assert_int_equal(inventory_slot_take(inv, &h, INVENTORY_SLOT_START, NULL, false, NULL), 0);
        assert_int_equal(inventory_slot_take(inv, &h, INVENTORY_SLOT_START, NULL, false, NULL), 0);
        assert_int_equal(throttle_waiting(inv, h.id, INVENTORY_SLOT_START), 0);
        /* Disk-operation slots are counted apart from start slots. */
        assert_int_equal(inventory_slot_take(inv, &h, INVENTORY_SLOT_DISK, NULL, false, NULL), 0);
        assert_int_equal(throttle_waiting(inv, h.id, INVENTORY_SLOT_DISK), 0);
        inventory_slot_give(inv, h.id, INVENTORY_SLOT_DISK);
        inventory_slot_give(inv, h.id, INVENTORY_SLOT_START);
        inventory_slot_give(inv, h.id, INVENTORY_SLOT_START);
        inventory_free(inv);
}


/* ---- operations (inventory-ops.c, inventory-vm-ops.c), without HTTP ---- */

static int64_t audit_rows(Store *st) {
        int64_t n = -1;
        assert_int_equal(store_query_i64(st, &n, "SELECT COUNT(*) FROM audit", ""), 0);
        return n;
}

static int64_t group_rows(Store *st) {
        int64_t n = -1;
        assert_int_equal(store_query_i64(st, &n, "SELECT COUNT(*) FROM host_group", ""), 0);
        return n;
}

/* A delegated administrator of "Lab" (scopes[0]). */
static OpCaller dana(int64_t *scopes) {
        return (OpCaller) { .subj = { .user_id = 7, .role = ROLE_DELEGATED_ADMIN, .scopes = scopes, .n_scopes = 1 },
                            .user_id = 7, .user_name = "dana", .role_name = "delegated-administrator", .address = "10.0.0.9" };
}

/* A URI is found by its normalised key, one indexed lookup; hosts without
 * a key (rows from before it) are normalised and keyed by the first lookup,
 * so none is parsed again; the lowest id wins, as the scan's order did. */
static void test_host_by_uri_keyed(void **state) {
        Fixture *f = *state;
        Inventory *inv = NULL;
        assert_int_equal(inventory_new(f->st, NULL, NULL, &inv), 0);
        int64_t a, b, n = -1;
        assert_int_equal(store_host_insert(f->st, "a", "qemu+tcp://10.0.0.2/system", STORE_ROOT_GROUP_ID, "armada", NULL, &a), 0);
        assert_int_equal(store_host_insert(f->st, "b", "qemu+ssh://root@kvm2/system", STORE_ROOT_GROUP_ID, "armada", NULL, &b), 0);
        assert_int_equal(store_query_i64(f->st, &n, "SELECT count(*) FROM host WHERE uri_key IS NULL", ""), 0);
        assert_int_equal(n, 2);
        StoreHost h;
        assert_int_equal(inventory_host_by_uri(inv, "qemu+tcp://10.0.0.2/system/", &h), 0);
        assert_int_equal(h.id, a);
        assert_int_equal(store_query_i64(f->st, &n, "SELECT count(*) FROM host WHERE uri_key IS NULL", ""), 0);
        assert_int_equal(n, 0);
        _cleanup_free_ char *key = hv_uri_normalize("qemu+ssh://root@kvm2/system");
        assert_int_equal(store_query_i64(f->st, &n, "SELECT id FROM host WHERE uri_key = ?", "s", key), 0);
        assert_int_equal(n, b);
        /* keyed now: found by the key alone */
        assert_int_equal(inventory_host_by_uri(inv, "qemu+ssh://root@kvm2/system", &h), 0);
        assert_int_equal(h.id, b);
        assert_int_equal(inventory_host_by_uri(inv, "qemu+tcp://10.0.0.3/system", &h), -ENOENT);
        /* an older row with the same URI, not keyed yet, comes first */
        int64_t c;
        assert_int_equal(store_host_insert(f->st, "c", "qemu+tcp://10.0.0.2/system", STORE_ROOT_GROUP_ID, "armada", NULL, &c), 0);
        assert_int_equal(store_exec(f->st, "UPDATE host SET uri_key = NULL WHERE id = ?", "i", a), 0);
        assert_int_equal(store_host_set_uri_key(f->st, c, key), 0);
        assert_int_equal(inventory_host_by_uri(inv, "qemu+tcp://10.0.0.2/system", &h), 0);
        assert_int_equal(h.id, a);
        inventory_free(inv);
}

static void test_op_group_create_scope(void **state) {
        Fixture *f = *state;
        Inventory *inv = NULL;
        assert_int_equal(inventory_new(f->st, NULL, NULL, &inv), 0);
        int64_t lab, prod;
        bool created;
        assert_int_equal(store_group_create_path(f->st, "Lab", &lab, &created), 0);
        assert_int_equal(store_group_create_path(f->st, "Production", &prod, &created), 0);
        int64_t scopes[1] = { lab };
        OpCaller c = dana(scopes);
        int64_t groups = group_rows(f->st), audits = audit_rows(f->st);

        /* Outside its scope: refused with 403, one "denied" audit row, and
         * nothing else written. */
        OpError err = {0};
        json_t *g = NULL;
        InventoryGroupSpec spec = { .path = "Production/Web" };
        assert_int_equal(inventory_group_create(inv, &c, &spec, &g, &err), -EPERM);
        assert_null(g);
        assert_int_equal(err.status, 403);
        assert_string_equal(err.code, "forbidden");
        assert_string_equal(err.message, "User 'dana' (delegated-administrator) may not create host group 'Production/Web'.");
        assert_int_equal(group_rows(f->st), groups);
        assert_int_equal(audit_rows(f->st), audits + 1);
        json_t *a = NULL;
        assert_int_equal(store_audit_list(f->st, 1, &a), 0);
        json_t *row = json_array_get(a, 0);
        assert_string_equal(jget_str(row, "result"), "denied");
        assert_string_equal(jget_str(row, "action"), "create");
        assert_string_equal(jget_str(row, "object_kind"), "host group");
        assert_string_equal(jget_str(row, "object_name"), "Production/Web");
        assert_string_equal(jget_str(row, "user_name"), "dana");
        assert_string_equal(jget_str(row, "address"), "10.0.0.9");
        json_decref(a);
        int64_t id;
        assert_int_equal(store_group_find(f->st, "Production/Web", &id), -ENOENT);

        /* Inside it: created and audited "ok". */
        spec = (InventoryGroupSpec) { .name = "Web", .parent_id = lab };
        memset(&err, 0, sizeof err);
        assert_int_equal(inventory_group_create(inv, &c, &spec, &g, &err), 0);
        assert_non_null(g);
        assert_string_equal(jget_str(g, "path"), "Lab/Web");
        json_decref(g);
        assert_int_equal(group_rows(f->st), groups + 1);
        assert_int_equal(store_audit_list(f->st, 1, &a), 0);
        assert_string_equal(jget_str(json_array_get(a, 0), "action"), "group.create");
        assert_string_equal(jget_str(json_array_get(a, 0), "result"), "ok");
        json_decref(a);

        /* A parent it may not read does not exist for it (422 naming the field). */
        spec = (InventoryGroupSpec) { .name = "Db", .parent_id = prod };
        assert_int_equal(inventory_group_create(inv, &c, &spec, &g, &err), -ENOENT);
        assert_int_equal(err.status, 422);
        assert_string_equal(err.field, "parent_id");
        inventory_free(inv);
}

static void test_op_vm_create(void **state) {
        Fixture *f = *state;
        Jobs *jobs = NULL;
        Inventory *inv = NULL;
        assert_int_equal(jobs_new(f->st, 1, &jobs), 0); /* never started: submit only queues */
        assert_int_equal(inventory_new(f->st, jobs, NULL, &inv), 0);
        int64_t h1 = add_host(f->st, "h1", 1, 8, 4096, "ok"), uid;
        assert_int_equal(store_user_insert(f->st, "admin", "x", "administrator", &uid), 0);
        OpCaller admin = { .subj = { .user_id = uid, .role = ROLE_ADMIN }, .user_id = uid, .user_name = "admin", .role_name = "administrator" };
        OpCaller dana_c = { .subj = { .user_id = 7, .role = ROLE_DELEGATED_ADMIN, .scopes = (int64_t[]) { 1 }, .n_scopes = 1 },
                            .user_id = 7, .user_name = "dana", .role_name = "delegated-administrator" };

        /* Force is an administrator's call: 403 on the field, audited. */
        OpError err = {0};
        json_t *out = NULL;
        InventoryVmSpec spec = { .name = "web01", .host_id = h1, .cpus = 1, .memory_mib = 512, .force = true };
        int64_t audits = audit_rows(f->st);
        assert_int_equal(inventory_vm_create(inv, &dana_c, &spec, &out, &err), -EPERM);
        assert_int_equal(err.status, 403);
        assert_string_equal(err.field, "force");
        assert_int_equal(audit_rows(f->st), audits + 1);
        int64_t id;
        assert_int_equal(store_vm_find(f->st, "web01", &id), -ENOENT);

        /* More memory than the host has: 422 no_capacity, no row left. */
        spec = (InventoryVmSpec) { .name = "web01", .host = "h1", .cpus = 1, .memory_mib = 1 << 20 };
        memset(&err, 0, sizeof err);
        assert_int_equal(inventory_vm_create(inv, &admin, &spec, &out, &err), -ENOSPC);
        assert_int_equal(err.status, 422);
        assert_string_equal(err.code, "no_capacity");
        assert_string_equal(err.field, "host");
        assert_int_equal(store_vm_find(f->st, "web01", &id), -ENOENT);

        /* Placement chooses: the row in 'creating', its job queued, audited
         * "accepted" with how the host was chosen, and a vm.placed event. */
        spec = (InventoryVmSpec) { .name = "web01", .cpus = 1, .memory_mib = 512 };
        assert_int_equal(inventory_vm_create(inv, &admin, &spec, &out, &err), 0);
        json_t *vm = json_object_get(out, "vm");
        assert_string_equal(jget_str(vm, "name"), "web01");
        assert_string_equal(jget_str(vm, "state"), "creating");
        assert_string_equal(jget_str(json_object_get(out, "job"), "kind"), "vm.create");
        assert_string_equal(jget_str(json_object_get(out, "placement"), "host"), "h1");
        json_decref(out);
        json_t *a = NULL;
        assert_int_equal(store_audit_list(f->st, 1, &a), 0);
        assert_string_equal(jget_str(json_array_get(a, 0), "action"), "vm.create");
        assert_string_equal(jget_str(json_array_get(a, 0), "result"), "accepted");
        assert_non_null(strstr(jget_str(json_array_get(a, 0), "detail"), "h1 (chosen by placement, rating"));
        json_decref(a);
        json_t *ev = NULL;
        assert_int_equal(store_event_list(f->st, 0, 0, 10, &ev), 0);
        bool placed = false;
        size_t i;
        json_t *it;
        json_array_foreach(ev, i, it) placed = placed || streq(jget_str(it, "kind"), "vm.placed");
        assert_true(placed);
        json_decref(ev);

        /* The name is taken now: 409 naming it for a caller who may read it. */
        memset(&err, 0, sizeof err);
        assert_int_equal(inventory_vm_create(inv, &admin, &spec, &out, &err), -EEXIST);
        assert_int_equal(err.status, 409);
        assert_string_equal(err.message, "A VM named 'web01' already exists.");
        inventory_free(inv);
        jobs_free(jobs);
}

/* A VM's owner: an administrator gives and takes it (audited, vm.updated
 * events for the new and the previous owner); a delegated administrator
 * only within its scope (else 404), a self-service owner never (403,
 * audited, before the user's name is looked at); an unknown user is a 400
 * naming "owner" and changes nothing, the description included. */
static void test_op_vm_update(void **state) {
        Fixture *f = *state;
        Inventory *inv = NULL;
        assert_int_equal(inventory_new(f->st, NULL, NULL, &inv), 0);
        int64_t lab, other, alice, bob;
        bool created;
        assert_int_equal(store_group_create_path(f->st, "Lab", &lab, &created), 0);
        assert_int_equal(store_group_create_path(f->st, "Other", &other, &created), 0);
        int64_t h1 = add_host(f->st, "h1", lab, 8, 4096, "ok"), h2 = add_host(f->st, "h2", other, 8, 4096, "ok");
        int64_t v1 = add_vm(f->st, "web01", h1, 1, 512, "running"), v2 = add_vm(f->st, "db01", h2, 1, 512, "running");
        assert_int_equal(store_user_insert(f->st, "alice", "x", "self-service", &alice), 0);
        assert_int_equal(store_user_insert(f->st, "bob", "x", "self-service", &bob), 0);
        OpCaller admin = { .subj = { .user_id = 1, .role = ROLE_ADMIN }, .user_id = 1, .user_name = "admin", .role_name = "administrator" };
        OpCaller dana_c = { .subj = { .user_id = 7, .role = ROLE_DELEGATED_ADMIN, .scopes = (int64_t[]) { lab }, .n_scopes = 1 },
                            .user_id = 7, .user_name = "dana", .role_name = "delegated-administrator" };
        OpCaller alice_c = { .subj = { .user_id = alice, .role = ROLE_SELF_SERVICE }, .user_id = alice, .user_name = "alice",
                             .role_name = "self-service" };
        OpError err = {0};
        json_t *out = NULL, *ev = NULL;
        int64_t n_events;

        InventoryVmUpdateSpec give = { .set_owner = true, .owner = "alice", .description = "web tier" };
        assert_int_equal(inventory_vm_update(inv, &admin, v1, &give, &out, &err), 0);
        assert_string_equal(jget_str(out, "owner_name"), "alice");
        assert_string_equal(jget_str(out, "description"), "web tier");
        json_decref(out);
        assert_int_equal(store_event_list(f->st, 0, 0, 10, &ev), 0);
        assert_string_equal(jget_str(json_array_get(ev, 0), "message"), "VM 'web01' now belongs to user 'alice'.");
        assert_int_equal(jget_int(json_array_get(ev, 0), "owner_id"), alice);
        n_events = (int64_t) json_array_size(ev);
        json_decref(ev);

        /* Unknown user: 400 on "owner", nothing written. */
        InventoryVmUpdateSpec bad = { .set_owner = true, .owner = "nobody", .description = "changed" };
        assert_int_equal(inventory_vm_update(inv, &admin, v1, &bad, &out, &err), -EINVAL);
        assert_int_equal(err.status, 400);
        assert_string_equal(err.field, "owner");
        StoreVm vm;
        assert_int_equal(store_vm_get(f->st, v1, &vm), 0);
        assert_int_equal(vm.owner_id, alice);
        assert_string_equal(vm.description, "web tier");

        /* The owner may not give it away: 403, audited, whoever is named. */
        int64_t audits = audit_rows(f->st);
        memset(&err, 0, sizeof err);
        assert_int_equal(inventory_vm_update(inv, &alice_c, v1, &bad, &out, &err), -EPERM);
        assert_int_equal(err.status, 403);
        assert_int_equal(audit_rows(f->st), audits + 1);

        /* A delegated administrator: its scope's VMs only. */
        InventoryVmUpdateSpec to_bob = { .set_owner = true, .owner = "bob" };
        assert_int_equal(inventory_vm_update(inv, &dana_c, v2, &to_bob, &out, &err), -ENOENT);
        assert_int_equal(err.status, 404);
        assert_int_equal(inventory_vm_update(inv, &dana_c, v1, &to_bob, &out, &err), 0);
        assert_string_equal(jget_str(out, "owner_name"), "bob");
        json_decref(out);
        /* From alice to bob: both hear of it. */
        assert_int_equal(store_event_list(f->st, 0, 0, 10, &ev), 0);
        assert_int_equal((int64_t) json_array_size(ev), n_events + 2);
        assert_string_equal(jget_str(json_array_get(ev, 0), "message"), "VM 'web01' no longer belongs to user 'alice'.");
        assert_int_equal(jget_int(json_array_get(ev, 0), "owner_id"), alice);
        assert_string_equal(jget_str(json_array_get(ev, 1), "message"), "VM 'web01' now belongs to user 'bob'.");
        json_decref(ev);

        /* Cleared, then the description alone: it keeps no owner. */
        InventoryVmUpdateSpec clear = { .set_owner = true, .owner = NULL };
        assert_int_equal(inventory_vm_update(inv, &admin, v1, &clear, &out, &err), 0);
        assert_true(json_is_null(json_object_get(out, "owner_id")));
        json_decref(out);
        InventoryVmUpdateSpec desc = { .description = "" };
        assert_int_equal(inventory_vm_update(inv, &admin, v1, &desc, &out, &err), 0);
        assert_true(json_is_null(json_object_get(out, "owner_id")));
        assert_true(json_is_null(json_object_get(out, "description")));
        json_decref(out);
        inventory_free(inv);
}

/* A database failure is not "not found": showing a VM or a host answers 5xx
 * "internal" with a sentence that names no SQL, table or file, where a
 * missing one answers 404 as it always did. */
/* What a VM asking "auto" (or NULL) runs as: the host's preference first,
 * else what its libvirt offers; an explicit kvm/qemu wins; test stays test. */
static void test_domain_type(void **state) {
        (void) state;
        StoreHost h = { .domain_type = "kvm", .domain_type_preference = "auto" };
        assert_string_equal(inventory_domain_type(&h, "auto"), "kvm");
        assert_string_equal(inventory_domain_type(&h, NULL), "kvm");
        assert_string_equal(inventory_domain_type(&h, "qemu"), "qemu");
        snprintf(h.domain_type_preference, sizeof h.domain_type_preference, "qemu");
        assert_string_equal(inventory_domain_type(&h, "auto"), "qemu");
        assert_string_equal(inventory_domain_type(&h, NULL), "qemu");
        assert_string_equal(inventory_domain_type(&h, "kvm"), "kvm");
        /* a TCG-only host: auto is qemu, whatever an old kvm preference says */
        StoreHost t = { .domain_type = "qemu", .domain_type_preference = "auto" };
        assert_string_equal(inventory_domain_type(&t, "auto"), "qemu");
        snprintf(t.domain_type_preference, sizeof t.domain_type_preference, "kvm");
        assert_string_equal(inventory_domain_type(&t, "auto"), "kvm"); /* the create job then refuses it */
        /* never connected: qemu */
        StoreHost n = { .domain_type = "", .domain_type_preference = "auto" };
        assert_string_equal(inventory_domain_type(&n, "auto"), "qemu");
        StoreHost d = { .domain_type = "test", .domain_type_preference = "auto" };
        assert_string_equal(inventory_domain_type(&d, "auto"), "test");
        assert_string_equal(inventory_domain_type(&d, "qemu"), "test");
        snprintf(d.domain_type_preference, sizeof d.domain_type_preference, "qemu");
        assert_string_equal(inventory_domain_type(&d, "auto"), "qemu");
        assert_string_equal(inventory_domain_type(&d, NULL), "qemu");
        assert_string_equal(inventory_domain_type(&d, "kvm"), "test");

        char why[256];
        assert_int_equal(inventory_domain_type_preference_check(&h, "kvm", why, sizeof why), 0);
        assert_int_equal(inventory_domain_type_preference_check(&h, "xen", why, sizeof why), -EINVAL);
        assert_int_equal(inventory_domain_type_preference_check(&t, "qemu", why, sizeof why), 0);
        assert_int_equal(inventory_domain_type_preference_check(&t, "kvm", why, sizeof why), -ENOTSUP);
        assert_non_null(strstr(why, "offers no KVM"));
        assert_int_equal(inventory_domain_type_preference_check(&n, "kvm", why, sizeof why), -ENOTSUP);
        assert_non_null(strstr(why, "not been connected"));
        assert_int_equal(inventory_domain_type_preference_check(&d, "kvm", why, sizeof why), -ENOTSUP);
}

/* PATCH's operation: stored and shown, audited; a refused value changes
 * nothing (not even a throttle given with it). */
static void test_op_host_domain_type_preference(void **state) {
        Fixture *f = *state;
        Inventory *inv = NULL;
        assert_int_equal(inventory_new(f->st, NULL, NULL, &inv), 0);
        int64_t id = add_host(f->st, "h1", STORE_ROOT_GROUP_ID, 8, 4096, "ok");
        assert_int_equal(store_host_set_facts(f->st, id, 8, 4096, 4096, "QEMU", "qemu", "h1", "/tmp"), 0);
        OpCaller admin = { .subj = { .user_id = 1, .role = ROLE_ADMIN }, .user_id = 1, .user_name = "admin", .role_name = "administrator" };
        OpError err = {0};
        json_t *out = NULL;
        StoreHost h;
        assert_int_equal(store_host_get(f->st, id, &h), 0);
        assert_string_equal(h.domain_type_preference, "auto");
        int64_t audits = audit_rows(f->st);

        InventoryHostSpec kvm = { .max_parallel_starts = 3, .max_parallel_disk_ops = -1, .domain_type_preference = "kvm" };
        assert_true(inventory_host_update(inv, &admin, id, &kvm, &out, &err) < 0);
        assert_int_equal(err.status, 409);
        assert_string_equal(err.field, "domain_type_preference");
        assert_int_equal(store_host_get(f->st, id, &h), 0);
        assert_string_equal(h.domain_type_preference, "auto");
        assert_int_equal(h.max_parallel_starts, 0);
        assert_int_equal(audit_rows(f->st), audits);

        err = (OpError) {0};
        InventoryHostSpec qemu = { .max_parallel_starts = -1, .max_parallel_disk_ops = -1, .domain_type_preference = "qemu" };
        assert_int_equal(inventory_host_update(inv, &admin, id, &qemu, &out, &err), 0);
        assert_string_equal(jget_str(out, "domain_type_preference"), "qemu");
        json_decref(out);
        assert_int_equal(audit_rows(f->st), audits + 1);
        assert_int_equal(store_host_get(f->st, id, &h), 0);
        assert_string_equal(inventory_domain_type(&h, "auto"), "qemu");

        /* NULL keeps it */
        InventoryHostSpec keep = { .max_parallel_starts = 2, .max_parallel_disk_ops = -1 };
        assert_int_equal(inventory_host_update(inv, &admin, id, &keep, &out, &err), 0);
        assert_string_equal(jget_str(out, "domain_type_preference"), "qemu");
        json_decref(out);
        inventory_free(inv);
}

static void test_op_show_db_error(void **state) {
        Fixture *f = *state;
        Inventory *inv = NULL;
        assert_int_equal(inventory_new(f->st, NULL, NULL, &inv), 0);
        int64_t h1 = add_host(f->st, "h1", 1, 8, 4096, "ok");
        int64_t v1 = add_vm(f->st, "web01", h1, 1, 512, "running");
        OpCaller admin = { .subj = { .user_id = 1, .role = ROLE_ADMIN }, .user_id = 1, .user_name = "admin", .role_name = "administrator" };
        OpError err = {0};
        json_t *out = NULL;

        assert_int_equal(inventory_vm_get(inv, &admin, v1 + 100, &out, &err), -ENOENT);
        assert_int_equal(err.status, 404);
        assert_string_equal(err.code, "not_found");
        assert_string_equal(err.message, "There is no VM with id 101.");
        assert_null(out);
        assert_int_equal(inventory_vm_get(inv, &admin, v1, &out, &err), 0);
        assert_string_equal(jget_str(out, "name"), "web01");
        json_decref(out);
        out = NULL;

        assert_int_equal(tmpstore_break_table(f->st, "vm"), 0);
        memset(&err, 0, sizeof err);
        int r = inventory_vm_get(inv, &admin, v1, &out, &err);
        assert_true(r < 0 && r != -ENOENT);
        assert_null(out);
        assert_int_equal(err.status, 500);
        assert_string_equal(err.code, "internal");
        assert_string_equal(err.message, "A database error occurred while handling the VM.");
        /* A host's row counts its VMs: it fails the same way. */
        memset(&err, 0, sizeof err);
        r = inventory_host_get(inv, &admin, h1, &out, &err);
        assert_true(r < 0 && r != -ENOENT);
        assert_int_equal(err.status, 500);
        assert_string_equal(err.code, "internal");
        assert_null(strstr(err.message, "vm"));
        assert_null(strstr(err.message, "SELECT"));
        assert_null(strstr(err.message, f->path));
        /* A busy database is 503 "busy", to be retried. */
        memset(&err, 0, sizeof err);
        assert_int_equal(op_fail_store(&err, -EBUSY, "the VM"), -EBUSY);
        assert_int_equal(err.status, 503);
        assert_string_equal(err.code, "busy");
        inventory_free(inv);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_policy_resolve),
                cmocka_unit_test(test_vnc_for_host),
                cmocka_unit_test(test_domain_type),
                cmocka_unit_test_setup_teardown(test_op_host_domain_type_preference, setup, teardown),
                cmocka_unit_test_setup_teardown(test_policy_roundtrip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rate_allocations_states_and_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_choose_pending_and_exclude, setup, teardown),
                cmocka_unit_test_setup_teardown(test_group_subtree_reserve_and_goal, setup, teardown),
                cmocka_unit_test_setup_teardown(test_scope, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reservations, setup, teardown),
                cmocka_unit_test_setup_teardown(test_scope_of, setup, teardown),
                cmocka_unit_test_setup_teardown(test_measured_usage, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failover_reserve, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rules, setup, teardown),
                cmocka_unit_test_setup_teardown(test_throttle_priority_first, setup, teardown),
                cmocka_unit_test_setup_teardown(test_op_group_create_scope, setup, teardown),
                cmocka_unit_test_setup_teardown(test_host_by_uri_keyed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_op_vm_create, setup, teardown),
                cmocka_unit_test_setup_teardown(test_op_vm_update, setup, teardown),
                cmocka_unit_test_setup_teardown(test_op_show_db_error, setup, teardown),
                cmocka_unit_test_setup_teardown(test_throttle_priority_bounded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_quiet_host_facts_every_few_rounds, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
