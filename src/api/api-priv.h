/* Internals of the api module shared by the server (api.c) and the
 * resource handlers (api-*.c). */
#pragma once

#ifndef API_PRIV_ALLOW
#error "api-priv.h is private to the api's own files (their meson target defines API_PRIV_ALLOW); use the module's public header"
#endif

#include <microhttpd.h>
#include <pthread.h>
#include "api.h"
#include "auth/auth.h"
#include "op/op.h"

#define API_MAX_SCOPES 64
#define API_MAX_PARAMS 4

struct Api {
        Store *st;
        Jobs *jobs;
        Inventory *inv;
        ApiConfig cfg;
        struct MHD_Daemon *mhd;
        char *tls_cert_pem, *tls_key_pem;
        pthread_mutex_t rate_lock;
        AuthRateLimiter rate;
        uint64_t login_rate_limited;  /* logins the limiter refused (__atomic) */
        struct ApiStreams *streams;   /* GET /events/stream (api-stream.c) */
        struct Model *model;          /* the read model lists read (api-list.c) */
        bool own_model;               /* made by api_new(), freed by api_free() */
        uint64_t list_instance;       /* random, per start: in list ETags */
};
typedef struct ApiStreams ApiStreams;

typedef struct {
        Api *api;
        struct MHD_Connection *mc;
        const char *method;
        char path[1024];
        StrBuf body;
        bool too_big;
        json_t *json;                 /* parsed body (object) or NULL */
        char addr[64];
        /* the caller */
        bool authed;
        StoreUser user;
        AuthSubject subj;
        int64_t scopes[API_MAX_SCOPES];
        char token_hash[65];
        /* route parameters */
        int64_t id[API_MAX_PARAMS];
        const char *word[API_MAX_PARAMS];
        char words[API_MAX_PARAMS][64];
        /* the answer */
        int status;
        json_t *resp;
        const char *content_type;
        char *raw;                    /* non-JSON body */
        size_t raw_len;
        char *set_cookie[2];          /* Set-Cookie headers to send (malloc'd) */
        const char *hdr_name[4];      /* more headers to send (reply_header) */
        char *hdr_value[4];
        struct MHD_Response *mhd_resp; /* a response the handler built itself (a
                                        * WebSocket upgrade): sent as is with status */
        bool by_cookie;               /* authenticated by the session cookie */
        bool console_page;            /* a web console file: its Content-Security-Policy */
        /* Streaming uploads (a Route with .stream; library uploads): see
         * StreamPhase below. */
        int stream_phase;
        const char *upload;           /* STREAM_DATA: this chunk */
        size_t upload_len;
        void *stream_state;           /* the handler's; freed by it at END/ABORT */
        const void *stream_route;     /* the (const Route *) while streaming */
        void *event_stream;           /* GET /events/stream: its stream (api-stream.c) */
} Req;

/* A route with .stream gets its body unbuffered: after authentication on the
 * headers, its handler is called with r->stream_phase STREAM_BEGIN (refuse
 * by replying an error: the body is then read and dropped), STREAM_DATA once
 * per chunk (r->upload, r->upload_len), STREAM_END when the body is complete
 * (reply now), or STREAM_ABORT when the connection ends before that (clean
 * up r->stream_state). A handler that replied an error gets no more DATA/END
 * calls, only ABORT when stream_state is still set. */
enum { STREAM_NONE = 0, STREAM_BEGIN, STREAM_DATA, STREAM_END, STREAM_ABORT };

#define API_SESSION_COOKIE "armada_session"
#define API_CSRF_COOKIE "armada_csrf"
/* The CSRF token that goes with a session token (derived, not stored):
 * the web console sends it back in the X-CSRF-Token header. */
void api_csrf_for(const char *token, char out[65]);
/* Sets (token non-NULL) or clears the session and CSRF cookies. */
void api_session_cookies(Req *r, const char *token, int max_age_s);

/* Makes u the caller of r: its role and, for a delegated administrator,
 * its scopes (what authentication does with a token's user; login does it
 * for the user who just logged in). 0, or -EINVAL for an unknown role. */
int api_set_caller(Req *r, const StoreUser *u);

typedef void (*RouteFn)(Req *r);

/* One route: pattern segments are literal, "#" (an integer id, into r->id[])
 * or "*" (a word, into r->word[]). Tables end with { NULL }. */
typedef struct {
        const char *method;
        const char *pattern;
        RouteFn fn;
        bool public;             /* no token needed */
        bool stream;             /* body streamed to the handler (STREAM_*), not buffered */
} Route;
/* Each capability's routes, in its own api-<capability>.c. */
extern const Route api_routes_place[];
extern const Route api_routes_monitor[];
extern const Route api_routes_library[];
extern const Route api_routes_datastore[];
extern const Route api_routes_ha[];
extern const Route api_routes_backup[];
extern const Route api_routes_web[];
extern const Route api_routes_stream[];
extern const Route api_routes_list[];
extern const Route api_routes_snapshot[];
extern const Route api_routes_replicate[];
extern const Route api_routes_hardware[];   /* issue 12, VM hardware and ISOs (api-hardware.c) */
extern const Route api_routes_network[];   /* issue 12: networks, NICs, pools, volumes */
extern const Route api_routes_export[];   /* issue 12: clone, export, import */
extern const Route api_routes_p2v[];      /* issue 12: P2V (api-p2v.c) */
extern const Route api_routes_manager[];  /* issue 14: GET /managers (api-manager.c) */
/* On a standby manager, answers a write with 503 "standby" (the active
 * manager's URL in the body and Location) and returns true. */
bool api_standby_refuse(Req *r);

/* ---- the event stream (api-stream.c) ---- */
/* Starts the thread that feeds event streams and hooks it to the store's
 * changes; 0 or -errno. */
int api_streams_start(Api *api);
/* Unhooks it, stops the thread and ends every stream (waking any that
 * waits), so that the HTTP daemon can stop. Before MHD_stop_daemon. */
void api_streams_stop(Api *api);
/* After MHD_stop_daemon. Accepts an api without streams. */
void api_streams_free(Api *api);
/* The connection of r ended: its stream (if any) leaves the list. */
void api_event_stream_closed(Req *r);
/* Streams open now and opened since the start (for /metrics). */
void api_streams_counts(Api *api, unsigned *ret_open, uint64_t *ret_opened);

/* ---- responses ---- */
void reply(Req *r, int status, json_t *body /* stolen, may be NULL */);
/* {"error":{"code","message","field"}}; field may be NULL. */
void reply_error(Req *r, int status, const char *code, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
void reply_store_error(Req *r, int err, const char *what);
/* Adds a response header (name static, value copied); at most four. */
void reply_header(Req *r, const char *name, const char *value);

/* ---- requests ---- */
const char *req_query(Req *r, const char *key);
/* Whether every query parameter has a value: false (and a 400 naming the
 * first that has none, "?memory_mib=" or "?force") otherwise. The router
 * asks it before every handler. */
bool req_query_complete(Req *r);
/* Integer query parameter with bounds: the default when absent; false (and
 * a 400 naming it sent) when empty, not a number or out of bounds. */
bool req_query_int(Req *r, const char *key, int64_t def, int64_t min, int64_t max, int64_t *ret);
/* Body checks: every key of the body must be in allowed (NULL-terminated);
 * false and a 400 otherwise. A missing body is an empty object. */
bool req_body_fields(Req *r, const char *const *allowed);
/* Typed body getters: false (and a 4xx sent naming the field) when the
 * field has the wrong type or is out of range; *ret untouched when absent
 * and not required. */
bool body_string(Req *r, const char *field, bool required, size_t max_len, const char **ret);
bool body_int(Req *r, const char *field, bool required, int64_t min, int64_t max, int64_t *ret);
bool body_bool(Req *r, const char *field, bool *ret);
bool body_name(Req *r, const char *field, bool required, const char **ret);

/* ---- operations of capability modules (op/op.h) ---- */
/* The caller of r as an operation's OpCaller (borrows r's strings: valid
 * while r is). */
OpCaller api_caller(Req *r);
/* Sends the failure an operation reported, as it is. */
void reply_op_error(Req *r, const OpError *e);
/* What a handler answers after calling one operation: on e < 0 the
 * operation's error (body, if any, dropped), else status with body (stolen). */
void reply_result(Req *r, int e, const OpError *err, int status, json_t *body);

/* ---- authorization ---- */
/* Fills the group chain of a group id into chain (max AUTH_MAX_DEPTH). */
size_t api_group_chain(Req *r, int64_t group_id, int64_t *chain);
bool api_allowed(Req *r, AuthAction a, AuthObjectKind k, int64_t owner_id, int64_t group_id);
/* Whether the caller may do a on at least one object of kind k
 * (auth_policy_allows_some): false lets a handler refuse at once, before it
 * reveals anything about the objects it would look up. */
bool api_allowed_some(Req *r, AuthAction a, AuthObjectKind k);
/* 409 for a VM name that is taken (VM names are unique across the estate):
 * names the VM only when the caller may read it, and otherwise says the
 * name cannot be used without confirming that another user's VM has it. */
void reply_vm_name_taken(Req *r, const char *field, const char *name);
/* Sends 403 (or 404 when the caller may not even read it) and audits. */
/* Whether the caller may see a job or an event (its JSON, as the lists
 * return it): the rules of GET /jobs and GET /events, which the event
 * stream applies too. */
bool api_job_visible(Req *r, json_t *job);
bool api_event_visible(Req *r, json_t *ev);
void deny(Req *r, const char *action, const char *object_kind, int64_t object_id, const char *object_name);
void audit(Req *r, const char *action, const char *object_kind, int64_t object_id, const char *object_name,
           const char *detail, const char *result);
/* Replies 409 and returns true when VM v (its JSON) belongs to another
 * Armada installation (origin "foreign"): read-only here, every action,
 * delete, migration, HA change and console refused. */
bool api_vm_refuse_foreign(Req *r, json_t *v);


/* ---- lists read from the read model (api-list.c): GET /hosts and GET
 * /vms with paging, filters, fields, ETag and gzip; they reply. ---- */
void api_list_hosts(Req *r);
/* Whether If-None-Match names etag (or is "*"); weak comparison. */
bool api_etag_matches(Req *r, const char *etag);
/* Whether the client takes gzip (Accept-Encoding, q=0 refuses). */
bool api_accepts_gzip(Req *r);
/* gzip of in (RFC 1952, level 1). 0 and *ret (malloc'd), or -EIO. */
int api_gzip(const char *in, size_t n, char **ret, size_t *ret_len);
void api_list_vms(Req *r);

/* ---- handlers (api-handlers.c) ---- */
void h_version(Req *r);
void h_session_create(Req *r);
void h_session_get(Req *r);
void h_session_delete(Req *r);
void h_users_list(Req *r);
void h_users_create(Req *r);
void h_user_get(Req *r);
void h_user_update(Req *r);
void h_user_delete(Req *r);
void h_groups_list(Req *r);
void h_groups_create(Req *r);
void h_group_get(Req *r);
void h_group_update(Req *r);
void h_group_delete(Req *r);
void h_hosts_list(Req *r);
void h_hosts_create(Req *r);
void h_host_get(Req *r);
void h_host_update(Req *r);
void h_host_delete(Req *r);
void h_host_action(Req *r);
void h_vms_list(Req *r);
void h_vms_create(Req *r);
void h_vm_get(Req *r);
void h_vm_update(Req *r);
void h_vm_delete(Req *r);
void h_vm_action(Req *r);
void h_jobs_list(Req *r);
void h_job_get(Req *r);
void h_job_cancel(Req *r);
void h_events_list(Req *r);
void h_audit_list(Req *r);
