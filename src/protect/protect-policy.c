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
        unsigned interval_ms;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool stop, started;
        int64_t started_ms;      /* a VM without any point is overdue only 2 intervals after this */
        int64_t next_due_ms;     /* the earliest slot a round saw ahead (0: none) */
        int64_t *open;           /* VMs with the overdue alert open */
        size_t n_open;
};

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

/* When vm_uuid's next point is due (ms since the epoch): at once (0) with
 * no point, else the first slot (a multiple of every_ms) at least half an
 * interval after the newest point was taken. */
static int64_t next_due_ms(Store *st, const char *vm_uuid, int64_t every_ms) {
        char pid[64];
        time_t t;
        if (every_ms <= 0 || store_backup_last_point_id(st, vm_uuid, pid, sizeof pid) < 0 || protect_point_time(pid, &t) < 0)
                return 0;
        return protect_policy_due_ms((int64_t) t * 1000, every_ms);
}

void protect_scheduler_round(ProtectScheduler *s) {
        _cleanup_json_ json_t *vms = NULL;
        if (store_backup_policy_vms(s->st, &vms) < 0)
                return;
        int64_t now = now_ms(), next_due = 0;
        size_t i;
        json_t *v;
        /* An open alert of a VM no policy covers any more (or gone) resolves. */
        for (size_t k = 0; k < s->n_open;) {
                int64_t id = s->open[k];
                bool covered = false;
                json_array_foreach(vms, i, v) if (jget_int(v, "vm_id") == id) covered = true;
                if (covered) {
                        k++;
                        continue;
                }
                set_open(s, id, "", false, "No protection policy covers the VM any more.");
        }
        json_array_foreach(vms, i, v) {
                int64_t vm_id = jget_int(v, "vm_id"), every_ms = jget_int(v, "every_s") * 1000, last = 0;
                const char *name = jget_str(v, "vm_name"), *state = jget_str(v, "state");
                bool have = store_backup_last_point_ms(s->st, jget_str(v, "vm_uuid"), &last) == 0;
                /* A stopped VM is backed up too (offline, its QEMU started
                 * paused for the job): its policy is kept like any other. */
                if (!streq(state, "running") && !streq(state, "paused") && !streq(state, "stopped")) {
                        set_open(s, vm_id, name, false, NULL);
                        continue;
                }
                int64_t since = have ? last : s->started_ms;
                if (now - since >= 2 * every_ms) {
                        _cleanup_free_ char *msg = have
                                ? xasprintf("VM '%s' has no recovery point newer than %" PRId64 " s (twice its policy's interval).",
                                            name, 2 * every_ms / 1000)
                                : xasprintf("VM '%s' has no recovery point yet, %" PRId64 " s after its policy applied (twice its "
                                            "interval).", name, (now - since) / 1000);
                        set_open(s, vm_id, name, true, msg);
                } else if (have && now - last < 2 * every_ms)
                        set_open(s, vm_id, name, false, "A recent recovery point exists again.");
                int64_t due = next_due_ms(s->st, jget_str(v, "vm_uuid"), every_ms);
                if (due > now) {
                        if (!next_due || due < next_due)
                                next_due = due;
                        continue;
                }
                /* A backup queued since the point came due is this slot's;
                 * one that failed is not retried within an interval (nor
                 * every round). */
                bool pending = false;
                if (store_backup_job_pending(s->st, vm_id, due > now - every_ms ? due : now - every_ms, &pending) < 0 || pending)
                        continue;
                json_t *keep = json_array();
                for (int k = 0; k < 6; k++)
                        json_array_append_new(keep, json_integer(jget_int(v, KEEP_NAMES[k])));
                _cleanup_json_ json_t *params = json_pack("{s:o, s:I}", "keep", keep, "policy_id", (json_int_t) jget_int(v, "policy_id"));
                const char *ds = jget_str(v, "datastore");
                if (ds && ds[0])
                        json_object_set_new(params, "datastore", json_string(ds));
                if (jobs_submit(s->jobs, "vm.backup", "vm", vm_id, name, 0, params, NULL) < 0)
                        log_warn("cannot queue the scheduled backup of VM '%s'", name);
        }
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
        free(s);
        return NULL;
}
