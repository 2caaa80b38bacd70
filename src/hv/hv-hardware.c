/* hv-hardware: a defined domain's vCPUs, memory, disks, CD-ROM medium and
 * boot order, changed live where libvirt and QEMU can and otherwise in its
 * definition (hv-hardware.h). The pure half builds <disk> elements and
 * edits domain XML with libxml2; the I/O half runs each change as one
 * deadline-bounded call (hv_call) under a lease. */
#include "hv-hardware.h"
#include "hv-internal.h"
#include "hv-cleanup.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

const char *hv_applied_name(HvApplied a) {
        switch (a) {
        case HV_APPLIED_LIVE: return "live";
        case HV_APPLIED_NEXT_BOOT: return "next_boot";
        default: return NULL;
        }
}

/* ---- XML (pure) ---- */

static xmlNode *add(xmlNode *parent, const char *name, const char *text) {
        xmlNode *n = parent ? xmlNewTextChild(parent, NULL, BAD_CAST name, BAD_CAST text) : xmlNewNode(NULL, BAD_CAST name);
        if (!n)
                hv_xml_oom();
        return n;
}

static void set(xmlNode *n, const char *name, const char *value) {
        /* xmlSetProp escapes the value when the tree is written out. */
        if (!xmlSetProp(n, BAD_CAST name, BAD_CAST value))
                hv_xml_oom();
}

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

/* "virtio", "sata" or "ide" for a valid target, else NULL. */
static const char *target_bus(const char *t) {
        size_t n = t ? strlen(t) : 0;
        if (n < 3 || n > 5)
                return NULL;
        for (size_t i = 2; i < n; i++)
                if (t[i] < 'a' || t[i] > 'z')
                        return NULL;
        if (strncmp(t, "vd", 2) == 0) return "virtio";
        if (strncmp(t, "sd", 2) == 0) return "sata";
        if (strncmp(t, "hd", 2) == 0) return "ide";
        return NULL;
}

static xmlNode *disk_node(const HvDisk *d) {
        const char *bus = target_bus(d->target);
        if (!bus) {
                hv_set_error("'%s' is not a disk target (vd, sd or hd and one to three letters)", d->target);
                return NULL;
        }
        if (d->cdrom && streq(bus, "virtio")) {
                hv_set_error("a CD-ROM drive cannot be on virtio ('%s'); use an sd or hd target", d->target);
                return NULL;
        }
        const char *fmt = d->format[0] ? d->format : "raw";
        if (!streq(fmt, "raw") && !streq(fmt, "qcow2")) {
                hv_set_error("disk format '%s' is neither qcow2 nor raw", fmt);
                return NULL;
        }
        xmlNode *disk = add(NULL, "disk", NULL);
        set(disk, "type", "file");
        set(disk, "device", d->cdrom ? "cdrom" : "disk");
        xmlNode *driver = add(disk, "driver", NULL);
        set(driver, "name", "qemu");
        set(driver, "type", fmt);
        if (d->path[0])
                set(add(disk, "source", NULL), "file", d->path);
        xmlNode *target = add(disk, "target", NULL);
        set(target, "dev", d->target);
        set(target, "bus", bus);
        if (d->cdrom)
                add(disk, "readonly", NULL);
        return disk;
}

char *hv_disk_xml_build(const HvDisk *d) {
        hv_xml_init();
        xmlNode *n = disk_node(d);
        if (!n)
                return NULL;
        _cleanup_xmldoc_ xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
        if (!doc)
                hv_xml_oom();
        xmlDocSetRootElement(doc, n);
        return dump(doc, n);
}

static int xml_read(const char *xml, xmlDoc **ret) {
        hv_xml_init();
        size_t len = xml ? strlen(xml) : 0;
        if (!xml || len > INT_MAX) {
                hv_set_error("cannot parse domain XML: there is none");
                return -EINVAL;
        }
        xmlDoc *doc = xmlReadMemory(xml, (int) len, NULL, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
        if (!root || doc->intSubset || !xmlStrEqual(root->name, BAD_CAST "domain")) {
                if (doc)
                        xmlFreeDoc(doc);
                hv_set_error("cannot parse domain XML: it is not a libvirt domain definition");
                return -EINVAL;
        }
        *ret = doc;
        return 0;
}

static xmlNode *child(xmlNode *n, const char *name) {
        for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
                if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST name))
                        return c;
        return NULL;
}

static bool attr_is(xmlNode *n, const char *name, const char *value) {
        _cleanup_xmlstr_ xmlChar *v = n ? xmlGetProp(n, BAD_CAST name) : NULL;
        return v && xmlStrEqual(v, BAD_CAST value);
}

/* The <disk> (disk, CD-ROM or LUN) of devices with target dev target. */
static xmlNode *disk_by_target(xmlNode *devices, const char *target) {
        for (xmlNode *c = devices ? devices->children : NULL; c; c = c->next)
                if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "disk") && attr_is(child(c, "target"), "dev", target))
                        return c;
        return NULL;
}

static void remove_children(xmlNode *n, const char *name) {
        xmlNode *c = n ? n->children : NULL;
        while (c) {
                xmlNode *next = c->next;
                if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST name)) {
                        xmlUnlinkNode(c);
                        xmlFreeNode(c);
                }
                c = next;
        }
}

char *hv_domain_xml_edit(const char *xml, const HvConfigEdit *e) {
        _cleanup_xmldoc_ xmlDoc *doc = NULL;
        if (xml_read(xml, &doc) < 0)
                return NULL;
        xmlNode *root = xmlDocGetRootElement(doc);
        xmlNode *devices = child(root, "devices");
        if (!devices)
                devices = add(root, "devices", NULL);
        if (e->n_boot > 0) {
                xmlNode *os = child(root, "os");
                if (!os || e->n_boot > 4) {
                        hv_set_error("cannot set the boot order: %s", os ? "more than four devices" : "the domain has no <os>");
                        return NULL;
                }
                remove_children(os, "boot");
                for (size_t i = 0; i < e->n_boot; i++) {
                        const char *dev = e->boot_order[i];
                        if (!streq(dev, "cdrom") && !streq(dev, "hd") && !streq(dev, "network")) {
                                hv_set_error("'%s' is not a boot device (cdrom, hd, network)", dev);
                                return NULL;
                        }
                        set(add(os, "boot", NULL), "dev", dev);
                }
        }
        if (e->drop) {
                xmlNode *d = disk_by_target(devices, e->drop);
                if (!d) {
                        hv_set_error("the domain has no disk '%s'", e->drop);
                        return NULL;
                }
                xmlUnlinkNode(d);
                xmlFreeNode(d);
        }
        if (e->media_target) {
                xmlNode *d = disk_by_target(devices, e->media_target);
                if (!d) {
                        hv_set_error("the domain has no drive '%s'", e->media_target);
                        return NULL;
                }
                remove_children(d, "source");
                if (e->media && *e->media) {
                        xmlNode *src = xmlNewNode(NULL, BAD_CAST "source");
                        if (!src)
                                hv_xml_oom();
                        set(src, "file", e->media);
                        /* <source> first, where libvirt writes it. */
                        if (d->children)
                                xmlAddPrevSibling(d->children, src);
                        else
                                xmlAddChild(d, src);
                }
        }
        if (e->add) {
                if (disk_by_target(devices, e->add->target)) {
                        hv_set_error("the domain has a disk '%s' already", e->add->target);
                        return NULL;
                }
                xmlNode *n = disk_node(e->add);
                if (!n)
                        return NULL;
                /* After the last disk: libvirt numbers the buses in order. */
                xmlNode *last = NULL;
                for (xmlNode *c = devices->children; c; c = c->next)
                        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "disk"))
                                last = c;
                if (last)
                        xmlAddNextSibling(last, n);
                else
                        xmlAddChild(devices, n);
        }
        return dump(doc, root);
}

/* libvirt's scaled integers (<memory unit=...>), in MiB rounded up. */
static uint64_t size_mib(xmlNode *n) {
        _cleanup_xmlstr_ xmlChar *txt = n ? xmlNodeGetContent(n) : NULL;
        _cleanup_xmlstr_ xmlChar *unit = n ? xmlGetProp(n, BAD_CAST "unit") : NULL;
        if (!txt)
                return 0;
        uint64_t v = strtoull((const char *) txt, NULL, 10), mul = 1024;
        const char *u = unit ? (const char *) unit : "KiB";
        if (streq(u, "b") || streq(u, "bytes")) mul = 1;
        else if (streq(u, "MiB") || streq(u, "M")) mul = 1ULL << 20;
        else if (streq(u, "GiB") || streq(u, "G")) mul = 1ULL << 30;
        else if (streq(u, "TiB") || streq(u, "T")) mul = 1ULL << 40;
        return (v * mul + (1ULL << 20) - 1) >> 20;
}

/* What the hardware calls read of domain XML. */
typedef struct {
        unsigned vcpus, max_vcpus;
        uint64_t memory_mib, max_memory_mib;
        char boot[4][8];
        size_t n_boot;
        char cd_target[16];           /* the first CD-ROM drive's, "" when none */
        char targets[16][16];         /* every disk's */
        size_t n_targets;
} XmlFacts;

static int xml_facts(const char *xml, XmlFacts *ret) {
        _cleanup_xmldoc_ xmlDoc *doc = NULL;
        if (xml_read(xml, &doc) < 0)
                return -EINVAL;
        xmlNode *root = xmlDocGetRootElement(doc);
        XmlFacts f = {0};
        xmlNode *vcpu = child(root, "vcpu");
        _cleanup_xmlstr_ xmlChar *vt = vcpu ? xmlNodeGetContent(vcpu) : NULL;
        _cleanup_xmlstr_ xmlChar *cur = vcpu ? xmlGetProp(vcpu, BAD_CAST "current") : NULL;
        f.max_vcpus = vt ? (unsigned) strtoul((const char *) vt, NULL, 10) : 1;
        f.vcpus = cur ? (unsigned) strtoul((const char *) cur, NULL, 10) : f.max_vcpus;
        f.max_memory_mib = size_mib(child(root, "memory"));
        xmlNode *cm = child(root, "currentMemory");
        f.memory_mib = cm ? size_mib(cm) : f.max_memory_mib;
        for (xmlNode *c = child(root, "os") ? child(root, "os")->children : NULL; c && f.n_boot < 4; c = c->next) {
                _cleanup_xmlstr_ xmlChar *dev = c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "boot")
                        ? xmlGetProp(c, BAD_CAST "dev") : NULL;
                if (dev)
                        snprintf(f.boot[f.n_boot++], sizeof f.boot[0], "%.7s", (const char *) dev);
        }
        if (f.n_boot == 0)
                snprintf(f.boot[f.n_boot++], sizeof f.boot[0], "hd");
        xmlNode *devices = child(root, "devices");
        for (xmlNode *c = devices ? devices->children : NULL; c; c = c->next) {
                if (c->type != XML_ELEMENT_NODE || !xmlStrEqual(c->name, BAD_CAST "disk"))
                        continue;
                _cleanup_xmlstr_ xmlChar *dev = xmlGetProp(child(c, "target"), BAD_CAST "dev");
                if (!dev)
                        continue;
                if (f.n_targets < ELEMENTSOF(f.targets))
                        snprintf(f.targets[f.n_targets++], sizeof f.targets[0], "%.15s", (const char *) dev);
                if (!f.cd_target[0] && attr_is(c, "device", "cdrom"))
                        snprintf(f.cd_target, sizeof f.cd_target, "%.15s", (const char *) dev);
        }
        *ret = f;
        return 0;
}

int hv_domain_xml_boot_order(const char *xml, char devs[4][8]) {
        XmlFacts f;
        if (xml_facts(xml, &f) < 0)
                return -EINVAL;
        memcpy(devs, f.boot, sizeof f.boot);
        return (int) f.n_boot;
}

/* ---- I/O ---- */

/* Everything a hardware call takes and gives, in one block the call owns
 * (a->ret.ptr), so a body left behind at its deadline touches only it. */
typedef struct {
        HvHardwareChange chg;
        HvHardwareApplied applied;
        HvHardware hw;
        HvDisk disk;
        uint64_t bytes;
        HvApplied one;
        char boot[4][8];
        size_t n_boot;
} HwArgs;

static HvCall *hw_call(HvCallBody body, const char *what, const char *uuid, const char *s1, const char *s2, HwArgs *args) {
        HvCall *a = hv_call_new(body, what, uuid, s1, s2, NULL);
        a->ret.ptr = xmalloc(sizeof *args);
        memcpy(a->ret.ptr, args, sizeof *args);
        return a;
}

/* Runs a and copies its HwArgs back into args when it returned 0. */
static int hw_run(HvConn *c, HvCall *a, HwArgs *args) {
        _cleanup_free_ void *out = NULL;
        int r = hv_call_take(c, a, hv_deadlines.change_ms, &out, NULL);
        if (r == 0 && out)
                memcpy(args, out, sizeof *args);
        return r;
}

static int facts_of(virDomainPtr d, unsigned flags, XmlFacts *ret) {
        _cleanup_free_ char *xml = virDomainGetXMLDesc(d, flags);
        if (!xml)
                return hv_virt_fail("cannot read the definition of domain '%s'", virDomainGetName(d));
        return xml_facts(xml, ret);
}

static int hardware_now(HvConn *c, virDomainPtr d, HvHardware *ret) {
        (void) c;
        HvHardware hw = { .running = virDomainIsActive(d) == 1 };
        XmlFacts cfg, live;
        int r = facts_of(d, VIR_DOMAIN_XML_INACTIVE, &cfg);
        if (r < 0)
                return r;
        if (hw.running && (r = facts_of(d, 0, &live)) < 0)
                return r;
        if (!hw.running)
                live = cfg;
        hw.vcpus = live.vcpus, hw.max_vcpus = live.max_vcpus;
        hw.memory_mib = live.memory_mib, hw.max_memory_mib = live.max_memory_mib;
        hw.config_vcpus = cfg.vcpus, hw.config_max_vcpus = cfg.max_vcpus;
        hw.config_memory_mib = cfg.memory_mib, hw.config_max_memory_mib = cfg.max_memory_mib;
        memcpy(hw.boot, cfg.boot, sizeof hw.boot);
        hw.n_boot = cfg.n_boot;
        *ret = hw;
        return 0;
}

static int hardware_body(HvConn *c, HvCall *a) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, a->s[0], &r);
        if (!d)
                return r;
        return hardware_now(c, d, &((HwArgs *) a->ret.ptr)->hw);
}

int hv_domain_hardware(HvConn *c, const char *uuid, HvHardware *ret) {
        HwArgs args = {0};
        int r = hw_run(c, hw_call(hardware_body, "reading a domain's hardware", uuid, NULL, NULL, &args), &args);
        if (r == 0)
                *ret = args.hw;
        return r;
}

/* The definition's vCPUs: n (0 keeps) and max (0: raised to n when below). */
static int config_vcpus(virDomainPtr d, const HvHardware *hw, unsigned n, unsigned max) {
        unsigned want = n ? n : hw->config_vcpus;
        unsigned newmax = max ? max : want > hw->config_max_vcpus ? want : 0;
        unsigned cfg = VIR_DOMAIN_AFFECT_CONFIG;
        /* A maximum goes up before the count and down after it. */
        if (newmax && newmax >= hw->config_max_vcpus && virDomainSetVcpusFlags(d, newmax, cfg | VIR_DOMAIN_VCPU_MAXIMUM) < 0)
                return hv_virt_fail("cannot set the maximum vCPUs of '%s' to %u", virDomainGetName(d), newmax);
        if (n && virDomainSetVcpusFlags(d, n, cfg) < 0)
                return hv_virt_fail("cannot set the vCPUs of '%s' to %u", virDomainGetName(d), n);
        if (newmax && newmax < hw->config_max_vcpus && virDomainSetVcpusFlags(d, newmax, cfg | VIR_DOMAIN_VCPU_MAXIMUM) < 0)
                return hv_virt_fail("cannot set the maximum vCPUs of '%s' to %u", virDomainGetName(d), newmax);
        return 0;
}

/* The definition's memory likewise (MiB). */
static int config_memory(virDomainPtr d, const HvHardware *hw, uint64_t mem, uint64_t max) {
        uint64_t want = mem ? mem : hw->config_memory_mib;
        uint64_t newmax = max ? max : want > hw->config_max_memory_mib ? want : 0;
        unsigned cfg = VIR_DOMAIN_AFFECT_CONFIG;
        /* libvirt lowers the current size with the maximum: maximum first. */
        if (newmax && virDomainSetMemoryFlags(d, (unsigned long) (newmax << 10), cfg | VIR_DOMAIN_MEM_MAXIMUM) < 0)
                return hv_virt_fail("cannot set the maximum memory of '%s' to %" PRIu64 " MiB", virDomainGetName(d), newmax);
        if (mem && virDomainSetMemoryFlags(d, (unsigned long) (mem << 10), cfg) < 0)
                return hv_virt_fail("cannot set the memory of '%s' to %" PRIu64 " MiB", virDomainGetName(d), mem);
        return 0;
}

static int hardware_set_body(HvConn *c, HvCall *a) {
        HV_LEASE(c);
        int r;
        HwArgs *args = a->ret.ptr;
        const HvHardwareChange *chg = &args->chg;
        HvHardwareApplied *out = &args->applied;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, a->s[0], &r);
        if (!d)
                return r;
        HvHardware hw;
        if ((r = hardware_now(c, d, &hw)) < 0)
                return r;
        /* Live first, each within what the running guest allows. */
        bool live_cpus = hw.running && chg->vcpus && chg->vcpus <= hw.max_vcpus &&
                         virDomainSetVcpusFlags(d, chg->vcpus, VIR_DOMAIN_AFFECT_LIVE) == 0;
        if (hw.running && chg->vcpus && !live_cpus)
                hv_set_error_detail("vCPUs of '%s' not changed live: %s", virDomainGetName(d), chg->vcpus > hw.max_vcpus
                                    ? "above the running maximum" : "libvirt refused");
        bool live_mem = hw.running && chg->memory_mib && chg->memory_mib <= hw.max_memory_mib &&
                        virDomainSetMemoryFlags(d, (unsigned long) (chg->memory_mib << 10), VIR_DOMAIN_AFFECT_LIVE) == 0;
        if ((chg->vcpus || chg->max_vcpus) && (r = config_vcpus(d, &hw, chg->vcpus, chg->max_vcpus)) < 0)
                return r;
        if ((chg->memory_mib || chg->max_memory_mib) && (r = config_memory(d, &hw, chg->memory_mib, chg->max_memory_mib)) < 0)
                return r;
        out->vcpus = !chg->vcpus ? HV_APPLIED_NONE : live_cpus ? HV_APPLIED_LIVE : HV_APPLIED_NEXT_BOOT;
        out->memory = !chg->memory_mib ? HV_APPLIED_NONE : live_mem ? HV_APPLIED_LIVE : HV_APPLIED_NEXT_BOOT;
        out->max_vcpus = chg->max_vcpus ? HV_APPLIED_NEXT_BOOT : HV_APPLIED_NONE;
        out->max_memory = chg->max_memory_mib ? HV_APPLIED_NEXT_BOOT : HV_APPLIED_NONE;
        return 0;
}

int hv_domain_hardware_set(HvConn *c, const char *uuid, const HvHardwareChange *chg, HvHardwareApplied *ret) {
        HwArgs args = { .chg = *chg };
        int r = hw_run(c, hw_call(hardware_set_body, "changing a domain's hardware", uuid, NULL, NULL, &args), &args);
        if (r == 0)
                *ret = args.applied;
        return r;
}

/* Redefines d with e applied to its definition. */
static int define_edited(HvConn *c, virDomainPtr d, const HvConfigEdit *e) {
        _cleanup_free_ char *xml = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
        if (!xml)
                return hv_virt_fail("cannot read the definition of domain '%s'", virDomainGetName(d));
        _cleanup_free_ char *edited = hv_domain_xml_edit(xml, e);
        if (!edited)
                return -EINVAL;
        virDomainPtr nd = virDomainDefineXML(hv_conn_virt(c), edited);
        if (!nd)
                return hv_virt_fail("cannot change the definition of '%s'", virDomainGetName(d));
        virDomainFree(nd);
        return 0;
}

static int disk_attach_body(HvConn *c, HvCall *a) {
        HV_LEASE(c);
        int r;
        HwArgs *args = a->ret.ptr;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, a->s[0], &r);
        if (!d)
                return r;
        _cleanup_free_ char *xml = hv_disk_xml_build(&args->disk);
        if (!xml)
                return -EINVAL;
        if (virDomainIsActive(d) == 1) {
                if (virDomainAttachDeviceFlags(d, xml, VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG) == 0) {
                        args->one = HV_APPLIED_LIVE;
                        return 0;
                }
                (void) hv_virt_fail("cannot hotplug disk '%s' into '%s'", args->disk.target, virDomainGetName(d));
                hv_set_error_detail("%s; adding it for the next boot", hv_last_error());
        }
        HvConfigEdit e = { .add = &args->disk };
        if ((r = define_edited(c, d, &e)) < 0)
                return r;
        args->one = HV_APPLIED_NEXT_BOOT;
        return 0;
}

int hv_domain_disk_attach(HvConn *c, const char *uuid, const HvDisk *disk, HvApplied *ret) {
        HwArgs args = { .disk = *disk };
        int r = hw_run(c, hw_call(disk_attach_body, "adding a disk", uuid, NULL, NULL, &args), &args);
        if (r == 0)
                *ret = args.one;
        return r;
}

static bool facts_have(const XmlFacts *f, const char *target) {
        for (size_t i = 0; i < f->n_targets; i++)
                if (streq(f->targets[i], target))
                        return true;
        return false;
}

static int disk_detach_body(HvConn *c, HvCall *a) {
        HV_LEASE(c);
        int r;
        HwArgs *args = a->ret.ptr;
        const char *target = a->s[1];
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, a->s[0], &r);
        if (!d)
                return r;
        bool running = virDomainIsActive(d) == 1;
        XmlFacts f;
        if ((r = facts_of(d, running ? 0 : VIR_DOMAIN_XML_INACTIVE, &f)) < 0)
                return r;
        if (!facts_have(&f, target)) {
                hv_set_error("VM '%s' has no disk '%s'", virDomainGetName(d), target);
                return -ENOENT;
        }
        if (running) {
                HvDisk disk = {0};
                snprintf(disk.target, sizeof disk.target, "%s", target);
                _cleanup_free_ char *xml = hv_disk_xml_build(&disk);
                if (!xml)
                        return -EINVAL;
                if (virDomainDetachDeviceFlags(d, xml, VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG) < 0)
                        return hv_virt_fail("cannot unplug disk '%s' from '%s'", target, virDomainGetName(d));
                /* The unplug is the guest's to finish: libvirt waits a few
                 * seconds for it, then returns with the disk still there. */
                if ((r = facts_of(d, 0, &f)) < 0)
                        return r;
                if (facts_have(&f, target)) {
                        hv_set_error("the guest of '%s' has not released disk '%s' yet; try again, or stop the VM first",
                                     virDomainGetName(d), target);
                        return -EBUSY;
                }
                args->one = HV_APPLIED_LIVE;
                return 0;
        }
        HvConfigEdit e = { .drop = target };
        if ((r = define_edited(c, d, &e)) < 0)
                return r;
        args->one = HV_APPLIED_NEXT_BOOT;
        return 0;
}

int hv_domain_disk_detach(HvConn *c, const char *uuid, const char *target, HvApplied *ret) {
        HwArgs args = {0};
        int r = hw_run(c, hw_call(disk_detach_body, "removing a disk", uuid, target, NULL, &args), &args);
        if (r == 0)
                *ret = args.one;
        return r;
}

static int disk_resize_body(HvConn *c, HvCall *a) {
        HV_LEASE(c);
        int r;
        HwArgs *args = a->ret.ptr;
        const char *target = a->s[1], *path = a->s[2];
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, a->s[0], &r);
        if (!d)
                return r;
        if (virDomainIsActive(d) == 1) {
                if (virDomainBlockResize(d, target, args->bytes, VIR_DOMAIN_BLOCK_RESIZE_BYTES) < 0)
                        return hv_virt_fail("cannot grow disk '%s' of '%s'", target, virDomainGetName(d));
                args->one = HV_APPLIED_LIVE;
                return 0;
        }
        _cleanup_vol_ virStorageVolPtr v = virStorageVolLookupByPath(hv_conn_virt(c), path);
        if (!v)
                return hv_virt_fail("cannot find the volume of disk '%s' of '%s'", target, virDomainGetName(d));
        if (virStorageVolResize(v, args->bytes, 0) < 0)
                return hv_virt_fail("cannot grow the volume of disk '%s' of '%s'", target, virDomainGetName(d));
        args->one = HV_APPLIED_NEXT_BOOT;
        return 0;
}

int hv_domain_disk_resize(HvConn *c, const char *uuid, const char *target, const char *path, uint64_t bytes, HvApplied *ret) {
        HwArgs args = { .bytes = bytes };
        int r = hw_run(c, hw_call(disk_resize_body, "growing a disk", uuid, target, path, &args), &args);
        if (r == 0)
                *ret = args.one;
        return r;
}

static int cd_set_body(HvConn *c, HvCall *a) {
        HV_LEASE(c);
        int r;
        HwArgs *args = a->ret.ptr;
        const char *path = a->s[1] ? a->s[1] : "";
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, a->s[0], &r);
        if (!d)
                return r;
        bool running = virDomainIsActive(d) == 1;
        XmlFacts f;
        if ((r = facts_of(d, VIR_DOMAIN_XML_INACTIVE, &f)) < 0)
                return r;
        HvDisk cd = { .cdrom = true, .format = "raw" };
        snprintf(cd.path, sizeof cd.path, "%s", path);
        if (!f.cd_target[0]) {
                /* No drive: one on the first free IDE slot, for the next
                 * boot (IDE does not hotplug). */
                const char *free_t = NULL;
                for (const char *const *t = (const char *const[]) { "hdc", "hdd", "hdb", NULL }; *t && !free_t; t++)
                        if (!facts_have(&f, *t))
                                free_t = *t;
                if (!free_t) {
                        hv_set_error("VM '%s' has no CD-ROM drive and no free IDE slot for one", virDomainGetName(d));
                        return -ENOSPC;
                }
                snprintf(cd.target, sizeof cd.target, "%s", free_t);
                HvConfigEdit e = { .add = &cd };
                if ((r = define_edited(c, d, &e)) < 0)
                        return r;
                args->one = HV_APPLIED_NEXT_BOOT;
                args->disk = cd;
                return 0;
        }
        snprintf(cd.target, sizeof cd.target, "%s", f.cd_target);
        args->disk = cd;
        if (running) {
                _cleanup_free_ char *xml = hv_disk_xml_build(&cd);
                if (!xml)
                        return -EINVAL;
                if (virDomainUpdateDeviceFlags(d, xml, VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG |
                                               VIR_DOMAIN_DEVICE_MODIFY_FORCE) < 0)
                        return hv_virt_fail("cannot change the medium in drive '%s' of '%s'", cd.target, virDomainGetName(d));
                args->one = HV_APPLIED_LIVE;
                return 0;
        }
        HvConfigEdit e = { .media_target = cd.target, .media = path };
        if ((r = define_edited(c, d, &e)) < 0)
                return r;
        args->one = HV_APPLIED_NEXT_BOOT;
        return 0;
}

int hv_domain_cd_set(HvConn *c, const char *uuid, const char *path, HvApplied *ret, char ret_target[16]) {
        HwArgs args = {0};
        int r = hw_run(c, hw_call(cd_set_body, "changing a CD-ROM", uuid, path ? path : "", NULL, &args), &args);
        if (r == 0) {
                *ret = args.one;
                snprintf(ret_target, 16, "%s", args.disk.target);
        }
        return r;
}

static int boot_order_body(HvConn *c, HvCall *a) {
        HV_LEASE(c);
        int r;
        HwArgs *args = a->ret.ptr;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, a->s[0], &r);
        if (!d)
                return r;
        const char *devs[4];
        for (size_t i = 0; i < args->n_boot; i++)
                devs[i] = args->boot[i];
        HvConfigEdit e = { .boot_order = devs, .n_boot = args->n_boot };
        return define_edited(c, d, &e);
}

int hv_domain_boot_order(HvConn *c, const char *uuid, const char *const *devs, size_t n) {
        if (n == 0 || n > 4) {
                hv_set_error("a boot order names one to four devices");
                return -EINVAL;
        }
        HwArgs args = { .n_boot = n };
        for (size_t i = 0; i < n; i++)
                snprintf(args.boot[i], sizeof args.boot[i], "%.7s", devs[i]);
        return hw_run(c, hw_call(boot_order_body, "setting a boot order", uuid, NULL, NULL, &args), &args);
}
