/* The library's job handlers: library.refresh (index a share, or one file
 * of it) and vm.deploy (a VM from a template: disk, seed ISO, define,
 * start). A failed deploy leaves nothing behind: what it made on the host
 * is removed and so is the VM's record. */
#include "library-priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hv/hv-volume.h"
#include "inventory/inventory.h"
#include "store/store-library.h"

/* ------------------------------------------------------------------ */
/* library.refresh */

typedef struct {
        JobCtx *ctx;
        int64_t share_id;
        const char *root;
        StrBuf rel;              /* the directory being walked, relative */
        char **seen;
        size_t n_seen, cap_seen;
        int indexed, unchanged, skipped;
        int64_t bytes_hashed;
} Walk;

static void seen_add(Walk *w, const char *rel) {
        if (w->n_seen == w->cap_seen) {
                w->cap_seen = w->cap_seen ? 2 * w->cap_seen : 64;
                w->seen = xrealloc(w->seen, w->cap_seen * sizeof(char *));
        }
        w->seen[w->n_seen++] = xstrdup(rel);
}

/* Indexes the open regular file fd at rel. 1 indexed, 0 unchanged, -EMEDIUMTYPE
 * not a library item, other negative on a read error. */
static int index_file(Store *st, int64_t share_id, int fd, const char *rel, StoreItem *ret, int64_t *ret_hashed) {
        struct stat sb;
        if (fstat(fd, &sb) < 0)
                return -errno;
        if (!S_ISREG(sb.st_mode))
                return -EMEDIUMTYPE;
        int64_t mtime = (int64_t) sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
        StoreItem old;
        if (store_item_find(st, share_id, rel, &old) == 0 && old.size == (uint64_t) sb.st_size && old.mtime_ms == mtime &&
            old.checksum[0]) {
                if (ret) *ret = old;
                (void) store_item_upsert(st, &old, &old.id); /* clears a missing mark */
                return 0;
        }
        LibraryImageInfo info;
        int r = library_image_detect(fd, rel, (uint64_t) sb.st_size, &info);
        if (r < 0)
                return r;
        StoreItem it = { .share_id = share_id, .mtime_ms = mtime, .virtual_size = info.virtual_size };
        snprintf(it.rel_path, sizeof it.rel_path, "%s", rel);
        snprintf(it.kind, sizeof it.kind, "%s", info.kind);
        snprintf(it.format, sizeof it.format, "%s", info.format);
        snprintf(it.backing, sizeof it.backing, "%s", info.backing);
        r = library_sha256_fd(fd, it.checksum, &it.size);
        if (r < 0)
                return r;
        if (ret_hashed) *ret_hashed += (int64_t) it.size;
        r = store_item_upsert(st, &it, &it.id);
        if (r < 0)
                return r;
        if (ret) *ret = it;
        return 1;
}

static int walk_dir(Walk *w, int dir_fd, int depth) {
        DIR *d = fdopendir(dir_fd);
        if (!d) {
                close(dir_fd);
                return -errno;
        }
        struct dirent *de;
        int r = 0;
        while (r == 0 && (de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue; /* ".", "..", hidden files and Armada's upload temporaries */
                size_t mark = w->rel.len;
                if (w->rel.len) strbuf_append(&w->rel, "/");
                strbuf_append(&w->rel, de->d_name);
                struct stat sb;
                if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || S_ISLNK(sb.st_mode) ||
                    library_rel_path_invalid(w->rel.s)) {
                        w->skipped++;   /* symlinks are never followed */
                } else if (S_ISDIR(sb.st_mode)) {
                        int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0 && depth < 16)
                                r = walk_dir(w, sub, depth + 1);
                        else if (sub >= 0)
                                close(sub);
                } else if (S_ISREG(sb.st_mode)) {
                        _cleanup_close_ int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                        int q = fd < 0 ? -errno : index_file(w->ctx->st, w->share_id, fd, w->rel.s, NULL, &w->bytes_hashed);
                        if (q == 1 || q == 0) {
                                seen_add(w, w->rel.s);
                                if (q) w->indexed++; else w->unchanged++;
                                job_progress(w->ctx, 50, "indexed %d, unchanged %d, skipped %d", w->indexed, w->unchanged, w->skipped);
                        } else
                                w->skipped++;
                        if (job_cancel_requested(w->ctx))
                                r = -ECANCELED;
                } else
                        w->skipped++;
                w->rel.len = mark;
                w->rel.s[mark] = 0;
        }
        closedir(d);
        return r;
}

static int job_library_refresh(JobCtx *ctx, void *userdata) {
        char root[1024];
        if (store_share_path(ctx->st, ctx->job->target_id, root, sizeof root) < 0)
                return job_fail(ctx, -ENOENT, "Library share %lld no longer exists.", (long long) ctx->job->target_id);
        const char *one = json_string_value(json_object_get(ctx->params, "rel_path"));
        if (one) {
                int fd = library_open_in_share(root, one, O_RDONLY, 0);
                if (fd < 0)
                        return job_fail(ctx, fd, "Cannot open '%s' in library share '%s': %s.", one, root, strerror(-fd));
                StoreItem it;
                int64_t hashed = 0;
                int r = index_file(ctx->st, ctx->job->target_id, fd, one, &it, &hashed);
                close(fd);
                if (r == -EMEDIUMTYPE)
                        return job_fail(ctx, r, "'%s' in library share '%s' is neither a disk image, an ISO image nor a script.", one, root);
                if (r < 0)
                        return job_fail(ctx, r, "Cannot index '%s' in library share '%s': %s.", one, root, strerror(-r));
                json_t *item = NULL;
                (void) store_item_get_json(ctx->st, it.id, &item); /* indexed already: a failed re-read (logged) shows null */
                ctx->result = json_pack("{s:o}", "item", item ?: json_null());
                return 0;
        }
        int root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root_fd < 0)
                return job_fail(ctx, -errno, "Cannot open library share '%s': %s.", root, strerror(errno));
        Walk w = { .ctx = ctx, .share_id = ctx->job->target_id, .root = root };
        strbuf_append(&w.rel, "");
        job_progress(ctx, 5, "walking '%s'", root);
        int r = walk_dir(&w, root_fd, 0);
        if (r == 0) {
                int gone = store_item_forget_except(ctx->st, w.share_id, (const char *const *) w.seen, w.n_seen);
                (void) store_share_set_indexed(ctx->st, w.share_id);
                ctx->result = json_pack("{s:i, s:i, s:i, s:i, s:I}", "indexed", w.indexed, "unchanged", w.unchanged,
                                        "skipped", w.skipped, "forgotten", gone > 0 ? gone : 0, "bytes_hashed",
                                        (json_int_t) w.bytes_hashed);
        }
        for (size_t i = 0; i < w.n_seen; i++) free(w.seen[i]);
        free(w.seen);
        strbuf_free(&w.rel);
        if (r == -ECANCELED) {
                snprintf(ctx->error, sizeof ctx->error, "Cancelled while indexing '%.900s'.", root);
                return r;
        }
        if (r < 0)
                return job_fail(ctx, r, "Cannot index library share '%s': %s.", root, strerror(-r));
        return 0;
}

/* ------------------------------------------------------------------ */
/* vm.deploy */

typedef struct {
        Inventory *inv;
        JobCtx *ctx;
        StoreVm vm;
        StoreHost host;
        InventoryLink *link;
        json_t *tpl;
        char *made[HV_MAX_DISKS];   /* volumes created, for the undo */
        size_t n_made;
        bool defined;
        HvConn *streams;            /* a connection of its own for uploads */
} Deploy;

/* Uploads go over a connection of their own: a stream holds its connection
 * for as long as it runs, and a keepalive timeout on the inventory's shared
 * connection in the middle of many parallel deploys must not take the
 * uploads (nor the other jobs) down with it. libvirt's test driver keeps its
 * state per connection, so a test host uses the link itself (it has no data
 * to stream anyway). */
static HvConn *stream_conn(Deploy *d) {
        if (streq(d->host.domain_type, "test"))
                return inventory_link_conn(d->link);
        if (!d->streams && hv_connect(d->host.uri, 0, 0, NULL, NULL, &d->streams) < 0)
                return NULL;
        return d->streams;
}

static const char *tstr(json_t *o, const char *k) {
        return json_string_value(json_object_get(o, k));
}
static int64_t tint(json_t *o, const char *k) {
        return json_integer_value(json_object_get(o, k));
}

static void deploy_event(Deploy *d, const char *severity, const char *kind, const char *msg) {
        (void) store_event_add(d->ctx->st, severity, kind, "vm", d->vm.id, d->vm.name, d->vm.owner_id, msg);
}

static void disk_record(Deploy *d, const char *target, const char *path, uint64_t size) {
        StoreDisk sd = { .size_bytes = size, .owned = true };
        snprintf(sd.target, sizeof sd.target, "%s", target);
        snprintf(sd.path, sizeof sd.path, "%s", path);
        (void) store_vm_disk_add(d->ctx->st, d->vm.id, &sd);
        if (d->n_made < HV_MAX_DISKS)
                d->made[d->n_made++] = xstrdup(path);
}

/* The system disk: an overlay over the base, or a copy of it. */
static int deploy_system_disk(Deploy *d, HvDomainSpec *spec, bool full_copy, json_t **steps) {
        HvConn *c = inventory_link_conn(d->link);
        const char *base = tstr(d->tpl, "base_path"), *bfmt = tstr(d->tpl, "base_format");
        uint64_t vsize = (uint64_t) tint(d->tpl, "base_virtual_size"), fsize = (uint64_t) tint(d->tpl, "base_size");
        uint64_t want = (uint64_t) tint(d->tpl, "disk_bytes");
        uint64_t capacity = want > vsize ? want : vsize;
        bool test = streq(d->host.domain_type, "test");
        bool visible = test; /* the test driver keeps no data: every path "is" there */
        if (!test && hv_volume_visible(c, base, fsize, &visible) < 0)
                return job_fail(d->ctx, -EIO, "Cannot tell whether host '%s' sees the base image '%s': %s", d->host.name, base,
                                hv_last_error());
        _cleanup_free_ char *vol = xasprintf("%s-%.8s-vda.qcow2", d->vm.name, d->vm.uuid);
        _cleanup_free_ char *path = NULL;
        const char *how, *fmt = "qcow2";
        int r;
        if (!full_copy && visible) {
                how = "linked clone";
                r = hv_volume_create_overlay(c, d->host.pool, vol, base, bfmt, capacity, &path);
        } else {
                /* A full copy reads and writes the whole image: one of the
                 * host's disk-operation slots (a linked clone writes a
                 * header only and takes none). */
                r = inventory_slot_take(d->inv, &d->host, INVENTORY_SLOT_DISK, NULL, false, d->ctx);
                if (r < 0)
                        return r;
                fmt = bfmt;
                if (visible) {
                        how = "full copy on the host";
                        r = hv_volume_clone(c, d->host.pool, vol, base, bfmt, &path);
                } else {
                        how = "full copy streamed to the host (it cannot see the library)";
                        HvConn *sc = stream_conn(d);
                        r = sc ? hv_volume_upload(sc, d->host.pool, vol, base, true, &path) : -EHOSTUNREACH;
                }
                inventory_slot_give(d->inv, d->host.id, INVENTORY_SLOT_DISK);
        }
        if (r < 0)
                return job_fail(d->ctx, r, "Cannot make the system disk of VM '%s' (%s of '%s') on host '%s': %s", d->vm.name, how,
                                base, d->host.name, hv_last_error());
        disk_record(d, "vda", path, capacity);
        spec->disks[spec->n_disks] = (HvDisk) { .target = "vda", .capacity_bytes = capacity };
        snprintf(spec->disks[spec->n_disks].format, sizeof spec->disks[0].format, "%s", fmt);
        snprintf(spec->disks[spec->n_disks].path, sizeof spec->disks[0].path, "%s", path);
        spec->n_disks++;
        json_array_append_new(*steps, json_pack("{s:s, s:s, s:s}", "disk", "vda", "how", how, "path", path));
        job_progress(d->ctx, 40, "system disk: %s (%s)", path, how);
        return 0;
}

static int deploy_data_disks(Deploy *d, HvDomainSpec *spec) {
        json_t *sizes = json_object_get(d->tpl, "data_disks");
        size_t i;
        json_t *s;
        json_array_foreach(sizes, i, s) {
                if (spec->n_disks >= HV_MAX_DISKS - 1)
                        break;
                char target[8];
                snprintf(target, sizeof target, "vd%c", (char) ('b' + i));
                _cleanup_free_ char *vol = xasprintf("%s-%.8s-%s.qcow2", d->vm.name, d->vm.uuid, target);
                _cleanup_free_ char *path = NULL;
                uint64_t size = (uint64_t) json_integer_value(s);
                int r = hv_volume_create(inventory_link_conn(d->link), d->host.pool, vol, "qcow2", size, &path);
                if (r < 0)
                        return job_fail(d->ctx, r, "Cannot create data disk %s of VM '%s' on host '%s': %s", target, d->vm.name,
                                        d->host.name, hv_last_error());
                disk_record(d, target, path, size);
                HvDisk *hd = &spec->disks[spec->n_disks++];
                *hd = (HvDisk) { .format = "qcow2", .capacity_bytes = size };
                snprintf(hd->target, sizeof hd->target, "%s", target);
                snprintf(hd->path, sizeof hd->path, "%s", path);
        }
        return 0;
}

static int deploy_seed(Deploy *d, HvDomainSpec *spec, const char *hostname) {
        json_t *keys = json_object_get(d->tpl, "ssh_keys");
        size_t n = json_array_size(keys);
        const char **k = xcalloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++)
                k[i] = json_string_value(json_array_get(keys, i));
        LibraryGuest g = { .instance_id = d->vm.uuid, .hostname = hostname, .admin_user = tstr(d->tpl, "admin_user"),
                           .ssh_keys = k, .n_ssh_keys = n, .timezone = tstr(d->tpl, "timezone"),
                           .user_data = tstr(d->tpl, "user_data") };
        _cleanup_free_ char *meta = NULL, *user = NULL;
        int r = library_cloudinit_render(&g, &meta, &user);
        free(k);
        if (r < 0)
                return job_fail(d->ctx, r, "Cannot render the cloud-init data of template '%s': its user-data is of an unknown type.",
                                tstr(d->tpl, "name"));
        _cleanup_free_ char *iso = xasprintf("%s/armada-seed-%s.iso", library_tmp_dir(), d->vm.uuid);
        char why[512];
        r = library_seed_iso_build(meta, user, iso, why, sizeof why);
        if (r < 0)
                return job_fail(d->ctx, r, "%s", why);
        _cleanup_free_ char *vol = xasprintf("%s-%.8s-seed.iso", d->vm.name, d->vm.uuid);
        _cleanup_free_ char *path = NULL;
        HvConn *sc = stream_conn(d);
        r = sc ? hv_volume_upload(sc, d->host.pool, vol, iso, !streq(d->host.domain_type, "test"), &path) : -EHOSTUNREACH;
        struct stat sb;
        uint64_t size = stat(iso, &sb) == 0 ? (uint64_t) sb.st_size : 0;
        unlink(iso);
        if (r < 0)
                return job_fail(d->ctx, r, "Cannot put the seed ISO of VM '%s' on host '%s': %s", d->vm.name, d->host.name,
                                hv_last_error());
        disk_record(d, "hdc", path, size);
        HvDisk *hd = &spec->disks[spec->n_disks++];
        *hd = (HvDisk) { .format = "raw", .target = "hdc", .cdrom = true, .capacity_bytes = size };
        snprintf(hd->path, sizeof hd->path, "%s", path);
        job_progress(d->ctx, 60, "seed ISO %s (cidata, hostname '%s')", path, hostname);
        return 0;
}

/* Phase 1 of a deploy: the VM's template and host, connected, with the
 * pool ready and able to run the guest type the template asks for. 0, or
 * the job's failure. */
static int deploy_prepare(Deploy *d, int64_t tid) {
        JobCtx *ctx = d->ctx;
        char why[512];
        int r = store_template_get_json(ctx->st, tid, &d->tpl);
        if (r == -ENOENT)
                return job_fail(ctx, -ENOENT, "Template %lld of VM '%s' no longer exists.", (long long) tid, d->vm.name);
        if (r < 0)
                return job_fail(ctx, r, "Cannot read template %lld of VM '%s': a database error occurred.", (long long) tid, d->vm.name);
        if (store_host_get(ctx->st, d->vm.host_id, &d->host) < 0)
                return job_fail(ctx, -ENXIO, "The host of VM '%s' no longer exists.", d->vm.name);
        if (inventory_link_acquire(d->inv, &d->host, &d->link, why, sizeof why) < 0)
                return job_fail(ctx, -EHOSTUNREACH, "Cannot reach host '%s' of VM '%s': %s", d->host.name, d->vm.name, why);
        job_progress(ctx, 10, "connected to host '%s'", d->host.name);
        if (hv_pool_ensure(inventory_link_conn(d->link), d->host.pool,
                           d->host.pool_path[0] ? d->host.pool_path : "/var/lib/libvirt/images/armada", NULL) < 0)
                return job_fail(ctx, -EIO, "Cannot prepare storage pool '%s' on host '%s': %s", d->host.pool, d->host.name,
                                hv_last_error());
        const char *want = tstr(d->tpl, "domain_type");
        if (want && streq(want, "kvm") && !streq(d->host.domain_type, "kvm"))
                return job_fail(ctx, -ENOTSUP, "Host '%s' cannot run KVM guests, which template '%s' asks for.", d->host.name,
                                tstr(d->tpl, "name"));
        return 0;
}

/* Phase 3: defines the domain (its disks are made) and starts it when
 * asked, keeping the VM's row in step. 0, or the job's failure. */
static int deploy_define_start(Deploy *d, const HvDomainSpec *spec, bool start) {
        JobCtx *ctx = d->ctx;
        /* Unlike vm.create, no link->op_lock around define and start: the
         * lock keeps reconcile from writing a state between a job's libvirt
         * call and its own write, but reconcile leaves a VM with a running
         * job alone (and knows this VM's UUID from the start), and holding
         * it made parallel deploys on one host start strictly one by one. */
        int r = hv_domain_define(inventory_link_conn(d->link), spec);
        if (r < 0)
                return job_fail(ctx, r, "Cannot define VM '%s' on host '%s': %s", d->vm.name, d->host.name, hv_last_error());
        d->defined = true;
        (void) store_vm_update_hw(ctx->st, d->vm.id, d->vm.cpus, d->vm.memory_mib, spec->domain_type);
        (void) store_vm_set_state(ctx->st, d->vm.id, "stopped");
        job_progress(ctx, 80, "defined VM '%s' on host '%s'", d->vm.name, d->host.name);
        if (!start)
                return 0;
        _cleanup_free_ char *note = xasprintf("Cancelled while waiting to start; nothing of VM '%s' was left behind.", d->vm.name);
        return library_start_new_vm(ctx, d->inv, d->link, &d->host, &d->vm, note);
}

/* The end of a deploy that failed at r: removes the domain and the volumes
 * it made (over a new connection when the job's died), tells, and forgets
 * the VM's row. Returns r (or -EIO). */
static int deploy_undo(Deploy *d, json_t *steps, int r) {
        JobCtx *ctx = d->ctx;
        char why[512];
        hv_conn_free(d->streams);
        if (d->link && !hv_conn_alive(inventory_link_conn(d->link))) {
                /* The connection died under the job: undo over a new one. */
                inventory_link_unref(d->link);
                d->link = NULL;
                if (inventory_link_acquire(d->inv, &d->host, &d->link, why, sizeof why) < 0) {
                        d->link = NULL;
                        log_warn("VM '%s': cannot reach host '%s' to remove what a failed deploy made: %s", d->vm.name,
                                 d->host.name, why);
                }
        }
        if (d->link) {
                if (d->defined) {
                        inventory_link_lock_ops(d->link);
                        (void) hv_domain_undefine(inventory_link_conn(d->link), d->vm.uuid);
                        inventory_link_unlock_ops(d->link);
                }
                for (size_t i = d->n_made; i-- > 0;)
                        (void) hv_volume_delete(inventory_link_conn(d->link), d->made[i]);
                inventory_link_unref(d->link);
        }
        for (size_t i = 0; i < d->n_made; i++) free(d->made[i]);
        _cleanup_free_ char *fmsg = xasprintf("VM '%s' was not deployed: %s", d->vm.name, ctx->error);
        deploy_event(d, "error", "vm.deploy-failed", fmsg);
        (void) store_vm_delete(ctx->st, d->vm.id);
        json_decref(d->tpl);
        json_decref(steps);
        return r < 0 ? r : -EIO;
}

/* The template's ISO (issue 12), if it names one, in a CD-ROM drive of its
 * own (hdd: the seed has hdc), found on the host or copied into its pool
 * once (inventory_iso_for_host). Not among d->made: the ISO's volume is
 * shared by every VM that uses it. */
static int deploy_iso(Deploy *d, HvDomainSpec *spec) {
        const char *path = tstr(d->tpl, "iso_path");
        if (!path)
                return 0;
        if (spec->n_disks >= HV_MAX_DISKS)
                return job_fail(d->ctx, -ENOSPC, "VM '%s' has no room for the template's ISO drive.", d->vm.name);
        _cleanup_free_ char *on_host = NULL;
        int r = inventory_iso_for_host(d->inv, d->ctx, &d->host, d->link, tstr(d->tpl, "iso_share_path"), path,
                                       (uint64_t) tint(d->tpl, "iso_size"), tstr(d->tpl, "iso_checksum"), &on_host);
        if (r < 0)
                return r;
        StoreDisk sd = { .size_bytes = (uint64_t) tint(d->tpl, "iso_size"), .owned = false, .target = "hdd" };
        snprintf(sd.path, sizeof sd.path, "%s", on_host);
        (void) store_vm_disk_add(d->ctx->st, d->vm.id, &sd);
        HvDisk *hd = &spec->disks[spec->n_disks++];
        *hd = (HvDisk) { .format = "raw", .target = "hdd", .cdrom = true, .capacity_bytes = sd.size_bytes };
        snprintf(hd->path, sizeof hd->path, "%s", on_host);
        job_progress(d->ctx, 65, "ISO '%s' in drive hdd", tstr(d->tpl, "iso_rel_path"));
        return 0;
}

/* vm.deploy: prepare (template, host, pool), make the disks and the seed,
 * define and start; on any failure, undo all of it. */
static int job_vm_deploy(JobCtx *ctx, void *userdata) {
        Deploy d = { .inv = userdata, .ctx = ctx };
        int r = store_vm_get(ctx->st, ctx->job->target_id, &d.vm);
        if (r == -ENOENT)
                return job_fail(ctx, -ENOENT, "VM '%s' no longer exists.", ctx->job->target_name);
        if (r < 0)
                return job_fail(ctx, r, "Cannot read VM '%s': a database error occurred.", ctx->job->target_name);
        int64_t tid = json_integer_value(json_object_get(ctx->params, "template_id"));
        const char *hostname = json_string_value(json_object_get(ctx->params, "hostname"));
        bool full_copy = json_is_true(json_object_get(ctx->params, "full_copy"));
        bool start = !json_is_false(json_object_get(ctx->params, "start"));
        json_t *steps = json_array();
        if ((r = deploy_prepare(&d, tid)) < 0)
                return deploy_undo(&d, steps, r);

        /* Phase 2: the domain's description, its disks and the seed. */
        const char *want = tstr(d.tpl, "domain_type");
        const char *dtype = inventory_domain_type(&d.host, want ? want : "auto");
        char vnc_listen[16], vnc_password[9];
        inventory_vnc_for_host(&d.host, vnc_listen, vnc_password);
        HvDomainSpec spec = { .vnc_listen = vnc_listen, .vnc_password = vnc_password[0] ? vnc_password : NULL, .name = d.vm.name, .uuid = d.vm.uuid, .domain_type = dtype, .vcpus = d.vm.cpus,
                              .memory_mib = d.vm.memory_mib, .description = d.vm.description[0] ? d.vm.description : NULL,
                              .network = tstr(d.tpl, "network"), .vnc = true,
                              .uefi = streq(tstr(d.tpl, "firmware"), "uefi"),
                              .installation_id = inventory_installation_id(d.inv), .vm_id = d.vm.id };
        if ((r = deploy_system_disk(&d, &spec, full_copy, &steps)) < 0 || (r = deploy_data_disks(&d, &spec)) < 0 ||
            (r = deploy_seed(&d, &spec, hostname ? hostname : d.vm.name)) < 0 || (r = deploy_iso(&d, &spec)) < 0)
                return deploy_undo(&d, steps, r);
        if (job_cancel_requested(ctx)) {
                snprintf(ctx->error, sizeof ctx->error, "Cancelled; nothing of VM '%s' was left behind.", d.vm.name);
                return deploy_undo(&d, steps, -ECANCELED);
        }
        if ((r = deploy_define_start(&d, &spec, start)) < 0)
                return deploy_undo(&d, steps, r);

        _cleanup_free_ char *msg = xasprintf("VM '%s' was deployed from template '%s' on host '%s'.", d.vm.name,
                                             tstr(d.tpl, "name"), d.host.name);
        deploy_event(&d, "info", "vm.deployed", msg);
        ctx->result = json_pack("{s:I, s:s, s:s, s:s?, s:o}", "vm_id", (json_int_t) d.vm.id, "host", d.host.name,
                                "template", tstr(d.tpl, "name"), "hostname", hostname, "disks", steps);
        hv_conn_free(d.streams);
        inventory_link_unref(d.link);
        json_decref(d.tpl);
        for (size_t i = 0; i < d.n_made; i++) free(d.made[i]);
        return 0;
}

/* A deploy interrupted by a restart may have left volumes or a domain:
 * queue a delete of whatever exists (owned disks are recorded as they are
 * made), which also removes the record. */
static void abandon_vm_deploy(Store *st, const StoreJob *job, void *userdata) {
        Inventory *inv = userdata;
        StoreVm vm;
        if (store_vm_get(st, job->target_id, &vm) < 0)
                return;
        (void) store_vm_set_state(st, vm.id, "failed");
        json_t *p = json_pack("{s:b}", "keep_disks", 0);
        (void) jobs_submit(inventory_jobs(inv), "vm.delete", "vm", vm.id, vm.name, job->owner_id, p, NULL);
        json_decref(p);
}

/* ------------------------------------------------------------------ */
/* vm.capture */

static int job_vm_capture(JobCtx *ctx, void *userdata) {
        Inventory *inv = userdata;
        const char *tname = json_string_value(json_object_get(ctx->params, "template_name"));
        const char *rel = json_string_value(json_object_get(ctx->params, "rel_path"));
        int64_t share_id = json_integer_value(json_object_get(ctx->params, "share_id"));
        int64_t points = json_integer_value(json_object_get(ctx->params, "points"));
        StoreVm vm;
        StoreHost host;
        char root[1024], why[1024];
        if (!tname || !rel || store_vm_get(ctx->st, ctx->job->target_id, &vm) < 0 ||
            store_host_get(ctx->st, vm.host_id, &host) < 0 || store_share_path(ctx->st, share_id, root, sizeof root) < 0)
                return job_fail(ctx, -ENOENT, "VM '%s', its host or the library share no longer exists.", ctx->job->target_name);
        StoreDisk *disks = NULL;
        int n = store_vm_disks(ctx->st, vm.id, &disks);
        char src[1024] = "";
        for (int i = 0; i < n && !src[0]; i++)
                if (streq(disks[i].target, "vda") || streq(disks[i].target, "sda"))
                        snprintf(src, sizeof src, "%s", disks[i].path);
        free(disks);
        if (!src[0])
                return job_fail(ctx, -ENOENT, "VM '%s' has no system disk (vda or sda) to make a template of.", vm.name);
        InventoryLink *link;
        if (inventory_link_acquire(inv, &host, &link, why, sizeof why) < 0)
                return job_fail(ctx, -EHOSTUNREACH, "Cannot reach host '%s' of VM '%s': %s", host.name, vm.name, why);
        HvState state = HV_STATE_NOSTATE;
        if (hv_domain_state(inventory_link_conn(link), vm.uuid, &state) < 0 || state != HV_STATE_SHUTOFF) {
                inventory_link_unref(link);
                return job_fail(ctx, -EBUSY, "VM '%s' must be shut off to be copied into a template; it is %s.", vm.name,
                                hv_state_name(state));
        }
        _cleanup_free_ char *dst = xasprintf("%s/%s", root, rel);
        _cleanup_free_ char *tmp = xasprintf("%s/.armada-capture-%.8s", root, vm.uuid);
        /* Flatten with qemu-img when this machine sees the host's very file;
         * otherwise stream it here as it is. */
        struct stat sb;
        bool visible = false;
        if (stat(src, &sb) == 0 && S_ISREG(sb.st_mode))
                (void) hv_volume_visible(inventory_link_conn(link), src, (uint64_t) sb.st_size, &visible);
        int r;
        job_progress(ctx, 20, visible ? "copying '%s' with qemu-img" : "downloading '%s' from host", src);
        if (visible)
                r = library_image_convert(src, tmp, why, sizeof why);
        else if ((r = inventory_slot_take(inv, &host, INVENTORY_SLOT_DISK, NULL, false, ctx)) < 0) {
                inventory_link_unref(link);
                return r;
        } else {
                r = hv_volume_download(inventory_link_conn(link), src, tmp);
                inventory_slot_give(inv, host.id, INVENTORY_SLOT_DISK);
                if (r < 0)
                        snprintf(why, sizeof why, "Cannot copy the disk of VM '%s' from host '%s': %s", vm.name, host.name, hv_last_error());
        }
        inventory_link_unref(link);
        if (r < 0)
                return job_fail(ctx, r, "%s", why);
        int fd = open(tmp, O_RDONLY | O_CLOEXEC);
        LibraryImageInfo info;
        if (fd < 0 || fstat(fd, &sb) < 0 || library_image_detect(fd, rel, (uint64_t) sb.st_size, &info) < 0 || info.backing[0]) {
                if (fd >= 0) close(fd);
                unlink(tmp);
                return job_fail(ctx, -EMEDIUMTYPE, "The copy of VM '%s''s disk is not a standalone disk image (an overlay whose base"
                                " is on host '%s' cannot be flattened from here).", vm.name, host.name);
        }
        close(fd);
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE) < 0) {
                int e = errno;
                unlink(tmp);
                return job_fail(ctx, -e, "Cannot put the copy at '%s': %s.", dst, strerror(e));
        }
        job_progress(ctx, 80, "copied into '%s'", dst);
        fd = library_open_in_share(root, rel, O_RDONLY, 0);
        StoreItem it;
        r = fd < 0 ? fd : index_file(ctx->st, share_id, fd, rel, &it, NULL);
        if (fd >= 0)
                close(fd);
        int64_t tid = 0;
        if (r >= 0) {
                _cleanup_free_ char *descr = xasprintf("made from VM %s", vm.name);
                StoreTemplate t = { .name = tname, .description = descr, .cpus = vm.cpus, .memory_mib = (int64_t) vm.memory_mib,
                                    .firmware = "bios", .base_item_id = it.id, .points = points };
                r = store_template_insert(ctx->st, &t, &tid);
        }
        if (r < 0) {
                unlink(dst);
                (void) store_item_delete(ctx->st, share_id, rel); /* nothing kept of a failed capture */
                return job_fail(ctx, r, r == -EEXIST ? "A template named '%s' was created meanwhile." : "Cannot record template '%s'.",
                                tname);
        }
        ctx->result = json_pack("{s:I, s:s, s:s}", "template_id", (json_int_t) tid, "template", tname, "image", dst);
        return 0;
}

void library_register_jobs(Jobs *jobs, Inventory *inv) {
        jobs_register(jobs, "vm.capture", job_vm_capture, NULL, inv, false);
        jobs_register(jobs, "library.refresh", job_library_refresh, NULL, NULL, true);
        jobs_register(jobs, "vm.deploy", job_vm_deploy, abandon_vm_deploy, inv, false);
        library_register_clone_jobs(jobs, inv);
        library_register_export_jobs(jobs, inv);
        library_register_import_jobs(jobs, inv);
        library_register_p2v_jobs(jobs, inv);
}
