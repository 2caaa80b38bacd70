/* Intelligent placement: rates hosts for a new VM (stars and reasons) and packs
 * physical servers onto as few hosts as possible (the P2V consolidation plan).
 * Pure functions over caller-owned arrays: no I/O, no allocation per host, no
 * globals. See DESIGN.md §4. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/util.h"

/* The resources a VM needs and a host offers, with their units:
 *   CPU          CPU units: 100 per core (a 16-core host has 1600; a VM that
 *                keeps two cores half busy needs 100). The caller may scale by
 *                core speed as long as hosts and demand use the same scale.
 *   MEMORY       MiB.
 *   DISK         disk space, GiB.
 *   DISK_IO      IOPS.
 *   NETWORK      Mbit/s.
 * Memory and disk space are HARD: a host that cannot hold the demand after its
 * reserves gets rating 0. CPU, disk I/O and network are SOFT: running short
 * only lowers the rating (an overcommitted soft resource contributes nothing),
 * because the hypervisor can share them out, more slowly. */
typedef enum {
        PLACE_R_CPU,
        PLACE_R_MEMORY,
        PLACE_R_DISK,
        PLACE_R_DISK_IO,
        PLACE_R_NETWORK,
        PLACE_R__COUNT,
} PlaceResource;

/* Lowercase word for a resource ("cpu", "memory", "disk space", "disk I/O",
 * "network"), as used in reasons. Static string; "unknown" when out of range. */
const char *place_resource_name(PlaceResource r);

/* Only PLACE_HOST_OK hosts can take VMs; the others rate 0 with a reason. */
typedef enum {
        PLACE_HOST_OK,
        PLACE_HOST_MAINTENANCE,
        PLACE_HOST_UNREACHABLE,
        PLACE_HOST_FAILED,
        PLACE_HOST_DISABLED,
        PLACE_HOST__STATE_COUNT,
} PlaceHostState;

/* The host-group reserve the administrator keeps free on every host. CPU, disk
 * I/O and network in percent of the host's capacity; memory and disk space
 * absolute. A reserve may exceed the capacity (nothing then fits). */
typedef struct {
        double cpu_pct;
        double memory_mib;
        double disk_gib;
        double disk_io_pct;
        double network_pct;
} PlaceReserve;

/* A VM that already runs on a host and belongs to a rule group. */
typedef struct {
        int32_t group;          /* rule-group id (affinity or anti-affinity) */
        const char *vm_name;    /* for reasons; may be NULL (the reason then
                                 * names the rule group's id) */
} PlaceMember;

/* A virtual network as one host has it: a VM with a network card on it
 * can run there only when the network is there and active. */
typedef struct {
        const char *name;
        bool active;            /* defined and running (false: defined, down or failed) */
} PlaceNetwork;

/* One candidate host. All pointers are borrowed: the caller keeps them alive
 * for the duration of the call. Figures must be finite and >= 0; a host with
 * a negative, NaN or infinite figure rates 0 ("reports invalid figures"). */
typedef struct {
        int64_t id;                     /* caller's id, not used by the engine */
        const char *name;               /* for reasons; may be NULL */
        PlaceHostState state;
        double cap[PLACE_R__COUNT];     /* capacity, units as PlaceResource */
        double used[PLACE_R__COUNT];    /* measured use, same units */
        PlaceReserve reserve;
        /* Memory kept free for the cluster's N+1 failover, computed by the
         * caller (e.g. the largest member's committed memory spread over the
         * survivors). An extra memory reserve with its own reason; it also
         * counts as reserve in the memory score. */
        double failover_reserve_mib;
        /* VMs on this host that belong to rule groups, excluding the VM being
         * placed (NULL when n_members is 0). Only the group ids matter to the
         * rating; names go into reasons. */
        const PlaceMember *members;
        size_t n_members;
        /* The networks of this host that the demand may name (NULL when
         * n_networks is 0). A demand network not listed is missing here. */
        const PlaceNetwork *networks;
        size_t n_networks;
} PlaceHost;

/* The VM to place. Pointers borrowed as for PlaceHost. */
typedef struct {
        const char *vm_name;            /* for reasons; may be NULL */
        double demand[PLACE_R__COUNT];  /* finite, >= 0 */
        /* No host may run two members of an anti-affinity group: a host that
         * runs a member of any of these groups rates 0. */
        const int32_t *anti_affinity;
        size_t n_anti_affinity;
        /* Members of an affinity group share a host: when a member of one of
         * these groups runs on any host in the input, hosts without a member
         * of that group rate 0. A group with no running member constrains
         * nothing (the first member goes wherever rates best). */
        const int32_t *affinity;
        size_t n_affinity;
        /* The networks the VM's cards use: a host that lacks one of them,
         * or has it but not active, rates 0. Only networks the caller
         * knows the hosts' state of belong here (NULL when 0). */
        const char *const *networks;
        size_t n_networks;
} PlaceDemand;

typedef enum {
        /* Prefer the emptiest host: a resource scores its leftover percent. */
        PLACE_GOAL_LOAD_BALANCING,
        /* Prefer the fullest host that still fits: a resource scores
         * 100 - leftover percent, so hosts are filled before others start. */
        PLACE_GOAL_RESOURCE_MAXIMIZATION,
} PlaceGoal;

typedef struct {
        PlaceGoal goal;
        double weight[PLACE_R__COUNT];  /* finite, >= 0, at least one > 0 */
} PlacePolicy;

/* Fills *ret with the goal and the default weights: CPU 1, memory 1, disk
 * space 0.5, disk I/O 0.5, network 0.5. */
void place_policy_default(PlaceGoal goal, PlacePolicy *ret);

/* Why a host rates 0; a host can have several (bitmask in PlaceRating.why). */
enum {
        PLACE_WHY_STATE         = 1u << 0,      /* host not in PLACE_HOST_OK */
        PLACE_WHY_INVALID       = 1u << 1,      /* negative/NaN/inf figures: no
                                                 * resource checks, rules still */
        PLACE_WHY_MEMORY        = 1u << 2,      /* demand > cap - used - reserve */
        PLACE_WHY_FAILOVER      = 1u << 3,      /* fits only by eating the N+1 reserve */
        PLACE_WHY_DISK          = 1u << 4,      /* disk space, as memory */
        PLACE_WHY_ANTI_AFFINITY = 1u << 5,
        PLACE_WHY_AFFINITY      = 1u << 6,
        PLACE_WHY_NETWORK       = 1u << 7,      /* a demand network missing or not active */
};

#define PLACE_REASON_MAX 384

/* The rating of hosts[host_index].
 *
 * rating: 0 when the VM cannot run there; otherwise the weighted mean over the
 *   resources of the per-resource score (see PlaceGoal), in [0.01, 100]: the
 *   floor of 0.01 keeps "0" meaning exactly "does not fit". A resource with
 *   zero capacity and zero demand is left out of the mean; a soft resource
 *   with zero capacity and some demand scores 0.
 * half_stars: 0..10 (0 to 5 stars in half steps), relative to the best host of
 *   the same call: round(10 * rating / best), but at least 1 for any host
 *   that fits, so 0 stars means exactly "does not fit". Monotone in rating.
 * why: PLACE_WHY_* bits, 0 when the host fits.
 * reason: "" when the host fits; otherwise every reason as a sentence, joined
 *   by "; " in the order below (a host that is not OK gets only the state
 *   sentence). Needs are rounded up and what is left down, to whole units:
 *     host is in maintenance | host is unreachable | host has failed |
 *       host is disabled for placement
 *     host reports invalid resource figures (negative, NaN or infinite)
 *     memory: needs 4096 MiB, 2900 MiB left after the 1024 MiB reserve
 *     failover reserve: needs 4096 MiB, 900 MiB left after the 1024 MiB
 *       reserve and the 2000 MiB kept free for the cluster's N+1 failover
 *     disk space: needs 40 GiB, 12 GiB left after the 50 GiB reserve
 *     anti-affinity: runs 'web01', which must not share a host with 'web02'
 *     affinity: 'web02' must share a host with 'db01', which runs on 'kvm03'
 *     network 'lan' missing on host | network 'lan' not active on host
 *       (one sentence per such network of the demand, in its order)
 *   Reasons that would not fit the buffer are dropped whole and "; ..." ends
 *   the text. Built only for hosts that rate 0. */
typedef struct {
        size_t host_index;
        double rating;
        int half_stars;
        unsigned why;
        char reason[PLACE_REASON_MAX];
} PlaceRating;

/* Rates demand d against hosts[0..n_hosts) under policy p, writing
 * ret_ratings[i] for hosts[i] (caller-allocated, n_hosts entries; untouched on
 * error). hosts may be NULL when n_hosts is 0. The hosts, the demand's rule
 * arrays and the policy are only read.
 * Returns the number of hosts that can take the VM (rating > 0), or -EINVAL
 * when d or p is NULL, a demand or weight is negative, NaN or infinite, no
 * weight is positive, the goal is unknown, a rule or network array is NULL
 * with a non-zero count, or n_hosts > INT_MAX. Per-host bad figures are not an
 * error: that host rates 0 with a reason. Time O(n_hosts x (1 + affinity
 * groups) + members x rule groups); no allocation unless the VM is in more
 * than 16 affinity groups. */
int place_rate_hosts(const PlaceHost *hosts, size_t n_hosts, const PlaceDemand *d,
                     const PlacePolicy *p, PlaceRating *ret_ratings) _warn_unused_result_;

/* Index of the host with the highest rating, the lowest index among equals;
 * -1 when n is 0 or every rating is 0 (the reasons then say why). */
ssize_t place_best(const PlaceRating *ratings, size_t n);

/* Fills ret_order (caller-allocated, n entries) with the indices of ratings
 * best first: by rating descending, then host_index ascending. Deterministic. */
void place_order(const PlaceRating *ratings, size_t n, size_t *ret_order);

/* ---- rating many times: the prepared table ----
 * The same rating as place_rate_hosts(), bit for bit, split in two: what
 * depends only on the hosts is computed once (place_table_new()), so each
 * place_table_rate() is one pass over a compact record per host and writes
 * a 16-byte PlaceScore; the reason of a host that rates 0 is written only
 * when asked (place_table_reason()). For a caller that rates the same hosts
 * for many demands, or that needs the reasons of few hosts. */

typedef struct PlaceTable PlaceTable;

/* The rating of host i: as PlaceRating without the reason. */
typedef struct {
        double rating;
        unsigned why;
        int half_stars;
} PlaceScore;

/* Prepares hosts[0..n) for rating. The hosts array (and the names and
 * members it points to) is borrowed: keep it alive and unchanged until
 * place_table_free(). 0 and *ret, or -EINVAL for NULL arguments, members
 * or networks NULL with a count, or n > INT_MAX. O(n + members log members). */
int place_table_new(const PlaceHost *hosts, size_t n, PlaceTable **ret) _warn_unused_result_;
/* Frees t; takes NULL; returns NULL. */
PlaceTable *place_table_free(PlaceTable *t);
static inline void place_table_freep(PlaceTable **t) { place_table_free(*t); }
#define _cleanup_place_table_ _cleanup_(place_table_freep)
/* The number of hosts of t. */
size_t place_table_size(const PlaceTable *t);

/* Rates d against t's hosts under p, writing ret_scores[i] for host i
 * (caller-allocated, place_table_size() entries): rating, half_stars and
 * why exactly as place_rate_hosts() computes them. Returns the number of
 * hosts that fit, or -EINVAL as place_rate_hosts(). Allocates nothing
 * unless the VM is in more than 16 affinity groups. */
int place_table_rate(const PlaceTable *t, const PlaceDemand *d, const PlacePolicy *p,
                     PlaceScore *ret_scores) _warn_unused_result_;

/* Writes the reason of host i for d, given its why from place_table_rate(),
 * into ret: the text place_rate_hosts() writes into PlaceRating.reason ("" when
 * why is 0). */
void place_table_reason(const PlaceTable *t, size_t i, const PlaceDemand *d, unsigned why, char ret[PLACE_REASON_MAX]);

/* place_best() and place_order() over scores. */
ssize_t place_score_best(const PlaceScore *scores, size_t n);
void place_score_order(const PlaceScore *scores, size_t n, size_t *ret_order);

/* ---- consolidation (P2V assessment) ---- */

/* One physical server's measured demand (a high percentile over a window),
 * units as PlaceResource. */
typedef struct {
        double demand[PLACE_R__COUNT];
} PlaceServer;

/* The host every server is packed onto: capacity and the reserve to keep. */
typedef struct {
        double cap[PLACE_R__COUNT];
        PlaceReserve reserve;
} PlaceHostModel;

typedef struct {
        size_t n_hosts;         /* hosts the plan uses */
        /* max over resources of ceil(sum of demand / usable capacity) over the
         * placeable servers (at least 1 when any is placeable): no plan can use
         * fewer hosts. */
        size_t lower_bound;
        size_t n_unplaceable;   /* servers too big for an empty host */
} PlaceConsolidation;

/* Packs servers[0..n) onto identical hosts of the given model, using as few
 * as it can (multi-dimensional bin packing; a heuristic, see place.c). Writes
 * ret_host_of[i] = the host number (0..n_hosts-1) of server i, or -1 when
 * server i does not fit an empty host on its own (it is then left out of the
 * plan and of the lower bound); and the summary to *ret. Usable capacity is
 * cap minus the reserve; every host of the plan holds at most its usable
 * capacity in every resource (up to floating-point rounding of the sums).
 * ret_host_of is caller-allocated with n entries. Deterministic.
 * Returns 0, or -EINVAL for NULL arguments or negative/NaN/infinite figures
 * (outputs untouched). Aborts on out-of-memory like xmalloc(). */
int place_consolidate(const PlaceServer *servers, size_t n, const PlaceHostModel *model,
                      ssize_t *ret_host_of, PlaceConsolidation *ret) _warn_unused_result_;
