/* armada vm set --cpus/--memory, vm hardware, vm disk add|resize|remove,
 * vm cd insert|eject, vm boot-order: a VM's virtual hardware through
 * /vms/{id}/hardware, /disks, /cd and /boot-order. Each change prints what
 * was applied live and what waits for the VM's next boot. */
#include "cli.h"

#include <inttypes.h>
#include <string.h>

const OptSpec HW_DISK_OPTS[] = {
        { "size", 0, true, "SIZE", "disk add, resize: the size (20G, 512M; a bare number is GiB)" },
        { "bus", 0, true, "BUS", "disk add: virtio (default) or sata" },
        { "keep-volume", 0, false, NULL, "disk remove: keep the disk's volume on the host" },
        { NULL, 0, false, NULL, NULL },
};

static bool want_table(Ctx *c, json_t *reply) {
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return false;
        }
        return true;
}

/* A memory size in MiB: "2048", "2G", "512M". */
static int parse_mib(const char *opt, const char *s, int64_t *ret) {
        uint64_t b;
        if (size_parse(s, 1ULL << 20, &b) < 0 || b < (1ULL << 20) || (b >> 20) > INT64_MAX)
                return fail("--%s must be a memory size such as 2048 (MiB), 512M or 4G, not '%s'", opt, s);
        *ret = (int64_t) (b >> 20);
        return 0;
}

bool hardware_set_wanted(const Args *a) {
        return args_get(a, "cpus") || args_get(a, "max-cpus") || args_get(a, "memory") || args_get(a, "max-memory");
}

int hardware_set(Ctx *c, int64_t id, const char *name, const Args *a) {
        _cleanup_json_ json_t *body = json_object();
        static const struct { const char *opt, *field; bool mib; } map[] = {
                { "cpus", "cpus", false }, { "max-cpus", "max_cpus", false },
                { "memory", "memory_mib", true }, { "max-memory", "max_memory_mib", true },
        };
        for (size_t i = 0; i < ELEMENTSOF(map); i++) {
                const char *v = args_get(a, map[i].opt);
                int64_t n;
                if (!v)
                        continue;
                if (map[i].mib) {
                        int r = parse_mib(map[i].opt, v, &n);
                        if (r)
                                return r;
                } else if (parse_i64(v, &n) < 0 || n < 1)
                        return fail("--%s must be a whole number of vCPUs, not '%s'", map[i].opt, v);
                json_object_set_new(body, map[i].field, json_integer(n));
        }
        _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/hardware", id);
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "PATCH", path, body, &reply);
        if (r || !want_table(c, reply))
                return r;
        json_t *applied = json_object_get(reply, "applied");
        const char *k;
        json_t *v;
        json_object_foreach(applied, k, v) {
                const char *how = json_string_value(v);
                outf("VM '%s': %s %" PRId64 " %s", name, k, jint(body, k, 0),
                     how && streq(how, "live") ? "(live)" : "(from the next boot)");
        }
        return 0;
}

int cmd_vm_hardware(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "vms", "name", a->pos[0], "VM", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/hardware", id);
        _cleanup_json_ json_t *hw = NULL;
        r = api_call(c, "GET", path, NULL, &hw);
        if (r || !want_table(c, hw))
                return r;
        json_t *nb = json_object_get(hw, "next_boot");
        _cleanup_table_ Table *t = table_new("", "NOW", "NEXT BOOT", NULL);
        static const char *const rows[][2] = { { "vCPUs", "cpus" }, { "max vCPUs", "max_cpus" }, { "memory MiB", "memory_mib" },
                                               { "max memory MiB", "max_memory_mib" } };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                table_add(t, rows[i][0]);
                table_addf(t, "%" PRId64, jint(hw, rows[i][1], 0));
                table_addf(t, "%" PRId64, jint(nb, rows[i][1], 0));
        }
        StrBuf b = {0};
        size_t i;
        json_t *w;
        json_array_foreach(json_object_get(hw, "boot_order"), i, w)
                strbuf_printf(&b, "%s%s", i ? "," : "", json_string_value(w) ? json_string_value(w) : "?");
        _cleanup_free_ char *boot = strbuf_steal(&b);
        table_add(t, "boot order");
        table_add(t, "");
        table_add(t, boot);
        table_print(t, stdout);
        _cleanup_table_ Table *d = table_new("DISK", ">SIZE", "PATH", NULL);
        json_t *disk;
        json_array_foreach(json_object_get(hw, "disks"), i, disk) {
                char sz[32];
                fmt_bytes((uint64_t) jint(disk, "size_bytes", 0), sz);
                table_add(d, jstr(disk, "target"));
                table_add(d, sz);
                table_add(d, jstr(disk, "path"));
        }
        if (json_array_size(json_object_get(hw, "disks")) > 0) {
                outf("%s", "");
                table_print(d, stdout);
        }
        return 0;
}

static const char *applied_words(json_t *reply) {
        const char *how = jstr(reply, "applied");
        return how && streq(how, "live") ? "live" : "from the next boot";
}

int cmd_vm_disk(Ctx *c, const Command *cmd, const Args *a) {
        const char *what = a->pos[0];
        bool add = streq(what, "add"), resize = streq(what, "resize"), del = streq(what, "remove");
        if (!add && !resize && !del)
                return fail("'vm disk' takes add, resize or remove, not '%s'", what);
        if (a->n_pos < 2)
                return fail("'vm disk %s' needs the VM's name", what);
        if ((resize || del) && a->n_pos < 3)
                return fail("'vm disk %s' needs the disk's target (vdb, sda, ...) after the VM's name", what);
        if (add && a->n_pos > 2)
                return fail("'vm disk add' takes the VM's name and --size");
        const char *size = args_get(a, "size");
        if ((add || resize) && !size)
                return fail("'vm disk %s' needs --size (20G, 512M)", what);
        if (del && size)
                return fail("--size goes with 'vm disk add' and 'vm disk resize'");
        if (!add && args_get(a, "bus"))
                return fail("--bus only goes with 'vm disk add'");
        if (!del && args_has(a, "keep-volume"))
                return fail("--keep-volume only goes with 'vm disk remove'");
        const char *target = a->n_pos > 2 ? a->pos[2] : NULL;
        if (target && (strlen(target) > 16 || strspn(target, "abcdefghijklmnopqrstuvwxyz") != strlen(target)))
                return fail("'%s' is not a disk target (vdb, sda, ...)", target);
        int64_t id;
        int r = resolve(c, "vms", "name", a->pos[1], "VM", &id, NULL);
        if (r)
                return r;
        _cleanup_json_ json_t *reply = NULL;
        if (add) {
                _cleanup_json_ json_t *body = json_pack("{s:s}", "size", size);
                if (args_get(a, "bus"))
                        json_object_set_new(body, "bus", json_string(args_get(a, "bus")));
                _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/disks", id);
                r = api_call(c, "POST", path, body, &reply);
        } else if (resize) {
                _cleanup_json_ json_t *body = json_pack("{s:s}", "size", size);
                _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/disks/%s", id, target);
                r = api_call(c, "PATCH", path, body, &reply);
        } else {
                _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/disks/%s%s", id, target,
                                                      args_has(a, "keep-volume") ? "?keep_volume=true" : "");
                r = api_call(c, "DELETE", path, NULL, &reply);
        }
        if (r || !want_table(c, reply))
                return r;
        json_t *disk = json_object_get(reply, "disk");
        char sz[32];
        fmt_bytes((uint64_t) jint(disk, "size_bytes", 0), sz);
        if (add)
                outf("VM '%s': new %s disk %s (%s) at %s", a->pos[1], sz, jstr(disk, "target"), applied_words(reply), jstr(disk, "path"));
        else if (resize)
                outf("VM '%s': disk %s is %s now (%s)", a->pos[1], target, sz, applied_words(reply));
        else
                outf("VM '%s': disk %s removed (%s); its volume was %s", a->pos[1], target, applied_words(reply),
                     json_is_true(json_object_get(reply, "volume_deleted")) ? "deleted" : "kept");
        return 0;
}

int cmd_vm_cd(Ctx *c, const Command *cmd, const Args *a) {
        const char *what = a->pos[0];
        bool insert = streq(what, "insert"), eject = streq(what, "eject");
        if (!insert && !eject)
                return fail("'vm cd' takes insert or eject, not '%s'", what);
        if (a->n_pos < 2)
                return fail("'vm cd %s' needs the VM's name", what);
        if (insert && a->n_pos < 3)
                return fail("'vm cd insert' needs the ISO (a library ISO's name or id) after the VM's name");
        if (eject && a->n_pos > 2)
                return fail("'vm cd eject' takes only the VM's name");
        int64_t id;
        int r = resolve(c, "vms", "name", a->pos[1], "VM", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/cd", id);
        _cleanup_json_ json_t *reply = NULL;
        if (insert) {
                _cleanup_json_ json_t *body = json_pack("{s:s}", "iso", a->pos[2]);
                r = api_call(c, "POST", path, body, &reply);
                return r ? r : job_started(c, reply);
        }
        r = api_call(c, "DELETE", path, NULL, &reply);
        if (r || !want_table(c, reply))
                return r;
        outf("VM '%s': CD ejected from drive %s (%s)", a->pos[1], jstr(reply, "drive"), applied_words(reply));
        return 0;
}

int cmd_vm_boot_order(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *order = json_array();
        _cleanup_free_ char *list = xstrdup(a->pos[1]);
        char *save = NULL;
        for (char *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save))
                json_array_append_new(order, json_string(w));
        if (json_array_size(order) == 0)
                return fail("give the boot order as a list such as cd,disk");
        int64_t id;
        int r = resolve(c, "vms", "name", a->pos[0], "VM", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/boot-order", id);
        _cleanup_json_ json_t *body = json_pack("{s:O}", "order", order);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "PUT", path, body, &reply);
        if (r || !want_table(c, reply))
                return r;
        outf("VM '%s' boots from %s from its next boot on", a->pos[0], a->pos[1]);
        return 0;
}
