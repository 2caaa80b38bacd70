/* library_vm_import() and the vm.import job: a VM from an OVA, an OVF, a
 * VMX with its VMDKs, a single disk image (qcow2, raw, vmdk, vhd, vhdx) or a
 * directory exported as qcow2 (domain XML + disks), as named phases:
 *
 *   resolve   the path, allow-listed (export root or a library share,
 *             realpath'd), and what it is
 *   read      the descriptor (OVF in the OVA's tar, VMX, domain XML): CPUs,
 *             memory, NICs and the disks it names, each a plain name beside
 *             it (or a tar member) of the declared size, self-contained (no
 *             backing file, no VMDK extent outside, no qcow2 data file)
 *   record    the VM placed and recorded in state "creating"
 *   job       each disk converted to qcow2 with qemu-img (its format given,
 *             never probed; the source pinned by an open descriptor), the
 *             OVA's manifest checked, the disks uploaded, the VM defined
 *
 * It also holds what clone and import share: placing and recording a new VM
 * (library_new_vm_record) and the bookkeeping that lets a failed job remove
 * everything it made (LibraryBuild). */
#include "library-priv.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "hv/hv-export.h"
#include "hv/hv-migrate.h"
#include "hv/hv-network.h"
#include "hv/hv-volume.h"
#include "placement/placement.h"
#include "place/place.h"
#include "store/store-library.h"
#include "store/store-network.h"

#define IMPORT_DESCRIPTOR_MAX (4 << 20)

/* ------------------------------------------------------------------ */
/* a new VM: placed and recorded */

static int new_vm_host(Store *st, const OpCaller *c, const LibraryNewVm *n, StoreHost *h, OpError *err) {
        int64_t hid = n->host_id;
        int r = hid ? 0 : store_host_find(st, n->host, &hid);
        if (r >= 0)
                r = store_host_get(st, hid, h);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the host");
        if (r < 0 || !op_allowed(st, c, ACT_READ, OBJ_HOST, 0, h->group_id))
                return op_fail(err, 422, "not_found", "host", "There is no host named '%.64s'.", n->host ? n->host : "?");
        if (streq(h->state, "maintenance") || streq(h->state, "unreachable") || streq(h->state, "not-responding"))
                return op_fail(err, 409, "conflict", "host", "Host '%s' is %s; new VMs cannot be placed on it now.", h->name, h->state);
        return 0;
}

/* In the transaction: the host (checked against its reserve) and the row. */
static int new_vm_place_record(Store *st, const OpCaller *c, const LibraryNewVm *n, bool fixed, StoreHost *h, int64_t *ret_id,
                               OpError *err) {
        PlacementDemand pd = { .cpus = n->cpus, .memory_mib = n->memory_mib, .disk_bytes = n->disk_bytes, .vm_name = n->name,
                               .networks = n->networks, .n_networks = n->n_networks };
        char why[1024] = "";
        if (fixed) {
                PlacementRating *rt = NULL;
                int k = placement_rate(st, h->group_id, &pd, &rt);
                for (int i = 0; i < k; i++)
                        if (rt[i].host_id == h->id && (rt[i].why & (PLACE_WHY_MEMORY | PLACE_WHY_NETWORK))) {
                                int e = op_fail(err, 422, "no_capacity", "host", "Host '%s' cannot take VM '%s': %.500s.", h->name,
                                                n->name, rt[i].reason);
                                free(rt);
                                return e;
                        }
                free(rt);
        } else {
                if (c->subj.role == ROLE_DELEGATED_ADMIN) {
                        pd.scope = c->subj.scopes;
                        pd.n_scope = c->subj.n_scopes;
                }
                int64_t hid;
                int e = placement_choose(st, n->group_id, &pd, &hid, why, sizeof why);
                if (e == -ENOSPC)
                        return op_fail(err, 409, "no_capacity", NULL, "Cannot place VM '%s': %.800s.", n->name, why);
                if (e < 0 || store_host_get(st, hid, h) < 0)
                        return op_fail(err, 500, "internal", NULL, "placement failed (error %d)", e);
        }
        if (!op_allowed(st, c, ACT_CREATE, OBJ_VM, c->user_id, h->group_id))
                return op_fail(err, 403, "forbidden", NULL, "User '%s' (%s) may not create VMs on host '%s'.",
                               c->user_name ? c->user_name : "system", c->role_name ? c->role_name : "?", h->name);
        StoreVm vm = { .host_id = h->id, .owner_id = c->user_id, .cpus = n->cpus, .memory_mib = n->memory_mib };
        uuid_generate(vm.uuid);
        snprintf(vm.name, sizeof vm.name, "%s", n->name);
        snprintf(vm.state, sizeof vm.state, "creating");
        snprintf(vm.origin, sizeof vm.origin, "%s", n->origin);
        snprintf(vm.description, sizeof vm.description, "%s", n->description ? n->description : "");
        int e = store_vm_insert(st, &vm, ret_id);
        if (e == -EEXIST)
                return op_fail(err, 409, "conflict", "name", "A VM named '%s' already exists.", n->name);
        if (e < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot record VM '%s'.", n->name);
        return 0;
}

int library_new_vm_record(Store *st, const OpCaller *c, const LibraryNewVm *n, int64_t *ret_id, StoreHost *ret_host,
                          OpError *err) {
        const char *bad = name_invalid_reason(n->name);
        if (bad)
                return op_fail(err, 400, "invalid_argument", "name", "Field 'name' ('%.64s') %s.", n->name, bad);
        int64_t existing;
        if (store_vm_find(st, n->name, &existing) == 0)
                return op_fail(err, 409, "conflict", "name", "A VM named '%s' already exists.", n->name);
        StoreHost h = { 0 };
        bool fixed = n->host || n->host_id;
        if (fixed) {
                int e = new_vm_host(st, c, n, &h, err);
                if (e < 0)
                        return e;
        }
        if (placement_lock(st) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot start a database transaction.");
        int e = new_vm_place_record(st, c, n, fixed, &h, ret_id, err);
        if (e < 0) {
                (void) placement_unlock(st, e);
                return e;
        }
        if (placement_unlock(st, 0) < 0) {
                (void) placement_unlock(st, -EIO);
                return op_fail(err, 500, "internal", NULL, "Cannot commit VM '%s'.", n->name);
        }
        *ret_host = h;
        return 0;
}

/* ------------------------------------------------------------------ */
/* the bookkeeping of a job that makes a VM */

int library_build_begin(LibraryBuild *b, Inventory *inv, JobCtx *ctx) {
        char why[512];
        b->inv = inv;
        b->ctx = ctx;
        int r = store_vm_get(ctx->st, ctx->job->target_id, &b->vm);
        if (r < 0)
                return job_fail(ctx, r == -ENOENT ? r : -EIO, "VM '%s' no longer exists.", ctx->job->target_name);
        if (store_host_get(ctx->st, b->vm.host_id, &b->host) < 0)
                return job_fail(ctx, -ENXIO, "The host of VM '%s' no longer exists.", b->vm.name);
        if (inventory_link_acquire(inv, &b->host, &b->link, why, sizeof why) < 0) {
                b->link = NULL;
                return job_fail(ctx, -EHOSTUNREACH, "Cannot reach host '%s' of VM '%s': %s", b->host.name, b->vm.name, why);
        }
        job_progress(ctx, 5, "connected to host '%s'", b->host.name);
        if (hv_pool_ensure(inventory_link_conn(b->link), b->host.pool,
                           b->host.pool_path[0] ? b->host.pool_path : "/var/lib/libvirt/images/armada", NULL) < 0)
                return job_fail(ctx, -EIO, "Cannot prepare storage pool '%s' on host '%s': %s", b->host.pool, b->host.name,
                                hv_last_error());
        return 0;
}

HvConn *library_build_stream_conn(LibraryBuild *b) {
        if (streq(b->host.domain_type, "test"))
                return inventory_link_conn(b->link);
        if (!b->streams && hv_connect(b->host.uri, 0, 0, NULL, NULL, &b->streams) < 0)
                return NULL;
        return b->streams;
}

void library_build_made(LibraryBuild *b, const char *target, const char *path, uint64_t size) {
        StoreDisk sd = { .size_bytes = size, .owned = true };
        snprintf(sd.target, sizeof sd.target, "%s", target);
        snprintf(sd.path, sizeof sd.path, "%s", path);
        (void) store_vm_disk_add(b->ctx->st, b->vm.id, &sd);
        if (b->n_made < HV_MAX_DISKS)
                b->made[b->n_made++] = xstrdup(path);
}

int library_build_define(LibraryBuild *b, const HvDomainSpec *spec, bool start) {
        return library_build_define_xml(b, spec, NULL, start);
}

int library_build_define_xml(LibraryBuild *b, const HvDomainSpec *spec, const char *xml, bool start) {
        JobCtx *ctx = b->ctx;
        int r = xml ? hv_domain_define_xml(inventory_link_conn(b->link), xml) : hv_domain_define(inventory_link_conn(b->link), spec);
        if (r < 0)
                return job_fail(ctx, r, "Cannot define VM '%s' on host '%s': %s", b->vm.name, b->host.name, hv_last_error());
        b->defined = true;
        (void) store_vm_update_hw(ctx->st, b->vm.id, spec->vcpus, spec->memory_mib, spec->domain_type);
        (void) store_vm_set_state(ctx->st, b->vm.id, "stopped");
        job_progress(ctx, 90, "defined VM '%s' on host '%s'", b->vm.name, b->host.name);
        if (!start)
                return 0;
        return library_start_new_vm(ctx, b->inv, b->link, &b->host, &b->vm, NULL);
}

int library_start_new_vm(JobCtx *ctx, Inventory *inv, InventoryLink *link, const StoreHost *h, const StoreVm *vm,
                         const char *cancel_note) {
        int r = inventory_slot_take(inv, h, INVENTORY_SLOT_START, vm->name, false, ctx);
        if (r < 0) {
                if (cancel_note)
                        snprintf(ctx->error, sizeof ctx->error, "%s", cancel_note);
                return r;
        }
        r = hv_domain_start(inventory_link_conn(link), vm->uuid);
        inventory_slot_give(inv, h->id, INVENTORY_SLOT_START);
        HvState st;
        if (r == 0 && hv_domain_state(inventory_link_conn(link), vm->uuid, &st) == 0)
                (void) store_vm_set_state(ctx->st, vm->id, hv_state_name(st));
        if (r < 0)
                return job_fail(ctx, r, "Cannot start VM '%s' on host '%s': %s", vm->name, h->name, hv_last_error());
        return 0;
}

static void build_free(LibraryBuild *b) {
        b->streams = hv_conn_free(b->streams);
        b->link = inventory_link_unref(b->link);
        for (size_t i = 0; i < b->n_made; i++) free(b->made[i]);
        b->n_made = 0;
}

int library_build_undo(LibraryBuild *b, const char *kind, int r) {
        JobCtx *ctx = b->ctx;
        char why[512];
        b->streams = hv_conn_free(b->streams);
        if (b->link && !hv_conn_alive(inventory_link_conn(b->link))) {
                b->link = inventory_link_unref(b->link);
                if (inventory_link_acquire(b->inv, &b->host, &b->link, why, sizeof why) < 0) {
                        b->link = NULL;
                        log_warn("VM '%s': cannot reach host '%s' to remove what a failed %s made: %s", b->vm.name, b->host.name,
                                 kind, why);
                }
        }
        if (b->link) {
                if (b->defined) {
                        inventory_link_lock_ops(b->link);
                        (void) hv_domain_undefine(inventory_link_conn(b->link), b->vm.uuid);
                        inventory_link_unlock_ops(b->link);
                }
                for (size_t i = b->n_made; i-- > 0;)
                        (void) hv_volume_delete(inventory_link_conn(b->link), b->made[i]);
        }
        if (b->vm.id) {
                _cleanup_free_ char *ev = xasprintf("%s-failed", kind);
                _cleanup_free_ char *msg = xasprintf("VM '%s' was not made (%s): %s", b->vm.name, kind, ctx->error);
                (void) store_event_add(ctx->st, "error", ev, "vm", b->vm.id, b->vm.name, b->vm.owner_id, msg);
                (void) store_vm_delete(ctx->st, b->vm.id);
        }
        build_free(b);
        return r < 0 ? r : -EIO;
}

void library_build_end(LibraryBuild *b) {
        build_free(b);
}

void library_build_abandon(Store *st, const StoreJob *job, void *userdata) {
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
/* resolve: the allow-listed path */

int library_export_root(char out[PATH_MAX]) {
        const char *root = library_config()->export_root;
        if (!root || !realpath(root, out))
                return -ENOENT;
        return 0;
}

static bool under(const char *root, const char *path) {
        size_t n = strlen(root);
        return strncmp(root, path, n) == 0 && (path[n] == '/' || path[n] == 0 || streq(root, "/"));
}

/* The realpath of path when it lies under the export root or a library
 * share, else 400 naming field. */
static int import_allowed_path(Store *st, const char *field, const char *path, char real[PATH_MAX], OpError *err) {
        if (path[0] != '/')
                return op_fail(err, 400, "invalid_argument", field, "Field '%s' must be an absolute path.", field);
        if (!realpath(path, real))
                return op_fail(err, 400, "invalid_argument", field, "Field '%s': '%.300s' does not exist.", field, path);
        char root[PATH_MAX];
        if (library_export_root(root) == 0 && under(root, real))
                return 0;
        _cleanup_json_ json_t *shares = NULL;
        if (store_share_list(st, &shares) == 0) {
                size_t i;
                json_t *s;
                json_array_foreach(shares, i, s) {
                        const char *p = jget_str(s, "path");
                        if (p && realpath(p, root) && under(root, real))
                                return 0;
                }
        }
        return op_fail(err, 400, "invalid_argument", field, "Field '%s': '%.300s' is neither under armadad's export root nor in a"
                       " library share (symbolic links are followed before this check).", field, path);
}

static char *qemu_source(const char *format, const char *file, uint64_t offset, uint64_t size, bool whole);

/* The virtual size qemu-img reports of an image Armada cannot read the
 * size of itself (VHDX keeps it in a metadata region): 0 when it cannot. */
static uint64_t qemu_vsize(const char *format, const char *file, uint64_t offset, uint64_t size) {
        _cleanup_free_ char *src = qemu_source(format, file, offset, size, offset == 0);
        _cleanup_free_ char *log = xasprintf("%s/armada-info-XXXXXX", library_tmp_dir());
        int fd = mkstemp(log);
        if (fd < 0)
                return 0;
        close(fd);
        char *argv[] = { "qemu-img", "info", "--output=json", src, NULL };
        int st = library_spawn_wait(argv, log);
        _cleanup_free_ char *text = NULL;
        int r = file_read_all(log, &text, NULL);
        unlink(log);
        if (st != 0 || r < 0)
                return 0;
        _cleanup_json_ json_t *j = json_loads(text, 0, NULL);
        json_int_t v = json_integer_value(json_object_get(j, "virtual-size"));
        return v > 0 ? (uint64_t) v : 0;
}

/* ------------------------------------------------------------------ */
/* read: what the source holds */

typedef struct {
        char file[PATH_MAX];      /* the file holding the disk (the OVA itself for a member) */
        char member[256];         /* the name in the descriptor / tar */
        uint64_t offset, size;    /* the bytes of the image in file */
        char format[8];           /* qemu-img's driver: qcow2, raw, vmdk, vpc, vhdx */
        uint64_t capacity;        /* declared by the descriptor, 0 when not */
} ImportDisk;

typedef struct {
        char kind[8];             /* "ova", "ovf", "vmx", "image", "libvirt" */
        char path[PATH_MAX];      /* the realpath given */
        char dir[PATH_MAX];       /* the directory its files must lie in */
        char name[64];            /* the descriptor's VM name, or the file's stem */
        unsigned cpus;
        uint64_t memory_mib;
        size_t n_disks;
        ImportDisk disks[HV_MAX_DISKS];
        unsigned n_nics;
        json_t *nics;             /* [{"network", "mac"}] */
        json_t *manifest;         /* {member: sha256} of an OVA, or NULL */
        uint64_t ova_members_end;
} ImportSource;

static void source_done(ImportSource *s) {
        json_decref(s->nics);
        json_decref(s->manifest);
}

static int bad(OpError *err, const ImportSource *s, const char *fmt, ...) _printf_(3, 4);
static int bad(OpError *err, const ImportSource *s, const char *fmt, ...) {
        char why[700];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        return op_fail(err, 400, "invalid_argument", "path", "Cannot import '%.300s': %s.", s->path, why);
}

/* A name a descriptor gives for a file beside it: one path segment. */
static bool plain_name(const char *n) {
        return n && n[0] && n[0] != '.' && strlen(n) < 256 && !strchr(n, '/') && !strchr(n, '\\');
}

static bool has_suffix(const char *s, const char *suffix) {
        size_t n = strlen(s), k = strlen(suffix);
        return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

static uint64_t rd_be64(const unsigned char *p) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++) v = v << 8 | p[i];
        return v;
}
static uint32_t rd_be32(const unsigned char *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}
static uint64_t rd_le64(const unsigned char *p) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
        return v;
}

/* What the image at [off, off+size) of fd is, refusing anything that would
 * make qemu-img open another file: a qcow2 backing file or external data
 * file, a VMDK parent (parentFileNameHint) or a text VMDK descriptor (whose
 * extents are checked separately, for files beside it only). 0 with the
 * format and the guest-visible size, or -EMEDIUMTYPE with why. */
static int image_probe(int fd, uint64_t off, uint64_t size, const char *name, char fmt[8], uint64_t *ret_vsize, char *why,
                       size_t why_size) {
        unsigned char h[512] = { 0 };
        if (size < 512 || pread(fd, h, sizeof h, (off_t) off) != (ssize_t) sizeof h) {
                snprintf(why, why_size, "'%s' is too small to be a disk image", name);
                return -EMEDIUMTYPE;
        }
        if (memcmp(h, "QFI\xfb", 4) == 0) {
                uint32_t version = rd_be32(h + 4);
                if (rd_be64(h + 8) != 0 || (version >= 3 && (rd_be64(h + 72) & 4))) {
                        snprintf(why, why_size, "the qcow2 image '%s' has a backing file or an external data file", name);
                        return -EMEDIUMTYPE;
                }
                snprintf(fmt, 8, "qcow2");
                *ret_vsize = rd_be64(h + 24);
                return 0;
        }
        if (memcmp(h, "KDMV", 4) == 0) {
                uint64_t doff = rd_le64(h + 28) * 512, dsize = rd_le64(h + 36) * 512;
                if (dsize > 0) {
                        if (dsize > 65536 || doff + dsize > size) {
                                snprintf(why, why_size, "the VMDK image '%s' has a descriptor outside the file", name);
                                return -EMEDIUMTYPE;
                        }
                        _cleanup_free_ char *d = xcalloc(1, dsize + 1);
                        if (pread(fd, d, dsize, (off_t) (off + doff)) != (ssize_t) dsize) {
                                snprintf(why, why_size, "the VMDK image '%s' cannot be read", name);
                                return -EMEDIUMTYPE;
                        }
                        const char *p = strstr(d, "parentFileNameHint");
                        if (p) {
                                snprintf(why, why_size, "the VMDK image '%s' names a parent image (parentFileNameHint)", name);
                                return -EMEDIUMTYPE;
                        }
                }
                snprintf(fmt, 8, "vmdk");
                *ret_vsize = rd_le64(h + 12) * 512;
                return 0;
        }
        if (memcmp(h, "vhdxfile", 8) == 0) {
                snprintf(fmt, 8, "vhdx");
                *ret_vsize = 0;
                return 0;
        }
        unsigned char foot[512];
        if (memcmp(h, "conectix", 8) == 0 ||
            (pread(fd, foot, sizeof foot, (off_t) (off + size - 512)) == 512 && memcmp(foot, "conectix", 8) == 0)) {
                const unsigned char *f = memcmp(h, "conectix", 8) == 0 ? h : foot;
                if (rd_be32(f + 60) == 4) {
                        snprintf(why, why_size, "the VHD image '%s' is a differencing image (it has a parent)", name);
                        return -EMEDIUMTYPE;
                }
                snprintf(fmt, 8, "vpc");
                *ret_vsize = rd_be64(f + 48);
                return 0;
        }
        if (memmem(h, sizeof h, "Disk DescriptorFile", 19) || memmem(h, sizeof h, "createType", 10)) {
                snprintf(why, why_size, "'%s' is a VMDK descriptor", name);
                return -EMEDIUMTYPE;
        }
        if (size % 512 != 0) {
                snprintf(why, why_size, "'%s' is no disk image Armada knows (qcow2, vmdk, vhd, vhdx, or raw of whole 512-byte sectors)",
                         name);
                return -EMEDIUMTYPE;
        }
        snprintf(fmt, 8, "raw");
        *ret_vsize = size;
        return 0;
}

/* Opens name beside the descriptor (in s->dir): a regular file reached
 * without a symlink. */
static int open_beside(const ImportSource *s, const char *name, struct stat *sb) {
        int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        close(dfd);
        if (fd < 0)
                return -e;
        if (fstat(fd, sb) < 0 || !S_ISREG(sb->st_mode)) {
                close(fd);
                return -EINVAL;
        }
        return fd;
}

/* A text VMDK descriptor beside the VMX: its extents must be plain names
 * beside it, of the sizes they declare, without a parent. Adds the disk as
 * the descriptor itself (qemu-img follows the checked extents). */
static int read_vmdk_descriptor(ImportSource *s, const char *name, const char *text, ImportDisk *d, OpError *err) {
        uint64_t total = 0;
        _cleanup_free_ char *copy = xstrdup(text);
        char *save = NULL;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                while (isspace((unsigned char) *line)) line++;
                if (strncmp(line, "parentFileNameHint", 18) == 0) {
                        const char *q = strchr(line, '"');
                        if (q && q[1] != '"')
                                return bad(err, s, "the VMDK descriptor '%s' names a parent image (parentFileNameHint)", name);
                }
                if (strncmp(line, "RW ", 3) && strncmp(line, "RDONLY ", 7) && strncmp(line, "NOACCESS ", 9))
                        continue;
                unsigned long long sectors = 0, offset = 0;
                char type[16] = "", file[300] = "";
                int k = sscanf(line, "%*s %llu %15s \"%299[^\"]\" %llu", &sectors, type, file, &offset);
                if (k < 3)
                        return bad(err, s, "the VMDK descriptor '%s' has an extent line that does not parse", name);
                if (!plain_name(file))
                        return bad(err, s, "the VMDK descriptor '%s' names an extent outside its directory", name);
                struct stat sb;
                int fd = open_beside(s, file, &sb);
                if (fd < 0)
                        return bad(err, s, "the extent '%s' of the VMDK descriptor '%s' is not a regular file beside it", file, name);
                close(fd);
                if (strcmp(type, "FLAT") == 0 && (uint64_t) sb.st_size < (offset + sectors) * 512)
                        return bad(err, s, "the extent '%s' of '%s' is %lld bytes, smaller than the %llu sectors it declares", file,
                                   name, (long long) sb.st_size, sectors);
                if (strcmp(type, "FLAT") && strcmp(type, "SPARSE") && strcmp(type, "ZERO"))
                        return bad(err, s, "the VMDK descriptor '%s' has an extent of type '%.15s', which Armada does not import", name,
                                   type);
                total += sectors * 512;
        }
        if (total == 0)
                return bad(err, s, "the VMDK descriptor '%s' names no extent", name);
        snprintf(d->format, sizeof d->format, "vmdk");
        d->capacity = total;
        return 0;
}

/* A disk file beside the descriptor: a plain name, regular, of a known
 * self-contained format (a text VMDK descriptor with its extents checked). */
static int add_disk_beside(ImportSource *s, const char *name, uint64_t declared_size, uint64_t capacity, OpError *err) {
        if (s->n_disks >= HV_MAX_DISKS - 1)
                return bad(err, s, "it has more than %d disks", HV_MAX_DISKS - 1);
        if (!plain_name(name))
                return bad(err, s, "the disk file '%.200s' is not a plain file name beside the descriptor", name);
        ImportDisk *d = &s->disks[s->n_disks];
        *d = (ImportDisk) { .offset = 0, .capacity = capacity };
        snprintf(d->member, sizeof d->member, "%s", name);
        if ((size_t) snprintf(d->file, sizeof d->file, "%.3800s/%.255s", s->dir, name) >= sizeof d->file)
                return bad(err, s, "the path of '%s' is too long", name);
        struct stat sb;
        int fd = open_beside(s, name, &sb);
        if (fd < 0)
                return bad(err, s, "the disk file '%s' is not a regular file beside the descriptor", name);
        d->size = (uint64_t) sb.st_size;
        char why[400], head[2048] = "";
        uint64_t vsize = 0;
        int r = 0;
        if (declared_size && declared_size != (uint64_t) sb.st_size)
                r = bad(err, s, "the disk file '%s' is %lld bytes, not the %llu the descriptor declares", name, (long long) sb.st_size,
                        (unsigned long long) declared_size);
        else if (image_probe(fd, 0, (uint64_t) sb.st_size, name, d->format, &vsize, why, sizeof why) < 0) {
                ssize_t k = sb.st_size < 65536 && has_suffix(name, ".vmdk") ? pread(fd, head, sizeof head - 1, 0) : -1;
                /* A descriptor is text, padded with NULs to a sector. */
                if (k > 0 && strstr(head, "createType")) {
                        _cleanup_free_ char *text = xcalloc(1, (size_t) sb.st_size + 1);
                        r = pread(fd, text, (size_t) sb.st_size, 0) == sb.st_size ? read_vmdk_descriptor(s, name, text, d, err)
                                                                                   : bad(err, s, "'%s' cannot be read", name);
                } else
                        r = bad(err, s, "%s", why);
        } else if (!vsize && !(vsize = qemu_vsize(d->format, d->file, 0, d->size)))
                r = bad(err, s, "the size of the disk '%s' cannot be read", name);
        else if (capacity && vsize > capacity)
                r = bad(err, s, "the disk '%s' holds %llu bytes, more than the capacity of %llu the descriptor declares", name,
                        (unsigned long long) vsize, (unsigned long long) capacity);
        close(fd);
        if (r < 0)
                return r;
        if (!d->capacity)
                d->capacity = vsize;
        s->n_disks++;
        return 0;
}

/* ---- OVA: a tar whose first member is the descriptor ---- */

typedef struct {
        char name[256];
        uint64_t offset, size;
} TarMember;

static uint64_t tar_number(const unsigned char *f, size_t n) {
        if (f[0] & 0x80) { /* base-256 */
                uint64_t v = 0;
                for (size_t i = 1; i < n; i++) v = v << 8 | f[i];
                return v;
        }
        uint64_t v = 0;
        for (size_t i = 0; i < n && f[i]; i++)
                if (f[i] >= '0' && f[i] <= '7')
                        v = v * 8 + (uint64_t) (f[i] - '0');
        return v;
}

/* The regular members of the tar fd (at most max), refusing links,
 * directories, names with a '/' and members past the end. */
static int tar_index(int fd, uint64_t file_size, TarMember *m, size_t max, size_t *ret_n, char *why, size_t why_size) {
        uint64_t pos = 0;
        size_t n = 0;
        for (;;) {
                unsigned char h[512];
                if (pos + 512 > file_size || pread(fd, h, 512, (off_t) pos) != 512) {
                        snprintf(why, why_size, "its tar archive ends without an end marker");
                        return -EINVAL;
                }
                bool zero = true;
                for (int i = 0; i < 512 && zero; i++) zero = h[i] == 0;
                if (zero)
                        break;
                unsigned sum = 0;
                for (int i = 0; i < 512; i++) sum += (i >= 148 && i < 156) ? ' ' : h[i];
                if (sum != tar_number(h + 148, 8)) {
                        snprintf(why, why_size, "its tar header at byte %llu has a wrong checksum", (unsigned long long) pos);
                        return -EINVAL;
                }
                char name[101];
                memcpy(name, h, 100);
                name[100] = 0;
                uint64_t size = tar_number(h + 124, 12);
                char type = (char) h[156];
                if (type != '0' && type != 0) {
                        snprintf(why, why_size, "its tar member '%.100s' is not a regular file", name);
                        return -EINVAL;
                }
                if (!plain_name(name)) {
                        snprintf(why, why_size, "its tar member '%.100s' is not a plain file name", name);
                        return -EINVAL;
                }
                if (pos + 512 + size > file_size) {
                        snprintf(why, why_size, "its tar member '%.100s' runs past the end of the file", name);
                        return -EINVAL;
                }
                if (n == max) {
                        snprintf(why, why_size, "its tar archive has more than %zu members", max);
                        return -EINVAL;
                }
                snprintf(m[n].name, sizeof m[n].name, "%s", name);
                m[n].offset = pos + 512;
                m[n].size = size;
                n++;
                pos += 512 + (size + 511) / 512 * 512;
        }
        *ret_n = n;
        return 0;
}

/* ---- OVF ---- */

#define OVF_NS "http://schemas.dmtf.org/ovf/envelope/1"

static bool named(const xmlNode *n, const char *local) {
        return n && n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST local);
}
static xmlNode *first(xmlNode *parent, const char *local) {
        for (xmlNode *n = parent ? parent->children : NULL; n; n = n->next)
                if (named(n, local))
                        return n;
        return NULL;
}
/* ovf:attr (or attr without a namespace), malloc'd or NULL. */
static char *ovf_attr(xmlNode *n, const char *attr) {
        xmlChar *v = xmlGetNsProp(n, BAD_CAST attr, BAD_CAST OVF_NS);
        if (!v)
                v = xmlGetNoNsProp(n, BAD_CAST attr);
        char *s = v ? xstrdup((const char *) v) : NULL;
        xmlFree(v);
        return s;
}
static char *text_of(xmlNode *n) {
        xmlChar *v = n ? xmlNodeGetContent(n) : NULL;
        char *s = v ? xstrdup((const char *) v) : NULL;
        xmlFree(v);
        return s;
}
static bool to_u64(const char *s, uint64_t *ret) {
        if (!s || !*s)
                return false;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        while (*end == ' ') end++;
        if (errno || *end || s[0] == '-')
                return false;
        *ret = v;
        return true;
}
/* "byte * 2^20" → 20; "MegaBytes"/"MB" → 20; "GigaBytes"/"GB" → 30; "" → def. */
static int units_shift(const char *u, int def) {
        if (!u || !*u)
                return def;
        if (strstr(u, "2^")) {
                int k = atoi(strstr(u, "2^") + 2);
                return k >= 0 && k <= 40 ? k : -1;
        }
        if (strcasecmp(u, "byte") == 0 || strcasecmp(u, "bytes") == 0)
                return 0;
        if (strcasecmp(u, "MegaBytes") == 0 || strcasecmp(u, "MB") == 0)
                return 20;
        if (strcasecmp(u, "GigaBytes") == 0 || strcasecmp(u, "GB") == 0)
                return 30;
        return -1;
}

typedef struct {
        char id[64], href[256];
        uint64_t size;
} OvfFile;
typedef struct {
        char id[64], file_ref[64];
        uint64_t capacity;
} OvfDisk;

static int ovf_references(ImportSource *s, xmlNode *env, OvfFile *files, size_t *n_files, OpError *err) {
        *n_files = 0;
        for (xmlNode *f = first(env, "References") ? first(env, "References")->children : NULL; f; f = f->next) {
                if (!named(f, "File"))
                        continue;
                if (*n_files == HV_MAX_DISKS * 2)
                        return bad(err, s, "its OVF descriptor references more than %d files", HV_MAX_DISKS * 2);
                _cleanup_free_ char *id = ovf_attr(f, "id"), *href = ovf_attr(f, "href"), *size = ovf_attr(f, "size");
                if (!id || !href || strlen(id) >= 64)
                        return bad(err, s, "a File of its OVF descriptor lacks ovf:id or ovf:href");
                if (!plain_name(href))
                        return bad(err, s, "the OVF File '%.60s' names '%.200s', which is not a plain file name beside the descriptor", id,
                                   href);
                OvfFile *o = &files[(*n_files)++];
                snprintf(o->id, sizeof o->id, "%s", id);
                snprintf(o->href, sizeof o->href, "%s", href);
                o->size = 0;
                if (size && !to_u64(size, &o->size))
                        return bad(err, s, "the ovf:size of File '%s' is not a number", id);
        }
        return 0;
}

static int ovf_disks(ImportSource *s, xmlNode *env, OvfDisk *disks, size_t *n_disks, OpError *err) {
        *n_disks = 0;
        for (xmlNode *d = first(env, "DiskSection") ? first(env, "DiskSection")->children : NULL; d; d = d->next) {
                if (!named(d, "Disk"))
                        continue;
                if (*n_disks == HV_MAX_DISKS * 2)
                        return bad(err, s, "its OVF descriptor has more than %d disks", HV_MAX_DISKS * 2);
                _cleanup_free_ char *id = ovf_attr(d, "diskId"), *ref = ovf_attr(d, "fileRef"), *cap = ovf_attr(d, "capacity"),
                                    *units = ovf_attr(d, "capacityAllocationUnits");
                OvfDisk *o = &disks[*n_disks];
                uint64_t v;
                int shift = units_shift(units, 0);
                if (!id || strlen(id) >= 64 || !cap || !to_u64(cap, &v) || shift < 0 || v > (UINT64_MAX >> shift))
                        return bad(err, s, "a Disk of its OVF descriptor lacks a valid ovf:diskId or ovf:capacity");
                snprintf(o->id, sizeof o->id, "%s", id);
                snprintf(o->file_ref, sizeof o->file_ref, "%s", ref ? ref : "");
                o->capacity = v << shift;
                (*n_disks)++;
        }
        return 0;
}

/* The VirtualSystem's hardware: CPUs, memory, NICs, and the disk ids of its
 * disk items in order (into order[]). */
static int ovf_hardware(ImportSource *s, xmlNode *vs, char order[][64], size_t *n_order, OpError *err) {
        xmlNode *hw = first(vs, "VirtualHardwareSection");
        if (!hw)
                return bad(err, s, "its OVF VirtualSystem has no VirtualHardwareSection");
        *n_order = 0;
        for (xmlNode *it = hw->children; it; it = it->next) {
                if (!named(it, "Item"))
                        continue;
                _cleanup_free_ char *type = text_of(first(it, "ResourceType")), *qty = text_of(first(it, "VirtualQuantity"));
                _cleanup_free_ char *units = text_of(first(it, "AllocationUnits"));
                uint64_t rt = 0, q = 0;
                if (!to_u64(type, &rt))
                        continue;
                if (rt == 3) {
                        if (!to_u64(qty, &q) || q < 1 || q > 4096)
                                return bad(err, s, "its OVF CPU item has no valid VirtualQuantity (1 to 4096)");
                        s->cpus = (unsigned) q;
                } else if (rt == 4) {
                        int shift = units_shift(units, 20);
                        if (!to_u64(qty, &q) || shift < 0 || q == 0 || q > (UINT64_MAX >> shift))
                                return bad(err, s, "its OVF memory item has no valid VirtualQuantity and AllocationUnits");
                        s->memory_mib = ((q << shift) + (1 << 20) - 1) >> 20;
                } else if (rt == 17) {
                        _cleanup_free_ char *res = text_of(first(it, "HostResource"));
                        const char *id = res ? strrchr(res, '/') : NULL;
                        if (!id || *n_order == HV_MAX_DISKS)
                                return bad(err, s, "an OVF disk item has no HostResource 'ovf:/disk/ID' (or there are more than %d)",
                                           HV_MAX_DISKS - 1);
                        snprintf(order[(*n_order)++], 64, "%s", id + 1);
                } else if (rt == 10) {
                        _cleanup_free_ char *conn = text_of(first(it, "Connection")), *mac = text_of(first(it, "Address"));
                        s->n_nics++;
                        json_array_append_new(s->nics, json_pack("{s:s?, s:s?}", "network", conn, "mac", mac));
                }
        }
        return 0;
}

/* Parses the OVF text; each disk's file is found by find(href) (a tar
 * member or a file beside). */
static int read_ovf(ImportSource *s, const char *text, size_t len, const TarMember *members, size_t n_members, int ova_fd,
                    OpError *err) {
        if (len > IMPORT_DESCRIPTOR_MAX)
                return bad(err, s, "its OVF descriptor is larger than %d MiB", IMPORT_DESCRIPTOR_MAX >> 20);
        xmlDoc *doc = xmlReadMemory(text, (int) len, NULL, NULL,
                                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
        xmlNode *env = doc ? xmlDocGetRootElement(doc) : NULL;
        int r = 0;
        _cleanup_free_ char *vname = NULL, *vid = NULL;
        if (!env || doc->intSubset || doc->extSubset || !named(env, "Envelope")) {
                r = bad(err, s, "its OVF descriptor is not well-formed XML with an Envelope (a document type declaration is refused)");
                goto out;
        }
        OvfFile files[HV_MAX_DISKS * 2];
        OvfDisk disks[HV_MAX_DISKS * 2];
        size_t n_files = 0, n_disks = 0, n_order = 0;
        char order[HV_MAX_DISKS][64];
        xmlNode *vs = first(env, "VirtualSystem");
        if (!vs) {
                r = bad(err, s, "its OVF descriptor has no VirtualSystem (a VirtualSystemCollection is not imported)");
                goto out;
        }
        if ((r = ovf_references(s, env, files, &n_files, err)) < 0 || (r = ovf_disks(s, env, disks, &n_disks, err)) < 0 ||
            (r = ovf_hardware(s, vs, order, &n_order, err)) < 0)
                goto out;
        vname = text_of(first(vs, "Name"));
        vid = ovf_attr(vs, "id");
        snprintf(s->name, sizeof s->name, "%s", vname && *vname ? vname : vid ? vid : "");
        for (size_t i = 0; i < n_order && r == 0; i++) {
                const OvfDisk *d = NULL;
                const OvfFile *f = NULL;
                for (size_t k = 0; k < n_disks; k++)
                        if (streq(disks[k].id, order[i])) d = &disks[k];
                for (size_t k = 0; d && k < n_files; k++)
                        if (streq(files[k].id, d->file_ref)) f = &files[k];
                if (!d || !f) {
                        r = bad(err, s, "its OVF disk '%.60s' has no Disk with a File in the descriptor", order[i]);
                        break;
                }
                if (!members) {
                        r = add_disk_beside(s, f->href, f->size, d->capacity, err);
                        continue;
                }
                const TarMember *m = NULL;
                for (size_t k = 0; k < n_members; k++)
                        if (streq(members[k].name, f->href)) m = &members[k];
                if (!m) {
                        r = bad(err, s, "the disk file '%s' its OVF descriptor names is not in the archive", f->href);
                        break;
                }
                if (f->size && f->size != m->size) {
                        r = bad(err, s, "the disk file '%s' is %llu bytes in the archive, not the %llu the descriptor declares", f->href,
                                (unsigned long long) m->size, (unsigned long long) f->size);
                        break;
                }
                ImportDisk *id = &s->disks[s->n_disks];
                *id = (ImportDisk) { .offset = m->offset, .size = m->size, .capacity = d->capacity };
                snprintf(id->file, sizeof id->file, "%s", s->path);
                snprintf(id->member, sizeof id->member, "%s", m->name);
                char why[400];
                uint64_t vsize = 0;
                if (image_probe(ova_fd, m->offset, m->size, m->name, id->format, &vsize, why, sizeof why) < 0)
                        r = bad(err, s, "%s", why);
                else if (!vsize && !(vsize = qemu_vsize(id->format, id->file, m->offset, m->size)))
                        r = bad(err, s, "the size of the disk '%s' cannot be read", m->name);
                else if (vsize > d->capacity)
                        r = bad(err, s, "the disk '%s' holds %llu bytes, more than the ovf:capacity of %llu", m->name,
                                (unsigned long long) vsize, (unsigned long long) d->capacity);
                else
                        s->n_disks++;
        }
        if (r == 0 && s->n_disks == 0)
                r = bad(err, s, "its OVF descriptor names no disk");
out:
        xmlFreeDoc(doc);
        return r;
}

/* The manifest of an OVA: "SHA256(name)= hex" (or SHA1, refused as weak). */
static int read_manifest(ImportSource *s, const char *text, OpError *err) {
        s->manifest = json_object();
        _cleanup_free_ char *copy = xstrdup(text);
        char *save = NULL;
        for (char *line = strtok_r(copy, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
                char name[256], hex[129];
                if (sscanf(line, "SHA256(%255[^)])= %128s", name, hex) == 2 && strlen(hex) == 64)
                        json_object_set_new(s->manifest, name, json_string(hex));
                else if (strncmp(line, "SHA1(", 5) == 0 || strncmp(line, "SHA512(", 7) == 0)
                        continue; /* other digests: the SHA-256 lines (when any) are checked */
                else
                        return bad(err, s, "its manifest has a line that is not 'SHA256(NAME)= HEX'");
        }
        return 0;
}

static int read_ova(ImportSource *s, OpError *err) {
        int fd = open(s->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat sb;
        if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
                if (fd >= 0) close(fd);
                return bad(err, s, "it is not a regular file");
        }
        TarMember m[HV_MAX_DISKS * 2 + 4];
        size_t n = 0;
        char why[300];
        int r = 0;
        if (tar_index(fd, (uint64_t) sb.st_size, m, sizeof m / sizeof m[0], &n, why, sizeof why) < 0)
                r = bad(err, s, "%s", why);
        else if (n == 0 || !has_suffix(m[0].name, ".ovf"))
                r = bad(err, s, "the first member of the OVA is not an OVF descriptor");
        else if (m[0].size > IMPORT_DESCRIPTOR_MAX)
                r = bad(err, s, "its OVF descriptor is larger than %d MiB", IMPORT_DESCRIPTOR_MAX >> 20);
        if (r < 0) {
                close(fd);
                return r;
        }
        _cleanup_free_ char *ovf = xcalloc(1, m[0].size + 1);
        if (pread(fd, ovf, m[0].size, (off_t) m[0].offset) != (ssize_t) m[0].size)
                r = bad(err, s, "its OVF descriptor cannot be read");
        for (size_t i = 1; r == 0 && i < n; i++)
                if (has_suffix(m[i].name, ".mf")) {
                        if (m[i].size > 1 << 20) {
                                r = bad(err, s, "its manifest is larger than 1 MiB");
                                break;
                        }
                        _cleanup_free_ char *mf = xcalloc(1, m[i].size + 1);
                        r = pread(fd, mf, m[i].size, (off_t) m[i].offset) == (ssize_t) m[i].size ? read_manifest(s, mf, err)
                                                                                                  : bad(err, s, "its manifest cannot be read");
                }
        if (r == 0)
                r = read_ovf(s, ovf, m[0].size, m, n, fd, err);
        if (r == 0 && s->manifest) {
                /* Every file the descriptor names must be in the manifest
                 * when there is one (the job checks the digests). */
                if (!json_object_get(s->manifest, m[0].name))
                        r = bad(err, s, "its manifest has no SHA-256 of '%s'", m[0].name);
                for (size_t i = 0; r == 0 && i < s->n_disks; i++)
                        if (!json_object_get(s->manifest, s->disks[i].member))
                                r = bad(err, s, "its manifest has no SHA-256 of '%s'", s->disks[i].member);
                if (r == 0) {
                        /* The descriptor's digest now: it was read already. */
                        unsigned char dg[crypto_hash_sha256_BYTES];
                        char hex[65];
                        crypto_hash_sha256(dg, (const unsigned char *) ovf, m[0].size);
                        hex_encode(dg, sizeof dg, hex);
                        if (!streq(hex, jget_str(s->manifest, m[0].name)))
                                r = bad(err, s, "the SHA-256 of '%s' does not match its manifest", m[0].name);
                }
        }
        close(fd);
        return r;
}

static int read_file_text(ImportSource *s, const char *path, char **ret, size_t *ret_len, OpError *err) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat sb;
        if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size > IMPORT_DESCRIPTOR_MAX) {
                if (fd >= 0) close(fd);
                return bad(err, s, "its descriptor is not a regular file of at most %d MiB", IMPORT_DESCRIPTOR_MAX >> 20);
        }
        char *t = xcalloc(1, (size_t) sb.st_size + 1);
        ssize_t k = pread(fd, t, (size_t) sb.st_size, 0);
        close(fd);
        if (k != sb.st_size) {
                free(t);
                return bad(err, s, "its descriptor cannot be read");
        }
        *ret = t;
        *ret_len = (size_t) k;
        return 0;
}

/* ---- VMX ---- */

static char *vmx_unquote(char *v) {
        while (isspace((unsigned char) *v)) v++;
        size_t n = strlen(v);
        while (n && isspace((unsigned char) v[n - 1])) v[--n] = 0;
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
                v[n - 1] = 0;
                v++;
        }
        return v;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* "ethernetN.present" keys by N. */
static int cmp_eth(const void *a, const void *b) {
        unsigned long x = strtoul(*(char *const *) a + 8, NULL, 10), y = strtoul(*(char *const *) b + 8, NULL, 10);
        return x < y ? -1 : x > y;
}

static const char *kvs(json_t *kv, const char *k) {
        return json_string_value(json_object_get(kv, k));
}

static int read_vmx(ImportSource *s, const char *text, OpError *err) {
        _cleanup_json_ json_t *kv = json_object();
        _cleanup_free_ char *copy = xstrdup(text);
        char *save = NULL;
        for (char *line = strtok_r(copy, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
                char *eq = strchr(line, '=');
                if (!eq || line[0] == '#')
                        continue;
                *eq = 0;
                char *k = vmx_unquote(line), *v = vmx_unquote(eq + 1);
                for (char *p = k; *p; p++) *p = (char) tolower((unsigned char) *p);
                json_object_set_new(kv, k, json_string(v));
        }
        const char *dn = kvs(kv, "displayname"), *nc = kvs(kv, "numvcpus"), *ms = kvs(kv, "memsize");
        snprintf(s->name, sizeof s->name, "%s", dn ? dn : "");
        uint64_t v;
        if (nc && (!to_u64(nc, &v) || v < 1 || v > 4096))
                return bad(err, s, "its numvcpus is not a number from 1 to 4096");
        s->cpus = nc ? (unsigned) v : 1;
        if (ms && (!to_u64(ms, &v) || v < 4))
                return bad(err, s, "its memsize is not a number of MiB");
        s->memory_mib = ms ? v : 512;
        /* Disks: DEV.fileName of a present, non-CD device, in key order. */
        const char *key;
        json_t *val;
        char *keys[64], *eth[64];
        size_t nk = 0, ne = 0;
        json_object_foreach(kv, key, val) {
                const char *dot = strrchr(key, '.');
                if (dot && streq(dot, ".filename") && has_suffix(json_string_value(val), ".vmdk") && nk < 64 &&
                    (strncmp(key, "scsi", 4) == 0 || strncmp(key, "ide", 3) == 0 || strncmp(key, "sata", 4) == 0 ||
                     strncmp(key, "nvme", 4) == 0))
                        keys[nk++] = (char *) key;
                if (strncmp(key, "ethernet", 8) == 0 && dot && streq(dot, ".present") && strcasecmp(json_string_value(val), "true") == 0 &&
                    ne < 64)
                        eth[ne++] = (char *) key;
        }
        /* Cards in the order of their numbers (ethernet0, ethernet1, ...
         * ethernet10), which "networks" given as a list follows. */
        qsort(eth, ne, sizeof eth[0], cmp_eth);
        for (size_t i = 0; i < ne; i++) {
                const char *dot = strrchr(eth[i], '.');
                _cleanup_free_ char *nk2 = xasprintf("%.*s.networkname", (int) (dot - eth[i]), eth[i]);
                _cleanup_free_ char *mk = xasprintf("%.*s.address", (int) (dot - eth[i]), eth[i]);
                s->n_nics++;
                json_array_append_new(s->nics, json_pack("{s:s?, s:s?}", "network", kvs(kv, nk2), "mac", kvs(kv, mk)));
        }
        qsort(keys, nk, sizeof keys[0], cmp_str);
        for (size_t i = 0; i < nk; i++) {
                const char *dot = strrchr(keys[i], '.');
                _cleanup_free_ char *pk = xasprintf("%.*s.present", (int) (dot - keys[i]), keys[i]);
                _cleanup_free_ char *tk = xasprintf("%.*s.devicetype", (int) (dot - keys[i]), keys[i]);
                const char *present = kvs(kv, pk), *dtype = kvs(kv, tk);
                if ((present && strcasecmp(present, "false") == 0) || (dtype && strstr(dtype, "cdrom")))
                        continue;
                int r = add_disk_beside(s, kvs(kv, keys[i]), 0, 0, err);
                if (r < 0)
                        return r;
        }
        if (s->n_disks == 0)
                return bad(err, s, "its VMX names no VMDK disk");
        return 0;
}

/* ---- a directory exported as qcow2: NAME.xml and TARGET.qcow2 ---- */

static int read_libvirt_dir(ImportSource *s, const char *xml_name, OpError *err) {
        _cleanup_free_ char *xp = xasprintf("%s/%s", s->dir, xml_name);
        _cleanup_free_ char *xml = NULL;
        size_t len;
        int r = read_file_text(s, xp, &xml, &len, err);
        if (r < 0)
                return r;
        HvDomainInfo info;
        if (hv_domain_xml_parse(xml, &info) < 0)
                return bad(err, s, "its domain XML '%s' does not parse", xml_name);
        snprintf(s->name, sizeof s->name, "%.63s", info.name);
        s->cpus = info.vcpus;
        s->memory_mib = info.memory_mib;
        for (size_t i = 0; i < info.n_disks; i++) {
                if (info.disks[i].cdrom)
                        continue;
                _cleanup_free_ char *f = xasprintf("%s.qcow2", info.disks[i].target);
                if ((r = add_disk_beside(s, f, 0, 0, err)) < 0)
                        return r;
        }
        if (s->n_disks == 0)
                return bad(err, s, "its domain XML names no disk");
        return 0;
}

/* What path is, and everything it names. */
static int import_read(Store *st, const char *path, ImportSource *s, OpError *err) {
        int r = import_allowed_path(st, "path", path, s->path, err);
        if (r < 0)
                return r;
        s->nics = json_array();
        struct stat sb;
        if (stat(s->path, &sb) < 0)
                return bad(err, s, "it cannot be read");
        const char *base = strrchr(s->path, '/') + 1;
        if (S_ISDIR(sb.st_mode)) {
                snprintf(s->dir, sizeof s->dir, "%s", s->path);
                _cleanup_free_ char *xml = xasprintf("%s.xml", base);
                struct stat xs;
                int fd = open_beside(s, xml, &xs);
                if (fd < 0)
                        return bad(err, s, "the directory holds no '%s' (the domain XML of an export in qcow2 format)", xml);
                close(fd);
                snprintf(s->kind, sizeof s->kind, "libvirt");
                return read_libvirt_dir(s, xml, err);
        }
        if (!S_ISREG(sb.st_mode))
                return bad(err, s, "it is neither a regular file nor a directory");
        snprintf(s->dir, sizeof s->dir, "%.*s", (int) (base - 1 - s->path), s->path);
        if (!s->dir[0])
                snprintf(s->dir, sizeof s->dir, "/");
        /* The name of the file without its extension, for images. */
        snprintf(s->name, sizeof s->name, "%.*s", (int) strcspn(base, "."), base);
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (has_suffix(base, ".ova")) {
                snprintf(s->kind, sizeof s->kind, "ova");
                return read_ova(s, err);
        }
        if (has_suffix(base, ".ovf") || has_suffix(base, ".vmx")) {
                snprintf(s->kind, sizeof s->kind, has_suffix(base, ".ovf") ? "ovf" : "vmx");
                if ((r = read_file_text(s, s->path, &text, &len, err)) < 0)
                        return r;
                return has_suffix(base, ".ovf") ? read_ovf(s, text, len, NULL, 0, -1, err) : read_vmx(s, text, err);
        }
        snprintf(s->kind, sizeof s->kind, "image");
        s->cpus = 1;
        s->memory_mib = 1024;
        return add_disk_beside(s, base, 0, 0, err);
}

/* ------------------------------------------------------------------ */
/* the operation */

static json_t *source_json(const ImportSource *s) {
        json_t *disks = json_array();
        for (size_t i = 0; i < s->n_disks; i++) {
                const ImportDisk *d = &s->disks[i];
                json_array_append_new(disks, json_pack("{s:s, s:s, s:I, s:I, s:I, s:s}", "file", d->file, "member", d->member, "offset",
                                                       (json_int_t) d->offset, "size", (json_int_t) d->size, "capacity",
                                                       (json_int_t) d->capacity, "format", d->format));
        }
        return json_pack("{s:s, s:s, s:I, s:I, s:o, s:O, s:O*}", "kind", s->kind, "path", s->path, "cpus", (json_int_t) s->cpus,
                         "memory_mib", (json_int_t) s->memory_mib, "disks", disks, "nics", s->nics, "manifest", s->manifest);
}

#define IMPORT_MAX_NICS (HV_SPEC_MORE_NICS + 1)

/* The descriptor network name of card i ("" when it names none). */
static const char *card_network(const ImportSource *s, size_t i) {
        const char *n = json_string_value(json_object_get(json_array_get(s->nics, i), "network"));
        return n ? n : "";
}

/* The networks of the imported VM's cards, in order, from spec's network
 * and networks (library.h) and the descriptor's cards: 0 and *ret_n names
 * in ret (borrowed from spec), or 400/422 naming the field. */
static int import_networks(const LibraryImportSpec *spec, const ImportSource *s, const char *ret[IMPORT_MAX_NICS], size_t *ret_n,
                           OpError *err) {
        const json_t *m = spec->networks;
        size_t n_cards = json_array_size(s->nics), n = 0;
        const char *base = strrchr(s->path, '/') + 1;
        if (!m) {
                if (!spec->network)
                        n_cards = 0;
                else if (n_cards == 0)
                        n_cards = 1;
                if (n_cards > IMPORT_MAX_NICS)
                        return op_fail(err, 422, "invalid_argument", "network", "'%.300s' has %zu network cards; Armada imports at"
                                       " most %d.", base, n_cards, IMPORT_MAX_NICS);
                for (; n < n_cards; n++)
                        ret[n] = spec->network;
                *ret_n = n;
                return 0;
        }
        if (json_is_array(m)) {
                if (spec->network)
                        return op_fail(err, 400, "invalid_argument", "networks", "Give 'network' or a list in 'networks', not both.");
                size_t k = json_array_size(m);
                if (k == 0 || k > IMPORT_MAX_NICS || (n_cards > 0 && k != n_cards))
                        return op_fail(err, 422, "invalid_argument", "networks", "'%.300s' has %zu network cards; 'networks' names %zu"
                                       " (one per card, at most %d).", base, n_cards, k, IMPORT_MAX_NICS);
                for (; n < k; n++) {
                        const char *v = json_string_value(json_array_get(m, n));
                        if (!v || !name_is_valid(v))
                                return op_fail(err, 400, "invalid_argument", "networks", "Item %zu of 'networks' is not a valid network"
                                               " name.", n + 1);
                        ret[n] = v;
                }
                *ret_n = n;
                return 0;
        }
        if (!json_is_object(m))
                return op_fail(err, 400, "invalid_argument", "networks", "Field 'networks' must be a list of networks or an object"
                               " mapping the descriptor's networks to networks.");
        const char *key;
        json_t *v;
        json_object_foreach((json_t *) m, key, v) {
                if (!json_is_string(v) || !name_is_valid(json_string_value(v)))
                        return op_fail(err, 400, "invalid_argument", "networks", "'networks' maps '%.64s' to something that is not a"
                                       " valid network name.", key);
                bool used = false;
                for (size_t i = 0; i < n_cards && !used; i++)
                        used = streq(card_network(s, i), key);
                if (!used)
                        return op_fail(err, 422, "invalid_argument", "networks", "'%.300s' has no network card on network '%.64s'.",
                                       base, key);
        }
        if (n_cards > IMPORT_MAX_NICS)
                return op_fail(err, 422, "invalid_argument", "networks", "'%.300s' has %zu network cards; Armada imports at most %d.",
                               base, n_cards, IMPORT_MAX_NICS);
        if (n_cards == 0 && spec->network)
                ret[n++] = spec->network;       /* as without a mapping: one card */
        for (; n < n_cards; n++) {
                const char *to = json_string_value(json_object_get(m, card_network(s, n)));
                if (!to && !spec->network)
                        return op_fail(err, 422, "invalid_argument", "networks", "Network card %zu of '%.300s' is on network '%.64s',"
                                       " which 'networks' does not map (or give 'network' for the rest).", n + 1, base,
                                       card_network(s, n));
                ret[n] = to ? to : spec->network;
        }
        *ret_n = n;
        return 0;
}

static int import_run(Store *st, Jobs *jobs, const OpCaller *c, const LibraryImportSpec *spec, ImportSource *s, json_t **ret,
                      OpError *err) {
        if (!op_allowed(st, c, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "import VMs from files into", "system", 0, NULL);
        int e = import_read(st, spec->path, s, err);
        if (e < 0)
                return e;
        if (spec->cpus)
                s->cpus = (unsigned) spec->cpus;
        if (spec->memory_mib)
                s->memory_mib = (uint64_t) spec->memory_mib;
        if (!s->cpus)
                s->cpus = 1;
        if (s->memory_mib < 16)
                return bad(err, s, "its descriptor gives no memory size (or less than 16 MiB); give 'memory_mib'");
        const char *name = spec->name ? spec->name : s->name;
        if (!spec->name && name_invalid_reason(name))
                return op_fail(err, 400, "invalid_argument", "name", "The name '%.64s' that '%.300s' gives is not a valid VM name;"
                               " give one in 'name'.", name, s->path);
        int64_t group_id = STORE_ROOT_GROUP_ID;
        if (spec->group && (e = library_group_of(st, c, "group", spec->group, &group_id, err)) < 0)
                return e;
        const char *nets[IMPORT_MAX_NICS];
        size_t n_nets = 0;
        if ((e = import_networks(spec, s, nets, &n_nets, err)) < 0)
                return e;
        const char *v2v;
        if ((e = library_v2v_mode_of(spec->v2v, &v2v, err)) < 0)
                return e;
        uint64_t bytes = 0;
        for (size_t i = 0; i < s->n_disks; i++) bytes += s->disks[i].capacity;
        _cleanup_free_ char *descr = xasprintf("imported from %.200s", strrchr(s->path, '/') + 1);
        LibraryNewVm n = { .name = name, .cpus = s->cpus, .memory_mib = s->memory_mib, .disk_bytes = bytes, .host = spec->host,
                           .group_id = group_id, .origin = "created", .description = descr, .networks = nets,
                           .n_networks = n_nets };
        int64_t vm_id;
        StoreHost h;
        if ((e = library_new_vm_record(st, c, &n, &vm_id, &h, err)) < 0)
                return e;
        json_t *src = source_json(s);
        json_t *jnets = json_array();
        for (size_t i = 0; i < n_nets; i++)
                json_array_append_new(jnets, json_string(nets[i]));
        json_t *p = json_pack("{s:O, s:o, s:b, s:s}", "source", src, "networks", jnets, "start", spec->start, "v2v", v2v);
        int64_t job;
        json_t *vm;
        e = library_queue_new_vm(st, jobs, c, "vm.import", vm_id, name, p, &vm, &job, err);
        json_decref(p);
        if (e < 0) {
                json_decref(src);
                return e;
        }
        _cleanup_free_ char *detail = xasprintf("%s %s", s->kind, s->path);
        op_audit(st, c, "vm.import", "vm", vm_id, name, detail, "accepted");
        json_object_del(src, "manifest");
        *ret = json_pack("{s:o, s:o, s:o}", "vm", vm, "job", library_job_json(st, job), "source", src);
        return 0;
}

int library_vm_import(Store *st, Jobs *jobs, const OpCaller *c, const LibraryImportSpec *spec, json_t **ret, OpError *err) {
        ImportSource s = { 0 };
        if (!spec->path)
                return op_fail(err, 400, "invalid_argument", "path", "Field 'path' is required.");
        snprintf(s.path, sizeof s.path, "%.1000s", spec->path);
        int e = import_run(st, jobs, c, spec, &s, ret, err);
        source_done(&s);
        return e;
}

/* ------------------------------------------------------------------ */
/* the job */

/* qemu-img's source for a disk: the format driver over the byte range of
 * the file (an OVA member), the file given as an inherited descriptor, and
 * no backing file ever opened. */
static char *qemu_source(const char *format, const char *file, uint64_t offset, uint64_t size, bool whole) {
        json_t *f = json_pack("{s:s, s:s}", "driver", "file", "filename", file);
        if (!whole)
                f = json_pack("{s:s, s:I, s:I, s:o}", "driver", "raw", "offset", (json_int_t) offset, "size", (json_int_t) size, "file", f);
        json_t *o = json_pack("{s:s, s:o}", "driver", format, "file", f);
        if (streq(format, "qcow2") || streq(format, "vmdk"))
                json_object_set_new(o, "backing", json_null());
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        char *out = xasprintf("json:%s", s);
        free(s);
        return out;
}

/* SHA-256 of [offset, offset+size) of fd as hex. */
static int sha256_range(int fd, uint64_t offset, uint64_t size, char hex[65]) {
        crypto_hash_sha256_state h;
        crypto_hash_sha256_init(&h);
        _cleanup_free_ unsigned char *buf = xmalloc(1 << 20);
        while (size > 0) {
                size_t want = size > (1 << 20) ? (1 << 20) : (size_t) size;
                ssize_t k = pread(fd, buf, want, (off_t) offset);
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
                crypto_hash_sha256_update(&h, buf, (unsigned long long) k);
                offset += (uint64_t) k;
                size -= (uint64_t) k;
        }
        unsigned char dg[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_final(&h, dg);
        hex_encode(dg, sizeof dg, hex);
        return 0;
}

static int convert_to_qcow2(JobCtx *ctx, const char *src, const char *dst, const char *log, const char *what) {
        char *argv[] = { "qemu-img", "convert", "-q", "-W", "-m", "4", "-O", "qcow2", (char *) src, (char *) dst, NULL };
        int st = library_spawn_wait(argv, log);
        if (st != 0) {
                _cleanup_free_ char *text = NULL;
                if (file_read_all(log, &text, NULL) == 0)
                        log_warn("qemu-img convert of %s failed: %s", what, text);   /* the log only: it may quote the file */
        }
        unlink(log);
        if (st == -ENOENT)
                return job_fail(ctx, -ENOENT, "Cannot convert %s: qemu-img is not installed.", what);
        if (st != 0) {
                unlink(dst);
                return job_fail(ctx, -EIO, "Cannot convert %s: qemu-img exited with status %d (the disk image is damaged or of"
                                " another format than it claims).", what, st);
        }
        return 0;
}

static int import_disk_made(LibraryBuild *b, const char *target, const char *path, uint64_t capacity, HvDomainSpec *spec) {
        library_build_made(b, target, path, capacity);
        HvDisk *hd = &spec->disks[spec->n_disks++];
        *hd = (HvDisk) { .format = "qcow2", .capacity_bytes = capacity };
        snprintf(hd->target, sizeof hd->target, "%s", target);
        snprintf(hd->path, sizeof hd->path, "%s", path);
        return 0;
}

/* The fast way, when the host sees the very file (a library share or export
 * root on storage the hosts share): libvirt converts it on the host, one
 * pass and nothing streamed. Only whole files of a format libvirt's own
 * probe agrees on (qcow2, vmdk, vpc: never raw, whose content could make a
 * probe see another format); anything else, or any failure, takes the way
 * through this machine. 0 with *ret_path, or negative (then nothing was
 * made). */
static int import_on_host(LibraryBuild *b, const char *file, uint64_t offset, const char *format, bool descriptor,
                          const char *vol, char **ret_path) {
        struct stat sb;
        bool visible = false;
        if (offset != 0 || descriptor || streq(b->host.domain_type, "test") ||
            (!streq(format, "qcow2") && !streq(format, "vmdk") && !streq(format, "vpc")) || stat(file, &sb) < 0)
                return -ENOTSUP;
        HvConn *c = inventory_link_conn(b->link);
        if (hv_volume_visible(c, file, (uint64_t) sb.st_size, &visible) < 0 || !visible)
                return -ENOENT;
        int r = inventory_slot_take(b->inv, &b->host, INVENTORY_SLOT_DISK, NULL, false, b->ctx);
        if (r < 0)
                return r;
        job_progress(b->ctx, 30, "converting '%s' on host '%s' (it sees the file)", file, b->host.name);
        r = hv_volume_convert_from(c, b->host.pool, vol, file, format, ret_path);
        inventory_slot_give(b->inv, b->host.id, INVENTORY_SLOT_DISK);
        if (r < 0)
                log_info("VM '%s': host '%s' could not convert '%s' itself (%s); converting here instead", b->vm.name, b->host.name,
                         file, hv_last_error());
        return r;
}

/* A disk waiting for virt-v2v: converted on this machine (then uploaded
 * after it), or already in its volume (written directly, converted there). */
typedef struct {
        char *dst;                 /* the local qcow2, or the volume's file */
        bool in_volume;            /* dst is the volume's file: keep it, nothing to upload */
        char *vol;                 /* the volume it becomes */
        char *what;
        char target[8];
        uint64_t capacity;
} ImportLocal;

static void import_local_done(ImportLocal *l) {
        if (l->dst && !l->in_volume)
                unlink(l->dst);
        free(l->dst);
        free(l->vol);
        free(l->what);
        *l = (ImportLocal) { 0 };
}

/* The local qcow2 dst uploaded into the volume vol on the host (dst goes). */
static int import_upload(LibraryBuild *b, const char *dst, const char *vol, const char *what, const char *target, uint64_t capacity,
                         size_t i, HvDomainSpec *spec, json_t *written) {
        JobCtx *ctx = b->ctx;
        _cleanup_free_ char *path = NULL;
        HvConn *sc = library_build_stream_conn(b);
        bool content = !streq(b->host.domain_type, "test");
        job_progress(ctx, 20 + (int) (60 * i / HV_MAX_DISKS), "uploading %s to host '%s'", what, b->host.name);
        /* One stream, or ranges over several when armadad's --upload-streams
         * asks (two were slower here for a dense image: bench/results/convert.md). */
        int r = sc ? hv_volume_upload_file(sc, b->host.pool, vol, dst, content, &path, NULL) : -EHOSTUNREACH;
        unlink(dst);
        if (r < 0)
                return job_fail(ctx, r, "Cannot upload %s to host '%s': %s", what, b->host.name, hv_last_error());
        json_array_append_new(written, json_string("stream"));
        return import_disk_made(b, target, path, capacity, spec);
}

/* The fast way when armadad reaches the host's pool at the volume's path
 * (the host is this machine, or the pool is on storage mounted at the same
 * path): the volume is created through libvirt and proven to be the file
 * armadad sees (hv_volume_create_direct), then qemu-img converts the disk
 * straight into it: one pass, as fast as a local conversion, nothing copied
 * afterwards. -EXDEV when armadad does not reach it or may not write it
 * (nothing made: convert here and upload), 0 with *ret_path, or the job's
 * failure (no volume left). */
static int import_direct(LibraryBuild *b, const char *src, const char *vol, const char *what, char **ret_path) {
        JobCtx *ctx = b->ctx;
        HvConn *sc = streq(b->host.domain_type, "test") ? NULL : library_build_stream_conn(b);
        _cleanup_free_ char *path = NULL;
        int fd = -1;
        /* Any failure to create or reach it: the upload makes its own
         * attempt and reports its own error. */
        if (!sc || hv_volume_create_direct(sc, b->host.pool, vol, 1 << 20, &path, &fd) < 0)
                return -EXDEV;
        job_progress(ctx, 20, "converting %s straight into volume '%s' on host '%s'", what, vol, b->host.name);
        _cleanup_free_ char *out = xasprintf("/proc/self/fd/%d", fd);
        _cleanup_free_ char *log = xasprintf("%s/armada-import-%.8s-%s.log", library_tmp_dir(), b->vm.uuid, vol);
        int r = convert_to_qcow2(ctx, src, out, log, what);
        if (r < 0)
                close(fd);
        else if ((r = hv_volume_direct_done(sc, path, fd)) > 0) {
                log_info("VM '%s': %s", b->vm.name, hv_last_error());
                r = 0;
        } else if (r < 0)
                r = job_fail(ctx, r, "Cannot write %s into its volume on host '%s': %s", what, b->host.name, hv_last_error());
        if (r < 0) {
                (void) hv_volume_delete(inventory_link_conn(b->link), path);
                return r;
        }
        *ret_path = steal_ptr(path);
        return 0;
}

/* One disk: checked against the manifest, converted (straight into its
 * volume, on the host, or here and uploaded: which one appended to
 * written). With local (virt-v2v runs before the uploads), a disk that is
 * not written directly is converted here and left in *local for
 * import_upload; one written directly is named in *local too, for
 * virt-v2v to convert in its volume. */
static int import_disk(LibraryBuild *b, json_t *d, json_t *manifest, size_t i, HvDomainSpec *spec, ImportLocal *local,
                       json_t *written) {
        JobCtx *ctx = b->ctx;
        const char *file = jget_str(d, "file"), *member = jget_str(d, "member"), *format = jget_str(d, "format");
        uint64_t offset = (uint64_t) jget_int(d, "offset"), size = (uint64_t) jget_int(d, "size");
        uint64_t capacity = (uint64_t) jget_int(d, "capacity");
        char target[8];
        snprintf(target, sizeof target, "vd%c", (char) ('a' + i));
        _cleanup_free_ char *what = xasprintf("disk '%s'", member);
        /* Pinned: qemu-img reads the very file checked (no CLOEXEC, so the
         * child inherits it), except a VMDK descriptor whose checked
         * extents are found beside it by name. */
        int fd = open(file, O_RDONLY | O_NOFOLLOW);
        if (fd < 0)
                return job_fail(ctx, -errno, "Cannot open %s of the import: %s.", what, strerror(errno));
        char fmt[8], why[400];
        uint64_t vsize;
        bool descriptor = image_probe(fd, offset, size, member, fmt, &vsize, why, sizeof why) < 0;
        if (descriptor && !streq(format, "vmdk")) {
                close(fd);
                return job_fail(ctx, -EMEDIUMTYPE, "The import's %s changed since it was checked: %s.", what, why);
        }
        if (!descriptor && !streq(fmt, format)) {
                close(fd);
                return job_fail(ctx, -EMEDIUMTYPE, "The import's %s changed since it was checked.", what);
        }
        const char *want = manifest ? jget_str(manifest, member) : NULL;
        if (want) {
                job_progress(ctx, 10 + (int) (60 * i / HV_MAX_DISKS), "checking the SHA-256 of %s", what);
                char hex[65];
                int r = sha256_range(fd, offset, size, hex);
                if (r < 0 || !streq(hex, want)) {
                        close(fd);
                        return job_fail(ctx, -EBADMSG, "The SHA-256 of %s does not match the OVA's manifest.", what);
                }
        }
        _cleanup_free_ char *vol = xasprintf("%s-%.8s-%s.qcow2", b->vm.name, b->vm.uuid, target);
        _cleanup_free_ char *path = NULL;
        _cleanup_free_ char *pinned = xasprintf("/proc/self/fd/%d", fd);
        _cleanup_free_ char *src = qemu_source(format, descriptor ? file : pinned, offset, size, offset == 0 && !manifest);
        int r = import_direct(b, src, vol, what, &path);
        if (r != -EXDEV) {
                close(fd);
                if (r < 0)
                        return r;
                json_array_append_new(written, json_string("direct"));
                if (local) {
                        *local = (ImportLocal) { .dst = xstrdup(path), .in_volume = true };
                        snprintf(local->target, sizeof local->target, "%s", target);
                }
                return import_disk_made(b, target, path, capacity, spec);
        }
        /* Not on the host when virt-v2v is to run: it needs the bytes here. */
        if (!local && import_on_host(b, file, offset, format, descriptor, vol, &path) == 0) {
                close(fd);
                json_array_append_new(written, json_string("host"));
                return import_disk_made(b, target, path, capacity, spec);
        }
        _cleanup_free_ char *dst = xasprintf("%s/armada-import-%.8s-%s.qcow2", library_tmp_dir(), b->vm.uuid, target);
        job_progress(ctx, 15 + (int) (60 * i / HV_MAX_DISKS), "converting %s (%s) to qcow2", what, format);
        _cleanup_free_ char *log = xasprintf("%s.log", dst);
        r = convert_to_qcow2(ctx, src, dst, log, what);
        close(fd);
        if (r < 0)
                return r;
        struct stat sb;
        if (stat(dst, &sb) < 0) {
                unlink(dst);
                return job_fail(ctx, -EIO, "The conversion of %s left no file.", what);
        }
        if (local) {
                *local = (ImportLocal) { .dst = steal_ptr(dst), .vol = steal_ptr(vol), .what = steal_ptr(what), .capacity = capacity };
                snprintf(local->target, sizeof local->target, "%s", target);
                return 0;
        }
        return import_upload(b, dst, vol, what, target, capacity, i, spec, written);
}

/* The VM's network cards into spec: the job's networks (a job queued
 * before there were several: its one network), each with a fresh MAC
 * recorded for the VM (the inventory lists them, placement follows their
 * networks). 0 or the job's failure. */
static int import_nics(LibraryBuild *b, HvDomainSpec *spec, char macs[IMPORT_MAX_NICS][18]) {
        JobCtx *ctx = b->ctx;
        json_t *nets = json_object_get(ctx->params, "networks");
        const char *one = json_string_value(json_object_get(ctx->params, "network"));
        size_t n = json_is_array(nets) ? json_array_size(nets) : one ? 1 : 0;
        for (size_t i = 0; i < n && i < IMPORT_MAX_NICS; i++) {
                const char *net = json_is_array(nets) ? json_string_value(json_array_get(nets, i)) : one;
                int r = -EEXIST;
                for (int tries = 0; r == -EEXIST && tries < 16; tries++) {
                        hv_mac_random(macs[i]);
                        r = store_vm_nic_insert(ctx->st, b->vm.id, macs[i], net, "virtio");
                }
                if (r < 0)
                        return job_fail(ctx, r, "Cannot record network card %zu of VM '%s'.", i + 1, b->vm.name);
                if (i == 0) {
                        spec->network = net;
                        spec->network_mac = macs[i];
                } else {
                        spec->more_networks[spec->n_more_nics] = net;
                        spec->more_macs[spec->n_more_nics++] = macs[i];
                }
        }
        return 0;
}

static bool import_cancelled(LibraryBuild *b) {
        if (!job_cancel_requested(b->ctx))
                return false;
        snprintf(b->ctx->error, sizeof b->ctx->error, "Cancelled; nothing of VM '%s' was left behind.", b->vm.name);
        return true;
}

/* Every disk into the host, through virt-v2v when the job asks for it:
 * then all are converted here first, virt-v2v runs on the local qcow2s
 * (the guest's disks together: its root, /boot and /usr may be on
 * different ones) and they are uploaded after. The disks stay on the vdX
 * (virtio) targets import has always given them; virt-v2v is what makes a
 * guest without virtio drivers boot there. 0 with *ret_v2v (the result's
 * "v2v"), or the job's failure (the local files gone). */
static int import_disks(LibraryBuild *b, json_t *disks, json_t *manifest, HvDomainSpec *spec, json_t **ret_v2v,
                        json_t *written) {
        const char *mode = jget_str(b->ctx->params, "v2v");
        /* What auto's rule looks at: the source's kind and its disks' formats as read. */
        LibraryV2vSource src = { .kind = jget_str(json_object_get(b->ctx->params, "source"), "kind") };
        size_t fi;
        json_t *fd;
        json_array_foreach(disks, fi, fd)
                if (src.n_formats < HV_MAX_DISKS)
                        src.formats[src.n_formats++] = jget_str(fd, "format");
        bool run = library_v2v_wanted(mode, &src) && (library_v2v_installed() || (mode && streq(mode, "always")));
        ImportLocal local[HV_MAX_DISKS] = { 0 };
        size_t i, n = 0;
        json_t *d;
        int r = 0;
        json_array_foreach(disks, i, d) {
                if (i >= HV_MAX_DISKS || (r = import_disk(b, d, manifest, i, spec, run ? &local[n] : NULL, written)) < 0)
                        break;
                n += run;
                if (import_cancelled(b)) {
                        r = -ECANCELED;
                        break;
                }
        }
        json_t *v2v = NULL;
        bool converted = false;
        if (r == 0) {
                char *paths[HV_MAX_DISKS];
                for (size_t k = 0; k < n; k++) paths[k] = local[k].dst;
                r = run ? library_v2v_convert(b->ctx, mode, &src, paths, n, "qcow2", 75, &v2v, &converted)
                        : library_v2v_convert(b->ctx, mode ? mode : "auto", &src, NULL, 0, "qcow2", 75, &v2v, &converted);
        }
        for (size_t k = 0; k < n && r == 0; k++)
                if (!local[k].in_volume)
                        r = import_upload(b, local[k].dst, local[k].vol, local[k].what, local[k].target, local[k].capacity, k, spec,
                                          written);
        for (size_t k = 0; k < n; k++) import_local_done(&local[k]);
        if (r < 0) {
                json_decref(v2v);
                return r;
        }
        *ret_v2v = v2v;
        return 0;
}

static int job_vm_import(JobCtx *ctx, void *userdata) {
        LibraryBuild b = { 0 };
        int r = library_build_begin(&b, userdata, ctx);
        if (r < 0)
                return library_build_undo(&b, "vm.import", r);
        json_t *src = json_object_get(ctx->params, "source");
        json_t *disks = json_object_get(src, "disks"), *manifest = json_object_get(src, "manifest");
        char vnc_listen[16], vnc_password[9];
        inventory_vnc_for_host(&b.host, vnc_listen, vnc_password);
        HvDomainSpec spec = { .name = b.vm.name, .uuid = b.vm.uuid, .domain_type = inventory_domain_type(&b.host, "auto"),
                              .vcpus = b.vm.cpus, .memory_mib = b.vm.memory_mib, .description = b.vm.description,
                              .vnc = true, .vnc_listen = vnc_listen,
                              .vnc_password = vnc_password[0] ? vnc_password : NULL,
                              .installation_id = inventory_installation_id(b.inv), .vm_id = b.vm.id };
        char macs[IMPORT_MAX_NICS][18];
        if ((r = import_nics(&b, &spec, macs)) < 0)
                return library_build_undo(&b, "vm.import", r);
        json_t *v2v = NULL;
        _cleanup_json_ json_t *written = json_array();
        if ((r = import_disks(&b, disks, json_is_object(manifest) ? manifest : NULL, &spec, &v2v, written)) < 0)
                return library_build_undo(&b, "vm.import", r);
        if ((r = library_build_define(&b, &spec, json_is_true(json_object_get(ctx->params, "start")))) < 0) {
                json_decref(v2v);
                return library_build_undo(&b, "vm.import", r);
        }
        _cleanup_free_ char *msg = xasprintf("VM '%s' was imported from '%s' onto host '%s'.", b.vm.name, jget_str(src, "path"),
                                             b.host.name);
        (void) store_event_add(ctx->st, "info", "vm.imported", "vm", b.vm.id, b.vm.name, b.vm.owner_id, msg);
        ctx->result = json_pack("{s:I, s:s, s:s, s:I, s:o, s:O}", "vm_id", (json_int_t) b.vm.id, "host", b.host.name, "kind",
                                jget_str(src, "kind"), "disks", (json_int_t) spec.n_disks, "v2v", v2v, "written", written);
        library_build_end(&b);
        return 0;
}

void library_register_import_jobs(Jobs *jobs, Inventory *inv) {
        jobs_register(jobs, "vm.import", job_vm_import, library_build_abandon, inv, false);
}
