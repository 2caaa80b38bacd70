/* The protection capability's tables and SQL (see store-protect.h and
 * store.h for the conventions). */
#include "store-protect.h"

#include <errno.h>
#include <string.h>

const StoreMigration store_migrations_protect[] = {
        { "datastore-1",
          "CREATE TABLE datastore ("
          "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
          "  name TEXT NOT NULL UNIQUE,"
          "  path TEXT NOT NULL UNIQUE,"
          "  created_at INTEGER NOT NULL,"
          "  usage TEXT,"
          "  usage_at INTEGER);"
          "CREATE TABLE datastore_point ("
          "  datastore_id INTEGER NOT NULL REFERENCES datastore(id) ON DELETE CASCADE,"
          "  vm_uuid TEXT NOT NULL,"
          "  point_id TEXT NOT NULL,"
          "  verified_at INTEGER NOT NULL,"
          "  ok INTEGER NOT NULL,"
          "  PRIMARY KEY(datastore_id, vm_uuid, point_id));" },
        { NULL, NULL },
};

#define DATASTORE_COLS "id, name, path, created_at, usage AS usage_json, usage_at"

int store_datastore_insert(Store *st, const char *name, const char *path, int64_t *ret_id) {
        return store_insert(st, ret_id, "INSERT INTO datastore(name, path, created_at) VALUES (?, ?, ?)", "ssi", name, path,
                            now_ms());
}

int store_datastore_find(Store *st, const char *name, int64_t *ret_id) {
        return store_query_i64(st, ret_id, "SELECT id FROM datastore WHERE name = ?", "s", name);
}

int store_datastore_find_path(Store *st, const char *path, int64_t *ret_id) {
        return store_query_i64(st, ret_id, "SELECT id FROM datastore WHERE path = ?", "s", path);
}

int store_datastore_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, "SELECT " DATASTORE_COLS " FROM datastore WHERE id = ?", "i", id);
}

int store_datastore_list(Store *st, json_t **ret) {
        return store_query_json(st, ret, "SELECT " DATASTORE_COLS " FROM datastore ORDER BY name", "");
}

int store_datastore_delete(Store *st, int64_t id) {
        return store_exec_one(st, "DELETE FROM datastore WHERE id = ?", "i", id);
}

int store_datastore_set_usage(Store *st, int64_t id, const char *usage_json) {
        return store_exec_one(st, "UPDATE datastore SET usage = ?, usage_at = ? WHERE id = ?", "sii", usage_json, now_ms(),
                              id);
}

int store_datastore_point_verified(Store *st, int64_t id, const char *vm_uuid, const char *point_id, bool ok) {
        return store_exec(st,
                          "INSERT INTO datastore_point(datastore_id, vm_uuid, point_id, verified_at, ok) VALUES (?, ?, ?, ?, ?)"
                          " ON CONFLICT(datastore_id, vm_uuid, point_id) DO UPDATE SET verified_at = excluded.verified_at,"
                          " ok = excluded.ok",
                          "issib", id, vm_uuid, point_id, now_ms(), ok);
}

int store_datastore_verified_list(Store *st, int64_t id, json_t **ret) {
        return store_query_json(st, ret,
                                "SELECT vm_uuid, point_id, verified_at, ok AS ok_bool FROM datastore_point"
                                " WHERE datastore_id = ? ORDER BY vm_uuid, point_id", "i", id);
}
