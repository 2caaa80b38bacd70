/* The placement operations (placement.h): a host group's placement policy,
 * host ratings for a VM's demand, placement rules, the consolidation plan
 * and the choice or check of a host for a new VM. Each decides a request
 * from start to end — arguments, the caller's rights, the writes, the audit
 * — and fills an OpError (op/op.h) the API maps unchanged; the REST handlers
 * in api/api-place.c only parse and map. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "placement.h"
#include "place/place.h"
#include "store/store-place.h"

#define RULE_VMS_MAX 1000
#define CONSOLIDATE_SERVERS_MAX 100000

/* Upper bounds of the policy's numbers, by StorePolicyField. */
static const double POLICY_MAX[STORE_POLICY__COUNT] = { 100, 4 << 20, 1 << 20, 100, 100, 1000, 1000, 1000, 1000, 1000 };
static const char *const POLICY_UNIT[STORE_POLICY__COUNT] = { "percent", "MiB", "GiB", "percent", "percent",
                                                               "", "", "", "", "" };
static const char *const WEIGHT_NAMES[] = { "cpu", "memory", "disk", "disk_io", "network" };

/* "All Hosts" for the root, else the group's path; "" when it is gone. */
static char *group_display(Store *st, int64_t id) {
        _cleanup_json_ json_t *g = NULL;
        if (store_group_get(st, id, &g) < 0) /* gone, or a database error (logged): no name to show */
                return xstrdup("");
        return jget_str(g, "path")[0] ? xstrdup(jget_str(g, "path")) : xstrdup(STORE_ROOT_GROUP_NAME);
}

/* Resolves a group path given by the caller in field into *ret_id: 0, or
 * a 4xx in err. */
static int group_of(Store *st, const OpCaller *c, const char *field, const char *path, int64_t *ret_id, OpError *err) {
        const char *why = NULL;
        _cleanup_free_ char *norm = store_group_path_normalize(path, &why);
        if (!norm)
                return op_fail(err, 400, "invalid_argument", field,
                               "Field '%s' (\"%.200s\") is not a valid host-group path: a segment %s.", field, path, why);
        int r = store_group_find(st, norm, ret_id);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the host group");
        if (r < 0 || !op_allowed(st, c, ACT_READ, OBJ_GROUP, 0, *ret_id))
                return op_fail(err, 422, "not_found", field, "There is no host group '%.200s'.", path);
        return 0;
}

static bool vm_allowed(Store *st, const OpCaller *c, AuthAction a, json_t *vm) {
        return op_allowed(st, c, a, OBJ_VM, json_integer_value(json_object_get(vm, "owner_id")),
                          json_integer_value(json_object_get(vm, "group_id")));
}

/* ------------------------------------------------------------------ */
/* placement policy */

/* Numbers that are whole print as integers. */
static json_t *num(double v) {
        if (v == floor(v) && fabs(v) < 1e15)
                return json_integer((json_int_t) v);
        return json_real(v);
}

static json_t *policy_own_json(const StoreGroupPolicy *p) {
        json_t *o = json_object(), *w = json_object();
        for (int f = 0; f < STORE_POLICY__COUNT; f++)
                json_object_set_new(f < STORE_POLICY_W_CPU ? o : w, store_policy_names[f],
                                    p->set[f] ? num(p->value[f]) : json_null());
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

int placement_policy_get(Store *st, const OpCaller *c, int64_t group_id, json_t **ret, OpError *err) {
        json_t *p = op_allowed(st, c, ACT_READ, OBJ_GROUP, 0, group_id) ? policy_json(st, group_id) : NULL;
        if (!p)
                return op_fail(err, 404, "not_found", NULL, "There is no host group with id %lld.", (long long) group_id);
        *ret = p;
        return 0;
}

/* Reads one policy number from o[key] into p (null clears). field names
 * the field in errors: 0, or a 4xx in err. */
static int policy_number(const json_t *o, const char *key, const char *field, int f, StoreGroupPolicy *p, OpError *err) {
        json_t *v = json_object_get(o, key);
        if (!v)
                return 0;
        if (json_is_null(v)) {
                p->set[f] = false;
                return 0;
        }
        double x = json_number_value(v);
        if (!json_is_number(v) || !isfinite(x))
                return op_fail(err, 400, "invalid_argument", field,
                               "Field '%s' must be a number or null (null inherits from the parent group).", field);
        if (x < 0 || x > POLICY_MAX[f])
                return op_fail(err, 422, "out_of_range", field, "Field '%s' must be from 0 to %g%s%s; %g was given.", field,
                               POLICY_MAX[f], POLICY_UNIT[f][0] ? " " : "", POLICY_UNIT[f], x);
        p->set[f] = true;
        p->value[f] = x;
        return 0;
}

/* Applies the change's goal and weights to p: 0, or a 4xx in err. */
static int policy_goal_weights(const json_t *change, StoreGroupPolicy *p, OpError *err) {
        json_t *goal = json_object_get(change, "goal");
        if (goal && json_is_null(goal))
                p->goal[0] = 0;
        else if (goal) {
                const char *s = json_string_value(goal);
                if (!s || (!streq(s, "load-balancing") && !streq(s, "resource-maximization")))
                        return op_fail(err, 400, "invalid_argument", "goal",
                                       "Field 'goal' must be \"load-balancing\", \"resource-maximization\" or null (inherit).");
                snprintf(p->goal, sizeof p->goal, "%s", s);
        }
        json_t *w = json_object_get(change, "weights");
        if (w && json_is_null(w)) {
                for (int f = STORE_POLICY_W_CPU; f < STORE_POLICY__COUNT; f++)
                        p->set[f] = false;
                return 0;
        }
        if (!w)
                return 0;
        if (!json_is_object(w))
                return op_fail(err, 400, "invalid_argument", "weights",
                               "Field 'weights' must be an object such as {\"cpu\": 1, \"memory\": 2} or null.");
        const char *k;
        json_t *v;
        json_object_foreach(w, k, v) {
                bool known = false;
                for (size_t i = 0; i < ELEMENTSOF(WEIGHT_NAMES); i++)
                        known = known || streq(k, WEIGHT_NAMES[i]);
                if (!known)
                        return op_fail(err, 400, "invalid_argument", "weights",
                                       "Field 'weights' has an unknown resource '%.64s'; the resources are cpu, memory, disk, disk_io, network.", k);
        }
        for (int f = STORE_POLICY_W_CPU; f < STORE_POLICY__COUNT; f++) {
                char field[32];
                snprintf(field, sizeof field, "weights.%s", store_policy_names[f]);
                int r = policy_number(w, store_policy_names[f], field, f, p, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int placement_policy_set(Store *st, const OpCaller *c, int64_t group_id, const json_t *change, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *g = NULL;
        int gr = store_group_get(st, group_id, &g);
        if (gr < 0 && gr != -ENOENT)
                return op_fail_store(err, gr, "the host group");
        if (!g || !op_allowed(st, c, ACT_READ, OBJ_GROUP, 0, group_id))
                return op_fail(err, 404, "not_found", NULL, "There is no host group with id %lld.", (long long) group_id);
        const char *gname = jget_str(g, "path")[0] ? jget_str(g, "path") : STORE_ROOT_GROUP_NAME;
        if (!op_allowed(st, c, ACT_UPDATE, OBJ_GROUP, 0, group_id))
                return op_deny(st, c, err, "change the placement policy of", "host group", group_id, gname);
        StoreGroupPolicy p;
        int r = store_policy_get(st, group_id, &p);
        if (r == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no host group with id %lld.", (long long) group_id);
        if (r < 0)
                return op_fail_store(err, r, "the placement policy");
        if (change) {
                for (int f = 0; f < STORE_POLICY_W_CPU; f++)
                        if ((r = policy_number(change, store_policy_names[f], store_policy_names[f], f, &p, err)) < 0)
                                return r;
                if ((r = policy_goal_weights(change, &p, err)) < 0)
                        return r;
        }
        /* The weights that would apply here must leave something to rate. */
        _cleanup_free_ StoreGroupPolicy *all = NULL;
        int n = store_policy_all(st, &all);
        if (n < 0)
                return op_fail_store(err, n, "the placement policy");
        for (int i = 0; i < n; i++)
                if (all[i].group_id == group_id)
                        all[i] = p;
        StoreEffectivePolicy e;
        store_policy_resolve(all, (size_t) n, group_id, &e);
        bool any = false;
        for (int f = STORE_POLICY_W_CPU; f < STORE_POLICY__COUNT; f++)
                any = any || e.value[f] > 0;
        if (!any)
                return op_fail(err, 422, "invalid_argument", "weights",
                               "At least one of the weights that apply to host group '%s' must be above 0.", gname);
        r = store_policy_set(st, &p);
        if (r < 0)
                return op_fail_store(err, r, "the placement policy");
        _cleanup_free_ char *detail = change ? json_dumps(change, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        op_audit(st, c, "group.set-policy", "group", group_id, gname, detail, "ok");
        *ret = policy_json(st, group_id);
        return 0;
}

/* ------------------------------------------------------------------ */
/* ratings */

int placement_ratings(Store *st, const OpCaller *c, const PlacementRateSpec *s, json_t **ret, OpError *err) {
        if (s->goal && !streq(s->goal, "load-balancing") && !streq(s->goal, "resource-maximization"))
                return op_fail(err, 400, "invalid_argument", "goal", "Field 'goal' must be \"load-balancing\" or \"resource-maximization\".");
        if (s->name && name_invalid_reason(s->name))
                return op_fail(err, 400, "invalid_argument", "name", "Field 'name' (\"%.64s\") %s.", s->name,
                               name_invalid_reason(s->name));
        int64_t group_id = STORE_ROOT_GROUP_ID;
        int r;
        if (s->group && (r = group_of(st, c, "group", s->group, &group_id, err)) < 0)
                return r;
        if (!op_allowed(st, c, ACT_READ, OBJ_GROUP, 0, group_id)) {
                _cleanup_free_ char *gp = group_display(st, group_id);
                return op_deny(st, c, err, "rate the hosts of", "host group", group_id, gp);
        }
        int64_t vm_id = 0;
        if (s->name && store_vm_find(st, s->name, &vm_id) < 0)
                vm_id = 0;
        PlacementDemand d = {
                .cpus = (unsigned) s->cpus, .memory_mib = (uint64_t) s->memory_mib, .disk_bytes = (uint64_t) s->disk_bytes,
                .vm_id = vm_id, .vm_name = s->name, .goal = s->goal,
        };
        /* A delegated administrator rates only the hosts it manages: no
         * other host is listed or named in a reason. */
        if (c->subj.role == ROLE_DELEGATED_ADMIN) {
                d.scope = c->subj.scopes;
                d.n_scope = c->subj.n_scopes;
        }
        PlacementRating *rt = NULL;
        size_t total = 0;
        int n = placement_rate_top(st, group_id, &d, s->limit > 0 ? (size_t) s->limit : SIZE_MAX, &rt, &total);
        if (n == -ENOENT)
                return op_fail(err, 422, "not_found", "group", "There is no host group '%.200s'.", s->group ? s->group : "");
        if (n < 0) {
                free(rt);
                return op_fail(err, 500, "internal", NULL, "Cannot rate the hosts (error %d).", n);
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
        *ret = json_pack("{s:o, s:I, s:o, s:s, s:s}", "items", arr, "total", (json_int_t) total, "best_host_id", best, "group", gp,
                         "goal", s->goal ? s->goal : e.goal);
        return 0;
}

/* ------------------------------------------------------------------ */
/* rules */

static bool rules_readable(const OpCaller *c) {
        return c->subj.role != ROLE_SELF_SERVICE;
}

/* Only those who may change VMs' placement write rules: never the
 * read-only role (nor self-service). */
static bool rules_writable(const OpCaller *c) {
        return c->subj.role == ROLE_ADMIN || c->subj.role == ROLE_DELEGATED_ADMIN;
}

/* The VM named name (its JSON, a new reference), or NULL when there is none. */
static json_t *vm_named(Store *st, const char *name, int64_t *ret_id) {
        int64_t id;
        if (!name || store_vm_find(st, name, &id) < 0)
                return NULL;
        if (ret_id)
                *ret_id = id;
        json_t *v = NULL;
        (void) store_vm_get_json(st, id, &v); /* a database error (logged) reads as no VM */
        return v;
}

/* The rule as the caller may see it, or NULL (rule consumed either way):
 * administrators and the read-only role see every rule; a delegated
 * administrator only rules that hold a VM it can see, listing only those
 * VMs, so no rule or VM name outside its scope shows. */
static json_t *rule_for_caller(Store *st, const OpCaller *c, json_t *rule) {
        if (!rule || !rules_readable(c)) {
                json_decref(rule);
                return NULL;
        }
        if (c->subj.role == ROLE_ADMIN || c->subj.role == ROLE_READ_ONLY)
                return rule;
        json_t *mine = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(rule, "vms"), i, v) {
                _cleanup_json_ json_t *vm = vm_named(st, json_string_value(v), NULL);
                if (vm && vm_allowed(st, c, ACT_READ, vm))
                        json_array_append(mine, v);
        }
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

/* Resolves vms (an array of VM names) into ids the caller may change:
 * 0, or a 4xx in err. */
static int rule_vms(Store *st, const OpCaller *c, const json_t *arr, int64_t **ret, size_t *ret_n, OpError *err) {
        if (!json_is_array(arr) || json_array_size(arr) > RULE_VMS_MAX)
                return op_fail(err, 400, "invalid_argument", "vms", "Field 'vms' must be an array of at most %d VM names.", RULE_VMS_MAX);
        _cleanup_free_ int64_t *ids = xcalloc(json_array_size(arr) + 1, sizeof *ids);
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
                const char *name = json_string_value(v);
                if (!name || name_invalid_reason(name))
                        return op_fail(err, 400, "invalid_argument", "vms", "Field 'vms' must hold VM names; item %zu is not one.", i + 1);
                _cleanup_json_ json_t *vm = vm_named(st, name, &ids[i]);
                if (!vm || !vm_allowed(st, c, ACT_READ, vm))
                        return op_fail(err, 422, "not_found", "vms", "There is no VM named '%s'.", name);
                if (!vm_allowed(st, c, ACT_UPDATE, vm))
                        return op_deny(st, c, err, "add a placement rule to", "VM", ids[i], name);
        }
        *ret = steal_ptr(ids);
        *ret_n = json_array_size(arr);
        return 0;
}

/* Whether the caller may change every VM the rule holds now. */
static bool rule_members_changeable(Store *st, const OpCaller *c, json_t *rule) {
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(rule, "vms"), i, v) {
                _cleanup_json_ json_t *vm = json_is_string(v) ? vm_named(st, json_string_value(v), NULL) : NULL;
                if (vm && !vm_allowed(st, c, ACT_UPDATE, vm))
                        return false;
        }
        return true;
}

int placement_rule_list(Store *st, const OpCaller *c, json_t **ret, OpError *err) {
        if (!rules_readable(c))
                return op_deny(st, c, err, "list", "placement rules", 0, NULL);
        _cleanup_json_ json_t *arr = NULL;
        int r = store_rule_list(st, &arr);
        if (r < 0)
                return op_fail_store(err, r, "the placement rules");
        json_t *out = json_array();
        size_t i;
        json_t *it;
        json_array_foreach(arr, i, it) {
                json_t *rule = rule_for_caller(st, c, json_incref(it));
                if (rule)
                        json_array_append_new(out, rule);
        }
        *ret = json_pack("{s:o}", "items", out);
        return 0;
}

int placement_rule_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        json_t *rule = NULL;
        int r = store_rule_get_json(st, id, &rule);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the placement rule");
        rule = rule_for_caller(st, c, rule);
        if (!rule)
                return op_fail(err, 404, "not_found", NULL, "There is no placement rule with id %lld.", (long long) id);
        *ret = rule;
        return 0;
}

/* 409 for a rule name that is taken; the rule is named as existing only to
 * a caller who may see it (rule_for_caller), as VM names are. */
static int rule_name_taken(Store *st, const OpCaller *c, const char *name, int64_t id, OpError *err) {
        json_t *rule = NULL;
        if (id > 0)
                (void) store_rule_get_json(st, id, &rule); /* a database error (logged): named as not seen */
        _cleanup_json_ json_t *seen = rule_for_caller(st, c, rule);
        if (seen)
                return op_fail(err, 409, "conflict", "name", "A placement rule named '%s' already exists.", name);
        return op_fail(err, 409, "conflict", "name", "The placement rule name '%s' cannot be used; choose another.", name);
}

int placement_rule_may_create(Store *st, const OpCaller *c, OpError *err) {
        /* A rule constrains where its VMs run: changing VMs, which a
         * read-only user may do nowhere, even for a rule without VMs. */
        if (!rules_writable(c) || !op_allowed_some(c, ACT_UPDATE, OBJ_VM))
                return op_deny(st, c, err, "create", "placement rule", 0, NULL);
        return 0;
}

int placement_rule_create(Store *st, const OpCaller *c, const PlacementRuleSpec *s, json_t **ret, OpError *err) {
        int r = placement_rule_may_create(st, c, err);
        if (r < 0)
                return r;
        if (!s->kind || (!streq(s->kind, "anti-affinity") && !streq(s->kind, "affinity")))
                return op_fail(err, 400, "invalid_argument", "kind", "Field 'kind' must be \"anti-affinity\" or \"affinity\".");
        if (!s->vms)
                return op_fail(err, 400, "invalid_argument", "vms", "Field 'vms' is required (the names of the rule's VMs).");
        int64_t id;
        if (store_rule_find(st, s->name, &id) == 0)
                return rule_name_taken(st, c, s->name, id, err);
        _cleanup_free_ int64_t *ids = NULL;
        size_t n = 0;
        if ((r = rule_vms(st, c, s->vms, &ids, &n, err)) < 0)
                return r;
        r = store_rule_insert(st, s->name, s->kind, ids, n, &id);
        if (r == -EEXIST)
                return rule_name_taken(st, c, s->name, store_rule_find(st, s->name, &id) == 0 ? id : 0, err);
        if (r < 0)
                return op_fail_store(err, r, "the placement rule");
        op_audit(st, c, "rule.create", "rule", id, s->name, s->kind, "ok");
        json_t *made = NULL;
        (void) store_rule_get_json(st, id, &made); /* on a database error (logged), the fallback below */
        json_t *shown = c->subj.role == ROLE_ADMIN ? made : rule_for_caller(st, c, json_incref(made));
        if (shown != made)
                json_decref(made);
        *ret = shown ? shown : json_pack("{s:I, s:s, s:s, s:[]}", "id", (json_int_t) id, "name", s->name, "kind", s->kind, "vms");
        return 0;
}

int placement_rule_update(Store *st, const OpCaller *c, int64_t id, const json_t *vms, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *rule = NULL;
        int e = store_rule_get_json(st, id, &rule);
        if (e < 0 && e != -ENOENT)
                return op_fail_store(err, e, "the placement rule");
        _cleanup_json_ json_t *seen = rule_for_caller(st, c, json_incref(rule));
        if (!rule || !seen)
                return op_fail(err, 404, "not_found", NULL, "There is no placement rule with id %lld.", (long long) id);
        if (!rules_writable(c))
                return op_deny(st, c, err, "change", "placement rule", id, jget_str(rule, "name"));
        if (!vms)
                return op_fail(err, 400, "invalid_argument", "vms", "Field 'vms' is required (the new list of the rule's VMs).");
        if (!op_allowed_some(c, ACT_UPDATE, OBJ_VM) || !rule_members_changeable(st, c, rule))
                return op_deny(st, c, err, "change", "placement rule", id, jget_str(rule, "name"));
        _cleanup_free_ int64_t *ids = NULL;
        size_t n = 0;
        int r = rule_vms(st, c, vms, &ids, &n, err);
        if (r < 0)
                return r;
        r = store_rule_set_members(st, id, ids, n);
        if (r < 0)
                return op_fail_store(err, r, "the placement rule");
        op_audit(st, c, "rule.update", "rule", id, jget_str(rule, "name"), NULL, "ok");
        json_t *after = NULL;
        (void) store_rule_get_json(st, id, &after); /* on a database error (logged), the fallback below */
        after = rule_for_caller(st, c, after);
        *ret = after ? after : json_pack("{s:I, s:s, s:s, s:[]}", "id", (json_int_t) id, "name", jget_str(rule, "name"),
                                         "kind", jget_str(rule, "kind"), "vms");
        return 0;
}

int placement_rule_delete(Store *st, const OpCaller *c, int64_t id, OpError *err) {
        _cleanup_json_ json_t *rule = NULL;
        int e = store_rule_get_json(st, id, &rule);
        if (e < 0 && e != -ENOENT)
                return op_fail_store(err, e, "the placement rule");
        _cleanup_json_ json_t *seen = rule_for_caller(st, c, json_incref(rule));
        if (!rule || !seen)
                return op_fail(err, 404, "not_found", NULL, "There is no placement rule with id %lld.", (long long) id);
        if (!rules_writable(c) || !rule_members_changeable(st, c, rule))
                return op_deny(st, c, err, "delete", "placement rule", id, jget_str(rule, "name"));
        int r = store_rule_delete(st, id);
        if (r < 0)
                return op_fail_store(err, r, "the placement rule");
        op_audit(st, c, "rule.delete", "rule", id, jget_str(rule, "name"), NULL, "ok");
        return 0;
}

/* ------------------------------------------------------------------ */
/* consolidation plan (P2V assessment) */

/* Reads a non-negative finite number o[key] (absent: 0) into *ret; field
 * names it in errors. 0, or a 4xx in err. */
static int plan_number(const json_t *o, const char *key, const char *field, double max, double *ret, OpError *err) {
        json_t *v = json_object_get(o, key);
        if (!v || json_is_null(v)) {
                *ret = 0;
                return 0;
        }
        double x = json_number_value(v);
        if (!json_is_number(v) || !isfinite(x))
                return op_fail(err, 400, "invalid_argument", field, "Field '%s' must be a number.", field);
        if (x < 0 || x > max)
                return op_fail(err, 422, "out_of_range", field, "Field '%s' must be from 0 to %g; %g was given.", field, max, x);
        *ret = x;
        return 0;
}

/* The resource keys of a server or host model, by PlaceResource. */
static const char *const PLAN_KEYS[PLACE_R__COUNT] = { "cpu", "memory_mib", "disk_gib", "disk_iops", "network_mbps" };

/* Every key of o (the object at field) must be in allowed: a 400 naming
 * the first unknown one ("host.memory") otherwise. */
static int object_fields(const json_t *o, const char *field, const char *const *allowed, OpError *err) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *) o, key, v) {
                bool ok = false;
                for (const char *const *a = allowed; *a && !ok; a++)
                        ok = streq(*a, key);
                if (!ok) {
                        char name[160];
                        snprintf(name, sizeof name, "%s.%.64s", field, key);
                        return op_fail(err, 400, "invalid_argument", name, "Unknown field '%s'.", name);
                }
        }
        return 0;
}

/* The host model's keys, and its reserve's: 0, or a 400 in err. */
static int plan_host_fields(const json_t *host, OpError *err) {
        static const char *const host_keys[] = { "cpus", "memory_mib", "disk_gib", "disk_iops", "network_mbps", "reserve", NULL };
        static const char *const reserve_fields[] = { "cpu_pct", "memory_mib", "disk_gib", "disk_io_pct", "network_pct", NULL };
        int r;
        if ((r = object_fields(host, "host", host_keys, err)) < 0)
                return r;
        json_t *res = json_object_get(host, "reserve");
        if (json_is_object(res) && (r = object_fields(res, "host.reserve", reserve_fields, err)) < 0)
                return r;
        return 0;
}

/* The host model of the request: capacities, and the reserve given or
 * else the root group's effective reserves. 0, or a 4xx in err. */
static int plan_capacities(Store *st, const json_t *host, PlaceHostModel *model, OpError *err) {
        static const char *const reserve_keys[] = { "cpu_pct", "memory_mib", "disk_gib", "disk_io_pct", "network_pct" };
        double cpus;
        int r;
        if ((r = plan_number(host, "cpus", "host.cpus", 1e6, &cpus, err)) < 0)
                return r;
        model->cap[PLACE_R_CPU] = cpus * 100.0;
        for (int k = PLACE_R_MEMORY; k < PLACE_R__COUNT; k++) {
                char field[48];
                snprintf(field, sizeof field, "host.%s", PLAN_KEYS[k]);
                if ((r = plan_number(host, PLAN_KEYS[k], field, 1e12, &model->cap[k], err)) < 0)
                        return r;
        }
        /* The reserve: given, else the root group's effective reserves. */
        _cleanup_free_ StoreGroupPolicy *all = NULL;
        int np = store_policy_all(st, &all);
        StoreEffectivePolicy e;
        store_policy_resolve(all, np > 0 ? (size_t) np : 0, STORE_ROOT_GROUP_ID, &e);
        double rv[5];
        for (int k = 0; k < 5; k++)
                rv[k] = e.value[STORE_POLICY_CPU_PCT + k];
        json_t *res = json_object_get(host, "reserve");
        if (res && !json_is_null(res)) {
                if (!json_is_object(res))
                        return op_fail(err, 400, "invalid_argument", "host.reserve", "Field 'host.reserve' must be an object.");
                for (int k = 0; k < 5; k++) {
                        char field[48];
                        snprintf(field, sizeof field, "host.reserve.%s", reserve_keys[k]);
                        if (json_object_get(res, reserve_keys[k]) &&
                            (r = plan_number(res, reserve_keys[k], field, k == 0 || k >= 3 ? 100 : 1e12, &rv[k], err)) < 0)
                                return r;
                }
        }
        model->reserve = (PlaceReserve) { .cpu_pct = rv[0], .memory_mib = rv[1], .disk_gib = rv[2], .disk_io_pct = rv[3], .network_pct = rv[4] };
        return 0;
}

/* The servers' demands into sv[0..n): 0, or a 4xx in err. */
static int plan_servers(const json_t *servers, PlaceServer *sv, OpError *err) {
        static const char *const server_keys[] = { "name", "cpu", "memory_mib", "disk_gib", "disk_iops", "network_mbps", NULL };
        int r;
        for (size_t i = 0; i < json_array_size(servers); i++) {
                json_t *o = json_array_get(servers, i);
                if (!json_is_object(o))
                        return op_fail(err, 400, "invalid_argument", "servers", "Server %zu must be an object.", i + 1);
                char sfield[48];
                snprintf(sfield, sizeof sfield, "servers[%zu]", i);
                if ((r = object_fields(o, sfield, server_keys, err)) < 0)
                        return r;
                for (int k = 0; k < PLACE_R__COUNT; k++) {
                        char field[64];
                        snprintf(field, sizeof field, "servers[%zu].%s", i, PLAN_KEYS[k]);
                        if ((r = plan_number(o, PLAN_KEYS[k], field, 1e12, &sv[i].demand[k], err)) < 0)
                                return r;
                }
                json_t *nm = json_object_get(o, "name");
                if (nm && !json_is_string(nm))
                        return op_fail(err, 400, "invalid_argument", "servers", "The name of server %zu must be a string.", i + 1);
        }
        return 0;
}

static json_t *server_name(const json_t *servers, size_t i) {
        const char *nm = json_string_value(json_object_get(json_array_get(servers, i), "name"));
        return nm ? json_string(nm) : json_sprintf("server-%zu", i + 1);
}

static json_t *plan_json(const json_t *servers, const PlaceServer *sv, const ssize_t *host_of, const PlaceConsolidation *plan) {
        size_t n = json_array_size(servers);
        json_t *hosts = json_array(), *unplaceable = json_array(), *assignment = json_array();
        for (size_t h = 0; h < plan->n_hosts; h++) {
                json_t *used = json_object();
                double sum[PLACE_R__COUNT] = {0};
                json_t *names = json_array();
                for (size_t i = 0; i < n; i++)
                        if (host_of[i] == (ssize_t) h) {
                                json_array_append_new(names, server_name(servers, i));
                                for (int k = 0; k < PLACE_R__COUNT; k++)
                                        sum[k] += sv[i].demand[k];
                        }
                for (int k = 0; k < PLACE_R__COUNT; k++)
                        json_object_set_new(used, PLAN_KEYS[k], json_real(round(sum[k] * 100) / 100));
                json_array_append_new(hosts, json_pack("{s:I, s:o, s:o}", "host", (json_int_t) h + 1, "servers", names, "used", used));
        }
        for (size_t i = 0; i < n; i++) {
                json_t *name = server_name(servers, i);
                if (host_of[i] < 0)
                        json_array_append(unplaceable, name);
                json_array_append_new(assignment, json_pack("{s:o, s:o}", "server", name,
                                                            "host", host_of[i] < 0 ? json_null() : json_integer(host_of[i] + 1)));
        }
        return json_pack("{s:I, s:I, s:o, s:o, s:o}", "hosts_used", (json_int_t) plan->n_hosts, "lower_bound",
                         (json_int_t) plan->lower_bound, "unplaceable", unplaceable, "hosts", hosts, "assignment", assignment);
}

int placement_consolidation(Store *st, const OpCaller *c, const json_t *host, const json_t *servers, json_t **ret, OpError *err) {
        if (c->subj.role == ROLE_SELF_SERVICE)
                return op_deny(st, c, err, "plan", "consolidation", 0, NULL);
        if (!json_is_object(host))
                return op_fail(err, 400, "invalid_argument", "host",
                               "Field 'host' is required: the host model, e.g. {\"cpus\": 16, \"memory_mib\": 131072}.");
        PlaceHostModel model = {0};
        int r = plan_host_fields(host, err);
        if (r < 0)
                return r;
        if (!json_is_array(servers) || json_array_size(servers) == 0 || json_array_size(servers) > CONSOLIDATE_SERVERS_MAX)
                return op_fail(err, 400, "invalid_argument", "servers", "Field 'servers' must be an array of 1 to %d servers.",
                               CONSOLIDATE_SERVERS_MAX);
        if ((r = plan_capacities(st, host, &model, err)) < 0)
                return r;
        /* Percent reserves apply to IOPS and Mbit/s capacities as given. */
        size_t n = json_array_size(servers);
        _cleanup_free_ PlaceServer *sv = xcalloc(n, sizeof *sv);
        _cleanup_free_ ssize_t *host_of = xcalloc(n, sizeof *host_of);
        if ((r = plan_servers(servers, sv, err)) < 0)
                return r;
        PlaceConsolidation plan;
        if (place_consolidate(sv, n, &model, host_of, &plan) < 0)
                return op_fail(err, 422, "invalid_argument", "servers", "The servers or the host model hold figures that cannot be planned.");
        *ret = plan_json(servers, sv, host_of, &plan);
        return 0;
}

/* ------------------------------------------------------------------ */
/* placement of a new VM */

int placement_new_vm(Store *st, const OpCaller *c, const PlacementVmSpec *s, int64_t *ret_host_id, json_t **ret_placement,
                     OpError *err) {
        int64_t group_id = STORE_ROOT_GROUP_ID;
        int r;
        if (s->group && (r = group_of(st, c, "group", s->group, &group_id, err)) < 0)
                return r;
        PlacementDemand d = {
                .cpus = (unsigned) s->cpus, .memory_mib = (uint64_t) s->memory_mib, .disk_bytes = (uint64_t) s->disk_bytes,
                .vm_name = s->name,
        };
        /* A delegated administrator is placed inside the groups it manages,
         * never across the whole estate, and hears of no other host. */
        bool many = false;
        if (c->subj.role == ROLE_DELEGATED_ADMIN) {
                d.scope = c->subj.scopes;
                d.n_scope = c->subj.n_scopes;
                if (!s->group && d.n_scope == 1)
                        group_id = d.scope[0];
                many = !s->group && d.n_scope > 1;
        }
        _cleanup_free_ char *gp = many ? xstrdup("(the groups you manage)") : group_display(st, group_id);
        PlacementRating *rt = NULL;
        int n = d.n_scope == 0 && c->subj.role == ROLE_DELEGATED_ADMIN ? 0 : placement_rate(st, group_id, &d, &rt);
        if (n < 0) {
                free(rt);
                return op_fail(err, 500, "internal", NULL, "Cannot rate the hosts of group '%s' for VM '%s' (error %d).", gp, s->name, n);
        }
        if (n == 0 || rt[0].rating <= 0) {
                StrBuf b = {0};
                if (n == 0)
                        strbuf_append(&b, "the group has no hosts");
                for (int i = 0; i < n; i++)
                        strbuf_printf(&b, "%shost '%s': %s", i ? "; " : "", rt[i].host_name, rt[i].reason);
                free(rt);
                char disk[48] = "";
                if (s->disk_bytes > 0)
                        snprintf(disk, sizeof disk, " and a %llu GiB disk", (unsigned long long) ((s->disk_bytes + (1LL << 30) - 1) >> 30));
                r = op_fail(err, 409, "no_capacity", NULL,
                            "Cannot place VM '%s': no host in group '%s' can take %lld vCPUs, %lld MiB of memory%s (%.700s).",
                            s->name, gp, (long long) s->cpus, (long long) s->memory_mib, disk, b.s ? b.s : "");
                strbuf_free(&b);
                return r < 0 ? -ENOSPC : r;
        }
        *ret_host_id = rt[0].host_id;
        *ret_placement = json_pack("{s:s, s:s, s:s, s:f, s:f}", "chosen_by", "placement", "group", gp, "host", rt[0].host_name,
                                   "rating", round(rt[0].rating * 100) / 100, "stars", rt[0].stars);
        free(rt);
        return 0;
}

int placement_check_host(Store *st, const OpCaller *c, const StoreHost *h, const PlacementVmSpec *s, bool force, OpError *err) {
        PlacementDemand d = {
                .cpus = (unsigned) s->cpus, .memory_mib = (uint64_t) s->memory_mib, .disk_bytes = (uint64_t) s->disk_bytes,
                .vm_name = s->name,
        };
        PlacementRating *rt = NULL;
        int n = placement_rate(st, h->group_id, &d, &rt);
        if (n < 0) {
                free(rt);
                return op_fail(err, 500, "internal", NULL, "Cannot rate host '%s' for VM '%s' (error %d).", h->name, s->name, n);
        }
        const PlacementRating *me = NULL;
        for (int i = 0; i < n && !me; i++)
                if (rt[i].host_id == h->id)
                        me = &rt[i];
        bool short_of_memory = me && (me->why & PLACE_WHY_MEMORY);
        int r = 0;
        if (short_of_memory && !force) {
                op_fail(err, 422, "no_capacity", "host",
                        "Cannot create VM '%s' on host '%s': %s. An administrator may place it there anyway with \"force\": true"
                        " (CLI --force).", s->name, h->name, me->reason);
                r = -ENOSPC;
        } else if (short_of_memory)
                log_warn("VM '%s' is forced onto host '%s' by '%s' though %s", s->name, h->name,
                         c->user_name ? c->user_name : "system", me->reason);
        free(rt);
        return r;
}
