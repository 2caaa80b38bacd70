/* hv-migrate: live migration and the domain jobs around it, beside the rest
 * of hv (same conventions: 0 or a negative errno-style code, the sentence in
 * hv_last_error()). Peer-to-peer: the source libvirtd connects to the
 * destination itself, so Armada needs only the source connection to move a
 * VM, and the destination's to read what the migration cost. Progress and
 * cancel work from another thread while hv_migrate() blocks (libvirt
 * connections are thread-safe). Also here: managed save (maintenance with
 * force), and reading/defining raw domain XML (HA restarts). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv.h"

typedef struct {
        const char *dest_uri;      /* libvirt URI of the destination, e.g. qemu+tcp://10.0.0.2/system */
        const char *migrate_uri;   /* where QEMU sends the data, e.g. tcp://10.0.0.2; NULL lets libvirt choose */
        bool shared_storage_known; /* every disk is on storage Armada knows is shared: adds VIR_MIGRATE_UNSAFE,
                                    * which libvirt 9 wants for a plain shared directory (DESIGN.md §9) */
        bool with_storage;         /* copy the disks too (VIR_MIGRATE_NON_SHARED_DISK) */
        bool auto_converge;        /* throttle the guest's vCPUs when memory does not converge */
        bool postcopy;             /* allow hv_migrate_start_postcopy() later */
        uint64_t bandwidth_mibs;   /* 0: unlimited */
} HvMigrateOptions;

/* The migrate URI for a destination libvirt URI: "tcp://<its host>" for a
 * remote URI, NULL (libvirt chooses) when the URI names no host. Pure;
 * malloc'd. IPv6 literals keep their brackets. */
char *hv_migrate_uri_for(const char *dest_uri);

/* The VIR_MIGRATE_* flags hv_migrate() uses for o: always LIVE, PEER2PEER,
 * PERSIST_DEST and UNDEFINE_SOURCE. Pure (exported for tests). */
unsigned long hv_migrate_flags(const HvMigrateOptions *o);

/* Live-migrates the domain uuid from c to o->dest_uri and blocks until it
 * has finished, failed or been aborted. On success the domain runs on the
 * destination, defined there, and is undefined on the source. On failure it
 * still runs on the source (libvirt rolls back). Returns 0, -ECANCELED when
 * hv_job_abort() stopped it, -ENOENT, -EINVAL (no dest_uri, not a UUID),
 * -EPERM (dest_uri fails hv_uri_check(dest_uri, true, ...)), or negative. */
int hv_migrate(HvConn *c, const char *uuid, const HvMigrateOptions *o);

typedef struct {
        bool active;               /* a job is running (progress calls) */
        uint64_t elapsed_ms;       /* time since the job started (total time when completed) */
        uint64_t downtime_ms;      /* completed: measured downtime; active: expected */
        uint64_t setup_ms;         /* completed: time before data started to move (0 unknown) */
        uint64_t data_total, data_processed, data_remaining;     /* bytes, memory + disks */
        uint64_t mem_total, mem_processed, mem_remaining;        /* bytes */
        uint64_t mem_dirty_rate;   /* pages per second (0 unknown) */
        uint64_t mem_iteration;    /* pre-copy passes over memory so far */
        uint64_t disk_total, disk_processed;
        bool postcopy;             /* post-copy phase reached (completed stats, when libvirt tells) */
        bool failed;               /* completed stats: the job failed or was cancelled ... */
        char error[256];           /* ... and libvirt's reason ("" when it gives none) */
} HvJobInfo;

/* The domain's running job (a migration on the source). ret->active is
 * false when there is none. 0, -ENOENT, or negative. */
int hv_job_info(HvConn *c, const char *uuid, HvJobInfo *ret);
/* The statistics of the domain's last completed job on this host
 * (VIR_DOMAIN_JOB_STATS_COMPLETED): on the destination after a migration,
 * the total time and the downtime; whether it failed (a backup's copy).
 * -ENODATA when libvirt has none. */
int hv_job_completed(HvConn *c, const char *uuid, HvJobInfo *ret);
/* Aborts the domain's running job (virDomainAbortJob). 0, -ENOENT, -EBUSY
 * when there is no job to abort, or negative. */
int hv_job_abort(HvConn *c, const char *uuid);
/* Switches a running migration started with postcopy to post-copy. */
int hv_migrate_start_postcopy(HvConn *c, const char *uuid);

/* Saves a running domain's memory to a managed save image and stops it;
 * the next hv_domain_start() resumes from it. 0, -ENOENT, -EBUSY, or
 * negative. */
int hv_domain_managed_save(HvConn *c, const char *uuid);

/* The domain's persistent definition (inactive XML, with secure fields
 * left out). 0 and a malloc'd string, -ENOENT, or negative. */
int hv_domain_xml_get(HvConn *c, const char *uuid, char **ret);
/* Defines a domain from XML exactly as given. 0 or negative. */
int hv_domain_define_xml(HvConn *c, const char *xml);
