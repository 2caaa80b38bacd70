/* model: the in-memory read model (model.h). The writer path is on_rows():
 * called by the store after each commit that changed host, VM or group
 * rows; it re-reads those rows (and the rows whose JSON shows them), builds
 * new tables sharing the unchanged rows, and swaps the snapshot. */
#include "model.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct Model {
        Store *st;
        pthread_mutex_t lock;         /* guards cur: held for a pointer copy */
        pthread_mutex_t write_lock;   /* one writer at a time: re-read and swap */
        ModelSnap *cur;
        uint64_t generation;          /* the last generation handed out (write_lock) */
        ModelStats stats;             /* __atomic */
        pthread_t loader;             /* model_new()'s thread while it loads */
        bool loading;
};

/* ------------------------------------------------------------------ */
/* rows and tables */

static ModelRow *row_ref(ModelRow *r) {
        __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
        return r;
}

static void row_unref(ModelRow *r) {
        if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) > 0)
                return;
        json_decref(r->json);
        free(r->text);
        free(r);
}

/* A row from its JSON (stolen). */
static ModelRow *row_new(json_t *j) {
        ModelRow *r = xcalloc(1, sizeof *r);
        r->refs = 1;
        r->json = j;
        r->id = jget_int(j, "id");
        r->name = jget_str(j, "name");
        r->state = jget_str(j, "state");
        r->host_id = jget_int(j, "host_id");
        r->group_id = jget_int(j, "group_id");
        r->owner_id = jget_int(j, "owner_id");
        r->text = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (!r->text)
                r->text = xstrdup("{}");
        r->text_len = strlen(r->text);
        return r;
}

static int cmp_id(const void *a, const void *b) {
        const ModelRow *x = *(ModelRow *const *) a, *y = *(ModelRow *const *) b;
        return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_name(const void *a, const void *b) {
        const ModelRow *x = *(ModelRow *const *) a, *y = *(ModelRow *const *) b;
        int c = strcmp(x->name, y->name);
        return c ? c : cmp_id(a, b);
}

static int cmp_i64(const void *a, const void *b) {
        int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
        return x < y ? -1 : x > y;
}

static void table_unref(ModelTable *t) {
        if (!t || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) > 0)
                return;
        for (size_t i = 0; i < t->n; i++)
                row_unref(t->by_id[i]);
        free(t->by_id);
        free(t->by_name);
        free(t);
}

static ModelTable *table_ref(ModelTable *t) {
        __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
        return t;
}

/* A table of rows (each reference taken over). */
static ModelTable *table_new(ModelRow **rows, size_t n, uint64_t generation) {
        ModelTable *t = xcalloc(1, sizeof *t);
        t->refs = 1;
        t->generation = generation;
        t->n = n;
        t->by_id = rows;
        t->by_name = xmalloc((n ? n : 1) * sizeof *t->by_name);
        memcpy(t->by_name, rows, n * sizeof *rows);
        qsort(t->by_id, n, sizeof *t->by_id, cmp_id);
        qsort(t->by_name, n, sizeof *t->by_name, cmp_name);
        return t;
}

/* A table from the rows of a JSON array (store_*_list). */
static ModelTable *table_from_json(json_t *arr, uint64_t generation) {
        size_t n = json_array_size(arr);
        ModelRow **rows = xmalloc((n ? n : 1) * sizeof *rows);
        for (size_t i = 0; i < n; i++)
                rows[i] = row_new(json_incref(json_array_get(arr, i)));
        return table_new(rows, n, generation);
}

const ModelRow *model_row_find(const ModelTable *t, int64_t id) {
        size_t lo = 0, hi = t->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (t->by_id[mid]->id < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < t->n && t->by_id[lo]->id == id ? t->by_id[lo] : NULL;
}

size_t model_name_after(const ModelTable *t, const char *name) {
        size_t lo = 0, hi = t->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(t->by_name[mid]->name, name) <= 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

size_t model_name_from(const ModelTable *t, const char *name) {
        size_t lo = 0, hi = t->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(t->by_name[mid]->name, name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* A change to apply: the row with id is now row (NULL: gone). */
typedef struct {
        int64_t id;
        ModelRow *row;
} Change;

static bool ids_has(const int64_t *ids, size_t n, int64_t id) {
        return bsearch(&id, ids, n, sizeof *ids, cmp_i64) != NULL;
}

/* The table old with changes (ascending id, each id once) applied: every
 * unchanged row shared, O(n + k log k). */
static ModelTable *table_apply(const ModelTable *old, const Change *c, size_t k, uint64_t generation) {
        ModelTable *t = xcalloc(1, sizeof *t);
        t->refs = 1;
        t->generation = generation;
        size_t cap = old->n + k;
        t->by_id = xmalloc((cap ? cap : 1) * sizeof *t->by_id);
        t->by_name = xmalloc((cap ? cap : 1) * sizeof *t->by_name);
        /* by id: a merge of two sorted lists. */
        size_t i = 0, j = 0, n = 0;
        while (i < old->n || j < k) {
                if (j == k || (i < old->n && old->by_id[i]->id < c[j].id)) {
                        t->by_id[n++] = row_ref(old->by_id[i++]);
                        continue;
                }
                if (i < old->n && old->by_id[i]->id == c[j].id)
                        i++;
                if (c[j].row)
                        t->by_id[n++] = row_ref(c[j].row);
                j++;
        }
        t->n = n;
        /* by name: the old order without the changed ids, merged with the
         * new rows sorted by name. */
        int64_t *ids = xmalloc((k ? k : 1) * sizeof *ids);
        ModelRow **fresh = xmalloc((k ? k : 1) * sizeof *fresh);
        size_t n_fresh = 0;
        for (j = 0; j < k; j++) {
                ids[j] = c[j].id;
                if (c[j].row)
                        fresh[n_fresh++] = c[j].row;
        }
        qsort(fresh, n_fresh, sizeof *fresh, cmp_name);
        size_t f = 0, m = 0;
        for (i = 0; i < old->n; i++) {
                ModelRow *r = old->by_name[i];
                if (ids_has(ids, k, r->id))
                        continue;
                while (f < n_fresh && cmp_name(&fresh[f], &r) < 0)
                        t->by_name[m++] = fresh[f++];
                t->by_name[m++] = r;
        }
        while (f < n_fresh)
                t->by_name[m++] = fresh[f++];
        assert(m == n);
        free(ids);
        free(fresh);
        return t;
}

static void groups_unref(ModelGroups *g) {
        if (!g || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) > 0)
                return;
        free(g->ids);
        free(g->parents);
        free(g);
}

static int groups_load(Store *st, uint64_t generation, ModelGroups **ret) {
        int64_t *ids = NULL, *parents = NULL;
        int n = store_group_parents(st, &ids, &parents);
        if (n < 0)
                return n;
        ModelGroups *g = xcalloc(1, sizeof *g);
        g->refs = 1;
        g->generation = generation;
        g->n = (size_t) n;
        g->ids = ids;
        g->parents = parents;
        *ret = g;
        return 0;
}

size_t model_group_chain(const ModelSnap *s, int64_t group_id, int64_t *chain, size_t max) {
        const ModelGroups *g = s->groups;
        size_t n = 0;
        /* As store_group_chain(): at most 65 steps, then the first max. */
        for (int depth = 0; group_id > 0 && depth <= 64 && n < max; depth++) {
                const int64_t *p = bsearch(&group_id, g->ids, g->n, sizeof *g->ids, cmp_i64);
                if (!p)
                        break;
                chain[n++] = group_id;
                group_id = g->parents[p - g->ids];
        }
        return n;
}

void model_count_states(const ModelTable *t, void (*fn)(void *userdata, const char *state, size_t n), void *userdata) {
        /* Few distinct states: a small array beats a hash. */
        const char *states[64];
        size_t counts[64], n = 0;
        for (size_t i = 0; i < t->n; i++) {
                const char *s = t->by_id[i]->state;
                size_t j = 0;
                while (j < n && !streq(states[j], s))
                        j++;
                if (j == n) {
                        if (n == ELEMENTSOF(states))
                                continue;
                        states[n] = s;
                        counts[n++] = 0;
                }
                counts[j]++;
        }
        /* Name order, for stable output. */
        for (size_t a = 0; a < n; a++)
                for (size_t b = a + 1; b < n; b++)
                        if (strcmp(states[b], states[a]) < 0) {
                                const char *ts = states[a];
                                size_t tc = counts[a];
                                states[a] = states[b];
                                counts[a] = counts[b];
                                states[b] = ts;
                                counts[b] = tc;
                        }
        for (size_t j = 0; j < n; j++)
                fn(userdata, states[j], counts[j]);
}

/* ------------------------------------------------------------------ */
/* snapshots */

ModelSnap *model_snap(Model *m) {
        pthread_mutex_lock(&m->lock);
        ModelSnap *s = m->cur;
        __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&m->lock);
        return s;
}

ModelSnap *model_snap_ref(ModelSnap *s) {
        if (s)
                __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
        return s;
}

ModelSnap *model_snap_unref(ModelSnap *s) {
        if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        table_unref(s->hosts);
        table_unref(s->vms);
        groups_unref(s->groups);
        free(s);
        return NULL;
}

/* Publishes a snapshot of the three (references taken over). */
static void publish(Model *m, ModelTable *hosts, ModelTable *vms, ModelGroups *groups) {
        ModelSnap *s = xcalloc(1, sizeof *s);
        s->refs = 1;
        s->hosts = hosts;
        s->vms = vms;
        s->groups = groups;
        pthread_mutex_lock(&m->lock);
        ModelSnap *old = m->cur;
        m->cur = s;
        pthread_mutex_unlock(&m->lock);
        model_snap_unref(old);
}

/* ------------------------------------------------------------------ */
/* the writer path */

/* A growable, later sorted and deduplicated, list of ids. */
typedef struct {
        int64_t *v;
        size_t n, cap;
} Ids;

static void ids_add(Ids *a, int64_t id) {
        if (id <= 0)
                return;
        if (a->n == a->cap) {
                a->cap = a->cap ? a->cap * 2 : 16;
                a->v = xrealloc(a->v, a->cap * sizeof *a->v);
        }
        a->v[a->n++] = id;
}

static void ids_sort(Ids *a) {
        if (a->n == 0)
                return;
        qsort(a->v, a->n, sizeof *a->v, cmp_i64);
        size_t k = 0;
        for (size_t i = 0; i < a->n; i++)
                if (k == 0 || a->v[k - 1] != a->v[i])
                        a->v[k++] = a->v[i];
        a->n = k;
}

/* Re-reads the rows of ids (sorted) through list: one Change per id, in
 * id order (row NULL when it is gone). 0, or negative (nothing returned). */
static int reread(Model *m, int (*list)(Store *, const int64_t *, size_t, json_t **), const Ids *ids, Change **ret) {
        _cleanup_json_ json_t *arr = NULL;
        int r = list(m->st, ids->v, ids->n, &arr);
        if (r < 0)
                return r;
        Change *c = xcalloc(ids->n ? ids->n : 1, sizeof *c);
        size_t k = 0, n_rows = json_array_size(arr);
        for (size_t i = 0; i < ids->n; i++) {
                c[i].id = ids->v[i];
                json_t *j = k < n_rows ? json_array_get(arr, k) : NULL;
                if (j && jget_int(j, "id") == ids->v[i]) {
                        c[i].row = row_new(json_incref(j));
                        k++;
                }
        }
        __atomic_add_fetch(&m->stats.rows_read, ids->n, __ATOMIC_RELAXED);
        *ret = c;
        return 0;
}

static void changes_free(Change *c, size_t n) {
        for (size_t i = 0; c && i < n; i++)
                row_unref(c[i].row);
        free(c);
}

static int cmp_change(const void *a, const void *b) {
        const Change *x = a, *y = b;
        return x->id < y->id ? -1 : x->id > y->id;
}

/* What one batch of changes does to the model: the new tables (NULL: the
 * table did not change). */
typedef struct {
        ModelGroups *groups;
        Change *vms, *hosts;
        size_t n_vms, n_hosts;
} Batch;

/* Groups: reloaded whole (they are few); the hosts in a changed group
 * show its path, so they are re-read. */
static int batch_groups(Model *m, const ModelSnap *cur, const Ids *groups, Batch *b, Ids *hosts) {
        if (groups->n == 0)
                return 0;
        int r = groups_load(m->st, ++m->generation, &b->groups);
        if (r < 0)
                return r;
        for (size_t i = 0; i < cur->hosts->n; i++)
                if (ids_has(groups->v, groups->n, cur->hosts->by_id[i]->group_id))
                        ids_add(hosts, cur->hosts->by_id[i]->id);
        return 0;
}

/* VMs: re-read; a VM that came, went or moved changes its hosts' VM
 * counts, so they are re-read too. */
static int batch_vms(Model *m, const ModelSnap *cur, const Ids *vms, Batch *b, Ids *hosts) {
        if (vms->n == 0)
                return 0;
        int r = reread(m, store_vm_list_ids, vms, &b->vms);
        if (r < 0)
                return r;
        b->n_vms = vms->n;
        for (size_t i = 0; i < b->n_vms; i++) {
                const ModelRow *old = model_row_find(cur->vms, b->vms[i].id);
                int64_t was = old ? old->host_id : 0, now = b->vms[i].row ? b->vms[i].row->host_id : 0;
                if (was != now) {
                        ids_add(hosts, was);
                        ids_add(hosts, now);
                }
        }
        return 0;
}

/* Hosts: re-read; a host whose name or group changed (or that went)
 * changes the JSON of its VMs, which are re-read too (rare: hosts are not
 * renamed or moved today, but the model does not rely on it). */
static int batch_hosts(Model *m, const ModelSnap *cur, Ids *hosts, Batch *b) {
        ids_sort(hosts);
        if (hosts->n == 0)
                return 0;
        int r = reread(m, store_host_list_ids, hosts, &b->hosts);
        if (r < 0)
                return r;
        b->n_hosts = hosts->n;
        Ids more = {0};
        for (size_t i = 0; i < b->n_hosts; i++) {
                const ModelRow *old = model_row_find(cur->hosts, b->hosts[i].id), *now = b->hosts[i].row;
                if (!old || (now && streq(old->name, now->name) && old->group_id == now->group_id))
                        continue;
                for (size_t v = 0; v < cur->vms->n; v++) {
                        const ModelRow *vm = cur->vms->by_id[v];
                        if (vm->host_id == old->id &&
                            !(b->vms && bsearch(&(Change) { .id = vm->id }, b->vms, b->n_vms, sizeof *b->vms, cmp_change)))
                                ids_add(&more, vm->id);
                }
        }
        if (more.n > 0) {
                ids_sort(&more);
                Change *extra = NULL;
                r = reread(m, store_vm_list_ids, &more, &extra);
                if (r >= 0) {
                        b->vms = xrealloc(b->vms, (b->n_vms + more.n) * sizeof *b->vms);
                        memcpy(b->vms + b->n_vms, extra, more.n * sizeof *extra);
                        b->n_vms += more.n;
                        qsort(b->vms, b->n_vms, sizeof *b->vms, cmp_change);
                        free(extra);
                }
        }
        free(more.v);
        return r;
}

static void on_rows(void *userdata, const StoreRowChange *changes, size_t n) {
        Model *m = userdata;
        /* model_new() loads after hooking: a change its own reads deliver is
         * in what it loads. */
        if (m->loading && pthread_equal(m->loader, pthread_self()))
                return;
        pthread_mutex_lock(&m->write_lock);
        ModelSnap *cur = model_snap(m);
        Ids groups = {0}, hosts = {0}, vms = {0};
        for (size_t i = 0; i < n; i++) {
                if (changes[i].table == STORE_TABLE_HOST_GROUP)
                        ids_add(&groups, changes[i].id);
                else if (changes[i].table == STORE_TABLE_HOST)
                        ids_add(&hosts, changes[i].id);
                else
                        ids_add(&vms, changes[i].id);
        }
        ids_sort(&groups);
        ids_sort(&vms);
        Batch b = {0};
        int r = batch_groups(m, cur, &groups, &b, &hosts);
        if (r >= 0)
                r = batch_vms(m, cur, &vms, &b, &hosts);
        if (r >= 0)
                r = batch_hosts(m, cur, &hosts, &b);
        if (r < 0)
                /* The store logged why; the rows stay as they were until the
                 * next change of them. */
                log_warn("the read model could not re-read %zu changed rows: %s", n, strerror(-r));
        else {
                __atomic_add_fetch(&m->stats.batches, 1, __ATOMIC_RELAXED);
                ModelTable *nh = b.hosts ? table_apply(cur->hosts, b.hosts, b.n_hosts, ++m->generation) : table_ref(cur->hosts);
                ModelTable *nv = b.vms ? table_apply(cur->vms, b.vms, b.n_vms, ++m->generation) : table_ref(cur->vms);
                ModelGroups *ng = b.groups ? steal_ptr(b.groups) : cur->groups;
                if (ng == cur->groups)
                        __atomic_add_fetch(&ng->refs, 1, __ATOMIC_RELAXED);
                publish(m, nh, nv, ng);
        }
        groups_unref(b.groups);
        changes_free(b.vms, b.n_vms);
        changes_free(b.hosts, b.n_hosts);
        free(groups.v);
        free(hosts.v);
        free(vms.v);
        model_snap_unref(cur);
        pthread_mutex_unlock(&m->write_lock);
}

/* ------------------------------------------------------------------ */

static int load(Model *m) {
        _cleanup_json_ json_t *hosts = NULL, *vms = NULL;
        ModelGroups *groups = NULL;
        int r = store_host_list(m->st, NULL, 0, &hosts);
        if (r >= 0)
                r = store_vm_list(m->st, NULL, 0, 0, &vms);
        if (r >= 0)
                r = groups_load(m->st, ++m->generation, &groups);
        if (r < 0)
                return r;
        ModelTable *h = table_from_json(hosts, ++m->generation);
        ModelTable *v = table_from_json(vms, ++m->generation);
        publish(m, h, v, groups);
        return 0;
}

int model_new(Store *st, Model **ret) {
        Model *m = xcalloc(1, sizeof *m);
        m->st = st;
        pthread_mutex_init(&m->lock, NULL);
        pthread_mutex_init(&m->write_lock, NULL);
        /* Hooked first, loaded second, under the writer's lock: a change
         * committed meanwhile waits, then re-reads what it changed. */
        pthread_mutex_lock(&m->write_lock);
        m->loader = pthread_self();
        m->loading = true;
        store_set_rows_hook(st, on_rows, m);
        int r = load(m);
        m->loading = false;
        pthread_mutex_unlock(&m->write_lock);
        if (r < 0) {
                log_error("cannot load the read model of hosts and VMs from the database");
                model_free(m);
                return r;
        }
        *ret = m;
        return 0;
}

Model *model_free(Model *m) {
        if (!m)
                return NULL;
        store_set_rows_hook(m->st, NULL, NULL);
        model_snap_unref(m->cur);
        pthread_mutex_destroy(&m->lock);
        pthread_mutex_destroy(&m->write_lock);
        free(m);
        return NULL;
}

void model_stats(Model *m, ModelStats *ret) {
        ret->batches = __atomic_load_n(&m->stats.batches, __ATOMIC_RELAXED);
        ret->rows_read = __atomic_load_n(&m->stats.rows_read, __ATOMIC_RELAXED);
}

int model_reload(Model *m) {
        pthread_mutex_lock(&m->write_lock);
        m->loader = pthread_self();
        m->loading = true;
        int r = load(m);
        m->loading = false;
        pthread_mutex_unlock(&m->write_lock);
        return r;
}
