/* protect-qcow2: a qcow2 image (version 3, 64 KiB clusters, 16-bit
 * refcounts, no backing file) written as one forward stream of data and
 * holes, so a restore can send a point's disk straight into the volume on
 * the host (a sparse libvirt stream) and the VM keeps a qcow2 disk without a
 * conversion there. Every byte of the image is written once.
 *
 * The stream has to be forward-only, but which clusters hold data is known
 * only once every chunk has been read (a chunk that is not all zeros may
 * still hold zero clusters, which are left unallocated like qemu-img
 * convert leaves them). So the layout puts all metadata behind the data, at
 * places fixed from an upper bound of the data clusters:
 *
 *   cluster 0            the header
 *   1 .. 1+D             the data region: allocated guest clusters, densely,
 *                        in guest order; what the bound D over-estimated
 *                        stays a hole (refcount 0, free for QEMU to reuse)
 *   L1, refcount table, refcount blocks
 *   one L2 table per L1 entry (a hole, L1 entry 0, when it maps nothing)
 *
 * The header's offsets are known before the first data byte; the L1, L2
 * and refcount blocks are computed at the end from a bitmap of the guest
 * clusters written (one bit per 64 KiB). */
#include "protect-priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define L2_ENTRIES (QCOW2_CLUSTER / 8)           /* 8192 entries: 512 MiB of guest per L2 table */
#define RB_ENTRIES (QCOW2_CLUSTER / 2)           /* 32768 16-bit refcounts: 2 GiB of file per block */
#define QCOW_OFLAG_COPIED (UINT64_C(1) << 63)    /* refcount exactly 1 */

struct Qcow2Writer {
        Qcow2Sink sink;
        uint64_t size;          /* virtual size in bytes */
        uint64_t guest;         /* guest clusters */
        uint64_t data_max;      /* D: clusters reserved for data */
        uint64_t data_used;     /* clusters written so far */
        uint64_t next_guest;    /* the first guest cluster a write may name */
        uint64_t l1_size, l1_c, rt_c, rb_c;
        uint64_t l1_at, rt_at, rb_at, l2_at, end; /* in clusters */
        uint8_t *bitmap;        /* guest clusters written (atomic OR: ranges on several threads) */
        uint8_t *zero;          /* one cluster of zeros */
        bool finished;
        /* Slotted (qcow2_writer_slots): chunk c of chunk_c clusters that is
         * not all zeros owns slot[c] of the data region, clusters 1 +
         * slot[c] * chunk_c on, its clusters in guest order; QCOW2_NO_SLOT
         * for an all-zero chunk. NULL: dense. */
        const uint64_t *slot;
        uint64_t chunk_c, n_chunks;
};

static uint64_t div_up(uint64_t a, uint64_t b) {
        return (a + b - 1) / b;
}

static void put_be16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t) (v >> 8);
        p[1] = (uint8_t) v;
}

static void put_be32(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t) (v >> (24 - 8 * i));
}

static void put_be64(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t) (v >> (56 - 8 * i));
}

static bool bit(const Qcow2Writer *w, uint64_t g) {
        return w->bitmap[g / 8] & (1u << (g % 8));
}

uint64_t qcow2_clusters(uint64_t bytes) {
        return div_up(bytes, QCOW2_CLUSTER);
}

int qcow2_writer_new(uint64_t size, uint64_t data_max, const Qcow2Sink *sink, Qcow2Writer **ret) {
        if (!sink || !sink->data || !sink->hole || !ret || size == 0 || size % 512 || size > (UINT64_C(1) << 50))
                return -EINVAL;
        Qcow2Writer *w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        w->sink = *sink;
        w->size = size;
        w->guest = qcow2_clusters(size);
        w->data_max = data_max < w->guest ? data_max : w->guest;
        w->l1_size = div_up(w->guest, L2_ENTRIES);
        w->l1_c = div_up(w->l1_size * 8, QCOW2_CLUSTER);
        /* The refcount blocks must cover every cluster of the file, them
         * and the refcount table included: grow both until they do. */
        uint64_t fixed = 1 + w->data_max + w->l1_c + w->l1_size;
        w->rb_c = 1;
        w->rt_c = 1;
        for (;;) {
                uint64_t rb = div_up(fixed + w->rt_c + w->rb_c, RB_ENTRIES);
                uint64_t rt = div_up(rb * 8, QCOW2_CLUSTER);
                if (rb == w->rb_c && rt == w->rt_c)
                        break;
                w->rb_c = rb;
                w->rt_c = rt;
        }
        w->l1_at = 1 + w->data_max;
        w->rt_at = w->l1_at + w->l1_c;
        w->rb_at = w->rt_at + w->rt_c;
        w->l2_at = w->rb_at + w->rb_c;
        w->end = w->l2_at + w->l1_size;
        w->bitmap = calloc(div_up(w->guest, 8), 1);
        w->zero = calloc(1, QCOW2_CLUSTER);
        if (!w->bitmap || !w->zero) {
                qcow2_writer_free(w);
                return -ENOMEM;
        }
        *ret = w;
        return 0;
}

Qcow2Writer *qcow2_writer_free(Qcow2Writer *w) {
        if (w) {
                free(w->bitmap);
                free(w->zero);
                free(w);
        }
        return NULL;
}

uint64_t qcow2_writer_file_size(const Qcow2Writer *w) {
        return w->end * QCOW2_CLUSTER;
}

int qcow2_writer_header_to(const Qcow2Writer *w, const Qcow2Sink *sink) {
        uint8_t *h = calloc(1, QCOW2_CLUSTER);
        if (!h)
                return -ENOMEM;
        memcpy(h, "QFI\xfb", 4);
        put_be32(h + 4, 3);                                     /* version */
        put_be32(h + 20, 16);                                   /* cluster_bits */
        put_be64(h + 24, w->size);
        put_be32(h + 36, (uint32_t) w->l1_size);
        put_be64(h + 40, w->l1_at * QCOW2_CLUSTER);
        put_be64(h + 48, w->rt_at * QCOW2_CLUSTER);
        put_be32(h + 56, (uint32_t) w->rt_c);
        put_be32(h + 96, 4);                                    /* refcount_order: 16 bits */
        put_be32(h + 100, 104);                                 /* header_length */
        /* Bytes 104..: header extension type 0, the end marker. */
        int r = sink->data(sink->userdata, h, QCOW2_CLUSTER);
        free(h);
        return r;
}

int qcow2_writer_begin(Qcow2Writer *w) {
        return qcow2_writer_header_to(w, &w->sink);
}

int qcow2_writer_slots(Qcow2Writer *w, uint32_t chunk_bytes, const uint64_t *slot, uint64_t n_chunks) {
        if (!slot || chunk_bytes == 0 || chunk_bytes % QCOW2_CLUSTER || w->data_used || w->finished ||
            n_chunks != div_up(w->size, chunk_bytes))
                return -EINVAL;
        uint64_t cc = chunk_bytes / QCOW2_CLUSTER, need = 0, next = 0;
        for (uint64_t c = 0; c < n_chunks; c++) {
                if (slot[c] == QCOW2_NO_SLOT)
                        continue;
                if (slot[c] != next++)
                        return -EINVAL;
                need = slot[c] * cc + qcow2_clusters(w->size - c * chunk_bytes < chunk_bytes ? w->size - c * chunk_bytes
                                                                                              : chunk_bytes);
        }
        if (need > w->data_max)
                return -ENOSPC;
        w->slot = slot;
        w->chunk_c = cc;
        w->n_chunks = n_chunks;
        return 0;
}

uint64_t qcow2_writer_slot_at(const Qcow2Writer *w, uint64_t s) {
        return (1 + s * w->chunk_c) * QCOW2_CLUSTER;
}

uint64_t qcow2_writer_tables_at(const Qcow2Writer *w) {
        return w->l1_at * QCOW2_CLUSTER;
}

/* Guest cluster g's cluster in the file, slotted. */
static uint64_t slot_cluster(const Qcow2Writer *w, uint64_t g) {
        uint64_t c = g / w->chunk_c;
        return 1 + w->slot[c] * w->chunk_c + g % w->chunk_c;
}

int qcow2_writer_chunk(Qcow2Writer *w, const Qcow2Sink *sink, uint64_t c, const void *data, size_t len) {
        if (!w->slot || w->finished || c >= w->n_chunks)
                return -EINVAL;
        uint64_t off = c * w->chunk_c * QCOW2_CLUSTER;
        if (len != (w->size - off < w->chunk_c * QCOW2_CLUSTER ? w->size - off : w->chunk_c * QCOW2_CLUSTER))
                return -EINVAL;
        if (w->slot[c] == QCOW2_NO_SLOT)
                return chunk_is_zero(data, len) ? 0 : -EINVAL;
        const uint8_t *buf = data;
        size_t run = 0, run_len = 0;
        uint64_t hole = 0;
        for (size_t at = 0; at < len; at += QCOW2_CLUSTER) {
                size_t n = len - at < QCOW2_CLUSTER ? len - at : QCOW2_CLUSTER;
                uint64_t g = (off + at) / QCOW2_CLUSTER;
                int r = 0;
                if (chunk_is_zero(buf + at, n)) {
                        if (run_len)
                                r = sink->data(sink->userdata, buf + run, run_len);
                        run_len = 0;
                        hole += QCOW2_CLUSTER;
                        if (r < 0)
                                return r;
                        continue;
                }
                if (hole)
                        r = sink->hole(sink->userdata, hole);
                if (r < 0)
                        return r;
                hole = 0;
                if (!run_len)
                        run = at;
                run_len += n;
                __atomic_fetch_or(&w->bitmap[g / 8], (uint8_t) (1u << (g % 8)), __ATOMIC_RELAXED);
        }
        int r = run_len ? sink->data(sink->userdata, buf + run, run_len) : 0;
        /* The slot's tail: its zero clusters, a short last cluster's rest. */
        if (r >= 0 && run_len % QCOW2_CLUSTER)
                hole += QCOW2_CLUSTER - run_len % QCOW2_CLUSTER;
        if (r >= 0 && hole)
                r = sink->hole(sink->userdata, hole);
        return r;
}

/* Sends n whole clusters from buf, the last one possibly short (the disk's
 * end): padded with a hole. */
static int send_run(Qcow2Writer *w, const uint8_t *buf, size_t len) {
        int r = w->sink.data(w->sink.userdata, buf, len);
        if (r >= 0 && len % QCOW2_CLUSTER)
                r = w->sink.hole(w->sink.userdata, QCOW2_CLUSTER - len % QCOW2_CLUSTER);
        return r;
}

int qcow2_writer_data(Qcow2Writer *w, uint64_t offset, const void *data, size_t len) {
        if (w->finished || offset % QCOW2_CLUSTER || offset / QCOW2_CLUSTER < w->next_guest || offset > w->size ||
            len > w->size - offset || (len % QCOW2_CLUSTER && offset + len != w->size))
                return -EINVAL;
        const uint8_t *buf = data;
        size_t run = 0, run_len = 0;    /* the non-zero clusters not sent yet */
        for (size_t at = 0; at < len; at += QCOW2_CLUSTER) {
                size_t n = len - at < QCOW2_CLUSTER ? len - at : QCOW2_CLUSTER;
                uint64_t g = (offset + at) / QCOW2_CLUSTER;
                if (chunk_is_zero(buf + at, n)) {
                        if (run_len) {
                                int r = send_run(w, buf + run, run_len);
                                if (r < 0)
                                        return r;
                        }
                        run_len = 0;
                        continue;
                }
                if (w->data_used == w->data_max)
                        return -ENOSPC;
                if (!run_len)
                        run = at;
                run_len += n;
                w->bitmap[g / 8] |= (uint8_t) (1u << (g % 8));
                w->data_used++;
        }
        w->next_guest = div_up(offset + len, QCOW2_CLUSTER);
        return run_len ? send_run(w, buf + run, run_len) : 0;
}

static bool l2_used(const Qcow2Writer *w, uint64_t j) {
        uint64_t from = j * L2_ENTRIES, to = from + L2_ENTRIES < w->guest ? from + L2_ENTRIES : w->guest;
        for (uint64_t g = from; g < to; g++) {
                if (g % 8 == 0 && to - g >= 8 && !w->bitmap[g / 8]) {
                        g += 7;
                        continue;
                }
                if (bit(w, g))
                        return true;
        }
        return false;
}

static uint16_t refcount(const Qcow2Writer *w, const uint8_t *dref, uint64_t c) {
        if (dref && c >= 1 && c < 1 + w->data_max)
                return dref[(c - 1) / 8] & (1u << ((c - 1) % 8)) ? 1 : 0;
        if (c == 0 || (c >= 1 && c < 1 + w->data_used) || (c >= w->l1_at && c < w->l2_at))
                return 1;
        if (c >= w->l2_at && c < w->end)
                return l2_used(w, c - w->l2_at) ? 1 : 0;
        return 0;
}

/* Sends n clusters of table (n * QCOW2_CLUSTER bytes), then clears it. */
static int send_table(const Qcow2Sink *sink, uint8_t *table, uint64_t n) {
        int r = sink->data(sink->userdata, table, n * QCOW2_CLUSTER);
        memset(table, 0, n * QCOW2_CLUSTER);
        return r;
}

int qcow2_writer_finish(Qcow2Writer *w) {
        if (w->finished || w->slot)
                return -EINVAL;
        int r = 0;
        if (w->data_max > w->data_used)
                r = w->sink.hole(w->sink.userdata, (w->data_max - w->data_used) * QCOW2_CLUSTER);
        return r < 0 ? r : qcow2_writer_tables_to(w, &w->sink);
}

int qcow2_writer_tables_to(Qcow2Writer *w, const Qcow2Sink *sink) {
        if (w->finished)
                return -EINVAL;
        w->finished = true;
        int r = 0;
        /* Slotted: which clusters of the data region hold data. */
        uint8_t *dref = NULL;
        if (w->slot) {
                dref = calloc(div_up(w->data_max ? w->data_max : 1, 8), 1);
                if (!dref)
                        return -ENOMEM;
                for (uint64_t g = 0; g < w->guest; g++)
                        if (bit(w, g)) {
                                uint64_t d = slot_cluster(w, g) - 1;
                                dref[d / 8] |= (uint8_t) (1u << (d % 8));
                        }
        }
        uint64_t most = w->l1_c > w->rt_c ? w->l1_c : w->rt_c;
        uint8_t *t = calloc(most, QCOW2_CLUSTER);
        if (!t) {
                free(dref);
                return -ENOMEM;
        }
        bool *used = calloc(w->l1_size ? w->l1_size : 1, sizeof *used);
        if (!used) {
                free(t);
                free(dref);
                return -ENOMEM;
        }
        /* L1: the L2 tables that map something. */
        for (uint64_t j = 0; j < w->l1_size; j++)
                if ((used[j] = l2_used(w, j)))
                        put_be64(t + 8 * j, ((w->l2_at + j) * QCOW2_CLUSTER) | QCOW_OFLAG_COPIED);
        if (r >= 0)
                r = send_table(sink, t, w->l1_c);
        /* The refcount table: every refcount block. */
        for (uint64_t b = 0; b < w->rb_c; b++)
                put_be64(t + 8 * b, (w->rb_at + b) * QCOW2_CLUSTER);
        if (r >= 0)
                r = send_table(sink, t, w->rt_c);
        for (uint64_t b = 0; r >= 0 && b < w->rb_c; b++) {
                for (uint64_t i = 0; i < RB_ENTRIES; i++)
                        put_be16(t + 2 * i, refcount(w, dref, b * RB_ENTRIES + i));
                r = send_table(sink, t, 1);
        }
        /* The L2 tables: data clusters were written densely in guest order,
         * so guest cluster g lives at 1 + (clusters written before g). */
        uint64_t rank = 0;
        for (uint64_t j = 0; r >= 0 && j < w->l1_size; j++) {
                if (!used[j]) {
                        r = sink->hole(sink->userdata, QCOW2_CLUSTER);
                        continue;
                }
                for (uint64_t i = 0, g = j * L2_ENTRIES; i < L2_ENTRIES && g < w->guest; i++, g++)
                        if (bit(w, g))
                                put_be64(t + 8 * i, ((w->slot ? slot_cluster(w, g) : 1 + rank++) * QCOW2_CLUSTER) |
                                                    QCOW_OFLAG_COPIED);
                r = send_table(sink, t, 1);
        }
        free(used);
        free(t);
        free(dref);
        return r < 0 ? r : 0;
}
