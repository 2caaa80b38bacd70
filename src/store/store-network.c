/* The networks-and-storage part of the store (see store-network.h; store.h
 * for the conventions). */
#include "store-network.h"
#include "store-priv.h"

#include <errno.h>
#include <string.h>

const StoreMigration store_migrations_network[] = {
        { "network-1", "CREATE TABLE network ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  name TEXT NOT NULL UNIQUE,"
        "  group_id INTEGER REFERENCES host_group(id) ON DELETE CASCADE,"
        "  host_id INTEGER REFERENCES host(id) ON DELETE CASCADE,"
        "  mode TEXT NOT NULL,"
        "  bridge TEXT,"
        "  vlan INTEGER NOT NULL DEFAULT 0,"
        "  subnet TEXT,"
        "  is_default INTEGER NOT NULL DEFAULT 0,"
        "  created_at INTEGER NOT NULL,"
        "  CHECK ((group_id IS NULL) <> (host_id IS NULL)));"
        "CREATE INDEX network_group_idx ON network(group_id);"
        "CREATE INDEX network_host_idx ON network(host_id);"
        "CREATE TABLE network_host ("
        "  network_id INTEGER NOT NULL REFERENCES network(id) ON DELETE CASCADE,"
        "  host_id INTEGER NOT NULL REFERENCES host(id) ON DELETE CASCADE,"
        "  state TEXT NOT NULL,"
        "  error TEXT,"
        "  updated_at INTEGER NOT NULL,"
        "  PRIMARY KEY (network_id, host_id));"
        "CREATE TABLE vm_nic ("
        "  id INTEGER PRIMARY KEY,"
        "  vm_id INTEGER NOT NULL REFERENCES vm(id) ON DELETE CASCADE,"
        "  mac TEXT NOT NULL UNIQUE,"
        "  network TEXT NOT NULL,"
        "  model TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL);"
        "CREATE INDEX vm_nic_vm_idx ON vm_nic(vm_id);"
        "CREATE INDEX vm_nic_network_idx ON vm_nic(network);" },
        { "storage-1", "CREATE TABLE pool_stat ("
        "  host_id INTEGER NOT NULL REFERENCES host(id) ON DELETE CASCADE,"
        "  name TEXT NOT NULL,"
        "  type TEXT NOT NULL,"
        "  active INTEGER NOT NULL,"
        "  path TEXT,"
        "  capacity INTEGER NOT NULL,"
        "  allocation INTEGER NOT NULL,"
        "  available INTEGER NOT NULL,"
        "  n_volumes INTEGER NOT NULL,"
        "  updated_at INTEGER NOT NULL,"
        "  PRIMARY KEY (host_id, name));" },
        { NULL, NULL },
};

#define NETWORK_ROW "SELECT network.id, network.name, coalesce(network.group_id, 0), coalesce(network.host_id, 0)," \
                    " network.mode, coalesce(network.bridge, ''), network.vlan, coalesce(network.subnet, ''), network.is_default" \
                    " FROM network "

static void row_network(StoreRow *s, void *out) {
        StoreNetwork *n = out;
        n->id = store_col_i64(s, 0);
        store_copy_text(n->name, sizeof n->name, s, 1);
        n->group_id = store_col_i64(s, 2);
        n->host_id = store_col_i64(s, 3);
        store_copy_text(n->mode, sizeof n->mode, s, 4);
        store_copy_text(n->bridge, sizeof n->bridge, s, 5);
        n->vlan = store_col_int(s, 6);
        store_copy_text(n->subnet, sizeof n->subnet, s, 7);
        n->is_default = store_col_int(s, 8) != 0;
}

static void row_i64(StoreRow *s, void *out) {
        *(int64_t *) out = store_col_i64(s, 0);
}

static const char *or_null(const char *s) {
        return s && s[0] ? s : NULL;
}

int store_network_insert(Store *st, const StoreNetwork *n, int64_t *ret_id) {
        int r = store_begin(st);
        if (r < 0)
                return r;
        if (n->is_default && n->group_id)
                r = store_exec(st, "UPDATE network SET is_default = 0 WHERE group_id = ?", "i", n->group_id);
        int64_t id = 0;
        if (r >= 0)
                r = store_insert(st, &id,
                                 "INSERT INTO network(name, group_id, host_id, mode, bridge, vlan, subnet, is_default, created_at)"
                                 " VALUES (?, NULLIF(?, 0), NULLIF(?, 0), ?, ?, ?, ?, ?, ?)", "siissisbi", n->name,
                                 n->group_id, n->host_id, n->mode, or_null(n->bridge), (int64_t) n->vlan,
                                 or_null(n->subnet), (int) n->is_default, now_ms());
        r = store_end(st, r);
        if (r < 0)
                return r;
        *ret_id = id;
        return 0;
}

int store_network_get(Store *st, int64_t id, StoreNetwork *ret) {
        return store_query_row(st, row_network, ret, NETWORK_ROW "WHERE network.id = ?", "i", id);
}

int store_network_find(Store *st, const char *name, StoreNetwork *ret) {
        return store_query_row(st, row_network, ret, NETWORK_ROW "WHERE network.name = ?", "s", name);
}

int store_network_delete(Store *st, int64_t id) {
        return store_exec_one(st, "DELETE FROM network WHERE id = ?", "i", id);
}

int store_network_list(Store *st, const char *name, json_t **ret) {
        /* Where each host stands as a JSON array by host name: SQLite's
         * json_group_array of json_object, PostgreSQL's json_agg of
         * json_build_object (NULL over no rows). */
#define NETWORK_LIST(recorded_json) \
                "SELECT n.id, n.name, n.group_id, g.path AS group_path, n.host_id, h.name AS host_name, n.mode," \
                " n.bridge, n.vlan, n.subnet, n.is_default AS is_default_bool, n.created_at, " recorded_json " AS recorded_json" \
                " FROM network n LEFT JOIN host_group g ON g.id = n.group_id LEFT JOIN host h ON h.id = n.host_id" \
                " WHERE (?1 IS NULL OR n.name = ?1) ORDER BY n.name"
        return store_query_json(st, ret, store_sql(st, NETWORK_LIST(
                "(SELECT json_group_array(json_object('host_id', x.host_id, 'host_name', hh.name, 'state', x.state,"
                "   'error', x.error)) FROM network_host x JOIN host hh ON hh.id = x.host_id"
                "  WHERE x.network_id = n.id ORDER BY hh.name)"), NETWORK_LIST(
                "coalesce((SELECT json_agg(json_build_object('host_id', x.host_id, 'host_name', hh.name, 'state', x.state,"
                "   'error', x.error) ORDER BY hh.name) FROM network_host x JOIN host hh ON hh.id = x.host_id"
                "  WHERE x.network_id = n.id), '[]')")), "s", name);
#undef NETWORK_LIST
}

/* The hosts of group ?1 and of every group below it. */
#define SUBTREE_HOSTS \
        "WITH RECURSIVE sub(id) AS (SELECT ?1 UNION ALL SELECT g.id FROM host_group g JOIN sub ON g.parent_id = sub.id)" \
        " SELECT h.id FROM host h WHERE h.group_id IN (SELECT id FROM sub) ORDER BY h.id"

int store_network_hosts(Store *st, const StoreNetwork *n, int64_t **ret) {
        if (n->host_id) {
                int64_t *one = xcalloc(1, sizeof *one);
                one[0] = n->host_id;
                *ret = one;
                return 1;
        }
        return store_query_rows(st, row_i64, sizeof(int64_t), (void **) ret, SUBTREE_HOSTS, "i", n->group_id);
}

/* The group of host ?1 and its ancestors. */
#define HOST_GROUP_CHAIN \
        "WITH RECURSIVE up(id, depth) AS (SELECT group_id, 0 FROM host WHERE id = ?1" \
        " UNION ALL SELECT g.parent_id, up.depth + 1 FROM host_group g JOIN up ON g.id = up.id WHERE g.parent_id IS NOT NULL) "

int store_network_for_host(Store *st, int64_t host_id, StoreNetwork **ret) {
        return store_query_rows(st, row_network, sizeof(StoreNetwork), (void **) ret,
                                HOST_GROUP_CHAIN NETWORK_ROW "WHERE network.host_id = ?1 OR network.group_id IN (SELECT id FROM up) ORDER BY network.name",
                                "i", host_id);
}

int store_network_host_set(Store *st, int64_t network_id, int64_t host_id, const char *state, const char *error) {
        return store_exec(st, "INSERT INTO network_host(network_id, host_id, state, error, updated_at) VALUES (?,?,?,?,?)"
                          " ON CONFLICT(network_id, host_id) DO UPDATE SET state = excluded.state, error = excluded.error,"
                          " updated_at = excluded.updated_at", "iissi", network_id, host_id, state, error, now_ms());
}

int store_network_default_for_host(Store *st, int64_t host_id, char ret[64]) {
        StoreNetwork n;
        int r = store_query_row(st, row_network, &n,
                                HOST_GROUP_CHAIN NETWORK_ROW "JOIN up ON up.id = network.group_id WHERE network.is_default <> 0"
                                " ORDER BY up.depth LIMIT 1", "i", host_id);
        if (r < 0)
                return r;
        snprintf(ret, 64, "%s", n.name);
        return 0;
}

int store_network_on_host(Store *st, const char *name, int64_t host_id, bool *ret) {
        int64_t n = 0;
        int r = store_query_i64(st, &n,
                                "SELECT count(*) FROM network n JOIN network_host x ON x.network_id = n.id"
                                " WHERE n.name = ? AND x.host_id = ? AND x.state = 'active'", "si", name, host_id);
        if (r < 0)
                return r;
        *ret = n > 0;
        return 0;
}

static void row_on_host(StoreRow *s, void *out) {
        StoreNetworkOnHost *o = out;
        o->host_id = store_col_i64(s, 0);
        o->active = store_col_int(s, 1) != 0;
}

int store_network_states(Store *st, const char *name, StoreNetworkOnHost **ret) {
        StoreNetwork n;
        int r = store_network_find(st, name, &n);
        if (r < 0)
                return r;
        return store_query_rows(st, row_on_host, sizeof(StoreNetworkOnHost), (void **) ret,
                                "SELECT host_id, state = 'active' FROM network_host WHERE network_id = ?"
                                " AND state IN ('active', 'failed') ORDER BY host_id", "i", n.id);
}

/* ---- network cards of VMs ---- */

int store_vm_nic_insert(Store *st, int64_t vm_id, const char *mac, const char *network, const char *model) {
        return store_exec(st, "INSERT INTO vm_nic(vm_id, mac, network, model, created_at) VALUES (?,?,?,?,?)", "isssi",
                          vm_id, mac, network, model, now_ms());
}

int store_vm_nic_delete(Store *st, int64_t vm_id, const char *mac) {
        return store_exec_one(st, "DELETE FROM vm_nic WHERE vm_id = ? AND mac = ?", "is", vm_id, mac);
}

int store_vm_nic_list(Store *st, int64_t vm_id, json_t **ret) {
        return store_query_json(st, ret, "SELECT mac, network, model, created_at FROM vm_nic WHERE vm_id = ? ORDER BY id",
                                "i", vm_id);
}

static void row_name64(StoreRow *s, void *out) {
        store_copy_text(out, 64, s, 0);
}

int store_vm_nic_networks(Store *st, int64_t vm_id, char (**ret)[64]) {
        return store_query_rows(st, row_name64, 64, (void **) ret,
                                "SELECT DISTINCT network FROM vm_nic WHERE vm_id = ? ORDER BY network", "i", vm_id);
}

int store_vm_nic_mac_used(Store *st, const char *mac, bool *ret) {
        int64_t n = 0;
        int r = store_query_i64(st, &n, "SELECT count(*) FROM vm_nic WHERE mac = ?", "s", mac);
        if (r < 0)
                return r;
        *ret = n > 0;
        return 0;
}

int store_vm_nic_users(Store *st, const char *name, int limit, json_t **ret) {
        return store_query_json(st, ret,
                                "SELECT DISTINCT v.id, v.name FROM vm_nic x JOIN vm v ON v.id = x.vm_id WHERE x.network = ?"
                                " ORDER BY v.name LIMIT ?", "si", name, (int64_t) limit);
}

/* ---- storage pools ---- */

/* Whether the records of host_id are pools already (a quiet host's refresh
 * then writes nothing). */
static bool pool_stats_same(Store *st, int64_t host_id, const StorePoolStat *pools, size_t n) {
        _cleanup_json_ json_t *old = NULL;
        if (store_query_json(st, &old, "SELECT name, type, active, coalesce(path, '') AS path, capacity, allocation, available,"
                             " n_volumes FROM pool_stat WHERE host_id = ? ORDER BY name", "i", host_id) < 0 ||
            json_array_size(old) != n)
                return false;
        for (size_t i = 0; i < n; i++) {
                json_t *o = NULL;
                for (size_t k = 0; k < n && !o; k++)
                        if (streq(jget_str(json_array_get(old, k), "name"), pools[i].name))
                                o = json_array_get(old, k);
                if (!o || !streq(jget_str(o, "type"), pools[i].type) || jget_int(o, "active") != (int64_t) pools[i].active ||
                    !streq(jget_str(o, "path"), pools[i].path ? pools[i].path : "") ||
                    jget_int(o, "capacity") != (int64_t) pools[i].capacity || jget_int(o, "allocation") != (int64_t) pools[i].allocation ||
                    jget_int(o, "available") != (int64_t) pools[i].available || jget_int(o, "n_volumes") != (int64_t) pools[i].n_volumes)
                        return false;
        }
        return true;
}

int store_pool_stats_set(Store *st, int64_t host_id, const StorePoolStat *pools, size_t n) {
        if (pool_stats_same(st, host_id, pools, n))
                return 0;
        int r = store_begin(st);
        if (r < 0)
                return r;
        r = store_exec(st, "DELETE FROM pool_stat WHERE host_id = ?", "i", host_id);
        int64_t now = now_ms();
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = store_exec(st, "INSERT INTO pool_stat(host_id, name, type, active, path, capacity, allocation, available,"
                               " n_volumes, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)", "issbsiiiii", host_id, pools[i].name,
                               pools[i].type, (int) pools[i].active, or_null(pools[i].path), (int64_t) pools[i].capacity,
                               (int64_t) pools[i].allocation, (int64_t) pools[i].available, (int64_t) pools[i].n_volumes, now);
        return store_end(st, r);
}

int store_pool_stat_delete(Store *st, int64_t host_id, const char *name) {
        return store_exec(st, "DELETE FROM pool_stat WHERE host_id = ? AND name = ?", "is", host_id, name);
}

int store_pool_stat_list(Store *st, int64_t host_id, json_t **ret) {
        return store_query_json(st, ret,
                                "SELECT p.host_id, h.name AS host_name, h.group_id, p.name, p.type, p.active AS active_bool,"
                                " p.path, p.capacity AS capacity_bytes, p.allocation AS allocation_bytes, p.available AS available_bytes,"
                                " p.n_volumes, CASE WHEN h.pool IS NULL THEN NULL WHEN p.name = h.pool THEN 1 ELSE 0 END AS armada_bool, p.updated_at"
                                " FROM pool_stat p JOIN host h ON h.id = p.host_id WHERE (?1 = 0 OR p.host_id = ?1)"
                                " ORDER BY h.name, p.name", "i", host_id);
}

int store_volume_users(Store *st, int64_t host_id, json_t **ret) {
        return store_query_json(st, ret,
                                "SELECT d.path, v.id AS vm_id, v.name AS vm_name FROM vm_disk d JOIN vm v ON v.id = d.vm_id"
                                " WHERE v.host_id = ?", "i", host_id);
}
