/* protect-policy: protection policies (a VM's own or a host group's: back
 * up every N, keep by PBS's rules) and the scheduler thread that applies
 * them. Each round it queues a vm.backup for every running or stopped VM a policy
 * covers whose next point is due (and that has none queued or running, nor
 * one queued since it came due or within the last interval), carrying the policy's keep rules: the backup prunes
 * the VM's points by them once its own point is committed. A VM with no
 * point newer than twice its interval has the "backup-overdue" alert open
 * (through the hook armadad points at the monitor) until one is made.
 *
 * When a point is due: a policy's slots are the multiples of its interval
 * (UTC: "every 15m" backs up at :00, :15, :30, :45). A VM's first point is
 * due at once; after a point taken at t (its id), the first slot at least
 * half an interval after t. So a point that started late does not push the
 * next ones (no drift), and the first one, taken whenever the policy was
 * set, is not followed by another seconds later. The thread sleeps until
 * the earliest slot due (or its round interval, whichever comes first), so
 * a point starts within milliseconds of its slot, not a round later. */
#include "protect-priv.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model.h"
#include "store/store-protect.h"
#include "util/util.h"

static const char *const KEEP_NAMES[6] = { "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly" };

/* ---- operations ---- */

static json_t *policy_out(json_t *p) {
        return p;
}

/* Whether the caller may see a policy (its row). */
static bool policy_visible(Store *st, const OpCaller *c, const json_t *p) {
        int64_t vm_id = jget_int(p, "vm_id");
        if (vm_id > 0) {
                _cleanup_json_ json_t *v = NULL;
                return store_vm_get_json(st, vm_id, &v) == 0 &&
                       op_allowed(st, c, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id"));
        }
        return op_allowed(st, c, ACT_READ, OBJ_GROUP, 0, jget_int(p, "group_id"));
}

int protect_policy_list(Store *st, const OpCaller *c, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *all = NULL;
        int r = store_backup_policy_list(st, &all);
        if (r < 0)
                return op_fail_store(err, r, "the protection policies");
        json_t *out = json_array();
        size_t i;
        json_t *p;
        json_array_foreach(all, i, p) if (policy_visible(st, c, p)) json_array_append(out, p);
        *ret = json_pack("{s:o}", "items", out);
        return 0;
}

int protect_policy_set(Store *st, const OpCaller *c, const ProtectPolicySpec *spec, json_t **ret, OpError *err) {
        StoreBackupPolicy p = { .datastore = spec->datastore, .every_s = spec->every_s };
        memcpy(p.keep, spec->keep, sizeof p.keep);
        const char *what = spec->vm ? spec->vm : spec->group;
        if (spec->vm) {
                int64_t id = 0;
                _cleanup_json_ json_t *v = NULL;
                if (store_vm_find(st, spec->vm, &id) < 0 || store_vm_get_json(st, id, &v) < 0 ||
                    !op_allowed(st, c, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")))
                        return op_fail(err, 422, "not_found", "vm", "There is no VM '%.200s'.", spec->vm);
                if (!op_allowed(st, c, ACT_UPDATE, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")))
                        return op_deny(st, c, err, "set the protection policy of", "VM", id, spec->vm);
                if (streq(jget_str(v, "origin"), "foreign"))
                        return op_fail(err, 409, "conflict", "vm", "VM '%s' belongs to another Armada installation and is "
                                       "read-only here.", spec->vm);
                p.vm_id = id;
        } else {
                const char *why = NULL;
                _cleanup_free_ char *norm = store_group_path_normalize(spec->group, &why);
                if (!norm)
                        return op_fail(err, 400, "invalid_argument", "group", "Field 'group' (\"%.200s\") is not a valid host-group "
                                       "path: a segment %s.", spec->group, why);
                int64_t id = 0;
                if (store_group_find(st, norm, &id) < 0 || !op_allowed(st, c, ACT_READ, OBJ_GROUP, 0, id))
                        return op_fail(err, 422, "not_found", "group", "There is no host group '%.200s'.", spec->group);
                if (!op_allowed(st, c, ACT_UPDATE, OBJ_GROUP, 0, id))
                        return op_deny(st, c, err, "set the protection policy of", "host group", id, spec->group);
                p.group_id = id;
        }
        if (spec->datastore) {
                char name[128];
                _cleanup_free_ char *path = NULL;
                if (protect_datastore_path(st, spec->datastore, name, sizeof name, &path) < 0)
                        return op_fail(err, 422, "not_found", "datastore", "There is no datastore '%.200s'.", spec->datastore);
        }
        int64_t id = 0;
        int r = store_backup_policy_set(st, &p, &id);
        if (r < 0)
                return op_fail_store(err, r, "the protection policy");
        _cleanup_free_ char *detail = xasprintf("every %" PRId64 " s", spec->every_s);
        op_audit(st, c, "backup.policy-set", spec->vm ? "vm" : "group", spec->vm ? p.vm_id : p.group_id, what, detail, "done");
        json_t *out = NULL;
        if (store_backup_policy_get(st, id, &out) < 0)
                return op_fail_store(err, -EIO, "the protection policy");
        *ret = policy_out(out);
        return 0;
}

int protect_policy_delete(Store *st, const OpCaller *c, int64_t id, OpError *err) {
        _cleanup_json_ json_t *p = NULL;
        if (store_backup_policy_get(st, id, &p) < 0 || !policy_visible(st, c, p))
                return op_fail(err, 404, "not_found", NULL, "There is no protection policy with id %lld.", (long long) id);
        int64_t vm_id = jget_int(p, "vm_id");
        bool ok;
        if (vm_id > 0) {
                _cleanup_json_ json_t *v = NULL;
                ok = store_vm_get_json(st, vm_id, &v) == 0 &&
                     op_allowed(st, c, ACT_UPDATE, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id"));
        } else
                ok = op_allowed(st, c, ACT_UPDATE, OBJ_GROUP, 0, jget_int(p, "group_id"));
        const char *name = vm_id > 0 ? jget_str(p, "vm_name") : jget_str(p, "group_path");
        if (!ok)
                return op_deny(st, c, err, "remove the protection policy of", vm_id > 0 ? "VM" : "host group", id, name);
        int r = store_backup_policy_delete(st, id);
        if (r < 0)
                return op_fail_store(err, r, "the protection policy");
        op_audit(st, c, "backup.policy-delete", vm_id > 0 ? "vm" : "group", vm_id > 0 ? vm_id : jget_int(p, "group_id"), name,
                 NULL, "done");
        return 0;
}

/* ---- pruning after a backup ---- */

int protect_backup_prune_vm(Store *st, ChunkStore *s, const char *ds_name, const char *vm_uuid, const json_t *keep, char *why,
                            size_t why_size) {
        PrunePolicy pol = {
                .keep_last = (unsigned) json_integer_value(json_array_get(keep, 0)),
                .keep_hourly = (unsigned) json_integer_value(json_array_get(keep, 1)),
                .keep_daily = (unsigned) json_integer_value(json_array_get(keep, 2)),
                .keep_weekly = (unsigned) json_integer_value(json_array_get(keep, 3)),
                .keep_monthly = (unsigned) json_integer_value(json_array_get(keep, 4)),
                .keep_yearly = (unsigned) json_integer_value(json_array_get(keep, 5)),
        };
        _cleanup_json_ json_t *pts = NULL;
        int r = point_list(s, vm_uuid, &pts);
        if (r < 0) {
                snprintf(why, why_size, "cannot list the points: %s", strerror(-r));
                return r;
        }
        size_t n = json_array_size(pts);
        if (n == 0)
                return 0;
        time_t *times = xcalloc(n, sizeof *times);
        bool *kept = xcalloc(n, sizeof *kept);
        for (size_t i = 0; i < n; i++)
                if (protect_point_time(jget_str(json_array_get(pts, i), "point_id"), &times[i]) < 0)
                        times[i] = 0;
        prune_select(times, n, &pol, kept);
        int removed = 0;
        /* The newest point (just made) always stays. */
        kept[n - 1] = true;
        for (size_t i = 0; i < n; i++) {
                if (kept[i])
                        continue;
                const char *pid = jget_str(json_array_get(pts, i), "point_id");
                if ((r = point_remove(s, vm_uuid, pid)) < 0 && r != -ENOENT) {
                        snprintf(why, why_size, "cannot remove point %s: %s", pid, strerror(-r));
                        break;
                }
                (void) store_backup_point_remove(st, ds_name, vm_uuid, pid);
                removed++;
                r = 0;
        }
        free(times);
        free(kept);
        return r < 0 ? r : removed;
}

/* ---- the scheduler ---- */

static ProtectBackupAlertFn alert_fn;
static void *alert_userdata;

void protect_on_backup_alert(ProtectBackupAlertFn fn, void *userdata) {
        alert_fn = fn;
        alert_userdata = userdata;
}

struct ProtectScheduler {
        Store *st;
        Jobs *jobs;
        Model *model;            /* the VMs come from here when set (armadad); else from one SQL query */
        unsigned interval_ms;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool stop, started;
        int64_t started_ms;      /* a VM without any point is overdue only 2 intervals after this */
        int64_t next_due_ms;     /* the earliest slot a round saw ahead (0: none) */
        int64_t *open;           /* VMs with the overdue alert open */
        size_t n_open;
        /* The newest point of every VM ({uuid: ms}), kept current from the
         * points indexed since the last round (points_after) and read again
         * whole only when points were deleted (points_gen moved). */
        json_t *last_ms;
        json_t *last_taken;      /* vm_uuid -> when its newest point was taken (ms, from its id) */
        int64_t points_after, points_gen;
        bool points_loaded;
};

/* A VM a policy covers, for one round: strings borrowed from the model's
 * snapshot or the query's rows, which the round holds. */
typedef struct Covered {
        int64_t vm_id;
        const char *name, *uuid, *state;
        json_t *policy;          /* borrowed: keep_*, every_s, datastore, policy_id */
} Covered;

typedef struct Round {
        Covered *v;
        size_t n;
        ModelSnap *snap;
        json_t *rows;            /* what the strings point into */
} Round;

static void round_done(Round *r) {
        free(r->v);
        model_snap_unref(r->snap);
        json_decref(r->rows);
}

static bool is_open(ProtectScheduler *s, int64_t vm_id) {
        for (size_t i = 0; i < s->n_open; i++)
                if (s->open[i] == vm_id)
                        return true;
        return false;
}

static void set_open(ProtectScheduler *s, int64_t vm_id, const char *name, bool open, const char *msg) {
        if (open == is_open(s, vm_id))
                return;
        if (open) {
                s->open = xrealloc(s->open, (s->n_open + 1) * sizeof *s->open);
                s->open[s->n_open++] = vm_id;
        } else
                for (size_t i = 0; i < s->n_open; i++)
                        if (s->open[i] == vm_id)
                                s->open[i] = s->open[--s->n_open];
        if (alert_fn)
                alert_fn(alert_userdata, vm_id, name, open, msg);
        if (open)
                (void) store_event_add(s->st, "error", "backup.overdue", "vm", vm_id, name, 0, msg);
}

int64_t protect_policy_due_ms(int64_t taken_ms, int64_t every_ms) {
        return (taken_ms + every_ms / 2) / every_ms * every_ms + every_ms;
}

/* The covered VMs from the read model: the policies (few) read in one
 * query; each VM's own policy, else the first of its host group's chain
 * (deepest first) that has one -- store_backup_policy_vms()'s rule,
 * without its two correlated subqueries per VM. */
static int covered_from_model(ProtectScheduler *s, Round *r) {
        int e = store_backup_policies(s->st, &r->rows);
        if (e < 0)
                return e;
        _cleanup_json_ json_t *by_vm = json_object(), *by_group = json_object();
        size_t i;
        json_t *p;
        char key[32];
        json_array_foreach(r->rows, i, p) {
                snprintf(key, sizeof key, "%" PRId64, jget_int(p, jget_int(p, "vm_id") > 0 ? "vm_id" : "group_id"));
                json_object_set(jget_int(p, "vm_id") > 0 ? by_vm : by_group, key, p);
        }
        if (json_array_size(r->rows) == 0)
                return 0;
        r->snap = model_snap(s->model);
        const ModelTable *vms = r->snap->vms;
        r->v = xcalloc(vms->n ? vms->n : 1, sizeof *r->v);
        for (size_t k = 0; k < vms->n; k++) {
                const ModelRow *row = vms->by_id[k];
                const char *origin = jget_str(row->json, "origin");
                if (origin && streq(origin, "foreign"))
                        continue;
                snprintf(key, sizeof key, "%" PRId64, row->id);
                json_t *pol = json_object_get(by_vm, key);
                if (!pol && row->host_id > 0 && row->group_id > 0 && json_object_size(by_group) > 0) {
                        int64_t chain[64];
                        size_t n = model_group_chain(r->snap, row->group_id, chain, 64);
                        for (size_t c = 0; c < n && !pol; c++) {
                                snprintf(key, sizeof key, "%" PRId64, chain[c]);
                                pol = json_object_get(by_group, key);
                        }
                }
                if (pol)
                        r->v[r->n++] = (Covered){ .vm_id = row->id, .name = row->name, .uuid = jget_str(row->json, "uuid"),
                                                  .state = row->state, .policy = pol };
        }
        return 0;
}

/* The same from SQL (no model: tests and tools). */
static int covered_from_store(ProtectScheduler *s, Round *r) {
        int e = store_backup_policy_vms(s->st, &r->rows);
        if (e < 0)
                return e;
        r->v = xcalloc(json_array_size(r->rows) ? json_array_size(r->rows) : 1, sizeof *r->v);
        size_t i;
        json_t *v;
        json_array_foreach(r->rows, i, v)
                r->v[r->n++] = (Covered){ .vm_id = jget_int(v, "vm_id"), .name = jget_str(v, "vm_name"),
                                          .uuid = jget_str(v, "vm_uuid"), .state = jget_str(v, "state"), .policy = v };
        return 0;
}

/* Brings s->last_ms up to date: the points indexed since the last round
 * (one query by id range), or all of them after a deletion. */
static int points_refresh(ProtectScheduler *s) {
        _cleanup_json_ json_t *rows = NULL;
        int64_t max_id = 0, gen = 0;
        int e = store_backup_points_newest(s->st, s->points_loaded ? s->points_after : 0, &rows, &max_id, &gen);
        if (e < 0)
                return e;
        if (s->points_loaded && gen != s->points_gen) {
                /* Points were deleted (prune, a datastore forgotten): a VM's
                 * newest may be gone. Read all again. */
                s->points_loaded = false;
                json_object_clear(s->last_ms);
                json_object_clear(s->last_taken);
                return points_refresh(s);
        }
        size_t i;
        json_t *p;
        json_array_foreach(rows, i, p) {
                const char *uuid = jget_str(p, "vm_uuid");
                int64_t ms = jget_int(p, "last_ms");
                json_t *have = json_object_get(s->last_ms, uuid);
                if (!have || json_integer_value(have) < ms)
                        json_object_set_new(s->last_ms, uuid, json_integer(ms));
                time_t t;
                json_t *taken = json_object_get(s->last_taken, uuid);
                if (protect_point_time(jget_str(p, "last_id"), &t) == 0 && (!taken || json_integer_value(taken) < (int64_t) t * 1000))
                        json_object_set_new(s->last_taken, uuid, json_integer((int64_t) t * 1000));
        }
        s->points_after = max_id;
        s->points_gen = gen;
        s->points_loaded = true;
        return 0;
}

static int cmp_i64(const void *a, const void *b) {
        int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
        return (x > y) - (x < y);
}

/* Resolves the open alert of every VM no policy covers any more (or gone). */
static void resolve_uncovered(ProtectScheduler *s, const Round *r) {
        if (s->n_open == 0)
                return;
        int64_t *ids = xmalloc((r->n ? r->n : 1) * sizeof *ids);
        for (size_t i = 0; i < r->n; i++)
                ids[i] = r->v[i].vm_id;
        qsort(ids, r->n, sizeof *ids, cmp_i64);
        for (size_t k = 0; k < s->n_open;) {
                int64_t id = s->open[k];
                if (bsearch(&id, ids, r->n, sizeof *ids, cmp_i64)) {
                        k++;
                        continue;
                }
                set_open(s, id, "", false, "No protection policy covers the VM any more.");
        }
        free(ids);
}

/* One covered VM: its overdue alert, and its backup queued when due; a
 * slot ahead lowers *next_due (the earliest the thread must wake for). */
static void round_vm(ProtectScheduler *s, const Covered *c, int64_t now, int64_t *next_due) {
        int64_t vm_id = c->vm_id, every_ms = jget_int(c->policy, "every_s") * 1000, last = 0;
        const char *name = c->name, *state = c->state;
        json_t *jl = c->uuid ? json_object_get(s->last_ms, c->uuid) : NULL;
        bool have = jl != NULL;
        if (have)
                last = json_integer_value(jl);
        /* A stopped VM is backed up too (offline, its QEMU started paused
         * for the job): its policy is kept like any other. */
        if (!streq(state, "running") && !streq(state, "paused") && !streq(state, "stopped")) {
                set_open(s, vm_id, name, false, NULL);
                return;
        }
        /* Without a point, the clock runs from when the policy applied
         * (or armadad started, if later), as the message says. */
        int64_t applied = jget_int(c->policy, "applied_ms");
        int64_t since = have ? last : applied > s->started_ms ? applied : s->started_ms;
        if (now - since >= 2 * every_ms) {
                _cleanup_free_ char *msg = have
                        ? xasprintf("VM '%s' has no recovery point newer than %" PRId64 " s (twice its policy's interval).",
                                    name, 2 * every_ms / 1000)
                        : xasprintf("VM '%s' has no recovery point yet, %" PRId64 " s after its policy applied (twice its "
                                    "interval).", name, (now - since) / 1000);
                set_open(s, vm_id, name, true, msg);
        } else if (have && now - last < 2 * every_ms)
                set_open(s, vm_id, name, false, "A recent recovery point exists again.");
        /* Due: at once without a point, else at the policy's first slot at
         * least half an interval after the newest point was taken. */
        json_t *jt = c->uuid ? json_object_get(s->last_taken, c->uuid) : NULL;
        int64_t due = jt && every_ms > 0 ? protect_policy_due_ms(json_integer_value(jt), every_ms) : 0;
        if (due > now) {
                if (!*next_due || due < *next_due)
                        *next_due = due;
                return;
        }
        /* A backup queued since the point came due is this slot's; one that
         * failed is not retried within an interval (nor every round). Only
         * a VM that is due costs a query (an index probe). */
        bool pending = false;
        if (store_backup_job_pending(s->st, vm_id, due > now - every_ms ? due : now - every_ms, &pending) < 0 || pending)
                return;
        json_t *keep = json_array();
        for (int k = 0; k < 6; k++)
                json_array_append_new(keep, json_integer(jget_int(c->policy, KEEP_NAMES[k])));
        _cleanup_json_ json_t *params = json_pack("{s:o, s:I}", "keep", keep, "policy_id",
                                                  (json_int_t) jget_int(c->policy, "policy_id"));
        const char *ds = jget_str(c->policy, "datastore");
        if (ds && ds[0])
                json_object_set_new(params, "datastore", json_string(ds));
        if (jobs_submit(s->jobs, "vm.backup", "vm", vm_id, name, 0, params, NULL) < 0)
                log_warn("cannot queue the scheduled backup of VM '%s'", name);
}

/* A round costs, at 20,000 VMs: the policies (one query), the VMs from
 * the model's snapshot (memory), the points indexed since the last round
 * (one range query), and one indexed probe of the job table per VM that
 * is due -- not two correlated subqueries and two queries per VM
 * (bench/results/protection.md, "The policy scan"). */
void protect_scheduler_round(ProtectScheduler *s) {
        Round r = { 0 };
        if ((s->model ? covered_from_model(s, &r) : covered_from_store(s, &r)) < 0 || points_refresh(s) < 0) {
                round_done(&r);
                return;
        }
        int64_t now = now_ms(), next_due = 0;
        resolve_uncovered(s, &r);
        for (size_t i = 0; i < r.n; i++)
                round_vm(s, &r.v[i], now, &next_due);
        round_done(&r);
        pthread_mutex_lock(&s->lock);
        s->next_due_ms = next_due;
        pthread_mutex_unlock(&s->lock);
}

static void *scheduler_main(void *arg) {
        ProtectScheduler *s = arg;
        pthread_mutex_lock(&s->lock);
        while (!s->stop) {
                pthread_mutex_unlock(&s->lock);
                protect_scheduler_round(s);
                pthread_mutex_lock(&s->lock);
                /* Until the round interval is over, or the earliest slot
                 * due comes (a few ms after it: the round must see it due). */
                int64_t wait = s->interval_ms;
                if (s->next_due_ms) {
                        int64_t to_slot = s->next_due_ms - now_ms() + 5;
                        if (to_slot < wait)
                                wait = to_slot > 0 ? to_slot : 0;
                }
                struct timespec until = time_after_ms(CLOCK_MONOTONIC, wait);
                while (!s->stop && pthread_cond_timedwait(&s->cond, &s->lock, &until) != ETIMEDOUT)
                        ;
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

int protect_scheduler_new(Store *st, Jobs *jobs, unsigned interval_ms, ProtectScheduler **ret) {
        ProtectScheduler *s = xcalloc(1, sizeof *s);
        s->st = st;
        s->jobs = jobs;
        s->interval_ms = interval_ms ? interval_ms : 30000;
        s->started_ms = now_ms();
        s->last_ms = json_object();
        s->last_taken = json_object();
        pthread_mutex_init(&s->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&s->cond, &ca);
        pthread_condattr_destroy(&ca);
        *ret = s;
        return 0;
}

int protect_scheduler_start(ProtectScheduler *s) {
        if (pthread_create(&s->thread, NULL, scheduler_main, s) != 0)
                return -EAGAIN;
        s->started = true;
        return 0;
}

ProtectScheduler *protect_scheduler_free(ProtectScheduler *s) {
        if (!s)
                return NULL;
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        if (s->started)
                pthread_join(s->thread, NULL);
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        free(s->open);
        json_decref(s->last_ms);
        json_decref(s->last_taken);
        free(s);
        return NULL;
}

void protect_scheduler_set_model(ProtectScheduler *s, Model *m) {
        s->model = m;
}
