/* hv-snapshot: snapshots of domains (libvirt's virDomainSnapshot*), the
 * internal qcow2 kind: the disks' state lives inside each qcow2 image, and
 * for a running domain the memory too (QEMU's savevm), so a snapshot needs
 * no file of its own and travels with the image. Errors as in hv.h
 * (hv_last_error()); -EMEDIUMTYPE when a disk cannot hold an internal
 * snapshot (not qcow2), -ENOENT for no such domain or snapshot. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "hv.h"

#define HV_SNAPSHOT_NAME_MAX 64
#define HV_SNAPSHOT_DESCRIPTION_MAX 1024

typedef struct {
        char name[HV_SNAPSHOT_NAME_MAX + 1];
        char parent[HV_SNAPSHOT_NAME_MAX + 1];  /* "" for a root */
        int64_t created;                        /* creationTime, seconds since the epoch; 0 unknown */
        char state[16];                         /* the domain's state when taken: "running", "shutoff", ... */
        bool has_memory;                        /* reverting brings the running domain back */
        bool current;                           /* the domain's current snapshot */
        char description[HV_SNAPSHOT_DESCRIPTION_MAX + 1];
} HvSnapshot;

/* <domainsnapshot> XML for a new internal snapshot named name (description
 * may be NULL): with the memory (<memory snapshot='internal'/>) or without
 * (snapshot='no'), every writable disk of disks[n] internal and every CD-ROM
 * left out (snapshot='no'). Pure; user text is escaped. NULL with
 * hv_last_error() set when name is empty or longer than
 * HV_SNAPSHOT_NAME_MAX, or a writable disk is not qcow2 (the error names
 * its target; the caller refuses before that, this is the last guard).
 * malloc'd. */
char *hv_snapshot_xml_build(const char *name, const char *description, bool memory, const HvDisk *disks, size_t n);
/* Parses one snapshot's XML (virDomainSnapshotGetXMLDesc) into *ret
 * (current left false). 0, or -EINVAL (not well-formed, a DTD, no name, a
 * field too long). Pure. */
int hv_snapshot_xml_parse(const char *xml, HvSnapshot *ret);

/* The snapshots of domain uuid, oldest first. 0 and a malloc'd array (never
 * NULL) of *ret_n, or negative. */
int hv_snapshot_list(HvConn *c, const char *uuid, HvSnapshot **ret, size_t *ret_n);
/* Takes snapshot xml (hv_snapshot_xml_build) of domain uuid. 0, -EEXIST
 * when the name is taken, or negative. */
int hv_snapshot_create(HvConn *c, const char *uuid, const char *xml);
/* Reverts domain uuid to snapshot name: a snapshot with memory leaves the
 * domain running from that moment (when running is true, else paused), one
 * without leaves it shut off. 0, -ENOENT, or negative. */
int hv_snapshot_revert(HvConn *c, const char *uuid, const char *name, bool running);
/* How many checkpoints (libvirt's markers of persistent dirty bitmaps, what
 * incremental backups leave) domain uuid has. QEMU refuses to load an
 * internal snapshot into a disk that carries dirty bitmaps ("Device has
 * active dirty bitmaps"), and a running domain's failed revert leaves it
 * shut off, so a revert asks first. 0 and *ret_n, or negative. */
int hv_snapshot_checkpoints(HvConn *c, const char *uuid, size_t *ret_n);
/* Deletes snapshot name of domain uuid (its children move to its parent).
 * 0, -ENOENT or negative. */
int hv_snapshot_delete(HvConn *c, const char *uuid, const char *name);
