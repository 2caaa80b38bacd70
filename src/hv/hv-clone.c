/* hv-clone: point-in-time copies of a running domain's disks through
 * libvirt's push-mode backup (see hv-clone.h). */
#include "hv-clone.h"
#include "hv-internal.h"
#include "hv-cleanup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/tree.h>

/* ---- pure: XML ---- */

static xmlNode *add(xmlNode *parent, const char *name) {
        xmlNode *n = xmlNewChild(parent, NULL, BAD_CAST name, NULL);
        if (!n)
                abort();
        return n;
}

static void set(xmlNode *n, const char *name, const char *value) {
        if (!xmlNewProp(n, BAD_CAST name, BAD_CAST value))
                abort();
}

char *hv_copy_xml_build(const char *const *targets, const char *const *files, size_t n, const char *const *skip,
                        size_t n_skip) {
        xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
        xmlNode *root = doc ? xmlNewNode(NULL, BAD_CAST "domainbackup") : NULL;
        if (!root)
                abort();
        xmlDocSetRootElement(doc, root);
        set(root, "mode", "push");
        xmlNode *disks = add(root, "disks");
        for (size_t i = 0; i < n; i++) {
                xmlNode *d = add(disks, "disk");
                set(d, "name", targets[i]);
                set(d, "backup", "yes");
                set(d, "type", "file");
                set(add(d, "target"), "file", files[i]);
                set(add(d, "driver"), "type", "qcow2");
        }
        for (size_t i = 0; i < n_skip; i++) {
                xmlNode *d = add(disks, "disk");
                set(d, "name", skip[i]);
                set(d, "backup", "no");
        }
        xmlChar *mem = NULL;
        int len = 0;
        xmlDocDumpFormatMemory(doc, &mem, &len, 1);
        xmlFreeDoc(doc);
        if (!mem)
                abort();
        char *s = xstrdup((const char *) mem);
        xmlFree(mem);
        return s;
}

/* ---- calls ---- */

static int copy_begin_now(HvConn *c, const char *uuid, const char *xml) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        if (virDomainBackupBegin(d, xml, NULL, VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL) < 0) {
                int code = hv_virt_code();
                r = hv_virt_fail("cannot begin a copy of the disks of VM '%s'", virDomainGetName(d));
                if (code == VIR_ERR_OPERATION_INVALID && strstr(hv_last_error(), "job"))
                        return -EBUSY;
                if (code == VIR_ERR_NO_SUPPORT)
                        return -EOPNOTSUPP;
                return r;
        }
        return 0;
}

static int copy_begin_body(HvConn *c, HvCall *a) {
        return copy_begin_now(c, a->s[0], a->s[1]);
}

int hv_copy_begin(HvConn *c, const char *uuid, const char *xml) {
        return hv_call_code(c, hv_call_new(copy_begin_body, "beginning a copy of a domain's disks", uuid, xml, NULL, NULL),
                            hv_deadlines.change_ms);
}

static int copy_status_now(HvConn *c, const char *uuid, HvCopyStatus *ret) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        const char *name = virDomainGetName(d);
        int type = VIR_DOMAIN_JOB_NONE;
        virTypedParameterPtr p = NULL;
        int n = 0;
        if (virDomainGetJobStats(d, &type, &p, &n, 0) < 0)
                return hv_virt_fail("cannot read the copy of the disks of VM '%s'", name);
        HvCopyStatus s = { .active = type == VIR_DOMAIN_JOB_BOUNDED || type == VIR_DOMAIN_JOB_UNBOUNDED };
        unsigned long long v;
        if (virTypedParamsGetULLong(p, n, VIR_DOMAIN_JOB_DISK_TOTAL, &v) == 1)
                s.total = v;
        if (virTypedParamsGetULLong(p, n, VIR_DOMAIN_JOB_DISK_PROCESSED, &v) == 1)
                s.processed = v;
        virTypedParamsFree(p, n);
        if (!s.active) {
                p = NULL;
                n = 0;
                if (virDomainGetJobStats(d, &type, &p, &n, VIR_DOMAIN_JOB_STATS_COMPLETED) < 0)
                        return hv_virt_fail("cannot read how the copy of the disks of VM '%s' ended", name);
                if (type == VIR_DOMAIN_JOB_FAILED || type == VIR_DOMAIN_JOB_CANCELLED) {
                        const char *msg = NULL;
                        s.failed = true;
                        if (virTypedParamsGetString(p, n, VIR_DOMAIN_JOB_ERRMSG, &msg) != 1 || !msg)
                                msg = type == VIR_DOMAIN_JOB_CANCELLED ? "it was cancelled" : "libvirt gives no reason";
                        snprintf(s.error, sizeof s.error, "%s", msg);
                }
                virTypedParamsFree(p, n);
        }
        *ret = s;
        return 0;
}

static int copy_status_body(HvConn *c, HvCall *a) {
        HvCopyStatus *s = xcalloc(1, sizeof *s);
        int r = copy_status_now(c, a->s[0], s);
        if (r < 0)
                free(s);
        else
                a->ret.ptr = s;
        return r;
}

int hv_copy_status(HvConn *c, const char *uuid, HvCopyStatus *ret) {
        void *p = NULL;
        int r = hv_call_take(c, hv_call_new(copy_status_body, "reading a copy of a domain's disks", uuid, NULL, NULL, NULL),
                             hv_deadlines.query_ms, &p, NULL);
        if (r == 0) {
                *ret = *(HvCopyStatus *) p;
                free(p);
        }
        return r;
}

static int copy_abort_now(HvConn *c, const char *uuid) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        if (virDomainAbortJob(d) < 0 && hv_virt_code() != VIR_ERR_OPERATION_INVALID)
                return hv_virt_fail("cannot stop the copy of the disks of VM '%s'", virDomainGetName(d));
        return 0;
}

static int copy_abort_body(HvConn *c, HvCall *a) {
        return copy_abort_now(c, a->s[0]);
}

int hv_copy_abort(HvConn *c, const char *uuid) {
        return hv_call_code(c, hv_call_new(copy_abort_body, "stopping a copy of a domain's disks", uuid, NULL, NULL, NULL),
                            hv_deadlines.change_ms);
}
