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
int store_datastore_insert(Store *st, const char *name, const char *path, int64_t *ret_id);
int store_datastore_find(Store *st, const char *name, int64_t *ret_id);
int store_datastore_find_path(Store *st, const char *path, int64_t *ret_id);
/* {id, name, path, created_at, usage (object or null), usage_at}. */
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
