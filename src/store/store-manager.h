/* The manager capability's part of the store: the armadad processes that
 * share one store (table manager) and the single lease that makes one of
 * them active (table manager_lease: holder, a fencing token bumped at every
 * change of holder, expires_at). Same conventions as store.h, plus -ESTALE:
 * the caller's lease token is no longer the store's (another manager took
 * over).
 *
 * Fencing: a manager that holds the lease sets its token on the store
 * (store_fence_set()); from then on the transactions that act on hosts —
 * claiming, advancing and ending jobs, HA restart decisions — open with
 * store_fence_begin(), which checks the token in the same transaction and
 * refuses with -ESTALE when it is stale. Without a fence set (a lone
 * armadad in tests of other modules) the check passes. */
#pragma once

#include "store.h"

extern const StoreMigration store_migrations_manager[];

typedef struct {
        const char *id;           /* this process's instance id (unique per start) */
        const char *url;          /* the API URL it serves */
        int64_t pid;
        const char *hostname;
        int64_t started_at;       /* ms */
        int64_t lease_ttl_ms;
} StoreManagerSelf;

typedef struct {
        char holder[128];         /* "" when nobody ever held it */
        int64_t token;            /* 0 when never held */
        int64_t since;            /* ms: when the holder took it */
        int64_t expires;          /* ms */
} StoreLease;

/* Upserts this manager's row with role ("active", "standby", "demoted") and
 * last_seen_at = now; forgets managers not seen for an hour. 0 or -errno. */
int store_manager_heartbeat(Store *st, const StoreManagerSelf *me, const char *role, int64_t now);
/* Removes a manager's row (a clean stop). 0, -ENOENT or -errno. */
int store_manager_remove(Store *st, const char *id);
/* Every manager, oldest start first: [{id, url, pid, hostname, role,
 * lease_ttl_ms, started_at, last_seen_at}]. 0 or -errno. */
int store_manager_list_json(Store *st, json_t **ret);
/* Where manager id runs: 0 with its host name (size 256), pid and URL
 * (malloc'd), -ENOENT, or -errno. */
int store_manager_where(Store *st, const char *id, char ret_hostname[256], int64_t *ret_pid, char **ret_url);

/* Takes or renews the lease for id in one write transaction: renewed when
 * id holds it with my_token; taken (token + 1, since = now) when it is free
 * or expired at now; else left alone. 0 with *ret the lease as it is now
 * (the caller holds it when ret->holder is id), -ESTALE when my_token > 0
 * and another manager holds it now (*ret filled too), or -errno. */
int store_lease_acquire(Store *st, const char *id, int64_t my_token, int64_t ttl_ms, int64_t now, StoreLease *ret);
/* store_lease_acquire() that also takes the lease, unexpired, from
 * dead_holder (a manager known to be dead: its process is gone on this
 * machine) — but only while dead_holder still holds it. */
int store_lease_acquire_from(Store *st, const char *id, int64_t ttl_ms, int64_t now, const char *dead_holder, StoreLease *ret);
/* The lease as it is: 0, -ENOENT when nobody ever held it, or -errno. */
int store_lease_get(Store *st, StoreLease *ret);
/* Gives the lease up (expires now) when id holds it with token: the next
 * manager need not wait out the TTL. 0, -ESTALE when it does not, -errno. */
int store_lease_release(Store *st, const char *id, int64_t token);

/* ---- fencing ---- */
typedef void (*StoreStaleFn)(void *userdata);
/* Sets the fence of this process: every fenced transaction must find the
 * lease held by holder with token. token < 0: refuse every fenced
 * transaction (a manager that lost its lease); token 0 and holder NULL:
 * no fence (the check passes). stale_fn (may be NULL) is called, from the
 * refused thread and without locks held, each time a check is refused. */
void store_fence_set(Store *st, const char *holder, int64_t token, StoreStaleFn stale_fn, void *userdata);
/* Inside a transaction: 0 when the fence passes, -ESTALE (logged, the
 * stale hook called) when not, or -errno. */
int store_fence_check(Store *st);
/* store_begin() and store_fence_check(): 0 with a transaction open, or
 * -ESTALE / -errno with none (rolled back). End it with store_end(). */
int store_fence_begin(Store *st);
/* A fenced transaction of its own that writes nothing: 0 or -ESTALE/-errno.
 * For a decision made outside the store (fence a host, restart VMs). */
int store_fence_verify(Store *st);
