/* protect-restore: a recovery point back into a VM, as the job vm.restore,
 * in phases:
 *
 *   prepare   the datastore and the point (read from its manifest, never
 *             from the original VM or host), the target host and its pool
 *   disks     each disk of the point written from its chunks once, straight
 *             into the qcow2 volume the VM gets: armadad makes the qcow2
 *             image as it reads the chunks and sends it over one sparse
 *             libvirt stream (qcow2, so the VM can be snapshotted and backed
 *             up incrementally again; no local file, no copy on the host)
 *   define    new VM: the point's domain XML with the new name, UUID and
 *             disks, no MAC (libvirt draws new ones), marked as Armada's;
 *             in place: the VM's definition with its disks pointed at the
 *             new volumes, its old Armada-made volumes removed after
 *
 * A failure removes what the job made (volumes, the domain, a new VM's row)
 * and leaves an in-place VM as it was. */
#include "protect-priv.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv/hv-backup.h"
#include "hv/hv-migrate.h"
#include "hv/hv-volume.h"
#include "placement/placement.h"
#include "store/store-library.h"
#include "store/store-protect.h"
#include "util/util.h"

typedef struct Restore {
        JobCtx *ctx;
        Inventory *inv;
        bool in_place;
        StoreVm vm;              /* the VM restored into (new or existing) */
        StoreHost host;
        InventoryLink *link;
        ChunkStore *store;
        Point *point;
        char ds_name[128];
        const char *point_id;
        const char *src_uuid;
        const char *disk;        /* only this disk of the point; NULL: all */
        char *made[HV_BACKUP_MAX_DISKS];
        const char *targets[HV_BACKUP_MAX_DISKS];
        bool direct[HV_BACKUP_MAX_DISKS]; /* written into the volume's file here, not over the stream */
        unsigned streams[HV_BACKUP_MAX_DISKS]; /* upload streams used (0: direct) */
        size_t n_made;
        bool defined;
        uint64_t bytes;
} Restore;

static void restore_event(Restore *x, const char *severity, const char *kind, const char *msg) {
        (void) store_event_add(x->ctx->st, severity, kind, "vm", x->vm.id, x->vm.name, x->vm.owner_id, msg);
}

static int restore_prepare(Restore *x) {
        JobCtx *ctx = x->ctx;
        char why[512];
        x->point_id = json_string_value(json_object_get(ctx->params, "point_id"));
        x->src_uuid = json_string_value(json_object_get(ctx->params, "source_uuid"));
        x->in_place = json_is_true(json_object_get(ctx->params, "in_place"));
        x->disk = json_string_value(json_object_get(ctx->params, "disk"));
        const char *ds = json_string_value(json_object_get(ctx->params, "datastore"));
        int r = store_vm_get(ctx->st, ctx->job->target_id, &x->vm);
        if (r < 0)
                return job_fail(ctx, r, "VM '%s' no longer exists.", ctx->job->target_name);
        if (!x->point_id || !x->src_uuid || !ds)
                return job_fail(ctx, -EINVAL, "The restore job's parameters are incomplete.");
        _cleanup_free_ char *path = NULL;
        if ((r = protect_datastore_path(ctx->st, ds, x->ds_name, sizeof x->ds_name, &path)) < 0)
                return job_fail(ctx, r, "Datastore '%s' no longer exists.", ds);
        if ((r = chunkstore_open(path, false, &x->store)) < 0)
                return job_fail(ctx, r, "Cannot open datastore '%s': %s.", ds, strerror(-r));
        if ((r = point_open(x->store, x->src_uuid, x->point_id, &x->point)) < 0)
                return job_fail(ctx, r, "Cannot read point %s from datastore '%s': %s.", x->point_id, ds, strerror(-r));
        if (store_host_get(ctx->st, x->vm.host_id, &x->host) < 0)
                return job_fail(ctx, -ENXIO, "The host of VM '%s' no longer exists.", x->vm.name);
        if (inventory_link_acquire(x->inv, &x->host, &x->link, why, sizeof why) < 0)
                return job_fail(ctx, -EHOSTUNREACH, "Cannot reach host '%s': %s", x->host.name, why);
        if (hv_pool_ensure(inventory_link_conn(x->link), x->host.pool,
                           x->host.pool_path[0] ? x->host.pool_path : INVENTORY_POOL_PATH_DEFAULT, NULL) < 0)
                return job_fail(ctx, -EIO, "Cannot prepare storage pool '%s' on host '%s': %s", x->host.pool, x->host.name,
                                hv_last_error());
        if (x->in_place) {
                HvState st;
                if ((r = hv_domain_state(inventory_link_conn(x->link), x->vm.uuid, &st)) < 0)
                        return job_fail(ctx, r, "Cannot read the state of VM '%s': %s", x->vm.name, hv_last_error());
                if (st != HV_STATE_SHUTOFF)
                        return job_fail(ctx, -EBUSY, "VM '%s' is %s: a restore in place needs it stopped.", x->vm.name,
                                        hv_state_name(st));
        }
        job_progress(ctx, 5, "restoring point %s of '%s' on host '%s'", x->point_id,
                     json_string_value(point_meta(x->point, "vm_name")), x->host.name);
        return 0;
}

typedef struct {
        Restore *x;
        unsigned disk, n;
} RestoreProgress;

static void restore_progress(uint64_t done, uint64_t total, void *userdata) {
        RestoreProgress *p = userdata;
        int pct = 5 + (int) (70 * (p->disk + (total ? (double) done / (double) total : 1.0)) / (p->n ? p->n : 1));
        job_progress(p->x->ctx, pct, "disk %u/%u: %" PRIu64 "/%" PRIu64 " MiB written", p->disk + 1, p->n, done >> 20, total >> 20);
}

/* Phase 2: one disk of the point, straight from its chunks into a new
 * qcow2 volume on the host: armadad writes the qcow2 image itself
 * (protect-qcow2.c, its slotted layout), into the volume's file when it
 * reaches it, else over libvirt's upload streams, so each byte is written
 * once and all-zero chunks and clusters are neither sent nor stored.
 *
 * The image is cut into ranges that are written at once (issue 11: one
 * stream is limited by libvirtd's side): each range is the slots of a run
 * of chunks (about the same amount of data in each; the first range opens
 * with the header), and the tables come last, once every chunk is in
 * (hv_volume_upload_ranges: one stream for a small disk, else up to 4,
 * each on a connection of its own). In each range a small pool of threads
 * reads, decompresses and checks its chunks ahead of the writer
 * (protect-pipe.c: a bounded ring, taken in order). */

#define FEED_READERS_MAX 4u
#define FEED_RING (16u << 20)   /* bytes of decoded chunks ahead of the writers, all ranges */
#define FEED_BATCH (8u << 20)   /* the most one take hands over */
#define FEED_TICK_MS 250        /* progress and the cancel check, at most this often */

/* Readers: one per CPU, at least 2 (a chunk file read waits on the disk
 * while another decodes), at most FEED_READERS_MAX (the writer is then the
 * limit). */
static unsigned feed_readers(void) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n < 2 ? 2 : n > (long) FEED_READERS_MAX ? FEED_READERS_MAX : (unsigned) n;
}

/* One disk's image: what its ranges share. */
typedef struct DiskFeed {
        Restore *x;
        unsigned disk;
        RestoreProgress *p;
        Qcow2Writer *w;
        uint64_t size, n_chunks;
        uint32_t chunk;
        uint64_t *slot;         /* per chunk (qcow2_writer_slots) */
        HvRange *ranges;        /* the data ranges, then the tables */
        uint64_t *first;        /* data range i: chunks first[i] .. first[i + 1] */
        size_t n_data;
        unsigned n_readers;     /* per range */
        unsigned slots;         /* ring slots per range */
        /* The job's context (its database, its error) is used by one
         * thread at a time: progress, the cancel check and job_fail. */
        pthread_mutex_t lock;
        int64_t tick;
        bool reported_all;      /* the last progress step said every byte */
        atomic_uint_fast64_t done;      /* guest bytes through */
        /* Why the feed stopped, when it was not the upload: the first
         * job_fail (a chunk that cannot be read, a cancel). */
        int failed;
} DiskFeed;

/* One range of it, on the thread hv runs it on. */
typedef struct Feed {
        DiskFeed *d;
        uint64_t from, to;      /* its chunks */
        HvUpload *u;
        ChunkReader *readers[FEED_READERS_MAX];
} Feed;

static bool chunk_zero(const DiskFeed *d, uint64_t c, ChunkDigest *dg) {
        bool zero = true;
        return point_chunk(d->x->point, d->disk, c, dg, &zero) < 0 || zero;
}

/* RestorePipeDecode: the range's chunk i, read and checked (nothing for a
 * zero chunk). */
static int feed_decode(void *userdata, unsigned worker, uint64_t i, uint8_t *buf, size_t cap, size_t *ret_len) {
        Feed *f = userdata;
        ChunkDigest dg;
        if (chunk_zero(f->d, f->from + i, &dg)) {
                *ret_len = 0;
                return 0;
        }
        return chunkstore_get_with(f->d->x->store, f->readers[worker], &dg, buf, cap, ret_len);
}

static int feed_sink_data(void *userdata, const void *buf, size_t len) {
        return hv_upload_data(((Feed *) userdata)->u, buf, len);
}

static int feed_sink_hole(void *userdata, uint64_t len) {
        return hv_upload_hole(((Feed *) userdata)->u, len);
}

/* job_fail once for the disk (the first failure of any range); code. */
static int feed_fail(DiskFeed *d, int code, const char *fmt, ...) _printf_(3, 4);
static int feed_fail(DiskFeed *d, int code, const char *fmt, ...) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        pthread_mutex_lock(&d->lock);
        if (d->failed == 0)
                d->failed = job_fail(d->x->ctx, code, "%s", msg);
        pthread_mutex_unlock(&d->lock);
        return code;
}

static int feed_chunk_failed(DiskFeed *d, uint64_t c, int r) {
        ChunkDigest dg = { 0 };
        char hex[65];
        (void) chunk_zero(d, c, &dg);
        chunk_digest_hex(&dg, hex);
        return feed_fail(d, r, "Cannot read disk '%s' of point %s: chunk %" PRIu64 " (%.12s...): %s.",
                         point_disk_target(d->x->point, d->disk), d->x->point_id, c, hex, strerror(-r));
}

/* One batch of the range's chunks into the writer, each into its slot. */
static int feed_batch(Feed *f, const RestoreBatch *b, const Qcow2Sink *sink) {
        DiskFeed *d = f->d;
        assert(b->stride == d->chunk);
        for (size_t k = 0; k < b->n; k++) {
                uint64_t c = f->from + b->first + k, off = c * d->chunk;
                ChunkDigest dg;
                if (chunk_zero(d, c, &dg))
                        continue;
                if (b->len[k] != (d->size - off < d->chunk ? d->size - off : d->chunk))
                        return feed_chunk_failed(d, c, -EBADMSG);
                int r = qcow2_writer_chunk(d->w, sink, c, b->buf + k * d->chunk, b->len[k]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Progress and the cancel check, every FEED_TICK_MS at most, from
 * whichever range comes by (each is a database transaction: per chunk
 * they cost more than the chunk). */
static int feed_tick(DiskFeed *d, uint64_t add) {
        uint64_t done = atomic_fetch_add(&d->done, add) + add;
        if (pthread_mutex_trylock(&d->lock) != 0)
                return 0;
        int r = 0;
        if (mono_ms() - d->tick >= FEED_TICK_MS || done >= d->size) {
                d->tick = mono_ms();
                d->reported_all = done >= d->size;
                restore_progress(done < d->size ? done : d->size, d->size, d->p);
                if (job_cancel_requested(d->x->ctx)) {
                        if (d->failed == 0)
                                d->failed = job_fail(d->x->ctx, -ECANCELED, "Cancelled; nothing of the restore was left behind.");
                        r = -ECANCELED;
                }
        }
        pthread_mutex_unlock(&d->lock);
        return r;
}

/* The range's chunks, in order, into the writer. */
static int feed_chunks(Feed *f, RestorePipe *pipe, const Qcow2Sink *sink) {
        DiskFeed *d = f->d;
        for (;;) {
                RestoreBatch b;
                int r = restore_pipe_take(pipe, FEED_BATCH, &b);
                if (r < 0)
                        return feed_chunk_failed(d, f->from + b.first, r);
                if (b.n == 0)
                        return 0;
                r = feed_batch(f, &b, sink);
                restore_pipe_release(pipe);
                if (r < 0)
                        return r;
                uint64_t end = (f->from + b.first + b.n) * d->chunk, at = (f->from + b.first) * d->chunk;
                if ((r = feed_tick(d, (end < d->size ? end : d->size) - at)) < 0)
                        return r;
        }
}

/* HvRangeSource: data range i (the header first in range 0), or the
 * tables (the last range, once the others are in). */
static int feed_range(HvUpload *u, size_t i, void *userdata) {
        DiskFeed *d = userdata;
        Feed f = { .d = d, .u = u };
        Qcow2Sink sink = { .data = feed_sink_data, .hole = feed_sink_hole, .userdata = &f };
        if (i == d->n_data)
                return qcow2_writer_tables_to(d->w, &sink);
        int r = i == 0 ? qcow2_writer_header_to(d->w, &sink) : 0;
        f.from = d->first[i];
        f.to = d->first[i + 1];
        for (unsigned k = 0; k < d->n_readers && r >= 0; k++)
                r = chunk_reader_new(&f.readers[k]);
        RestorePipe *pipe = NULL;
        if (r >= 0)
                r = restore_pipe_start(f.to - f.from, d->chunk, d->n_readers, d->slots, feed_decode, &f, &pipe);
        if (r >= 0)
                r = feed_chunks(&f, pipe, &sink);
        pipe = restore_pipe_free(pipe);
        for (unsigned k = 0; k < d->n_readers; k++)
                f.readers[k] = chunk_reader_free(f.readers[k]);
        return r;
}

/* The disk's layout: a slot per chunk that is not all zeros, the data
 * ranges (n_data of about equal data; fewer when there are fewer such
 * chunks) and the tables. 0, or -ENOMEM, or qcow2_writer_slots' error. */
static int feed_plan(DiskFeed *d, unsigned n_data) {
        d->n_chunks = point_disk_chunks(d->x->point, d->disk);
        d->slot = calloc(d->n_chunks ? d->n_chunks : 1, sizeof *d->slot);
        d->first = calloc((size_t) n_data + 1, sizeof *d->first);
        d->ranges = calloc((size_t) n_data + 1, sizeof *d->ranges);
        if (!d->slot || !d->first || !d->ranges)
                return -ENOMEM;
        uint64_t used = 0;
        for (uint64_t c = 0; c < d->n_chunks; c++) {
                ChunkDigest dg;
                d->slot[c] = chunk_zero(d, c, &dg) ? QCOW2_NO_SLOT : used++;
        }
        int r = qcow2_writer_slots(d->w, d->chunk, d->slot, d->n_chunks);
        if (r < 0)
                return r;
        if (n_data > used)
                n_data = used ? (unsigned) used : 1;
        /* Range i begins at the chunk of slot i * used / n_data (range 0 at
         * chunk 0, with the header). */
        size_t k = 1;
        for (uint64_t c = 0; c < d->n_chunks && k < n_data; c++)
                if (d->slot[c] != QCOW2_NO_SLOT && d->slot[c] == k * used / n_data)
                        d->first[k++] = c;
        d->n_data = n_data;
        d->first[n_data] = d->n_chunks;
        for (size_t i = 0; i < n_data; i++) {
                uint64_t from = i == 0 ? 0 : qcow2_writer_slot_at(d->w, i * used / n_data);
                uint64_t to = i + 1 < n_data ? qcow2_writer_slot_at(d->w, (i + 1) * used / n_data) : qcow2_writer_tables_at(d->w);
                d->ranges[i] = (HvRange) { .off = from, .len = to - from };
        }
        d->ranges[n_data] = (HvRange) { .off = qcow2_writer_tables_at(d->w),
                                        .len = qcow2_writer_file_size(d->w) - qcow2_writer_tables_at(d->w) };
        return 0;
}

/* The upper bound of the disk's data clusters: those of its chunks that
 * are not all zeros. */
static uint64_t disk_data_clusters(const Restore *x, unsigned k) {
        uint64_t size = point_disk_size(x->point, k), total = 0;
        ChunkSpan sp;
        for (uint64_t off = 0; off < size && chunkstore_span(x->store, off, size, &sp) == 0; off += sp.len) {
                ChunkDigest d;
                bool zero = true;
                if (point_chunk(x->point, k, sp.index, &d, &zero) == 0 && !zero)
                        total += qcow2_clusters(sp.len);
        }
        return total;
}

static int restore_disk(Restore *x, unsigned k) {
        JobCtx *ctx = x->ctx;
        HvConn *c = inventory_link_conn(x->link);
        const char *target = point_disk_target(x->point, k);
        RestoreProgress p = { .x = x, .disk = k, .n = point_disk_count(x->point) };
        DiskFeed d = { .x = x, .disk = k, .p = &p, .size = point_disk_size(x->point, k),
                       .chunk = chunkstore_chunk_size(x->store), .lock = PTHREAD_MUTEX_INITIALIZER, .tick = mono_ms() };
        Qcow2Sink none = { .data = feed_sink_data, .hole = feed_sink_hole };
        int r = qcow2_writer_new(d.size, disk_data_clusters(x, k), &none, &d.w);
        unsigned streams = 1;
        if (r >= 0) {
                streams = hv_upload_streams(qcow2_writer_file_size(d.w));
                r = feed_plan(&d, streams);
        }
        if (r < 0) {
                qcow2_writer_free(d.w);
                free(d.slot);
                free(d.first);
                free(d.ranges);
                return job_fail(ctx, r, "Cannot restore disk '%s' of point %s: %s.", target, x->point_id, strerror(-r));
        }
        unsigned at_once = streams < d.n_data ? streams : (unsigned) d.n_data;
        d.n_readers = at_once > 1 ? 2 : feed_readers();
        d.slots = FEED_RING / at_once / d.chunk > 2 * d.n_readers ? FEED_RING / at_once / d.chunk : 2 * d.n_readers;
        _cleanup_free_ char *vol_name = xasprintf("%s-%s-%s.qcow2", x->vm.name, target, x->point_id);
        char *path = NULL;
        unsigned flags = (streq(x->host.domain_type, "test") ? 0 : HV_UPLOAD_CONTENT) |
                         (protect_settings()->restore_direct ? HV_UPLOAD_DIRECT : 0);
        bool direct = false;
        unsigned used = 0;
        HvRanges plan = { .ranges = d.ranges, .n = d.n_data + 1, .n_after = 1, .source = feed_range, .userdata = &d,
                          .streams = at_once };
        r = hv_volume_upload_ranges(c, x->host.pool, vol_name, qcow2_writer_file_size(d.w), flags, &plan, &path, &direct,
                                    &used);
        if (r >= 0 && (flags & HV_UPLOAD_CONTENT) && !d.reported_all)
                restore_progress(d.size, d.size, &p);       /* another range held the lock at the end */
        qcow2_writer_free(d.w);
        free(d.slot);
        free(d.first);
        free(d.ranges);
        pthread_mutex_destroy(&d.lock);
        if (d.failed < 0)
                return d.failed;        /* job_fail() said why */
        if (r < 0)
                return job_fail(ctx, r, "Cannot upload disk '%s' to host '%s': %s", target, x->host.name,
                                r == -ENOMEM ? strerror(ENOMEM) : hv_last_error());
        x->bytes += point_disk_size(x->point, k);
        x->made[x->n_made] = path;
        x->targets[x->n_made] = target;
        x->direct[x->n_made] = direct;
        x->streams[x->n_made] = used;
        x->n_made++;
        StoreDisk sd = { .size_bytes = point_disk_size(x->point, k), .owned = true };
        snprintf(sd.target, sizeof sd.target, "%s", target);
        snprintf(sd.path, sizeof sd.path, "%s", path);
        if (!x->in_place)
                (void) store_vm_disk_add(ctx->st, x->vm.id, &sd);
        return 0;
}

/* Phase 3: the domain. */
static int restore_define(Restore *x) {
        JobCtx *ctx = x->ctx;
        HvConn *c = inventory_link_conn(x->link);
        const char *xml = json_string_value(point_meta(x->point, "domain_xml"));
        _cleanup_free_ char *cur = NULL;
        if (x->in_place) {
                /* The VM keeps its own definition (name, UUID, MACs, the
                 * disks not restored); only the restored disks change. */
                int r = hv_domain_xml_public(c, x->vm.uuid, &cur);
                if (r < 0)
                        return job_fail(ctx, r, "Cannot read the definition of VM '%s': %s", x->vm.name, hv_last_error());
                xml = cur;
        }
        if (!xml)
                return job_fail(ctx, -EBADMSG, "Point %s carries no domain definition.", x->point_id);
        _cleanup_free_ char *out = NULL;
        int r = x->in_place ? hv_restore_disks_xml(xml, x->targets, (const char *const *) x->made, x->n_made, &out)
                            : hv_restore_xml(xml, x->vm.name, x->vm.uuid, x->targets, (const char *const *) x->made, x->n_made, &out);
        if (r < 0)
                return job_fail(ctx, r, "Cannot rewrite the definition of point %s: %s.", x->point_id, hv_last_error());
        inventory_link_lock_ops(x->link);
        if (x->in_place) {
                /* Checkpoints describe the old disks' bitmaps: forget them,
                 * metadata only (the old disks go; the next backup is full,
                 * and says why). */
                _cleanup_free_ char *list = NULL;
                if (hv_checkpoint_list(c, x->vm.uuid, &list) == 0)
                        for (char *save = NULL, *t = strtok_r(list, "\n", &save); t; t = strtok_r(NULL, "\n", &save))
                        if (hv_checkpoint_forget(c, x->vm.uuid, t) < 0)
                                log_warn("VM '%s': cannot forget checkpoint '%s': %s", x->vm.name, t, hv_last_error());
        }
        r = hv_domain_define_xml(c, out);
        if (r == 0 && (r = hv_domain_mark(c, x->vm.uuid, inventory_installation_id(x->inv), x->vm.id)) < 0)
                log_warn("VM '%s': cannot mark the restored domain: %s", x->vm.name, hv_last_error());
        inventory_link_unlock_ops(x->link);
        if (r < 0)
                return job_fail(ctx, r, "Cannot define VM '%s' on host '%s': %s", x->vm.name, x->host.name, hv_last_error());
        x->defined = !x->in_place;
        return 0;
}

/* In place, after the define: the VM's old Armada-made disks go, the new
 * ones are recorded. */
static void restore_swap_disks(Restore *x) {
        JobCtx *ctx = x->ctx;
        StoreDisk *old = NULL;
        int n = store_vm_disks(ctx->st, x->vm.id, &old);
        for (int i = 0; i < n; i++) {
                bool replaced = false;
                for (size_t k = 0; k < x->n_made; k++)
                        replaced |= streq(old[i].target, x->targets[k]);
                if (replaced && old[i].owned && hv_volume_delete(inventory_link_conn(x->link), old[i].path) < 0)
                        log_warn("VM '%s': cannot remove the disk '%s' a restore replaced: %s", x->vm.name, old[i].path,
                                 hv_last_error());
        }
        (void) store_vm_disks_clear(ctx->st, x->vm.id);
        for (int i = 0; i < n; i++) {
                bool replaced = false;
                for (size_t k = 0; k < x->n_made; k++)
                        replaced |= streq(old[i].target, x->targets[k]);
                if (!replaced)
                        (void) store_vm_disk_add(ctx->st, x->vm.id, &old[i]);
        }
        for (size_t k = 0; k < x->n_made; k++) {
                StoreDisk sd = { .owned = true };
                snprintf(sd.target, sizeof sd.target, "%s", x->targets[k]);
                snprintf(sd.path, sizeof sd.path, "%s", x->made[k]);
                for (unsigned j = 0; j < point_disk_count(x->point); j++)
                        if (streq(point_disk_target(x->point, j), x->targets[k]))
                                sd.size_bytes = point_disk_size(x->point, j);
                (void) store_vm_disk_add(ctx->st, x->vm.id, &sd);
        }
        free(old);
}

static int restore_undo(Restore *x, int r) {
        JobCtx *ctx = x->ctx;
        if (x->link) {
                HvConn *c = inventory_link_conn(x->link);
                if (x->defined) {
                        inventory_link_lock_ops(x->link);
                        (void) hv_domain_undefine(c, x->vm.uuid);
                        inventory_link_unlock_ops(x->link);
                }
                for (size_t i = x->n_made; i-- > 0;)
                        (void) hv_volume_delete(c, x->made[i]);
        }
        if (x->vm.id) {
                _cleanup_free_ char *msg = xasprintf("Point %s was not restored into VM '%s': %s", x->point_id ? x->point_id : "?",
                                                     x->vm.name, ctx->error);
                restore_event(x, "error", "vm.restore-failed", msg);
                if (!x->in_place)
                        (void) store_vm_delete(ctx->st, x->vm.id);
        }
        return r < 0 ? r : -EIO;
}

static int job_vm_restore(JobCtx *ctx, void *userdata) {
        Restore x = { .ctx = ctx, .inv = userdata };
        int r = restore_prepare(&x);
        for (unsigned k = 0; r >= 0 && k < point_disk_count(x.point); k++)
                if (!x.disk || streq(x.disk, point_disk_target(x.point, k)))
                        r = restore_disk(&x, k);
        if (r >= 0 && x.n_made == 0)
                r = job_fail(ctx, -ENOENT, "Point %s has no disk '%s'.", x.point_id, x.disk ? x.disk : "");
        if (r >= 0 && job_cancel_requested(ctx))
                r = job_fail(ctx, -ECANCELED, "Cancelled; nothing of the restore was left behind.");
        if (r >= 0)
                r = restore_define(&x);
        if (r >= 0) {
                if (x.in_place)
                        restore_swap_disks(&x);
                else
                        (void) store_vm_set_state(ctx->st, x.vm.id, "stopped");
                _cleanup_free_ char *msg = xasprintf("Point %s of VM '%s' was restored %s on host '%s'.", x.point_id,
                                                     json_string_value(point_meta(x.point, "vm_name")),
                                                     x.in_place ? "in place" : "as a new VM", x.host.name);
                restore_event(&x, "info", "vm.restored", msg);
                json_t *disks = json_array();
                for (size_t i = 0; i < x.n_made; i++)
                        json_array_append_new(disks, json_pack("{s:s, s:s, s:s, s:i}", "target", x.targets[i], "path", x.made[i],
                                                               "written", x.direct[i] ? "direct" : "stream",
                                                               "streams", (int) x.streams[i]));
                ctx->result = json_pack("{s:I, s:s, s:s, s:s, s:b, s:I, s:o}", "vm_id", (json_int_t) x.vm.id, "vm", x.vm.name,
                                        "host", x.host.name, "point_id", x.point_id, "in_place", x.in_place, "bytes",
                                        (json_int_t) x.bytes, "disks", disks);
                job_progress(ctx, 100, "restored");
        } else
                r = restore_undo(&x, r);
        for (size_t i = 0; i < x.n_made; i++)
                free(x.made[i]);
        point_free(x.point);
        chunkstore_free(x.store);
        inventory_link_unref(x.link);
        return r;
}

static void abandon_vm_restore(Store *st, const StoreJob *job, void *userdata) {
        /* A new VM's row that never got its domain: forget it (its
         * volumes, if any were made, stay in the pool: named after it). */
        StoreVm vm;
        json_t *p = NULL;
        (void) userdata;
        if (store_vm_get(st, job->target_id, &vm) == 0 && streq(vm.state, "creating"))
                (void) store_vm_delete(st, vm.id);
        json_decref(p);
}

void protect_restore_register_jobs(Jobs *jobs, Inventory *inv) {
        jobs_register(jobs, "vm.restore", job_vm_restore, abandon_vm_restore, inv, false);
}

/* ---- the operation ---- */

static json_t *job_json(Store *st, int64_t id) {
        json_t *j = NULL;
        return store_job_get_json(st, id, &j) == 0 ? j : json_null();
}

int protect_point_find(Store *st, const OpCaller *c, const ProtectRestoreSpec *spec, const char *uuid, json_t **ret,
                       OpError *err) {
        _cleanup_json_ json_t *all = NULL;
        int r = store_backup_point_list(st, uuid, spec->datastore, &all);
        if (r < 0)
                return op_fail_store(err, r, "the recovery points");
        json_t *hit = NULL, *p;
        size_t i, n = 0;
        json_array_foreach(all, i, p) {
                if (!protect_point_visible(st, c, p))
                        continue;
                if (streq(spec->point, "latest") ? !hit : streq(jget_str(p, "point_id"), spec->point)) {
                        if (!hit)
                                hit = p;
                        n++;
                }
        }
        if (!hit)
                return op_fail(err, 404, "not_found", "point", "VM '%.200s' has no recovery point '%.40s'%s%.200s%s.", spec->vm,
                               spec->point, spec->datastore ? " in datastore '" : "", spec->datastore ? spec->datastore : "",
                               spec->datastore ? "'" : "");
        if (n > 1 && !streq(spec->point, "latest"))
                return op_fail(err, 422, "invalid_argument", "datastore", "Point '%s' of VM '%.200s' is in several datastores: "
                               "name one.", spec->point, spec->vm);
        *ret = json_incref(hit);
        return 0;
}

/* Whether point pt (its index row) holds disk target: 0, or 422 naming
 * field "disk" and the disks it has. */
static int point_has_disk(Store *st, const json_t *pt, const char *target, OpError *err) {
        char ds_name[128];
        _cleanup_free_ char *path = NULL;
        ChunkStore *s = NULL;
        Point *p = NULL;
        if (protect_datastore_path(st, jget_str(pt, "datastore"), ds_name, sizeof ds_name, &path) < 0 ||
            chunkstore_open(path, false, &s) < 0 || point_open(s, jget_str(pt, "vm_uuid"), jget_str(pt, "point_id"), &p) < 0) {
                chunkstore_free(s);
                return op_fail(err, 409, "conflict", "point", "Point '%s' cannot be read from datastore '%s'.",
                               jget_str(pt, "point_id"), jget_str(pt, "datastore"));
        }
        char have[256] = "";
        bool found = false;
        for (unsigned k = 0; k < point_disk_count(p); k++) {
                found |= streq(point_disk_target(p, k), target);
                size_t l = strlen(have);
                snprintf(have + l, sizeof have - l, "%s'%s'", l ? ", " : "", point_disk_target(p, k));
        }
        point_free(p);
        chunkstore_free(s);
        if (!found)
                return op_fail(err, 422, "invalid_argument", "disk", "Point '%s' has no disk '%.32s'; it has %s.",
                               jget_str(pt, "point_id"), target, have);
        return 0;
}

/* The new VM's row: name free, host named or placed. */
static int new_vm_row(Store *st, const OpCaller *c, const ProtectRestoreSpec *spec, const json_t *pt, StoreVm *vm, OpError *err) {
        int64_t id = 0;
        int r = store_vm_find(st, spec->as_name, &id);
        if (r == 0) {
                _cleanup_json_ json_t *v = NULL;
                if (store_vm_get_json(st, id, &v) == 0 && op_allowed(st, c, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")))
                        return op_fail(err, 409, "conflict", "as", "VM name '%s' is taken by VM %lld.", spec->as_name, (long long) id);
                return op_fail(err, 409, "conflict", "as", "VM name '%s' cannot be used; choose another.", spec->as_name);
        }
        /* The size of the VM, from the point's manifest (read from the datastore). */
        char ds_name[128];
        _cleanup_free_ char *path = NULL;
        ChunkStore *s = NULL;
        Point *p = NULL;
        HvDomainInfo info;
        if (protect_datastore_path(st, jget_str(pt, "datastore"), ds_name, sizeof ds_name, &path) < 0 ||
            chunkstore_open(path, false, &s) < 0 || point_open(s, jget_str(pt, "vm_uuid"), jget_str(pt, "point_id"), &p) < 0 ||
            hv_domain_xml_parse(json_string_value(point_meta(p, "domain_xml")), &info) < 0) {
                point_free(p);
                chunkstore_free(s);
                return op_fail(err, 409, "conflict", "point", "Point '%s' cannot be read from datastore '%s'.",
                               jget_str(pt, "point_id"), jget_str(pt, "datastore"));
        }
        uint64_t disk = 0;
        for (unsigned k = 0; k < point_disk_count(p); k++)
                disk += point_disk_size(p, k);
        point_free(p);
        chunkstore_free(s);
        *vm = (StoreVm) { .owner_id = c->user_id, .cpus = info.vcpus ? info.vcpus : 1, .memory_mib = info.memory_mib };
        snprintf(vm->name, sizeof vm->name, "%s", spec->as_name);
        snprintf(vm->domain_type, sizeof vm->domain_type, "%s", info.domain_type);
        snprintf(vm->state, sizeof vm->state, "creating");
        snprintf(vm->origin, sizeof vm->origin, "created");
        uuid_generate(vm->uuid);
        if (spec->host) {
                r = store_host_find(st, spec->host, &vm->host_id);
                _cleanup_json_ json_t *h = NULL;
                if (r < 0 || store_host_get_json(st, vm->host_id, &h) < 0 ||
                    !op_allowed(st, c, ACT_READ, OBJ_HOST, 0, jget_int(h, "group_id")))
                        return op_fail(err, 422, "not_found", "host", "There is no host '%.200s'.", spec->host);
        } else {
                char why[512] = "";
                PlacementDemand d = { .cpus = vm->cpus, .memory_mib = vm->memory_mib, .disk_bytes = disk, .vm_name = vm->name };
                if (placement_choose(st, 0, &d, &vm->host_id, why, sizeof why) < 0)
                        return op_fail(err, 409, "no_capacity", "host", "No host can take VM '%s': %s", vm->name, why);
        }
        return 0;
}

/* Whether grant_id has room for one more VM of vm's size holding points:
 * 0, or 422 "quota_exceeded" naming the first limit. */
static int grant_room(Store *st, int64_t grant_id, int64_t points, const StoreVm *vm, OpError *err) {
        _cleanup_json_ json_t *g = NULL;
        if (store_grant_get_json(st, grant_id, &g) < 0)
                return op_fail_store(err, -EIO, "the grant");
        static const char *const lim[] = { "points", "max_vms", "max_cpus", "max_memory_mib" };
        static const char *const used[] = { "used_points", "used_vms", "used_cpus", "used_memory_mib" };
        static const char *const what[] = { "points", "VMs", "vCPUs", "MiB of memory" };
        const int64_t add[] = { points, 1, vm->cpus, (int64_t) vm->memory_mib };
        for (int i = 0; i < 4; i++) {
                json_t *l = json_object_get(g, lim[i]);
                if (json_is_integer(l) && jget_int(g, used[i]) + add[i] > json_integer_value(l))
                        return op_fail(err, 422, "quota_exceeded", "as", "quota: the copy needs %lld %s, %lld of %lld left.",
                                       (long long) add[i], what[i],
                                       (long long) (json_integer_value(l) > jget_int(g, used[i]) ? json_integer_value(l) - jget_int(g, used[i]) : 0),
                                       (long long) json_integer_value(l));
        }
        return 0;
}

int protect_backup_restore(Store *st, Jobs *jobs, const OpCaller *c, const ProtectRestoreSpec *spec, json_t **ret, OpError *err) {
        char uuid[37];
        int64_t vm_id = 0;
        /* A caller who may operate no VM at all (read-only) is refused
         * before anything is looked up. */
        if (!op_allowed_some(c, ACT_OPERATE, OBJ_VM))
                return op_deny(st, c, err, "restore", "VM", 0, spec->vm);
        int r = protect_vm_ref(st, c, "vm", spec->vm, uuid, &vm_id, err);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *pt = NULL;
        if ((r = protect_point_find(st, c, spec, uuid, &pt, err)) < 0)
                return r;
        /* Restoring needs the rights to operate the point's VM (as it is,
         * or as it was when gone). */
        _cleanup_json_ json_t *src = NULL;
        if (vm_id > 0)
                (void) store_vm_get_json(st, vm_id, &src);
        int64_t owner = src ? jget_int(src, "owner_id") : jget_int(pt, "owner_id");
        int64_t group = src ? jget_int(src, "group_id") : jget_int(pt, "group_id");
        if (!op_allowed(st, c, ACT_OPERATE, OBJ_VM, owner, group))
                return op_deny(st, c, err, "restore", "VM", vm_id, spec->vm);
        if (spec->disk && (r = point_has_disk(st, pt, spec->disk, err)) < 0)
                return r;
        StoreVm vm = { 0 };
        int64_t target = vm_id;
        if (spec->in_place) {
                if (!src)
                        return op_fail(err, 409, "conflict", "in_place", "VM '%.200s' no longer exists: restore it as a new VM.", spec->vm);
                const char *state = jget_str(src, "state");
                if (!streq(state, "stopped"))
                        return op_fail(err, 409, "conflict", "in_place", "VM '%s' is %s: a restore in place needs it stopped.",
                                       jget_str(src, "name"), state);
        } else {
                /* A self-service user creates VMs only under a grant: a copy
                 * of its own VM counts against that VM's grant. */
                bool self = c->subj.role == ROLE_SELF_SERVICE;
                int64_t grant_id = 0, points = 0;
                if (self ? owner != c->user_id || vm_id == 0 || store_backup_vm_grant(st, vm_id, &grant_id, &points) < 0 || !grant_id
                         : !op_allowed(st, c, ACT_CREATE, OBJ_VM, c->user_id, group))
                        return op_deny(st, c, err, "create", "VM", 0, spec->as_name);
                if ((r = new_vm_row(st, c, spec, pt, &vm, err)) < 0)
                        return r;
                if (self && (r = grant_room(st, grant_id, points, &vm, err)) < 0)
                        return r;
                if ((r = store_vm_insert(st, &vm, &target)) < 0)
                        return op_fail_store(err, r, "the new VM");
                if (self && store_backup_vm_grant_copy(st, target, vm_id) < 0) {
                        (void) store_vm_delete(st, target);
                        return op_fail_store(err, -EIO, "the new VM");
                }
        }
        const char *name = spec->in_place ? jget_str(src, "name") : vm.name;
        _cleanup_json_ json_t *params = json_pack("{s:s, s:s, s:s, s:b, s:s?}", "datastore", jget_str(pt, "datastore"),
                                                  "source_uuid", jget_str(pt, "vm_uuid"), "point_id", jget_str(pt, "point_id"),
                                                  "in_place", spec->in_place, "disk", spec->disk);
        int64_t job;
        if (jobs_submit(jobs, "vm.restore", "vm", target, name, c->user_id, params, &job) < 0) {
                if (!spec->in_place)
                        (void) store_vm_delete(st, target);
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        }
        _cleanup_free_ char *detail = xasprintf("point %s of '%s' from datastore '%s'%s%s%s", jget_str(pt, "point_id"),
                                                jget_str(pt, "vm_name"), jget_str(pt, "datastore"), spec->in_place ? ", in place" : "",
                                                spec->disk ? ", disk " : "", spec->disk ? spec->disk : "");
        op_audit(st, c, "vm.restore", "vm", target, name, detail, "accepted");
        json_t *v = NULL;
        (void) store_vm_get_json(st, target, &v);
        *ret = json_pack("{s:o, s:o}", "job", job_json(st, job), "vm", v ? v : json_null());
        return 0;
}
