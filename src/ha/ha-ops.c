/* The ha capability's operations (see ha.h): live migration and
 * maintenance requests, fence commands, HA settings of VMs and clusters.
 * Each decides one request from start to end -- visibility, the caller's
 * rights, the checks that need the database, the write or the job, audit
 * and event -- and fails with an OpError the API maps unchanged. */
#include "ha.h"
#include "ha-priv.h"

#include <errno.h>
#include <string.h>

/* {"job": the job} for a job just submitted. */
static json_t *job_reply(Store *st, int64_t job) {
        json_t *j = NULL;
        (void) store_job_get_json(st, job, &j); /* queued already: a failed re-read (logged) shows null */
        return json_pack("{s:o}", "job", j ? j : json_null());
}

/* 0 and the host as JSON in *ret when the caller may see it; 404 else, or
 * 5xx on a database error. */
static int host_visible(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        json_t *h = NULL;
        int r = store_host_get_json(st, id, &h);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the host");
        if (h && !op_allowed(st, c, ACT_READ, OBJ_HOST, 0, jget_int(h, "group_id"))) {
                json_decref(h);
                h = NULL;
        }
        if (!h)
                return op_fail(err, 404, "not_found", NULL, "There is no host with id %lld.", (long long) id);
        *ret = h;
        return 0;
}

/* The same for a VM. */
static int vm_visible(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        json_t *v = NULL;
        int r = store_vm_get_json(st, id, &v);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the VM");
        if (v && !op_allowed(st, c, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id"))) {
                json_decref(v);
                v = NULL;
        }
        if (!v)
                return op_fail(err, 404, "not_found", NULL, "There is no VM with id %lld.", (long long) id);
        *ret = v;
        return 0;
}

/* A VM of another installation is read-only here. */
static int vm_refuse_foreign(json_t *v, OpError *err) {
        const char *origin = jget_str(v, "origin");
        if (!origin || !streq(origin, "foreign"))
                return 0;
        const char *name = jget_str(v, "name");
        return op_fail(err, 409, "conflict", NULL, "VM '%s' belongs to another Armada installation; it is read-only here.",
                       name ? name : "?");
}

/* ---- migration and maintenance ---- */

/* The target host of a migration (spec's to or to_id): 0 and *ret_id (0
 * when none is given), or negative with err filled. */
static int migrate_target(Store *st, const OpCaller *c, json_t *v, const HaMigrateSpec *spec, int64_t *ret_id, OpError *err) {
        int64_t to_id = spec->to_id;
        int e = spec->to ? store_host_find(st, spec->to, &to_id) : 0;
        if (e == -ENOENT)
                return op_fail(err, 422, "not_found", "to", "There is no host named '%s'.", spec->to);
        if (e < 0)
                return op_fail_store(err, e, "the target host");
        *ret_id = to_id;
        if (!to_id)
                return 0;
        StoreHost h;
        e = store_host_get(st, to_id, &h);
        if (e < 0 && e != -ENOENT)
                return op_fail_store(err, e, "the target host");
        if (e < 0 || !op_allowed(st, c, ACT_READ, OBJ_HOST, 0, h.group_id)) {
                /* A host given by name that the caller may not see keeps its id to itself. */
                if (spec->to)
                        return op_fail(err, 422, "not_found", "to", "There is no host named '%s'.", spec->to);
                return op_fail(err, 422, "not_found", "to_id", "There is no host with id %lld.", (long long) to_id);
        }
        if (!op_allowed(st, c, ACT_CREATE, OBJ_VM, jget_int(v, "owner_id"), h.group_id))
                return op_deny(st, c, err, "migrate VMs to", "host", h.id, h.name);
        if (h.id == jget_int(v, "host_id"))
                return op_fail(err, 409, "conflict", "to", "VM '%s' already runs on host '%s'.", jget_str(v, "name"), h.name);
        if (!streq(h.state, "ok"))
                return op_fail(err, 409, "conflict", "to", "Host '%s' is %s; VMs can only be migrated to a host in service.", h.name,
                               h.state);
        return 0;
}

int ha_op_vm_migrate(Store *st, Jobs *jobs, const OpCaller *c, const HaMigrateSpec *spec, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *v = NULL;
        int vr = vm_visible(st, c, spec->vm_id, &v, err);
        if (vr < 0)
                return vr;
        /* Moving a VM changes where it lives: its settings, not its power. */
        if (!op_allowed(st, c, ACT_UPDATE, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")))
                return op_deny(st, c, err, "migrate", "VM", spec->vm_id, jget_str(v, "name"));
        int r = vm_refuse_foreign(v, err);
        int64_t to_id = 0;
        if (r < 0 || (r = migrate_target(st, c, v, spec, &to_id, err)) < 0)
                return r;
        const char *state = jget_str(v, "state");
        if (!streq(state, "running") && !streq(state, "paused"))
                return op_fail(err, 409, "conflict", NULL, "VM '%s' is %s; only a running or paused VM can be live-migrated.",
                               jget_str(v, "name"), state);
        /* Snapshots move with a migration (vm.migrate sets their metadata
         * aside and redefines it), but they live inside the qcow2 images,
         * and a storage copy carries only the disks' current data. */
        int64_t snaps = jget_int(v, "snapshots");
        if (spec->with_storage && snaps > 0)
                return op_fail(err, 409, "conflict", "with_storage", SNAPSHOTS_NOT_COPIED, jget_str(v, "name"), (long long) snaps,
                               snaps == 1 ? "" : "s");
        _cleanup_json_ json_t *params = json_pack("{s:b, s:b, s:b}", "with_storage", spec->with_storage, "auto_converge",
                                                  spec->auto_converge, "postcopy", spec->postcopy);
        if (to_id)
                json_object_set_new(params, "to", json_integer(to_id));
        if (spec->bandwidth_mibs)
                json_object_set_new(params, "bandwidth_mibs", json_integer(spec->bandwidth_mibs));
        int64_t job;
        if (jobs_submit(jobs, "vm.migrate", "vm", spec->vm_id, jget_str(v, "name"), c->user_id, params, &job) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        _cleanup_free_ char *detail = json_dumps(params, JSON_COMPACT);
        op_audit(st, c, "vm.migrate", "vm", spec->vm_id, jget_str(v, "name"), detail, "accepted");
        *ret = job_reply(st, job);
        return 0;
}

int ha_op_host_maintenance(Store *st, Jobs *jobs, const OpCaller *c, int64_t host_id, bool on, bool force, json_t **ret,
                           OpError *err) {
        _cleanup_json_ json_t *h = NULL;
        int vr = host_visible(st, c, host_id, &h, err);
        if (vr < 0)
                return vr;
        /* Maintenance mode is an operation on the host (like refresh), not a
         * change of what the host is: delegated administrators keep it. */
        if (!op_allowed(st, c, ACT_OPERATE, OBJ_HOST, 0, jget_int(h, "group_id")))
                return op_deny(st, c, err, on ? "put into maintenance" : "take out of maintenance", "host", host_id,
                               jget_str(h, "name"));
        _cleanup_json_ json_t *params = json_pack("{s:b, s:b}", "on", on, "force", force);
        int64_t job;
        if (jobs_submit(jobs, "host.maintenance", "host", host_id, jget_str(h, "name"), c->user_id, params, &job) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        op_audit(st, c, on ? "host.maintenance-on" : "host.maintenance-off", "host", host_id, jget_str(h, "name"),
                 force ? "forced" : NULL, "accepted");
        *ret = job_reply(st, job);
        return 0;
}

/* ---- fencing ---- */

int ha_op_fencing_get(Store *st, const OpCaller *c, int64_t host_id, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *h = NULL;
        int vr = host_visible(st, c, host_id, &h, err);
        if (vr < 0)
                return vr;
        if (!op_allowed(st, c, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "read the fence command of", "host", host_id, jget_str(h, "name"));
        _cleanup_free_ char *argv = NULL;
        json_t *cmd = store_host_fence_get(st, host_id, &argv) == 0 ? json_loads(argv, 0, NULL) : NULL;
        *ret = json_pack("{s:I, s:s, s:o}", "host_id", (json_int_t) host_id, "host", jget_str(h, "name"), "command",
                         cmd ? cmd : json_null());
        return 0;
}

int ha_op_fencing_set(Store *st, const OpCaller *c, int64_t host_id, json_t *command, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *h = NULL;
        int vr = host_visible(st, c, host_id, &h, err);
        if (vr < 0)
                return vr;
        /* Whoever sets the fence command chooses what armadad runs: the
         * administrator only. */
        if (!op_allowed(st, c, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "set the fence command of", "host", host_id, jget_str(h, "name"));
        if (!command)
                return op_fail(err, 400, "invalid_argument", "command",
                               "Field 'command' is required: the fence command as a list of arguments, or null to remove it.");
        _cleanup_free_ char *text = NULL;
        if (!json_is_null(command)) {
                if (json_is_string(command))
                        return op_fail(err, 400, "invalid_argument", "command",
                                       "Field 'command' must be a list of arguments such as [\"fence_ipmilan\", \"-a\", \"10.0.0.5\"];"
                                       " a shell command line is not accepted.");
                text = json_dumps(command, JSON_COMPACT);
                char why[256];
                char **argv = ha_argv_parse(text, why, sizeof why);
                if (!argv)
                        return op_fail(err, 400, "invalid_argument", "command", "%s", why);
                ha_argv_free(argv);
        }
        int e = store_host_fence_set(st, host_id, text);
        if (e < 0)
                return op_fail_store(err, e, "the fence command");
        op_audit(st, c, "host.fencing", "host", host_id, jget_str(h, "name"), text ? text : "removed", "ok");
        return ha_op_fencing_get(st, c, host_id, ret, err);
}

/* ---- HA settings of VMs ---- */

int ha_op_vm_ha_get(Store *st, const OpCaller *c, int64_t vm_id, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *v = NULL;
        int vr = vm_visible(st, c, vm_id, &v, err);
        if (vr < 0)
                return vr;
        int p = 0;
        (void) store_vm_ha_get(st, vm_id, &p);
        *ret = json_pack("{s:I, s:s, s:b, s:s}", "vm_id", (json_int_t) vm_id, "vm", jget_str(v, "name"), "enabled", p > 0,
                         "priority", ha_priority_name(p));
        return 0;
}

int ha_op_vm_ha_set(Store *st, const OpCaller *c, int64_t vm_id, int priority, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *v = NULL;
        int vr = vm_visible(st, c, vm_id, &v, err);
        if (vr < 0)
                return vr;
        if (!op_allowed(st, c, ACT_UPDATE, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")))
                return op_deny(st, c, err, "change the high availability of", "VM", vm_id, jget_str(v, "name"));
        int e = vm_refuse_foreign(v, err);
        if (e < 0)
                return e;
        char why[2560];
        e = priority > 0 ? ha_vm_protectable(st, vm_id, why, sizeof why) : 0;
        if (e == -ENOENT)
                return op_fail(err, 409, "conflict", NULL, "%s", why);
        if (e == -EXDEV)
                return op_fail(err, 422, "not_on_shared_storage", NULL, "%s", why);
        if (e < 0 || (e = store_vm_ha_set(st, vm_id, priority)) < 0)
                return op_fail_store(err, e, "the VM's HA setting");
        op_audit(st, c, "vm.ha", "vm", vm_id, jget_str(v, "name"), ha_priority_name(priority), "ok");
        return ha_op_vm_ha_get(st, c, vm_id, ret, err);
}

/* ---- clusters ---- */

/* A delegated administrator sees a cluster when it sees every member. */
static bool cluster_readable(Store *st, const OpCaller *c, json_t *cl) {
        if (c->subj.role == ROLE_ADMIN || c->subj.role == ROLE_READ_ONLY)
                return true;
        if (c->subj.role != ROLE_DELEGATED_ADMIN)
                return false;
        size_t i;
        json_t *h;
        json_array_foreach(json_object_get(cl, "hosts"), i, h)
                if (!op_allowed(st, c, ACT_READ, OBJ_HOST, 0, jget_int(h, "group_id")))
                        return false;
        return true;
}

static bool cluster_writable(Store *st, const OpCaller *c, json_t *cl) {
        size_t i;
        json_t *h;
        json_array_foreach(json_object_get(cl, "hosts"), i, h)
                if (!op_allowed(st, c, ACT_UPDATE, OBJ_HOST, 0, jget_int(h, "group_id")))
                        return false;
        return true;
}

/* The same for a cluster. */
static int cluster_visible(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        json_t *cl = NULL;
        int r = store_cluster_get_json(st, id, &cl);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the cluster");
        if (cl && !cluster_readable(st, c, cl)) {
                json_decref(cl);
                cl = NULL;
        }
        if (!cl)
                return op_fail(err, 404, "not_found", NULL, "There is no cluster with id %lld.", (long long) id);
        *ret = cl;
        return 0;
}

int ha_op_cluster_list(Store *st, const OpCaller *c, const char *name, json_t **ret, OpError *err) {
        json_t *arr = NULL;
        int r = store_cluster_list(st, name, &arr);
        if (r < 0)
                return op_fail_store(err, r, "the clusters");
        json_t *out = json_array();
        size_t i;
        json_t *cl;
        json_array_foreach(arr, i, cl)
                if (cluster_readable(st, c, cl))
                        json_array_append(out, cl);
        json_decref(arr);
        *ret = json_pack("{s:o}", "items", out);
        return 0;
}

int ha_op_cluster_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        json_t *cl = NULL, *pending = NULL;
        int r = cluster_visible(st, c, id, &cl, err);
        if (r < 0)
                return r;
        r = store_ha_pending_json(st, &pending);
        if (r < 0) {
                json_decref(cl);
                return op_fail_store(err, r, "the cluster");
        }
        json_t *mine = json_array();
        size_t i;
        json_t *p, *h;
        json_array_foreach(pending, i, p) {
                size_t k;
                json_array_foreach(json_object_get(cl, "hosts"), k, h)
                        if (jget_int(h, "id") == jget_int(p, "from_host_id"))
                                json_array_append(mine, p);
        }
        json_decref(pending);
        json_object_set_new(cl, "pending", mine);
        *ret = cl;
        return 0;
}

/* The members of a new cluster by name into ids: each exists, the caller
 * sees it and may change it, none twice, none in another cluster. */
static int cluster_members(Store *st, const OpCaller *c, const HaClusterSpec *spec, int64_t *ids, OpError *err) {
        for (size_t i = 0; i < spec->n_hosts; i++) {
                const char *hn = spec->hosts[i];
                StoreHost h;
                int r = hn ? store_host_find(st, hn, &ids[i]) : -ENOENT;
                if (r >= 0)
                        r = store_host_get(st, ids[i], &h);
                if (r < 0 && r != -ENOENT)
                        return op_fail_store(err, r, "the hosts");
                if (r < 0 || !op_allowed(st, c, ACT_READ, OBJ_HOST, 0, h.group_id))
                        return op_fail(err, 422, "not_found", "hosts", "There is no host named '%.64s'.", hn ? hn : "(not a string)");
                if (!op_allowed(st, c, ACT_UPDATE, OBJ_HOST, 0, h.group_id))
                        return op_deny(st, c, err, "add to a cluster", "host", h.id, h.name);
                for (size_t k = 0; k < i; k++)
                        if (ids[k] == ids[i])
                                return op_fail(err, 400, "invalid_argument", "hosts", "Host '%s' is listed twice.", h.name);
                int64_t other;
                if (store_cluster_of_host(st, h.id, &other, NULL) == 0)
                        return op_fail(err, 409, "conflict", "hosts", "Host '%s' is already a member of another cluster.", h.name);
        }
        return 0;
}

int ha_op_cluster_create(Store *st, Jobs *jobs, const OpCaller *c, const HaClusterSpec *spec, json_t **ret, OpError *err) {
        int64_t ids[HA_CLUSTER_MAX_HOSTS];
        if (spec->n_hosts == 0 || spec->n_hosts > HA_CLUSTER_MAX_HOSTS)
                return op_fail(err, 400, "invalid_argument", "hosts", "Field 'hosts' must be a list of 1 to 64 host names.");
        int e = cluster_members(st, c, spec, ids, err);
        if (e < 0)
                return e;
        int64_t id;
        e = store_cluster_insert(st, spec->name, spec->shared_storage, spec->tolerate, ids, spec->n_hosts, &id);
        if (e == -EEXIST)
                return op_fail(err, 409, "conflict", "name", "A cluster named '%s' already exists, or one of its hosts is in another.",
                               spec->name);
        if (e < 0)
                return op_fail_store(err, e, "the cluster");
        op_audit(st, c, "cluster.create", "cluster", id, spec->name, spec->shared_storage, "ok");
        (void) store_event_add(st, "info", "cluster.created", "cluster", id, spec->name, 0, "A failover cluster was created.");
        /* Each member defines the cluster's shared pool at its next refresh
         * of a VM create; refresh them now so their state is current. */
        for (size_t i = 0; i < spec->n_hosts; i++) {
                StoreHost h;
                if (store_host_get(st, ids[i], &h) == 0)
                        (void) jobs_submit(jobs, "host.refresh", "host", h.id, h.name, c->user_id, NULL, NULL);
        }
        json_t *cl = NULL;
        (void) store_cluster_get_json(st, id, &cl); /* created already: a failed re-read (logged) shows null */
        *ret = cl ? cl : json_null();
        return 0;
}

int ha_op_cluster_delete(Store *st, const OpCaller *c, int64_t id, OpError *err) {
        _cleanup_json_ json_t *cl = NULL;
        int vr = cluster_visible(st, c, id, &cl, err);
        if (vr < 0)
                return vr;
        if (!cluster_writable(st, c, cl))
                return op_deny(st, c, err, "delete", "cluster", id, jget_str(cl, "name"));
        int e = store_cluster_delete(st, id);
        if (e < 0)
                return op_fail_store(err, e, "the cluster");
        op_audit(st, c, "cluster.delete", "cluster", id, jget_str(cl, "name"), NULL, "ok");
        return 0;
}
