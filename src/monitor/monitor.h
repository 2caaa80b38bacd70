/* monitor: Armada's Operations Manager. A collector thread samples every
 * connected host and VM on a fixed interval (one bulk libvirt stats call per
 * host), turns counters into rates, writes the time series (raw, 5-minute
 * and 1-hour rollups with average and maximum, pruned by age) in one
 * transaction per round, feeds placement a high percentile of each host's
 * recent load (host_usage), evaluates alert rules (alerts open, update and
 * resolve themselves; events record it), and queues webhook notifications
 * that a second thread delivers with retries and backoff, so a dead webhook
 * never holds anything up. A third thread scrapes node_exporter on physical
 * servers registered for a consolidation assessment.
 *
 * The rest of this header: the read side the API uses (series, health tree,
 * Prometheus exposition, assessment report), then the pure functions those
 * are built from, exported for the unit tests. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "hv/hv.h"
#include "op/op.h"
#include "place/place.h"
#include "model/model.h"
#include "store/store-monitor.h"

/* ---- retention ---- */
typedef struct {
        int64_t raw_ms;          /* default 24 h */
        int64_t rollup_5m_ms;    /* default 30 days */
        int64_t rollup_1h_ms;    /* default 365 days */
} MonRetention;
#define MON_STEP_5M_MS (5 * 60 * 1000LL)
#define MON_STEP_1H_MS (60 * 60 * 1000LL)
/* Fills in defaults for zero fields. */
void mon_retention_defaults(MonRetention *r);

/* ---- the running monitor ---- */

/* Calls fn for every host with a live libvirt connection (the daemon passes
 * inventory_each_connection). Returns the number of hosts visited. */
typedef void (*MonitorConnFn)(void *userdata, int64_t host_id, HvConn *conn);
typedef int (*MonitorEachConn)(void *source, MonitorConnFn fn, void *userdata);

typedef struct {
        int interval_ms;                 /* collection interval, default 10000 */
        MonRetention retention;
        int usage_window_ms;             /* window of host_usage's percentile, default 300000 */
        double usage_percentile;         /* default 95 */
        double disk_capacity_bps;        /* a host's nominal disk throughput for disk_io_pct, default 500 MiB/s */
        double net_capacity_bps;         /* nominal network throughput for network_pct, default 1 Gbit/s */
        int webhook_backoff_ms;          /* first retry delay, doubling; default 1000 */
        int webhook_max_attempts;        /* default 8 */
        int webhook_timeout_ms;          /* per POST, default 5000 */
        int assess_interval_ms;          /* node_exporter scrape interval, default 60000 */
        int64_t audit_retention_ms;      /* audit rows older than this are pruned, default 90 days */
        MonitorEachConn each_conn;       /* required for sampling hosts */
        void *conn_source;
        Model *model;                    /* optional: after each round monitor_answers_warm() gets a snapshot of it */
} MonitorConfig;

typedef struct Monitor Monitor;

/* Creates a monitor (no threads yet). 0 and *ret, or negative. */
int monitor_new(Store *st, const MonitorConfig *cfg, Monitor **ret);
/* Starts the collector, webhook and assessment threads. 0 or -errno. */
int monitor_start(Monitor *m);
/* Stops the threads (waits for a round or a POST in progress to end). */
void monitor_stop(Monitor *m);
/* Stops and frees. Accepts NULL; returns NULL. */
Monitor *monitor_free(Monitor *m);
/* Runs one collection round at wall time now in the calling thread (the
 * collector does this every interval; tests and the benchmark call it).
 * Returns the number of objects sampled, or negative. */
int monitor_round(Monitor *m, int64_t now);
/* What the rounds since the start skipped because nothing changed: a
 * perf_latest row is written only when its object's figures or detail
 * differ from the row's (the others keep theirs: equal values, and their
 * `at` the time of the last change), and the health tree is built only
 * when the hosts, VMs, groups or open alerts changed. Collector thread
 * (or the caller of monitor_round()). */
typedef struct {
        uint64_t latest_written, latest_skipped;
        uint64_t health_builds, health_skips;
} MonitorRoundStats;
void monitor_round_stats(const Monitor *m, MonitorRoundStats *ret);
/* Evaluates the state rules without a duration (host-unreachable,
 * host-failed, host-fenced and the like) for one host now, in the calling
 * thread, instead of at the next round: alerts open or resolve with their
 * events, and their webhooks are queued and the delivery thread woken.
 * For the inventory's host-state hook (inventory_on_host_state()). Accepts
 * m NULL. 0 or negative. */
int monitor_host_state_changed(Monitor *m, int64_t host_id);
/* Opens (stuck) or resolves (not stuck) the alert of a stuck job, with its
 * event and webhooks: for the job engine's stuck hook (jobs_on_stuck()).
 * The alert has no rule (rule_id null, rule_name "job-stuck", severity
 * warning, object_kind "job"); name is what it shows as the object's name.
 * Accepts m NULL. 0 or negative. */
int monitor_job_stuck_changed(Monitor *m, int64_t job_id, const char *name, int64_t owner_id, bool stuck, const char *message);
/* Opens (open) or resolves an alert no rule raises on any object -- a
 * datastore whose verify found points that cannot be restored -- with its
 * event and webhooks: rule_name is what it shows as its rule (severity
 * critical). Accepts m NULL. 0 or negative. */
int monitor_object_alert_changed(Monitor *m, const char *rule_name, const char *object_kind, int64_t object_id,
                                 const char *name, bool open, const char *message);
/* Runs one assessment scrape of every registered server now. */
int monitor_assess_round(Monitor *m, int64_t now);

/* ---- the read side (used by the API; each reads the store only) ---- */

/* The series of one object: metric NULL for every metric. from/to in ms,
 * step in ms (0 picks one for about 300 points). The tier is the finest
 * whose retention still covers from and whose resolution is not finer than
 * step; points are re-bucketed to step (average weighted by sample count,
 * maximum of maxima). Returns a new JSON object, or NULL with a sentence in
 * why (metric unknown, from >= to). */
json_t *monitor_series_json(Store *st, StorePerfKind kind, int64_t object_id, const char *metric, int64_t from,
                            int64_t to, int64_t step, const MonRetention *ret_cfg, char *why, size_t why_size);

/* The health tree: host groups (nested) with their hosts, hosts with their
 * VMs, each node {kind, id, name, health, reasons[]}; health rolls up as the
 * worst of the node's own and its children's. NULL on a database error. */
json_t *monitor_health_json(Store *st);
/* The same with the hosts and VMs of a read-model snapshot (model.h) instead
 * of SQL; snap NULL reads the store. */
json_t *monitor_health_json_from(Store *st, const ModelSnap *snap);

/* Armadad's own process figures for /metrics. */
typedef struct {
        double cpu_seconds;
        double resident_bytes;
        double start_time_seconds;
        double open_fds;
} MonitorProcess;
/* Reads /proc/self. 0 or -errno. */
int monitor_process_read(MonitorProcess *ret);
/* The Prometheus text exposition (format 0.0.4) of hosts, VMs, jobs,
 * alerts, webhooks and armadad itself (self may be NULL: no process_*
 * figures), with login_rate_limited as armada_login_rate_limited_total (the
 * API's count of logins refused by the failed-login limiter). malloc'd;
 * NULL on a database error. */
char *monitor_prometheus_text(Store *st, const MonitorProcess *self, uint64_t login_rate_limited);
/* The same with the hosts and VMs of a read-model snapshot; NULL: the store. */
char *monitor_prometheus_text_from(Store *st, const ModelSnap *snap, const MonitorProcess *self, uint64_t login_rate_limited);
/* Its two parts: the families of the hosts and VMs (the bulk; changes with
 * the read model and each monitor round), and the rest (jobs, alerts,
 * deliveries, the monitor's and the process's own figures). */
char *monitor_prometheus_objects_text(Store *st, const ModelSnap *snap);
char *monitor_prometheus_rest_text(Store *st, const MonitorProcess *self, uint64_t login_rate_limited);
/* The rest's two parts: what it reads from the store (jobs, alerts and
 * webhook deliveries by state, the monitor's figures; NULL on a database
 * error), and what it does not (armada_up, the login limiter, the process;
 * self may be NULL). Both malloc'd. */
char *monitor_prometheus_counts_text(Store *st);
char *monitor_prometheus_process_text(const MonitorProcess *self, uint64_t login_rate_limited);

/* The consolidation report over the last window_ms: every server's mean,
 * p95 and max CPU, memory, disk and network, a leaderboard (steady, low
 * utilisation first; spiky servers flagged and last), and the plan from
 * place_consolidate() onto hosts of model. New JSON object, or NULL with why. */
json_t *monitor_assess_report_json(Store *st, const PlaceHostModel *model, int64_t window_ms, int64_t now,
                                   char *why, size_t why_size);

/* ---- operations (monitor-ops.c) ----
 * Each decides one request of the API from start to end: what the caller
 * may see (what it may not is "not found"), its rights (a denial through
 * op_deny() is audited), the checks that need the database, the write, the
 * audit record and event. 0 with *ret set (a new reference), or -errno with
 * err filled and nothing changed. */

typedef struct {
        bool vm;                  /* a VM's series, else a host's */
        int64_t id;
        const char *metric;       /* NULL: every metric */
        int64_t from, to, step_ms;
} MonitorSeriesSpec;
/* The series of a host or VM the caller sees (monitor_series_json() plus
 * its "name"). */
int monitor_op_series(Store *st, const OpCaller *c, const MonitorSeriesSpec *spec, json_t **ret, OpError *err);
/* The health tree as far as the caller sees it: hidden nodes are left out
 * and their visible descendants lifted up; several roots under a "view".
 * Hosts and VMs come from snap (the read model) when given, else the store. */
int monitor_op_health(Store *st, const ModelSnap *snap, const OpCaller *c, json_t **ret, OpError *err);
/* Alerts (state "open", "resolved" or NULL for all; at most limit) the
 * caller sees: {"items": [...]}. */
int monitor_op_alert_list(Store *st, const OpCaller *c, const char *state, int limit, json_t **ret, OpError *err);
int monitor_op_alert_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* Acknowledges an alert the caller may operate on; raises
 * alert.acknowledged. *ret: the alert. */
int monitor_op_alert_ack(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err);

/* A request's changes to an alert rule: NULL strings, negative numbers and
 * has_* false leave the value as it is. */
typedef struct {
        const char *name, *object_kind, *metric, *comparison, *state, *severity, *scope;
        int64_t duration_s;       /* -1: unchanged */
        int64_t scope_id;         /* -1: unchanged */
        int enabled;              /* -1: unchanged, else 0 or 1 */
        bool has_threshold;
        double threshold;
        bool has_description;
        const char *description;
} MonitorRulePatch;
/* Alert rules, for administrators and read-only operators. */
int monitor_op_rule_list(Store *st, const OpCaller *c, json_t **ret, OpError *err);
int monitor_op_rule_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* Creates a rule from p (checked whole: kind, metric, comparison, state,
 * threshold, severity, scope and its target). */
int monitor_op_rule_create(Store *st, const OpCaller *c, const MonitorRulePatch *p, json_t **ret, OpError *err);
/* Applies p onto rule id and checks the result as create does. */
int monitor_op_rule_update(Store *st, const OpCaller *c, int64_t id, const MonitorRulePatch *p, json_t **ret, OpError *err);
/* Deletes a rule that is not built in. */
int monitor_op_rule_delete(Store *st, const OpCaller *c, int64_t id, OpError *err);

/* Webhooks (the system's, administrators only). create checks the URL
 * (http:// or https://, no spaces or control characters). */
int monitor_op_webhook_list(Store *st, const OpCaller *c, json_t **ret, OpError *err);
int monitor_op_webhook_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
int monitor_op_webhook_create(Store *st, const OpCaller *c, const char *url, const char *description, json_t **ret, OpError *err);
int monitor_op_webhook_delete(Store *st, const OpCaller *c, int64_t id, OpError *err);

/* The consolidation assessment's servers. create takes node_exporter's URL
 * (its base URL gets /metrics) and refuses ssh (not supported yet). */
int monitor_op_assess_list(Store *st, const OpCaller *c, json_t **ret, OpError *err);
int monitor_op_assess_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
int monitor_op_assess_create(Store *st, const OpCaller *c, const char *name, const char *node_exporter, const char *ssh,
                             json_t **ret, OpError *err);
int monitor_op_assess_delete(Store *st, const OpCaller *c, int64_t id, OpError *err);
/* The report (monitor_assess_report_json()) over the last window_ms. */
int monitor_op_assess_report(Store *st, const OpCaller *c, const PlaceHostModel *model, int64_t window_ms, json_t **ret,
                             OpError *err);

/* The Prometheus exposition: unless metrics_public, authorization (the
 * request's Authorization header, may be NULL) must carry an
 * administrator's bearer token (401/403 else). The hosts' and VMs' families
 * are the newest built answer (monitor_answers_start; at most
 * MONITOR_ANSWER_INTERVAL_MS plus a build old, armada_answer_age_seconds
 * says how old); the counts of jobs, alerts and deliveries and the
 * monitor's figures (monitor_prometheus_counts_text) are cached: read again
 * once a job, event or alert changed (store_counts_generation()) or a
 * monitor round ended, and at least every MONITOR_ANSWER_INTERVAL_MS (what
 * no generation tells: deliveries, jobs the retention removed); the
 * process's figures and extra (the API's own families) are read for the
 * request. *ret: malloc'd, gzip
 * (*ret_gzip, one gzip member of the whole text) when spec->gzip. */
typedef struct {
        const char *authorization;
        bool metrics_public;
        uint64_t login_rate_limited;
        const char *extra;        /* appended as is; may be NULL */
        bool gzip;                /* the client takes gzip */
} MonitorPromSpec;
int monitor_op_prometheus(Store *st, const ModelSnap *snap, const MonitorPromSpec *spec, char **ret, size_t *ret_len, bool *ret_gzip,
                          OpError *err);

/* ---- the answers of /health and /metrics ----
 * The newest built answer of each, immutable once built and shared by every
 * request that sends it (a reference each). A request never builds while an
 * answer exists: the builder thread rebuilds one when what it shows changed
 * (a host's or VM's name, state, place, owner or size, a group, the open
 * alerts for /health, a monitor round for /metrics -- not last_seen_at),
 * at most once per interval, so an answer is at most about an interval
 * plus a build behind. */
#define MONITOR_ANSWER_INTERVAL_MS 1000
typedef struct MonitorAnswer {
        int refs;                 /* atomic */
        int64_t built_at;         /* wall clock, ms since the epoch: when its inputs were read */
        int64_t built_mono;       /* the same moment, monotonic ms */
        uint64_t key;             /* digest of what it was built from */
        json_t *tree;             /* /health: the whole tree, "generated_at" in its root */
        char *text;               /* /health: the tree's bytes; /metrics: the hosts' and VMs' families */
        size_t len;
        char *gz;                 /* /health: gzip of text; /metrics: text as raw deflate, sync-flushed; NULL if none */
        size_t gz_len;
        uint32_t crc;             /* /metrics: crc32 of text */
        char etag[48];            /* W/"..." */
        /* /health: views of callers who see a part, built from it (and
         * freed with it), newest first: one build per scope and answer. */
        pthread_mutex_t views_lock;
        struct MonitorView *views;
        size_t n_views, views_bytes;
        /* /health: every host and VM node by (kind, id), for list rows
         * (monitor_answer_health()); built with the answer. */
        struct MonitorHealthRef *index;
        size_t n_index;
} MonitorAnswer;
/* One host's (vm false) or VM's health in a /health answer, as the members
 * `"health":"…","health_reasons":[…]` of a list row (the node's health and
 * reasons, JSON-escaped; no braces), for GET /hosts and /vms?health=1 on
 * estates whose whole tree is too large for the console. Borrowed: valid
 * while a is held. NULL when a does not name the object (created since a
 * was built, or a VM not placed). O(log n): a binary search of the index
 * built with the answer. */
const char *monitor_answer_health(const MonitorAnswer *a, bool vm, int64_t id, size_t *ret_len);

/* A caller's view of the /health answer, serialized (and gzip'd when over
 * 1 KiB; gz NULL else). */
typedef struct MonitorView {
        struct MonitorView *next;
        char etag[48];
        char *text;
        size_t len;
        char *gz;
        size_t gz_len;
} MonitorView;
void monitor_view_free(MonitorView *v);
MonitorAnswer *monitor_answer_ref(MonitorAnswer *a);
/* Accepts NULL; returns NULL. */
MonitorAnswer *monitor_answer_unref(MonitorAnswer *a);
static inline void monitor_answer_unrefp(MonitorAnswer **a) { monitor_answer_unref(*a); }

/* Starts the builder thread (one per process): every interval_ms (0: the
 * default) it takes a snapshot of model and rebuilds the answers whose
 * inputs changed. 0, -EALREADY or -errno. */
int monitor_answers_start(Store *st, Model *model, int64_t interval_ms);
/* Stops it (if started) and drops the answers. */
void monitor_answers_stop(void);
/* One step of the builder, on the caller's thread: rebuilds each answer
 * whose inputs changed since it was built. Bit 0: /health built, bit 1:
 * /metrics. (The builder's loop calls it; tests call it directly.) */
unsigned monitor_answers_step(Store *st, const ModelSnap *snap);
/* After a monitor round: without a builder thread, the step at once
 * (with one, its next step sees the new round). */
void monitor_answers_warm(Store *st, const ModelSnap *snap);
/* A counter that moves after a monitor round committed a change to
 * perf_latest (a round of unchanged figures leaves it): the /metrics
 * answer is keyed by it. */
uint64_t monitor_round_generation(void);

/* GET /health: the newest answer (a reference in ret->answer), built now
 * only when there is none yet or fresh asks for one built after the request
 * came (administrators only: it costs a build; 403 naming "fresh" else).
 * Whoever sees everything gets the answer's bytes (ret->whole); anyone else
 * their view of it (monitor_health_view), whose ETag (ret->etag) is the
 * answer's and who asks. */
typedef struct {
        MonitorAnswer *answer;
        bool whole;
        char etag[48];
} MonitorHealthReply;
int monitor_op_health_answer(Store *st, const ModelSnap *snap, const OpCaller *c, bool fresh, MonitorHealthReply *ret, OpError *err);
/* The caller's view of rep's tree (hidden nodes left out, visible
 * descendants lifted up, several roots under a "view"; generated_at kept).
 * Built once per answer and view ETag (copying only the visible nodes,
 * shallowly) and kept with the answer: the result is valid while
 * rep->answer is held. When the answer keeps no more views (16, or twice
 * its own size) the view is built for this call only: *ret_owned is set to
 * it (free with monitor_view_free) and returned. */
const MonitorView *monitor_health_view(Store *st, const OpCaller *c, const MonitorHealthReply *rep, MonitorView **ret_owned);

/* ================================================================== */
/* Pure functions: no I/O, no allocation unless stated.               */

/* Per-second rate of a counter between two samples, or NAN when the pair
 * gives none: prev_at <= 0 (no previous sample), cur_at <= prev_at, a gap
 * longer than max_gap_ms (a missed sample: the average over the gap would
 * hide peaks), or cur < prev (a counter reset, e.g. the VM restarted:
 * the rate of that interval is unknown, the next one is right again). */
double mon_rate(uint64_t prev, int64_t prev_at, uint64_t cur, int64_t cur_at, int64_t max_gap_ms);
/* CPU percent (0..100) from cumulative CPU time in ns spread over ncpus,
 * with mon_rate's NAN cases; ncpus 0 gives NAN. Clamped at 100. */
double mon_cpu_pct(uint64_t prev_ns, int64_t prev_at, uint64_t cur_ns, int64_t cur_at, unsigned ncpus, int64_t max_gap_ms);
/* Busy percent from a node's total and idle counters (any unit), or NAN
 * when total did not grow or either went backwards. */
double mon_busy_pct(uint64_t prev_total, uint64_t prev_idle, uint64_t cur_total, uint64_t cur_idle);

/* An accumulator of samples for one rollup bucket. Zero it to start. */
typedef struct {
        int64_t samples;
        uint32_t n[STORE_PERF__COUNT];
        double sum[STORE_PERF__COUNT];
        double max[STORE_PERF__COUNT];
} MonAgg;
/* Adds one sample; NAN values are skipped per metric. */
void mon_agg_add(MonAgg *a, const double v[STORE_PERF__COUNT]);
/* Writes the bucket's avg and max (NAN for metrics never seen) and n. */
void mon_agg_result(const MonAgg *a, StorePerfRollup *out);
/* Start of the bucket of width step that holds at (floor; at >= 0). */
int64_t mon_bucket(int64_t at, int64_t step);

/* Rows older than these may go: out[tier] = now - retention of the tier. */
void mon_retention_cutoffs(const MonRetention *r, int64_t now, int64_t out[3]);
/* The tier a query over [from, to) at step should read (see
 * monitor_series_json). */
StorePerfTier mon_tier_for(const MonRetention *r, int64_t now, int64_t from, int64_t step);
/* Re-buckets points (sorted by at) to step: one output point per non-empty
 * bucket, at its start, avg weighted by n, max of max. out has room for n
 * points. Returns the number written. */
size_t mon_downsample(const StorePerfPoint *in, size_t n, int64_t step, StorePerfPoint *out);

/* The p-th percentile (0..100, nearest rank) of the finite values of v,
 * NAN when there are none. Sorts a copy (allocates). */
double mon_percentile(const double *v, size_t n, double p);
typedef struct {
        size_t n;
        double mean, p95, max;
} MonStat;
/* Mean, p95 and max of the finite values of v (NAN figures when none). */
MonStat mon_stat(const double *v, size_t n);
/* A spiky load: its p95 is more than twice its mean and at least 10 points. */
bool mon_is_spiky(const MonStat *s);

/* ---- alert rules ---- */
typedef enum { MON_CMP_GT, MON_CMP_GE, MON_CMP_LT, MON_CMP_LE, MON_CMP_EQ, MON_CMP_NE } MonCmp;
/* ">", ">=", "<", "<=", "==", "!=": 0 and *ret, or -EINVAL. */
int mon_cmp_parse(const char *s, MonCmp *ret);
/* value CMP threshold for numbers; false for NAN. */
bool mon_cmp_num(MonCmp c, double value, double threshold);
/* For states only == and != make sense; others are false. */
bool mon_cmp_str(MonCmp c, const char *value, const char *expected);

typedef enum { MON_RULE_NONE, MON_RULE_OPEN, MON_RULE_UPDATE, MON_RULE_RESOLVE } MonRuleAction;
/* One evaluation of a rule for one object. condition: 1 holds, 0 does not,
 * -1 unknown (no sample: nothing changes). *pending_since (0 = not
 * pending) remembers since when the condition has held; an alert opens once
 * it has held for duration_ms, updates while it holds, resolves when it
 * stops holding. */
MonRuleAction mon_rule_step(int condition, bool is_open, int64_t *pending_since, int64_t now, int64_t duration_ms);

/* ---- health ---- */
typedef enum { MON_HEALTH_HEALTHY = 0, MON_HEALTH_UNKNOWN, MON_HEALTH_WARNING, MON_HEALTH_CRITICAL } MonHealth;
/* "healthy", "unknown", "warning", "critical". */
const char *mon_health_name(MonHealth h);
/* A VM's / host's own health from its state, with a reason (static
 * sentence fragment, NULL when healthy). */
MonHealth mon_health_vm_state(const char *state, const char **ret_reason);
MonHealth mon_health_host_state(const char *state, const char **ret_reason);
/* An open alert's severity as health: critical -> critical, else warning. */
MonHealth mon_health_of_severity(const char *severity);
/* "healthy", "unknown", "warning", "critical" back to MonHealth; anything
 * else (or NULL) is MON_HEALTH_HEALTHY. */
MonHealth mon_health_parse(const char *name);
/* Compares a health tree (monitor_health_json()) with what an earlier call
 * remembered: prev maps "kind:id" to {"health", "own"} for every node, VMs
 * included (NULL on the first round: nothing is compared). Returns an
 * array with one {kind, id, name, health, message} per host or group whose
 * health changed; the message names the object whose own state or alerts
 * really changed (a VM, a host), following the changed children down the
 * tree, not just the first reason. *ret_now gets the map to pass next time.
 * Pure. New references. */
json_t *mon_health_changes(json_t *tree, json_t *prev, json_t **ret_now);

/* ---- Prometheus text exposition ---- */
/* "# HELP name help\n# TYPE name type\n". */
void mon_expo_family(StrBuf *b, const char *name, const char *type, const char *help);
/* Appends key="value" (escaping \, " and newline) to a label list,
 * comma-separated. */
void mon_expo_label(StrBuf *labels, const char *key, const char *value);
/* "name{labels} value\n" (no braces when labels is NULL or empty); NaN and
 * infinities as Prometheus writes them. */
void mon_expo_sample(StrBuf *b, const char *name, const char *labels, double v);

/* ---- node_exporter text ---- */
typedef struct {
        bool has_cpu, has_memory, has_disk, has_net;
        unsigned cpus;
        double cpu_total_s, cpu_idle_s;          /* node_cpu_seconds_total, all modes / idle + iowait */
        double memory_total_b, memory_available_b;
        double disk_read_b, disk_written_b, disk_reads, disk_writes;
        double net_rx_b, net_tx_b;               /* loopback left out */
} MonNodeExporter;
/* Parses the Prometheus text node_exporter serves. Disks: loop, ram and
 * dm- devices are left out (they repeat the underlying disks). 0, or
 * -EINVAL when nothing of it is node_exporter's. */
int mon_node_exporter_parse(const char *text, MonNodeExporter *ret);

/* Webhook retry delay after attempts failures: base * 2^(attempts-1),
 * at most max_ms. */
int64_t mon_backoff_ms(int attempts, int64_t base_ms, int64_t max_ms);
