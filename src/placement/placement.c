/* The placement glue (placement.h): builds the pure engine's host arrays
 * (src/place) from the database and answers which hosts could take a VM.
 * A rating runs in phases: the inputs (kept in memory, see "the live inputs"),
 * the rule members, the engine hosts, the policy, then the engine's table;
 * reasons are written only for hosts that rate 0.
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
 * the request's goal overriding. Rules map to engine rule groups by rule id.
 * Networks: the VM's cards need their networks on the host. The demand's
 * networks (PlacementDemand.networks) and, for a VM that exists, those its
 * cards use (vm_nic) go to the engine when Armada manages them (the network
 * table): a host has such a network as its record says (network_host
 * "active", or "failed": there but not active; no record or "missing": not
 * there). A network Armada does not manage (a host's own libvirt "default")
 * constrains nothing: nothing says which hosts have it. These few rows are
 * read per rating, not kept with the inputs. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "placement.h"
#include "place/place.h"
#include "store/store-network.h"
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

/* What placement reads from the store for one rating: every group's
 * policy, the hosts of the group's subtree with their use (without the VM
 * being placed), the cluster members and the rule members. */
typedef struct {
        StoreGroupPolicy *pol;
        size_t npol;
        StorePlaceHost *sh;             /* ordered by id */
        size_t n;
        StorePlaceClusterMember *cm;    /* ordered by cluster, host */
        size_t ncm;
        StorePlaceRuleMember *rm;
        size_t nrm;
} Inputs;

static void inputs_done(Inputs *in) {
        free(in->pol);
        free(in->sh);
        free(in->cm);
        free(in->rm);
        *in = (Inputs) {0};
}

/* Reads the inputs of group_id's subtree for a VM vm_id (0: a new one):
 * 0, -ENOENT when there is no such group, or another negative code. */
static int inputs_load(Store *st, int64_t group_id, int64_t vm_id, Inputs *ret) {
        Inputs in = {0};
        int r = store_policy_all(st, &in.pol);
        if (r < 0)
                return r;
        in.npol = (size_t) r;
        bool group_found = false;
        for (size_t i = 0; i < in.npol; i++)
                group_found = group_found || in.pol[i].group_id == group_id;
        if (!group_found) {
                inputs_done(&in);
                return -ENOENT;
        }
        if ((r = store_place_hosts(st, group_id, vm_id, &in.sh)) < 0)
                goto fail;
        in.n = (size_t) r;
        if ((r = store_place_cluster_members(st, vm_id, &in.cm)) < 0)
                goto fail;
        in.ncm = (size_t) r;
        if ((r = store_place_rule_members(st, &in.rm)) < 0)
                goto fail;
        in.nrm = (size_t) r;
        *ret = in;
        return 0;
fail:
        inputs_done(&in);
        return r;
}

/* Fills failover[i] for hosts[i] from every cluster's members. */
static void failover_reserves(const Inputs *in, double *failover) {
        const StorePlaceClusterMember *m = in->cm;
        size_t nm = in->ncm;
        _cleanup_free_ uint64_t *ha = xcalloc(nm + 1, sizeof *ha);
        for (size_t a = 0; a < nm;) {
                size_t b = a;
                while (b < nm && m[b].cluster_id == m[a].cluster_id)
                        b++;
                /* Only members that are up take part. A member that is down
                 * (failed, fenced, unreachable) is a failure happening now:
                 * its VMs are being restarted into this very reserve, so it
                 * uses up one of the k tolerated failures. A member in
                 * maintenance is simply out of the cluster for now. */
                int members = 0, k = m[a].tolerate > 0 ? m[a].tolerate : 0;
                for (size_t i = a; i < b; i++) {
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
                for (size_t i = a; i < b; i++) {
                        ssize_t x = host_index(in->sh, in->n, m[i].host_id);
                        if (x >= 0 && streq(m[i].host_state, "ok"))
                                failover[x] = reserve;
                }
                a = b;
        }
}

/* ---- the live inputs ----
 * Reading the inputs whole is most of a rating's cost (at 1,000 hosts
 * tens of milliseconds, against tens of microseconds for the engine). So
 * placement keeps every host's inputs in memory (Live.base: all hosts, no
 * VM left out, with policies, cluster members and rule members) together
 * with the store's placement sequence they reflect (store_place_seq()).
 * A rating reads the sequence (one row); when it moved, only what the
 * store noted since (store_place_changed_keys(): the hosts a change
 * touched, hosts whose usage changed, the small global tables) is read
 * and patched into a new base (the patch: O(changed rows) of SQL and a
 * copy of the host array), never the whole estate. Writers that change
 * much at once (the monitor's round) call placement_refresh() so the
 * patch happens on their thread, not on a request.
 *
 * Bases are immutable and refcounted, so ratings share them without
 * copying. Inside a transaction the patch is the transaction's own view,
 * which may yet roll back: it is used for that rating only, never kept.
 * The sequence is read before the changes, so a base is never older than
 * its sequence (it may hold a row fresher than that, which the next patch
 * reads again). A rating for a VM already placed re-reads only its own
 * host and its reservation's host without it, and the cluster members
 * (its HA memory). */

typedef struct {
        unsigned refs;                  /* atomic */
        int64_t seq;
        Inputs in;                      /* every host, ordered by id; no VM left out */
} Base;

typedef struct {
        pthread_mutex_t lock;           /* guards base and the counters */
        pthread_mutex_t patch;          /* one patch of the shared base at a time */
        Base *base;
        uint64_t hits, misses;
} Live;

static Base *base_ref(Base *b) {
        if (b)
                __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
        return b;
}

static void base_unref(Base *b) {
        if (!b || __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) > 0)
                return;
        inputs_done(&b->in);
        free(b);
}

static void *live_new(void) {
        Live *k = xcalloc(1, sizeof *k);
        pthread_mutex_init(&k->lock, NULL);
        pthread_mutex_init(&k->patch, NULL);
        return k;
}

static void live_free(void *p) {
        Live *k = p;
        base_unref(k->base);
        pthread_mutex_destroy(&k->lock);
        pthread_mutex_destroy(&k->patch);
        free(k);
}

static Live *live_of(Store *st) {
        return store_clientdata(st, "placement.inputs", live_new, live_free);
}

static Base *live_base(Live *k) {
        pthread_mutex_lock(&k->lock);
        Base *b = base_ref(k->base);
        pthread_mutex_unlock(&k->lock);
        return b;
}

static void live_count(Live *k, bool hit) {
        pthread_mutex_lock(&k->lock);
        if (hit)
                k->hits++;
        else
                k->misses++;
        pthread_mutex_unlock(&k->lock);
}

static void *memdup0(const void *p, size_t n, size_t size) {
        void *q = xcalloc(n + 1, size);
        if (n)
                memcpy(q, p, n * size);
        return q;
}

static bool keys_has(const int64_t *keys, size_t n, int64_t key) {
        size_t lo = 0, hi = n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (keys[mid] == key)
                        return true;
                if (keys[mid] < key)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return false;
}

/* A whole base read from the store (the start, or no base yet). */
static int base_load(Store *st, Base **ret) {
        Base *b = xcalloc(1, sizeof *b);
        int r = store_place_seq(st, &b->seq);
        if (r >= 0)
                r = inputs_load(st, STORE_ROOT_GROUP_ID, 0, &b->in);
        if (r < 0) {
                free(b);
                return r;
        }
        b->refs = 1;
        *ret = b;
        return 0;
}

/* The hosts of old (ordered by id) with those noted in keys replaced by
 * rows (ordered by id; a noted host without a row is gone). */
static StorePlaceHost *hosts_merge(const Inputs *old, const int64_t *keys, size_t nk, const StorePlaceHost *rows, size_t nr,
                                   size_t *ret_n) {
        StorePlaceHost *out = xcalloc(old->n + nr + 1, sizeof *out);
        size_t i = 0, j = 0, n = 0;
        while (i < old->n || j < nr) {
                if (j == nr || (i < old->n && old->sh[i].id < rows[j].id)) {
                        if (!keys_has(keys, nk, old->sh[i].id))
                                out[n++] = old->sh[i];
                        i++;
                } else {
                        if (i < old->n && old->sh[i].id == rows[j].id)
                                i++;
                        out[n++] = rows[j++];
                }
        }
        *ret_n = n;
        return out;
}

/* One global table: read again when its key was noted, else copied. */
#define GLOBAL(key, field, nfield, read) do { \
                if (r >= 0 && keys_has(keys, (size_t) nk, key)) { \
                        r = (read); \
                        if (r >= 0) \
                                in.nfield = (size_t) r; \
                } else if (r >= 0) { \
                        in.field = memdup0(old->in.field, old->in.nfield, sizeof *in.field); \
                        in.nfield = old->in.nfield; \
                } \
        } while (0)

/* old brought up to the store's present: what was noted since old->seq.
 * 0 and a new base in *ret, or negative. */
static int base_patch(Store *st, const Base *old, Base **ret) {
        _cleanup_free_ int64_t *keys = NULL;
        _cleanup_free_ StorePlaceHost *rows = NULL;
        _cleanup_free_ StorePlaceUsage *usage = NULL;
        int64_t seq;
        int r = store_place_seq(st, &seq);
        if (r < 0)
                return r;
        int nk = store_place_changed_keys(st, old->seq, &keys);
        int nr = nk < 0 ? nk : store_place_hosts_changed(st, old->seq, &rows);
        int nu = nr < 0 ? nr : store_place_usage_changed(st, old->seq, &usage);
        if (nu < 0)
                return nu;
        Inputs in = {0};
        in.sh = hosts_merge(&old->in, keys, (size_t) nk, rows, (size_t) nr, &in.n);
        for (int u = 0; u < nu; u++) {
                ssize_t x = host_index(in.sh, in.n, usage[u].host_id);
                if (x < 0)
                        continue;
                StorePlaceHost *h = &in.sh[x];
                h->usage_at = usage[u].usage_at ;
                h->cpu_pct = usage[u].cpu_pct;
                h->memory_used_mib = usage[u].memory_used_mib;
                h->disk_io_pct = usage[u].disk_io_pct;
                h->network_pct = usage[u].network_pct;
        }
        GLOBAL(STORE_PLACE_KEY_GROUPS, pol, npol, store_policy_all(st, &in.pol));
        GLOBAL(STORE_PLACE_KEY_CLUSTERS, cm, ncm, store_place_cluster_members(st, 0, &in.cm));
        GLOBAL(STORE_PLACE_KEY_RULES, rm, nrm, store_place_rule_members(st, &in.rm));
        if (r < 0) {
                inputs_done(&in);
                return r;
        }
        Base *b = xcalloc(1, sizeof *b);
        b->refs = 1;
        b->seq = seq;
        b->in = in;
        *ret = b;
        return 0;
}
#undef GLOBAL

/* Brings the shared base up to the store's committed present (outside a
 * transaction only): 0 or negative. */
static int live_catch_up(Store *st, Live *k) {
        pthread_mutex_lock(&k->patch);
        Base *old = live_base(k), *b = NULL;
        int64_t seq = -1;
        int r = old ? store_place_seq(st, &seq) : 0;
        if (r >= 0 && old && old->seq == seq) {
                /* another thread patched it meanwhile */
        } else if (r >= 0) {
                r = old ? base_patch(st, old, &b) : base_load(st, &b);
                if (r >= 0) {
                        pthread_mutex_lock(&k->lock);
                        base_unref(k->base);
                        k->base = b;
                        k->misses++;
                        pthread_mutex_unlock(&k->lock);
                }
        }
        base_unref(old);
        pthread_mutex_unlock(&k->patch);
        return r;
}

int placement_refresh(Store *st) {
        Live *k = live_of(st);
        if (!k || store_in_transaction(st))
                return 0;
        return live_catch_up(st, k);
}

/* Whether group_id is in the subtree of root (pol: every group). */
static bool group_under(const Inputs *in, int64_t group_id, int64_t root) {
        return root == STORE_ROOT_GROUP_ID || group_in_scope(in->pol, in->npol, group_id, &root, 1);
}

/* The inputs a rating of (group_id, vm_id) reads, from all (every host,
 * no VM left out): the hosts of group_id's subtree; for a placed VM, its
 * hosts re-read without it and the cluster members without it. 0 and a
 * private copy in *ret, or negative (-ENOENT: no such group). */
static int inputs_narrow(Store *st, const Inputs *all, int64_t group_id, int64_t vm_id, Inputs *ret) {
        Inputs in = {0};
        _cleanup_free_ StorePlaceHost *own = NULL;
        int no = 0;
        if (vm_id > 0 && (no = store_place_hosts_of_vm(st, vm_id, &own)) < 0)
                return no;
        in.pol = memdup0(all->pol, all->npol, sizeof *in.pol);
        in.npol = all->npol;
        in.rm = memdup0(all->rm, all->nrm, sizeof *in.rm);
        in.nrm = all->nrm;
        in.sh = xcalloc(all->n + 1, sizeof *in.sh);
        for (size_t i = 0; i < all->n; i++)
                if (group_under(all, all->sh[i].group_id, group_id))
                        in.sh[in.n++] = all->sh[i];
        for (int j = 0; j < no; j++) {
                ssize_t x = host_index(in.sh, in.n, own[j].id);
                if (x >= 0)
                        in.sh[x] = own[j];
        }
        int r = 0;
        if (vm_id > 0) {
                r = store_place_cluster_members(st, vm_id, &in.cm);
                if (r >= 0)
                        in.ncm = (size_t) r;
        } else {
                in.cm = memdup0(all->cm, all->ncm, sizeof *in.cm);
                in.ncm = all->ncm;
        }
        if (r < 0) {
                inputs_done(&in);
                return r;
        }
        *ret = in;
        return 0;
}

static bool group_known(const Inputs *in, int64_t group_id) {
        for (size_t i = 0; i < in->npol; i++)
                if (in->pol[i].group_id == group_id)
                        return true;
        return false;
}

/* What one rating reads: the shared base as it is, or a private copy. */
typedef struct {
        Base *base;                     /* a reference, or NULL */
        Inputs own;                     /* when in points here */
        const Inputs *in;
} Held;

static void held_done(Held *h) {
        base_unref(h->base);
        inputs_done(&h->own);
        *h = (Held) {0};
}

/* The inputs of (group_id, vm_id) as this connection sees the store now:
 * 0 with *ret filled (give back with held_done()), or negative (-ENOENT:
 * no such group). */
static int inputs_get(Store *st, int64_t group_id, int64_t vm_id, Held *ret) {
        Live *k = live_of(st);
        Held h = {0};
        int64_t seq = -1;
        int r = store_place_seq(st, &seq);
        if (r < 0)
                return r;
        bool in_tx = store_in_transaction(st);
        h.base = k ? live_base(k) : NULL;
        bool hit = h.base && h.base->seq == seq;
        if (k && !hit && !in_tx) {
                base_unref(h.base);
                if ((r = live_catch_up(st, k)) < 0)
                        return r;
                h.base = live_base(k);
        } else if (k)
                live_count(k, hit);
        /* What this view sees differs from the base (a transaction's own
         * changes, or no base at all): for this rating only. */
        if (!h.base || (in_tx && h.base->seq != seq)) {
                Base *b = NULL;
                r = h.base ? base_patch(st, h.base, &b) : base_load(st, &b);
                base_unref(h.base);
                if (r < 0)
                        return r;
                h.base = b;
        }
        if (!group_known(&h.base->in, group_id)) {
                held_done(&h);
                return -ENOENT;
        }
        if (group_id == STORE_ROOT_GROUP_ID && vm_id <= 0) {
                h.in = &h.base->in;
        } else {
                r = inputs_narrow(st, &h.base->in, group_id, vm_id, &h.own);
                base_unref(h.base);
                h.base = NULL;
                if (r < 0)
                        return r;
        }
        *ret = h;
        if (!ret->base)
                ret->in = &ret->own;
        return 0;
}

void placement_cache_stats(Store *st, uint64_t *ret_hits, uint64_t *ret_misses) {
        Live *k = live_of(st);
        *ret_hits = *ret_misses = 0;
        if (!k)
                return;
        pthread_mutex_lock(&k->lock);
        *ret_hits = k->hits;
        *ret_misses = k->misses;
        pthread_mutex_unlock(&k->lock);
}

static bool same_d(double a, double b) {
        return (isnan(a) && isnan(b)) || a == b;
}

static bool same_host(const StorePlaceHost *a, const StorePlaceHost *b) {
        return a->id == b->id && streq(a->name, b->name) && a->group_id == b->group_id && streq(a->state, b->state) &&
               a->cpus == b->cpus && a->memory_mib == b->memory_mib && a->usage_at == b->usage_at &&
               same_d(a->cpu_pct, b->cpu_pct) && same_d(a->memory_used_mib, b->memory_used_mib) &&
               same_d(a->disk_io_pct, b->disk_io_pct) && same_d(a->network_pct, b->network_pct) &&
               a->has_pool == b->has_pool && a->pool_capacity_bytes == b->pool_capacity_bytes &&
               a->pool_available_bytes == b->pool_available_bytes && a->alloc_cpus == b->alloc_cpus &&
               a->alloc_memory_mib == b->alloc_memory_mib && a->creating_cpus == b->creating_cpus &&
               a->creating_memory_mib == b->creating_memory_mib && a->alloc_disk_bytes == b->alloc_disk_bytes &&
               a->reserved_cpus == b->reserved_cpus && a->reserved_memory_mib == b->reserved_memory_mib &&
               a->reserved_disk_bytes == b->reserved_disk_bytes;
}

static bool same_policy(const StoreGroupPolicy *a, const StoreGroupPolicy *b) {
        if (a->group_id != b->group_id || a->parent_id != b->parent_id || !streq(a->goal, b->goal))
                return false;
        for (int f = 0; f < STORE_POLICY__COUNT; f++)
                if (a->set[f] != b->set[f] || (a->set[f] && a->value[f] != b->value[f]))
                        return false;
        return true;
}

static bool same_member(const StorePlaceClusterMember *a, const StorePlaceClusterMember *b) {
        return a->cluster_id == b->cluster_id && a->tolerate == b->tolerate && a->host_id == b->host_id &&
               streq(a->host_state, b->host_state) && a->ha_memory_mib == b->ha_memory_mib;
}

static bool same_rule(const StorePlaceRuleMember *a, const StorePlaceRuleMember *b) {
        return a->rule_id == b->rule_id && streq(a->kind, b->kind) && a->vm_id == b->vm_id && streq(a->vm_name, b->vm_name) &&
               a->host_id == b->host_id;
}

/* The first difference between a (in memory) and b (read whole), or NULL. */
static const char *inputs_diff(const Inputs *a, const Inputs *b, char *buf, size_t size) {
        if (a->n != b->n) {
                snprintf(buf, size, "%zu hosts in memory, %zu in the store", a->n, b->n);
                return buf;
        }
        for (size_t i = 0; i < b->n; i++)
                if (!same_host(&a->sh[i], &b->sh[i])) {
                        snprintf(buf, size, "host %" PRIi64 " ('%s') differs", b->sh[i].id, b->sh[i].name);
                        return buf;
                }
        bool pol = a->npol == b->npol, cm = a->ncm == b->ncm, rm = a->nrm == b->nrm;
        for (size_t i = 0; pol && i < b->npol; i++)
                pol = same_policy(&a->pol[i], &b->pol[i]);
        for (size_t i = 0; cm && i < b->ncm; i++)
                cm = same_member(&a->cm[i], &b->cm[i]);
        for (size_t i = 0; rm && i < b->nrm; i++)
                rm = same_rule(&a->rm[i], &b->rm[i]);
        return !pol ? "policies differ" : !cm ? "cluster members differ" : !rm ? "rule members differ" : NULL;
}

int placement_inputs_verify(Store *st, char *why, size_t why_size) {
        int r = placement_refresh(st);
        if (r < 0)
                return r;
        Live *k = live_of(st);
        Base *b = k ? live_base(k) : NULL;
        if (!b) {
                snprintf(why, why_size, "no inputs in memory");
                return -EBADMSG;
        }
        Inputs fresh = {0};
        r = inputs_load(st, STORE_ROOT_GROUP_ID, 0, &fresh);
        if (r >= 0) {
                char buf[160];
                const char *d = inputs_diff(&b->in, &fresh, buf, sizeof buf);
                if (d) {
                        snprintf(why, why_size, "%s", d);
                        r = -EBADMSG;
                }
        }
        inputs_done(&fresh);
        base_unref(b);
        return r;
}

/* One rating in the making: the engine's arrays built from the inputs
 * (pointing into them) and the scores. */
typedef struct {
        Store *st;
        Held held;                      /* in points into it */
        const Inputs *in;
        size_t m;                       /* hosts rated (not skipped) */
        PlaceHost *ph;                  /* m engine hosts */
        size_t *orig;                   /* ph[k] is in.sh[orig[k]] */
        PlaceMember *members;           /* rule members on the hosts, by host */
        int32_t *anti, *aff;            /* the VM's own rule groups */
        PlaceDemand pd;
        PlacePolicy policy;
        PlaceTable *table;
        PlaceScore *sc;                 /* m scores */
        char (*net_names)[64];          /* the managed networks of the demand */
        const char **dnets;             /* pointers into net_names, for pd */
        PlaceNetwork *hnets;            /* every engine host's, one run per host */
} Rating;

static void rating_done(Rating *x) {
        place_table_free(x->table);
        free(x->sc);
        free(x->ph);
        free(x->orig);
        free(x->members);
        free(x->anti);
        free(x->aff);
        free(x->net_names);
        free(x->dnets);
        free(x->hnets);
        held_done(&x->held);
        *x = (Rating) {0};
}

/* Rule members on the rated hosts, grouped by host (first[i]..first[i+1]
 * in x->members for in.sh[i]); and the rules of the VM being placed into
 * x->anti and x->aff (counts in x->pd). */
static void rating_rules(Rating *x, const PlacementDemand *d, size_t *first) {
        const Inputs *in = x->in;
        size_t n = in->n;
        x->members = xcalloc(in->nrm + 1, sizeof *x->members);
        x->anti = xcalloc(in->nrm + 1, sizeof *x->anti);
        x->aff = xcalloc(in->nrm + 1, sizeof *x->aff);
        size_t n_anti = 0, n_aff = 0;
        for (size_t i = 0; i < in->nrm; i++) {
                const StorePlaceRuleMember *rm = &in->rm[i];
                if (rm->rule_id > INT32_MAX)
                        continue;
                if (d->vm_id > 0 && rm->vm_id == d->vm_id) {
                        if (streq(rm->kind, "anti-affinity"))
                                x->anti[n_anti++] = (int32_t) rm->rule_id;
                        else
                                x->aff[n_aff++] = (int32_t) rm->rule_id;
                        continue;
                }
                ssize_t h = host_index(in->sh, n, rm->host_id);
                if (h >= 0)
                        first[h + 1]++;
        }
        for (size_t i = 0; i < n; i++)
                first[i + 1] += first[i];
        _cleanup_free_ size_t *fill = xcalloc(n + 1, sizeof *fill);
        for (size_t i = 0; i < in->nrm; i++) {
                const StorePlaceRuleMember *rm = &in->rm[i];
                if (rm->rule_id > INT32_MAX || (d->vm_id > 0 && rm->vm_id == d->vm_id))
                        continue;
                ssize_t h = host_index(in->sh, n, rm->host_id);
                if (h < 0)
                        continue;
                x->members[first[h] + fill[h]++] = (PlaceMember) { .group = (int32_t) rm->rule_id, .vm_name = rm->vm_name };
        }
        x->pd.anti_affinity = x->anti;
        x->pd.n_anti_affinity = n_anti;
        x->pd.affinity = x->aff;
        x->pd.n_affinity = n_aff;
}

/* The engine host of in.sh[i] (see the top of this file for the units). */
static void engine_host(const Rating *x, size_t i, const PlacementDemand *d, bool disk_known, int64_t now,
                        const double *failover, const size_t *first, PlaceHost *p) {
        const StorePlaceHost *h = &x->in->sh[i];
        StoreEffectivePolicy e;
        store_policy_resolve(x->in->pol, x->in->npol, h->group_id, &e);
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
        p->members = p->n_members ? &x->members[first[i]] : NULL;
}

/* The engine hosts: those in scope and not excluded, in id order. */
static void rating_hosts(Rating *x, const PlacementDemand *d, const size_t *first) {
        const Inputs *in = x->in;
        size_t n = in->n;
        /* Hosts outside the scope are not rated at all: dropped here, they
         * can be neither chosen nor named (an affinity partner there is
         * not seen either). */
        _cleanup_free_ bool *skip = xcalloc(n + 1, sizeof *skip);
        for (size_t i = 0; i < n; i++)
                skip[i] = (d->exclude_host_id && in->sh[i].id == d->exclude_host_id) ||
                          (d->n_scope && !group_in_scope(in->pol, in->npol, in->sh[i].group_id, d->scope, d->n_scope));
        _cleanup_free_ double *failover = xcalloc(n + 1, sizeof *failover);
        failover_reserves(in, failover);

        /* Disk space counts only when every candidate knows its pool. */
        bool disk_known = false;
        for (size_t i = 0; i < n; i++) {
                if (skip[i])
                        continue;
                if (!in->sh[i].has_pool) {
                        disk_known = false;
                        break;
                }
                disk_known = true;
        }
        x->ph = xcalloc(n + 1, sizeof *x->ph);
        x->orig = xcalloc(n + 1, sizeof *x->orig);
        int64_t now = now_ms();
        for (size_t i = 0; i < n; i++) {
                if (skip[i])
                        continue;
                x->orig[x->m] = i;
                engine_host(x, i, d, disk_known, now, failover, first, &x->ph[x->m]);
                x->m++;
        }
        x->pd.vm_name = d->vm_name;
        x->pd.demand[PLACE_R_CPU] = (double) d->cpus * 100.0;
        x->pd.demand[PLACE_R_MEMORY] = (double) d->memory_mib;
        x->pd.demand[PLACE_R_DISK] = disk_known ? (double) d->disk_bytes / GIB : 0;
}

/* Keeps network name for the demand when Armada manages it and is not
 * kept yet: its per-host records into states[*k]. 0 or negative. */
static int network_keep(Rating *x, const char *name, StoreNetworkOnHost **states, int *n_states, size_t *k) {
        for (size_t j = 0; j < *k; j++)
                if (streq(x->net_names[j], name))
                        return 0;
        StoreNetworkOnHost *rows = NULL;
        int r = store_network_states(x->st, name, &rows);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        snprintf(x->net_names[*k], sizeof x->net_names[*k], "%s", name);
        x->dnets[*k] = x->net_names[*k];
        states[*k] = rows;
        n_states[*k] = r;
        (*k)++;
        return 0;
}

/* The networks phase (see the top of this file): the demand's managed
 * networks into x->pd, and on every engine host those of them it has
 * into x->hosts' networks. Nothing is read when the demand names no
 * network and the VM is new. 0 or negative. */
static int rating_networks(Rating *x, const PlacementDemand *d) {
        _cleanup_free_ char (*vm_nets)[64] = NULL;
        int nv = 0;
        if (d->vm_id > 0 && (nv = store_vm_nic_networks(x->st, d->vm_id, &vm_nets)) < 0)
                return nv;
        size_t total = d->n_networks + (size_t) nv;
        if (total == 0)
                return 0;
        x->net_names = xcalloc(total, sizeof *x->net_names);
        x->dnets = xcalloc(total, sizeof *x->dnets);
        _cleanup_free_ StoreNetworkOnHost **states = xcalloc(total, sizeof *states);
        _cleanup_free_ int *n_states = xcalloc(total, sizeof *n_states);
        size_t k = 0;
        int r = 0;
        for (size_t i = 0; r >= 0 && i < d->n_networks; i++)
                if (d->networks[i])
                        r = network_keep(x, d->networks[i], states, n_states, &k);
        for (int i = 0; r >= 0 && i < nv; i++)
                r = network_keep(x, vm_nets[i], states, n_states, &k);
        if (r >= 0 && k > 0) {
                /* per engine host, its records: counted, then filled */
                const Inputs *in = x->in;
                _cleanup_free_ ssize_t *eng = xcalloc(in->n + 1, sizeof *eng);
                for (size_t i = 0; i < in->n; i++)
                        eng[i] = -1;
                for (size_t e = 0; e < x->m; e++)
                        eng[x->orig[e]] = (ssize_t) e;
                _cleanup_free_ size_t *first = xcalloc(x->m + 1, sizeof *first), *fill = xcalloc(x->m + 1, sizeof *fill);
                size_t n_all = 0;
                for (size_t j = 0; j < k; j++)
                        for (int q = 0; q < n_states[j]; q++) {
                                ssize_t h = host_index(in->sh, in->n, states[j][q].host_id);
                                if (h >= 0 && eng[h] >= 0) {
                                        first[eng[h] + 1]++;
                                        n_all++;
                                }
                        }
                for (size_t e = 0; e < x->m; e++)
                        first[e + 1] += first[e];
                x->hnets = xcalloc(n_all + 1, sizeof *x->hnets);
                for (size_t j = 0; j < k; j++)
                        for (int q = 0; q < n_states[j]; q++) {
                                ssize_t h = host_index(in->sh, in->n, states[j][q].host_id);
                                if (h < 0 || eng[h] < 0)
                                        continue;
                                size_t e = (size_t) eng[h];
                                x->hnets[first[e] + fill[e]++] = (PlaceNetwork) { .name = x->net_names[j],
                                                                                  .active = states[j][q].active };
                        }
                for (size_t e = 0; e < x->m; e++) {
                        x->ph[e].n_networks = first[e + 1] - first[e];
                        x->ph[e].networks = x->ph[e].n_networks ? &x->hnets[first[e]] : NULL;
                }
                x->pd.networks = x->dnets;
                x->pd.n_networks = k;
        }
        for (size_t j = 0; j < k; j++)
                free(states[j]);
        return r < 0 ? r : 0;
}

/* Goal and weights: the effective policy of the group placement runs in,
 * the request's goal overriding. */
static void rating_policy(Rating *x, int64_t group_id, const PlacementDemand *d, PlaceGoal goal_override) {
        StoreEffectivePolicy ge;
        store_policy_resolve(x->in->pol, x->in->npol, group_id, &ge);
        PlaceGoal goal;
        if (d->goal)
                goal = goal_override;
        else if (parse_goal(ge.goal, &goal) < 0)
                goal = PLACE_GOAL_LOAD_BALANCING;
        x->policy = (PlacePolicy) { .goal = goal };
        for (int k = 0; k < PLACE_R__COUNT; k++)
                x->policy.weight[k] = ge.value[STORE_POLICY_W_CPU + k];
        bool any_weight = false;
        for (int k = 0; k < PLACE_R__COUNT; k++)
                any_weight = any_weight || x->policy.weight[k] > 0;
        if (!any_weight)
                place_policy_default(goal, &x->policy);
}

/* Gathers the inputs and rates every host for d: 0 with *x filled (free
 * with rating_done()), or negative with nothing to free. */
static int rating_run(Store *st, int64_t group_id, const PlacementDemand *d, Rating *x) {
        if (!st || !d || (d->n_pending && !d->pending) || (d->n_scope && !d->scope) || (d->n_networks && !d->networks))
                return -EINVAL;
        PlaceGoal goal_override = PLACE_GOAL_LOAD_BALANCING;
        if (d->goal && parse_goal(d->goal, &goal_override) < 0)
                return -EINVAL;
        if (group_id <= 0)
                group_id = STORE_ROOT_GROUP_ID;
        *x = (Rating) { .st = st };
        int r = inputs_get(st, group_id, d->vm_id, &x->held);
        if (r < 0)
                return r;
        x->in = x->held.in;
        _cleanup_free_ size_t *first = xcalloc(x->in->n + 1, sizeof *first);
        rating_rules(x, d, first);
        rating_hosts(x, d, first);
        rating_policy(x, group_id, d, goal_override);
        x->sc = xcalloc(x->m + 1, sizeof *x->sc);
        r = rating_networks(x, d);
        if (r >= 0)
                r = place_table_new(x->ph, x->m, &x->table);
        if (r >= 0)
                r = place_table_rate(x->table, &x->pd, &x->policy, x->sc);
        if (r < 0) {
                rating_done(x);
                return r;
        }
        return 0;
}

/* The rating of engine host k in the glue's terms; the reason is written
 * only for a host that rates 0. */
static void rating_out(const Rating *x, size_t k, PlacementRating *out) {
        const StorePlaceHost *h = &x->in->sh[x->orig[k]];
        const PlaceScore *s = &x->sc[k];
        out->host_id = h->id;
        snprintf(out->host_name, sizeof out->host_name, "%s", h->name);
        out->rating = s->rating;
        out->stars = s->half_stars / 2.0;
        out->why = s->rating > 0 ? 0 : s->why;
        if (s->rating > 0)
                out->reason[0] = 0;
        else
                place_table_reason(x->table, k, &x->pd, s->why, out->reason);
}

int placement_rate_top(Store *st, int64_t group_id, const PlacementDemand *d, size_t max, PlacementRating **ret,
                       size_t *ret_total) {
        if (!ret)
                return -EINVAL;
        Rating x;
        int r = rating_run(st, group_id, d, &x);
        if (r < 0)
                return r;
        _cleanup_free_ size_t *order = xcalloc(x.m + 1, sizeof *order);
        place_score_order(x.sc, x.m, order);
        size_t m = x.m < max ? x.m : max;
        /* Only the rows asked for are written (a row is ~0.5 KB with its
         * reason: 10,000 of them were most of a request's cost). */
        PlacementRating *out = xcalloc(m + 1, sizeof *out);
        for (size_t k = 0; k < m; k++)
                rating_out(&x, order[k], &out[k]);
        if (ret_total)
                *ret_total = x.m;
        rating_done(&x);
        *ret = out;
        return (int) m;
}

int placement_rate(Store *st, int64_t group_id, const PlacementDemand *d, PlacementRating **ret) {
        return placement_rate_top(st, group_id, d, SIZE_MAX, ret, NULL);
}

int placement_choose(Store *st, int64_t group_id, const PlacementDemand *d, int64_t *ret_host_id, char *why, size_t why_size) {
        Rating x;
        int r = rating_run(st, group_id, d, &x);
        if (r < 0)
                return r;
        /* Only the best is needed: no sort. When none fits every rating
         * is 0, and best first is id order, which the hosts are in. */
        ssize_t best = place_score_best(x.sc, x.m);
        if (best >= 0) {
                *ret_host_id = x.in->sh[x.orig[best]].id;
                rating_done(&x);
                return 0;
        }
        if (why && why_size > 0) {
                StrBuf b = {0};
                if (x.m == 0)
                        strbuf_append(&b, "there is no host to choose from");
                for (size_t k = 0; k < x.m && b.len < why_size; k++) {
                        char reason[PLACE_REASON_MAX];
                        place_table_reason(x.table, k, &x.pd, x.sc[k].why, reason);
                        strbuf_printf(&b, "%shost '%s': %s", k ? "; " : "", x.in->sh[x.orig[k]].name, reason);
                }
                snprintf(why, why_size, "%s", b.s ? b.s : "");
                if (b.len >= why_size && why_size > 4)
                        memcpy(why + why_size - 4, "...", 4);
                strbuf_free(&b);
        }
        rating_done(&x);
        return -ENOSPC;
}

int placement_lock(Store *st) {
        /* the base brought up to date first, so the rating inside reads
         * at most the few changes that land meanwhile */
        (void) placement_refresh(st);
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
