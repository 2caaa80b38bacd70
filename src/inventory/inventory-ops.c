/* inventory: the operations callers ask for on host groups, hosts and VMs
 * (inventory.h, "operations"). Each checks its arguments against the
 * database, asks the policy, writes, submits the job that talks to a host,
 * undoes its write when that fails, and audits; the API only parses and
 * maps. Messages, codes and audit records are the ones users script
 * against: change them only on purpose. */
#include "inventory-priv.h"

#include <errno.h>
#include <string.h>

/* The job's JSON, or JSON null when it cannot be read (the job is queued
 * already: a failed re-read, logged by the store, does not undo it). */
static json_t *job_json(Inventory *inv, int64_t id) {
        json_t *j = NULL;
        return store_job_get_json(inv->st, id, &j) == 0 ? j : json_null();
}

static int submit(Inventory *inv, const OpCaller *c, const char *kind, const char *target_kind, int64_t target_id,
                  const char *target_name, json_t *params, int64_t *ret_job) {
        return jobs_submit(inv->jobs, kind, target_kind, target_id, target_name, c->user_id, params, ret_job);
}

/* ------------------------------------------------------------------ */
/* host groups */

/* A group as GET /host-groups lists it (with its counts): 0 and *ret,
 * -ENOENT, or another -errno on a database error. */
static int group_json(Store *st, int64_t id, json_t **ret) {
        _cleanup_json_ json_t *g = NULL, *arr = NULL;
        int r = store_group_get(st, id, &g);
        if (r >= 0)
                r = store_group_list(st, jget_str(g, "path"), &arr);
        if (r < 0)
                return r;
        if (json_array_size(arr) == 0)
                return -ENOENT;
        *ret = json_incref(json_array_get(arr, 0));
        return 0;
}

static int group_not_found(OpError *err, const char *field, int64_t id) {
        int r = op_fail(err, field ? 422 : 404, "not_found", field, "There is no host group with id %lld.", (long long) id);
        return field ? -ENOENT : r;
}

static const char *group_name_for_deny(const json_t *g) {
        return jget_str(g, "path")[0] ? jget_str(g, "path") : STORE_ROOT_GROUP_NAME;
}

int inventory_group_list(Inventory *inv, const OpCaller *c, const char *path, json_t **ret, OpError *err) {
        _cleanup_free_ char *norm = NULL;
        if (path) {
                const char *why;
                norm = store_group_path_normalize(path, &why);
                if (!norm)
                        return op_fail(err, 400, "invalid_argument", "path", "Query 'path' is not a valid host-group path: a segment %s.", why);
        }
        json_t *arr = NULL;
        int r = store_group_list(inv->st, norm, &arr);
        if (r < 0)
                return op_fail_store(err, r, "the list of host groups");
        arr = op_filter_visible(inv->st, c, arr, OP_VIS_GROUP);
        *ret = arr ? arr : json_array();
        return 0;
}

/* The full path of a new group: spec's path normalised, or its name under
 * parent_id (the root when 0). malloc'd in *ret, or a 4xx in err. */
static int group_new_path(Store *st, const OpCaller *c, const InventoryGroupSpec *spec, char **ret, OpError *err) {
        if (spec->path && (spec->name || spec->parent_id))
                return op_fail(err, 400, "invalid_argument", "path", "Give either 'path' or 'name' with 'parent_id', not both.");
        if (spec->path) {
                const char *why;
                *ret = store_group_path_normalize(spec->path, &why);
                if (!*ret)
                        return op_fail(err, 400, "invalid_argument", "path",
                                       "Field 'path' (\"%.200s\") is not a valid host-group path: a segment %s.", spec->path, why);
                return 0;
        }
        if (!spec->name)
                return op_fail(err, 400, "invalid_argument", "path", "Field 'path' is required.");
        /* A parent the caller may not read does not exist for it: its path
         * must not come back in an error. */
        _cleanup_json_ json_t *p = NULL;
        int r = store_group_get(st, spec->parent_id ? spec->parent_id : STORE_ROOT_GROUP_ID, &p);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the host group");
        if (!p || (spec->parent_id && !op_allowed(st, c, ACT_READ, OBJ_GROUP, 0, spec->parent_id)))
                return group_not_found(err, "parent_id", spec->parent_id);
        *ret = jget_str(p, "path")[0] ? xasprintf("%s/%s", jget_str(p, "path"), spec->name) : xstrdup(spec->name);
        return 0;
}

int inventory_group_create(Inventory *inv, const OpCaller *c, const InventoryGroupSpec *spec, json_t **ret, OpError *err) {
        Store *st = inv->st;
        _cleanup_free_ char *full = NULL;
        int r = group_new_path(st, c, spec, &full, err);
        if (r < 0)
                return r;
        if (!full[0])
                return op_fail(err, 409, "conflict", "path", "The root group 'All Hosts' always exists.");
        /* The policy decides on the deepest group that exists already,
         * before the caller learns whether the path itself exists. */
        int64_t anchor = STORE_ROOT_GROUP_ID, id;
        _cleanup_free_ char *prefix = xstrdup(full);
        for (char *slash = strrchr(prefix, '/'); slash; slash = strrchr(prefix, '/')) {
                *slash = 0;
                if (store_group_find(st, prefix, &anchor) == 0)
                        break;
                anchor = STORE_ROOT_GROUP_ID;
        }
        if (!op_allowed(st, c, ACT_CREATE, OBJ_GROUP, 0, anchor))
                return op_deny(st, c, err, "create", "host group", 0, full);
        if (store_group_find(st, full, &id) == 0)
                return op_fail(err, 409, "conflict", "path", "Host group '%s' already exists.", full);
        bool created;
        int e = store_group_create_path(st, full, &id, &created);
        if (e < 0)
                return op_fail_store(err, e, "the host group");
        op_audit(st, c, "group.create", "group", id, full, NULL, "ok");
        e = group_json(st, id, ret);
        return e < 0 ? op_fail_store(err, e, "the host group") : 0;
}

int inventory_group_get(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        json_t *g = NULL;
        int r = group_json(inv->st, id, &g);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the host group");
        if (!g || !op_allowed(inv->st, c, ACT_READ, OBJ_GROUP, 0, id)) {
                json_decref(g);
                return group_not_found(err, NULL, id);
        }
        *ret = g;
        return 0;
}

int inventory_group_update(Inventory *inv, const OpCaller *c, int64_t id, const InventoryGroupSpec *spec, json_t **ret, OpError *err) {
        Store *st = inv->st;
        _cleanup_json_ json_t *g = NULL;
        int e = store_group_get(st, id, &g);
        if (e < 0 && e != -ENOENT)
                return op_fail_store(err, e, "the host group");
        if (!g || !op_allowed(st, c, ACT_READ, OBJ_GROUP, 0, id))
                return group_not_found(err, NULL, id);
        if (!op_allowed(st, c, ACT_UPDATE, OBJ_GROUP, 0, id))
                return op_deny(st, c, err, "change", "host group", id, group_name_for_deny(g));
        if (id == STORE_ROOT_GROUP_ID)
                return op_fail(err, 409, "conflict", NULL, "The root group 'All Hosts' cannot be renamed or moved.");
        if (spec->parent_id) {
                _cleanup_json_ json_t *p = NULL;
                e = store_group_get(st, spec->parent_id, &p);
                if (e < 0 && e != -ENOENT)
                        return op_fail_store(err, e, "the host group");
                if (!p || !op_allowed(st, c, ACT_READ, OBJ_GROUP, 0, spec->parent_id))
                        return group_not_found(err, "parent_id", spec->parent_id);
                if (!op_allowed(st, c, ACT_CREATE, OBJ_GROUP, 0, spec->parent_id))
                        return op_deny(st, c, err, "move into", "host group", spec->parent_id, jget_str(p, "path"));
        }
        if (spec->name) {
                e = store_group_rename(st, id, spec->name);
                if (e == -EEXIST)
                        return op_fail(err, 409, "conflict", "name", "A sibling group named '%s' already exists.", spec->name);
                if (e < 0)
                        return op_fail_store(err, e, "the host group");
        }
        if (spec->parent_id) {
                e = store_group_move(st, id, spec->parent_id);
                if (e == -ELOOP)
                        return op_fail(err, 422, "invalid_argument", "parent_id", "A host group cannot be moved inside itself.");
                if (e == -EEXIST)
                        return op_fail(err, 409, "conflict", "parent_id", "The new parent already has a group named '%s'.", jget_str(g, "name"));
                if (e < 0)
                        return op_fail_store(err, e, "the host group");
        }
        json_t *after = NULL;
        e = group_json(st, id, &after);
        op_audit(st, c, "group.update", "group", id, e < 0 ? jget_str(g, "path") : jget_str(after, "path"),
                 spec->name ? "renamed" : "moved", "ok");
        if (e < 0)
                return op_fail_store(err, e, "the host group");
        *ret = after;
        return 0;
}

int inventory_group_delete(Inventory *inv, const OpCaller *c, int64_t id, OpError *err) {
        Store *st = inv->st;
        _cleanup_json_ json_t *g = NULL;
        int e = group_json(st, id, &g);
        if (e < 0 && e != -ENOENT)
                return op_fail_store(err, e, "the host group");
        if (!g || !op_allowed(st, c, ACT_READ, OBJ_GROUP, 0, id))
                return group_not_found(err, NULL, id);
        if (!op_allowed(st, c, ACT_DELETE, OBJ_GROUP, 0, id))
                return op_deny(st, c, err, "delete", "host group", id, group_name_for_deny(g));
        if (id == STORE_ROOT_GROUP_ID)
                return op_fail(err, 409, "conflict", NULL, "The root group 'All Hosts' cannot be deleted.");
        e = store_group_delete(st, id);
        if (e == -ENOTEMPTY)
                return op_fail(err, 409, "conflict", NULL, "Host group '%s' is not empty: it has %lld hosts and %lld child groups.",
                               jget_str(g, "path"), (long long) jget_int(g, "n_hosts"), (long long) jget_int(g, "n_children"));
        if (e < 0)
                return op_fail_store(err, e, "the host group");
        op_audit(st, c, "group.delete", "group", id, jget_str(g, "path"), NULL, "ok");
        return 0;
}

/* ------------------------------------------------------------------ */
/* hosts */

/* The pool directory a host gets: Armada's own pool is created (and
 * filled) there by libvirt as root, so it stays out of the system's
 * directories; letters, digits and "/._-" keep it out of XML and logs'
 * way. 0 and a malloc'd *ret, or 400 in err. */
static int pool_path_check(const char *path, char **ret, OpError *err) {
        char why[128];
        if (strspn(path, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._-") != strlen(path))
                return op_fail(err, 400, "invalid_argument", "pool_path",
                               "Field 'pool_path' must be an absolute path of letters, digits, '/', '.', '_' and '-'.");
        if (path_outside_system_normalize(path, ret, why, sizeof why) < 0)
                return op_fail(err, 400, "invalid_argument", "pool_path",
                               "Field 'pool_path' (\"%.200s\") %s; give an absolute directory without '..', outside /, /etc,"
                               " /usr, /boot, /proc, /sys and /dev.", path, why);
        return 0;
}

/* Phase 1 of inventory_host_add(): the arguments that need no database —
 * the URI may be opened, the pool path is allowed. */
static int host_add_check(Inventory *inv, const InventoryHostSpec *spec, char **ret_pool_dir, OpError *err) {
        char refused[512];
        if (hv_uri_check(spec->uri, inv->cfg.allow_test_hosts, refused, sizeof refused) < 0)
                return op_fail(err, 400, "invalid_argument", "uri",
                               "Field 'uri' (\"%.200s\") is refused: %s. A host URI looks like qemu+tcp://10.0.0.2/system,"
                               " qemu+ssh://root@kvm2/system?keyfile=/path or qemu:///system.", spec->uri, refused);
        return pool_path_check(spec->pool_path ? spec->pool_path : INVENTORY_POOL_PATH_DEFAULT, ret_pool_dir, err);
}

/* Phase 2: the group, the policy, and one record per hypervisor. */
static int host_add_admit(Inventory *inv, const OpCaller *c, const InventoryHostSpec *spec, int64_t *ret_group_id, OpError *err) {
        Store *st = inv->st;
        int64_t group_id = STORE_ROOT_GROUP_ID, id;
        if (spec->group) {
                const char *why;
                _cleanup_free_ char *g = store_group_path_normalize(spec->group, &why);
                if (!g)
                        return op_fail(err, 400, "invalid_argument", "group", "Field 'group' is not a valid host-group path: a segment %s.", why);
                int r = store_group_find(st, g, &group_id);
                if (r == -ENOENT) {
                        op_fail(err, 422, "not_found", "group", "Host group '%.200s' does not exist.", spec->group);
                        return -ENOENT;
                }
                if (r < 0)
                        return op_fail_store(err, r, "the host group");
        }
        if (!op_allowed(st, c, ACT_CREATE, OBJ_HOST, 0, group_id))
                return op_deny(st, c, err, "add", "host", 0, spec->name);
        /* One hypervisor, one host record: a second record would see every
         * VM "on two hosts". The same URI is caught here; another URI to the
         * same libvirtd when host.refresh first connects (host UUID). */
        if (store_host_find(st, spec->name, &id) == 0)
                return op_fail(err, 409, "conflict", "name", "A host named '%s' already exists.", spec->name);
        StoreHost same;
        if (inventory_host_by_uri(inv, spec->uri, &same) == 0) {
                if (op_allowed(st, c, ACT_READ, OBJ_HOST, 0, same.group_id))
                        return op_fail(err, 409, "conflict", "uri", "Host '%s' already has the URI '%s'; a hypervisor can be registered"
                                       " only once.", same.name, same.uri);
                return op_fail(err, 409, "conflict", "uri", "Another host already has this URI; a hypervisor can be registered only once.");
        }
        *ret_group_id = group_id;
        return 0;
}

int inventory_host_add(Inventory *inv, const OpCaller *c, const InventoryHostSpec *spec, json_t **ret, OpError *err) {
        Store *st = inv->st;
        _cleanup_free_ char *pool_dir = NULL;
        int64_t group_id, id, job;
        int e = host_add_check(inv, spec, &pool_dir, err);
        if (e < 0 || (e = host_add_admit(inv, c, spec, &group_id, err)) < 0)
                return e;
        e = store_host_insert(st, spec->name, spec->uri, group_id, spec->pool ? spec->pool : INVENTORY_POOL_DEFAULT, pool_dir, &id);
        if (e == -EEXIST)
                return op_fail(err, 409, "conflict", "name", "A host named '%s' already exists.", spec->name);
        if (e < 0)
                return op_fail_store(err, e, "the host");
        {
                /* the key inventory_host_by_uri() finds it by; a failure
                 * (logged) leaves it to that lookup to set */
                _cleanup_free_ char *key = hv_uri_normalize(spec->uri);
                (void) store_host_set_uri_key(st, id, key);
        }
        if ((spec->max_parallel_starts > 0 || spec->max_parallel_disk_ops > 0) &&
            (e = store_host_set_throttle(st, id, (int) spec->max_parallel_starts, (int) spec->max_parallel_disk_ops)) < 0) {
                (void) store_host_delete(st, id, false);
                return op_fail_store(err, e, "the host");
        }
        if (submit(inv, c, "host.refresh", "host", id, spec->name, NULL, &job) < 0) {
                (void) store_host_delete(st, id, false);
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job that connects host '%s'.", spec->name);
        }
        op_audit(st, c, "host.add", "host", id, spec->name, spec->uri, "ok");
        json_t *h = NULL;
        (void) store_host_get_json(st, id, &h); /* added and queued already: a failed re-read (logged) shows null */
        *ret = json_pack("{s:o, s:o}", "host", h ? h : json_null(), "job", job_json(inv, job));
        return 0;
}

/* 0 and host id's JSON in *ret when the caller may read it, else 404, or
 * 5xx on a database error. */
static int host_visible(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        json_t *h = NULL;
        int r = store_host_get_json(inv->st, id, &h);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the host");
        if (h && !op_allowed(inv->st, c, ACT_READ, OBJ_HOST, 0, jget_int(h, "group_id"))) {
                json_decref(h);
                h = NULL;
        }
        if (!h)
                return op_fail(err, 404, "not_found", NULL, "There is no host with id %lld.", (long long) id);
        *ret = h;
        return 0;
}

int inventory_host_get(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        return host_visible(inv, c, id, ret, err);
}

int inventory_host_update(Inventory *inv, const OpCaller *c, int64_t id, const InventoryHostSpec *spec, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *h = NULL;
        int hr = host_visible(inv, c, id, &h, err);
        if (hr < 0)
                return hr;
        if (!op_allowed(inv->st, c, ACT_UPDATE, OBJ_HOST, 0, jget_int(h, "group_id")))
                return op_deny(inv->st, c, err, "change", "host", id, jget_str(h, "name"));
        const char *pref = spec->domain_type_preference;
        if (pref) {
                StoreHost sh;
                char why[256];
                int e = store_host_get(inv->st, id, &sh);
                if (e < 0)
                        return op_fail_store(err, e, "the host");
                e = inventory_domain_type_preference_check(&sh, pref, why, sizeof why);
                if (e == -EINVAL)
                        return op_fail(err, 400, "invalid_argument", "domain_type_preference",
                                       "Field 'domain_type_preference' must be auto, kvm or qemu.");
                if (e < 0)
                        return op_fail(err, 409, "conflict", "domain_type_preference", "%s", why);
        }
        int e = 0;
        if (spec->max_parallel_starts != -1 || spec->max_parallel_disk_ops != -1)
                e = store_host_set_throttle(inv->st, id, (int) spec->max_parallel_starts, (int) spec->max_parallel_disk_ops);
        if (e >= 0 && pref)
                e = store_host_set_domain_type_preference(inv->st, id, pref);
        if (e < 0)
                return op_fail_store(err, e, "the host");
        _cleanup_free_ char *detail = xasprintf("max_parallel_starts=%lld max_parallel_disk_ops=%lld (-1 unchanged, 0 default)"
                                                " domain_type_preference=%s",
                                                (long long) spec->max_parallel_starts, (long long) spec->max_parallel_disk_ops,
                                                pref ? pref : "unchanged");
        op_audit(inv->st, c, "host.update", "host", id, jget_str(h, "name"), detail, "ok");
        e = store_host_get_json(inv->st, id, ret);
        return e < 0 ? op_fail_store(err, e, "the host") : 0;
}

int inventory_host_remove(Inventory *inv, const OpCaller *c, int64_t id, bool force, OpError *err) {
        _cleanup_json_ json_t *h = NULL;
        int hr = host_visible(inv, c, id, &h, err);
        if (hr < 0)
                return hr;
        if (!op_allowed(inv->st, c, ACT_DELETE, OBJ_HOST, 0, jget_int(h, "group_id")))
                return op_deny(inv->st, c, err, "remove", "host", id, jget_str(h, "name"));
        int n = store_vm_count_on_host(inv->st, id);
        if (n > 0 && !force)
                return op_fail(err, 409, "conflict", NULL,
                               "Host '%s' still has %d VMs; delete or move them first, or remove the host with force"
                               " (query force=true, CLI --force: Armada then forgets those VMs; they keep running on the host).",
                               jget_str(h, "name"), n);
        int e = store_host_delete(inv->st, id, force);
        if (e < 0)
                return op_fail_store(err, e, "the host");
        inventory_forget_host(inv, id);
        op_audit(inv->st, c, "host.remove", "host", id, jget_str(h, "name"), force ? "forced" : NULL, "ok");
        return 0;
}

int inventory_host_action(Inventory *inv, const OpCaller *c, int64_t id, const char *action, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *h = NULL;
        int hr = host_visible(inv, c, id, &h, err);
        if (hr < 0)
                return hr;
        if (!streq(action, "refresh"))
                return op_fail(err, 404, "not_found", NULL, "Hosts have no action '%s'; the actions are: refresh.", action);
        if (!op_allowed(inv->st, c, ACT_OPERATE, OBJ_HOST, 0, jget_int(h, "group_id")))
                return op_deny(inv->st, c, err, "refresh", "host", id, jget_str(h, "name"));
        int64_t job;
        if (submit(inv, c, "host.refresh", "host", id, jget_str(h, "name"), NULL, &job) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        op_audit(inv->st, c, "host.refresh", "host", id, jget_str(h, "name"), NULL, "accepted");
        *ret = json_pack("{s:o}", "job", job_json(inv, job));
        return 0;
}
