/* armada p2v (issue 12): converts a running Linux physical server into a
 * VM; one request (POST /p2v), then the job it starts is followed with
 * --wait. */
#include "cli.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

const OptSpec P2V_OPTS[] = {
        { "ssh", 0, true, "USER@ADDR", "how armadad reaches the server (default: root@ the assessed server's node_exporter host)" },
        { "port", 0, true, "N", "the server's SSH port (default 22)" },
        { "disk", 0, true, "/dev/X", "a disk to convert (repeatable; default: every whole disk of the server)" },
        { "host-key-fingerprint", 0, true, "SHA256:...", "the server's host key (ssh-keygen -lf on it); needed unless armadad"
                                                         " has --p2v-known-hosts" },
        { "name", 0, true, "N", "the VM's name (default: SERVER)" },
        { "host", 0, true, "H", "the host to put it on" },
        { "group", 0, true, "PATH", "the host group to place it in" },
        { "cpus", 0, true, "N", "vCPUs, instead of the assessment's or the server's" },
        { "memory", 0, true, "MIB", "memory, instead of the assessment's or the server's" },
        { "network", 0, true, "NET", "a libvirt network for the VM's network card (default: none)" },
        { "start", 0, false, NULL, "start the VM once made" },
        { "v2v", 0, true, "auto|always|never", "ready the guest for virtio with virt-v2v where the volumes are files armadad"
                                               " reaches: auto (when it can; armadad's default), always (fail when it cannot), never" },
        { "domain-type", 0, true, "auto|kvm|qemu", "how the VM runs: auto (the host's: KVM where it has it), kvm, or qemu (TCG,"
                                                   " e.g. for a Linux guest on nested KVM)" },
        { NULL, 0, false, NULL, NULL },
};

int cmd_p2v(Ctx *c, const Command *cmd, const Args *a) {
        if (args_get(a, "host") && args_get(a, "group"))
                return fail("give --host or --group, not both");
        _cleanup_json_ json_t *body = json_pack("{s:s, s:b}", "server", a->pos[0], "start", args_has(a, "start"));
        if (!body)
                return fail("arguments must be valid UTF-8");
        static const char *const strs[][2] = { { "ssh", "ssh" }, { "host-key-fingerprint", "host_key_fingerprint" },
                                               { "name", "name" }, { "host", "host" }, { "group", "group" },
                                               { "network", "network" }, { "v2v", "v2v" }, { "domain-type", "domain_type" } };
        for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
                const char *v = args_get(a, strs[i][0]);
                if (v)
                        json_object_set_new(body, strs[i][1], json_string(v));
        }
        size_t n = 0;
        const char **disks = args_get_all(a, "disk", &n);
        if (n) {
                json_t *arr = json_array();
                for (size_t i = 0; i < n; i++) json_array_append_new(arr, json_string(disks[i]));
                json_object_set_new(body, "disks", arr);
        }
        free(disks);
        const char *v;
        int r;
        if ((v = args_get(a, "port")) && (r = body_set_count(body, "port", "port", v)))
                return r;
        if ((v = args_get(a, "cpus")) && (r = body_set_count(body, "cpus", "cpus", v)))
                return r;
        if ((v = args_get(a, "memory")) && (r = body_set_count(body, "memory_mib", "memory", v)))
                return r;
        _cleanup_json_ json_t *reply = NULL;
        if ((r = api_call(c, "POST", "/p2v", body, &reply)))
                return r;
        if (c->output == OUTPUT_TABLE && !c->wait) {
                json_t *src = json_object_get(reply, "source");
                outf("converting server '%s' into VM '%s': %" PRId64 " vCPU, %" PRId64 " MiB, %zu disk(s)", a->pos[0],
                     json_string_value(json_object_get(json_object_get(reply, "vm"), "name")),
                     (int64_t) json_integer_value(json_object_get(src, "cpus")),
                     (int64_t) json_integer_value(json_object_get(src, "memory_mib")),
                     json_array_size(json_object_get(src, "disks")));
        }
        return job_started(c, reply);
}
