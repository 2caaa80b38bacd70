/* The networks-and-storage commands of armada (issue 12): networks per host
 * or host group, the network cards of VMs, storage pools and volumes. */
#include "cli.h"

#include <inttypes.h>
#include <string.h>

const OptSpec NETWORK_CREATE_OPTS[] = {
        { "group", 'g', true, "PATH", "create it on every host of this host group (and its subgroups, and hosts that join later)" },
        { "host", 0, true, "NAME", "create it on this host only" },
        { "mode", 0, true, "MODE", "nat (the default), bridge (to --bridge of each host) or isolated" },
        { "bridge", 0, true, "BRIDGE", "with --mode bridge: the hosts' bridge, e.g. br0" },
        { "vlan", 0, true, "N", "with --mode bridge: tag the network's traffic with VLAN N (needs Open vSwitch on the host)" },
        { "subnet", 0, true, "CIDR", "nat or isolated: the network's IPv4 subnet, e.g. 10.1.2.0/24 (hosts get .1, DHCP the rest)" },
        { "default", 0, false, NULL, "with --group: blank VMs created in the group get a NIC on this network" },
        { NULL, 0, false, NULL, NULL },
};
const OptSpec NIC_OPTS[] = {
        { "network", 0, true, "NET", "add: the network the card is on (required)" },
        { "mac", 0, true, "MAC", "add: the card's MAC address (default: a free 52:54:00:xx:xx:xx)" },
        { "model", 0, true, "MODEL", "add: virtio (the default), e1000 or rtl8139" },
        { NULL, 0, false, NULL, NULL },
};
const OptSpec POOL_LIST_OPTS[] = {
        { "host", 0, true, "NAME", "only this host's pools" },
        { NULL, 0, false, NULL, NULL },
};
const OptSpec POOL_ADD_OPTS[] = {
        { "type", 0, true, "TYPE", "dir (the default), netfs (NFS), iscsi or logical (an LVM volume group)" },
        { "path", 0, true, "DIR", "dir, netfs: the directory on the host" },
        { "source-host", 0, true, "SERVER", "netfs, iscsi: the server" },
        { "source-path", 0, true, "DIR", "netfs: the exported directory" },
        { "source-name", 0, true, "NAME", "iscsi: the target's IQN; logical: the volume group" },
        { NULL, 0, false, NULL, NULL },
};

static bool want_table(Ctx *c, json_t *reply) {
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return false;
        }
        return true;
}

/* ---- networks ---- */

int cmd_network_list(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/networks", NULL, &reply);
        if (r || !want_table(c, reply))
                return r;
        _cleanup_table_ Table *t = table_new("NAME", "MODE", "ON", "BRIDGE", ">VLAN", "SUBNET", "HOSTS", NULL);
        size_t i;
        json_t *n;
        json_array_foreach(json_object_get(reply, "items"), i, n) {
                table_add(t, jstr(n, "name"));
                table_add(t, jstr(n, "mode"));
                if (jstr(n, "host_name"))
                        table_addf(t, "host %s", jstr(n, "host_name"));
                else
                        table_addf(t, "group %s%s", jstr(n, "group_path") && *jstr(n, "group_path") ? jstr(n, "group_path") : ROOT_GROUP_NAME,
                                   json_is_true(json_object_get(n, "is_default")) ? " (default)" : "");
                table_add(t, jstr(n, "bridge"));
                if (jint(n, "vlan", 0))
                        table_addf(t, "%" PRId64, jint(n, "vlan", 0));
                else
                        table_add(t, NULL);
                table_add(t, jstr(n, "subnet"));
                /* per host: "h1 active, h2 missing" */
                StrBuf b = {0};
                size_t k;
                json_t *h;
                json_array_foreach(json_object_get(n, "hosts"), k, h)
                        strbuf_printf(&b, "%s%s %s", k ? ", " : "", jstr(h, "host_name"), jstr(h, "state"));
                table_add(t, b.s ? b.s : "(none yet)");
                strbuf_free(&b);
        }
        table_print(t, stdout);
        return 0;
}

int cmd_network_create(Ctx *c, const Command *cmd, const Args *a) {
        const char *group = args_get(a, "group"), *host = args_get(a, "host");
        if (!!group == !!host)
                return fail("give --group PATH or --host NAME (where the network goes)");
        _cleanup_json_ json_t *body = json_pack("{s:s}", "name", a->pos[0]);
        if (group)
                json_object_set_new(body, "group", json_string(group));
        if (host)
                json_object_set_new(body, "host", json_string(host));
        static const char *const text_opts[] = { "mode", "bridge", "subnet" };
        for (size_t i = 0; i < ELEMENTSOF(text_opts); i++)
                if (args_get(a, text_opts[i]))
                        json_object_set_new(body, text_opts[i], json_string(args_get(a, text_opts[i])));
        if (args_get(a, "vlan")) {
                int64_t n;
                int r = parse_count("vlan", args_get(a, "vlan"), &n);
                if (r)
                        return r;
                json_object_set_new(body, "vlan", json_integer(n));
        }
        if (args_has(a, "default"))
                json_object_set_new(body, "default", json_true());
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", "/networks", body, &reply);
        if (r)
                return r;
        return job_started(c, reply);
}

int cmd_network_delete(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "networks", "name", a->pos[0], "network", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/networks/%" PRId64, id);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "DELETE", path, NULL, &reply);
        if (r)
                return r;
        return job_started(c, reply);
}

/* ---- NICs ---- */

static int nic_list(Ctx *c, int64_t vm_id) {
        _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/nics", vm_id);
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", path, NULL, &reply);
        if (r || !want_table(c, reply))
                return r;
        _cleanup_table_ Table *t = table_new("MAC", "NETWORK", "MODEL", NULL);
        size_t i;
        json_t *n;
        json_array_foreach(json_object_get(reply, "items"), i, n) {
                table_add(t, jstr(n, "mac"));
                table_add(t, jstr(n, "network"));
                table_add(t, jstr(n, "model"));
        }
        table_print(t, stdout);
        return 0;
}

int cmd_vm_nic(Ctx *c, const Command *cmd, const Args *a) {
        const char *what = a->pos[0];
        bool add = streq(what, "add"), remove = streq(what, "remove"), list = streq(what, "list");
        if (!add && !remove && !list)
                return fail("'vm nic' takes add, remove or list, not '%s'", what);
        if (a->n_pos < 2)
                return fail("'vm nic %s' needs the VM's name", what);
        if (remove != (a->n_pos == 3))
                return fail(remove ? "'vm nic remove' needs the card's MAC address after the VM's name"
                                   : "'vm nic %s' takes only the VM's name", what);
        if (!add && (args_get(a, "network") || args_get(a, "mac") || args_get(a, "model")))
                return fail("--network, --mac and --model only go with 'vm nic add'");
        if (add && !args_get(a, "network"))
                return fail("'vm nic add' needs --network NET");
        int64_t id;
        int r = resolve(c, "vms", "name", a->pos[1], "VM", &id, NULL);
        if (r)
                return r;
        if (list)
                return nic_list(c, id);
        _cleanup_json_ json_t *reply = NULL;
        if (add) {
                _cleanup_json_ json_t *body = json_pack("{s:s}", "network", args_get(a, "network"));
                if (args_get(a, "mac"))
                        json_object_set_new(body, "mac", json_string(args_get(a, "mac")));
                if (args_get(a, "model"))
                        json_object_set_new(body, "model", json_string(args_get(a, "model")));
                _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/nics", id);
                r = api_call(c, "POST", path, body, &reply);
        } else {
                StrBuf p = {0};
                strbuf_printf(&p, "/vms/%" PRId64 "/nics/", id);
                /* a MAC is hex digits and ':' only; anything else the server refuses */
                strbuf_append(&p, a->pos[2]);
                r = api_call(c, "DELETE", p.s, NULL, &reply);
                strbuf_free(&p);
        }
        if (r)
                return r;
        if (add && c->output == OUTPUT_TABLE)
                outf("network card %s on network '%s'", jstr(json_object_get(reply, "nic"), "mac"), args_get(a, "network"));
        return job_started(c, reply);
}

/* ---- storage pools and volumes ---- */

static void add_bytes(Table *t, json_t *o, const char *key) {
        char b[32];
        fmt_bytes((uint64_t) jint(o, key, 0), b);
        table_add(t, b);
}

int cmd_pool_list(Ctx *c, const Command *cmd, const Args *a) {
        StrBuf p = {0};
        strbuf_append(&p, "/pools");
        if (args_get(a, "host"))
                query_add(c, &p, "host", args_get(a, "host"));
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", p.s, NULL, &reply);
        strbuf_free(&p);
        if (r || !want_table(c, reply))
                return r;
        _cleanup_table_ Table *t = table_new("HOST", "POOL", "TYPE", "STATE", ">SIZE", ">USED", ">FREE", ">VOLUMES", "PATH", NULL);
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(reply, "items"), i, o) {
                table_add(t, jstr(o, "host_name"));
                table_addf(t, "%s%s", jstr(o, "name"), json_is_true(json_object_get(o, "armada")) ? " (armada)" : "");
                table_add(t, jstr(o, "type"));
                table_add(t, json_is_true(json_object_get(o, "active")) ? "active" : "inactive");
                add_bytes(t, o, "capacity_bytes");
                add_bytes(t, o, "allocation_bytes");
                add_bytes(t, o, "available_bytes");
                table_addf(t, "%" PRId64, jint(o, "n_volumes", 0));
                table_add(t, jstr(o, "path"));
        }
        table_print(t, stdout);
        return 0;
}

int cmd_pool_add(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "hosts", "name", a->pos[0], "host", &id, NULL);
        if (r)
                return r;
        _cleanup_json_ json_t *body = json_pack("{s:s}", "name", a->pos[1]);
        static const char *const opts[][2] = { { "type", "type" }, { "path", "path" }, { "source-host", "source_host" },
                                               { "source-path", "source_path" }, { "source-name", "source_name" } };
        for (size_t i = 0; i < ELEMENTSOF(opts); i++)
                if (args_get(a, opts[i][0]))
                        json_object_set_new(body, opts[i][1], json_string(args_get(a, opts[i][0])));
        _cleanup_free_ char *path = xasprintf("/hosts/%" PRId64 "/pools", id);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "POST", path, body, &reply);
        if (r || !want_table(c, reply))
                return r;
        char size[32];
        fmt_bytes((uint64_t) jint(reply, "capacity_bytes", 0), size);
        outf("storage pool '%s' added to host '%s' (%s)", a->pos[1], a->pos[0], size);
        return 0;
}

/* "/hosts/ID/pools/POOL" with POOL escaped, for host and pool names. */
static int pool_path(Ctx *c, const char *host, const char *pool, StrBuf *ret) {
        int64_t id;
        int r = resolve(c, "hosts", "name", host, "host", &id, NULL);
        if (r)
                return r;
        strbuf_printf(ret, "/hosts/%" PRId64 "/pools/", id);
        strbuf_append(ret, pool);
        return 0;
}

int cmd_pool_remove(Ctx *c, const Command *cmd, const Args *a) {
        StrBuf p = {0};
        int r = pool_path(c, a->pos[0], a->pos[1], &p);
        if (r == 0)
                r = api_call(c, "DELETE", p.s, NULL, NULL);
        strbuf_free(&p);
        if (r == 0 && c->output == OUTPUT_TABLE)
                outf("storage pool '%s' removed from host '%s' (its data stays)", a->pos[1], a->pos[0]);
        return r;
}

int cmd_volume_list(Ctx *c, const Command *cmd, const Args *a) {
        StrBuf p = {0};
        int r = pool_path(c, a->pos[0], a->pos[1], &p);
        _cleanup_json_ json_t *reply = NULL;
        if (r == 0) {
                strbuf_append(&p, "/volumes");
                r = api_call(c, "GET", p.s, NULL, &reply);
        }
        strbuf_free(&p);
        if (r || !want_table(c, reply))
                return r;
        _cleanup_table_ Table *t = table_new("VOLUME", "FORMAT", ">SIZE", ">USED", "VM", NULL);
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(reply, "items"), i, o) {
                table_add(t, jstr(o, "name"));
                table_add(t, jstr(o, "format"));
                add_bytes(t, o, "capacity_bytes");
                add_bytes(t, o, "allocation_bytes");
                table_add(t, jstr(json_object_get(o, "vm"), "name"));
        }
        table_print(t, stdout);
        return 0;
}

int cmd_volume_delete(Ctx *c, const Command *cmd, const Args *a) {
        StrBuf p = {0};
        int r = pool_path(c, a->pos[0], a->pos[1], &p);
        if (r == 0) {
                strbuf_append(&p, "/volumes/");
                strbuf_append(&p, a->pos[2]);
                r = api_call(c, "DELETE", p.s, NULL, NULL);
        }
        strbuf_free(&p);
        if (r == 0 && c->output == OUTPUT_TABLE)
                outf("volume '%s' of storage pool '%s' on host '%s' deleted", a->pos[2], a->pos[1], a->pos[0]);
        return r;
}
