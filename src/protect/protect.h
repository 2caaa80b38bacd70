/* protect: snapshots, backup datastores, backups and restore (issue 11).
 * Each part has its section below; operations take the caller (op/op.h)
 * and fill an OpError on failure, like inventory.h's. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "inventory/inventory.h"
#include "jobs/jobs.h"
#include "op/op.h"
#include "store/store.h"

/* --- Backups --- */

/* Registers the job kinds vm.backup and vm.restore (before jobs_start()).
 * A vm.backup left running by a killed armadad is failed at the next start
 * (not resumable): its point was never committed, and the next backup of
 * the VM ends the host's stale backup job before it begins its own. */
void protect_backup_register_jobs(Jobs *jobs, Inventory *inv);

/* Queues a backup of VM vm_id into datastore (NULL: the only datastore,
 * 422 "datastore" when there are several or none). The caller must be
 * allowed to operate the VM (403, audited); a VM the caller may not read
 * is 404; a VM that is not running is 409 naming its state (a pull-mode
 * backup needs the running QEMU). The first backup of a VM into a
 * datastore is full, later ones read only what changed since the previous
 * point (see docs/architecture.md, Protection). Audits "vm.backup"
 * (accepted). *ret: {"job": ...}. */
int protect_backup_now(Store *st, Jobs *jobs, const OpCaller *c, int64_t vm_id, const char *datastore, json_t **ret, OpError *err);

typedef struct ProtectBackupListSpec {
        const char *vm;          /* a VM's name, id or UUID (of a VM gone: its UUID); NULL: all the caller may see */
        const char *datastore;   /* NULL: every datastore */
} ProtectBackupListSpec;
/* The recovery points the caller may see, newest first, as
 * store_backup_point_list() gives them: administrators and read-only users
 * see all; others the points of VMs they own(ed) or may read. An unknown
 * VM is 404 "vm". *ret: {"items": [...]}. */
int protect_backup_list(Store *st, const OpCaller *c, const ProtectBackupListSpec *spec, json_t **ret, OpError *err);

typedef struct ProtectRestoreSpec {
        const char *vm;          /* the point's VM: name, id or UUID (of a VM gone: its UUID) */
        const char *point;       /* the point id ("20261201T061500Z") or "latest" */
        const char *datastore;   /* NULL: the datastore holding the point (422 when several do) */
        const char *as_name;     /* a new VM's name, or */
        bool in_place;           /* over the point's own VM, which must be stopped (409 naming its state) */
        const char *host;        /* new VM: on this host (else placement chooses) */
} ProtectRestoreSpec;
/* Queues a restore (job vm.restore): to a new VM (its own UUID, MAC
 * addresses and disks, registered in the inventory and owned by the
 * caller), or in place. A point of a VM the caller may not read is 404,
 * exactly as one that does not exist. Audits "vm.restore" (accepted).
 * *ret: {"job": ..., "vm": ...}. */
int protect_backup_restore(Store *st, Jobs *jobs, const OpCaller *c, const ProtectRestoreSpec *spec, json_t **ret, OpError *err);

/* The start (seconds since the epoch) of the oldest backup still running,
 * or (time_t) -1 when none runs: the datastore's garbage collection keeps
 * chunks newer than that (a running backup's chunks are in no manifest
 * yet). */
time_t protect_oldest_running_backup(Store *st);
