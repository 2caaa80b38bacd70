/* hv-volume: storage volumes for the library (see hv-volume.h). Volume and
 * pool XML is built with libxml2's tree API, which escapes every text. */
#include "hv-volume.h"
#include "hv-internal.h"
#include "hv-cleanup.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/tree.h>

static bool name_ok(const char *s) {
        return s && s[0] && !strchr(s, '/') && strlen(s) < 256;
}

/* Serialises doc without the XML declaration. malloc'd. */
static char *doc_string(xmlDocPtr doc) {
        xmlChar *mem = NULL;
        int len = 0;
        xmlDocDumpFormatMemoryEnc(doc, &mem, &len, "UTF-8", 0);
        char *s = xstrdup(mem ? (const char *) mem : "");
        xmlFree(mem);
        xmlFreeDoc(doc);
        return s;
}

static xmlNodePtr text_child(xmlNodePtr parent, const char *name, const char *text) {
        return xmlNewTextChild(parent, NULL, BAD_CAST name, BAD_CAST text);
}

static void format_child(xmlNodePtr parent, const char *format) {
        xmlNodePtr f = xmlNewChild(parent, NULL, BAD_CAST "format", NULL);
        xmlNewProp(f, BAD_CAST "type", BAD_CAST format);
}

/* <volume> named name of capacity bytes in format; with a backing store
 * when backing is not NULL. */
static char *volume_xml(const char *name, uint64_t capacity, const char *format, const char *backing, const char *backing_format) {
        xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
        xmlNodePtr v = xmlNewNode(NULL, BAD_CAST "volume");
        xmlDocSetRootElement(doc, v);
        text_child(v, "name", name);
        char num[32];
        snprintf(num, sizeof num, "%llu", (unsigned long long) capacity);
        xmlNodePtr cap = text_child(v, "capacity", num);
        xmlNewProp(cap, BAD_CAST "unit", BAD_CAST "bytes");
        xmlNodePtr alloc = text_child(v, "allocation", "0");
        xmlNewProp(alloc, BAD_CAST "unit", BAD_CAST "bytes");
        xmlNodePtr t = xmlNewChild(v, NULL, BAD_CAST "target", NULL);
        format_child(t, format);
        if (backing) {
                xmlNodePtr b = xmlNewChild(v, NULL, BAD_CAST "backingStore", NULL);
                text_child(b, "path", backing);
                format_child(b, backing_format);
        }
        return doc_string(doc);
}

static char *pool_xml(const char *name, const char *path) {
        xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
        xmlNodePtr p = xmlNewNode(NULL, BAD_CAST "pool");
        xmlNewProp(p, BAD_CAST "type", BAD_CAST "dir");
        xmlDocSetRootElement(doc, p);
        text_child(p, "name", name);
        xmlNodePtr t = xmlNewChild(p, NULL, BAD_CAST "target", NULL);
        text_child(t, "path", path);
        return doc_string(doc);
}

/* ---- visibility ---- */

static int lookup_matches(HvConn *c, const char *path, uint64_t expect_size, bool *ret) {
        _cleanup_vol_ virStorageVolPtr vol = virStorageVolLookupByPath(hv_conn_virt(c), path);
        if (!vol) {
                int code = hv_virt_code();
                if (code == VIR_ERR_NO_STORAGE_VOL || code == VIR_ERR_NO_STORAGE_POOL) {
                        *ret = false;
                        return 0;
                }
                return hv_virt_fail("cannot look up '%s' on the host", path);
        }
        /* The size in bytes of the file: allocation varies with sparseness,
         * capacity with the format; the physical size is what we indexed. */
        virStorageVolInfo info;
        if (virStorageVolGetInfoFlags(vol, &info, VIR_STORAGE_VOL_GET_PHYSICAL) < 0 &&
            virStorageVolGetInfo(vol, &info) < 0)
                return hv_virt_fail("cannot read the size of '%s' on the host", path);
        *ret = info.allocation == expect_size || info.capacity == expect_size;
        return 0;
}

static int volume_visible_now(HvConn *c, const char *path, uint64_t expect_size, bool *ret_visible) {
        HV_LEASE(c);
        assert(c && ret_visible);
        if (!path || path[0] != '/') {
                hv_set_error("cannot check a path that is not absolute");
                return -EINVAL;
        }
        bool seen = false;
        int r = lookup_matches(c, path, expect_size, &seen);
        if (r < 0 || seen) {
                *ret_visible = seen;
                return r;
        }
        _cleanup_free_ char *dir = xstrdup(path);
        *strrchr(dir, '/') = 0;
        if (!*dir) {
                *ret_visible = false;
                return 0;
        }
        /* A stable name per directory: FNV-1a of its path. */
        uint64_t h = 1469598103934665603ULL;
        for (const unsigned char *p = (const unsigned char *) dir; *p; p++)
                h = (h ^ *p) * 1099511628211ULL;
        char name[48];
        snprintf(name, sizeof name, "armada-lib-%016llx", (unsigned long long) h);
        _cleanup_pool_ virStoragePoolPtr pool = virStoragePoolLookupByName(hv_conn_virt(c), name);
        if (!pool) {
                _cleanup_free_ char *xml = pool_xml(name, dir);
                pool = virStoragePoolCreateXML(hv_conn_virt(c), xml, 0);
                if (!pool) {
                        /* The directory does not exist there (another machine),
                         * or a pool of another name holds it already (then the
                         * first lookup would have found the file), or another
                         * job created ours meanwhile. */
                        pool = virStoragePoolLookupByName(hv_conn_virt(c), name);
                        if (!pool) {
                                *ret_visible = false;
                                return 0;
                        }
                }
        }
        if (virStoragePoolRefresh(pool, 0) < 0 && hv_virt_code() != VIR_ERR_OPERATION_INVALID) {
                *ret_visible = false;
                return 0;
        }
        r = lookup_matches(c, path, expect_size, &seen);
        *ret_visible = r == 0 && seen;
        return r;
}

static int volume_visible_body(HvConn *c, HvCall *a) {
        return volume_visible_now(c, a->s[0], a->n[0], &a->out.b);
}

int hv_volume_visible(HvConn *c, const char *path, uint64_t expect_size, bool *ret_visible) {
        HvCall *a = hv_call_new(volume_visible_body, "looking for a volume", path, NULL, NULL, NULL);
        a->n[0] = expect_size;
        return hv_call_out(c, a, hv_deadlines.query_ms, ret_visible, sizeof *ret_visible);
}

/* ---- creation ---- */

static virStoragePoolPtr pool_open(HvConn *c, const char *pool, const char *vol_name, int *ret_r) {
        if (!name_ok(pool) || !name_ok(vol_name)) {
                hv_set_error("cannot create a volume without a valid pool and volume name");
                *ret_r = -EINVAL;
                return NULL;
        }
        virStoragePoolPtr p = virStoragePoolLookupByName(hv_conn_virt(c), pool);
        if (!p) {
                *ret_r = hv_virt_fail("cannot find storage pool '%s'", pool);
                return NULL;
        }
        virStorageVolPtr old = virStorageVolLookupByName(p, vol_name);
        if (old) {
                virStorageVolFree(old);
                virStoragePoolFree(p);
                hv_set_error("cannot create volume '%s': storage pool '%s' already has one of that name", vol_name, pool);
                *ret_r = -EEXIST;
                return NULL;
        }
        return p;
}

static int vol_path(virStorageVolPtr vol, const char *vol_name, char **ret_path) {
        char *path = virStorageVolGetPath(vol);
        if (!path)
                return hv_virt_fail("cannot read the path of new volume '%s'", vol_name);
        *ret_path = path;
        return 0;
}

static int volume_create_overlay_now(HvConn *c, const char *pool, const char *vol_name, const char *backing_path,
                                     const char *backing_format, uint64_t capacity, char **ret_path) {
        HV_LEASE(c);
        assert(c && ret_path);
        if (!backing_path || backing_path[0] != '/' || !backing_format ||
            (!streq(backing_format, "qcow2") && !streq(backing_format, "raw")) || capacity == 0) {
                hv_set_error("cannot create overlay '%s': it needs an absolute backing path, a backing format of qcow2 or raw"
                             " and a capacity", vol_name ? vol_name : "");
                return -EINVAL;
        }
        int r;
        _cleanup_pool_ virStoragePoolPtr p = pool_open(c, pool, vol_name, &r);
        if (!p)
                return r;
        _cleanup_free_ char *xml = volume_xml(vol_name, capacity, "qcow2", backing_path, backing_format);
        _cleanup_vol_ virStorageVolPtr vol = virStorageVolCreateXML(p, xml, 0);
        if (!vol)
                return hv_virt_fail("cannot create overlay '%s' over '%s' in storage pool '%s'", vol_name, backing_path, pool);
        return vol_path(vol, vol_name, ret_path);
}

static int volume_create_overlay_body(HvConn *c, HvCall *a) {
        return volume_create_overlay_now(c, a->s[0], a->s[1], a->s[2], a->s[3], a->n[0], &a->ret.str);
}

int hv_volume_create_overlay(HvConn *c, const char *pool, const char *vol_name, const char *backing_path,
                             const char *backing_format, uint64_t capacity, char **ret_path) {
        assert(ret_path);
        HvCall *a = hv_call_new(volume_create_overlay_body, "creating an overlay volume", pool, vol_name, backing_path,
                                backing_format);
        a->n[0] = capacity;
        return HV_CALL_TAKE(c, a, hv_deadlines.change_ms, ret_path, NULL);
}

static int volume_clone_now(HvConn *c, const char *pool, const char *vol_name, const char *src_path, const char *format,
                            char **ret_path) {
        HV_LEASE(c);
        assert(c && ret_path);
        if (!format || (!streq(format, "qcow2") && !streq(format, "raw"))) {
                hv_set_error("cannot copy into volume '%s': its format must be qcow2 or raw", vol_name ? vol_name : "");
                return -EINVAL;
        }
        int r;
        _cleanup_pool_ virStoragePoolPtr p = pool_open(c, pool, vol_name, &r);
        if (!p)
                return r;
        _cleanup_vol_ virStorageVolPtr src = virStorageVolLookupByPath(hv_conn_virt(c), src_path);
        if (!src)
                return hv_virt_fail("cannot find '%s' on the host to copy it", src_path);
        virStorageVolInfo info;
        if (virStorageVolGetInfo(src, &info) < 0)
                return hv_virt_fail("cannot read the size of '%s'", src_path);
        _cleanup_free_ char *xml = volume_xml(vol_name, info.capacity, format, NULL, NULL);
        _cleanup_vol_ virStorageVolPtr vol = virStorageVolCreateXMLFrom(p, xml, src, 0);
        if (!vol)
                return hv_virt_fail("cannot copy '%s' into volume '%s' of storage pool '%s'", src_path, vol_name, pool);
        return vol_path(vol, vol_name, ret_path);
}

static int volume_clone_body(HvConn *c, HvCall *a) {
        return volume_clone_now(c, a->s[0], a->s[1], a->s[2], a->s[3], &a->ret.str);
}

int hv_volume_clone(HvConn *c, const char *pool, const char *vol_name, const char *src_path, const char *format,
                    char **ret_path) {
        assert(ret_path);
        return HV_CALL_TAKE(c, hv_call_new(volume_clone_body, "copying a volume", pool, vol_name, src_path, format), hv_deadlines.copy_ms, ret_path, NULL);
}

static int send_file(virStreamPtr st, char *data, size_t nbytes, void *opaque) {
        int fd = *(int *) opaque;
        ssize_t n;
        do
                n = read(fd, data, nbytes);
        while (n < 0 && errno == EINTR);
        return (int) n;
}

/* Removes the half-made volume vol after a failure r, keeping the error
 * that failure set (the removal's own would replace it). Returns r. */
static int vol_delete_keeping_error(virStorageVolPtr vol, int r) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", hv_last_error());
        (void) virStorageVolDelete(vol, 0);
        hv_set_error("%s", keep);
        return r;
}

static int volume_upload_now(HvConn *c, const char *pool, const char *vol_name, const char *local_path, bool content,
                             char **ret_path) {
        HV_LEASE(c);
        assert(c && ret_path);
        _cleanup_close_ int fd = open(local_path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        if (fd < 0 || fstat(fd, &sb) < 0) {
                int e = errno;
                hv_set_error("cannot read '%s' to upload it: %s", local_path, strerror(e));
                return -e;
        }
        int r;
        _cleanup_pool_ virStoragePoolPtr p = pool_open(c, pool, vol_name, &r);
        if (!p)
                return r;
        uint64_t size = (uint64_t) sb.st_size;
        /* Volumes hold whole 512-byte sectors. */
        uint64_t capacity = size ? (size + 511) / 512 * 512 : 512;
        _cleanup_free_ char *xml = volume_xml(vol_name, capacity, "raw", NULL, NULL);
        _cleanup_vol_ virStorageVolPtr vol = virStorageVolCreateXML(p, xml, 0);
        if (!vol)
                return hv_virt_fail("cannot create volume '%s' in storage pool '%s'", vol_name, pool);
        if (content && size > 0) {
                _cleanup_stream_ virStreamPtr st = virStreamNew(hv_conn_virt(c), 0);
                if (!st)
                        r = hv_virt_fail("cannot open a stream to upload '%s'", local_path);
                else if (virStorageVolUpload(vol, st, 0, size, 0) < 0)
                        r = hv_virt_fail("cannot upload '%s' into volume '%s'", local_path, vol_name);
                else if (virStreamSendAll(st, send_file, &fd) < 0) {
                        r = hv_virt_fail("cannot upload '%s' into volume '%s'", local_path, vol_name);
                        virStreamAbort(st);
                } else if (virStreamFinish(st) < 0)
                        r = hv_virt_fail("cannot finish uploading '%s' into volume '%s'", local_path, vol_name);
                else
                        r = 0;
                if (r < 0)
                        return vol_delete_keeping_error(vol, r);
        }
        return vol_path(vol, vol_name, ret_path);
}

static int volume_upload_body(HvConn *c, HvCall *a) {
        return volume_upload_now(c, a->s[0], a->s[1], a->s[2], a->flag, &a->ret.str);
}

int hv_volume_upload(HvConn *c, const char *pool, const char *vol_name, const char *local_path, bool content,
                     char **ret_path) {
        assert(ret_path);
        HvCall *a = hv_call_new(volume_upload_body, "uploading a volume", pool, vol_name, local_path, NULL);
        a->flag = content;
        return HV_CALL_TAKE(c, a, hv_deadlines.copy_ms, ret_path, NULL);
}

static int recv_file(virStreamPtr st, const char *data, size_t nbytes, void *opaque) {
        int fd = *(int *) opaque;
        size_t off = 0;
        while (off < nbytes) {
                ssize_t n = write(fd, data + off, nbytes - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -1;
                off += (size_t) n;
        }
        return (int) nbytes;
}

static int volume_download_now(HvConn *c, const char *vol_path, const char *local_path) {
        HV_LEASE(c);
        assert(c);
        _cleanup_vol_ virStorageVolPtr vol = virStorageVolLookupByPath(hv_conn_virt(c), vol_path);
        if (!vol)
                return hv_virt_fail("cannot find the volume at '%s' on the host", vol_path);
        int fd = open(local_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
                int e = errno;
                hv_set_error("cannot create '%s': %s", local_path, strerror(e));
                return -e;
        }
        int r = 0;
        _cleanup_stream_ virStreamPtr st = virStreamNew(hv_conn_virt(c), 0);
        if (!st)
                r = hv_virt_fail("cannot open a stream to download '%s'", vol_path);
        else if (virStorageVolDownload(vol, st, 0, 0, 0) < 0)
                r = hv_virt_fail("cannot download '%s'", vol_path);
        else if (virStreamRecvAll(st, recv_file, &fd) < 0) {
                r = hv_virt_fail("cannot download '%s'", vol_path);
                virStreamAbort(st);
        } else if (virStreamFinish(st) < 0)
                r = hv_virt_fail("cannot finish downloading '%s'", vol_path);
        if (r == 0 && fsync(fd) < 0) {
                r = -errno;
                hv_set_error("cannot write '%s': %s", local_path, strerror(errno));
        }
        close(fd);
        if (r < 0)
                unlink(local_path);
        return r;
}

static int volume_download_body(HvConn *c, HvCall *a) {
        return volume_download_now(c, a->s[0], a->s[1]);
}

int hv_volume_download(HvConn *c, const char *vol_path, const char *local_path) {
        return hv_call_code(c, hv_call_new(volume_download_body, "downloading a volume", vol_path, local_path, NULL, NULL), hv_deadlines.copy_ms);
}

/* ---- uploads from a producer, sparse ---- */

struct HvUpload {
        virStreamPtr st;        /* NULL: written straight into fd, or (split) no stream open now */
        int fd;
        int dfd;                /* fd's file opened O_DIRECT for aligned pieces, or -1 */
        uint64_t off;           /* fd, split: where the next byte goes */
        const char *vol_name;
        uint64_t left;          /* bytes the volume (a range: the range) still has room for */
        /* A range of several streams (hv_volume_upload_ranges): no holes
         * on the wire; data goes over one stream per run, from off. */
        bool split;
        virStreamPtr open;      /* split: the stream of the run in progress, or NULL */
        virStorageVolPtr vol;   /* split: the volume, on this thread's connection */
        HvConn *c;
        uint64_t hole;          /* split: hole bytes not yet skipped or sent */
        uint64_t end;           /* split: the range's end in the volume */
        atomic_bool *stop;      /* split: another range failed: stop */
        pthread_mutex_t *opening; /* split: held while a stream is opened */
};

/* libvirt's own stream copies move 64-256 KiB per message. */
#define UPLOAD_PIECE (256u << 10)

static int split_data(HvUpload *u, const void *buf, size_t len);
static int split_hole(HvUpload *u, uint64_t len);

/* All LEN bytes of p at offset at of fd (a volume's file). */
static int pwrite_all(int fd, const char *p, size_t len, uint64_t at, const char *vol_name) {
        for (size_t off = 0; off < len;) {
                ssize_t k = pwrite(fd, p + off, len - off, (off_t) (at + off));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        int e = k < 0 ? errno : EIO;
                        hv_set_error("cannot write volume '%s': %s", vol_name, strerror(e));
                        return -e;
                }
                off += (size_t) k;
        }
        return 0;
}

/* Writes LEN bytes at u->off into the volume's file: the part of them
 * aligned to HV_DIRECT_ALIGN in memory and in the file through dfd
 * (O_DIRECT: no page cache filled and written back, which made a P2V's
 * writes the bound here: bench/results/convert.md), the rest through fd. */
static int direct_write(HvUpload *u, const char *p, size_t len) {
        size_t aligned = len / HV_DIRECT_ALIGN * HV_DIRECT_ALIGN;
        if (u->dfd < 0 || aligned == 0 || (uintptr_t) p % HV_DIRECT_ALIGN || u->off % HV_DIRECT_ALIGN)
                return pwrite_all(u->fd, p, len, u->off, u->vol_name);
        int r = pwrite_all(u->dfd, p, aligned, u->off, u->vol_name);
        if (r == 0 && aligned < len)
                r = pwrite_all(u->fd, p + aligned, len - aligned, u->off + aligned, u->vol_name);
        return r;
}

int hv_upload_data(HvUpload *u, const void *buf, size_t len) {
        if (len > u->left) {
                hv_set_error("the upload into volume '%s' runs past its end", u->vol_name);
                return -EINVAL;
        }
        if (u->stop && atomic_load(u->stop)) {
                hv_set_error("the upload into volume '%s' stopped: another of its ranges failed", u->vol_name);
                return -ECANCELED;
        }
        if (u->split)
                return split_data(u, buf, len);
        const char *p = buf;
        if (!u->st) {
                int r = direct_write(u, p, len);
                if (r < 0)
                        return r;
                u->off += len;
                u->left -= len;
                return 0;
        }
        for (size_t off = 0; off < len;) {
                size_t n = len - off < UPLOAD_PIECE ? len - off : UPLOAD_PIECE;
                int k = virStreamSend(u->st, p + off, n);
                if (k < 0)
                        return hv_virt_fail("cannot upload into volume '%s'", u->vol_name);
                off += (size_t) k;
        }
        u->left -= len;
        return 0;
}

int hv_upload_hole(HvUpload *u, uint64_t len) {
        if (len > u->left) {
                hv_set_error("the upload into volume '%s' runs past its end", u->vol_name);
                return -EINVAL;
        }
        if (u->split)
                return split_hole(u, len);
        if (!u->st)
                u->off += len; /* the volume's file is new and sparse: a hole is what is there */
        else if (len && virStreamSendHole(u->st, (long long) len, 0) < 0)
                return hv_virt_fail("cannot upload into volume '%s'", u->vol_name);
        u->left -= len;
        return 0;
}

static int upload_fill(HvConn *c, virStorageVolPtr vol, const char *vol_name, uint64_t size, HvUploadSource source,
                       void *userdata) {
        _cleanup_stream_ virStreamPtr st = virStreamNew(hv_conn_virt(c), 0);
        if (!st)
                return hv_virt_fail("cannot open a stream to upload into volume '%s'", vol_name);
        if (virStorageVolUpload(vol, st, 0, size, VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM) < 0)
                return hv_virt_fail("cannot upload into volume '%s'", vol_name);
        HvUpload u = { .st = st, .fd = -1, .dfd = -1, .vol_name = vol_name, .left = size };
        int r = source(&u, userdata);
        if (r >= 0 && u.left)
                r = hv_upload_hole(&u, u.left);
        if (r < 0) {
                virStreamAbort(st);
                return r;
        }
        if (virStreamFinish(st) < 0)
                return hv_virt_fail("cannot finish uploading into volume '%s'", vol_name);
        return 0;
}

/* Sends BUF (LEN bytes) over the connection to the start of VOL. */
static int upload_bytes(HvConn *c, virStorageVolPtr vol, const void *buf, size_t len) {
        _cleanup_stream_ virStreamPtr st = virStreamNew(hv_conn_virt(c), 0);
        if (!st || virStorageVolUpload(vol, st, 0, len, 0) < 0)
                return -EIO;
        for (size_t off = 0; off < len;) {
                int k = virStreamSend(st, (const char *) buf + off, len - off);
                if (k < 0) {
                        virStreamAbort(st);
                        return -EIO;
                }
                off += (size_t) k;
        }
        return virStreamFinish(st) < 0 ? -EIO : 0;
}

/* The file of new volume VOL (SIZE bytes, all zeros) opened for writing
 * here, when its path on the host is the same file in armadad's own file
 * system (the host is this machine, or the pool is on storage mounted at
 * the same path on both): a random marker is sent to the volume over the
 * connection and must read back from the local path. Nothing local is
 * written before the marker proves the file is the volume. The marker is
 * zeroed again. An fd, or -1 (use the stream). */
#define DIRECT_MARK 64
static int upload_direct_open(HvConn *c, virStorageVolPtr vol, const char *path, uint64_t size) {
        uint8_t mark[DIRECT_MARK], got[DIRECT_MARK];
        if (size < DIRECT_MARK || !path || path[0] != '/')
                return -1;
        _cleanup_close_ int probe = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat sb;
        if (probe < 0 || fstat(probe, &sb) < 0 || !S_ISREG(sb.st_mode) || (uint64_t) sb.st_size != size)
                return -1;
        _cleanup_close_ int rnd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (rnd < 0 || read(rnd, mark, sizeof mark) != (ssize_t) sizeof mark)
                return -1;
        if (upload_bytes(c, vol, mark, sizeof mark) < 0) {
                virResetLastError();
                return -1;
        }
        if (pread(probe, got, sizeof got, 0) != (ssize_t) sizeof got || memcmp(mark, got, sizeof mark) != 0)
                return -1;
        int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        static const uint8_t zeros[DIRECT_MARK];
        if (fd >= 0 && pwrite(fd, zeros, sizeof zeros, 0) != (ssize_t) sizeof zeros) {
                close(fd);
                return -1;
        }
        return fd;
}

/* FD's file opened again with O_DIRECT (the same file: through
 * /proc/self/fd, not its path), or -1 where the file system refuses it
 * (tmpfs) or anything fails: then every write is buffered. */
static int reopen_direct(int fd) {
        char self[64];
        snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
        return open(self, O_WRONLY | O_CLOEXEC | O_DIRECT);
}

/* A volume's file armadad wrote made durable, as libvirt's own upload
 * does at its end: 0, or -errno with the error set (name: the volume's
 * name or path). */
static int volume_fsync(int fd, const char *name) {
        if (fsync(fd) == 0)
                return 0;
        int r = -errno;
        hv_set_error("cannot write volume '%s': %s", name, strerror(-r));
        return r;
}

/* Fills VOL from SOURCE through FD (see upload_direct_open()), then makes
 * it durable. */
static int upload_direct_fill(int fd, const char *vol_name, uint64_t size, HvUploadSource source, void *userdata) {
        _cleanup_close_ int dfd = reopen_direct(fd);
        HvUpload u = { .fd = fd, .dfd = dfd, .vol_name = vol_name, .left = size };
        int r = source(&u, userdata);
        return r < 0 ? r : volume_fsync(fd, vol_name);
}

/* The raw volume an upload of size bytes fills (its capacity rounded up to
 * 512 bytes, in *ret_capacity), and its path. NULL with *ret_r on failure
 * (nothing left). */
static virStorageVolPtr upload_volume_new(virStoragePoolPtr p, const char *pool, const char *vol_name, uint64_t size,
                                          uint64_t *ret_capacity, char **ret_path, int *ret_r) {
        uint64_t capacity = size ? (size + 511) / 512 * 512 : 512;
        _cleanup_free_ char *xml = volume_xml(vol_name, capacity, "raw", NULL, NULL);
        virStorageVolPtr vol = virStorageVolCreateXML(p, xml, 0);
        if (!vol) {
                *ret_r = hv_virt_fail("cannot create volume '%s' in storage pool '%s'", vol_name, pool);
                return NULL;
        }
        int r = vol_path(vol, vol_name, ret_path);
        if (r < 0) {
                (void) virStorageVolDelete(vol, 0);
                virStorageVolFree(vol);
                *ret_r = r;
                return NULL;
        }
        *ret_capacity = capacity;
        return vol;
}

int hv_volume_upload_stream(HvConn *c, const char *pool, const char *vol_name, uint64_t size, unsigned flags,
                            HvUploadSource source, void *userdata, char **ret_path, bool *ret_direct) {
        /* Not an hv_call: the source is the caller's code, so this runs in
         * the caller's thread (what hv_call does with no deadline). */
        HV_LEASE(c);
        assert(c && source && ret_path);
        int r;
        _cleanup_pool_ virStoragePoolPtr p = pool_open(c, pool, vol_name, &r);
        if (!p)
                return r;
        uint64_t capacity;
        _cleanup_free_ char *path = NULL;
        _cleanup_vol_ virStorageVolPtr vol = upload_volume_new(p, pool, vol_name, size, &capacity, &path, &r);
        if (!vol)
                return r;
        bool direct = false;
        if (flags & HV_UPLOAD_CONTENT) {
                _cleanup_close_ int fd = flags & HV_UPLOAD_DIRECT ? upload_direct_open(c, vol, path, capacity) : -1;
                direct = fd >= 0;
                r = direct ? upload_direct_fill(fd, vol_name, size, source, userdata)
                           : upload_fill(c, vol, vol_name, size, source, userdata);
                if (r < 0)
                        return vol_delete_keeping_error(vol, r);
                /* libvirt's own uploads end with a refresh of the pool
                 * (the new allocation, a qcow2 seen as one); failing it
                 * only leaves those stale until the next one. */
                if (direct && virStoragePoolRefresh(p, 0) < 0)
                        virResetLastError();
        }
        if (ret_direct)
                *ret_direct = direct;
        *ret_path = steal_ptr(path);
        return 0;
}

/* ---- several streams over ranges of one volume ---- */

/* A hole shorter than this inside a range is sent as zeros: ending the
 * run's stream and opening the next costs two round trips and a pool
 * refresh on the host (libvirt refreshes the pool whenever an upload
 * stream closes), more than sending 1 MiB. */
#define RANGE_HOLE_MIN (1u << 20)
#define RANGE_STREAMS_MAX 4u
/* A volume smaller than this per stream gets fewer streams. */
#define RANGE_BYTES_PER_STREAM (UINT64_C(256) << 20)

/* armadad --upload-streams (the parsed configuration): 0 chooses. */
static atomic_uint upload_streams_set;

void hv_set_upload_streams(unsigned n) {
        atomic_store(&upload_streams_set, n > RANGE_STREAMS_MAX ? RANGE_STREAMS_MAX : n);
}

unsigned hv_upload_streams(uint64_t size) {
        unsigned set = atomic_load(&upload_streams_set);
        if (set)
                return set;
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned most = cpus < 2 ? 2 : cpus > (long) RANGE_STREAMS_MAX ? RANGE_STREAMS_MAX : (unsigned) cpus;
        uint64_t by_size = size / RANGE_BYTES_PER_STREAM;
        return by_size < 1 ? 1 : by_size < most ? (unsigned) by_size : most;
}

/* Ends the run's stream: every byte sent is then written on the host. */
static int split_finish(HvUpload *u) {
        virStreamPtr st = u->open;
        if (!st)
                return 0;
        u->open = NULL;
        int r = virStreamFinish(st) < 0 ? hv_virt_fail("cannot finish uploading into volume '%s'", u->vol_name) : 0;
        virStreamFree(st);
        return r;
}

static void split_abort(HvUpload *u) {
        if (!u->open)
                return;
        virStreamAbort(u->open);
        virStreamFree(u->open);
        u->open = NULL;
}

static int split_send(HvUpload *u, const char *p, size_t len) {
        for (size_t off = 0; off < len;) {
                size_t n = len - off < UPLOAD_PIECE ? len - off : UPLOAD_PIECE;
                int k = virStreamSend(u->open, p + off, n);
                if (k < 0)
                        return hv_virt_fail("cannot upload into volume '%s'", u->vol_name);
                off += (size_t) k;
        }
        u->off += len;
        return 0;
}

static int split_data(HvUpload *u, const void *buf, size_t len) {
        static const char zeros[UPLOAD_PIECE];
        int r;
        if (u->hole) {
                if (u->open && u->hole < RANGE_HOLE_MIN) {
                        for (uint64_t z = u->hole; z > 0;) {
                                size_t n = z < sizeof zeros ? (size_t) z : sizeof zeros;
                                if ((r = split_send(u, zeros, n)) < 0)
                                        return r;
                                z -= n;
                        }
                } else {
                        /* The volume's file is new and sparse: what is
                         * skipped reads as zeros. */
                        if ((r = split_finish(u)) < 0)
                                return r;
                        u->off += u->hole;
                }
                u->hole = 0;
        }
        if (!u->open) {
                virStreamPtr st = virStreamNew(hv_conn_virt(u->c), 0);
                if (!st)
                        return hv_virt_fail("cannot open a stream to upload into volume '%s'", u->vol_name);
                /* No VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM: see hv-volume.h.
                 * One opening at a time: libvirtd refuses an upload into a
                 * volume while another upload into it is being opened ("is
                 * still in use"); the call returns once that is over. */
                pthread_mutex_lock(u->opening);
                int k = virStorageVolUpload(u->vol, st, u->off, u->end - u->off, 0);
                if (k < 0)
                        r = hv_virt_fail("cannot upload into volume '%s'", u->vol_name);
                pthread_mutex_unlock(u->opening);
                if (k < 0) {
                        virStreamFree(st);
                        return r;
                }
                u->open = st;
        }
        if ((r = split_send(u, buf, len)) < 0)
                return r;
        u->left -= len;
        return 0;
}

static int split_hole(HvUpload *u, uint64_t len) {
        u->hole += len;
        u->left -= len;
        return 0;
}

/* One upload's ranges on several threads, each through a connection of
 * its own (hv_lease: libvirt's client and libvirtd serve one connection's
 * stream messages in order; separate connections overlap). */
typedef struct RangeRun {
        HvConn *c;
        const char *path;       /* the volume's, for a lookup per thread */
        const char *vol_name;
        const HvRanges *plan;
        int fd;                 /* direct: the volume's file; -1: streams */
        int dfd;                /* direct: fd's file opened O_DIRECT, or -1 */
        pthread_mutex_t lock;
        pthread_mutex_t opening; /* around virStorageVolUpload (split_data) */
        size_t next, upto;      /* the next range to claim, the phase's end */
        atomic_bool stop;       /* a range failed: the others stop */
        int r;                  /* the first failure, 0 */
        char error[1024];       /* and its hv_last_error() */
} RangeRun;

static int range_write(RangeRun *g, HvUpload *u, size_t i) {
        const HvRange *rg = &g->plan->ranges[i];
        u->off = rg->off;
        u->end = rg->off + rg->len;
        u->left = rg->len;
        u->hole = 0;
        int r = g->plan->source(u, i, g->plan->userdata);
        if (r >= 0 && u->split)
                r = split_finish(u);
        if (r < 0 && u->split)
                split_abort(u);
        return r;
}

static int range_worker_run(RangeRun *g) {
        HvUpload u = { .fd = g->fd, .dfd = g->dfd, .vol_name = g->vol_name, .c = g->c, .stop = &g->stop, .split = g->fd < 0,
                       .opening = &g->opening };
        if (g->fd >= 0) {
                for (;;) {
                        pthread_mutex_lock(&g->lock);
                        size_t i = g->next < g->upto && !atomic_load(&g->stop) ? g->next++ : SIZE_MAX;
                        pthread_mutex_unlock(&g->lock);
                        if (i == SIZE_MAX)
                                return 0;
                        int r = range_write(g, &u, i);
                        if (r < 0)
                                return r;
                }
        }
        HV_LEASE(g->c);
        _cleanup_vol_ virStorageVolPtr vol = virStorageVolLookupByPath(hv_conn_virt(g->c), g->path);
        if (!vol)
                return hv_virt_fail("cannot find volume '%s' on the host to upload into it", g->vol_name);
        u.vol = vol;
        for (;;) {
                pthread_mutex_lock(&g->lock);
                size_t i = g->next < g->upto && !atomic_load(&g->stop) ? g->next++ : SIZE_MAX;
                pthread_mutex_unlock(&g->lock);
                if (i == SIZE_MAX)
                        return 0;
                int r = range_write(g, &u, i);
                if (r < 0)
                        return r;
        }
}

static void *range_worker(void *arg) {
        RangeRun *g = arg;
        int r = range_worker_run(g);
        if (r < 0) {
                pthread_mutex_lock(&g->lock);
                if (g->r == 0) {
                        g->r = r;
                        snprintf(g->error, sizeof g->error, "%s", hv_last_error());
                }
                atomic_store(&g->stop, true);
                pthread_mutex_unlock(&g->lock);
        }
        return NULL;
}

/* Ranges [from, to) on up to streams threads; 0 or the first failure. */
static int ranges_phase(RangeRun *g, size_t from, size_t to, unsigned streams) {
        g->next = from;
        g->upto = to;
        unsigned n = to - from < streams ? (unsigned) (to - from) : streams, started = 0;
        pthread_t t[RANGE_STREAMS_MAX];
        while (started < n && pthread_create(&t[started], NULL, range_worker, g) == 0)
                started++;
        if (started == 0 && n > 0)
                range_worker(g);        /* no thread to spare: here, one stream */
        for (unsigned k = 0; k < started; k++)
                pthread_join(t[k], NULL);
        return g->r;
}

/* HvUploadSource of one stream: the ranges in order, the bytes between
 * them holes. */
static int ranges_in_order(HvUpload *u, void *userdata) {
        const HvRanges *plan = userdata;
        uint64_t at = 0;
        for (size_t i = 0; i < plan->n; i++) {
                const HvRange *rg = &plan->ranges[i];
                int r = rg->off > at ? hv_upload_hole(u, rg->off - at) : 0;
                if (r < 0)
                        return r;
                uint64_t after = u->left - rg->len;
                u->left = rg->len;
                r = plan->source(u, i, plan->userdata);
                if (r >= 0 && u->left)
                        r = hv_upload_hole(u, u->left);
                if (r < 0)
                        return r;
                u->left = after;
                at = rg->off + rg->len;
        }
        return 0;
}

static bool plan_ok(const HvRanges *plan, uint64_t size) {
        if (!plan || !plan->source || plan->n == 0 || plan->n_after > plan->n)
                return false;
        uint64_t at = 0;
        for (size_t i = 0; i < plan->n; i++) {
                const HvRange *rg = &plan->ranges[i];
                if (rg->off < at || rg->len == 0 || rg->len > size || rg->off > size - rg->len)
                        return false;
                at = rg->off + rg->len;
        }
        return true;
}

/* Whether skipped bytes of vol read as zeros: a file (libvirt makes a new
 * one sparse); a block device keeps what it held. */
static bool vol_is_file(virStorageVolPtr vol) {
        virStorageVolInfo info;
        return virStorageVolGetInfo(vol, &info) == 0 && info.type == VIR_STORAGE_VOL_FILE;
}

int hv_volume_upload_ranges(HvConn *c, const char *pool, const char *vol_name, uint64_t size, unsigned flags,
                            const HvRanges *plan, char **ret_path, bool *ret_direct, unsigned *ret_streams) {
        /* Not an hv_call: the source is the caller's code (as
         * hv_volume_upload_stream). */
        HV_LEASE(c);
        assert(c && ret_path);
        if (!plan_ok(plan, size)) {
                hv_set_error("cannot upload into volume '%s': its ranges are not in order inside it", vol_name ? vol_name : "");
                return -EINVAL;
        }
        int r;
        _cleanup_pool_ virStoragePoolPtr p = pool_open(c, pool, vol_name, &r);
        if (!p)
                return r;
        uint64_t capacity;
        _cleanup_free_ char *path = NULL;
        _cleanup_vol_ virStorageVolPtr vol = upload_volume_new(p, pool, vol_name, size, &capacity, &path, &r);
        if (!vol)
                return r;
        bool direct = false;
        unsigned streams = 0;
        if (flags & HV_UPLOAD_CONTENT) {
                _cleanup_close_ int fd = flags & HV_UPLOAD_DIRECT ? upload_direct_open(c, vol, path, capacity) : -1;
                direct = fd >= 0;
                streams = plan->streams ? plan->streams : hv_upload_streams(size);
                if (streams > RANGE_STREAMS_MAX)
                        streams = RANGE_STREAMS_MAX;
                if (!direct && !vol_is_file(vol))
                        streams = 1;
                if (!direct && streams == 1) {
                        r = upload_fill(c, vol, vol_name, size, ranges_in_order, (void *) plan);
                } else {
                        _cleanup_close_ int dfd = direct ? reopen_direct(fd) : -1;
                        RangeRun g = { .c = c, .path = path, .vol_name = vol_name, .plan = plan, .fd = fd, .dfd = dfd,
                                       .lock = PTHREAD_MUTEX_INITIALIZER, .opening = PTHREAD_MUTEX_INITIALIZER };
                        r = ranges_phase(&g, 0, plan->n - plan->n_after, streams);
                        if (r >= 0)
                                r = ranges_phase(&g, plan->n - plan->n_after, plan->n, streams);
                        pthread_mutex_destroy(&g.lock);
                        pthread_mutex_destroy(&g.opening);
                        if (r < 0)
                                hv_set_error("%s", g.error);
                        if (r >= 0 && direct)
                                r = volume_fsync(fd, vol_name);
                }
                if (r < 0)
                        return vol_delete_keeping_error(vol, r);
                if (direct && virStoragePoolRefresh(p, 0) < 0)
                        virResetLastError();
        }
        if (ret_direct)
                *ret_direct = direct;
        if (ret_streams)
                *ret_streams = direct ? 0 : streams;
        *ret_path = steal_ptr(path);
        return 0;
}

/* A local file's ranges: its data (SEEK_DATA) sent, its holes as holes. */
typedef struct {
        int fd;
        const HvRange *ranges;
} FileRanges;

#define FILE_PIECE (1u << 20)

static int file_range(HvUpload *u, size_t i, void *userdata) {
        FileRanges *f = userdata;
        const HvRange *rg = &f->ranges[i];
        _cleanup_free_ char *buf = xmalloc(FILE_PIECE);
        uint64_t at = rg->off, end = rg->off + rg->len;
        while (at < end) {
                off_t data = lseek(f->fd, (off_t) at, SEEK_DATA);
                uint64_t d = data < 0 ? end : (uint64_t) data < end ? (uint64_t) data : end;
                int r = d > at ? hv_upload_hole(u, d - at) : 0;
                if (r < 0)
                        return r;
                at = d;
                if (at >= end)
                        break;
                off_t hole = lseek(f->fd, (off_t) at, SEEK_HOLE);
                uint64_t h = hole < 0 || (uint64_t) hole > end ? end : (uint64_t) hole;
                while (at < h) {
                        size_t n = h - at < FILE_PIECE ? (size_t) (h - at) : FILE_PIECE;
                        ssize_t k = pread(f->fd, buf, n, (off_t) at);
                        if (k <= 0) {
                                int e = k < 0 ? errno : EIO;
                                hv_set_error("cannot read the file to upload into volume: %s", strerror(e));
                                return -e;
                        }
                        if ((r = hv_upload_data(u, buf, (size_t) k)) < 0)
                                return r;
                        at += (uint64_t) k;
                }
        }
        return 0;
}

int hv_volume_upload_file(HvConn *c, const char *pool, const char *vol_name, const char *local_path, bool content,
                          char **ret_path, unsigned *ret_streams) {
        assert(c && ret_path);
        _cleanup_close_ int fd = open(local_path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        if (fd < 0 || fstat(fd, &sb) < 0) {
                int e = errno;
                hv_set_error("cannot read '%s' to upload it: %s", local_path, strerror(e));
                return -e;
        }
        uint64_t size = (uint64_t) sb.st_size;
        /* Only when the operator asked: two streams made the streamed
         * import of a dense 2 GiB qcow2 slower here (bench/results/convert.md). */
        unsigned n = atomic_load(&upload_streams_set);
        if (size == 0 || !content || n <= 1) {
                if (ret_streams)
                        *ret_streams = 1;
                return hv_volume_upload(c, pool, vol_name, local_path, content, ret_path);
        }
        /* Ranges of whole MiB (the last one shorter). */
        uint64_t step = (size / n + FILE_PIECE - 1) / FILE_PIECE * FILE_PIECE;
        HvRange ranges[RANGE_STREAMS_MAX];
        size_t k = 0;
        for (uint64_t at = 0; at < size && k < RANGE_STREAMS_MAX; k++) {
                uint64_t len = k + 1 == n || size - at < step ? size - at : step;
                ranges[k] = (HvRange) { .off = at, .len = len };
                at += len;
        }
        FileRanges f = { .fd = fd, .ranges = ranges };
        HvRanges plan = { .ranges = ranges, .n = k, .source = file_range, .userdata = &f, .streams = n };
        return hv_volume_upload_ranges(c, pool, vol_name, size, HV_UPLOAD_CONTENT, &plan, ret_path, NULL, ret_streams);
}

/* ---- volumes armadad fills itself (an import's qemu-img output) ---- */

static int volume_create_marked_now(HvConn *c, const char *pool, const char *vol_name, const char *marker, uint64_t capacity,
                                    char **ret_path) {
        HV_LEASE(c);
        assert(c && marker && ret_path);
        int r;
        _cleanup_pool_ virStoragePoolPtr p = pool_open(c, pool, vol_name, &r);
        if (!p)
                return r;
        _cleanup_free_ char *xml = volume_xml(vol_name, capacity, "raw", NULL, NULL);
        _cleanup_vol_ virStorageVolPtr vol = virStorageVolCreateXML(p, xml, 0);
        if (!vol)
                return hv_virt_fail("cannot create volume '%s' in storage pool '%s'", vol_name, pool);
        _cleanup_free_ char *path = NULL;
        if ((r = vol_path(vol, vol_name, &path)) < 0)
                return vol_delete_keeping_error(vol, r);
        if (upload_bytes(c, vol, marker, strlen(marker)) < 0) {
                hv_set_error("cannot write into new volume '%s' over the connection", vol_name);
                return vol_delete_keeping_error(vol, -EIO);
        }
        *ret_path = steal_ptr(path);
        return 0;
}

static int volume_create_marked_body(HvConn *c, HvCall *a) {
        return volume_create_marked_now(c, a->s[0], a->s[1], a->s[2], a->n[0], &a->ret.str);
}

/* fd on path for writing when path's first bytes read back marker; -1. */
static int marked_open(const char *path, const char *marker, uint64_t capacity) {
        size_t n = strlen(marker);
        char got[DIRECT_MARK];
        assert(n <= sizeof got);
        _cleanup_close_ int probe = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat sb;
        if (probe < 0 || fstat(probe, &sb) < 0 || !S_ISREG(sb.st_mode) || (uint64_t) sb.st_size != capacity ||
            pread(probe, got, n, 0) != (ssize_t) n || memcmp(got, marker, n) != 0)
                return -1;
        int fd = open(path, O_WRONLY | O_NOFOLLOW);
        struct stat sw;
        /* The very file read: not one put at that path meanwhile. */
        if (fd >= 0 && (fstat(fd, &sw) < 0 || sw.st_dev != sb.st_dev || sw.st_ino != sb.st_ino)) {
                close(fd);
                return -1;
        }
        static const uint8_t zeros[DIRECT_MARK];
        if (fd >= 0 && pwrite(fd, zeros, n, 0) != (ssize_t) n) {
                close(fd);
                return -1;
        }
        return fd;
}

int hv_volume_create_direct(HvConn *c, const char *pool, const char *vol_name, uint64_t capacity, char **ret_path,
                            int *ret_fd) {
        assert(c && ret_path && ret_fd);
        unsigned char rnd[DIRECT_MARK / 2];
        char marker[DIRECT_MARK + 1];
        _cleanup_close_ int ufd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (ufd < 0 || read(ufd, rnd, sizeof rnd) != (ssize_t) sizeof rnd) {
                hv_set_error("cannot read random bytes for a volume marker");
                return -EIO;
        }
        hex_encode(rnd, sizeof rnd, marker);
        capacity = capacity < DIRECT_MARK ? DIRECT_MARK : (capacity + 511) / 512 * 512;
        HvCall *a = hv_call_new(volume_create_marked_body, "creating a volume", pool, vol_name, marker, NULL);
        a->n[0] = capacity;
        char *taken = NULL;
        char **ret = &taken;
        int r = HV_CALL_TAKE(c, a, hv_deadlines.change_ms, ret, NULL);
        if (r < 0)
                return r;
        _cleanup_free_ char *path = taken;
        int fd = marked_open(path, marker, capacity);
        if (fd < 0) {
                (void) hv_volume_delete(c, path);
                hv_set_error("armadad does not reach volume '%s' at its path on the host", vol_name);
                return -EXDEV;
        }
        *ret_fd = fd;
        *ret_path = steal_ptr(path);
        return 0;
}

static int volume_refresh_pool_body(HvConn *c, HvCall *a) {
        HV_LEASE(c);
        _cleanup_vol_ virStorageVolPtr vol = virStorageVolLookupByPath(hv_conn_virt(c), a->s[0]);
        _cleanup_pool_ virStoragePoolPtr p = vol ? virStoragePoolLookupByVolume(vol) : NULL;
        if (!p || virStoragePoolRefresh(p, 0) < 0)
                return hv_virt_fail("cannot refresh the storage pool of '%s'", a->s[0]);
        return 0;
}

int hv_volume_direct_done(HvConn *c, const char *path, int fd) {
        assert(c && path && fd >= 0);
        int r = volume_fsync(fd, path);
        close(fd);
        if (r < 0)
                return r;
        /* A failed refresh only leaves libvirt's idea of the size stale
         * until its next one: the data is there. */
        return hv_call_code(c, hv_call_new(volume_refresh_pool_body, "refreshing a storage pool", path, NULL, NULL, NULL),
                            hv_deadlines.change_ms) < 0 ? 1 : 0;
}
