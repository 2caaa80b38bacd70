/* The protect capability's tables and SQL (see store-protect.h; store.h
 * for the conventions). Migrations are named by part: "snapshot-...",
 * "datastore-...", "backup-...". */
#include "store-protect.h"

#include <errno.h>

const StoreMigration store_migrations_protect[] = {
        /* --- Snapshots --- */
        { "snapshot-count", "ALTER TABLE vm ADD COLUMN snapshots INTEGER NOT NULL DEFAULT 0;" },
        { NULL, NULL },
};

/* --- Snapshots --- */

int store_vm_snapshots_set(Store *st, int64_t vm_id, int64_t count) {
        /* Unchanged counts write nothing: no row change for the read model. */
        int r = store_exec(st, "UPDATE vm SET snapshots = ?1 WHERE id = ?2 AND snapshots IS NOT ?1", "ii", count, vm_id);
        return r < 0 ? r : 0;
}
