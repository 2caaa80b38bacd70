/* inventory-network: libvirt networks per host or per host group, and the
 * network cards of VMs (inventory.h, "Networks").
 *
 * A group network stands on every host of its group and of the group's
 * subgroups: the network.create job sets it up on each (all or nothing: a
 * host that refuses undoes the others; a host that cannot be reached is
 * recorded "missing"), and every full refresh of a host sets up the
 * networks that should stand on it (a host that joins the group later, a
 * host that was unreachable, a network someone removed by hand), recording
 * per host "active" or "failed" with libvirt's reason. Lists read those
 * records: they never wait on a host. */
#include "inventory-priv.h"
#include "hv/hv-network.h"
#include "store/store-network.h"

#include <errno.h>
#include <string.h>

static json_t *job_json(Inventory *inv, int64_t id) {
        json_t *j = NULL;
        return store_job_get_json(inv->st, id, &j) == 0 ? j : json_null();
}

/* Networks and pools are the estate's plumbing: administrators only. */
static bool admin(Inventory *inv, const OpCaller *c) {
        return op_allowed(inv->st, c, ACT_UPDATE, OBJ_SYSTEM, 0, 0);
}

static HvNetworkSpec hv_spec_of(const StoreNetwork *n) {
        return (HvNetworkSpec) { .name = n->name, .mode = n->mode, .bridge = n->bridge[0] ? n->bridge : NULL,
                                 .vlan = (unsigned) n->vlan, .subnet = n->subnet[0] ? n->subnet : NULL };
}

/* ------------------------------------------------------------------ */
/* list */

/* The hosts network n stands on with what each said: its records, and
 * "missing" for a covered host without one (a host that joined since and
 * has not been refreshed). */
static json_t *network_hosts_json(Inventory *inv, json_t *n, OpError *err, int *ret_r) {
        StoreNetwork sn = { .group_id = jget_int(n, "group_id"), .host_id = jget_int(n, "host_id") };
        _cleanup_free_ int64_t *ids = NULL;
        int k = store_network_hosts(inv->st, &sn, &ids);
        _cleanup_json_ json_t *hosts = NULL;
        if (k >= 0)
                *ret_r = store_host_list_ids(inv->st, ids, (size_t) k, &hosts);
        else
                *ret_r = k;
        if (*ret_r < 0) {
                *ret_r = op_fail_store(err, *ret_r, "the hosts of a network");
                return NULL;
        }
        json_t *recorded = json_object_get(n, "recorded"), *out = json_array();
        size_t i, j;
        json_t *h, *x;
        json_array_foreach(hosts, i, h) {
                const char *state = "missing", *error = NULL;
                json_array_foreach(recorded, j, x)
                        if (jget_int(x, "host_id") == jget_int(h, "id")) {
                                state = jget_str(x, "state");
                                error = json_string_value(json_object_get(x, "error"));
                        }
                json_t *o = json_pack("{s:I, s:s, s:s}", "host_id", (json_int_t) jget_int(h, "id"), "host_name",
                                      jget_str(h, "name"), "state", state);
                if (error)
                        json_object_set_new(o, "error", json_string(error));
                json_array_append_new(out, o);
        }
        return out;
}

/* Whether the caller may see network n (its group, or its host's group). */
static bool network_visible(Inventory *inv, const OpCaller *c, json_t *n) {
        if (admin(inv, c) || c->subj.role == ROLE_READ_ONLY)
                return true;
        int64_t group = jget_int(n, "group_id");
        if (!group) {
                StoreHost h;
                if (store_host_get(inv->st, jget_int(n, "host_id"), &h) < 0)
                        return false;
                group = h.group_id;
        }
        return op_allowed(inv->st, c, ACT_READ, OBJ_GROUP, 0, group);
}

int inventory_network_list(Inventory *inv, const OpCaller *c, const char *name, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *all = NULL;
        int r = store_network_list(inv->st, name, &all);
        if (r < 0)
                return op_fail_store(err, r, "the list of networks");
        json_t *out = json_array();
        size_t i;
        json_t *n;
        json_array_foreach(all, i, n) {
                if (!network_visible(inv, c, n))
                        continue;
                json_t *hosts = network_hosts_json(inv, n, err, &r);
                if (!hosts) {
                        json_decref(out);
                        return r;
                }
                json_t *o = json_deep_copy(n);
                json_object_del(o, "recorded");
                json_object_set_new(o, "hosts", hosts);
                json_array_append_new(out, o);
        }
        *ret = out;
        return 0;
}

/* ------------------------------------------------------------------ */
/* create, delete */

/* Where the network goes: spec's group or host, into n. */
static int network_scope(Inventory *inv, const InventoryNetworkSpec *spec, StoreNetwork *n, OpError *err) {
        if (!!spec->group == !!spec->host)
                return op_fail(err, 400, "invalid_argument", "group",
                               "Give either 'group' (a host-group path: the network stands on all its hosts) or 'host', not %s.",
                               spec->group ? "both" : "neither");
        if (spec->is_default && !spec->group)
                return op_fail(err, 400, "invalid_argument", "default", "Only a group network can be its group's default.");
        int r;
        if (spec->group) {
                _cleanup_free_ char *norm = NULL;
                const char *why;
                norm = store_group_path_normalize(spec->group, &why);
                if (!norm)
                        return op_fail(err, 400, "invalid_argument", "group", "Field 'group' is not a valid host-group path: a segment %s.", why);
                r = norm[0] ? store_group_find(inv->st, norm, &n->group_id) : (n->group_id = STORE_ROOT_GROUP_ID, 0);
                if (r == -ENOENT)
                        return op_fail(err, 422, "not_found", "group", "There is no host group '%s'.", norm);
        } else {
                r = store_host_find(inv->st, spec->host, &n->host_id);
                if (r == -ENOENT)
                        return op_fail(err, 422, "not_found", "host", "There is no host named '%s'.", spec->host);
        }
        return r < 0 ? op_fail_store(err, r, "the network's scope") : 0;
}

int inventory_network_create(Inventory *inv, const OpCaller *c, const InventoryNetworkSpec *spec, json_t **ret, OpError *err) {
        if (!admin(inv, c))
                return op_deny(inv->st, c, err, "create", "network", 0, spec->name);
        HvNetworkSpec hs = { .name = spec->name, .mode = spec->mode, .bridge = spec->bridge, .vlan = (unsigned) spec->vlan,
                             .subnet = spec->subnet };
        const char *field = NULL;
        char why[256];
        if (spec->vlan < 0 || hv_network_spec_check(&hs, &field, why, sizeof why) < 0)
                return op_fail(err, 400, "invalid_argument", field ? field : "vlan", "%s", field ? why : "A VLAN tag is 1 to 4094.");
        StoreNetwork n = { .vlan = (int) spec->vlan, .is_default = spec->is_default };
        int r = network_scope(inv, spec, &n, err);
        if (r < 0)
                return r;
        snprintf(n.name, sizeof n.name, "%s", spec->name);
        snprintf(n.mode, sizeof n.mode, "%s", spec->mode);
        snprintf(n.bridge, sizeof n.bridge, "%s", spec->bridge ? spec->bridge : "");
        snprintf(n.subnet, sizeof n.subnet, "%s", spec->subnet ? spec->subnet : "");
        r = store_network_insert(inv->st, &n, &n.id);
        if (r == -EEXIST)
                return op_fail(err, 409, "conflict", "name", "Network '%s' already exists.", spec->name);
        if (r < 0)
                return op_fail_store(err, r, "the network");
        int64_t job;
        if (jobs_submit(inv->jobs, "network.create", "network", n.id, n.name, c->user_id, NULL, &job) < 0) {
                (void) store_network_delete(inv->st, n.id);
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        }
        _cleanup_free_ char *detail = xasprintf("%s%s%s", n.mode, spec->group ? " on group " : " on host ",
                                                spec->group ? spec->group : spec->host);
        op_audit(inv->st, c, "network.create", "network", n.id, n.name, detail, "accepted");
        _cleanup_json_ json_t *list = NULL;
        r = inventory_network_list(inv, c, n.name, &list, err);
        if (r < 0)
                return r;
        *ret = json_pack("{s:O, s:o}", "network", json_array_size(list) ? json_array_get(list, 0) : json_null(), "job",
                         job_json(inv, job));
        return 0;
}

/* Network id for a caller who may see it (404 otherwise: one it may not
 * see does not exist for it, so a refusal never names it). */
static int network_visible_by_id(Inventory *inv, const OpCaller *c, int64_t id, StoreNetwork *ret, OpError *err) {
        int r = store_network_get(inv->st, id, ret);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the network");
        _cleanup_json_ json_t *rows = NULL;
        if (r == 0 && (r = store_network_list(inv->st, ret->name, &rows)) < 0)
                return op_fail_store(err, r, "the network");
        if (r == -ENOENT || json_array_size(rows) == 0 || !network_visible(inv, c, json_array_get(rows, 0)))
                return op_fail(err, 404, "not_found", NULL, "There is no network with id %lld.", (long long) id);
        return 0;
}

int inventory_network_get(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        StoreNetwork n;
        int r = network_visible_by_id(inv, c, id, &n, err);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *list = NULL;
        r = inventory_network_list(inv, c, n.name, &list, err);
        if (r < 0)
                return r;
        if (json_array_size(list) == 0)
                return op_fail(err, 404, "not_found", NULL, "There is no network with id %lld.", (long long) id);
        *ret = json_incref(json_array_get(list, 0));
        return 0;
}

/* The 409 for a network VMs use: names up to three of them. */
static int network_in_use(Inventory *inv, const StoreNetwork *n, OpError *err) {
        _cleanup_json_ json_t *users = NULL;
        int r = store_vm_nic_users(inv->st, n->name, 4, &users);
        if (r < 0)
                return op_fail_store(err, r, "the network's VMs");
        if (json_array_size(users) == 0)
                return 0;
        char names[256] = "";
        size_t i;
        json_t *u;
        json_array_foreach(users, i, u)
                if (i < 3)
                        snprintf(names + strlen(names), sizeof names - strlen(names), "%s'%s'", i ? ", " : "", jget_str(u, "name"));
        return op_fail(err, 409, "conflict", NULL, "Network '%s' is in use by VM %s%s; remove their network cards first.", n->name,
                       names, json_array_size(users) > 3 ? " and more" : "");
}

int inventory_network_delete(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        StoreNetwork n;
        int r = network_visible_by_id(inv, c, id, &n, err);
        if (r < 0)
                return r;
        if (!admin(inv, c))
                return op_deny(inv->st, c, err, "delete", "network", id, n.name);
        if ((r = network_in_use(inv, &n, err)) < 0)
                return r;
        int64_t job;
        if (jobs_submit(inv->jobs, "network.delete", "network", n.id, n.name, c->user_id, NULL, &job) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        op_audit(inv->st, c, "network.delete", "network", n.id, n.name, NULL, "accepted");
        *ret = json_pack("{s:o}", "job", job_json(inv, job));
        return 0;
}

/* ------------------------------------------------------------------ */
/* the jobs */

/* Sets network n up on host h through l; records the host's answer. */
static int ensure_on(Inventory *inv, const StoreNetwork *n, const StoreHost *h, Link *l, bool *ret_created, HvBridgeKind *ret_kind,
                     char *why, size_t why_size) {
        HvNetworkSpec hs = hv_spec_of(n);
        int r = hv_network_ensure(l->conn, &hs, ret_created, ret_kind);
        if (r < 0)
                snprintf(why, why_size, "%s", hv_last_error());
        (void) store_network_host_set(inv->st, n->id, h->id, r < 0 ? "failed" : "active", r < 0 ? why : NULL);
        return r;
}

/* Phase "undo" of network.create: removes the network from the hosts it
 * was created on (n_done of hosts) and its record. */
static void create_undo(Inventory *inv, const StoreNetwork *n, const int64_t *hosts, const bool *created, size_t n_done) {
        for (size_t i = 0; i < n_done; i++) {
                if (!created[i])
                        continue;
                StoreHost h;
                Link *l = NULL;
                char why[256];
                if (store_host_get(inv->st, hosts[i], &h) < 0 || link_acquire(inv, &h, &l, why, sizeof why) < 0)
                        continue;
                if (hv_network_remove(l->conn, n->name) < 0)
                        log_warn("host '%s': cannot remove network '%s' after a failed create: %s", h.name, n->name, hv_last_error());
                link_release(inv, l);
        }
        (void) store_network_delete(inv->st, n->id);
}

static int job_network_create(JobCtx *ctx, void *userdata) {
        Inventory *inv = userdata;
        StoreNetwork n;
        if (store_network_get(ctx->st, ctx->job->target_id, &n) < 0)
                return job_fail(ctx, -ENOENT, "Network '%s' no longer exists.", ctx->job->target_name);
        _cleanup_free_ int64_t *hosts = NULL;
        int k = store_network_hosts(ctx->st, &n, &hosts);
        if (k < 0)
                return job_fail(ctx, k, "Cannot read the hosts of network '%s'.", n.name);
        _cleanup_free_ bool *created = xcalloc((size_t) k + 1, sizeof *created);
        json_t *missing = json_array(), *mech = json_object();
        json_object_set_new(ctx->result = json_object(), "missing", missing);
        json_object_set_new(ctx->result, "vlan_mechanism", mech);
        int active = 0;
        for (int i = 0; i < k; i++) {
                StoreHost h;
                if (store_host_get(ctx->st, hosts[i], &h) < 0)
                        continue;
                job_progress(ctx, 5 + 90 * i / k, "setting up network '%s' on host '%s'", n.name, h.name);
                Link *l = NULL;
                char why[512];
                if (link_acquire(inv, &h, &l, why, sizeof why) < 0) {
                        /* set up when the host is refreshed next */
                        (void) store_network_host_set(ctx->st, n.id, h.id, "missing", why);
                        json_array_append_new(missing, json_string(h.name));
                        continue;
                }
                HvBridgeKind kind = HV_BRIDGE_LINUX;
                int r = ensure_on(inv, &n, &h, l, &created[i], &kind, why, sizeof why);
                link_release(inv, l);
                if (r < 0) {
                        create_undo(inv, &n, hosts, created, (size_t) i);
                        return job_fail(ctx, r, "Cannot create network '%s' on host '%s': %s. It was removed from the hosts it "
                                        "was created on.", n.name, h.name, why);
                }
                if (streq(n.mode, "bridge"))
                        json_object_set_new(mech, h.name, json_string(n.vlan ? hv_bridge_kind_name(kind) : "none"));
                active++;
        }
        json_object_set_new(ctx->result, "active", json_integer(active));
        job_progress(ctx, 100, "network '%s' stands on %d of %d hosts", n.name, active, k);
        return 0;
}

static int job_network_delete(JobCtx *ctx, void *userdata) {
        Inventory *inv = userdata;
        StoreNetwork n;
        if (store_network_get(ctx->st, ctx->job->target_id, &n) < 0)
                return job_fail(ctx, -ENOENT, "Network '%s' no longer exists.", ctx->job->target_name);
        OpError err;
        if (network_in_use(inv, &n, &err) < 0)
                return job_fail(ctx, -EBUSY, "%s", err.message);
        _cleanup_free_ int64_t *hosts = NULL;
        int k = store_network_hosts(ctx->st, &n, &hosts);
        if (k < 0)
                return job_fail(ctx, k, "Cannot read the hosts of network '%s'.", n.name);
        json_t *left = json_array();
        json_object_set_new(ctx->result = json_object(), "left_on", left);
        for (int i = 0; i < k; i++) {
                StoreHost h;
                if (store_host_get(ctx->st, hosts[i], &h) < 0)
                        continue;
                job_progress(ctx, 5 + 90 * i / k, "removing network '%s' from host '%s'", n.name, h.name);
                Link *l = NULL;
                char why[512];
                if (link_acquire(inv, &h, &l, why, sizeof why) < 0) {
                        json_array_append_new(left, json_pack("{s:s, s:s}", "host", h.name, "reason", why));
                        continue;
                }
                int r = hv_network_remove(l->conn, n.name);
                if (r < 0 && r != -ENOENT)
                        json_array_append_new(left, json_pack("{s:s, s:s}", "host", h.name, "reason", hv_last_error()));
                link_release(inv, l);
        }
        int r = store_network_delete(ctx->st, n.id);
        if (r < 0 && r != -ENOENT)
                return job_fail(ctx, r, "Cannot delete the record of network '%s'.", n.name);
        job_progress(ctx, 100, "network '%s' deleted", n.name);
        return 0;
}

void network_sync_host(Inventory *inv, Link *l, const StoreHost *h) {
        _cleanup_free_ StoreNetwork *nets = NULL;
        int k = store_network_for_host(inv->st, h->id, &nets);
        for (int i = 0; i < k; i++) {
                char why[512];
                bool created = false;
                HvBridgeKind kind;
                if (ensure_on(inv, &nets[i], h, l, &created, &kind, why, sizeof why) < 0)
                        log_warn("host '%s': cannot set up network '%s': %s", h->name, nets[i].name, why);
                else if (created) {
                        _cleanup_free_ char *msg = xasprintf("Network '%s' was set up on host '%s'.", nets[i].name, h->name);
                        (void) store_event_add(inv->st, "info", "network.host", "host", h->id, h->name, 0, msg);
                }
        }
}

/* ------------------------------------------------------------------ */
/* network cards of VMs */

/* The VM for a NIC change: readable (404), changeable by the caller (403,
 * audited), Armada's own (409) and placed (409). */
static int nic_vm(Inventory *inv, const OpCaller *c, int64_t vm_id, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *v = NULL;
        int r = inventory_vm_readable(inv, c, vm_id, &v, err);
        if (r < 0)
                return r;
        if (!op_allowed(inv->st, c, ACT_UPDATE, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")))
                return op_deny(inv->st, c, err, "change", "VM", vm_id, jget_str(v, "name"));
        if ((r = inventory_vm_refuse_foreign(v, err)) < 0)
                return r;
        const char *state = jget_str(v, "state");
        if (streq(state, "creating") || streq(state, "deleting"))
                return op_fail(err, 409, "conflict", NULL, "VM '%s' is %s; try again when that has finished.", jget_str(v, "name"), state);
        if (jget_int(v, "host_id") == 0)
                return op_fail(err, 409, "conflict", NULL, "VM '%s' is not placed on any host.", jget_str(v, "name"));
        *ret = steal_ptr(v);
        return 0;
}

int inventory_vm_nic_list(Inventory *inv, const OpCaller *c, int64_t vm_id, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *v = NULL;
        int r = inventory_vm_readable(inv, c, vm_id, &v, err);
        if (r < 0)
                return r;
        r = store_vm_nic_list(inv->st, vm_id, ret);
        return r < 0 ? op_fail_store(err, r, "the VM's network cards") : 0;
}

/* A MAC for a new NIC: spec's (normalised, unused) or a fresh random one. */
static int nic_mac(Inventory *inv, const char *want, char mac[18], OpError *err) {
        bool used = false;
        if (want) {
                if (!hv_mac_normalize(want, mac))
                        return op_fail(err, 400, "invalid_argument", "mac",
                                       "Field 'mac' (\"%.40s\") is not a unicast MAC address such as 52:54:00:12:34:56.", want);
                int r = store_vm_nic_mac_used(inv->st, mac, &used);
                if (r < 0)
                        return op_fail_store(err, r, "the MAC addresses");
                if (used)
                        return op_fail(err, 409, "conflict", "mac", "MAC address %s is in use by another network card.", mac);
                return 0;
        }
        for (int tries = 0; tries < 16; tries++) {
                hv_mac_random(mac);
                int r = store_vm_nic_mac_used(inv->st, mac, &used);
                if (r < 0)
                        return op_fail_store(err, r, "the MAC addresses");
                if (!used)
                        return 0;
        }
        return op_fail(err, 500, "internal", "mac", "Cannot find an unused MAC address.");
}

/* The network a NIC of a VM on host_id may use: an Armada network must
 * stand on that host (422 "network"); another name must be a libvirt
 * network of the host, which the job finds out. */
static int nic_network(Inventory *inv, const char *name, int64_t host_id, const char *host_name, OpError *err) {
        if (!name_is_valid(name))
                return op_fail(err, 400, "invalid_argument", "network", "Field 'network' is not a valid network name.");
        StoreNetwork n;
        int r = store_network_find(inv->st, name, &n);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return op_fail_store(err, r, "the network");
        _cleanup_free_ int64_t *hosts = NULL;
        int k = store_network_hosts(inv->st, &n, &hosts);
        if (k < 0)
                return op_fail_store(err, k, "the network");
        for (int i = 0; i < k; i++)
                if (hosts[i] == host_id)
                        return 0;
        return op_fail(err, 422, "invalid_argument", "network", "Network '%s' does not reach host '%s' of the VM.", name, host_name);
}

int inventory_vm_nic_add(Inventory *inv, const OpCaller *c, int64_t vm_id, const InventoryNicSpec *spec, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *v = NULL;
        int r = nic_vm(inv, c, vm_id, &v, err);
        if (r < 0)
                return r;
        const char *model = spec->model ? spec->model : "virtio";
        if (!streq(model, "virtio") && !streq(model, "e1000") && !streq(model, "rtl8139"))
                return op_fail(err, 400, "invalid_argument", "model", "Field 'model' is virtio, e1000 or rtl8139.");
        char mac[18];
        if ((r = nic_mac(inv, spec->mac, mac, err)) < 0)
                return r;
        if ((r = nic_network(inv, spec->network, jget_int(v, "host_id"), jget_str(v, "host_name"), err)) < 0)
                return r;
        /* The row reserves the MAC across the estate before the host sees it. */
        r = store_vm_nic_insert(inv->st, vm_id, mac, spec->network, model);
        if (r == -EEXIST)
                return op_fail(err, 409, "conflict", "mac", "MAC address %s is in use by another network card.", mac);
        if (r < 0)
                return op_fail_store(err, r, "the network card");
        _cleanup_json_ json_t *params = json_pack("{s:s, s:s, s:s}", "mac", mac, "network", spec->network, "model", model);
        int64_t job;
        const char *name = jget_str(v, "name");
        if (jobs_submit(inv->jobs, "vm.nic.add", "vm", vm_id, name, c->user_id, params, &job) < 0) {
                (void) store_vm_nic_delete(inv->st, vm_id, mac);
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        }
        _cleanup_free_ char *detail = xasprintf("%s on network %s", mac, spec->network);
        op_audit(inv->st, c, "vm.nic.add", "vm", vm_id, name, detail, "accepted");
        *ret = json_pack("{s:{s:s, s:s, s:s}, s:o}", "nic", "mac", mac, "network", spec->network, "model", model, "job",
                         job_json(inv, job));
        return 0;
}

int inventory_vm_nic_remove(Inventory *inv, const OpCaller *c, int64_t vm_id, const char *mac_in, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *v = NULL;
        int r = nic_vm(inv, c, vm_id, &v, err);
        if (r < 0)
                return r;
        char mac[18];
        if (!hv_mac_normalize(mac_in, mac))
                return op_fail(err, 400, "invalid_argument", "mac", "'%.40s' is not a MAC address such as 52:54:00:12:34:56.", mac_in);
        _cleanup_json_ json_t *nics = NULL;
        if ((r = store_vm_nic_list(inv->st, vm_id, &nics)) < 0)
                return op_fail_store(err, r, "the VM's network cards");
        bool found = false;
        size_t i;
        json_t *x;
        json_array_foreach(nics, i, x)
                found = found || streq(jget_str(x, "mac"), mac);
        const char *name = jget_str(v, "name");
        if (!found)
                return op_fail(err, 404, "not_found", "mac", "VM '%s' has no network card with MAC address %s.", name, mac);
        _cleanup_json_ json_t *params = json_pack("{s:s}", "mac", mac);
        int64_t job;
        if (jobs_submit(inv->jobs, "vm.nic.remove", "vm", vm_id, name, c->user_id, params, &job) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        op_audit(inv->st, c, "vm.nic.remove", "vm", vm_id, name, mac, "accepted");
        *ret = json_pack("{s:o}", "job", job_json(inv, job));
        return 0;
}

/* The VM's host and a live link, for the NIC jobs. */
static int nic_job_open(Inventory *inv, JobCtx *ctx, StoreVm *vm, StoreHost *h, Link **l) {
        if (store_vm_get(ctx->st, ctx->job->target_id, vm) < 0)
                return job_fail(ctx, -ENOENT, "VM '%s' no longer exists.", ctx->job->target_name);
        if (vm->host_id == 0 || store_host_get(ctx->st, vm->host_id, h) < 0)
                return job_fail(ctx, -ENXIO, "VM '%s' is not placed on any host.", vm->name);
        char why[512];
        if (link_acquire(inv, h, l, why, sizeof why) < 0)
                return job_fail(ctx, -EHOSTUNREACH, "Cannot reach host '%s' of VM '%s': %s", h->name, vm->name, why);
        return 0;
}

/* Whether the host behind l has a libvirt network called name (and, with
 * need_active, one that is running now). */
static int host_has_network(Link *l, const char *name, bool need_active, bool *ret) {
        _cleanup_free_ HvNetworkInfo *nets = NULL;
        size_t n = 0;
        int r = hv_network_list(l->conn, &nets, &n);
        if (r < 0)
                return r;
        *ret = false;
        for (size_t i = 0; i < n; i++)
                *ret = *ret || (streq(nets[i].name, name) && (!need_active || nets[i].active));
        return 0;
}

int network_default_nic(Inventory *inv, Link *l, const StoreHost *h, int64_t vm_id, char ret_network[64], char ret_mac[18]) {
        int r = store_network_default_for_host(inv->st, h->id, ret_network);
        if (r == -ENOENT) {
                /* The host's own "default" only when it runs: a defined but
                 * inactive one would fail the VM's every start. */
                bool has = false;
                if (host_has_network(l, "default", true, &has) < 0 || !has)
                        return -ENOENT;
                snprintf(ret_network, 64, "default");
        } else if (r < 0)
                return r;
        for (int tries = 0; tries < 16; tries++) {
                hv_mac_random(ret_mac);
                r = store_vm_nic_insert(inv->st, vm_id, ret_mac, ret_network, "virtio");
                if (r != -EEXIST)
                        return r;
        }
        return -EEXIST;
}

static int job_vm_nic_add(JobCtx *ctx, void *userdata) {
        Inventory *inv = userdata;
        const char *mac = jget_str(ctx->params, "mac"), *net = jget_str(ctx->params, "network"), *model = jget_str(ctx->params, "model");
        StoreVm vm;
        StoreHost h;
        Link *l = NULL;
        int r = nic_job_open(inv, ctx, &vm, &h, &l);
        if (r < 0) {
                (void) store_vm_nic_delete(ctx->st, ctx->job->target_id, mac);
                return r;
        }
        job_progress(ctx, 30, "adding a network card on network '%s' to VM '%s'", net, vm.name);
        /* libvirt defines a NIC on a network the host lacks and fails only
         * at the next start: ask first. */
        bool has = false;
        r = host_has_network(l, net, false, &has);
        if (r < 0 || !has) {
                char why[512];
                snprintf(why, sizeof why, "%s", r < 0 ? hv_last_error() : "");
                link_release(inv, l);
                (void) store_vm_nic_delete(ctx->st, vm.id, mac);
                if (r < 0)
                        return job_fail(ctx, r, "Cannot list the networks of host '%s': %s", h.name, why);
                return job_fail(ctx, -ENOENT, "Host '%s' of VM '%s' has no network '%s'.", h.name, vm.name, net);
        }
        bool live = false;
        r = hv_domain_nic_attach(l->conn, vm.uuid, net, mac, model, &live);
        char why[512];
        snprintf(why, sizeof why, "%s", hv_last_error());
        link_release(inv, l);
        if (r < 0) {
                (void) store_vm_nic_delete(ctx->st, vm.id, mac);
                return job_fail(ctx, r, "Cannot add a network card on network '%s' to VM '%s' on host '%s': %s", net, vm.name, h.name, why);
        }
        ctx->result = json_pack("{s:s, s:s, s:b}", "mac", mac, "network", net, "live", live);
        job_progress(ctx, 100, live ? "network card %s added (live and for the next boot)" : "network card %s added (from the next boot)", mac);
        return 0;
}

static int job_vm_nic_remove(JobCtx *ctx, void *userdata) {
        Inventory *inv = userdata;
        const char *mac = jget_str(ctx->params, "mac");
        StoreVm vm;
        StoreHost h;
        Link *l = NULL;
        int r = nic_job_open(inv, ctx, &vm, &h, &l);
        if (r < 0)
                return r;
        job_progress(ctx, 30, "removing network card %s from VM '%s'", mac, vm.name);
        bool live = false;
        r = hv_domain_nic_detach(l->conn, vm.uuid, mac, &live);
        char why[512];
        snprintf(why, sizeof why, "%s", hv_last_error());
        link_release(inv, l);
        if (r < 0 && r != -ENOENT)
                return job_fail(ctx, r, "Cannot remove network card %s from VM '%s' on host '%s': %s", mac, vm.name, h.name, why);
        (void) store_vm_nic_delete(ctx->st, vm.id, mac);
        ctx->result = json_pack("{s:s, s:b}", "mac", mac, "live", live);
        job_progress(ctx, 100, "network card %s removed", mac);
        return 0;
}

/* An add interrupted by a restart may or may not have reached the host:
 * queue the removal of the card, which drops its record either way. */
static void abandon_vm_nic_add(Store *st, const StoreJob *job, void *userdata) {
        Inventory *inv = userdata;
        _cleanup_json_ json_t *p = job->params_json ? json_loads(job->params_json, 0, NULL) : NULL;
        if (!p || !json_is_string(json_object_get(p, "mac")))
                return;
        _cleanup_json_ json_t *q = json_pack("{s:s}", "mac", jget_str(p, "mac"));
        (void) jobs_submit(inv->jobs, "vm.nic.remove", "vm", job->target_id, job->target_name, job->owner_id, q, NULL);
        (void) st;
}

void network_register_jobs(Inventory *inv) {
        jobs_register(inv->jobs, "network.create", job_network_create, NULL, inv, true);
        jobs_register(inv->jobs, "network.delete", job_network_delete, NULL, inv, true);
        jobs_register(inv->jobs, "vm.nic.add", job_vm_nic_add, abandon_vm_nic_add, inv, false);
        jobs_register(inv->jobs, "vm.nic.remove", job_vm_nic_remove, NULL, inv, true);
}
