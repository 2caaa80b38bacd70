/* store-sqlite: the SQLite engine behind store.c (store-engine.h). A
 * connection in WAL mode with foreign keys on and a 10 s busy timeout; its
 * update hook tells store.c which host, VM and group rows changed. */
#include "store-engine.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <string.h>

/* sqlite3_update_hook(): runs inside sqlite3_step(), so it only notes the
 * row. Not called for rows removed by REPLACE or the truncate optimisation
 * (neither is used on these tables: DELETE always has a WHERE). */
static void on_row_update(void *userdata, int op, const char *db_name, const char *table, sqlite3_int64 rowid) {
        (void) userdata;
        (void) op;
        if (!streq(db_name, "main"))
                return;
        if (streq(table, "vm"))
                store_rows_mark(STORE_TABLE_VM, rowid);
        else if (streq(table, "host"))
                store_rows_mark(STORE_TABLE_HOST, rowid);
        else if (streq(table, "host_group"))
                store_rows_mark(STORE_TABLE_HOST_GROUP, rowid);
}

/* SQLite counts every allocation under one process-wide mutex unless told
 * not to (SQLITE_CONFIG_MEMSTATUS): with a connection per thread and
 * thousands of small statements a round, the threads queued on that lock.
 * Must come before SQLite initializes; later it is refused (harmless). */
static void sqlite_tune_once(void) {
        (void) sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static int lite_open(const char *path, void **ret) {
        static pthread_once_t tuned = PTHREAD_ONCE_INIT;
        pthread_once(&tuned, sqlite_tune_once);
        sqlite3 *db = NULL;
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
                log_error("cannot open database '%s': %s", path, db ? sqlite3_errmsg(db) : "out of memory");
                sqlite3_close(db);
                return -EIO;
        }
        sqlite3_busy_timeout(db, 10000);
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL);
        sqlite3_update_hook(db, on_row_update, NULL);
        *ret = db;
        return 0;
}

static void lite_close(void *conn) { sqlite3_close_v2(conn); }

static int lite_exec_script(void *conn, const char *sql, const char *what) {
        char *err = NULL;
        if (sqlite3_exec(conn, sql, NULL, NULL, &err) != SQLITE_OK) {
                log_error("database statement of '%s' failed: %s", what, err ? err : "?");
                sqlite3_free(err);
                return -EIO;
        }
        return 0;
}

/* Maps a failed call on db to -EEXIST (unique), -ENOTEMPTY (foreign key),
 * -EBUSY (locked past the busy timeout) or -EIO; logs all but the first two. */
static int lite_errno(sqlite3 *db, int rc, const char *sql) {
        int ext = sqlite3_extended_errcode(db);
        if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
                return -EEXIST;
        if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
                return -ENOTEMPTY;
        log_error("database error %d (%s) in: %.120s", rc, sqlite3_errmsg(db), sql);
        /* Another writer held the database past the busy timeout: worth
         * a retry, unlike a broken statement or file. */
        if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
                return -EBUSY;
        return -EIO;
}

static int lite_errno_of(void *conn, int code) { return lite_errno(conn, code, "test"); }

static int lite_prepare(void *conn, const char *sql, void **ret) {
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(conn, sql, -1, &s, NULL);
        if (rc != SQLITE_OK)
                return lite_errno(conn, rc, sql);
        *ret = s;
        return 0;
}

static void lite_bind_i64(void *s, int idx, int64_t v) { (void) sqlite3_bind_int64(s, idx, v); }
static void lite_bind_double(void *s, int idx, double v) { (void) sqlite3_bind_double(s, idx, v); }
static void lite_bind_null(void *s, int idx) { (void) sqlite3_bind_null(s, idx); }
static void lite_bind_text(void *s, int idx, const char *v) {
        if (v)
                (void) sqlite3_bind_text(s, idx, v, -1, SQLITE_TRANSIENT);
        else
                (void) sqlite3_bind_null(s, idx);
}

static int lite_step(void *s) {
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
                return STORE_ROW;
        if (rc == SQLITE_DONE)
                return STORE_DONE;
        return lite_errno(sqlite3_db_handle(s), rc, sqlite3_sql(s));
}

static void lite_reset(void *s) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
}

static void lite_finalize(void *s) { sqlite3_finalize(s); }

static int64_t lite_col_i64(void *s, int col) { return sqlite3_column_int64(s, col); }
static double lite_col_double(void *s, int col) { return sqlite3_column_double(s, col); }
static const char *lite_col_text(void *s, int col) { return (const char *) sqlite3_column_text(s, col); }
static int lite_col_count(void *s) { return sqlite3_column_count(s); }
static const char *lite_col_name(void *s, int col) { return sqlite3_column_name(s, col); }
static StoreColType lite_col_type(void *s, int col) {
        switch (sqlite3_column_type(s, col)) {
        case SQLITE_NULL: return STORE_COL_NULL;
        case SQLITE_INTEGER: return STORE_COL_INTEGER;
        case SQLITE_FLOAT: return STORE_COL_FLOAT;
        default: return STORE_COL_TEXT;
        }
}

static int64_t lite_last_id(void *conn) { return sqlite3_last_insert_rowid(conn); }
static int lite_changes(void *conn) { return sqlite3_changes(conn); }
static bool lite_in_transaction(void *conn) { return !sqlite3_get_autocommit(conn); }

const StoreEngineOps store_engine_sqlite = {
        .kind = STORE_ENGINE_SQLITE,
        .name = "SQLite",
        .open = lite_open,
        .close = lite_close,
        .exec_script = lite_exec_script,
        .prepare = lite_prepare,
        .bind_i64 = lite_bind_i64,
        .bind_double = lite_bind_double,
        .bind_text = lite_bind_text,
        .bind_null = lite_bind_null,
        .step = lite_step,
        .reset = lite_reset,
        .finalize = lite_finalize,
        .col_i64 = lite_col_i64,
        .col_double = lite_col_double,
        .col_text = lite_col_text,
        .col_type = lite_col_type,
        .col_count = lite_col_count,
        .col_name = lite_col_name,
        .last_id = lite_last_id,
        .changes = lite_changes,
        .in_transaction = lite_in_transaction,
        .begin_sql = "BEGIN IMMEDIATE",
        .errno_of = lite_errno_of,
};
