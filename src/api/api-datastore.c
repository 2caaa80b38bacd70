/* The backup datastores' REST resources (administrators only):
 *
 *   GET|POST /api/v1/datastores {name, path, chunk_size}  list (cached usage), add or adopt
 *   GET|DELETE /api/v1/datastores/{id}[?force=true]      one; forget (files stay)
 *   GET /api/v1/datastores/{id}/points                   its recovery points, last_verified
 *   POST /api/v1/datastores/{id}/actions/verify          re-read every chunk (job)
 *   POST /api/v1/datastores/{id}/actions/gc              remove unused chunks (job)
 *   POST /api/v1/datastores/{id}/actions/prune {vm, keep_*, dry_run}      (job)
 *   POST /api/v1/datastores/{id}/actions/archive {vm|point, to}           (job)
 *   POST /api/v1/datastores/{id}/actions/import {path}                    (job)
 *   POST /api/v1/datastores/verify-path {path}           verify an archive directory (job)
 *
 * Handlers parse, call one operation of src/protect (protect.h) and map. */
#include "api-priv.h"

#include <stdint.h>
#include <string.h>

#include "protect/protect.h"

#define KEEP_MAX 1000000

static void h_datastores_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        json_t *all = NULL;
        int e = protect_datastores_list(r->api->st, &c, req_query(r, "name"), &all, &err);
        reply_result(r, e, &err, 200, e < 0 ? NULL : json_pack("{s:o}", "items", all));
}

static void h_datastores_create(Req *r) {
        static const char *const fields[] = { "name", "path", "chunk_size", NULL };
        const char *name = NULL, *path = NULL;
        int64_t chunk_size = 0; /* absent: the default; which sizes are allowed is the op's rule */
        if (!req_body_fields(r, fields) || !body_string(r, "name", true, 200, &name) ||
            !body_string(r, "path", true, 1000, &path) || !body_int(r, "chunk_size", false, 1, INT64_MAX, &chunk_size))
                return;
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = protect_datastore_add(r->api->st, r->api->jobs, &c, name, path, (uint64_t) chunk_size, &out, &err);
        reply_result(r, e, &err, 201, out);
}

static void h_datastore_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = protect_datastore_get(r->api->st, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_datastore_points(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = protect_datastore_points(r->api->st, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 200, e < 0 ? NULL : json_pack("{s:o}", "items", out));
}

static void h_datastore_delete(Req *r) {
        const char *force_s = req_query(r, "force");
        if (force_s && !streq(force_s, "true") && !streq(force_s, "false") && !streq(force_s, "1") && !streq(force_s, "0"))
                return reply_error(r, 400, "invalid_argument", "force", "Query 'force' must be true or false.");
        bool force = force_s && (streq(force_s, "true") || streq(force_s, "1"));
        OpCaller c = api_caller(r);
        OpError err;
        int e = protect_datastore_remove(r->api->st, &c, r->id[0], force, &err);
        reply_result(r, e, &err, 204, NULL);
}

static bool keep_field(Req *r, const char *field, unsigned *ret) {
        int64_t v = 0;
        if (!body_int(r, field, false, 0, KEEP_MAX, &v))
                return false;
        *ret = (unsigned) v;
        return true;
}

static void action_prune(Req *r, const OpCaller *c, OpError *err, json_t **out, int *e) {
        static const char *const fields[] = { "vm", "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly",
                                              "keep_yearly", "dry_run", NULL };
        ProtectPruneSpec spec = { 0 };
        if (!req_body_fields(r, fields) || !body_string(r, "vm", false, 200, &spec.vm) ||
            !keep_field(r, "keep_last", &spec.keep_last) || !keep_field(r, "keep_hourly", &spec.keep_hourly) ||
            !keep_field(r, "keep_daily", &spec.keep_daily) || !keep_field(r, "keep_weekly", &spec.keep_weekly) ||
            !keep_field(r, "keep_monthly", &spec.keep_monthly) || !keep_field(r, "keep_yearly", &spec.keep_yearly) ||
            !body_bool(r, "dry_run", &spec.dry_run)) {
                *e = 1; /* replied */
                return;
        }
        *e = protect_datastore_prune(r->api->st, r->api->jobs, c, r->id[0], &spec, out, err);
}

static void action_archive(Req *r, const OpCaller *c, OpError *err, json_t **out, int *e) {
        static const char *const fields[] = { "vm", "point", "to", NULL };
        ProtectArchiveSpec spec = { 0 };
        if (!req_body_fields(r, fields) || !body_string(r, "vm", false, 200, &spec.vm) ||
            !body_string(r, "point", false, 300, &spec.point) || !body_string(r, "to", true, 1000, &spec.to)) {
                *e = 1;
                return;
        }
        *e = protect_datastore_archive(r->api->st, r->api->jobs, c, r->id[0], &spec, out, err);
}

static void action_import(Req *r, const OpCaller *c, OpError *err, json_t **out, int *e) {
        static const char *const fields[] = { "path", NULL };
        const char *path = NULL;
        if (!req_body_fields(r, fields) || !body_string(r, "path", true, 1000, &path)) {
                *e = 1;
                return;
        }
        *e = protect_datastore_import(r->api->st, r->api->jobs, c, r->id[0], path, out, err);
}

static void h_datastore_action(Req *r) {
        const char *action = r->word[0];
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e;
        if (streq(action, "verify") || streq(action, "gc")) {
                static const char *const none[] = { NULL };
                if (!req_body_fields(r, none))
                        return;
                e = streq(action, "verify") ? protect_datastore_verify(r->api->st, r->api->jobs, &c, r->id[0], &out, &err)
                                            : protect_datastore_gc(r->api->st, r->api->jobs, &c, r->id[0], &out, &err);
        } else if (streq(action, "prune"))
                action_prune(r, &c, &err, &out, &e);
        else if (streq(action, "archive"))
                action_archive(r, &c, &err, &out, &e);
        else if (streq(action, "import"))
                action_import(r, &c, &err, &out, &e);
        else
                return reply_error(r, 404, "not_found", NULL, "There is no datastore action '%.32s'; use verify, gc, prune,"
                                   " archive or import.", action);
        if (e > 0)
                return; /* the parser replied */
        reply_result(r, e, &err, 202, out);
}

static void h_verify_path(Req *r) {
        static const char *const fields[] = { "path", NULL };
        const char *path = NULL;
        if (!req_body_fields(r, fields) || !body_string(r, "path", true, 1000, &path))
                return;
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = protect_path_verify(r->api->st, r->api->jobs, &c, path, &out, &err);
        reply_result(r, e, &err, 202, out);
}

const Route api_routes_datastore[] = {
        { "GET", "/api/v1/datastores", h_datastores_list, false },
        { "POST", "/api/v1/datastores", h_datastores_create, false },
        { "POST", "/api/v1/datastores/verify-path", h_verify_path, false },
        { "GET", "/api/v1/datastores/#", h_datastore_get, false },
        { "DELETE", "/api/v1/datastores/#", h_datastore_delete, false },
        { "GET", "/api/v1/datastores/#/points", h_datastore_points, false },
        { "POST", "/api/v1/datastores/#/actions/*", h_datastore_action, false },
        { NULL, NULL, NULL, false },
};
