/* placement: the glue between the database and the pure placement engine
 * (src/place). It builds the engine's host arrays from the inventory — each
 * host's capacity, what it already uses, the reserves and goal its group
 * inherits, placement rules, a cluster's failover reserve — and answers
 * "which hosts could take this VM, and how well" and "which one is best".
 *
 * "Used" is measured load from the host_usage table when a fresh sample
 * exists (monitoring writes it), otherwise the sum of the allocations of the
 * VMs Armada places on the host. Costs one pass over hosts and one over VMs
 * of the group per call. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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

/* The best host for d in group_id's subtree: 0 and *ret_host_id, or
 * -ENOSPC when no host can take it, with every host's reason in why
 * ("host 'a': memory: needs ...; host 'b': ..."), or another negative code. */
int placement_choose(Store *st, int64_t group_id, const PlacementDemand *d, int64_t *ret_host_id, char *why, size_t why_size);

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
