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
/* One round's refresh of a host, as the host monitor does it: a quiet host
 * (no domain event, listed recently, link alive) is asked for its facts
 * only every few rounds (inventory.c). For tests. 0 or negative. */
int inventory_refresh_round(Inventory *inv, int64_t host_id);
/* The facts calls the refreshes made and the quiet rounds that made none,
 * since inventory_new(). */
void inventory_refresh_stats(Inventory *inv, uint64_t *ret_facts_calls, uint64_t *ret_quiet_skips);

/* Chooses the domain type for a new VM on a host: "kvm", "qemu" or "test"
 * (a static string). requested is "auto", "kvm" or "qemu": an explicit
 * "kvm" or "qemu" wins; "auto" takes the host's domain_type_preference when
 * that is "kvm" or "qemu", else what the host's libvirt offers (KVM where
 * it can). A test-driver host gives "test", but "qemu" for "auto" when it
 * prefers qemu (its driver defines either). */
const char *inventory_domain_type(const StoreHost *h, const char *requested);
/* Whether host h may prefer domain type preference: 0; -EINVAL when it is
 * not "auto", "kvm" or "qemu"; -ENOTSUP for "kvm" when the host's libvirt
 * is not known to offer KVM (never connected, or it offers only TCG). why
 * gets a sentence naming the host. */
int inventory_domain_type_preference_check(const StoreHost *h, const char *preference, char *why, size_t why_size);

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
/* ---- operations (inventory-ops.c, inventory-vm-ops.c) ----
 * What a caller (op/op.h) asks of host groups, hosts and VMs. Each takes
 * the arguments the API parsed (types and bounds already checked), checks
 * what needs the database (names taken, the objects named exist and the
 * caller may see them), asks the policy (a refusal is audited "denied" and
 * is -EPERM with 403), writes, submits the job that talks to the host
 * (undoing its write when that fails) and audits. It returns 0 and, where
 * there is one, a new reference in *ret; or -errno with err filled (status,
 * code, field, sentence) and *ret untouched. An object the caller may not
 * read does not exist for it (404, or 422 naming the field that named it). */

#define INVENTORY_POOL_DEFAULT "armada"
#define INVENTORY_POOL_PATH_DEFAULT "/var/lib/libvirt/images/armada"

typedef struct {
        const char *path;            /* create: the full path ("Production/Web"), or */
        const char *name;            /* create: a name under parent_id; update: the new name (NULL keeps) */
        int64_t parent_id;           /* create: the parent (0: the root); update: move under it (0 keeps) */
} InventoryGroupSpec;

/* The groups the caller may read, those under path (a host-group path;
 * 400 "path" when malformed) or all when NULL, as GET /host-groups lists
 * them. */
int inventory_group_list(Inventory *inv, const OpCaller *c, const char *path, json_t **ret, OpError *err);
/* Creates a group (and the parents it needs). The policy decides on the
 * deepest group of the path that exists already, before the caller learns
 * whether the path does: 409 "path" when it exists, 422 "parent_id" for a
 * parent the caller cannot see. Audits "group.create". */
int inventory_group_create(Inventory *inv, const OpCaller *c, const InventoryGroupSpec *spec, json_t **ret, OpError *err);
/* A group with its counts; 404 when the caller may not read it. */
int inventory_group_get(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* Renames (spec->name) and/or moves (spec->parent_id) a group; the root
 * cannot be changed (409); moving needs create rights in the new parent.
 * Audits "group.update" ("renamed" or "moved"); *ret is the group after. */
int inventory_group_update(Inventory *inv, const OpCaller *c, int64_t id, const InventoryGroupSpec *spec, json_t **ret, OpError *err);
/* Deletes an empty group (409 with its counts otherwise; never the root).
 * Audits "group.delete". */
int inventory_group_delete(Inventory *inv, const OpCaller *c, int64_t id, OpError *err);

typedef struct {
        const char *name;            /* add */
        const char *uri;             /* add: checked with hv_uri_check() */
        const char *group;           /* add: a host-group path, NULL for the root */
        const char *pool;            /* add: NULL for INVENTORY_POOL_DEFAULT */
        const char *pool_path;       /* add: NULL for INVENTORY_POOL_PATH_DEFAULT; outside the system's directories */
        int64_t max_parallel_starts;   /* -1 keeps (add: armadad's default), 0 back to the default, else 1.. */
        int64_t max_parallel_disk_ops; /* likewise */
        const char *domain_type_preference; /* update: NULL keeps, else "auto", "kvm" or "qemu" (see inventory_domain_type()) */
} InventoryHostSpec;

/* Registers a host (one record per hypervisor: 409 "uri" for a URI already
 * registered, naming the other host only when the caller may read it) and
 * queues the host.refresh job that connects it; the record goes when the
 * job cannot be queued. Audits "host.add". *ret: {"host": ..., "job": ...}. */
int inventory_host_add(Inventory *inv, const OpCaller *c, const InventoryHostSpec *spec, json_t **ret, OpError *err);
/* A host; 404 when the caller may not read it. */
int inventory_host_get(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* Sets a host's throttles (spec->max_parallel_*) and domain type
 * preference (400 "domain_type_preference" for another word than auto, kvm
 * or qemu; 409 for kvm where the host's libvirt offers no KVM; nothing is
 * changed then). Audits "host.update"; *ret is the host after. */
int inventory_host_update(Inventory *inv, const OpCaller *c, int64_t id, const InventoryHostSpec *spec, json_t **ret, OpError *err);
/* Removes a host: 409 while it has VMs unless force (Armada then forgets
 * them; they keep running). Drops its connection. Audits "host.remove". */
int inventory_host_remove(Inventory *inv, const OpCaller *c, int64_t id, bool force, OpError *err);
/* An action on a host ("refresh", else 404): queues its job. Audits
 * "host.refresh" (accepted). *ret: {"job": ...}. */
int inventory_host_action(Inventory *inv, const OpCaller *c, int64_t id, const char *action, json_t **ret, OpError *err);

typedef struct {
        const char *name;
        const char *host;            /* the host by name, or */
        int64_t host_id;             /* by id; neither: placement chooses in group */
        const char *group;           /* a host-group path: where placement chooses, or where the host must be */
        int64_t cpus;
        int64_t memory_mib;
        int64_t disk_bytes;          /* 0: no disk */
        const char *domain_type;     /* "auto" (NULL), "kvm" or "qemu" */
        const char *description;     /* may be NULL */
        bool start;                  /* start it once defined */
        bool force;                  /* onto the named host even without the memory: administrators only (403 "force") */
        bool no_nic;                 /* no network card; else one on the default network (inventory_vm_default_nic) */
} InventoryVmSpec;

/* Creates a VM, in phases: checks (force, the name, the host named), then
 * under the placement lock (placement.h) chooses or checks the host and
 * records the row in state 'creating', then queues the vm.create job (the
 * row goes when that fails), then audits "vm.create" (accepted, with the
 * host and how it was chosen) and, when placement chose, records a
 * vm.placed event. 409 "no_capacity" when no host can take it, 422
 * "no_capacity" when the named host lacks the memory, 503 when the
 * database stays busy. *ret: {"vm": ..., "job": ..., "placement": ...?}. */
int inventory_vm_create(Inventory *inv, const OpCaller *c, const InventoryVmSpec *spec, json_t **ret, OpError *err);
/* A VM; 404 when the caller may not read it. */
int inventory_vm_get(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* Queues the deletion of a VM (its owned disks too unless keep_disks). A
 * self-service user's VM deployed under a grant needs "delete" in the
 * grant; a foreign VM is refused (409). Audits "vm.delete". *ret: {"job"}. */
int inventory_vm_delete(Inventory *inv, const OpCaller *c, int64_t id, bool keep_disks, json_t **ret, OpError *err);
typedef struct {
        bool set_owner;              /* "owner" was given */
        const char *owner;           /* with set_owner: the new owner's user name; NULL clears the owner */
        const char *description;     /* NULL keeps it; "" clears it */
} InventoryVmUpdateSpec;
/* Changes what an operator says of a VM: its owner and its description.
 * 404 when the caller may not read the VM; needs update rights on it (an
 * administrator, or a delegated administrator whose scope holds its host;
 * else 403, audited as denied) — checked before the owner's name, so that
 * who may not change the VM learns nothing of which users exist; a
 * foreign VM is refused (409); an unknown user is a 400 naming "owner".
 * Nothing changes unless everything is valid: both fields are written in
 * one statement. Audits "vm.update" and, when the owner changed, adds
 * "vm.updated" events owned by the new and by the previous owner (each
 * hears of it). *ret: the VM as GET /vms/{id} shows it. */
int inventory_vm_update(Inventory *inv, const OpCaller *c, int64_t id, const InventoryVmUpdateSpec *spec, json_t **ret, OpError *err);

typedef struct {
        const char *action;          /* start, stop, kill, pause, resume (else 404) */
        int64_t timeout_s;           /* stop: how long to wait for the guest (0: armadad's default) */
        bool force;                  /* stop: power off when the guest does not stop in time */
} InventoryVmActionSpec;
/* Queues a power action (job kind "vm.<action>"): needs operate rights
 * (and the action in the grant of a self-service user's granted VM); 409
 * while the VM is being created or deleted, or for a foreign VM. Audits
 * "vm.<action>" (accepted). *ret: {"job": ...}. */
int inventory_vm_action(Inventory *inv, const OpCaller *c, int64_t id, const InventoryVmActionSpec *spec, json_t **ret, OpError *err);

/* Fills err with the 409 for a VM name that is taken (VM names are unique
 * across the estate): names the VM only when the caller may read it, and
 * otherwise says the name cannot be used without confirming that another
 * user's VM has it. Returns -EEXIST. */
int inventory_vm_name_taken(Inventory *inv, const OpCaller *c, const char *field, const char *name, OpError *err);
/* -EEXIST with a 409 in err when VM v (its JSON) belongs to another Armada
 * installation (origin "foreign": read-only here), else 0. */
int inventory_vm_refuse_foreign(const json_t *v, OpError *err);

/* --- Hardware --- (inventory-hardware.c)
 * A VM's virtual hardware, changed live where libvirt and QEMU can and
 * otherwise for its next boot (hv-hardware.h); each answer says which
 * ("applied": "live" or "next_boot", per field for sizes). Every change
 * needs update rights on the VM (403 audited; a self-service user only
 * sizes its own granted VMs, inventory_vm_hardware_set), refuses a foreign VM, one being
 * created, deleted or missing (409) and one whose host is not connected
 * now (503: the HTTP thread never connects); an unseen VM is a 404. A host
 * failure is a 502 "host_error" with libvirt's reason. Each keeps the VM's
 * row (cpus, memory, disks) in step, audits ("vm.hardware",
 * "vm.disk-add", "vm.disk-resize", "vm.disk-remove", "vm.cd-insert",
 * "vm.cd-eject", "vm.boot-order") and records a vm.hardware event. */
typedef struct {
        int64_t cpus, max_cpus;              /* 0 keeps; 1..4096 (the API checks) */
        int64_t memory_mib, max_memory_mib;  /* 0 keeps */
} InventoryHardwareSpec;
/* The VM's sizes now and for its next boot, its boot order and disks:
 * {"running", "cpus", "max_cpus", "memory_mib", "max_memory_mib",
 * "next_boot": {...the same four}, "boot_order": ["cd", "disk"], "disks"}.
 * Read rights are enough. */
int inventory_vm_hardware_get(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* Changes vCPUs and memory (hv_domain_hardware_set). A self-service user
 * may change its own VM deployed under a grant, when the growth fits what
 * the grant's quota has left (else 403 naming "cpus" or "memory_mib",
 * audited as denied). 400 naming the field
 * for a count above the maximum given with it (or kept), 409 "no_capacity"
 * naming "memory_mib" when more memory would break the host's reserve
 * (placement's reason). *ret: {"vm", "applied": {field: "live"|"next_boot"},
 * "hardware"}. */
int inventory_vm_hardware_set(Inventory *inv, const OpCaller *c, int64_t id, const InventoryHardwareSpec *spec, json_t **ret,
                              OpError *err);
typedef struct {
        uint64_t size_bytes;                 /* the API checks the bounds */
        const char *bus;                     /* "virtio" (NULL) or "sata"; else 400 "bus" */
} InventoryDiskSpec;
/* Adds a new thin qcow2 disk on the next free target (vdb.. or sda..) in
 * the host's pool (the cluster's for a member); the volume goes again
 * when the disk cannot be attached. 409 past HV_MAX_DISKS. *ret: {"vm",
 * "disk": {"target", "path", "size_bytes", "bus"}, "applied"}. */
int inventory_vm_disk_add(Inventory *inv, const OpCaller *c, int64_t id, const InventoryDiskSpec *spec, json_t **ret, OpError *err);
/* Grows disk target to size_bytes: 400 "size" unless larger than it is,
 * 404 "target" for a disk the VM lacks, 400 "target" for a CD-ROM drive.
 * *ret: {"vm", "disk", "applied"}. */
int inventory_vm_disk_resize(Inventory *inv, const OpCaller *c, int64_t id, const char *target, uint64_t size_bytes, json_t **ret,
                             OpError *err);
/* Removes disk target (a running guest must release it: else 409) and
 * deletes its volume when Armada made it, unless keep_volume. *ret: {"vm",
 * "target", "volume_deleted", "applied"}. */
int inventory_vm_disk_remove(Inventory *inv, const OpCaller *c, int64_t id, const char *target, bool keep_volume, json_t **ret,
                             OpError *err);
/* Queues vm.cd-insert of the indexed library ISO iso (an item id, its path
 * in its share, or a file name only one ISO has; 422 "iso" otherwise, 400
 * "iso" when its file leads outside its share): the job puts it in the
 * host's pool unless the host sees the library file (reused when it is
 * there already) and into the VM's CD-ROM drive (added for the next boot
 * when there is none). *ret: {"job", "iso"}; the job's result {"iso",
 * "drive", "path", "applied"}. */
int inventory_vm_cd_insert(Inventory *inv, const OpCaller *c, int64_t id, const char *iso, json_t **ret, OpError *err);
/* Empties the CD-ROM drive. *ret: {"vm", "drive", "applied"}. */
int inventory_vm_cd_eject(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* Sets the boot order (n words of "cd", "disk", "network", 1..3, no
 * repeats; 400 "order" otherwise) for the next boot. *ret: {"vm",
 * "boot_order", "applied": "next_boot"}. */
int inventory_vm_boot_order(Inventory *inv, const OpCaller *c, int64_t id, const char *const *order, size_t n, json_t **ret,
                            OpError *err);
/* For jobs (vm.cd-insert, vm.deploy of a template with an ISO): where host
 * h's domains find the library ISO at path (size bytes, sha256 checksum),
 * which must still resolve inside its share share_path (else the job fails:
 * never a file outside the library). The file itself when the host sees
 * it, else a volume of its pool streamed once and reused later ("armada-
 * iso-<checksum prefix>.iso"). 0 and *ret_path (malloc'd), or the job's
 * failure (job_fail()). */
int inventory_iso_for_host(Inventory *inv, JobCtx *ctx, const StoreHost *h, InventoryLink *l, const char *share_path,
                           const char *path, uint64_t size, const char *checksum, char **ret_path);
/* Registers vm.cd-insert (inventory_register_jobs() calls it). */
void inventory_register_hardware_jobs(Inventory *inv);
/* --- Networks --- (inventory-network.c)
 * libvirt networks Armada keeps on one host or on every host of a host
 * group (and its subgroups), and the network cards of VMs. Creating and
 * deleting networks is for administrators; lists show a network to whoever
 * may read its group (or its host's). */
typedef struct {
        const char *name;
        const char *group;           /* a host-group path, or */
        const char *host;            /* a host's name (exactly one of the two) */
        const char *mode;            /* "nat", "bridge", "isolated" */
        const char *bridge;          /* bridge: the hosts' bridge */
        int64_t vlan;                /* bridge: 1..4094, 0 none */
        const char *subnet;          /* nat/isolated: "10.1.2.0/24", or NULL */
        bool is_default;             /* the group's default network (blank VMs get a NIC on it) */
} InventoryNetworkSpec;
/* The networks the caller may see (name NULL: all), each with the hosts it
 * should stand on and what each host said: "active", "failed" (with
 * "error"), or "missing" (not reached yet: set up when the host is next
 * refreshed). Reads records only; never waits on a host. */
int inventory_network_list(Inventory *inv, const OpCaller *c, const char *name, json_t **ret, OpError *err);
int inventory_network_get(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* Records the network and queues network.create, which sets it up on each
 * of its hosts: all or nothing (a host that refuses, e.g. a VLAN on a Linux
 * bridge, undoes the others and the record, and the job says why); a host
 * that cannot be reached is "missing" until its next refresh sets it up. 400
 * naming the field for bad input, 403 for non-administrators (audited),
 * 422 for an unknown group or host, 409 "name" when taken. Audits
 * "network.create". *ret: {"network": ..., "job": ...}. */
int inventory_network_create(Inventory *inv, const OpCaller *c, const InventoryNetworkSpec *spec, json_t **ret, OpError *err);
/* Queues network.delete (removed from every host that can be reached, then
 * the record): 409 while a VM has a NIC on it, naming the VMs. Audits
 * "network.delete". *ret: {"job": ...}. */
int inventory_network_delete(Inventory *inv, const OpCaller *c, int64_t id, json_t **ret, OpError *err);

typedef struct {
        const char *network;         /* an Armada network that reaches the VM's host, or a libvirt network the host has */
        const char *mac;             /* NULL: a fresh 52:54:00:xx:xx:xx one */
        const char *model;           /* "virtio" (NULL), "e1000", "rtl8139" */
} InventoryNicSpec;
/* The NICs of a VM the caller may read: [{mac, network, model, created_at}]. */
int inventory_vm_nic_list(Inventory *inv, const OpCaller *c, int64_t vm_id, json_t **ret, OpError *err);
/* Adds a NIC (job vm.nic.add: live when the VM runs, and to its definition).
 * Needs update rights on the VM (403 audited); 409 for a foreign VM or one
 * being created or deleted; 400 "mac"/"model"/"network" for bad values; 409
 * "mac" for a MAC any VM of the estate uses; 422 "network" for an Armada
 * network that does not reach the VM's host. The MAC is reserved before the
 * job runs and freed when it fails. Audits "vm.nic.add". *ret: {"nic", "job"}. */
int inventory_vm_nic_add(Inventory *inv, const OpCaller *c, int64_t vm_id, const InventoryNicSpec *spec, json_t **ret, OpError *err);
/* Removes the VM's NIC with mac (job vm.nic.remove); 404 "mac" when it has
 * none. Audits "vm.nic.remove". *ret: {"job"}. */
int inventory_vm_nic_remove(Inventory *inv, const OpCaller *c, int64_t vm_id, const char *mac, json_t **ret, OpError *err);

/* --- Storage --- (inventory-storage.c)
 * The storage pools of hosts and their volumes. Lists read what each host's
 * last full refresh recorded; changes are quick operations on a host that
 * is connected now (503 otherwise), for administrators only. */
typedef struct {
        const char *name;
        const char *type;            /* "dir", "netfs", "iscsi", "logical" */
        const char *path;            /* dir, netfs: a directory outside the system's */
        const char *source_host;     /* netfs, iscsi */
        const char *source_path;     /* netfs: the export */
        const char *source_name;     /* iscsi: the IQN; logical: the volume group */
} InventoryPoolSpec;
/* The pools of the hosts the caller may read (host NULL: every host's),
 * with capacity, allocation and available bytes. 404 "host" for an unknown
 * host. */
int inventory_pool_list(Inventory *inv, const OpCaller *c, const char *host, json_t **ret, OpError *err);
/* Adds a pool to host host_id (defined, built, started, autostarted; undone
 * when a step fails). 400 naming the field; 409 "name" when the host has
 * one; 502 with the host's reason when libvirt refuses. Audits "pool.add". */
int inventory_pool_add(Inventory *inv, const OpCaller *c, int64_t host_id, const InventoryPoolSpec *spec, json_t **ret, OpError *err);
/* Stops and undefines a pool (its data stays). 409 for the host's Armada
 * pool and for a pool that still has volumes. Audits "pool.remove". */
int inventory_pool_remove(Inventory *inv, const OpCaller *c, int64_t host_id, const char *pool, OpError *err);
/* The volumes of a pool, asked of the host now: [{name, path, format,
 * capacity_bytes, allocation_bytes, vm?}]. */
int inventory_volume_list(Inventory *inv, const OpCaller *c, int64_t host_id, const char *pool, json_t **ret, OpError *err);
/* Deletes a volume: 409 while a VM's disk is on it. Audits "volume.delete". */
int inventory_volume_delete(Inventory *inv, const OpCaller *c, int64_t host_id, const char *pool, const char *vol, OpError *err);
