/* auth: password hashing (argon2id), bearer tokens, login rate limiting and
 * the one policy function that decides every request. Pure where it can be:
 * the policy and the rate limiter take all their inputs as arguments. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- passwords ---- */
#define AUTH_HASH_MAX 128
/* Hashes password with argon2id (libsodium, interactive limits) into out
 * (NUL-terminated, < AUTH_HASH_MAX). Returns 0 or -ENOMEM. */
int auth_password_hash(const char *password, char out[AUTH_HASH_MAX]);
/* True when password matches hash. Constant-time with respect to the hash. */
bool auth_password_verify(const char *hash, const char *password);
/* Writes a random password of n-1 printable characters (no look-alikes) and
 * a NUL into out. n >= 17. */
void auth_password_generate(char *out, size_t n);

/* ---- tokens ---- */
#define AUTH_TOKEN_LEN 64    /* hex characters: 256 random bits */
/* Makes a new random token (hex, AUTH_TOKEN_LEN chars + NUL) and its
 * storage hash (hex SHA-256-class digest, 64 chars + NUL). */
void auth_token_new(char token[AUTH_TOKEN_LEN + 1], char hash[65]);
/* The storage hash of a presented token (BLAKE2b-256 via libsodium). */
void auth_token_hash(const char *token, char hash[65]);

/* ---- roles and policy ---- */
typedef enum {
        ROLE_ADMIN = 0,          /* everything */
        ROLE_DELEGATED_ADMIN,    /* everything inside its host-group scopes */
        ROLE_SELF_SERVICE,       /* its own VMs */
        ROLE_READ_ONLY,          /* reads everything, changes nothing */
        ROLE__COUNT
} AuthRole;
/* "administrator", "delegated-administrator", "self-service", "read-only".
 * NULL for a value out of range. */
const char *auth_role_name(AuthRole r);
/* Parses a role name; returns 0 and *ret or -EINVAL. */
int auth_role_parse(const char *s, AuthRole *ret);

typedef enum {
        ACT_READ = 0,     /* see the object */
        ACT_CREATE,       /* create an object of this kind (inside the given group) */
        ACT_UPDATE,       /* change its settings, rename, move */
        ACT_DELETE,
        ACT_OPERATE,      /* lifecycle: start/stop/kill/pause/resume, refresh, cancel a job */
        ACT__COUNT
} AuthAction;

typedef enum {
        OBJ_SYSTEM = 0,   /* users, audit log, global settings */
        OBJ_GROUP,
        OBJ_HOST,
        OBJ_VM,
        OBJ_JOB,
        OBJ_EVENT,
        OBJ__COUNT
} AuthObjectKind;

#define AUTH_MAX_DEPTH 32
typedef struct {
        int64_t user_id;
        AuthRole role;
        size_t n_scopes;
        const int64_t *scopes;   /* host-group ids a delegated admin manages (subtrees) */
} AuthSubject;

typedef struct {
        AuthObjectKind kind;
        int64_t owner_id;        /* VMs and jobs: the owner (0 when none) */
        /* The object's host group and its ancestors up to the root, any order
         * (for a group: itself and its ancestors; for a host/VM: its group's
         * chain; for a job/event: its target's). Empty when not placed. */
        size_t n_groups;
        const int64_t *groups;
        /* OBJ_GROUP only: the group's own id (it is also in groups). Needed
         * because groups has no order: a delegated administrator may not
         * UPDATE/DELETE a group unless one of its scopes is a strict ancestor,
         * and 0 here denies those two actions to it (fail closed). Leave 0 for
         * CREATE, where groups is the chain of the parent group, and for every
         * other kind (ignored). */
        int64_t self_group_id;
} AuthObject;

/* The one policy function. Returns true when who may do action on obj.
 *  - Administrator: everything.
 *  - Read-only: ACT_READ on everything except OBJ_SYSTEM (audit, users).
 *  - Delegated administrator: every action on groups, VMs, jobs and events
 *    whose group chain meets one of its scopes; but not on the scope group
 *    itself for UPDATE/DELETE (it cannot rename/remove its own root); on
 *    hosts in its scopes only READ and OPERATE (refresh, maintenance mode):
 *    adding (CREATE), removing (DELETE) and changing (UPDATE: cluster
 *    membership, host settings) a host is the administrator's, since a
 *    host's URI and pool path decide what armadad runs and writes; nothing
 *    on OBJ_SYSTEM; own jobs always readable.
 *  - Self-service: READ/OPERATE/DELETE on VMs and jobs it owns; READ on its
 *    own events (owner_id); nothing else (creating VMs comes with template
 *    grants, later).
 * Details that follow from the above:
 *  - "Meets a scope" means some id in groups equals some id in who->scopes;
 *    ids <= 0 never match, and a chain longer than AUTH_MAX_DEPTH is treated
 *    as malformed and meets nothing. Ancestors of a scope are outside it.
 *  - CREATE: obj->groups is the chain of the group the object is created in,
 *    so a delegated administrator may create groups and VMs directly inside
 *    its scope group.
 *  - A scope group is "itself" only when no other scope of the same subject
 *    is among its ancestors (nested scopes: the outer one allows it).
 *  - A move is two questions: UPDATE on the object where it is, and CREATE
 *    of its kind in the destination group. The caller asks both.
 *  - Self-service users see no groups or hosts at all (as in SCVMM), may not
 *    UPDATE their VMs (resizing would bypass the quota), and owner_id 0 is
 *    "nobody", never a match even for user_id 0. Scopes are ignored for
 *    every role but the delegated administrator.
 *  - Anything out of range (role, action, kind) or NULL is denied.
 * Pure; no I/O. */
bool auth_policy_allows(const AuthSubject *who, AuthAction action, const AuthObject *obj);
/* Whether who may do action on at least one object of kind: the policy
 * asked about the most favourable object there can be (owned by who, in a
 * group strictly inside its first scope). False means the policy refuses
 * that action on every object of the kind, so a handler may refuse before
 * it looks anything up or checks the body (and so tells nothing about
 * objects the caller may not see). Also what the API lists as a user's
 * features. Pure; no I/O. */
bool auth_policy_allows_some(const AuthSubject *who, AuthAction action, AuthObjectKind kind);

/* ---- failed-login rate limiting ---- */
/* A fixed window per key: the first failure opens a window of
 * AUTH_RATE_WINDOW_MS; once it holds AUTH_RATE_MAX_FAILURES failures the key
 * is refused until the window ends. Keys hash to a slot and probe a few
 * neighbours; when all are taken by live windows of other keys, the one
 * with the oldest window is evicted. So a flood of distinct keys can evict
 * a blocked key and give it a fresh window: the API therefore checks and
 * records two keys per login, one for the user name from that address
 * (auth_rate_key_user) and one for the address alone (auth_rate_key_addr),
 * which also stops one address spraying many names. Neither key lets one
 * address lock a user out of another address. Keys longer than 95 bytes
 * are stored as their digest. Zero-initialise the struct. */
#define AUTH_RATE_SLOTS 256
#define AUTH_RATE_MAX_FAILURES 5
#define AUTH_RATE_WINDOW_MS 60000
#define AUTH_RATE_KEY_MAX 160
typedef struct {
        char key[96];            /* an auth_rate_key_*() key or its digest */
        int64_t window_start_ms;
        unsigned failures;
        bool refusal_noted;      /* a refusal in this window was reported */
} AuthRateSlot;
typedef struct {
        AuthRateSlot slots[AUTH_RATE_SLOTS];
} AuthRateLimiter;
/* The key of a user name from an address: "u:" LENGTH ":" NAME "|" ADDRESS.
 * The length makes it unambiguous whatever the name holds, and the "u:"
 * keeps it apart from every address key. */
void auth_rate_key_user(const char *name, const char *address, char out[AUTH_RATE_KEY_MAX]);
/* The key of an address alone: "a:" ADDRESS. */
void auth_rate_key_addr(const char *address, char out[AUTH_RATE_KEY_MAX]);
/* Returns 0 when key may try to log in at now_ms, else the number of ms to
 * wait (> 0, at most AUTH_RATE_WINDOW_MS). now_ms should be monotonic
 * (mono_ms()). Not thread-safe: the caller locks. */
int64_t auth_rate_check(const AuthRateLimiter *rl, const char *key, int64_t now_ms);
/* Records a failed (ok=false) or successful (ok=true, clears) attempt. */
void auth_rate_record(AuthRateLimiter *rl, const char *key, bool ok, int64_t now_ms);
/* A login attempt's check and record in one step (call under the caller's
 * lock): when key_user or key_addr is refused, returns the wait (> 0),
 * records nothing, and sets *ret_first_refusal when this is the first
 * refusal of the refusing key's window (so the caller reports one refusal
 * per key and window, not every one of a flood); else counts the attempt
 * as a failure of both keys before the password is checked (so parallel
 * attempts cannot all pass the check) and returns 0. End every attempt that
 * got 0 with auth_rate_finish(). */
int64_t auth_rate_begin(AuthRateLimiter *rl, const char *key_user, const char *key_addr, int64_t now_ms,
                        bool *ret_first_refusal);
/* Ends an attempt begun with auth_rate_begin(): a success clears key_user
 * and takes back the failure counted on key_addr; a failure stays counted. */
void auth_rate_finish(AuthRateLimiter *rl, const char *key_user, const char *key_addr, bool ok, int64_t now_ms);
