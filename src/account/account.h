/* account: users and their sessions — who may log in, with which role and,
 * for a delegated administrator, over which host groups. Its operations
 * take an OpCaller and fill an OpError (op/op.h) like every capability's:
 * the API parses a request, calls one of them and maps the result.
 *
 * Layering: builds on op, auth and store; the API builds on it. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "auth/auth.h"
#include "op/op.h"
#include "store/store.h"

#define ACCOUNT_MAX_SCOPES 64

/* ---- sessions ---- */

/* The failed-login limiter, owned by whoever serves logins (the API):
 * rate under lock, and a counter of refused attempts (updated with
 * __atomic, for /metrics). */
typedef struct {
        pthread_mutex_t *lock;
        AuthRateLimiter *rate;
        uint64_t *refused;
} AccountLimiter;

typedef struct {
        const char *name;
        const char *password;
        int token_ttl_s;             /* how long the new session lives */
} AccountLoginSpec;

typedef struct {
        StoreUser user;              /* who logged in */
        char token[AUTH_TOKEN_LEN + 1];
        char token_hash[65];
        int64_t expires_at_ms;
} AccountSession;

/* Logs a user in (c: who asks, from c->address; not yet a user): checks the
 * limiter and the password (same cost whether or not the user exists),
 * records a session token and audits "session.create". 0 and *ret, or:
 * -EAGAIN (429 "rate_limited": too many failed logins from the address or
 * for the name; audited once per window), -EACCES (401 "unauthenticated":
 * wrong name or password, audited as denied), -EIO (500). */
int account_session_create(Store *st, const AccountLimiter *lim, const OpCaller *c, const AccountLoginSpec *spec,
                           AccountSession *ret, OpError *err);
/* Ends the caller's session token_hash and audits "session.delete". 0. */
int account_session_delete(Store *st, const OpCaller *c, const char *token_hash, OpError *err);

/* Authentication: the user of a live session token (its hash): 0 and *ret,
 * -ENOENT when unknown or expired. Slides its last use. */
int account_session_user(Store *st, const char *token_hash, StoreUser *ret);
/* The host groups a delegated administrator manages: the count and a
 * malloc'd array in *ret, or negative. */
int account_user_scopes(Store *st, int64_t user_id, int64_t **ret);

/* ---- users ---- */

typedef struct {
        const char *name;            /* create: required */
        const char *password;        /* create: required; update: NULL keeps */
        const char *role;            /* create: NULL for self-service; update: NULL keeps */
        const json_t *scopes;        /* the request's "scopes" value as given (an array of
                                      * host-group paths is valid); NULL: none / keeps */
        const char *keep_token_hash; /* update: the session that survives a password change */
} AccountUserSpec;

/* Users (whose name contains name, NULL for all): -EPERM (403, audited)
 * unless the caller may read the system. */
int account_user_list(Store *st, const OpCaller *c, const char *name, json_t **ret, OpError *err);
/* Creates a user: -EPERM (403) unless the caller may create in the system;
 * -EINVAL (422 for a short password, an unknown role, a delegated
 * administrator without scopes or an unknown scope; 400 for a malformed
 * scope), -EEXIST (409 "name") when taken. Audits "user.create"; *ret is
 * the new user's JSON. */
int account_user_create(Store *st, const OpCaller *c, const AccountUserSpec *spec, json_t **ret, OpError *err);
/* A user: the caller itself, or anyone when it may read the system (else
 * -EPERM, 403); -ENOENT (404) when there is none. */
int account_user_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* Changes password, role and scopes. A user may change its own password
 * alone; anything else needs update rights on the system (-EPERM). A new
 * password ends every other session of that user. Audits "user.update";
 * *ret is the user as it is now. */
int account_user_update(Store *st, const OpCaller *c, int64_t id, const AccountUserSpec *spec, json_t **ret, OpError *err);
/* Deletes a user: -EPERM (403) without delete rights on the system;
 * -EEXIST (409) for the caller itself; -ENOENT (404). Audits "user.delete". */
int account_user_delete(Store *st, const OpCaller *c, int64_t id, OpError *err);
