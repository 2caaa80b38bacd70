/* inventory: host connections, the host monitor, reconcile, and the job
 * handlers for hosts and VMs (see inventory.h).
 *
 * Connections: one Link per host, reference-counted so a job can keep using
 * a connection while the monitor replaces a dead one. libvirt's close
 * callback (keepalive timeout, daemon gone) marks a link dead and wakes the
 * monitor, which reconnects or declares the host unreachable.
 *
 * Serialisation: a link's op_lock is held while reconcile lists domains and
 * writes states, and while a job changes a domain and records the new state,
 * so the two never overwrite each other with stale libvirt readings. Waits
 * (a guest shutting down) happen outside the lock. */
#include "inventory.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "hv/hv.h"
#include "inventory-priv.h"

int inventory_new(Store *st, Jobs *jobs, const InventoryConfig *cfg, Inventory **ret) {
        char installation[37];
        int r = store_installation_id(st, installation);
        if (r < 0)
                return r;
        Inventory *inv = xcalloc(1, sizeof *inv);
        memcpy(inv->installation_id, installation, sizeof installation);
        inv->st = st;
        inv->jobs = jobs;
        inv->cfg = cfg ? *cfg : (InventoryConfig) {0};
        if (inv->cfg.refresh_interval_ms <= 0) inv->cfg.refresh_interval_ms = 5000;
        if (inv->cfg.full_refresh_ms <= 0) inv->cfg.full_refresh_ms = 60000;
        if (inv->cfg.keepalive_interval_s <= 0) inv->cfg.keepalive_interval_s = 1;
        if (inv->cfg.keepalive_count == 0) inv->cfg.keepalive_count = 3;
        if (inv->cfg.stop_timeout_s <= 0) inv->cfg.stop_timeout_s = 60;
        throttle_init(inv);
        pthread_mutex_init(&inv->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&inv->wake, &ca);
        pthread_cond_init(&inv->work, &ca);
        pthread_condattr_destroy(&ca);
        *ret = inv;
        return 0;
}

/* ------------------------------------------------------------------ */
/* links */

static void host_not_responding(Inventory *inv, int64_t host_id, const char *what);

/* From libvirt's event loop (a connection closed: keepalive, EOF), or from
 * the thread whose call missed its deadline ("not responding: ..."). */
static void link_on_close(void *userdata, const char *reason) {
        Link *l = userdata;
        atomic_store(&l->dead, true);
        log_warn("connection to host %lld closed: %s", (long long) l->host_id, reason ? reason : "unknown reason");
        const char *what;
        if (reason && strncmp(reason, "not responding", 14) == 0 && hv_conn_not_responding(l->conn, &what))
                host_not_responding(l->inv, l->host_id, what);
        pthread_mutex_lock(&l->inv->lock);
        pthread_cond_broadcast(&l->inv->wake);
        pthread_mutex_unlock(&l->inv->lock);
}

static void link_destroy(Link *l) {
        hv_conn_free(l->conn);
        pthread_mutex_destroy(&l->op_lock);
        pthread_mutex_destroy(&l->storage_lock);
        free(l);
}

void link_release(Inventory *inv, Link *l) {
        if (!l)
                return;
        pthread_mutex_lock(&inv->lock);
        bool last = --l->refs == 0;
        pthread_mutex_unlock(&inv->lock);
        if (last)
                link_destroy(l);
}

/* Removes l from the list (dropping the list's reference). Caller holds lock;
 * returns true when the caller must destroy it. */
static bool link_unlist_locked(Inventory *inv, Link *l) {
        for (Link **p = INVENTORY_LINKS_OF(inv, l->host_id); *p; p = &(*p)->next)
                if (*p == l) {
                        *p = l->next;
                        return --l->refs == 0;
                }
        return false;
}

/* Returns a live link to the host (connecting when needed) with a reference
 * the caller releases, or negative with a sentence in why. */
int link_acquire(Inventory *inv, const StoreHost *h, Link **ret, char *why, size_t why_size) {
        Link *dead_one = NULL;
        pthread_mutex_lock(&inv->lock);
        for (Link *l = *INVENTORY_LINKS_OF(inv, h->id); l; l = l->next) {
                if (l->host_id != h->id)
                        continue;
                if (!atomic_load(&l->dead) && hv_conn_alive(l->conn)) {
                        l->refs++;
                        pthread_mutex_unlock(&inv->lock);
                        *ret = l;
                        return 0;
                }
                if (link_unlist_locked(inv, l))
                        dead_one = l;
                break;
        }
        pthread_mutex_unlock(&inv->lock);
        if (dead_one)
                link_destroy(dead_one);

        char refused[512];
        if (hv_uri_check(h->uri, inv->cfg.allow_test_hosts, refused, sizeof refused) < 0) {
                snprintf(why, why_size, "its URI '%.300s' is refused: %s", h->uri, refused);
                return -EPERM;
        }
        Link *n = xcalloc(1, sizeof *n);
        n->host_id = h->id;
        n->inv = inv;
        pthread_mutex_init(&n->op_lock, NULL);
        pthread_mutex_init(&n->storage_lock, NULL);
        int r = hv_connect(h->uri, inv->cfg.keepalive_interval_s, inv->cfg.keepalive_count, link_on_close, n, &n->conn);
        if (r < 0) {
                snprintf(why, why_size, "%s", hv_last_error()[0] ? hv_last_error() : "connection failed");
                if (hv_last_error_detail()[0])
                        log_debug("host '%s': %s; libvirt said: %s", h->name, why, hv_last_error_detail());
                pthread_mutex_destroy(&n->op_lock);
                pthread_mutex_destroy(&n->storage_lock);
                free(n);
                return r;
        }
        /* Domain events let a quiet host's rounds skip listing its domains
         * (see refresh_host); without them every round lists. */
        if (hv_conn_watch_domains(n->conn) < 0)
                log_debug("host '%s': no domain events (%s); every refresh lists its domains", h->name, hv_last_error());
        pthread_mutex_lock(&inv->lock);
        for (Link *l = *INVENTORY_LINKS_OF(inv, h->id); l; l = l->next)
                if (l->host_id == h->id && !atomic_load(&l->dead)) {
                        /* Another thread connected meanwhile: use theirs. */
                        l->refs++;
                        pthread_mutex_unlock(&inv->lock);
                        link_destroy(n);
                        *ret = l;
                        return 0;
                }
        n->refs = 2; /* the list's and the caller's */
        Link **head = INVENTORY_LINKS_OF(inv, n->host_id);
        n->next = *head;
        *head = n;
        pthread_mutex_unlock(&inv->lock);
        *ret = n;
        return 0;
}

Link *link_peek(Inventory *inv, int64_t host_id) {
        Link *found = NULL;
        pthread_mutex_lock(&inv->lock);
        for (Link *l = *INVENTORY_LINKS_OF(inv, host_id); l; l = l->next)
                if (l->host_id == host_id) {
                        if (!atomic_load(&l->dead) && hv_conn_alive(l->conn)) {
                                l->refs++;
                                found = l;
                        }
                        break;
                }
        pthread_mutex_unlock(&inv->lock);
        return found;
}

int inventory_link_acquire(Inventory *inv, const StoreHost *h, InventoryLink **ret, char *why, size_t why_size) {
        return link_acquire(inv, h, ret, why, why_size);
}

Jobs *inventory_jobs(Inventory *inv) {
        return inv->jobs;
}

InventoryLink *inventory_link_peek(Inventory *inv, int64_t host_id) {
        return link_peek(inv, host_id);
}

InventoryLink *inventory_link_unref(InventoryLink *l) {
        if (l)
                link_release(l->inv, l);
        return NULL;
}

HvConn *inventory_link_conn(const InventoryLink *l) {
        return l->conn;
}

void inventory_link_lock_ops(InventoryLink *l) {
        pthread_mutex_lock(&l->op_lock);
}

void inventory_link_unlock_ops(InventoryLink *l) {
        pthread_mutex_unlock(&l->op_lock);
}

bool inventory_host_connected(Inventory *inv, int64_t host_id) {
        bool alive = false;
        pthread_mutex_lock(&inv->lock);
        for (Link *l = *INVENTORY_LINKS_OF(inv, host_id); l; l = l->next)
                if (l->host_id == host_id && !atomic_load(&l->dead) && hv_conn_alive(l->conn))
                        alive = true;
        pthread_mutex_unlock(&inv->lock);
        return alive;
}

/* Drops the host's link (host removed). */
void link_forget(Inventory *inv, int64_t host_id) {
        Link *gone = NULL;
        pthread_mutex_lock(&inv->lock);
        for (Link *l = *INVENTORY_LINKS_OF(inv, host_id); l; l = l->next)
                if (l->host_id == host_id) {
                        if (link_unlist_locked(inv, l))
                                gone = l;
                        break;
                }
        pthread_mutex_unlock(&inv->lock);
        if (gone)
                link_destroy(gone);
}

/* ------------------------------------------------------------------ */
/* reconcile */

const char *inventory_domain_type(const StoreHost *h, const char *requested) {
        /* libvirt's test driver defines any domain type; a test host's VMs
         * are "test" unless the host's preference says qemu (so that test
         * suites see a preference applied end to end) */
        if (h->domain_type[0] && streq(h->domain_type, "test"))
                return (!requested || streq(requested, "auto")) && streq(h->domain_type_preference, "qemu") ? "qemu" : "test";
        if (requested && streq(requested, "kvm"))
                return "kvm";
        if (requested && streq(requested, "qemu"))
                return "qemu";
        /* auto: the host's preference (nested KVM may start firmware but
         * not boot Linux, see scripts/run-local), else what it offers */
        if (streq(h->domain_type_preference, "kvm") || streq(h->domain_type_preference, "qemu"))
                return streq(h->domain_type_preference, "kvm") ? "kvm" : "qemu";
        return streq(h->domain_type, "kvm") ? "kvm" : "qemu";
}

int inventory_domain_type_preference_check(const StoreHost *h, const char *preference, char *why, size_t why_size) {
        if (!preference || !(streq(preference, "auto") || streq(preference, "kvm") || streq(preference, "qemu"))) {
                snprintf(why, why_size, "The domain type preference must be auto, kvm or qemu.");
                return -EINVAL;
        }
        if (streq(preference, "kvm") && !streq(h->domain_type, "kvm")) {
                if (h->domain_type[0])
                        snprintf(why, why_size, "Host '%s' cannot prefer KVM: its libvirt offers no KVM domain type (only '%s').",
                                 h->name, h->domain_type);
                else
                        snprintf(why, why_size, "Host '%s' cannot prefer KVM yet: it has not been connected, so whether its"
                                 " libvirt offers KVM is not known.", h->name);
                return -ENOTSUP;
        }
        return 0;
}

static void discovered_name(Store *st, const HvDomainInfo *d, char out[64]) {
        int64_t id;
        if (name_is_valid(d->name) && store_vm_find(st, d->name, &id) == -ENOENT) {
                snprintf(out, 64, "%.63s", d->name);
                return;
        }
        char clean[48];
        size_t k = 0;
        for (const char *p = d->name; *p && k < sizeof clean - 1; p++) {
                unsigned char c = (unsigned char) *p;
                bool ok = c < 0x80 && (('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') ||
                                       (k > 0 && (c == '.' || c == '_' || c == '-')));
                clean[k] = ok ? (char) c : (k > 0 ? '-' : 'x');
                k++;
        }
        clean[k] = 0;
        snprintf(out, 64, "%s-%.8s", k ? clean : "vm", d->uuid);
}

const char *inventory_installation_id(Inventory *inv) {
        return inv->installation_id;
}

bool inventory_vm_is_foreign(const StoreVm *vm) {
        return streq(vm->origin, "foreign");
}

int inventory_host_by_uri(Inventory *inv, const char *uri, StoreHost *ret) {
        /* One indexed lookup of the normalised URI (the key). Rows without
         * a key yet (from before it, or inserted past the inventory) are
         * normalised here once and keyed, so a registration does not read
         * and parse every host's URI (which made adding n hosts O(n^2)). */
        _cleanup_free_ char *want = hv_uri_normalize(uri);
        StoreHost *unkeyed = NULL;
        int n = store_host_unkeyed(inv->st, &unkeyed);
        if (n < 0)
                return n;
        int r = -ENOENT;
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *have = hv_uri_normalize(unkeyed[i].uri);
                (void) store_host_set_uri_key(inv->st, unkeyed[i].id, have); /* a failure (logged): normalised again next time */
                if (r == -ENOENT && streq(have, want)) {
                        *ret = unkeyed[i];
                        r = 0;
                }
        }
        free(unkeyed);
        StoreHost keyed;
        int k = store_host_find_uri_key(inv->st, want, &keyed);
        if (k < 0 && k != -ENOENT)
                return k;
        if (k == 0 && (r == -ENOENT || keyed.id < ret->id)) {
                *ret = keyed;
                r = 0;
        }
        return r;
}

/* Whether domain d was defined by another Armada installation. */
static bool domain_is_foreign(Inventory *inv, const HvDomainInfo *d) {
        return d->armada_installation[0] && !streq(d->armada_installation, inv->installation_id);
}

static void import_domain(Inventory *inv, const StoreHost *h, const HvDomainInfo *d) {
        StoreVm vm = {0};
        snprintf(vm.uuid, sizeof vm.uuid, "%s", d->uuid);
        discovered_name(inv->st, d, vm.name);
        vm.host_id = h->id;
        vm.cpus = d->vcpus;
        vm.memory_mib = d->memory_mib;
        snprintf(vm.state, sizeof vm.state, "%s", hv_state_name(d->state));
        snprintf(vm.domain_type, sizeof vm.domain_type, "%s", d->domain_type);
        bool foreign = domain_is_foreign(inv, d);
        snprintf(vm.origin, sizeof vm.origin, "%s", foreign ? "foreign" : "discovered");
        int64_t id;
        if (store_vm_insert(inv->st, &vm, &id) < 0)
                return;
        for (size_t i = 0; i < d->n_disks; i++) {
                StoreDisk disk = { .size_bytes = d->disks[i].capacity_bytes, .owned = false };
                snprintf(disk.target, sizeof disk.target, "%s", d->disks[i].target);
                snprintf(disk.path, sizeof disk.path, "%s", d->disks[i].path);
                (void) store_vm_disk_add(inv->st, id, &disk);
        }
        _cleanup_free_ char *msg = foreign
                ? xasprintf("VM '%s' on host '%s' belongs to another Armada installation (%s); it is shown as foreign%s%s%s,"
                            " read-only.", d->name, h->name, d->armada_installation, streq(vm.name, d->name) ? "" : " under the name '",
                            streq(vm.name, d->name) ? "" : vm.name, streq(vm.name, d->name) ? "" : "'")
                : streq(vm.name, d->name)
                ? xasprintf("VM '%s' was found on host '%s' and imported as discovered.", vm.name, h->name)
                : xasprintf("VM '%s' was found on host '%s' and imported as discovered under the name '%s'.", d->name, h->name, vm.name);
        (void) store_event_add(inv->st, "info", foreign ? "vm.foreign" : "vm.discovered", "vm", id, vm.name, 0, msg);
}

static bool vm_is_busy(Store *st, int64_t vm_id) {
        int64_t n = 0;
        return store_query_i64(st, &n, "SELECT count(*) FROM job WHERE target_kind = 'vm' AND target_id = ? AND state IN ('queued', 'running')",
                               "i", vm_id) == 0 && n > 0;
}

/* What the host Armada has a VM on says of it, asked directly. */
typedef enum {
        OWNER_RUNS,         /* it runs (or is paused) there too */
        OWNER_DOES_NOT,     /* the owner answered: not running, or no such domain */
        OWNER_CANNOT_TELL,  /* the owner cannot be asked now (unreachable, failed, down) */
} OwnerSays;

static OwnerSays owner_says(Inventory *inv, const StoreHost *owner, const char *uuid) {
        Link *ol = NULL;
        char why[256];
        if (!streq(owner->state, "ok") && !streq(owner->state, "maintenance"))
                return OWNER_CANNOT_TELL;
        if (link_acquire(inv, owner, &ol, why, sizeof why) < 0)
                return OWNER_CANNOT_TELL;
        HvState os;
        int r = hv_domain_state(ol->conn, uuid, &os);
        link_release(inv, ol);
        if (r == -ENOENT || (r == 0 && (os == HV_STATE_SHUTOFF || os == HV_STATE_CRASHED || os == HV_STATE_NOSTATE)))
                return OWNER_DOES_NOT;
        return r == 0 ? OWNER_RUNS : OWNER_CANNOT_TELL;
}

/* A domain that is not shut off here while Armada has its VM on another
 * host (the owner). Returns false when the record should follow it here (a
 * migration outside Armada, or a restart after the owner was fenced), true
 * when it was dealt with otherwise. The record moves only on proof that the
 * owner no longer runs it: the owner answers "not running", or was fenced
 * (powered off). When the owner runs it too, the copy here is stale (a
 * failover restarted the VM there while this host was cut off) and is
 * powered off and undefined -- never the recorded copy, and never between
 * two records of one hypervisor. When the owner cannot be asked, nothing
 * moves and nothing is powered off: a record that wandered to a stale copy
 * would make the next round kill the real one. Caller holds l->op_lock. */
static bool copy_elsewhere(Inventory *inv, Link *l, const StoreHost *h, const StoreVm *vm, const HvDomainInfo *d) {
        StoreHost owner;
        if (store_host_get(inv->st, vm->host_id, &owner) < 0)
                return false; /* the owner is gone: the VM lives here now */
        /* Never on another installation's domain, and only between two
         * hypervisors known to be different: a host registered twice sees
         * the same domain "on both", and killing it would kill the only copy. */
        if (domain_is_foreign(inv, d) || inventory_vm_is_foreign(vm))
                return true;
        if (!h->identity[0] || !owner.identity[0] || streq(h->identity, owner.identity)) {
                log_warn("VM '%s' runs on host '%s' and on host '%s', which are the same hypervisor or not yet known to differ;"
                         " nothing was powered off", vm->name, owner.name, h->name);
                return true;
        }
        switch (owner_says(inv, &owner, d->uuid)) {
        case OWNER_DOES_NOT:
                return false;
        case OWNER_CANNOT_TELL:
                if (streq(owner.state, "fenced"))
                        return false;
                log_warn("VM '%s' is %s on host '%s' while Armada has it on host '%s', which cannot be asked now; its record"
                         " stays until '%s' answers", vm->name, hv_state_name(d->state), h->name, owner.name, owner.name);
                return true;
        case OWNER_RUNS:
                break;
        }
        /* A copy still starting (QEMU starts paused) is judged once it runs. */
        if (d->state != HV_STATE_RUNNING && d->state != HV_STATE_BLOCKED)
                return true;
        int r = hv_domain_kill(l->conn, d->uuid);
        const char *err = r < 0 && r != -EBUSY ? hv_last_error() : NULL;
        _cleanup_free_ char *msg = err
                ? xasprintf("VM '%s' runs on host '%s' and also on host '%s', which came back; the copy on '%s' could not be"
                            " powered off: %s", vm->name, owner.name, h->name, h->name, err)
                : xasprintf("VM '%s' runs on host '%s'; a stale copy on host '%s', which came back, was powered off and"
                            " its definition there removed.", vm->name, owner.name, h->name);
        if (!err)
                (void) hv_domain_undefine(l->conn, d->uuid);
        (void) store_event_add(inv->st, err ? "error" : "warning", "vm.stale-copy", "vm", vm->id, vm->name, vm->owner_id, msg);
        log_warn("%s", msg);
        return true;
}

/* A domain another installation defined (or a record already foreign):
 * Armada only mirrors where it is and its state, and never touches it. A
 * record adopted as discovered before the marker was seen turns foreign. */
static void reconcile_foreign(Inventory *inv, const StoreHost *h, const StoreVm *vm, const HvDomainInfo *d) {
        if (!inventory_vm_is_foreign(vm)) {
                if (!streq(vm->origin, "discovered"))
                        return; /* Armada's own record: leave it; copy_elsewhere and "moved" skip it too */
                (void) store_vm_set_origin(inv->st, vm->id, "foreign");
                _cleanup_free_ char *msg = xasprintf("VM '%s' on host '%s' belongs to another Armada installation (%s); it is now"
                                                     " shown as foreign, read-only.", vm->name, h->name, d->armada_installation);
                (void) store_event_add(inv->st, "warning", "vm.foreign", "vm", vm->id, vm->name, vm->owner_id, msg);
        }
        if (vm->host_id != h->id) {
                if (d->state == HV_STATE_SHUTOFF)
                        return; /* a definition left behind; the record keeps the running copy's host */
                (void) store_vm_set_host(inv->st, vm->id, h->id);
        }
        (void) store_vm_set_state(inv->st, vm->id, hv_state_name(d->state));
}

/* True when host_id is known to be the same hypervisor as h. */
static bool same_hypervisor(Inventory *inv, const StoreHost *h, int64_t host_id) {
        StoreHost other;
        return h->identity[0] && store_host_get(inv->st, host_id, &other) == 0 && streq(other.identity, h->identity);
}

/* Reconcile, phase 1: one listed domain d against the VMs recorded on h
 * (known[0..n_known), seen[] marked for the one it is) or in the
 * database: imported, followed to this host, its state and size taken
 * over. False when something was left for a later round. */
static bool reconcile_domain(Inventory *inv, Link *l, const StoreHost *h, const HvDomainInfo *d, const StoreVm *known,
                             int n_known, bool *seen) {
        /* The VMs recorded on this host first (no query); a domain that is
         * not among them is looked up by UUID. */
        StoreVm vm;
        int64_t vm_id = 0;
        for (int k = 0; k < n_known && !vm_id; k++)
                if (strcasecmp(known[k].uuid, d->uuid) == 0) {
                        seen[k] = true;
                        vm = known[k];
                        vm_id = vm.id;
                }
        if (!vm_id) {
                if (store_vm_find_uuid(inv->st, d->uuid, &vm_id) < 0) {
                        import_domain(inv, h, d);
                        return true;
                }
                if (store_vm_get(inv->st, vm_id, &vm) < 0)
                        return true;
        }
        if (vm_is_busy(inv->st, vm_id))
                return false;
        const char *state = hv_state_name(d->state);
        if (domain_is_foreign(inv, d) || inventory_vm_is_foreign(&vm)) {
                reconcile_foreign(inv, h, &vm, d);
                return true;
        }
        if (vm.host_id != h->id) {
                if (d->state == HV_STATE_SHUTOFF)
                        return true; /* a stale definition; the VM lives where Armada placed it */
                if (same_hypervisor(inv, h, vm.host_id))
                        return true; /* one libvirtd seen through two host records: nothing moved */
                /* whatever is decided, the next round looks again */
                if (copy_elsewhere(inv, l, h, &vm, d))
                        return false;
                _cleanup_free_ char *msg = xasprintf("VM '%s' is %s on host '%s'; Armada had it on host id %lld. Its record now follows it.",
                                                     vm.name, state, h->name, (long long) vm.host_id);
                (void) store_vm_set_host(inv->st, vm_id, h->id);
                (void) store_vm_set_state(inv->st, vm_id, state);
                (void) store_event_add(inv->st, "warning", "vm.moved", "vm", vm_id, vm.name, vm.owner_id, msg);
                return false;
        }
        /* Armada's own VM from before domains were marked: mark it now,
         * so that another installation sharing the host leaves it alone. */
        int mr = !d->armada_installation[0] && !streq(vm.origin, "discovered")
                ? hv_domain_mark(l->conn, d->uuid, inv->installation_id, vm_id) : 0;
        if (mr < 0 && mr != -EOPNOTSUPP) /* a driver without metadata cannot carry the marker */
                log_warn("cannot mark VM '%s' on host '%s' as this installation's: %s", vm.name, h->name, hv_last_error());
        /* vm is the row as read for this list: an equal state needs no
         * statement (a full refresh of a quiet host then writes nothing) */
        if (!streq(vm.state, state) && store_vm_set_state(inv->st, vm_id, state) > 0) {
                _cleanup_free_ char *msg = xasprintf("VM '%s' on host '%s' is now %s (was %s).", vm.name, h->name, state, vm.state);
                (void) store_event_add(inv->st, streq(state, "crashed") ? "error" : "info", "vm.state", "vm", vm_id,
                                       vm.name, vm.owner_id, msg);
        }
        /* An Armada domain's memory is what its balloon gives it (a live
         * change of size, hv-hardware.h); others' is their <memory>. */
        uint64_t mem = d->current_memory_mib && streq(d->armada_installation, inv->installation_id) ? d->current_memory_mib
                                                                                                      : d->memory_mib;
        if (vm.cpus != d->vcpus || vm.memory_mib != mem)
                (void) store_vm_update_hw(inv->st, vm_id, d->vcpus, mem, d->domain_type[0] ? d->domain_type : vm.domain_type);
        return true;
}

static bool domains_have(const HvDomainInfo *doms, size_t n, const char *uuid) {
        for (size_t i = 0; i < n; i++)
                if (strcasecmp(doms[i].uuid, uuid) == 0)
                        return true;
        return false;
}

/* Reconcile, phase 2: a VM recorded on h that the list did not show
 * (doms[0..n)): another installation's is forgotten, Armada's own is
 * missing. False when it was left for a later round (a job on it). */
static bool reconcile_unlisted(Inventory *inv, const StoreHost *h, const StoreVm *vm, const HvDomainInfo *doms, size_t n) {
        if (streq(vm->state, "creating") || streq(vm->state, "deleting") || streq(vm->state, "missing"))
                return true;
        if (inventory_vm_is_foreign(vm)) {
                /* Another installation's VM that left this host: not
                 * Armada's to miss; forget it (it comes back as foreign
                 * wherever it turns up). */
                if (!domains_have(doms, n, vm->uuid) && store_vm_delete(inv->st, vm->id) == 0)
                        log_info("foreign VM '%s' is no longer on host '%s'; forgotten", vm->name, h->name);
                return true;
        }
        if (vm_is_busy(inv->st, vm->id))
                return false;
        /* Recheck by uuid: it may have been imported or moved meanwhile. */
        if (domains_have(doms, n, vm->uuid))
                return true;
        (void) store_vm_set_state(inv->st, vm->id, "missing");
        _cleanup_free_ char *msg = xasprintf("VM '%s' is missing from host '%s': libvirt has no domain with its UUID %s.",
                                             vm->name, h->name, vm->uuid);
        (void) store_event_add(inv->st, "warning", "vm.missing", "vm", vm->id, vm->name, vm->owner_id, msg);
        return true;
}

/* Lists h's domains and reconciles them with the VMs recorded on it: each
 * listed domain (reconcile_domain), then each recorded VM not listed
 * (reconcile_unlisted). 0, or the failure of listing the host's domains
 * (nothing reconciled). *ret_settled: false when something was left for a
 * later round to decide (a VM with a job in flight, a copy of a VM on two
 * hosts): such a host is listed again next round, events or not. */
static int reconcile(Inventory *inv, Link *l, const StoreHost *h, bool *ret_settled) {
        bool settled = true;
        HvDomainInfo *doms = NULL;
        size_t n = 0;
        pthread_mutex_lock(&l->op_lock);
        int r = hv_list_domains(l->conn, &doms, &n);
        if (r < 0) {
                pthread_mutex_unlock(&l->op_lock);
                log_warn("cannot list domains on host '%s': %s", h->name, hv_last_error());
                return r;
        }
        StoreVm *known = NULL;
        int n_known = store_vm_list_on_host(inv->st, h->id, &known);
        if (n_known < 0) n_known = 0;
        bool *seen = xcalloc((size_t) n_known + 1, sizeof(bool));
        for (size_t i = 0; i < n; i++)
                settled = reconcile_domain(inv, l, h, &doms[i], known, n_known, seen) && settled;
        for (int k = 0; k < n_known; k++)
                if (!seen[k])
                        settled = reconcile_unlisted(inv, h, &known[k], doms, n) && settled;
        pthread_mutex_unlock(&l->op_lock);
        free(seen);
        free(known);
        free(doms);
        *ret_settled = settled;
        return 0;
}

void inventory_on_host_state(Inventory *inv, InventoryHostStateFn fn, void *userdata) {
        inv->on_host_state = fn;
        inv->on_host_state_data = userdata;
}

void inventory_host_state_changed(Inventory *inv, int64_t host_id) {
        if (inv && inv->on_host_state)
                inv->on_host_state(inv->on_host_state_data, host_id);
}

/* Turns h to state with reason, unless it is in one of keep. When that
 * changed anything: an error event "host.<state>" saying msg, its VMs
 * unknown (nobody can say what they do now), the log (with libvirt's whole
 * message, detail, which clients never see) and the state listeners. */
static void host_down(Inventory *inv, const StoreHost *h, const char *state, const char *reason,
                      const char *const *keep, const char *msg, const char *detail) {
        if (store_host_set_state_unless(inv->st, h->id, state, reason, keep) <= 0)
                return;
        _cleanup_free_ char *kind = xasprintf("host.%s", state);
        (void) store_event_add(inv->st, "error", kind, "host", h->id, h->name, 0, msg);
        (void) store_exec(inv->st, "UPDATE vm SET state = 'unknown', updated_at = ? WHERE host_id = ?"
                                   " AND state NOT IN ('creating', 'deleting', 'missing')", "ii", now_ms(), h->id);
        if (detail && detail[0])
                log_warn("%s (libvirt: %s)", msg, detail);
        else
                log_warn("%s", msg);
        inventory_host_state_changed(inv, h->id);
}

/* why is shown to clients (host error, event); detail, libvirt's whole
 * message, only goes to the log. */
static void host_unreachable(Inventory *inv, const StoreHost *h, const char *why, const char *detail) {
        /* ha owns the state of a failed or fenced cluster member. */
        static const char *const keep[] = { "maintenance", "failed", "fenced", "duplicate", NULL };
        _cleanup_free_ char *msg = xasprintf("Host '%s' is unreachable: %s", h->name, why);
        host_down(inv, h, "unreachable", why, keep, msg, detail);
}

/* libvirtd accepts connections and keepalive but a call did not return
 * within its deadline (what says which): its workers hang. Unlike an
 * unreachable host, its guests most likely run on; what they do is not
 * known until it answers again. */
static void host_not_responding(Inventory *inv, int64_t host_id, const char *what) {
        StoreHost h;
        if (store_host_get(inv->st, host_id, &h) < 0)
                return;
        /* The first call that missed its deadline stays the reason until
         * the host answers again. */
        static const char *const keep[] = { "maintenance", "failed", "fenced", "duplicate", "not-responding", NULL };
        _cleanup_free_ char *reason = xasprintf("libvirtd accepts connections but does not answer: %s", what);
        _cleanup_free_ char *msg = xasprintf("Host '%s' is not responding: %s", h.name, reason);
        host_down(inv, &h, "not-responding", reason, keep, msg, NULL);
}

/* Records which hypervisor host h reaches, refusing when another host
 * record already has it: then h is removed (nothing refers to it: a new
 * registration) or set to "duplicate" (VMs point at it: a database from
 * before identities), and nothing of it is reconciled. 0 (h->identity
 * set) or -EEXIST with the sentence in reason. */
static int claim_identity(Inventory *inv, StoreHost *h, const HvHostInfo *info, char *reason, size_t reason_size) {
        /* Every test:///default connection of a process shares one driver, and
         * the test driver reports no host UUID: its identity is its URI. */
        _cleanup_free_ char *norm = hv_uri_normalize(h->uri);
        _cleanup_free_ char *identity = info->uuid[0] && !hv_uri_is_test(h->uri) ? xasprintf("uuid:%s", info->uuid)
                                                                                  : xasprintf("uri:%s", norm);
        if (streq(h->identity, identity))
                return 0; /* claimed before; claims are exclusive, so nobody else has it */
        StoreHost holder;
        int r = store_host_claim_identity(inv->st, h->id, identity, &holder);
        if (r == 0) {
                snprintf(h->identity, sizeof h->identity, "%s", identity);
                return 0;
        }
        if (r != -EEXIST)
                return 0; /* the database failed (logged); the next round retries, h->identity stays as it was */
        bool has_vms = store_vm_count_on_host(inv->st, h->id) != 0;
        _cleanup_free_ char *what = info->uuid[0] && !hv_uri_is_test(h->uri)
                ? xasprintf("is the same hypervisor (host UUID %s) as host '%s', already registered", info->uuid, holder.name)
                : xasprintf("has the same URI as host '%s', already registered", holder.name);
        _cleanup_free_ char *msg = has_vms
                ? xasprintf("Host '%s' at '%s' %s; it is marked duplicate and left alone: nothing on it is reconciled or acted on."
                            " Remove it.", h->name, h->uri, what)
                : xasprintf("Host '%s' at '%s' %s; the second registration was removed and nothing on the hypervisor was touched.",
                            h->name, h->uri, what);
        /* A record kept as duplicate is checked again every round: report
         * it once, when it becomes one. */
        bool news = has_vms ? store_host_set_state(inv->st, h->id, "duplicate", msg) > 0
                            : store_host_delete(inv->st, h->id, false) == 0;
        if (news) {
                (void) store_event_add(inv->st, "error", "host.duplicate", "host", h->id, h->name, 0, msg);
                log_warn("%s", msg);
        }
        if (reason)
                snprintf(reason, reason_size, "%s", msg);
        return -EEXIST;
}

/* A round's refresh of a host that is known and quiet: no domain event
 * since the last full refresh, which is less than cfg.full_refresh_ms old.
 * The full refresh still comes that often, for what libvirt reports no
 * lifecycle event about (a marker, a resize done behind Armada's back, a
 * pool). */
static bool host_is_quiet(Inventory *inv, Link *l, const StoreHost *h, uint64_t events) {
        int64_t full_at = atomic_load(&l->full_at_ms);
        return full_at > 0 && events == atomic_load(&l->events_seen) && now_ms() - full_at < inv->cfg.full_refresh_ms &&
               (streq(h->state, "ok") || streq(h->state, "maintenance"));
}

/* A quiet host is asked for its facts (CPUs, memory: the call that also
 * proves its libvirtd's workers answer) every INVENTORY_QUIET_FACTS_ROUNDS
 * rounds, not every round: its connection's liveness is libvirt's
 * keepalive and close callback (a host that dies or drops off the network
 * closes the link, and the next round reconnects or marks it
 * unreachable, as before), its domains' changes are events, and the
 * monitor's round calls it every interval with a deadline (a libvirtd
 * whose workers hang becomes not-responding there). The same cadence as
 * its last_seen_at write (store_host_touch_facts()). */
#define INVENTORY_QUIET_FACTS_ROUNDS 6

static int64_t quiet_facts_ms(Inventory *inv) {
        /* half a round of slack: a round that starts a little early still
         * counts as the sixth */
        return (int64_t) inv->cfg.refresh_interval_ms * INVENTORY_QUIET_FACTS_ROUNDS - inv->cfg.refresh_interval_ms / 2;
}

static bool facts_recent(Inventory *inv, Link *l) {
        int64_t at = atomic_load(&l->facts_at_ms);
        return at > 0 && now_ms() - at < quiet_facts_ms(inv);
}

/* How VMs asking "auto" run on host h, for its host.ok event. */
static const char *vms_run_as(const StoreHost *h) {
        const char *t = inventory_domain_type(h, "auto");
        if (streq(t, "kvm"))
                return "KVM";
        if (streq(t, "qemu"))
                return streq(h->domain_type, "kvm") ? "QEMU TCG (the host prefers it to its KVM)" : "QEMU TCG (no KVM)";
        return t;
}

static int refresh_host(Inventory *inv, int64_t host_id, bool full, char *reason, size_t reason_size);

int inventory_refresh_host(Inventory *inv, int64_t host_id, char *reason, size_t reason_size) {
        return refresh_host(inv, host_id, true, reason, reason_size);
}

int inventory_refresh_round(Inventory *inv, int64_t host_id) {
        return refresh_host(inv, host_id, false, NULL, 0);
}

void inventory_refresh_stats(Inventory *inv, uint64_t *ret_facts_calls, uint64_t *ret_quiet_skips) {
        *ret_facts_calls = atomic_load(&inv->facts_calls);
        *ret_quiet_skips = atomic_load(&inv->quiet_skips);
}

/* Checks a host: its facts always (the call that tells it answers), and
 * unless it is quiet (host_is_quiet; never when full) its storage pool and
 * its domains against the VMs recorded on it. */
static int refresh_host(Inventory *inv, int64_t host_id, bool full, char *reason, size_t reason_size) {
        StoreHost h;
        int r = store_host_get(inv->st, host_id, &h);
        if (r < 0) {
                if (reason) snprintf(reason, reason_size, "There is no host with id %lld.", (long long) host_id);
                return r;
        }
        char why[512] = "";
        Link *l;
        r = link_acquire(inv, &h, &l, why, sizeof why);
        if (r < 0) {
                /* link_acquire's last hv call, in this thread, was the connect. */
                host_unreachable(inv, &h, why, r == -EPERM ? NULL : hv_last_error_detail());
                if (reason) snprintf(reason, reason_size, "Cannot connect to host '%s': %s", h.name, why);
                return r;
        }
        uint64_t events = 0;
        bool watched = hv_conn_domain_events(l->conn, &events);
        if (!full && watched && host_is_quiet(inv, l, &h, events) && facts_recent(inv, l) && hv_conn_alive(l->conn)) {
                atomic_fetch_add(&inv->quiet_skips, 1);
                link_release(inv, l);
                return 0;
        }
        HvHostInfo info;
        atomic_fetch_add(&inv->facts_calls, 1);
        r = hv_host_info(l->conn, &info);
        if (r < 0) {
                snprintf(why, sizeof why, "%s", hv_last_error());
                atomic_store(&l->dead, true);
                link_release(inv, l);
                /* A call past its deadline made the host not-responding. */
                if (r != -ETIMEDOUT)
                        host_unreachable(inv, &h, why, NULL);
                if (reason) snprintf(reason, reason_size, "Host '%s' does not answer: %s", h.name, why);
                return r;
        }
        r = claim_identity(inv, &h, &info, reason, reason_size);
        if (r < 0) {
                link_release(inv, l);
                link_forget(inv, h.id);
                return r;
        }
        atomic_store(&l->facts_at_ms, now_ms());
        if (!full && watched && host_is_quiet(inv, l, &h, events)) {
                /* last_seen_at every few rounds when nothing changed: see
                 * store_host_touch_facts(). */
                (void) store_host_touch_facts(inv->st, h.id, info.cpus, info.memory_mib, info.free_memory_mib, info.hv_driver,
                                              info.default_domain_type, info.hostname, quiet_facts_ms(inv));
                link_release(inv, l);
                return 0;
        }
        _cleanup_free_ char *pool_path = NULL;
        if (hv_pool_ensure(l->conn, h.pool, h.pool_path[0] ? h.pool_path : "/var/lib/libvirt/images/armada", &pool_path) < 0)
                log_warn("host '%s': cannot prepare storage pool '%s': %s", h.name, h.pool, hv_last_error());
        network_sync_host(inv, l, &h);
        storage_sync_host(inv, l, &h);
        (void) store_host_set_facts(inv->st, h.id, info.cpus, info.memory_mib, info.free_memory_mib, info.hv_driver,
                                    info.default_domain_type, info.hostname, pool_path);
        snprintf(h.domain_type, sizeof h.domain_type, "%s", info.default_domain_type);
        /* A host is ok once its domains could be listed: a libvirtd whose
         * workers hang answers the host's facts but not the list. */
        int64_t started = now_ms();
        bool settled = false;
        r = reconcile(inv, l, &h, &settled);
        if (r == 0 && watched && settled) {
                /* events was read before the list: an event during it makes
                 * the next round list again. */
                atomic_store(&l->events_seen, events);
                atomic_store(&l->full_at_ms, started);
        }
        if (r == -ETIMEDOUT) {
                snprintf(why, sizeof why, "%s", hv_last_error());
                link_release(inv, l);
                if (reason) snprintf(reason, reason_size, "Host '%s' does not answer: %s", h.name, why);
                return r;
        }
        /* Maintenance may have begun since h was read: checked in the update. */
        static const char *const keep_maintenance[] = { "maintenance", NULL };
        if (store_host_set_state_unless(inv->st, h.id, "ok", NULL, keep_maintenance) > 0) {
                _cleanup_free_ char *msg = streq(h.state, "connecting")
                        ? xasprintf("Host '%s' is connected (%s, %u CPUs, %llu MiB, VMs run as %s).", h.name, info.hv_driver,
                                    info.cpus, (unsigned long long) info.memory_mib,
                                    vms_run_as(&h))
                        : streq(h.state, "not-responding") ? xasprintf("Host '%s' answers again.", h.name)
                        : xasprintf("Host '%s' is reachable again.", h.name);
                (void) store_event_add(inv->st, "info", "host.ok", "host", h.id, h.name, 0, msg);
                inventory_host_state_changed(inv, h.id);
        }
        link_release(inv, l);
        return 0;
}

static bool inflight_locked(Inventory *inv, int64_t host_id) {
        for (unsigned i = 0; i < inv->n_refreshers; i++)
                if (inv->inflight[i] == host_id)
                        return true;
        return false;
}

typedef struct {
        Inventory *inv;
        unsigned slot;
} Refresher;

static void *refresher_main(void *arg) {
        Refresher *me = arg;
        Inventory *inv = me->inv;
        pthread_mutex_lock(&inv->lock);
        for (;;) {
                while (!inv->stopping && inv->q_pos >= inv->q_len)
                        pthread_cond_wait(&inv->work, &inv->lock);
                if (inv->stopping)
                        break;
                int64_t id = inv->queue[inv->q_pos++];
                if (inflight_locked(inv, id))
                        continue;
                inv->inflight[me->slot] = id;
                pthread_mutex_unlock(&inv->lock);
                (void) inventory_refresh_round(inv, id);
                pthread_mutex_lock(&inv->lock);
                inv->inflight[me->slot] = 0;
        }
        pthread_mutex_unlock(&inv->lock);
        free(me);
        return NULL;
}

static void *monitor_main(void *arg) {
        Inventory *inv = arg;
        for (;;) {
                int64_t *ids = NULL;
                int n = store_host_ids(inv->st, &ids);
                pthread_mutex_lock(&inv->lock);
                if (inv->stopping) {
                        pthread_mutex_unlock(&inv->lock);
                        free(ids);
                        break;
                }
                /* A new round replaces what the last one did not reach. */
                free(inv->queue);
                inv->queue = n > 0 ? ids : NULL;
                inv->q_len = n > 0 ? (size_t) n : 0;
                inv->q_pos = 0;
                if (n <= 0)
                        free(ids);
                pthread_cond_broadcast(&inv->work);
                struct timespec ts = time_after_ms(CLOCK_MONOTONIC, inv->cfg.refresh_interval_ms);
                pthread_cond_timedwait(&inv->wake, &inv->lock, &ts);
                pthread_mutex_unlock(&inv->lock);
        }
        return NULL;
}

int inventory_start(Inventory *inv) {
        for (unsigned i = 0; i < INVENTORY_REFRESHERS; i++) {
                Refresher *r = xcalloc(1, sizeof *r);
                *r = (Refresher) { .inv = inv, .slot = i };
                if (pthread_create(&inv->refreshers[i], NULL, refresher_main, r) != 0) {
                        free(r);
                        break;
                }
                inv->n_refreshers++;
        }
        if (inv->n_refreshers == 0 || pthread_create(&inv->monitor, NULL, monitor_main, inv) != 0)
                return -EAGAIN;
        inv->started = true;
        return 0;
}

void inventory_stop(Inventory *inv) {
        if (!inv || !inv->started)
                return;
        pthread_mutex_lock(&inv->lock);
        inv->stopping = true;
        pthread_cond_broadcast(&inv->wake);
        pthread_cond_broadcast(&inv->work);
        pthread_mutex_unlock(&inv->lock);
        pthread_join(inv->monitor, NULL);
        /* A refresher stuck connecting to a dead host cannot be interrupted:
         * give them all a few seconds, then leave the stuck ones behind. */
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 5;
        for (unsigned i = 0; i < inv->n_refreshers; i++)
                if (pthread_timedjoin_np(inv->refreshers[i], NULL, &deadline) != 0) {
                        log_warn("a host refresh is still hanging at shutdown; leaving it behind");
                        inv->stuck = true;
                }
        inv->started = false;
}

Inventory *inventory_free(Inventory *inv) {
        if (!inv)
                return NULL;
        inventory_stop(inv);
        if (inv->stuck)
                return NULL; /* a thread may still use it; the process is about to end */
        for (size_t b = 0; b < INVENTORY_LINK_BUCKETS; b++)
                while (inv->links[b]) {
                        Link *l = inv->links[b];
                        inv->links[b] = l->next;
                        link_destroy(l);
                }
        free(inv->queue);
        throttle_free(inv);
        pthread_mutex_destroy(&inv->lock);
        pthread_cond_destroy(&inv->wake);
        pthread_cond_destroy(&inv->work);
        free(inv);
        return NULL;
}

void inventory_forget_host(Inventory *inv, int64_t host_id) {
        link_forget(inv, host_id);
}

/* True when uri names a remote host: "driver+transport://[user@]host[:port]/..." with
 * a host part other than empty, localhost or 127.x. */
static bool uri_is_remote(const char *uri) {
        const char *p = strstr(uri, "://");
        if (!p)
                return false;
        p += 3;
        size_t n = strcspn(p, "/?");
        char host[256];
        if (n == 0 || n >= sizeof host)
                return false;
        memcpy(host, p, n);
        host[n] = 0;
        char *at = strrchr(host, '@');
        char *h = at ? at + 1 : host;
        char *colon = h[0] == '[' ? NULL : strrchr(h, ':');
        if (colon)
                *colon = 0;
        return *h && !streq(h, "localhost") && strncmp(h, "127.", 4) != 0 && !streq(h, "[::1]");
}

void inventory_vnc_for_host(const StoreHost *h, char listen[16], char password[9]) {
        static const char alphabet[] = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        if (!uri_is_remote(h->uri)) {
                snprintf(listen, 16, "127.0.0.1");
                password[0] = 0;
                return;
        }
        snprintf(listen, 16, "0.0.0.0");
        unsigned char rnd[8];
        if (random_bytes(rnd, sizeof rnd) < 0)
                abort(); /* getrandom() does not fail once the kernel is seeded */
        for (int i = 0; i < 8; i++)
                password[i] = alphabet[rnd[i] % (sizeof alphabet - 1)];
        password[8] = 0;
}
