/* The ha capability's tables and SQL (see store-ha.h; store.h for the
 * conventions). The cluster, cluster_member and vm_ha tables come from the
 * place capability's migration; the tables below are ha's own. */
#include "store-ha.h"
#include "store-priv.h"

#include <errno.h>
#include <string.h>

const StoreMigration store_migrations_ha[] = {
        { "ha-1", "CREATE TABLE host_fence ("
        "  host_id INTEGER PRIMARY KEY REFERENCES host(id) ON DELETE CASCADE,"
        "  argv_json TEXT NOT NULL,"
        "  updated_at INTEGER NOT NULL);"
        "CREATE TABLE ha_pending ("
        "  vm_id INTEGER PRIMARY KEY REFERENCES vm(id) ON DELETE CASCADE,"
        "  from_host_id INTEGER,"
        "  reason TEXT,"
        "  since_at INTEGER NOT NULL);"
        "CREATE TABLE vm_xml ("
        "  vm_id INTEGER PRIMARY KEY REFERENCES vm(id) ON DELETE CASCADE,"
        "  xml TEXT NOT NULL,"
        "  updated_at INTEGER NOT NULL);" },
        { NULL, NULL },
};

/* Runs sql with integer parameters and collects column 0 (and 1 when
 * second is not NULL) of every row. Count or negative. */
static int query_pairs(Store *st, const char *sql, const int64_t *args, size_t n_args, int64_t **ret_a, int64_t **ret_b) {
        StoreStmt *stmt = NULL;
        int r = store_prepare(st, sql, &stmt);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_args; i++)
                store_bind_i64(stmt, (int) i + 1, args[i]);
        int64_t *a = NULL, *b = NULL;
        size_t n = 0, cap = 0;
        int rc;
        while ((rc = store_step(stmt)) == STORE_ROW) {
                if (n == cap) {
                        cap = cap ? cap * 2 : 16;
                        a = xrealloc(a, cap * sizeof *a);
                        b = xrealloc(b, cap * sizeof *b);
                }
                a[n] = store_col_i64(stmt, 0);
                b[n] = store_col_count(stmt) > 1 ? store_col_i64(stmt, 1) : 0;
                n++;
        }
        store_finalize(stmt);
        if (rc != STORE_DONE) {
                free(a);
                free(b);
                return rc < 0 ? rc : -EIO;
        }
        *ret_a = a;
        if (ret_b)
                *ret_b = b;
        else
                free(b);
        return (int) n;
}

static int refs_from(int n, int64_t *a, int64_t *b, StoreHaRef **ret) {
        if (n < 0)
                return n;
        StoreHaRef *refs = xcalloc((size_t) n + 1, sizeof *refs);
        for (int i = 0; i < n; i++)
                refs[i] = (StoreHaRef) { .vm_id = a[i], .priority = (int) b[i] };
        free(a);
        free(b);
        *ret = refs;
        return n;
}

/* A text column of one row: 0 and a malloc'd copy, -ENOENT, -EIO. */
static int query_text(Store *st, const char *sql, int64_t arg, char **ret) {
        _cleanup_json_ json_t *o = NULL;
        int r = store_query_one(st, &o, sql, "i", arg);
        if (r < 0)
                return r;
        const char *s = json_string_value(json_object_get(o, "t"));
        if (!s)
                return -ENOENT;
        *ret = xstrdup(s);
        return 0;
}

/* ---- clusters ---- */

int store_cluster_insert(Store *st, const char *name, const char *shared_storage, int tolerate,
                         const int64_t *host_ids, size_t n_hosts, int64_t *ret_id) {
        int r = store_begin(st);
        if (r < 0)
                return r;
        r = store_exec(st, "INSERT INTO cluster(name, shared_storage, tolerate, created_at) VALUES (?,?,?,?)",
                       "ssii", name, shared_storage, (int64_t) tolerate, now_ms());
        int64_t id = r < 0 ? 0 : store_last_id(st);
        for (size_t i = 0; r >= 0 && i < n_hosts; i++)
                r = store_exec(st, "INSERT INTO cluster_member(cluster_id, host_id) VALUES (?,?)", "ii", id, host_ids[i]);
        if (r < 0) {
                store_rollback(st);
                return r == -ENOTEMPTY ? -ENOENT : r;
        }
        r = store_commit(st);
        if (r < 0)
                return r;
        *ret_id = id;
        return 0;
}

int store_cluster_delete(Store *st, int64_t id) {
        return store_exec_one(st, "DELETE FROM cluster WHERE id = ?", "i", id);
}

int store_cluster_find(Store *st, const char *name, int64_t *ret_id) {
        return store_query_i64(st, ret_id, "SELECT id FROM cluster WHERE name = ?", "s", name);
}

/* The members as a JSON array by name: SQLite's json_group_array of
 * json_object, PostgreSQL's json_agg of json_build_object (NULL over no
 * rows). */
#define CLUSTER_HOSTS_SQLITE \
        "(SELECT json_group_array(json_object('id', h.id, 'name', h.name, 'state', h.state, 'group_id', h.group_id))" \
        "  FROM cluster_member m JOIN host h ON h.id = m.host_id WHERE m.cluster_id = c.id ORDER BY h.name)"
#define CLUSTER_HOSTS_PG \
        "coalesce((SELECT json_agg(json_build_object('id', h.id, 'name', h.name, 'state', h.state, 'group_id', h.group_id)" \
        "  ORDER BY h.name) FROM cluster_member m JOIN host h ON h.id = m.host_id WHERE m.cluster_id = c.id), '[]')"
#define CLUSTER_COLUMNS(hosts_json) \
        "SELECT c.id, c.name, c.shared_storage, c.tolerate, " hosts_json " AS hosts_json," \
        " (SELECT count(*) FROM vm v JOIN vm_ha a ON a.vm_id = v.id JOIN cluster_member m ON m.host_id = v.host_id" \
        "  WHERE m.cluster_id = c.id) AS n_ha_vms," \
        " (SELECT count(*) FROM ha_pending p JOIN cluster_member m ON m.host_id = p.from_host_id" \
        "  WHERE m.cluster_id = c.id) AS n_pending, c.created_at FROM cluster c "

int store_cluster_list(Store *st, const char *name, json_t **ret) {
        return store_query_json(st, ret, store_sql(st, CLUSTER_COLUMNS(CLUSTER_HOSTS_SQLITE) "WHERE (?1 IS NULL OR c.name = ?1) ORDER BY c.name",
                                                   CLUSTER_COLUMNS(CLUSTER_HOSTS_PG) "WHERE (?1 IS NULL OR c.name = ?1) ORDER BY c.name"),
                                "s", name);
}

int store_cluster_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, store_sql(st, CLUSTER_COLUMNS(CLUSTER_HOSTS_SQLITE) "WHERE c.id = ?",
                                                  CLUSTER_COLUMNS(CLUSTER_HOSTS_PG) "WHERE c.id = ?"), "i", id);
}

int store_cluster_of_host(Store *st, int64_t host_id, int64_t *ret_cluster_id, char **ret_shared_storage) {
        _cleanup_json_ json_t *o = NULL;
        int r = store_query_one(st, &o, "SELECT c.id, c.shared_storage FROM cluster c"
                                                       " JOIN cluster_member m ON m.cluster_id = c.id WHERE m.host_id = ?",
                                                   "i", host_id);
        if (r < 0)
                return r;
        *ret_cluster_id = json_integer_value(json_object_get(o, "id"));
        if (ret_shared_storage)
                *ret_shared_storage = xstrdup(json_string_value(json_object_get(o, "shared_storage")));
        return 0;
}

int store_cluster_members(Store *st, int64_t cluster_id, int64_t **ret) {
        return query_pairs(st, "SELECT host_id FROM cluster_member WHERE cluster_id = ? ORDER BY host_id",
                           &cluster_id, 1, ret, NULL);
}

int store_cluster_ids(Store *st, int64_t **ret) {
        return query_pairs(st, "SELECT id FROM cluster ORDER BY id", NULL, 0, ret, NULL);
}

int store_cluster_tolerate(Store *st, int64_t cluster_id, int *ret) {
        int64_t v;
        int r = store_query_i64(st, &v, "SELECT tolerate FROM cluster WHERE id = ?", "i", cluster_id);
        if (r < 0)
                return r;
        *ret = (int) v;
        return 0;
}

/* ---- HA settings ---- */

int store_vm_ha_set(Store *st, int64_t vm_id, int priority) {
        if (priority == 0)
                return store_exec(st, "DELETE FROM vm_ha WHERE vm_id = ?", "i", vm_id);
        return store_exec(st, "INSERT INTO vm_ha(vm_id, priority) VALUES (?1, ?2)"
                              " ON CONFLICT(vm_id) DO UPDATE SET priority = ?2", "ii", vm_id, (int64_t) priority);
}

int store_vm_ha_get(Store *st, int64_t vm_id, int *ret_priority) {
        int64_t v;
        int r = store_query_i64(st, &v, "SELECT priority FROM vm_ha WHERE vm_id = ?", "i", vm_id);
        if (r < 0)
                return r;
        *ret_priority = (int) v;
        return 0;
}

int store_ha_vms_on_host(Store *st, int64_t host_id, StoreHaRef **ret) {
        int64_t *a = NULL, *b = NULL;
        int n = query_pairs(st, "SELECT v.id, coalesce(a.priority, 0) FROM vm v LEFT JOIN vm_ha a ON a.vm_id = v.id"
                                " WHERE v.host_id = ? AND v.origin <> 'foreign' ORDER BY a.priority IS NULL, a.priority, v.id",
                            &host_id, 1, &a, &b);
        return refs_from(n, a, b, ret);
}

/* ---- fencing ---- */

int store_host_fence_set(Store *st, int64_t host_id, const char *argv_json) {
        if (!argv_json)
                return store_exec(st, "DELETE FROM host_fence WHERE host_id = ?", "i", host_id);
        return store_exec(st, "INSERT INTO host_fence(host_id, argv_json, updated_at) VALUES (?1, ?2, ?3)"
                              " ON CONFLICT(host_id) DO UPDATE SET argv_json = ?2, updated_at = ?3",
                          "isi", host_id, argv_json, now_ms());
}

int store_host_fence_get(Store *st, int64_t host_id, char **ret_argv_json) {
        return query_text(st, "SELECT argv_json AS t FROM host_fence WHERE host_id = ?", host_id, ret_argv_json);
}

/* ---- pending restarts ---- */

int store_ha_pending_add(Store *st, int64_t vm_id, int64_t from_host_id, const char *reason) {
        return store_exec(st, "INSERT INTO ha_pending(vm_id, from_host_id, reason, since_at) VALUES (?1, ?2, ?3, ?4)"
                              " ON CONFLICT(vm_id) DO UPDATE SET reason = ?3", "iisi", vm_id, from_host_id, reason, now_ms());
}

int store_ha_pending_remove(Store *st, int64_t vm_id) {
        return store_exec(st, "DELETE FROM ha_pending WHERE vm_id = ?", "i", vm_id);
}

int store_ha_pending_list(Store *st, StoreHaRef **ret) {
        int64_t *a = NULL, *b = NULL;
        int n = query_pairs(st, "SELECT p.vm_id, coalesce(a.priority, 3) FROM ha_pending p LEFT JOIN vm_ha a ON a.vm_id = p.vm_id"
                                " ORDER BY coalesce(a.priority, 3), p.vm_id", NULL, 0, &a, &b);
        return refs_from(n, a, b, ret);
}

int store_ha_pending_json(Store *st, json_t **ret) {
        return store_query_json(st, ret, "SELECT p.vm_id, v.name AS vm_name, p.from_host_id, p.reason, p.since_at"
                                    " FROM ha_pending p JOIN vm v ON v.id = p.vm_id ORDER BY p.vm_id", "");
}

/* ---- saved definitions ---- */

int store_vm_xml_set(Store *st, int64_t vm_id, const char *xml) {
        return store_exec(st, "INSERT INTO vm_xml(vm_id, xml, updated_at) VALUES (?1, ?2, ?3)"
                              " ON CONFLICT(vm_id) DO UPDATE SET xml = ?2, updated_at = ?3", "isi", vm_id, xml, now_ms());
}

int store_vm_xml_get(Store *st, int64_t vm_id, char **ret) {
        return query_text(st, "SELECT xml AS t FROM vm_xml WHERE vm_id = ?", vm_id, ret);
}

int store_ha_vms_without_xml(Store *st, int64_t **ret) {
        return query_pairs(st, "SELECT a.vm_id FROM vm_ha a JOIN vm v ON v.id = a.vm_id"
                               " WHERE NOT EXISTS (SELECT 1 FROM vm_xml x WHERE x.vm_id = a.vm_id) ORDER BY a.vm_id",
                           NULL, 0, ret, NULL);
}
