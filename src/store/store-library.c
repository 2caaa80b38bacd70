/* The library capability's tables and SQL (see store-library.h and store.h
 * for the conventions). */
#include "store-library.h"
#include "store-priv.h"

#include <errno.h>
#include <string.h>

const StoreMigration store_migrations_library[] = {
        { "library-1",
          "CREATE TABLE library_share ("
          "  id INTEGER PRIMARY KEY,"
          "  path TEXT NOT NULL UNIQUE,"
          "  created_at INTEGER NOT NULL,"
          "  indexed_at INTEGER);"
          "CREATE TABLE library_item ("
          "  id INTEGER PRIMARY KEY,"
          "  share_id INTEGER NOT NULL REFERENCES library_share(id) ON DELETE CASCADE,"
          "  rel_path TEXT NOT NULL,"
          "  kind TEXT NOT NULL,"
          "  format TEXT NOT NULL,"
          "  size INTEGER NOT NULL,"
          "  checksum TEXT,"
          "  virtual_size INTEGER,"
          "  backing TEXT,"
          "  mtime INTEGER,"
          "  missing INTEGER NOT NULL DEFAULT 0,"
          "  indexed_at INTEGER NOT NULL,"
          "  UNIQUE(share_id, rel_path));"
          "CREATE TABLE template ("
          "  id INTEGER PRIMARY KEY,"
          "  name TEXT NOT NULL UNIQUE,"
          "  description TEXT,"
          "  cpus INTEGER NOT NULL,"
          "  memory_mib INTEGER NOT NULL,"
          "  disk_bytes INTEGER NOT NULL DEFAULT 0,"
          "  data_disks TEXT,"
          "  firmware TEXT NOT NULL DEFAULT 'bios',"
          "  network TEXT,"
          "  base_item_id INTEGER NOT NULL REFERENCES library_item(id),"
          "  hostname_pattern TEXT,"
          "  admin_user TEXT,"
          "  ssh_keys TEXT,"
          "  timezone TEXT,"
          "  user_data TEXT,"
          "  points INTEGER NOT NULL DEFAULT 1,"
          "  created_at INTEGER NOT NULL);"
          "CREATE TABLE self_service_grant ("
          "  id INTEGER PRIMARY KEY,"
          "  user_id INTEGER NOT NULL REFERENCES user(id) ON DELETE CASCADE,"
          "  group_id INTEGER NOT NULL REFERENCES host_group(id),"
          "  points INTEGER,"
          "  max_vms INTEGER,"
          "  max_cpus INTEGER,"
          "  max_memory_mib INTEGER,"
          "  actions TEXT NOT NULL,"
          "  created_at INTEGER NOT NULL);"
          "CREATE INDEX grant_user_idx ON self_service_grant(user_id);"
          "CREATE TABLE grant_template ("
          "  grant_id INTEGER NOT NULL REFERENCES self_service_grant(id) ON DELETE CASCADE,"
          "  template_id INTEGER NOT NULL REFERENCES template(id) ON DELETE CASCADE,"
          "  PRIMARY KEY(grant_id, template_id));"
          "CREATE TABLE vm_template ("
          "  vm_id INTEGER PRIMARY KEY REFERENCES vm(id) ON DELETE CASCADE,"
          "  template_id INTEGER REFERENCES template(id) ON DELETE SET NULL,"
          "  grant_id INTEGER REFERENCES self_service_grant(id) ON DELETE SET NULL,"
          "  points INTEGER NOT NULL DEFAULT 0);"
          "CREATE INDEX vm_template_grant_idx ON vm_template(grant_id);" },
        { "library-2-domain-type",
          "ALTER TABLE template ADD COLUMN domain_type TEXT NOT NULL DEFAULT 'auto';" },
        /* issue 12: an ISO a template's VMs get in a CD-ROM drive (0: none) */
        { "library-3-template-iso",
          "ALTER TABLE template ADD COLUMN iso_item_id INTEGER NOT NULL DEFAULT 0;" },
        { NULL, NULL },
};

/* ------------------------------------------------------------------ */
/* helpers */

static void copy_str(char *dst, size_t size, json_t *o, const char *key) {
        const char *s = json_string_value(json_object_get(o, key));
        snprintf(dst, size, "%s", s ? s : "");
}
static int64_t get_i64(json_t *o, const char *key) {
        return json_integer_value(json_object_get(o, key));
}

/* ------------------------------------------------------------------ */
/* shares */

int store_share_insert(Store *st, const char *path, int64_t *ret_id) {
        return store_insert(st, ret_id, "INSERT INTO library_share(path, created_at) VALUES (?, ?)", "si", path, now_ms());
}

int store_share_path(Store *st, int64_t id, char *out, size_t size) {
        _cleanup_json_ json_t *o = NULL;
        int r = store_query_one(st, &o, "SELECT path FROM library_share WHERE id = ?", "i", id);
        if (r < 0)
                return r;
        copy_str(out, size, o, "path");
        return 0;
}

int store_share_find(Store *st, const char *path, int64_t *ret_id) {
        return store_query_i64(st, ret_id, "SELECT id FROM library_share WHERE path = ?", "s", path);
}

int store_share_delete(Store *st, int64_t id) {
        int64_t n = 0;
        int r = store_query_i64(st, &n, "SELECT count(*) FROM template t JOIN library_item i ON i.id = t.base_item_id"
                                        " WHERE i.share_id = ?", "i", id);
        if (r < 0)
                return r;
        if (n > 0)
                return -ENOTEMPTY;
        r = store_exec(st, "DELETE FROM library_share WHERE id = ?", "i", id);
        if (r < 0)
                return r;
        return store_changes(st) > 0 ? 0 : -ENOENT;
}

int store_share_set_indexed(Store *st, int64_t id) {
        return store_exec(st, "UPDATE library_share SET indexed_at = ? WHERE id = ?", "ii", now_ms(), id);
}

#define SHARE_COLUMNS \
        "SELECT s.id, s.path, (SELECT count(*) FROM library_item i WHERE i.share_id = s.id) AS n_items," \
        " (SELECT coalesce(sum(i.size), 0) FROM library_item i WHERE i.share_id = s.id) AS size," \
        " s.created_at, s.indexed_at FROM library_share s "

int store_share_list(Store *st, json_t **ret) {
        return store_query_json(st, ret, SHARE_COLUMNS "ORDER BY s.path", "");
}
int store_share_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, SHARE_COLUMNS "WHERE s.id = ?", "i", id);
}

/* ------------------------------------------------------------------ */
/* items */

int store_item_upsert(Store *st, const StoreItem *it, int64_t *ret_id) {
        int r = store_exec(st, "INSERT INTO library_item(share_id, rel_path, kind, format, size, checksum, virtual_size, backing,"
                               " mtime, missing, indexed_at) VALUES (?,?,?,?,?,?,nullif(?,0),nullif(?,''),?,0,?)"
                               " ON CONFLICT(share_id, rel_path) DO UPDATE SET kind = excluded.kind, format = excluded.format,"
                               " size = excluded.size, checksum = excluded.checksum, virtual_size = excluded.virtual_size,"
                               " backing = excluded.backing, mtime = excluded.mtime, missing = 0, indexed_at = excluded.indexed_at",
                           "isssisisii", it->share_id, it->rel_path, it->kind, it->format, (int64_t) it->size, it->checksum,
                           (int64_t) it->virtual_size, it->backing, it->mtime_ms, now_ms());
        if (r < 0)
                return r;
        return store_query_i64(st, ret_id, "SELECT id FROM library_item WHERE share_id = ? AND rel_path = ?", "is",
                               it->share_id, it->rel_path);
}

static void item_from_json(json_t *o, StoreItem *it) {
        *it = (StoreItem) { .id = get_i64(o, "id"), .share_id = get_i64(o, "share_id"), .size = (uint64_t) get_i64(o, "size"),
                            .virtual_size = (uint64_t) get_i64(o, "virtual_size"), .mtime_ms = get_i64(o, "mtime") };
        copy_str(it->rel_path, sizeof it->rel_path, o, "rel_path");
        copy_str(it->kind, sizeof it->kind, o, "kind");
        copy_str(it->format, sizeof it->format, o, "format");
        copy_str(it->checksum, sizeof it->checksum, o, "checksum");
        copy_str(it->backing, sizeof it->backing, o, "backing");
}

#define ITEM_RAW "SELECT id, share_id, rel_path, kind, format, size, checksum, virtual_size, backing, mtime FROM library_item "

int store_item_get(Store *st, int64_t id, StoreItem *ret) {
        _cleanup_json_ json_t *o = NULL;
        int r = store_query_one(st, &o, ITEM_RAW "WHERE id = ?", "i", id);
        if (r < 0)
                return r;
        item_from_json(o, ret);
        return 0;
}

int store_item_find(Store *st, int64_t share_id, const char *rel_path, StoreItem *ret) {
        _cleanup_json_ json_t *o = NULL;
        int r = store_query_one(st, &o, ITEM_RAW "WHERE share_id = ? AND rel_path = ?", "is", share_id, rel_path);
        if (r < 0)
                return r;
        item_from_json(o, ret);
        return 0;
}

int store_item_forget_except(Store *st, int64_t share_id, const char *const *keep, size_t n_keep) {
        _cleanup_json_ json_t *all = NULL;
        int r = store_query_json(st, &all, "SELECT id, rel_path, (SELECT count(*) FROM template t"
                                                          " WHERE t.base_item_id = i.id) AS used FROM library_item i"
                                                          " WHERE share_id = ? AND missing = 0", "i", share_id);
        if (r < 0)
                return r;
        int n = 0;
        size_t k;
        json_t *o;
        json_array_foreach(all, k, o) {
                const char *rel = json_string_value(json_object_get(o, "rel_path"));
                bool kept = false;
                for (size_t i = 0; i < n_keep && !kept; i++)
                        kept = rel && streq(keep[i], rel);
                if (kept)
                        continue;
                r = get_i64(o, "used") > 0
                        ? store_exec(st, "UPDATE library_item SET missing = 1 WHERE id = ?", "i", get_i64(o, "id"))
                        : store_exec(st, "DELETE FROM library_item WHERE id = ?", "i", get_i64(o, "id"));
                if (r < 0)
                        return r;
                n++;
        }
        return n;
}

int store_item_delete(Store *st, int64_t share_id, const char *rel_path) {
        return store_exec(st, "DELETE FROM library_item WHERE share_id = ? AND rel_path = ? AND NOT EXISTS"
                              " (SELECT 1 FROM template t WHERE t.base_item_id = library_item.id)", "is", share_id, rel_path);
}

#define ITEM_COLUMNS \
        "SELECT i.id, i.share_id, s.path AS share_path, i.rel_path, s.path || '/' || i.rel_path AS path, i.kind, i.format," \
        " i.size, i.virtual_size, i.checksum, i.backing, i.missing AS missing_bool, i.indexed_at" \
        " FROM library_item i JOIN library_share s ON s.id = i.share_id "

int store_item_list(Store *st, int64_t share_id, const char *kind, json_t **ret) {
        return store_query_json(st, ret, ITEM_COLUMNS "WHERE (?1 = 0 OR i.share_id = ?1) AND (?2 IS NULL OR i.kind = ?2)"
                                                 " ORDER BY s.path, i.rel_path", "is", share_id, kind);
}
int store_item_ids_at(Store *st, const char *rel_path, json_t **ret) {
        return store_query_json(st, ret, "SELECT id FROM library_item WHERE rel_path = ?", "s", rel_path);
}
int store_item_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, ITEM_COLUMNS "WHERE i.id = ?", "i", id);
}

/* ------------------------------------------------------------------ */
/* templates */

int store_template_insert(Store *st, const StoreTemplate *t, int64_t *ret_id) {
        return store_insert(st, ret_id, "INSERT INTO template(name, description, cpus, memory_mib, disk_bytes, data_disks, firmware, network,"
                               " base_item_id, hostname_pattern, admin_user, ssh_keys, timezone, user_data, points, created_at,"
                               " domain_type, iso_item_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           "ssiiisssisssssiisi", t->name, t->description, t->cpus, t->memory_mib, t->disk_bytes, t->data_disks_json,
                           t->firmware ? t->firmware : "bios", t->network, t->base_item_id, t->hostname_pattern, t->admin_user,
                           t->ssh_keys_json, t->timezone, t->user_data, t->points, now_ms(),
                           t->domain_type ? t->domain_type : "auto", t->iso_item_id);
}

int store_template_find(Store *st, const char *name, int64_t *ret_id) {
        return store_query_i64(st, ret_id, "SELECT id FROM template WHERE name = ?", "s", name);
}

int store_template_delete(Store *st, int64_t id) {
        int r = store_exec(st, "DELETE FROM template WHERE id = ?", "i", id);
        if (r < 0)
                return r;
        return store_changes(st) > 0 ? 0 : -ENOENT;
}

#define TEMPLATE_COLUMNS \
        "SELECT t.id, t.name, t.description, t.cpus, t.memory_mib, t.disk_bytes, t.data_disks AS data_disks_json, t.firmware," \
        " t.domain_type," \
        " t.network, t.base_item_id, s.path || '/' || i.rel_path AS base_path, i.format AS base_format, i.kind AS base_kind," \
        " i.virtual_size AS base_virtual_size, i.size AS base_size, i.missing AS base_missing_bool," \
        " t.hostname_pattern, t.admin_user, t.ssh_keys AS ssh_keys_json, t.timezone, t.user_data, t.points," \
        " (SELECT count(*) FROM vm_template v WHERE v.template_id = t.id) AS n_vms, t.created_at," \
        " NULLIF(t.iso_item_id, 0) AS iso_item_id, si.path || '/' || ii.rel_path AS iso_path, ii.rel_path AS iso_rel_path," \
        " si.path AS iso_share_path, ii.size AS iso_size, ii.checksum AS iso_checksum" \
        " FROM template t JOIN library_item i ON i.id = t.base_item_id JOIN library_share s ON s.id = i.share_id" \
        " LEFT JOIN library_item ii ON ii.id = t.iso_item_id LEFT JOIN library_share si ON si.id = ii.share_id "

int store_template_list(Store *st, json_t **ret) {
        return store_query_json(st, ret, TEMPLATE_COLUMNS "ORDER BY t.name", "");
}
int store_template_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, TEMPLATE_COLUMNS "WHERE t.id = ?", "i", id);
}

/* ------------------------------------------------------------------ */
/* grants */

int store_grant_insert(Store *st, const StoreGrant *g, const int64_t *template_ids, size_t n, int64_t *ret_id) {
        int r = store_begin(st);
        if (r < 0)
                return r;
        /* Limits start NULL ("unlimited"); the given ones are set one by one,
         * as store_exec binds a fixed list of types. */
        int64_t v[4] = { g->points, g->max_vms, g->max_cpus, g->max_memory_mib };
        r = store_exec(st, "INSERT INTO self_service_grant(user_id, group_id, actions, created_at) VALUES (?,?,?,?)", "iisi",
                       g->user_id, g->group_id, g->actions, now_ms());
        int64_t id = r < 0 ? 0 : store_last_id(st);
        static const char *const cols[4] = { "points", "max_vms", "max_cpus", "max_memory_mib" };
        for (int i = 0; i < 4 && r >= 0; i++) {
                if (v[i] < 0)
                        continue;
                _cleanup_free_ char *q = xasprintf("UPDATE self_service_grant SET %s = ? WHERE id = ?", cols[i]);
                r = store_exec(st, q, "ii", v[i], id);
        }
        for (size_t i = 0; i < n && r >= 0; i++)
                r = store_exec(st, "INSERT OR IGNORE INTO grant_template(grant_id, template_id) VALUES (?, ?)", "ii", id, template_ids[i]);
        if (r < 0) {
                store_rollback(st);
                return r;
        }
        r = store_commit(st);
        if (r < 0)
                return r;
        *ret_id = id;
        return 0;
}

int store_grant_delete(Store *st, int64_t id) {
        int r = store_exec(st, "DELETE FROM self_service_grant WHERE id = ?", "i", id);
        if (r < 0)
                return r;
        return store_changes(st) > 0 ? 0 : -ENOENT;
}

#define GRANT_COLUMNS \
        "SELECT g.id, g.user_id, u.name AS user_name, g.group_id," \
        " CASE WHEN hg.id = 1 THEN 'All Hosts' ELSE hg.path END AS group_path," \
        " g.points, g.max_vms, g.max_cpus, g.max_memory_mib, g.actions," \
        " (SELECT json_group_array(json_object('id', t.id, 'name', t.name, 'points', t.points, 'cpus', t.cpus," \
        "    'memory_mib', t.memory_mib)) FROM grant_template gt JOIN template t ON t.id = gt.template_id" \
        "    WHERE gt.grant_id = g.id) AS templates_json," \
        " (SELECT coalesce(sum(vt.points), 0) FROM vm_template vt WHERE vt.grant_id = g.id) AS used_points," \
        " (SELECT count(*) FROM vm_template vt WHERE vt.grant_id = g.id) AS used_vms," \
        " (SELECT coalesce(sum(v.cpus), 0) FROM vm_template vt JOIN vm v ON v.id = vt.vm_id WHERE vt.grant_id = g.id) AS used_cpus," \
        " (SELECT coalesce(sum(v.memory_mib), 0) FROM vm_template vt JOIN vm v ON v.id = vt.vm_id WHERE vt.grant_id = g.id)" \
        "   AS used_memory_mib, g.created_at" \
        " FROM self_service_grant g JOIN user u ON u.id = g.user_id JOIN host_group hg ON hg.id = g.group_id "

int store_grant_list(Store *st, int64_t user_id, json_t **ret) {
        return store_query_json(st, ret, GRANT_COLUMNS "WHERE (?1 = 0 OR g.user_id = ?1) ORDER BY g.id", "i", user_id);
}
int store_grant_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, GRANT_COLUMNS "WHERE g.id = ?", "i", id);
}
int store_grants_for(Store *st, int64_t user_id, int64_t template_id, json_t **ret) {
        return store_query_json(st, ret, GRANT_COLUMNS "WHERE g.user_id = ?1 AND EXISTS (SELECT 1 FROM grant_template gt"
                                                  " WHERE gt.grant_id = g.id AND gt.template_id = ?2) ORDER BY g.id",
                                "ii", user_id, template_id);
}

/* ------------------------------------------------------------------ */
/* deployed VMs */

int store_vm_template_set(Store *st, int64_t vm_id, int64_t template_id, int64_t grant_id, int64_t points) {
        return store_exec(st, "INSERT OR REPLACE INTO vm_template(vm_id, template_id, grant_id, points) VALUES (?, ?, nullif(?, 0), ?)",
                          "iiii", vm_id, template_id, grant_id, points);
}

int store_vm_grant(Store *st, int64_t vm_id, int64_t *ret_grant_id) {
        int64_t g = 0;
        int r = store_query_i64(st, &g, "SELECT coalesce(grant_id, 0) FROM vm_template WHERE vm_id = ?", "i", vm_id);
        if (r == -ENOENT)
                g = 0;
        else if (r < 0)
                return r;
        *ret_grant_id = g;
        return 0;
}
