/* The protect capability's tables and SQL (see store-protect.h; store.h
 * for the conventions). Migrations are named by part: "snapshot-...",
 * "datastore-...", "backup-...". */
#include "store-protect.h"

#include <errno.h>

const StoreMigration store_migrations_protect[] = {
        /* --- Snapshots --- */
        { "snapshot-count", "ALTER TABLE vm ADD COLUMN snapshots INTEGER NOT NULL DEFAULT 0;" },
        { "snapshot-xml",
          "CREATE TABLE vm_snapshot ("
          "  vm_id INTEGER NOT NULL REFERENCES vm(id) ON DELETE CASCADE,"
          "  name TEXT NOT NULL,"
          "  created INTEGER NOT NULL DEFAULT 0,"
          "  current INTEGER NOT NULL DEFAULT 0,"
          "  xml TEXT NOT NULL,"
          "  PRIMARY KEY (vm_id, name));" },
        { NULL, NULL },
};

/* --- Snapshots --- */

int store_vm_snapshots_set(Store *st, int64_t vm_id, int64_t count) {
        /* Unchanged counts write nothing: no row change for the read model. */
        int r = store_exec(st, "UPDATE vm SET snapshots = ?1 WHERE id = ?2 AND snapshots IS NOT ?1", "ii", count, vm_id);
        return r < 0 ? r : 0;
}

int store_snapshot_list(Store *st, int64_t vm_id, json_t **ret) {
        /* Parents were taken before their children (and written first). */
        return store_query_json(st, ret, "SELECT name, xml, current AS current_bool FROM vm_snapshot WHERE vm_id = ?1"
                                " ORDER BY created, rowid", "i", vm_id);
}

int store_snapshot_put(Store *st, int64_t vm_id, const char *name, int64_t created, bool current, const char *xml) {
        int r = store_exec(st, "INSERT INTO vm_snapshot (vm_id, name, created, current, xml) VALUES (?1, ?2, ?3, ?4, ?5)"
                           " ON CONFLICT (vm_id, name) DO UPDATE SET created = ?3, current = ?4, xml = ?5"
                           " WHERE created IS NOT ?3 OR current IS NOT ?4 OR xml IS NOT ?5",
                           "isibs", vm_id, name, created, current, xml);
        return r < 0 ? r : 0;
}

int store_snapshot_drop(Store *st, int64_t vm_id, const char *name) {
        int r = store_exec(st, "DELETE FROM vm_snapshot WHERE vm_id = ?1 AND name = ?2", "is", vm_id, name);
        return r < 0 ? r : 0;
}
