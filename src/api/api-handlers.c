/* The REST resources of /api/v1: sessions, users, host groups, hosts, VMs,
 * jobs, events and audit. Every handler parses its request completely
 * (query, body fields, types, bounds), calls one operation of a capability
 * module (account, inventory, jobs) and maps what it returns: the JSON, or
 * its OpError as it is. The operations check against the database, ask the
 * policy, write, queue jobs and audit. h_hosts_list and h_vms_list read
 * the in-memory read model, h_jobs_list and h_events_list page back
 * through history (api-list.c). */
#include "api-priv.h"
#include "account/account.h"
#include "protect/protect.h"

#include <errno.h>
#include <string.h>

#define LIMIT_MAX 1000

static const char *const NO_FIELDS[] = { NULL };

static json_t *items(json_t *arr) {
        return json_pack("{s:o}", "items", arr ? arr : json_array());
}

/* Replies status with body (stolen) when the operation succeeded (e >= 0),
 * else its failure. */
/* ------------------------------------------------------------------ */
/* version and sessions */

/* The features the web console may offer the caller: what armadad can do
 * (every capability of this build), each listed only when the caller's role
 * allows it on some object, so that a client never has to find out with
 * requests that fail. The server still decides every request. */
static json_t *session_features(Req *r) {
        static const struct {
                const char *name;
                AuthAction action;
                AuthObjectKind kind;
        } FEATURES[] = {
                { "hosts", ACT_READ, OBJ_HOST },           /* host groups and hosts */
                { "create-vm", ACT_CREATE, OBJ_VM },       /* POST /vms */
                { "operate-vm", ACT_OPERATE, OBJ_VM },     /* power actions and delete */
                { "console", ACT_OPERATE, OBJ_VM },        /* /vms/{id}/console */
                { "migrate", ACT_UPDATE, OBJ_VM },         /* /vms/{id}/migrate */
                { "change-vm", ACT_UPDATE, OBJ_VM },       /* PATCH /vms/{id}: owner, description */
                { "operate-host", ACT_OPERATE, OBJ_HOST }, /* refresh */
                { "maintenance", ACT_OPERATE, OBJ_HOST },  /* /hosts/{id}/maintenance */
                { "ratings", ACT_READ, OBJ_GROUP },        /* /placement/ratings */
                { "metrics", ACT_READ, OBJ_VM },           /* /metrics/{kind}/{id} */
                { "health", ACT_READ, OBJ_VM },            /* /health */
                { "users", ACT_UPDATE, OBJ_SYSTEM },       /* /users, /grants */
                { "audit", ACT_READ, OBJ_SYSTEM },         /* /audit */
                { "datastores", ACT_UPDATE, OBJ_SYSTEM },  /* /datastores: usage, verify, gc */
                { "p2v", ACT_UPDATE, OBJ_SYSTEM },         /* POST /p2v (issue 12) */
        };
        json_t *f = json_array();
        for (size_t i = 0; i < ELEMENTSOF(FEATURES); i++)
                if (api_allowed_some(r, FEATURES[i].action, FEATURES[i].kind))
                        json_array_append_new(f, json_string(FEATURES[i].name));
        /* Templates are readable by every role; self-service users reach
         * theirs through their grants (GET /self-service). */
        json_array_append_new(f, json_string("templates"));
        if (r->subj.role == ROLE_SELF_SERVICE)
                json_array_append_new(f, json_string("self-service"));
        return f;
}

void h_version(Req *r) {
        reply(r, 200, json_pack("{s:s, s:s}", "name", "armada", "version", "0.1.0"));
}

void h_session_create(Req *r) {
        static const char *const fields[] = { "name", "password", "cookie", NULL };
        const char *name = NULL, *password = NULL;
        bool cookie = false;
        if (!req_body_fields(r, fields) || !body_string(r, "name", true, 64, &name) ||
            !body_string(r, "password", true, 1024, &password) || !body_bool(r, "cookie", &cookie))
                return;
        Api *api = r->api;
        OpCaller c = api_caller(r);
        OpError err = {0};
        AccountLimiter lim = { .lock = &api->rate_lock, .rate = &api->rate, .refused = &api->login_rate_limited };
        AccountLoginSpec spec = { .name = name, .password = password, .token_ttl_s = api->cfg.token_ttl_s };
        AccountSession s;
        if (account_session_create(api->st, &lim, &c, &spec, &s, &err) < 0)
                return reply_op_error(r, &err);
        if (api_set_caller(r, &s.user) < 0) /* the operation checked the role: cannot happen */
                return reply_error(r, 500, "internal", NULL, "User '%s' has an unknown role '%s'.", s.user.name, s.user.role);
        char ts[32];
        time_format(s.expires_at_ms, ts);
        json_t *body = json_pack("{s:s, s:s, s:{s:I, s:s, s:s}, s:o}", "token", s.token, "expires_at", ts, "user", "id",
                                 (json_int_t) s.user.id, "name", s.user.name, "role", s.user.role, "features", session_features(r));
        if (cookie) {
                /* The web console keeps the token in an HttpOnly cookie only. */
                char csrf[65];
                api_csrf_for(s.token, csrf);
                api_session_cookies(r, s.token, api->cfg.token_ttl_s);
                json_object_del(body, "token");
                json_object_set_new(body, "csrf_token", json_string(csrf));
        }
        reply(r, 201, body);
}

void h_session_get(Req *r) {
        reply(r, 200, json_pack("{s:{s:I, s:s, s:s}, s:o}", "user", "id", (json_int_t) r->user.id, "name", r->user.name, "role",
                                r->user.role, "features", session_features(r)));
}

void h_session_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        int e = account_session_delete(r->api->st, &c, r->token_hash, &err);
        if (e >= 0 && r->by_cookie)
                api_session_cookies(r, NULL, 0);
        reply_result(r, e, &err, 204, NULL);
}

/* ------------------------------------------------------------------ */
/* users */

void h_users_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *arr = NULL;
        int e = account_user_list(r->api->st, &c, req_query(r, "name"), &arr, &err);
        reply_result(r, e, &err, 200, e < 0 ? NULL : items(arr));
}

void h_users_create(Req *r) {
        static const char *const fields[] = { "name", "password", "role", "scopes", NULL };
        AccountUserSpec spec = {0};
        /* Refused before the body is read: what is wrong with it is none of
         * the business of a caller who may not create users at all. */
        if (!api_allowed(r, ACT_CREATE, OBJ_SYSTEM, 0, 0))
                return deny(r, "create", "user", 0, NULL);
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &spec.name) ||
            !body_string(r, "password", true, 1024, &spec.password) || !body_string(r, "role", false, 64, &spec.role))
                return;
        spec.scopes = json_object_get(r->json, "scopes");
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *u = NULL;
        int e = account_user_create(r->api->st, &c, &spec, &u, &err);
        reply_result(r, e, &err, 201, u);
}

void h_user_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *u = NULL;
        int e = account_user_get(r->api->st, &c, r->id[0], &u, &err);
        reply_result(r, e, &err, 200, u);
}

void h_user_update(Req *r) {
        static const char *const fields[] = { "password", "role", "scopes", NULL };
        AccountUserSpec spec = { .keep_token_hash = r->token_hash };
        if (!req_body_fields(r, fields) || !body_string(r, "password", false, 1024, &spec.password) ||
            !body_string(r, "role", false, 64, &spec.role))
                return;
        spec.scopes = json_object_get(r->json, "scopes");
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *u = NULL;
        int e = account_user_update(r->api->st, &c, r->id[0], &spec, &u, &err);
        reply_result(r, e, &err, 200, u);
}

void h_user_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        int e = account_user_delete(r->api->st, &c, r->id[0], &err);
        reply_result(r, e, &err, 204, NULL);
}

/* ------------------------------------------------------------------ */
/* host groups */

void h_groups_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *arr = NULL;
        int e = inventory_group_list(r->api->inv, &c, req_query(r, "path"), &arr, &err);
        reply_result(r, e, &err, 200, e < 0 ? NULL : items(arr));
}

void h_groups_create(Req *r) {
        static const char *const fields[] = { "path", "name", "parent_id", NULL };
        InventoryGroupSpec spec = {0};
        if (!req_body_fields(r, fields) || !body_string(r, "path", false, 1000, &spec.path) || !body_name(r, "name", false, &spec.name) ||
            !body_int(r, "parent_id", false, 1, INT64_MAX, &spec.parent_id))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *g = NULL;
        int e = inventory_group_create(r->api->inv, &c, &spec, &g, &err);
        reply_result(r, e, &err, 201, g);
}

void h_group_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *g = NULL;
        int e = inventory_group_get(r->api->inv, &c, r->id[0], &g, &err);
        reply_result(r, e, &err, 200, g);
}

void h_group_update(Req *r) {
        static const char *const fields[] = { "name", "parent_id", NULL };
        InventoryGroupSpec spec = {0};
        if (!req_body_fields(r, fields) || !body_name(r, "name", false, &spec.name) ||
            !body_int(r, "parent_id", false, 1, INT64_MAX, &spec.parent_id))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *g = NULL;
        int e = inventory_group_update(r->api->inv, &c, r->id[0], &spec, &g, &err);
        reply_result(r, e, &err, 200, g);
}

void h_group_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        int e = inventory_group_delete(r->api->inv, &c, r->id[0], &err);
        reply_result(r, e, &err, 204, NULL);
}

/* ------------------------------------------------------------------ */
/* hosts */

void h_hosts_list(Req *r) {
        api_list_hosts(r);
}

#define THROTTLE_MAX 1000

/* A host's throttle field: absent leaves *ret (-1: keep), null clears it
 * (0: armadad's default applies), else a whole number 1..THROTTLE_MAX. */
static bool body_throttle(Req *r, const char *field, int64_t *ret) {
        json_t *v = r->json ? json_object_get(r->json, field) : NULL;
        if (v && json_is_null(v)) {
                *ret = 0;
                return true;
        }
        return body_int(r, field, false, 1, THROTTLE_MAX, ret);
}

void h_hosts_create(Req *r) {
        static const char *const fields[] = { "name", "uri", "group", "pool", "pool_path", "max_parallel_starts",
                                              "max_parallel_disk_ops", NULL };
        InventoryHostSpec spec = { .pool = INVENTORY_POOL_DEFAULT, .pool_path = INVENTORY_POOL_PATH_DEFAULT,
                                   .max_parallel_starts = -1, .max_parallel_disk_ops = -1 };
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &spec.name) || !body_string(r, "uri", true, 500, &spec.uri) ||
            !body_string(r, "group", false, 1000, &spec.group) || !body_name(r, "pool", false, &spec.pool) ||
            !body_string(r, "pool_path", false, 500, &spec.pool_path) ||
            !body_throttle(r, "max_parallel_starts", &spec.max_parallel_starts) ||
            !body_throttle(r, "max_parallel_disk_ops", &spec.max_parallel_disk_ops))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_host_add(r->api->inv, &c, &spec, &out, &err);
        reply_result(r, e, &err, 202, out);
}

void h_host_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *h = NULL;
        int e = inventory_host_get(r->api->inv, &c, r->id[0], &h, &err);
        reply_result(r, e, &err, 200, h);
}

void h_host_update(Req *r) {
        static const char *const fields[] = { "max_parallel_starts", "max_parallel_disk_ops", "domain_type_preference", NULL };
        InventoryHostSpec spec = { .max_parallel_starts = -1, .max_parallel_disk_ops = -1 };
        if (!req_body_fields(r, fields) || !body_throttle(r, "max_parallel_starts", &spec.max_parallel_starts) ||
            !body_throttle(r, "max_parallel_disk_ops", &spec.max_parallel_disk_ops) ||
            !body_string(r, "domain_type_preference", false, 8, &spec.domain_type_preference))
                return;
        /* null would read as absent: refused, as its meaning (auto? keep?) is
         * unclear; the values are inventory_host_update's to check */
        json_t *pv = r->json ? json_object_get(r->json, "domain_type_preference") : NULL;
        if (pv && json_is_null(pv)) {
                reply_error(r, 400, "invalid_argument", "domain_type_preference",
                            "Field 'domain_type_preference' must be auto, kvm or qemu.");
                return;
        }
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *h = NULL;
        int e = inventory_host_update(r->api->inv, &c, r->id[0], &spec, &h, &err);
        reply_result(r, e, &err, 200, h);
}

void h_host_delete(Req *r) {
        const char *force_s = req_query(r, "force");
        bool force = force_s && (streq(force_s, "true") || streq(force_s, "1"));
        OpCaller c = api_caller(r);
        OpError err = {0};
        int e = inventory_host_remove(r->api->inv, &c, r->id[0], force, &err);
        reply_result(r, e, &err, 204, NULL);
}

void h_host_action(Req *r) {
        if (!req_body_fields(r, NO_FIELDS))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_host_action(r->api->inv, &c, r->id[0], r->word[0], &out, &err);
        reply_result(r, e, &err, 202, out);
}

/* ------------------------------------------------------------------ */
/* VMs */

#define VM_CPUS_MAX 256
#define VM_MEMORY_MIN_MIB 16
#define VM_MEMORY_MAX_MIB (4LL << 20)       /* 4 TiB */
#define VM_DISK_MIN_BYTES (1LL << 20)
#define VM_DISK_MAX_BYTES (64LL << 40)      /* 64 TiB */

void h_vms_list(Req *r) {
        api_list_vms(r);
}

/* The body of POST /vms into spec: false with a 4xx sent. */
static bool vm_spec_parse(Req *r, InventoryVmSpec *spec) {
        static const char *const fields[] = { "name", "host", "host_id", "group", "cpus", "memory_mib", "disk_size", "disk_bytes",
                                              "domain_type", "description", "start", "force", "nic", NULL };
        const char *disk_size = NULL;
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &spec->name) || !body_string(r, "host", false, 1024, &spec->host) ||
            !body_string(r, "group", false, 1000, &spec->group) ||
            !body_int(r, "host_id", false, 1, INT64_MAX, &spec->host_id) || !body_int(r, "cpus", false, 1, VM_CPUS_MAX, &spec->cpus) ||
            !body_int(r, "memory_mib", false, VM_MEMORY_MIN_MIB, VM_MEMORY_MAX_MIB, &spec->memory_mib) ||
            !body_string(r, "disk_size", false, 32, &disk_size) ||
            !body_int(r, "disk_bytes", false, VM_DISK_MIN_BYTES, VM_DISK_MAX_BYTES, &spec->disk_bytes) ||
            !body_string(r, "domain_type", false, 8, &spec->domain_type) || !body_string(r, "description", false, 1000, &spec->description) ||
            !body_bool(r, "start", &spec->start) || !body_bool(r, "force", &spec->force))
                return false;
        bool nic = true;
        if (!body_bool(r, "nic", &nic))
                return false;
        spec->no_nic = !nic;
        if (disk_size) {
                uint64_t b;
                if (spec->disk_bytes) {
                        reply_error(r, 400, "invalid_argument", "disk_size", "Give either 'disk_size' or 'disk_bytes', not both.");
                        return false;
                }
                if (size_parse(disk_size, 1ULL << 30, &b) < 0) {
                        reply_error(r, 400, "invalid_argument", "disk_size", "Field 'disk_size' (\"%s\") must be a size such as 512M, 20G or 1T.",
                                    disk_size);
                        return false;
                }
                if (b < (uint64_t) VM_DISK_MIN_BYTES || b > (uint64_t) VM_DISK_MAX_BYTES) {
                        reply_error(r, 422, "out_of_range", "disk_size", "Field 'disk_size' must be from 1M to 64T; %s was given.", disk_size);
                        return false;
                }
                spec->disk_bytes = (int64_t) b;
        }
        const char *dtype = spec->domain_type;
        if (!streq(dtype, "auto") && !streq(dtype, "kvm") && !streq(dtype, "qemu")) {
                reply_error(r, 400, "invalid_argument", "domain_type", "Field 'domain_type' must be auto, kvm or qemu.");
                return false;
        }
        return true;
}

void h_vms_create(Req *r) {
        InventoryVmSpec spec = { .cpus = 1, .memory_mib = 512, .domain_type = "auto" };
        /* Read-only and self-service users create VMs nowhere (self-service
         * ones deploy templates): refuse before names, hosts or placement
         * could tell them about VMs and hosts they do not see. */
        if (!api_allowed_some(r, ACT_CREATE, OBJ_VM))
                return deny(r, "create", "VMs", 0, NULL);
        if (!vm_spec_parse(r, &spec))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_vm_create(r->api->inv, &c, &spec, &out, &err);
        reply_result(r, e, &err, 202, out);
}

void h_vm_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *v = NULL;
        int e = inventory_vm_get(r->api->inv, &c, r->id[0], &v, &err);
        /* The one VM's read adds its newest good recovery point (issue 11):
         * one indexed read of the protect module, for a VM the caller may
         * read. The lists do not carry it. */
        json_t *last = NULL;
        if (e >= 0 && (e = protect_vm_last_backup(r->api->st, &c, v, &last, &err)) >= 0)
                json_object_set_new(v, "last_backup", last);
        reply_result(r, e, &err, 200, v);
}

/* PATCH /vms/{id}: {"owner": "NAME" | null, "description": "TEXT"}. */
void h_vm_update(Req *r) {
        static const char *const fields[] = { "owner", "description", NULL };
        InventoryVmUpdateSpec spec = {0};
        if (!req_body_fields(r, fields) || !body_string(r, "owner", false, 64, &spec.owner) ||
            !body_string(r, "description", false, 1000, &spec.description))
                return;
        spec.set_owner = r->json && json_object_get(r->json, "owner");
        if (!spec.set_owner && !spec.description)
                return reply_error(r, 400, "invalid_argument", NULL, "Give 'owner' (a user name, or null for none) or 'description'.");
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *v = NULL;
        int e = inventory_vm_update(r->api->inv, &c, r->id[0], &spec, &v, &err);
        reply_result(r, e, &err, 200, v);
}

void h_vm_delete(Req *r) {
        const char *keep_s = req_query(r, "keep_disks");
        if (keep_s && !streq(keep_s, "true") && !streq(keep_s, "false") && !streq(keep_s, "1") && !streq(keep_s, "0"))
                return reply_error(r, 400, "invalid_argument", "keep_disks", "Query 'keep_disks' must be true or false.");
        bool keep = keep_s && (streq(keep_s, "true") || streq(keep_s, "1"));
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_vm_delete(r->api->inv, &c, r->id[0], keep, &out, &err);
        reply_result(r, e, &err, 202, out);
}

void h_vm_action(Req *r) {
        static const char *const fields[] = { "timeout_s", "force", NULL };
        InventoryVmActionSpec spec = { .action = r->word[0], .force = true };
        if (!req_body_fields(r, streq(r->word[0], "stop") ? fields : NO_FIELDS) ||
            !body_int(r, "timeout_s", false, 1, 3600, &spec.timeout_s) || !body_bool(r, "force", &spec.force))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_vm_action(r->api->inv, &c, r->id[0], &spec, &out, &err);
        reply_result(r, e, &err, 202, out);
}

/* ------------------------------------------------------------------ */
/* jobs, events, audit (the lists of jobs and events page back through
 * history: api-list.c) */

void h_job_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *j = NULL;
        int e = jobs_job_get(r->api->jobs, &c, r->id[0], &j, &err);
        reply_result(r, e, &err, 200, j);
}

void h_job_cancel(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *j = NULL;
        int e = jobs_job_cancel(r->api->jobs, &c, r->id[0], &j, &err);
        reply_result(r, e, &err, 200, j);
}

void h_audit_list(Req *r) {
        int64_t limit;
        if (!req_query_int(r, "limit", 100, 1, LIMIT_MAX, &limit))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *arr = NULL;
        int e = jobs_audit_list(r->api->jobs, &c, (int) limit, &arr, &err);
        reply_result(r, e, &err, 200, e < 0 ? NULL : items(arr));
}
