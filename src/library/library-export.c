/* library_vm_export() and the vm.export job: a stopped VM written under the
 * export root, as named phases:
 *
 *   check     the caller (administrators: it writes on armadad's machine),
 *             the format, the target directory (under --export-root,
 *             realpath'd), the VM stopped, nothing in the way
 *   disks     each disk read where armadad sees the host's file, else
 *             downloaded from the host, and converted with qemu-img (its
 *             format given): streamOptimized VMDK for an OVA, qcow2 for a
 *             directory
 *   describe  the OVF 1.0 descriptor (CPUs, memory, disks on a SCSI
 *             controller, NICs: what VirtualBox, VMware and oVirt read) and
 *             the SHA-256 manifest; or the domain XML
 *   publish   the OVA's tar (descriptor first, then manifest and disks) or
 *             the directory, built in a hidden staging directory beside the
 *             target and renamed into place without replacing anything
 *
 * A failure removes the staging directory: nothing half-written is left.
 * One that armadad could not remove (killed mid-export) is removed when the
 * job is found abandoned at the next start, or by the next export into the
 * same directory (staging_sweep()): its name carries its job's id, so only
 * a staging directory whose job no longer runs goes, and only when the
 * directory is still under the export root once symbolic links are
 * followed; its files are removed relative to the directory's descriptor,
 * never through a link. */
#include "library-priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libxml/tree.h>

#include "hv/hv-backup.h"
#include "hv/hv-export.h"
#include "hv/hv-volume.h"

/* ------------------------------------------------------------------ */
/* the operation */

int library_vm_export(Store *st, Jobs *jobs, const OpCaller *c, const LibraryExportSpec *spec, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "export VMs to files on", "system", 0, NULL);
        StoreVm vm;
        int e = store_vm_get(st, spec->vm_id, &vm);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "VM %lld does not exist.", (long long) spec->vm_id);
        if (e < 0)
                return op_fail_store(err, e, "the VM");
        if (!spec->format || (!streq(spec->format, "ova") && !streq(spec->format, "qcow2")))
                return op_fail(err, 400, "invalid_argument", "format", "Field 'format' must be ova or qcow2.");
        char root[PATH_MAX], to[PATH_MAX];
        if (library_export_root(root) < 0)
                return op_fail(err, 400, "invalid_argument", "to", "armadad has no export root (--export-root DIR): exports are off.");
        if (!spec->to || spec->to[0] != '/')
                return op_fail(err, 400, "invalid_argument", "to", "Field 'to' must be an absolute directory under '%s'.", root);
        struct stat sb;
        size_t n = strlen(root);
        if (!realpath(spec->to, to) || stat(to, &sb) < 0 || !S_ISDIR(sb.st_mode))
                return op_fail(err, 400, "invalid_argument", "to", "Field 'to': '%.300s' is not an existing directory.", spec->to);
        if (strncmp(to, root, n) != 0 || (to[n] != '/' && to[n] != 0))
                return op_fail(err, 400, "invalid_argument", "to", "Field 'to': '%.300s' is not under the export root '%s' (symbolic"
                               " links are followed before this check).", spec->to, root);
        if (!streq(vm.state, "stopped"))
                return op_fail(err, 409, "conflict", "vm", "VM '%s' is %s; stop it before exporting it.", vm.name, vm.state);
        _cleanup_free_ char *target = xasprintf("%s/%s%s", to, vm.name, streq(spec->format, "ova") ? ".ova" : "");
        if (lstat(target, &sb) == 0)
                return op_fail(err, 409, "conflict", "to", "'%s' already exists; Armada does not replace it.", target);
        json_t *p = json_pack("{s:s, s:s, s:s}", "to", to, "format", spec->format, "target", target);
        int64_t job;
        e = jobs_submit(jobs, "vm.export", "vm", vm.id, vm.name, c->user_id, p, &job);
        json_decref(p);
        if (e < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        _cleanup_free_ char *detail = xasprintf("%s to %s", spec->format, target);
        op_audit(st, c, "vm.export", "vm", vm.id, vm.name, detail, "accepted");
        *ret = json_pack("{s:o, s:s}", "job", library_job_json(st, job), "path", target);
        return 0;
}

/* ------------------------------------------------------------------ */
/* the job */

typedef struct {
        JobCtx *ctx;
        Inventory *inv;
        StoreVm vm;
        StoreHost host;
        InventoryLink *link;
        const char *format, *target;
        char staging[PATH_MAX];
        char *xml;
        HvDomainInfo info;
        HvNic nics[HV_MAX_NICS];
        size_t n_nics;
        size_t n_out;
        char out[HV_MAX_DISKS][128];      /* the disk files written, in staging */
        uint64_t capacity[HV_MAX_DISKS];
} Export;

#define STAGING_PREFIX ".armada-export-"

/* Whether name is a staging directory's (".armada-export-<job>-XXXXXX"),
 * and its job's id. */
static bool staging_name(const char *name, int64_t *ret_job) {
        if (strncmp(name, STAGING_PREFIX, strlen(STAGING_PREFIX)) != 0)
                return false;
        const char *p = name + strlen(STAGING_PREFIX);
        char *end = NULL;
        errno = 0;
        long long id = strtoll(p, &end, 10);
        if (errno || end == p || id <= 0 || *end != '-' || strlen(end + 1) != 6)
                return false;
        *ret_job = id;
        return true;
}

/* Removes staging directory name of the directory open as dfd: the files
 * in it (a staging directory holds nothing else: anything that is not a
 * file or a link, and a directory that is not armadad's, stop it), then
 * itself. Nothing is followed: a link in its place, or in it, is not. */
static int staging_remove_at(int dfd, const char *name) {
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat sb;
        if (fstat(fd, &sb) < 0 || sb.st_uid != geteuid()) {
                close(fd);
                return -EPERM;
        }
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (fstatat(fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !(S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode)))
                        r = -ENOTEMPTY;
                else if (unlinkat(fd, de->d_name, 0) < 0)
                        r = -errno;
        }
        closedir(d);
        if (r == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0)
                r = -errno;
        return r;
}

/* Whether job id is queued or running. */
static bool job_alive(Store *st, int64_t id) {
        _cleanup_json_ json_t *j = NULL;
        if (store_job_get_json(st, id, &j) < 0)
                return false;
        const char *state = jget_str(j, "state");
        return streq(state, "queued") || streq(state, "running");
}

/* Removes the staging directories left in directory to: of job only_job
 * when it is > 0 (its abandon, at start), else of every job that no longer
 * runs (but except_job's). Only when to, its links followed, is still
 * under the export root; what fails to go is logged and left. */
static void staging_sweep(Store *st, const char *to, int64_t only_job, int64_t except_job) {
        char root[PATH_MAX], real[PATH_MAX];
        size_t n;
        if (!to || library_export_root(root) < 0 || !realpath(to, real) || strncmp(real, root, n = strlen(root)) != 0 ||
            (real[n] != '/' && real[n] != 0))
                return;
        int dfd = open(real, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
        if (!d) {
                if (dfd >= 0)
                        close(dfd);
                return;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                int64_t job;
                if (!staging_name(de->d_name, &job) || job == except_job || (only_job > 0 && job != only_job) ||
                    (only_job <= 0 && job_alive(st, job)))
                        continue;
                int r = staging_remove_at(dfd, de->d_name);
                if (r < 0)
                        log_warn("cannot remove the staging directory '%s/%s' of export job %lld: %s", real, de->d_name,
                                 (long long) job, strerror(-r));
                else
                        log_info("removed the staging directory '%s/%s' of export job %lld, which did not finish", real,
                                 de->d_name, (long long) job);
        }
        closedir(d);
}

static void staging_remove(Export *x) {
        if (!x->staging[0])
                return;
        char *slash = strrchr(x->staging, '/');
        *slash = 0;
        int dfd = open(x->staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        *slash = '/';
        if (dfd < 0 || staging_remove_at(dfd, slash + 1) < 0)
                log_warn("cannot remove the staging directory '%s'", x->staging);
        if (dfd >= 0)
                close(dfd);
        x->staging[0] = 0;
}

static int run_qemu_img(Export *x, char *const argv[], const char *what) {
        _cleanup_free_ char *log = xasprintf("%s/.log", x->staging);
        int st = library_spawn_wait(argv, log);
        _cleanup_free_ char *text = NULL;
        if (st != 0 && file_read_all(log, &text, NULL) == 0)
                log_warn("export of VM '%s': qemu-img failed on %s: %s", x->vm.name, what, text);
        unlink(log);
        if (st == -ENOENT)
                return job_fail(x->ctx, -ENOENT, "Cannot export VM '%s': qemu-img is not installed.", x->vm.name);
        if (st != 0)
                return job_fail(x->ctx, -EIO, "Cannot convert %s of VM '%s': qemu-img exited with status %d.", what, x->vm.name, st);
        return 0;
}

/* Phase check (again, in the job): the host reached, the domain shut off,
 * its XML, disks and NICs read, the staging directory made. */
static int export_prepare(Export *x) {
        JobCtx *ctx = x->ctx;
        char why[512];
        if (store_vm_get(ctx->st, ctx->job->target_id, &x->vm) < 0 || store_host_get(ctx->st, x->vm.host_id, &x->host) < 0)
                return job_fail(ctx, -ENOENT, "VM '%s' or its host no longer exists.", ctx->job->target_name);
        if (inventory_link_acquire(x->inv, &x->host, &x->link, why, sizeof why) < 0) {
                x->link = NULL;
                return job_fail(ctx, -EHOSTUNREACH, "Cannot reach host '%s' of VM '%s': %s", x->host.name, x->vm.name, why);
        }
        HvConn *c = inventory_link_conn(x->link);
        HvState state = HV_STATE_NOSTATE;
        if (hv_domain_state(c, x->vm.uuid, &state) < 0 || state != HV_STATE_SHUTOFF)
                return job_fail(ctx, -EBUSY, "VM '%s' must be shut off to be exported; it is %s.", x->vm.name, hv_state_name(state));
        if (hv_domain_xml_public(c, x->vm.uuid, &x->xml) < 0 || hv_domain_xml_parse(x->xml, &x->info) < 0 ||
            hv_domain_nics(x->xml, x->nics, &x->n_nics) < 0)
                return job_fail(ctx, -EIO, "Cannot read the definition of VM '%s': %s", x->vm.name, hv_last_error());
        /* what an earlier export killed midway left here goes first */
        staging_sweep(ctx->st, jget_str(ctx->params, "to"), 0, ctx->job->id);
        snprintf(x->staging, sizeof x->staging, "%s/" STAGING_PREFIX "%lld-XXXXXX", jget_str(ctx->params, "to"),
                 (long long) ctx->job->id);
        if (!mkdtemp(x->staging)) {
                int e = errno;
                x->staging[0] = 0;
                return job_fail(ctx, -e, "Cannot create a staging directory under '%s': %s.", jget_str(ctx->params, "to"), strerror(e));
        }
        return 0;
}

/* Phase disks: one disk, read where armadad sees it, else downloaded, then
 * converted into staging. */
static int export_disk(Export *x, const HvDisk *d) {
        HvConn *c = inventory_link_conn(x->link);
        struct stat sb;
        bool visible = false;
        if (stat(d->path, &sb) == 0 && S_ISREG(sb.st_mode))
                (void) hv_volume_visible(c, d->path, (uint64_t) sb.st_size, &visible);
        _cleanup_free_ char *fetched = NULL;
        const char *src = d->path;
        if (!visible) {
                fetched = xasprintf("%s/.src-%s", x->staging, d->target);
                job_progress(x->ctx, 10 + (int) (50 * x->n_out / HV_MAX_DISKS), "downloading disk %s from host '%s'", d->target,
                             x->host.name);
                int r = inventory_slot_take(x->inv, &x->host, INVENTORY_SLOT_DISK, NULL, false, x->ctx);
                if (r < 0)
                        return r;
                r = hv_volume_download(c, d->path, fetched);
                inventory_slot_give(x->inv, x->host.id, INVENTORY_SLOT_DISK);
                if (r < 0)
                        return job_fail(x->ctx, r, "Cannot download disk %s of VM '%s' from host '%s': %s", d->target, x->vm.name,
                                        x->host.name, hv_last_error());
                src = fetched;
        }
        bool ova = streq(x->format, "ova");
        char *name = x->out[x->n_out];
        if (ova)
                snprintf(name, 128, "%s-disk%zu.vmdk", x->vm.name, x->n_out + 1);
        else
                snprintf(name, 128, "%s.qcow2", d->target);
        _cleanup_free_ char *dst = xasprintf("%s/%s", x->staging, name);
        const char *fmt = d->format[0] ? d->format : "raw";
        char *vmdk[] = { "qemu-img", "convert", "-q", "-f", (char *) fmt, "-O", "vmdk", "-o", "subformat=streamOptimized",
                         (char *) src, dst, NULL };
        char *qcow[] = { "qemu-img", "convert", "-q", "-W", "-f", (char *) fmt, "-O", "qcow2", (char *) src, dst, NULL };
        job_progress(x->ctx, 15 + (int) (50 * x->n_out / HV_MAX_DISKS), "converting disk %s", d->target);
        _cleanup_free_ char *what = xasprintf("disk %s", d->target);
        int r = run_qemu_img(x, ova ? vmdk : qcow, what);
        if (fetched)
                unlink(fetched);
        if (r < 0)
                return r;
        int fd = open(dst, O_RDONLY | O_CLOEXEC);
        LibraryImageInfo info;
        if (fd < 0 || fstat(fd, &sb) < 0 || library_image_detect(fd, name, (uint64_t) sb.st_size, &info) < 0) {
                if (fd >= 0) close(fd);
                return job_fail(x->ctx, -EIO, "The converted disk %s of VM '%s' cannot be read back.", d->target, x->vm.name);
        }
        close(fd);
        x->capacity[x->n_out++] = info.virtual_size;
        return 0;
}

/* ---- describe ---- */

static xmlNode *text_child(xmlNode *parent, xmlNs *ns, const char *name, const char *text) {
        return xmlNewTextChild(parent, ns, BAD_CAST name, BAD_CAST text);
}

static xmlNode *prop(xmlNode *n, xmlNs *ns, const char *name, const char *value) {
        xmlNewNsProp(n, ns, BAD_CAST name, BAD_CAST value);
        return n;
}

/* A rasd Item: its fields in the schema's (alphabetical) order. */
static void rasd_item(xmlNode *hw, xmlNs *rasd, const char *const kv[][2], size_t n) {
        xmlNode *it = xmlNewChild(hw, NULL, BAD_CAST "Item", NULL);
        for (size_t i = 0; i < n; i++)
                text_child(it, rasd, kv[i][0], kv[i][1]);
}

static char *num(uint64_t v) {
        return xasprintf("%llu", (unsigned long long) v);
}

/* The OVF 1.0 descriptor of the VM and its disks (sizes of the files in
 * staging). malloc'd XML text. */
static char *ovf_build(Export *x) {
        xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
        xmlNode *env = xmlNewNode(NULL, BAD_CAST "Envelope");
        xmlDocSetRootElement(doc, env);
        xmlNs *def = xmlNewNs(env, BAD_CAST "http://schemas.dmtf.org/ovf/envelope/1", NULL);
        xmlSetNs(env, def);
        xmlNs *ovf = xmlNewNs(env, BAD_CAST "http://schemas.dmtf.org/ovf/envelope/1", BAD_CAST "ovf");
        xmlNs *rasd = xmlNewNs(env, BAD_CAST "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData",
                               BAD_CAST "rasd");
        xmlNs *vssd = xmlNewNs(env, BAD_CAST "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData",
                               BAD_CAST "vssd");
        xmlNewNs(env, BAD_CAST "http://www.w3.org/2001/XMLSchema-instance", BAD_CAST "xsi");
        prop(env, ovf, "version", "1.0");
        xmlNode *refs = xmlNewChild(env, def, BAD_CAST "References", NULL);
        xmlNode *ds = xmlNewChild(env, def, BAD_CAST "DiskSection", NULL);
        text_child(ds, def, "Info", "Virtual disk information");
        for (size_t i = 0; i < x->n_out; i++) {
                _cleanup_free_ char *path = xasprintf("%s/%s", x->staging, x->out[i]);
                struct stat sb;
                _cleanup_free_ char *fid = xasprintf("file%zu", i + 1), *did = xasprintf("vmdisk%zu", i + 1);
                _cleanup_free_ char *size = num(stat(path, &sb) == 0 ? (uint64_t) sb.st_size : 0), *cap = num(x->capacity[i]);
                xmlNode *f = xmlNewChild(refs, def, BAD_CAST "File", NULL);
                prop(prop(prop(f, ovf, "href", x->out[i]), ovf, "id", fid), ovf, "size", size);
                xmlNode *d = xmlNewChild(ds, def, BAD_CAST "Disk", NULL);
                prop(prop(prop(prop(prop(d, ovf, "capacity", cap), ovf, "capacityAllocationUnits", "byte"), ovf, "diskId", did), ovf,
                          "fileRef", fid), ovf, "format", "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized");
        }
        xmlNode *ns = xmlNewChild(env, def, BAD_CAST "NetworkSection", NULL);
        text_child(ns, def, "Info", "The logical networks the VM's network cards use");
        for (size_t i = 0; i < x->n_nics; i++) {
                const char *net = x->nics[i].source[0] ? x->nics[i].source : "default";
                bool seen = false;
                for (size_t k = 0; k < i; k++)
                        seen |= streq(x->nics[k].source[0] ? x->nics[k].source : "default", net);
                if (!seen)
                        text_child(prop(xmlNewChild(ns, def, BAD_CAST "Network", NULL), ovf, "name", net), def, "Description",
                                   "a libvirt network of the source");
        }
        xmlNode *vs = prop(xmlNewChild(env, def, BAD_CAST "VirtualSystem", NULL), ovf, "id", x->vm.name);
        text_child(vs, def, "Info", "A virtual machine exported by Armada");
        text_child(vs, def, "Name", x->vm.name);
        xmlNode *os = prop(xmlNewChild(vs, def, BAD_CAST "OperatingSystemSection", NULL), ovf, "id", "1");
        text_child(os, def, "Info", "The kind of guest operating system");
        xmlNode *hw = xmlNewChild(vs, def, BAD_CAST "VirtualHardwareSection", NULL);
        text_child(hw, def, "Info", "Virtual hardware requirements");
        xmlNode *sys = xmlNewChild(hw, def, BAD_CAST "System", NULL);
        text_child(sys, vssd, "ElementName", "Virtual Hardware Family");
        text_child(sys, vssd, "InstanceID", "0");
        text_child(sys, vssd, "VirtualSystemIdentifier", x->vm.name);
        text_child(sys, vssd, "VirtualSystemType", "vmx-07");
        _cleanup_free_ char *cpus = num(x->info.vcpus), *mem = num(x->info.memory_mib);
        _cleanup_free_ char *cpu_name = xasprintf("%u virtual CPU(s)", x->info.vcpus);
        _cleanup_free_ char *mem_name = xasprintf("%llu MB of memory", (unsigned long long) x->info.memory_mib);
        rasd_item(hw, rasd, (const char *const[][2]) { { "AllocationUnits", "hertz * 10^6" }, { "Description", "Number of Virtual CPUs" },
                                                      { "ElementName", cpu_name }, { "InstanceID", "1" }, { "ResourceType", "3" },
                                                      { "VirtualQuantity", cpus } }, 6);
        rasd_item(hw, rasd, (const char *const[][2]) { { "AllocationUnits", "byte * 2^20" }, { "Description", "Memory Size" },
                                                      { "ElementName", mem_name }, { "InstanceID", "2" }, { "ResourceType", "4" },
                                                      { "VirtualQuantity", mem } }, 6);
        rasd_item(hw, rasd, (const char *const[][2]) { { "Address", "0" }, { "Description", "SCSI Controller" },
                                                      { "ElementName", "scsiController0" }, { "InstanceID", "3" },
                                                      { "ResourceSubType", "lsilogic" }, { "ResourceType", "6" } }, 6);
        for (size_t i = 0; i < x->n_out; i++) {
                _cleanup_free_ char *addr = num(i), *res = xasprintf("ovf:/disk/vmdisk%zu", i + 1), *iid = num(10 + i);
                _cleanup_free_ char *en = xasprintf("disk%zu", i + 1);
                rasd_item(hw, rasd, (const char *const[][2]) { { "AddressOnParent", addr }, { "ElementName", en },
                                                              { "HostResource", res }, { "InstanceID", iid }, { "Parent", "3" },
                                                              { "ResourceType", "17" } }, 6);
        }
        for (size_t i = 0; i < x->n_nics; i++) {
                _cleanup_free_ char *iid = num(20 + i), *en = xasprintf("ethernet%zu", i);
                const char *net = x->nics[i].source[0] ? x->nics[i].source : "default";
                const char *model = streq(x->nics[i].model, "virtio") ? "VirtioNet" : "E1000";
                rasd_item(hw, rasd, (const char *const[][2]) { { "Address", x->nics[i].mac }, { "AutomaticAllocation", "true" },
                                                              { "Connection", net }, { "ElementName", en }, { "InstanceID", iid },
                                                              { "ResourceSubType", model }, { "ResourceType", "10" } }, 7);
        }
        xmlChar *mem_out = NULL;
        int len = 0;
        xmlDocDumpFormatMemoryEnc(doc, &mem_out, &len, "UTF-8", 1);
        char *s = xstrdup((const char *) mem_out);
        xmlFree(mem_out);
        xmlFreeDoc(doc);
        return s;
}

static int sha256_file(const char *path, char hex[65]) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        uint64_t n;
        int r = library_sha256_fd(fd, hex, &n);
        close(fd);
        return r;
}

/* ---- publish: the tar of an OVA ---- */

static void tar_octal(char *f, size_t n, uint64_t v) {
        if (v >= (1ULL << (3 * (n - 1)))) { /* base-256 for sizes past 8 GiB */
                memset(f, 0, n);
                f[0] = (char) 0x80;
                for (size_t i = n - 1; i > 0 && v; i--, v >>= 8) f[i] = (char) (v & 0xff);
                return;
        }
        snprintf(f, n, "%0*llo", (int) n - 1, (unsigned long long) v);
}

static int tar_append(int out, const char *dir, const char *name) {
        _cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
        int in = open(path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        if (in < 0 || fstat(in, &sb) < 0) {
                if (in >= 0) close(in);
                return -errno;
        }
        char h[512] = { 0 };
        snprintf(h, 100, "%s", name);
        tar_octal(h + 100, 8, 0644);
        tar_octal(h + 108, 8, 0);
        tar_octal(h + 116, 8, 0);
        tar_octal(h + 124, 12, (uint64_t) sb.st_size);
        tar_octal(h + 136, 12, (uint64_t) now_ms() / 1000);
        memset(h + 148, ' ', 8);
        h[156] = '0';
        memcpy(h + 257, "ustar", 6);
        memcpy(h + 263, "00", 2);
        unsigned sum = 0;
        for (int i = 0; i < 512; i++) sum += (unsigned char) h[i];
        snprintf(h + 148, 8, "%06o", sum);
        int r = write(out, h, 512) == 512 ? 0 : -EIO;
        _cleanup_free_ char *buf = xmalloc(1 << 20);
        uint64_t left = (uint64_t) sb.st_size;
        while (r == 0 && left > 0) {
                ssize_t k = read(in, buf, 1 << 20);
                if (k <= 0 || write(out, buf, (size_t) k) != k)
                        r = -EIO;
                else
                        left -= (uint64_t) k;
        }
        size_t pad = (size_t) ((512 - sb.st_size % 512) % 512);
        if (r == 0 && pad) {
                memset(h, 0, sizeof h);
                r = write(out, h, pad) == (ssize_t) pad ? 0 : -EIO;
        }
        close(in);
        return r;
}

/* Phase describe + publish of an OVA. */
static int export_ova(Export *x) {
        JobCtx *ctx = x->ctx;
        job_progress(ctx, 75, "writing the OVF descriptor and manifest");
        _cleanup_free_ char *ovf = ovf_build(x);
        _cleanup_free_ char *ovf_name = xasprintf("%s.ovf", x->vm.name), *mf_name = xasprintf("%s.mf", x->vm.name);
        _cleanup_free_ char *ovf_path = xasprintf("%s/%s", x->staging, ovf_name), *mf_path = xasprintf("%s/%s", x->staging, mf_name);
        if (file_write_atomic(ovf_path, ovf, strlen(ovf), 0644) < 0)
                return job_fail(ctx, -EIO, "Cannot write the OVF descriptor of VM '%s'.", x->vm.name);
        StrBuf mf = { 0 };
        char hex[65];
        if (sha256_file(ovf_path, hex) < 0)
                return job_fail(ctx, -EIO, "Cannot checksum the OVF descriptor of VM '%s'.", x->vm.name);
        strbuf_printf(&mf, "SHA256(%s)= %s\n", ovf_name, hex);
        for (size_t i = 0; i < x->n_out; i++) {
                _cleanup_free_ char *p = xasprintf("%s/%s", x->staging, x->out[i]);
                if (sha256_file(p, hex) < 0) {
                        strbuf_free(&mf);
                        return job_fail(ctx, -EIO, "Cannot checksum disk %zu of VM '%s'.", i + 1, x->vm.name);
                }
                strbuf_printf(&mf, "SHA256(%s)= %s\n", x->out[i], hex);
        }
        int r = file_write_atomic(mf_path, mf.s, mf.len, 0644);
        strbuf_free(&mf);
        if (r < 0)
                return job_fail(ctx, -EIO, "Cannot write the manifest of VM '%s'.", x->vm.name);
        job_progress(ctx, 85, "writing the OVA");
        _cleanup_free_ char *tmp = xasprintf("%s/.ova", x->staging);
        int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (out < 0)
                return job_fail(ctx, -errno, "Cannot create the OVA of VM '%s': %s.", x->vm.name, strerror(errno));
        r = tar_append(out, x->staging, ovf_name);
        if (r == 0)
                r = tar_append(out, x->staging, mf_name);
        for (size_t i = 0; r == 0 && i < x->n_out; i++)
                r = tar_append(out, x->staging, x->out[i]);
        char end[1024] = { 0 };
        if (r == 0 && write(out, end, sizeof end) != (ssize_t) sizeof end)
                r = -EIO;
        if (r == 0 && fsync(out) < 0)
                r = -errno;
        close(out);
        if (r < 0)
                return job_fail(ctx, r, "Cannot write the OVA of VM '%s': %s.", x->vm.name, strerror(-r));
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, x->target, RENAME_NOREPLACE) < 0)
                return job_fail(ctx, -errno, "Cannot put the OVA at '%s': %s.", x->target, strerror(errno));
        return 0;
}

/* Phase describe + publish of a qcow2 directory. */
static int export_dir(Export *x) {
        _cleanup_free_ char *xml_path = xasprintf("%s/%s.xml", x->staging, x->vm.name);
        if (file_write_atomic(xml_path, x->xml, strlen(x->xml), 0644) < 0)
                return job_fail(x->ctx, -EIO, "Cannot write the domain XML of VM '%s'.", x->vm.name);
        if (chmod(x->staging, 0755) < 0 || renameat2(AT_FDCWD, x->staging, AT_FDCWD, x->target, RENAME_NOREPLACE) < 0)
                return job_fail(x->ctx, -errno, "Cannot put the export at '%s': %s.", x->target, strerror(errno));
        x->staging[0] = 0; /* it is the export now */
        return 0;
}

static int job_vm_export(JobCtx *ctx, void *userdata) {
        Export x = { .ctx = ctx, .inv = userdata, .format = jget_str(ctx->params, "format"),
                     .target = jget_str(ctx->params, "target") };
        int r = export_prepare(&x);
        for (size_t i = 0; r == 0 && i < x.info.n_disks; i++) {
                if (x.info.disks[i].cdrom || !x.info.disks[i].path[0])
                        continue;
                r = export_disk(&x, &x.info.disks[i]);
                if (r == 0 && job_cancel_requested(ctx)) {
                        snprintf(ctx->error, sizeof ctx->error, "Cancelled; nothing of the export was left behind.");
                        r = -ECANCELED;
                }
        }
        if (r == 0 && x.n_out == 0)
                r = job_fail(ctx, -ENOENT, "VM '%s' has no disk to export.", x.vm.name);
        if (r == 0)
                r = streq(x.format, "ova") ? export_ova(&x) : export_dir(&x);
        staging_remove(&x);
        if (r == 0) {
                _cleanup_free_ char *msg = xasprintf("VM '%s' was exported to '%s'.", x.vm.name, x.target);
                (void) store_event_add(ctx->st, "info", "vm.exported", "vm", x.vm.id, x.vm.name, x.vm.owner_id, msg);
                ctx->result = json_pack("{s:s, s:s, s:I, s:I}", "path", x.target, "format", x.format, "disks", (json_int_t) x.n_out,
                                        "nics", (json_int_t) x.n_nics);
        }
        free(x.xml);
        inventory_link_unref(x.link);
        return r;
}

/* An export interrupted by a restart: its staging directory goes. */
static void abandon_vm_export(Store *st, const StoreJob *job, void *userdata) {
        _cleanup_json_ json_t *p = job->params_json ? json_loads(job->params_json, 0, NULL) : NULL;
        staging_sweep(st, p ? jget_str(p, "to") : NULL, job->id, 0);
        (void) userdata;
}

void library_register_export_jobs(Jobs *jobs, Inventory *inv) {
        jobs_register(jobs, "vm.export", job_vm_export, abandon_vm_export, inv, false);
}
