/* The protect capability's part of the store (store-protect.c). Same
 * conventions as store.h: 0 or a count on success, -ENOENT, -EEXIST, -EIO.
 * The datastore directories stay the truth about recovery points; these
 * tables only index them so that lists are cheap. */
#pragma once

#include "store.h"

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
/* When (ms since the epoch) the oldest vm.backup job still running
 * started; -ENOENT when none runs. */
int store_backup_oldest_running(Store *st, int64_t *ret_ms);
