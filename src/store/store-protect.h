/* The protection capability's tables: backup datastores (a name for a
 * directory the chunk store owns, with its usage as last computed by a job)
 * and when each recovery point was last verified. Conventions as in
 * store.h: 0 or a positive id/count on success, -ENOENT/-EEXIST/-EIO on
 * failure; JSON results are new references the caller owns. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include "store.h"

extern const StoreMigration store_migrations_protect[];

/* ---- datastores ---- */
/* -EEXIST when the name or the path is taken. */
int store_datastore_insert(Store *st, const char *name, const char *path, uint32_t chunk_size, int64_t *ret_id);
int store_datastore_find(Store *st, const char *name, int64_t *ret_id);
int store_datastore_find_path(Store *st, const char *path, int64_t *ret_id);
/* {id, name, path, chunk_size, created_at, usage (object or null), usage_at}. */
int store_datastore_get_json(Store *st, int64_t id, json_t **ret);
/* Every datastore, by name. */
int store_datastore_list(Store *st, json_t **ret);
/* Forgets a datastore and its verification records. -ENOENT. */
int store_datastore_delete(Store *st, int64_t id);
/* Records the usage (a JSON object's text) computed now. */
int store_datastore_set_usage(Store *st, int64_t id, const char *usage_json);

/* ---- verification of points ---- */
/* Records that point (vm_uuid, point_id) of datastore id was verified now,
 * good or not. */
int store_datastore_point_verified(Store *st, int64_t id, const char *vm_uuid, const char *point_id, bool ok);
/* {vm_uuid, point_id, verified_at, ok} of every point of datastore id
 * verified at least once. */
int store_datastore_verified_list(Store *st, int64_t id, json_t **ret);

/* --- Backups --- */

typedef struct StoreBackupPoint {
        const char *datastore;   /* the datastore's name */
        const char *vm_uuid;
        const char *vm_name;
        int64_t vm_id;           /* 0 when the VM is gone */
        int64_t owner_id;        /* the VM's owner then (0: none) */
        int64_t group_id;        /* the VM's host group then */
        int64_t host_id;         /* where it ran (its checkpoint lives there) */
        const char *point_id;
        bool full;
        const char *consistency; /* "application" or "crash" */
        const char *checkpoint;  /* the libvirt checkpoint made with it, or NULL */
        uint64_t size_bytes;     /* sum of its disks */
        uint64_t bytes_read, bytes_written;
        int64_t duration_ms;
} StoreBackupPoint;

/* Indexes a committed point; a point already indexed is updated. */
int store_backup_point_add(Store *st, const StoreBackupPoint *p);
/* Forgets a point (its manifest is gone). -ENOENT when not indexed. */
int store_backup_point_remove(Store *st, const char *datastore, const char *vm_uuid, const char *point_id);
/* Points, newest first, of vm_uuid (NULL: all) in datastore (NULL: all):
 * [{id, datastore, vm_uuid, vm_name, vm_id, owner_id, group_id, host_id,
 * point_id, full, consistency, checkpoint, size_bytes, bytes_read,
 * bytes_written, duration_ms, created_at}]. */
int store_backup_point_list(Store *st, const char *vm_uuid, const char *datastore, json_t **ret);
/* One point as listed; -ENOENT. */
int store_backup_point_get(Store *st, const char *datastore, const char *vm_uuid, const char *point_id, json_t **ret);
/* The newest point of vm_uuid in datastore; -ENOENT when none. */
int store_backup_point_last(Store *st, const char *vm_uuid, const char *datastore, json_t **ret);
/* The record of an offline backup's paused QEMU (protect-backup.c): set
 * before the start, cleared once it is shut off. get: {vm_id, host_id,
 * vm_uuid, job_id, started_at}, -ENOENT when there is none. */
int store_backup_offline_set(Store *st, int64_t vm_id, int64_t host_id, const char *vm_uuid, int64_t job_id);
int store_backup_offline_get(Store *st, int64_t vm_id, json_t **ret);
int store_backup_offline_clear(Store *st, int64_t vm_id);
/* The checkpoint of vm_uuid's newest point in each datastore (what each
 * datastore's next incremental starts from): [{datastore, checkpoint}].
 * One probe of backup_point_vm_idx per datastore. */
int store_backup_checkpoints_in_use(Store *st, const char *vm_uuid, json_t **ret);
/* The newest good point of vm_uuid in any datastore (good: not found
 * unrestorable by its datastore's last verify): {datastore, point_id, full,
 * consistency, size_bytes, created_at, verified_at, verified_ok (null when
 * never verified)}; -ENOENT when none. Points indexed under a datastore no
 * longer registered do not count. One indexed query. */
int store_backup_point_last_good(Store *st, const char *vm_uuid, json_t **ret);
/* Every VM of the inventory with its newest good point:
 * [{vm_uuid, vm_name, point_id (null: none)}], by vm_uuid. One pass over
 * the VMs, one index probe each. */
int store_backup_vms_last_good(Store *st, json_t **ret);
/* A cheap fingerprint of what store_backup_vms_last_good() reads (the
 * newest ids and the row counts of points, verifications, datastores and
 * VMs; "verified" is a formatted time): equal objects, equal answers
 * (but for VM renames). */
int store_backup_status_key(Store *st, json_t **ret);
/* When (ms since the epoch) the oldest vm.backup job still running
 * started; -ENOENT when none runs. */
int store_backup_oldest_running(Store *st, int64_t *ret_ms);
/* The self-service grant VM vm_id was deployed under and the points it
 * holds: 0 (grant 0 when none recorded), -ENOENT when the VM has no
 * deployment record. */
int store_backup_vm_grant(Store *st, int64_t vm_id, int64_t *ret_grant_id, int64_t *ret_points);
/* Records VM to_vm_id (a restored copy) under from_vm_id's grant, template
 * and points, so that it counts against the same quota. */
int store_backup_vm_grant_copy(Store *st, int64_t to_vm_id, int64_t from_vm_id);

/* --- Snapshots --- */
/* How many snapshots VM vm_id has, as the last snapshot job or list saw on
 * its host (libvirt is the truth; this is the VM JSON's "snapshots" count,
 * so that the VM lists read it from the read model). -ENOENT for no VM. */
int store_vm_snapshots_set(Store *st, int64_t vm_id, int64_t count);

/* Armada's copy of each snapshot's libvirt XML (secure fields included), so
 * that a host whose libvirt lacks the metadata (after a failover, a failed
 * migration) can be given it back. Rows go with their VM. */
/* VM vm_id's copies, parents before children: 0 and a JSON array of
 * {name, xml, current}, or negative. */
int store_snapshot_list(Store *st, int64_t vm_id, json_t **ret);
/* Inserts or updates the copy of snapshot name of VM vm_id. */
int store_snapshot_put(Store *st, int64_t vm_id, const char *name, int64_t created, bool current, const char *xml);
/* Deletes the copy of snapshot name of VM vm_id (none is no error). */
int store_snapshot_drop(Store *st, int64_t vm_id, const char *name);

/* Protection policies: a VM's own, or a host group's (for every VM on a
 * host in its subtree, unless the VM has its own; the deepest group's
 * wins). keep: last, hourly, daily, weekly, monthly, yearly. */
typedef struct StoreBackupPolicy {
        int64_t vm_id, group_id;  /* one of them */
        const char *datastore;    /* NULL: the only one */
        int64_t every_s;
        int64_t keep[6];
} StoreBackupPolicy;
/* Sets (replaces) the policy of the VM or the group: 0 and its id. */
int store_backup_policy_set(Store *st, const StoreBackupPolicy *p, int64_t *ret_id);
/* [{id, vm_id, vm_name, group_id, group_path, datastore, every_s, keep_*, created_at}] */
int store_backup_policy_list(Store *st, json_t **ret);
int store_backup_policy_get(Store *st, int64_t id, json_t **ret);
int store_backup_policy_delete(Store *st, int64_t id);
/* Every VM a policy covers, with the policy that applies: [{vm_id,
 * vm_name, vm_uuid, state, owner_id, policy_id, datastore, every_s, keep_*,
 * applied_ms (when the policy was made, ms)}]. */
int store_backup_policy_vms(Store *st, json_t **ret);
/* Every policy, without the VMs it covers: [{policy_id, vm_id, group_id,
 * datastore, every_s, keep_*, applied_ms}] (one row per policy: few). */
int store_backup_policies(Store *st, json_t **ret);
/* The newest point of each VM among the points indexed with an id above
 * after_id (0: all of them): [{vm_uuid, last_ms (indexed), last_id (the newest point id)}]; *ret_max_id the highest
 * id read (the next call's after_id) and *ret_gen the count of point rows
 * ever deleted (when it moves, a newest point may be gone: read all again). */
int store_backup_points_newest(Store *st, int64_t after_id, json_t **ret, int64_t *ret_max_id, int64_t *ret_gen);
/* When the newest indexed point of vm_uuid was made (ms); -ENOENT when none. */
int store_backup_last_point_ms(Store *st, const char *vm_uuid, int64_t *ret_ms);
/* Whether a vm.backup of vm_id is queued or running, or was queued at or
 * after since_ms (a failed one is not retried before its interval). */
int store_backup_job_pending(Store *st, int64_t vm_id, int64_t since_ms, bool *ret);

/* --- Replication --- */
typedef struct StoreReplication {
        const char *name;
        int64_t datastore_id;    /* the source */
        const char *to_path;     /* a directory, or NULL and: */
        const char *to_url;      /* another armadad, its datastore to_datastore */
        const char *to_datastore;
        const char *token;       /* the API token for to_url (never read back by the JSON getters) */
        const char *ca_file;     /* may be NULL */
        int64_t every_s;         /* 0: run by hand only */
} StoreReplication;
/* -EEXIST when the name is taken. */
int store_replication_insert(Store *st, const StoreReplication *r, int64_t *ret_id);
/* {id, name, datastore_id, datastore, to_path, to_url, to_datastore,
 * ca_file, every_s, created_at, last_run_at, last_job_id, last_state,
 * last_result}: never the token. */
int store_replication_get_json(Store *st, int64_t id, json_t **ret);
int store_replication_list(Store *st, json_t **ret);
/* The token (malloc'd, "" when none). */
int store_replication_secret(Store *st, int64_t id, char **ret_token);
int store_replication_delete(Store *st, int64_t id);
/* The scheduled replications due at now (ms) whose last job has ended. */
int store_replication_due(Store *st, int64_t now, json_t **ret);
int store_replication_started(Store *st, int64_t id, int64_t job_id);
int store_replication_finished(Store *st, int64_t id, const char *state, const char *result_json);
