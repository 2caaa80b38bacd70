/* library_vm_clone() and the vm.clone job: a VM copied into a new one with
 * a new UUID and new MACs, as named phases:
 *
 *   check     the source (readable by the caller, Armada's own, stopped, or
 *             running/paused for a full clone), the new name; a linked clone
 *             stays on the source's host
 *   record    the new VM placed (the named host, the source's host for a
 *             linked clone, else placement in the source's host group) and
 *             recorded in state "creating"
 *   job       the source re-checked (shut off, or running for a full clone);
 *             each disk overlaid (linked), copied on the host (same host) or
 *             downloaded from the source host and uploaded to the target
 *             (another host); the domain defined from the source's
 *             persistent definition with the clone's name, UUID, disks and
 *             VNC, every NIC without its MAC (libvirt gives each a new one)
 *             and everything else as the source has it (hv_domain_xml_clone():
 *             NICs, bridges, models, firmware, boot order, CD-ROMs, maximum
 *             memory and vCPUs); a failure removes all of it.
 *
 * A running VM keeps running: its disks are copied as they were at one
 * instant by libvirt's push-mode backup (hv-clone.h) — QEMU writes the
 * point-in-time copy of every disk into volumes made for it (the clone's own
 * on the same host, temporary ones on the source's host that are streamed
 * over and deleted for another host), with copy-before-write holding the
 * instant while the guest writes on. That is the "snapshot" the clone is
 * made from: it leaves nothing on the source to merge back or remove (an
 * external disk-only snapshot would leave an overlay to block-commit and
 * pivot under the running guest). What the guest had in its page cache and
 * not yet written is not in the copy, as after a power cut; a linked clone
 * needs the source stopped (its disks become the clone's backing files). */
#include "library-priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hv/hv-backup.h"
#include "hv/hv-clone.h"
#include "hv/hv-export.h"
#include "hv/hv-migrate.h"
#include "hv/hv-network.h"
#include "hv/hv-volume.h"
#include "store/store-network.h"

int library_vm_clone(Store *st, Jobs *jobs, const OpCaller *c, const LibraryCloneSpec *spec, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *v = NULL;
        int e = store_vm_get_json(st, spec->vm_id, &v);
        if (e < 0 && e != -ENOENT)
                return op_fail_store(err, e, "the VM");
        if (e < 0 || !op_allowed(st, c, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")))
                return op_fail(err, 404, "not_found", NULL, "VM %lld does not exist.", (long long) spec->vm_id);
        if (!op_allowed_some(c, ACT_CREATE, OBJ_VM))
                return op_deny(st, c, err, "clone", "VM", spec->vm_id, jget_str(v, "name"));
        if ((e = inventory_vm_refuse_foreign(v, err)) < 0)
                return e;
        StoreVm src;
        if ((e = store_vm_get(st, spec->vm_id, &src)) < 0)
                return op_fail_store(err, e, "the VM");
        bool live = streq(src.state, "running") || streq(src.state, "paused");
        if (!streq(src.state, "stopped") && !live)
                return op_fail(err, 409, "conflict", "vm", "VM '%s' is %s; it can be cloned when it is stopped or running.",
                               src.name, src.state);
        if (live && spec->linked)
                return op_fail(err, 409, "conflict", "linked", "VM '%s' is %s; a linked clone needs it stopped (a full clone"
                               " copies it while it runs).", src.name, src.state);
        StoreHost sh;
        if ((e = store_host_get(st, src.host_id, &sh)) < 0)
                return op_fail_store(err, e, "the VM's host");
        if (spec->linked && spec->host && !streq(spec->host, sh.name))
                return op_fail(err, 400, "invalid_argument", "host", "A linked clone stays on the host of VM '%s' ('%s'); give no"
                               " 'host' or make a full clone.", src.name, sh.name);
        StoreDisk *disks = NULL;
        int n = store_vm_disks(st, src.id, &disks);
        uint64_t bytes = 0;
        for (int i = 0; i < n; i++) bytes += disks[i].size_bytes;
        free(disks);
        _cleanup_free_ char *descr = xasprintf("%s clone of %s", spec->linked ? "linked" : "full", src.name);
        LibraryNewVm nv = { .name = spec->name, .cpus = src.cpus, .memory_mib = src.memory_mib,
                            .disk_bytes = spec->linked ? 0 : bytes, .host = spec->host,
                            .host_id = spec->host ? 0 : spec->linked ? sh.id : 0, .group_id = sh.group_id,
                            .origin = "created", .description = descr };
        int64_t id;
        StoreHost h;
        if ((e = library_new_vm_record(st, c, &nv, &id, &h, err)) < 0)
                return e;
        json_t *p = json_pack("{s:I, s:b, s:b}", "source_id", (json_int_t) src.id, "linked", spec->linked, "start", spec->start);
        int64_t job;
        json_t *vm;
        e = library_queue_new_vm(st, jobs, c, "vm.clone", id, spec->name, p, &vm, &job, err);
        json_decref(p);
        if (e < 0)
                return e;
        _cleanup_free_ char *detail = xasprintf("%s clone of %s on %s", spec->linked ? "linked" : "full", src.name, h.name);
        op_audit(st, c, "vm.clone", "vm", id, spec->name, detail, "accepted");
        *ret = json_pack("{s:o, s:o}", "vm", vm, "job", library_job_json(st, job));
        return 0;
}

/* ------------------------------------------------------------------ */
/* the job */

typedef struct {
        LibraryBuild b;
        StoreVm src;
        StoreHost src_host;
        InventoryLink *src_link;     /* the source's host (b.link when the same) */
        bool same_host;
        bool live;                   /* the source runs: its disks are copied at one instant */
        char *xml;                   /* the source's live XML (its disks as they run) */
        HvDomainInfo info;
        char *def_xml;               /* its persistent definition: what the clone is made like */
} Clone;

static int clone_prepare(Clone *k) {
        JobCtx *ctx = k->b.ctx;
        char why[512];
        int64_t sid = jget_int(ctx->params, "source_id");
        if (store_vm_get(ctx->st, sid, &k->src) < 0 || store_host_get(ctx->st, k->src.host_id, &k->src_host) < 0)
                return job_fail(ctx, -ENOENT, "The VM to clone or its host no longer exists.");
        k->same_host = k->src_host.id == k->b.host.id;
        if (k->same_host)
                k->src_link = NULL;
        else if (inventory_link_acquire(k->b.inv, &k->src_host, &k->src_link, why, sizeof why) < 0) {
                k->src_link = NULL;
                return job_fail(ctx, -EHOSTUNREACH, "Cannot reach host '%s' of VM '%s': %s", k->src_host.name, k->src.name, why);
        }
        HvConn *sc = inventory_link_conn(k->same_host ? k->b.link : k->src_link);
        HvState state = HV_STATE_NOSTATE;
        bool linked = json_is_true(json_object_get(ctx->params, "linked"));
        int r = hv_domain_state(sc, k->src.uuid, &state);
        k->live = r == 0 && !linked && (state == HV_STATE_RUNNING || state == HV_STATE_PAUSED);
        if (r < 0 || (state != HV_STATE_SHUTOFF && !k->live))
                return job_fail(ctx, -EBUSY, "VM '%s' must be shut off%s to be cloned; it is %s.", k->src.name,
                                linked ? "" : " or running", hv_state_name(state));
        if (hv_domain_xml_public(sc, k->src.uuid, &k->xml) < 0 || hv_domain_xml_parse(k->xml, &k->info) < 0 ||
            hv_domain_xml_get(sc, k->src.uuid, &k->def_xml) < 0)
                return job_fail(ctx, -EIO, "Cannot read the definition of VM '%s': %s", k->src.name, hv_last_error());
        return 0;
}

/* Disk target of the clone, at path, into spec (recorded as made already). */
static void spec_add_disk(Clone *k, HvDomainSpec *spec, const char *target, const char *fmt, const char *path, uint64_t capacity,
                          const char *how) {
        HvDisk *hd = &spec->disks[spec->n_disks++];
        *hd = (HvDisk) { .capacity_bytes = capacity };
        snprintf(hd->format, sizeof hd->format, "%s", fmt);
        snprintf(hd->target, sizeof hd->target, "%s", target);
        snprintf(hd->path, sizeof hd->path, "%s", path);
        job_progress(k->b.ctx, 20 + (int) (60 * spec->n_disks / HV_MAX_DISKS), "disk %s: %s", target, how);
}

/* The same, recording the volume as made (removed on failure). */
static void clone_add_disk(Clone *k, HvDomainSpec *spec, const char *target, const char *fmt, const char *path, uint64_t capacity,
                           const char *how) {
        library_build_made(&k->b, target, path, capacity);
        spec_add_disk(k, spec, target, fmt, path, capacity, how);
}

/* The source host's file src_path streamed into volume vol of the clone's
 * host (through a local temporary file). 0 and *ret_path, or negative. */
static int clone_stream(Clone *k, const char *src_path, const char *target, const char *vol, char **ret_path) {
        LibraryBuild *b = &k->b;
        HvConn *sc = inventory_link_conn(k->same_host ? b->link : k->src_link);
        _cleanup_free_ char *tmp = xasprintf("%s/armada-clone-%.8s-%s", library_tmp_dir(), b->vm.uuid, target);
        int r = hv_volume_download(sc, src_path, tmp);
        HvConn *up = r == 0 ? library_build_stream_conn(b) : NULL;
        if (r == 0)
                r = up ? hv_volume_upload(up, b->host.pool, vol, tmp, true, ret_path) : -EHOSTUNREACH;
        unlink(tmp);
        return r;
}

/* One disk of the source into a volume of the clone. */
static int clone_disk(Clone *k, const HvDisk *d, bool linked, HvDomainSpec *spec) {
        LibraryBuild *b = &k->b;
        JobCtx *ctx = b->ctx;
        HvConn *tc = inventory_link_conn(b->link), *sc = inventory_link_conn(k->same_host ? b->link : k->src_link);
        bool test = streq(b->host.domain_type, "test");
        const char *fmt = d->format[0] ? d->format : "raw";
        _cleanup_free_ char *vol = xasprintf("%s-%.8s-%s.qcow2", b->vm.name, b->vm.uuid, d->target);
        _cleanup_free_ char *path = NULL;
        uint64_t capacity = 0;
        if (hv_volume_capacity(sc, d->path, &capacity) < 0)
                return job_fail(ctx, -EIO, "Cannot read the size of disk %s of VM '%s': %s", d->target, k->src.name, hv_last_error());
        const char *how;
        int r;
        if (linked) {
                how = "overlay";
                r = hv_volume_create_overlay(tc, b->host.pool, vol, d->path, fmt, capacity, &path);
                fmt = "qcow2";
        } else if ((r = inventory_slot_take(b->inv, &b->host, INVENTORY_SLOT_DISK, NULL, false, ctx)) < 0)
                return r;
        else {
                if (k->same_host || test) {
                        how = "copy on the host";
                        r = test && !k->same_host ? hv_volume_create(tc, b->host.pool, vol, "qcow2", capacity, &path)
                                                  : hv_volume_clone(tc, b->host.pool, vol, d->path, fmt, &path);
                        if (test && !k->same_host)
                                fmt = "qcow2";
                } else {
                        how = "copy streamed between hosts";
                        r = clone_stream(k, d->path, d->target, vol, &path);
                }
                inventory_slot_give(b->inv, b->host.id, INVENTORY_SLOT_DISK);
        }
        if (r < 0)
                return job_fail(ctx, r, "Cannot make disk %s of VM '%s' (%s of '%s'): %s", d->target, b->vm.name, how, d->path,
                                hv_last_error());
        clone_add_disk(k, spec, d->target, fmt, path, capacity, how);
        return 0;
}

/* The copy of a running source's disks: the volumes QEMU writes into. */
typedef struct {
        const char *targets[HV_MAX_DISKS], *skip[HV_MAX_DISKS];
        char *files[HV_MAX_DISKS];
        uint64_t capacity[HV_MAX_DISKS];
        size_t n, n_skip;
        bool temporary;              /* on the source's host, to be streamed over and deleted */
} LiveCopy;

/* Phase "targets" of a live clone: a thin qcow2 volume per disk, of its
 * size, in the clone's pool (same host: the clone's own disks) or in the
 * source host's pool (another host: temporary). */
static int live_targets(Clone *k, LiveCopy *lc) {
        LibraryBuild *b = &k->b;
        HvConn *sc = inventory_link_conn(k->same_host ? b->link : k->src_link);
        lc->temporary = !k->same_host;
        for (size_t i = 0; i < k->info.n_disks; i++) {
                const HvDisk *d = &k->info.disks[i];
                if (d->cdrom || !d->path[0] || lc->n == HV_MAX_DISKS) {
                        lc->skip[lc->n_skip++] = d->target;
                        continue;
                }
                if (hv_volume_capacity(sc, d->path, &lc->capacity[lc->n]) < 0)
                        return job_fail(b->ctx, -EIO, "Cannot read the size of disk %s of VM '%s': %s", d->target, k->src.name,
                                        hv_last_error());
                _cleanup_free_ char *vol = lc->temporary ? xasprintf("armada-clone-tmp-%.8s-%s.qcow2", b->vm.uuid, d->target)
                                                         : xasprintf("%s-%.8s-%s.qcow2", b->vm.name, b->vm.uuid, d->target);
                int r = hv_volume_create(sc, lc->temporary ? k->src_host.pool : b->host.pool, vol, "qcow2", lc->capacity[lc->n],
                                         &lc->files[lc->n]);
                if (r < 0)
                        return job_fail(b->ctx, r, "Cannot make a volume for disk %s of VM '%s' on host '%s': %s", d->target,
                                        b->vm.name, lc->temporary ? k->src_host.name : b->host.name, hv_last_error());
                lc->targets[lc->n++] = d->target;
                if (!lc->temporary)
                        library_build_made(b, d->target, lc->files[lc->n - 1], lc->capacity[lc->n - 1]);
        }
        return 0;
}

/* Phase "copy": QEMU writes every disk as it was at one instant into the
 * targets while the guest runs on; waits for the end, reporting progress.
 * A cancel stops the copy. */
static int live_copy(Clone *k, LiveCopy *lc) {
        JobCtx *ctx = k->b.ctx;
        HvConn *sc = inventory_link_conn(k->same_host ? k->b.link : k->src_link);
        _cleanup_free_ char *xml = hv_copy_xml_build(lc->targets, (const char *const *) lc->files, lc->n, lc->skip, lc->n_skip);
        int r = hv_copy_begin(sc, k->src.uuid, xml);
        if (r == -EBUSY)
                return job_fail(ctx, r, "VM '%s' has another job on host '%s' (a backup or a migration); clone it when that has"
                                " finished.", k->src.name, k->src_host.name);
        if (r < 0)
                return job_fail(ctx, r, "Cannot copy the disks of running VM '%s': %s", k->src.name, hv_last_error());
        job_progress(ctx, 20, "copying the disks of VM '%s' as they are now (it keeps running)", k->src.name);
        for (;;) {
                HvCopyStatus st;
                if ((r = hv_copy_status(sc, k->src.uuid, &st)) < 0) {
                        (void) hv_copy_abort(sc, k->src.uuid);
                        return job_fail(ctx, r, "Cannot follow the copy of the disks of VM '%s': %s", k->src.name, hv_last_error());
                }
                if (!st.active && st.failed)
                        return job_fail(ctx, -EIO, "The copy of the disks of VM '%s' failed: %s", k->src.name, st.error);
                if (!st.active)
                        return 0;
                if (job_cancel_requested(ctx)) {
                        (void) hv_copy_abort(sc, k->src.uuid);
                        snprintf(ctx->error, sizeof ctx->error, "Cancelled; nothing of VM '%s' was left behind.", k->b.vm.name);
                        return -ECANCELED;
                }
                if (st.total > 0)
                        job_progress(ctx, 20 + (int) (60 * st.processed / st.total), "copying the disks of VM '%s': %llu of %llu MiB",
                                     k->src.name, (unsigned long long) (st.processed >> 20), (unsigned long long) (st.total >> 20));
                usleep(200 * 1000);
        }
}

/* A running source's disks into the clone: targets, copy, and for another
 * host the temporary copies streamed over; the temporary volumes go in
 * every case. */
static int clone_live(Clone *k, HvDomainSpec *spec) {
        LibraryBuild *b = &k->b;
        LiveCopy lc = { 0 };
        int r = inventory_slot_take(b->inv, &b->host, INVENTORY_SLOT_DISK, NULL, false, b->ctx);
        if (r < 0)
                return r;
        r = live_targets(k, &lc);
        if (r == 0)
                r = live_copy(k, &lc);
        for (size_t i = 0; r == 0 && i < lc.n; i++) {
                _cleanup_free_ char *path = NULL;
                if (!lc.temporary) {
                        spec_add_disk(k, spec, lc.targets[i], "qcow2", lc.files[i], lc.capacity[i], "copied while the VM runs");
                        continue;
                }
                _cleanup_free_ char *vol = xasprintf("%s-%.8s-%s.qcow2", b->vm.name, b->vm.uuid, lc.targets[i]);
                if ((r = clone_stream(k, lc.files[i], lc.targets[i], vol, &path)) < 0)
                        r = job_fail(b->ctx, r, "Cannot move the copy of disk %s of VM '%s' to host '%s': %s", lc.targets[i],
                                     k->src.name, b->host.name, hv_last_error());
                else
                        clone_add_disk(k, spec, lc.targets[i], "qcow2", path, lc.capacity[i],
                                       "copied while the VM runs, streamed between hosts");
        }
        inventory_slot_give(b->inv, b->host.id, INVENTORY_SLOT_DISK);
        HvConn *sc = inventory_link_conn(k->same_host ? b->link : k->src_link);
        for (size_t i = 0; i < lc.n; i++) {
                if (lc.temporary && hv_volume_delete(sc, lc.files[i]) < 0 && r == 0)
                        log_warn("cannot remove the temporary copy '%s' on host '%s': %s", lc.files[i], k->src_host.name,
                                 hv_last_error());
                free(lc.files[i]);
        }
        return r;
}

/* The clone's definition (hv_domain_xml_clone()) in *ret, with its NICs:
 * each of the source's definition in order, one on a network with a fresh
 * MAC recorded for the clone (the inventory lists them, placement follows
 * their networks), one of another kind (a bridge) with a MAC libvirt
 * picks. 0 or the job's failure. */
static int clone_xml(Clone *k, const HvDomainSpec *spec, char **ret) {
        JobCtx *ctx = k->b.ctx;
        HvNic nics[HV_MAX_NICS];
        size_t n = 0;
        if (hv_domain_nics(k->def_xml, nics, &n) < 0)
                return job_fail(ctx, -EIO, "Cannot read the network cards of VM '%s': %s", k->src.name, hv_last_error());
        char macs[HV_MAX_NICS][18];
        const char *use[HV_MAX_NICS] = { NULL };
        for (size_t i = 0; i < n; i++) {
                if (!streq(nics[i].type, "network") || !nics[i].source[0])
                        continue;
                int r = -EEXIST;
                for (int tries = 0; r == -EEXIST && tries < 16; tries++) {
                        hv_mac_random(macs[i]);
                        r = store_vm_nic_insert(ctx->st, k->b.vm.id, macs[i], nics[i].source, nics[i].model[0] ? nics[i].model : "virtio");
                }
                if (r < 0)
                        return job_fail(ctx, r, "Cannot record network card %zu of VM '%s'.", i + 1, k->b.vm.name);
                use[i] = macs[i];
        }
        *ret = hv_domain_xml_clone(k->def_xml, spec, use, n);
        if (!*ret)
                return job_fail(ctx, -EINVAL, "Cannot make the definition of VM '%s' from that of VM '%s': %s", k->b.vm.name,
                                k->src.name, hv_last_error());
        return 0;
}

static int job_vm_clone(JobCtx *ctx, void *userdata) {
        Clone k = { 0 };
        bool linked = json_is_true(json_object_get(ctx->params, "linked"));
        int r = library_build_begin(&k.b, userdata, ctx);
        if (r == 0)
                r = clone_prepare(&k);
        char vnc_listen[16], vnc_password[9];
        inventory_vnc_for_host(&k.b.host, vnc_listen, vnc_password);
        /* The clone's own parts; the rest of its definition is the source's. */
        HvDomainSpec spec = { .name = k.b.vm.name, .uuid = k.b.vm.uuid, .domain_type = inventory_domain_type(&k.b.host, "auto"),
                              .vcpus = k.src.cpus ? k.src.cpus : 1, .memory_mib = k.src.memory_mib, .description = k.b.vm.description,
                              .vnc = true, .vnc_listen = vnc_listen,
                              .vnc_password = vnc_password[0] ? vnc_password : NULL,
                              .installation_id = inventory_installation_id(k.b.inv), .vm_id = k.b.vm.id };
        /* the test driver has no disk data (nor backups): its copies are made alike */
        if (r == 0 && k.live && !streq(k.b.host.domain_type, "test"))
                r = clone_live(&k, &spec);
        else
                for (size_t i = 0; r == 0 && i < k.info.n_disks; i++)
                        if (!k.info.disks[i].cdrom && k.info.disks[i].path[0] && spec.n_disks < HV_MAX_DISKS)
                                r = clone_disk(&k, &k.info.disks[i], linked, &spec);
        if (r == 0 && job_cancel_requested(ctx)) {
                snprintf(ctx->error, sizeof ctx->error, "Cancelled; nothing of VM '%s' was left behind.", k.b.vm.name);
                r = -ECANCELED;
        }
        _cleanup_free_ char *xml = NULL;
        if (r == 0)
                r = clone_xml(&k, &spec, &xml);
        if (r == 0)
                r = library_build_define_xml(&k.b, &spec, xml, json_is_true(json_object_get(ctx->params, "start")));
        k.src_link = inventory_link_unref(k.src_link);
        free(k.xml);
        free(k.def_xml);
        if (r < 0)
                return library_build_undo(&k.b, "vm.clone", r);
        _cleanup_free_ char *msg = xasprintf("VM '%s' was cloned from VM '%s' (%s) onto host '%s'.", k.b.vm.name, k.src.name,
                                             linked ? "linked" : "full copy", k.b.host.name);
        (void) store_event_add(ctx->st, "info", "vm.cloned", "vm", k.b.vm.id, k.b.vm.name, k.b.vm.owner_id, msg);
        ctx->result = json_pack("{s:I, s:s, s:s, s:b, s:I, s:b}", "vm_id", (json_int_t) k.b.vm.id, "host", k.b.host.name, "source",
                                k.src.name, "linked", linked, "disks", (json_int_t) spec.n_disks, "source_running", k.live);
        library_build_end(&k.b);
        return 0;
}

void library_register_clone_jobs(Jobs *jobs, Inventory *inv) {
        jobs_register(jobs, "vm.clone", job_vm_clone, library_build_abandon, inv, false);
}
