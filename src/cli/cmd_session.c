/* armada login, logout, whoami and version: the session with armadad and the
 * credentials file that carries it between commands. */
#include "cli.h"

#include <errno.h>
#include <string.h>

int cmd_login(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_free_ char *user = NULL;
        char *password = NULL;
        int r;

        if (args_get(a, "user"))
                user = xstrdup(args_get(a, "user"));
        else if (getenv("ARMADA_USER") && *getenv("ARMADA_USER"))
                user = xstrdup(getenv("ARMADA_USER"));
        else if ((r = read_line_tty("user name", &user)))
                return r;
        if (!*user)
                return fail("the user name must not be empty");

        r = read_password("password", args_has(a, "password-stdin"), "ARMADA_PASSWORD", &password);
        if (r)
                return r;
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s}", "name", user, "password", password);
        secret_free(password);
        if (!body)
                return fail("the user name or password is not valid UTF-8");

        /* A token saved for another server must not be offered to this one,
         * and login needs none. */
        char *old_token = steal_ptr(c->token);
        c->logging_in = true;
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "POST", "/sessions", body, &reply);
        secret_free(old_token);
        if (r)
                return r;

        const char *token = jstr(reply, "token");
        json_t *u = json_object_get(reply, "user");
        if (!token || !*token)
                return fail("the server accepted the login but sent no token");
        Credentials cr = {
                .server = c->server,
                .token = (char *) token,
                .user = (char *) (jstr(u, "name") ? jstr(u, "name") : user),
        };
        r = creds_save(&cr);
        if (r < 0) {
                _cleanup_free_ char *path = creds_path();
                return fail("cannot save the credentials in '%s': %s", path ? path : "~/.config/armada",
                            strerror(-r));
        }
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        const char *expires = jstr(reply, "expires_at");
        char when[64];
        fmt_time(expires, when);
        outf("logged in to %s as %s (%s)%s%s", c->server, cr.user,
                   jstr(u, "role") ? jstr(u, "role") : "unknown role",
                   expires ? "; the session expires " : "", expires ? when : "");
        return 0;
}

int cmd_logout(Ctx *c, const Command *cmd, const Args *a) {
        int r = 0;
        if (c->token) {
                ApiReply reply;
                r = api_send(c, "DELETE", "/sessions/current", NULL, REQUEST_TIMEOUT_S, &reply);
                /* 401: the session had already expired or was revoked. */
                if (r == 0 && reply.status >= 300 && reply.status != 401)
                        r = api_report(c, &reply, EXIT_ERROR);
                else if (r)
                        r = api_report(c, &reply, r);
                api_reply_done(&reply);
        }
        /* Forget the saved session only when it is for this server. */
        Credentials cr = {0};
        bool saved_here = false;
        if (creds_load(&cr) == 0) {
                size_t n = cr.server ? strlen(cr.server) : 0;
                while (n > 0 && cr.server[n - 1] == '/')
                        n--;
                saved_here = !cr.server || (strlen(c->server) == n && strncmp(cr.server, c->server, n) == 0);
                if (!saved_here && c->output == OUTPUT_TABLE)
                        fprintf(stderr, "armada: keeping the saved session for %s\n", cr.server);
        }
        creds_done(&cr);
        int k = saved_here ? creds_remove() : 0;
        if (k < 0) {
                _cleanup_free_ char *path = creds_path();
                return fail("cannot remove '%s': %s", path, strerror(-k));
        }
        if (r)
                fail("the saved credentials were removed anyway");
        else if (c->output == OUTPUT_TABLE && c->token)
                outf("logged out of %s", c->server);
        else if (c->output == OUTPUT_TABLE)
                outf("not logged in to %s", c->server);
        return r;
}

int cmd_whoami(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/sessions/current", NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        json_t *u = json_object_get(reply, "user");
        if (!u)
                u = reply;
        _cleanup_table_ Table *t = kv_new();
        kv_add(t, "User", jstr(u, "name"));
        kv_add(t, "Role", jstr(u, "role"));
        json_t *scopes = json_object_get(u, "scopes");
        if (json_array_size(scopes) > 0) {
                StrBuf b = {0};
                size_t i;
                json_t *s;
                json_array_foreach(scopes, i, s) {
                        const char *p = json_is_string(s) ? json_string_value(s) : jstr(s, "path");
                        strbuf_printf(&b, "%s%s", i ? ", " : "", p ? p : "?");
                }
                _cleanup_free_ char *txt = strbuf_steal(&b);
                kv_add(t, "Scopes", txt);
        }
        kv_add(t, "Server", c->server);
        table_print(t, stdout);
        return 0;
}

int cmd_version(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/version", NULL, &reply);
        if (c->output == OUTPUT_JSON) {
                if (r == 0)
                        print_json(reply);
                return r;
        }
        printf("client: armada %s\n", ARMADA_VERSION);
        if (r)
                return r;
        const char *v = jstr(reply, "version");
        outf("server: armadad %s (%s)", v ? v : "unknown", c->server);
        return 0;
}
