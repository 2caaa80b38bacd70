/* The ha capability's part of the store: clusters (tables created by the
 * place capability's "place-clusters" migration), HA settings of VMs, each
 * host's fence command, VMs waiting for capacity after a failover, and the
 * saved domain definitions HA restarts VMs from. Same conventions as
 * store.h: 0 or a count on success, -ENOENT, -EEXIST, -ENOTEMPTY, -EIO. */
#pragma once

#include "store.h"

/* ---- clusters ---- */
/* Creates a cluster with its members in one transaction. -EEXIST when the
 * name is taken or a host is already a member of a cluster (nothing is
 * created then). */
int store_cluster_insert(Store *st, const char *name, const char *shared_storage, int tolerate,
                         const int64_t *host_ids, size_t n_hosts, int64_t *ret_id);
int store_cluster_delete(Store *st, int64_t id);
int store_cluster_find(Store *st, const char *name, int64_t *ret_id);
/* Clusters with their members ([{id, name, state}]) and counts. name NULL: all. */
int store_cluster_list(Store *st, const char *name, json_t **ret);
int store_cluster_get_json(Store *st, int64_t id, json_t **ret);
/* The cluster host_id is a member of: 0, *ret_cluster_id and its shared
 * storage path (malloc'd, may pass NULL), or -ENOENT. */
int store_cluster_of_host(Store *st, int64_t host_id, int64_t *ret_cluster_id, char **ret_shared_storage);
/* Member host ids of a cluster, by id. Count or negative; *ret malloc'd. */
int store_cluster_members(Store *st, int64_t cluster_id, int64_t **ret);
/* Every cluster id. Count or negative; *ret malloc'd. */
int store_cluster_ids(Store *st, int64_t **ret);
/* The tolerate setting of a cluster. */
int store_cluster_tolerate(Store *st, int64_t cluster_id, int *ret);

/* ---- HA settings of VMs ---- */
/* priority 1 high, 2 medium, 3 low; 0 turns HA off (removes the row). */
int store_vm_ha_set(Store *st, int64_t vm_id, int priority);
/* 0 and the priority, -ENOENT when the VM is not highly available. */
int store_vm_ha_get(Store *st, int64_t vm_id, int *ret_priority);

typedef struct {
        int64_t vm_id;
        int priority;            /* 0 when the VM is not highly available */
} StoreHaRef;
/* Every VM Armada places on host_id with its HA priority, HA VMs first in
 * priority order (then by id), the others after; another installation's
 * (origin "foreign") are left out: HA never restarts them. Count or negative. */
int store_ha_vms_on_host(Store *st, int64_t host_id, StoreHaRef **ret);

/* ---- fencing ---- */
/* Sets a host's fence command: argv as a JSON array of strings (checked by
 * the caller). NULL removes it. */
int store_host_fence_set(Store *st, int64_t host_id, const char *argv_json);
/* 0 and the JSON array text (malloc'd), or -ENOENT when none is set. */
int store_host_fence_get(Store *st, int64_t host_id, char **ret_argv_json);

/* ---- VMs waiting for a place after a failover ---- */
int store_ha_pending_add(Store *st, int64_t vm_id, int64_t from_host_id, const char *reason);
int store_ha_pending_remove(Store *st, int64_t vm_id);
/* Pending VMs, highest priority first. Count or negative. */
int store_ha_pending_list(Store *st, StoreHaRef **ret);
int store_ha_pending_json(Store *st, json_t **ret);

/* ---- saved definitions ---- */
int store_vm_xml_set(Store *st, int64_t vm_id, const char *xml);
/* 0 and the XML (malloc'd), or -ENOENT. */
int store_vm_xml_get(Store *st, int64_t vm_id, char **ret);
/* HA VMs (on any host) without a saved definition: count, *ret malloc'd. */
int store_ha_vms_without_xml(Store *st, int64_t **ret);
