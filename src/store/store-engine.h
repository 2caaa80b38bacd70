/* The database engines behind store.c: SQLite (store-sqlite.c) and
 * PostgreSQL (store-pg.c). store.c keeps the connections per thread, the
 * migrations, the hooks and every statement of the foundation; an engine
 * only opens a connection, runs a statement and reads its rows. Private to
 * the store's own files. */
#pragma once

#ifndef STORE_PRIV_ALLOW
#error "store-engine.h is private to the store's own files (their meson target defines STORE_PRIV_ALLOW)"
#endif

#include "store.h"
#include "store-priv.h"

/* One engine. conn is the engine's connection (one per thread), stmt the
 * engine's statement; both are opaque to store.c. Every function that can
 * fail returns 0 (or STORE_ROW/STORE_DONE) or a negative errno as
 * store_step() documents, and logs what it does not map. */
typedef struct {
        StoreEngine kind;
        const char *name;
        /* target: a file path (SQLite) or a libpq connection string. */
        int (*open)(const char *target, void **ret_conn);
        void (*close)(void *conn);
        /* Several statements without parameters (a migration); -EIO logged
         * with what (the migration's name). */
        int (*exec_script)(void *conn, const char *sql, const char *what);
        int (*prepare)(void *conn, const char *sql, void **ret_stmt);
        void (*bind_i64)(void *stmt, int idx, int64_t v);
        void (*bind_double)(void *stmt, int idx, double v);
        void (*bind_text)(void *stmt, int idx, const char *v);
        void (*bind_null)(void *stmt, int idx);
        int (*step)(void *stmt);
        void (*reset)(void *stmt);
        void (*finalize)(void *stmt);
        int64_t (*col_i64)(void *stmt, int col);
        double (*col_double)(void *stmt, int col);
        const char *(*col_text)(void *stmt, int col);
        StoreColType (*col_type)(void *stmt, int col);
        int (*col_count)(void *stmt);
        const char *(*col_name)(void *stmt, int col);
        int64_t (*last_id)(void *conn);
        int (*changes)(void *conn);
        bool (*in_transaction)(void *conn);
        /* The statement that opens a writing transaction. */
        const char *begin_sql;
        int (*errno_of)(void *conn, int code);
} StoreEngineOps;

extern const StoreEngineOps store_engine_sqlite;
extern const StoreEngineOps store_engine_pg;

/* Notes a changed row of host_group, host or vm for the rows hook (store.c
 * delivers it once no transaction is open). For the engines' change
 * tracking: SQLite's update hook, PostgreSQL's notifications. */
void store_rows_mark(StoreTable table, int64_t id);
/* A changed row named the way the PostgreSQL triggers do: "vm:12". */
void store_rows_mark_text(const char *payload);

/* The advisory lock every PostgreSQL writer takes (store_begin(), and each
 * writing statement outside a transaction): Armada's writers serialise the
 * way SQLite's do. */
#define STORE_PG_WRITE_LOCK 0x41524d4144410001LL

/* SQLite DDL as PostgreSQL's (StoreMigration without pg text): malloc'd. */
char *store_pg_translate_ddl(const char *sql);
