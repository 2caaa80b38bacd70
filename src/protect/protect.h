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
#include "util/util.h"

/* --- Settings (the parsed configuration: call at start-up only) --- */

typedef struct ProtectSettings {
        /* armadad --restore-direct yes|no (default yes): a restore writes
         * its qcow2 image straight into the new volume's file when that file
         * is reachable at the same path here (checked per volume), instead
         * of through libvirtd's stream. */
        bool restore_direct;
        /* armadad --backup-tls yes|no (default no): every pull-mode backup
         * asks the host's QEMU for an NBD export over TLS (the host's libvirt
         * needs backup_tls_x509_cert_dir in qemu.conf) and armadad connects
         * with TLS only, never falling back to plain NBD. */
        bool backup_tls;
        /* armadad --backup-tls-dir DIR (default /etc/pki/libvirt-backup):
         * armadad's client certificates for that (ca-cert.pem,
         * client-cert.pem, client-key.pem: libnbd's layout). */
        const char *backup_tls_dir;
} ProtectSettings;
#define PROTECT_DEFAULT_BACKUP_TLS_DIR "/etc/pki/libvirt-backup"
/* Whether DIR holds what armadad's TLS NBD client needs (ca-cert.pem,
 * client-cert.pem, client-key.pem, readable): 0, or -errno with a sentence
 * naming the file in why. armadad refuses to start with --backup-tls and a
 * directory that fails this; a backup checks again before it begins. */
int protect_backup_tls_check(const char *dir, char *why, size_t why_size);
/* Replaces the settings (strings copied). */
void protect_configure(const ProtectSettings *s);
/* The settings in force (the defaults until protect_configure()). */
const ProtectSettings *protect_settings(void);

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
 * then it is adopted with its points. A new datastore cuts disks into
 * chunks of chunk_size bytes (0: CHUNK_SIZE_DEFAULT, 256 KiB; else a power of two from 256 KiB
 * to 4 MiB, 400 naming "chunk_size"); an adopted one keeps its own (409
 * naming "chunk_size" when another was asked for). Queues the job that
 * computes its usage. ret: {"datastore", "job"}. 400 naming "name" or
 * "path", 409 when the name or the directory is taken (or lies inside
 * another datastore), 422 naming "path" when it holds other files. Nothing
 * is left made on failure. Administrators only (OBJ_SYSTEM UPDATE), audited. */
int protect_datastore_add(Store *st, Jobs *jobs, const OpCaller *c, const char *name, const char *path, uint64_t chunk_size,
                          json_t **ret, OpError *err);
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
        const char *to;             /* a directory under a backup root: empty, missing or an archive
                                     * (made with the datastore's chunk size; an archive of another
                                     * size is 409 naming "chunk_size") */
} ProtectArchiveSpec;
int protect_datastore_archive(Store *st, Jobs *jobs, const OpCaller *c, int64_t id, const ProtectArchiveSpec *spec,
                              json_t **ret, OpError *err);
/* Copies every point of the datastore directory path into datastore id,
 * sending only the chunks it lacks. 409 naming "chunk_size" when path cuts
 * disks at another chunk size than datastore id (points are not re-cut). */
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
 * the chunks), then protect_backup_metrics()'s: malloc'd text, NULL on a
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
        const char *disk;        /* only this disk of the point (its target, "vdb"): in place, the VM's
                                  * other disks stay as they are; as a new VM, it has that disk only.
                                  * NULL: every disk */
} ProtectRestoreSpec;
/* Queues a restore (job vm.restore): to a new VM (its own UUID, MAC
 * addresses and disks, registered in the inventory and owned by the
 * caller), or in place; all the point's disks or one (spec->disk: 422
 * field "disk" when the point lacks it; the job fails, leaving the VM as
 * it was, when a VM restored in place lacks it). A point of a VM the caller may not read is 404,
 * exactly as one that does not exist. Audits "vm.restore" (accepted).
 * *ret: {"job": ..., "vm": ...}. */
int protect_backup_restore(Store *st, Jobs *jobs, const OpCaller *c, const ProtectRestoreSpec *spec, json_t **ret, OpError *err);
/* --- File-level restore (protect-files.c) --- */

/* A directory of a recovery point's disk listed, or one file of it
 * downloaded, read from the chunks through a private read-only NBD export
 * and libguestfs's appliance in a child process: never from the original
 * VM or host, never writing the disk out. Paths: "/" lists the disk's file
 * systems ({name "sda1", type "filesystem", fstype, size}); "/sda1/etc" is
 * /etc inside file system sda1. The caller must be allowed to operate the
 * point's VM (restore's rule: 403 audited; a point it may not see is 404).
 * The appliance runs in a session per point and disk, kept for
 * PROTECT_FILES_IDLE_S after a request so that the next one on the same
 * disk answers at once; at most PROTECT_FILES_MAX_RUNNING sessions, each
 * serving one request at a time (503 "busy" when all are busy). A child
 * that gives no answer within PROTECT_FILES_TIMEOUT_S (its first, while the
 * appliance boots, PROTECT_FILES_LAUNCH_TIMEOUT_S) is killed (504). */
#define PROTECT_FILES_PATH_MAX 4096
#define PROTECT_FILES_LIST_MAX 10000
#define PROTECT_FILES_MAX_RUNNING 2
#define PROTECT_FILES_TIMEOUT_S 300
#define PROTECT_FILES_LAUNCH_TIMEOUT_S 900   /* a session's first answer: the appliance boots (TCG on a loaded host) */
#define PROTECT_FILES_IDLE_S 120   /* a session's appliance is kept this long for the next request */
typedef struct ProtectFilesSpec {
        const char *vm;          /* the point's VM: name, id or UUID (of a VM gone: its UUID) */
        const char *point;       /* the point id or "latest" */
        const char *datastore;   /* NULL: the datastore holding the point (422 when several do) */
        const char *disk;        /* a disk's target; NULL: the point's first disk */
        const char *path;        /* NULL: "/" */
} ProtectFilesSpec;
/* Normalises an absolute path lexically: "//" and "." dropped, ".." takes
 * the segment before it back. 0 and *ret (malloc'd), or -EINVAL when it
 * is not absolute, longer than PROTECT_FILES_PATH_MAX or leads above "/".
 * Pure. */
int protect_files_path_normalize(const char *path, char **ret);
/* Lists directory spec->path. *ret: {"path" (normalised), "point_id",
 * "datastore", "disk", "items": [{name, type (file, directory, symlink,
 * block, char, fifo, socket, other; "filesystem" at "/"), size, mtime
 * (seconds), mode}] sorted by name, at most PROTECT_FILES_LIST_MAX,
 * "truncated"}. 400 "path"/"disk" for a malformed one, 404 "path" (no
 * such directory or file system), 404 "disk", 422 "path" (not a directory,
 * a file system that cannot be mounted), 500 when the appliance cannot
 * start. */
int protect_backup_files(Store *st, const OpCaller *c, const ProtectFilesSpec *spec, json_t **ret, OpError *err);
/* An open download: the child streams the file's bytes. */
typedef struct ProtectFileStream ProtectFileStream;
/* Opens file spec->path for download, checked as protect_backup_files()
 * does (422 "path" for a directory or anything but a regular file; symbolic
 * links are not followed). Audits "backup.download". *ret: the stream,
 * which the caller reads to its size and closes. */
int protect_backup_download(Store *st, const OpCaller *c, const ProtectFilesSpec *spec, ProtectFileStream **ret, OpError *err);
uint64_t protect_file_stream_size(const ProtectFileStream *f);
/* The file's base name (borrowed). */
const char *protect_file_stream_name(const ProtectFileStream *f);
/* Reads the next bytes (waiting at most PROTECT_FILES_TIMEOUT_S): their
 * count, 0 once size bytes were read, -ETIMEDOUT, -EPIPE (the file ended
 * short: the appliance failed half-way) or -errno. */
ssize_t protect_file_stream_read(ProtectFileStream *f, void *buf, size_t len);
/* Ends the child and frees; takes NULL. */
ProtectFileStream *protect_file_stream_close(ProtectFileStream *f);
/* armadad's main calls it when argv[1] is "--files-child": the child
 * process of a file-level restore. Returns the exit status. */
int protect_files_child_main(int argc, char **argv);

/* --- Status (what the console, scripts and /metrics read) --- */

/* The window of armada_vms_without_recent_backup: 24 hours. */
#define PROTECT_RPO_WINDOW_S (24 * 3600)

/* The newest good recovery point of vm -- a VM's JSON the caller c was
 * allowed to read (inventory_vm_get's answer): good means not found
 * unrestorable by its datastore's last verify. One indexed query, no walk.
 * *ret: {datastore, point_id, taken_at (the point's time), full,
 * consistency, size_bytes, created_at (when indexed), last_verified: {at,
 * ok} or null}, or JSON null when the VM has no point;
 * a new reference. 500 on a database error. */
int protect_vm_last_backup(Store *st, const OpCaller *c, const json_t *vm, json_t **ret, OpError *err);

/* Appends the backup families of /metrics to b: the gauge
 * armada_vms_without_recent_backup (VMs without a good point made within
 * PROTECT_RPO_WINDOW_S before now_ms) and, only for VMs that have a good
 * point, armada_vm_last_backup_timestamp_seconds{vm, uuid} (the point's
 * time, from its id). Built again only when the index of points, the
 * verifications, the datastores or the VMs changed, or after a minute; else
 * the last text (a build reads every VM). Thread-safe. 0 or -errno
 * (a database error; b may hold part of it). */
int protect_backup_metrics(Store *st, int64_t now_ms, StrBuf *b);

/* --- Snapshots --- */

/* Snapshots are libvirt's internal qcow2 snapshots (hv/hv-snapshot.h): a
 * running VM's snapshot carries its memory, a stopped VM's its disks only.
 * Names: 1 to PROTECT_SNAPSHOT_NAME_MAX characters, letters, digits, '.',
 * '_' and '-', beginning with a letter or a digit (they are a URL path
 * segment). */
#define PROTECT_SNAPSHOT_NAME_MAX 63
#define PROTECT_SNAPSHOT_DESCRIPTION_MAX 1000

/* Whether name is a valid snapshot name: 0, or -EINVAL and in why (may be
 * NULL) a sentence naming the rule it breaks. Pure. */
int protect_snapshot_name_check(const char *name, char *why, size_t why_size);
/* The name of a snapshot taken at t without one: "snap-YYYYMMDD-HHMMSS"
 * (UTC). Pure. */
void protect_snapshot_default_name(int64_t t, char out[32]);

/* Registers the jobs vm.snapshot-create, vm.snapshot-revert and
 * vm.snapshot-delete (they reach hosts through inv). */
void protect_snapshot_register_jobs(Jobs *jobs, Inventory *inv);

/* The snapshots of VM vm_id, read from its host now (never connects: 503
 * when the host is not connected, 502 when it fails to answer), for a
 * caller who may read the VM (else 404). *ret: {"vm_id", "current": name
 * or null, "snapshots": [{name, parent (null for a root), created_at,
 * state (the VM's when taken), has_memory, current, description,
 * size_bytes (null: internal snapshots share their image)}], oldest first}.
 * Brings the VM's "snapshots" count up to date. Gives the host's libvirt
 * back, from Armada's copy of their XML, the snapshots it lacks (after a
 * failover, a migration whose redefine failed; parents first): event
 * "vm.snapshots-restored", or "vm.snapshot-lost" (the copy dropped) for one
 * libvirt refuses; create, revert and delete check through the same path. */
int protect_snapshot_list(Store *st, Inventory *inv, const OpCaller *c, int64_t vm_id, json_t **ret, OpError *err);

typedef struct {
        const char *name;            /* NULL: protect_snapshot_default_name(now) */
        const char *description;     /* may be NULL */
        int memory;                  /* 1 with memory, 0 disks only, -1 as the VM's state allows */
} ProtectSnapshotSpec;
/* Takes a snapshot of VM vm_id as a job. Checks, in order: the name (400
 * "name"), the VM (404), the caller's right to operate it and, for a
 * self-service user's VM deployed under a grant, the grant's "snapshot"
 * action (403, audited), a foreign VM, a VM being created or deleted or not
 * placed (409), the memory asked for against the VM's state (409 "memory":
 * a stopped VM has none, a running VM's internal snapshot always carries
 * it), its host connected (503), every writable disk qcow2 (409 "disks"
 * naming the disk), the name free (409 "name"). Audits "vm.snapshot-create"
 * (accepted). *ret: {"job", "snapshot": {"name", "has_memory"}}. */
int protect_snapshot_create(Store *st, Inventory *inv, const OpCaller *c, int64_t vm_id, const ProtectSnapshotSpec *spec,
                            json_t **ret, OpError *err);
/* Reverts VM vm_id to snapshot name as a job: with memory the VM runs from
 * that moment; without, the VM is left shut off with the disks of then
 * (what Proxmox's rollback and Hyper-V's apply do). The job first deletes
 * the VM's checkpoints (QEMU cannot revert disks with dirty bitmaps; event
 * "vm.backup-chain-broken": the next backup is a full one). Checks as
 * create's (404 "name" for an unknown snapshot). Audits "vm.snapshot-revert".
 * *ret: {"job"}. */
int protect_snapshot_revert(Store *st, Inventory *inv, const OpCaller *c, int64_t vm_id, const char *name, json_t **ret,
                            OpError *err);
/* Deletes snapshot name of VM vm_id as a job (its children move to its
 * parent; the VM's current state is untouched). Checks as revert's.
 * Audits "vm.snapshot-delete". *ret: {"job"}. */
int protect_snapshot_delete(Store *st, Inventory *inv, const OpCaller *c, int64_t vm_id, const char *name, json_t **ret,
                            OpError *err);

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
/* Reads the VMs from the read model m (before protect_scheduler_start();
 * m outlives the scheduler): a round is then the policies and the points
 * indexed since the last round, two queries, plus one index probe per VM
 * that is due, at any number of VMs. Without it, one SQL query per round
 * computes the covered VMs (correlated subqueries per VM). */
typedef struct Model Model;
void protect_scheduler_set_model(ProtectScheduler *s, Model *m);
/* Stops the thread (waits for its round) and frees; takes NULL. */
ProtectScheduler *protect_scheduler_free(ProtectScheduler *s);
typedef void (*ProtectBackupAlertFn)(void *userdata, int64_t vm_id, const char *vm_name, bool open, const char *message);
/* One hook, set at start-up (armadad points it at the monitor's alerts). */
void protect_on_backup_alert(ProtectBackupAlertFn fn, void *userdata);

/* --- Replication --- */

/* A replication copies the points of a datastore (the source) that its
 * target lacks -- another directory under a backup root, or a datastore of
 * another armadad over HTTPS with an API token -- sending only the chunks
 * the target lacks, chunks first and each point's manifest last: a run cut
 * short resumes where it stopped. By hand (run) or every every_s seconds
 * (the replication thread). Administrators only (OBJ_SYSTEM UPDATE; reading
 * OBJ_SYSTEM for the list), audited. The token is kept in the database
 * sealed (libsodium secretbox) under the key protect_replicate_key_load()
 * loads, and never returned by any answer nor written to any log. */
#define PROTECT_REPLICA_CHUNK_MAX ((4u << 20) + 16u)  /* a chunk file: CHUNK_SIZE raw bytes and the header */
#define PROTECT_REPLICA_MANIFEST_MAX (64u << 20)      /* an exported point (64 hex digits per 4 MiB chunk) */
#define PROTECT_REPLICA_MISSING_MAX 1000              /* digests asked about at once */
#define PROTECT_REPLICA_EVERY_MIN 10                  /* seconds */
#define PROTECT_REPLICA_EVERY_MAX (366 * 86400)

typedef struct {
        const char *name;          /* NULL: "<source>-to-<target datastore or directory name>" */
        const char *source;        /* the source datastore's name */
        const char *to_path;       /* a directory under a backup root, or */
        const char *to_url;        /* https://HOST:PORT (http:// only to a loopback address) */
        const char *to_datastore;  /* with to_url: the datastore's name there */
        const char *token;         /* with to_url: an administrator's API token there */
        const char *ca_file;       /* with to_url, may be NULL: the PEM file of the CA (or certificate) to trust */
        int64_t every_s;           /* 0 (by hand only) or PROTECT_REPLICA_EVERY_MIN..MAX */
} ProtectReplicationSpec;
/* Records a replication. 400 naming "name", "source" (404 when there is
 * no such datastore), "to_path" (outside the backup roots, or overlapping a
 * datastore of this armadad), "to_url", "to_datastore", "token", "ca_file"
 * or "every"; 409 "name" when it is taken. Nothing is contacted yet.
 * *ret: the replication as listed. */
int protect_replication_add(Store *st, const OpCaller *c, const ProtectReplicationSpec *spec, json_t **ret, OpError *err);
/* Every replication: {id, name, datastore_id, datastore, to_path, to_url,
 * to_datastore, ca_file, every_s, created_at, last_run_at, last_job_id,
 * last_state, last_result} (never the token). */
int protect_replications_list(Store *st, const OpCaller *c, json_t **ret, OpError *err);
int protect_replication_remove(Store *st, const OpCaller *c, int64_t id, OpError *err);
/* Queues a run (job datastore.replicate, target "replication"; its
 * result: {points_total, points_sent, chunks_sent, bytes_sent}). *ret:
 * {"job"}. 409 while a run of it is queued or running. */
int protect_replication_run(Store *st, Jobs *jobs, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* Loads the key that seals the replications' tokens from path (a 0600 file
 * of 32 bytes), making it when missing: at start-up, before the API. 0 or
 * -errno. Without it, adding a replication to a URL fails (500). */
int protect_replicate_key_load(const char *path);
/* Registers datastore.replicate (before jobs_start()). */
void protect_replicate_register_jobs(Jobs *jobs);
/* Starts and stops the thread that queues the scheduled runs when due. */
int protect_replicate_start(Store *st, Jobs *jobs);
void protect_replicate_stop(void);

/* The receiving side: the endpoints another armadad's replication uses,
 * on datastore ds_id of this one, for administrators (a 403 is audited).
 * protect_replica_begin() checks the caller and the datastore only (for
 * a streamed body, before it is read). */
int protect_replica_begin(Store *st, const OpCaller *c, int64_t ds_id, OpError *err);
/* Which of digests (a JSON array of at most PROTECT_REPLICA_MISSING_MAX
 * hex SHA-256 strings) the datastore lacks: *ret {"missing": [...]}. 400
 * naming "digests". */
int protect_replica_missing(Store *st, const OpCaller *c, int64_t ds_id, const json_t *digests, json_t **ret, OpError *err);
/* Stores a chunk file (as the sender's chunk store holds it) as chunk
 * digest after checking it decodes to bytes with that digest (400
 * "digest" for a bad digest, 400 "body" for a mismatch: nothing is
 * stored). *ret: {"digest", "stored": bytes written (0: it was there)}. */
int protect_replica_chunk(Store *st, const OpCaller *c, int64_t ds_id, const char *digest, const void *data, size_t len,
                          json_t **ret, OpError *err);
/* Commits a point (its JSON as point_export() makes it) once every chunk
 * it names is present (422 "chunks" otherwise, nothing committed; 400
 * "body" for a malformed one; 200 with "existed" true when it is there
 * already) and indexes it for `backup list`. Audited
 * "datastore.replica-commit". *ret: {"vm_uuid", "point_id", "existed"}. */
int protect_replica_point(Store *st, const OpCaller *c, int64_t ds_id, const void *body, size_t len, json_t **ret,
                          OpError *err);
