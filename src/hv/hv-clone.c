/* hv-clone: point-in-time copies of a running domain's disks through
 * libvirt's push-mode backup (see hv-clone.h). */
#include "hv-clone.h"
#include "hv-migrate.h"
#include "hv-internal.h"
#include "hv-cleanup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

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

int hv_copy_status(HvConn *c, const char *uuid, HvCopyStatus *ret) {
        HvJobInfo j;
        int r = hv_job_info(c, uuid, &j);
        if (r < 0)
                return r;
        HvCopyStatus s = { .active = j.active, .total = j.disk_total ? j.disk_total : j.data_total,
                           .processed = j.disk_total ? j.disk_processed : j.data_processed };
        if (!j.active) {
                r = hv_job_completed(c, uuid, &j);
                if (r < 0 && r != -ENODATA)
                        return r;
                s.failed = r == 0 && j.failed;
                snprintf(s.error, sizeof s.error, "%s", r == 0 && j.error[0] ? j.error : "libvirt gives no reason");
        }
        *ret = s;
        return 0;
}

int hv_copy_abort(HvConn *c, const char *uuid) {
        int r = hv_job_abort(c, uuid);
        return r == -EBUSY ? 0 : r;
}
