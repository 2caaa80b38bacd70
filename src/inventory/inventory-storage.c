/* inventory-storage: the storage pools of hosts and their volumes
 * (inventory.h, "Storage"). Every full refresh of a host records its pools
 * with their space (storage_sync_host), which the lists and /metrics read;
 * adding and removing pools and deleting volumes are quick operations on a
 * host connected now, for administrators only. */
#include "inventory-priv.h"
#include "hv/hv-pool.h"
#include "store/store-network.h"

#include <errno.h>
#include <string.h>

static bool admin(Inventory *inv, const OpCaller *c) {
        return op_allowed(inv->st, c, ACT_UPDATE, OBJ_SYSTEM, 0, 0);
}

/* Lists the host's pools and records them, under the link's storage_lock
 * (held by the caller: a pool added or removed through this link cannot
 * fall between the listing and the recording, where a refresh would write
 * back a pool just removed until its next round). */
static void storage_sync_locked(Inventory *inv, Link *l, const StoreHost *h) {
        _cleanup_free_ HvPoolInfo *pools = NULL;
        size_t n = 0;
        if (hv_pool_list(l->conn, &pools, &n) < 0) {
                log_warn("host '%s': cannot list storage pools: %s", h->name, hv_last_error());
                return;
        }
        _cleanup_free_ StorePoolStat *st = xcalloc(n + 1, sizeof *st);
        for (size_t i = 0; i < n; i++)
                st[i] = (StorePoolStat) { .name = pools[i].name, .type = pools[i].type, .path = pools[i].path, .active = pools[i].active,
                                          .capacity = pools[i].capacity, .allocation = pools[i].allocation,
                                          .available = pools[i].available, .n_volumes = pools[i].n_volumes };
        (void) store_pool_stats_set(inv->st, h->id, st, n);
}

void storage_sync_host(Inventory *inv, Link *l, const StoreHost *h) {
        pthread_mutex_lock(&l->storage_lock);
        storage_sync_locked(inv, l, h);
        pthread_mutex_unlock(&l->storage_lock);
}

/* The host for a pool operation: 404 when it does not exist or the caller
 * may not read it. */
static int pool_host(Inventory *inv, const OpCaller *c, int64_t host_id, StoreHost *ret, OpError *err) {
        int r = store_host_get(inv->st, host_id, ret);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the host");
        if (r == -ENOENT || !op_allowed(inv->st, c, ACT_READ, OBJ_HOST, 0, ret->group_id))
                return op_fail(err, 404, "not_found", NULL, "There is no host with id %lld.", (long long) host_id);
        return 0;
}

/* The host's live link, or 503: pool changes never wait for a connect. */
static int pool_link(Inventory *inv, const StoreHost *h, Link **ret, OpError *err) {
        *ret = link_peek(inv, h->id);
        if (!*ret)
                return op_fail(err, 503, "busy", NULL, "Host '%s' is not connected now; try again when it is.", h->name);
        return 0;
}

/* The pool record of host h named name: 0 and *ret (a new reference), or 404 "pool". */
static int pool_record(Inventory *inv, const StoreHost *h, const char *name, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *all = NULL;
        int r = store_pool_stat_list(inv->st, h->id, &all);
        if (r < 0)
                return op_fail_store(err, r, "the host's pools");
        size_t i;
        json_t *p;
        json_array_foreach(all, i, p)
                if (streq(jget_str(p, "name"), name)) {
                        *ret = json_incref(p);
                        return 0;
                }
        return op_fail(err, 404, "not_found", "pool", "Host '%s' has no storage pool '%.64s'.", h->name, name);
}

int inventory_pool_list(Inventory *inv, const OpCaller *c, const char *host, json_t **ret, OpError *err) {
        int64_t host_id = 0;
        if (host) {
                int r = store_host_find(inv->st, host, &host_id);
                StoreHost h;
                if (r == -ENOENT || (r == 0 && pool_host(inv, c, host_id, &h, err) < 0))
                        return op_fail(err, 404, "not_found", "host", "There is no host named '%.64s'.", host);
                if (r < 0)
                        return op_fail_store(err, r, "the host");
        }
        json_t *all = NULL;
        int r = store_pool_stat_list(inv->st, host_id, &all);
        if (r < 0)
                return op_fail_store(err, r, "the list of pools");
        *ret = op_filter_visible(inv->st, c, all, OP_VIS_HOST);
        if (!*ret)
                *ret = json_array();
        return 0;
}

int inventory_pool_add(Inventory *inv, const OpCaller *c, int64_t host_id, const InventoryPoolSpec *spec, json_t **ret, OpError *err) {
        StoreHost h;
        int r = pool_host(inv, c, host_id, &h, err);
        if (r < 0)
                return r;
        if (!admin(inv, c))
                return op_deny(inv->st, c, err, "add a storage pool to", "host", h.id, h.name);
        HvPoolSpec ps = { .name = spec->name, .type = spec->type, .path = spec->path, .source_host = spec->source_host,
                          .source_path = spec->source_path, .source_name = spec->source_name };
        const char *field;
        char why[256];
        if (hv_pool_spec_check(&ps, &field, why, sizeof why) < 0)
                return op_fail(err, 400, "invalid_argument", field, "%s", why);
        _cleanup_free_ char *norm = NULL;
        if (spec->path && path_outside_system_normalize(spec->path, &norm, why, sizeof why) < 0)
                return op_fail(err, 400, "invalid_argument", "path",
                               "Field 'path' (\"%.200s\") %s; give an absolute directory outside /, /etc, /usr, /boot, /proc, /sys and /dev.",
                               spec->path, why);
        ps.path = norm;
        Link *l;
        if ((r = pool_link(inv, &h, &l, err)) < 0)
                return r;
        pthread_mutex_lock(&l->storage_lock);
        r = hv_pool_add(l->conn, &ps);
        snprintf(why, sizeof why, "%s", hv_last_error());
        if (r == 0)
                storage_sync_locked(inv, l, &h);
        pthread_mutex_unlock(&l->storage_lock);
        link_release(inv, l);
        if (r == -EEXIST)
                return op_fail(err, 409, "conflict", "name", "Host '%s' has a storage pool '%s' already.", h.name, spec->name);
        if (r < 0) {
                op_audit(inv->st, c, "pool.add", "host", h.id, h.name, spec->name, "failed");
                return op_fail(err, 502, "host_error", NULL, "Host '%s' cannot add storage pool '%s': %s.", h.name, spec->name, why);
        }
        _cleanup_free_ char *detail = xasprintf("pool %s (%s)", spec->name, spec->type);
        op_audit(inv->st, c, "pool.add", "host", h.id, h.name, detail, "ok");
        r = pool_record(inv, &h, spec->name, ret, err);
        if (r < 0) /* added, but the host did not list it back: say so plainly */
                *ret = json_pack("{s:I, s:s, s:s, s:s}", "host_id", (json_int_t) h.id, "host_name", h.name, "name", spec->name, "type",
                                 spec->type);
        return 0;
}

int inventory_pool_remove(Inventory *inv, const OpCaller *c, int64_t host_id, const char *pool, OpError *err) {
        StoreHost h;
        int r = pool_host(inv, c, host_id, &h, err);
        if (r < 0)
                return r;
        if (!admin(inv, c))
                return op_deny(inv->st, c, err, "remove a storage pool of", "host", h.id, h.name);
        _cleanup_json_ json_t *rec = NULL;
        if ((r = pool_record(inv, &h, pool, &rec, err)) < 0)
                return r;
        if (streq(h.pool, pool))
                return op_fail(err, 409, "conflict", "pool", "Storage pool '%s' is where Armada puts the disks of host '%s'; it cannot be removed.",
                               pool, h.name);
        if (jget_int(rec, "n_volumes") > 0)
                return op_fail(err, 409, "conflict", "pool", "Storage pool '%s' of host '%s' still has %lld volumes; delete them first.", pool,
                               h.name, (long long) jget_int(rec, "n_volumes"));
        Link *l;
        if ((r = pool_link(inv, &h, &l, err)) < 0)
                return r;
        pthread_mutex_lock(&l->storage_lock);
        r = hv_pool_remove(l->conn, pool);
        char why[256];
        snprintf(why, sizeof why, "%s", hv_last_error());
        if (r == 0 || r == -ENOENT)
                (void) store_pool_stat_delete(inv->st, h.id, pool);
        pthread_mutex_unlock(&l->storage_lock);
        link_release(inv, l);
        if (r < 0 && r != -ENOENT) {
                op_audit(inv->st, c, "pool.remove", "host", h.id, h.name, pool, "failed");
                return op_fail(err, 502, "host_error", NULL, "Host '%s' cannot remove storage pool '%s': %s.", h.name, pool, why);
        }
        _cleanup_free_ char *detail = xasprintf("pool %s", pool);
        op_audit(inv->st, c, "pool.remove", "host", h.id, h.name, detail, "ok");
        return 0;
}

/* The VM whose disk is at path, among users ([{path, vm_id, vm_name}]), or NULL. */
static json_t *volume_user(json_t *users, const char *path) {
        size_t i;
        json_t *u;
        json_array_foreach(users, i, u)
                if (streq(jget_str(u, "path"), path))
                        return u;
        return NULL;
}

int inventory_volume_list(Inventory *inv, const OpCaller *c, int64_t host_id, const char *pool, json_t **ret, OpError *err) {
        StoreHost h;
        int r = pool_host(inv, c, host_id, &h, err);
        if (r < 0)
                return r;
        Link *l;
        if ((r = pool_link(inv, &h, &l, err)) < 0)
                return r;
        _cleanup_free_ HvVolumeInfo *vols = NULL;
        size_t n = 0;
        r = hv_pool_volumes(l->conn, pool, &vols, &n);
        char why[256];
        snprintf(why, sizeof why, "%s", hv_last_error());
        link_release(inv, l);
        if (r == -ENOENT)
                return op_fail(err, 404, "not_found", "pool", "Host '%s' has no storage pool '%.64s'.", h.name, pool);
        if (r == -EBUSY)
                return op_fail(err, 409, "conflict", "pool", "Storage pool '%.64s' of host '%s' is not active.", pool, h.name);
        if (r < 0)
                return op_fail(err, 502, "host_error", NULL, "Host '%s' cannot list storage pool '%.64s': %s.", h.name, pool, why);
        _cleanup_json_ json_t *users = NULL;
        if ((r = store_volume_users(inv->st, h.id, &users)) < 0)
                return op_fail_store(err, r, "the VMs' disks");
        json_t *out = json_array();
        for (size_t i = 0; i < n; i++) {
                json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I}", "name", vols[i].name, "path", vols[i].path, "format", vols[i].format,
                                      "capacity_bytes", (json_int_t) vols[i].capacity, "allocation_bytes", (json_int_t) vols[i].allocation);
                json_t *u = volume_user(users, vols[i].path);
                if (u)
                        json_object_set_new(o, "vm", json_pack("{s:I, s:s}", "id", (json_int_t) jget_int(u, "vm_id"), "name",
                                                                 jget_str(u, "vm_name")));
                json_array_append_new(out, o);
        }
        *ret = out;
        return 0;
}

int inventory_volume_delete(Inventory *inv, const OpCaller *c, int64_t host_id, const char *pool, const char *vol, OpError *err) {
        StoreHost h;
        int r = pool_host(inv, c, host_id, &h, err);
        if (r < 0)
                return r;
        if (!admin(inv, c))
                return op_deny(inv->st, c, err, "delete a volume of", "host", h.id, h.name);
        _cleanup_json_ json_t *vols = NULL;
        if ((r = inventory_volume_list(inv, c, host_id, pool, &vols, err)) < 0)
                return r;
        json_t *found = NULL;
        size_t i;
        json_t *v;
        json_array_foreach(vols, i, v)
                if (streq(jget_str(v, "name"), vol))
                        found = v;
        if (!found)
                return op_fail(err, 404, "not_found", "volume", "Storage pool '%s' of host '%s' has no volume '%.200s'.", pool, h.name, vol);
        json_t *vm = json_object_get(found, "vm");
        if (vm)
                return op_fail(err, 409, "conflict", "volume", "Volume '%s' is a disk of VM '%s'; delete the VM or its disk first.", vol,
                               jget_str(vm, "name"));
        Link *l;
        if ((r = pool_link(inv, &h, &l, err)) < 0)
                return r;
        r = hv_pool_volume_delete(l->conn, pool, vol);
        char why[256];
        snprintf(why, sizeof why, "%s", hv_last_error());
        if (r == 0)
                storage_sync_host(inv, l, &h);
        link_release(inv, l);
        if (r < 0 && r != -ENOENT) {
                op_audit(inv->st, c, "volume.delete", "host", h.id, h.name, vol, "failed");
                return op_fail(err, 502, "host_error", NULL, "Host '%s' cannot delete volume '%s': %s.", h.name, vol, why);
        }
        _cleanup_free_ char *detail = xasprintf("%s/%s", pool, vol);
        op_audit(inv->st, c, "volume.delete", "host", h.id, h.name, detail, "ok");
        return 0;
}
