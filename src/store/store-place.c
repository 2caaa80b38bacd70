/* The place capability's tables and SQL (see store.h for the conventions
 * and store-place.h for what each function does). */
#include "store-place.h"
#include "store-priv.h"

#include <errno.h>
#include <math.h>
#include <string.h>

static int cluster_ids_autoincrement(Store *st) {
        return store_table_autoincrement(st, "cluster", "cluster");
}

/* The "place-generation" migration once kept a counter of every change to
 * placement's inputs (a table place_generation and triggers place_gen_*);
 * place_dirty below replaced it and nothing read it any more, but its
 * triggers still fired on every write. Its entry stays in the list (a
 * database that has it applied upgrades in order) and does nothing now;
 * "place-generation-drop" removes the table and the triggers where an
 * older armadad created them. */
typedef struct {
        char name[64];
} TriggerName;

static void row_trigger_name(StoreRow *stmt, void *out) {
        store_copy_text(((TriggerName *) out)->name, sizeof ((TriggerName *) out)->name, stmt, 0);
}

static int place_generation_drop(Store *st) {
        _cleanup_free_ TriggerName *t = NULL;
        int n = store_query_rows(st, row_trigger_name, sizeof *t, (void **) &t,
                                 "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'place\\_gen\\_%' ESCAPE '\\'", "");
        if (n < 0)
                return n;
        for (int i = 0; i < n; i++) {
                /* names read from the schema above, of the form place_gen_<table>_<what> */
                _cleanup_free_ char *sql = xasprintf("DROP TRIGGER IF EXISTS \"%s\"", t[i].name);
                int r = store_exec(st, sql, "");
                if (r < 0)
                        return r;
        }
        return store_exec(st, "DROP TABLE IF EXISTS place_generation", "");
}

/* ---- what changed since a sequence number (place_dirty) ----
 * Triggers on every table placement reads note which host's inputs a change
 * touches (place_dirty: a host id, or one of the global keys below for the
 * small whole-estate tables) and, separately, hosts whose measured usage
 * alone changed (place_dirty_usage), each with the value of one counter
 * (place_seq) that every noted change raises. A reader that knows the
 * inputs at sequence s re-reads only the keys noted after s. Each key is one
 * row (its last change), so the tables never outgrow the estate. */
#define DIRTY_GROUPS "-1"       /* host groups and their policies */
#define DIRTY_CLUSTERS "-2"     /* clusters, members, HA VMs, hosts' states */
#define DIRTY_RULES "-3"        /* placement rules and their VMs */

static const struct {
        const char *table;
        const char *const columns[6];   /* an UPDATE of these counts (NULL-ended) */
        bool usage;                     /* keys go to place_dirty_usage */
        const char *const keys[4];      /* expressions of R (the row: NEW or OLD) */
} DIRTY_TABLES[] = {
        { "host", { "name", "group_id", "state", "cpus", "memory_mib" }, false, { "R.id", DIRTY_CLUSTERS } },
        { "host_usage", { "cpu_pct", "memory_used_mib", "disk_io_pct", "network_pct", "sampled_at" }, true, { "R.host_id" } },
        { "host_pool", { "capacity_bytes", "available_bytes" }, false, { "R.host_id" } },
        { "vm", { "name", "host_id", "state", "cpus", "memory_mib" }, false, { "R.host_id", DIRTY_CLUSTERS, DIRTY_RULES } },
        { "vm_disk", { "vm_id", "size_bytes" }, false, { "(SELECT v.host_id FROM vm v WHERE v.id = R.vm_id)" } },
        { "vm_ha", { "vm_id" }, false, { DIRTY_CLUSTERS } },
        { "cluster", { "tolerate" }, false, { DIRTY_CLUSTERS } },
        { "cluster_member", { "cluster_id", "host_id" }, false, { DIRTY_CLUSTERS } },
        { "placement_rule", { "kind" }, false, { DIRTY_RULES } },
        { "placement_rule_member", { "rule_id", "vm_id" }, false, { DIRTY_RULES } },
        { "placement_reservation", { "host_id", "cpus", "memory_mib", "disk_bytes" }, false, { "R.host_id" } },
        { "host_group", { "parent_id" }, false, { DIRTY_GROUPS } },
        { "host_group_policy", { "cpu_pct", "memory_mib", "disk_gib", "goal", "w_cpu", "w_memory" }, false, { DIRTY_GROUPS } },
        { "host_group_policy", { "disk_io_pct", "network_pct", "w_disk", "w_disk_io", "w_network" }, false, { DIRTY_GROUPS } },
};

/* The statements that note table i's keys for the row alias row. */
static void dirty_notes(StrBuf *b, size_t i, const char *row) {
        const char *into = DIRTY_TABLES[i].usage ? "place_dirty_usage(host_id, seq)" : "place_dirty(key, seq)";
        const char *key = DIRTY_TABLES[i].usage ? "host_id" : "key";
        for (size_t k = 0; k < ELEMENTSOF(DIRTY_TABLES[i].keys) && DIRTY_TABLES[i].keys[k]; k++) {
                const char *e = DIRTY_TABLES[i].keys[k];
                StrBuf expr = {0};
                for (const char *p = e; *p; p++)
                        if (p[0] == 'R' && p[1] == '.') {
                                strbuf_printf(&expr, "%s", row);
                                p++;
                        } else
                                strbuf_printf(&expr, "%c", *p);
                strbuf_printf(b, " INSERT INTO %s SELECT k, s.seq FROM (SELECT %s AS k) JOIN place_seq s"
                                 " WHERE k IS NOT NULL ON CONFLICT(%s) DO UPDATE SET seq = excluded.seq;",
                              into, expr.s, key);
                strbuf_free(&expr);
        }
}

static int place_dirty(Store *st) {
        static const char *const tables[] = {
                "CREATE TABLE place_seq (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL)",
                "INSERT INTO place_seq(id, seq) VALUES (1, 1)",
                "CREATE TABLE place_dirty (key INTEGER PRIMARY KEY, seq INTEGER NOT NULL)",
                "CREATE INDEX place_dirty_seq_idx ON place_dirty(seq)",
                "CREATE TABLE place_dirty_usage (host_id INTEGER PRIMARY KEY, seq INTEGER NOT NULL)",
                "CREATE INDEX place_dirty_usage_seq_idx ON place_dirty_usage(seq)",
        };
        int r = 0;
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(tables); i++)
                r = store_exec(st, tables[i], "");
        static const char bump[] = " UPDATE place_seq SET seq = seq + 1 WHERE id = 1;";
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(DIRTY_TABLES); i++) {
                /* names from the list above, never from a user */
                const char *t = DIRTY_TABLES[i].table;
                if (i == 0 || !streq(DIRTY_TABLES[i - 1].table, t)) {
                        static const char *const ev[] = { "INSERT", "DELETE" };
                        for (size_t e = 0; r >= 0 && e < 2; e++) {
                                StrBuf b = {0};
                                strbuf_printf(&b, "CREATE TRIGGER place_dirty_%s_%s AFTER %s ON %s BEGIN%s", t, ev[e], ev[e], t, bump);
                                dirty_notes(&b, i, e == 0 ? "NEW." : "OLD.");
                                strbuf_printf(&b, " END");
                                r = store_exec(st, b.s, "");
                                strbuf_free(&b);
                        }
                }
                StrBuf of = {0}, when = {0}, b = {0};
                for (size_t k = 0; k < ELEMENTSOF(DIRTY_TABLES[i].columns) && DIRTY_TABLES[i].columns[k]; k++) {
                        const char *c = DIRTY_TABLES[i].columns[k];
                        strbuf_printf(&of, "%s%s", k ? ", " : "", c);
                        strbuf_printf(&when, "%sOLD.%s IS NOT NEW.%s", k ? " OR " : "", c, c);
                }
                strbuf_printf(&b, "CREATE TRIGGER place_dirty_%s_update%zu AFTER UPDATE OF %s ON %s WHEN %s BEGIN%s", t, i, of.s, t,
                              when.s, bump);
                dirty_notes(&b, i, "OLD.");
                dirty_notes(&b, i, "NEW.");
                strbuf_printf(&b, " END");
                if (r >= 0)
                        r = store_exec(st, b.s, "");
                strbuf_free(&of);
                strbuf_free(&when);
                strbuf_free(&b);
        }
        return r;
}

/* place_dirty() in PostgreSQL's words. A trigger there runs a function:
 * one, place_dirty_note(), serves every table, told by its arguments what
 * to note for the row (OLD and NEW for an UPDATE): the first argument
 * 'usage' (keys go to place_dirty_usage) or '', then the keys: a column of
 * the row holding a host id, a global key (a negative number), or
 * 'vm:<column>' (the host of the VM whose id the column holds). The tables,
 * columns and keys are DIRTY_TABLES's (host_group_policy's two UPDATE
 * triggers are one here). */
#define PG_DIRTY(table, args, columns, old_row, new_row) \
        "CREATE TRIGGER place_dirty_" table "_insert_delete AFTER INSERT OR DELETE ON " table \
        " FOR EACH ROW EXECUTE FUNCTION place_dirty_note(" args ");" \
        "CREATE TRIGGER place_dirty_" table "_update AFTER UPDATE OF " columns " ON " table \
        " FOR EACH ROW WHEN ((" old_row ") IS DISTINCT FROM (" new_row ")) EXECUTE FUNCTION place_dirty_note(" args ");"
#define PLACE_DIRTY_PG \
        "CREATE TABLE place_seq (id BIGINT PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL);" \
        "INSERT INTO place_seq(id, seq) VALUES (1, 1);" \
        "CREATE TABLE place_dirty (key BIGINT PRIMARY KEY, seq BIGINT NOT NULL);" \
        "CREATE INDEX place_dirty_seq_idx ON place_dirty(seq);" \
        "CREATE TABLE place_dirty_usage (host_id BIGINT PRIMARY KEY, seq BIGINT NOT NULL);" \
        "CREATE INDEX place_dirty_usage_seq_idx ON place_dirty_usage(seq);" \
        "CREATE FUNCTION place_dirty_note() RETURNS trigger LANGUAGE plpgsql AS $$" \
        " DECLARE s BIGINT; r JSONB; a TEXT; k BIGINT; rs JSONB[];" \
        " BEGIN" \
        "  UPDATE place_seq SET seq = seq + 1 WHERE id = 1 RETURNING seq INTO s;" \
        "  IF TG_OP = 'INSERT' THEN rs := ARRAY[to_jsonb(NEW)];" \
        "  ELSIF TG_OP = 'DELETE' THEN rs := ARRAY[to_jsonb(OLD)];" \
        "  ELSE rs := ARRAY[to_jsonb(OLD), to_jsonb(NEW)];" \
        "  END IF;" \
        "  FOREACH r IN ARRAY rs LOOP" \
        "   FOREACH a IN ARRAY TG_ARGV[1:] LOOP" \
        "    IF a LIKE 'vm:%' THEN k := (SELECT v.host_id FROM vm v WHERE v.id = (r ->> substr(a, 4))::BIGINT);" \
        "    ELSIF a LIKE '-%' THEN k := a::BIGINT;" \
        "    ELSE k := (r ->> a)::BIGINT;" \
        "    END IF;" \
        "    IF k IS NULL THEN CONTINUE; END IF;" \
        "    IF TG_ARGV[0] = 'usage' THEN" \
        "     INSERT INTO place_dirty_usage(host_id, seq) VALUES (k, s) ON CONFLICT(host_id) DO UPDATE SET seq = excluded.seq;" \
        "    ELSE" \
        "     INSERT INTO place_dirty(key, seq) VALUES (k, s) ON CONFLICT(key) DO UPDATE SET seq = excluded.seq;" \
        "    END IF;" \
        "   END LOOP;" \
        "  END LOOP;" \
        "  RETURN NULL;" \
        " END $$;" \
        PG_DIRTY("host", "'', 'id', '" DIRTY_CLUSTERS "'", "name, group_id, state, cpus, memory_mib", \
                 "OLD.name, OLD.group_id, OLD.state, OLD.cpus, OLD.memory_mib", \
                 "NEW.name, NEW.group_id, NEW.state, NEW.cpus, NEW.memory_mib") \
        PG_DIRTY("host_usage", "'usage', 'host_id'", "cpu_pct, memory_used_mib, disk_io_pct, network_pct, sampled_at", \
                 "OLD.cpu_pct, OLD.memory_used_mib, OLD.disk_io_pct, OLD.network_pct, OLD.sampled_at", \
                 "NEW.cpu_pct, NEW.memory_used_mib, NEW.disk_io_pct, NEW.network_pct, NEW.sampled_at") \
        PG_DIRTY("host_pool", "'', 'host_id'", "capacity_bytes, available_bytes", \
                 "OLD.capacity_bytes, OLD.available_bytes", "NEW.capacity_bytes, NEW.available_bytes") \
        PG_DIRTY("vm", "'', 'host_id', '" DIRTY_CLUSTERS "', '" DIRTY_RULES "'", "name, host_id, state, cpus, memory_mib", \
                 "OLD.name, OLD.host_id, OLD.state, OLD.cpus, OLD.memory_mib", \
                 "NEW.name, NEW.host_id, NEW.state, NEW.cpus, NEW.memory_mib") \
        PG_DIRTY("vm_disk", "'', 'vm:vm_id'", "vm_id, size_bytes", "OLD.vm_id, OLD.size_bytes", "NEW.vm_id, NEW.size_bytes") \
        PG_DIRTY("vm_ha", "'', '" DIRTY_CLUSTERS "'", "vm_id", "OLD.vm_id", "NEW.vm_id") \
        PG_DIRTY("cluster", "'', '" DIRTY_CLUSTERS "'", "tolerate", "OLD.tolerate", "NEW.tolerate") \
        PG_DIRTY("cluster_member", "'', '" DIRTY_CLUSTERS "'", "cluster_id, host_id", \
                 "OLD.cluster_id, OLD.host_id", "NEW.cluster_id, NEW.host_id") \
        PG_DIRTY("placement_rule", "'', '" DIRTY_RULES "'", "kind", "OLD.kind", "NEW.kind") \
        PG_DIRTY("placement_rule_member", "'', '" DIRTY_RULES "'", "rule_id, vm_id", \
                 "OLD.rule_id, OLD.vm_id", "NEW.rule_id, NEW.vm_id") \
        PG_DIRTY("placement_reservation", "'', 'host_id'", "host_id, cpus, memory_mib, disk_bytes", \
                 "OLD.host_id, OLD.cpus, OLD.memory_mib, OLD.disk_bytes", "NEW.host_id, NEW.cpus, NEW.memory_mib, NEW.disk_bytes") \
        PG_DIRTY("host_group", "'', '" DIRTY_GROUPS "'", "parent_id", "OLD.parent_id", "NEW.parent_id") \
        PG_DIRTY("host_group_policy", "'', '" DIRTY_GROUPS "'", \
                 "cpu_pct, memory_mib, disk_gib, goal, w_cpu, w_memory, disk_io_pct, network_pct, w_disk, w_disk_io, w_network", \
                 "OLD.cpu_pct, OLD.memory_mib, OLD.disk_gib, OLD.goal, OLD.w_cpu, OLD.w_memory, OLD.disk_io_pct," \
                 " OLD.network_pct, OLD.w_disk, OLD.w_disk_io, OLD.w_network", \
                 "NEW.cpu_pct, NEW.memory_mib, NEW.disk_gib, NEW.goal, NEW.w_cpu, NEW.w_memory, NEW.disk_io_pct," \
                 " NEW.network_pct, NEW.w_disk, NEW.w_disk_io, NEW.w_network")

const StoreMigration store_migrations_place[] = {
        /* Clusters (built by the ha capability, whose failover reserve the
         * placement engine honours). Exact schema agreed with ha. */
        { "place-clusters", "CREATE TABLE cluster ("
        "  id INTEGER PRIMARY KEY,"
        "  name TEXT NOT NULL UNIQUE,"
        "  shared_storage TEXT NOT NULL,"
        "  tolerate INTEGER NOT NULL DEFAULT 1,"
        "  created_at INTEGER NOT NULL);"
        "CREATE TABLE cluster_member ("
        "  cluster_id INTEGER NOT NULL REFERENCES cluster(id) ON DELETE CASCADE,"
        "  host_id INTEGER NOT NULL UNIQUE REFERENCES host(id) ON DELETE CASCADE);"
        "CREATE TABLE vm_ha ("
        "  vm_id INTEGER PRIMARY KEY REFERENCES vm(id) ON DELETE CASCADE,"
        "  priority INTEGER NOT NULL DEFAULT 2 /* 1 high, 2 medium, 3 low */);" },
        /* Measured load, written by the monitor capability, read here. */
        { "place-usage", "CREATE TABLE host_usage ("
        "  host_id INTEGER PRIMARY KEY REFERENCES host(id) ON DELETE CASCADE,"
        "  cpu_pct REAL,"
        "  memory_used_mib REAL,"
        "  disk_io_pct REAL,"
        "  network_pct REAL,"
        "  sampled_at INTEGER NOT NULL);" },
        { "place-1", "CREATE TABLE host_pool ("
        "  host_id INTEGER PRIMARY KEY REFERENCES host(id) ON DELETE CASCADE,"
        "  capacity_bytes INTEGER NOT NULL,"
        "  available_bytes INTEGER NOT NULL,"
        "  sampled_at INTEGER NOT NULL);"
        "CREATE TABLE host_group_policy ("
        "  group_id INTEGER PRIMARY KEY REFERENCES host_group(id) ON DELETE CASCADE,"
        "  cpu_pct REAL, memory_mib REAL, disk_gib REAL, disk_io_pct REAL, network_pct REAL,"
        "  w_cpu REAL, w_memory REAL, w_disk REAL, w_disk_io REAL, w_network REAL,"
        "  goal TEXT);"
        "CREATE TABLE placement_rule ("
        "  id INTEGER PRIMARY KEY,"
        "  name TEXT NOT NULL UNIQUE,"
        "  kind TEXT NOT NULL CHECK (kind IN ('anti-affinity', 'affinity')),"
        "  created_at INTEGER NOT NULL);"
        "CREATE TABLE placement_rule_member ("
        "  rule_id INTEGER NOT NULL REFERENCES placement_rule(id) ON DELETE CASCADE,"
        "  vm_id INTEGER NOT NULL REFERENCES vm(id) ON DELETE CASCADE,"
        "  PRIMARY KEY(rule_id, vm_id));"
        "CREATE INDEX placement_rule_member_vm_idx ON placement_rule_member(vm_id);" },
        /* Room promised to a VM on a host it is moving to (a migration, a
         * maintenance plan, an HA restart): counted as used there until the
         * move ends. One per VM. */
        { "place-reservation", "CREATE TABLE placement_reservation ("
        "  vm_id INTEGER PRIMARY KEY REFERENCES vm(id) ON DELETE CASCADE,"
        "  host_id INTEGER NOT NULL REFERENCES host(id) ON DELETE CASCADE,"
        "  cpus INTEGER NOT NULL,"
        "  memory_mib INTEGER NOT NULL,"
        "  disk_bytes INTEGER NOT NULL DEFAULT 0,"
        "  created_at INTEGER NOT NULL);"
        "CREATE INDEX placement_reservation_host_idx ON placement_reservation(host_id);" },
        /* A cluster's id names its shared pool on every member
         * ("armada-cluster-<id>"): a new cluster with a removed one's id
         * would find that pool, at the old cluster's path. */
        { "place-cluster-ids-autoincrement", NULL, cluster_ids_autoincrement },
        /* Was: a counter of the changes to what placement reads, kept by
         * triggers. Replaced by place-dirty, dropped by
         * place-generation-drop; kept so databases upgrade in order. */
        { "place-generation", "SELECT 1", NULL },
        /* What changed since a sequence number, kept by triggers: placement
         * keeps its inputs in memory and re-reads only that. */
        { "place-dirty", NULL, place_dirty, PLACE_DIRTY_PG },
        /* PostgreSQL never had the triggers: nothing to drop. */
        { "place-generation-drop", NULL, place_generation_drop, STORE_PG_NONE },
        { NULL, NULL },
};

/* ------------------------------------------------------------------ */

static double real_or_nan(StoreStmt *stmt, int col) {
        return store_col_null(stmt, col) ? NAN : store_col_double(stmt, col);
}

static uint64_t u64(StoreStmt *stmt, int col) {
        int64_t v = store_col_i64(stmt, col);
        return v > 0 ? (uint64_t) v : 0;
}

/* ------------------------------------------------------------------ */
/* placement input */

static void row_place_host(StoreRow *stmt, void *out) {
        StorePlaceHost *h = out;
        h->id = store_col_i64(stmt, 0);
        store_copy_text(h->name, sizeof h->name, stmt, 1);
        h->group_id = store_col_i64(stmt, 2);
        store_copy_text(h->state, sizeof h->state, stmt, 3);
        h->cpus = (unsigned) u64(stmt, 4);
        h->memory_mib = u64(stmt, 5);
        h->usage_at = store_col_i64(stmt, 6);
        h->cpu_pct = real_or_nan(stmt, 7);
        h->memory_used_mib = real_or_nan(stmt, 8);
        h->disk_io_pct = real_or_nan(stmt, 9);
        h->network_pct = real_or_nan(stmt, 10);
        h->has_pool = store_col_int(stmt, 11) != 0;
        h->pool_capacity_bytes = u64(stmt, 12);
        h->pool_available_bytes = u64(stmt, 13);
        h->alloc_cpus = u64(stmt, 14);
        h->alloc_memory_mib = u64(stmt, 15);
        h->creating_cpus = u64(stmt, 16);
        h->creating_memory_mib = u64(stmt, 17);
        h->alloc_disk_bytes = u64(stmt, 18);
        h->reserved_cpus = u64(stmt, 19);
        h->reserved_memory_mib = u64(stmt, 20);
        h->reserved_disk_bytes = u64(stmt, 21);
}

/* The columns of row_place_host(), ?2 the VM left out. */
#define PLACE_HOST_SELECT \
        "SELECT h.id, h.name, h.group_id, h.state, h.cpus, h.memory_mib," \
        "  coalesce(u.sampled_at, 0), u.cpu_pct, u.memory_used_mib, u.disk_io_pct, u.network_pct," \
        "  CASE WHEN p.host_id IS NULL THEN 0 ELSE 1 END, p.capacity_bytes, p.available_bytes," \
        "  (SELECT coalesce(sum(v.cpus), 0) FROM vm v WHERE v.host_id = h.id AND v.id <> ?2" \
        "     AND v.state IN (" STORE_PLACE_ACTIVE_STATES "))," \
        "  (SELECT coalesce(sum(v.memory_mib), 0) FROM vm v WHERE v.host_id = h.id AND v.id <> ?2" \
        "     AND v.state IN (" STORE_PLACE_ACTIVE_STATES "))," \
        "  (SELECT coalesce(sum(v.cpus), 0) FROM vm v WHERE v.host_id = h.id AND v.id <> ?2 AND v.state = 'creating')," \
        "  (SELECT coalesce(sum(v.memory_mib), 0) FROM vm v WHERE v.host_id = h.id AND v.id <> ?2 AND v.state = 'creating')," \
        "  (SELECT coalesce(sum(d.size_bytes), 0) FROM vm v JOIN vm_disk d ON d.vm_id = v.id" \
        "     WHERE v.host_id = h.id AND v.id <> ?2 AND v.state <> 'deleting')," \
        /* moves in flight to h; a VM the database already places on h \
         * counts once, as an allocation */ \
        "  (SELECT coalesce(sum(x.cpus), 0) FROM placement_reservation x JOIN vm v ON v.id = x.vm_id" \
        "     WHERE x.host_id = h.id AND x.vm_id <> ?2 AND coalesce(v.host_id, 0) <> h.id)," \
        "  (SELECT coalesce(sum(x.memory_mib), 0) FROM placement_reservation x JOIN vm v ON v.id = x.vm_id" \
        "     WHERE x.host_id = h.id AND x.vm_id <> ?2 AND coalesce(v.host_id, 0) <> h.id)," \
        "  (SELECT coalesce(sum(x.disk_bytes), 0) FROM placement_reservation x JOIN vm v ON v.id = x.vm_id" \
        "     WHERE x.host_id = h.id AND x.vm_id <> ?2 AND coalesce(v.host_id, 0) <> h.id)" \
        " FROM host h LEFT JOIN host_usage u ON u.host_id = h.id LEFT JOIN host_pool p ON p.host_id = h.id"

int store_place_hosts(Store *st, int64_t group_id, int64_t exclude_vm_id, StorePlaceHost **ret) {
        static const char sql[] =
                "WITH RECURSIVE sub(id) AS (SELECT ?1 UNION ALL SELECT g.id FROM host_group g JOIN sub ON g.parent_id = sub.id) "
                PLACE_HOST_SELECT " WHERE h.group_id IN (SELECT id FROM sub) ORDER BY h.id";
        return store_query_rows(st, row_place_host, sizeof(StorePlaceHost), (void **) ret, sql, "ii",
                                group_id > 0 ? group_id : (int64_t) STORE_ROOT_GROUP_ID, exclude_vm_id);
}

int store_place_seq(Store *st, int64_t *ret) {
        return store_query_i64(st, ret, "SELECT seq FROM place_seq WHERE id = 1", "");
}

static void row_key(StoreRow *stmt, void *out) {
        *(int64_t *) out = store_col_i64(stmt, 0);
}

int store_place_changed_keys(Store *st, int64_t since, int64_t **ret) {
        return store_query_rows(st, row_key, sizeof(int64_t), (void **) ret,
                                "SELECT key FROM place_dirty WHERE seq > ? ORDER BY key", "i", since);
}

int store_place_hosts_changed(Store *st, int64_t since, StorePlaceHost **ret) {
        return store_query_rows(st, row_place_host, sizeof(StorePlaceHost), (void **) ret,
                                PLACE_HOST_SELECT " WHERE h.id IN (SELECT key FROM place_dirty WHERE seq > ?1 AND key > 0)"
                                " ORDER BY h.id", "ii", since, (int64_t) 0);
}

int store_place_hosts_of_vm(Store *st, int64_t vm_id, StorePlaceHost **ret) {
        return store_query_rows(st, row_place_host, sizeof(StorePlaceHost), (void **) ret,
                                PLACE_HOST_SELECT " WHERE ?1 = ?2 AND h.id IN (SELECT host_id FROM vm WHERE id = ?2"
                                " UNION SELECT host_id FROM placement_reservation WHERE vm_id = ?2) ORDER BY h.id",
                                "ii", vm_id, vm_id);
}

static void row_place_usage(StoreRow *stmt, void *out) {
        StorePlaceUsage *u = out;
        u->host_id = store_col_i64(stmt, 0);
        u->usage_at = store_col_i64(stmt, 1);
        u->cpu_pct = real_or_nan(stmt, 2);
        u->memory_used_mib = real_or_nan(stmt, 3);
        u->disk_io_pct = real_or_nan(stmt, 4);
        u->network_pct = real_or_nan(stmt, 5);
}

int store_place_usage_changed(Store *st, int64_t since, StorePlaceUsage **ret) {
        return store_query_rows(st, row_place_usage, sizeof(StorePlaceUsage), (void **) ret,
                                "SELECT d.host_id, coalesce(u.sampled_at, 0), u.cpu_pct, u.memory_used_mib, u.disk_io_pct,"
                                " u.network_pct FROM place_dirty_usage d LEFT JOIN host_usage u ON u.host_id = d.host_id"
                                " WHERE d.seq > ? ORDER BY d.host_id", "i", since);
}

static void row_cluster_member(StoreRow *stmt, void *out) {
        StorePlaceClusterMember *m = out;
        m->cluster_id = store_col_i64(stmt, 0);
        m->tolerate = store_col_int(stmt, 1);
        m->host_id = store_col_i64(stmt, 2);
        m->ha_memory_mib = u64(stmt, 3);
        store_copy_text(m->host_state, sizeof m->host_state, stmt, 4);
}

int store_place_cluster_members(Store *st, int64_t exclude_vm_id, StorePlaceClusterMember **ret) {
        static const char sql[] =
                "SELECT c.id, c.tolerate, m.host_id,"
                "  (SELECT coalesce(sum(v.memory_mib), 0) FROM vm v JOIN vm_ha a ON a.vm_id = v.id"
                "     WHERE v.host_id = m.host_id AND v.id <> ?1 AND v.state IN (" STORE_PLACE_ACTIVE_STATES ")),"
                "  h.state"
                " FROM cluster c JOIN cluster_member m ON m.cluster_id = c.id JOIN host h ON h.id = m.host_id"
                " ORDER BY c.id, m.host_id";
        return store_query_rows(st, row_cluster_member, sizeof(StorePlaceClusterMember), (void **) ret, sql, "i", exclude_vm_id);
}

int store_place_pool_set(Store *st, int64_t host_id, uint64_t capacity_bytes, uint64_t available_bytes) {
        return store_exec(st, "INSERT INTO host_pool(host_id, capacity_bytes, available_bytes, sampled_at) VALUES (?,?,?,?)"
                              " ON CONFLICT(host_id) DO UPDATE SET capacity_bytes = excluded.capacity_bytes,"
                              " available_bytes = excluded.available_bytes, sampled_at = excluded.sampled_at",
                          "iiii", host_id, (int64_t) capacity_bytes, (int64_t) available_bytes, now_ms());
}

int store_place_reserve(Store *st, int64_t vm_id, int64_t host_id, unsigned cpus, uint64_t memory_mib, uint64_t disk_bytes) {
        return store_exec(st, "INSERT INTO placement_reservation(vm_id, host_id, cpus, memory_mib, disk_bytes, created_at)"
                              " VALUES (?,?,?,?,?,?) ON CONFLICT(vm_id) DO UPDATE SET host_id = excluded.host_id,"
                              " cpus = excluded.cpus, memory_mib = excluded.memory_mib, disk_bytes = excluded.disk_bytes,"
                              " created_at = excluded.created_at",
                          "iiiiii", vm_id, host_id, (int64_t) cpus, (int64_t) memory_mib, (int64_t) disk_bytes, now_ms());
}

int store_place_release(Store *st, int64_t vm_id, int64_t host_id) {
        if (host_id > 0)
                return store_exec(st, "DELETE FROM placement_reservation WHERE vm_id = ? AND host_id = ?", "ii", vm_id, host_id);
        return store_exec(st, "DELETE FROM placement_reservation WHERE vm_id = ?", "i", vm_id);
}

int store_place_release_all(Store *st) {
        return store_exec(st, "DELETE FROM placement_reservation", "");
}

/* ------------------------------------------------------------------ */
/* policies */

#define POLICY_COLS "p.cpu_pct, p.memory_mib, p.disk_gib, p.disk_io_pct, p.network_pct," \
                    " p.w_cpu, p.w_memory, p.w_disk, p.w_disk_io, p.w_network, p.goal"

static void row_policy(StoreRow *stmt, void *out) {
        StoreGroupPolicy *p = out;
        p->group_id = store_col_i64(stmt, 0);
        p->parent_id = store_col_i64(stmt, 1);
        for (int f = 0; f < STORE_POLICY__COUNT; f++) {
                p->set[f] = !store_col_null(stmt, 2 + f);
                p->value[f] = p->set[f] ? store_col_double(stmt, 2 + f) : 0;
        }
        store_copy_text(p->goal, sizeof p->goal, stmt, 2 + STORE_POLICY__COUNT);
}

const double store_policy_defaults[STORE_POLICY__COUNT] = { 10, 512, 10, 0, 0, 1, 1, 0.5, 0.5, 0.5 };
const char *const store_policy_names[STORE_POLICY__COUNT] = {
        "cpu_pct", "memory_mib", "disk_gib", "disk_io_pct", "network_pct", "cpu", "memory", "disk", "disk_io", "network",
};

static const StoreGroupPolicy *policy_find(const StoreGroupPolicy *all, size_t n, int64_t id) {
        size_t lo = 0, hi = n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (all[mid].group_id == id)
                        return &all[mid];
                if (all[mid].group_id < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

void store_policy_resolve(const StoreGroupPolicy *all, size_t n, int64_t group_id, StoreEffectivePolicy *ret) {
        StoreEffectivePolicy e = { .goal_from = -1 };
        for (int f = 0; f < STORE_POLICY__COUNT; f++)
                e.from[f] = -1;
        /* depth bound: a cycle can only come from a corrupt table */
        const StoreGroupPolicy *g = policy_find(all, n, group_id);
        for (int depth = 0; g && depth < 1000; depth++) {
                for (int f = 0; f < STORE_POLICY__COUNT; f++)
                        if (e.from[f] < 0 && g->set[f]) {
                                e.value[f] = g->value[f];
                                e.from[f] = g->group_id;
                        }
                if (e.goal_from < 0 && g->goal[0]) {
                        snprintf(e.goal, sizeof e.goal, "%s", g->goal);
                        e.goal_from = g->group_id;
                }
                g = g->parent_id > 0 ? policy_find(all, n, g->parent_id) : NULL;
        }
        for (int f = 0; f < STORE_POLICY__COUNT; f++)
                if (e.from[f] < 0) {
                        e.value[f] = store_policy_defaults[f];
                        e.from[f] = 0;
                }
        if (e.goal_from < 0) {
                snprintf(e.goal, sizeof e.goal, "%s", STORE_POLICY_DEFAULT_GOAL);
                e.goal_from = 0;
        }
        *ret = e;
}

int store_policy_get(Store *st, int64_t group_id, StoreGroupPolicy *ret) {
        StoreGroupPolicy *arr = NULL;
        int n = store_query_rows(st, row_policy, sizeof *arr, (void **) &arr,
                     "SELECT g.id, coalesce(g.parent_id, 0), " POLICY_COLS
                     " FROM host_group g LEFT JOIN host_group_policy p ON p.group_id = g.id WHERE g.id = ?", "i", group_id);
        if (n < 0)
                return n;
        if (n == 0) {
                free(arr);
                return -ENOENT;
        }
        *ret = arr[0];
        free(arr);
        return 0;
}

int store_policy_all(Store *st, StoreGroupPolicy **ret) {
        return store_query_rows(st, row_policy, sizeof(StoreGroupPolicy), (void **) ret,
                    "SELECT g.id, coalesce(g.parent_id, 0), " POLICY_COLS
                    " FROM host_group g LEFT JOIN host_group_policy p ON p.group_id = g.id ORDER BY g.id", "");
}

int store_policy_set(Store *st, const StoreGroupPolicy *p) {
        bool any = p->goal[0] != 0;
        for (int f = 0; f < STORE_POLICY__COUNT; f++)
                any = any || p->set[f];
        if (!any)
                return store_exec(st, "DELETE FROM host_group_policy WHERE group_id = ?", "i", p->group_id);
        static const char sql[] =
                "INSERT INTO host_group_policy(group_id, cpu_pct, memory_mib, disk_gib, disk_io_pct, network_pct,"
                " w_cpu, w_memory, w_disk, w_disk_io, w_network, goal) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(group_id) DO UPDATE SET cpu_pct = excluded.cpu_pct, memory_mib = excluded.memory_mib,"
                " disk_gib = excluded.disk_gib, disk_io_pct = excluded.disk_io_pct, network_pct = excluded.network_pct,"
                " w_cpu = excluded.w_cpu, w_memory = excluded.w_memory, w_disk = excluded.w_disk,"
                " w_disk_io = excluded.w_disk_io, w_network = excluded.w_network, goal = excluded.goal";
        StoreStmt *stmt = NULL;
        int rc = store_prepare(st, sql, &stmt);
        if (rc < 0)
                return rc;
        store_bind_i64(stmt, 1, p->group_id);
        for (int f = 0; f < STORE_POLICY__COUNT; f++) {
                if (p->set[f])
                        store_bind_double(stmt, 2 + f, p->value[f]);
                else
                        store_bind_null(stmt, 2 + f);
        }
        if (p->goal[0])
                store_bind_text(stmt, 2 + STORE_POLICY__COUNT, p->goal);
        else
                store_bind_null(stmt, 2 + STORE_POLICY__COUNT);
        rc = store_step(stmt);
        int r = rc == STORE_DONE ? 0 : rc < 0 ? rc : -EIO;
        store_finalize(stmt);
        return r;
}

/* ------------------------------------------------------------------ */
/* rules */

static void row_rule_member(StoreRow *stmt, void *out) {
        StorePlaceRuleMember *m = out;
        m->rule_id = store_col_i64(stmt, 0);
        store_copy_text(m->kind, sizeof m->kind, stmt, 1);
        m->vm_id = store_col_i64(stmt, 2);
        store_copy_text(m->vm_name, sizeof m->vm_name, stmt, 3);
        m->host_id = store_col_i64(stmt, 4);
}

int store_place_rule_members(Store *st, StorePlaceRuleMember **ret) {
        return store_query_rows(st, row_rule_member, sizeof(StorePlaceRuleMember), (void **) ret,
                    "SELECT r.id, r.kind, v.id, v.name, coalesce(v.host_id, 0) FROM placement_rule r"
                    " JOIN placement_rule_member m ON m.rule_id = r.id JOIN vm v ON v.id = m.vm_id ORDER BY r.id, v.id", "");
}

static int members_insert(Store *st, int64_t id, const int64_t *vm_ids, size_t n) {
        for (size_t i = 0; i < n; i++) {
                int r = store_exec(st, "INSERT INTO placement_rule_member(rule_id, vm_id) VALUES (?, ?) ON CONFLICT DO NOTHING", "ii", id, vm_ids[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

int store_rule_insert(Store *st, const char *name, const char *kind, const int64_t *vm_ids, size_t n, int64_t *ret_id) {
        int r = store_begin(st);
        if (r < 0)
                return r;
        r = store_exec(st, "INSERT INTO placement_rule(name, kind, created_at) VALUES (?, ?, ?)", "ssi", name, kind, now_ms());
        int64_t id = r < 0 ? 0 : store_last_id(st);
        if (r >= 0)
                r = members_insert(st, id, vm_ids, n);
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

int store_rule_find(Store *st, const char *name, int64_t *ret_id) {
        return store_query_i64(st, ret_id, "SELECT id FROM placement_rule WHERE name = ?", "s", name);
}

int store_rule_set_members(Store *st, int64_t id, const int64_t *vm_ids, size_t n) {
        int64_t x;
        int r = store_query_i64(st, &x, "SELECT id FROM placement_rule WHERE id = ?", "i", id);
        if (r < 0)
                return r;
        r = store_begin(st);
        if (r < 0)
                return r;
        r = store_exec(st, "DELETE FROM placement_rule_member WHERE rule_id = ?", "i", id);
        if (r >= 0)
                r = members_insert(st, id, vm_ids, n);
        return store_end(st, r);
}

int store_rule_delete(Store *st, int64_t id) {
        int r = store_exec(st, "DELETE FROM placement_rule WHERE id = ?", "i", id);
        if (r < 0)
                return r;
        return store_changes(st) > 0 ? 0 : -ENOENT;
}

/* The rule's VMs' names, sorted, as a JSON array: SQLite's
 * json_group_array, PostgreSQL's json_agg (NULL over no rows). */
#define RULE_JSON_SQLITE "SELECT r.id, r.name, r.kind, r.created_at," \
        " (SELECT json_group_array(name) FROM (SELECT v.name AS name FROM placement_rule_member m" \
        "    JOIN vm v ON v.id = m.vm_id WHERE m.rule_id = r.id ORDER BY v.name)) AS vms_json" \
        " FROM placement_rule r "
#define RULE_JSON_PG "SELECT r.id, r.name, r.kind, r.created_at," \
        " coalesce((SELECT json_agg(v.name ORDER BY v.name) FROM placement_rule_member m" \
        "    JOIN vm v ON v.id = m.vm_id WHERE m.rule_id = r.id), '[]') AS vms_json" \
        " FROM placement_rule r "

int store_rule_list(Store *st, json_t **ret) {
        return store_query_json(st, ret, store_sql(st, RULE_JSON_SQLITE "ORDER BY r.name", RULE_JSON_PG "ORDER BY r.name"), "");
}

int store_rule_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, store_sql(st, RULE_JSON_SQLITE "WHERE r.id = ?", RULE_JSON_PG "WHERE r.id = ?"), "i", id);
}
