/* protect-nbdserve: a small read-only NBD server that exposes one disk of a
 * recovery point straight from the chunk store, so that a file-level
 * restore (protect-files.c) can read the point's file systems without
 * writing the disk out first.
 *
 * It speaks the fixed-newstyle handshake (NBD_OPT_GO, NBD_OPT_INFO,
 * NBD_OPT_EXPORT_NAME, NBD_OPT_LIST, NBD_OPT_ABORT; every other option is
 * NBD_REP_ERR_UNSUP, so clients fall back to simple replies and no meta
 * contexts) and, once in transmission, NBD_CMD_READ and NBD_CMD_DISC only:
 * the export is flagged read-only, a write of any kind is EPERM, an
 * unknown command or a read past the end EINVAL, a read larger than the
 * advertised maximum EOVERFLOW. GO/INFO answer with the export's size and
 * its block sizes (minimum 1, preferred 4 KiB, maximum NBDSERVE_MAX_READ).
 *
 * Each read is cut at chunk boundaries; a chunk is read (and its digest
 * checked) by chunkstore_get() once into a small per-connection cache, and
 * an all-zero chunk is never read at all. A chunk that is missing or
 * corrupt fails the read with EIO. The socket lives in a fresh 0700
 * directory, so only armadad's own user reaches it; one thread accepts,
 * one thread serves each connection. */
#include "protect-priv.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/util.h"

#define NBD_MAGIC UINT64_C(0x4e42444d41474943)        /* "NBDMAGIC" */
#define NBD_IHAVEOPT UINT64_C(0x49484156454f5054)     /* "IHAVEOPT" */
#define NBD_REP_MAGIC UINT64_C(0x3e889045565a9)
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u

#define NBD_FLAG_FIXED_NEWSTYLE 1u
#define NBD_FLAG_NO_ZEROES 2u
#define NBD_FLAG_C_FIXED_NEWSTYLE 1u
#define NBD_FLAG_C_NO_ZEROES 2u

#define NBD_OPT_EXPORT_NAME 1u
#define NBD_OPT_ABORT 2u
#define NBD_OPT_LIST 3u
#define NBD_OPT_INFO 6u
#define NBD_OPT_GO 7u

#define NBD_REP_ACK 1u
#define NBD_REP_SERVER 2u
#define NBD_REP_INFO 3u
#define NBD_REP_ERR_UNSUP (0x80000000u + 1)
#define NBD_REP_ERR_INVALID (0x80000000u + 3)
#define NBD_REP_ERR_UNKNOWN (0x80000000u + 6)

#define NBD_INFO_EXPORT 0u
#define NBD_INFO_BLOCK_SIZE 3u

#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)

#define NBD_CMD_READ 0u
#define NBD_CMD_WRITE 1u
#define NBD_CMD_DISC 2u

#define NBD_EPERM 1u
#define NBD_EIO 5u
#define NBD_ENOMEM 12u
#define NBD_EINVAL 22u
#define NBD_EOVERFLOW 75u

#define NBDSERVE_OPT_MAX 4096u          /* an option's data: a name and a few info requests */
#define NBDSERVE_CACHE 2                /* chunks kept per connection */
#define NBDSERVE_MAX_CONN 16            /* connections at once; more are closed at once */

struct ProtectNbdServer {
        ChunkStore *store;
        const Point *point;
        unsigned disk;
        uint64_t size;
        char export_name[64];
        char dir[128];
        char socket[160];
        int listen_fd;
        int wake[2];                    /* a byte here stops the accept loop */
        pthread_t acceptor;
        pthread_mutex_t lock;
        pthread_cond_t idle;
        unsigned connections;           /* serving threads still running */
        int conn_fd[NBDSERVE_MAX_CONN]; /* their sockets (-1: free slot), shut down by stop */
};

typedef struct {
        ProtectNbdServer *srv;
        int fd;
        unsigned slot;                  /* in srv->conn_fd */
        uint64_t cached[NBDSERVE_CACHE]; /* chunk index + 1; 0: empty */
        size_t cached_len[NBDSERVE_CACHE];
        uint8_t *buf[NBDSERVE_CACHE];
        unsigned next_slot;
} Conn;

/* ---- wire ---- */

static int read_full(int fd, void *buf, size_t len) {
        uint8_t *p = buf;
        while (len > 0) {
                ssize_t k = read(fd, p, len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k == 0 ? -ECONNRESET : -errno;
                p += k;
                len -= (size_t) k;
        }
        return 0;
}

static int write_full(int fd, const void *buf, size_t len) {
        const uint8_t *p = buf;
        while (len > 0) {
                ssize_t k = send(fd, p, len, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                p += k;
                len -= (size_t) k;
        }
        return 0;
}

/* Reads and drops len bytes (the payload of an option or write refused). */
static int skip_bytes(int fd, uint64_t len) {
        uint8_t junk[4096];
        while (len > 0) {
                size_t n = len < sizeof junk ? (size_t) len : sizeof junk;
                int r = read_full(fd, junk, n);
                if (r < 0)
                        return r;
                len -= n;
        }
        return 0;
}

static void put16(uint8_t *p, uint16_t v) {
        v = htobe16(v);
        memcpy(p, &v, 2);
}
static void put32(uint8_t *p, uint32_t v) {
        v = htobe32(v);
        memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v) {
        v = htobe64(v);
        memcpy(p, &v, 8);
}
static uint16_t get16(const uint8_t *p) {
        uint16_t v;
        memcpy(&v, p, 2);
        return be16toh(v);
}
static uint32_t get32(const uint8_t *p) {
        uint32_t v;
        memcpy(&v, p, 4);
        return be32toh(v);
}
static uint64_t get64(const uint8_t *p) {
        uint64_t v;
        memcpy(&v, p, 8);
        return be64toh(v);
}

static int opt_reply(int fd, uint32_t opt, uint32_t type, const void *data, uint32_t len) {
        uint8_t h[20];
        put64(h, NBD_REP_MAGIC);
        put32(h + 8, opt);
        put32(h + 12, type);
        put32(h + 16, len);
        int r = write_full(fd, h, sizeof h);
        return r < 0 || len == 0 ? r : write_full(fd, data, len);
}

static uint16_t export_flags(void) {
        return NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_CAN_MULTI_CONN;
}

/* ---- handshake ---- */

/* NBD_OPT_INFO / NBD_OPT_GO: 1 to enter transmission (GO answered), 0 to
 * go on with options, negative to drop the connection. */
static int opt_info_go(Conn *k, uint32_t opt, const uint8_t *data, uint32_t len) {
        ProtectNbdServer *srv = k->srv;
        if (len < 6)
                return opt_reply(k->fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
        uint32_t nlen = get32(data);
        if ((uint64_t) nlen + 6 > len)
                return opt_reply(k->fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
        uint16_t nreq = get16(data + 4 + nlen);
        if ((uint64_t) 6 + nlen + 2u * nreq != len)
                return opt_reply(k->fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
        /* "" is the default export; else the disk's name. */
        if (nlen > 0 && (nlen != strlen(srv->export_name) || memcmp(data + 4, srv->export_name, nlen) != 0)) {
                static const char msg[] = "There is no such export.";
                return opt_reply(k->fd, opt, NBD_REP_ERR_UNKNOWN, msg, sizeof msg - 1);
        }
        uint8_t info[18];
        put16(info, NBD_INFO_EXPORT);
        put64(info + 2, srv->size);
        put16(info + 10, export_flags());
        int r = opt_reply(k->fd, opt, NBD_REP_INFO, info, 12);
        if (r < 0)
                return r;
        /* Block sizes whether asked or not (a client that did not ask
         * ignores them). */
        put16(info, NBD_INFO_BLOCK_SIZE);
        put32(info + 2, 1);
        put32(info + 6, 4096);
        put32(info + 10, NBDSERVE_MAX_READ);
        if ((r = opt_reply(k->fd, opt, NBD_REP_INFO, info, 14)) < 0)
                return r;
        if ((r = opt_reply(k->fd, opt, NBD_REP_ACK, NULL, 0)) < 0)
                return r;
        return opt == NBD_OPT_GO ? 1 : 0;
}

/* The handshake: 0 once in transmission, negative to drop the connection. */
static int handshake(Conn *k) {
        uint8_t h[18];
        put64(h, NBD_MAGIC);
        put64(h + 8, NBD_IHAVEOPT);
        put16(h + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
        int r = write_full(k->fd, h, 18);
        if (r < 0)
                return r;
        uint8_t cf[4];
        if ((r = read_full(k->fd, cf, 4)) < 0)
                return r;
        uint32_t cflags = get32(cf);
        if (!(cflags & NBD_FLAG_C_FIXED_NEWSTYLE))
                return -EPROTO;
        for (;;) {
                uint8_t oh[16];
                if ((r = read_full(k->fd, oh, sizeof oh)) < 0)
                        return r;
                if (get64(oh) != NBD_IHAVEOPT)
                        return -EPROTO;
                uint32_t opt = get32(oh + 8), len = get32(oh + 12);
                if (len > NBDSERVE_OPT_MAX) {
                        if ((r = skip_bytes(k->fd, len)) < 0 || (r = opt_reply(k->fd, opt, NBD_REP_ERR_INVALID, NULL, 0)) < 0)
                                return r;
                        continue;
                }
                uint8_t data[NBDSERVE_OPT_MAX];
                if (len && (r = read_full(k->fd, data, len)) < 0)
                        return r;
                switch (opt) {
                case NBD_OPT_EXPORT_NAME: {
                        if (len > 0 && (len != strlen(k->srv->export_name) || memcmp(data, k->srv->export_name, len) != 0))
                                return -ENOENT; /* this option has no error reply: hang up */
                        uint8_t rep[10 + 124] = { 0 };
                        put64(rep, k->srv->size);
                        put16(rep + 8, export_flags());
                        r = write_full(k->fd, rep, (cflags & NBD_FLAG_C_NO_ZEROES) ? 10 : sizeof rep);
                        return r;
                }
                case NBD_OPT_ABORT:
                        (void) opt_reply(k->fd, opt, NBD_REP_ACK, NULL, 0);
                        return -ECONNRESET;
                case NBD_OPT_LIST: {
                        uint8_t rep[4 + sizeof k->srv->export_name];
                        uint32_t n = (uint32_t) strlen(k->srv->export_name);
                        put32(rep, n);
                        memcpy(rep + 4, k->srv->export_name, n);
                        if ((r = opt_reply(k->fd, opt, NBD_REP_SERVER, rep, 4 + n)) < 0 ||
                            (r = opt_reply(k->fd, opt, NBD_REP_ACK, NULL, 0)) < 0)
                                return r;
                        break;
                }
                case NBD_OPT_INFO:
                case NBD_OPT_GO:
                        if ((r = opt_info_go(k, opt, data, len)) != 0)
                                return r > 0 ? 0 : r;
                        break;
                default:
                        if ((r = opt_reply(k->fd, opt, NBD_REP_ERR_UNSUP, NULL, 0)) < 0)
                                return r;
                }
        }
}

/* ---- transmission ---- */

/* Chunk index of the point's disk, through the connection's cache: 0 and
 * *ret (NULL for an all-zero chunk) and *ret_len, or negative. */
static int chunk_bytes(Conn *k, uint64_t index, const uint8_t **ret, size_t *ret_len) {
        for (unsigned i = 0; i < NBDSERVE_CACHE; i++)
                if (k->cached[i] == index + 1) {
                        *ret = k->buf[i];
                        *ret_len = k->cached_len[i];
                        return 0;
                }
        ChunkDigest d;
        bool zero = false;
        int r = point_chunk(k->srv->point, k->srv->disk, index, &d, &zero);
        if (r < 0)
                return r;
        if (zero) {
                *ret = NULL;
                *ret_len = 0;
                return 0;
        }
        unsigned slot = k->next_slot++ % NBDSERVE_CACHE;
        if (!k->buf[slot])
                k->buf[slot] = xmalloc(CHUNK_SIZE);
        k->cached[slot] = 0;
        if ((r = chunkstore_get(k->srv->store, &d, k->buf[slot], CHUNK_SIZE, &k->cached_len[slot])) < 0)
                return r;
        k->cached[slot] = index + 1;
        *ret = k->buf[slot];
        *ret_len = k->cached_len[slot];
        return 0;
}

/* Fills out with len bytes at off (within the export). */
static int read_range(Conn *k, uint64_t off, uint32_t len, uint8_t *out) {
        uint64_t end = off + len;
        ChunkSpan sp;
        for (; off < end; off += sp.len, out += sp.len) {
                int r = chunkstore_span(k->srv->store, off, end, &sp);
                if (r < 0)
                        return r;
                const uint8_t *b = NULL;
                size_t blen = 0;
                if ((r = chunk_bytes(k, sp.index, &b, &blen)) < 0)
                        return r;
                /* A chunk shorter than the span (a damaged store) is EIO, never bytes past it. */
                if (b && blen < (size_t) sp.within + sp.len)
                        return -EBADMSG;
                if (b)
                        memcpy(out, b + sp.within, sp.len);
                else
                        memset(out, 0, sp.len);
        }
        return 0;
}

static int simple_reply(int fd, uint32_t error, uint64_t cookie, const void *data, uint32_t len) {
        uint8_t h[16];
        put32(h, NBD_SIMPLE_REPLY_MAGIC);
        put32(h + 4, error);
        put64(h + 8, cookie);
        int r = write_full(fd, h, sizeof h);
        return r < 0 || error || len == 0 ? r : write_full(fd, data, len);
}

static void transmission(Conn *k) {
        _cleanup_free_ uint8_t *out = xmalloc(NBDSERVE_MAX_READ);
        for (;;) {
                uint8_t q[28];
                if (read_full(k->fd, q, sizeof q) < 0 || get32(q) != NBD_REQUEST_MAGIC)
                        return;
                uint16_t type = get16(q + 6);
                uint64_t cookie = get64(q + 8), off = get64(q + 16);
                uint32_t len = get32(q + 24);
                int r = 0;
                switch (type) {
                case NBD_CMD_READ:
                        if (len > NBDSERVE_MAX_READ)
                                r = simple_reply(k->fd, NBD_EOVERFLOW, cookie, NULL, 0);
                        else if (off > k->srv->size || len > k->srv->size - off)
                                r = simple_reply(k->fd, NBD_EINVAL, cookie, NULL, 0);
                        else if (read_range(k, off, len, out) < 0)
                                r = simple_reply(k->fd, NBD_EIO, cookie, NULL, 0);
                        else
                                r = simple_reply(k->fd, 0, cookie, out, len);
                        break;
                case NBD_CMD_DISC:
                        return;
                case NBD_CMD_WRITE:
                        /* Its payload follows the request: read past it. */
                        r = skip_bytes(k->fd, len);
                        if (r == 0)
                                r = simple_reply(k->fd, NBD_EPERM, cookie, NULL, 0);
                        break;
                default:
                        /* flush, trim, write zeroes, cache, block status: a
                         * read-only export without them. */
                        r = simple_reply(k->fd, type == 3 || type == 4 || type == 6 ? NBD_EPERM : NBD_EINVAL, cookie, NULL, 0);
                }
                if (r < 0)
                        return;
        }
}

static void *conn_main(void *userdata) {
        Conn *k = userdata;
        ProtectNbdServer *srv = k->srv;
        if (handshake(k) == 0)
                transmission(k);
        for (unsigned i = 0; i < NBDSERVE_CACHE; i++)
                free(k->buf[i]);
        pthread_mutex_lock(&srv->lock);
        close(k->fd);
        srv->conn_fd[k->slot] = -1;
        free(k);
        srv->connections--;
        pthread_cond_broadcast(&srv->idle);
        pthread_mutex_unlock(&srv->lock);
        return NULL;
}

static void *accept_main(void *userdata) {
        ProtectNbdServer *srv = userdata;
        for (;;) {
                struct pollfd p[2] = { { .fd = srv->listen_fd, .events = POLLIN }, { .fd = srv->wake[0], .events = POLLIN } };
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (p[1].revents)
                        break;
                int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                pthread_mutex_lock(&srv->lock);
                unsigned slot = 0;
                while (slot < NBDSERVE_MAX_CONN && srv->conn_fd[slot] >= 0)
                        slot++;
                if (slot == NBDSERVE_MAX_CONN) {
                        pthread_mutex_unlock(&srv->lock);
                        close(fd);
                        continue;
                }
                Conn *k = xcalloc(1, sizeof *k);
                k->srv = srv;
                k->fd = fd;
                k->slot = slot;
                srv->conn_fd[slot] = fd;
                srv->connections++;
                pthread_mutex_unlock(&srv->lock);
                pthread_t t;
                pthread_attr_t attr;
                pthread_attr_init(&attr);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                if (pthread_create(&t, &attr, conn_main, k) != 0) {
                        pthread_mutex_lock(&srv->lock);
                        close(fd);
                        srv->conn_fd[slot] = -1;
                        free(k);
                        srv->connections--;
                        pthread_mutex_unlock(&srv->lock);
                }
                pthread_attr_destroy(&attr);
        }
        return NULL;
}

int protect_nbdserve_start(ChunkStore *s, const Point *p, unsigned disk, const char *tmpdir, ProtectNbdServer **ret) {
        if (disk >= point_disk_count(p))
                return -EINVAL;
        ProtectNbdServer *srv = xcalloc(1, sizeof *srv);
        srv->store = s;
        srv->point = p;
        srv->disk = disk;
        srv->size = point_disk_size(p, disk);
        srv->listen_fd = -1;
        srv->wake[0] = srv->wake[1] = -1;
        for (unsigned i = 0; i < NBDSERVE_MAX_CONN; i++)
                srv->conn_fd[i] = -1;
        snprintf(srv->export_name, sizeof srv->export_name, "%s", point_disk_target(p, disk));
        pthread_mutex_init(&srv->lock, NULL);
        pthread_cond_init(&srv->idle, NULL);
        /* mkdtemp makes the directory 0700: only our user reaches the socket. */
        snprintf(srv->dir, sizeof srv->dir, "%s/armada-nbd-XXXXXX", tmpdir && tmpdir[0] ? tmpdir : "/tmp");
        int r = 0;
        if (!mkdtemp(srv->dir)) {
                r = -errno;
                srv->dir[0] = 0;
                goto fail;
        }
        snprintf(srv->socket, sizeof srv->socket, "%s/disk.sock", srv->dir);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(srv->socket) >= sizeof sa.sun_path) {
                r = -ENAMETOOLONG;
                goto fail;
        }
        memcpy(sa.sun_path, srv->socket, strlen(srv->socket) + 1);
        srv->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (srv->listen_fd < 0 || bind(srv->listen_fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(srv->listen_fd, 8) < 0 ||
            pipe2(srv->wake, O_CLOEXEC) < 0) {
                r = -errno;
                goto fail;
        }
        if ((r = -pthread_create(&srv->acceptor, NULL, accept_main, srv)) < 0)
                goto fail;
        *ret = srv;
        return 0;
fail:
        if (srv->listen_fd >= 0)
                close(srv->listen_fd);
        if (srv->wake[0] >= 0) {
                close(srv->wake[0]);
                close(srv->wake[1]);
        }
        if (srv->socket[0])
                (void) unlink(srv->socket);
        if (srv->dir[0])
                (void) rmdir(srv->dir);
        pthread_mutex_destroy(&srv->lock);
        pthread_cond_destroy(&srv->idle);
        free(srv);
        return r;
}

const char *protect_nbdserve_socket(const ProtectNbdServer *srv) {
        return srv->socket;
}

const char *protect_nbdserve_export(const ProtectNbdServer *srv) {
        return srv->export_name;
}

ProtectNbdServer *protect_nbdserve_stop(ProtectNbdServer *srv) {
        if (!srv)
                return NULL;
        (void) !write(srv->wake[1], "x", 1);
        pthread_join(srv->acceptor, NULL);
        /* Connections still open are ended: their reads fail and their
         * threads leave. */
        close(srv->listen_fd);
        (void) unlink(srv->socket);
        (void) rmdir(srv->dir);
        pthread_mutex_lock(&srv->lock);
        for (unsigned i = 0; i < NBDSERVE_MAX_CONN; i++)
                if (srv->conn_fd[i] >= 0)
                        (void) shutdown(srv->conn_fd[i], SHUT_RDWR);
        while (srv->connections > 0)
                pthread_cond_wait(&srv->idle, &srv->lock);
        pthread_mutex_unlock(&srv->lock);
        close(srv->wake[0]);
        close(srv->wake[1]);
        pthread_mutex_destroy(&srv->lock);
        pthread_cond_destroy(&srv->idle);
        free(srv);
        return NULL;
}
