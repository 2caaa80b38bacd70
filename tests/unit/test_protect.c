/* Unit tests for protect/: the chunk store on a temporary directory (put/get,
 * dedup, zero chunks, corruption, points and their bases, atomic commit,
 * garbage collection, verify, copies between datastores, sparse restore) and
 * the retention rules against Proxmox Backup Server's documented examples.
 * Snapshots: the name rule and the default name. */
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <libnbd.h>

#include "protect/chunkstore.h"
#include "protect/protect-priv.h"
#include "protect/protect.h"

#define VM "11111111-2222-3333-4444-555555555555"

static char dir[256];

static void rm_rf(const char *path) {
        /* Only our own temporary directory, by a fixed argv: no shell. */
        pid_t pid = fork();
        if (pid == 0) {
                execlp("rm", "rm", "-rf", "--", path, (char *) NULL);
                _exit(127);
        }
        int status;
        waitpid(pid, &status, 0);
}

static int setup(void **state) {
        snprintf(dir, sizeof dir, "/tmp/armada-test-protect-XXXXXX");
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
        rm_rf(dir);
        return 0;
}

static ChunkStore *open_store(const char *sub) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, sub);
        ChunkStore *s = NULL;
        assert_int_equal(chunkstore_open(path, true, &s), 0);
        return s;
}

/* Deterministic, poorly compressible bytes. */
static void fill(uint8_t *buf, size_t len, uint32_t seed) {
        uint32_t x = seed * 2654435761u + 1;
        for (size_t i = 0; i < len; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                buf[i] = (uint8_t) x;
        }
}

static void chunk_file(ChunkStore *s, const ChunkDigest *d, char *out, size_t n) {
        char hex[65];
        chunk_digest_hex(d, hex);
        snprintf(out, n, "%s/.chunks/%.4s/%s", chunkstore_dir(s), hex, hex);
}

static void test_open(void **state) {
        char path[512];
        snprintf(path, sizeof path, "%s/ds", dir);
        ChunkStore *s = NULL;
        assert_int_equal(chunkstore_open(path, false, &s), -ENOENT);
        assert_int_equal(chunkstore_open(path, true, &s), 0);
        assert_string_equal(chunkstore_dir(s), path);
        s = chunkstore_free(s);
        /* Reopening (adopting) an existing datastore keeps it. */
        assert_int_equal(chunkstore_open(path, true, &s), 0);
        s = chunkstore_free(s);
        assert_int_equal(chunkstore_open(path, false, &s), 0);
        s = chunkstore_free(s);
        /* A directory with other files is not taken over. */
        snprintf(path, sizeof path, "%s/other", dir);
        mkdir(path, 0755);
        char f[600];
        snprintf(f, sizeof f, "%s/precious.txt", path);
        FILE *fp = fopen(f, "w");
        fputs("x", fp);
        fclose(fp);
        assert_int_equal(chunkstore_open(path, true, &s), -ENOTEMPTY);
        assert_null(s);
}

static void test_digest_hex(void **state) {
        ChunkDigest d, e;
        for (int i = 0; i < 32; i++)
                d.b[i] = (uint8_t) (i * 7 + 3);
        char hex[65];
        chunk_digest_hex(&d, hex);
        assert_int_equal(strlen(hex), 64);
        assert_int_equal(chunk_digest_parse(hex, &e), 0);
        assert_memory_equal(d.b, e.b, 32);
        assert_int_equal(chunk_digest_parse("abc", &e), -EINVAL);
        hex[5] = 'g';
        assert_int_equal(chunk_digest_parse(hex, &e), -EINVAL);
        /* The SHA-256 of "abc" (FIPS 180-2). */
        ChunkStore *s = open_store("hex");
        assert_int_equal(chunkstore_put(s, "abc", 3, &d, NULL), 0);
        chunk_digest_hex(&d, hex);
        assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        chunkstore_free(s);
}

static void test_put_get(void **state) {
        ChunkStore *s = open_store("pg");
        uint8_t *in = malloc(CHUNK_SIZE), *out = malloc(CHUNK_SIZE);
        fill(in, CHUNK_SIZE, 1);
        ChunkDigest d;
        uint64_t written = 0;
        assert_int_equal(chunkstore_put(s, in, CHUNK_SIZE, &d, &written), 0);
        assert_true(written > CHUNK_SIZE / 2);
        assert_true(chunkstore_has(s, &d));
        size_t len = 0;
        assert_int_equal(chunkstore_get(s, &d, out, CHUNK_SIZE, &len), 0);
        assert_int_equal(len, CHUNK_SIZE);
        assert_memory_equal(in, out, CHUNK_SIZE);

        /* Compressible bytes are stored compressed and come back whole. */
        memset(in, 'a', CHUNK_SIZE);
        memcpy(in + 1000, "hello", 5);
        assert_int_equal(chunkstore_put(s, in, 65536, &d, &written), 0);
        assert_true(written < 4096);
        assert_int_equal(chunkstore_get(s, &d, out, CHUNK_SIZE, &len), 0);
        assert_int_equal(len, 65536);
        assert_memory_equal(in, out, 65536);
        /* Too small a buffer, too big a chunk. */
        assert_int_equal(chunkstore_get(s, &d, out, 100, &len), -ENOBUFS);
        assert_int_equal(chunkstore_put(s, in, CHUNK_SIZE + 1, &d, NULL), -EINVAL);
        /* Unknown digest. */
        memset(d.b, 0x42, 32);
        assert_false(chunkstore_has(s, &d));
        assert_int_equal(chunkstore_get(s, &d, out, CHUNK_SIZE, &len), -ENOENT);
        free(in);
        free(out);
        chunkstore_free(s);
}

static void test_dedup(void **state) {
        ChunkStore *s = open_store("dd");
        uint8_t *in = malloc(CHUNK_SIZE);
        fill(in, CHUNK_SIZE, 2);
        ChunkDigest d1, d2;
        uint64_t w1 = 0, w2 = 99;
        assert_int_equal(chunkstore_put(s, in, CHUNK_SIZE, &d1, &w1), 0);
        assert_true(w1 > 0);
        /* Age the chunk; a dedup hit must refresh its mtime. */
        char path[700];
        chunk_file(s, &d1, path, sizeof path);
        struct timespec old[2] = {{.tv_sec = 1000000}, {.tv_sec = 1000000}};
        assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
        assert_int_equal(chunkstore_put(s, in, CHUNK_SIZE, &d2, &w2), 0);
        assert_int_equal(w2, 0);
        assert_memory_equal(d1.b, d2.b, 32);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_mtime > time(NULL) - 60);
        ChunkStoreUsage u;
        assert_int_equal(chunkstore_usage(s, &u), 0);
        assert_int_equal(u.chunks, 1);
        free(in);
        chunkstore_free(s);
}

typedef struct PutArg {
        ChunkStore *s;
        const uint8_t *buf;
        int rc;
} PutArg;

static void *put_thread(void *userdata) {
        PutArg *a = userdata;
        for (int i = 0; i < 20 && a->rc == 0; i++) {
                ChunkDigest d;
                a->rc = chunkstore_put(a->s, a->buf + (i % 4) * 1024, 256 * 1024, &d, NULL);
        }
        return NULL;
}

static void test_concurrent_put(void **state) {
        ChunkStore *s = open_store("conc");
        ChunkStore *s2 = NULL;
        assert_int_equal(chunkstore_open(chunkstore_dir(s), false, &s2), 0);
        uint8_t *in = malloc(CHUNK_SIZE);
        fill(in, CHUNK_SIZE, 3);
        PutArg a[4];
        pthread_t t[4];
        for (int i = 0; i < 4; i++) {
                a[i] = (PutArg){.s = i % 2 ? s2 : s, .buf = in};
                assert_int_equal(pthread_create(&t[i], NULL, put_thread, &a[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(a[i].rc, 0);
        }
        ChunkStoreUsage u;
        assert_int_equal(chunkstore_usage(s, &u), 0);
        assert_int_equal(u.chunks, 4);
        /* No temporary file left behind. */
        json_t *res = NULL;
        assert_int_equal(chunkstore_verify(s, NULL, NULL, &res), 0);
        json_decref(res);
        free(in);
        chunkstore_free(s2);
        chunkstore_free(s);
}

static void test_zero_not_stored(void **state) {
        ChunkStore *s = open_store("zero");
        uint8_t *z = calloc(1, CHUNK_SIZE);
        assert_true(chunk_is_zero(z, CHUNK_SIZE));
        z[CHUNK_SIZE - 1] = 1;
        assert_false(chunk_is_zero(z, CHUNK_SIZE));
        z[CHUNK_SIZE - 1] = 0;
        /* A point whose disk is all zeros names no chunk and stores none. */
        Point *p = NULL;
        assert_int_equal(point_new(s, VM, "20260101T000000Z", NULL, &p), 0);
        unsigned k;
        assert_int_equal(point_add_disk(p, "vda", 3ull * CHUNK_SIZE, &k), 0);
        assert_int_equal(point_set_chunk(p, k, 1, NULL), 0);
        assert_int_equal(point_commit(p), 0);
        point_free(p);
        ChunkStoreUsage u;
        assert_int_equal(chunkstore_usage(s, &u), 0);
        assert_int_equal(u.chunks, 0);
        assert_int_equal(u.points, 1);
        assert_int_equal(u.logical_bytes, 3ull * CHUNK_SIZE);
        free(z);
        chunkstore_free(s);
}

/* Writes a point of VM from BUF (LEN bytes) the way a backup does. */
static void make_point(ChunkStore *s, const char *vm, const char *id, const Point *base, const uint8_t *buf,
                       uint64_t len, const bool *only) {
        Point *p = NULL;
        assert_int_equal(point_new(s, vm, id, base, &p), 0);
        unsigned k;
        assert_int_equal(point_add_disk(p, "vda", len, &k), 0);
        uint64_t cs = chunkstore_chunk_size(s);
        for (uint64_t c = 0; c * cs < len; c++) {
                if (only && !only[c])
                        continue;
                size_t n = (size_t) (len - c * cs < cs ? len - c * cs : cs);
                if (chunk_is_zero(buf + c * cs, n)) {
                        assert_int_equal(point_set_chunk(p, k, c, NULL), 0);
                        continue;
                }
                ChunkDigest d;
                assert_int_equal(chunkstore_put(s, buf + c * cs, n, &d, NULL), 0);
                assert_int_equal(point_set_chunk(p, k, c, &d), 0);
        }
        json_t *name = json_string("web01");
        assert_int_equal(point_set_meta(p, "vm_name", name), 0); /* takes a reference */
        json_decref(name);
        assert_int_equal(point_commit(p), 0);
        point_free(p);
}

/* ---- delta indexes (an incremental point stores what changed since its base) ---- */

static json_t *load_manifest(ChunkStore *s, const char *vm, const char *id) {
        char path[1024];
        snprintf(path, sizeof path, "%s/vm/%s/%s/manifest.json", chunkstore_dir(s), vm, id);
        json_t *m = json_load_file(path, 0, NULL);
        assert_non_null(m);
        return m;
}

/* The bytes of the index files of a point (what a point costs besides its manifest). */
static uint64_t index_bytes(ChunkStore *s, const char *vm, const char *id) {
        json_t *m = load_manifest(s, vm, id);
        uint64_t total = 0;
        size_t i;
        json_t *jd;
        json_array_foreach(json_object_get(m, "disks"), i, jd) {
                char path[1024];
                struct stat st;
                snprintf(path, sizeof path, "%s/vm/%s/%s/%s", chunkstore_dir(s), vm, id,
                         json_string_value(json_object_get(jd, "index")));
                assert_int_equal(stat(path, &st), 0);
                total += (uint64_t) st.st_size;
        }
        json_decref(m);
        return total;
}

static const char *manifest_base(ChunkStore *s, const char *vm, const char *id, char *out, size_t n) {
        json_t *m = load_manifest(s, vm, id);
        const char *b = json_string_value(json_object_get(m, "base"));
        snprintf(out, n, "%s", b ? b : "");
        json_decref(m);
        return out;
}

/* The point opens to exactly IMG's chunks. */
static void assert_point_is(ChunkStore *s, const char *id, const uint8_t *img, uint64_t len) {
        Point *p = NULL;
        assert_int_equal(point_open(s, VM, id, &p), 0);
        uint64_t cs = chunkstore_chunk_size(s);
        assert_int_equal(point_disk_size(p, 0), len);
        uint8_t *buf = malloc(CHUNK_SIZE);
        for (uint64_t c = 0; c < point_disk_chunks(p, 0); c++) {
                size_t want = (size_t) (len - c * cs < cs ? len - c * cs : cs), got = 0;
                ChunkDigest d;
                bool zero;
                assert_int_equal(point_chunk(p, 0, c, &d, &zero), 0);
                if (zero) {
                        assert_true(chunk_is_zero(img + c * cs, want));
                        continue;
                }
                assert_int_equal(chunkstore_get(s, &d, buf, CHUNK_SIZE, &got), 0);
                assert_int_equal(got, want);
                assert_memory_equal(buf, img + c * cs, want);
        }
        free(buf);
        point_free(p);
}

/* An incremental point FROM BASE_ID: IMG changed at the chunks of CHANGED (n). */
static void make_incremental(ChunkStore *s, const char *id, const char *base_id, const uint8_t *img, uint64_t len,
                             const uint64_t *changed, size_t n) {
        uint64_t chunks = (len + chunkstore_chunk_size(s) - 1) / chunkstore_chunk_size(s);
        bool *only = calloc(chunks, 1);
        for (size_t i = 0; i < n; i++)
                only[changed[i]] = true;
        Point *base = NULL;
        assert_int_equal(point_open(s, VM, base_id, &base), 0);
        make_point(s, VM, id, base, img, len, only);
        point_free(base);
        free(only);
}

static void test_delta_index(void **state) {
        char path[512], b[200];
        snprintf(path, sizeof path, "%s/delta", dir);
        ChunkStore *s = NULL;
        assert_int_equal(chunkstore_open_sized(path, true, CHUNK_SIZE_MIN, &s), 0);
        const uint64_t cs = CHUNK_SIZE_MIN, n = 64, len = n * cs - 1000;
        uint8_t *img = malloc(len);
        for (uint64_t c = 0; c < n; c++)
                fill(img + c * cs, (size_t) (len - c * cs < cs ? len - c * cs : cs), 100 + (uint32_t) c);
        memset(img + 5 * cs, 0, cs); /* a zero chunk */
        make_point(s, VM, "20260101T000000Z", NULL, img, len, NULL);
        uint64_t whole = index_bytes(s, VM, "20260101T000000Z");
        assert_int_equal(whole, 24 + n * 32);
        assert_string_equal(manifest_base(s, VM, "20260101T000000Z", b, sizeof b), "");

        /* Three chunks change (one to zeros, the zero one to data): the
         * index holds three entries and names its base. */
        uint8_t *img1 = malloc(len), *img2 = malloc(len);
        memcpy(img1, img, len);
        fill(img1 + 7 * cs, cs, 200);
        memset(img1 + 9 * cs, 0, cs);
        fill(img1 + 5 * cs, cs, 201);
        const uint64_t ch1[] = { 5, 7, 9 };
        make_incremental(s, "20260101T001500Z", "20260101T000000Z", img1, len, ch1, 3);
        assert_int_equal(index_bytes(s, VM, "20260101T001500Z"), 32 + 3 * 40);
        assert_string_equal(manifest_base(s, VM, "20260101T001500Z", b, sizeof b), "20260101T000000Z");
        json_t *m = load_manifest(s, VM, "20260101T001500Z");
        assert_true(json_is_true(json_object_get(json_array_get(json_object_get(m, "disks"), 0), "delta")));
        json_decref(m);
        assert_point_is(s, "20260101T001500Z", img1, len);
        Point *p = NULL;
        assert_int_equal(point_open(s, VM, "20260101T001500Z", &p), 0);
        assert_string_equal(point_base(p), "20260101T000000Z");
        point_free(p);

        /* A chunk read again with the same bytes is no entry. */
        memcpy(img2, img1, len);
        fill(img2 + 7 * cs, cs, 202);
        fill(img2 + 63 * cs, (size_t) (len - 63 * cs), 203); /* the short last chunk */
        const uint64_t ch2[] = { 7, 20, 63 };
        make_incremental(s, "20260101T003000Z", "20260101T001500Z", img2, len, ch2, 3);
        assert_int_equal(index_bytes(s, VM, "20260101T003000Z"), 32 + 2 * 40);
        assert_point_is(s, "20260101T003000Z", img2, len);

        /* Verify and GC see through the chain. */
        json_t *v = NULL;
        assert_int_equal(chunkstore_verify(s, NULL, NULL, &v), 0);
        assert_int_equal(json_array_size(json_object_get(v, "bad_points")), 0);
        assert_int_equal(json_integer_value(json_object_get(v, "points")), 3);
        json_decref(v);
        ChunkStoreGc g;
        assert_int_equal(chunkstore_gc(s, time(NULL) + 3600, &g), 0);
        assert_int_equal(g.chunks_removed, 0);

        /* Removing the middle point rebases the newest onto the oldest: its
         * index becomes the union of both deltas, its chunks stay. */
        assert_int_equal(point_remove(s, VM, "20260101T001500Z"), 0);
        assert_string_equal(manifest_base(s, VM, "20260101T003000Z", b, sizeof b), "20260101T000000Z");
        assert_int_equal(index_bytes(s, VM, "20260101T003000Z"), 32 + 4 * 40); /* 5, 7, 9 and 63 (20 is as it was) */
        assert_point_is(s, "20260101T003000Z", img2, len);
        /* The old index file is gone; only the manifest's remain. */
        char f[1024];
        snprintf(f, sizeof f, "%s/vm/%s/20260101T003000Z/disk-0.idx", chunkstore_dir(s), VM);
        assert_int_equal(access(f, F_OK), -1);

        /* Removing the whole point (the prune of a base a kept point needs)
         * leaves the kept point whole, and exact. */
        assert_int_equal(point_remove(s, VM, "20260101T000000Z"), 0);
        assert_string_equal(manifest_base(s, VM, "20260101T003000Z", b, sizeof b), "");
        assert_int_equal(index_bytes(s, VM, "20260101T003000Z"), whole);
        assert_point_is(s, "20260101T003000Z", img2, len);
        assert_int_equal(chunkstore_gc(s, time(NULL) + 3600, &g), 0);
        assert_true(g.chunks_removed > 0);
        assert_point_is(s, "20260101T003000Z", img2, len);
        assert_int_equal(chunkstore_verify(s, NULL, NULL, &v), 0);
        assert_int_equal(json_array_size(json_object_get(v, "bad_points")), 0);
        json_decref(v);

        /* A point whose base vanished behind the store's back cannot be
         * opened, and verify names it. */
        const uint64_t ch3[] = { 1 };
        fill(img2 + cs, cs, 204);
        make_incremental(s, "20260101T004500Z", "20260101T003000Z", img2, len, ch3, 1);
        snprintf(f, sizeof f, "%s/vm/%s/20260101T003000Z/manifest.json", chunkstore_dir(s), VM);
        char hidden[1100];
        snprintf(hidden, sizeof hidden, "%s.hidden", f);
        assert_int_equal(rename(f, hidden), 0);
        assert_int_equal(point_open(s, VM, "20260101T004500Z", &p), -EBADMSG);
        assert_int_equal(chunkstore_verify(s, NULL, NULL, &v), 0);
        json_t *bad = json_array_get(json_object_get(v, "bad_points"), 0);
        assert_non_null(bad);
        assert_string_equal(json_string_value(json_object_get(bad, "point_id")), "20260101T004500Z");
        json_decref(v);
        assert_true(chunkstore_gc(s, time(NULL) + 3600, &g) < 0); /* never collects under an unreadable point */
        assert_int_equal(rename(hidden, f), 0);
        assert_point_is(s, "20260101T004500Z", img2, len);

        /* Most of the disk changed: a delta would be larger than half the
         * whole index, so the index is whole. */
        uint64_t all[64];
        for (uint64_t c = 0; c < n; c++) {
                all[c] = c;
                fill(img2 + c * cs, (size_t) (len - c * cs < cs ? len - c * cs : cs), 300 + (uint32_t) c);
        }
        make_incremental(s, "20260101T010000Z", "20260101T004500Z", img2, len, all, n);
        assert_string_equal(manifest_base(s, VM, "20260101T010000Z", b, sizeof b), "");
        assert_point_is(s, "20260101T010000Z", img2, len);

        /* A chain stops at POINT_DEPTH_MAX (32) deltas: the next is whole. */
        char prev[32] = "20260101T010000Z", id[32];
        unsigned whole_at = 0;
        for (unsigned i = 1; i <= 34; i++) {
                snprintf(id, sizeof id, "20260102T%02u%02u00Z", i / 60, i % 60);
                const uint64_t one[] = { i % n };
                fill(img2 + (i % n) * cs, cs, 400 + i);
                make_incremental(s, id, prev, img2, len, one, 1);
                if (!*manifest_base(s, VM, id, b, sizeof b) && !whole_at)
                        whole_at = i;
                snprintf(prev, sizeof prev, "%s", id);
        }
        assert_int_equal(whole_at, 33);
        assert_point_is(s, id, img2, len);

        free(img);
        free(img1);
        free(img2);
        chunkstore_free(s);
}

/* Copies (archive, import, replication) store deltas too, against the
 * newest point of the VM already in the target, and restore the same. */
static void test_delta_copy_and_import(void **state) {
        char path[512];
        ChunkStore *s = NULL, *dst = NULL, *rep = NULL;
        snprintf(path, sizeof path, "%s/dsrc", dir);
        assert_int_equal(chunkstore_open_sized(path, true, CHUNK_SIZE_MIN, &s), 0);
        snprintf(path, sizeof path, "%s/ddst", dir);
        assert_int_equal(chunkstore_open_sized(path, true, CHUNK_SIZE_MIN, &dst), 0);
        snprintf(path, sizeof path, "%s/drep", dir);
        assert_int_equal(chunkstore_open_sized(path, true, CHUNK_SIZE_MIN, &rep), 0);
        const uint64_t cs = CHUNK_SIZE_MIN, n = 32, len = n * cs;
        uint8_t *img = malloc(len), *img1 = malloc(len);
        fill(img, len, 500);
        make_point(s, VM, "20260101T000000Z", NULL, img, len, NULL);
        memcpy(img1, img, len);
        fill(img1 + 3 * cs, cs, 501);
        const uint64_t ch[] = { 3 };
        make_incremental(s, "20260101T001500Z", "20260101T000000Z", img1, len, ch, 1);

        json_t *pts = json_pack("[{s:s, s:s}, {s:s, s:s}]", "vm_uuid", VM, "point_id", "20260101T000000Z", "vm_uuid",
                                VM, "point_id", "20260101T001500Z");
        assert_int_equal(chunkstore_copy_points(s, dst, pts, NULL, NULL, NULL, NULL), 0);
        json_decref(pts);
        char b[200];
        assert_string_equal(manifest_base(dst, VM, "20260101T001500Z", b, sizeof b), "20260101T000000Z");
        assert_int_equal(index_bytes(dst, VM, "20260101T001500Z"), 32 + 40);
        assert_point_is(dst, "20260101T001500Z", img1, len);

        /* Replication: export / import, oldest first. */
        const char *ids[] = { "20260101T000000Z", "20260101T001500Z" };
        for (int i = 0; i < 2; i++) {
                Point *p = NULL;
                json_t *m = NULL;
                assert_int_equal(point_open(s, VM, ids[i], &p), 0);
                for (uint64_t c = 0; c < point_disk_chunks(p, 0); c++) {   /* the chunks go first */
                        ChunkDigest d;
                        uint8_t *raw = NULL;
                        size_t rl = 0;
                        assert_int_equal(point_chunk(p, 0, c, &d, NULL), 0);
                        assert_int_equal(chunkstore_read_raw(s, &d, &raw, &rl), 0);
                        assert_int_equal(chunkstore_put_raw(rep, &d, raw, rl, NULL), 0);
                        free(raw);
                }
                assert_int_equal(point_export(p, &m), 0);
                assert_int_equal(point_import(rep, m), 0);
                json_decref(m);
                point_free(p);
        }
        assert_string_equal(manifest_base(rep, VM, "20260101T001500Z", b, sizeof b), "20260101T000000Z");
        assert_point_is(rep, "20260101T001500Z", img1, len);
        free(img);
        free(img1);
        chunkstore_free(s);
        chunkstore_free(dst);
        chunkstore_free(rep);
}

static void test_point_roundtrip_and_base(void **state) {
        ChunkStore *s = open_store("pt");
        uint64_t len = 3ull * CHUNK_SIZE + 12345;
        uint8_t *img = calloc(1, len);
        fill(img, CHUNK_SIZE, 10);                       /* chunk 0 */
        fill(img + 2 * CHUNK_SIZE, CHUNK_SIZE + 12345, 11); /* chunks 2, 3 (short) */
        make_point(s, VM, "20260101T000000Z", NULL, img, len, NULL);

        Point *base = NULL;
        assert_int_equal(point_open(s, VM, "20260101T000000Z", &base), 0);
        assert_int_equal(point_disk_count(base), 1);
        assert_string_equal(point_disk_target(base, 0), "vda");
        assert_int_equal(point_disk_size(base, 0), len);
        assert_int_equal(point_disk_chunks(base, 0), 4);
        assert_string_equal(json_string_value(point_meta(base, "vm_name")), "web01");
        bool zero;
        ChunkDigest d;
        assert_int_equal(point_chunk(base, 0, 1, &d, &zero), 0);
        assert_true(zero);
        assert_int_equal(point_chunk(base, 0, 0, &d, &zero), 0);
        assert_false(zero);
        assert_int_equal(point_chunk(base, 0, 4, &d, &zero), -EINVAL);

        /* An incremental point: only chunk 2 changed; the rest is inherited. */
        uint8_t *img2 = malloc(len);
        memcpy(img2, img, len);
        fill(img2 + 2 * CHUNK_SIZE, 4096, 12);
        bool only[4] = {false, false, true, false};
        make_point(s, VM, "20260101T001500Z", base, img2, len, only);
        assert_int_equal(point_new(s, VM, "20260101T001500Z", NULL, &(Point *){NULL}), -EEXIST);
        assert_true(point_exists(s, VM, "20260101T001500Z"));
        assert_false(point_exists(s, VM, "20260101T001500Z-2"));
        assert_false(point_exists(s, VM, "../20260101T001500Z"));
        /* A second point in the same second is "-2" .. "-9", and keeps its time. */
        time_t t1 = 0, t2 = 0;
        assert_int_equal(protect_point_time("20260101T001500Z", &t1), 0);
        assert_int_equal(protect_point_time("20260101T001500Z-2", &t2), 0);
        assert_true(t1 == t2 && t1 > 0);
        assert_int_equal(protect_point_time("20260101T001500Z-1", &t2), -EINVAL);
        assert_int_equal(protect_point_time("20260101T001500Z-2x", &t2), -EINVAL);

        /* Each point reads back exactly its own image, sparse. */
        const char *ids[2] = {"20260101T000000Z", "20260101T001500Z"};
        const uint8_t *imgs[2] = {img, img2};
        for (int i = 0; i < 2; i++) {
                Point *p = NULL;
                assert_int_equal(point_open(s, VM, ids[i], &p), 0);
                char out[512];
                snprintf(out, sizeof out, "%s/restore-%d.raw", dir, i);
                int fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
                assert_true(fd >= 0);
                assert_int_equal(point_read_disk(s, p, 0, fd, NULL, NULL), 0);
                struct stat st;
                assert_int_equal(fstat(fd, &st), 0);
                assert_int_equal(st.st_size, len);
                /* The zero chunk is a hole: fewer blocks than the size. */
                assert_true((uint64_t) st.st_blocks * 512 < len - CHUNK_SIZE / 2);
                uint8_t *back = malloc(len);
                assert_int_equal(pread(fd, back, len, 0), (ssize_t) len);
                assert_memory_equal(back, imgs[i], len);
                free(back);
                close(fd);
                point_free(p);
        }

        json_t *list = NULL;
        assert_int_equal(point_list(s, NULL, &list), 0);
        assert_int_equal(json_array_size(list), 2);
        assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "point_id")), ids[0]);
        assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "point_id")), ids[1]);
        json_t *d0 = json_array_get(json_object_get(json_array_get(list, 1), "disks"), 0);
        assert_string_equal(json_string_value(json_object_get(d0, "target")), "vda");
        assert_int_equal(json_integer_value(json_object_get(d0, "size")), len);
        json_decref(list);

        assert_int_equal(point_remove(s, VM, ids[0]), 0);
        assert_int_equal(point_open(s, VM, ids[0], &(Point *){NULL}), -ENOENT);
        assert_int_equal(point_list(s, VM, &list), 0);
        assert_int_equal(json_array_size(list), 1);
        json_decref(list);
        point_free(base);
        free(img);
        free(img2);
        chunkstore_free(s);
}

/* The scheduler's slots: a point late by seconds keeps the next slot (no
 * drift), the first point taken just before a slot skips it. */
static void test_policy_due(void **state) {
        const int64_t m = 60000, slot = (int64_t) 1764576000 * 1000; /* a multiple of a minute */
        assert_int_equal(protect_policy_due_ms(slot, m), slot + m);
        assert_int_equal(protect_policy_due_ms(slot + 4000, m), slot + m);        /* 4 s late: no drift */
        assert_int_equal(protect_policy_due_ms(slot + 29000, m), slot + m);
        assert_int_equal(protect_policy_due_ms(slot + 31000, m), slot + 2 * m);   /* just before a slot: the one after */
        assert_int_equal(protect_policy_due_ms(slot + 59000, m), slot + 2 * m);
        assert_int_equal(protect_policy_due_ms(slot + 10, 15 * m), slot - slot % (15 * m) + 15 * m);
}

/* ---- the qcow2 stream of a restore (protect-qcow2.c) ---- */

typedef struct {
        int fd;
        uint64_t at, data_bytes, hole_bytes;
} FileSink;

static int file_data(void *userdata, const void *buf, size_t len) {
        FileSink *f = userdata;
        if (pwrite(f->fd, buf, len, (off_t) f->at) != (ssize_t) len)
                return -EIO;
        f->at += len;
        f->data_bytes += len;
        return 0;
}

static int file_hole(void *userdata, uint64_t len) {
        FileSink *f = userdata;
        f->at += len;
        f->hole_bytes += len;
        return 0;
}

static int run_argv(char *const argv[]) {
        pid_t pid = fork();
        if (pid == 0) {
                int null = open("/dev/null", O_WRONLY);
                dup2(null, 1);
                execvp(argv[0], argv);
                _exit(127);
        }
        int status;
        waitpid(pid, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A sparse guest of size bytes: data at the offsets given (whole clusters
 * and a short last one), the rest zeros, including zero clusters inside a
 * written chunk. The image must pass qemu-img check and read back as the
 * same bytes; holes must not be sent as data. */
static void qcow2_roundtrip(uint64_t size) {
        char img[512], raw[512];
        snprintf(img, sizeof img, "%s/q-%llu.qcow2", dir, (unsigned long long) size);
        snprintf(raw, sizeof raw, "%s/q-%llu.raw", dir, (unsigned long long) size);
        uint8_t *chunk = malloc(CHUNK_SIZE);
        assert_non_null(chunk);
        /* Chunks (4 MiB) at 0, 8 MiB, 600 MiB (second L2 table) and the
         * disk's last (short) one; in each, clusters 0, 1 and 5 hold data. */
        uint64_t last = (size - 1) / CHUNK_SIZE * CHUNK_SIZE;
        uint64_t at[] = { 0, 8u << 20, 600u << 20, last };
        FileSink fs = { .fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0644) };
        assert_true(fs.fd >= 0);
        Qcow2Sink sink = { .data = file_data, .hole = file_hole, .userdata = &fs };
        Qcow2Writer *w = NULL;
        uint64_t bound = 0;
        for (size_t i = 0; i < 4; i++)
                bound += qcow2_clusters(size - at[i] < CHUNK_SIZE ? size - at[i] : CHUNK_SIZE);
        assert_int_equal(qcow2_writer_new(size, bound, &sink, &w), 0);
        assert_int_equal(qcow2_writer_begin(w), 0);
        int rawfd = open(raw, O_RDWR | O_CREAT | O_TRUNC, 0644);
        assert_true(rawfd >= 0);
        assert_int_equal(ftruncate(rawfd, (off_t) size), 0);
        uint64_t written = 0;
        for (size_t i = 0; i < 4; i++) {
                size_t len = (size_t) (size - at[i] < CHUNK_SIZE ? size - at[i] : CHUNK_SIZE);
                memset(chunk, 0, len);
                size_t cl[] = { 0, 1, 5 };
                for (size_t k = 0; k < 3; k++) {
                        size_t o = cl[k] * QCOW2_CLUSTER;
                        if (o >= len)
                                continue;
                        size_t n = len - o < QCOW2_CLUSTER ? len - o : QCOW2_CLUSTER;
                        fill(chunk + o, n, (uint32_t) (i * 10 + k + 1));
                        written++;
                }
                assert_int_equal(pwrite(rawfd, chunk, len, (off_t) at[i]), (ssize_t) len);
                assert_int_equal(qcow2_writer_data(w, at[i], chunk, len), 0);
        }
        /* Out of order: refused. */
        assert_int_equal(qcow2_writer_data(w, 0, chunk, QCOW2_CLUSTER), -EINVAL);
        assert_int_equal(qcow2_writer_finish(w), 0);
        assert_int_equal(fs.at, qcow2_writer_file_size(w));
        assert_int_equal(ftruncate(fs.fd, (off_t) fs.at), 0);
        /* Data sent: the header, the data clusters, L1, refcount table and
         * blocks, two L2 tables; everything else was holes. */
        assert_true(fs.data_bytes <= (1 + written + 3 + 2 + 3) * QCOW2_CLUSTER);
        assert_true(fs.data_bytes >= (1 + written) * QCOW2_CLUSTER);
        qcow2_writer_free(w);
        close(fs.fd);
        close(rawfd);
        free(chunk);
        char *check[] = { "qemu-img", "check", "-q", "-f", "qcow2", img, NULL };
        assert_int_equal(run_argv(check), 0);
        char *cmp[] = { "qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", img, raw, NULL };
        assert_int_equal(run_argv(cmp), 0);
}

/* The slotted layout (a restore over several streams): chunks written in
 * reverse order, each through a sink of its own at its slot, the header
 * and the tables after; the image must pass qemu-img check and read back
 * as the guest. Chunks: 1 MiB; some all zeros (no slot), some with zero
 * clusters inside, a short last one. */
static void qcow2_slotted_roundtrip(uint64_t size) {
        const uint32_t cb = 1u << 20;
        char img[512], raw[512];
        snprintf(img, sizeof img, "%s/s-%llu.qcow2", dir, (unsigned long long) size);
        snprintf(raw, sizeof raw, "%s/s-%llu.raw", dir, (unsigned long long) size);
        uint64_t n = (size + cb - 1) / cb, next = 0, bound = 0;
        uint64_t *slot = calloc(n, sizeof *slot);
        for (uint64_t c = 0; c < n; c++) {
                bool zero = c % 3 == 1;
                slot[c] = zero ? QCOW2_NO_SLOT : next++;
                if (!zero)
                        bound += qcow2_clusters(size - c * cb < cb ? size - c * cb : cb);
        }
        int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0644), rawfd = open(raw, O_RDWR | O_CREAT | O_TRUNC, 0644);
        assert_true(fd >= 0 && rawfd >= 0);
        assert_int_equal(ftruncate(rawfd, (off_t) size), 0);
        FileSink fs = { .fd = fd };
        Qcow2Sink sink = { .data = file_data, .hole = file_hole, .userdata = &fs };
        Qcow2Writer *w = NULL;
        assert_int_equal(qcow2_writer_new(size, bound, &sink, &w), 0);
        assert_int_equal(qcow2_writer_slots(w, cb, slot, n), 0);
        uint8_t *chunk = malloc(cb);
        for (uint64_t c = n; c-- > 0;) {
                size_t len = (size_t) (size - c * cb < cb ? size - c * cb : cb);
                memset(chunk, 0, len);
                if (slot[c] != QCOW2_NO_SLOT)
                        for (size_t o = 0; o < len; o += QCOW2_CLUSTER)
                                if ((o / QCOW2_CLUSTER + c) % 4 != 2)      /* a zero cluster in four */
                                        fill(chunk + o, len - o < QCOW2_CLUSTER ? len - o : QCOW2_CLUSTER, (uint32_t) (c * 100 + o / QCOW2_CLUSTER + 1));
                assert_int_equal(pwrite(rawfd, chunk, len, (off_t) (c * cb)), (ssize_t) len);
                FileSink one = { .fd = fd };
                Qcow2Sink s1 = { .data = file_data, .hole = file_hole, .userdata = &one };
                if (slot[c] != QCOW2_NO_SLOT)
                        one.at = qcow2_writer_slot_at(w, slot[c]);
                assert_int_equal(qcow2_writer_chunk(w, &s1, c, chunk, len), 0);
                if (slot[c] != QCOW2_NO_SLOT)
                        assert_int_equal(one.at, qcow2_writer_slot_at(w, slot[c]) + qcow2_clusters(len) * QCOW2_CLUSTER);
        }
        fs.at = 0;
        assert_int_equal(qcow2_writer_header_to(w, &sink), 0);
        fs.at = qcow2_writer_tables_at(w);
        assert_int_equal(qcow2_writer_tables_to(w, &sink), 0);
        assert_int_equal(fs.at, qcow2_writer_file_size(w));
        assert_int_equal(ftruncate(fd, (off_t) fs.at), 0);
        /* Slots out of order are refused. */
        Qcow2Writer *w2 = NULL;
        assert_int_equal(qcow2_writer_new(size, bound, &sink, &w2), 0);
        slot[0] = 1;
        assert_int_equal(qcow2_writer_slots(w2, cb, slot, n), -EINVAL);
        qcow2_writer_free(w2);
        qcow2_writer_free(w);
        close(fd);
        close(rawfd);
        free(chunk);
        free(slot);
        char *check[] = { "qemu-img", "check", "-q", "-f", "qcow2", img, NULL };
        assert_int_equal(run_argv(check), 0);
        char *cmp[] = { "qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", img, raw, NULL };
        assert_int_equal(run_argv(cmp), 0);
}

static void test_qcow2_writer(void **state) {
        if (access("/usr/bin/qemu-img", X_OK) < 0)
                skip();
        qcow2_roundtrip(1024u << 20);                            /* whole chunks, two L2 tables */
        qcow2_roundtrip((uint64_t) (1u << 30) + (3u << 20) + 4608); /* a short last chunk and cluster */
        qcow2_slotted_roundtrip((40u << 20) + 4608);
        qcow2_slotted_roundtrip((uint64_t) (600u << 20));        /* two L2 tables */
        /* Bad arguments and a bound too small. */
        Qcow2Sink sink = { .data = file_data, .hole = file_hole };
        Qcow2Writer *w = NULL;
        assert_int_equal(qcow2_writer_new(1000, 1, &sink, &w), -EINVAL);
        FileSink fs = { .fd = -1 };
        sink.userdata = &fs;
        assert_int_equal(qcow2_writer_new(1 << 20, 1, &sink, &w), 0);
        uint8_t *two = malloc(2 * QCOW2_CLUSTER);
        memset(two, 0xab, 2 * QCOW2_CLUSTER);
        fs.fd = open("/dev/null", O_WRONLY);
        assert_int_equal(qcow2_writer_data(w, 0, two, 2 * QCOW2_CLUSTER), -ENOSPC);
        close(fs.fd);
        free(two);
        qcow2_writer_free(w);
}

/* chunkstore_get_with(): the same bytes and checks as chunkstore_get() for
 * a chunk stored raw (read straight into the buffer) and one stored zstd
 * (the reader's frame buffer reused), and every failure told apart. */
static void test_chunk_reader(void **state) {
        ChunkStore *s = open_store("reader");
        uint32_t cs = chunkstore_chunk_size(s);
        uint8_t *raw = malloc(cs), *text = malloc(cs), *out = malloc(cs), *ref = malloc(cs);
        fill(raw, cs, 40);
        for (size_t i = 0; i < cs; i++)
                text[i] = "armada restores chunks "[i % 23];
        ChunkDigest dr, dt, ds;
        assert_int_equal(chunkstore_put(s, raw, cs, &dr, NULL), 0);
        assert_int_equal(chunkstore_put(s, text, cs, &dt, NULL), 0);
        assert_int_equal(chunkstore_put(s, raw, 12800, &ds, NULL), 0);   /* a short one */
        ChunkReader *rd = NULL;
        assert_int_equal(chunk_reader_new(&rd), 0);
        for (int round = 0; round < 2; round++) {
                size_t len = 0;
                assert_int_equal(chunkstore_get_with(s, rd, &dr, out, cs, &len), 0);
                assert_int_equal(len, cs);
                assert_memory_equal(out, raw, cs);
                assert_int_equal(chunkstore_get_with(s, rd, &dt, out, cs, &len), 0);
                assert_int_equal(len, cs);
                assert_memory_equal(out, text, cs);
                assert_int_equal(chunkstore_get_with(s, rd, &ds, out, cs, &len), 0);
                assert_int_equal(len, 12800);
                assert_int_equal(chunkstore_get(s, &ds, ref, cs, NULL), 0);
                assert_memory_equal(out, ref, 12800);
        }
        assert_int_equal(chunkstore_get_with(s, rd, &dr, out, cs - 1, NULL), -ENOBUFS);
        /* One byte flipped in each: the digest check fails (or zstd does). */
        char path[700];
        ChunkDigest *both[] = { &dr, &dt };
        for (int i = 0; i < 2; i++) {
                chunk_file(s, both[i], path, sizeof path);
                int fd = open(path, O_RDWR);
                assert_true(fd >= 0);
                struct stat st;
                assert_int_equal(fstat(fd, &st), 0);
                uint8_t b;
                assert_int_equal(pread(fd, &b, 1, st.st_size - 7), 1);
                b ^= 0x5a;
                assert_int_equal(pwrite(fd, &b, 1, st.st_size - 7), 1);
                close(fd);
                assert_int_equal(chunkstore_get_with(s, rd, both[i], out, cs, NULL), -EBADMSG);
        }
        /* Cut short: malformed; gone: -ENOENT. */
        chunk_file(s, &ds, path, sizeof path);
        assert_int_equal(truncate(path, 100), 0);
        assert_int_equal(chunkstore_get_with(s, rd, &ds, out, cs, NULL), -EBADMSG);
        unlink(path);
        assert_int_equal(chunkstore_get_with(s, rd, &ds, out, cs, NULL), -ENOENT);
        chunk_reader_free(rd);
        free(raw);
        free(text);
        free(out);
        free(ref);
        chunkstore_free(s);
}

/* The restore's pipeline (protect-pipe.c) with a decoder that finishes
 * items out of order: the consumer gets every item once, in order, in
 * contiguous batches of at most max_bytes; no worker runs more than the
 * ring's slots ahead of what the consumer released; an item that fails
 * ends the stream at that item after every item before it, and no item
 * is claimed beyond the ring after the failure; freeing mid-way joins the
 * workers (the sanitizers see no leak or race). */
typedef struct PipeTest {
        unsigned slots;
        uint64_t fail_at;               /* UINT64_MAX: none */
        _Atomic uint64_t released;
        _Atomic uint64_t max_ahead;     /* the most index - released seen by a worker */
        _Atomic uint64_t max_index;
        _Atomic unsigned calls;
        _Atomic unsigned done;
} PipeTest;

static int pipe_decode(void *userdata, unsigned worker, uint64_t index, uint8_t *buf, size_t cap, size_t *ret_len) {
        PipeTest *t = userdata;
        atomic_fetch_add(&t->calls, 1);
        uint64_t ahead = index - atomic_load(&t->released);
        for (uint64_t m = atomic_load(&t->max_ahead); ahead > m && !atomic_compare_exchange_weak(&t->max_ahead, &m, ahead);)
                ;
        for (uint64_t m = atomic_load(&t->max_index); index > m && !atomic_compare_exchange_weak(&t->max_index, &m, index);)
                ;
        /* Items finish out of order: some take a while. */
        if ((index * 7 + worker) % 5 == 0)
                nanosleep(&(struct timespec) { .tv_nsec = 200000 }, NULL);
        if (index == t->fail_at)
                return -EBADMSG;
        size_t len = 1 + index % cap;
        for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t) (index + i);
        *ret_len = len;
        atomic_fetch_add(&t->done, 1);
        return 0;
}

static void test_restore_pipe(void **state) {
        enum { N = 2000, CAP = 64, SLOTS = 8 };
        PipeTest t = { .slots = SLOTS, .fail_at = UINT64_MAX };
        RestorePipe *p = NULL;
        assert_int_equal(restore_pipe_start(N, CAP, 3, SLOTS, pipe_decode, &t, &p), 0);
        uint64_t want = 0;
        for (;;) {
                RestoreBatch b;
                assert_int_equal(restore_pipe_take(p, 5 * CAP, &b), 0);
                if (b.n == 0)
                        break;
                assert_int_equal(b.first, want);
                assert_true(b.n <= 5);
                assert_int_equal(b.stride, CAP);
                for (size_t k = 0; k < b.n; k++) {
                        uint64_t i = b.first + k;
                        assert_int_equal(b.len[k], 1 + i % CAP);
                        for (size_t j = 0; j < b.len[k]; j++)
                                assert_int_equal(b.buf[k * CAP + j], (uint8_t) (i + j));
                }
                want += b.n;
                atomic_store(&t.released, want);
                restore_pipe_release(p);
        }
        assert_int_equal(want, N);
        assert_int_equal(atomic_load(&t.calls), N);
        assert_true(atomic_load(&t.max_ahead) < SLOTS);
        restore_pipe_free(p);

        /* Items decoded ahead are taken together: once the ring is full,
         * one take hands over all of it (contiguous, in order). */
        PipeTest c = { .slots = SLOTS, .fail_at = UINT64_MAX };
        assert_int_equal(restore_pipe_start(N, CAP, 2, SLOTS, pipe_decode, &c, &p), 0);
        while (atomic_load(&c.done) < SLOTS)
                sched_yield();
        RestoreBatch all;
        assert_int_equal(restore_pipe_take(p, 64 * CAP, &all), 0);
        assert_int_equal(all.first, 0);
        assert_int_equal(all.n, SLOTS);
        for (size_t k = 0; k < all.n; k++)
                assert_int_equal(all.buf[k * CAP], (uint8_t) k);
        restore_pipe_release(p);
        restore_pipe_free(p);

        /* An item fails: the ones before it, then its code, naming it. */
        PipeTest f = { .slots = SLOTS, .fail_at = 37 };
        assert_int_equal(restore_pipe_start(200, CAP, 3, SLOTS, pipe_decode, &f, &p), 0);
        want = 0;
        int r;
        for (;;) {
                RestoreBatch b;
                if ((r = restore_pipe_take(p, 4 * CAP, &b)) < 0) {
                        assert_int_equal(b.first, 37);
                        break;
                }
                assert_true(b.n > 0);
                assert_int_equal(b.first, want);
                want += b.n;
                atomic_store(&f.released, want);
                restore_pipe_release(p);
        }
        assert_int_equal(r, -EBADMSG);
        assert_int_equal(want, 37);
        restore_pipe_free(p);
        assert_true(atomic_load(&f.max_index) < 37 + SLOTS);

        /* Freed with a batch taken and items in flight. */
        PipeTest e = { .slots = SLOTS, .fail_at = UINT64_MAX };
        assert_int_equal(restore_pipe_start(N, CAP, 2, SLOTS, pipe_decode, &e, &p), 0);
        RestoreBatch b;
        assert_int_equal(restore_pipe_take(p, CAP, &b), 0);
        assert_int_equal(b.n, 1);
        restore_pipe_free(p);
        assert_true(atomic_load(&e.calls) <= SLOTS + 2);

        /* Bad arguments. */
        assert_int_equal(restore_pipe_start(N, CAP, 0, SLOTS, pipe_decode, &t, &p), -EINVAL);
        assert_int_equal(restore_pipe_start(N, CAP, 4, 3, pipe_decode, &t, &p), -EINVAL);
        assert_int_equal(restore_pipe_start(N, 0, 2, SLOTS, pipe_decode, &t, &p), -EINVAL);
}

/* protect_nbd_copy against a real NBD server (qemu-nbd over a unix socket,
 * a raw file): the reader thread hands every chunk over in order (the
 * point reads back byte for byte; a hole is not read, a written zero chunk
 * is read and not stored; a short last chunk), and a cancel after the
 * second chunk stops it (the reader thread joined: the sanitizers see no
 * leak or race). */
static pid_t start_qemu_nbd(const char *img, const char *sock) {
        pid_t pid = fork();
        if (pid == 0) {
                int nul = open("/dev/null", O_WRONLY);
                if (nul >= 0) {
                        dup2(nul, 1);
                        dup2(nul, 2);
                }
                execlp("qemu-nbd", "qemu-nbd", "-f", "raw", "-x", "d", "-k", sock, "-t", "-r", img, (char *) NULL);
                _exit(127);
        }
        for (int i = 0; i < 200 && access(sock, F_OK) < 0; i++) {
                if (waitpid(pid, &(int){0}, WNOHANG) == pid)
                        return -1;
                usleep(20000);
        }
        return access(sock, F_OK) == 0 ? pid : -1;
}

static bool cancel_after_two(uint64_t done, uint64_t total, void *userdata) {
        (void) total;
        (void) userdata;
        return done < 2;
}

static void test_nbd_copy(void **state) {
        if (access("/usr/bin/qemu-nbd", X_OK) < 0)
                skip();
        ChunkStore *s = open_store("nbd");
        uint64_t len = 5ull * CHUNK_SIZE + 12800;
        uint8_t *img = calloc(1, len);
        fill(img, CHUNK_SIZE, 30);                          /* 0 data, 1 a hole */
        fill(img + 2 * CHUNK_SIZE, CHUNK_SIZE, 31);         /* 2 data, 3 written zeros */
        fill(img + 4 * CHUNK_SIZE, CHUNK_SIZE + 12800, 32); /* 4 data, 5 short (NBD sizes are whole sectors) */
        char path[512], sock[512];
        snprintf(path, sizeof path, "%s/nbd.raw", dir);
        snprintf(sock, sizeof sock, "%s/nbd.sock", dir);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t) len), 0);
        for (uint64_t c = 0; c * CHUNK_SIZE < len; c++) {
                if (c == 1)
                        continue;
                size_t n = (size_t) (len - c * CHUNK_SIZE < CHUNK_SIZE ? len - c * CHUNK_SIZE : CHUNK_SIZE);
                assert_int_equal(pwrite(fd, img + c * CHUNK_SIZE, n, (off_t) (c * CHUNK_SIZE)), (ssize_t) n);
        }
        close(fd);
        pid_t srv = start_qemu_nbd(path, sock);
        if (srv < 0) {
                free(img);
                chunkstore_free(s);
                skip();
        }

        ProtectNbdSource src = { .socket = sock, .export_name = "d" };
        ProtectNbd *n = NULL;
        char why[256] = "";
        assert_int_equal(protect_nbd_open(&src, &n, why, sizeof why), 0);
        assert_int_equal(protect_nbd_size(n), len);
        Point *p = NULL;
        unsigned k;
        assert_int_equal(point_new(s, VM, "20260101T000000Z", NULL, &p), 0);
        assert_int_equal(point_add_disk(p, "vda", len, &k), 0);
        ProtectCounters cnt = {0};
        assert_int_equal(protect_nbd_copy(n, s, p, k, false, &cnt, NULL, NULL, why, sizeof why), 0);
        assert_int_equal(cnt.chunks_total, 6);
        assert_int_equal(cnt.chunks_read, 5);   /* not the hole */
        assert_int_equal(cnt.chunks_zero, 2);   /* the hole and the written zeros */
        assert_int_equal(cnt.chunks_new, 4);
        assert_int_equal(cnt.bytes_read, 4 * CHUNK_SIZE + 12800);
        assert_int_equal(point_commit(p), 0);
        point_free(p);
        n = protect_nbd_close(n);

        Point *back = NULL;
        assert_int_equal(point_open(s, VM, "20260101T000000Z", &back), 0);
        snprintf(path, sizeof path, "%s/nbd-restore.raw", dir);
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(point_read_disk(s, back, 0, fd, NULL, NULL), 0);
        uint8_t *got = malloc(len);
        assert_int_equal(pread(fd, got, len, 0), (ssize_t) len);
        assert_memory_equal(got, img, len);
        close(fd);
        point_free(back);

        /* Cancelled after the second chunk: -ECANCELED, nothing more read. */
        assert_int_equal(protect_nbd_open(&src, &n, why, sizeof why), 0);
        assert_int_equal(point_new(s, VM, "20260101T000100Z", NULL, &p), 0);
        assert_int_equal(point_add_disk(p, "vda", len, &k), 0);
        ProtectCounters c2 = {0};
        why[0] = 0;
        assert_int_equal(protect_nbd_copy(n, s, p, k, false, &c2, cancel_after_two, NULL, why, sizeof why), -ECANCELED);
        assert_string_equal(why, "cancelled");
        assert_int_equal(c2.chunks_read, 2);
        point_free(p);
        protect_nbd_close(n);

        kill(srv, SIGTERM);
        waitpid(srv, NULL, 0);
        free(got);
        free(img);
        chunkstore_free(s);
}

/* protect_nbd_copy() cuts at the datastore's chunk size: a 256 KiB store
 * reads 256 KiB chunks and skips a hole chunk by chunk. */
static void test_nbd_copy_small_chunks(void **state) {
        if (access("/usr/bin/qemu-nbd", X_OK) < 0)
                skip();
        const uint32_t cs = 256u << 10;
        char path[512], sock[512];
        snprintf(path, sizeof path, "%s/nbd-cs", dir);
        ChunkStore *s = NULL;
        assert_int_equal(chunkstore_open_sized(path, true, cs, &s), 0);
        uint64_t len = 20ull * cs;
        uint8_t *img = calloc(1, len);
        fill(img, 4ull * cs, 70);               /* 0-3 data, 4-11 a hole */
        fill(img + 12ull * cs, 8ull * cs, 71);  /* 12-19 data ... */
        memset(img + 15ull * cs, 0, cs);        /* ... but 15 written zeros */
        snprintf(path, sizeof path, "%s/nbd-cs.raw", dir);
        snprintf(sock, sizeof sock, "%s/nbd-cs.sock", dir);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t) len), 0);
        assert_int_equal(pwrite(fd, img, 4ull * cs, 0), (ssize_t) (4ull * cs));
        assert_int_equal(pwrite(fd, img + 12ull * cs, 8ull * cs, (off_t) (12ull * cs)), (ssize_t) (8ull * cs));
        close(fd);
        pid_t srv = start_qemu_nbd(path, sock);
        if (srv < 0) {
                free(img);
                chunkstore_free(s);
                skip();
        }
        ProtectNbdSource src = { .socket = sock, .export_name = "d" };
        ProtectNbd *n = NULL;
        char why[256] = "";
        assert_int_equal(protect_nbd_open(&src, &n, why, sizeof why), 0);
        Point *p = NULL;
        unsigned k;
        assert_int_equal(point_new(s, VM, "20260106T000000Z", NULL, &p), 0);
        assert_int_equal(point_add_disk(p, "vda", len, &k), 0);
        ProtectCounters cnt = {0};
        assert_int_equal(protect_nbd_copy(n, s, p, k, false, &cnt, NULL, NULL, why, sizeof why), 0);
        assert_int_equal(cnt.chunks_total, 20);
        assert_int_equal(cnt.chunks_read, 12);  /* not the 8 of the hole */
        assert_int_equal(cnt.chunks_zero, 9);   /* the hole's and the written zeros */
        assert_int_equal(cnt.bytes_read, 12ull * cs);
        assert_int_equal(point_commit(p), 0);
        point_free(p);
        protect_nbd_close(n);
        kill(srv, SIGTERM);
        waitpid(srv, NULL, 0);

        p = NULL;
        assert_int_equal(point_open(s, VM, "20260106T000000Z", &p), 0);
        assert_int_equal(point_disk_chunks(p, 0), 20);
        snprintf(path, sizeof path, "%s/nbd-cs-restore.raw", dir);
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        assert_int_equal(point_read_disk(s, p, 0, fd, NULL, NULL), 0);
        uint8_t *got = malloc(len);
        assert_int_equal(pread(fd, got, len, 0), (ssize_t) len);
        assert_memory_equal(got, img, len);
        close(fd);
        point_free(p);
        free(got);
        free(img);
        chunkstore_free(s);
}

static void test_bad_arguments(void **state) {
        ChunkStore *s = open_store("bad");
        Point *p = NULL;
        assert_int_equal(point_new(s, "../etc", "20260101T000000Z", NULL, &p), -EINVAL);
        assert_int_equal(point_new(s, VM, "a/b", NULL, &p), -EINVAL);
        assert_int_equal(point_new(s, VM, ".hidden", NULL, &p), -EINVAL);
        assert_int_equal(point_new(s, VM, "20260101T000000Z", NULL, &p), 0);
        assert_int_equal(point_add_disk(p, "../x", 10, NULL), -EINVAL);
        assert_int_equal(point_add_disk(p, "vda", 10, NULL), 0);
        assert_int_equal(point_add_disk(p, "vda", 10, NULL), -EEXIST);
        assert_int_equal(point_set_chunk(p, 1, 0, NULL), -EINVAL);
        assert_int_equal(point_set_chunk(p, 0, 1, NULL), -EINVAL);
        /* A digest of a chunk the store does not have: the commit refuses. */
        ChunkDigest d;
        memset(d.b, 0x11, 32);
        assert_int_equal(point_set_chunk(p, 0, 0, &d), 0);
        assert_int_equal(point_commit(p), -EBADMSG);
        point_free(p);
        json_t *list = NULL;
        assert_int_equal(point_list(s, NULL, &list), 0);
        assert_int_equal(json_array_size(list), 0);
        json_decref(list);
        chunkstore_free(s);
}

static void test_commit_atomic(void **state) {
        ChunkStore *s = open_store("atomic");
        uint8_t buf[1000];
        fill(buf, sizeof buf, 5);
        /* A point never committed is not listed. */
        Point *p = NULL;
        assert_int_equal(point_new(s, VM, "20260101T000000Z", NULL, &p), 0);
        unsigned k;
        assert_int_equal(point_add_disk(p, "vda", sizeof buf, &k), 0);
        ChunkDigest d;
        assert_int_equal(chunkstore_put(s, buf, sizeof buf, &d, NULL), 0);
        assert_int_equal(point_set_chunk(p, k, 0, &d), 0);
        point_free(p);
        /* A killed commit: the point's directory, its index and a temporary
         * manifest, but no manifest. */
        char path[700];
        snprintf(path, sizeof path, "%s/vm/%s/20260101T000100Z", chunkstore_dir(s), VM);
        char cmd[800];
        snprintf(path, sizeof path, "%s/vm/%s", chunkstore_dir(s), VM);
        mkdir(path, 0755);
        snprintf(path, sizeof path, "%s/vm/%s/20260101T000100Z", chunkstore_dir(s), VM);
        mkdir(path, 0755);
        snprintf(cmd, sizeof cmd, "%s/.tmp.manifest.json.1.1", path);
        FILE *f = fopen(cmd, "w");
        fputs("{\"format\":1,\"disks\":[],\"meta\":{}}", f);
        fclose(f);
        json_t *list = NULL;
        assert_int_equal(point_list(s, NULL, &list), 0);
        assert_int_equal(json_array_size(list), 0);
        json_decref(list);
        assert_int_equal(point_open(s, VM, "20260101T000100Z", &p), -ENOENT);
        /* The id can still be used: the next backup succeeds. */
        assert_int_equal(point_new(s, VM, "20260101T000100Z", NULL, &p), 0);
        assert_int_equal(point_add_disk(p, "vda", sizeof buf, &k), 0);
        assert_int_equal(point_set_chunk(p, k, 0, &d), 0);
        assert_int_equal(point_commit(p), 0);
        point_free(p);
        assert_int_equal(point_list(s, NULL, &list), 0);
        assert_int_equal(json_array_size(list), 1);
        json_decref(list);
        /* A manifest naming a damaged index is refused, not misread. */
        snprintf(cmd, sizeof cmd, "%s/disk-0.idx", path);
        f = fopen(cmd, "r+");
        fseek(f, 30, SEEK_SET);
        fputc(0x55, f);
        fclose(f);
        assert_int_equal(point_open(s, VM, "20260101T000100Z", &p), -EBADMSG);
        chunkstore_free(s);
}

static void test_corrupt_chunk(void **state) {
        ChunkStore *s = open_store("corrupt");
        uint64_t len = 2ull * CHUNK_SIZE;
        uint8_t *img = malloc(len);
        fill(img, len, 20);
        make_point(s, VM, "20260102T000000Z", NULL, img, len, NULL);
        make_point(s, "aaaaaaaa-2222-3333-4444-555555555555", "20260102T000000Z", NULL, img, CHUNK_SIZE, NULL);
        Point *p = NULL;
        assert_int_equal(point_open(s, VM, "20260102T000000Z", &p), 0);
        ChunkDigest d;
        assert_int_equal(point_chunk(p, 0, 1, &d, NULL), 0);
        char path[700];
        chunk_file(s, &d, path, sizeof path);
        int fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        struct stat st;
        fstat(fd, &st);
        uint8_t b;
        assert_int_equal(pread(fd, &b, 1, st.st_size / 2), 1);
        b ^= 0xff;
        assert_int_equal(pwrite(fd, &b, 1, st.st_size / 2), 1);
        close(fd);
        uint8_t *out = malloc(CHUNK_SIZE);
        assert_int_equal(chunkstore_get(s, &d, out, CHUNK_SIZE, NULL), -EBADMSG);

        json_t *res = NULL;
        assert_int_equal(chunkstore_verify(s, NULL, NULL, &res), 0);
        assert_int_equal(json_integer_value(json_object_get(res, "points")), 2);
        assert_int_equal(json_integer_value(json_object_get(res, "chunks")), 2);
        json_t *bad = json_object_get(res, "bad_points");
        assert_int_equal(json_array_size(bad), 1); /* the other VM only uses chunk 0 */
        json_t *b0 = json_array_get(bad, 0);
        assert_string_equal(json_string_value(json_object_get(b0, "vm_uuid")), VM);
        assert_string_equal(json_string_value(json_object_get(b0, "point_id")), "20260102T000000Z");
        assert_string_equal(json_string_value(json_object_get(b0, "disk")), "vda");
        assert_int_equal(json_integer_value(json_object_get(b0, "chunk")), 1);
        assert_string_equal(json_string_value(json_object_get(b0, "reason")), "corrupt");
        json_decref(res);

        /* A missing chunk is named too; restoring it fails cleanly. */
        unlink(path);
        assert_int_equal(chunkstore_verify(s, NULL, NULL, &res), 0);
        b0 = json_array_get(json_object_get(res, "bad_points"), 0);
        assert_string_equal(json_string_value(json_object_get(b0, "reason")), "missing");
        json_decref(res);
        char out_path[512];
        snprintf(out_path, sizeof out_path, "%s/restore-bad.raw", dir);
        fd = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        assert_int_equal(point_read_disk(s, p, 0, fd, NULL, NULL), -ENOENT);
        close(fd);
        point_free(p);
        free(out);
        free(img);
        chunkstore_free(s);
}

/* ------------------------------------------------------------ gc */

static void age_all_chunks(ChunkStore *s, time_t when) {
        char cmd[700];
        /* find + touch on our own temporary directory only */
        snprintf(cmd, sizeof cmd, "find '%s/.chunks' -type f -exec touch -m -d @%lld {} +", chunkstore_dir(s),
                 (long long) when);
        assert_int_equal(system(cmd), 0);
}

static void test_gc(void **state) {
        ChunkStore *s = open_store("gc");
        uint8_t *img = malloc(3ull * CHUNK_SIZE);
        fill(img, 3ull * CHUNK_SIZE, 30);
        /* A: chunks 0,1 of img; B: chunks 1,2. */
        make_point(s, VM, "20260103T000000Z", NULL, img, 2ull * CHUNK_SIZE, NULL);
        make_point(s, VM, "20260103T001500Z", NULL, img + CHUNK_SIZE, 2ull * CHUNK_SIZE, NULL);
        ChunkDigest orphan_old, orphan_new, c0;
        uint8_t extra[5000];
        fill(extra, sizeof extra, 31);
        assert_int_equal(chunkstore_put(s, extra, sizeof extra, &orphan_old, NULL), 0);
        Point *a = NULL;
        assert_int_equal(point_open(s, VM, "20260103T000000Z", &a), 0);
        assert_int_equal(point_chunk(a, 0, 0, &c0, NULL), 0);
        point_free(a);
        assert_int_equal(point_remove(s, VM, "20260103T000000Z"), 0);
        time_t now = time(NULL);
        age_all_chunks(s, now - 3600);
        /* A chunk written by a backup still running (newer than its start). */
        fill(extra, sizeof extra, 32);
        assert_int_equal(chunkstore_put(s, extra, sizeof extra, &orphan_new, NULL), 0);

        /* A point whose manifest cannot be read stops the collection. */
        char path[700];
        snprintf(path, sizeof path, "%s/vm/%s/20260103T003000Z", chunkstore_dir(s), VM);
        mkdir(path, 0755);
        strcat(path, "/manifest.json");
        FILE *f = fopen(path, "w");
        fputs("{not json", f);
        fclose(f);
        ChunkStoreGc g = {0};
        assert_int_equal(chunkstore_gc(s, now - 60, &g), -EBADMSG);
        assert_true(chunkstore_has(s, &orphan_old));
        unlink(path);

        assert_int_equal(chunkstore_gc(s, now - 60, &g), 0);
        assert_int_equal(g.chunks_removed, 2); /* c0 and the old orphan */
        assert_int_equal(g.chunks_kept, 3);    /* B's two, the new orphan */
        assert_true(g.bytes_removed > CHUNK_SIZE / 2);
        assert_false(chunkstore_has(s, &orphan_old));
        assert_false(chunkstore_has(s, &c0));
        assert_true(chunkstore_has(s, &orphan_new));
        /* B restores whole. */
        Point *b = NULL;
        assert_int_equal(point_open(s, VM, "20260103T001500Z", &b), 0);
        snprintf(path, sizeof path, "%s/gc-restore.raw", dir);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        assert_int_equal(point_read_disk(s, b, 0, fd, NULL, NULL), 0);
        uint8_t *back = malloc(2ull * CHUNK_SIZE);
        assert_int_equal(pread(fd, back, 2ull * CHUNK_SIZE, 0), (ssize_t) (2ull * CHUNK_SIZE));
        assert_memory_equal(back, img + CHUNK_SIZE, 2ull * CHUNK_SIZE);
        close(fd);
        point_free(b);
        /* A dedup hit refreshes an old unreferenced chunk: the GC keeps it. */
        age_all_chunks(s, now - 3600);
        ChunkDigest d;
        assert_int_equal(chunkstore_put(s, extra, sizeof extra, &d, NULL), 0);
        assert_int_equal(chunkstore_gc(s, now - 60, &g), 0);
        assert_int_equal(g.chunks_removed, 0);
        assert_true(chunkstore_has(s, &orphan_new));

        /* An incremental point inherits chunks it never put; its base is
         * pruned and the chunks are old before it commits: the commit
         * refreshes them, so a GC beside it keeps what it names. */
        b = NULL;
        assert_int_equal(point_open(s, VM, "20260103T001500Z", &b), 0);
        Point *inc = NULL;
        assert_int_equal(point_new(s, VM, "20260103T004500Z", b, &inc), 0);
        unsigned k;
        assert_int_equal(point_add_disk(inc, "vda", 2ull * CHUNK_SIZE, &k), 0);
        fill(extra, sizeof extra, 33);
        assert_int_equal(chunkstore_put(s, extra, sizeof extra, &d, NULL), 0);
        assert_int_equal(point_set_chunk(inc, k, 1, &d), 0);
        ChunkDigest inherited, replaced;
        assert_int_equal(point_chunk(b, 0, 0, &inherited, NULL), 0);
        assert_int_equal(point_chunk(b, 0, 1, &replaced, NULL), 0);
        point_free(b);
        assert_int_equal(point_remove(s, VM, "20260103T001500Z"), 0);
        age_all_chunks(s, now - 3600);
        assert_int_equal(point_commit(inc), 0);
        point_free(inc);
        /* (A GC that marked before the commit would see it fresh.) */
        struct stat st;
        chunk_file(s, &inherited, path, sizeof path);
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_mtime > now - 60);
        assert_int_equal(chunkstore_gc(s, now - 60, &g), 0);
        assert_true(chunkstore_has(s, &inherited));
        assert_false(chunkstore_has(s, &replaced));
        free(back);
        free(img);
        chunkstore_free(s);
}

/* ------------------------------------------------------------ prune */

static time_t ts(const char *iso) {
        struct tm tm = {0};
        assert_non_null(strptime(iso, "%Y-%m-%dT%H:%M:%S", &tm));
        return timegm(&tm);
}

/* Runs prune_select on TIMES and returns the kept ones as "i,j,..." */
static const char *kept(const char *const *times, size_t n, PrunePolicy pol) {
        static char out[256];
        time_t t[32];
        bool keep[32];
        /* Oldest first here; prune_select takes any order: reverse it. */
        for (size_t i = 0; i < n; i++)
                t[n - 1 - i] = ts(times[i]);
        prune_select(t, n, &pol, keep);
        out[0] = 0;
        for (size_t i = 0; i < n; i++)
                if (keep[n - 1 - i])
                        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%zu", out[0] ? "," : "", i);
        return out;
}

/* The cases of Proxmox Backup Server's tests/prune.rs (kept lists). PBS's
 * keep-last 0 (remove all) has no equivalent: an all-zero policy keeps all. */
static void test_prune_pbs(void **state) {
        const char *simple[] = {"2019-12-02T11:59:15", "2019-12-03T11:59:15", "2019-12-04T11:59:15",
                                "2019-12-04T12:59:15"};
        assert_string_equal(kept(simple, 4, (PrunePolicy){.keep_last = 4}), "0,1,2,3");
        assert_string_equal(kept(simple, 4, (PrunePolicy){.keep_last = 3}), "1,2,3");
        assert_string_equal(kept(simple, 4, (PrunePolicy){.keep_last = 2}), "2,3");
        assert_string_equal(kept(simple, 4, (PrunePolicy){.keep_last = 1}), "3");
        assert_string_equal(kept(simple, 4, (PrunePolicy){0}), "0,1,2,3");
        assert_string_equal(kept(simple, 4, (PrunePolicy){.keep_last = 2, .keep_daily = 2}), "0,1,2,3");
        assert_string_equal(kept(simple, 4, (PrunePolicy){.keep_daily = 3}), "0,1,3");
        assert_string_equal(kept(simple, 4, (PrunePolicy){.keep_daily = 2}), "1,3");
        assert_string_equal(kept(simple, 4, (PrunePolicy){.keep_weekly = 5}), "3");
        assert_string_equal(kept(simple, 4, (PrunePolicy){.keep_daily = 1, .keep_weekly = 5}), "3");
        assert_string_equal(kept(simple, 4, (PrunePolicy){.keep_monthly = 6}), "3");
        assert_string_equal(kept(simple, 4, (PrunePolicy){.keep_yearly = 7}), "3");
        assert_string_equal(kept(simple, 4, (PrunePolicy){.keep_weekly = 5, .keep_monthly = 6, .keep_yearly = 7}),
                            "3");

        const char *hourly[] = {"2019-11-15T09:39:15", "2019-11-15T10:49:15", "2019-11-15T10:59:15",
                                "2019-11-15T11:39:15", "2019-11-15T11:49:15", "2019-11-15T11:59:15"};
        assert_string_equal(kept(hourly, 6, (PrunePolicy){.keep_hourly = 3}), "0,2,5");
        assert_string_equal(kept(hourly, 6, (PrunePolicy){.keep_hourly = 2}), "2,5");

        const char *simple2[] = {"2018-11-15T11:59:15", "2019-11-15T11:59:15", "2019-11-21T11:59:15",
                                 "2019-11-22T11:59:15", "2019-11-29T11:59:15", "2019-12-01T11:59:15",
                                 "2019-12-02T11:59:15", "2019-12-03T11:59:15", "2019-12-04T11:59:15"};
        assert_string_equal(kept(simple2, 9, (PrunePolicy){.keep_daily = 1}), "8");
        assert_string_equal(kept(simple2, 9, (PrunePolicy){.keep_last = 1, .keep_daily = 1}), "7,8");
        assert_string_equal(kept(simple2, 9, (PrunePolicy){.keep_daily = 1, .keep_weekly = 1}), "5,8");
        assert_string_equal(kept(simple2, 9, (PrunePolicy){.keep_daily = 1, .keep_weekly = 1, .keep_monthly = 1}),
                            "3,5,8");
        assert_string_equal(kept(simple2, 9, (PrunePolicy){.keep_monthly = 1, .keep_yearly = 1}), "0,8");
}

/* ------------------------------------------------------------ copies */

/* ------------------------------------------------------------ chunk size */

static ChunkStore *open_sized(const char *sub, uint32_t cs) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, sub);
        ChunkStore *s = NULL;
        assert_int_equal(chunkstore_open_sized(path, true, cs, &s), 0);
        return s;
}

static void read_back(ChunkStore *s, const char *id, const uint8_t *want, uint64_t len) {
        Point *p = NULL;
        assert_int_equal(point_open(s, VM, id, &p), 0);
        char path[512];
        snprintf(path, sizeof path, "%s/cs-restore.raw", dir);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(point_read_disk(s, p, 0, fd, NULL, NULL), 0);
        uint8_t *got = malloc(len);
        assert_int_equal(pread(fd, got, len, 0), (ssize_t) len);
        assert_memory_equal(got, want, len);
        struct stat st;
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(st.st_size, (off_t) len);
        close(fd);
        free(got);
        point_free(p);
}

/* A datastore of 256 KiB chunks: its marker, its limits, points and
 * incrementals cut at its size, verify, gc, and copies refused between
 * stores of different sizes (4 MiB is the default tested everywhere else). */
static void test_chunk_size(void **state) {
        const uint32_t cs = 256u << 10;
        char path[512];
        snprintf(path, sizeof path, "%s/cs-bad", dir);
        ChunkStore *s = NULL;
        assert_int_equal(chunkstore_open_sized(path, true, 3u << 20, &s), -EINVAL);   /* not a power of two */
        assert_int_equal(chunkstore_open_sized(path, true, 128u << 10, &s), -EINVAL); /* below 256 KiB */
        assert_int_equal(chunkstore_open_sized(path, true, 8u << 20, &s), -EINVAL);   /* above 4 MiB */
        assert_false(chunk_size_valid(0));
        assert_true(chunk_size_valid(1u << 20));

        s = open_sized("cs", cs);
        assert_int_equal(chunkstore_chunk_size(s), cs);
        /* The marker holds it; reopening (plain or asking another size) keeps it. */
        char marker[600];
        snprintf(marker, sizeof marker, "%s/.armada-datastore", chunkstore_dir(s));
        json_t *mj = json_load_file(marker, 0, NULL);
        assert_non_null(mj);
        assert_int_equal(json_integer_value(json_object_get(mj, "chunk_size")), cs);
        json_decref(mj);
        ChunkStore *again = NULL;
        assert_int_equal(chunkstore_open(chunkstore_dir(s), false, &again), 0);
        assert_int_equal(chunkstore_chunk_size(again), cs);
        again = chunkstore_free(again);
        assert_int_equal(chunkstore_open_sized(chunkstore_dir(s), true, 1u << 20, &again), 0);
        assert_int_equal(chunkstore_chunk_size(again), cs);
        again = chunkstore_free(again);

        /* A put longer than the store's chunk is refused. */
        uint64_t len = 13ull * cs + 12345; /* 14 chunks, the last short */
        uint8_t *img = malloc(len);
        fill(img, len, 60);
        memset(img + 3 * cs, 0, cs); /* chunk 3 all zeros */
        ChunkDigest d;
        assert_int_equal(chunkstore_put(s, img, cs + 1, &d, NULL), -EINVAL);

        /* Full point: 14 chunks, restored byte-exact, its manifest says 256 KiB. */
        make_point(s, VM, "20260105T000000Z", NULL, img, len, NULL);
        Point *full = NULL;
        assert_int_equal(point_open(s, VM, "20260105T000000Z", &full), 0);
        assert_int_equal(point_disk_chunks(full, 0), 14);
        bool zero = false;
        assert_int_equal(point_chunk(full, 0, 3, NULL, &zero), 0);
        assert_true(zero);
        read_back(s, "20260105T000000Z", img, len);
        snprintf(path, sizeof path, "%s/vm/%s/20260105T000000Z/manifest.json", chunkstore_dir(s), VM);
        mj = json_load_file(path, 0, NULL);
        assert_int_equal(json_integer_value(json_object_get(mj, "chunk_size")), cs);
        json_decref(mj);

        /* Incremental: 4 KiB changed inside chunk 5 costs one 256 KiB chunk;
         * the other 13 are the base's. */
        uint8_t *img2 = malloc(len);
        memcpy(img2, img, len);
        fill(img2 + 5 * cs + 1000, 4096, 61);
        bool only[14] = {false};
        only[5] = true;
        ChunkStoreUsage u0, u1;
        assert_int_equal(chunkstore_usage(s, &u0), 0);
        make_point(s, VM, "20260105T001500Z", full, img2, len, only);
        assert_int_equal(chunkstore_usage(s, &u1), 0);
        assert_int_equal(u1.chunks, u0.chunks + 1);
        Point *inc = NULL;
        assert_int_equal(point_open(s, VM, "20260105T001500Z", &inc), 0);
        for (uint64_t c = 0; c < 14; c++) {
                ChunkDigest a, b;
                assert_int_equal(point_chunk(full, 0, c, &a, NULL), 0);
                assert_int_equal(point_chunk(inc, 0, c, &b, NULL), 0);
                assert_int_equal(memcmp(a.b, b.b, 32) != 0, c == 5);
        }
        ChunkDigest replaced;
        assert_int_equal(point_chunk(full, 0, 5, &replaced, NULL), 0);
        point_free(inc);
        read_back(s, "20260105T001500Z", img2, len);
        read_back(s, "20260105T000000Z", img, len);

        /* Verify: both points good; a corrupted chunk of the incremental is named. */
        json_t *res = NULL;
        assert_int_equal(chunkstore_verify(s, NULL, NULL, &res), 0);
        assert_int_equal(json_integer_value(json_object_get(res, "points")), 2);
        assert_int_equal(json_array_size(json_object_get(res, "bad_points")), 0);
        json_decref(res);
        ChunkDigest changed;
        inc = NULL;
        assert_int_equal(point_open(s, VM, "20260105T001500Z", &inc), 0);
        assert_int_equal(point_chunk(inc, 0, 5, &changed, NULL), 0);
        point_free(inc);
        char cpath[600];
        chunk_file(s, &changed, cpath, sizeof cpath);
        char saved[600];
        snprintf(saved, sizeof saved, "%s/cs-saved", dir);
        assert_int_equal(rename(cpath, saved), 0);
        FILE *f = fopen(cpath, "w");
        fputs("ACK1garbage", f);
        fclose(f);
        assert_int_equal(chunkstore_verify(s, NULL, NULL, &res), 0);
        json_t *bad = json_object_get(res, "bad_points");
        assert_int_equal(json_array_size(bad), 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(bad, 0), "point_id")), "20260105T001500Z");
        assert_int_equal(json_integer_value(json_object_get(json_array_get(bad, 0), "chunk")), 5);
        json_decref(res);
        assert_int_equal(rename(saved, cpath), 0);

        /* GC after the full point is gone: only the chunk the incremental
         * replaced goes. */
        point_free(full);
        assert_int_equal(point_remove(s, VM, "20260105T000000Z"), 0);
        time_t now = time(NULL);
        age_all_chunks(s, now - 3600);
        ChunkStoreGc g = {0};
        assert_int_equal(chunkstore_gc(s, now - 60, &g), 0);
        assert_int_equal(g.chunks_removed, 1);
        assert_false(chunkstore_has(s, &replaced));
        read_back(s, "20260105T001500Z", img2, len);

        /* Copies: to a 4 MiB store refused (nothing copied), to a 256 KiB
         * one done; an exported point imports only at its size. */
        ChunkStore *big = open_store("cs-4m"), *same = open_sized("cs-256k", cs);
        json_t *names = json_pack("[{s:s, s:s}]", "vm_uuid", VM, "point_id", "20260105T001500Z");
        assert_int_equal(chunkstore_copy_points(s, big, names, NULL, NULL, NULL, NULL), -EXDEV);
        assert_false(point_exists(big, VM, "20260105T001500Z"));
        assert_int_equal(chunkstore_copy_points(s, same, names, NULL, NULL, NULL, NULL), 0);
        read_back(same, "20260105T001500Z", img2, len);
        json_decref(names);
        Point *p = NULL;
        json_t *m = NULL;
        assert_int_equal(point_open(s, VM, "20260105T001500Z", &p), 0);
        assert_int_equal(point_export(p, &m), 0);
        assert_int_equal(json_integer_value(json_object_get(m, "chunk_size")), cs);
        assert_int_equal(point_import(big, m), -EXDEV);
        json_object_del(m, "chunk_size"); /* an older armadad's: 4 MiB */
        assert_int_equal(point_import(s, m), -EXDEV);
        json_decref(m);
        point_free(p);
        /* A chunk cut at 4 MiB does not enter a 256 KiB store. */
        uint8_t *four = malloc(CHUNK_SIZE);
        fill(four, CHUNK_SIZE, 62);
        assert_int_equal(chunkstore_put(big, four, CHUNK_SIZE, &d, NULL), 0);
        uint8_t *raw = NULL;
        size_t rawlen = 0;
        assert_int_equal(chunkstore_read_raw(big, &d, &raw, &rawlen), 0);
        assert_int_equal(chunkstore_put_raw(same, &d, raw, rawlen, NULL), -EBADMSG);
        assert_int_equal(chunkstore_put_raw(big, &d, raw, rawlen, NULL), 0);
        free(raw);
        free(four);
        /* A manifest carried by hand into a store of another size is not a
         * point there (it would be cut wrong). */
        char cmd[1600];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s/vm/%s' && cp -r '%s/vm/%s/20260105T001500Z' '%s/vm/%s/'", chunkstore_dir(big),
                 VM, chunkstore_dir(s), VM, chunkstore_dir(big), VM);
        assert_int_equal(system(cmd), 0);
        p = NULL;
        assert_int_equal(point_open(big, VM, "20260105T001500Z", &p), -EBADMSG);
        json_t *list = NULL;
        assert_int_equal(point_list(big, VM, &list), 0);
        assert_int_equal(json_array_size(list), 0);
        json_decref(list);

        chunkstore_free(big);
        chunkstore_free(same);
        free(img);
        free(img2);
        chunkstore_free(s);
}

static void test_copy_points(void **state) {
        ChunkStore *src = open_store("copy-src"), *dst = open_store("copy-dst");
        uint64_t len = 3ull * CHUNK_SIZE;
        uint8_t *img = calloc(1, len);
        fill(img, 2ull * CHUNK_SIZE, 40); /* chunk 2 stays zero */
        make_point(src, VM, "20260104T000000Z", NULL, img, len, NULL);
        Point *base = NULL;
        assert_int_equal(point_open(src, VM, "20260104T000000Z", &base), 0);
        fill(img + CHUNK_SIZE, 100, 41);
        bool only[3] = {false, true, false};
        make_point(src, VM, "20260104T001500Z", base, img, len, only);
        point_free(base);

        /* An unknown point: nothing copied. */
        json_t *pts = json_pack("[{s:s, s:s}, {s:s, s:s}]", "vm_uuid", VM, "point_id", "20260104T000000Z", "vm_uuid",
                                VM, "point_id", "20990101T000000Z");
        uint64_t chunks = 99, bytes = 99;
        assert_int_equal(chunkstore_copy_points(src, dst, pts, NULL, NULL, &chunks, &bytes), -ENOENT);
        ChunkStoreUsage u;
        assert_int_equal(chunkstore_usage(dst, &u), 0);
        assert_int_equal(u.chunks, 0);
        assert_int_equal(u.points, 0);
        json_decref(pts);

        pts = json_pack("[{s:s, s:s}]", "vm_uuid", VM, "point_id", "20260104T000000Z");
        assert_int_equal(chunkstore_copy_points(src, dst, pts, NULL, NULL, &chunks, &bytes), 0);
        assert_int_equal(chunks, 2);
        assert_true(bytes > CHUNK_SIZE);
        json_decref(pts);
        /* Both points: the first is there, the second sends its one new chunk. */
        pts = json_pack("[{s:s, s:s}, {s:s, s:s}]", "vm_uuid", VM, "point_id", "20260104T000000Z", "vm_uuid", VM,
                        "point_id", "20260104T001500Z");
        assert_int_equal(chunkstore_copy_points(src, dst, pts, NULL, NULL, &chunks, &bytes), 0);
        assert_int_equal(chunks, 1);
        json_decref(pts);
        assert_int_equal(chunkstore_usage(dst, &u), 0);
        assert_int_equal(u.chunks, 3);
        assert_int_equal(u.points, 2);

        Point *p = NULL;
        assert_int_equal(point_open(dst, VM, "20260104T001500Z", &p), 0);
        assert_string_equal(json_string_value(point_meta(p, "vm_name")), "web01");
        char path[512];
        snprintf(path, sizeof path, "%s/copy-restore.raw", dir);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        assert_int_equal(point_read_disk(dst, p, 0, fd, NULL, NULL), 0);
        uint8_t *back = malloc(len);
        assert_int_equal(pread(fd, back, len, 0), (ssize_t) len);
        assert_memory_equal(back, img, len);
        close(fd);
        point_free(p);
        json_t *res = NULL;
        assert_int_equal(chunkstore_verify(dst, NULL, NULL, &res), 0);
        assert_int_equal(json_array_size(json_object_get(res, "bad_points")), 0);
        json_decref(res);
        free(back);
        free(img);
        chunkstore_free(src);
        chunkstore_free(dst);
}

/* Replication's primitives: a chunk file moved raw (checked on arrival), a
 * point exported and imported only once its chunks are there. */
static void test_replica_raw_and_import(void **state) {
        ChunkStore *src = open_store("rep-src"), *dst = open_store("rep-dst");
        uint64_t len = 2ull * CHUNK_SIZE + 100;
        uint8_t *img = calloc(1, len);
        fill(img, CHUNK_SIZE, 50);           /* chunk 1 stays zero */
        fill(img + 2ull * CHUNK_SIZE, 100, 51);
        make_point(src, VM, "20260105T000000Z", NULL, img, len, NULL);
        Point *p = NULL;
        assert_int_equal(point_open(src, VM, "20260105T000000Z", &p), 0);
        json_t *m = NULL;
        assert_int_equal(point_export(p, &m), 0);
        const char *hex = json_string_value(json_object_get(json_array_get(json_object_get(m, "disks"), 0), "digests"));
        assert_int_equal(strlen(hex), 3 * 64);

        /* Nothing there yet: the import is refused and commits nothing. */
        assert_int_equal(point_import(dst, m), -EBADMSG);
        json_t *l = NULL;
        assert_int_equal(point_list(dst, NULL, &l), 0);
        assert_int_equal(json_array_size(l), 0);
        json_decref(l);

        ChunkDigest d0, d2;
        bool zero;
        assert_int_equal(point_chunk(p, 0, 0, &d0, &zero), 0);
        assert_int_equal(point_chunk(p, 0, 2, &d2, &zero), 0);
        uint8_t *f0 = NULL, *f2 = NULL;
        size_t n0, n2;
        assert_int_equal(chunkstore_read_raw(src, &d0, &f0, &n0), 0);
        assert_int_equal(chunkstore_read_raw(src, &d2, &f2, &n2), 0);
        /* Another chunk's bytes under d0's name, a flipped byte, a short file: refused. */
        assert_int_equal(chunkstore_put_raw(dst, &d0, f2, n2, NULL), -EBADMSG);
        f0[n0 - 1] ^= 1;
        assert_int_equal(chunkstore_put_raw(dst, &d0, f0, n0, NULL), -EBADMSG);
        f0[n0 - 1] ^= 1;
        assert_int_equal(chunkstore_put_raw(dst, &d0, f0, 10, NULL), -EBADMSG);
        assert_false(chunkstore_has(dst, &d0));
        uint64_t w = 0;
        assert_int_equal(chunkstore_put_raw(dst, &d0, f0, n0, &w), 0);
        assert_int_equal(w, n0);
        assert_int_equal(chunkstore_put_raw(dst, &d0, f0, n0, &w), 0);
        assert_int_equal(w, 0);
        assert_int_equal(point_import(dst, m), -EBADMSG);
        assert_int_equal(chunkstore_put_raw(dst, &d2, f2, n2, NULL), 0);

        /* Malformed: the digest list does not match the size. */
        json_t *bad = json_deep_copy(m);
        json_object_set_new(json_array_get(json_object_get(bad, "disks"), 0), "size", json_integer(CHUNK_SIZE));
        assert_int_equal(point_import(dst, bad), -EINVAL);
        json_decref(bad);

        assert_int_equal(point_import(dst, m), 0);
        assert_int_equal(point_import(dst, m), -EEXIST);
        Point *q = NULL;
        assert_int_equal(point_open(dst, VM, "20260105T000000Z", &q), 0);
        char path[512];
        snprintf(path, sizeof path, "%s/rep-restore.raw", dir);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        assert_int_equal(point_read_disk(dst, q, 0, fd, NULL, NULL), 0);
        uint8_t *back = calloc(1, len);
        assert_true(pread(fd, back, len, 0) >= 0);
        assert_memory_equal(back, img, len);
        close(fd);
        point_free(q);
        point_free(p);
        json_decref(m);
        free(f0);
        free(f2);
        free(back);
        free(img);
        chunkstore_free(src);
        chunkstore_free(dst);
}

/* ------------------------------------------------------------ paths */

static void path_refused(const char *path, bool may_create, int status) {
        OpError err = {0};
        char *real = NULL;
        assert_int_equal(protect_path_check("path", path, may_create, &real, &err) < 0, true);
        assert_null(real);
        assert_int_equal(err.status, status);
        assert_string_equal(err.field, "path");
}

static void test_path_check(void **state) {
        char root[300], out[300], p[700];
        snprintf(root, sizeof root, "%s/root", dir);
        snprintf(out, sizeof out, "%s/outside", dir);
        mkdir(root, 0755);
        mkdir(out, 0755);
        snprintf(p, sizeof p, "%s/escape", root);
        assert_int_equal(symlink(out, p), 0);
        protect_add_backup_root(root);
        const char *const *roots;
        assert_int_equal(protect_backup_roots(&roots), 1);

        OpError err = {0};
        char *real = NULL;
        snprintf(p, sizeof p, "%s/ds1", root);
        assert_int_equal(protect_path_check("path", p, true, &real, &err), 0);
        assert_string_equal(real, p);
        free(real);
        real = NULL;
        /* Must exist when it may not be made. */
        path_refused(p, false, 422);
        path_refused("relative", true, 400);
        snprintf(p, sizeof p, "%s/../root/ds", root);
        path_refused(p, true, 400);
        snprintf(p, sizeof p, "%s/./ds", root);
        path_refused(p, true, 400);
        path_refused(root, true, 400); /* the root itself */
        snprintf(p, sizeof p, "%s/ds", out);
        path_refused(p, true, 400);
        snprintf(p, sizeof p, "%s/escape", root);
        path_refused(p, true, 400);
        snprintf(p, sizeof p, "%s/escape/ds", root);
        path_refused(p, true, 400);
        snprintf(p, sizeof p, "%s/no/such", root);
        path_refused(p, true, 422);
        /* Outside every root: 400 whether it exists or not (nothing outside
         * is probed). */
        path_refused("/nonexistent-armada-dir/x/y", true, 400);
        path_refused("/etc", false, 400);
        /* A trailing slash is the same directory. */
        snprintf(p, sizeof p, "%s/ds2/", root);
        assert_int_equal(protect_path_check("path", p, true, &real, &err), 0);
        snprintf(p, sizeof p, "%s/ds2", root);
        assert_string_equal(real, p);
        free(real);
}

/* The read-only NBD server of a point (file-level restore), driven by
 * libnbd: handshake and block sizes, reads inside one chunk and across
 * chunk boundaries, an all-zero chunk, the short last chunk, a read past
 * the end (EINVAL), an unknown export, and a chunk corrupted on disk (EIO). */
/* The file-level export at chunk size CS: reads that straddle chunks
 * (through chunkstore_span()) give the image's bytes. */
static void nbdserve_at(uint32_t cs, const char *sub) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, sub);
        ChunkStore *s = NULL;
        assert_int_equal(chunkstore_open_sized(path, true, cs, &s), 0);
        const uint64_t CS = cs;
        uint64_t len = 3ull * CS + 6000;
        uint8_t *img = calloc(1, len);
        fill(img, CS, 40);                            /* 0 data, 1 zero */
        fill(img + 2 * CS, CS + 6000, 41);    /* 2 data, 3 short */
        Point *p = NULL;
        unsigned k;
        assert_int_equal(point_new(s, VM, "20260102T000000Z", NULL, &p), 0);
        assert_int_equal(point_add_disk(p, "vdb", len, &k), 0);
        ChunkDigest dg[4];
        for (uint64_t c = 0; c < 4; c++) {
                size_t n = (size_t) (len - c * CS < CS ? len - c * CS : CS);
                if (c == 1) {
                        assert_int_equal(point_set_chunk(p, k, c, NULL), 0);
                        continue;
                }
                assert_int_equal(chunkstore_put(s, img + c * CS, n, &dg[c], NULL), 0);
                assert_int_equal(point_set_chunk(p, k, c, &dg[c]), 0);
        }
        assert_int_equal(point_commit(p), 0);
        point_free(p);
        assert_int_equal(point_open(s, VM, "20260102T000000Z", &p), 0);

        ProtectNbdServer *srv = NULL;
        assert_int_equal(protect_nbdserve_start(s, p, 0, dir, &srv), 0);
        struct stat sb;
        char sockdir[512];
        snprintf(sockdir, sizeof sockdir, "%s", protect_nbdserve_socket(srv));
        *strrchr(sockdir, '/') = 0;
        assert_int_equal(stat(sockdir, &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0700);

        /* An export of another name is refused at the handshake. */
        struct nbd_handle *bad = nbd_create();
        assert_non_null(bad);
        assert_int_equal(nbd_set_export_name(bad, "vda"), 0);
        assert_true(nbd_connect_unix(bad, protect_nbdserve_socket(srv)) < 0);
        nbd_close(bad);

        struct nbd_handle *h = nbd_create();
        assert_non_null(h);
        assert_int_equal(nbd_set_export_name(h, "vdb"), 0);
        assert_int_equal(nbd_connect_unix(h, protect_nbdserve_socket(srv)), 0);
        assert_int_equal(nbd_get_size(h), (int64_t) len);
        assert_int_equal(nbd_is_read_only(h), 1);
        assert_int_equal(nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM), NBDSERVE_MAX_READ);
        assert_int_equal(nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM), 1);
        uint8_t *buf = malloc(2 * CS + 1000);
        const struct { uint64_t off; size_t n; } reads[] = {
                { 0, 512 },                                   /* inside chunk 0 */
                { CS - 100, 300 },                    /* 0 into the zero chunk 1 */
                { CS + 5, 4096 },                     /* the zero chunk only */
                { CS - 7, CS + 20 },          /* 0, all of 1, into 2 */
                { 2 * CS - 1, CS + 2 },       /* 1, 2, into the short 3 */
                { 3 * CS + 1000, 5000 },              /* the end of the short chunk */
        };
        for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
                memset(buf, 0xee, reads[i].n);
                assert_int_equal(nbd_pread(h, buf, reads[i].n, reads[i].off, 0), 0);
                assert_memory_equal(buf, img + reads[i].off, reads[i].n);
        }
        /* Past the end: libnbd checks that itself unless told not to. */
        assert_int_equal(nbd_set_strict_mode(h, 0), 0);
        assert_true(nbd_pread(h, buf, 4096, len - 100, 0) < 0);
        assert_int_equal(nbd_get_errno(), EINVAL);
        assert_true(nbd_pread(h, buf, 512, len + 4096, 0) < 0);
        assert_int_equal(nbd_get_errno(), EINVAL);
        /* A write is refused by the server too. */
        assert_true(nbd_pwrite(h, buf, 512, 0, 0) < 0);
        assert_int_equal(nbd_get_errno(), EPERM);
        /* A corrupt chunk fails the read, it is never served. */
        char cf[1024];
        chunk_file(s, &dg[2], cf, sizeof cf);
        int fd = open(cf, O_RDWR);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "XXXXXXXX", 8, 40), 8);
        close(fd);
        struct nbd_handle *h2 = nbd_create();   /* a connection of its own: nothing cached */
        assert_non_null(h2);
        assert_int_equal(nbd_connect_unix(h2, protect_nbdserve_socket(srv)), 0);   /* "": the default export */
        assert_true(nbd_pread(h2, buf, 512, 2 * CS + 4096, 0) < 0);
        assert_int_equal(nbd_get_errno(), EIO);
        assert_int_equal(nbd_pread(h2, buf, 512, 0, 0), 0);   /* the connection lives on */
        assert_memory_equal(buf, img, 512);
        nbd_close(h2);
        /* Stop ends a connection still open. */
        srv = protect_nbdserve_stop(srv);
        assert_true(nbd_pread(h, buf, 512, 0, 0) < 0);
        assert_int_equal(stat(sockdir, &sb), -1);
        nbd_close(h);
        free(buf);
        free(img);
        point_free(p);
        chunkstore_free(s);
}

static void test_nbdserve(void **state) {
        nbdserve_at(CHUNK_SIZE, "nbdserve");
}

static void test_nbdserve_small_chunks(void **state) {
        nbdserve_at(CHUNK_SIZE_MIN, "nbdserve-256k");
}

/* chunkstore_span(): the one place a byte range is cut into chunks. */
static void span_case(const ChunkStore *s, uint64_t off, uint64_t end, const ChunkSpan *want, size_t n) {
        size_t i = 0;
        ChunkSpan sp;
        for (uint64_t o = off; o < end; o += sp.len, i++) {
                assert_int_equal(chunkstore_span(s, o, end, &sp), 0);
                assert_true(i < n);
                assert_int_equal(sp.index, want[i].index);
                assert_int_equal(sp.within, want[i].within);
                assert_int_equal(sp.len, want[i].len);
                /* The span is where the walk is, and never leaves its chunk. */
                assert_int_equal(sp.index * chunkstore_chunk_size(s) + sp.within, o);
                assert_true((uint64_t) sp.within + sp.len <= chunkstore_chunk_size(s));
        }
        assert_int_equal(i, n);
}

static void test_chunk_span(void **state) {
        static const uint32_t sizes[] = { 256u << 10, 4u << 20 };
        for (size_t z = 0; z < 2; z++) {
                const uint32_t cs = sizes[z];
                char path[512];
                snprintf(path, sizeof path, "%s/span-%u", dir, cs);
                ChunkStore *s = NULL;
                assert_int_equal(chunkstore_open_sized(path, true, cs, &s), 0);
                assert_int_equal(chunkstore_chunk_size(s), cs);
                /* A whole disk of 3.5 chunks: whole chunks, then the short tail. */
                const ChunkSpan disk[] = { { 0, 0, cs }, { 1, 0, cs }, { 2, 0, cs }, { 3, 0, cs / 2 } };
                span_case(s, 0, 3ull * cs + cs / 2, disk, 4);
                /* Straddling one boundary. */
                const ChunkSpan two[] = { { 0, cs - 100, 100 }, { 1, 0, 200 } };
                span_case(s, cs - 100, cs + 200, two, 2);
                /* One byte either side of a whole chunk. */
                const ChunkSpan three[] = { { 0, cs - 1, 1 }, { 1, 0, cs }, { 2, 0, 1 } };
                span_case(s, cs - 1, 2ull * cs + 1, three, 3);
                /* Inside one chunk, and ending exactly on a boundary. */
                const ChunkSpan inside[] = { { 1, 10, 10 } };
                span_case(s, cs + 10, cs + 20, inside, 1);
                const ChunkSpan to_edge[] = { { 2, cs - 4096, 4096 } };
                span_case(s, 3ull * cs - 4096, 3ull * cs, to_edge, 1);
                /* Far into a large disk (1 TiB): no 32-bit overflow. */
                const uint64_t far = (1ull << 40) - 7;
                const ChunkSpan big[] = { { far / cs, (uint32_t) (far % cs), 7 } };
                span_case(s, far, 1ull << 40, big, 1);
                /* An empty or reversed range is refused and leaves *ret alone. */
                ChunkSpan sp = { 42, 42, 42 };
                assert_int_equal(chunkstore_span(s, cs, cs, &sp), -EINVAL);
                assert_int_equal(chunkstore_span(s, cs + 1, cs, &sp), -EINVAL);
                assert_int_equal(sp.index, 42);
                chunkstore_free(s);
        }
}

/* File-level restore paths: normalised lexically, never above the root. */
static void test_files_path_normalize(void **state) {
        static const struct { const char *in, *out; } ok[] = {
                { "/", "/" }, { "//", "/" }, { "/.", "/" }, { "/sda1", "/sda1" }, { "/sda1/", "/sda1" },
                { "/sda1//etc/./hosts", "/sda1/etc/hosts" }, { "/sda1/etc/../var", "/sda1/var" }, { "/sda1/..", "/" },
                { "/a/b/c/../../d", "/a/d" }, { "/...", "/..." }, { "/a/..b", "/a/..b" },
        };
        for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
                char *out = NULL;
                assert_int_equal(protect_files_path_normalize(ok[i].in, &out), 0);
                assert_string_equal(out, ok[i].out);
                free(out);
        }
        static const char *const bad[] = { "", "sda1/etc", "/..", "/sda1/../..", "/a/../../b", NULL };
        char *out = (char *) "untouched";
        for (size_t i = 0; bad[i]; i++)
                assert_int_equal(protect_files_path_normalize(bad[i], &out), -EINVAL);
        assert_int_equal(protect_files_path_normalize(NULL, &out), -EINVAL);
        assert_string_equal(out, "untouched");
        char *longp = malloc(PROTECT_FILES_PATH_MAX + 2);
        longp[0] = '/';
        memset(longp + 1, 'a', PROTECT_FILES_PATH_MAX);
        longp[PROTECT_FILES_PATH_MAX + 1] = 0;
        assert_int_equal(protect_files_path_normalize(longp, &out), -EINVAL);
        longp[PROTECT_FILES_PATH_MAX] = 0;
        assert_int_equal(protect_files_path_normalize(longp, &out), 0);
        free(out);
        free(longp);
}

static void test_point_time(void **state) {
        time_t t;
        assert_int_equal(protect_point_time("20260102T030405Z", &t), 0);
        assert_int_equal(t, 1767323045);
        assert_int_equal(protect_point_time("20260102T030405", &t), -EINVAL);
        assert_int_equal(protect_point_time("x", &t), -EINVAL);
}

static void test_snapshot_names(void **state) {
        static const char *const good[] = { "a", "Z", "0", "before-upgrade", "v1.2_rc-3", "snap-20261201-054000" };
        for (size_t i = 0; i < sizeof good / sizeof *good; i++)
                assert_int_equal(protect_snapshot_name_check(good[i], NULL, 0), 0);
        char max[PROTECT_SNAPSHOT_NAME_MAX + 2];
        memset(max, 'x', PROTECT_SNAPSHOT_NAME_MAX);
        max[PROTECT_SNAPSHOT_NAME_MAX] = 0;
        assert_int_equal(protect_snapshot_name_check(max, NULL, 0), 0);
        max[PROTECT_SNAPSHOT_NAME_MAX] = 'x';
        max[PROTECT_SNAPSHOT_NAME_MAX + 1] = 0;
        char why[128];
        assert_int_equal(protect_snapshot_name_check(max, why, sizeof why), -EINVAL);
        assert_non_null(strstr(why, "63"));
        static const char *const bad[] = { "", "-x", ".x", "_x", "a b", "a/b", "a;b", "a'b", "a\"b", "a<b", "é", "a\nb", "..", "a%2f" };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
                why[0] = 0;
                assert_int_equal(protect_snapshot_name_check(bad[i], why, sizeof why), -EINVAL);
                assert_true(why[0] != 0);
        }
        assert_int_equal(protect_snapshot_name_check(NULL, NULL, 0), -EINVAL);
}

static void test_snapshot_default_name(void **state) {
        char out[32];
        protect_snapshot_default_name(1764567600, out); /* 2025-12-01 05:40:00 UTC */
        assert_string_equal(out, "snap-20251201-054000");
        assert_int_equal(protect_snapshot_name_check(out, NULL, 0), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_open),
                cmocka_unit_test(test_digest_hex),
                cmocka_unit_test(test_put_get),
                cmocka_unit_test(test_dedup),
                cmocka_unit_test(test_concurrent_put),
                cmocka_unit_test(test_zero_not_stored),
                cmocka_unit_test(test_point_roundtrip_and_base),
                cmocka_unit_test(test_delta_index),
                cmocka_unit_test(test_delta_copy_and_import),
                cmocka_unit_test(test_bad_arguments),
                cmocka_unit_test(test_commit_atomic),
                cmocka_unit_test(test_corrupt_chunk),
                cmocka_unit_test(test_gc),
                cmocka_unit_test(test_prune_pbs),
                cmocka_unit_test(test_copy_points),
                cmocka_unit_test(test_chunk_size),
                cmocka_unit_test(test_replica_raw_and_import),
                cmocka_unit_test(test_path_check),
                cmocka_unit_test(test_nbd_copy),
                cmocka_unit_test(test_nbdserve),
                cmocka_unit_test(test_nbdserve_small_chunks),
                cmocka_unit_test(test_chunk_span),
                cmocka_unit_test(test_files_path_normalize),
                cmocka_unit_test(test_qcow2_writer),
                cmocka_unit_test(test_chunk_reader),
                cmocka_unit_test(test_restore_pipe),
                cmocka_unit_test(test_policy_due),
                cmocka_unit_test(test_nbd_copy_small_chunks),
                cmocka_unit_test(test_point_time),
                cmocka_unit_test(test_snapshot_names),
                cmocka_unit_test(test_snapshot_default_name),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
