/* The screens of VMs, for the web console: where a VM's VNC server can be
 * reached (and with which password), and a scaled picture of its screen.
 * These are the inventory's operations: they read the VM, ask the policy,
 * and talk to the host over the inventory's live link without ever
 * connecting (they run on HTTP threads). The API keeps only HTTP: the
 * WebSocket bridge and the picture cache. */
#include "inventory-priv.h"

#include <errno.h>
#include <string.h>

#include "hv/hv-screen.h"

/* An empty address (a local URI, a VNC without listen=) counts as loopback. */
static bool loopback_or_empty(const char *a) {
        return !a[0] || addr_is_loopback(a);
}

int inventory_vm_readable(Inventory *inv, const OpCaller *c, int64_t vm_id, json_t **ret, OpError *err) {
        json_t *v = NULL;
        int r = store_vm_get_json(inv->st, vm_id, &v);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the VM");
        if (!v || !op_allowed(inv->st, c, ACT_READ, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id"))) {
                json_decref(v);
                return op_fail(err, 404, "not_found", NULL, "There is no VM with id %lld.", (long long) vm_id);
        }
        *ret = v;
        return 0;
}

/* The checks both console operations make: readable, operable, not foreign. */
static int console_allowed(Inventory *inv, const OpCaller *c, int64_t vm_id, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *v = NULL;
        int e = inventory_vm_readable(inv, c, vm_id, &v, err);
        if (e < 0)
                return e;
        const char *name = jget_str(v, "name");
        if (!op_allowed(inv->st, c, ACT_OPERATE, OBJ_VM, jget_int(v, "owner_id"), jget_int(v, "group_id")))
                return op_deny(inv->st, c, err, "open the console of", "VM", vm_id, name);
        if (streq(jget_str(v, "origin"), "foreign"))
                return op_fail(err, 409, "conflict", NULL, "VM '%s' belongs to another Armada installation; it is read-only here.", name);
        *ret = steal_ptr(v);
        return 0;
}

int inventory_vm_console(Inventory *inv, const OpCaller *c, int64_t vm_id, InventoryConsole *ret, OpError *err) {
        _cleanup_json_ json_t *v = NULL;
        int e = console_allowed(inv, c, vm_id, &v, err);
        if (e < 0)
                return e;
        const char *name = jget_str(v, "name");
        StoreHost h;
        e = jget_int(v, "host_id") > 0 ? store_host_get(inv->st, jget_int(v, "host_id"), &h) : -ENOENT;
        if (e == -ENOENT)
                return op_fail(err, 409, "conflict", NULL, "VM '%s' is not placed on any host.", name);
        if (e < 0)
                return op_fail_store(err, e, "the VM's host");
        _cleanup_inventory_link_ InventoryLink *l = link_peek(inv, h.id);
        if (!l)
                return op_fail(err, 503, "unavailable", NULL,
                               "Host '%s' of VM '%s' is not connected right now; armadad reconnects in the background.", h.name, name);
        HvVnc vnc;
        e = hv_domain_vnc(l->conn, jget_str(v, "uuid"), &vnc);
        if (e == -EBUSY)
                return op_fail(err, 409, "conflict", NULL, "VM '%s' is not running; start it to see its console.", name);
        if (e == -ENOENT)
                return op_fail(err, 409, "conflict", NULL, "VM '%s' has no VNC screen: %s.", name, hv_last_error());
        if (e < 0)
                return op_fail(err, 502, "host_error", NULL, "Cannot find the console of VM '%s': %s", name, hv_last_error());
        if (vnc.port <= 0)
                return op_fail(err, 409, "conflict", NULL, "The VNC server of VM '%s' has no port yet.", name);
        char host_addr[256];
        (void) hv_uri_host(h.uri, host_addr, sizeof host_addr);
        const char *addr;
        if (!vnc.listen[0] || streq(vnc.listen, "0.0.0.0") || streq(vnc.listen, "::"))
                addr = host_addr[0] ? host_addr : "127.0.0.1";
        else if (loopback_or_empty(vnc.listen) && !loopback_or_empty(host_addr))
                return op_fail(err, 409, "unreachable", NULL,
                               "The VNC server of VM '%s' listens only on the loopback address of host '%s', which armadad cannot reach;"
                               " the console works for VMs whose VNC listens on an address armadad can reach.", name, h.name);
        else
                addr = vnc.listen;
        *ret = (InventoryConsole) { .port = vnc.port };
        snprintf(ret->vm_name, sizeof ret->vm_name, "%s", name);
        snprintf(ret->addr, sizeof ret->addr, "%s", addr);
        snprintf(ret->password, sizeof ret->password, "%s", vnc.password);
        return 0;
}

int inventory_vm_console_password(Inventory *inv, const OpCaller *c, int64_t vm_id, char ret[64], OpError *err) {
        _cleanup_json_ json_t *v = NULL;
        int e = console_allowed(inv, c, vm_id, &v, err);
        if (e < 0)
                return e;
        const char *name = jget_str(v, "name");
        _cleanup_inventory_link_ InventoryLink *l = jget_int(v, "host_id") > 0 ? link_peek(inv, jget_int(v, "host_id")) : NULL;
        if (!l)
                return op_fail(err, 503, "unavailable", NULL, "The host of VM '%s' is not connected right now.", name);
        HvVnc vnc;
        e = hv_domain_vnc(l->conn, jget_str(v, "uuid"), &vnc);
        if (e == -EBUSY)
                return op_fail(err, 409, "conflict", NULL, "VM '%s' is not running; start it to see its console.", name);
        if (e < 0)
                return op_fail(err, 409, "conflict", NULL, "VM '%s' has no VNC screen: %s.", name, hv_last_error());
        op_audit(inv->st, c, "vm.console", "vm", vm_id, name, NULL, "ok");
        snprintf(ret, 64, "%s", vnc.password);
        return 0;
}

int inventory_vm_screen_png(Inventory *inv, int64_t host_id, const char *uuid, unsigned width, char **ret_png, size_t *ret_len,
                            char *why, size_t why_size) {
        _cleanup_inventory_link_ InventoryLink *l = link_peek(inv, host_id);
        if (!l) {
                snprintf(why, why_size, "its host is not connected right now");
                return -ENOTCONN;
        }
        _cleanup_free_ char *shot = NULL;
        size_t shot_len = 0;
        int e = hv_domain_screenshot(l->conn, uuid, &shot, &shot_len);
        HvImage full = {0}, small = {0};
        if (e == 0)
                e = hv_image_decode(shot, shot_len, &full);
        if (e == 0)
                e = hv_image_scale(&full, width, &small);
        if (e == 0)
                e = hv_image_png(&small, ret_png, ret_len);
        if (e < 0)
                snprintf(why, why_size, "%s", hv_last_error());
        hv_image_clear(&full);
        hv_image_clear(&small);
        return e;
}
