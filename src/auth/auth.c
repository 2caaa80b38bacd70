/* Implementation of auth.h: argon2id password hashes and bearer tokens over
 * libsodium, the role names, the policy function every request goes through,
 * and the failed-login rate limiter. The policy and the limiter are pure: all
 * their inputs, time included, come in as arguments. */
#include "auth.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "util/util.h"

_Static_assert(AUTH_HASH_MAX >= crypto_pwhash_STRBYTES, "AUTH_HASH_MAX cannot hold a libsodium hash string");
_Static_assert(AUTH_TOKEN_LEN == 2 * 32, "a token is 32 random bytes in hex");

/* ---- libsodium ---- */

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_init_once(void) {
        /* Fails only when the system has no usable randomness; handing out
         * predictable tokens would be worse than stopping. */
        if (sodium_init() < 0)
                abort();
}

static void ensure_sodium(void) {
        pthread_once(&sodium_once, sodium_init_once);
}

/* ---- passwords ---- */

int auth_password_hash(const char *password, char out[AUTH_HASH_MAX]) {
        assert(password);
        assert(out);
        ensure_sodium();
        /* Name the algorithm rather than rely on crypto_pwhash_str()'s default,
         * which a libsodium upgrade may change. */
        if (crypto_pwhash_str_alg(out, password, strlen(password),
                                  crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                  crypto_pwhash_MEMLIMIT_INTERACTIVE,
                                  crypto_pwhash_ALG_ARGON2ID13) != 0)
                return -ENOMEM; /* the only way it fails: the memory limit could not be allocated */
        return 0;
}

bool auth_password_verify(const char *hash, const char *password) {
        if (!hash || !password)
                return false;
        /* libsodium reads up to crypto_pwhash_STRBYTES: refuse anything that
         * is not a NUL-terminated string within that size. */
        if (strnlen(hash, crypto_pwhash_STRBYTES) >= crypto_pwhash_STRBYTES)
                return false;
        ensure_sodium();
        return crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
}

/* Letters and digits without the look-alikes 0/O, 1/l/I: 57 symbols, about
 * 5.8 bits each, so the shortest allowed password (16) carries ~93 bits. */
static const char password_alphabet[] =
        "ABCDEFGHJKLMNPQRSTUVWXYZ"
        "abcdefghijkmnopqrstuvwxyz"
        "23456789";

void auth_password_generate(char *out, size_t n) {
        assert(out);
        assert(n >= 17);
        if (n == 0)
                return;
        ensure_sodium();
        for (size_t i = 0; i + 1 < n; i++)
                out[i] = password_alphabet[randombytes_uniform(sizeof password_alphabet - 1)];
        out[n - 1] = 0;
}

/* ---- tokens ---- */

void auth_token_hash(const char *token, char hash[65]) {
        assert(token);
        assert(hash);
        unsigned char digest[32];
        ensure_sodium();
        crypto_generichash(digest, sizeof digest, (const unsigned char *) token, strlen(token), NULL, 0);
        hex_encode(digest, sizeof digest, hash);
}

void auth_token_new(char token[AUTH_TOKEN_LEN + 1], char hash[65]) {
        assert(token);
        assert(hash);
        unsigned char raw[AUTH_TOKEN_LEN / 2];
        ensure_sodium();
        randombytes_buf(raw, sizeof raw);
        hex_encode(raw, sizeof raw, token);
        sodium_memzero(raw, sizeof raw);
        auth_token_hash(token, hash);
}

/* ---- roles ---- */

static const char *const role_names[ROLE__COUNT] = {
        [ROLE_ADMIN] = "administrator",
        [ROLE_DELEGATED_ADMIN] = "delegated-administrator",
        [ROLE_SELF_SERVICE] = "self-service",
        [ROLE_READ_ONLY] = "read-only",
};

const char *auth_role_name(AuthRole r) {
        if ((unsigned) r >= ROLE__COUNT)
                return NULL;
        return role_names[r];
}

int auth_role_parse(const char *s, AuthRole *ret) {
        if (!s)
                return -EINVAL;
        for (unsigned i = 0; i < ROLE__COUNT; i++)
                if (streq(s, role_names[i])) {
                        *ret = (AuthRole) i;
                        return 0;
                }
        return -EINVAL;
}

/* ---- policy ---- */

static bool id_in(int64_t id, const int64_t *ids, size_t n) {
        if (id <= 0 || !ids)
                return false;
        for (size_t i = 0; i < n; i++)
                if (ids[i] == id)
                        return true;
        return false;
}

/* True when one of who's scopes appears in obj's group chain, leaving out
 * the id skip (0: leave out nothing). */
static bool chain_meets_scope(const AuthSubject *who, const AuthObject *obj, int64_t skip) {
        if (!obj->groups || obj->n_groups > AUTH_MAX_DEPTH)
                return false;
        for (size_t i = 0; i < obj->n_groups; i++) {
                int64_t g = obj->groups[i];
                if (skip > 0 && g == skip)
                        continue;
                if (id_in(g, who->scopes, who->n_scopes))
                        return true;
        }
        return false;
}

static bool owns(const AuthSubject *who, const AuthObject *obj) {
        return obj->owner_id > 0 && obj->owner_id == who->user_id;
}

static bool delegated_allows(const AuthSubject *who, AuthAction action, const AuthObject *obj) {
        switch (obj->kind) {
        case OBJ_SYSTEM:
                return false;
        case OBJ_GROUP:
                if (action == ACT_UPDATE || action == ACT_DELETE) {
                        /* Its own root is off limits: some scope must be a
                         * strict ancestor. Without the group's id we cannot
                         * tell, so we refuse. */
                        if (obj->self_group_id <= 0)
                                return false;
                        return chain_meets_scope(who, obj, obj->self_group_id);
                }
                return chain_meets_scope(who, obj, 0);
        case OBJ_JOB:
                if (action == ACT_READ && owns(who, obj))
                        return true;
                return chain_meets_scope(who, obj, 0);
        case OBJ_HOST:
                /* A host's URI and pool path choose what armadad connects
                 * to, runs and writes as itself: adding, removing and
                 * changing hosts is the administrator's. */
                if (action != ACT_READ && action != ACT_OPERATE)
                        return false;
                return chain_meets_scope(who, obj, 0);
        case OBJ_VM:
        case OBJ_EVENT:
                return chain_meets_scope(who, obj, 0);
        default:
                return false;
        }
}

static bool self_service_allows(const AuthSubject *who, AuthAction action, const AuthObject *obj) {
        if (!owns(who, obj))
                return false;
        switch (obj->kind) {
        case OBJ_VM:
        case OBJ_JOB:
                return action == ACT_READ || action == ACT_OPERATE || action == ACT_DELETE;
        case OBJ_EVENT:
                return action == ACT_READ;
        default:
                return false;
        }
}

bool auth_policy_allows(const AuthSubject *who, AuthAction action, const AuthObject *obj) {
        if (!who || !obj)
                return false;
        if ((unsigned) action >= ACT__COUNT || (unsigned) obj->kind >= OBJ__COUNT)
                return false;
        switch (who->role) {
        case ROLE_ADMIN:
                return true;
        case ROLE_READ_ONLY:
                return action == ACT_READ && obj->kind != OBJ_SYSTEM;
        case ROLE_DELEGATED_ADMIN:
                return delegated_allows(who, action, obj);
        case ROLE_SELF_SERVICE:
                return self_service_allows(who, action, obj);
        default:
                return false;
        }
}

bool auth_policy_allows_some(const AuthSubject *who, AuthAction action, AuthObjectKind kind) {
        if (!who)
                return false;
        /* A child of the first scope, owned by who: inside the scope for
         * every kind, and not the scope root itself (which a delegated
         * administrator may not rename or remove). INT64_MAX stands for that
         * child; it is never the id of a scope. */
        int64_t chain[2] = { who->n_scopes > 0 && who->scopes ? who->scopes[0] : 0, INT64_MAX };
        AuthObject o = {
                .kind = kind, .owner_id = who->user_id, .n_groups = 2, .groups = chain,
                .self_group_id = kind == OBJ_GROUP && action != ACT_CREATE ? INT64_MAX : 0,
        };
        return auth_policy_allows(who, action, &o);
}

/* ---- failed-login rate limiting ---- */

#define RATE_PROBES 8

typedef char RateKey[sizeof(((AuthRateSlot *) NULL)->key)];

/* Brings key into the form stored in a slot: itself when it fits, else "~"
 * and its digest, so two long keys never share a prefix-truncated slot. The
 * empty key becomes "~" because an empty slot key marks a free slot. */
static void rate_key_normalise(const char *key, RateKey out) {
        size_t n = key ? strlen(key) : 0;
        if (n == 0) {
                strcpy(out, "~");
        } else if (n < sizeof(RateKey)) {
                memcpy(out, key, n + 1);
        } else {
                unsigned char digest[32];
                ensure_sodium();
                crypto_generichash(digest, sizeof digest, (const unsigned char *) key, n, NULL, 0);
                out[0] = '~';
                hex_encode(digest, sizeof digest, out + 1);
        }
}

static size_t rate_home(const RateKey key) {
        /* FNV-1a: spreading is all that matters here. */
        uint64_t h = 14695981039346656037ULL;
        for (const unsigned char *p = (const unsigned char *) key; *p; p++) {
                h ^= *p;
                h *= 1099511628211ULL;
        }
        return (size_t) (h % AUTH_RATE_SLOTS);
}

static bool rate_window_live(const AuthRateSlot *s, int64_t now_ms) {
        return s->key[0] && now_ms - s->window_start_ms < AUTH_RATE_WINDOW_MS;
}

static const AuthRateSlot *rate_find(const AuthRateLimiter *rl, const RateKey key) {
        size_t home = rate_home(key);
        for (size_t i = 0; i < RATE_PROBES; i++) {
                const AuthRateSlot *s = &rl->slots[(home + i) % AUTH_RATE_SLOTS];
                if (streq(s->key, key))
                        return s;
        }
        return NULL;
}

int64_t auth_rate_check(const AuthRateLimiter *rl, const char *key, int64_t now_ms) {
        assert(rl);
        RateKey k;
        rate_key_normalise(key, k);
        const AuthRateSlot *s = rate_find(rl, k);
        if (!s || s->failures < AUTH_RATE_MAX_FAILURES)
                return 0;
        int64_t elapsed = now_ms - s->window_start_ms;
        if (elapsed < 0)
                elapsed = 0; /* a clock that stepped back: keep the wait bounded */
        if (elapsed >= AUTH_RATE_WINDOW_MS)
                return 0;
        return AUTH_RATE_WINDOW_MS - elapsed;
}

void auth_rate_record(AuthRateLimiter *rl, const char *key, bool ok, int64_t now_ms) {
        assert(rl);
        RateKey k;
        rate_key_normalise(key, k);
        AuthRateSlot *s = (AuthRateSlot *) rate_find(rl, k);
        if (ok) {
                if (s)
                        *s = (AuthRateSlot) {0};
                return;
        }
        if (!s) {
                /* A free or expired slot, else evict the oldest live window. */
                size_t home = rate_home(k);
                AuthRateSlot *oldest = NULL;
                for (size_t i = 0; i < RATE_PROBES; i++) {
                        AuthRateSlot *c = &rl->slots[(home + i) % AUTH_RATE_SLOTS];
                        if (!rate_window_live(c, now_ms)) {
                                s = c;
                                break;
                        }
                        if (!oldest || c->window_start_ms < oldest->window_start_ms)
                                oldest = c;
                }
                if (!s)
                        s = oldest;
                *s = (AuthRateSlot) {0};
                memcpy(s->key, k, sizeof s->key);
        }
        if (s->failures == 0 || now_ms - s->window_start_ms >= AUTH_RATE_WINDOW_MS) {
                s->window_start_ms = now_ms;
                s->failures = 0;
                s->refusal_noted = false;
        }
        if (s->failures < AUTH_RATE_MAX_FAILURES)
                s->failures++;
}

void auth_rate_key_user(const char *name, const char *address, char out[AUTH_RATE_KEY_MAX]) {
        assert(name);
        assert(address);
        /* Too long for out only when the name or address is absurd; the
         * digest of the whole key keeps such keys apart all the same. */
        char *k = xasprintf("u:%zu:%s|%s", strlen(name), name, address);
        if (strlen(k) < AUTH_RATE_KEY_MAX)
                memcpy(out, k, strlen(k) + 1);
        else
                rate_key_normalise(k, out);
        free(k);
}

void auth_rate_key_addr(const char *address, char out[AUTH_RATE_KEY_MAX]) {
        assert(address);
        char *k = xasprintf("a:%s", address);
        if (strlen(k) < AUTH_RATE_KEY_MAX)
                memcpy(out, k, strlen(k) + 1);
        else
                rate_key_normalise(k, out);
        free(k);
}

int64_t auth_rate_begin(AuthRateLimiter *rl, const char *key_user, const char *key_addr, int64_t now_ms,
                        bool *ret_first_refusal) {
        assert(rl);
        assert(ret_first_refusal);
        const char *keys[2] = { key_user, key_addr };
        int64_t wait = 0;
        bool first = false;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                int64_t w = auth_rate_check(rl, keys[i], now_ms);
                if (w <= 0)
                        continue;
                RateKey k;
                rate_key_normalise(keys[i], k);
                AuthRateSlot *s = (AuthRateSlot *) rate_find(rl, k);
                if (s && !s->refusal_noted) {
                        s->refusal_noted = true;
                        first = true;
                }
                if (w > wait)
                        wait = w;
        }
        *ret_first_refusal = first;
        if (wait > 0)
                return wait;
        auth_rate_record(rl, key_user, false, now_ms);
        auth_rate_record(rl, key_addr, false, now_ms);
        return 0;
}

void auth_rate_finish(AuthRateLimiter *rl, const char *key_user, const char *key_addr, bool ok, int64_t now_ms) {
        assert(rl);
        (void) now_ms;
        if (!ok)
                return;
        auth_rate_record(rl, key_user, true, now_ms);
        RateKey k;
        rate_key_normalise(key_addr, k);
        AuthRateSlot *s = (AuthRateSlot *) rate_find(rl, k);
        if (s && s->failures > 0)
                s->failures--;
}
