/* Internals shared by store.c and the capabilities' store-<capability>.c
 * files: statements, rows and the row helpers every query builds on. Not
 * for other modules.
 *
 * No file but the engines (store-sqlite.c, store-pg.c, behind
 * store-engine.h) and store.c name a database engine: a statement is a
 * StoreStmt, the row it stands on a StoreRow, and their columns are read
 * with store_col_*(). SQL text is written for both engines (store.h,
 * StoreMigration; store_sql() where they differ). */
#pragma once

#ifndef STORE_PRIV_ALLOW
#error "store-priv.h is private to the store's own files (their meson target defines STORE_PRIV_ALLOW); use the module's public header"
#endif

#include "store.h"

/* A statement of this thread changed what store_counts_generation()
 * covers (an alert opened, resolved or acknowledged): the generation moves
 * now, or at the commit of the open transaction. */
void store_counts_changed(Store *st);

/* A prepared statement of this thread's connection. */
typedef struct StoreStmt StoreStmt;
/* The row a statement stands on after store_step() returned STORE_ROW:
 * read through the statement, valid until its next step/reset/finalize. */
typedef StoreStmt StoreRow;

/* Where the engines truly differ: the text for this store's engine, one of
 * the two (static strings). Write SQL both accept wherever possible. */
const char *store_sql(Store *st, const char *sqlite, const char *postgresql);

/* Copies the current row into out (one struct). */
typedef void (*StoreRowFn)(StoreRow *row, void *out);

/* ---- columns of the current row (0-based) ---- */
int64_t store_col_i64(StoreRow *row, int col);
int store_col_int(StoreRow *row, int col);
double store_col_double(StoreRow *row, int col);
/* NULL for SQL NULL; valid until the row moves. */
const char *store_col_text(StoreRow *row, int col);
bool store_col_null(StoreRow *row, int col);
typedef enum {
        STORE_COL_NULL,
        STORE_COL_INTEGER,
        STORE_COL_FLOAT,
        STORE_COL_TEXT,
} StoreColType;
/* The value's type in this row (SQLite types values, not columns). */
StoreColType store_col_type(StoreRow *row, int col);
int store_col_count(StoreRow *row);
const char *store_col_name(StoreRow *row, int col);
/* A text column into a fixed buffer ("" for NULL), truncated to size. */
void store_copy_text(char *dst, size_t size, StoreRow *row, int col);

/* ---- statements reused for many rows (bulk writes, streamed reads) ----
 * Parameters are numbered from 1 and stay bound until store_reset(). */
enum { STORE_DONE = 0, STORE_ROW = 1 };
/* 0 or negative (logged with the statement). */
int store_prepare(Store *st, const char *sql, StoreStmt **ret);
void store_bind_i64(StoreStmt *s, int idx, int64_t v);
void store_bind_double(StoreStmt *s, int idx, double v);
/* NULL binds NULL; the text is copied. */
void store_bind_text(StoreStmt *s, int idx, const char *v);
void store_bind_null(StoreStmt *s, int idx);
/* STORE_ROW, STORE_DONE, or negative: -EEXIST (a unique or primary key
 * constraint), -ENOTEMPTY (a foreign key), -EBUSY (the database stayed
 * locked past the timeout) or -EIO; all but the first two are logged. */
int store_step(StoreStmt *s);
/* Back to before the first step, bindings cleared. */
void store_reset(StoreStmt *s);
/* Maps an engine's own error code the way store_step() does (SQLite: its
 * result code; PostgreSQL: 0 unique, 1 foreign key, 2 deadlock, 3 other).
 * For tests of the mapping. */
int store_engine_errno(Store *st, int code);
/* Accepts NULL. Tells the rows hook what the statement changed once no
 * transaction is open. */
void store_finalize(StoreStmt *s);

/* One row through fn: 0, -ENOENT when there is none, or negative. types as
 * for store_exec(). */
int store_query_row(Store *st, StoreRowFn fn, void *out, const char *sql, const char *types, ...);
/* Every row, each through fn into a malloc'd array of elem-sized entries
 * (zeroed first): the count, or negative with *ret untouched. */
int store_query_rows(Store *st, StoreRowFn fn, size_t elem, void **ret, const char *sql, const char *types, ...);

/* Rebuilds table so that its "id INTEGER PRIMARY KEY" column becomes
 * AUTOINCREMENT (ids of removed rows are never handed out again), keeping
 * its rows, indexes and triggers, and starts its sequence after the largest
 * id still in use or named by a job, event or audit entry whose target or
 * object kind is kind. For a StoreMigration's run step (one transaction,
 * foreign keys off). 0 (also when it is AUTOINCREMENT already) or negative. */
int store_table_autoincrement(Store *st, const char *table, const char *kind);
