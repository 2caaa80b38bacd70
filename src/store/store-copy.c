/* store-copy: one store's rows into another (see store-copy.h). Phases:
 * claim the source, read both catalogues, check the target is fresh, then
 * in one transaction of the target: clear its seed rows, copy every table
 * in foreign-key order, settle what the target's triggers wrote meanwhile,
 * carry the id sequences; commit; verify. */
#include "store-copy.h"
#include "store-priv.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { CLASS_INTEGER, CLASS_REAL, CLASS_TEXT } ColClass;

typedef struct {
        char *name;
        ColClass cls;
        int pk;                 /* position in the primary key from 1, 0 when not in it */
        bool self_ref;          /* references its own table's primary key */
} Col;

typedef struct {
        char *name;
        Col *cols;
        size_t n_cols;
        char **refs;            /* tables it references (not itself) */
        size_t n_refs;
        bool referenced;        /* another table references it */
        bool autoinc;           /* SQLite: AUTOINCREMENT (a sqlite_sequence row) */
        bool rowid;             /* SQLite: a rowid table (rows copied in the order they were inserted) */
} Table;

typedef struct {
        Table *t;
        size_t n;
} Catalog;

static void fail(char *err, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(char *err, size_t size, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, size, fmt, ap);
        va_end(ap);
}

static void table_clear(Table *t) {
        for (size_t k = 0; k < t->n_cols; k++)
                free(t->cols[k].name);
        for (size_t k = 0; k < t->n_refs; k++)
                free(t->refs[k]);
        free(t->cols);
        free(t->refs);
        free(t->name);
}

static void catalog_clear(Catalog *c) {
        for (size_t i = 0; i < c->n; i++)
                table_clear(&c->t[i]);
        free(c->t);
        *c = (Catalog) {0};
}

void store_copy_report_clear(StoreCopyReport *rep) {
        if (!rep)
                return;
        free(rep->tables);
        *rep = (StoreCopyReport) {0};
}

static bool is_pg(Store *st) { return store_engine(st) == STORE_ENGINE_POSTGRESQL; }

/* ------------------------------------------------------------------ */
/* catalogue */

static ColClass class_of(const char *type) {
        _cleanup_free_ char *u = xstrdup(type ? type : "");
        for (char *p = u; *p; p++)
                *p = (char) toupper((unsigned char) *p);
        if (strstr(u, "INT"))
                return CLASS_INTEGER;
        if (strstr(u, "CHAR") || strstr(u, "CLOB") || strstr(u, "TEXT"))
                return CLASS_TEXT;
        if (strstr(u, "REAL") || strstr(u, "FLOA") || strstr(u, "DOUB") || strstr(u, "NUMERIC") || strstr(u, "DECIMAL"))
                return CLASS_REAL;
        return CLASS_TEXT;
}

static void row_strdup(StoreRow *row, void *out) {
        const char *s = store_col_text(row, 0);
        *(char **) out = xstrdup(s ? s : "");
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *) a, *(char *const *) b); }

static int read_columns(Store *st, Table *t) {
        StoreStmt *s;
        int r = store_prepare(st, store_sql(st,
                "SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid",
                "SELECT c.column_name, c.data_type, coalesce((SELECT k.ordinal_position"
                "  FROM information_schema.table_constraints tc JOIN information_schema.key_column_usage k"
                "  ON k.constraint_name = tc.constraint_name AND k.table_schema = tc.table_schema AND k.table_name = tc.table_name"
                "  WHERE tc.table_schema = c.table_schema AND tc.table_name = c.table_name"
                "  AND tc.constraint_type = 'PRIMARY KEY' AND k.column_name = c.column_name), 0)"
                " FROM information_schema.columns c WHERE c.table_schema = current_schema() AND c.table_name = ?"
                " ORDER BY c.ordinal_position"), &s);
        if (r < 0)
                return r;
        store_bind_text(s, 1, t->name);
        while ((r = store_step(s)) == STORE_ROW) {
                t->cols = xrealloc(t->cols, (t->n_cols + 1) * sizeof *t->cols);
                t->cols[t->n_cols++] = (Col) {
                        .name = xstrdup(store_col_text(s, 0) ?: ""),
                        .cls = class_of(store_col_text(s, 1)),
                        .pk = (int) store_col_i64(s, 2),
                };
        }
        store_finalize(s);
        return r;
}

static int read_refs(Store *st, Table *t) {
        StoreStmt *s;
        int r = store_prepare(st, store_sql(st,
                "SELECT \"from\", \"table\" FROM pragma_foreign_key_list(?)",
                "SELECT a.attname, rt.relname FROM pg_constraint c"
                " JOIN pg_class ct ON ct.oid = c.conrelid JOIN pg_namespace n ON n.oid = ct.relnamespace"
                " JOIN pg_class rt ON rt.oid = c.confrelid"
                " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
                " WHERE c.contype = 'f' AND n.nspname = current_schema() AND ct.relname = ?"), &s);
        if (r < 0)
                return r;
        store_bind_text(s, 1, t->name);
        while ((r = store_step(s)) == STORE_ROW) {
                const char *col = store_col_text(s, 0) ?: "", *ref = store_col_text(s, 1) ?: "";
                if (streq(ref, t->name)) {
                        for (size_t k = 0; k < t->n_cols; k++)
                                if (streq(t->cols[k].name, col))
                                        t->cols[k].self_ref = true;
                        continue;
                }
                t->refs = xrealloc(t->refs, (t->n_refs + 1) * sizeof *t->refs);
                t->refs[t->n_refs++] = xstrdup(ref);
        }
        store_finalize(s);
        return r;
}

static Table *catalog_find(const Catalog *c, const char *name) {
        for (size_t i = 0; i < c->n; i++)
                if (streq(c->t[i].name, name))
                        return &c->t[i];
        return NULL;
}

/* Marks the referenced tables and orders c so that each table comes
 * after the tables it references: repeatedly the first table whose
 * references are all placed (stable, so the order is the same on both
 * ends). -ELOOP when the foreign keys form a cycle (c unchanged). */
static int catalog_sort(Catalog *c, char *err, size_t err_size) {
        for (size_t i = 0; i < c->n; i++)
                for (size_t k = 0; k < c->t[i].n_refs; k++) {
                        Table *to = catalog_find(c, c->t[i].refs[k]);
                        if (to)
                                to->referenced = true;
                }
        Table *sorted = xcalloc(c->n + 1, sizeof(Table));
        bool *placed = xcalloc(c->n + 1, sizeof(bool));
        size_t done = 0;
        while (done < c->n) {
                bool progress = false;
                for (size_t i = 0; i < c->n && !progress; i++) {
                        if (placed[i])
                                continue;
                        bool ready = true;
                        for (size_t k = 0; ready && k < c->t[i].n_refs; k++)
                                for (size_t j = 0; j < c->n; j++)
                                        if (!placed[j] && streq(c->t[j].name, c->t[i].refs[k]))
                                                ready = false;
                        if (ready) {
                                sorted[done++] = c->t[i];
                                placed[i] = progress = true;
                        }
                }
                if (!progress) {
                        fail(err, err_size, "The tables' foreign keys form a cycle: no order to copy them in.");
                        free(placed);
                        free(sorted);
                        return -ELOOP;
                }
        }
        free(placed);
        free(c->t);
        c->t = sorted;
        return 0;
}

/* Every table of st (not the engine's own), in an order where each comes
 * after the tables it references. */
static int catalog_read(Store *st, Catalog *ret, char *err, size_t err_size) {
        char **names = NULL;
        int n = store_query_rows(st, row_strdup, sizeof(char *), (void **) &names, store_sql(st,
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"), "");
        if (n < 0) {
                fail(err, err_size, "Cannot read the list of tables.");
                return n;
        }
        qsort(names, (size_t) n, sizeof *names, cmp_str);
        Catalog c = { .t = xcalloc((size_t) n + 1, sizeof(Table)), .n = (size_t) n };
        for (int i = 0; i < n; i++)
                c.t[i].name = names[i];
        free(names);
        int r = 0;
        for (size_t i = 0; r >= 0 && i < c.n; i++) {
                Table *t = &c.t[i];
                if (strchr(t->name, '"') || strlen(t->name) >= sizeof(((StoreCopyTable *) 0)->name)) {
                        fail(err, err_size, "The table name '%s' cannot be copied.", t->name);
                        r = -EINVAL;
                        break;
                }
                r = read_columns(st, t);
                if (r >= 0)
                        r = read_refs(st, t);
                if (r >= 0 && !is_pg(st)) {
                        int64_t ai = 0;
                        r = store_query_i64(st, &ai, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
                                            " AND sql LIKE '%AUTOINCREMENT%'", "s", t->name);
                        t->autoinc = ai > 0;
                        if (r >= 0)
                                r = store_query_i64(st, &ai, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
                                                    " AND upper(sql) NOT LIKE '%WITHOUT ROWID%'", "s", t->name);
                        t->rowid = ai > 0;
                }
                for (size_t k = 0; r >= 0 && k < t->n_cols; k++)
                        if (strchr(t->cols[k].name, '"')) {
                                fail(err, err_size, "The column name '%s' of table '%s' cannot be copied.", t->cols[k].name, t->name);
                                r = -EINVAL;
                        }
                if (r < 0 && !err[0])
                        fail(err, err_size, "Cannot read the columns of table '%s'.", t->name);
        }
        if (r >= 0)
                r = catalog_sort(&c, err, err_size);
        if (r < 0) {
                catalog_clear(&c);
                return r;
        }
        *ret = c;
        return 0;
}

/* ------------------------------------------------------------------ */
/* rows: SQL text and the canonical rendering */

/* The rows of t, ordered by primary key for a checksum; for a copy
 * (copying) out of an SQLite rowid table in the order they were inserted,
 * which a column only PostgreSQL keeps may record (vm_snapshot.seq). */
static char *select_sql(Store *st, const Table *t, bool copying) {
        StrBuf b = {0};
        strbuf_append(&b, "SELECT ");
        for (size_t k = 0; k < t->n_cols; k++)
                strbuf_printf(&b, "%s\"%s\"", k ? ", " : "", t->cols[k].name);
        strbuf_printf(&b, " FROM \"%s\" ORDER BY ", t->name);
        if (copying && t->rowid && !is_pg(st)) {
                strbuf_append(&b, "rowid");
                return strbuf_steal(&b);
        }
        /* By primary key (every column when there is none), text compared
         * byte by byte on both engines, NULLs first on both. */
        bool any_pk = false;
        for (size_t k = 0; k < t->n_cols; k++)
                any_pk |= t->cols[k].pk > 0;
        bool first = true;
        for (int pos = any_pk ? 1 : 0; pos <= (int) t->n_cols; pos++)
                for (size_t k = 0; k < t->n_cols; k++) {
                        if (any_pk ? t->cols[k].pk != pos : (size_t) pos != k)
                                continue;
                        strbuf_printf(&b, "%s\"%s\"%s NULLS FIRST", first ? "" : ", ", t->cols[k].name,
                                      t->cols[k].cls == CLASS_TEXT ? store_sql(st, " COLLATE BINARY", " COLLATE \"C\"") : "");
                        first = false;
                }
        return strbuf_steal(&b);
}

static char *insert_sql(const Table *t) {
        StrBuf b = {0};
        strbuf_printf(&b, "INSERT INTO \"%s\" (", t->name);
        for (size_t k = 0; k < t->n_cols; k++)
                strbuf_printf(&b, "%s\"%s\"", k ? ", " : "", t->cols[k].name);
        strbuf_append(&b, ") VALUES (");
        for (size_t k = 0; k < t->n_cols; k++)
                strbuf_append(&b, k ? ", ?" : "?");
        strbuf_append(&b, ")");
        return strbuf_steal(&b);
}

/* The one integer primary-key column of t, or NULL. */
static const Col *int_pk(const Table *t) {
        const Col *found = NULL;
        for (size_t k = 0; k < t->n_cols; k++)
                if (t->cols[k].pk > 0) {
                        if (found)
                                return NULL;
                        found = &t->cols[k];
                }
        return found && found->cls == CLASS_INTEGER ? found : NULL;
}

/* Adds column k of row to the checksum: "N" NULL, "I<decimal>" integer,
 * "R<%.17g>" real, "T<length>:<bytes>" text, each followed by ';'. */
static void sum_value(crypto_hash_sha256_state *h, StoreRow *row, int k, ColClass cls) {
        char buf[64];
        if (store_col_null(row, k)) {
                crypto_hash_sha256_update(h, (const unsigned char *) "N;", 2);
                return;
        }
        switch (cls) {
        case CLASS_INTEGER:
                snprintf(buf, sizeof buf, "I%" PRId64 ";", store_col_i64(row, k));
                break;
        case CLASS_REAL:
                snprintf(buf, sizeof buf, "R%.17g;", store_col_double(row, k));
                break;
        case CLASS_TEXT: {
                const char *s = store_col_text(row, k) ?: "";
                size_t len = strlen(s);
                snprintf(buf, sizeof buf, "T%zu:", len);
                crypto_hash_sha256_update(h, (const unsigned char *) buf, strlen(buf));
                crypto_hash_sha256_update(h, (const unsigned char *) s, len);
                crypto_hash_sha256_update(h, (const unsigned char *) ";", 1);
                return;
        }
        }
        crypto_hash_sha256_update(h, (const unsigned char *) buf, strlen(buf));
}

/* The row count and checksum of t in st. */
static int table_sum(Store *st, const Table *t, int64_t *ret_rows, char ret_hex[65]) {
        _cleanup_free_ char *sql = select_sql(st, t, false);
        StoreStmt *s;
        int r = store_prepare(st, sql, &s);
        if (r < 0)
                return r;
        crypto_hash_sha256_state h;
        crypto_hash_sha256_init(&h);
        int64_t rows = 0;
        while ((r = store_step(s)) == STORE_ROW) {
                for (size_t k = 0; k < t->n_cols; k++)
                        sum_value(&h, s, (int) k, t->cols[k].cls);
                crypto_hash_sha256_update(&h, (const unsigned char *) "\n", 1);
                rows++;
        }
        store_finalize(s);
        if (r < 0)
                return r;
        unsigned char out[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_final(&h, out);
        sodium_bin2hex(ret_hex, 65, out, sizeof out);
        *ret_rows = rows;
        return 0;
}

/* ------------------------------------------------------------------ */
/* copying */

/* A value an SQLite column holds that its declared type cannot (an INTEGER
 * column holding text or a fraction): PostgreSQL would refuse it, and a
 * silent conversion would change the installation's data. */
static bool value_fits(StoreRow *row, int k, ColClass cls) {
        if (cls != CLASS_INTEGER)
                return true;
        StoreColType ty = store_col_type(row, k);
        return ty == STORE_COL_NULL || ty == STORE_COL_INTEGER;
}

static void bind_value(StoreStmt *ins, int idx, StoreRow *row, int k, ColClass cls) {
        if (store_col_null(row, k)) {
                store_bind_null(ins, idx);
                return;
        }
        switch (cls) {
        case CLASS_INTEGER: store_bind_i64(ins, idx, store_col_i64(row, k)); break;
        case CLASS_REAL: store_bind_double(ins, idx, store_col_double(row, k)); break;
        case CLASS_TEXT: store_bind_text(ins, idx, store_col_text(row, k)); break;
        }
}

typedef struct {
        int64_t id, value;
        int col;
} SelfRef;

/* Sets the columns that reference t itself, which the insert left NULL
 * (a row may name one copied after it). */
static int copy_self_refs(Store *dst, const Table *t, const SelfRef *refs, size_t n, char *err, size_t err_size) {
        const Col *pk = int_pk(t);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *sql = xasprintf("UPDATE \"%s\" SET \"%s\" = ? WHERE \"%s\" = ?", t->name,
                                                     t->cols[refs[i].col].name, pk->name);
                int r = store_exec(dst, sql, "ii", refs[i].value, refs[i].id);
                if (r < 0) {
                        fail(err, err_size, "Cannot copy table '%s': a row names a missing row of its own table.", t->name);
                        return r;
                }
        }
        return 0;
}

static int copy_table(Store *src, Store *dst, const Table *t, char *err, size_t err_size) {
        const Col *pk = int_pk(t);
        for (size_t k = 0; k < t->n_cols; k++)
                if (t->cols[k].self_ref && !pk) {
                        fail(err, err_size, "Cannot copy table '%s': it references itself without an integer primary key.", t->name);
                        return -EINVAL;
                }
        _cleanup_free_ char *sel = select_sql(src, t, true), *ins_sql = insert_sql(t);
        StoreStmt *s = NULL, *ins = NULL;
        int r = store_prepare(src, sel, &s);
        if (r >= 0)
                r = store_prepare(dst, ins_sql, &ins);
        SelfRef *refs = NULL;
        size_t n_refs = 0;
        int pk_idx = pk ? (int) (pk - t->cols) : -1;
        while (r >= 0 && (r = store_step(s)) == STORE_ROW) {
                for (size_t k = 0; k < t->n_cols; k++) {
                        if (!value_fits(s, (int) k, t->cols[k].cls)) {
                                fail(err, err_size, "Cannot copy table '%s': column '%s' holds a value that is not an integer.",
                                     t->name, t->cols[k].name);
                                r = -EINVAL;
                                break;
                        }
                        if (t->cols[k].self_ref && !store_col_null(s, (int) k)) {
                                refs = xrealloc(refs, (n_refs + 1) * sizeof *refs);
                                refs[n_refs++] = (SelfRef) { .id = store_col_i64(s, pk_idx), .value = store_col_i64(s, (int) k), .col = (int) k };
                                store_bind_null(ins, (int) k + 1);
                        } else
                                bind_value(ins, (int) k + 1, s, (int) k, t->cols[k].cls);
                }
                if (r < 0)
                        break;
                r = store_step(ins);
                store_reset(ins);
                if (r < 0)
                        fail(err, err_size, "Cannot copy a row of table '%s' into the target store.", t->name);
        }
        store_finalize(ins);
        store_finalize(s);
        if (r < 0 && !err[0])
                fail(err, err_size, "Cannot read table '%s' of the source store.", t->name);
        if (r >= 0)
                r = copy_self_refs(dst, t, refs, n_refs, err, err_size);
        free(refs);
        return r < 0 ? r : 0;
}

static int clear_table(Store *dst, const Table *t) {
        _cleanup_free_ char *sql = xasprintf("DELETE FROM \"%s\"", t->name);
        return store_exec(dst, sql, "");
}

/* The highest id t's rows ever had in src: its largest id and, when the
 * engine keeps one, its sequence (ids of removed rows). */
static int source_last_id(Store *src, const Table *t, const Col *pk, int64_t *ret) {
        _cleanup_free_ char *max_sql = xasprintf("SELECT coalesce(max(\"%s\"), 0) FROM \"%s\"", pk->name, t->name);
        int64_t max = 0, seq = 0;
        int r = store_query_i64(src, &max, max_sql, "");
        if (r < 0)
                return r;
        _cleanup_free_ char *quoted = xasprintf("\"%s\"", t->name);
        if (is_pg(src))
                r = store_query_i64(src, &seq, "SELECT coalesce((SELECT s.last_value FROM pg_sequences s"
                                    " WHERE format('%I.%I', s.schemaname, s.sequencename)::regclass"
                                    " = pg_get_serial_sequence(?, ?)::regclass), 0)", "ss", quoted, pk->name);
        else if (t->autoinc)
                r = store_query_i64(src, &seq, "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?), 0)", "s", t->name);
        if (r < 0)
                return r;
        *ret = seq > max ? seq : max;
        return 0;
}

/* Starts dst's id sequence of t after last, so that no id t ever had is
 * handed out again. */
static int target_set_sequence(Store *dst, const Table *t, const Table *dt, const Col *pk, int64_t last) {
        _cleanup_free_ char *quoted = xasprintf("\"%s\"", t->name);
        if (is_pg(dst)) {
                if (last >= 1)
                        return store_exec(dst, "SELECT setval(pg_get_serial_sequence(?, ?), ?, true)"
                                          " WHERE pg_get_serial_sequence(?, ?) IS NOT NULL", "ssiss", quoted, pk->name, last, quoted, pk->name);
                return store_exec(dst, "SELECT setval(pg_get_serial_sequence(?, ?), 1, false)"
                                  " WHERE pg_get_serial_sequence(?, ?) IS NOT NULL", "ssss", quoted, pk->name, quoted, pk->name);
        }
        if (!dt->autoinc)
                return 0;
        int r = store_exec(dst, "DELETE FROM sqlite_sequence WHERE name = ?", "s", t->name);
        if (r >= 0 && last > 0)
                r = store_exec(dst, "INSERT INTO sqlite_sequence(name, seq) VALUES (?, ?)", "si", t->name, last);
        return r;
}

/* Every identity column of dst (PostgreSQL), the id and any other such as
 * vm_snapshot.seq, draws after the largest value its table holds: rows
 * copied with explicit values do not move a sequence, and a column one
 * engine alone keeps was filled by the target itself. Never moves a
 * sequence back. 0 or -errno. */
static int target_raise_identities(Store *dst, const Catalog *dc, char *err, size_t err_size) {
        if (!is_pg(dst))
                return 0;
        for (size_t i = 0; i < dc->n; i++) {
                const Table *t = &dc->t[i];
                _cleanup_free_ char *quoted = xasprintf("\"%s\"", t->name);
                for (size_t k = 0; k < t->n_cols; k++) {
                        if (t->cols[k].cls != CLASS_INTEGER)
                                continue;
                        _cleanup_free_ char *sql = xasprintf(
                                "SELECT setval(pg_get_serial_sequence(?1, ?2), m) FROM (SELECT max(\"%s\") AS m FROM \"%s\") x"
                                " WHERE pg_get_serial_sequence(?1, ?2) IS NOT NULL AND m > coalesce((SELECT s.last_value"
                                " FROM pg_sequences s WHERE format('%%I.%%I', s.schemaname, s.sequencename)::regclass"
                                " = pg_get_serial_sequence(?1, ?2)::regclass), 0)",
                                t->cols[k].name, t->name);
                        int r = store_exec(dst, sql, "ss", quoted, t->cols[k].name);
                        if (r < 0) {
                                fail(err, err_size, "Cannot carry the sequence of column '%s' of table '%s'.", t->cols[k].name,
                                     t->name);
                                return r;
                        }
                }
        }
        return 0;
}

/* ------------------------------------------------------------------ */
/* phases */

int store_copy_claim_source(Store *src, char *err, size_t err_size) {
        assert(src && err);
        err[0] = '\0';
        int r;
        if (is_pg(src)) {
                int64_t others = 0;
                r = store_query_i64(src, &others, "SELECT count(*) FROM pg_stat_activity"
                                    " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'", "");
                if (r < 0) {
                        fail(err, err_size, "Cannot tell whether the source store is in use.");
                        return r;
                }
                if (others > 0) {
                        fail(err, err_size, "The source store is in use by %" PRId64 " other session%s (is armadad running on it?):"
                             " stop every armadad first.", others, others == 1 ? "" : "s");
                        return -EBUSY;
                }
                r = store_exec(src, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "");
        } else {
                /* An armadad keeps its connections open: a lock that no
                 * other connection may share is refused while it runs, and
                 * kept (exclusive locking mode) until the copy ends. */
                r = store_exec(src, "PRAGMA busy_timeout = 0", "");
                if (r >= 0)
                        r = store_exec(src, "PRAGMA locking_mode = EXCLUSIVE", "");
                if (r >= 0)
                        r = store_exec(src, "BEGIN EXCLUSIVE", "");
                if (r == -EBUSY) {
                        fail(err, err_size, "The source store is in use (is armadad running on it?): stop armadad first.");
                        return r;
                }
        }
        if (r < 0)
                fail(err, err_size, "Cannot start reading the source store.");
        return r;
}

int store_copy_seed_counts(Store *st, StoreCopyReport *ret) {
        char err[256] = "";
        Catalog c = {0};
        int r = catalog_read(st, &c, err, sizeof err);
        if (r < 0)
                return r;
        StoreCopyReport rep = { .tables = xcalloc(c.n + 1, sizeof(StoreCopyTable)), .n_tables = c.n, .ok = true };
        for (size_t i = 0; r >= 0 && i < c.n; i++) {
                snprintf(rep.tables[i].name, sizeof rep.tables[i].name, "%s", c.t[i].name);
                _cleanup_free_ char *sql = xasprintf("SELECT count(*) FROM \"%s\"", c.t[i].name);
                r = store_query_i64(st, &rep.tables[i].source_rows, sql, "");
        }
        catalog_clear(&c);
        if (r < 0) {
                store_copy_report_clear(&rep);
                return r;
        }
        *ret = rep;
        return 0;
}

static int64_t seed_rows(const StoreCopyReport *seed, const char *table) {
        for (size_t i = 0; seed && i < seed->n_tables; i++)
                if (streq(seed->tables[i].name, table))
                        return seed->tables[i].source_rows;
        return 0;
}

/* Drops t's columns that other lacks: a column one engine alone keeps
 * (PostgreSQL's vm_snapshot.seq) is neither copied nor compared; the
 * target fills it with its default. */
static void restrict_columns(Table *t, const Table *other) {
        size_t n = 0;
        for (size_t k = 0; k < t->n_cols; k++) {
                bool found = false;
                for (size_t j = 0; j < other->n_cols; j++)
                        found |= streq(other->cols[j].name, t->cols[k].name);
                if (found)
                        t->cols[n++] = t->cols[k];
                else
                        free(t->cols[k].name);
        }
        t->n_cols = n;
}

/* Every table of the source that holds rows is in the target, with the
 * same columns (a table only one engine keeps, empty in the source, is
 * left alone: it moves from sc to *only, for the verification to list);
 * the target is fresh (no table holds more rows than a fresh store's
 * migrations seed). */
static int check_ends(Store *src, Store *dst, Catalog *sc, Catalog *only, const Catalog *dc, const StoreCopyReport *seed,
                      char *err, size_t err_size) {
        for (size_t i = 0; i < sc->n; i++) {
                Table *t = &sc->t[i];
                const Table *d = catalog_find(dc, t->name);
                if (!d) {
                        _cleanup_free_ char *sql = xasprintf("SELECT count(*) FROM \"%s\"", t->name);
                        int64_t n = 0;
                        int r = store_query_i64(src, &n, sql, "");
                        if (r < 0 || n > 0) {
                                fail(err, err_size, "The target store has no table '%s': is it the same version of Armada?", t->name);
                                return r < 0 ? r : -EINVAL;
                        }
                        only->t = xrealloc(only->t, (only->n + 1) * sizeof *only->t);
                        only->t[only->n++] = *t;
                        memmove(t, t + 1, (sc->n - i - 1) * sizeof *t);
                        sc->n--;
                        i--;
                        continue;
                }
                size_t pk_before = 0, pk_after = 0;
                for (size_t k = 0; k < t->n_cols; k++)
                        pk_before += t->cols[k].pk > 0;
                restrict_columns(t, d);
                for (size_t k = 0; k < t->n_cols; k++)
                        pk_after += t->cols[k].pk > 0;
                if (t->n_cols == 0 || pk_after != pk_before) {
                        fail(err, err_size, "Table '%s' has other columns in the target store: is it the same version of Armada?",
                             t->name);
                        return -EINVAL;
                }
        }
        for (size_t i = 0; i < dc->n; i++) {
                _cleanup_free_ char *sql = xasprintf("SELECT count(*) FROM \"%s\"", dc->t[i].name);
                int64_t n = 0;
                int r = store_query_i64(dst, &n, sql, "");
                if (r < 0) {
                        fail(err, err_size, "Cannot count the rows of table '%s' in the target store.", dc->t[i].name);
                        return r;
                }
                if (n > seed_rows(seed, dc->t[i].name)) {
                        fail(err, err_size, "The target store already holds rows in table '%s': migrate-store copies only into"
                             " a new, empty database (it never overwrites one).", dc->t[i].name);
                        return -ENOTEMPTY;
                }
        }
        return 0;
}

/* No foreign key joins t to another table. */
static bool standalone(const Table *t) {
        return t->n_refs == 0 && !t->referenced;
}

/* The copy proper, inside dst's transaction. */
static int copy_all(Store *src, Store *dst, const Catalog *sc, const Catalog *dc, char *err, size_t err_size) {
        int r = 0;
        /* The rows the target's migrations seeded give way to the source's:
         * first those of the tables joined by foreign keys (the root group,
         * the alert rules), whose deletion may fire triggers that need the
         * standalone tables' seeds (place_seq); those are emptied and copied
         * last, after the triggers of every other copy have written. */
        for (size_t i = sc->n; r >= 0 && i > 0; i--)
                if (!standalone(&sc->t[i - 1]) && (r = clear_table(dst, &sc->t[i - 1])) < 0)
                        fail(err, err_size, "Cannot empty table '%s' of the target store.", sc->t[i - 1].name);
        for (size_t i = 0; r >= 0 && i < sc->n; i++)
                if (!standalone(&sc->t[i]))
                        r = copy_table(src, dst, &sc->t[i], err, err_size);
        for (size_t i = 0; r >= 0 && i < sc->n; i++)
                if (standalone(&sc->t[i])) {
                        if ((r = clear_table(dst, &sc->t[i])) < 0)
                                fail(err, err_size, "Cannot empty table '%s' of the target store.", sc->t[i].name);
                        else
                                r = copy_table(src, dst, &sc->t[i], err, err_size);
                }
        /* The target's triggers wrote too (the placement's dirty marks, its
         * counters): a table no other references is copied again until it
         * equals the source's. */
        for (int pass = 0; r >= 0 && pass < 3; pass++) {
                bool again = false;
                for (size_t i = 0; r >= 0 && i < sc->n; i++) {
                        const Table *t = &sc->t[i];
                        int64_t ns = 0, nd = 0;
                        char hs[65], hd[65];
                        r = table_sum(src, t, &ns, hs);
                        if (r >= 0)
                                r = table_sum(dst, t, &nd, hd);
                        if (r < 0 || (ns == nd && streq(hs, hd)) || t->referenced)
                                continue;
                        again = true;
                        r = clear_table(dst, t);
                        if (r >= 0)
                                r = copy_table(src, dst, t, err, err_size);
                }
                if (!again)
                        break;
        }
        for (size_t i = 0; r >= 0 && i < sc->n; i++) {
                const Col *pk = int_pk(&sc->t[i]);
                int64_t last = 0;
                if (!pk)
                        continue;
                r = source_last_id(src, &sc->t[i], pk, &last);
                if (r >= 0)
                        r = target_set_sequence(dst, &sc->t[i], catalog_find(dc, sc->t[i].name), pk, last);
                if (r < 0)
                        fail(err, err_size, "Cannot carry the id sequence of table '%s'.", sc->t[i].name);
        }
        if (r >= 0)
                r = target_raise_identities(dst, dc, err, err_size);
        if (r < 0 && !err[0])
                fail(err, err_size, "Cannot copy the rows into the target store.");
        return r;
}

/* The report over the committed copy: every table of the source (sc, its
 * columns restricted to the target's by check_ends(); only, the tables of
 * the source's engine alone, empty) counted and checksummed in both
 * stores, and those of the target's engine alone (dc's others) listed. The
 * catalogues are the ones the copy walked: nothing is read twice. */
static int verify_copy(Store *src, Store *dst, const Catalog *sc, const Catalog *only, const Catalog *dc,
                       StoreCopyReport *ret, char *err, size_t err_size) {
        StoreCopyReport rep = { .tables = xcalloc(sc->n + only->n + dc->n + 1, sizeof(StoreCopyTable)), .ok = true };
        int r = 0;
        for (size_t i = 0; r >= 0 && i < sc->n; i++) {
                const Table *t = &sc->t[i];
                StoreCopyTable *out = &rep.tables[rep.n_tables++];
                snprintf(out->name, sizeof out->name, "%s", t->name);
                r = table_sum(src, t, &out->source_rows, out->source_sum);
                if (r < 0) {
                        fail(err, err_size, "Cannot read table '%s' of the source store.", t->name);
                        break;
                }
                r = table_sum(dst, t, &out->target_rows, out->target_sum);
                if (r < 0)
                        fail(err, err_size, "Cannot read table '%s' of the target store.", t->name);
                out->same = out->source_rows == out->target_rows && streq(out->source_sum, out->target_sum);
                rep.ok &= out->same;
        }
        for (size_t i = 0; r >= 0 && i < only->n; i++) {
                StoreCopyTable *out = &rep.tables[rep.n_tables++];
                snprintf(out->name, sizeof out->name, "%s", only->t[i].name);
                r = table_sum(src, &only->t[i], &out->source_rows, out->source_sum);
                if (r < 0)
                        fail(err, err_size, "Cannot read table '%s' of the source store.", only->t[i].name);
                out->target_rows = -1;
                out->same = out->source_rows == 0;
                rep.ok &= out->same;
        }
        /* A table of the target's engine alone (none of the source's
         * rows belong in it): listed, not compared. */
        for (size_t i = 0; r >= 0 && i < dc->n; i++)
                if (!catalog_find(sc, dc->t[i].name)) {
                        StoreCopyTable *out = &rep.tables[rep.n_tables++];
                        snprintf(out->name, sizeof out->name, "%s", dc->t[i].name);
                        out->source_rows = -1;
                        out->same = true;
                        _cleanup_free_ char *sql = xasprintf("SELECT count(*) FROM \"%s\"", dc->t[i].name);
                        r = store_query_i64(dst, &out->target_rows, sql, "");
                }
        if (r < 0) {
                store_copy_report_clear(&rep);
                return r;
        }
        *ret = rep;
        return 0;
}

int store_copy(Store *src, Store *dst, const StoreCopyReport *seed_counts, StoreCopyReport *ret, char *err, size_t err_size) {
        assert(src && dst && ret && err);
        err[0] = '\0';
        Catalog sc = {0}, dc = {0}, only = {0};
        int r = catalog_read(src, &sc, err, err_size);
        if (r >= 0)
                r = catalog_read(dst, &dc, err, err_size);
        if (r >= 0)
                r = check_ends(src, dst, &sc, &only, &dc, seed_counts, err, err_size);
        if (r >= 0) {
                r = store_begin(dst);
                if (r >= 0)
                        r = copy_all(src, dst, &sc, &dc, err, err_size);
                else
                        fail(err, err_size, "Cannot start a transaction on the target store.");
                r = store_end(dst, r);
                if (r < 0 && !err[0])
                        fail(err, err_size, "Cannot commit the copy into the target store.");
        }
        if (r >= 0)
                r = verify_copy(src, dst, &sc, &only, &dc, ret, err, err_size);
        catalog_clear(&sc);
        catalog_clear(&dc);
        catalog_clear(&only);
        return r;
}
