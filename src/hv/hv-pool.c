/* hv-pool: storage pools and their volumes (see hv-pool.h). */
#include "hv-pool.h"
#include "hv-internal.h"
#include "hv-cleanup.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

static const char *const TYPES[] = { "dir", "netfs", "iscsi", "logical", NULL };

static bool path_ok(const char *s) {
        if (!s || s[0] != '/' || strlen(s) > 500 || strstr(s, "/../") || strstr(s, "/./"))
                return false;
        size_t n = strlen(s);
        if ((n >= 3 && streq(s + n - 3, "/..")) || (n >= 2 && streq(s + n - 2, "/.")))
                return false;
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f || strchr("\"'\\`$", *p))
                        return false;
        return true;
}

/* A host name or an address: letters, digits, '.', '-', ':' (IPv6), not starting with '-'. */
static bool server_ok(const char *s) {
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > 253 || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char) s[i]) && !strchr(".-:", s[i]))
                        return false;
        return true;
}

/* An IQN ("iqn.2003-01.org.example:disk1") or a volume group name. */
static bool source_name_ok(const char *s) {
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > 223 || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char) s[i]) && !strchr(".-:_+", s[i]))
                        return false;
        return true;
}

int hv_pool_spec_check(const HvPoolSpec *spec, const char **ret_field, char *why, size_t why_size) {
#define BAD(field, ...) do { *ret_field = field; snprintf(why, why_size, __VA_ARGS__); return -EINVAL; } while (0)
        if (!name_is_valid(spec->name))
                BAD("name", "A pool's name is 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit.");
        const char *t = spec->type;
        bool known = false;
        for (size_t i = 0; t && TYPES[i]; i++)
                known = known || streq(t, TYPES[i]);
        if (!known)
                BAD("type", "A pool's type is dir, netfs, iscsi or logical.");
        bool wants_path = streq(t, "dir") || streq(t, "netfs"), wants_host = streq(t, "netfs") || streq(t, "iscsi"),
             wants_spath = streq(t, "netfs"), wants_sname = streq(t, "iscsi") || streq(t, "logical");
        if (wants_path && !spec->path)
                BAD("path", "A %s pool needs the directory on the host where its volumes live.", t);
        if (!wants_path && spec->path)
                BAD("path", "A %s pool has no directory of its own; leave 'path' out.", t);
        if (spec->path && !path_ok(spec->path))
                BAD("path", "A pool's path is absolute, without '.' or '..' segments, quotes or control characters.");
        if (wants_host && !spec->source_host)
                BAD("source_host", "A %s pool needs the server that holds it.", t);
        if (!wants_host && spec->source_host)
                BAD("source_host", "A %s pool has no server; leave 'source_host' out.", t);
        if (spec->source_host && !server_ok(spec->source_host))
                BAD("source_host", "A server is a host name or an address.");
        if (wants_spath && !spec->source_path)
                BAD("source_path", "An NFS pool needs the directory the server exports.");
        if (!wants_spath && spec->source_path)
                BAD("source_path", "Only an NFS pool has an exported directory; leave 'source_path' out.");
        if (spec->source_path && !path_ok(spec->source_path))
                BAD("source_path", "An exported directory is an absolute path without '.' or '..' segments, quotes or control characters.");
        if (wants_sname && !spec->source_name)
                BAD("source_name", streq(t, "iscsi") ? "An iSCSI pool needs the target's IQN." : "An LVM pool needs its volume group's name.");
        if (!wants_sname && spec->source_name)
                BAD("source_name", "A %s pool has no source name; leave 'source_name' out.", t);
        if (spec->source_name && !source_name_ok(spec->source_name))
                BAD("source_name", "A source name is letters, digits, '.', '-', ':', '_' or '+'.");
        return 0;
#undef BAD
}

static xmlNodePtr add(xmlNodePtr parent, const char *name, const char *text) {
        return xmlNewTextChild(parent, NULL, BAD_CAST name, text ? BAD_CAST text : NULL);
}

static void set(xmlNodePtr n, const char *name, const char *value) {
        xmlNewProp(n, BAD_CAST name, BAD_CAST value);
}

char *hv_pool_xml_build(const HvPoolSpec *spec) {
        const char *field;
        char why[256];
        if (hv_pool_spec_check(spec, &field, why, sizeof why) < 0) {
                hv_set_error("cannot build pool XML: %s", why);
                return NULL;
        }
        xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
        xmlNodePtr p = xmlNewNode(NULL, BAD_CAST "pool");
        xmlDocSetRootElement(doc, p);
        set(p, "type", spec->type);
        add(p, "name", spec->name);
        xmlNodePtr src = add(p, "source", NULL);
        const char *target = spec->path;
        _cleanup_free_ char *vg_path = NULL;
        if (spec->source_host)
                set(add(src, "host", NULL), "name", spec->source_host);
        if (streq(spec->type, "netfs")) {
                set(add(src, "dir", NULL), "path", spec->source_path);
                set(add(src, "format", NULL), "type", "nfs");
        } else if (streq(spec->type, "iscsi")) {
                set(add(src, "device", NULL), "path", spec->source_name);
                target = "/dev/disk/by-path";
        } else if (streq(spec->type, "logical")) {
                add(src, "name", spec->source_name);
                set(add(src, "format", NULL), "type", "lvm2");
                vg_path = xasprintf("/dev/%s", spec->source_name);
                target = vg_path;
        }
        add(add(p, "target", NULL), "path", target);
        xmlChar *mem = NULL;
        int len = 0;
        xmlDocDumpFormatMemoryEnc(doc, &mem, &len, "UTF-8", 1);
        char *s = xstrdup(mem ? (const char *) mem : "");
        xmlFree(mem);
        xmlFreeDoc(doc);
        return s;
}

static int add_now(HvConn *c, const HvPoolSpec *spec) {
        HV_LEASE(c);
        _cleanup_free_ char *xml = hv_pool_xml_build(spec);
        if (!xml)
                return -EINVAL;
        _cleanup_pool_ virStoragePoolPtr old = virStoragePoolLookupByName(hv_conn_virt(c), spec->name);
        if (old) {
                hv_set_error("the host has a storage pool '%s' already", spec->name);
                return -EEXIST;
        }
        _cleanup_pool_ virStoragePoolPtr p = virStoragePoolDefineXML(hv_conn_virt(c), xml, 0);
        if (!p)
                return hv_virt_fail("cannot define storage pool '%s'", spec->name);
        int r = 0;
        /* Build makes the directory (dir, and netfs's mount point); an
         * iSCSI target or a volume group exists already. */
        if ((streq(spec->type, "dir") || streq(spec->type, "netfs")) && virStoragePoolBuild(p, 0) < 0)
                r = hv_virt_fail("cannot create the directory of storage pool '%s'", spec->name);
        if (r == 0 && virStoragePoolCreate(p, 0) < 0)
                r = hv_virt_fail("cannot start storage pool '%s'", spec->name);
        if (r == 0 && virStoragePoolSetAutostart(p, 1) < 0)
                r = hv_virt_fail("cannot make storage pool '%s' start at boot", spec->name);
        if (r < 0) {
                /* leave nothing half-made behind */
                if (virStoragePoolIsActive(p) > 0)
                        (void) virStoragePoolDestroy(p);
                (void) virStoragePoolUndefine(p);
        }
        return r;
}

static int add_body(HvConn *c, HvCall *a) {
        HvPoolSpec spec = { .name = a->s[0], .type = a->s[1], .path = a->s[2], .source_host = a->s[3] };
        /* two more strings than HvCall carries: they ride in ret.str as "path\0name" */
        const char *extra = a->ret.str;
        if (extra) {
                spec.source_path = extra[0] ? extra : NULL;
                const char *second = extra + strlen(extra) + 1;
                spec.source_name = second[0] ? second : NULL;
        }
        return add_now(c, &spec);
}

int hv_pool_add(HvConn *c, const HvPoolSpec *spec) {
        HvCall *a = hv_call_new(add_body, "adding a storage pool", spec->name, spec->type, spec->path, spec->source_host);
        const char *sp = spec->source_path ? spec->source_path : "", *sn = spec->source_name ? spec->source_name : "";
        size_t l1 = strlen(sp), l2 = strlen(sn);
        char *extra = xcalloc(l1 + l2 + 2, 1);
        memcpy(extra, sp, l1);
        memcpy(extra + l1 + 1, sn, l2);
        a->ret.str = extra;   /* freed by hv_call_free() */
        return hv_call_code(c, a, hv_deadlines.change_ms);
}

static int remove_now(HvConn *c, const char *name) {
        HV_LEASE(c);
        _cleanup_pool_ virStoragePoolPtr p = virStoragePoolLookupByName(hv_conn_virt(c), name);
        if (!p) {
                if (hv_virt_code() == VIR_ERR_NO_STORAGE_POOL) {
                        hv_set_error("the host has no storage pool '%s'", name);
                        return -ENOENT;
                }
                return hv_virt_fail("cannot look up storage pool '%s'", name);
        }
        if (virStoragePoolIsActive(p) > 0 && virStoragePoolDestroy(p) < 0)
                return hv_virt_fail("cannot stop storage pool '%s'", name);
        if (virStoragePoolIsPersistent(p) > 0 && virStoragePoolUndefine(p) < 0)
                return hv_virt_fail("cannot undefine storage pool '%s'", name);
        return 0;
}

static int remove_body(HvConn *c, HvCall *a) {
        return remove_now(c, a->s[0]);
}

int hv_pool_remove(HvConn *c, const char *name) {
        return hv_call_code(c, hv_call_new(remove_body, "removing a storage pool", name, NULL, NULL, NULL), hv_deadlines.change_ms);
}

/* The string value of XPath expr in xml into out ("" when none); the
 * reader refuses DTDs and network access. */
static void xml_value(const char *xml, const char *expr, char *out, size_t size) {
        out[0] = 0;
        if (!xml || strlen(xml) > INT_MAX)
                return;
        xmlDocPtr doc = xmlReadMemory(xml, (int) strlen(xml), NULL, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc)
                return;
        if (!doc->intSubset && !doc->extSubset && xmlDocGetRootElement(doc)) {
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
        }
        xmlFreeDoc(doc);
}

static int list_now(HvConn *c, HvPoolInfo **ret, size_t *ret_n) {
        HV_LEASE(c);
        virStoragePoolPtr *pools = NULL;
        int n = virConnectListAllStoragePools(hv_conn_virt(c), &pools, 0);
        if (n < 0)
                return hv_virt_fail("cannot list the host's storage pools");
        HvPoolInfo *out = xcalloc((size_t) n + 1, sizeof *out);
        size_t k = 0;
        for (int i = 0; i < n; i++) {
                const char *name = virStoragePoolGetName(pools[i]);
                if (name && strlen(name) < sizeof out[k].name) {
                        HvPoolInfo *o = &out[k++];
                        snprintf(o->name, sizeof o->name, "%s", name);
                        virStoragePoolInfo info;
                        if (virStoragePoolGetInfo(pools[i], &info) == 0) {
                                o->active = info.state == VIR_STORAGE_POOL_RUNNING || info.state == VIR_STORAGE_POOL_DEGRADED;
                                o->capacity = info.capacity;
                                o->allocation = info.allocation;
                                o->available = info.available;
                        }
                        if (o->active) {
                                int nv = virStoragePoolNumOfVolumes(pools[i]);
                                o->n_volumes = nv > 0 ? (unsigned) nv : 0;
                        }
                        _cleanup_free_ char *xml = virStoragePoolGetXMLDesc(pools[i], 0);
                        xml_value(xml, "string(/pool/@type)", o->type, sizeof o->type);
                        xml_value(xml, "string(/pool/target/path)", o->path, sizeof o->path);
                }
                virStoragePoolFree(pools[i]);
        }
        free(pools);
        *ret = out;
        *ret_n = k;
        return 0;
}

static int list_body(HvConn *c, HvCall *a) {
        HvPoolInfo *list = NULL;
        int r = list_now(c, &list, &a->ret_n);
        a->ret.ptr = list;
        return r;
}

int hv_pool_list(HvConn *c, HvPoolInfo **ret, size_t *ret_n) {
        return HV_CALL_TAKE(c, hv_call_new(list_body, "listing storage pools", NULL, NULL, NULL, NULL), hv_deadlines.query_ms, ret, ret_n);
}

static int lookup_pool(HvConn *c, const char *name, virStoragePoolPtr *ret) {
        virStoragePoolPtr p = virStoragePoolLookupByName(hv_conn_virt(c), name);
        if (!p) {
                if (hv_virt_code() == VIR_ERR_NO_STORAGE_POOL) {
                        hv_set_error("the host has no storage pool '%s'", name);
                        return -ENOENT;
                }
                return hv_virt_fail("cannot look up storage pool '%s'", name);
        }
        if (virStoragePoolIsActive(p) <= 0) {
                virStoragePoolFree(p);
                hv_set_error("storage pool '%s' is not active", name);
                return -EBUSY;
        }
        *ret = p;
        return 0;
}

static int volumes_now(HvConn *c, const char *pool, HvVolumeInfo **ret, size_t *ret_n) {
        HV_LEASE(c);
        _cleanup_pool_ virStoragePoolPtr p = NULL;
        int r = lookup_pool(c, pool, &p);
        if (r < 0)
                return r;
        (void) virStoragePoolRefresh(p, 0);
        virStorageVolPtr *vols = NULL;
        int n = virStoragePoolListAllVolumes(p, &vols, 0);
        if (n < 0)
                return hv_virt_fail("cannot list the volumes of storage pool '%s'", pool);
        HvVolumeInfo *out = xcalloc((size_t) n + 1, sizeof *out);
        size_t k = 0;
        for (int i = 0; i < n; i++) {
                const char *name = virStorageVolGetName(vols[i]);
                _cleanup_free_ char *path = virStorageVolGetPath(vols[i]);
                if (name && path && strlen(name) < sizeof out[k].name && strlen(path) < sizeof out[k].path) {
                        HvVolumeInfo *o = &out[k++];
                        snprintf(o->name, sizeof o->name, "%s", name);
                        snprintf(o->path, sizeof o->path, "%s", path);
                        virStorageVolInfo info;
                        if (virStorageVolGetInfo(vols[i], &info) == 0) {
                                o->capacity = info.capacity;
                                o->allocation = info.allocation;
                        }
                        _cleanup_free_ char *xml = virStorageVolGetXMLDesc(vols[i], 0);
                        xml_value(xml, "string(/volume/target/format/@type)", o->format, sizeof o->format);
                }
                virStorageVolFree(vols[i]);
        }
        free(vols);
        *ret = out;
        *ret_n = k;
        return 0;
}

static int volumes_body(HvConn *c, HvCall *a) {
        HvVolumeInfo *list = NULL;
        int r = volumes_now(c, a->s[0], &list, &a->ret_n);
        a->ret.ptr = list;
        return r;
}

int hv_pool_volumes(HvConn *c, const char *pool, HvVolumeInfo **ret, size_t *ret_n) {
        return HV_CALL_TAKE(c, hv_call_new(volumes_body, "listing volumes", pool, NULL, NULL, NULL), hv_deadlines.query_ms, ret, ret_n);
}

static int vol_delete_now(HvConn *c, const char *pool, const char *vol) {
        HV_LEASE(c);
        _cleanup_pool_ virStoragePoolPtr p = NULL;
        int r = lookup_pool(c, pool, &p);
        if (r < 0)
                return r;
        _cleanup_vol_ virStorageVolPtr v = virStorageVolLookupByName(p, vol);
        if (!v) {
                if (hv_virt_code() == VIR_ERR_NO_STORAGE_VOL) {
                        hv_set_error("storage pool '%s' has no volume '%s'", pool, vol);
                        return -ENOENT;
                }
                return hv_virt_fail("cannot look up volume '%s' in storage pool '%s'", vol, pool);
        }
        if (virStorageVolDelete(v, 0) < 0)
                return hv_virt_fail("cannot delete volume '%s' of storage pool '%s'", vol, pool);
        return 0;
}

static int vol_delete_body(HvConn *c, HvCall *a) {
        return vol_delete_now(c, a->s[0], a->s[1]);
}

int hv_pool_volume_delete(HvConn *c, const char *pool, const char *vol) {
        return hv_call_code(c, hv_call_new(vol_delete_body, "deleting a volume", pool, vol, NULL, NULL), hv_deadlines.change_ms);
}
