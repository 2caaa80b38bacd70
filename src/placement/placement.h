/* placement: the place capability. The glue between the database and the
 * pure placement engine (src/place) — it builds the engine's host arrays
 * from the store: each host's capacity, what it already uses, the reserves
 * and goal its group inherits, placement rules, a cluster's failover
 * reserve — and answers "which hosts could take this VM, and how well" and
 * "which one is best" (placement.c); and the placement operations the API
 * calls: policy, ratings, rules, consolidation, a new VM's host
 * (placement-ops.c).
 *
 * "Used" is measured load from the host_usage table when a fresh sample
 * exists (monitoring writes it), otherwise the sum of the allocations of the
 * VMs Armada places on the host. Every host's inputs are kept in memory
 * and patched with only what the store noted as changed since (one row
 * read when nothing changed; a changed host's rows when one did), so a
 * rating never re-reads the estate; then one pass over the hosts builds
 * and rates them (place_table_*()).
 *
 * Layering: builds on store, op and place; inventory, library, ha and api
 * build on it, never the other way round. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "op/op.h"
#include "store/store.h"

/* Resources already promised to a host by moves in flight (e.g. a
 * maintenance plan migrating several VMs): counted as used. */
typedef struct {
        int64_t host_id;
        unsigned cpus;
        uint64_t memory_mib;
        uint64_t disk_bytes;
} PlacementPending;

typedef struct {
        unsigned cpus;
        uint64_t memory_mib;
        uint64_t disk_bytes;          /* space the VM needs on the host (0 on shared storage) */
        int64_t vm_id;                /* the VM being (re)placed, 0 for a new one: its own use is not counted and its rules apply */
        const char *vm_name;          /* for rules and sentences; may be NULL */
        int64_t exclude_host_id;      /* a host to leave out (a migration's source), 0 for none */
        const char *goal;             /* "load-balancing", "resource-maximization" or NULL for the group's */
        const PlacementPending *pending;
        size_t n_pending;
        /* When n_scope > 0, only hosts in the subtrees of these groups are
         * rated at all (a delegated administrator's groups): the others are
         * neither candidates nor named in any reason. */
        const int64_t *scope;
        size_t n_scope;
        /* Networks the VM's cards will use (a new VM's; an existing VM's
         * own cards count without being named): a host that lacks one, or
         * has it not active, rates 0 (place.h PLACE_WHY_NETWORK). Names
         * Armada does not manage constrain nothing. NULL entries are skipped. */
        const char *const *networks;
        size_t n_networks;
} PlacementDemand;

typedef struct {
        int64_t host_id;
        char host_name[64];
        double rating;                /* 0 = cannot take the VM */
        double stars;                 /* 0 to 5 in half steps, scaled to the best host */
        char reason[384];             /* why the rating is 0; "" otherwise */
        unsigned why;                 /* PLACE_WHY_* bits (place/place.h), 0 when the host fits */
} PlacementRating;

/* Rates every host in group_id's subtree (0 or the root: all hosts) for d.
 * Returns the number of hosts rated and a malloc'd array sorted best first
 * (ties by host id), or negative. */
int placement_rate(Store *st, int64_t group_id, const PlacementDemand *d, PlacementRating **ret);
/* The same, but only the best max hosts go into *ret (every host is still
 * rated: the stars are relative to the best); *ret_total (when asked) the
 * number rated. Returns the number in *ret. */
int placement_rate_top(Store *st, int64_t group_id, const PlacementDemand *d, size_t max, PlacementRating **ret,
                       size_t *ret_total);

/* The best host for d in group_id's subtree: 0 and *ret_host_id, or
 * -ENOSPC when no host can take it, with every host's reason in why
 * ("host 'a': memory: needs ...; host 'b': ..."), or another negative code. */
int placement_choose(Store *st, int64_t group_id, const PlacementDemand *d, int64_t *ret_host_id, char *why, size_t why_size);

/* Ratings served from the inputs in memory as they were (hits), and the
 * times the inputs were read from the store since the store was opened
 * (misses: the first whole read, then each patch of what the store noted
 * as changed — store_place_seq() — and each private patch inside a
 * transaction). */
void placement_cache_stats(Store *st, uint64_t *ret_hits, uint64_t *ret_misses);

/* Brings the inputs in memory up to the store's committed present by
 * reading only what changed since they were (a no-op inside a
 * transaction). A writer that changed many hosts at once (the monitor's
 * round) calls it after its commit, so no request pays for the patch.
 * 0 or negative. */
int placement_refresh(Store *st);

/* For tests and debugging: brings the inputs in memory up to date
 * (placement_refresh()) and compares them with the inputs read whole from
 * the store. 0 when equal; -EBADMSG with the first difference in why; or
 * another negative code. */
int placement_inputs_verify(Store *st, char *why, size_t why_size);

/* ---- choose and reserve, atomically ----
 * Every path that places a VM (create, deploy, migrate, maintenance, HA
 * restart) holds the placement lock from rating the hosts until what it
 * chose is recorded: the new VM's row (state 'creating'), or a reservation
 * for a move in flight (placement_reserve()). Two placements at once then
 * never both count the same free room. The lock is the store's write
 * transaction (BEGIN IMMEDIATE), so it orders placements of every thread
 * and process, and a failure before the end rolls the record back too.
 * Nothing between placement_lock() and placement_unlock() may open a
 * transaction of its own. */

/* Takes the lock: 0 or negative (the database stayed busy). */
int placement_lock(Store *st);
/* Releases it: keeps what was recorded when r >= 0 (returns 0, or negative
 * when that fails), else drops it and returns r. */
int placement_unlock(Store *st, int r);

/* Records that d->vm_id is moving to host_id: d's vCPUs, memory and disk
 * count as used there until placement_release(). Replaces an earlier
 * reservation of the same VM. Call with the lock held. 0 or negative. */
int placement_reserve(Store *st, const PlacementDemand *d, int64_t host_id);
/* Ends vm_id's reservation (only the one on host_id when host_id > 0); 0
 * also when there is none. */
int placement_release(Store *st, int64_t vm_id, int64_t host_id);
/* Ends every reservation: at start, when no move can be in flight. */
int placement_release_all(Store *st);

/* The groups a move started by user owner_id may place into, for
 * PlacementDemand.scope: 0 (no limit) for the system (owner_id <= 0) and
 * administrators; a delegated administrator's scopes; for anyone else (or
 * a user that is gone) the single group fallback_group_id (the VM's own
 * host group). Returns the count and a malloc'd array in *ret (NULL when
 * 0), or negative. */
int placement_scope_of(Store *st, int64_t owner_id, int64_t fallback_group_id, int64_t **ret);

/* ---- operations (placement-ops.c) ----
 * Each takes the caller (op/op.h) and decides the request from start to
 * end: arguments, the caller's rights, the writes and the audit. 0 on
 * success; else -errno with err filled (status, code, field, sentence) for
 * the API to map unchanged. JSON results are new references in *ret, set
 * only on success. */

/* A host group's own and effective placement policy ({"group_id",
 * "group_path", "own", "effective"}). 404 when the caller may not read the
 * group or it does not exist. */
int placement_policy_get(Store *st, const OpCaller *c, int64_t group_id, json_t **ret, OpError *err);

/* Changes group_id's own policy by change (a JSON object, NULL for none):
 * reserves "cpu_pct", "memory_mib", "disk_gib", "disk_io_pct",
 * "network_pct", "goal" and "weights" {cpu, memory, disk, disk_io,
 * network}; a null value inherits from the parent. Checks the group (404),
 * the right to update it (403, audited), every figure (400 not a number,
 * 422 out of range) and that some weight that applies stays above 0 (422);
 * writes, audits "group.set-policy" and returns the policy as
 * placement_policy_get(). Nothing is written on failure. */
int placement_policy_set(Store *st, const OpCaller *c, int64_t group_id, const json_t *change, json_t **ret, OpError *err);

/* A ratings request, parsed: the demand, and optional group path, goal
 * and VM name (NULL: the root, the group's goal, a new VM). */
typedef struct {
        int64_t cpus, memory_mib, disk_bytes;
        const char *group, *goal, *name;
        int64_t limit;                /* the best limit hosts only; 0: every host */
} PlacementRateSpec;

/* Rates every host of the group (a delegated administrator: of its scopes
 * only) for s: {"items": [{host_id, host_name, rating, stars, reason}] best
 * first (the best s->limit when set), "total" (hosts rated), "best_host_id",
 * "group", "goal"}. 400 for a bad goal, name or
 * group path, 422 for an unknown group, 403 (audited) when the caller may
 * not read it. Reads only. */
int placement_ratings(Store *st, const OpCaller *c, const PlacementRateSpec *s, json_t **ret, OpError *err);

/* Placement rules ({"id", "name", "kind", "vms": [names]}) as the caller
 * may see them: administrators and the read-only role every rule; a
 * delegated administrator the rules that hold a VM it can see, listing
 * only those VMs; self-service none (403 on the list, 404 for one). */
int placement_rule_list(Store *st, const OpCaller *c, json_t **ret, OpError *err);
int placement_rule_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err);

/* A new rule, parsed: name (checked by the caller as a name), kind and the
 * "vms" JSON value as given (NULL when absent). */
typedef struct {
        const char *name, *kind;
        const json_t *vms;
} PlacementRuleSpec;

/* Whether the caller may create rules at all (an administrator or a
 * delegated administrator who may change some VM): 0, or -EPERM with the
 * denial audited and err filled. placement_rule_create() asks it again;
 * the API asks first so a caller who may not is refused before its body
 * is read. */
int placement_rule_may_create(Store *st, const OpCaller *c, OpError *err);
/* Creates the rule: 400 for a bad kind or missing or malformed vms, 409
 * when the name is taken, 422 for a VM the caller cannot see, 403 for one
 * it may not change; audits "rule.create" and returns the rule as the
 * caller may see it. */
int placement_rule_create(Store *st, const OpCaller *c, const PlacementRuleSpec *s, json_t **ret, OpError *err);
/* Replaces rule id's VMs by vms (JSON array of names; NULL: 400): 404 when
 * the caller cannot see the rule, 403 when it may not change it or one of
 * its VMs; audits "rule.update" and returns the rule as the caller sees it. */
int placement_rule_update(Store *st, const OpCaller *c, int64_t id, const json_t *vms, json_t **ret, OpError *err);
/* Deletes rule id: 404 / 403 as placement_rule_update(); audits "rule.delete". */
int placement_rule_delete(Store *st, const OpCaller *c, int64_t id, OpError *err);

/* The consolidation plan (P2V assessment) of the request's "host" model
 * and "servers" (JSON values as given, NULL when absent): checks every
 * field (400 naming it, 422 out of range), fills a missing reserve from
 * the root group's policy and returns {"hosts_used", "lower_bound",
 * "unplaceable", "hosts", "assignment"}. 403 (audited) for self-service.
 * Reads only. */
int placement_consolidation(Store *st, const OpCaller *c, const json_t *host, const json_t *servers, json_t **ret,
                            OpError *err);

/* A new VM's demand, parsed: group path (NULL: the root, or a delegated
 * administrator's one scope), name, vCPUs, memory and disk. */
typedef struct {
        const char *group, *name;
        int64_t cpus, memory_mib, disk_bytes;
} PlacementVmSpec;

/* Picks the best host for a new VM (call with placement_lock() held, so
 * the choice and the insert of the VM's row are one step): 0 with
 * *ret_host_id and *ret_placement ({"chosen_by": "placement", "group",
 * "host", "rating", "stars"}); 400/422 for a bad or unknown group, -ENOSPC
 * with 409 "no_capacity" and every host's reason when none can take it. */
int placement_new_vm(Store *st, const OpCaller *c, const PlacementVmSpec *s, int64_t *ret_host_id, json_t **ret_placement,
                     OpError *err);
/* Checks that host h, named by the caller, has the memory for a new VM
 * (memory is a hard requirement): 0 when it has or force is set (the
 * caller checked that only an administrator sets it; logged), else -ENOSPC
 * with 422 "no_capacity" and the placement's reason. */
int placement_check_host(Store *st, const OpCaller *c, const StoreHost *h, const PlacementVmSpec *s, bool force, OpError *err);
