/* The networks-and-storage REST resources (issue 12): libvirt networks per
 * host or host group, the network cards of VMs, storage pools and volumes
 * of hosts. Each handler parses the request, calls one operation of the
 * inventory (inventory.h, "Networks" and "Storage") and maps its result. */
#include "api-priv.h"

#include <errno.h>
#include <string.h>

static void reply_items(Req *r, int e, const OpError *err, json_t *items) {
        reply_result(r, e, err, 200, e < 0 ? items : json_pack("{s:o}", "items", items));
}

/* ---- networks ---- */

static void h_networks_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_network_list(r->api->inv, &c, req_query(r, "name"), &out, &err);
        reply_items(r, e, &err, out);
}

static void h_networks_create(Req *r) {
        static const char *const fields[] = { "name", "group", "host", "mode", "bridge", "vlan", "subnet", "default", NULL };
        InventoryNetworkSpec spec = { .mode = "nat" };
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &spec.name) || !body_string(r, "group", false, 1000, &spec.group) ||
            !body_name(r, "host", false, &spec.host) || !body_string(r, "mode", false, 16, &spec.mode) ||
            !body_string(r, "bridge", false, 64, &spec.bridge) || !body_int(r, "vlan", false, 0, 4094, &spec.vlan) ||
            !body_string(r, "subnet", false, 32, &spec.subnet) || !body_bool(r, "default", &spec.is_default))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_network_create(r->api->inv, &c, &spec, &out, &err);
        reply_result(r, e, &err, 202, out);
}

static void h_network_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_network_get(r->api->inv, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_network_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_network_delete(r->api->inv, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 202, out);
}

/* ---- NICs ---- */

static void h_vm_nics_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_vm_nic_list(r->api->inv, &c, r->id[0], &out, &err);
        reply_items(r, e, &err, out);
}

static void h_vm_nics_add(Req *r) {
        static const char *const fields[] = { "network", "mac", "model", NULL };
        InventoryNicSpec spec = {0};
        if (!req_body_fields(r, fields) || !body_name(r, "network", true, &spec.network) || !body_string(r, "mac", false, 32, &spec.mac) ||
            !body_string(r, "model", false, 16, &spec.model))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_vm_nic_add(r->api->inv, &c, r->id[0], &spec, &out, &err);
        reply_result(r, e, &err, 202, out);
}

static void h_vm_nic_remove(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_vm_nic_remove(r->api->inv, &c, r->id[0], r->word[0], &out, &err);
        reply_result(r, e, &err, 202, out);
}

/* ---- storage pools and volumes ---- */

static void h_pools_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_pool_list(r->api->inv, &c, req_query(r, "host"), &out, &err);
        reply_items(r, e, &err, out);
}

static void h_host_pools_add(Req *r) {
        static const char *const fields[] = { "name", "type", "path", "source_host", "source_path", "source_name", NULL };
        InventoryPoolSpec spec = { .type = "dir" };
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &spec.name) || !body_string(r, "type", false, 16, &spec.type) ||
            !body_string(r, "path", false, 500, &spec.path) || !body_string(r, "source_host", false, 253, &spec.source_host) ||
            !body_string(r, "source_path", false, 500, &spec.source_path) || !body_string(r, "source_name", false, 223, &spec.source_name))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_pool_add(r->api->inv, &c, r->id[0], &spec, &out, &err);
        reply_result(r, e, &err, 201, out);
}

static void h_host_pool_remove(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        int e = inventory_pool_remove(r->api->inv, &c, r->id[0], r->word[0], &err);
        reply_result(r, e, &err, 204, NULL);
}

static void h_pool_volumes_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_volume_list(r->api->inv, &c, r->id[0], r->word[0], &out, &err);
        reply_items(r, e, &err, out);
}

static void h_pool_volume_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        int e = inventory_volume_delete(r->api->inv, &c, r->id[0], r->word[0], r->word[1], &err);
        reply_result(r, e, &err, 204, NULL);
}

/* issue 12, networks and storage */
const Route api_routes_network[] = {
        { "GET", "/api/v1/networks", h_networks_list, false },
        { "POST", "/api/v1/networks", h_networks_create, false },
        { "GET", "/api/v1/networks/#", h_network_get, false },
        { "DELETE", "/api/v1/networks/#", h_network_delete, false },
        { "GET", "/api/v1/vms/#/nics", h_vm_nics_list, false },
        { "POST", "/api/v1/vms/#/nics", h_vm_nics_add, false },
        { "DELETE", "/api/v1/vms/#/nics/*", h_vm_nic_remove, false },
        { "GET", "/api/v1/pools", h_pools_list, false },
        { "POST", "/api/v1/hosts/#/pools", h_host_pools_add, false },
        { "DELETE", "/api/v1/hosts/#/pools/*", h_host_pool_remove, false },
        { "GET", "/api/v1/hosts/#/pools/*/volumes", h_pool_volumes_list, false },
        { "DELETE", "/api/v1/hosts/#/pools/*/volumes/*", h_pool_volume_delete, false },
        { NULL, NULL, NULL, false },
};
