/* manager: which armadad is the active manager. Several armadad processes
 * may share one store (two on one SQLite file on one machine, or on
 * different machines on one PostgreSQL); exactly one holds the store's
 * lease (store-manager.h) and runs what acts on hosts: host connections,
 * job workers, HA watching, monitors, schedulers. The others are standbys:
 * they answer the API read-only and take the lease over when the active
 * one stops renewing it (within the lease TTL plus one renewal period).
 *
 * A manager thread renews the lease every TTL/3. On promotion it sets the
 * store's fence to its new token and calls promote() — armadad starts its
 * runners exactly as at a start after a crash (jobs left running are
 * resumed or failed). A renewal the store refuses (another manager took
 * over while this one was frozen or cut off), a lease it could not renew
 * before it expired, or a fenced write refused as stale demotes it at once:
 * the fence refuses every further host-changing step, demote() stops the
 * runners and drops host connections, and it serves as a standby. Modules
 * do not start twice in one process, so a demoted manager that could take
 * the lease again asks to be started afresh (respawn()).
 *
 * Layering: manager builds on op, store and util. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "op/op.h"
#include "store/store.h"

typedef struct Manager Manager;

typedef struct {
        int64_t lease_ttl_ms;      /* default 6000; renewal every third */
        const char *url;           /* the API URL this armadad serves (clients are sent there) */
        const char *db;            /* the store as given (--db): shown masked by manager_status() */
        /* Called from the manager thread. promote: start the runners; a
         * negative return gives the lease back and the manager stays standby. */
        int (*promote)(void *userdata);
        /* stop the runners (bounded: a stuck host call is left behind) */
        void (*demote)(void *userdata);
        /* while standby, every renewal period: bring the read model up to
         * date (may be NULL) */
        void (*standby_tick)(void *userdata);
        /* a demoted manager could take the lease again: start this armadad
         * afresh (may be NULL: it then stays standby) */
        void (*respawn)(void *userdata);
        void *userdata;
} ManagerConfig;

/* Creates the manager of this process (not started). 0 and *ret, or -errno. */
int manager_new(Store *st, const ManagerConfig *cfg, Manager **ret);
/* Registers this manager, makes one attempt at the lease (promoting on
 * success, before it returns) and starts the renewal thread. That first
 * attempt also takes an unexpired lease whose holder's process is gone on
 * this machine (an armadad restarted after a crash need not wait out its
 * own old lease). 0 or -errno. */
int manager_start(Manager *m);
/* Stops the thread; gives the lease back when held (the next manager takes
 * over at once) and removes this manager's row. The caller stops the
 * runners itself. Idempotent. */
void manager_stop(Manager *m);
Manager *manager_free(Manager *m);

/* Whether this process holds the lease (runs what acts on hosts). */
bool manager_is_active(Manager *m);
/* The URL of the active manager as last seen: 0 and a malloc'd string in
 * *ret, -ENOENT when no manager is active now (a takeover in progress). */
int manager_active_url(Manager *m, char **ret);
/* The operation of GET /managers: {managers: [{id, url, hostname, pid,
 * role, active, this, started_at, last_seen_at, active_since}], lease:
 * {holder, token, since_at, expires_at}, store: {engine, url}}. Any
 * authenticated caller; store.url (its password masked) only for callers
 * who may change the system (administrators). 0 and *ret, or -errno with
 * err (a database error is a 5xx). */
int manager_status(Manager *m, const OpCaller *c, json_t **ret, OpError *err);

