/* The monitor capability's operations (see monitor.h): series, the health
 * tree, alerts, alert rules, webhooks, the consolidation assessment and the
 * Prometheus exposition. Each decides one request of the API -- what the
 * caller may see, its rights, the checks that need the database, the write,
 * audit and event -- and fails with an OpError the API maps unchanged. */
#include "monitor.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "util/zip.h"

static bool sees_everything(const OpCaller *c) {
        return c->subj.role == ROLE_ADMIN || c->subj.role == ROLE_READ_ONLY;
}

static const char *who(const OpCaller *c) {
        return c->user_name ? c->user_name : "system";
}

static const char *role(const OpCaller *c) {
        return c->role_name ? c->role_name : "?";
}

/* ---- series ---- */

int monitor_op_series(Store *st, const OpCaller *c, const MonitorSeriesSpec *spec, json_t **ret, OpError *err) {
        bool vm = spec->vm;
        _cleanup_json_ json_t *o = NULL;
        int r = vm ? store_vm_get_json(st, spec->id, &o) : store_host_get_json(st, spec->id, &o);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, vm ? "the VM" : "the host");
        if (o && !(vm ? op_allowed(st, c, ACT_READ, OBJ_VM, jget_int(o, "owner_id"), jget_int(o, "group_id"))
                      : op_allowed(st, c, ACT_READ, OBJ_HOST, 0, jget_int(o, "group_id")))) {
                json_decref(o);
                o = NULL;
        }
        if (!o)
                return op_fail(err, 404, "not_found", NULL, "There is no %s with id %lld.", vm ? "VM" : "host", (long long) spec->id);
        char why[256];
        json_t *body = monitor_series_json(st, vm ? STORE_PERF_VM : STORE_PERF_HOST, spec->id, spec->metric, spec->from, spec->to,
                                           spec->step_ms, NULL, why, sizeof why);
        if (!body)
                return op_fail(err, 400, "invalid_argument", strstr(why, "metric") ? "metric" : "from", "%s", why);
        json_object_set_new(body, "name", json_string(jget_str(o, "name")));
        *ret = body;
        return 0;
}

/* ---- the answers of /health and /metrics ----
 *
 * The newest built answer of each is kept (MonitorAnswer: the /health tree
 * and its bytes, plain and gzip; the /metrics families of the hosts and VMs,
 * plain and as a deflate prefix) and served as it is: a request takes a
 * reference under the lock and sends the bytes without copying them. A
 * request never builds while an answer exists: the builder thread
 * (monitor_answers_start) looks every interval whether what an answer is
 * made of has changed and, if so, builds a new one and swaps it in. Only
 * the first request before any build, and an administrator's ?fresh=1,
 * build on the request path. Builds run one at a time (build_lock). */

typedef enum { ANSWER_HEALTH, ANSWER_METRICS } AnswerKind;

static struct {
        pthread_mutex_t lock;         /* the fields up to build_lock */
        pthread_cond_t wake;
        MonitorAnswer *newest[2];
        uint64_t hits[2], builds[2];
        bool running, stop;
        pthread_t thread;
        Store *st;
        Model *model;
        int64_t interval_ms;
        pthread_mutex_t build_lock;   /* one build at a time; guards the digest memo */
        uint64_t memo_gen[3], memo_digest;
        bool memo_valid;
        ModelSnap *memo_snap;         /* the snapshot the row digests below are of (a reference) */
        uint64_t *memo_host_h, *memo_vm_h;   /* per row of memo_snap's hosts and VMs, by id */
} A = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .build_lock = PTHREAD_MUTEX_INITIALIZER };

/* The counts part of /metrics (monitor_prometheus_counts_text), kept
 * between requests: a scrape loop of a large estate read the job and alert
 * tables on every request. It is read again when the store's counts
 * generation (a committed job, event or alert change) or the monitor's
 * round moved, or when it is MONITOR_ANSWER_INTERVAL_MS old (the changes
 * no generation tells: webhook deliveries, jobs the retention removed). */
static struct {
        pthread_mutex_t lock;
        Store *st;
        uint64_t gen, round;
        int64_t read_mono;
        char *text;
        uint64_t reads;               /* reads of the store, for /metrics itself */
} CNT = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* A host or VM node of a /health answer (monitor_answer_health()). */
struct MonitorHealthRef {
        int64_t id;
        bool vm;
        char *frag;             /* "health":"…","health_reasons":[…] */
        size_t len;
};

MonitorAnswer *monitor_answer_ref(MonitorAnswer *a) {
        if (a)
                __atomic_add_fetch(&a->refs, 1, __ATOMIC_RELAXED);
        return a;
}

MonitorAnswer *monitor_answer_unref(MonitorAnswer *a) {
        if (!a || __atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        for (MonitorView *v = a->views, *next; v; v = next) {
                next = v->next;
                monitor_view_free(v);
        }
        pthread_mutex_destroy(&a->views_lock);
        for (size_t i = 0; i < a->n_index; i++)
                free(a->index[i].frag);
        free(a->index);
        json_decref(a->tree);
        free(a->text);
        free(a->gz);
        free(a);
        return NULL;
}

void monitor_view_free(MonitorView *v) {
        if (!v)
                return;
        free(v->text);
        free(v->gz);
        free(v);
}

static uint64_t host_row_digest(const ModelRow *r) {
        uint64_t h = fnv1a_i64(fnv1a_i64(FNV1A_INIT, r->id), r->group_id);
        h = fnv1a_str(fnv1a_str(h, r->name), r->state);
        h = fnv1a_i64(fnv1a_i64(h, jget_int(r->json, "cpus")), jget_int(r->json, "memory_mib"));
        return fnv1a_str(h, jget_str(r->json, "pool"));
}

static uint64_t vm_row_digest(const ModelRow *r) {
        uint64_t h = fnv1a_i64(fnv1a_i64(fnv1a_i64(FNV1A_INIT, r->id), r->host_id), r->owner_id);
        h = fnv1a_str(fnv1a_str(h, r->name), r->state);
        h = fnv1a_i64(fnv1a_i64(h, jget_int(r->json, "cpus")), jget_int(r->json, "memory_mib"));
        return fnv1a_str(h, jget_str(r->json, "uuid"));
}

/* The digests of t's rows into out[t->n]: a row that is the same row (the
 * same address: the model shares unchanged rows between snapshots, and
 * the memo's reference keeps the old ones alive) as one of prev's takes
 * prev_h's, the others are computed. Both tables ascend by id. */
static void rows_digest(const ModelTable *t, const ModelTable *prev, const uint64_t *prev_h,
                        uint64_t (*digest)(const ModelRow *), uint64_t *out) {
        size_t j = 0;
        for (size_t i = 0; i < t->n; i++) {
                const ModelRow *r = t->by_id[i];
                while (prev && j < prev->n && prev->by_id[j]->id < r->id)
                        j++;
                out[i] = prev && j < prev->n && prev->by_id[j] == r ? prev_h[j] : digest(r);
        }
}

/* A digest of what the answers show of the hosts, VMs and groups of snap:
 * their ids, names, states, places, owners and sizes, not the columns that
 * move without changing either answer (a host's last_seen_at, a VM's
 * updated_at). Remembered per generation, and per row: a quiet refresh
 * replaces one host's row (its last_seen_at), so only that row is read
 * again, not the 21,000 of a large estate. Under build_lock. */
static uint64_t snap_digest(const ModelSnap *snap) {
        uint64_t gen[3] = { snap->hosts->generation, snap->vms->generation, snap->groups->generation };
        if (A.memo_valid && memcmp(gen, A.memo_gen, sizeof gen) == 0)
                return A.memo_digest;
        const ModelSnap *prev = A.memo_snap;
        uint64_t *hh = xmalloc((snap->hosts->n + 1) * sizeof *hh), *vh = xmalloc((snap->vms->n + 1) * sizeof *vh);
        rows_digest(snap->hosts, prev ? prev->hosts : NULL, A.memo_host_h, host_row_digest, hh);
        rows_digest(snap->vms, prev ? prev->vms : NULL, A.memo_vm_h, vm_row_digest, vh);
        uint64_t h = FNV1A_INIT;
        h = fnv1a_i64(h, (int64_t) snap->groups->generation);
        h = fnv1a(h, hh, snap->hosts->n * sizeof *hh);
        h = fnv1a_i64(h, -1);
        h = fnv1a(h, vh, snap->vms->n * sizeof *vh);
        model_snap_unref(A.memo_snap);
        free(A.memo_host_h);
        free(A.memo_vm_h);
        A.memo_snap = model_snap_ref((ModelSnap *) snap);
        A.memo_host_h = hh;
        A.memo_vm_h = vh;
        memcpy(A.memo_gen, gen, sizeof gen);
        A.memo_digest = h;
        A.memo_valid = true;
        return h;
}

/* The key of an answer for snap now: the digest, the store, and the open
 * alerts' stamp (/health) or the monitor's round (/metrics). 0 and *ret, or
 * -EIO. Under build_lock. */
static int answer_key(Store *st, const ModelSnap *snap, AnswerKind kind, uint64_t *ret) {
        uint64_t h = fnv1a(snap_digest(snap), &st, sizeof st);
        if (kind == ANSWER_HEALTH) {
                int64_t stamp[3];
                if (store_alert_open_stamp(st, stamp) < 0)
                        return -EIO;
                h = fnv1a(h, stamp, sizeof stamp);
        } else
                h = fnv1a_i64(h ^ 0x6d, (int64_t) monitor_round_generation());
        *ret = h;
        return 0;
}

static char *dump_answer(const json_t *j, size_t *ret_len) {
        char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
        size_t n = strlen(s);
        s = xrealloc(s, n + 2);
        s[n] = '\n';
        s[n + 1] = 0;
        *ret_len = n + 1;
        return s;
}

/* ---- the health of one row (monitor_answer_health()) ---- */

static int health_ref_cmp(const void *x, const void *y) {
        const struct MonitorHealthRef *a = x, *b = y;
        if (a->vm != b->vm)
                return a->vm ? 1 : -1;
        return a->id < b->id ? -1 : a->id > b->id;
}

/* A JSON string of s (scalars print without the containers' lock). */
static void frag_string(StrBuf *b, const char *s) {
        _cleanup_json_ json_t *j = json_string(s ? s : "");
        _cleanup_free_ char *t = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
        strbuf_append(b, t ? t : "\"\"");
}

static void index_node(const json_t *n, struct MonitorHealthRef **refs, size_t *len, size_t *cap) {
        const char *kind = json_string_value(json_object_get(n, "kind"));
        bool vm = kind && streq(kind, "vm");
        if (vm || (kind && streq(kind, "host"))) {
                StrBuf b = {0};
                strbuf_append(&b, "\"health\":");
                frag_string(&b, json_string_value(json_object_get(n, "health")));
                strbuf_append(&b, ",\"health_reasons\":[");
                size_t i;
                json_t *why;
                json_array_foreach(json_object_get(n, "reasons"), i, why) {
                        if (i)
                                strbuf_append(&b, ",");
                        frag_string(&b, json_string_value(why));
                }
                strbuf_append(&b, "]");
                if (*len == *cap) {
                        *cap = *cap ? 2 * *cap : 1024;
                        *refs = xrealloc(*refs, *cap * sizeof **refs);
                }
                size_t flen = b.len;
                (*refs)[(*len)++] = (struct MonitorHealthRef) { json_integer_value(json_object_get(n, "id")), vm, strbuf_steal(&b), flen };
        }
        size_t i;
        json_t *k;
        json_array_foreach(json_object_get(n, "children"), i, k)
                index_node(k, refs, len, cap);
}

/* The answer's index of host and VM nodes, sorted by (kind, id). */
static void health_index(MonitorAnswer *a) {
        size_t cap = 0;
        index_node(a->tree, &a->index, &a->n_index, &cap);
        if (a->n_index)
                qsort(a->index, a->n_index, sizeof *a->index, health_ref_cmp);
}

const char *monitor_answer_health(const MonitorAnswer *a, bool vm, int64_t id, size_t *ret_len) {
        struct MonitorHealthRef key = { .id = id, .vm = vm };
        const struct MonitorHealthRef *r = a && a->n_index ? bsearch(&key, a->index, a->n_index, sizeof *a->index, health_ref_cmp) : NULL;
        if (!r)
                return NULL;
        *ret_len = r->len;
        return r->frag;
}

/* Builds one answer from snap (NULL on a database error). */
static MonitorAnswer *answer_build(Store *st, const ModelSnap *snap, AnswerKind kind, uint64_t key) {
        MonitorAnswer *a = xcalloc(1, sizeof *a);
        *a = (MonitorAnswer) { .refs = 1, .built_at = now_ms(), .built_mono = mono_ms(), .key = key };
        pthread_mutex_init(&a->views_lock, NULL);
        if (kind == ANSWER_HEALTH) {
                a->tree = monitor_health_json_from(st, snap);
                if (!a->tree)
                        return monitor_answer_unref(a);
                char ts[32];
                time_format(a->built_at, ts);
                json_object_set_new(a->tree, "generated_at", json_string(ts));
                health_index(a);
                a->text = dump_answer(a->tree, &a->len);
                if (zip_deflate(a->text, a->len, 15 + 16, Z_FINISH, &a->gz, &a->gz_len) < 0)
                        a->gz = NULL;
        } else {
                a->text = monitor_prometheus_objects_text(st, snap);
                if (!a->text)
                        return monitor_answer_unref(a);
                a->len = strlen(a->text);
                a->crc = (uint32_t) crc32(crc32(0, Z_NULL, 0), (const Bytef *) a->text, (uInt) a->len);
                if (zip_deflate(a->text, a->len, -15, Z_SYNC_FLUSH, &a->gz, &a->gz_len) < 0)
                        a->gz = NULL;
        }
        snprintf(a->etag, sizeof a->etag, "W/\"%c%016llx.%llx\"", kind == ANSWER_HEALTH ? 'h' : 'm', (unsigned long long) key,
                 (unsigned long long) a->built_at);
        return a;
}

/* Swaps a in as the newest answer of kind (takes a's reference). */
static void answer_publish(AnswerKind kind, MonitorAnswer *a) {
        pthread_mutex_lock(&A.lock);
        MonitorAnswer *old = A.newest[kind];
        A.newest[kind] = a;
        A.builds[kind]++;
        pthread_mutex_unlock(&A.lock);
        monitor_answer_unref(old);
}

/* The newest answer of kind (a reference), or NULL; counts a hit when one is
 * there and count_hit. */
static MonitorAnswer *answer_newest(AnswerKind kind, bool count_hit) {
        pthread_mutex_lock(&A.lock);
        MonitorAnswer *a = monitor_answer_ref(A.newest[kind]);
        if (a && count_hit)
                A.hits[kind]++;
        pthread_mutex_unlock(&A.lock);
        return a;
}

/* Under build_lock: builds and publishes kind's answer unless the newest is
 * for the same key (and, when not_before >= 0, built at or after that
 * monotonic time). 1 built, 0 not needed, -EIO. */
static int answer_refresh_locked(Store *st, const ModelSnap *snap, AnswerKind kind, int64_t not_before) {
        uint64_t key;
        if (answer_key(st, snap, kind, &key) < 0)
                return -EIO;
        _cleanup_(monitor_answer_unrefp) MonitorAnswer *cur = answer_newest(kind, false);
        if (cur && cur->key == key && cur->built_mono >= not_before)
                return 0;
        MonitorAnswer *a = answer_build(st, snap, kind, key);
        if (!a)
                return -EIO;
        answer_publish(kind, a);
        return 1;
}

/* The answer a request gets: the newest; when there is none yet (or fresh
 * asks for one built after t0), built now. A request that waited for
 * another's build takes that one. 0 and *ret, or -EIO. */
static int answer_get(Store *st, const ModelSnap *snap, AnswerKind kind, bool fresh, MonitorAnswer **ret) {
        int64_t t0 = mono_ms();
        if (!fresh) {
                MonitorAnswer *a = answer_newest(kind, true);
                if (a) {
                        *ret = a;
                        return 0;
                }
        }
        if (!snap)
                return -EIO;
        pthread_mutex_lock(&A.build_lock);
        MonitorAnswer *a = answer_newest(kind, false);
        if (!a || (fresh && a->built_mono < t0)) {
                monitor_answer_unref(a);
                a = NULL;
                int r = answer_refresh_locked(st, snap, kind, fresh ? t0 : INT64_MIN);
                if (r >= 0)
                        a = answer_newest(kind, r == 0);
        } else
                A.hits[kind]++;
        pthread_mutex_unlock(&A.build_lock);
        if (!a)
                return -EIO;
        *ret = a;
        return 0;
}

unsigned monitor_answers_step(Store *st, const ModelSnap *snap) {
        unsigned built = 0;
        if (!snap)
                return 0;
        pthread_mutex_lock(&A.build_lock);
        if (answer_refresh_locked(st, snap, ANSWER_HEALTH, INT64_MIN) > 0)
                built |= 1u << ANSWER_HEALTH;
        if (answer_refresh_locked(st, snap, ANSWER_METRICS, INT64_MIN) > 0)
                built |= 1u << ANSWER_METRICS;
        pthread_mutex_unlock(&A.build_lock);
        return built;
}

void monitor_answers_warm(Store *st, const ModelSnap *snap) {
        pthread_mutex_lock(&A.lock);
        bool running = A.running;
        pthread_mutex_unlock(&A.lock);
        if (!running)   /* no builder: refill now, as before it existed */
                (void) monitor_answers_step(st, snap);
}

static void *builder_main(void *userdata) {
        (void) userdata;
        /* Below the request threads: on a busy machine a build waits, not a
         * request (an answer is then a little older; its age says so). */
        (void) setpriority(PRIO_PROCESS, (id_t) syscall(SYS_gettid), 10);
        pthread_mutex_lock(&A.lock);
        int64_t last = INT64_MIN / 2;
        while (!A.stop) {
                /* A step every interval after the last one's start: the
                 * changes in between are all taken by that one step. */
                int64_t now = mono_ms(), next = last + A.interval_ms;
                if (now < next) {
                        struct timespec ts = time_after_ms(CLOCK_MONOTONIC, next - now);
                        pthread_cond_timedwait(&A.wake, &A.lock, &ts);
                        continue;
                }
                last = now;
                Store *st = A.st;
                Model *model = A.model;
                pthread_mutex_unlock(&A.lock);
                ModelSnap *snap = model_snap(model);
                (void) monitor_answers_step(st, snap);
                model_snap_unref(snap);
                pthread_mutex_lock(&A.lock);
        }
        pthread_mutex_unlock(&A.lock);
        return NULL;
}

int monitor_answers_start(Store *st, Model *model, int64_t interval_ms) {
        pthread_mutex_lock(&A.lock);
        if (A.running) {
                pthread_mutex_unlock(&A.lock);
                return -EALREADY;
        }
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_destroy(&A.wake);
        pthread_cond_init(&A.wake, &ca);
        pthread_condattr_destroy(&ca);
        A.st = st;
        A.model = model;
        A.interval_ms = interval_ms > 0 ? interval_ms : MONITOR_ANSWER_INTERVAL_MS;
        A.stop = false;
        int r = -pthread_create(&A.thread, NULL, builder_main, NULL);
        A.running = r == 0;
        pthread_mutex_unlock(&A.lock);
        return r;
}

void monitor_answers_stop(void) {
        pthread_mutex_lock(&A.lock);
        if (A.running) {
                A.stop = true;
                pthread_cond_broadcast(&A.wake);
                pthread_mutex_unlock(&A.lock);
                pthread_join(A.thread, NULL);
                pthread_mutex_lock(&A.lock);
        }
        A.running = false;
        MonitorAnswer *old[2] = { A.newest[0], A.newest[1] };
        A.newest[0] = A.newest[1] = NULL;
        A.st = NULL;
        A.model = NULL;
        pthread_mutex_unlock(&A.lock);
        pthread_mutex_lock(&A.build_lock);
        A.memo_valid = false;
        A.memo_snap = model_snap_unref(A.memo_snap);
        free(A.memo_host_h);
        free(A.memo_vm_h);
        A.memo_host_h = A.memo_vm_h = NULL;
        pthread_mutex_unlock(&A.build_lock);
        monitor_answer_unref(old[0]);
        monitor_answer_unref(old[1]);
        pthread_mutex_lock(&CNT.lock);
        free(CNT.text);
        CNT.text = NULL;
        CNT.st = NULL;
        pthread_mutex_unlock(&CNT.lock);
}

/* ---- health ---- */

/* What a caller who does not see everything may read of the tree; the
 * decisions are remembered per (kind, owner, group): a delegated
 * administrator's group chain is one query per group, not per node. */
#define VIS_MEMO 512
typedef struct {
        Store *st;
        const OpCaller *c;
        size_t n;
        struct { int kind; int64_t owner, group; bool ok; } memo[VIS_MEMO];
} Vis;

static bool vis_allowed(Vis *v, AuthObjectKind k, int64_t owner, int64_t group) {
        for (size_t i = 0; i < v->n; i++)
                if (v->memo[i].kind == (int) k && v->memo[i].owner == owner && v->memo[i].group == group)
                        return v->memo[i].ok;
        bool ok = op_allowed(v->st, v->c, ACT_READ, k, owner, group);
        if (v->n < VIS_MEMO)
                v->memo[v->n++] = (typeof(v->memo[0])) { (int) k, owner, group, ok };
        return ok;
}

/* host_group: the group of the host n's VMs are under. */
static bool node_visible(Vis *v, const json_t *n, int64_t host_group) {
        const char *kind = jget_str(n, "kind");
        if (streq(kind, "group"))
                return vis_allowed(v, OBJ_GROUP, 0, jget_int(n, "id"));
        if (streq(kind, "host"))
                return vis_allowed(v, OBJ_HOST, 0, jget_int(n, "group_id"));
        if (streq(kind, "vm"))
                return vis_allowed(v, OBJ_VM, jget_int(n, "owner_id"), host_group);
        return false;
}

/* The visible nodes of n's subtree: n itself with its visible children, or
 * (n hidden) its visible descendants lifted up. The shared tree is never
 * changed: a visible node is a shallow copy with its own children array. */
static void visible_nodes(Vis *v, json_t *n, json_t *out, int64_t host_group) {
        json_t *kids = json_array();
        size_t i;
        json_t *k;
        bool host = streq(jget_str(n, "kind"), "host");
        json_array_foreach(json_object_get(n, "children"), i, k)
                visible_nodes(v, k, kids, host ? jget_int(n, "group_id") : 0);
        if (node_visible(v, n, host_group)) {
                json_t *copy = json_copy(n);
                json_object_set_new(copy, "children", kids);
                json_array_append_new(out, copy);
        } else {
                json_array_extend(out, kids);
                json_decref(kids);
        }
}

/* What a caller who does not see everything sees of the (shared) tree:
 * only the visible nodes are copied, shallowly. */
static json_t *health_filtered(Store *st, const OpCaller *c, json_t *tree) {
        _cleanup_free_ Vis *v = xcalloc(1, sizeof *v);
        v->st = st;
        v->c = c;
        json_t *vis = json_array();
        visible_nodes(v, tree, vis, 0);
        json_t *out;
        if (json_array_size(vis) == 1) {
                out = json_incref(json_array_get(vis, 0));
                json_decref(vis);
        } else
                out = json_pack("{s:s, s:n, s:s, s:s, s:[], s:o}", "kind", "view", "id", "name", "what you may see", "health", "healthy",
                                "reasons", "children", vis);
        json_object_set(out, "generated_at", json_object_get(tree, "generated_at"));
        return out;
}

int monitor_op_health_answer(Store *st, const ModelSnap *snap, const OpCaller *c, bool fresh, MonitorHealthReply *ret, OpError *err) {
        if (fresh && c->subj.role != ROLE_ADMIN)
                return op_fail(err, 403, "forbidden", "fresh", "Only administrators may ask for a health answer built for the request"
                               " (fresh=1); without it the answer is at most a few seconds old (see generated_at).");
        MonitorAnswer *a = NULL;
        if (answer_get(st, snap, ANSWER_HEALTH, fresh, &a) < 0)
                return op_fail(err, 500, "internal", NULL, "A database error occurred while computing health.");
        *ret = (MonitorHealthReply) { .answer = a, .whole = sees_everything(c) };
        if (ret->whole) {
                snprintf(ret->etag, sizeof ret->etag, "%s", a->etag);
                return 0;
        }
        /* The caller's view: the answer's and who asks (their view differs). */
        uint64_t h = fnv1a_str(FNV1A_INIT, a->etag);
        int64_t who[3] = { c->user_id, c->subj.role, (int64_t) c->subj.n_scopes };
        h = fnv1a(h, who, sizeof who);
        h = fnv1a(h, c->subj.scopes, c->subj.n_scopes * sizeof *c->subj.scopes);
        snprintf(ret->etag, sizeof ret->etag, "W/\"v%016llx\"", (unsigned long long) h);
        return 0;
}

#define VIEWS_MAX 16

static MonitorView *view_find(MonitorAnswer *a, const char *etag) {
        for (MonitorView *v = a->views; v; v = v->next)
                if (streq(v->etag, etag))
                        return v;
        return NULL;
}

const MonitorView *monitor_health_view(Store *st, const OpCaller *c, const MonitorHealthReply *rep, MonitorView **ret_owned) {
        MonitorAnswer *a = rep->answer;
        *ret_owned = NULL;
        pthread_mutex_lock(&a->views_lock);
        MonitorView *v = view_find(a, rep->etag);
        pthread_mutex_unlock(&a->views_lock);
        if (v)
                return v;
        /* Built outside the lock: two callers of one scope at once may both
         * build it; the first one kept wins. */
        _cleanup_json_ json_t *vis = health_filtered(st, c, a->tree);
        v = xcalloc(1, sizeof *v);
        snprintf(v->etag, sizeof v->etag, "%s", rep->etag);
        v->text = dump_answer(vis, &v->len);
        if (v->len > 1024 && zip_deflate(v->text, v->len, 15 + 16, Z_FINISH, &v->gz, &v->gz_len) < 0)
                v->gz = NULL;
        pthread_mutex_lock(&a->views_lock);
        MonitorView *other = view_find(a, rep->etag);
        bool keep = !other && a->n_views < VIEWS_MAX && a->views_bytes + v->len + v->gz_len <= 2 * a->len + 65536;
        if (keep) {
                v->next = a->views;
                a->views = v;
                a->n_views++;
                a->views_bytes += v->len + v->gz_len;
        }
        pthread_mutex_unlock(&a->views_lock);
        if (other) {
                monitor_view_free(v);
                return other;
        }
        if (!keep)
                *ret_owned = v;
        return v;
}

int monitor_op_health(Store *st, const ModelSnap *snap, const OpCaller *c, json_t **ret, OpError *err) {
        MonitorHealthReply rep;
        int r = monitor_op_health_answer(st, snap, c, false, &rep, err);
        if (r < 0)
                return r;
        *ret = rep.whole ? json_deep_copy(rep.answer->tree) : health_filtered(st, c, rep.answer->tree);
        monitor_answer_unref(rep.answer);
        return 0;
}

/* ---- alerts ---- */

static bool alert_visible(Store *st, const OpCaller *c, json_t *a, AuthAction act) {
        if (act == ACT_READ && sees_everything(c))
                return true;
        const char *kind = jget_str(a, "object_kind");
        if (streq(kind, "job")) {
                /* A stuck job's alert: for those who see every job, and the
                 * job's owner (acknowledging takes an administrator). */
                if (c->subj.role == ROLE_ADMIN)
                        return true;
                _cleanup_json_ json_t *job = NULL;
                if (act == ACT_READ) /* a database error (logged) hides it */
                        (void) store_job_get_json(st, jget_int(a, "object_id"), &job);
                return job && c->user_id > 0 && jget_int(job, "owner_id") == c->user_id;
        }
        bool vm = streq(kind, "vm");
        _cleanup_json_ json_t *o = NULL;
        /* Gone, or a database error (logged): for administrators only. */
        (void) (vm ? store_vm_get_json(st, jget_int(a, "object_id"), &o) : store_host_get_json(st, jget_int(a, "object_id"), &o));
        if (!o)
                return c->subj.role == ROLE_ADMIN;
        return vm ? op_allowed(st, c, act, OBJ_VM, jget_int(o, "owner_id"), jget_int(o, "group_id"))
                  : op_allowed(st, c, act, OBJ_HOST, 0, jget_int(o, "group_id"));
}

int monitor_op_alert_list(Store *st, const OpCaller *c, const char *state, int limit, json_t **ret, OpError *err) {
        json_t *arr = NULL;
        if (store_alert_list_json(st, state, limit, &arr) < 0)
                return op_fail(err, 500, "internal", NULL, "A database error occurred while listing alerts.");
        json_t *out = json_array();
        size_t i;
        json_t *a;
        json_array_foreach(arr, i, a)
                if (alert_visible(st, c, a, ACT_READ))
                        json_array_append(out, a);
        json_decref(arr);
        *ret = json_pack("{s:o}", "items", out);
        return 0;
}

int monitor_op_alert_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        json_t *a = NULL;
        int r = store_alert_get_json(st, id, &a);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the alert");
        if (a && !alert_visible(st, c, a, ACT_READ)) {
                json_decref(a);
                a = NULL;
        }
        if (!a)
                return op_fail(err, 404, "not_found", NULL, "There is no alert with id %lld.", (long long) id);
        *ret = a;
        return 0;
}

int monitor_op_alert_ack(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *a = NULL;
        int e = monitor_op_alert_get(st, c, id, &a, err);
        if (e < 0)
                return e;
        if (!alert_visible(st, c, a, ACT_OPERATE))
                return op_deny(st, c, err, "acknowledge", "alert", id, NULL);
        e = store_alert_ack(st, id, who(c), now_ms());
        if (e == -EALREADY)
                return op_fail(err, 409, "conflict", NULL, "Alert %lld was already acknowledged by '%s'.", (long long) id,
                               jget_str(a, "acknowledged_by"));
        if (e < 0)
                return op_fail_store(err, e, "The alert");
        _cleanup_free_ char *msg = xasprintf("Alert %lld (%s) was acknowledged by '%s'.", (long long) id, jget_str(a, "rule_name"), who(c));
        (void) store_event_add(st, "info", "alert.acknowledged", jget_str(a, "object_kind"), jget_int(a, "object_id"),
                               jget_str(a, "object_name"), 0, msg);
        op_audit(st, c, "alert.acknowledge", "alert", id, jget_str(a, "rule_name"), NULL, "ok");
        e = store_alert_get_json(st, id, ret);
        return e < 0 ? op_fail_store(err, e, "The alert") : 0;
}

/* ---- alert rules ---- */

static bool one_of(const char *s, const char *const *words) {
        for (; *words; words++)
                if (streq(s, *words))
                        return true;
        return false;
}

/* Applies patch p onto *rule (what p leaves out keeps its value). */
static void rule_apply(StoreAlertRule *rule, const MonitorRulePatch *p) {
        if (p->has_threshold)
                rule->threshold = p->threshold;
        if (p->name) snprintf(rule->name, sizeof rule->name, "%s", p->name);
        if (p->object_kind) snprintf(rule->object_kind, sizeof rule->object_kind, "%s", p->object_kind);
        if (p->metric) snprintf(rule->metric, sizeof rule->metric, "%s", p->metric);
        if (p->comparison) snprintf(rule->comparison, sizeof rule->comparison, "%s", p->comparison);
        if (p->state) snprintf(rule->state_value, sizeof rule->state_value, "%s", p->state);
        if (p->severity) snprintf(rule->severity, sizeof rule->severity, "%s", p->severity);
        if (p->scope) snprintf(rule->scope, sizeof rule->scope, "%s", p->scope);
        if (!rule->severity[0]) snprintf(rule->severity, sizeof rule->severity, "warning");
        if (!rule->scope[0]) snprintf(rule->scope, sizeof rule->scope, "all");
        if (p->duration_s >= 0)
                rule->duration_s = p->duration_s;
        if (p->scope_id >= 0)
                rule->scope_id = p->scope_id;
        if (p->enabled >= 0)
                rule->enabled = p->enabled;
}

/* What object_kind, metric, comparison and state of a rule may be. */
static int rule_check_condition(const StoreAlertRule *rule, bool has_threshold, OpError *err) {
        static const char *const KINDS[] = { "host", "vm", NULL };
        static const char *const VM_STATES[] = { "running", "paused", "stopped", "crashed", "shutting-down", "suspended",
                                                 "unknown", "missing", "creating", "deleting", NULL };
        static const char *const HOST_STATES[] = { "ok", "connecting", "maintenance", "unreachable", "failed", "fenced",
                                                   "duplicate", "not-responding", NULL };
        if (!one_of(rule->object_kind, KINDS))
                return op_fail(err, 400, "invalid_argument", "object_kind", "Field 'object_kind' must be 'host' or 'vm'%s%s%s.",
                               rule->object_kind[0] ? ", not '" : "", rule->object_kind, rule->object_kind[0] ? "'" : "");
        StorePerfMetric pm;
        bool is_state = streq(rule->metric, "state");
        if (!is_state && (store_perf_metric_parse(rule->metric, &pm) < 0 ||
                          (streq(rule->object_kind, "vm") && pm == STORE_PERF_POOL_PCT)))
                return op_fail(err, 400, "invalid_argument", "metric", "Field 'metric' must be 'state' or one of cpu, memory, memory_pct,"
                               " disk_read, disk_write, disk_iops, net_rx, net_tx%s; '%s' is not.",
                               streq(rule->object_kind, "host") ? ", pool_pct" : "", rule->metric);
        MonCmp cmp;
        if (mon_cmp_parse(rule->comparison, &cmp) < 0 || (is_state && cmp != MON_CMP_EQ && cmp != MON_CMP_NE))
                return op_fail(err, 400, "invalid_argument", "comparison", is_state
                               ? "Field 'comparison' of a state rule must be '==' or '!=', not '%s'."
                               : "Field 'comparison' must be one of >, >=, <, <=, ==, !=; not '%s'.", rule->comparison);
        if (is_state && !one_of(rule->state_value, streq(rule->object_kind, "vm") ? VM_STATES : HOST_STATES))
                return op_fail(err, 400, "invalid_argument", "state", "Field 'state' must be a %s state such as '%s'; '%s' is not one.",
                               rule->object_kind, streq(rule->object_kind, "vm") ? "crashed" : "unreachable", rule->state_value);
        if (!is_state && !has_threshold && !rule->id)
                return op_fail(err, 400, "invalid_argument", "threshold", "Field 'threshold' is required for a rule on metric '%s'.",
                               rule->metric);
        return 0;
}

/* Applies p onto *rule and checks the result, the scope's target included. */
static int rule_patch(Store *st, StoreAlertRule *rule, const MonitorRulePatch *p, OpError *err) {
        static const char *const SEVERITIES[] = { "info", "warning", "critical", NULL };
        static const char *const SCOPES[] = { "all", "group", "object", NULL };
        rule_apply(rule, p);
        int e = rule_check_condition(rule, p->has_threshold, err);
        if (e < 0)
                return e;
        if (!one_of(rule->severity, SEVERITIES))
                return op_fail(err, 400, "invalid_argument", "severity", "Field 'severity' must be info, warning or critical, not '%s'.",
                               rule->severity);
        if (!one_of(rule->scope, SCOPES))
                return op_fail(err, 400, "invalid_argument", "scope", "Field 'scope' must be all, group or object, not '%s'.", rule->scope);
        if (streq(rule->scope, "all")) {
                rule->scope_id = 0;
                return 0;
        }
        json_t *target = NULL;
        int r = streq(rule->scope, "group") ? store_group_get(st, rule->scope_id, &target)
                : streq(rule->object_kind, "vm") ? store_vm_get_json(st, rule->scope_id, &target)
                : store_host_get_json(st, rule->scope_id, &target);
        json_decref(target);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the alert rule's scope");
        if (r < 0)
                return op_fail(err, 422, "not_found", "scope_id", "Field 'scope_id' must name an existing %s; there is none with id %lld.",
                               streq(rule->scope, "group") ? "host group" : rule->object_kind, (long long) rule->scope_id);
        return 0;
}

static int may_read_rules(const OpCaller *c, OpError *err) {
        if (sees_everything(c))
                return 0;
        return op_fail(err, 403, "forbidden", NULL, "User '%s' (%s) may not read alert rules.", who(c), role(c));
}

int monitor_op_rule_list(Store *st, const OpCaller *c, json_t **ret, OpError *err) {
        int e = may_read_rules(c, err);
        if (e < 0)
                return e;
        json_t *arr = NULL;
        if (store_alert_rule_list_json(st, &arr) < 0)
                return op_fail(err, 500, "internal", NULL, "A database error occurred while listing alert rules.");
        *ret = json_pack("{s:o}", "items", arr);
        return 0;
}

int monitor_op_rule_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        int e = may_read_rules(c, err);
        if (e < 0)
                return e;
        e = store_alert_rule_get_json(st, id, ret);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no alert rule with id %lld.", (long long) id);
        return e < 0 ? op_fail_store(err, e, "The alert rule") : 0;
}

int monitor_op_rule_create(Store *st, const OpCaller *c, const MonitorRulePatch *p, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_CREATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "create", "alert rule", 0, NULL);
        StoreAlertRule rule = { .enabled = true };
        int e = rule_patch(st, &rule, p, err);
        if (e < 0)
                return e;
        int64_t id;
        e = store_alert_rule_insert(st, &rule, p->has_description ? p->description : NULL, &id);
        if (e == -EEXIST)
                return op_fail(err, 409, "conflict", "name", "An alert rule named '%s' already exists.", rule.name);
        if (e < 0)
                return op_fail_store(err, e, "The alert rule");
        op_audit(st, c, "alert-rule.create", "alert-rule", id, rule.name, NULL, "ok");
        e = store_alert_rule_get_json(st, id, ret);
        return e < 0 ? op_fail_store(err, e, "The alert rule") : 0;
}

int monitor_op_rule_update(Store *st, const OpCaller *c, int64_t id, const MonitorRulePatch *p, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "change", "alert rule", id, NULL);
        StoreAlertRule rule;
        _cleanup_json_ json_t *old = NULL;
        int e = store_alert_rule_get(st, id, &rule);
        if (e >= 0)
                e = store_alert_rule_get_json(st, id, &old);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no alert rule with id %lld.", (long long) id);
        if (e < 0)
                return op_fail_store(err, e, "The alert rule");
        const char *description = p->has_description ? p->description : jget_str(old, "description");
        e = rule_patch(st, &rule, p, err);
        if (e < 0)
                return e;
        e = store_alert_rule_update(st, &rule, description);
        if (e == -EEXIST)
                return op_fail(err, 409, "conflict", "name", "An alert rule named '%s' already exists.", rule.name);
        if (e < 0)
                return op_fail_store(err, e, "The alert rule");
        op_audit(st, c, "alert-rule.update", "alert-rule", rule.id, rule.name, NULL, "ok");
        e = store_alert_rule_get_json(st, rule.id, ret);
        return e < 0 ? op_fail_store(err, e, "The alert rule") : 0;
}

int monitor_op_rule_delete(Store *st, const OpCaller *c, int64_t id, OpError *err) {
        if (!op_allowed(st, c, ACT_DELETE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "delete", "alert rule", id, NULL);
        StoreAlertRule rule;
        int e = store_alert_rule_get(st, id, &rule);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no alert rule with id %lld.", (long long) id);
        if (e < 0)
                return op_fail_store(err, e, "The alert rule");
        if (rule.builtin)
                return op_fail(err, 409, "conflict", NULL, "Alert rule '%s' is built in and cannot be deleted; disable it instead"
                               " (PATCH with \"enabled\": false).", rule.name);
        e = store_alert_rule_delete(st, id);
        if (e < 0)
                return op_fail_store(err, e, "The alert rule");
        op_audit(st, c, "alert-rule.delete", "alert-rule", rule.id, rule.name, NULL, "ok");
        return 0;
}

/* ---- webhooks ---- */

/* An http:// or https:// URL without spaces or control characters. */
static int url_check(const char *field, const char *url, OpError *err) {
        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
                return op_fail(err, 400, "invalid_argument", field, "Field '%s' must be an http:// or https:// URL; '%.200s' is not.",
                               field, url);
        for (const char *p = url; *p; p++)
                if (*p <= ' ')
                        return op_fail(err, 400, "invalid_argument", field, "Field '%s' must not contain spaces or control characters.",
                                       field);
        return 0;
}

int monitor_op_webhook_list(Store *st, const OpCaller *c, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_READ, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "list", "webhooks", 0, NULL);
        json_t *arr = NULL;
        if (store_webhook_list_json(st, &arr) < 0)
                return op_fail(err, 500, "internal", NULL, "A database error occurred while listing webhooks.");
        *ret = json_pack("{s:o}", "items", arr);
        return 0;
}

int monitor_op_webhook_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_READ, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "read", "webhook", id, NULL);
        int e = store_webhook_get_json(st, id, ret);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no webhook with id %lld.", (long long) id);
        return e < 0 ? op_fail_store(err, e, "The webhook") : 0;
}

int monitor_op_webhook_create(Store *st, const OpCaller *c, const char *url, const char *description, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_CREATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "create", "webhook", 0, NULL);
        int e = url_check("url", url, err);
        if (e < 0)
                return e;
        int64_t id;
        e = store_webhook_insert(st, url, description, &id);
        if (e == -EEXIST)
                return op_fail(err, 409, "conflict", "url", "A webhook for '%.200s' already exists.", url);
        if (e < 0)
                return op_fail_store(err, e, "The webhook");
        op_audit(st, c, "webhook.create", "webhook", id, NULL, url, "ok");
        e = store_webhook_get_json(st, id, ret);
        return e < 0 ? op_fail_store(err, e, "The webhook") : 0;
}

int monitor_op_webhook_delete(Store *st, const OpCaller *c, int64_t id, OpError *err) {
        if (!op_allowed(st, c, ACT_DELETE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "delete", "webhook", id, NULL);
        int e = store_webhook_delete(st, id);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no webhook with id %lld.", (long long) id);
        if (e < 0)
                return op_fail_store(err, e, "The webhook");
        op_audit(st, c, "webhook.delete", "webhook", id, NULL, NULL, "ok");
        return 0;
}

/* ---- consolidation assessment ---- */

static int may_read_assessment(const OpCaller *c, OpError *err) {
        if (sees_everything(c))
                return 0;
        return op_fail(err, 403, "forbidden", NULL, "User '%s' (%s) may not read the assessment.", who(c), role(c));
}

int monitor_op_assess_list(Store *st, const OpCaller *c, json_t **ret, OpError *err) {
        int e = may_read_assessment(c, err);
        if (e < 0)
                return e;
        json_t *arr = NULL;
        if (store_assess_list_json(st, &arr) < 0)
                return op_fail(err, 500, "internal", NULL, "A database error occurred while listing the assessment.");
        *ret = json_pack("{s:o}", "items", arr);
        return 0;
}

int monitor_op_assess_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        int e = may_read_assessment(c, err);
        if (e < 0)
                return e;
        e = store_assess_get_json(st, id, ret);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no assessed server with id %lld.", (long long) id);
        return e < 0 ? op_fail_store(err, e, "The assessed server") : 0;
}

int monitor_op_assess_create(Store *st, const OpCaller *c, const char *name, const char *node_exporter, const char *ssh,
                             json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_CREATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "add", "server to the assessment", 0, NULL);
        const char *url = node_exporter;
        if (ssh)
                return op_fail(err, 422, "unsupported", "ssh", "Sampling over ssh is not supported yet; run node_exporter on '%s'"
                               " and give its URL in 'node_exporter'.", name);
        if (!url)
                return op_fail(err, 400, "invalid_argument", "node_exporter", "Field 'node_exporter' is required: the URL of"
                               " node_exporter's metrics on '%s', such as http://%s:9100/metrics.", name, name);
        int e = url_check("node_exporter", url, err);
        if (e < 0)
                return e;
        /* node_exporter serves /metrics; accept its base URL too. */
        _cleanup_free_ char *full = NULL;
        const char *after = strstr(url, "://") + 3;
        if (!strchr(after, '/'))
                full = xasprintf("%s/metrics", url);
        int64_t id;
        e = store_assess_insert(st, name, full ? full : url, &id);
        if (e == -EEXIST)
                return op_fail(err, 409, "conflict", "name", "Server '%s' is already in the assessment.", name);
        if (e < 0)
                return op_fail_store(err, e, "The assessed server");
        op_audit(st, c, "assessment.add", "assess-server", id, name, full ? full : url, "ok");
        e = store_assess_get_json(st, id, ret);
        return e < 0 ? op_fail_store(err, e, "The assessed server") : 0;
}

int monitor_op_assess_delete(Store *st, const OpCaller *c, int64_t id, OpError *err) {
        if (!op_allowed(st, c, ACT_DELETE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "remove", "server from the assessment", id, NULL);
        int e = store_assess_delete(st, id);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no assessed server with id %lld.", (long long) id);
        if (e < 0)
                return op_fail_store(err, e, "The assessed server");
        op_audit(st, c, "assessment.remove", "assess-server", id, NULL, NULL, "ok");
        return 0;
}

int monitor_op_assess_report(Store *st, const OpCaller *c, const PlaceHostModel *model, int64_t window_ms, json_t **ret,
                             OpError *err) {
        int e = may_read_assessment(c, err);
        if (e < 0)
                return e;
        char why[256];
        json_t *rep = monitor_assess_report_json(st, model, window_ms, now_ms(), why, sizeof why);
        if (!rep)
                return op_fail(err, 400, "invalid_argument", NULL, "%s", why);
        *ret = rep;
        return 0;
}

/* ---- Prometheus ---- */

/* ---- Prometheus ---- */

/* The gzip member of a then tail: a's families are a deflate prefix built
 * once (sync-flushed, not final); tail is deflated on its own and appended
 * (a deflate stream may continue after a sync flush with new blocks that do
 * not refer back), and the trailer's CRC is combined. One valid member. */
static int gzip_splice(const MonitorAnswer *a, const char *tail, size_t tail_len, char **ret, size_t *ret_len) {
        _cleanup_free_ char *z = NULL;
        size_t zn;
        if (!a->gz || zip_deflate(tail, tail_len, -15, Z_FINISH, &z, &zn) < 0)
                return -EIO;
        static const unsigned char header[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3 };
        uint32_t crc = (uint32_t) crc32_combine(a->crc, crc32(crc32(0, Z_NULL, 0), (const Bytef *) tail, (uInt) tail_len),
                                                (z_off_t) tail_len);
        uint32_t size = (uint32_t) (a->len + tail_len);
        size_t n = sizeof header + a->gz_len + zn + 8;
        char *out = xmalloc(n);
        memcpy(out, header, sizeof header);
        memcpy(out + sizeof header, a->gz, a->gz_len);
        memcpy(out + sizeof header + a->gz_len, z, zn);
        unsigned char *t = (unsigned char *) out + n - 8;
        for (int i = 0; i < 4; i++) {
                t[i] = (unsigned char) (crc >> (8 * i));
                t[4 + i] = (unsigned char) (size >> (8 * i));
        }
        *ret = out;
        *ret_len = n;
        return 0;
}

/* The counts text (malloc'd), from the cache when it still holds; NULL on
 * a database error. Read under the lock: concurrent scrapes wait for one
 * read instead of each reading. */
static char *counts_text(Store *st) {
        uint64_t gen = store_counts_generation(st), round = monitor_round_generation();
        int64_t now = mono_ms();
        pthread_mutex_lock(&CNT.lock);
        if (!CNT.text || CNT.st != st || CNT.gen != gen || CNT.round != round || now - CNT.read_mono >= MONITOR_ANSWER_INTERVAL_MS) {
                /* The generation is taken before the read: a change that
                 * commits during it moves the generation again, and the next
                 * request reads anew. */
                char *text = monitor_prometheus_counts_text(st);
                if (!text) {
                        pthread_mutex_unlock(&CNT.lock);
                        return NULL;
                }
                free(CNT.text);
                CNT.text = text;
                CNT.st = st;
                CNT.gen = gen;
                CNT.round = round;
                CNT.read_mono = now;
                CNT.reads++;
        }
        char *out = xstrdup(CNT.text);
        pthread_mutex_unlock(&CNT.lock);
        return out;
}

/* The answers' own figures: cache hits, builds and age. malloc'd. */
static char *answers_text(void) {
        uint64_t hits[2], builds[2];
        int64_t built_at[2];
        pthread_mutex_lock(&A.lock);
        for (int i = 0; i < 2; i++) {
                hits[i] = A.hits[i];
                builds[i] = A.builds[i];
                built_at[i] = A.newest[i] ? A.newest[i]->built_at : -1;
        }
        pthread_mutex_unlock(&A.lock);
        pthread_mutex_lock(&CNT.lock);
        uint64_t counts_reads = CNT.reads;
        pthread_mutex_unlock(&CNT.lock);
        int64_t now = now_ms();
        StrBuf b = {0};
        static const char *const names[2] = { "health", "metrics" };
        mon_expo_family(&b, "armada_answer_cache_hits_total", "counter", "Answers of /health and /metrics served from the cache.");
        for (int i = 0; i < 2; i++)
                strbuf_printf(&b, "armada_answer_cache_hits_total{answer=\"%s\"} %llu\n", names[i], (unsigned long long) hits[i]);
        mon_expo_family(&b, "armada_answer_cache_builds_total", "counter", "Answers of /health and /metrics built (and cached) anew.");
        for (int i = 0; i < 2; i++)
                strbuf_printf(&b, "armada_answer_cache_builds_total{answer=\"%s\"} %llu\n", names[i], (unsigned long long) builds[i]);
        mon_expo_family(&b, "armada_answer_age_seconds", "gauge",
                        "How old the newest built answer of /health and /metrics (its hosts' and VMs' families) is.");
        for (int i = 0; i < 2; i++)
                if (built_at[i] >= 0)
                        strbuf_printf(&b, "armada_answer_age_seconds{answer=\"%s\"} %.3f\n", names[i],
                                      (double) (now > built_at[i] ? now - built_at[i] : 0) / 1000.0);
        mon_expo_family(&b, "armada_metrics_counts_reads_total", "counter",
                        "Times /metrics read its job, alert and delivery counts from the database (cached in between).");
        strbuf_printf(&b, "armada_metrics_counts_reads_total %llu\n", (unsigned long long) counts_reads);
        return strbuf_steal(&b);
}

int monitor_op_prometheus(Store *st, const ModelSnap *snap, const MonitorPromSpec *spec, char **ret, size_t *ret_len, bool *ret_gzip,
                          OpError *err) {
        if (!spec->metrics_public) {
                /* An administrator's token, from the loopback too: the
                 * metrics name every host and VM of the estate. */
                StoreUser u;
                char hash[65];
                AuthRole r;
                const char *authorization = spec->authorization;
                if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0 || strlen(authorization + 7) != AUTH_TOKEN_LEN)
                        return op_fail(err, 401, "unauthenticated", NULL, "The metrics need an administrator's bearer token"
                                       " (or armadad --metrics-public).");
                auth_token_hash(authorization + 7, hash);
                if (store_token_user(st, hash, now_ms(), &u) < 0 || auth_role_parse(u.role, &r) < 0)
                        return op_fail(err, 401, "unauthenticated", NULL, "The token is not valid (expired or revoked).");
                if (r != ROLE_ADMIN)
                        return op_fail(err, 403, "forbidden", NULL, "The metrics are for administrators (or armadad --metrics-public).");
        }
        _cleanup_(monitor_answer_unrefp) MonitorAnswer *a = NULL;
        if (answer_get(st, snap, ANSWER_METRICS, false, &a) < 0)
                return op_fail(err, 500, "internal", NULL, "A database error occurred while exposing the metrics.");
        MonitorProcess self;
        bool have_self = monitor_process_read(&self) == 0;
        _cleanup_free_ char *counts = counts_text(st);
        if (!counts)
                return op_fail(err, 500, "internal", NULL, "A database error occurred while exposing the metrics.");
        _cleanup_free_ char *process = monitor_prometheus_process_text(have_self ? &self : NULL, spec->login_rate_limited);
        _cleanup_free_ char *own = answers_text();
        _cleanup_free_ char *tail = xasprintf("%s%s%s%s", counts, process, own, spec->extra ? spec->extra : "");
        size_t tail_len = strlen(tail);
        *ret_gzip = false;
        if (spec->gzip && gzip_splice(a, tail, tail_len, ret, ret_len) == 0) {
                *ret_gzip = true;
                return 0;
        }
        char *out = xmalloc(a->len + tail_len + 1);
        memcpy(out, a->text, a->len);
        memcpy(out + a->len, tail, tail_len + 1);
        *ret = out;
        *ret_len = a->len + tail_len;
        return 0;
}
