/* What hv.c and hv-xml.c share and nobody else sees: the thread-local error
 * setter and the small XML documents (pools, volumes, capabilities) that the
 * I/O side builds and reads, and hv_conn_virt() for hv's other files. */
#pragma once

#ifndef HV_PRIV_ALLOW
#error "hv-internal.h is private to hv's own files (their meson target defines HV_PRIV_ALLOW); use the module's public header"
#endif

#include <stdbool.h>
#include <stdint.h>

#include "util/util.h"
#include "hv.h"
#include "hv-migrate.h"
#include "hv-screen.h"
#include "hv-stats.h"

/* Every libvirt call on an HvConn runs under a lease: the calling thread
 * has one of the host's connections to itself from hv_lease_begin to
 * hv_lease_end (hv.c says why). A function that calls libvirt starts with
 * HV_LEASE(c); calls nested in it on the same HvConn share its lease.
 * hv_conn_virt(c) is the connection this thread leased (it aborts outside
 * a lease). Borrowed. */
struct HvConn;
struct _virConnect;
typedef struct {
        struct HvConn *c;
        struct _virConnect *conn;
        bool owner;
} HvLease;
/* 0, or a negative code with the error set when no connection could be
 * had (the host closed them, or a new one failed). */
int hv_lease_begin(struct HvConn *c, HvLease *l);
void hv_lease_end(HvLease *l);
#define HV_LEASE(c)                                                     \
        _cleanup_(hv_lease_end) HvLease _hv_lease = { 0 };              \
        do {                                                            \
                int _hv_r = hv_lease_begin((c), &_hv_lease);            \
                if (_hv_r < 0)                                          \
                        return _hv_r;                                   \
        } while (0)
struct _virConnect *hv_conn_virt(struct HvConn *c);

/* The domain with uuid on c's leased connection, or NULL with the error set
 * and *ret_r -EINVAL (not a UUID), -ENOENT (no such domain) or another
 * negative code. The caller frees it (virDomainFree). Call under HV_LEASE. */
struct _virDomain;
struct _virDomain *hv_domain_by_uuid(struct HvConn *c, const char *uuid, int *ret_r);

/* A call with a deadline. A libvirtd whose workers hang (a wedged lock, a
 * hook that never returns) answers keepalive but never the call, so every
 * public hv function that talks to a host runs its body through hv_call():
 * on a thread of its own, with a connection of its own, waited for up to a
 * deadline. Everything the body reads or writes lives in the HvCall (copies
 * of the string arguments, room for the results), so the caller can walk
 * away from a body that does not return. */
typedef struct HvCall HvCall;
typedef int (*HvCallBody)(HvConn *c, HvCall *a);
struct HvCall {
        HvCallBody body;
        const char *what;       /* static: "starting a domain" */
        char *s[4];             /* copies of the string arguments; NULL stays NULL */
        uint64_t n[2];
        bool flag;
        union {                 /* a flat result */
                bool b;
                HvState state;
                HvHostInfo host;
                HvDomainInfo dom;
                HvJobInfo job;
                HvVnc vnc;
                HvNodeStats node;
        } out;
        union {                 /* a malloc'd result; hv_call_free() frees it unless taken (set NULL) */
                void *ptr;
                char *str;
                HvDomainInfo *doms;
                HvDomainStats *stats;
        } ret;
        size_t ret_n;
        /* hv_call's own */
        HvConn *shadow;
        struct _virConnect *conn;
        int r;
};
HvCall *hv_call_new(HvCallBody body, const char *what, const char *s0, const char *s1, const char *s2, const char *s3);
void hv_call_free(HvCall *a);
/* Runs a->body(c', a) with a connection of c to itself, c' standing for c
 * (same URI, that connection leased), for at most deadline_ms (0: no
 * deadline). Nested in a call on the same HvConn it runs in place.
 * true: the body returned, its result in a->r; take what you need of a,
 * then hv_call_free(a). false: it did not return in time; a belongs to its
 * thread now (freed when the body returns), c is marked not responding,
 * hv_last_error() says which call on which host: return -ETIMEDOUT. */
bool hv_call(HvConn *c, HvCall *a, unsigned deadline_ms);
/* hv_call for a body whose only result is its return code. */
int hv_call_code(HvConn *c, HvCall *a, unsigned deadline_ms);
/* hv_call for a body with a flat result: a->out copied to ret (size bytes;
 * ret may be NULL) when it returned 0. */
int hv_call_out(HvConn *c, HvCall *a, unsigned deadline_ms, void *ret, size_t size);
/* hv_call for a body with a malloc'd result: a->ret handed over to *ret and
 * a->ret_n to *ret_n (either may be NULL) when it returned 0. */
int hv_call_take(HvConn *c, HvCall *a, unsigned deadline_ms, void **ret, size_t *ret_n);
/* hv_call_take into a typed pointer (ret may be NULL). */
#define HV_CALL_TAKE(c, a, ms, ret, ret_n)                                              \
        ({                                                                              \
                void *_hv_p = NULL;                                                     \
                int _hv_r = hv_call_take((c), (a), (ms), (ret) ? &_hv_p : NULL, (ret_n)); \
                if (_hv_r == 0 && (ret))                                                \
                        *(ret) = _hv_p;                                                 \
                _hv_r;                                                                  \
        })

/* The deadlines in force (hv_set_deadlines). */
extern HvDeadlines hv_deadlines;

/* libvirt's last error in this thread (VIR_ERR_OK when none): read it
 * straight after the failing call, as nearly every libvirt call resets it. */
int hv_virt_code(void);
/* The negative errno for a libvirt error code (hv.h lists the mapping). */
int hv_errno_from_virt(int code);
/* Records "<what>: <libvirt's message>" as hv_last_error() and returns
 * libvirt's error as a negative errno. Call straight after the failure. */
int hv_virt_fail(const char *fmt, ...) _printf_(1, 2);

/* Records the reason for the failure in progress (a sentence) as
 * hv_last_error() of this thread. */
void hv_set_error(const char *fmt, ...) _printf_(1, 2);

/* Records libvirt's whole message for the failure in progress (logs only),
 * after hv_set_error(), which clears it. */
void hv_set_error_detail(const char *fmt, ...) _printf_(1, 2);

/* A call that may never return (hv-bounded.c). run(data) is started on a
 * thread of its own and waited for up to deadline_ms. 0: it returned; the
 * caller owns data again and this thread has its hv_last_error(). -ETIMEDOUT:
 * it did not; data now belongs to that thread, which calls drop(data) when
 * run returns, so run must touch nothing but data (copies of every input,
 * room for every output) and drop must release whatever run produced. */
typedef void (*HvBoundedRun)(void *data);
typedef void (*HvBoundedDrop)(void *data);
/* -ECANCELED: as -ETIMEDOUT, but hv_abandon_calls() ended the wait. */
int hv_run_bounded(unsigned deadline_ms, HvBoundedRun run, HvBoundedDrop drop, void *data);
/* Whether hv_abandon_calls() has been called. */
bool hv_calls_abandoned(void);

/* <pool type='dir'> named name at path. malloc'd; never NULL. */
char *hv_xml_pool_build(const char *name, const char *path);
/* <volume> named name, capacity bytes, sparse (allocation 0), format
 * "qcow2" or "raw". malloc'd; never NULL. */
char *hv_xml_volume_build(const char *name, const char *format, uint64_t capacity);
/* The <target><path> of pool XML. 0 and a malloc'd string, or -EINVAL with
 * the error set. */
int hv_xml_pool_path(const char *xml, char **ret);
/* Whether capabilities XML offers <domain type='kvm'> for guest arch
 * x86_64. 0 and *ret, or -EINVAL with the error set. */
int hv_xml_caps_kvm(const char *xml, bool *ret);
/* The host UUID of capabilities XML (<host><uuid>), lower case, or "" when
 * there is none or it is all zeros. 0, or -EINVAL with the error set when
 * the XML is not capabilities XML. */
int hv_xml_caps_host_uuid(const char *xml, char ret[37]);
/* The SMBIOS system UUID of virConnectGetSysinfo XML (<sysinfo><system>
 * <entry name='uuid'>), lower case, or "" when there is none. 0 or -EINVAL. */
int hv_xml_sysinfo_uuid(const char *xml, char ret[37]);
