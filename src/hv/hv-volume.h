/* hv-volume: the storage-volume work behind deploying from a library —
 * whether a host sees a file of armadad's machine, qcow2 overlays with a
 * backing file (linked clones), full copies (on the host, or streamed to it),
 * and streamed uploads of local files. Errors as in hv.h (hv_last_error()). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include "hv.h"

/* Whether the host behind c sees the file at path (a path on armadad's
 * machine) as the same file: some storage pool of the host holds a volume
 * at that path whose size in bytes is expect_size. When no pool holds it, a
 * transient directory pool at the file's directory is started (named
 * "armada-lib-<hash of the directory>", reused later) and asked again. 0 and
 * *ret_visible, or negative. */
int hv_volume_visible(HvConn *c, const char *path, uint64_t expect_size, bool *ret_visible);

/* Creates a qcow2 volume vol_name in pool whose backing file is
 * backing_path (format backing_format, "qcow2" or "raw"), with capacity
 * bytes (at least the backing file's virtual size). 0 and its path
 * (malloc'd), -EEXIST, -ENOENT (pool) or negative. */
int hv_volume_create_overlay(HvConn *c, const char *pool, const char *vol_name, const char *backing_path,
                             const char *backing_format, uint64_t capacity, char **ret_path);

/* Copies the volume at src_path (seen by the host) into a new volume
 * vol_name of pool, in format ("qcow2" or "raw"), on the host itself
 * (virStorageVolCreateXMLFrom). 0 and its path, or negative. */
int hv_volume_clone(HvConn *c, const char *pool, const char *vol_name, const char *src_path, const char *format,
                    char **ret_path);

/* Creates volume vol_name in pool holding the bytes of the local file
 * local_path, streamed over the libvirt connection (virStorageVolUpload).
 * The volume is declared raw of the file's size: its content is whatever the
 * file holds (a qcow2 image stays one). When content is false the volume is
 * only created at that size (drivers without storage data: libvirt's test
 * driver). 0 and its path, or negative; a half-made volume is deleted. */
int hv_volume_upload(HvConn *c, const char *pool, const char *vol_name, const char *local_path, bool content,
                     char **ret_path);

/* Writes the bytes of the host's volume at vol_path into the local file
 * local_path (created with mode 0644, which must not exist), streamed over
 * the connection (virStorageVolDownload): the file as it is on the host (an
 * overlay stays an overlay). 0, or negative with the local file removed. */
int hv_volume_download(HvConn *c, const char *vol_path, const char *local_path);

/* What hv_volume_upload_stream's source writes into, in order: bytes, and
 * holes (bytes that read as zeros, neither sent nor stored). 0 or negative
 * (the stream failed: hv_last_error() says why). */
typedef struct HvUpload HvUpload;
int hv_upload_data(HvUpload *u, const void *buf, size_t len);
int hv_upload_hole(HvUpload *u, uint64_t len);
/* Fills the volume through u: 0, or negative to stop (the upload is
 * aborted and the volume deleted; that code is returned). */
typedef int (*HvUploadSource)(HvUpload *u, void *userdata);

/* Creates volume vol_name in pool, size bytes long (declared raw: its
 * content is whatever source writes; a qcow2 image stays one), and fills it
 * from source over one sparse libvirt stream (virStorageVolUpload with
 * VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM): holes stay holes in the volume's
 * file, and every byte sent is written once, on the host.
 *
 * Flags: without HV_UPLOAD_CONTENT the volume is only created (drivers
 * without storage data) and source is not called. With HV_UPLOAD_DIRECT,
 * when the volume's path names the same file in armadad's own file system
 * (checked with a random marker sent over the connection and read back
 * locally before anything is written there: the host is this machine, or
 * the pool is on storage mounted at the same path), source's bytes are
 * written into that file directly (pwrite, holes skipped, fsync at the
 * end) instead of through libvirtd; else the stream. *ret_direct (may be
 * NULL) says which. Written directly, the pieces hv_upload_data() gets at
 * addresses, file offsets and lengths that are multiples of
 * HV_DIRECT_ALIGN go with O_DIRECT (where the file system allows it),
 * bypassing the page cache; the rest buffered.
 *
 * It runs in the caller's thread without a deadline (source is the
 * caller's code and may take as long as the data does; a dead libvirtd
 * ends the stream through the connection's keepalive). 0 and its path
 * (malloc'd), or negative with no volume left. */
#define HV_DIRECT_ALIGN 4096
enum {
        HV_UPLOAD_CONTENT = 1 << 0,
        HV_UPLOAD_DIRECT = 1 << 1,
};
int hv_volume_upload_stream(HvConn *c, const char *pool, const char *vol_name, uint64_t size, unsigned flags,
                            HvUploadSource source, void *userdata, char **ret_path, bool *ret_direct);

/* Several streams over ranges of one volume (issues 11 and 12: libvirtd's
 * side of one upload stream is the limit, and separate streams overlap).
 *
 * Why a range never sends a hole: libvirt (9.0, virfdstream.c,
 * virFDStreamThreadDoWrite) writes a hole of a sparse upload stream into a
 * file as lseek() past it and ftruncate() to where it ends. In a file
 * already longer than that (the new volume is created at its full size,
 * and other streams write past the hole) the truncate cuts off every byte
 * beyond the hole's end, including what a stream over a later range wrote
 * before: the volume then differs from the source, depending on timing.
 * One stream over the whole volume is safe (nothing lies past its holes
 * yet); several are not. So each range's data goes over plain streams
 * (virStorageVolUpload at the data's offset, no sparse flag): a hole of
 * 1 MiB or more ends the run's stream and the next data opens another
 * past it (the new file is sparse: what is skipped reads as zeros), a
 * shorter one is sent as zeros. Only file volumes are split: on a block
 * device a skipped byte would keep what was there. */
typedef struct {
        uint64_t off, len;
} HvRange;
/* Writes range i of the plan through u, from its start, forward (data and
 * holes, at most its length; what it leaves reads as zeros). Called on
 * several threads at once, for different ranges. 0, or negative to stop
 * the upload (its ranges in progress stop: hv_upload_data/hole then fail
 * with -ECANCELED; the volume is deleted; that code is returned). */
typedef int (*HvRangeSource)(HvUpload *u, size_t i, void *userdata);
typedef struct {
        const HvRange *ranges;  /* in the volume's order, disjoint, inside it */
        size_t n;
        /* The last n_after ranges are written only once every other one
         * is (a qcow2's tables, computed from its data). */
        size_t n_after;
        HvRangeSource source;
        void *userdata;
        unsigned streams;       /* 0: hv_upload_streams(size) */
} HvRanges;
/* How many streams an upload of size bytes gets: what
 * hv_set_upload_streams() set, else one per 256 MiB, at least 1, at most
 * the CPUs (at least 2, at most 4). */
unsigned hv_upload_streams(uint64_t size);
/* armadad --upload-streams N: every ranged upload (restores, streamed
 * imports) uses N streams (at most 4); 0, the default, chooses per
 * volume. Call at start-up. */
void hv_set_upload_streams(unsigned n);
/* hv_volume_upload_stream for a source that can write ranges of the volume
 * independently: creates volume vol_name (size bytes, declared raw) in
 * pool and fills it from plan. Over the connection: with one stream
 * (streams 1, a small volume, or a volume that is not a file) one sparse
 * stream over the ranges in order, the bytes between them holes, exactly
 * as hv_volume_upload_stream; with more, up to that many threads, each
 * with a connection of its own, take the ranges in order (the n_after last
 * ones once the others are done) and send each as above. With
 * HV_UPLOAD_DIRECT when armadad reaches the file (as
 * hv_volume_upload_stream): the same threads pwrite, one fsync at the end.
 * No deadline (the source is the caller's); a dead libvirtd ends every
 * stream through keepalive; the caller's source checks its own cancel. 0
 * with the path (malloc'd), *ret_direct and *ret_streams (the streams
 * used, 0 when written directly; either may be NULL); or negative (the
 * first failure, hv_last_error() says why) with no volume left. */
int hv_volume_upload_ranges(HvConn *c, const char *pool, const char *vol_name, uint64_t size, unsigned flags,
                            const HvRanges *plan, char **ret_path, bool *ret_direct, unsigned *ret_streams);

/* hv_volume_upload over several streams: when hv_set_upload_streams() set
 * more than 1 (not by default: two streams made the streamed import of a
 * dense qcow2 slower, bench/results/convert.md), the local file is cut
 * into that many ranges
 * and sent by hv_volume_upload_ranges, each range's data (SEEK_DATA) sent
 * and its holes kept holes; that runs in the caller's thread without a
 * deadline (a dead libvirtd ends the streams through keepalive; one that
 * answers keepalive but hangs is not bounded, unlike hv_volume_upload's
 * copy deadline). Else (one stream, no content, an empty file)
 * hv_volume_upload itself. 0 with the path and *ret_streams (may be
 * NULL), or negative with no volume left. */
int hv_volume_upload_file(HvConn *c, const char *pool, const char *vol_name, const char *local_path, bool content,
                          char **ret_path, unsigned *ret_streams);

/* Creates volume vol_name in pool through libvirt (declared raw, room for
 * capacity bytes, at least 64) for armadad to fill itself, when the
 * volume's path names the same file in armadad's own file system (the host
 * is this machine, or the pool is on storage mounted at the same path): a
 * random marker is sent into the volume over the connection and must read
 * back from the local path before anything is written there (as
 * HV_UPLOAD_DIRECT does). The marker is zeroed again. 0 with the volume's
 * path (malloc'd) and *ret_fd open on it for writing (no O_CLOEXEC: a child
 * such as qemu-img may write through /proc/self/fd/N; the caller closes
 * it). -EXDEV when armadad does not reach the file (no volume is left:
 * upload instead), another negative on failure (no volume left). Whatever
 * is written, hv_volume_direct_done() makes it durable and known to
 * libvirt; on failure the caller deletes the volume (hv_volume_delete). */
int hv_volume_create_direct(HvConn *c, const char *pool, const char *vol_name, uint64_t capacity, char **ret_path,
                            int *ret_fd);

/* After armadad wrote the volume at path through fd itself: fsync, then
 * a refresh of its pool so libvirt reads the file's new size and format
 * (libvirt's own uploads end with the same refresh). Closes fd. 0; 1 when
 * the data is on disk but the refresh failed (libvirt's idea of the size
 * stays stale until its next refresh; hv_last_error() says why); negative
 * when the data did not reach the disk (hv_last_error() says why). */
int hv_volume_direct_done(HvConn *c, const char *path, int fd);
