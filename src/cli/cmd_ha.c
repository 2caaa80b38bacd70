/* The ha commands of armada: live migration, maintenance mode, clusters,
 * HA priorities of VMs and fence commands of hosts. */
#include "cli.h"

#include <inttypes.h>
#include <string.h>

const OptSpec HA_MIGRATE_OPTS[] = {
        { "to", 0, true, "HOST", "target host (else placement picks the best host)" },
        { "with-storage", 0, false, NULL, "copy the VM's disks too (they are on storage only its host sees)" },
        { "auto-converge", 0, false, NULL, "slow the guest's vCPUs down when its memory changes faster than it moves" },
        { "postcopy", 0, false, NULL, "switch to post-copy when pre-copy does not converge" },
        { "bandwidth", 0, true, "MIB/S", "cap the migration's bandwidth" },
        { NULL, 0, false, NULL, NULL },
};
const OptSpec HA_MAINTENANCE_OPTS[] = {
        { "force", 'f', false, NULL, "enter maintenance even when some VMs cannot move: they are saved (managed save)" },
        { NULL, 0, false, NULL, NULL },
};
const OptSpec HA_CLUSTER_CREATE_OPTS[] = {
        { "hosts", 0, true, "LIST", "member hosts, comma-separated: h1,h2,h3,h4 (required)" },
        { "shared-storage", 0, true, "PATH", "directory every member sees; VM disks of the cluster go there (required)" },
        { "tolerate", 0, true, "N", "host failures the cluster keeps room for (default 1)" },
        { NULL, 0, false, NULL, NULL },
};
const OptSpec HA_VM_HA_OPTS[] = {
        { "priority", 'p', true, "PRIORITY", "high, medium, low, or off (not highly available) (required)" },
        { NULL, 0, false, NULL, NULL },
};

static bool want_table(Ctx *c, json_t *reply) {
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return false;
        }
        return true;
}

int cmd_vm_migrate(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "vms", "name", a->pos[0], "VM", &id, NULL);
        if (r)
                return r;
        _cleanup_json_ json_t *body = json_pack("{s:b, s:b, s:b}", "with_storage", args_has(a, "with-storage"),
                                                "auto_converge", args_has(a, "auto-converge"), "postcopy", args_has(a, "postcopy"));
        const char *to = args_get(a, "to");
        if (to)
                json_object_set_new(body, "to", json_string(to));
        const char *bw = args_get(a, "bandwidth");
        if (bw) {
                int64_t n;
                if ((r = parse_count("bandwidth", bw, &n)))
                        return r;
                json_object_set_new(body, "bandwidth_mibs", json_integer(n));
        }
        _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/migrate", id);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "POST", path, body, &reply);
        if (r)
                return r;
        return job_started(c, reply);
}

int cmd_host_maintenance(Ctx *c, const Command *cmd, const Args *a) {
        const char *what = a->pos[0];
        if (!streq(what, "on") && !streq(what, "off"))
                return fail("'host maintenance' takes on or off, then the host's name, not '%s'", what);
        int64_t id;
        int r = resolve(c, "hosts", "name", a->pos[1], "host", &id, NULL);
        if (r)
                return r;
        if (args_has(a, "force") && streq(what, "off"))
                return fail("--force only goes with 'maintenance on'");
        _cleanup_json_ json_t *body = json_pack("{s:b, s:b}", "on", streq(what, "on"), "force", args_has(a, "force"));
        _cleanup_free_ char *path = xasprintf("/hosts/%" PRId64 "/maintenance", id);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "POST", path, body, &reply);
        if (r)
                return r;
        return job_started(c, reply);
}

int cmd_host_set_fence(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "hosts", "name", a->pos[0], "host", &id, NULL);
        if (r)
                return r;
        _cleanup_json_ json_t *body = json_object();
        if (a->n_pos == 2 && streq(a->pos[1], "none"))
                json_object_set_new(body, "command", json_null());
        else {
                json_t *argv = json_array();
                for (size_t i = 1; i < a->n_pos; i++) {
                        json_t *s = json_string(a->pos[i]);
                        if (!s) {
                                json_decref(argv);
                                return fail("argument %zu of the fence command is not valid UTF-8", i);
                        }
                        json_array_append_new(argv, s);
                }
                json_object_set_new(body, "command", argv);
        }
        _cleanup_free_ char *path = xasprintf("/hosts/%" PRId64 "/fencing", id);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "PATCH", path, body, &reply);
        if (r || !want_table(c, reply))
                return r;
        _cleanup_free_ char *cmdline = jtext(reply, "command");
        outf("fence command of host '%s': %s", a->pos[0], cmdline ? cmdline : "none");
        return 0;
}

int cmd_vm_ha(Ctx *c, const Command *cmd, const Args *a) {
        const char *prio = args_get(a, "priority");
        if (!prio)
                return fail("--priority is required: high, medium, low or off");
        int64_t id;
        int r = resolve(c, "vms", "name", a->pos[0], "VM", &id, NULL);
        if (r)
                return r;
        _cleanup_json_ json_t *body = streq(prio, "off") ? json_pack("{s:b}", "enabled", 0) : json_pack("{s:s}", "priority", prio);
        if (!body)
                return fail("the priority must be valid UTF-8");
        _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/ha", id);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "PATCH", path, body, &reply);
        if (r || !want_table(c, reply))
                return r;
        if (json_is_true(json_object_get(reply, "enabled")))
                outf("VM '%s' is highly available with priority %s", a->pos[0], jstr(reply, "priority"));
        else
                outf("VM '%s' is not highly available", a->pos[0]);
        return 0;
}

int cmd_cluster_create(Ctx *c, const Command *cmd, const Args *a) {
        const char *hosts = args_get(a, "hosts"), *shared = args_get(a, "shared-storage"), *tol = args_get(a, "tolerate");
        if (!hosts || !shared)
                return fail("--hosts and --shared-storage are required");
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s, s:[]}", "name", a->pos[0], "shared_storage", shared, "hosts");
        if (!body)
                return fail("the name and the path must be valid UTF-8");
        _cleanup_free_ char *list = xstrdup(hosts);
        char *save = NULL;
        for (char *h = strtok_r(list, ",", &save); h; h = strtok_r(NULL, ",", &save))
                if (*h)
                        json_array_append_new(json_object_get(body, "hosts"), json_string(h));
        if (tol) {
                int64_t n;
                if (streq(tol, "0"))
                        n = 0;
                else {
                        int r = parse_count("tolerate", tol, &n);
                        if (r)
                                return r;
                }
                json_object_set_new(body, "tolerate", json_integer(n));
        }
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", "/clusters", body, &reply);
        if (r || !want_table(c, reply))
                return r;
        outf("cluster '%s' created with %zu hosts", a->pos[0], json_array_size(json_object_get(reply, "hosts")));
        return 0;
}

static char *member_names(json_t *cl) {
        StrBuf b = {0};
        size_t i;
        json_t *h;
        json_array_foreach(json_object_get(cl, "hosts"), i, h) {
                const char *st = jstr(h, "state");
                strbuf_printf(&b, "%s%s", b.len ? "," : "", jstr(h, "name") ? jstr(h, "name") : "?");
                if (st && !streq(st, "ok"))
                        strbuf_printf(&b, "(%s)", st);
        }
        return strbuf_steal(&b);
}

int cmd_cluster_list(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/clusters", NULL, &reply);
        if (r || !want_table(c, reply))
                return r;
        _cleanup_table_ Table *t = table_new("NAME", "HOSTS", "SHARED STORAGE", ">TOLERATE", ">HA VMS", ">PENDING", NULL);
        size_t i;
        json_t *cl;
        json_array_foreach(json_object_get(reply, "items"), i, cl) {
                _cleanup_free_ char *members = member_names(cl);
                table_add(t, jstr(cl, "name"));
                table_add(t, members);
                table_add(t, jstr(cl, "shared_storage"));
                table_addf(t, "%" PRId64, jint(cl, "tolerate", 0));
                table_addf(t, "%" PRId64, jint(cl, "n_ha_vms", 0));
                table_addf(t, "%" PRId64, jint(cl, "n_pending", 0));
        }
        table_print(t, stdout);
        return 0;
}

int cmd_cluster_show(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "clusters", "name", a->pos[0], "cluster", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/clusters/%" PRId64, id);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "GET", path, NULL, &reply);
        if (r || !want_table(c, reply))
                return r;
        _cleanup_free_ char *members = member_names(reply);
        _cleanup_table_ Table *kv = kv_new();
        char buf[64], when[64];
        kv_add(kv, "Name", jstr(reply, "name"));
        kv_add(kv, "Hosts", members);
        kv_add(kv, "Shared storage", jstr(reply, "shared_storage"));
        snprintf(buf, sizeof buf, "%" PRId64 " host failure(s)", jint(reply, "tolerate", 0));
        kv_add(kv, "Tolerates", buf);
        snprintf(buf, sizeof buf, "%" PRId64, jint(reply, "n_ha_vms", 0));
        kv_add(kv, "HA VMs", buf);
        fmt_time_of(reply, "created_at", when);
        kv_add(kv, "Created", when);
        table_print(kv, stdout);
        json_t *pending = json_object_get(reply, "pending");
        if (json_array_size(pending)) {
                outf("%s", "");
                outf("VMs waiting for room after a failover:");
                _cleanup_table_ Table *t = table_new("VM", "SINCE", "REASON", NULL);
                size_t i;
                json_t *p;
                json_array_foreach(pending, i, p) {
                        fmt_time_of(p, "since_at", when);
                        table_add(t, jstr(p, "vm_name"));
                        table_add(t, when);
                        table_add(t, jstr(p, "reason"));
                }
                table_print(t, stdout);
        }
        return 0;
}

int cmd_cluster_delete(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "clusters", "name", a->pos[0], "cluster", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/clusters/%" PRId64, id);
        r = api_call(c, "DELETE", path, NULL, NULL);
        if (r == 0 && c->output == OUTPUT_TABLE)
                outf("cluster '%s' deleted", a->pos[0]);
        return r;
}
