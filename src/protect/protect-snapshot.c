/* protect-snapshot: snapshots of VMs (protect.h, Snapshots). The
 * operations check a request on the HTTP thread — the VM, the caller's
 * rights, the VM's state against the memory asked for, the disks and the
 * name on the host (through the inventory's live link, never connecting) —
 * and queue a job; the jobs take, revert and delete the snapshots on the
 * host (hv/hv-snapshot.h) and keep the VM's "snapshots" count.
 *
 * The snapshots themselves are libvirt's internal qcow2 ones: libvirt is
 * the truth of what a host knows, and Armada keeps a copy of each one's
 * XML (store_snapshot_*) so that a host whose libvirt lacks them — the
 * survivor of a failover, a source whose migration failed after the
 * metadata was set aside — is given them back: lazily, the next time the
 * snapshots are read (list, create, revert, delete). Plus the count, for the
 * VM lists. docs/architecture.md (Protection, Snapshots) says why. */
#include "protect.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hv/hv-migrate.h"
#include "hv/hv-snapshot.h"
#include "store/store-library.h"
#include "store/store-protect.h"

/* ------------------------------------------------------------------ */
/* pure */

int protect_snapshot_name_check(const char *name, char *why, size_t why_size) {
        const char *bad = NULL;
        size_t n = name ? strlen(name) : 0;
        if (n == 0)
                bad = "it is empty";
        else if (n > PROTECT_SNAPSHOT_NAME_MAX)
                bad = "it is longer than 63 characters";
        else if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z') || (name[0] >= '0' && name[0] <= '9')))
                bad = "it does not begin with a letter or a digit";
        else
                for (size_t i = 0; i < n && !bad; i++) {
                        char ch = name[i];
                        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                              ch == '_' || ch == '-'))
                                bad = "it may hold only letters, digits, '.', '_' and '-'";
                }
        if (!bad)
                return 0;
        if (why)
                snprintf(why, why_size, "%s", bad);
        return -EINVAL;
}

void protect_snapshot_default_name(int64_t t, char out[32]) {
        time_t tt = (time_t) t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(out, 32, "snap-%Y%m%d-%H%M%S", &tm);
}

static void rfc3339(int64_t t, char out[32]) {
        time_t tt = (time_t) t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *snapshot_json(const HvSnapshot *s) {
        char created[32];
        rfc3339(s->created, created);
        return json_pack("{s:s, s:s?, s:s?, s:s, s:b, s:b, s:s?, s:n}", "name", s->name, "parent", s->parent[0] ? s->parent : NULL,
                         "created_at", s->created ? created : NULL, "state", s->state, "has_memory", s->has_memory, "current",
                         s->current, "description", s->description[0] ? s->description : NULL, "size_bytes");
}

/* ------------------------------------------------------------------ */
/* checks shared by the operations */

typedef struct {
        Store *st;
        Inventory *inv;
        const OpCaller *c;
        int64_t vm_id;
        json_t *vm;                  /* the VM's JSON (owned) */
        const char *vm_name;         /* borrowed from vm */
        StoreHost host;
} SnapReq;

static void snapreq_done(SnapReq *q) {
        json_decref(q->vm);
}

/* A self-service user acts on a VM deployed under a grant only as far as
 * the grant's actions allow (inventory's rule for power actions). */
static bool grant_allows(SnapReq *q) {
        if (q->c->subj.role != ROLE_SELF_SERVICE)
                return true;
        int64_t grant_id = 0;
        if (store_vm_grant(q->st, q->vm_id, &grant_id) < 0 || grant_id == 0)
                return true;
        _cleanup_json_ json_t *g = NULL;
        (void) store_grant_get_json(q->st, grant_id, &g); /* a database error (logged) denies */
        return g && csv_has(jget_str(g, "actions"), "snapshot");
}

/* The VM (404 unseen), the caller's right to operate it (403, audited as
 * action), not foreign, settled and placed (409), its host (from the
 * store). */
static int snapreq_open(SnapReq *q, const char *action, OpError *err) {
        int r = store_vm_get_json(q->st, q->vm_id, &q->vm);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the VM");
        if (q->vm && !op_allowed(q->st, q->c, ACT_READ, OBJ_VM, jget_int(q->vm, "owner_id"), jget_int(q->vm, "group_id")))
                json_decref(steal_ptr(q->vm));
        if (!q->vm)
                return op_fail(err, 404, "not_found", NULL, "There is no VM with id %lld.", (long long) q->vm_id);
        q->vm_name = jget_str(q->vm, "name");
        if (!op_allowed(q->st, q->c, ACT_OPERATE, OBJ_VM, jget_int(q->vm, "owner_id"), jget_int(q->vm, "group_id")) ||
            !grant_allows(q))
                return op_deny(q->st, q->c, err, action, "VM", q->vm_id, q->vm_name);
        r = inventory_vm_refuse_foreign(q->vm, err);
        if (r < 0)
                return r;
        const char *state = jget_str(q->vm, "state");
        if (streq(state, "creating") || streq(state, "deleting"))
                return op_fail(err, 409, "conflict", NULL, "VM '%s' is %s; try again when that has finished.", q->vm_name, state);
        int64_t host_id = jget_int(q->vm, "host_id");
        if (host_id == 0)
                return op_fail(err, 409, "conflict", NULL, "VM '%s' is not placed on any host.", q->vm_name);
        r = store_host_get(q->st, host_id, &q->host);
        if (r < 0)
                return op_fail_store(err, r, "the VM's host");
        return 0;
}

static void vm_eventv(Store *st, const char *severity, const char *kind, int64_t vm_id, const char *vm_name,
                      int64_t owner_id, const char *fmt, va_list ap) _printf_(7, 0);
static void vm_eventv(Store *st, const char *severity, const char *kind, int64_t vm_id, const char *vm_name,
                      int64_t owner_id, const char *fmt, va_list ap) {
        _cleanup_free_ char *msg = NULL;
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        if (msg)
                (void) store_event_add(st, severity, kind, "vm", vm_id, vm_name, owner_id, msg);
}

static void vm_event(Store *st, const char *severity, const char *kind, int64_t vm_id, const char *vm_name, int64_t owner_id,
                     const char *fmt, ...) _printf_(7, 8);
static void vm_event(Store *st, const char *severity, const char *kind, int64_t vm_id, const char *vm_name, int64_t owner_id,
                     const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vm_eventv(st, severity, kind, vm_id, vm_name, owner_id, fmt, ap);
        va_end(ap);
}

/* Keeps Armada's copy of the XML of every snapshot domain uuid has on the
 * host of conn (the store's errors are logged there). */
static void snapshots_keep(Store *st, HvConn *conn, int64_t vm_id, const char *uuid) {
        HvSnapshotDef *defs = NULL;
        size_t n = 0;
        if (hv_snapshot_defs(conn, uuid, &defs, &n) < 0) {
                log_warn("cannot keep a copy of the snapshots of VM %lld: %s", (long long) vm_id, hv_last_error());
                return;
        }
        for (size_t i = 0; i < n; i++)
                (void) store_snapshot_put(st, vm_id, defs[i].name, defs[i].created, defs[i].current, defs[i].xml);
        hv_snapshot_defs_free(defs, n);
}

static bool listed(const HvSnapshot *s, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (streq(s[i].name, name))
                        return true;
        return false;
}

/* Armada's copies against what the host's libvirt knows now (snaps[n]):
 * the ones it lacks are redefined there, parents first (a snapshot whose
 * redefinition libvirt refuses is forgotten, with an event); the ones Armada
 * has no copy of are copied. Not while the domain has a job running (a
 * migration sets the metadata aside and moves it itself). True when it
 * redefined any: the caller lists again. */
static bool snapshots_reconcile(SnapReq *q, HvConn *conn, const HvSnapshot *snaps, size_t n) {
        _cleanup_json_ json_t *kept = NULL;
        if (store_snapshot_list(q->st, q->vm_id, &kept) < 0)
                return false;
        const char *uuid = jget_str(q->vm, "uuid");
        int64_t owner = jget_int(q->vm, "owner_id");
        bool copy = false, missing = false, has_current = false;
        for (size_t i = 0; i < n; i++) {
                has_current |= snaps[i].current;
                bool known = false;
                for (size_t k = 0; k < json_array_size(kept); k++)
                        known |= streq(jget_str(json_array_get(kept, k), "name"), snaps[i].name);
                copy |= !known;
        }
        for (size_t k = 0; k < json_array_size(kept); k++)
                missing |= !listed(snaps, n, jget_str(json_array_get(kept, k), "name"));
        HvJobInfo job;
        if (missing && hv_job_info(conn, uuid, &job) == 0 && job.active)
                missing = false;
        size_t back = 0;
        for (size_t k = 0; missing && k < json_array_size(kept); k++) {
                json_t *row = json_array_get(kept, k);
                const char *name = jget_str(row, "name");
                if (listed(snaps, n, name))
                        continue;
                bool current = !has_current && json_is_true(json_object_get(row, "current"));
                if (hv_snapshot_redefine(conn, uuid, jget_str(row, "xml"), current) == 0) {
                        back++;
                        has_current |= current;
                        continue;
                }
                vm_event(q->st, "warning", "vm.snapshot-lost", q->vm_id, q->vm_name, owner,
                         "Snapshot '%s' of VM '%s' is gone: host '%s' does not take it back (%s).", name, q->vm_name, q->host.name,
                         hv_last_error());
                (void) store_snapshot_drop(q->st, q->vm_id, name);
        }
        if (back > 0)
                vm_event(q->st, "info", "vm.snapshots-restored", q->vm_id, q->vm_name, owner,
                         "%zu snapshot%s of VM '%s' %s given back to host '%s', whose libvirt did not know %s.", back,
                         back == 1 ? "" : "s", q->vm_name, back == 1 ? "was" : "were", q->host.name, back == 1 ? "it" : "them");
        if (copy || back > 0)
                snapshots_keep(q->st, conn, q->vm_id, uuid);
        return back > 0;
}

/* The snapshots on the host now, through its live link (never connects). */
static int snapreq_list(SnapReq *q, HvSnapshot **ret, size_t *ret_n, OpError *err) {
        _cleanup_inventory_link_ InventoryLink *l = inventory_link_peek(q->inv, q->host.id);
        if (!l)
                return op_fail(err, 503, "unavailable", NULL, "Host '%s' of VM '%s' is not connected now; try again later.", q->host.name,
                               q->vm_name);
        HvConn *conn = inventory_link_conn(l);
        int r = hv_snapshot_list(conn, jget_str(q->vm, "uuid"), ret, ret_n);
        if (r == 0 && snapshots_reconcile(q, conn, *ret, *ret_n)) {
                free(steal_ptr(*ret));
                r = hv_snapshot_list(conn, jget_str(q->vm, "uuid"), ret, ret_n);
        }
        if (r == -ENOENT)
                return op_fail(err, 409, "conflict", NULL, "Host '%s' has no domain for VM '%s' (the VM is missing).", q->host.name,
                               q->vm_name);
        if (r < 0)
                return op_fail(err, 502, "host_error", NULL, "Cannot read the snapshots of VM '%s' on host '%s': %s", q->vm_name,
                               q->host.name, hv_last_error());
        (void) store_vm_snapshots_set(q->st, q->vm_id, (int64_t) *ret_n); /* the count is a convenience: an error is logged */
        return 0;
}

static const HvSnapshot *find(const HvSnapshot *s, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (streq(s[i].name, name))
                        return &s[i];
        return NULL;
}

static json_t *job_json(Store *st, int64_t id) {
        json_t *j = NULL;
        return store_job_get_json(st, id, &j) == 0 ? j : json_null();
}

static int submit(SnapReq *q, const char *kind, json_t *params, const char *detail, int64_t *ret_job, OpError *err) {
        if (jobs_submit(inventory_jobs(q->inv), kind, "vm", q->vm_id, q->vm_name, q->c->user_id, params, ret_job) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        op_audit(q->st, q->c, kind, "vm", q->vm_id, q->vm_name, detail, "accepted");
        return 0;
}

/* ------------------------------------------------------------------ */
/* operations */

int protect_snapshot_list(Store *st, Inventory *inv, const OpCaller *c, int64_t vm_id, json_t **ret, OpError *err) {
        SnapReq q = { .st = st, .inv = inv, .c = c, .vm_id = vm_id };
        int r = store_vm_get_json(st, vm_id, &q.vm);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the VM");
        if (q.vm && !op_allowed(st, c, ACT_READ, OBJ_VM, jget_int(q.vm, "owner_id"), jget_int(q.vm, "group_id")))
                json_decref(steal_ptr(q.vm));
        if (!q.vm)
                return op_fail(err, 404, "not_found", NULL, "There is no VM with id %lld.", (long long) vm_id);
        q.vm_name = jget_str(q.vm, "name");
        json_t *arr = json_array();
        const char *current = NULL;
        _cleanup_free_ HvSnapshot *snaps = NULL;
        size_t n = 0;
        int64_t host_id = jget_int(q.vm, "host_id");
        if (host_id != 0) { /* a VM on no host has no snapshots */
                r = store_host_get(st, host_id, &q.host);
                if (r >= 0)
                        r = snapreq_list(&q, &snaps, &n, err);
                else
                        r = op_fail_store(err, r, "the VM's host");
                if (r < 0) {
                        json_decref(arr);
                        snapreq_done(&q);
                        return r;
                }
        }
        for (size_t i = 0; i < n; i++) {
                json_array_append_new(arr, snapshot_json(&snaps[i]));
                if (snaps[i].current)
                        current = snaps[i].name;
        }
        *ret = json_pack("{s:I, s:s?, s:o}", "vm_id", (json_int_t) vm_id, "current", current, "snapshots", arr);
        snapreq_done(&q);
        return 0;
}

/* The state check of create: what memory the VM's state allows. */
static int create_memory(SnapReq *q, const ProtectSnapshotSpec *spec, bool *ret_memory, OpError *err) {
        const char *state = jget_str(q->vm, "state");
        bool live = streq(state, "running") || streq(state, "paused") || streq(state, "blocked");
        if (spec->memory == 1 && !live)
                return op_fail(err, 409, "conflict", "memory", "VM '%s' is %s: a snapshot with memory needs a running VM.", q->vm_name,
                               state);
        if (spec->memory == 0 && live)
                return op_fail(err, 409, "conflict", "memory", "VM '%s' is %s: its snapshot always includes its memory (internal"
                               " qcow2 snapshots); ask for memory, or stop the VM first.", q->vm_name, state);
        *ret_memory = live;
        return 0;
}

/* The disks on the host: every writable one must be qcow2 (409 "disks"). */
static int create_disks(SnapReq *q, OpError *err) {
        _cleanup_inventory_link_ InventoryLink *l = inventory_link_peek(q->inv, q->host.id);
        if (!l)
                return op_fail(err, 503, "unavailable", NULL, "Host '%s' of VM '%s' is not connected now; try again later.", q->host.name,
                               q->vm_name);
        HvDomainInfo d;
        int r = hv_domain_get(inventory_link_conn(l), jget_str(q->vm, "uuid"), &d);
        if (r == -ENOENT)
                return op_fail(err, 409, "conflict", NULL, "Host '%s' has no domain for VM '%s' (the VM is missing).", q->host.name,
                               q->vm_name);
        if (r < 0)
                return op_fail(err, 502, "host_error", NULL, "Cannot read VM '%s' on host '%s': %s", q->vm_name, q->host.name,
                               hv_last_error());
        for (size_t i = 0; i < d.n_disks; i++)
                if (!d.disks[i].cdrom && !streq(d.disks[i].format, "qcow2"))
                        return op_fail(err, 409, "conflict", "disks", "Disk '%s' of VM '%s' is %s; snapshots need every disk in"
                                       " qcow2 format.", d.disks[i].target, q->vm_name, d.disks[i].format[0] ? d.disks[i].format : "raw");
        return 0;
}

int protect_snapshot_create(Store *st, Inventory *inv, const OpCaller *c, int64_t vm_id, const ProtectSnapshotSpec *spec,
                            json_t **ret, OpError *err) {
        char name[PROTECT_SNAPSHOT_NAME_MAX + 1], why[128];
        if (spec->name && protect_snapshot_name_check(spec->name, why, sizeof why) < 0)
                return op_fail(err, 400, "invalid_argument", "name", "Field 'name' is not a valid snapshot name: %s.", why);
        if (spec->description && strlen(spec->description) > PROTECT_SNAPSHOT_DESCRIPTION_MAX)
                return op_fail(err, 400, "invalid_argument", "description", "Field 'description' is longer than %d characters.",
                               PROTECT_SNAPSHOT_DESCRIPTION_MAX);
        if (spec->name)
                snprintf(name, sizeof name, "%s", spec->name);
        else
                protect_snapshot_default_name(time(NULL), name);
        SnapReq q = { .st = st, .inv = inv, .c = c, .vm_id = vm_id };
        bool memory = false;
        _cleanup_free_ HvSnapshot *snaps = NULL;
        size_t n = 0;
        int64_t job;
        int r = snapreq_open(&q, "snapshot", err);
        if (r >= 0)
                r = create_memory(&q, spec, &memory, err);
        if (r >= 0)
                r = create_disks(&q, err);
        if (r >= 0)
                r = snapreq_list(&q, &snaps, &n, err);
        if (r >= 0 && find(snaps, n, name))
                r = op_fail(err, 409, "conflict", "name", "VM '%s' has a snapshot named '%s' already.", q.vm_name, name);
        if (r >= 0) {
                _cleanup_json_ json_t *params = json_pack("{s:s, s:s?, s:b}", "name", name, "description", spec->description,
                                                          "memory", memory);
                r = submit(&q, "vm.snapshot-create", params, name, &job, err);
        }
        if (r >= 0)
                *ret = json_pack("{s:o, s:{s:s, s:b}}", "job", job_json(st, job), "snapshot", "name", name, "has_memory", memory);
        snapreq_done(&q);
        return r;
}

/* revert and delete: the same checks, then a job named kind. */
static int snapshot_act(Store *st, Inventory *inv, const OpCaller *c, int64_t vm_id, const char *name, const char *kind,
                        json_t **ret, OpError *err) {
        char why[128];
        if (protect_snapshot_name_check(name, why, sizeof why) < 0)
                return op_fail(err, 400, "invalid_argument", "name", "'%.80s' is not a valid snapshot name: %s.", name ? name : "", why);
        SnapReq q = { .st = st, .inv = inv, .c = c, .vm_id = vm_id };
        _cleanup_free_ HvSnapshot *snaps = NULL;
        size_t n = 0;
        int64_t job;
        int r = snapreq_open(&q, "snapshot", err);
        if (r >= 0)
                r = snapreq_list(&q, &snaps, &n, err);
        if (r >= 0 && !find(snaps, n, name))
                r = op_fail(err, 404, "not_found", "name", "VM '%s' has no snapshot named '%s'.", q.vm_name, name);
        if (r >= 0) {
                _cleanup_json_ json_t *params = json_pack("{s:s}", "name", name);
                r = submit(&q, kind, params, name, &job, err);
        }
        if (r >= 0)
                *ret = json_pack("{s:o}", "job", job_json(st, job));
        snapreq_done(&q);
        return r;
}

int protect_snapshot_revert(Store *st, Inventory *inv, const OpCaller *c, int64_t vm_id, const char *name, json_t **ret,
                            OpError *err) {
        return snapshot_act(st, inv, c, vm_id, name, "vm.snapshot-revert", ret, err);
}

int protect_snapshot_delete(Store *st, Inventory *inv, const OpCaller *c, int64_t vm_id, const char *name, json_t **ret,
                            OpError *err) {
        return snapshot_act(st, inv, c, vm_id, name, "vm.snapshot-delete", ret, err);
}

/* ------------------------------------------------------------------ */
/* jobs */

typedef struct {
        JobCtx *ctx;
        Inventory *inv;
        StoreVm vm;
        StoreHost host;
        InventoryLink *link;
        const char *name;            /* the snapshot's, from the params */
} SnapJob;

static void snapjob_done(SnapJob *j) {
        j->link = inventory_link_unref(j->link);
}

static void snap_event(SnapJob *j, const char *severity, const char *kind, const char *fmt, ...) _printf_(4, 5);
static void snap_event(SnapJob *j, const char *severity, const char *kind, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vm_eventv(j->ctx->st, severity, kind, j->vm.id, j->vm.name, j->vm.owner_id, fmt, ap);
        va_end(ap);
}

/* The VM, its host and a live link to it. Taking and deleting a snapshot
 * do not hold the link's ops lock (inventory_link_lock_ops): they neither
 * define nor stop a domain, and saving a large guest's memory would hold
 * off the host's reconcile and every other VM's job on it for as long. A
 * revert holds it: libvirt may stop the domain and start it again from the
 * snapshot, and reconcile must not take that for the VM going down. */
static int snapjob_open(SnapJob *j) {
        JobCtx *ctx = j->ctx;
        j->name = jget_str(ctx->params, "name");
        if (!j->name || protect_snapshot_name_check(j->name, NULL, 0) < 0)
                return job_fail(ctx, -EINVAL, "The job has no valid snapshot name.");
        if (store_vm_get(ctx->st, ctx->job->target_id, &j->vm) < 0)
                return job_fail(ctx, -ENOENT, "The VM of this job no longer exists.");
        if (j->vm.host_id == 0)
                return job_fail(ctx, -ENXIO, "VM '%s' is not placed on any host.", j->vm.name);
        if (store_host_get(ctx->st, j->vm.host_id, &j->host) < 0)
                return job_fail(ctx, -ENXIO, "The host of VM '%s' no longer exists.", j->vm.name);
        char why[512];
        if (inventory_link_acquire(j->inv, &j->host, &j->link, why, sizeof why) < 0)
                return job_fail(ctx, -EHOSTUNREACH, "Cannot reach host '%s' of VM '%s': %s", j->host.name, j->vm.name, why);
        job_progress(ctx, 10, "connected to host '%s'", j->host.name);
        return 0;
}

/* The count and the VM's state, read back from the host after a change;
 * the count into *ret_count (-1 when it could not be read). */
static void snapjob_sync(SnapJob *j, int64_t *ret_count) {
        HvConn *conn = inventory_link_conn(j->link);
        _cleanup_free_ HvSnapshot *snaps = NULL;
        size_t n = 0;
        *ret_count = -1;
        if (hv_snapshot_list(conn, j->vm.uuid, &snaps, &n) == 0) {
                (void) store_vm_snapshots_set(j->ctx->st, j->vm.id, (int64_t) n);
                *ret_count = (int64_t) n;
        }
        snapshots_keep(j->ctx->st, conn, j->vm.id, j->vm.uuid); /* new, current, reparented children */
        HvState s;
        if (hv_domain_state(conn, j->vm.uuid, &s) == 0)
                (void) store_vm_set_state(j->ctx->st, j->vm.id, hv_state_name(s));
}

static int job_snapshot_create(JobCtx *ctx, void *userdata) {
        SnapJob j = { .ctx = ctx, .inv = userdata };
        int r = snapjob_open(&j);
        if (r < 0)
                return snapjob_done(&j), r;
        bool memory = json_is_true(json_object_get(ctx->params, "memory"));
        HvConn *conn = inventory_link_conn(j.link);
        HvDomainInfo d;
        r = hv_domain_get(conn, j.vm.uuid, &d);
        HvState state = HV_STATE_NOSTATE;
        if (r == 0)
                r = hv_domain_state(conn, j.vm.uuid, &state);
        bool live = state == HV_STATE_RUNNING || state == HV_STATE_PAUSED || state == HV_STATE_BLOCKED;
        _cleanup_free_ char *xml = NULL;
        if (r == 0 && live != memory) {
                job_fail(ctx, -EBUSY, "VM '%s' is %s now: a snapshot %s its memory cannot be taken.", j.vm.name, hv_state_name(state),
                         memory ? "with" : "without");
                r = -EBUSY;
        } else if (r == 0 && !(xml = hv_snapshot_xml_build(j.name, jget_str(ctx->params, "description"), memory, d.disks, d.n_disks))) {
                r = job_fail(ctx, -EMEDIUMTYPE, "Cannot snapshot VM '%s': %s.", j.vm.name, hv_last_error());
        } else if (r == 0) {
                job_progress(ctx, 20, memory ? "saving the disks and memory of VM '%s'" : "saving the disks of VM '%s'", j.vm.name);
                job_expect_quiet(ctx, 3600); /* one libvirt call, as long as the memory takes to write */
                r = hv_snapshot_create(conn, j.vm.uuid, xml);
                if (r < 0)
                        job_fail(ctx, r, "Cannot snapshot VM '%s' on host '%s': %s", j.vm.name, j.host.name, hv_last_error());
        } else {
                job_fail(ctx, r, "Cannot read VM '%s' on host '%s': %s", j.vm.name, j.host.name, hv_last_error());
        }
        int64_t count;
        snapjob_sync(&j, &count);
        if (r == 0) {
                job_progress(ctx, 100, "took snapshot '%s' of VM '%s'", j.name, j.vm.name);
                snap_event(&j, "info", "vm.snapshot-created", "Snapshot '%s' of VM '%s' was taken (%s).", j.name, j.vm.name,
                           memory ? "disks and memory" : "disks");
                ctx->result = json_pack("{s:s, s:b, s:I}", "name", j.name, "has_memory", memory, "snapshots", (json_int_t) count);
        }
        snapjob_done(&j);
        return r;
}

/* QEMU will not load an internal snapshot into a disk that carries dirty
 * bitmaps, and a running VM whose revert fails is left shut off: the
 * backup chain gives way. The VM's checkpoints (and their bitmaps) are
 * deleted first, with an event; the next backup of the VM finds its
 * checkpoint gone and is a full one. 0, or negative after job_fail(). */
static int revert_checkpoints_drop(SnapJob *j) {
        size_t n = 0;
        int r = hv_snapshot_checkpoints(inventory_link_conn(j->link), j->vm.uuid, &n);
        if (r < 0)
                return job_fail(j->ctx, r, "Cannot read the checkpoints of VM '%s' on host '%s': %s", j->vm.name, j->host.name,
                                hv_last_error());
        if (n == 0)
                return 0;
        job_progress(j->ctx, 15, "deleting the %zu checkpoint%s of VM '%s' (its disks cannot be reverted with them)", n,
                     n == 1 ? "" : "s", j->vm.name);
        size_t gone = 0;
        r = hv_snapshot_checkpoints_drop(inventory_link_conn(j->link), j->vm.uuid, &gone);
        if (gone > 0)
                snap_event(j, "warning", "vm.backup-chain-broken", "Reverting VM '%s' to snapshot '%s' deleted its %zu checkpoint%s"
                           " (the change tracking of its backups); its next backup is a full one.", j->vm.name, j->name, gone,
                           gone == 1 ? "" : "s");
        if (r < 0)
                return job_fail(j->ctx, r, "Cannot delete the checkpoints of VM '%s' on host '%s' before the revert: %s", j->vm.name,
                                j->host.name, hv_last_error());
        return 0;
}

static int job_snapshot_revert(JobCtx *ctx, void *userdata) {
        SnapJob j = { .ctx = ctx, .inv = userdata };
        int r = snapjob_open(&j);
        if (r < 0)
                return snapjob_done(&j), r;
        HvConn *conn = inventory_link_conn(j.link);
        inventory_link_lock_ops(j.link);
        r = revert_checkpoints_drop(&j);
        if (r == 0) {
                job_progress(ctx, 20, "reverting VM '%s' to snapshot '%s'", j.vm.name, j.name);
                job_expect_quiet(ctx, 3600);
                r = hv_snapshot_revert(conn, j.vm.uuid, j.name, true);
                if (r < 0)
                        job_fail(ctx, r, "Cannot revert VM '%s' to snapshot '%s' on host '%s': %s", j.vm.name, j.name, j.host.name,
                                 hv_last_error());
        }
        int64_t count;
        snapjob_sync(&j, &count);
        inventory_link_unlock_ops(j.link);
        if (r == 0) {
                StoreVm now;
                const char *state = store_vm_get(ctx->st, j.vm.id, &now) == 0 ? now.state : "unknown";
                job_progress(ctx, 100, "VM '%s' is back at snapshot '%s' and %s", j.vm.name, j.name, state);
                snap_event(&j, "info", "vm.snapshot-reverted", "VM '%s' was reverted to snapshot '%s'; it is %s.", j.vm.name, j.name,
                           state);
                ctx->result = json_pack("{s:s, s:s}", "name", j.name, "state", state);
        }
        snapjob_done(&j);
        return r;
}

static int job_snapshot_delete(JobCtx *ctx, void *userdata) {
        SnapJob j = { .ctx = ctx, .inv = userdata };
        int r = snapjob_open(&j);
        if (r < 0)
                return snapjob_done(&j), r;
        HvConn *conn = inventory_link_conn(j.link);
        job_progress(ctx, 20, "deleting snapshot '%s' of VM '%s'", j.name, j.vm.name);
        job_expect_quiet(ctx, 3600);
        r = hv_snapshot_delete(conn, j.vm.uuid, j.name);
        if (r == -ENOENT)
                r = 0; /* gone already: deleting twice is not an error */
        if (r == 0)
                (void) store_snapshot_drop(ctx->st, j.vm.id, j.name);
        else if (r < 0)
                job_fail(ctx, r, "Cannot delete snapshot '%s' of VM '%s' on host '%s': %s", j.name, j.vm.name, j.host.name,
                         hv_last_error());
        int64_t count;
        snapjob_sync(&j, &count);
        if (r == 0) {
                job_progress(ctx, 100, "deleted snapshot '%s' of VM '%s'", j.name, j.vm.name);
                snap_event(&j, "info", "vm.snapshot-deleted", "Snapshot '%s' of VM '%s' was deleted.", j.name, j.vm.name);
                ctx->result = json_pack("{s:s, s:I}", "name", j.name, "snapshots", (json_int_t) count);
        }
        snapjob_done(&j);
        return r;
}

void protect_snapshot_register_jobs(Jobs *jobs, Inventory *inv) {
        /* Not resumable: a create or revert cut short is not safe to repeat
         * blindly (the name may be taken by now, the VM moved on). */
        jobs_register(jobs, "vm.snapshot-create", job_snapshot_create, NULL, inv, false);
        jobs_register(jobs, "vm.snapshot-revert", job_snapshot_revert, NULL, inv, false);
        jobs_register(jobs, "vm.snapshot-delete", job_snapshot_delete, NULL, inv, true);
}
