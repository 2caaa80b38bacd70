/* The pure half of hv: libvirt XML built with libxml2's tree API (so every
 * user string is escaped by the serializer, never pasted into markup) and
 * read back with a parser that refuses network access, DTDs and entities.
 * Nothing here talks to libvirt. */
#include "hv.h"
#include "hv-internal.h"
#include "hv-cleanup.h"
#include "hv-clone.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlstring.h>

/* Upper bounds that only a typo reaches; libvirt and KVM refuse more anyway. */
#define HV_MAX_VCPUS 4096u
#define HV_MAX_MEMORY_MIB (UINT64_C(1) << 32) /* 4 PiB */

void hv_xml_oom(void) {
        fputs("armada: out of memory\n", stderr);
        abort();
}

/* libxml2 wants its one-time set-up done before threads race to it; the
 * pure functions here can be called before hv_init(). */
static pthread_once_t xml_once = PTHREAD_ONCE_INIT;
void hv_xml_init(void) {
        pthread_once(&xml_once, xmlInitParser);
}

/* ---- building ---- */

static xmlNode *add(xmlNode *parent, const char *name, const char *text) {
        /* xmlNewTextChild stores text literally; the serializer escapes it. */
        xmlNode *n = xmlNewTextChild(parent, NULL, BAD_CAST name, BAD_CAST text);
        if (!n)
                hv_xml_oom();
        return n;
}

static void set(xmlNode *n, const char *name, const char *value) {
        /* xmlNewProp (unlike xmlNewDocProp) keeps '&' literal, too. */
        if (!xmlNewProp(n, BAD_CAST name, BAD_CAST value))
                hv_xml_oom();
}

static xmlNode *new_root(xmlDoc **ret_doc, const char *name) {
        hv_xml_init();
        xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
        xmlNode *root = doc ? xmlNewNode(NULL, BAD_CAST name) : NULL;
        if (!root)
                hv_xml_oom();
        xmlDocSetRootElement(doc, root);
        *ret_doc = doc;
        return root;
}

/* The element alone, indented by two, with a final newline: the shape
 * virsh dumpxml shows and the golden files hold. */
static char *dump(xmlDoc *doc, xmlNode *root) {
        xmlBuffer *buf = xmlBufferCreate();
        if (!buf)
                hv_xml_oom();
        if (xmlNodeDump(buf, doc, root, 0, 1) < 0)
                hv_xml_oom();
        char *s = xasprintf("%s\n", (const char *) xmlBufferContent(buf));
        xmlBufferFree(buf);
        return s;
}

/* UTF-8 without control characters (allow_newlines lets \t \n \r through,
 * for free text). libxml2 would otherwise write markup no parser accepts. */
static bool text_ok(const char *s, bool allow_newlines) {
        if (!xmlCheckUTF8((const unsigned char *) s))
                return false;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p >= 0x20 && *p != 0x7f)
                        continue;
                if (allow_newlines && (*p == '\t' || *p == '\n' || *p == '\r'))
                        continue;
                return false;
        }
        return true;
}

static bool fixed_str_ok(const char *s, size_t size) {
        return memchr(s, 0, size) != NULL;
}

/* vdX → virtio, sdX → sata, hdX → ide; X is one to three letters. */
static const char *target_bus(const char *target) {
        size_t n = strlen(target);
        if (n < 3 || n > 5)
                return NULL;
        for (size_t i = 2; i < n; i++)
                if (target[i] < 'a' || target[i] > 'z')
                        return NULL;
        if (strncmp(target, "vd", 2) == 0)
                return "virtio";
        if (strncmp(target, "sd", 2) == 0)
                return "sata";
        if (strncmp(target, "hd", 2) == 0)
                return "ide";
        return NULL;
}

static const char *disk_format(const HvDisk *d) {
        if (d->format[0] == 0 && d->cdrom)
                return "raw";
        return d->format;
}

static int spec_validate(const HvDomainSpec *spec) {
        if (!spec) {
                hv_set_error("cannot build domain XML without a VM specification");
                return -EINVAL;
        }
        if (!spec->name || !spec->name[0]) {
                hv_set_error("cannot build domain XML for a VM without a name");
                return -EINVAL;
        }
        if (strlen(spec->name) >= sizeof(((HvDomainInfo *) 0)->name) || !text_ok(spec->name, false)) {
                hv_set_error("cannot build domain XML: the VM name is longer than 255 bytes, "
                             "not UTF-8 or contains control characters");
                return -EINVAL;
        }
        const char *name = spec->name;
        if (spec->uuid && !uuid_is_valid(spec->uuid)) {
                hv_set_error("cannot build domain XML for VM '%s': '%s' is not a UUID", name,
                             text_ok(spec->uuid, false) ? spec->uuid : "?");
                return -EINVAL;
        }
        if (!spec->domain_type ||
            !(streq(spec->domain_type, "kvm") || streq(spec->domain_type, "qemu") ||
              streq(spec->domain_type, "test"))) {
                hv_set_error("cannot build domain XML for VM '%s': the domain type must be "
                             "'kvm', 'qemu' or 'test'", name);
                return -EINVAL;
        }
        if (spec->vcpus == 0 || spec->vcpus > HV_MAX_VCPUS) {
                hv_set_error("cannot build domain XML for VM '%s': it asks for %u virtual CPUs, "
                             "but it needs between 1 and %u", name, spec->vcpus, HV_MAX_VCPUS);
                return -EINVAL;
        }
        if (spec->memory_mib == 0 || spec->memory_mib > HV_MAX_MEMORY_MIB) {
                hv_set_error("cannot build domain XML for VM '%s': it asks for %" PRIu64
                             " MiB of memory, but it needs between 1 and %" PRIu64 " MiB",
                             name, spec->memory_mib, HV_MAX_MEMORY_MIB);
                return -EINVAL;
        }
        if (spec->description && !text_ok(spec->description, true)) {
                hv_set_error("cannot build domain XML for VM '%s': its description is not UTF-8 "
                             "or contains control characters", name);
                return -EINVAL;
        }
        if (spec->network && (!spec->network[0] || !text_ok(spec->network, false))) {
                hv_set_error("cannot build domain XML for VM '%s': its network name is empty, "
                             "not UTF-8 or contains control characters", name);
                return -EINVAL;
        }
        if (spec->n_more_nics > HV_SPEC_MORE_NICS || (spec->n_more_nics > 0 && !spec->network)) {
                hv_set_error("cannot build domain XML for VM '%s': it has more network cards than %d, or further ones"
                             " without a first", name, HV_SPEC_MORE_NICS + 1);
                return -EINVAL;
        }
        for (size_t i = 0; i < spec->n_more_nics; i++)
                if (!spec->more_networks[i] || !spec->more_networks[i][0] || !text_ok(spec->more_networks[i], false)) {
                        hv_set_error("cannot build domain XML for VM '%s': the network name of its network card %zu is"
                                     " empty, not UTF-8 or contains control characters", name, i + 2);
                        return -EINVAL;
                }
        if (spec->installation_id && !uuid_is_valid(spec->installation_id)) {
                hv_set_error("cannot build domain XML for VM '%s': the installation id is not a UUID", name);
                return -EINVAL;
        }
        if (spec->n_disks > HV_MAX_DISKS) {
                hv_set_error("cannot build domain XML for VM '%s': it has %zu disks, but at most "
                             "%d are supported", name, spec->n_disks, HV_MAX_DISKS);
                return -EINVAL;
        }
        for (size_t i = 0; i < spec->n_disks; i++) {
                const HvDisk *d = &spec->disks[i];
                if (!fixed_str_ok(d->path, sizeof d->path) || !fixed_str_ok(d->format, sizeof d->format) ||
                    !fixed_str_ok(d->target, sizeof d->target)) {
                        hv_set_error("cannot build domain XML for VM '%s': disk %zu has a field "
                                     "without its terminating NUL", name, i + 1);
                        return -EINVAL;
                }
                const char *bus = target_bus(d->target);
                if (!bus) {
                        hv_set_error("cannot build domain XML for VM '%s': disk %zu has target '%s', "
                                     "but a target is vd, sd or hd followed by one to three "
                                     "letters (e.g. 'vda')", name, i + 1,
                                     text_ok(d->target, false) ? d->target : "?");
                        return -EINVAL;
                }
                if (d->cdrom && streq(bus, "virtio")) {
                        hv_set_error("cannot build domain XML for VM '%s': CD-ROM '%s' cannot be "
                                     "on the virtio bus; give it an sdX or hdX target",
                                     name, d->target);
                        return -EINVAL;
                }
                const char *format = disk_format(d);
                if (!streq(format, "qcow2") && !streq(format, "raw")) {
                        hv_set_error("cannot build domain XML for VM '%s': disk '%s' has format "
                                     "'%s', but the format must be 'qcow2' or 'raw'", name,
                                     d->target, text_ok(format, false) ? format : "?");
                        return -EINVAL;
                }
                if ((!d->cdrom && !d->path[0]) || !text_ok(d->path, false)) {
                        hv_set_error("cannot build domain XML for VM '%s': disk '%s' has an empty "
                                     "path, or one that is not UTF-8 or contains control "
                                     "characters", name, d->target);
                        return -EINVAL;
                }
                for (size_t j = 0; j < i; j++)
                        if (streq(spec->disks[j].target, d->target)) {
                                hv_set_error("cannot build domain XML for VM '%s': two disks "
                                             "have target '%s'", name, d->target);
                                return -EINVAL;
                        }
        }
        return 0;
}

/* The Armada marker under <metadata> (HV_ARMADA_XMLNS). libvirt keeps one
 * element per namespace there and hands it back as written. */
static void add_marker(xmlNode *meta, const HvDomainSpec *spec) {
        xmlNode *mark = xmlNewChild(meta, NULL, BAD_CAST "vm", NULL);
        xmlNs *ns = mark ? xmlNewNs(mark, BAD_CAST HV_ARMADA_XMLNS, BAD_CAST HV_ARMADA_XMLNS_PREFIX) : NULL;
        if (!ns)
                hv_xml_oom();
        xmlSetNs(mark, ns);
        set(mark, "installation", spec->installation_id);
        char num[32];
        snprintf(num, sizeof num, "%" PRId64, spec->vm_id);
        set(mark, "id", num);
}

/* A disk (or CD-ROM) of the spec as a file on target's bus. */
static void add_disk(xmlNode *devices, const HvDisk *d) {
        xmlNode *disk = add(devices, "disk", NULL);
        set(disk, "type", "file");
        set(disk, "device", d->cdrom ? "cdrom" : "disk");
        xmlNode *driver = add(disk, "driver", NULL);
        set(driver, "name", "qemu");
        set(driver, "type", disk_format(d));
        if (d->path[0]) /* an empty CD-ROM drive has no source */
                set(add(disk, "source", NULL), "file", d->path);
        xmlNode *target = add(disk, "target", NULL);
        set(target, "dev", d->target);
        set(target, "bus", target_bus(d->target));
        if (d->cdrom)
                add(disk, "readonly", NULL);
}

char *hv_domain_xml_build(const HvDomainSpec *spec) {
        if (spec_validate(spec) < 0)
                return NULL;

        _cleanup_xmldoc_ xmlDoc *doc = NULL;
        xmlNode *root = new_root(&doc, "domain");
        char num[32];

        set(root, "type", spec->domain_type);
        add(root, "name", spec->name);
        if (spec->uuid)
                add(root, "uuid", spec->uuid);
        if (spec->description)
                add(root, "description", spec->description);
        if (spec->installation_id)
                add_marker(add(root, "metadata", NULL), spec);
        snprintf(num, sizeof num, "%" PRIu64, spec->memory_mib);
        set(add(root, "memory", num), "unit", "MiB");
        set(add(root, "currentMemory", num), "unit", "MiB");
        snprintf(num, sizeof num, "%u", spec->vcpus);
        add(root, "vcpu", num);

        xmlNode *os = add(root, "os", NULL);
        if (spec->uefi && strcmp(spec->domain_type, "test") != 0)
                set(os, "firmware", "efi");
        xmlNode *type = add(os, "type", "hvm");
        set(type, "arch", "x86_64");
        set(type, "machine", "pc");
        /* <boot dev> picks the first device of a kind: a spec that starts
         * with a CD-ROM (an installer) boots from it, then from disk. */
        if (spec->n_disks > 0 && spec->disks[0].cdrom)
                set(add(os, "boot", NULL), "dev", "cdrom");
        set(add(os, "boot", NULL), "dev", "hd");

        xmlNode *features = add(root, "features", NULL);
        add(features, "acpi", NULL);
        add(features, "apic", NULL);
        set(add(root, "clock", NULL), "offset", "utc");
        add(root, "on_poweroff", "destroy");
        add(root, "on_reboot", "restart");
        add(root, "on_crash", "destroy");

        xmlNode *devices = add(root, "devices", NULL);
        for (size_t i = 0; i < spec->n_disks; i++)
                add_disk(devices, &spec->disks[i]);
        for (size_t i = 0; spec->network && i <= spec->n_more_nics; i++) {
                const char *net = i ? spec->more_networks[i - 1] : spec->network;
                const char *mac = i ? spec->more_macs[i - 1] : spec->network_mac;
                xmlNode *nic = add(devices, "interface", NULL);
                set(nic, "type", "network");
                if (mac)
                        set(add(nic, "mac", NULL), "address", mac);
                set(add(nic, "source", NULL), "network", net);
                set(add(nic, "model", NULL), "type", "virtio");
        }
        xmlNode *serial = add(devices, "serial", NULL);
        set(serial, "type", "pty");
        set(add(serial, "target", NULL), "port", "0");
        xmlNode *console = add(devices, "console", NULL);
        set(console, "type", "pty");
        xmlNode *ctarget = add(console, "target", NULL);
        set(ctarget, "type", "serial");
        set(ctarget, "port", "0");
        if (spec->vnc) {
                xmlNode *g = add(devices, "graphics", NULL);
                set(g, "type", "vnc");
                set(g, "autoport", "yes");
                const char *addr = spec->vnc_listen ? spec->vnc_listen : "127.0.0.1";
                set(g, "listen", addr);
                if (spec->vnc_password)
                        set(g, "passwd", spec->vnc_password);
                xmlNode *listen = add(g, "listen", NULL);
                set(listen, "type", "address");
                set(listen, "address", addr);
        }
        set(add(devices, "memballoon", NULL), "model", "virtio");

        return dump(doc, root);
}

char *hv_xml_pool_build(const char *name, const char *path) {
        _cleanup_xmldoc_ xmlDoc *doc = NULL;
        xmlNode *root = new_root(&doc, "pool");
        set(root, "type", "dir");
        add(root, "name", name);
        add(add(root, "target", NULL), "path", path);
        return dump(doc, root);
}

char *hv_xml_volume_build(const char *name, const char *format, uint64_t capacity) {
        _cleanup_xmldoc_ xmlDoc *doc = NULL;
        xmlNode *root = new_root(&doc, "volume");
        char num[32];
        add(root, "name", name);
        snprintf(num, sizeof num, "%" PRIu64, capacity);
        set(add(root, "capacity", num), "unit", "bytes");
        /* Without <allocation>, libvirt allocates the full capacity of a
         * raw volume up front; 0 keeps every volume thin. */
        set(add(root, "allocation", "0"), "unit", "bytes");
        set(add(add(root, "target", NULL), "format", NULL), "type", format);
        return dump(doc, root);
}

/* ---- reading ---- */

/* Parses xml without network access or entity expansion; a document with a
 * DTD is refused outright, as libvirt never writes one and it is the door to
 * entity tricks. */
static int xml_read(const char *xml, const char *what, xmlDoc **ret) {
        if (!xml) {
                hv_set_error("cannot parse %s XML: there is none", what);
                return -EINVAL;
        }
        size_t len = strlen(xml);
        if (len > INT_MAX) {
                hv_set_error("cannot parse %s XML: it is larger than 2 GiB", what);
                return -EINVAL;
        }
        hv_xml_init();
        xmlResetLastError();
        xmlDoc *doc = xmlReadMemory(xml, (int) len, NULL, NULL,
                                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc) {
                const xmlError *e = xmlGetLastError();
                char msg[256] = "unknown error";
                if (e && e->message) {
                        snprintf(msg, sizeof msg, "%s", e->message);
                        msg[strcspn(msg, "\n")] = 0;
                }
                hv_set_error("cannot parse %s XML: it is not well-formed (line %d: %s)", what,
                             e ? e->line : 0, msg);
                return -EINVAL;
        }
        if (doc->intSubset || doc->extSubset || !xmlDocGetRootElement(doc)) {
                xmlFreeDoc(doc);
                hv_set_error("cannot parse %s XML: it has a document type declaration or no "
                             "root element", what);
                return -EINVAL;
        }
        *ret = doc;
        return 0;
}

static bool is_elem(const xmlNode *n, const char *name) {
        return n->type == XML_ELEMENT_NODE && !n->ns && xmlStrEqual(n->name, BAD_CAST name);
}

static xmlNode *child(const xmlNode *parent, const char *name) {
        for (xmlNode *n = parent->children; n; n = n->next)
                if (is_elem(n, name))
                        return n;
        return NULL;
}

/* Copies src into dst[size]; -EINVAL with the error set when it does not fit. */
static int copy_field(char *dst, size_t size, const xmlChar *src, const char *what) {
        const char *s = src ? (const char *) src : "";
        size_t n = strlen(s);
        if (n >= size) {
                hv_set_error("cannot parse domain XML: its %s is %zu bytes long, more than the "
                             "%zu Armada keeps", what, n, size - 1);
                return -EINVAL;
        }
        memcpy(dst, s, n + 1);
        return 0;
}

static int parse_u64(const xmlChar *text, uint64_t *ret) {
        int64_t v;
        if (!text)
                return -EINVAL;
        const char *s = (const char *) text;
        s += strspn(s, " \t\n");
        char buf[32];
        size_t n = strcspn(s, " \t\n");
        if (n == 0 || n >= sizeof buf)
                return -EINVAL;
        memcpy(buf, s, n);
        buf[n] = 0;
        int r = parse_i64(buf, &v);
        if (r < 0)
                return r;
        *ret = (uint64_t) v;
        return 0;
}

/* libvirt's scaled integers (<memory unit=...>); default unit KiB. */
static int memory_mib(const xmlNode *n, uint64_t *ret) {
        static const struct { const char *unit; uint64_t scale; } units[] = {
                { "b", 1 }, { "bytes", 1 },
                { "k", 1ull << 10 }, { "KiB", 1ull << 10 }, { "KB", 1000ull },
                { "M", 1ull << 20 }, { "MiB", 1ull << 20 }, { "MB", 1000000ull },
                { "G", 1ull << 30 }, { "GiB", 1ull << 30 }, { "GB", 1000000000ull },
                { "T", 1ull << 40 }, { "TiB", 1ull << 40 }, { "TB", 1000000000000ull },
                { "P", 1ull << 50 }, { "PiB", 1ull << 50 }, { "PB", 1000000000000000ull },
        };
        _cleanup_xmlstr_ xmlChar *text = xmlNodeGetContent(n);
        _cleanup_xmlstr_ xmlChar *unit = xmlGetNoNsProp(n, BAD_CAST "unit");
        uint64_t v, scale = 0;
        if (parse_u64(text, &v) < 0)
                return -EINVAL;
        if (!unit)
                scale = 1024;
        for (size_t i = 0; i < ELEMENTSOF(units) && !scale; i++)
                if (streq((const char *) unit, units[i].unit))
                        scale = units[i].scale;
        if (!scale || (v && scale > UINT64_MAX / v))
                return -EINVAL;
        uint64_t bytes = v * scale;
        *ret = bytes / (1ull << 20) + (bytes % (1ull << 20) ? 1 : 0);
        return 0;
}

static int parse_disk(const xmlNode *n, HvDisk *d, bool *ret_keep) {
        _cleanup_xmlstr_ xmlChar *device = xmlGetNoNsProp(n, BAD_CAST "device");
        const char *dev = device ? (const char *) device : "disk";
        *ret_keep = streq(dev, "disk") || streq(dev, "cdrom") || streq(dev, "lun");
        if (!*ret_keep)
                return 0; /* floppies are not Armada's business */
        *d = (HvDisk) { .cdrom = streq(dev, "cdrom") };

        const xmlNode *source = child(n, "source");
        if (source) {
                static const char *const attrs[] = { "file", "dev", "dir", "name" };
                _cleanup_xmlstr_ xmlChar *path = NULL;
                for (size_t i = 0; i < ELEMENTSOF(attrs) && !path; i++)
                        path = xmlGetNoNsProp(source, BAD_CAST attrs[i]);
                if (!path) { /* type='volume' */
                        _cleanup_xmlstr_ xmlChar *pool = xmlGetNoNsProp(source, BAD_CAST "pool");
                        _cleanup_xmlstr_ xmlChar *vol = xmlGetNoNsProp(source, BAD_CAST "volume");
                        if (pool && vol) {
                                _cleanup_free_ char *pv = xasprintf("%s/%s", (const char *) pool,
                                                                    (const char *) vol);
                                if (copy_field(d->path, sizeof d->path, BAD_CAST pv, "disk path") < 0)
                                        return -EINVAL;
                        }
                } else if (copy_field(d->path, sizeof d->path, path, "disk path") < 0)
                        return -EINVAL;
        }
        const xmlNode *driver = child(n, "driver");
        if (driver) {
                _cleanup_xmlstr_ xmlChar *type = xmlGetNoNsProp(driver, BAD_CAST "type");
                if (copy_field(d->format, sizeof d->format, type, "disk format") < 0)
                        return -EINVAL;
        }
        const xmlNode *target = child(n, "target");
        if (target) {
                _cleanup_xmlstr_ xmlChar *dev_name = xmlGetNoNsProp(target, BAD_CAST "dev");
                if (copy_field(d->target, sizeof d->target, dev_name, "disk target") < 0)
                        return -EINVAL;
        }
        return 0;
}

int hv_domain_xml_parse(const char *xml, HvDomainInfo *ret) {
        _cleanup_xmldoc_ xmlDoc *doc = NULL;
        int r = xml_read(xml, "domain", &doc);
        if (r < 0)
                return r;
        const xmlNode *root = xmlDocGetRootElement(doc);
        if (!is_elem(root, "domain")) {
                hv_set_error("cannot parse domain XML: its root element is <%s>, not <domain>",
                             (const char *) root->name);
                return -EINVAL;
        }

        HvDomainInfo info = { .state = HV_STATE_NOSTATE };
        _cleanup_xmlstr_ xmlChar *type = xmlGetNoNsProp(root, BAD_CAST "type");
        if (copy_field(info.domain_type, sizeof info.domain_type, type, "domain type") < 0)
                return -EINVAL;

        const xmlNode *n = child(root, "name");
        _cleanup_xmlstr_ xmlChar *name = n ? xmlNodeGetContent(n) : NULL;
        if (!name || !name[0]) {
                hv_set_error("cannot parse domain XML: it has no <name>");
                return -EINVAL;
        }
        if (copy_field(info.name, sizeof info.name, name, "name") < 0)
                return -EINVAL;

        n = child(root, "uuid");
        _cleanup_xmlstr_ xmlChar *uuid = n ? xmlNodeGetContent(n) : NULL;
        if (copy_field(info.uuid, sizeof info.uuid, uuid, "UUID") < 0)
                return -EINVAL;

        n = child(root, "memory");
        if (n && memory_mib(n, &info.memory_mib) < 0) {
                hv_set_error("cannot parse domain XML of '%s': its <memory> is not a size",
                             info.name);
                return -EINVAL;
        }
        /* The balloon's target (hv-hardware): 0 when absent or unreadable. */
        n = child(root, "currentMemory");
        if (n && memory_mib(n, &info.current_memory_mib) < 0)
                info.current_memory_mib = 0;

        n = child(root, "vcpu");
        if (n) {
                /* 'current' (vCPUs online) wins over the maximum, the text. */
                _cleanup_xmlstr_ xmlChar *current = xmlGetNoNsProp(n, BAD_CAST "current");
                _cleanup_xmlstr_ xmlChar *text = current ? NULL : xmlNodeGetContent(n);
                uint64_t v;
                if (parse_u64(current ? current : text, &v) < 0 || v > UINT_MAX) {
                        hv_set_error("cannot parse domain XML of '%s': its <vcpu> is not a count",
                                     info.name);
                        return -EINVAL;
                }
                info.vcpus = (unsigned) v;
        }

        n = child(root, "metadata");
        for (const xmlNode *m = n ? n->children : NULL; m; m = m->next) {
                if (m->type != XML_ELEMENT_NODE || !m->ns || !m->ns->href ||
                    !xmlStrEqual(m->ns->href, BAD_CAST HV_ARMADA_XMLNS) || !xmlStrEqual(m->name, BAD_CAST "vm"))
                        continue;
                _cleanup_xmlstr_ xmlChar *inst = xmlGetNoNsProp(m, BAD_CAST "installation");
                _cleanup_xmlstr_ xmlChar *id = xmlGetNoNsProp(m, BAD_CAST "id");
                snprintf(info.armada_installation, sizeof info.armada_installation, "%s",
                         inst && uuid_is_valid((const char *) inst) ? (const char *) inst : "unknown");
                int64_t v;
                if (id && parse_i64((const char *) id, &v) == 0 && v > 0)
                        info.armada_vm_id = v;
                break;
        }

        const xmlNode *devices = child(root, "devices");
        for (const xmlNode *d = devices ? devices->children : NULL; d; d = d->next) {
                if (!is_elem(d, "disk") || info.n_disks == HV_MAX_DISKS)
                        continue;
                bool keep;
                if (parse_disk(d, &info.disks[info.n_disks], &keep) < 0)
                        return -EINVAL;
                if (keep)
                        info.n_disks++;
        }

        *ret = info;
        return 0;
}

int hv_xml_pool_path(const char *xml, char **ret) {
        _cleanup_xmldoc_ xmlDoc *doc = NULL;
        int r = xml_read(xml, "storage pool", &doc);
        if (r < 0)
                return r;
        const xmlNode *root = xmlDocGetRootElement(doc);
        const xmlNode *target = is_elem(root, "pool") ? child(root, "target") : NULL;
        const xmlNode *path = target ? child(target, "path") : NULL;
        _cleanup_xmlstr_ xmlChar *text = path ? xmlNodeGetContent(path) : NULL;
        if (!text || !text[0]) {
                hv_set_error("cannot parse storage pool XML: it has no <target><path>");
                return -EINVAL;
        }
        *ret = xstrdup((const char *) text);
        return 0;
}

/* Lower-cases a UUID's hex digits in place (libvirt writes lower case, SMBIOS
 * often upper). */
static void uuid_lower(char *s) {
        for (; *s; s++)
                if ('A' <= *s && *s <= 'F')
                        *s = (char) (*s - 'A' + 'a');
}

/* True for the all-zero UUID some firmware reports and the test driver
 * implies: no identity at all. */
static bool uuid_is_nil(const char *s) {
        return strspn(s, "0-") == strlen(s);
}

int hv_xml_caps_host_uuid(const char *xml, char ret[37]) {
        _cleanup_xmldoc_ xmlDoc *doc = NULL;
        int r = xml_read(xml, "capabilities", &doc);
        if (r < 0)
                return r;
        const xmlNode *root = xmlDocGetRootElement(doc);
        const xmlNode *host = is_elem(root, "capabilities") ? child(root, "host") : NULL;
        const xmlNode *u = host ? child(host, "uuid") : NULL;
        _cleanup_xmlstr_ xmlChar *text = u ? xmlNodeGetContent(u) : NULL;
        ret[0] = 0;
        if (text && uuid_is_valid((const char *) text) && !uuid_is_nil((const char *) text)) {
                snprintf(ret, 37, "%s", (const char *) text);
                uuid_lower(ret);
        }
        return 0;
}

int hv_xml_sysinfo_uuid(const char *xml, char ret[37]) {
        _cleanup_xmldoc_ xmlDoc *doc = NULL;
        int r = xml_read(xml, "sysinfo", &doc);
        if (r < 0)
                return r;
        const xmlNode *root = xmlDocGetRootElement(doc);
        const xmlNode *sys = is_elem(root, "sysinfo") ? child(root, "system") : NULL;
        ret[0] = 0;
        for (const xmlNode *e = sys ? sys->children : NULL; e; e = e->next) {
                if (!is_elem(e, "entry"))
                        continue;
                _cleanup_xmlstr_ xmlChar *name = xmlGetNoNsProp(e, BAD_CAST "name");
                if (!name || !xmlStrEqual(name, BAD_CAST "uuid"))
                        continue;
                _cleanup_xmlstr_ xmlChar *text = xmlNodeGetContent(e);
                if (text && uuid_is_valid((const char *) text) && !uuid_is_nil((const char *) text)) {
                        snprintf(ret, 37, "%s", (const char *) text);
                        uuid_lower(ret);
                }
                break;
        }
        return 0;
}

int hv_xml_caps_kvm(const char *xml, bool *ret) {
        _cleanup_xmldoc_ xmlDoc *doc = NULL;
        int r = xml_read(xml, "capabilities", &doc);
        if (r < 0)
                return r;
        const xmlNode *root = xmlDocGetRootElement(doc);
        if (!is_elem(root, "capabilities")) {
                hv_set_error("cannot parse capabilities XML: its root element is not <capabilities>");
                return -EINVAL;
        }
        bool kvm = false;
        for (const xmlNode *g = root->children; g && !kvm; g = g->next) {
                if (!is_elem(g, "guest"))
                        continue;
                for (const xmlNode *a = g->children; a && !kvm; a = a->next) {
                        if (!is_elem(a, "arch"))
                                continue;
                        _cleanup_xmlstr_ xmlChar *arch = xmlGetNoNsProp(a, BAD_CAST "name");
                        if (!arch || !xmlStrEqual(arch, BAD_CAST "x86_64"))
                                continue;
                        for (const xmlNode *d = a->children; d && !kvm; d = d->next) {
                                if (!is_elem(d, "domain"))
                                        continue;
                                _cleanup_xmlstr_ xmlChar *type = xmlGetNoNsProp(d, BAD_CAST "type");
                                kvm = type && xmlStrEqual(type, BAD_CAST "kvm");
                        }
                }
        }
        *ret = kvm;
        return 0;
}

/* ---- a clone's definition from its source's ---- */

static void drop(xmlNode *n) {
        xmlUnlinkNode(n);
        xmlFreeNode(n);
}

/* Every child element of parent named name removed. */
static void drop_children(xmlNode *parent, const char *name) {
        for (xmlNode *n = parent->children, *next; n; n = next) {
                next = n->next;
                if (is_elem(n, name))
                        drop(n);
        }
}

/* parent's child element name holding text alone (the old ones removed). */
static void put_text(xmlNode *parent, const char *name, const char *text) {
        drop_children(parent, name);
        if (text)
                add(parent, name, text);
}

static void put_attr(xmlNode *n, const char *name, const char *value) {
        /* xmlSetProp stores the value literally; the serializer escapes it. */
        if (!xmlSetProp(n, BAD_CAST name, BAD_CAST value))
                hv_xml_oom();
}

static const HvDisk *spec_disk(const HvDomainSpec *spec, const char *target) {
        for (size_t i = 0; i < spec->n_disks; i++)
                if (streq(spec->disks[i].target, target))
                        return &spec->disks[i];
        return NULL;
}

/* A disk of the source: the clone's volume in its place (a plain file
 * source, no backing chain of the source's), or removed when the clone has
 * none for its target (a LUN or another VM's device is never shared). CD-ROM
 * and floppy drives stay, empty: their media may be the source's own (a seed
 * image deleted with it) or absent on the clone's host. Marks the targets it
 * placed in used[]. */
static void clone_disk_node(xmlNode *disk, const HvDomainSpec *spec, bool used[]) {
        _cleanup_xmlstr_ xmlChar *device = xmlGetNoNsProp(disk, BAD_CAST "device");
        const char *dev = device ? (const char *) device : "disk";
        if (streq(dev, "cdrom") || streq(dev, "floppy")) {
                put_attr(disk, "type", "file");
                drop_children(disk, "source");
                drop_children(disk, "backingStore");
                return;
        }
        xmlNode *target = child(disk, "target");
        _cleanup_xmlstr_ xmlChar *tdev = target ? xmlGetNoNsProp(target, BAD_CAST "dev") : NULL;
        const HvDisk *d = tdev && streq(dev, "disk") ? spec_disk(spec, (const char *) tdev) : NULL;
        if (!d) {
                drop(disk);
                return;
        }
        used[d - spec->disks] = true;
        put_attr(disk, "type", "file");
        drop_children(disk, "source");
        drop_children(disk, "backingStore");
        drop_children(disk, "auth");
        xmlNode *driver = child(disk, "driver");
        if (!driver) {
                driver = add(disk, "driver", NULL);
                put_attr(driver, "name", "qemu");
        }
        put_attr(driver, "type", disk_format(d));
        xmlNode *source = xmlNewNode(NULL, BAD_CAST "source");
        if (!source)
                hv_xml_oom();
        put_attr(source, "file", d->path);
        /* libvirt reads the children in any order; the source goes first, as it prints it */
        if (disk->children ? !xmlAddPrevSibling(disk->children, source) : !xmlAddChild(disk, source))
                hv_xml_oom();
}

char *hv_domain_xml_clone(const char *src_xml, const HvDomainSpec *spec, const char *const *macs, size_t n_macs) {
        if (spec_validate(spec) < 0)
                return NULL;
        _cleanup_xmldoc_ xmlDoc *doc = NULL;
        if (xml_read(src_xml, "domain", &doc) < 0)
                return NULL;
        xmlNode *root = xmlDocGetRootElement(doc);
        xmlNode *devices = is_elem(root, "domain") ? child(root, "devices") : NULL;
        if (!devices) {
                hv_set_error("cannot clone VM '%s': its definition is not a domain with devices", spec->name);
                return NULL;
        }
        put_attr(root, "type", spec->domain_type);
        drop_children(root, "name");
        drop_children(root, "uuid");
        /* name and uuid first, where libvirt prints them */
        xmlNode *first = root->children;
        xmlNode *name = xmlNewTextChild(root, NULL, BAD_CAST "name", BAD_CAST spec->name);
        xmlNode *uuid = spec->uuid ? xmlNewTextChild(root, NULL, BAD_CAST "uuid", BAD_CAST spec->uuid) : NULL;
        if (!name || (spec->uuid && !uuid))
                hv_xml_oom();
        if (first) {
                xmlAddPrevSibling(first, name);
                if (uuid)
                        xmlAddNextSibling(name, uuid);
        }
        put_text(root, "description", spec->description);
        /* The Armada marker is the clone's own; other metadata stays. */
        xmlNode *meta = child(root, "metadata");
        if (meta)
                for (xmlNode *n = meta->children, *next; n; n = next) {
                        next = n->next;
                        if (n->type == XML_ELEMENT_NODE && n->ns && xmlStrEqual(n->ns->href, BAD_CAST HV_ARMADA_XMLNS))
                                drop(n);
                }
        if (spec->installation_id)
                add_marker(meta ? meta : add(root, "metadata", NULL), spec);
        /* UEFI variables are per VM: libvirt makes the clone its own from the
         * template (the source's boot entries are not copied; firmware falls
         * back to the removable-media path). */
        xmlNode *os = child(root, "os");
        if (os)
                drop_children(os, "nvram");
        bool used[HV_MAX_DISKS] = { false };
        size_t nic = 0;
        for (xmlNode *n = devices->children, *next; n; n = next) {
                next = n->next;
                if (is_elem(n, "disk"))
                        clone_disk_node(n, spec, used);
                else if (is_elem(n, "interface")) {
                        /* the caller's MAC, else a new one from libvirt; no host device name */
                        drop_children(n, "mac");
                        drop_children(n, "target");
                        const char *mac = nic < n_macs ? macs[nic] : NULL;
                        nic++;
                        if (mac) {
                                xmlNode *m = xmlNewNode(NULL, BAD_CAST "mac");
                                if (!m)
                                        hv_xml_oom();
                                put_attr(m, "address", mac);
                                if (n->children ? !xmlAddPrevSibling(n->children, m) : !xmlAddChild(n, m))
                                        hv_xml_oom();
                        }
                } else if (is_elem(n, "graphics")) {
                        _cleanup_xmlstr_ xmlChar *type = xmlGetNoNsProp(n, BAD_CAST "type");
                        if (!type || !xmlStrEqual(type, BAD_CAST "vnc"))
                                continue;
                        xmlUnsetProp(n, BAD_CAST "port");
                        xmlUnsetProp(n, BAD_CAST "websocket");
                        xmlUnsetProp(n, BAD_CAST "passwd");
                        put_attr(n, "autoport", "yes");
                        const char *addr = spec->vnc_listen ? spec->vnc_listen : "127.0.0.1";
                        put_attr(n, "listen", addr);
                        if (spec->vnc_password)
                                put_attr(n, "passwd", spec->vnc_password);
                        drop_children(n, "listen");
                        xmlNode *l = add(n, "listen", NULL);
                        set(l, "type", "address");
                        set(l, "address", addr);
                }
        }
        /* A disk the clone has that the definition lacks (attached to the
         * running source only): added as the builder would. */
        for (size_t i = 0; i < spec->n_disks; i++)
                if (!used[i])
                        add_disk(devices, &spec->disks[i]);
        return dump(doc, root);
}
