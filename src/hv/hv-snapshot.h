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
 * shut off, so a revert deletes them first. 0 and *ret_n, or negative. */
int hv_snapshot_checkpoints(HvConn *c, const char *uuid, size_t *ret_n);
/* Deletes snapshot name of domain uuid (its children move to its parent).
 * 0, -ENOENT or negative. */
int hv_snapshot_delete(HvConn *c, const char *uuid, const char *name);

/* ---- moving the metadata (migration, failover) ----
 * libvirt keeps a snapshot's metadata (its XML: parent, state, the domain
 * definition of then) beside the domain, not in the image. It refuses to
 * migrate a domain that has any, and a host that never had it does not know
 * the snapshots its image holds. The way libvirt documents: keep each
 * snapshot's XML (secure fields in), delete the metadata only, and redefine
 * it where the domain is (VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE). */
typedef struct {
        char name[HV_SNAPSHOT_NAME_MAX + 1];
        int64_t created;
        bool current;
        char *xml;                              /* malloc'd, secure fields included */
} HvSnapshotDef;

/* Frees defs[n] and their XML. */
void hv_snapshot_defs_free(HvSnapshotDef *defs, size_t n);
/* The XML of every snapshot of domain uuid, parents before children
 * (VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL). 0 and a malloc'd array (never
 * NULL) of *ret_n, or negative. */
int hv_snapshot_defs(HvConn *c, const char *uuid, HvSnapshotDef **ret, size_t *ret_n);
/* Deletes the metadata of snapshots defs[n] of domain uuid, children first
 * (VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY): the internal snapshots stay
 * in the images. 0, or negative at the first failure (the ones before it
 * are gone: redefine them). */
int hv_snapshot_forget(HvConn *c, const char *uuid, const HvSnapshotDef *defs, size_t n);
/* Redefines one snapshot of domain uuid from its xml (hv_snapshot_defs),
 * making it the current one when current is true. Its parent must be there
 * already. 0 or negative (libvirt's reason in hv_last_error()). */
int hv_snapshot_redefine(HvConn *c, const char *uuid, const char *xml, bool current);

/* Redefines defs[n] (hv_snapshot_defs, parents first) on domain uuid, the
 * current one current again; one that exists already is left alone. 0, or
 * the first failure (the rest are still tried, as far as their parents
 * allow). */
int hv_snapshot_put_back(HvConn *c, const char *uuid, const HvSnapshotDef *defs, size_t n);

/* Deletes every checkpoint of domain uuid, children first, with the dirty
 * bitmaps they stand for (what a revert needs gone). 0 and how many in
 * *ret_n, or negative (the ones before the failure are gone). */
int hv_snapshot_checkpoints_drop(HvConn *c, const char *uuid, size_t *ret_n);
