/* Internals shared by src/protect's own files (datastores, backups,
 * snapshots) and its unit tests. */
#pragma once

#ifndef PROTECT_PRIV_ALLOW
#error "protect-priv.h is for src/protect's own files only (their meson target defines PROTECT_PRIV_ALLOW)"
#endif

#include <time.h>
#include "protect/chunkstore.h"
#include "protect/protect.h"

/* --- Datastores --- */

/* Whether name is a datastore's or a replication's name: 1 to 63 letters,
 * digits, '-', '_' and '.', not starting with '-' or '.'. */
bool protect_name_valid(const char *name);

/* Opens datastore id's chunk store: 0, -ENOENT (no such datastore), or the
 * chunk store's error. */
int protect_datastore_open(Store *st, int64_t id, ChunkStore **ret);
/* Recomputes datastore id's usage (chunkstore_usage(), a walk of its
 * chunks) into its row: for the end of every job that changes it (a backup
 * too). 0 or negative. */
int protect_datastore_usage_refresh(Store *st, int64_t id, ChunkStore *s);
/* The start of the oldest backup still running (its chunks are not named
 * by a committed point yet, so the GC must keep what is newer), or 0 when
 * none runs. The backups part defines it; until then, 0. */
time_t protect_oldest_running_backup(Store *st);
/* Parses a point id "YYYYMMDDTHHMMSSZ" (UTC): 0 and *ret, or -EINVAL. */
int protect_point_time(const char *point_id, time_t *ret);
/* Calls the alert hook (protect_on_alert()), if any. */
void protect_alert(int64_t datastore_id, const char *name, bool open, const char *message);

/* --- Backups --- */

/* What a backup job counts (the job's result and the point's manifest). */
typedef struct ProtectCounters {
        uint64_t chunks_total;   /* chunks of every disk */
        uint64_t chunks_read;    /* read over NBD */
        uint64_t chunks_zero;    /* holes and all-zero chunks (never stored) */
        uint64_t chunks_new;     /* not in the datastore before */
        uint64_t bytes_read;     /* over NBD */
        uint64_t bytes_written;  /* to the datastore, after dedup and compression */
} ProtectCounters;

/* Where one disk's export is: tcp host:port, or a unix socket. */
typedef struct ProtectNbdSource {
        const char *host;
        unsigned port;
        const char *socket;       /* non-empty: unix socket instead of tcp */
        const char *export_name;
        const char *bitmap;       /* incremental: the exported dirty bitmap; NULL/"" full */
        const char *tls_dir;      /* non-NULL: TLS only (never plain), with the client
                                   * certificates of this directory (ca-cert.pem,
                                   * client-cert.pem, client-key.pem); the server's
                                   * certificate must name host */
} ProtectNbdSource;


typedef struct ProtectNbd ProtectNbd;
/* Connects to an export (asking for the block status context the backup
 * needs). 0 and *ret, or negative with a sentence in why. */
int protect_nbd_open(const ProtectNbdSource *src, ProtectNbd **ret, char *why, size_t why_size);
uint64_t protect_nbd_size(const ProtectNbd *n);
ProtectNbd *protect_nbd_close(ProtectNbd *n);
/* Called after each chunk read: false cancels. */
typedef bool (*ProtectNbdProgress)(uint64_t done, uint64_t total, void *userdata);
/* Reads the disk into disk DISK of point P (added with the export's size):
 * full, every chunk that block status does not call zero; incremental,
 * only chunks overlapping a dirty extent (the others keep the base point's
 * digests). Adds to *cnt. 0, -ECANCELED, or negative with a sentence in why. */
int protect_nbd_copy(ProtectNbd *n, ChunkStore *s, Point *p, unsigned disk, bool incremental, ProtectCounters *cnt,
                     ProtectNbdProgress progress, void *userdata, char *why, size_t why_size);

/* The datastore a backup goes to: name, or the only one when name is NULL.
 * 0 with its name in ret_name and its directory (malloc'd) in *ret_path;
 * -ENOENT (no such datastore, or none at all), -EADDRNOTAVAIL (name NULL
 * and several exist), or negative. */
int protect_datastore_path(Store *st, const char *name, char *ret_name, size_t name_size, char **ret_path);
/* Whether the caller may see a recovery point (its index row): as it may
 * see the VM now, or for a VM gone, as it could then (owner, group). */
bool protect_point_visible(Store *st, const OpCaller *c, const json_t *p);
/* The VM a request names (ref: a name, an id, or a UUID — of a VM gone
 * too, when the caller may see one of its points): 0, its UUID and id (0
 * when gone), or 404 naming field. */
int protect_vm_ref(Store *st, const OpCaller *c, const char *field, const char *ref, char uuid[37], int64_t *ret_vm_id,
                   OpError *err);
/* The point spec names (its vm, point and datastore; uuid the VM's, from
 * protect_vm_ref()) among those the caller may see: 0 and its index row
 * (a new reference), or 404 "point" (exactly as for one that does not
 * exist) / 422 "datastore" (in several datastores: name one). What restore
 * and the file-level restore look points up with. */
int protect_point_find(Store *st, const OpCaller *c, const ProtectRestoreSpec *spec, const char *uuid, json_t **ret,
                       OpError *err);
/* protect-restore.c's job kind. */
void protect_restore_register_jobs(Jobs *jobs, Inventory *inv);
/* Brings the backup_point index of datastore ds_name in line with its
 * directory after points were adopted, imported or pruned: indexes every
 * committed point it lacks (owner and group those of the VM with that uuid
 * now, else none: administrators and readers see it) and forgets the rows
 * whose point is gone. Reads every manifest: for the datastore jobs, not
 * for each backup. 0 or negative. */
int protect_backup_index_sync(Store *st, const char *ds_name, ChunkStore *s);
/* The same for the points of one VM only (reads that VM's manifests): what
 * a replica's commit or a backup needs. */
int protect_backup_index_sync_vm(Store *st, const char *ds_name, ChunkStore *s, const char *vm_uuid);
/* Removes the points of vm_uuid in datastore ds_name that the keep rules
 * (a JSON array of six counts, as ProtectPolicySpec.keep) do not keep,
 * never the newest; forgets them in the index. The number removed, or
 * negative with a sentence in why. */
int protect_backup_prune_vm(Store *st, ChunkStore *s, const char *ds_name, const char *vm_uuid, const json_t *keep, char *why,
                            size_t why_size);
/* When the point after one taken at taken_ms is due under a policy of
 * every_ms (> 0): the first of the policy's slots (multiples of every_ms
 * since the epoch) at least half an interval after taken_ms. */
int64_t protect_policy_due_ms(int64_t taken_ms, int64_t every_ms);
/* One round of the scheduler (for tests). */
void protect_scheduler_round(ProtectScheduler *s);

/* --- File-level restore --- */

/* A read-only NBD server of one disk of a committed point, read straight
 * from the chunk store (protect-nbdserve.c): fixed-newstyle handshake
 * (OPT_GO/INFO/EXPORT_NAME/LIST/ABORT), NBD_CMD_READ and NBD_CMD_DISC;
 * writes are EPERM, reads past the end EINVAL, reads over
 * NBDSERVE_MAX_READ EOVERFLOW, a missing or corrupt chunk EIO. The export
 * is named after the disk's target ("" names it too). */
#define NBDSERVE_MAX_READ (32u << 20)
typedef struct ProtectNbdServer ProtectNbdServer;
/* Starts serving disk of p (s and p borrowed: they must outlive the
 * server) on a unix socket in a new 0700 directory under tmpdir (NULL:
 * /tmp). 0 and *ret, or -errno. */
int protect_nbdserve_start(ChunkStore *s, const Point *p, unsigned disk, const char *tmpdir, ProtectNbdServer **ret);
const char *protect_nbdserve_socket(const ProtectNbdServer *srv);
const char *protect_nbdserve_export(const ProtectNbdServer *srv);
/* Ends every connection, removes the socket and its directory, frees;
 * takes NULL. */
ProtectNbdServer *protect_nbdserve_stop(ProtectNbdServer *srv);
/* --- Restore: items decoded ahead of the writer, in order (protect-pipe.c) --- */

/* Decodes item index into buf (cap bytes) on worker thread worker (0 ..
 * workers-1, for per-thread state): 0 and *ret_len, or negative (the pipe
 * stops claiming items; the consumer gets this code at this item). */
typedef int (*RestorePipeDecode)(void *userdata, unsigned worker, uint64_t index, uint8_t *buf, size_t cap,
                                 size_t *ret_len);
typedef struct RestorePipe RestorePipe;
/* Items first .. first+n-1, decoded, side by side: item first+k at
 * buf + k * stride, len[k] bytes of it. */
typedef struct RestoreBatch {
        uint64_t first;
        size_t n;
        uint8_t *buf;
        size_t stride;
        const size_t *len;
} RestoreBatch;
/* Starts workers (1..16) threads decoding items 0 .. n_items-1 ahead of
 * the consumer into a ring of slots (>= workers) of item_cap bytes each:
 * at most slots items are decoded and not yet released. 0, or -EINVAL /
 * -ENOMEM / -errno of pthread_create with nothing left running. */
int restore_pipe_start(uint64_t n_items, size_t item_cap, unsigned workers, unsigned slots, RestorePipeDecode decode,
                       void *userdata, RestorePipe **ret);
/* The next items in order: waits for the first, adds those after it that
 * are decoded already (up to max_bytes of slots, not past the ring's end).
 * 0 with n >= 1; 0 with n == 0 after the last item; or the failed item's
 * code with ret->first naming it. The batch is the consumer's until
 * restore_pipe_release(), which must come before the next take. */
int restore_pipe_take(RestorePipe *p, size_t max_bytes, RestoreBatch *ret);
void restore_pipe_release(RestorePipe *p);
/* Stops the workers (each finishes the item it decodes), joins and frees
 * them; takes NULL, returns NULL. Safe at any point. */
RestorePipe *restore_pipe_free(RestorePipe *p);

/* --- Restore: a qcow2 image as one forward stream (protect-qcow2.c) --- */

#define QCOW2_CLUSTER (64u << 10)
/* Where the image goes, in order: data (bytes), then hole (bytes that read
 * as zeros and need not be stored). Each returns 0 or negative, which the
 * writer passes on. */
typedef struct Qcow2Sink {
        int (*data)(void *userdata, const void *buf, size_t len);
        int (*hole)(void *userdata, uint64_t len);
        void *userdata;
} Qcow2Sink;
typedef struct Qcow2Writer Qcow2Writer;
/* The clusters bytes take, rounded up. */
uint64_t qcow2_clusters(uint64_t bytes);
/* A writer of a qcow2 image of size bytes (a multiple of 512), holding at
 * most data_max clusters of data (an upper bound: the clusters of the
 * chunks that are not all zeros); its file is qcow2_writer_file_size()
 * bytes long, fixed now (the stream may end with a hole: its target must
 * already be that long, or be truncated to it). 0, or -EINVAL/-ENOMEM. */
int qcow2_writer_new(uint64_t size, uint64_t data_max, const Qcow2Sink *sink, Qcow2Writer **ret);
Qcow2Writer *qcow2_writer_free(Qcow2Writer *w);
uint64_t qcow2_writer_file_size(const Qcow2Writer *w);
/* The header: first. */
int qcow2_writer_begin(Qcow2Writer *w);
/* The guest bytes at offset (a cluster boundary, past every earlier call;
 * len whole clusters unless it ends the disk); all-zero clusters are left
 * unallocated. -ENOSPC beyond data_max clusters, -EINVAL out of order. */
int qcow2_writer_data(Qcow2Writer *w, uint64_t offset, const void *data, size_t len);
/* The metadata: last. After it the image is complete. */
int qcow2_writer_finish(Qcow2Writer *w);
/* Slotted layout, for writing ranges of the image at once (a restore over
 * several streams): the data region is cut into a slot per chunk that is
 * not all zeros (chunk_bytes, a multiple of QCOW2_CLUSTER; slot[c] for
 * chunk c numbers them 0, 1, 2... in guest order, QCOW2_NO_SLOT for an
 * all-zero chunk; borrowed, n_chunks of them, kept until the writer is
 * freed). A chunk's clusters sit in its slot in guest order, its zero
 * clusters holes (unallocated, as the dense layout leaves them): where a
 * byte goes is known before any chunk is read, so ranges of slots are
 * independent. The file is as long as the dense layout's (the bound is
 * the slots' clusters). Call right after qcow2_writer_new. 0, -EINVAL
 * (slots not numbered in order), -ENOSPC (more than data_max clusters). */
#define QCOW2_NO_SLOT UINT64_MAX
int qcow2_writer_slots(Qcow2Writer *w, uint32_t chunk_bytes, const uint64_t *slot, uint64_t n_chunks);
/* Where slot s begins in the file; where the tables begin (after every
 * slot: the image's end is qcow2_writer_file_size). */
uint64_t qcow2_writer_slot_at(const Qcow2Writer *w, uint64_t s);
uint64_t qcow2_writer_tables_at(const Qcow2Writer *w);
/* The header (cluster 0) into sink. Any time. */
int qcow2_writer_header_to(const Qcow2Writer *w, const Qcow2Sink *sink);
/* Chunk c (len: the chunk's whole length) into sink, as its slot from its
 * start: data and holes, the slot's whole length. Nothing for an all-zero
 * chunk (which must be). Chunks in any order, on several threads at once
 * (each with its own sink). 0, -EINVAL, or the sink's error. */
int qcow2_writer_chunk(Qcow2Writer *w, const Qcow2Sink *sink, uint64_t c, const void *data, size_t len);
/* The tables (L1, refcounts, L2; from qcow2_writer_tables_at to the end)
 * into sink, once every chunk is written: the image is then complete. The
 * dense layout's qcow2_writer_finish ends with this. */
int qcow2_writer_tables_to(Qcow2Writer *w, const Qcow2Sink *sink);
