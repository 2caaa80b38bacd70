/* Unit tests for the account module's operations (account.c) against a
 * temporary database, without HTTP: the policy, the checks and the audit
 * records of user changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "account/account.h"

#include "tmpstore.h"

typedef TmpStore Fixture;

static int setup(void **state) {
        Fixture *f = tmpstore_new("account");
        if (!f)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        return tmpstore_free(*state);
}

static const json_t *last_audit(Store *st, json_t **keep) {
        assert_int_equal(store_audit_list(st, 1, keep), 0);
        return json_array_get(*keep, 0);
}

static void test_user_create(void **state) {
        Fixture *f = *state;
        OpCaller admin = { .subj = { .user_id = 1, .role = ROLE_ADMIN }, .user_id = 1, .user_name = "admin", .role_name = "administrator" };
        OpCaller ro = { .subj = { .user_id = 2, .role = ROLE_READ_ONLY }, .user_id = 2, .user_name = "rita", .role_name = "read-only" };
        json_t *u = NULL, *a;
        OpError err = {0};

        AccountUserSpec spec = { .name = "sam", .password = "correct horse" };
        assert_int_equal(account_user_create(f->st, &ro, &spec, &u, &err), -EPERM);
        assert_int_equal(err.status, 403);
        assert_string_equal(err.message, "User 'rita' (read-only) may not create user.");
        assert_string_equal(jget_str(last_audit(f->st, &a), "result"), "denied");
        json_decref(a);

        spec.password = "short";
        assert_int_equal(account_user_create(f->st, &admin, &spec, &u, &err), -EINVAL);
        assert_int_equal(err.status, 422);
        assert_string_equal(err.field, "password");

        json_t *scopes = json_pack("[s]", "Nowhere");
        spec = (AccountUserSpec) { .name = "dana", .password = "correct horse", .role = "delegated-administrator", .scopes = scopes };
        assert_int_equal(account_user_create(f->st, &admin, &spec, &u, &err), -EINVAL);
        assert_int_equal(err.status, 422);
        assert_string_equal(err.field, "scopes");
        json_decref(scopes);
        spec.scopes = NULL;
        assert_int_equal(account_user_create(f->st, &admin, &spec, &u, &err), -EINVAL);
        assert_string_equal(err.message, "A delegated administrator needs at least one host group in 'scopes'.");
        StoreUser su;
        assert_int_equal(store_user_find(f->st, "dana", &su), -ENOENT);

        spec = (AccountUserSpec) { .name = "sam", .password = "correct horse" };
        assert_int_equal(account_user_create(f->st, &admin, &spec, &u, &err), 0);
        assert_string_equal(jget_str(u, "role"), "self-service");
        json_decref(u);
        const json_t *row = last_audit(f->st, &a);
        assert_string_equal(jget_str(row, "action"), "user.create");
        assert_string_equal(jget_str(row, "detail"), "self-service");
        json_decref(a);
        assert_int_equal(account_user_create(f->st, &admin, &spec, &u, &err), -EEXIST);
        assert_int_equal(err.status, 409);
        assert_string_equal(err.field, "name");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_user_create, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
