/* The monitor capability's tables and SQL (see store-monitor.h). */
#include "store-monitor.h"
#include "store-priv.h"

#include <errno.h>
#include <math.h>
#include <string.h>

const char *const store_perf_metric_names[STORE_PERF__COUNT] = {
        "cpu", "memory", "memory_pct", "disk_read", "disk_write", "disk_iops", "net_rx", "net_tx", "pool_pct",
};
const char *const store_perf_metric_units[STORE_PERF__COUNT] = {
        "percent", "MiB", "percent", "bytes/s", "bytes/s", "requests/s", "bytes/s", "bytes/s", "percent",
};

/* The first migration is written once for both engines: these name what
 * differs (the integer and real types, a rowid key, a table without
 * rowids, the time now in ms). */
#define PERF_COLS_(REAL) "cpu " REAL ", memory " REAL ", memory_pct " REAL ", disk_read " REAL ", disk_write " REAL \
                         ", disk_iops " REAL ", net_rx " REAL ", net_tx " REAL ", pool_pct " REAL
#define ROLLUP_COLS_(REAL) PERF_COLS_(REAL) ", cpu_max " REAL ", memory_max " REAL ", memory_pct_max " REAL \
                           ", disk_read_max " REAL ", disk_write_max " REAL ", disk_iops_max " REAL ", net_rx_max " REAL \
                           ", net_tx_max " REAL ", pool_pct_max " REAL

#define SQLITE_NOW_MS "CAST(strftime('%s','now') AS INTEGER) * 1000"
#define PG_NOW_MS "CAST(extract(epoch FROM now()) * 1000 AS BIGINT)"

#define MONITOR_1(INT, REAL, IDPK, NOROWID, NOW) \
        "CREATE TABLE perf_raw (kind " INT " NOT NULL, object_id " INT " NOT NULL, at " INT " NOT NULL, " PERF_COLS_(REAL) "," \
        "  PRIMARY KEY(kind, object_id, at))" NOROWID ";" \
        "CREATE INDEX perf_raw_at ON perf_raw(at);" \
        "CREATE TABLE perf_5m (kind " INT " NOT NULL, object_id " INT " NOT NULL, at " INT " NOT NULL, n " INT " NOT NULL, " \
        ROLLUP_COLS_(REAL) ", PRIMARY KEY(kind, object_id, at))" NOROWID ";" \
        "CREATE INDEX perf_5m_at ON perf_5m(at);" \
        "CREATE TABLE perf_1h (kind " INT " NOT NULL, object_id " INT " NOT NULL, at " INT " NOT NULL, n " INT " NOT NULL, " \
        ROLLUP_COLS_(REAL) ", PRIMARY KEY(kind, object_id, at))" NOROWID ";" \
        "CREATE INDEX perf_1h_at ON perf_1h(at);" \
        "CREATE TABLE perf_latest (kind " INT " NOT NULL, object_id " INT " NOT NULL, at " INT " NOT NULL, " PERF_COLS_(REAL) "," \
        "  detail TEXT, PRIMARY KEY(kind, object_id))" NOROWID ";" \
        "CREATE TABLE alert_rule (" \
        "  id " IDPK "," \
        "  name TEXT NOT NULL UNIQUE," \
        "  object_kind TEXT NOT NULL," \
        "  metric TEXT NOT NULL," \
        "  comparison TEXT NOT NULL," \
        "  threshold " REAL "," \
        "  state_value TEXT," \
        "  duration_s " INT " NOT NULL DEFAULT 0," \
        "  severity TEXT NOT NULL," \
        "  scope TEXT NOT NULL DEFAULT 'all'," \
        "  scope_id " INT "," \
        "  enabled " INT " NOT NULL DEFAULT 1," \
        "  builtin " INT " NOT NULL DEFAULT 0," \
        "  description TEXT," \
        "  created_at " INT " NOT NULL);" \
        "INSERT INTO alert_rule(name, object_kind, metric, comparison, threshold, state_value, duration_s, severity, builtin, description, created_at) VALUES" \
        " ('host-unreachable', 'host', 'state', '==', NULL, 'unreachable', 0, 'critical', 1, 'A host does not answer.', " NOW ")," \
        " ('host-memory-high', 'host', 'memory_pct', '>', 90, NULL, 300, 'warning', 1, 'A host has used more than 90 % of its memory for 5 minutes.', " NOW ")," \
        " ('vm-crashed', 'vm', 'state', '==', NULL, 'crashed', 0, 'critical', 1, 'A VM crashed.', " NOW ")," \
        " ('pool-full', 'host', 'pool_pct', '>', 85, NULL, 0, 'warning', 1, 'A host''s storage pool is more than 85 % allocated.', " NOW ");" \
        "CREATE TABLE alert (" \
        "  id " IDPK "," \
        "  rule_id " INT " REFERENCES alert_rule(id) ON DELETE SET NULL," \
        "  rule_name TEXT NOT NULL," \
        "  object_kind TEXT NOT NULL," \
        "  object_id " INT " NOT NULL," \
        "  object_name TEXT," \
        "  severity TEXT NOT NULL," \
        "  state TEXT NOT NULL," \
        "  message TEXT NOT NULL," \
        "  value " REAL "," \
        "  opened_at " INT " NOT NULL," \
        "  updated_at " INT " NOT NULL," \
        "  resolved_at " INT "," \
        "  acknowledged_at " INT "," \
        "  acknowledged_by TEXT);" \
        "CREATE UNIQUE INDEX alert_open_idx ON alert(rule_id, object_kind, object_id) WHERE state = 'open';" \
        "CREATE INDEX alert_state_idx ON alert(state, id);" \
        "CREATE TABLE webhook (" \
        "  id " IDPK "," \
        "  url TEXT NOT NULL UNIQUE," \
        "  description TEXT," \
        "  enabled " INT " NOT NULL DEFAULT 1," \
        "  last_status TEXT," \
        "  last_attempt_at " INT "," \
        "  last_delivered_at " INT "," \
        "  created_at " INT " NOT NULL);" \
        "CREATE TABLE webhook_delivery (" \
        "  id " IDPK "," \
        "  webhook_id " INT " NOT NULL REFERENCES webhook(id) ON DELETE CASCADE," \
        "  payload TEXT NOT NULL," \
        "  state TEXT NOT NULL DEFAULT 'pending'," \
        "  attempts " INT " NOT NULL DEFAULT 0," \
        "  next_at " INT " NOT NULL," \
        "  last_status TEXT," \
        "  created_at " INT " NOT NULL," \
        "  finished_at " INT ");" \
        "CREATE INDEX webhook_delivery_due ON webhook_delivery(state, next_at);" \
        "CREATE TABLE monitor_stat (key TEXT PRIMARY KEY, value " REAL " NOT NULL);" \
        "CREATE TABLE assess_server (" \
        "  id " IDPK "," \
        "  name TEXT NOT NULL UNIQUE," \
        "  source TEXT NOT NULL DEFAULT 'node-exporter'," \
        "  url TEXT NOT NULL," \
        "  cpus " INT "," \
        "  memory_mib " REAL "," \
        "  last_sample_at " INT "," \
        "  last_error TEXT," \
        "  created_at " INT " NOT NULL);" \
        "CREATE TABLE assess_sample (" \
        "  server_id " INT " NOT NULL REFERENCES assess_server(id) ON DELETE CASCADE," \
        "  at " INT " NOT NULL," \
        "  cpu_pct " REAL ", memory_used_mib " REAL ", disk_iops " REAL ", disk_bps " REAL ", net_mbit " REAL "," \
        "  PRIMARY KEY(server_id, at))" NOROWID ";"

const StoreMigration store_migrations_monitor[] = {
        { "monitor-1", MONITOR_1("INTEGER", "REAL", "INTEGER PRIMARY KEY", " WITHOUT ROWID", SQLITE_NOW_MS), NULL,
          MONITOR_1("BIGINT", "DOUBLE PRECISION", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "", PG_NOW_MS) },
        /* A removed host's or VM's history goes with it, whichever path
         * removes it (a forced host removal takes its VMs along), so that
         * nothing of it is ever shown for another object; ids are not
         * reused either (core-ids-autoincrement). History left by objects
         * removed before goes now. */
        { "monitor-history-follows-objects",
        "DELETE FROM perf_raw WHERE (kind = 0 AND object_id NOT IN (SELECT id FROM host)) OR (kind = 1 AND object_id NOT IN (SELECT id FROM vm));"
        "DELETE FROM perf_5m WHERE (kind = 0 AND object_id NOT IN (SELECT id FROM host)) OR (kind = 1 AND object_id NOT IN (SELECT id FROM vm));"
        "DELETE FROM perf_1h WHERE (kind = 0 AND object_id NOT IN (SELECT id FROM host)) OR (kind = 1 AND object_id NOT IN (SELECT id FROM vm));"
        "DELETE FROM perf_latest WHERE (kind = 0 AND object_id NOT IN (SELECT id FROM host)) OR (kind = 1 AND object_id NOT IN (SELECT id FROM vm));"
        "CREATE TRIGGER host_history_gone AFTER DELETE ON host BEGIN"
        "  DELETE FROM perf_raw WHERE kind = 0 AND object_id = OLD.id;"
        "  DELETE FROM perf_5m WHERE kind = 0 AND object_id = OLD.id;"
        "  DELETE FROM perf_1h WHERE kind = 0 AND object_id = OLD.id;"
        "  DELETE FROM perf_latest WHERE kind = 0 AND object_id = OLD.id;"
        " END;"
        "CREATE TRIGGER vm_history_gone AFTER DELETE ON vm BEGIN"
        "  DELETE FROM perf_raw WHERE kind = 1 AND object_id = OLD.id;"
        "  DELETE FROM perf_5m WHERE kind = 1 AND object_id = OLD.id;"
        "  DELETE FROM perf_1h WHERE kind = 1 AND object_id = OLD.id;"
        "  DELETE FROM perf_latest WHERE kind = 1 AND object_id = OLD.id;"
        " END;", NULL,
        "DELETE FROM perf_raw WHERE (kind = 0 AND object_id NOT IN (SELECT id FROM host)) OR (kind = 1 AND object_id NOT IN (SELECT id FROM vm));"
        "DELETE FROM perf_5m WHERE (kind = 0 AND object_id NOT IN (SELECT id FROM host)) OR (kind = 1 AND object_id NOT IN (SELECT id FROM vm));"
        "DELETE FROM perf_1h WHERE (kind = 0 AND object_id NOT IN (SELECT id FROM host)) OR (kind = 1 AND object_id NOT IN (SELECT id FROM vm));"
        "DELETE FROM perf_latest WHERE (kind = 0 AND object_id NOT IN (SELECT id FROM host)) OR (kind = 1 AND object_id NOT IN (SELECT id FROM vm));"
        "CREATE FUNCTION host_history_gone() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        "  DELETE FROM perf_raw WHERE kind = 0 AND object_id = OLD.id;"
        "  DELETE FROM perf_5m WHERE kind = 0 AND object_id = OLD.id;"
        "  DELETE FROM perf_1h WHERE kind = 0 AND object_id = OLD.id;"
        "  DELETE FROM perf_latest WHERE kind = 0 AND object_id = OLD.id;"
        "  RETURN NULL;"
        " END $$;"
        "CREATE TRIGGER host_history_gone AFTER DELETE ON host FOR EACH ROW EXECUTE FUNCTION host_history_gone();"
        "CREATE FUNCTION vm_history_gone() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        "  DELETE FROM perf_raw WHERE kind = 1 AND object_id = OLD.id;"
        "  DELETE FROM perf_5m WHERE kind = 1 AND object_id = OLD.id;"
        "  DELETE FROM perf_1h WHERE kind = 1 AND object_id = OLD.id;"
        "  DELETE FROM perf_latest WHERE kind = 1 AND object_id = OLD.id;"
        "  RETURN NULL;"
        " END $$;"
        "CREATE TRIGGER vm_history_gone AFTER DELETE ON vm FOR EACH ROW EXECUTE FUNCTION vm_history_gone();" },
        /* A host that fails or is fenced is as much an emergency as one
         * that does not answer. */
#define HOST_DOWN_RULES(NOW) \
        " ('host-failed', 'host', 'state', '==', NULL, 'failed', 0, 'critical', 1, 'A cluster member stopped answering and was declared failed.', " NOW ")," \
        " ('host-fenced', 'host', 'state', '==', NULL, 'fenced', 0, 'critical', 1, 'A failed cluster member was powered off by its fence command.', " NOW ")"
        { "monitor-host-down-rules",
        "INSERT OR IGNORE INTO alert_rule(name, object_kind, metric, comparison, threshold, state_value, duration_s, severity, builtin, description, created_at) VALUES"
        HOST_DOWN_RULES(SQLITE_NOW_MS) ";", NULL,
        "INSERT INTO alert_rule(name, object_kind, metric, comparison, threshold, state_value, duration_s, severity, builtin, description, created_at) VALUES"
        HOST_DOWN_RULES(PG_NOW_MS) " ON CONFLICT DO NOTHING;" },
        /* libvirtd answers connections but not calls (issue 15). */
#define HOST_NOT_RESPONDING_RULE(NOW) \
        " ('host-not-responding', 'host', 'state', '==', NULL, 'not-responding', 0, 'critical', 1, 'A host accepts connections but its calls do not return within their deadline: libvirtd is wedged.', " NOW ")"
        { "monitor-host-not-responding-rule",
        "INSERT OR IGNORE INTO alert_rule(name, object_kind, metric, comparison, threshold, state_value, duration_s, severity, builtin, description, created_at) VALUES"
        HOST_NOT_RESPONDING_RULE(SQLITE_NOW_MS) ";", NULL,
        "INSERT INTO alert_rule(name, object_kind, metric, comparison, threshold, state_value, duration_s, severity, builtin, description, created_at) VALUES"
        HOST_NOT_RESPONDING_RULE(PG_NOW_MS) " ON CONFLICT DO NOTHING;" },
        { NULL, NULL },
};

int store_perf_metric_parse(const char *name, StorePerfMetric *ret) {
        for (int i = 0; name && i < STORE_PERF__COUNT; i++)
                if (streq(name, store_perf_metric_names[i])) {
                        *ret = (StorePerfMetric) i;
                        return 0;
                }
        return -EINVAL;
}

/* ------------------------------------------------------------------ */
/* bulk statements */

/* The statement's error was logged by the store with its SQL: says which
 * step failed and keeps the errno (-EIO unless the store mapped it). */
static int db_fail(Store *st, const char *what) {
        (void) st;
        log_error("database error in %s", what);
        return -EIO;
}

static void bind_num(StoreStmt *s, int idx, double v) {
        if (isfinite(v))
                store_bind_double(s, idx, v);
        else
                store_bind_null(s, idx);
}

static int prepare(Store *st, const char *sql, StoreStmt **ret) {
        return store_prepare(st, sql, ret) < 0 ? db_fail(st, "prepare") : 0;
}

static int step_reset(Store *st, StoreStmt *s, const char *what) {
        int rc = store_step(s);
        store_reset(s);
        return rc == STORE_DONE || rc == STORE_ROW ? 0 : db_fail(st, what);
}

/* An upsert, not INSERT OR REPLACE (which PostgreSQL does not know): every
 * column but the key takes the new row's value, as a replace would. */
#define PERF_EXCLUDED "cpu = excluded.cpu, memory = excluded.memory, memory_pct = excluded.memory_pct," \
        " disk_read = excluded.disk_read, disk_write = excluded.disk_write, disk_iops = excluded.disk_iops," \
        " net_rx = excluded.net_rx, net_tx = excluded.net_tx, pool_pct = excluded.pool_pct"
#define ROLLUP_EXCLUDED "n = excluded.n, " PERF_EXCLUDED ", cpu_max = excluded.cpu_max, memory_max = excluded.memory_max," \
        " memory_pct_max = excluded.memory_pct_max, disk_read_max = excluded.disk_read_max," \
        " disk_write_max = excluded.disk_write_max, disk_iops_max = excluded.disk_iops_max," \
        " net_rx_max = excluded.net_rx_max, net_tx_max = excluded.net_tx_max, pool_pct_max = excluded.pool_pct_max"

/* A bulk write of rows, each ncols parameters bound by bind() from
 * parameter base on. SQLite: one INSERT OR REPLACE reused for every row
 * (its statements are calls into the library; its upsert made a monitoring
 * round of 4,000 VMs cost 55 % more CPU). PostgreSQL: each statement is a
 * round trip to the server (and a savepoint in a transaction), so rows go
 * PG_BATCH_ROWS to a multi-row INSERT; a row whose key (same()) is already
 * in the batch starts the next one, as one upsert cannot touch a row twice
 * and the later row must win. */
typedef struct {
        const char *table;
        const char *head;       /* "INSERT INTO t VALUES " */
        int ncols;
        const char *tail;       /* " ON CONFLICT(...) DO UPDATE SET ..." */
        void (*bind)(StoreStmt *s, int base, const void *rows, size_t i);
        bool (*same)(const void *rows, size_t a, size_t b);
        const char *what;
} PerfWrite;

#define PG_BATCH_ROWS 256

static char *values_sql(const PerfWrite *w, size_t k) {
        StrBuf b = {0};
        strbuf_append(&b, w->head);
        for (size_t r = 0; r < k; r++) {
                strbuf_append(&b, r ? ",(" : "(");
                for (int c = 0; c < w->ncols; c++)
                        strbuf_append(&b, c ? ",?" : "?");
                strbuf_append(&b, ")");
        }
        strbuf_append(&b, w->tail);
        return strbuf_steal(&b);
}

static int perf_write(Store *st, const PerfWrite *w, const void *rows, size_t n) {
        bool pg = store_engine(st) == STORE_ENGINE_POSTGRESQL;
        StoreStmt *stmt = NULL;
        int r = 0;
        if (!pg) {
                StrBuf b = {0};
                strbuf_printf(&b, "INSERT OR REPLACE INTO %s VALUES (", w->table);
                for (int c = 0; c < w->ncols; c++)
                        strbuf_append(&b, c ? ",?" : "?");
                strbuf_append(&b, ")");
                _cleanup_free_ char *sql = strbuf_steal(&b);
                r = prepare(st, sql, &stmt);
                for (size_t i = 0; i < n && r >= 0; i++) {
                        w->bind(stmt, 1, rows, i);
                        r = step_reset(st, stmt, w->what);
                }
                store_finalize(stmt);
                return r;
        }
        for (size_t i = 0; i < n && r >= 0;) {
                size_t k = 1;
                for (bool dup = false; i + k < n && k < PG_BATCH_ROWS && !dup; k += !dup)
                        for (size_t j = i; j < i + k && !dup; j++)
                                dup = w->same(rows, j, i + k);
                _cleanup_free_ char *sql = values_sql(w, k);
                r = prepare(st, sql, &stmt);
                if (r < 0)
                        break;
                for (size_t x = 0; x < k; x++)
                        w->bind(stmt, 1 + (int) x * w->ncols, rows, i + x);
                r = step_reset(st, stmt, w->what);
                store_finalize(stmt);
                i += k;
        }
        return r;
}

static void bind_sample(StoreStmt *stmt, int base, const void *rows, size_t i) {
        const StorePerfSample *s = (const StorePerfSample *) rows + i;
        store_bind_i64(stmt, base, s->kind);
        store_bind_i64(stmt, base + 1, s->object_id);
        store_bind_i64(stmt, base + 2, s->at);
        for (int m = 0; m < STORE_PERF__COUNT; m++)
                bind_num(stmt, base + 3 + m, s->v[m]);
}

static bool same_sample(const void *rows, size_t a, size_t b) {
        const StorePerfSample *x = (const StorePerfSample *) rows + a, *y = (const StorePerfSample *) rows + b;
        return x->kind == y->kind && x->object_id == y->object_id && x->at == y->at;
}

int store_perf_insert_raw(Store *st, const StorePerfSample *s, size_t n) {
        static const PerfWrite w = {
                "perf_raw", "INSERT INTO perf_raw VALUES ", 3 + STORE_PERF__COUNT,
                " ON CONFLICT(kind, object_id, at) DO UPDATE SET " PERF_EXCLUDED, bind_sample, same_sample, "perf_raw",
        };
        return perf_write(st, &w, s, n);
}

static void bind_rollup(StoreStmt *stmt, int base, const void *rows, size_t i) {
        const StorePerfRollup *r = (const StorePerfRollup *) rows + i;
        store_bind_i64(stmt, base, r->kind);
        store_bind_i64(stmt, base + 1, r->object_id);
        store_bind_i64(stmt, base + 2, r->at);
        store_bind_i64(stmt, base + 3, r->n);
        for (int m = 0; m < STORE_PERF__COUNT; m++) {
                bind_num(stmt, base + 4 + m, r->avg[m]);
                bind_num(stmt, base + 4 + STORE_PERF__COUNT + m, r->max[m]);
        }
}

static bool same_rollup(const void *rows, size_t a, size_t b) {
        const StorePerfRollup *x = (const StorePerfRollup *) rows + a, *y = (const StorePerfRollup *) rows + b;
        return x->kind == y->kind && x->object_id == y->object_id && x->at == y->at;
}

int store_perf_insert_rollups(Store *st, StorePerfTier tier, const StorePerfRollup *rows, size_t n) {
        if (tier != STORE_TIER_5M && tier != STORE_TIER_1H)
                return -EINVAL;
        static const PerfWrite w5m = {
                "perf_5m", "INSERT INTO perf_5m VALUES ", 4 + 2 * STORE_PERF__COUNT,
                " ON CONFLICT(kind, object_id, at) DO UPDATE SET " ROLLUP_EXCLUDED, bind_rollup, same_rollup, "perf rollup",
        };
        static const PerfWrite w1h = {
                "perf_1h", "INSERT INTO perf_1h VALUES ", 4 + 2 * STORE_PERF__COUNT,
                " ON CONFLICT(kind, object_id, at) DO UPDATE SET " ROLLUP_EXCLUDED, bind_rollup, same_rollup, "perf rollup",
        };
        return perf_write(st, tier == STORE_TIER_5M ? &w5m : &w1h, rows, n);
}

/* perf_latest's rows: a sample and its detail (NULL binds NULL). */
typedef struct {
        const StorePerfSample *s;
        const char *const *detail;
} LatestRows;

static void bind_latest(StoreStmt *stmt, int base, const void *rows, size_t i) {
        const LatestRows *l = rows;
        bind_sample(stmt, base, l->s, i);
        if (l->detail && l->detail[i])
                store_bind_text(stmt, base + 3 + STORE_PERF__COUNT, l->detail[i]);
        else
                store_bind_null(stmt, base + 3 + STORE_PERF__COUNT);
}

static bool same_latest(const void *rows, size_t a, size_t b) {
        const LatestRows *l = rows;
        return l->s[a].kind == l->s[b].kind && l->s[a].object_id == l->s[b].object_id;
}

int store_perf_set_latest(Store *st, const StorePerfSample *s, const char *const *detail_json, size_t n) {
        static const PerfWrite w = {
                "perf_latest", "INSERT INTO perf_latest VALUES ", 4 + STORE_PERF__COUNT,
                " ON CONFLICT(kind, object_id) DO UPDATE SET at = excluded.at, " PERF_EXCLUDED ", detail = excluded.detail",
                bind_latest, same_latest, "perf_latest",
        };
        LatestRows l = { s, detail_json };
        return perf_write(st, &w, &l, n);
}

int store_perf_latest_gc(Store *st) {
        return store_exec(st, "DELETE FROM perf_latest WHERE (kind = 0 AND object_id NOT IN (SELECT id FROM host))"
                              " OR (kind = 1 AND object_id NOT IN (SELECT id FROM vm))", "");
}

int store_perf_prune(Store *st, StorePerfTier tier, int64_t before_ms) {
        static const char *const sql[] = { "DELETE FROM perf_raw WHERE at < ?", "DELETE FROM perf_5m WHERE at < ?",
                                           "DELETE FROM perf_1h WHERE at < ?" };
        if ((int) tier < 0 || tier > STORE_TIER_1H)
                return -EINVAL;
        int r = store_exec(st, sql[tier], "i", before_ms);
        return r < 0 ? r : store_changes(st);
}

int store_perf_query(Store *st, StorePerfTier tier, StorePerfKind kind, int64_t object_id, StorePerfMetric m,
                     int64_t from, int64_t to, StorePerfPoint **ret) {
        if ((int) m < 0 || m >= STORE_PERF__COUNT || (int) tier < 0 || tier > STORE_TIER_1H)
                return -EINVAL;
        /* Column names come from the fixed table above, never from the user. */
        const char *col = store_perf_metric_names[m];
        _cleanup_free_ char *sql = tier == STORE_TIER_RAW
                ? xasprintf("SELECT at, %s, %s, 1 FROM perf_raw WHERE kind = ? AND object_id = ? AND at >= ? AND at < ?"
                            " AND %s IS NOT NULL ORDER BY at", col, col, col)
                : xasprintf("SELECT at, %s, %s_max, n FROM %s WHERE kind = ? AND object_id = ? AND at >= ? AND at < ?"
                            " AND %s IS NOT NULL ORDER BY at", col, col, tier == STORE_TIER_5M ? "perf_5m" : "perf_1h", col);
        StoreStmt *stmt;
        int r = prepare(st, sql, &stmt);
        if (r < 0)
                return r;
        store_bind_i64(stmt, 1, kind);
        store_bind_i64(stmt, 2, object_id);
        store_bind_i64(stmt, 3, from);
        store_bind_i64(stmt, 4, to);
        StorePerfPoint *pts = NULL;
        size_t n = 0, cap = 0;
        int rc;
        while ((rc = store_step(stmt)) == STORE_ROW) {
                if (n == cap) {
                        cap = cap ? cap * 2 : 256;
                        pts = xrealloc(pts, cap * sizeof *pts);
                }
                pts[n].at = store_col_i64(stmt, 0);
                pts[n].avg = store_col_double(stmt, 1);
                pts[n].max = store_col_null(stmt, 2) ? pts[n].avg : store_col_double(stmt, 2);
                pts[n].n = store_col_i64(stmt, 3);
                n++;
        }
        store_finalize(stmt);
        if (rc != STORE_DONE) {
                free(pts);
                return db_fail(st, "perf query");
        }
        *ret = pts;
        return (int) n;
}

int store_perf_latest_json(Store *st, json_t **ret) {
        return store_query_json(st, ret, "SELECT kind, object_id, at AS at_ms, cpu, memory, memory_pct, disk_read, disk_write,"
                                    " disk_iops, net_rx, net_tx, pool_pct, detail AS detail_json FROM perf_latest"
                                    " ORDER BY kind, object_id", "");
}

int store_host_usage_set(Store *st, int64_t host_id, double cpu_pct, double memory_used_mib, double disk_io_pct,
                         double network_pct, int64_t sampled_at) {
        StoreStmt *stmt;
        int r = prepare(st, "INSERT INTO host_usage(host_id, cpu_pct, memory_used_mib, disk_io_pct, network_pct,"
                            " sampled_at) SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM host WHERE id = ?1)"
                            " ON CONFLICT(host_id) DO UPDATE SET cpu_pct = excluded.cpu_pct,"
                            " memory_used_mib = excluded.memory_used_mib, disk_io_pct = excluded.disk_io_pct,"
                            " network_pct = excluded.network_pct, sampled_at = excluded.sampled_at", &stmt);
        if (r < 0)
                return r;
        store_bind_i64(stmt, 1, host_id);
        bind_num(stmt, 2, cpu_pct);
        bind_num(stmt, 3, memory_used_mib);
        bind_num(stmt, 4, disk_io_pct);
        bind_num(stmt, 5, network_pct);
        store_bind_i64(stmt, 6, sampled_at);
        r = step_reset(st, stmt, "host_usage");
        store_finalize(stmt);
        return r;
}

/* ------------------------------------------------------------------ */
/* objects */

static void copy_col(char *dst, size_t size, StoreStmt *s, int col) {
        const char *t = store_col_text(s, col);
        snprintf(dst, size, "%s", t ? (const char *) t : "");
}

#define MON_HOST_ROW "SELECT id, name, group_id, state, coalesce(cpus, 0), coalesce(memory_mib, 0), pool FROM host "

static void mon_host_fill(StoreStmt *stmt, StoreMonHost *h) {
        memset(h, 0, sizeof *h);
        h->id = store_col_i64(stmt, 0);
        copy_col(h->name, sizeof h->name, stmt, 1);
        h->group_id = store_col_i64(stmt, 2);
        copy_col(h->state, sizeof h->state, stmt, 3);
        h->cpus = (unsigned) store_col_i64(stmt, 4);
        h->memory_mib = (uint64_t) store_col_i64(stmt, 5);
        copy_col(h->pool, sizeof h->pool, stmt, 6);
}

int store_mon_hosts(Store *st, StoreMonHost **ret) {
        StoreStmt *stmt;
        int r = prepare(st, MON_HOST_ROW "ORDER BY id", &stmt);
        if (r < 0)
                return r;
        StoreMonHost *a = NULL;
        size_t n = 0, cap = 0;
        int rc;
        while ((rc = store_step(stmt)) == STORE_ROW) {
                if (n == cap) {
                        cap = cap ? cap * 2 : 64;
                        a = xrealloc(a, cap * sizeof *a);
                }
                mon_host_fill(stmt, &a[n++]);
        }
        store_finalize(stmt);
        if (rc != STORE_DONE) {
                free(a);
                return db_fail(st, "hosts");
        }
        *ret = a;
        return (int) n;
}

int store_mon_host(Store *st, int64_t id, StoreMonHost *ret) {
        StoreStmt *stmt;
        int r = prepare(st, MON_HOST_ROW "WHERE id = ?", &stmt);
        if (r < 0)
                return r;
        store_bind_i64(stmt, 1, id);
        int rc = store_step(stmt);
        if (rc == STORE_ROW)
                mon_host_fill(stmt, ret);
        store_finalize(stmt);
        return rc == STORE_ROW ? 0 : rc == STORE_DONE ? -ENOENT : db_fail(st, "host");
}

int store_mon_vms(Store *st, StoreMonVm **ret) {
        StoreStmt *stmt;
        int r = prepare(st, "SELECT id, uuid, name, coalesce(host_id, 0), coalesce(owner_id, 0), cpus, memory_mib, state"
                            " FROM vm ORDER BY id", &stmt);
        if (r < 0)
                return r;
        StoreMonVm *a = NULL;
        size_t n = 0, cap = 0;
        int rc;
        while ((rc = store_step(stmt)) == STORE_ROW) {
                if (n == cap) {
                        cap = cap ? cap * 2 : 256;
                        a = xrealloc(a, cap * sizeof *a);
                }
                StoreMonVm *v = &a[n++];
                memset(v, 0, sizeof *v);
                v->id = store_col_i64(stmt, 0);
                copy_col(v->uuid, sizeof v->uuid, stmt, 1);
                copy_col(v->name, sizeof v->name, stmt, 2);
                v->host_id = store_col_i64(stmt, 3);
                v->owner_id = store_col_i64(stmt, 4);
                v->cpus = (unsigned) store_col_i64(stmt, 5);
                v->memory_mib = (uint64_t) store_col_i64(stmt, 6);
                copy_col(v->state, sizeof v->state, stmt, 7);
        }
        store_finalize(stmt);
        if (rc != STORE_DONE) {
                free(a);
                return db_fail(st, "vms");
        }
        *ret = a;
        return (int) n;
}

int store_mon_groups_json(Store *st, json_t **ret) {
        return store_query_json(st, ret, "SELECT id, coalesce(parent_id, 0) AS parent_id, name, path FROM host_group ORDER BY id", "");
}

/* ------------------------------------------------------------------ */
/* alert rules */

#define RULE_ROW "SELECT id, name, object_kind, metric, comparison, coalesce(threshold, 0), coalesce(state_value, ''), duration_s," \
                 " severity, scope, coalesce(scope_id, 0), enabled, builtin FROM alert_rule "

static void row_rule(StoreStmt *s, StoreAlertRule *r) {
        memset(r, 0, sizeof *r);
        r->id = store_col_i64(s, 0);
        copy_col(r->name, sizeof r->name, s, 1);
        copy_col(r->object_kind, sizeof r->object_kind, s, 2);
        copy_col(r->metric, sizeof r->metric, s, 3);
        copy_col(r->comparison, sizeof r->comparison, s, 4);
        r->threshold = store_col_double(s, 5);
        copy_col(r->state_value, sizeof r->state_value, s, 6);
        r->duration_s = store_col_i64(s, 7);
        copy_col(r->severity, sizeof r->severity, s, 8);
        copy_col(r->scope, sizeof r->scope, s, 9);
        r->scope_id = store_col_i64(s, 10);
        r->enabled = store_col_int(s, 11) != 0;
        r->builtin = store_col_int(s, 12) != 0;
}

int store_alert_rules(Store *st, StoreAlertRule **ret) {
        StoreStmt *stmt;
        int r = prepare(st, RULE_ROW "ORDER BY id", &stmt);
        if (r < 0)
                return r;
        StoreAlertRule *a = NULL;
        size_t n = 0, cap = 0;
        int rc;
        while ((rc = store_step(stmt)) == STORE_ROW) {
                if (n == cap) {
                        cap = cap ? cap * 2 : 16;
                        a = xrealloc(a, cap * sizeof *a);
                }
                row_rule(stmt, &a[n++]);
        }
        store_finalize(stmt);
        if (rc != STORE_DONE) {
                free(a);
                return db_fail(st, "alert rules");
        }
        *ret = a;
        return (int) n;
}

int store_alert_rule_get(Store *st, int64_t id, StoreAlertRule *ret) {
        StoreStmt *stmt;
        int r = prepare(st, RULE_ROW "WHERE id = ?", &stmt);
        if (r < 0)
                return r;
        store_bind_i64(stmt, 1, id);
        int rc = store_step(stmt);
        if (rc == STORE_ROW)
                row_rule(stmt, ret);
        store_finalize(stmt);
        return rc == STORE_ROW ? 0 : rc == STORE_DONE ? -ENOENT : db_fail(st, "alert rule");
}

#define RULE_COLUMNS "SELECT id, name, object_kind, metric, comparison, threshold, state_value, duration_s, severity, scope," \
                     " scope_id, enabled AS enabled_bool, builtin AS builtin_bool, description, created_at FROM alert_rule "
int store_alert_rule_list_json(Store *st, json_t **ret) {
        return store_query_json(st, ret, RULE_COLUMNS "ORDER BY id", "");
}
int store_alert_rule_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, RULE_COLUMNS "WHERE id = ?", "i", id);
}

int store_alert_rule_insert(Store *st, const StoreAlertRule *r, const char *description, int64_t *ret_id) {
        bool state = streq(r->metric, "state");
        int k = store_exec(st, "INSERT INTO alert_rule(name, object_kind, metric, comparison, threshold, state_value, duration_s,"
                               " severity, scope, scope_id, enabled, builtin, description, created_at)"
                               " VALUES (?,?,?,?,?,?,?,?,?,nullif(?,0),?,0,?,?)",
                           "ssss" "d" "s" "i" "ss" "i" "b" "s" "i",
                           r->name, r->object_kind, r->metric, r->comparison, state ? 0.0 : r->threshold,
                           state ? r->state_value : NULL, r->duration_s, r->severity, r->scope, r->scope_id,
                           (int) r->enabled, description, now_ms());
        if (k < 0)
                return k;
        *ret_id = store_last_id(st);
        return state ? store_exec(st, "UPDATE alert_rule SET threshold = NULL WHERE id = ?", "i", *ret_id) : 0;
}

int store_alert_rule_update(Store *st, const StoreAlertRule *r, const char *description) {
        bool state = streq(r->metric, "state");
        int k = store_exec(st, "UPDATE alert_rule SET name = ?, object_kind = ?, metric = ?, comparison = ?, threshold = ?,"
                               " state_value = ?, duration_s = ?, severity = ?, scope = ?, scope_id = nullif(?,0), enabled = ?,"
                               " description = ? WHERE id = ?",
                           "ssss" "d" "s" "i" "ss" "i" "b" "s" "i",
                           r->name, r->object_kind, r->metric, r->comparison, state ? 0.0 : r->threshold,
                           state ? r->state_value : NULL, r->duration_s, r->severity, r->scope, r->scope_id,
                           (int) r->enabled, description, r->id);
        if (k < 0)
                return k;
        if (store_changes(st) == 0)
                return -ENOENT;
        return state ? store_exec(st, "UPDATE alert_rule SET threshold = NULL WHERE id = ?", "i", r->id) : 0;
}

int store_alert_rule_delete(Store *st, int64_t id) {
        int r = store_begin(st);
        if (r < 0)
                return r;
        r = store_exec(st, "UPDATE alert SET state = 'resolved', resolved_at = ?1, updated_at = ?1,"
                           " message = message || ' (resolved: its rule was deleted)' WHERE rule_id = ?2 AND state = 'open'",
                       "ii", now_ms(), id);
        if (r >= 0) {
                store_counts_changed(st);
                r = store_exec(st, "DELETE FROM alert_rule WHERE id = ?", "i", id);
        }
        if (r >= 0 && store_changes(st) == 0)
                r = -ENOENT;
        return store_end(st, r);
}

/* ------------------------------------------------------------------ */
/* alerts */

int store_alerts_open(Store *st, StoreOpenAlert **ret) {
        StoreStmt *stmt;
        int r = prepare(st, "SELECT id, coalesce(rule_id, 0), object_kind, object_id, severity,"
                            " CASE WHEN acknowledged_at IS NULL THEN 0 ELSE 1 END"
                            " FROM alert WHERE state = 'open' ORDER BY id", &stmt);
        if (r < 0)
                return r;
        StoreOpenAlert *a = NULL;
        size_t n = 0, cap = 0;
        int rc;
        while ((rc = store_step(stmt)) == STORE_ROW) {
                if (n == cap) {
                        cap = cap ? cap * 2 : 16;
                        a = xrealloc(a, cap * sizeof *a);
                }
                StoreOpenAlert *o = &a[n++];
                memset(o, 0, sizeof *o);
                o->id = store_col_i64(stmt, 0);
                o->rule_id = store_col_i64(stmt, 1);
                copy_col(o->object_kind, sizeof o->object_kind, stmt, 2);
                o->object_id = store_col_i64(stmt, 3);
                copy_col(o->severity, sizeof o->severity, stmt, 4);
                o->acknowledged = store_col_int(stmt, 5) != 0;
        }
        store_finalize(stmt);
        if (rc != STORE_DONE) {
                free(a);
                return db_fail(st, "open alerts");
        }
        *ret = a;
        return (int) n;
}

int store_alert_open(Store *st, const StoreAlertRule *r, const char *object_kind, int64_t object_id,
                     const char *object_name, double value, const char *message, int64_t now, int64_t *ret_id) {
        StoreStmt *stmt;
        int k = prepare(st, "INSERT INTO alert(rule_id, rule_name, object_kind, object_id, object_name, severity, state, message,"
                            " value, opened_at, updated_at) VALUES (?,?,?,?,?,?,'open',?,?,?,?)", &stmt);
        if (k < 0)
                return k;
        if (r->id)
                store_bind_i64(stmt, 1, r->id);
        else
                store_bind_null(stmt, 1); /* an alert no rule raises (a stuck job) */
        store_bind_text(stmt, 2, r->name);
        store_bind_text(stmt, 3, object_kind);
        store_bind_i64(stmt, 4, object_id);
        store_bind_text(stmt, 5, object_name);
        store_bind_text(stmt, 6, r->severity);
        store_bind_text(stmt, 7, message);
        bind_num(stmt, 8, value);
        store_bind_i64(stmt, 9, now);
        store_bind_i64(stmt, 10, now);
        int rc = store_step(stmt);
        store_finalize(stmt);
        if (rc != STORE_DONE)
                return rc == -EEXIST ? -EEXIST : db_fail(st, "alert open");
        *ret_id = store_last_id(st);
        store_counts_changed(st);
        return 0;
}

int store_alert_touch(Store *st, int64_t id, double value, const char *message, int64_t now) {
        StoreStmt *stmt;
        int k = prepare(st, "UPDATE alert SET value = ?, message = ?, updated_at = ? WHERE id = ? AND state = 'open'", &stmt);
        if (k < 0)
                return k;
        bind_num(stmt, 1, value);
        store_bind_text(stmt, 2, message);
        store_bind_i64(stmt, 3, now);
        store_bind_i64(stmt, 4, id);
        k = step_reset(st, stmt, "alert update");
        store_finalize(stmt);
        return k;
}

int store_alert_resolve(Store *st, int64_t id, const char *message, int64_t now) {
        int r = store_exec_one(st, "UPDATE alert SET state = 'resolved', resolved_at = ?1, updated_at = ?1,"
                               " message = coalesce(?2, message) WHERE id = ?3 AND state = 'open'", "isi", now, message, id);
        if (r >= 0)
                store_counts_changed(st);
        return r;
}

int store_alert_ack(Store *st, int64_t id, const char *user, int64_t now) {
        int r = store_exec(st, "UPDATE alert SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ? AND acknowledged_at IS NULL",
                           "isi", now, user, id);
        if (r < 0)
                return r;
        if (store_changes(st)) {
                store_counts_changed(st);
                return 0;
        }
        int64_t n = 0;
        r = store_query_i64(st, &n, "SELECT count(*) FROM alert WHERE id = ?", "i", id);
        return r < 0 ? r : n ? -EALREADY : -ENOENT;
}

#define ALERT_COLUMNS "SELECT id, rule_id, rule_name, object_kind, object_id, object_name, severity, state, message, value," \
                      " opened_at, updated_at, resolved_at, CASE WHEN acknowledged_at IS NULL THEN 0 ELSE 1 END AS acknowledged_bool, acknowledged_at," \
                      " acknowledged_by FROM alert "
int store_alert_list_json(Store *st, const char *state, int limit, json_t **ret) {
        return store_query_json(st, ret, ALERT_COLUMNS "WHERE (?1 IS NULL OR state = ?1) ORDER BY id DESC LIMIT ?2", "si",
                                state, (int64_t) limit);
}
int store_alert_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, ALERT_COLUMNS "WHERE id = ?", "i", id);
}
int store_alert_counts_json(Store *st, json_t **ret) {
        return store_query_json(st, ret, "SELECT severity, count(*) AS n,"
                                    " CAST(sum(CASE WHEN acknowledged_at IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS unacknowledged"
                                    " FROM alert WHERE state = 'open' GROUP BY severity ORDER BY severity", "");
}

int store_alert_open_stamp(Store *st, int64_t ret[3]) {
        int r = store_query_i64(st, &ret[0], "SELECT count(*) FROM alert WHERE state = 'open'", "");
        if (r >= 0) r = store_query_i64(st, &ret[1], "SELECT coalesce(max(id), 0) FROM alert WHERE state = 'open'", "");
        if (r >= 0) r = store_query_i64(st, &ret[2], "SELECT CAST(coalesce(sum(updated_at), 0) AS BIGINT) FROM alert WHERE state = 'open'", "");
        return r;
}

/* ------------------------------------------------------------------ */
/* webhooks */

int store_webhook_insert(Store *st, const char *url, const char *description, int64_t *ret_id) {
        return store_insert(st, ret_id, "INSERT INTO webhook(url, description, created_at) VALUES (?,?,?)", "ssi", url, description, now_ms());
}
int store_webhook_delete(Store *st, int64_t id) {
        return store_exec_one(st, "DELETE FROM webhook WHERE id = ?", "i", id);
}
#define WEBHOOK_COLUMNS "SELECT w.id, w.url, w.description, w.enabled AS enabled_bool, w.last_status, w.last_attempt_at," \
                        " w.last_delivered_at, (SELECT count(*) FROM webhook_delivery d WHERE d.webhook_id = w.id AND d.state = 'pending') AS pending," \
                        " (SELECT count(*) FROM webhook_delivery d WHERE d.webhook_id = w.id AND d.state = 'delivered') AS delivered," \
                        " (SELECT count(*) FROM webhook_delivery d WHERE d.webhook_id = w.id AND d.state = 'failed') AS failed," \
                        " w.created_at FROM webhook w "
int store_webhook_list_json(Store *st, json_t **ret) {
        return store_query_json(st, ret, WEBHOOK_COLUMNS "ORDER BY w.id", "");
}
int store_webhook_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, WEBHOOK_COLUMNS "WHERE w.id = ?", "i", id);
}
int store_webhook_enqueue(Store *st, const char *payload, int64_t now) {
        int r = store_exec(st, "INSERT INTO webhook_delivery(webhook_id, payload, next_at, created_at)"
                               " SELECT id, ?1, ?2, ?2 FROM webhook WHERE enabled <> 0", "si", payload, now);
        return r < 0 ? r : store_changes(st);
}
int store_delivery_due(Store *st, int64_t now, int max, StoreDelivery **ret) {
        StoreStmt *stmt;
        int r = prepare(st, "SELECT d.id, d.webhook_id, w.url, d.payload, d.attempts FROM webhook_delivery d"
                            " JOIN webhook w ON w.id = d.webhook_id WHERE d.state = 'pending' AND d.next_at <= ?"
                            " ORDER BY d.next_at, d.id LIMIT ?", &stmt);
        if (r < 0)
                return r;
        store_bind_i64(stmt, 1, now);
        store_bind_i64(stmt, 2, max);
        StoreDelivery *a = xcalloc((size_t) (max > 0 ? max : 1), sizeof *a);
        int n = 0, rc;
        while (n < max && (rc = store_step(stmt)) == STORE_ROW) {
                a[n].id = store_col_i64(stmt, 0);
                a[n].webhook_id = store_col_i64(stmt, 1);
                copy_col(a[n].url, sizeof a[n].url, stmt, 2);
                const char *p = store_col_text(stmt, 3);
                a[n].payload = xstrdup(p ? (const char *) p : "{}");
                a[n].attempts = store_col_int(stmt, 4);
                n++;
        }
        store_finalize(stmt);
        *ret = a;
        return n;
}
int store_delivery_next_at(Store *st, int64_t *ret) {
        int64_t v;
        int r = store_query_i64(st, &v, "SELECT coalesce(min(next_at), -1) FROM webhook_delivery WHERE state = 'pending'", "");
        if (r < 0)
                return r;
        if (v < 0)
                return -ENOENT;
        *ret = v;
        return 0;
}
int store_delivery_done(Store *st, int64_t id, int64_t webhook_id, bool ok, int64_t next_at, const char *status,
                        int64_t now) {
        /* One transaction: a reader never sees the delivery counted while
         * the webhook still shows the attempt before it. */
        int r = store_begin(st);
        if (r < 0)
                return r;
        if (ok)
                r = store_exec(st, "UPDATE webhook_delivery SET state = 'delivered', attempts = attempts + 1, last_status = ?,"
                                   " finished_at = ? WHERE id = ?", "sii", status, now, id);
        else if (next_at > 0)
                r = store_exec(st, "UPDATE webhook_delivery SET attempts = attempts + 1, last_status = ?, next_at = ? WHERE id = ?",
                               "sii", status, next_at, id);
        else
                r = store_exec(st, "UPDATE webhook_delivery SET state = 'failed', attempts = attempts + 1, last_status = ?,"
                                   " finished_at = ? WHERE id = ?", "sii", status, now, id);
        if (r >= 0)
                r = store_exec(st, "UPDATE webhook SET last_status = ?, last_attempt_at = ?,"
                                   " last_delivered_at = CASE WHEN ? <> 0 THEN ? ELSE last_delivered_at END WHERE id = ?",
                               "siiii", status, now, (int64_t) ok, now, webhook_id);
        return store_end(st, r);
}
int store_delivery_pending_count(Store *st) {
        int64_t n = 0;
        int r = store_query_i64(st, &n, "SELECT count(*) FROM webhook_delivery WHERE state = 'pending'", "");
        return r < 0 ? r : (int) n;
}
int store_delivery_prune(Store *st, int64_t before_ms) {
        return store_exec(st, "DELETE FROM webhook_delivery WHERE state != 'pending' AND finished_at < ?", "i", before_ms);
}

/* ------------------------------------------------------------------ */
/* the monitor's own figures */

int store_monitor_stat_set(Store *st, const char *key, double value) {
        return store_exec(st, "INSERT INTO monitor_stat(key, value) VALUES (?, ?)"
                              " ON CONFLICT(key) DO UPDATE SET value = excluded.value", "sd", key, value);
}
int store_monitor_stats_json(Store *st, json_t **ret) {
        return store_query_json(st, ret, "SELECT key, value FROM monitor_stat ORDER BY key", "");
}
int store_monitor_counts_json(Store *st, json_t **ret) {
        /* Hosts and VMs by state come from the read model now (/metrics). */
        return store_query_json(st, ret, "SELECT 'job' AS what, state, count(*) AS n FROM job GROUP BY state"
                                    " UNION ALL SELECT 'webhook_delivery', state, count(*) FROM webhook_delivery GROUP BY state", "");
}

/* ------------------------------------------------------------------ */
/* consolidation assessment */

int store_assess_insert(Store *st, const char *name, const char *url, int64_t *ret_id) {
        return store_insert(st, ret_id, "INSERT INTO assess_server(name, url, created_at) VALUES (?,?,?)", "ssi", name, url, now_ms());
}
int store_assess_delete(Store *st, int64_t id) {
        return store_exec_one(st, "DELETE FROM assess_server WHERE id = ?", "i", id);
}
#define ASSESS_COLUMNS "SELECT s.id, s.name, s.source, s.url, s.cpus, s.memory_mib, s.last_sample_at, s.last_error," \
                       " (SELECT count(*) FROM assess_sample a WHERE a.server_id = s.id) AS samples, s.created_at FROM assess_server s "
int store_assess_list_json(Store *st, json_t **ret) {
        return store_query_json(st, ret, ASSESS_COLUMNS "ORDER BY s.name", "");
}
int store_assess_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, ASSESS_COLUMNS "WHERE s.id = ?", "i", id);
}
int store_assess_servers(Store *st, StoreAssessServer **ret) {
        StoreStmt *stmt;
        int r = prepare(st, "SELECT id, name, url FROM assess_server ORDER BY id", &stmt);
        if (r < 0)
                return r;
        StoreAssessServer *a = NULL;
        size_t n = 0, cap = 0;
        while (store_step(stmt) == STORE_ROW) {
                if (n == cap) {
                        cap = cap ? cap * 2 : 16;
                        a = xrealloc(a, cap * sizeof *a);
                }
                a[n].id = store_col_i64(stmt, 0);
                copy_col(a[n].name, sizeof a[n].name, stmt, 1);
                copy_col(a[n].url, sizeof a[n].url, stmt, 2);
                n++;
        }
        store_finalize(stmt);
        *ret = a;
        return (int) n;
}
int store_assess_record(Store *st, int64_t id, bool has_sample, int64_t at, double cpu_pct, double memory_used_mib,
                        double disk_iops, double disk_bps, double net_mbit, unsigned cpus, double memory_mib,
                        const char *error) {
        if (error)
                return store_exec(st, "UPDATE assess_server SET last_error = ? WHERE id = ?", "si", error, id);
        int r = store_exec(st, "UPDATE assess_server SET last_error = NULL, cpus = nullif(?, 0), memory_mib = ?,"
                               " last_sample_at = CASE WHEN ? <> 0 THEN ? ELSE last_sample_at END WHERE id = ?",
                           "idiii", (int64_t) cpus, isfinite(memory_mib) ? memory_mib : 0.0, (int64_t) has_sample, at, id);
        if (r < 0 || !has_sample)
                return r;
        StoreStmt *stmt;
        r = prepare(st, "INSERT INTO assess_sample VALUES (?,?,?,?,?,?,?) ON CONFLICT(server_id, at) DO UPDATE SET"
                        " cpu_pct = excluded.cpu_pct, memory_used_mib = excluded.memory_used_mib, disk_iops = excluded.disk_iops,"
                        " disk_bps = excluded.disk_bps, net_mbit = excluded.net_mbit", &stmt);
        if (r < 0)
                return r;
        store_bind_i64(stmt, 1, id);
        store_bind_i64(stmt, 2, at);
        bind_num(stmt, 3, cpu_pct);
        bind_num(stmt, 4, memory_used_mib);
        bind_num(stmt, 5, disk_iops);
        bind_num(stmt, 6, disk_bps);
        bind_num(stmt, 7, net_mbit);
        r = step_reset(st, stmt, "assess_sample");
        store_finalize(stmt);
        return r;
}
static double col_num(StoreStmt *s, int c) {
        return store_col_null(s, c) ? NAN : store_col_double(s, c);
}
int store_assess_samples(Store *st, int64_t id, int64_t since, StoreAssessSample **ret) {
        StoreStmt *stmt;
        int r = prepare(st, "SELECT at, cpu_pct, memory_used_mib, disk_iops, disk_bps, net_mbit FROM assess_sample"
                            " WHERE server_id = ? AND at >= ? ORDER BY at", &stmt);
        if (r < 0)
                return r;
        store_bind_i64(stmt, 1, id);
        store_bind_i64(stmt, 2, since);
        StoreAssessSample *a = NULL;
        size_t n = 0, cap = 0;
        while (store_step(stmt) == STORE_ROW) {
                if (n == cap) {
                        cap = cap ? cap * 2 : 64;
                        a = xrealloc(a, cap * sizeof *a);
                }
                a[n].at = store_col_i64(stmt, 0);
                a[n].cpu_pct = col_num(stmt, 1);
                a[n].memory_used_mib = col_num(stmt, 2);
                a[n].disk_iops = col_num(stmt, 3);
                a[n].disk_bps = col_num(stmt, 4);
                a[n].net_mbit = col_num(stmt, 5);
                n++;
        }
        store_finalize(stmt);
        *ret = a;
        return (int) n;
}
int store_assess_prune(Store *st, int64_t before_ms) {
        return store_exec(st, "DELETE FROM assess_sample WHERE at < ?", "i", before_ms);
}
