/* hv-network: libvirt networks and the network cards of domains (see
 * hv-network.h). XML goes out through libxml2's tree API and comes back
 * through a reader that refuses DTDs and network access. */
#include "hv-network.h"
#include "hv-internal.h"
#include "hv-cleanup.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/tree.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>

static const char *const MODES[] = { "nat", "bridge", "isolated", NULL };
static const char *const NIC_MODELS[] = { "virtio", "e1000", "rtl8139", NULL };

static bool in_list(const char *s, const char *const *list) {
        for (size_t i = 0; s && list[i]; i++)
                if (streq(s, list[i]))
                        return true;
        return false;
}

/* A Linux interface name: 1..15 of [A-Za-z0-9._-], not starting with '-'. */
static bool ifname_ok(const char *s) {
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > 15 || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char) s[i]) && !strchr("._-", s[i]))
                        return false;
        return true;
}

/* "A.B.C.D/P" into the network address (host order) and prefix. */
static bool subnet_parse(const char *s, uint32_t *ret_net, unsigned *ret_prefix) {
        char buf[32];
        const char *slash = s ? strchr(s, '/') : NULL;
        if (!slash || (size_t) (slash - s) >= sizeof buf)
                return false;
        memcpy(buf, s, (size_t) (slash - s));
        buf[slash - s] = 0;
        struct in_addr a;
        if (inet_pton(AF_INET, buf, &a) != 1)
                return false;
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (*end || end == slash + 1 || p < 0 || p > 32 || !isdigit((unsigned char) slash[1]))
                return false;
        *ret_net = ntohl(a.s_addr);
        *ret_prefix = (unsigned) p;
        return true;
}

int hv_network_spec_check(const HvNetworkSpec *spec, const char **ret_field, char *why, size_t why_size) {
#define BAD(field, ...) do { *ret_field = field; snprintf(why, why_size, __VA_ARGS__); return -EINVAL; } while (0)
        if (!name_is_valid(spec->name))
                BAD("name", "A network's name is 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit.");
        if (!in_list(spec->mode, MODES))
                BAD("mode", "A network's mode is nat, bridge or isolated.");
        bool bridge = streq(spec->mode, "bridge");
        if (bridge && !spec->bridge)
                BAD("bridge", "A bridge network needs the host's bridge to attach to (e.g. br0).");
        if (!bridge && spec->bridge)
                BAD("bridge", "Only a bridge network names a host bridge; a %s network gets a bridge of its own.", spec->mode);
        if (spec->bridge && !ifname_ok(spec->bridge))
                BAD("bridge", "A bridge name is 1 to 15 letters, digits, '.', '_' or '-'.");
        if (spec->vlan > 4094)
                BAD("vlan", "A VLAN tag is 1 to 4094.");
        if (spec->vlan && !bridge)
                BAD("vlan", "A VLAN tag goes only with a bridge network (the host's bridge carries the tagged traffic).");
        if (spec->subnet) {
                uint32_t net;
                unsigned prefix;
                if (bridge)
                        BAD("subnet", "A bridge network takes its addresses from the network it is bridged to; give no subnet.");
                if (!subnet_parse(spec->subnet, &net, &prefix) || prefix < 8 || prefix > 30)
                        BAD("subnet", "A subnet is an IPv4 network such as 10.1.2.0/24, with a prefix of 8 to 30.");
                uint32_t mask = prefix ? ~0u << (32 - prefix) : 0;
                if (net & ~mask)
                        BAD("subnet", "A subnet's address has no host bits set (e.g. 10.1.2.0/24, not 10.1.2.5/24).");
        }
        return 0;
#undef BAD
}

const char *hv_bridge_kind_name(HvBridgeKind k) {
        return k == HV_BRIDGE_OVS ? "openvswitch" : "linux-bridge";
}

static xmlNodePtr add(xmlNodePtr parent, const char *name, const char *text) {
        return xmlNewTextChild(parent, NULL, BAD_CAST name, text ? BAD_CAST text : NULL);
}

static void set(xmlNodePtr n, const char *name, const char *value) {
        xmlNewProp(n, BAD_CAST name, BAD_CAST value);
}

static char *dump(xmlDocPtr doc) {
        xmlChar *mem = NULL;
        int len = 0;
        xmlDocDumpFormatMemoryEnc(doc, &mem, &len, "UTF-8", 1);
        char *s = xstrdup(mem ? (const char *) mem : "");
        xmlFree(mem);
        xmlFreeDoc(doc);
        return s;
}

static void ip4(uint32_t a, char out[INET_ADDRSTRLEN]) {
        struct in_addr x = { .s_addr = htonl(a) };
        inet_ntop(AF_INET, &x, out, INET_ADDRSTRLEN);
}

/* <ip address=net+1 netmask=...><dhcp><range start=net+2 end=broadcast-1/></dhcp></ip> */
static void add_subnet(xmlNodePtr net, const char *subnet) {
        uint32_t base;
        unsigned prefix;
        if (!subnet_parse(subnet, &base, &prefix))
                return;
        uint32_t mask = ~0u << (32 - prefix);
        char addr[INET_ADDRSTRLEN], nm[INET_ADDRSTRLEN], lo[INET_ADDRSTRLEN], hi[INET_ADDRSTRLEN];
        ip4(base + 1, addr);
        ip4(mask, nm);
        ip4(base + 2, lo);
        ip4((base | ~mask) - 1, hi);
        xmlNodePtr ip = add(net, "ip", NULL);
        set(ip, "address", addr);
        set(ip, "netmask", nm);
        xmlNodePtr range = add(add(ip, "dhcp", NULL), "range", NULL);
        set(range, "start", lo);
        set(range, "end", hi);
}

char *hv_network_xml_build(const HvNetworkSpec *spec, HvBridgeKind kind) {
        const char *field;
        char why[256];
        if (hv_network_spec_check(spec, &field, why, sizeof why) < 0) {
                hv_set_error("cannot build network XML: %s", why);
                return NULL;
        }
        xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
        xmlNodePtr net = xmlNewNode(NULL, BAD_CAST "network");
        xmlDocSetRootElement(doc, net);
        add(net, "name", spec->name);
        if (streq(spec->mode, "bridge")) {
                set(add(net, "forward", NULL), "mode", "bridge");
                set(add(net, "bridge", NULL), "name", spec->bridge);
                if (kind == HV_BRIDGE_OVS)
                        set(add(net, "virtualport", NULL), "type", "openvswitch");
                if (spec->vlan) {
                        char tag[16];
                        snprintf(tag, sizeof tag, "%u", spec->vlan);
                        set(add(add(net, "vlan", NULL), "tag", NULL), "id", tag);
                }
        } else {
                if (streq(spec->mode, "nat"))
                        set(add(net, "forward", NULL), "mode", "nat");
                if (spec->subnet)
                        add_subnet(net, spec->subnet);
        }
        return dump(doc);
}

/* ---- reading XML ---- */

/* Parses xml without network access, entity expansion or a DTD. */
static xmlDocPtr xml_read(const char *xml) {
        if (!xml || strlen(xml) > INT_MAX)
                return NULL;
        xmlDocPtr doc = xmlReadMemory(xml, (int) strlen(xml), NULL, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (doc && (doc->intSubset || doc->extSubset || !xmlDocGetRootElement(doc))) {
                xmlFreeDoc(doc);
                return NULL;
        }
        return doc;
}

/* The string value of XPath expr in xml into out ("" when none). */
static void xml_value(const char *xml, const char *expr, char *out, size_t size) {
        out[0] = 0;
        xmlDocPtr doc = xml_read(xml);
        if (!doc)
                return;
        xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
        xmlXPathObjectPtr o = ctx ? xmlXPathEvalExpression(BAD_CAST expr, ctx) : NULL;
        if (o) {
                xmlChar *s = xmlXPathCastToString(o);
                if (s)
                        snprintf(out, size, "%s", (const char *) s);
                xmlFree(s);
                xmlXPathFreeObject(o);
        }
        xmlXPathFreeContext(ctx);
        xmlFreeDoc(doc);
}

/* ---- bridges ---- */

static int bridge_kind_now(HvConn *c, const char *bridge, HvBridgeKind *ret) {
        HV_LEASE(c);
        if (!ifname_ok(bridge)) {
                hv_set_error("'%s' is not an interface name", bridge ? bridge : "");
                return -EINVAL;
        }
        _cleanup_iface_ virInterfacePtr i = virInterfaceLookupByName(hv_conn_virt(c), bridge);
        if (!i) {
                int code = hv_virt_code();
                if (code == VIR_ERR_NO_INTERFACE) {
                        hv_set_error("the host has no interface '%s'", bridge);
                        return -ENOENT;
                }
                if (code == VIR_ERR_NO_SUPPORT || code == VIR_ERR_OPERATION_UNSUPPORTED || code == VIR_ERR_NO_CONNECT) {
                        hv_set_error("the host's libvirt cannot describe its interfaces (no interface driver)");
                        return -EOPNOTSUPP;
                }
                return hv_virt_fail("cannot look up interface '%s'", bridge);
        }
        _cleanup_free_ char *xml = virInterfaceGetXMLDesc(i, 0);
        if (!xml)
                return hv_virt_fail("cannot read the definition of interface '%s'", bridge);
        char type[32];
        xml_value(xml, "string(/interface/@type)", type, sizeof type);
        /* libvirt's udev backend reports a Linux bridge as type 'bridge'; an
         * Open vSwitch bridge is an internal port without a bridge/ directory
         * in sysfs, which it reports as 'ethernet'. */
        if (streq(type, "bridge"))
                *ret = HV_BRIDGE_LINUX;
        else if (streq(type, "ethernet"))
                *ret = HV_BRIDGE_OVS;
        else {
                hv_set_error("interface '%s' of the host is a '%s' interface, not a bridge", bridge, type[0] ? type : "unknown");
                return -EINVAL;
        }
        return 0;
}

static int bridge_kind_body(HvConn *c, HvCall *a) {
        HvBridgeKind k = HV_BRIDGE_LINUX;
        int r = bridge_kind_now(c, a->s[0], &k);
        a->n[0] = (uint64_t) k;
        return r;
}

int hv_bridge_kind(HvConn *c, const char *bridge, HvBridgeKind *ret) {
        HvCall *a = hv_call_new(bridge_kind_body, "describing a host bridge", bridge, NULL, NULL, NULL);
        if (!hv_call(c, a, hv_deadlines.query_ms))
                return -ETIMEDOUT;
        int r = a->r;
        if (r == 0)
                *ret = (HvBridgeKind) a->n[0];
        hv_call_free(a);
        return r;
}

/* ---- networks ---- */

static int network_start(virNetworkPtr n, const char *name) {
        int active = virNetworkIsActive(n);
        if (active < 0)
                return hv_virt_fail("cannot read the state of network '%s'", name);
        if (!active && virNetworkCreate(n) < 0)
                return hv_virt_fail("cannot start network '%s'", name);
        int autostart = 0;
        if (virNetworkGetAutostart(n, &autostart) == 0 && !autostart && virNetworkSetAutostart(n, 1) < 0)
                return hv_virt_fail("cannot make network '%s' start at boot", name);
        return 0;
}

/* Which bridge kind a bridge network uses, or a refusal for its VLAN. */
static int bridge_for(HvConn *c, const HvNetworkSpec *spec, HvBridgeKind *ret) {
        int r = bridge_kind_now(c, spec->bridge, ret);
        if (r < 0 && !spec->vlan) {
                /* Without a tag any bridge will do, and libvirt checks that
                 * it exists when a guest starts on it: an interface driver
                 * that cannot see it (a network namespace) is no refusal. */
                *ret = HV_BRIDGE_LINUX;
                return 0;
        }
        if (r == -EOPNOTSUPP) {
                hv_set_error("cannot tag VLAN %u on bridge '%s': the host's libvirt cannot describe its interfaces, "
                             "so Armada cannot tell a Linux bridge from Open vSwitch", spec->vlan, spec->bridge);
                return r;
        }
        if (r < 0)
                return r;
        if (spec->vlan && *ret == HV_BRIDGE_LINUX) {
                hv_set_error("cannot tag VLAN %u on bridge '%s': it is a Linux bridge, and libvirt tags VLANs only on "
                             "Open vSwitch bridges; bridge to a VLAN interface instead (e.g. a bridge over %s.%u) "
                             "without a tag", spec->vlan, spec->bridge, spec->bridge, spec->vlan);
                return -EOPNOTSUPP;
        }
        return 0;
}

static int network_ensure_now(HvConn *c, const HvNetworkSpec *spec, bool *ret_created, HvBridgeKind *ret_kind) {
        HV_LEASE(c);
        HvBridgeKind kind = HV_BRIDGE_LINUX;
        *ret_created = false;
        _cleanup_network_ virNetworkPtr n = virNetworkLookupByName(hv_conn_virt(c), spec->name);
        if (!n && hv_virt_code() != VIR_ERR_NO_NETWORK)
                return hv_virt_fail("cannot look up network '%s'", spec->name);
        if (streq(spec->mode, "bridge")) {
                int r = bridge_for(c, spec, &kind);
                if (r < 0)
                        return r;
        }
        *ret_kind = kind;
        if (n)
                return network_start(n, spec->name);
        _cleanup_free_ char *xml = hv_network_xml_build(spec, kind);
        if (!xml)
                return -EINVAL;
        n = virNetworkDefineXML(hv_conn_virt(c), xml);
        if (!n)
                return hv_virt_fail("cannot define network '%s'", spec->name);
        int r = network_start(n, spec->name);
        if (r < 0) {
                /* leave nothing half-made behind */
                (void) virNetworkUndefine(n);
                return r;
        }
        *ret_created = true;
        return 0;
}

static int ensure_body(HvConn *c, HvCall *a) {
        HvNetworkSpec spec = { .name = a->s[0], .mode = a->s[1], .bridge = a->s[2], .subnet = a->s[3], .vlan = (unsigned) a->n[0] };
        HvBridgeKind kind = HV_BRIDGE_LINUX;
        int r = network_ensure_now(c, &spec, &a->flag, &kind);
        a->n[1] = (uint64_t) kind;
        return r;
}

int hv_network_ensure(HvConn *c, const HvNetworkSpec *spec, bool *ret_created, HvBridgeKind *ret_kind) {
        HvCall *a = hv_call_new(ensure_body, "setting up a network", spec->name, spec->mode, spec->bridge, spec->subnet);
        a->n[0] = spec->vlan;
        if (!hv_call(c, a, hv_deadlines.change_ms))
                return -ETIMEDOUT;
        int r = a->r;
        if (r == 0) {
                if (ret_created)
                        *ret_created = a->flag;
                if (ret_kind)
                        *ret_kind = (HvBridgeKind) a->n[1];
        }
        hv_call_free(a);
        return r;
}

static int remove_now(HvConn *c, const char *name) {
        HV_LEASE(c);
        _cleanup_network_ virNetworkPtr n = virNetworkLookupByName(hv_conn_virt(c), name);
        if (!n) {
                if (hv_virt_code() == VIR_ERR_NO_NETWORK) {
                        hv_set_error("the host has no network '%s'", name);
                        return -ENOENT;
                }
                return hv_virt_fail("cannot look up network '%s'", name);
        }
        int active = virNetworkIsActive(n);
        if (active > 0 && virNetworkDestroy(n) < 0)
                return hv_virt_fail("cannot stop network '%s'", name);
        if (virNetworkIsPersistent(n) > 0 && virNetworkUndefine(n) < 0)
                return hv_virt_fail("cannot undefine network '%s'", name);
        return 0;
}

static int remove_body(HvConn *c, HvCall *a) {
        return remove_now(c, a->s[0]);
}

int hv_network_remove(HvConn *c, const char *name) {
        return hv_call_code(c, hv_call_new(remove_body, "removing a network", name, NULL, NULL, NULL), hv_deadlines.change_ms);
}

static int list_now(HvConn *c, HvNetworkInfo **ret, size_t *ret_n) {
        HV_LEASE(c);
        virNetworkPtr *nets = NULL;
        int n = virConnectListAllNetworks(hv_conn_virt(c), &nets, 0);
        if (n < 0)
                return hv_virt_fail("cannot list the host's networks");
        HvNetworkInfo *out = xcalloc((size_t) n + 1, sizeof *out);
        size_t k = 0;
        for (int i = 0; i < n; i++) {
                const char *name = virNetworkGetName(nets[i]);
                if (name && strlen(name) < sizeof out[k].name) {
                        HvNetworkInfo *o = &out[k++];
                        snprintf(o->name, sizeof o->name, "%s", name);
                        o->active = virNetworkIsActive(nets[i]) > 0;
                        int autostart = 0;
                        o->autostart = virNetworkGetAutostart(nets[i], &autostart) == 0 && autostart;
                        _cleanup_free_ char *xml = virNetworkGetXMLDesc(nets[i], 0);
                        xml_value(xml, "string(/network/bridge/@name)", o->bridge, sizeof o->bridge);
                        xml_value(xml, "string(/network/forward/@mode)", o->forward, sizeof o->forward);
                        if (!o->forward[0] && xml && strstr(xml, "<forward"))
                                snprintf(o->forward, sizeof o->forward, "nat"); /* <forward/> means NAT */
                }
                virNetworkFree(nets[i]);
        }
        free(nets);
        *ret = out;
        *ret_n = k;
        return 0;
}

static int list_body(HvConn *c, HvCall *a) {
        HvNetworkInfo *list = NULL;
        int r = list_now(c, &list, &a->ret_n);
        a->ret.ptr = list;
        return r;
}

int hv_network_list(HvConn *c, HvNetworkInfo **ret, size_t *ret_n) {
        return HV_CALL_TAKE(c, hv_call_new(list_body, "listing networks", NULL, NULL, NULL, NULL), hv_deadlines.query_ms, ret, ret_n);
}

/* ---- NICs ---- */

bool hv_mac_normalize(const char *mac, char out[18]) {
        if (!mac || strlen(mac) != 17)
                return false;
        for (size_t i = 0; i < 17; i++) {
                if (i % 3 == 2 ? mac[i] != ':' : !isxdigit((unsigned char) mac[i]))
                        return false;
                out[i] = (char) tolower((unsigned char) mac[i]);
        }
        out[17] = 0;
        unsigned first = (unsigned) strtoul(out, NULL, 16);
        if (first & 1)  /* a multicast address cannot be a NIC's */
                return false;
        return !streq(out, "00:00:00:00:00:00");
}

void hv_mac_random(char out[18]) {
        uint8_t b[3] = { 0 };
        if (random_bytes(b, sizeof b) < 0) {
                /* random_bytes only fails without getrandom(); the MAC is
                 * checked for uniqueness by the caller anyway */
                static unsigned n;
                b[0] = (uint8_t) ++n, b[1] = (uint8_t) (n >> 8), b[2] = 0xa5;
        }
        snprintf(out, 18, "52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]);
}

char *hv_nic_xml_build(const char *network, const char *mac, const char *model) {
        char norm[18];
        if (!name_is_valid(network) || !hv_mac_normalize(mac, norm) || !in_list(model, NIC_MODELS)) {
                hv_set_error("cannot build a NIC: the network, MAC or model is not valid");
                return NULL;
        }
        xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
        xmlNodePtr nic = xmlNewNode(NULL, BAD_CAST "interface");
        xmlDocSetRootElement(doc, nic);
        set(nic, "type", "network");
        set(add(nic, "mac", NULL), "address", norm);
        set(add(nic, "source", NULL), "network", network);
        set(add(nic, "model", NULL), "type", model);
        return dump(doc);
}

/* The fallback for drivers without device hotplug (libvirt's test driver)
 * on a domain that does not run: the definition rewritten with the NIC
 * added (add_xml) or the one with mac removed, and defined again. Read
 * with VIR_DOMAIN_XML_SECURE so that a VNC password survives. */
static int redefine_nic(HvConn *c, virDomainPtr d, const char *add_xml, const char *remove_mac) {
        _cleanup_free_ char *xml = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
        xmlDocPtr doc = xml_read(xml);
        if (!doc)
                return hv_virt_fail("cannot read the definition of the domain");
        xmlNodePtr devices = NULL;
        for (xmlNodePtr n = xmlDocGetRootElement(doc)->children; n; n = n->next)
                if (n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST "devices"))
                        devices = n;
        int r = 0;
        if (!devices) {
                hv_set_error("the domain's definition has no devices");
                r = -EINVAL;
        } else if (add_xml) {
                xmlDocPtr nic = xml_read(add_xml);
                if (!nic)
                        r = -EINVAL;
                else {
                        xmlAddChild(devices, xmlDocCopyNode(xmlDocGetRootElement(nic), doc, 1));
                        xmlFreeDoc(nic);
                }
        } else {
                xmlNodePtr found = NULL;
                for (xmlNodePtr n = devices->children; n && !found; n = n->next) {
                        if (n->type != XML_ELEMENT_NODE || !xmlStrEqual(n->name, BAD_CAST "interface"))
                                continue;
                        for (xmlNodePtr m = n->children; m; m = m->next) {
                                if (m->type != XML_ELEMENT_NODE || !xmlStrEqual(m->name, BAD_CAST "mac"))
                                        continue;
                                xmlChar *addr = xmlGetProp(m, BAD_CAST "address");
                                if (addr && strcasecmp((const char *) addr, remove_mac) == 0)
                                        found = n;
                                xmlFree(addr);
                        }
                }
                if (!found) {
                        hv_set_error("the domain has no network card with MAC %s", remove_mac);
                        r = -ENOENT;
                } else {
                        xmlUnlinkNode(found);
                        xmlFreeNode(found);
                }
        }
        if (r < 0) {
                xmlFreeDoc(doc);
                return r;
        }
        xmlChar *mem = NULL;
        int len = 0;
        xmlDocDumpMemory(doc, &mem, &len);
        xmlFreeDoc(doc);
        virDomainPtr nd = mem ? virDomainDefineXML(hv_conn_virt(c), (const char *) mem) : NULL;
        xmlFree(mem);
        if (!nd)
                return hv_virt_fail("cannot define the domain with its new network cards");
        virDomainFree(nd);
        return 0;
}

static bool unsupported(void) {
        int code = hv_virt_code();
        return code == VIR_ERR_NO_SUPPORT || code == VIR_ERR_OPERATION_UNSUPPORTED;
}

/* AFFECT_CONFIG always (a transient domain has none: then live only), and
 * AFFECT_LIVE when the domain runs. */
static int nic_flags(virDomainPtr d, bool *ret_live) {
        int active = virDomainIsActive(d), persistent = virDomainIsPersistent(d);
        if (active < 0 || persistent < 0)
                return -1;
        unsigned flags = 0;
        if (persistent)
                flags |= VIR_DOMAIN_AFFECT_CONFIG;
        if (active)
                flags |= VIR_DOMAIN_AFFECT_LIVE;
        *ret_live = active > 0;
        return (int) flags;
}

static int nic_attach_now(HvConn *c, const char *uuid, const char *network, const char *mac, const char *model, bool *ret_live) {
        HV_LEASE(c);
        _cleanup_free_ char *xml = hv_nic_xml_build(network, mac, model);
        if (!xml)
                return -EINVAL;
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        int flags = nic_flags(d, ret_live);
        if (flags < 0)
                return hv_virt_fail("cannot read the state of domain '%s'", uuid);
        if (virDomainAttachDeviceFlags(d, xml, (unsigned) flags) < 0) {
                if (unsupported() && !*ret_live && (flags & VIR_DOMAIN_AFFECT_CONFIG))
                        return redefine_nic(c, d, xml, NULL);
                return hv_virt_fail("cannot add a network card on network '%s'", network);
        }
        return 0;
}

static int nic_attach_body(HvConn *c, HvCall *a) {
        return nic_attach_now(c, a->s[0], a->s[1], a->s[2], a->s[3], &a->flag);
}

int hv_domain_nic_attach(HvConn *c, const char *uuid, const char *network, const char *mac, const char *model, bool *ret_live) {
        HvCall *a = hv_call_new(nic_attach_body, "adding a network card", uuid, network, mac, model);
        if (!hv_call(c, a, hv_deadlines.change_ms))
                return -ETIMEDOUT;
        int r = a->r;
        if (r == 0 && ret_live)
                *ret_live = a->flag;
        hv_call_free(a);
        return r;
}

/* The <interface> of the domain's XML (live when running) whose MAC is mac,
 * serialised, or NULL. */
static char *nic_of(virDomainPtr d, const char *mac, unsigned xml_flags) {
        _cleanup_free_ char *xml = virDomainGetXMLDesc(d, xml_flags);
        xmlDocPtr doc = xml_read(xml);
        if (!doc)
                return NULL;
        char *found = NULL;
        xmlNodePtr devices = NULL;
        for (xmlNodePtr n = xmlDocGetRootElement(doc)->children; n; n = n->next)
                if (n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST "devices"))
                        devices = n;
        for (xmlNodePtr n = devices ? devices->children : NULL; n && !found; n = n->next) {
                if (n->type != XML_ELEMENT_NODE || !xmlStrEqual(n->name, BAD_CAST "interface"))
                        continue;
                for (xmlNodePtr m = n->children; m; m = m->next) {
                        if (m->type != XML_ELEMENT_NODE || !xmlStrEqual(m->name, BAD_CAST "mac"))
                                continue;
                        xmlChar *addr = xmlGetProp(m, BAD_CAST "address");
                        if (addr && strcasecmp((const char *) addr, mac) == 0) {
                                xmlBufferPtr buf = xmlBufferCreate();
                                xmlNodeDump(buf, doc, n, 0, 0);
                                found = xstrdup((const char *) xmlBufferContent(buf));
                                xmlBufferFree(buf);
                        }
                        xmlFree(addr);
                }
        }
        xmlFreeDoc(doc);
        return found;
}

static int nic_detach_now(HvConn *c, const char *uuid, const char *mac, bool *ret_live) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        int flags = nic_flags(d, ret_live);
        if (flags < 0)
                return hv_virt_fail("cannot read the state of domain '%s'", uuid);
        /* Detach by the device as the domain has it, so libvirt matches it. */
        _cleanup_free_ char *xml = nic_of(d, mac, (flags & VIR_DOMAIN_AFFECT_CONFIG) ? VIR_DOMAIN_XML_INACTIVE : 0);
        if (!xml && *ret_live) {
                /* defined without it, running with it: live only */
                xml = nic_of(d, mac, 0);
                flags = VIR_DOMAIN_AFFECT_LIVE;
        }
        if (!xml) {
                hv_set_error("the domain has no network card with MAC %s", mac);
                return -ENOENT;
        }
        if (virDomainDetachDeviceFlags(d, xml, (unsigned) flags) < 0) {
                if (unsupported() && !*ret_live && (flags & VIR_DOMAIN_AFFECT_CONFIG))
                        return redefine_nic(c, d, NULL, mac);
                return hv_virt_fail("cannot remove the network card with MAC %s", mac);
        }
        return 0;
}

static int nic_detach_body(HvConn *c, HvCall *a) {
        return nic_detach_now(c, a->s[0], a->s[1], &a->flag);
}

int hv_domain_nic_detach(HvConn *c, const char *uuid, const char *mac, bool *ret_live) {
        HvCall *a = hv_call_new(nic_detach_body, "removing a network card", uuid, mac, NULL, NULL);
        if (!hv_call(c, a, hv_deadlines.change_ms))
                return -ETIMEDOUT;
        int r = a->r;
        if (r == 0 && ret_live)
                *ret_live = a->flag;
        hv_call_free(a);
        return r;
}
