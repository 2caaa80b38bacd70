/* The monitor's read side for the API: one object's series, the health
 * tree, and the Prometheus exposition. Each reads the store only, so the
 * API needs no handle on the running monitor. */
#include "monitor.h"
#include "store/store-network.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

json_t *monitor_series_json(Store *st, StorePerfKind kind, int64_t object_id, const char *metric, int64_t from,
                            int64_t to, int64_t step, const MonRetention *ret_cfg, char *why, size_t why_size) {
        MonRetention ret = ret_cfg ? *ret_cfg : (MonRetention) {0};
        mon_retention_defaults(&ret);
        if (from >= to) {
                snprintf(why, why_size, "'from' must be before 'to'.");
                return NULL;
        }
        StorePerfMetric only = STORE_PERF__COUNT;
        if (metric && store_perf_metric_parse(metric, &only) < 0) {
                snprintf(why, why_size, "There is no metric '%.64s'; use one of cpu, memory, memory_pct, disk_read, disk_write,"
                         " disk_iops, net_rx, net_tx, pool_pct.", metric);
                return NULL;
        }
        if (step <= 0) {
                step = (to - from) / 300;
                if (step < 1000) step = 1000;
        }
        StorePerfTier tier = mon_tier_for(&ret, now_ms(), from, step);
        int64_t res = tier == STORE_TIER_RAW ? 0 : tier == STORE_TIER_5M ? MON_STEP_5M_MS : MON_STEP_1H_MS;
        if (step < res)
                step = res;
        json_t *series = json_array();
        for (int m = 0; m < STORE_PERF__COUNT; m++) {
                if (only != STORE_PERF__COUNT && m != (int) only)
                        continue;
                if (kind == STORE_PERF_VM && m == STORE_PERF_POOL_PCT)
                        continue;
                StorePerfPoint *pts = NULL;
                int n = store_perf_query(st, tier, kind, object_id, (StorePerfMetric) m, from, to, &pts);
                if (n < 0) {
                        json_decref(series);
                        snprintf(why, why_size, "A database error occurred while reading the series.");
                        return NULL;
                }
                StorePerfPoint *ds = xcalloc((size_t) n + 1, sizeof *ds);
                size_t k = mon_downsample(pts, (size_t) n, step, ds);
                json_t *points = json_array();
                for (size_t i = 0; i < k; i++)
                        json_array_append_new(points, json_pack("{s:I, s:f, s:f, s:I}", "t", (json_int_t) ds[i].at, "avg", ds[i].avg,
                                                                "max", ds[i].max, "n", (json_int_t) ds[i].n));
                free(ds);
                free(pts);
                json_array_append_new(series, json_pack("{s:s, s:s, s:o}", "metric", store_perf_metric_names[m], "unit",
                                                        store_perf_metric_units[m], "points", points));
        }
        static const char *const tiers[] = { "raw", "5m", "1h" };
        return json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:o}", "kind", kind == STORE_PERF_HOST ? "host" : "vm",
                         "id", (json_int_t) object_id, "from", (json_int_t) from, "to", (json_int_t) to, "step_ms",
                         (json_int_t) step, "tier", tiers[tier], "series", series);
}

/* ------------------------------------------------------------------ */
/* health */

typedef struct {
        json_t *node;
        MonHealth h;
        size_t cause;           /* index in reasons of the first one at level h */
} HNode;

static json_t *hnode(const char *kind, int64_t id, const char *name) {
        return json_pack("{s:s, s:I, s:s, s:s, s:[], s:[]}", "kind", kind, "id", (json_int_t) id, "name", name ? name : "?",
                         "health", "healthy", "reasons", "children");
}

static void worsen(HNode *n, MonHealth h, const char *reason) {
        json_t *reasons = json_object_get(n->node, "reasons");
        if (h > n->h) {
                n->h = h;
                n->cause = reason ? json_array_size(reasons) : SIZE_MAX;
        }
        if (reason)
                json_array_append_new(reasons, json_string(reason));
}

/* After a host's or VM's own state and alerts, before its children: records
 * that part as "own_health" and "own_reason", so that a change can be traced
 * to the object that really changed (mon_health_changes()). */
static void own_done(HNode *n) {
        json_object_set_new(n->node, "own_health", json_string(mon_health_name(n->h)));
        json_t *why = n->h != MON_HEALTH_HEALTHY ? json_array_get(json_object_get(n->node, "reasons"), n->cause) : NULL;
        json_object_set(n->node, "own_reason", why ? why : json_null());
}

/* The open alerts ordered by (kind, object id), keeping their order
 * within one object: a node finds its own by binary search instead of a
 * scan of every alert (nodes x alerts at 21,000 nodes). */
typedef struct {
        const char *kind;
        int64_t id;
        size_t pos;
        json_t *a;
} AlertRef;

typedef struct {
        AlertRef *r;
        size_t n;
} AlertIndex;

static int alert_ref_cmp(const void *x, const void *y) {
        const AlertRef *a = x, *b = y;
        int c = strcmp(a->kind, b->kind);
        if (c)
                return c;
        if (a->id != b->id)
                return a->id < b->id ? -1 : 1;
        return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static void alert_index(json_t *alerts, AlertIndex *ret) {
        size_t n = json_array_size(alerts);
        ret->r = xcalloc(n + 1, sizeof *ret->r);
        ret->n = n;
        for (size_t i = 0; i < n; i++) {
                json_t *a = json_array_get(alerts, i);
                ret->r[i] = (AlertRef) { json_string_value(json_object_get(a, "object_kind")) ?: "",
                                         json_integer_value(json_object_get(a, "object_id")), i, a };
        }
        qsort(ret->r, n, sizeof *ret->r, alert_ref_cmp);
}

/* Open alerts on one object become reasons. */
static void alerts_on(HNode *n, const AlertIndex *ix, const char *kind, int64_t id) {
        size_t lo = 0, up = ix->n;
        AlertRef key = { kind, id, 0, NULL };
        while (lo < up) {
                size_t mid = (lo + up) / 2;
                if (alert_ref_cmp(&ix->r[mid], &key) < 0)
                        lo = mid + 1;
                else
                        up = mid;
        }
        for (size_t i = lo; i < ix->n && ix->r[i].id == id && streq(ix->r[i].kind, kind); i++) {
                json_t *a = ix->r[i].a;
                _cleanup_free_ char *why = xasprintf("alert %lld (%s): %s", (long long) json_integer_value(json_object_get(a, "id")),
                                                     json_string_value(json_object_get(a, "severity")),
                                                     json_string_value(json_object_get(a, "message")));
                worsen(n, mon_health_of_severity(json_string_value(json_object_get(a, "severity"))), why);
        }
}

static void child_done(HNode *parent, HNode *child, const char *what) {
        json_object_set_new(child->node, "health", json_string(mon_health_name(child->h)));
        if (child->h != MON_HEALTH_HEALTHY) {
                _cleanup_free_ char *why = xasprintf("%s '%s' is %s", what, json_string_value(json_object_get(child->node, "name")),
                                                     mon_health_name(child->h));
                worsen(parent, child->h, why);
        }
        json_array_append(json_object_get(parent->node, "children"), child->node);
}

/* Every host and VM as the monitor reads them (ordered by id): from the
 * read model's snapshot when there is one, without SQL, else from the
 * store. Sets *nh and *nv (negative on a database error). */
static void mon_rows(Store *st, const ModelSnap *snap, StoreMonHost **hosts, int *nh, StoreMonVm **vms, int *nv) {
        if (!snap) {
                *nh = store_mon_hosts(st, hosts);
                *nv = *nh < 0 ? -1 : store_mon_vms(st, vms);
                return;
        }
        StoreMonHost *h = xcalloc(snap->hosts->n + 1, sizeof *h);
        for (size_t i = 0; i < snap->hosts->n; i++) {
                const ModelRow *r = snap->hosts->by_id[i];
                h[i] = (StoreMonHost) { .id = r->id, .group_id = r->group_id, .cpus = (unsigned) jget_int(r->json, "cpus"),
                                        .memory_mib = (uint64_t) jget_int(r->json, "memory_mib") };
                snprintf(h[i].name, sizeof h[i].name, "%s", r->name);
                snprintf(h[i].state, sizeof h[i].state, "%s", r->state);
                snprintf(h[i].pool, sizeof h[i].pool, "%s", jget_str(r->json, "pool"));
        }
        StoreMonVm *v = xcalloc(snap->vms->n + 1, sizeof *v);
        for (size_t i = 0; i < snap->vms->n; i++) {
                const ModelRow *r = snap->vms->by_id[i];
                v[i] = (StoreMonVm) { .id = r->id, .host_id = r->host_id, .owner_id = r->owner_id,
                                      .cpus = (unsigned) jget_int(r->json, "cpus"), .memory_mib = (uint64_t) jget_int(r->json, "memory_mib") };
                snprintf(v[i].uuid, sizeof v[i].uuid, "%s", jget_str(r->json, "uuid"));
                snprintf(v[i].name, sizeof v[i].name, "%s", r->name);
                snprintf(v[i].state, sizeof v[i].state, "%s", r->state);
        }
        *hosts = h;
        *vms = v;
        *nh = (int) snap->hosts->n;
        *nv = (int) snap->vms->n;
}

json_t *monitor_health_json(Store *st) {
        return monitor_health_json_from(st, NULL);
}

json_t *monitor_health_json_from(Store *st, const ModelSnap *snap) {
        _cleanup_json_ json_t *groups = NULL, *alerts = NULL;
        int r = store_mon_groups_json(st, &groups);
        if (r >= 0)
                r = store_alert_list_json(st, "open", 1000000, &alerts);
        StoreMonHost *hosts = NULL;
        StoreMonVm *vms = NULL;
        int nh, nv;
        mon_rows(st, snap, &hosts, &nh, &vms, &nv);
        if (r < 0 || nh < 0 || nv < 0) {
                free(hosts);
                free(vms);
                return NULL;
        }
        AlertIndex ai;
        alert_index(alerts, &ai);
        size_t ng = json_array_size(groups);
        HNode *g = xcalloc(ng + 1, sizeof *g);
        for (size_t i = 0; i < ng; i++) {
                json_t *gr = json_array_get(groups, i);
                g[i].node = hnode("group", json_integer_value(json_object_get(gr, "id")),
                                  json_integer_value(json_object_get(gr, "parent_id")) == 0 ? STORE_ROOT_GROUP_NAME
                                  : json_string_value(json_object_get(gr, "name")));
                json_object_set(g[i].node, "path", json_object_get(gr, "path"));
        }
        /* VMs, then hosts (VMs roll up into them), then groups deepest first. */
        HNode *hn = xcalloc((size_t) nh + 1, sizeof *hn);
        for (int i = 0; i < nh; i++) {
                hn[i].node = hnode("host", hosts[i].id, hosts[i].name);
                json_object_set_new(hn[i].node, "state", json_string(hosts[i].state));
                const char *why;
                MonHealth h = mon_health_host_state(hosts[i].state, &why);
                worsen(&hn[i], h, why ? why : NULL);
                alerts_on(&hn[i], &ai, "host", hosts[i].id);
                own_done(&hn[i]);
        }
        for (int i = 0; i < nv; i++) {
                int hi = -1;
                for (int lo = 0, up = nh - 1; lo <= up; ) {
                        int mid = (lo + up) / 2;
                        if (hosts[mid].id == vms[i].host_id) { hi = mid; break; }
                        if (hosts[mid].id < vms[i].host_id) lo = mid + 1; else up = mid - 1;
                }
                if (hi < 0)
                        continue; /* not placed: no host to roll up into */
                HNode v = { hnode("vm", vms[i].id, vms[i].name), MON_HEALTH_HEALTHY };
                json_object_set_new(v.node, "state", json_string(vms[i].state));
                json_object_set_new(v.node, "owner_id", json_integer(vms[i].owner_id));
                const char *why;
                /* A host that is down makes its VMs' state unknown; the host says why. */
                MonHealth h = mon_health_vm_state(vms[i].state, &why);
                worsen(&v, h, why);
                alerts_on(&v, &ai, "vm", vms[i].id);
                own_done(&v);
                child_done(&hn[hi], &v, "VM");
                json_decref(v.node);
        }
        for (int i = 0; i < nh; i++) {
                size_t gi = 0;
                for (size_t k = 0; k < ng; k++)
                        if (json_integer_value(json_object_get(g[k].node, "id")) == hosts[i].group_id) gi = k;
                json_object_set_new(hn[i].node, "group_id", json_integer(hosts[i].group_id));
                child_done(&g[gi], &hn[i], "host");
                json_decref(hn[i].node);
        }
        /* Groups: children have larger ids than parents (created after them),
         * except after moves; go by depth of path instead. */
        int *depth = xcalloc(ng + 1, sizeof *depth);
        int max_depth = 0;
        for (size_t i = 0; i < ng; i++) {
                const char *p = json_string_value(json_object_get(json_array_get(groups, i), "path"));
                depth[i] = p && *p ? 1 : 0;
                for (; p && *p; p++)
                        if (*p == '/') depth[i]++;
                if (depth[i] > max_depth) max_depth = depth[i];
        }
        json_t *root = NULL;
        for (int d = max_depth; d >= 0; d--)
                for (size_t i = 0; i < ng; i++) {
                        if (depth[i] != d)
                                continue;
                        int64_t parent = json_integer_value(json_object_get(json_array_get(groups, i), "parent_id"));
                        if (parent == 0) {
                                json_object_set_new(g[i].node, "health", json_string(mon_health_name(g[i].h)));
                                root = json_incref(g[i].node);
                                continue;
                        }
                        for (size_t k = 0; k < ng; k++)
                                if (json_integer_value(json_object_get(g[k].node, "id")) == parent) {
                                        child_done(&g[k], &g[i], "host group");
                                        break;
                                }
                }
        for (size_t i = 0; i < ng; i++)
                json_decref(g[i].node);
        free(depth);
        free(ai.r);
        free(g);
        free(hn);
        free(hosts);
        free(vms);
        return root ? root : json_object();
}

/* ------------------------------------------------------------------ */
/* Prometheus */

int monitor_process_read(MonitorProcess *ret) {
        MonitorProcess p = {0};
        _cleanup_free_ char *stat = NULL;
        int r = file_read_all("/proc/self/stat", &stat, NULL);
        if (r < 0)
                return r;
        /* Fields after the command (which may hold spaces) start after ')'. */
        const char *q = strrchr(stat, ')');
        if (!q)
                return -EINVAL;
        unsigned long long utime = 0, stime = 0, starttime = 0;
        long rss = 0;
        if (sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu %*u %ld",
                   &utime, &stime, &starttime, &rss) != 4)
                return -EINVAL;
        double hz = (double) sysconf(_SC_CLK_TCK);
        p.cpu_seconds = (double) (utime + stime) / hz;
        p.resident_bytes = (double) rss * (double) sysconf(_SC_PAGESIZE);
        _cleanup_free_ char *up = NULL;
        double uptime = 0;
        if (file_read_all("/proc/uptime", &up, NULL) == 0)
                uptime = strtod(up, NULL);
        p.start_time_seconds = (double) now_ms() / 1000.0 - uptime + (double) starttime / hz;
        DIR *d = opendir("/proc/self/fd");
        if (d) {
                for (struct dirent *e; (e = readdir(d)); )
                        if (e->d_name[0] != '.') p.open_fds++;
                closedir(d);
                p.open_fds--; /* the directory itself */
        }
        *ret = p;
        return 0;
}

typedef struct {
        const char *name, *help;
        StorePerfMetric m;
        double scale;
} Family;

static const Family HOST_FAMILIES[] = {
        { "armada_host_cpu_usage_ratio", "Share of the host's CPU time that was busy in the last interval.", STORE_PERF_CPU, 0.01 },
        { "armada_host_memory_used_bytes", "Memory in use on the host.", STORE_PERF_MEMORY, 1048576.0 },
        { "armada_host_memory_usage_ratio", "Share of the host's memory in use.", STORE_PERF_MEMORY_PCT, 0.01 },
        { "armada_host_disk_read_bytes_per_second", "Bytes per second its VMs read from disk.", STORE_PERF_DISK_READ, 1 },
        { "armada_host_disk_write_bytes_per_second", "Bytes per second its VMs wrote to disk.", STORE_PERF_DISK_WRITE, 1 },
        { "armada_host_disk_requests_per_second", "Disk requests per second of its VMs.", STORE_PERF_DISK_IOPS, 1 },
        { "armada_host_network_receive_bytes_per_second", "Bytes per second its VMs received.", STORE_PERF_NET_RX, 1 },
        { "armada_host_network_transmit_bytes_per_second", "Bytes per second its VMs sent.", STORE_PERF_NET_TX, 1 },
        { "armada_host_pool_usage_ratio", "Share of the host's storage pool allocated.", STORE_PERF_POOL_PCT, 0.01 },
};
static const Family VM_FAMILIES[] = {
        { "armada_vm_cpu_usage_ratio", "Share of the VM's vCPU time used in the last interval.", STORE_PERF_CPU, 0.01 },
        { "armada_vm_memory_used_bytes", "Memory the VM uses.", STORE_PERF_MEMORY, 1048576.0 },
        { "armada_vm_memory_usage_ratio", "Share of the VM's memory in use.", STORE_PERF_MEMORY_PCT, 0.01 },
        { "armada_vm_disk_read_bytes_per_second", "Bytes per second the VM read from its disks.", STORE_PERF_DISK_READ, 1 },
        { "armada_vm_disk_write_bytes_per_second", "Bytes per second the VM wrote to its disks.", STORE_PERF_DISK_WRITE, 1 },
        { "armada_vm_disk_requests_per_second", "Disk requests per second of the VM.", STORE_PERF_DISK_IOPS, 1 },
        { "armada_vm_network_receive_bytes_per_second", "Bytes per second the VM received.", STORE_PERF_NET_RX, 1 },
        { "armada_vm_network_transmit_bytes_per_second", "Bytes per second the VM sent.", STORE_PERF_NET_TX, 1 },
};

typedef struct {
        int64_t id;
        char *labels;            /* host="a",group="b" */
} LabelOf;

static const char *labels_of(const LabelOf *l, size_t n, int64_t id) {
        size_t lo = 0, hi = n;
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (l[mid].id == id) return l[mid].labels;
                if (l[mid].id < id) lo = mid + 1; else hi = mid;
        }
        return NULL;
}

/* A family whose one sample per object carries its state as a label. */
static void expo_states(StrBuf *b, const char *name, const char *help, const LabelOf *objs, const char *const *states, size_t n) {
        mon_expo_family(b, name, "gauge", help);
        for (size_t i = 0; i < n; i++) {
                StrBuf l = {0};
                strbuf_append(&l, objs[i].labels);
                mon_expo_label(&l, "state", states[i]);
                mon_expo_sample(b, name, l.s, 1);
                strbuf_free(&l);
        }
}

/* The families measured by the collector for objects of one kind, from the
 * latest samples. */
static void expo_latest(StrBuf *b, json_t *latest, StorePerfKind kind, const Family *fams, size_t n_fams,
                        const LabelOf *objs, size_t n) {
        for (size_t f = 0; f < n_fams; f++) {
                mon_expo_family(b, fams[f].name, "gauge", fams[f].help);
                size_t i;
                json_t *row;
                json_array_foreach(latest, i, row) {
                        if (json_integer_value(json_object_get(row, "kind")) != kind)
                                continue;
                        json_t *v = json_object_get(row, store_perf_metric_names[fams[f].m]);
                        const char *l = labels_of(objs, n, json_integer_value(json_object_get(row, "object_id")));
                        if (l && json_is_number(v))
                                mon_expo_sample(b, fams[f].name, l, json_number_value(v) * fams[f].scale);
                }
        }
}

static void device_families(StrBuf *b, json_t *latest, const LabelOf *vml, size_t nvl, const char *arr, const char *name,
                            const char *field, const char *help) {
        mon_expo_family(b, name, "gauge", help);
        size_t i;
        json_t *row;
        json_array_foreach(latest, i, row) {
                if (json_integer_value(json_object_get(row, "kind")) != STORE_PERF_VM)
                        continue;
                const char *base = labels_of(vml, nvl, json_integer_value(json_object_get(row, "object_id")));
                json_t *devs = json_object_get(json_object_get(row, "detail"), arr);
                size_t k;
                json_t *dv;
                json_array_foreach(devs, k, dv) {
                        if (!base)
                                continue;
                        StrBuf l = {0};
                        strbuf_append(&l, base);
                        mon_expo_label(&l, "device", json_string_value(json_object_get(dv, "name")));
                        mon_expo_sample(b, name, l.s, json_number_value(json_object_get(dv, field)));
                        strbuf_free(&l);
                }
        }
}

/* The label sets of every host ({host, group}) and VM ({vm, host}), in
 * the order of hosts and vms; free each .labels. */
static void expo_labels(const StoreMonHost *hosts, int nh, const StoreMonVm *vms, int nv, json_t *groups, LabelOf **ret_hl,
                        LabelOf **ret_vl) {
        LabelOf *hl = xcalloc((size_t) nh + 1, sizeof *hl), *vl = xcalloc((size_t) nv + 1, sizeof *vl);
        for (int i = 0; i < nh; i++) {
                StrBuf l = {0};
                const char *path = "";
                size_t k;
                json_t *gr;
                json_array_foreach(groups, k, gr)
                        if (json_integer_value(json_object_get(gr, "id")) == hosts[i].group_id)
                                path = json_string_value(json_object_get(gr, "path"));
                mon_expo_label(&l, "host", hosts[i].name);
                mon_expo_label(&l, "group", path && *path ? path : STORE_ROOT_GROUP_NAME);
                hl[i] = (LabelOf) { hosts[i].id, strbuf_steal(&l) };
        }
        for (int i = 0; i < nv; i++) {
                StrBuf l = {0};
                mon_expo_label(&l, "vm", vms[i].name);
                const char *hname = "";
                for (int lo = 0, up = nh - 1; lo <= up; ) {   /* hosts are ordered by id */
                        int mid = (lo + up) / 2;
                        if (hosts[mid].id == vms[i].host_id) { hname = hosts[mid].name; break; }
                        if (hosts[mid].id < vms[i].host_id) lo = mid + 1; else up = mid - 1;
                }
                mon_expo_label(&l, "host", hname);
                vl[i] = (LabelOf) { vms[i].id, strbuf_steal(&l) };
        }
        *ret_hl = hl;
        *ret_vl = vl;
}

/* The host families: up, state, size, and the latest samples. */
static void expo_hosts(StrBuf *b, const StoreMonHost *hosts, int nh, const LabelOf *hl, json_t *latest) {
        mon_expo_family(b, "armada_host_up", "gauge", "1 when armadad reaches the host (state ok), else 0.");
        for (int i = 0; i < nh; i++)
                mon_expo_sample(b, "armada_host_up", hl[i].labels, streq(hosts[i].state, "ok") ? 1 : 0);
        const char **states = xcalloc((size_t) nh + 1, sizeof(char *));
        for (int i = 0; i < nh; i++)
                states[i] = hosts[i].state;
        expo_states(b, "armada_host_state", "The host's state as a label; always 1.", hl, states, (size_t) nh);
        free(states);
        mon_expo_family(b, "armada_host_cpus", "gauge", "Logical CPUs of the host.");
        for (int i = 0; i < nh; i++)
                mon_expo_sample(b, "armada_host_cpus", hl[i].labels, hosts[i].cpus);
        mon_expo_family(b, "armada_host_memory_bytes", "gauge", "Physical memory of the host.");
        for (int i = 0; i < nh; i++)
                mon_expo_sample(b, "armada_host_memory_bytes", hl[i].labels, (double) hosts[i].memory_mib * 1048576.0);
        expo_latest(b, latest, STORE_PERF_HOST, HOST_FAMILIES, ELEMENTSOF(HOST_FAMILIES), hl, (size_t) nh);
}

/* The VM families: state, size, the latest samples, and per disk and NIC. */
static void expo_vms(StrBuf *b, const StoreMonVm *vms, int nv, const LabelOf *vl, json_t *latest) {
        const char **states = xcalloc((size_t) nv + 1, sizeof(char *));
        for (int i = 0; i < nv; i++)
                states[i] = vms[i].state;
        expo_states(b, "armada_vm_state", "The VM's state as a label; always 1.", vl, states, (size_t) nv);
        free(states);
        mon_expo_family(b, "armada_vm_vcpus", "gauge", "Virtual CPUs of the VM.");
        for (int i = 0; i < nv; i++)
                mon_expo_sample(b, "armada_vm_vcpus", vl[i].labels, vms[i].cpus);
        mon_expo_family(b, "armada_vm_memory_bytes", "gauge", "Memory assigned to the VM.");
        for (int i = 0; i < nv; i++)
                mon_expo_sample(b, "armada_vm_memory_bytes", vl[i].labels, (double) vms[i].memory_mib * 1048576.0);
        expo_latest(b, latest, STORE_PERF_VM, VM_FAMILIES, ELEMENTSOF(VM_FAMILIES), vl, (size_t) nv);
        device_families(b, latest, vl, (size_t) nv, "disks", "armada_vm_block_read_bytes_per_second", "read_bps",
                        "Bytes per second read from one disk of the VM.");
        device_families(b, latest, vl, (size_t) nv, "disks", "armada_vm_block_write_bytes_per_second", "write_bps",
                        "Bytes per second written to one disk of the VM.");
        device_families(b, latest, vl, (size_t) nv, "nics", "armada_vm_interface_receive_bytes_per_second", "rx_bps",
                        "Bytes per second received on one interface of the VM.");
        device_families(b, latest, vl, (size_t) nv, "nics", "armada_vm_interface_transmit_bytes_per_second", "tx_bps",
                        "Bytes per second sent on one interface of the VM.");
}

/* Jobs, open and unacknowledged alerts, and webhook deliveries by state. */
static void expo_counts(StrBuf *b, json_t *counts, json_t *alerts) {
        static const char *const JOB_STATES[] = { "queued", "running", "succeeded", "failed", "cancelled" };
        static const char *const DELIVERY_STATES[] = { "pending", "delivered", "failed" };
        mon_expo_family(b, "armada_jobs", "gauge", "Jobs by state.");
        for (size_t s = 0; s < ELEMENTSOF(JOB_STATES); s++) {
                double n = 0;
                size_t i;
                json_t *row;
                json_array_foreach(counts, i, row)
                        if (streq(json_string_value(json_object_get(row, "what")), "job") &&
                            streq(json_string_value(json_object_get(row, "state")) ?: "", JOB_STATES[s]))
                                n = (double) json_integer_value(json_object_get(row, "n"));
                StrBuf l = {0};
                mon_expo_label(&l, "state", JOB_STATES[s]);
                mon_expo_sample(b, "armada_jobs", l.s, n);
                strbuf_free(&l);
        }
        static const char *const SEVERITIES[] = { "info", "warning", "critical" };
        mon_expo_family(b, "armada_alerts_open", "gauge", "Open alerts by severity.");
        for (size_t s = 0; s < ELEMENTSOF(SEVERITIES); s++) {
                double n = 0;
                size_t i;
                json_t *row;
                json_array_foreach(alerts, i, row)
                        if (streq(json_string_value(json_object_get(row, "severity")) ?: "", SEVERITIES[s]))
                                n = (double) json_integer_value(json_object_get(row, "n"));
                StrBuf l = {0};
                mon_expo_label(&l, "severity", SEVERITIES[s]);
                mon_expo_sample(b, "armada_alerts_open", l.s, n);
                strbuf_free(&l);
        }
        mon_expo_family(b, "armada_alerts_unacknowledged", "gauge", "Open alerts nobody has acknowledged, by severity.");
        for (size_t s = 0; s < ELEMENTSOF(SEVERITIES); s++) {
                double n = 0;
                size_t i;
                json_t *row;
                json_array_foreach(alerts, i, row)
                        if (streq(json_string_value(json_object_get(row, "severity")) ?: "", SEVERITIES[s]))
                                n = json_number_value(json_object_get(row, "unacknowledged"));
                StrBuf l = {0};
                mon_expo_label(&l, "severity", SEVERITIES[s]);
                mon_expo_sample(b, "armada_alerts_unacknowledged", l.s, n);
                strbuf_free(&l);
        }
        mon_expo_family(b, "armada_webhook_deliveries", "gauge", "Webhook deliveries kept, by state.");
        for (size_t s = 0; s < ELEMENTSOF(DELIVERY_STATES); s++) {
                double n = 0;
                size_t i;
                json_t *row;
                json_array_foreach(counts, i, row)
                        if (streq(json_string_value(json_object_get(row, "what")), "webhook_delivery") &&
                            streq(json_string_value(json_object_get(row, "state")) ?: "", DELIVERY_STATES[s]))
                                n = (double) json_integer_value(json_object_get(row, "n"));
                StrBuf l = {0};
                mon_expo_label(&l, "state", DELIVERY_STATES[s]);
                mon_expo_sample(b, "armada_webhook_deliveries", l.s, n);
                strbuf_free(&l);
        }
}

/* The monitor's own statistics (monitor_stat's rows). */
static void expo_stats(StrBuf *b, json_t *stats) {
        static const struct { const char *key, *name, *type, *help; } STATS[] = {
                { "rounds_total", "armada_monitor_rounds_total", "counter", "Collection rounds since armadad started." },
                { "round_duration_seconds", "armada_monitor_round_duration_seconds", "gauge", "Wall time of the last collection round." },
                { "round_cpu_seconds", "armada_monitor_round_cpu_seconds", "gauge", "CPU time the last collection round used." },
                { "last_round_timestamp_seconds", "armada_monitor_last_round_timestamp_seconds", "gauge", "When the last round ran (Unix time)." },
                { "interval_seconds", "armada_monitor_interval_seconds", "gauge", "The collection interval." },
                { "hosts_sampled", "armada_monitor_hosts_sampled", "gauge", "Hosts sampled in the last round." },
                { "vms_sampled", "armada_monitor_vms_sampled", "gauge", "VMs sampled in the last round." },
                { "collect_errors", "armada_monitor_collect_errors", "gauge", "Hosts whose statistics could not be read in the last round." },
        };
        for (size_t s = 0; s < ELEMENTSOF(STATS); s++) {
                size_t i;
                json_t *row;
                json_array_foreach(stats, i, row)
                        if (streq(json_string_value(json_object_get(row, "key")) ?: "", STATS[s].key)) {
                                mon_expo_family(b, STATS[s].name, STATS[s].type, STATS[s].help);
                                mon_expo_sample(b, STATS[s].name, NULL, json_number_value(json_object_get(row, "value")));
                        }
        }
}

/* armadad's up and login figures, and its process figures (self may be
 * NULL): nothing from the store. */
static void expo_process(StrBuf *b, const MonitorProcess *self, uint64_t login_rate_limited) {
        mon_expo_family(b, "armada_up", "gauge", "1 while armadad answers.");
        mon_expo_sample(b, "armada_up", NULL, 1);
        mon_expo_family(b, "armada_login_rate_limited_total", "counter",
                        "Logins refused because their user and address, or their address, had too many recent failures.");
        mon_expo_sample(b, "armada_login_rate_limited_total", NULL, (double) login_rate_limited);
        if (self) {
                mon_expo_family(b, "process_cpu_seconds_total", "counter", "CPU time armadad used, user and system.");
                mon_expo_sample(b, "process_cpu_seconds_total", NULL, self->cpu_seconds);
                mon_expo_family(b, "process_resident_memory_bytes", "gauge", "armadad's resident memory.");
                mon_expo_sample(b, "process_resident_memory_bytes", NULL, self->resident_bytes);
                mon_expo_family(b, "process_start_time_seconds", "gauge", "When armadad started (Unix time).");
                mon_expo_sample(b, "process_start_time_seconds", NULL, floor(self->start_time_seconds));
                mon_expo_family(b, "process_open_fds", "gauge", "File descriptors armadad has open.");
                mon_expo_sample(b, "process_open_fds", NULL, self->open_fds);
        }
}

char *monitor_prometheus_text(Store *st, const MonitorProcess *self, uint64_t login_rate_limited) {
        return monitor_prometheus_text_from(st, NULL, self, login_rate_limited);
}

/* The storage pools of the hosts as their last full refresh recorded them
 * (store-network.h): capacity, allocation, available, by host and pool. */
static void expo_pools(StrBuf *b, Store *st) {
        static const struct { const char *name, *field, *help; } fams[] = {
                { "armada_pool_capacity_bytes", "capacity_bytes", "Size of the host's storage pool." },
                { "armada_pool_allocation_bytes", "allocation_bytes", "Bytes allocated in the host's storage pool." },
                { "armada_pool_available_bytes", "available_bytes", "Bytes still free in the host's storage pool." },
        };
        _cleanup_json_ json_t *pools = NULL;
        if (store_pool_stat_list(st, 0, &pools) < 0)
                return;
        for (size_t f = 0; f < ELEMENTSOF(fams); f++) {
                mon_expo_family(b, fams[f].name, "gauge", fams[f].help);
                size_t i;
                json_t *p;
                json_array_foreach(pools, i, p) {
                        StrBuf l = {0};
                        mon_expo_label(&l, "host", json_string_value(json_object_get(p, "host_name")));
                        mon_expo_label(&l, "pool", json_string_value(json_object_get(p, "name")));
                        mon_expo_sample(b, fams[f].name, l.s, (double) json_integer_value(json_object_get(p, fams[f].field)));
                        strbuf_free(&l);
                }
        }
}

char *monitor_prometheus_objects_text(Store *st, const ModelSnap *snap) {
        StoreMonHost *hosts = NULL;
        StoreMonVm *vms = NULL;
        int nh, nv;
        mon_rows(st, snap, &hosts, &nh, &vms, &nv);
        _cleanup_json_ json_t *groups = NULL, *latest = NULL;
        int r = store_mon_groups_json(st, &groups);
        if (r >= 0)
                r = store_perf_latest_json(st, &latest);
        if (nh < 0 || nv < 0 || r < 0) {
                free(hosts);
                free(vms);
                return NULL;
        }
        LabelOf *hl, *vl;
        expo_labels(hosts, nh, vms, nv, groups, &hl, &vl);
        StrBuf b = {0};
        expo_hosts(&b, hosts, nh, hl, latest);
        expo_vms(&b, vms, nv, vl, latest);
        expo_pools(&b, st);
        for (int i = 0; i < nh; i++) free(hl[i].labels);
        for (int i = 0; i < nv; i++) free(vl[i].labels);
        free(hl);
        free(vl);
        free(hosts);
        free(vms);
        return strbuf_steal(&b);
}

char *monitor_prometheus_counts_text(Store *st) {
        _cleanup_json_ json_t *counts = NULL, *alerts = NULL, *stats = NULL;
        int r = store_monitor_counts_json(st, &counts);
        if (r >= 0)
                r = store_alert_counts_json(st, &alerts);
        if (r >= 0)
                r = store_monitor_stats_json(st, &stats);
        if (r < 0)
                return NULL;
        StrBuf b = {0};
        expo_counts(&b, counts, alerts);
        expo_stats(&b, stats);
        return strbuf_steal(&b);
}

char *monitor_prometheus_process_text(const MonitorProcess *self, uint64_t login_rate_limited) {
        StrBuf b = {0};
        expo_process(&b, self, login_rate_limited);
        return strbuf_steal(&b);
}

char *monitor_prometheus_rest_text(Store *st, const MonitorProcess *self, uint64_t login_rate_limited) {
        _cleanup_free_ char *counts = monitor_prometheus_counts_text(st);
        if (!counts)
                return NULL;
        _cleanup_free_ char *process = monitor_prometheus_process_text(self, login_rate_limited);
        return xasprintf("%s%s", counts, process);
}

char *monitor_prometheus_text_from(Store *st, const ModelSnap *snap, const MonitorProcess *self, uint64_t login_rate_limited) {
        _cleanup_free_ char *objects = monitor_prometheus_objects_text(st, snap);
        _cleanup_free_ char *rest = objects ? monitor_prometheus_rest_text(st, self, login_rate_limited) : NULL;
        if (!rest)
                return NULL;
        return xasprintf("%s%s", objects, rest);
}
