/* The place capability's REST resources: a host group's placement policy
 * (reserves, goal, weights; inherited down the tree), host ratings for a
 * VM's demand, and placement rules (affinity / anti-affinity of VMs).
 *
 *   GET  /api/v1/host-groups/{id}/placement-policy   own and effective policy
 *   PUT  /api/v1/host-groups/{id}/placement-policy   set fields; null inherits
 *   GET  /api/v1/placement/ratings?cpus=&memory_mib=&disk_size=&group=&goal=&name=
 *   POST /api/v1/placement/ratings                   the same as a JSON body
 *   GET|POST /api/v1/placement/rules, GET|PATCH|DELETE /api/v1/placement/rules/{id}
 *   POST /api/v1/placement/consolidation             pack servers onto few hosts (P2V) */
#include "api-priv.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "inventory/placement.h"
#include "place/place.h"
#include "store/store-place.h"

#define VM_CPUS_MAX 256
#define VM_MEMORY_MIN_MIB 16
#define VM_MEMORY_MAX_MIB (4LL << 20)
#define VM_DISK_MAX_BYTES (64LL << 40)
#define RULE_VMS_MAX 1000

/* Upper bounds of the policy's numbers, by StorePolicyField. */
static const double POLICY_MAX[STORE_POLICY__COUNT] = { 100, 4 << 20, 1 << 20, 100, 100, 1000, 1000, 1000, 1000, 1000 };
static const char *const POLICY_UNIT[STORE_POLICY__COUNT] = { "percent", "MiB", "GiB", "percent", "percent",
                                                               "", "", "", "", "" };
static const char *const WEIGHT_NAMES[] = { "cpu", "memory", "disk", "disk_io", "network" };


/* "All Hosts" for the root, else the group's path; "" when it is gone. */
static char *group_display(Store *st, int64_t id) {
        _cleanup_json_ json_t *g = store_group_get(st, id);
        if (!g)
                return xstrdup("");
        return jget_str(g, "path")[0] ? xstrdup(jget_str(g, "path")) : xstrdup(STORE_ROOT_GROUP_NAME);
}

/* Resolves a group path given by the caller in field: 0 and *ret_id, or
 * false with a 4xx sent. */
static bool group_of(Req *r, const char *field, const char *path, int64_t *ret_id) {
        const char *why = NULL;
        _cleanup_free_ char *norm = store_group_path_normalize(path, &why);
        if (!norm) {
                reply_error(r, 400, "invalid_argument", field, "Field '%s' (\"%.200s\") is not a valid host-group path: a segment %s.",
                            field, path, why);
                return false;
        }
        if (store_group_find(r->api->st, norm, ret_id) < 0 || !api_allowed(r, ACT_READ, OBJ_GROUP, 0, *ret_id)) {
                reply_error(r, 422, "not_found", field, "There is no host group '%.200s'.", path);
                return false;
        }
        return true;
}

/* ------------------------------------------------------------------ */
/* placement policy */

static json_t *num_or_null(bool set, double v) {
        return set ? json_real(v) : json_null();
}

/* Numbers that are whole print as integers. */
static json_t *num(double v) {
        if (v == floor(v) && fabs(v) < 1e15)
                return json_integer((json_int_t) v);
        return json_real(v);
}

static json_t *policy_own_json(const StoreGroupPolicy *p) {
        json_t *o = json_object(), *w = json_object();
        for (int f = 0; f < STORE_POLICY__COUNT; f++) {
                json_t *v = p->set[f] ? num(p->value[f]) : num_or_null(false, 0);
                json_object_set_new(f < STORE_POLICY_W_CPU ? o : w, store_policy_names[f], v);
        }
        json_object_set_new(o, "goal", p->goal[0] ? json_string(p->goal) : json_null());
        json_object_set_new(o, "weights", w);
        return o;
}

static json_t *policy_effective_json(Store *st, const StoreEffectivePolicy *e) {
        json_t *o = json_object(), *w = json_object(), *from = json_object(), *wfrom = json_object();
        for (int f = 0; f < STORE_POLICY__COUNT; f++) {
                bool weight = f >= STORE_POLICY_W_CPU;
                json_object_set_new(weight ? w : o, store_policy_names[f], num(e->value[f]));
                _cleanup_free_ char *src = e->from[f] > 0 ? group_display(st, e->from[f]) : xstrdup("default");
                json_object_set_new(weight ? wfrom : from, store_policy_names[f], json_string(src));
        }
        json_object_set_new(o, "goal", json_string(e->goal));
        _cleanup_free_ char *gsrc = e->goal_from > 0 ? group_display(st, e->goal_from) : xstrdup("default");
        json_object_set_new(from, "goal", json_string(gsrc));
        json_object_set_new(from, "weights", wfrom);
        json_object_set_new(o, "weights", w);
        json_object_set_new(o, "inherited_from", from);
        return o;
}

static json_t *policy_json(Store *st, int64_t group_id) {
        StoreGroupPolicy own;
        if (store_policy_get(st, group_id, &own) < 0)
                return NULL;
        _cleanup_free_ StoreGroupPolicy *all = NULL;
        int n = store_policy_all(st, &all);
        if (n < 0)
                return NULL;
        StoreEffectivePolicy e;
        store_policy_resolve(all, (size_t) n, group_id, &e);
        _cleanup_free_ char *path = group_display(st, group_id);
        return json_pack("{s:I, s:s, s:o, s:o}", "group_id", (json_int_t) group_id, "group_path", path,
                         "own", policy_own_json(&own), "effective", policy_effective_json(st, &e));
}

static void h_policy_get(Req *r) {
        int64_t id = r->id[0];
        if (!api_allowed(r, ACT_READ, OBJ_GROUP, 0, id))
                return reply_error(r, 404, "not_found", NULL, "There is no host group with id %lld.", (long long) id);
        json_t *p = policy_json(r->api->st, id);
        if (!p)
                return reply_error(r, 404, "not_found", NULL, "There is no host group with id %lld.", (long long) id);
        reply(r, 200, p);
}

/* Reads one policy number from o[key] into p (null clears). field names
 * the field in errors. false (4xx sent) when it is not a number in range. */
static bool policy_number(Req *r, json_t *o, const char *key, const char *field, int f, StoreGroupPolicy *p) {
        json_t *v = json_object_get(o, key);
        if (!v)
                return true;
        if (json_is_null(v)) {
                p->set[f] = false;
                return true;
        }
        double x = json_number_value(v);
        if (!json_is_number(v) || !isfinite(x)) {
                reply_error(r, 400, "invalid_argument", field, "Field '%s' must be a number or null (null inherits from the parent group).", field);
                return false;
        }
        if (x < 0 || x > POLICY_MAX[f]) {
                reply_error(r, 422, "out_of_range", field, "Field '%s' must be from 0 to %g%s%s; %g was given.", field, POLICY_MAX[f],
                            POLICY_UNIT[f][0] ? " " : "", POLICY_UNIT[f], x);
                return false;
        }
        p->set[f] = true;
        p->value[f] = x;
        return true;
}

static void h_policy_put(Req *r) {
        static const char *const fields[] = { "cpu_pct", "memory_mib", "disk_gib", "disk_io_pct", "network_pct", "goal", "weights", NULL };
        int64_t id = r->id[0];
        Store *st = r->api->st;
        if (!req_body_fields(r, fields))
                return;
        _cleanup_json_ json_t *g = store_group_get(st, id);
        if (!g || !api_allowed(r, ACT_READ, OBJ_GROUP, 0, id))
                return reply_error(r, 404, "not_found", NULL, "There is no host group with id %lld.", (long long) id);
        if (!api_allowed(r, ACT_UPDATE, OBJ_GROUP, 0, id))
                return deny(r, "change the placement policy of", "host group", id, jget_str(g, "path")[0] ? jget_str(g, "path") : STORE_ROOT_GROUP_NAME);
        StoreGroupPolicy p;
        if (store_policy_get(st, id, &p) < 0)
                return reply_error(r, 404, "not_found", NULL, "There is no host group with id %lld.", (long long) id);
        json_t *body = r->json ? r->json : NULL;
        if (body)
                for (int f = 0; f < STORE_POLICY_W_CPU; f++)
                        if (!policy_number(r, body, store_policy_names[f], store_policy_names[f], f, &p))
                                return;
        json_t *goal = body ? json_object_get(body, "goal") : NULL;
        if (goal && json_is_null(goal))
                p.goal[0] = 0;
        else if (goal) {
                const char *s = json_string_value(goal);
                if (!s || (!streq(s, "load-balancing") && !streq(s, "resource-maximization")))
                        return reply_error(r, 400, "invalid_argument", "goal",
                                           "Field 'goal' must be \"load-balancing\", \"resource-maximization\" or null (inherit).");
                snprintf(p.goal, sizeof p.goal, "%s", s);
        }
        json_t *w = body ? json_object_get(body, "weights") : NULL;
        if (w && json_is_null(w)) {
                for (int f = STORE_POLICY_W_CPU; f < STORE_POLICY__COUNT; f++)
                        p.set[f] = false;
        } else if (w) {
                if (!json_is_object(w))
                        return reply_error(r, 400, "invalid_argument", "weights",
                                           "Field 'weights' must be an object such as {\"cpu\": 1, \"memory\": 2} or null.");
                const char *k;
                json_t *v;
                json_object_foreach(w, k, v) {
                        bool known = false;
                        for (size_t i = 0; i < ELEMENTSOF(WEIGHT_NAMES); i++)
                                known = known || streq(k, WEIGHT_NAMES[i]);
                        if (!known)
                                return reply_error(r, 400, "invalid_argument", "weights",
                                                   "Field 'weights' has an unknown resource '%.64s'; the resources are cpu, memory, disk, disk_io, network.", k);
                }
                for (int f = STORE_POLICY_W_CPU; f < STORE_POLICY__COUNT; f++) {
                        char field[32];
                        snprintf(field, sizeof field, "weights.%s", store_policy_names[f]);
                        if (!policy_number(r, w, store_policy_names[f], field, f, &p))
                                return;
                }
        }
        /* The weights that would apply here must leave something to rate. */
        _cleanup_free_ StoreGroupPolicy *all = NULL;
        int n = store_policy_all(st, &all);
        if (n < 0)
                return reply_store_error(r, n, "the placement policy");
        for (int i = 0; i < n; i++)
                if (all[i].group_id == id) all[i] = p;
        StoreEffectivePolicy e;
        store_policy_resolve(all, (size_t) n, id, &e);
        bool any = false;
        for (int f = STORE_POLICY_W_CPU; f < STORE_POLICY__COUNT; f++)
                any = any || e.value[f] > 0;
        if (!any)
                return reply_error(r, 422, "invalid_argument", "weights", "At least one of the weights that apply to host group '%s' must be above 0.",
                                   jget_str(g, "path")[0] ? jget_str(g, "path") : STORE_ROOT_GROUP_NAME);
        int err = store_policy_set(st, &p);
        if (err < 0)
                return reply_store_error(r, err, "the placement policy");
        _cleanup_free_ char *detail = r->json ? json_dumps(r->json, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        audit(r, "group.set-policy", "group", id, jget_str(g, "path")[0] ? jget_str(g, "path") : STORE_ROOT_GROUP_NAME, detail, "ok");
        reply(r, 200, policy_json(st, id));
}

/* ------------------------------------------------------------------ */
/* ratings */

/* The demand of a ratings request, from the query (GET) or the body. */
typedef struct {
        int64_t cpus, memory_mib, disk_bytes;
        const char *group, *goal, *name;
} RateArgs;

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
            !req_query_int(r, "disk_bytes", 0, 0, VM_DISK_MAX_BYTES, &a->disk_bytes))
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
        static const char *const fields[] = { "cpus", "memory_mib", "disk_size", "disk_bytes", "group", "goal", "name", NULL };
        const char *ds = NULL;
        a->cpus = 1;
        a->memory_mib = 512;
        if (!req_body_fields(r, fields) || !body_int(r, "cpus", false, 1, VM_CPUS_MAX, &a->cpus) ||
            !body_int(r, "memory_mib", false, VM_MEMORY_MIN_MIB, VM_MEMORY_MAX_MIB, &a->memory_mib) ||
            !body_int(r, "disk_bytes", false, 0, VM_DISK_MAX_BYTES, &a->disk_bytes) ||
            !body_string(r, "disk_size", false, 32, &ds) || !body_string(r, "group", false, 1000, &a->group) ||
            !body_string(r, "goal", false, 64, &a->goal) || !body_name(r, "name", false, &a->name))
                return false;
        if (ds && !disk_size_of(r, ds, &a->disk_bytes))
                return false;
        return true;
}

static void rate(Req *r, const RateArgs *a) {
        Store *st = r->api->st;
        if (a->goal && !streq(a->goal, "load-balancing") && !streq(a->goal, "resource-maximization"))
                return reply_error(r, 400, "invalid_argument", "goal", "Field 'goal' must be \"load-balancing\" or \"resource-maximization\".");
        if (a->name && name_invalid_reason(a->name))
                return reply_error(r, 400, "invalid_argument", "name", "Field 'name' (\"%.64s\") %s.", a->name, name_invalid_reason(a->name));
        int64_t group_id = STORE_ROOT_GROUP_ID;
        if (a->group && !group_of(r, "group", a->group, &group_id))
                return;
        if (!api_allowed(r, ACT_READ, OBJ_GROUP, 0, group_id)) {
                _cleanup_free_ char *gp = group_display(st, group_id);
                return deny(r, "rate the hosts of", "host group", group_id, gp);
        }
        int64_t vm_id = 0;
        if (a->name && store_vm_find(st, a->name, &vm_id) < 0)
                vm_id = 0;
        PlacementDemand d = {
                .cpus = (unsigned) a->cpus, .memory_mib = (uint64_t) a->memory_mib, .disk_bytes = (uint64_t) a->disk_bytes,
                .vm_id = vm_id, .vm_name = a->name, .goal = a->goal,
        };
        /* A delegated administrator rates only the hosts it manages: no
         * other host is listed or named in a reason. */
        if (r->subj.role == ROLE_DELEGATED_ADMIN) {
                d.scope = r->subj.scopes;
                d.n_scope = r->subj.n_scopes;
        }
        PlacementRating *rt = NULL;
        int n = placement_rate(st, group_id, &d, &rt);
        if (n == -ENOENT)
                return reply_error(r, 422, "not_found", "group", "There is no host group '%.200s'.", a->group ? a->group : "");
        if (n < 0) {
                free(rt);
                return reply_error(r, 500, "internal", NULL, "Cannot rate the hosts (error %d).", n);
        }
        json_t *arr = json_array();
        for (int i = 0; i < n; i++)
                json_array_append_new(arr, json_pack("{s:I, s:s, s:f, s:f, s:s}", "host_id", (json_int_t) rt[i].host_id,
                                                     "host_name", rt[i].host_name, "rating", round(rt[i].rating * 100) / 100,
                                                     "stars", rt[i].stars, "reason", rt[i].reason));
        json_t *best = n > 0 && rt[0].rating > 0 ? json_integer(rt[0].host_id) : json_null();
        free(rt);
        _cleanup_free_ char *gp = group_display(st, group_id);
        StoreEffectivePolicy e;
        _cleanup_free_ StoreGroupPolicy *all = NULL;
        int np = store_policy_all(st, &all);
        store_policy_resolve(all, np > 0 ? (size_t) np : 0, group_id, &e);
        reply(r, 200, json_pack("{s:o, s:o, s:s, s:s}", "items", arr, "best_host_id", best, "group", gp,
                                "goal", a->goal ? a->goal : e.goal));
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

static bool rules_readable(Req *r) {
        return r->subj.role != ROLE_SELF_SERVICE;
}

/* Only those who may change VMs' placement write rules: never the
 * read-only role (nor self-service). */
static bool rules_writable(Req *r) {
        return r->subj.role == ROLE_ADMIN || r->subj.role == ROLE_DELEGATED_ADMIN;
}

/* Whether the caller may read the VM named name. */
static bool vm_name_readable(Req *r, const char *name) {
        int64_t id;
        _cleanup_json_ json_t *vm = NULL;
        if (!name || store_vm_find(r->api->st, name, &id) < 0 || !(vm = store_vm_get_json(r->api->st, id)))
                return false;
        return api_allowed(r, ACT_READ, OBJ_VM, json_integer_value(json_object_get(vm, "owner_id")),
                           json_integer_value(json_object_get(vm, "group_id")));
}

/* The rule as the caller may see it, or NULL (rule consumed either way):
 * administrators and the read-only role see every rule; a delegated
 * administrator only rules that hold a VM it can see, listing only those
 * VMs, so no rule or VM name outside its scope shows. */
static json_t *rule_for_caller(Req *r, json_t *rule) {
        if (!rule || !rules_readable(r)) {
                json_decref(rule);
                return NULL;
        }
        if (r->subj.role == ROLE_ADMIN || r->subj.role == ROLE_READ_ONLY)
                return rule;
        json_t *mine = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(rule, "vms"), i, v)
                if (vm_name_readable(r, json_string_value(v)))
                        json_array_append(mine, v);
        if (json_array_size(mine) == 0) {
                json_decref(mine);
                json_decref(rule);
                return NULL;
        }
        /* A copy: the caller may hold the whole rule to decide on. */
        json_t *out = json_copy(rule);
        json_decref(rule);
        json_object_set_new(out, "vms", mine);
        return out;
}

/* Resolves field "vms" (an array of VM names) into ids the caller may
 * change. false with a 4xx sent. */
static bool rule_vms(Req *r, int64_t **ret, size_t *ret_n) {
        json_t *arr = json_object_get(r->json, "vms");
        if (!json_is_array(arr) || json_array_size(arr) > RULE_VMS_MAX) {
                reply_error(r, 400, "invalid_argument", "vms", "Field 'vms' must be an array of at most %d VM names.", RULE_VMS_MAX);
                return false;
        }
        int64_t *ids = xcalloc(json_array_size(arr) + 1, sizeof *ids);
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
                const char *name = json_string_value(v);
                _cleanup_json_ json_t *vm = NULL;
                if (!name || name_invalid_reason(name)) {
                        free(ids);
                        reply_error(r, 400, "invalid_argument", "vms", "Field 'vms' must hold VM names; item %zu is not one.", i + 1);
                        return false;
                }
                if (store_vm_find(r->api->st, name, &ids[i]) < 0 || !(vm = store_vm_get_json(r->api->st, ids[i])) ||
                    !api_allowed(r, ACT_READ, OBJ_VM, json_integer_value(json_object_get(vm, "owner_id")),
                                 json_integer_value(json_object_get(vm, "group_id")))) {
                        free(ids);
                        reply_error(r, 422, "not_found", "vms", "There is no VM named '%s'.", name);
                        return false;
                }
                if (!api_allowed(r, ACT_UPDATE, OBJ_VM, json_integer_value(json_object_get(vm, "owner_id")),
                                 json_integer_value(json_object_get(vm, "group_id")))) {
                        int64_t vm_id = ids[i];
                        free(ids);
                        deny(r, "add a placement rule to", "VM", vm_id, name);
                        return false;
                }
        }
        *ret = ids;
        *ret_n = json_array_size(arr);
        return true;
}

/* Whether the caller may change every VM the rule holds now. */
static bool rule_members_changeable(Req *r, json_t *rule) {
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(rule, "vms"), i, v) {
                int64_t id;
                _cleanup_json_ json_t *vm = NULL;
                if (!json_is_string(v) || store_vm_find(r->api->st, json_string_value(v), &id) < 0 ||
                    !(vm = store_vm_get_json(r->api->st, id)))
                        continue;
                if (!api_allowed(r, ACT_UPDATE, OBJ_VM, json_integer_value(json_object_get(vm, "owner_id")),
                                 json_integer_value(json_object_get(vm, "group_id"))))
                        return false;
        }
        return true;
}

static void h_rules_list(Req *r) {
        if (!rules_readable(r))
                return deny(r, "list", "placement rules", 0, NULL);
        _cleanup_json_ json_t *arr = store_rule_list(r->api->st);
        json_t *out = json_array();
        size_t i;
        json_t *it;
        json_array_foreach(arr, i, it) {
                json_t *rule = rule_for_caller(r, json_incref(it));
                if (rule)
                        json_array_append_new(out, rule);
        }
        reply(r, 200, json_pack("{s:o}", "items", out));
}

/* 409 for a rule name that is taken; the rule is named as existing only to
 * a caller who may see it (rule_for_caller), as VM names are. */
static void reply_rule_name_taken(Req *r, const char *name, int64_t id) {
        _cleanup_json_ json_t *seen = id > 0 ? rule_for_caller(r, store_rule_get_json(r->api->st, id)) : NULL;
        if (seen)
                return reply_error(r, 409, "conflict", "name", "A placement rule named '%s' already exists.", name);
        reply_error(r, 409, "conflict", "name", "The placement rule name '%s' cannot be used; choose another.", name);
}

static void h_rules_create(Req *r) {
        static const char *const fields[] = { "name", "kind", "vms", NULL };
        const char *name = NULL, *kind = NULL;
        /* A rule constrains where its VMs run: changing VMs, which a
         * read-only user may do nowhere, even for a rule without VMs. */
        if (!rules_writable(r) || !api_allowed_some(r, ACT_UPDATE, OBJ_VM))
                return deny(r, "create", "placement rule", 0, NULL);
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &name) || !body_string(r, "kind", true, 32, &kind))
                return;
        if (!streq(kind, "anti-affinity") && !streq(kind, "affinity"))
                return reply_error(r, 400, "invalid_argument", "kind", "Field 'kind' must be \"anti-affinity\" or \"affinity\".");
        if (!json_object_get(r->json, "vms"))
                return reply_error(r, 400, "invalid_argument", "vms", "Field 'vms' is required (the names of the rule's VMs).");
        int64_t id;
        if (store_rule_find(r->api->st, name, &id) == 0)
                return reply_rule_name_taken(r, name, id);
        _cleanup_free_ int64_t *ids = NULL;
        size_t n = 0;
        if (!rule_vms(r, &ids, &n))
                return;
        int e = store_rule_insert(r->api->st, name, kind, ids, n, &id);
        if (e == -EEXIST)
                return reply_rule_name_taken(r, name, store_rule_find(r->api->st, name, &id) == 0 ? id : 0);
        if (e < 0)
                return reply_store_error(r, e, "the placement rule");
        audit(r, "rule.create", "rule", id, name, kind, "ok");
        json_t *made = store_rule_get_json(r->api->st, id);
        json_t *shown = r->subj.role == ROLE_ADMIN ? made : rule_for_caller(r, json_incref(made));
        if (shown != made)
                json_decref(made);
        reply(r, 201, shown ? shown : json_pack("{s:I, s:s, s:s, s:[]}", "id", (json_int_t) id, "name", name, "kind", kind, "vms"));
}

static void h_rule_get(Req *r) {
        json_t *rule = rule_for_caller(r, store_rule_get_json(r->api->st, r->id[0]));
        if (!rule)
                return reply_error(r, 404, "not_found", NULL, "There is no placement rule with id %lld.", (long long) r->id[0]);
        reply(r, 200, rule);
}

static void h_rule_update(Req *r) {
        static const char *const fields[] = { "vms", NULL };
        if (!req_body_fields(r, fields))
                return;
        _cleanup_json_ json_t *rule = store_rule_get_json(r->api->st, r->id[0]);
        _cleanup_json_ json_t *seen = rule_for_caller(r, json_incref(rule));
        if (!rule || !seen)
                return reply_error(r, 404, "not_found", NULL, "There is no placement rule with id %lld.", (long long) r->id[0]);
        if (!rules_writable(r))
                return deny(r, "change", "placement rule", r->id[0], jget_str(rule, "name"));
        if (!r->json || !json_object_get(r->json, "vms"))
                return reply_error(r, 400, "invalid_argument", "vms", "Field 'vms' is required (the new list of the rule's VMs).");
        if (!api_allowed_some(r, ACT_UPDATE, OBJ_VM) || !rule_members_changeable(r, rule))
                return deny(r, "change", "placement rule", r->id[0], jget_str(rule, "name"));
        _cleanup_free_ int64_t *ids = NULL;
        size_t n = 0;
        if (!rule_vms(r, &ids, &n))
                return;
        int e = store_rule_set_members(r->api->st, r->id[0], ids, n);
        if (e < 0)
                return reply_store_error(r, e, "the placement rule");
        audit(r, "rule.update", "rule", r->id[0], jget_str(rule, "name"), NULL, "ok");
        json_t *after = rule_for_caller(r, store_rule_get_json(r->api->st, r->id[0]));
        reply(r, 200, after ? after : json_pack("{s:I, s:s, s:s, s:[]}", "id", (json_int_t) r->id[0], "name", jget_str(rule, "name"),
                                                "kind", jget_str(rule, "kind"), "vms"));
}

static void h_rule_delete(Req *r) {
        _cleanup_json_ json_t *rule = store_rule_get_json(r->api->st, r->id[0]);
        _cleanup_json_ json_t *seen = rule_for_caller(r, json_incref(rule));
        if (!rule || !seen)
                return reply_error(r, 404, "not_found", NULL, "There is no placement rule with id %lld.", (long long) r->id[0]);
        if (!rules_writable(r) || !rule_members_changeable(r, rule))
                return deny(r, "delete", "placement rule", r->id[0], jget_str(rule, "name"));
        int e = store_rule_delete(r->api->st, r->id[0]);
        if (e < 0)
                return reply_store_error(r, e, "the placement rule");
        audit(r, "rule.delete", "rule", r->id[0], jget_str(rule, "name"), NULL, "ok");
        reply(r, 204, NULL);
}

/* ------------------------------------------------------------------ */
/* consolidation plan (P2V assessment) */

#define CONSOLIDATE_SERVERS_MAX 100000

/* Reads a non-negative finite number o[key] (absent: 0) into *ret; field
 * names it in errors. */
static bool plan_number(Req *r, json_t *o, const char *key, const char *field, double max, double *ret) {
        json_t *v = json_object_get(o, key);
        if (!v || json_is_null(v)) {
                *ret = 0;
                return true;
        }
        double x = json_number_value(v);
        if (!json_is_number(v) || !isfinite(x)) {
                reply_error(r, 400, "invalid_argument", field, "Field '%s' must be a number.", field);
                return false;
        }
        if (x < 0 || x > max) {
                reply_error(r, 422, "out_of_range", field, "Field '%s' must be from 0 to %g; %g was given.", field, max, x);
                return false;
        }
        *ret = x;
        return true;
}

/* The resource keys of a server or host model, by PlaceResource. */
static const char *const PLAN_KEYS[PLACE_R__COUNT] = { "cpu", "memory_mib", "disk_gib", "disk_iops", "network_mbps" };

/* Every key of o (the object at field) must be in allowed: false and a 400
 * naming the first unknown one ("host.memory") otherwise. */
static bool object_fields(Req *r, json_t *o, const char *field, const char *const *allowed) {
        const char *key;
        json_t *v;
        json_object_foreach(o, key, v) {
                bool ok = false;
                for (const char *const *a = allowed; *a && !ok; a++)
                        ok = streq(*a, key);
                if (!ok) {
                        char name[160];
                        snprintf(name, sizeof name, "%s.%.64s", field, key);
                        reply_error(r, 400, "invalid_argument", name, "Unknown field '%s'.", name);
                        return false;
                }
        }
        return true;
}

static void h_consolidation(Req *r) {
        static const char *const fields[] = { "host", "servers", NULL };
        static const char *const reserve_keys[] = { "cpu_pct", "memory_mib", "disk_gib", "disk_io_pct", "network_pct" };
        if (!req_body_fields(r, fields))
                return;
        if (r->subj.role == ROLE_SELF_SERVICE)
                return deny(r, "plan", "consolidation", 0, NULL);
        json_t *host = r->json ? json_object_get(r->json, "host") : NULL;
        json_t *servers = r->json ? json_object_get(r->json, "servers") : NULL;
        if (!json_is_object(host))
                return reply_error(r, 400, "invalid_argument", "host",
                                   "Field 'host' is required: the host model, e.g. {\"cpus\": 16, \"memory_mib\": 131072}.");
        static const char *const host_keys[] = { "cpus", "memory_mib", "disk_gib", "disk_iops", "network_mbps", "reserve", NULL };
        static const char *const server_keys[] = { "name", "cpu", "memory_mib", "disk_gib", "disk_iops", "network_mbps", NULL };
        static const char *const reserve_fields[] = { "cpu_pct", "memory_mib", "disk_gib", "disk_io_pct", "network_pct", NULL };
        if (!object_fields(r, host, "host", host_keys))
                return;
        json_t *hres = json_object_get(host, "reserve");
        if (json_is_object(hres) && !object_fields(r, hres, "host.reserve", reserve_fields))
                return;
        if (!json_is_array(servers) || json_array_size(servers) == 0 || json_array_size(servers) > CONSOLIDATE_SERVERS_MAX)
                return reply_error(r, 400, "invalid_argument", "servers", "Field 'servers' must be an array of 1 to %d servers.",
                                   CONSOLIDATE_SERVERS_MAX);
        PlaceHostModel model = {0};
        double cpus;
        if (!plan_number(r, host, "cpus", "host.cpus", 1e6, &cpus))
                return;
        model.cap[PLACE_R_CPU] = cpus * 100.0;
        for (int k = PLACE_R_MEMORY; k < PLACE_R__COUNT; k++) {
                char field[48];
                snprintf(field, sizeof field, "host.%s", PLAN_KEYS[k]);
                if (!plan_number(r, host, PLAN_KEYS[k], field, 1e12, &model.cap[k]))
                        return;
        }
        /* The reserve: given, else the root group's effective reserves. */
        _cleanup_free_ StoreGroupPolicy *all = NULL;
        int np = store_policy_all(r->api->st, &all);
        StoreEffectivePolicy e;
        store_policy_resolve(all, np > 0 ? (size_t) np : 0, STORE_ROOT_GROUP_ID, &e);
        double rv[5];
        for (int k = 0; k < 5; k++)
                rv[k] = e.value[STORE_POLICY_CPU_PCT + k];
        json_t *res = json_object_get(host, "reserve");
        if (res && !json_is_null(res)) {
                if (!json_is_object(res))
                        return reply_error(r, 400, "invalid_argument", "host.reserve", "Field 'host.reserve' must be an object.");
                for (int k = 0; k < 5; k++) {
                        char field[48];
                        snprintf(field, sizeof field, "host.reserve.%s", reserve_keys[k]);
                        if (json_object_get(res, reserve_keys[k]) && !plan_number(r, res, reserve_keys[k], field, k == 0 || k >= 3 ? 100 : 1e12, &rv[k]))
                                return;
                }
        }
        model.reserve = (PlaceReserve) { .cpu_pct = rv[0], .memory_mib = rv[1], .disk_gib = rv[2], .disk_io_pct = rv[3], .network_pct = rv[4] };
        /* Percent reserves apply to IOPS and Mbit/s capacities as given. */
        size_t n = json_array_size(servers);
        _cleanup_free_ PlaceServer *sv = xcalloc(n, sizeof *sv);
        _cleanup_free_ ssize_t *host_of = xcalloc(n, sizeof *host_of);
        for (size_t i = 0; i < n; i++) {
                json_t *o = json_array_get(servers, i);
                if (!json_is_object(o))
                        return reply_error(r, 400, "invalid_argument", "servers", "Server %zu must be an object.", i + 1);
                char sfield[48];
                snprintf(sfield, sizeof sfield, "servers[%zu]", i);
                if (!object_fields(r, o, sfield, server_keys))
                        return;
                for (int k = 0; k < PLACE_R__COUNT; k++) {
                        char field[64];
                        snprintf(field, sizeof field, "servers[%zu].%s", i, PLAN_KEYS[k]);
                        if (!plan_number(r, o, PLAN_KEYS[k], field, 1e12, &sv[i].demand[k]))
                                return;
                }
                json_t *nm = json_object_get(o, "name");
                if (nm && !json_is_string(nm))
                        return reply_error(r, 400, "invalid_argument", "servers", "The name of server %zu must be a string.", i + 1);
        }
        PlaceConsolidation plan;
        if (place_consolidate(sv, n, &model, host_of, &plan) < 0)
                return reply_error(r, 422, "invalid_argument", "servers", "The servers or the host model hold figures that cannot be planned.");
        json_t *hosts = json_array(), *unplaceable = json_array(), *assignment = json_array();
        for (size_t h = 0; h < plan.n_hosts; h++) {
                json_t *used = json_object();
                double sum[PLACE_R__COUNT] = {0};
                json_t *names = json_array();
                for (size_t i = 0; i < n; i++)
                        if (host_of[i] == (ssize_t) h) {
                                const char *nm = json_string_value(json_object_get(json_array_get(servers, i), "name"));
                                json_array_append_new(names, nm ? json_string(nm) : json_sprintf("server-%zu", i + 1));
                                for (int k = 0; k < PLACE_R__COUNT; k++)
                                        sum[k] += sv[i].demand[k];
                        }
                for (int k = 0; k < PLACE_R__COUNT; k++)
                        json_object_set_new(used, PLAN_KEYS[k], json_real(round(sum[k] * 100) / 100));
                json_array_append_new(hosts, json_pack("{s:I, s:o, s:o}", "host", (json_int_t) h + 1, "servers", names, "used", used));
        }
        for (size_t i = 0; i < n; i++) {
                const char *nm = json_string_value(json_object_get(json_array_get(servers, i), "name"));
                json_t *name = nm ? json_string(nm) : json_sprintf("server-%zu", i + 1);
                if (host_of[i] < 0)
                        json_array_append(unplaceable, name);
                json_array_append_new(assignment, json_pack("{s:o, s:o}", "server", name,
                                                            "host", host_of[i] < 0 ? json_null() : json_integer(host_of[i] + 1)));
        }
        reply(r, 200, json_pack("{s:I, s:I, s:o, s:o, s:o}", "hosts_used", (json_int_t) plan.n_hosts, "lower_bound",
                                (json_int_t) plan.lower_bound, "unplaceable", unplaceable, "hosts", hosts, "assignment", assignment));
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

/* ------------------------------------------------------------------ */
/* placement of a new VM (POST /api/v1/vms), called from h_vms_create
 * (api-handlers.c) with the placement lock held (placement_lock()): the
 * choice or the check and the insert of the VM's row are one step. */

/* Picks the best host for a new VM in the group at path group (NULL: the
 * root). true with *ret_host_id and *ret_placement ({"chosen_by":
 * "placement", "group", "rating", "stars", "host"}, a new reference);
 * false with the reply sent: 4xx for a bad or unknown group, 409
 * "no_capacity" with every host's reason when no host can take the VM. */
bool api_place_new_vm(Req *r, const char *group, const char *name, int64_t cpus, int64_t memory_mib, int64_t disk_bytes,
                      int64_t *ret_host_id, json_t **ret_placement) {
        Store *st = r->api->st;
        int64_t group_id = STORE_ROOT_GROUP_ID;
        if (group && !group_of(r, "group", group, &group_id))
                return false;
        PlacementDemand d = {
                .cpus = (unsigned) cpus, .memory_mib = (uint64_t) memory_mib, .disk_bytes = (uint64_t) disk_bytes, .vm_name = name,
        };
        /* A delegated administrator is placed inside the groups it manages,
         * never across the whole estate, and hears of no other host. */
        bool many = false;
        if (r->subj.role == ROLE_DELEGATED_ADMIN) {
                d.scope = r->subj.scopes;
                d.n_scope = r->subj.n_scopes;
                if (!group && d.n_scope == 1)
                        group_id = d.scope[0];
                many = !group && d.n_scope > 1;
        }
        _cleanup_free_ char *gp = many ? xstrdup("(the groups you manage)") : group_display(st, group_id);
        PlacementRating *rt = NULL;
        int n = d.n_scope == 0 && r->subj.role == ROLE_DELEGATED_ADMIN ? 0 : placement_rate(st, group_id, &d, &rt);
        if (n < 0) {
                free(rt);
                reply_error(r, 500, "internal", NULL, "Cannot rate the hosts of group '%s' for VM '%s' (error %d).", gp, name, n);
                return false;
        }
        if (n == 0 || rt[0].rating <= 0) {
                StrBuf b = {0};
                if (n == 0)
                        strbuf_append(&b, "the group has no hosts");
                for (int i = 0; i < n; i++)
                        strbuf_printf(&b, "%shost '%s': %s", i ? "; " : "", rt[i].host_name, rt[i].reason);
                free(rt);
                char disk[48] = "";
                if (disk_bytes > 0)
                        snprintf(disk, sizeof disk, " and a %llu GiB disk", (unsigned long long) ((disk_bytes + (1LL << 30) - 1) >> 30));
                reply_error(r, 409, "no_capacity", NULL,
                            "Cannot place VM '%s': no host in group '%s' can take %lld vCPUs, %lld MiB of memory%s (%.700s).",
                            name, gp, (long long) cpus, (long long) memory_mib, disk, b.s ? b.s : "");
                strbuf_free(&b);
                return false;
        }
        *ret_host_id = rt[0].host_id;
        *ret_placement = json_pack("{s:s, s:s, s:s, s:f, s:f}", "chosen_by", "placement", "group", gp, "host", rt[0].host_name,
                                   "rating", round(rt[0].rating * 100) / 100, "stars", rt[0].stars);
        free(rt);
        return true;
}

/* Checks that host h, named by the caller, has the memory for a new VM:
 * memory is a hard requirement. true when it has, or when force is set
 * (the caller checked that only an administrator sets it); false with 422
 * "no_capacity" and the placement's reason sent otherwise. */
bool api_place_check_host(Req *r, const StoreHost *h, const char *name, int64_t cpus, int64_t memory_mib, int64_t disk_bytes,
                          bool force) {
        PlacementDemand d = {
                .cpus = (unsigned) cpus, .memory_mib = (uint64_t) memory_mib, .disk_bytes = (uint64_t) disk_bytes, .vm_name = name,
        };
        PlacementRating *rt = NULL;
        int n = placement_rate(r->api->st, h->group_id, &d, &rt);
        if (n < 0) {
                free(rt);
                reply_error(r, 500, "internal", NULL, "Cannot rate host '%s' for VM '%s' (error %d).", h->name, name, n);
                return false;
        }
        const PlacementRating *me = NULL;
        for (int i = 0; i < n && !me; i++)
                if (rt[i].host_id == h->id)
                        me = &rt[i];
        bool short_of_memory = me && (me->why & PLACE_WHY_MEMORY);
        if (short_of_memory && !force)
                reply_error(r, 422, "no_capacity", "host",
                            "Cannot create VM '%s' on host '%s': %s. An administrator may place it there anyway with \"force\": true"
                            " (CLI --force).", name, h->name, me->reason);
        else if (short_of_memory)
                log_warn("VM '%s' is forced onto host '%s' by '%s' though %s", name, h->name, r->user.name, me->reason);
        free(rt);
        return !short_of_memory || force;
}
