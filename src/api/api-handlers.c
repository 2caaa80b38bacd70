/* The REST resources of /api/v1: sessions, users, host groups, hosts, VMs,
 * jobs, events and audit. Every handler validates its input completely
 * before it changes anything, asks the policy, audits what it changed, and
 * hands anything that talks to a host to a job (202). */
#include "api-priv.h"
#include "hv/hv.h"
#include "inventory/placement.h"
#include "library/library.h"
#include "store/store-library.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#define LIMIT_MAX 1000

static const char *const NO_FIELDS[] = { NULL };

static json_t *items(json_t *arr) {
        return json_pack("{s:o}", "items", arr ? arr : json_array());
}


/* Keeps the items of arr the caller may read. kind decides how an item's
 * group and owner are found. */
typedef enum { VIS_GROUP, VIS_HOST, VIS_VM } VisKind;
static json_t *filter_visible(Req *r, json_t *arr, VisKind vk) {
        if (!arr || r->subj.role == ROLE_ADMIN || r->subj.role == ROLE_READ_ONLY)
                return arr;
        json_t *out = json_array();
        size_t i;
        json_t *it;
        json_array_foreach(arr, i, it) {
                bool ok = false;
                if (vk == VIS_GROUP)
                        ok = api_allowed(r, ACT_READ, OBJ_GROUP, 0, jget_int(it, "id"));
                else if (vk == VIS_HOST)
                        ok = api_allowed(r, ACT_READ, OBJ_HOST, 0, jget_int(it, "group_id"));
                else
                        ok = api_allowed(r, ACT_READ, OBJ_VM, jget_int(it, "owner_id"), jget_int(it, "group_id"));
                if (ok)
                        json_array_append(out, it);
        }
        json_decref(arr);
        return out;
}

/* The group an object of a job or event lives in, for the policy. */
static int64_t object_group(Req *r, const char *kind, int64_t id) {
        int64_t g = 0;
        if (!kind || id <= 0)
                return 0;
        if (streq(kind, "vm"))
                (void) store_query_i64(r->api->st, &g, "SELECT h.group_id FROM vm v JOIN host h ON h.id = v.host_id WHERE v.id = ?", "i", id);
        else if (streq(kind, "host"))
                (void) store_query_i64(r->api->st, &g, "SELECT group_id FROM host WHERE id = ?", "i", id);
        else if (streq(kind, "group"))
                g = id;
        return g;
}

bool api_job_visible(Req *r, json_t *job) {
        if (r->subj.role == ROLE_ADMIN || r->subj.role == ROLE_READ_ONLY)
                return true;
        if (jget_int(job, "owner_id") == r->user.id)
                return true;
        int64_t g = object_group(r, jget_str(job, "target_kind"), jget_int(job, "target_id"));
        return api_allowed(r, ACT_READ, OBJ_JOB, jget_int(job, "owner_id"), g);
}

bool api_event_visible(Req *r, json_t *ev) {
        if (r->subj.role == ROLE_ADMIN || r->subj.role == ROLE_READ_ONLY)
                return true;
        if (jget_int(ev, "owner_id") == r->user.id && r->user.id > 0)
                return true;
        if (r->subj.role != ROLE_DELEGATED_ADMIN)
                return false;
        int64_t g = object_group(r, jget_str(ev, "object_kind"), jget_int(ev, "object_id"));
        return g > 0 && api_allowed(r, ACT_READ, OBJ_EVENT, jget_int(ev, "owner_id"), g);
}

static json_t *job_json(Req *r, int64_t id) {
        json_t *j = store_job_get_json(r->api->st, id);
        return j ? j : json_null();
}

/* ------------------------------------------------------------------ */
/* version and sessions */

/* The features the web console may offer the caller: what armadad can do
 * (every capability of this build), each listed only when the caller's role
 * allows it on some object, so that a client never has to find out with
 * requests that fail. The server still decides every request. */
static json_t *session_features(Req *r) {
        static const struct {
                const char *name;
                AuthAction action;
                AuthObjectKind kind;
        } FEATURES[] = {
                { "hosts", ACT_READ, OBJ_HOST },           /* host groups and hosts */
                { "create-vm", ACT_CREATE, OBJ_VM },       /* POST /vms */
                { "operate-vm", ACT_OPERATE, OBJ_VM },     /* power actions and delete */
                { "console", ACT_OPERATE, OBJ_VM },        /* /vms/{id}/console */
                { "migrate", ACT_UPDATE, OBJ_VM },         /* /vms/{id}/migrate */
                { "operate-host", ACT_OPERATE, OBJ_HOST }, /* refresh */
                { "maintenance", ACT_OPERATE, OBJ_HOST },  /* /hosts/{id}/maintenance */
                { "ratings", ACT_READ, OBJ_GROUP },        /* /placement/ratings */
                { "metrics", ACT_READ, OBJ_VM },           /* /metrics/{kind}/{id} */
                { "health", ACT_READ, OBJ_VM },            /* /health */
                { "users", ACT_UPDATE, OBJ_SYSTEM },       /* /users, /grants */
                { "audit", ACT_READ, OBJ_SYSTEM },         /* /audit */
        };
        json_t *f = json_array();
        for (size_t i = 0; i < ELEMENTSOF(FEATURES); i++)
                if (api_allowed_some(r, FEATURES[i].action, FEATURES[i].kind))
                        json_array_append_new(f, json_string(FEATURES[i].name));
        /* Templates are readable by every role; self-service users reach
         * theirs through their grants (GET /self-service). */
        json_array_append_new(f, json_string("templates"));
        if (r->subj.role == ROLE_SELF_SERVICE)
                json_array_append_new(f, json_string("self-service"));
        return f;
}

void h_version(Req *r) {
        reply(r, 200, json_pack("{s:s, s:s}", "name", "armada", "version", "0.1.0"));
}

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[AUTH_HASH_MAX];
static void dummy_init(void) {
        if (auth_password_hash("armada-timing-equaliser", dummy_hash) < 0)
                dummy_hash[0] = 0;
}

void h_session_create(Req *r) {
        static const char *const fields[] = { "name", "password", "cookie", NULL };
        const char *name = NULL, *password = NULL;
        bool cookie = false;
        if (!req_body_fields(r, fields) || !body_string(r, "name", true, 64, &name) ||
            !body_string(r, "password", true, 1024, &password) || !body_bool(r, "cookie", &cookie))
                return;
        Api *api = r->api;
        char key_user[AUTH_RATE_KEY_MAX], key_addr[AUTH_RATE_KEY_MAX];
        auth_rate_key_user(name, r->addr, key_user);
        auth_rate_key_addr(r->addr, key_addr);
        /* Checked and counted as a failure in one step, so parallel attempts
         * cannot all pass the check before any of them is counted. */
        bool first_refusal;
        pthread_mutex_lock(&api->rate_lock);
        int64_t wait = auth_rate_begin(&api->rate, key_user, key_addr, mono_ms(), &first_refusal);
        pthread_mutex_unlock(&api->rate_lock);
        if (wait > 0) {
                /* Counted, but audited once per key and window: a flood of
                 * refused attempts must not fill the audit table. */
                __atomic_add_fetch(&api->login_rate_limited, 1, __ATOMIC_RELAXED);
                if (first_refusal)
                        audit(r, "session.create", "user", 0, name, "too many failed logins; further refusals in this window"
                              " are only counted (armada_login_rate_limited_total)", "denied");
                reply_error(r, 429, "rate_limited", NULL, "Too many failed logins; try again in %lld seconds.",
                            (long long) (wait + 999) / 1000);
                return;
        }
        StoreUser u;
        bool ok;
        if (store_user_find(api->st, name, &u) == 0)
                ok = auth_password_verify(u.password_hash, password);
        else {
                pthread_once(&dummy_once, dummy_init);
                (void) auth_password_verify(dummy_hash, password); /* same cost whether or not the user exists */
                ok = false;
        }
        pthread_mutex_lock(&api->rate_lock);
        auth_rate_finish(&api->rate, key_user, key_addr, ok, mono_ms());
        pthread_mutex_unlock(&api->rate_lock);
        if (!ok) {
                audit(r, "session.create", "user", 0, name, "wrong user name or password", "denied");
                reply_error(r, 401, "unauthenticated", NULL, "Wrong user name or password.");
                return;
        }
        char token[AUTH_TOKEN_LEN + 1], hash[65];
        auth_token_new(token, hash);
        int64_t expires = now_ms() + (int64_t) api->cfg.token_ttl_s * 1000;
        if (store_token_insert(api->st, u.id, hash, expires) < 0) {
                reply_error(r, 500, "internal", NULL, "Cannot record the session.");
                return;
        }
        (void) store_token_purge_expired(api->st, now_ms());
        if (api_set_caller(r, &u) < 0) {
                (void) store_token_delete(api->st, hash);
                reply_error(r, 500, "internal", NULL, "User '%s' has an unknown role '%s'.", u.name, u.role);
                return;
        }
        audit(r, "session.create", "user", u.id, u.name, NULL, "ok");
        char ts[32];
        time_format(expires, ts);
        json_t *body = json_pack("{s:s, s:s, s:{s:I, s:s, s:s}, s:o}", "token", token, "expires_at", ts, "user", "id",
                                 (json_int_t) u.id, "name", u.name, "role", u.role, "features", session_features(r));
        if (cookie) {
                /* The web console keeps the token in an HttpOnly cookie only. */
                char csrf[65];
                api_csrf_for(token, csrf);
                api_session_cookies(r, token, api->cfg.token_ttl_s);
                json_object_del(body, "token");
                json_object_set_new(body, "csrf_token", json_string(csrf));
        }
        reply(r, 201, body);
}

void h_session_get(Req *r) {
        reply(r, 200, json_pack("{s:{s:I, s:s, s:s}, s:o}", "user", "id", (json_int_t) r->user.id, "name", r->user.name, "role",
                                r->user.role, "features", session_features(r)));
}

void h_session_delete(Req *r) {
        (void) store_token_delete(r->api->st, r->token_hash);
        if (r->by_cookie)
                api_session_cookies(r, NULL, 0);
        audit(r, "session.delete", "user", r->user.id, r->user.name, NULL, "ok");
        reply(r, 204, NULL);
}

/* ------------------------------------------------------------------ */
/* users */

static bool parse_scopes(Req *r, json_t *arr, int64_t *ids, size_t *n) {
        *n = 0;
        if (!json_is_array(arr)) {
                reply_error(r, 400, "invalid_argument", "scopes", "Field 'scopes' must be an array of host-group paths.");
                return false;
        }
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
                if (!json_is_string(v) || i >= API_MAX_SCOPES) {
                        reply_error(r, 400, "invalid_argument", "scopes", "Field 'scopes' must be an array of at most %d host-group paths.",
                                    API_MAX_SCOPES);
                        return false;
                }
                const char *why = NULL;
                _cleanup_free_ char *p = store_group_path_normalize(json_string_value(v), &why);
                if (!p) {
                        reply_error(r, 400, "invalid_argument", "scopes", "Scope '%.200s' is not a valid host-group path: a segment %s.",
                                    json_string_value(v), why);
                        return false;
                }
                if (store_group_find(r->api->st, p, &ids[*n]) < 0) {
                        reply_error(r, 422, "not_found", "scopes", "Host group '%.200s' does not exist.", json_string_value(v));
                        return false;
                }
                (*n)++;
        }
        return true;
}

void h_users_list(Req *r) {
        if (!api_allowed(r, ACT_READ, OBJ_SYSTEM, 0, 0))
                return deny(r, "list", "users", 0, NULL);
        reply(r, 200, items(store_user_list(r->api->st, req_query(r, "name"))));
}

void h_users_create(Req *r) {
        static const char *const fields[] = { "name", "password", "role", "scopes", NULL };
        const char *name = NULL, *password = NULL, *role_s = "self-service";
        if (!api_allowed(r, ACT_CREATE, OBJ_SYSTEM, 0, 0))
                return deny(r, "create", "user", 0, NULL);
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &name) ||
            !body_string(r, "password", true, 1024, &password) || !body_string(r, "role", false, 64, &role_s))
                return;
        if (strlen(password) < 8)
                return reply_error(r, 422, "invalid_argument", "password", "Field 'password' must be at least 8 characters long.");
        AuthRole role;
        if (auth_role_parse(role_s, &role) < 0)
                return reply_error(r, 422, "invalid_argument", "role",
                                   "Field 'role' must be one of administrator, delegated-administrator, self-service, read-only.");
        int64_t scopes[API_MAX_SCOPES];
        size_t n_scopes = 0;
        json_t *sc = json_object_get(r->json, "scopes");
        if (sc && !parse_scopes(r, sc, scopes, &n_scopes))
                return;
        if (role == ROLE_DELEGATED_ADMIN && n_scopes == 0)
                return reply_error(r, 422, "invalid_argument", "scopes", "A delegated administrator needs at least one host group in 'scopes'.");
        char hash[AUTH_HASH_MAX];
        if (auth_password_hash(password, hash) < 0)
                return reply_error(r, 500, "internal", NULL, "Cannot hash the password.");
        int64_t id;
        int e = store_user_insert(r->api->st, name, hash, auth_role_name(role), &id);
        if (e == -EEXIST)
                return reply_error(r, 409, "conflict", "name", "A user named '%s' already exists.", name);
        if (e < 0)
                return reply_store_error(r, e, "the user");
        if (n_scopes && store_user_scopes_set(r->api->st, id, scopes, n_scopes) < 0) {
                (void) store_user_delete(r->api->st, id);
                return reply_error(r, 500, "internal", NULL, "Cannot record the scopes of user '%s'.", name);
        }
        audit(r, "user.create", "user", id, name, auth_role_name(role), "ok");
        reply(r, 201, store_user_get_json(r->api->st, id));
}

void h_user_get(Req *r) {
        if (r->id[0] != r->user.id && !api_allowed(r, ACT_READ, OBJ_SYSTEM, 0, 0))
                return deny(r, "read", "user", r->id[0], NULL);
        json_t *u = store_user_get_json(r->api->st, r->id[0]);
        if (!u)
                return reply_error(r, 404, "not_found", NULL, "There is no user with id %lld.", (long long) r->id[0]);
        reply(r, 200, u);
}

void h_user_update(Req *r) {
        static const char *const fields[] = { "password", "role", "scopes", NULL };
        const char *password = NULL, *role_s = NULL;
        if (!req_body_fields(r, fields) || !body_string(r, "password", false, 1024, &password) ||
            !body_string(r, "role", false, 64, &role_s))
                return;
        json_t *sc = json_object_get(r->json, "scopes");
        bool self_password_only = r->id[0] == r->user.id && !role_s && !sc;
        if (!self_password_only && !api_allowed(r, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return deny(r, "update", "user", r->id[0], NULL);
        StoreUser u;
        if (store_user_get(r->api->st, r->id[0], &u) < 0)
                return reply_error(r, 404, "not_found", NULL, "There is no user with id %lld.", (long long) r->id[0]);
        if (password && strlen(password) < 8)
                return reply_error(r, 422, "invalid_argument", "password", "Field 'password' must be at least 8 characters long.");
        AuthRole role;
        if (role_s && auth_role_parse(role_s, &role) < 0)
                return reply_error(r, 422, "invalid_argument", "role",
                                   "Field 'role' must be one of administrator, delegated-administrator, self-service, read-only.");
        int64_t scopes[API_MAX_SCOPES];
        size_t n_scopes = 0;
        if (sc && !parse_scopes(r, sc, scopes, &n_scopes))
                return;
        char hash[AUTH_HASH_MAX];
        if (password && auth_password_hash(password, hash) < 0)
                return reply_error(r, 500, "internal", NULL, "Cannot hash the password.");
        if (store_user_update(r->api->st, u.id, password ? hash : NULL, role_s ? auth_role_name(role) : NULL) < 0 ||
            (sc && store_user_scopes_set(r->api->st, u.id, scopes, n_scopes) < 0))
                return reply_error(r, 500, "internal", NULL, "Cannot update user '%s'.", u.name);
        if (password) /* a new password ends every other session */
                (void) store_exec(r->api->st, "DELETE FROM token WHERE user_id = ? AND token_hash <> ?", "is", u.id, r->token_hash);
        audit(r, "user.update", "user", u.id, u.name, password ? "password changed" : NULL, "ok");
        reply(r, 200, store_user_get_json(r->api->st, u.id));
}

void h_user_delete(Req *r) {
        if (!api_allowed(r, ACT_DELETE, OBJ_SYSTEM, 0, 0))
                return deny(r, "delete", "user", r->id[0], NULL);
        if (r->id[0] == r->user.id)
                return reply_error(r, 409, "conflict", NULL, "You cannot delete your own user.");
        StoreUser u;
        if (store_user_get(r->api->st, r->id[0], &u) < 0)
                return reply_error(r, 404, "not_found", NULL, "There is no user with id %lld.", (long long) r->id[0]);
        (void) store_user_delete(r->api->st, u.id);
        audit(r, "user.delete", "user", u.id, u.name, NULL, "ok");
        reply(r, 204, NULL);
}

/* ------------------------------------------------------------------ */
/* host groups */

static json_t *group_json(Req *r, int64_t id) {
        _cleanup_json_ json_t *g = store_group_get(r->api->st, id);
        if (!g)
                return NULL;
        _cleanup_json_ json_t *arr = store_group_list(r->api->st, jget_str(g, "path"));
        return arr && json_array_size(arr) ? json_incref(json_array_get(arr, 0)) : NULL;
}

void h_groups_list(Req *r) {
        const char *path = req_query(r, "path");
        _cleanup_free_ char *norm = NULL;
        if (path) {
                const char *why;
                norm = store_group_path_normalize(path, &why);
                if (!norm)
                        return reply_error(r, 400, "invalid_argument", "path", "Query 'path' is not a valid host-group path: a segment %s.", why);
        }
        reply(r, 200, items(filter_visible(r, store_group_list(r->api->st, norm), VIS_GROUP)));
}

void h_groups_create(Req *r) {
        static const char *const fields[] = { "path", "name", "parent_id", NULL };
        const char *path = NULL, *name = NULL;
        int64_t parent_id = 0;
        if (!req_body_fields(r, fields) || !body_string(r, "path", false, 1000, &path) || !body_name(r, "name", false, &name) ||
            !body_int(r, "parent_id", false, 1, INT64_MAX, &parent_id))
                return;
        _cleanup_free_ char *full = NULL;
        if (path && (name || parent_id))
                return reply_error(r, 400, "invalid_argument", "path", "Give either 'path' or 'name' with 'parent_id', not both.");
        if (path) {
                const char *why;
                full = store_group_path_normalize(path, &why);
                if (!full)
                        return reply_error(r, 400, "invalid_argument", "path", "Field 'path' (\"%.200s\") is not a valid host-group path: a segment %s.",
                                           path, why);
        } else if (name) {
                /* A parent the caller may not read does not exist for it: its
                 * path must not come back in an error. */
                _cleanup_json_ json_t *p = store_group_get(r->api->st, parent_id ? parent_id : STORE_ROOT_GROUP_ID);
                if (!p || (parent_id && !api_allowed(r, ACT_READ, OBJ_GROUP, 0, parent_id)))
                        return reply_error(r, 422, "not_found", "parent_id", "There is no host group with id %lld.", (long long) parent_id);
                full = jget_str(p, "path")[0] ? xasprintf("%s/%s", jget_str(p, "path"), name) : xstrdup(name);
        } else
                return reply_error(r, 400, "invalid_argument", "path", "Field 'path' is required.");
        if (!full[0])
                return reply_error(r, 409, "conflict", "path", "The root group 'All Hosts' always exists.");
        int64_t id;
        /* The policy decides on the deepest group that exists already,
         * before the caller learns whether the path itself exists. */
        int64_t anchor = STORE_ROOT_GROUP_ID;
        _cleanup_free_ char *prefix = xstrdup(full);
        for (char *slash = strrchr(prefix, '/'); slash; slash = strrchr(prefix, '/')) {
                *slash = 0;
                if (store_group_find(r->api->st, prefix, &anchor) == 0)
                        break;
                anchor = STORE_ROOT_GROUP_ID;
        }
        if (!api_allowed(r, ACT_CREATE, OBJ_GROUP, 0, anchor))
                return deny(r, "create", "host group", 0, full);
        if (store_group_find(r->api->st, full, &id) == 0)
                return reply_error(r, 409, "conflict", "path", "Host group '%s' already exists.", full);
        bool created;
        int e = store_group_create_path(r->api->st, full, &id, &created);
        if (e < 0)
                return reply_store_error(r, e, "the host group");
        audit(r, "group.create", "group", id, full, NULL, "ok");
        reply(r, 201, group_json(r, id));
}

void h_group_get(Req *r) {
        json_t *g = group_json(r, r->id[0]);
        if (!g || !api_allowed(r, ACT_READ, OBJ_GROUP, 0, r->id[0])) {
                json_decref(g);
                return reply_error(r, 404, "not_found", NULL, "There is no host group with id %lld.", (long long) r->id[0]);
        }
        reply(r, 200, g);
}

void h_group_update(Req *r) {
        static const char *const fields[] = { "name", "parent_id", NULL };
        const char *name = NULL;
        int64_t parent_id = 0;
        if (!req_body_fields(r, fields) || !body_name(r, "name", false, &name) || !body_int(r, "parent_id", false, 1, INT64_MAX, &parent_id))
                return;
        int64_t id = r->id[0];
        _cleanup_json_ json_t *g = store_group_get(r->api->st, id);
        if (!g || !api_allowed(r, ACT_READ, OBJ_GROUP, 0, id))
                return reply_error(r, 404, "not_found", NULL, "There is no host group with id %lld.", (long long) id);
        if (!api_allowed(r, ACT_UPDATE, OBJ_GROUP, 0, id))
                return deny(r, "change", "host group", id, jget_str(g, "path")[0] ? jget_str(g, "path") : STORE_ROOT_GROUP_NAME);
        if (id == STORE_ROOT_GROUP_ID)
                return reply_error(r, 409, "conflict", NULL, "The root group 'All Hosts' cannot be renamed or moved.");
        if (parent_id) {
                _cleanup_json_ json_t *p = store_group_get(r->api->st, parent_id);
                if (!p || !api_allowed(r, ACT_READ, OBJ_GROUP, 0, parent_id))
                        return reply_error(r, 422, "not_found", "parent_id", "There is no host group with id %lld.", (long long) parent_id);
                if (!api_allowed(r, ACT_CREATE, OBJ_GROUP, 0, parent_id))
                        return deny(r, "move into", "host group", parent_id, jget_str(p, "path"));
        }
        int e = 0;
        if (name) {
                e = store_group_rename(r->api->st, id, name);
                if (e == -EEXIST)
                        return reply_error(r, 409, "conflict", "name", "A sibling group named '%s' already exists.", name);
                if (e < 0)
                        return reply_store_error(r, e, "the host group");
        }
        if (parent_id) {
                e = store_group_move(r->api->st, id, parent_id);
                if (e == -ELOOP)
                        return reply_error(r, 422, "invalid_argument", "parent_id", "A host group cannot be moved inside itself.");
                if (e == -EEXIST)
                        return reply_error(r, 409, "conflict", "parent_id", "The new parent already has a group named '%s'.", jget_str(g, "name"));
                if (e < 0)
                        return reply_store_error(r, e, "the host group");
        }
        json_t *after = group_json(r, id);
        audit(r, "group.update", "group", id, jget_str(after, "path"), name ? "renamed" : "moved", "ok");
        reply(r, 200, after);
}

void h_group_delete(Req *r) {
        int64_t id = r->id[0];
        _cleanup_json_ json_t *g = group_json(r, id);
        if (!g || !api_allowed(r, ACT_READ, OBJ_GROUP, 0, id))
                return reply_error(r, 404, "not_found", NULL, "There is no host group with id %lld.", (long long) id);
        if (!api_allowed(r, ACT_DELETE, OBJ_GROUP, 0, id))
                return deny(r, "delete", "host group", id, jget_str(g, "path")[0] ? jget_str(g, "path") : STORE_ROOT_GROUP_NAME);
        if (id == STORE_ROOT_GROUP_ID)
                return reply_error(r, 409, "conflict", NULL, "The root group 'All Hosts' cannot be deleted.");
        int e = store_group_delete(r->api->st, id);
        if (e == -ENOTEMPTY)
                return reply_error(r, 409, "conflict", NULL, "Host group '%s' is not empty: it has %lld hosts and %lld child groups.",
                                   jget_str(g, "path"), (long long) jget_int(g, "n_hosts"), (long long) jget_int(g, "n_children"));
        if (e < 0)
                return reply_store_error(r, e, "the host group");
        audit(r, "group.delete", "group", id, jget_str(g, "path"), NULL, "ok");
        reply(r, 204, NULL);
}

/* ------------------------------------------------------------------ */
/* hosts */

/* The pool directory a host gets: Armada's own pool is created (and
 * filled) there by libvirt as root, so it stays out of the system's
 * directories; letters, digits and "/._-" keep it out of XML and logs'
 * way. Replies 400 and returns false when refused; *ret is malloc'd. */
static bool pool_path_ok(Req *r, const char *path, char **ret) {
        char why[128];
        if (strspn(path, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._-") != strlen(path)) {
                reply_error(r, 400, "invalid_argument", "pool_path",
                            "Field 'pool_path' must be an absolute path of letters, digits, '/', '.', '_' and '-'.");
                return false;
        }
        if (path_outside_system_normalize(path, ret, why, sizeof why) < 0) {
                reply_error(r, 400, "invalid_argument", "pool_path",
                            "Field 'pool_path' (\"%.200s\") %s; give an absolute directory without '..', outside /, /etc,"
                            " /usr, /boot, /proc, /sys and /dev.", path, why);
                return false;
        }
        return true;
}

void h_hosts_list(Req *r) {
        api_list_hosts(r);
}

#define THROTTLE_MAX 1000

/* A host's throttle field: absent leaves *ret (-1: keep), null clears it
 * (0: armadad's default applies), else a whole number 1..THROTTLE_MAX. */
static bool body_throttle(Req *r, const char *field, int64_t *ret) {
        json_t *v = r->json ? json_object_get(r->json, field) : NULL;
        if (v && json_is_null(v)) {
                *ret = 0;
                return true;
        }
        return body_int(r, field, false, 1, THROTTLE_MAX, ret);
}

void h_hosts_create(Req *r) {
        static const char *const fields[] = { "name", "uri", "group", "pool", "pool_path", "max_parallel_starts",
                                              "max_parallel_disk_ops", NULL };
        const char *name = NULL, *uri = NULL, *group = NULL, *pool = "armada", *pool_path = "/var/lib/libvirt/images/armada";
        int64_t max_starts = -1, max_disk = -1;
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &name) || !body_string(r, "uri", true, 500, &uri) ||
            !body_string(r, "group", false, 1000, &group) || !body_name(r, "pool", false, &pool) ||
            !body_string(r, "pool_path", false, 500, &pool_path) || !body_throttle(r, "max_parallel_starts", &max_starts) ||
            !body_throttle(r, "max_parallel_disk_ops", &max_disk))
                return;
        char refused[512];
        if (hv_uri_check(uri, r->api->cfg.allow_test_hosts, refused, sizeof refused) < 0)
                return reply_error(r, 400, "invalid_argument", "uri",
                                   "Field 'uri' (\"%.200s\") is refused: %s. A host URI looks like qemu+tcp://10.0.0.2/system,"
                                   " qemu+ssh://root@kvm2/system?keyfile=/path or qemu:///system.", uri, refused);
        _cleanup_free_ char *pool_dir = NULL;
        if (!pool_path_ok(r, pool_path, &pool_dir))
                return;
        int64_t group_id = STORE_ROOT_GROUP_ID;
        if (group) {
                const char *why;
                _cleanup_free_ char *g = store_group_path_normalize(group, &why);
                if (!g)
                        return reply_error(r, 400, "invalid_argument", "group", "Field 'group' is not a valid host-group path: a segment %s.", why);
                if (store_group_find(r->api->st, g, &group_id) < 0)
                        return reply_error(r, 422, "not_found", "group", "Host group '%.200s' does not exist.", group);
        }
        if (!api_allowed(r, ACT_CREATE, OBJ_HOST, 0, group_id))
                return deny(r, "add", "host", 0, name);
        /* One hypervisor, one host record: a second record would see every
         * VM "on two hosts". The same URI is caught here; another URI to the
         * same libvirtd when host.refresh first connects (host UUID). */
        int64_t id;
        if (store_host_find(r->api->st, name, &id) == 0)
                return reply_error(r, 409, "conflict", "name", "A host named '%s' already exists.", name);
        StoreHost same;
        if (inventory_host_by_uri(r->api->inv, uri, &same) == 0) {
                if (api_allowed(r, ACT_READ, OBJ_HOST, 0, same.group_id))
                        return reply_error(r, 409, "conflict", "uri", "Host '%s' already has the URI '%s'; a hypervisor can be registered"
                                           " only once.", same.name, same.uri);
                return reply_error(r, 409, "conflict", "uri", "Another host already has this URI; a hypervisor can be registered only once.");
        }
        int e = store_host_insert(r->api->st, name, uri, group_id, pool, pool_dir, &id);
        if (e == -EEXIST)
                return reply_error(r, 409, "conflict", "name", "A host named '%s' already exists.", name);
        if (e < 0)
                return reply_store_error(r, e, "the host");
        if ((max_starts > 0 || max_disk > 0) && (e = store_host_set_throttle(r->api->st, id, (int) max_starts, (int) max_disk)) < 0) {
                (void) store_host_delete(r->api->st, id, false);
                return reply_store_error(r, e, "the host");
        }
        int64_t job;
        if (jobs_submit(r->api->jobs, "host.refresh", "host", id, name, r->user.id, NULL, &job) < 0) {
                (void) store_host_delete(r->api->st, id, false);
                return reply_error(r, 500, "internal", NULL, "Cannot queue the job that connects host '%s'.", name);
        }
        audit(r, "host.add", "host", id, name, uri, "ok");
        reply(r, 202, json_pack("{s:o, s:o}", "host", store_host_get_json(r->api->st, id), "job", job_json(r, job)));
}

static json_t *host_visible(Req *r, int64_t id) {
        json_t *h = store_host_get_json(r->api->st, id);
        if (h && !api_allowed(r, ACT_READ, OBJ_HOST, 0, jget_int(h, "group_id"))) {
                json_decref(h);
                h = NULL;
        }
        if (!h)
                reply_error(r, 404, "not_found", NULL, "There is no host with id %lld.", (long long) id);
        return h;
}

void h_host_get(Req *r) {
        json_t *h = host_visible(r, r->id[0]);
        if (h)
                reply(r, 200, h);
}

void h_host_update(Req *r) {
        static const char *const fields[] = { "max_parallel_starts", "max_parallel_disk_ops", NULL };
        _cleanup_json_ json_t *h = host_visible(r, r->id[0]);
        if (!h)
                return;
        int64_t max_starts = -1, max_disk = -1;
        if (!req_body_fields(r, fields) || !body_throttle(r, "max_parallel_starts", &max_starts) ||
            !body_throttle(r, "max_parallel_disk_ops", &max_disk))
                return;
        if (!api_allowed(r, ACT_UPDATE, OBJ_HOST, 0, jget_int(h, "group_id")))
                return deny(r, "change", "host", r->id[0], jget_str(h, "name"));
        int e = store_host_set_throttle(r->api->st, r->id[0], (int) max_starts, (int) max_disk);
        if (e < 0)
                return reply_store_error(r, e, "the host");
        _cleanup_free_ char *detail = xasprintf("max_parallel_starts=%lld max_parallel_disk_ops=%lld (-1 unchanged, 0 default)",
                                                (long long) max_starts, (long long) max_disk);
        audit(r, "host.update", "host", r->id[0], jget_str(h, "name"), detail, "ok");
        reply(r, 200, store_host_get_json(r->api->st, r->id[0]));
}

void h_host_delete(Req *r) {
        _cleanup_json_ json_t *h = host_visible(r, r->id[0]);
        if (!h)
                return;
        const char *force_s = req_query(r, "force");
        bool force = force_s && (streq(force_s, "true") || streq(force_s, "1"));
        if (!api_allowed(r, ACT_DELETE, OBJ_HOST, 0, jget_int(h, "group_id")))
                return deny(r, "remove", "host", r->id[0], jget_str(h, "name"));
        int n = store_vm_count_on_host(r->api->st, r->id[0]);
        if (n > 0 && !force)
                return reply_error(r, 409, "conflict", NULL,
                                   "Host '%s' still has %d VMs; delete or move them first, or remove the host with force"
                                   " (query force=true, CLI --force: Armada then forgets those VMs; they keep running on the host).", jget_str(h, "name"), n);
        int e = store_host_delete(r->api->st, r->id[0], force);
        if (e < 0)
                return reply_store_error(r, e, "the host");
        inventory_forget_host(r->api->inv, r->id[0]);
        audit(r, "host.remove", "host", r->id[0], jget_str(h, "name"), force ? "forced" : NULL, "ok");
        reply(r, 204, NULL);
}

void h_host_action(Req *r) {
        _cleanup_json_ json_t *h = host_visible(r, r->id[0]);
        if (!h)
                return;
        if (!streq(r->word[0], "refresh"))
                return reply_error(r, 404, "not_found", NULL, "Hosts have no action '%s'; the actions are: refresh.", r->word[0]);
        if (!req_body_fields(r, NO_FIELDS))
                return;
        if (!api_allowed(r, ACT_OPERATE, OBJ_HOST, 0, jget_int(h, "group_id")))
                return deny(r, "refresh", "host", r->id[0], jget_str(h, "name"));
        int64_t job;
        if (jobs_submit(r->api->jobs, "host.refresh", "host", r->id[0], jget_str(h, "name"), r->user.id, NULL, &job) < 0)
                return reply_error(r, 500, "internal", NULL, "Cannot queue the job.");
        audit(r, "host.refresh", "host", r->id[0], jget_str(h, "name"), NULL, "accepted");
        reply(r, 202, json_pack("{s:o}", "job", job_json(r, job)));
}

/* ------------------------------------------------------------------ */
/* VMs */

#define VM_CPUS_MAX 256
#define VM_MEMORY_MIN_MIB 16
#define VM_MEMORY_MAX_MIB (4LL << 20)       /* 4 TiB */
#define VM_DISK_MIN_BYTES (1LL << 20)
#define VM_DISK_MAX_BYTES (64LL << 40)      /* 64 TiB */

void h_vms_list(Req *r) {
        api_list_vms(r);
}

/* The host of a new VM and its row, decided with the placement lock held
 * (h_vms_create takes it): placement's choice, or the named host checked
 * for memory, then the insert of the row in state 'creating', so that VMs
 * created at once never share the same free room. true with *ret_id, *h
 * and *placement (auto-placement only); false with the reply sent, or with
 * *ret_denied set when the policy refuses the host h: the refusal is
 * audited after the lock is given up, so the rollback keeps its record. */
static bool vm_create_locked(Req *r, const char *name, const char *group, const char *host, int64_t host_id, bool force, int64_t cpus,
                             int64_t memory, int64_t disk_bytes, const char *descr, StoreHost *h, json_t **placement,
                             int64_t *ret_id, bool *ret_denied) {
        /* Without a host, placement picks the best-rated host in the group. */
        bool chosen = false;
        if (!host_id) {
                if (!api_place_new_vm(r, group, name, cpus, memory, disk_bytes, &host_id, placement))
                        return false;
                chosen = true;
        }
        if (store_host_get(r->api->st, host_id, h) < 0) {
                reply_error(r, 422, "not_found", "host_id", "There is no host with id %lld.", (long long) host_id);
                return false;
        }
        if (!api_allowed(r, ACT_READ, OBJ_HOST, 0, h->group_id)) {
                /* Name it as the caller did: a host given by id keeps its name. */
                if (host)
                        reply_error(r, 422, "not_found", "host", "There is no host named '%.64s'.", host);
                else
                        reply_error(r, 422, "not_found", "host_id", "There is no host with id %lld.", (long long) host_id);
                return false;
        }
        if (group && !chosen) {
                /* A host and a group: the host must be in the group's subtree. */
                const char *why = NULL;
                _cleanup_free_ char *norm = store_group_path_normalize(group, &why);
                int64_t gid = 0, chain[64];
                if (!norm) {
                        reply_error(r, 400, "invalid_argument", "group", "Field 'group' (\"%.200s\") is not a valid host-group path: a segment %s.",
                                    group, why);
                        return false;
                }
                if (store_group_find(r->api->st, norm, &gid) < 0 || !api_allowed(r, ACT_READ, OBJ_GROUP, 0, gid)) {
                        reply_error(r, 422, "not_found", "group", "There is no host group '%.200s'.", group);
                        return false;
                }
                int nc = store_group_chain(r->api->st, h->group_id, chain, 64);
                bool inside = false;
                for (int i = 0; i < nc; i++)
                        inside = inside || chain[i] == gid;
                if (!inside) {
                        reply_error(r, 422, "invalid_argument", "group", "Host '%s' is not in host group '%.200s'.", h->name, group);
                        return false;
                }
        }
        if (!api_allowed(r, ACT_CREATE, OBJ_VM, r->user.id, h->group_id)) {
                *ret_denied = true; /* the caller denies (and audits) once the lock is given up */
                return false;
        }
        if (streq(h->state, "maintenance")) {
                reply_error(r, 409, "conflict", "host", "Host '%s' is in maintenance mode; new VMs cannot be placed on it.", h->name);
                return false;
        }
        if (streq(h->state, "unreachable") || streq(h->state, "not-responding")) {
                reply_error(r, 409, "conflict", "host", "Host '%s' is %s; the VM cannot be created there now.", h->name,
                            streq(h->state, "unreachable") ? "unreachable" : "not responding");
                return false;
        }
        if (!chosen && !api_place_check_host(r, h, name, cpus, memory, disk_bytes, force))
                return false;

        StoreVm vm = { .host_id = h->id, .owner_id = r->user.id, .cpus = (unsigned) cpus, .memory_mib = (uint64_t) memory };
        uuid_generate(vm.uuid);
        snprintf(vm.name, sizeof vm.name, "%s", name);
        snprintf(vm.state, sizeof vm.state, "creating");
        snprintf(vm.origin, sizeof vm.origin, "created");
        snprintf(vm.description, sizeof vm.description, "%s", descr ? descr : "");
        int e = store_vm_insert(r->api->st, &vm, ret_id);
        if (e == -EEXIST) {
                reply_vm_name_taken(r, "name", name);
                return false;
        }
        if (e < 0) {
                reply_store_error(r, e, "the VM");
                return false;
        }
        return true;
}

void h_vms_create(Req *r) {
        static const char *const fields[] = { "name", "host", "host_id", "group", "cpus", "memory_mib", "disk_size", "disk_bytes",
                                              "domain_type", "description", "start", "force", NULL };
        const char *name = NULL, *host = NULL, *group = NULL, *disk_size = NULL, *dtype = "auto", *descr = NULL;
        int64_t host_id = 0, cpus = 1, memory = 512, disk_bytes = 0;
        bool start = false, force = false;
        /* Read-only and self-service users create VMs nowhere (self-service
         * ones deploy templates): refuse before names, hosts or placement
         * could tell them about VMs and hosts they do not see. */
        if (!api_allowed_some(r, ACT_CREATE, OBJ_VM))
                return deny(r, "create", "VMs", 0, NULL);
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &name) || !body_string(r, "host", false, 1024, &host) ||
            !body_string(r, "group", false, 1000, &group) ||
            !body_int(r, "host_id", false, 1, INT64_MAX, &host_id) || !body_int(r, "cpus", false, 1, VM_CPUS_MAX, &cpus) ||
            !body_int(r, "memory_mib", false, VM_MEMORY_MIN_MIB, VM_MEMORY_MAX_MIB, &memory) ||
            !body_string(r, "disk_size", false, 32, &disk_size) ||
            !body_int(r, "disk_bytes", false, VM_DISK_MIN_BYTES, VM_DISK_MAX_BYTES, &disk_bytes) ||
            !body_string(r, "domain_type", false, 8, &dtype) || !body_string(r, "description", false, 1000, &descr) ||
            !body_bool(r, "start", &start) || !body_bool(r, "force", &force))
                return;
        if (disk_size) {
                uint64_t b;
                if (disk_bytes)
                        return reply_error(r, 400, "invalid_argument", "disk_size", "Give either 'disk_size' or 'disk_bytes', not both.");
                if (size_parse(disk_size, 1ULL << 30, &b) < 0)
                        return reply_error(r, 400, "invalid_argument", "disk_size",
                                           "Field 'disk_size' (\"%s\") must be a size such as 512M, 20G or 1T.", disk_size);
                if (b < (uint64_t) VM_DISK_MIN_BYTES || b > (uint64_t) VM_DISK_MAX_BYTES)
                        return reply_error(r, 422, "out_of_range", "disk_size", "Field 'disk_size' must be from 1M to 64T; %s was given.", disk_size);
                disk_bytes = (int64_t) b;
        }
        if (!streq(dtype, "auto") && !streq(dtype, "kvm") && !streq(dtype, "qemu"))
                return reply_error(r, 400, "invalid_argument", "domain_type", "Field 'domain_type' must be auto, kvm or qemu.");
        /* Forcing a VM onto a host without the memory is an administrator's
         * call: it can starve the VMs already there. */
        if (force && r->subj.role != ROLE_ADMIN) {
                audit(r, "vm.create", "vm", 0, name, "force", "denied");
                return reply_error(r, 403, "forbidden", "force", "User '%s' (%s) may not force a VM onto a host; only an administrator may.",
                                   r->user.name, r->user.role);
        }
        if (force && !host && !host_id)
                return reply_error(r, 400, "invalid_argument", "force", "Field 'force' only applies together with 'host' or 'host_id'.");
        int64_t existing;
        if (store_vm_find(r->api->st, name, &existing) == 0)
                return reply_vm_name_taken(r, "name", name);
        if (host && store_host_find(r->api->st, host, &host_id) < 0)
                return reply_error(r, 422, "not_found", "host", "There is no host named '%.64s'.", host);

        StoreHost h;
        _cleanup_json_ json_t *placement = NULL;
        int64_t id = 0;
        int e = placement_lock(r->api->st);
        if (e < 0)
                return reply_error(r, 503, "busy", NULL, "The database is busy; try creating VM '%s' again.", name);
        bool denied = false;
        bool ok = vm_create_locked(r, name, group, host, host_id, force, cpus, memory, disk_bytes, descr, &h, &placement, &id, &denied);
        e = placement_unlock(r->api->st, ok ? 0 : -ECANCELED);
        if (denied)
                return deny(r, "create VMs on", "host", h.id, h.name);
        if (!ok)
                return;
        if (e < 0)
                return reply_error(r, 500, "internal", NULL, "Cannot record VM '%s'.", name);

        json_t *params = json_pack("{s:I, s:s, s:b}", "disk_bytes", (json_int_t) disk_bytes, "domain_type", dtype, "start", start);
        if (placement)
                json_object_set(params, "placement", placement);
        int64_t job;
        e = jobs_submit(r->api->jobs, "vm.create", "vm", id, name, r->user.id, params, &job);
        json_decref(params);
        if (e < 0) {
                (void) store_vm_delete(r->api->st, id);
                return reply_error(r, 500, "internal", NULL, "Cannot queue the job that creates VM '%s'.", name);
        }
        _cleanup_free_ char *detail = placement ? xasprintf("%s (chosen by placement, rating %.2f)", h.name,
                                                            json_real_value(json_object_get(placement, "rating")))
                                                : force ? xasprintf("%s (forced)", h.name) : NULL;
        audit(r, "vm.create", "vm", id, name, detail ? detail : h.name, "accepted");
        if (placement) {
                _cleanup_free_ char *msg = xasprintf("Placement chose host '%s' for VM '%s' in group '%s' (rating %.2f, %.1f of 5 stars).",
                                                     h.name, name, json_string_value(json_object_get(placement, "group")),
                                                     json_real_value(json_object_get(placement, "rating")),
                                                     json_real_value(json_object_get(placement, "stars")));
                (void) store_event_add(r->api->st, "info", "vm.placed", "vm", id, name, r->user.id, msg);
        }
        json_t *vmj = store_vm_get_json(r->api->st, id);
        if (vmj && placement)
                json_object_set(vmj, "placement", placement);
        reply(r, 202, json_pack("{s:o, s:o, s:O?}", "vm", vmj ? vmj : json_null(), "job", job_json(r, job), "placement", placement));
}

/* A self-service user acts on a VM deployed under a grant only as far as
 * that grant's actions allow (other roles, and VMs without a grant, are
 * decided by the policy alone). */
static bool grant_allows(Req *r, int64_t vm_id, const char *action) {
        if (r->subj.role != ROLE_SELF_SERVICE)
                return true;
        int64_t grant_id = 0;
        if (store_vm_grant(r->api->st, vm_id, &grant_id) < 0 || grant_id == 0)
                return true;
        _cleanup_json_ json_t *g = store_grant_get_json(r->api->st, grant_id);
        return g && library_actions_allow(jget_str(g, "actions"), action);
}

static json_t *vm_visible(Req *r, int64_t id) {
        json_t *v = store_vm_get_json(r->api->st, id);
        if (v && !api_allowed(r, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id"))) {
                json_decref(v);
                v = NULL;
        }
        if (!v)
                reply_error(r, 404, "not_found", NULL, "There is no VM with id %lld.", (long long) id);
        return v;
}

void h_vm_get(Req *r) {
        json_t *v = vm_visible(r, r->id[0]);
        if (v)
                reply(r, 200, v);
}

void h_vm_delete(Req *r) {
        _cleanup_json_ json_t *v = vm_visible(r, r->id[0]);
        if (!v)
                return;
        if (!api_allowed(r, ACT_DELETE, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")) || !grant_allows(r, r->id[0], "delete"))
                return deny(r, "delete", "VM", r->id[0], jget_str(v, "name"));
        if (api_vm_refuse_foreign(r, v))
                return;
        const char *keep_s = req_query(r, "keep_disks");
        if (keep_s && !streq(keep_s, "true") && !streq(keep_s, "false") && !streq(keep_s, "1") && !streq(keep_s, "0"))
                return reply_error(r, 400, "invalid_argument", "keep_disks", "Query 'keep_disks' must be true or false.");
        bool keep = keep_s && (streq(keep_s, "true") || streq(keep_s, "1"));
        json_t *params = json_pack("{s:b}", "keep_disks", keep);
        int64_t job;
        int e = jobs_submit(r->api->jobs, "vm.delete", "vm", r->id[0], jget_str(v, "name"), r->user.id, params, &job);
        json_decref(params);
        if (e < 0)
                return reply_error(r, 500, "internal", NULL, "Cannot queue the job.");
        audit(r, "vm.delete", "vm", r->id[0], jget_str(v, "name"), keep ? "keep disks" : NULL, "accepted");
        reply(r, 202, json_pack("{s:o}", "job", job_json(r, job)));
}

void h_vm_action(Req *r) {
        static const char *const actions[] = { "start", "stop", "kill", "pause", "resume" };
        static const char *const fields[] = { "timeout_s", "force", NULL };
        _cleanup_json_ json_t *v = vm_visible(r, r->id[0]);
        if (!v)
                return;
        const char *action = NULL;
        for (size_t i = 0; i < ELEMENTSOF(actions); i++)
                if (streq(r->word[0], actions[i])) action = actions[i];
        if (!action)
                return reply_error(r, 404, "not_found", NULL, "VMs have no action '%s'; the actions are start, stop, kill, pause, resume.",
                                   r->word[0]);
        int64_t timeout = 0;
        bool force = true;
        if (!req_body_fields(r, streq(action, "stop") ? fields : NO_FIELDS) || !body_int(r, "timeout_s", false, 1, 3600, &timeout) ||
            !body_bool(r, "force", &force))
                return;
        if (!api_allowed(r, ACT_OPERATE, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")) || !grant_allows(r, r->id[0], action))
                return deny(r, action, "VM", r->id[0], jget_str(v, "name"));
        if (api_vm_refuse_foreign(r, v))
                return;
        const char *state = jget_str(v, "state");
        if (streq(state, "creating") || streq(state, "deleting"))
                return reply_error(r, 409, "conflict", NULL, "VM '%s' is %s; try again when that has finished.", jget_str(v, "name"), state);
        json_t *params = json_object();
        if (timeout)
                json_object_set_new(params, "timeout_s", json_integer(timeout));
        json_object_set_new(params, "force", json_boolean(force));
        _cleanup_free_ char *kind = xasprintf("vm.%s", action);
        int64_t job;
        int e = jobs_submit(r->api->jobs, kind, "vm", r->id[0], jget_str(v, "name"), r->user.id, params, &job);
        json_decref(params);
        if (e < 0)
                return reply_error(r, 500, "internal", NULL, "Cannot queue the job.");
        audit(r, kind, "vm", r->id[0], jget_str(v, "name"), NULL, "accepted");
        reply(r, 202, json_pack("{s:o}", "job", job_json(r, job)));
}

/* ------------------------------------------------------------------ */
/* jobs, events, audit */

void h_jobs_list(Req *r) {
        int64_t limit;
        if (!req_query_int(r, "limit", 100, 1, LIMIT_MAX, &limit))
                return;
        const char *state = req_query(r, "state");
        if (state && !streq(state, "queued") && !streq(state, "running") && !streq(state, "succeeded") && !streq(state, "failed") &&
            !streq(state, "cancelled"))
                return reply_error(r, 400, "invalid_argument", "state", "Query 'state' must be queued, running, succeeded, failed or cancelled.");
        const char *stuck = req_query(r, "stuck");
        if (stuck && !streq(stuck, "true") && !streq(stuck, "false"))
                return reply_error(r, 400, "invalid_argument", "stuck", "Query 'stuck' must be true or false.");
        int64_t owner = r->subj.role == ROLE_SELF_SERVICE ? r->user.id : 0;
        json_t *arr = store_job_list(r->api->st, state, owner, stuck && streq(stuck, "true"), (int) limit);
        if (arr && r->subj.role == ROLE_DELEGATED_ADMIN) {
                json_t *out = json_array();
                size_t i;
                json_t *it;
                json_array_foreach(arr, i, it)
                        if (api_job_visible(r, it)) json_array_append(out, it);
                json_decref(arr);
                arr = out;
        }
        reply(r, 200, items(arr));
}

void h_job_get(Req *r) {
        json_t *j = store_job_get_json(r->api->st, r->id[0]);
        if (!j || !api_job_visible(r, j)) {
                json_decref(j);
                return reply_error(r, 404, "not_found", NULL, "There is no job with id %lld.", (long long) r->id[0]);
        }
        reply(r, 200, j);
}

void h_job_cancel(Req *r) {
        _cleanup_json_ json_t *j = store_job_get_json(r->api->st, r->id[0]);
        if (!j || !api_job_visible(r, j))
                return reply_error(r, 404, "not_found", NULL, "There is no job with id %lld.", (long long) r->id[0]);
        int64_t g = object_group(r, jget_str(j, "target_kind"), jget_int(j, "target_id"));
        if (jget_int(j, "owner_id") != r->user.id && !api_allowed(r, ACT_OPERATE, OBJ_JOB, jget_int(j, "owner_id"), g))
                return deny(r, "cancel", "job", r->id[0], jget_str(j, "kind"));
        int e = jobs_cancel(r->api->jobs, r->id[0]);
        if (e == -EALREADY)
                return reply_error(r, 409, "conflict", NULL, "Job %lld has already ended (%s).", (long long) r->id[0], jget_str(j, "state"));
        if (e < 0)
                return reply_store_error(r, e, "the job");
        audit(r, "job.cancel", "job", r->id[0], jget_str(j, "kind"), NULL, "ok");
        reply(r, 200, job_json(r, r->id[0]));
}

void h_events_list(Req *r) {
        int64_t limit, since;
        if (!req_query_int(r, "limit", 100, 1, LIMIT_MAX, &limit) || !req_query_int(r, "since_id", 0, 0, INT64_MAX, &since))
                return;
        json_t *arr = store_event_list(r->api->st, since, (int) limit);
        if (arr && r->subj.role != ROLE_ADMIN && r->subj.role != ROLE_READ_ONLY) {
                json_t *out = json_array();
                size_t i;
                json_t *it;
                json_array_foreach(arr, i, it)
                        if (api_event_visible(r, it)) json_array_append(out, it);
                json_decref(arr);
                arr = out;
        }
        reply(r, 200, items(arr));
}

void h_audit_list(Req *r) {
        int64_t limit;
        if (!req_query_int(r, "limit", 100, 1, LIMIT_MAX, &limit))
                return;
        if (!api_allowed(r, ACT_READ, OBJ_SYSTEM, 0, 0))
                return deny(r, "read", "audit log", 0, NULL);
        reply(r, 200, items(store_audit_list(r->api->st, (int) limit)));
}
