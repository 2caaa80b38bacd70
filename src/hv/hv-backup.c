/* hv-backup: pull-mode backups, checkpoints and the guest agent's file
 * system freeze (see hv-backup.h). XML is built with libxml2's tree API
 * (user strings escaped by the serializer) and read with a parser that
 * refuses network access; the calls are thin wrappers over libvirt run
 * through hv_call() like the rest of hv. */
#include "hv-backup.h"
#include "hv-internal.h"
#include "hv-cleanup.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

/* ---- pure: XML ---- */

static xmlDoc *parse(const char *xml, const char *what) {
        if (!xml) {
                hv_set_error("cannot parse %s XML: there is none", what);
                return NULL;
        }
        xmlDoc *doc = xmlReadMemory(xml, (int) strlen(xml), NULL, NULL,
                                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc)
                hv_set_error("cannot parse %s XML: it is not well-formed", what);
        return doc;
}

static xmlNode *child(xmlNode *n, const char *name) {
        for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
                if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST name))
                        return c;
        return NULL;
}

static bool prop_is(xmlNode *n, const char *name, const char *want) {
        _cleanup_xmlstr_ xmlChar *v = n ? xmlGetProp(n, BAD_CAST name) : NULL;
        return v && xmlStrEqual(v, BAD_CAST want);
}

static bool prop_copy(xmlNode *n, const char *name, char *out, size_t size) {
        _cleanup_xmlstr_ xmlChar *v = n ? xmlGetProp(n, BAD_CAST name) : NULL;
        if (!v || !v[0] || strlen((const char *) v) >= size)
                return false;
        snprintf(out, size, "%s", (const char *) v);
        return true;
}

int hv_backup_disks(const char *domain_xml, HvBackupDisk ret[HV_BACKUP_MAX_DISKS], size_t *ret_n) {
        _cleanup_xmldoc_ xmlDoc *doc = parse(domain_xml, "domain");
        if (!doc)
                return -EINVAL;
        xmlNode *devices = child(xmlDocGetRootElement(doc), "devices");
        size_t n = 0;
        for (xmlNode *d = devices ? devices->children : NULL; d; d = d->next) {
                if (d->type != XML_ELEMENT_NODE || !xmlStrEqual(d->name, BAD_CAST "disk"))
                        continue;
                if (!prop_is(d, "device", "disk") || !prop_is(d, "type", "file") || !prop_is(child(d, "driver"), "type", "qcow2"))
                        continue;
                HvBackupDisk disk = { 0 };
                if (!prop_copy(child(d, "target"), "dev", disk.target, sizeof disk.target) ||
                    !prop_copy(child(d, "source"), "file", disk.source, sizeof disk.source))
                        continue;
                if (n == HV_BACKUP_MAX_DISKS) {
                        hv_set_error("the domain has more than %d qcow2 disks", HV_BACKUP_MAX_DISKS);
                        return -E2BIG;
                }
                ret[n++] = disk;
        }
        *ret_n = n;
        return 0;
}

static xmlNode *new_root(xmlDoc **ret_doc, const char *name) {
        xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
        xmlNode *root = doc ? xmlNewNode(NULL, BAD_CAST name) : NULL;
        if (!root)
                abort();
        xmlDocSetRootElement(doc, root);
        *ret_doc = doc;
        return root;
}

static xmlNode *add(xmlNode *parent, const char *name, const char *text) {
        xmlNode *n = xmlNewTextChild(parent, NULL, BAD_CAST name, BAD_CAST text);
        if (!n)
                abort();
        return n;
}

static void set(xmlNode *n, const char *name, const char *value) {
        if (!xmlNewProp(n, BAD_CAST name, BAD_CAST value))
                abort();
}

static char *dump(xmlDoc *doc) {
        xmlChar *mem = NULL;
        int len = 0;
        xmlDocDumpFormatMemory(doc, &mem, &len, 1);
        if (!mem)
                abort();
        char *s = xstrdup((const char *) mem);
        xmlFree(mem);
        xmlFreeDoc(doc);
        return s;
}

char *hv_backup_xml_build(const HvBackupSpec *spec, HvBackupDisk *disks, size_t n) {
        xmlDoc *doc;
        xmlNode *root = new_root(&doc, "domainbackup");
        set(root, "mode", "pull");
        if (spec->incremental)
                add(root, "incremental", spec->incremental);
        xmlNode *server = add(root, "server", NULL);
        if (spec->nbd_socket) {
                set(server, "transport", "unix");
                set(server, "socket", spec->nbd_socket);
        } else {
                set(server, "transport", "tcp");
                set(server, "name", spec->nbd_addr ? spec->nbd_addr : "localhost");
                if (spec->tls)
                        set(server, "tls", "yes");
                if (spec->nbd_port) {
                        char port[16];
                        snprintf(port, sizeof port, "%u", spec->nbd_port);
                        set(server, "port", port);
                }
        }
        xmlNode *xd = add(root, "disks", NULL);
        for (size_t i = 0; i < n; i++) {
                snprintf(disks[i].export_name, sizeof disks[i].export_name, "%s-%s", spec->export_token, disks[i].target);
                if (spec->incremental)
                        snprintf(disks[i].bitmap, sizeof disks[i].bitmap, "%s-%s-dirty", spec->export_token, disks[i].target);
                else
                        disks[i].bitmap[0] = 0;
                xmlNode *d = add(xd, "disk", NULL);
                set(d, "name", disks[i].target);
                set(d, "backup", "yes");
                set(d, "type", "file");
                set(d, "exportname", disks[i].export_name);
                if (disks[i].bitmap[0])
                        set(d, "exportbitmap", disks[i].bitmap);
                /* libvirt 9 names no scratch file itself: beside the disk
                 * (the same storage, which has room for the disk's changes),
                 * created and removed by libvirt. */
                const char *slash = strrchr(disks[i].source, '/');
                int dirlen = slash ? (int) (slash - disks[i].source) : 1;
                _cleanup_free_ char *scratch = xasprintf("%.*s/.armada-scratch-%s-%s.qcow2", dirlen,
                                                         slash ? disks[i].source : "/", spec->export_token, disks[i].target);
                xmlNode *sc = add(d, "scratch", NULL);
                set(sc, "file", scratch);
        }
        return dump(doc);
}

char *hv_checkpoint_xml_build(const char *name, const HvBackupDisk *disks, size_t n) {
        xmlDoc *doc;
        xmlNode *root = new_root(&doc, "domaincheckpoint");
        add(root, "name", name);
        add(root, "description", "Armada backup");
        xmlNode *xd = add(root, "disks", NULL);
        for (size_t i = 0; i < n; i++) {
                xmlNode *d = add(xd, "disk", NULL);
                set(d, "name", disks[i].target);
                set(d, "checkpoint", "bitmap");
        }
        return dump(doc);
}

char *hv_copy_xml_build(const char *const *targets, const char *const *files, size_t n, const char *const *skip,
                        size_t n_skip) {
        xmlDoc *doc;
        xmlNode *root = new_root(&doc, "domainbackup");
        set(root, "mode", "push");
        xmlNode *disks = add(root, "disks", NULL);
        for (size_t i = 0; i < n; i++) {
                xmlNode *d = add(disks, "disk", NULL);
                set(d, "name", targets[i]);
                set(d, "backup", "yes");
                set(d, "type", "file");
                set(add(d, "target", NULL), "file", files[i]);
                set(add(d, "driver", NULL), "type", "qcow2");
        }
        for (size_t i = 0; i < n_skip; i++) {
                xmlNode *d = add(disks, "disk", NULL);
                set(d, "name", skip[i]);
                set(d, "backup", "no");
        }
        return dump(doc);
}

int hv_backup_xml_port(const char *xml, unsigned *ret_port) {
        _cleanup_xmldoc_ xmlDoc *doc = parse(xml, "backup");
        if (!doc)
                return -EINVAL;
        char port[16] = "";
        (void) prop_copy(child(xmlDocGetRootElement(doc), "server"), "port", port, sizeof port);
        *ret_port = (unsigned) strtoul(port, NULL, 10);
        return 0;
}

/* ---- calls ---- */

static int xml_public_now(HvConn *c, const char *uuid, char **ret) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        char *xml = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE);
        if (!xml)
                return hv_virt_fail("cannot read the definition of VM '%s'", virDomainGetName(d));
        *ret = xml;
        return 0;
}

static int xml_public_body(HvConn *c, HvCall *a) {
        return xml_public_now(c, a->s[0], &a->ret.str);
}

int hv_domain_xml_public(HvConn *c, const char *uuid, char **ret) {
        return HV_CALL_TAKE(c, hv_call_new(xml_public_body, "reading a domain's XML", uuid, NULL, NULL, NULL),
                            hv_deadlines.query_ms, ret, NULL);
}

static int backup_begin_now(HvConn *c, const char *uuid, const char *bxml, const char *cxml, char **ret) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        const char *name = virDomainGetName(d);
        if (virDomainBackupBegin(d, bxml, cxml, 0) < 0) {
                int code = hv_virt_code();
                r = hv_virt_fail("cannot begin a backup of VM '%s'", name);
                if (code == VIR_ERR_OPERATION_INVALID && strstr(hv_last_error(), "job"))
                        return -EBUSY;
                if (code == VIR_ERR_NO_DOMAIN_CHECKPOINT)
                        return -ENOENT;
                if (code == VIR_ERR_NO_SUPPORT)
                        return -EOPNOTSUPP;
                return r;
        }
        char *desc = virDomainBackupGetXMLDesc(d, 0);
        if (!desc) {
                r = hv_virt_fail("cannot read the backup of VM '%s' just begun", name);
                (void) virDomainAbortJob(d);
                return r;
        }
        *ret = desc;
        return 0;
}

static int backup_begin_body(HvConn *c, HvCall *a) {
        return backup_begin_now(c, a->s[0], a->s[1], a->s[2], &a->ret.str);
}

int hv_backup_begin(HvConn *c, const char *uuid, const char *backup_xml, const char *checkpoint_xml, char **ret_desc) {
        return HV_CALL_TAKE(c, hv_call_new(backup_begin_body, "beginning a backup", uuid, backup_xml, checkpoint_xml, NULL),
                            hv_deadlines.change_ms, ret_desc, NULL);
}

static int backup_end_now(HvConn *c, const char *uuid, bool *ret_ended) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        char *desc = virDomainBackupGetXMLDesc(d, 0);
        if (!desc) {
                /* No backup job (or no backup API): nothing to end. */
                *ret_ended = false;
                return 0;
        }
        free(desc);
        if (virDomainAbortJob(d) < 0)
                return hv_virt_fail("cannot end the backup job of VM '%s'", virDomainGetName(d));
        *ret_ended = true;
        return 0;
}

static int backup_end_body(HvConn *c, HvCall *a) {
        return backup_end_now(c, a->s[0], &a->out.b);
}

int hv_backup_end(HvConn *c, const char *uuid, bool *ret_ended) {
        bool ended = false;
        int r = hv_call_out(c, hv_call_new(backup_end_body, "ending a backup", uuid, NULL, NULL, NULL), hv_deadlines.change_ms,
                            &ended, sizeof ended);
        if (r == 0 && ret_ended)
                *ret_ended = ended;
        return r;
}

static int checkpoint_list_now(HvConn *c, const char *uuid, char **ret) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        virDomainCheckpointPtr *cps = NULL;
        int n = virDomainListAllCheckpoints(d, &cps, 0);
        if (n < 0)
                return hv_virt_fail("cannot list the checkpoints of VM '%s'", virDomainGetName(d));
        size_t len = 1;
        for (int i = 0; i < n; i++)
                len += strlen(virDomainCheckpointGetName(cps[i])) + 1;
        char *s = xcalloc(1, len), *p = s;
        for (int i = 0; i < n; i++) {
                p += sprintf(p, "%s%s", i ? "\n" : "", virDomainCheckpointGetName(cps[i]));
                virDomainCheckpointFree(cps[i]);
        }
        free(cps);
        *ret = s;
        return 0;
}

static int checkpoint_list_body(HvConn *c, HvCall *a) {
        return checkpoint_list_now(c, a->s[0], &a->ret.str);
}

int hv_checkpoint_list(HvConn *c, const char *uuid, char **ret) {
        return HV_CALL_TAKE(c, hv_call_new(checkpoint_list_body, "listing checkpoints", uuid, NULL, NULL, NULL),
                            hv_deadlines.query_ms, ret, NULL);
}

static int checkpoint_delete_now(HvConn *c, const char *uuid, const char *name, bool metadata_only) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        virDomainCheckpointPtr cp = virDomainCheckpointLookupByName(d, name, 0);
        if (!cp) {
                if (hv_virt_code() == VIR_ERR_NO_DOMAIN_CHECKPOINT) {
                        hv_set_error("VM '%s' has no checkpoint '%s'", virDomainGetName(d), name);
                        return -ENOENT;
                }
                return hv_virt_fail("cannot look up checkpoint '%s' of VM '%s'", name, virDomainGetName(d));
        }
        r = 0;
        if (virDomainCheckpointDelete(cp, metadata_only ? VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY : 0) < 0)
                r = hv_virt_fail("cannot delete checkpoint '%s' of VM '%s'", name, virDomainGetName(d));
        virDomainCheckpointFree(cp);
        return r;
}

static int checkpoint_delete_body(HvConn *c, HvCall *a) {
        return checkpoint_delete_now(c, a->s[0], a->s[1], a->flag);
}

int hv_checkpoint_delete(HvConn *c, const char *uuid, const char *name) {
        return hv_call_code(c, hv_call_new(checkpoint_delete_body, "deleting a checkpoint", uuid, name, NULL, NULL),
                            hv_deadlines.change_ms);
}

int hv_checkpoint_forget(HvConn *c, const char *uuid, const char *name) {
        HvCall *a = hv_call_new(checkpoint_delete_body, "forgetting a checkpoint", uuid, name, NULL, NULL);
        a->flag = true;
        return hv_call_code(c, a, hv_deadlines.change_ms);
}

static int fs_freeze_now(HvConn *c, const char *uuid, bool thaw) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        int n = thaw ? virDomainFSThaw(d, NULL, 0, 0) : virDomainFSFreeze(d, NULL, 0, 0);
        if (n < 0) {
                int code = hv_virt_code();
                r = hv_virt_fail("cannot %s the file systems of VM '%s'", thaw ? "thaw" : "freeze", virDomainGetName(d));
                return code == VIR_ERR_AGENT_UNRESPONSIVE || code == VIR_ERR_OPERATION_INVALID ||
                                       code == VIR_ERR_ARGUMENT_UNSUPPORTED || code == VIR_ERR_NO_SUPPORT
                               ? -ENOTSUP
                               : r;
        }
        if (!thaw && n == 0) {
                hv_set_error("the guest agent of VM '%s' froze no file system", virDomainGetName(d));
                return -ENOTSUP;
        }
        return 0;
}

static int fs_freeze_body(HvConn *c, HvCall *a) {
        return fs_freeze_now(c, a->s[0], a->flag);
}

int hv_domain_fs_freeze(HvConn *c, const char *uuid) {
        HvCall *a = hv_call_new(fs_freeze_body, "freezing a guest's file systems", uuid, NULL, NULL, NULL);
        a->flag = false;
        return hv_call_code(c, a, hv_deadlines.change_ms);
}

int hv_domain_fs_thaw(HvConn *c, const char *uuid) {
        HvCall *a = hv_call_new(fs_freeze_body, "thawing a guest's file systems", uuid, NULL, NULL, NULL);
        a->flag = true;
        return hv_call_code(c, a, hv_deadlines.change_ms);
}

/* ---- pure: restore ---- */

static void set_text(xmlDoc *doc, xmlNode *root, const char *name, const char *text) {
        xmlNode *n = child(root, name);
        if (!n)
                n = add(root, name, NULL);
        xmlChar *esc = xmlEncodeSpecialChars(doc, BAD_CAST text);
        xmlNodeSetContent(n, esc);
        xmlFree(esc);
}

static void drop_children(xmlNode *parent, const char *name) {
        for (xmlNode *c = parent ? parent->children : NULL, *next; c; c = next) {
                next = c->next;
                if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST name)) {
                        xmlUnlinkNode(c);
                        xmlFreeNode(c);
                }
        }
}

static void point_disk_at(xmlNode *d, const char *path) {
        xmlSetProp(d, BAD_CAST "type", BAD_CAST "file");
        xmlNode *drv = child(d, "driver");
        if (!drv) {
                drv = add(d, "driver", NULL);
                xmlSetProp(drv, BAD_CAST "name", BAD_CAST "qemu");
        }
        xmlSetProp(drv, BAD_CAST "type", BAD_CAST "qcow2");
        drop_children(d, "source");
        drop_children(d, "backingStore");
        xmlNode *src = xmlNewChild(d, NULL, BAD_CAST "source", NULL);
        if (!src)
                abort();
        set(src, "file", path);
}

int hv_restore_xml(const char *xml, const char *name, const char *uuid, const char *const *targets, const char *const *paths,
                   size_t n, char **ret) {
        xmlDoc *doc = parse(xml, "domain");
        if (!doc)
                return -EINVAL;
        xmlNode *root = xmlDocGetRootElement(doc);
        if (!root || !xmlStrEqual(root->name, BAD_CAST "domain")) {
                xmlFreeDoc(doc);
                hv_set_error("cannot restore a domain from XML that is not a <domain>");
                return -EINVAL;
        }
        set_text(doc, root, "name", name);
        set_text(doc, root, "uuid", uuid);
        drop_children(root, "metadata");
        xmlNode *devices = child(root, "devices");
        for (xmlNode *d = devices ? devices->children : NULL, *next; d; d = next) {
                next = d->next;
                if (d->type != XML_ELEMENT_NODE)
                        continue;
                if (xmlStrEqual(d->name, BAD_CAST "interface"))
                        drop_children(d, "mac");
                if (!xmlStrEqual(d->name, BAD_CAST "disk"))
                        continue;
                char target[32] = "";
                bool found = false;
                (void) prop_copy(child(d, "target"), "dev", target, sizeof target);
                for (size_t i = 0; i < n; i++)
                        if (streq(target, targets[i])) {
                                point_disk_at(d, paths[i]);
                                found = true;
                        }
                /* A disk the point does not hold must not be shared with
                 * the original VM: it goes (CD-ROMs stay). */
                if (!found && prop_is(d, "device", "disk")) {
                        xmlUnlinkNode(d);
                        xmlFreeNode(d);
                }
        }
        *ret = dump(doc);
        return 0;
}

int hv_restore_disks_xml(const char *xml, const char *const *targets, const char *const *paths, size_t n, char **ret) {
        xmlDoc *doc = parse(xml, "domain");
        if (!doc)
                return -EINVAL;
        xmlNode *root = xmlDocGetRootElement(doc);
        xmlNode *devices = root ? child(root, "devices") : NULL;
        size_t found = 0;
        for (xmlNode *d = devices ? devices->children : NULL; d; d = d->next) {
                if (d->type != XML_ELEMENT_NODE || !xmlStrEqual(d->name, BAD_CAST "disk"))
                        continue;
                char target[32] = "";
                (void) prop_copy(child(d, "target"), "dev", target, sizeof target);
                for (size_t i = 0; i < n; i++)
                        if (streq(target, targets[i])) {
                                point_disk_at(d, paths[i]);
                                found++;
                        }
        }
        if (found != n) {
                xmlFreeDoc(doc);
                hv_set_error("the domain does not have every disk the restore replaces");
                return -ENOENT;
        }
        *ret = dump(doc);
        return 0;
}
