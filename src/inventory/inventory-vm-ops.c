/* inventory: the operations callers ask for on VMs (inventory.h,
 * "operations"): create (placement, the row, the job, the audit and the
 * vm.placed event), read, update (owner, description), delete and the
 * power actions. */
#include "inventory-priv.h"
#include "placement/placement.h"
#include "store/store-library.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* The job's JSON, or JSON null when it cannot be read (the job is queued
 * already: a failed re-read, logged by the store, does not undo it). */
static json_t *job_json(Inventory *inv, int64_t id) {
        json_t *j = NULL;
        return store_job_get_json(inv->st, id, &j) == 0 ? j : json_null();
}

/* Resolves the group path the caller gave in field: 0 and *ret_id, or a
 * 4xx in err (a group the caller may not read does not exist for it). */
static int group_of(Store *st, const OpCaller *c, const char *field, const char *path, int64_t *ret_id, OpError *err) {
        const char *why = NULL;
        _cleanup_free_ char *norm = store_group_path_normalize(path, &why);
        if (!norm)
                return op_fail(err, 400, "invalid_argument", field, "Field '%s' (\"%.200s\") is not a valid host-group path: a segment %s.",
                               field, path, why);
        int64_t id = 0;
        int r = store_group_find(st, norm, &id);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the host group");
        if (r < 0 || !op_allowed(st, c, ACT_READ, OBJ_GROUP, 0, id)) {
                op_fail(err, 422, "not_found", field, "There is no host group '%.200s'.", path);
                return -ENOENT;
        }
        *ret_id = id;
        return 0;
}

int inventory_vm_name_taken(Inventory *inv, const OpCaller *c, const char *field, const char *name, OpError *err) {
        int64_t id;
        _cleanup_json_ json_t *v = NULL;
        if (store_vm_find(inv->st, name, &id) == 0)
                (void) store_vm_get_json(inv->st, id, &v); /* a database error (logged): the name is not shown */
        if (v && op_allowed(inv->st, c, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")))
                op_fail(err, 409, "conflict", field, "A VM named '%s' already exists.", name);
        else
                op_fail(err, 409, "conflict", field, "The VM name '%s' cannot be used; choose another.", name);
        return -EEXIST;
}

int inventory_vm_refuse_foreign(const json_t *v, OpError *err) {
        const char *origin = json_string_value(json_object_get(v, "origin"));
        if (!origin || !streq(origin, "foreign"))
                return 0;
        const char *name = json_string_value(json_object_get(v, "name"));
        return op_fail(err, 409, "conflict", NULL, "VM '%s' belongs to another Armada installation; it is read-only here.", name ? name : "?");
}

/* ------------------------------------------------------------------ */
/* create, in phases: check, place (under the placement lock), submit,
 * record */

typedef struct {
        const InventoryVmSpec *spec;
        int64_t host_id;             /* the host named (by name or id), or placement's choice */
        StoreHost host;              /* its row, once placed */
        json_t *placement;           /* placement's choice (auto-placement only) */
        int64_t vm_id;
        int64_t job_id;
        bool denied;                 /* the policy refused the host: audited once the lock is given up */
} VmCreate;

/* Placement's part, asked of the placement module: without a host the
 * best-rated one in the group (or in the groups a delegated administrator
 * manages), with vc->host_id and vc->placement; with a host named by the
 * caller, whether it has the memory (unless forced). */
static int vm_create_choose(Inventory *inv, const OpCaller *c, VmCreate *vc, OpError *err) {
        const InventoryVmSpec *s = vc->spec;
        PlacementVmSpec ps = { .group = s->group, .name = s->name, .cpus = s->cpus, .memory_mib = s->memory_mib,
                               .disk_bytes = s->disk_bytes };
        return placement_new_vm(inv->st, c, &ps, &vc->host_id, &vc->placement, err);
}

static int vm_create_check_host(Inventory *inv, const OpCaller *c, VmCreate *vc, OpError *err) {
        const InventoryVmSpec *s = vc->spec;
        PlacementVmSpec ps = { .group = s->group, .name = s->name, .cpus = s->cpus, .memory_mib = s->memory_mib,
                               .disk_bytes = s->disk_bytes };
        return placement_check_host(inv->st, c, &vc->host, &ps, s->force, err);
}

/* Phase 1: what can be decided before the placement lock — the force flag
 * and its rights, the name, the host named by name. */
static int vm_create_check(Inventory *inv, const OpCaller *c, VmCreate *vc, OpError *err) {
        const InventoryVmSpec *s = vc->spec;
        /* Forcing a VM onto a host without the memory is an administrator's
         * call: it can starve the VMs already there. */
        if (s->force && c->subj.role != ROLE_ADMIN) {
                op_audit(inv->st, c, "vm.create", "vm", 0, s->name, "force", "denied");
                return op_fail(err, 403, "forbidden", "force", "User '%s' (%s) may not force a VM onto a host; only an administrator may.",
                               c->user_name ? c->user_name : "system", c->role_name ? c->role_name : "?");
        }
        if (s->force && !s->host && !s->host_id)
                return op_fail(err, 400, "invalid_argument", "force", "Field 'force' only applies together with 'host' or 'host_id'.");
        int64_t existing;
        if (store_vm_find(inv->st, s->name, &existing) == 0)
                return inventory_vm_name_taken(inv, c, "name", s->name, err);
        vc->host_id = s->host_id;
        int r = s->host ? store_host_find(inv->st, s->host, &vc->host_id) : 0;
        if (r == -ENOENT) {
                op_fail(err, 422, "not_found", "host", "There is no host named '%.64s'.", s->host);
                return -ENOENT;
        }
        if (r < 0)
                return op_fail_store(err, r, "the host");
        return 0;
}

/* Phase 2 (placement lock held): the host — placement's choice, or the one
 * named, checked for visibility, group, rights, state and memory — and the
 * row in state 'creating', so that VMs created at once never share the
 * same free room. On a refusal by the policy sets vc->denied and leaves
 * err for the caller, which audits once the lock is given up (the rollback
 * would take the audit row with it). */
static int vm_create_place(Inventory *inv, const OpCaller *c, VmCreate *vc, OpError *err) {
        Store *st = inv->st;
        const InventoryVmSpec *s = vc->spec;
        StoreHost *h = &vc->host;
        bool chosen = !vc->host_id;
        int r;
        if (chosen && (r = vm_create_choose(inv, c, vc, err)) < 0)
                return r;
        r = store_host_get(st, vc->host_id, h);
        if (r == -ENOENT) {
                op_fail(err, 422, "not_found", "host_id", "There is no host with id %lld.", (long long) vc->host_id);
                return -ENOENT;
        }
        if (r < 0)
                return op_fail_store(err, r, "the host");
        if (!op_allowed(st, c, ACT_READ, OBJ_HOST, 0, h->group_id)) {
                /* Name it as the caller did: a host given by id keeps its name. */
                if (s->host)
                        op_fail(err, 422, "not_found", "host", "There is no host named '%.64s'.", s->host);
                else
                        op_fail(err, 422, "not_found", "host_id", "There is no host with id %lld.", (long long) vc->host_id);
                return -ENOENT;
        }
        if (s->group && !chosen) {
                /* A host and a group: the host must be in the group's subtree. */
                int64_t gid = 0, chain[64];
                if ((r = group_of(st, c, "group", s->group, &gid, err)) < 0)
                        return r;
                int nc = store_group_chain(st, h->group_id, chain, 64);
                bool inside = false;
                for (int i = 0; i < nc; i++)
                        inside = inside || chain[i] == gid;
                if (!inside)
                        return op_fail(err, 422, "invalid_argument", "group", "Host '%s' is not in host group '%.200s'.", h->name, s->group);
        }
        if (!op_allowed(st, c, ACT_CREATE, OBJ_VM, c->user_id, h->group_id)) {
                vc->denied = true;
                return -EPERM;
        }
        if (streq(h->state, "maintenance"))
                return op_fail(err, 409, "conflict", "host", "Host '%s' is in maintenance mode; new VMs cannot be placed on it.", h->name);
        if (streq(h->state, "unreachable") || streq(h->state, "not-responding"))
                return op_fail(err, 409, "conflict", "host", "Host '%s' is %s; the VM cannot be created there now.", h->name,
                               streq(h->state, "unreachable") ? "unreachable" : "not responding");
        if (!chosen && (r = vm_create_check_host(inv, c, vc, err)) < 0)
                return r;

        StoreVm vm = { .host_id = h->id, .owner_id = c->user_id, .cpus = (unsigned) s->cpus, .memory_mib = (uint64_t) s->memory_mib };
        uuid_generate(vm.uuid);
        snprintf(vm.name, sizeof vm.name, "%s", s->name);
        snprintf(vm.state, sizeof vm.state, "creating");
        snprintf(vm.origin, sizeof vm.origin, "created");
        snprintf(vm.description, sizeof vm.description, "%s", s->description ? s->description : "");
        int e = store_vm_insert(st, &vm, &vc->vm_id);
        if (e == -EEXIST)
                return inventory_vm_name_taken(inv, c, "name", s->name, err);
        if (e < 0)
                return op_fail_store(err, e, "the VM");
        return 0;
}

/* Phase 2 around vm_create_place(): takes and gives up the placement lock. */
static int vm_create_place_locked(Inventory *inv, const OpCaller *c, VmCreate *vc, OpError *err) {
        const char *name = vc->spec->name;
        if (placement_lock(inv->st) < 0)
                return op_fail(err, 503, "busy", NULL, "The database is busy; try creating VM '%s' again.", name);
        int r = vm_create_place(inv, c, vc, err);
        int e = placement_unlock(inv->st, r < 0 ? -ECANCELED : 0);
        if (vc->denied)
                return op_deny(inv->st, c, err, "create VMs on", "host", vc->host.id, vc->host.name);
        if (r < 0)
                return r;
        if (e < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot record VM '%s'.", name);
        return 0;
}

/* Phase 3: the job that defines the VM on its host; the row goes when it
 * cannot be queued. */
static int vm_create_submit(Inventory *inv, const OpCaller *c, VmCreate *vc, OpError *err) {
        const InventoryVmSpec *s = vc->spec;
        _cleanup_json_ json_t *params = json_pack("{s:I, s:s, s:b, s:b}", "disk_bytes", (json_int_t) s->disk_bytes, "domain_type",
                                                  s->domain_type ? s->domain_type : "auto", "start", s->start, "nic", !s->no_nic);
        if (vc->placement)
                json_object_set(params, "placement", vc->placement);
        if (jobs_submit(inv->jobs, "vm.create", "vm", vc->vm_id, s->name, c->user_id, params, &vc->job_id) < 0) {
                (void) store_vm_delete(inv->st, vc->vm_id);
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job that creates VM '%s'.", s->name);
        }
        return 0;
}

/* Phase 4: the audit record and, when placement chose, the vm.placed event. */
static void vm_create_record(Inventory *inv, const OpCaller *c, const VmCreate *vc) {
        const char *name = vc->spec->name, *host = vc->host.name;
        json_t *p = vc->placement;
        _cleanup_free_ char *detail = p ? xasprintf("%s (chosen by placement, rating %.2f)", host, json_real_value(json_object_get(p, "rating")))
                                      : vc->spec->force ? xasprintf("%s (forced)", host) : NULL;
        op_audit(inv->st, c, "vm.create", "vm", vc->vm_id, name, detail ? detail : host, "accepted");
        if (!p)
                return;
        _cleanup_free_ char *msg = xasprintf("Placement chose host '%s' for VM '%s' in group '%s' (rating %.2f, %.1f of 5 stars).",
                                             host, name, json_string_value(json_object_get(p, "group")),
                                             json_real_value(json_object_get(p, "rating")), json_real_value(json_object_get(p, "stars")));
        (void) store_event_add(inv->st, "info", "vm.placed", "vm", vc->vm_id, name, c->user_id, msg);
}

int inventory_vm_create(Inventory *inv, const OpCaller *c, const InventoryVmSpec *spec, json_t **ret, OpError *err) {
        VmCreate vc = { .spec = spec };
        int r = vm_create_check(inv, c, &vc, err);
        if (r >= 0)
                r = vm_create_place_locked(inv, c, &vc, err);
        if (r >= 0)
                r = vm_create_submit(inv, c, &vc, err);
        if (r < 0) {
                json_decref(vc.placement);
                return r;
        }
        vm_create_record(inv, c, &vc);
        json_t *vmj = NULL;
        (void) store_vm_get_json(inv->st, vc.vm_id, &vmj); /* created and queued: a failed re-read (logged) shows null */
        if (vmj && vc.placement)
                json_object_set(vmj, "placement", vc.placement);
        *ret = json_pack("{s:o, s:o, s:o?}", "vm", vmj ? vmj : json_null(), "job", job_json(inv, vc.job_id), "placement", vc.placement);
        return 0;
}

/* ------------------------------------------------------------------ */
/* read, delete, power actions */

/* 0 and VM id's JSON in *ret when the caller may read it, else 404, or 5xx
 * on a database error. */
static int vm_visible(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        json_t *v = NULL;
        int r = store_vm_get_json(inv->st, id, &v);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the VM");
        if (v && !op_allowed(inv->st, c, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id"))) {
                json_decref(v);
                v = NULL;
        }
        if (!v)
                return op_fail(err, 404, "not_found", NULL, "There is no VM with id %lld.", (long long) id);
        *ret = v;
        return 0;
}

/* A self-service user acts on a VM deployed under a grant only as far as
 * that grant's actions allow (other roles, and VMs without a grant, are
 * decided by the policy alone). */
static bool grant_allows(Inventory *inv, const OpCaller *c, int64_t vm_id, const char *action) {
        if (c->subj.role != ROLE_SELF_SERVICE)
                return true;
        int64_t grant_id = 0;
        if (store_vm_grant(inv->st, vm_id, &grant_id) < 0 || grant_id == 0)
                return true;
        _cleanup_json_ json_t *g = NULL;
        (void) store_grant_get_json(inv->st, grant_id, &g); /* a database error (logged) denies */
        return g && csv_has(jget_str(g, "actions"), action);
}

int inventory_vm_get(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        return vm_visible(inv, c, id, ret, err);
}

/* The user spec names as the new owner: its id in *ret_id (0 to clear),
 * or a 400 naming "owner". */
static int vm_update_owner(Inventory *inv, const InventoryVmUpdateSpec *spec, int64_t *ret_id, OpError *err) {
        *ret_id = -1;
        if (!spec->set_owner)
                return 0;
        if (!spec->owner) {
                *ret_id = 0;
                return 0;
        }
        StoreUser u;
        int r = store_user_find(inv->st, spec->owner, &u);
        if (r == -ENOENT)
                return op_fail(err, 400, "invalid_argument", "owner", "There is no user named '%.64s'.", spec->owner);
        if (r < 0)
                return op_fail_store(err, r, "the user");
        *ret_id = u.id;
        return 0;
}

/* The vm.updated events of a change of owner, each owned by the user it
 * concerns (so that it reaches that user's console): the new owner's, and
 * the previous owner's when the VM was taken from it. None when the owner
 * stays. v is the VM before the change. */
static void vm_update_events(Inventory *inv, const json_t *v, int64_t owner_id, const char *owner) {
        int64_t id = jget_int(v, "id"), was = jget_int(v, "owner_id");
        const char *name = jget_str(v, "name"), *was_name = jget_str(v, "owner_name");
        if (owner_id == was)
                return;
        if (owner_id > 0) {
                _cleanup_free_ char *msg = xasprintf("VM '%s' now belongs to user '%s'.", name, owner);
                (void) store_event_add(inv->st, "info", "vm.updated", "vm", id, name, owner_id, msg);
        }
        if (was > 0) {
                _cleanup_free_ char *msg = xasprintf("VM '%s' no longer belongs to user '%s'.", name, was_name ? was_name : "?");
                (void) store_event_add(inv->st, "info", "vm.updated", "vm", id, name, was, msg);
        }
}

int inventory_vm_update(Inventory *inv, const OpCaller *c, int64_t id, const InventoryVmUpdateSpec *spec, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *v = NULL;
        int r = vm_visible(inv, c, id, &v, err);
        if (r < 0)
                return r;
        const char *name = jget_str(v, "name");
        /* The rights come first: who may not change the VM learns nothing
         * of which users exist. */
        if (!op_allowed(inv->st, c, ACT_UPDATE, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")))
                return op_deny(inv->st, c, err, "change", "VM", id, name);
        if ((r = inventory_vm_refuse_foreign(v, err)) < 0)
                return r;
        int64_t owner_id;
        if ((r = vm_update_owner(inv, spec, &owner_id, err)) < 0)
                return r;
        r = store_vm_set_meta(inv->st, id, owner_id, spec->description);
        if (r == -ENOENT) /* deleted meanwhile */
                return op_fail(err, 404, "not_found", NULL, "There is no VM with id %lld.", (long long) id);
        if (r < 0)
                return op_fail_store(err, r, "the VM");
        _cleanup_free_ char *owner = !spec->set_owner ? NULL : spec->owner ? xasprintf("owner '%s'", spec->owner) : xstrdup("no owner");
        _cleanup_free_ char *detail = xasprintf("%s%s%s", owner ? owner : "", owner && spec->description ? ", " : "",
                                                spec->description ? "description" : "");
        op_audit(inv->st, c, "vm.update", "vm", id, name, detail, "ok");
        if (spec->set_owner)
                vm_update_events(inv, v, owner_id, spec->owner);
        r = store_vm_get_json(inv->st, id, ret);
        return r < 0 ? op_fail_store(err, r, "the VM") : 0;
}

int inventory_vm_delete(Inventory *inv, const OpCaller *c, int64_t id, bool keep_disks, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *v = NULL;
        int vr = vm_visible(inv, c, id, &v, err);
        if (vr < 0)
                return vr;
        const char *name = jget_str(v, "name");
        if (!op_allowed(inv->st, c, ACT_DELETE, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")) ||
            !grant_allows(inv, c, id, "delete"))
                return op_deny(inv->st, c, err, "delete", "VM", id, name);
        int r = inventory_vm_refuse_foreign(v, err);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *params = json_pack("{s:b}", "keep_disks", keep_disks);
        int64_t job;
        if (jobs_submit(inv->jobs, "vm.delete", "vm", id, name, c->user_id, params, &job) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        op_audit(inv->st, c, "vm.delete", "vm", id, name, keep_disks ? "keep disks" : NULL, "accepted");
        *ret = json_pack("{s:o}", "job", job_json(inv, job));
        return 0;
}

int inventory_vm_action(Inventory *inv, const OpCaller *c, int64_t id, const InventoryVmActionSpec *spec, json_t **ret, OpError *err) {
        static const char *const actions[] = { "start", "stop", "kill", "pause", "resume" };
        _cleanup_json_ json_t *v = NULL;
        int vr = vm_visible(inv, c, id, &v, err);
        if (vr < 0)
                return vr;
        const char *action = NULL, *name = jget_str(v, "name");
        for (size_t i = 0; i < ELEMENTSOF(actions); i++)
                if (streq(spec->action, actions[i])) action = actions[i];
        if (!action)
                return op_fail(err, 404, "not_found", NULL, "VMs have no action '%s'; the actions are start, stop, kill, pause, resume.",
                               spec->action);
        if (!op_allowed(inv->st, c, ACT_OPERATE, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")) ||
            !grant_allows(inv, c, id, action))
                return op_deny(inv->st, c, err, action, "VM", id, name);
        int r = inventory_vm_refuse_foreign(v, err);
        if (r < 0)
                return r;
        const char *state = jget_str(v, "state");
        if (streq(state, "creating") || streq(state, "deleting"))
                return op_fail(err, 409, "conflict", NULL, "VM '%s' is %s; try again when that has finished.", name, state);
        _cleanup_json_ json_t *params = json_object();
        if (spec->timeout_s)
                json_object_set_new(params, "timeout_s", json_integer(spec->timeout_s));
        json_object_set_new(params, "force", json_boolean(spec->force));
        _cleanup_free_ char *kind = xasprintf("vm.%s", action);
        int64_t job;
        if (jobs_submit(inv->jobs, kind, "vm", id, name, c->user_id, params, &job) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        op_audit(inv->st, c, kind, "vm", id, name, NULL, "accepted");
        *ret = json_pack("{s:o}", "job", job_json(inv, job));
        return 0;
}
