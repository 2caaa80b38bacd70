/* The monitor capability's REST resources: performance series, the health
 * tree, alerts and their rules, webhooks, the consolidation assessment, and
 * the Prometheus exposition.
 *
 * GET /metrics (and its alias GET /api/v1/metrics) needs a bearer token of
 * an administrator or a read-only operator, from the loopback too (any local
 * user could scrape it otherwise), because the exposition names every host
 * and VM; armadad --metrics-public lifts that for a trusted network. */
#include "api-priv.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "monitor/monitor.h"

#define ALERT_LIMIT_MAX 10000


/* The host or VM an id names, when the caller may read it; else a 404 is
 * sent and NULL returned. */
static json_t *object_visible(Req *r, const char *kind, int64_t id) {
        bool vm = streq(kind, "vm");
        json_t *o = vm ? store_vm_get_json(r->api->st, id) : store_host_get_json(r->api->st, id);
        if (o && !(vm ? api_allowed(r, ACT_READ, OBJ_VM, jget_int(o, "owner_id"), jget_int(o, "group_id"))
                      : api_allowed(r, ACT_READ, OBJ_HOST, 0, jget_int(o, "group_id")))) {
                json_decref(o);
                o = NULL;
        }
        if (!o)
                reply_error(r, 404, "not_found", NULL, "There is no %s with id %lld.", vm ? "VM" : "host", (long long) id);
        return o;
}

static bool sees_everything(Req *r) {
        return r->subj.role == ROLE_ADMIN || r->subj.role == ROLE_READ_ONLY;
}

/* ------------------------------------------------------------------ */
/* series */

static void h_series(Req *r) {
        const char *kind = r->word[0];
        if (!streq(kind, "host") && !streq(kind, "vm"))
                return reply_error(r, 404, "not_found", NULL, "There are no metrics of kind '%.32s'; use 'host' or 'vm'.", kind);
        _cleanup_json_ json_t *o = object_visible(r, kind, r->id[0]);
        if (!o)
                return;
        int64_t now = now_ms(), last, from, to, step;
        if (!req_query_int(r, "last", 3600, 1, 400LL * 24 * 3600, &last) ||
            !req_query_int(r, "to", now, 0, INT64_MAX / 2, &to) ||
            !req_query_int(r, "from", to - last * 1000, 0, INT64_MAX / 2, &from) ||
            !req_query_int(r, "step", 0, 0, 30LL * 24 * 3600, &step))
                return;
        char why[256];
        json_t *body = monitor_series_json(r->api->st, streq(kind, "vm") ? STORE_PERF_VM : STORE_PERF_HOST, r->id[0],
                                           req_query(r, "metric"), from, to, step * 1000, NULL, why, sizeof why);
        if (!body)
                return reply_error(r, 400, "invalid_argument", strstr(why, "metric") ? "metric" : "from", "%s", why);
        json_object_set_new(body, "name", json_string(jget_str(o, "name")));
        reply(r, 200, body);
}

/* ------------------------------------------------------------------ */
/* health */

static bool node_visible(Req *r, json_t *n) {
        const char *kind = jget_str(n, "kind");
        if (streq(kind, "group"))
                return api_allowed(r, ACT_READ, OBJ_GROUP, 0, jget_int(n, "id"));
        if (streq(kind, "host"))
                return api_allowed(r, ACT_READ, OBJ_HOST, 0, jget_int(n, "group_id"));
        if (streq(kind, "vm")) {
                _cleanup_json_ json_t *v = store_vm_get_json(r->api->st, jget_int(n, "id"));
                return v && api_allowed(r, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id"));
        }
        return false;
}

/* The visible nodes of n's subtree: n itself with its visible children, or
 * (n hidden) its visible descendants lifted up. */
static void visible_nodes(Req *r, json_t *n, json_t *out) {
        json_t *kids = json_array();
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(n, "children"), i, c)
                visible_nodes(r, c, kids);
        if (node_visible(r, n)) {
                json_t *copy = json_copy(n);
                json_object_set_new(copy, "children", kids);
                json_array_append_new(out, copy);
        } else {
                json_array_extend(out, kids);
                json_decref(kids);
        }
}

static void h_health(Req *r) {
        _cleanup_model_snap_ ModelSnap *snap = model_snap(r->api->model);
        json_t *tree = monitor_health_json_from(r->api->st, snap);
        if (!tree)
                return reply_error(r, 500, "internal", NULL, "A database error occurred while computing health.");
        if (sees_everything(r))
                return reply(r, 200, tree);
        json_t *vis = json_array();
        visible_nodes(r, tree, vis);
        json_decref(tree);
        if (json_array_size(vis) == 1) {
                json_t *only = json_incref(json_array_get(vis, 0));
                json_decref(vis);
                return reply(r, 200, only);
        }
        reply(r, 200, json_pack("{s:s, s:n, s:s, s:s, s:[], s:o}", "kind", "view", "id", "name", "what you may see",
                                "health", "healthy", "reasons", "children", vis));
}

/* ------------------------------------------------------------------ */
/* alerts */

static bool alert_visible(Req *r, json_t *a, AuthAction act) {
        if (act == ACT_READ && sees_everything(r))
                return true;
        const char *kind = jget_str(a, "object_kind");
        if (streq(kind, "job")) {
                /* A stuck job's alert: for those who see every job, and the
                 * job's owner (acknowledging takes an administrator). */
                if (r->subj.role == ROLE_ADMIN)
                        return true;
                _cleanup_json_ json_t *job = act == ACT_READ ? store_job_get_json(r->api->st, jget_int(a, "object_id")) : NULL;
                return job && r->user.id > 0 && jget_int(job, "owner_id") == r->user.id;
        }
        bool vm = streq(kind, "vm");
        _cleanup_json_ json_t *o = vm ? store_vm_get_json(r->api->st, jget_int(a, "object_id"))
                                      : store_host_get_json(r->api->st, jget_int(a, "object_id"));
        if (!o)
                return r->subj.role == ROLE_ADMIN;
        return vm ? api_allowed(r, act, OBJ_VM, jget_int(o, "owner_id"), jget_int(o, "group_id"))
                  : api_allowed(r, act, OBJ_HOST, 0, jget_int(o, "group_id"));
}

static void h_alerts_list(Req *r) {
        const char *state = req_query(r, "state");
        if (state && !streq(state, "open") && !streq(state, "resolved") && !streq(state, "all"))
                return reply_error(r, 400, "invalid_argument", "state", "Query 'state' must be open, resolved or all, not '%.32s'.", state);
        int64_t limit;
        if (!req_query_int(r, "limit", 200, 1, ALERT_LIMIT_MAX, &limit))
                return;
        json_t *arr = store_alert_list_json(r->api->st, state && !streq(state, "all") ? state : NULL, (int) limit);
        if (!arr)
                return reply_error(r, 500, "internal", NULL, "A database error occurred while listing alerts.");
        json_t *out = json_array();
        size_t i;
        json_t *a;
        json_array_foreach(arr, i, a)
                if (alert_visible(r, a, ACT_READ))
                        json_array_append(out, a);
        json_decref(arr);
        reply(r, 200, json_pack("{s:o}", "items", out));
}

static json_t *alert_get_visible(Req *r, int64_t id) {
        json_t *a = store_alert_get_json(r->api->st, id);
        if (a && !alert_visible(r, a, ACT_READ)) {
                json_decref(a);
                a = NULL;
        }
        if (!a)
                reply_error(r, 404, "not_found", NULL, "There is no alert with id %lld.", (long long) id);
        return a;
}

static void h_alert_get(Req *r) {
        json_t *a = alert_get_visible(r, r->id[0]);
        if (a)
                reply(r, 200, a);
}

static void h_alert_ack(Req *r) {
        static const char *const fields[] = { NULL };
        if (!req_body_fields(r, fields))
                return;
        _cleanup_json_ json_t *a = alert_get_visible(r, r->id[0]);
        if (!a)
                return;
        if (!alert_visible(r, a, ACT_OPERATE))
                return deny(r, "acknowledge", "alert", r->id[0], NULL);
        int e = store_alert_ack(r->api->st, r->id[0], r->user.name, now_ms());
        if (e == -EALREADY)
                return reply_error(r, 409, "conflict", NULL, "Alert %lld was already acknowledged by '%s'.", (long long) r->id[0],
                                   jget_str(a, "acknowledged_by"));
        if (e < 0)
                return reply_store_error(r, e, "The alert");
        _cleanup_free_ char *msg = xasprintf("Alert %lld (%s) was acknowledged by '%s'.", (long long) r->id[0], jget_str(a, "rule_name"),
                                             r->user.name);
        (void) store_event_add(r->api->st, "info", "alert.acknowledged", jget_str(a, "object_kind"), jget_int(a, "object_id"),
                               jget_str(a, "object_name"), 0, msg);
        audit(r, "alert.acknowledge", "alert", r->id[0], jget_str(a, "rule_name"), NULL, "ok");
        reply(r, 200, store_alert_get_json(r->api->st, r->id[0]));
}

/* ------------------------------------------------------------------ */
/* alert rules */

static const char *const RULE_FIELDS[] = { "name", "object_kind", "metric", "comparison", "threshold", "state", "duration_s",
                                           "severity", "scope", "scope_id", "enabled", "description", NULL };

static bool one_of(const char *s, const char *const *words) {
        for (; *words; words++)
                if (streq(s, *words))
                        return true;
        return false;
}

/* Applies the body onto *rule (fields absent keep their value) and checks
 * the result. false with a 4xx sent when something is wrong. */
static bool rule_from_body(Req *r, StoreAlertRule *rule, const char **ret_description) {
        static const char *const KINDS[] = { "host", "vm", NULL };
        static const char *const SEVERITIES[] = { "info", "warning", "critical", NULL };
        static const char *const SCOPES[] = { "all", "group", "object", NULL };
        static const char *const VM_STATES[] = { "running", "paused", "stopped", "crashed", "shutting-down", "suspended",
                                                 "unknown", "missing", "creating", "deleting", NULL };
        static const char *const HOST_STATES[] = { "ok", "connecting", "maintenance", "unreachable", "failed", "fenced",
                                                   "duplicate", "not-responding", NULL };
        const char *name = NULL, *kind = NULL, *metric = NULL, *cmp = NULL, *state = NULL, *severity = NULL, *scope = NULL;
        int64_t duration = rule->duration_s, scope_id = rule->scope_id;
        bool enabled = rule->enabled;
        if (!req_body_fields(r, RULE_FIELDS) || !body_name(r, "name", !rule->name[0], &name) ||
            !body_string(r, "object_kind", false, 8, &kind) || !body_string(r, "metric", false, 24, &metric) ||
            !body_string(r, "comparison", false, 3, &cmp) || !body_string(r, "state", false, 23, &state) ||
            !body_int(r, "duration_s", false, 0, 7 * 24 * 3600, &duration) ||
            !body_string(r, "severity", false, 16, &severity) || !body_string(r, "scope", false, 8, &scope) ||
            !body_int(r, "scope_id", false, 0, INT64_MAX, &scope_id) || !body_bool(r, "enabled", &enabled) ||
            !body_string(r, "description", false, 500, ret_description))
                return false;
        json_t *th = r->json ? json_object_get(r->json, "threshold") : NULL;
        if (th && !json_is_null(th)) {
                if (!json_is_number(th) || !isfinite(json_number_value(th))) {
                        reply_error(r, 400, "invalid_argument", "threshold", "Field 'threshold' must be a number.");
                        return false;
                }
                rule->threshold = json_number_value(th);
        }
        if (name) snprintf(rule->name, sizeof rule->name, "%s", name);
        if (kind) snprintf(rule->object_kind, sizeof rule->object_kind, "%s", kind);
        if (metric) snprintf(rule->metric, sizeof rule->metric, "%s", metric);
        if (cmp) snprintf(rule->comparison, sizeof rule->comparison, "%s", cmp);
        if (state) snprintf(rule->state_value, sizeof rule->state_value, "%s", state);
        if (severity) snprintf(rule->severity, sizeof rule->severity, "%s", severity);
        if (scope) snprintf(rule->scope, sizeof rule->scope, "%s", scope);
        if (!rule->severity[0]) snprintf(rule->severity, sizeof rule->severity, "warning");
        if (!rule->scope[0]) snprintf(rule->scope, sizeof rule->scope, "all");
        rule->duration_s = duration;
        rule->scope_id = scope_id;
        rule->enabled = enabled;
        if (!one_of(rule->object_kind, KINDS)) {
                reply_error(r, 400, "invalid_argument", "object_kind", "Field 'object_kind' must be 'host' or 'vm'%s%s%s.",
                            rule->object_kind[0] ? ", not '" : "", rule->object_kind, rule->object_kind[0] ? "'" : "");
                return false;
        }
        StorePerfMetric pm;
        bool is_state = streq(rule->metric, "state");
        if (!is_state && (store_perf_metric_parse(rule->metric, &pm) < 0 ||
                          (streq(rule->object_kind, "vm") && pm == STORE_PERF_POOL_PCT))) {
                reply_error(r, 400, "invalid_argument", "metric", "Field 'metric' must be 'state' or one of cpu, memory, memory_pct,"
                            " disk_read, disk_write, disk_iops, net_rx, net_tx%s; '%s' is not.",
                            streq(rule->object_kind, "host") ? ", pool_pct" : "", rule->metric);
                return false;
        }
        MonCmp c;
        if (mon_cmp_parse(rule->comparison, &c) < 0 || (is_state && c != MON_CMP_EQ && c != MON_CMP_NE)) {
                reply_error(r, 400, "invalid_argument", "comparison", is_state
                            ? "Field 'comparison' of a state rule must be '==' or '!=', not '%s'."
                            : "Field 'comparison' must be one of >, >=, <, <=, ==, !=; not '%s'.", rule->comparison);
                return false;
        }
        if (is_state && !one_of(rule->state_value, streq(rule->object_kind, "vm") ? VM_STATES : HOST_STATES)) {
                reply_error(r, 400, "invalid_argument", "state", "Field 'state' must be a %s state such as '%s'; '%s' is not one.",
                            rule->object_kind, streq(rule->object_kind, "vm") ? "crashed" : "unreachable", rule->state_value);
                return false;
        }
        if (!is_state && !(th && !json_is_null(th)) && !rule->id) {
                reply_error(r, 400, "invalid_argument", "threshold", "Field 'threshold' is required for a rule on metric '%s'.", rule->metric);
                return false;
        }
        if (!one_of(rule->severity, SEVERITIES)) {
                reply_error(r, 400, "invalid_argument", "severity", "Field 'severity' must be info, warning or critical, not '%s'.", rule->severity);
                return false;
        }
        if (!one_of(rule->scope, SCOPES)) {
                reply_error(r, 400, "invalid_argument", "scope", "Field 'scope' must be all, group or object, not '%s'.", rule->scope);
                return false;
        }
        if (streq(rule->scope, "all"))
                rule->scope_id = 0;
        else {
                json_t *target = streq(rule->scope, "group") ? store_group_get(r->api->st, rule->scope_id)
                               : streq(rule->object_kind, "vm") ? store_vm_get_json(r->api->st, rule->scope_id)
                               : store_host_get_json(r->api->st, rule->scope_id);
                bool ok = target != NULL;
                json_decref(target);
                if (!ok) {
                        reply_error(r, 422, "not_found", "scope_id", "Field 'scope_id' must name an existing %s; there is none with id %lld.",
                                    streq(rule->scope, "group") ? "host group" : rule->object_kind, (long long) rule->scope_id);
                        return false;
                }
        }
        return true;
}

static bool may_read_rules(Req *r) {
        if (sees_everything(r))
                return true;
        reply_error(r, 403, "forbidden", NULL, "User '%s' (%s) may not read alert rules.", r->user.name, r->user.role);
        return false;
}

static void h_rules_list(Req *r) {
        if (!may_read_rules(r))
                return;
        json_t *arr = store_alert_rule_list_json(r->api->st);
        if (!arr)
                return reply_error(r, 500, "internal", NULL, "A database error occurred while listing alert rules.");
        reply(r, 200, json_pack("{s:o}", "items", arr));
}

static void h_rule_get(Req *r) {
        if (!may_read_rules(r))
                return;
        json_t *o = store_alert_rule_get_json(r->api->st, r->id[0]);
        if (!o)
                return reply_error(r, 404, "not_found", NULL, "There is no alert rule with id %lld.", (long long) r->id[0]);
        reply(r, 200, o);
}

static void h_rules_create(Req *r) {
        if (!api_allowed(r, ACT_CREATE, OBJ_SYSTEM, 0, 0))
                return deny(r, "create", "alert rule", 0, NULL);
        StoreAlertRule rule = { .enabled = true };
        const char *description = NULL;
        if (!rule_from_body(r, &rule, &description))
                return;
        int64_t id;
        int e = store_alert_rule_insert(r->api->st, &rule, description, &id);
        if (e == -EEXIST)
                return reply_error(r, 409, "conflict", "name", "An alert rule named '%s' already exists.", rule.name);
        if (e < 0)
                return reply_store_error(r, e, "The alert rule");
        audit(r, "alert-rule.create", "alert-rule", id, rule.name, NULL, "ok");
        reply(r, 201, store_alert_rule_get_json(r->api->st, id));
}

static void h_rule_update(Req *r) {
        if (!api_allowed(r, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return deny(r, "change", "alert rule", r->id[0], NULL);
        StoreAlertRule rule;
        if (store_alert_rule_get(r->api->st, r->id[0], &rule) < 0)
                return reply_error(r, 404, "not_found", NULL, "There is no alert rule with id %lld.", (long long) r->id[0]);
        _cleanup_json_ json_t *old = store_alert_rule_get_json(r->api->st, r->id[0]);
        const char *description = old ? json_string_value(json_object_get(old, "description")) : NULL;
        if (!rule_from_body(r, &rule, &description))
                return;
        int e = store_alert_rule_update(r->api->st, &rule, description);
        if (e == -EEXIST)
                return reply_error(r, 409, "conflict", "name", "An alert rule named '%s' already exists.", rule.name);
        if (e < 0)
                return reply_store_error(r, e, "The alert rule");
        audit(r, "alert-rule.update", "alert-rule", rule.id, rule.name, NULL, "ok");
        reply(r, 200, store_alert_rule_get_json(r->api->st, rule.id));
}

static void h_rule_delete(Req *r) {
        if (!api_allowed(r, ACT_DELETE, OBJ_SYSTEM, 0, 0))
                return deny(r, "delete", "alert rule", r->id[0], NULL);
        StoreAlertRule rule;
        if (store_alert_rule_get(r->api->st, r->id[0], &rule) < 0)
                return reply_error(r, 404, "not_found", NULL, "There is no alert rule with id %lld.", (long long) r->id[0]);
        if (rule.builtin)
                return reply_error(r, 409, "conflict", NULL, "Alert rule '%s' is built in and cannot be deleted; disable it instead"
                                   " (PATCH with \"enabled\": false).", rule.name);
        int e = store_alert_rule_delete(r->api->st, r->id[0]);
        if (e < 0)
                return reply_store_error(r, e, "The alert rule");
        audit(r, "alert-rule.delete", "alert-rule", rule.id, rule.name, NULL, "ok");
        reply(r, 204, NULL);
}

/* ------------------------------------------------------------------ */
/* webhooks */

static bool url_ok(Req *r, const char *field, const char *url) {
        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
                reply_error(r, 400, "invalid_argument", field, "Field '%s' must be an http:// or https:// URL; '%.200s' is not.", field, url);
                return false;
        }
        for (const char *p = url; *p; p++)
                if (*p <= ' ') {
                        reply_error(r, 400, "invalid_argument", field, "Field '%s' must not contain spaces or control characters.", field);
                        return false;
                }
        return true;
}

static void h_webhooks_list(Req *r) {
        if (!api_allowed(r, ACT_READ, OBJ_SYSTEM, 0, 0))
                return deny(r, "list", "webhooks", 0, NULL);
        json_t *arr = store_webhook_list_json(r->api->st);
        if (!arr)
                return reply_error(r, 500, "internal", NULL, "A database error occurred while listing webhooks.");
        reply(r, 200, json_pack("{s:o}", "items", arr));
}

static void h_webhook_get(Req *r) {
        if (!api_allowed(r, ACT_READ, OBJ_SYSTEM, 0, 0))
                return deny(r, "read", "webhook", r->id[0], NULL);
        json_t *o = store_webhook_get_json(r->api->st, r->id[0]);
        if (!o)
                return reply_error(r, 404, "not_found", NULL, "There is no webhook with id %lld.", (long long) r->id[0]);
        reply(r, 200, o);
}

static void h_webhooks_create(Req *r) {
        static const char *const fields[] = { "url", "description", NULL };
        if (!api_allowed(r, ACT_CREATE, OBJ_SYSTEM, 0, 0))
                return deny(r, "create", "webhook", 0, NULL);
        const char *url = NULL, *description = NULL;
        if (!req_body_fields(r, fields) || !body_string(r, "url", true, 1000, &url) ||
            !body_string(r, "description", false, 500, &description) || !url_ok(r, "url", url))
                return;
        int64_t id;
        int e = store_webhook_insert(r->api->st, url, description, &id);
        if (e == -EEXIST)
                return reply_error(r, 409, "conflict", "url", "A webhook for '%.200s' already exists.", url);
        if (e < 0)
                return reply_store_error(r, e, "The webhook");
        audit(r, "webhook.create", "webhook", id, NULL, url, "ok");
        reply(r, 201, store_webhook_get_json(r->api->st, id));
}

static void h_webhook_delete(Req *r) {
        if (!api_allowed(r, ACT_DELETE, OBJ_SYSTEM, 0, 0))
                return deny(r, "delete", "webhook", r->id[0], NULL);
        int e = store_webhook_delete(r->api->st, r->id[0]);
        if (e == -ENOENT)
                return reply_error(r, 404, "not_found", NULL, "There is no webhook with id %lld.", (long long) r->id[0]);
        if (e < 0)
                return reply_store_error(r, e, "The webhook");
        audit(r, "webhook.delete", "webhook", r->id[0], NULL, NULL, "ok");
        reply(r, 204, NULL);
}

/* ------------------------------------------------------------------ */
/* consolidation assessment */

static bool may_read_assessment(Req *r) {
        if (sees_everything(r))
                return true;
        reply_error(r, 403, "forbidden", NULL, "User '%s' (%s) may not read the assessment.", r->user.name, r->user.role);
        return false;
}

static void h_assess_list(Req *r) {
        if (!may_read_assessment(r))
                return;
        json_t *arr = store_assess_list_json(r->api->st);
        if (!arr)
                return reply_error(r, 500, "internal", NULL, "A database error occurred while listing the assessment.");
        reply(r, 200, json_pack("{s:o}", "items", arr));
}

static void h_assess_get(Req *r) {
        if (!may_read_assessment(r))
                return;
        json_t *o = store_assess_get_json(r->api->st, r->id[0]);
        if (!o)
                return reply_error(r, 404, "not_found", NULL, "There is no assessed server with id %lld.", (long long) r->id[0]);
        reply(r, 200, o);
}

static void h_assess_create(Req *r) {
        static const char *const fields[] = { "name", "node_exporter", "ssh", NULL };
        if (!api_allowed(r, ACT_CREATE, OBJ_SYSTEM, 0, 0))
                return deny(r, "add", "server to the assessment", 0, NULL);
        const char *name = NULL, *url = NULL, *ssh = NULL;
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &name) ||
            !body_string(r, "node_exporter", false, 1000, &url) || !body_string(r, "ssh", false, 200, &ssh))
                return;
        if (ssh)
                return reply_error(r, 422, "unsupported", "ssh", "Sampling over ssh is not supported yet; run node_exporter on '%s'"
                                   " and give its URL in 'node_exporter'.", name);
        if (!url)
                return reply_error(r, 400, "invalid_argument", "node_exporter", "Field 'node_exporter' is required: the URL of"
                                   " node_exporter's metrics on '%s', such as http://%s:9100/metrics.", name, name);
        if (!url_ok(r, "node_exporter", url))
                return;
        /* node_exporter serves /metrics; accept its base URL too. */
        _cleanup_free_ char *full = NULL;
        const char *after = strstr(url, "://") + 3;
        if (!strchr(after, '/'))
                full = xasprintf("%s/metrics", url);
        int64_t id;
        int e = store_assess_insert(r->api->st, name, full ? full : url, &id);
        if (e == -EEXIST)
                return reply_error(r, 409, "conflict", "name", "Server '%s' is already in the assessment.", name);
        if (e < 0)
                return reply_store_error(r, e, "The assessed server");
        audit(r, "assessment.add", "assess-server", id, name, full ? full : url, "ok");
        reply(r, 201, store_assess_get_json(r->api->st, id));
}

static void h_assess_delete(Req *r) {
        if (!api_allowed(r, ACT_DELETE, OBJ_SYSTEM, 0, 0))
                return deny(r, "remove", "server from the assessment", r->id[0], NULL);
        int e = store_assess_delete(r->api->st, r->id[0]);
        if (e == -ENOENT)
                return reply_error(r, 404, "not_found", NULL, "There is no assessed server with id %lld.", (long long) r->id[0]);
        if (e < 0)
                return reply_store_error(r, e, "The assessed server");
        audit(r, "assessment.remove", "assess-server", r->id[0], NULL, NULL, "ok");
        reply(r, 204, NULL);
}

static void h_assess_report(Req *r) {
        if (!may_read_assessment(r))
                return;
        int64_t cpus, mem, iops, mbit, rcpu, rmem, window;
        if (!req_query_int(r, "host_cpus", 32, 1, 4096, &cpus) ||
            !req_query_int(r, "host_memory_mib", 262144, 1, 1LL << 32, &mem) ||
            !req_query_int(r, "host_disk_iops", 100000, 1, 1LL << 32, &iops) ||
            !req_query_int(r, "host_network_mbit", 10000, 1, 1LL << 32, &mbit) ||
            !req_query_int(r, "reserve_cpu_pct", 20, 0, 99, &rcpu) ||
            !req_query_int(r, "reserve_memory_mib", 4096, 0, 1LL << 32, &rmem) ||
            !req_query_int(r, "window_s", 7 * 24 * 3600, 1, 365LL * 24 * 3600, &window))
                return;
        PlaceHostModel model = {0};
        model.cap[PLACE_R_CPU] = (double) cpus * 100;
        model.cap[PLACE_R_MEMORY] = (double) mem;
        model.cap[PLACE_R_DISK] = 1e12;   /* disk space is not sampled: never the limit */
        model.cap[PLACE_R_DISK_IO] = (double) iops;
        model.cap[PLACE_R_NETWORK] = (double) mbit;
        model.reserve.cpu_pct = (double) rcpu;
        model.reserve.memory_mib = (double) rmem;
        char why[256];
        json_t *rep = monitor_assess_report_json(r->api->st, &model, window * 1000, now_ms(), why, sizeof why);
        if (!rep)
                return reply_error(r, 400, "invalid_argument", NULL, "%s", why);
        reply(r, 200, rep);
}

/* ------------------------------------------------------------------ */
/* Prometheus */

static void h_prometheus(Req *r) {
        if (!r->api->cfg.metrics_public) {
                /* An administrator's token, from the loopback too: the
                 * metrics name every host and VM of the estate. */
                const char *h = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Authorization");
                StoreUser u;
                char hash[65];
                AuthRole role;
                if (!h || strncasecmp(h, "Bearer ", 7) != 0 || strlen(h + 7) != AUTH_TOKEN_LEN)
                        return reply_error(r, 401, "unauthenticated", NULL, "The metrics need an administrator's bearer token"
                                           " (or armadad --metrics-public).");
                auth_token_hash(h + 7, hash);
                if (store_token_user(r->api->st, hash, now_ms(), &u) < 0 || auth_role_parse(u.role, &role) < 0)
                        return reply_error(r, 401, "unauthenticated", NULL, "The token is not valid (expired or revoked).");
                if (role != ROLE_ADMIN)
                        return reply_error(r, 403, "forbidden", NULL, "The metrics are for administrators (or armadad --metrics-public).");
        }
        MonitorProcess self;
        bool have_self = monitor_process_read(&self) == 0;
        _cleanup_model_snap_ ModelSnap *snap = model_snap(r->api->model);
        char *text = monitor_prometheus_text_from(r->api->st, snap, have_self ? &self : NULL,
                                             __atomic_load_n(&r->api->login_rate_limited, __ATOMIC_RELAXED));
        if (!text)
                return reply_error(r, 500, "internal", NULL, "A database error occurred while exposing the metrics.");
        unsigned open;
        uint64_t opened;
        api_streams_counts(r->api, &open, &opened);
        ModelStats ms;
        model_stats(r->api->model, &ms);
        char *all = xasprintf("%s# HELP armada_event_streams Event streams (GET /api/v1/events/stream) open now.\n"
                              "# TYPE armada_event_streams gauge\narmada_event_streams %u\n"
                              "# HELP armada_event_streams_opened_total Event streams opened since armadad started.\n"
                              "# TYPE armada_event_streams_opened_total counter\narmada_event_streams_opened_total %llu\n"
                              "# HELP armada_read_model_batches_total Committed row changes the read model applied.\n"
                              "# TYPE armada_read_model_batches_total counter\narmada_read_model_batches_total %llu\n"
                              "# HELP armada_read_model_rows_read_total Rows the read model re-read from the database for them.\n"
                              "# TYPE armada_read_model_rows_read_total counter\narmada_read_model_rows_read_total %llu\n",
                              text, open, (unsigned long long) opened, (unsigned long long) ms.batches,
                              (unsigned long long) ms.rows_read);
        free(text);
        text = all;
        r->status = 200;
        r->raw = text;
        r->raw_len = strlen(text);
        r->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

const Route api_routes_monitor[] = {
        { "GET", "/metrics", h_prometheus, true },
        { "GET", "/api/v1/metrics", h_prometheus, true },
        { "GET", "/api/v1/metrics/*/#", h_series, false },
        { "GET", "/api/v1/health", h_health, false },
        { "GET", "/api/v1/alerts", h_alerts_list, false },
        { "GET", "/api/v1/alerts/#", h_alert_get, false },
        { "POST", "/api/v1/alerts/#/actions/acknowledge", h_alert_ack, false },
        { "GET", "/api/v1/alert-rules", h_rules_list, false },
        { "POST", "/api/v1/alert-rules", h_rules_create, false },
        { "GET", "/api/v1/alert-rules/#", h_rule_get, false },
        { "PATCH", "/api/v1/alert-rules/#", h_rule_update, false },
        { "DELETE", "/api/v1/alert-rules/#", h_rule_delete, false },
        { "GET", "/api/v1/webhooks", h_webhooks_list, false },
        { "POST", "/api/v1/webhooks", h_webhooks_create, false },
        { "GET", "/api/v1/webhooks/#", h_webhook_get, false },
        { "DELETE", "/api/v1/webhooks/#", h_webhook_delete, false },
        { "GET", "/api/v1/assessments", h_assess_list, false },
        { "POST", "/api/v1/assessments", h_assess_create, false },
        { "GET", "/api/v1/assessments/report", h_assess_report, false },
        { "GET", "/api/v1/assessments/#", h_assess_get, false },
        { "DELETE", "/api/v1/assessments/#", h_assess_delete, false },
        { NULL, NULL, NULL, false },
};
