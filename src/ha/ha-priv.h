/* Internals shared by ha.c (failover) and ha-jobs.c (migration and
 * maintenance jobs). Not for other modules. */
#pragma once

#ifndef HA_PRIV_ALLOW
#error "ha-priv.h is private to ha's own files (their meson target defines HA_PRIV_ALLOW); use the module's public header"
#endif

#include <pthread.h>
#include <stdatomic.h>

#include "ha.h"
#include "hv/hv-migrate.h"
#include "inventory/inventory.h"

struct Ha {
        Store *st;
        Jobs *jobs;
        Inventory *inv;
        HaConfig cfg;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        bool stopping, started;
        pthread_t thread;
        /* VMs a restart is under way for (under lock): a failover worker
         * and the retry of waiting VMs never start the same VM twice. */
        int64_t *restarting;
        size_t n_restarting, cap_restarting;
        /* The retry of waiting VMs, run off the watch thread. */
        pthread_t pending_thread;
        bool pending_running;
        atomic_bool pending_done;
        StoreHaRef *pending_refs;   /* the list the retry works on, read once by the watch */
        int n_pending_refs;
};

/* Records an event about a VM or a host (message formatted). */
void ha_event(Store *st, const char *severity, const char *kind, const char *object_kind, int64_t object_id,
              const char *object_name, int64_t owner_id, const char *fmt, ...) _printf_(8, 9);

/* Saves the VM's current definition (for restarts elsewhere) through a
 * live link to its host. Failures are only logged. */
void ha_save_definition(Ha *ha, InventoryLink *l, const StoreVm *vm);

/* Why a VM with snapshots cannot migrate with its storage (printf format:
 * the VM's name, the count as long long, "s" or ""): its internal
 * snapshots live inside the qcow2 images, and the storage copy (QEMU's
 * drive mirror) carries only the disks' current data. */
#define SNAPSHOTS_NOT_COPIED                                                                                            \
        "VM '%s' has %lld snapshot%s inside its disk images, which a migration with its storage does not copy; migrate" \
        " it on its cluster's shared storage, or delete the snapshots first."
