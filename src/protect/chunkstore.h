/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#ifndef PROTECT_PRIV_ALLOW
#error "chunkstore.h is private to src/protect (its meson target defines PROTECT_PRIV_ALLOW); use protect.h"
#endif

/*
 * A backup datastore on disk: content-addressed chunks plus one manifest per
 * recovery point. No SQLite and no libvirt here: the datastore directory is
 * the truth and can be read by any Armada (archive, import, a second site).
 *
 * Layout of a datastore directory DIR:
 *   DIR/.armada-datastore            marker, JSON {"format": 1, "chunk_size": 4194304}
 *                                    (the chunk size is the datastore's own,
 *                                    chosen when it is made: 256 KiB to 4 MiB)
 *   DIR/.chunks/XXXX/<64 hex>        one chunk, named by the SHA-256 of its
 *                                    uncompressed bytes (XXXX: its first 4 hex
 *                                    digits); the file holds a small header and
 *                                    a zstd frame, or the raw bytes when zstd
 *                                    does not shrink them
 *   DIR/vm/<vm uuid>/<point id>/     one recovery point: an index per disk
 *                                    (whole, or for an incremental point only
 *                                    the chunks that differ from its base's,
 *                                    the base named in the manifest) and its
 *                                    manifest (written
 *                                    last, to a temporary name, fsync'd, then
 *                                    renamed: a point exists only once its
 *                                    manifest does, so a killed backup leaves
 *                                    no half point)
 *
 * Images are cut into fixed chunks of the datastore's chunk size (the last
 * one may be short; every point of a datastore uses its size, and each
 * manifest records it, "chunk_size", absent meaning 4 MiB): a
 * changed block costs one chunk, identical chunks are stored once across every
 * VM and every point, and an all-zero chunk is not stored at all.
 *
 * A point id is the UTC time it was taken, "YYYYMMDDTHHMMSSZ" (sortable),
 * unique per VM.
 *
 * Every function returns 0 or -errno; none prints. Errors: -ENOENT (no such
 * chunk, point or datastore), -EEXIST, -EBADMSG (a chunk whose bytes do not
 * match its digest, or a malformed manifest), -EINVAL (bad argument), -ENOSPC,
 * -EIO. A ChunkStore may be used by several threads at once.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

/* CHUNK_SIZE: the largest chunk size, so a buffer of CHUNK_SIZE holds any
 * chunk of any datastore; also the size of every datastore made before the
 * size was a choice (a marker or manifest without one means it), and what
 * chunkstore_open() makes. CHUNK_SIZE_MIN: the smallest a datastore may
 * use. CHUNK_SIZE_DEFAULT: what `armada backup datastore add` makes when no
 * size is asked (256 KiB: the incremental of bench/protection's scattered
 * writes meets 20% of the full where 1 MiB and 4 MiB do not;
 * bench/results/protection.md, "Chunk size", and docs/architecture.md for
 * the trade-off). */
#define CHUNK_SIZE (4u << 20)
#define CHUNK_SIZE_MIN (256u << 10)
#define CHUNK_SIZE_DEFAULT (256u << 10)

typedef struct ChunkDigest {
        uint8_t b[32];
} ChunkDigest;

typedef struct ChunkStore ChunkStore;
typedef struct Point Point;

/* Opens the datastore at DIR. With create, makes DIR's marker and .chunks when
 * DIR is empty or missing; a DIR that already is a datastore is opened as it
 * is (registering it twice never destroys anything); a DIR that is neither
 * empty nor a datastore is -ENOTEMPTY. */
int chunkstore_open(const char *dir, bool create, ChunkStore **ret);
/* chunkstore_open() choosing the chunk size of a datastore it makes
 * (CHUNK_SIZE when 0, as chunkstore_open(); else a power of two from CHUNK_SIZE_MIN to CHUNK_SIZE,
 * -EINVAL otherwise). A datastore that exists keeps its own size: compare
 * chunkstore_chunk_size() with what was asked when that matters. */
int chunkstore_open_sized(const char *dir, bool create, uint32_t chunk_size, ChunkStore **ret);
ChunkStore *chunkstore_free(ChunkStore *s);
const char *chunkstore_dir(const ChunkStore *s);
/* The size S cuts disks at (its marker's). */
uint32_t chunkstore_chunk_size(const ChunkStore *s);
/* A chunk size a datastore may have: a power of two in [CHUNK_SIZE_MIN, CHUNK_SIZE]. */
bool chunk_size_valid(uint64_t size);

/* The part of the byte range [OFF, END) of a disk that lies in one chunk of
 * S: the chunk's index, OFF's offset within that chunk, and the bytes of the
 * range it holds (up to END or the chunk's end, whichever comes first). The
 * chunk arithmetic lives here, so every reader of a point (restore, the
 * file-level NBD export) cuts a disk exactly as the backup did; walk a range
 * with `for (o = off; o < end; o += span.len) chunkstore_span(s, o, end, &span);`.
 * -EINVAL when OFF >= END (*ret untouched). */
typedef struct ChunkSpan {
        uint64_t index;  /* the chunk */
        uint32_t within; /* OFF's offset in it */
        uint32_t len;    /* bytes of the range in it, > 0 */
} ChunkSpan;
int chunkstore_span(const ChunkStore *s, uint64_t off, uint64_t end, ChunkSpan *ret);

/* Stores LEN (≤ the store's chunk size) bytes. *ret_digest gets their SHA-256;
 * *ret_written (may be NULL) the bytes written to disk, 0 when the chunk was
 * already there (its mtime is then refreshed, so a garbage collection running
 * beside this backup keeps it). The chunk file is written to a temporary name
 * and renamed. */
int chunkstore_put(ChunkStore *s, const void *data, size_t len, ChunkDigest *ret_digest, uint64_t *ret_written);

/* Reads a chunk into BUF (BUFLEN ≥ its length, CHUNK_SIZE always suffices),
 * checking its digest: -EBADMSG when the bytes do not match. */
int chunkstore_get(ChunkStore *s, const ChunkDigest *d, void *buf, size_t buflen, size_t *ret_len);
bool chunkstore_has(ChunkStore *s, const ChunkDigest *d);
/* chunkstore_get() for a reader that reads many chunks (a restore): one per
 * thread, it keeps its zstd context and frame buffer between chunks, and a
 * chunk stored raw is read straight into BUF. The same checks and results
 * as chunkstore_get() (the digest of every chunk verified). A reader is
 * made by chunk_reader_new() (0 or -ENOMEM) and freed by
 * chunk_reader_free() (takes NULL, returns NULL). */
typedef struct ChunkReader ChunkReader;
int chunk_reader_new(ChunkReader **ret);
ChunkReader *chunk_reader_free(ChunkReader *rd);
int chunkstore_get_with(ChunkStore *s, ChunkReader *rd, const ChunkDigest *d, void *buf, size_t buflen, size_t *ret_len);

bool chunk_is_zero(const void *data, size_t len);
void chunk_digest_hex(const ChunkDigest *d, char out[static 65]);
int chunk_digest_parse(const char *hex, ChunkDigest *ret);

/* --- Points --- */

/* Starts a new point of VM_UUID. With BASE (an earlier point of the same VM),
 * a disk added with the same target and size inherits BASE's chunk list, so an
 * incremental backup sets only the chunks it read again, and its index is
 * stored as the entries that differ from BASE's (see point_commit()). BASE
 * is read only by point_add_disk() (the commit reads the base again from
 * the store). Nothing is visible until point_commit(). */
int point_new(ChunkStore *s, const char *vm_uuid, const char *point_id, const Point *base, Point **ret);
/* Adds a disk of SIZE bytes; its chunks start as BASE's (see above) or zero. */
int point_add_disk(Point *p, const char *target, uint64_t size, unsigned *ret_index);
/* Sets chunk INDEX of disk DISK; D NULL means all zeros. */
int point_set_chunk(Point *p, unsigned disk, uint64_t index, const ChunkDigest *d);
/* Free-form metadata kept in the manifest (the VM's name and domain XML,
 * "consistency": "application"|"crash", "full": true, the checkpoint name,
 * the counters of the job that made it...). Takes a reference to VALUE. */
int point_set_meta(Point *p, const char *key, json_t *value);
/* Writes the manifest atomically; after it the point is listed. Checks first
 * that every chunk it names is in the store (-EBADMSG otherwise). A disk
 * inherited from the base is stored as a delta index (only the chunks that
 * differ from the base's) when that is less than half its whole index, the
 * base is still in the store and its chain of deltas is under 32 deep; the
 * manifest then names the base ("base"). Otherwise the index is whole. */
int point_commit(Point *p);

/* Opens a committed point with every disk's whole chunk list, resolved
 * through its chain of bases (each delta applied onto the list below it):
 * -ENOENT when it has no manifest, -EBADMSG when it or a base it needs is
 * malformed or missing. */
int point_open(ChunkStore *s, const char *vm_uuid, const char *point_id, Point **ret);
/* The point an opened point's delta indexes apply to, or NULL when its
 * indexes are whole. */
const char *point_base(const Point *p);
/* Whether a committed point of that id exists (its manifest is there). */
bool point_exists(ChunkStore *s, const char *vm_uuid, const char *point_id);
Point *point_free(Point *p);

const char *point_vm_uuid(const Point *p);
const char *point_id(const Point *p);
unsigned point_disk_count(const Point *p);
const char *point_disk_target(const Point *p, unsigned disk);
uint64_t point_disk_size(const Point *p, unsigned disk);
uint64_t point_disk_chunks(const Point *p, unsigned disk);
/* Chunk INDEX of DISK: *ret_zero true when it is all zeros (no digest). */
int point_chunk(const Point *p, unsigned disk, uint64_t index, ChunkDigest *ret, bool *ret_zero);
json_t *point_meta(const Point *p, const char *key); /* borrowed; NULL when absent */

/* Every committed point, of VM_UUID or (NULL) of every VM, oldest first:
 * [{"vm_uuid", "point_id", "disks": [{"target", "size"}], "meta": {...}}]. */
int point_list(ChunkStore *s, const char *vm_uuid, json_t **ret);
/* Removes a point's manifest (its chunks go at the next garbage collection).
 * The points whose indexes are deltas against it are rebased first, under
 * the VM's lock: their indexes are written again against its own base, or
 * whole (their chunk lists do not change); when that fails nothing is
 * removed. */
int point_remove(ChunkStore *s, const char *vm_uuid, const char *point_id);

/* Writes disk DISK of point P as a raw image to FD (from offset 0), leaving
 * holes where chunks are zero; PROGRESS (may be NULL) is called after each
 * chunk with the bytes done so far. */
typedef void (*ChunkProgress)(uint64_t done, uint64_t total, void *userdata);
int point_read_disk(ChunkStore *s, const Point *p, unsigned disk, int fd, ChunkProgress progress, void *userdata);

/* --- Space, verification, garbage collection --- */

typedef struct ChunkStoreUsage {
        uint64_t chunks;        /* chunk files */
        uint64_t stored_bytes;  /* their size on disk */
        uint64_t logical_bytes; /* sum of every point's disk sizes (what a copy of each would take) */
        uint64_t points;
} ChunkStoreUsage;
int chunkstore_usage(ChunkStore *s, ChunkStoreUsage *ret);

/* Re-reads every chunk every point names (each chunk once) and checks its
 * digest. *ret: {"points": N, "chunks": N, "bad_points": [{"vm_uuid",
 * "point_id", "disk", "chunk", "digest", "reason": "missing"|"corrupt"}]}.
 * A point listed in bad_points cannot be restored. */
int chunkstore_verify(ChunkStore *s, ChunkProgress progress, void *userdata, json_t **ret);

/* Removes every chunk no point names and whose mtime is older than
 * KEEP_NEWER_THAN (the start of the oldest backup still running, so chunks
 * it has written but not yet committed survive). */
typedef struct ChunkStoreGc {
        uint64_t chunks_removed, bytes_removed, chunks_kept;
} ChunkStoreGc;
int chunkstore_gc(ChunkStore *s, time_t keep_newer_than, ChunkStoreGc *ret);

/* --- Retention (pure) --- */

typedef struct PrunePolicy {
        unsigned keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly;
} PrunePolicy;
/* Proxmox Backup Server's rules: TIMES (n points of one VM, any order); KEEP[i]
 * set when point i is kept by some rule. A policy of all zeros keeps all. */
void prune_select(const time_t *times, size_t n, const PrunePolicy *pol, bool *keep);

/* --- Copies between datastores (archive, import, replication to a path) --- */

/* Copies the named points (a JSON array of {"vm_uuid", "point_id"}) from SRC
 * into DST, sending only chunks DST lacks, chunks first and manifests last.
 * -EXDEV when SRC and DST cut disks at different chunk sizes (nothing copied).
 * *ret_chunks_sent / *ret_bytes_sent may be NULL. */
int chunkstore_copy_points(ChunkStore *src, ChunkStore *dst, json_t *points, ChunkProgress progress, void *userdata,
                           uint64_t *ret_chunks_sent, uint64_t *ret_bytes_sent);

/* --- Replication to another site (protect-replicate.c) --- */

/* A chunk file image is at most its header and CHUNK_SIZE raw bytes (a
 * chunk zstd does not shrink is stored raw). */
#define CHUNK_FILE_MAX (16u + CHUNK_SIZE)

/* The file of chunk D as stored (header and frame), checked against D
 * first: 0 and *ret (malloc'd) / *ret_len, -ENOENT or -EBADMSG. */
int chunkstore_read_raw(ChunkStore *s, const ChunkDigest *d, uint8_t **ret, size_t *ret_len);
/* Stores FILE (a chunk file image from another site, LEN ≤ CHUNK_FILE_MAX)
 * as chunk D after decoding it and checking that its bytes hash to D:
 * -EBADMSG for a malformed image or another digest (the sender is never
 * trusted; a chunk longer than S's chunk size is malformed too).
 * *ret_written (may be NULL): LEN, or 0 when D was there. */
int chunkstore_put_raw(ChunkStore *s, const ChunkDigest *d, const void *file, size_t len, uint64_t *ret_written);
/* A committed point as JSON for another site: {"vm_uuid", "point_id",
 * "chunk_size", "meta", "disks": [{"target", "size", "digests"}]}, digests the hex of
 * every chunk's digest in order (64 zeros for an all-zero chunk). */
int point_export(const Point *p, json_t **ret);
/* Commits into S the point M describes (as point_export() makes it, with
 * "chunk_size": -EXDEV when it is not S's, absent meaning 4 MiB),
 * atomically like point_commit(): -EINVAL for a malformed description,
 * -EEXIST when the point is there already, -EBADMSG when a chunk it names
 * is not in S. */
int point_import(ChunkStore *s, const json_t *m);
