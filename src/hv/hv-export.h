/* hv-export: what exporting, importing and cloning a VM read of a domain
 * that hv.h does not already give: its network cards. Pure functions over
 * domain XML (no libvirt call). Errors as in hv.h. */
#pragma once

#include <stddef.h>
#include "hv.h"

#define HV_MAX_NICS 8
typedef struct {
        char type[16];        /* "network", "bridge", "user", "direct", ... */
        char source[64];      /* the network's or bridge's name, "" for none */
        char mac[18];         /* "52:54:00:..", "" when the XML has none */
        char model[16];       /* "virtio", "e1000", ... "" when none */
} HvNic;

/* The <interface> elements of domain XML in order, at most HV_MAX_NICS
 * (the rest are left out). Parsed without network access, entities or a
 * DTD (refused). 0 and *ret_n, or -EINVAL with hv_last_error() set. */
int hv_domain_nics(const char *xml, HvNic ret[HV_MAX_NICS], size_t *ret_n);

/* The guest-visible capacity in bytes of the host's volume at path (the
 * source of a linked clone's overlay). 0 and *ret, -ENOENT when no pool
 * holds it, or negative. */
int hv_volume_capacity(HvConn *c, const char *path, uint64_t *ret);

/* Converts the file at src_path, which the host sees (hv_volume_visible()),
 * into a new qcow2 volume vol_name of pool on the host itself
 * (virStorageVolCreateXMLFrom: libvirt runs qemu-img there): one pass over
 * the data, nothing streamed. Only when libvirt reads the source as
 * src_format ("qcow2", "vmdk" or "vpc"; its own probe of the file must agree
 * with the caller's, or it is -EMEDIUMTYPE and nothing is made). 0 and the
 * new volume's path (malloc'd), or negative. */
int hv_volume_convert_from(HvConn *c, const char *pool, const char *vol_name, const char *src_path, const char *src_format,
                           char **ret_path);
