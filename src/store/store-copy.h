/* store-copy: moves an installation's whole database from one store to
 * another (SQLite → PostgreSQL, and back), for armada-admin migrate-store.
 *
 * Engine-neutral: it reads and writes through the store's statements; only
 * the catalogue queries (which tables, columns, keys and sequences there
 * are) differ per engine. The target's schema is made by store_open()'s
 * migrations, so both ends hold the same tables; the copy carries every
 * row with its ids, and the id sequences so that ids of removed rows are
 * never handed out again. A verification reads both ends again: row count
 * and a SHA-256 per table over the rows ordered by primary key, each value
 * rendered canonically (the same text from either engine). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "store/store.h"

typedef struct {
        char name[64];
        int64_t source_rows, target_rows;
        char source_sum[65], target_sum[65];     /* SHA-256, lower-case hex */
        bool same;                               /* counts and sums agree */
} StoreCopyTable;

typedef struct {
        StoreCopyTable *tables;                  /* every table, in copy order */
        size_t n_tables;
        bool ok;                                 /* every table the same */
} StoreCopyReport;

/* Frees the report's tables (not the struct). Accepts NULL. */
void store_copy_report_clear(StoreCopyReport *rep);

/* Makes sure nothing else uses src and keeps it that way until src is
 * freed: SQLite — an exclusive lock on the file (refused at once while an
 * armadad holds it open); PostgreSQL — no other session on the database.
 * Then opens a read transaction over src. 0, or -EBUSY with a sentence in
 * err (naming no file), or another -errno with a sentence in err. */
int store_copy_claim_source(Store *src, char *err, size_t err_size) __attribute__((warn_unused_result));

/* Copies every row of src into dst in one transaction of dst, then checks
 * it over the same catalogues (every table counted and checksummed in both
 * stores; ret->ok when all agree) and fills *ret. dst must hold no rows but those
 * its migrations seed (a fresh store); seed_counts names how many each
 * table holds in a fresh store (from store_copy_seed_counts()). 0 (the
 * copy was committed; ret->ok tells whether every table agrees), or
 * -ENOTEMPTY (dst holds rows: err names the table; nothing changed), or
 * another -errno with a sentence in err (dst rolled back). */
int store_copy(Store *src, Store *dst, const StoreCopyReport *seed_counts, StoreCopyReport *ret, char *err, size_t err_size)
        __attribute__((warn_unused_result));

/* The row count of every table of a store (a freshly migrated scratch one:
 * the rows migrations seed), in *ret (sums left empty). 0 or -errno. */
int store_copy_seed_counts(Store *st, StoreCopyReport *ret) __attribute__((warn_unused_result));

