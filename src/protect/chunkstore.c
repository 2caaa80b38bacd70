/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * chunkstore: a backup datastore on disk (contract and layout in chunkstore.h).
 *
 * Chunk file: a 16-byte header ("ACK1", u32 encoding 0 raw / 1 zstd, u32
 * uncompressed length, u32 stored length, little endian) and the bytes.
 * zstd level 1: on this machine's /usr/lib and /usr/bin bytes level 1 runs
 * at 235 MB/s for a ratio of 2.37, level 3 at 159 MB/s for 2.71, level 6 at
 * 57 MB/s (bench/results/protect.md, load ~6 on 2 CPUs). A put is already
 * bound by SHA-256 (a dedup hit, hash only, runs at ~190 MB/s) and zstd;
 * level 3 would cost a third of the put rate for 13% less space.
 *
 * Point: DIR/vm/<uuid>/<id>/disk-N.idx per disk (binary: "AIDX0001", u64
 * size, u64 chunk count, then 32 bytes per chunk, all zeros meaning an all-zero
 * chunk) and DIR/vm/<uuid>/<id>/manifest.json (disks with target, size, index
 * file and the SHA-256 of that index; meta). Why binary: a 1 TiB disk has
 * 262,144 chunks; as hex in JSON that is 17.6 MiB and 262,144 jansson
 * strings to parse, as a binary index 8 MiB read with one read() and usable
 * in place (PBS's .fidx does the same). The manifest stays small JSON any
 * tool can read.
 *
 * Delta indexes: an incremental point (one made with a base) stores, per
 * disk inherited from the base, only the entries that differ from the
 * base's list ("ADLT0001", u64 size, u64 chunk count, u64 entries, then a
 * u64 chunk index and its digest per entry), when that is less than half
 * the whole index; its manifest names the base ("base", format 2) and marks
 * such disks ("delta": true). A point's whole list is its nearest whole
 * index down the chain with the deltas applied back up (point_open()). A
 * whole index of a 1 TiB disk at 256 KiB chunks is 128 MiB; the delta of a
 * point that changed 1% of it, 1.6 MiB. Chains stop at POINT_DEPTH_MAX.
 * point_remove() first rebases the points standing on the one it removes
 * (their indexes written again against its base, or whole), so pruning a
 * base never breaks a kept point. Copies between datastores write their
 * indexes against the newest point of the VM already in the target
 * (correct against any base: the delta is computed, not copied).
 *
 * Durability: chunk files are not fsync'd one by one (an fsync per 4 MiB
 * file cost 15% of the write rate here, 268 against 309 MB/s, more on
 * slower disks, and it serializes writers on the journal); point_commit() instead syncs the
 * datastore's file system once (syncfs) before it renames the manifest, so
 * a committed point never names a chunk that a crash could lose. The index
 * files and the manifest are fsync'd, and the point's directory after the
 * rename.
 *
 * Concurrency: chunk files are written to unique temporary names and renamed
 * (two writers of the same chunk both rename identical bytes). A dedup hit
 * refreshes the chunk's mtime; the garbage collection's stat+unlink and a
 * put's check+refresh take the same lock stripe (process wide, as several
 * ChunkStore handles may open one directory), so a chunk a backup has just
 * reused is never removed under it.
 */
#include "protect/chunkstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sodium.h>
#include <zstd.h>

#include "util/cleanup.h"

#define MARKER_NAME ".armada-datastore"
#define CHUNK_MAGIC "ACK1"
#define CHUNK_HDR 16
#define IDX_MAGIC "AIDX0001"
#define IDX_HDR 24
/* A delta index: "ADLT0001", u64 size, u64 chunk count, u64 entries, then
 * per entry a u64 chunk index (ascending) and its 32-byte digest. */
#define DIDX_MAGIC "ADLT0001"
#define DIDX_HDR 32
#define DIDX_ENTRY 40
/* A point's chain of delta indexes down to whole ones: a commit on a base
 * this deep writes whole indexes (a restore, a verify and the next
 * incremental read the whole chain). */
#define POINT_DEPTH_MAX 32
/* What an open walks at most (a chain no commit makes, or a loop, is
 * malformed). */
#define POINT_CHAIN_MAX 64
#define ZSTD_LEVEL 1
/* vm/<uuid>/<id>: two names of at most 128 characters (name_ok) */
#define DIR_MAX 300

enum { ENC_RAW = 0, ENC_ZSTD = 1 };

struct ChunkStore {
        char *dir;
        int dirfd;
        uint32_t chunk_size; /* the marker's; every point of the store is cut at it */
};

typedef struct PointDisk {
        char *target;
        uint64_t size;
        uint64_t nchunks;
        uint8_t *digests; /* nchunks * 32; all zeros: zero chunk */
} PointDisk;

struct Point {
        ChunkStore *s;
        char *vm_uuid;
        char *id;
        const Point *base;      /* point_new()'s: the disks start from it, the indexes are written against it */
        char *base_id;          /* a committed point's: the point its delta indexes apply to, or NULL */
        unsigned depth;         /* bases below it down to whole indexes (0: it has them) */
        PointDisk *disks;
        unsigned ndisks;
        json_t *meta;
        bool committed;
};

/* Process-wide lock stripes (see the top comment): not configuration, but a
 * lock must be shared by every handle on the same files. */
static pthread_mutex_t chunk_locks[64] = {[0 ... 63] = PTHREAD_MUTEX_INITIALIZER};
static atomic_uint_fast64_t tmp_counter;

static pthread_mutex_t *chunk_lock(const ChunkDigest *d) {
        return &chunk_locks[d->b[1] & 63];
}

/* Process-wide lock stripes on a VM's points (by its uuid): a commit's
 * check that its base is there and the manifest it writes, a removal's
 * rebase of the points on top of the one it removes, and an open's walk of
 * a chain of indexes exclude one another. */
static pthread_mutex_t point_locks[16] = {[0 ... 15] = PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t *point_lock(const char *vm_uuid) {
        uint32_t h = 2166136261u; /* FNV-1a */
        for (const char *c = vm_uuid; *c; c++)
                h = (h ^ (uint8_t) *c) * 16777619u;
        return &point_locks[h & 15];
}

static const uint8_t zero_digest[32];

static bool isalnum_ascii(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static void put_le32(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t) (v >> (8 * i));
}
static uint32_t get_le32(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}
static void put_le64(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t) (v >> (8 * i));
}
static uint64_t get_le64(const uint8_t *p) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = v << 8 | p[i];
        return v;
}

/* ---------------------------------------------------------------- helpers */

bool chunk_is_zero(const void *data, size_t len) {
        const uint8_t *p = data;
        size_t i = 0;
        for (; i + 8 <= len; i += 8) {
                uint64_t v;
                memcpy(&v, p + i, 8);
                if (v)
                        return false;
        }
        for (; i < len; i++)
                if (p[i])
                        return false;
        return true;
}

void chunk_digest_hex(const ChunkDigest *d, char out[static 65]) {
        static const char hx[] = "0123456789abcdef";
        for (int i = 0; i < 32; i++) {
                out[2 * i] = hx[d->b[i] >> 4];
                out[2 * i + 1] = hx[d->b[i] & 15];
        }
        out[64] = 0;
}

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int chunk_digest_parse(const char *hex, ChunkDigest *ret) {
        ChunkDigest d;
        if (!hex || strlen(hex) != 64)
                return -EINVAL;
        for (int i = 0; i < 32; i++) {
                int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                d.b[i] = (uint8_t) (hi << 4 | lo);
        }
        *ret = d;
        return 0;
}

/* A chunk's SHA-256 through OpenSSL, which uses the CPU's SHA extensions
 * (SHA-NI) where they exist: 170-210 MB/s against libsodium's portable
 * code's 34-39 MB/s on this machine under load, and SHA-256 was the
 * largest cost of a backup and of a restore (bench/results/protection.md).
 * libsodium stays the fallback should OpenSSL refuse. */
static void digest_of(const void *data, size_t len, ChunkDigest *ret) {
        unsigned int n = 0;
        if (EVP_Digest(data, len, ret->b, &n, EVP_sha256(), NULL) != 1 || n != sizeof ret->b)
                crypto_hash_sha256(ret->b, data, len);
}

static int write_all(int fd, const void *buf, size_t len) {
        const uint8_t *p = buf;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, off_t off) {
        const uint8_t *p = buf;
        while (len > 0) {
                ssize_t n = pwrite(fd, p, len, off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                off += n;
                len -= (size_t) n;
        }
        return 0;
}

/* Reads a whole file (below DIRFD) into memory; -EFBIG past MAX. */
static int read_file_at(int dirfd, const char *path, size_t max, uint8_t **ret, size_t *ret_len) {
        _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADMSG;
        if ((uint64_t) st.st_size > max)
                return -EFBIG;
        _cleanup_free_ uint8_t *buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        size_t got = 0;
        while (got < (size_t) st.st_size) {
                ssize_t n = read(fd, buf + got, (size_t) st.st_size - got);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                got += (size_t) n;
        }
        buf[got] = 0;
        *ret = steal_ptr(buf);
        *ret_len = got;
        return 0;
}

static void tmp_name(char *out, size_t n, const char *base) {
        snprintf(out, n, ".tmp.%s.%d.%llu", base, (int) getpid(),
                 (unsigned long long) atomic_fetch_add(&tmp_counter, 1));
}

/* Writes BUF to DIRFD/NAME atomically (temporary name, optional fsync, rename). */
static int write_atomic_at(int dirfd, const char *name, const void *buf, size_t len, bool sync) {
        char tmp[PATH_MAX];
        const char *slash = strrchr(name, '/');
        if (slash)
                snprintf(tmp, sizeof tmp, "%.*s/", (int) (slash - name), name);
        else
                tmp[0] = 0;
        size_t l = strlen(tmp);
        tmp_name(tmp + l, sizeof tmp - l, slash ? slash + 1 : name);

        int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        int r = write_all(fd, buf, len);
        if (r == 0 && sync && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
                r = -errno;
        if (r < 0)
                (void) unlinkat(dirfd, tmp, 0);
        return r;
}

static int fsync_dir_at(int dirfd, const char *path) {
        _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return fsync(fd) < 0 ? -errno : 0;
}

static int mkdir_p_at(int dirfd, const char *path) {
        char buf[PATH_MAX];
        if (snprintf(buf, sizeof buf, "%s", path) >= (int) sizeof buf)
                return -ENAMETOOLONG;
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = 0;
                if (mkdirat(dirfd, buf, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdirat(dirfd, buf, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* A name used as one path component: a VM uuid, a point id or a disk target. */
static bool name_ok(const char *s) {
        if (!s || !*s || strlen(s) > 128 || s[0] == '.')
                return false;
        for (const char *p = s; *p; p++)
                if (!(isalnum_ascii(*p) || *p == '-' || *p == '_' || *p == '.'))
                        return false;
        return true;
}

/* ------------------------------------------------------------- open/free */

bool chunk_size_valid(uint64_t size) {
        return size >= CHUNK_SIZE_MIN && size <= CHUNK_SIZE && (size & (size - 1)) == 0;
}

static int write_marker(int dirfd, uint32_t chunk_size) {
        char buf[128];
        int n = snprintf(buf, sizeof buf, "{\"format\": 1, \"chunk_size\": %u}\n", chunk_size);
        return write_atomic_at(dirfd, MARKER_NAME, buf, (size_t) n, true);
}

/* Reads the marker: 0 and *ret_chunk_size, -ENOENT, or -EBADMSG for a
 * marker of another format or a chunk size this Armada cannot cut. */
static int check_marker(int dirfd, uint32_t *ret_chunk_size) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r = read_file_at(dirfd, MARKER_NAME, 4096, &buf, &len);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *j = json_loadb((const char *) buf, len, 0, NULL);
        if (!j || json_integer_value(json_object_get(j, "format")) != 1)
                return -EBADMSG;
        json_int_t cs = json_integer_value(json_object_get(j, "chunk_size"));
        if (cs <= 0 || !chunk_size_valid((uint64_t) cs))
                return -EBADMSG;
        *ret_chunk_size = (uint32_t) cs;
        return 0;
}

static bool dir_is_empty(int fd) {
        int dup_fd = dup(fd);
        if (dup_fd < 0)
                return false;
        DIR *d = fdopendir(dup_fd);
        if (!d) {
                close(dup_fd);
                return false;
        }
        bool empty = true;
        struct dirent *de;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..")) {
                        empty = false;
                        break;
                }
        closedir(d);
        return empty;
}

int chunkstore_open(const char *dir, bool create, ChunkStore **ret) {
        return chunkstore_open_sized(dir, create, 0, ret);
}

int chunkstore_open_sized(const char *dir, bool create, uint32_t chunk_size, ChunkStore **ret) {
        if (!dir || !*dir || !ret || (chunk_size && !chunk_size_valid(chunk_size)))
                return -EINVAL;
        if (!chunk_size)
                chunk_size = CHUNK_SIZE;
        if (sodium_init() < 0)
                return -EIO;
        if (create && mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;

        uint32_t have = 0;
        int r = check_marker(fd, &have);
        if (r == -ENOENT) {
                if (!create)
                        return -ENOENT;
                if (!dir_is_empty(fd))
                        return -ENOTEMPTY;
                if (mkdirat(fd, ".chunks", 0755) < 0 && errno != EEXIST)
                        return -errno;
                if (mkdirat(fd, "vm", 0755) < 0 && errno != EEXIST)
                        return -errno;
                r = write_marker(fd, chunk_size);
                if (r < 0)
                        return r;
                if (fsync(fd) < 0)
                        return -errno;
                have = chunk_size;
        } else if (r < 0)
                return r == -EFBIG ? -EBADMSG : r;

        ChunkStore *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->dir = strdup(dir);
        if (!s->dir) {
                free(s);
                return -ENOMEM;
        }
        s->dirfd = fd;
        s->chunk_size = have;
        fd = -1;
        *ret = s;
        return 0;
}

ChunkStore *chunkstore_free(ChunkStore *s) {
        if (!s)
                return NULL;
        if (s->dirfd >= 0)
                close(s->dirfd);
        free(s->dir);
        free(s);
        return NULL;
}

const char *chunkstore_dir(const ChunkStore *s) {
        return s->dir;
}

uint32_t chunkstore_chunk_size(const ChunkStore *s) {
        return s->chunk_size;
}

/* ----------------------------------------------------------------- chunks */

int chunkstore_span(const ChunkStore *s, uint64_t off, uint64_t end, ChunkSpan *ret) {
        if (!s || !ret || off >= end)
                return -EINVAL;
        uint64_t cs = s->chunk_size, within = off % cs, left = cs - within;
        *ret = (ChunkSpan){.index = off / cs, .within = (uint32_t) within,
                           .len = (uint32_t) (end - off < left ? end - off : left)};
        return 0;
}

static void chunk_path(const ChunkDigest *d, char out[static 80]) {
        char hex[65];
        chunk_digest_hex(d, hex);
        snprintf(out, 80, ".chunks/%.4s/%s", hex, hex);
}

/* Encodes DATA into a chunk file image (header + zstd frame or raw bytes). */
static int chunk_encode(const void *data, size_t len, uint8_t **ret, size_t *ret_len) {
        size_t bound = ZSTD_compressBound(len);
        _cleanup_free_ uint8_t *buf = malloc(CHUNK_HDR + (bound > len ? bound : len));
        if (!buf)
                return -ENOMEM;
        size_t clen = ZSTD_compress(buf + CHUNK_HDR, bound, data, len, ZSTD_LEVEL);
        uint32_t enc = ENC_ZSTD;
        if (ZSTD_isError(clen) || clen >= len) {
                memcpy(buf + CHUNK_HDR, data, len);
                clen = len;
                enc = ENC_RAW;
        }
        memcpy(buf, CHUNK_MAGIC, 4);
        put_le32(buf + 4, enc);
        put_le32(buf + 8, (uint32_t) len);
        put_le32(buf + 12, (uint32_t) clen);
        *ret = steal_ptr(buf);
        *ret_len = CHUNK_HDR + clen;
        return 0;
}

/* Refreshes a chunk's mtime under its lock stripe: 0, or -ENOENT when it
 * is not there (any more). */
static int chunk_touch(ChunkStore *s, const ChunkDigest *d) {
        char path[80];
        chunk_path(d, path);
        pthread_mutex_t *lk = chunk_lock(d);
        pthread_mutex_lock(lk);
        int r = utimensat(s->dirfd, path, NULL, 0) == 0 ? 0 : -errno;
        pthread_mutex_unlock(lk);
        return r;
}

int chunkstore_put(ChunkStore *s, const void *data, size_t len, ChunkDigest *ret_digest, uint64_t *ret_written) {
        if (!s || (!data && len) || len > s->chunk_size || !ret_digest)
                return -EINVAL;
        ChunkDigest d;
        digest_of(data, len, &d);
        char path[80];
        chunk_path(&d, path);

        /* Dedup hit: refresh the mtime under the stripe the GC takes. */
        if (chunk_touch(s, &d) == 0) {
                *ret_digest = d;
                if (ret_written)
                        *ret_written = 0;
                return 0;
        }

        _cleanup_free_ uint8_t *enc = NULL;
        size_t enc_len;
        int r = chunk_encode(data, len, &enc, &enc_len);
        if (r < 0)
                return r;
        char sub[16];
        snprintf(sub, sizeof sub, ".chunks/%.4s", path + 8);
        if (mkdirat(s->dirfd, sub, 0755) < 0 && errno != EEXIST)
                return -errno;
        /* No lock: the new file's mtime is now, so a GC keeps it. */
        r = write_atomic_at(s->dirfd, path, enc, enc_len, false);
        if (r < 0)
                return r;
        *ret_digest = d;
        if (ret_written)
                *ret_written = enc_len;
        return 0;
}

/* A chunk file's header (CHUNK_HDR bytes at hdr) for a file of flen bytes
 * read into a buffer of buflen: 0 with its encoding, length and stored
 * length, -EBADMSG, or -ENOBUFS when the chunk does not fit. */
static int chunk_header(const uint8_t *hdr, uint64_t flen, size_t buflen, uint32_t *ret_enc, uint32_t *ret_len,
                        uint32_t *ret_clen) {
        uint32_t len = get_le32(hdr + 8), clen = get_le32(hdr + 12);
        if (memcmp(hdr, CHUNK_MAGIC, 4) != 0 || len > CHUNK_SIZE || clen != flen - CHUNK_HDR)
                return -EBADMSG;
        if (len > buflen)
                return -ENOBUFS;
        *ret_enc = get_le32(hdr + 4);
        *ret_len = len;
        *ret_clen = clen;
        return 0;
}

/* The decoded chunk buf of len bytes is the one named d: 0 and *ret_len
 * (may be NULL), or -EBADMSG. */
static int chunk_verified(const void *buf, size_t len, const ChunkDigest *d, size_t *ret_len) {
        ChunkDigest got;
        digest_of(buf, len, &got);
        if (memcmp(got.b, d->b, 32) != 0)
                return -EBADMSG;
        if (ret_len)
                *ret_len = len;
        return 0;
}

/* Decodes a chunk file image into BUF and checks it against D. */
static int chunk_decode(const ChunkDigest *d, const uint8_t *file, size_t flen, void *buf, size_t buflen,
                        size_t *ret_len) {
        if (flen < CHUNK_HDR)
                return -EBADMSG;
        uint32_t enc, len, clen;
        int r = chunk_header(file, flen, buflen, &enc, &len, &clen);
        if (r < 0)
                return r;
        if (enc == ENC_RAW) {
                if (clen != len)
                        return -EBADMSG;
                memcpy(buf, file + CHUNK_HDR, len);
        } else if (enc == ENC_ZSTD) {
                size_t n = ZSTD_decompress(buf, len, file + CHUNK_HDR, clen);
                if (ZSTD_isError(n) || n != len)
                        return -EBADMSG;
        } else
                return -EBADMSG;
        return chunk_verified(buf, len, d, ret_len);
}

int chunkstore_get(ChunkStore *s, const ChunkDigest *d, void *buf, size_t buflen, size_t *ret_len) {
        if (!s || !d || !buf)
                return -EINVAL;
        char path[80];
        chunk_path(d, path);
        _cleanup_free_ uint8_t *file = NULL;
        size_t flen;
        int r = read_file_at(s->dirfd, path, CHUNK_HDR + ZSTD_compressBound(CHUNK_SIZE), &file, &flen);
        if (r == -EFBIG)
                return -EBADMSG;
        if (r < 0)
                return r;
        return chunk_decode(d, file, flen, buf, buflen, ret_len);
}

struct ChunkReader {
        ZSTD_DCtx *z;
        uint8_t *frame;         /* a compressed frame, read before decoding */
        size_t frame_cap;
};

int chunk_reader_new(ChunkReader **ret) {
        ChunkReader *rd = calloc(1, sizeof *rd);
        if (!rd)
                return -ENOMEM;
        if (!(rd->z = ZSTD_createDCtx())) {
                free(rd);
                return -ENOMEM;
        }
        *ret = rd;
        return 0;
}

ChunkReader *chunk_reader_free(ChunkReader *rd) {
        if (rd) {
                ZSTD_freeDCtx(rd->z);
                free(rd->frame);
                free(rd);
        }
        return NULL;
}

/* LEN bytes at OFF of FD, all of them: 0, -EBADMSG when the file is
 * shorter, or -errno. */
static int pread_full(int fd, void *buf, size_t len, off_t off) {
        for (size_t got = 0; got < len;) {
                ssize_t n = pread(fd, (uint8_t *) buf + got, len - got, off + (off_t) got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EBADMSG;
                got += (size_t) n;
        }
        return 0;
}

int chunkstore_get_with(ChunkStore *s, ChunkReader *rd, const ChunkDigest *d, void *buf, size_t buflen, size_t *ret_len) {
        if (!s || !rd || !d || !buf)
                return -EINVAL;
        char path[80];
        chunk_path(d, path);
        _cleanup_close_ int fd = openat(s->dirfd, path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_size < CHUNK_HDR || (uint64_t) st.st_size > CHUNK_HDR + ZSTD_compressBound(CHUNK_SIZE))
                return -EBADMSG;
        uint8_t hdr[CHUNK_HDR];
        int r = pread_full(fd, hdr, sizeof hdr, 0);
        if (r < 0)
                return r;
        uint32_t enc, len, clen;
        if ((r = chunk_header(hdr, (uint64_t) st.st_size, buflen, &enc, &len, &clen)) < 0)
                return r;
        if (enc == ENC_RAW) {
                /* Straight into the caller's buffer: no copy. */
                if (clen != len)
                        return -EBADMSG;
                if ((r = pread_full(fd, buf, len, CHUNK_HDR)) < 0)
                        return r;
        } else if (enc == ENC_ZSTD) {
                if (clen > rd->frame_cap) {
                        uint8_t *n = realloc(rd->frame, clen);
                        if (!n)
                                return -ENOMEM;
                        rd->frame = n;
                        rd->frame_cap = clen;
                }
                if ((r = pread_full(fd, rd->frame, clen, CHUNK_HDR)) < 0)
                        return r;
                size_t n = ZSTD_decompressDCtx(rd->z, buf, len, rd->frame, clen);
                if (ZSTD_isError(n) || n != len)
                        return -EBADMSG;
        } else
                return -EBADMSG;
        return chunk_verified(buf, len, d, ret_len);
}

bool chunkstore_has(ChunkStore *s, const ChunkDigest *d) {
        char path[80];
        chunk_path(d, path);
        return faccessat(s->dirfd, path, F_OK, 0) == 0;
}

/* ----------------------------------------------------------------- points */

static int point_alloc(ChunkStore *s, const char *vm_uuid, const char *point_id, Point **ret) {
        if (!s || !name_ok(vm_uuid) || !name_ok(point_id))
                return -EINVAL;
        Point *p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->s = s;
        p->vm_uuid = strdup(vm_uuid);
        p->id = strdup(point_id);
        p->meta = json_object();
        if (!p->vm_uuid || !p->id || !p->meta) {
                point_free(p);
                return -ENOMEM;
        }
        *ret = p;
        return 0;
}

static void point_dir(const Point *p, char out[static DIR_MAX]) {
        snprintf(out, DIR_MAX, "vm/%s/%s", p->vm_uuid, p->id);
}

int point_new(ChunkStore *s, const char *vm_uuid, const char *point_id, const Point *base, Point **ret) {
        /* The base may come from another handle on the same directory; a
         * base from elsewhere names chunks the commit will not find. */
        if (!ret || !vm_uuid || (base && !streq(base->vm_uuid, vm_uuid)) ||
            (base && s && base->s->chunk_size != s->chunk_size))
                return -EINVAL;
        Point *p;
        int r = point_alloc(s, vm_uuid, point_id, &p);
        if (r < 0)
                return r;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "vm/%s/%s/manifest.json", vm_uuid, point_id);
        if (faccessat(s->dirfd, path, F_OK, 0) == 0) {
                point_free(p);
                return -EEXIST;
        }
        p->base = base;
        if (base && !(p->base_id = strdup(base->id))) {
                point_free(p);
                return -ENOMEM;
        }
        *ret = p;
        return 0;
}

bool point_exists(ChunkStore *s, const char *vm_uuid, const char *point_id) {
        if (!s || !name_ok(vm_uuid) || !name_ok(point_id))
                return false;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "vm/%s/%s/manifest.json", vm_uuid, point_id);
        return faccessat(s->dirfd, path, F_OK, 0) == 0;
}

Point *point_free(Point *p) {
        if (!p)
                return NULL;
        for (unsigned i = 0; i < p->ndisks; i++) {
                free(p->disks[i].target);
                free(p->disks[i].digests);
        }
        free(p->disks);
        json_decref(p->meta);
        free(p->vm_uuid);
        free(p->id);
        free(p->base_id);
        free(p);
        return NULL;
}

static uint64_t chunks_for(const ChunkStore *s, uint64_t size) {
        return (size + s->chunk_size - 1) / s->chunk_size;
}

int point_add_disk(Point *p, const char *target, uint64_t size, unsigned *ret_index) {
        if (!p || p->committed || !name_ok(target) || p->ndisks >= 256)
                return -EINVAL;
        for (unsigned i = 0; i < p->ndisks; i++)
                if (streq(p->disks[i].target, target))
                        return -EEXIST;
        uint64_t n = chunks_for(p->s, size);
        if (n > SIZE_MAX / 32)
                return -EINVAL;
        PointDisk *nd = realloc(p->disks, (p->ndisks + 1) * sizeof *nd);
        if (!nd)
                return -ENOMEM;
        p->disks = nd;
        PointDisk *d = &p->disks[p->ndisks];
        *d = (PointDisk){.size = size, .nchunks = n};
        d->target = strdup(target);
        d->digests = calloc(n ? n : 1, 32);
        if (!d->target || !d->digests) {
                free(d->target);
                free(d->digests);
                return -ENOMEM;
        }
        if (p->base)
                for (unsigned i = 0; i < p->base->ndisks; i++) {
                        const PointDisk *b = &p->base->disks[i];
                        if (streq(b->target, target) && b->size == size) {
                                memcpy(d->digests, b->digests, n * 32);
                                break;
                        }
                }
        if (ret_index)
                *ret_index = p->ndisks;
        p->ndisks++;
        return 0;
}

int point_set_chunk(Point *p, unsigned disk, uint64_t index, const ChunkDigest *d) {
        if (!p || p->committed || disk >= p->ndisks || index >= p->disks[disk].nchunks)
                return -EINVAL;
        if (d && memcmp(d->b, zero_digest, 32) == 0)
                return -EINVAL; /* the sentinel; no SHA-256 is all zeros */
        memcpy(p->disks[disk].digests + index * 32, d ? d->b : zero_digest, 32);
        return 0;
}

int point_set_meta(Point *p, const char *key, json_t *value) {
        if (!p || !key || !value || p->committed)
                return -EINVAL;
        return json_object_set(p->meta, key, value) < 0 ? -ENOMEM : 0;
}

/* The binary index of one disk, whole (layout at the top of this file). */
static int disk_index_encode(const PointDisk *d, uint8_t **ret, size_t *ret_len) {
        size_t len = IDX_HDR + d->nchunks * 32;
        uint8_t *buf = malloc(len);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, IDX_MAGIC, 8);
        put_le64(buf + 8, d->size);
        put_le64(buf + 16, d->nchunks);
        memcpy(buf + IDX_HDR, d->digests, d->nchunks * 32);
        *ret = buf;
        *ret_len = len;
        return 0;
}

static uint64_t disk_delta_count(const PointDisk *d, const PointDisk *b) {
        uint64_t n = 0;
        for (uint64_t c = 0; c < d->nchunks; c++)
                n += memcmp(d->digests + c * 32, b->digests + c * 32, 32) != 0;
        return n;
}

/* The delta index of disk D against B (same target and size): the entries
 * that differ, as (u64 chunk index, digest), in order. */
static int disk_delta_encode(const PointDisk *d, const PointDisk *b, uint64_t count, uint8_t **ret, size_t *ret_len) {
        size_t len = DIDX_HDR + count * DIDX_ENTRY;
        uint8_t *buf = malloc(len), *w;
        if (!buf)
                return -ENOMEM;
        memcpy(buf, DIDX_MAGIC, 8);
        put_le64(buf + 8, d->size);
        put_le64(buf + 16, d->nchunks);
        put_le64(buf + 24, count);
        w = buf + DIDX_HDR;
        for (uint64_t c = 0; c < d->nchunks; c++)
                if (memcmp(d->digests + c * 32, b->digests + c * 32, 32) != 0) {
                        put_le64(w, c);
                        memcpy(w + 8, d->digests + c * 32, 32);
                        w += DIDX_ENTRY;
                }
        *ret = buf;
        *ret_len = len;
        return 0;
}

/* The disk of B a disk of TARGET and SIZE inherits from (point_add_disk's rule). */
static const PointDisk *base_disk(const Point *b, const char *target, uint64_t size) {
        for (unsigned i = 0; b && i < b->ndisks; i++)
                if (streq(b->disks[i].target, target) && b->disks[i].size == size)
                        return &b->disks[i];
        return NULL;
}

/* Every chunk the point names must be in the store before it may commit.
 * Each is touched (its mtime refreshed under the GC's lock stripe): a chunk
 * inherited from a base point was never put by this backup, and a GC
 * running beside it must not take it between this check and the manifest. */
static int point_check_chunks(const Point *p) {
        for (unsigned i = 0; i < p->ndisks; i++) {
                const PointDisk *d = &p->disks[i];
                const uint8_t *prev = NULL;
                for (uint64_t c = 0; c < d->nchunks; c++) {
                        const uint8_t *g = d->digests + c * 32;
                        if (memcmp(g, zero_digest, 32) == 0 || (prev && memcmp(prev, g, 32) == 0))
                                continue;
                        prev = g;
                        if (chunk_touch(p->s, (const ChunkDigest *) g) < 0)
                                return -EBADMSG;
                }
        }
        return 0;
}

/* The index files of P into DIR, fsync'd, each a delta against BASE's disk
 * of the same target and size when BASE is given and the delta is less
 * than half the whole index; fills DISKS for the manifest. File names
 * carry TAG when given (a rebase writes beside the files the current
 * manifest names). *ret_delta: whether some disk is a delta. */
static int point_write_indexes(Point *p, const Point *base, const char *dir, const char *tag, json_t *disks,
                               bool *ret_delta) {
        bool any = false;
        for (unsigned i = 0; i < p->ndisks; i++) {
                const PointDisk *d = &p->disks[i], *b = base_disk(base, d->target, d->size);
                uint64_t count = b ? disk_delta_count(d, b) : 0;
                bool delta = b && count * DIDX_ENTRY < d->nchunks * 32 / 2;
                _cleanup_free_ uint8_t *buf = NULL;
                size_t len;
                int r = delta ? disk_delta_encode(d, b, count, &buf, &len) : disk_index_encode(d, &buf, &len);
                if (r < 0)
                        return r;
                char name[200], path[PATH_MAX];
                if (tag)
                        snprintf(name, sizeof name, "disk-%u-%s.idx", i, tag);
                else
                        snprintf(name, sizeof name, "disk-%u.idx", i);
                snprintf(path, sizeof path, "%s/%s", dir, name);
                r = write_atomic_at(p->s->dirfd, path, buf, len, true);
                if (r < 0)
                        return r;
                uint8_t h[32];
                crypto_hash_sha256(h, buf, len);
                char hex[65];
                chunk_digest_hex((const ChunkDigest *) h, hex);
                json_t *jd = json_pack("{s:s, s:I, s:s, s:s}", "target", d->target, "size", (json_int_t) d->size, "index",
                                       name, "sha256", hex);
                if (!jd)
                        return -ENOMEM;
                if (delta)
                        json_object_set_new(jd, "delta", json_true());
                json_array_append_new(disks, jd);
                any = any || delta;
        }
        *ret_delta = any;
        return 0;
}

/* Writes P's indexes (against BASE, see above) and then its manifest
 * atomically into its directory, and fsyncs the directory. The caller
 * holds P's VM lock. */
static int point_store(Point *p, const Point *base, const char *tag) {
        char dir[DIR_MAX];
        point_dir(p, dir);
        int r = mkdir_p_at(p->s->dirfd, dir);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *disks = json_array();
        bool delta = false;
        r = point_write_indexes(p, base, dir, tag, disks, &delta);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *m = json_pack("{s:i, s:s, s:s, s:I, s:O, s:O}", "format", delta ? 2 : 1, "vm_uuid",
                                             p->vm_uuid, "point_id", p->id, "chunk_size",
                                             (json_int_t) p->s->chunk_size, "disks", disks, "meta", p->meta);
        if (!m)
                return -ENOMEM;
        /* Format 2: some disk's index holds only what changed since the
         * point "base" (an Armada of format 1 does not list such a point,
         * rather than restore it wrong). */
        if (delta && json_object_set_new(m, "base", json_string(base->id)) < 0)
                return -ENOMEM;
        _cleanup_free_ char *text = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text)
                return -ENOMEM;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/manifest.json", dir);
        r = write_atomic_at(p->s->dirfd, path, text, strlen(text), true);
        if (r < 0)
                return r;
        r = fsync_dir_at(p->s->dirfd, dir);
        if (r < 0)
                return r;
        free(p->base_id);
        p->base_id = delta ? strdup(base->id) : NULL;
        p->depth = delta ? base->depth + 1 : 0;
        return 0;
}

static int point_open_locked(ChunkStore *s, const char *vm_uuid, const char *point_id, Point **ret);

int point_commit(Point *p) {
        if (!p || p->committed)
                return -EINVAL;
        int r = point_check_chunks(p);
        if (r < 0)
                return r;
        /* The chunks were written without fsync: make them durable before
         * the manifest can name them. */
        if (syncfs(p->s->dirfd) < 0)
                return -errno;
        /* The base is read again from the store, under the VM's lock: it
         * is used for deltas only while it is still there (a prune beside
         * this backup may have removed it, rebasing the points on it, which
         * this one is not yet) and while its chain is short enough. */
        pthread_mutex_t *lk = point_lock(p->vm_uuid);
        pthread_mutex_lock(lk);
        Point *base = NULL;
        if (p->base_id && (point_open_locked(p->s, p->vm_uuid, p->base_id, &base) < 0 || base->depth + 1 > POINT_DEPTH_MAX))
                base = point_free(base);
        r = point_store(p, base, NULL);
        pthread_mutex_unlock(lk);
        point_free(base);
        if (r < 0)
                return r;
        p->committed = true;
        return 0;
}

/* Reads an index file of DIR named by manifest entry JD, checking its
 * SHA-256 against the entry: 0 and *ret and *ret_len, or negative. */
static int index_file_read(ChunkStore *s, const char *dir, json_t *jd, size_t max, uint8_t **ret, size_t *ret_len) {
        const char *index = json_string_value(json_object_get(jd, "index"));
        const char *sha = json_string_value(json_object_get(jd, "sha256"));
        if (!index || !sha || !name_ok(index))
                return -EBADMSG;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, index);
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r = read_file_at(s->dirfd, path, max, &buf, &len);
        if (r == -EFBIG || r == -ENOENT)
                return -EBADMSG;
        if (r < 0)
                return r;
        ChunkDigest want, got;
        if (chunk_digest_parse(sha, &want) < 0)
                return -EBADMSG;
        crypto_hash_sha256(got.b, buf, len);
        if (memcmp(want.b, got.b, 32) != 0)
                return -EBADMSG;
        *ret = steal_ptr(buf);
        *ret_len = len;
        return 0;
}

/* Fills disk D from the whole index JD names. */
static int disk_load_full(ChunkStore *s, const char *dir, json_t *jd, PointDisk *d) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r = index_file_read(s, dir, jd, IDX_HDR + d->nchunks * 32, &buf, &len);
        if (r < 0)
                return r;
        if (len != IDX_HDR + d->nchunks * 32 || memcmp(buf, IDX_MAGIC, 8) != 0 || get_le64(buf + 8) != d->size ||
            get_le64(buf + 16) != d->nchunks)
                return -EBADMSG;
        memcpy(d->digests, buf + IDX_HDR, len - IDX_HDR);
        return 0;
}

/* Applies the delta index JD names to disk D (which holds its base's list). */
static int disk_apply_delta(ChunkStore *s, const char *dir, json_t *jd, PointDisk *d) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r = index_file_read(s, dir, jd, DIDX_HDR + d->nchunks * DIDX_ENTRY, &buf, &len);
        if (r < 0)
                return r;
        if (len < DIDX_HDR || memcmp(buf, DIDX_MAGIC, 8) != 0 || get_le64(buf + 8) != d->size ||
            get_le64(buf + 16) != d->nchunks)
                return -EBADMSG;
        uint64_t count = get_le64(buf + 24);
        if (count > d->nchunks || len != DIDX_HDR + count * DIDX_ENTRY)
                return -EBADMSG;
        uint64_t next = 0; /* entries strictly ascending */
        for (uint64_t i = 0; i < count; i++) {
                const uint8_t *e = buf + DIDX_HDR + i * DIDX_ENTRY;
                uint64_t c = get_le64(e);
                if (c < next || c >= d->nchunks)
                        return -EBADMSG;
                memcpy(d->digests + c * 32, e + 8, 32);
                next = c + 1;
        }
        return 0;
}

/* The manifest entry of disk TARGET of SIZE in manifest M, or NULL. */
static json_t *manifest_disk(json_t *m, const char *target, json_t *jsize) {
        size_t i;
        json_t *jd;
        json_array_foreach(json_object_get(m, "disks"), i, jd)
                if (json_is_string(json_object_get(jd, "target")) &&
                    streq(json_string_value(json_object_get(jd, "target")), target) &&
                    json_equal(json_object_get(jd, "size"), jsize))
                        return jd;
        return NULL;
}

static int manifest_load(ChunkStore *s, const char *vm_uuid, const char *point_id, json_t **ret) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "vm/%s/%s/manifest.json", vm_uuid, point_id);
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r = read_file_at(s->dirfd, path, 64u << 20, &buf, &len);
        if (r == -EFBIG)
                return -EBADMSG;
        if (r < 0)
                return r;
        json_t *m = json_loadb((const char *) buf, len, 0, NULL);
        /* A manifest without chunk_size predates it: 4 MiB, the only size then. */
        json_t *cs = m ? json_object_get(m, "chunk_size") : NULL;
        json_t *base = m ? json_object_get(m, "base") : NULL;
        if (!m || !json_is_array(json_object_get(m, "disks")) || !json_is_object(json_object_get(m, "meta")) ||
            (cs ? json_integer_value(cs) : CHUNK_SIZE) != s->chunk_size ||
            (base && (!name_ok(json_string_value(base)) || streq(json_string_value(base), point_id)))) {
                json_decref(m);
                return -EBADMSG;
        }
        *ret = m;
        return 0;
}

/* The manifests of a point and of its bases, the point's first, down to
 * the one whose indexes are all whole: *ret_n of them. A base that is
 * missing or a chain longer than POINT_CHAIN_MAX (a loop) is -EBADMSG. */
static int manifest_chain(ChunkStore *s, const char *vm_uuid, const char *point_id, json_t **chain, size_t *ret_n) {
        size_t n = 0;
        const char *id = point_id;
        int r = 0;
        while (id) {
                if (n == POINT_CHAIN_MAX) {
                        r = -EBADMSG; /* a loop, or a chain no commit makes */
                        break;
                }
                if ((r = manifest_load(s, vm_uuid, id, &chain[n])) < 0) {
                        if (n > 0 && r == -ENOENT)
                                r = -EBADMSG; /* the point names a base that is not there */
                        break;
                }
                id = json_string_value(json_object_get(chain[n++], "base"));
        }
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        json_decref(chain[i]);
                return r;
        }
        *ret_n = n;
        return 0;
}

/* Resolves disk JD of the chain's first manifest into disk K of P: the
 * whole index of the nearest manifest down the chain that has one, then
 * the deltas back up. */
static int point_resolve_disk(Point *p, json_t **chain, size_t n, json_t *jd, unsigned k) {
        const char *target = json_string_value(json_object_get(jd, "target"));
        json_t *jsize = json_object_get(jd, "size");
        json_t *ent[POINT_CHAIN_MAX];
        size_t j = 0;
        ent[0] = jd;
        while (json_is_true(json_object_get(ent[j], "delta"))) {
                if (++j == n || !(ent[j] = manifest_disk(chain[j], target, jsize)))
                        return -EBADMSG; /* a delta with nothing under it */
        }
        char dir[DIR_MAX];
        snprintf(dir, sizeof dir, "vm/%s/%s", p->vm_uuid, json_string_value(json_object_get(chain[j], "point_id")));
        int r = disk_load_full(p->s, dir, ent[j], &p->disks[k]);
        while (r == 0 && j-- > 0) {
                snprintf(dir, sizeof dir, "vm/%s/%s", p->vm_uuid, json_string_value(json_object_get(chain[j], "point_id")));
                r = disk_apply_delta(p->s, dir, ent[j], &p->disks[k]);
        }
        return r;
}

/* point_open() with the VM's point lock held. */
static int point_open_locked(ChunkStore *s, const char *vm_uuid, const char *point_id, Point **ret) {
        Point *p;
        int r = point_alloc(s, vm_uuid, point_id, &p);
        if (r < 0)
                return r;
        json_t *chain[POINT_CHAIN_MAX];
        size_t n = 0;
        r = manifest_chain(s, vm_uuid, point_id, chain, &n);
        if (r < 0) {
                point_free(p);
                return r;
        }
        size_t i;
        json_t *jd;
        json_array_foreach(json_object_get(chain[0], "disks"), i, jd) {
                json_t *jsize = json_object_get(jd, "size");
                const char *target = json_string_value(json_object_get(jd, "target"));
                unsigned k;
                if (!target || !json_is_integer(jsize) || json_integer_value(jsize) < 0)
                        r = -EBADMSG;
                else if ((r = point_add_disk(p, target, (uint64_t) json_integer_value(jsize), &k)) < 0)
                        r = r == -ENOMEM ? r : -EBADMSG;
                else
                        r = point_resolve_disk(p, chain, n, jd, k);
                if (r < 0)
                        break;
        }
        if (r == 0) {
                json_decref(p->meta);
                p->meta = json_incref(json_object_get(chain[0], "meta"));
                const char *base = json_string_value(json_object_get(chain[0], "base"));
                p->base_id = base ? strdup(base) : NULL;
                p->depth = (unsigned) n - 1;
                p->committed = true;
                if (base && !p->base_id)
                        r = -ENOMEM;
        }
        for (size_t c = 0; c < n; c++)
                json_decref(chain[c]);
        if (r < 0) {
                point_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

int point_open(ChunkStore *s, const char *vm_uuid, const char *point_id, Point **ret) {
        if (!ret)
                return -EINVAL;
        if (!s || !name_ok(vm_uuid) || !name_ok(point_id))
                return -EINVAL;
        /* Under the VM's lock: a prune rebasing this point's dependents
         * rewrites their manifests and removes index files. */
        pthread_mutex_t *lk = point_lock(vm_uuid);
        pthread_mutex_lock(lk);
        int r = point_open_locked(s, vm_uuid, point_id, ret);
        pthread_mutex_unlock(lk);
        return r;
}

const char *point_base(const Point *p) {
        return p->base_id;
}

const char *point_vm_uuid(const Point *p) {
        return p->vm_uuid;
}
const char *point_id(const Point *p) {
        return p->id;
}
unsigned point_disk_count(const Point *p) {
        return p->ndisks;
}
const char *point_disk_target(const Point *p, unsigned disk) {
        return disk < p->ndisks ? p->disks[disk].target : NULL;
}
uint64_t point_disk_size(const Point *p, unsigned disk) {
        return disk < p->ndisks ? p->disks[disk].size : 0;
}
uint64_t point_disk_chunks(const Point *p, unsigned disk) {
        return disk < p->ndisks ? p->disks[disk].nchunks : 0;
}

int point_chunk(const Point *p, unsigned disk, uint64_t index, ChunkDigest *ret, bool *ret_zero) {
        if (!p || disk >= p->ndisks || index >= p->disks[disk].nchunks)
                return -EINVAL;
        const uint8_t *g = p->disks[disk].digests + index * 32;
        bool zero = memcmp(g, zero_digest, 32) == 0;
        if (ret)
                memcpy(ret->b, g, 32);
        if (ret_zero)
                *ret_zero = zero;
        return 0;
}

json_t *point_meta(const Point *p, const char *key) {
        return json_object_get(p->meta, key);
}

/* Calls FN for every entry of DIRFD/PATH whose name WANT accepts, until FN
 * returns non-zero; a missing directory has none. */
typedef int (*DirFn)(const char *name, void *userdata);
static int for_each_named(int dirfd, const char *path, bool (*want)(const char *name), DirFn fn, void *userdata) {
        int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        int r = 0;
        struct dirent *de;
        while (r == 0 && (de = readdir(d)))
                if (want(de->d_name))
                        r = fn(de->d_name, userdata);
        closedir(d);
        return r;
}

/* Calls FN for every entry of DIRFD/PATH that is a valid name. */
static int for_each_entry(int dirfd, const char *path, DirFn fn, void *userdata) {
        return for_each_named(dirfd, path, name_ok, fn, userdata);
}

typedef struct ListCtx {
        ChunkStore *s;
        const char *vm;
        json_t *arr;
} ListCtx;

static int list_point(const char *name, void *userdata) {
        ListCtx *ctx = userdata;
        _cleanup_json_ json_t *m = NULL;
        int r = manifest_load(ctx->s, ctx->vm, name, &m);
        if (r == -ENOENT || r == -ENOTDIR || r == -EBADMSG)
                return 0; /* not committed (or not a point): not listed */
        if (r < 0)
                return r;
        json_t *disks = json_array();
        size_t i;
        json_t *jd;
        json_array_foreach(json_object_get(m, "disks"), i, jd)
                json_array_append_new(disks, json_pack("{s:O, s:O}", "target", json_object_get(jd, "target"), "size",
                                                       json_object_get(jd, "size")));
        json_array_append_new(ctx->arr, json_pack("{s:s, s:s, s:o, s:O}", "vm_uuid", ctx->vm, "point_id", name,
                                                  "disks", disks, "meta", json_object_get(m, "meta")));
        return 0;
}

static int list_vm(const char *name, void *userdata) {
        ListCtx *ctx = userdata;
        char path[DIR_MAX];
        snprintf(path, sizeof path, "vm/%s", name);
        ListCtx sub = *ctx;
        sub.vm = name;
        return for_each_entry(ctx->s->dirfd, path, list_point, &sub);
}

static int cmp_points(const void *a, const void *b) {
        json_t *x = *(json_t *const *) a, *y = *(json_t *const *) b;
        int c = strcmp(json_string_value(json_object_get(x, "point_id")),
                       json_string_value(json_object_get(y, "point_id")));
        return c ? c
                 : strcmp(json_string_value(json_object_get(x, "vm_uuid")),
                          json_string_value(json_object_get(y, "vm_uuid")));
}

int point_list(ChunkStore *s, const char *vm_uuid, json_t **ret) {
        if (!s || !ret || (vm_uuid && !name_ok(vm_uuid)))
                return -EINVAL;
        _cleanup_json_ json_t *arr = json_array();
        ListCtx ctx = {.s = s, .arr = arr};
        int r = vm_uuid ? list_vm(vm_uuid, &ctx) : for_each_entry(s->dirfd, "vm", list_vm, &ctx);
        if (r < 0)
                return r;
        size_t n = json_array_size(arr);
        _cleanup_free_ json_t **items = calloc(n ? n : 1, sizeof *items);
        if (!items)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                items[i] = json_incref(json_array_get(arr, i));
        qsort(items, n, sizeof *items, cmp_points);
        json_t *sorted = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(sorted, items[i]);
        *ret = sorted;
        return 0;
}

static int unlink_idx(const char *name, void *userdata) {
        const char *dir = ((const char **) userdata)[0];
        int dirfd = *(const int *) ((const void **) userdata)[1];
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        (void) unlinkat(dirfd, path, 0);
        return 0;
}

typedef struct Rebase {
        ChunkStore *s;
        const char *vm;
        const char *gone;       /* the point being removed */
        const char *onto_id;    /* its base, or NULL: it had whole indexes */
        Point *onto;            /* that base, resolved when a first dependent needs it */
        int r;
} Rebase;

typedef struct StaleIdx {
        ChunkStore *s;
        const char *dir;
        json_t *m;
} StaleIdx;

/* Removes index file NAME of the point's directory when its manifest does not name it. */
static int unlink_stale_idx(const char *name, void *userdata) {
        StaleIdx *x = userdata;
        size_t l = strlen(name), i;
        if (l < 4 || !streq(name + l - 4, ".idx"))
                return 0;
        json_t *jd;
        json_array_foreach(json_object_get(x->m, "disks"), i, jd)
                if (json_is_string(json_object_get(jd, "index")) && streq(name, json_string_value(json_object_get(jd, "index"))))
                        return 0;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", x->dir, name);
        (void) unlinkat(x->s->dirfd, path, 0);
        return 0;
}

/* Point NAME of the VM, when it stands on the point being removed: its
 * indexes are written again against that point's own base (or whole),
 * beside the current ones, then its manifest; the old files go last. Its
 * chunk lists stay exactly what they were. */
static int rebase_point(const char *name, void *userdata) {
        Rebase *rb = userdata;
        if (streq(name, rb->gone))
                return 0;
        _cleanup_json_ json_t *m = NULL;
        if (manifest_load(rb->s, rb->vm, name, &m) < 0 ||
            !json_is_string(json_object_get(m, "base")) || !streq(json_string_value(json_object_get(m, "base")), rb->gone))
                return 0; /* not a point, or not on this one */
        Point *p = NULL;
        int r = point_open_locked(rb->s, rb->vm, name, &p);
        if (r == -EBADMSG)
                return 0; /* unreadable already: nothing of it to keep */
        if (r < 0)
                return rb->r = r;
        if (rb->onto_id && !rb->onto && (r = point_open_locked(rb->s, rb->vm, rb->onto_id, &rb->onto)) < 0) {
                point_free(p);
                return rb->r = r; /* cannot happen while P could be read through it */
        }
        r = point_store(p, rb->onto, rb->onto ? rb->onto->id : "full");
        if (r == 0) {
                char dir[DIR_MAX];
                point_dir(p, dir);
                _cleanup_json_ json_t *now = NULL;
                if (manifest_load(rb->s, rb->vm, name, &now) == 0) {
                        StaleIdx x = {.s = rb->s, .dir = dir, .m = now};
                        (void) for_each_entry(rb->s->dirfd, dir, unlink_stale_idx, &x);
                }
        }
        point_free(p);
        return r < 0 ? (rb->r = r) : 0;
}

int point_remove(ChunkStore *s, const char *vm_uuid, const char *point_id) {
        if (!s || !name_ok(vm_uuid) || !name_ok(point_id))
                return -EINVAL;
        char dir[DIR_MAX], path[PATH_MAX];
        snprintf(dir, sizeof dir, "vm/%s/%s", vm_uuid, point_id);
        snprintf(path, sizeof path, "%s/manifest.json", dir);
        pthread_mutex_t *lk = point_lock(vm_uuid);
        pthread_mutex_lock(lk);
        /* The points whose delta indexes apply to this one are rebased
         * first: a base a kept point needs never goes before the point
         * stops needing it. A point that cannot be read has nothing to give
         * its dependents (they could not be read either). */
        _cleanup_json_ json_t *gone = NULL;
        int r = manifest_load(s, vm_uuid, point_id, &gone);
        if (r == 0) {
                Rebase rb = {.s = s, .vm = vm_uuid, .gone = point_id,
                             .onto_id = json_string_value(json_object_get(gone, "base"))};
                snprintf(path, sizeof path, "vm/%s", vm_uuid);
                r = for_each_entry(s->dirfd, path, rebase_point, &rb);
                if (r == 0)
                        r = rb.r;
                point_free(rb.onto);
        } else if (r != -ENOMEM && r != -ENOENT)
                r = 0;
        if (r < 0) {
                pthread_mutex_unlock(lk);
                return r;
        }
        /* The manifest goes first: from then on the point does not exist. */
        snprintf(path, sizeof path, "%s/manifest.json", dir);
        if (unlinkat(s->dirfd, path, 0) < 0) {
                r = -errno;
                pthread_mutex_unlock(lk);
                return r;
        }
        (void) fsync_dir_at(s->dirfd, dir);
        const void *ctx[2] = {dir, &s->dirfd};
        (void) for_each_entry(s->dirfd, dir, unlink_idx, ctx);
        (void) unlinkat(s->dirfd, dir, AT_REMOVEDIR);
        snprintf(path, sizeof path, "vm/%s", vm_uuid);
        (void) unlinkat(s->dirfd, path, AT_REMOVEDIR); /* when it was the VM's last */
        pthread_mutex_unlock(lk);
        return 0;
}

int point_read_disk(ChunkStore *s, const Point *p, unsigned disk, int fd, ChunkProgress progress, void *userdata) {
        if (!s || !p || disk >= p->ndisks || fd < 0 || p->s->chunk_size != s->chunk_size)
                return -EINVAL;
        const PointDisk *d = &p->disks[disk];
        _cleanup_free_ uint8_t *buf = malloc(CHUNK_SIZE);
        if (!buf)
                return -ENOMEM;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        bool regular = S_ISREG(st.st_mode); /* else a device: zeros are written */
        if (regular && ftruncate(fd, 0) < 0)
                return -errno;
        for (uint64_t c = 0; c < d->nchunks; c++) {
                const uint8_t *g = d->digests + c * 32;
                uint64_t off = c * s->chunk_size;
                size_t want = (size_t) (d->size - off < s->chunk_size ? d->size - off : s->chunk_size);
                if (memcmp(g, zero_digest, 32) == 0 && !regular) {
                        memset(buf, 0, want);
                        int r = pwrite_all(fd, buf, want, (off_t) off);
                        if (r < 0)
                                return r;
                } else if (memcmp(g, zero_digest, 32) != 0) {
                        size_t len;
                        int r = chunkstore_get(s, (const ChunkDigest *) g, buf, CHUNK_SIZE, &len);
                        if (r < 0)
                                return r;
                        if (len != want)
                                return -EBADMSG;
                        r = pwrite_all(fd, buf, len, (off_t) off);
                        if (r < 0)
                                return r;
                }
                if (progress)
                        progress(off + want, d->size, userdata);
        }
        /* The holes of the zero chunks, and the size when the tail is zero. */
        if (regular && ftruncate(fd, (off_t) d->size) < 0)
                return -errno;
        return 0;
}

/* ------------------------------------------------- walking every point */

typedef int (*PointFn)(ChunkStore *s, const char *vm, const char *id, void *userdata);

typedef struct WalkCtx {
        ChunkStore *s;
        const char *vm;
        PointFn fn;
        void *userdata;
} WalkCtx;

static int walk_point(const char *name, void *userdata) {
        WalkCtx *w = userdata;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "vm/%s/%s/manifest.json", w->vm, name);
        if (faccessat(w->s->dirfd, path, F_OK, 0) < 0)
                return 0; /* not committed */
        return w->fn(w->s, w->vm, name, w->userdata);
}

static int walk_vm(const char *name, void *userdata) {
        WalkCtx w = *(WalkCtx *) userdata;
        w.vm = name;
        char path[DIR_MAX];
        snprintf(path, sizeof path, "vm/%s", name);
        return for_each_entry(w.s->dirfd, path, walk_point, &w);
}

/* Calls FN for every point that has a manifest, readable or not. */
static int walk_points(ChunkStore *s, PointFn fn, void *userdata) {
        WalkCtx w = {.s = s, .fn = fn, .userdata = userdata};
        return for_each_entry(s->dirfd, "vm", walk_vm, &w);
}

/* A sorted set of digests (the chunks some point names). */
typedef struct DigestSet {
        uint8_t *d;
        size_t n, cap;
} DigestSet;

static int digest_cmp(const void *a, const void *b) {
        return memcmp(a, b, 32);
}

static int set_add_point(DigestSet *set, const Point *p) {
        for (unsigned i = 0; i < p->ndisks; i++)
                for (uint64_t c = 0; c < p->disks[i].nchunks; c++) {
                        const uint8_t *g = p->disks[i].digests + c * 32;
                        if (memcmp(g, zero_digest, 32) == 0)
                                continue;
                        if (set->n == set->cap) {
                                size_t cap = set->cap ? set->cap * 2 : 4096;
                                uint8_t *nd = realloc(set->d, cap * 32);
                                if (!nd)
                                        return -ENOMEM;
                                set->d = nd;
                                set->cap = cap;
                        }
                        memcpy(set->d + set->n++ * 32, g, 32);
                }
        return 0;
}

static void set_finish(DigestSet *set) {
        if (set->n == 0)
                return;
        qsort(set->d, set->n, 32, digest_cmp);
        size_t w = 1;
        for (size_t i = 1; i < set->n; i++)
                if (memcmp(set->d + i * 32, set->d + (w - 1) * 32, 32) != 0)
                        memmove(set->d + w++ * 32, set->d + i * 32, 32);
        set->n = w;
}

static ssize_t set_find(const DigestSet *set, const uint8_t *g) {
        const uint8_t *hit = set->n ? bsearch(g, set->d, set->n, 32, digest_cmp) : NULL;
        return hit ? (hit - set->d) / 32 : -1;
}

typedef struct MarkCtx {
        DigestSet set;
        uint64_t points;
        bool strict; /* an unreadable point stops the walk (GC) */
        json_t *unreadable; /* else it is recorded here (verify) */
        uint64_t unreadable_n;
} MarkCtx;

static int mark_point(ChunkStore *s, const char *vm, const char *id, void *userdata) {
        MarkCtx *m = userdata;
        Point *p = NULL;
        int r = point_open(s, vm, id, &p);
        if (r < 0) {
                if (m->strict || r == -ENOMEM)
                        return r == -ENOENT ? 0 : r;
                json_array_append_new(m->unreadable, json_pack("{s:s, s:s, s:n, s:n, s:n, s:s}", "vm_uuid", vm,
                                                               "point_id", id, "disk", "chunk", "digest", "reason",
                                                               "corrupt"));
                m->unreadable_n++;
                return 0;
        }
        m->points++;
        r = set_add_point(&m->set, p);
        point_free(p);
        return r;
}

/* ------------------------------------------------------------------ usage */

typedef int (*ChunkFileFn)(ChunkStore *s, const char *sub, const char *name, void *userdata);

typedef struct ChunkWalk {
        ChunkStore *s;
        ChunkFileFn fn;
        void *userdata;
        const char *sub;
} ChunkWalk;

static int chunk_walk_file(const char *name, void *userdata) {
        ChunkWalk *w = userdata;
        return w->fn(w->s, w->sub, name, w->userdata);
}

static int chunk_walk_dir(const char *name, void *userdata) {
        ChunkWalk w = *(ChunkWalk *) userdata;
        char sub[32];
        if (strlen(name) != 4)
                return 0;
        snprintf(sub, sizeof sub, ".chunks/%s", name);
        w.sub = sub;
        return for_each_entry(w.s->dirfd, sub, chunk_walk_file, &w);
}

/* Calls FN for every file of every .chunks/XXXX, chunk or temporary. */
static int walk_chunk_files(ChunkStore *s, ChunkFileFn fn, void *userdata) {
        ChunkWalk w = {.s = s, .fn = fn, .userdata = userdata};
        return for_each_entry(s->dirfd, ".chunks", chunk_walk_dir, &w);
}

/* for_each_entry() skips dot files; temporaries are found this way. */
static bool is_tmp(const char *name) {
        return strncmp(name, ".tmp.", 5) == 0;
}

static int for_each_tmp(int dirfd, const char *path, DirFn fn, void *userdata) {
        return for_each_named(dirfd, path, is_tmp, fn, userdata);
}

static int usage_chunk(ChunkStore *s, const char *sub, const char *name, void *userdata) {
        ChunkStoreUsage *u = userdata;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", sub, name);
        struct stat st;
        if (fstatat(s->dirfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                return 0;
        u->chunks++;
        u->stored_bytes += (uint64_t) st.st_size;
        return 0;
}

int chunkstore_usage(ChunkStore *s, ChunkStoreUsage *ret) {
        if (!s || !ret)
                return -EINVAL;
        ChunkStoreUsage u = {0};
        int r = walk_chunk_files(s, usage_chunk, &u);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *list = NULL;
        r = point_list(s, NULL, &list);
        if (r < 0)
                return r;
        size_t i, j;
        json_t *pt, *d;
        json_array_foreach(list, i, pt) {
                u.points++;
                json_array_foreach(json_object_get(pt, "disks"), j, d)
                        u.logical_bytes += (uint64_t) json_integer_value(json_object_get(d, "size"));
        }
        *ret = u;
        return 0;
}

/* ----------------------------------------------------------------- verify */

typedef struct VerifyCtx {
        const DigestSet *set;
        const uint8_t *status; /* per set entry: 0 good, 1 missing, 2 corrupt */
        json_t *bad;
} VerifyCtx;

static int verify_point(ChunkStore *s, const char *vm, const char *id, void *userdata) {
        VerifyCtx *v = userdata;
        Point *p = NULL;
        if (point_open(s, vm, id, &p) < 0)
                return 0; /* already recorded as unreadable */
        for (unsigned i = 0; i < p->ndisks; i++)
                for (uint64_t c = 0; c < p->disks[i].nchunks; c++) {
                        const uint8_t *g = p->disks[i].digests + c * 32;
                        ssize_t k = memcmp(g, zero_digest, 32) == 0 ? -1 : set_find(v->set, g);
                        if (k < 0 || v->status[k] == 0)
                                continue;
                        char hex[65];
                        chunk_digest_hex((const ChunkDigest *) g, hex);
                        json_array_append_new(v->bad, json_pack("{s:s, s:s, s:s, s:I, s:s, s:s}", "vm_uuid", vm,
                                                                "point_id", id, "disk", p->disks[i].target, "chunk",
                                                                (json_int_t) c, "digest", hex, "reason",
                                                                v->status[k] == 1 ? "missing" : "corrupt"));
                        point_free(p);
                        return 0; /* one reason per point is enough to name it */
                }
        point_free(p);
        return 0;
}

int chunkstore_verify(ChunkStore *s, ChunkProgress progress, void *userdata, json_t **ret) {
        if (!s || !ret)
                return -EINVAL;
        _cleanup_json_ json_t *bad = json_array();
        MarkCtx m = {.unreadable = bad};
        int r = walk_points(s, mark_point, &m);
        if (r < 0) {
                free(m.set.d);
                return r;
        }
        set_finish(&m.set);
        uint8_t *status = calloc(m.set.n ? m.set.n : 1, 1);
        uint8_t *buf = malloc(CHUNK_SIZE);
        if (!status || !buf) {
                free(status);
                free(buf);
                free(m.set.d);
                return -ENOMEM;
        }
        for (size_t i = 0; i < m.set.n; i++) {
                r = chunkstore_get(s, (const ChunkDigest *) (m.set.d + i * 32), buf, CHUNK_SIZE, NULL);
                status[i] = r == 0 ? 0 : r == -ENOENT ? 1 : 2;
                if (progress)
                        progress(i + 1, m.set.n, userdata);
        }
        VerifyCtx v = {.set = &m.set, .status = status, .bad = bad};
        r = walk_points(s, verify_point, &v);
        free(status);
        free(buf);
        free(m.set.d);
        if (r < 0)
                return r;
        *ret = json_pack("{s:I, s:I, s:O}", "points", (json_int_t) (m.points + m.unreadable_n), "chunks",
                         (json_int_t) m.set.n, "bad_points", bad);
        return *ret ? 0 : -ENOMEM;
}

/* --------------------------------------------------- garbage collection */

typedef struct GcCtx {
        const DigestSet *set;
        time_t keep_newer_than;
        ChunkStoreGc res;
} GcCtx;

static int gc_chunk(ChunkStore *s, const char *sub, const char *name, void *userdata) {
        GcCtx *g = userdata;
        ChunkDigest d;
        if (chunk_digest_parse(name, &d) < 0)
                return 0; /* not ours */
        if (set_find(g->set, d.b) >= 0) {
                g->res.chunks_kept++;
                return 0;
        }
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", sub, name);
        pthread_mutex_t *lk = chunk_lock(&d);
        pthread_mutex_lock(lk);
        struct stat st;
        int r = 0;
        if (fstatat(s->dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_mtime < g->keep_newer_than) {
                if (unlinkat(s->dirfd, path, 0) == 0) {
                        g->res.chunks_removed++;
                        g->res.bytes_removed += (uint64_t) st.st_size;
                } else if (errno != ENOENT)
                        r = -errno;
        } else
                g->res.chunks_kept++;
        pthread_mutex_unlock(lk);
        return r;
}

typedef struct GcTmp {
        ChunkStore *s;
        char sub[32];
        time_t before;
} GcTmp;

static int gc_tmp_file(const char *name, void *userdata) {
        GcTmp *t = userdata;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", t->sub, name);
        struct stat st;
        if (fstatat(t->s->dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_mtime < t->before)
                (void) unlinkat(t->s->dirfd, path, 0);
        return 0;
}

static int gc_tmp_dir(const char *name, void *userdata) {
        GcTmp t = *(GcTmp *) userdata;
        if (strlen(name) != 4)
                return 0;
        snprintf(t.sub, sizeof t.sub, ".chunks/%s", name);
        return for_each_tmp(t.s->dirfd, t.sub, gc_tmp_file, &t);
}

int chunkstore_gc(ChunkStore *s, time_t keep_newer_than, ChunkStoreGc *ret) {
        if (!s)
                return -EINVAL;
        /* Mark: a point that cannot be read stops the collection, as its
         * chunks would otherwise look unused. */
        MarkCtx m = {.strict = true};
        int r = walk_points(s, mark_point, &m);
        if (r < 0) {
                free(m.set.d);
                return r;
        }
        set_finish(&m.set);
        /* Sweep. */
        GcCtx g = {.set = &m.set, .keep_newer_than = keep_newer_than};
        r = walk_chunk_files(s, gc_chunk, &g);
        free(m.set.d);
        if (r < 0)
                return r;
        /* Temporaries of writers that died (older than any running backup). */
        GcTmp t = {.s = s, .before = keep_newer_than};
        (void) for_each_entry(s->dirfd, ".chunks", gc_tmp_dir, &t);
        if (ret)
                *ret = g.res;
        return 0;
}

/* -------------------------------------------------------------- retention */

enum { MARK_NONE, MARK_KEEP, MARK_REMOVE };

static int64_t period_key(time_t t, int rule) {
        struct tm tm;
        gmtime_r(&t, &tm);
        int64_t y = tm.tm_year + 1900, m = tm.tm_mon + 1, d = tm.tm_mday, h = tm.tm_hour;
        switch (rule) {
        case 1: return ((y * 100 + m) * 100 + d) * 100 + h;
        case 2: return (y * 100 + m) * 100 + d;
        case 3: {
                char buf[16];
                strftime(buf, sizeof buf, "%G%V", &tm); /* ISO year and week */
                return strtoll(buf, NULL, 10);
        }
        case 4: return y * 100 + m;
        default: return y;
        }
}

static bool key_in(const int64_t *keys, size_t n, int64_t k) {
        for (size_t i = 0; i < n; i++)
                if (keys[i] == k)
                        return true;
        return false;
}

/* One rule of PBS's prune (its mark_selections): walking newest first, keep
 * the newest point of each of the KEEP newest periods not already covered by
 * a point an earlier rule kept. Rule 0 (keep-last) has one period per point. */
static void prune_rule(const time_t *times, const size_t *order, size_t n, unsigned keep, int rule, uint8_t *mark,
                       int64_t *scratch) {
        if (keep == 0)
                return;
        int64_t *already = scratch, *included = scratch + n;
        size_t na = 0, ni = 0;
        for (size_t i = 0; i < n; i++)
                if (mark[order[i]] == MARK_KEEP)
                        already[na++] = rule == 0 ? (int64_t) order[i] : period_key(times[order[i]], rule);
        for (size_t i = 0; i < n; i++) {
                size_t k = order[i];
                if (mark[k] != MARK_NONE)
                        continue;
                int64_t key = rule == 0 ? (int64_t) k : period_key(times[k], rule);
                if (key_in(already, na, key))
                        continue;
                if (!key_in(included, ni, key)) {
                        if (ni >= keep)
                                break;
                        included[ni++] = key;
                        mark[k] = MARK_KEEP;
                } else
                        mark[k] = MARK_REMOVE;
        }
}

static int cmp_newest_first(const void *a, const void *b, void *userdata) {
        const time_t *times = userdata;
        time_t x = times[*(const size_t *) a], y = times[*(const size_t *) b];
        return x < y ? 1 : x > y ? -1 : 0;
}

void prune_select(const time_t *times, size_t n, const PrunePolicy *pol, bool *keep) {
        bool all = !pol || (!pol->keep_last && !pol->keep_hourly && !pol->keep_daily && !pol->keep_weekly &&
                            !pol->keep_monthly && !pol->keep_yearly);
        size_t *order = all ? NULL : malloc((n ? n : 1) * sizeof *order);
        uint8_t *mark = all ? NULL : calloc(n ? n : 1, 1);
        int64_t *scratch = all ? NULL : malloc((n ? n : 1) * 2 * sizeof *scratch);
        if (all || !order || !mark || !scratch) {
                /* Keeping everything is the safe answer when memory fails. */
                for (size_t i = 0; i < n; i++)
                        keep[i] = true;
                free(order);
                free(mark);
                free(scratch);
                return;
        }
        for (size_t i = 0; i < n; i++)
                order[i] = i;
        qsort_r(order, n, sizeof *order, cmp_newest_first, (void *) times);
        const unsigned keeps[6] = {pol->keep_last, pol->keep_hourly, pol->keep_daily, pol->keep_weekly,
                                   pol->keep_monthly, pol->keep_yearly};
        for (int rule = 0; rule < 6; rule++)
                prune_rule(times, order, n, keeps[rule], rule, mark, scratch);
        for (size_t i = 0; i < n; i++)
                keep[i] = mark[i] == MARK_KEEP;
        free(order);
        free(mark);
        free(scratch);
}

/* ------------------------------------------------------------------ copies */

/* Sends the chunks of P that DST lacks (read and checked from SRC). */
static int copy_chunks(ChunkStore *src, ChunkStore *dst, const Point *p, uint8_t *buf, ChunkProgress progress,
                       void *userdata, uint64_t *done, uint64_t total, uint64_t *chunks_sent, uint64_t *bytes_sent) {
        for (unsigned i = 0; i < p->ndisks; i++)
                for (uint64_t c = 0; c < p->disks[i].nchunks; c++) {
                        const ChunkDigest *g = (const ChunkDigest *) (p->disks[i].digests + c * 32);
                        (*done)++;
                        if (memcmp(g->b, zero_digest, 32) != 0 && !chunkstore_has(dst, g)) {
                                size_t len;
                                int r = chunkstore_get(src, g, buf, CHUNK_SIZE, &len);
                                if (r < 0)
                                        return r;
                                ChunkDigest d;
                                uint64_t w = 0;
                                r = chunkstore_put(dst, buf, len, &d, &w);
                                if (r < 0)
                                        return r;
                                if (w > 0) {
                                        (*chunks_sent)++;
                                        *bytes_sent += w;
                                }
                        }
                        if (progress)
                                progress(*done, total, userdata);
                }
        return 0;
}

typedef struct Before {
        ChunkStore *s;
        const char *vm, *id;
        char best[129];
} Before;

static int before_point(const char *name, void *userdata) {
        Before *b = userdata;
        if (strcmp(name, b->id) < 0 && strcmp(name, b->best) > 0 && point_exists(b->s, b->vm, name))
                snprintf(b->best, sizeof b->best, "%s", name);
        return 0;
}

/* The newest readable point of VM_UUID in S older than POINT_ID, to write
 * a copied or imported point's indexes against (only what differs from it
 * is stored; the chunk lists are the copy's own either way): -ENOENT when
 * there is none. */
static int point_base_for(ChunkStore *s, const char *vm_uuid, const char *point_id, Point **ret) {
        Before b = {.s = s, .vm = vm_uuid, .id = point_id};
        char path[DIR_MAX];
        snprintf(path, sizeof path, "vm/%s", vm_uuid);
        int r = for_each_entry(s->dirfd, path, before_point, &b);
        if (r < 0)
                return r;
        return b.best[0] ? point_open(s, vm_uuid, b.best, ret) : -ENOENT;
}

/* Writes P's manifest into DST (its chunks are there already). */
static int copy_manifest(ChunkStore *dst, const Point *p) {
        Point *q = NULL, *base = NULL;
        (void) point_base_for(dst, p->vm_uuid, p->id, &base);
        int r = point_new(dst, p->vm_uuid, p->id, base, &q);
        if (r < 0)
                return r;
        for (unsigned i = 0; r == 0 && i < p->ndisks; i++) {
                unsigned k;
                r = point_add_disk(q, p->disks[i].target, p->disks[i].size, &k);
                if (r == 0)
                        memcpy(q->disks[k].digests, p->disks[i].digests, p->disks[i].nchunks * 32);
        }
        if (r == 0 && json_object_update(q->meta, p->meta) < 0)
                r = -ENOMEM;
        if (r == 0)
                r = point_commit(q);
        point_free(q);
        point_free(base);
        return r;
}

int chunkstore_copy_points(ChunkStore *src, ChunkStore *dst, json_t *points, ChunkProgress progress, void *userdata,
                           uint64_t *ret_chunks_sent, uint64_t *ret_bytes_sent) {
        if (!src || !dst || !json_is_array(points))
                return -EINVAL;
        if (src->chunk_size != dst->chunk_size)
                return -EXDEV;
        size_t n = json_array_size(points);
        Point **ps = calloc(n ? n : 1, sizeof *ps);
        uint8_t *buf = malloc(CHUNK_SIZE);
        int r = ps && buf ? 0 : -ENOMEM;
        uint64_t total = 0, done = 0, chunks_sent = 0, bytes_sent = 0;
        /* Open every point first: a name that does not exist fails before
         * anything is copied. */
        for (size_t i = 0; r == 0 && i < n; i++) {
                json_t *e = json_array_get(points, i);
                const char *vm = json_string_value(json_object_get(e, "vm_uuid"));
                const char *id = json_string_value(json_object_get(e, "point_id"));
                r = vm && id ? point_open(src, vm, id, &ps[i]) : -EINVAL;
                for (unsigned d = 0; r == 0 && d < ps[i]->ndisks; d++)
                        total += ps[i]->disks[d].nchunks;
        }
        for (size_t i = 0; r == 0 && i < n; i++) {
                char path[PATH_MAX];
                snprintf(path, sizeof path, "vm/%s/%s/manifest.json", ps[i]->vm_uuid, ps[i]->id);
                if (faccessat(dst->dirfd, path, F_OK, 0) == 0)
                        continue; /* already there (an import run twice) */
                r = copy_chunks(src, dst, ps[i], buf, progress, userdata, &done, total, &chunks_sent, &bytes_sent);
                if (r == 0)
                        r = copy_manifest(dst, ps[i]);
        }
        for (size_t i = 0; ps && i < n; i++)
                point_free(ps[i]);
        free(ps);
        free(buf);
        if (r < 0)
                return r;
        if (ret_chunks_sent)
                *ret_chunks_sent = chunks_sent;
        if (ret_bytes_sent)
                *ret_bytes_sent = bytes_sent;
        return 0;
}

/* ------------------------------------------------------------ replication */

int chunkstore_read_raw(ChunkStore *s, const ChunkDigest *d, uint8_t **ret, size_t *ret_len) {
        if (!s || !d || !ret || !ret_len)
                return -EINVAL;
        char path[80];
        chunk_path(d, path);
        _cleanup_free_ uint8_t *file = NULL;
        size_t flen;
        int r = read_file_at(s->dirfd, path, CHUNK_FILE_MAX, &file, &flen);
        if (r == -EFBIG)
                return -EBADMSG;
        if (r < 0)
                return r;
        _cleanup_free_ uint8_t *buf = malloc(CHUNK_SIZE);
        if (!buf)
                return -ENOMEM;
        r = chunk_decode(d, file, flen, buf, CHUNK_SIZE, NULL);
        if (r < 0)
                return r == -ENOBUFS ? -EBADMSG : r;
        *ret = steal_ptr(file);
        *ret_len = flen;
        return 0;
}

int chunkstore_put_raw(ChunkStore *s, const ChunkDigest *d, const void *file, size_t len, uint64_t *ret_written) {
        if (!s || !d || (!file && len))
                return -EINVAL;
        if (len > CHUNK_FILE_MAX || memcmp(d->b, zero_digest, 32) == 0)
                return -EBADMSG;
        _cleanup_free_ uint8_t *buf = malloc(s->chunk_size);
        if (!buf)
                return -ENOMEM;
        /* A chunk longer than S cuts is not one of S's points' chunks. */
        int r = chunk_decode(d, file, len, buf, s->chunk_size, NULL);
        if (r < 0)
                return r == -ENOBUFS ? -EBADMSG : r;
        if (chunk_touch(s, d) == 0) {
                if (ret_written)
                        *ret_written = 0;
                return 0;
        }
        char path[80];
        chunk_path(d, path);
        char sub[16];
        snprintf(sub, sizeof sub, ".chunks/%.4s", path + 8);
        if (mkdirat(s->dirfd, sub, 0755) < 0 && errno != EEXIST)
                return -errno;
        pthread_mutex_t *lk = chunk_lock(d);
        pthread_mutex_lock(lk);
        r = write_atomic_at(s->dirfd, path, file, len, false);
        pthread_mutex_unlock(lk);
        if (r < 0)
                return r;
        if (ret_written)
                *ret_written = len;
        return 0;
}

int point_export(const Point *p, json_t **ret) {
        if (!p || !ret)
                return -EINVAL;
        json_t *disks = json_array();
        for (unsigned i = 0; i < p->ndisks; i++) {
                const PointDisk *d = &p->disks[i];
                char *hex = malloc(d->nchunks * 64 + 1);
                if (!hex) {
                        json_decref(disks);
                        return -ENOMEM;
                }
                for (uint64_t c = 0; c < d->nchunks; c++)
                        chunk_digest_hex((const ChunkDigest *) (d->digests + c * 32), hex + c * 64);
                hex[d->nchunks * 64] = 0;
                json_array_append_new(disks, json_pack("{s:s, s:I, s:s}", "target", d->target, "size", (json_int_t) d->size,
                                                       "digests", hex));
                free(hex);
        }
        *ret = json_pack("{s:s, s:s, s:I, s:O, s:o}", "vm_uuid", p->vm_uuid, "point_id", p->id, "chunk_size",
                         (json_int_t) p->s->chunk_size, "meta", p->meta, "disks", disks);
        return *ret ? 0 : -ENOMEM;
}

/* Adds disk JD of an exported point to Q: -EINVAL when malformed. */
static int import_disk(Point *q, json_t *jd) {
        const char *target = json_string_value(json_object_get(jd, "target"));
        const char *hex = json_string_value(json_object_get(jd, "digests"));
        json_t *jsize = json_object_get(jd, "size");
        if (!target || !hex || !json_is_integer(jsize) || json_integer_value(jsize) < 0)
                return -EINVAL;
        uint64_t size = (uint64_t) json_integer_value(jsize), n = chunks_for(q->s, size);
        /* The digests must match the size before anything is allocated. */
        if (n > SIZE_MAX / 64 || strlen(hex) != n * 64)
                return -EINVAL;
        unsigned k;
        int r = point_add_disk(q, target, size, &k);
        if (r < 0)
                return r == -ENOMEM ? r : -EINVAL;
        char one[65];
        one[64] = 0;
        for (uint64_t c = 0; c < n; c++) {
                ChunkDigest g;
                memcpy(one, hex + c * 64, 64);
                if (chunk_digest_parse(one, &g) < 0)
                        return -EINVAL;
                r = point_set_chunk(q, k, c, memcmp(g.b, zero_digest, 32) == 0 ? NULL : &g);
                if (r < 0)
                        return r;
        }
        return 0;
}

int point_import(ChunkStore *s, const json_t *m) {
        const char *vm = json_string_value(json_object_get(m, "vm_uuid"));
        const char *id = json_string_value(json_object_get(m, "point_id"));
        json_t *meta = json_object_get(m, "meta"), *disks = json_object_get(m, "disks");
        if (!s || !vm || !id || !json_is_object(meta) || !json_is_array(disks) || json_array_size(disks) > 256)
                return -EINVAL;
        json_t *cs = json_object_get(m, "chunk_size");
        if (cs && !json_is_integer(cs))
                return -EINVAL;
        if ((cs ? json_integer_value(cs) : CHUNK_SIZE) != s->chunk_size)
                return -EXDEV;
        if (!name_ok(vm) || !name_ok(id))
                return -EINVAL;
        Point *q = NULL, *base = NULL;
        (void) point_base_for(s, vm, id, &base);
        int r = point_new(s, vm, id, base, &q);
        if (r < 0) {
                point_free(base);
                return r == -ENOMEM || r == -EEXIST ? r : -EINVAL;
        }
        size_t i;
        json_t *jd;
        json_array_foreach(disks, i, jd) {
                if (r < 0)
                        break;
                r = import_disk(q, jd);
        }
        if (r == 0 && json_object_update(q->meta, meta) < 0)
                r = -ENOMEM;
        if (r == 0)
                r = point_commit(q);
        point_free(q);
        point_free(base);
        return r;
}
