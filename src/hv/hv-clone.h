/* hv-clone: a point-in-time copy of a running domain's disks, for cloning a
 * VM that keeps running (src/library/library-clone.c).
 *
 * libvirt's backup API in push mode: virDomainBackupBegin() with a
 * <domainbackup mode='push'> makes QEMU copy every chosen disk, as it was at
 * the instant the job began, into a target file the caller made (copy-
 * before-write keeps that instant while the guest goes on writing), with
 * VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL so the targets are the caller's
 * volumes. Nothing is left on the domain: no snapshot, no overlay to commit
 * back, no checkpoint. The job ends by itself; hv_copy_status() tells when
 * and how. Errors as in hv.h (hv_last_error()). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv.h"
#include "hv-backup.h"

/* The copy's XML: hv_copy_xml_build() (hv-backup.h). */

/* The definition of a clone (pure, hv-xml.c), as virt-clone makes it: the
 * source's persistent definition src_xml (hv_domain_xml_get()) with the
 * clone's name, UUID, description, Armada marker, domain type and VNC
 * (listen address, password, a port of its own) from spec; the i-th NIC
 * of the definition with MAC macs[i] (i < n_macs and macs[i] not NULL),
 * else without the source's (libvirt gives it a new one); no UEFI variable store
 * path (libvirt makes the clone its own); each disk of the source replaced
 * by spec's disk of the same target (a plain file, no backing chain of the
 * source's) and a disk spec lacks removed (LUNs included), spec's disks the
 * definition lacks added; CD-ROM and floppy drives kept, empty (their
 * media may be the source's own or absent on the clone's host). Everything
 * else is the source's: every NIC with its network or bridge and model,
 * firmware, boot order, maximum memory and vCPUs, CPU model, devices. malloc'd; NULL with the error set
 * when src_xml is not a domain or spec is invalid. */
char *hv_domain_xml_clone(const char *src_xml, const HvDomainSpec *spec, const char *const *macs, size_t n_macs);

/* Begins the copy described by xml on running domain uuid. 0; -EBUSY when
 * the domain has a job already (a backup, a migration); -EOPNOTSUPP when the
 * hypervisor cannot (the test driver); -ENOENT; or negative. */
int hv_copy_begin(HvConn *c, const char *uuid, const char *xml);

typedef struct {
        bool active;            /* the copy still runs */
        bool failed;            /* it ended, and not well (error says why) */
        uint64_t total, processed;      /* bytes, while active (0 when unknown) */
        char error[512];
} HvCopyStatus;

/* Where the domain's copy is: running (with progress), or ended — then
 * failed tells whether libvirt's completed-job statistics say it failed
 * (a copy that ended without statistics counts as done). 0 or negative. */
int hv_copy_status(HvConn *c, const char *uuid, HvCopyStatus *ret);

/* Stops the domain's running copy (virDomainAbortJob); 0 also when none runs. */
int hv_copy_abort(HvConn *c, const char *uuid);
