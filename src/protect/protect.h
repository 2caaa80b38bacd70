/* protect: the protection capability — snapshots of VMs, backup
 * datastores, backups and restores. Its operations take an OpCaller and
 * fill an OpError like every capability's (op/op.h); long work runs as
 * jobs (jobs.h). Each part of the module keeps its own section below. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "inventory/inventory.h"
#include "jobs/jobs.h"
#include "op/op.h"
#include "store/store.h"

/* --- Snapshots --- */

/* Snapshots are libvirt's internal qcow2 snapshots (hv/hv-snapshot.h): a
 * running VM's snapshot carries its memory, a stopped VM's its disks only.
 * Names: 1 to PROTECT_SNAPSHOT_NAME_MAX characters, letters, digits, '.',
 * '_' and '-', beginning with a letter or a digit (they are a URL path
 * segment). */
#define PROTECT_SNAPSHOT_NAME_MAX 63
#define PROTECT_SNAPSHOT_DESCRIPTION_MAX 1000

/* Whether name is a valid snapshot name: 0, or -EINVAL and in why (may be
 * NULL) a sentence naming the rule it breaks. Pure. */
int protect_snapshot_name_check(const char *name, char *why, size_t why_size);
/* The name of a snapshot taken at t without one: "snap-YYYYMMDD-HHMMSS"
 * (UTC). Pure. */
void protect_snapshot_default_name(int64_t t, char out[32]);

/* Registers the jobs vm.snapshot-create, vm.snapshot-revert and
 * vm.snapshot-delete (they reach hosts through inv). */
void protect_snapshot_register_jobs(Jobs *jobs, Inventory *inv);

/* The snapshots of VM vm_id, read from its host now (never connects: 503
 * when the host is not connected, 502 when it fails to answer), for a
 * caller who may read the VM (else 404). *ret: {"vm_id", "current": name
 * or null, "snapshots": [{name, parent (null for a root), created_at,
 * state (the VM's when taken), has_memory, current, description,
 * size_bytes (null: internal snapshots share their image)}], oldest first}.
 * Brings the VM's "snapshots" count up to date. Gives the host's libvirt
 * back, from Armada's copy of their XML, the snapshots it lacks (after a
 * failover, a migration whose redefine failed; parents first): event
 * "vm.snapshots-restored", or "vm.snapshot-lost" (the copy dropped) for one
 * libvirt refuses; create, revert and delete check through the same path. */
int protect_snapshot_list(Store *st, Inventory *inv, const OpCaller *c, int64_t vm_id, json_t **ret, OpError *err);

typedef struct {
        const char *name;            /* NULL: protect_snapshot_default_name(now) */
        const char *description;     /* may be NULL */
        int memory;                  /* 1 with memory, 0 disks only, -1 as the VM's state allows */
} ProtectSnapshotSpec;
/* Takes a snapshot of VM vm_id as a job. Checks, in order: the name (400
 * "name"), the VM (404), the caller's right to operate it and, for a
 * self-service user's VM deployed under a grant, the grant's "snapshot"
 * action (403, audited), a foreign VM, a VM being created or deleted or not
 * placed (409), the memory asked for against the VM's state (409 "memory":
 * a stopped VM has none, a running VM's internal snapshot always carries
 * it), its host connected (503), every writable disk qcow2 (409 "disks"
 * naming the disk), the name free (409 "name"). Audits "vm.snapshot-create"
 * (accepted). *ret: {"job", "snapshot": {"name", "has_memory"}}. */
int protect_snapshot_create(Store *st, Inventory *inv, const OpCaller *c, int64_t vm_id, const ProtectSnapshotSpec *spec,
                            json_t **ret, OpError *err);
/* Reverts VM vm_id to snapshot name as a job: with memory the VM runs from
 * that moment; without, the VM is left shut off with the disks of then
 * (what Proxmox's rollback and Hyper-V's apply do). The job first deletes
 * the VM's checkpoints (QEMU cannot revert disks with dirty bitmaps; event
 * "vm.backup-chain-broken": the next backup is a full one). Checks as
 * create's (404 "name" for an unknown snapshot). Audits "vm.snapshot-revert".
 * *ret: {"job"}. */
int protect_snapshot_revert(Store *st, Inventory *inv, const OpCaller *c, int64_t vm_id, const char *name, json_t **ret,
                            OpError *err);
/* Deletes snapshot name of VM vm_id as a job (its children move to its
 * parent; the VM's current state is untouched). Checks as revert's.
 * Audits "vm.snapshot-delete". *ret: {"job"}. */
int protect_snapshot_delete(Store *st, Inventory *inv, const OpCaller *c, int64_t vm_id, const char *name, json_t **ret,
                            OpError *err);
