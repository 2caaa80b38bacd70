/* The protection capability's tables and SQL (see store-protect.h and
 * store.h for the conventions). */
#include "store-protect.h"
#include "store-priv.h"

#include <errno.h>
#include <string.h>

const StoreMigration store_migrations_protect[] = {
        /* --- Snapshots --- */
        { "snapshot-count", "ALTER TABLE vm ADD COLUMN snapshots INTEGER NOT NULL DEFAULT 0;" },
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
        { "backup-2-policy", "CREATE TABLE backup_policy ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  vm_id INTEGER UNIQUE REFERENCES vm(id) ON DELETE CASCADE,"
        "  group_id INTEGER UNIQUE REFERENCES host_group(id) ON DELETE CASCADE,"
        "  datastore TEXT,"
        "  every_s INTEGER NOT NULL,"
        "  keep_last INTEGER NOT NULL DEFAULT 0, keep_hourly INTEGER NOT NULL DEFAULT 0,"
        "  keep_daily INTEGER NOT NULL DEFAULT 0, keep_weekly INTEGER NOT NULL DEFAULT 0,"
        "  keep_monthly INTEGER NOT NULL DEFAULT 0, keep_yearly INTEGER NOT NULL DEFAULT 0,"
        "  created_at INTEGER NOT NULL,"
        "  CHECK ((vm_id IS NULL) != (group_id IS NULL)));" },
        /* --- Replication --- */
        { "replicate-1", "CREATE TABLE replication ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  name TEXT NOT NULL UNIQUE,"
        "  datastore_id INTEGER NOT NULL REFERENCES datastore(id) ON DELETE CASCADE,"
        "  to_path TEXT,"
        "  to_url TEXT,"
        "  to_datastore TEXT,"
        "  token TEXT,"
        "  ca_file TEXT,"
        "  every_s INTEGER NOT NULL DEFAULT 0,"
        "  created_at INTEGER NOT NULL,"
        "  last_run_at INTEGER,"
        "  last_job_id INTEGER,"
        "  last_state TEXT,"
        "  last_result TEXT);" },
        { "snapshot-xml",
          "CREATE TABLE vm_snapshot ("
          "  vm_id INTEGER NOT NULL REFERENCES vm(id) ON DELETE CASCADE,"
          "  name TEXT NOT NULL,"
          "  created INTEGER NOT NULL DEFAULT 0,"
          "  current INTEGER NOT NULL DEFAULT 0,"
          "  xml TEXT NOT NULL,"
          "  PRIMARY KEY (vm_id, name));" },
        /* A datastore removed takes its points' index rows along (the
         * directory keeps the points; adding it again adopts them). */
        { "backup-3-datastore-gone",
          "DELETE FROM backup_point WHERE datastore NOT IN (SELECT name FROM datastore);"
          "CREATE TRIGGER backup_point_datastore_gone AFTER DELETE ON datastore BEGIN"
          "  DELETE FROM backup_point WHERE datastore = OLD.name;"
          " END;" },
        /* The datastore's chunk size as its marker says (the marker is the
         * truth; this copy is what the API lists). 4 MiB was the only size. */
        { "datastore-2-chunk-size", "ALTER TABLE datastore ADD COLUMN chunk_size INTEGER NOT NULL DEFAULT 4194304;" },
        /* A stopped VM's QEMU started paused for an offline backup, recorded
         * before the start and cleared once it is shut off again: what a
         * killed armadad left running is found from here, never guessed. */
        { "backup-4-offline", "CREATE TABLE backup_offline ("
          "  vm_id INTEGER PRIMARY KEY REFERENCES vm(id) ON DELETE CASCADE,"
          "  host_id INTEGER NOT NULL,"
          "  vm_uuid TEXT NOT NULL,"
          "  job_id INTEGER,"
          "  started_at INTEGER NOT NULL);" },
        /* The policy scan (protect-policy.c) at 20,000 VMs: a VM's pending
         * backup job is one index probe, and the newest point of every VM is
         * kept in memory from the rows added since the last round (by id)
         * plus a full reload only when points were deleted (the counter). */
        { "backup-5-scan",
          "CREATE INDEX job_kind_target_idx ON job(kind, target_id, created_at);"
          "CREATE TABLE backup_point_gen (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);"
          "INSERT INTO backup_point_gen(id, n) VALUES (1, 0);"
          "CREATE TRIGGER backup_point_deleted AFTER DELETE ON backup_point BEGIN"
          "  UPDATE backup_point_gen SET n = n + 1 WHERE id = 1;"
          " END;" },
        { NULL, NULL },
};

#define DATASTORE_COLS                                                                                                  \
        "id, name, path, chunk_size, created_at, usage AS usage_json, usage_at,"                                                \
        " (SELECT max(verified_at) FROM datastore_point WHERE datastore_id = datastore.id) AS verified_at,"            \
        " (SELECT count(*) FROM datastore_point WHERE datastore_id = datastore.id AND ok = 0) AS verify_bad_points"

int store_datastore_insert(Store *st, const char *name, const char *path, uint32_t chunk_size, int64_t *ret_id) {
        return store_insert(st, ret_id, "INSERT INTO datastore(name, path, chunk_size, created_at) VALUES (?, ?, ?, ?)", "ssii",
                            name, path, (int64_t) chunk_size, now_ms());
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

/* --- Backups --- */

int store_backup_point_add(Store *st, const StoreBackupPoint *p) {
        return store_exec(st, "INSERT INTO backup_point(datastore, vm_uuid, vm_name, vm_id, owner_id, group_id, host_id, point_id,"
                          " full, consistency, checkpoint, size_bytes, bytes_read, bytes_written, duration_ms, created_at)"
                          " VALUES (?,?,?,nullif(?,0),nullif(?,0),nullif(?,0),nullif(?,0),?,?,?,?,?,?,?,?,?)"
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

int store_backup_offline_set(Store *st, int64_t vm_id, int64_t host_id, const char *vm_uuid, int64_t job_id) {
        return store_exec(st, "INSERT OR REPLACE INTO backup_offline(vm_id, host_id, vm_uuid, job_id, started_at)"
                          " VALUES (?, ?, ?, ?, ?)", "iisii", vm_id, host_id, vm_uuid, job_id, now_ms());
}

int store_backup_offline_get(Store *st, int64_t vm_id, json_t **ret) {
        return store_query_one(st, ret, "SELECT vm_id, host_id, vm_uuid, job_id, started_at FROM backup_offline WHERE vm_id = ?",
                               "i", vm_id);
}

int store_backup_offline_clear(Store *st, int64_t vm_id) {
        return store_exec(st, "DELETE FROM backup_offline WHERE vm_id = ?", "i", vm_id);
}

int store_backup_checkpoints_in_use(Store *st, const char *vm_uuid, json_t **ret) {
        return store_query_json(st, ret,
                                "SELECT b.datastore, b.checkpoint FROM backup_point b WHERE b.vm_uuid = ?1"
                                " AND b.checkpoint IS NOT NULL AND b.point_id = (SELECT max(point_id) FROM backup_point"
                                " WHERE vm_uuid = ?1 AND datastore = b.datastore) ORDER BY b.datastore", "s", vm_uuid);
}

/* "Good": in a datastore still registered, and not found unrestorable by
 * its last verify. */
#define LAST_GOOD_FROM                                                                                                  \
        " FROM backup_point b JOIN datastore d ON d.name = b.datastore"                                                \
        " LEFT JOIN datastore_point v ON v.datastore_id = d.id AND v.vm_uuid = b.vm_uuid AND v.point_id = b.point_id"

int store_backup_point_last_good(Store *st, const char *vm_uuid, json_t **ret) {
        return store_query_one(st, ret,
                               "SELECT b.datastore, b.point_id, b.full AS full_bool, b.consistency, b.size_bytes, b.created_at,"
                               " v.verified_at, v.ok AS verified_ok_bool" LAST_GOOD_FROM
                               " WHERE b.vm_uuid = ? AND coalesce(v.ok, 1) = 1 ORDER BY b.point_id DESC, b.id DESC LIMIT 1",
                               "s", vm_uuid);
}

int store_backup_vms_last_good(Store *st, json_t **ret) {
        return store_query_json(st, ret,
                                "SELECT vm.uuid AS vm_uuid, vm.name AS vm_name, (SELECT max(b.point_id)" LAST_GOOD_FROM
                                " WHERE b.vm_uuid = vm.uuid AND coalesce(v.ok, 1) = 1) AS point_id FROM vm ORDER BY vm.uuid", "");
}

int store_backup_status_key(Store *st, json_t **ret) {
        return store_query_one(st, ret,
                               "SELECT (SELECT coalesce(max(id), 0) FROM backup_point) AS p_max,"
                               " (SELECT count(*) FROM backup_point) AS p_n,"
                               " (SELECT coalesce(max(verified_at), 0) FROM datastore_point) AS verified,"
                               " (SELECT count(*) FROM datastore_point) AS v_n,"
                               " (SELECT coalesce(max(id), 0) FROM datastore) AS d_max, (SELECT count(*) FROM datastore) AS d_n,"
                               " (SELECT coalesce(max(id), 0) FROM vm) AS vm_max, (SELECT count(*) FROM vm) AS vm_n", "");
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

int store_backup_vm_grant(Store *st, int64_t vm_id, int64_t *ret_grant_id, int64_t *ret_points) {
        _cleanup_json_ json_t *o = NULL;
        int r = store_query_one(st, &o, "SELECT coalesce(grant_id, 0) AS g, points FROM vm_template WHERE vm_id = ?", "i", vm_id);
        if (r < 0)
                return r;
        *ret_grant_id = jget_int(o, "g");
        *ret_points = jget_int(o, "points");
        return 0;
}

int store_backup_vm_grant_copy(Store *st, int64_t to_vm_id, int64_t from_vm_id) {
        return store_exec(st, "INSERT OR REPLACE INTO vm_template(vm_id, template_id, grant_id, points)"
                          " SELECT ?, template_id, grant_id, points FROM vm_template WHERE vm_id = ?", "ii", to_vm_id, from_vm_id) < 0
                       ? -EIO
                       : 0;
}

/* --- Snapshots --- */

int store_vm_snapshots_set(Store *st, int64_t vm_id, int64_t count) {
        /* Unchanged counts write nothing: no row change for the read model. */
        int r = store_exec(st, "UPDATE vm SET snapshots = ?1 WHERE id = ?2 AND snapshots IS NOT ?1", "ii", count, vm_id);
        return r < 0 ? r : 0;
}

int store_backup_policy_set(Store *st, const StoreBackupPolicy *p, int64_t *ret_id) {
        int r = store_exec(st, "INSERT INTO backup_policy(vm_id, group_id, datastore, every_s, keep_last, keep_hourly, keep_daily,"
                           " keep_weekly, keep_monthly, keep_yearly, created_at) VALUES (nullif(?,0),nullif(?,0),?,?,?,?,?,?,?,?,?)"
                           " ON CONFLICT(vm_id) DO UPDATE SET datastore = excluded.datastore, every_s = excluded.every_s,"
                           " keep_last = excluded.keep_last, keep_hourly = excluded.keep_hourly, keep_daily = excluded.keep_daily,"
                           " keep_weekly = excluded.keep_weekly, keep_monthly = excluded.keep_monthly, keep_yearly = excluded.keep_yearly"
                           " ON CONFLICT(group_id) DO UPDATE SET datastore = excluded.datastore, every_s = excluded.every_s,"
                           " keep_last = excluded.keep_last, keep_hourly = excluded.keep_hourly, keep_daily = excluded.keep_daily,"
                           " keep_weekly = excluded.keep_weekly, keep_monthly = excluded.keep_monthly, keep_yearly = excluded.keep_yearly",
                           "iisiiiiiiii", p->vm_id, p->group_id, p->datastore, p->every_s, p->keep[0], p->keep[1], p->keep[2],
                           p->keep[3], p->keep[4], p->keep[5], now_ms());
        if (r < 0)
                return -EIO;
        return store_query_i64(st, ret_id, "SELECT id FROM backup_policy WHERE vm_id IS nullif(?1, 0) AND group_id IS nullif(?2, 0)", "ii",
                               p->vm_id ? p->vm_id : 0, p->group_id ? p->group_id : 0) == 0 ? 0 : -EIO;
}

#define POLICY_COLUMNS                                                                                                \
        "SELECT p.id, p.vm_id, v.name AS vm_name, p.group_id, g.path AS group_path, p.datastore, p.every_s, p.keep_last," \
        " p.keep_hourly, p.keep_daily, p.keep_weekly, p.keep_monthly, p.keep_yearly, p.created_at FROM backup_policy p"  \
        " LEFT JOIN vm v ON v.id = p.vm_id LEFT JOIN host_group g ON g.id = p.group_id "

int store_backup_policy_list(Store *st, json_t **ret) {
        return store_query_json(st, ret, POLICY_COLUMNS "ORDER BY p.id", "");
}

int store_backup_policy_get(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, POLICY_COLUMNS "WHERE p.id = ?", "i", id);
}

int store_backup_policy_delete(Store *st, int64_t id) {
        return store_exec_one(st, "DELETE FROM backup_policy WHERE id = ?", "i", id);
}

int store_backup_policy_vms(Store *st, json_t **ret) {
        /* A VM's own policy wins over its group's; of the groups', the
         * deepest (longest path) covering it. */
        return store_query_json(st, ret,
                "SELECT v.id AS vm_id, v.name AS vm_name, v.uuid AS vm_uuid, v.state, v.owner_id, p.id AS policy_id,"
                " p.datastore, p.every_s, p.keep_last, p.keep_hourly, p.keep_daily, p.keep_weekly, p.keep_monthly, p.keep_yearly,"
                " p.created_at AS applied_ms FROM vm v JOIN backup_policy p ON p.id = coalesce("
                "   (SELECT id FROM backup_policy WHERE vm_id = v.id),"
                "   (SELECT bp.id FROM backup_policy bp JOIN host_group pg ON pg.id = bp.group_id"
                "      JOIN host h ON h.id = v.host_id JOIN host_group hg ON hg.id = h.group_id"
                "     WHERE pg.path = '' OR hg.path = pg.path OR substr(hg.path, 1, length(pg.path) + 1) = pg.path || '/'"
                "     ORDER BY length(pg.path) DESC LIMIT 1))"
                " WHERE v.origin != 'foreign' ORDER BY v.id", "");
}

int store_backup_policies(Store *st, json_t **ret) {
        return store_query_json(st, ret,
                                "SELECT id AS policy_id, vm_id, group_id, datastore, every_s, keep_last, keep_hourly, keep_daily,"
                                " keep_weekly, keep_monthly, keep_yearly, created_at AS applied_ms FROM backup_policy ORDER BY id", "");
}

int store_backup_points_newest(Store *st, int64_t after_id, json_t **ret, int64_t *ret_max_id, int64_t *ret_gen) {
        int64_t max_id = 0, gen = 0;
        /* Read first: a point added between these and the rows below is
         * read again next round (ids only grow), never missed. */
        int r = store_query_i64(st, &max_id, "SELECT coalesce(max(id), 0) FROM backup_point", "");
        if (r >= 0)
                r = store_query_i64(st, &gen, "SELECT n FROM backup_point_gen WHERE id = 1", "");
        if (r >= 0)
                r = store_query_json(st, ret, "SELECT vm_uuid, max(created_at) AS last_ms, max(point_id) AS last_id FROM backup_point"
                                     " WHERE id > ? AND id <= ? GROUP BY vm_uuid", "ii", after_id, max_id);
        if (r < 0)
                return r;
        *ret_max_id = max_id;
        *ret_gen = gen;
        return 0;
}

int store_backup_last_point_ms(Store *st, const char *vm_uuid, int64_t *ret_ms) {
        return store_query_i64(st, ret_ms, "SELECT max(created_at) FROM backup_point WHERE vm_uuid = ? HAVING max(created_at) IS NOT NULL",
                               "s", vm_uuid);
}

int store_backup_job_pending(Store *st, int64_t vm_id, int64_t since_ms, bool *ret) {
        int64_t n = 0;
        int r = store_query_i64(st, &n, "SELECT count(*) FROM job WHERE kind = 'vm.backup' AND target_id = ?"
                                " AND (state IN ('queued', 'running') OR created_at >= ?)", "ii", vm_id, since_ms);
        if (r < 0)
                return r;
        *ret = n > 0;
        return 0;
}


/* --- Replication --- */

/* Never the token: only store_replication_secret() reads it. */
#define REPLICATION_COLS                                                                                                \
        "SELECT r.id, r.name, r.datastore_id, d.name AS datastore, r.to_path, r.to_url, r.to_datastore,"              \
        " r.ca_file, r.every_s, r.created_at, r.last_run_at, r.last_job_id, r.last_state,"                              \
        " r.last_result AS last_result_json FROM replication r JOIN datastore d ON d.id = r.datastore_id "

int store_replication_insert(Store *st, const StoreReplication *r, int64_t *ret_id) {
        return store_insert(st, ret_id, "INSERT INTO replication(name, datastore_id, to_path, to_url, to_datastore, token,"
                            " ca_file, every_s, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", "sisssssii", r->name,
                            r->datastore_id, r->to_path, r->to_url, r->to_datastore, r->token, r->ca_file, r->every_s,
                            now_ms());
}

int store_replication_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, REPLICATION_COLS "WHERE r.id = ?", "i", id);
}

int store_replication_list(Store *st, json_t **ret) {
        return store_query_json(st, ret, REPLICATION_COLS "ORDER BY r.name", "");
}

int store_replication_secret(Store *st, int64_t id, char **ret_token) {
        _cleanup_json_ json_t *o = NULL;
        int r = store_query_one(st, &o, "SELECT coalesce(token, '') AS token FROM replication WHERE id = ?", "i", id);
        if (r < 0)
                return r;
        *ret_token = xstrdup(jget_str(o, "token"));
        return 0;
}

int store_replication_delete(Store *st, int64_t id) {
        return store_exec_one(st, "DELETE FROM replication WHERE id = ?", "i", id);
}

int store_replication_due(Store *st, int64_t now, json_t **ret) {
        return store_query_json(st, ret, REPLICATION_COLS "WHERE r.every_s > 0 AND (r.last_run_at IS NULL OR"
                                " r.last_run_at + r.every_s * 1000 <= ?1) AND NOT EXISTS (SELECT 1 FROM job j WHERE"
                                " j.id = r.last_job_id AND j.state IN ('queued', 'running')) ORDER BY r.id", "i", now);
}

int store_replication_started(Store *st, int64_t id, int64_t job_id) {
        return store_exec_one(st, "UPDATE replication SET last_run_at = ?, last_job_id = ? WHERE id = ?", "iii", now_ms(),
                              job_id, id);
}

int store_replication_finished(Store *st, int64_t id, const char *state, const char *result_json) {
        return store_exec_one(st, "UPDATE replication SET last_state = ?, last_result = ? WHERE id = ?", "ssi", state,
                              result_json, id);
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
