/* Internals shared by inventory.c (connections, reconcile) and
 * inventory-jobs.c (job handlers). Not for other modules. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include "inventory.h"
#include "hv/hv.h"

typedef struct Link {
        int64_t host_id;
        HvConn *conn;
        int refs;
        atomic_bool dead;
        pthread_mutex_t op_lock;    /* see inventory.c: serialises reconcile with job actions */
        struct Inventory *inv;
        struct Link *next;
} Link;

struct Inventory {
        Store *st;
        Jobs *jobs;
        InventoryConfig cfg;
        pthread_mutex_t lock;       /* links list, refs, stopping */
        pthread_cond_t wake;
        Link *links;
        bool stopping, started;
        pthread_t monitor;
};

/* A live link to host h, connecting when needed; the caller releases it.
 * Negative with a sentence in why when the host cannot be reached. */
int link_acquire(Inventory *inv, const StoreHost *h, Link **ret, char *why, size_t why_size);
void link_release(Inventory *inv, Link *l);
/* Drops a removed host's connection. */
void link_forget(Inventory *inv, int64_t host_id);
