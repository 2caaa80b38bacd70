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
 * NULL) says which.
 *
 * It runs in the caller's thread without a deadline (source is the
 * caller's code and may take as long as the data does; a dead libvirtd
 * ends the stream through the connection's keepalive). 0 and its path
 * (malloc'd), or negative with no volume left. */
enum {
        HV_UPLOAD_CONTENT = 1 << 0,
        HV_UPLOAD_DIRECT = 1 << 1,
};
int hv_volume_upload_stream(HvConn *c, const char *pool, const char *vol_name, uint64_t size, unsigned flags,
                            HvUploadSource source, void *userdata, char **ret_path, bool *ret_direct);

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
