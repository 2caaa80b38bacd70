/* hv-backup: libvirt's backup API in pull mode, for src/protect's backups.
 *
 * virDomainBackupBegin() with a <domainbackup mode='pull'> makes QEMU hold a
 * point-in-time view of every backed-up disk (copy-before-write into a
 * scratch file libvirt creates) and serve it over NBD; with a checkpoint
 * XML it also starts a new checkpoint (a persistent dirty bitmap in each
 * qcow2 disk) at the same instant, and with <incremental> it exports the
 * bitmap of the changes since an earlier checkpoint beside each disk, as the
 * NBD meta context "qemu:dirty-bitmap:<exportbitmap>". The reader (libnbd,
 * in armadad) then ends the job with hv_backup_end().
 *
 * Only qcow2 file disks take part: a persistent bitmap needs qcow2. Pure
 * builders and parsers first (no libvirt), then the calls, which follow
 * hv.h's conventions (0 or a negative errno, the sentence in
 * hv_last_error()). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv.h"

#define HV_BACKUP_MAX_DISKS 16

typedef struct HvBackupDisk {
        char target[32];          /* "vda" */
        char source[1024];        /* the qcow2 file on the host */
        char export_name[96];     /* NBD export (after begin) */
        char bitmap[96];          /* the exported bitmap, "" for a full backup */
} HvBackupDisk;

typedef struct HvBackupSpec {
        const char *checkpoint;   /* the new checkpoint's name */
        const char *incremental;  /* the checkpoint to read changes since; NULL: full */
        const char *nbd_addr;     /* the address the NBD server listens on (tcp), or */
        const char *nbd_socket;   /* a unix socket path on the host */
        unsigned nbd_port;        /* tcp: 0 lets libvirt choose */
        const char *export_token; /* a random string, so export names cannot be guessed */
        bool tls;                 /* tcp: the NBD server speaks TLS only (<server tls='yes'>; the
                                   * host's qemu.conf has the certificates: backup_tls_x509_cert_dir) */
} HvBackupSpec;

/* The disks of domain XML that a backup can take: <disk device='disk'
 * type='file'> with driver type qcow2 and a source file. 0 and *ret_n (≤
 * HV_BACKUP_MAX_DISKS) disks in ret (targets and sources filled), -EINVAL
 * for XML that does not parse, -E2BIG beyond HV_BACKUP_MAX_DISKS. Pure. */
int hv_backup_disks(const char *domain_xml, HvBackupDisk ret[HV_BACKUP_MAX_DISKS], size_t *ret_n);
/* The <domainbackup mode='pull'> for disks (export names "<token>-<target>",
 * bitmaps "<token>-<target>-dirty" when spec->incremental) and the
 * <domaincheckpoint> named spec->checkpoint over the same disks. Pure;
 * malloc'd, never NULL. Fills disks[].export_name and .bitmap. */
char *hv_backup_xml_build(const HvBackupSpec *spec, HvBackupDisk *disks, size_t n);
char *hv_checkpoint_xml_build(const char *name, const HvBackupDisk *disks, size_t n);
/* The <domainbackup mode='push'> of a clone of a running VM (hv-clone.h):
 * copies disk targets[i] into the qcow2 file files[i] (i < n) and leaves out
 * every target of skip[0..n_skip) (backup='no': CD-ROMs, disks not copied).
 * Pure; malloc'd, never NULL. */
char *hv_copy_xml_build(const char *const *targets, const char *const *files, size_t n, const char *const *skip,
                        size_t n_skip);
/* The NBD port of a running backup's XML (virDomainBackupGetXMLDesc), 0
 * when it names none (a unix socket). 0 or -EINVAL. Pure. */
int hv_backup_xml_port(const char *xml, unsigned *ret_port);

/* The domain's live XML without secrets (no VNC password). 0 and a
 * malloc'd string, -ENOENT, or negative. */
int hv_domain_xml_public(HvConn *c, const char *uuid, char **ret);

/* Begins a pull-mode backup of domain uuid with backup_xml and (may be
 * NULL) checkpoint_xml; *ret_desc (malloc'd) is the running backup's XML,
 * with the port libvirt chose. -EBUSY when the domain already has a job,
 * -ENOENT for an unknown checkpoint or domain, -EOPNOTSUPP when the
 * hypervisor cannot back up, else negative. */
int hv_backup_begin(HvConn *c, const char *uuid, const char *backup_xml, const char *checkpoint_xml, char **ret_desc);
/* Ends the domain's backup job, if it has one (the NBD server goes and
 * libvirt removes the scratch files); *ret_ended (may be NULL) says whether
 * there was one. 0 or negative. */
int hv_backup_end(HvConn *c, const char *uuid, bool *ret_ended);

/* The names of the domain's checkpoints, one per line ("" when none),
 * malloc'd. 0, -ENOENT, or negative. */
int hv_checkpoint_list(HvConn *c, const char *uuid, char **ret);
/* Deletes checkpoint name of the domain (its bitmaps are merged into its
 * parent's by libvirt). 0, -ENOENT (no such checkpoint), or negative. */
int hv_checkpoint_delete(HvConn *c, const char *uuid, const char *name);
/* Drops checkpoint name from libvirt's metadata only, leaving the disks'
 * bitmaps alone (for disks about to be replaced). 0, -ENOENT or negative. */
int hv_checkpoint_forget(HvConn *c, const char *uuid, const char *name);

/* Freezes / thaws the guest's file systems through the QEMU guest agent.
 * 0 (freeze: at least one was frozen) or negative (no agent, the agent did
 * not answer: -ENOTSUP / -EIO). */
int hv_domain_fs_freeze(HvConn *c, const char *uuid);
int hv_domain_fs_thaw(HvConn *c, const char *uuid);

/* The domain XML of a recovery point made into a new domain: name and uuid
 * replaced, <mac> of every interface dropped (libvirt draws new ones),
 * the <metadata> dropped (Armada marks the domain itself), and every disk
 * whose target is targets[i] pointed at paths[i] as a qcow2 file. 0 and a
 * malloc'd string, or -EINVAL. Pure. */
int hv_restore_xml(const char *xml, const char *name, const char *uuid, const char *const *targets, const char *const *paths,
                   size_t n, char **ret);
/* A domain's own XML with the disks whose targets are targets[i] pointed
 * at paths[i] as qcow2 files, everything else (name, UUID, MAC addresses,
 * other disks) as it was: a restore in place, of all disks or one. 0 and a
 * malloc'd string, -EINVAL (not a domain) or -ENOENT (a target it lacks).
 * Pure. */
int hv_restore_disks_xml(const char *xml, const char *const *targets, const char *const *paths, size_t n, char **ret);
