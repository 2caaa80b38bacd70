/* armada host, group and vm commands: the inventory. Objects are named on the
 * command line and resolved to ids through the API's ?name= and ?path=
 * filters before the call that acts on them. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

/* In JSON mode prints the reply as is and returns false; otherwise returns
 * true: the caller prints a table. */
static bool want_table(Ctx *c, json_t *reply) {
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return false;
        }
        return true;
}

static char *mib_text(json_t *o, const char *key) {
        json_t *v = json_object_get(o, key);
        if (!json_is_number(v))
                return NULL;
        char buf[32];
        fmt_bytes((uint64_t) jint(o, key, 0) << 20, buf);
        return xstrdup(buf);
}

static void add_mib(Table *t, json_t *o, const char *key) {
        _cleanup_free_ char *s = mib_text(o, key);
        table_add(t, s);
}

static void add_text(Table *t, json_t *o, const char *key) {
        _cleanup_free_ char *s = jtext(o, key);
        table_add(t, s);
}

static void kv_text(Table *t, const char *label, json_t *o, const char *key) {
        _cleanup_free_ char *s = jtext(o, key);
        kv_add(t, label, s);
}

static void kv_time(Table *t, const char *label, json_t *o, const char *key) {
        char buf[64];
        fmt_time_of(o, key, buf);
        kv_add(t, label, buf);
}

/* ---- hosts ---- */

/* A row's health (health=1) and its first reason: "warning: alert 3 ...". */
static void add_health(Table *t, json_t *row) {
        const char *h = json_string_value(json_object_get(row, "health"));
        const char *why = json_string_value(json_array_get(json_object_get(row, "health_reasons"), 0));
        _cleanup_free_ char *cell = h && why ? xasprintf("%s: %s", h, why) : NULL;
        table_add(t, cell ? cell : h ? h : "-");
}

int cmd_host_list(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        StrBuf path = {0};
        strbuf_append(&path, "/hosts");
        if (args_get(a, "state"))
                query_add(c, &path, "state", args_get(a, "state"));
        if (args_get(a, "prefix"))
                query_add(c, &path, "name_prefix", args_get(a, "prefix"));
        bool health = args_has(a, "health");
        if (health)
                query_add(c, &path, "health", "1");
        _cleanup_free_ char *p = strbuf_steal(&path);
        int r = api_list_all(c, p, &reply);
        if (r || !want_table(c, reply))
                return r;
        _cleanup_table_ Table *t = table_new("NAME", "STATE", "GROUP", ">CPUS", ">MEMORY", ">FREE", ">VMS",
                                             "TYPE", "URI", health ? "HEALTH" : NULL, NULL);
        size_t i;
        json_t *h;
        json_array_foreach(json_object_get(reply, "items"), i, h) {
                table_add(t, jstr(h, "name"));
                table_add(t, jstr(h, "state"));
                table_add(t, jstr(h, "group_path"));
                add_text(t, h, "cpus");
                add_mib(t, h, "memory_mib");
                add_mib(t, h, "free_memory_mib");
                add_text(t, h, "n_vms");
                table_add(t, jstr(h, "domain_type"));
                table_add(t, jstr(h, "uri"));
                if (health)
                        add_health(t, h);
        }
        table_print(t, stdout);
        return 0;
}

/* A host's throttle as text: its number, or armadad's default when null. */
static const char *limit_text(json_t *h, const char *key, char buf[32]) {
        json_t *v = json_object_get(h, key);
        if (!json_is_integer(v))
                return "armadad's default";
        snprintf(buf, 32, "%" PRId64, (int64_t) json_integer_value(v));
        return buf;
}

int cmd_host_show(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "hosts", "name", a->pos[0], "host", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/hosts/%" PRId64, id);
        _cleanup_json_ json_t *h = NULL;
        r = api_call(c, "GET", path, NULL, &h);
        if (r || !want_table(c, h))
                return r;
        _cleanup_table_ Table *t = kv_new();
        kv_text(t, "Name", h, "name");
        kv_text(t, "Id", h, "id");
        kv_text(t, "URI", h, "uri");
        kv_text(t, "Group", h, "group_path");
        kv_text(t, "State", h, "state");
        if (jstr(h, "state_reason") && *jstr(h, "state_reason"))
                kv_text(t, "State reason", h, "state_reason");
        kv_text(t, "CPUs", h, "cpus");
        _cleanup_free_ char *mem = mib_text(h, "memory_mib");
        _cleanup_free_ char *freem = mib_text(h, "free_memory_mib");
        kv_add(t, "Memory", mem);
        kv_add(t, "Free memory", freem);
        kv_text(t, "Hypervisor", h, "hv_driver");
        kv_text(t, "Domain type", h, "domain_type");
        kv_text(t, "Domain type preference", h, "domain_type_preference");
        kv_text(t, "Storage pool", h, "pool");
        kv_text(t, "Pool path", h, "pool_path");
        char b1[32], b2[32];
        kv_add(t, "Parallel starts", limit_text(h, "max_parallel_starts", b1));
        kv_add(t, "Parallel disk ops", limit_text(h, "max_parallel_disk_ops", b2));
        kv_text(t, "VMs", h, "n_vms");
        kv_time(t, "Last seen", h, "last_seen_at");
        table_print(t, stdout);
        return 0;
}

/* Puts --OPT N (or, when may_reset, "default": null) into body as field. */
static int throttle_opt(const Args *a, const char *opt, const char *field, bool may_reset, json_t *body) {
        const char *v = args_get(a, opt);
        if (!v)
                return 0;
        if (may_reset && streq(v, "default")) {
                json_object_set_new(body, field, json_null());
                return 0;
        }
        int64_t n;
        if (parse_i64(v, &n) < 0 || n < 1 || n > 1000)
                return fail("--%s must be a whole number from 1 to 1000%s, not '%s'", opt, may_reset ? " or 'default'" : "", v);
        json_object_set_new(body, field, json_integer(n));
        return 0;
}

int cmd_host_set(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *body = json_object();
        int r = throttle_opt(a, "max-parallel-starts", "max_parallel_starts", true, body);
        if (r == 0)
                r = throttle_opt(a, "max-parallel-disk-ops", "max_parallel_disk_ops", true, body);
        if (r)
                return r;
        if (args_get(a, "domain-type"))
                json_object_set_new(body, "domain_type_preference", json_string(args_get(a, "domain-type")));
        if (json_object_size(body) == 0)
                return fail("host set needs a setting to change: --max-parallel-starts, --max-parallel-disk-ops or --domain-type");
        int64_t id;
        r = resolve(c, "hosts", "name", a->pos[0], "host", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/hosts/%" PRId64, id);
        _cleanup_json_ json_t *h = NULL;
        r = api_call(c, "PATCH", path, body, &h);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON) {
                print_json(h);
                return 0;
        }
        char b1[32], b2[32];
        outf("host '%s': parallel starts %s, parallel disk operations %s, domain type preference %s", a->pos[0],
             limit_text(h, "max_parallel_starts", b1), limit_text(h, "max_parallel_disk_ops", b2),
             jstr(h, "domain_type_preference") ? jstr(h, "domain_type_preference") : "auto");
        return 0;
}

int cmd_host_add(Ctx *c, const Command *cmd, const Args *a) {
        const char *uri = args_get(a, "uri");
        if (!uri)
                return fail("host add needs --uri URI (for example qemu+tls://kvm1.example.com/system)");
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s}", "name", a->pos[0], "uri", uri);
        if (!body)
                return fail("arguments must be valid UTF-8");
        if (args_get(a, "group"))
                json_object_set_new(body, "group", json_string(args_get(a, "group")));
        if (args_get(a, "pool"))
                json_object_set_new(body, "pool", json_string(args_get(a, "pool")));
        if (args_get(a, "pool-path"))
                json_object_set_new(body, "pool_path", json_string(args_get(a, "pool-path")));
        int r = throttle_opt(a, "max-parallel-starts", "max_parallel_starts", false, body);
        if (r == 0)
                r = throttle_opt(a, "max-parallel-disk-ops", "max_parallel_disk_ops", false, body);
        if (r)
                return r;
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "POST", "/hosts", body, &reply);
        if (r)
                return r;
        return job_started(c, reply);
}

int cmd_host_remove(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "hosts", "name", a->pos[0], "host", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/hosts/%" PRId64 "%s", id,
                                              args_has(a, "force") ? "?force=true" : "");
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "DELETE", path, NULL, &reply);
        if (r)
                return r;
        /* The API answers 204; should it start a job instead, follow that. */
        if (json_object_get(reply, "job"))
                return job_started(c, reply);
        if (c->output == OUTPUT_TABLE)
                outf("host '%s' removed", a->pos[0]);
        return 0;
}

int cmd_host_refresh(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "hosts", "name", a->pos[0], "host", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/hosts/%" PRId64 "/actions/refresh", id);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "POST", path, NULL, &reply);
        if (r)
                return r;
        return job_started(c, reply);
}

/* ---- host groups ---- */

int cmd_group_list(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/host-groups", NULL, &reply);
        if (r || !want_table(c, reply))
                return r;
        /* The server sorts by path: a parent comes right before its children. */
        _cleanup_table_ Table *t = table_new("PATH", ">HOSTS", ">SUBGROUPS", "CREATED", NULL);
        size_t i;
        json_t *g;
        json_array_foreach(json_object_get(reply, "items"), i, g) {
                char when[64];
                table_add(t, jstr(g, "path"));
                add_text(t, g, "n_hosts");
                add_text(t, g, "n_children");
                fmt_time_of(g, "created_at", when);
                table_add(t, when);
        }
        table_print(t, stdout);
        return 0;
}

int cmd_group_create(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *body = json_pack("{s:s}", "path", a->pos[0]);
        if (!body)
                return fail("the path must be valid UTF-8");
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", "/host-groups", body, &reply);
        if (r || !want_table(c, reply))
                return r;
        outf("host group '%s' created", jstr(reply, "path") ? jstr(reply, "path") : a->pos[0]);
        return 0;
}

/* PATCHes a group; done_msg is printed when the reply has no new path. */
static int group_patch(Ctx *c, int64_t id, json_t *body, const char *old_path, const char *done_msg) {
        _cleanup_free_ char *path = xasprintf("/host-groups/%" PRId64, id);
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "PATCH", path, body, &reply);
        if (r || !want_table(c, reply))
                return r;
        const char *p = jstr(reply, "path");
        if (p)
                outf("host group '%s' is now '%s'", old_path, p);
        else
                outf("%s", done_msg);
        return 0;
}

int cmd_group_rename(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "host-groups", "path", a->pos[0], "host group", &id, NULL);
        if (r)
                return r;
        _cleanup_json_ json_t *body = json_pack("{s:s}", "name", a->pos[1]);
        if (!body)
                return fail("the name must be valid UTF-8");
        _cleanup_free_ char *msg = xasprintf("host group '%s' renamed to '%s'", a->pos[0], a->pos[1]);
        return group_patch(c, id, body, a->pos[0], msg);
}

int cmd_group_move(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id, parent;
        int r = resolve(c, "host-groups", "path", a->pos[0], "host group", &id, NULL);
        if (r)
                return r;
        /* "/" and "All Hosts" both name the root, which the API moves to by
         * its id (a null parent_id means "unchanged"). */
        r = resolve(c, "host-groups", "path", a->pos[1], "host group", &parent, NULL);
        if (r)
                return r;
        _cleanup_json_ json_t *body = json_pack("{s:I}", "parent_id", (json_int_t) parent);
        _cleanup_free_ char *msg = xasprintf("host group '%s' moved under '%s'", a->pos[0], a->pos[1]);
        return group_patch(c, id, body, a->pos[0], msg);
}

int cmd_group_delete(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "host-groups", "path", a->pos[0], "host group", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/host-groups/%" PRId64, id);
        r = api_call(c, "DELETE", path, NULL, NULL);
        if (r)
                return r;
        if (c->output == OUTPUT_TABLE)
                outf("host group '%s' deleted", a->pos[0]);
        return 0;
}

/* ---- VMs ---- */

static uint64_t disk_total(json_t *vm) {
        uint64_t sum = 0;
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(vm, "disks"), i, d) {
                int64_t b = jint(d, "size_bytes", 0);
                if (b > 0)
                        sum += (uint64_t) b;
        }
        return sum;
}

int cmd_vm_list(Ctx *c, const Command *cmd, const Args *a) {
        StrBuf path = {0};
        strbuf_append(&path, "/vms");
        if (args_get(a, "host")) {
                int64_t host_id;
                int r = resolve(c, "hosts", "name", args_get(a, "host"), "host", &host_id, NULL);
                if (r) {
                        strbuf_free(&path);
                        return r;
                }
                strbuf_printf(&path, "?host_id=%" PRId64, host_id);
        }
        if (args_get(a, "state"))
                query_add(c, &path, "state", args_get(a, "state"));
        if (args_get(a, "prefix"))
                query_add(c, &path, "name_prefix", args_get(a, "prefix"));
        if (args_get(a, "owner"))
                query_add(c, &path, "owner", args_get(a, "owner"));
        bool health = args_has(a, "health");
        if (health)
                query_add(c, &path, "health", "1");
        _cleanup_free_ char *p = strbuf_steal(&path);
        _cleanup_json_ json_t *reply = NULL;
        int r = api_list_all(c, p, &reply);
        if (r || !want_table(c, reply))
                return r;
        _cleanup_table_ Table *t = table_new("NAME", "STATE", "HOST", ">CPUS", ">MEMORY", ">DISK", "OWNER", health ? "HEALTH" : NULL, NULL);
        size_t i;
        json_t *vm;
        json_array_foreach(json_object_get(reply, "items"), i, vm) {
                char disk[32];
                table_add(t, jstr(vm, "name"));
                table_add(t, jstr(vm, "state"));
                table_add(t, jstr(vm, "host_name"));
                add_text(t, vm, "cpus");
                add_mib(t, vm, "memory_mib");
                fmt_bytes(disk_total(vm), disk);
                table_add(t, json_array_size(json_object_get(vm, "disks")) ? disk : "-");
                table_add(t, jstr(vm, "owner_name"));
                if (health)
                        add_health(t, vm);
        }
        table_print(t, stdout);
        return 0;
}

int cmd_vm_show(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "vms", "name", a->pos[0], "VM", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/vms/%" PRId64, id);
        _cleanup_json_ json_t *vm = NULL;
        r = api_call(c, "GET", path, NULL, &vm);
        if (r || !want_table(c, vm))
                return r;
        _cleanup_table_ Table *t = kv_new();
        kv_text(t, "Name", vm, "name");
        kv_text(t, "Id", vm, "id");
        kv_text(t, "UUID", vm, "uuid");
        kv_text(t, "State", vm, "state");
        kv_text(t, "Host", vm, "host_name");
        kv_text(t, "Owner", vm, "owner_name");
        kv_text(t, "CPUs", vm, "cpus");
        _cleanup_free_ char *mem = mib_text(vm, "memory_mib");
        kv_add(t, "Memory", mem);
        kv_text(t, "Domain type", vm, "domain_type");
        kv_text(t, "Origin", vm, "origin");
        kv_text(t, "Description", vm, "description");
        kv_time(t, "Created", vm, "created_at");
        kv_time(t, "Updated", vm, "updated_at");
        table_print(t, stdout);

        json_t *disks = json_object_get(vm, "disks");
        if (json_array_size(disks) > 0) {
                _cleanup_table_ Table *d = table_new("TARGET", ">SIZE", "PATH", NULL);
                size_t i;
                json_t *disk;
                json_array_foreach(disks, i, disk) {
                        char size[32];
                        table_add(d, jstr(disk, "target"));
                        fmt_bytes((uint64_t) jint(disk, "size_bytes", 0), size);
                        table_add(d, json_is_number(json_object_get(disk, "size_bytes")) ? size : NULL);
                        table_add(d, jstr(disk, "path"));
                }
                printf("\nDisks:\n");
                table_print(d, stdout);
        }
        return 0;
}

static const char *const DOMAIN_TYPES[] = { "auto", "kvm", "qemu" };

/* Says where a new VM goes: the host placement chose (with its rating), or
 * the host the caller named. "placement" is null or absent when the caller
 * named the host; the host then comes from the VM in the reply. */
static void print_vm_host(json_t *reply, const char *name, const char *named_host) {
        json_t *pl = json_object_get(reply, "placement");
        const char *vm = jstr(json_object_get(reply, "vm"), "name");
        if (!vm)
                vm = name;
        if (json_is_object(pl) && jstr(pl, "host")) {
                outf("placement chose host '%s' for VM '%s' (rating %.1f, %.1f of 5 stars)", jstr(pl, "host"), vm,
                     json_number_value(json_object_get(pl, "rating")), json_number_value(json_object_get(pl, "stars")));
                return;
        }
        const char *host = jstr(json_object_get(reply, "vm"), "host_name");
        if (!host)
                host = named_host;
        if (host)
                outf("VM '%s' goes to host '%s'", vm, host);
}

int cmd_vm_create(Ctx *c, const Command *cmd, const Args *a) {
        const char *host = args_get(a, "host"), *cpus_s = args_get(a, "cpus");
        const char *mem_s = args_get(a, "memory"), *disk = args_get(a, "disk");
        const char *dtype = args_get(a, "domain-type");
        int64_t cpus;
        uint64_t mem_bytes, disk_bytes;

        if (!cpus_s || !mem_s || !disk)
                return fail("vm create needs --cpus, --memory and --disk; see 'armada vm create --help'");
        if (parse_i64(cpus_s, &cpus) < 0 || cpus < 1 || cpus > 4096)
                return fail("--cpus must be a whole number from 1 to 4096, not '%s'", cpus_s);
        /* --memory is in MiB; "4G" and "512M" are accepted too. */
        if (size_parse(mem_s, 1ULL << 20, &mem_bytes) < 0 || mem_bytes < (1ULL << 20) ||
            mem_bytes % (1ULL << 20) != 0 || (mem_bytes >> 20) > INT32_MAX)
                return fail("--memory must be a number of MiB (or a size such as '4G'), not '%s'", mem_s);
        if (size_parse(disk, 1ULL << 30, &disk_bytes) < 0 || disk_bytes == 0)
                return fail("--disk must be a size such as '20G' or '512M', not '%s'", disk);
        if (dtype) {
                bool ok = false;
                for (size_t i = 0; i < ELEMENTSOF(DOMAIN_TYPES); i++)
                        ok = ok || streq(dtype, DOMAIN_TYPES[i]);
                if (!ok)
                        return fail("--domain-type must be 'auto', 'kvm' or 'qemu', not '%s'", dtype);
        }
        /* A bare number for --disk means GiB here, but the API reads a bare
         * number as bytes: always send a unit. */
        _cleanup_free_ char *disk_size = str_is_digits(disk) ? xasprintf("%sG", disk) : xstrdup(disk);

        _cleanup_json_ json_t *body = json_pack("{s:s, s:I, s:I, s:s}", "name", a->pos[0],
                                                "cpus", (json_int_t) cpus, "memory_mib",
                                                (json_int_t) (mem_bytes >> 20), "disk_size", disk_size);
        if (!body)
                return fail("arguments must be valid UTF-8");
        /* Without --host the server's placement picks the best-rated host in
         * --group; with both, the server checks the host is in the group. */
        if (host)
                json_object_set_new(body, "host", json_string(host));
        if (args_has(a, "no-nic"))
                json_object_set_new(body, "nic", json_false());
        if (args_has(a, "force")) {
                if (!host)
                        return fail("--force goes with --host: it places the VM on that host though the host lacks the memory");
                json_object_set_new(body, "force", json_true());
        }
        if (args_get(a, "group"))
                json_object_set_new(body, "group", json_string(args_get(a, "group")));
        if (dtype)
                json_object_set_new(body, "domain_type", json_string(dtype));
        if (args_get(a, "description"))
                json_object_set_new(body, "description", json_string(args_get(a, "description")));
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", "/vms", body, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_TABLE)
                print_vm_host(reply, a->pos[0], host);
        return job_started(c, reply);
}

int cmd_vm_action(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "vms", "name", a->pos[0], "VM", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/actions/%s", id, cmd->verb);
        _cleanup_json_ json_t *reply = NULL;
        _cleanup_json_ json_t *body = NULL;
        if (streq(cmd->verb, "stop") && (args_get(a, "timeout") || args_has(a, "no-force"))) {
                body = json_object();
                const char *t = args_get(a, "timeout");
                int64_t secs;
                if (t) {
                        if (parse_i64(t, &secs) < 0 || secs < 1 || secs > 3600) {
                                return fail("--timeout must be a whole number of seconds from 1 to 3600, not '%s'", t);
                        }
                        json_object_set_new(body, "timeout_s", json_integer(secs));
                }
                if (args_has(a, "no-force"))
                        json_object_set_new(body, "force", json_false());
        }
        r = api_call(c, "POST", path, body, &reply);
        if (r)
                return r;
        return job_started(c, reply);
}

/* armada vm set NAME: what an operator says of a VM (its owner, its
 * description) and its sizes (vCPUs, memory: cmd_hardware.c). */
int cmd_vm_set(Ctx *c, const Command *cmd, const Args *a) {
        const char *owner = args_get(a, "owner"), *desc = args_get(a, "description");
        bool no_owner = args_has(a, "no-owner"), hw = hardware_set_wanted(a);
        if (owner && no_owner)
                return fail("give either --owner USER or --no-owner, not both");
        if (!owner && !no_owner && !desc && !hw)
                return fail("vm set needs a setting to change: --owner USER, --no-owner, --description TEXT, --cpus N or --memory MIB");
        if (hw) {
                /* Sizes first: they are the part a host can refuse. */
                int64_t id;
                int r = resolve(c, "vms", "name", a->pos[0], "VM", &id, NULL);
                if (r == 0)
                        r = hardware_set(c, id, a->pos[0], a);
                if (r || (!owner && !no_owner && !desc))
                        return r;
        }
        _cleanup_json_ json_t *body = json_object();
        if (owner || no_owner)
                json_object_set_new(body, "owner", owner ? json_string(owner) : json_null());
        if (desc)
                json_object_set_new(body, "description", json_string(desc));
        int64_t id;
        int r = resolve(c, "vms", "name", a->pos[0], "VM", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/vms/%" PRId64, id);
        _cleanup_json_ json_t *vm = NULL;
        r = api_call(c, "PATCH", path, body, &vm);
        if (r || !want_table(c, vm))
                return r;
        const char *o = jstr(vm, "owner_name");
        if (owner || no_owner)
                outf("VM '%s': %s%s%s", a->pos[0], o ? "owned by '" : "no owner", o ? o : "", o ? "'" : "");
        if (desc)
                outf("VM '%s': description %s", a->pos[0], *desc ? "set" : "cleared");
        return 0;
}

int cmd_vm_delete(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "vms", "name", a->pos[0], "VM", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "%s", id,
                                              args_has(a, "keep-disks") ? "?keep_disks=true" : "");
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "DELETE", path, NULL, &reply);
        if (r)
                return r;
        if (!reply) {
                if (c->output == OUTPUT_TABLE)
                        outf("VM '%s' deleted", a->pos[0]);
                return 0;
        }
        return job_started(c, reply);
}
