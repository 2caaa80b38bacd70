/* The job handlers of the inventory: host.refresh and the VM lifecycle.
 * Each one reads its target from the database, talks to the VM's host
 * through a link, and leaves the database matching libvirt — or, when it
 * fails, leaves nothing half-done (a failed create removes what it made). */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "inventory-priv.h"
#include "store/store-ha.h"

/* Holds what every VM job needs: the VM, its host and a live link. */
typedef struct {
        StoreVm vm;
        StoreHost host;
        Link *link;
} VmJob;

static void vmjob_done(Inventory *inv, VmJob *v) {
        link_release(inv, v->link);
        v->link = NULL;
}

static int vmjob_open(Inventory *inv, JobCtx *ctx, VmJob *v) {
        *v = (VmJob) {0};
        if (store_vm_get(ctx->st, ctx->job->target_id, &v->vm) < 0)
                return job_fail(ctx, -ENOENT, "VM '%s' no longer exists.", ctx->job->target_name);
        if (inventory_vm_is_foreign(&v->vm))
                return job_fail(ctx, -EPERM, "VM '%s' belongs to another Armada installation; it is read-only here.", v->vm.name);
        if (v->vm.host_id == 0)
                return job_fail(ctx, -ENXIO, "VM '%s' is not placed on any host.", v->vm.name);
        if (store_host_get(ctx->st, v->vm.host_id, &v->host) < 0)
                return job_fail(ctx, -ENXIO, "The host of VM '%s' no longer exists.", v->vm.name);
        char why[512];
        if (link_acquire(inv, &v->host, &v->link, why, sizeof why) < 0)
                return job_fail(ctx, -EHOSTUNREACH, "Cannot reach host '%s' of VM '%s': %s", v->host.name, v->vm.name, why);
        job_progress(ctx, 10, "connected to host '%s'", v->host.name);
        return 0;
}

/* Reads the domain's state from libvirt into the database; returns it. */
static HvState sync_state(Store *st, VmJob *v) {
        HvState s = HV_STATE_NOSTATE;
        if (hv_domain_state(v->link->conn, v->vm.uuid, &s) == 0)
                (void) store_vm_set_state(st, v->vm.id, hv_state_name(s));
        return s;
}

static void vm_event(Store *st, const StoreVm *vm, const char *severity, const char *kind, const char *fmt, ...) _printf_(5, 6);
static void vm_event(Store *st, const StoreVm *vm, const char *severity, const char *kind, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *msg = NULL;
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (msg)
                (void) store_event_add(st, severity, kind, "vm", vm->id, vm->name, vm->owner_id, msg);
}

static const char *accel_words(const char *domain_type) {
        if (streq(domain_type, "kvm")) return "KVM (hardware virtualization)";
        if (streq(domain_type, "qemu")) return "QEMU TCG (software emulation)";
        return "libvirt test driver";
}

/* ---- vm.create ---- */

/* Phase 1 of a create: the VM's disk of disk_bytes in the host's pool (a
 * cluster member's: the cluster's shared one), recorded and put in spec.
 * 0 and the volume's path in *ret_vol_path, or the job's failure. */
static int create_disk(JobCtx *ctx, VmJob *v, uint64_t disk_bytes, HvDomainSpec *spec, char **ret_vol_path) {
        HvConn *c = v->link->conn;
        /* A cluster member's VMs keep their disks on the cluster's shared
         * storage (one pool per cluster, defined on each member). */
        const char *pool = v->host.pool, *pool_dir = v->host.pool_path[0] ? v->host.pool_path : "/var/lib/libvirt/images/armada";
        char cluster_pool[64];
        int64_t cluster_id;
        _cleanup_free_ char *shared = NULL;
        if (store_cluster_of_host(ctx->st, v->host.id, &cluster_id, &shared) == 0) {
                snprintf(cluster_pool, sizeof cluster_pool, "armada-cluster-%lld", (long long) cluster_id);
                pool = cluster_pool;
                pool_dir = shared;
        }
        _cleanup_free_ char *pool_path = NULL;
        if (hv_pool_ensure(c, pool, pool_dir, &pool_path) < 0)
                return job_fail(ctx, -EIO, "Cannot prepare storage pool '%s' on host '%s': %s", pool, v->host.name, hv_last_error());
        job_progress(ctx, 20, "storage pool '%s' ready", pool);
        _cleanup_free_ char *vol = xasprintf("%s-%.8s-vda.qcow2", v->vm.name, v->vm.uuid);
        int r = hv_volume_create(c, pool, vol, "qcow2", disk_bytes, ret_vol_path);
        if (r < 0)
                return job_fail(ctx, r, "Cannot create the %llu MiB disk of VM '%s' in pool '%s' on host '%s': %s",
                                (unsigned long long) (disk_bytes >> 20), v->vm.name, pool, v->host.name, hv_last_error());
        StoreDisk d = { .target = "vda", .size_bytes = disk_bytes, .owned = true };
        snprintf(d.path, sizeof d.path, "%s", *ret_vol_path);
        (void) store_vm_disk_add(ctx->st, v->vm.id, &d);
        spec->n_disks = 1;
        spec->disks[0] = (HvDisk) { .format = "qcow2", .target = "vda", .capacity_bytes = disk_bytes };
        snprintf(spec->disks[0].path, sizeof spec->disks[0].path, "%s", *ret_vol_path);
        job_progress(ctx, 50, "created disk %s", *ret_vol_path);
        return 0;
}

/* Phase 2: defines the domain (*ret_defined then true) and starts it when
 * asked, under the link's op_lock, keeping the VM's row in step. 0, or the
 * job's failure. */
static int create_define_start(JobCtx *ctx, Inventory *inv, VmJob *v, const HvDomainSpec *spec, bool start, bool *ret_defined) {
        HvConn *c = v->link->conn;
        pthread_mutex_lock(&v->link->op_lock);
        int r = hv_domain_define(c, spec);
        if (r == 0) {
                *ret_defined = true;
                (void) store_vm_update_hw(ctx->st, v->vm.id, v->vm.cpus, v->vm.memory_mib, spec->domain_type);
                /* A VM about to start stays 'creating' (its memory counted
                 * on the host) until it runs: never 'stopped' in between,
                 * which would free its room for a placement meanwhile. */
                if (!start)
                        (void) store_vm_set_state(ctx->st, v->vm.id, "stopped");
        }
        pthread_mutex_unlock(&v->link->op_lock);
        if (r < 0)
                return job_fail(ctx, r, "Cannot define VM '%s' on host '%s': %s", v->vm.name, v->host.name, hv_last_error());
        job_progress(ctx, 80, "defined VM '%s' on host '%s' as %s", v->vm.name, v->host.name, accel_words(spec->domain_type));
        if (!start)
                return 0;
        r = inventory_slot_take(inv, &v->host, INVENTORY_SLOT_START, v->vm.name, false, ctx);
        if (r < 0) {
                snprintf(ctx->error, sizeof ctx->error, "Cancelled while waiting to start; nothing of VM '%s' was left behind.",
                         v->vm.name);
                return r;
        }
        pthread_mutex_lock(&v->link->op_lock);
        r = hv_domain_start(c, v->vm.uuid);
        if (r == 0) sync_state(ctx->st, v);
        pthread_mutex_unlock(&v->link->op_lock);
        inventory_slot_give(inv, v->host.id, INVENTORY_SLOT_START);
        if (r < 0)
                return job_fail(ctx, r, "Cannot start VM '%s' on host '%s': %s", v->vm.name, v->host.name, hv_last_error());
        return 0;
}

/* The end of a create that failed at r: undoes in reverse order (nothing of
 * the VM may remain), tells, and forgets the VM's row. Returns r. */
static int create_undo(JobCtx *ctx, Inventory *inv, VmJob *v, bool defined, const char *vol_path, int r) {
        if (defined) {
                pthread_mutex_lock(&v->link->op_lock);
                (void) hv_domain_undefine(v->link->conn, v->vm.uuid);
                pthread_mutex_unlock(&v->link->op_lock);
        }
        if (vol_path)
                (void) hv_volume_delete(v->link->conn, vol_path);
        vm_event(ctx->st, &v->vm, "error", "vm.create-failed", "VM '%s' was not created: %s", v->vm.name, ctx->error);
        (void) store_vm_delete(ctx->st, v->vm.id);
        vmjob_done(inv, v);
        return r;
}

/* vm.create: the disk, then define and start; on any failure, undo all of
 * it. */
static int job_vm_create(JobCtx *ctx, void *userdata) {
        Inventory *inv = userdata;
        VmJob v;
        int r = vmjob_open(inv, ctx, &v);
        if (r < 0) {
                StoreVm vm;
                if (store_vm_get(ctx->st, ctx->job->target_id, &vm) == 0) {
                        vm_event(ctx->st, &vm, "error", "vm.create-failed", "VM '%s' was not created: %s", vm.name, ctx->error);
                        (void) store_vm_delete(ctx->st, vm.id);
                }
                return r;
        }
        uint64_t disk_bytes = (uint64_t) json_integer_value(json_object_get(ctx->params, "disk_bytes"));
        const char *requested = json_string_value(json_object_get(ctx->params, "domain_type"));
        bool start = json_is_true(json_object_get(ctx->params, "start"));
        const char *dtype = inventory_domain_type(&v.host, requested ? requested : "auto");
        _cleanup_free_ char *vol_path = NULL;
        bool defined = false;

        /* asked by the VM or by the host's preference (set while it had KVM) */
        if (streq(dtype, "kvm") && !streq(v.host.domain_type, "kvm"))
                return create_undo(ctx, inv, &v, defined, vol_path,
                                   job_fail(ctx, -ENOTSUP, "Host '%s' cannot run KVM guests (its libvirt offers no KVM domain type).",
                                            v.host.name));
        char vnc_listen[16], vnc_password[9];
        inventory_vnc_for_host(&v.host, vnc_listen, vnc_password);
        HvDomainSpec spec = {
                .name = v.vm.name, .uuid = v.vm.uuid, .domain_type = dtype, .vcpus = v.vm.cpus,
                .memory_mib = v.vm.memory_mib, .description = v.vm.description[0] ? v.vm.description : NULL, .vnc = true,
                .vnc_listen = vnc_listen, .vnc_password = vnc_password[0] ? vnc_password : NULL,
                .installation_id = inventory_installation_id(inv), .vm_id = v.vm.id,
        };
        if (disk_bytes > 0 && (r = create_disk(ctx, &v, disk_bytes, &spec, &vol_path)) < 0)
                return create_undo(ctx, inv, &v, defined, vol_path, r);
        /* A VM created before NICs existed has no "nic" in its job: none. */
        char nic_net[64] = "", nic_mac[18] = "";
        if (json_is_true(json_object_get(ctx->params, "nic")) && network_default_nic(inv, v.link, &v.host, v.vm.id, nic_net, nic_mac) == 0) {
                spec.network = nic_net;
                spec.network_mac = nic_mac;
        }
        if (job_cancel_requested(ctx)) {
                snprintf(ctx->error, sizeof ctx->error, "Cancelled; nothing of VM '%s' was left behind.", v.vm.name);
                return create_undo(ctx, inv, &v, defined, vol_path, -ECANCELED);
        }
        if ((r = create_define_start(ctx, inv, &v, &spec, start, &defined)) < 0)
                return create_undo(ctx, inv, &v, defined, vol_path, r);
        vm_event(ctx->st, &v.vm, "info", "vm.created", "VM '%s' was created on host '%s' (%u vCPU%s, %llu MiB, %s).", v.vm.name,
                 v.host.name, v.vm.cpus, v.vm.cpus == 1 ? "" : "s", (unsigned long long) v.vm.memory_mib, accel_words(dtype));
        ctx->result = json_pack("{s:I, s:s, s:s, s:s?}", "vm_id", (json_int_t) v.vm.id, "domain_type", dtype,
                                "accelerator", accel_words(dtype), "disk", vol_path);
        if (spec.network)
                json_object_set_new(ctx->result, "nic", json_pack("{s:s, s:s}", "network", nic_net, "mac", nic_mac));
        vmjob_done(inv, &v);
        return 0;
}

/* A create interrupted by a restart may have left a volume or a domain:
 * queue a delete of whatever exists, which also removes the record. */
static void abandon_vm_create(Store *st, const StoreJob *job, void *userdata) {
        Inventory *inv = userdata;
        StoreVm vm;
        if (store_vm_get(st, job->target_id, &vm) < 0)
                return;
        (void) store_vm_set_state(st, vm.id, "failed");
        json_t *p = json_pack("{s:b}", "keep_disks", 0);
        (void) jobs_submit(inv->jobs, "vm.delete", "vm", vm.id, vm.name, job->owner_id, p, NULL);
        json_decref(p);
}

/* ---- lifecycle ---- */

typedef enum { OP_START, OP_STOP, OP_KILL, OP_PAUSE, OP_RESUME } LifeOp;

static int wait_state(JobCtx *ctx, VmJob *v, HvState want, int timeout_ms, bool *ret_cancelled) {
        int64_t deadline = mono_ms() + timeout_ms;
        *ret_cancelled = false;
        for (;;) {
                HvState s;
                if (hv_domain_state(v->link->conn, v->vm.uuid, &s) == 0 && s == want)
                        return 0;
                if (mono_ms() >= deadline)
                        return -ETIMEDOUT;
                if (job_cancel_requested(ctx)) {
                        *ret_cancelled = true;
                        return -ECANCELED;
                }
                struct timespec ts = { 0, 200 * 1000000 };
                nanosleep(&ts, NULL); /* polling libvirt's state: the condition being waited for */
        }
}

static const char *const LIFE_VERBS[] = { "start", "stop", "kill", "pause", "resume" };

/* Phase 2 of a power action: op's libvirt call for a domain in state
 * before, with the link's op_lock held. 0 with *ret_noop when the domain is
 * there already; -EINVAL with *ret_refused (the job failed) when op cannot
 * apply to that state; else the call's result. */
static int life_act(JobCtx *ctx, VmJob *v, LifeOp op, HvState before, bool *ret_noop, bool *ret_refused) {
        HvConn *c = v->link->conn;
        switch (op) {
        case OP_START:
                if (before == HV_STATE_RUNNING || before == HV_STATE_BLOCKED) break;
                return before == HV_STATE_PAUSED ? hv_domain_resume(c, v->vm.uuid) : hv_domain_start(c, v->vm.uuid);
        case OP_STOP:
                if (before == HV_STATE_SHUTOFF) break;
                return hv_domain_stop(c, v->vm.uuid);
        case OP_KILL:
                if (before == HV_STATE_SHUTOFF) break;
                return hv_domain_kill(c, v->vm.uuid);
        case OP_PAUSE:
                if (before == HV_STATE_PAUSED) break;
                if (before != HV_STATE_RUNNING && before != HV_STATE_BLOCKED) {
                        *ret_refused = true;
                        return job_fail(ctx, -EINVAL, "Cannot pause VM '%s': it is %s, not running.", v->vm.name, hv_state_name(before));
                }
                return hv_domain_pause(c, v->vm.uuid);
        case OP_RESUME:
                if (before == HV_STATE_RUNNING) break;
                if (before != HV_STATE_PAUSED) {
                        *ret_refused = true;
                        return job_fail(ctx, -EINVAL, "Cannot resume VM '%s': it is %s, not paused.", v->vm.name, hv_state_name(before));
                }
                return hv_domain_resume(c, v->vm.uuid);
        }
        *ret_noop = true;
        return 0;
}

/* Phase 3 of a stop: waits for the guest to shut down (up to the job's
 * timeout), then powers it off when the job allows (*ret_forced). 0, or the
 * job's failure with the VM's state re-read. */
static int life_wait_shutoff(JobCtx *ctx, Inventory *inv, VmJob *v, bool *ret_forced) {
        json_int_t t = json_integer_value(json_object_get(ctx->params, "timeout_s"));
        int timeout_s = t > 0 ? (int) t : inv->cfg.stop_timeout_s;
        bool force = !json_is_false(json_object_get(ctx->params, "force"));
        job_progress(ctx, 40, "asked the guest to shut down; waiting up to %d s", timeout_s);
        job_expect_quiet(ctx, timeout_s); /* waiting on purpose is not being stuck */
        bool cancelled;
        int r = wait_state(ctx, v, HV_STATE_SHUTOFF, timeout_s * 1000, &cancelled);
        if (r == -ECANCELED) {
                sync_state(ctx->st, v);
                snprintf(ctx->error, sizeof ctx->error, "Cancelled while waiting for VM '%s' to shut down.", v->vm.name);
                return -ECANCELED;
        }
        if (r == -ETIMEDOUT) {
                if (!force) {
                        sync_state(ctx->st, v);
                        return job_fail(ctx, r, "VM '%s' did not shut down within %d s.", v->vm.name, timeout_s);
                }
                job_progress(ctx, 80, "the guest did not shut down within %d s; powering it off", timeout_s);
                pthread_mutex_lock(&v->link->op_lock);
                r = hv_domain_kill(v->link->conn, v->vm.uuid);
                pthread_mutex_unlock(&v->link->op_lock);
                if (r < 0 && r != -ENOENT) {
                        sync_state(ctx->st, v);
                        return job_fail(ctx, r, "Cannot power off VM '%s': %s", v->vm.name, hv_last_error());
                }
                *ret_forced = true;
        }
        pthread_mutex_lock(&v->link->op_lock);
        sync_state(ctx->st, v);
        pthread_mutex_unlock(&v->link->op_lock);
        return 0;
}

/* A power action: take a start slot (start only), read the domain's state,
 * act (life_act), wait for a stop (life_wait_shutoff), and tell. */
static int lifecycle(JobCtx *ctx, Inventory *inv, LifeOp op) {
        VmJob v;
        int r = vmjob_open(inv, ctx, &v);
        if (r < 0)
                return r;
        HvState before = HV_STATE_NOSTATE;
        /* The slot before the link's lock: a start waiting its turn must
         * not hold up reconcile and the other jobs on the host. */
        bool slot = op == OP_START;
        if (slot && (r = inventory_slot_take(inv, &v.host, INVENTORY_SLOT_START, v.vm.name, false, ctx)) < 0) {
                vmjob_done(inv, &v);
                return r;
        }
        pthread_mutex_lock(&v.link->op_lock);
        r = hv_domain_state(v.link->conn, v.vm.uuid, &before);
        if (r == -ENOENT) {
                pthread_mutex_unlock(&v.link->op_lock);
                if (slot)
                        inventory_slot_give(inv, v.host.id, INVENTORY_SLOT_START);
                (void) store_vm_set_state(ctx->st, v.vm.id, "missing");
                vmjob_done(inv, &v);
                return job_fail(ctx, -ENOENT, "Cannot %s VM '%s': host '%s' has no such domain (the VM is missing).",
                                LIFE_VERBS[op], v.vm.name, v.host.name);
        }
        bool noop = false, refused = false, forced = false;
        r = life_act(ctx, &v, op, before, &noop, &refused);
        if (r == 0 && op != OP_STOP)
                sync_state(ctx->st, &v);
        pthread_mutex_unlock(&v.link->op_lock);
        if (slot)
                inventory_slot_give(inv, v.host.id, INVENTORY_SLOT_START);
        if (refused) {
                vmjob_done(inv, &v);
                return r;
        }
        if (r < 0) {
                const char *err = hv_last_error();
                job_fail(ctx, r, "Cannot %s VM '%s' on host '%s': %s", LIFE_VERBS[op], v.vm.name, v.host.name, err);
                sync_state(ctx->st, &v);
                vmjob_done(inv, &v);
                return r;
        }
        if (op == OP_STOP && !noop && (r = life_wait_shutoff(ctx, inv, &v, &forced)) < 0) {
                vmjob_done(inv, &v);
                return r;
        }
        StoreVm now;
        if (store_vm_get(ctx->st, v.vm.id, &now) == 0) {
                job_progress(ctx, 100, noop ? "VM '%s' was already %s" : "VM '%s' is now %s", now.name, now.state);
                if (!noop)
                        vm_event(ctx->st, &now, "info", "vm.state", "VM '%s' on host '%s' is now %s (%s%s).", now.name, v.host.name,
                                 now.state, LIFE_VERBS[op], forced ? ", powered off after the shutdown timeout" : "");
                ctx->result = json_pack("{s:s, s:b, s:b}", "state", now.state, "changed", !noop, "forced", forced);
        }
        vmjob_done(inv, &v);
        return 0;
}

static int job_vm_start(JobCtx *ctx, void *ud) { return lifecycle(ctx, ud, OP_START); }
static int job_vm_stop(JobCtx *ctx, void *ud) { return lifecycle(ctx, ud, OP_STOP); }
static int job_vm_kill(JobCtx *ctx, void *ud) { return lifecycle(ctx, ud, OP_KILL); }
static int job_vm_pause(JobCtx *ctx, void *ud) { return lifecycle(ctx, ud, OP_PAUSE); }
static int job_vm_resume(JobCtx *ctx, void *ud) { return lifecycle(ctx, ud, OP_RESUME); }

/* ---- vm.delete ---- */

static int job_vm_delete(JobCtx *ctx, void *userdata) {
        Inventory *inv = userdata;
        bool keep = json_is_true(json_object_get(ctx->params, "keep_disks"));
        StoreVm vm;
        if (store_vm_get(ctx->st, ctx->job->target_id, &vm) < 0)
                return 0; /* already gone: deleting twice is not an error */
        if (vm.host_id == 0) {
                (void) store_vm_delete(ctx->st, vm.id);
                return 0;
        }
        VmJob v;
        int r = vmjob_open(inv, ctx, &v);
        if (r < 0)
                return r;
        (void) store_vm_set_state(ctx->st, vm.id, "deleting");
        pthread_mutex_lock(&v.link->op_lock);
        r = hv_domain_undefine(v.link->conn, vm.uuid);
        pthread_mutex_unlock(&v.link->op_lock);
        if (r < 0 && r != -ENOENT) {
                job_fail(ctx, r, "Cannot remove VM '%s' from host '%s': %s", vm.name, v.host.name, hv_last_error());
                sync_state(ctx->st, &v);
                vmjob_done(inv, &v);
                return r;
        }
        job_progress(ctx, 50, "removed the domain from host '%s'", v.host.name);
        StoreDisk *disks = NULL;
        int n = store_vm_disks(ctx->st, vm.id, &disks);
        json_t *kept = json_array(), *removed = json_array(), *left = json_array();
        StrBuf left_msg = {0};
        for (int i = 0; i < n; i++) {
                if (keep || !disks[i].owned) {
                        json_array_append_new(kept, json_string(disks[i].path));
                        continue;
                }
                /* Removed only when it is gone: a disk no pool of this host
                 * lists (shared storage another host made) is left in place
                 * and said so, never claimed removed. */
                r = hv_volume_delete(v.link->conn, disks[i].path);
                if (r == 0 || r == -ENOENT) {
                        json_array_append_new(removed, json_string(disks[i].path));
                        continue;
                }
                _cleanup_free_ char *why = r == -ENXIO ? xasprintf("no storage pool on host '%s' holds it", v.host.name)
                                                       : xasprintf("it could not be deleted (%s)", hv_last_error());
                _cleanup_free_ char *line = xasprintf("disk '%s' was left in place: %s", disks[i].path, why);
                log_warn("VM '%s': %s", vm.name, line);
                json_array_append_new(left, json_pack("{s:s, s:s}", "path", disks[i].path, "reason", line));
                strbuf_append(&left_msg, "; ");
                strbuf_append(&left_msg, line);
        }
        free(disks);
        (void) store_vm_delete(ctx->st, vm.id);
        vm_event(ctx->st, &vm, json_array_size(left) ? "warning" : "info", "vm.deleted", "VM '%s' was deleted from host '%s'%s%s.",
                 vm.name, v.host.name, keep ? "; its disks were kept" : "", left_msg.s ? left_msg.s : "");
        if (json_array_size(left))
                job_progress(ctx, 100, "VM '%s' was deleted%s", vm.name, left_msg.s);
        strbuf_free(&left_msg);
        ctx->result = json_pack("{s:o, s:o, s:o}", "disks_removed", removed, "disks_kept", kept, "disks_left", left);
        vmjob_done(inv, &v);
        return 0;
}

/* ---- host.refresh ---- */

static int job_host_refresh(JobCtx *ctx, void *userdata) {
        Inventory *inv = userdata;
        char why[1024];
        int r = inventory_refresh_host(inv, ctx->job->target_id, why, sizeof why);
        if (r < 0)
                return job_fail(ctx, r, "%s", why);
        _cleanup_json_ json_t *h = NULL;
        if (store_host_get_json(ctx->st, ctx->job->target_id, &h) == 0) /* the result is extra: none on an error (logged) */
                ctx->result = json_pack("{s:O?, s:O?, s:O?, s:O?}", "state", json_object_get(h, "state"),
                                        "domain_type", json_object_get(h, "domain_type"), "cpus", json_object_get(h, "cpus"),
                                        "memory_mib", json_object_get(h, "memory_mib"));
        return 0;
}

void inventory_register_jobs(Inventory *inv) {
        jobs_register(inv->jobs, "host.refresh", job_host_refresh, NULL, inv, true);
        jobs_register(inv->jobs, "vm.create", job_vm_create, abandon_vm_create, inv, false);
        jobs_register(inv->jobs, "vm.start", job_vm_start, NULL, inv, true);
        jobs_register(inv->jobs, "vm.stop", job_vm_stop, NULL, inv, true);
        jobs_register(inv->jobs, "vm.kill", job_vm_kill, NULL, inv, true);
        jobs_register(inv->jobs, "vm.pause", job_vm_pause, NULL, inv, true);
        jobs_register(inv->jobs, "vm.resume", job_vm_resume, NULL, inv, true);
        jobs_register(inv->jobs, "vm.delete", job_vm_delete, NULL, inv, true);
        inventory_register_hardware_jobs(inv);
        network_register_jobs(inv);
}
