/* hv-snapshot: internal qcow2 snapshots of domains through libvirt
 * (virDomainSnapshotCreateXML and friends), and the pure XML that goes
 * with them. Why internal: on libvirt 9.0 reverting an external snapshot
 * is not implemented (it came with 9.9); internal ones revert on every
 * version, need no overlay files to track, and move with the qcow2 image.
 * docs/architecture.md (Protection, Snapshots) says more. */
#include "hv-snapshot.h"
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

/* ---- XML (pure) ---- */

static xmlNode *add(xmlNode *parent, const char *name, const char *text) {
        xmlNode *n = xmlNewTextChild(parent, NULL, BAD_CAST name, BAD_CAST text);
        if (!n)
                hv_xml_oom();
        return n;
}

static void set(xmlNode *n, const char *name, const char *value) {
        if (!xmlNewProp(n, BAD_CAST name, BAD_CAST value))
                hv_xml_oom();
}

char *hv_snapshot_xml_build(const char *name, const char *description, bool memory, const HvDisk *disks, size_t n) {
        if (!name || !*name || strlen(name) > HV_SNAPSHOT_NAME_MAX) {
                hv_set_error("a snapshot name must have 1 to %d characters", HV_SNAPSHOT_NAME_MAX);
                return NULL;
        }
        for (size_t i = 0; i < n; i++)
                if (!disks[i].cdrom && !streq(disks[i].format, "qcow2")) {
                        hv_set_error("disk '%s' is %s, which cannot hold an internal snapshot (only qcow2 can)", disks[i].target,
                                     disks[i].format[0] ? disks[i].format : "raw");
                        return NULL;
                }
        hv_xml_init();
        _cleanup_xmldoc_ xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
        xmlNode *root = doc ? xmlNewNode(NULL, BAD_CAST "domainsnapshot") : NULL;
        if (!root)
                hv_xml_oom();
        xmlDocSetRootElement(doc, root);
        add(root, "name", name);
        if (description && *description)
                add(root, "description", description);
        set(add(root, "memory", NULL), "snapshot", memory ? "internal" : "no");
        if (n > 0) {
                xmlNode *ds = add(root, "disks", NULL);
                for (size_t i = 0; i < n; i++) {
                        xmlNode *d = add(ds, "disk", NULL);
                        set(d, "name", disks[i].target);
                        set(d, "snapshot", disks[i].cdrom ? "no" : "internal");
                }
        }
        xmlBuffer *buf = xmlBufferCreate();
        if (!buf || xmlNodeDump(buf, doc, root, 0, 1) < 0)
                hv_xml_oom();
        char *s = xasprintf("%s\n", (const char *) xmlBufferContent(buf));
        xmlBufferFree(buf);
        return s;
}

static bool is_elem(const xmlNode *n, const char *name) {
        return n->type == XML_ELEMENT_NODE && !n->ns && xmlStrEqual(n->name, BAD_CAST name);
}

static xmlNode *child(const xmlNode *parent, const char *name) {
        for (xmlNode *n = parent ? parent->children : NULL; n; n = n->next)
                if (is_elem(n, name))
                        return n;
        return NULL;
}

/* The text of parent's child name into dst[size]; "" when absent. */
static int text_of(const xmlNode *parent, const char *name, char *dst, size_t size) {
        xmlNode *n = child(parent, name);
        _cleanup_xmlstr_ xmlChar *t = n ? xmlNodeGetContent(n) : NULL;
        const char *s = t ? (const char *) t : "";
        if (strlen(s) >= size) {
                hv_set_error("cannot parse snapshot XML: its %s is longer than the %zu characters Armada keeps", name, size - 1);
                return -EINVAL;
        }
        strcpy(dst, s);
        return 0;
}

int hv_snapshot_xml_parse(const char *xml, HvSnapshot *ret) {
        if (!xml || strlen(xml) > INT_MAX) {
                hv_set_error("cannot parse snapshot XML: there is none");
                return -EINVAL;
        }
        hv_xml_init();
        _cleanup_xmldoc_ xmlDoc *doc = xmlReadMemory(xml, (int) strlen(xml), NULL, NULL,
                                                     XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
        if (!root || doc->intSubset || doc->extSubset || !is_elem(root, "domainsnapshot")) {
                hv_set_error("cannot parse snapshot XML: it is not a well-formed <domainsnapshot> without a DTD");
                return -EINVAL;
        }
        HvSnapshot s = {0};
        char created[32];
        if (text_of(root, "name", s.name, sizeof s.name) < 0 || text_of(root, "description", s.description, sizeof s.description) < 0 ||
            text_of(root, "state", s.state, sizeof s.state) < 0 || text_of(child(root, "parent"), "name", s.parent, sizeof s.parent) < 0 ||
            text_of(root, "creationTime", created, sizeof created) < 0)
                return -EINVAL;
        if (!s.name[0]) {
                hv_set_error("cannot parse snapshot XML: it has no <name>");
                return -EINVAL;
        }
        int64_t t;
        if (created[0] && parse_i64(created, &t) == 0 && t >= 0)
                s.created = t;
        xmlNode *mem = child(root, "memory");
        _cleanup_xmlstr_ xmlChar *kind = mem ? xmlGetProp(mem, BAD_CAST "snapshot") : NULL;
        bool live = streq(s.state, "running") || streq(s.state, "paused") || streq(s.state, "blocked");
        s.has_memory = kind ? (xmlStrEqual(kind, BAD_CAST "internal") || xmlStrEqual(kind, BAD_CAST "external")) && live : live;
        *ret = s;
        return 0;
}

/* ---- libvirt ---- */

static int lookup(HvConn *c, const char *uuid, const char *what, virDomainPtr *ret) {
        if (!uuid || !uuid_is_valid(uuid)) {
                hv_set_error("%s: '%s' is not a UUID", what, uuid ? uuid : "");
                return -EINVAL;
        }
        virDomainPtr d = virDomainLookupByUUIDString(hv_conn_virt(c), uuid);
        if (!d)
                return hv_virt_fail("%s of domain '%s' failed", what, uuid);
        *ret = d;
        return 0;
}

static int snap_lookup(virDomainPtr d, const char *name, const char *what, virDomainSnapshotPtr *ret) {
        virDomainSnapshotPtr s = virDomainSnapshotLookupByName(d, name, 0);
        if (!s) {
                if (hv_virt_code() == VIR_ERR_NO_DOMAIN_SNAPSHOT) {
                        hv_set_error("%s: the domain has no snapshot '%s'", what, name);
                        return -ENOENT;
                }
                return hv_virt_fail("%s: looking up snapshot '%s' failed", what, name);
        }
        *ret = s;
        return 0;
}

static int cmp_snap(const void *a, const void *b) {
        const HvSnapshot *x = a, *y = b;
        if (x->created != y->created)
                return x->created < y->created ? -1 : 1;
        if (streq(y->parent, x->name))
                return -1;
        if (streq(x->parent, y->name))
                return 1;
        return strcmp(x->name, y->name);
}

static int list_now(HvConn *c, const char *uuid, HvSnapshot **ret, size_t *ret_n) {
        HV_LEASE(c);
        _cleanup_domain_ virDomainPtr d = NULL;
        int r = lookup(c, uuid, "listing the snapshots", &d);
        if (r < 0)
                return r;
        virDomainSnapshotPtr *snaps = NULL;
        int n = virDomainListAllSnapshots(d, &snaps, 0);
        if (n < 0)
                return hv_virt_fail("listing the snapshots of domain '%s' failed", uuid);
        HvSnapshot *out = xcalloc((size_t) n + 1, sizeof *out);
        size_t k = 0;
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *xml = r < 0 ? NULL : virDomainSnapshotGetXMLDesc(snaps[i], 0);
                if (r >= 0 && !xml && hv_virt_code() != VIR_ERR_NO_DOMAIN_SNAPSHOT) /* deleted meanwhile: left out */
                        r = hv_virt_fail("reading a snapshot of domain '%s' failed", uuid);
                if (r >= 0 && xml) {
                        r = hv_snapshot_xml_parse(xml, &out[k]);
                        if (r == 0)
                                out[k++].current = virDomainSnapshotIsCurrent(snaps[i], 0) == 1;
                }
                virDomainSnapshotFree(snaps[i]);
        }
        free(snaps);
        if (r < 0) {
                free(out);
                return r;
        }
        qsort(out, k, sizeof *out, cmp_snap);
        *ret = out;
        *ret_n = k;
        return 0;
}

static int list_body(HvConn *c, HvCall *a) {
        HvSnapshot *list = NULL;
        int r = list_now(c, a->s[0], &list, &a->ret_n);
        a->ret.ptr = list;
        return r;
}

int hv_snapshot_list(HvConn *c, const char *uuid, HvSnapshot **ret, size_t *ret_n) {
        return HV_CALL_TAKE(c, hv_call_new(list_body, "listing snapshots", uuid, NULL, NULL, NULL), hv_deadlines.query_ms, ret, ret_n);
}

static int create_now(HvConn *c, const char *uuid, const char *xml) {
        HV_LEASE(c);
        _cleanup_domain_ virDomainPtr d = NULL;
        int r = lookup(c, uuid, "a snapshot", &d);
        if (r < 0)
                return r;
        HvSnapshot want;
        /* The name, to tell a taken one apart from libvirt's other refusals. */
        if (hv_snapshot_xml_parse(xml, &want) == 0) {
                _cleanup_snap_ virDomainSnapshotPtr old = virDomainSnapshotLookupByName(d, want.name, 0);
                if (old) {
                        hv_set_error("the domain has a snapshot '%s' already", want.name);
                        return -EEXIST;
                }
        }
        _cleanup_snap_ virDomainSnapshotPtr s = virDomainSnapshotCreateXML(d, xml, VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC);
        if (!s)
                return hv_virt_fail("taking a snapshot of domain '%s' failed", uuid);
        return 0;
}

static int create_body(HvConn *c, HvCall *a) {
        return create_now(c, a->s[0], a->s[1]);
}

int hv_snapshot_create(HvConn *c, const char *uuid, const char *xml) {
        /* Saving a running guest's memory takes as long as writing it out. */
        return hv_call_code(c, hv_call_new(create_body, "taking a snapshot", uuid, xml, NULL, NULL), hv_deadlines.copy_ms);
}

static int revert_now(HvConn *c, const char *uuid, const char *name, bool running) {
        HV_LEASE(c);
        _cleanup_domain_ virDomainPtr d = NULL;
        int r = lookup(c, uuid, "reverting to a snapshot", &d);
        if (r < 0)
                return r;
        _cleanup_snap_ virDomainSnapshotPtr s = NULL;
        r = snap_lookup(d, name, "reverting to a snapshot", &s);
        if (r < 0)
                return r;
        _cleanup_free_ char *xml = virDomainSnapshotGetXMLDesc(s, 0);
        HvSnapshot info = {0};
        if (!xml || hv_snapshot_xml_parse(xml, &info) < 0)
                return hv_virt_fail("reading snapshot '%s' of domain '%s' failed", name, uuid);
        unsigned flags = 0;
        if (info.has_memory)
                flags = running ? VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING : VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED;
        if (virDomainRevertToSnapshot(s, flags) < 0)
                return hv_virt_fail("reverting domain '%s' to snapshot '%s' failed", uuid, name);
        return 0;
}

static int revert_body(HvConn *c, HvCall *a) {
        return revert_now(c, a->s[0], a->s[1], a->flag);
}

int hv_snapshot_revert(HvConn *c, const char *uuid, const char *name, bool running) {
        HvCall *a = hv_call_new(revert_body, "reverting to a snapshot", uuid, name, NULL, NULL);
        a->flag = running;
        return hv_call_code(c, a, hv_deadlines.copy_ms);
}

static int checkpoints_now(HvConn *c, const char *uuid, size_t *ret_n) {
        HV_LEASE(c);
        _cleanup_domain_ virDomainPtr d = NULL;
        int r = lookup(c, uuid, "listing the checkpoints", &d);
        if (r < 0)
                return r;
        int n = virDomainListAllCheckpoints(d, NULL, 0);
        if (n < 0) {
                if (hv_virt_code() == VIR_ERR_NO_SUPPORT)
                        n = 0; /* a driver without checkpoints (the test driver) has none */
                else
                        return hv_virt_fail("listing the checkpoints of domain '%s' failed", uuid);
        }
        *ret_n = (size_t) n;
        return 0;
}

static int checkpoints_body(HvConn *c, HvCall *a) {
        size_t n = 0;
        int r = checkpoints_now(c, a->s[0], &n);
        a->n[0] = n;
        return r;
}

int hv_snapshot_checkpoints(HvConn *c, const char *uuid, size_t *ret_n) {
        HvCall *a = hv_call_new(checkpoints_body, "listing checkpoints", uuid, NULL, NULL, NULL);
        if (!hv_call(c, a, hv_deadlines.query_ms))
                return -ETIMEDOUT;
        int r = a->r;
        if (r == 0)
                *ret_n = (size_t) a->n[0];
        hv_call_free(a);
        return r;
}

static int delete_now(HvConn *c, const char *uuid, const char *name) {
        HV_LEASE(c);
        _cleanup_domain_ virDomainPtr d = NULL;
        int r = lookup(c, uuid, "deleting a snapshot", &d);
        if (r < 0)
                return r;
        _cleanup_snap_ virDomainSnapshotPtr s = NULL;
        r = snap_lookup(d, name, "deleting a snapshot", &s);
        if (r < 0)
                return r;
        if (virDomainSnapshotDelete(s, 0) < 0)
                return hv_virt_fail("deleting snapshot '%s' of domain '%s' failed", name, uuid);
        return 0;
}

static int delete_body(HvConn *c, HvCall *a) {
        return delete_now(c, a->s[0], a->s[1]);
}

int hv_snapshot_delete(HvConn *c, const char *uuid, const char *name) {
        /* Dropping an internal snapshot rewrites the qcow2's refcounts. */
        return hv_call_code(c, hv_call_new(delete_body, "deleting a snapshot", uuid, name, NULL, NULL), hv_deadlines.copy_ms);
}

/* ---- moving the metadata ---- */

void hv_snapshot_defs_free(HvSnapshotDef *defs, size_t n) {
        for (size_t i = 0; defs && i < n; i++)
                free(defs[i].xml);
        free(defs);
}

static int defs_now(HvConn *c, const char *uuid, HvSnapshotDef **ret, size_t *ret_n) {
        HV_LEASE(c);
        _cleanup_domain_ virDomainPtr d = NULL;
        int r = lookup(c, uuid, "reading the snapshots", &d);
        if (r < 0)
                return r;
        virDomainSnapshotPtr *snaps = NULL;
        int n = virDomainListAllSnapshots(d, &snaps, VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL);
        if (n < 0)
                return hv_virt_fail("listing the snapshots of domain '%s' failed", uuid);
        HvSnapshotDef *out = xcalloc((size_t) n + 1, sizeof *out);
        size_t k = 0;
        for (int i = 0; i < n; i++) {
                char *xml = r < 0 ? NULL : virDomainSnapshotGetXMLDesc(snaps[i], VIR_DOMAIN_SNAPSHOT_XML_SECURE);
                HvSnapshot info;
                if (r >= 0 && !xml && hv_virt_code() != VIR_ERR_NO_DOMAIN_SNAPSHOT) /* deleted meanwhile: left out */
                        r = hv_virt_fail("reading a snapshot of domain '%s' failed", uuid);
                if (r >= 0 && xml && (r = hv_snapshot_xml_parse(xml, &info)) == 0 && strlen(info.name) < sizeof out[k].name) {
                        strcpy(out[k].name, info.name);
                        out[k].created = info.created;
                        out[k].current = virDomainSnapshotIsCurrent(snaps[i], 0) == 1;
                        out[k++].xml = steal_ptr(xml);
                }
                free(xml);
                virDomainSnapshotFree(snaps[i]);
        }
        free(snaps);
        if (r < 0) {
                hv_snapshot_defs_free(out, k);
                return r;
        }
        *ret = out;
        *ret_n = k;
        return 0;
}

static int defs_body(HvConn *c, HvCall *a) {
        HvSnapshotDef *defs = NULL;
        int r = defs_now(c, a->s[0], &defs, &a->ret_n);
        a->ret.ptr = defs;
        return r;
}

int hv_snapshot_defs(HvConn *c, const char *uuid, HvSnapshotDef **ret, size_t *ret_n) {
        HvCall *a = hv_call_new(defs_body, "reading snapshots", uuid, NULL, NULL, NULL);
        if (!hv_call(c, a, hv_deadlines.query_ms))
                return -ETIMEDOUT;
        int r = a->r;
        if (r == 0) {
                *ret = a->ret.ptr;
                *ret_n = a->ret_n;
        } else
                hv_snapshot_defs_free(a->ret.ptr, a->ret_n);
        a->ret.ptr = NULL;
        hv_call_free(a);
        return r;
}

static int forget_now(HvConn *c, const char *uuid, const char *name) {
        HV_LEASE(c);
        _cleanup_domain_ virDomainPtr d = NULL;
        int r = lookup(c, uuid, "setting the snapshots aside", &d);
        if (r < 0)
                return r;
        _cleanup_snap_ virDomainSnapshotPtr s = NULL;
        r = snap_lookup(d, name, "setting the snapshots aside", &s);
        if (r == -ENOENT)
                return 0; /* gone already */
        if (r < 0)
                return r;
        if (virDomainSnapshotDelete(s, VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY) < 0)
                return hv_virt_fail("deleting the metadata of snapshot '%s' of domain '%s' failed", name, uuid);
        return 0;
}

static int forget_body(HvConn *c, HvCall *a) {
        return forget_now(c, a->s[0], a->s[1]);
}

int hv_snapshot_forget(HvConn *c, const char *uuid, const HvSnapshotDef *defs, size_t n) {
        for (size_t i = n; i > 0; i--) {
                int r = hv_call_code(c, hv_call_new(forget_body, "setting snapshots aside", uuid, defs[i - 1].name, NULL, NULL),
                                     hv_deadlines.query_ms);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int redefine_now(HvConn *c, const char *uuid, const char *xml, bool current) {
        HV_LEASE(c);
        _cleanup_domain_ virDomainPtr d = NULL;
        int r = lookup(c, uuid, "redefining a snapshot", &d);
        if (r < 0)
                return r;
        unsigned flags = VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE | (current ? VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT : 0);
        _cleanup_snap_ virDomainSnapshotPtr s = virDomainSnapshotCreateXML(d, xml, flags);
        if (!s)
                return hv_virt_fail("redefining a snapshot of domain '%s' failed", uuid);
        return 0;
}

static int redefine_body(HvConn *c, HvCall *a) {
        return redefine_now(c, a->s[0], a->s[1], a->flag);
}

int hv_snapshot_redefine(HvConn *c, const char *uuid, const char *xml, bool current) {
        HvCall *a = hv_call_new(redefine_body, "redefining a snapshot", uuid, xml, NULL, NULL);
        a->flag = current;
        return hv_call_code(c, a, hv_deadlines.query_ms);
}

int hv_snapshot_put_back(HvConn *c, const char *uuid, const HvSnapshotDef *defs, size_t n) {
        int first = 0;
        char why[1024] = "";
        for (size_t i = 0; i < n; i++) {
                int r = hv_snapshot_redefine(c, uuid, defs[i].xml, defs[i].current);
                if (r < 0 && first == 0) {
                        first = r;
                        snprintf(why, sizeof why, "%s", hv_last_error());
                }
        }
        if (first < 0)
                hv_set_error("%s", why);
        return first;
}

static int checkpoints_drop_now(HvConn *c, const char *uuid, size_t *ret_n) {
        HV_LEASE(c);
        _cleanup_domain_ virDomainPtr d = NULL;
        int r = lookup(c, uuid, "deleting the checkpoints", &d);
        if (r < 0)
                return r;
        virDomainCheckpointPtr *cps = NULL;
        int n = virDomainListAllCheckpoints(d, &cps, VIR_DOMAIN_CHECKPOINT_LIST_TOPOLOGICAL);
        if (n < 0) {
                if (hv_virt_code() != VIR_ERR_NO_SUPPORT)
                        return hv_virt_fail("listing the checkpoints of domain '%s' failed", uuid);
                *ret_n = 0; /* a driver without checkpoints has none */
                return 0;
        }
        size_t gone = 0;
        for (int i = n - 1; i >= 0; i--) { /* children first: each delete merges a bitmap into its parent's */
                if (r >= 0) {
                        const char *name = virDomainCheckpointGetName(cps[i]);
                        if (virDomainCheckpointDelete(cps[i], 0) < 0)
                                r = hv_virt_fail("deleting checkpoint '%s' of domain '%s' failed", name ? name : "?", uuid);
                        else
                                gone++;
                }
                virDomainCheckpointFree(cps[i]);
        }
        free(cps);
        *ret_n = gone;
        return r < 0 ? r : 0;
}

static int checkpoints_drop_body(HvConn *c, HvCall *a) {
        size_t n = 0;
        int r = checkpoints_drop_now(c, a->s[0], &n);
        a->n[0] = n;
        return r;
}

int hv_snapshot_checkpoints_drop(HvConn *c, const char *uuid, size_t *ret_n) {
        HvCall *a = hv_call_new(checkpoints_drop_body, "deleting checkpoints", uuid, NULL, NULL, NULL);
        if (!hv_call(c, a, hv_deadlines.copy_ms))
                return -ETIMEDOUT;
        int r = a->r;
        *ret_n = (size_t) a->n[0];
        hv_call_free(a);
        return r;
}
