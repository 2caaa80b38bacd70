/* hv-stats: the performance counters hv reads for monitoring. One bulk call
 * per host per round (virConnectGetAllDomainStats), never one per domain;
 * node CPU and memory counters; storage pool capacity. Drivers that lack a
 * group (libvirt's test driver has only state.*) leave its has_* flag false:
 * the caller reports what exists. Counters are cumulative as libvirt gives
 * them; rates are the monitor's business. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "hv.h"

#define HV_STATS_MAX_DEV 8

/* One disk's or NIC's cumulative counters. For a NIC, rd_* is received and
 * wr_* transmitted. */
typedef struct {
        char name[32];          /* "vda", "vnet3" */
        uint64_t rd_bytes, wr_bytes;
        uint64_t rd_reqs, wr_reqs;   /* requests (disks) or packets (NICs) */
} HvDevStats;

typedef struct {
        char uuid[37];
        HvState state;
        unsigned vcpus;               /* vcpu.current, 0 when unknown */
        bool has_cpu;
        uint64_t cpu_time_ns;         /* cpu.time */
        bool has_memory;
        uint64_t memory_used_kib;     /* guest view (available - unused), else QEMU's RSS, else balloon.current */
        uint64_t memory_max_kib;      /* balloon.maximum, 0 when unknown */
        bool has_block;
        size_t n_disks;               /* the first HV_STATS_MAX_DEV; totals cover all */
        HvDevStats disks[HV_STATS_MAX_DEV];
        HvDevStats disk_total;
        bool has_net;
        size_t n_nics;
        HvDevStats nics[HV_STATS_MAX_DEV];
        HvDevStats nic_total;
} HvDomainStats;

typedef struct {
        char name[64];
        uint64_t capacity_bytes, allocation_bytes, available_bytes;
} HvPoolStats;

#define HV_STATS_MAX_POOLS 16
typedef struct {
        bool has_cpu;
        uint64_t cpu_total_ns;        /* every mode, all CPUs */
        uint64_t cpu_idle_ns;         /* idle + iowait */
        bool has_memory;
        uint64_t memory_total_kib;
        uint64_t memory_free_kib;     /* free + buffers + cached, or the free figure alone */
        size_t n_pools;               /* active pools, the first HV_STATS_MAX_POOLS */
        HvPoolStats pools[HV_STATS_MAX_POOLS];
} HvNodeStats;

/* Reads every domain's counters with one virConnectGetAllDomainStats call
 * (state, cpu, balloon, vcpu, block, interface groups; groups the driver
 * lacks are left out silently). Returns 0 with a malloc'd array in *ret
 * (caller frees; NULL when n is 0) and its length in *ret_n, or negative
 * with hv_last_error() set. */
int hv_stats_domains(HvConn *c, HvDomainStats **ret, size_t *ret_n);

/* Reads the node's CPU and memory counters and the active storage pools.
 * Parts the driver cannot give are left out (has_* false); fails only when
 * the connection does. 0 or negative with hv_last_error() set. */
int hv_stats_node(HvConn *c, HvNodeStats *ret);
