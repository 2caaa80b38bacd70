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
