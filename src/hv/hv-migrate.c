/* hv-migrate: peer-to-peer live migration, domain job progress, abort and
 * completed-job statistics, managed save and raw XML define (see
 * hv-migrate.h). Thin wrappers over libvirt like hv.c. */
#include "hv-migrate.h"
#include "hv-internal.h"
#include "hv-cleanup.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

virDomainPtr hv_domain_by_uuid(HvConn *c, const char *uuid, int *ret_r) {
        assert(c);
        if (!uuid || !uuid_is_valid(uuid)) {
                hv_set_error("cannot look up a domain by UUID: '%s' is not a UUID", uuid ? uuid : "(none)");
                *ret_r = -EINVAL;
                return NULL;
        }
        virDomainPtr d = virDomainLookupByUUIDString(hv_conn_virt(c), uuid);
        if (!d) {
                if (hv_virt_code() == VIR_ERR_NO_DOMAIN) {
                        hv_set_error("there is no domain with UUID '%s' on this host", uuid);
                        *ret_r = -ENOENT;
                } else
                        *ret_r = hv_virt_fail("cannot look up domain '%s'", uuid);
        }
        return d;
}

/* ---- pure helpers ---- */

char *hv_migrate_uri_for(const char *dest_uri) {
        char host[256];
        if (!dest_uri || hv_uri_host(dest_uri, host, sizeof host) < 0 || !host[0])
                return NULL;
        return strchr(host, ':') ? xasprintf("tcp://[%s]", host) : xasprintf("tcp://%s", host);
}

unsigned long hv_migrate_flags(const HvMigrateOptions *o) {
        unsigned long f = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PERSIST_DEST | VIR_MIGRATE_UNDEFINE_SOURCE;
        if (o->shared_storage_known && !o->with_storage)
                f |= VIR_MIGRATE_UNSAFE;
        if (o->with_storage)
                f |= VIR_MIGRATE_NON_SHARED_DISK;
        if (o->auto_converge)
                f |= VIR_MIGRATE_AUTO_CONVERGE;
        if (o->postcopy)
                f |= VIR_MIGRATE_POSTCOPY;
        return f;
}

/* ---- migration ---- */

int hv_migrate(HvConn *c, const char *uuid, const HvMigrateOptions *o) {
        HV_LEASE(c);
        if (!o || !o->dest_uri || !o->dest_uri[0]) {
                hv_set_error("cannot migrate a VM without a destination URI");
                return -EINVAL;
        }
        /* The source's libvirtd opens dest_uri (peer to peer), as root on
         * another machine: never one that runs a program. */
        char why[512];
        if (hv_uri_check(o->dest_uri, true, why, sizeof why) < 0) {
                hv_set_error("refusing to migrate to '%.500s': %s", o->dest_uri, why);
                return -EPERM;
        }
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        const char *name = virDomainGetName(d);
        virTypedParameterPtr params = NULL;
        int n = 0, max = 0;
        if (o->migrate_uri && virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_URI, o->migrate_uri) < 0)
                return hv_virt_fail("cannot prepare the migration of VM '%s'", name);
        if (o->bandwidth_mibs &&
            virTypedParamsAddULLong(&params, &n, &max, VIR_MIGRATE_PARAM_BANDWIDTH, o->bandwidth_mibs) < 0) {
                virTypedParamsFree(params, n);
                return hv_virt_fail("cannot prepare the migration of VM '%s'", name);
        }
        int rc = virDomainMigrateToURI3(d, o->dest_uri, params, (unsigned) n, (unsigned) hv_migrate_flags(o));
        if (rc < 0)
                r = hv_virt_fail("cannot migrate VM '%s' to '%s'", name, o->dest_uri);
        virTypedParamsFree(params, n);
        if (rc < 0) {
                /* QEMU reports a cancelled migration as OPERATION_FAILED with
                 * "canceled by client"; give callers one answer. */
                const char *e = hv_last_error();
                if (strstr(e, "canceled by client") || strstr(e, "cancelled by client") || strstr(e, "operation aborted"))
                        r = -ECANCELED;
                return r;
        }
        return 0;
}

static void fill_info(virTypedParameterPtr p, int n, HvJobInfo *info) {
        unsigned long long v;
#define GET(key, field) if (virTypedParamsGetULLong(p, n, key, &v) == 1) info->field = v
        GET(VIR_DOMAIN_JOB_TIME_ELAPSED, elapsed_ms);
        GET(VIR_DOMAIN_JOB_DOWNTIME, downtime_ms);
        GET(VIR_DOMAIN_JOB_SETUP_TIME, setup_ms);
        GET(VIR_DOMAIN_JOB_DATA_TOTAL, data_total);
        GET(VIR_DOMAIN_JOB_DATA_PROCESSED, data_processed);
        GET(VIR_DOMAIN_JOB_DATA_REMAINING, data_remaining);
        GET(VIR_DOMAIN_JOB_MEMORY_TOTAL, mem_total);
        GET(VIR_DOMAIN_JOB_MEMORY_PROCESSED, mem_processed);
        GET(VIR_DOMAIN_JOB_MEMORY_REMAINING, mem_remaining);
        GET(VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE, mem_dirty_rate);
        GET(VIR_DOMAIN_JOB_MEMORY_ITERATION, mem_iteration);
        GET(VIR_DOMAIN_JOB_DISK_TOTAL, disk_total);
        GET(VIR_DOMAIN_JOB_DISK_PROCESSED, disk_processed);
#undef GET
        if (virTypedParamsGetULLong(p, n, VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS, &v) == 1 && v > 0)
                info->postcopy = true;
}

static int job_stats(HvConn *c, const char *uuid, unsigned flags, HvJobInfo *ret) {
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        const char *name = virDomainGetName(d);
        int type = VIR_DOMAIN_JOB_NONE;
        virTypedParameterPtr p = NULL;
        int n = 0;
        if (virDomainGetJobStats(d, &type, &p, &n, flags) < 0)
                return hv_virt_fail("cannot read the job statistics of VM '%s'", name);
        HvJobInfo info = { .active = type == VIR_DOMAIN_JOB_BOUNDED || type == VIR_DOMAIN_JOB_UNBOUNDED,
                           .failed = type == VIR_DOMAIN_JOB_FAILED || type == VIR_DOMAIN_JOB_CANCELLED };
        fill_info(p, n, &info);
        const char *msg = NULL;
        if (info.failed && virTypedParamsGetString(p, n, VIR_DOMAIN_JOB_ERRMSG, &msg) == 1 && msg)
                snprintf(info.error, sizeof info.error, "%s", msg);
        virTypedParamsFree(p, n);
        if ((flags & VIR_DOMAIN_JOB_STATS_COMPLETED) && type == VIR_DOMAIN_JOB_NONE) {
                hv_set_error("libvirt has no statistics of a completed job of VM '%s'", name);
                return -ENODATA;
        }
        *ret = info;
        return 0;
}

static int job_info_now(HvConn *c, const char *uuid, HvJobInfo *ret) {
        HV_LEASE(c);
        return job_stats(c, uuid, 0, ret);
}

static int job_info_body(HvConn *c, HvCall *a) {
        return job_info_now(c, a->s[0], &a->out.job);
}

int hv_job_info(HvConn *c, const char *uuid, HvJobInfo *ret) {
        return hv_call_out(c, hv_call_new(job_info_body, "reading a job's progress", uuid, NULL, NULL, NULL), hv_deadlines.query_ms, ret, sizeof *ret);
}

static int job_completed_now(HvConn *c, const char *uuid, HvJobInfo *ret) {
        HV_LEASE(c);
        return job_stats(c, uuid, VIR_DOMAIN_JOB_STATS_COMPLETED, ret);
}

static int job_completed_body(HvConn *c, HvCall *a) {
        return job_completed_now(c, a->s[0], &a->out.job);
}

int hv_job_completed(HvConn *c, const char *uuid, HvJobInfo *ret) {
        return hv_call_out(c, hv_call_new(job_completed_body, "reading a finished job", uuid, NULL, NULL, NULL), hv_deadlines.query_ms, ret, sizeof *ret);
}

static int job_abort_now(HvConn *c, const char *uuid) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        const char *name = virDomainGetName(d);
        if (virDomainAbortJob(d) < 0)
                return hv_virt_fail("cannot abort the running job of VM '%s'", name);
        return 0;
}

static int job_abort_body(HvConn *c, HvCall *a) {
        return job_abort_now(c, a->s[0]);
}

int hv_job_abort(HvConn *c, const char *uuid) {
        return hv_call_code(c, hv_call_new(job_abort_body, "aborting a job", uuid, NULL, NULL, NULL), hv_deadlines.change_ms);
}

static int migrate_start_postcopy_now(HvConn *c, const char *uuid) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        const char *name = virDomainGetName(d);
        if (virDomainMigrateStartPostCopy(d, 0) < 0)
                return hv_virt_fail("cannot switch the migration of VM '%s' to post-copy", name);
        return 0;
}

static int migrate_start_postcopy_body(HvConn *c, HvCall *a) {
        return migrate_start_postcopy_now(c, a->s[0]);
}

int hv_migrate_start_postcopy(HvConn *c, const char *uuid) {
        return hv_call_code(c, hv_call_new(migrate_start_postcopy_body, "switching a migration to post-copy", uuid, NULL, NULL, NULL), hv_deadlines.change_ms);
}

static int domain_managed_save_now(HvConn *c, const char *uuid) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        const char *name = virDomainGetName(d);
        if (virDomainManagedSave(d, 0) < 0)
                return hv_virt_fail("cannot save VM '%s' (%s)", name, uuid);
        return 0;
}

static int domain_managed_save_body(HvConn *c, HvCall *a) {
        return domain_managed_save_now(c, a->s[0]);
}

int hv_domain_managed_save(HvConn *c, const char *uuid) {
        return hv_call_code(c, hv_call_new(domain_managed_save_body, "saving a domain's memory", uuid, NULL, NULL, NULL), hv_deadlines.copy_ms);
}

static int domain_xml_get_now(HvConn *c, const char *uuid, char **ret) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = hv_domain_by_uuid(c, uuid, &r);
        if (!d)
                return r;
        const char *name = virDomainGetName(d);
        /* SECURE keeps the VNC password, so a restarted copy keeps it too. */
        char *xml = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
        if (!xml)
                return hv_virt_fail("cannot read the definition of VM '%s' (%s)", name, uuid);
        *ret = xml;
        return 0;
}

static int domain_xml_get_body(HvConn *c, HvCall *a) {
        return domain_xml_get_now(c, a->s[0], &a->ret.str);
}

int hv_domain_xml_get(HvConn *c, const char *uuid, char **ret) {
        return HV_CALL_TAKE(c, hv_call_new(domain_xml_get_body, "reading a domain's XML", uuid, NULL, NULL, NULL), hv_deadlines.query_ms, ret, NULL);
}

static int domain_define_xml_now(HvConn *c, const char *xml) {
        HV_LEASE(c);
        assert(c);
        if (!xml || !xml[0]) {
                hv_set_error("cannot define a VM from empty XML");
                return -EINVAL;
        }
        virDomainPtr d = virDomainDefineXML(hv_conn_virt(c), xml);
        if (!d)
                return hv_virt_fail("cannot define a VM from its saved definition");
        virDomainFree(d);
        return 0;
}

static int domain_define_xml_body(HvConn *c, HvCall *a) {
        return domain_define_xml_now(c, a->s[0]);
}

int hv_domain_define_xml(HvConn *c, const char *xml) {
        return hv_call_code(c, hv_call_new(domain_define_xml_body, "defining a domain", xml, NULL, NULL, NULL), hv_deadlines.change_ms);
}
