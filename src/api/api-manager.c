/* The REST API of the managers (issue 14): GET /api/v1/managers, and the
 * answer a standby gives to a write (api_standby_refuse(), from dispatch).
 * A standby refuses with 503 "standby" naming the active manager's URL in
 * the body and in Location rather than redirecting (307): a client would
 * resend the bearer token and the body to another origin without asking,
 * and a browser's console, its token in this origin's storage, would land
 * logged out on the other one; the CLI prints the URL instead. */
#include "api-priv.h"

#include "manager/manager.h"

#include <string.h>

static void h_managers(Req *r) {
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = manager_status(r->api->cfg.manager, &c, &out, &err);
        reply_result(r, e, &err, 200, out);
}

/* Writes a standby still takes: opening and closing a session (the tokens
 * live in the shared store; a session is not a host-changing step). */
static bool standby_allows(const Req *r) {
        return streq(r->path, "/api/v1/sessions") || streq(r->path, "/api/v1/sessions/current");
}

bool api_standby_refuse(Req *r) {
        Manager *m = r->api->cfg.manager;
        if (!m || streq(r->method, "GET") || streq(r->method, "HEAD") || standby_allows(r) || manager_is_active(m))
                return false;
        _cleanup_free_ char *url = NULL;
        if (manager_active_url(m, &url) < 0) {
                reply_error(r, 503, "standby", NULL, "This manager is a standby and no manager is active at the moment (a"
                                                     " takeover is in progress); retry in a few seconds.");
                json_object_set_new(json_object_get(r->resp, "error"), "active_url", json_null());
                return true;
        }
        reply_error(r, 503, "standby", NULL, "This manager is a standby; send changes to the active manager at '%s'.", url);
        json_object_set_new(json_object_get(r->resp, "error"), "active_url", json_string(url));
        _cleanup_free_ char *loc = xasprintf("%s%s", url, r->path);
        reply_header(r, "Location", loc);
        reply_header(r, "Retry-After", "1");
        return true;
}

const Route api_routes_manager[] = {
        { "GET", "/api/v1/managers", h_managers, false },
        { NULL, NULL, NULL, false },
};
