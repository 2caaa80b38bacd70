/* The protect capability's tables (see store-protect.h). */
#include "store-protect.h"
#include "store-priv.h"

#include <errno.h>

#include "util/util.h"

const StoreMigration store_migrations_protect[] = {
        /* --- Backups --- */
        { "backup-1", "CREATE TABLE backup_point ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  datastore TEXT NOT NULL,"
        "  vm_uuid TEXT NOT NULL,"
        "  vm_name TEXT NOT NULL,"
        "  vm_id INTEGER REFERENCES vm(id) ON DELETE SET NULL,"
        "  owner_id INTEGER,"
        "  group_id INTEGER,"
        "  host_id INTEGER,"
        "  point_id TEXT NOT NULL,"
        "  full INTEGER NOT NULL,"
        "  consistency TEXT NOT NULL,"
        "  checkpoint TEXT,"
        "  size_bytes INTEGER NOT NULL,"
        "  bytes_read INTEGER NOT NULL,"
        "  bytes_written INTEGER NOT NULL,"
        "  duration_ms INTEGER NOT NULL,"
        "  created_at INTEGER NOT NULL,"
        "  UNIQUE(datastore, vm_uuid, point_id));"
        "CREATE INDEX backup_point_vm_idx ON backup_point(vm_uuid, datastore, point_id);" },
        { NULL, NULL },
};

int store_backup_point_add(Store *st, const StoreBackupPoint *p) {
        return store_exec(st, "INSERT INTO backup_point(datastore, vm_uuid, vm_name, vm_id, owner_id, group_id, host_id, point_id,"
                          " full, consistency, checkpoint, size_bytes, bytes_read, bytes_written, duration_ms, created_at)"
                          " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                          " ON CONFLICT(datastore, vm_uuid, point_id) DO UPDATE SET vm_name = excluded.vm_name,"
                          " vm_id = excluded.vm_id, full = excluded.full, consistency = excluded.consistency,"
                          " checkpoint = excluded.checkpoint, size_bytes = excluded.size_bytes",
                          "sssiiiisbssiiiii", p->datastore, p->vm_uuid, p->vm_name, p->vm_id ? p->vm_id : 0,
                          p->owner_id, p->group_id, p->host_id, p->point_id, (int) p->full, p->consistency, p->checkpoint,
                          (int64_t) p->size_bytes, (int64_t) p->bytes_read, (int64_t) p->bytes_written, p->duration_ms,
                          now_ms()) < 0
                       ? -EIO
                       : 0;
}

int store_backup_point_remove(Store *st, const char *datastore, const char *vm_uuid, const char *point_id) {
        return store_exec_one(st, "DELETE FROM backup_point WHERE datastore = ? AND vm_uuid = ? AND point_id = ?", "sss",
                              datastore, vm_uuid, point_id);
}

#define POINT_COLUMNS                                                                                                   \
        "SELECT id, datastore, vm_uuid, vm_name, vm_id, owner_id, group_id, host_id, point_id, full AS full_bool,"     \
        " consistency, checkpoint, size_bytes, bytes_read, bytes_written, duration_ms, created_at FROM backup_point "

int store_backup_point_list(Store *st, const char *vm_uuid, const char *datastore, json_t **ret) {
        return store_query_json(st, ret, POINT_COLUMNS "WHERE (?1 IS NULL OR vm_uuid = ?1) AND (?2 IS NULL OR datastore = ?2)"
                                " ORDER BY point_id DESC, id DESC", "ss", vm_uuid, datastore);
}

int store_backup_point_get(Store *st, const char *datastore, const char *vm_uuid, const char *point_id, json_t **ret) {
        return store_query_one(st, ret, POINT_COLUMNS "WHERE datastore = ? AND vm_uuid = ? AND point_id = ?", "sss", datastore,
                               vm_uuid, point_id);
}

int store_backup_point_last(Store *st, const char *vm_uuid, const char *datastore, json_t **ret) {
        return store_query_one(st, ret, POINT_COLUMNS "WHERE vm_uuid = ? AND datastore = ? ORDER BY point_id DESC LIMIT 1", "ss",
                               vm_uuid, datastore);
}

int store_backup_oldest_running(Store *st, int64_t *ret_ms) {
        int64_t v = 0;
        int r = store_query_i64(st, &v, "SELECT min(started_at) FROM job WHERE kind = 'vm.backup' AND state = 'running'"
                                " HAVING min(started_at) IS NOT NULL", "");
        if (r < 0)
                return r;
        *ret_ms = v;
        return 0;
}
