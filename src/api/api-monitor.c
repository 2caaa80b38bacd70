/* The monitor capability's REST resources: performance series, the health
 * tree, alerts and their rules, webhooks, the consolidation assessment, and
 * the Prometheus exposition. Each handler parses the request, calls one
 * operation of the monitor module (monitor.h) and maps its result.
 *
 * GET /metrics (and its alias GET /api/v1/metrics) needs a bearer token of
 * an administrator or a read-only operator, from the loopback too (any local
 * user could scrape it otherwise), because the exposition names every host
 * and VM; armadad --metrics-public lifts that for a trusted network. */
#include "api-priv.h"
#include "protect/protect.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "monitor/monitor.h"

#define ALERT_LIMIT_MAX 10000

/* The result of an operation: status with out, or the OpError. */
/* ------------------------------------------------------------------ */
/* series */

static void h_series(Req *r) {
        const char *kind = r->word[0];
        if (!streq(kind, "host") && !streq(kind, "vm"))
                return reply_error(r, 404, "not_found", NULL, "There are no metrics of kind '%.32s'; use 'host' or 'vm'.", kind);
        int64_t now = now_ms(), last, from, to, step;
        if (!req_query_int(r, "last", 3600, 1, 400LL * 24 * 3600, &last) ||
            !req_query_int(r, "to", now, 0, INT64_MAX / 2, &to) ||
            !req_query_int(r, "from", to - last * 1000, 0, INT64_MAX / 2, &from) ||
            !req_query_int(r, "step", 0, 0, 30LL * 24 * 3600, &step))
                return;
        MonitorSeriesSpec spec = { .vm = streq(kind, "vm"), .id = r->id[0], .metric = req_query(r, "metric"), .from = from, .to = to,
                                   .step_ms = step * 1000 };
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = monitor_op_series(r->api->st, &c, &spec, &out, &err);
        reply_result(r, e, &err, 200, out);
}

/* ------------------------------------------------------------------ */
/* health */

static void answer_free(void *cls) {
        monitor_answer_unref(cls);
}

/* Sends len bytes at p that belong to answer a, without copying them: the
 * response holds a reference until MHD is done with it (takes a's). */
static void reply_answer_bytes(Req *r, MonitorAnswer *a, const char *p, size_t len) {
        struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(len, (void *) p, answer_free, a);
        if (!resp) {
                monitor_answer_unref(a);
                return reply_error(r, 500, "internal", NULL, "The answer could not be sent.");
        }
        r->status = 200;
        r->mhd_resp = resp;
}

static void h_health(Req *r) {
        int64_t fresh;
        if (!req_query_int(r, "fresh", 0, 0, 1, &fresh))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        MonitorHealthReply rep;
        _cleanup_model_snap_ ModelSnap *snap = model_snap(r->api->model);
        if (monitor_op_health_answer(r->api->st, snap, &c, fresh == 1, &rep, &err) < 0)
                return reply_op_error(r, &err);
        reply_header(r, "ETag", rep.etag);
        reply_header(r, "Vary", "Accept-Encoding");
        if (api_etag_matches(r, rep.etag)) {
                monitor_answer_unref(rep.answer);
                r->status = 304;
                return;
        }
        r->content_type = "application/json";
        bool gz = api_accepts_gzip(r);
        if (rep.whole) {
                /* The built bytes themselves (gzip built once with them). */
                MonitorAnswer *a = rep.answer;
                if (gz && a->gz) {
                        reply_header(r, "Content-Encoding", "gzip");
                        return reply_answer_bytes(r, a, a->gz, a->gz_len);
                }
                return reply_answer_bytes(r, a, a->text, a->len);
        }
        /* A view of the answer, kept with it (one build per scope and answer). */
        MonitorView *owned = NULL;
        const MonitorView *v = monitor_health_view(r->api->st, &c, &rep, &owned);
        bool use_gz = gz && v->gz;
        if (use_gz)
                reply_header(r, "Content-Encoding", "gzip");
        if (!owned)
                return reply_answer_bytes(r, rep.answer, use_gz ? v->gz : v->text, use_gz ? v->gz_len : v->len);
        monitor_answer_unref(rep.answer);
        r->status = 200;
        r->raw = use_gz ? owned->gz : owned->text;
        r->raw_len = use_gz ? owned->gz_len : owned->len;
        if (use_gz)
                owned->gz = NULL;
        else
                owned->text = NULL;
        monitor_view_free(owned);
}

/* ------------------------------------------------------------------ */
/* alerts */

static void h_alerts_list(Req *r) {
        const char *state = req_query(r, "state");
        if (state && !streq(state, "open") && !streq(state, "resolved") && !streq(state, "all"))
                return reply_error(r, 400, "invalid_argument", "state", "Query 'state' must be open, resolved or all, not '%.32s'.", state);
        int64_t limit;
        if (!req_query_int(r, "limit", 200, 1, ALERT_LIMIT_MAX, &limit))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = monitor_op_alert_list(r->api->st, &c, state && !streq(state, "all") ? state : NULL, (int) limit, &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_alert_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = monitor_op_alert_get(r->api->st, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_alert_ack(Req *r) {
        static const char *const fields[] = { NULL };
        if (!req_body_fields(r, fields))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = monitor_op_alert_ack(r->api->st, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 200, out);
}

/* ------------------------------------------------------------------ */
/* alert rules */

static const char *const RULE_FIELDS[] = { "name", "object_kind", "metric", "comparison", "threshold", "state", "duration_s",
                                           "severity", "scope", "scope_id", "enabled", "description", NULL };

/* The body's changes to a rule (name required when creating). false with
 * a 400 sent when a field has the wrong type. */
static bool rule_patch_from_body(Req *r, bool creating, MonitorRulePatch *p) {
        *p = (MonitorRulePatch) { .duration_s = -1, .scope_id = -1, .enabled = -1 };
        bool enabled = false;
        if (!req_body_fields(r, RULE_FIELDS) || !body_name(r, "name", creating, &p->name) ||
            !body_string(r, "object_kind", false, 8, &p->object_kind) || !body_string(r, "metric", false, 24, &p->metric) ||
            !body_string(r, "comparison", false, 3, &p->comparison) || !body_string(r, "state", false, 23, &p->state) ||
            !body_int(r, "duration_s", false, 0, 7 * 24 * 3600, &p->duration_s) ||
            !body_string(r, "severity", false, 16, &p->severity) || !body_string(r, "scope", false, 8, &p->scope) ||
            !body_int(r, "scope_id", false, 0, INT64_MAX, &p->scope_id) || !body_bool(r, "enabled", &enabled) ||
            !body_string(r, "description", false, 500, &p->description))
                return false;
        json_t *en = r->json ? json_object_get(r->json, "enabled") : NULL;
        if (en && !json_is_null(en))   /* body_bool() leaves it alone when absent or null */
                p->enabled = enabled;
        p->has_description = p->description != NULL;
        json_t *th = r->json ? json_object_get(r->json, "threshold") : NULL;
        if (th && !json_is_null(th)) {
                if (!json_is_number(th) || !isfinite(json_number_value(th))) {
                        reply_error(r, 400, "invalid_argument", "threshold", "Field 'threshold' must be a number.");
                        return false;
                }
                p->has_threshold = true;
                p->threshold = json_number_value(th);
        }
        return true;
}

static void h_rules_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = monitor_op_rule_list(r->api->st, &c, &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_rule_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = monitor_op_rule_get(r->api->st, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_rules_create(Req *r) {
        MonitorRulePatch p;
        if (!rule_patch_from_body(r, true, &p))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = monitor_op_rule_create(r->api->st, &c, &p, &out, &err);
        reply_result(r, e, &err, 201, out);
}

static void h_rule_update(Req *r) {
        MonitorRulePatch p;
        if (!rule_patch_from_body(r, false, &p))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = monitor_op_rule_update(r->api->st, &c, r->id[0], &p, &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_rule_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        int e = monitor_op_rule_delete(r->api->st, &c, r->id[0], &err);
        reply_result(r, e, &err, 204, NULL);
}

/* ------------------------------------------------------------------ */
/* webhooks */

static void h_webhooks_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = monitor_op_webhook_list(r->api->st, &c, &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_webhook_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = monitor_op_webhook_get(r->api->st, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_webhooks_create(Req *r) {
        static const char *const fields[] = { "url", "description", NULL };
        const char *url = NULL, *description = NULL;
        if (!req_body_fields(r, fields) || !body_string(r, "url", true, 1000, &url) ||
            !body_string(r, "description", false, 500, &description))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = monitor_op_webhook_create(r->api->st, &c, url, description, &out, &err);
        reply_result(r, e, &err, 201, out);
}

static void h_webhook_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        int e = monitor_op_webhook_delete(r->api->st, &c, r->id[0], &err);
        reply_result(r, e, &err, 204, NULL);
}

/* ------------------------------------------------------------------ */
/* consolidation assessment */

static void h_assess_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = monitor_op_assess_list(r->api->st, &c, &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_assess_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = monitor_op_assess_get(r->api->st, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_assess_create(Req *r) {
        static const char *const fields[] = { "name", "node_exporter", "ssh", NULL };
        const char *name = NULL, *url = NULL, *ssh = NULL;
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &name) ||
            !body_string(r, "node_exporter", false, 1000, &url) || !body_string(r, "ssh", false, 200, &ssh))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = monitor_op_assess_create(r->api->st, &c, name, url, ssh, &out, &err);
        reply_result(r, e, &err, 201, out);
}

static void h_assess_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        int e = monitor_op_assess_delete(r->api->st, &c, r->id[0], &err);
        reply_result(r, e, &err, 204, NULL);
}

static void h_assess_report(Req *r) {
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
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = monitor_op_assess_report(r->api->st, &c, &model, window * 1000, &out, &err);
        reply_result(r, e, &err, 200, out);
}

/* ------------------------------------------------------------------ */
/* Prometheus */

static void h_prometheus(Req *r) {
        unsigned open;
        uint64_t opened;
        api_streams_counts(r->api, &open, &opened);
        ModelStats ms;
        model_stats(r->api->model, &ms);
        _cleanup_free_ char *extra = xasprintf(
                "# HELP armada_event_streams Event streams (GET /api/v1/events/stream) open now.\n"
                "# TYPE armada_event_streams gauge\narmada_event_streams %u\n"
                "# HELP armada_event_streams_opened_total Event streams opened since armadad started.\n"
                "# TYPE armada_event_streams_opened_total counter\narmada_event_streams_opened_total %llu\n"
                "# HELP armada_read_model_batches_total Committed row changes the read model applied.\n"
                "# TYPE armada_read_model_batches_total counter\narmada_read_model_batches_total %llu\n"
                "# HELP armada_read_model_rows_read_total Rows the read model re-read from the database for them.\n"
                "# TYPE armada_read_model_rows_read_total counter\narmada_read_model_rows_read_total %llu\n",
                open, (unsigned long long) opened, (unsigned long long) ms.batches, (unsigned long long) ms.rows_read);
        _cleanup_free_ char *datastores = protect_metrics_text(r->api->st); /* the cached usage: no walk */
        if (datastores && *datastores) {
                char *both = xasprintf("%s%s", extra, datastores);
                free(extra);
                extra = both;
        }
        MonitorPromSpec spec = { .authorization = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Authorization"),
                                 .metrics_public = r->api->cfg.metrics_public,
                                 .login_rate_limited = __atomic_load_n(&r->api->login_rate_limited, __ATOMIC_RELAXED),
                                 .extra = extra, .gzip = api_accepts_gzip(r) };
        char *text = NULL;
        size_t len = 0;
        bool gz = false;
        OpError err = {0};
        _cleanup_model_snap_ ModelSnap *snap = model_snap(r->api->model);
        if (monitor_op_prometheus(r->api->st, snap, &spec, &text, &len, &gz, &err) < 0)
                return reply_op_error(r, &err);
        if (gz)
                reply_header(r, "Content-Encoding", "gzip");
        reply_header(r, "Vary", "Accept-Encoding");
        r->status = 200;
        r->raw = text;
        r->raw_len = len;
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
