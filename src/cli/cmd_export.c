/* armada vm clone | export | import (issue 12): each sends one request and
 * follows the job it starts (--wait). */
#include "cli.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

const OptSpec VM_CLONE_OPTS[] = {
        { "linked", 0, false, NULL, "a qcow2 overlay over the source's disks (stays on its host) instead of a full copy" },
        { "host", 0, true, "H", "the host for the clone (default: the source's host when linked, else placement)" },
        { "start", 0, false, NULL, "start the clone once made" },
        { NULL, 0, false, NULL, NULL },
};
const OptSpec VM_EXPORT_OPTS[] = {
        { "to", 0, true, "DIR", "a directory under armadad's --export-root (required)" },
        { "format", 0, true, "ova|qcow2", "an OVA (OVF 1.0, streamOptimized VMDK, SHA-256 manifest; default) or a directory of"
                                            " the domain XML and qcow2 disks" },
        { NULL, 0, false, NULL, NULL },
};
const OptSpec VM_IMPORT_OPTS[] = {
        { "name", 0, true, "N", "the VM's name (default: the descriptor's, or the file's stem)" },
        { "host", 0, true, "H", "the host to put it on" },
        { "group", 0, true, "PATH", "the host group to place it in" },
        { "cpus", 0, true, "N", "vCPUs, instead of the descriptor's (images: 1)" },
        { "memory", 0, true, "MIB", "memory, instead of the descriptor's (images: 1024)" },
        { "network", 0, true, "NET", "the network of the VM's network cards (default: none); repeated, one per card of the"
                                     " descriptor in order; SRC=NET maps the descriptor's network SRC to NET" },
        { "start", 0, false, NULL, "start it once imported" },
        { "v2v", 0, true, "auto|always|never", "ready the guest for virtio with virt-v2v: auto (a foreign guest,"
                                               " not a qcow2 or raw image, when it can; armadad's default), always (any"
                                               " guest; fail when it cannot), never" },
        { NULL, 0, false, NULL, NULL },
};

int cmd_vm_clone(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "vms", "name", a->pos[0], "VM", &id, NULL);
        if (r)
                return r;
        _cleanup_json_ json_t *body = json_pack("{s:s, s:b, s:b}", "name", a->pos[1], "linked", args_has(a, "linked"), "start",
                                                args_has(a, "start"));
        if (!body)
                return fail("arguments must be valid UTF-8");
        const char *v = args_get(a, "host");
        if (v)
                json_object_set_new(body, "host", json_string(v));
        _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/clone", id);
        _cleanup_json_ json_t *reply = NULL;
        if ((r = api_call(c, "POST", path, body, &reply)))
                return r;
        return job_started(c, reply);
}

int cmd_vm_export(Ctx *c, const Command *cmd, const Args *a) {
        const char *to = args_get(a, "to"), *format = args_get(a, "format");
        if (!to)
                return fail("--to DIR is required");
        int64_t id;
        int r = resolve(c, "vms", "name", a->pos[0], "VM", &id, NULL);
        if (r)
                return r;
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s}", "to", to, "format", format ? format : "ova");
        if (!body)
                return fail("arguments must be valid UTF-8");
        _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/export", id);
        _cleanup_json_ json_t *reply = NULL;
        if ((r = api_call(c, "POST", path, body, &reply)))
                return r;
        if (c->output == OUTPUT_TABLE && !c->wait)
                outf("exporting to %s", json_string_value(json_object_get(reply, "path")));
        return job_started(c, reply);
}

/* --network, repeated: one plain name is "network" (every card); several
 * are "networks" (one per card); SRC=NET items map the descriptor's
 * networks ("networks" as an object), a plain name beside them being
 * "network" for the cards not mapped. */
static int import_networks(json_t *body, const Args *a) {
        size_t n = 0;
        _cleanup_free_ const char **v = args_get_all(a, "network", &n);
        json_t *list = json_array(), *map = json_object();
        for (size_t i = 0; i < n; i++) {
                const char *eq = strchr(v[i], '=');
                if (!eq) {
                        json_array_append_new(list, json_string(v[i]));
                        continue;
                }
                if (eq == v[i] || !eq[1]) {
                        json_decref(list);
                        json_decref(map);
                        return fail("--network %s: give SRC=NET with both names", v[i]);
                }
                _cleanup_free_ char *src = xasprintf("%.*s", (int) (eq - v[i]), v[i]);
                json_object_set_new(map, src, json_string(eq + 1));
        }
        int r = 0;
        if (json_object_size(map) > 0 && json_array_size(list) > 1)
                r = fail("--network: give names for every card in order, or SRC=NET maps with at most one plain name for the rest");
        else if (json_object_size(map) > 0) {
                json_object_set(body, "networks", map);
                if (json_array_size(list) == 1)
                        json_object_set(body, "network", json_array_get(list, 0));
        } else if (json_array_size(list) == 1)
                json_object_set(body, "network", json_array_get(list, 0));
        else if (json_array_size(list) > 1)
                json_object_set(body, "networks", list);
        json_decref(list);
        json_decref(map);
        return r;
}

int cmd_vm_import(Ctx *c, const Command *cmd, const Args *a) {
        if (args_get(a, "host") && args_get(a, "group"))
                return fail("give --host or --group, not both");
        _cleanup_json_ json_t *body = json_pack("{s:s, s:b}", "path", a->pos[0], "start", args_has(a, "start"));
        if (!body)
                return fail("arguments must be valid UTF-8");
        static const char *const strs[][2] = { { "name", "name" }, { "host", "host" }, { "group", "group" }, { "v2v", "v2v" } };
        for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
                const char *v = args_get(a, strs[i][0]);
                if (v)
                        json_object_set_new(body, strs[i][1], json_string(v));
        }
        const char *v;
        int r;
        if ((r = import_networks(body, a)))
                return r;
        if ((v = args_get(a, "cpus")) && (r = body_set_count(body, "cpus", "cpus", v)))
                return r;
        if ((v = args_get(a, "memory")) && (r = body_set_count(body, "memory_mib", "memory", v)))
                return r;
        _cleanup_json_ json_t *reply = NULL;
        if ((r = api_call(c, "POST", "/vms/import", body, &reply)))
                return r;
        if (c->output == OUTPUT_TABLE && !c->wait)
                outf("importing VM '%s'", json_string_value(json_object_get(json_object_get(reply, "vm"), "name")));
        return job_started(c, reply);
}
