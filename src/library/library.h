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
 * Errors: 0 or positive on success, -errno on failure; functions that
 * explain themselves take a why buffer and write a whole sentence to it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "jobs/jobs.h"
#include "inventory/inventory.h"

/* ---- configuration (the parsed configuration: set once at start-up) ---- */
typedef struct {
        uint64_t upload_max_bytes;   /* largest upload accepted (default 64 GiB) */
        const char *tmp_dir;         /* where seed ISOs are built: armadad gives <state-dir>/tmp,
                                      * emptied at start-up (default $TMPDIR, else /tmp) */
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
        char format[8];           /* "qcow2", "raw", "vmdk", "vhdx", "iso", "text" */
        uint64_t virtual_size;    /* disks: guest-visible bytes (0 unknown); ISOs: file size */
        char backing[1024];       /* qcow2: its backing file name, "" when none */
} LibraryImageInfo;
/* Detects what the open file is, by content first:
 *   "QFI\xfb" at 0 (version 2 or 3)    disk qcow2 (virtual size, backing)
 *   "KDMV" at 0                         disk vmdk;  "vhdxfile" at 0: disk vhdx
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
#define LIBRARY_GRANT_ACTIONS "deploy,start,stop,kill,pause,resume,delete"
/* NULL when csv is a comma list of LIBRARY_GRANT_ACTIONS words, else why. */
const char *library_actions_invalid(const char *csv);
/* True when action is one of the comma list csv. */
bool library_actions_allow(const char *csv, const char *action);

/* ---- jobs ---- */
/* Registers library.refresh, vm.deploy and vm.capture (before jobs_start()). */
void library_register_jobs(Jobs *jobs, Inventory *inv);
