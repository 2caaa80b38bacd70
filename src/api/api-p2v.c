/* The REST API of P2V (issue 12): the handler parses the request and calls
 * library_p2v() (library.h, "P2V"), which checks rights, probes the server
 * read-only over SSH, records the VM and queues vm.p2v.
 *
 *   POST /api/v1/p2v  {server, ssh?, port?, disks?, host_key_fingerprint?, name?, host?, group?, cpus?,
 *                      memory_mib?, network?, start?} */
#include "api-priv.h"

#include <string.h>

#include "library/library.h"

/* The bounds POST /vms uses. */
#define P2V_CPUS_MAX 256
#define P2V_MEMORY_MIN_MIB 16
#define P2V_MEMORY_MAX_MIB (4LL << 20)
#define P2V_DISKS_MAX 8

/* "disks": a list of at most P2V_DISKS_MAX strings; false after a 400. */
static bool body_disks(Req *r, const char *disks[P2V_DISKS_MAX], size_t *ret_n) {
        json_t *v = r->json ? json_object_get(r->json, "disks") : NULL;
        *ret_n = 0;
        if (!v || json_is_null(v))
                return true;
        if (!json_is_array(v) || json_array_size(v) > P2V_DISKS_MAX) {
                reply_error(r, 400, "invalid_argument", "disks", "Field 'disks' must be a list of at most %d device paths.",
                            P2V_DISKS_MAX);
                return false;
        }
        size_t i;
        json_t *d;
        json_array_foreach(v, i, d) {
                if (!json_is_string(d) || strlen(json_string_value(d)) != json_string_length(d)) {
                        reply_error(r, 400, "invalid_argument", "disks", "Field 'disks' must hold device paths (strings).");
                        return false;
                }
                disks[i] = json_string_value(d);
        }
        *ret_n = json_array_size(v);
        return true;
}

static void h_p2v(Req *r) {
        static const char *const fields[] = { "server", "ssh", "port", "disks", "host_key_fingerprint", "name", "host", "group",
                                              "cpus", "memory_mib", "network", "start", "v2v", "domain_type", NULL };
        const char *disks[P2V_DISKS_MAX];
        LibraryP2vSpec s = { .disks = disks };
        if (!req_body_fields(r, fields) || !body_string(r, "server", true, 64, &s.server) ||
            !body_string(r, "ssh", false, 300, &s.ssh) || !body_int(r, "port", false, 1, 65535, &s.port) ||
            !body_disks(r, disks, &s.n_disks) || !body_string(r, "host_key_fingerprint", false, 100, &s.host_key_fingerprint) ||
            !body_name(r, "name", false, &s.name) || !body_string(r, "host", false, 64, &s.host) ||
            !body_string(r, "group", false, 1000, &s.group) || !body_int(r, "cpus", false, 1, P2V_CPUS_MAX, &s.cpus) ||
            !body_int(r, "memory_mib", false, P2V_MEMORY_MIN_MIB, P2V_MEMORY_MAX_MIB, &s.memory_mib) ||
            !body_name(r, "network", false, &s.network) || !body_bool(r, "start", &s.start) ||
            !body_string(r, "v2v", false, 16, &s.v2v) || !body_string(r, "domain_type", false, 8, &s.domain_type))
                return;
        if (s.host && s.group)
                return reply_error(r, 400, "invalid_argument", "group", "Give either 'host' or 'group', not both.");
        OpCaller c = api_caller(r);
        OpError err;
        json_t *out = NULL;
        int e = library_p2v(r->api->st, r->api->jobs, &c, &s, &out, &err);
        reply_result(r, e, &err, 202, out);
}

const Route api_routes_p2v[] = {
        /* issue 12: P2V */
        { "POST", "/api/v1/p2v", h_p2v, false },
        { NULL, NULL, NULL, false },
};
