/* The I/O half of hv: libvirt connections, host facts, the domain lifecycle
 * and storage, each a thin wrapper that turns libvirt's error into an
 * errno-style code and a sentence in hv_last_error(). The XML these calls
 * send and read is built and parsed in hv-xml.c. */
#include "hv.h"
#include "hv-internal.h"
#include "hv-cleanup.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>

/* libvirt handles, released on every path out of a block. */

/* A host's connections. libvirt's RPC client lets several threads call
 * through one connection, but when that connection dies under them
 * (keepalive timeout) a waiting thread can run a GSource whose data lives
 * on the stack of the thread that left (libvirt 9.0,
 * virNetClientIOEventLoop): armadad crashed so when a host stopped
 * answering during a monitor round. So each thread calls through a
 * connection of its own for the length of a call (a lease), taken from
 * the idle ones or opened for it; up to ELEMENTSOF(idle) stay open. */
struct HvConn {
        char *uri;
        int keepalive_interval_s;
        unsigned keepalive_count;
        HvCloseFn on_close;
        void *userdata;
        bool shared;            /* test driver: idle[0], used by all at once */
        bool close_registered;  /* the driver reports closes */
        atomic_bool closed;     /* one of them was closed under us, or a call missed its deadline */
        atomic_bool stuck;      /* a call missed its deadline */
        char stuck_what[256];   /* which, written before stuck is set */
        /* A stand-in for another HvConn in a deadline thread (hv_call): the
         * URI, and the one connection that thread holds. */
        bool is_shadow;
        pthread_mutex_t lock;
        virConnectPtr idle[8];
        size_t n_idle;
        /* hv_conn_watch_domains(): the connection that stays open for
         * domain events (idle[0] when shared), and what they bump. */
        virConnectPtr events;
        int events_id;          /* the callback's id; -1 when not watching */
        struct EventSink *sink;
        /* hv_host_info(): what does not change while the daemon runs (its
         * name, type, KVM, host UUID), read once per connection. */
        bool facts_known;
        HvHostInfo facts;
};

/* What a domain event callback bumps. Shared by the HvConn and libvirt's
 * registration (each holds a reference), so that a callback libvirt runs
 * late never touches a freed HvConn. */
typedef struct EventSink {
        atomic_uint_fast64_t count;
        atomic_int refs;
} EventSink;

static void sink_unref(void *opaque) {
        EventSink *s = opaque;
        if (s && atomic_fetch_sub(&s->refs, 1) == 1)
                free(s);
}

/* ---- errors ---- */

static __thread char last_error[1024];
static __thread char last_error_detail[2048];

const char *hv_last_error(void) {
        return last_error;
}

const char *hv_last_error_detail(void) {
        return last_error_detail;
}

void hv_set_error(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(last_error, sizeof last_error, fmt, ap);
        va_end(ap);
        last_error_detail[0] = 0;
}

void hv_set_error_detail(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(last_error_detail, sizeof last_error_detail, fmt, ap);
        va_end(ap);
}

/* The code of libvirt's last error in this thread (VIR_ERR_OK when none).
 * Must be read before the next libvirt call: almost every public libvirt
 * function, virDomainFree included, resets it. */
int hv_virt_code(void) {
        virErrorPtr e = virGetLastError();
        return e ? e->code : VIR_ERR_OK;
}

int hv_errno_from_virt(int code) {
        switch (code) {
        case VIR_ERR_NO_DOMAIN:
        case VIR_ERR_NO_STORAGE_POOL:
        case VIR_ERR_NO_STORAGE_VOL:
        case VIR_ERR_NO_NETWORK:
        case VIR_ERR_NO_DOMAIN_SNAPSHOT:
                return -ENOENT;
        case VIR_ERR_OPERATION_INVALID:
                return -EBUSY;
        case VIR_ERR_DOM_EXIST:
        case VIR_ERR_STORAGE_VOL_EXIST:
        case VIR_ERR_STORAGE_POOL_BUILT:
                return -EEXIST;
        case VIR_ERR_OPERATION_ABORTED:
                return -ECANCELED;
        case VIR_ERR_INVALID_ARG:
        case VIR_ERR_XML_ERROR:
        case VIR_ERR_XML_DETAIL:
        case VIR_ERR_CONFIG_UNSUPPORTED:
                return -EINVAL;
        case VIR_ERR_NO_SUPPORT:
        case VIR_ERR_OPERATION_UNSUPPORTED:
                return -EOPNOTSUPP;
        case VIR_ERR_AUTH_FAILED:
        case VIR_ERR_AUTH_CANCELLED:
        case VIR_ERR_AUTH_UNAVAILABLE:
        case VIR_ERR_OPERATION_DENIED:
        case VIR_ERR_ACCESS_DENIED:
                return -EACCES;
        default:
                return -EIO;
        }
}

/* Records "<what>: <libvirt's message>" and returns libvirt's error as a
 * negative errno. Call straight after the failing libvirt call. */
int hv_virt_fail(const char *fmt, ...) {
        int code = hv_virt_code();
        const char *msg = virGetLastErrorMessage();
        char what[768];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        hv_set_error("%s: %s", what, code == VIR_ERR_OK ? "libvirt gave no reason" : msg);
        return hv_errno_from_virt(code);
}

/* ---- event loop ---- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result;
static char init_error[512];

static void silent_error(void *userdata, virErrorPtr error) {
        /* Errors reach the caller through hv_last_error(), not stderr. */
}

static void *event_loop(void *arg) {
        for (;;)
                if (virEventRunDefaultImpl() < 0)
                        usleep(100 * 1000); /* never spin on a broken loop */
        return NULL;
}

static void do_init(void) {
        virSetErrorFunc(NULL, silent_error);
        xmlInitParser();
        if (virInitialize() < 0 || virEventRegisterDefaultImpl() < 0) {
                snprintf(init_error, sizeof init_error, "cannot initialise libvirt: %s",
                         virGetLastErrorMessage());
                init_result = -EIO;
                return;
        }
        pthread_attr_t attr;
        pthread_t thread;
        int r = pthread_attr_init(&attr);
        if (r == 0) {
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                r = pthread_create(&thread, &attr, event_loop, NULL);
                pthread_attr_destroy(&attr);
        }
        if (r != 0) {
                snprintf(init_error, sizeof init_error,
                         "cannot start the libvirt event thread: %s", strerror(r));
                init_result = -r;
        }
}

int hv_init(void) {
        pthread_once(&init_once, do_init);
        if (init_result < 0)
                hv_set_error("%s", init_error);
        return init_result;
}

/* ---- connections ---- */

static const char *close_reason(int reason) {
        switch (reason) {
        case VIR_CONNECT_CLOSE_REASON_ERROR:
                return "I/O error";
        case VIR_CONNECT_CLOSE_REASON_EOF:
                return "end of file";
        case VIR_CONNECT_CLOSE_REASON_KEEPALIVE:
                return "keepalive timeout";
        case VIR_CONNECT_CLOSE_REASON_CLIENT:
                return "client closed";
        default:
                return "unknown reason";
        }
}

/* What a client may read of libvirt's reason for a failed connection.
 * libvirt quotes the file a test: URI names when it is not the XML it
 * expects (libxml2's context: the offending line, a caret under it), and
 * may quote values from one that is; so a test host gets a fixed sentence,
 * an XML error another, and any other driver the first line of libvirt's
 * message (the rest of which is context, never the reason). */
static void connect_reason(const char *uri, int code, const char *msg, char *out, size_t size) {
        if (strncmp(uri, "test:", 5) == 0) {
                snprintf(out, size, "libvirt's test driver cannot load it (the details are in armadad's log)");
                return;
        }
        switch (code) {
        case VIR_ERR_XML_ERROR:
        case VIR_ERR_XML_DETAIL:
        case VIR_ERR_XML_INVALID_SCHEMA:
                snprintf(out, size, "libvirt could not read the configuration it was given (the details are in armadad's log)");
                return;
        case VIR_ERR_OK:
                snprintf(out, size, "libvirt gave no reason");
                return;
        default:
                break;
        }
        size_t n = msg ? strcspn(msg, "\r\n") : 0;
        if (n == 0) {
                snprintf(out, size, "libvirt gave no reason");
                return;
        }
        if (n > 300)
                n = 300;
        snprintf(out, size, "%.*s", (int) n, msg);
}

static void on_conn_closed(virConnectPtr conn, int reason, void *opaque) {
        HvConn *c = opaque;
        /* Only the first: the host's other connections follow. */
        if (!atomic_exchange(&c->closed, true))
                c->on_close(c->userdata, close_reason(reason));
}

/* The part of a connect that can hang: see hv-bounded.c. */
typedef struct {
        char *uri;
        virConnectPtr conn;
        int r;
} Open;

static void open_run(void *data) {
        Open *o = data;
        /* No auth callbacks: a daemon must never prompt. ssh uses its agent,
         * TLS its certificates. */
        o->conn = virConnectOpenAuth(o->uri, NULL, 0);
        if (o->conn) {
                o->r = 0;
                return;
        }
        int code = hv_virt_code();
        const char *msg = virGetLastErrorMessage();
        char reason[512];
        connect_reason(o->uri, code, msg, reason, sizeof reason);
        hv_set_error("cannot connect to '%.500s': %s", o->uri, reason);
        hv_set_error_detail("%s", code == VIR_ERR_OK ? "libvirt gave no reason" : msg);
        o->r = hv_errno_from_virt(code);
}

static void open_drop(void *data) {
        Open *o = data;
        if (o->conn)
                virConnectClose(o->conn);
        free(o->uri);
        free(o);
}

/* One libvirt connection to c's URI, watched and kept alive as c says: 0
 * and *ret, or a negative code with the error set. first: c is not shared
 * yet, and learns here whether its driver reports closes. */
static int conn_open(HvConn *c, bool first, virConnectPtr *ret) {
        /* A daemon that accepts the socket and then runs nothing (stopped,
         * wedged) would hold virConnectOpen for ever: keepalive only starts
         * once it returns. */
        Open *o = xcalloc(1, sizeof *o);
        o->uri = xstrdup(c->uri);
        if (hv_run_bounded(HV_CONNECT_DEADLINE_MS, open_run, open_drop, o) < 0) {
                hv_set_error("cannot connect to '%.500s': libvirtd did not answer within %u s", c->uri,
                             HV_CONNECT_DEADLINE_MS / 1000);
                return -ETIMEDOUT;
        }
        virConnectPtr conn = o->conn;
        int r = o->r;
        o->conn = NULL;
        open_drop(o);
        if (!conn)
                return r < 0 ? r : -EIO;

        if (c->keepalive_interval_s > 0 &&
            virConnectSetKeepAlive(conn, c->keepalive_interval_s, c->keepalive_count) < 0 &&
            hv_virt_code() != VIR_ERR_NO_SUPPORT) {
                /* Local drivers (test://, qemu:/// in-process) have no
                 * keepalive: NO_SUPPORT. 1 means the peer lacks it. */
                r = hv_virt_fail("cannot enable keepalive on '%s'", c->uri);
                virConnectClose(conn);
                return r;
        }
        if (c->on_close && (first || c->close_registered)) {
                if (virConnectRegisterCloseCallback(conn, on_conn_closed, c, NULL) == 0)
                        c->close_registered = true;
                else if (hv_virt_code() != VIR_ERR_NO_SUPPORT) {
                        r = hv_virt_fail("cannot watch the connection to '%s'", c->uri);
                        virConnectClose(conn);
                        return r;
                }
        }
        *ret = conn;
        return 0;
}

static void *close_main(void *data) {
        virConnectPtr *conns = data;
        for (size_t i = 0; conns[i]; i++)
                virConnectClose(conns[i]);
        free(conns);
        return NULL;
}

/* Closes a NULL-terminated, malloc'd array of connections (taking it), on
 * a thread of its own: closing a remote connection is a call to its
 * daemon, which may answer late or never. */
static void conns_close(HvConn *c, virConnectPtr *conns) {
        if (!conns[0]) {
                free(conns);
                return;
        }
        for (size_t i = 0; conns[i]; i++)
                if (c->close_registered)
                        virConnectUnregisterCloseCallback(conns[i], on_conn_closed);
        /* Nobody waits for a close: on a busy libvirtd its RPC queues
         * behind the daemon's workers, and a lease ending after every call
         * must not pay for that. */
        pthread_attr_t attr;
        pthread_t thread;
        int r = pthread_attr_init(&attr);
        if (r == 0) {
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                r = pthread_create(&thread, &attr, close_main, conns);
                pthread_attr_destroy(&attr);
        }
        if (r != 0)
                (void) close_main(conns);
}

static void conn_close(HvConn *c, virConnectPtr conn) {
        virConnectPtr *one = xcalloc(2, sizeof *one);
        one[0] = conn;
        conns_close(c, one);
}

int hv_connect(const char *uri, int keepalive_interval_s, unsigned keepalive_count,
               HvCloseFn on_close, void *userdata, HvConn **ret) {
        if (!uri || !uri[0] || !ret) {
                hv_set_error("cannot connect to a hypervisor without a libvirt URI");
                return -EINVAL;
        }
        char why[512];
        if (hv_uri_check(uri, true, why, sizeof why) < 0) {
                hv_set_error("refusing to connect to '%.500s': %s", uri, why);
                return -EPERM;
        }
        int r = hv_init();
        if (r < 0)
                return r;

        HvConn *c = xcalloc(1, sizeof *c);
        pthread_mutex_init(&c->lock, NULL);
        c->uri = xstrdup(uri);
        c->keepalive_interval_s = keepalive_interval_s;
        c->keepalive_count = keepalive_count;
        c->on_close = on_close;
        c->userdata = userdata;
        /* The test driver runs in this process, without an RPC client, and
         * every connection to a test:///file URI is a world of its own:
         * one connection, shared. */
        c->shared = hv_uri_is_test(uri);
        virConnectPtr conn;
        r = conn_open(c, true, &conn);
        if (r < 0) {
                hv_conn_free(c);
                return r;
        }
        c->idle[c->n_idle++] = conn;
        *ret = c;
        return 0;
}

/* ---- domain events ---- */

static int on_domain_event(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque) {
        EventSink *sink = opaque;
        atomic_fetch_add(&sink->count, 1);
        return 0;
}

/* Registering is a call to the daemon, which may never answer: bounded. */
typedef struct {
        virConnectPtr conn;     /* NULL when a timed-out registration must close it */
        EventSink *sink;
        int id;
        int code;
        bool own_conn;          /* drop closes conn (not the shared one) */
} Watch;

static void watch_run(void *data) {
        Watch *w = data;
        atomic_fetch_add(&w->sink->refs, 1); /* libvirt's, dropped by sink_unref */
        w->id = virConnectDomainEventRegisterAny(w->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                 VIR_DOMAIN_EVENT_CALLBACK(on_domain_event), w->sink, sink_unref);
        if (w->id < 0) {
                w->code = hv_virt_code();
                sink_unref(w->sink);
        }
}

static void watch_drop(void *data) {
        Watch *w = data;
        if (w->own_conn && w->conn)
                virConnectClose(w->conn); /* its callbacks go with it */
        sink_unref(w->sink);
        free(w);
}

int hv_conn_watch_domains(HvConn *c) {
        assert(c);
        if (c->sink)
                return 0;
        virConnectPtr conn = NULL;
        if (c->shared)
                conn = c->idle[0];
        else {
                int r = conn_open(c, false, &conn);
                if (r < 0)
                        return r;
        }
        EventSink *sink = xcalloc(1, sizeof *sink);
        atomic_init(&sink->refs, 1);
        Watch *w = xcalloc(1, sizeof *w);
        *w = (Watch) { .conn = conn, .sink = sink, .own_conn = !c->shared };
        atomic_fetch_add(&sink->refs, 1); /* w's */
        if (hv_run_bounded(HV_CONNECT_DEADLINE_MS, watch_run, watch_drop, w) < 0) {
                sink_unref(sink);
                hv_set_error("cannot watch the domains of '%.500s': libvirtd did not answer within %u s", c->uri,
                             HV_CONNECT_DEADLINE_MS / 1000);
                return -ETIMEDOUT;
        }
        if (w->id < 0) {
                int code = w->code;
                sink_unref(sink);
                watch_drop(w);
                hv_set_error("cannot watch the domains of '%.500s': the driver has no domain events", c->uri);
                return code == VIR_ERR_NO_SUPPORT ? -EOPNOTSUPP : -EIO;
        }
        pthread_mutex_lock(&c->lock);
        c->events = conn;
        c->events_id = w->id;
        c->sink = sink;
        pthread_mutex_unlock(&c->lock);
        sink_unref(sink); /* w's; c holds its own, libvirt its own */
        free(w);
        return 0;
}

bool hv_conn_domain_events(HvConn *c, uint64_t *ret_count) {
        if (!c || !c->sink)
                return false;
        *ret_count = atomic_load(&c->sink->count);
        return true;
}

HvConn *hv_conn_free(HvConn *c) {
        if (!c)
                return NULL;
        /* Unregistering first (in conns_close): the callback must not run on
         * a freed HvConn, nor report our own close as a failure. No lease is
         * out: the owner frees c only when nobody calls through it. */
        virConnectPtr *all = xcalloc(c->n_idle + 2, sizeof *all);
        memcpy(all, c->idle, c->n_idle * sizeof *all);
        if (c->sink) {
                if (c->shared) /* in-process, never blocks; idle[0] outlives this call */
                        (void) virConnectDomainEventDeregisterAny(c->events, c->events_id);
                else           /* closing it drops its callbacks (and libvirt's sink reference) */
                        all[c->n_idle] = c->events;
                sink_unref(c->sink);
        }
        c->n_idle = 0;
        conns_close(c, all);
        pthread_mutex_destroy(&c->lock);
        free(c->uri);
        free(c);
        return NULL;
}

bool hv_conn_alive(HvConn *c) {
        if (!c || atomic_load(&c->closed) || atomic_load(&c->stuck))
                return false;
        pthread_mutex_lock(&c->lock);
        /* Without close callbacks (a driver that has none) ask an idle one. */
        bool alive = c->close_registered || c->n_idle == 0 || virConnectIsAlive(c->idle[0]) == 1;
        pthread_mutex_unlock(&c->lock);
        return alive;
}

/* ---- leases ---- */

/* The connections this thread holds, innermost last: a call made inside
 * another call on the same HvConn (hv_domain_get inside hv_domain_state...)
 * uses the outer one's. */
static __thread struct {
        HvConn *c;
        virConnectPtr conn;
} held[4];
static __thread unsigned n_held;

int hv_lease_begin(HvConn *c, HvLease *l) {
        assert(c && l);
        l->c = c;
        l->owner = false;
        for (unsigned i = 0; i < n_held; i++)
                if (held[i].c == c) {
                        l->conn = held[i].conn;
                        return 0;
                }
        assert(n_held < ELEMENTSOF(held));
        virConnectPtr conn = NULL;
        if (c->shared) {
                conn = c->idle[0];
        } else {
                pthread_mutex_lock(&c->lock);
                while (!conn && c->n_idle > 0) {
                        virConnectPtr cand = c->idle[--c->n_idle];
                        if (virConnectIsAlive(cand) == 1) {
                                conn = cand;
                                break;
                        }
                        pthread_mutex_unlock(&c->lock);
                        conn_close(c, cand);
                        pthread_mutex_lock(&c->lock);
                }
                pthread_mutex_unlock(&c->lock);
                if (!conn && atomic_load(&c->closed)) {
                        hv_set_error("the connection to '%.500s' is closed", c->uri);
                        return -EIO;
                }
                if (!conn) {
                        int r = conn_open(c, false, &conn);
                        if (r < 0)
                                return r;
                }
        }
        held[n_held].c = c;
        held[n_held].conn = conn;
        n_held++;
        l->conn = conn;
        l->owner = true;
        return 0;
}

void hv_lease_end(HvLease *l) {
        if (!l->c || !l->owner)
                return;
        HvConn *c = l->c;
        assert(n_held > 0 && held[n_held - 1].c == c);
        n_held--;
        l->owner = false;
        if (c->shared)
                return;
        pthread_mutex_lock(&c->lock);
        bool keep = !atomic_load(&c->closed) && c->n_idle < ELEMENTSOF(c->idle) && virConnectIsAlive(l->conn) == 1;
        if (keep)
                c->idle[c->n_idle++] = l->conn;
        pthread_mutex_unlock(&c->lock);
        if (!keep)
                conn_close(c, l->conn);
        l->conn = NULL;
}

virConnectPtr hv_conn_virt(HvConn *c) {
        for (unsigned i = 0; i < n_held; i++)
                if (held[i].c == c)
                        return held[i].conn;
        /* Every libvirt call goes through a lease: see hv-internal.h. */
        assert(!"hv_conn_virt() outside a lease");
        abort();
}

bool hv_conn_not_responding(HvConn *c, const char **what) {
        bool stuck = c && atomic_load(&c->stuck);
        if (what)
                *what = stuck ? c->stuck_what : NULL;
        return stuck;
}

/* ---- calls with deadlines ---- */

HvDeadlines hv_deadlines = {
        .query_ms = 30 * 1000,
        .start_ms = 60 * 1000,
        .change_ms = 60 * 1000,
        .copy_ms = 60 * 60 * 1000,
};

void hv_set_deadlines(const HvDeadlines *d) {
        if (d->query_ms) hv_deadlines.query_ms = d->query_ms;
        if (d->start_ms) hv_deadlines.start_ms = d->start_ms;
        if (d->change_ms) hv_deadlines.change_ms = d->change_ms;
        if (d->copy_ms) hv_deadlines.copy_ms = d->copy_ms;
}

HvCall *hv_call_new(HvCallBody body, const char *what, const char *s0, const char *s1, const char *s2, const char *s3) {
        HvCall *a = xcalloc(1, sizeof *a);
        a->body = body;
        a->what = what;
        const char *s[4] = { s0, s1, s2, s3 };
        for (size_t i = 0; i < 4; i++)
                a->s[i] = s[i] ? xstrdup(s[i]) : NULL;
        return a;
}

void hv_call_free(HvCall *a) {
        if (!a)
                return;
        for (size_t i = 0; i < 4; i++)
                free(a->s[i]);
        free(a->ret.ptr);
        free(a);
}

static bool lease_held(HvConn *c) {
        for (unsigned i = 0; i < n_held; i++)
                if (held[i].c == c)
                        return true;
        return false;
}

static void shadow_free(HvConn *s) {
        pthread_mutex_destroy(&s->lock);
        free(s->uri);
        free(s);
}

static void call_run(void *data) {
        HvCall *a = data;
        held[n_held].c = a->shadow;
        held[n_held].conn = a->conn;
        n_held++;
        a->r = a->body(a->shadow, a);
        n_held--;
}

static unsigned abandoned_count(const char *uri, int delta);

/* The caller walked away: the body has returned now, late. */
static void call_drop(void *data) {
        HvCall *a = data;
        /* Its close callback was unregistered when it was abandoned. */
        virConnectClose(a->conn);
        abandoned_count(a->shadow->uri, -1);
        shadow_free(a->shadow);
        hv_call_free(a);
}

/* Calls abandoned per host URI and not returned yet: each holds a thread
 * and a connection. Past HV_MAX_ABANDONED, calls to that host fail at once
 * instead of adding more. */
#define HV_MAX_ABANDONED 4
static pthread_mutex_t abandoned_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
        char *uri;
        unsigned n;
} *abandoned;
static size_t n_abandoned;

static unsigned abandoned_count(const char *uri, int delta) {
        pthread_mutex_lock(&abandoned_lock);
        unsigned n = 0;
        size_t i;
        for (i = 0; i < n_abandoned; i++)
                if (streq(abandoned[i].uri, uri))
                        break;
        if (i == n_abandoned && delta > 0) {
                abandoned = xrealloc(abandoned, (n_abandoned + 1) * sizeof *abandoned);
                abandoned[n_abandoned].uri = xstrdup(uri);
                abandoned[n_abandoned].n = 0;
                n_abandoned++;
        }
        if (i < n_abandoned) {
                abandoned[i].n = (unsigned) ((int) abandoned[i].n + delta);
                n = abandoned[i].n;
                if (n == 0) {
                        free(abandoned[i].uri);
                        abandoned[i] = abandoned[--n_abandoned];
                }
        }
        pthread_mutex_unlock(&abandoned_lock);
        return n;
}

bool hv_call(HvConn *c, HvCall *a, unsigned deadline_ms) {
        /* In-process drivers (test://) never wait on a daemon. */
        if (deadline_ms == 0 || lease_held(c) || c->shared) {
                HvLease l;
                int r = hv_lease_begin(c, &l);
                a->r = r < 0 ? r : a->body(c, a);
                hv_lease_end(&l);
                return true;
        }
        if (hv_calls_abandoned()) {
                hv_set_error("'%s' was not asked: armadad is shutting down", a->what);
                a->r = -ECANCELED;
                return true;
        }
        unsigned stuck = abandoned_count(c->uri, 0);
        if (stuck >= HV_MAX_ABANDONED) {
                hv_set_error("libvirtd on '%.500s' is not responding: %u calls made earlier have not returned yet",
                             c->uri, stuck);
                a->r = -ETIMEDOUT;
                return true;
        }
        HvLease l;
        int r = hv_lease_begin(c, &l);
        if (r < 0) {
                a->r = r;
                return true;
        }
        HvConn *s = xcalloc(1, sizeof *s);
        pthread_mutex_init(&s->lock, NULL);
        s->uri = xstrdup(c->uri);
        s->is_shadow = true;
        a->shadow = s;
        a->conn = l.conn;
        int bounded = hv_run_bounded(deadline_ms, call_run, call_drop, a);
        if (bounded == 0) {
                a->shadow = NULL;
                a->conn = NULL;
                shadow_free(s);
                hv_lease_end(&l);
                return true;
        }

        /* Abandoned. The connection goes with the body's thread, never back
         * to the pool: take it off this thread's leases without returning it. */
        assert(n_held > 0 && held[n_held - 1].c == c);
        n_held--;
        abandoned_count(c->uri, +1);
        if (c->close_registered)
                virConnectUnregisterCloseCallback(l.conn, on_conn_closed);
        if (bounded == -ECANCELED) {
                /* Shutdown, not the host: nothing to say about its state. */
                hv_set_error("libvirtd on '%.500s' was left behind: armadad is shutting down", c->uri);
                return false;
        }
        char what[256];
        snprintf(what, sizeof what, "%s did not return within %u s", a->what, deadline_ms / 1000);
        hv_set_error("libvirtd on '%.500s' is not responding: %s", c->uri, what);
        if (!c->is_shadow && !atomic_load(&c->stuck)) {
                snprintf(c->stuck_what, sizeof c->stuck_what, "%s", what);
                atomic_store(&c->stuck, true);
                if (!atomic_exchange(&c->closed, true) && c->on_close) {
                        char reason[300];
                        snprintf(reason, sizeof reason, "not responding: %s", what);
                        c->on_close(c->userdata, reason);
                }
                /* on_close may log through hv: the error is this call's. */
                hv_set_error("libvirtd on '%.500s' is not responding: %s", c->uri, what);
        }
        return false;
}

int hv_call_code(HvConn *c, HvCall *a, unsigned deadline_ms) {
        if (!hv_call(c, a, deadline_ms))
                return hv_calls_abandoned() ? -ECANCELED : -ETIMEDOUT;
        int r = a->r;
        hv_call_free(a);
        return r;
}

int hv_call_out(HvConn *c, HvCall *a, unsigned deadline_ms, void *ret, size_t size) {
        if (!hv_call(c, a, deadline_ms))
                return hv_calls_abandoned() ? -ECANCELED : -ETIMEDOUT;
        int r = a->r;
        if (r == 0 && ret)
                memcpy(ret, &a->out, size);
        hv_call_free(a);
        return r;
}

int hv_call_take(HvConn *c, HvCall *a, unsigned deadline_ms, void **ret, size_t *ret_n) {
        if (!hv_call(c, a, deadline_ms))
                return hv_calls_abandoned() ? -ECANCELED : -ETIMEDOUT;
        int r = a->r;
        if (r == 0) {
                if (ret) {
                        *ret = a->ret.ptr;
                        a->ret.ptr = NULL;
                }
                if (ret_n)
                        *ret_n = a->ret_n;
        }
        hv_call_free(a);
        return r;
}

/* ---- host ---- */

static int host_info_now(HvConn *c, HvHostInfo *ret) {
        HV_LEASE(c);
        assert(c && ret);
        virNodeInfo node;
        if (virNodeGetInfo(hv_conn_virt(c), &node) < 0)
                return hv_virt_fail("cannot read the hardware of host '%s'", c->uri);
        _cleanup_free_ char *hostname = virConnectGetHostname(hv_conn_virt(c));
        if (!hostname)
                return hv_virt_fail("cannot read the host name of '%s'", c->uri);
        const char *type = virConnectGetType(hv_conn_virt(c));
        if (!type)
                return hv_virt_fail("cannot read the hypervisor type of '%s'", c->uri);
        _cleanup_free_ char *caps = virConnectGetCapabilities(hv_conn_virt(c));
        if (!caps)
                return hv_virt_fail("cannot read the capabilities of '%s'", c->uri);
        bool kvm;
        int r = hv_xml_caps_kvm(caps, &kvm);
        if (r < 0)
                return r;

        HvHostInfo info = {
                .cpus = node.cpus,
                .memory_mib = (uint64_t) node.memory / 1024,
                .kvm = kvm,
        };
        /* 0 is also libvirt's error value; some drivers cannot tell, and
         * then the best Armada knows is that nothing is free. */
        unsigned long long free_bytes = virNodeGetFreeMemory(hv_conn_virt(c));
        info.free_memory_mib = free_bytes / (1024 * 1024);
        snprintf(info.hostname, sizeof info.hostname, "%s", hostname);
        snprintf(info.hv_driver, sizeof info.hv_driver, "%s", type);
        snprintf(info.default_domain_type, sizeof info.default_domain_type, "%s",
                 strcasecmp(type, "TEST") == 0 ? "test" : kvm ? "kvm" : "qemu");
        r = hv_xml_caps_host_uuid(caps, info.uuid);
        if (r < 0)
                return r;
        if (!info.uuid[0] && strcasecmp(type, "TEST") != 0) {
                /* Not every driver fills <host><uuid>; the SMBIOS system UUID
                 * is the next best. A driver without sysinfo leaves "". */
                _cleanup_free_ char *sysinfo = virConnectGetSysinfo(hv_conn_virt(c), 0);
                if (sysinfo)
                        (void) hv_xml_sysinfo_uuid(sysinfo, info.uuid);
        }
        *ret = info;
        return 0;
}

static int host_info_body(HvConn *c, HvCall *a) {
        return host_info_now(c, &a->out.host);
}

/* What changes from round to round: the hardware the node reports and its
 * free memory (two calls, no XML). */
static int host_load_body(HvConn *c, HvCall *a) {
        HV_LEASE(c);
        virNodeInfo node;
        if (virNodeGetInfo(hv_conn_virt(c), &node) < 0)
                return hv_virt_fail("cannot read the hardware of host '%s'", c->uri);
        a->out.host.cpus = node.cpus;
        a->out.host.memory_mib = (uint64_t) node.memory / 1024;
        a->out.host.free_memory_mib = virNodeGetFreeMemory(hv_conn_virt(c)) / (1024 * 1024);
        return 0;
}

int hv_host_info(HvConn *c, HvHostInfo *ret) {
        pthread_mutex_lock(&c->lock);
        bool known = c->facts_known;
        HvHostInfo info = c->facts;
        pthread_mutex_unlock(&c->lock);
        if (known) {
                HvHostInfo now;
                int r = hv_call_out(c, hv_call_new(host_load_body, "reading the host's facts", NULL, NULL, NULL, NULL),
                                    hv_deadlines.query_ms, &now, sizeof now);
                if (r < 0)
                        return r;
                info.cpus = now.cpus;
                info.memory_mib = now.memory_mib;
                info.free_memory_mib = now.free_memory_mib;
                *ret = info;
                return 0;
        }
        int r = hv_call_out(c, hv_call_new(host_info_body, "reading the host's facts", NULL, NULL, NULL, NULL), hv_deadlines.query_ms,
                            &info, sizeof info);
        if (r < 0)
                return r;
        pthread_mutex_lock(&c->lock);
        c->facts = info;
        c->facts_known = true;
        pthread_mutex_unlock(&c->lock);
        *ret = info;
        return 0;
}

/* ---- domains ---- */

const char *hv_state_name(HvState s) {
        switch (s) {
        case HV_STATE_RUNNING:
        case HV_STATE_BLOCKED: /* waiting on I/O is still running */
                return "running";
        case HV_STATE_PAUSED:
                return "paused";
        case HV_STATE_SHUTDOWN:
                return "shutting-down";
        case HV_STATE_SHUTOFF:
                return "stopped";
        case HV_STATE_CRASHED:
                return "crashed";
        case HV_STATE_PMSUSPENDED:
                return "suspended";
        case HV_STATE_NOSTATE:
        default:
                return "unknown";
        }
}

static HvState state_from_virt(int s) {
        switch (s) {
        case VIR_DOMAIN_RUNNING: return HV_STATE_RUNNING;
        case VIR_DOMAIN_BLOCKED: return HV_STATE_BLOCKED;
        case VIR_DOMAIN_PAUSED: return HV_STATE_PAUSED;
        case VIR_DOMAIN_SHUTDOWN: return HV_STATE_SHUTDOWN;
        case VIR_DOMAIN_SHUTOFF: return HV_STATE_SHUTOFF;
        case VIR_DOMAIN_CRASHED: return HV_STATE_CRASHED;
        case VIR_DOMAIN_PMSUSPENDED: return HV_STATE_PMSUSPENDED;
        default: return HV_STATE_NOSTATE;
        }
}

/* Everything about one domain: XML for the definition, then the state and
 * persistence that XML does not carry. -ENOENT when it vanished meanwhile. */
static int domain_fill(virDomainPtr d, HvDomainInfo *ret) {
        const char *name = virDomainGetName(d);
        char uuid[VIR_UUID_STRING_BUFLEN];
        if (virDomainGetUUIDString(d, uuid) < 0)
                return hv_virt_fail("cannot read the UUID of domain '%s'", name);
        _cleanup_free_ char *xml = virDomainGetXMLDesc(d, 0);
        if (!xml)
                return hv_virt_fail("cannot read the definition of domain '%s' (%s)", name, uuid);
        HvDomainInfo info;
        int r = hv_domain_xml_parse(xml, &info);
        if (r < 0)
                return r;
        int state, reason;
        if (virDomainGetState(d, &state, &reason, 0) < 0)
                return hv_virt_fail("cannot read the state of domain '%s' (%s)", name, uuid);
        int persistent = virDomainIsPersistent(d);
        if (persistent < 0)
                return hv_virt_fail("cannot tell whether domain '%s' (%s) is persistent", name, uuid);
        info.state = state_from_virt(state);
        info.persistent = persistent == 1;
        snprintf(info.uuid, sizeof info.uuid, "%s", uuid);
        *ret = info;
        return 0;
}

static int list_domains_now(HvConn *c, HvDomainInfo **ret, size_t *ret_n) {
        HV_LEASE(c);
        assert(c && ret && ret_n);
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(hv_conn_virt(c), &doms, 0);
        if (n < 0)
                return hv_virt_fail("cannot list the domains of '%s'", c->uri);

        HvDomainInfo *infos = xcalloc((size_t) n, sizeof *infos);
        size_t k = 0;
        int r = 0;
        for (int i = 0; i < n; i++) {
                if (r == 0) {
                        int q = domain_fill(doms[i], &infos[k]);
                        if (q == 0)
                                k++;
                        else if (q != -ENOENT) /* undefined since the listing: skip */
                                r = q;
                }
                virDomainFree(doms[i]);
        }
        free(doms);
        if (r < 0) {
                free(infos);
                return r;
        }
        *ret = infos;
        *ret_n = k;
        return 0;
}

static int list_domains_body(HvConn *c, HvCall *a) {
        return list_domains_now(c, &a->ret.doms, &a->ret_n);
}

int hv_list_domains(HvConn *c, HvDomainInfo **ret, size_t *ret_n) {
        return HV_CALL_TAKE(c, hv_call_new(list_domains_body, "listing the domains", NULL, NULL, NULL, NULL), hv_deadlines.query_ms, ret, ret_n);
}

/* The domain with uuid, or NULL with the error set and *ret_r negative. */
static virDomainPtr domain_lookup(HvConn *c, const char *uuid, int *ret_r) {
        assert(c);
        if (!uuid || !uuid_is_valid(uuid)) {
                hv_set_error("cannot look up a domain by UUID: '%s' is not a UUID",
                             uuid ? uuid : "(none)");
                *ret_r = -EINVAL;
                return NULL;
        }
        virDomainPtr d = virDomainLookupByUUIDString(hv_conn_virt(c), uuid);
        if (!d) {
                if (hv_virt_code() == VIR_ERR_NO_DOMAIN) {
                        hv_set_error("there is no domain with UUID '%s' on '%s'", uuid, c->uri);
                        *ret_r = -ENOENT;
                } else
                        *ret_r = hv_virt_fail("cannot look up domain '%s' on '%s'", uuid, c->uri);
        }
        return d;
}

static int domain_get_now(HvConn *c, const char *uuid, HvDomainInfo *ret) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = domain_lookup(c, uuid, &r);
        if (!d)
                return r;
        return domain_fill(d, ret);
}

static int domain_get_body(HvConn *c, HvCall *a) {
        return domain_get_now(c, a->s[0], &a->out.dom);
}

int hv_domain_get(HvConn *c, const char *uuid, HvDomainInfo *ret) {
        return hv_call_out(c, hv_call_new(domain_get_body, "looking up a domain", uuid, NULL, NULL, NULL), hv_deadlines.query_ms, ret, sizeof *ret);
}

static int domain_define_body(HvConn *c, HvCall *a) {
        HV_LEASE(c);
        _cleanup_domain_ virDomainPtr d = virDomainDefineXML(hv_conn_virt(c), a->s[0]);
        if (!d)
                return hv_virt_fail("cannot define VM '%s' on '%s'", a->s[1], c->uri);
        return 0;
}

int hv_domain_define(HvConn *c, const HvDomainSpec *spec) {
        assert(c);
        _cleanup_free_ char *xml = hv_domain_xml_build(spec);
        if (!xml)
                return -EINVAL;
        return hv_call_code(c, hv_call_new(domain_define_body, "defining a domain", xml, spec->name, NULL, NULL),
                            hv_deadlines.change_ms);
}

static int domain_mark_now(HvConn *c, const char *uuid, const char *installation_id, int64_t vm_id) {
        HV_LEASE(c);
        int r;
        if (!installation_id || !uuid_is_valid(installation_id)) {
                hv_set_error("cannot mark domain '%s': the installation id is not a UUID", uuid ? uuid : "(none)");
                return -EINVAL;
        }
        _cleanup_domain_ virDomainPtr d = domain_lookup(c, uuid, &r);
        if (!d)
                return r;
        /* Both values are checked (a UUID, an integer): nothing to escape. */
        _cleanup_free_ char *xml = xasprintf("<vm installation='%s' id='%lld'/>", installation_id, (long long) vm_id);
        unsigned flags = VIR_DOMAIN_AFFECT_CONFIG;
        if (virDomainIsActive(d) == 1)
                flags |= VIR_DOMAIN_AFFECT_LIVE;
        if (virDomainSetMetadata(d, VIR_DOMAIN_METADATA_ELEMENT, xml, HV_ARMADA_XMLNS_PREFIX, HV_ARMADA_XMLNS, flags) < 0)
                return hv_virt_fail("cannot mark VM '%s' (%s) as Armada's", virDomainGetName(d), uuid);
        return 0;
}

static int domain_mark_body(HvConn *c, HvCall *a) {
        return domain_mark_now(c, a->s[0], a->s[1], (int64_t) a->n[0]);
}

int hv_domain_mark(HvConn *c, const char *uuid, const char *installation_id, int64_t vm_id) {
        HvCall *a = hv_call_new(domain_mark_body, "marking a domain", uuid, installation_id, NULL, NULL);
        a->n[0] = (uint64_t) vm_id;
        return hv_call_code(c, a, hv_deadlines.change_ms);
}

/* Whether a domain in libvirt state s can take the operation at all. */
static bool can_start(int s) { return s == VIR_DOMAIN_SHUTOFF || s == VIR_DOMAIN_CRASHED; }
static bool can_stop(int s) { return !can_start(s) && s != VIR_DOMAIN_NOSTATE; }
static bool can_pause(int s) { return s == VIR_DOMAIN_RUNNING || s == VIR_DOMAIN_BLOCKED; }
static bool can_resume(int s) { return s == VIR_DOMAIN_PAUSED; }

typedef struct {
        const char *verb;
        int (*run)(virDomainPtr d);
        bool (*applicable)(int state);
} DomainOp;

static int domain_op(HvConn *c, const char *uuid, const DomainOp *op) {
        int r;
        _cleanup_domain_ virDomainPtr d = domain_lookup(c, uuid, &r);
        if (!d)
                return r;
        const char *name = virDomainGetName(d);
        if (op->run(d) == 0)
                return 0;
        r = hv_virt_fail("cannot %s VM '%s' (%s)", op->verb, name, uuid);
        /* QEMU says OPERATION_INVALID (-EBUSY) when the state is wrong; the
         * test driver says INTERNAL_ERROR. Asking the state afterwards gives
         * callers one answer on every driver, at no cost on success. */
        int state, reason;
        if (r == -EIO && virDomainGetState(d, &state, &reason, 0) == 0 && !op->applicable(state))
                r = -EBUSY;
        return r;
}

static int domain_start_now(HvConn *c, const char *uuid) {
        HV_LEASE(c);
        static const DomainOp op = { "start", virDomainCreate, can_start };
        return domain_op(c, uuid, &op);
}

static int domain_start_body(HvConn *c, HvCall *a) {
        return domain_start_now(c, a->s[0]);
}

int hv_domain_start(HvConn *c, const char *uuid) {
        return hv_call_code(c, hv_call_new(domain_start_body, "starting a domain", uuid, NULL, NULL, NULL), hv_deadlines.start_ms);
}
/* Starts the domain's QEMU with its vCPUs paused (the guest never runs):
 * for reading a stopped VM's disks through QEMU (an offline backup). */
static int create_paused(virDomainPtr d) {
        /* libvirt's test driver has no START_PAUSED: start and suspend
         * there (no guest runs on it), so the tests reach what follows. */
        const char *type = virConnectGetType(virDomainGetConnect(d));
        if (type && strcasecmp(type, "TEST") == 0)
                return virDomainCreate(d) < 0 ? -1 : virDomainSuspend(d);
        return virDomainCreateWithFlags(d, VIR_DOMAIN_START_PAUSED);
}

static int domain_start_paused_body(HvConn *c, HvCall *a) {
        HV_LEASE(c);
        static const DomainOp op = { "start paused", create_paused, can_start };
        return domain_op(c, a->s[0], &op);
}

int hv_domain_start_paused(HvConn *c, const char *uuid) {
        return hv_call_code(c, hv_call_new(domain_start_paused_body, "starting a domain paused", uuid, NULL, NULL, NULL),
                            hv_deadlines.start_ms);
}
static int domain_stop_now(HvConn *c, const char *uuid) {
        HV_LEASE(c);
        static const DomainOp op = { "shut down", virDomainShutdown, can_stop };
        return domain_op(c, uuid, &op);
}

static int domain_stop_body(HvConn *c, HvCall *a) {
        return domain_stop_now(c, a->s[0]);
}

int hv_domain_stop(HvConn *c, const char *uuid) {
        return hv_call_code(c, hv_call_new(domain_stop_body, "asking a domain to shut down", uuid, NULL, NULL, NULL), hv_deadlines.change_ms);
}
static int domain_kill_now(HvConn *c, const char *uuid) {
        HV_LEASE(c);
        static const DomainOp op = { "power off", virDomainDestroy, can_stop };
        return domain_op(c, uuid, &op);
}

static int domain_kill_body(HvConn *c, HvCall *a) {
        return domain_kill_now(c, a->s[0]);
}

int hv_domain_kill(HvConn *c, const char *uuid) {
        return hv_call_code(c, hv_call_new(domain_kill_body, "powering off a domain", uuid, NULL, NULL, NULL), hv_deadlines.change_ms);
}
static int domain_pause_now(HvConn *c, const char *uuid) {
        HV_LEASE(c);
        static const DomainOp op = { "pause", virDomainSuspend, can_pause };
        return domain_op(c, uuid, &op);
}

static int domain_pause_body(HvConn *c, HvCall *a) {
        return domain_pause_now(c, a->s[0]);
}

int hv_domain_pause(HvConn *c, const char *uuid) {
        return hv_call_code(c, hv_call_new(domain_pause_body, "pausing a domain", uuid, NULL, NULL, NULL), hv_deadlines.change_ms);
}
static int domain_resume_now(HvConn *c, const char *uuid) {
        HV_LEASE(c);
        static const DomainOp op = { "resume", virDomainResume, can_resume };
        return domain_op(c, uuid, &op);
}

static int domain_resume_body(HvConn *c, HvCall *a) {
        return domain_resume_now(c, a->s[0]);
}

int hv_domain_resume(HvConn *c, const char *uuid) {
        return hv_call_code(c, hv_call_new(domain_resume_body, "resuming a domain", uuid, NULL, NULL, NULL), hv_deadlines.change_ms);
}

static int domain_undefine_now(HvConn *c, const char *uuid) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = domain_lookup(c, uuid, &r);
        if (!d)
                return r;
        const char *name = virDomainGetName(d);
        int persistent = virDomainIsPersistent(d);
        if (persistent < 0)
                return hv_virt_fail("cannot undefine VM '%s' (%s)", name, uuid);
        int active = virDomainIsActive(d);
        if (active < 0)
                return hv_virt_fail("cannot undefine VM '%s' (%s)", name, uuid);
        /* OPERATION_INVALID: it stopped by itself in between. */
        if (active == 1 && virDomainDestroy(d) < 0 && hv_virt_code() != VIR_ERR_OPERATION_INVALID)
                return hv_virt_fail("cannot power off VM '%s' (%s) to undefine it", name, uuid);
        if (persistent == 0)
                return 0; /* a transient domain is gone once off */

        /* Drivers refuse flags they do not know (the test driver NVRAM and
         * checkpoints) with INVALID_ARG or NO_SUPPORT: retry with fewer. */
        static const unsigned flag_sets[] = {
                VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                        VIR_DOMAIN_UNDEFINE_NVRAM | VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA,
                VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
        };
        for (size_t i = 0; i < ELEMENTSOF(flag_sets); i++) {
                if (virDomainUndefineFlags(d, flag_sets[i]) == 0)
                        return 0;
                int code = hv_virt_code();
                if (code != VIR_ERR_INVALID_ARG && code != VIR_ERR_NO_SUPPORT)
                        return hv_virt_fail("cannot undefine VM '%s' (%s)", name, uuid);
        }
        if (virDomainUndefine(d) < 0)
                return hv_virt_fail("cannot undefine VM '%s' (%s)", name, uuid);
        return 0;
}

static int domain_undefine_body(HvConn *c, HvCall *a) {
        return domain_undefine_now(c, a->s[0]);
}

int hv_domain_undefine(HvConn *c, const char *uuid) {
        return hv_call_code(c, hv_call_new(domain_undefine_body, "undefining a domain", uuid, NULL, NULL, NULL), hv_deadlines.change_ms);
}

static int domain_state_now(HvConn *c, const char *uuid, HvState *ret) {
        HV_LEASE(c);
        int r;
        _cleanup_domain_ virDomainPtr d = domain_lookup(c, uuid, &r);
        if (!d)
                return r;
        const char *name = virDomainGetName(d); /* before: it resets the error */
        int state, reason;
        if (virDomainGetState(d, &state, &reason, 0) < 0)
                return hv_virt_fail("cannot read the state of VM '%s' (%s)", name, uuid);
        *ret = state_from_virt(state);
        return 0;
}

static int domain_state_body(HvConn *c, HvCall *a) {
        return domain_state_now(c, a->s[0], &a->out.state);
}

int hv_domain_state(HvConn *c, const char *uuid, HvState *ret) {
        return hv_call_out(c, hv_call_new(domain_state_body, "reading a domain's state", uuid, NULL, NULL, NULL), hv_deadlines.query_ms, ret, sizeof *ret);
}

/* ---- storage ---- */

static bool storage_name_ok(const char *s) {
        return s && s[0] && !strchr(s, '/') && strlen(s) < 256;
}

static int pool_path(virStoragePoolPtr pool, const char *name, char **ret_path) {
        if (!ret_path)
                return 0;
        _cleanup_free_ char *xml = virStoragePoolGetXMLDesc(pool, 0);
        if (!xml)
                return hv_virt_fail("cannot read the definition of storage pool '%s'", name);
        return hv_xml_pool_path(xml, ret_path);
}

static int pool_define(HvConn *c, const char *name, const char *path, virStoragePoolPtr *ret) {
        if (!path || path[0] != '/') {
                hv_set_error("cannot create storage pool '%s' on '%s': it needs an absolute path",
                             name, c->uri);
                return -EINVAL;
        }
        _cleanup_free_ char *xml = hv_xml_pool_build(name, path);
        virStoragePoolPtr pool = virStoragePoolDefineXML(hv_conn_virt(c), xml, 0);
        if (!pool)
                return hv_virt_fail("cannot define storage pool '%s' at '%s' on '%s'", name, path,
                                 c->uri);
        /* Build makes the directory (on the host, which is not necessarily
         * this machine); it is fine when it exists. */
        if (virStoragePoolBuild(pool, 0) < 0) {
                int r = hv_virt_fail("cannot create the directory '%s' of storage pool '%s' on '%s'",
                                  path, name, c->uri);
                virStoragePoolUndefine(pool);
                virStoragePoolFree(pool);
                return r;
        }
        *ret = pool;
        return 0;
}

static int pool_ensure_now(HvConn *c, const char *name, const char *path, char **ret_path) {
        HV_LEASE(c);
        assert(c);
        if (!storage_name_ok(name)) {
                hv_set_error("cannot set up a storage pool without a valid name");
                return -EINVAL;
        }
        bool defined = false;
        _cleanup_pool_ virStoragePoolPtr pool = virStoragePoolLookupByName(hv_conn_virt(c), name);
        if (!pool) {
                if (hv_virt_code() != VIR_ERR_NO_STORAGE_POOL)
                        return hv_virt_fail("cannot look up storage pool '%s' on '%s'", name, c->uri);
                int r = pool_define(c, name, path, &pool);
                if (r < 0)
                        return r;
                defined = true;
        }
        int active = virStoragePoolIsActive(pool);
        if (active < 0)
                return hv_virt_fail("cannot read the state of storage pool '%s' on '%s'", name, c->uri);
        if (active == 0 && virStoragePoolCreate(pool, 0) < 0) {
                int r = hv_virt_fail("cannot start storage pool '%s' on '%s'", name, c->uri);
                if (defined) /* leave nothing half-made behind */
                        virStoragePoolUndefine(pool);
                return r;
        }
        int autostart = 0;
        if (virStoragePoolGetAutostart(pool, &autostart) < 0)
                return hv_virt_fail("cannot read the autostart flag of storage pool '%s' on '%s'",
                                 name, c->uri);
        if (!autostart && virStoragePoolSetAutostart(pool, 1) < 0)
                return hv_virt_fail("cannot make storage pool '%s' on '%s' start at boot", name, c->uri);
        return pool_path(pool, name, ret_path);
}

static int pool_ensure_body(HvConn *c, HvCall *a) {
        return pool_ensure_now(c, a->s[0], a->s[1], &a->ret.str);
}

int hv_pool_ensure(HvConn *c, const char *name, const char *path, char **ret_path) {
        return HV_CALL_TAKE(c, hv_call_new(pool_ensure_body, "setting up a storage pool", name, path, NULL, NULL), hv_deadlines.change_ms, ret_path, NULL);
}

static int volume_create_now(HvConn *c, const char *pool_name, const char *vol_name, const char *format,
                             uint64_t capacity, char **ret_path) {
        HV_LEASE(c);
        assert(c);
        if (!format)
                format = "qcow2";
        if (!storage_name_ok(pool_name) || !storage_name_ok(vol_name) || !ret_path) {
                hv_set_error("cannot create a volume without a valid pool and volume name");
                return -EINVAL;
        }
        if (!streq(format, "qcow2") && !streq(format, "raw")) {
                hv_set_error("cannot create volume '%s': its format must be 'qcow2' or 'raw'",
                             vol_name);
                return -EINVAL;
        }
        if (capacity == 0) {
                hv_set_error("cannot create volume '%s' with a capacity of 0 bytes", vol_name);
                return -EINVAL;
        }
        _cleanup_pool_ virStoragePoolPtr pool = virStoragePoolLookupByName(hv_conn_virt(c), pool_name);
        if (!pool)
                return hv_virt_fail("cannot find storage pool '%s' on '%s'", pool_name, c->uri);
        /* Drivers disagree on the error for a duplicate (the test driver
         * says OPERATION_FAILED), so ask first. */
        _cleanup_vol_ virStorageVolPtr old = virStorageVolLookupByName(pool, vol_name);
        if (old) {
                hv_set_error("cannot create volume '%s': storage pool '%s' on '%s' already has one "
                             "of that name", vol_name, pool_name, c->uri);
                return -EEXIST;
        }
        if (hv_virt_code() != VIR_ERR_NO_STORAGE_VOL)
                return hv_virt_fail("cannot look up volume '%s' in storage pool '%s' on '%s'",
                                 vol_name, pool_name, c->uri);

        _cleanup_free_ char *xml = hv_xml_volume_build(vol_name, format, capacity);
        _cleanup_vol_ virStorageVolPtr vol = virStorageVolCreateXML(pool, xml, 0);
        if (!vol)
                return hv_virt_fail("cannot create volume '%s' in storage pool '%s' on '%s'",
                                 vol_name, pool_name, c->uri);
        char *path = virStorageVolGetPath(vol);
        if (!path)
                return hv_virt_fail("cannot read the path of new volume '%s' in storage pool '%s'",
                                 vol_name, pool_name);
        *ret_path = path;
        return 0;
}

static int volume_create_body(HvConn *c, HvCall *a) {
        return volume_create_now(c, a->s[0], a->s[1], a->s[2], a->n[0], a->flag ? &a->ret.str : NULL);
}

int hv_volume_create(HvConn *c, const char *pool_name, const char *vol_name, const char *format,
                     uint64_t capacity, char **ret_path) {
        HvCall *a = hv_call_new(volume_create_body, "creating a volume", pool_name, vol_name, format, NULL);
        a->n[0] = capacity;
        a->flag = ret_path != NULL;
        return HV_CALL_TAKE(c, a, hv_deadlines.change_ms, ret_path, NULL);
}

/* Refreshes every active pool of the host (a pool lists what it found at
 * its last refresh: a file made since, by another host on shared storage,
 * is not in it yet). *ret_dir_pooled: some pool's directory is the one path
 * is in, so that pool would list the file if it were there. */
static void pools_refresh(HvConn *c, const char *path, bool *ret_dir_pooled) {
        *ret_dir_pooled = false;
        _cleanup_free_ char *dir = xstrdup(path);
        char *slash = strrchr(dir, '/');
        if (slash)
                *(slash == dir ? slash + 1 : slash) = 0;
        virStoragePoolPtr *pools = NULL;
        int n = virConnectListAllStoragePools(hv_conn_virt(c), &pools, VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE);
        for (int i = 0; i < n; i++) {
                (void) virStoragePoolRefresh(pools[i], 0);
                _cleanup_free_ char *ppath = NULL;
                if (pool_path(pools[i], virStoragePoolGetName(pools[i]), &ppath) == 0) {
                        size_t len = strlen(ppath);
                        while (len > 1 && ppath[len - 1] == '/')
                                ppath[--len] = 0;
                        if (streq(ppath, dir))
                                *ret_dir_pooled = true;
                }
                virStoragePoolFree(pools[i]);
        }
        free(pools);
}

static int volume_delete_now(HvConn *c, const char *path) {
        HV_LEASE(c);
        assert(c);
        if (!path || !path[0]) {
                hv_set_error("cannot delete a volume without a path");
                return -EINVAL;
        }
        _cleanup_vol_ virStorageVolPtr vol = virStorageVolLookupByPath(hv_conn_virt(c), path);
        if (!vol) {
                if (hv_virt_code() != VIR_ERR_NO_STORAGE_VOL)
                        return hv_virt_fail("cannot look up the volume at '%s' on '%s'", path, c->uri);
                bool dir_pooled;
                pools_refresh(c, path, &dir_pooled);
                vol = virStorageVolLookupByPath(hv_conn_virt(c), path);
                if (!vol) {
                        if (hv_virt_code() != VIR_ERR_NO_STORAGE_VOL)
                                return hv_virt_fail("cannot look up the volume at '%s' on '%s'", path, c->uri);
                        if (dir_pooled) {
                                hv_set_error("there is no volume at '%s' on '%s'", path, c->uri);
                                return -ENOENT;
                        }
                        /* The file may well be there; only no pool shows it. */
                        hv_set_error("no storage pool on '%s' holds '%s'", c->uri, path);
                        return -ENXIO;
                }
        }
        if (virStorageVolDelete(vol, 0) < 0)
                return hv_virt_fail("cannot delete the volume at '%s' on '%s'", path, c->uri);
        return 0;
}

static int volume_delete_body(HvConn *c, HvCall *a) {
        return volume_delete_now(c, a->s[0]);
}

int hv_volume_delete(HvConn *c, const char *path) {
        return hv_call_code(c, hv_call_new(volume_delete_body, "deleting a volume", path, NULL, NULL, NULL), hv_deadlines.change_ms);
}
