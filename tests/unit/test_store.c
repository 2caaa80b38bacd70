/* Unit tests for store/: migrations, the group tree, job claiming, tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "store/store.h"
#include "store/store-ha.h"
#include "store/store-monitor.h"
#include "store/store-priv.h"
#include "store/store-library.h"
#include "store/store-engine.h"
#include "tmpstore.h"

static TmpStore *fixture;

static int setup(void **state) {
        fixture = tmpstore_new("store");
        if (!fixture)
                return -1;
        *state = fixture->st;
        return 0;
}

static int teardown(void **state) {
        (void) state;
        return tmpstore_free(fixture);
}

static void test_migrations_once(void **state) {
        Store *st = *state;
        int v = store_schema_version(st);
        assert_true(v >= 1);
        Store *again;
        assert_int_equal(store_open(fixture->path, &again), 0);
        assert_int_equal(store_schema_version(again), v);
        int64_t n;
        assert_int_equal(store_query_i64(again, &n, "SELECT count(*) FROM schema_migration WHERE name = 'core-1'", ""), 0);
        assert_int_equal(n, 1);
        assert_int_equal(store_query_i64(again, &n, "SELECT count(*) FROM host_group WHERE id = 1", ""), 0);
        assert_int_equal(n, 1);
        store_free(again);
}

static void test_group_paths(void **state) {
        Store *st = *state;
        const char *why = NULL;
        char *p = store_group_path_normalize("All Hosts/Seattle//Production/", &why);
        assert_string_equal(p, "Seattle/Production");
        free(p);
        p = store_group_path_normalize("/", &why);
        assert_string_equal(p, "");
        free(p);
        assert_null(store_group_path_normalize("a/../b", &why));
        assert_non_null(why);
        assert_null(store_group_path_normalize("a/<b>", &why));

        int64_t prod, seattle, dublin, axb;
        bool created;
        assert_int_equal(store_group_create_path(st, "Seattle/Production", &prod, &created), 0);
        assert_true(created);
        assert_int_equal(store_group_find(st, "Seattle", &seattle), 0);
        assert_int_equal(store_group_create_path(st, "Seattle/Production", &prod, &created), 0);
        assert_false(created);
        /* '_' is a LIKE wildcard: renaming "a_b" must not touch "axb". */
        int64_t ab;
        assert_int_equal(store_group_create_path(st, "a_b/child", &ab, NULL), 0);
        assert_int_equal(store_group_create_path(st, "axb/child", &axb, NULL), 0);
        int64_t a_b;
        assert_int_equal(store_group_find(st, "a_b", &a_b), 0);
        assert_int_equal(store_group_rename(st, a_b, "renamed"), 0);
        int64_t x;
        assert_int_equal(store_group_find(st, "renamed/child", &x), 0);
        assert_int_equal(store_group_find(st, "axb/child", &x), 0);
        assert_int_equal(x, axb);

        int64_t chain[8];
        assert_int_equal(store_group_chain(st, prod, chain, 8), 3);
        assert_true(chain[0] == prod && chain[1] == seattle && chain[2] == 1);

        assert_int_equal(store_group_create_path(st, "Dublin", &dublin, NULL), 0);
        assert_int_equal(store_group_move(st, seattle, prod), -ELOOP);
        assert_int_equal(store_group_move(st, seattle, seattle), -ELOOP);
        assert_int_equal(store_group_move(st, prod, dublin), 0);
        assert_int_equal(store_group_find(st, "Dublin/Production", &x), 0);
        assert_int_equal(store_group_delete(st, dublin), -ENOTEMPTY);
        assert_int_equal(store_group_delete(st, 1), -EPERM);
        assert_int_equal(store_group_delete(st, prod), 0);
        assert_int_equal(store_group_delete(st, dublin), 0);
}

static void test_job_claim_one_per_target(void **state) {
        Store *st = *state;
        int64_t j1, j2, j3;
        /* store_job_claimable() answers what a claim would find, in step
         * with it at every point below. */
        assert_int_equal(store_job_claimable(st), 0);
        assert_int_equal(store_job_insert(st, "vm.start", "vm", 7, "v7", 0, NULL, &j1), 0);
        assert_int_equal(store_job_claimable(st), 1);
        assert_int_equal(store_job_insert(st, "vm.stop", "vm", 7, "v7", 0, "{\"timeout_s\":1}", &j2), 0);
        assert_int_equal(store_job_insert(st, "vm.start", "vm", 8, "v8", 0, NULL, &j3), 0);
        StoreJob a = {0}, b = {0}, c = {0};
        assert_int_equal(store_job_claim(st, &a), 0);
        assert_int_equal(a.id, j1);
        /* j2 has the same target as the running j1: the next claim skips it. */
        assert_int_equal(store_job_claim(st, &b), 0);
        assert_int_equal(b.id, j3);
        /* j2 is queued but its target is taken: nothing to claim. */
        assert_int_equal(store_job_claimable(st), 0);
        assert_int_equal(store_job_claim(st, &c), -ENOENT);
        assert_int_equal(store_job_finish(st, j1, "succeeded", NULL, NULL), 0);
        /* Ended, but its worker has not come back: the target stays taken. */
        assert_int_equal(store_job_claimable(st), 0);
        assert_int_equal(store_job_claim(st, &c), -ENOENT);
        assert_int_equal(store_job_worker_done(st, j1), 0);
        assert_int_equal(store_job_claimable(st), 1);
        assert_int_equal(store_job_claim(st, &c), 0);
        assert_int_equal(store_job_claimable(st), 0);
        assert_int_equal(c.id, j2);
        assert_string_equal(c.params_json, "{\"timeout_s\":1}");
        assert_int_equal(c.attempts, 1);
        /* cancel: a running job is asked, a finished one is refused */
        assert_int_equal(store_job_request_cancel(st, j2), 0);
        bool req = false;
        assert_int_equal(store_job_cancel_requested(st, j2, &req), 0);
        assert_true(req);
        assert_int_equal(store_job_request_cancel(st, j1), -EALREADY);
        /* A stuck job a user cancelled keeps that end whatever its worker
         * reports later; a job that is not stuck is not ended that way. */
        assert_int_equal(store_job_end_stuck(st, j3, "x"), 0);
        assert_int_equal(store_job_set_stuck(st, j3, 1000), 1);
        assert_int_equal(store_job_set_stuck(st, j3, 2000), 0);
        assert_int_equal(store_job_end_stuck(st, j3, "cancelled while stuck"), 1);
        assert_int_equal(store_job_finish(st, j3, "succeeded", NULL, NULL), -EALREADY);
        char state_[16];
        assert_int_equal(store_job_state(st, j3, state_), 0);
        assert_string_equal(state_, "cancelled");
        store_job_clear(&a);
        store_job_clear(&b);
        store_job_clear(&c);
}

static void test_tokens_expire(void **state) {
        Store *st = *state;
        int64_t uid;
        assert_int_equal(store_user_insert(st, "tok", "$argon2id$x", "read-only", &uid), 0);
        assert_int_equal(store_user_insert(st, "tok", "$argon2id$y", "read-only", &uid), -EEXIST);
        assert_int_equal(store_token_insert(st, uid, "h1", 1000), 0);
        StoreUser u;
        assert_int_equal(store_token_user(st, "h1", 999, &u), 0);
        assert_string_equal(u.name, "tok");
        assert_int_equal(store_token_user(st, "h1", 1000, &u), -ENOENT);
        assert_int_equal(store_token_user(st, "nope", 0, &u), -ENOENT);
}

/* A hypervisor's identity is held by one host record at a time; the first
 * claimant keeps it, and a 'duplicate' record does not count. */
static void test_host_identity_claims(void **state) {
        Store *st = *state;
        int64_t h1, h2, h3;
        assert_int_equal(store_host_insert(st, "id-h1", "qemu+tcp://a/system", 1, "armada", "/p", &h1), 0);
        assert_int_equal(store_host_insert(st, "id-h2", "qemu+tcp://a/system?no_verify=1", 1, "armada", "/p", &h2), 0);
        assert_int_equal(store_host_insert(st, "id-h3", "qemu+tcp://b/system", 1, "armada", "/p", &h3), 0);
        const char *uuid_a = "uuid:6f1c2a9e-0b7d-4c3e-9a51-2d8e7f4b1c00";
        assert_int_equal(store_host_claim_identity(st, h1, uuid_a, NULL), 0);
        assert_int_equal(store_host_claim_identity(st, h1, uuid_a, NULL), 0); /* again: still its own */
        StoreHost holder = {0};
        assert_int_equal(store_host_claim_identity(st, h2, uuid_a, &holder), -EEXIST);
        assert_string_equal(holder.name, "id-h1");
        StoreHost h;
        assert_int_equal(store_host_get(st, h2, &h), 0);
        assert_string_equal(h.identity, ""); /* nothing changed */
        assert_int_equal(store_host_claim_identity(st, h3, "uuid:0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b", NULL), 0);
        assert_int_equal(store_host_get(st, h1, &h), 0);
        assert_string_equal(h.identity, uuid_a);
        /* A holder marked duplicate gives way. */
        assert_int_equal(store_host_set_state(st, h1, "duplicate", "test"), 1);
        assert_int_equal(store_host_claim_identity(st, h2, uuid_a, NULL), 0);
        StoreHost *all = NULL;
        assert_int_equal(store_host_all(st, &all), 3);
        assert_string_equal(all[1].identity, uuid_a);
        free(all);
        json_t *j = NULL;
        assert_int_equal(store_host_get_json(st, h2, &j), 0);
        assert_string_equal(json_string_value(json_object_get(j, "hv_uuid")), uuid_a + 5);
        json_decref(j);
        for (int64_t id = h1; id <= h3; id++)
                assert_int_equal(store_host_delete(st, id, false), 0);
}

static void test_installation_id_is_stable(void **state) {
        Store *st = *state;
        char a[37], b[37];
        assert_int_equal(store_installation_id(st, a), 0);
        assert_true(uuid_is_valid(a));
        assert_int_equal(store_installation_id(st, b), 0);
        assert_string_equal(a, b);
        Store *again;
        assert_int_equal(store_open(fixture->path, &again), 0);
        assert_int_equal(store_installation_id(again, b), 0);
        assert_string_equal(a, b);
        store_free(again);
}

static void test_vm_rows(void **state) {
        Store *st = *state;
        int64_t host, vm, dup;
        assert_int_equal(store_host_insert(st, "hx", "test:///default", 1, "armada", "/p", &host), 0);
        StoreVm v = { .host_id = host, .cpus = 2, .memory_mib = 128 };
        snprintf(v.uuid, sizeof v.uuid, "00000000-0000-4000-8000-000000000001");
        snprintf(v.name, sizeof v.name, "vmx");
        snprintf(v.state, sizeof v.state, "stopped");
        snprintf(v.description, sizeof v.description, "it's <quoted> & \"odd\"");
        assert_int_equal(store_vm_insert(st, &v, &vm), 0);
        assert_int_equal(store_vm_insert(st, &v, &dup), -EEXIST);
        StoreVm got;
        assert_int_equal(store_vm_get(st, vm, &got), 0);
        assert_string_equal(got.description, "it's <quoted> & \"odd\"");
        assert_int_equal(store_vm_set_state(st, vm, "running"), 1);
        assert_int_equal(store_vm_set_state(st, vm, "running"), 0);
        assert_int_equal(store_vm_count_on_host(st, host), 1);
        /* A state set meanwhile is kept when the update says so. */
        static const char *const keep[] = { "maintenance", "failed", NULL };
        assert_int_equal(store_host_set_state(st, host, "maintenance", NULL), 1);
        assert_int_equal(store_host_set_state_unless(st, host, "ok", NULL, keep), 0);
        StoreHost h;
        assert_int_equal(store_host_get(st, host, &h), 0);
        assert_string_equal(h.state, "maintenance");
        assert_int_equal(store_host_set_state(st, host, "unreachable", "gone"), 1);
        assert_int_equal(store_host_set_state_unless(st, host, "ok", NULL, keep), 1);
        assert_int_equal(store_host_set_state_unless(st, host, "ok", NULL, keep), 0);
        assert_int_equal(store_host_set_state_unless(st, host, "unreachable", "x", NULL), 1);
        assert_int_equal(store_host_delete(st, host, false), -ENOTEMPTY);
        assert_int_equal(store_host_delete(st, host, true), 0);
        assert_int_equal(store_vm_get(st, vm, &got), -ENOENT);
}

/* The audit retention: rows older than the cut-off go, newer ones stay. */
static void test_audit_prune(void **state) {
        Store *st = *state;
        assert_int_equal(store_audit_add(st, 0, "armadad", NULL, "test.old", NULL, 0, NULL, NULL, "ok"), 0);
        assert_int_equal(store_exec(st, "UPDATE audit SET at = 1000 WHERE action = 'test.old'", ""), 0);
        assert_int_equal(store_audit_add(st, 0, "armadad", NULL, "test.new", NULL, 0, NULL, NULL, "ok"), 0);
        int64_t n = -1;
        assert_int_equal(store_query_i64(st, &n, "SELECT count(*) FROM audit WHERE action LIKE 'test.%'", ""), 0);
        assert_int_equal(n, 2);
        assert_int_equal(store_audit_prune(st, 2000), 0);
        assert_int_equal(store_query_i64(st, &n, "SELECT count(*) FROM audit WHERE action = 'test.old'", ""), 0);
        assert_int_equal(n, 0);
        assert_int_equal(store_query_i64(st, &n, "SELECT count(*) FROM audit WHERE action = 'test.new'", ""), 0);
        assert_int_equal(n, 1);
}

/* Every kind of history the monitor keeps of one object, one row each. */
static void add_history(Store *st, StorePerfKind kind, int64_t id) {
        StorePerfSample s = { .kind = kind, .object_id = id, .at = 1000 };
        for (int m = 0; m < STORE_PERF__COUNT; m++)
                s.v[m] = 1.0;
        StorePerfRollup ru = { .kind = kind, .object_id = id, .at = 0, .n = 1 };
        for (int m = 0; m < STORE_PERF__COUNT; m++)
                ru.avg[m] = ru.max[m] = 1.0;
        assert_int_equal(store_perf_insert_raw(st, &s, 1), 0);
        assert_int_equal(store_perf_set_latest(st, &s, NULL, 1), 0);
        assert_int_equal(store_perf_insert_rollups(st, STORE_TIER_5M, &ru, 1), 0);
        assert_int_equal(store_perf_insert_rollups(st, STORE_TIER_1H, &ru, 1), 0);
}

static int64_t history_rows(Store *st, StorePerfKind kind, int64_t id) {
        int64_t n = -1;
        assert_int_equal(store_query_i64(st, &n, "SELECT (SELECT count(*) FROM perf_raw WHERE kind = ?1 AND object_id = ?2)"
                                                 " + (SELECT count(*) FROM perf_5m WHERE kind = ?1 AND object_id = ?2)"
                                                 " + (SELECT count(*) FROM perf_1h WHERE kind = ?1 AND object_id = ?2)"
                                                 " + (SELECT count(*) FROM perf_latest WHERE kind = ?1 AND object_id = ?2)",
                                     "ii", (int64_t) kind, id), 0);
        return n;
}

static void test_ids_never_reused_and_history_goes(void **state) {
        Store *st = *state;
        int64_t a, b, c;
        assert_int_equal(store_host_insert(st, "id-a", "test:///default", 1, "armada", "/p", &a), 0);
        assert_int_equal(store_host_insert(st, "id-b", "test:///default", 1, "armada", "/p", &b), 0);
        StoreVm v = { .host_id = b, .cpus = 1, .memory_mib = 64 };
        snprintf(v.uuid, sizeof v.uuid, "00000000-0000-4000-8000-0000000000aa");
        snprintf(v.name, sizeof v.name, "id-vm");
        snprintf(v.state, sizeof v.state, "stopped");
        int64_t vm, vm2;
        assert_int_equal(store_vm_insert(st, &v, &vm), 0);
        add_history(st, STORE_PERF_HOST, a);
        add_history(st, STORE_PERF_HOST, b);
        add_history(st, STORE_PERF_VM, vm);
        assert_int_equal(history_rows(st, STORE_PERF_HOST, b), 4);
        assert_int_equal(history_rows(st, STORE_PERF_VM, vm), 4);

        /* The newest host and its VM go (forced): their history with them. */
        assert_int_equal(store_host_delete(st, b, true), 0);
        assert_int_equal(history_rows(st, STORE_PERF_HOST, b), 0);
        assert_int_equal(history_rows(st, STORE_PERF_VM, vm), 0);
        assert_int_equal(history_rows(st, STORE_PERF_HOST, a), 4);

        /* The next host and VM get new ids, not the removed ones. */
        assert_int_equal(store_host_insert(st, "id-c", "test:///default", 1, "armada", "/p", &c), 0);
        assert_true(c > b);
        v.host_id = c;
        assert_int_equal(store_vm_insert(st, &v, &vm2), 0);
        assert_true(vm2 > vm);
        assert_int_equal(store_vm_delete(st, vm2), 0);
        assert_int_equal(store_vm_insert(st, &v, &vm), 0);
        assert_true(vm > vm2);

        /* Users and groups alike. */
        int64_t u1, u2, g1, g2;
        assert_int_equal(store_user_insert(st, "id-u1", "x", "admin", &u1), 0);
        assert_int_equal(store_user_delete(st, u1), 0);
        assert_int_equal(store_user_insert(st, "id-u2", "x", "admin", &u2), 0);
        assert_true(u2 > u1);
        assert_int_equal(store_group_create_path(st, "IdGroup", &g1, NULL), 0);
        assert_int_equal(store_group_delete(st, g1), 0);
        assert_int_equal(store_group_create_path(st, "IdGroup", &g2, NULL), 0);
        assert_true(g2 > g1);

        int64_t k1, k2, members[1] = { a };
        assert_int_equal(store_cluster_insert(st, "id-k1", "/srv/k", 0, members, 1, &k1), 0);
        assert_int_equal(store_cluster_delete(st, k1), 0);
        assert_int_equal(store_cluster_insert(st, "id-k2", "/srv/k", 0, members, 1, &k2), 0);
        assert_true(k2 > k1);
        assert_int_equal(store_cluster_delete(st, k2), 0);

        /* The rebuilt tables kept their indexes and the references into them. */
        int64_t n;
        if (store_engine(st) == STORE_ENGINE_SQLITE) {
                assert_int_equal(store_query_i64(st, &n, "SELECT count(*) FROM sqlite_master WHERE name IN ('host_group_idx', 'vm_host_idx',"
                                                         " 'vm_owner_idx', 'host_history_gone', 'vm_history_gone')", ""), 0);
                assert_int_equal(n, 5);
                assert_int_equal(store_query_i64(st, &n, "SELECT count(*) FROM pragma_foreign_key_list('vm') WHERE \"table\" = 'host'", ""), 0);
                assert_int_equal(n, 1);
        }
        assert_int_equal(store_host_delete(st, c, false), -ENOTEMPTY);
        assert_int_equal(store_host_delete(st, c, true), 0);
        assert_int_equal(store_host_delete(st, a, true), 0);
}

/* A database made before ids were AUTOINCREMENT: the rebuild keeps rows,
 * indexes, triggers and references, and no id in use or named by a job is
 * handed out again. */
static void test_autoincrement_rebuild(void **state) {
        Store *st = *state;
        if (store_engine(st) != STORE_ENGINE_SQLITE)
                skip(); /* a rebuild of SQLite tables: PostgreSQL's identities never reuse an id */
        static const char *const legacy[] = {
                "CREATE TABLE legacy (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
                "CREATE INDEX legacy_name_idx ON legacy(name)",
                "CREATE TABLE legacy_child (legacy_id INTEGER NOT NULL REFERENCES legacy(id) ON DELETE CASCADE)",
                "CREATE TABLE legacy_log (n INTEGER)",
                "CREATE TRIGGER legacy_gone AFTER DELETE ON legacy BEGIN INSERT INTO legacy_log VALUES (OLD.id); END",
                "INSERT INTO legacy VALUES (1, 'one'), (5, 'five')",
                "INSERT INTO legacy_child VALUES (1), (5)",
        };
        for (size_t i = 0; i < sizeof legacy / sizeof legacy[0]; i++)
                assert_int_equal(store_exec(st, legacy[i], ""), 0);
        int64_t job;
        assert_int_equal(store_job_insert(st, "legacy.x", "legacy", 9, "nine", 0, NULL, &job), 0);

        assert_int_equal(store_exec(st, "PRAGMA foreign_keys = OFF", ""), 0);
        assert_int_equal(store_begin(st), 0);
        assert_int_equal(store_table_autoincrement(st, "legacy", "legacy"), 0);
        assert_int_equal(store_table_autoincrement(st, "legacy", "legacy"), 0); /* again: nothing to do */
        assert_int_equal(store_commit(st), 0);
        assert_int_equal(store_exec(st, "PRAGMA foreign_keys = ON", ""), 0);

        int64_t n;
        assert_int_equal(store_query_i64(st, &n, "SELECT count(*) FROM sqlite_master WHERE name = 'legacy'"
                                                 " AND sql LIKE '%AUTOINCREMENT%'", ""), 0);
        assert_int_equal(n, 1);
        assert_int_equal(store_query_i64(st, &n, "SELECT count(*) FROM sqlite_master WHERE name IN ('legacy_name_idx', 'legacy_gone')", ""), 0);
        assert_int_equal(n, 2);
        assert_int_equal(store_query_i64(st, &n, "SELECT count(*) FROM legacy", ""), 0);
        assert_int_equal(n, 2);
        assert_int_equal(store_exec(st, "INSERT INTO legacy(name) VALUES ('next')", ""), 0);
        assert_int_equal(store_last_id(st), 10); /* after job 9's target */
        assert_int_equal(store_exec(st, "INSERT INTO legacy(name) VALUES ('one')", ""), -EEXIST);
        assert_int_equal(store_exec(st, "DELETE FROM legacy WHERE id = 5", ""), 0);
        assert_int_equal(store_query_i64(st, &n, "SELECT count(*) FROM legacy_child", ""), 0);
        assert_int_equal(n, 1); /* cascaded */
        assert_int_equal(store_query_i64(st, &n, "SELECT n FROM legacy_log", ""), 0);
        assert_int_equal(n, 5); /* the trigger came back */
        assert_int_equal(store_exec(st, "INSERT INTO legacy_child VALUES (77)", ""), -ENOTEMPTY);
        assert_int_equal(store_exec(st, "DROP TABLE legacy_child", ""), 0);
        assert_int_equal(store_exec(st, "DROP TABLE legacy", ""), 0);
        assert_int_equal(store_exec(st, "DROP TABLE legacy_log", ""), 0);
}

/* The event stream's order: event ids and job revisions from one sequence,
 * the latest state of a job once, and the change hook told only after a
 * transaction commits. */
static int hook_calls;
static void count_hook(void *userdata) {
        (void) userdata;
        hook_calls++;
}

static void test_stream_sequence(void **state) {
        Store *st = *state;
        int64_t base, job, seq;
        store_set_change_hook(st, count_hook, NULL);
        assert_int_equal(store_stream_seq(st, &base), 0);
        hook_calls = 0;
        assert_int_equal(store_job_insert(st, "vm.start", "vm", 7, "seqvm", 0, NULL, &job), 0);
        assert_int_equal(hook_calls, 1);
        assert_int_equal(store_event_add(st, "info", "vm.state", "vm", 7, "seqvm", 0, "m1"), 0);
        assert_int_equal(store_job_progress(st, job, 50, "half"), 0);
        assert_int_equal(store_event_add(st, "info", "vm.state", "vm", 7, "seqvm", 0, "m2"), 0);
        assert_int_equal(hook_calls, 4);
        assert_int_equal(store_stream_seq(st, &seq), 0);
        assert_int_equal(seq, base + 4);

        /* Events interleave with the job's changes: ids base+2 and base+4. */
        _cleanup_json_ json_t *evs = NULL;
        assert_int_equal(store_event_list_after(st, base, 10, &evs), 0);
        assert_int_equal(json_array_size(evs), 2);
        assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 0), "id")), base + 2);
        assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 1), "id")), base + 4);
        /* The job once, in its latest state, numbered by its last change. */
        _cleanup_json_ json_t *jobs = NULL;
        assert_int_equal(store_job_list_changed(st, base, 10, &jobs), 0);
        assert_int_equal(json_array_size(jobs), 1);
        json_t *j = json_array_get(jobs, 0);
        assert_int_equal(json_integer_value(json_object_get(j, "stream_seq")), base + 3);
        assert_int_equal(json_integer_value(json_object_get(j, "progress")), 50);
        _cleanup_json_ json_t *none = NULL;
        assert_int_equal(store_job_list_changed(st, base + 3, 10, &none), 0);
        assert_int_equal(json_array_size(none), 0);

        /* Inside a transaction the hook waits for the commit; a rollback
         * tells nothing. (Only a running job can finish.) */
        assert_int_equal(store_exec(st, "UPDATE job SET state = 'running' WHERE id = ?", "i", job), 0);
        hook_calls = 0;
        assert_int_equal(store_begin(st), 0);
        assert_int_equal(store_job_finish(st, job, "succeeded", NULL, NULL), 0);
        assert_int_equal(hook_calls, 0);
        assert_int_equal(store_commit(st), 0);
        assert_int_equal(hook_calls, 1);
        assert_int_equal(store_begin(st), 0);
        assert_int_equal(store_event_add(st, "info", "vm.state", "vm", 7, "seqvm", 0, "gone"), 0);
        store_rollback(st);
        assert_int_equal(store_begin(st), 0);
        assert_int_equal(store_commit(st), 0);
        assert_int_equal(hook_calls, 1);
        _cleanup_json_ json_t *done = NULL;
        assert_int_equal(store_job_list_changed(st, base + 4, 10, &done), 0);
        assert_int_equal(json_array_size(done), 1);
        assert_int_equal(json_integer_value(json_object_get(json_array_get(done, 0), "stream_seq")), base + 5);
        store_set_change_hook(st, NULL, NULL);
}

/* A thread's connection is closed when the thread ends: armadad's workers
 * come and go, and keeping their connections grew its memory and file
 * descriptors without bound (one connection per thread ever run). */
static void *query_and_exit(void *p) {
        Store *st = p;
        int64_t n = -1;
        assert_int_equal(store_query_i64(st, &n, "SELECT count(*) FROM host", ""), 0);
        assert_int_equal(n, 0);
        return NULL;
}

static void test_thread_connection_closed_at_exit(void **state) {
        Store *st = *state;
        size_t before = store_connections(st);
        assert_true(before >= 1);       /* this thread's, opened by store_open() */
        for (int round = 0; round < 20; round++) {
                pthread_t t[4];
                for (int i = 0; i < 4; i++)
                        assert_int_equal(pthread_create(&t[i], NULL, query_and_exit, st), 0);
                for (int i = 0; i < 4; i++)
                        assert_int_equal(pthread_join(t[i], NULL), 0);
        }
        assert_int_equal(store_connections(st), before);
        /* and this thread's connection still works */
        int64_t n = -1;
        assert_int_equal(store_query_i64(st, &n, "SELECT count(*) FROM host", ""), 0);
}

/* The one idiom (store.h): a getter says -ENOENT for a missing row, and
 * something else when the database fails, leaving ret untouched either
 * way; a list of nothing is 0 and an empty array. The database is broken
 * on purpose (tmpstore_break_table). */
static void test_getter_missing_vs_failed(void **state) {
        TmpStore *t = tmpstore_new("idiom");
        assert_non_null(t);
        Store *st = t->st;
        StoreVm vm = { .cpus = 1, .memory_mib = 64 };
        snprintf(vm.uuid, sizeof vm.uuid, "0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b");
        snprintf(vm.name, sizeof vm.name, "idiom01");
        snprintf(vm.state, sizeof vm.state, "shutoff");
        snprintf(vm.origin, sizeof vm.origin, "created");
        int64_t id;
        assert_int_equal(store_vm_insert(st, &vm, &id), 0);

        json_t *j = NULL, *arr = NULL;
        StoreVm got;
        assert_int_equal(store_vm_get_json(st, id + 1000, &j), -ENOENT);
        assert_null(j);
        assert_int_equal(store_vm_get(st, id + 1000, &got), -ENOENT);
        assert_int_equal(store_item_get_json(st, 42, &j), -ENOENT);
        assert_null(j);
        assert_int_equal(store_query_one(st, &j, "SELECT 1 AS one WHERE 1 = 0", ""), -ENOENT);
        assert_null(j);
        assert_int_equal(store_vm_list(st, "nobody", 0, 0, &arr), 0);
        assert_true(json_is_array(arr) && json_array_size(arr) == 0);
        json_decref(arr);
        arr = NULL;
        assert_int_equal(store_vm_get_json(st, id, &j), 0);
        assert_string_equal(json_string_value(json_object_get(j, "name")), "idiom01");
        json_decref(j);
        j = NULL;

        /* The tables gone under it: an error, and not -ENOENT. */
        assert_int_equal(tmpstore_break_table(st, "vm"), 0);
        assert_int_equal(tmpstore_break_table(st, "library_item"), 0);
        int r = store_vm_get_json(st, id, &j);
        assert_true(r < 0 && r != -ENOENT);
        assert_null(j);
        r = store_vm_get_json(st, id + 1000, &j);
        assert_true(r < 0 && r != -ENOENT);
        r = store_vm_get(st, id, &got);
        assert_true(r < 0 && r != -ENOENT);
        r = store_vm_list(st, NULL, 0, 0, &arr);
        assert_true(r < 0 && r != -ENOENT);
        assert_null(arr);
        r = store_item_get_json(st, 42, &j);
        assert_true(r < 0 && r != -ENOENT);
        assert_null(j);
        r = store_query_json(st, &arr, "SELECT * FROM vm", "");
        assert_int_equal(r, -EIO);
        assert_null(arr);
        /* A database another writer held past the busy timeout is -EBUSY
         * (503, worth a retry), not -EIO. */
        if (store_engine(st) == STORE_ENGINE_SQLITE) {
                assert_int_equal(store_engine_errno(st, 5 /* SQLITE_BUSY */), -EBUSY);
                assert_int_equal(store_engine_errno(st, 6 /* SQLITE_LOCKED */), -EBUSY);
        } else {
                assert_int_equal(store_engine_errno(st, 2 /* a deadlock */), -EBUSY);
                assert_int_equal(store_engine_errno(st, 0), -EEXIST);
                assert_int_equal(store_engine_errno(st, 1), -ENOTEMPTY);
                assert_int_equal(store_engine_errno(st, 3), -EIO);
        }
        assert_int_equal(tmpstore_free(t), 0);
}

/* The old "place-generation" counter (a table and triggers on every table
 * placement reads) is gone: not created on a new database, and dropped
 * from one that an older armadad made (its migration applied, the newer
 * ones not). */
static void test_place_generation_dropped(void **state) {
        (void) state;
        if (tmpstore_pg_base())
                skip(); /* SQLite's catalog and an older armadad's SQLite triggers */
        TmpStore *t = tmpstore_new("placegen");
        assert_non_null(t);
        int64_t n = -1;
        assert_int_equal(store_query_i64(t->st, &n, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'place%gen%'", ""), 0);
        assert_int_equal(n, 0);
        /* What an older armadad left: the table, a trigger that bumps it. */
        assert_int_equal(store_exec(t->st, "CREATE TABLE place_generation (id INTEGER PRIMARY KEY, gen INTEGER NOT NULL)", ""), 0);
        assert_int_equal(store_exec(t->st, "INSERT INTO place_generation VALUES (1, 1)", ""), 0);
        assert_int_equal(store_exec(t->st, "CREATE TRIGGER place_gen_host_insert AFTER INSERT ON host"
                                           " BEGIN UPDATE place_generation SET gen = gen + 1 WHERE id = 1; END", ""), 0);
        assert_int_equal(store_exec(t->st, "CREATE TRIGGER place_gen_vm_update6 AFTER UPDATE OF name ON vm"
                                           " BEGIN UPDATE place_generation SET gen = gen + 1 WHERE id = 1; END", ""), 0);
        assert_int_equal(store_exec(t->st, "DELETE FROM schema_migration WHERE name = 'place-generation-drop'", ""), 0);
        int v = store_schema_version(t->st);
        store_free(t->st);
        t->st = NULL;
        assert_int_equal(store_open(t->path, &t->st), 0);
        assert_int_equal(store_schema_version(t->st), v);
        assert_int_equal(store_query_i64(t->st, &n, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'place%gen%'", ""), 0);
        assert_int_equal(n, 0);
        /* the place-dirty triggers are left alone */
        assert_int_equal(store_query_i64(t->st, &n, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'place_dirty%'", ""), 0);
        assert_true(n > 0);
        assert_int_equal(tmpstore_free(t), 0);
}

/* PostgreSQL takes SQLite's text: parameters renumbered outside quotes,
 * the table "user" quoted where a table is named, and in migrations
 * SQLite's column types as PostgreSQL's. Pure text: runs on every engine. */
static void test_pg_translation(void **state) {
        (void) state;
        _cleanup_free_ char *q = store_pg_translate_ddl("SELECT ?, ?3, ?, '?', \"a?\" FROM user u JOIN user_scope s"
                                                        " WHERE u.id = ? -- what?\n AND x IS NULL");
        assert_string_equal(q, "SELECT $1, $3, $4, '?', \"a?\" FROM \"user\" u JOIN user_scope s"
                               " WHERE u.id = $5 -- what?\n AND x IS NULL");
        _cleanup_free_ char *d = store_pg_translate_ddl("CREATE TABLE user (id INTEGER PRIMARY KEY AUTOINCREMENT, r REAL, b BLOB,"
                                                        " owner_id INTEGER REFERENCES user(id), note TEXT DEFAULT 'INTEGER')"
                                                        " WITHOUT ROWID");
        assert_string_equal(d, "CREATE TABLE \"user\" (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY , r DOUBLE PRECISION,"
                               " b BYTEA, owner_id BIGINT REFERENCES \"user\"(id), note TEXT DEFAULT 'INTEGER') ");
        /* a column named like the table is left alone */
        _cleanup_free_ char *c = store_pg_translate_ddl("SELECT user_id, name AS user FROM audit");
        assert_string_equal(c, "SELECT user_id, name AS user FROM audit");
}

/* A password in the database URL never reaches a log, message or metric. */
static void test_db_masked(void **state) {
        (void) state;
        static const char *const cases[][2] = {
                { "postgresql://armada:s3cret@db1:5432/armada", "postgresql://armada:***@db1:5432/armada" },
                { "postgres://db1/armada?sslmode=require&password=s3cret", "postgres://db1/armada?sslmode=require&password=***" },
                { "postgresql:host=/run/pg password=s3cret dbname=armada", "postgresql:host=/run/pg password=*** dbname=armada" },
                { "postgresql://armada@db1/armada", "postgresql://armada@db1/armada" },
                { "var/armada.db", "var/armada.db" },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                _cleanup_free_ char *m = store_db_masked(cases[i][0]);
                assert_string_equal(m, cases[i][1]);
                assert_null(strstr(m, "s3cret"));
        }
}

/* PostgreSQL: a commit of another manager (here a second store on the same
 * database) reaches this one's rows hook through NOTIFY, and this one's
 * own commit reaches its hook once, from the committing thread. */
static StoreRowChange seen[16];
static size_t n_seen;
static void note_rows(void *userdata, const StoreRowChange *c, size_t n) {
        (void) userdata;
        for (size_t i = 0; i < n && n_seen < 16; i++)
                seen[n_seen++] = c[i];
}
static bool seen_host(int64_t id) {
        for (size_t i = 0; i < n_seen; i++)
                if (seen[i].table == STORE_TABLE_HOST && seen[i].id == id)
                        return true;
        return false;
}
static void test_pg_rows_across_managers(void **state) {
        Store *st = *state;
        if (store_engine(st) != STORE_ENGINE_POSTGRESQL)
                skip();
        Store *other;
        assert_int_equal(store_open(fixture->path, &other), 0);
        store_set_rows_hook(other, note_rows, NULL);
        n_seen = 0;
        int64_t id;
        assert_int_equal(store_host_insert(st, "notify-h1", "test:///default", 1, "armada", "/p", &id), 0);
        /* Delivered with the next statement the other store runs once the
         * server has sent it: wait for that, bounded. */
        int64_t deadline = now_ms() + 10000, n;
        while (!seen_host(id) && now_ms() < deadline)
                assert_int_equal(store_query_i64(other, &n, "SELECT count(*) FROM host", ""), 0);
        assert_true(seen_host(id));
        store_set_rows_hook(other, NULL, NULL);
        store_free(other);

        n_seen = 0;
        store_set_rows_hook(st, note_rows, NULL);
        assert_int_equal(store_host_set_state(st, id, "online", NULL), 1);
        store_set_rows_hook(st, NULL, NULL);
        assert_true(seen_host(id));
        assert_int_equal(n_seen, 1);
        assert_int_equal(store_host_delete(st, id, true), 0);
}

/* PostgreSQL: the rows hook reads the store (the read model re-reads what
 * it is told of, holding its writer's lock). Another manager's commit that
 * those reads hear of (NOTIFY) is told once the hook has returned, never
 * by a second call of the hook inside the first: the read model's would
 * wait for its own lock for ever, and every request after it with it
 * (GET /placement/ratings timed out after 30 s in CI). */
static Store *reenter_other;
static int64_t reenter_host;
static int hook_depth, hook_max_depth, hook_reads;
static bool other_committed, seen_after_other;
static void reentered_rows(void *userdata, const StoreRowChange *c, size_t n) {
        Store *st = userdata;
        if (++hook_depth > hook_max_depth)
                hook_max_depth = hook_depth;
        for (size_t i = 0; i < n; i++)
                if (other_committed && c[i].table == STORE_TABLE_HOST && c[i].id == reenter_host)
                        seen_after_other = true;
        Store *other = reenter_other;
        if (other) {
                reenter_other = NULL;
                /* another manager commits a change of the host meanwhile */
                assert_int_equal(store_host_set_state(other, reenter_host, "maintenance", NULL), 1);
                other_committed = true;
                /* The server sends the notification to this thread's idle
                 * session at that commit: the next read hears it. A few more
                 * reads for a slow server; they stop at a second call. */
                int64_t k;
                for (hook_reads = 0; hook_reads < 20 && hook_max_depth < 2; hook_reads++)
                        assert_int_equal(store_query_i64(st, &k, "SELECT count(*) FROM host WHERE id = ?", "i", reenter_host), 0);
        }
        hook_depth--;
}
static void test_pg_rows_hook_not_reentered(void **state) {
        Store *st = *state;
        if (store_engine(st) != STORE_ENGINE_POSTGRESQL)
                skip();
        Store *other;
        assert_int_equal(store_open(fixture->path, &other), 0);
        assert_int_equal(store_host_insert(st, "reenter-h1", "test:///default", 1, "armada", "/p", &reenter_host), 0);
        hook_depth = hook_max_depth = 0;
        other_committed = seen_after_other = false;
        reenter_other = other;
        store_set_rows_hook(st, reentered_rows, st);
        assert_int_equal(store_host_set_state(st, reenter_host, "online", NULL), 1);
        store_set_rows_hook(st, NULL, NULL);
        assert_true(other_committed);
        assert_int_equal(hook_max_depth, 1);
        /* and the other manager's change was told, after the hook returned */
        assert_true(seen_after_other);
        int64_t state_ok = 0;
        assert_int_equal(store_query_i64(st, &state_ok, "SELECT count(*) FROM host WHERE id = ? AND state = 'maintenance'", "i",
                                         reenter_host), 0);
        assert_int_equal(state_ok, 1);
        store_free(other);
        assert_int_equal(store_host_delete(st, reenter_host, true), 0);
}

/* PostgreSQL: a writer outside a transaction waits for the one inside
 * store_begin() (the writers' advisory lock), as on SQLite. */
static bool late_write_done;
static void *late_writer(void *p) {
        Store *st = p;
        assert_int_equal(store_exec(st, "INSERT INTO meta(key, value) VALUES ('lock-test', 'b')", ""), 0);
        __atomic_store_n(&late_write_done, true, __ATOMIC_SEQ_CST);
        return NULL;
}
static void test_pg_writers_serialise(void **state) {
        Store *st = *state;
        if (store_engine(st) != STORE_ENGINE_POSTGRESQL)
                skip();
        late_write_done = false;
        assert_int_equal(store_begin(st), 0);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, late_writer, st), 0);
        int64_t waiting = 0, deadline = now_ms() + 10000;
        while (waiting == 0 && now_ms() < deadline)
                assert_int_equal(store_query_i64(st, &waiting, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                                               " AND NOT granted", ""), 0);
        assert_int_equal(waiting, 1);
        assert_false(__atomic_load_n(&late_write_done, __ATOMIC_SEQ_CST));
        assert_int_equal(store_commit(st), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_true(late_write_done);
        assert_int_equal(store_exec(st, "DELETE FROM meta WHERE key = 'lock-test'", ""), 0);
}

/* A manager frozen inside a write transaction holds the writers' advisory
 * lock: the server cuts its session off after
 * idle_in_transaction_session_timeout (20 s unless the administrator set
 * one; here the URL's options set 1.5 s) and rolls it back, and another
 * manager's writer gets the lock. PostgreSQL only (SQLite's file lock
 * cannot be taken from a frozen process). */
static void test_pg_frozen_writer_is_cut_off(void **state) {
        Store *st = *state;
        if (store_engine(st) != STORE_ENGINE_POSTGRESQL)
                skip();
        int64_t dflt = 0;
        assert_int_equal(store_query_i64(st, &dflt, "SELECT CASE WHEN current_setting('idle_in_transaction_session_timeout')"
                                                    " = '20s' THEN 1 ELSE 0 END", ""), 0);
        assert_int_equal(dflt, 1);
        _cleanup_free_ char *url = xasprintf("%s options='-c idle_in_transaction_session_timeout=1500'", fixture->path);
        Store *frozen = NULL;
        assert_int_equal(store_open(url, &frozen), 0);
        assert_int_equal(store_exec(frozen, "INSERT INTO meta(key, value) VALUES ('frozen', 'x')", ""), 0);
        assert_int_equal(store_begin(frozen), 0);
        assert_int_equal(store_exec(frozen, "UPDATE meta SET value = 'never' WHERE key = 'frozen'", ""), 0);
        /* ... and it freezes: this thread's connection of the other store waits. */
        int64_t t0 = now_ms();
        assert_int_equal(store_begin(st), 0);
        int64_t waited = now_ms() - t0;
        assert_true(waited >= 1000 && waited < 9000);
        assert_int_equal(store_exec(st, "UPDATE meta SET value = 'taken' WHERE key = 'frozen'", ""), 0);
        assert_int_equal(store_commit(st), 0);
        assert_true(store_commit(frozen) < 0);
        store_free(frozen);
        int64_t taken = 0;
        assert_int_equal(store_query_i64(st, &taken, "SELECT count(*) FROM meta WHERE key = 'frozen' AND value = 'taken'", ""), 0);
        assert_int_equal(taken, 1);
        assert_int_equal(store_exec(st, "DELETE FROM meta WHERE key = 'frozen'", ""), 0);
}

/* PostgreSQL sends a write with its wrapping in one pipeline (BEGIN, the
 * lock, it, COMMIT outside a transaction; SAVEPOINT, it, RELEASE inside
 * one): a failure still fails that statement alone, as on SQLite, and
 * leaves the connection usable; a text of several statements still runs
 * its old way. On SQLite the same calls answer the same. */
static void test_write_failures_fail_alone(void **state) {
        Store *st = *state;
        assert_int_equal(store_exec(st, "INSERT INTO meta(key, value) VALUES ('pipe-a', '1')", ""), 0);
        /* outside a transaction: refused, nothing left open */
        assert_int_equal(store_exec(st, "INSERT INTO meta(key, value) VALUES (?, ?)", "ss", "pipe-a", "2"), -EEXIST);
        assert_false(store_in_transaction(st));
        assert_int_equal(store_exec_one(st, "UPDATE meta SET value = ? WHERE key = ?", "ss", "3", "pipe-a"), 0);
        assert_int_equal(store_exec_one(st, "UPDATE meta SET value = ? WHERE key = ?", "ss", "3", "pipe-none"), -ENOENT);
        /* inside one: the failed statement goes, the transaction goes on */
        assert_int_equal(store_begin(st), 0);
        assert_int_equal(store_exec(st, "INSERT INTO meta(key, value) VALUES ('pipe-b', '1')", ""), 0);
        assert_int_equal(store_exec(st, "INSERT INTO meta(key, value) VALUES (?, '1')", "s", "pipe-b"), -EEXIST);
        assert_true(store_in_transaction(st));
        assert_int_equal(store_exec(st, "INSERT INTO meta(key, value) VALUES (?, '1')", "s", "pipe-c"), 0);
        assert_int_equal(store_commit(st), 0);
        /* a rollback takes what the transaction wrote */
        assert_int_equal(store_begin(st), 0);
        assert_int_equal(store_exec(st, "INSERT INTO meta(key, value) VALUES ('pipe-d', '1')", ""), 0);
        store_rollback(st);
        int64_t n = 0;
        assert_int_equal(store_query_i64(st, &n, "SELECT count(*) FROM meta WHERE key LIKE 'pipe-%'", ""), 0);
        assert_int_equal(n, 3);
        /* several statements in one text: PostgreSQL runs them all, its
         * old way, not pipelined (SQLite prepares the first only) */
        if (store_engine(st) == STORE_ENGINE_POSTGRESQL) {
                assert_int_equal(store_exec(st, "UPDATE meta SET value = '4' WHERE key = 'pipe-a';"
                                                " UPDATE meta SET value = '4' WHERE key = 'pipe-b'", ""), 0);
                assert_int_equal(store_query_i64(st, &n, "SELECT count(*) FROM meta WHERE key IN ('pipe-a', 'pipe-b')"
                                                         " AND value = '4'", ""), 0);
                assert_int_equal(n, 2);
        }
        int64_t id = 0;
        assert_int_equal(store_insert(st, &id, "INSERT INTO event(at, severity, kind, message) VALUES (1, 'info', 'pipe.test', 'x')", ""), 0);
        assert_true(id > 0);
        assert_int_equal(store_query_i64(st, &n, "SELECT count(*) FROM event WHERE id = ? AND kind = 'pipe.test'", "i", id), 0);
        assert_int_equal(n, 1);
        assert_int_equal(store_exec(st, "DELETE FROM meta WHERE key LIKE 'pipe-%'", ""), 0);
        assert_int_equal(store_exec(st, "DELETE FROM event WHERE kind = 'pipe.test'", ""), 0);
}

/* PostgreSQL: the server ends this thread's session (a restart, an
 * administrator) while the connection sits idle; the next write, sent as
 * one pipeline, fails with -EIO and leaves the connection out of pipeline
 * mode, and the write after it runs on a connection opened again. */
static int64_t victim_pid;
static void *terminator(void *p) {
        Store *st = p;
        int64_t ok = 0;
        assert_int_equal(store_query_i64(st, &ok, "SELECT CASE WHEN pg_terminate_backend(CAST(? AS INTEGER)) THEN 1 ELSE 0 END",
                                         "i", victim_pid), 0);
        assert_int_equal(ok, 1);
        return NULL;
}
static int64_t backend_count;
static void *count_backend(void *p) {
        Store *st = p;
        assert_int_equal(store_query_i64(st, &backend_count, "SELECT count(*) FROM pg_stat_activity WHERE pid = ?", "i", victim_pid), 0);
        return NULL;
}
static void test_pg_write_after_lost_session(void **state) {
        Store *st = *state;
        if (store_engine(st) != STORE_ENGINE_POSTGRESQL)
                skip();
        assert_int_equal(store_query_i64(st, &victim_pid, "SELECT pg_backend_pid()", ""), 0);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, terminator, st), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        /* the backend is gone once pg_stat_activity stops listing it */
        int64_t n = 1, deadline = now_ms() + 10000;
        while (n > 0 && now_ms() < deadline) {
                pthread_t q;
                assert_int_equal(pthread_create(&q, NULL, count_backend, st), 0);
                assert_int_equal(pthread_join(q, NULL), 0);
                n = backend_count;
        }
        assert_int_equal(n, 0);
        int r = store_exec(st, "INSERT INTO meta(key, value) VALUES ('lost-a', '1')", "");
        assert_true(r == -EIO || r == 0);
        assert_false(store_in_transaction(st));
        assert_int_equal(store_exec(st, "INSERT INTO meta(key, value) VALUES ('lost-b', '1')", ""), 0);
        int64_t pid = 0;
        assert_int_equal(store_query_i64(st, &pid, "SELECT pg_backend_pid()", ""), 0);
        assert_true(pid != victim_pid);
        assert_int_equal(store_exec(st, "DELETE FROM meta WHERE key LIKE 'lost-%'", ""), 0);
}

/* PostgreSQL: every connection runs with JIT off (placement's host query
 * otherwise paid 40-70 ms of compilation per run). */
static void test_pg_session_without_jit(void **state) {
        Store *st = *state;
        if (store_engine(st) != STORE_ENGINE_POSTGRESQL)
                skip();
        int64_t off = 0;
        assert_int_equal(store_query_i64(st, &off, "SELECT CASE WHEN current_setting('jit') = 'off' THEN 1 ELSE 0 END", ""), 0);
        assert_int_equal(off, 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_migrations_once),
                cmocka_unit_test(test_group_paths),
                cmocka_unit_test(test_job_claim_one_per_target),
                cmocka_unit_test(test_tokens_expire),
                cmocka_unit_test(test_vm_rows),
                cmocka_unit_test(test_audit_prune),
                cmocka_unit_test(test_ids_never_reused_and_history_goes),
                cmocka_unit_test(test_autoincrement_rebuild),
                cmocka_unit_test(test_host_identity_claims),
                cmocka_unit_test(test_installation_id_is_stable),
                cmocka_unit_test(test_stream_sequence),
                cmocka_unit_test(test_thread_connection_closed_at_exit),
                cmocka_unit_test(test_getter_missing_vs_failed),
                cmocka_unit_test(test_place_generation_dropped),
                cmocka_unit_test(test_pg_translation),
                cmocka_unit_test(test_db_masked),
                cmocka_unit_test(test_pg_rows_across_managers),
                cmocka_unit_test(test_pg_rows_hook_not_reentered),
                cmocka_unit_test(test_pg_writers_serialise),
                cmocka_unit_test(test_pg_frozen_writer_is_cut_off),
                cmocka_unit_test(test_pg_session_without_jit),
                cmocka_unit_test(test_write_failures_fail_alone),
                cmocka_unit_test(test_pg_write_after_lost_session),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
