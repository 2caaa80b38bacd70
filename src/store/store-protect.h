/* The protect capability's part of the store (snapshots, datastores,
 * backups). Same conventions as store.h: 0 or a count on success, -ENOENT,
 * -EEXIST, -EIO. Each part of protect keeps its own section. */
#pragma once

#include "store.h"

extern const StoreMigration store_migrations_protect[];

/* --- Snapshots --- */
/* How many snapshots VM vm_id has, as the last snapshot job or list saw on
 * its host (libvirt is the truth; this is the VM JSON's "snapshots" count,
 * so that the VM lists read it from the read model). -ENOENT for no VM. */
int store_vm_snapshots_set(Store *st, int64_t vm_id, int64_t count);

/* Armada's copy of each snapshot's libvirt XML (secure fields included), so
 * that a host whose libvirt lacks the metadata (after a failover, a failed
 * migration) can be given it back. Rows go with their VM. */
/* VM vm_id's copies, parents before children: 0 and a JSON array of
 * {name, xml, current}, or negative. */
int store_snapshot_list(Store *st, int64_t vm_id, json_t **ret);
/* Inserts or updates the copy of snapshot name of VM vm_id. */
int store_snapshot_put(Store *st, int64_t vm_id, const char *name, int64_t created, bool current, const char *xml);
/* Deletes the copy of snapshot name of VM vm_id (none is no error). */
int store_snapshot_drop(Store *st, int64_t vm_id, const char *name);
