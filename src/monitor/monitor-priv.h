/* Internals shared by the monitor's files: the Monitor itself and the
 * helpers each thread uses. Not for other modules. */
#pragma once

#ifndef MONITOR_PRIV_ALLOW
#error "monitor-priv.h is private to the monitor's own files (their meson target defines MONITOR_PRIV_ALLOW); use the module's public header"
#endif

#include <pthread.h>
#include <stdatomic.h>
#include "monitor.h"

/* What the collector remembers of one host or VM between rounds. */
typedef struct {
        char name[32];
        uint64_t rd, wr;
} MonDevPrev;

typedef struct {
        uint64_t key;            /* kind << 56 | id; 0 = empty slot */
        int64_t seen_at;         /* last round it was sampled in */
        int64_t at;              /* time of the counters below */
        bool has_cpu, has_node, has_block, has_net;
        uint64_t cpu_ns;
        uint64_t node_total, node_idle;
        uint64_t rd_b, wr_b, reqs;
        uint64_t rx_b, tx_b;
        MonAgg a5, a1h;
        int64_t b5, b1h;         /* buckets a5 and a1h belong to; 0 = none yet */
        MonDevPrev *devs;        /* disks then NICs, n_devs */
        size_t n_devs;
        double *ring;            /* hosts: the usage window, 4 figures per sample */
        size_t ring_n, ring_pos;
        uint64_t latest_hash;    /* of the figures and detail last written to perf_latest */
        bool has_latest;         /* latest_hash is of a committed row */
} MonObj;

typedef struct {
        int64_t rule_id;
        int kind;
        int64_t object_id;
        int64_t since;
} MonPending;

typedef struct {
        int64_t id;
        int64_t at;
        double cpu_total, cpu_idle, disk_b, disk_ops, net_b;
} MonAssessPrev;

struct Monitor {
        Store *st;
        MonitorConfig cfg;
        pthread_mutex_t lock;
        pthread_cond_t wake;     /* stop, and new webhook deliveries */
        bool stopping, started;
        bool hooks_pending;      /* under lock: deliveries queued since the webhook thread looked */
        bool round_queued_hooks; /* collector-only: this round queued deliveries */
        pthread_t collector, hooks, assess;

        /* collector-only state */
        MonObj *objs;            /* open-addressing table */
        size_t objs_cap, objs_used;
        MonPending *pending;
        size_t n_pending;
        json_t *health_prev;     /* "host:1" -> {"health", "own"}, VMs too (mon_health_changes) */
        uint64_t health_key;     /* what health_prev was computed from (health_inputs_key) */
        bool has_health_key;
        uint64_t latest_rows_written, latest_rows_skipped;  /* perf_latest, since start */
        uint64_t health_builds, health_skips;               /* the round's health tree, since start */
        int64_t last_prune, last_gc;
        int64_t rounds;

        /* assessment-only state */
        MonAssessPrev *aprev;
        size_t n_aprev;
};

/* Wakes the webhook thread (after new deliveries were queued). */
void monitor_hooks_kick(Monitor *m);
/* Thread bodies. */
void *monitor_hooks_main(void *arg);
void *monitor_assess_main(void *arg);
/* Waits on m->wake until deadline (monotonic ms) or stop, or (when
 * wake_on_hooks) until deliveries were queued. Returns true when stopping.
 * Caller does not hold the lock. */
bool monitor_sleep_until(Monitor *m, int64_t deadline_mono, bool wake_on_hooks);
