/* account: users and sessions (account.h). */
#include "account.h"

#include <errno.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* sessions */

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[AUTH_HASH_MAX];
static void dummy_init(void) {
        if (auth_password_hash("armada-timing-equaliser", dummy_hash) < 0)
                dummy_hash[0] = 0;
}

/* Checks the password of name: true and *u when it is right. Costs the
 * same whether or not the user exists. */
static bool password_right(Store *st, const char *name, const char *password, StoreUser *u) {
        if (store_user_find(st, name, u) == 0)
                return auth_password_verify(u->password_hash, password);
        pthread_once(&dummy_once, dummy_init);
        (void) auth_password_verify(dummy_hash, password);
        return false;
}

int account_session_create(Store *st, const AccountLimiter *lim, const OpCaller *c, const AccountLoginSpec *spec,
                           AccountSession *ret, OpError *err) {
        const char *addr = c->address ? c->address : "";
        char key_user[AUTH_RATE_KEY_MAX], key_addr[AUTH_RATE_KEY_MAX];
        auth_rate_key_user(spec->name, addr, key_user);
        auth_rate_key_addr(addr, key_addr);
        /* Checked and counted as a failure in one step, so parallel attempts
         * cannot all pass the check before any of them is counted. */
        bool first_refusal;
        pthread_mutex_lock(lim->lock);
        int64_t wait = auth_rate_begin(lim->rate, key_user, key_addr, mono_ms(), &first_refusal);
        pthread_mutex_unlock(lim->lock);
        if (wait > 0) {
                /* Counted, but audited once per key and window: a flood of
                 * refused attempts must not fill the audit table. */
                __atomic_add_fetch(lim->refused, 1, __ATOMIC_RELAXED);
                if (first_refusal)
                        op_audit(st, c, "session.create", "user", 0, spec->name, "too many failed logins; further refusals in this"
                                 " window are only counted (armada_login_rate_limited_total)", "denied");
                op_fail(err, 429, "rate_limited", NULL, "Too many failed logins; try again in %lld seconds.", (long long) (wait + 999) / 1000);
                return -EAGAIN;
        }
        StoreUser u;
        bool ok = password_right(st, spec->name, spec->password, &u);
        pthread_mutex_lock(lim->lock);
        auth_rate_finish(lim->rate, key_user, key_addr, ok, mono_ms());
        pthread_mutex_unlock(lim->lock);
        if (!ok) {
                op_audit(st, c, "session.create", "user", 0, spec->name, "wrong user name or password", "denied");
                op_fail(err, 401, "unauthenticated", NULL, "Wrong user name or password.");
                return -EACCES;
        }
        AccountSession s = { .user = u };
        auth_token_new(s.token, s.token_hash);
        s.expires_at_ms = now_ms() + (int64_t) spec->token_ttl_s * 1000;
        if (store_token_insert(st, u.id, s.token_hash, s.expires_at_ms) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot record the session.");
        (void) store_token_purge_expired(st, now_ms());
        AuthRole role;
        if (auth_role_parse(u.role, &role) < 0) {
                (void) store_token_delete(st, s.token_hash);
                return op_fail(err, 500, "internal", NULL, "User '%s' has an unknown role '%s'.", u.name, u.role);
        }
        /* Audited as the user who logged in. */
        OpCaller who = { .user_id = u.id, .user_name = u.name, .role_name = u.role, .address = c->address };
        op_audit(st, &who, "session.create", "user", u.id, u.name, NULL, "ok");
        *ret = s;
        return 0;
}

int account_session_delete(Store *st, const OpCaller *c, const char *token_hash, OpError *err) {
        (void) store_token_delete(st, token_hash);
        op_audit(st, c, "session.delete", "user", c->user_id, c->user_name, NULL, "ok");
        return 0;
}

int account_session_user(Store *st, const char *token_hash, StoreUser *ret) {
        return store_token_user(st, token_hash, now_ms(), ret);
}

int account_user_scopes(Store *st, int64_t user_id, int64_t **ret) {
        return store_user_scopes(st, user_id, ret);
}

/* ------------------------------------------------------------------ */
/* users */

/* The "scopes" of a request (an array of host-group paths) as group ids:
 * 0, or -EINVAL with err naming the field. */
static int scopes_parse(Store *st, const json_t *arr, int64_t *ids, size_t *n, OpError *err) {
        *n = 0;
        if (!json_is_array(arr))
                return op_fail(err, 400, "invalid_argument", "scopes", "Field 'scopes' must be an array of host-group paths.");
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
                if (!json_is_string(v) || i >= ACCOUNT_MAX_SCOPES)
                        return op_fail(err, 400, "invalid_argument", "scopes", "Field 'scopes' must be an array of at most %d host-group paths.",
                                       ACCOUNT_MAX_SCOPES);
                const char *why = NULL;
                _cleanup_free_ char *p = store_group_path_normalize(json_string_value(v), &why);
                if (!p)
                        return op_fail(err, 400, "invalid_argument", "scopes", "Scope '%.200s' is not a valid host-group path: a segment %s.",
                                       json_string_value(v), why);
                int r = store_group_find(st, p, &ids[*n]);
                if (r == -ENOENT) {
                        op_fail(err, 422, "not_found", "scopes", "Host group '%.200s' does not exist.", json_string_value(v));
                        return -EINVAL;
                }
                if (r < 0)
                        return op_fail_store(err, r, "the host groups");
                (*n)++;
        }
        return 0;
}

#define PASSWORD_MIN 8

static int password_check(const char *password, OpError *err) {
        if (password && strlen(password) < PASSWORD_MIN)
                return op_fail(err, 422, "invalid_argument", "password", "Field 'password' must be at least 8 characters long.");
        return 0;
}

static int role_parse(const char *role_s, AuthRole *role, OpError *err) {
        if (role_s && auth_role_parse(role_s, role) < 0)
                return op_fail(err, 422, "invalid_argument", "role",
                               "Field 'role' must be one of administrator, delegated-administrator, self-service, read-only.");
        return 0;
}

static int user_not_found(OpError *err, int64_t id) {
        return op_fail(err, 404, "not_found", NULL, "There is no user with id %lld.", (long long) id);
}

int account_user_list(Store *st, const OpCaller *c, const char *name, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_READ, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "list", "users", 0, NULL);
        int r = store_user_list(st, name, ret);
        return r < 0 ? op_fail_store(err, r, "the list of users") : 0;
}

int account_user_create(Store *st, const OpCaller *c, const AccountUserSpec *spec, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_CREATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "create", "user", 0, NULL);
        AuthRole role;
        int r = password_check(spec->password, err);
        if (r < 0 || (r = role_parse(spec->role ? spec->role : "self-service", &role, err)) < 0)
                return r;
        int64_t scopes[ACCOUNT_MAX_SCOPES];
        size_t n_scopes = 0;
        if (spec->scopes && (r = scopes_parse(st, spec->scopes, scopes, &n_scopes, err)) < 0)
                return r;
        if (role == ROLE_DELEGATED_ADMIN && n_scopes == 0)
                return op_fail(err, 422, "invalid_argument", "scopes", "A delegated administrator needs at least one host group in 'scopes'.");
        char hash[AUTH_HASH_MAX];
        if (auth_password_hash(spec->password, hash) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot hash the password.");
        int64_t id;
        int e = store_user_insert(st, spec->name, hash, auth_role_name(role), &id);
        if (e == -EEXIST)
                return op_fail(err, 409, "conflict", "name", "A user named '%s' already exists.", spec->name);
        if (e < 0)
                return op_fail_store(err, e, "the user");
        if (n_scopes && store_user_scopes_set(st, id, scopes, n_scopes) < 0) {
                (void) store_user_delete(st, id);
                return op_fail(err, 500, "internal", NULL, "Cannot record the scopes of user '%s'.", spec->name);
        }
        op_audit(st, c, "user.create", "user", id, spec->name, auth_role_name(role), "ok");
        r = store_user_get_json(st, id, ret);
        return r < 0 ? op_fail_store(err, r, "the new user") : 0;
}

int account_user_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        if (id != c->user_id && !op_allowed(st, c, ACT_READ, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "read", "user", id, NULL);
        int r = store_user_get_json(st, id, ret);
        if (r == -ENOENT)
                return user_not_found(err, id);
        return r < 0 ? op_fail_store(err, r, "the user") : 0;
}

int account_user_update(Store *st, const OpCaller *c, int64_t id, const AccountUserSpec *spec, json_t **ret, OpError *err) {
        bool self_password_only = id == c->user_id && !spec->role && !spec->scopes;
        if (!self_password_only && !op_allowed(st, c, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "update", "user", id, NULL);
        StoreUser u;
        int r = store_user_get(st, id, &u);
        if (r == -ENOENT)
                return user_not_found(err, id);
        if (r < 0)
                return op_fail_store(err, r, "the user");
        AuthRole role;
        r = password_check(spec->password, err);
        if (r < 0 || (r = role_parse(spec->role, &role, err)) < 0)
                return r;
        int64_t scopes[ACCOUNT_MAX_SCOPES];
        size_t n_scopes = 0;
        if (spec->scopes && (r = scopes_parse(st, spec->scopes, scopes, &n_scopes, err)) < 0)
                return r;
        char hash[AUTH_HASH_MAX];
        if (spec->password && auth_password_hash(spec->password, hash) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot hash the password.");
        if (store_user_update(st, u.id, spec->password ? hash : NULL, spec->role ? auth_role_name(role) : NULL) < 0 ||
            (spec->scopes && store_user_scopes_set(st, u.id, scopes, n_scopes) < 0))
                return op_fail(err, 500, "internal", NULL, "Cannot update user '%s'.", u.name);
        if (spec->password) /* a new password ends every other session */
                (void) store_token_delete_others(st, u.id, spec->keep_token_hash);
        op_audit(st, c, "user.update", "user", u.id, u.name, spec->password ? "password changed" : NULL, "ok");
        r = store_user_get_json(st, u.id, ret);
        return r < 0 ? op_fail_store(err, r, "the user") : 0;
}

int account_user_delete(Store *st, const OpCaller *c, int64_t id, OpError *err) {
        if (!op_allowed(st, c, ACT_DELETE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "delete", "user", id, NULL);
        if (id == c->user_id)
                return op_fail(err, 409, "conflict", NULL, "You cannot delete your own user.");
        StoreUser u;
        int r = store_user_get(st, id, &u);
        if (r == -ENOENT)
                return user_not_found(err, id);
        if (r < 0)
                return op_fail_store(err, r, "the user");
        (void) store_user_delete(st, u.id);
        op_audit(st, c, "user.delete", "user", u.id, u.name, NULL, "ok");
        return 0;
}
