/* The snapshot commands of armada: `armada vm snapshot create|list|revert|
 * delete VM [NAME]`, over GET/POST /vms/{id}/snapshots, DELETE
 * /vms/{id}/snapshots/{name} and POST .../{name}/revert. */
#include "cli.h"

#include <inttypes.h>
#include <string.h>

const OptSpec SNAPSHOT_OPTS[] = {
        { "memory", 0, false, NULL, "create: include the memory (a running VM's snapshot always does)" },
        { "no-memory", 0, false, NULL, "create: disks only (a stopped VM's snapshot always is)" },
        { "description", 'd', true, "TEXT", "create: a description" },
        { NULL, 0, false, NULL, NULL },
};

static int snapshot_list(Ctx *c, int64_t id) {
        _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/snapshots", id);
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", path, NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        _cleanup_table_ Table *t = table_new("NAME", "PARENT", "CREATED", "STATE", "MEMORY", "CURRENT", "DESCRIPTION", NULL);
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(reply, "snapshots"), i, s) {
                char when[64];
                fmt_time_of(s, "created_at", when);
                table_add(t, jstr(s, "name"));
                table_add(t, jstr(s, "parent"));
                table_add(t, when);
                table_add(t, jstr(s, "state"));
                table_add(t, json_is_true(json_object_get(s, "has_memory")) ? "yes" : "no");
                table_add(t, json_is_true(json_object_get(s, "current")) ? "*" : "");
                table_add(t, jstr(s, "description"));
        }
        table_print(t, stdout);
        return 0;
}

/* A name in a URL path: the server allows only letters, digits, '.', '_'
 * and '-', so anything else is refused here before it could change the
 * path. */
static int name_ok(const char *name) {
        if (!*name || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(name))
                return fail("'%s' is not a snapshot name: use letters, digits, '.', '_' and '-'", name);
        return 0;
}

int cmd_vm_snapshot(Ctx *c, const Command *cmd, const Args *a) {
        const char *what = a->pos[0];
        bool create = streq(what, "create"), list = streq(what, "list"), revert = streq(what, "revert"), del = streq(what, "delete");
        if (!create && !list && !revert && !del)
                return fail("'vm snapshot' takes create, list, revert or delete, not '%s'", what);
        if (a->n_pos < 2)
                return fail("'vm snapshot %s' needs the VM's name", what);
        if ((revert || del) && a->n_pos < 3)
                return fail("'vm snapshot %s' needs the snapshot's name after the VM's", what);
        if (list && a->n_pos > 2)
                return fail("'vm snapshot list' takes only the VM's name");
        if (!create && (args_has(a, "memory") || args_has(a, "no-memory") || args_has(a, "description")))
                return fail("--memory, --no-memory and --description only go with 'vm snapshot create'");
        if (args_has(a, "memory") && args_has(a, "no-memory"))
                return fail("--memory and --no-memory exclude each other");
        int64_t id;
        int r = resolve(c, "vms", "name", a->pos[1], "VM", &id, NULL);
        if (r)
                return r;
        if (list)
                return snapshot_list(c, id);
        _cleanup_json_ json_t *reply = NULL;
        if (create) {
                _cleanup_json_ json_t *body = json_object();
                if (a->n_pos > 2)
                        json_object_set_new(body, "name", json_string(a->pos[2]));
                if (args_get(a, "description"))
                        json_object_set_new(body, "description", json_string(args_get(a, "description")));
                if (args_has(a, "memory") || args_has(a, "no-memory"))
                        json_object_set_new(body, "memory", json_boolean(args_has(a, "memory")));
                _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/snapshots", id);
                r = api_call(c, "POST", path, body, &reply);
        } else {
                if ((r = name_ok(a->pos[2])))
                        return r;
                _cleanup_free_ char *path = revert ? xasprintf("/vms/%" PRId64 "/snapshots/%s/revert", id, a->pos[2])
                                                   : xasprintf("/vms/%" PRId64 "/snapshots/%s", id, a->pos[2]);
                _cleanup_json_ json_t *body = revert ? json_object() : NULL;
                r = api_call(c, revert ? "POST" : "DELETE", path, body, &reply);
        }
        if (r)
                return r;
        return job_started(c, reply);
}
