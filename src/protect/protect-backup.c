/* protect-backup: backups of running and stopped VMs into a datastore, as the job
 * vm.backup, in phases:
 *
 *   prepare   the VM, its host and link, the datastore; a running VM is read
 *             as it runs; a stopped one has its QEMU started paused for the
 *             job (offline: the host must not be in maintenance and must
 *             have the VM's memory free, reserved through placement)
 *   chain     the previous point and whether an incremental can follow it
 *             (same host, its checkpoint still there, same disks, the point
 *             still in the datastore); otherwise full, with an event why
 *   begin     end any backup job a killed armadad left on the host, freeze
 *             the guest's file systems when its agent answers, begin the
 *             pull-mode backup with a new checkpoint, thaw
 *   read      every disk over NBD into the new point (protect-nbd.c)
 *   finish    end the host's job; write the manifest (last: until then no
 *             point exists); index it; drop the checkpoints no datastore's
 *             next incremental starts from (one chain per datastore)
 *
 *   unstart   (offline only, always, also after a failure) destroy the
 *             paused QEMU, wait until the domain is shut off, write the
 *             VM's state back and release the memory reservation
 *
 * A failure after begin ends the host's job and deletes the new checkpoint
 * (libvirt merges its bitmap into the previous one, so the next
 * incremental still sees every change).
 *
 * An offline backup's paused QEMU never shows as running: the job holds
 * the VM (one job per target), so reconcile leaves its record alone until
 * unstart has shut the domain off and written "stopped" back; its guest
 * never runs (no agent to freeze), and the point is "offline"-consistent
 * (the disks of a VM shut down cleanly). */
#include "protect-priv.h"


#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hv/hv-backup.h"
#include "place/place.h"
#include "placement/placement.h"
#include "store/store-protect.h"
#include "util/util.h"

#define CHECKPOINT_PREFIX "armada-"
#define NBD_PORT_MIN 10810
#define NBD_PORT_SPAN 2000

typedef struct Backup {
        JobCtx *ctx;
        Inventory *inv;
        StoreVm vm;
        StoreHost host;
        InventoryLink *link;
        char ds_name[128];
        ChunkStore *store;
        char point_id[32];
        char checkpoint[176];   /* armada-<datastore>-<point id>: one chain per datastore */
        json_t *prev;            /* the previous point's index row, when an incremental follows it */
        Point *base;
        char full_reason[512];   /* why full, "" when incremental */
        HvBackupDisk disks[HV_BACKUP_MAX_DISKS];
        size_t n_disks;
        char *domain_xml;
        char nbd_addr[256];
        unsigned nbd_port;
        bool begun;
        bool offline;            /* the VM was shut off: its QEMU was started paused for the job */
        bool reserved;           /* its memory is reserved on the host (placement) */
        const char *consistency;
        ProtectCounters cnt;
        int64_t t0;
        Point *point;
} Backup;

static int64_t vm_group(Store *st, const StoreVm *vm) {
        _cleanup_json_ json_t *v = NULL;
        return store_vm_get_json(st, vm->id, &v) == 0 ? jget_int(v, "group_id") : 0;
}

static void backup_event(Backup *b, const char *severity, const char *kind, const char *msg) {
        (void) store_event_add(b->ctx->st, severity, kind, "vm", b->vm.id, b->vm.name, b->vm.owner_id, msg);
}

/* ---- offline: a stopped VM's QEMU, started paused ---- */

/* Whether stopped VM vm's QEMU may be started paused on its host h for a
 * backup: the host must be "ok" (-EBUSY for maintenance or any other state)
 * and have the VM's memory free as placement counts it (-ENOSPC, placement's
 * reason in why). With reserve, the memory is then reserved on h (under the
 * placement lock, so no placement counts the same room) until
 * placement_release(). 0 or negative, the sentence in why. */
static int protect_offline_room(Store *st, const StoreVm *vm, const StoreHost *h, bool reserve, char *why, size_t why_size) {
        if (streq(h->state, "maintenance")) {
                snprintf(why, why_size, "Host '%s' is in maintenance mode; the QEMU of stopped VM '%s' is not started on it "
                         "for a backup.", h->name, vm->name);
                return -EBUSY;
        }
        if (!streq(h->state, "ok")) {
                snprintf(why, why_size, "Host '%s' is %s; the QEMU of stopped VM '%s' cannot be started on it for a backup.",
                         h->name, h->state, vm->name);
                return -EBUSY;
        }
        PlacementDemand d = { .cpus = vm->cpus, .memory_mib = vm->memory_mib, .vm_id = vm->id, .vm_name = vm->name };
        int r = reserve ? placement_lock(st) : 0;
        if (r < 0) {
                snprintf(why, why_size, "Cannot take the placement lock to reserve the memory of VM '%s'.", vm->name);
                return r;
        }
        PlacementRating *rt = NULL;
        int n = placement_rate(st, h->group_id, &d, &rt);
        r = n < 0 ? n : 0;
        if (n < 0)
                snprintf(why, why_size, "Cannot rate host '%s' for VM '%s' (error %d).", h->name, vm->name, n);
        for (int i = 0; i < n; i++)
                if (rt[i].host_id == h->id && (rt[i].why & PLACE_WHY_MEMORY)) {
                        snprintf(why, why_size, "Cannot start the QEMU of stopped VM '%s' paused on host '%s' for a backup: %s.",
                                 vm->name, h->name, rt[i].reason);
                        r = -ENOSPC;
                }
        free(rt);
        if (r == 0 && reserve && (r = placement_reserve(st, &d, h->id)) < 0)
                snprintf(why, why_size, "Cannot reserve the memory of VM '%s' on host '%s'.", vm->name, h->name);
        return reserve ? placement_unlock(st, r) : r;
}

/* Prepare's part for a shut-off VM: room on the host, then its QEMU
 * started paused (the guest does not run). */
static int backup_start_paused(Backup *b) {
        JobCtx *ctx = b->ctx;
        char why[768] = "";
        int r = protect_offline_room(ctx->st, &b->vm, &b->host, true, why, sizeof why);
        if (r < 0)
                return job_fail(ctx, r, "%s", why);
        b->reserved = true;
        /* Recorded before the start: an armadad killed from here on finds
         * the QEMU it left running at its next start (protect_backup_recover). */
        if ((r = store_backup_offline_set(ctx->st, b->vm.id, b->host.id, b->vm.uuid, ctx->job->id)) < 0)
                return job_fail(ctx, r, "Cannot record the offline backup of VM '%s'; its QEMU was not started.", b->vm.name);
        if ((r = hv_domain_start_paused(inventory_link_conn(b->link), b->vm.uuid)) < 0) {
                (void) store_backup_offline_clear(ctx->st, b->vm.id);
                return job_fail(ctx, r, "Cannot start the QEMU of stopped VM '%s' paused on host '%s' for a backup: %s", b->vm.name,
                                b->host.name, hv_last_error());
        }
        b->offline = true;
        job_progress(ctx, 4, "VM '%s' is shut off: its QEMU was started paused for an offline backup", b->vm.name);
        return 0;
}

/* Destroys the QEMU of VM uuid on c and waits (up to 10 s) until the
 * domain is shut off: its last state read. */
static HvState destroy_until_shut_off(HvConn *c, const char *uuid, const char *name) {
        HvState st = HV_STATE_NOSTATE;
        for (int attempt = 0; attempt < 50; attempt++) {
                if (hv_domain_state(c, uuid, &st) == 0 && st == HV_STATE_SHUTOFF)
                        break;
                int r = attempt % 10 == 0 ? hv_domain_kill(c, uuid) : 0;
                if (r < 0 && r != -EBUSY)
                        log_warn("VM '%s': cannot destroy the paused QEMU of its offline backup: %s", name, hv_last_error());
                struct timespec ts = { 0, 200 * 1000000 };
                nanosleep(&ts, NULL); /* polling libvirt's state: the condition being waited for */
        }
        return st;
}

/* Unstart, always after an offline backup (also a failed one): the paused
 * QEMU is destroyed and the domain waited for until it is shut off (the
 * job still holds the VM, so reconcile has not touched its record), then
 * the VM's state is written back, the offline record cleared and the
 * memory reservation released. */
static void backup_unstart(Backup *b) {
        if (b->offline) {
                HvConn *c = inventory_link_conn(b->link);
                if (b->begun)
                        (void) hv_backup_end(c, b->vm.uuid, NULL);
                HvState st = destroy_until_shut_off(c, b->vm.uuid, b->vm.name);
                if (st == HV_STATE_SHUTOFF)
                        (void) store_backup_offline_clear(b->ctx->st, b->vm.id);
                else {
                        _cleanup_free_ char *msg = xasprintf("The paused QEMU started for the offline backup of VM '%s' could not "
                                                             "be destroyed on host '%s'; it may still be there.", b->vm.name,
                                                             b->host.name);
                        backup_event(b, "error", "backup.unstart-failed", msg);
                }
                (void) store_vm_set_state(b->ctx->st, b->vm.id, st == HV_STATE_SHUTOFF ? b->vm.state : hv_state_name(st));
                b->offline = false;
        }
        if (b->reserved)
                (void) placement_release(b->ctx->st, b->vm.id, b->host.id);
        b->reserved = false;
}

/* ---- prepare ---- */

static int backup_prepare(Backup *b) {
        JobCtx *ctx = b->ctx;
        char why[512];
        int r = store_vm_get(ctx->st, ctx->job->target_id, &b->vm);
        if (r < 0)
                return job_fail(ctx, r, "VM '%s' no longer exists.", ctx->job->target_name);
        if (store_host_get(ctx->st, b->vm.host_id, &b->host) < 0)
                return job_fail(ctx, -ENXIO, "The host of VM '%s' no longer exists.", b->vm.name);
        const char *ds = json_string_value(json_object_get(ctx->params, "datastore"));
        _cleanup_free_ char *path = NULL;
        r = protect_datastore_path(ctx->st, ds, b->ds_name, sizeof b->ds_name, &path);
        if (r == -EADDRNOTAVAIL)
                return job_fail(ctx, r, "There are several datastores and the backup of VM '%s' names none.", ctx->job->target_name);
        if (r < 0 && !ds)
                return job_fail(ctx, r, "There is no datastore to back VM '%s' up into.", ctx->job->target_name);
        if (r < 0)
                return job_fail(ctx, r, "Datastore '%s' no longer exists.", ds);
        r = chunkstore_open(path, false, &b->store);
        if (r < 0)
                return job_fail(ctx, r, "Cannot open datastore '%s': %s.", b->ds_name, strerror(-r));
        if (inventory_link_acquire(b->inv, &b->host, &b->link, why, sizeof why) < 0)
                return job_fail(ctx, -EHOSTUNREACH, "Cannot reach host '%s' of VM '%s': %s", b->host.name, b->vm.name, why);
        HvConn *c = inventory_link_conn(b->link);
        HvState st;
        if ((r = hv_domain_state(c, b->vm.uuid, &st)) < 0)
                return job_fail(ctx, r, "Cannot read the state of VM '%s': %s", b->vm.name, hv_last_error());
        if (st != HV_STATE_RUNNING && st != HV_STATE_PAUSED && st != HV_STATE_SHUTOFF)
                return job_fail(ctx, -EBUSY, "VM '%s' is %s: only a running, paused or shut-off VM can be backed up.", b->vm.name,
                                hv_state_name(st));
        if (st == HV_STATE_SHUTOFF && (r = backup_start_paused(b)) < 0)
                return r;
        if ((r = hv_domain_xml_public(c, b->vm.uuid, &b->domain_xml)) < 0)
                return job_fail(ctx, r, "Cannot read the definition of VM '%s': %s", b->vm.name, hv_last_error());
        if ((r = hv_backup_disks(b->domain_xml, b->disks, &b->n_disks)) < 0)
                return job_fail(ctx, r, "Cannot back up VM '%s': %s.", b->vm.name, hv_last_error());
        if (b->n_disks == 0)
                return job_fail(ctx, -ENOMEDIUM, "VM '%s' has no qcow2 disk to back up (backups need qcow2 disks for their "
                                "dirty bitmaps).", b->vm.name);
        char host[256] = "";
        (void) hv_uri_host(b->host.uri, host, sizeof host);
        snprintf(b->nbd_addr, sizeof b->nbd_addr, "%s", host[0] ? host : "127.0.0.1");
        const ProtectSettings *ps = protect_settings();
        if (ps->backup_tls && (r = protect_backup_tls_check(ps->backup_tls_dir, why, sizeof why)) < 0)
                return job_fail(ctx, r, "Cannot back up VM '%s' over TLS (armadad --backup-tls): %s.", b->vm.name, why);
        job_progress(ctx, 5, "connected to host '%s'", b->host.name);
        return 0;
}

/* ---- chain ---- */

static bool host_has_checkpoint(Backup *b, const char *name) {
        _cleanup_free_ char *list = NULL;
        if (hv_checkpoint_list(inventory_link_conn(b->link), b->vm.uuid, &list) < 0)
                return false;
        for (char *save = NULL, *t = strtok_r(list, "\n", &save); t; t = strtok_r(NULL, "\n", &save))
                if (streq(t, name))
                        return true;
        return false;
}

/* Whether the disks (targets and sources) are those of the previous point. */
static bool same_disks(Backup *b, const Point *prev) {
        json_t *src = point_meta(prev, "sources");
        if (json_object_size(src) != b->n_disks)
                return false;
        for (size_t i = 0; i < b->n_disks; i++) {
                const char *s = json_string_value(json_object_get(src, b->disks[i].target));
                if (!s || !streq(s, b->disks[i].source))
                        return false;
        }
        return true;
}

static void backup_chain(Backup *b) {
        JobCtx *ctx = b->ctx;
        _cleanup_json_ json_t *last = NULL;
        if (store_backup_point_last(ctx->st, b->vm.uuid, b->ds_name, &last) < 0) {
                snprintf(b->full_reason, sizeof b->full_reason, "first backup of VM '%s' into datastore '%s'", b->vm.name, b->ds_name);
                return;
        }
        const char *pid = jget_str(last, "point_id"), *cp = jget_str(last, "checkpoint");
        char *reason = b->full_reason;
        size_t rs = sizeof b->full_reason;
        Point *prev = NULL;
        if (jget_int(last, "host_id") != b->host.id)
                snprintf(reason, rs, "VM '%s' moved to host '%s' since point %s: its checkpoint stayed behind", b->vm.name,
                         b->host.name, pid);
        else if (!cp || !host_has_checkpoint(b, cp))
                snprintf(reason, rs, "checkpoint '%s' of point %s is missing on host '%s' (bitmap lost or VM redefined)",
                         cp ? cp : "", pid, b->host.name);
        else if (point_open(b->store, b->vm.uuid, pid, &prev) < 0)
                snprintf(reason, rs, "point %s is missing from datastore '%s'", pid, b->ds_name);
        else if (!same_disks(b, prev))
                snprintf(reason, rs, "the disks of VM '%s' changed since point %s", b->vm.name, pid);
        if (reason[0]) {
                point_free(prev);
                _cleanup_free_ char *msg = xasprintf("The next backup of VM '%s' is full: %s.", b->vm.name, reason);
                backup_event(b, "warning", "backup.chain-broken", msg);
                return;
        }
        b->base = prev;
        b->prev = json_incref(last);
        snprintf(b->checkpoint, sizeof b->checkpoint, "%s", cp); /* the incremental's base, until begin renames */
}

/* ---- begin ---- */

static int backup_begin(Backup *b) {
        JobCtx *ctx = b->ctx;
        HvConn *c = inventory_link_conn(b->link);
        bool stale = false;
        if (hv_backup_end(c, b->vm.uuid, &stale) == 0 && stale)
                backup_event(b, "warning", "backup.stale-ended", "A backup job left on the host by an earlier run was ended.");
        char base_cp[sizeof b->checkpoint];
        snprintf(base_cp, sizeof base_cp, "%s", b->prev ? b->checkpoint : "");
        /* The datastore in the name: a point of the same id in another
         * datastore (the same second) has a checkpoint of its own, which the
         * stale-name check below must not take for this one's. */
        snprintf(b->checkpoint, sizeof b->checkpoint, CHECKPOINT_PREFIX "%s-%s", b->ds_name, b->point_id);
        /* A run killed after its begin left this name's checkpoint behind
         * without a point (point ids are unique, see point_id_pick()): it
         * goes, or the begin would fail on "already exists". */
        if (host_has_checkpoint(b, b->checkpoint)) {
                if (hv_checkpoint_delete(c, b->vm.uuid, b->checkpoint) < 0)
                        return job_fail(ctx, -EEXIST, "Cannot delete the stale checkpoint '%s' of VM '%s': %s", b->checkpoint,
                                        b->vm.name, hv_last_error());
                log_info("VM '%s': deleted the stale checkpoint '%s' of a killed backup", b->vm.name, b->checkpoint);
        }
        unsigned char rnd[12];
        char token[25];
        if (random_bytes(rnd, sizeof rnd) < 0)
                return job_fail(ctx, -EIO, "Cannot draw random bytes for the export name.");
        hex_encode(rnd, sizeof rnd, token);
        HvBackupSpec spec = { .checkpoint = b->checkpoint, .incremental = base_cp[0] ? base_cp : NULL, .nbd_addr = b->nbd_addr,
                              .export_token = token, .tls = protect_settings()->backup_tls };
        _cleanup_free_ char *cxml = hv_checkpoint_xml_build(b->checkpoint, b->disks, b->n_disks);
        /* Application-consistent when the guest agent freezes the file
         * systems around the instant the backup starts; offline when the
         * guest is not running at all (nothing to freeze). */
        bool frozen = !b->offline && hv_domain_fs_freeze(c, b->vm.uuid) == 0;
        _cleanup_free_ char *desc = NULL;
        int r = -EADDRINUSE;
        /* libvirt 9 wants the TCP port named: a random one of
         * NBD_PORT_MIN + [0, NBD_PORT_SPAN), another when it is taken. */
        for (int attempt = 0; attempt < 4 && r < 0 && r != -EBUSY && r != -ENOENT && r != -EOPNOTSUPP; attempt++) {
                uint16_t rp = 0;
                if (random_bytes(&rp, sizeof rp) < 0)
                        break;
                spec.nbd_port = NBD_PORT_MIN + rp % NBD_PORT_SPAN;
                _cleanup_free_ char *bxml = hv_backup_xml_build(&spec, b->disks, b->n_disks);
                r = hv_backup_begin(c, b->vm.uuid, bxml, cxml, &desc);
        }
        if (frozen)
                (void) hv_domain_fs_thaw(c, b->vm.uuid);
        b->consistency = b->offline ? "offline" : frozen ? "application" : "crash";
        if (r < 0)
                return job_fail(ctx, r, "Cannot begin the backup of VM '%s' on host '%s': %s", b->vm.name, b->host.name,
                                hv_last_error());
        b->begun = true;
        if (hv_backup_xml_port(desc, &b->nbd_port) < 0 || b->nbd_port == 0)
                return job_fail(ctx, -EPROTO, "The backup of VM '%s' has no NBD port.", b->vm.name);
        job_progress(ctx, 10, "%s backup begun (%s-consistent)", b->prev ? "incremental" : "full", b->consistency);
        return 0;
}

/* ---- read ---- */

typedef struct {
        Backup *b;
        unsigned disk, n_disks;
} ReadProgress;

static bool read_progress(uint64_t done, uint64_t total, void *userdata) {
        ReadProgress *p = userdata;
        JobCtx *ctx = p->b->ctx;
        if (job_cancel_requested(ctx))
                return false;
        if (done % 8 == 0 || done == total) {
                int pct = 10 + (int) (80 * (p->disk + (total ? (double) done / (double) total : 1.0)) / p->n_disks);
                job_progress(ctx, pct, "disk %u/%u: %" PRIu64 "/%" PRIu64 " chunks read, %" PRIu64 " MiB new",
                             p->disk + 1, p->n_disks, done, total, p->b->cnt.bytes_written >> 20);
        }
        return true;
}

static int backup_read_disk(Backup *b, size_t i) {
        JobCtx *ctx = b->ctx;
        char why[512] = "";
        const ProtectSettings *ps = protect_settings();
        ProtectNbdSource src = { .host = b->nbd_addr, .port = b->nbd_port, .export_name = b->disks[i].export_name,
                                 .bitmap = b->disks[i].bitmap, .tls_dir = ps->backup_tls ? ps->backup_tls_dir : NULL };
        ProtectNbd *n = NULL;
        int r = protect_nbd_open(&src, &n, why, sizeof why);
        if (r < 0)
                return job_fail(ctx, r, "Cannot read disk '%s' of VM '%s': %s.", b->disks[i].target, b->vm.name, why);
        uint64_t size = protect_nbd_size(n);
        bool incremental = b->base != NULL;
        if (incremental) {
                /* A disk whose size changed keeps no chunk of the base: read all of it. */
                bool same = false;
                for (unsigned k = 0; k < point_disk_count(b->base); k++)
                        if (streq(point_disk_target(b->base, k), b->disks[i].target) && point_disk_size(b->base, k) == size)
                                same = true;
                if (!same) {
                        protect_nbd_close(n);
                        n = NULL;
                        src.bitmap = NULL;
                        incremental = false;
                        if ((r = protect_nbd_open(&src, &n, why, sizeof why)) < 0)
                                return job_fail(ctx, r, "Cannot read disk '%s' of VM '%s': %s.", b->disks[i].target, b->vm.name, why);
                }
        }
        unsigned idx;
        r = point_add_disk(b->point, b->disks[i].target, size, &idx);
        if (r < 0) {
                protect_nbd_close(n);
                return job_fail(ctx, r, "Cannot add disk '%s' to the point: %s.", b->disks[i].target, strerror(-r));
        }
        ReadProgress p = { .b = b, .disk = (unsigned) i, .n_disks = (unsigned) b->n_disks };
        r = protect_nbd_copy(n, b->store, b->point, idx, incremental, &b->cnt, read_progress, &p, why, sizeof why);
        protect_nbd_close(n);
        if (r == -ECANCELED)
                return job_fail(ctx, r, "Cancelled; no point of VM '%s' was made.", b->vm.name);
        if (r < 0)
                return job_fail(ctx, r, "Cannot back up disk '%s' of VM '%s': %s.", b->disks[i].target, b->vm.name, why);
        return 0;
}

static int backup_read(Backup *b) {
        int r = point_new(b->store, b->vm.uuid, b->point_id, b->base, &b->point);
        if (r < 0)
                return job_fail(b->ctx, r, "Cannot start point %s of VM '%s': %s.", b->point_id, b->vm.name, strerror(-r));
        for (size_t i = 0; i < b->n_disks; i++)
                if ((r = backup_read_disk(b, i)) < 0)
                        return r;
        return 0;
}

/* ---- finish ---- */

static json_t *counters_json(const Backup *b, int64_t ms) {
        double rate = ms > 0 ? (double) b->cnt.bytes_read / ((double) ms / 1000.0) : 0;
        return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "chunks_total", (json_int_t) b->cnt.chunks_total,
                         "chunks_read", (json_int_t) b->cnt.chunks_read, "chunks_zero", (json_int_t) b->cnt.chunks_zero,
                         "chunks_new", (json_int_t) b->cnt.chunks_new, "bytes_read", (json_int_t) b->cnt.bytes_read,
                         "bytes_written", (json_int_t) b->cnt.bytes_written, "duration_ms", (json_int_t) ms,
                         "read_rate_bytes_s", rate);
}

/* Whether checkpoint name is the base of some datastore's next incremental
 * (the newest point's of each datastore, as the index says; this backup's
 * own is among them once indexed). */
static bool checkpoint_in_use(const Backup *b, json_t *in_use, const char *name) {
        if (streq(name, b->checkpoint))
                return true;
        size_t i;
        json_t *row;
        json_array_foreach(in_use, i, row)
                if (streq(jget_str(row, "checkpoint"), name))
                        return true;
        return false;
}

/* Drops Armada's checkpoints of the VM that no datastore's next incremental
 * starts from: the older points' of this datastore, and any left by a
 * datastore no longer registered. Each datastore keeps its own chain (a VM
 * backed up to A, then B, then A stays incremental in both); libvirt
 * merges the bitmaps between a checkpoint and the newest one when an
 * incremental starts from an older one. When the index cannot be read,
 * nothing is dropped (a lingering bitmap costs little; a dropped base
 * costs a full backup). */
static void drop_old_checkpoints(Backup *b) {
        HvConn *c = inventory_link_conn(b->link);
        _cleanup_free_ char *list = NULL;
        _cleanup_json_ json_t *in_use = NULL;
        if (store_backup_checkpoints_in_use(b->ctx->st, b->vm.uuid, &in_use) < 0 || hv_checkpoint_list(c, b->vm.uuid, &list) < 0)
                return;
        for (char *save = NULL, *t = strtok_r(list, "\n", &save); t; t = strtok_r(NULL, "\n", &save))
                if (strncmp(t, CHECKPOINT_PREFIX, strlen(CHECKPOINT_PREFIX)) == 0 && !checkpoint_in_use(b, in_use, t) &&
                    hv_checkpoint_delete(c, b->vm.uuid, t) < 0)
                        log_warn("VM '%s': cannot delete old checkpoint '%s': %s", b->vm.name, t, hv_last_error());
}

static int backup_finish(Backup *b) {
        JobCtx *ctx = b->ctx;
        HvConn *c = inventory_link_conn(b->link);
        (void) hv_backup_end(c, b->vm.uuid, NULL);
        b->begun = false;
        int64_t ms = now_ms() - b->t0;
        json_t *sources = json_object();
        uint64_t size = 0;
        for (size_t i = 0; i < b->n_disks; i++)
                json_object_set_new(sources, b->disks[i].target, json_string(b->disks[i].source));
        for (unsigned k = 0; k < point_disk_count(b->point); k++)
                size += point_disk_size(b->point, k);
        json_t *counters = counters_json(b, ms);
        (void) point_set_meta(b->point, "vm_name", json_string(b->vm.name));
        (void) point_set_meta(b->point, "domain_xml", json_string(b->domain_xml));
        (void) point_set_meta(b->point, "full", json_boolean(!b->base));
        (void) point_set_meta(b->point, "full_reason", b->base ? json_null() : json_string(b->full_reason));
        (void) point_set_meta(b->point, "consistency", json_string(b->consistency));
        (void) point_set_meta(b->point, "checkpoint", json_string(b->checkpoint));
        (void) point_set_meta(b->point, "host", json_string(b->host.name));
        (void) point_set_meta(b->point, "sources", sources);
        (void) point_set_meta(b->point, "counters", counters);
        json_decref(sources);
        int r = point_commit(b->point);
        if (r < 0) {
                json_decref(counters);
                return job_fail(ctx, r, "Cannot write the manifest of point %s of VM '%s': %s.", b->point_id, b->vm.name,
                                strerror(-r));
        }
        StoreBackupPoint sp = { .datastore = b->ds_name, .vm_uuid = b->vm.uuid, .vm_name = b->vm.name, .vm_id = b->vm.id,
                                .owner_id = b->vm.owner_id, .group_id = vm_group(ctx->st, &b->vm), .host_id = b->host.id,
                                .point_id = b->point_id, .full = !b->base, .consistency = b->consistency,
                                .checkpoint = b->checkpoint, .size_bytes = size, .bytes_read = b->cnt.bytes_read,
                                .bytes_written = b->cnt.bytes_written, .duration_ms = ms };
        if (store_backup_point_add(ctx->st, &sp) < 0)
                log_warn("VM '%s': point %s was made but could not be indexed", b->vm.name, b->point_id);
        drop_old_checkpoints(b);
        json_t *keep = json_object_get(ctx->params, "keep");
        int pruned = 0;
        if (json_is_array(keep)) {
                char why[512] = "";
                pruned = protect_backup_prune_vm(ctx->st, b->store, b->ds_name, b->vm.uuid, keep, why, sizeof why);
                if (pruned < 0) {
                        _cleanup_free_ char *m = xasprintf("The points of VM '%s' were not pruned: %s.", b->vm.name, why);
                        backup_event(b, "warning", "backup.prune-failed", m);
                        pruned = 0;
                }
        }
        int64_t ds_id = 0;
        if (store_datastore_find(ctx->st, b->ds_name, &ds_id) == 0)
                (void) protect_datastore_usage_refresh(ctx->st, ds_id, b->store);
        _cleanup_free_ char *msg = xasprintf("VM '%s' was backed up into datastore '%s' (point %s, %s, %s-consistent): "
                                             "%" PRIu64 " MiB read, %" PRIu64 " MiB written.", b->vm.name, b->ds_name,
                                             b->point_id, b->base ? "incremental" : "full", b->consistency,
                                             b->cnt.bytes_read >> 20, b->cnt.bytes_written >> 20);
        backup_event(b, "info", "backup.done", msg);
        ctx->result = json_pack("{s:s, s:s, s:s, s:b, s:s?, s:s, s:I, s:o, s:i}", "datastore", b->ds_name, "vm", b->vm.name,
                                "point_id", b->point_id, "full", !b->base, "full_reason", b->base ? NULL : b->full_reason,
                                "consistency", b->consistency, "size_bytes", (json_int_t) size, "counters", counters,
                                "pruned", pruned);
        job_progress(ctx, 100, "point %s written", b->point_id);
        return 0;
}

static int backup_undo(Backup *b, int r) {
        if (b->begun && b->link) {
                HvConn *c = inventory_link_conn(b->link);
                (void) hv_backup_end(c, b->vm.uuid, NULL);
                /* Its bitmap goes into the previous checkpoint's: the next
                 * incremental from that one still sees every change. */
                if (hv_checkpoint_delete(c, b->vm.uuid, b->checkpoint) < 0)
                        log_warn("VM '%s': cannot delete checkpoint '%s' of a failed backup: %s", b->vm.name, b->checkpoint,
                                 hv_last_error());
        }
        if (b->vm.id) {
                _cleanup_free_ char *msg = xasprintf("The backup of VM '%s' failed: %s", b->vm.name, b->ctx->error);
                backup_event(b, "error", "backup.failed", msg);
        }
        return r < 0 ? r : -EIO;
}

static void backup_free(Backup *b) {
        point_free(b->point);
        point_free(b->base);
        json_decref(b->prev);
        free(b->domain_xml);
        chunkstore_free(b->store);
        inventory_link_unref(b->link);
}

static void point_id_now(char out[32]) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(out, 32, "%Y%m%dT%H%M%SZ", &tm);
}

/* Point ids are the second the backup starts; a second backup of the VM in
 * the same second gets "-2" .. "-9" (protect_point_time() reads them), so
 * neither the point nor its checkpoint reuses a name. */
static int point_id_pick(Backup *b) {
        const char *prev = b->prev ? jget_str(b->prev, "point_id") : NULL;
        char base[24];
        snprintf(base, sizeof base, "%.20s", b->point_id);
        for (int n = 2; (prev && streq(prev, b->point_id)) || point_exists(b->store, b->vm.uuid, b->point_id); n++) {
                if (n > 9)
                        return job_fail(b->ctx, -EBUSY, "VM '%s' already has nine points made in second %s.", b->vm.name, base);
                snprintf(b->point_id, sizeof b->point_id, "%s-%d", base, n);
        }
        return 0;
}

/* What the vm.backup kinds need: set once at registration, for the life of
 * the process. */
typedef struct BackupKinds {
        Inventory *inv;
        Jobs *jobs;
} BackupKinds;

static int job_vm_backup(JobCtx *ctx, void *userdata) {
        Backup b = { .ctx = ctx, .inv = ((BackupKinds *) userdata)->inv, .t0 = now_ms() };
        point_id_now(b.point_id);
        int r = backup_prepare(&b);
        if (r >= 0) {
                backup_chain(&b);
                r = point_id_pick(&b);
        }
        if (r >= 0)
                r = backup_begin(&b);
        if (r >= 0)
                r = backup_read(&b);
        if (r >= 0)
                r = backup_finish(&b);
        if (r < 0)
                r = backup_undo(&b, r);
        backup_unstart(&b);
        backup_free(&b);
        return r;
}

/* vm.backup-unstart: destroys the paused QEMU an offline backup started
 * and a killed armadad left running, as its record (backup_offline) says;
 * the VM shows stopped again. Nothing to do without a record. Safe to
 * repeat. */
static int job_vm_backup_unstart(JobCtx *ctx, void *userdata) {
        BackupKinds *k = userdata;
        int64_t vm_id = ctx->job->target_id;
        _cleanup_json_ json_t *rec = NULL;
        int r = store_backup_offline_get(ctx->st, vm_id, &rec);
        if (r == -ENOENT) {
                ctx->result = json_pack("{s:b}", "destroyed", false);
                return 0;
        }
        if (r < 0)
                return job_fail(ctx, r, "Cannot read the offline backup record of VM '%s'.", ctx->job->target_name);
        StoreHost h;
        if (store_host_get(ctx->st, jget_int(rec, "host_id"), &h) < 0) {
                (void) store_backup_offline_clear(ctx->st, vm_id); /* the host is gone, and its QEMU with it */
                return job_fail(ctx, -ENXIO, "The host of VM '%s' no longer exists.", ctx->job->target_name);
        }
        InventoryLink *link = NULL;
        char why[512];
        if (inventory_link_acquire(k->inv, &h, &link, why, sizeof why) < 0)
                return job_fail(ctx, -EHOSTUNREACH, "Cannot reach host '%s' to destroy the paused QEMU of VM '%s': %s", h.name,
                                ctx->job->target_name, why);
        HvConn *c = inventory_link_conn(link);
        const char *uuid = jget_str(rec, "vm_uuid");
        HvState before = HV_STATE_NOSTATE;
        (void) hv_domain_state(c, uuid, &before);
        (void) hv_backup_end(c, uuid, NULL);
        HvState st = destroy_until_shut_off(c, uuid, ctx->job->target_name);
        inventory_link_unref(link);
        if (st != HV_STATE_SHUTOFF)
                return job_fail(ctx, -EBUSY, "The paused QEMU of VM '%s' on host '%s' is still %s.", ctx->job->target_name, h.name,
                                hv_state_name(st));
        (void) store_vm_set_state(ctx->st, vm_id, hv_state_name(HV_STATE_SHUTOFF));
        (void) store_backup_offline_clear(ctx->st, vm_id);
        (void) placement_release(ctx->st, vm_id, h.id);
        bool destroyed = before != HV_STATE_SHUTOFF;
        if (destroyed) {
                _cleanup_free_ char *msg = xasprintf("The QEMU that the offline backup of VM '%s' (job %lld) started paused on"
                                                     " host '%s' was left running when armadad stopped; it was destroyed.",
                                                     ctx->job->target_name, (long long) jget_int(rec, "job_id"), h.name);
                (void) store_event_add(ctx->st, "warning", "backup.unstart-recovered", "vm", vm_id, ctx->job->target_name, 0,
                                       msg);
        }
        ctx->result = json_pack("{s:b, s:s}", "destroyed", destroyed, "host", h.name);
        return 0;
}

static void abandon_vm_backup(Store *st, const StoreJob *job, void *userdata) {
        /* The point was never committed (no manifest, no point), its chunks
         * go at the next garbage collection, and the next backup of the VM
         * ends the backup job left on the host. An offline backup's paused
         * QEMU is destroyed by a job of its own (a host may take a while to
         * answer; start-up does not wait for it). */
        BackupKinds *k = userdata;
        _cleanup_json_ json_t *rec = NULL;
        if (store_backup_offline_get(st, job->target_id, &rec) < 0)
                return;
        if (jobs_submit(k->jobs, "vm.backup-unstart", "vm", job->target_id, job->target_name, 0, NULL, NULL) < 0)
                log_warn("VM '%s': cannot queue the job that destroys the paused QEMU of its offline backup",
                         job->target_name);
}

void protect_backup_register_jobs(Jobs *jobs, Inventory *inv) {
        BackupKinds *k = xmalloc(sizeof *k); /* lives as long as the job kinds: the process */
        *k = (BackupKinds){ .inv = inv, .jobs = jobs };
        jobs_register(jobs, "vm.backup", job_vm_backup, abandon_vm_backup, k, false);
        jobs_register(jobs, "vm.backup-unstart", job_vm_backup_unstart, NULL, k, true);
        protect_restore_register_jobs(jobs, inv);
}

time_t protect_oldest_running_backup(Store *st) {
        int64_t ms = 0;
        return store_backup_oldest_running(st, &ms) == 0 ? (time_t) (ms / 1000) : 0;
}

/* ---- operations ---- */

static json_t *job_json(Store *st, int64_t id) {
        json_t *j = NULL;
        return store_job_get_json(st, id, &j) == 0 ? j : json_null();
}

/* A stopped VM's backup starts its QEMU paused: refused now (not only in
 * the job) when its host is in maintenance or down (409) or lacks its
 * memory (422, placement's reason). */
static int offline_check(Store *st, int64_t vm_id, OpError *err) {
        StoreVm vm;
        StoreHost h;
        char why[768] = "";
        int r = store_vm_get(st, vm_id, &vm);
        if (r < 0)
                return op_fail_store(err, r, "the VM");
        if ((r = store_host_get(st, vm.host_id, &h)) < 0)
                return op_fail_store(err, r, "the VM's host");
        r = protect_offline_room(st, &vm, &h, false, why, sizeof why);
        if (r == -ENOSPC)
                return op_fail(err, 422, "no_capacity", "host", "%s", why);
        if (r == -EBUSY)
                return op_fail(err, 409, "conflict", "host", "%s", why);
        if (r < 0)
                return op_fail(err, 500, "internal", NULL, "%s", why);
        return 0;
}

int protect_backup_now(Store *st, Jobs *jobs, const OpCaller *c, int64_t vm_id, const char *datastore, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *v = NULL;
        int r = store_vm_get_json(st, vm_id, &v);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the VM");
        if (!v || !op_allowed(st, c, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")))
                return op_fail(err, 404, "not_found", NULL, "There is no VM with id %lld.", (long long) vm_id);
        const char *name = jget_str(v, "name");
        if (!op_allowed(st, c, ACT_OPERATE, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")))
                return op_deny(st, c, err, "back up", "VM", vm_id, name);
        if (streq(jget_str(v, "origin"), "foreign"))
                return op_fail(err, 409, "conflict", NULL, "VM '%s' belongs to another Armada installation and is read-only here.",
                               name);
        const char *state = jget_str(v, "state");
        if (!streq(state, "running") && !streq(state, "paused") && !streq(state, "stopped"))
                return op_fail(err, 409, "conflict", NULL, "VM '%s' is %s: only a running, paused or stopped VM can be backed up.",
                               name, state);
        if (streq(state, "stopped") && (r = offline_check(st, vm_id, err)) < 0)
                return r;
        char ds_name[128];
        _cleanup_free_ char *path = NULL;
        r = protect_datastore_path(st, datastore, ds_name, sizeof ds_name, &path);
        if (r == -ENOENT)
                return datastore ? op_fail(err, 422, "not_found", "datastore", "There is no datastore '%.200s'.", datastore)
                                 : op_fail(err, 422, "not_found", "datastore", "There is no datastore yet; an administrator adds one "
                                           "with 'armada backup datastore add'.");
        if (r == -EADDRNOTAVAIL)
                return op_fail(err, 422, "invalid_argument", "datastore", "There are several datastores: name one.");
        if (r < 0)
                return op_fail_store(err, r, "the datastore");
        _cleanup_json_ json_t *params = json_pack("{s:s}", "datastore", ds_name);
        int64_t job;
        if (jobs_submit(jobs, "vm.backup", "vm", vm_id, name, c->user_id, params, &job) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        _cleanup_free_ char *detail = xasprintf("datastore '%s'", ds_name);
        op_audit(st, c, "vm.backup", "vm", vm_id, name, detail, "accepted");
        *ret = json_pack("{s:o}", "job", job_json(st, job));
        return 0;
}

/* Whether the caller may see a point (its index row): as it may see its VM
 * now, or, for a VM gone, as the VM's owner then or a reader of all. */
bool protect_point_visible(Store *st, const OpCaller *c, const json_t *p) {
        int64_t vm_id = jget_int(p, "vm_id");
        _cleanup_json_ json_t *v = NULL;
        if (vm_id > 0 && store_vm_get_json(st, vm_id, &v) == 0)
                return op_allowed(st, c, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id"));
        return op_allowed(st, c, ACT_READ, OBJ_VM, jget_int(p, "owner_id"), jget_int(p, "group_id"));
}

/* The UUID of the VM named by ref (a name, an id or a UUID) that the
 * caller may see, or a UUID some visible point carries. 0, or 404 "vm". */
int protect_vm_ref(Store *st, const OpCaller *c, const char *field, const char *ref, char uuid[37], int64_t *ret_vm_id, OpError *err) {
        int64_t id = 0;
        _cleanup_json_ json_t *v = NULL;
        char *end = NULL;
        long long n = strtoll(ref, &end, 10);
        if (store_vm_find(st, ref, &id) == 0 || (uuid_is_valid(ref) && store_vm_find_uuid(st, ref, &id) == 0) ||
            (end && end != ref && !*end && n > 0 && (id = n) > 0)) {
                if (store_vm_get_json(st, id, &v) == 0 &&
                    op_allowed(st, c, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id"))) {
                        snprintf(uuid, 37, "%s", jget_str(v, "uuid"));
                        *ret_vm_id = id;
                        return 0;
                }
        }
        if (uuid_is_valid(ref)) {
                _cleanup_json_ json_t *pts = NULL;
                size_t i;
                json_t *p;
                if (store_backup_point_list(st, ref, NULL, &pts) == 0)
                        json_array_foreach(pts, i, p) if (protect_point_visible(st, c, p)) {
                                snprintf(uuid, 37, "%s", ref);
                                *ret_vm_id = 0;
                                return 0;
                        }
        }
        return op_fail(err, 404, "not_found", field, "There is no VM '%.200s'.", ref);
}

int protect_backup_list(Store *st, const OpCaller *c, const ProtectBackupListSpec *spec, json_t **ret, OpError *err) {
        char uuid[37] = "";
        int64_t vm_id = 0;
        if (spec->vm && protect_vm_ref(st, c, "vm", spec->vm, uuid, &vm_id, err) < 0)
                return -ENOENT;
        json_t *all = NULL;
        int r = store_backup_point_list(st, uuid[0] ? uuid : NULL, spec->datastore, &all);
        if (r < 0)
                return op_fail_store(err, r, "the recovery points");
        json_t *out = json_array();
        size_t i;
        json_t *p;
        json_array_foreach(all, i, p) if (protect_point_visible(st, c, p)) json_array_append(out, p);
        json_decref(all);
        *ret = json_pack("{s:o}", "items", out);
        return 0;
}

int protect_datastore_path(Store *st, const char *name, char *ret_name, size_t name_size, char **ret_path) {
        int64_t id = 0;
        _cleanup_json_ json_t *ds = NULL;
        if (name) {
                int r = store_datastore_find(st, name, &id);
                if (r < 0)
                        return r;
                if ((r = store_datastore_get_json(st, id, &ds)) < 0)
                        return r;
        } else {
                _cleanup_json_ json_t *all = NULL;
                int r = store_datastore_list(st, &all);
                if (r < 0)
                        return r;
                if (json_array_size(all) == 0)
                        return -ENOENT;
                if (json_array_size(all) > 1)
                        return -EADDRNOTAVAIL;
                ds = json_incref(json_array_get(all, 0));
        }
        snprintf(ret_name, name_size, "%s", jget_str(ds, "name"));
        *ret_path = xstrdup(jget_str(ds, "path"));
        return 0;
}

/* Indexes one point as point_list() gives it (the VM's owner and group as
 * they are now, when the VM is still in the inventory). */
static void index_point(Store *st, const char *ds_name, json_t *p) {
        const char *uuid = jget_str(p, "vm_uuid"), *pid = jget_str(p, "point_id");
        json_t *meta = json_object_get(p, "meta"), *cnt = json_object_get(meta, "counters");
        int64_t vm_id = 0;
        _cleanup_json_ json_t *v = NULL;
        if (store_vm_find_uuid(st, uuid, &vm_id) == 0)
                (void) store_vm_get_json(st, vm_id, &v);
        uint64_t size = 0;
        size_t k;
        json_t *d;
        json_array_foreach(json_object_get(p, "disks"), k, d) size += (uint64_t) jget_int(d, "size");
        const char *name = json_string_value(json_object_get(meta, "vm_name"));
        StoreBackupPoint sp = { .datastore = ds_name, .vm_uuid = uuid, .vm_name = name ? name : uuid,
                                .vm_id = v ? vm_id : 0, .owner_id = v ? jget_int(v, "owner_id") : 0,
                                .group_id = v ? jget_int(v, "group_id") : 0, .point_id = pid,
                                .full = !json_is_false(json_object_get(meta, "full")),
                                .consistency = json_string_value(json_object_get(meta, "consistency")) ?: "crash",
                                .checkpoint = json_string_value(json_object_get(meta, "checkpoint")), .size_bytes = size,
                                .bytes_read = (uint64_t) jget_int(cnt, "bytes_read"),
                                .bytes_written = (uint64_t) jget_int(cnt, "bytes_written"),
                                .duration_ms = jget_int(cnt, "duration_ms") };
        (void) store_backup_point_add(st, &sp);
}

/* "uuid/point" of a point or an index row: the key of the sets below. */
static char *point_key(json_t *o) {
        return xasprintf("%s/%s", jget_str(o, "vm_uuid"), jget_str(o, "point_id"));
}

/* The index rows of ds_name (of vm_uuid, or every VM's when NULL) made
 * equal to the points in the directory: each side is put in a hash set
 * first, so a datastore of n points costs O(n), not O(n^2). */
static int index_sync(Store *st, const char *ds_name, ChunkStore *s, const char *vm_uuid) {
        _cleanup_json_ json_t *pts = NULL, *rows = NULL, *in_dir = json_object(), *in_index = json_object();
        int r = point_list(s, vm_uuid, &pts);
        if (r < 0)
                return r;
        if ((r = store_backup_point_list(st, vm_uuid, ds_name, &rows)) < 0)
                return r;
        if (!in_dir || !in_index)
                return -ENOMEM;
        size_t i;
        json_t *p;
        json_array_foreach(rows, i, p) {
                _cleanup_free_ char *key = point_key(p);
                json_object_set(in_index, key, json_true());
        }
        json_array_foreach(pts, i, p) {
                _cleanup_free_ char *key = point_key(p);
                json_object_set(in_dir, key, json_true());
                if (!json_object_get(in_index, key))
                        index_point(st, ds_name, p);
        }
        json_array_foreach(rows, i, p) {
                _cleanup_free_ char *key = point_key(p);
                if (!json_object_get(in_dir, key))
                        (void) store_backup_point_remove(st, ds_name, jget_str(p, "vm_uuid"), jget_str(p, "point_id"));
        }
        return 0;
}

int protect_backup_index_sync(Store *st, const char *ds_name, ChunkStore *s) {
        return index_sync(st, ds_name, s, NULL);
}

int protect_backup_index_sync_vm(Store *st, const char *ds_name, ChunkStore *s, const char *vm_uuid) {
        return index_sync(st, ds_name, s, vm_uuid);
}
