/* inventory: hosts, VMs and the reconcile between Armada's database (what
 * should exist, who owns it) and libvirt (what runs where now). It keeps one
 * libvirt connection per host with keepalive, watches every host on a fixed
 * interval, and implements the job kinds that act on hosts and VMs:
 *   host.refresh                     connect, read facts, ensure pool, reconcile
 *   vm.create                        volume + domain definition (undone on failure)
 *   vm.start vm.stop vm.kill vm.pause vm.resume
 *   vm.delete                        undefine, remove owned disks unless keep_disks
 * Reconcile imports unknown domains as "discovered", marks known VMs absent
 * from their host as "missing", follows a VM that turns up on another host,
 * and records every difference as an event.
 *
 * Ownership: every domain Armada defines carries a <metadata> marker with
 * this installation's id (hv.h, HV_ARMADA_XMLNS). A domain marked by another
 * installation is imported with origin "foreign": read-only, never powered
 * off, undefined, moved or marked missing (its record is dropped when it
 * disappears). Identity: a host is the hypervisor it reaches (libvirt's host
 * UUID; the URI for the test driver); a second host record for a hypervisor
 * already registered is refused when it first connects (see
 * inventory_refresh_host) and never reconciles. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include "store/store.h"
#include "jobs/jobs.h"
#include "hv/hv.h"
#include "op/op.h"

typedef struct {
        int refresh_interval_ms;     /* how often every host is checked (default 5000) */
        int full_refresh_ms;         /* a host with domain events whose domains did not change is listed
                                      * again only this often (default 60000): see inventory.c */
        int keepalive_interval_s;    /* libvirt keepalive (default 1) */
        unsigned keepalive_count;    /* missed answers before a drop (default 3) */
        int stop_timeout_s;          /* default wait for a guest to shut down (60) */
        bool allow_test_hosts;       /* test: URIs may be opened (armadad --allow-test-hosts) */
        int max_parallel_starts;     /* a host's domain starts in flight when it sets none (default 4) */
        int max_parallel_disk_ops;   /* its disk-heavy volume operations in flight likewise (default 4) */
        int priority_wait_ms;        /* longest a HA restart waits for a start slot (default 60000) */
        /* Tests only, and only with allow_test_hosts: a start on a test
         * host of a VM named on a line of this file blocks, inside its
         * start slot and deaf to cancel requests, until the line goes —
         * what a start blocked inside libvirtd looks like to Armada. */
        const char *test_hold_starts;
} InventoryConfig;

typedef struct Inventory Inventory;

/* ---- per-host throttles (inventory-throttle.c) ---- */
typedef enum {
        INVENTORY_SLOT_START,        /* a domain start (or resume) */
        INVENTORY_SLOT_DISK,         /* a disk-heavy volume operation: full copy, upload, download */
} InventorySlot;
/* Takes a slot of kind on host h, waiting in FIFO order while the host has
 * its limit in flight (h's max_parallel_* or armadad's default); a waiting
 * job's step says so. priority (HA restarts) joins the queue ahead of the
 * jobs and goes ahead over the limit after InventoryConfig.priority_wait_ms.
 * ctx may be NULL (no job: nothing reported, never cancelled). vm_name is
 * the VM a start is for (the test hold), may be NULL. 0 with the slot
 * taken (give it back with inventory_slot_give()), or -ECANCELED after
 * job_fail() when ctx's job was cancelled while it waited (it left the
 * queue; no slot is held). */
int inventory_slot_take(Inventory *inv, const StoreHost *h, InventorySlot kind, const char *vm_name, bool priority,
                        JobCtx *ctx);
/* Gives back a slot inventory_slot_take() took; wakes the waiters. */
void inventory_slot_give(Inventory *inv, int64_t host_id, InventorySlot kind);

int inventory_new(Store *st, Jobs *jobs, const InventoryConfig *cfg, Inventory **ret);
/* The job queue the inventory was made with (for modules that queue
 * inventory jobs, such as a VM delete after an abandoned deploy). */
Jobs *inventory_jobs(Inventory *inv);
/* Registers the job kinds (before jobs_start()) */
void inventory_register_jobs(Inventory *inv);
/* Starts the host monitor thread. */
int inventory_start(Inventory *inv);
void inventory_stop(Inventory *inv);
Inventory *inventory_free(Inventory *inv);

/* Reconciles one host now (also what host.refresh does). Returns 0, or
 * negative with a sentence in reason (may be NULL) when the host cannot be
 * reached, or -EEXIST when it is the same hypervisor as another registered
 * host: then the record is removed when it has no VMs (a new registration),
 * else left in state "duplicate", which nothing reconciles, places on or
 * acts on. */
int inventory_refresh_host(Inventory *inv, int64_t host_id, char *reason, size_t reason_size);

/* Chooses the domain type for a new VM on a host: "kvm", "qemu" or "test".
 * requested is "auto", "kvm" or "qemu". */
const char *inventory_domain_type(const StoreHost *h, const char *requested);

/* VNC for a new VM on host h. On a local or test host: its loopback, no
 * password. On a remote host: every address of the host (so the web
 * console's proxy in armadad can reach it, and a migrated or restarted
 * copy can still bind it) with a fresh random password, which armadad reads
 * back (VIR_DOMAIN_XML_SECURE) and hands only to users who may operate the
 * VM. listen gets "127.0.0.1" or "0.0.0.0"; password 8 characters or "". */
void inventory_vnc_for_host(const StoreHost *h, char listen[16], char password[9]);

/* Called after a host's state changed (unreachable, answering again,
 * failed, fenced) in the thread that changed it, with no lock held and no
 * transaction open, so that what follows from the state (alerts, webhooks)
 * need not wait for the next monitoring round. */
typedef void (*InventoryHostStateFn)(void *userdata, int64_t host_id);
/* Sets that function (the daemon points it at the monitor); before
 * inventory_start(). fn NULL removes it. */
void inventory_on_host_state(Inventory *inv, InventoryHostStateFn fn, void *userdata);
/* Calls the function set above for host_id, if any (ha calls it after it
 * declared a member failed or fenced it). */
void inventory_host_state_changed(Inventory *inv, int64_t host_id);

/* This installation's id (a UUID; see store_installation_id), to mark the
 * domains it defines (HvDomainSpec.installation_id). Never NULL. */
const char *inventory_installation_id(Inventory *inv);

/* The registered host whose URI is the same as uri once both are
 * normalised (hv_uri_normalize): 0 and *ret, -ENOENT when none, or negative.
 * Never connects (for HTTP threads). */
int inventory_host_by_uri(Inventory *inv, const char *uri, StoreHost *ret);

/* True when the VM belongs to another Armada installation (origin
 * "foreign"): read-only here. */
bool inventory_vm_is_foreign(const StoreVm *vm);

/* Forgets a removed host's connection. */
void inventory_forget_host(Inventory *inv, int64_t host_id);

/* ---- live connections to hosts, for the modules that act on them ----
 * An InventoryLink is a reference to the inventory's connection to one host
 * (opaque: its insides are the inventory's). Every call through it goes to
 * that host's libvirtd with the deadlines of src/hv. */
typedef struct Link InventoryLink;
/* A live link to host h, connecting when needed; 0 and *ret (release it with
 * inventory_link_unref), or negative with a sentence in why: -EPERM when the
 * host's URI does not pass hv_uri_check() (never opened). why never quotes
 * libvirt's parse context (it can hold file contents). */
int inventory_link_acquire(Inventory *inv, const StoreHost *h, InventoryLink **ret, char *why, size_t why_size);
/* The host's live link with a reference, or NULL when there is none right
 * now. Never connects, so it never blocks (for HTTP threads). */
InventoryLink *inventory_link_peek(Inventory *inv, int64_t host_id);
/* Drops the reference; takes NULL; returns NULL. */
InventoryLink *inventory_link_unref(InventoryLink *l);
/* The connection to call hv_* with; valid while the reference is held. */
HvConn *inventory_link_conn(const InventoryLink *l);
/* Holds off the host's reconcile while a job changes domains on it (a
 * define and start, a migration's end, a managed save): reconcile lists the
 * host's domains under the same lock, so it never sees half of a change. */
void inventory_link_lock_ops(InventoryLink *l);
void inventory_link_unlock_ops(InventoryLink *l);
/* Whether a host URI may be registered (hv_uri_check with this armadad's
 * allow-list): 0, or negative with the reason in why. */
int inventory_host_uri_check(Inventory *inv, const char *uri, char *why, size_t why_size);
/* Whether the inventory holds a live connection to host_id now (no I/O). */
bool inventory_host_connected(Inventory *inv, int64_t host_id);
static inline void inventory_link_unrefp(InventoryLink **l) {
        (void) inventory_link_unref(*l);
}
#define _cleanup_inventory_link_ __attribute__((cleanup(inventory_link_unrefp)))

/* ---- the screens of VMs (inventory-console.c), for the web console ---- */
/* The VM (its JSON, caller frees) if c may read it; else -ENOENT and a 404
 * "There is no VM with id N." (the same whether it does not exist or is out
 * of sight). */
int inventory_vm_readable(Inventory *inv, const OpCaller *c, int64_t vm_id, json_t **ret, OpError *err);

typedef struct InventoryConsole {
        char vm_name[64];
        char addr[256];          /* where armadad connects to the VNC server */
        int port;
        char password[64];       /* "" when there is none */
} InventoryConsole;
/* Where the console of VM vm_id can be reached, for a caller who may
 * operate it: 0 and *ret; else err (404 unseen, 403 denied and audited, 409
 * foreign / not placed / not running / no VNC / VNC on an unreachable
 * loopback, 503 host not connected, 502 host error). Never connects. */
int inventory_vm_console(Inventory *inv, const OpCaller *c, int64_t vm_id, InventoryConsole *ret, OpError *err);
/* The VNC password of VM vm_id for a caller who may operate it (audited as
 * vm.console); errors as inventory_vm_console's. */
int inventory_vm_console_password(Inventory *inv, const OpCaller *c, int64_t vm_id, char ret[64], OpError *err);
/* A picture of a running VM's screen, width pixels wide, as PNG: 0 and
 * *ret_png (malloc'd) of *ret_len bytes; -ENOTCONN when its host is not
 * connected now (never connects); else negative with a sentence in why.
 * The caller has checked that the VM may be read. */
int inventory_vm_screen_png(Inventory *inv, int64_t host_id, const char *uuid, unsigned width, char **ret_png, size_t *ret_len,
                            char *why, size_t why_size);
