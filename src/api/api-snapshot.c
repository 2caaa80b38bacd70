/* The snapshots of VMs as REST resources (protect.h, Snapshots): list,
 * take, revert and delete. Each handler parses the request, calls one
 * operation of the protect module and maps its result. */
#include "api-priv.h"

#include "protect/protect.h"

static void h_vm_snapshots_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_snapshot_list(r->api->st, r->api->inv, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_vm_snapshots_create(Req *r) {
        static const char *const fields[] = { "name", "description", "memory", NULL };
        ProtectSnapshotSpec spec = { .memory = -1 };
        bool memory = false;
        if (!req_body_fields(r, fields) || !body_string(r, "name", false, 200, &spec.name) ||
            !body_string(r, "description", false, 4096, &spec.description) || !body_bool(r, "memory", &memory))
                return;
        if (r->json && json_object_get(r->json, "memory"))
                spec.memory = memory;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_snapshot_create(r->api->st, r->api->inv, &c, r->id[0], &spec, &out, &err);
        reply_result(r, e, &err, 202, out);
}

static void h_vm_snapshot_revert(Req *r) {
        static const char *const fields[] = { NULL };
        if (!req_body_fields(r, fields))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_snapshot_revert(r->api->st, r->api->inv, &c, r->id[0], r->word[0], &out, &err);
        reply_result(r, e, &err, 202, out);
}

static void h_vm_snapshot_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_snapshot_delete(r->api->st, r->api->inv, &c, r->id[0], r->word[0], &out, &err);
        reply_result(r, e, &err, 202, out);
}

const Route api_routes_snapshot[] = {
        { "GET", "/api/v1/vms/#/snapshots", h_vm_snapshots_list, false },
        { "POST", "/api/v1/vms/#/snapshots", h_vm_snapshots_create, false },
        { "DELETE", "/api/v1/vms/#/snapshots/*", h_vm_snapshot_delete, false },
        { "POST", "/api/v1/vms/#/snapshots/*/revert", h_vm_snapshot_revert, false },
        { NULL, NULL, NULL, false },
};
