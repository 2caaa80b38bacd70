/* The counters hv reads for monitoring (see hv-stats.h): one bulk domain
 * stats call per host, node CPU/memory counters and pool capacity. */
#include "hv-stats.h"
#include "hv-internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>


static int stats_fail(const char *what) {
        virErrorPtr e = virGetLastError();
        int code = e ? e->code : VIR_ERR_OK;
        hv_set_error("%s: %s", what, code == VIR_ERR_OK ? "libvirt gave no reason" : virGetLastErrorMessage());
        if (code == VIR_ERR_NO_SUPPORT || code == VIR_ERR_OPERATION_UNSUPPORTED)
                return -EOPNOTSUPP;
        return -EIO;
}

static bool param_u64(const virTypedParameter *p, uint64_t *ret) {
        switch (p->type) {
        case VIR_TYPED_PARAM_ULLONG: *ret = p->value.ul; return true;
        case VIR_TYPED_PARAM_LLONG: *ret = p->value.l < 0 ? 0 : (uint64_t) p->value.l; return true;
        case VIR_TYPED_PARAM_UINT: *ret = p->value.ui; return true;
        case VIR_TYPED_PARAM_INT: *ret = p->value.i < 0 ? 0 : (uint64_t) p->value.i; return true;
        default: return false;
        }
}

/* "block.3.rd.bytes" -> index 3, rest "rd.bytes". */
static bool dev_field(const char *field, const char *prefix, unsigned *ret_idx, const char **ret_rest) {
        size_t pl = strlen(prefix);
        if (strncmp(field, prefix, pl) != 0)
                return false;
        char *end;
        unsigned long idx = strtoul(field + pl, &end, 10);
        if (end == field + pl || *end != '.')
                return false;
        *ret_idx = (unsigned) idx;
        *ret_rest = end + 1;
        return true;
}

static void record_fill(const virDomainStatsRecord *rec, HvDomainStats *d) {
        uint64_t rss = 0, current = 0, available = 0, unused = 0;
        bool has_rss = false, has_current = false, has_available = false, has_unused = false;
        for (int i = 0; i < rec->nparams; i++) {
                const virTypedParameter *p = &rec->params[i];
                uint64_t v;
                if (!param_u64(p, &v))
                        continue;
                const char *f = p->field, *rest;
                unsigned idx;
                if (streq(f, "state.state"))
                        d->state = v <= HV_STATE_PMSUSPENDED ? (HvState) v : HV_STATE_NOSTATE;
                else if (streq(f, "cpu.time")) {
                        d->has_cpu = true;
                        d->cpu_time_ns = v;
                } else if (streq(f, "vcpu.current"))
                        d->vcpus = (unsigned) v;
                else if (streq(f, "balloon.current")) { has_current = true; current = v; }
                else if (streq(f, "balloon.maximum")) d->memory_max_kib = v;
                else if (streq(f, "balloon.rss")) { has_rss = true; rss = v; }
                else if (streq(f, "balloon.available")) { has_available = true; available = v; }
                else if (streq(f, "balloon.unused")) { has_unused = true; unused = v; }
                else if (dev_field(f, "block.", &idx, &rest)) {
                        d->has_block = true;
                        HvDevStats *dv = idx < HV_STATS_MAX_DEV ? &d->disks[idx] : NULL;
                        if (dv && idx + 1 > d->n_disks) d->n_disks = idx + 1;
                        uint64_t *slot = NULL, *total = NULL;
                        if (streq(rest, "rd.bytes")) { slot = dv ? &dv->rd_bytes : NULL; total = &d->disk_total.rd_bytes; }
                        else if (streq(rest, "wr.bytes")) { slot = dv ? &dv->wr_bytes : NULL; total = &d->disk_total.wr_bytes; }
                        else if (streq(rest, "rd.reqs")) { slot = dv ? &dv->rd_reqs : NULL; total = &d->disk_total.rd_reqs; }
                        else if (streq(rest, "wr.reqs")) { slot = dv ? &dv->wr_reqs : NULL; total = &d->disk_total.wr_reqs; }
                        if (slot) *slot = v;
                        if (total) *total += v;
                } else if (dev_field(f, "net.", &idx, &rest)) {
                        d->has_net = true;
                        HvDevStats *dv = idx < HV_STATS_MAX_DEV ? &d->nics[idx] : NULL;
                        if (dv && idx + 1 > d->n_nics) d->n_nics = idx + 1;
                        uint64_t *slot = NULL, *total = NULL;
                        if (streq(rest, "rx.bytes")) { slot = dv ? &dv->rd_bytes : NULL; total = &d->nic_total.rd_bytes; }
                        else if (streq(rest, "tx.bytes")) { slot = dv ? &dv->wr_bytes : NULL; total = &d->nic_total.wr_bytes; }
                        else if (streq(rest, "rx.pkts")) { slot = dv ? &dv->rd_reqs : NULL; total = &d->nic_total.rd_reqs; }
                        else if (streq(rest, "tx.pkts")) { slot = dv ? &dv->wr_reqs : NULL; total = &d->nic_total.wr_reqs; }
                        if (slot) *slot = v;
                        if (total) *total += v;
                }
        }
        /* Names are strings, so a second pass. */
        for (int i = 0; i < rec->nparams; i++) {
                const virTypedParameter *p = &rec->params[i];
                const char *rest;
                unsigned idx;
                if (p->type != VIR_TYPED_PARAM_STRING)
                        continue;
                if (dev_field(p->field, "block.", &idx, &rest) && streq(rest, "name") && idx < HV_STATS_MAX_DEV)
                        snprintf(d->disks[idx].name, sizeof d->disks[idx].name, "%s", p->value.s);
                else if (dev_field(p->field, "net.", &idx, &rest) && streq(rest, "name") && idx < HV_STATS_MAX_DEV)
                        snprintf(d->nics[idx].name, sizeof d->nics[idx].name, "%s", p->value.s);
        }
        if (has_available && has_unused && available >= unused) {
                d->has_memory = true;
                d->memory_used_kib = available - unused;
        } else if (has_rss) {
                d->has_memory = true;
                d->memory_used_kib = rss;
        } else if (has_current) {
                d->has_memory = true;
                d->memory_used_kib = current;
        }
}

static int stats_domains_now(HvConn *c, HvDomainStats **ret, size_t *ret_n) {
        HV_LEASE(c);
        unsigned stats = VIR_DOMAIN_STATS_STATE | VIR_DOMAIN_STATS_CPU_TOTAL | VIR_DOMAIN_STATS_BALLOON |
                         VIR_DOMAIN_STATS_VCPU | VIR_DOMAIN_STATS_INTERFACE | VIR_DOMAIN_STATS_BLOCK;
        virDomainStatsRecordPtr *recs = NULL;
        /* No ENFORCE flag: groups the driver lacks are skipped, not an error. */
        int n = virConnectGetAllDomainStats(hv_conn_virt(c), stats, &recs, 0);
        if (n < 0)
                return stats_fail("cannot read domain statistics");
        HvDomainStats *out = n > 0 ? xcalloc((size_t) n, sizeof *out) : NULL;
        size_t k = 0;
        for (int i = 0; i < n; i++) {
                HvDomainStats *d = &out[k];
                if (virDomainGetUUIDString(recs[i]->dom, d->uuid) < 0)
                        continue;
                record_fill(recs[i], d);
                k++;
        }
        virDomainStatsRecordListFree(recs);
        *ret = out;
        *ret_n = k;
        return 0;
}

static int stats_domains_body(HvConn *c, HvCall *a) {
        return stats_domains_now(c, &a->ret.stats, &a->ret_n);
}

int hv_stats_domains(HvConn *c, HvDomainStats **ret, size_t *ret_n) {
        return HV_CALL_TAKE(c, hv_call_new(stats_domains_body, "reading the domains' statistics", NULL, NULL, NULL, NULL), hv_deadlines.query_ms, ret, ret_n);
}

static void node_cpu(virConnectPtr conn, HvNodeStats *s) {
        int n = 0;
        if (virNodeGetCPUStats(conn, VIR_NODE_CPU_STATS_ALL_CPUS, NULL, &n, 0) < 0 || n <= 0 || n > 64)
                return;
        virNodeCPUStats params[64];
        memset(params, 0, sizeof params);
        if (virNodeGetCPUStats(conn, VIR_NODE_CPU_STATS_ALL_CPUS, params, &n, 0) < 0)
                return;
        uint64_t total = 0, idle = 0;
        bool have_idle = false;
        for (int i = 0; i < n; i++) {
                const char *f = params[i].field;
                if (streq(f, VIR_NODE_CPU_STATS_UTILIZATION))
                        continue; /* a percentage, not a counter */
                total += params[i].value;
                if (streq(f, VIR_NODE_CPU_STATS_IDLE) || streq(f, VIR_NODE_CPU_STATS_IOWAIT)) {
                        idle += params[i].value;
                        have_idle = true;
                }
        }
        if (have_idle && total > 0) {
                s->has_cpu = true;
                s->cpu_total_ns = total;
                s->cpu_idle_ns = idle;
        }
}

static void node_memory(virConnectPtr conn, HvNodeStats *s) {
        int n = 0;
        if (virNodeGetMemoryStats(conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, NULL, &n, 0) == 0 && n > 0 && n <= 16) {
                virNodeMemoryStats params[16];
                memset(params, 0, sizeof params);
                if (virNodeGetMemoryStats(conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, params, &n, 0) == 0) {
                        uint64_t total = 0, avail = 0;
                        for (int i = 0; i < n; i++) {
                                const char *f = params[i].field;
                                if (streq(f, VIR_NODE_MEMORY_STATS_TOTAL))
                                        total = params[i].value;
                                else if (streq(f, VIR_NODE_MEMORY_STATS_FREE) || streq(f, VIR_NODE_MEMORY_STATS_BUFFERS) ||
                                         streq(f, VIR_NODE_MEMORY_STATS_CACHED))
                                        avail += params[i].value;
                        }
                        if (total > 0) {
                                s->has_memory = true;
                                s->memory_total_kib = total;
                                s->memory_free_kib = avail < total ? avail : total;
                                return;
                        }
                }
        }
        /* Drivers without memory stats: total from node info, free from
         * virNodeGetFreeMemory when it answers. */
        virNodeInfo info;
        if (virNodeGetInfo(conn, &info) < 0 || info.memory == 0)
                return;
        unsigned long long free_bytes = virNodeGetFreeMemory(conn);
        if (free_bytes == 0)
                return;
        s->has_memory = true;
        s->memory_total_kib = info.memory;
        s->memory_free_kib = free_bytes / 1024 < info.memory ? free_bytes / 1024 : info.memory;
}

static void node_pools(virConnectPtr conn, HvNodeStats *s) {
        virStoragePoolPtr *pools = NULL;
        int n = virConnectListAllStoragePools(conn, &pools, VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE);
        if (n < 0)
                return;
        for (int i = 0; i < n; i++) {
                virStoragePoolInfo info;
                if (s->n_pools < HV_STATS_MAX_POOLS && virStoragePoolGetInfo(pools[i], &info) == 0) {
                        HvPoolStats *p = &s->pools[s->n_pools++];
                        const char *name = virStoragePoolGetName(pools[i]);
                        snprintf(p->name, sizeof p->name, "%s", name ? name : "?");
                        p->capacity_bytes = info.capacity;
                        p->allocation_bytes = info.allocation;
                        p->available_bytes = info.available;
                }
                virStoragePoolFree(pools[i]);
        }
        free(pools);
}

static int stats_node_now(HvConn *c, HvNodeStats *ret) {
        HV_LEASE(c);
        virConnectPtr conn = hv_conn_virt(c);
        HvNodeStats s;
        memset(&s, 0, sizeof s);
        if (virConnectIsAlive(conn) != 1) {
                hv_set_error("the connection to the host is closed");
                return -EIO;
        }
        node_cpu(conn, &s);
        node_memory(conn, &s);
        node_pools(conn, &s);
        *ret = s;
        return 0;
}

static int stats_node_body(HvConn *c, HvCall *a) {
        return stats_node_now(c, &a->out.node);
}

int hv_stats_node(HvConn *c, HvNodeStats *ret) {
        return hv_call_out(c, hv_call_new(stats_node_body, "reading the host's statistics", NULL, NULL, NULL, NULL), hv_deadlines.query_ms, ret, sizeof *ret);
}
