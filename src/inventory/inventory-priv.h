/* Internals shared by inventory.c (connections, reconcile) and
 * inventory-jobs.c (job handlers). Not for other modules. */
#pragma once

#ifndef INVENTORY_PRIV_ALLOW
#error "inventory-priv.h is private to the inventory's own files (their meson target defines INVENTORY_PRIV_ALLOW); use the module's public header"
#endif

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
        pthread_mutex_t storage_lock; /* inventory-storage.c: a refresh's listing and recording of the
                                       * host's pools against a pool added or removed meanwhile */
        /* refresh_host(): the domain-event count and the time of the last
         * full refresh (pool, facts, domains), and whether the pool is ready */
        _Atomic uint64_t events_seen;
        _Atomic int64_t full_at_ms;
        /* the last time the host answered its facts call (host_is_quiet()) */
        _Atomic int64_t facts_at_ms;
        struct Inventory *inv;
        struct Link *next;
} Link;

#define INVENTORY_REFRESHERS 8
#define INVENTORY_LINK_BUCKETS 1024

/* The list of links where host_id's would be (caller holds inv->lock). */
#define INVENTORY_LINKS_OF(inv, host_id) (&(inv)->links[(uint64_t) (host_id) % INVENTORY_LINK_BUCKETS])

struct Inventory {
        Store *st;
        Jobs *jobs;
        InventoryConfig cfg;
        pthread_mutex_t lock;       /* links list, refs, stopping */
        pthread_cond_t wake;
        /* The live links, by host id (a list per bucket): every call to a
         * host finds its link here, so no walk over a thousand hosts. */
        Link *links[INVENTORY_LINK_BUCKETS];
        bool stopping, started;
        pthread_t monitor;
        /* The monitor hands each round's hosts to a pool of refreshers, so a
         * host that hangs (a TCP connect to a dead address can take minutes)
         * holds up only itself: it is skipped while its refresh is in flight. */
        pthread_cond_t work;
        pthread_t refreshers[INVENTORY_REFRESHERS];
        unsigned n_refreshers;
        int64_t *queue;             /* this round's hosts; q_pos is the next one */
        size_t q_len, q_pos;
        int64_t inflight[INVENTORY_REFRESHERS];
        bool stuck;                 /* a refresher did not end at shutdown: never free */
        _Atomic uint64_t facts_calls, quiet_skips;  /* inventory_refresh_stats() */
        InventoryHostStateFn on_host_state;  /* set before start, read-only after */
        void *on_host_state_data;
        char installation_id[37];   /* this installation's id: the marker of its domains */
        /* per-host throttles (inventory-throttle.c) */
        pthread_mutex_t throttle_lock;
        pthread_cond_t throttle_cond;
        struct ThrottleGate *gates;
};

typedef struct ThrottleGate ThrottleGate;
/* Sets the throttles up (and the defaults of their settings in inv->cfg);
 * throttle_free() tears them down. */
void throttle_init(Inventory *inv);
void throttle_free(Inventory *inv);
/* How many wait for a slot of kind on host_id (for tests). */
int throttle_waiting(Inventory *inv, int64_t host_id, InventorySlot kind);

/* A live link to host h, connecting when needed; the caller releases it.
 * Negative with a sentence in why when the host cannot be reached; -EPERM
 * when its URI does not pass hv_uri_check() (a row from an older database,
 * or written behind the API's back): such a URI is never opened. why never
 * quotes libvirt's parse context (it can hold file contents); that goes to
 * the log. */
int link_acquire(Inventory *inv, const StoreHost *h, Link **ret, char *why, size_t why_size);
void link_release(Inventory *inv, Link *l);
/* The host's live link with a reference, or NULL when there is none right
 * now. Never connects, so it never blocks (for HTTP threads). */
Link *link_peek(Inventory *inv, int64_t host_id);
/* Drops a removed host's connection. */
void link_forget(Inventory *inv, int64_t host_id);

/* ---- networks and storage (inventory-network.c, inventory-storage.c) ---- */
/* Sets up, on host h through l, every network that should stand on it and
 * records each answer (a full refresh calls it). */
void network_sync_host(Inventory *inv, Link *l, const StoreHost *h);
/* Records the storage pools of host h as l reports them (a full refresh). */
void storage_sync_host(Inventory *inv, Link *l, const StoreHost *h);
/* The NIC a blank VM vm_id on host h gets (vm.create): on the default
 * network of h's group (or of the nearest ancestor group that names one),
 * else on the host's libvirt network "default" when it has one. 0 with the
 * network's name and a fresh MAC (recorded as the VM's NIC), or -ENOENT
 * when there is no default network (no NIC then), or negative. */
int network_default_nic(Inventory *inv, Link *l, const StoreHost *h, int64_t vm_id, char ret_network[64], char ret_mac[18]);
/* Registers the job kinds of networks and NICs. */
void network_register_jobs(Inventory *inv);
