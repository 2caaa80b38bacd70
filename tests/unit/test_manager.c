/* Unit tests of the manager lease (store-manager.c) and the manager's
 * role changes (manager.c) on a temporary store, with injected time: who
 * takes the lease when, the fencing token, the fence's refusals, promotion,
 * demotion and the respawn of a demoted manager; and the masking of
 * passwords in a store URL. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "manager/manager-priv.h"
#include "store/store-manager.h"
#include "tmpstore.h"

static int setup(void **state) {
        *state = tmpstore_new("manager");
        return *state ? 0 : -1;
}
static int teardown(void **state) { return tmpstore_free(*state); }
#define ST(state) (((TmpStore *) *(state))->st)

static void test_lease_take_renew_expire_and_stale(void **state) {
        Store *st = ST(state);
        StoreLease l;
        assert_int_equal(store_lease_get(st, &l), -ENOENT);
        assert_int_equal(store_lease_acquire(st, "a", 0, 3000, 1000, &l), 0);
        assert_string_equal(l.holder, "a");
        assert_int_equal(l.token, 1);
        assert_int_equal(l.expires, 4000);
        /* b while a's lease runs: nothing changes. */
        assert_int_equal(store_lease_acquire(st, "b", 0, 3000, 2000, &l), 0);
        assert_string_equal(l.holder, "a");
        /* a renews with its token. */
        assert_int_equal(store_lease_acquire(st, "a", 1, 3000, 3500, &l), 0);
        assert_int_equal(l.expires, 6500);
        assert_int_equal(l.token, 1);
        assert_int_equal(store_lease_acquire(st, "b", 0, 3000, 6499, &l), 0);
        assert_string_equal(l.holder, "a");
        /* Expired: b takes it, the token moves on. */
        assert_int_equal(store_lease_acquire(st, "b", 0, 3000, 6500, &l), 0);
        assert_string_equal(l.holder, "b");
        assert_int_equal(l.token, 2);
        assert_int_equal(l.since, 6500);
        /* a comes back with its old token: stale, and told who holds it. */
        assert_int_equal(store_lease_acquire(st, "a", 1, 3000, 7000, &l), -ESTALE);
        assert_string_equal(l.holder, "b");
        assert_int_equal(l.token, 2);
        /* Even once b's lease has run out, a never takes it back silently. */
        assert_int_equal(store_lease_acquire(st, "a", 1, 3000, 100000, &l), -ESTALE);
        assert_int_equal(store_lease_get(st, &l), 0);
        assert_string_equal(l.holder, "b");
        /* Release: the next manager need not wait. */
        assert_int_equal(store_lease_release(st, "a", 2), -ESTALE);
        assert_int_equal(store_lease_release(st, "b", 2), 0);
        assert_int_equal(store_lease_acquire(st, "c", 0, 3000, 7001, &l), 0);
        assert_string_equal(l.holder, "c");
        assert_int_equal(l.token, 3);
        /* From a dead holder only while it holds it. */
        assert_int_equal(store_lease_acquire_from(st, "d", 3000, 7002, "x", &l), 0);
        assert_string_equal(l.holder, "c");
        assert_int_equal(store_lease_acquire_from(st, "d", 3000, 7002, "c", &l), 0);
        assert_string_equal(l.holder, "d");
        assert_int_equal(l.token, 4);
}

static int stale_calls;
static void on_stale(void *userdata) {
        (void) userdata;
        stale_calls++;
}

static void test_fence_refuses_a_stale_token(void **state) {
        Store *st = ST(state);
        StoreLease l;
        assert_int_equal(store_lease_acquire(st, "a", 0, 3000, 1000, &l), 0);
        /* No fence: passes. */
        assert_int_equal(store_fence_verify(st), 0);
        store_fence_set(st, "a", 1, on_stale, NULL);
        stale_calls = 0;
        assert_int_equal(store_fence_verify(st), 0);
        assert_int_equal(store_fence_begin(st), 0);
        assert_true(store_in_transaction(st));
        assert_int_equal(store_end(st, 0), 0);
        /* b takes over: a's next fenced step is refused, in no transaction. */
        assert_int_equal(store_lease_acquire(st, "b", 0, 3000, 5000, &l), 0);
        assert_int_equal(l.token, 2);
        assert_int_equal(store_fence_begin(st), -ESTALE);
        assert_false(store_in_transaction(st));
        assert_int_equal(stale_calls, 1);
        /* Refuse-all (a demoted manager): no query, still refused. */
        store_fence_set(st, "a", -1, on_stale, NULL);
        assert_int_equal(store_fence_verify(st), -ESTALE);
        assert_int_equal(stale_calls, 2);
        store_fence_set(st, "b", 2, NULL, NULL);
        assert_int_equal(store_fence_verify(st), 0);
        store_fence_set(st, NULL, 0, NULL, NULL);
}

static void test_manager_rows(void **state) {
        Store *st = ST(state);
        StoreManagerSelf me = { .id = "m1", .url = "http://a:1", .pid = 11, .hostname = "h1", .started_at = 100, .lease_ttl_ms = 6000 };
        assert_int_equal(store_manager_heartbeat(st, &me, "active", 1000), 0);
        me = (StoreManagerSelf) { .id = "old", .url = "http://o:1", .pid = 12, .hostname = "h1", .started_at = 50, .lease_ttl_ms = 6000 };
        assert_int_equal(store_manager_heartbeat(st, &me, "standby", 1000), 0);
        me = (StoreManagerSelf) { .id = "m1", .url = "http://a:2", .pid = 11, .hostname = "h1", .started_at = 100, .lease_ttl_ms = 6000 };
        /* An hour later the silent one is forgotten; m1's row is updated. */
        assert_int_equal(store_manager_heartbeat(st, &me, "standby", 1000 + 3600 * 1000LL + 1), 0);
        json_t *list = NULL;
        assert_int_equal(store_manager_list_json(st, &list), 0);
        assert_int_equal(json_array_size(list), 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "url")), "http://a:2");
        assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "role")), "standby");
        json_decref(list);
        char host[256];
        int64_t pid;
        char *url = NULL;
        assert_int_equal(store_manager_where(st, "m1", host, &pid, &url), 0);
        assert_string_equal(host, "h1");
        assert_int_equal(pid, 11);
        free(url);
        assert_int_equal(store_manager_where(st, "old", host, &pid, &url), -ENOENT);
        assert_int_equal(store_manager_remove(st, "m1"), 0);
        assert_int_equal(store_manager_remove(st, "m1"), -ENOENT);
}

typedef struct {
        int promoted, demoted, respawned, ticks;
} Calls;
static int cb_promote(void *u) { ((Calls *) u)->promoted++; return 0; }
static void cb_demote(void *u) { ((Calls *) u)->demoted++; }
static void cb_respawn(void *u) { ((Calls *) u)->respawned++; }
static void cb_tick(void *u) { ((Calls *) u)->ticks++; }

static Manager *mk(Store *st, Calls *c, const char *url) {
        ManagerConfig cfg = { .lease_ttl_ms = 3000, .url = url, .db = "postgresql://armada:secret@db1/armada",
                              .promote = cb_promote, .demote = cb_demote, .standby_tick = cb_tick, .respawn = cb_respawn,
                              .userdata = c };
        Manager *m = NULL;
        assert_int_equal(manager_new(st, &cfg, &m), 0);
        return m;
}

static void test_manager_roles(void **state) {
        Store *st = ST(state);
        Calls c1 = { 0 }, c2 = { 0 };
        Manager *m1 = mk(st, &c1, "http://one:1"), *m2 = mk(st, &c2, "http://two:2");
        int64_t t = now_ms();
        manager_tick(m1, t);
        assert_true(manager_is_active(m1));
        assert_int_equal(c1.promoted, 1);
        manager_tick(m2, t + 10);
        assert_false(manager_is_active(m2));
        assert_int_equal(c2.promoted, 0);
        assert_int_equal(c2.ticks, 1);
        char *url = NULL;
        assert_int_equal(manager_active_url(m2, &url), 0);
        assert_string_equal(url, "http://one:1");
        free(url);
        /* m1 stops renewing (frozen): m2 takes over once the lease ran out. */
        manager_tick(m2, t + 3001);
        assert_true(manager_is_active(m2));
        assert_int_equal(c2.promoted, 1);
        /* m1 thaws: its renewal is refused, it demotes itself. */
        manager_tick(m1, t + 3100);
        assert_false(manager_is_active(m1));
        assert_int_equal(c1.demoted, 1);
        assert_int_equal(store_fence_verify(st), -ESTALE); /* the process's fence is m1's refuse-all now */
        /* Spent: while m2 holds the lease it stays standby ... */
        manager_tick(m1, t + 3200);
        assert_int_equal(c1.respawned, 0);
        assert_int_equal(c1.promoted, 1);
        /* ... once the lease is free it asks to start afresh, once. */
        manager_tick(m1, t + 100000);
        manager_tick(m1, t + 100001);
        assert_int_equal(c1.respawned, 1);
        assert_int_equal(c1.promoted, 1);
        /* Status: the store URL masked, for administrators only. */
        OpCaller admin = { .subj = { .role = ROLE_ADMIN }, .user_id = 1, .user_name = "admin", .role_name = "administrator" };
        OpCaller ro = { .subj = { .role = ROLE_READ_ONLY }, .user_id = 2, .user_name = "ro", .role_name = "read-only" };
        OpError err;
        json_t *s = NULL;
        assert_int_equal(manager_status(m2, &admin, &s, &err), 0);
        json_t *store = json_object_get(s, "store");
        assert_string_equal(json_string_value(json_object_get(store, "engine")), "postgresql");
        assert_string_equal(json_string_value(json_object_get(store, "url")), "postgresql://armada:***@db1/armada");
        json_decref(s);
        assert_int_equal(manager_status(m2, &ro, &s, &err), 0);
        assert_null(json_object_get(json_object_get(s, "store"), "url"));
        json_decref(s);
        manager_free(m1);
        manager_free(m2);
}

static void test_mask_db(void **state) {
        (void) state;
        struct { const char *in, *out; } cases[] = {
                { "postgresql://armada:s3cret@db1:5432/armada", "postgresql://armada:***@db1:5432/armada" },
                { "postgres://armada@db1/armada", "postgres://armada@db1/armada" },
                { "postgresql:host=/tmp/x dbname=armada password=p@ss user=a", "postgresql:host=/tmp/x dbname=armada password=*** user=a" },
                { "sqlite:var/armada.db", "sqlite:var/armada.db" },
                { "/var/lib/armada/armada.db", "/var/lib/armada/armada.db" },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                char *m = store_db_masked(cases[i].in);
                assert_string_equal(m, cases[i].out);
                free(m);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_lease_take_renew_expire_and_stale, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fence_refuses_a_stale_token, setup, teardown),
                cmocka_unit_test_setup_teardown(test_manager_rows, setup, teardown),
                cmocka_unit_test_setup_teardown(test_manager_roles, setup, teardown),
                cmocka_unit_test(test_mask_db),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
