/* The ha capability's REST resources: live migration, maintenance mode,
 * clusters, HA settings of VMs and fence commands of hosts. Each handler
 * parses the request, calls one operation of the ha module (ha.h) and maps
 * its result.
 *
 * The core table's POST /hosts/{id}/actions/{word} and /vms/{id}/actions/
 * {word} routes are matched first, so migration and maintenance live at
 * their own paths: POST /vms/{id}/migrate and POST /hosts/{id}/maintenance. */
#include "api-priv.h"

#include <errno.h>
#include <string.h>

#include "ha/ha.h"

/* The result of an operation: status with out, or the OpError. */
/* ---- migration ---- */

static void h_vm_migrate(Req *r) {
        static const char *const fields[] = { "to", "to_id", "with_storage", "auto_converge", "postcopy", "bandwidth_mibs", NULL };
        HaMigrateSpec spec = { .vm_id = r->id[0] };
        if (!req_body_fields(r, fields) || !body_name(r, "to", false, &spec.to) ||
            !body_int(r, "to_id", false, 1, INT64_MAX, &spec.to_id) || !body_bool(r, "with_storage", &spec.with_storage) ||
            !body_bool(r, "auto_converge", &spec.auto_converge) || !body_bool(r, "postcopy", &spec.postcopy) ||
            !body_int(r, "bandwidth_mibs", false, 1, 1 << 20, &spec.bandwidth_mibs))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = ha_op_vm_migrate(r->api->st, r->api->jobs, &c, &spec, &out, &err);
        reply_result(r, e, &err, 202, out);
}

/* ---- maintenance ---- */

static void h_host_maintenance(Req *r) {
        static const char *const fields[] = { "on", "force", NULL };
        bool on = true, force = false;
        if (!req_body_fields(r, fields))
                return;
        if (!r->json || !json_object_get(r->json, "on"))
                return reply_error(r, 400, "invalid_argument", "on", "Field 'on' is required (true to enter maintenance mode, false to leave it).");
        if (!body_bool(r, "on", &on) || !body_bool(r, "force", &force))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = ha_op_host_maintenance(r->api->st, r->api->jobs, &c, r->id[0], on, force, &out, &err);
        reply_result(r, e, &err, 202, out);
}

/* ---- fencing ---- */

static void h_host_fencing_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = ha_op_fencing_get(r->api->st, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_host_fencing_set(Req *r) {
        static const char *const fields[] = { "command", NULL };
        if (!req_body_fields(r, fields))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = ha_op_fencing_set(r->api->st, &c, r->id[0], r->json ? json_object_get(r->json, "command") : NULL, &out, &err);
        reply_result(r, e, &err, 200, out);
}

/* ---- HA settings of VMs ---- */

static void h_vm_ha_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = ha_op_vm_ha_get(r->api->st, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_vm_ha_set(Req *r) {
        static const char *const fields[] = { "enabled", "priority", NULL };
        bool enabled = true;
        const char *prio = NULL;
        if (!req_body_fields(r, fields) || !body_bool(r, "enabled", &enabled) || !body_string(r, "priority", false, 16, &prio))
                return;
        int p = 2;
        if (prio && (ha_priority_parse(prio, &p) < 0))
                return reply_error(r, 400, "invalid_argument", "priority", "Field 'priority' must be high, medium, low or off, not '%s'.", prio);
        if (!enabled)
                p = 0;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = ha_op_vm_ha_set(r->api->st, &c, r->id[0], p, &out, &err);
        reply_result(r, e, &err, 200, out);
}

/* ---- clusters ---- */

static void h_clusters_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = ha_op_cluster_list(r->api->st, &c, req_query(r, "name"), &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_cluster_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = ha_op_cluster_get(r->api->st, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_clusters_create(Req *r) {
        static const char *const fields[] = { "name", "hosts", "shared_storage", "tolerate", NULL };
        const char *name = NULL, *shared = NULL;
        int64_t tolerate = 1;
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &name) ||
            !body_string(r, "shared_storage", true, 900, &shared) || !body_int(r, "tolerate", false, 0, 64, &tolerate))
                return;
        /* Every member defines a pool there and writes VM disks into it as
         * root: never a system directory. */
        char why[128];
        _cleanup_free_ char *shared_dir = NULL;
        if (path_outside_system_normalize(shared, &shared_dir, why, sizeof why) < 0)
                return reply_error(r, 400, "invalid_argument", "shared_storage",
                                   "Field 'shared_storage' (\"%.200s\") %s; give an absolute directory without '..', outside /,"
                                   " /etc, /usr, /boot, /proc, /sys and /dev.", shared, why);
        json_t *hosts = json_object_get(r->json, "hosts");
        if (!json_is_array(hosts) || json_array_size(hosts) == 0 || json_array_size(hosts) > HA_CLUSTER_MAX_HOSTS)
                return reply_error(r, 400, "invalid_argument", "hosts", "Field 'hosts' must be a list of 1 to 64 host names.");
        size_t n = json_array_size(hosts);
        if ((int64_t) n <= tolerate)
                return reply_error(r, 422, "out_of_range", "tolerate",
                                   "A cluster of %zu hosts cannot tolerate %lld failures: at least one member must survive.", n,
                                   (long long) tolerate);
        const char *names[HA_CLUSTER_MAX_HOSTS];
        for (size_t i = 0; i < n; i++)
                names[i] = json_string_value(json_array_get(hosts, i));
        HaClusterSpec spec = { .name = name, .shared_storage = shared_dir, .tolerate = (int) tolerate, .hosts = names, .n_hosts = n };
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = ha_op_cluster_create(r->api->st, r->api->jobs, &c, &spec, &out, &err);
        reply_result(r, e, &err, 201, out);
}

static void h_cluster_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        int e = ha_op_cluster_delete(r->api->st, &c, r->id[0], &err);
        reply_result(r, e, &err, 204, NULL);
}

const Route api_routes_ha[] = {
        { "POST", "/api/v1/vms/#/migrate", h_vm_migrate, false },
        { "GET", "/api/v1/vms/#/ha", h_vm_ha_get, false },
        { "PATCH", "/api/v1/vms/#/ha", h_vm_ha_set, false },
        { "POST", "/api/v1/hosts/#/maintenance", h_host_maintenance, false },
        { "GET", "/api/v1/hosts/#/fencing", h_host_fencing_get, false },
        { "PATCH", "/api/v1/hosts/#/fencing", h_host_fencing_set, false },
        { "GET", "/api/v1/clusters", h_clusters_list, false },
        { "POST", "/api/v1/clusters", h_clusters_create, false },
        { "GET", "/api/v1/clusters/#", h_cluster_get, false },
        { "DELETE", "/api/v1/clusters/#", h_cluster_delete, false },
        { NULL, NULL, NULL, false },
};
