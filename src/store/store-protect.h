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
