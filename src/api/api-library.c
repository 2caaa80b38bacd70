/* The library capability's REST resources:
 *
 *   GET|POST /api/v1/library/shares, DELETE /api/v1/library/shares/{id}
 *   POST /api/v1/library/shares/{id}/actions/refresh        index (job)
 *   POST /api/v1/library/shares/{id}/upload?name=REL         streamed body
 *   GET /api/v1/library/items[?share_id=&kind=], GET /api/v1/library/items/{id}
 *   POST /api/v1/library/items {path}                        import a file of a share
 *   GET|POST /api/v1/templates, GET|DELETE /api/v1/templates/{id}
 *   POST /api/v1/templates/{id}/deploy {name, count, host, group, full_copy, start}
 *   POST /api/v1/templates/from-vm {vm, name, share_id, points}  a stopped VM's disk (job)
 *   GET|POST /api/v1/grants, GET|DELETE /api/v1/grants/{id}
 *   GET /api/v1/self-service                                 the caller's grants, quota, VMs
 *
 * Changing the library, templates and grants is the administrator's
 * (OBJ_SYSTEM in the policy). Reading them is open to every role but
 * self-service users, who see only the templates granted to them. A deploy
 * by a self-service user is authorized by a grant (template, quota, host
 * group, actions) instead of the policy's VM CREATE, which it never has. */
#include "api-priv.h"

#include <stdint.h>
#include <string.h>

#include "library/library.h"

#define VM_CPUS_MAX 256
#define VM_MEMORY_MIN_MIB 16
#define VM_MEMORY_MAX_MIB (4LL << 20)

static json_t *items(json_t *arr) {
        return json_pack("{s:o}", "items", arr ? arr : json_array());
}

/* Maps an operation's result: body with status, or its failure. */
/* ------------------------------------------------------------------ */
/* shares */

static void h_shares_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        json_t *all = NULL;
        int e = library_shares_list(r->api->st, &c, &all, &err);
        reply_result(r, e, &err, 200, items(all));
}

static void h_shares_create(Req *r) {
        static const char *const fields[] = { "path", NULL };
        const char *path = NULL;
        if (!req_body_fields(r, fields) || !body_string(r, "path", true, 1000, &path))
                return;
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = library_share_create(r->api->st, r->api->jobs, &c, path, &out, &err);
        reply_result(r, e, &err, 201, out);
}

static void h_share_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        int e = library_share_delete(r->api->st, &c, r->id[0], &err);
        reply_result(r, e, &err, 204, NULL);
}

static void h_share_refresh(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = library_share_refresh(r->api->st, r->api->jobs, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 202, out);
}

/* ------------------------------------------------------------------ */
/* items */

static void h_items_list(Req *r) {
        int64_t share_id;
        if (!req_query_int(r, "share_id", 0, 0, INT64_MAX, &share_id))
                return;
        OpCaller c = api_caller(r);
        OpError err;
        json_t *all = NULL;
        int e = library_items_list(r->api->st, &c, share_id, req_query(r, "kind"), &all, &err);
        reply_result(r, e, &err, 200, items(all));
}

static void h_item_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        json_t *it = NULL;
        int e = library_item_get(r->api->st, &c, r->id[0], &it, &err);
        reply_result(r, e, &err, 200, it);
}

static void h_items_import(Req *r) {
        static const char *const fields[] = { "path", NULL };
        const char *path = NULL;
        if (!req_body_fields(r, fields) || !body_string(r, "path", true, 1000, &path))
                return;
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = library_item_import(r->api->st, r->api->jobs, &c, path, &out, &err);
        reply_result(r, e, &err, 202, out);
}

/* ---- streamed upload: the library owns the file (LibraryUpload in
 * r->stream_state); this is the glue to the streamed body ---- */

static void upload_begin(Req *r) {
        const char *cl = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Content-Length");
        int64_t len;
        if (!cl || parse_i64(cl, &len) < 0)
                len = -1;
        OpCaller c = api_caller(r);
        OpError err;
        LibraryUpload *u = NULL;
        int e = library_upload_begin(r->api->st, &c, r->id[0], req_query(r, "name"), len, &u, &err);
        if (e < 0)
                return reply_op_error(r, &err);
        r->stream_state = u;
}

static void upload_data(Req *r) {
        if (!r->stream_state)
                return;
        OpError err;
        if (library_upload_write(r->stream_state, r->upload, r->upload_len, &err) < 0) {
                r->stream_state = library_upload_free(r->stream_state);
                reply_op_error(r, &err);
        }
}

static void upload_end(Req *r) {
        if (!r->stream_state)
                return reply_error(r, 500, "internal", NULL, "The upload lost its state.");
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = library_upload_finish(r->api->st, &c, r->stream_state, &out, &err);
        r->stream_state = library_upload_free(r->stream_state);
        reply_result(r, e, &err, 201, out);
}

static void h_share_upload(Req *r) {
        switch (r->stream_phase) {
        case STREAM_BEGIN: upload_begin(r); break;
        case STREAM_DATA: upload_data(r); break;
        case STREAM_END: upload_end(r); break;
        case STREAM_ABORT: r->stream_state = library_upload_free(r->stream_state); break;
        default: reply_error(r, 400, "invalid_argument", NULL, "Uploads must be streamed.");
        }
}

/* ------------------------------------------------------------------ */
/* templates */

static void h_templates_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        json_t *all = NULL;
        int e = library_templates_list(r->api->st, &c, &all, &err);
        reply_result(r, e, &err, 200, items(all));
}

static void h_template_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        json_t *t = NULL;
        int e = library_template_get(r->api->st, &c, r->id[0], &t, &err);
        reply_result(r, e, &err, 200, t);
}

static void h_templates_create(Req *r) {
        static const char *const fields[] = { "name", "description", "cpus", "memory_mib", "disk_size", "data_disks", "firmware",
                                              "network", "image", "image_id", "hostname_pattern", "admin_user", "ssh_keys",
                                              "timezone", "user_data", "points", "domain_type", "iso", "iso_id", NULL };
        LibraryTemplateSpec s = { .cpus = 1, .memory_mib = 512, .points = 1, .firmware = "bios", .domain_type = "auto" };
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &s.name) ||
            !body_string(r, "description", false, 1000, &s.description) || !body_int(r, "cpus", false, 1, VM_CPUS_MAX, &s.cpus) ||
            !body_int(r, "memory_mib", false, VM_MEMORY_MIN_MIB, VM_MEMORY_MAX_MIB, &s.memory_mib) ||
            !body_string(r, "disk_size", false, 32, &s.disk_size) || !body_string(r, "firmware", false, 16, &s.firmware) ||
            !body_name(r, "network", false, &s.network) || !body_string(r, "image", false, 1000, &s.image) ||
            !body_int(r, "image_id", false, 1, INT64_MAX, &s.image_id) ||
            !body_string(r, "hostname_pattern", false, 63, &s.hostname_pattern) || !body_name(r, "admin_user", false, &s.admin_user) ||
            !body_string(r, "timezone", false, 64, &s.timezone) || !body_string(r, "user_data", false, SIZE_MAX, &s.user_data) ||
            !body_int(r, "points", false, 0, 1000000, &s.points) || !body_string(r, "domain_type", false, 8, &s.domain_type) ||
            !body_string(r, "iso", false, 1000, &s.iso) || !body_int(r, "iso_id", false, 1, INT64_MAX, &s.iso_id))
                return;
        if (!streq(s.domain_type, "auto") && !streq(s.domain_type, "kvm") && !streq(s.domain_type, "qemu"))
                return reply_error(r, 400, "invalid_argument", "domain_type", "Field 'domain_type' must be auto, kvm or qemu.");
        s.ssh_keys = json_object_get(r->json, "ssh_keys");
        s.data_disks = json_object_get(r->json, "data_disks");
        OpCaller c = api_caller(r);
        OpError err;
        json_t *t = NULL;
        int e = library_template_create(r->api->st, &c, &s, &t, &err);
        reply_result(r, e, &err, 201, t);
}

static void h_template_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        int e = library_template_delete(r->api->st, &c, r->id[0], &err);
        reply_result(r, e, &err, 204, NULL);
}

/* POST /api/v1/templates/from-vm {vm, name, share_id?, points?}: a job copies
 * the stopped VM's system disk into a share (as <name>.qcow2) and makes a
 * template of it with the VM's CPUs and memory. */
static void h_template_from_vm(Req *r) {
        static const char *const fields[] = { "vm", "name", "share_id", "points", NULL };
        const char *vm_name = NULL, *name = NULL;
        int64_t share_id = 0, points = 1;
        if (!req_body_fields(r, fields) || !body_name(r, "vm", true, &vm_name) || !body_name(r, "name", true, &name) ||
            !body_int(r, "share_id", false, 1, INT64_MAX, &share_id) || !body_int(r, "points", false, 0, 1000000, &points))
                return;
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = library_template_from_vm(r->api->st, r->api->jobs, &c, vm_name, name, share_id, points, &out, &err);
        reply_result(r, e, &err, 202, out);
}

/* ------------------------------------------------------------------ */
/* deploy */

static void h_template_deploy(Req *r) {
        static const char *const fields[] = { "name", "count", "host", "group", "full_copy", "start", NULL };
        LibraryDeploySpec s = { .template_id = r->id[0], .count = 1, .start = true };
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &s.name) ||
            !body_int(r, "count", false, 1, LIBRARY_DEPLOY_COUNT_MAX, &s.count) || !body_string(r, "host", false, 64, &s.host) ||
            !body_string(r, "group", false, 1000, &s.group) || !body_bool(r, "full_copy", &s.full_copy) ||
            !body_bool(r, "start", &s.start))
                return;
        if (s.host && s.group)
                return reply_error(r, 400, "invalid_argument", "group", "Give either 'host' or 'group', not both.");
        /* A count asked for numbers the VMs, even a count of 1. */
        s.numbered = json_is_integer(json_object_get(r->json, "count"));
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = library_template_deploy(r->api->st, r->api->jobs, &c, &s, &out, &err);
        reply_result(r, e, &err, 202, out);
}

/* ------------------------------------------------------------------ */
/* grants and self-service */

static void h_grants_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        json_t *all = NULL;
        int e = library_grants_list(r->api->st, &c, &all, &err);
        reply_result(r, e, &err, 200, items(all));
}

static void h_grant_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        json_t *g = NULL;
        int e = library_grant_get(r->api->st, &c, r->id[0], &g, &err);
        reply_result(r, e, &err, 200, g);
}

static void h_grants_create(Req *r) {
        static const char *const fields[] = { "user", "templates", "group", "points", "max_vms", "max_cpus", "max_memory_mib", "actions",
                                              NULL };
        LibraryGrantSpec s = { .points = -1, .max_vms = -1, .max_cpus = -1, .max_memory_mib = -1, .actions = LIBRARY_GRANT_ACTIONS };
        if (!req_body_fields(r, fields) || !body_name(r, "user", true, &s.user) || !body_string(r, "group", true, 1000, &s.group) ||
            !body_int(r, "points", false, 0, 100000000, &s.points) || !body_int(r, "max_vms", false, 0, 100000, &s.max_vms) ||
            !body_int(r, "max_cpus", false, 0, 10000000, &s.max_cpus) ||
            !body_int(r, "max_memory_mib", false, 0, INT32_MAX, &s.max_memory_mib) ||
            !body_string(r, "actions", false, 200, &s.actions))
                return;
        s.templates = json_object_get(r->json, "templates");
        OpCaller c = api_caller(r);
        OpError err;
        json_t *g = NULL;
        int e = library_grant_create(r->api->st, &c, &s, &g, &err);
        reply_result(r, e, &err, 201, g);
}

static void h_grant_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        int e = library_grant_delete(r->api->st, &c, r->id[0], &err);
        reply_result(r, e, &err, 204, NULL);
}

static void h_self_service(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = library_self_service(r->api->st, &c, &out, &err);
        reply_result(r, e, &err, 200, out);
}

const Route api_routes_library[] = {
        { "GET", "/api/v1/library/shares", h_shares_list, false },
        { "POST", "/api/v1/library/shares", h_shares_create, false },
        { "DELETE", "/api/v1/library/shares/#", h_share_delete, false },
        { "POST", "/api/v1/library/shares/#/actions/refresh", h_share_refresh, false },
        { "POST", "/api/v1/library/shares/#/upload", h_share_upload, false, true },
        { "GET", "/api/v1/library/items", h_items_list, false },
        { "POST", "/api/v1/library/items", h_items_import, false },
        { "GET", "/api/v1/library/items/#", h_item_get, false },
        { "GET", "/api/v1/templates", h_templates_list, false },
        { "POST", "/api/v1/templates", h_templates_create, false },
        { "POST", "/api/v1/templates/from-vm", h_template_from_vm, false },
        { "GET", "/api/v1/templates/#", h_template_get, false },
        { "DELETE", "/api/v1/templates/#", h_template_delete, false },
        { "POST", "/api/v1/templates/#/deploy", h_template_deploy, false },
        { "GET", "/api/v1/grants", h_grants_list, false },
        { "POST", "/api/v1/grants", h_grants_create, false },
        { "GET", "/api/v1/grants/#", h_grant_get, false },
        { "DELETE", "/api/v1/grants/#", h_grant_delete, false },
        { "GET", "/api/v1/self-service", h_self_service, false },
        { NULL, NULL, NULL, false },
};
