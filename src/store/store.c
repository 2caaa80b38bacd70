/* store: the database behind armadad — connection handling, schema
 * migrations and every SQL statement of the foundation, on one of two
 * engines (store-engine.h): SQLite, the embedded default, or PostgreSQL.
 * See store.h for the conventions. */
#include "store.h"
#include "store-priv.h"
#include "store-manager.h"
#include "store-engine.h"
#include "store-protect.h"
#include "store-network.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

struct Store {
        const StoreEngineOps *ops;
        char *target;           /* the engine's: a file path or a libpq connection string */
        pthread_key_t key;
        pthread_mutex_t lock;
        void **all;             /* every open connection: one per living thread that used the store */
        size_t n_all;
        /* store_set_change_hook(): told after an event or job change commits. */
        StoreChangeFn change_fn;
        void *change_data;
        /* store_clientdata() */
        struct {
                const char *name;
                void *data;
                void (*destroy)(void *);
        } client[8];
        /* store_set_rows_hook(): told which host/VM/group rows a commit changed. */
        StoreRowsFn rows_fn;
        void *rows_data;
        /* store_counts_generation() (atomic) */
        uint64_t counts_gen;
};

/* An event or job change made inside store_begin() .. store_commit() on
 * this thread: the hook is told at the commit, when readers can see it. */
static __thread bool change_pending;
/* A change of the counted tables (store_counts_changed()) inside a
 * transaction on this thread: the generation moves at the commit. */
static __thread bool counts_pending;

static int ids_autoincrement(Store *st);

/* Rows of host_group, host and vm changed by this thread's statements (the
 * update hook, foreign-key actions and triggers included) and not yet told
 * to the rows hook: delivered when no transaction is open any more, dropped
 * by store_rollback(). One connection per thread, so per thread. */
static __thread StoreRowChange *rows_pending;
static __thread size_t n_rows_pending, cap_rows_pending;

void store_rows_mark(StoreTable table, int64_t id) {
        if (n_rows_pending == cap_rows_pending) {
                cap_rows_pending = cap_rows_pending ? cap_rows_pending * 2 : 16;
                rows_pending = xrealloc(rows_pending, cap_rows_pending * sizeof *rows_pending);
        }
        rows_pending[n_rows_pending++] = (StoreRowChange) { .table = table, .id = id };
}

void store_rows_mark_text(const char *payload) {
        static const struct { const char *prefix; StoreTable table; } kinds[] = {
                { "vm:", STORE_TABLE_VM }, { "host:", STORE_TABLE_HOST }, { "host_group:", STORE_TABLE_HOST_GROUP },
        };
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                size_t n = strlen(kinds[i].prefix);
                if (strncmp(payload, kinds[i].prefix, n) == 0) {
                        char *end = NULL;
                        long long id = strtoll(payload + n, &end, 10);
                        if (end && end != payload + n && *end == 0 && id > 0)
                                store_rows_mark(kinds[i].table, id);
                        return;
                }
        }
}

static void *conn_get(Store *st);

static int row_change_cmp(const void *a, const void *b) {
        const StoreRowChange *x = a, *y = b;
        if (x->table != y->table)
                return x->table < y->table ? -1 : 1;
        return x->id < y->id ? -1 : x->id > y->id;
}

/* Whether this thread is inside rows_flush() (the hook runs its reads). */
static __thread bool rows_flushing;

/* After a statement: when no transaction is open on this thread, hands the
 * changed rows (sorted, each once) to the rows hook, without the store's
 * lock, so that it may read the store. The hook is never entered again from
 * its own reads: on PostgreSQL a read hears of other managers' commits
 * (NOTIFY), and a second call inside the first would wait for the lock the
 * first holds (the read model's writer lock) for ever. What the hook's
 * reads hear of is handed over once it returns, in the next round here. */
static void rows_flush(Store *st, void *conn) {
        if (rows_flushing)
                return;
        rows_flushing = true;
        while (n_rows_pending > 0 && !st->ops->in_transaction(conn)) {
                StoreRowChange *c = rows_pending;
                size_t n = n_rows_pending;
                rows_pending = NULL;
                n_rows_pending = cap_rows_pending = 0;
                qsort(c, n, sizeof *c, row_change_cmp);
                size_t k = 0;
                for (size_t i = 0; i < n; i++)
                        if (k == 0 || row_change_cmp(&c[k - 1], &c[i]) != 0)
                                c[k++] = c[i];
                pthread_mutex_lock(&st->lock);
                StoreRowsFn fn = st->rows_fn;
                void *data = st->rows_data;
                pthread_mutex_unlock(&st->lock);
                if (fn)
                        fn(data, c, k);
                free(c);
        }
        rows_flushing = false;
}

static void change_notify(Store *st) {
        __atomic_add_fetch(&st->counts_gen, 1, __ATOMIC_RELEASE);
        pthread_mutex_lock(&st->lock);
        if (st->change_fn)
                st->change_fn(st->change_data);
        pthread_mutex_unlock(&st->lock);
}

void store_counts_changed(Store *st) {
        void *conn = conn_get(st);
        if (conn && st->ops->in_transaction(conn))
                counts_pending = true;
        else
                __atomic_add_fetch(&st->counts_gen, 1, __ATOMIC_RELEASE);
}

uint64_t store_counts_generation(Store *st) {
        return __atomic_load_n(&st->counts_gen, __ATOMIC_ACQUIRE);
}

/* After a statement that changed an event or a job: tells the hook now, or
 * at the commit when a transaction is open on this thread. */
static int changed(Store *st, int r) {
        if (r < 0)
                return r;
        void *conn = conn_get(st);
        if (conn && st->ops->in_transaction(conn))
                change_pending = true;
        else
                change_notify(st);
        return r;
}

/* core-1's tables, around the root group's row (whose time SQLite and
 * PostgreSQL compute apart). */
#define CORE1_GROUP_TABLE \
        "CREATE TABLE host_group (" \
        "  id INTEGER PRIMARY KEY," \
        "  name TEXT NOT NULL," \
        "  parent_id INTEGER REFERENCES host_group(id)," \
        "  path TEXT NOT NULL UNIQUE," \
        "  created_at INTEGER NOT NULL," \
        "  UNIQUE(parent_id, name));"
#define CORE1_OTHER_TABLES \
        "CREATE TABLE user (" \
        "  id INTEGER PRIMARY KEY," \
        "  name TEXT NOT NULL UNIQUE," \
        "  password_hash TEXT NOT NULL," \
        "  role TEXT NOT NULL," \
        "  created_at INTEGER NOT NULL);" \
        "CREATE TABLE user_scope (" \
        "  user_id INTEGER NOT NULL REFERENCES user(id) ON DELETE CASCADE," \
        "  group_id INTEGER NOT NULL REFERENCES host_group(id) ON DELETE CASCADE," \
        "  PRIMARY KEY(user_id, group_id));" \
        "CREATE TABLE token (" \
        "  id INTEGER PRIMARY KEY," \
        "  user_id INTEGER NOT NULL REFERENCES user(id) ON DELETE CASCADE," \
        "  token_hash TEXT NOT NULL UNIQUE," \
        "  created_at INTEGER NOT NULL," \
        "  expires_at INTEGER NOT NULL," \
        "  last_used_at INTEGER);" \
        "CREATE TABLE host (" \
        "  id INTEGER PRIMARY KEY," \
        "  name TEXT NOT NULL UNIQUE," \
        "  uri TEXT NOT NULL," \
        "  group_id INTEGER NOT NULL REFERENCES host_group(id)," \
        "  state TEXT NOT NULL DEFAULT 'connecting'," \
        "  state_reason TEXT," \
        "  hostname TEXT," \
        "  cpus INTEGER," \
        "  memory_mib INTEGER," \
        "  free_memory_mib INTEGER," \
        "  hv_driver TEXT," \
        "  domain_type TEXT," \
        "  pool TEXT NOT NULL," \
        "  pool_path TEXT," \
        "  last_seen_at INTEGER," \
        "  created_at INTEGER NOT NULL);" \
        "CREATE INDEX host_group_idx ON host(group_id);" \
        "CREATE TABLE vm (" \
        "  id INTEGER PRIMARY KEY," \
        "  uuid TEXT NOT NULL UNIQUE," \
        "  name TEXT NOT NULL UNIQUE," \
        "  host_id INTEGER REFERENCES host(id)," \
        "  owner_id INTEGER REFERENCES user(id) ON DELETE SET NULL," \
        "  cpus INTEGER NOT NULL," \
        "  memory_mib INTEGER NOT NULL," \
        "  state TEXT NOT NULL," \
        "  domain_type TEXT," \
        "  origin TEXT NOT NULL DEFAULT 'created'," \
        "  description TEXT," \
        "  created_at INTEGER NOT NULL," \
        "  updated_at INTEGER NOT NULL);" \
        "CREATE INDEX vm_host_idx ON vm(host_id);" \
        "CREATE INDEX vm_owner_idx ON vm(owner_id);" \
        "CREATE TABLE vm_disk (" \
        "  vm_id INTEGER NOT NULL REFERENCES vm(id) ON DELETE CASCADE," \
        "  target TEXT NOT NULL," \
        "  path TEXT NOT NULL," \
        "  size_bytes INTEGER NOT NULL DEFAULT 0," \
        "  owned INTEGER NOT NULL DEFAULT 0," \
        "  PRIMARY KEY(vm_id, target));" \
        "CREATE TABLE job (" \
        "  id INTEGER PRIMARY KEY," \
        "  kind TEXT NOT NULL," \
        "  state TEXT NOT NULL DEFAULT 'queued'," \
        "  target_kind TEXT NOT NULL," \
        "  target_id INTEGER NOT NULL," \
        "  target_name TEXT," \
        "  owner_id INTEGER," \
        "  params TEXT," \
        "  progress INTEGER NOT NULL DEFAULT 0," \
        "  step TEXT," \
        "  error TEXT," \
        "  result TEXT," \
        "  attempts INTEGER NOT NULL DEFAULT 0," \
        "  cancel_requested INTEGER NOT NULL DEFAULT 0," \
        "  created_at INTEGER NOT NULL," \
        "  started_at INTEGER," \
        "  finished_at INTEGER);" \
        "CREATE INDEX job_state_idx ON job(state, id);" \
        "CREATE TABLE job_step (" \
        "  job_id INTEGER NOT NULL REFERENCES job(id) ON DELETE CASCADE," \
        "  seq INTEGER NOT NULL," \
        "  name TEXT NOT NULL," \
        "  at INTEGER NOT NULL," \
        "  PRIMARY KEY(job_id, seq));" \
        "CREATE TABLE event (" \
        "  id INTEGER PRIMARY KEY," \
        "  at INTEGER NOT NULL," \
        "  severity TEXT NOT NULL," \
        "  kind TEXT NOT NULL," \
        "  object_kind TEXT," \
        "  object_id INTEGER," \
        "  object_name TEXT," \
        "  owner_id INTEGER," \
        "  message TEXT NOT NULL);" \
        "CREATE TABLE audit (" \
        "  id INTEGER PRIMARY KEY," \
        "  at INTEGER NOT NULL," \
        "  user_id INTEGER," \
        "  user_name TEXT," \
        "  address TEXT," \
        "  action TEXT NOT NULL," \
        "  object_kind TEXT," \
        "  object_id INTEGER," \
        "  object_name TEXT," \
        "  detail TEXT," \
        "  result TEXT NOT NULL);"

/* The foundation's schema. Each capability keeps its own list of named
 * migrations (store-<capability>.c); every name is applied once, in list
 * order, and recorded in schema_migration. Never edit a released migration:
 * append a new one. */
static const StoreMigration MIGRATIONS_CORE[] = {
        { "core-1", CORE1_GROUP_TABLE
        "INSERT INTO host_group(id, name, parent_id, path, created_at)"
        "  VALUES (1, 'All Hosts', NULL, '', CAST(strftime('%s','now') AS INTEGER) * 1000);"
        CORE1_OTHER_TABLES, NULL,
        CORE1_GROUP_TABLE
        "INSERT INTO host_group(id, name, parent_id, path, created_at)"
        "  VALUES (1, 'All Hosts', NULL, '', CAST(extract(epoch FROM now()) AS BIGINT) * 1000);"
        CORE1_OTHER_TABLES },
        /* Ids are never handed out twice: a removed host's id must not name
         * the next host (its history, alert rules scoped to it, jobs and
         * events about it), nor a removed user's id the next user (jobs and
         * events keep owner ids without a foreign key). */
        { "core-ids-autoincrement", NULL, ids_autoincrement },
        /* What a hypervisor is, whatever URI reaches it: "uuid:<libvirt host
         * UUID>", or "uri:<normalised URI>" for drivers without one (the
         * test driver); claimed by the first host that connects. meta holds
         * facts about this installation (its id). */
        { "core-identity",  "ALTER TABLE host ADD COLUMN identity TEXT;"
        "CREATE INDEX host_identity_idx ON host(identity);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);" },
        /* The event stream's order (GET /events/stream): every change of a
         * job takes the next number of one sequence shared with event ids
         * (STREAM_NEXT_SEQ), so one number says where a reader is in both. */
        { "core-stream-seq", "ALTER TABLE job ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;"
        "CREATE INDEX job_rev_idx ON job(rev);" },
        /* Per-host throttles (NULL: armadad's default) and what the stuck-job
         * watch needs: when a job last moved, how long its current step may
         * stay quiet, since when it is stuck, and whether a worker thread
         * still runs it (a stuck job cancelled by a user ends at once, but
         * its target stays locked until the thread comes back). */
        { "core-throttle-stuck",
        "ALTER TABLE host ADD COLUMN max_parallel_starts INTEGER;"
        "ALTER TABLE host ADD COLUMN max_parallel_disk_ops INTEGER;"
        "ALTER TABLE job ADD COLUMN progress_at INTEGER;"
        "ALTER TABLE job ADD COLUMN quiet_ms INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE job ADD COLUMN stuck_since INTEGER;"
        "ALTER TABLE job ADD COLUMN worker_active INTEGER NOT NULL DEFAULT 0;"
        "UPDATE job SET worker_active = 1 WHERE state = 'running';"
        "CREATE INDEX job_worker_idx ON job(target_kind, target_id) WHERE worker_active = 1;" },
        /* A host's normalised URI (hv_uri_normalize(), which SQL cannot
         * compute: the inventory sets it, for older rows when it first
         * looks), indexed: registering a host looks up its URI without
         * reading and parsing every host's. */
        { "core-host-uri-key", "ALTER TABLE host ADD COLUMN uri_key TEXT;"
        "CREATE INDEX host_uri_key_idx ON host(uri_key);" },
        /* PostgreSQL's rows hook (store-pg.c): a changed group, host or VM
         * (a VM's disks are part of it) is notified to every connection
         * of every manager at its commit. SQLite's update hook needs no
         * schema. */
        { "core-rows-notify", "", NULL,
        "CREATE FUNCTION armada_rows_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF TG_OP <> 'INSERT' THEN PERFORM pg_notify('armada_rows', TG_ARGV[0] || ':' || OLD.id); END IF;"
        " IF TG_OP <> 'DELETE' THEN PERFORM pg_notify('armada_rows', TG_ARGV[0] || ':' || NEW.id); END IF;"
        " RETURN NULL; END $$;"
        "CREATE FUNCTION armada_vm_disk_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF TG_OP <> 'INSERT' THEN PERFORM pg_notify('armada_rows', 'vm:' || OLD.vm_id); END IF;"
        " IF TG_OP <> 'DELETE' THEN PERFORM pg_notify('armada_rows', 'vm:' || NEW.vm_id); END IF;"
        " RETURN NULL; END $$;"
        "CREATE TRIGGER host_group_rows AFTER INSERT OR UPDATE OR DELETE ON host_group"
        " FOR EACH ROW EXECUTE FUNCTION armada_rows_notify('host_group');"
        "CREATE TRIGGER host_rows AFTER INSERT OR UPDATE OR DELETE ON host"
        " FOR EACH ROW EXECUTE FUNCTION armada_rows_notify('host');"
        "CREATE TRIGGER vm_rows AFTER INSERT OR UPDATE OR DELETE ON vm"
        " FOR EACH ROW EXECUTE FUNCTION armada_rows_notify('vm');"
        "CREATE TRIGGER vm_disk_rows AFTER INSERT OR UPDATE OR DELETE ON vm_disk"
        " FOR EACH ROW EXECUTE FUNCTION armada_vm_disk_notify();" },
        /* The domain type a VM asking "auto" gets on the host: "auto" (what
         * its libvirt offers: KVM where it can), "kvm" or "qemu" (TCG, for
         * nested KVM that cannot boot a Linux guest). */
        { "core-host-domain-type-preference",
        "ALTER TABLE host ADD COLUMN domain_type_preference TEXT NOT NULL DEFAULT 'auto';" },
        { NULL, NULL },
};

static const StoreMigration *const MIGRATION_LISTS[] = {
        MIGRATIONS_CORE, store_migrations_place, store_migrations_monitor, store_migrations_library, store_migrations_ha,
        store_migrations_protect,
        store_migrations_network,
        store_migrations_manager,
};

/* ------------------------------------------------------------------ */

/* A thread's connection, the value of st->key: the destructor needs the
 * store to take the connection out of st->all. */
typedef struct {
        Store *st;
        void *conn;
} ThreadConn;

/* Thread exit: the thread's connection is closed (its page cache and file
 * descriptors go with it) and leaves st->all. Threads come and go all the
 * time (workers of a round, request threads); keeping their connections
 * until store_free() grew armadad's memory and descriptors by one
 * connection per thread that ever ran. Every thread that uses the store
 * ends before store_free() (armadad joins them first), so st is alive. */
static void conn_forget(void *p) {
        ThreadConn *tc = p;
        Store *st = tc->st;
        pthread_mutex_lock(&st->lock);
        for (size_t i = 0; i < st->n_all; i++)
                if (st->all[i] == tc->conn) {
                        st->all[i] = st->all[--st->n_all];
                        break;
                }
        pthread_mutex_unlock(&st->lock);
        st->ops->close(tc->conn);
        free(tc);
}

static void *conn_open(Store *st) {
        void *conn = NULL;
        if (st->ops->open(st->target, st, &conn) < 0)
                return NULL;
        pthread_mutex_lock(&st->lock);
        st->all = xrealloc(st->all, sizeof(void *) * (st->n_all + 1));
        st->all[st->n_all++] = conn;
        pthread_mutex_unlock(&st->lock);
        return conn;
}

/* This thread's connection (opened on first use, closed when the thread
 * ends). NULL on failure. */
static void *conn_get(Store *st) {
        ThreadConn *tc = pthread_getspecific(st->key);
        if (tc)
                return tc->conn;
        void *conn = conn_open(st);
        if (!conn)
                return NULL;
        tc = xmalloc(sizeof *tc);
        *tc = (ThreadConn) { .st = st, .conn = conn };
        pthread_setspecific(st->key, tc);
        return conn;
}

size_t store_connections(Store *st) {
        pthread_mutex_lock(&st->lock);
        size_t n = st->n_all;
        pthread_mutex_unlock(&st->lock);
        return n;
}

StoreEngine store_engine(Store *st) { return st->ops->kind; }

const char *store_sql(Store *st, const char *sqlite, const char *postgresql) {
        return st->ops->kind == STORE_ENGINE_POSTGRESQL ? postgresql : sqlite;
}

/* ------------------------------------------------------------------ */
/* table rebuilds */

/* Where the column definition "id INTEGER PRIMARY KEY" starts in a CREATE
 * TABLE statement (a whole word, not "xid ..."), or NULL. */
static const char *find_id_pk(const char *sql) {
        static const char pk[] = "id INTEGER PRIMARY KEY";
        for (const char *p = strstr(sql, pk); p; p = strstr(p + 1, pk)) {
                char before = p > sql ? p[-1] : ' ';
                char after = p[sizeof pk - 1];
                if ((before == '(' || before == ',' || before == ' ' || before == '\n' || before == '\t') &&
                    (after == ',' || after == ')' || after == ' ' || after == '\n' || after == '\t'))
                        return p;
        }
        return NULL;
}

static void row_text(StoreRow *row, void *out) {
        const char *t = store_col_text(row, 0);
        *(char **) out = t ? xstrdup(t) : NULL;
}

int store_table_autoincrement(Store *st, const char *table, const char *kind) {
        assert(st && table && kind);
        _cleanup_free_ char *sql = NULL;
        int r = store_query_row(st, row_text, &sql, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", "s", table);
        if (r < 0)
                return r;
        if (!sql)
                return -EIO;
        if (strstr(sql, "AUTOINCREMENT"))
                return 0;
        const char *pk = find_id_pk(sql), *paren = strchr(sql, '(');
        if (!pk || !paren || paren > pk) {
                log_error("cannot rebuild table '%s': it has no 'id INTEGER PRIMARY KEY' column", table);
                return -EINVAL;
        }
        /* The indexes and triggers go with the old table: keep their text
         * (automatic indexes of UNIQUE constraints have none and come back
         * by themselves). */
        char **extra = NULL;
        int n_extra = store_query_rows(st, row_text, sizeof(char *), (void **) &extra,
                                       "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger')"
                                       " AND sql IS NOT NULL ORDER BY type, name", "s", table);
        if (n_extra < 0)
                return n_extra;
        size_t pk_end = (size_t) (pk - sql) + strlen("id INTEGER PRIMARY KEY");
        _cleanup_free_ char *tmp = xasprintf("%s_rebuild", table);
        _cleanup_free_ char *create = xasprintf("CREATE TABLE \"%s\" %.*s AUTOINCREMENT%s", tmp, (int) (pk_end - (size_t) (paren - sql)),
                                                paren, sql + pk_end);
        _cleanup_free_ char *copy = xasprintf("INSERT INTO \"%s\" SELECT * FROM \"%s\"", tmp, table);
        _cleanup_free_ char *drop = xasprintf("DROP TABLE \"%s\"", table);
        _cleanup_free_ char *rename = xasprintf("ALTER TABLE \"%s\" RENAME TO \"%s\"", tmp, table);
        /* The legacy rename touches nothing but the table itself: the other
         * tables' REFERENCES already name it. */
        r = store_exec(st, "PRAGMA legacy_alter_table = ON", "");
        if (r >= 0) r = store_exec(st, create, "");
        if (r >= 0) r = store_exec(st, copy, "");
        if (r >= 0) r = store_exec(st, drop, "");
        if (r >= 0) r = store_exec(st, rename, "");
        (void) store_exec(st, "PRAGMA legacy_alter_table = OFF", "");
        for (int i = 0; i < n_extra; i++) {
                if (r >= 0)
                        r = store_exec(st, extra[i], "");
                free(extra[i]);
        }
        free(extra);
        if (r < 0)
                return r;
        /* The next id comes after every id still named anywhere: rows, and
         * the jobs, events and audit entries about removed ones. */
        _cleanup_free_ char *seed = xasprintf("SELECT max(coalesce((SELECT max(id) FROM \"%s\"), 0),"
                                              " coalesce((SELECT max(target_id) FROM job WHERE target_kind = ?1), 0),"
                                              " coalesce((SELECT max(object_id) FROM event WHERE object_kind = ?1), 0),"
                                              " coalesce((SELECT max(object_id) FROM audit WHERE object_kind = ?1), 0))", table);
        int64_t next = 0;
        r = store_query_i64(st, &next, seed, "s", kind);
        if (r >= 0)
                r = store_exec(st, "DELETE FROM sqlite_sequence WHERE name = ?", "s", table);
        if (r >= 0)
                r = store_exec(st, "INSERT INTO sqlite_sequence(name, seq) VALUES (?, ?)", "si", table, next);
        return r;
}

static int ids_autoincrement(Store *st) {
        static const char *const tables[][2] = { { "host", "host" }, { "vm", "vm" }, { "user", "user" }, { "host_group", "group" } };
        for (size_t i = 0; i < ELEMENTSOF(tables); i++) {
                int r = store_table_autoincrement(st, tables[i][0], tables[i][1]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Runs a migration written in C: foreign keys cannot be switched off inside
 * a transaction, so around it; the check afterwards proves the rebuild kept
 * every reference. SQLite only (a run step is skipped on PostgreSQL). */
static int migrate_run(Store *st, const StoreMigration *m) {
        if (store_exec(st, "PRAGMA foreign_keys = OFF", "") < 0)
                return -EIO;
        int r = store_begin(st);
        if (r >= 0) {
                r = m->run(st);
                int64_t bad = 0;
                if (r >= 0)
                        r = store_query_i64(st, &bad, "SELECT count(*) FROM pragma_foreign_key_check", "");
                if (r >= 0 && bad > 0) {
                        log_error("database migration '%s' left %lld broken references", m->name, (long long) bad);
                        r = -EIO;
                }
                if (r >= 0)
                        r = store_exec(st, "INSERT INTO schema_migration(name, applied_at) VALUES (?, ?)", "si", m->name, now_ms());
                r = store_end(st, r);
        }
        (void) store_exec(st, "PRAGMA foreign_keys = ON", "");
        if (r < 0)
                log_error("database migration '%s' failed", m->name);
        return r;
}

static int migration_applied(Store *st, const char *name, bool *ret) {
        int64_t n = 0;
        int r = store_query_i64(st, &n, "SELECT count(*) FROM schema_migration WHERE name = ?", "s", name);
        if (r < 0)
                return r;
        *ret = n > 0;
        return 0;
}

/* One migration on SQLite: 1 when applied, 0 when it was already, or
 * negative. */
static int migrate_one_sqlite(Store *st, void *conn, const StoreMigration *m) {
        bool done = false;
        if (migration_applied(st, m->name, &done) < 0)
                return -EIO;
        if (done)
                return 0;
        if (m->run)
                return migrate_run(st, m) < 0 ? -EIO : 1;
        _cleanup_free_ char *sql = xasprintf("BEGIN IMMEDIATE; %s; COMMIT;", m->sql);
        if (st->ops->exec_script(conn, sql, m->name) < 0) {
                (void) st->ops->exec_script(conn, "ROLLBACK", m->name);
                return -EIO;
        }
        if (store_exec(st, "INSERT INTO schema_migration(name, applied_at) VALUES (?, ?)", "si", m->name, now_ms()) < 0)
                return -EIO;
        return 1;
}

/* One migration on PostgreSQL, in one transaction under the writers' lock
 * (managers sharing the database may start together: the check is inside
 * it). Its pg text, or its SQLite text translated (store.h); a run step
 * without pg text and STORE_PG_NONE are recorded and skipped. 1 when
 * applied, 0 when it was already, or negative. */
static int migrate_one_pg(Store *st, void *conn, const StoreMigration *m) {
        int r = store_begin(st);
        if (r < 0)
                return r;
        bool done = false;
        r = migration_applied(st, m->name, &done);
        if (r >= 0 && !done) {
                const char *text = m->pg ? m->pg : m->run ? "" : m->sql;
                _cleanup_free_ char *pg = store_pg_translate_ddl(text ? text : "");
                if (pg[strspn(pg, " \t\n;")] && st->ops->exec_script(conn, pg, m->name) < 0)
                        r = -EIO;
                if (r >= 0)
                        r = store_exec(st, "INSERT INTO schema_migration(name, applied_at) VALUES (?, ?)", "si", m->name, now_ms());
        }
        r = store_end(st, r);
        return r < 0 ? -EIO : done ? 0 : 1;
}

/* After PostgreSQL migrations: rows inserted with explicit ids (the root
 * group) do not move an identity's sequence; each starts after the largest
 * id in its table, never going back (ids are not handed out twice). */
#define PG_IDENTITIES_SYNC \
        "DO $$ DECLARE r record; m bigint; s text; BEGIN" \
        " FOR r IN SELECT table_name, column_name FROM information_schema.columns" \
        "  WHERE table_schema = current_schema() AND is_identity = 'YES' LOOP" \
        "  EXECUTE format('SELECT max(%I) FROM %I', r.column_name, r.table_name) INTO m;" \
        "  s := pg_get_serial_sequence(quote_ident(r.table_name), r.column_name);" \
        "  IF m IS NOT NULL AND s IS NOT NULL AND m > coalesce(pg_sequence_last_value(s::regclass), 0) THEN" \
        "   PERFORM setval(s, m); END IF;" \
        " END LOOP; END $$"

static int migrate(Store *st) {
        void *conn = conn_get(st);
        bool pg = st->ops->kind == STORE_ENGINE_POSTGRESQL;
        if (st->ops->exec_script(conn, pg ? "CREATE TABLE IF NOT EXISTS schema_migration (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)"
                                          : "CREATE TABLE IF NOT EXISTS schema_migration (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
                                 "schema_migration") < 0)
                return -EIO;
        int applied = 0;
        for (size_t l = 0; l < ELEMENTSOF(MIGRATION_LISTS); l++)
                for (const StoreMigration *m = MIGRATION_LISTS[l]; m->name; m++) {
                        int r = pg ? migrate_one_pg(st, conn, m) : migrate_one_sqlite(st, conn, m);
                        if (r < 0) {
                                log_error("database migration '%s' failed", m->name);
                                return r;
                        }
                        if (r > 0) {
                                applied++;
                                log_info("database migration '%s' applied", m->name);
                        }
                }
        if (pg) {
                if (applied > 0 && st->ops->exec_script(conn, PG_IDENTITIES_SYNC, "identity sequences") < 0)
                        return -EIO;
                return applied;
        }
        int64_t total = 0;
        (void) store_query_i64(st, &total, "SELECT count(*) FROM schema_migration", "");
        _cleanup_free_ char *pragma = xasprintf("PRAGMA user_version=%d", (int) total);
        (void) st->ops->exec_script(conn, pragma, "user_version");
        return applied;
}

/* What store_open()'s db names: the engine and its own connection target
 * (malloc'd). */
static const StoreEngineOps *engine_of(const char *db, char **ret_target) {
        if (strncmp(db, "postgresql://", 13) == 0 || strncmp(db, "postgres://", 11) == 0) {
                *ret_target = xstrdup(db);
                return &store_engine_pg;
        }
        if (strncmp(db, "postgresql:", 11) == 0) {
                *ret_target = xstrdup(db + 11);
                return &store_engine_pg;
        }
        *ret_target = xstrdup(strncmp(db, "sqlite:", 7) == 0 ? db + 7 : db);
        return &store_engine_sqlite;
}

/* Masks the value after key (up to the end of a word: '&', space) in s. */
static void mask_after(StrBuf *b, const char *s, const char *key, const char *stops) {
        const char *p = strstr(s, key);
        if (!p) {
                strbuf_append(b, s);
                return;
        }
        p += strlen(key);
        strbuf_printf(b, "%.*s***", (int) (p - s), s);
        strbuf_append(b, p + strcspn(p, stops));
}

char *store_db_masked(const char *db) {
        if (!db)
                return xstrdup("");
        bool uri = strncmp(db, "postgresql://", 13) == 0 || strncmp(db, "postgres://", 11) == 0;
        if (!uri && strncmp(db, "postgresql:", 11) != 0)
                return xstrdup(db);
        _cleanup_free_ char *step = NULL;
        if (uri) {
                /* scheme://user:password@host */
                const char *auth = strstr(db, "://") + 3;
                const char *at = strchr(auth, '@'), *colon = strchr(auth, ':'), *slash = strchr(auth, '/');
                if (at && colon && colon < at && (!slash || at < slash))
                        step = xasprintf("%.*s***%s", (int) (colon + 1 - db), db, at);
                else
                        step = xstrdup(db);
        } else
                step = xstrdup(db);
        StrBuf b = {0};
        mask_after(&b, step, "password=", uri ? "&# " : " ");
        return strbuf_steal(&b);
}

int store_open(const char *db, Store **ret) {
        Store *st = xcalloc(1, sizeof *st);
        st->ops = engine_of(db, &st->target);
        pthread_mutex_init(&st->lock, NULL);
        if (pthread_key_create(&st->key, conn_forget) != 0) {
                free(st->target);
                free(st);
                return -ENOMEM;
        }
        if (!conn_get(st)) {
                store_free(st);
                return -EIO;
        }
        int r = migrate(st);
        if (r < 0) {
                store_free(st);
                return r;
        }
        *ret = st;
        return 0;
}

Store *store_free(Store *st) {
        if (!st)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(st->client); i++)
                if (st->client[i].name && st->client[i].destroy)
                        st->client[i].destroy(st->client[i].data);
        /* The calling thread's ThreadConn: its destructor will not run once
         * the key is gone. Other threads have ended (see conn_forget). */
        free(pthread_getspecific(st->key));
        pthread_setspecific(st->key, NULL);
        for (size_t i = 0; i < st->n_all; i++)
                st->ops->close(st->all[i]);
        free(st->all);
        pthread_key_delete(st->key);
        pthread_mutex_destroy(&st->lock);
        free(st->target);
        free(st);
        return NULL;
}

int store_schema_version(Store *st) {
        int64_t v;
        int r = store_query_i64(st, &v, store_sql(st, "PRAGMA user_version", "SELECT count(*) FROM schema_migration"), "");
        return r < 0 ? r : (int) v;
}

/* ------------------------------------------------------------------ */
/* statements: through the engine (store-engine.h) */

struct StoreStmt {
        Store *st;
        void *conn;
        void *impl;
        const char *sql;        /* for logs; the caller's text outlives the statement */
};

int store_engine_errno(Store *st, int code) { return st->ops->errno_of(conn_get(st), code); }

int store_prepare(Store *st, const char *sql, StoreStmt **ret) {
        void *conn = conn_get(st);
        if (!conn)
                return -EIO;
        void *impl = NULL;
        int r = st->ops->prepare(conn, sql, &impl);
        if (r < 0)
                return r;
        StoreStmt *s = xmalloc(sizeof *s);
        *s = (StoreStmt) { .st = st, .conn = conn, .impl = impl, .sql = sql };
        *ret = s;
        return 0;
}

void store_bind_i64(StoreStmt *s, int idx, int64_t v) { s->st->ops->bind_i64(s->impl, idx, v); }
void store_bind_double(StoreStmt *s, int idx, double v) { s->st->ops->bind_double(s->impl, idx, v); }
void store_bind_null(StoreStmt *s, int idx) { s->st->ops->bind_null(s->impl, idx); }
void store_bind_text(StoreStmt *s, int idx, const char *v) { s->st->ops->bind_text(s->impl, idx, v); }
int store_step(StoreStmt *s) { return s->st->ops->step(s->impl); }
void store_reset(StoreStmt *s) { s->st->ops->reset(s->impl); }

void store_finalize(StoreStmt *s) {
        if (!s)
                return;
        s->st->ops->finalize(s->impl);
        rows_flush(s->st, s->conn);
        free(s);
}

int64_t store_col_i64(StoreRow *row, int col) { return row->st->ops->col_i64(row->impl, col); }
int store_col_int(StoreRow *row, int col) { return (int) row->st->ops->col_i64(row->impl, col); }
double store_col_double(StoreRow *row, int col) { return row->st->ops->col_double(row->impl, col); }
const char *store_col_text(StoreRow *row, int col) { return row->st->ops->col_text(row->impl, col); }
bool store_col_null(StoreRow *row, int col) { return row->st->ops->col_type(row->impl, col) == STORE_COL_NULL; }
int store_col_count(StoreRow *row) { return row->st->ops->col_count(row->impl); }
const char *store_col_name(StoreRow *row, int col) { return row->st->ops->col_name(row->impl, col); }
StoreColType store_col_type(StoreRow *row, int col) { return row->st->ops->col_type(row->impl, col); }

void store_copy_text(char *dst, size_t size, StoreRow *row, int col) {
        const char *s = store_col_text(row, col);
        snprintf(dst, size, "%s", s ? s : "");
}

/* Prepares sql and binds one parameter per letter of types (see store.h). */
static int prepare_bind(Store *st, const char *sql, const char *types, va_list ap, StoreStmt **ret) {
        StoreStmt *s;
        int r = store_prepare(st, sql, &s);
        if (r < 0)
                return r;
        int idx = 1;
        for (const char *t = types; *t; t++, idx++) {
                switch (*t) {
                case 'i': store_bind_i64(s, idx, va_arg(ap, int64_t)); break;
                case 'd': store_bind_double(s, idx, va_arg(ap, double)); break;
                case 'b': store_bind_i64(s, idx, va_arg(ap, int) ? 1 : 0); break;
                case 'n': store_bind_null(s, idx); break;
                case 's': store_bind_text(s, idx, va_arg(ap, const char *)); break;
                default:
                        store_finalize(s);
                        log_error("store: bad bind type '%c'", *t);
                        return -EINVAL;
                }
        }
        *ret = s;
        return 0;
}

static int vexec(Store *st, const char *sql, const char *types, va_list ap) {
        StoreStmt *s;
        int r = prepare_bind(st, sql, types, ap, &s);
        if (r < 0)
                return r;
        while ((r = store_step(s)) == STORE_ROW)
                ;
        store_finalize(s);
        return r;
}

int store_exec(Store *st, const char *sql, const char *types, ...) {
        va_list ap;
        va_start(ap, types);
        int r = vexec(st, sql, types, ap);
        va_end(ap);
        return r;
}

static bool ends_with(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && strcmp(s + a - b, suffix) == 0;
}

static json_t *row_json(StoreRow *row) {
        json_t *o = json_object();
        int n = store_col_count(row);
        for (int i = 0; i < n; i++) {
                const char *name = store_col_name(row, i);
                StoreColType type = store_col_type(row, i);
                json_t *v;
                char key[128];
                snprintf(key, sizeof key, "%s", name);
                if (ends_with(name, "_json") || ends_with(name, "_bool"))
                        key[strlen(key) - 5] = 0;
                if (type == STORE_COL_NULL)
                        v = json_null();
                else if (ends_with(name, "_json")) {
                        v = json_loads(store_col_text(row, i), JSON_DECODE_ANY, NULL);
                        if (!v) v = json_null();
                } else if (ends_with(name, "_bool")) {
                        v = json_boolean(store_col_i64(row, i) != 0);
                } else if (type == STORE_COL_INTEGER && (ends_with(name, "_at") || streq(name, "at"))) {
                        char ts[32];
                        time_format(store_col_i64(row, i), ts);
                        v = json_string(ts);
                } else if (type == STORE_COL_INTEGER)
                        v = json_integer(store_col_i64(row, i));
                else if (type == STORE_COL_FLOAT)
                        v = json_real(store_col_double(row, i));
                else
                        v = json_string(store_col_text(row, i));
                json_object_set_new(o, key, v ? v : json_null());
        }
        return o;
}

static int vquery_json(Store *st, json_t **ret, const char *sql, const char *types, va_list ap) {
        StoreStmt *s;
        int r = prepare_bind(st, sql, types, ap, &s);
        if (r < 0)
                return r;
        json_t *arr = json_array();
        while ((r = store_step(s)) == STORE_ROW)
                json_array_append_new(arr, row_json(s));
        store_finalize(s);
        if (r < 0) {
                json_decref(arr);
                return r;
        }
        *ret = arr;
        return 0;
}

int store_query_json(Store *st, json_t **ret, const char *sql, const char *types, ...) {
        va_list ap;
        va_start(ap, types);
        int r = vquery_json(st, ret, sql, types, ap);
        va_end(ap);
        return r;
}

int store_query_one(Store *st, json_t **ret, const char *sql, const char *types, ...) {
        json_t *arr = NULL;
        va_list ap;
        va_start(ap, types);
        int r = vquery_json(st, &arr, sql, types, ap);
        va_end(ap);
        if (r < 0)
                return r;
        if (json_array_size(arr) == 0) {
                json_decref(arr);
                return -ENOENT;
        }
        *ret = json_incref(json_array_get(arr, 0));
        json_decref(arr);
        return 0;
}

/* Runs a statement that returns one row and copies its columns into out
 * through fn. -ENOENT when no row. */
static int vquery_row(Store *st, StoreRowFn fn, void *out, const char *sql, const char *types, va_list ap) {
        StoreStmt *s;
        int r = prepare_bind(st, sql, types, ap, &s);
        if (r < 0)
                return r;
        r = store_step(s);
        if (r == STORE_ROW) {
                fn(s, out);
                r = 0;
        } else if (r == STORE_DONE)
                r = -ENOENT;
        store_finalize(s);
        return r;
}

int store_query_row(Store *st, StoreRowFn fn, void *out, const char *sql, const char *types, ...) {
        va_list ap;
        va_start(ap, types);
        int r = vquery_row(st, fn, out, sql, types, ap);
        va_end(ap);
        return r;
}

static void row_i64(StoreRow *stmt, void *out) { *(int64_t *) out = store_col_i64(stmt, 0); }

int store_query_i64(Store *st, int64_t *ret, const char *sql, const char *types, ...) {
        va_list ap;
        va_start(ap, types);
        int r = vquery_row(st, row_i64, ret, sql, types, ap);
        va_end(ap);
        return r;
}

int store_insert(Store *st, int64_t *ret_id, const char *sql, const char *types, ...) {
        /* PostgreSQL tells the new id through RETURNING. */
        _cleanup_free_ char *returning = st->ops->kind == STORE_ENGINE_POSTGRESQL && !strstr(sql, "RETURNING")
                ? xasprintf("%s RETURNING id", sql) : NULL;
        va_list ap;
        va_start(ap, types);
        int r = vexec(st, returning ? returning : sql, types, ap);
        va_end(ap);
        if (r < 0)
                return r;
        *ret_id = store_last_id(st);
        return 0;
}

int store_exec_one(Store *st, const char *sql, const char *types, ...) {
        va_list ap;
        va_start(ap, types);
        int r = vexec(st, sql, types, ap);
        va_end(ap);
        return r < 0 ? r : (store_changes(st) ? 0 : -ENOENT);
}

int store_end(Store *st, int r) {
        if (r < 0) {
                store_rollback(st);
                return r;
        }
        return store_commit(st);
}

int store_begin(Store *st) { return store_exec(st, st->ops->begin_sql, ""); }
int store_commit(Store *st) {
        int r = store_exec(st, "COMMIT", "");
        if (r >= 0 && change_pending) {
                change_pending = false;
                change_notify(st);
        }
        if (r >= 0 && counts_pending) {
                counts_pending = false;
                __atomic_add_fetch(&st->counts_gen, 1, __ATOMIC_RELEASE);
        }
        return r;
}
void store_rollback(Store *st) {
        change_pending = false;
        counts_pending = false;
        /* SQLite's update hook told of rows the rollback undoes; on
         * PostgreSQL nothing of this transaction was notified, and what is
         * pending came from other managers' commits. */
        if (st->ops->kind == STORE_ENGINE_SQLITE)
                n_rows_pending = 0;
        (void) store_exec(st, "ROLLBACK", "");
}

void store_set_change_hook(Store *st, StoreChangeFn fn, void *userdata) {
        pthread_mutex_lock(&st->lock);
        st->change_fn = fn;
        st->change_data = userdata;
        pthread_mutex_unlock(&st->lock);
}
void store_set_rows_hook(Store *st, StoreRowsFn fn, void *userdata) {
        pthread_mutex_lock(&st->lock);
        st->rows_fn = fn;
        st->rows_data = userdata;
        pthread_mutex_unlock(&st->lock);
}
int64_t store_last_id(Store *st) {
        void *conn = conn_get(st);
        return conn ? st->ops->last_id(conn) : 0;
}
int store_changes(Store *st) {
        void *conn = conn_get(st);
        return conn ? st->ops->changes(conn) : 0;
}

bool store_in_transaction(Store *st) {
        void *conn = conn_get(st);
        return conn && st->ops->in_transaction(conn);
}

void *store_clientdata(Store *st, const char *name, void *(*create)(void), void (*destroy)(void *)) {
        void *data = NULL;
        pthread_mutex_lock(&st->lock);
        for (size_t i = 0; i < ELEMENTSOF(st->client); i++) {
                if (st->client[i].name && streq(st->client[i].name, name)) {
                        data = st->client[i].data;
                        break;
                }
                if (!st->client[i].name) {
                        data = create();
                        if (data)
                                st->client[i].name = name, st->client[i].data = data, st->client[i].destroy = destroy;
                        break;
                }
        }
        pthread_mutex_unlock(&st->lock);
        return data;
}


/* Like query_row for many rows: fn fills element i of a growing array. */
int store_query_rows(Store *st, StoreRowFn fn, size_t elem, void **ret, const char *sql, const char *types, ...) {
        va_list ap;
        va_start(ap, types);
        StoreStmt *s;
        int r = prepare_bind(st, sql, types, ap, &s);
        va_end(ap);
        if (r < 0)
                return r;
        char *arr = NULL;
        size_t n = 0, cap = 0;
        while ((r = store_step(s)) == STORE_ROW) {
                if (n == cap) {
                        cap = cap ? cap * 2 : 16;
                        arr = xrealloc(arr, cap * elem);
                }
                memset(arr + n * elem, 0, elem);
                fn(s, arr + n * elem);
                n++;
        }
        store_finalize(s);
        if (r < 0) {
                free(arr);
                return r;
        }
        *ret = arr;
        return (int) n;
}

#define COPY(field, col) store_copy_text((field), sizeof(field), stmt, (col))


/* ------------------------------------------------------------------ */
/* host groups */

char *store_group_path_normalize(const char *path, const char **ret_reason) {
        if (!path) {
                *ret_reason = "must not be empty";
                return NULL;
        }
        const char *p = path;
        while (*p == '/') p++;
        size_t root_len = strlen(STORE_ROOT_GROUP_NAME);
        if (strncmp(p, STORE_ROOT_GROUP_NAME, root_len) == 0 && (p[root_len] == 0 || p[root_len] == '/'))
                p += root_len;
        StrBuf b = {0};
        _cleanup_free_ char *copy = xstrdup(p);
        char *save = NULL;
        for (char *seg = strtok_r(copy, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
                const char *why = name_invalid_reason(seg);
                if (why) {
                        *ret_reason = why;
                        strbuf_free(&b);
                        return NULL;
                }
                if (b.len) strbuf_append(&b, "/");
                strbuf_append(&b, seg);
        }
        if (b.len > 1000) {
                *ret_reason = "must be at most 1000 characters long";
                strbuf_free(&b);
                return NULL;
        }
        return strbuf_steal(&b);
}

int store_group_find(Store *st, const char *path, int64_t *ret_id) {
        return store_query_i64(st, ret_id, "SELECT id FROM host_group WHERE path = ?", "s", path);
}

int store_group_create_path(Store *st, const char *path, int64_t *ret_id, bool *ret_created) {
        int r = store_begin(st);
        if (r < 0)
                return r;
        int64_t parent = STORE_ROOT_GROUP_ID;
        bool created = false;
        StrBuf prefix = {0};
        _cleanup_free_ char *copy = xstrdup(path);
        char *save = NULL;
        for (char *seg = strtok_r(copy, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
                if (prefix.len) strbuf_append(&prefix, "/");
                strbuf_append(&prefix, seg);
                int64_t id;
                r = store_group_find(st, prefix.s, &id);
                if (r == -ENOENT) {
                        r = store_insert(st, &id, "INSERT INTO host_group(name, parent_id, path, created_at) VALUES (?,?,?,?)",
                                         "sisi", seg, parent, prefix.s, now_ms());
                        if (r < 0) break;
                        created = true;
                } else if (r < 0)
                        break;
                parent = id;
        }
        strbuf_free(&prefix);
        if (r < 0) {
                store_rollback(st);
                return r;
        }
        r = store_commit(st);
        if (r < 0)
                return r;
        *ret_id = parent;
        if (ret_created) *ret_created = created;
        return 0;
}

int store_group_chain(Store *st, int64_t group_id, int64_t *ids, int max) {
        int64_t *rows = NULL;
        int n = store_query_rows(st, row_i64, sizeof(int64_t), (void **) &rows,
                           "WITH RECURSIVE c(id, parent_id, depth) AS ("
                           "  SELECT id, parent_id, 0 FROM host_group WHERE id = ?"
                           "  UNION ALL SELECT g.id, g.parent_id, c.depth + 1 FROM host_group g JOIN c ON g.id = c.parent_id"
                           "  WHERE c.depth < 64)"
                           " SELECT id FROM c ORDER BY depth", "i", group_id);
        if (n < 0)
                return n;
        if (n == 0) {
                free(rows);
                return -ENOENT;
        }
        int k = n < max ? n : max;
        memcpy(ids, rows, sizeof(int64_t) * (size_t) k);
        free(rows);
        return k;
}

/* Changes one group row (update_sql binds the new value then the id) and
 * rewrites the paths of the group and its whole subtree from old_path to
 * new_path, in one transaction. substr() rather than LIKE: names may hold
 * '_', a LIKE wildcard. */
static int group_repath(Store *st, int64_t id, const char *update_sql, const char *types, const void *value,
                        const char *old_path, const char *new_path) {
        int r = store_begin(st);
        if (r < 0)
                return r;
        if (types[0] == 's')
                r = store_exec(st, update_sql, "si", (const char *) value, id);
        else
                r = store_exec(st, update_sql, "ii", *(const int64_t *) value, id);
        if (r >= 0)
                r = store_exec(st, "UPDATE host_group SET path = ? || substr(path, length(?) + 1)"
                                   " WHERE path = ? OR substr(path, 1, length(?) + 1) = ? || '/'",
                               "sssss", new_path, old_path, old_path, old_path, old_path);
        return store_end(st, r);
}

int store_group_rename(Store *st, int64_t id, const char *new_name) {
        if (id == STORE_ROOT_GROUP_ID)
                return -EPERM;
        _cleanup_json_ json_t *g = NULL;
        int r = store_group_get(st, id, &g);
        if (r < 0)
                return r;
        const char *old_path = json_string_value(json_object_get(g, "path"));
        _cleanup_free_ char *parent_path = xstrdup(old_path);
        char *slash = strrchr(parent_path, '/');
        if (slash) *slash = 0; else parent_path[0] = 0;
        _cleanup_free_ char *new_path = parent_path[0] ? xasprintf("%s/%s", parent_path, new_name) : xstrdup(new_name);
        return group_repath(st, id, "UPDATE host_group SET name = ? WHERE id = ?", "s", new_name, old_path, new_path);
}

int store_group_move(Store *st, int64_t id, int64_t new_parent_id) {
        if (id == STORE_ROOT_GROUP_ID)
                return -EPERM;
        int64_t chain[64];
        int n = store_group_chain(st, new_parent_id, chain, 64);
        if (n < 0)
                return n;
        for (int i = 0; i < n; i++)
                if (chain[i] == id)
                        return -ELOOP;
        _cleanup_json_ json_t *g = NULL, *p = NULL;
        int r = store_group_get(st, id, &g);
        if (r >= 0)
                r = store_group_get(st, new_parent_id, &p);
        if (r < 0)
                return r;
        const char *old_path = json_string_value(json_object_get(g, "path"));
        const char *name = json_string_value(json_object_get(g, "name"));
        const char *ppath = json_string_value(json_object_get(p, "path"));
        _cleanup_free_ char *new_path = ppath[0] ? xasprintf("%s/%s", ppath, name) : xstrdup(name);
        return group_repath(st, id, "UPDATE host_group SET parent_id = ? WHERE id = ?", "i", &new_parent_id, old_path, new_path);
}

int store_group_delete(Store *st, int64_t id) {
        if (id == STORE_ROOT_GROUP_ID)
                return -EPERM;
        int64_t n;
        int r = store_query_i64(st, &n, "SELECT (SELECT count(*) FROM host WHERE group_id = ?1)"
                                        " + (SELECT count(*) FROM host_group WHERE parent_id = ?1)", "i", id);
        if (r < 0)
                return r;
        if (n > 0)
                return -ENOTEMPTY;
        r = store_exec(st, "DELETE FROM host_group WHERE id = ?", "i", id);
        if (r < 0)
                return r;
        return store_changes(st) ? 0 : -ENOENT;
}

#define GROUP_COLUMNS \
        "SELECT g.id, g.name, CASE WHEN g.id = 1 THEN 'All Hosts' ELSE g.path END AS path, g.parent_id," \
        " (SELECT count(*) FROM host h WHERE h.group_id = g.id) AS n_hosts," \
        " (SELECT count(*) FROM host_group c WHERE c.parent_id = g.id) AS n_children, g.created_at" \
        " FROM host_group g "

int store_group_list(Store *st, const char *path_filter, json_t **ret) {
        if (path_filter)
                return store_query_json(st, ret, GROUP_COLUMNS "WHERE g.path = ? ORDER BY g.path", "s", path_filter);
        return store_query_json(st, ret, GROUP_COLUMNS "ORDER BY g.path", "");
}

int store_group_get(Store *st, int64_t id, json_t **ret) {
        /* The raw path ("" for the root) is what callers compute with. */
        return store_query_one(st, ret, "SELECT id, name, path, parent_id FROM host_group WHERE id = ?", "i", id);
}

typedef struct { int64_t id, parent; } IdParent;
static void row_id_parent(StoreRow *stmt, void *out) {
        IdParent *p = out;
        p->id = store_col_i64(stmt, 0);
        p->parent = store_col_i64(stmt, 1);
}
int store_group_parents(Store *st, int64_t **ret_ids, int64_t **ret_parents) {
        IdParent *rows = NULL;
        int n = store_query_rows(st, row_id_parent, sizeof(IdParent), (void **) &rows,
                           "SELECT id, coalesce(parent_id, 0) FROM host_group ORDER BY id", "");
        if (n < 0)
                return n;
        int64_t *ids = xcalloc((size_t) n, sizeof(int64_t)), *parents = xcalloc((size_t) n, sizeof(int64_t));
        for (int i = 0; i < n; i++) {
                ids[i] = rows[i].id;
                parents[i] = rows[i].parent;
        }
        free(rows);
        *ret_ids = ids;
        *ret_parents = parents;
        return n;
}

/* ------------------------------------------------------------------ */
/* hosts */

int store_host_insert(Store *st, const char *name, const char *uri, int64_t group_id,
                      const char *pool, const char *pool_path, int64_t *ret_id) {
        return store_insert(st, ret_id, "INSERT INTO host(name, uri, group_id, pool, pool_path, created_at) VALUES (?,?,?,?,?,?)",
                           "ssissi", name, uri, group_id, pool, pool_path, now_ms());
}

static void row_host(StoreRow *stmt, void *out) {
        StoreHost *h = out;
        h->id = store_col_i64(stmt, 0);
        COPY(h->name, 1);
        COPY(h->uri, 2);
        h->group_id = store_col_i64(stmt, 3);
        COPY(h->state, 4);
        COPY(h->pool, 5);
        COPY(h->pool_path, 6);
        COPY(h->domain_type, 7);
        COPY(h->identity, 8);
        h->max_parallel_starts = store_col_int(stmt, 9);
        h->max_parallel_disk_ops = store_col_int(stmt, 10);
        COPY(h->domain_type_preference, 11);
}
#define HOST_ROW "SELECT id, name, uri, group_id, state, pool, pool_path, domain_type, coalesce(identity, ''),"  \
                 " coalesce(max_parallel_starts, 0), coalesce(max_parallel_disk_ops, 0), domain_type_preference FROM host "
int store_host_get(Store *st, int64_t id, StoreHost *ret) {
        return store_query_row(st, row_host, ret, HOST_ROW "WHERE id = ?", "i", id);
}
int store_host_all(Store *st, StoreHost **ret) {
        return store_query_rows(st, row_host, sizeof(StoreHost), (void **) ret, HOST_ROW "ORDER BY id", "");
}
int store_host_find_uri_key(Store *st, const char *key, StoreHost *ret) {
        return store_query_row(st, row_host, ret, HOST_ROW "WHERE uri_key = ? ORDER BY id LIMIT 1", "s", key);
}
int store_host_unkeyed(Store *st, StoreHost **ret) {
        return store_query_rows(st, row_host, sizeof(StoreHost), (void **) ret, HOST_ROW "WHERE uri_key IS NULL ORDER BY id", "");
}
int store_host_set_uri_key(Store *st, int64_t id, const char *key) {
        return store_exec(st, "UPDATE host SET uri_key = ? WHERE id = ?", "si", key, id);
}
int store_host_claim_identity(Store *st, int64_t id, const char *identity, StoreHost *ret_holder) {
        int r = store_begin(st);
        if (r < 0)
                return r;
        StoreHost other;
        r = store_query_row(st, row_host, &other, HOST_ROW "WHERE identity = ? AND id <> ? AND state <> 'duplicate'"
                                                  " ORDER BY id LIMIT 1", "si", identity, id);
        if (r == 0) {
                store_rollback(st);
                if (ret_holder)
                        *ret_holder = other;
                return -EEXIST;
        }
        if (r == -ENOENT)
                r = store_exec_one(st, "UPDATE host SET identity = ? WHERE id = ?", "si", identity, id);
        return store_end(st, r);
}
static void row_text64(StoreRow *stmt, void *out) {
        store_copy_text(out, 64, stmt, 0);
}
int store_installation_id(Store *st, char ret[37]) {
        char fresh[37];
        uuid_generate(fresh);
        /* DO NOTHING: the first id ever written stays, whoever races. */
        int r = store_exec(st, "INSERT INTO meta(key, value) VALUES ('installation_id', ?) ON CONFLICT DO NOTHING", "s", fresh);
        if (r < 0)
                return r;
        char buf[64];
        r = store_query_row(st, row_text64, buf, "SELECT value FROM meta WHERE key = 'installation_id'", "");
        if (r < 0)
                return r;
        if (!uuid_is_valid(buf))
                return -EINVAL;
        memcpy(ret, buf, 37);
        return 0;
}
int store_host_find(Store *st, const char *name, int64_t *ret_id) {
        return store_query_i64(st, ret_id, "SELECT id FROM host WHERE name = ?", "s", name);
}
int store_host_set_state(Store *st, int64_t id, const char *state, const char *reason) {
        int r = store_exec(st, "UPDATE host SET state = ?, state_reason = ? WHERE id = ? AND (state IS DISTINCT FROM ? OR state_reason IS DISTINCT FROM ?)",
                           "ssiss", state, reason, id, state, reason);
        if (r < 0)
                return r;
        return store_changes(st) > 0;
}
int store_host_set_state_unless(Store *st, int64_t id, const char *state, const char *reason, const char *const *keep) {
        _cleanup_json_ json_t *list = json_array();
        for (size_t i = 0; keep && keep[i]; i++)
                json_array_append_new(list, json_string(keep[i]));
        _cleanup_free_ char *text = json_dumps(list, JSON_COMPACT);
        int r = store_exec(st, store_sql(st,
                           "UPDATE host SET state = ?, state_reason = ? WHERE id = ? AND (state IS DISTINCT FROM ? OR state_reason IS DISTINCT FROM ?)"
                           " AND state NOT IN (SELECT value FROM json_each(?))",
                           "UPDATE host SET state = ?, state_reason = ? WHERE id = ? AND (state IS DISTINCT FROM ? OR state_reason IS DISTINCT FROM ?)"
                           " AND state NOT IN (SELECT json_array_elements_text(CAST(? AS json)))"),
                           "ssisss", state, reason, id, state, reason, text);
        if (r < 0)
                return r;
        return store_changes(st) > 0;
}
int store_host_set_facts(Store *st, int64_t id, unsigned cpus, uint64_t memory_mib, uint64_t free_memory_mib,
                         const char *hv_driver, const char *domain_type, const char *hostname, const char *pool_path) {
        return store_exec(st, "UPDATE host SET cpus = ?, memory_mib = ?, free_memory_mib = ?, hv_driver = ?, domain_type = ?,"
                              " hostname = ?, pool_path = coalesce(?, pool_path), last_seen_at = ? WHERE id = ?",
                          "iiissssii", (int64_t) cpus, (int64_t) memory_mib, (int64_t) free_memory_mib, hv_driver,
                          domain_type, hostname, pool_path, now_ms(), id);
}
int store_host_touch_facts(Store *st, int64_t id, unsigned cpus, uint64_t memory_mib, uint64_t free_memory_mib,
                           const char *hv_driver, const char *domain_type, const char *hostname, int64_t stale_ms) {
        return store_exec(st, "UPDATE host SET cpus = ?1, memory_mib = ?2, free_memory_mib = ?3, hv_driver = ?4, domain_type = ?5,"
                              " hostname = ?6, last_seen_at = ?7 WHERE id = ?8 AND (cpus IS DISTINCT FROM ?1 OR memory_mib IS DISTINCT FROM ?2"
                              " OR free_memory_mib IS DISTINCT FROM ?3 OR hv_driver IS DISTINCT FROM ?4"
                              " OR domain_type IS DISTINCT FROM ?5 OR hostname IS DISTINCT FROM ?6"
                              " OR last_seen_at IS NULL OR last_seen_at <= ?7 - ?9)",
                          "iiisssiii", (int64_t) cpus, (int64_t) memory_mib, (int64_t) free_memory_mib, hv_driver, domain_type,
                          hostname, now_ms(), id, stale_ms);
}
int store_host_set_throttle(Store *st, int64_t id, int max_parallel_starts, int max_parallel_disk_ops) {
        return store_exec_one(st, "UPDATE host SET"
                                  " max_parallel_starts = CASE ?1 WHEN -1 THEN max_parallel_starts WHEN 0 THEN NULL ELSE ?1 END,"
                                  " max_parallel_disk_ops = CASE ?2 WHEN -1 THEN max_parallel_disk_ops WHEN 0 THEN NULL ELSE ?2 END"
                                  " WHERE id = ?3",
                              "iii", (int64_t) max_parallel_starts, (int64_t) max_parallel_disk_ops, id);
}
int store_host_set_domain_type_preference(Store *st, int64_t id, const char *preference) {
        return store_exec_one(st, "UPDATE host SET domain_type_preference = ? WHERE id = ?", "si", preference, id);
}
int store_host_delete(Store *st, int64_t id, bool force) {
        int r = store_begin(st);
        if (r < 0)
                return r;
        if (force)
                r = store_exec(st, "DELETE FROM vm WHERE host_id = ?", "i", id);
        if (r >= 0)
                r = store_exec(st, "DELETE FROM host WHERE id = ?", "i", id);
        if (r >= 0 && store_changes(st) == 0)
                r = -ENOENT;
        return store_end(st, r);
}

#define HOST_COLUMNS \
        "SELECT h.id, h.name, h.uri, h.group_id, CASE WHEN g.id = 1 THEN 'All Hosts' ELSE g.path END AS group_path," \
        " h.state, h.state_reason, h.hostname, h.cpus, h.memory_mib, h.free_memory_mib, h.hv_driver, h.domain_type," \
        " h.pool, h.pool_path, (SELECT count(*) FROM vm WHERE vm.host_id = h.id) AS n_vms, h.last_seen_at, h.created_at," \
        " CASE WHEN h.identity LIKE 'uuid:%' THEN substr(h.identity, 6) END AS hv_uuid," \
        " h.max_parallel_starts, h.max_parallel_disk_ops, h.domain_type_preference" \
        " FROM host h JOIN host_group g ON g.id = h.group_id "

int store_host_list(Store *st, const char *name, int64_t group_id, json_t **ret) {
        return store_query_json(st, ret, HOST_COLUMNS "WHERE (?1 IS NULL OR h.name = ?1) AND (?2 = 0 OR h.group_id = ?2) ORDER BY h.name",
                                "si", name, group_id);
}
/* The rows of ids as a JSON text array for json_each(): one bound
 * parameter however many ids. */
static char *ids_text(const int64_t *ids, size_t n) {
        StrBuf b = {0};
        strbuf_append(&b, "[");
        for (size_t i = 0; i < n; i++)
                strbuf_printf(&b, "%s%lld", i ? "," : "", (long long) ids[i]);
        strbuf_append(&b, "]");
        return strbuf_steal(&b);
}
int store_host_list_ids(Store *st, const int64_t *ids, size_t n, json_t **ret) {
        _cleanup_free_ char *text = ids_text(ids, n);
        return store_query_json(st, ret, store_sql(st, HOST_COLUMNS "WHERE h.id IN (SELECT value FROM json_each(?)) ORDER BY h.id",
                                                   HOST_COLUMNS "WHERE h.id IN (SELECT CAST(json_array_elements_text(CAST(? AS json)) AS BIGINT))"
                                                   " ORDER BY h.id"), "s", text);
}
int store_host_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, HOST_COLUMNS "WHERE h.id = ?", "i", id);
}
int store_host_ids(Store *st, int64_t **ret_ids) {
        return store_query_rows(st, row_i64, sizeof(int64_t), (void **) ret_ids, "SELECT id FROM host ORDER BY id", "");
}

/* ------------------------------------------------------------------ */
/* VMs */

int store_vm_insert(Store *st, const StoreVm *vm, int64_t *ret_id) {
        int64_t now = now_ms();
        return store_insert(st, ret_id, "INSERT INTO vm(uuid, name, host_id, owner_id, cpus, memory_mib, state, domain_type, origin,"
                               " description, created_at, updated_at) VALUES (?,?,nullif(?,0),nullif(?,0),?,?,?,?,?,nullif(?,''),?,?)",
                           "ssiiiissssii", vm->uuid, vm->name, vm->host_id, vm->owner_id, (int64_t) vm->cpus,
                           (int64_t) vm->memory_mib, vm->state, vm->domain_type[0] ? vm->domain_type : NULL,
                           vm->origin[0] ? vm->origin : "created", vm->description, now, now);
}

static void row_vm(StoreRow *stmt, void *out) {
        StoreVm *v = out;
        v->id = store_col_i64(stmt, 0);
        COPY(v->uuid, 1);
        COPY(v->name, 2);
        v->host_id = store_col_i64(stmt, 3);
        v->owner_id = store_col_i64(stmt, 4);
        v->cpus = (unsigned) store_col_i64(stmt, 5);
        v->memory_mib = (uint64_t) store_col_i64(stmt, 6);
        COPY(v->state, 7);
        COPY(v->domain_type, 8);
        COPY(v->origin, 9);
        COPY(v->description, 10);
}
#define VM_ROW "SELECT id, uuid, name, coalesce(host_id, 0), coalesce(owner_id, 0), cpus, memory_mib, state," \
               " domain_type, origin, description FROM vm "

int store_vm_get(Store *st, int64_t id, StoreVm *ret) {
        return store_query_row(st, row_vm, ret, VM_ROW "WHERE id = ?", "i", id);
}
int store_vm_find(Store *st, const char *name, int64_t *ret_id) {
        return store_query_i64(st, ret_id, "SELECT id FROM vm WHERE name = ?", "s", name);
}
int store_vm_find_uuid(Store *st, const char *uuid, int64_t *ret_id) {
        return store_query_i64(st, ret_id, "SELECT id FROM vm WHERE uuid = lower(?)", "s", uuid);
}
int store_vm_set_state(Store *st, int64_t id, const char *state) {
        int r = store_exec(st, "UPDATE vm SET state = ?, updated_at = ? WHERE id = ? AND state IS DISTINCT FROM ?",
                           "siis", state, now_ms(), id, state);
        return r < 0 ? r : store_changes(st) > 0;
}
int store_vm_set_host(Store *st, int64_t id, int64_t host_id) {
        return store_exec(st, "UPDATE vm SET host_id = nullif(?, 0), updated_at = ? WHERE id = ?", "iii", host_id, now_ms(), id);
}
int store_vm_set_origin(Store *st, int64_t id, const char *origin) {
        return store_exec(st, "UPDATE vm SET origin = ?, updated_at = ? WHERE id = ?", "sii", origin, now_ms(), id);
}
int store_vm_update_hw(Store *st, int64_t id, unsigned cpus, uint64_t memory_mib, const char *domain_type) {
        return store_exec(st, "UPDATE vm SET cpus = ?, memory_mib = ?, domain_type = ?, updated_at = ? WHERE id = ?",
                          "iisii", (int64_t) cpus, (int64_t) memory_mib, domain_type, now_ms(), id);
}
int store_vm_set_meta(Store *st, int64_t id, int64_t owner_id, const char *description) {
        return store_exec_one(st, "UPDATE vm SET owner_id = CASE WHEN ?1 < 0 THEN owner_id ELSE nullif(?1, 0) END,"
                                  " description = CASE WHEN ?2 IS NULL THEN description ELSE nullif(?2, '') END,"
                                  " updated_at = ?3 WHERE id = ?4",
                              "isii", owner_id, description, now_ms(), id);
}
int store_vm_delete(Store *st, int64_t id) {
        return store_exec_one(st, "DELETE FROM vm WHERE id = ?", "i", id);
}
/* A VM's disks are part of its JSON: the rows hook hears of the VM (the
 * update hook would name vm_disk rowids, which say nothing). Marked before
 * the statement, which delivers it when no transaction is open. */
int store_vm_disk_add(Store *st, int64_t vm_id, const StoreDisk *d) {
        store_rows_mark(STORE_TABLE_VM, vm_id);
        return store_exec(st, "INSERT INTO vm_disk(vm_id, target, path, size_bytes, owned) VALUES (?,?,?,?,?)"
                          " ON CONFLICT(vm_id, target) DO UPDATE SET path = excluded.path, size_bytes = excluded.size_bytes,"
                          " owned = excluded.owned",
                          "issib", vm_id, d->target, d->path, (int64_t) d->size_bytes, (int) d->owned);
}
int store_vm_disks_clear(Store *st, int64_t vm_id) {
        store_rows_mark(STORE_TABLE_VM, vm_id);
        return store_exec(st, "DELETE FROM vm_disk WHERE vm_id = ?", "i", vm_id);
}
int store_vm_disk_remove(Store *st, int64_t vm_id, const char *target) {
        store_rows_mark(STORE_TABLE_VM, vm_id);
        return store_exec(st, "DELETE FROM vm_disk WHERE vm_id = ? AND target = ?", "is", vm_id, target);
}
static void row_disk(StoreRow *stmt, void *out) {
        StoreDisk *d = out;
        COPY(d->target, 0);
        COPY(d->path, 1);
        d->size_bytes = (uint64_t) store_col_i64(stmt, 2);
        d->owned = store_col_int(stmt, 3) != 0;
}
int store_vm_disks(Store *st, int64_t vm_id, StoreDisk **ret) {
        return store_query_rows(st, row_disk, sizeof(StoreDisk), (void **) ret,
                          "SELECT target, path, size_bytes, owned FROM vm_disk WHERE vm_id = ? ORDER BY target", "i", vm_id);
}

#define VM_COLUMNS_A \
        "SELECT v.id, v.uuid, v.name, v.host_id, h.name AS host_name, v.owner_id, u.name AS owner_name, v.cpus, v.memory_mib,"
#define VM_COLUMNS_B \
        " v.state, v.origin, v.domain_type, v.description, h.group_id AS group_id, v.snapshots, v.created_at, v.updated_at" \
        " FROM vm v LEFT JOIN host h ON h.id = v.host_id LEFT JOIN user u ON u.id = v.owner_id "
#define VM_COLUMNS VM_COLUMNS_A \
        " (SELECT json_group_array(json_object('target', d.target, 'path', d.path, 'size_bytes', d.size_bytes))" \
        "  FROM vm_disk d WHERE d.vm_id = v.id) AS disks_json," VM_COLUMNS_B
#define VM_COLUMNS_PG VM_COLUMNS_A \
        " (SELECT coalesce(json_agg(json_build_object('target', d.target, 'path', d.path, 'size_bytes', d.size_bytes)" \
        "  ORDER BY d.target), '[]') FROM vm_disk d WHERE d.vm_id = v.id) AS disks_json," VM_COLUMNS_B
#define VM_SQL(st, tail) store_sql((st), VM_COLUMNS tail, VM_COLUMNS_PG tail)

int store_vm_list(Store *st, const char *name, int64_t host_id, int64_t owner_id, json_t **ret) {
        return store_query_json(st, ret, VM_SQL(st, "WHERE (?1 IS NULL OR v.name = ?1) AND (?2 = 0 OR v.host_id = ?2)"
                                                    " AND (?3 = 0 OR v.owner_id = ?3) ORDER BY v.name"),
                                "sii", name, host_id, owner_id);
}
int store_vm_list_ids(Store *st, const int64_t *ids, size_t n, json_t **ret) {
        _cleanup_free_ char *text = ids_text(ids, n);
        return store_query_json(st, ret, store_sql(st, VM_COLUMNS "WHERE v.id IN (SELECT value FROM json_each(?)) ORDER BY v.id",
                                                   VM_COLUMNS_PG "WHERE v.id IN (SELECT CAST(json_array_elements_text(CAST(? AS json)) AS BIGINT))"
                                                   " ORDER BY v.id"), "s", text);
}
int store_vm_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, VM_SQL(st, "WHERE v.id = ?"), "i", id);
}
int store_vm_list_on_host(Store *st, int64_t host_id, StoreVm **ret) {
        return store_query_rows(st, row_vm, sizeof(StoreVm), (void **) ret, VM_ROW "WHERE host_id = ? ORDER BY id", "i", host_id);
}
int store_vm_count_on_host(Store *st, int64_t host_id) {
        int64_t n;
        int r = store_query_i64(st, &n, "SELECT count(*) FROM vm WHERE host_id = ?", "i", host_id);
        return r < 0 ? r : (int) n;
}

/* ------------------------------------------------------------------ */
/* users, scopes, tokens */

int store_user_insert(Store *st, const char *name, const char *password_hash, const char *role, int64_t *ret_id) {
        return store_insert(st, ret_id, "INSERT INTO user(name, password_hash, role, created_at) VALUES (?,?,?,?)",
                           "sssi", name, password_hash, role, now_ms());
}
static void row_user(StoreRow *stmt, void *out) {
        StoreUser *u = out;
        u->id = store_col_i64(stmt, 0);
        COPY(u->name, 1);
        COPY(u->role, 2);
        COPY(u->password_hash, 3);
}
int store_user_get(Store *st, int64_t id, StoreUser *ret) {
        return store_query_row(st, row_user, ret, "SELECT id, name, role, password_hash FROM user WHERE id = ?", "i", id);
}
int store_user_find(Store *st, const char *name, StoreUser *ret) {
        return store_query_row(st, row_user, ret, "SELECT id, name, role, password_hash FROM user WHERE name = ?", "s", name);
}
int store_user_count(Store *st) {
        int64_t n;
        int r = store_query_i64(st, &n, "SELECT count(*) FROM user", "");
        return r < 0 ? r : (int) n;
}
int store_user_update(Store *st, int64_t id, const char *password_hash, const char *role) {
        return store_exec_one(st, "UPDATE user SET password_hash = coalesce(?, password_hash), role = coalesce(?, role) WHERE id = ?",
                           "ssi", password_hash, role, id);
}
int store_user_delete(Store *st, int64_t id) {
        return store_exec_one(st, "DELETE FROM user WHERE id = ?", "i", id);
}
int store_user_scopes_set(Store *st, int64_t user_id, const int64_t *group_ids, size_t n) {
        int r = store_begin(st);
        if (r < 0)
                return r;
        r = store_exec(st, "DELETE FROM user_scope WHERE user_id = ?", "i", user_id);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = store_exec(st, "INSERT INTO user_scope(user_id, group_id) VALUES (?,?) ON CONFLICT DO NOTHING", "ii", user_id, group_ids[i]);
        return store_end(st, r);
}
int store_user_scopes(Store *st, int64_t user_id, int64_t **ret) {
        return store_query_rows(st, row_i64, sizeof(int64_t), (void **) ret,
                          "SELECT group_id FROM user_scope WHERE user_id = ? ORDER BY group_id", "i", user_id);
}
#define USER_COLUMNS \
        "SELECT u.id, u.name, u.role, (SELECT json_group_array(json_object('id', g.id, 'path', g.path))" \
        " FROM user_scope s JOIN host_group g ON g.id = s.group_id WHERE s.user_id = u.id) AS scopes_json, u.created_at FROM user u "
#define USER_COLUMNS_PG \
        "SELECT u.id, u.name, u.role, (SELECT coalesce(json_agg(json_build_object('id', g.id, 'path', g.path) ORDER BY g.id), '[]')" \
        " FROM user_scope s JOIN host_group g ON g.id = s.group_id WHERE s.user_id = u.id) AS scopes_json, u.created_at FROM user u "
#define USER_SQL(st, tail) store_sql((st), USER_COLUMNS tail, USER_COLUMNS_PG tail)
int store_user_list(Store *st, const char *name, json_t **ret) {
        return store_query_json(st, ret, USER_SQL(st, "WHERE (?1 IS NULL OR u.name = ?1) ORDER BY u.name"), "s", name);
}
int store_user_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, USER_SQL(st, "WHERE u.id = ?"), "i", id);
}
int store_token_insert(Store *st, int64_t user_id, const char *token_hash, int64_t expires_at_ms) {
        return store_exec(st, "INSERT INTO token(user_id, token_hash, created_at, expires_at) VALUES (?,?,?,?)",
                          "isii", user_id, token_hash, now_ms(), expires_at_ms);
}
typedef struct {
        StoreUser user;
        int64_t last_used_at;
} TokenUser;
static void row_token_user(StoreRow *stmt, void *out) {
        TokenUser *t = out;
        row_user(stmt, &t->user);
        t->last_used_at = store_col_i64(stmt, 4);
}
int store_token_user(Store *st, const char *token_hash, int64_t now, StoreUser *ret) {
        TokenUser t;
        int r = store_query_row(st, row_token_user, &t,
                          "SELECT u.id, u.name, u.role, u.password_hash, coalesce(t.last_used_at, 0)"
                          " FROM token t JOIN user u ON u.id = t.user_id"
                          " WHERE t.token_hash = ? AND t.expires_at > ?", "si", token_hash, now);
        if (r < 0)
                return r;
        *ret = t.user;
        /* last_used_at is informational (a failure to record it is not
         * fatal) and kept to the minute: an UPDATE takes the database's
         * write lock even when it changes nothing, so it runs only when due,
         * not on every request behind every other writer. */
        if (t.last_used_at < now - 60000)
                (void) store_exec(st, "UPDATE token SET last_used_at = ? WHERE token_hash = ? AND coalesce(last_used_at, 0) < ? - 60000",
                                  "isi", now, token_hash, now);
        return 0;
}
int store_token_delete(Store *st, const char *token_hash) {
        return store_exec(st, "DELETE FROM token WHERE token_hash = ?", "s", token_hash);
}
int store_token_purge_expired(Store *st, int64_t now) {
        return store_exec(st, "DELETE FROM token WHERE expires_at <= ?", "i", now);
}
int store_token_delete_others(Store *st, int64_t user_id, const char *keep_hash) {
        return store_exec(st, "DELETE FROM token WHERE user_id = ? AND token_hash <> ?", "is", user_id, keep_hash ? keep_hash : "");
}

/* ------------------------------------------------------------------ */
/* jobs */

int store_object_group(Store *st, const char *kind, int64_t id, int64_t *ret) {
        int64_t g = 0;
        int r = 0;
        if (kind && id > 0) {
                if (streq(kind, "vm"))
                        r = store_query_i64(st, &g, "SELECT h.group_id FROM vm v JOIN host h ON h.id = v.host_id WHERE v.id = ?", "i", id);
                else if (streq(kind, "host"))
                        r = store_query_i64(st, &g, "SELECT group_id FROM host WHERE id = ?", "i", id);
                else if (streq(kind, "group"))
                        g = id;
        }
        if (r < 0)
                g = 0;
        *ret = g;
        return r == -ENOENT ? 0 : r < 0 ? r : 0;
}

/* The next number of the stream sequence (see "core-stream-seq"): above
 * every job revision and every event id. A statement that writes holds
 * SQLite's one write lock from its start (on PostgreSQL the writers' lock,
 * store-pg.c), so two writers never draw the
 * same number, and numbers become visible in the order they were drawn.
 * Neither table loses rows (nothing deletes events or jobs), so the
 * maximum never goes back. */
#define STREAM_NEXT_SEQ "(SELECT coalesce(max(seq_top), 0) + 1 FROM (SELECT max(rev) AS seq_top FROM job" \
                        " UNION ALL SELECT max(id) FROM event) AS seq_tops)"

void store_job_clear(StoreJob *j) {
        free(j->params_json);
        j->params_json = NULL;
}
int store_job_insert(Store *st, const char *kind, const char *target_kind, int64_t target_id,
                     const char *target_name, int64_t owner_id, const char *params_json, int64_t *ret_id) {
        return changed(st, store_insert(st, ret_id, "INSERT INTO job(kind, target_kind, target_id, target_name, owner_id, params,"
                                                    " created_at, rev) VALUES (?,?,?,?,nullif(?,0),?,?," STREAM_NEXT_SEQ ")",
                                        "ssisisi", kind, target_kind, target_id, target_name, owner_id, params_json, now_ms()));
}
static void row_job(StoreRow *stmt, void *out) {
        StoreJob *j = out;
        j->id = store_col_i64(stmt, 0);
        COPY(j->kind, 1);
        COPY(j->state, 2);
        COPY(j->target_kind, 3);
        j->target_id = store_col_i64(stmt, 4);
        COPY(j->target_name, 5);
        j->owner_id = store_col_i64(stmt, 6);
        const char *p = store_col_text(stmt, 7);
        j->params_json = p ? xstrdup((const char *) p) : NULL;
        j->cancel_requested = store_col_int(stmt, 8) != 0;
        j->attempts = store_col_int(stmt, 9);
}
#define JOB_ROW "SELECT id, kind, state, target_kind, target_id, target_name, coalesce(owner_id, 0), params," \
                " cancel_requested, attempts FROM job "

/* The queued jobs a worker may take: those whose target no worker is on.
 * worker_active rather than state = 'running': a stuck job a user
 * cancelled has ended, but its thread may still be inside a call on the
 * target, so the target stays taken until it comes back. */
#define JOB_CLAIMABLE \
        " FROM job q WHERE q.state = 'queued' AND NOT EXISTS (" \
        "  SELECT 1 FROM job r WHERE r.worker_active = 1 AND r.target_kind = q.target_kind" \
        "  AND r.target_id = q.target_id)"

int store_job_claim(Store *st, StoreJob *ret) {
        /* One statement, so two workers can never claim the same job; the
         * NOT EXISTS keeps jobs on one object strictly one at a time. */
        int r = store_query_row(st, row_job, ret,
                         "UPDATE job SET state = 'running', started_at = ?1, progress_at = ?1, quiet_ms = 0, stuck_since = NULL,"
                         " worker_active = 1, attempts = attempts + 1, rev = " STREAM_NEXT_SEQ " WHERE id = ("
                         " SELECT q.id" JOB_CLAIMABLE " ORDER BY q.id LIMIT 1)"
                         " RETURNING id, kind, state, target_kind, target_id, target_name, coalesce(owner_id, 0), params,"
                         " cancel_requested, attempts", "i", now_ms());
        return r == 0 ? changed(st, r) : r;
}

int store_job_claimable(Store *st) {
        int64_t n = 0;
        int r = store_query_i64(st, &n, "SELECT CASE WHEN EXISTS (SELECT 1" JOB_CLAIMABLE ") THEN 1 ELSE 0 END", "");
        return r < 0 ? r : n > 0;
}
int store_job_progress(Store *st, int64_t id, int percent, const char *step) {
        return changed(st, store_exec(st, "UPDATE job SET progress = CASE WHEN progress > ?1 THEN progress ELSE ?1 END, step = coalesce(?2, step),"
                                          " progress_at = ?3, quiet_ms = 0, stuck_since = NULL, rev = " STREAM_NEXT_SEQ " WHERE id = ?4",
                                      "isii", (int64_t) percent, step, now_ms(), id));
}
int store_job_quiet(Store *st, int64_t id, int64_t quiet_ms) {
        return store_exec(st, "UPDATE job SET quiet_ms = ? WHERE id = ?", "ii", quiet_ms, id);
}
static void row_job_watch(StoreRow *stmt, void *out) {
        StoreJobWatch *w = out;
        w->id = store_col_i64(stmt, 0);
        COPY(w->kind, 1);
        COPY(w->target_name, 2);
        w->owner_id = store_col_i64(stmt, 3);
        w->progress_at = store_col_i64(stmt, 4);
        w->quiet_ms = store_col_i64(stmt, 5);
        w->stuck_since = store_col_i64(stmt, 6);
        COPY(w->step, 7);
        COPY(w->target_kind, 8);
}
int store_job_watch_list(Store *st, StoreJobWatch **ret) {
        return store_query_rows(st, row_job_watch, sizeof(StoreJobWatch), (void **) ret,
                                "SELECT id, kind, coalesce(target_name, ''), coalesce(owner_id, 0),"
                                " coalesce(progress_at, started_at, created_at), quiet_ms, coalesce(stuck_since, 0),"
                                " coalesce(step, ''), target_kind FROM job WHERE state = 'running' ORDER BY id", "");
}
int store_job_set_stuck(Store *st, int64_t id, int64_t since) {
        int r = store_exec(st, "UPDATE job SET stuck_since = ?, rev = " STREAM_NEXT_SEQ
                               " WHERE id = ? AND state = 'running' AND stuck_since IS NULL", "ii", since, id);
        return r < 0 ? r : store_changes(st) > 0 ? changed(st, 1) : 0;
}
int store_job_worker_done(Store *st, int64_t id) {
        return store_exec(st, "UPDATE job SET worker_active = 0 WHERE id = ?", "i", id);
}
int store_job_workers_reset(Store *st) {
        return store_exec(st, "UPDATE job SET worker_active = 0 WHERE worker_active = 1", "");
}
int store_job_end_stuck(Store *st, int64_t id, const char *error) {
        int r = store_exec(st, "UPDATE job SET state = 'cancelled', error = ?, finished_at = ?, rev = " STREAM_NEXT_SEQ
                               " WHERE id = ? AND state = 'running' AND stuck_since IS NOT NULL",
                           "sii", error, now_ms(), id);
        return r < 0 ? r : store_changes(st) > 0 ? changed(st, 1) : 0;
}
int store_job_step_add(Store *st, int64_t id, const char *name) {
        int r = store_exec(st, "INSERT INTO job_step(job_id, seq, name, at)"
                               " VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM job_step WHERE job_id = ?1), ?2, ?3)",
                           "isi", id, name, now_ms());
        if (r < 0)
                return r;
        /* A step shows in the job's JSON, so the job moves in the stream
         * too; after the step, so a reader that sees the new number sees
         * the step. */
        return changed(st, store_exec(st, "UPDATE job SET rev = " STREAM_NEXT_SEQ " WHERE id = ?", "i", id));
}
int store_job_finish(Store *st, int64_t id, const char *state, const char *error, const char *result_json) {
        /* Only a job still running: one that already ended (a stuck job a
         * user cancelled) keeps the end it was given. */
        int r = store_exec(st, "UPDATE job SET state = ?, error = ?, result = ?, finished_at = ?,"
                               " progress = CASE WHEN ? = 'succeeded' THEN 100 ELSE progress END, rev = " STREAM_NEXT_SEQ
                               " WHERE id = ? AND state = 'running'",
                           "sssisi", state, error, result_json, now_ms(), state, id);
        if (r < 0)
                return r;
        return store_changes(st) > 0 ? changed(st, 0) : -EALREADY;
}
int store_job_request_cancel(Store *st, int64_t id) {
        /* A queued job is cancelled at once; a running one is asked to stop. */
        int r = store_exec(st, "UPDATE job SET state = 'cancelled', finished_at = ?, error = 'cancelled before it started',"
                               " rev = " STREAM_NEXT_SEQ " WHERE id = ? AND state = 'queued'", "ii", now_ms(), id);
        if (r < 0 || store_changes(st) > 0)
                return changed(st, r);
        r = store_exec(st, "UPDATE job SET cancel_requested = 1, rev = " STREAM_NEXT_SEQ " WHERE id = ? AND state = 'running'", "i", id);
        if (r < 0)
                return r;
        return store_changes(st) > 0 ? changed(st, 0) : -EALREADY;
}
int store_job_cancel_requested(Store *st, int64_t id, bool *ret) {
        int64_t v;
        int r = store_query_i64(st, &v, "SELECT cancel_requested FROM job WHERE id = ?", "i", id);
        if (r < 0)
                return r;
        *ret = v != 0;
        return 0;
}
int store_job_list_running(Store *st, StoreJob **ret) {
        return store_query_rows(st, row_job, sizeof(StoreJob), (void **) ret, JOB_ROW "WHERE state = 'running' ORDER BY id", "");
}
int store_job_requeue(Store *st, int64_t id) {
        return changed(st, store_exec(st, "UPDATE job SET state = 'queued', step = 'resumed after armadad restarted', stuck_since = NULL,"
                                          " worker_active = 0, rev = " STREAM_NEXT_SEQ " WHERE id = ?", "i", id));
}
int store_job_state(Store *st, int64_t id, char state[16]) {
        _cleanup_json_ json_t *o = NULL;
        int r = store_query_one(st, &o, "SELECT state FROM job WHERE id = ?", "i", id);
        if (r < 0)
                return r;
        snprintf(state, 16, "%s", json_string_value(json_object_get(o, "state")));
        return 0;
}
#define JOB_FIELDS_A \
        "SELECT j.id, j.kind, j.state, j.target_kind, j.target_id, j.target_name, j.owner_id, u.name AS owner_name," \
        " j.progress, j.step, j.error, j.result AS result_json, j.attempts,"
#define JOB_FIELDS_B \
        " j.cancel_requested AS cancel_requested_bool, j.created_at, j.started_at, j.finished_at," \
        " (j.state = 'running' AND j.stuck_since IS NOT NULL) AS stuck_bool,"
/* RFC 3339 with milliseconds from integer ms, per engine. */
#define PG_TIME(ms) "to_char(to_timestamp(" ms " / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define JOB_FIELDS \
        JOB_FIELDS_A \
        " (SELECT json_group_array(json_object('seq', s.seq, 'name', s.name, 'at', strftime('%Y-%m-%dT%H:%M:%fZ', s.at / 1000.0, 'unixepoch'))) FROM job_step s WHERE s.job_id = j.id) AS steps_json," \
        JOB_FIELDS_B \
        " CASE WHEN j.state = 'running' THEN strftime('%Y-%m-%dT%H:%M:%fZ', j.stuck_since / 1000.0, 'unixepoch') END AS stuck_since"
#define JOB_FIELDS_PG \
        JOB_FIELDS_A \
        " (SELECT coalesce(json_agg(json_build_object('seq', s.seq, 'name', s.name, 'at', " PG_TIME("s.at") ") ORDER BY s.seq), '[]')" \
        "  FROM job_step s WHERE s.job_id = j.id) AS steps_json," \
        JOB_FIELDS_B \
        " CASE WHEN j.state = 'running' THEN " PG_TIME("j.stuck_since") " END AS stuck_since"
#define JOB_FROM " FROM job j LEFT JOIN user u ON u.id = j.owner_id "
#define JOB_COLUMNS JOB_FIELDS JOB_FROM
#define JOB_COLUMNS_PG JOB_FIELDS_PG JOB_FROM
#define JOB_SQL(st, tail) store_sql((st), JOB_COLUMNS tail, JOB_COLUMNS_PG tail)
int store_job_list(Store *st, const char *state, int64_t owner_id, bool only_stuck, int64_t before_id, int limit, json_t **ret) {
        return store_query_json(st, ret, JOB_SQL(st, "WHERE (?1 IS NULL OR j.state = ?1) AND (?2 = 0 OR j.owner_id = ?2)"
                                                     " AND (?4 = 0 OR (j.state = 'running' AND j.stuck_since IS NOT NULL))"
                                                     " AND (?5 = 0 OR j.id < ?5)"
                                                     " ORDER BY j.id DESC LIMIT ?3"),
                                "siiii", state, owner_id, (int64_t) limit, (int64_t) only_stuck, before_id);
}
int store_job_get_json(Store *st, int64_t id, json_t **ret) {
        return store_query_one(st, ret, JOB_SQL(st, "WHERE j.id = ?"), "i", id);
}

/* ------------------------------------------------------------------ */
/* events and audit */

int store_event_add(Store *st, const char *severity, const char *kind, const char *object_kind,
                    int64_t object_id, const char *object_name, int64_t owner_id, const char *message) {
        return changed(st, store_exec(st, "INSERT INTO event(id, at, severity, kind, object_kind, object_id, object_name, owner_id,"
                                          " message) VALUES (" STREAM_NEXT_SEQ ",?,?,?,?,nullif(?,0),?,nullif(?,0),?)",
                                      "isssisis", now_ms(), severity, kind, object_kind, object_id, object_name, owner_id, message));
}
int store_event_list_after(Store *st, int64_t after, int limit, json_t **ret) {
        return store_query_json(st, ret, "SELECT id, at, severity, kind, object_kind, object_id, object_name, owner_id, message"
                                    " FROM event WHERE id > ? ORDER BY id LIMIT ?", "ii", after, (int64_t) limit);
}
int store_job_list_changed(Store *st, int64_t after, int limit, json_t **ret) {
        return store_query_json(st, ret, store_sql(st, JOB_FIELDS ", j.rev AS stream_seq" JOB_FROM "WHERE j.rev > ? ORDER BY j.rev LIMIT ?",
                                                       JOB_FIELDS_PG ", j.rev AS stream_seq" JOB_FROM "WHERE j.rev > ? ORDER BY j.rev LIMIT ?"),
                                "ii", after, (int64_t) limit);
}
int store_stream_seq(Store *st, int64_t *ret) {
        return store_query_i64(st, ret, "SELECT " STREAM_NEXT_SEQ " - 1", "");
}
int store_event_list(Store *st, int64_t since_id, int64_t before_id, int limit, json_t **ret) {
        return store_query_json(st, ret, "SELECT id, at, severity, kind, object_kind, object_id, object_name, owner_id, message"
                                    " FROM event WHERE id > ?1 AND (?2 = 0 OR id < ?2) ORDER BY id DESC LIMIT ?3", "iii",
                                since_id, before_id, (int64_t) limit);
}
int store_audit_add(Store *st, int64_t user_id, const char *user_name, const char *address,
                    const char *action, const char *object_kind, int64_t object_id,
                    const char *object_name, const char *detail, const char *result) {
        return store_exec(st, "INSERT INTO audit(at, user_id, user_name, address, action, object_kind, object_id, object_name,"
                              " detail, result) VALUES (?,nullif(?,0),?,?,?,?,nullif(?,0),?,?,?)",
                          "iissssisss", now_ms(), user_id, user_name, address, action, object_kind, object_id,
                          object_name, detail, result);
}
int store_audit_prune(Store *st, int64_t before_ms) {
        return store_exec(st, "DELETE FROM audit WHERE at < ?", "i", before_ms);
}
int store_audit_list(Store *st, int limit, json_t **ret) {
        return store_query_json(st, ret, "SELECT id, at, user_id, user_name, address, action, object_kind, object_id, object_name,"
                                    " detail, result FROM audit ORDER BY id DESC LIMIT ?", "i", (int64_t) limit);
}
