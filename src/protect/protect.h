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
#include <time.h>
#include <jansson.h>
#include "inventory/inventory.h"
#include "jobs/jobs.h"
#include "op/op.h"
#include "store/store.h"

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

/* --- Backups --- */

/* Registers the job kinds vm.backup and vm.restore (before jobs_start()).
 * A vm.backup left running by a killed armadad is failed at the next start
 * (not resumable): its point was never committed, and the next backup of
 * the VM ends the host's stale backup job before it begins its own. */
void protect_backup_register_jobs(Jobs *jobs, Inventory *inv);

/* Queues a backup of VM vm_id into datastore (NULL: the only datastore,
 * 422 "datastore" when there are several or none). The caller must be
 * allowed to operate the VM (403, audited); a VM the caller may not read
 * is 404; a VM that is neither running, paused nor stopped is 409 naming
 * its state. A stopped VM is backed up offline: the job starts its QEMU
 * paused for the read and destroys it after, always; refused here when its
 * host is in maintenance or not ok (409 "host") or lacks the VM's memory as
 * placement counts it (422 "no_capacity", "host"). The first backup of a VM into a
 * datastore is full, later ones read only what changed since the previous
 * point (see docs/architecture.md, Protection). Audits "vm.backup"
 * (accepted). *ret: {"job": ...}. */
int protect_backup_now(Store *st, Jobs *jobs, const OpCaller *c, int64_t vm_id, const char *datastore, json_t **ret, OpError *err);

typedef struct ProtectBackupListSpec {
        const char *vm;          /* a VM's name, id or UUID (of a VM gone: its UUID); NULL: all the caller may see */
        const char *datastore;   /* NULL: every datastore */
} ProtectBackupListSpec;
/* The recovery points the caller may see, newest first, as
 * store_backup_point_list() gives them: administrators and read-only users
 * see all; others the points of VMs they own(ed) or may read. An unknown
 * VM is 404 "vm". *ret: {"items": [...]}. */
int protect_backup_list(Store *st, const OpCaller *c, const ProtectBackupListSpec *spec, json_t **ret, OpError *err);

typedef struct ProtectRestoreSpec {
        const char *vm;          /* the point's VM: name, id or UUID (of a VM gone: its UUID) */
        const char *point;       /* the point id ("20261201T061500Z") or "latest" */
        const char *datastore;   /* NULL: the datastore holding the point (422 when several do) */
        const char *as_name;     /* a new VM's name, or */
        bool in_place;           /* over the point's own VM, which must be stopped (409 naming its state) */
        const char *host;        /* new VM: on this host (else placement chooses) */
} ProtectRestoreSpec;
/* Queues a restore (job vm.restore): to a new VM (its own UUID, MAC
 * addresses and disks, registered in the inventory and owned by the
 * caller), or in place. A point of a VM the caller may not read is 404,
 * exactly as one that does not exist. Audits "vm.restore" (accepted).
 * *ret: {"job": ..., "vm": ...}. */
int protect_backup_restore(Store *st, Jobs *jobs, const OpCaller *c, const ProtectRestoreSpec *spec, json_t **ret, OpError *err);

/* Protection policies (protect-policy.c): back up a VM, or every VM on the
 * hosts of a host group's subtree (a VM's own policy wins, then the deepest
 * group's), every every_s seconds into datastore (NULL: the only one), and
 * keep its points by PBS's rules (keep: last, hourly, daily, weekly,
 * monthly, yearly; all zero keeps every point). */
typedef struct ProtectPolicySpec {
        const char *vm;          /* a VM's name, or */
        const char *group;       /* a host-group path */
        const char *datastore;
        int64_t every_s;         /* ≥ 10 */
        int64_t keep[6];
} ProtectPolicySpec;
/* The policies the caller may see. *ret: {"items": [...]}. */
int protect_policy_list(Store *st, const OpCaller *c, json_t **ret, OpError *err);
/* Sets (replaces) the policy of the VM or group: needs the right to update
 * it (403, audited); an object the caller cannot see is 422 naming the
 * field. Audits "backup.policy-set". *ret: the policy. */
int protect_policy_set(Store *st, const OpCaller *c, const ProtectPolicySpec *spec, json_t **ret, OpError *err);
/* Removes policy id (404 when unseen). Audits "backup.policy-delete". */
int protect_policy_delete(Store *st, const OpCaller *c, int64_t id, OpError *err);

/* The scheduler thread that applies the policies every interval_ms (0:
 * 30 s): it queues the backups that are due (system-owned vm.backup jobs)
 * and opens or resolves a VM's "backup-overdue" alert (no point newer than
 * twice its interval) through the hook. */
typedef struct ProtectScheduler ProtectScheduler;
int protect_scheduler_new(Store *st, Jobs *jobs, unsigned interval_ms, ProtectScheduler **ret);
int protect_scheduler_start(ProtectScheduler *s);
/* Stops the thread (waits for its round) and frees; takes NULL. */
ProtectScheduler *protect_scheduler_free(ProtectScheduler *s);
typedef void (*ProtectBackupAlertFn)(void *userdata, int64_t vm_id, const char *vm_name, bool open, const char *message);
/* One hook, set at start-up (armadad points it at the monitor's alerts). */
void protect_on_backup_alert(ProtectBackupAlertFn fn, void *userdata);
