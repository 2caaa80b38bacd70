/* inventory: a VM's virtual hardware (inventory.h, "Hardware") — vCPUs and
 * memory, disks, the CD-ROM and its ISO from the library, the boot order.
 * Each operation checks the caller (it changes the VM: update rights, so
 * never a self-service user, whose VM sizes are its grant's quota), the
 * VM (not foreign, not being created or deleted, on a connected host) and
 * a growth of memory against the host's reserve (placement), then asks
 * hv-hardware to change the domain live or for its next boot, keeps the
 * VM's row in step, audits and records an event. Quick changes answer at
 * once; a CD insert, which may have to copy the ISO to the host, is the
 * job vm.cd-insert. */
#include "inventory-priv.h"
#include "hv/hv-hardware.h"
#include "hv/hv-volume.h"
#include "place/place.h"
#include "placement/placement.h"
#include "store/store-ha.h"
#include "store/store-library.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* What every change holds while it works: the VM (its JSON and row), its
 * host and the host's live link. */
typedef struct {
        json_t *v;
        StoreVm vm;
        StoreHost host;
        Link *link;
        int64_t grant_id;            /* a self-service owner's grant: its quota bounds the change */
} HwVm;

static void hwvm_done(Inventory *inv, HwVm *h) {
        json_decref(h->v);
        h->v = NULL;
        if (h->link)
                link_release(inv, h->link);
        h->link = NULL;
}

/* Whether a self-service caller may size its own VM: one it owns that was
 * deployed under a grant, whose quota then bounds the change
 * (hardware_quota); 0 when not (or on a database error: denied). */
static int64_t self_service_grant(Inventory *inv, const OpCaller *c, const json_t *v) {
        int64_t grant_id = 0;
        if (c->subj.role != ROLE_SELF_SERVICE || c->user_id <= 0 || jget_int(v, "owner_id") != c->user_id ||
            store_vm_grant(inv->st, jget_int(v, "id"), &grant_id) < 0)
                return 0;
        return grant_id;
}

/* The checks of every operation, in this order: the caller sees the VM
 * (404), may change it (403, audited; with write false, reading is
 * enough; with self_ok, a self-service owner of a granted VM may too,
 * within its quota), it is Armada's (409 foreign), not being created or
 * deleted (409), placed (409) and its host connected now (503: an HTTP
 * thread never connects). */
static int hw_open_as(Inventory *inv, const OpCaller *c, int64_t id, bool write, bool self_ok, HwVm *ret, OpError *err) {
        *ret = (HwVm) {0};
        int r = inventory_vm_readable(inv, c, id, &ret->v, err);
        if (r < 0)
                return r;
        const char *name = jget_str(ret->v, "name");
        if (write && !op_allowed(inv->st, c, ACT_UPDATE, OBJ_VM, jget_int(ret->v, "owner_id"), jget_int(ret->v, "group_id")) &&
            !(self_ok && (ret->grant_id = self_service_grant(inv, c, ret->v)) > 0)) {
                r = op_deny(inv->st, c, err, "change the hardware of", "VM", id, name);
                goto fail;
        }
        if (write && (r = inventory_vm_refuse_foreign(ret->v, err)) < 0)
                goto fail;
        const char *state = jget_str(ret->v, "state");
        if (streq(state, "creating") || streq(state, "deleting") || streq(state, "missing")) {
                r = op_fail(err, 409, "conflict", NULL, "VM '%s' is %s; its hardware cannot be changed now.", name, state);
                goto fail;
        }
        if ((r = store_vm_get(inv->st, id, &ret->vm)) < 0 ||
            (r = ret->vm.host_id > 0 ? store_host_get(inv->st, ret->vm.host_id, &ret->host) : -ENXIO) < 0) {
                r = r == -ENXIO || r == -ENOENT ? op_fail(err, 409, "conflict", NULL, "VM '%s' is not placed on any host.", name)
                                                : op_fail_store(err, r, "the VM");
                goto fail;
        }
        ret->link = link_peek(inv, ret->host.id);
        if (!ret->link) {
                r = op_fail(err, 503, "unavailable", NULL, "Host '%s' of VM '%s' is not connected right now; try again later.",
                            ret->host.name, name);
                goto fail;
        }
        return 0;
fail:
        hwvm_done(inv, ret);
        return r;
}

static int hw_open(Inventory *inv, const OpCaller *c, int64_t id, bool write, HwVm *ret, OpError *err) {
        return hw_open_as(inv, c, id, write, false, ret, err);
}

/* err for a failed hv call r on the VM: what was being done, and why. */
static int hw_fail(OpError *err, int r, const HwVm *h, const char *doing) {
        const char *why = hv_last_error();
        if (r == -ENOENT)
                return op_fail(err, 409, "conflict", NULL, "Cannot %s VM '%s': host '%s' has no such domain or device now (%s).", doing,
                               h->vm.name, h->host.name, why);
        if (r == -EBUSY)
                return op_fail(err, 409, "conflict", NULL, "Cannot %s VM '%s': %s.", doing, h->vm.name, why);
        if (r == -ETIMEDOUT)
                return op_fail(err, 503, "unavailable", NULL, "Cannot %s VM '%s': host '%s' did not answer in time.", doing,
                               h->vm.name, h->host.name);
        op_fail(err, 502, "host_error", NULL, "Cannot %s VM '%s' on host '%s': %s.", doing, h->vm.name, h->host.name, why);
        return r < 0 ? r : -EIO;
}

static void hw_event(Inventory *inv, const HwVm *h, const char *kind, const char *fmt, ...) _printf_(4, 5);
static void hw_event(Inventory *inv, const HwVm *h, const char *kind, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *msg = NULL;
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (msg)
                (void) store_event_add(inv->st, "info", kind, "vm", h->vm.id, h->vm.name, h->vm.owner_id, msg);
}

/* The API's words for boot devices and libvirt's. */
static const char *boot_word(const char *dev) {
        if (streq(dev, "cdrom")) return "cd";
        if (streq(dev, "hd")) return "disk";
        return dev;
}

static json_t *hardware_json(const HvHardware *hw, json_t *disks) {
        json_t *boot = json_array();
        for (size_t i = 0; i < hw->n_boot; i++)
                json_array_append_new(boot, json_string(boot_word(hw->boot[i])));
        return json_pack("{s:b, s:i, s:i, s:I, s:I, s:{s:i, s:i, s:I, s:I}, s:o, s:o}", "running", hw->running, "cpus",
                         (int) hw->vcpus, "max_cpus", (int) hw->max_vcpus, "memory_mib", (json_int_t) hw->memory_mib,
                         "max_memory_mib", (json_int_t) hw->max_memory_mib, "next_boot", "cpus", (int) hw->config_vcpus,
                         "max_cpus", (int) hw->config_max_vcpus, "memory_mib", (json_int_t) hw->config_memory_mib,
                         "max_memory_mib", (json_int_t) hw->config_max_memory_mib, "boot_order", boot, "disks",
                         disks ? disks : json_array());
}

int inventory_vm_hardware_get(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        HwVm h;
        int r = hw_open(inv, c, id, false, &h, err);
        if (r < 0)
                return r;
        HvHardware hw;
        r = hv_domain_hardware(h.link->conn, h.vm.uuid, &hw);
        if (r < 0) {
                hw_fail(err, r, &h, "read the hardware of");
                hwvm_done(inv, &h);
                return r;
        }
        *ret = hardware_json(&hw, json_incref(json_object_get(h.v, "disks")));
        hwvm_done(inv, &h);
        return 0;
}

/* ------------------------------------------------------------------ */
/* vCPUs and memory */

/* A change is checked against what the domain has: a count above the
 * maximum given with it, a maximum below the count it keeps. */
static int hardware_check(const InventoryHardwareSpec *s, const HvHardware *hw, const char *name, OpError *err) {
        int64_t cpus = s->cpus ? s->cpus : hw->config_vcpus;
        if (s->max_cpus && cpus > s->max_cpus)
                return op_fail(err, 400, "invalid_argument", s->cpus ? "cpus" : "max_cpus",
                               "VM '%s' cannot have %lld vCPUs with a maximum of %lld; raise 'max_cpus' too.", name,
                               (long long) cpus, (long long) s->max_cpus);
        int64_t mem = s->memory_mib ? s->memory_mib : (int64_t) hw->config_memory_mib;
        if (s->max_memory_mib && mem > s->max_memory_mib)
                return op_fail(err, 400, "invalid_argument", s->memory_mib ? "memory_mib" : "max_memory_mib",
                               "VM '%s' cannot have %lld MiB of memory with a maximum of %lld MiB; raise 'max_memory_mib' too.", name,
                               (long long) mem, (long long) s->max_memory_mib);
        return 0;
}

/* More memory than the VM has now must fit on its host after the
 * reserves, as placement counts them (the VM's own use left out). */
static int hardware_place(Inventory *inv, const HwVm *h, const InventoryHardwareSpec *s, OpError *err) {
        if (!s->memory_mib || (uint64_t) s->memory_mib <= h->vm.memory_mib)
                return 0;
        PlacementDemand d = { .cpus = (unsigned) (s->cpus ? s->cpus : h->vm.cpus), .memory_mib = (uint64_t) s->memory_mib,
                              .vm_id = h->vm.id, .vm_name = h->vm.name };
        PlacementRating *rt = NULL;
        int n = placement_rate(inv->st, h->host.group_id, &d, &rt);
        if (n < 0) {
                free(rt);
                return op_fail(err, 500, "internal", NULL, "Cannot rate host '%s' for VM '%s' (error %d).", h->host.name, h->vm.name, n);
        }
        int r = 0;
        for (int i = 0; i < n; i++)
                if (rt[i].host_id == h->host.id && (rt[i].why & (PLACE_WHY_MEMORY | PLACE_WHY_FAILOVER))) {
                        r = op_fail(err, 409, "no_capacity", "memory_mib", "Cannot give VM '%s' %lld MiB of memory on host '%s': %s.",
                                    h->vm.name, (long long) s->memory_mib, h->host.name, rt[i].reason);
                        r = -ENOSPC;
                }
        free(rt);
        return r;
}

/* A self-service owner's change within its grant's quota: more vCPUs or
 * memory than the VM's row has now must fit what the grant has left
 * (max_cpus, max_memory_mib; null: unlimited), else 403 naming the field,
 * audited as denied. */
static int hardware_quota(Inventory *inv, const OpCaller *c, const HwVm *h, const InventoryHardwareSpec *s, OpError *err) {
        if (!h->grant_id)
                return 0;
        _cleanup_json_ json_t *g = NULL;
        int r = store_grant_get_json(inv->st, h->grant_id, &g);
        if (r < 0)
                return op_fail_store(err, r, "the grant");
        static const struct { const char *field, *limit, *used, *what; } q[] = {
                { "cpus", "max_cpus", "used_cpus", "vCPUs" },
                { "memory_mib", "max_memory_mib", "used_memory_mib", "MiB of memory" },
        };
        for (size_t i = 0; i < ELEMENTSOF(q); i++) {
                int64_t want = i == 0 ? s->cpus : s->memory_mib, have = i == 0 ? (int64_t) h->vm.cpus : (int64_t) h->vm.memory_mib;
                json_t *lim = json_object_get(g, q[i].limit);
                if (!want || want <= have || !json_is_integer(lim))
                        continue;
                int64_t left = json_integer_value(lim) - jget_int(g, q[i].used);
                if (want - have <= left)
                        continue;
                op_audit(inv->st, c, "vm.hardware", "vm", h->vm.id, h->vm.name, "quota", "denied");
                return op_fail(err, 403, "forbidden", q[i].field, "VM '%s' cannot have %lld %s: the quota of its grant has %lld %s left"
                               " and the change needs %lld.", h->vm.name, (long long) want, q[i].what, (long long) (left > 0 ? left : 0),
                               q[i].what, (long long) (want - have));
        }
        return 0;
}

static void applied_set(json_t *o, const char *field, HvApplied a) {
        if (hv_applied_name(a))
                json_object_set_new(o, field, json_string(hv_applied_name(a)));
}

int inventory_vm_hardware_set(Inventory *inv, const OpCaller *c, int64_t id, const InventoryHardwareSpec *spec, json_t **ret,
                              OpError *err) {
        _cleanup_free_ char *detail = NULL;
        HwVm h;
        int r = hw_open_as(inv, c, id, true, true, &h, err);
        if (r < 0)
                return r;
        HvConn *conn = h.link->conn;
        HvHardware hw;
        HvHardwareApplied ap = {0};
        HvHardwareChange chg = { .vcpus = (unsigned) spec->cpus, .max_vcpus = (unsigned) spec->max_cpus,
                                 .memory_mib = (uint64_t) spec->memory_mib, .max_memory_mib = (uint64_t) spec->max_memory_mib };
        if ((r = hv_domain_hardware(conn, h.vm.uuid, &hw)) < 0) {
                hw_fail(err, r, &h, "read the hardware of");
                goto out;
        }
        if ((r = hardware_check(spec, &hw, h.vm.name, err)) < 0 || (r = hardware_quota(inv, c, &h, spec, err)) < 0 ||
            (r = hardware_place(inv, &h, spec, err)) < 0) {
                if (r == -ENOSPC)
                        op_audit(inv->st, c, "vm.hardware", "vm", id, h.vm.name, err->message, "failed");
                goto out;
        }
        inventory_link_lock_ops(h.link);
        r = hv_domain_hardware_set(conn, h.vm.uuid, &chg, &ap);
        int rr = r < 0 ? r : hv_domain_hardware(conn, h.vm.uuid, &hw);
        /* A balloon's new size shows in the live definition once the guest
         * has given the memory back: the row takes the target at once (a
         * guest without a balloon driver is corrected by reconcile). */
        if (rr == 0)
                (void) store_vm_update_hw(inv->st, id, hw.vcpus, ap.memory == HV_APPLIED_LIVE ? chg.memory_mib : hw.memory_mib,
                                          h.vm.domain_type);
        inventory_link_unlock_ops(h.link);
        if (r < 0) {
                hw_fail(err, r, &h, "change the hardware of");
                op_audit(inv->st, c, "vm.hardware", "vm", id, h.vm.name, err->message, "failed");
                goto out;
        }
        json_t *applied = json_object();
        applied_set(applied, "cpus", ap.vcpus);
        applied_set(applied, "max_cpus", ap.max_vcpus);
        applied_set(applied, "memory_mib", ap.memory);
        applied_set(applied, "max_memory_mib", ap.max_memory);
        StrBuf d = {0};
        const char *k;
        json_t *val;
        json_object_foreach(applied, k, val) {
                json_int_t n = k[0] == 'c' ? spec->cpus : streq(k, "max_cpus") ? spec->max_cpus
                               : streq(k, "memory_mib") ? spec->memory_mib : spec->max_memory_mib;
                strbuf_printf(&d, "%s%s %lld (%s)", d.len ? ", " : "", k, (long long) n, json_string_value(val));
        }
        detail = strbuf_steal(&d);
        op_audit(inv->st, c, "vm.hardware", "vm", id, h.vm.name, detail, "done");
        hw_event(inv, &h, "vm.hardware", "VM '%s' hardware changed: %s.", h.vm.name, detail);
        json_t *vmj = NULL;
        (void) store_vm_get_json(inv->st, id, &vmj);
        *ret = json_pack("{s:o, s:o, s:o}", "vm", vmj ? vmj : json_null(), "applied", applied, "hardware",
                         rr == 0 ? hardware_json(&hw, NULL) : json_null());
        if (rr == 0)
                json_object_del(json_object_get(*ret, "hardware"), "disks");
out:
        hwvm_done(inv, &h);
        return r;
}

/* ------------------------------------------------------------------ */
/* disks */

/* The pool the VM's new disks go to: its host's, or the cluster's shared
 * one for a cluster member (as vm.create chooses). *ret_path: its path. */
static int disk_pool(Inventory *inv, const HwVm *h, char pool[64], char **ret_path) {
        snprintf(pool, 64, "%s", h->host.pool[0] ? h->host.pool : INVENTORY_POOL_DEFAULT);
        const char *dir = h->host.pool_path[0] ? h->host.pool_path : INVENTORY_POOL_PATH_DEFAULT;
        int64_t cluster_id;
        _cleanup_free_ char *shared = NULL;
        if (store_cluster_of_host(inv->st, h->host.id, &cluster_id, &shared) == 0) {
                snprintf(pool, 64, "armada-cluster-%lld", (long long) cluster_id);
                dir = shared;
        }
        return hv_pool_ensure(h->link->conn, pool, dir, ret_path);
}

/* The VM's disk row with target: 0 and *ret, or -ENOENT. */
static int disk_row(Inventory *inv, int64_t vm_id, const char *target, StoreDisk *ret) {
        _cleanup_free_ StoreDisk *disks = NULL;
        int n = store_vm_disks(inv->st, vm_id, &disks);
        for (int i = 0; i < n; i++)
                if (streq(disks[i].target, target)) {
                        *ret = disks[i];
                        return 0;
                }
        return n < 0 ? n : -ENOENT;
}

/* The first target of bus ("virtio": vdb.., "sata": sda..) the domain
 * (info) and the VM's rows do not use: 0, or -ENOSPC. */
static int disk_free_target(Inventory *inv, const HvDomainInfo *info, int64_t vm_id, const char *bus, char ret[16]) {
        const char *prefix = streq(bus, "sata") ? "sd" : "vd";
        for (char l = 'a'; l <= 'z'; l++) {
                char t[16];
                snprintf(t, sizeof t, "%s%c", prefix, l);
                bool used = false;
                for (size_t i = 0; i < info->n_disks; i++)
                        used = used || streq(info->disks[i].target, t);
                StoreDisk d;
                if (used || disk_row(inv, vm_id, t, &d) == 0)
                        continue;
                snprintf(ret, 16, "%s", t);
                return 0;
        }
        return -ENOSPC;
}

static json_t *reply_vm(Inventory *inv, int64_t id, json_t *extra) {
        json_t *vmj = NULL;
        (void) store_vm_get_json(inv->st, id, &vmj);
        json_object_set_new(extra, "vm", vmj ? vmj : json_null());
        return extra;
}

int inventory_vm_disk_add(Inventory *inv, const OpCaller *c, int64_t id, const InventoryDiskSpec *spec, json_t **ret, OpError *err) {
        const char *bus = spec->bus ? spec->bus : "virtio";
        if (!streq(bus, "virtio") && !streq(bus, "sata"))
                return op_fail(err, 400, "invalid_argument", "bus", "Field 'bus' (\"%.32s\") must be virtio or sata.", bus);
        HwVm h;
        int r = hw_open(inv, c, id, true, &h, err);
        if (r < 0)
                return r;
        HvConn *conn = h.link->conn;
        HvDomainInfo info;
        char target[16], pool[64];
        _cleanup_free_ char *pool_path = NULL, *vol_path = NULL, *vol = NULL, *detail = NULL;
        HvApplied applied = HV_APPLIED_NONE;
        if ((r = hv_domain_get(conn, h.vm.uuid, &info)) < 0) {
                hw_fail(err, r, &h, "read the disks of");
                goto out;
        }
        if (info.n_disks >= HV_MAX_DISKS || disk_free_target(inv, &info, id, bus, target) < 0) {
                r = op_fail(err, 409, "conflict", NULL, "VM '%s' has %zu disks and drives; Armada manages at most %d.", h.vm.name,
                            info.n_disks, HV_MAX_DISKS);
                goto out;
        }
        if ((r = disk_pool(inv, &h, pool, &pool_path)) < 0) {
                hw_fail(err, r, &h, "prepare the storage pool for a disk of");
                goto out;
        }
        vol = xasprintf("%s-%.8s-%s.qcow2", h.vm.name, h.vm.uuid, target);
        if ((r = hv_volume_create(conn, pool, vol, "qcow2", spec->size_bytes, &vol_path)) < 0) {
                if (r == -EEXIST)
                        r = op_fail(err, 409, "conflict", NULL, "Cannot add disk %s to VM '%s': volume '%s' exists already in pool '%s'"
                                    " (left by an earlier disk; remove it first).", target, h.vm.name, vol, pool);
                else
                        hw_fail(err, r, &h, "create a disk volume for");
                goto out;
        }
        HvDisk d = { .format = "qcow2", .capacity_bytes = spec->size_bytes };
        snprintf(d.target, sizeof d.target, "%s", target);
        snprintf(d.path, sizeof d.path, "%s", vol_path);
        inventory_link_lock_ops(h.link);
        r = hv_domain_disk_attach(conn, h.vm.uuid, &d, &applied);
        inventory_link_unlock_ops(h.link);
        if (r < 0) {
                hw_fail(err, r, &h, "add a disk to");
                (void) hv_volume_delete(conn, vol_path); /* nothing half-made stays */
                op_audit(inv->st, c, "vm.disk-add", "vm", id, h.vm.name, err->message, "failed");
                goto out;
        }
        StoreDisk sd = { .size_bytes = spec->size_bytes, .owned = true };
        snprintf(sd.target, sizeof sd.target, "%s", target);
        snprintf(sd.path, sizeof sd.path, "%s", vol_path);
        (void) store_vm_disk_add(inv->st, id, &sd);
        detail = xasprintf("%s %" PRIu64 " bytes %s (%s)", target, spec->size_bytes, bus, hv_applied_name(applied));
        op_audit(inv->st, c, "vm.disk-add", "vm", id, h.vm.name, detail, "done");
        hw_event(inv, &h, "vm.hardware", "VM '%s' has a new %" PRIu64 " MiB disk %s (%s).", h.vm.name, spec->size_bytes >> 20,
                 target, hv_applied_name(applied));
        *ret = reply_vm(inv, id, json_pack("{s:{s:s, s:s, s:I, s:s}, s:s}", "disk", "target", target, "path", vol_path, "size_bytes",
                                           (json_int_t) spec->size_bytes, "bus", bus, "applied", hv_applied_name(applied)));
out:
        hwvm_done(inv, &h);
        return r;
}

/* The VM's disk named target for a disk operation: its row, and 400
 * naming "target" for a CD-ROM drive (cd insert and eject change those)
 * or 404 for a disk it does not have. */
static int disk_for_change(Inventory *inv, const HwVm *h, const char *target, StoreDisk *ret, OpError *err) {
        HvDomainInfo info;
        int r = hv_domain_get(h->link->conn, h->vm.uuid, &info);
        if (r < 0)
                return hw_fail(err, r, h, "read the disks of");
        for (size_t i = 0; i < info.n_disks; i++)
                if (streq(info.disks[i].target, target) && info.disks[i].cdrom)
                        return op_fail(err, 400, "invalid_argument", "target", "'%s' of VM '%s' is a CD-ROM drive; use cd insert or"
                                       " eject.", target, h->vm.name);
        r = disk_row(inv, h->vm.id, target, ret);
        if (r == -ENOENT)
                return op_fail(err, 404, "not_found", "target", "VM '%s' has no disk '%.16s'.", h->vm.name, target);
        if (r < 0)
                return op_fail_store(err, r, "the VM's disks");
        return 0;
}

int inventory_vm_disk_resize(Inventory *inv, const OpCaller *c, int64_t id, const char *target, uint64_t size_bytes, json_t **ret,
                             OpError *err) {
        _cleanup_free_ char *detail = NULL;
        HwVm h;
        int r = hw_open(inv, c, id, true, &h, err);
        if (r < 0)
                return r;
        StoreDisk sd;
        HvApplied applied = HV_APPLIED_NONE;
        if ((r = disk_for_change(inv, &h, target, &sd, err)) < 0)
                goto out;
        if (size_bytes <= sd.size_bytes) {
                r = op_fail(err, 400, "invalid_argument", "size", "Disk %s of VM '%s' has %" PRIu64 " MiB; it can only grow (asked %" PRIu64
                            " MiB).", target, h.vm.name, sd.size_bytes >> 20, size_bytes >> 20);
                goto out;
        }
        inventory_link_lock_ops(h.link);
        r = hv_domain_disk_resize(h.link->conn, h.vm.uuid, target, sd.path, size_bytes, &applied);
        inventory_link_unlock_ops(h.link);
        if (r < 0) {
                hw_fail(err, r, &h, "grow a disk of");
                op_audit(inv->st, c, "vm.disk-resize", "vm", id, h.vm.name, err->message, "failed");
                goto out;
        }
        sd.size_bytes = size_bytes;
        (void) store_vm_disk_add(inv->st, id, &sd);
        detail = xasprintf("%s to %" PRIu64 " bytes (%s)", target, size_bytes, hv_applied_name(applied));
        op_audit(inv->st, c, "vm.disk-resize", "vm", id, h.vm.name, detail, "done");
        hw_event(inv, &h, "vm.hardware", "Disk %s of VM '%s' grew to %" PRIu64 " MiB (%s).", target, h.vm.name, size_bytes >> 20,
                 hv_applied_name(applied));
        *ret = reply_vm(inv, id, json_pack("{s:{s:s, s:s, s:I}, s:s}", "disk", "target", target, "path", sd.path, "size_bytes",
                                           (json_int_t) size_bytes, "applied", hv_applied_name(applied)));
out:
        hwvm_done(inv, &h);
        return r;
}

int inventory_vm_disk_remove(Inventory *inv, const OpCaller *c, int64_t id, const char *target, bool keep_volume, json_t **ret,
                             OpError *err) {
        _cleanup_free_ char *detail = NULL;
        HwVm h;
        int r = hw_open(inv, c, id, true, &h, err);
        if (r < 0)
                return r;
        StoreDisk sd;
        HvApplied applied = HV_APPLIED_NONE;
        if ((r = disk_for_change(inv, &h, target, &sd, err)) < 0)
                goto out;
        inventory_link_lock_ops(h.link);
        r = hv_domain_disk_detach(h.link->conn, h.vm.uuid, target, &applied);
        inventory_link_unlock_ops(h.link);
        if (r < 0) {
                hw_fail(err, r, &h, "remove a disk of");
                op_audit(inv->st, c, "vm.disk-remove", "vm", id, h.vm.name, err->message, "failed");
                goto out;
        }
        /* Only a volume Armada made is Armada's to delete. */
        bool deleted = false;
        if (sd.owned && !keep_volume) {
                int dr = hv_volume_delete(h.link->conn, sd.path);
                deleted = dr == 0;
                if (dr < 0 && dr != -ENOENT)
                        log_warn("disk %s of VM '%s' was removed, but its volume '%s' stays: %s", target, h.vm.name, sd.path,
                                 hv_last_error());
        }
        (void) store_vm_disk_remove(inv->st, id, target);
        detail = xasprintf("%s (%s)%s", target, hv_applied_name(applied), deleted ? ", volume deleted" : "");
        op_audit(inv->st, c, "vm.disk-remove", "vm", id, h.vm.name, detail, "done");
        hw_event(inv, &h, "vm.hardware", "Disk %s was removed from VM '%s' (%s)%s.", target, h.vm.name, hv_applied_name(applied),
                 deleted ? "; its volume was deleted" : "; its volume was kept");
        *ret = reply_vm(inv, id, json_pack("{s:s, s:b, s:s}", "target", target, "volume_deleted", deleted, "applied",
                                           hv_applied_name(applied)));
out:
        hwvm_done(inv, &h);
        return r;
}

/* ------------------------------------------------------------------ */
/* CD-ROM and boot order */

/* The indexed ISO named by iso: an item id ("12"), its path inside its
 * share ("isos/debian.iso") or its file name when only one ISO has it.
 * Its file must still be inside its share once symlinks are resolved.
 * 0 with its JSON and real path; 422 naming "iso" for none, 400 for an
 * escape. A path given whole is never opened: only indexed ones are. */
static int iso_resolve(Inventory *inv, const char *iso, json_t **ret, char **ret_path, OpError *err) {
        _cleanup_json_ json_t *items = NULL;
        int r = store_item_list(inv->st, 0, "iso", &items);
        if (r < 0)
                return op_fail_store(err, r, "the library");
        int64_t want_id = -1;
        if (str_is_digits(iso) && parse_i64(iso, &want_id) < 0)
                want_id = -1;
        json_t *found = NULL, *it;
        size_t i, matches = 0;
        json_array_foreach(items, i, it) {
                const char *rel = jget_str(it, "rel_path"), *base = strrchr(rel, '/');
                base = base ? base + 1 : rel;
                bool hit = jget_int(it, "id") == want_id || streq(rel, iso) || streq(jget_str(it, "path"), iso) || streq(base, iso);
                if (hit && !json_is_true(json_object_get(it, "missing_bool"))) {
                        found = it;
                        matches++;
                }
        }
        if (matches > 1)
                return op_fail(err, 422, "invalid_argument", "iso", "More than one library ISO is called '%.200s'; give its id or its"
                               " path inside the share.", iso);
        if (!found)
                return op_fail(err, 422, "not_found", "iso", "There is no ISO '%.200s' in the library (give an indexed ISO's id, name"
                               " or path; see `armada library items --kind iso`).", iso);
        char real[PATH_MAX], share_real[PATH_MAX];
        const char *path = jget_str(found, "path"), *share = jget_str(found, "share_path");
        size_t sl = realpath(share, share_real) ? strlen(share_real) : 0;
        if (!realpath(path, real) || sl == 0)
                return op_fail(err, 422, "not_found", "iso", "Library ISO '%.200s' is no longer readable; refresh its share.", iso);
        if (strncmp(real, share_real, sl) != 0 || real[sl] != '/')
                return op_fail(err, 400, "invalid_argument", "iso", "Library ISO '%.200s' leads outside its share (a symbolic link);"
                               " it cannot be used.", iso);
        *ret = json_incref(found);
        *ret_path = xstrdup(real);
        return 0;
}

int inventory_vm_cd_insert(Inventory *inv, const OpCaller *c, int64_t id, const char *iso, json_t **ret, OpError *err) {
        HwVm h;
        int r = hw_open(inv, c, id, true, &h, err);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *item = NULL;
        _cleanup_free_ char *path = NULL;
        _cleanup_json_ json_t *params = NULL;
        if ((r = iso_resolve(inv, iso, &item, &path, err)) < 0)
                goto out;
        params = json_pack("{s:I, s:s, s:s, s:I, s:s, s:s}", "item_id", (json_int_t) jget_int(item, "id"), "path",
                                                  path, "name", jget_str(item, "rel_path"), "size",
                                                  (json_int_t) jget_int(item, "size"), "checksum", jget_str(item, "checksum"),
                                                  "share", jget_str(item, "share_path"));
        int64_t job;
        if (jobs_submit(inv->jobs, "vm.cd-insert", "vm", id, h.vm.name, c->user_id, params, &job) < 0) {
                r = op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
                goto out;
        }
        op_audit(inv->st, c, "vm.cd-insert", "vm", id, h.vm.name, jget_str(item, "rel_path"), "accepted");
        json_t *j = NULL;
        (void) store_job_get_json(inv->st, job, &j);
        *ret = json_pack("{s:o, s:O}", "job", j ? j : json_null(), "iso", item);
out:
        hwvm_done(inv, &h);
        return r;
}

/* Forgets the CD-ROM row of drive target and, with path, records the
 * medium (not owned: a library ISO's volume is shared). */
static void cd_record(Inventory *inv, int64_t vm_id, const char *target, const char *path, uint64_t size) {
        (void) store_vm_disk_remove(inv->st, vm_id, target);
        if (!path || !*path)
                return;
        StoreDisk sd = { .size_bytes = size, .owned = false };
        snprintf(sd.target, sizeof sd.target, "%s", target);
        snprintf(sd.path, sizeof sd.path, "%s", path);
        (void) store_vm_disk_add(inv->st, vm_id, &sd);
}

int inventory_vm_cd_eject(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        HwVm h;
        int r = hw_open(inv, c, id, true, &h, err);
        if (r < 0)
                return r;
        HvApplied applied;
        char target[16];
        inventory_link_lock_ops(h.link);
        r = hv_domain_cd_set(h.link->conn, h.vm.uuid, NULL, &applied, target);
        inventory_link_unlock_ops(h.link);
        if (r < 0) {
                hw_fail(err, r, &h, "eject the CD of");
                goto out;
        }
        cd_record(inv, id, target, NULL, 0);
        op_audit(inv->st, c, "vm.cd-eject", "vm", id, h.vm.name, hv_applied_name(applied), "done");
        hw_event(inv, &h, "vm.hardware", "The CD of VM '%s' was ejected (%s).", h.vm.name, hv_applied_name(applied));
        *ret = reply_vm(inv, id, json_pack("{s:s, s:s}", "drive", target, "applied", hv_applied_name(applied)));
out:
        hwvm_done(inv, &h);
        return r;
}

int inventory_vm_boot_order(Inventory *inv, const OpCaller *c, int64_t id, const char *const *order, size_t n, json_t **ret,
                            OpError *err) {
        const char *devs[4];
        if (n == 0 || n > 3)
                return op_fail(err, 400, "invalid_argument", "order", "Field 'order' names one to three boot devices (cd, disk, network).");
        for (size_t i = 0; i < n; i++) {
                const char *w = order[i];
                devs[i] = streq(w, "cd") || streq(w, "cdrom") ? "cdrom" : streq(w, "disk") || streq(w, "hd") ? "hd"
                          : streq(w, "network") ? "network" : NULL;
                if (!devs[i])
                        return op_fail(err, 400, "invalid_argument", "order", "'%.32s' is not a boot device; the devices are cd, disk and"
                                       " network.", w);
                for (size_t j = 0; j < i; j++)
                        if (streq(devs[j], devs[i]))
                                return op_fail(err, 400, "invalid_argument", "order", "Field 'order' names '%.32s' twice.", w);
        }
        _cleanup_free_ char *detail = NULL;
        HwVm h;
        int r = hw_open(inv, c, id, true, &h, err);
        if (r < 0)
                return r;
        inventory_link_lock_ops(h.link);
        r = hv_domain_boot_order(h.link->conn, h.vm.uuid, devs, n);
        inventory_link_unlock_ops(h.link);
        if (r < 0) {
                hw_fail(err, r, &h, "set the boot order of");
                goto out;
        }
        StrBuf b = {0};
        json_t *words = json_array();
        for (size_t i = 0; i < n; i++) {
                strbuf_printf(&b, "%s%s", i ? "," : "", boot_word(devs[i]));
                json_array_append_new(words, json_string(boot_word(devs[i])));
        }
        detail = strbuf_steal(&b);
        op_audit(inv->st, c, "vm.boot-order", "vm", id, h.vm.name, detail, "done");
        hw_event(inv, &h, "vm.hardware", "VM '%s' boots from %s from its next boot on.", h.vm.name, detail);
        *ret = reply_vm(inv, id, json_pack("{s:o, s:s}", "boot_order", words, "applied", "next_boot"));
out:
        hwvm_done(inv, &h);
        return r;
}

/* ------------------------------------------------------------------ */
/* the job vm.cd-insert */

/* Where host h finds the ISO: the library's file itself when the host
 * sees it (a local host, a share mounted alike), else a volume in its
 * pool named after the ISO's checksum — made once by streaming the file,
 * and reused by every later insert of the same ISO (inventory.h). */
int inventory_iso_for_host(Inventory *inv, JobCtx *ctx, const StoreHost *host, InventoryLink *l, const char *share_path,
                           const char *path, uint64_t size, const char *sum, char **ret_path) {
        /* Indexed inside its share; still there now that it is to be read? */
        char real[PATH_MAX], share_real[PATH_MAX];
        size_t sl = share_path && realpath(share_path, share_real) ? strlen(share_real) : 0;
        if (!path || !realpath(path, real) || sl == 0)
                return job_fail(ctx, -ENOENT, "The library ISO is no longer readable; refresh its share.");
        if (strncmp(real, share_real, sl) != 0 || real[sl] != '/')
                return job_fail(ctx, -EPERM, "The library ISO leads outside its share (a symbolic link); it was not used.");
        path = real;
        bool test = streq(host->domain_type, "test");
        bool visible = test; /* the test driver keeps no data: every path "is" there */
        if (!test && hv_volume_visible(l->conn, path, size, &visible) < 0)
                return job_fail(ctx, -EIO, "Cannot tell whether host '%s' sees the ISO: %s", host->name, hv_last_error());
        if (visible) {
                *ret_path = xstrdup(path);
                job_progress(ctx, 50, "host '%s' sees the library's file", host->name);
                return 0;
        }
        HwVm h = { .host = *host, .link = l };
        char pool[64];
        _cleanup_free_ char *pool_path = NULL;
        if (disk_pool(inv, &h, pool, &pool_path) < 0)
                return job_fail(ctx, -EIO, "Cannot prepare storage pool '%s' on host '%s': %s", pool, host->name, hv_last_error());
        _cleanup_free_ char *vol = xasprintf("armada-iso-%.16s.iso", sum && *sum ? sum : "unsummed");
        job_progress(ctx, 20, "copying the ISO to pool '%s' of host '%s'", pool, host->name);
        int r = inventory_slot_take(inv, host, INVENTORY_SLOT_DISK, NULL, false, ctx);
        if (r < 0)
                return r;
        HvConn *sc = NULL;
        if (!test && hv_connect(host->uri, 0, 0, NULL, NULL, &sc) < 0)
                sc = NULL;
        r = sc || test ? hv_volume_upload(test ? l->conn : sc, pool, vol, path, !test, ret_path) : -EHOSTUNREACH;
        inventory_slot_give(inv, host->id, INVENTORY_SLOT_DISK);
        hv_conn_free(sc);
        if (r == -EEXIST) { /* an earlier insert of the same ISO copied it */
                *ret_path = xasprintf("%s/%s", pool_path, vol);
                job_progress(ctx, 50, "reusing %s", *ret_path);
                return 0;
        }
        if (r < 0)
                return job_fail(ctx, r, "Cannot copy the ISO to host '%s': %s", host->name, hv_last_error());
        job_progress(ctx, 50, "copied the ISO to %s", *ret_path);
        return 0;
}

static int job_vm_cd_insert(JobCtx *ctx, void *userdata) {
        Inventory *inv = userdata;
        StoreVm vm;
        StoreHost host;
        if (store_vm_get(ctx->st, ctx->job->target_id, &vm) < 0)
                return job_fail(ctx, -ENOENT, "VM '%s' no longer exists.", ctx->job->target_name);
        if (vm.host_id == 0 || store_host_get(ctx->st, vm.host_id, &host) < 0)
                return job_fail(ctx, -ENXIO, "VM '%s' is not placed on any host.", vm.name);
        Link *l = NULL;
        char why[512];
        if (link_acquire(inv, &host, &l, why, sizeof why) < 0)
                return job_fail(ctx, -EHOSTUNREACH, "Cannot reach host '%s' of VM '%s': %s", host.name, vm.name, why);
        _cleanup_free_ char *path = NULL;
        int r = inventory_iso_for_host(inv, ctx, &host, l, jget_str(ctx->params, "share"), jget_str(ctx->params, "path"),
                                       (uint64_t) jget_int(ctx->params, "size"), jget_str(ctx->params, "checksum"), &path);
        HvApplied applied = HV_APPLIED_NONE;
        char target[16] = "";
        if (r == 0) {
                pthread_mutex_lock(&l->op_lock);
                r = hv_domain_cd_set(l->conn, vm.uuid, path, &applied, target);
                pthread_mutex_unlock(&l->op_lock);
                if (r < 0)
                        r = job_fail(ctx, r, "Cannot put the ISO into the CD-ROM drive of VM '%s': %s", vm.name, hv_last_error());
        }
        link_release(inv, l);
        if (r < 0)
                return r;
        cd_record(inv, vm.id, target, path, (uint64_t) jget_int(ctx->params, "size"));
        const char *name = jget_str(ctx->params, "name");
        (void) store_event_add(ctx->st, "info", "vm.hardware", "vm", vm.id, vm.name, vm.owner_id,
                               applied == HV_APPLIED_LIVE ? "The CD-ROM drive of the VM holds a library ISO now (live)."
                                                          : "The CD-ROM drive of the VM holds a library ISO from its next boot on.");
        ctx->result = json_pack("{s:s, s:s, s:s, s:s}", "iso", name ? name : "", "drive", target, "path", path, "applied",
                                hv_applied_name(applied));
        job_progress(ctx, 100, "ISO '%s' in drive %s (%s)", name ? name : "", target, hv_applied_name(applied));
        return 0;
}

void inventory_register_hardware_jobs(Inventory *inv) {
        jobs_register(inv->jobs, "vm.cd-insert", job_vm_cd_insert, NULL, inv, true);
}
