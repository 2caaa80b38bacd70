/* protect: Armada's protection of VMs -- snapshots, backup datastores
 * (content-addressed, deduplicated chunks; see chunkstore.h), backups,
 * restore, retention, archive and replication.
 *
 * Operations take the store (and the job queue when they queue work), the
 * caller c and err, like inventory.h's: they return 0, or -errno with err
 * filled (op.h: status, code, the field to blame, a whole sentence). Each
 * decides the caller's rights itself and audits. JSON results are new
 * references the caller owns, set only on success. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "jobs/jobs.h"
#include "op/op.h"

/* --- Datastores --- */

/* Directories under which datastores, archives and imports may live
 * (armadad --backup-root DIR, repeatable). The parsed configuration: call
 * at start-up only. Without any, PROTECT_DEFAULT_BACKUP_ROOT. */
#define PROTECT_DEFAULT_BACKUP_ROOT "/var/lib/armada/backup"
void protect_add_backup_root(const char *dir);
/* The roots in force (the default when none was added); *ret borrowed. */
size_t protect_backup_roots(const char *const **ret);

/* Checks a user's path for field (absolute; no "." or ".." segment) and
 * resolves it with realpath() -- its parent when it does not exist and
 * may_create -- so that the result lies strictly under an allowed backup
 * root: a symlink anywhere on the way that leads outside is refused. 0 and
 * *ret_real (malloc'd), or 400 naming field (422 when it does not exist
 * and may not be created). Messages name the path as the user gave it,
 * never what it resolves to. */
int protect_path_check(const char *field, const char *path, bool may_create, char **ret_real, OpError *err);

/* The datastores with their usage as the last job computed it (a job
 * recomputes it: a datastore may hold millions of chunks), a JSON array of
 * {id, name, path, created_at, usage: {chunks, stored_bytes, logical_bytes,
 * dedup_factor, points} or null, usage_at}. Administrators only (reading
 * OBJ_SYSTEM; else 403, audited). name (may be NULL): only the datastore
 * of that name (an empty array when there is none). */
int protect_datastores_list(Store *st, const OpCaller *c, const char *name, json_t **ret, OpError *err);
int protect_datastore_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* The committed points of datastore id (the chunk store's point_list()),
 * each with "last_verified" {at, ok} or null. */
int protect_datastore_points(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* Registers directory path as datastore name: the directory (created when
 * missing, under an allowed root) must be empty or a datastore already --
 * then it is adopted with its points. Queues the job that computes its
 * usage. ret: {"datastore", "job"}. 400 naming "name" or "path", 409 when
 * the name or the directory is taken (or lies inside another datastore),
 * 422 naming "path" when it holds other files. Nothing is left made on
 * failure. Administrators only (OBJ_SYSTEM UPDATE), audited. */
int protect_datastore_add(Store *st, Jobs *jobs, const OpCaller *c, const char *name, const char *path, json_t **ret,
                          OpError *err);
/* Forgets datastore id; never deletes its directory's data. 409 while it
 * holds points unless force. */
int protect_datastore_remove(Store *st, const OpCaller *c, int64_t id, bool force, OpError *err);

/* Maintenance, each a job on the datastore (ret: {"job"}), administrators
 * only and audited:
 *   datastore.verify   re-reads every chunk every point names; records
 *                      each point's last_verified; a point that cannot be
 *                      restored is named in the result, an event and an
 *                      alert (datastore-verify)
 *   datastore.gc       removes chunks no point names that are older than
 *                      the oldest running backup's start (and 5 minutes)
 *   datastore.prune    removes points by the retention policy (PBS's rules)
 *   datastore.archive  copies points into a new self-contained datastore
 *   datastore.import   copies every point of a datastore directory in
 * and datastore.usage, queued by the others and by add. */
int protect_datastore_verify(Store *st, Jobs *jobs, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* Verifies the datastore directory path (an archive, under a backup root)
 * without registering it. */
int protect_path_verify(Store *st, Jobs *jobs, const OpCaller *c, const char *path, json_t **ret, OpError *err);
int protect_datastore_gc(Store *st, Jobs *jobs, const OpCaller *c, int64_t id, json_t **ret, OpError *err);

typedef struct {
        const char *vm;             /* a VM's name or uuid; NULL: every VM */
        unsigned keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly; /* one > 0 */
        bool dry_run;               /* only list kept and removed */
} ProtectPruneSpec;
int protect_datastore_prune(Store *st, Jobs *jobs, const OpCaller *c, int64_t id, const ProtectPruneSpec *spec,
                            json_t **ret, OpError *err);

typedef struct {
        const char *vm;             /* every point of a VM (name or uuid) ... */
        const char *point;          /* ... or one, "VM/POINT_ID": exactly one of them */
        const char *to;             /* a directory under a backup root: empty, missing or an archive */
} ProtectArchiveSpec;
int protect_datastore_archive(Store *st, Jobs *jobs, const OpCaller *c, int64_t id, const ProtectArchiveSpec *spec,
                              json_t **ret, OpError *err);
/* Copies every point of the datastore directory path into datastore id,
 * sending only the chunks it lacks. */
int protect_datastore_import(Store *st, Jobs *jobs, const OpCaller *c, int64_t id, const char *path, json_t **ret,
                             OpError *err);

/* Registers the datastore.* job kinds (before jobs_start()). */
void protect_register_jobs(Jobs *jobs);

/* Called when a verify finds points that cannot be restored (open true) or
 * finds none (open false): armadad points it at the monitor's alerts. One
 * hook, set at start-up. */
typedef void (*ProtectAlertFn)(void *userdata, int64_t datastore_id, const char *name, bool open, const char *message);
void protect_on_alert(ProtectAlertFn fn, void *userdata);

/* The armada_datastore_* families of /metrics (the cached usage; no walk of
 * the chunks): malloc'd text, "" when there is no datastore, NULL on a
 * database error. */
char *protect_metrics_text(Store *st);
