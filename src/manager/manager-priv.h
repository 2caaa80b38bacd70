/* manager's own state, for its files and unit tests only. */
#pragma once
#ifndef MANAGER_PRIV_ALLOW
#error "for manager's own files only"
#endif

#include <pthread.h>
#include "manager.h"
#include "store/store-manager.h"

struct Manager {
        Store *st;
        ManagerConfig cfg;
        char *url, *db, *id, *hostname;
        StoreManagerSelf self;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        pthread_t thread;
        bool running;
        bool stopping;
        bool active;              /* holds the lease and runs the runners */
        bool stale;               /* a fenced write was refused: demote now */
        bool spent;               /* demoted once: runners cannot start again here */
        bool respawn_asked;
        int64_t token;            /* while active */
        int64_t lease_expires;    /* ms, wall clock, as last renewed */
        char *active_url;         /* the active manager's URL as last seen; NULL when none */
};

/* One renewal period's work (the thread's body, for tests): renew, take
 * over, or demote. now in ms. */
void manager_tick(Manager *m, int64_t now);
