/* The placement glue (placement.h): builds the pure engine's host arrays
 * (src/place) from the database and answers which hosts could take a VM.
 *
 * Per host, in the engine's units (place.h):
 *   capacity  CPU = logical CPUs x 100; memory = physical MiB; disk space =
 *             the GiB of the host's storage pool (host_pool); disk I/O and
 *             network = 100 (Armada measures them in percent of the host's
 *             capacity, so the reserve percentages apply directly).
 *   used      measured when host_usage holds a sample younger than
 *             USAGE_FRESH_MS: cpu_pct of the CPU, memory_used_mib, disk_io_pct,
 *             network_pct, plus the vCPUs and memory of VMs still being created
 *             (not in a sample yet). Otherwise the allocations of the VMs the
 *             database places on the host: vCPUs x 100 and memory of VMs in an
 *             active state (running, paused, creating, shutting-down,
 *             suspended, unknown); disk I/O and network 0. Disk space used is
 *             the larger of the pool's own figure (capacity - available) and
 *             the virtual size of every disk of the host's VMs (thin disks
 *             can grow to it). Moves in flight add to it: those recorded
 *             in placement_reservation (placement_reserve()) and those the
 *             caller is still planning (PlacementDemand.pending).
 *   reserve   the effective policy of the host's own group (inherited down
 *             the group tree, store_policy_resolve()).
 *   failover  for a cluster member: with tolerate = k and n members that
 *             are up (state ok), the memory of HA VMs (vm_ha, active states)
 *             on the k members with the most HA memory, spread evenly over
 *             the other n - k: each member keeps sum / (n - k) MiB free. A
 *             member that is down (failed, fenced, unreachable) is a failure
 *             in progress: it lowers k by one, so its VMs can restart into the
 *             reserve kept for them. A member in maintenance is left out.
 *             0 when k <= 0 or n <= k (nothing would survive).
 * Disk space is only rated when every candidate reports its pool's
 * capacity; otherwise neither capacity nor demand is given to the engine and
 * the resource is left out of the rating. The VM's demand: vCPUs x 100,
 * memory, disk GiB; 0 disk I/O and network (unknown for a new VM).
 * Goal and weights are the effective policy of the group placement runs in,
 * the request's goal overriding. Rules map to engine rule groups by rule id. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "placement.h"
#include "place/place.h"
#include "store/store-place.h"

#define USAGE_FRESH_MS (120 * 1000)
#define GIB (1024.0 * 1024.0 * 1024.0)

static PlaceHostState engine_state(const char *s) {
        if (streq(s, "ok"))
                return PLACE_HOST_OK;
        if (streq(s, "maintenance"))
                return PLACE_HOST_MAINTENANCE;
        if (streq(s, "unreachable") || streq(s, "connecting") || streq(s, "not-responding"))
                return PLACE_HOST_UNREACHABLE;
        if (streq(s, "failed") || streq(s, "fenced"))
                return PLACE_HOST_FAILED;
        return PLACE_HOST_DISABLED;
}

static int parse_goal(const char *s, PlaceGoal *ret) {
        if (streq(s, "load-balancing"))
                *ret = PLACE_GOAL_LOAD_BALANCING;
        else if (streq(s, "resource-maximization"))
                *ret = PLACE_GOAL_RESOURCE_MAXIMIZATION;
        else
                return -EINVAL;
        return 0;
}

static int cmp_u64_desc(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? 1 : x > y ? -1 : 0;
}

/* Index of host id in hosts[0..n) (ordered by id), or -1. */
static ssize_t host_index(const StorePlaceHost *hosts, size_t n, int64_t id) {
        size_t lo = 0, hi = n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (hosts[mid].id == id)
                        return (ssize_t) mid;
                if (hosts[mid].id < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return -1;
}

/* Whether group_id lies in the subtree of one of scope[0..n) (pol: every
 * group, ordered by id, for the parent links). */
static bool group_in_scope(const StoreGroupPolicy *pol, size_t npol, int64_t group_id, const int64_t *scope, size_t n) {
        for (int depth = 0; group_id > 0 && depth < 1000; depth++) {
                for (size_t i = 0; i < n; i++)
                        if (scope[i] == group_id)
                                return true;
                size_t lo = 0, hi = npol;
                int64_t parent = 0;
                while (lo < hi) {
                        size_t mid = lo + (hi - lo) / 2;
                        if (pol[mid].group_id == group_id) {
                                parent = pol[mid].parent_id;
                                break;
                        }
                        if (pol[mid].group_id < group_id)
                                lo = mid + 1;
                        else
                                hi = mid;
                }
                group_id = parent;
        }
        return false;
}

/* Fills failover[i] for hosts[i] from every cluster's members. */
static int failover_reserves(Store *st, int64_t exclude_vm_id, const StorePlaceHost *hosts, size_t n, double *failover) {
        StorePlaceClusterMember *m = NULL;
        int nm = store_place_cluster_members(st, exclude_vm_id, &m);
        if (nm < 0)
                return nm;
        uint64_t *ha = xcalloc((size_t) nm + 1, sizeof *ha);
        for (int a = 0; a < nm;) {
                int b = a;
                while (b < nm && m[b].cluster_id == m[a].cluster_id)
                        b++;
                /* Only members that are up take part. A member that is down
                 * (failed, fenced, unreachable) is a failure happening now:
                 * its VMs are being restarted into this very reserve, so it
                 * uses up one of the k tolerated failures. A member in
                 * maintenance is simply out of the cluster for now. */
                int members = 0, k = m[a].tolerate > 0 ? m[a].tolerate : 0;
                for (int i = a; i < b; i++) {
                        if (streq(m[i].host_state, "ok"))
                                ha[members++] = m[i].ha_memory_mib;
                        else if (!streq(m[i].host_state, "maintenance"))
                                k--;
                }
                double reserve = 0;
                if (k > 0 && members > k) {
                        qsort(ha, (size_t) members, sizeof *ha, cmp_u64_desc);
                        double sum = 0;
                        for (int i = 0; i < k; i++)
                                sum += (double) ha[i];
                        reserve = sum / (members - k);
                }
                for (int i = a; i < b; i++) {
                        ssize_t x = host_index(hosts, n, m[i].host_id);
                        if (x >= 0 && streq(m[i].host_state, "ok"))
                                failover[x] = reserve;
                }
                a = b;
        }
        free(ha);
        free(m);
        return 0;
}

int placement_rate(Store *st, int64_t group_id, const PlacementDemand *d, PlacementRating **ret) {
        if (!st || !d || !ret || (d->n_pending && !d->pending) || (d->n_scope && !d->scope))
                return -EINVAL;
        PlaceGoal goal_override = PLACE_GOAL_LOAD_BALANCING;
        if (d->goal && parse_goal(d->goal, &goal_override) < 0)
                return -EINVAL;
        if (group_id <= 0)
                group_id = STORE_ROOT_GROUP_ID;

        _cleanup_free_ StoreGroupPolicy *pol = NULL;
        int npol = store_policy_all(st, &pol);
        if (npol < 0)
                return npol;
        bool group_found = false;
        for (int i = 0; i < npol; i++)
                group_found = group_found || pol[i].group_id == group_id;
        if (!group_found)
                return -ENOENT;

        _cleanup_free_ StorePlaceHost *sh = NULL;
        int nh = store_place_hosts(st, group_id, d->vm_id, &sh);
        if (nh < 0)
                return nh;
        size_t n = (size_t) nh;
        /* Hosts outside the scope are not rated at all: dropped here, they
         * can be neither chosen nor named (an affinity partner there is
         * not seen either). */
        _cleanup_free_ bool *skip = xcalloc(n + 1, sizeof *skip);
        for (size_t i = 0; i < n; i++)
                skip[i] = (d->exclude_host_id && sh[i].id == d->exclude_host_id) ||
                          (d->n_scope && !group_in_scope(pol, (size_t) npol, sh[i].group_id, d->scope, d->n_scope));

        _cleanup_free_ double *failover = xcalloc(n + 1, sizeof *failover);
        int r = failover_reserves(st, d->vm_id, sh, n, failover);
        if (r < 0)
                return r;

        /* Rule members on the candidate hosts, grouped by host; and the
         * rules the VM being placed belongs to. */
        _cleanup_free_ StorePlaceRuleMember *rm = NULL;
        int nrm = store_place_rule_members(st, &rm);
        if (nrm < 0)
                return nrm;
        _cleanup_free_ size_t *first = xcalloc(n + 1, sizeof *first);
        _cleanup_free_ PlaceMember *members = xcalloc((size_t) nrm + 1, sizeof *members);
        _cleanup_free_ int32_t *anti = xcalloc((size_t) nrm + 1, sizeof *anti);
        _cleanup_free_ int32_t *aff = xcalloc((size_t) nrm + 1, sizeof *aff);
        size_t n_anti = 0, n_aff = 0;
        for (int i = 0; i < nrm; i++) {
                if (rm[i].rule_id > INT32_MAX)
                        continue;
                if (d->vm_id > 0 && rm[i].vm_id == d->vm_id) {
                        if (streq(rm[i].kind, "anti-affinity"))
                                anti[n_anti++] = (int32_t) rm[i].rule_id;
                        else
                                aff[n_aff++] = (int32_t) rm[i].rule_id;
                        continue;
                }
                ssize_t x = host_index(sh, n, rm[i].host_id);
                if (x >= 0)
                        first[x + 1]++;
        }
        for (size_t i = 0; i < n; i++)
                first[i + 1] += first[i];
        _cleanup_free_ size_t *fill = xcalloc(n + 1, sizeof *fill);
        for (int i = 0; i < nrm; i++) {
                if (rm[i].rule_id > INT32_MAX || (d->vm_id > 0 && rm[i].vm_id == d->vm_id))
                        continue;
                ssize_t x = host_index(sh, n, rm[i].host_id);
                if (x < 0)
                        continue;
                members[first[x] + fill[x]++] = (PlaceMember) { .group = (int32_t) rm[i].rule_id, .vm_name = rm[i].vm_name };
        }

        /* Disk space counts only when every candidate knows its pool. */
        bool disk_known = false;
        for (size_t i = 0; i < n; i++) {
                if (skip[i])
                        continue;
                if (!sh[i].has_pool) {
                        disk_known = false;
                        break;
                }
                disk_known = true;
        }

        _cleanup_free_ PlaceHost *ph = xcalloc(n + 1, sizeof *ph);
        _cleanup_free_ size_t *orig = xcalloc(n + 1, sizeof *orig);
        size_t m = 0;
        int64_t now = now_ms();
        for (size_t i = 0; i < n; i++) {
                const StorePlaceHost *h = &sh[i];
                if (skip[i])
                        continue;
                StoreEffectivePolicy e;
                store_policy_resolve(pol, (size_t) npol, h->group_id, &e);
                PlaceHost *p = &ph[m];
                orig[m++] = i;
                p->id = h->id;
                p->name = h->name;
                p->state = engine_state(h->state);
                p->cap[PLACE_R_CPU] = (double) h->cpus * 100.0;
                p->cap[PLACE_R_MEMORY] = (double) h->memory_mib;
                p->cap[PLACE_R_DISK] = disk_known ? (double) h->pool_capacity_bytes / GIB : 0;
                p->cap[PLACE_R_DISK_IO] = 100;
                p->cap[PLACE_R_NETWORK] = 100;
                bool fresh = h->usage_at > 0 && now - h->usage_at < USAGE_FRESH_MS && now - h->usage_at > -USAGE_FRESH_MS;
                p->used[PLACE_R_CPU] = (fresh && !isnan(h->cpu_pct)
                        ? h->cpu_pct / 100.0 * p->cap[PLACE_R_CPU] + (double) h->creating_cpus * 100.0
                        : (double) h->alloc_cpus * 100.0) + (double) h->reserved_cpus * 100.0;
                p->used[PLACE_R_MEMORY] = (fresh && !isnan(h->memory_used_mib)
                        ? h->memory_used_mib + (double) h->creating_memory_mib
                        : (double) h->alloc_memory_mib) + (double) h->reserved_memory_mib;
                if (disk_known) {
                        double pool_used = h->pool_capacity_bytes > h->pool_available_bytes
                                ? (double) (h->pool_capacity_bytes - h->pool_available_bytes) : 0;
                        double alloc = (double) h->alloc_disk_bytes;
                        p->used[PLACE_R_DISK] = ((pool_used > alloc ? pool_used : alloc) + (double) h->reserved_disk_bytes) / GIB;
                }
                p->used[PLACE_R_DISK_IO] = fresh && !isnan(h->disk_io_pct) ? h->disk_io_pct : 0;
                p->used[PLACE_R_NETWORK] = fresh && !isnan(h->network_pct) ? h->network_pct : 0;
                for (size_t k = 0; k < d->n_pending; k++)
                        if (d->pending[k].host_id == h->id) {
                                p->used[PLACE_R_CPU] += (double) d->pending[k].cpus * 100.0;
                                p->used[PLACE_R_MEMORY] += (double) d->pending[k].memory_mib;
                                if (disk_known)
                                        p->used[PLACE_R_DISK] += (double) d->pending[k].disk_bytes / GIB;
                        }
                p->reserve = (PlaceReserve) {
                        .cpu_pct = e.value[STORE_POLICY_CPU_PCT],
                        .memory_mib = e.value[STORE_POLICY_MEMORY_MIB],
                        .disk_gib = disk_known ? e.value[STORE_POLICY_DISK_GIB] : 0,
                        .disk_io_pct = e.value[STORE_POLICY_DISK_IO_PCT],
                        .network_pct = e.value[STORE_POLICY_NETWORK_PCT],
                };
                p->failover_reserve_mib = failover[i];
                p->n_members = first[i + 1] - first[i];
                p->members = p->n_members ? &members[first[i]] : NULL;
        }

        StoreEffectivePolicy ge;
        store_policy_resolve(pol, (size_t) npol, group_id, &ge);
        PlaceGoal goal;
        if (d->goal)
                goal = goal_override;
        else if (parse_goal(ge.goal, &goal) < 0)
                goal = PLACE_GOAL_LOAD_BALANCING;
        PlacePolicy policy = { .goal = goal };
        for (int k = 0; k < PLACE_R__COUNT; k++)
                policy.weight[k] = ge.value[STORE_POLICY_W_CPU + k];
        bool any_weight = false;
        for (int k = 0; k < PLACE_R__COUNT; k++)
                any_weight = any_weight || policy.weight[k] > 0;
        if (!any_weight)
                place_policy_default(goal, &policy);

        PlaceDemand pd = {
                .vm_name = d->vm_name,
                .anti_affinity = anti, .n_anti_affinity = n_anti,
                .affinity = aff, .n_affinity = n_aff,
        };
        pd.demand[PLACE_R_CPU] = (double) d->cpus * 100.0;
        pd.demand[PLACE_R_MEMORY] = (double) d->memory_mib;
        pd.demand[PLACE_R_DISK] = disk_known ? (double) d->disk_bytes / GIB : 0;

        _cleanup_free_ PlaceRating *pr = xcalloc(m + 1, sizeof *pr);
        r = place_rate_hosts(ph, m, &pd, &policy, pr);
        if (r < 0)
                return r;
        _cleanup_free_ size_t *order = xcalloc(m + 1, sizeof *order);
        place_order(pr, m, order);
        PlacementRating *out = xcalloc(m + 1, sizeof *out);
        for (size_t k = 0; k < m; k++) {
                const PlaceRating *x = &pr[order[k]];
                const StorePlaceHost *h = &sh[orig[x->host_index]];
                out[k].host_id = h->id;
                snprintf(out[k].host_name, sizeof out[k].host_name, "%s", h->name);
                out[k].rating = x->rating;
                out[k].stars = x->half_stars / 2.0;
                snprintf(out[k].reason, sizeof out[k].reason, "%s", x->rating > 0 ? "" : x->reason);
                out[k].why = x->rating > 0 ? 0 : x->why;
        }
        *ret = out;
        return (int) m;
}

int placement_choose(Store *st, int64_t group_id, const PlacementDemand *d, int64_t *ret_host_id, char *why, size_t why_size) {
        PlacementRating *rt = NULL;
        int n = placement_rate(st, group_id, d, &rt);
        if (n < 0)
                return n;
        if (n > 0 && rt[0].rating > 0) {
                *ret_host_id = rt[0].host_id;
                free(rt);
                return 0;
        }
        if (why && why_size > 0) {
                StrBuf b = {0};
                if (n == 0)
                        strbuf_append(&b, "there is no host to choose from");
                for (int i = 0; i < n; i++)
                        strbuf_printf(&b, "%shost '%s': %s", i ? "; " : "", rt[i].host_name, rt[i].reason);
                snprintf(why, why_size, "%s", b.s ? b.s : "");
                if (b.len >= why_size && why_size > 4)
                        memcpy(why + why_size - 4, "...", 4);
                strbuf_free(&b);
        }
        free(rt);
        return -ENOSPC;
}

int placement_lock(Store *st) {
        return store_begin(st);
}

int placement_unlock(Store *st, int r) {
        return store_end(st, r);
}

int placement_reserve(Store *st, const PlacementDemand *d, int64_t host_id) {
        if (!st || !d || d->vm_id <= 0 || host_id <= 0)
                return -EINVAL;
        return store_place_reserve(st, d->vm_id, host_id, d->cpus, d->memory_mib, d->disk_bytes);
}

int placement_release(Store *st, int64_t vm_id, int64_t host_id) {
        return store_place_release(st, vm_id, host_id);
}

int placement_release_all(Store *st) {
        return store_place_release_all(st);
}

int placement_scope_of(Store *st, int64_t owner_id, int64_t fallback_group_id, int64_t **ret) {
        *ret = NULL;
        if (owner_id <= 0)
                return 0;
        StoreUser u;
        int r = store_user_get(st, owner_id, &u);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r == 0 && streq(u.role, "administrator"))
                return 0;
        if (r == 0 && streq(u.role, "delegated-administrator")) {
                int64_t *sc = NULL;
                int n = store_user_scopes(st, owner_id, &sc);
                if (n < 0)
                        return n;
                if (n > 0) {
                        *ret = sc;
                        return n;
                }
                free(sc);
        }
        /* Fail closed: nobody else places beyond the VM's own group. */
        if (fallback_group_id <= 0)
                fallback_group_id = STORE_ROOT_GROUP_ID;
        int64_t *one = xcalloc(1, sizeof *one);
        one[0] = fallback_group_id;
        *ret = one;
        return 1;
}
