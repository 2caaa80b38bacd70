/* store-monitor: the monitor capability's tables and SQL — performance
 * samples and their rollups, the latest sample of every object, measured
 * host load for placement, alert rules and alerts, webhooks and their
 * delivery queue, the monitor's own figures, and the consolidation
 * assessment's servers and samples. Conventions as in store.h. Not
 * included from store.h: include it where you use it.
 *
 * Time series: one wide row per object and time (every metric a column,
 * NULL when the sample left it out), in three tiers: raw (one row per
 * round), 5-minute and 1-hour rollups with the average and the maximum of
 * each metric. The monitor batches a round's writes between store_begin()
 * and store_commit(). */
#pragma once

#include "store.h"

/* What a row describes. */
typedef enum { STORE_PERF_HOST = 0, STORE_PERF_VM = 1 } StorePerfKind;

/* The metrics of a sample (units in store_perf_metric_units). Hosts use all
 * of them; VMs all but pool_pct. */
typedef enum {
        STORE_PERF_CPU,          /* percent: host of all its CPUs, VM of its vCPUs */
        STORE_PERF_MEMORY,       /* MiB used */
        STORE_PERF_MEMORY_PCT,   /* percent of the host's memory / the VM's maximum */
        STORE_PERF_DISK_READ,    /* bytes/s */
        STORE_PERF_DISK_WRITE,   /* bytes/s */
        STORE_PERF_DISK_IOPS,    /* requests/s */
        STORE_PERF_NET_RX,       /* bytes/s */
        STORE_PERF_NET_TX,       /* bytes/s */
        STORE_PERF_POOL_PCT,     /* percent of the host's storage pool allocated */
        STORE_PERF__COUNT,
} StorePerfMetric;
/* "cpu", "memory", "memory_pct", "disk_read", "disk_write", "disk_iops",
 * "net_rx", "net_tx", "pool_pct": the API's metric names and the columns. */
extern const char *const store_perf_metric_names[STORE_PERF__COUNT];
/* "percent", "MiB", "percent", "bytes/s", ... */
extern const char *const store_perf_metric_units[STORE_PERF__COUNT];
/* The metric called name: 0 and *ret, or -EINVAL. */
int store_perf_metric_parse(const char *name, StorePerfMetric *ret);

typedef enum { STORE_TIER_RAW = 0, STORE_TIER_5M = 1, STORE_TIER_1H = 2 } StorePerfTier;

typedef struct {
        StorePerfKind kind;
        int64_t object_id;
        int64_t at;                      /* ms since the epoch */
        double v[STORE_PERF__COUNT];     /* NAN when missing */
} StorePerfSample;

typedef struct {
        StorePerfKind kind;
        int64_t object_id;
        int64_t at;                      /* start of the bucket, ms */
        int64_t n;                       /* samples folded in */
        double avg[STORE_PERF__COUNT];   /* NAN when no sample had the metric */
        double max[STORE_PERF__COUNT];
} StorePerfRollup;

/* Inserts raw samples (replacing one at the same time). 0 or negative. */
int store_perf_insert_raw(Store *st, const StorePerfSample *s, size_t n);
/* Inserts (or replaces) rollup rows of tier STORE_TIER_5M or STORE_TIER_1H. */
int store_perf_insert_rollups(Store *st, StorePerfTier tier, const StorePerfRollup *r, size_t n);
/* Sets the latest sample of objects, with a JSON text of per-device figures
 * (detail_json, may be NULL) for /metrics. */
int store_perf_set_latest(Store *st, const StorePerfSample *s, const char *const *detail_json, size_t n);
/* Drops latest rows of hosts and VMs that no longer exist. */
int store_perf_latest_gc(Store *st);
/* Deletes rows of tier older than before_ms. Returns the count or negative. */
int store_perf_prune(Store *st, StorePerfTier tier, int64_t before_ms);

typedef struct {
        int64_t at;
        double avg, max;                 /* raw tier: both the sample */
        int64_t n;
} StorePerfPoint;
/* The points of one object's metric with from <= at < to, oldest first,
 * NULL values left out. Returns the count and a malloc'd array, or negative. */
int store_perf_query(Store *st, StorePerfTier tier, StorePerfKind kind, int64_t object_id, StorePerfMetric m,
                     int64_t from, int64_t to, StorePerfPoint **ret);
/* The latest samples as JSON rows {kind, object_id, at, <metrics...>, detail}. */
int store_perf_latest_json(Store *st, json_t **ret);

/* Measured load for placement (the place capability's host_usage table):
 * NAN leaves a figure NULL. */
int store_host_usage_set(Store *st, int64_t host_id, double cpu_pct, double memory_used_mib, double disk_io_pct,
                         double network_pct, int64_t sampled_at);

/* ---- what the monitor samples ---- */
typedef struct {
        int64_t id;
        char name[64];
        int64_t group_id;
        char state[24];
        unsigned cpus;
        uint64_t memory_mib;
        char pool[64];
} StoreMonHost;
typedef struct {
        int64_t id;
        char uuid[37];
        char name[64];
        int64_t host_id;
        int64_t owner_id;
        unsigned cpus;
        uint64_t memory_mib;
        char state[24];
} StoreMonVm;
/* Every host / VM, ordered by id. Count and malloc'd array, or negative. */
int store_mon_hosts(Store *st, StoreMonHost **ret);
/* One host as store_mon_hosts() has it: 0, -ENOENT, or negative. */
int store_mon_host(Store *st, int64_t id, StoreMonHost *ret);
int store_mon_vms(Store *st, StoreMonVm **ret);
/* Every host group: ids and parents, names and paths (for the health tree). */
int store_mon_groups_json(Store *st, json_t **ret);

/* ---- alert rules ---- */
typedef struct {
        int64_t id;
        char name[64];
        char object_kind[8];     /* "host" or "vm" */
        char metric[24];         /* a perf metric name, or "state" */
        char comparison[4];      /* ">", ">=", "<", "<=", "==", "!=" */
        double threshold;        /* metric rules */
        char state_value[24];    /* state rules */
        int64_t duration_s;
        char severity[16];       /* "info", "warning", "critical" */
        char scope[8];           /* "all", "group", "object" */
        int64_t scope_id;
        bool enabled;
        bool builtin;
} StoreAlertRule;
int store_alert_rules(Store *st, StoreAlertRule **ret);
int store_alert_rule_list_json(Store *st, json_t **ret);
int store_alert_rule_get_json(Store *st, int64_t id, json_t **ret);
/* description may be NULL. 0 and *ret_id, -EEXIST for a taken name. */
int store_alert_rule_insert(Store *st, const StoreAlertRule *r, const char *description, int64_t *ret_id);
/* Replaces every field but id and builtin. -ENOENT when there is no such rule. */
int store_alert_rule_update(Store *st, const StoreAlertRule *r, const char *description);
int store_alert_rule_get(Store *st, int64_t id, StoreAlertRule *ret);
/* Deletes a rule and resolves its open alerts. -ENOENT. */
int store_alert_rule_delete(Store *st, int64_t id);

/* ---- alerts ---- */
typedef struct {
        int64_t id;
        int64_t rule_id;
        char object_kind[8];
        int64_t object_id;
        char severity[16];
        bool acknowledged;
} StoreOpenAlert;
/* Every open alert. Count and malloc'd array, or negative. */
int store_alerts_open(Store *st, StoreOpenAlert **ret);
/* Opens an alert of rule r (r->id 0: an alert no rule raises, such as a
 * stuck job's; its name and severity come from r). 0 and *ret_id, -EEXIST
 * when the rule's alert on the object is open already. */
int store_alert_open(Store *st, const StoreAlertRule *r, const char *object_kind, int64_t object_id,
                     const char *object_name, double value, const char *message, int64_t now, int64_t *ret_id);
int store_alert_touch(Store *st, int64_t id, double value, const char *message, int64_t now);
int store_alert_resolve(Store *st, int64_t id, const char *message, int64_t now);
/* Marks an alert acknowledged by user. -ENOENT, -EALREADY when it was. */
int store_alert_ack(Store *st, int64_t id, const char *user, int64_t now);
/* state NULL for all; "open", "resolved". Newest first, at most limit. */
int store_alert_list_json(Store *st, const char *state, int limit, json_t **ret);
int store_alert_get_json(Store *st, int64_t id, json_t **ret);
/* Open alerts per severity, for /metrics: rows {severity, n, unacknowledged}. */
int store_alert_counts_json(Store *st, json_t **ret);
/* A stamp of the open alerts -- their number, highest id and the sum of
 * their updated_at -- that changes when one opens, resolves or is touched
 * (new value or message): what a cached health tree is keyed by. 0 or
 * negative errno. */
int store_alert_open_stamp(Store *st, int64_t ret[3]);

/* ---- webhooks ---- */
int store_webhook_insert(Store *st, const char *url, const char *description, int64_t *ret_id);
int store_webhook_delete(Store *st, int64_t id);
int store_webhook_list_json(Store *st, json_t **ret);
int store_webhook_get_json(Store *st, int64_t id, json_t **ret);
/* Queues payload for every enabled webhook. Returns how many, or negative. */
int store_webhook_enqueue(Store *st, const char *payload, int64_t now);
typedef struct {
        int64_t id;
        int64_t webhook_id;
        char url[1024];
        char *payload;           /* malloc'd */
        int attempts;
} StoreDelivery;
/* Up to max deliveries due at now, oldest first. Count and a malloc'd
 * array (free each payload), or negative. */
int store_delivery_due(Store *st, int64_t now, int max, StoreDelivery **ret);
/* Earliest next_at of a pending delivery; -ENOENT when none. */
int store_delivery_next_at(Store *st, int64_t *ret);
/* After an attempt: delivered (ok) or retried at next_at, or failed for
 * good when next_at is 0. status/error describe the attempt. */
int store_delivery_done(Store *st, int64_t id, int64_t webhook_id, bool ok, int64_t next_at, const char *status,
                        int64_t now);
int store_delivery_pending_count(Store *st);
/* Deletes finished deliveries older than before_ms. */
int store_delivery_prune(Store *st, int64_t before_ms);

/* ---- the monitor's own figures (key/value, for /metrics) ---- */
int store_monitor_stat_set(Store *st, const char *key, double value);
int store_monitor_stats_json(Store *st, json_t **ret);
/* Counts for /metrics: jobs and webhook deliveries per state ({what, state, n}). */
int store_monitor_counts_json(Store *st, json_t **ret);

/* ---- consolidation assessment ---- */
int store_assess_insert(Store *st, const char *name, const char *url, int64_t *ret_id);
int store_assess_delete(Store *st, int64_t id);
int store_assess_list_json(Store *st, json_t **ret);
int store_assess_get_json(Store *st, int64_t id, json_t **ret);
typedef struct {
        int64_t id;
        char name[64];
        char url[1024];
} StoreAssessServer;
int store_assess_servers(Store *st, StoreAssessServer **ret);
/* Records a scrape: a sample (NAN leaves a figure NULL; skipped when
 * has_sample is false) and the server's facts, or an error. */
int store_assess_record(Store *st, int64_t id, bool has_sample, int64_t at, double cpu_pct, double memory_used_mib,
                        double disk_iops, double disk_bps, double net_mbit, unsigned cpus, double memory_mib,
                        const char *error);
typedef struct {
        int64_t at;
        double cpu_pct, memory_used_mib, disk_iops, disk_bps, net_mbit;
} StoreAssessSample;
int store_assess_samples(Store *st, int64_t id, int64_t since, StoreAssessSample **ret);
int store_assess_prune(Store *st, int64_t before_ms);
