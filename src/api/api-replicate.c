/* Replication to a second site (administrators only):
 *
 *   GET|POST /api/v1/replications {name, source, to_path | to_url, to_datastore, token, ca_file, every}
 *   DELETE /api/v1/replications/{id}
 *   POST /api/v1/replications/{id}/actions/run                  (job datastore.replicate)
 *
 * and the receiving side, on a datastore of this armadad:
 *
 *   POST /api/v1/datastores/{id}/replica/missing {digests}      the subset it lacks
 *   POST /api/v1/datastores/{id}/replica/chunks?digest=HEX      a chunk file (streamed, bounded)
 *   POST /api/v1/datastores/{id}/replica/points                 a point's JSON (streamed, bounded)
 *
 * Handlers parse, call one operation of src/protect (protect.h) and map. */
#include "api-priv.h"

#include <stdint.h>
#include <string.h>

#include "protect/protect.h"

static void h_replications_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        json_t *all = NULL;
        int e = protect_replications_list(r->api->st, &c, &all, &err);
        reply_result(r, e, &err, 200, e < 0 ? NULL : json_pack("{s:o}", "items", all));
}

static void h_replications_create(Req *r) {
        static const char *const fields[] = { "name", "source", "to_path", "to_url", "to_datastore", "token", "ca_file",
                                              "every", NULL };
        ProtectReplicationSpec spec = { 0 };
        if (!req_body_fields(r, fields) || !body_string(r, "name", false, 200, &spec.name) ||
            !body_string(r, "source", true, 200, &spec.source) || !body_string(r, "to_path", false, 1000, &spec.to_path) ||
            !body_string(r, "to_url", false, 300, &spec.to_url) ||
            !body_string(r, "to_datastore", false, 200, &spec.to_datastore) ||
            !body_string(r, "token", false, 1000, &spec.token) || !body_string(r, "ca_file", false, 1000, &spec.ca_file) ||
            !body_int(r, "every", false, 0, PROTECT_REPLICA_EVERY_MAX, &spec.every_s))
                return;
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = protect_replication_add(r->api->st, &c, &spec, &out, &err);
        reply_result(r, e, &err, 201, out);
}

static void h_replication_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        int e = protect_replication_remove(r->api->st, &c, r->id[0], &err);
        reply_result(r, e, &err, 204, NULL);
}

static void h_replication_run(Req *r) {
        static const char *const none[] = { NULL };
        if (!req_body_fields(r, none))
                return;
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = protect_replication_run(r->api->st, r->api->jobs, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 202, out);
}

static void h_replica_missing(Req *r) {
        static const char *const fields[] = { "digests", NULL };
        if (!req_body_fields(r, fields))
                return;
        json_t *digests = r->json ? json_object_get(r->json, "digests") : NULL;
        if (!json_is_array(digests))
                return reply_error(r, 400, "invalid_argument", "digests", "Field 'digests' must be an array of digests.");
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = protect_replica_missing(r->api->st, &c, r->id[0], digests, &out, &err);
        reply_result(r, e, &err, 200, out);
}

/* ---- streamed bodies, buffered here up to a bound (a chunk file, a
 * point's JSON): both are bigger than the API's body limit ---- */

typedef struct {
        StrBuf b;
        size_t max;
} Upload;

static void upload_free(Req *r) {
        Upload *u = r->stream_state;
        if (u) {
                strbuf_free(&u->b);
                free(u);
        }
        r->stream_state = NULL;
}

/* The common phases; true at STREAM_END with the whole body in the state. */
static bool upload_step(Req *r, size_t max) {
        switch (r->stream_phase) {
        case STREAM_BEGIN: {
                OpCaller c = api_caller(r);
                OpError err;
                if (protect_replica_begin(r->api->st, &c, r->id[0], &err) < 0) {
                        reply_op_error(r, &err);
                        return false;
                }
                const char *cl = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Content-Length");
                int64_t len;
                if (cl && parse_i64(cl, &len) == 0 && (len < 0 || (uint64_t) len > max)) {
                        reply_error(r, 413, "too_large", "body", "The body is larger than the limit of %zu bytes.", max);
                        return false;
                }
                Upload *u = xcalloc(1, sizeof *u);
                u->max = max;
                r->stream_state = u;
                return false;
        }
        case STREAM_DATA: {
                Upload *u = r->stream_state;
                if (!u)
                        return false;
                if (u->b.len + r->upload_len > u->max) {
                        upload_free(r);
                        reply_error(r, 413, "too_large", "body", "The body is larger than the limit of %zu bytes.", max);
                        return false;
                }
                strbuf_appendn(&u->b, r->upload, r->upload_len);
                return false;
        }
        case STREAM_END:
                if (!r->stream_state) {
                        reply_error(r, 500, "internal", NULL, "The upload lost its state.");
                        return false;
                }
                return true;
        case STREAM_ABORT:
                upload_free(r);
                return false;
        default:
                reply_error(r, 400, "invalid_argument", NULL, "Uploads must be streamed.");
                return false;
        }
}

static void h_replica_chunk(Req *r) {
        if (r->stream_phase == STREAM_BEGIN && !req_query(r, "digest"))
                return reply_error(r, 400, "invalid_argument", "digest", "Query 'digest' must be a SHA-256 digest in hex.");
        if (!upload_step(r, PROTECT_REPLICA_CHUNK_MAX))
                return;
        Upload *u = r->stream_state;
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = protect_replica_chunk(r->api->st, &c, r->id[0], req_query(r, "digest"), u->b.s, u->b.len, &out, &err);
        upload_free(r);
        reply_result(r, e, &err, 201, out);
}

static void h_replica_point(Req *r) {
        if (!upload_step(r, PROTECT_REPLICA_MANIFEST_MAX))
                return;
        Upload *u = r->stream_state;
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = protect_replica_point(r->api->st, &c, r->id[0], u->b.s ? u->b.s : "", u->b.len, &out, &err);
        upload_free(r);
        reply_result(r, e, &err, e == 0 && json_is_true(json_object_get(out, "existed")) ? 200 : 201, out);
}

const Route api_routes_replicate[] = {
        { "GET", "/api/v1/replications", h_replications_list, false },
        { "POST", "/api/v1/replications", h_replications_create, false },
        { "DELETE", "/api/v1/replications/#", h_replication_delete, false },
        { "POST", "/api/v1/replications/#/actions/run", h_replication_run, false },
        { "POST", "/api/v1/datastores/#/replica/missing", h_replica_missing, false },
        { "POST", "/api/v1/datastores/#/replica/chunks", h_replica_chunk, false, true },
        { "POST", "/api/v1/datastores/#/replica/points", h_replica_point, false, true },
        { NULL, NULL, NULL, false },
};
