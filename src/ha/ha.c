/* ha: the failover thread (see ha.h). Every tick it asks whether each
 * cluster member's inventory link is alive and drives that member's
 * HaWatch. A member declared failed gets a failover worker of its own
 * (probe, fence, restarts), so the watch thread goes on watching and a slow
 * fence of one member holds up no other member or cluster; the retry of
 * waiting VMs runs off the watch thread too. In a failover, restarts are
 * decided one after the other under the placement lock (each decision
 * counts the ones before as reserved), then started in parallel, a few
 * threads per target host, each start inside the host's start throttle; a
 * VM whose start fails there is tried on the next candidate. A VM is never
 * started elsewhere before its host is fenced. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "ha-priv.h"
#include "store/store-manager.h"
#include "placement/placement.h"

#define MAX_WATCH 1024
#define MAX_CANDIDATES 64
#define SAVE_DEFINITIONS_MS 5000
#define STARTS_PER_HOST 4
#define PROBE_TIMEOUT_MS 1000

void ha_event(Store *st, const char *severity, const char *kind, const char *object_kind, int64_t object_id,
              const char *object_name, int64_t owner_id, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *msg = NULL;
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (msg) {
                (void) store_event_add(st, severity, kind, object_kind, object_id, object_name, owner_id, msg);
                log_msg(streq(severity, "error") ? LOG_LEVEL_ERROR : streq(severity, "warning") ? LOG_LEVEL_WARN : LOG_LEVEL_INFO,
                        "%s", msg);
        }
}

void ha_save_definition(Ha *ha, InventoryLink *l, const StoreVm *vm) {
        _cleanup_free_ char *xml = NULL;
        if (hv_domain_xml_get(inventory_link_conn(l), vm->uuid, &xml) < 0) {
                log_debug("cannot save the definition of VM '%s': %s", vm->name, hv_last_error());
                return;
        }
        (void) store_vm_xml_set(ha->st, vm->id, xml);
}

/* A link to host_id that is alive now, without connecting. */
static bool member_alive(Inventory *inv, int64_t host_id) {
        return inventory_host_connected(inv, host_id);
}

/* A direct, bounded check that a member answers, independent of the
 * inventory's link (which its monitor reconnects at its own pace): a
 * libvirtd that restarted, or a link dropped while the host is fine, must
 * not get the host fenced. The connecting thread may outlive the wait (a
 * host that swallows packets); it then cleans up after itself. */
typedef struct {
        char uri[1024];
        atomic_int refs;
        atomic_bool done;
        bool ok;
} Probe;

static void probe_unref(Probe *p) {
        if (atomic_fetch_sub(&p->refs, 1) == 1)
                free(p);
}

static void *probe_main(void *arg) {
        Probe *p = arg;
        HvConn *c = NULL;
        if (hv_connect(p->uri, 1, 1, NULL, NULL, &c) == 0) {
                HvHostInfo info;
                p->ok = hv_host_info(c, &info) == 0;
                hv_conn_free(c);
        }
        atomic_store(&p->done, true);
        probe_unref(p);
        return NULL;
}

static bool probe_answers(const char *uri, int timeout_ms) {
        Probe *p = xcalloc(1, sizeof *p);
        snprintf(p->uri, sizeof p->uri, "%s", uri);
        atomic_init(&p->refs, 2);
        pthread_attr_t attr;
        pthread_t t;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int r = pthread_create(&t, &attr, probe_main, p);
        pthread_attr_destroy(&attr);
        if (r != 0) {
                free(p);
                return false;
        }
        int64_t deadline = mono_ms() + timeout_ms;
        while (!atomic_load(&p->done) && mono_ms() < deadline) {
                struct timespec ts = { 0, 10 * 1000000 };
                nanosleep(&ts, NULL);
        }
        bool ok = atomic_load(&p->done) && p->ok;
        probe_unref(p);
        return ok;
}

/* ---- restarts ---- */

/* The domain definition to restart a VM from: the one saved from libvirt,
 * else one built from the database (what Armada created it with). */
static int define_on(Ha *ha, InventoryLink *l, const StoreVm *vm, const StoreHost *h) {
        _cleanup_free_ char *xml = NULL;
        if (store_vm_xml_get(ha->st, vm->id, &xml) == 0) {
                int r = hv_domain_define_xml(inventory_link_conn(l), xml);
                /* A definition saved before domains were marked has no
                 * marker: the restarted copy must carry it. */
                if (r == 0 && hv_domain_mark(inventory_link_conn(l), vm->uuid, inventory_installation_id(ha->inv), vm->id) < 0)
                        log_warn("VM '%s': %s", vm->name, hv_last_error());
                return r;
        }
        HvDomainSpec spec = {
                .name = vm->name, .uuid = vm->uuid, .domain_type = inventory_domain_type(h, vm->domain_type[0] ? vm->domain_type : "auto"),
                .vcpus = vm->cpus, .memory_mib = vm->memory_mib, .description = vm->description[0] ? vm->description : NULL, .vnc = true,
                .installation_id = inventory_installation_id(ha->inv), .vm_id = vm->id,
        };
        StoreDisk *disks = NULL;
        int n = store_vm_disks(ha->st, vm->id, &disks);
        for (int i = 0; i < n && spec.n_disks < HV_MAX_DISKS; i++) {
                HvDisk *d = &spec.disks[spec.n_disks++];
                snprintf(d->path, sizeof d->path, "%s", disks[i].path);
                snprintf(d->target, sizeof d->target, "%s", disks[i].target);
                size_t pl = strlen(d->path);
                snprintf(d->format, sizeof d->format, "%s", pl > 6 && streq(d->path + pl - 6, ".qcow2") ? "qcow2" : "raw");
        }
        free(disks);
        return hv_domain_define(inventory_link_conn(l), &spec);
}

/* The starts of one restart_vms() call in flight, and the most at once. */
typedef struct {
        atomic_int in_flight;
        atomic_int peak;
} RestartRun;

static void run_enter(RestartRun *run) {
        int now = atomic_fetch_add(&run->in_flight, 1) + 1;
        int peak = atomic_load(&run->peak);
        while (now > peak && !atomic_compare_exchange_weak(&run->peak, &peak, now))
                ;
}

/* Defines and starts vm on host h; records where it runs. 0 or negative
 * with the reason in why. */
static int start_on(Ha *ha, RestartRun *run, const StoreVm *vm, const StoreHost *h, char *why, size_t why_size) {
        InventoryLink *l = NULL;
        char e[512];
        int r = inventory_link_acquire(ha->inv, h, &l, e, sizeof e);
        if (r < 0) {
                snprintf(why, why_size, "host '%s' cannot be reached: %.300s", h->name, e);
                return r;
        }
        /* The record moves to h before the start, so that reconcile there
         * finds the VM where Armada says it is; the start itself runs
         * outside the link's lock, so a host starts several VMs at once. */
        inventory_link_lock_ops(l);
        HvState s;
        bool existed = hv_domain_state(inventory_link_conn(l), vm->uuid, &s) == 0;
        bool running = existed && (s == HV_STATE_RUNNING || s == HV_STATE_BLOCKED);
        r = running ? 0 : define_on(ha, l, vm, h);
        bool moved = r == 0;
        if (moved)
                (void) store_vm_set_host(ha->st, vm->id, h->id);
        else
                snprintf(why, why_size, "host '%s': %s", h->name, hv_last_error());
        inventory_link_unlock_ops(l);
        if (r == 0 && !running) {
                /* Ahead of every queued job start, and never held longer
                 * than priority_wait_ms (see inventory_slot_take()). */
                (void) inventory_slot_take(ha->inv, h, INVENTORY_SLOT_START, vm->name, true, NULL);
                run_enter(run);
                r = hv_domain_start(inventory_link_conn(l), vm->uuid);
                atomic_fetch_sub(&run->in_flight, 1);
                inventory_slot_give(ha->inv, h->id, INVENTORY_SLOT_START);
                if (r < 0)
                        snprintf(why, why_size, "host '%s': %s", h->name, hv_last_error());
        }
        inventory_link_lock_ops(l);
        if (r == 0)
                (void) store_vm_set_state(ha->st, vm->id, "running");
        else if (moved) {
                if (!existed)
                        (void) hv_domain_undefine(inventory_link_conn(l), vm->uuid); /* leave no stray definition */
                (void) store_vm_set_host(ha->st, vm->id, vm->host_id);
        }
        inventory_link_unlock_ops(l);
        inventory_link_unref(l);
        return r;
}

typedef struct {
        int64_t vm_id;
        int priority;
        int64_t from_host_id;
        int64_t cand[MAX_CANDIDATES];
        size_t n_cand, next;      /* candidates and the one being tried */
        bool done;
        char why[1536];
        int64_t started_ms;       /* mono time it was running again */
        char host_name[64];
} Restart;

typedef struct {
        Ha *ha;
        RestartRun *run;
        Restart **items;          /* this host's restarts, in priority order */
        size_t n;
        int64_t host_id;
        int lane;
} HostBatch;

static void *batch_main(void *arg) {
        HostBatch *b = arg;
        StoreHost h;
        bool have_host = store_host_get(b->ha->st, b->host_id, &h) == 0;
        for (size_t i = 0; i < b->n; i++) {
                Restart *x = b->items[i];
                StoreVm vm;
                if (!have_host || store_vm_get(b->ha->st, x->vm_id, &vm) < 0) {
                        x->next++;
                        continue;
                }
                if (x->next > 0) { /* a later candidate: the room moves with it */
                        PlacementDemand d = { .cpus = vm.cpus, .memory_mib = vm.memory_mib, .vm_id = vm.id, .vm_name = vm.name };
                        int r = placement_lock(b->ha->st);
                        if (r >= 0)
                                (void) placement_unlock(b->ha->st, placement_reserve(b->ha->st, &d, h.id));
                }
                char why[512];
                if (start_on(b->ha, b->run, &vm, &h, why, sizeof why) == 0) {
                        x->done = true;
                        x->started_ms = mono_ms();
                        snprintf(x->host_name, sizeof x->host_name, "%s", h.name);
                } else {
                        size_t l = strlen(x->why);
                        snprintf(x->why + l, sizeof x->why - l, "%s%s", l ? "; " : "", why);
                        x->next++;
                }
        }
        return NULL;
}

/* Rates the cluster's hosts for vm (the restarts decided so far are
 * reserved already), fills x's candidates and reserves the room on the
 * first. Called with the placement lock held. */
static void plan_one(Ha *ha, Restart *x, const StoreVm *vm, const int64_t *members, size_t n_members) {
        PlacementDemand d = { .cpus = vm->cpus, .memory_mib = vm->memory_mib, .vm_id = vm->id, .vm_name = vm->name,
                              .exclude_host_id = x->from_host_id };
        PlacementRating *rated = NULL;
        int n = placement_rate(ha->st, 0, &d, &rated);
        if (n < 0) {
                snprintf(x->why, sizeof x->why, "placement failed (%s)", strerror(-n));
                return;
        }
        HaRated *hr = xcalloc((size_t) n + 1, sizeof *hr);
        for (int i = 0; i < n; i++)
                hr[i] = (HaRated) { rated[i].host_id, rated[i].rating };
        x->n_cand = ha_candidates(hr, (size_t) n, members, n_members, x->from_host_id, x->cand, MAX_CANDIDATES);
        for (int i = 0; i < n; i++)
                log_debug("restart of VM '%s': host '%s' rated %.1f%s%s", vm->name, rated[i].host_name, rated[i].rating,
                          rated[i].reason[0] ? ": " : "", rated[i].reason);
        if (x->n_cand == 0) {
                StrBuf b = {0};
                for (int i = 0; i < n; i++) {
                        bool member = false;
                        for (size_t m = 0; m < n_members; m++)
                                member |= members[m] == rated[i].host_id;
                        if (member && rated[i].host_id != x->from_host_id)
                                strbuf_printf(&b, "%shost '%s': %s", b.len ? "; " : "", rated[i].host_name,
                                              rated[i].reason[0] ? rated[i].reason : "cannot take it");
                }
                snprintf(x->why, sizeof x->why, "%s", b.len ? b.s : "no member of its cluster survives");
                strbuf_free(&b);
        }
        else if (placement_reserve(ha->st, &d, x->cand[0]) < 0)
                log_warn("cannot reserve room for VM '%s' on its restart host", vm->name);
        free(hr);
        free(rated);
}

/* Claims vm_id for one restart: false when another worker restarts it. */
static bool restart_claim(Ha *ha, int64_t vm_id) {
        pthread_mutex_lock(&ha->lock);
        bool taken = false;
        for (size_t i = 0; i < ha->n_restarting && !taken; i++)
                taken = ha->restarting[i] == vm_id;
        if (!taken) {
                if (ha->n_restarting == ha->cap_restarting) {
                        ha->cap_restarting = ha->cap_restarting ? 2 * ha->cap_restarting : 16;
                        ha->restarting = xrealloc(ha->restarting, ha->cap_restarting * sizeof *ha->restarting);
                }
                ha->restarting[ha->n_restarting++] = vm_id;
        }
        pthread_mutex_unlock(&ha->lock);
        return !taken;
}

static void restart_unclaim(Ha *ha, int64_t vm_id) {
        pthread_mutex_lock(&ha->lock);
        for (size_t i = 0; i < ha->n_restarting; i++)
                if (ha->restarting[i] == vm_id) {
                        ha->restarting[i] = ha->restarting[--ha->n_restarting];
                        break;
                }
        pthread_mutex_unlock(&ha->lock);
}

/* Restarts the given VMs (HA, in priority order) on members of the cluster
 * other than from_host_id; VMs another worker is restarting are left to
 * it. VMs that fit nowhere are left pending. Returns how many run again;
 * the most starts seen in flight at once in *ret_peak. */
static size_t restart_vms(Ha *ha, const StoreHaRef *refs, size_t n_refs, int64_t from_host_id, int64_t cluster_id,
                          int64_t t_fail_ms, int *ret_peak) {
        *ret_peak = 0;
        if (n_refs == 0)
                return 0;
        if (store_fence_verify(ha->st) < 0) {
                log_warn("this manager's lease is stale: it restarts no VM (the active manager does)");
                return 0;
        }
        RestartRun run = {0};
        bool *claimed = xcalloc(n_refs, sizeof *claimed);
        int64_t *members = NULL;
        int nm = store_cluster_members(ha->st, cluster_id, &members);
        if (nm < 0)
                nm = 0;
        Restart *xs = xcalloc(n_refs, sizeof *xs);
        /* Every restart is decided and its room reserved under one hold of
         * the placement lock: each counts the ones before, and nothing
         * placed meanwhile takes the room. */
        bool locked = placement_lock(ha->st) >= 0;
        if (!locked)
                log_warn("cannot take the placement lock; restarting VMs without reserving their room");
        for (size_t i = 0; i < n_refs; i++) {
                Restart *x = &xs[i];
                x->vm_id = refs[i].vm_id;
                x->priority = refs[i].priority;
                x->from_host_id = from_host_id;
                StoreVm vm;
                claimed[i] = restart_claim(ha, x->vm_id);
                if (!claimed[i] || store_vm_get(ha->st, x->vm_id, &vm) < 0) {
                        x->done = true; /* restarted by another worker, or deleted meanwhile */
                        continue;
                }
                plan_one(ha, x, &vm, members, (size_t) nm);
        }
        if (locked)
                (void) placement_unlock(ha->st, 0);

        /* Rounds: every VM not yet running goes to its next candidate; one
         * thread per target host starts its VMs in priority order. */
        for (int round = 0; round < MAX_CANDIDATES; round++) {
                HostBatch *batches = xcalloc(n_refs, sizeof *batches);
                size_t n_batches = 0;
                for (size_t i = 0; i < n_refs; i++) {
                        Restart *x = &xs[i];
                        if (x->done || x->next >= x->n_cand)
                                continue;
                        int64_t hid = x->cand[x->next];
                        /* Up to STARTS_PER_HOST lanes per host, dealt out in
                         * priority order: a host starts several QEMUs at
                         * once, the high-priority ones first in each lane. */
                        size_t on_host = 0;
                        for (size_t k = 0; k < n_batches; k++)
                                if (batches[k].host_id == hid) on_host += batches[k].n;
                        int lane = (int) (on_host % STARTS_PER_HOST);
                        HostBatch *b = NULL;
                        for (size_t k = 0; k < n_batches && !b; k++)
                                if (batches[k].host_id == hid && batches[k].lane == lane) b = &batches[k];
                        if (!b) {
                                b = &batches[n_batches++];
                                *b = (HostBatch) { .ha = ha, .run = &run, .host_id = hid, .lane = lane,
                                                   .items = xcalloc(n_refs, sizeof(Restart *)) };
                        }
                        b->items[b->n++] = x;
                }
                if (n_batches == 0) {
                        free(batches);
                        break;
                }
                pthread_t *th = xcalloc(n_batches, sizeof *th);
                bool *ok = xcalloc(n_batches, sizeof *ok);
                for (size_t k = 0; k < n_batches; k++)
                        ok[k] = pthread_create(&th[k], NULL, batch_main, &batches[k]) == 0;
                for (size_t k = 0; k < n_batches; k++) {
                        if (ok[k])
                                pthread_join(th[k], NULL);
                        else
                                batch_main(&batches[k]);
                        free(batches[k].items);
                }
                free(ok);
                free(th);
                free(batches);
        }

        size_t n_ok = 0;
        StoreHost from;
        if (store_host_get(ha->st, from_host_id, &from) < 0)
                snprintf(from.name, sizeof from.name, "id %lld", (long long) from_host_id);
        for (size_t i = 0; i < n_refs; i++) {
                Restart *x = &xs[i];
                if (!claimed[i])
                        continue;
                /* Restarted or left pending, the move is over. */
                (void) placement_release(ha->st, x->vm_id, 0);
                StoreVm vm;
                if (store_vm_get(ha->st, x->vm_id, &vm) < 0)
                        continue;
                if (x->done) {
                        n_ok++;
                        (void) store_ha_pending_remove(ha->st, vm.id);
                        ha_event(ha->st, "info", "vm.restarted", "vm", vm.id, vm.name, vm.owner_id,
                                 "VM '%s' (HA priority %s) was restarted on host '%s', %lld ms after host '%s' failed.", vm.name,
                                 ha_priority_name(x->priority), x->host_name, (long long) (x->started_ms - t_fail_ms), from.name);
                        continue;
                }
                (void) store_vm_set_state(ha->st, vm.id, "pending");
                bool was_pending = false;
                StoreHaRef *pl = NULL;
                int np = store_ha_pending_list(ha->st, &pl);
                for (int k = 0; k < np; k++)
                        was_pending |= pl[k].vm_id == vm.id;
                free(pl);
                (void) store_ha_pending_add(ha->st, vm.id, from_host_id, x->why[0] ? x->why : "no member can take it");
                if (!was_pending)
                        ha_event(ha->st, "error", "vm.restart-pending", "vm", vm.id, vm.name, vm.owner_id,
                                 "VM '%s' (HA priority %s) could not be restarted after host '%s' failed: %s. It will start as soon"
                                 " as a member of its cluster has room.", vm.name, ha_priority_name(x->priority), from.name,
                                 x->why[0] ? x->why : "no member can take it");
        }
        for (size_t i = 0; i < n_refs; i++)
                if (claimed[i])
                        restart_unclaim(ha, xs[i].vm_id);
        *ret_peak = atomic_load(&run.peak);
        free(claimed);
        free(xs);
        free(members);
        return n_ok;
}

typedef struct Failover Failover;

typedef struct {
        int64_t host_id;
        int64_t cluster_id;
        HaWatch w;
        bool seen;
        int64_t *active;          /* VMs that ran there when it last answered */
        size_t n_active;
        int64_t snap_ms;
        Failover *fo;             /* its failover worker, while one runs */
} Watched;

/* One failover: a worker thread that probes the member, fences it and
 * restarts its HA VMs. The watch thread leaves the member alone while it
 * runs and reaps it when done. */
struct Failover {
        Ha *ha;
        pthread_t thread;
        int64_t host_id, cluster_id;
        int64_t t_fail_ms;        /* the last moment its link was alive */
        char uri[1024];
        int64_t *active;          /* a copy of Watched.active */
        size_t n_active;
        bool answered;            /* the probe answered: not failed after all */
        atomic_bool done;
};

static bool vm_state_active(const char *s) {
        return streq(s, "running") || streq(s, "paused") || streq(s, "shutting-down");
}

/* Remembers which VMs run on a member while it answers: once it has failed,
 * the inventory shows them all as unknown, and a VM that was shut off
 * before must not be started by a failover. */
static void snapshot_active(Ha *ha, Watched *w) {
        StoreHaRef *refs = NULL;
        int n = store_ha_vms_on_host(ha->st, w->host_id, &refs);
        if (n < 0)
                return;
        free(w->active);
        w->active = xcalloc((size_t) n + 1, sizeof(int64_t));
        w->n_active = 0;
        for (int i = 0; i < n; i++) {
                StoreVm vm;
                if (store_vm_get(ha->st, refs[i].vm_id, &vm) == 0 && vm_state_active(vm.state))
                        w->active[w->n_active++] = vm.id;
        }
        free(refs);
}

static bool was_active(const Failover *fo, const StoreVm *vm) {
        for (size_t i = 0; i < fo->n_active; i++)
                if (fo->active[i] == vm->id)
                        return true;
        return vm_state_active(vm->state);
}

/* ---- failover ---- */

static void mark_vms(Ha *ha, int64_t host_id, const char *state) {
        StoreHaRef *refs = NULL;
        int n = store_ha_vms_on_host(ha->st, host_id, &refs);
        for (int i = 0; i < n; i++) {
                StoreVm vm;
                if (store_vm_get(ha->st, refs[i].vm_id, &vm) == 0 && !streq(vm.state, "creating") && !streq(vm.state, "deleting"))
                        (void) store_vm_set_state(ha->st, vm.id, state);
        }
        free(refs);
}

static void failover(Ha *ha, const Failover *fo, int64_t dead_for_ms) {
        StoreHost h;
        if (store_host_get(ha->st, fo->host_id, &h) < 0)
                return;
        /* Declaring, fencing and restarting act on hosts: only the manager
         * that holds the lease (store-manager.h) may decide them. */
        if (store_fence_verify(ha->st) < 0) {
                log_warn("host '%s' stopped answering, but this manager's lease is stale: the active manager decides its failover",
                         h.name);
                return;
        }
        _cleanup_free_ char *reason = xasprintf("stopped answering %lld ms ago", (long long) dead_for_ms);
        (void) store_host_set_state(ha->st, h.id, "failed", reason);
        inventory_host_state_changed(ha->inv, h.id);
        ha_event(ha->st, "error", "host.failed", "host", h.id, h.name, 0,
                 "Host '%s' has not answered for %lld ms and is declared failed; fencing it.", h.name, (long long) dead_for_ms);

        char why[1024] = "";
        _cleanup_free_ char *argv_json = NULL;
        int r = store_host_fence_get(ha->st, h.id, &argv_json);
        char **argv = r == 0 ? ha_argv_parse(argv_json, why, sizeof why) : NULL;
        if (r < 0)
                snprintf(why, sizeof why, "no fence command is configured for it");
        if (argv) {
                int64_t t0 = mono_ms();
                r = ha_run_command(argv, ha->cfg.fence_timeout_ms, why, sizeof why);
                ha_argv_free(argv);
                if (r == 0)
                        log_info("host '%s' fenced in %lld ms", h.name, (long long) (mono_ms() - t0));
        } else
                r = -EINVAL;
        if (r < 0) {
                _cleanup_free_ char *st_reason = xasprintf("fencing failed: %s", why);
                (void) store_host_set_state(ha->st, h.id, "failed", st_reason);
                mark_vms(ha, h.id, "unknown");
                ha_event(ha->st, "error", "ha.fence-failed", "host", h.id, h.name, 0,
                         "Host '%s' failed and could not be fenced (%s). Its VMs are not restarted elsewhere, since it may still"
                         " run them; they show as unknown until the host answers again or is fenced.", h.name, why);
                return;
        }
        (void) store_host_set_state(ha->st, h.id, "fenced", "powered off by its fence command after it failed");
        inventory_host_state_changed(ha->inv, h.id);
        ha_event(ha->st, "warning", "host.fenced", "host", h.id, h.name, 0, "Host '%s' was fenced (its fence command reported success).",
                 h.name);

        StoreHaRef *refs = NULL;
        int n = store_ha_vms_on_host(ha->st, h.id, &refs);
        if (n < 0)
                n = 0;
        ha_restart_order(refs, (size_t) n);
        size_t n_ha = 0;
        for (int i = 0; i < n; i++) {
                StoreVm vm;
                if (store_vm_get(ha->st, refs[i].vm_id, &vm) < 0 || streq(vm.state, "creating") || streq(vm.state, "deleting"))
                        continue;
                if (!was_active(fo, &vm)) {
                        /* It was off before; fenced, the host runs nothing. */
                        (void) store_vm_set_state(ha->st, vm.id, "stopped");
                        continue;
                }
                if (refs[i].priority > 0) {
                        /* Not an active state: while it is being restarted
                         * its memory counts neither on the failed host nor
                         * in the cluster's failover reserve. */
                        (void) store_vm_set_state(ha->st, vm.id, "restarting");
                        refs[n_ha++] = refs[i];
                        continue;
                }
                (void) store_vm_set_state(ha->st, vm.id, "stopped");
                ha_event(ha->st, "warning", "vm.down", "vm", vm.id, vm.name, vm.owner_id,
                         "VM '%s' went down with host '%s' and is not highly available, so it stays down.", vm.name, h.name);
        }
        int peak = 0;
        size_t ok = restart_vms(ha, refs, n_ha, h.id, fo->cluster_id, fo->t_fail_ms, &peak);
        free(refs);
        /* Tests read "at most N starts at once" to see the starts overlap. */
        log_info("failover of host '%s': %zu of %zu HA VMs run again, %lld ms after it stopped answering (at most %d"
                 " starts at once)", h.name, ok, n_ha, (long long) (mono_ms() - fo->t_fail_ms), peak);
}

static void *failover_main(void *arg) {
        Failover *fo = arg;
        if (probe_answers(fo->uri, PROBE_TIMEOUT_MS))
                fo->answered = true;
        else
                failover(fo->ha, fo, mono_ms() - fo->t_fail_ms);
        atomic_store(&fo->done, true);
        return NULL;
}

/* Starts the failover of the member w watches (declared failed now);
 * when no thread can be made, runs it here. */
static void failover_begin(Ha *ha, Watched *w, const StoreHost *h) {
        Failover *fo = xcalloc(1, sizeof *fo);
        *fo = (Failover) { .ha = ha, .host_id = h->id, .cluster_id = w->cluster_id, .t_fail_ms = w->w.last_alive_ms,
                           .n_active = w->n_active };
        snprintf(fo->uri, sizeof fo->uri, "%s", h->uri);
        fo->active = xcalloc(w->n_active + 1, sizeof *fo->active);
        if (w->n_active)
                memcpy(fo->active, w->active, w->n_active * sizeof *fo->active);
        atomic_init(&fo->done, false);
        w->fo = fo;
        if (pthread_create(&fo->thread, NULL, failover_main, fo) != 0) {
                log_warn("cannot start a failover thread for host '%s'; failing it over in the watch thread", h->name);
                failover_main(fo);
                fo->thread = pthread_self();
        }
}

/* Joins w's failover worker when it is done (or, with wait, until it is).
 * A member whose probe answered starts over as alive; the inventory
 * reconnects its link. */
static void failover_reap(Ha *ha, Watched *w, bool wait) {
        Failover *fo = w->fo;
        if (!fo || (!wait && !atomic_load(&fo->done)))
                return;
        if (!pthread_equal(fo->thread, pthread_self()))
                pthread_join(fo->thread, NULL);
        if (fo->answered) {
                StoreHost h;
                if (store_host_get(ha->st, fo->host_id, &h) < 0)
                        snprintf(h.name, sizeof h.name, "id %lld", (long long) fo->host_id);
                log_warn("cluster member '%s': its connection has been down for %lld ms but it answers a direct probe;"
                         " not declared failed", h.name, (long long) (mono_ms() - fo->t_fail_ms));
                w->w = (HaWatch) { .state = HA_WATCH_OK, .last_alive_ms = mono_ms() };
        }
        free(fo->active);
        free(fo);
        w->fo = NULL;
}

/* VMs that fit nowhere after a failover: try again (capacity may have
 * appeared). */
/* Retries the waiting VMs of refs (n of them, as pending_kick read them). */
static void retry_pending(Ha *ha, const StoreHaRef *refs, int n) {
        for (int i = 0; i < n; i++) {
                _cleanup_json_ json_t *all = NULL;
                if (store_ha_pending_json(ha->st, &all) < 0)
                        break; /* a database error (logged): try again next time */
                int64_t from = 0;
                size_t k;
                json_t *it;
                json_array_foreach(all, k, it)
                        if (json_integer_value(json_object_get(it, "vm_id")) == refs[i].vm_id)
                                from = json_integer_value(json_object_get(it, "from_host_id"));
                StoreVm vm;
                int64_t cluster = 0;
                if (store_vm_get(ha->st, refs[i].vm_id, &vm) < 0 || vm.host_id != from || refs[i].priority == 0 ||
                    store_cluster_of_host(ha->st, from, &cluster, NULL) < 0) {
                        (void) store_ha_pending_remove(ha->st, refs[i].vm_id); /* moved, deleted or no longer HA */
                        continue;
                }
                int peak;
                (void) restart_vms(ha, &refs[i], 1, from, cluster, mono_ms(), &peak);
        }
}

static void *pending_main(void *arg) {
        Ha *ha = arg;
        retry_pending(ha, ha->pending_refs, ha->n_pending_refs);
        atomic_store(&ha->pending_done, true);
        return NULL;
}

/* Retries the waiting VMs in a thread of its own (one at a time), so
 * their starts do not hold up the watch. The list is read once, here, and
 * handed to the thread (it is the watch's again after the join). */
static void pending_kick(Ha *ha, bool wait) {
        if (ha->pending_running) {
                if (!wait && !atomic_load(&ha->pending_done))
                        return;
                pthread_join(ha->pending_thread, NULL);
                ha->pending_running = false;
        }
        free(ha->pending_refs);
        ha->pending_refs = NULL;
        ha->n_pending_refs = 0;
        if (wait)
                return;
        /* Nothing waits (the usual case): no thread, no connection. */
        StoreHaRef *refs = NULL;
        int n = store_ha_pending_list(ha->st, &refs);
        if (n <= 0) {
                free(refs);
                return;
        }
        ha->pending_refs = refs;
        ha->n_pending_refs = n;
        atomic_store(&ha->pending_done, false);
        if (pthread_create(&ha->pending_thread, NULL, pending_main, ha) == 0)
                ha->pending_running = true;
        else
                retry_pending(ha, refs, n);
}

/* Saves the definitions of HA VMs that have none yet, so a restart uses
 * libvirt's full definition and not only what the database knows. */
static void save_definitions(Ha *ha) {
        int64_t *ids = NULL;
        int n = store_ha_vms_without_xml(ha->st, &ids);
        for (int i = 0; i < n; i++) {
                StoreVm vm;
                StoreHost h;
                if (store_vm_get(ha->st, ids[i], &vm) < 0 || store_host_get(ha->st, vm.host_id, &h) < 0 || !streq(h.state, "ok") ||
                    !member_alive(ha->inv, h.id))
                        continue;
                InventoryLink *l = NULL;
                char why[256];
                if (inventory_link_acquire(ha->inv, &h, &l, why, sizeof why) < 0)
                        continue;
                ha_save_definition(ha, l, &vm);
                inventory_link_unref(l);
        }
        free(ids);
}

static void *ha_main(void *arg) {
        Ha *ha = arg;
        Watched *ws = xcalloc(MAX_WATCH, sizeof *ws);
        size_t n_ws = 0;
        int64_t last_pending = 0, last_save = 0;
        for (;;) {
                pthread_mutex_lock(&ha->lock);
                bool stop = ha->stopping;
                pthread_mutex_unlock(&ha->lock);
                if (stop)
                        break;
                int64_t *clusters = NULL;
                int nc = store_cluster_ids(ha->st, &clusters);
                for (size_t i = 0; i < n_ws; i++)
                        ws[i].seen = false;
                for (int c = 0; c < nc; c++) {
                        int64_t *members = NULL;
                        int nm = store_cluster_members(ha->st, clusters[c], &members);
                        for (int m = 0; m < nm; m++) {
                                Watched *w = NULL;
                                for (size_t i = 0; i < n_ws && !w; i++)
                                        if (ws[i].host_id == members[m]) w = &ws[i];
                                if (!w && n_ws < MAX_WATCH) {
                                        w = &ws[n_ws++];
                                        *w = (Watched) { .host_id = members[m] };
                                }
                                if (!w)
                                        continue;
                                w->seen = true;
                                failover_reap(ha, w, false);
                                if (w->fo)
                                        continue; /* its failover is under way */
                                w->cluster_id = clusters[c];
                                StoreHost h;
                                if (store_host_get(ha->st, w->host_id, &h) < 0)
                                        continue;
                                /* A host in maintenance is not watched: it is
                                 * allowed to go away. */
                                bool alive = streq(h.state, "maintenance") || member_alive(ha->inv, h.id);
                                int64_t now = mono_ms();
                                HaWatchEvent ev = ha_watch_step(&w->w, alive, now, ha->cfg.declare_ms);
                                if (alive && w->w.state == HA_WATCH_OK && now - w->snap_ms >= 500) {
                                        w->snap_ms = now;
                                        snapshot_active(ha, w);
                                }
                                if (ev == HA_EV_SUSPECT)
                                        log_warn("cluster member '%s' stopped answering; declared failed after %d ms unless it answers again",
                                                 h.name, ha->cfg.declare_ms);
                                else if (ev == HA_EV_BACK)
                                        ha_event(ha->st, "info", "host.back", "host", h.id, h.name, 0,
                                                 "Cluster member '%s' answers again.", h.name);
                                else if (ev == HA_EV_FAILED)
                                        failover_begin(ha, w, &h); /* probe, fence, restart: off this thread */
                        }
                        free(members);
                }
                free(clusters);
                /* Forget members that left their cluster (once their
                 * failover, if one runs, is over). */
                for (size_t i = 0; i < n_ws;)
                        if (!ws[i].seen && (failover_reap(ha, &ws[i], false), !ws[i].fo)) {
                                free(ws[i].active);
                                ws[i] = ws[--n_ws];
                        }
                        else
                                i++;
                int64_t now = mono_ms();
                if (now - last_pending >= ha->cfg.pending_retry_ms) {
                        last_pending = now;
                        pending_kick(ha, false);
                }
                if (now - last_save >= SAVE_DEFINITIONS_MS) {
                        last_save = now;
                        save_definitions(ha);
                }
                pthread_mutex_lock(&ha->lock);
                if (!ha->stopping) {
                        struct timespec ts = time_after_ms(CLOCK_MONOTONIC, ha->cfg.tick_ms);
                        pthread_cond_timedwait(&ha->wake, &ha->lock, &ts);
                }
                pthread_mutex_unlock(&ha->lock);
        }
        /* A fence in flight runs to its end (bounded by the fence timeout). */
        for (size_t i = 0; i < n_ws; i++) {
                failover_reap(ha, &ws[i], true);
                free(ws[i].active);
        }
        pending_kick(ha, true);
        free(ws);
        return NULL;
}

int ha_new(Store *st, Jobs *jobs, Inventory *inv, const HaConfig *cfg, Ha **ret) {
        Ha *ha = xcalloc(1, sizeof *ha);
        ha->st = st;
        ha->jobs = jobs;
        ha->inv = inv;
        ha->cfg = cfg ? *cfg : (HaConfig) {0};
        if (ha->cfg.declare_ms <= 0) ha->cfg.declare_ms = 3000;
        if (ha->cfg.tick_ms <= 0) ha->cfg.tick_ms = 100;
        if (ha->cfg.fence_timeout_ms <= 0) ha->cfg.fence_timeout_ms = 60000;
        if (ha->cfg.pending_retry_ms <= 0) ha->cfg.pending_retry_ms = 2000;
        pthread_mutex_init(&ha->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&ha->wake, &ca);
        pthread_condattr_destroy(&ca);
        *ret = ha;
        return 0;
}

int ha_start(Ha *ha) {
        int r = pthread_create(&ha->thread, NULL, ha_main, ha);
        if (r != 0)
                return -r;
        ha->started = true;
        return 0;
}

void ha_stop(Ha *ha) {
        if (!ha || !ha->started)
                return;
        pthread_mutex_lock(&ha->lock);
        ha->stopping = true;
        pthread_cond_broadcast(&ha->wake);
        pthread_mutex_unlock(&ha->lock);
        pthread_join(ha->thread, NULL);
        ha->started = false;
}

Ha *ha_free(Ha *ha) {
        if (!ha)
                return NULL;
        ha_stop(ha);
        pthread_mutex_destroy(&ha->lock);
        pthread_cond_destroy(&ha->wake);
        free(ha->restarting);
        free(ha);
        return NULL;
}
