/* The REST API of clone, export and import (issue 12): each handler parses
 * the request and calls one operation of the library (library.h, "clone,
 * export and import"), which checks rights, records and queues the job.
 *
 *   POST /api/v1/vms/{id}/clone   {name, linked?, host?, start?}
 *   POST /api/v1/vms/{id}/export  {to, format}
 *   POST /api/v1/vms/import       {path, name?, host?, group?, cpus?, memory_mib?, network?, networks?, start?} */
#include "api-priv.h"

#include "library/library.h"

/* The bounds POST /vms uses. */
#define IMPORT_CPUS_MAX 256
#define IMPORT_MEMORY_MIN_MIB 16
#define IMPORT_MEMORY_MAX_MIB (4LL << 20)

static void h_vm_clone(Req *r) {
        static const char *const fields[] = { "name", "linked", "host", "start", NULL };
        LibraryCloneSpec s = { .vm_id = r->id[0] };
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &s.name) || !body_bool(r, "linked", &s.linked) ||
            !body_string(r, "host", false, 64, &s.host) || !body_bool(r, "start", &s.start))
                return;
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = library_vm_clone(r->api->st, r->api->jobs, &c, &s, &out, &err);
        reply_result(r, e, &err, 202, out);
}

static void h_vm_export(Req *r) {
        static const char *const fields[] = { "to", "format", NULL };
        LibraryExportSpec s = { .vm_id = r->id[0], .format = "ova" };
        if (!req_body_fields(r, fields) || !body_string(r, "to", true, 1000, &s.to) ||
            !body_string(r, "format", false, 8, &s.format))
                return;
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = library_vm_export(r->api->st, r->api->jobs, &c, &s, &out, &err);
        reply_result(r, e, &err, 202, out);
}

static void h_vm_import(Req *r) {
        static const char *const fields[] = { "path", "name", "host", "group", "cpus", "memory_mib", "network", "networks", "start",
                                              "v2v", NULL };
        LibraryImportSpec s = { 0 };
        if (!req_body_fields(r, fields) || !body_string(r, "path", true, 1000, &s.path) || !body_name(r, "name", false, &s.name) ||
            !body_string(r, "host", false, 64, &s.host) || !body_string(r, "group", false, 1000, &s.group) ||
            !body_int(r, "cpus", false, 1, IMPORT_CPUS_MAX, &s.cpus) ||
            !body_int(r, "memory_mib", false, IMPORT_MEMORY_MIN_MIB, IMPORT_MEMORY_MAX_MIB, &s.memory_mib) ||
            !body_name(r, "network", false, &s.network) || !body_bool(r, "start", &s.start) ||
            !body_string(r, "v2v", false, 16, &s.v2v))
                return;
        if (s.host && s.group)
                return reply_error(r, 400, "invalid_argument", "group", "Give either 'host' or 'group', not both.");
        s.networks = r->json ? json_object_get(r->json, "networks") : NULL;
        if (s.networks && !json_is_array(s.networks) && !json_is_object(s.networks))
                return reply_error(r, 400, "invalid_argument", "networks", "Field 'networks' must be a list of networks or an object"
                                   " mapping the descriptor's networks to networks.");
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = library_vm_import(r->api->st, r->api->jobs, &c, &s, &out, &err);
        reply_result(r, e, &err, 202, out);
}

const Route api_routes_export[] = {
        /* issue 12: clone, export and import */
        { "POST", "/api/v1/vms/#/clone", h_vm_clone, false },
        { "POST", "/api/v1/vms/#/export", h_vm_export, false },
        { "POST", "/api/v1/vms/import", h_vm_import, false },
        { NULL, NULL, NULL, false },
};
