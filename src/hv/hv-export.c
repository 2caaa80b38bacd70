/* hv-export: the network cards of domain XML, for export descriptors and
 * clones (see hv-export.h). */
#include "hv-export.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include <libvirt/libvirt.h>

#include "hv-internal.h"

static void copy_attr(char *dst, size_t size, xmlNode *n, const char *attr) {
        xmlChar *v = n ? xmlGetProp(n, BAD_CAST attr) : NULL;
        snprintf(dst, size, "%s", v ? (const char *) v : "");
        xmlFree(v);
}

static xmlNode *elem_child(xmlNode *parent, const char *name) {
        for (xmlNode *n = parent->children; n; n = n->next)
                if (n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST name))
                        return n;
        return NULL;
}

int hv_domain_nics(const char *xml, HvNic ret[HV_MAX_NICS], size_t *ret_n) {
        size_t len = xml ? strlen(xml) : 0;
        if (!xml || len > INT_MAX) {
                hv_set_error("cannot read the network cards of a domain: its XML is missing or too large");
                return -EINVAL;
        }
        xmlDoc *doc = xmlReadMemory(xml, (int) len, NULL, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
        if (!root || doc->intSubset || doc->extSubset || !xmlStrEqual(root->name, BAD_CAST "domain")) {
                xmlFreeDoc(doc);
                hv_set_error("cannot read the network cards of a domain: its XML does not parse");
                return -EINVAL;
        }
        size_t n = 0;
        xmlNode *devices = elem_child(root, "devices");
        for (xmlNode *i = devices ? devices->children : NULL; i && n < HV_MAX_NICS; i = i->next) {
                if (i->type != XML_ELEMENT_NODE || !xmlStrEqual(i->name, BAD_CAST "interface"))
                        continue;
                HvNic *nic = &ret[n++];
                copy_attr(nic->type, sizeof nic->type, i, "type");
                xmlNode *src = elem_child(i, "source");
                copy_attr(nic->source, sizeof nic->source, src, streq(nic->type, "bridge") ? "bridge" : "network");
                copy_attr(nic->mac, sizeof nic->mac, elem_child(i, "mac"), "address");
                copy_attr(nic->model, sizeof nic->model, elem_child(i, "model"), "type");
        }
        xmlFreeDoc(doc);
        *ret_n = n;
        return 0;
}

static int volume_capacity_body(HvConn *c, HvCall *a) {
        HV_LEASE(c);
        virStorageVolPtr vol = virStorageVolLookupByPath(hv_conn_virt(c), a->s[0]);
        if (!vol)
                return hv_virt_fail("cannot find the volume '%s' on the host", a->s[0]);
        virStorageVolInfo info;
        int r = virStorageVolGetInfo(vol, &info);
        virStorageVolFree(vol);
        if (r < 0)
                return hv_virt_fail("cannot read the size of '%s' on the host", a->s[0]);
        a->n[1] = info.capacity;
        return 0;
}

int hv_volume_capacity(HvConn *c, const char *path, uint64_t *ret) {
        HvCall *a = hv_call_new(volume_capacity_body, "reading a volume's size", path, NULL, NULL, NULL);
        if (!hv_call(c, a, hv_deadlines.query_ms))
                return -ETIMEDOUT;
        int r = a->r;
        if (r == 0)
                *ret = a->n[1];
        hv_call_free(a);
        return r;
}

/* The <target><format type=...> of volume XML, "" when none. */
static void vol_format(const char *xml, char out[16]) {
        out[0] = 0;
        xmlDoc *doc = xml ? xmlReadMemory(xml, (int) strlen(xml), NULL, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR |
                                          XML_PARSE_NOWARNING) : NULL;
        xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
        xmlNode *t = root ? elem_child(root, "target") : NULL;
        copy_attr(out, 16, t ? elem_child(t, "format") : NULL, "type");
        xmlFreeDoc(doc);
}

static char *qcow2_volume_xml(const char *name, unsigned long long capacity) {
        xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
        xmlNode *v = xmlNewNode(NULL, BAD_CAST "volume");
        xmlDocSetRootElement(doc, v);
        xmlNewTextChild(v, NULL, BAD_CAST "name", BAD_CAST name);
        char num[32];
        snprintf(num, sizeof num, "%llu", capacity);
        xmlNewProp(xmlNewTextChild(v, NULL, BAD_CAST "capacity", BAD_CAST num), BAD_CAST "unit", BAD_CAST "bytes");
        xmlNewProp(xmlNewTextChild(v, NULL, BAD_CAST "allocation", BAD_CAST "0"), BAD_CAST "unit", BAD_CAST "bytes");
        xmlNode *t = xmlNewChild(v, NULL, BAD_CAST "target", NULL);
        xmlNewProp(xmlNewChild(t, NULL, BAD_CAST "format", NULL), BAD_CAST "type", BAD_CAST "qcow2");
        xmlChar *mem = NULL;
        int len = 0;
        xmlDocDumpMemory(doc, &mem, &len);
        char *s = xstrdup((const char *) mem);
        xmlFree(mem);
        xmlFreeDoc(doc);
        return s;
}

static int volume_convert_body(HvConn *c, HvCall *a) {
        HV_LEASE(c);
        const char *pool = a->s[0], *name = a->s[1], *src_path = a->s[2], *want = a->s[3];
        virStoragePoolPtr p = virStoragePoolLookupByName(hv_conn_virt(c), pool);
        if (!p)
                return hv_virt_fail("cannot find storage pool '%s'", pool);
        int r = 0;
        virStorageVolPtr vol = NULL, src = virStorageVolLookupByPath(hv_conn_virt(c), src_path);
        char *desc = src ? virStorageVolGetXMLDesc(src, 0) : NULL;
        char fmt[16];
        virStorageVolInfo info;
        if (!src || !desc)
                r = hv_virt_fail("cannot find '%s' on the host to convert it", src_path);
        else if (vol_format(desc, fmt), !streq(fmt, want)) {
                hv_set_error("the host reads '%s' as '%s', not '%s': it is not converted there", src_path, fmt, want);
                r = -EMEDIUMTYPE;
        } else if (virStorageVolGetInfo(src, &info) < 0)
                r = hv_virt_fail("cannot read the size of '%s'", src_path);
        else {
                char *xml = qcow2_volume_xml(name, info.capacity);
                vol = virStorageVolCreateXMLFrom(p, xml, src, 0);
                free(xml);
                if (!vol)
                        r = hv_virt_fail("cannot convert '%s' into volume '%s' of storage pool '%s'", src_path, name, pool);
                else if (!(a->ret.str = virStorageVolGetPath(vol)))
                        r = hv_virt_fail("cannot read the path of new volume '%s'", name);
        }
        free(desc);
        if (vol)
                virStorageVolFree(vol);
        if (src)
                virStorageVolFree(src);
        virStoragePoolFree(p);
        return r;
}

int hv_volume_convert_from(HvConn *c, const char *pool, const char *vol_name, const char *src_path, const char *src_format,
                           char **ret_path) {
        return HV_CALL_TAKE(c, hv_call_new(volume_convert_body, "converting a volume", pool, vol_name, src_path, src_format),
                            hv_deadlines.copy_ms, ret_path, NULL);
}
