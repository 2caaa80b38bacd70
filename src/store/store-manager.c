/* The manager capability's tables and SQL (see store-manager.h; store.h for
 * the conventions): the managers sharing this store, the lease with its
 * fencing token, and the fence this process checks its host-changing
 * transactions against. Written once for both engines. */
#include "store-manager.h"
#include "store-priv.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

const StoreMigration store_migrations_manager[] = {
        { "manager-1", "CREATE TABLE manager ("
        "  id TEXT PRIMARY KEY,"
        "  url TEXT NOT NULL,"
        "  pid INTEGER NOT NULL,"
        "  hostname TEXT NOT NULL,"
        "  role TEXT NOT NULL,"
        "  lease_ttl_ms INTEGER NOT NULL,"
        "  started_at INTEGER NOT NULL,"
        "  last_seen_at INTEGER NOT NULL);"
        "CREATE TABLE manager_lease ("
        "  id INTEGER PRIMARY KEY CHECK (id = 1),"
        "  holder TEXT NOT NULL,"
        "  token INTEGER NOT NULL,"
        "  since_at INTEGER NOT NULL,"
        "  expires_at INTEGER NOT NULL)", NULL },
        { NULL, NULL, NULL },
};

#define FORGET_MS (3600 * 1000LL)

int store_manager_heartbeat(Store *st, const StoreManagerSelf *me, const char *role, int64_t now) {
        int r = store_exec(st, "INSERT INTO manager(id, url, pid, hostname, role, lease_ttl_ms, started_at, last_seen_at)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET url = excluded.url,"
                               " role = excluded.role, lease_ttl_ms = excluded.lease_ttl_ms, last_seen_at = excluded.last_seen_at",
                           "ssissiii", me->id, me->url, me->pid, me->hostname, role, me->lease_ttl_ms, me->started_at, now);
        if (r < 0)
                return r;
        return store_exec(st, "DELETE FROM manager WHERE last_seen_at < ? AND id <> ?", "is", now - FORGET_MS, me->id);
}

int store_manager_remove(Store *st, const char *id) {
        return store_exec_one(st, "DELETE FROM manager WHERE id = ?", "s", id);
}

int store_manager_list_json(Store *st, json_t **ret) {
        return store_query_json(st, ret, "SELECT id, url, pid, hostname, role, lease_ttl_ms, started_at, last_seen_at"
                                         " FROM manager ORDER BY started_at, id", "");
}

typedef struct {
        char hostname[256];
        int64_t pid;
        char *url;
} Where;

static void row_where(StoreRow *row, void *out) {
        Where *w = out;
        store_copy_text(w->hostname, sizeof w->hostname, row, 0);
        w->pid = store_col_i64(row, 1);
        w->url = xstrdup(store_col_text(row, 2) ? store_col_text(row, 2) : "");
}

int store_manager_where(Store *st, const char *id, char ret_hostname[256], int64_t *ret_pid, char **ret_url) {
        Where w = { 0 };
        int r = store_query_row(st, row_where, &w, "SELECT hostname, pid, url FROM manager WHERE id = ?", "s", id);
        if (r < 0)
                return r;
        memcpy(ret_hostname, w.hostname, sizeof w.hostname);
        *ret_pid = w.pid;
        *ret_url = w.url;
        return 0;
}

static void row_lease(StoreRow *row, void *out) {
        StoreLease *l = out;
        store_copy_text(l->holder, sizeof l->holder, row, 0);
        l->token = store_col_i64(row, 1);
        l->since = store_col_i64(row, 2);
        l->expires = store_col_i64(row, 3);
}

int store_lease_get(Store *st, StoreLease *ret) {
        StoreLease l = { 0 };
        int r = store_query_row(st, row_lease, &l, "SELECT holder, token, since_at, expires_at FROM manager_lease WHERE id = 1", "");
        if (r < 0)
                return r;
        *ret = l;
        return 0;
}

/* Inside the transaction: the decision of store_lease_acquire(). */
static int lease_decide(Store *st, const char *id, int64_t my_token, int64_t ttl_ms, int64_t now, const char *dead_holder,
                        StoreLease *l) {
        int r = store_lease_get(st, l);
        if (r == -ENOENT) {
                r = store_exec(st, "INSERT INTO manager_lease(id, holder, token, since_at, expires_at) VALUES (1, ?, 1, ?, ?)",
                               "sii", id, now, now + ttl_ms);
                if (r < 0)
                        return r;
                *l = (StoreLease) { .token = 1, .since = now, .expires = now + ttl_ms };
                snprintf(l->holder, sizeof l->holder, "%s", id);
                return 0;
        }
        if (r < 0)
                return r;
        bool mine = streq(l->holder, id) && l->token == my_token && my_token > 0;
        if (mine) {
                r = store_exec(st, "UPDATE manager_lease SET expires_at = ? WHERE id = 1", "i", now + ttl_ms);
                if (r >= 0)
                        l->expires = now + ttl_ms;
                return r;
        }
        if (my_token > 0)
                return -ESTALE; /* held once, someone else's now: never take it back silently */
        if (l->expires > now && !(dead_holder && streq(l->holder, dead_holder)))
                return 0;       /* another manager's, and alive */
        r = store_exec(st, "UPDATE manager_lease SET holder = ?, token = token + 1, since_at = ?, expires_at = ? WHERE id = 1",
                       "sii", id, now, now + ttl_ms);
        if (r < 0)
                return r;
        snprintf(l->holder, sizeof l->holder, "%s", id);
        l->token++;
        l->since = now;
        l->expires = now + ttl_ms;
        return 0;
}

static int lease_acquire(Store *st, const char *id, int64_t my_token, int64_t ttl_ms, int64_t now, const char *dead_holder,
                         StoreLease *ret) {
        StoreLease l = { 0 };
        int r = store_begin(st);
        if (r < 0)
                return r;
        r = lease_decide(st, id, my_token, ttl_ms, now, dead_holder, &l);
        if (r == -ESTALE) {
                store_rollback(st);
                *ret = l;
                return r;
        }
        r = store_end(st, r);
        if (r < 0)
                return r;
        *ret = l;
        return 0;
}

int store_lease_acquire(Store *st, const char *id, int64_t my_token, int64_t ttl_ms, int64_t now, StoreLease *ret) {
        return lease_acquire(st, id, my_token, ttl_ms, now, NULL, ret);
}

int store_lease_acquire_from(Store *st, const char *id, int64_t ttl_ms, int64_t now, const char *dead_holder, StoreLease *ret) {
        return lease_acquire(st, id, 0, ttl_ms, now, dead_holder, ret);
}

int store_lease_release(Store *st, const char *id, int64_t token) {
        int r = store_exec(st, "UPDATE manager_lease SET expires_at = 0 WHERE id = 1 AND holder = ? AND token = ?", "si", id, token);
        if (r < 0)
                return r;
        return store_changes(st) > 0 ? 0 : -ESTALE;
}

/* ---- fencing ---- */

typedef struct {
        pthread_mutex_t lock;
        char holder[128];
        int64_t token;            /* > 0 checked; < 0 refuse all; 0 none */
        StoreStaleFn stale_fn;
        void *stale_data;
} Fence;

static void *fence_create(void) {
        Fence *f = xcalloc(1, sizeof *f);
        pthread_mutex_init(&f->lock, NULL);
        return f;
}

static void fence_destroy(void *p) {
        Fence *f = p;
        if (!f)
                return;
        pthread_mutex_destroy(&f->lock);
        free(f);
}

static Fence *fence_of(Store *st) {
        return store_clientdata(st, "manager.fence", fence_create, fence_destroy);
}

void store_fence_set(Store *st, const char *holder, int64_t token, StoreStaleFn stale_fn, void *userdata) {
        Fence *f = fence_of(st);
        if (!f)
                return;
        pthread_mutex_lock(&f->lock);
        snprintf(f->holder, sizeof f->holder, "%s", holder ? holder : "");
        f->token = token;
        f->stale_fn = stale_fn;
        f->stale_data = userdata;
        pthread_mutex_unlock(&f->lock);
}

int store_fence_check(Store *st) {
        Fence *f = fence_of(st);
        if (!f)
                return -ENOMEM;
        pthread_mutex_lock(&f->lock);
        char holder[128];
        memcpy(holder, f->holder, sizeof holder);
        int64_t token = f->token;
        StoreStaleFn fn = f->stale_fn;
        void *data = f->stale_data;
        pthread_mutex_unlock(&f->lock);
        if (token == 0)
                return 0;
        int64_t n = 0;
        if (token > 0) {
                int r = store_query_i64(st, &n, "SELECT count(*) FROM manager_lease WHERE id = 1 AND holder = ? AND token = ?",
                                        "si", holder, token);
                if (r < 0)
                        return r;
                if (n > 0)
                        return 0;
                log_warn("the store refused a host-changing step: lease token %lld is stale (another manager holds the lease)",
                         (long long) token);
        }
        if (fn)
                fn(data);
        return -ESTALE;
}

int store_fence_begin(Store *st) {
        int r = store_begin(st);
        if (r < 0)
                return r;
        r = store_fence_check(st);
        if (r < 0)
                store_rollback(st);
        return r;
}

int store_fence_verify(Store *st) {
        int r = store_fence_begin(st);
        return r < 0 ? r : store_end(st, 0);
}
