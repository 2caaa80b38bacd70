/* The backups' REST resources: back up a VM now, list recovery points,
 * restore one. Each handler parses the request, calls one operation of the
 * protect module (protect.h, Backups) and maps its result. */
#include "api-priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "protect/protect.h"

static void h_vm_backup(Req *r) {
        static const char *const fields[] = { "datastore", NULL };
        const char *ds = NULL;
        if (!req_body_fields(r, fields) || !body_name(r, "datastore", false, &ds))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_backup_now(r->api->st, r->api->jobs, &c, r->id[0], ds, &out, &err);
        reply_result(r, e, &err, 202, out);
}

static void h_backups_list(Req *r) {
        ProtectBackupListSpec spec = { .vm = req_query(r, "vm"), .datastore = req_query(r, "datastore") };
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_backup_list(r->api->st, &c, &spec, &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_backups_restore(Req *r) {
        static const char *const fields[] = { "vm", "point", "datastore", "as", "in_place", "host", "disk", NULL };
        ProtectRestoreSpec spec = {0};
        if (!req_body_fields(r, fields) || !body_string(r, "vm", true, 200, &spec.vm) ||
            !body_string(r, "point", true, 32, &spec.point) || !body_name(r, "datastore", false, &spec.datastore) ||
            !body_name(r, "as", false, &spec.as_name) || !body_bool(r, "in_place", &spec.in_place) ||
            !body_name(r, "host", false, &spec.host) || !body_name(r, "disk", false, &spec.disk))
                return;
        if (!spec.as_name == !spec.in_place)
                return reply_error(r, 400, "invalid_argument", "as", "Give either 'as' (the name of a new VM) or 'in_place': true.");
        if (spec.in_place && spec.host)
                return reply_error(r, 400, "invalid_argument", "host", "A restore in place stays on the VM's host; 'host' is for a "
                                   "new VM.");
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_backup_restore(r->api->st, r->api->jobs, &c, &spec, &out, &err);
        reply_result(r, e, &err, 202, out);
}

/* "30s", "15m", "1h", "1d" or a whole number of seconds: 0 and *ret, or -EINVAL. */
static int parse_every(const char *s, int64_t *ret) {
        char *end = NULL;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (errno || end == s || n <= 0)
                return -EINVAL;
        int64_t mul = streq(end, "") || streq(end, "s") ? 1 : streq(end, "m") ? 60 : streq(end, "h") ? 3600 : streq(end, "d") ? 86400 : 0;
        if (!mul || n > INT64_C(366) * 86400 / mul)
                return -EINVAL;
        *ret = n * mul;
        return 0;
}

static void h_policies_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_policy_list(r->api->st, &c, &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_policies_set(Req *r) {
        static const char *const fields[] = { "vm", "group", "every", "datastore", "keep_last", "keep_hourly", "keep_daily",
                                              "keep_weekly", "keep_monthly", "keep_yearly", NULL };
        ProtectPolicySpec spec = {0};
        const char *every = NULL;
        if (!req_body_fields(r, fields) || !body_name(r, "vm", false, &spec.vm) || !body_string(r, "group", false, 1024, &spec.group) ||
            !body_string(r, "every", true, 32, &every) || !body_name(r, "datastore", false, &spec.datastore))
                return;
        for (int k = 0; k < 6; k++)
                if (!body_int(r, fields[4 + k], false, 0, 100000, &spec.keep[k]))
                        return;
        if (!spec.vm == !spec.group)
                return reply_error(r, 400, "invalid_argument", "vm", "Give either 'vm' (a VM's name) or 'group' (a host-group path).");
        if (parse_every(every, &spec.every_s) < 0 || spec.every_s < 10)
                return reply_error(r, 400, "invalid_argument", "every", "Field 'every' (\"%.40s\") must be an interval of at least "
                                   "10 seconds, such as \"30s\", \"15m\", \"1h\" or \"1d\".", every);
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_policy_set(r->api->st, &c, &spec, &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_policy_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        int e = protect_policy_delete(r->api->st, &c, r->id[0], &err);
        reply_result(r, e, &err, 204, NULL);
}

const Route api_routes_backup[] = {
        { "GET", "/api/v1/backup-policies", h_policies_list, false },
        { "POST", "/api/v1/backup-policies", h_policies_set, false },
        { "DELETE", "/api/v1/backup-policies/#", h_policy_delete, false },
        { "POST", "/api/v1/vms/#/backups", h_vm_backup, false },
        { "GET", "/api/v1/backups", h_backups_list, false },
        { "POST", "/api/v1/backups/restore", h_backups_restore, false },
        { NULL, NULL, NULL, false },
};
