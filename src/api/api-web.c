/* The web console's resources: VM thumbnails and the VM console.
 *
 * GET /api/v1/vms/{id}/thumbnail[?width=N] answers a small PNG of what the
 * VM shows (libvirt screenshot, scaled here), 204 when the VM is not
 * running. A page of 50 VMs asks every few seconds, so pictures are cached
 * per VM for THUMB_TTL_MS and only one request at a time refreshes a VM's
 * picture (the others get the previous one, or wait for the first). HTTP threads must not wait on
 * hosts: the handler never connects to a host. It uses the live connection
 * the inventory's monitor keeps (armadad reconnects in the background);
 * without one it serves the last picture it has, else 503. A screenshot over
 * a live connection takes milliseconds; a host that dies mid-way is cut off
 * by libvirt's keepalive within a few seconds.
 *
 * GET /api/v1/vms/{id}/console is a WebSocket (subprotocol "binary", what
 * noVNC speaks) that armadad bridges to the VM's VNC server, for users who
 * may operate the VM. armadad connects to the address in the domain's
 * <graphics listen=...>, or to the host's address from its libvirt URI when
 * VNC listens on every address. Armada's VMs on local hosts listen on the
 * loopback; on remote hosts on every address with a per-VM password (see
 * inventory_vnc_for_host()), which GET /api/v1/vms/{id}/console-password
 * hands to users who may operate the VM and noVNC sends when asked. A VM
 * whose VNC listens only on a remote host's loopback is out of reach. */
#include "api-priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>

#include "inventory/inventory.h"

#define THUMB_TTL_MS 3000
#define THUMB_WAIT_MS 5000      /* how long a request waits for another one's first picture */
#define THUMB_WIDTH_DEFAULT 160
#define THUMB_CACHE_MAX 512
#define VNC_CONNECT_TIMEOUT_MS 3000
#define WS_FRAME_MAX (1u << 20)
#define CONSOLES_MAX 64         /* open consoles (one thread each) */


/* The VM if the caller may read it; else NULL and a 404 sent. */
static json_t *vm_readable(Req *r, int64_t id) {
        OpCaller c = api_caller(r);
        OpError err;
        json_t *v = NULL;
        if (inventory_vm_readable(r->api->inv, &c, id, &v, &err) < 0)
                reply_op_error(r, &err);
        return v;
}

/* ------------------------------------------------------------------ */
/* thumbnails */

typedef struct Thumb {
        int64_t vm_id;
        unsigned width;
        int64_t taken_ms;       /* 0 while none was ever taken */
        char *png;
        size_t len;
        bool busy;              /* a request is taking a new one */
        struct Thumb *next;
} Thumb;

/* One cache per process (armadad runs one API); the list is short
 * (THUMB_CACHE_MAX) and each request walks it once. */
static pthread_mutex_t thumb_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t thumb_taken = PTHREAD_COND_INITIALIZER; /* a busy entry became idle */
static Thumb *thumbs;
static size_t n_thumbs;

/* Finds or makes the entry; caller holds thumb_lock. */
static Thumb *thumb_get_locked(int64_t vm_id, unsigned width) {
        Thumb *oldest = NULL;
        for (Thumb *t = thumbs; t; t = t->next) {
                if (t->vm_id == vm_id && t->width == width)
                        return t;
                if (!t->busy && (!oldest || t->taken_ms < oldest->taken_ms))
                        oldest = t;
        }
        if (n_thumbs >= THUMB_CACHE_MAX && oldest) {
                for (Thumb **p = &thumbs; *p; p = &(*p)->next)
                        if (*p == oldest) {
                                *p = oldest->next;
                                break;
                        }
                free(oldest->png);
                free(oldest);
                n_thumbs--;
        }
        Thumb *t = xcalloc(1, sizeof *t);
        t->vm_id = vm_id;
        t->width = width;
        t->next = thumbs;
        thumbs = t;
        n_thumbs++;
        return t;
}

/* The entry of vm_id at width, or NULL; caller holds thumb_lock. */
static Thumb *thumb_find_locked(int64_t vm_id, unsigned width) {
        for (Thumb *t = thumbs; t; t = t->next)
                if (t->vm_id == vm_id && t->width == width)
                        return t;
        return NULL;
}

/* Waits (at most THUMB_WAIT_MS) until nobody takes the picture of vm_id
 * at width; returns its entry then, or NULL when it is gone. Caller holds
 * thumb_lock; the entry may have been replaced while waiting, hence the
 * lookup. */
static Thumb *thumb_wait_locked(int64_t vm_id, unsigned width) {
        struct timespec until = time_after_ms(CLOCK_REALTIME, THUMB_WAIT_MS);
        Thumb *t;
        while ((t = thumb_find_locked(vm_id, width)) && t->busy)
                if (pthread_cond_timedwait(&thumb_taken, &thumb_lock, &until) != 0)
                        break;
        return t;
}

/* Forgets the pictures of a VM that no longer runs. Caller holds thumb_lock. */
static void thumb_drop_locked(int64_t vm_id) {
        for (Thumb **p = &thumbs; *p;) {
                Thumb *t = *p;
                if (t->vm_id == vm_id && !t->busy) {
                        *p = t->next;
                        free(t->png);
                        free(t);
                        n_thumbs--;
                } else
                        p = &t->next;
        }
}

static void reply_png(Req *r, const char *png, size_t len) {
        r->raw = xmalloc(len ? len : 1);
        memcpy(r->raw, png, len);
        r->raw_len = len;
        r->content_type = "image/png";
        r->status = 200;
}


static void h_vm_thumbnail(Req *r) {
        int64_t width;
        if (!req_query_int(r, "width", THUMB_WIDTH_DEFAULT, 32, 640, &width))
                return;
        _cleanup_json_ json_t *v = vm_readable(r, r->id[0]);
        if (!v)
                return;
        const char *state = jget_str(v, "state");
        if (!streq(state, "running") && !streq(state, "paused")) {
                pthread_mutex_lock(&thumb_lock);
                thumb_drop_locked(r->id[0]);
                pthread_mutex_unlock(&thumb_lock);
                reply(r, 204, NULL);
                return;
        }

        pthread_mutex_lock(&thumb_lock);
        Thumb *t = thumb_get_locked(r->id[0], (unsigned) width);
        bool fresh = t->png && now_ms() - t->taken_ms < THUMB_TTL_MS;
        if (fresh || (t->busy && t->png)) {
                reply_png(r, t->png, t->len);
                pthread_mutex_unlock(&thumb_lock);
                return;
        }
        if (t->busy) {
                /* Another request is taking the first picture (milliseconds
                 * over a live connection): wait for it instead of failing,
                 * so that two viewers of a new VM both get it. */
                t = thumb_wait_locked(r->id[0], (unsigned) width);
                if (t && t->png)
                        reply_png(r, t->png, t->len);
                else if (!t) /* the VM stopped meanwhile: its pictures were dropped */
                        reply(r, 204, NULL);
                else
                        reply_error(r, 503, "unavailable", NULL, "The picture of VM '%s' could not be taken just now; ask again in a moment.",
                                    jget_str(v, "name"));
                pthread_mutex_unlock(&thumb_lock);
                return;
        }
        t->busy = true;
        pthread_mutex_unlock(&thumb_lock);

        _cleanup_free_ char *png = NULL;
        size_t len = 0;
        char why[512] = "";
        int e = inventory_vm_screen_png(r->api->inv, jget_int(v, "host_id"), jget_str(v, "uuid"), (unsigned) width, &png, &len, why,
                                        sizeof why);

        pthread_mutex_lock(&thumb_lock);
        /* The entry may not be evicted while busy, so t is still ours. */
        t->busy = false;
        pthread_cond_broadcast(&thumb_taken);
        if (e == 0) {
                free(t->png);
                t->png = steal_ptr(png);
                t->len = len;
                t->taken_ms = now_ms();
                reply_png(r, t->png, t->len);
        } else if (e == -EBUSY || e == -ENOENT) {
                thumb_drop_locked(r->id[0]);
                reply(r, 204, NULL);
        } else if (t->png) {
                reply_png(r, t->png, t->len); /* the last picture beats none */
        } else if (e == -ENOTCONN) {
                reply_error(r, 503, "unavailable", NULL,
                            "Host '%s' of VM '%s' is not connected right now; armadad reconnects in the background.",
                            jget_str(v, "host_name"), jget_str(v, "name"));
        } else if (e == -EOPNOTSUPP) {
                reply_error(r, 501, "not_supported", NULL, "The hypervisor of VM '%s' cannot take screenshots: %s", jget_str(v, "name"), why);
        } else {
                reply_error(r, 502, "host_error", NULL, "Cannot take a picture of VM '%s': %s", jget_str(v, "name"), why);
        }
        pthread_mutex_unlock(&thumb_lock);
}

/* ------------------------------------------------------------------ */
/* WebSocket handshake: SHA-1 (RFC 3174), needed only for the accept key */

typedef struct {
        uint32_t h[5];
        uint64_t n;
        uint8_t buf[64];
} Sha1;

static uint32_t rol(uint32_t x, int k) {
        return (x << k) | (x >> (32 - k));
}

static void sha1_block(Sha1 *s, const uint8_t *p) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
                w[i] = (uint32_t) p[4 * i] << 24 | (uint32_t) p[4 * i + 1] << 16 | (uint32_t) p[4 * i + 2] << 8 | p[4 * i + 3];
        for (int i = 16; i < 80; i++)
                w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4];
        for (int i = 0; i < 80; i++) {
                uint32_t f, k;
                if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
                else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
                else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
                else f = b ^ c ^ d, k = 0xCA62C1D6;
                uint32_t t = rol(a, 5) + f + e + k + w[i];
                e = d, d = c, c = rol(b, 30), b = a, a = t;
        }
        s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d, s->h[4] += e;
}

static void sha1(const void *data, size_t len, uint8_t out[20]) {
        Sha1 s = { .h = { 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0 } };
        const uint8_t *p = data;
        uint64_t bits = (uint64_t) len * 8;
        for (; len >= 64; p += 64, len -= 64)
                sha1_block(&s, p);
        uint8_t tail[128] = {0};
        memcpy(tail, p, len);
        tail[len] = 0x80;
        size_t n = len + 1 + 8 <= 64 ? 64 : 128;
        for (int i = 0; i < 8; i++)
                tail[n - 1 - i] = (uint8_t) (bits >> (8 * i));
        sha1_block(&s, tail);
        if (n == 128)
                sha1_block(&s, tail + 64);
        for (int i = 0; i < 5; i++)
                for (int j = 0; j < 4; j++)
                        out[4 * i + j] = (uint8_t) (s.h[i] >> (24 - 8 * j));
}

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2). */
static void ws_accept_key(const char *key, char out[32]) {
        _cleanup_free_ char *s = xasprintf("%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
        uint8_t d[20];
        sha1(s, strlen(s), d);
        sodium_bin2base64(out, 32, d, sizeof d, sodium_base64_VARIANT_ORIGINAL);
}

/* ------------------------------------------------------------------ */
/* the VNC bridge */

static atomic_int n_consoles;

/* Connects to addr:port within VNC_CONNECT_TIMEOUT_MS. A socket or -errno. */
static int tcp_connect(const char *addr, int port) {
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
        char ps[8];
        snprintf(ps, sizeof ps, "%d", port);
        if (getaddrinfo(addr, ps, &hints, &ai) != 0 || !ai)
                return -EHOSTUNREACH;
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int e = fd < 0 ? -errno : 0;
        if (e == 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                e = -errno;
                if (e == -EINPROGRESS) {
                        struct pollfd pf = { .fd = fd, .events = POLLOUT };
                        int soerr = 0;
                        socklen_t sl = sizeof soerr;
                        if (poll(&pf, 1, VNC_CONNECT_TIMEOUT_MS) <= 0)
                                e = -ETIMEDOUT;
                        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr)
                                e = -(soerr ? soerr : errno);
                        else
                                e = 0;
                }
        }
        freeaddrinfo(ai);
        if (e < 0) {
                if (fd >= 0)
                        close(fd);
                return e;
        }
        return fd;
}

typedef struct {
        char addr[256];                 /* the VM's VNC server */
        int port;
        int vnc;                        /* TCP connection to it, once made */
        MHD_socket ws;                  /* the browser, after the upgrade */
        struct MHD_UpgradeResponseHandle *urh;
        char vm_name[64];
        char user[64];
        uint8_t *in;                    /* browser bytes not yet a whole frame */
        size_t in_len, in_cap;
} Bridge;

static int write_all(int fd, const void *data, size_t len) {
        const uint8_t *p = data;
        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK) {
                                struct pollfd pf = { .fd = fd, .events = POLLOUT };
                                if (poll(&pf, 1, 10000) <= 0)
                                        return -ETIMEDOUT;
                                continue;
                        }
                        return -errno;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

/* Sends one unmasked frame (servers never mask). */
static int ws_send(int fd, int opcode, const void *data, size_t len) {
        uint8_t h[10];
        size_t hl;
        h[0] = (uint8_t) (0x80 | opcode);
        if (len < 126) {
                h[1] = (uint8_t) len;
                hl = 2;
        } else if (len < 65536) {
                h[1] = 126;
                h[2] = (uint8_t) (len >> 8);
                h[3] = (uint8_t) len;
                hl = 4;
        } else {
                h[1] = 127;
                for (int i = 0; i < 8; i++)
                        h[2 + i] = (uint8_t) ((uint64_t) len >> (56 - 8 * i));
                hl = 10;
        }
        int e = write_all(fd, h, hl);
        return e < 0 ? e : write_all(fd, data, len);
}

/* Handles the whole frames in b->in: data to VNC, ping → pong, close → end.
 * Returns 0 to go on, 1 when the browser closed, negative on a protocol or
 * I/O error. */
static int ws_consume(Bridge *b) {
        size_t off = 0;
        int ret = 0;
        while (ret == 0) {
                uint8_t *p = b->in + off;
                size_t avail = b->in_len - off;
                if (avail < 2)
                        break;
                int opcode = p[0] & 0x0f;
                bool masked = p[1] & 0x80;
                uint64_t len = p[1] & 0x7f;
                size_t hl = 2;
                if (len == 126) {
                        if (avail < 4) break;
                        len = (uint64_t) p[2] << 8 | p[3];
                        hl = 4;
                } else if (len == 127) {
                        if (avail < 10) break;
                        len = 0;
                        for (int i = 0; i < 8; i++)
                                len = len << 8 | p[2 + i];
                        hl = 10;
                }
                if (!masked || len > WS_FRAME_MAX)
                        return -EPROTO; /* RFC 6455: clients always mask */
                if (avail < hl + 4 + len)
                        break;
                uint8_t *mask = p + hl, *data = p + hl + 4;
                for (uint64_t i = 0; i < len; i++)
                        data[i] ^= mask[i & 3];
                switch (opcode) {
                case 0x0: case 0x1: case 0x2:
                        ret = write_all(b->vnc, data, (size_t) len);
                        break;
                case 0x8:
                        (void) ws_send(b->ws, 0x8, data, len >= 2 ? 2 : 0);
                        ret = 1;
                        break;
                case 0x9:
                        ret = ws_send(b->ws, 0xA, data, (size_t) len);
                        break;
                case 0xA:
                        break;
                default:
                        return -EPROTO;
                }
                off += hl + 4 + (size_t) len;
        }
        memmove(b->in, b->in + off, b->in_len - off);
        b->in_len -= off;
        return ret;
}

static void *bridge_run(void *arg) {
        Bridge *b = arg;
        uint8_t buf[65536];
        const char *why = "the browser closed the console";
        b->vnc = tcp_connect(b->addr, b->port);
        if (b->vnc < 0) {
                char msg[200];
                int n = snprintf(msg, sizeof msg, "%c%cCannot connect to the VNC server at %s port %d: %s.", 0x03, 0xf3,
                                 b->addr, b->port, strerror(-b->vnc));
                (void) ws_send(b->ws, 0x8, msg, n < 125 ? (size_t) n : 125); /* 1011, with the reason */
                why = "the VNC server cannot be reached";
        } else if (b->in_len > 0 && ws_consume(b) != 0)
                why = "the browser sent a bad frame";
        else
                for (;;) {
                        struct pollfd pf[2] = { { .fd = b->ws, .events = POLLIN }, { .fd = b->vnc, .events = POLLIN } };
                        if (poll(pf, 2, -1) < 0) {
                                if (errno == EINTR)
                                        continue;
                                why = "poll failed";
                                break;
                        }
                        if (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) {
                                ssize_t n = recv(b->vnc, buf, sizeof buf, 0);
                                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                                        continue;
                                if (n <= 0) {
                                        why = "the VNC server closed the connection";
                                        (void) ws_send(b->ws, 0x8, "\x03\xe8", 2);
                                        break;
                                }
                                if (ws_send(b->ws, 0x2, buf, (size_t) n) < 0) {
                                        why = "the browser went away";
                                        break;
                                }
                        }
                        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                                if (b->in_cap - b->in_len < sizeof buf) {
                                        if (b->in_cap > WS_FRAME_MAX * 2) {
                                                why = "the browser sent too much at once";
                                                break;
                                        }
                                        b->in_cap = b->in_cap * 2 + sizeof buf;
                                        b->in = xrealloc(b->in, b->in_cap);
                                }
                                ssize_t n = recv(b->ws, b->in + b->in_len, b->in_cap - b->in_len, 0);
                                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                                        continue;
                                if (n <= 0)
                                        break;
                                b->in_len += (size_t) n;
                                int e = ws_consume(b);
                                if (e < 0)
                                        why = e == -EPROTO ? "the browser sent a bad WebSocket frame" : "the VNC server went away";
                                if (e != 0)
                                        break;
                        }
                }
        log_info("console of VM '%s' for user '%s' ended: %s", b->vm_name, b->user, why);
        if (b->vnc >= 0)
                close(b->vnc);
        MHD_upgrade_action(b->urh, MHD_UPGRADE_ACTION_CLOSE);
        free(b->in);
        free(b);
        atomic_fetch_sub(&n_consoles, 1);
        return NULL;
}

static void on_upgraded(void *cls, struct MHD_Connection *mc, void *con_cls, const char *extra_in, size_t extra_in_size,
                        MHD_socket sock, struct MHD_UpgradeResponseHandle *urh) {
        Bridge *b = cls;
        b->ws = sock;
        b->urh = urh;
        b->in_cap = extra_in_size + 65536 * 2;
        b->in = xmalloc(b->in_cap);
        memcpy(b->in, extra_in, extra_in_size);
        b->in_len = extra_in_size;
        pthread_attr_t attr;
        pthread_t th;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, bridge_run, b) != 0) {
                log_error("cannot start the console thread of VM '%s'", b->vm_name);
                MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
                free(b->in);
                free(b);
                atomic_fetch_sub(&n_consoles, 1);
        }
        pthread_attr_destroy(&attr);
}

static bool header_has_token(const char *h, const char *token) {
        if (!h)
                return false;
        size_t tl = strlen(token);
        for (const char *p = h; *p;) {
                while (*p == ' ' || *p == ',') p++;
                size_t n = strcspn(p, ",");
                size_t m = n;
                while (m > 0 && p[m - 1] == ' ') m--;
                if (m == tl && strncasecmp(p, token, tl) == 0)
                        return true;
                p += n;
        }
        return false;
}

static void h_vm_console(Req *r) {
        const char *upgrade = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Upgrade");
        const char *key = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Sec-WebSocket-Key");
        const char *version = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Sec-WebSocket-Version");
        const char *proto = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Sec-WebSocket-Protocol");
        const char *origin = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Origin");
        const char *host_hdr = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Host");
        const char *check_s = req_query(r, "check");
        bool check = check_s && (streq(check_s, "true") || streq(check_s, "1"));
        if (check_s && !check && !streq(check_s, "false") && !streq(check_s, "0"))
                return reply_error(r, 400, "invalid_argument", "check", "Query 'check' must be true or false.");
        OpCaller c = api_caller(r);
        OpError err;
        InventoryConsole con;
        if (inventory_vm_console(r->api->inv, &c, r->id[0], &con, &err) < 0)
                return reply_op_error(r, &err);
        const char *name = con.vm_name, *addr = con.addr;

        /* Checked last, so that a plain GET learns why the console cannot
         * open, or 426 when it can; with check=true (what the web console
         * asks first) 200 when it can, so that a browser logs no error. */
        if (!upgrade || !header_has_token(upgrade, "websocket") || !key || strlen(key) != 24 || !version || !streq(version, "13")) {
                if (check)
                        return reply(r, 200, json_pack("{s:b, s:s}", "ready", true, "message",
                                                       "The console can be opened: upgrade this request to a WebSocket."));
                return reply_error(r, 426, "upgrade_required", NULL,
                                   "The console is a WebSocket (version 13): open it with a WebSocket client such as the web console.");
        }
        if (origin) {
                /* A page of another site must not borrow the session cookie. */
                const char *o = strstr(origin, "://");
                if (!o || !host_hdr || !streq(o + 3, host_hdr))
                        return reply_error(r, 403, "forbidden", NULL, "The console may only be opened from Armada's own web console.");
        }
        if (atomic_fetch_add(&n_consoles, 1) >= CONSOLES_MAX) {
                atomic_fetch_sub(&n_consoles, 1);
                return reply_error(r, 503, "unavailable", NULL, "%d consoles are open, the most armadad serves at once; close one first.",
                                   CONSOLES_MAX);
        }

        Bridge *b = xcalloc(1, sizeof *b);
        b->vnc = -1;
        snprintf(b->addr, sizeof b->addr, "%s", addr);
        b->port = con.port;
        snprintf(b->vm_name, sizeof b->vm_name, "%s", name);
        snprintf(b->user, sizeof b->user, "%s", r->user.name);
        struct MHD_Response *resp = MHD_create_response_for_upgrade(on_upgraded, b);
        if (!resp) {
                free(b);
                atomic_fetch_sub(&n_consoles, 1);
                return reply_error(r, 500, "internal", NULL, "Cannot open the console of VM '%s'.", name);
        }
        char accept[32];
        ws_accept_key(key, accept);
        MHD_add_response_header(resp, "Upgrade", "websocket");
        MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
        if (header_has_token(proto, "binary"))
                MHD_add_response_header(resp, "Sec-WebSocket-Protocol", "binary");
        /* The bridge thread connects to VNC (a remote host may take seconds,
         * which no HTTP thread may spend). Should MHD never send this
         * response (the client left first), b is not freed and its slot in
         * n_consoles stays taken: a few hundred bytes, and only then. */
        r->mhd_resp = resp;
        r->status = 101;
        audit(r, "vm.console", "vm", r->id[0], name, addr, "ok");
}

/* The console's VNC password (a per-VM secret on remote hosts, where VNC
 * listens on the host's addresses), for a user who may operate the VM: the
 * web console passes it to noVNC when the VNC server asks for it. */
static void h_vm_console_password(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        char password[64];
        if (inventory_vm_console_password(r->api->inv, &c, r->id[0], password, &err) < 0)
                return reply_op_error(r, &err);
        reply(r, 200, json_pack("{s:s}", "password", password));
}

const Route api_routes_web[] = {
        { "GET", "/api/v1/vms/#/thumbnail", h_vm_thumbnail, false },
        { "GET", "/api/v1/vms/#/console", h_vm_console, false },
        { "GET", "/api/v1/vms/#/console-password", h_vm_console_password, false },
        { NULL, NULL, NULL, false },
};
