/* The monitor capability's operations (see monitor.h): series, the health
 * tree, alerts, alert rules, webhooks, the consolidation assessment and the
 * Prometheus exposition. Each decides one request of the API -- what the
 * caller may see, its rights, the checks that need the database, the write,
 * audit and event -- and fails with an OpError the API maps unchanged. */
#include "monitor.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

static bool sees_everything(const OpCaller *c) {
        return c->subj.role == ROLE_ADMIN || c->subj.role == ROLE_READ_ONLY;
}

static const char *who(const OpCaller *c) {
        return c->user_name ? c->user_name : "system";
}

static const char *role(const OpCaller *c) {
        return c->role_name ? c->role_name : "?";
}

/* ---- series ---- */

int monitor_op_series(Store *st, const OpCaller *c, const MonitorSeriesSpec *spec, json_t **ret, OpError *err) {
        bool vm = spec->vm;
        _cleanup_json_ json_t *o = NULL;
        int r = vm ? store_vm_get_json(st, spec->id, &o) : store_host_get_json(st, spec->id, &o);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, vm ? "the VM" : "the host");
        if (o && !(vm ? op_allowed(st, c, ACT_READ, OBJ_VM, jget_int(o, "owner_id"), jget_int(o, "group_id"))
                      : op_allowed(st, c, ACT_READ, OBJ_HOST, 0, jget_int(o, "group_id")))) {
                json_decref(o);
                o = NULL;
        }
        if (!o)
                return op_fail(err, 404, "not_found", NULL, "There is no %s with id %lld.", vm ? "VM" : "host", (long long) spec->id);
        char why[256];
        json_t *body = monitor_series_json(st, vm ? STORE_PERF_VM : STORE_PERF_HOST, spec->id, spec->metric, spec->from, spec->to,
                                           spec->step_ms, NULL, why, sizeof why);
        if (!body)
                return op_fail(err, 400, "invalid_argument", strstr(why, "metric") ? "metric" : "from", "%s", why);
        json_object_set_new(body, "name", json_string(jget_str(o, "name")));
        *ret = body;
        return 0;
}

/* ---- health ---- */

static bool node_visible(Store *st, const OpCaller *c, json_t *n) {
        const char *kind = jget_str(n, "kind");
        if (streq(kind, "group"))
                return op_allowed(st, c, ACT_READ, OBJ_GROUP, 0, jget_int(n, "id"));
        if (streq(kind, "host"))
                return op_allowed(st, c, ACT_READ, OBJ_HOST, 0, jget_int(n, "group_id"));
        if (streq(kind, "vm")) {
                _cleanup_json_ json_t *v = NULL;
                (void) store_vm_get_json(st, jget_int(n, "id"), &v); /* a database error (logged) hides it */
                return v && op_allowed(st, c, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id"));
        }
        return false;
}

/* The visible nodes of n's subtree: n itself with its visible children, or
 * (n hidden) its visible descendants lifted up. */
static void visible_nodes(Store *st, const OpCaller *c, json_t *n, json_t *out) {
        json_t *kids = json_array();
        size_t i;
        json_t *k;
        json_array_foreach(json_object_get(n, "children"), i, k)
                visible_nodes(st, c, k, kids);
        if (node_visible(st, c, n)) {
                json_t *copy = json_copy(n);
                json_object_set_new(copy, "children", kids);
                json_array_append_new(out, copy);
        } else {
                json_array_extend(out, kids);
                json_decref(kids);
        }
}

/* The answer cache of /health and /metrics: one slot each, keyed by what
 * the answer is made of -- the store, the read model's generations (hosts,
 * VMs, groups) and a stamp of the rest (the open alerts for /health, the
 * monitor's round for /metrics). A cached tree and its bytes are never
 * changed once in the slot: readers take a reference (the tree; jansson's
 * counts are atomic) or a copy (the bytes) under the lock and build outside
 * it. A key read before the build that the data has overtaken only costs
 * one more build: the next reader sees the new key. */
typedef struct {
        const Store *st;
        uint64_t gen[3];
        int64_t stamp[3];
} AnswerKey;

typedef struct {
        pthread_mutex_t lock;
        bool valid;
        AnswerKey key;
        json_t *tree;           /* /health only */
        char *text;
        size_t len;
        uint64_t hits, builds;  /* for /metrics (armada_answer_cache_*_total) */
} AnswerSlot;

static AnswerSlot health_slot = { .lock = PTHREAD_MUTEX_INITIALIZER };
static AnswerSlot metrics_slot = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void answer_key(Store *st, const ModelSnap *snap, const int64_t stamp[3], AnswerKey *k) {
        *k = (AnswerKey) { .st = st, .gen = { snap->hosts->generation, snap->vms->generation, snap->groups->generation } };
        memcpy(k->stamp, stamp, sizeof k->stamp);
}

/* A hit: a reference to the tree (when ret_tree) and/or a copy of the
 * bytes (when ret_text). */
static bool slot_get(AnswerSlot *s, const AnswerKey *k, json_t **ret_tree, char **ret_text, size_t *ret_len) {
        bool hit = false;
        pthread_mutex_lock(&s->lock);
        if (s->valid && memcmp(&s->key, k, sizeof *k) == 0) {
                hit = true;
                if (ret_tree || ret_text)
                        s->hits++;
                if (ret_tree)
                        *ret_tree = json_incref(s->tree);
                if (ret_text) {
                        *ret_text = xmalloc(s->len + 1);
                        memcpy(*ret_text, s->text, s->len + 1);
                        *ret_len = s->len;
                }
        }
        pthread_mutex_unlock(&s->lock);
        return hit;
}

/* Swaps in a new answer (the slot takes tree's reference and text). */
static void slot_put(AnswerSlot *s, const AnswerKey *k, json_t *tree, char *text, size_t len) {
        pthread_mutex_lock(&s->lock);
        json_t *old_tree = s->tree;
        char *old_text = s->text;
        s->key = *k;
        s->tree = tree;
        s->text = text;
        s->len = len;
        s->valid = true;
        s->builds++;
        pthread_mutex_unlock(&s->lock);
        json_decref(old_tree);
        free(old_text);
}

static char *dump_answer(const json_t *j, size_t *ret_len) {
        char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
        size_t n = strlen(s);
        s = xrealloc(s, n + 2);
        s[n] = '\n';
        s[n + 1] = 0;
        *ret_len = n + 1;
        return s;
}

/* The whole tree, from the cache or built (and cached); *ret_text (when
 * asked) a copy of its bytes. */
static int health_tree(Store *st, const ModelSnap *snap, json_t **ret, char **ret_text, size_t *ret_len, OpError *err) {
        int64_t stamp[3];
        AnswerKey k;
        bool cacheable = snap && store_alert_open_stamp(st, stamp) >= 0;
        if (cacheable) {
                answer_key(st, snap, stamp, &k);
                if (slot_get(&health_slot, &k, ret, ret_text, ret_len))
                        return 0;
        }
        json_t *tree = monitor_health_json_from(st, snap);
        if (!tree)
                return op_fail(err, 500, "internal", NULL, "A database error occurred while computing health.");
        size_t len;
        char *text = dump_answer(tree, &len);
        if (ret_text) {
                *ret_text = xmalloc(len + 1);
                memcpy(*ret_text, text, len + 1);
                *ret_len = len;
        }
        if (ret)
                *ret = json_incref(tree);
        if (cacheable)
                slot_put(&health_slot, &k, tree, text, len);
        else {
                json_decref(tree);
                free(text);
        }
        return 0;
}

/* What a caller who does not see everything sees of the (cached, shared)
 * tree: built on a deep copy, so the cached tree is never touched. */
static json_t *health_filtered(Store *st, const OpCaller *c, const json_t *tree) {
        _cleanup_json_ json_t *own = json_deep_copy(tree);
        json_t *vis = json_array();
        visible_nodes(st, c, own, vis);
        if (json_array_size(vis) == 1) {
                json_t *one = json_incref(json_array_get(vis, 0));
                json_decref(vis);
                return one;
        }
        return json_pack("{s:s, s:n, s:s, s:s, s:[], s:o}", "kind", "view", "id", "name", "what you may see", "health", "healthy",
                         "reasons", "children", vis);
}

int monitor_op_health(Store *st, const ModelSnap *snap, const OpCaller *c, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *tree = NULL;
        int r = health_tree(st, snap, &tree, NULL, NULL, err);
        if (r < 0)
                return r;
        *ret = sees_everything(c) ? json_deep_copy(tree) : health_filtered(st, c, tree);
        return 0;
}

int monitor_op_health_text(Store *st, const ModelSnap *snap, const OpCaller *c, char **ret, size_t *ret_len, OpError *err) {
        if (sees_everything(c))
                return health_tree(st, snap, NULL, ret, ret_len, err);
        _cleanup_json_ json_t *tree = NULL;
        int r = health_tree(st, snap, &tree, NULL, NULL, err);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *vis = health_filtered(st, c, tree);
        *ret = dump_answer(vis, ret_len);
        return 0;
}

/* ---- alerts ---- */

static bool alert_visible(Store *st, const OpCaller *c, json_t *a, AuthAction act) {
        if (act == ACT_READ && sees_everything(c))
                return true;
        const char *kind = jget_str(a, "object_kind");
        if (streq(kind, "job")) {
                /* A stuck job's alert: for those who see every job, and the
                 * job's owner (acknowledging takes an administrator). */
                if (c->subj.role == ROLE_ADMIN)
                        return true;
                _cleanup_json_ json_t *job = NULL;
                if (act == ACT_READ) /* a database error (logged) hides it */
                        (void) store_job_get_json(st, jget_int(a, "object_id"), &job);
                return job && c->user_id > 0 && jget_int(job, "owner_id") == c->user_id;
        }
        bool vm = streq(kind, "vm");
        _cleanup_json_ json_t *o = NULL;
        /* Gone, or a database error (logged): for administrators only. */
        (void) (vm ? store_vm_get_json(st, jget_int(a, "object_id"), &o) : store_host_get_json(st, jget_int(a, "object_id"), &o));
        if (!o)
                return c->subj.role == ROLE_ADMIN;
        return vm ? op_allowed(st, c, act, OBJ_VM, jget_int(o, "owner_id"), jget_int(o, "group_id"))
                  : op_allowed(st, c, act, OBJ_HOST, 0, jget_int(o, "group_id"));
}

int monitor_op_alert_list(Store *st, const OpCaller *c, const char *state, int limit, json_t **ret, OpError *err) {
        json_t *arr = NULL;
        if (store_alert_list_json(st, state, limit, &arr) < 0)
                return op_fail(err, 500, "internal", NULL, "A database error occurred while listing alerts.");
        json_t *out = json_array();
        size_t i;
        json_t *a;
        json_array_foreach(arr, i, a)
                if (alert_visible(st, c, a, ACT_READ))
                        json_array_append(out, a);
        json_decref(arr);
        *ret = json_pack("{s:o}", "items", out);
        return 0;
}

int monitor_op_alert_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        json_t *a = NULL;
        int r = store_alert_get_json(st, id, &a);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the alert");
        if (a && !alert_visible(st, c, a, ACT_READ)) {
                json_decref(a);
                a = NULL;
        }
        if (!a)
                return op_fail(err, 404, "not_found", NULL, "There is no alert with id %lld.", (long long) id);
        *ret = a;
        return 0;
}

int monitor_op_alert_ack(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *a = NULL;
        int e = monitor_op_alert_get(st, c, id, &a, err);
        if (e < 0)
                return e;
        if (!alert_visible(st, c, a, ACT_OPERATE))
                return op_deny(st, c, err, "acknowledge", "alert", id, NULL);
        e = store_alert_ack(st, id, who(c), now_ms());
        if (e == -EALREADY)
                return op_fail(err, 409, "conflict", NULL, "Alert %lld was already acknowledged by '%s'.", (long long) id,
                               jget_str(a, "acknowledged_by"));
        if (e < 0)
                return op_fail_store(err, e, "The alert");
        _cleanup_free_ char *msg = xasprintf("Alert %lld (%s) was acknowledged by '%s'.", (long long) id, jget_str(a, "rule_name"), who(c));
        (void) store_event_add(st, "info", "alert.acknowledged", jget_str(a, "object_kind"), jget_int(a, "object_id"),
                               jget_str(a, "object_name"), 0, msg);
        op_audit(st, c, "alert.acknowledge", "alert", id, jget_str(a, "rule_name"), NULL, "ok");
        e = store_alert_get_json(st, id, ret);
        return e < 0 ? op_fail_store(err, e, "The alert") : 0;
}

/* ---- alert rules ---- */

static bool one_of(const char *s, const char *const *words) {
        for (; *words; words++)
                if (streq(s, *words))
                        return true;
        return false;
}

/* Applies patch p onto *rule (what p leaves out keeps its value). */
static void rule_apply(StoreAlertRule *rule, const MonitorRulePatch *p) {
        if (p->has_threshold)
                rule->threshold = p->threshold;
        if (p->name) snprintf(rule->name, sizeof rule->name, "%s", p->name);
        if (p->object_kind) snprintf(rule->object_kind, sizeof rule->object_kind, "%s", p->object_kind);
        if (p->metric) snprintf(rule->metric, sizeof rule->metric, "%s", p->metric);
        if (p->comparison) snprintf(rule->comparison, sizeof rule->comparison, "%s", p->comparison);
        if (p->state) snprintf(rule->state_value, sizeof rule->state_value, "%s", p->state);
        if (p->severity) snprintf(rule->severity, sizeof rule->severity, "%s", p->severity);
        if (p->scope) snprintf(rule->scope, sizeof rule->scope, "%s", p->scope);
        if (!rule->severity[0]) snprintf(rule->severity, sizeof rule->severity, "warning");
        if (!rule->scope[0]) snprintf(rule->scope, sizeof rule->scope, "all");
        if (p->duration_s >= 0)
                rule->duration_s = p->duration_s;
        if (p->scope_id >= 0)
                rule->scope_id = p->scope_id;
        if (p->enabled >= 0)
                rule->enabled = p->enabled;
}

/* What object_kind, metric, comparison and state of a rule may be. */
static int rule_check_condition(const StoreAlertRule *rule, bool has_threshold, OpError *err) {
        static const char *const KINDS[] = { "host", "vm", NULL };
        static const char *const VM_STATES[] = { "running", "paused", "stopped", "crashed", "shutting-down", "suspended",
                                                 "unknown", "missing", "creating", "deleting", NULL };
        static const char *const HOST_STATES[] = { "ok", "connecting", "maintenance", "unreachable", "failed", "fenced",
                                                   "duplicate", "not-responding", NULL };
        if (!one_of(rule->object_kind, KINDS))
                return op_fail(err, 400, "invalid_argument", "object_kind", "Field 'object_kind' must be 'host' or 'vm'%s%s%s.",
                               rule->object_kind[0] ? ", not '" : "", rule->object_kind, rule->object_kind[0] ? "'" : "");
        StorePerfMetric pm;
        bool is_state = streq(rule->metric, "state");
        if (!is_state && (store_perf_metric_parse(rule->metric, &pm) < 0 ||
                          (streq(rule->object_kind, "vm") && pm == STORE_PERF_POOL_PCT)))
                return op_fail(err, 400, "invalid_argument", "metric", "Field 'metric' must be 'state' or one of cpu, memory, memory_pct,"
                               " disk_read, disk_write, disk_iops, net_rx, net_tx%s; '%s' is not.",
                               streq(rule->object_kind, "host") ? ", pool_pct" : "", rule->metric);
        MonCmp cmp;
        if (mon_cmp_parse(rule->comparison, &cmp) < 0 || (is_state && cmp != MON_CMP_EQ && cmp != MON_CMP_NE))
                return op_fail(err, 400, "invalid_argument", "comparison", is_state
                               ? "Field 'comparison' of a state rule must be '==' or '!=', not '%s'."
                               : "Field 'comparison' must be one of >, >=, <, <=, ==, !=; not '%s'.", rule->comparison);
        if (is_state && !one_of(rule->state_value, streq(rule->object_kind, "vm") ? VM_STATES : HOST_STATES))
                return op_fail(err, 400, "invalid_argument", "state", "Field 'state' must be a %s state such as '%s'; '%s' is not one.",
                               rule->object_kind, streq(rule->object_kind, "vm") ? "crashed" : "unreachable", rule->state_value);
        if (!is_state && !has_threshold && !rule->id)
                return op_fail(err, 400, "invalid_argument", "threshold", "Field 'threshold' is required for a rule on metric '%s'.",
                               rule->metric);
        return 0;
}

/* Applies p onto *rule and checks the result, the scope's target included. */
static int rule_patch(Store *st, StoreAlertRule *rule, const MonitorRulePatch *p, OpError *err) {
        static const char *const SEVERITIES[] = { "info", "warning", "critical", NULL };
        static const char *const SCOPES[] = { "all", "group", "object", NULL };
        rule_apply(rule, p);
        int e = rule_check_condition(rule, p->has_threshold, err);
        if (e < 0)
                return e;
        if (!one_of(rule->severity, SEVERITIES))
                return op_fail(err, 400, "invalid_argument", "severity", "Field 'severity' must be info, warning or critical, not '%s'.",
                               rule->severity);
        if (!one_of(rule->scope, SCOPES))
                return op_fail(err, 400, "invalid_argument", "scope", "Field 'scope' must be all, group or object, not '%s'.", rule->scope);
        if (streq(rule->scope, "all")) {
                rule->scope_id = 0;
                return 0;
        }
        json_t *target = NULL;
        int r = streq(rule->scope, "group") ? store_group_get(st, rule->scope_id, &target)
                : streq(rule->object_kind, "vm") ? store_vm_get_json(st, rule->scope_id, &target)
                : store_host_get_json(st, rule->scope_id, &target);
        json_decref(target);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the alert rule's scope");
        if (r < 0)
                return op_fail(err, 422, "not_found", "scope_id", "Field 'scope_id' must name an existing %s; there is none with id %lld.",
                               streq(rule->scope, "group") ? "host group" : rule->object_kind, (long long) rule->scope_id);
        return 0;
}

static int may_read_rules(const OpCaller *c, OpError *err) {
        if (sees_everything(c))
                return 0;
        return op_fail(err, 403, "forbidden", NULL, "User '%s' (%s) may not read alert rules.", who(c), role(c));
}

int monitor_op_rule_list(Store *st, const OpCaller *c, json_t **ret, OpError *err) {
        int e = may_read_rules(c, err);
        if (e < 0)
                return e;
        json_t *arr = NULL;
        if (store_alert_rule_list_json(st, &arr) < 0)
                return op_fail(err, 500, "internal", NULL, "A database error occurred while listing alert rules.");
        *ret = json_pack("{s:o}", "items", arr);
        return 0;
}

int monitor_op_rule_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        int e = may_read_rules(c, err);
        if (e < 0)
                return e;
        e = store_alert_rule_get_json(st, id, ret);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no alert rule with id %lld.", (long long) id);
        return e < 0 ? op_fail_store(err, e, "The alert rule") : 0;
}

int monitor_op_rule_create(Store *st, const OpCaller *c, const MonitorRulePatch *p, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_CREATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "create", "alert rule", 0, NULL);
        StoreAlertRule rule = { .enabled = true };
        int e = rule_patch(st, &rule, p, err);
        if (e < 0)
                return e;
        int64_t id;
        e = store_alert_rule_insert(st, &rule, p->has_description ? p->description : NULL, &id);
        if (e == -EEXIST)
                return op_fail(err, 409, "conflict", "name", "An alert rule named '%s' already exists.", rule.name);
        if (e < 0)
                return op_fail_store(err, e, "The alert rule");
        op_audit(st, c, "alert-rule.create", "alert-rule", id, rule.name, NULL, "ok");
        e = store_alert_rule_get_json(st, id, ret);
        return e < 0 ? op_fail_store(err, e, "The alert rule") : 0;
}

int monitor_op_rule_update(Store *st, const OpCaller *c, int64_t id, const MonitorRulePatch *p, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "change", "alert rule", id, NULL);
        StoreAlertRule rule;
        _cleanup_json_ json_t *old = NULL;
        int e = store_alert_rule_get(st, id, &rule);
        if (e >= 0)
                e = store_alert_rule_get_json(st, id, &old);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no alert rule with id %lld.", (long long) id);
        if (e < 0)
                return op_fail_store(err, e, "The alert rule");
        const char *description = p->has_description ? p->description : jget_str(old, "description");
        e = rule_patch(st, &rule, p, err);
        if (e < 0)
                return e;
        e = store_alert_rule_update(st, &rule, description);
        if (e == -EEXIST)
                return op_fail(err, 409, "conflict", "name", "An alert rule named '%s' already exists.", rule.name);
        if (e < 0)
                return op_fail_store(err, e, "The alert rule");
        op_audit(st, c, "alert-rule.update", "alert-rule", rule.id, rule.name, NULL, "ok");
        e = store_alert_rule_get_json(st, rule.id, ret);
        return e < 0 ? op_fail_store(err, e, "The alert rule") : 0;
}

int monitor_op_rule_delete(Store *st, const OpCaller *c, int64_t id, OpError *err) {
        if (!op_allowed(st, c, ACT_DELETE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "delete", "alert rule", id, NULL);
        StoreAlertRule rule;
        int e = store_alert_rule_get(st, id, &rule);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no alert rule with id %lld.", (long long) id);
        if (e < 0)
                return op_fail_store(err, e, "The alert rule");
        if (rule.builtin)
                return op_fail(err, 409, "conflict", NULL, "Alert rule '%s' is built in and cannot be deleted; disable it instead"
                               " (PATCH with \"enabled\": false).", rule.name);
        e = store_alert_rule_delete(st, id);
        if (e < 0)
                return op_fail_store(err, e, "The alert rule");
        op_audit(st, c, "alert-rule.delete", "alert-rule", rule.id, rule.name, NULL, "ok");
        return 0;
}

/* ---- webhooks ---- */

/* An http:// or https:// URL without spaces or control characters. */
static int url_check(const char *field, const char *url, OpError *err) {
        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
                return op_fail(err, 400, "invalid_argument", field, "Field '%s' must be an http:// or https:// URL; '%.200s' is not.",
                               field, url);
        for (const char *p = url; *p; p++)
                if (*p <= ' ')
                        return op_fail(err, 400, "invalid_argument", field, "Field '%s' must not contain spaces or control characters.",
                                       field);
        return 0;
}

int monitor_op_webhook_list(Store *st, const OpCaller *c, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_READ, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "list", "webhooks", 0, NULL);
        json_t *arr = NULL;
        if (store_webhook_list_json(st, &arr) < 0)
                return op_fail(err, 500, "internal", NULL, "A database error occurred while listing webhooks.");
        *ret = json_pack("{s:o}", "items", arr);
        return 0;
}

int monitor_op_webhook_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_READ, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "read", "webhook", id, NULL);
        int e = store_webhook_get_json(st, id, ret);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no webhook with id %lld.", (long long) id);
        return e < 0 ? op_fail_store(err, e, "The webhook") : 0;
}

int monitor_op_webhook_create(Store *st, const OpCaller *c, const char *url, const char *description, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_CREATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "create", "webhook", 0, NULL);
        int e = url_check("url", url, err);
        if (e < 0)
                return e;
        int64_t id;
        e = store_webhook_insert(st, url, description, &id);
        if (e == -EEXIST)
                return op_fail(err, 409, "conflict", "url", "A webhook for '%.200s' already exists.", url);
        if (e < 0)
                return op_fail_store(err, e, "The webhook");
        op_audit(st, c, "webhook.create", "webhook", id, NULL, url, "ok");
        e = store_webhook_get_json(st, id, ret);
        return e < 0 ? op_fail_store(err, e, "The webhook") : 0;
}

int monitor_op_webhook_delete(Store *st, const OpCaller *c, int64_t id, OpError *err) {
        if (!op_allowed(st, c, ACT_DELETE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "delete", "webhook", id, NULL);
        int e = store_webhook_delete(st, id);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no webhook with id %lld.", (long long) id);
        if (e < 0)
                return op_fail_store(err, e, "The webhook");
        op_audit(st, c, "webhook.delete", "webhook", id, NULL, NULL, "ok");
        return 0;
}

/* ---- consolidation assessment ---- */

static int may_read_assessment(const OpCaller *c, OpError *err) {
        if (sees_everything(c))
                return 0;
        return op_fail(err, 403, "forbidden", NULL, "User '%s' (%s) may not read the assessment.", who(c), role(c));
}

int monitor_op_assess_list(Store *st, const OpCaller *c, json_t **ret, OpError *err) {
        int e = may_read_assessment(c, err);
        if (e < 0)
                return e;
        json_t *arr = NULL;
        if (store_assess_list_json(st, &arr) < 0)
                return op_fail(err, 500, "internal", NULL, "A database error occurred while listing the assessment.");
        *ret = json_pack("{s:o}", "items", arr);
        return 0;
}

int monitor_op_assess_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        int e = may_read_assessment(c, err);
        if (e < 0)
                return e;
        e = store_assess_get_json(st, id, ret);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no assessed server with id %lld.", (long long) id);
        return e < 0 ? op_fail_store(err, e, "The assessed server") : 0;
}

int monitor_op_assess_create(Store *st, const OpCaller *c, const char *name, const char *node_exporter, const char *ssh,
                             json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_CREATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "add", "server to the assessment", 0, NULL);
        const char *url = node_exporter;
        if (ssh)
                return op_fail(err, 422, "unsupported", "ssh", "Sampling over ssh is not supported yet; run node_exporter on '%s'"
                               " and give its URL in 'node_exporter'.", name);
        if (!url)
                return op_fail(err, 400, "invalid_argument", "node_exporter", "Field 'node_exporter' is required: the URL of"
                               " node_exporter's metrics on '%s', such as http://%s:9100/metrics.", name, name);
        int e = url_check("node_exporter", url, err);
        if (e < 0)
                return e;
        /* node_exporter serves /metrics; accept its base URL too. */
        _cleanup_free_ char *full = NULL;
        const char *after = strstr(url, "://") + 3;
        if (!strchr(after, '/'))
                full = xasprintf("%s/metrics", url);
        int64_t id;
        e = store_assess_insert(st, name, full ? full : url, &id);
        if (e == -EEXIST)
                return op_fail(err, 409, "conflict", "name", "Server '%s' is already in the assessment.", name);
        if (e < 0)
                return op_fail_store(err, e, "The assessed server");
        op_audit(st, c, "assessment.add", "assess-server", id, name, full ? full : url, "ok");
        e = store_assess_get_json(st, id, ret);
        return e < 0 ? op_fail_store(err, e, "The assessed server") : 0;
}

int monitor_op_assess_delete(Store *st, const OpCaller *c, int64_t id, OpError *err) {
        if (!op_allowed(st, c, ACT_DELETE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "remove", "server from the assessment", id, NULL);
        int e = store_assess_delete(st, id);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no assessed server with id %lld.", (long long) id);
        if (e < 0)
                return op_fail_store(err, e, "The assessed server");
        op_audit(st, c, "assessment.remove", "assess-server", id, NULL, NULL, "ok");
        return 0;
}

int monitor_op_assess_report(Store *st, const OpCaller *c, const PlaceHostModel *model, int64_t window_ms, json_t **ret,
                             OpError *err) {
        int e = may_read_assessment(c, err);
        if (e < 0)
                return e;
        char why[256];
        json_t *rep = monitor_assess_report_json(st, model, window_ms, now_ms(), why, sizeof why);
        if (!rep)
                return op_fail(err, 400, "invalid_argument", NULL, "%s", why);
        *ret = rep;
        return 0;
}

/* ---- Prometheus ---- */

/* The hosts' and VMs' families from the cache while the read model and the
 * monitor's round are unchanged, else built and cached. *ret (when asked) a
 * copy. 0 or -EIO. */
static int metrics_objects(Store *st, const ModelSnap *snap, char **ret) {
        AnswerKey k;
        size_t len = 0;
        if (snap) {
                int64_t stamp[3] = { (int64_t) monitor_round_generation(), 0, 0 };
                answer_key(st, snap, stamp, &k);
                if (slot_get(&metrics_slot, &k, NULL, ret, &len))
                        return 0;
        }
        char *objects = monitor_prometheus_objects_text(st, snap);
        if (!objects)
                return -EIO;
        if (ret)
                *ret = snap ? xstrdup(objects) : objects;
        if (snap)
                slot_put(&metrics_slot, &k, NULL, objects, strlen(objects));
        else if (!ret)
                free(objects);
        return 0;
}

void monitor_answers_warm(Store *st, const ModelSnap *snap) {
        OpError err = {0};
        if (!snap)
                return;
        (void) health_tree(st, snap, NULL, NULL, NULL, &err);
        (void) metrics_objects(st, snap, NULL);
}

int monitor_op_prometheus(Store *st, const ModelSnap *snap, const char *authorization, bool metrics_public, uint64_t login_rate_limited, char **ret,
                          OpError *err) {
        if (!metrics_public) {
                /* An administrator's token, from the loopback too: the
                 * metrics name every host and VM of the estate. */
                StoreUser u;
                char hash[65];
                AuthRole r;
                if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0 || strlen(authorization + 7) != AUTH_TOKEN_LEN)
                        return op_fail(err, 401, "unauthenticated", NULL, "The metrics need an administrator's bearer token"
                                       " (or armadad --metrics-public).");
                auth_token_hash(authorization + 7, hash);
                if (store_token_user(st, hash, now_ms(), &u) < 0 || auth_role_parse(u.role, &r) < 0)
                        return op_fail(err, 401, "unauthenticated", NULL, "The token is not valid (expired or revoked).");
                if (r != ROLE_ADMIN)
                        return op_fail(err, 403, "forbidden", NULL, "The metrics are for administrators (or armadad --metrics-public).");
        }
        _cleanup_free_ char *objects = NULL;
        if (metrics_objects(st, snap, &objects) < 0)
                return op_fail(err, 500, "internal", NULL, "A database error occurred while exposing the metrics.");
        MonitorProcess self;
        bool have_self = monitor_process_read(&self) == 0;
        _cleanup_free_ char *rest = monitor_prometheus_rest_text(st, have_self ? &self : NULL, login_rate_limited);
        if (!rest)
                return op_fail(err, 500, "internal", NULL, "A database error occurred while exposing the metrics.");
        uint64_t hb[2][2];
        AnswerSlot *slots[2] = { &health_slot, &metrics_slot };
        for (int i = 0; i < 2; i++) {
                pthread_mutex_lock(&slots[i]->lock);
                hb[i][0] = slots[i]->hits;
                hb[i][1] = slots[i]->builds;
                pthread_mutex_unlock(&slots[i]->lock);
        }
        *ret = xasprintf("%s%s"
                         "# HELP armada_answer_cache_hits_total Answers of /health and /metrics served from the cache.\n"
                         "# TYPE armada_answer_cache_hits_total counter\n"
                         "armada_answer_cache_hits_total{answer=\"health\"} %llu\n"
                         "armada_answer_cache_hits_total{answer=\"metrics\"} %llu\n"
                         "# HELP armada_answer_cache_builds_total Answers of /health and /metrics built (and cached) anew.\n"
                         "# TYPE armada_answer_cache_builds_total counter\n"
                         "armada_answer_cache_builds_total{answer=\"health\"} %llu\n"
                         "armada_answer_cache_builds_total{answer=\"metrics\"} %llu\n",
                         objects, rest, (unsigned long long) hb[0][0], (unsigned long long) hb[1][0],
                         (unsigned long long) hb[0][1], (unsigned long long) hb[1][1]);
        return 0;
}
