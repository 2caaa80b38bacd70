/* library_template_deploy(): VMs from a template, as named phases.
 *
 *   resolve   the template (visible to the caller, base present), the VM
 *             names and host names, the host group or the named host
 *   grant     (self-service) the grant that allows the deploy and whose
 *             quota holds every VM
 *   place     a host for each VM ...
 *   record    ... and its row, so that the next VM's placement counts it
 *   submit    a vm.deploy job per VM, and its audit record
 *
 * grant, place and record run in one transaction, which is the placement
 * lock (placement/placement.h): two deploys cannot both take the last
 * points of a quota or the last room on a host, and a failure leaves no
 * row behind. The jobs make the disks and domains (library-jobs.c). */
#include "library-priv.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "placement/placement.h"
#include "place/place.h"
#include "store/store-library.h"

typedef struct {
        Store *st;
        Jobs *jobs;
        const OpCaller *c;
        const LibraryDeploySpec *s;
        json_t *tpl;                   /* the template (owned) */
        const char *tpl_name;          /* borrowed from tpl */
        bool self;                     /* a self-service caller: a grant authorizes, not the policy */
        char (*names)[64];             /* per VM: its name ... */
        char (*hostnames)[64];         /* ... and its guest's host name */
        int64_t group_id;              /* where to place: the request's group, then the grant's */
        StoreHost fixed;               /* the host the request named ... */
        const StoreHost *fixedp;       /* ... or NULL */
        int64_t points, cpus, mem;     /* each VM's */
        int64_t grant_id;              /* the grant used, 0 for none */
        int64_t ids[LIBRARY_DEPLOY_COUNT_MAX];
        bool denied_by_grant;          /* no grant allowed the deploy: audit it ... */
        char denied[512];              /* ... with the first reason */
} Deploy;

static void deploy_done(Deploy *d) {
        json_decref(d->tpl);
        free(d->names);
        free(d->hostnames);
}

static const char *who(const OpCaller *c) {
        return c->user_name ? c->user_name : "system";
}
static const char *role(const OpCaller *c) {
        return c->role_name ? c->role_name : "?";
}

/* 409 for a VM name that is taken (VM names are unique across the estate):
 * names the VM only when the caller may read it. */
static int name_taken(Store *st, const OpCaller *c, const char *field, const char *name, OpError *err) {
        int64_t id;
        _cleanup_json_ json_t *v = NULL;
        if (store_vm_find(st, name, &id) == 0)
                (void) store_vm_get_json(st, id, &v); /* a database error (logged): the name is not shown */
        if (v && op_allowed(st, c, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")))
                return op_fail(err, 409, "conflict", field, "A VM named '%s' already exists.", name);
        return op_fail(err, 409, "conflict", field, "The VM name '%s' cannot be used; choose another.", name);
}

/* ------------------------------------------------------------------ */
/* resolve */

/* The template: visible to the caller, deployable by its role, its base
 * image present. */
static int deploy_resolve_template(Deploy *d, OpError *err) {
        int e = library_template_get(d->st, d->c, d->s->template_id, &d->tpl, err);
        if (e < 0)
                return e;
        d->tpl_name = jget_str(d->tpl, "name");
        if (d->c->subj.role == ROLE_READ_ONLY)
                return op_deny(d->st, d->c, err, "deploy from", "template", d->s->template_id, d->tpl_name);
        if (json_is_true(json_object_get(d->tpl, "base_missing")))
                return op_fail(err, 409, "conflict", NULL, "The base image '%s' of template '%s' is missing from its share.",
                               jget_str(d->tpl, "base_path"), d->tpl_name);
        d->self = d->c->subj.role == ROLE_SELF_SERVICE;
        if (d->self && d->s->host)
                return op_fail(err, 403, "forbidden", "host", "Self-service VMs are placed automatically in the host group of the"
                               " grant; 'host' is not allowed.");
        d->points = jget_int(d->tpl, "points");
        d->cpus = jget_int(d->tpl, "cpus");
        d->mem = jget_int(d->tpl, "memory_mib");
        return 0;
}

/* Names and host names of every VM, checked before anything is made. A
 * count asked for numbers the VMs, even a count of 1; without one the VM
 * is NAME itself. */
static int deploy_resolve_names(Deploy *d, OpError *err) {
        const LibraryDeploySpec *s = d->s;
        const char *pattern = json_string_value(json_object_get(d->tpl, "hostname_pattern"));
        d->names = xcalloc((size_t) s->count, 64);
        d->hostnames = xcalloc((size_t) s->count, 64);
        for (int64_t i = 0; i < s->count; i++) {
                if (library_deploy_vm_name(s->name, s->numbered, i + 1, d->names[i]) < 0)
                        return op_fail(err, 400, "invalid_argument", "name", "Field 'name' is too long for %lld numbered VMs.",
                                       (long long) s->count);
                int64_t existing;
                if (store_vm_find(d->st, d->names[i], &existing) == 0)
                        return name_taken(d->st, d->c, "name", d->names[i], err);
                if (library_hostname_expand(pattern, d->names[i], (int) i + 1, d->hostnames[i]) < 0)
                        return op_fail(err, 422, "invalid_argument", "name", "VM '%s' gives no valid host name through template"
                                       " '%s''s pattern '%s'.", d->names[i], d->tpl_name, pattern ? pattern : "{name}");
        }
        return 0;
}

/* The host group to place in (the root when none is given) or the host
 * the request named, which must take new VMs now. */
static int deploy_resolve_target(Deploy *d, OpError *err) {
        d->group_id = STORE_ROOT_GROUP_ID;
        if (d->s->group) {
                int e = library_group_of(d->st, d->c, "group", d->s->group, &d->group_id, err);
                if (e < 0)
                        return e;
        }
        if (!d->s->host)
                return 0;
        int64_t hid;
        StoreHost *h = &d->fixed;
        int r = store_host_find(d->st, d->s->host, &hid);
        if (r >= 0)
                r = store_host_get(d->st, hid, h);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the host");
        if (r < 0 || !op_allowed(d->st, d->c, ACT_READ, OBJ_HOST, 0, h->group_id))
                return op_fail(err, 422, "not_found", "host", "There is no host named '%.64s'.", d->s->host);
        if (streq(h->state, "maintenance") || streq(h->state, "unreachable") || streq(h->state, "not-responding"))
                return op_fail(err, 409, "conflict", "host", "Host '%s' is %s; new VMs cannot be placed on it now.", h->name, h->state);
        d->fixedp = h;
        return 0;
}

/* ------------------------------------------------------------------ */
/* grant (in the transaction) */

/* The first grant of the caller for the template that allows deploying
 * into the requested group with quota left for every VM: its id and host
 * group into d. Else 422 (quota) or 403, with the first reason in
 * d->denied for the audit record written after the rollback. */
static int deploy_choose_grant(Deploy *d, OpError *err) {
        const LibraryDeploySpec *s = d->s;
        _cleanup_json_ json_t *grants = NULL;
        int r = store_grants_for(d->st, d->c->user_id, s->template_id, &grants);
        if (r < 0)
                return op_fail_store(err, r, "the grants");
        LibraryAmounts add = { d->points * s->count, s->count, d->cpus * s->count, d->mem * s->count };
        char *first = d->denied;
        size_t first_size = sizeof d->denied;
        size_t i;
        json_t *g;
        json_array_foreach(grants, i, g) {
                char reason[256];
                if (!library_actions_allow(jget_str(g, "actions"), "deploy")) {
                        if (!first[0])
                                snprintf(first, first_size, "grant %lld does not allow deploying", (long long) jget_int(g, "id"));
                        continue;
                }
                if (s->group && jget_int(g, "group_id") != d->group_id) {
                        if (!first[0])
                                snprintf(first, first_size, "grant %lld places VMs in host group '%s', not '%s'",
                                         (long long) jget_int(g, "id"), jget_str(g, "group_path"), s->group);
                        continue;
                }
                LibraryAmounts lim = library_grant_limit(g), used = library_grant_used(g);
                if (library_quota_check(&lim, &used, &add, reason, sizeof reason) < 0) {
                        if (!first[0])
                                snprintf(first, first_size, "%s", reason);
                        continue;
                }
                d->grant_id = jget_int(g, "id");
                d->group_id = jget_int(g, "group_id");
                return 0;
        }
        d->denied_by_grant = true;
        if (strncmp(first, "quota:", 6) == 0)
                return op_fail(err, 422, "quota_exceeded", "count", "%s (template '%s' costs %lld points per VM).", first, d->tpl_name,
                               (long long) d->points);
        return op_fail(err, 403, "forbidden", NULL, "User '%s' may not deploy from template '%s': %s.", who(d->c), d->tpl_name,
                       first);
}

/* ------------------------------------------------------------------ */
/* place and record (in the transaction) */

/* Picks the host of VM name: the named host when it has the memory (the
 * VMs this deploy already recorded count, as for POST /vms), else the
 * best in d->group_id's subtree. -ENOSPC with a sentence in why, -EPERM
 * for a delegated administrator without groups, or another -errno. */
static int deploy_place(Deploy *d, const char *name, StoreHost *ret, char *why, size_t why_size) {
        uint64_t vsize = (uint64_t) jget_int(d->tpl, "base_virtual_size"), want = (uint64_t) jget_int(d->tpl, "disk_bytes");
        /* the template's network must stand on the host (placement.h) */
        const char *net = json_string_value(json_object_get(d->tpl, "network"));
        PlacementDemand pd = { .cpus = (unsigned) d->cpus, .memory_mib = (uint64_t) d->mem,
                               .disk_bytes = d->s->full_copy ? (want > vsize ? want : vsize) : 0, .vm_name = name,
                               .networks = &net, .n_networks = net && *net ? 1 : 0 };
        if (d->fixedp) {
                PlacementRating *rt = NULL;
                int n = placement_rate(d->st, d->fixedp->group_id, &pd, &rt);
                for (int i = 0; i < n; i++)
                        if (rt[i].host_id == d->fixedp->id && (rt[i].why & (PLACE_WHY_MEMORY | PLACE_WHY_NETWORK))) {
                                snprintf(why, why_size, "host '%s' cannot take VM '%s': %s", d->fixedp->name, name, rt[i].reason);
                                free(rt);
                                return -ENOSPC;
                        }
                free(rt);
                if (n < 0)
                        return n;
                *ret = *d->fixedp;
                return 0;
        }
        /* A delegated administrator's VMs go to the groups it manages,
         * and its errors name no other host. */
        if (d->c->subj.role == ROLE_DELEGATED_ADMIN) {
                pd.scope = d->c->subj.scopes;
                pd.n_scope = d->c->subj.n_scopes;
                if (pd.n_scope == 0)
                        return -EPERM;
        }
        int64_t host_id;
        int e = placement_choose(d->st, d->group_id, &pd, &host_id, why, why_size);
        /* A self-service user sees no hosts: the reasons stay in the log. */
        if (e == -ENOSPC && d->self) {
                log_info("cannot place VM '%s' of user '%s': %s", name, who(d->c), why);
                snprintf(why, why_size, "no host of the grant's host group has %u vCPUs and %llu MiB of memory left for it", pd.cpus,
                         (unsigned long long) pd.memory_mib);
        }
        if (e < 0)
                return e;
        return store_host_get(d->st, host_id, ret);
}

/* Places VM i (the count made so far is i), checking the caller may create
 * VMs on the chosen host (self-service callers: their grant does). */
static int deploy_place_one(Deploy *d, int64_t i, StoreHost *h, OpError *err) {
        const OpCaller *c = d->c;
        const char *name = d->names[i];
        char why[2048] = "";
        int e = deploy_place(d, name, h, why, sizeof why);
        if (e == -ENOSPC && d->fixedp)
                return op_fail(err, 422, "no_capacity", "host", "Cannot deploy VM %lld of %lld from template '%s': %.1500s.",
                               (long long) i + 1, (long long) d->s->count, d->tpl_name, why);
        if (e == -ENOSPC)
                return op_fail(err, 409, "no_capacity", NULL, "Cannot place VM %lld of %lld from template '%s': %.1500s.",
                               (long long) i + 1, (long long) d->s->count, d->tpl_name, why);
        if (e == -EPERM)
                return op_fail(err, 403, "forbidden", NULL, "User '%s' (%s) manages no host group to place VMs in.", who(c), role(c));
        if (e < 0)
                return op_fail(err, 500, "internal", NULL, "placement failed (error %d)", e);
        if (d->self || op_allowed(d->st, c, ACT_CREATE, OBJ_VM, c->user_id, h->group_id))
                return 0;
        if (op_allowed(d->st, c, ACT_READ, OBJ_HOST, 0, h->group_id))
                return op_fail(err, 403, "forbidden", NULL, "User '%s' (%s) may not create VMs on host '%s'.", who(c), role(c), h->name);
        /* Placement looked beyond the caller's scope: name nothing there. */
        return op_fail(err, 403, "forbidden", NULL, "User '%s' (%s) may not create VMs where placement would put VM '%s'; give a"
                       " host group you manage in 'group'.", who(c), role(c), name);
}

/* Records VM i on host h, state "creating", with its template, grant and
 * points. */
static int deploy_record_one(Deploy *d, int64_t i, const StoreHost *h, OpError *err) {
        const char *name = d->names[i];
        StoreVm vm = { .host_id = h->id, .owner_id = d->c->user_id, .cpus = (unsigned) d->cpus, .memory_mib = (uint64_t) d->mem };
        uuid_generate(vm.uuid);
        snprintf(vm.name, sizeof vm.name, "%s", name);
        snprintf(vm.state, sizeof vm.state, "creating");
        snprintf(vm.origin, sizeof vm.origin, "template");
        snprintf(vm.description, sizeof vm.description, "from template %s", d->tpl_name);
        int e = store_vm_insert(d->st, &vm, &d->ids[i]);
        if (e == 0)
                e = store_vm_template_set(d->st, d->ids[i], d->s->template_id, d->grant_id, d->points);
        if (e == -EEXIST) /* another deploy took the name meanwhile */
                return name_taken(d->st, d->c, "name", name, err);
        if (e < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot record VM '%s'.", name);
        return 0;
}

static int deploy_place_and_record(Deploy *d, OpError *err) {
        for (int64_t i = 0; i < d->s->count; i++) {
                StoreHost h;
                int e = deploy_place_one(d, i, &h, err);
                if (e < 0)
                        return e;
                e = deploy_record_one(d, i, &h, err);
                if (e < 0)
                        return e;
        }
        return 0;
}

/* ------------------------------------------------------------------ */
/* submit */

/* A vm.deploy job per recorded VM (a VM whose job cannot be queued loses
 * its row) and its audit record. {"vms", "jobs", "grant_id"}. */
static json_t *deploy_submit(Deploy *d) {
        json_t *vms = json_array(), *jobs = json_array();
        for (int64_t i = 0; i < d->s->count; i++) {
                json_t *p = json_pack("{s:I, s:s, s:b, s:b}", "template_id", (json_int_t) d->s->template_id, "hostname", d->hostnames[i],
                                      "full_copy", d->s->full_copy, "start", d->s->start);
                /* The row as recorded, read before its job is queued: a
                 * job that fails at once removes the row, and a read after
                 * the submission then found nothing (the reply held null). */
                json_t *vm = NULL;
                (void) store_vm_get_json(d->st, d->ids[i], &vm);
                int64_t job;
                int e = jobs_submit(d->jobs, "vm.deploy", "vm", d->ids[i], d->names[i], d->c->user_id, p, &job);
                json_decref(p);
                if (e < 0) {
                        json_decref(vm);
                        (void) store_vm_delete(d->st, d->ids[i]);
                        continue;
                }
                json_array_append_new(vms, vm ?: json_null()); /* null only when the re-read itself failed (logged) */
                json_array_append_new(jobs, library_job_json(d->st, job));
                _cleanup_free_ char *detail = xasprintf("template %s%s", d->tpl_name, d->s->full_copy ? ", full copy" : "");
                op_audit(d->st, d->c, "vm.deploy", "vm", d->ids[i], d->names[i], detail, "accepted");
        }
        return json_pack("{s:o, s:o, s:I}", "vms", vms, "jobs", jobs, "grant_id", (json_int_t) d->grant_id);
}

/* ------------------------------------------------------------------ */

static int deploy_run(Deploy *d, json_t **ret, OpError *err) {
        int e;
        if ((e = deploy_resolve_template(d, err)) < 0 || (e = deploy_resolve_names(d, err)) < 0 ||
            (e = deploy_resolve_target(d, err)) < 0)
                return e;
        if (placement_lock(d->st) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot start a database transaction.");
        e = d->self ? deploy_choose_grant(d, err) : 0;
        if (e >= 0)
                e = deploy_place_and_record(d, err);
        if (e < 0) {
                (void) placement_unlock(d->st, e);
                /* After the rollback, or it would take the record with it. */
                if (d->denied_by_grant)
                        op_audit(d->st, d->c, "template.deploy", "template", d->s->template_id, d->tpl_name, d->denied, "denied");
                return e;
        }
        if (placement_unlock(d->st, 0) < 0) {
                /* A failed COMMIT may leave the transaction open: end it. */
                (void) placement_unlock(d->st, -EIO);
                return op_fail(err, 500, "internal", NULL, "Cannot commit the new VMs.");
        }
        *ret = deploy_submit(d);
        return 0;
}

int library_template_deploy(Store *st, Jobs *jobs, const OpCaller *c, const LibraryDeploySpec *spec, json_t **ret,
                            OpError *err) {
        assert(spec->count >= 1 && spec->count <= LIBRARY_DEPLOY_COUNT_MAX);
        Deploy d = { .st = st, .jobs = jobs, .c = c, .s = spec };
        int e = deploy_run(&d, ret, err);
        deploy_done(&d);
        return e;
}
