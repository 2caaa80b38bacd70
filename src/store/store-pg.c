/* store-pg: the PostgreSQL engine behind store.c (store-engine.h), on
 * libpq. One connection per thread, like SQLite's. SQL is written once for
 * both engines (store.h): this file rewrites SQLite's parameters ("?",
 * "?N") to PostgreSQL's ("$N") and quotes the table name "user" where
 * PostgreSQL would read the keyword; the rest is PostgreSQL's own.
 *
 * Writers serialise as they do on SQLite: store_begin() takes one advisory
 * lock for the transaction, and a writing statement outside a transaction
 * runs in one of its own that takes the same lock. A writing statement
 * inside a transaction runs under a savepoint, so that its failure (a
 * unique key) fails it alone, as on SQLite, and not the transaction.
 * Such a write goes with its wrapping in one libpq pipeline (one round
 * trip, not three); the server runs the commands in order, so the lock is
 * held before the write runs, exactly as before.
 *
 * Changed rows reach the rows hook through LISTEN/NOTIFY: triggers on
 * host_group, host, vm and vm_disk notify "armada_rows" with "vm:<id>";
 * every connection listens, so a commit of this manager or of another one
 * sharing the database reaches the read model. */
#include "store-engine.h"

#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Type OIDs (pg_type.h is a server header). */
enum {
        OID_BOOL = 16, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_TEXT = 25, OID_OID = 26,
        OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_NUMERIC = 1700,
};

typedef struct {
        PGconn *pg;
        const void *owner;      /* the store */
        int pid;                /* the server process */
        int changes;
        int64_t last_id;
        bool have_last_id;
} PgConn;

typedef enum { PG_READ, PG_WRITE, PG_CONTROL } PgKind;

typedef struct {
        PgConn *c;
        char *sql;              /* translated */
        const char *orig;       /* the caller's text, for logs */
        PgKind kind;
        bool commit;            /* COMMIT/END: a failed transaction reports ROLLBACK */
        bool insert;
        bool one;               /* one statement (no ';'): may go in a pipeline */
        int n_params;
        bool *null_ctx;         /* per parameter: used in "IS [NOT] NULL", typed text when bound as text */
        char **values;
        Oid *types;
        PGresult *res;
        int row, n_rows;
        bool ran;
} PgStmt;

/* ------------------------------------------------------------------ */
/* SQL text */

static bool word_is(const char *w, size_t n, const char *kw) {
        return strlen(kw) == n && strncasecmp(w, kw, n) == 0;
}

static bool ident_start(char ch) { return isalpha((unsigned char) ch) || ch == '_'; }
static bool ident_char(char ch) { return isalnum((unsigned char) ch) || ch == '_' || ch == '$'; }

/* Whether the text at p (after spaces) reads "IS NULL" or "IS NOT NULL". */
static bool followed_by_is_null(const char *p) {
        while (isspace((unsigned char) *p)) p++;
        if (strncasecmp(p, "IS", 2) != 0 || ident_char(p[2]))
                return false;
        p += 2;
        while (isspace((unsigned char) *p)) p++;
        if (strncasecmp(p, "NOT", 3) == 0 && !ident_char(p[3])) {
                p += 3;
                while (isspace((unsigned char) *p)) p++;
        }
        return strncasecmp(p, "NULL", 4) == 0 && !ident_char(p[4]);
}

/* The table "user" is a keyword to PostgreSQL (CURRENT_USER): a bare
 * "user" where a table is named gets quotes, which SQLite reads alike. */
static bool user_is_table(const char *prev, size_t prev_n, const char *after) {
        while (isspace((unsigned char) *after)) after++;
        if (*after == '.')
                return true;
        if (word_is(prev, prev_n, "FROM") || word_is(prev, prev_n, "JOIN") || word_is(prev, prev_n, "INTO") ||
            word_is(prev, prev_n, "UPDATE") || word_is(prev, prev_n, "TABLE") || word_is(prev, prev_n, "REFERENCES"))
                return true;
        return word_is(prev, prev_n, "ON") && *after == '(';
}

/* Rewrites sql for PostgreSQL: "?" and "?N" outside quotes and comments
 * become "$N" (a bare "?" takes the number after the largest so far, as in
 * SQLite), bare "user" naming a table gets quotes, and with ddl SQLite's
 * column types become PostgreSQL's (see store.h, StoreMigration). Returns
 * the malloc'd text; *ret_n the number of parameters and *ret_null_ctx
 * (malloc'd, may be NULL) which are tested with IS NULL. */
static char *translate(const char *sql, bool ddl, int *ret_n, bool **ret_null_ctx) {
        StrBuf b = {0};
        int max = 0;
        bool *null_ctx = NULL;
        int cap = 0;
        const char *prev = "";
        size_t prev_n = 0;
        for (const char *p = sql; *p;) {
                if (*p == '\'' || *p == '"') {
                        char q = *p;
                        const char *e = p + 1;
                        while (*e && !(*e == q && e[1] != q))
                                e += (*e == q && e[1] == q) ? 2 : 1;
                        if (*e) e++;
                        strbuf_printf(&b, "%.*s", (int) (e - p), p);
                        p = e;
                        continue;
                }
                if (p[0] == '-' && p[1] == '-') {
                        const char *e = strchr(p, '\n');
                        e = e ? e : p + strlen(p);
                        strbuf_printf(&b, "%.*s", (int) (e - p), p);
                        p = e;
                        continue;
                }
                if (p[0] == '/' && p[1] == '*') {
                        const char *e = strstr(p + 2, "*/");
                        e = e ? e + 2 : p + strlen(p);
                        strbuf_printf(&b, "%.*s", (int) (e - p), p);
                        p = e;
                        continue;
                }
                if (*p == '?') {
                        int n;
                        const char *e = p + 1;
                        if (isdigit((unsigned char) *e)) {
                                n = (int) strtol(e, (char **) &e, 10);
                        } else
                                n = max + 1;
                        if (n > max) max = n;
                        if (n > cap) {
                                int ncap = n + 16;
                                null_ctx = xrealloc(null_ctx, sizeof(bool) * (size_t) ncap);
                                memset(null_ctx + cap, 0, sizeof(bool) * (size_t) (ncap - cap));
                                cap = ncap;
                        }
                        if (followed_by_is_null(e))
                                null_ctx[n - 1] = true;
                        strbuf_printf(&b, "$%d", n);
                        p = e;
                        continue;
                }
                if (ident_start(*p) && (p == sql || !ident_char(p[-1]))) {
                        const char *e = p;
                        while (ident_char(*e)) e++;
                        size_t n = (size_t) (e - p);
                        if (word_is(p, n, "user") && user_is_table(prev, prev_n, e))
                                strbuf_append(&b, "\"user\"");
                        else if (ddl && word_is(p, n, "INTEGER") && strncasecmp(e, " PRIMARY KEY", 12) == 0) {
                                strbuf_append(&b, "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY");
                                e += 12;
                        } else if (ddl && word_is(p, n, "INTEGER"))
                                strbuf_append(&b, "BIGINT");
                        else if (ddl && word_is(p, n, "REAL"))
                                strbuf_append(&b, "DOUBLE PRECISION");
                        else if (ddl && word_is(p, n, "BLOB"))
                                strbuf_append(&b, "BYTEA");
                        else if (ddl && word_is(p, n, "AUTOINCREMENT"))
                                ;
                        else if (ddl && word_is(p, n, "WITHOUT") && strncasecmp(e, " ROWID", 6) == 0)
                                e += 6;
                        else
                                strbuf_printf(&b, "%.*s", (int) n, p);
                        prev = p;
                        prev_n = n;
                        p = e;
                        continue;
                }
                strbuf_printf(&b, "%c", *p);
                if (!isspace((unsigned char) *p)) {
                        prev = p;
                        prev_n = 1;
                }
                p++;
        }
        *ret_n = max;
        if (ret_null_ctx)
                *ret_null_ctx = null_ctx;
        else
                free(null_ctx);
        return b.s ? strbuf_steal(&b) : xstrdup("");
}

char *store_pg_translate_ddl(const char *sql) {
        int n;
        return translate(sql, true, &n, NULL);
}

static PgKind kind_of(const char *sql, bool *ret_commit, bool *ret_insert) {
        const char *p = sql;
        while (isspace((unsigned char) *p) || *p == '(') p++;
        const char *e = p;
        while (ident_char(*e)) e++;
        size_t n = (size_t) (e - p);
        *ret_commit = word_is(p, n, "COMMIT") || word_is(p, n, "END");
        *ret_insert = word_is(p, n, "INSERT");
        if (word_is(p, n, "SELECT") || word_is(p, n, "WITH") || word_is(p, n, "VALUES") || word_is(p, n, "SHOW") ||
            word_is(p, n, "EXPLAIN"))
                return PG_READ;
        if (word_is(p, n, "BEGIN") || word_is(p, n, "COMMIT") || word_is(p, n, "END") || word_is(p, n, "ROLLBACK") ||
            word_is(p, n, "SAVEPOINT") || word_is(p, n, "RELEASE") || word_is(p, n, "SET") || word_is(p, n, "LISTEN") ||
            word_is(p, n, "START"))
                return PG_CONTROL;
        return PG_WRITE;
}

/* ------------------------------------------------------------------ */
/* connections */

/* The server processes of each store's connections (owner: the store).
 * A commit of this store is told by the connection that made it (to the
 * thread that committed, as on SQLite) and ignored by its others; a commit
 * of another manager by whichever connection hears it first and by every
 * other one after (a row re-read twice is harmless). */
typedef struct {
        const void *owner;
        int pid;
} OwnPid;
static pthread_mutex_t own_lock = PTHREAD_MUTEX_INITIALIZER;
static OwnPid *own_pids;
static size_t n_own_pids;

static void own_pid_add(const void *owner, int pid) {
        pthread_mutex_lock(&own_lock);
        own_pids = xrealloc(own_pids, sizeof(OwnPid) * (n_own_pids + 1));
        own_pids[n_own_pids++] = (OwnPid) { owner, pid };
        pthread_mutex_unlock(&own_lock);
}

static void own_pid_remove(const void *owner, int pid) {
        pthread_mutex_lock(&own_lock);
        for (size_t i = 0; i < n_own_pids; i++)
                if (own_pids[i].owner == owner && own_pids[i].pid == pid) {
                        own_pids[i] = own_pids[--n_own_pids];
                        break;
                }
        pthread_mutex_unlock(&own_lock);
}

/* Whether pid is another connection of owner's. */
static bool own_pid_other(const void *owner, int pid, int mine) {
        if (pid == mine)
                return false;
        bool found = false;
        pthread_mutex_lock(&own_lock);
        for (size_t i = 0; i < n_own_pids && !found; i++)
                found = own_pids[i].owner == owner && own_pids[i].pid == pid;
        pthread_mutex_unlock(&own_lock);
        return found;
}

/* Notifications this connection received: the rows they name are marked
 * for the rows hook (store.c delivers them when no transaction is open). */
static void drain_notifies(PgConn *c) {
        (void) PQconsumeInput(c->pg);
        PGnotify *n;
        int mine = PQbackendPID(c->pg);
        while ((n = PQnotifies(c->pg))) {
                if (streq(n->relname, "armada_rows") && n->extra && !own_pid_other(c->owner, n->be_pid, mine))
                        store_rows_mark_text(n->extra);
                PQfreemem(n);
        }
}

static int simple(PgConn *c, const char *sql) {
        PGresult *res = PQexec(c->pg, sql);
        ExecStatusType s = PQresultStatus(res);
        int r = (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) ? 0 : -EIO;
        if (r < 0)
                log_error("database error (%s) in: %.120s", PQresultErrorMessage(res), sql);
        PQclear(res);
        drain_notifies(c);
        return r;
}

/* idle_in_transaction_session_timeout: a manager frozen inside a write
 * transaction (SIGSTOP, a paused VM) holds the writers' advisory lock, and
 * a standby could never take the lease; the server ends such a session
 * after 20 s (a few lease TTLs; no transaction of armadad's waits that long
 * between two statements) and rolls its transaction back. A value the
 * administrator set (role, database, the URL's options) is kept.
 *
 * jit = off: the planner's estimates for placement's host query (a dozen
 * correlated sums) pass jit_above_cost on a table of a few rows, and the
 * server then compiled ~140 functions for every run: 40-70 ms of a VM
 * create's 70, measured (bench/results/store.md). No statement of Armada's
 * is an analytic query that JIT would pay off for (servers before 11 have
 * no such setting: set where it exists). */
#define PG_SESSION_SETUP \
        "SET lock_timeout = '10s'; SET client_min_messages = warning; SET TIME ZONE 'UTC'; LISTEN armada_rows;" \
        " SELECT set_config('jit', 'off', false) FROM pg_settings WHERE name = 'jit';" \
        " SELECT set_config('idle_in_transaction_session_timeout', '20s', false)" \
        " WHERE current_setting('idle_in_transaction_session_timeout') IN ('0', '0ms')"

static int pg_open(const char *target, const void *owner, void **ret) {
        PGconn *pg = PQconnectdb(target);
        if (!pg || PQstatus(pg) != CONNECTION_OK) {
                /* libpq's message names the server and the failure, never
                 * the password. */
                log_error("cannot connect to the PostgreSQL database: %s", pg ? PQerrorMessage(pg) : "out of memory");
                PQfinish(pg);
                return -EIO;
        }
        PgConn *c = xcalloc(1, sizeof *c);
        c->pg = pg;
        c->owner = owner;
        if (simple(c, PG_SESSION_SETUP) < 0) {
                PQfinish(pg);
                free(c);
                return -EIO;
        }
        c->pid = PQbackendPID(pg);
        own_pid_add(owner, c->pid);
        *ret = c;
        return 0;
}

static void pg_close(void *conn) {
        PgConn *c = conn;
        if (!c)
                return;
        own_pid_remove(c->owner, c->pid);
        PQfinish(c->pg);
        free(c);
}

/* A connection the server dropped (a restart, a failover of the database)
 * is opened again before the next statement outside a transaction. */
static int pg_reopen(PgConn *c);
static int pg_alive(PgConn *c) {
        if (PQstatus(c->pg) == CONNECTION_OK)
                return 0;
        return pg_reopen(c);
}

/* Opens the connection again, as a new one (its session set up). */
static int pg_reopen(PgConn *c) {
        PQreset(c->pg);
        if (PQstatus(c->pg) != CONNECTION_OK) {
                log_error("lost the connection to the PostgreSQL database: %s", PQerrorMessage(c->pg));
                return -EIO;
        }
        own_pid_remove(c->owner, c->pid);
        c->pid = PQbackendPID(c->pg);
        own_pid_add(c->owner, c->pid);
        return simple(c, PG_SESSION_SETUP);
}

static int pg_exec_script(void *conn, const char *sql, const char *what) {
        PgConn *c = conn;
        PGresult *res = PQexec(c->pg, sql);
        ExecStatusType s = PQresultStatus(res);
        int r = 0;
        if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
                log_error("database statement of '%s' failed: %s", what, PQresultErrorMessage(res));
                r = -EIO;
        }
        PQclear(res);
        drain_notifies(c);
        return r;
}

/* SQLSTATE to the store's errno (store-priv.h, store_step()). */
static int sqlstate_errno(const char *state, const char *msg, const char *sql) {
        if (state && streq(state, "23505"))
                return -EEXIST;
        if (state && streq(state, "23503"))
                return -ENOTEMPTY;
        log_error("database error %s (%s) in: %.120s", state ? state : "?", msg ? msg : "?", sql);
        if (state && (streq(state, "40001") || streq(state, "40P01") || streq(state, "55P03")))
                return -EBUSY;
        return -EIO;
}

static int pg_errno_of(void *conn, int code) {
        /* code: a SQLSTATE packed as five ASCII characters in a 64-bit
         * number would be overkill for tests; 0..3 pick the four classes. */
        static const char *const states[] = { "23505", "23503", "40P01", "XX000" };
        return sqlstate_errno(states[code >= 0 && code < 4 ? code : 3], "test", "test");
}

/* ------------------------------------------------------------------ */
/* statements */

static int pg_prepare(void *conn, const char *sql, void **ret) {
        PgStmt *s = xcalloc(1, sizeof *s);
        s->c = conn;
        s->orig = sql;
        s->sql = translate(sql, false, &s->n_params, &s->null_ctx);
        s->kind = kind_of(sql, &s->commit, &s->insert);
        s->one = !strchr(s->sql, ';');
        if (s->n_params > 0) {
                s->values = xcalloc((size_t) s->n_params, sizeof(char *));
                s->types = xcalloc((size_t) s->n_params, sizeof(Oid));
        }
        s->row = -1;
        *ret = s;
        return 0;
}

static void bind_set(PgStmt *s, int idx, char *v, Oid type) {
        if (idx < 1 || idx > s->n_params) {
                free(v);
                return;
        }
        free(s->values[idx - 1]);
        s->values[idx - 1] = v;
        s->types[idx - 1] = type;
}

static void pg_bind_i64(void *p, int idx, int64_t v) { bind_set(p, idx, xasprintf("%lld", (long long) v), OID_INT8); }
static void pg_bind_double(void *p, int idx, double v) { bind_set(p, idx, xasprintf("%.17g", v), OID_FLOAT8); }
static void pg_bind_null(void *p, int idx) {
        PgStmt *s = p;
        bind_set(s, idx, NULL, idx >= 1 && idx <= s->n_params && s->null_ctx && s->null_ctx[idx - 1] ? OID_TEXT : 0);
}
/* Text is untyped (the server infers it from where it goes: a text column,
 * a number, JSON), but typed text where it is only tested with IS NULL,
 * which says nothing of its type. */
static void pg_bind_text(void *p, int idx, const char *v) {
        PgStmt *s = p;
        bool ctx = idx >= 1 && idx <= s->n_params && s->null_ctx && s->null_ctx[idx - 1];
        bind_set(s, idx, v ? xstrdup(v) : NULL, ctx ? OID_TEXT : 0);
}

static void stmt_clear_result(PgStmt *s) {
        PQclear(s->res);
        s->res = NULL;
        s->row = -1;
        s->n_rows = 0;
        s->ran = false;
}

static bool in_tx(PgConn *c) {
        PGTransactionStatusType t = PQtransactionStatus(c->pg);
        return t == PQTRANS_INTRANS || t == PQTRANS_INERROR;
}

static PGresult *run(PgStmt *s) {
        if (s->n_params == 0)
                return PQexec(s->c->pg, s->sql);
        return PQexecParams(s->c->pg, s->sql, s->n_params, s->types, (const char *const *) s->values, NULL, NULL, 0);
}

/* The writers' lock (STORE_PG_WRITE_LOCK, in decimal: SQL has no hex
 * literal), as a statement of its own: pipelines take one statement per
 * command; the engine's begin_sql and the unpiped wrapping take it too. */
#define PG_WRITE_LOCK_DEC 4706909503268913153
_Static_assert(PG_WRITE_LOCK_DEC == STORE_PG_WRITE_LOCK, "PG_WRITE_LOCK_DEC is STORE_PG_WRITE_LOCK in decimal");
#define PG_STR_(x) #x
#define PG_STR(x) PG_STR_(x)
#define PG_LOCK_SQL "SELECT pg_advisory_xact_lock(" PG_STR(PG_WRITE_LOCK_DEC) ")"

/* execute()'s way for what cannot go in a pipeline (several statements
 * in one text): each wrapping command a round trip of its own. 0 with
 * s->res, or negative. */
static int execute_unpiped(PgStmt *s, bool wrap, bool savepoint) {
        PgConn *c = s->c;
        if (wrap) {
                PGresult *b = PQexec(c->pg, "BEGIN; " PG_LOCK_SQL);
                if (PQresultStatus(b) != PGRES_TUPLES_OK) {
                        int r = sqlstate_errno(PQresultErrorField(b, PG_DIAG_SQLSTATE), PQresultErrorMessage(b), s->orig);
                        PQclear(b);
                        (void) simple(c, "ROLLBACK");
                        return r;
                }
                PQclear(b);
        } else if (savepoint && simple(c, "SAVEPOINT armada_stmt") < 0)
                return -EIO;
        s->res = run(s);
        ExecStatusType st = PQresultStatus(s->res);
        int r = 0;
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                r = sqlstate_errno(PQresultErrorField(s->res, PG_DIAG_SQLSTATE), PQresultErrorMessage(s->res), s->orig);
                PQclear(s->res);
                s->res = NULL;
                if (wrap)
                        (void) simple(c, "ROLLBACK");
                else if (savepoint)
                        (void) simple(c, "ROLLBACK TO SAVEPOINT armada_stmt; RELEASE SAVEPOINT armada_stmt");
                drain_notifies(c);
                return r;
        }
        if (savepoint)
                r = simple(c, "RELEASE SAVEPOINT armada_stmt");
        else if (wrap) {
                PGresult *e = PQexec(c->pg, "COMMIT");
                if (PQresultStatus(e) != PGRES_COMMAND_OK)
                        r = sqlstate_errno(PQresultErrorField(e, PG_DIAG_SQLSTATE), PQresultErrorMessage(e), s->orig);
                PQclear(e);
        }
        if (r < 0) {
                PQclear(s->res);
                s->res = NULL;
                drain_notifies(c);
        }
        return r;
}


/* Runs the statement between the commands before[] and after (NULL: none)
 * in one pipeline, one round trip instead of one per command; the server
 * runs them in order and skips the rest after a failure. 0 and the
 * statement's result in s->res, or negative: the first failure's errno
 * (s->res NULL). The caller ends what a failure left open, as it would
 * after separate commands. -EAGAIN (nothing sent) when the connection
 * cannot enter pipeline mode. */
static int pipelined(PgStmt *s, const char *const *before, size_t n_before, const char *after) {
        PGconn *pg = s->c->pg;
        if (PQenterPipelineMode(pg) != 1)
                return -EAGAIN;
        bool sent = true;
        for (size_t i = 0; i < n_before; i++)
                sent = sent && PQsendQueryParams(pg, before[i], 0, NULL, NULL, NULL, NULL, 0) == 1;
        sent = sent && PQsendQueryParams(pg, s->sql, s->n_params, s->types, (const char *const *) s->values, NULL, NULL, 0) == 1;
        if (after)
                sent = sent && PQsendQueryParams(pg, after, 0, NULL, NULL, NULL, NULL, 0) == 1;
        sent = sent && PQpipelineSync(pg) == 1;
        size_t n = n_before + 1 + (after ? 1 : 0);
        int r = 0;
        for (size_t i = 0; sent && i < n; i++) {
                PGresult *res = PQgetResult(pg);
                if (!res) {
                        sent = false;
                        break;
                }
                /* each command's results end with NULL */
                for (PGresult *more; (more = PQgetResult(pg));)
                        PQclear(more);
                ExecStatusType st = PQresultStatus(res);
                if (r == 0 && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_PIPELINE_ABORTED)
                        r = sqlstate_errno(PQresultErrorField(res, PG_DIAG_SQLSTATE), PQresultErrorMessage(res), s->orig);
                if (i == n_before && r == 0 && st != PGRES_PIPELINE_ABORTED)
                        s->res = res;
                else
                        PQclear(res);
        }
        if (sent) {
                PGresult *sync = PQgetResult(pg);
                sent = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
                PQclear(sync);
        }
        if (!sent || PQexitPipelineMode(pg) != 1) {
                /* A connection that broke halfway, or answers that do not
                 * add up: whatever is left is read, and a connection still
                 * in pipeline mode after that is opened again (a broken one
                 * is, by pg_alive(), before the next statement outside a
                 * transaction). */
                log_error("lost the connection to the PostgreSQL database: %s", PQerrorMessage(pg));
                for (int tries = 0; tries < 64 && PQstatus(pg) == CONNECTION_OK && PQexitPipelineMode(pg) != 1; tries++)
                        PQclear(PQgetResult(pg));
                if (PQpipelineStatus(pg) != PQ_PIPELINE_OFF)
                        (void) pg_reopen(s->c);
                r = r < 0 ? r : -EIO;
        }
        if (r < 0 || !s->res) {
                PQclear(s->res);
                s->res = NULL;
                return r < 0 ? r : -EIO;
        }
        return 0;
}

/* Runs the statement, wrapped as the file's comment says, and keeps its
 * result. STORE_DONE or negative. A wrapped statement goes in one
 * pipeline with its wrapping (BEGIN, the lock, it, COMMIT; or SAVEPOINT,
 * it, RELEASE): one round trip where it took three. */
static int execute(PgStmt *s) {
        PgConn *c = s->c;
        bool tx = in_tx(c);
        if (!tx && pg_alive(c) < 0)
                return -EIO;
        bool wrap = s->kind == PG_WRITE && !tx;
        bool savepoint = s->kind == PG_WRITE && tx;
        int r = -EAGAIN;
        if (wrap && s->one) {
                static const char *const begin[] = { "BEGIN", PG_LOCK_SQL };
                r = pipelined(s, begin, 2, "COMMIT");
                if (r < 0 && r != -EAGAIN && in_tx(c))
                        (void) simple(c, "ROLLBACK");
        } else if (savepoint && s->one) {
                static const char *const sp[] = { "SAVEPOINT armada_stmt" };
                r = pipelined(s, sp, 1, "RELEASE SAVEPOINT armada_stmt");
                if (r < 0 && r != -EAGAIN && PQtransactionStatus(c->pg) == PQTRANS_INERROR)
                        (void) simple(c, "ROLLBACK TO SAVEPOINT armada_stmt; RELEASE SAVEPOINT armada_stmt");
        }
        if (r < 0 && r != -EAGAIN) {
                drain_notifies(c);
                return r;
        }
        if (r == -EAGAIN && (r = execute_unpiped(s, wrap, savepoint)) < 0)
                return r;
        ExecStatusType st = PQresultStatus(s->res);
        r = 0;
        if (s->commit && streq(PQcmdStatus(s->res), "ROLLBACK")) {
                log_error("database transaction failed: a statement in it had failed, nothing was committed");
                r = -EIO;
        }
        drain_notifies(c);
        if (r < 0) {
                PQclear(s->res);
                s->res = NULL;
                return r;
        }
        if (s->kind != PG_CONTROL) {
                const char *n = PQcmdTuples(s->res);
                c->changes = n && *n ? atoi(n) : 0;
        }
        if (s->insert) {
                int col = PQfnumber(s->res, "id");
                c->have_last_id = col >= 0 && PQntuples(s->res) > 0;
                if (c->have_last_id)
                        c->last_id = strtoll(PQgetvalue(s->res, 0, col), NULL, 10);
        }
        s->n_rows = st == PGRES_TUPLES_OK ? PQntuples(s->res) : 0;
        s->ran = true;
        return STORE_DONE;
}

static int pg_step(void *p) {
        PgStmt *s = p;
        if (!s->ran) {
                int r = execute(s);
                if (r < 0)
                        return r;
        }
        if (s->row + 1 < s->n_rows) {
                s->row++;
                return STORE_ROW;
        }
        s->row = s->n_rows;
        return STORE_DONE;
}

static void pg_reset(void *p) {
        PgStmt *s = p;
        stmt_clear_result(s);
        for (int i = 0; i < s->n_params; i++) {
                free(s->values[i]);
                s->values[i] = NULL;
                s->types[i] = 0;
        }
}

static void pg_finalize(void *p) {
        PgStmt *s = p;
        if (!s)
                return;
        pg_reset(s);
        free(s->values);
        free(s->types);
        free(s->null_ctx);
        free(s->sql);
        free(s);
}

static bool cell_null(PgStmt *s, int col) {
        return !s->res || s->row < 0 || s->row >= s->n_rows || col < 0 || col >= PQnfields(s->res) ||
               PQgetisnull(s->res, s->row, col);
}

static const char *pg_col_text(void *p, int col) {
        PgStmt *s = p;
        if (cell_null(s, col))
                return NULL;
        const char *v = PQgetvalue(s->res, s->row, col);
        /* As SQLite says a truth: 1 or 0. */
        if (PQftype(s->res, col) == OID_BOOL)
                return v[0] == 't' ? "1" : "0";
        return v;
}

static StoreColType pg_col_type(void *p, int col) {
        PgStmt *s = p;
        if (cell_null(s, col))
                return STORE_COL_NULL;
        switch (PQftype(s->res, col)) {
        case OID_BOOL: case OID_INT2: case OID_INT4: case OID_INT8: case OID_OID:
                return STORE_COL_INTEGER;
        case OID_FLOAT4: case OID_FLOAT8:
                return STORE_COL_FLOAT;
        case OID_NUMERIC:
                /* sum() of integers is numeric: a whole one reads as SQLite's integer. */
                return strpbrk(PQgetvalue(s->res, s->row, col), ".eEN") ? STORE_COL_FLOAT : STORE_COL_INTEGER;
        default:
                return STORE_COL_TEXT;
        }
}

static double pg_col_double(void *p, int col) {
        const char *v = pg_col_text(p, col);
        return v ? strtod(v, NULL) : 0.0;
}

static int64_t pg_col_i64(void *p, int col) {
        const char *v = pg_col_text(p, col);
        if (!v)
                return 0;
        StoreColType t = pg_col_type(p, col);
        if (t == STORE_COL_FLOAT)
                return (int64_t) strtod(v, NULL);
        return strtoll(v, NULL, 10);
}

static int pg_col_count(void *p) {
        PgStmt *s = p;
        return s->res ? PQnfields(s->res) : 0;
}

static const char *pg_col_name(void *p, int col) {
        PgStmt *s = p;
        return s->res ? PQfname(s->res, col) : NULL;
}

static int64_t pg_last_id(void *conn) {
        PgConn *c = conn;
        if (c->have_last_id)
                return c->last_id;
        /* An INSERT without RETURNING id: the identity it drew last. */
        PGresult *res = PQexec(c->pg, "SELECT lastval()");
        int64_t id = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
        PQclear(res);
        return id;
}

static int pg_changes(void *conn) { return ((PgConn *) conn)->changes; }
static bool pg_in_transaction(void *conn) { return in_tx(conn); }

const StoreEngineOps store_engine_pg = {
        .kind = STORE_ENGINE_POSTGRESQL,
        .name = "PostgreSQL",
        .open = pg_open,
        .close = pg_close,
        .exec_script = pg_exec_script,
        .prepare = pg_prepare,
        .bind_i64 = pg_bind_i64,
        .bind_double = pg_bind_double,
        .bind_text = pg_bind_text,
        .bind_null = pg_bind_null,
        .step = pg_step,
        .reset = pg_reset,
        .finalize = pg_finalize,
        .col_i64 = pg_col_i64,
        .col_double = pg_col_double,
        .col_text = pg_col_text,
        .col_type = pg_col_type,
        .col_count = pg_col_count,
        .col_name = pg_col_name,
        .last_id = pg_last_id,
        .changes = pg_changes,
        .in_transaction = pg_in_transaction,
        .begin_sql = "BEGIN; " PG_LOCK_SQL,
        .errno_of = pg_errno_of,
};
