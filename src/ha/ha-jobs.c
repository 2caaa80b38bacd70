/* The job handlers of ha: vm.migrate (live migration with progress,
 * cancel, post-copy switch and the cost libvirt measured) and
 * host.maintenance (move every running VM off a host, each where placement
 * says at that moment, as vm.migrate jobs). See ha.h. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "ha-priv.h"
#include "hv/hv-snapshot.h"
#include "placement/placement.h"
#include "place/place.h"

#define POLL_MS 200
#define POSTCOPY_AFTER_ITERATIONS 4
#define POSTCOPY_AFTER_MS 15000

static void sleep_ms(int ms) {
        struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

/* True when path lies inside directory dir. */
static bool path_under(const char *path, const char *dir) {
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
                n--;
        return n > 0 && strncmp(path, dir, n) == 0 && path[n] == '/';
}

/* Where a VM's disks are, as far as migration cares. */
typedef struct {
        int n_disks;
        bool all_shared;          /* every disk is on its cluster's shared storage */
        char local_path[1024];    /* a disk that is not ("" when all are) */
        uint64_t bytes;           /* their size, for placement with storage */
        int64_t cluster_id;       /* the source host's cluster, 0 when none */
        char shared[1024];        /* its shared storage ("" when none) */
} DiskPlace;

static void disk_place(Store *st, int64_t vm_id, int64_t host_id, DiskPlace *ret) {
        *ret = (DiskPlace) { .all_shared = true };
        _cleanup_free_ char *shared = NULL;
        if (store_cluster_of_host(st, host_id, &ret->cluster_id, &shared) < 0)
                ret->cluster_id = 0;
        else
                snprintf(ret->shared, sizeof ret->shared, "%s", shared);
        StoreDisk *disks = NULL;
        int n = store_vm_disks(st, vm_id, &disks);
        for (int i = 0; i < n; i++) {
                if (!disks[i].path[0])
                        continue; /* an empty CD-ROM drive */
                ret->n_disks++;
                ret->bytes += disks[i].size_bytes;
                if (!shared || !path_under(disks[i].path, shared)) {
                        ret->all_shared = false;
                        if (!ret->local_path[0])
                                snprintf(ret->local_path, sizeof ret->local_path, "%s", disks[i].path);
                }
        }
        free(disks);
}

int ha_vm_protectable(Store *st, int64_t vm_id, char *why, size_t why_size) {
        StoreVm vm;
        int r = store_vm_get(st, vm_id, &vm);
        if (r < 0) {
                snprintf(why, why_size, "There is no VM with id %lld.", (long long) vm_id);
                return r;
        }
        StoreHost h = {0};
        if (vm.host_id == 0 || store_host_get(st, vm.host_id, &h) < 0) {
                snprintf(why, why_size, "VM '%s' is on no host; only VMs on a cluster can be highly available.", vm.name);
                return -ENOENT;
        }
        DiskPlace dp;
        disk_place(st, vm.id, vm.host_id, &dp);
        if (!dp.cluster_id) {
                snprintf(why, why_size, "VM '%s' runs on host '%s', which is not a member of a cluster; only VMs on a cluster"
                         " can be highly available.", vm.name, h.name);
                return -ENOENT;
        }
        if (!dp.all_shared) {
                snprintf(why, why_size, "VM '%s' cannot be highly available: its disk '%s' is not on the cluster's shared storage"
                         " '%s', so no other member could start it after host '%s' fails.", vm.name, dp.local_path, dp.shared,
                         h.name);
                return -EXDEV;
        }
        return 0;
}

/* The best cluster member for d (not its source), or -ENOSPC with the
 * reasons in why. */
static int choose_member(Store *st, int64_t cluster_id, const PlacementDemand *d, int64_t *ret, char *why, size_t why_size) {
        PlacementRating *rated = NULL;
        int n = placement_rate(st, 0, d, &rated);
        if (n < 0) {
                snprintf(why, why_size, "placement failed (%s)", strerror(-n));
                return n;
        }
        int64_t *members = NULL;
        int nm = store_cluster_members(st, cluster_id, &members);
        HaRated *hr = xcalloc((size_t) n + 1, sizeof *hr);
        for (int i = 0; i < n; i++)
                hr[i] = (HaRated) { rated[i].host_id, rated[i].rating };
        int64_t best = 0;
        size_t k = ha_candidates(hr, (size_t) n, members, nm > 0 ? (size_t) nm : 0, d->exclude_host_id, &best, 1);
        if (k == 0) {
                StrBuf b = {0};
                for (int i = 0; i < n; i++) {
                        bool member = false;
                        for (int m = 0; m < nm; m++)
                                member |= members[m] == rated[i].host_id;
                        if (!member || rated[i].host_id == d->exclude_host_id)
                                continue;
                        strbuf_printf(&b, "%shost '%s': %s", b.len ? "; " : "", rated[i].host_name,
                                      rated[i].reason[0] ? rated[i].reason : "cannot take it");
                }
                snprintf(why, why_size, "%s", b.len ? b.s : "the cluster has no other member");
                strbuf_free(&b);
        }
        free(hr);
        free(members);
        free(rated);
        if (k == 0)
                return -ENOSPC;
        *ret = best;
        return 0;
}

/* Picks the target of a VM: inside its cluster when its disks live on the
 * cluster's shared storage (no other host sees them), else anywhere. */
static int choose_target(Store *st, const DiskPlace *dp, bool with_storage, const PlacementDemand *d, int64_t *ret,
                         char *why, size_t why_size) {
        if (dp->cluster_id && dp->n_disks > 0 && dp->all_shared && !with_storage)
                return choose_member(st, dp->cluster_id, d, ret, why, why_size);
        return placement_choose(st, 0, d, ret, why, why_size);
}

/* ---- vm.migrate ---- */

typedef struct {
        HvConn *conn;
        char uuid[37];
        HvMigrateOptions o;
        int r;
        char err[1024];
        atomic_bool done;
} Migration;

static void *migration_main(void *arg) {
        Migration *m = arg;
        m->r = hv_migrate(m->conn, m->uuid, &m->o);
        if (m->r < 0)
                snprintf(m->err, sizeof m->err, "%s", hv_last_error());
        atomic_store(&m->done, true);
        return NULL;
}

/* A target the caller named must have the VM's memory after its reserves
 * (memory is a hard requirement; QEMU would overcommit it silently) and the
 * networks its cards use (libvirt would refuse the move). 0, or
 * -ENOSPC with placement's reason in why. A host placement does not rate
 * for d (outside the owner's scope, or the source) is left to the caller's
 * checks. */
static int named_target_fits(Store *st, const PlacementDemand *d, int64_t to, char *why, size_t why_size) {
        PlacementRating *rated = NULL;
        int n = placement_rate(st, 0, d, &rated);
        int r = n < 0 ? n : 0;
        for (int i = 0; i < n; i++)
                if (rated[i].host_id == to && (rated[i].why & (PLACE_WHY_MEMORY | PLACE_WHY_NETWORK))) {
                        snprintf(why, why_size, "host '%s' cannot take it: %s", rated[i].host_name, rated[i].reason);
                        r = -ENOSPC;
                }
        free(rated);
        return r;
}

/* Chooses the target of vm (or checks the one given in to) and reserves
 * the room there, in one step under the placement lock: the room stays
 * promised to this move until job_vm_migrate() ends it. Placement stays
 * inside what the job's owner manages. 0 and *to, or negative with the
 * job failed. */
static int migrate_target(JobCtx *ctx, const StoreVm *vm, const StoreHost *src, const DiskPlace *dp, bool with_storage,
                          int64_t *to) {
        Store *st = ctx->st;
        _cleanup_free_ int64_t *scope = NULL;
        int ns = placement_scope_of(st, ctx->job->owner_id, src->group_id, &scope);
        if (ns < 0)
                return job_fail(ctx, ns, "Cannot read what user %lld manages to place VM '%s'.", (long long) ctx->job->owner_id, vm->name);
        PlacementDemand d = { .cpus = vm->cpus, .memory_mib = vm->memory_mib, .disk_bytes = with_storage ? dp->bytes : 0,
                              .vm_id = vm->id, .vm_name = vm->name, .exclude_host_id = src->id,
                              .scope = scope, .n_scope = (size_t) ns };
        char why[2048] = "";
        bool named = *to != 0;
        int r = placement_lock(st);
        if (r < 0)
                return job_fail(ctx, r, "Cannot take the placement lock to move VM '%s'.", vm->name);
        if (!named)
                r = choose_target(st, dp, with_storage, &d, to, why, sizeof why);
        else
                r = named_target_fits(st, &d, *to, why, sizeof why);
        if (r >= 0)
                r = placement_reserve(st, &d, *to);
        r = placement_unlock(st, r);
        if (r == -ENOSPC && named)
                return job_fail(ctx, r, "Cannot move VM '%s' (%u vCPUs, %llu MiB): %s.", vm->name, vm->cpus,
                                (unsigned long long) vm->memory_mib, why);
        if (r == -ENOSPC)
                return job_fail(ctx, r, "No host can take VM '%s' (%u vCPUs, %llu MiB): %s", vm->name, vm->cpus,
                                (unsigned long long) vm->memory_mib, why);
        if (r < 0)
                return job_fail(ctx, r, "Cannot place VM '%s': %s", vm->name, why[0] ? why : strerror(-r));
        return 0;
}

/* One live migration, handed from phase to phase as in libvirt's
 * qemu_migration.c: Begin checks the request and reserves the target,
 * Prepare takes both links and checks the VM runs, Snapshots sets their
 * metadata aside (given back where the VM ends up), Perform runs libvirt's
 * migration while reporting progress (post-copy, cancel), Finish records a
 * success, Abort one that libvirt rolled back. */
typedef struct {
        JobCtx *ctx;
        Ha *ha;
        StoreVm vm;
        StoreHost src, dst;
        bool with_storage, auto_converge, postcopy;
        json_int_t bandwidth;
        DiskPlace dp;
        InventoryLink *sl, *dl;
        bool aborted, switched;   /* cancel passed on; switched to post-copy */
        int64_t wall;
        char err[1024];
        HvSnapshotDef *snaps;     /* the snapshots' metadata, set aside for the move */
        size_t n_snaps;
} MigrateRun;

static void migrate_links_release(MigrateRun *mr) {
        inventory_link_unref(mr->sl);
        inventory_link_unref(mr->dl);
        mr->sl = mr->dl = NULL;
}

/* Begin: the VM, its source, the options; a target named in the request
 * must be a host in service (a cluster member when the disks stay on the
 * shared storage); the target is chosen or checked and its room reserved.
 * 0, or negative after job_fail(). */
static int migrate_begin(MigrateRun *mr) {
        JobCtx *ctx = mr->ctx;
        Store *st = ctx->st;
        if (store_vm_get(st, ctx->job->target_id, &mr->vm) < 0)
                return job_fail(ctx, -ENOENT, "VM '%s' no longer exists.", ctx->job->target_name);
        StoreVm *vm = &mr->vm;
        if (inventory_vm_is_foreign(vm))
                return job_fail(ctx, -EPERM, "VM '%s' belongs to another Armada installation; it is read-only here.", vm->name);
        if (vm->host_id == 0 || store_host_get(st, vm->host_id, &mr->src) < 0)
                return job_fail(ctx, -ENXIO, "VM '%s' is not placed on any host.", vm->name);
        mr->with_storage = json_is_true(json_object_get(ctx->params, "with_storage"));
        mr->auto_converge = json_is_true(json_object_get(ctx->params, "auto_converge"));
        mr->postcopy = json_is_true(json_object_get(ctx->params, "postcopy"));
        int64_t to = json_integer_value(json_object_get(ctx->params, "to"));
        mr->bandwidth = json_integer_value(json_object_get(ctx->params, "bandwidth_mibs"));

        disk_place(st, vm->id, mr->src.id, &mr->dp);
        if (!mr->with_storage && !mr->dp.all_shared)
                return job_fail(ctx, -EINVAL, "VM '%s' keeps its disk '%s' on storage of host '%s' that no other host sees;"
                                " migrate it with its storage (with_storage, CLI --with-storage).", vm->name, mr->dp.local_path,
                                mr->src.name);
        if (to) {
                StoreHost *dst = &mr->dst;
                if (store_host_get(st, to, dst) < 0)
                        return job_fail(ctx, -ENOENT, "There is no host with id %lld to migrate VM '%s' to.", (long long) to, vm->name);
                if (dst->id == mr->src.id)
                        return job_fail(ctx, -EINVAL, "VM '%s' already runs on host '%s'.", vm->name, dst->name);
                if (!streq(dst->state, "ok"))
                        return job_fail(ctx, -EBUSY, "Host '%s' is %s; VMs can only be migrated to a host in service.", dst->name,
                                        dst->state);
                int64_t dst_cluster = 0;
                if (mr->dp.cluster_id && mr->dp.n_disks > 0 && mr->dp.all_shared && !mr->with_storage &&
                    (store_cluster_of_host(st, dst->id, &dst_cluster, NULL) < 0 || dst_cluster != mr->dp.cluster_id))
                        return job_fail(ctx, -EINVAL, "VM '%s' keeps its disks on the shared storage of its cluster, which host '%s'"
                                        " is not a member of; choose a member or migrate with its storage.", vm->name, dst->name);
        }
        int pr = migrate_target(ctx, vm, &mr->src, &mr->dp, mr->with_storage, &to);
        if (pr < 0)
                return pr;
        if (store_host_get(st, to, &mr->dst) < 0)
                return job_fail(ctx, -ENOENT, "The host placement chose for VM '%s' no longer exists.", vm->name);
        return 0;
}

/* Prepare: links to both hosts, and the VM running or paused on the
 * source. 0 with both links held, or negative after job_fail() with none. */
static int migrate_prepare(MigrateRun *mr) {
        JobCtx *ctx = mr->ctx;
        Ha *ha = mr->ha;
        StoreVm *vm = &mr->vm;
        char why[2048] = "";
        if (inventory_link_acquire(ha->inv, &mr->src, &mr->sl, why, sizeof why) < 0)
                return job_fail(ctx, -EHOSTUNREACH, "Cannot reach host '%s' of VM '%s': %s", mr->src.name, vm->name, why);
        if (inventory_link_acquire(ha->inv, &mr->dst, &mr->dl, why, sizeof why) < 0) {
                inventory_link_unref(mr->sl);
                mr->sl = NULL;
                return job_fail(ctx, -EHOSTUNREACH, "Cannot reach host '%s' to migrate VM '%s' there: %s", mr->dst.name, vm->name, why);
        }
        HvState s0 = HV_STATE_NOSTATE;
        int r = hv_domain_state(inventory_link_conn(mr->sl), vm->uuid, &s0);
        if (r < 0 || (s0 != HV_STATE_RUNNING && s0 != HV_STATE_BLOCKED && s0 != HV_STATE_PAUSED)) {
                if (r == 0)
                        (void) store_vm_set_state(ctx->st, vm->id, hv_state_name(s0));
                migrate_links_release(mr);
                if (r < 0)
                        return job_fail(ctx, r, "Cannot read the state of VM '%s' on host '%s': %s", vm->name, mr->src.name,
                                        hv_last_error());
                return job_fail(ctx, -EBUSY, "VM '%s' is %s; only a running or paused VM can be live-migrated.", vm->name,
                                hv_state_name(s0));
        }
        return 0;
}

/* Snapshots: libvirt refuses to migrate a domain with snapshot metadata.
 * What it documents instead: keep each snapshot's XML, delete the metadata
 * on the source only (the internal snapshots stay in the images), migrate,
 * redefine it where the domain ends up. 0 (nothing to set aside, or set
 * aside in mr->snaps), or negative after job_fail() with the links
 * released and whatever was set aside given back. */
static int migrate_snapshots_aside(MigrateRun *mr) {
        JobCtx *ctx = mr->ctx;
        HvConn *conn = inventory_link_conn(mr->sl);
        int r = hv_snapshot_defs(conn, mr->vm.uuid, &mr->snaps, &mr->n_snaps);
        if (r == 0 && mr->n_snaps > 0 && mr->with_storage) {
                migrate_links_release(mr);
                return job_fail(ctx, -EXDEV, SNAPSHOTS_NOT_COPIED, mr->vm.name, (long long) mr->n_snaps, mr->n_snaps == 1 ? "" : "s");
        }
        if (r == 0 && mr->n_snaps > 0) {
                job_progress(ctx, 4, "setting aside the metadata of the %zu snapshot%s of VM '%s' (they stay in its disks)",
                             mr->n_snaps, mr->n_snaps == 1 ? "" : "s", mr->vm.name);
                r = hv_snapshot_forget(conn, mr->vm.uuid, mr->snaps, mr->n_snaps);
        }
        if (r == 0)
                return 0;
        char why[1024];
        snprintf(why, sizeof why, "%s", hv_last_error());
        (void) hv_snapshot_put_back(conn, mr->vm.uuid, mr->snaps, mr->n_snaps);
        migrate_links_release(mr);
        return job_fail(ctx, r, "Cannot set aside the snapshots of VM '%s' on host '%s' for its migration: %s", mr->vm.name,
                        mr->src.name, why);
}

/* Gives the snapshots set aside back to the host of l, where the VM is now
 * (the target after a migration, the source after one that failed). A
 * failure is an event, not the job's: Armada's copy of their XML brings them
 * back the next time they are read (protect). */
static void migrate_snapshots_back(MigrateRun *mr, InventoryLink *l, const StoreHost *h) {
        if (mr->n_snaps == 0 || !l)
                return;
        if (hv_snapshot_put_back(inventory_link_conn(l), mr->vm.uuid, mr->snaps, mr->n_snaps) < 0)
                ha_event(mr->ctx->st, "warning", "vm.snapshots-not-redefined", "vm", mr->vm.id, mr->vm.name, mr->vm.owner_id,
                         "The snapshots of VM '%s' could not be redefined on host '%s' after its migration: %s They come back the"
                         " next time they are listed.", mr->vm.name, h->name, hv_last_error());
        else
                job_progress(mr->ctx, 95, "redefined the %zu snapshot%s of VM '%s' on host '%s'", mr->n_snaps,
                             mr->n_snaps == 1 ? "" : "s", mr->vm.name, h->name);
}

/* While libvirt migrates m: progress from its job statistics, a switch to
 * post-copy when memory does not converge, a cancel passed on as an abort. */
static void migrate_watch(MigrateRun *mr, Migration *m) {
        JobCtx *ctx = mr->ctx;
        HvConn *conn = inventory_link_conn(mr->sl);
        const char *uuid = mr->vm.uuid;
        while (!atomic_load(&m->done)) {
                sleep_ms(POLL_MS);
                if (atomic_load(&m->done))
                        break;
                HvJobInfo ji;
                if (hv_job_info(conn, uuid, &ji) == 0 && ji.active && ji.data_total > 0) {
                        uint64_t done = ji.data_processed > ji.data_total ? ji.data_total : ji.data_processed;
                        int pct = 10 + (int) (80.0 * (double) done / (double) ji.data_total);
                        (void) store_job_progress(ctx->st, ctx->job->id, pct > 90 ? 90 : pct, NULL);
                        if (mr->postcopy && !mr->switched && !mr->aborted &&
                            (ji.mem_iteration >= POSTCOPY_AFTER_ITERATIONS || ji.elapsed_ms >= POSTCOPY_AFTER_MS)) {
                                if (hv_migrate_start_postcopy(conn, uuid) == 0) {
                                        mr->switched = true;
                                        job_progress(ctx, 91, "memory did not converge after %llu passes (%llu ms); switched to post-copy",
                                                     (unsigned long long) ji.mem_iteration, (unsigned long long) ji.elapsed_ms);
                                }
                        }
                }
                if (!mr->aborted && !mr->switched && job_cancel_requested(ctx)) {
                        if (hv_job_abort(conn, uuid) == 0) {
                                mr->aborted = true;
                                job_progress(ctx, 0, "cancel requested: aborting the migration");
                        }
                }
        }
}

/* Perform: libvirt's peer-to-peer migration in a thread of its own, watched
 * from here. Returns its result (libvirt's error in mr->err), or negative
 * after job_fail() with the links released when no thread can be made. */
static int migrate_perform(MigrateRun *mr) {
        JobCtx *ctx = mr->ctx;
        StoreVm *vm = &mr->vm;
        _cleanup_free_ char *migrate_uri = hv_migrate_uri_for(mr->dst.uri);
        Migration *m = xcalloc(1, sizeof *m);
        m->conn = inventory_link_conn(mr->sl);
        snprintf(m->uuid, sizeof m->uuid, "%s", vm->uuid);
        m->o = (HvMigrateOptions) {
                .dest_uri = mr->dst.uri, .migrate_uri = migrate_uri,
                .shared_storage_known = mr->dp.n_disks > 0 && mr->dp.all_shared && !mr->with_storage,
                .with_storage = mr->with_storage, .auto_converge = mr->auto_converge, .postcopy = mr->postcopy,
                .bandwidth_mibs = mr->bandwidth > 0 ? (uint64_t) mr->bandwidth : 0,
        };
        job_progress(ctx, 5, "migrating VM '%s' from host '%s' to host '%s'%s%s%s", vm->name, mr->src.name, mr->dst.name,
                     mr->with_storage ? " with its storage" : m->o.shared_storage_known ? " (disks stay on the cluster's shared storage)" : "",
                     mr->auto_converge ? ", auto-converge on" : "", mr->postcopy ? ", post-copy allowed" : "");
        int64_t t0 = mono_ms();
        pthread_t th;
        if (pthread_create(&th, NULL, migration_main, m) != 0) {
                free(m);
                migrate_links_release(mr);
                return job_fail(ctx, -EAGAIN, "Cannot start a thread to migrate VM '%s'.", vm->name);
        }
        migrate_watch(mr, m);
        pthread_join(th, NULL);
        mr->wall = mono_ms() - t0;
        int r = m->r;
        snprintf(mr->err, sizeof mr->err, "%s", m->err);
        free(m);
        return r;
}

/* Abort: libvirt rolled back, the VM runs on the source. Say so from
 * libvirt, not from hope. Releases the links; returns the job's result. */
static int migrate_abort(MigrateRun *mr, int r) {
        JobCtx *ctx = mr->ctx;
        Store *st = ctx->st;
        StoreVm *vm = &mr->vm;
        HvState s;
        inventory_link_lock_ops(mr->sl);
        if (hv_domain_state(inventory_link_conn(mr->sl), vm->uuid, &s) == 0)
                (void) store_vm_set_state(st, vm->id, hv_state_name(s));
        inventory_link_unlock_ops(mr->sl);
        migrate_links_release(mr);
        if (mr->aborted || r == -ECANCELED) {
                ha_event(st, "info", "vm.migrate-cancelled", "vm", vm->id, vm->name, vm->owner_id,
                         "The migration of VM '%s' to host '%s' was cancelled after %lld ms; it keeps running on host '%s'.",
                         vm->name, mr->dst.name, (long long) mr->wall, mr->src.name);
                snprintf(ctx->error, sizeof ctx->error, "Cancelled after %lld ms; VM '%s' keeps running on host '%s'.",
                         (long long) mr->wall, vm->name, mr->src.name);
                ctx->result = json_pack("{s:s, s:s, s:I, s:b}", "from", mr->src.name, "to", mr->dst.name, "wall_ms",
                                        (json_int_t) mr->wall, "cancelled", 1);
                return -ECANCELED;
        }
        ha_event(st, "error", "vm.migrate-failed", "vm", vm->id, vm->name, vm->owner_id,
                 "VM '%s' could not be migrated from host '%s' to host '%s': %s", vm->name, mr->src.name, mr->dst.name, mr->err);
        return job_fail(ctx, r, "Cannot migrate VM '%s' from host '%s' to host '%s': %s It keeps running on host '%s'.",
                        vm->name, mr->src.name, mr->dst.name, mr->err, mr->src.name);
}

/* Finish: the VM is recorded on the target with its state there; with its
 * storage, the source copies are deleted; its definition is saved; the
 * result and event carry libvirt's statistics. Releases the links. */
static int migrate_finish(MigrateRun *mr) {
        JobCtx *ctx = mr->ctx;
        Store *st = ctx->st;
        StoreVm *vm = &mr->vm;
        InventoryLink *sl = mr->sl, *dl = mr->dl;
        inventory_link_lock_ops(dl);
        (void) store_vm_set_host(st, vm->id, mr->dst.id);
        HvState s;
        if (hv_domain_state(inventory_link_conn(dl), vm->uuid, &s) == 0)
                (void) store_vm_set_state(st, vm->id, hv_state_name(s));
        inventory_link_unlock_ops(dl);

        HvJobInfo done = {0};
        bool have_stats = hv_job_completed(inventory_link_conn(dl), vm->uuid, &done) == 0;
        json_t *removed = json_array();
        if (mr->with_storage) {
                /* The copy on the source is no longer anybody's disk. */
                StoreDisk *disks = NULL;
                int n = store_vm_disks(st, vm->id, &disks);
                for (int i = 0; i < n; i++) {
                        if (!disks[i].owned || !disks[i].path[0])
                                continue;
                        if (hv_volume_delete(inventory_link_conn(sl), disks[i].path) == 0)
                                json_array_append_new(removed, json_string(disks[i].path));
                        else
                                log_warn("VM '%s': cannot delete the source copy '%s' on host '%s': %s", vm->name, disks[i].path,
                                         mr->src.name, hv_last_error());
                }
                free(disks);
        }
        StoreVm now = *vm;
        now.host_id = mr->dst.id;
        ha_save_definition(mr->ha, dl, &now);
        migrate_links_release(mr);

        const StoreHost *src = &mr->src, *dst = &mr->dst;
        json_int_t total = have_stats && done.elapsed_ms ? (json_int_t) done.elapsed_ms : (json_int_t) mr->wall;
        ctx->result = json_pack("{s:s, s:s, s:I, s:I, s:I, s:o, s:I, s:I, s:b, s:b, s:b, s:o}",
                                "from", src->name, "to", dst->name, "from_host_id", (json_int_t) src->id, "to_host_id", (json_int_t) dst->id,
                                "total_ms", total,
                                "downtime_ms", have_stats ? json_integer((json_int_t) done.downtime_ms) : json_null(),
                                "wall_ms", (json_int_t) mr->wall, "data_bytes", (json_int_t) done.data_processed,
                                "shared_storage", mr->dp.n_disks > 0 && mr->dp.all_shared && !mr->with_storage,
                                "with_storage", mr->with_storage, "postcopy", mr->switched, "source_disks_removed", removed);
        if (have_stats)
                ha_event(st, "info", "vm.migrated", "vm", vm->id, vm->name, vm->owner_id,
                         "VM '%s' was live-migrated from host '%s' to host '%s' in %lld ms (downtime %llu ms).", vm->name, src->name,
                         dst->name, (long long) total, (unsigned long long) done.downtime_ms);
        else
                ha_event(st, "info", "vm.migrated", "vm", vm->id, vm->name, vm->owner_id,
                         "VM '%s' was live-migrated from host '%s' to host '%s' in %lld ms.", vm->name, src->name, dst->name,
                         (long long) total);
        return 0;
}

static int vm_migrate_run(JobCtx *ctx, Ha *ha) {
        MigrateRun mr = { .ctx = ctx, .ha = ha };
        int r = migrate_begin(&mr);
        if (r < 0 || (r = migrate_prepare(&mr)) < 0 || (r = migrate_snapshots_aside(&mr)) < 0) {
                hv_snapshot_defs_free(mr.snaps, mr.n_snaps);
                return r;
        }
        r = migrate_perform(&mr);
        if (r < 0 && !mr.sl) { /* no thread: failed, links released (the snapshots come back when next listed) */
                hv_snapshot_defs_free(mr.snaps, mr.n_snaps);
                return r;
        }
        migrate_snapshots_back(&mr, r < 0 ? mr.sl : mr.dl, r < 0 ? &mr.src : &mr.dst);
        hv_snapshot_defs_free(mr.snaps, mr.n_snaps);
        return r < 0 ? migrate_abort(&mr, r) : migrate_finish(&mr);
}

static int job_vm_migrate(JobCtx *ctx, void *userdata) {
        int r = vm_migrate_run(ctx, userdata);
        /* Moved or not, the move is over: the room promised to it is free
         * (once moved, the VM's own allocation counts there instead). */
        (void) placement_release(ctx->st, ctx->job->target_id, 0);
        return r;
}

/* ---- host.maintenance ---- */

typedef struct {
        StoreVm vm;
        int64_t to;
        char to_name[64];
        char reason[1024];
        int64_t job_id;
        char state[16];
        bool with_storage;
} Move;

static int cmp_move_mem(const void *a, const void *b) {
        const Move *x = a, *y = b;
        if (x->vm.memory_mib != y->vm.memory_mib)
                return x->vm.memory_mib > y->vm.memory_mib ? -1 : 1;
        return x->vm.id < y->vm.id ? -1 : x->vm.id > y->vm.id;
}

static bool vm_active(const char *state) {
        return streq(state, "running") || streq(state, "paused") || streq(state, "unknown");
}

/* Saves (managed save) the VMs that could not move; reasons go in m->reason. */
static void save_unmoved(Ha *ha, JobCtx *ctx, const StoreHost *h, Move *moves, size_t n, json_t *saved, json_t *failed) {
        char why[512];
        InventoryLink *l = NULL;
        if (inventory_link_acquire(ha->inv, h, &l, why, sizeof why) < 0) {
                for (size_t i = 0; i < n; i++)
                        json_array_append_new(failed, json_pack("{s:s, s:s}", "vm", moves[i].vm.name, "reason", why));
                return;
        }
        for (size_t i = 0; i < n; i++) {
                Move *m = &moves[i];
                inventory_link_lock_ops(l);
                int r = hv_domain_managed_save(inventory_link_conn(l), m->vm.uuid);
                if (r == 0)
                        (void) store_vm_set_state(ctx->st, m->vm.id, "saved");
                inventory_link_unlock_ops(l);
                if (r == 0) {
                        json_array_append_new(saved, json_pack("{s:s, s:s}", "vm", m->vm.name, "reason", m->reason));
                        ha_event(ctx->st, "warning", "vm.saved", "vm", m->vm.id, m->vm.name, m->vm.owner_id,
                                 "VM '%s' could not leave host '%s' (%s); maintenance was forced, so it was saved to disk and stopped.",
                                 m->vm.name, h->name, m->reason);
                } else
                        json_array_append_new(failed, json_pack("{s:s, s:s}", "vm", m->vm.name, "reason", hv_last_error()));
        }
        inventory_link_unref(l);
}

static int maintenance_off(JobCtx *ctx, Ha *ha, const StoreHost *h) {
        bool changed = streq(h->state, "maintenance");
        if (changed) {
                (void) store_host_set_state(ctx->st, h->id, "ok", NULL);
                ha_event(ctx->st, "info", "host.maintenance-off", "host", h->id, h->name, 0,
                         "Host '%s' left maintenance mode and takes VMs again.", h->name);
                /* Reconnect and reconcile now rather than at the next round. */
                (void) jobs_submit(ha->jobs, "host.refresh", "host", h->id, h->name, ctx->job->owner_id, NULL, NULL);
        }
        ctx->result = json_pack("{s:s, s:b}", "state", changed ? "ok" : h->state, "changed", changed);
        return 0;
}

/* One maintenance run, handed from phase to phase (libvirt's migration
 * phases are the model): Begin lists what must move, Plan chooses and
 * reserves targets, Refuse ends it when something cannot move (unless
 * force), Perform queues the migrations and waits, Finish records the
 * outcome. */
typedef struct {
        JobCtx *ctx;
        Ha *ha;
        StoreHost h;
        bool force;
        char prev[24];            /* the state to go back to when it fails */
        Move *moves;
        size_t n, n_unplaced;
        bool cancelled;
        json_t *cannot;           /* [{vm, reason}] of what has no target */
} Maintenance;

/* Begin: the host leaves placement; its active VMs (ours), biggest first:
 * what fits only when spread gets its host before the small ones fill the
 * gaps. */
static void maintenance_begin(Maintenance *mt) {
        Store *st = mt->ctx->st;
        snprintf(mt->prev, sizeof mt->prev, "%s", streq(mt->h.state, "maintenance") ? "ok" : mt->h.state);
        /* From now on placement leaves the host out. */
        (void) store_host_set_state(st, mt->h.id, "maintenance", "entering maintenance mode: moving its VMs off");
        StoreVm *vms = NULL;
        int n_all = store_vm_list_on_host(st, mt->h.id, &vms);
        if (n_all < 0)
                n_all = 0;
        mt->moves = xcalloc((size_t) n_all + 1, sizeof *mt->moves);
        for (int i = 0; i < n_all; i++)
                if (vm_active(vms[i].state) && !inventory_vm_is_foreign(&vms[i])) /* another installation's: not ours to move */
                        mt->moves[mt->n++].vm = vms[i];
        free(vms);
        qsort(mt->moves, mt->n, sizeof *mt->moves, cmp_move_mem);
}

/* Plan: every target is chosen and its room reserved under one hold of
 * the placement lock: each choice counts the ones before, and no VM
 * created meanwhile takes the room. Targets stay inside what the job's
 * owner manages. The reservations last until each vm.migrate ends (or are
 * dropped when nothing moves). 0, or negative after job_fail(). */
static int maintenance_plan(Maintenance *mt) {
        JobCtx *ctx = mt->ctx;
        Store *st = ctx->st;
        _cleanup_free_ int64_t *scope = NULL;
        int ns = placement_scope_of(st, ctx->job->owner_id, mt->h.group_id, &scope);
        int lr = ns < 0 ? ns : placement_lock(st);
        if (lr < 0) {
                (void) store_host_set_state(st, mt->h.id, mt->prev, NULL);
                return job_fail(ctx, lr, "Host '%s' stays in service: cannot plan where its VMs go (%s).", mt->h.name, strerror(-lr));
        }
        for (size_t i = 0; i < mt->n; i++) {
                Move *m = &mt->moves[i];
                DiskPlace dp;
                disk_place(st, m->vm.id, mt->h.id, &dp);
                /* Disks only this host sees move with the VM. */
                m->with_storage = !dp.all_shared;
                PlacementDemand d = { .cpus = m->vm.cpus, .memory_mib = m->vm.memory_mib, .vm_id = m->vm.id, .vm_name = m->vm.name,
                                      .exclude_host_id = mt->h.id, .disk_bytes = m->with_storage ? dp.bytes : 0,
                                      .scope = scope, .n_scope = ns > 0 ? (size_t) ns : 0 };
                char why[900];
                int r = choose_target(st, &dp, m->with_storage, &d, &m->to, why, sizeof why);
                if (r >= 0 && placement_reserve(st, &d, m->to) < 0) {
                        r = -EIO;
                        snprintf(why, sizeof why, "its room on the target cannot be reserved");
                }
                if (r < 0) {
                        snprintf(m->reason, sizeof m->reason, "no host can take it: %s", why);
                        m->to = 0;
                        mt->n_unplaced++;
                        continue;
                }
                StoreHost t;
                if (store_host_get(st, m->to, &t) == 0)
                        snprintf(m->to_name, sizeof m->to_name, "%s", t.name);
        }
        /* Nothing moves when some VM cannot and force is off: keep no
         * reservation then. */
        int keep = mt->n_unplaced > 0 && !mt->force ? -ECANCELED : 0;
        lr = placement_unlock(st, keep);
        if (lr < 0 && keep == 0) {
                (void) store_host_set_state(st, mt->h.id, mt->prev, NULL);
                return job_fail(ctx, lr, "Host '%s' stays in service: cannot record where its VMs go (%s).", mt->h.name, strerror(-lr));
        }
        mt->cannot = json_array();
        for (size_t i = 0; i < mt->n; i++)
                if (!mt->moves[i].to)
                        json_array_append_new(mt->cannot, json_pack("{s:s, s:s}", "vm", mt->moves[i].vm.name, "reason", mt->moves[i].reason));
        return 0;
}

/* Refuse: some VM has no target and force is off; the host stays in
 * service, nothing moved. Returns the job's result (negative). */
static int maintenance_refuse(Maintenance *mt) {
        JobCtx *ctx = mt->ctx;
        (void) store_host_set_state(ctx->st, mt->h.id, mt->prev, NULL);
        StrBuf b = {0};
        for (size_t i = 0; i < mt->n; i++)
                if (!mt->moves[i].to)
                        strbuf_printf(&b, "%sVM '%s': %s", b.len ? "; " : "", mt->moves[i].vm.name, mt->moves[i].reason);
        ctx->result = json_pack("{s:O}", "cannot_move", mt->cannot);
        ha_event(ctx->st, "warning", "host.maintenance-refused", "host", mt->h.id, mt->h.name, 0,
                 "Host '%s' stays in service: %zu of its VMs cannot move. %s", mt->h.name, mt->n_unplaced, b.s);
        int r = job_fail(ctx, -ENOSPC, "Host '%s' stays in service: %zu of its %zu running VMs cannot move (%s). Nothing"
                         " was moved; free capacity or use force to save them.", mt->h.name, mt->n_unplaced, mt->n, b.s);
        strbuf_free(&b);
        return r;
}

/* Perform: one vm.migrate job per planned move, then wait for them all; a
 * cancel is passed on to them. */
static void maintenance_perform(Maintenance *mt) {
        JobCtx *ctx = mt->ctx;
        Store *st = ctx->st;
        job_progress(ctx, 10, "moving %zu VMs off host '%s'", mt->n - mt->n_unplaced, mt->h.name);
        for (size_t i = 0; i < mt->n; i++) {
                Move *m = &mt->moves[i];
                if (!m->to)
                        continue;
                json_t *p = json_pack("{s:I, s:b}", "to", (json_int_t) m->to, "with_storage", m->with_storage);
                if (jobs_submit(mt->ha->jobs, "vm.migrate", "vm", m->vm.id, m->vm.name, ctx->job->owner_id, p, &m->job_id) < 0) {
                        snprintf(m->reason, sizeof m->reason, "cannot queue its migration");
                        m->job_id = 0;
                        (void) placement_release(st, m->vm.id, m->to);
                }
                json_decref(p);
        }
        for (;;) {
                size_t left = 0, finished = 0;
                for (size_t i = 0; i < mt->n; i++) {
                        Move *m = &mt->moves[i];
                        if (!m->job_id)
                                continue;
                        if (store_job_state(st, m->job_id, m->state) < 0)
                                snprintf(m->state, sizeof m->state, "failed");
                        if (streq(m->state, "queued") || streq(m->state, "running"))
                                left++;
                        else
                                finished++;
                }
                if (left == 0)
                        break;
                if (!mt->cancelled && job_cancel_requested(ctx)) {
                        mt->cancelled = true;
                        for (size_t i = 0; i < mt->n; i++)
                                if (mt->moves[i].job_id)
                                        (void) store_job_request_cancel(st, mt->moves[i].job_id);
                }
                (void) store_job_progress(st, ctx->job->id, 10 + (int) (80 * finished / (finished + left)), NULL);
                sleep_ms(POLL_MS);
        }
}

/* Finish: what moved; what did not goes back to service (cancelled, or
 * not forced) or is saved (forced); the host is in maintenance then. */
static int maintenance_finish(Maintenance *mt) {
        JobCtx *ctx = mt->ctx;
        Store *st = ctx->st;
        json_t *moved = json_array(), *saved = json_array(), *failed = json_array();
        Move *unmoved = xcalloc(mt->n + 1, sizeof *unmoved);
        size_t n_unmoved = 0;
        for (size_t i = 0; i < mt->n; i++) {
                Move *m = &mt->moves[i];
                if (m->job_id && streq(m->state, "succeeded")) {
                        _cleanup_json_ json_t *j = NULL;
                        (void) store_job_get_json(st, m->job_id, &j); /* the times are extra: none on an error (logged) */
                        json_t *res = j ? json_object_get(j, "result") : NULL;
                        json_array_append_new(moved, json_pack("{s:s, s:s, s:I, s:O?, s:O?}", "vm", m->vm.name, "to", m->to_name,
                                                               "job_id", (json_int_t) m->job_id,
                                                               "total_ms", res ? json_object_get(res, "total_ms") : NULL,
                                                               "downtime_ms", res ? json_object_get(res, "downtime_ms") : NULL));
                        continue;
                }
                if (m->job_id) {
                        _cleanup_json_ json_t *j = NULL;
                        (void) store_job_get_json(st, m->job_id, &j); /* no reason to give on an error (logged) */
                        const char *e = j ? json_string_value(json_object_get(j, "error")) : NULL;
                        snprintf(m->reason, sizeof m->reason, "its migration to host '%s' %s: %.800s", m->to_name, m->state,
                                 e ? e : "no reason given");
                }
                unmoved[n_unmoved++] = *m;
        }
        json_t *cannot = json_incref(mt->cannot);
        if (mt->cancelled || (n_unmoved > 0 && !mt->force)) {
                (void) store_host_set_state(st, mt->h.id, mt->prev, NULL);
                for (size_t i = 0; i < n_unmoved; i++)
                        json_array_append_new(failed, json_pack("{s:s, s:s}", "vm", unmoved[i].vm.name, "reason", unmoved[i].reason));
                ctx->result = json_pack("{s:o, s:o, s:o, s:o}", "moved", moved, "saved", saved, "failed", failed, "cannot_move", cannot);
                free(unmoved);
                if (mt->cancelled) {
                        snprintf(ctx->error, sizeof ctx->error, "Cancelled; host '%s' stays in service (%zu VMs had moved already).",
                                 mt->h.name, json_array_size(moved));
                        return -ECANCELED;
                }
                return job_fail(ctx, -EIO, "Host '%s' stays in service: %zu VMs could not be moved off it (the first: VM '%s': %s).",
                                mt->h.name, n_unmoved, json_string_value(json_object_get(json_array_get(failed, 0), "vm")),
                                json_string_value(json_object_get(json_array_get(failed, 0), "reason")));
        }
        if (n_unmoved > 0)
                save_unmoved(mt->ha, ctx, &mt->h, unmoved, n_unmoved, saved, failed);
        free(unmoved);
        (void) store_host_set_state(st, mt->h.id, "maintenance", NULL);
        ha_event(st, "info", "host.maintenance-on", "host", mt->h.id, mt->h.name, 0,
                 "Host '%s' is in maintenance mode: %zu VMs moved off it, %zu saved%s.", mt->h.name, json_array_size(moved),
                 json_array_size(saved), json_array_size(failed) ? ", some could not be saved" : "");
        ctx->result = json_pack("{s:s, s:o, s:o, s:o, s:o}", "state", "maintenance", "moved", moved, "saved", saved, "failed", failed,
                                "cannot_move", cannot);
        return 0;
}

static int job_host_maintenance(JobCtx *ctx, void *userdata) {
        Maintenance mt = { .ctx = ctx, .ha = userdata };
        if (store_host_get(ctx->st, ctx->job->target_id, &mt.h) < 0)
                return job_fail(ctx, -ENOENT, "Host '%s' no longer exists.", ctx->job->target_name);
        bool on = !json_is_false(json_object_get(ctx->params, "on"));
        mt.force = json_is_true(json_object_get(ctx->params, "force"));
        if (!on)
                return maintenance_off(ctx, mt.ha, &mt.h);
        maintenance_begin(&mt);
        int r = maintenance_plan(&mt);
        if (r >= 0 && mt.n_unplaced > 0 && !mt.force)
                r = maintenance_refuse(&mt);
        else if (r >= 0) {
                maintenance_perform(&mt);
                r = maintenance_finish(&mt);
        }
        free(mt.moves);
        json_decref(mt.cannot);
        return r;
}

void ha_register_jobs(Ha *ha) {
        jobs_register(ha->jobs, "vm.migrate", job_vm_migrate, NULL, ha, false);
        jobs_register(ha->jobs, "host.maintenance", job_host_maintenance, NULL, ha, true);
}
