/* The place capability's REST resources: a host group's placement policy
 * (reserves, goal, weights; inherited down the tree), host ratings for a
 * VM's demand, and placement rules (affinity / anti-affinity of VMs). The
 * handlers parse the request, call one operation of the placement module
 * (placement/placement.h) and map its result.
 *
 *   GET  /api/v1/host-groups/{id}/placement-policy   own and effective policy
 *   PUT  /api/v1/host-groups/{id}/placement-policy   set fields; null inherits
 *   GET  /api/v1/placement/ratings?cpus=&memory_mib=&disk_size=&group=&goal=&name=
 *   POST /api/v1/placement/ratings                   the same as a JSON body
 *   GET|POST /api/v1/placement/rules, GET|PATCH|DELETE /api/v1/placement/rules/{id}
 *   POST /api/v1/placement/consolidation             pack servers onto few hosts (P2V) */
#include "api-priv.h"

#include <errno.h>
#include <string.h>

#include "placement/placement.h"

#define VM_CPUS_MAX 256
#define VM_MEMORY_MIN_MIB 16
#define VM_MEMORY_MAX_MIB (4LL << 20)
#define VM_DISK_MAX_BYTES (64LL << 40)

/* Maps an operation's result: 200 (or status) with *out, or the error. */
/* ------------------------------------------------------------------ */
/* placement policy */

static void h_policy_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int ret = placement_policy_get(r->api->st, &c, r->id[0], &out, &err);
        reply_result(r, ret, &err, 200, out);
}

static void h_policy_put(Req *r) {
        static const char *const fields[] = { "cpu_pct", "memory_mib", "disk_gib", "disk_io_pct", "network_pct", "goal", "weights", NULL };
        if (!req_body_fields(r, fields))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int ret = placement_policy_set(r->api->st, &c, r->id[0], r->json, &out, &err);
        reply_result(r, ret, &err, 200, out);
}

/* ------------------------------------------------------------------ */
/* ratings */

/* The demand of a ratings request, from the query (GET) or the body. */
typedef PlacementRateSpec RateArgs;

/* "limit": the best N hosts only (0 or absent: every host). */
#define RATINGS_LIMIT_MAX 100000

static bool disk_size_of(Req *r, const char *s, int64_t *ret) {
        uint64_t b;
        if (size_parse(s, 1ULL << 30, &b) < 0) {
                reply_error(r, 400, "invalid_argument", "disk_size", "Field 'disk_size' (\"%.32s\") must be a size such as 512M, 20G or 1T.", s);
                return false;
        }
        if (b > (uint64_t) VM_DISK_MAX_BYTES) {
                reply_error(r, 422, "out_of_range", "disk_size", "Field 'disk_size' must be at most 64T; %.32s was given.", s);
                return false;
        }
        *ret = (int64_t) b;
        return true;
}

static bool rate_args_query(Req *r, RateArgs *a) {
        if (!req_query_int(r, "cpus", 1, 1, VM_CPUS_MAX, &a->cpus) ||
            !req_query_int(r, "memory_mib", 512, VM_MEMORY_MIN_MIB, VM_MEMORY_MAX_MIB, &a->memory_mib) ||
            !req_query_int(r, "disk_bytes", 0, 0, VM_DISK_MAX_BYTES, &a->disk_bytes) ||
            !req_query_int(r, "limit", 0, 0, RATINGS_LIMIT_MAX, &a->limit))
                return false;
        const char *ds = req_query(r, "disk_size");
        if (ds && *ds && !disk_size_of(r, ds, &a->disk_bytes))
                return false;
        a->group = req_query(r, "group");
        a->goal = req_query(r, "goal");
        a->name = req_query(r, "name");
        if (a->group && !*a->group) a->group = NULL;
        if (a->goal && !*a->goal) a->goal = NULL;
        if (a->name && !*a->name) a->name = NULL;
        return true;
}

static bool rate_args_body(Req *r, RateArgs *a) {
        static const char *const fields[] = { "cpus", "memory_mib", "disk_size", "disk_bytes", "group", "goal", "name", "limit", NULL };
        const char *ds = NULL;
        a->cpus = 1;
        a->memory_mib = 512;
        if (!req_body_fields(r, fields) || !body_int(r, "cpus", false, 1, VM_CPUS_MAX, &a->cpus) ||
            !body_int(r, "memory_mib", false, VM_MEMORY_MIN_MIB, VM_MEMORY_MAX_MIB, &a->memory_mib) ||
            !body_int(r, "disk_bytes", false, 0, VM_DISK_MAX_BYTES, &a->disk_bytes) ||
            !body_int(r, "limit", false, 0, RATINGS_LIMIT_MAX, &a->limit) ||
            !body_string(r, "disk_size", false, 32, &ds) || !body_string(r, "group", false, 1000, &a->group) ||
            !body_string(r, "goal", false, 64, &a->goal) || !body_name(r, "name", false, &a->name))
                return false;
        if (ds && !disk_size_of(r, ds, &a->disk_bytes))
                return false;
        return true;
}

static void rate(Req *r, const RateArgs *a) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int ret = placement_ratings(r->api->st, &c, a, &out, &err);
        reply_result(r, ret, &err, 200, out);
}

static void h_ratings_get(Req *r) {
        RateArgs a = {0};
        if (rate_args_query(r, &a))
                rate(r, &a);
}

static void h_ratings_post(Req *r) {
        RateArgs a = {0};
        if (rate_args_body(r, &a))
                rate(r, &a);
}

/* ------------------------------------------------------------------ */
/* rules */

static void h_rules_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int ret = placement_rule_list(r->api->st, &c, &out, &err);
        reply_result(r, ret, &err, 200, out);
}

static void h_rules_create(Req *r) {
        static const char *const fields[] = { "name", "kind", "vms", NULL };
        OpCaller c = api_caller(r);
        OpError err = {0};
        /* Refused before the body is read, as always. */
        if (placement_rule_may_create(r->api->st, &c, &err) < 0)
                return reply_op_error(r, &err);
        PlacementRuleSpec s = {0};
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &s.name) || !body_string(r, "kind", true, 32, &s.kind))
                return;
        s.vms = json_object_get(r->json, "vms");
        json_t *out = NULL;
        int ret = placement_rule_create(r->api->st, &c, &s, &out, &err);
        reply_result(r, ret, &err, 201, out);
}

static void h_rule_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int ret = placement_rule_get(r->api->st, &c, r->id[0], &out, &err);
        reply_result(r, ret, &err, 200, out);
}

static void h_rule_update(Req *r) {
        static const char *const fields[] = { "vms", NULL };
        if (!req_body_fields(r, fields))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int ret = placement_rule_update(r->api->st, &c, r->id[0], r->json ? json_object_get(r->json, "vms") : NULL, &out, &err);
        reply_result(r, ret, &err, 200, out);
}

static void h_rule_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        int ret = placement_rule_delete(r->api->st, &c, r->id[0], &err);
        reply_result(r, ret, &err, 204, NULL);
}

/* ------------------------------------------------------------------ */
/* consolidation plan (P2V assessment) */

static void h_consolidation(Req *r) {
        static const char *const fields[] = { "host", "servers", NULL };
        if (!req_body_fields(r, fields))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int ret = placement_consolidation(r->api->st, &c, r->json ? json_object_get(r->json, "host") : NULL,
                                          r->json ? json_object_get(r->json, "servers") : NULL, &out, &err);
        reply_result(r, ret, &err, 200, out);
}

const Route api_routes_place[] = {
        { "GET", "/api/v1/host-groups/#/placement-policy", h_policy_get, false },
        { "PUT", "/api/v1/host-groups/#/placement-policy", h_policy_put, false },
        { "PATCH", "/api/v1/host-groups/#/placement-policy", h_policy_put, false },
        { "GET", "/api/v1/placement/ratings", h_ratings_get, false },
        { "POST", "/api/v1/placement/ratings", h_ratings_post, false },
        { "GET", "/api/v1/placement/rules", h_rules_list, false },
        { "POST", "/api/v1/placement/rules", h_rules_create, false },
        { "GET", "/api/v1/placement/rules/#", h_rule_get, false },
        { "PATCH", "/api/v1/placement/rules/#", h_rule_update, false },
        { "DELETE", "/api/v1/placement/rules/#", h_rule_delete, false },
        { "POST", "/api/v1/placement/consolidation", h_consolidation, false },
        { NULL, NULL, NULL, false },
};
