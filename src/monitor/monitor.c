/* The monitor's collector: one round every interval samples every connected
 * host through the inventory's connections, computes rates, writes the
 * time series, rollups, placement's host_usage and the latest figures in
 * one transaction, then evaluates the alert rules and notes health changes
 * (see monitor.h). */
#include "monitor-priv.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include "hv/hv-stats.h"
#include "store/store-place.h"
#include "placement/placement.h"

#define KIND_SHIFT 56
#define USAGE_FIGURES 4          /* cpu %, memory MiB, disk I/O %, network % */

static uint64_t obj_key(StorePerfKind kind, int64_t id) {
        return ((uint64_t) (kind + 1) << KIND_SHIFT) | (uint64_t) id;
}

static size_t key_hash(uint64_t k, size_t cap) {
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdULL;
        k ^= k >> 33;
        return (size_t) k & (cap - 1);
}

static void obj_clear(MonObj *o) {
        free(o->devs);
        free(o->ring);
}

static MonObj *obj_slot(MonObj *tab, size_t cap, uint64_t key) {
        for (size_t i = key_hash(key, cap);; i = (i + 1) & (cap - 1))
                if (tab[i].key == key || tab[i].key == 0)
                        return &tab[i];
}

/* Rebuilds the table with room to grow, keeping objects seen since keep_after. */
static void objs_rehash(Monitor *m, size_t cap, int64_t keep_after) {
        MonObj *tab = xcalloc(cap, sizeof *tab);
        size_t used = 0;
        for (size_t i = 0; i < m->objs_cap; i++) {
                MonObj *o = &m->objs[i];
                if (!o->key)
                        continue;
                if (o->seen_at < keep_after) {
                        obj_clear(o);
                        continue;
                }
                *obj_slot(tab, cap, o->key) = *o;
                used++;
        }
        free(m->objs);
        m->objs = tab;
        m->objs_cap = cap;
        m->objs_used = used;
}

static MonObj *obj_get(Monitor *m, StorePerfKind kind, int64_t id) {
        if ((m->objs_used + 1) * 2 > m->objs_cap)
                objs_rehash(m, m->objs_cap ? m->objs_cap * 2 : 1024, INT64_MIN);
        uint64_t key = obj_key(kind, id);
        MonObj *o = obj_slot(m->objs, m->objs_cap, key);
        if (!o->key) {
                memset(o, 0, sizeof *o);
                o->key = key;
                m->objs_used++;
        }
        return o;
}

/* ------------------------------------------------------------------ */
/* collection */

typedef struct {
        int64_t host_id;
        int64_t at;
        bool node_ok;
        HvNodeStats node;
        HvDomainStats *doms;
        size_t n_doms;
        bool doms_ok;
} HostData;

typedef struct {
        HostData *h;
        size_t n, cap;
        int errors;
} Collect;

static void collect_cb(void *userdata, int64_t host_id, HvConn *conn) {
        Collect *c = userdata;
        if (c->n == c->cap) {
                c->cap = c->cap ? c->cap * 2 : 64;
                c->h = xrealloc(c->h, c->cap * sizeof *c->h);
        }
        HostData *d = &c->h[c->n];
        memset(d, 0, sizeof *d);
        d->host_id = host_id;
        d->doms_ok = hv_stats_domains(conn, &d->doms, &d->n_doms) == 0;
        if (!d->doms_ok)
                c->errors++;
        d->node_ok = hv_stats_node(conn, &d->node) == 0;
        d->at = now_ms();
        c->n++;
}

typedef struct {
        const char *uuid;
        size_t idx;
} UuidRef;
static int cmp_uuidref(const void *a, const void *b) {
        return strcasecmp(((const UuidRef *) a)->uuid, ((const UuidRef *) b)->uuid);
}
static int cmp_host_id(const void *key, const void *elem) {
        int64_t k = *(const int64_t *) key, e = ((const StoreMonHost *) elem)->id;
        return k < e ? -1 : k > e;
}

static void sample_init(StorePerfSample *s, StorePerfKind kind, int64_t id, int64_t at) {
        s->kind = kind;
        s->object_id = id;
        s->at = at;
        for (int i = 0; i < STORE_PERF__COUNT; i++)
                s->v[i] = NAN;
}

static double nz(double v) {
        return isfinite(v) ? v : 0;
}

/* Per-device rates against the previous round, as JSON for /metrics. */
static json_t *device_rates(MonObj *o, const HvDomainStats *d, int64_t prev_at, int64_t at, int64_t max_gap) {
        size_t n = d->n_disks + d->n_nics;
        if (n == 0)
                return NULL;
        MonDevPrev *cur = xcalloc(n, sizeof *cur);
        json_t *disks = json_array(), *nics = json_array();
        for (size_t i = 0; i < n; i++) {
                bool disk = i < d->n_disks;
                const HvDevStats *dv = disk ? &d->disks[i] : &d->nics[i - d->n_disks];
                snprintf(cur[i].name, sizeof cur[i].name, "%s", dv->name);
                cur[i].rd = dv->rd_bytes;
                cur[i].wr = dv->wr_bytes;
                double a = NAN, b = NAN;
                for (size_t k = 0; k < o->n_devs; k++)
                        if (streq(o->devs[k].name, dv->name)) {
                                a = mon_rate(o->devs[k].rd, prev_at, dv->rd_bytes, at, max_gap);
                                b = mon_rate(o->devs[k].wr, prev_at, dv->wr_bytes, at, max_gap);
                        }
                if (!dv->name[0] || !isfinite(a) || !isfinite(b))
                        continue;
                json_array_append_new(disk ? disks : nics,
                                      json_pack("{s:s, s:f, s:f}", "name", dv->name, disk ? "read_bps" : "rx_bps", a,
                                                disk ? "write_bps" : "tx_bps", b));
        }
        free(o->devs);
        o->devs = cur;
        o->n_devs = n;
        return json_pack("{s:o, s:o}", "disks", disks, "nics", nics);
}

/* One VM's sample from its counters. */
static void vm_collect(Monitor *m, const StoreMonVm *vm, const HvDomainStats *d, int64_t at, int64_t row_at,
                      int64_t max_gap, StorePerfSample *s, char **ret_detail) {
        MonObj *o = obj_get(m, STORE_PERF_VM, vm->id);
        sample_init(s, STORE_PERF_VM, vm->id, row_at);
        unsigned vcpus = d->vcpus ? d->vcpus : vm->cpus;
        if (d->has_cpu && o->has_cpu)
                s->v[STORE_PERF_CPU] = mon_cpu_pct(o->cpu_ns, o->at, d->cpu_time_ns, at, vcpus, max_gap);
        if (d->has_memory) {
                s->v[STORE_PERF_MEMORY] = (double) d->memory_used_kib / 1024.0;
                double max_kib = d->memory_max_kib ? (double) d->memory_max_kib : (double) vm->memory_mib * 1024.0;
                if (max_kib > 0)
                        s->v[STORE_PERF_MEMORY_PCT] = fmin(100.0, (double) d->memory_used_kib / max_kib * 100.0);
        }
        if (d->has_block && o->has_block) {
                s->v[STORE_PERF_DISK_READ] = mon_rate(o->rd_b, o->at, d->disk_total.rd_bytes, at, max_gap);
                s->v[STORE_PERF_DISK_WRITE] = mon_rate(o->wr_b, o->at, d->disk_total.wr_bytes, at, max_gap);
                s->v[STORE_PERF_DISK_IOPS] = mon_rate(o->reqs, o->at, d->disk_total.rd_reqs + d->disk_total.wr_reqs, at, max_gap);
        }
        if (d->has_net && o->has_net) {
                s->v[STORE_PERF_NET_RX] = mon_rate(o->rx_b, o->at, d->nic_total.rd_bytes, at, max_gap);
                s->v[STORE_PERF_NET_TX] = mon_rate(o->tx_b, o->at, d->nic_total.wr_bytes, at, max_gap);
        }
        _cleanup_json_ json_t *detail = device_rates(o, d, o->at, at, max_gap);
        *ret_detail = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
        o->has_cpu = d->has_cpu;
        o->cpu_ns = d->cpu_time_ns;
        o->has_block = d->has_block;
        o->rd_b = d->disk_total.rd_bytes;
        o->wr_b = d->disk_total.wr_bytes;
        o->reqs = d->disk_total.rd_reqs + d->disk_total.wr_reqs;
        o->has_net = d->has_net;
        o->rx_b = d->nic_total.rd_bytes;
        o->tx_b = d->nic_total.wr_bytes;
        o->at = at;
        o->seen_at = row_at;
}

/* Folds a sample into the object's 5-minute and 1-hour buckets, emitting
 * the rows of buckets that closed. */
typedef struct {
        StorePerfRollup *r;
        size_t n, cap;
} RollupList;
static void rollup_push(RollupList *l, const MonAgg *a, StorePerfKind kind, int64_t id, int64_t bucket) {
        if (a->samples == 0)
                return;
        if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 256;
                l->r = xrealloc(l->r, l->cap * sizeof *l->r);
        }
        StorePerfRollup *row = &l->r[l->n++];
        row->kind = kind;
        row->object_id = id;
        row->at = bucket;
        mon_agg_result(a, row);
}
static void rollup_add(Monitor *m, const StorePerfSample *s, RollupList *l5, RollupList *l1h) {
        MonObj *o = obj_get(m, s->kind, s->object_id);
        int64_t b5 = mon_bucket(s->at, MON_STEP_5M_MS), b1h = mon_bucket(s->at, MON_STEP_1H_MS);
        if (o->b5 != b5) {
                rollup_push(l5, &o->a5, s->kind, s->object_id, o->b5);
                memset(&o->a5, 0, sizeof o->a5);
                o->b5 = b5;
        }
        if (o->b1h != b1h) {
                rollup_push(l1h, &o->a1h, s->kind, s->object_id, o->b1h);
                memset(&o->a1h, 0, sizeof o->a1h);
                o->b1h = b1h;
        }
        mon_agg_add(&o->a5, s->v);
        mon_agg_add(&o->a1h, s->v);
}

/* Pushes a host's figures into its usage window; returns the window's
 * percentile of each figure in out. */
static void usage_window(Monitor *m, MonObj *o, const double fig[USAGE_FIGURES], double out[USAGE_FIGURES]) {
        size_t w = (size_t) (m->cfg.usage_window_ms / (m->cfg.interval_ms > 0 ? m->cfg.interval_ms : 1));
        if (w < 1) w = 1;
        if (w > 4096) w = 4096;
        if (!o->ring) {
                o->ring = xmalloc(w * USAGE_FIGURES * sizeof(double));
                for (size_t i = 0; i < w * USAGE_FIGURES; i++)
                        o->ring[i] = NAN;
                o->ring_n = w;
        }
        memcpy(&o->ring[o->ring_pos * USAGE_FIGURES], fig, USAGE_FIGURES * sizeof(double));
        o->ring_pos = (o->ring_pos + 1) % o->ring_n;
        double col[4096];
        for (int f = 0; f < USAGE_FIGURES; f++) {
                for (size_t i = 0; i < o->ring_n; i++)
                        col[i] = o->ring[i * USAGE_FIGURES + f];
                out[f] = mon_percentile(col, o->ring_n, m->cfg.usage_percentile);
        }
}

/* ------------------------------------------------------------------ */
/* rules */

static int cmp_pending(const void *a, const void *b) {
        const MonPending *x = a, *y = b;
        if (x->rule_id != y->rule_id) return x->rule_id < y->rule_id ? -1 : 1;
        if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
        return x->object_id < y->object_id ? -1 : x->object_id > y->object_id;
}
static int cmp_open(const void *a, const void *b) {
        const StoreOpenAlert *x = a, *y = b;
        if (x->rule_id != y->rule_id) return x->rule_id < y->rule_id ? -1 : 1;
        int k = strcmp(x->object_kind, y->object_kind);
        if (k) return k;
        return x->object_id < y->object_id ? -1 : x->object_id > y->object_id;
}

typedef struct {
        int64_t *ids, *parents;
        int n;
} GroupTree;

static bool group_within(const GroupTree *g, int64_t group, int64_t scope) {
        for (int depth = 0; group > 0 && depth < 64; depth++) {
                if (group == scope)
                        return true;
                int64_t parent = 0;
                for (int i = 0; i < g->n; i++)
                        if (g->ids[i] == group) parent = g->parents[i];
                group = parent;
        }
        return false;
}

/* The host groups' ids and parents, for rule scopes. */
static void group_tree_load(Store *st, GroupTree *g) {
        _cleanup_json_ json_t *groups = NULL;
        (void) store_mon_groups_json(st, &groups); /* an error (logged): no group scopes this round */
        g->n = (int) json_array_size(groups);
        g->ids = xcalloc((size_t) g->n + 1, sizeof(int64_t));
        g->parents = xcalloc((size_t) g->n + 1, sizeof(int64_t));
        for (int i = 0; i < g->n; i++) {
                json_t *gr = json_array_get(groups, (size_t) i);
                g->ids[i] = json_integer_value(json_object_get(gr, "id"));
                g->parents[i] = json_integer_value(json_object_get(gr, "parent_id"));
        }
}

/* Whether rule r applies to an object of group_id with id. */
static bool rule_covers(const StoreAlertRule *r, const GroupTree *g, int64_t id, int64_t group_id) {
        if (streq(r->scope, "object") && r->scope_id != id)
                return false;
        if (streq(r->scope, "group") && !group_within(g, group_id, r->scope_id))
                return false;
        return true;
}

/* Queues the webhook deliveries of an alert's change; *queued becomes true
 * when there were any (the caller wakes the webhook thread after its
 * transaction commits, so that the thread finds them). */
static void notify(Monitor *m, const char *event, int64_t alert_id, int64_t now, bool *queued) {
        _cleanup_json_ json_t *a = NULL;
        if (store_alert_get_json(m->st, alert_id, &a) < 0)
                return;
        char ts[32];
        time_format(now, ts);
        _cleanup_json_ json_t *payload = json_pack("{s:s, s:s, s:s, s:O}", "event", event, "source", "armadad", "at", ts, "alert", a);
        _cleanup_free_ char *text = json_dumps(payload, JSON_COMPACT);
        if (text && store_webhook_enqueue(m->st, text, now) > 0)
                *queued = true;
}

typedef struct {
        const char *kind_word;   /* "host" / "vm" */
        StorePerfKind kind;
        int64_t id;
        const char *name;
        const char *state;
        int64_t group_id;
        const double *v;         /* this round's sample, NULL when none */
} RuleObject;

/* One rule for one object. prev/n_prev: what was pending after the last
 * round; the conditions still pending are appended to *pend. */
static void eval_rule_object(Monitor *m, const StoreAlertRule *r, MonCmp cmp, const RuleObject *ob,
                             const StoreOpenAlert *open, size_t n_open, const MonPending *prev, size_t n_prev,
                             MonPending **pend, size_t *n_pend, size_t *pend_cap, int64_t now, bool *queued) {
        int cond;
        double value = NAN;
        char shown[64];
        if (streq(r->metric, "state")) {
                cond = ob->state ? mon_cmp_str(cmp, ob->state, r->state_value) : -1;
                snprintf(shown, sizeof shown, "%s", ob->state ? ob->state : "unknown");
        } else {
                StorePerfMetric pm;
                if (store_perf_metric_parse(r->metric, &pm) < 0 || !ob->v || !isfinite(ob->v[pm]))
                        cond = -1;
                else {
                        value = ob->v[pm];
                        cond = mon_cmp_num(cmp, value, r->threshold);
                }
                snprintf(shown, sizeof shown, "%.1f", value);
        }
        MonPending key = { .rule_id = r->id, .kind = ob->kind, .object_id = ob->id };
        const MonPending *old = n_prev ? bsearch(&key, prev, n_prev, sizeof key, cmp_pending) : NULL;
        int64_t since = old ? old->since : 0;
        StoreOpenAlert okey = { .rule_id = r->id, .object_id = ob->id };
        snprintf(okey.object_kind, sizeof okey.object_kind, "%s", ob->kind_word);
        const StoreOpenAlert *oa = n_open ? bsearch(&okey, open, n_open, sizeof okey, cmp_open) : NULL;
        MonRuleAction act = mon_rule_step(cond, oa != NULL, &since, now, r->duration_s * 1000);
        if (since) {
                if (*n_pend == *pend_cap) {
                        *pend_cap = *pend_cap ? *pend_cap * 2 : 64;
                        *pend = xrealloc(*pend, *pend_cap * sizeof **pend);
                }
                key.since = since;
                (*pend)[(*n_pend)++] = key;
        }
        char kind_cap[8];
        snprintf(kind_cap, sizeof kind_cap, "%s", streq(ob->kind_word, "vm") ? "VM" : "Host");
        if (act == MON_RULE_OPEN) {
                _cleanup_free_ char *msg = streq(r->metric, "state")
                        ? xasprintf("%s '%s' is %s (rule '%s').", kind_cap, ob->name, shown, r->name)
                        : r->duration_s > 0
                        ? xasprintf("%s '%s' has had %s %s %g for %lld s; now %s (rule '%s').", kind_cap, ob->name, r->metric,
                                    r->comparison, r->threshold, (long long) r->duration_s, shown, r->name)
                        : xasprintf("%s '%s' has %s %s, which is %s %g (rule '%s').", kind_cap, ob->name, r->metric, shown,
                                    r->comparison, r->threshold, r->name);
                int64_t id;
                if (store_alert_open(m->st, r, ob->kind_word, ob->id, ob->name, value, msg, now, &id) == 0) {
                        _cleanup_free_ char *ev = xasprintf("Alert %lld opened (%s): %s", (long long) id, r->severity, msg);
                        (void) store_event_add(m->st, streq(r->severity, "critical") ? "error" : "warning", "alert.opened",
                                               ob->kind_word, ob->id, ob->name, 0, ev);
                        notify(m, "alert.opened", id, now, queued);
                }
        } else if (act == MON_RULE_UPDATE && !streq(r->metric, "state")) {
                (void) store_alert_touch(m->st, oa->id, value, NULL, now);
        } else if (act == MON_RULE_RESOLVE) {
                _cleanup_free_ char *msg = xasprintf("%s '%s' no longer matches rule '%s' (now %s).", kind_cap, ob->name, r->name, shown);
                if (store_alert_resolve(m->st, oa->id, NULL, now) == 0) {
                        _cleanup_free_ char *ev = xasprintf("Alert %lld resolved: %s", (long long) oa->id, msg);
                        (void) store_event_add(m->st, "info", "alert.resolved", ob->kind_word, ob->id, ob->name, 0, ev);
                        notify(m, "alert.resolved", oa->id, now, queued);
                }
        }
}

/* Resolves the alert of a job that is no longer stuck, with an event. */
static void job_alert_resolve(Monitor *m, int64_t alert_id, int64_t job_id, int64_t now, bool *queued) {
        _cleanup_free_ char *msg = xasprintf("Job %lld is no longer stuck.", (long long) job_id);
        if (store_alert_resolve(m->st, alert_id, NULL, now) < 0)
                return;
        _cleanup_free_ char *ev = xasprintf("Alert %lld resolved: %s", (long long) alert_id, msg);
        (void) store_event_add(m->st, "info", "alert.resolved", "job", job_id, NULL, 0, ev);
        notify(m, "alert.resolved", alert_id, now, queued);
}

static void evaluate_rules(Monitor *m, const StoreMonHost *hosts, int nh, const StoreMonVm *vms, int nv,
                           const StorePerfSample *samples, const ssize_t *host_sample, const ssize_t *vm_sample, int64_t now) {
        StoreAlertRule *rules = NULL;
        int nr = store_alert_rules(m->st, &rules);
        if (nr < 0)
                return;
        StoreOpenAlert *open = NULL;
        int no = store_alerts_open(m->st, &open);
        if (no < 0) no = 0;
        if (no > 0)
                qsort(open, (size_t) no, sizeof *open, cmp_open);
        GroupTree g;
        group_tree_load(m->st, &g);
        MonPending *pend = NULL;
        size_t n_pend = 0, pend_cap = 0;
        bool *still = xcalloc((size_t) no + 1, sizeof(bool));
        for (int i = 0; i < nr; i++) {
                const StoreAlertRule *r = &rules[i];
                MonCmp cmp;
                if (!r->enabled || mon_cmp_parse(r->comparison, &cmp) < 0)
                        continue;
                bool is_vm = streq(r->object_kind, "vm");
                int n = is_vm ? nv : nh;
                for (int k = 0; k < n; k++) {
                        RuleObject ob;
                        if (is_vm) {
                                const StoreMonVm *v = &vms[k];
                                const StoreMonHost *h = v->host_id ? bsearch(&v->host_id, hosts, (size_t) nh, sizeof *hosts, cmp_host_id) : NULL;
                                ob = (RuleObject) { "vm", STORE_PERF_VM, v->id, v->name, v->state, h ? h->group_id : 0,
                                                    vm_sample[k] >= 0 ? samples[vm_sample[k]].v : NULL };
                        } else {
                                const StoreMonHost *h = &hosts[k];
                                ob = (RuleObject) { "host", STORE_PERF_HOST, h->id, h->name, h->state, h->group_id,
                                                    host_sample[k] >= 0 ? samples[host_sample[k]].v : NULL };
                        }
                        if (!rule_covers(r, &g, ob.id, ob.group_id))
                                continue;
                        /* A host in maintenance is expected to be away. */
                        eval_rule_object(m, r, cmp, &ob, open, (size_t) no, m->pending, m->n_pending, &pend, &n_pend,
                                         &pend_cap, now, &m->round_queued_hooks);
                        StoreOpenAlert okey = { .rule_id = r->id, .object_id = ob.id };
                        snprintf(okey.object_kind, sizeof okey.object_kind, "%s", ob.kind_word);
                        StoreOpenAlert *oa = no ? bsearch(&okey, open, (size_t) no, sizeof okey, cmp_open) : NULL;
                        if (oa)
                                still[oa - open] = true;
                }
        }
        /* Open alerts whose rule was disabled or whose object went away. A
         * stuck job's alert has no rule: the job engine opens and closes it
         * (monitor_job_stuck_changed()); here it only goes when its job is
         * no longer stuck (what a restart of armadad left open). */
        for (int i = 0; i < no; i++) {
                if (streq(open[i].object_kind, "job")) {
                        _cleanup_json_ json_t *job = NULL;
                        int jr = store_job_get_json(m->st, open[i].object_id, &job);
                        if (jr < 0 && jr != -ENOENT)
                                continue; /* a database error (logged): decide next round */
                        if (!job || !json_is_true(json_object_get(job, "stuck")))
                                job_alert_resolve(m, open[i].id, open[i].object_id, now, &m->round_queued_hooks);
                        continue;
                }
                /* Other alerts without a rule (a datastore's verify, a VM's
                 * overdue backups) are opened and resolved by the module that
                 * raised them (monitor_object_alert_changed()), not here. */
                if (open[i].rule_id == 0)
                        continue;
                if (!still[i] && store_alert_resolve(m->st, open[i].id, NULL, now) == 0) {
                        (void) store_event_add(m->st, "info", "alert.resolved", open[i].object_kind, open[i].object_id, NULL, 0,
                                               "An alert was resolved: its rule is disabled or its object no longer exists.");
                        notify(m, "alert.resolved", open[i].id, now, &m->round_queued_hooks);
                }
        }
        if (n_pend > 0)
                qsort(pend, n_pend, sizeof *pend, cmp_pending);
        free(m->pending);
        m->pending = pend;
        m->n_pending = n_pend;
        free(still);
        free(g.ids);
        free(g.parents);
        free(open);
        free(rules);
}

/* The hosts' states as they are now, inside the round's transaction: the
 * round read them before it sampled, and monitor_host_state_changed() may
 * have acted on a newer one meanwhile; evaluating the old one would
 * resolve its alert and open it again a round later. */
static void refresh_states(Monitor *m, StoreMonHost *hosts, int nh) {
        StoreMonHost *fresh = NULL;
        int nf = store_mon_hosts(m->st, &fresh);
        for (int i = 0; i < nf; i++) {
                StoreMonHost *h = nh > 0 ? bsearch(&fresh[i].id, hosts, (size_t) nh, sizeof *hosts, cmp_host_id) : NULL;
                if (h)
                        memcpy(h->state, fresh[i].state, sizeof h->state);
        }
        free(fresh);
}

/* A digest of what the health tree is made of, as the store has it now:
 * the hosts and VMs (ids, names, places, states, sizes), the groups and
 * the open alerts' stamp. 0 and *ret, or negative. */
static int health_inputs_key(Monitor *m, uint64_t *ret) {
        StoreMonHost *hosts = NULL;
        StoreMonVm *vms = NULL;
        _cleanup_json_ json_t *groups = NULL;
        int64_t stamp[3];
        int nh = store_mon_hosts(m->st, &hosts);
        int nv = nh < 0 ? -1 : store_mon_vms(m->st, &vms);
        int r = nh < 0 || nv < 0 ? -EIO : store_mon_groups_json(m->st, &groups);
        if (r >= 0)
                r = store_alert_open_stamp(m->st, stamp);
        if (r >= 0) {
                /* the rows are zeroed before they are filled: their bytes are their values */
                uint64_t h = fnv1a(FNV1A_INIT, hosts, (size_t) nh * sizeof *hosts);
                h = fnv1a(fnv1a_i64(h, nh), vms, (size_t) nv * sizeof *vms);
                _cleanup_free_ char *g = json_dumps(groups, JSON_COMPACT | JSON_SORT_KEYS);
                h = fnv1a_str(fnv1a_i64(h, nv), g);
                *ret = fnv1a(h, stamp, sizeof stamp);
        }
        free(hosts);
        free(vms);
        return r;
}

/* Records an event for every host and group whose health changed, naming
 * the VM or host whose own change caused it (mon_health_changes()). The
 * tree is built only when what it is made of changed since the last one
 * (health_inputs_key()): an idle estate's round builds none. */
static void health_events(Monitor *m) {
        uint64_t key = 0;
        bool keyed = health_inputs_key(m, &key) >= 0;
        if (keyed && m->has_health_key && key == m->health_key && m->health_prev) {
                m->health_skips++;
                return;
        }
        m->health_builds++;
        _cleanup_json_ json_t *tree = monitor_health_json(m->st);
        if (!tree)
                return;
        json_t *now_map = NULL;
        _cleanup_json_ json_t *changes = mon_health_changes(tree, m->health_prev, &now_map);
        size_t i;
        json_t *ch;
        json_array_foreach(changes, i, ch) {
                const char *health = json_string_value(json_object_get(ch, "health"));
                (void) store_event_add(m->st, streq(health, "critical") ? "error" : streq(health, "warning") ? "warning" : "info",
                                       "health.changed", json_string_value(json_object_get(ch, "kind")),
                                       json_integer_value(json_object_get(ch, "id")), json_string_value(json_object_get(ch, "name")),
                                       0, json_string_value(json_object_get(ch, "message")));
        }
        json_decref(m->health_prev);
        m->health_prev = now_map;
        m->health_key = key;
        m->has_health_key = keyed;
}

/* ------------------------------------------------------------------ */

int monitor_host_state_changed(Monitor *m, int64_t host_id) {
        if (!m)
                return 0;
        int64_t now = now_ms();
        /* BEGIN IMMEDIATE first: a round evaluates inside its own write
         * transaction, so the two never interleave, and each reads the
         * states as they are when it evaluates. */
        int r = store_begin(m->st);
        if (r < 0)
                return r;
        StoreMonHost one;
        StoreAlertRule *rules = NULL;
        StoreOpenAlert *open = NULL;
        GroupTree g = {0};
        bool queued = false;
        /* this host alone (reading every host made registering n hosts O(n^2)) */
        int hr = store_mon_host(m->st, host_id, &one);
        int nr = hr < 0 && hr != -ENOENT ? -1 : store_alert_rules(m->st, &rules);
        int no = nr < 0 ? -1 : store_alerts_open(m->st, &open);
        const StoreMonHost *h = hr == 0 ? &one : NULL;
        if (no < 0)
                r = -EIO;
        else if (h) {
                if (no > 0)
                        qsort(open, (size_t) no, sizeof *open, cmp_open);
                group_tree_load(m->st, &g);
                RuleObject ob = { "host", STORE_PERF_HOST, h->id, h->name, h->state, h->group_id, NULL };
                for (int i = 0; i < nr; i++) {
                        const StoreAlertRule *rule = &rules[i];
                        MonCmp cmp;
                        /* A rule with a duration needs the round's memory of
                         * since when its condition holds: it waits for the round. */
                        if (!rule->enabled || !streq(rule->object_kind, "host") || !streq(rule->metric, "state") ||
                            rule->duration_s > 0 || mon_cmp_parse(rule->comparison, &cmp) < 0 || !rule_covers(rule, &g, h->id, h->group_id))
                                continue;
                        MonPending *pend = NULL;
                        size_t n_pend = 0, pend_cap = 0;
                        eval_rule_object(m, rule, cmp, &ob, open, (size_t) no, NULL, 0, &pend, &n_pend, &pend_cap, now, &queued);
                        free(pend);
                }
        }
        r = store_end(m->st, r);
        if (r >= 0 && queued)
                monitor_hooks_kick(m);
        free(g.ids);
        free(g.parents);
        free(open);
        free(rules);
        return r;
}

int monitor_job_stuck_changed(Monitor *m, int64_t job_id, const char *name, int64_t owner_id, bool stuck, const char *message) {
        if (!m)
                return 0;
        int64_t now = now_ms();
        int r = store_begin(m->st);
        if (r < 0)
                return r;
        StoreOpenAlert *open = NULL;
        int no = store_alerts_open(m->st, &open);
        int64_t have = 0;
        for (int i = 0; i < no; i++)
                if (streq(open[i].object_kind, "job") && open[i].object_id == job_id)
                        have = open[i].id;
        bool queued = false;
        if (no < 0)
                r = no;
        else if (stuck && !have) {
                StoreAlertRule rule = { .id = 0, .name = "job-stuck", .severity = "warning" };
                int64_t id;
                if (store_alert_open(m->st, &rule, "job", job_id, name, NAN, message, now, &id) == 0) {
                        _cleanup_free_ char *ev = xasprintf("Alert %lld opened (warning): %s", (long long) id, message);
                        (void) store_event_add(m->st, "warning", "alert.opened", "job", job_id, name, owner_id, ev);
                        notify(m, "alert.opened", id, now, &queued);
                }
        } else if (!stuck && have) {
                _cleanup_free_ char *ev = xasprintf("Alert %lld resolved: %s", (long long) have, message);
                if (store_alert_resolve(m->st, have, NULL, now) == 0) {
                        (void) store_event_add(m->st, "info", "alert.resolved", "job", job_id, name, owner_id, ev);
                        notify(m, "alert.resolved", have, now, &queued);
                }
        }
        r = store_end(m->st, r);
        if (r >= 0 && queued)
                monitor_hooks_kick(m);
        free(open);
        return r;
}

int monitor_object_alert_changed(Monitor *m, const char *rule_name, const char *object_kind, int64_t object_id,
                                 const char *name, bool open, const char *message) {
        if (!m)
                return 0;
        int64_t now = now_ms();
        int r = store_begin(m->st);
        if (r < 0)
                return r;
        StoreOpenAlert *alerts = NULL;
        int no = store_alerts_open(m->st, &alerts);
        int64_t have = 0;
        /* StoreOpenAlert keeps the kind's first 7 characters. */
        for (int i = 0; i < no; i++)
                if (alerts[i].rule_id == 0 && alerts[i].object_id == object_id &&
                    strncmp(alerts[i].object_kind, object_kind, sizeof alerts[i].object_kind - 1) == 0)
                        have = alerts[i].id;
        bool queued = false;
        if (no < 0)
                r = no;
        else if (open && !have) {
                StoreAlertRule rule = { .id = 0, .severity = "critical" };
                snprintf(rule.name, sizeof rule.name, "%s", rule_name);
                int64_t id;
                if (store_alert_open(m->st, &rule, object_kind, object_id, name, NAN, message, now, &id) == 0) {
                        _cleanup_free_ char *ev = xasprintf("Alert %lld opened (critical): %s", (long long) id, message);
                        (void) store_event_add(m->st, "critical", "alert.opened", object_kind, object_id, name, 0, ev);
                        notify(m, "alert.opened", id, now, &queued);
                }
        } else if (!open && have) {
                _cleanup_free_ char *ev = xasprintf("Alert %lld resolved: %s", (long long) have, message);
                if (store_alert_resolve(m->st, have, NULL, now) == 0) {
                        (void) store_event_add(m->st, "info", "alert.resolved", object_kind, object_id, name, 0, ev);
                        notify(m, "alert.resolved", have, now, &queued);
                }
        }
        r = store_end(m->st, r);
        if (r >= 0 && queued)
                monitor_hooks_kick(m);
        free(alerts);
        return r;
}

static double thread_cpu_seconds(void) {
        struct timespec ts;
        if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
                return 0;
        return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One collection round, handed from phase to phase: Begin reads what the
 * store knows and what the hosts report, Sample turns each host's report
 * into samples, Write stores them in one transaction (rules and health
 * included), Prune drops what retention no longer keeps, End records the
 * round's own figures. */
typedef struct { int64_t host_id; double fig[USAGE_FIGURES]; } MonRoundUsage;
typedef struct { int64_t host_id; uint64_t cap, avail; } MonRoundPool;
typedef struct {
        int64_t now, t0, max_gap;
        double cpu0;
        StoreMonHost *hosts;
        StoreMonVm *vms;
        int nh, nv;
        UuidRef *byuuid;          /* vms by UUID */
        Collect c;                /* what the hosts reported */
        StorePerfSample *samples;
        char **details;
        size_t ns;
        ssize_t *host_sample, *vm_sample;   /* index into samples, or -1 */
        RollupList l5, l1h;
        MonRoundUsage *usage;
        size_t n_usage;
        MonRoundPool *pools;
        size_t n_pools;
        int vms_sampled;
} MonRound;

/* Begin: hosts and VMs from the store, the hosts' statistics. 0 or -EIO. */
static int round_begin(Monitor *m, MonRound *rd) {
        rd->t0 = mono_ms();
        rd->cpu0 = thread_cpu_seconds();
        rd->max_gap = 3LL * m->cfg.interval_ms > 5000 ? 3LL * m->cfg.interval_ms : 5000;
        rd->nh = store_mon_hosts(m->st, &rd->hosts);
        rd->nv = rd->nh < 0 ? -1 : store_mon_vms(m->st, &rd->vms);
        if (rd->nh < 0 || rd->nv < 0)
                return -EIO;
        int nh = rd->nh, nv = rd->nv;
        rd->byuuid = xcalloc((size_t) nv + 1, sizeof *rd->byuuid);
        for (int i = 0; i < nv; i++)
                rd->byuuid[i] = (UuidRef) { rd->vms[i].uuid, (size_t) i };
        qsort(rd->byuuid, (size_t) nv, sizeof *rd->byuuid, cmp_uuidref);

        if (m->cfg.each_conn)
                m->cfg.each_conn(m->cfg.conn_source, collect_cb, &rd->c);

        size_t cap = (size_t) nh + (size_t) nv + 1;
        rd->samples = xcalloc(cap, sizeof *rd->samples);
        rd->details = xcalloc(cap, sizeof *rd->details);
        rd->host_sample = xmalloc(((size_t) nh + 1) * sizeof(ssize_t));
        rd->vm_sample = xmalloc(((size_t) nv + 1) * sizeof(ssize_t));
        for (int i = 0; i < nh; i++) rd->host_sample[i] = -1;
        for (int i = 0; i < nv; i++) rd->vm_sample[i] = -1;
        rd->usage = xcalloc(rd->c.n + 1, sizeof *rd->usage);
        rd->pools = xcalloc(rd->c.n + 1, sizeof *rd->pools);
        return 0;
}

/* Sample: one host's report into a sample per known VM on it and one for
 * the host (measured, else summed from its VMs), its pools and its usage
 * window. */
static void round_sample_host(Monitor *m, MonRound *rd, HostData *hd) {
        StoreMonHost *h = bsearch(&hd->host_id, rd->hosts, (size_t) rd->nh, sizeof *rd->hosts, cmp_host_id);
        if (!h)
                return;
        double sum_rd = 0, sum_wr = 0, sum_iops = 0, sum_rx = 0, sum_tx = 0, sum_cores = 0, sum_mem = 0;
        bool any_io = false, any_net = false, any_cpu = false, any_mem = false;
        json_t *hdetail = json_object();
        int running = 0;
        for (size_t k = 0; k < hd->n_doms; k++) {
                const HvDomainStats *d = &hd->doms[k];
                if (d->state == HV_STATE_RUNNING || d->state == HV_STATE_BLOCKED)
                        running++;
                UuidRef key = { d->uuid, 0 };
                UuidRef *ref = bsearch(&key, rd->byuuid, (size_t) rd->nv, sizeof key, cmp_uuidref);
                if (!ref || rd->vms[ref->idx].host_id != h->id)
                        continue;
                const StoreMonVm *vm = &rd->vms[ref->idx];
                StorePerfSample *s = &rd->samples[rd->ns];
                vm_collect(m, vm, d, hd->at, rd->now, rd->max_gap, s, &rd->details[rd->ns]);
                rd->vm_sample[ref->idx] = (ssize_t) rd->ns;
                rd->ns++;
                rd->vms_sampled++;
                unsigned vcpus = d->vcpus ? d->vcpus : vm->cpus;
                if (isfinite(s->v[STORE_PERF_CPU])) { any_cpu = true; sum_cores += s->v[STORE_PERF_CPU] / 100.0 * vcpus; }
                if (isfinite(s->v[STORE_PERF_MEMORY])) { any_mem = true; sum_mem += s->v[STORE_PERF_MEMORY]; }
                if (isfinite(s->v[STORE_PERF_DISK_READ])) {
                        any_io = true;
                        sum_rd += s->v[STORE_PERF_DISK_READ];
                        sum_wr += nz(s->v[STORE_PERF_DISK_WRITE]);
                        sum_iops += nz(s->v[STORE_PERF_DISK_IOPS]);
                }
                if (isfinite(s->v[STORE_PERF_NET_RX])) {
                        any_net = true;
                        sum_rx += s->v[STORE_PERF_NET_RX];
                        sum_tx += nz(s->v[STORE_PERF_NET_TX]);
                }
        }
        MonObj *o = obj_get(m, STORE_PERF_HOST, h->id);
        StorePerfSample *s = &rd->samples[rd->ns];
        sample_init(s, STORE_PERF_HOST, h->id, rd->now);
        if (hd->node_ok && hd->node.has_cpu && o->has_node && hd->at - o->at <= rd->max_gap)
                s->v[STORE_PERF_CPU] = mon_busy_pct(o->node_total, o->node_idle, hd->node.cpu_total_ns, hd->node.cpu_idle_ns);
        if (!isfinite(s->v[STORE_PERF_CPU]) && any_cpu && h->cpus > 0)
                s->v[STORE_PERF_CPU] = fmin(100.0, sum_cores / h->cpus * 100.0);
        double total_mib = h->memory_mib;
        if (hd->node_ok && hd->node.has_memory) {
                total_mib = (double) hd->node.memory_total_kib / 1024.0;
                s->v[STORE_PERF_MEMORY] = (double) (hd->node.memory_total_kib - hd->node.memory_free_kib) / 1024.0;
        } else if (any_mem)
                s->v[STORE_PERF_MEMORY] = sum_mem;
        if (isfinite(s->v[STORE_PERF_MEMORY]) && total_mib > 0)
                s->v[STORE_PERF_MEMORY_PCT] = fmin(100.0, s->v[STORE_PERF_MEMORY] / total_mib * 100.0);
        if (any_io) {
                s->v[STORE_PERF_DISK_READ] = sum_rd;
                s->v[STORE_PERF_DISK_WRITE] = sum_wr;
                s->v[STORE_PERF_DISK_IOPS] = sum_iops;
        }
        if (any_net) {
                s->v[STORE_PERF_NET_RX] = sum_rx;
                s->v[STORE_PERF_NET_TX] = sum_tx;
        }
        json_t *jpools = json_array();
        for (size_t p = 0; hd->node_ok && p < hd->node.n_pools; p++) {
                const HvPoolStats *ps = &hd->node.pools[p];
                json_array_append_new(jpools, json_pack("{s:s, s:I, s:I, s:I}", "name", ps->name, "capacity_bytes",
                                                        (json_int_t) ps->capacity_bytes, "allocation_bytes",
                                                        (json_int_t) ps->allocation_bytes, "available_bytes",
                                                        (json_int_t) ps->available_bytes));
                if (streq(ps->name, h->pool) && ps->capacity_bytes > 0) {
                        s->v[STORE_PERF_POOL_PCT] = (double) ps->allocation_bytes / (double) ps->capacity_bytes * 100.0;
                        rd->pools[rd->n_pools++] = (MonRoundPool) { h->id, ps->capacity_bytes, ps->available_bytes };
                }
        }
        json_object_set_new(hdetail, "pools", jpools);
        json_object_set_new(hdetail, "domains_running", json_integer(running));
        json_object_set_new(hdetail, "domains", json_integer((json_int_t) hd->n_doms));
        rd->details[rd->ns] = json_dumps(hdetail, JSON_COMPACT);
        json_decref(hdetail);
        if (hd->node_ok && hd->node.has_cpu) {
                o->has_node = true;
                o->node_total = hd->node.cpu_total_ns;
                o->node_idle = hd->node.cpu_idle_ns;
        }
        o->at = hd->at;
        o->seen_at = rd->now;
        double fig[USAGE_FIGURES] = {
                s->v[STORE_PERF_CPU], s->v[STORE_PERF_MEMORY],
                any_io ? (sum_rd + sum_wr) / m->cfg.disk_capacity_bps * 100.0 : NAN,
                any_net ? (sum_rx + sum_tx) / m->cfg.net_capacity_bps * 100.0 : NAN,
        };
        rd->usage[rd->n_usage].host_id = h->id;
        usage_window(m, o, fig, rd->usage[rd->n_usage].fig);
        rd->n_usage++;
        rd->host_sample[h - rd->hosts] = (ssize_t) rd->ns;
        rd->ns++;
}

static uint64_t round_generation;

void monitor_round_stats(const Monitor *m, MonitorRoundStats *ret) {
        *ret = (MonitorRoundStats) { m->latest_rows_written, m->latest_rows_skipped, m->health_builds, m->health_skips };
}

uint64_t monitor_round_generation(void) {
        return __atomic_load_n(&round_generation, __ATOMIC_ACQUIRE);
}

/* What perf_latest holds for one sample: its figures and its detail. */
static uint64_t latest_hash(const StorePerfSample *s, const char *detail) {
        uint64_t h = fnv1a(FNV1A_INIT, s->v, sizeof s->v);
        return fnv1a_str(h, detail ? detail : "");
}

/* The samples of the round whose perf_latest row would change: an object
 * whose figures and detail are what was last committed for it keeps its
 * row (in an idle estate that is nearly every one: the round then writes
 * no latest row, and /metrics is not rebuilt for it). Fills idx[] and
 * hash[] (rd->ns each); returns how many. */
static size_t latest_changed(Monitor *m, const MonRound *rd, size_t *idx, uint64_t *hash) {
        size_t n = 0;
        for (size_t i = 0; i < rd->ns; i++) {
                const StorePerfSample *s = &rd->samples[i];
                uint64_t h = latest_hash(s, rd->details[i]);
                MonObj *o = obj_get(m, s->kind, s->object_id);
                if (o->has_latest && o->latest_hash == h)
                        continue;
                idx[n] = i;
                hash[n] = h;
                n++;
        }
        return n;
}

/* perf_latest for the changed samples only (see latest_changed()). */
static int latest_write(Monitor *m, const MonRound *rd, const size_t *idx, size_t n) {
        if (n == 0)
                return 0;
        StorePerfSample *s = xmalloc(n * sizeof *s);
        const char **d = xmalloc(n * sizeof *d);
        for (size_t k = 0; k < n; k++) {
                s[k] = rd->samples[idx[k]];
                d[k] = rd->details[idx[k]];
        }
        int r = store_perf_set_latest(m->st, s, d, n);
        free(s);
        free(d);
        return r;
}

/* Write: the round's samples, rollups, usage and pools in one transaction,
 * with states, rules and the health events. 0 or negative. */
static int round_write(Monitor *m, MonRound *rd) {
        int64_t now = rd->now;
        size_t *idx = xmalloc((rd->ns + 1) * sizeof *idx);
        uint64_t *hash = xmalloc((rd->ns + 1) * sizeof *hash);
        size_t n_latest = latest_changed(m, rd, idx, hash);
        int r = store_begin(m->st);
        if (r >= 0) r = store_perf_insert_raw(m->st, rd->samples, rd->ns);
        if (r >= 0) r = latest_write(m, rd, idx, n_latest);
        if (r >= 0) r = store_perf_insert_rollups(m->st, STORE_TIER_5M, rd->l5.r, rd->l5.n);
        if (r >= 0) r = store_perf_insert_rollups(m->st, STORE_TIER_1H, rd->l1h.r, rd->l1h.n);
        for (size_t i = 0; r >= 0 && i < rd->n_usage; i++)
                if (isfinite(rd->usage[i].fig[0]) || isfinite(rd->usage[i].fig[1]))
                        r = store_host_usage_set(m->st, rd->usage[i].host_id, rd->usage[i].fig[0], rd->usage[i].fig[1],
                                                 rd->usage[i].fig[2], rd->usage[i].fig[3], now);
        for (size_t i = 0; r >= 0 && i < rd->n_pools; i++)
                r = store_place_pool_set(m->st, rd->pools[i].host_id, rd->pools[i].cap, rd->pools[i].avail);
        if (r >= 0) {
                refresh_states(m, rd->hosts, rd->nh);
                evaluate_rules(m, rd->hosts, rd->nh, rd->vms, rd->nv, rd->samples, rd->host_sample, rd->vm_sample, now);
                if (now - m->last_gc > 60000) {
                        (void) store_perf_latest_gc(m->st);
                        m->last_gc = now;
                }
                r = store_commit(m->st);
        }
        if (r < 0)
                store_rollback(m->st);
        else {
                /* committed: what perf_latest holds now */
                for (size_t k = 0; k < n_latest; k++) {
                        MonObj *o = obj_get(m, rd->samples[idx[k]].kind, rd->samples[idx[k]].object_id);
                        o->latest_hash = hash[k];
                        o->has_latest = true;
                }
                m->latest_rows_written += n_latest;
                m->latest_rows_skipped += rd->ns - n_latest;
                /* the /metrics answer is of perf_latest: a new one only when it changed */
                if (n_latest > 0)
                        __atomic_add_fetch(&round_generation, 1, __ATOMIC_RELEASE);
                health_events(m);
        }
        free(idx);
        free(hash);
        return r;
}

/* Prune: in its own statements: raw samples every round, so each delete
 * stays as small as one round's rows; the rest every 10 minutes. */
static void round_prune(Monitor *m, int64_t now) {
        int64_t cut[3];
        mon_retention_cutoffs(&m->cfg.retention, now, cut);
        (void) store_perf_prune(m->st, STORE_TIER_RAW, cut[STORE_TIER_RAW]);
        if (now - m->last_prune > 10 * 60 * 1000) {
                for (int t = STORE_TIER_5M; t <= STORE_TIER_1H; t++)
                        (void) store_perf_prune(m->st, (StorePerfTier) t, cut[t]);
                (void) store_delivery_prune(m->st, now - 7 * 24 * 3600 * 1000LL);
                (void) store_assess_prune(m->st, now - m->cfg.retention.rollup_5m_ms);
                (void) store_audit_prune(m->st, now - m->cfg.audit_retention_ms);
                m->last_prune = now;
                /* Forget objects not seen for an hour. */
                objs_rehash(m, m->objs_cap ? m->objs_cap : 1024, now - 3600 * 1000LL);
        }
}

/* End: the round's own figures, queued webhooks sent, everything freed. */
static void round_end(Monitor *m, MonRound *rd) {
        m->rounds++;
        double secs = (double) (mono_ms() - rd->t0) / 1000.0, cpu = thread_cpu_seconds() - rd->cpu0;
        (void) store_monitor_stat_set(m->st, "rounds_total", (double) m->rounds);
        (void) store_monitor_stat_set(m->st, "round_duration_seconds", secs);
        (void) store_monitor_stat_set(m->st, "round_cpu_seconds", cpu);
        (void) store_monitor_stat_set(m->st, "last_round_timestamp_seconds", (double) rd->now / 1000.0);
        (void) store_monitor_stat_set(m->st, "hosts_sampled", (double) rd->c.n);
        (void) store_monitor_stat_set(m->st, "vms_sampled", (double) rd->vms_sampled);
        (void) store_monitor_stat_set(m->st, "collect_errors", (double) rd->c.errors);
        (void) store_monitor_stat_set(m->st, "interval_seconds", m->cfg.interval_ms / 1000.0);
        if (m->round_queued_hooks) {
                m->round_queued_hooks = false;
                monitor_hooks_kick(m);
        }
        log_debug("monitor round: %zu hosts, %d VMs, %zu samples in %.3f s (%.3f s CPU)", rd->c.n, rd->vms_sampled, rd->ns, secs, cpu);
}

static void round_free(MonRound *rd) {
        for (size_t i = 0; i < rd->c.n; i++)
                free(rd->c.h[i].doms);
        free(rd->c.h);
        for (size_t i = 0; i < rd->ns; i++)
                free(rd->details[i]);
        free(rd->details);
        free(rd->samples);
        free(rd->host_sample);
        free(rd->vm_sample);
        free(rd->l5.r);
        free(rd->l1h.r);
        free(rd->usage);
        free(rd->pools);
        free(rd->byuuid);
        free(rd->hosts);
        free(rd->vms);
}

int monitor_round(Monitor *m, int64_t now) {
        MonRound rd = { .now = now };
        if (round_begin(m, &rd) < 0) {
                free(rd.hosts);
                free(rd.vms);
                return -EIO;
        }
        for (size_t hi = 0; hi < rd.c.n; hi++)
                round_sample_host(m, &rd, &rd.c.h[hi]);
        for (size_t i = 0; i < rd.ns; i++)
                rollup_add(m, &rd.samples[i], &rd.l5, &rd.l1h);
        int r = round_write(m, &rd);
        /* the round changed every host's usage: placement patches its
         * inputs here, not on the next rating request */
        if (r >= 0)
                (void) placement_refresh(m->st);
        round_prune(m, now);
        round_end(m, &rd);
        if (m->cfg.model) {
                _cleanup_model_snap_ ModelSnap *snap = model_snap(m->cfg.model);
                monitor_answers_warm(m->st, snap);
        }
        size_t ns = rd.ns;
        round_free(&rd);
        return r < 0 ? r : (int) ns;
}

/* ------------------------------------------------------------------ */
/* lifecycle */

bool monitor_sleep_until(Monitor *m, int64_t deadline_mono, bool wake_on_hooks) {
        pthread_mutex_lock(&m->lock);
        while (!m->stopping) {
                int64_t left = deadline_mono - mono_ms();
                if (left <= 0)
                        break;
                struct timespec ts = time_after_ms(CLOCK_MONOTONIC, left);
                if (wake_on_hooks && m->hooks_pending)
                        break;
                pthread_cond_timedwait(&m->wake, &m->lock, &ts);
        }
        if (wake_on_hooks)
                m->hooks_pending = false;
        bool stop = m->stopping;
        pthread_mutex_unlock(&m->lock);
        return stop;
}

void monitor_hooks_kick(Monitor *m) {
        pthread_mutex_lock(&m->lock);
        m->hooks_pending = true;
        pthread_cond_broadcast(&m->wake);
        pthread_mutex_unlock(&m->lock);
}

static void *collector_main(void *arg) {
        Monitor *m = arg;
        int64_t next = mono_ms();
        for (;;) {
                if (monitor_sleep_until(m, next, false))
                        break;
                next += m->cfg.interval_ms;
                if (monitor_round(m, now_ms()) < 0)
                        log_warn("a monitoring round failed; the next one will try again");
                if (mono_ms() > next) {
                        log_warn("a monitoring round took longer than the interval of %d ms", m->cfg.interval_ms);
                        next = mono_ms();
                }
        }
        return NULL;
}

int monitor_new(Store *st, const MonitorConfig *cfg, Monitor **ret) {
        Monitor *m = xcalloc(1, sizeof *m);
        m->st = st;
        m->cfg = cfg ? *cfg : (MonitorConfig) {0};
        if (m->cfg.interval_ms <= 0) m->cfg.interval_ms = 10000;
        mon_retention_defaults(&m->cfg.retention);
        if (m->cfg.usage_window_ms <= 0) m->cfg.usage_window_ms = 300000;
        if (m->cfg.usage_percentile <= 0 || m->cfg.usage_percentile > 100) m->cfg.usage_percentile = 95;
        if (m->cfg.disk_capacity_bps <= 0) m->cfg.disk_capacity_bps = 500.0 * 1024 * 1024;
        if (m->cfg.net_capacity_bps <= 0) m->cfg.net_capacity_bps = 125e6;
        if (m->cfg.webhook_backoff_ms <= 0) m->cfg.webhook_backoff_ms = 1000;
        if (m->cfg.webhook_max_attempts <= 0) m->cfg.webhook_max_attempts = 8;
        if (m->cfg.webhook_timeout_ms <= 0) m->cfg.webhook_timeout_ms = 5000;
        if (m->cfg.assess_interval_ms <= 0) m->cfg.assess_interval_ms = 60000;
        if (m->cfg.audit_retention_ms <= 0) m->cfg.audit_retention_ms = 90 * 24 * 3600 * 1000LL;
        pthread_mutex_init(&m->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&m->wake, &ca);
        pthread_condattr_destroy(&ca);
        *ret = m;
        return 0;
}

int monitor_start(Monitor *m) {
        int r = pthread_create(&m->collector, NULL, collector_main, m);
        if (r != 0)
                return -r;
        r = pthread_create(&m->hooks, NULL, monitor_hooks_main, m);
        if (r == 0)
                r = pthread_create(&m->assess, NULL, monitor_assess_main, m);
        if (r != 0) {
                /* Stop what did start before reporting. */
                pthread_mutex_lock(&m->lock);
                m->stopping = true;
                pthread_cond_broadcast(&m->wake);
                pthread_mutex_unlock(&m->lock);
                pthread_join(m->collector, NULL);
                return -r;
        }
        m->started = true;
        return 0;
}

void monitor_stop(Monitor *m) {
        if (!m || !m->started)
                return;
        pthread_mutex_lock(&m->lock);
        m->stopping = true;
        pthread_cond_broadcast(&m->wake);
        pthread_mutex_unlock(&m->lock);
        pthread_join(m->collector, NULL);
        pthread_join(m->hooks, NULL);
        pthread_join(m->assess, NULL);
        m->started = false;
}

Monitor *monitor_free(Monitor *m) {
        if (!m)
                return NULL;
        monitor_stop(m);
        for (size_t i = 0; i < m->objs_cap; i++)
                if (m->objs[i].key)
                        obj_clear(&m->objs[i]);
        free(m->objs);
        free(m->pending);
        free(m->aprev);
        json_decref(m->health_prev);
        pthread_mutex_destroy(&m->lock);
        pthread_cond_destroy(&m->wake);
        free(m);
        return NULL;
}
