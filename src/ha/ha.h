/* ha: live migration, maintenance mode and failover clusters.
 *
 * Job kinds (registered by ha_register_jobs()):
 *   vm.migrate        live-migrates a running VM (params: to, with_storage,
 *                     auto_converge, postcopy); placement picks the target
 *                     when none is given; cancellable; on failure the VM
 *                     stays on its source and the database says so.
 *   host.maintenance  on: moves every running VM off the host, each to the
 *                     host placement picks at that moment (moves in flight
 *                     count as used), as vm.migrate jobs; VMs that cannot
 *                     move are listed with the reason and the host stays out
 *                     of maintenance unless force, which saves them (managed
 *                     save). off: back to service.
 *
 * Failover: a thread watches every cluster member's libvirt link (the
 * inventory's keepalive connections). A member whose link has been dead for
 * the failure-declaration time, and which does not answer a direct probe
 * (a fresh connection, at most 1 s), is declared failed, fenced with its fence
 * command (a fixed argv, posix_spawn, exit 0 required), and its HA VMs are
 * restarted on the surviving members in priority order, each on the best
 * member placement finds memory on, the next one when that fails. VMs that
 * fit nowhere wait (ha_pending) and start once capacity appears. Without
 * successful fencing nothing is restarted: the VMs stay "unknown" and an
 * error event is raised. A member that answers again is back in service;
 * the inventory's reconcile destroys any stale copy it still runs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inventory/inventory.h"
#include "jobs/jobs.h"
#include "op/op.h"
#include "store/store-ha.h"

typedef struct {
        int declare_ms;          /* dead link time before a member is declared failed (default 3000) */
        int tick_ms;             /* how often members are looked at (default 100) */
        int fence_timeout_ms;    /* a fence command that runs longer has failed (default 60000) */
        int pending_retry_ms;    /* how often waiting VMs are tried again (default 2000) */
} HaConfig;

typedef struct Ha Ha;

int ha_new(Store *st, Jobs *jobs, Inventory *inv, const HaConfig *cfg, Ha **ret);
/* Registers vm.migrate and host.maintenance (before jobs_start()). */
void ha_register_jobs(Ha *ha);
/* Starts the failover thread. 0 or -errno. */
int ha_start(Ha *ha);
void ha_stop(Ha *ha);
Ha *ha_free(Ha *ha);

/* Whether VM vm_id may be made highly available: it runs on a cluster
 * member and every disk of it is on that cluster's shared storage (where a
 * restart on another member finds it). 0; -ENOENT (no such VM, or its host
 * is in no cluster) or -EXDEV (a disk elsewhere: the sentence names it and
 * the shared storage) with a sentence in why; or negative. */
int ha_vm_protectable(Store *st, int64_t vm_id, char *why, size_t why_size);

/* ---- operations (ha-ops.c) ----
 * Each decides one request of the API from start to end: the caller's view
 * (what it may not see is "not found"), its rights (a denial is audited),
 * the checks that need the database, the write or the job, the audit
 * record. 0 with *ret set (a new reference), or -errno with err filled
 * (status, code, field, sentence) and nothing changed. */

typedef struct {
        int64_t vm_id;
        const char *to;           /* the target host by name, or NULL */
        int64_t to_id;            /* or by id, or 0: placement picks */
        bool with_storage, auto_converge, postcopy;
        int64_t bandwidth_mibs;   /* 0: no limit */
} HaMigrateSpec;
/* Queues vm.migrate for a running or paused VM the caller may change, to a
 * host in service it may place on. *ret: {"job": the job}. */
int ha_op_vm_migrate(Store *st, Jobs *jobs, const OpCaller *c, const HaMigrateSpec *spec, json_t **ret, OpError *err);
/* Queues host.maintenance (on or off; force saves what cannot move) for a
 * host the caller may operate. *ret: {"job": the job}. */
int ha_op_host_maintenance(Store *st, Jobs *jobs, const OpCaller *c, int64_t host_id, bool on, bool force, json_t **ret,
                           OpError *err);
/* The fence command of a host (administrators only): *ret {host_id, host,
 * command (argv or null)}. */
int ha_op_fencing_get(Store *st, const OpCaller *c, int64_t host_id, json_t **ret, OpError *err);
/* Sets it from command (the request's field: NULL when absent, JSON null
 * removes it, else a list that ha_argv_parse() accepts); *ret as get. */
int ha_op_fencing_set(Store *st, const OpCaller *c, int64_t host_id, json_t *command, json_t **ret, OpError *err);
/* A VM's HA setting: *ret {vm_id, vm, enabled, priority}. */
int ha_op_vm_ha_get(Store *st, const OpCaller *c, int64_t vm_id, json_t **ret, OpError *err);
/* Sets it (priority as ha_priority_parse(); 0 off) when the caller may
 * change the VM and, unless off, ha_vm_protectable() says yes; *ret as get. */
int ha_op_vm_ha_set(Store *st, const OpCaller *c, int64_t vm_id, int priority, json_t **ret, OpError *err);

#define HA_CLUSTER_MAX_HOSTS 64
typedef struct {
        const char *name;
        const char *shared_storage;   /* normalized, outside system directories */
        int tolerate;
        const char *const *hosts;     /* member names; NULL for an entry that is not a string */
        size_t n_hosts;               /* 1..HA_CLUSTER_MAX_HOSTS */
} HaClusterSpec;
/* The clusters the caller sees (a delegated administrator: those whose
 * every member it sees), optionally by name: *ret {"items": [...]}. */
int ha_op_cluster_list(Store *st, const OpCaller *c, const char *name, json_t **ret, OpError *err);
/* One cluster with its waiting VMs ("pending"). */
int ha_op_cluster_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* Creates a cluster of hosts the caller may change, none in another
 * cluster; audits, raises cluster.created and refreshes the members. */
int ha_op_cluster_create(Store *st, Jobs *jobs, const OpCaller *c, const HaClusterSpec *spec, json_t **ret, OpError *err);
/* Deletes a cluster when the caller may change every member. */
int ha_op_cluster_delete(Store *st, const OpCaller *c, int64_t id, OpError *err);

/* ---- pure parts (unit-tested) ---- */

/* 1 high, 2 medium, 3 low, 0 off. "high|medium|low|off"; -EINVAL else. */
int ha_priority_parse(const char *s, int *ret);
/* "high", "medium", "low", or "off". */
const char *ha_priority_name(int priority);

/* The failure-declaration state machine of one member, driven by whether
 * its link is alive at time now (monotonic ms). A member never seen alive
 * is never declared failed (armadad may have started while it was down). */
typedef enum { HA_WATCH_UNSEEN = 0, HA_WATCH_OK, HA_WATCH_SUSPECT, HA_WATCH_FAILED } HaWatchState;
typedef struct {
        HaWatchState state;
        int64_t last_alive_ms;   /* last time the link was seen alive */
} HaWatch;
typedef enum {
        HA_EV_NONE = 0,
        HA_EV_UP,        /* seen alive for the first time */
        HA_EV_SUSPECT,   /* stopped answering */
        HA_EV_FAILED,    /* dead for declare_ms: fence and fail over (once) */
        HA_EV_BACK,      /* answers again after SUSPECT or FAILED */
} HaWatchEvent;
HaWatchEvent ha_watch_step(HaWatch *w, bool alive, int64_t now, int64_t declare_ms);

typedef struct {
        int64_t host_id;
        double rating;
} HaRated;
/* The hosts to try for a restart, best first: the entries of rated (sorted
 * best first) with a rating above 0 that are in members[] and are not
 * exclude. Writes at most max ids into out; returns how many. */
size_t ha_candidates(const HaRated *rated, size_t n_rated, const int64_t *members, size_t n_members,
                     int64_t exclude, int64_t *out, size_t max);

/* Sorts restart references: HA VMs by priority (1 first), then id; VMs
 * without HA (priority 0) last. */
void ha_restart_order(StoreHaRef *refs, size_t n);

/* Parses a fence command given as a JSON array of 1..32 non-empty strings
 * without NUL, each at most 1024 bytes. Returns a NULL-terminated malloc'd
 * argv (free each string and the array with ha_argv_free()), or NULL with
 * a sentence in why. */
char **ha_argv_parse(const char *json, char *why, size_t why_size);
void ha_argv_free(char **argv);

/* Runs argv (argv[0] looked up in PATH; no shell) with stdin from
 * /dev/null, waiting at most timeout_ms. 0 when it exited 0; otherwise
 * negative with a sentence in why (exit status, signal, timeout -- the
 * command is killed then -- plus the last of its output). */
int ha_run_command(char *const *argv, int timeout_ms, char *why, size_t why_size);
/* Replaces in text every occurrence of an argument of argv (but argv[0],
 * options starting with '-' and words under 4 characters) with "***", so a
 * command that echoes its arguments (a BMC password, an address) does not
 * put them into a job error, an event or a host's state reason that others
 * may read. Returns the new length. ha_run_command() does it to the output
 * it quotes. */
size_t ha_redact_args(char *text, char *const *argv);
