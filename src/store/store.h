/* store: Armada's database. SQLite in WAL mode with foreign keys on (the
 * default) or PostgreSQL (store_open()), one connection per thread (opened
 * lazily), versioned schema migrations, and every SQL statement of the
 * program. Parameters are always bound; no user
 * string is ever pasted into SQL.
 *
 * One idiom for every function: it returns 0 (or a positive count/id) on
 * success and a negative errno-style code on failure: -ENOENT (no such
 * row), -EEXIST (unique constraint), -ENOTEMPTY (still referenced), -EBUSY
 * (another writer held the database past the busy timeout), -EIO (any
 * other database error). A database error is logged once here, with the
 * statement; the caller tells the user a sentence that names no SQL and no
 * file (op_fail_store()). A getter or a list gives its result through an
 * out-parameter, ret (last, or second before a query's varargs): a struct
 * to fill, or a json_t ** that receives a new reference the caller owns,
 * set only when it returns 0. A getter of one row returns -ENOENT when
 * there is none; a list returns 0 and an empty array. A getter never
 * returns NULL for an error: "not found" (-ENOENT, a 404) and "failed"
 * (any other -errno, a 5xx) are always told apart. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "util/util.h"

typedef struct Store Store;

/* The database engine a store runs on (store_open()'s db names it). */
typedef enum { STORE_ENGINE_SQLITE, STORE_ENGINE_POSTGRESQL } StoreEngine;

/* A named schema migration (see store.c). Lists end with { NULL, NULL }.
 * Either sql, run in one transaction, or run: a step in C for what SQL
 * alone cannot say (a table rebuild), called inside one transaction with
 * foreign-key enforcement off and checked afterwards; 0 or negative.
 * pg: the PostgreSQL text of the migration. NULL: sql translated
 * mechanically (INTEGER PRIMARY KEY [AUTOINCREMENT] becomes an identity
 * column, INTEGER BIGINT, REAL DOUBLE PRECISION, BLOB BYTEA, WITHOUT ROWID
 * is dropped, a table named user is quoted); STORE_PG_NONE: nothing to do
 * on PostgreSQL. A run step runs on PostgreSQL only as pg text (set pg, or
 * it is skipped). Triggers need pg text (plpgsql). */
typedef struct {
        const char *name;
        const char *sql;
        int (*run)(Store *st);
        const char *pg;
} StoreMigration;
#define STORE_PG_NONE ""
/* Each capability's migrations, in its own store-<capability>.c. */
extern const StoreMigration store_migrations_place[];
extern const StoreMigration store_migrations_monitor[];
extern const StoreMigration store_migrations_library[];
extern const StoreMigration store_migrations_ha[];

/* Opens the database db and migrates it to the newest schema: a file path
 * or "sqlite:PATH" (SQLite, the file created when missing), or a libpq
 * connection URI "postgresql://..." / "postgres://..." or
 * "postgresql:KEYWORD=VALUE ..." (PostgreSQL; the database must exist).
 * Returns 0 and *ret, or negative (logged, the password never). */
int store_open(const char *db, Store **ret);
/* db as store_open() takes it with any password masked ("***"), for logs,
 * messages and /metrics: malloc'd. */
char *store_db_masked(const char *db);
StoreEngine store_engine(Store *st);
/* Closes every per-thread connection this thread can reach. Accepts NULL. */
Store *store_free(Store *st);
/* The number of migrations applied (on SQLite also PRAGMA user_version). */
int store_schema_version(Store *st);
/* How many connections are open: one per living thread that used the store. */
size_t store_connections(Store *st);

/* ---- generic helpers (used inside store and by its tests) ----
 * types: one letter per parameter: 'i' int64_t, 'd' double, 's' const char *
 * (NULL binds NULL), 'n' NULL (consumes no argument), 'b' bool (int). */
int store_exec(Store *st, const char *sql, const char *types, ...);
/* Runs a query: 0 and its rows in *ret as a JSON array of objects keyed by
 * column name (empty when there is none), or negative (logged). Integer
 * columns whose name ends in "_at" become RFC 3339 strings; columns named
 * "*_json" are parsed and renamed without the suffix; columns whose name
 * ends in "_bool" become booleans (suffix dropped). */
int store_query_json(Store *st, json_t **ret, const char *sql, const char *types, ...);
/* The first row of store_query_json(): 0 and *ret, -ENOENT when there is
 * none, or negative. */
int store_query_one(Store *st, json_t **ret, const char *sql, const char *types, ...);
/* A single integer result; -ENOENT when no row. */
int store_query_i64(Store *st, int64_t *ret, const char *sql, const char *types, ...);
/* store_exec() for an INSERT: 0 and the new row's id in *ret_id (untouched
 * on failure), or negative. */
int store_insert(Store *st, int64_t *ret_id, const char *sql, const char *types, ...);
/* store_exec() for a statement that must change a row (UPDATE/DELETE by
 * id): 0, -ENOENT when it changed none, or negative. */
int store_exec_one(Store *st, const char *sql, const char *types, ...);
int store_begin(Store *st);
/* Ends the transaction store_begin() opened: commits when r >= 0 (returning
 * the commit's result), else rolls back and returns r. */
int store_end(Store *st, int r);
int store_commit(Store *st);
void store_rollback(Store *st);

/* Called after an event is added or a job changes, once the change is
 * committed (at store_commit() when a transaction is open), from the thread
 * that made it, with the store's lock held: fn must be quick and must not
 * call the store. One hook; NULL removes it. */
typedef void (*StoreChangeFn)(void *userdata);
void store_set_change_hook(Store *st, StoreChangeFn fn, void *userdata);
/* A number that moves after every commit (of this process) that changed a
 * job, added an event, or opened, resolved or acknowledged an alert: what
 * /metrics counts of them can be cached against (monitor-ops.c). */
uint64_t store_counts_generation(Store *st);
/* ---- changed rows, for the read model (src/model) ----
 * After a commit that changed rows of host_group, host or vm (inserted,
 * updated or deleted, by a statement, a trigger or a foreign-key action;
 * a VM whose disks changed counts as changed), fn is called once from the
 * thread that committed, outside any transaction and without the store's
 * locks, so it may read the store: changes sorted by (table, id), each
 * once, n >= 1. A rollback tells nothing. It may name a row that did not
 * change (a failed transaction that SQLite itself ended): a reader re-reads
 * the truth. One hook; NULL removes it (no call runs after the caller has
 * stopped every writer). Separate from the change hook above, which keeps
 * serving the event stream. */
typedef enum { STORE_TABLE_HOST_GROUP, STORE_TABLE_HOST, STORE_TABLE_VM } StoreTable;
typedef struct {
        StoreTable table;
        int64_t id;
} StoreRowChange;
typedef void (*StoreRowsFn)(void *userdata, const StoreRowChange *changes, size_t n);
void store_set_rows_hook(Store *st, StoreRowsFn fn, void *userdata);
int64_t store_last_id(Store *st);
int store_changes(Store *st);
/* Whether this thread's connection is inside a transaction. */
bool store_in_transaction(Store *st);

/* A capability's data kept for the life of the store (after SQLite's
 * set_clientdata): the data under name, made by create() on the
 * first call (atomically: one create per name) and given to destroy() by
 * store_free(). name is a static string; at most 8 names. NULL when
 * create() returns NULL or the slots are full. The data must guard itself
 * against concurrent use. */
void *store_clientdata(Store *st, const char *name, void *(*create)(void), void (*destroy)(void *));

/* ---- host groups ---- */
#define STORE_ROOT_GROUP_ID 1
#define STORE_ROOT_GROUP_NAME "All Hosts"
/* Normalises a user-supplied group path: strips a leading "All Hosts" and
 * slashes, collapses "//". Returns a malloc'd path ("" for the root), or
 * NULL when a segment is not a valid name (*ret_bad_segment then points to
 * a static reason). */
char *store_group_path_normalize(const char *path, const char **ret_reason);
/* Finds a group by normalised path; 0 and *ret_id, or -ENOENT. */
int store_group_find(Store *st, const char *path, int64_t *ret_id);
/* Creates every missing group along path; 0 and the deepest id. */
int store_group_create_path(Store *st, const char *path, int64_t *ret_id, bool *ret_created);
/* The group chain: the group's id followed by its ancestors up to the root.
 * Writes at most max ids; returns the count or negative. */
int store_group_chain(Store *st, int64_t group_id, int64_t *ids, int max);
int store_group_rename(Store *st, int64_t id, const char *new_name);
/* Moves a group under new_parent_id; -ELOOP when that is inside itself. */
int store_group_move(Store *st, int64_t id, int64_t new_parent_id);
/* Deletes an empty group; -ENOTEMPTY when it has hosts or children. */
int store_group_delete(Store *st, int64_t id);
int store_group_list(Store *st, const char *path_filter, json_t **ret);
int store_group_get(Store *st, int64_t id, json_t **ret);
/* Loads (id, parent) of every group, for in-memory chain walks when
 * filtering lists. Arrays are malloc'd. Returns count or negative. */
int store_group_parents(Store *st, int64_t **ret_ids, int64_t **ret_parents);

/* ---- hosts ---- */
typedef struct {
        int64_t id;
        char name[64];
        char uri[512];
        int64_t group_id;
        char state[24];
        char pool[64];
        char pool_path[512];
        char domain_type[8];
        char identity[600];     /* "uuid:<host UUID>", "uri:<normalised URI>", "" before the first connect */
        int max_parallel_starts;     /* domain starts in flight at once; 0: armadad's default */
        int max_parallel_disk_ops;   /* disk-heavy volume operations in flight at once; 0: the default */
        char domain_type_preference[8]; /* "auto", "kvm" or "qemu": what a VM asking "auto" gets (inventory_domain_type()) */
} StoreHost;
int store_host_insert(Store *st, const char *name, const char *uri, int64_t group_id,
                      const char *pool, const char *pool_path, int64_t *ret_id);
int store_host_get(Store *st, int64_t id, StoreHost *ret);
int store_host_find(Store *st, const char *name, int64_t *ret_id);
/* Every host, ordered by id (malloc'd array). Returns the count or negative. */
int store_host_all(Store *st, StoreHost **ret);
/* A host's URI key: its URI normalised (hv_uri_normalize()), set by the
 * inventory (store_host_set_uri_key(); NULL in rows from before the column
 * or inserted without one) and indexed. The host with key (lowest id): 0,
 * -ENOENT, or negative. */
int store_host_find_uri_key(Store *st, const char *key, StoreHost *ret);
/* The hosts without a URI key, ordered by id: count and malloc'd array, or
 * negative. */
int store_host_unkeyed(Store *st, StoreHost **ret);
int store_host_set_uri_key(Store *st, int64_t id, const char *key);
/* Records identity (what hypervisor the host is, see StoreHost) for host id,
 * atomically with the check that no other host (but one in state
 * 'duplicate') holds it: 0, or -EEXIST with that host in *ret_holder (may be
 * NULL) and nothing changed, or negative. */
int store_host_claim_identity(Store *st, int64_t id, const char *identity, StoreHost *ret_holder);
/* Sets state and its reason (NULL clears); returns 1 when the state changed. */
int store_host_set_state(Store *st, int64_t id, const char *state, const char *reason);
/* The same, unless the host's state is one of keep (NULL-terminated), in
 * one statement: a state another thread set meanwhile (maintenance, failed,
 * fenced) is never overwritten by a decision made on an older one. 1 when
 * it changed, 0 when not, or negative. */
int store_host_set_state_unless(Store *st, int64_t id, const char *state, const char *reason, const char *const *keep);
int store_host_set_facts(Store *st, int64_t id, unsigned cpus, uint64_t memory_mib, uint64_t free_memory_mib,
                         const char *hv_driver, const char *domain_type, const char *hostname, const char *pool_path);
/* store_host_set_facts() without a pool path for a host that answered a
 * quiet round: writes only when a fact changed or last_seen_at is at least
 * stale_ms old (a thousand quiet hosts would otherwise be a write each,
 * every round, and a re-read of each row by the read model). */
int store_host_touch_facts(Store *st, int64_t id, unsigned cpus, uint64_t memory_mib, uint64_t free_memory_mib,
                           const char *hv_driver, const char *domain_type, const char *hostname, int64_t stale_ms);
/* Sets a host's throttles: -1 keeps a value, 0 clears it (armadad's default
 * applies), a positive number sets it. 0, -ENOENT or negative. */
int store_host_set_throttle(Store *st, int64_t id, int max_parallel_starts, int max_parallel_disk_ops);
/* Sets a host's domain type preference ("auto", "kvm" or "qemu"; the
 * caller checks it). 0, -ENOENT or negative. */
int store_host_set_domain_type_preference(Store *st, int64_t id, const char *preference);
/* Deletes the host; its VMs are forgotten (rows deleted) only when force. */
int store_host_delete(Store *st, int64_t id, bool force);
int store_host_list(Store *st, const char *name, int64_t group_id, json_t **ret);
int store_host_get_json(Store *st, int64_t id, json_t **ret);
/* The hosts among ids (n of them), in the shape of store_host_list(),
 * ordered by id; an id without a row is left out. 0 and *ret, or negative. */
int store_host_list_ids(Store *st, const int64_t *ids, size_t n, json_t **ret);
/* Ids of every host, for the monitor loop. Returns count or negative. */
int store_host_ids(Store *st, int64_t **ret_ids);

/* This installation's id (a UUID), generated and stored on first use and
 * the same ever after: the marker of the domains it defines. 0 or negative. */
int store_installation_id(Store *st, char ret[37]);

/* ---- VMs ---- */
typedef struct {
        int64_t id;
        char uuid[37];
        char name[64];
        int64_t host_id;         /* 0 when not placed */
        int64_t owner_id;        /* 0 when none */
        unsigned cpus;
        uint64_t memory_mib;
        char state[24];
        char domain_type[8];
        char origin[16];         /* "created", "template", "discovered", "foreign" (another installation's: read-only) */
        char description[256];
} StoreVm;
typedef struct {
        char target[16];
        char path[1024];
        uint64_t size_bytes;
        bool owned;              /* created by Armada (deleted with the VM) */
} StoreDisk;
int store_vm_insert(Store *st, const StoreVm *vm, int64_t *ret_id);
int store_vm_get(Store *st, int64_t id, StoreVm *ret);
int store_vm_find(Store *st, const char *name, int64_t *ret_id);
int store_vm_find_uuid(Store *st, const char *uuid, int64_t *ret_id);
int store_vm_set_state(Store *st, int64_t id, const char *state);
int store_vm_set_host(Store *st, int64_t id, int64_t host_id);
/* Sets where the VM came from (see StoreVm.origin). 0 or negative. */
int store_vm_set_origin(Store *st, int64_t id, const char *origin);
int store_vm_update_hw(Store *st, int64_t id, unsigned cpus, uint64_t memory_mib, const char *domain_type);
/* Sets what an operator says of a VM, in one statement: its owner (a user
 * id; 0 clears; negative keeps it) and its description (NULL keeps it; ""
 * clears). 0, -ENOENT when there is no VM id, or -errno. */
int store_vm_set_meta(Store *st, int64_t id, int64_t owner_id, const char *description);
int store_vm_delete(Store *st, int64_t id);
int store_vm_disk_add(Store *st, int64_t vm_id, const StoreDisk *d);
/* Forgets the disk of a VM with target (hv-hardware's disk remove); a
 * missing one is no error. 0 or negative. */
int store_vm_disk_remove(Store *st, int64_t vm_id, const char *target);
/* Replaces the disks of a VM (used by reconcile). */
int store_vm_disks_clear(Store *st, int64_t vm_id);
/* Returns count or negative; *ret malloc'd. */
int store_vm_disks(Store *st, int64_t vm_id, StoreDisk **ret);
int store_vm_list(Store *st, const char *name, int64_t host_id, int64_t owner_id, json_t **ret);
int store_vm_get_json(Store *st, int64_t id, json_t **ret);
/* The VMs among ids, as store_host_list_ids() does for hosts. */
int store_vm_list_ids(Store *st, const int64_t *ids, size_t n, json_t **ret);
/* VMs the database places on host_id: a malloc'd array; count or negative. */
int store_vm_list_on_host(Store *st, int64_t host_id, StoreVm **ret);
int store_vm_count_on_host(Store *st, int64_t host_id);

/* ---- users, scopes, tokens ---- */
typedef struct {
        int64_t id;
        char name[64];
        char role[32];
        char password_hash[160];
} StoreUser;
int store_user_insert(Store *st, const char *name, const char *password_hash, const char *role, int64_t *ret_id);
int store_user_get(Store *st, int64_t id, StoreUser *ret);
int store_user_find(Store *st, const char *name, StoreUser *ret);
int store_user_count(Store *st);
int store_user_update(Store *st, int64_t id, const char *password_hash /* NULL keeps */, const char *role /* NULL keeps */);
int store_user_delete(Store *st, int64_t id);
int store_user_scopes_set(Store *st, int64_t user_id, const int64_t *group_ids, size_t n);
/* count or negative; *ret malloc'd */
int store_user_scopes(Store *st, int64_t user_id, int64_t **ret);
int store_user_list(Store *st, const char *name, json_t **ret);
int store_user_get_json(Store *st, int64_t id, json_t **ret);
int store_token_insert(Store *st, int64_t user_id, const char *token_hash, int64_t expires_at_ms);
/* Looks a live token up by hash: 0 and the user, -ENOENT when unknown or
 * expired. Slides last_used_at. */
int store_token_user(Store *st, const char *token_hash, int64_t now, StoreUser *ret);
int store_token_delete(Store *st, const char *token_hash);
int store_token_purge_expired(Store *st, int64_t now);
/* Ends every session of user_id but the one whose hash is keep_hash (NULL:
 * every one). 0 or negative. */
int store_token_delete_others(Store *st, int64_t user_id, const char *keep_hash);

/* ---- jobs ---- */
/* The host group an object of a job or an event lives in (kind "vm",
 * "host" or "group"): 0 and *ret (0 when it has none, is gone or kind is
 * another), or negative on a database error (*ret 0). */
int store_object_group(Store *st, const char *kind, int64_t id, int64_t *ret);
typedef struct {
        int64_t id;
        char kind[32];
        char state[16];
        char target_kind[16];
        int64_t target_id;
        char target_name[64];
        int64_t owner_id;
        char *params_json;       /* malloc'd; store_job_clear() frees */
        bool cancel_requested;
        int attempts;
} StoreJob;
void store_job_clear(StoreJob *j);
int store_job_insert(Store *st, const char *kind, const char *target_kind, int64_t target_id,
                     const char *target_name, int64_t owner_id, const char *params_json, int64_t *ret_id);
/* Atomically claims the oldest queued job whose target has no running job,
 * marking it running. 0 and *ret, or -ENOENT when none is runnable. */
int store_job_claim(Store *st, StoreJob *ret);
/* Whether store_job_claim() would find a job now, read without the
 * writers' lock (a worker asks before it takes it to claim): 1, 0, or
 * negative. A job queued meanwhile may be missed: its submitter wakes a
 * worker. */
int store_job_claimable(Store *st);
/* Records progress; it also marks the job as moving (clears stuck_since
 * and the quiet allowance). */
int store_job_progress(Store *st, int64_t id, int percent, const char *step);
/* Lets the job's current step stay without progress quiet_ms longer before
 * it counts as stuck (until its next progress). */
int store_job_quiet(Store *st, int64_t id, int64_t quiet_ms);
/* A running job as the stuck-job watch sees it. */
typedef struct {
        int64_t id;
        char kind[32];
        char target_kind[16];
        char target_name[64];
        int64_t owner_id;
        int64_t progress_at;     /* ms of its last progress (or start) */
        int64_t quiet_ms;
        int64_t stuck_since;     /* ms, 0 when not stuck */
        char step[256];
} StoreJobWatch;
/* Every running job. Count and a malloc'd array, or negative. */
int store_job_watch_list(Store *st, StoreJobWatch **ret);
/* Marks a running job stuck since since (ms): 1 when it was not before, 0
 * when it was (or no longer runs), or negative. */
int store_job_set_stuck(Store *st, int64_t id, int64_t since);
/* Ends a running job that is stuck as cancelled with error, at once (its
 * worker may still be blocked; its own end will not overwrite this). 1 when
 * it did, 0 when the job is not running and stuck, or negative. */
int store_job_end_stuck(Store *st, int64_t id, const char *error);
/* Records that no worker runs the job any more (its target is free). */
int store_job_worker_done(Store *st, int64_t id);
/* At start-up, before workers: no job has a worker. */
int store_job_workers_reset(Store *st);
int store_job_step_add(Store *st, int64_t id, const char *name);
/* Ends a running job: state "succeeded", "failed" or "cancelled"; error may
 * be NULL; result_json may be NULL. -EALREADY (nothing changed) when the job
 * is no longer running (a stuck job a user cancelled meanwhile). */
int store_job_finish(Store *st, int64_t id, const char *state, const char *error, const char *result_json);
int store_job_request_cancel(Store *st, int64_t id);
int store_job_cancel_requested(Store *st, int64_t id, bool *ret);
/* Running jobs at start-up: a malloc'd array, count or negative. */
int store_job_list_running(Store *st, StoreJob **ret);
int store_job_requeue(Store *st, int64_t id);
int store_job_state(Store *st, int64_t id, char state[16]);
/* Jobs newest first; state NULL for all, owner_id 0 for everyone's,
 * only_stuck for the running ones marked stuck, before_id > 0 for only
 * those with a smaller id (the next page back), at most limit. */
int store_job_list(Store *st, const char *state, int64_t owner_id, bool only_stuck, int64_t before_id, int limit, json_t **ret);
int store_job_get_json(Store *st, int64_t id, json_t **ret);

/* ---- events and audit ---- */
int store_event_add(Store *st, const char *severity, const char *kind, const char *object_kind,
                    int64_t object_id, const char *object_name, int64_t owner_id, const char *message);
/* Events newest first with since_id < id (and id < before_id when that is
 * > 0), at most limit. */
int store_event_list(Store *st, int64_t since_id, int64_t before_id, int limit, json_t **ret);

/* ---- the event stream's order (GET /api/v1/events/stream) ----
 * Event ids and job revisions (a job's "rev", renewed on every change of
 * the job) are drawn from one sequence, so a reader's place in both is one
 * number, and a number becomes visible only after every smaller one. */
/* The highest number drawn so far (0 on an empty database). */
int store_stream_seq(Store *st, int64_t *ret);
/* Events with id > after, oldest first, at most limit. */
int store_event_list_after(Store *st, int64_t after, int limit, json_t **ret);
/* Jobs whose last change is numbered > after, in that order, at most limit:
 * each in the shape of store_job_get_json() plus "stream_seq", the number
 * of its last change. */
int store_job_list_changed(Store *st, int64_t after, int limit, json_t **ret);
int store_audit_add(Store *st, int64_t user_id, const char *user_name, const char *address,
                    const char *action, const char *object_kind, int64_t object_id,
                    const char *object_name, const char *detail, const char *result);
int store_audit_list(Store *st, int limit, json_t **ret);
/* Deletes the audit rows recorded before before_ms (the retention). 0 or
 * -errno. */
int store_audit_prune(Store *st, int64_t before_ms);
