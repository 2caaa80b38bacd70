/* Internals shared by store.c and the capabilities' store-<capability>.c
 * files: the row helpers every query builds on. Not for other modules. */
#pragma once

#ifndef STORE_PRIV_ALLOW
#error "store-priv.h is private to the store's own files (their meson target defines STORE_PRIV_ALLOW); use the module's public header"
#endif

#include <sqlite3.h>
#include "store.h"

/* Copies the current row of stmt into out (one struct). */
typedef void (*StoreRowFn)(sqlite3_stmt *stmt, void *out);

/* Maps a failed sqlite3 call to -EEXIST (unique), -ENOTEMPTY (foreign key)
 * or -EIO (logged with the statement). */
int store_errcode(sqlite3 *db, int rc, const char *sql);
/* One row through fn: 0, -ENOENT when there is none, or negative. types as
 * for store_exec(). */
int store_query_row(Store *st, StoreRowFn fn, void *out, const char *sql, const char *types, ...);
/* Every row, each through fn into a malloc'd array of elem-sized entries
 * (zeroed first): the count, or negative with *ret untouched. */
int store_query_rows(Store *st, StoreRowFn fn, size_t elem, void **ret, const char *sql, const char *types, ...);
/* A text column into a fixed buffer ("" for NULL), truncated to size. */
void store_copy_text(char *dst, size_t size, sqlite3_stmt *stmt, int col);

/* Rebuilds table so that its "id INTEGER PRIMARY KEY" column becomes
 * AUTOINCREMENT (ids of removed rows are never handed out again), keeping
 * its rows, indexes and triggers, and starts its sequence after the largest
 * id still in use or named by a job, event or audit entry whose target or
 * object kind is kind. For a StoreMigration's run step (one transaction,
 * foreign keys off). 0 (also when it is AUTOINCREMENT already) or negative. */
int store_table_autoincrement(Store *st, const char *table, const char *kind);
