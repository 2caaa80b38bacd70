/* libvirt and libxml2 objects freed at scope exit, and libxml2's one-time
 * set-up, for hv's own files (one copy instead of one per file). */
#pragma once

#ifndef HV_PRIV_ALLOW
#error "hv-cleanup.h is private to hv's own files (their meson target defines HV_PRIV_ALLOW); use the module's public header"
#endif

#include <libvirt/libvirt.h>
#include <libxml/tree.h>

#include "util/util.h"

static inline void vir_domainp(virDomainPtr *p) { if (*p) virDomainFree(*p); }
#define _cleanup_domain_ _cleanup_(vir_domainp)
static inline void vir_poolp(virStoragePoolPtr *p) { if (*p) virStoragePoolFree(*p); }
#define _cleanup_pool_ _cleanup_(vir_poolp)
static inline void vir_volp(virStorageVolPtr *p) { if (*p) virStorageVolFree(*p); }
#define _cleanup_vol_ _cleanup_(vir_volp)
static inline void vir_networkp(virNetworkPtr *p) { if (*p) virNetworkFree(*p); }
#define _cleanup_network_ _cleanup_(vir_networkp)
static inline void vir_ifacep(virInterfacePtr *p) { if (*p) virInterfaceFree(*p); }
#define _cleanup_iface_ _cleanup_(vir_ifacep)
static inline void vir_streamp(virStreamPtr *p) { if (*p) virStreamFree(*p); }
#define _cleanup_stream_ _cleanup_(vir_streamp)
static inline void vir_snapp(virDomainSnapshotPtr *p) { if (*p) virDomainSnapshotFree(*p); }
#define _cleanup_snap_ _cleanup_(vir_snapp)
static inline void xml_freedocp(xmlDoc **p) { if (*p) xmlFreeDoc(*p); }
#define _cleanup_xmldoc_ _cleanup_(xml_freedocp)
static inline void xml_freestrp(xmlChar **p) { if (*p) xmlFree(*p); }
#define _cleanup_xmlstr_ _cleanup_(xml_freestrp)

/* libxml2's parser, initialised once for every thread (hv-xml.c). */
void hv_xml_init(void);
/* libxml2 could not allocate: armada cannot go on. */
void hv_xml_oom(void) __attribute__((noreturn));
