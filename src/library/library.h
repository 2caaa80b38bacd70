/* library: Armada's library of images, ISOs and scripts kept in registered
 * directories (shares), the templates built on them, deployment of VMs from
 * templates (a linked clone or a full copy of the base disk, plus a cloud-init
 * NoCloud seed ISO), and the self-service quota arithmetic.
 *
 * Pure helpers (path rules, format detection, cloud-init rendering, quota)
 * are here for the API and the unit tests; the job kinds that touch files
 * and hosts are registered by library_register_jobs():
 *   library.refresh   index a share (or one file of it): format, size, sha256
 *   vm.deploy         disk (overlay or copy), seed ISO, define, start
 *   vm.capture        a stopped VM's system disk copied into a share, as a template
 * The operations behind the REST API's library, template, grant and
 * self-service resources are the library's too (library-ops.c,
 * library-deploy.c; see "operations" below): the API parses and maps.
 * Errors: 0 or positive on success, -errno on failure; functions that
 * explain themselves take a why buffer and write a whole sentence to it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "jobs/jobs.h"
#include "inventory/inventory.h"
#include "op/op.h"

/* ---- configuration (the parsed configuration: set once at start-up) ---- */
typedef struct {
        uint64_t upload_max_bytes;   /* largest upload accepted (default 64 GiB) */
        const char *tmp_dir;         /* where seed ISOs are built: armadad gives <state-dir>/tmp,
                                      * emptied at start-up (default $TMPDIR, else /tmp) */
        const char *export_root;     /* armadad --export-root: where VM exports may be written and
                                      * imports read (besides library shares); NULL: none */
} LibraryConfig;
/* Sets the members given (upload_max_bytes > 0, tmp_dir not NULL, which is
 * copied); leaves the others as they are. */
void library_configure(const LibraryConfig *cfg);
const LibraryConfig *library_config(void);
/* The directory for temporary files: the configured tmp_dir, else $TMPDIR,
 * else /tmp. */
const char *library_tmp_dir(void);

/* ---- paths inside a share ----
 * A share is an absolute directory, stored as its realpath(). Items are
 * named by their path relative to it. Nothing ever leaves a share: relative
 * paths may not be absolute nor hold "." or ".." segments, and every file
 * is opened one segment at a time with O_NOFOLLOW, so a symlink anywhere on
 * the way (in or out of the share) is refused. */

/* NULL when rel is an acceptable relative path, else why not (a static
 * fragment to follow "the path 'x' "). At most 1023 bytes; segments not
 * empty, ".", ".." nor starting with '.' (hidden files are Armada's own
 * temporaries); no control characters nor backslashes. */
const char *library_rel_path_invalid(const char *rel);
/* Opens rel inside the share at root: each directory with
 * O_DIRECTORY|O_NOFOLLOW, the last segment with flags|O_NOFOLLOW|O_CLOEXEC
 * (and mode when creating). Returns the fd, -EINVAL for a bad rel, -ELOOP
 * when a segment is a symlink, -ENOTDIR, -ENOENT or another -errno. */
int library_open_in_share(const char *root, const char *rel, int flags, int mode);
/* When path (absolute; resolved with realpath()) lies inside root (also
 * resolved), returns 0 and the relative path (malloc'd); -EXDEV when it is
 * outside, -ENOENT when it does not exist, -EINVAL when not absolute. */
int library_path_in_share(const char *root, const char *path, char **ret_rel);

/* ---- formats ---- */
typedef struct {
        char kind[8];             /* "disk", "iso", "script" */
        char format[8];           /* "qcow2", "raw", "vmdk", "vhd", "vhdx", "iso", "text" */
        uint64_t virtual_size;    /* disks: guest-visible bytes (0 unknown); ISOs: file size */
        char backing[1024];       /* qcow2: its backing file name, "" when none */
} LibraryImageInfo;
/* Detects what the open file is, by content first:
 *   "QFI\xfb" at 0 (version 2 or 3)    disk qcow2 (virtual size, backing)
 *   "KDMV" at 0                         disk vmdk;  "vhdxfile" at 0: disk vhdx
 *   "conectix" at 0 or size-512         disk vhd (virtual size from the footer)
 *   "CD001" at 0x8001                   iso
 * then, for content without a signature, by name: ".img", ".raw" → disk raw
 * (a non-empty whole number of 512-byte sectors); ".sh", ".ps1", ".py",
 * ".cmd", ".bat", ".yaml", ".yml", ".cfg", ".txt" or a "#!" first line,
 * without NUL bytes in the first 4 KiB → script text. Anything else
 * (a ".qcow2" that is not qcow2, an ".iso" without CD001, ...) is
 * -EMEDIUMTYPE. size is the file's size. Reads with pread(); -EIO on a read
 * error. */
int library_image_detect(int fd, const char *name, uint64_t size, LibraryImageInfo *ret);
/* SHA-256 of the whole file (read from offset 0, 1 MiB at a time): hex into
 * out, the bytes read into *ret_size. 0 or -errno. */
int library_sha256_fd(int fd, char out[65], uint64_t *ret_size);

/* ---- guest customization (cloud-init NoCloud) ---- */
#define LIBRARY_USER_DATA_MAX (64 * 1024)
typedef struct {
        const char *instance_id;
        const char *hostname;
        const char *admin_user;         /* NULL: no user is added */
        const char *const *ssh_keys;    /* for admin_user, else the image's default user */
        size_t n_ssh_keys;
        const char *timezone;           /* NULL: the image's */
        const char *user_data;          /* free-form part, NULL for none */
} LibraryGuest;
/* The MIME type of free-form user-data ("text/cloud-config" for
 * "#cloud-config", "text/x-shellscript" for "#!", "text/cloud-boothook",
 * "text/x-include-url" for "#include"), NULL when cloud-init would not
 * know what it is. */
const char *library_user_data_type(const char *user_data);
/* Renders meta-data (instance-id, local-hostname) and user-data: a
 * #cloud-config with hostname, the admin user (passwordless sudo, locked
 * password, its SSH keys) and the time zone; with a free-form part, a MIME
 * multipart of the two, the free-form part merged after Armada's
 * (Merge-Type: list(append)+dict(no_replace,recurse_list)+str()). Strings
 * are YAML double-quoted. Pure. 0 with both malloc'd, or -EINVAL (free-form
 * part of an unknown type or holding the MIME boundary). */
int library_cloudinit_render(const LibraryGuest *g, char **ret_meta, char **ret_user);
/* Expands a hostname pattern: "{name}" is the VM name ('.' and '_' become
 * '-'), "{n}" the VM's number (1 for a single VM). NULL or "" means
 * "{name}". The result must be a host name label: 1-63 letters, digits or
 * '-', not starting or ending with '-'. 0, or -EINVAL (unknown "{...}"
 * or an invalid result). */
int library_hostname_expand(const char *pattern, const char *vm_name, int n, char out[64]);
/* The name of the n-th (from 1) VM of a deploy: "NAME-n" when the caller
 * asked for a count (numbered: even "--count 1" gives "NAME-1", as the help
 * says), else NAME itself. Pure. 0, or -ENAMETOOLONG when the name does
 * not fit in out (63 bytes and the NUL). */
int library_deploy_vm_name(const char *name, bool numbered, int64_t n, char out[64]);
/* Writes meta-data and user-data into a fresh temporary directory and builds
 * the seed ISO (volume id "cidata", Joliet and Rock Ridge) at out_path with
 * genisoimage, or xorriso when genisoimage is not installed: a fixed argv run by
 * posix_spawn, never a shell. The temporary directory is removed. 0, or
 * negative with a sentence in why. */
int library_seed_iso_build(const char *meta, const char *user, const char *out_path, char *why, size_t why_size);

/* Converts the disk image src (any format qemu-img reads; a backing chain
 * is flattened) into a standalone qcow2 at dst with `qemu-img convert`, run
 * by posix_spawn with a fixed argv. 0, or negative with a sentence in why. */
int library_image_convert(const char *src, const char *dst, char *why, size_t why_size);

/* ---- self-service quota ---- */
typedef struct {
        int64_t points, vms, cpus, memory_mib;   /* in a limit, < 0 means unlimited */
} LibraryAmounts;
/* Whether used + add stays within limit, field by field (points, VMs,
 * vCPUs, memory). 0, or -EDQUOT with the first one exceeded in why, e.g.
 * "quota: needs 4 points, 2 of 20 left". Pure. */
int library_quota_check(const LibraryAmounts *limit, const LibraryAmounts *used, const LibraryAmounts *add,
                        char *why, size_t why_size);
/* The actions a grant may allow. */
#define LIBRARY_GRANT_ACTIONS "deploy,start,stop,kill,pause,resume,delete,snapshot"
/* NULL when csv is a comma list of LIBRARY_GRANT_ACTIONS words, else why. */
const char *library_actions_invalid(const char *csv);
/* True when action is one of the comma list csv. */
bool library_actions_allow(const char *csv, const char *action);

/* ---- jobs ---- */
/* Registers library.refresh, vm.deploy and vm.capture (before jobs_start()). */
void library_register_jobs(Jobs *jobs, Inventory *inv);

/* ---- operations (library-ops.c, library-deploy.c) ----
 * What the REST API's library, template, grant and self-service resources
 * do, without HTTP. Each takes the store (and the job queue when it queues
 * work), the caller c and err; it returns 0, or -errno with err filled
 * (op.h: status, code, the field to blame, a whole sentence). Each decides
 * the caller's rights itself: changing shares, items, templates and grants
 * is the administrator's (OBJ_SYSTEM UPDATE in the policy; a refusal is
 * audited); reading the library and templates is open to every role but
 * self-service, who sees only the templates its grants name. JSON results
 * are new references in the shape the API returns them; *ret is set only
 * on success. Messages, statuses, codes, fields and audit records are the
 * API's contract (users script against them): change none of them. */

/* The shares (a JSON array). 403 for self-service users. */
int library_shares_list(Store *st, const OpCaller *c, json_t **ret, OpError *err);
/* Registers the directory path (absolute; stored as its realpath(), which
 * must not equal, lie inside or hold another share) and queues its first
 * library.refresh. ret: {"share", "job"} (job null when it could not be
 * queued). 400/422/409 naming "path"; nothing is recorded then. */
int library_share_create(Store *st, Jobs *jobs, const OpCaller *c, const char *path, json_t **ret, OpError *err);
/* Forgets share id and its items (the files stay); 409 while a template's
 * base image is in it, 404 when there is none. */
int library_share_delete(Store *st, const OpCaller *c, int64_t id, OpError *err);
/* Queues library.refresh of share id. ret: {"job"}. */
int library_share_refresh(Store *st, Jobs *jobs, const OpCaller *c, int64_t id, json_t **ret, OpError *err);

/* The items of share_id (0: every share) of kind (NULL: any; else "disk",
 * "iso" or "script", 400 naming "kind"). A JSON array. */
int library_items_list(Store *st, const OpCaller *c, int64_t share_id, const char *kind, json_t **ret, OpError *err);
int library_item_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* Indexes the file at path (absolute, inside a share, reached without
 * symlinks, a recognized image or script) now and queues the job that
 * checksums it. ret: {"item", "job"}. 4xx naming "path". */
int library_item_import(Store *st, Jobs *jobs, const OpCaller *c, const char *path, json_t **ret, OpError *err);

/* A streamed upload into a share: begin, any number of writes, finish.
 * The bytes go to a hidden temporary file beside the target (indexing
 * skips it); finish checks it is an image or script, renames it into
 * place (never replacing a file) and records the item. */
typedef struct LibraryUpload LibraryUpload;
/* Starts an upload of name (the path inside share share_id; may be NULL,
 * which is a 400 naming "name"). content_length is the announced size, or
 * < 0 when unknown: above armadad's library-upload-max it is a 413. */
int library_upload_begin(Store *st, const OpCaller *c, int64_t share_id, const char *name, int64_t content_length,
                         LibraryUpload **ret, OpError *err);
/* Appends len bytes: 413 past the limit, 507 when the write fails. After a
 * failure the upload is over: free it. */
int library_upload_write(LibraryUpload *u, const void *buf, size_t len, OpError *err);
/* Completes the upload. ret: {"item"}. 422 naming "name" when it is no
 * image nor script, 409 when the name appeared meanwhile (the upload is
 * then not kept). Free u after, whatever the result. */
int library_upload_finish(Store *st, const OpCaller *c, LibraryUpload *u, json_t **ret, OpError *err);
/* Ends an upload; removes its temporary file unless it finished. Accepts
 * NULL; returns NULL. */
LibraryUpload *library_upload_free(LibraryUpload *u);

/* Every template (a JSON array); for a self-service caller the granted
 * ones only. */
int library_templates_list(Store *st, const OpCaller *c, json_t **ret, OpError *err);
/* Template id; 404 as well when a self-service caller has no grant of it. */
int library_template_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err);

typedef struct {
        const char *name;                   /* required */
        const char *description;            /* may be NULL */
        int64_t cpus, memory_mib, points;
        const char *disk_size;              /* "20G", NULL: the base's size */
        json_t *data_disks;                 /* borrowed: sizes ("20G" or bytes), NULL */
        const char *firmware;               /* "bios" or "uefi" (checked here) */
        const char *domain_type;            /* "auto", "kvm", "qemu" (checked by the caller) */
        const char *network;                /* may be NULL */
        const char *image;                  /* a library path (absolute, or relative when unique) ... */
        int64_t image_id;                   /* ... or an item id: exactly one of them */
        const char *hostname_pattern, *admin_user, *timezone, *user_data;   /* may be NULL */
        json_t *ssh_keys;                   /* borrowed: a list of public keys, NULL */
        const char *iso;                    /* an ISO for the CD-ROM drive of its VMs: a library path ... */
        int64_t iso_id;                     /* ... or an item id; neither: none (issue 12) */
} LibraryTemplateSpec;
/* Checks spec (after the caller's right: firmware, pattern, time zone,
 * user-data, keys, sizes, the base image) and records the template. ret:
 * the template. 4xx naming the field at fault; nothing is recorded then. */
int library_template_create(Store *st, const OpCaller *c, const LibraryTemplateSpec *spec, json_t **ret, OpError *err);
/* Deletes template id (VMs deployed from it keep running). */
int library_template_delete(Store *st, const OpCaller *c, int64_t id, OpError *err);
/* Queues vm.capture: the stopped VM vm's system disk copied into share
 * share_id (0: the only share) as NAME.qcow2 and made template name with
 * points. ret: {"job"}. */
int library_template_from_vm(Store *st, Jobs *jobs, const OpCaller *c, const char *vm, const char *name, int64_t share_id,
                             int64_t points, json_t **ret, OpError *err);

#define LIBRARY_DEPLOY_COUNT_MAX 100
typedef struct {
        int64_t template_id;
        const char *name;          /* the VM's name, or the stem of numbered names */
        int64_t count;             /* 1 to LIBRARY_DEPLOY_COUNT_MAX */
        bool numbered;             /* the request gave a count: NAME-1 ... NAME-count */
        const char *host;          /* a host to put every VM on, or NULL */
        const char *group;         /* a host group to place in, or NULL (not both) */
        bool full_copy;            /* copy the base disk instead of an overlay */
        bool start;                /* start the VMs once made */
} LibraryDeploySpec;
/* Deploys spec->count VMs from a template, in phases: resolve the
 * template, names, host group and host; then in one transaction choose the
 * grant whose quota holds them (self-service callers, whose grant stands
 * in for the policy's VM CREATE), place each VM and record its row (later
 * VMs count the earlier ones); commit; then queue a vm.deploy job per VM
 * and audit it. Either every row is recorded or none (a failure rolls the
 * transaction back; a VM whose job cannot be queued loses its row). ret:
 * {"vms", "jobs", "grant_id"}. 403 (a refused quota or grant audited as
 * denied), 404, 409 (a name taken, no capacity), 422 naming the field. */
int library_template_deploy(Store *st, Jobs *jobs, const OpCaller *c, const LibraryDeploySpec *spec, json_t **ret,
                            OpError *err);

/* Every grant (a JSON array), each with its "quota" (limit, used, left per
 * points, vms, cpus, memory_mib). Administrators' reading (OBJ_SYSTEM). */
int library_grants_list(Store *st, const OpCaller *c, json_t **ret, OpError *err);
int library_grant_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
typedef struct {
        const char *user;          /* a self-service user's name */
        const char *group;         /* the host group its VMs go to */
        json_t *templates;         /* borrowed: a list of 1 to 100 template names */
        int64_t points, max_vms, max_cpus, max_memory_mib;   /* -1: unlimited */
        const char *actions;       /* comma list of LIBRARY_GRANT_ACTIONS words */
} LibraryGrantSpec;
/* Records a grant. ret: the grant with its quota. 4xx naming the field. */
int library_grant_create(Store *st, const OpCaller *c, const LibraryGrantSpec *spec, json_t **ret, OpError *err);
int library_grant_delete(Store *st, const OpCaller *c, int64_t id, OpError *err);
/* The caller's own view: {"user", "role", "grants" (with quota, actions as
 * a list), "vms" (the VMs it owns)}. */
int library_self_service(Store *st, const OpCaller *c, json_t **ret, OpError *err);

/* ---- clone, export and import (library-clone.c, library-export.c,
 * library-import.c) ----
 * Each operation checks its request and the caller's rights, records what
 * it can record at once (a new VM's row, placed, in state "creating") and
 * queues a job (vm.clone, vm.export, vm.import) that does the copying; a job
 * that fails removes what it made (volumes, domain, row) and says why.
 * Paths users give are allow-listed: an export goes under armadad's
 * --export-root; an import comes from there or from a library share. Both
 * are realpath()'d, so a symlink leading out is refused (400 naming
 * "path"/"to"); no error quotes a file's content. */

typedef struct {
        int64_t vm_id;             /* the VM to clone (stopped) */
        const char *name;          /* the new VM's name (required) */
        bool linked;               /* a qcow2 overlay over the source's disks (same host) */
        const char *host;          /* where the clone goes; NULL: the source's host when linked,
                                    * else placement in the source's host group */
        bool start;                /* start the clone once made */
} LibraryCloneSpec;
/* Clones a stopped VM: new UUID and MACs, each disk copied (or overlaid when
 * linked; a full clone to another host streams the disks there). The
 * caller must read the source and create VMs where the clone goes. ret:
 * {"vm", "job"}. 409 naming "vm" when the source is not stopped, 409 naming
 * "name" when taken, 400 naming "host" for a linked clone elsewhere, 4xx as
 * placement refuses. */
int library_vm_clone(Store *st, Jobs *jobs, const OpCaller *c, const LibraryCloneSpec *spec, json_t **ret, OpError *err);

typedef struct {
        int64_t vm_id;             /* the VM to export (stopped) */
        const char *to;            /* a directory under the export root (required) */
        const char *format;        /* "ova" (OVF 1.0 + streamOptimized VMDK + SHA-256 manifest)
                                    * or "qcow2" (a directory of the domain XML and qcow2 disks) */
} LibraryExportSpec;
/* Queues vm.export, which writes TO/NAME.ova or the directory TO/NAME
 * (staged under a hidden name and renamed into place: never half-written,
 * never replacing anything). Administrators only (it writes on armadad's
 * machine). ret: {"job", "path"}. 400 naming "to" (outside the export
 * root, not a directory) or "format", 409 naming "vm" (not stopped) or "to"
 * (the target exists). */
int library_vm_export(Store *st, Jobs *jobs, const OpCaller *c, const LibraryExportSpec *spec, json_t **ret, OpError *err);

typedef struct {
        const char *path;          /* an .ova, .ovf, .vmx, a disk image (qcow2, raw, vmdk, vhd,
                                    * vhdx) or a directory exported as qcow2 (required) */
        const char *name;          /* the VM's name; NULL: the descriptor's (or the file's stem) */
        const char *host, *group;  /* where to put it (at most one); NULL: placement in the root */
        int64_t cpus, memory_mib;  /* override the descriptor's; 0: the descriptor's (images: 1 and 1024) */
        const char *network;       /* a libvirt network for every card of the descriptor (one card when it
                                    * has none); NULL: no card, unless networks says */
        const json_t *networks;    /* borrowed, NULL: none. An array: one network per card of the
                                    * descriptor, in its order (as many as it has; one card per name when
                                    * it has none), not with network. An object: {the descriptor's network
                                    * name: network}, every card's network a key unless network is given for
                                    * the rest. 400/422 naming "networks" otherwise. */
        bool start;                /* start it once made */
        const char *v2v;           /* "auto", "always", "never" (library-v2v.c); NULL: armadad's --v2v */
} LibraryImportSpec;
/* Reads the descriptor now (OVF in an OVA's tar, VMX, a VMDK descriptor's
 * extents, an exported domain XML): every file it names must be a plain
 * name beside it (or a member of the OVA), of the size declared, and no
 * disk may have a backing file; places and records the VM and queues
 * vm.import, which converts each disk to qcow2 with qemu-img (a fixed
 * argv, the source format given, backing files never opened), checks the
 * OVA's manifest, uploads the disks to the host and defines the VM.
 * Administrators only (it reads files on armadad's machine). ret: {"vm",
 * "job", "source"} (source: what was read: kind, cpus, memory_mib, disks,
 * nics). 400 naming "path" (outside the allowed roots, a malformed
 * descriptor, a file outside, a size mismatch), 409 naming "name". */
int library_vm_import(Store *st, Jobs *jobs, const OpCaller *c, const LibraryImportSpec *spec, json_t **ret, OpError *err);

/* ---- virt-v2v on imported and P2V disks (library-v2v.c) ----
 * After an import's disks are converted (locally, before the upload) and a
 * P2V's disks are copied (into the host's volume files when armadad
 * reaches them), virt-v2v-in-place readies the guest for virtio. Per
 * request ("v2v"): auto runs it when it is installed and keeps the
 * source's bus when it cannot convert the guest; always fails the job
 * then (nothing left behind); never skips it. The job's result says what
 * happened: "v2v": {ran, converted, reason, backend ("kvm"/"tcg"), seconds}. */
typedef enum { LIBRARY_V2V_AUTO = 0, LIBRARY_V2V_ALWAYS, LIBRARY_V2V_NEVER } LibraryV2vMode;
typedef struct {
        bool mode_set;             /* set mode (the default of requests without "v2v") */
        LibraryV2vMode mode;
        unsigned timeout_s;        /* a run longer than this is killed; 0: unchanged (default 3600) */
        const char *program;       /* NULL: unchanged ("virt-v2v-in-place" in PATH) */
} LibraryV2vConfig;
/* Sets the members given; at start-up. */
void library_v2v_configure(const LibraryV2vConfig *cfg);
/* "auto", "always", "never" into *ret: 0, or -EINVAL (then *ret is untouched). Pure. */
int library_v2v_mode_parse(const char *s, LibraryV2vMode *ret);

/* ---- P2V: a physical server converted into a VM (library-p2v.c) ----
 * armadad reads the server's disks over SSH with an identity the
 * administrator configures (armadad --p2v-ssh-key; P2V is off without it)
 * and checks the server's host key against --p2v-known-hosts or the
 * fingerprint given with the request (never accepted blindly). Nothing on
 * the server is written: a fixed read-only probe, then `dd if=DISK` per
 * disk, streamed straight into the host's volume. */
typedef struct {
        const char *ssh_key;       /* the private key ssh uses (-i), NULL: P2V is off */
        const char *known_hosts;   /* an OpenSSH known_hosts file, NULL: none (the request's fingerprint then) */
} LibraryP2vConfig;
/* Sets the members given (copied); set once at start-up. */
void library_p2v_configure(const LibraryP2vConfig *cfg);

/* NULL when path is a device path P2V accepts (/dev/ then [a-z0-9/_-]+,
 * no empty segment, at most 200 bytes), else why not (a fragment to follow
 * "Disk 'x' "). Pure. */
const char *library_p2v_disk_invalid(const char *path);
/* Splits "user@address" (user defaults to root when there is no '@'; an
 * IPv6 address may be in brackets) into its parts: a user name of [a-z0-9_.-]
 * (not starting with '-' or '.', at most 32 bytes) and a host name or IP
 * address ([A-Za-z0-9.:-], not starting with '-'). 0, or -EINVAL. Pure. */
int library_p2v_ssh_parse(const char *ssh, char user[33], char addr[256]);

typedef struct {
        const char *server;                 /* required: an assessed server's name, or any name (the VM's default) */
        const char *ssh;                    /* "user@address"; NULL: root@ the assessed server's node_exporter host */
        int64_t port;                       /* SSH port, 0: 22 */
        const char *const *disks;           /* device paths; none: every whole disk the server shows */
        size_t n_disks;
        const char *host_key_fingerprint;   /* "SHA256:..." (ssh-keygen -l), NULL: armadad's --p2v-known-hosts */
        const char *name;                   /* the VM's name, NULL: server */
        const char *host, *group;           /* where to put it (at most one); NULL: placement in the root */
        int64_t cpus, memory_mib;           /* override the assessment's / the server's; 0: theirs */
        const char *network;                /* a libvirt network for the VM's NIC; NULL: none */
        bool start;                         /* start it once made */
        const char *v2v;                    /* "auto", "always", "never" (library-v2v.c); NULL: armadad's --v2v */
        const char *domain_type;            /* "auto" (the host's: kvm where it has it), "kvm", "qemu" (TCG); NULL: auto */
} LibraryP2vSpec;
/* Converts a running Linux server into a VM, in phases: checks the caller
 * (administrators only: 403, audited), the configuration (503 naming "ssh"
 * without --p2v-ssh-key) and the fields (400 naming "ssh", "port", "disks",
 * "host_key_fingerprint"); pins the host key; probes the server over SSH,
 * read-only (422 naming "ssh" when SSH fails, "host_key_fingerprint" when
 * the key does not match; 400 naming "disks" for a path that is not a block
 * device there); takes CPUs and memory from the assessment when server names
 * an assessed server, else from the probe; places and records the VM and
 * queues vm.p2v, which streams each disk (`ssh dd`) into a raw volume on the
 * host with progress (bytes, MiB/s), defines the VM (disks on the SATA bus)
 * and starts it when asked; a failure removes what it made. ret: {"vm",
 * "job", "source"}. */
int library_p2v(Store *st, Jobs *jobs, const OpCaller *c, const LibraryP2vSpec *spec, json_t **ret, OpError *err);
