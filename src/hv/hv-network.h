/* hv-network: libvirt virtual networks on a host (NAT, bridged to a host
 * bridge, isolated; a VLAN tag where the host's bridge can carry one) and
 * the network cards of domains (hotplugged live and into the definition).
 * Network XML is built with libxml2's tree API, which escapes every text.
 * Errors as in hv.h (hv_last_error()). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include "hv.h"

typedef struct {
        const char *name;          /* the libvirt network's name */
        const char *mode;          /* "nat", "bridge" or "isolated" */
        const char *bridge;        /* bridge: the host's bridge (e.g. "br0"); else NULL */
        unsigned vlan;             /* bridge: 802.1Q tag 1..4094, 0 for none */
        const char *subnet;        /* nat/isolated: "10.1.2.0/24" (the host gets .1, DHCP the rest); NULL: none */
} HvNetworkSpec;

/* Whether spec is well-formed: a name of [A-Za-z0-9][A-Za-z0-9._-]{0,62}; a
 * known mode; bridge given (a Linux interface name: 1..15 of [A-Za-z0-9._-])
 * exactly for mode bridge; vlan 0..4094 and only with mode bridge; subnet
 * an IPv4 network "A.B.C.D/P", P 8..30, with no host bits set, and not with
 * mode bridge. 0, or -EINVAL with the field to blame in *ret_field
 * ("name", "mode", "bridge", "vlan", "subnet") and a sentence in why. Pure. */
int hv_network_spec_check(const HvNetworkSpec *spec, const char **ret_field, char *why, size_t why_size);

/* How a host's bridge carries VLAN tags. */
typedef enum {
        HV_BRIDGE_LINUX,           /* a Linux bridge: libvirt cannot tag its ports */
        HV_BRIDGE_OVS,             /* an Open vSwitch bridge: <virtualport type='openvswitch'/> with <vlan> */
} HvBridgeKind;
/* "linux-bridge" or "openvswitch". */
const char *hv_bridge_kind_name(HvBridgeKind k);

/* Network XML for spec (checked with hv_network_spec_check); kind says how
 * a bridge-mode network attaches (ignored for the other modes). malloc'd,
 * or NULL with the error set. Pure. */
char *hv_network_xml_build(const HvNetworkSpec *spec, HvBridgeKind kind);

/* What kind of bridge the host's interface name is, asked through libvirt's
 * interface driver: 0 and *ret; -ENOENT when the host has no such
 * interface; -EOPNOTSUPP when the driver cannot tell (then a plain Linux
 * bridge is the only safe guess, without a VLAN). */
int hv_bridge_kind(HvConn *c, const char *bridge, HvBridgeKind *ret);

/* Makes the network of spec stand on the host: defined, started, started at
 * boot. A network of that name that exists already is left as it is
 * (started when it is not) and *ret_created is false. For a bridge network
 * the host's bridge is looked at first (hv_bridge_kind): a VLAN on a Linux
 * bridge, or on a bridge the host cannot describe, is refused (-EOPNOTSUPP;
 * without a VLAN such a bridge is taken as a Linux bridge)
 * with a sentence naming the mechanism; *ret_kind (may be NULL) says which
 * was used. A network it defined and could not start is undefined again. */
int hv_network_ensure(HvConn *c, const HvNetworkSpec *spec, bool *ret_created, HvBridgeKind *ret_kind);
/* Stops and undefines the network name. -ENOENT when there is none. */
int hv_network_remove(HvConn *c, const char *name);

typedef struct {
        char name[64];
        bool active;
        bool autostart;
        char bridge[64];           /* the bridge it uses ("" when libvirt names none) */
        char forward[16];          /* <forward mode>: "nat", "bridge", "route", ... or "" (isolated) */
} HvNetworkInfo;
/* Every network of the host (names longer than 63 bytes are left out), by
 * name. 0, *ret (malloc'd, never NULL) and *ret_n, or negative. */
int hv_network_list(HvConn *c, HvNetworkInfo **ret, size_t *ret_n);

/* ---- network cards of domains ---- */
/* Whether mac is a unicast MAC written as six pairs of hex digits with ':'
 * (lower case is how Armada stores it: out gets it so, 18 bytes). Pure. */
bool hv_mac_normalize(const char *mac, char out[18]);
/* A random locally administered MAC in QEMU's range 52:54:00:xx:xx:xx. */
void hv_mac_random(char out[18]);
/* Interface XML of a NIC on network with mac and model ("virtio", "e1000",
 * "rtl8139"). malloc'd, or NULL with the error set. Pure. */
char *hv_nic_xml_build(const char *network, const char *mac, const char *model);

/* Adds a NIC to the domain uuid: into its definition, and live when it
 * runs. *ret_live (may be NULL) says whether the running guest got it. */
int hv_domain_nic_attach(HvConn *c, const char *uuid, const char *network, const char *mac, const char *model,
                         bool *ret_live);
/* Removes the domain's NIC with mac (definition, and live when it runs).
 * -ENOENT when the domain has no such NIC. */
int hv_domain_nic_detach(HvConn *c, const char *uuid, const char *mac, bool *ret_live);
