/* armada job, event, audit and user commands. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

static void add_time(Table *t, json_t *o, const char *key) {
        char buf[64];
        fmt_time_of(o, key, buf);
        table_add(t, buf);
}

static void add_text(Table *t, json_t *o, const char *key) {
        _cleanup_free_ char *s = jtext(o, key);
        table_add(t, s);
}

/* "vm web01", "host kvm1", or "-". */
static void add_object(Table *t, json_t *o, const char *kind_key, const char *name_key, const char *id_key) {
        const char *kind = jstr(o, kind_key), *name = jstr(o, name_key);
        _cleanup_free_ char *id = jtext(o, id_key);
        if (!kind && !name && !id)
                table_add(t, NULL);
        else
                table_addf(t, "%s%s%s", kind ? kind : "", kind ? " " : "", name ? name : (id ? id : "?"));
}

/* Appends the --limit option as a query parameter. */
static int add_limit(Ctx *c, const Args *a, StrBuf *b) {
        const char *s = args_get(a, "limit");
        int64_t n;
        if (!s)
                return 0;
        int r = parse_count("limit", s, &n);
        if (r)
                return r;
        query_add(c, b, "limit", s);
        return 0;
}

/* Appends --before ID (the next page back) as before_id; what names the
 * rows ("job", "event") for the message. */
static int add_before(Ctx *c, const Args *a, const char *what, StrBuf *b) {
        const char *s = args_get(a, "before");
        int64_t id;
        if (!s)
                return 0;
        if (parse_i64(s, &id) < 0 || id <= 0)
                return fail("--before must be %s id (a positive whole number, as 'armada %s list' shows), not '%s'",
                            streq(what, "event") ? "an event" : "a job", what, s);
        query_add(c, b, "before_id", s);
        return 0;
}

/* After a table: where the next page back starts, when older rows remain. */
static void note_older(json_t *reply, const char *what) {
        json_t *nb = json_object_get(reply, "next_before_id");
        if (json_is_integer(nb))
                fprintf(stderr, "(older %ss: armada %s list --before %" PRId64 ")\n", what, what, (int64_t) json_integer_value(nb));
}

static int parse_job_id(const char *s, int64_t *ret) {
        if (parse_i64(s, ret) < 0 || *ret <= 0)
                return fail("'%s' is not a job id (a positive whole number, as in 'armada job list')", s);
        return 0;
}

/* ---- jobs ---- */

static const char *const JOB_STATES[] = { "queued", "running", "succeeded", "failed", "cancelled" };

int cmd_job_list(Ctx *c, const Command *cmd, const Args *a) {
        StrBuf b = {0};
        strbuf_append(&b, "/jobs");
        const char *state = args_get(a, "state");
        if (state) {
                bool ok = false;
                for (size_t i = 0; i < ELEMENTSOF(JOB_STATES); i++)
                        ok = ok || streq(state, JOB_STATES[i]);
                if (!ok) {
                        strbuf_free(&b);
                        return fail("--state must be one of queued, running, succeeded, failed, cancelled; "
                                    "not '%s'", state);
                }
                query_add(c, &b, "state", state);
        }
        if (args_has(a, "stuck"))
                query_add(c, &b, "stuck", "true");
        int r = add_limit(c, a, &b);
        if (!r)
                r = add_before(c, a, "job", &b);
        _cleanup_free_ char *path = strbuf_steal(&b);
        if (r)
                return r;
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "GET", path, NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        _cleanup_table_ Table *t = table_new(">ID", "KIND", "TARGET", "STATE", ">PROGRESS", "STEP", "OWNER",
                                             "CREATED", NULL);
        size_t i;
        json_t *j;
        json_array_foreach(json_object_get(reply, "items"), i, j) {
                add_text(t, j, "id");
                table_add(t, jstr(j, "kind"));
                add_object(t, j, "target_kind", "target_name", "target_id");
                if (json_is_true(json_object_get(j, "stuck")))
                        table_addf(t, "%s (stuck)", jstr(j, "state"));
                else
                        table_add(t, jstr(j, "state"));
                table_addf(t, "%" PRId64 "%%", jint(j, "progress", 0));
                table_add(t, jstr(j, "step") && *jstr(j, "step") ? jstr(j, "step") : NULL);
                table_add(t, jstr(j, "owner_name"));
                add_time(t, j, "created_at");
        }
        table_print(t, stdout);
        note_older(reply, "job");
        return 0;
}

int cmd_job_show(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = parse_job_id(a->pos[0], &id);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/jobs/%" PRId64, id);
        _cleanup_json_ json_t *j = NULL;
        r = api_call(c, "GET", path, NULL, &j);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(j);
                return 0;
        }
        _cleanup_table_ Table *t = kv_new();
        char buf[64];
        _cleanup_free_ char *id_s = jtext(j, "id");
        kv_add(t, "Id", id_s);
        kv_add(t, "Kind", jstr(j, "kind"));
        _cleanup_free_ char *tid = jtext(j, "target_id");
        if (jstr(j, "target_kind") || jstr(j, "target_name")) {
                _cleanup_free_ char *target = xasprintf("%s %s%s%s%s", jstr(j, "target_kind") ? jstr(j, "target_kind") : "",
                                                        jstr(j, "target_name") ? jstr(j, "target_name") : "?",
                                                        tid ? " (id " : "", tid ? tid : "", tid ? ")" : "");
                kv_add(t, "Target", target);
        }
        kv_add(t, "State", jstr(j, "state"));
        if (json_is_true(json_object_get(j, "stuck"))) {
                _cleanup_free_ char *since = xasprintf("yes: no progress since %s (cancel ends it at once)",
                                                       jstr(j, "stuck_since") ? jstr(j, "stuck_since") : "?");
                kv_add(t, "Stuck", since);
        }
        snprintf(buf, sizeof buf, "%" PRId64 "%%", jint(j, "progress", 0));
        kv_add(t, "Progress", buf);
        if (jstr(j, "step") && *jstr(j, "step"))
                kv_add(t, "Step", jstr(j, "step"));
        if (jstr(j, "error") && *jstr(j, "error"))
                kv_add(t, "Error", jstr(j, "error"));
        kv_add(t, "Owner", jstr(j, "owner_name"));
        fmt_time_of(j, "created_at", buf);
        kv_add(t, "Created", buf);
        fmt_time_of(j, "started_at", buf);
        kv_add(t, "Started", buf);
        fmt_time_of(j, "finished_at", buf);
        kv_add(t, "Finished", buf);
        json_t *result = json_object_get(j, "result");
        if (result && !json_is_null(result)) {
                _cleanup_free_ char *res = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY);
                kv_add(t, "Result", res);
        }
        table_print(t, stdout);

        json_t *steps = json_object_get(j, "steps");
        if (json_array_size(steps) > 0) {
                _cleanup_table_ Table *st = table_new("TIME", "STEP", NULL);
                size_t i;
                json_t *step;
                json_array_foreach(steps, i, step) {
                        add_time(st, step, "at");
                        table_add(st, jstr(step, "name"));
                }
                printf("\nSteps:\n");
                table_print(st, stdout);
        }
        return 0;
}

int cmd_job_wait(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = parse_job_id(a->pos[0], &id);
        if (r)
                return r;
        return job_follow(c, id);
}

int cmd_job_cancel(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = parse_job_id(a->pos[0], &id);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/jobs/%" PRId64 "/actions/cancel", id);
        _cleanup_json_ json_t *j = NULL;
        r = api_call(c, "POST", path, NULL, &j);
        if (r)
                return r;
        if (c->wait)
                return job_follow(c, id);
        if (c->output == OUTPUT_JSON) {
                print_json(j);
                return 0;
        }
        const char *state = jstr(j, "state");
        if (state && streq(state, "cancelled"))
                outf("job %" PRId64 " cancelled", id);
        else
                outf("job %" PRId64 ": cancel requested (state: %s)", id, state ? state : "unknown");
        return 0;
}

/* ---- events and audit ---- */

int cmd_event_list(Ctx *c, const Command *cmd, const Args *a) {
        StrBuf b = {0};
        strbuf_append(&b, "/events");
        int r = add_limit(c, a, &b);
        if (!r)
                r = add_before(c, a, "event", &b);
        _cleanup_free_ char *path = strbuf_steal(&b);
        if (r)
                return r;
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "GET", path, NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        _cleanup_table_ Table *t = table_new(">ID", "TIME", "SEVERITY", "KIND", "OBJECT", "MESSAGE", NULL);
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(reply, "items"), i, e) {
                add_text(t, e, "id");
                add_time(t, e, "at");
                table_add(t, jstr(e, "severity"));
                table_add(t, jstr(e, "kind"));
                add_object(t, e, "object_kind", "object_name", "object_id");
                table_add(t, jstr(e, "message"));
        }
        table_print(t, stdout);
        note_older(reply, "event");
        return 0;
}

int cmd_audit_list(Ctx *c, const Command *cmd, const Args *a) {
        StrBuf b = {0};
        strbuf_append(&b, "/audit");
        if (args_has(a, "stuck"))
                query_add(c, &b, "stuck", "true");
        int r = add_limit(c, a, &b);
        _cleanup_free_ char *path = strbuf_steal(&b);
        if (r)
                return r;
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "GET", path, NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        _cleanup_table_ Table *t = table_new("TIME", "USER", "ADDRESS", "ACTION", "OBJECT", "RESULT", "DETAIL", NULL);
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(reply, "items"), i, e) {
                add_time(t, e, "at");
                table_add(t, jstr(e, "user_name"));
                table_add(t, jstr(e, "address"));
                table_add(t, jstr(e, "action"));
                add_object(t, e, "object_kind", "object_name", "object_id");
                add_text(t, e, "result");
                add_text(t, e, "detail");
        }
        table_print(t, stdout);
        return 0;
}

/* ---- users ---- */

static char *scopes_text(json_t *u) {
        json_t *scopes = json_object_get(u, "scopes");
        if (json_array_size(scopes) == 0)
                return NULL;
        StrBuf b = {0};
        size_t i;
        json_t *s;
        json_array_foreach(scopes, i, s) {
                const char *p = json_is_string(s) ? json_string_value(s) : jstr(s, "path");
                strbuf_printf(&b, "%s%s", i ? "," : "", p ? p : "?");
        }
        return strbuf_steal(&b);
}

int cmd_user_list(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/users", NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        _cleanup_table_ Table *t = table_new("NAME", "ROLE", "SCOPES", "CREATED", NULL);
        size_t i;
        json_t *u;
        json_array_foreach(json_object_get(reply, "items"), i, u) {
                _cleanup_free_ char *scopes = scopes_text(u);
                table_add(t, jstr(u, "name"));
                table_add(t, jstr(u, "role"));
                table_add(t, scopes);
                add_time(t, u, "created_at");
        }
        table_print(t, stdout);
        return 0;
}

static int new_password(const Args *a, char **ret) {
        char *p1 = NULL, *p2 = NULL;
        int r;
        if (args_has(a, "password-stdin") || getenv("ARMADA_NEW_PASSWORD"))
                return read_password("new password", args_has(a, "password-stdin"), "ARMADA_NEW_PASSWORD", ret);
        r = read_password("new password", false, NULL, &p1);
        if (r)
                return r;
        r = read_password("new password again", false, NULL, &p2);
        if (r) {
                secret_free(p1);
                return r;
        }
        bool same = streq(p1, p2);
        secret_free(p2);
        if (!same) {
                secret_free(p1);
                return fail("the two passwords differ");
        }
        *ret = p1;
        return 0;
}

int cmd_user_create(Ctx *c, const Command *cmd, const Args *a) {
        const char *role = args_get(a, "role");
        if (!role)
                return fail("user create needs --role ROLE");
        char *password = NULL;
        int r = new_password(a, &password);
        if (r)
                return r;
        if (!*password) {
                secret_free(password);
                return fail("the password must not be empty");
        }
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s, s:s, s:[]}", "name", a->pos[0], "password", password,
                                                "role", role, "scopes");
        secret_free(password);
        if (!body)
                return fail("arguments must be valid UTF-8");
        size_t n;
        _cleanup_free_ const char **scopes = args_get_all(a, "scope", &n);
        json_t *arr = json_object_get(body, "scopes");
        for (size_t i = 0; i < n; i++) {
                json_t *sc = json_string(scopes[i]);
                if (!sc)
                        return fail("the scope '%s' is not valid UTF-8", scopes[i]);
                json_array_append_new(arr, sc);
        }

        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "POST", "/users", body, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        outf("user '%s' created with role %s", jstr(reply, "name") ? jstr(reply, "name") : a->pos[0],
             jstr(reply, "role") ? jstr(reply, "role") : role);
        return 0;
}

int cmd_user_passwd(Ctx *c, const Command *cmd, const Args *a) {
        /* Without NAME: the logged-in user, as the session names it. */
        int64_t id;
        _cleanup_free_ char *name = NULL;
        int r;
        if (a->n_pos > 0) {
                r = resolve(c, "users", "name", a->pos[0], "user", &id, NULL);
                if (r)
                        return r;
                name = xstrdup(a->pos[0]);
        } else {
                _cleanup_json_ json_t *me = NULL;
                r = api_call(c, "GET", "/sessions/current", NULL, &me);
                if (r)
                        return r;
                json_t *u = json_object_get(me, "user");
                if (!u)
                        u = me;
                id = jint(u, "id", 0);
                if (id <= 0 || !jstr(u, "name"))
                        return fail("the server did not say which user this session belongs to");
                name = xstrdup(jstr(u, "name"));
        }
        char *password = NULL;
        r = new_password(a, &password);
        if (r)
                return r;
        if (!*password) {
                secret_free(password);
                return fail("the password must not be empty");
        }
        _cleanup_json_ json_t *body = json_pack("{s:s}", "password", password);
        secret_free(password);
        if (!body)
                return fail("the password must be valid UTF-8");
        _cleanup_free_ char *path = xasprintf("/users/%" PRId64, id);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "PATCH", path, body, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON)
                print_json(reply);
        else
                outf("the password of user '%s' was changed; the user's other sessions have ended", name);
        return 0;
}

int cmd_user_delete(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "users", "name", a->pos[0], "user", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/users/%" PRId64, id);
        r = api_call(c, "DELETE", path, NULL, NULL);
        if (r)
                return r;
        if (c->output == OUTPUT_TABLE)
                outf("user '%s' deleted", a->pos[0]);
        return 0;
}

/* ---- managers (issue 14) ---- */

int cmd_manager_status(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/managers", NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        _cleanup_table_ Table *t = table_new("MANAGER", "URL", "HOST", "PID", "ROLE", "ACTIVE SINCE", "LAST SEEN", NULL);
        size_t i;
        json_t *m;
        json_array_foreach(json_object_get(reply, "managers"), i, m) {
                table_addf(t, "%s%s", jstr(m, "id"), json_is_true(json_object_get(m, "this")) ? " (this)" : "");
                table_add(t, jstr(m, "url"));
                table_add(t, jstr(m, "hostname"));
                table_addf(t, "%lld", (long long) json_integer_value(json_object_get(m, "pid")));
                table_add(t, json_is_true(json_object_get(m, "active")) ? "active" : "standby");
                add_time(t, m, "active_since");
                add_time(t, m, "last_seen_at");
        }
        table_print(t, stdout);
        json_t *lease = json_object_get(reply, "lease"), *store = json_object_get(reply, "store");
        if (json_is_object(lease))
                printf("lease: token %lld, held by %s until %s%s\n", (long long) json_integer_value(json_object_get(lease, "token")),
                       jstr(lease, "holder"), jstr(lease, "expires_at"),
                       json_is_true(json_object_get(lease, "held")) ? "" : " (expired: a takeover is due)");
        else
                printf("lease: never held\n");
        const char *url = jstr(store, "url");
        printf("store: %s%s%s\n", jstr(store, "engine"), url ? " " : "", url ? url : "");
        return 0;
}
