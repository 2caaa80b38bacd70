/* hv-pool: a host's storage pools (directory, NFS, iSCSI, LVM volume
 * group) and the volumes in them, with their used and free space. Pool XML
 * is built with libxml2's tree API, which escapes every text. Errors as in
 * hv.h (hv_last_error()). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include "hv.h"

typedef struct {
        const char *name;          /* the pool's name on the host */
        const char *type;          /* "dir", "netfs", "iscsi" or "logical" */
        const char *path;          /* dir, netfs: the directory on the host (absolute); else NULL */
        const char *source_host;   /* netfs, iscsi: the server (a host name or address) */
        const char *source_path;   /* netfs: the exported directory ("/export/vms") */
        const char *source_name;   /* iscsi: the target's IQN; logical: the volume group */
} HvPoolSpec;

/* Whether spec is well-formed for its type: a name of
 * [A-Za-z0-9][A-Za-z0-9._-]{0,62}; the fields its type needs, and no other;
 * paths absolute, without "..", control characters or quotes; a server of
 * host-name or address characters. 0, or -EINVAL with the field to blame in
 * *ret_field ("name", "type", "path", "source_host", "source_path",
 * "source_name") and a sentence in why. Pure. */
int hv_pool_spec_check(const HvPoolSpec *spec, const char **ret_field, char *why, size_t why_size);
/* Pool XML for spec (checked). malloc'd, or NULL with the error set. Pure. */
char *hv_pool_xml_build(const HvPoolSpec *spec);

/* Defines the pool, builds it where that makes a directory (dir, netfs),
 * starts it and makes it start at boot. -EEXIST when the host has a pool
 * of that name; a pool it defined and could not start is undefined again. */
int hv_pool_add(HvConn *c, const HvPoolSpec *spec);
/* Stops and undefines a pool (its data stays: nothing is deleted).
 * -ENOENT when there is none. */
int hv_pool_remove(HvConn *c, const char *name);

typedef struct {
        char name[64];
        char type[16];
        bool active;
        char path[512];            /* its target path ("" when none) */
        uint64_t capacity, allocation, available;   /* bytes (0 while inactive) */
        unsigned n_volumes;        /* while active */
} HvPoolInfo;
/* Every pool of the host, by name (names longer than 63 bytes are left
 * out). 0, *ret (malloc'd, never NULL), *ret_n; or negative. */
int hv_pool_list(HvConn *c, HvPoolInfo **ret, size_t *ret_n);

typedef struct {
        char name[256];
        char path[1024];
        char format[16];           /* "qcow2", "raw", ... ("" when the pool does not say) */
        uint64_t capacity, allocation;
} HvVolumeInfo;
/* The volumes of an active pool, by name. -ENOENT when there is no such
 * pool; -EBUSY when it is not active. */
int hv_pool_volumes(HvConn *c, const char *pool, HvVolumeInfo **ret, size_t *ret_n);
/* Deletes volume vol of pool. -ENOENT when there is none. */
int hv_pool_volume_delete(HvConn *c, const char *pool, const char *vol);
