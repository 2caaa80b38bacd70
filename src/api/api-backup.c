/* The backups' REST resources: back up a VM now, list recovery points,
 * restore one. Each handler parses the request, calls one operation of the
 * protect module (protect.h, Backups) and maps its result. */
#include "api-priv.h"

#include <errno.h>
#include <string.h>

#include "protect/protect.h"

static void answer(Req *r, int e, const OpError *err, int status, json_t *out) {
        if (e < 0) {
                json_decref(out);
                return reply_op_error(r, err);
        }
        reply(r, status, out);
}

static void h_vm_backup(Req *r) {
        static const char *const fields[] = { "datastore", NULL };
        const char *ds = NULL;
        if (!req_body_fields(r, fields) || !body_name(r, "datastore", false, &ds))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_backup_now(r->api->st, r->api->jobs, &c, r->id[0], ds, &out, &err);
        answer(r, e, &err, 202, out);
}

static void h_backups_list(Req *r) {
        ProtectBackupListSpec spec = { .vm = req_query(r, "vm"), .datastore = req_query(r, "datastore") };
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_backup_list(r->api->st, &c, &spec, &out, &err);
        answer(r, e, &err, 200, out);
}

static void h_backups_restore(Req *r) {
        static const char *const fields[] = { "vm", "point", "datastore", "as", "in_place", "host", NULL };
        ProtectRestoreSpec spec = {0};
        if (!req_body_fields(r, fields) || !body_string(r, "vm", true, 200, &spec.vm) ||
            !body_string(r, "point", true, 32, &spec.point) || !body_name(r, "datastore", false, &spec.datastore) ||
            !body_name(r, "as", false, &spec.as_name) || !body_bool(r, "in_place", &spec.in_place) ||
            !body_name(r, "host", false, &spec.host))
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
        answer(r, e, &err, 202, out);
}

const Route api_routes_backup[] = {
        { "POST", "/api/v1/vms/#/backups", h_vm_backup, false },
        { "GET", "/api/v1/backups", h_backups_list, false },
        { "POST", "/api/v1/backups/restore", h_backups_restore, false },
        { NULL, NULL, NULL, false },
};
