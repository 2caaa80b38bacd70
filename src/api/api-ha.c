/* The ha capability's REST resources: live migration, maintenance mode,
 * clusters, HA settings of VMs and fence commands of hosts.
 *
 * The core table's POST /hosts/{id}/actions/{word} and /vms/{id}/actions/
 * {word} routes are matched first, so migration and maintenance live at
 * their own paths: POST /vms/{id}/migrate and POST /hosts/{id}/maintenance. */
#include "api-priv.h"

#include <errno.h>
#include <string.h>

#include "ha/ha.h"
#include "store/store-ha.h"


static json_t *job_reply(Req *r, int64_t job) {
        json_t *j = store_job_get_json(r->api->st, job);
        return json_pack("{s:o}", "job", j ? j : json_null());
}

static json_t *host_visible(Req *r, int64_t id) {
        json_t *h = store_host_get_json(r->api->st, id);
        if (h && !api_allowed(r, ACT_READ, OBJ_HOST, 0, jget_int(h, "group_id"))) {
                json_decref(h);
                h = NULL;
        }
        if (!h)
                reply_error(r, 404, "not_found", NULL, "There is no host with id %lld.", (long long) id);
        return h;
}

static json_t *vm_visible(Req *r, int64_t id) {
        json_t *v = store_vm_get_json(r->api->st, id);
        if (v && !api_allowed(r, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id"))) {
                json_decref(v);
                v = NULL;
        }
        if (!v)
                reply_error(r, 404, "not_found", NULL, "There is no VM with id %lld.", (long long) id);
        return v;
}

/* ---- migration ---- */

static void h_vm_migrate(Req *r) {
        static const char *const fields[] = { "to", "to_id", "with_storage", "auto_converge", "postcopy", "bandwidth_mibs", NULL };
        _cleanup_json_ json_t *v = vm_visible(r, r->id[0]);
        if (!v)
                return;
        const char *to = NULL;
        int64_t to_id = 0, bandwidth = 0;
        bool with_storage = false, auto_converge = false, postcopy = false;
        if (!req_body_fields(r, fields) || !body_name(r, "to", false, &to) || !body_int(r, "to_id", false, 1, INT64_MAX, &to_id) ||
            !body_bool(r, "with_storage", &with_storage) || !body_bool(r, "auto_converge", &auto_converge) ||
            !body_bool(r, "postcopy", &postcopy) || !body_int(r, "bandwidth_mibs", false, 1, 1 << 20, &bandwidth))
                return;
        /* Moving a VM changes where it lives: its settings, not its power. */
        if (!api_allowed(r, ACT_UPDATE, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")))
                return deny(r, "migrate", "VM", r->id[0], jget_str(v, "name"));
        if (api_vm_refuse_foreign(r, v))
                return;
        if (to && store_host_find(r->api->st, to, &to_id) < 0)
                return reply_error(r, 422, "not_found", "to", "There is no host named '%s'.", to);
        if (to_id) {
                StoreHost h;
                if (store_host_get(r->api->st, to_id, &h) < 0 || !api_allowed(r, ACT_READ, OBJ_HOST, 0, h.group_id)) {
                        /* A host given by name that the caller may not see keeps its id to itself. */
                        if (to)
                                return reply_error(r, 422, "not_found", "to", "There is no host named '%s'.", to);
                        return reply_error(r, 422, "not_found", "to_id", "There is no host with id %lld.", (long long) to_id);
                }
                if (!api_allowed(r, ACT_CREATE, OBJ_VM, jget_int(v, "owner_id"), h.group_id))
                        return deny(r, "migrate VMs to", "host", h.id, h.name);
                if (h.id == jget_int(v, "host_id"))
                        return reply_error(r, 409, "conflict", "to", "VM '%s' already runs on host '%s'.", jget_str(v, "name"), h.name);
                if (!streq(h.state, "ok"))
                        return reply_error(r, 409, "conflict", "to", "Host '%s' is %s; VMs can only be migrated to a host in service.",
                                           h.name, h.state);
        }
        const char *state = jget_str(v, "state");
        if (!streq(state, "running") && !streq(state, "paused"))
                return reply_error(r, 409, "conflict", NULL, "VM '%s' is %s; only a running or paused VM can be live-migrated.",
                                   jget_str(v, "name"), state);
        json_t *params = json_pack("{s:b, s:b, s:b}", "with_storage", with_storage, "auto_converge", auto_converge, "postcopy", postcopy);
        if (to_id)
                json_object_set_new(params, "to", json_integer(to_id));
        if (bandwidth)
                json_object_set_new(params, "bandwidth_mibs", json_integer(bandwidth));
        int64_t job;
        int e = jobs_submit(r->api->jobs, "vm.migrate", "vm", r->id[0], jget_str(v, "name"), r->user.id, params, &job);
        _cleanup_free_ char *detail = json_dumps(params, JSON_COMPACT);
        json_decref(params);
        if (e < 0)
                return reply_error(r, 500, "internal", NULL, "Cannot queue the job.");
        audit(r, "vm.migrate", "vm", r->id[0], jget_str(v, "name"), detail, "accepted");
        reply(r, 202, job_reply(r, job));
}

/* ---- maintenance ---- */

static void h_host_maintenance(Req *r) {
        static const char *const fields[] = { "on", "force", NULL };
        _cleanup_json_ json_t *h = host_visible(r, r->id[0]);
        if (!h)
                return;
        bool on = true, force = false;
        if (!req_body_fields(r, fields))
                return;
        if (!r->json || !json_object_get(r->json, "on"))
                return reply_error(r, 400, "invalid_argument", "on", "Field 'on' is required (true to enter maintenance mode, false to leave it).");
        if (!body_bool(r, "on", &on) || !body_bool(r, "force", &force))
                return;
        /* Maintenance mode is an operation on the host (like refresh), not a
         * change of what the host is: delegated administrators keep it. */
        if (!api_allowed(r, ACT_OPERATE, OBJ_HOST, 0, jget_int(h, "group_id")))
                return deny(r, on ? "put into maintenance" : "take out of maintenance", "host", r->id[0], jget_str(h, "name"));
        json_t *params = json_pack("{s:b, s:b}", "on", on, "force", force);
        int64_t job;
        int e = jobs_submit(r->api->jobs, "host.maintenance", "host", r->id[0], jget_str(h, "name"), r->user.id, params, &job);
        json_decref(params);
        if (e < 0)
                return reply_error(r, 500, "internal", NULL, "Cannot queue the job.");
        audit(r, on ? "host.maintenance-on" : "host.maintenance-off", "host", r->id[0], jget_str(h, "name"), force ? "forced" : NULL,
              "accepted");
        reply(r, 202, job_reply(r, job));
}

/* ---- fencing ---- */

static void h_host_fencing_get(Req *r) {
        _cleanup_json_ json_t *h = host_visible(r, r->id[0]);
        if (!h)
                return;
        if (!api_allowed(r, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return deny(r, "read the fence command of", "host", r->id[0], jget_str(h, "name"));
        _cleanup_free_ char *argv = NULL;
        json_t *cmd = store_host_fence_get(r->api->st, r->id[0], &argv) == 0 ? json_loads(argv, 0, NULL) : NULL;
        reply(r, 200, json_pack("{s:I, s:s, s:o}", "host_id", (json_int_t) r->id[0], "host", jget_str(h, "name"), "command",
                                cmd ? cmd : json_null()));
}

static void h_host_fencing_set(Req *r) {
        static const char *const fields[] = { "command", NULL };
        _cleanup_json_ json_t *h = host_visible(r, r->id[0]);
        if (!h || !req_body_fields(r, fields))
                return;
        /* Whoever sets the fence command chooses what armadad runs: the
         * administrator only. */
        if (!api_allowed(r, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return deny(r, "set the fence command of", "host", r->id[0], jget_str(h, "name"));
        json_t *cmd = r->json ? json_object_get(r->json, "command") : NULL;
        if (!cmd)
                return reply_error(r, 400, "invalid_argument", "command",
                                   "Field 'command' is required: the fence command as a list of arguments, or null to remove it.");
        _cleanup_free_ char *text = NULL;
        if (!json_is_null(cmd)) {
                if (json_is_string(cmd))
                        return reply_error(r, 400, "invalid_argument", "command",
                                           "Field 'command' must be a list of arguments such as [\"fence_ipmilan\", \"-a\", \"10.0.0.5\"];"
                                           " a shell command line is not accepted.");
                text = json_dumps(cmd, JSON_COMPACT);
                char why[256];
                char **argv = ha_argv_parse(text, why, sizeof why);
                if (!argv)
                        return reply_error(r, 400, "invalid_argument", "command", "%s", why);
                ha_argv_free(argv);
        }
        int e = store_host_fence_set(r->api->st, r->id[0], text);
        if (e < 0)
                return reply_store_error(r, e, "the fence command");
        audit(r, "host.fencing", "host", r->id[0], jget_str(h, "name"), text ? text : "removed", "ok");
        h_host_fencing_get(r);
}

/* ---- HA settings of VMs ---- */

static void h_vm_ha_get(Req *r) {
        _cleanup_json_ json_t *v = vm_visible(r, r->id[0]);
        if (!v)
                return;
        int p = 0;
        (void) store_vm_ha_get(r->api->st, r->id[0], &p);
        reply(r, 200, json_pack("{s:I, s:s, s:b, s:s}", "vm_id", (json_int_t) r->id[0], "vm", jget_str(v, "name"), "enabled", p > 0,
                                "priority", ha_priority_name(p)));
}

static void h_vm_ha_set(Req *r) {
        static const char *const fields[] = { "enabled", "priority", NULL };
        _cleanup_json_ json_t *v = vm_visible(r, r->id[0]);
        if (!v)
                return;
        bool enabled = true;
        const char *prio = NULL;
        if (!req_body_fields(r, fields) || !body_bool(r, "enabled", &enabled) || !body_string(r, "priority", false, 16, &prio))
                return;
        int p = 2;
        if (prio && (ha_priority_parse(prio, &p) < 0))
                return reply_error(r, 400, "invalid_argument", "priority", "Field 'priority' must be high, medium, low or off, not '%s'.", prio);
        if (!enabled)
                p = 0;
        if (!api_allowed(r, ACT_UPDATE, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")))
                return deny(r, "change the high availability of", "VM", r->id[0], jget_str(v, "name"));
        if (api_vm_refuse_foreign(r, v))
                return;
        char why[2560];
        int e = p > 0 ? ha_vm_protectable(r->api->st, r->id[0], why, sizeof why) : 0;
        if (e == -ENOENT)
                return reply_error(r, 409, "conflict", NULL, "%s", why);
        if (e == -EXDEV)
                return reply_error(r, 422, "not_on_shared_storage", NULL, "%s", why);
        if (e < 0)
                return reply_store_error(r, e, "the VM's HA setting");
        e = store_vm_ha_set(r->api->st, r->id[0], p);
        if (e < 0)
                return reply_store_error(r, e, "the VM's HA setting");
        audit(r, "vm.ha", "vm", r->id[0], jget_str(v, "name"), ha_priority_name(p), "ok");
        h_vm_ha_get(r);
}

/* ---- clusters ---- */

/* A delegated administrator sees a cluster when it sees every member. */
static bool cluster_readable(Req *r, json_t *c) {
        if (r->subj.role == ROLE_ADMIN || r->subj.role == ROLE_READ_ONLY)
                return true;
        if (r->subj.role != ROLE_DELEGATED_ADMIN)
                return false;
        size_t i;
        json_t *h;
        json_array_foreach(json_object_get(c, "hosts"), i, h)
                if (!api_allowed(r, ACT_READ, OBJ_HOST, 0, jget_int(h, "group_id")))
                        return false;
        return true;
}

static bool cluster_writable(Req *r, json_t *c) {
        size_t i;
        json_t *h;
        json_array_foreach(json_object_get(c, "hosts"), i, h)
                if (!api_allowed(r, ACT_UPDATE, OBJ_HOST, 0, jget_int(h, "group_id")))
                        return false;
        return true;
}

static void h_clusters_list(Req *r) {
        json_t *arr = store_cluster_list(r->api->st, req_query(r, "name"));
        json_t *out = json_array();
        size_t i;
        json_t *c;
        json_array_foreach(arr, i, c)
                if (cluster_readable(r, c))
                        json_array_append(out, c);
        json_decref(arr);
        reply(r, 200, json_pack("{s:o}", "items", out));
}

static json_t *cluster_visible(Req *r, int64_t id) {
        json_t *c = store_cluster_get_json(r->api->st, id);
        if (c && !cluster_readable(r, c)) {
                json_decref(c);
                c = NULL;
        }
        if (!c)
                reply_error(r, 404, "not_found", NULL, "There is no cluster with id %lld.", (long long) id);
        return c;
}

static void h_cluster_get(Req *r) {
        json_t *c = cluster_visible(r, r->id[0]);
        if (!c)
                return;
        json_t *pending = store_ha_pending_json(r->api->st), *mine = json_array();
        size_t i;
        json_t *p, *h;
        json_array_foreach(pending, i, p) {
                size_t k;
                json_array_foreach(json_object_get(c, "hosts"), k, h)
                        if (jget_int(h, "id") == jget_int(p, "from_host_id"))
                                json_array_append(mine, p);
        }
        json_decref(pending);
        json_object_set_new(c, "pending", mine);
        reply(r, 200, c);
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
        if (!json_is_array(hosts) || json_array_size(hosts) == 0 || json_array_size(hosts) > 64)
                return reply_error(r, 400, "invalid_argument", "hosts", "Field 'hosts' must be a list of 1 to 64 host names.");
        size_t n = json_array_size(hosts);
        if ((int64_t) n <= tolerate)
                return reply_error(r, 422, "out_of_range", "tolerate",
                                   "A cluster of %zu hosts cannot tolerate %lld failures: at least one member must survive.", n,
                                   (long long) tolerate);
        int64_t ids[64];
        for (size_t i = 0; i < n; i++) {
                const char *hn = json_string_value(json_array_get(hosts, i));
                StoreHost h;
                if (!hn || store_host_find(r->api->st, hn, &ids[i]) < 0 || store_host_get(r->api->st, ids[i], &h) < 0 ||
                    !api_allowed(r, ACT_READ, OBJ_HOST, 0, h.group_id))
                        return reply_error(r, 422, "not_found", "hosts", "There is no host named '%.64s'.", hn ? hn : "(not a string)");
                if (!api_allowed(r, ACT_UPDATE, OBJ_HOST, 0, h.group_id))
                        return deny(r, "add to a cluster", "host", h.id, h.name);
                for (size_t k = 0; k < i; k++)
                        if (ids[k] == ids[i])
                                return reply_error(r, 400, "invalid_argument", "hosts", "Host '%s' is listed twice.", h.name);
                int64_t other;
                if (store_cluster_of_host(r->api->st, h.id, &other, NULL) == 0)
                        return reply_error(r, 409, "conflict", "hosts", "Host '%s' is already a member of another cluster.", h.name);
        }
        int64_t id;
        int e = store_cluster_insert(r->api->st, name, shared_dir, (int) tolerate, ids, n, &id);
        if (e == -EEXIST)
                return reply_error(r, 409, "conflict", "name", "A cluster named '%s' already exists, or one of its hosts is in another.", name);
        if (e < 0)
                return reply_store_error(r, e, "the cluster");
        audit(r, "cluster.create", "cluster", id, name, shared_dir, "ok");
        (void) store_event_add(r->api->st, "info", "cluster.created", "cluster", id, name, 0, "A failover cluster was created.");
        /* Each member defines the cluster's shared pool at its next refresh
         * of a VM create; refresh them now so their state is current. */
        for (size_t i = 0; i < n; i++) {
                StoreHost h;
                if (store_host_get(r->api->st, ids[i], &h) == 0)
                        (void) jobs_submit(r->api->jobs, "host.refresh", "host", h.id, h.name, r->user.id, NULL, NULL);
        }
        json_t *c = store_cluster_get_json(r->api->st, id);
        reply(r, 201, c ? c : json_null());
}

static void h_cluster_delete(Req *r) {
        _cleanup_json_ json_t *c = cluster_visible(r, r->id[0]);
        if (!c)
                return;
        if (!cluster_writable(r, c))
                return deny(r, "delete", "cluster", r->id[0], jget_str(c, "name"));
        int e = store_cluster_delete(r->api->st, r->id[0]);
        if (e < 0)
                return reply_store_error(r, e, "the cluster");
        audit(r, "cluster.delete", "cluster", r->id[0], jget_str(c, "name"), NULL, "ok");
        reply(r, 204, NULL);
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
