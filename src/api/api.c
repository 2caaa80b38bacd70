/* api: the HTTP server — request assembly, routing, authentication, the
 * typed body checks every handler uses, and the static web files. */
#include "api-priv.h"
#include "account/account.h"
#include "model/model.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/stat.h>
#include <sodium.h>

/* ------------------------------------------------------------------ */
/* responses */

void reply(Req *r, int status, json_t *body) {
        json_decref(r->resp);
        r->status = status;
        r->resp = body;
}

void reply_error(Req *r, int status, const char *code, const char *field, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char msg[1024];
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        json_t *e = json_pack("{s:s, s:s}", "code", code, "message", msg);
        json_object_set_new(e, "field", field ? json_string(field) : json_null());
        reply(r, status, json_pack("{s:o}", "error", e));
}

void reply_header(Req *r, const char *name, const char *value) {
        for (size_t i = 0; i < ELEMENTSOF(r->hdr_name); i++)
                if (!r->hdr_name[i]) {
                        r->hdr_name[i] = name;
                        r->hdr_value[i] = xstrdup(value);
                        return;
                }
        assert(!"too many response headers");
}

void reply_store_error(Req *r, int err, const char *what) {
        if (err == -ENOENT)
                reply_error(r, 404, "not_found", NULL, "%s does not exist.", what);
        else if (err == -EEXIST)
                reply_error(r, 409, "conflict", NULL, "%s already exists.", what);
        else if (err == -ENOTEMPTY)
                reply_error(r, 409, "conflict", NULL, "%s is still in use.", what);
        else
                reply_error(r, 500, "internal", NULL, "A database error occurred while handling %s.", what);
}

/* ------------------------------------------------------------------ */
/* requests */

const char *req_query(Req *r, const char *key) {
        return MHD_lookup_connection_value(r->mc, MHD_GET_ARGUMENT_KIND, key);
}

bool req_query_int(Req *r, const char *key, int64_t def, int64_t min, int64_t max, int64_t *ret) {
        const char *v = req_query(r, key);
        if (!v) {
                *ret = def;
                return true;
        }
        if (!*v) {
                reply_error(r, 400, "invalid_argument", key, "Query parameter '%s' has no value; give a whole number from %lld to %lld"
                            " or leave the parameter out.", key, (long long) min, (long long) max);
                return false;
        }
        int64_t x;
        if (parse_i64(v, &x) < 0 || x < min || x > max) {
                reply_error(r, 400, "invalid_argument", key, "Query parameter '%s' must be a whole number from %lld to %lld.",
                            key, (long long) min, (long long) max);
                return false;
        }
        *ret = x;
        return true;
}

static enum MHD_Result first_empty_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        (void) kind;
        const char **ret = cls;
        if (!value || !*value) {
                *ret = key ? key : "";
                return MHD_NO;
        }
        return MHD_YES;
}

bool req_query_complete(Req *r) {
        const char *empty = NULL;
        MHD_get_connection_values(r->mc, MHD_GET_ARGUMENT_KIND, first_empty_arg, &empty);
        if (!empty)
                return true;
        reply_error(r, 400, "invalid_argument", empty, "Query parameter '%.64s' has no value; give one or leave the parameter out.", empty);
        return false;
}

bool req_body_fields(Req *r, const char *const *allowed) {
        if (!r->json)
                return true;
        const char *key;
        json_t *v;
        json_object_foreach(r->json, key, v) {
                bool ok = false;
                for (const char *const *a = allowed; *a; a++)
                        if (streq(*a, key)) ok = true;
                if (!ok) {
                        reply_error(r, 400, "invalid_argument", key, "Unknown field '%.64s'.", key);
                        return false;
                }
        }
        return true;
}

static json_t *body_get(Req *r, const char *field) {
        json_t *v = r->json ? json_object_get(r->json, field) : NULL;
        return v && !json_is_null(v) ? v : NULL;
}

bool body_string(Req *r, const char *field, bool required, size_t max_len, const char **ret) {
        json_t *v = body_get(r, field);
        if (!v) {
                if (required) {
                        reply_error(r, 400, "invalid_argument", field, "Field '%s' is required.", field);
                        return false;
                }
                return true;
        }
        if (!json_is_string(v)) {
                reply_error(r, 400, "invalid_argument", field, "Field '%s' must be a string.", field);
                return false;
        }
        const char *s = json_string_value(v);
        if (strlen(s) != json_string_length(v)) {
                reply_error(r, 400, "invalid_argument", field, "Field '%s' must not contain NUL characters.", field);
                return false;
        }
        if (json_string_length(v) > max_len) {
                reply_error(r, 400, "invalid_argument", field, "Field '%s' must be at most %zu characters long.", field, max_len);
                return false;
        }
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p < 0x20 && *p != '\n' && *p != '\t') {
                        reply_error(r, 400, "invalid_argument", field, "Field '%s' must not contain control characters.", field);
                        return false;
                }
        *ret = s;
        return true;
}

bool body_int(Req *r, const char *field, bool required, int64_t min, int64_t max, int64_t *ret) {
        json_t *v = body_get(r, field);
        if (!v) {
                if (required) {
                        reply_error(r, 400, "invalid_argument", field, "Field '%s' is required.", field);
                        return false;
                }
                return true;
        }
        if (!json_is_integer(v)) {
                reply_error(r, 400, "invalid_argument", field, "Field '%s' must be a whole number.", field);
                return false;
        }
        int64_t x = json_integer_value(v);
        if (x < min || x > max) {
                reply_error(r, 422, "out_of_range", field, "Field '%s' must be from %lld to %lld; %lld was given.", field,
                            (long long) min, (long long) max, (long long) x);
                return false;
        }
        *ret = x;
        return true;
}

bool body_bool(Req *r, const char *field, bool *ret) {
        json_t *v = body_get(r, field);
        if (!v)
                return true;
        if (!json_is_boolean(v)) {
                reply_error(r, 400, "invalid_argument", field, "Field '%s' must be true or false.", field);
                return false;
        }
        *ret = json_is_true(v);
        return true;
}

bool body_name(Req *r, const char *field, bool required, const char **ret) {
        const char *s = NULL;
        if (!body_string(r, field, required, 1024, &s))
                return false;
        if (!s)
                return true;
        const char *why = name_invalid_reason(s);
        if (why) {
                reply_error(r, 400, "invalid_argument", field, "Field '%s' (\"%.64s%s\") %s.", field, s, strlen(s) > 64 ? "..." : "", why);
                return false;
        }
        *ret = s;
        return true;
}

/* ------------------------------------------------------------------ */
/* authorization helpers */

size_t api_group_chain(Req *r, int64_t group_id, int64_t *chain) {
        return op_group_chain(r->api->st, group_id, chain);
}

OpCaller api_caller(Req *r) {
        return (OpCaller) {
                .subj = r->subj,
                .user_id = r->authed ? r->user.id : 0,
                .user_name = r->authed ? r->user.name : NULL,
                .role_name = r->authed ? r->user.role : NULL,
                .address = r->addr,
        };
}

void reply_result(Req *r, int e, const OpError *err, int status, json_t *body) {
        if (e < 0) {
                json_decref(body);
                return reply_op_error(r, err);
        }
        reply(r, status, body);
}

void reply_op_error(Req *r, const OpError *e) {
        if (e->status <= 0)
                return reply_error(r, 500, "internal", NULL, "The operation failed without saying why.");
        reply_error(r, e->status, e->code ? e->code : "internal", e->field[0] ? e->field : NULL, "%s", e->message);
}

bool api_allowed(Req *r, AuthAction a, AuthObjectKind k, int64_t owner_id, int64_t group_id) {
        OpCaller c = api_caller(r);
        return op_allowed(r->api->st, &c, a, k, owner_id, group_id);
}

bool api_allowed_some(Req *r, AuthAction a, AuthObjectKind k) {
        return auth_policy_allows_some(&r->subj, a, k);
}

void reply_vm_name_taken(Req *r, const char *field, const char *name) {
        OpCaller c = api_caller(r);
        OpError e;
        (void) inventory_vm_name_taken(r->api->inv, &c, field, name, &e);
        reply_op_error(r, &e);
}

bool api_job_visible(Req *r, json_t *job) {
        OpCaller c = api_caller(r);
        return op_job_visible(r->api->st, &c, job);
}

bool api_event_visible(Req *r, json_t *ev) {
        OpCaller c = api_caller(r);
        return op_event_visible(r->api->st, &c, ev);
}

void audit(Req *r, const char *action, const char *object_kind, int64_t object_id, const char *object_name,
           const char *detail, const char *result) {
        OpCaller c = api_caller(r);
        op_audit(r->api->st, &c, action, object_kind, object_id, object_name, detail, result);
}

bool api_vm_refuse_foreign(Req *r, json_t *v) {
        OpError e;
        if (inventory_vm_refuse_foreign(v, &e) == 0)
                return false;
        reply_op_error(r, &e);
        return true;
}

void deny(Req *r, const char *action, const char *object_kind, int64_t object_id, const char *object_name) {
        OpCaller c = api_caller(r);
        OpError e;
        (void) op_deny(r->api->st, &c, &e, action, object_kind, object_id, object_name);
        reply_op_error(r, &e);
}

/* ------------------------------------------------------------------ */
/* routing */

static const Route ROUTES_CORE[] = {
        { "GET", "/api/v1/version", h_version, true },
        { "POST", "/api/v1/sessions", h_session_create, true },
        { "GET", "/api/v1/sessions/current", h_session_get, false },
        { "DELETE", "/api/v1/sessions/current", h_session_delete, false },
        { "GET", "/api/v1/users", h_users_list, false },
        { "POST", "/api/v1/users", h_users_create, false },
        { "GET", "/api/v1/users/#", h_user_get, false },
        { "PATCH", "/api/v1/users/#", h_user_update, false },
        { "DELETE", "/api/v1/users/#", h_user_delete, false },
        { "GET", "/api/v1/host-groups", h_groups_list, false },
        { "POST", "/api/v1/host-groups", h_groups_create, false },
        { "GET", "/api/v1/host-groups/#", h_group_get, false },
        { "PATCH", "/api/v1/host-groups/#", h_group_update, false },
        { "DELETE", "/api/v1/host-groups/#", h_group_delete, false },
        { "GET", "/api/v1/hosts", h_hosts_list, false },
        { "POST", "/api/v1/hosts", h_hosts_create, false },
        { "GET", "/api/v1/hosts/#", h_host_get, false },
        { "PATCH", "/api/v1/hosts/#", h_host_update, false },
        { "DELETE", "/api/v1/hosts/#", h_host_delete, false },
        { "POST", "/api/v1/hosts/#/actions/*", h_host_action, false },
        { "GET", "/api/v1/vms", h_vms_list, false },
        { "POST", "/api/v1/vms", h_vms_create, false },
        { "GET", "/api/v1/vms/#", h_vm_get, false },
        { "PATCH", "/api/v1/vms/#", h_vm_update, false },
        { "DELETE", "/api/v1/vms/#", h_vm_delete, false },
        { "POST", "/api/v1/vms/#/actions/*", h_vm_action, false },
        { "GET", "/api/v1/jobs", h_jobs_list, false },
        { "GET", "/api/v1/jobs/#", h_job_get, false },
        { "POST", "/api/v1/jobs/#/actions/cancel", h_job_cancel, false },
        { "GET", "/api/v1/events", h_events_list, false },
        { "GET", "/api/v1/audit", h_audit_list, false },
        { NULL, NULL, NULL, false },
};

static const Route *const ROUTE_TABLES[] = {
        ROUTES_CORE, api_routes_stream, api_routes_place, api_routes_monitor, api_routes_library, api_routes_ha, api_routes_backup,
        api_routes_web, api_routes_list, api_routes_datastore, api_routes_snapshot, api_routes_replicate,
        /* issue 12: VM hardware and ISOs (api-hardware.c) */
        api_routes_hardware,
        api_routes_network, /* issue 12: networks, NICs, pools, volumes */
        api_routes_export,   /* issue 12: clone, export and import */
        api_routes_p2v,      /* issue 12: P2V */
        api_routes_manager,  /* issue 14: managers */
};

/* Matches path against pattern, filling r->id / r->word. */
static bool route_match(Req *r, const char *pattern, const char *path) {
        int ni = 0, nw = 0;
        const char *p = pattern, *s = path;
        while (*p && *s) {
                if (*p != '/' || *s != '/')
                        return false;
                p++, s++;
                size_t pl = strcspn(p, "/"), sl = strcspn(s, "/");
                if (pl == 1 && *p == '#') {
                        char buf[24];
                        if (sl == 0 || sl >= sizeof buf || ni >= API_MAX_PARAMS)
                                return false;
                        memcpy(buf, s, sl);
                        buf[sl] = 0;
                        if (parse_i64(buf, &r->id[ni]) < 0)
                                return false;
                        ni++;
                } else if (pl == 1 && *p == '*') {
                        if (sl == 0 || sl >= sizeof r->words[0] || nw >= API_MAX_PARAMS)
                                return false;
                        memcpy(r->words[nw], s, sl);
                        r->words[nw][sl] = 0;
                        r->word[nw] = r->words[nw];
                        nw++;
                } else if (pl != sl || strncmp(p, s, pl) != 0)
                        return false;
                p += pl, s += sl;
        }
        if (*s == '/' && s[1] == 0)
                s++;
        return *p == 0 && *s == 0;
}

void api_csrf_for(const char *token, char out[65]) {
        _cleanup_free_ char *s = xasprintf("csrf:%s", token);
        auth_token_hash(s, out);
}

void api_session_cookies(Req *r, const char *token, int max_age_s) {
        bool tls = r->api->cfg.tls_cert != NULL;
        char csrf[65] = "";
        if (token)
                api_csrf_for(token, csrf);
        for (int i = 0; i < 2; i++) free(r->set_cookie[i]);
        r->set_cookie[0] = xasprintf("%s=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Strict%s", API_SESSION_COOKIE,
                                     token ? token : "", token ? max_age_s : 0, tls ? "; Secure" : "");
        r->set_cookie[1] = xasprintf("%s=%s; Path=/; Max-Age=%d; SameSite=Strict%s", API_CSRF_COOKIE, csrf,
                                     token ? max_age_s : 0, tls ? "; Secure" : "");
}

static bool authenticate(Req *r) {
        const char *h = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Authorization");
        const char *token = NULL;
        if (h && strncasecmp(h, "Bearer ", 7) == 0) {
                token = h + 7;
                while (*token == ' ') token++;
        } else if (!h) {
                /* The web console: an HttpOnly cookie, and for anything but a
                 * read the CSRF token in a header (double submit). */
                token = MHD_lookup_connection_value(r->mc, MHD_COOKIE_KIND, API_SESSION_COOKIE);
                if (!token || strlen(token) != AUTH_TOKEN_LEN)
                        return false;
                if (!streq(r->method, "GET") && !streq(r->method, "HEAD")) {
                        const char *sent = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "X-CSRF-Token");
                        char want[65];
                        api_csrf_for(token, want);
                        if (!sent || strlen(sent) != 64 || sodium_memcmp(sent, want, 64) != 0)
                                return false;
                }
                r->by_cookie = true;
        }
        if (!token || strlen(token) != AUTH_TOKEN_LEN)
                return false;
        auth_token_hash(token, r->token_hash);
        StoreUser u;
        if (account_session_user(r->api->st, r->token_hash, &u) < 0)
                return false;
        return api_set_caller(r, &u) == 0;
}

int api_set_caller(Req *r, const StoreUser *u) {
        AuthRole role;
        if (auth_role_parse(u->role, &role) < 0)
                return -EINVAL;
        r->user = *u;
        r->subj = (AuthSubject) { .user_id = u->id, .role = role, .scopes = r->scopes };
        if (role == ROLE_DELEGATED_ADMIN) {
                int64_t *sc = NULL;
                int n = account_user_scopes(r->api->st, u->id, &sc);
                for (int i = 0; i < n && i < API_MAX_SCOPES; i++)
                        r->scopes[r->subj.n_scopes++] = sc[i];
                free(sc);
        }
        r->authed = true;
        return 0;
}

/* The web console is ES modules and a style sheet from armadad itself, with
 * no inline script or style element; scripts set styles through the CSSOM
 * (allowed), noVNC draws its cursor from data: URLs and talks to armadad
 * over a same-origin WebSocket, thumbnails and charts are same-origin. */
#define API_CSP_CONSOLE                                                                                  \
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "         \
        "font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; " \
        "frame-ancestors 'none'; object-src 'none'"
/* API answers are data, never a page to render. */
#define API_CSP_DATA "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

static void serve_static(Req *r) {
        const char *dir = r->api->cfg.web_dir;
        const char *rel = streq(r->path, "/") ? "/index.html" : r->path;
        if (!dir || strstr(rel, "..") || strlen(rel) > 200) {
                reply_error(r, 404, "not_found", NULL, "There is nothing at '%.200s'.", r->path);
                return;
        }
        _cleanup_free_ char *path = xasprintf("%s%s", dir, rel);
        char *data;
        size_t len;
        if (file_read_all(path, &data, &len) < 0) {
                reply_error(r, 404, "not_found", NULL, "There is nothing at '%.200s'.", r->path);
                return;
        }
        static const struct { const char *ext, *type; } types[] = {
                { ".html", "text/html; charset=utf-8" }, { ".js", "text/javascript; charset=utf-8" },
                { ".mjs", "text/javascript; charset=utf-8" }, { ".css", "text/css; charset=utf-8" },
                { ".png", "image/png" }, { ".svg", "image/svg+xml" }, { ".json", "application/json" },
        };
        r->content_type = "application/octet-stream";
        const char *dot = strrchr(rel, '.');
        for (size_t i = 0; dot && i < ELEMENTSOF(types); i++)
                if (streq(dot, types[i].ext)) r->content_type = types[i].type;
        r->status = 200;
        r->raw = data;
        r->raw_len = len;
        r->console_page = true;
}

static void dispatch(Req *r) {
        /* Everything but the API (and Prometheus's conventional /metrics) is a web file. */
        if (strncmp(r->path, "/api/", 5) != 0 && !streq(r->path, "/metrics")) {
                if (streq(r->method, "GET") || streq(r->method, "HEAD"))
                        serve_static(r);
                else
                        reply_error(r, 405, "method_not_allowed", NULL, "Method %s is not allowed on '%.200s'.", r->method, r->path);
                return;
        }
        if (r->too_big) {
                reply_error(r, 413, "too_large", NULL, "The request body is larger than the limit of %zu bytes.", r->api->cfg.max_body);
                return;
        }
        bool path_known = false;
        for (size_t t = 0; t < ELEMENTSOF(ROUTE_TABLES); t++)
        for (const Route *rt = ROUTE_TABLES[t]; rt->method; rt++) {
                memset(r->id, 0, sizeof r->id);
                if (!route_match(r, rt->pattern, r->path))
                        continue;
                path_known = true;
                if (!streq(rt->method, r->method))
                        continue;
                if (r->body.len > 0) {
                        json_error_t jerr;
                        r->json = json_loadb(r->body.s, r->body.len, JSON_REJECT_DUPLICATES, &jerr);
                        if (!r->json || !json_is_object(r->json)) {
                                if (r->json)
                                        reply_error(r, 400, "invalid_json", NULL, "The request body must be a JSON object.");
                                else
                                        reply_error(r, 400, "invalid_json", NULL, "The request body is not valid JSON: %s (line %d, column %d).",
                                                    jerr.text, jerr.line, jerr.column);
                                return;
                        }
                }
                if (!rt->public && !authenticate(r)) {
                        reply_error(r, 401, "unauthenticated", NULL, "Log in first: this needs a valid bearer token.");
                        return;
                }
                /* "?memory_mib=" is a mistake, never "the default". */
                if (!req_query_complete(r))
                        return;
                if (api_standby_refuse(r))
                        return;
                rt->fn(r);
                return;
        }
        if (path_known)
                reply_error(r, 405, "method_not_allowed", NULL, "Method %s is not allowed on '%.200s'.", r->method, r->path);
        else
                reply_error(r, 404, "not_found", NULL, "There is no API resource at '%.200s'.", r->path);
}

static enum MHD_Result send_reply(Req *r) {
        struct MHD_Response *resp;
        if (r->mhd_resp) {
                resp = r->mhd_resp;
                r->mhd_resp = NULL;
        } else if (r->raw) {
                resp = MHD_create_response_from_buffer(r->raw_len, r->raw, MHD_RESPMEM_MUST_FREE);
                r->raw = NULL;
        } else if (r->resp) {
                char *s = json_dumps(r->resp, JSON_COMPACT | JSON_ENSURE_ASCII);
                size_t n = strlen(s);
                s = xrealloc(s, n + 2);
                s[n] = '\n';
                s[n + 1] = 0;
                resp = MHD_create_response_from_buffer(n + 1, s, MHD_RESPMEM_MUST_FREE);
                r->content_type = "application/json";
        } else
                resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!resp)
                return MHD_NO;
        if (r->content_type)
                MHD_add_response_header(resp, "Content-Type", r->content_type);
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(resp, "X-Frame-Options", "DENY");
        MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
        MHD_add_response_header(resp, "Content-Security-Policy", r->console_page ? API_CSP_CONSOLE : API_CSP_DATA);
        if (r->api->cfg.tls_cert)
                MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
        for (int i = 0; i < 2; i++)
                if (r->set_cookie[i])
                        MHD_add_response_header(resp, "Set-Cookie", r->set_cookie[i]);
        for (size_t i = 0; i < ELEMENTSOF(r->hdr_name); i++)
                if (r->hdr_name[i])
                        MHD_add_response_header(resp, r->hdr_name[i], r->hdr_value[i]);
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        enum MHD_Result ret = MHD_queue_response(r->mc, (unsigned) r->status, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* ---- streaming uploads (library): the hook, see StreamPhase in api-priv.h ---- */

#define API_UPLOAD_IDLE_TIMEOUT_S 600u

/* On the first call of a request: when a .stream route matches, authenticates
 * and calls its handler with STREAM_BEGIN. */
static void stream_begin(Req *r) {
        for (size_t t = 0; t < ELEMENTSOF(ROUTE_TABLES); t++)
                for (const Route *rt = ROUTE_TABLES[t]; rt->method; rt++) {
                        if (!rt->stream || !streq(rt->method, r->method))
                                continue;
                        memset(r->id, 0, sizeof r->id);
                        if (!route_match(r, rt->pattern, r->path))
                                continue;
                        r->stream_route = rt;
                        if (!authenticate(r)) {
                                reply_error(r, 401, "unauthenticated", NULL, "Log in first: this needs a valid bearer token.");
                                return;
                        }
                        /* An authenticated upload may pause longer than the
                         * idle timeout meant for strangers: its last fsync of
                         * gigabytes, for one, happens before the answer. */
                        MHD_set_connection_option(r->mc, MHD_CONNECTION_OPTION_TIMEOUT, API_UPLOAD_IDLE_TIMEOUT_S);
                        r->stream_phase = STREAM_BEGIN;
                        rt->fn(r);
                        return;
                }
}

/* Later calls: a chunk (or the end) of a streamed body. */
static enum MHD_Result stream_step(Req *r, const char *data, size_t *size) {
        if (*size > 0) {
                if (!r->resp) {
                        r->stream_phase = STREAM_DATA;
                        r->upload = data;
                        r->upload_len = *size;
                        ((const Route *) r->stream_route)->fn(r);
                        r->upload = NULL;
                }
                *size = 0;
                return MHD_YES;
        }
        if (!r->resp) {
                r->stream_phase = STREAM_END;
                ((const Route *) r->stream_route)->fn(r);
        }
        return send_reply(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
        Api *api = cls;
        Req *r = *con_cls;
        if (!r) {
                r = xcalloc(1, sizeof *r);
                r->api = api;
                r->mc = mc;
                r->method = method;
                r->status = 500;
                snprintf(r->path, sizeof r->path, "%s", url);
                const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
                if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
                        inet_ntop(AF_INET, &((const struct sockaddr_in *) ci->client_addr)->sin_addr, r->addr, sizeof r->addr);
                *con_cls = r;
                stream_begin(r);
                return MHD_YES;
        }
        if (r->stream_route)
                return stream_step(r, upload_data, upload_data_size);
        if (*upload_data_size > 0) {
                if (r->body.len + *upload_data_size > api->cfg.max_body) {
                        r->too_big = true;
                        strbuf_free(&r->body);
                } else if (!r->too_big)
                        strbuf_appendn(&r->body, upload_data, *upload_data_size);
                *upload_data_size = 0;
                return MHD_YES;
        }
        dispatch(r);
        return send_reply(r);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe) {
        Req *r = *con_cls;
        if (!r)
                return;
        if (r->stream_route && r->stream_state) {
                r->stream_phase = STREAM_ABORT;
                ((const Route *) r->stream_route)->fn(r);
        }
        api_event_stream_closed(r);
        strbuf_free(&r->body);
        json_decref(r->json);
        json_decref(r->resp);
        free(r->raw);
        free(r->set_cookie[0]);
        free(r->set_cookie[1]);
        for (size_t i = 0; i < ELEMENTSOF(r->hdr_value); i++)
                free(r->hdr_value[i]);
        if (r->mhd_resp)
                MHD_destroy_response(r->mhd_resp);
        free(r);
        *con_cls = NULL;
}

/* ------------------------------------------------------------------ */

int api_new(Store *st, Jobs *jobs, Inventory *inv, const ApiConfig *cfg, Api **ret) {
        Api *api = xcalloc(1, sizeof *api);
        api->st = st;
        api->jobs = jobs;
        api->inv = inv;
        api->cfg = *cfg;
        if (!api->cfg.listen_addr) api->cfg.listen_addr = "127.0.0.1";
        if (api->cfg.token_ttl_s <= 0) api->cfg.token_ttl_s = 12 * 3600;
        if (api->cfg.max_body == 0) api->cfg.max_body = 1 << 20;
        if (api->cfg.threads == 0) api->cfg.threads = 4;
        if (api->cfg.per_ip_connections == 0) api->cfg.per_ip_connections = 64;
        if (api->cfg.idle_timeout_s == 0) api->cfg.idle_timeout_s = 15;
        pthread_mutex_init(&api->rate_lock, NULL);
        api->model = cfg->model;
        if (!api->model) {
                int r = model_new(st, &api->model);
                if (r < 0) {
                        pthread_mutex_destroy(&api->rate_lock);
                        free(api);
                        return r;
                }
                api->own_model = true;
        }
        if (random_bytes(&api->list_instance, sizeof api->list_instance) < 0)
                api->list_instance = (uint64_t) now_ms();
        *ret = api;
        return 0;
}

/* TLS 1.2 and 1.3 only, and only forward-secret AEAD suites: ECDHE key
 * exchange (TLS 1.3 is ECDHE/FFDHE by design) with AES-GCM or
 * ChaCha20-Poly1305; no CBC, no RSA key transport, no SHA-1 MACs. The
 * server's order wins. */
#define API_TLS_PRIORITIES                                                                      \
        "SECURE256:+SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:"   \
        "+AES-128-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:%SERVER_PRECEDENCE"

int api_start(Api *api) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) api->cfg.port) };
        if (inet_pton(AF_INET, api->cfg.listen_addr, &sa.sin_addr) != 1) {
                log_error("cannot listen on '%s': not an IPv4 address", api->cfg.listen_addr);
                return -EINVAL;
        }
        /* ALLOW_UPGRADE: the web console's VNC WebSocket (api-web.c);
         * ALLOW_SUSPEND_RESUME: event streams park their connection while
         * they wait (api-stream.c). */
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE |
                         MHD_ALLOW_SUSPEND_RESUME;
        bool tls = api->cfg.tls_cert && api->cfg.tls_key;
        if (tls) {
                if (file_read_all(api->cfg.tls_cert, &api->tls_cert_pem, NULL) < 0 ||
                    file_read_all(api->cfg.tls_key, &api->tls_key_pem, NULL) < 0) {
                        log_error("cannot read the TLS certificate '%s' or key '%s'", api->cfg.tls_cert, api->cfg.tls_key);
                        return -ENOENT;
                }
                flags |= MHD_USE_TLS;
        }
        /* One address may hold per_ip_connections connections, so a flood of
         * half-open ones from it cannot take all 512 from everyone else; and
         * a connection that sends nothing for idle_timeout_s (the headers it
         * never finishes, a keep-alive left open) is closed. The timeout is
         * of inactivity, not of the whole request: a long download or upload
         * that keeps moving is not cut, and the console's WebSocket, once
         * upgraded, is relayed by its own thread outside this timeout. */
        api->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, api,
                                    MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &sa,
                                    MHD_OPTION_THREAD_POOL_SIZE, api->cfg.threads,
                                    MHD_OPTION_NOTIFY_COMPLETED, on_completed, api,
                                    MHD_OPTION_CONNECTION_TIMEOUT, api->cfg.idle_timeout_s,
                                    MHD_OPTION_CONNECTION_LIMIT, (unsigned) 512,
                                    MHD_OPTION_PER_IP_CONNECTION_LIMIT, api->cfg.per_ip_connections,
                                    tls ? MHD_OPTION_HTTPS_PRIORITIES : MHD_OPTION_END, API_TLS_PRIORITIES,
                                    MHD_OPTION_HTTPS_MEM_CERT, api->tls_cert_pem,
                                    MHD_OPTION_HTTPS_MEM_KEY, api->tls_key_pem,
                                    MHD_OPTION_END);
        if (!api->mhd) {
                log_error("cannot listen on %s:%d (is the port in use?)", api->cfg.listen_addr, api->cfg.port);
                return -EADDRINUSE;
        }
        int r = api_streams_start(api);
        if (r < 0) {
                log_error("cannot start the event stream thread: %s", strerror(-r));
                MHD_stop_daemon(api->mhd);
                api->mhd = NULL;
                return r;
        }
        return 0;
}

int api_port(Api *api) {
        const union MHD_DaemonInfo *di = api->mhd ? MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_BIND_PORT) : NULL;
        return di ? di->port : api->cfg.port;
}

void api_stop(Api *api) {
        if (api && api->mhd) {
                api_streams_stop(api);
                MHD_stop_daemon(api->mhd);
                api->mhd = NULL;
        }
}

Api *api_free(Api *api) {
        if (!api)
                return NULL;
        api_stop(api);
        api_streams_free(api);
        free(api->tls_cert_pem);
        free(api->tls_key_pem);
        pthread_mutex_destroy(&api->rate_lock);
        if (api->own_model)
                model_free(api->model);
        free(api);
        return NULL;
}
