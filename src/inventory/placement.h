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
} PlacementDemand;

typedef struct {
        int64_t host_id;
        char host_name[64];
        double rating;                /* 0 = cannot take the VM */
        double stars;                 /* 0 to 5 in half steps, scaled to the best host */
        char reason[384];             /* why the rating is 0; "" otherwise */
} PlacementRating;

/* Rates every host in group_id's subtree (0 or the root: all hosts) for d.
 * Returns the number of hosts rated and a malloc'd array sorted best first
 * (ties by host id), or negative. */
int placement_rate(Store *st, int64_t group_id, const PlacementDemand *d, PlacementRating **ret);

/* The best host for d in group_id's subtree: 0 and *ret_host_id, or
 * -ENOSPC when no host can take it, with every host's reason in why
 * ("host 'a': memory: needs ...; host 'b': ..."), or another negative code. */
int placement_choose(Store *st, int64_t group_id, const PlacementDemand *d, int64_t *ret_host_id, char *why, size_t why_size);
