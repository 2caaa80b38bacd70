/* protect-nbd: reads one disk of a pull-mode backup over NBD (libnbd) into
 * a recovery point of the chunk store.
 *
 * The disk is cut into chunks of the datastore's chunk size. Before reading anything, block
 * status tells which chunks need reading: for a full backup the
 * "base:allocation" context (a chunk that is a hole or reads as zeros
 * everywhere is stored as a zero chunk without a read), for an incremental
 * one the export's dirty bitmap ("qemu:dirty-bitmap:<name>": only chunks
 * overlapping a dirty extent are read; the others keep the base point's
 * digests, which point_new() copied). Each chunk read is handed to
 * chunkstore_put(), which stores it once however many points and VMs name
 * it. A reader thread keeps one chunk read ahead of the hashing. */
#include "protect-priv.h"

#include <errno.h>
#include <unistd.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libnbd.h>

#include "util/util.h"

struct ProtectNbd {
        struct nbd_handle *h;
        uint64_t size;
        char context[128];
};

static int nbd_errno(void) {
        int e = nbd_get_errno();
        return e > 0 ? -e : -EIO;
}

int protect_nbd_open(const ProtectNbdSource *src, ProtectNbd **ret, char *why, size_t why_size) {
        ProtectNbd *n = xcalloc(1, sizeof *n);
        n->h = nbd_create();
        if (!n->h) {
                snprintf(why, why_size, "cannot create an NBD handle: %s", nbd_get_error());
                free(n);
                return -ENOMEM;
        }
        snprintf(n->context, sizeof n->context, "%s%s", src->bitmap && src->bitmap[0] ? "qemu:dirty-bitmap:" : "base:allocation",
                 src->bitmap && src->bitmap[0] ? src->bitmap : "");
        int r = 0;
        if (nbd_set_export_name(n->h, src->export_name) < 0 || nbd_add_meta_context(n->h, n->context) < 0)
                r = nbd_errno();
        /* LIBNBD_TLS_REQUIRE: a server that does not offer TLS fails the
         * connection; there is no fall back to plain NBD. The peer is
         * verified against the CA and the host name connected to. */
        else if (src->tls_dir && (nbd_set_tls(n->h, LIBNBD_TLS_REQUIRE) < 0 ||
                                  nbd_set_tls_certificates(n->h, src->tls_dir) < 0 ||
                                  nbd_set_tls_verify_peer(n->h, true) < 0))
                r = nbd_errno();
        else if (src->socket && src->socket[0] ? nbd_connect_unix(n->h, src->socket) < 0 : ({
                         char port[16];
                         snprintf(port, sizeof port, "%u", src->port);
                         nbd_connect_tcp(n->h, src->host, port) < 0;
                 }))
                r = nbd_errno();
        if (r < 0) {
                snprintf(why, why_size, "cannot read export '%s' over NBD%s: %s", src->export_name,
                         src->tls_dir ? " with TLS (armadad --backup-tls)" : "", nbd_get_error());
                protect_nbd_close(n);
                return r;
        }
        int64_t size = nbd_get_size(n->h);
        if (size < 0) {
                r = nbd_errno();
                snprintf(why, why_size, "cannot read the size of export '%s': %s", src->export_name, nbd_get_error());
                protect_nbd_close(n);
                return r;
        }
        if (nbd_can_meta_context(n->h, n->context) != 1) {
                snprintf(why, why_size, "the NBD server does not offer '%s' for export '%s'", n->context, src->export_name);
                protect_nbd_close(n);
                return -ENOTSUP;
        }
        n->size = (uint64_t) size;
        *ret = n;
        return 0;
}

int protect_backup_tls_check(const char *dir, char *why, size_t why_size) {
        static const char *const need[] = { "ca-cert.pem", "client-cert.pem", "client-key.pem" };
        for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
                _cleanup_free_ char *path = xasprintf("%s/%s", dir, need[i]);
                if (access(path, R_OK) < 0) {
                        int e = errno;
                        snprintf(why, why_size, "'%s' cannot be read: %s", path, strerror(e));
                        return -e;
                }
        }
        return 0;
}

uint64_t protect_nbd_size(const ProtectNbd *n) {
        return n->size;
}

ProtectNbd *protect_nbd_close(ProtectNbd *n) {
        if (!n)
                return NULL;
        if (n->h) {
                (void) nbd_shutdown(n->h, 0);
                nbd_close(n->h);
        }
        free(n);
        return NULL;
}

typedef struct {
        const char *context;
        bool incremental;
        uint64_t offset;         /* where the request started */
        uint64_t done;           /* bytes the answer covered */
        uint8_t *need;           /* one byte per chunk: read it */
        uint64_t n_chunks;
        uint32_t chunk_size;
} Extents;

static int extent_cb(void *user_data, const char *metacontext, uint64_t offset, uint32_t *entries, size_t nr_entries,
                     int *error) {
        Extents *x = user_data;
        (void) error;
        if (!streq(metacontext, x->context))
                return 0;
        uint64_t at = offset;
        for (size_t i = 0; i + 1 < nr_entries; i += 2) {
                uint64_t len = entries[i];
                uint32_t flags = entries[i + 1];
                /* Dirty bitmap: bit 0 set means changed. base:allocation:
                 * NBD_STATE_ZERO (2) means reads as zeros. */
                bool read = x->incremental ? (flags & 1) : !(flags & LIBNBD_STATE_ZERO);
                if (read && len > 0) {
                        uint64_t first = at / x->chunk_size, last = (at + len - 1) / x->chunk_size;
                        for (uint64_t c = first; c <= last && c < x->n_chunks; c++)
                                x->need[c] = 1;
                }
                at += len;
        }
        x->done = at - x->offset;
        return 0;
}

/* Which chunks to read: 0 and x->need filled, or negative. */
static int plan_reads(ProtectNbd *n, Extents *x) {
        for (uint64_t off = 0; off < n->size;) {
                uint64_t want = n->size - off;
                if (want > (UINT64_C(1) << 30))
                        want = UINT64_C(1) << 30;
                x->offset = off;
                x->done = 0;
                if (nbd_block_status(n->h, want, off, (nbd_extent_callback) { .callback = extent_cb, .user_data = x }, 0) < 0)
                        return nbd_errno();
                if (x->done == 0)
                        return -EPROTO;
                off += x->done;
        }
        return 0;
}

/* The reads run in a thread of their own, one chunk ahead of the hashing
 * and compressing: while chunkstore_put() digests chunk i (SHA-256 and
 * zstd, the larger cost), the reader already waits on QEMU for chunk i+1.
 * Two buffers, handed over in order under one mutex; the reader stops at
 * its first error or when the consumer says stop. */
typedef struct {
        ProtectNbd *n;
        const uint8_t *need;
        uint64_t n_chunks;
        uint32_t chunk_size;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint8_t *buf[2];
        bool full[2];            /* slot holds a chunk the consumer has not taken */
        int err[2];              /* the read's result for the slot */
        char why[256];
        bool stop;
} Reader;

static void *reader_main(void *userdata) {
        Reader *rd = userdata;
        uint64_t i = 0;
        for (uint64_t c = 0; c < rd->n_chunks; c++) {
                if (!rd->need[c])
                        continue;
                unsigned slot = (unsigned) (i++ % 2);
                pthread_mutex_lock(&rd->lock);
                while (rd->full[slot] && !rd->stop)
                        pthread_cond_wait(&rd->cond, &rd->lock);
                bool stop = rd->stop;
                pthread_mutex_unlock(&rd->lock);
                if (stop)
                        break;
                uint64_t off = c * rd->chunk_size;
                size_t len = (size_t) (rd->n->size - off < rd->chunk_size ? rd->n->size - off : rd->chunk_size);
                int r = 0;
                if (nbd_pread(rd->n->h, rd->buf[slot], len, off, 0) < 0) {
                        r = nbd_errno();
                        snprintf(rd->why, sizeof rd->why, "cannot read %zu bytes at offset %" PRIu64 " over NBD: %s", len, off,
                                 nbd_get_error());
                }
                pthread_mutex_lock(&rd->lock);
                rd->err[slot] = r;
                rd->full[slot] = true;
                pthread_cond_broadcast(&rd->cond);
                pthread_mutex_unlock(&rd->lock);
                if (r < 0)
                        break;
        }
        return NULL;
}

int protect_nbd_copy(ProtectNbd *n, ChunkStore *s, Point *p, unsigned disk, bool incremental, ProtectCounters *cnt,
                     ProtectNbdProgress progress, void *userdata, char *why, size_t why_size) {
        uint32_t cs = chunkstore_chunk_size(s);
        Extents x = { .context = n->context, .incremental = incremental, .n_chunks = (n->size + cs - 1) / cs,
                      .chunk_size = cs };
        x.need = xcalloc(x.n_chunks ? x.n_chunks : 1, 1);
        int r = plan_reads(n, &x);
        if (r < 0) {
                snprintf(why, why_size, "cannot read the block status ('%s') of the disk: %s", n->context, nbd_get_error());
                free(x.need);
                return r;
        }
        uint64_t to_read = 0;
        for (uint64_t c = 0; c < x.n_chunks; c++)
                to_read += x.need[c];
        cnt->chunks_total += x.n_chunks;
        Reader rd = { .n = n, .need = x.need, .n_chunks = x.n_chunks, .chunk_size = cs, .lock = PTHREAD_MUTEX_INITIALIZER,
                      .cond = PTHREAD_COND_INITIALIZER };
        rd.buf[0] = xmalloc(cs);
        rd.buf[1] = xmalloc(cs);
        pthread_t reader;
        bool started = to_read > 0;
        if (started && (r = -pthread_create(&reader, NULL, reader_main, &rd)) < 0) {
                snprintf(why, why_size, "cannot start the NBD reader: %s", strerror(-r));
                started = false;
        }
        uint64_t done = 0, i = 0;
        for (uint64_t c = 0; c < x.n_chunks && r >= 0; c++) {
                uint64_t off = c * cs;
                size_t len = (size_t) (n->size - off < cs ? n->size - off : cs);
                if (!x.need[c]) {
                        /* Full: a hole, stored as zeros. Incremental: unchanged,
                         * the base point's digest stays. */
                        if (!incremental) {
                                r = point_set_chunk(p, disk, c, NULL);
                                cnt->chunks_zero++;
                        }
                        continue;
                }
                unsigned slot = (unsigned) (i++ % 2);
                pthread_mutex_lock(&rd.lock);
                while (!rd.full[slot])
                        pthread_cond_wait(&rd.cond, &rd.lock);
                r = rd.err[slot];
                pthread_mutex_unlock(&rd.lock);
                if (r < 0) {
                        snprintf(why, why_size, "%s", rd.why);
                        break;
                }
                const uint8_t *buf = rd.buf[slot];
                cnt->bytes_read += len;
                cnt->chunks_read++;
                if (chunk_is_zero(buf, len)) {
                        r = point_set_chunk(p, disk, c, NULL);
                        cnt->chunks_zero++;
                } else {
                        ChunkDigest d;
                        uint64_t written = 0;
                        r = chunkstore_put(s, buf, len, &d, &written);
                        if (r < 0) {
                                snprintf(why, why_size, "cannot store a chunk in the datastore: %s", strerror(-r));
                                break;
                        }
                        cnt->bytes_written += written;
                        if (written)
                                cnt->chunks_new++;
                        r = point_set_chunk(p, disk, c, &d);
                }
                pthread_mutex_lock(&rd.lock);
                rd.full[slot] = false;
                pthread_cond_broadcast(&rd.cond);
                pthread_mutex_unlock(&rd.lock);
                if (r < 0 && !why[0])
                        snprintf(why, why_size, "cannot record chunk %" PRIu64 " of the point: %s", c, strerror(-r));
                done++;
                if (progress && !progress(done, to_read, userdata)) {
                        snprintf(why, why_size, "cancelled");
                        r = -ECANCELED;
                }
        }
        if (started) {
                pthread_mutex_lock(&rd.lock);
                rd.stop = true;
                pthread_cond_broadcast(&rd.cond);
                pthread_mutex_unlock(&rd.lock);
                pthread_join(reader, NULL);
        }
        free(rd.buf[0]);
        free(rd.buf[1]);
        free(x.need);
        return r < 0 ? r : 0;
}
