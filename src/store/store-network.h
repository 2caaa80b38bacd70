/* The networks-and-storage part of the store: libvirt networks Armada
 * manages per host or per host group, where each one stands on which host,
 * and the network cards of VMs. Same conventions as store.h: 0 or a count
 * on success, -ENOENT, -EEXIST, -ENOTEMPTY, -EIO; lists as JSON arrays the
 * caller owns. */
#pragma once

#include "store.h"

extern const StoreMigration store_migrations_network[];

/* ---- networks ---- */
typedef struct {
        int64_t id;
        char name[64];
        int64_t group_id;            /* a group network (and its subgroups' hosts), or */
        int64_t host_id;             /* a network of one host; exactly one is set */
        char mode[16];               /* "nat", "bridge", "isolated" */
        char bridge[64];             /* bridge mode: the host's bridge; "" otherwise */
        int vlan;                    /* 0: none */
        char subnet[32];             /* "10.1.2.0/24" or "" */
        bool is_default;             /* the default network of its group (blank VMs get a NIC on it) */
} StoreNetwork;

/* Inserts a network; -EEXIST when the name is taken (names are unique
 * across the estate, so "network 'x'" means one thing on every host). With
 * is_default, the group's previous default stops being it (one
 * transaction). */
int store_network_insert(Store *st, const StoreNetwork *n, int64_t *ret_id);
int store_network_get(Store *st, int64_t id, StoreNetwork *ret);
int store_network_find(Store *st, const char *name, StoreNetwork *ret);
int store_network_delete(Store *st, int64_t id);
/* Every network as JSON ({id, name, group_id, group_path, host_id, host_name,
 * mode, bridge, vlan, subnet, is_default, created_at, hosts: [{host_id,
 * host_name, group_id, state, error}]}) ordered by name; name NULL: all. */
int store_network_list(Store *st, const char *name, json_t **ret);
/* The ids of the hosts a network stands on: its host, or every host of its
 * group and the group's subgroups. Count, *ret malloc'd. */
int store_network_hosts(Store *st, const StoreNetwork *n, int64_t **ret);
/* The networks that should stand on host_id (its own and those of its
 * group and the group's ancestors). Count, *ret malloc'd. */
int store_network_for_host(Store *st, int64_t host_id, StoreNetwork **ret);
/* Records what a host said when the network was set up there: state
 * "active", "failed" or "missing" (unreachable), with a sentence or NULL. */
int store_network_host_set(Store *st, int64_t network_id, int64_t host_id, const char *state, const char *error);
/* The default network of host_id's group or of the nearest ancestor that
 * names one: 0 and its name (ret of 64 bytes), -ENOENT when none. */
int store_network_default_for_host(Store *st, int64_t host_id, char ret[64]);
/* Whether network name stands on host_id as Armada recorded it: 0 and
 * *ret (true when the network covers the host and the host said "active"). */
int store_network_on_host(Store *st, const char *name, int64_t host_id, bool *ret);

/* A network on one host as placement sees it. */
typedef struct {
        int64_t host_id;
        bool active;                 /* recorded "active"; false: "failed" */
} StoreNetworkOnHost;
/* Where Armada network name stands, as the hosts answered: the hosts with
 * a record "active" or "failed" ("missing": the host could not be reached,
 * so the network is not there). Count and *ret (malloc'd, NULL when 0),
 * -ENOENT when name is not an Armada network. */
int store_network_states(Store *st, const char *name, StoreNetworkOnHost **ret);

/* ---- network cards of VMs ---- */
/* Adds a NIC; -EEXIST when the MAC is in use anywhere in the estate. */
int store_vm_nic_insert(Store *st, int64_t vm_id, const char *mac, const char *network, const char *model);
/* -ENOENT when the VM has no NIC with that MAC. */
int store_vm_nic_delete(Store *st, int64_t vm_id, const char *mac);
/* The VM's NICs: [{mac, network, model, created_at}], in order of creation. */
int store_vm_nic_list(Store *st, int64_t vm_id, json_t **ret);
/* The distinct networks vm_id's NICs use, by name: count and *ret
 * (malloc'd names of 64 bytes, NULL when 0). */
int store_vm_nic_networks(Store *st, int64_t vm_id, char (**ret)[64]);
/* Whether a MAC is used by any VM: 0 and *ret. */
int store_vm_nic_mac_used(Store *st, const char *mac, bool *ret);
/* The VMs with a NIC on network name: [{id, name}] (at most limit). */
int store_vm_nic_users(Store *st, const char *name, int limit, json_t **ret);

/* ---- storage pools (what each host's pools looked like at its last full
 * refresh: the lists and /metrics read these, never the hosts) ---- */
typedef struct {
        const char *name, *type, *path;
        bool active;
        uint64_t capacity, allocation, available;
        unsigned n_volumes;
} StorePoolStat;
/* Replaces the records of host_id's pools (one transaction); writes
 * nothing when they are the same (updated_at: when they last changed). */
int store_pool_stats_set(Store *st, int64_t host_id, const StorePoolStat *pools, size_t n);
int store_pool_stat_delete(Store *st, int64_t host_id, const char *name);
/* [{host_id, host_name, group_id, name, type, active, path, capacity_bytes,
 * allocation_bytes, available_bytes, n_volumes, armada, updated_at}] by host
 * and name; host_id 0: every host's. */
int store_pool_stat_list(Store *st, int64_t host_id, json_t **ret);
/* The disks of the VMs on host_id: [{path, vm_id, vm_name}]. */
int store_volume_users(Store *st, int64_t host_id, json_t **ret);
