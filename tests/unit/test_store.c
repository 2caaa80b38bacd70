/* Unit tests for store/: migrations, the group tree, job claiming, tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "store/store.h"

static char dir[] = "/tmp/armada-test-store-XXXXXX";

static int setup(void **state) {
        static char path[256];
        if (!mkdtemp(dir))
                return -1;
        snprintf(path, sizeof path, "%s/t.db", dir);
        Store *st;
        if (store_open(path, &st) < 0)
                return -1;
        *state = st;
        return 0;
}

static int teardown(void **state) {
        store_free(*state);
        char cmd[300];
        snprintf(cmd, sizeof cmd, "%s/t.db", dir);
        unlink(cmd);
        snprintf(cmd, sizeof cmd, "%s/t.db-wal", dir);
        unlink(cmd);
        snprintf(cmd, sizeof cmd, "%s/t.db-shm", dir);
        unlink(cmd);
        rmdir(dir);
        return 0;
}

static void test_migrations_once(void **state) {
        Store *st = *state;
        int v = store_schema_version(st);
        assert_true(v >= 1);
        char path[256];
        snprintf(path, sizeof path, "%s/t.db", dir);
        Store *again;
        assert_int_equal(store_open(path, &again), 0);
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
        assert_int_equal(store_job_insert(st, "vm.start", "vm", 7, "v7", 0, NULL, &j1), 0);
        assert_int_equal(store_job_insert(st, "vm.stop", "vm", 7, "v7", 0, "{\"timeout_s\":1}", &j2), 0);
        assert_int_equal(store_job_insert(st, "vm.start", "vm", 8, "v8", 0, NULL, &j3), 0);
        StoreJob a = {0}, b = {0}, c = {0};
        assert_int_equal(store_job_claim(st, &a), 0);
        assert_int_equal(a.id, j1);
        /* j2 has the same target as the running j1: the next claim skips it. */
        assert_int_equal(store_job_claim(st, &b), 0);
        assert_int_equal(b.id, j3);
        assert_int_equal(store_job_claim(st, &c), -ENOENT);
        assert_int_equal(store_job_finish(st, j1, "succeeded", NULL, NULL), 0);
        assert_int_equal(store_job_claim(st, &c), 0);
        assert_int_equal(c.id, j2);
        assert_string_equal(c.params_json, "{\"timeout_s\":1}");
        assert_int_equal(c.attempts, 1);
        /* cancel: a running job is asked, a finished one is refused */
        assert_int_equal(store_job_request_cancel(st, j2), 0);
        bool req = false;
        assert_int_equal(store_job_cancel_requested(st, j2, &req), 0);
        assert_true(req);
        assert_int_equal(store_job_request_cancel(st, j1), -EALREADY);
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
        json_t *j = store_host_get_json(st, h2);
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
        char path[256];
        snprintf(path, sizeof path, "%s/t.db", dir);
        Store *again;
        assert_int_equal(store_open(path, &again), 0);
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
        assert_int_equal(store_host_delete(st, host, false), -ENOTEMPTY);
        assert_int_equal(store_host_delete(st, host, true), 0);
        assert_int_equal(store_vm_get(st, vm, &got), -ENOENT);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_migrations_once),
                cmocka_unit_test(test_group_paths),
                cmocka_unit_test(test_job_claim_one_per_target),
                cmocka_unit_test(test_tokens_expire),
                cmocka_unit_test(test_vm_rows),
                cmocka_unit_test(test_host_identity_claims),
                cmocka_unit_test(test_installation_id_is_stable),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
