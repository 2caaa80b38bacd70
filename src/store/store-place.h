/* store-place: the place capability's tables and SQL — host-group placement
 * policies, placement rules, measured host load and pool usage, and the
 * one-pass reads the placement glue (placement/placement.c) builds the
 * engine's host arrays from. Conventions as in store.h. Not included from
 * store.h: include it where you use it. */
#pragma once

#include "store.h"

/* VM states whose vCPUs and memory count as allocated on their host: the
 * guest holds (or may hold, "unknown") its memory there. */
#define STORE_PLACE_ACTIVE_STATES "'running', 'paused', 'creating', 'shutting-down', 'suspended', 'unknown'"

/* One candidate host with everything placement needs. Measured figures
 * are NAN when the sample leaves them out. */
typedef struct {
        int64_t id;
        char name[64];
        int64_t group_id;
        char state[24];
        unsigned cpus;                  /* logical CPUs; 0 before the first refresh */
        uint64_t memory_mib;            /* physical memory; 0 before the first refresh */
        int64_t usage_at;               /* host_usage.sampled_at (ms), 0 when none */
        double cpu_pct, memory_used_mib, disk_io_pct, network_pct;
        bool has_pool;                  /* host_pool has a row for the host */
        uint64_t pool_capacity_bytes, pool_available_bytes;
        /* Allocations of the VMs the database places here (the VM being
         * placed left out): vCPUs and memory of VMs in an active state,
         * the part of those in state 'creating', and the disks of every VM. */
        uint64_t alloc_cpus, alloc_memory_mib;
        uint64_t creating_cpus, creating_memory_mib;
        uint64_t alloc_disk_bytes;
        /* Room promised to VMs moving here (placement_reservation rows of
         * VMs the database does not place here yet; the VM being placed
         * left out). */
        uint64_t reserved_cpus, reserved_memory_mib, reserved_disk_bytes;
} StorePlaceHost;

/* Every host in group_id's subtree (group_id and its descendants; 0 means
 * the root), ordered by id, with its usage and allocations; exclude_vm_id's
 * own allocations are not counted (0 for none). Returns the count and a
 * malloc'd array (NULL when 0), or negative. */
int store_place_hosts(Store *st, int64_t group_id, int64_t exclude_vm_id, StorePlaceHost **ret);

/* A member of a cluster with the memory of its HA VMs (vm_ha rows, active
 * states, exclude_vm_id left out). */
typedef struct {
        int64_t cluster_id;
        int tolerate;
        int64_t host_id;
        char host_state[24];
        uint64_t ha_memory_mib;
} StorePlaceClusterMember;
/* Every member of every cluster, ordered by cluster then host. Count and a
 * malloc'd array, or negative. */
int store_place_cluster_members(Store *st, int64_t exclude_vm_id, StorePlaceClusterMember **ret);

/* ---- what changed: the sequence of placement's inputs ----
 * Triggers raise one counter (the sequence) on every change to what
 * store_place_hosts(), store_place_cluster_members(),
 * store_place_rule_members() and store_policy_all() read, and note the
 * keys it touches with that value: a host's id (its row, allocations,
 * pool or reservations changed), or a global key for the small tables read
 * whole, or (separately) a host whose measured usage alone changed. A
 * reader holding the inputs of sequence s reads only what was noted after
 * s. Within a transaction the sequence includes its own changes and goes
 * back with a rollback. */
#define STORE_PLACE_KEY_GROUPS (-1)     /* groups and policies: store_policy_all() */
#define STORE_PLACE_KEY_CLUSTERS (-2)   /* store_place_cluster_members() */
#define STORE_PLACE_KEY_RULES (-3)      /* store_place_rule_members() */
/* The current sequence: 0 and *ret, or negative. */
int store_place_seq(Store *st, int64_t *ret);
/* The keys noted after since, ascending (global keys first). Count and a
 * malloc'd array, or negative. */
int store_place_changed_keys(Store *st, int64_t since, int64_t **ret);
/* As store_place_hosts() (all groups, no VM left out), only the hosts
 * noted after since that still exist. Count and array, or negative. */
int store_place_hosts_changed(Store *st, int64_t since, StorePlaceHost **ret);
/* As store_place_hosts() with vm_id left out, only the hosts whose figures
 * vm_id changes: its own host and the host of its reservation. */
int store_place_hosts_of_vm(Store *st, int64_t vm_id, StorePlaceHost **ret);
/* A host's measured usage (as in StorePlaceHost; usage_at 0 and NAN
 * figures when it has no sample any more). */
typedef struct {
        int64_t host_id;
        int64_t usage_at;
        double cpu_pct, memory_used_mib, disk_io_pct, network_pct;
} StorePlaceUsage;
/* The usage of every host whose usage was noted after since, ordered by
 * host. Count and array, or negative. */
int store_place_usage_changed(Store *st, int64_t since, StorePlaceUsage **ret);

/* ---- reservations of moves in flight (placement_reservation) ----
 * Records (or replaces) vm_id's one reservation: cpus, memory and disk
 * counted as used on host_id by store_place_hosts() until released. 0 or
 * negative. */
int store_place_reserve(Store *st, int64_t vm_id, int64_t host_id, unsigned cpus, uint64_t memory_mib, uint64_t disk_bytes);
/* Drops vm_id's reservation (only when it is on host_id, if host_id > 0).
 * 0 also when there was none, or negative. */
int store_place_release(Store *st, int64_t vm_id, int64_t host_id);
/* Drops every reservation: at start, when no move is in flight. */
int store_place_release_all(Store *st);

/* ---- storage pool usage (written by a host refresh or the monitor) ---- */
int store_place_pool_set(Store *st, int64_t host_id, uint64_t capacity_bytes, uint64_t available_bytes);

/* ---- host-group placement policy ---- */
typedef enum {
        STORE_POLICY_CPU_PCT,           /* reserve, percent of the host's CPU */
        STORE_POLICY_MEMORY_MIB,        /* reserve, MiB */
        STORE_POLICY_DISK_GIB,          /* reserve, GiB of the host's pool */
        STORE_POLICY_DISK_IO_PCT,       /* reserve, percent */
        STORE_POLICY_NETWORK_PCT,       /* reserve, percent */
        STORE_POLICY_W_CPU,             /* weights */
        STORE_POLICY_W_MEMORY,
        STORE_POLICY_W_DISK,
        STORE_POLICY_W_DISK_IO,
        STORE_POLICY_W_NETWORK,
        STORE_POLICY__COUNT,
} StorePolicyField;

/* A group's own settings: set[f] false means "inherit". goal "" inherits. */
typedef struct {
        int64_t group_id;
        int64_t parent_id;              /* 0 for the root */
        bool set[STORE_POLICY__COUNT];
        double value[STORE_POLICY__COUNT];
        char goal[32];
} StoreGroupPolicy;

/* The built-in policy above the root group, used for whatever no group on
 * the way up sets: reserves CPU 10 %, memory 512 MiB, disk 10 GiB, disk I/O
 * 0 %, network 0 %; weights CPU 1, memory 1, disk 0.5, disk I/O 0.5,
 * network 0.5 (the engine's defaults); goal load-balancing. */
extern const double store_policy_defaults[STORE_POLICY__COUNT];
#define STORE_POLICY_DEFAULT_GOAL "load-balancing"
/* The JSON/column names of the fields, in StorePolicyField order:
 * cpu_pct, memory_mib, disk_gib, disk_io_pct, network_pct, then the weights
 * cpu, memory, disk, disk_io, network. */
extern const char *const store_policy_names[STORE_POLICY__COUNT];

/* A group's effective policy: each value with the group it comes from
 * (0: the built-in default). */
typedef struct {
        double value[STORE_POLICY__COUNT];
        int64_t from[STORE_POLICY__COUNT];
        char goal[32];
        int64_t goal_from;
} StoreEffectivePolicy;
/* Resolves group_id's effective policy by walking up from it through
 * all[0..n) (as store_policy_all returns it: ordered by id). A group not in
 * all gets the built-in defaults. Pure. */
void store_policy_resolve(const StoreGroupPolicy *all, size_t n, int64_t group_id, StoreEffectivePolicy *ret);

/* The group's own policy (all unset when it has none). 0, -ENOENT when the
 * group does not exist, or negative. */
int store_policy_get(Store *st, int64_t group_id, StoreGroupPolicy *ret);
/* Every group with its parent and own policy, ordered by id. Count and a
 * malloc'd array, or negative. */
int store_policy_all(Store *st, StoreGroupPolicy **ret);
/* Replaces the group's own policy with p (a row with nothing set is
 * removed). 0 or negative. */
int store_policy_set(Store *st, const StoreGroupPolicy *p);

/* ---- placement rules ---- */
/* A member of a rule with where its VM lives (host_id 0 when unplaced). */
typedef struct {
        int64_t rule_id;
        char kind[16];                  /* "anti-affinity" or "affinity" */
        int64_t vm_id;
        char vm_name[64];
        int64_t host_id;
} StorePlaceRuleMember;
/* Every member of every rule, ordered by rule then VM. Count and a malloc'd
 * array, or negative. */
int store_place_rule_members(Store *st, StorePlaceRuleMember **ret);

/* Creates a rule with its members in one transaction. 0 and *ret_id,
 * -EEXIST when the name is taken, or negative (nothing created). */
int store_rule_insert(Store *st, const char *name, const char *kind, const int64_t *vm_ids, size_t n, int64_t *ret_id);
int store_rule_find(Store *st, const char *name, int64_t *ret_id);
/* Replaces the members of a rule. 0, -ENOENT or negative. */
int store_rule_set_members(Store *st, int64_t id, const int64_t *vm_ids, size_t n);
/* 0, -ENOENT or negative. */
int store_rule_delete(Store *st, int64_t id);
/* [{id, name, kind, created_at, vms: [name...]}] ordered by name; NULL on error. */
int store_rule_list(Store *st, json_t **ret);
/* One rule as in store_rule_list, or NULL when there is none. */
int store_rule_get_json(Store *st, int64_t id, json_t **ret);
