/* Unit tests for auth/: password hashes, tokens, generated passwords, role
 * names, the policy (every role x action x object kind x scope situation x
 * ownership cell against a literal table) and the failed-login rate limiter
 * with injected time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "auth/auth.h"
#include "util/util.h"

/* ---- passwords ---- */

static void test_password_hash_verify(void **state) {
        char h1[AUTH_HASH_MAX], h2[AUTH_HASH_MAX];
        assert_int_equal(auth_password_hash("correct horse", h1), 0);
        assert_true(strncmp(h1, "$argon2id$", 10) == 0);
        assert_true(strlen(h1) < AUTH_HASH_MAX);
        assert_true(auth_password_verify(h1, "correct horse"));
        assert_false(auth_password_verify(h1, "correct horsE"));
        assert_false(auth_password_verify(h1, "correct horse "));
        assert_false(auth_password_verify(h1, ""));

        /* A fresh salt each time. */
        assert_int_equal(auth_password_hash("correct horse", h2), 0);
        assert_string_not_equal(h1, h2);
        assert_true(auth_password_verify(h2, "correct horse"));

        /* The empty password hashes and verifies like any other. */
        assert_int_equal(auth_password_hash("", h2), 0);
        assert_true(auth_password_verify(h2, ""));
        assert_false(auth_password_verify(h2, "x"));
}

static void test_password_verify_garbage(void **state) {
        assert_false(auth_password_verify("", "pw"));
        assert_false(auth_password_verify("garbage", "pw"));
        assert_false(auth_password_verify("$argon2id$", "pw"));
        assert_false(auth_password_verify("$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA", "pw"));
        assert_false(auth_password_verify("$argon2id$v=19$m=99999999999,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA", "pw"));
        assert_false(auth_password_verify(NULL, "pw"));
        char h[AUTH_HASH_MAX];
        assert_int_equal(auth_password_hash("pw", h), 0);
        assert_false(auth_password_verify(h, NULL));
        /* Not NUL-terminated within the size libsodium reads. */
        char big[300];
        memset(big, 'a', sizeof big - 1);
        big[sizeof big - 1] = 0;
        memcpy(big, h, strlen(h));
        assert_false(auth_password_verify(big, "pw"));
        /* A truncated real hash. */
        h[strlen(h) - 4] = 0;
        assert_false(auth_password_verify(h, "pw"));
}

static void test_password_generate(void **state) {
        static const char lookalikes[] = "0O1lI";
        bool seen[256] = {0};
        char prev[64] = "";
        for (int round = 0; round < 200; round++) {
                char pw[64];
                size_t n = round % 2 ? sizeof pw : 17;
                memset(pw, 'X', sizeof pw);
                auth_password_generate(pw, n);
                assert_int_equal(strlen(pw), n - 1);
                for (size_t i = 0; i < n - 1; i++) {
                        unsigned char c = (unsigned char) pw[i];
                        assert_true((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '9'));
                        assert_null(strchr(lookalikes, c));
                        seen[c] = true;
                }
                if (n == sizeof pw) {
                        assert_string_not_equal(pw, prev);
                        strcpy(prev, pw);
                }
                if (n == 17)
                        assert_int_equal(pw[17], 'X'); /* nothing written past n */
        }
        /* 57 symbols, ~6300 draws: every one should have come up. */
        int distinct = 0;
        for (int c = 0; c < 256; c++)
                distinct += seen[c];
        assert_int_equal(distinct, 24 + 25 + 8);
}

/* ---- tokens ---- */

static bool is_lower_hex(const char *s, size_t n) {
        if (strlen(s) != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

static void test_tokens(void **state) {
        char t1[AUTH_TOKEN_LEN + 1], h1[65], t2[AUTH_TOKEN_LEN + 1], h2[65], h[65];
        auth_token_new(t1, h1);
        auth_token_new(t2, h2);
        assert_true(is_lower_hex(t1, AUTH_TOKEN_LEN));
        assert_true(is_lower_hex(t2, AUTH_TOKEN_LEN));
        assert_true(is_lower_hex(h1, 64));
        assert_true(is_lower_hex(h2, 64));
        assert_string_not_equal(t1, t2);
        assert_string_not_equal(h1, h2);
        assert_string_not_equal(t1, h1);
        auth_token_hash(t1, h);
        assert_string_equal(h, h1);
        auth_token_hash(t2, h);
        assert_string_equal(h, h2);
        /* BLAKE2b-256 reference vectors. */
        auth_token_hash("abc", h);
        assert_string_equal(h, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
        auth_token_hash("", h);
        assert_string_equal(h, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
}

/* ---- roles ---- */

static void test_roles(void **state) {
        static const char *const names[] = {
                "administrator", "delegated-administrator", "self-service", "read-only",
        };
        assert_int_equal(ELEMENTSOF(names), ROLE__COUNT);
        for (int r = 0; r < ROLE__COUNT; r++) {
                AuthRole got = ROLE__COUNT;
                assert_string_equal(auth_role_name((AuthRole) r), names[r]);
                assert_int_equal(auth_role_parse(names[r], &got), 0);
                assert_int_equal(got, r);
        }
        assert_null(auth_role_name(ROLE__COUNT));
        assert_null(auth_role_name((AuthRole) -1));
        static const char *const bad[] = {
                "", "admin", "Administrator", "administrator ", " read-only", "readonly",
                "self_service", "delegated-administrator\n", "root",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                AuthRole got = ROLE_READ_ONLY;
                assert_int_equal(auth_role_parse(bad[i], &got), -EINVAL);
                assert_int_equal(got, ROLE_READ_ONLY); /* untouched on failure */
        }
        AuthRole got = ROLE_READ_ONLY;
        assert_int_equal(auth_role_parse(NULL, &got), -EINVAL);
}

/* ---- policy ----
 *
 * The group tree used throughout:
 *
 *     1 root ─┬─ 2 A ── 3 B (the subject's scope) ── 4 C
 *             └─ 5 X
 *
 * The subject is user 7 with scopes {3}, whatever its role (scopes must not
 * matter to other roles). Situations, for a group / for anything placed in a
 * group / for CREATE (the chain of the parent group it is created in):
 *   BELOW    group C      / in C      / created in C
 *   SCOPE    group B      / in B      / created in B
 *   ABOVE    group A      / in A      / created in A
 *   OUTSIDE  group X      / in X      / created in X
 *   UNPLACED (no chain)   / no group  / created at the top (no parent)
 * Ownership: owned by the subject (7), by someone else (8), by nobody (0).
 * Chains are given scrambled: the header promises "any order". */

enum { S_BELOW, S_SCOPE, S_ABOVE, S_OUTSIDE, S_UNPLACED, S__COUNT };
enum { O_MINE, O_OTHER, O_NONE, O__COUNT };

static const int64_t SUBJECT_ID = 7, OTHER_ID = 8;
static const int64_t owners[O__COUNT] = { [O_MINE] = SUBJECT_ID, [O_OTHER] = OTHER_ID, [O_NONE] = 0 };
static const int64_t scope_b[] = { 3 };

static const int64_t chain_c[] = { 2, 4, 1, 3 };
static const int64_t chain_b[] = { 1, 3, 2 };
static const int64_t chain_a[] = { 2, 1 };
static const int64_t chain_x[] = { 5, 1 };

static const struct {
        const int64_t *chain;
        size_t n;
        int64_t self; /* the group's id when the object is that group */
} situations[S__COUNT] = {
        [S_BELOW] = { chain_c, ELEMENTSOF(chain_c), 4 },
        [S_SCOPE] = { chain_b, ELEMENTSOF(chain_b), 3 },
        [S_ABOVE] = { chain_a, ELEMENTSOF(chain_a), 2 },
        [S_OUTSIDE] = { chain_x, ELEMENTSOF(chain_x), 5 },
        [S_UNPLACED] = { NULL, 0, 0 },
};

/* The expected answers, written out from the rules in auth.h, one row per
 * role and kind; each cell lists the allowed actions as letters: R(ead),
 * C(reate), U(pdate), D(elete), O(perate). Cells are in the order
 * situation-major, then mine / other's / nobody's. */
#define ALL "RCUDO"
static const struct {
        AuthRole role;
        AuthObjectKind kind;
        const char *cells[S__COUNT][O__COUNT];
} expected[] = {
        /*                               BELOW               SCOPE               ABOVE              OUTSIDE             UNPLACED */
        { ROLE_ADMIN, OBJ_SYSTEM,  { { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL } } },
        { ROLE_ADMIN, OBJ_GROUP,   { { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL } } },
        { ROLE_ADMIN, OBJ_HOST,    { { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL } } },
        { ROLE_ADMIN, OBJ_VM,      { { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL } } },
        { ROLE_ADMIN, OBJ_JOB,     { { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL } } },
        { ROLE_ADMIN, OBJ_EVENT,   { { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL }, { ALL, ALL, ALL } } },

        { ROLE_READ_ONLY, OBJ_SYSTEM, { { "", "", "" }, { "", "", "" }, { "", "", "" }, { "", "", "" }, { "", "", "" } } },
        { ROLE_READ_ONLY, OBJ_GROUP,  { { "R", "R", "R" }, { "R", "R", "R" }, { "R", "R", "R" }, { "R", "R", "R" }, { "R", "R", "R" } } },
        { ROLE_READ_ONLY, OBJ_HOST,   { { "R", "R", "R" }, { "R", "R", "R" }, { "R", "R", "R" }, { "R", "R", "R" }, { "R", "R", "R" } } },
        { ROLE_READ_ONLY, OBJ_VM,     { { "R", "R", "R" }, { "R", "R", "R" }, { "R", "R", "R" }, { "R", "R", "R" }, { "R", "R", "R" } } },
        { ROLE_READ_ONLY, OBJ_JOB,    { { "R", "R", "R" }, { "R", "R", "R" }, { "R", "R", "R" }, { "R", "R", "R" }, { "R", "R", "R" } } },
        { ROLE_READ_ONLY, OBJ_EVENT,  { { "R", "R", "R" }, { "R", "R", "R" }, { "R", "R", "R" }, { "R", "R", "R" }, { "R", "R", "R" } } },

        { ROLE_DELEGATED_ADMIN, OBJ_SYSTEM, { { "", "", "" }, { "", "", "" }, { "", "", "" }, { "", "", "" }, { "", "", "" } } },
        { ROLE_DELEGATED_ADMIN, OBJ_GROUP,  { { ALL, ALL, ALL }, { "RCO", "RCO", "RCO" }, { "", "", "" }, { "", "", "" }, { "", "", "" } } },
        /* Adding, removing and changing a host is the administrator's: its
         * URI and pool path decide what armadad connects to and writes. */
        { ROLE_DELEGATED_ADMIN, OBJ_HOST,   { { "RO", "RO", "RO" }, { "RO", "RO", "RO" }, { "", "", "" }, { "", "", "" }, { "", "", "" } } },
        { ROLE_DELEGATED_ADMIN, OBJ_VM,     { { ALL, ALL, ALL }, { ALL, ALL, ALL }, { "", "", "" }, { "", "", "" }, { "", "", "" } } },
        { ROLE_DELEGATED_ADMIN, OBJ_JOB,    { { ALL, ALL, ALL }, { ALL, ALL, ALL }, { "R", "", "" }, { "R", "", "" }, { "R", "", "" } } },
        { ROLE_DELEGATED_ADMIN, OBJ_EVENT,  { { ALL, ALL, ALL }, { ALL, ALL, ALL }, { "", "", "" }, { "", "", "" }, { "", "", "" } } },

        { ROLE_SELF_SERVICE, OBJ_SYSTEM, { { "", "", "" }, { "", "", "" }, { "", "", "" }, { "", "", "" }, { "", "", "" } } },
        { ROLE_SELF_SERVICE, OBJ_GROUP,  { { "", "", "" }, { "", "", "" }, { "", "", "" }, { "", "", "" }, { "", "", "" } } },
        { ROLE_SELF_SERVICE, OBJ_HOST,   { { "", "", "" }, { "", "", "" }, { "", "", "" }, { "", "", "" }, { "", "", "" } } },
        { ROLE_SELF_SERVICE, OBJ_VM,     { { "RDO", "", "" }, { "RDO", "", "" }, { "RDO", "", "" }, { "RDO", "", "" }, { "RDO", "", "" } } },
        { ROLE_SELF_SERVICE, OBJ_JOB,    { { "RDO", "", "" }, { "RDO", "", "" }, { "RDO", "", "" }, { "RDO", "", "" }, { "RDO", "", "" } } },
        { ROLE_SELF_SERVICE, OBJ_EVENT,  { { "R", "", "" }, { "R", "", "" }, { "R", "", "" }, { "R", "", "" }, { "R", "", "" } } },
};

static const char action_letter[ACT__COUNT] = {
        [ACT_READ] = 'R', [ACT_CREATE] = 'C', [ACT_UPDATE] = 'U', [ACT_DELETE] = 'D', [ACT_OPERATE] = 'O',
};
static const char *const kind_name[OBJ__COUNT] = {
        [OBJ_SYSTEM] = "system", [OBJ_GROUP] = "group", [OBJ_HOST] = "host",
        [OBJ_VM] = "vm", [OBJ_JOB] = "job", [OBJ_EVENT] = "event",
};
static const char *const situation_name[S__COUNT] = {
        "below-scope", "scope-itself", "above-scope", "outside", "unplaced",
};
static const char *const owner_name[O__COUNT] = { "mine", "other's", "nobody's" };

static AuthObject make_object(AuthObjectKind kind, AuthAction action, int s, int o) {
        AuthObject obj = {
                .kind = kind,
                .owner_id = owners[o],
                .n_groups = situations[s].n,
                .groups = situations[s].chain,
        };
        /* A group being acted on names itself; one being created does not
         * exist yet, and its chain is its parent's. */
        if (kind == OBJ_GROUP && action != ACT_CREATE)
                obj.self_group_id = situations[s].self;
        return obj;
}

static void test_policy_table(void **state) {
        bool covered[ROLE__COUNT][OBJ__COUNT] = {{0}};
        unsigned asserted = 0, failures = 0;
        for (size_t row = 0; row < ELEMENTSOF(expected); row++) {
                AuthRole role = expected[row].role;
                AuthObjectKind kind = expected[row].kind;
                assert_false(covered[role][kind]);
                covered[role][kind] = true;
                AuthSubject who = { .user_id = SUBJECT_ID, .role = role, .n_scopes = 1, .scopes = scope_b };
                for (int s = 0; s < S__COUNT; s++)
                        for (int o = 0; o < O__COUNT; o++)
                                for (int a = 0; a < ACT__COUNT; a++) {
                                        AuthObject obj = make_object(kind, (AuthAction) a, s, o);
                                        bool want = strchr(expected[row].cells[s][o], action_letter[a]) != NULL;
                                        bool got = auth_policy_allows(&who, (AuthAction) a, &obj);
                                        asserted++;
                                        if (got != want) {
                                                failures++;
                                                print_error("policy: %s %c on %s %s (%s): want %s, got %s\n",
                                                            auth_role_name(role), action_letter[a], owner_name[o],
                                                            kind_name[kind], situation_name[s],
                                                            want ? "allow" : "deny", got ? "allow" : "deny");
                                        }
                                }
        }
        for (int r = 0; r < ROLE__COUNT; r++)
                for (int k = 0; k < OBJ__COUNT; k++)
                        assert_true(covered[r][k]);
        assert_int_equal(asserted, ROLE__COUNT * OBJ__COUNT * S__COUNT * O__COUNT * ACT__COUNT);
        assert_int_equal(failures, 0);
}

static bool allows(AuthRole role, const int64_t *scopes, size_t n_scopes, AuthAction action,
                   AuthObjectKind kind, const int64_t *chain, size_t n, int64_t self, int64_t owner) {
        AuthSubject who = { .user_id = SUBJECT_ID, .role = role, .n_scopes = n_scopes, .scopes = scopes };
        AuthObject obj = { .kind = kind, .owner_id = owner, .n_groups = n, .groups = chain, .self_group_id = self };
        return auth_policy_allows(&who, action, &obj);
}

static void test_policy_edges(void **state) {
        const AuthRole DA = ROLE_DELEGATED_ADMIN;

        /* Nested scopes: the outer scope (A) allows changing the inner one (B),
         * but A itself stays out of reach. */
        static const int64_t scopes_ab[] = { 2, 3 };
        assert_true(allows(DA, scopes_ab, 2, ACT_UPDATE, OBJ_GROUP, chain_b, ELEMENTSOF(chain_b), 3, 0));
        assert_true(allows(DA, scopes_ab, 2, ACT_DELETE, OBJ_GROUP, chain_b, ELEMENTSOF(chain_b), 3, 0));
        assert_false(allows(DA, scopes_ab, 2, ACT_UPDATE, OBJ_GROUP, chain_a, ELEMENTSOF(chain_a), 2, 0));
        assert_false(allows(DA, scopes_ab, 2, ACT_DELETE, OBJ_GROUP, chain_a, ELEMENTSOF(chain_a), 2, 0));
        assert_true(allows(DA, scopes_ab, 2, ACT_READ, OBJ_GROUP, chain_a, ELEMENTSOF(chain_a), 2, 0));

        /* Two disjoint scopes: X becomes reachable, but is itself a root. */
        static const int64_t scopes_bx[] = { 3, 5 };
        assert_true(allows(DA, scopes_bx, 2, ACT_UPDATE, OBJ_VM, chain_x, ELEMENTSOF(chain_x), 0, 0));
        assert_true(allows(DA, scopes_bx, 2, ACT_CREATE, OBJ_GROUP, chain_x, ELEMENTSOF(chain_x), 0, 0));
        assert_false(allows(DA, scopes_bx, 2, ACT_UPDATE, OBJ_GROUP, chain_x, ELEMENTSOF(chain_x), 5, 0));
        assert_false(allows(DA, scopes_bx, 2, ACT_UPDATE, OBJ_GROUP, chain_a, ELEMENTSOF(chain_a), 2, 0));

        /* A group UPDATE/DELETE without its own id fails closed for the
         * delegated administrator only. */
        assert_false(allows(DA, scope_b, 1, ACT_UPDATE, OBJ_GROUP, chain_c, ELEMENTSOF(chain_c), 0, 0));
        assert_false(allows(DA, scope_b, 1, ACT_DELETE, OBJ_GROUP, chain_c, ELEMENTSOF(chain_c), 0, 0));
        assert_true(allows(DA, scope_b, 1, ACT_READ, OBJ_GROUP, chain_c, ELEMENTSOF(chain_c), 0, 0));
        assert_true(allows(ROLE_ADMIN, scope_b, 1, ACT_DELETE, OBJ_GROUP, chain_c, ELEMENTSOF(chain_c), 0, 0));

        /* self_group_id is ignored for other kinds, even when it names a scope. */
        assert_true(allows(DA, scope_b, 1, ACT_OPERATE, OBJ_HOST, chain_b, ELEMENTSOF(chain_b), 3, 0));
        assert_true(allows(DA, scope_b, 1, ACT_DELETE, OBJ_VM, chain_b, ELEMENTSOF(chain_b), 3, 0));

        /* Hosts: a delegated administrator never adds, removes or changes
         * one, whatever its scopes (nested ones and the host's own group
         * included); it reads and operates (refresh, maintenance) inside them. */
        for (AuthAction a = ACT_CREATE; a <= ACT_DELETE; a++) {
                assert_false(allows(DA, scopes_ab, 2, a, OBJ_HOST, chain_c, ELEMENTSOF(chain_c), 0, 0));
                assert_false(allows(DA, scopes_bx, 2, a, OBJ_HOST, chain_x, ELEMENTSOF(chain_x), 0, 0));
                assert_true(allows(ROLE_ADMIN, NULL, 0, a, OBJ_HOST, NULL, 0, 0, 0));
        }
        assert_true(allows(DA, scopes_ab, 2, ACT_READ, OBJ_HOST, chain_c, ELEMENTSOF(chain_c), 0, 0));
        assert_true(allows(DA, scopes_ab, 2, ACT_OPERATE, OBJ_HOST, chain_c, ELEMENTSOF(chain_c), 0, 0));
        assert_true(allows(DA, scope_b, 1, ACT_UPDATE, OBJ_VM, chain_c, ELEMENTSOF(chain_c), 3, 0));

        /* A self id that is not in the chain does not hide the chain's scope. */
        assert_true(allows(DA, scope_b, 1, ACT_UPDATE, OBJ_GROUP, chain_c, ELEMENTSOF(chain_c), 4, 0));

        /* Chains: AUTH_MAX_DEPTH is fine, one more is malformed. */
        int64_t deep[AUTH_MAX_DEPTH + 1];
        for (size_t i = 0; i < ELEMENTSOF(deep); i++)
                deep[i] = 100 + (int64_t) i;
        deep[0] = 3;
        assert_true(allows(DA, scope_b, 1, ACT_UPDATE, OBJ_VM, deep, AUTH_MAX_DEPTH, 0, 0));
        assert_false(allows(DA, scope_b, 1, ACT_UPDATE, OBJ_VM, deep, AUTH_MAX_DEPTH + 1, 0, 0));
        assert_true(allows(ROLE_ADMIN, scope_b, 1, ACT_UPDATE, OBJ_VM, deep, AUTH_MAX_DEPTH + 1, 0, 0));

        /* NULL arrays with counts, zero ids. */
        assert_false(allows(DA, NULL, 3, ACT_READ, OBJ_VM, chain_c, ELEMENTSOF(chain_c), 0, 0));
        assert_false(allows(DA, scope_b, 1, ACT_READ, OBJ_VM, NULL, 3, 0, 0));
        assert_false(allows(DA, scope_b, 0, ACT_READ, OBJ_VM, chain_c, ELEMENTSOF(chain_c), 0, 0));
        static const int64_t zero[] = { 0 }, minus[] = { -1 };
        assert_false(allows(DA, zero, 1, ACT_READ, OBJ_VM, zero, 1, 0, 0));
        assert_false(allows(DA, minus, 1, ACT_READ, OBJ_VM, minus, 1, 0, 0));

        /* Owner 0 is nobody, even for a subject whose id is 0. */
        AuthSubject anon = { .user_id = 0, .role = ROLE_SELF_SERVICE };
        AuthObject vm = { .kind = OBJ_VM, .owner_id = 0 };
        assert_false(auth_policy_allows(&anon, ACT_READ, &vm));
        anon.role = DA;
        AuthObject job = { .kind = OBJ_JOB, .owner_id = 0 };
        assert_false(auth_policy_allows(&anon, ACT_READ, &job));

        /* Anything out of range, or missing, is denied, even to the admin. */
        AuthSubject admin = { .user_id = 1, .role = ROLE_ADMIN };
        AuthSubject bogus = { .user_id = 1, .role = ROLE__COUNT };
        AuthObject any = { .kind = OBJ_VM, .owner_id = 1 };
        AuthObject bad_kind = { .kind = OBJ__COUNT, .owner_id = 1 };
        assert_true(auth_policy_allows(&admin, ACT_READ, &any));
        assert_false(auth_policy_allows(&bogus, ACT_READ, &any));
        assert_false(auth_policy_allows(&admin, ACT__COUNT, &any));
        assert_false(auth_policy_allows(&admin, (AuthAction) -1, &any));
        assert_false(auth_policy_allows(&admin, ACT_READ, &bad_kind));
        assert_false(auth_policy_allows(NULL, ACT_READ, &any));
        assert_false(auth_policy_allows(&admin, ACT_READ, NULL));
}

/* auth_policy_allows_some: "is there any object of this kind the role may
 * act on so?" A read-only user changes nothing anywhere; a self-service user
 * creates, updates and sees no hosts or groups but operates its own VMs; a
 * delegated administrator without a scope may do nothing. */
static void test_policy_allows_some(void **state) {
        (void) state;
        static const int64_t scope[] = { 3 };
        const AuthSubject admin = { .user_id = SUBJECT_ID, .role = ROLE_ADMIN };
        const AuthSubject ro = { .user_id = SUBJECT_ID, .role = ROLE_READ_ONLY };
        const AuthSubject ss = { .user_id = SUBJECT_ID, .role = ROLE_SELF_SERVICE };
        const AuthSubject da = { .user_id = SUBJECT_ID, .role = ROLE_DELEGATED_ADMIN, .n_scopes = 1, .scopes = scope };
        const AuthSubject da_none = { .user_id = SUBJECT_ID, .role = ROLE_DELEGATED_ADMIN };
        for (int k = 0; k < OBJ__COUNT; k++)
                for (int a = 0; a < ACT__COUNT; a++) {
                        assert_true(auth_policy_allows_some(&admin, (AuthAction) a, (AuthObjectKind) k));
                        assert_int_equal(auth_policy_allows_some(&ro, (AuthAction) a, (AuthObjectKind) k),
                                         a == ACT_READ && k != OBJ_SYSTEM);
                        /* Hosts: read and operate (refresh, maintenance); adding,
                         * changing and removing them is the administrator's. */
                        assert_int_equal(auth_policy_allows_some(&da, (AuthAction) a, (AuthObjectKind) k),
                                         k != OBJ_SYSTEM && (k != OBJ_HOST || a == ACT_READ || a == ACT_OPERATE));
                        assert_false(auth_policy_allows_some(&da_none, (AuthAction) a, (AuthObjectKind) k) && k != OBJ_JOB);
                }
        assert_false(auth_policy_allows_some(&ss, ACT_CREATE, OBJ_VM));
        assert_false(auth_policy_allows_some(&ss, ACT_UPDATE, OBJ_VM));
        assert_true(auth_policy_allows_some(&ss, ACT_OPERATE, OBJ_VM));
        assert_true(auth_policy_allows_some(&ss, ACT_DELETE, OBJ_VM));
        assert_true(auth_policy_allows_some(&ss, ACT_READ, OBJ_VM));
        assert_false(auth_policy_allows_some(&ss, ACT_READ, OBJ_HOST));
        assert_false(auth_policy_allows_some(&ss, ACT_READ, OBJ_GROUP));
        assert_false(auth_policy_allows_some(&ss, ACT_UPDATE, OBJ_HOST));
        assert_false(auth_policy_allows_some(NULL, ACT_READ, OBJ_VM));
        assert_false(auth_policy_allows_some(&admin, ACT__COUNT, OBJ_VM));
        assert_false(auth_policy_allows_some(&admin, ACT_READ, OBJ__COUNT));
}

/* ---- rate limiter ---- */

static void test_rate_block_and_expire(void **state) {
        static AuthRateLimiter rl; /* zeroed; too big for comfort on the stack */
        memset(&rl, 0, sizeof rl);
        const char *k = "alice|192.0.2.1";
        const int64_t t0 = 1000000;

        for (int i = 0; i < AUTH_RATE_MAX_FAILURES - 1; i++) {
                assert_int_equal(auth_rate_check(&rl, k, t0 + 10 * i), 0);
                auth_rate_record(&rl, k, false, t0 + 10 * i);
        }
        assert_int_equal(auth_rate_check(&rl, k, t0 + 40), 0);
        auth_rate_record(&rl, k, false, t0 + 40);

        /* Blocked until the window that opened at the first failure ends. */
        int64_t w1 = auth_rate_check(&rl, k, t0 + 40);
        assert_true(w1 > 0 && w1 <= AUTH_RATE_WINDOW_MS);
        assert_int_equal(w1, AUTH_RATE_WINDOW_MS - 40);
        int64_t w2 = auth_rate_check(&rl, k, t0 + 1040);
        assert_int_equal(w2, w1 - 1000);
        assert_int_equal(auth_rate_check(&rl, k, t0 + AUTH_RATE_WINDOW_MS - 1), 1);

        /* Failing more while blocked does not extend the window. */
        auth_rate_record(&rl, k, false, t0 + 2000);
        assert_int_equal(auth_rate_check(&rl, k, t0 + AUTH_RATE_WINDOW_MS - 1), 1);

        /* A clock that stepped back gets a bounded wait. */
        assert_int_equal(auth_rate_check(&rl, k, t0 - 5000), AUTH_RATE_WINDOW_MS);

        /* The window ends: allowed again, and the next failure starts afresh. */
        assert_int_equal(auth_rate_check(&rl, k, t0 + AUTH_RATE_WINDOW_MS), 0);
        auth_rate_record(&rl, k, false, t0 + AUTH_RATE_WINDOW_MS);
        assert_int_equal(auth_rate_check(&rl, k, t0 + AUTH_RATE_WINDOW_MS), 0);
        for (int i = 1; i < AUTH_RATE_MAX_FAILURES - 1; i++)
                auth_rate_record(&rl, k, false, t0 + AUTH_RATE_WINDOW_MS + i);
        assert_int_equal(auth_rate_check(&rl, k, t0 + AUTH_RATE_WINDOW_MS + 10), 0);
        auth_rate_record(&rl, k, false, t0 + AUTH_RATE_WINDOW_MS + 10);
        assert_int_equal(auth_rate_check(&rl, k, t0 + AUTH_RATE_WINDOW_MS + 10), AUTH_RATE_WINDOW_MS - 10);
}

static void test_rate_spread_failures(void **state) {
        static AuthRateLimiter rl;
        memset(&rl, 0, sizeof rl);
        const char *k = "bob|192.0.2.2";
        const int64_t t0 = 5000;
        /* Four failures in one window and four in the next never block. */
        for (int i = 0; i < 4; i++)
                auth_rate_record(&rl, k, false, t0 + i);
        for (int i = 0; i < 4; i++)
                auth_rate_record(&rl, k, false, t0 + AUTH_RATE_WINDOW_MS + i);
        assert_int_equal(auth_rate_check(&rl, k, t0 + AUTH_RATE_WINDOW_MS + 4), 0);
}

static void test_rate_success_clears(void **state) {
        static AuthRateLimiter rl;
        memset(&rl, 0, sizeof rl);
        const char *k = "carol|192.0.2.3";
        for (int i = 0; i < AUTH_RATE_MAX_FAILURES; i++)
                auth_rate_record(&rl, k, false, 100 + i);
        assert_true(auth_rate_check(&rl, k, 200) > 0);
        auth_rate_record(&rl, k, true, 200);
        assert_int_equal(auth_rate_check(&rl, k, 200), 0);
        /* The count starts over. */
        for (int i = 0; i < AUTH_RATE_MAX_FAILURES - 1; i++)
                auth_rate_record(&rl, k, false, 300 + i);
        assert_int_equal(auth_rate_check(&rl, k, 400), 0);
        /* Success on a key never seen is harmless. */
        auth_rate_record(&rl, "nobody|192.0.2.9", true, 400);
        assert_int_equal(auth_rate_check(&rl, "nobody|192.0.2.9", 400), 0);
}

static void test_rate_keys_independent(void **state) {
        static AuthRateLimiter rl;
        memset(&rl, 0, sizeof rl);
        for (int i = 0; i < AUTH_RATE_MAX_FAILURES; i++)
                auth_rate_record(&rl, "alice|192.0.2.1", false, 1000);
        assert_true(auth_rate_check(&rl, "alice|192.0.2.1", 1000) > 0);
        assert_int_equal(auth_rate_check(&rl, "alice|192.0.2.2", 1000), 0);
        assert_int_equal(auth_rate_check(&rl, "bob|192.0.2.1", 1000), 0);
        assert_int_equal(auth_rate_check(&rl, "alice", 1000), 0);
        assert_int_equal(auth_rate_check(&rl, "192.0.2.1", 1000), 0);
        /* Success elsewhere does not clear alice. */
        auth_rate_record(&rl, "alice|192.0.2.2", true, 1000);
        assert_true(auth_rate_check(&rl, "alice|192.0.2.1", 1000) > 0);

        /* A few dozen keys, each one short of blocked, then each blocked. */
        char key[64];
        for (int round = 0; round < AUTH_RATE_MAX_FAILURES; round++)
                for (int i = 0; i < 32; i++) {
                        snprintf(key, sizeof key, "user%d|198.51.100.%d", i, i);
                        assert_int_equal(auth_rate_check(&rl, key, 2000), 0);
                        auth_rate_record(&rl, key, false, 2000);
                }
        for (int i = 0; i < 32; i++) {
                snprintf(key, sizeof key, "user%d|198.51.100.%d", i, i);
                assert_int_equal(auth_rate_check(&rl, key, 2000), AUTH_RATE_WINDOW_MS);
        }
        assert_true(auth_rate_check(&rl, "alice|192.0.2.1", 2000) > 0);
}

static void test_rate_odd_keys(void **state) {
        static AuthRateLimiter rl;
        memset(&rl, 0, sizeof rl);
        /* Long keys that share their first 200 bytes stay apart. */
        char a[256], b[256];
        memset(a, 'n', sizeof a - 1);
        a[sizeof a - 1] = 0;
        memcpy(b, a, sizeof b);
        a[250] = '1';
        b[250] = '2';
        for (int i = 0; i < AUTH_RATE_MAX_FAILURES; i++)
                auth_rate_record(&rl, a, false, 10);
        assert_true(auth_rate_check(&rl, a, 10) > 0);
        assert_int_equal(auth_rate_check(&rl, b, 10), 0);
        auth_rate_record(&rl, a, true, 10);
        assert_int_equal(auth_rate_check(&rl, a, 10), 0);

        /* The empty key (and NULL) is a key like any other. */
        for (int i = 0; i < AUTH_RATE_MAX_FAILURES; i++)
                auth_rate_record(&rl, "", false, 10);
        assert_true(auth_rate_check(&rl, "", 10) > 0);
        assert_true(auth_rate_check(&rl, NULL, 10) > 0);
        assert_int_equal(auth_rate_check(&rl, "x", 10), 0);

        /* A flood of distinct keys may evict (documented) but never breaks
         * the table: a new key afterwards still gets blocked. */
        char key[64];
        for (int i = 0; i < 5000; i++) {
                snprintf(key, sizeof key, "spray%d|203.0.113.7", i);
                auth_rate_record(&rl, key, false, 20 + i);
        }
        for (int i = 0; i < AUTH_RATE_MAX_FAILURES; i++)
                auth_rate_record(&rl, "dave|203.0.113.8", false, 6000);
        assert_true(auth_rate_check(&rl, "dave|203.0.113.8", 6000) > 0);
}

/* The user keys and the address keys are two spaces: a user named "addr"
 * (the old "addr|ADDRESS" collision), or one whose name holds the
 * separator, never shares a key with an address or another user. */
static void test_rate_keys_disjoint(void **state) {
        char a[AUTH_RATE_KEY_MAX], b[AUTH_RATE_KEY_MAX];
        auth_rate_key_addr("192.0.2.1", a);
        assert_string_equal(a, "a:192.0.2.1");
        const char *names[] = { "addr", "a", "a:192.0.2.1", "", "x|192.0.2.1", "u", "192.0.2.1" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                auth_rate_key_user(names[i], "192.0.2.1", b);
                assert_string_not_equal(a, b);
                assert_true(strncmp(b, "u:", 2) == 0);
        }
        auth_rate_key_user("addr", "192.0.2.1", b);
        assert_string_equal(b, "u:4:addr|192.0.2.1");
        /* "x|1" from "2" and "x" from "1|2" would both be "x|1|2" without the length. */
        char c[AUTH_RATE_KEY_MAX];
        auth_rate_key_user("x|1", "2", b);
        auth_rate_key_user("x", "1|2", c);
        assert_string_not_equal(b, c);
        /* A user named like the address key fails five times: the address
         * itself has five failures too, not ten in one slot. */
        static AuthRateLimiter rl;
        memset(&rl, 0, sizeof rl);
        bool first;
        auth_rate_key_user("addr", "192.0.2.1", b);
        for (int i = 0; i < AUTH_RATE_MAX_FAILURES - 1; i++) {
                assert_int_equal(auth_rate_begin(&rl, b, a, 1000, &first), 0);
                auth_rate_finish(&rl, b, a, false, 1000);
        }
        assert_int_equal(auth_rate_check(&rl, a, 1000), 0);
        assert_int_equal(auth_rate_check(&rl, b, 1000), 0);
        (void) state;
}

/* Check and record are one step: attempts in flight count, so no more than
 * AUTH_RATE_MAX_FAILURES can pass the check before any has finished; a
 * success gives back the address's share and clears the user's. */
static void test_rate_begin_atomic(void **state) {
        static AuthRateLimiter rl;
        memset(&rl, 0, sizeof rl);
        char u[AUTH_RATE_KEY_MAX], a[AUTH_RATE_KEY_MAX];
        auth_rate_key_user("alice", "192.0.2.1", u);
        auth_rate_key_addr("192.0.2.1", a);
        bool first = true;
        for (int i = 0; i < AUTH_RATE_MAX_FAILURES; i++) {
                assert_int_equal(auth_rate_begin(&rl, u, a, 1000, &first), 0);
                assert_false(first);
        }
        /* Five in flight, none finished: the sixth is refused, and it is
         * the first refusal of the window; the seventh is not. */
        assert_int_equal(auth_rate_begin(&rl, u, a, 1000, &first), AUTH_RATE_WINDOW_MS);
        assert_true(first);
        assert_int_equal(auth_rate_begin(&rl, u, a, 1500, &first), AUTH_RATE_WINDOW_MS - 500);
        assert_false(first);
        /* One of the five succeeds: alice is clear, the address has four. */
        auth_rate_finish(&rl, u, a, true, 1600);
        assert_int_equal(auth_rate_check(&rl, u, 1600), 0);
        assert_int_equal(auth_rate_check(&rl, a, 1600), 0);
        assert_int_equal(auth_rate_begin(&rl, u, a, 1600, &first), 0);
        /* The address is full again: bob from it is refused, but bob from
         * another address, and alice from another address, are not. */
        char u2[AUTH_RATE_KEY_MAX], a2[AUTH_RATE_KEY_MAX];
        auth_rate_key_user("bob", "192.0.2.1", u2);
        assert_true(auth_rate_begin(&rl, u2, a, 1700, &first) > 0);
        auth_rate_key_user("bob", "192.0.2.2", u2);
        auth_rate_key_addr("192.0.2.2", a2);
        assert_int_equal(auth_rate_begin(&rl, u2, a2, 1700, &first), 0);
        auth_rate_key_user("alice", "192.0.2.2", u2);
        assert_int_equal(auth_rate_begin(&rl, u2, a2, 1700, &first), 0);
        /* A new window: refusals are reported again, once. */
        int64_t t = 1700 + AUTH_RATE_WINDOW_MS;
        for (int i = 0; i < AUTH_RATE_MAX_FAILURES; i++)
                assert_int_equal(auth_rate_begin(&rl, u, a, t, &first), 0);
        assert_true(auth_rate_begin(&rl, u, a, t, &first) > 0);
        assert_true(first);
        assert_true(auth_rate_begin(&rl, u, a, t, &first) > 0);
        assert_false(first);
        (void) state;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_password_hash_verify),
                cmocka_unit_test(test_password_verify_garbage),
                cmocka_unit_test(test_password_generate),
                cmocka_unit_test(test_tokens),
                cmocka_unit_test(test_roles),
                cmocka_unit_test(test_policy_table),
                cmocka_unit_test(test_policy_edges),
                cmocka_unit_test(test_policy_allows_some),
                cmocka_unit_test(test_rate_block_and_expire),
                cmocka_unit_test(test_rate_spread_failures),
                cmocka_unit_test(test_rate_success_clears),
                cmocka_unit_test(test_rate_keys_independent),
                cmocka_unit_test(test_rate_odd_keys),
                cmocka_unit_test(test_rate_keys_disjoint),
                cmocka_unit_test(test_rate_begin_atomic),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
