/* Intelligent placement (DESIGN.md §4). place_rate_hosts() rates every host
 * for one VM in a single pass over the caller's arrays: per resource it turns
 * capacity, measured use, the group reserve and the demand into percent of the
 * host, checks the hard limits (memory, disk space, the N+1 failover reserve,
 * host state, affinity rules) and scores what is left according to the goal.
 * The pass allocates nothing and formats text only for hosts that rate 0, so
 * rating 100,000 hosts costs little more than reading them. place_consolidate()
 * is the P2V assessment: multi-dimensional bin packing of measured servers
 * onto identical hosts, reported against the simple lower bound. */
#include "place.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A fitting host never rates below this, so that 0 means "cannot go there". */
#define PLACE_RATING_MIN 0.01

/* Stack room for the demand's affinity groups before we fall back to the heap. */
#define AFFINITY_STACK 16

static const char *const resource_names[PLACE_R__COUNT] = {
        [PLACE_R_CPU] = "cpu",
        [PLACE_R_MEMORY] = "memory",
        [PLACE_R_DISK] = "disk space",
        [PLACE_R_DISK_IO] = "disk I/O",
        [PLACE_R_NETWORK] = "network",
};

const char *place_resource_name(PlaceResource r) {
        if ((unsigned) r >= PLACE_R__COUNT)
                return "unknown";
        return resource_names[r];
}

void place_policy_default(PlaceGoal goal, PlacePolicy *ret) {
        *ret = (PlacePolicy) {
                .goal = goal,
                .weight = {
                        [PLACE_R_CPU] = 1.0,
                        [PLACE_R_MEMORY] = 1.0,
                        [PLACE_R_DISK] = 0.5,
                        [PLACE_R_DISK_IO] = 0.5,
                        [PLACE_R_NETWORK] = 0.5,
                },
        };
}

static bool figure_ok(double v) {
        return v >= 0 && v < INFINITY;  /* false for NaN too */
}

/* Where the first running member of one of the demand's affinity groups is. */
typedef struct {
        int32_t group;
        size_t host;                    /* index into hosts */
        const PlaceMember *member;
} AffinityAnchor;

static bool host_runs_group(const PlaceHost *h, int32_t group, const PlaceMember **ret_member) {
        assert(h->members || h->n_members == 0);
        for (size_t k = 0; k < h->n_members; k++)
                if (h->members[k].group == group) {
                        if (ret_member)
                                *ret_member = &h->members[k];
                        return true;
                }
        return false;
}

/* What h has of network name: 0 nothing, 1 the network but not active,
 * 2 the network active. A linear scan: a host has few networks. */
static int host_network(const PlaceHost *h, const char *name) {
        assert(h->networks || h->n_networks == 0);
        for (size_t k = 0; k < h->n_networks; k++)
                if (streq(h->networks[k].name, name))
                        return h->networks[k].active ? 2 : 1;
        return 0;
}

/* Whether h has every network of d, active. */
static bool host_networks_ok(const PlaceHost *h, const PlaceDemand *d) {
        for (size_t g = 0; g < d->n_networks; g++)
                if (host_network(h, d->networks[g]) != 2)
                        return false;
        return true;
}

/* ---- reasons: only for hosts that rate 0 ---- */

/* The reason text of one host, written straight into PlaceRating.reason.
 * Sentences are glued from pieces by hand rather than by snprintf(): with
 * thousands of full hosts the formatting would otherwise cost more than the
 * rating itself. */
typedef struct {
        char *buf;
        size_t len;
        size_t start;           /* where the current sentence began */
        bool overflow;          /* the current sentence does not fit */
        bool dropped;           /* some sentence did not fit */
} ReasonBuf;

/* Longest text before the "; ..." marker and the NUL. */
#define REASON_ROOM (PLACE_REASON_MAX - 6)

static void rb_strn(ReasonBuf *rb, const char *str, size_t k) {
        if (rb->overflow || rb->len + k > REASON_ROOM) {
                rb->overflow = true;
                return;
        }
        memcpy(rb->buf + rb->len, str, k);
        rb->len += k;
}

/* Inlined so that strlen() of a literal is folded at compile time. */
__attribute__((always_inline))
static inline void rb_str(ReasonBuf *rb, const char *str) {
        rb_strn(rb, str, strlen(str));
}

/* Appends v, already rounded to a whole number, in decimal. */
static void rb_num(ReasonBuf *rb, double v) {
        char tmp[32];
        if (!(fabs(v) < 1e15)) {
                snprintf(tmp, sizeof tmp, "%.0f", v);
                rb_str(rb, tmp);
                return;
        }
        int64_t x = (int64_t) v;
        bool neg = x < 0;
        uint64_t u = neg ? (uint64_t) -x : (uint64_t) x;
        char *e = tmp + sizeof tmp, *q = e;
        do {
                *--q = (char) ('0' + u % 10);
                u /= 10;
        } while (u);
        if (neg)
                *--q = '-';
        rb_strn(rb, q, (size_t) (e - q));
}

/* A sentence is kept whole or, when it would not fit, dropped whole; the text
 * then ends with "; ...". Sentences are joined by "; ". */
static void sentence_begin(ReasonBuf *rb) {
        rb->start = rb->len;
        rb->overflow = false;
        if (rb->len > 0)
                rb_str(rb, "; ");
}

static void sentence_end(ReasonBuf *rb) {
        if (rb->overflow) {
                rb->len = rb->start;
                rb->dropped = true;
        }
        rb->buf[rb->len] = 0;
}

_printf_(2, 3)
static void reason_add(ReasonBuf *rb, const char *fmt, ...) {
        char one[PLACE_REASON_MAX];
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(one, sizeof one, fmt, ap);
        va_end(ap);
        sentence_begin(rb);
        if (k < 0 || (size_t) k >= sizeof one)
                rb->overflow = true;
        else
                rb_str(rb, one);
        sentence_end(rb);
}

/* "<what>: needs N <unit>, L <unit> left after the R <unit> reserve", and
 * for the failover reserve "... and the F MiB kept free for ...". Needs rounds
 * up and left rounds down, so the sentence never reads as if the VM fitted. */
static void reason_short(ReasonBuf *rb, const char *what, const char *unit, double need,
                         double left, double reserve, const double *failover) {
        sentence_begin(rb);
        rb_str(rb, what);
        rb_str(rb, ": needs ");
        rb_num(rb, ceil(need));
        rb_str(rb, unit);
        rb_str(rb, ", ");
        rb_num(rb, floor(fmax(left, 0)));
        rb_str(rb, unit);
        rb_str(rb, " left after the ");
        rb_num(rb, round(reserve));
        rb_str(rb, unit);
        rb_str(rb, " reserve");
        if (failover) {
                rb_str(rb, " and the ");
                rb_num(rb, round(*failover));
                rb_str(rb, " MiB kept free for the cluster's N+1 failover");
        }
        sentence_end(rb);
}

static const char *state_sentence(PlaceHostState s) {
        switch (s) {
        case PLACE_HOST_MAINTENANCE: return "host is in maintenance";
        case PLACE_HOST_UNREACHABLE: return "host is unreachable";
        case PLACE_HOST_FAILED:      return "host has failed";
        case PLACE_HOST_DISABLED:    return "host is disabled for placement";
        default:                     return "host is not in a state to take VMs";
        }
}

static const char *vm_or(const char *name, const char *fallback) {
        return name ? name : fallback;
}

static void build_reason(const PlaceHost *hosts, const PlaceHost *h, const PlaceDemand *d,
                         unsigned why, const AffinityAnchor *anchors, size_t n_anchors,
                         char out[PLACE_REASON_MAX]) {
        ReasonBuf rb = { .buf = out };
        out[0] = 0;
        const char *vm = vm_or(d->vm_name, "the new VM");

        if (why & PLACE_WHY_STATE) {
                strcpy(out, state_sentence(h->state));
                return;
        }
        if (why & PLACE_WHY_INVALID) {
                sentence_begin(&rb);
                rb_str(&rb, "host reports invalid resource figures (negative, NaN or infinite)");
                sentence_end(&rb);
        }
        if (why & PLACE_WHY_MEMORY) {
                double left = h->cap[PLACE_R_MEMORY] - h->used[PLACE_R_MEMORY] - h->reserve.memory_mib;
                reason_short(&rb, "memory", " MiB", d->demand[PLACE_R_MEMORY], left,
                             h->reserve.memory_mib, NULL);
        }
        if (why & PLACE_WHY_FAILOVER) {
                double left = h->cap[PLACE_R_MEMORY] - h->used[PLACE_R_MEMORY] - h->reserve.memory_mib
                        - h->failover_reserve_mib;
                reason_short(&rb, "failover reserve", " MiB", d->demand[PLACE_R_MEMORY], left,
                             h->reserve.memory_mib, &h->failover_reserve_mib);
        }
        if (why & PLACE_WHY_DISK) {
                double left = h->cap[PLACE_R_DISK] - h->used[PLACE_R_DISK] - h->reserve.disk_gib;
                reason_short(&rb, "disk space", " GiB", d->demand[PLACE_R_DISK], left,
                             h->reserve.disk_gib, NULL);
        }
        if (why & PLACE_WHY_ANTI_AFFINITY) {
                for (size_t g = 0; g < d->n_anti_affinity; g++) {
                        const PlaceMember *m;
                        if (!host_runs_group(h, d->anti_affinity[g], &m))
                                continue;
                        if (m->vm_name)
                                reason_add(&rb, "anti-affinity: runs '%s', which must not share a host with '%s'",
                                           m->vm_name, vm);
                        else
                                reason_add(&rb, "anti-affinity: runs a member of rule group %d, which must not "
                                           "share a host with '%s'", (int) m->group, vm);
                        break;
                }
        }
        if (why & PLACE_WHY_AFFINITY) {
                for (size_t a = 0; a < n_anchors; a++) {
                        if (host_runs_group(h, anchors[a].group, NULL))
                                continue;
                        const PlaceHost *there = &hosts[anchors[a].host];
                        const char *mname = anchors[a].member->vm_name;
                        if (mname && there->name)
                                reason_add(&rb, "affinity: '%s' must share a host with '%s', which runs on '%s'",
                                           vm, mname, there->name);
                        else if (mname)
                                reason_add(&rb, "affinity: '%s' must share a host with '%s', which runs on "
                                           "another host", vm, mname);
                        else
                                reason_add(&rb, "affinity: '%s' must share a host with the members of rule "
                                           "group %d, which run on another host", vm, (int) anchors[a].group);
                        break;
                }
        }
        if (why & PLACE_WHY_NETWORK)
                for (size_t g = 0; g < d->n_networks; g++) {
                        int have = host_network(h, d->networks[g]);
                        if (have == 1)
                                reason_add(&rb, "network '%s' not active on host", d->networks[g]);
                        else if (have == 0)
                                reason_add(&rb, "network '%s' missing on host", d->networks[g]);
                }
        if (rb.dropped) {
                if (rb.len == 0)
                        memcpy(out, "...", 4);
                else
                        memcpy(out + rb.len, "; ...", 6);
        }
}

/* ---- rating ---- */

static bool host_figures_ok(const PlaceHost *h) {
        bool ok = true;
        for (int r = 0; r < PLACE_R__COUNT; r++)
                ok &= figure_ok(h->cap[r]) & figure_ok(h->used[r]);
        ok &= figure_ok(h->reserve.cpu_pct) & figure_ok(h->reserve.memory_mib) &
              figure_ok(h->reserve.disk_gib) & figure_ok(h->reserve.disk_io_pct) &
              figure_ok(h->reserve.network_pct) & figure_ok(h->failover_reserve_mib);
        return ok;
}

/* The hard checks. free is what is left of the resource after use and the
 * reserve, in the resource's units; a resource the VM does not demand can
 * never be violated (a VM on shared storage does not care how full the local
 * disk is). */
static unsigned hard_checks(const PlaceHost *h, const double *dem) {
        unsigned why = 0;
        double mem = dem[PLACE_R_MEMORY], disk = dem[PLACE_R_DISK];
        double mem_free = h->cap[PLACE_R_MEMORY] - h->used[PLACE_R_MEMORY] - h->reserve.memory_mib;
        double disk_free = h->cap[PLACE_R_DISK] - h->used[PLACE_R_DISK] - h->reserve.disk_gib;
        if (mem > 0 && mem > mem_free)
                why |= PLACE_WHY_MEMORY;
        else if (mem > 0 && mem > mem_free - h->failover_reserve_mib)
                why |= PLACE_WHY_FAILOVER;
        if (disk > 0 && disk > disk_free)
                why |= PLACE_WHY_DISK;
        return why;
}

/* The score of a host that passed every check. Per resource:
 *     s    = 100 / cap
 *     left = 100 - used*s - reserve% - demand*s
 * with reserve% the percent reserve for CPU, disk I/O and network, and
 * (reserve + failover reserve)*s for memory, reserve*s for disk space. The
 * resource scores left (load balancing) or 100 - left (resource maximization)
 * when left >= 0, and 0 when it would be overcommitted: overcommitting a soft
 * resource is the worst that resource can do under either goal. The rating is
 * the weighted mean of the scores over the resources that count (capacity or
 * demand non-zero), floored at PLACE_RATING_MIN. */
static double host_score(const PlaceHost *h, const double *dem, const PlacePolicy *p) {
        const double res_abs[PLACE_R__COUNT] = {
                [PLACE_R_MEMORY] = h->reserve.memory_mib + h->failover_reserve_mib,
                [PLACE_R_DISK] = h->reserve.disk_gib,
        };
        const double res_pct[PLACE_R__COUNT] = {
                [PLACE_R_CPU] = h->reserve.cpu_pct,
                [PLACE_R_DISK_IO] = h->reserve.disk_io_pct,
                [PLACE_R_NETWORK] = h->reserve.network_pct,
        };
        const bool maximize = p->goal == PLACE_GOAL_RESOURCE_MAXIMIZATION;
        double sum = 0, wsum = 0;

        for (int r = 0; r < PLACE_R__COUNT; r++) {
                double cap = h->cap[r], w = p->weight[r];
                if (cap <= 0) {
                        /* Nothing offered: ignored when nothing is asked,
                         * scores 0 otherwise (hard ones were rejected). */
                        if (dem[r] > 0)
                                wsum += w;
                        continue;
                }
                double s = 100.0 / cap;
                double reserve = r == PLACE_R_MEMORY || r == PLACE_R_DISK ? res_abs[r] * s : res_pct[r];
                double left = 100.0 - h->used[r] * s - reserve - dem[r] * s;
                double score = left < 0 ? 0 : maximize ? 100.0 - left : left;
                sum += w * score;
                wsum += w;
        }
        double rating = wsum > 0 ? sum / wsum : 0;
        /* a ternary, not fmax(): without -ffast-math that is a libm call */
        return rating < PLACE_RATING_MIN ? PLACE_RATING_MIN : rating;
}

static bool demand_ok(const PlaceDemand *d, const PlacePolicy *p) {
        bool any_weight = false;
        if (p->goal != PLACE_GOAL_LOAD_BALANCING && p->goal != PLACE_GOAL_RESOURCE_MAXIMIZATION)
                return false;
        for (int r = 0; r < PLACE_R__COUNT; r++) {
                if (!figure_ok(d->demand[r]) || !figure_ok(p->weight[r]))
                        return false;
                any_weight |= p->weight[r] > 0;
        }
        if ((d->n_anti_affinity > 0 && !d->anti_affinity) || (d->n_affinity > 0 && !d->affinity) ||
            (d->n_networks > 0 && !d->networks))
                return false;
        for (size_t g = 0; g < d->n_networks; g++)
                if (!d->networks[g])
                        return false;
        return any_weight;
}

int place_rate_hosts(const PlaceHost *hosts, size_t n_hosts, const PlaceDemand *d,
                     const PlacePolicy *p, PlaceRating *ret_ratings) {
        if (!d || !p || (n_hosts > 0 && (!hosts || !ret_ratings)) || n_hosts > INT_MAX || !demand_ok(d, p))
                return -EINVAL;

        /* Affinity: find, per group of the VM, a host that already runs a
         * member. Groups with no running member constrain nothing. */
        AffinityAnchor stack_anchors[AFFINITY_STACK];
        _cleanup_free_ AffinityAnchor *heap_anchors = NULL;
        AffinityAnchor *anchors = stack_anchors;
        size_t n_anchors = 0;
        if (d->n_affinity > AFFINITY_STACK)
                anchors = heap_anchors = xmalloc(d->n_affinity * sizeof *anchors);
        for (size_t g = 0; g < d->n_affinity; g++)
                for (size_t i = 0; i < n_hosts; i++) {
                        const PlaceMember *m;
                        if (host_runs_group(&hosts[i], d->affinity[g], &m)) {
                                anchors[n_anchors++] = (AffinityAnchor) {
                                        .group = d->affinity[g], .host = i, .member = m };
                                break;
                        }
                }

        double best = 0;
        int n_fit = 0;
        for (size_t i = 0; i < n_hosts; i++) {
                const PlaceHost *h = &hosts[i];
                PlaceRating *out = &ret_ratings[i];
                unsigned why = 0;

                out->host_index = i;
                if (h->state != PLACE_HOST_OK)
                        why = PLACE_WHY_STATE;
                else if (!host_figures_ok(h))
                        why = PLACE_WHY_INVALID;
                else
                        why = hard_checks(h, d->demand);

                if (h->state == PLACE_HOST_OK) {
                        if (h->n_members > 0)
                                for (size_t g = 0; g < d->n_anti_affinity; g++)
                                        if (host_runs_group(h, d->anti_affinity[g], NULL)) {
                                                why |= PLACE_WHY_ANTI_AFFINITY;
                                                break;
                                        }
                        for (size_t a = 0; a < n_anchors; a++)
                                if (!host_runs_group(h, anchors[a].group, NULL)) {
                                        why |= PLACE_WHY_AFFINITY;
                                        break;
                                }
                        if (d->n_networks > 0 && !host_networks_ok(h, d))
                                why |= PLACE_WHY_NETWORK;
                }

                out->why = why;
                out->half_stars = 0;
                if (why) {
                        out->rating = 0;
                        build_reason(hosts, h, d, why, anchors, n_anchors, out->reason);
                        continue;
                }
                out->reason[0] = 0;
                out->rating = host_score(h, d->demand, p);
                n_fit++;
                if (out->rating > best)
                        best = out->rating;
        }

        if (best > 0)
                for (size_t i = 0; i < n_hosts; i++) {
                        double r = ret_ratings[i].rating;
                        if (r <= 0)
                                continue;
                        /* round half up; the value is >= 0, so truncating is flooring */
                        int hs = (int) (10.0 * r / best + 0.5);
                        ret_ratings[i].half_stars = hs < 1 ? 1 : hs > 10 ? 10 : hs;
                }
        return n_fit;
}

ssize_t place_best(const PlaceRating *ratings, size_t n) {
        ssize_t best = -1;
        double best_rating = 0;
        for (size_t i = 0; i < n; i++)
                if (ratings[i].rating > best_rating) {
                        best_rating = ratings[i].rating;
                        best = (ssize_t) i;
                }
        return best;
}

static int order_cmp(const void *a, const void *b, void *userdata) {
        const PlaceRating *ratings = userdata;
        const PlaceRating *x = &ratings[*(const size_t *) a], *y = &ratings[*(const size_t *) b];
        if (x->rating != y->rating)
                return x->rating > y->rating ? -1 : 1;
        return x->host_index < y->host_index ? -1 : x->host_index > y->host_index;
}

void place_order(const PlaceRating *ratings, size_t n, size_t *ret_order) {
        for (size_t i = 0; i < n; i++)
                ret_order[i] = i;
        if (n > 1)
                qsort_r(ret_order, n, sizeof *ret_order, order_cmp, (void *) ratings);
}

/* ---- rating many times: the prepared table ----
 *
 * place_rate_hosts() pays, per host and call, five divisions (100 / cap)
 * and a write to a PlaceRating of ~400 bytes: at 10,000 hosts the stores to
 * the big output array cost more than the arithmetic. The table moves what
 * does not depend on the demand out of the call — per resource the scale
 * s = 100 / cap and base = 100 - used*s - reserve, the memory and disk left
 * after the reserves, the host's state and figure checks, the first host of
 * every rule group — into one compact record per host, and the call writes
 * a 16-byte PlaceScore. Every value is computed by the same expressions in
 * the same order as in place_rate_hosts(), so ratings are bit-identical
 * (tests/unit/test_place.c compares the two on random estates). */

enum {
        HOT_BAD_STATE   = 1u << 0,      /* state != OK: only the state reason */
        HOT_INVALID     = 1u << 1,      /* figures invalid: no resource checks */
        HOT_MEMBERS     = 1u << 2,      /* runs members of rule groups */
        HOT_CAP_ZERO    = 1u << 3,      /* some resource has no capacity */
};

/* What the rating of one host reads, in one record (one pass, in order). */
typedef struct {
        double s[PLACE_R__COUNT];       /* 100 / cap; 0 when cap <= 0 */
        double base[PLACE_R__COUNT];    /* 100 - used*s - reserve (percent) */
        double mem_free;                /* cap - used - reserve, MiB */
        double mem_free_failover;       /* mem_free - failover reserve */
        double disk_free;               /* cap - used - reserve, GiB */
        unsigned flags;                 /* HOT_* */
        unsigned cap_zero;              /* bit r: cap[r] <= 0 */
} HotHost;

/* The first host (in index order) that runs a member of group, and that
 * member: the affinity anchor of place_rate_hosts(). */
typedef struct {
        int32_t group;
        size_t host;
        size_t member;
} GroupFirst;

struct PlaceTable {
        const PlaceHost *hosts;         /* borrowed: names and members for reasons and rules */
        size_t n;
        HotHost *hot;
        GroupFirst *first;              /* sorted by group */
        size_t n_first;
};

static int group_first_cmp(const void *a, const void *b) {
        const GroupFirst *x = a, *y = b;
        if (x->group != y->group)
                return x->group < y->group ? -1 : 1;
        if (x->host != y->host)
                return x->host < y->host ? -1 : 1;
        return x->member < y->member ? -1 : x->member > y->member;
}

static void hot_fill(const PlaceHost *h, HotHost *o) {
        *o = (HotHost) {0};
        if (h->state != PLACE_HOST_OK)
                o->flags |= HOT_BAD_STATE;
        else if (!host_figures_ok(h))
                o->flags |= HOT_INVALID;
        if (h->n_members > 0)
                o->flags |= HOT_MEMBERS;
        if (o->flags & (HOT_BAD_STATE | HOT_INVALID))
                return;
        /* as hard_checks() */
        o->mem_free = h->cap[PLACE_R_MEMORY] - h->used[PLACE_R_MEMORY] - h->reserve.memory_mib;
        o->mem_free_failover = o->mem_free - h->failover_reserve_mib;
        o->disk_free = h->cap[PLACE_R_DISK] - h->used[PLACE_R_DISK] - h->reserve.disk_gib;
        /* as host_score() */
        const double res_abs[PLACE_R__COUNT] = {
                [PLACE_R_MEMORY] = h->reserve.memory_mib + h->failover_reserve_mib,
                [PLACE_R_DISK] = h->reserve.disk_gib,
        };
        const double res_pct[PLACE_R__COUNT] = {
                [PLACE_R_CPU] = h->reserve.cpu_pct,
                [PLACE_R_DISK_IO] = h->reserve.disk_io_pct,
                [PLACE_R_NETWORK] = h->reserve.network_pct,
        };
        for (int r = 0; r < PLACE_R__COUNT; r++) {
                double cap = h->cap[r];
                if (cap <= 0) {
                        o->cap_zero |= 1u << r;
                        o->flags |= HOT_CAP_ZERO;
                        continue;
                }
                double sc = 100.0 / cap;
                double reserve = r == PLACE_R_MEMORY || r == PLACE_R_DISK ? res_abs[r] * sc : res_pct[r];
                o->s[r] = sc;
                o->base[r] = 100.0 - h->used[r] * sc - reserve;
        }
}

int place_table_new(const PlaceHost *hosts, size_t n, PlaceTable **ret) {
        if (!ret || (n > 0 && !hosts) || n > INT_MAX)
                return -EINVAL;
        size_t n_members = 0;
        for (size_t i = 0; i < n; i++) {
                if ((hosts[i].n_members > 0 && !hosts[i].members) || (hosts[i].n_networks > 0 && !hosts[i].networks))
                        return -EINVAL;
                n_members += hosts[i].n_members;
        }
        PlaceTable *t = xcalloc(1, sizeof *t);
        t->hosts = hosts;
        t->n = n;
        t->hot = xmalloc((n ? n : 1) * sizeof *t->hot);
        for (size_t i = 0; i < n; i++)
                hot_fill(&hosts[i], &t->hot[i]);
        t->first = xmalloc((n_members ? n_members : 1) * sizeof *t->first);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
                for (size_t m = 0; m < hosts[i].n_members; m++)
                        t->first[k++] = (GroupFirst) { .group = hosts[i].members[m].group, .host = i, .member = m };
        qsort(t->first, k, sizeof *t->first, group_first_cmp);
        size_t w = 0;
        for (size_t j = 0; j < k; j++)
                if (w == 0 || t->first[w - 1].group != t->first[j].group)
                        t->first[w++] = t->first[j];
        t->n_first = w;
        *ret = t;
        return 0;
}

PlaceTable *place_table_free(PlaceTable *t) {
        if (!t)
                return NULL;
        free(t->hot);
        free(t->first);
        free(t);
        return NULL;
}

size_t place_table_size(const PlaceTable *t) {
        return t ? t->n : 0;
}

/* The anchors of the demand's affinity groups, in the demand's order, as
 * place_rate_hosts() finds them by scanning. */
static size_t table_anchors(const PlaceTable *t, const PlaceDemand *d, AffinityAnchor *anchors) {
        size_t n_anchors = 0;
        for (size_t g = 0; g < d->n_affinity; g++) {
                size_t lo = 0, hi = t->n_first;
                while (lo < hi) {
                        size_t mid = lo + (hi - lo) / 2;
                        if (t->first[mid].group < d->affinity[g])
                                lo = mid + 1;
                        else
                                hi = mid;
                }
                if (lo < t->n_first && t->first[lo].group == d->affinity[g]) {
                        const GroupFirst *f = &t->first[lo];
                        anchors[n_anchors++] = (AffinityAnchor) {
                                .group = f->group, .host = f->host, .member = &t->hosts[f->host].members[f->member] };
                }
        }
        return n_anchors;
}

/* The weighted mean of a host with some resource of no capacity: the
 * general loop of host_score(), over the precomputed figures. */
static double hot_score_general(const HotHost *o, const double *dem, const PlacePolicy *p, bool maximize) {
        double sum = 0, wsum = 0;
        for (int r = 0; r < PLACE_R__COUNT; r++) {
                double w = p->weight[r];
                if (o->cap_zero & (1u << r)) {
                        if (dem[r] > 0)
                                wsum += w;
                        continue;
                }
                double left = o->base[r] - dem[r] * o->s[r];
                double score = left < 0 ? 0 : maximize ? 100.0 - left : left;
                sum += w * score;
                wsum += w;
        }
        double rating = wsum > 0 ? sum / wsum : 0;
        return rating < PLACE_RATING_MIN ? PLACE_RATING_MIN : rating;
}

/* The weighted sum of a host that passed every check and has every
 * capacity, as host_score() before its division (done in the stars pass:
 * the sum of every such host is divided by the same weights' sum, and the
 * division is monotone, so the best sum gives the best rating). Under load balancing a resource scores max(left, 0):
 * where left is -0.0 host_score() adds w * -0.0 and this w * +0.0, the
 * same to a sum that starts at +0.0. Inlined into two copies of the pass,
 * one per goal, so the goal is not tested per resource. */
__attribute__((always_inline))
static inline double hot_sum(const HotHost *o, const double *dem, const double *w, bool maximize) {
        double sum = 0;
#pragma GCC unroll 5
        for (int r = 0; r < PLACE_R__COUNT; r++) {
                double left = o->base[r] - dem[r] * o->s[r];
                double score;
                if (maximize)
                        score = left < 0 ? 0 : 100.0 - left;
                else
                        score = left > 0 ? left : 0;
                sum += w[r] * score;
        }
        return sum;
}

/* The hard checks and the rules of host i; 0 when it may take the VM. */
__attribute__((always_inline))
static inline unsigned hot_why(const PlaceTable *t, size_t i, const HotHost *o, const PlaceDemand *d, double mem, double disk,
                               bool rules, const AffinityAnchor *anchors, size_t n_anchors) {
        unsigned why = 0;
        if (o->flags & HOT_INVALID)
                why = PLACE_WHY_INVALID;
        else {
                if (mem > 0 && mem > o->mem_free)
                        why |= PLACE_WHY_MEMORY;
                else if (mem > 0 && mem > o->mem_free_failover)
                        why |= PLACE_WHY_FAILOVER;
                if (disk > 0 && disk > o->disk_free)
                        why |= PLACE_WHY_DISK;
        }
        if (!rules)
                return why;
        const PlaceHost *h = &t->hosts[i];
        if (o->flags & HOT_MEMBERS)
                for (size_t g = 0; g < d->n_anti_affinity; g++)
                        if (host_runs_group(h, d->anti_affinity[g], NULL)) {
                                why |= PLACE_WHY_ANTI_AFFINITY;
                                break;
                        }
        for (size_t a = 0; a < n_anchors; a++)
                if (!host_runs_group(h, anchors[a].group, NULL)) {
                        why |= PLACE_WHY_AFFINITY;
                        break;
                }
        if (d->n_networks > 0 && !host_networks_ok(h, d))
                why |= PLACE_WHY_NETWORK;
        return why;
}

/* One pass over the hosts for one goal: scores, the count that fit and
 * the best rating. */
__attribute__((always_inline))
static inline int table_pass(const PlaceTable *t, const PlaceDemand *d, const PlacePolicy *p, const AffinityAnchor *anchors,
                             size_t n_anchors, bool maximize, PlaceScore *ret_scores, double *ret_best, double *ret_wsum) {
        const double *dem = d->demand;
        const double mem = dem[PLACE_R_MEMORY], disk = dem[PLACE_R_DISK];
        /* With every capacity non-zero the weights' sum is the same for
         * every host, summed in host_score()'s order. */
        double wsum = 0;
        for (int r = 0; r < PLACE_R__COUNT; r++)
                wsum += p->weight[r];
        const bool rules = d->n_anti_affinity > 0 || n_anchors > 0 || d->n_networks > 0;
        double best = 0, best_sum = -1;
        int n_fit = 0;
        for (size_t i = 0; i < t->n; i++) {
                const HotHost *o = &t->hot[i];
                PlaceScore *out = &ret_scores[i];
                if (o->flags & HOT_BAD_STATE) {
                        *out = (PlaceScore) { .why = PLACE_WHY_STATE };
                        continue;
                }
                unsigned why = hot_why(t, i, o, d, mem, disk, rules, anchors, n_anchors);
                if (why) {
                        *out = (PlaceScore) { .why = why };
                        continue;
                }
                n_fit++;
                if (o->flags & HOT_CAP_ZERO) {
                        double rating = hot_score_general(o, dem, p, maximize);
                        *out = (PlaceScore) { .rating = rating };
                        best = rating > best ? rating : best;
                        continue;
                }
                /* the sum, marked by half_stars -1: divided in the stars pass */
                double sum = hot_sum(o, dem, p->weight, maximize);
                *out = (PlaceScore) { .rating = sum, .half_stars = -1 };
                best_sum = sum > best_sum ? sum : best_sum;
        }
        if (best_sum >= 0) {
                double r = best_sum / wsum;
                r = r < PLACE_RATING_MIN ? PLACE_RATING_MIN : r;
                best = r > best ? r : best;
        }
        *ret_best = best;
        *ret_wsum = wsum;
        return n_fit;
}

int place_table_rate(const PlaceTable *t, const PlaceDemand *d, const PlacePolicy *p, PlaceScore *ret_scores) {
        if (!t || !d || !p || (t->n > 0 && !ret_scores) || !demand_ok(d, p))
                return -EINVAL;
        AffinityAnchor stack_anchors[AFFINITY_STACK];
        _cleanup_free_ AffinityAnchor *heap_anchors = NULL;
        AffinityAnchor *anchors = stack_anchors;
        if (d->n_affinity > AFFINITY_STACK)
                anchors = heap_anchors = xmalloc(d->n_affinity * sizeof *anchors);
        size_t n_anchors = table_anchors(t, d, anchors);

        double best, wsum;
        int n_fit = p->goal == PLACE_GOAL_RESOURCE_MAXIMIZATION ?
                table_pass(t, d, p, anchors, n_anchors, true, ret_scores, &best, &wsum) :
                table_pass(t, d, p, anchors, n_anchors, false, ret_scores, &best, &wsum);
        for (size_t i = 0; n_fit > 0 && i < t->n; i++) {
                PlaceScore *s = &ret_scores[i];
                if (s->half_stars < 0) {
                        double r = s->rating / wsum;
                        s->rating = r < PLACE_RATING_MIN ? PLACE_RATING_MIN : r;
                }
                if (s->rating <= 0)
                        continue;
                int hs = (int) (10.0 * s->rating / best + 0.5);
                s->half_stars = hs < 1 ? 1 : hs > 10 ? 10 : hs;
        }
        return n_fit;
}

void place_table_reason(const PlaceTable *t, size_t i, const PlaceDemand *d, unsigned why, char ret[PLACE_REASON_MAX]) {
        assert(t && d && i < t->n);
        ret[0] = 0;
        if (!why)
                return;
        AffinityAnchor stack_anchors[AFFINITY_STACK];
        _cleanup_free_ AffinityAnchor *heap_anchors = NULL;
        AffinityAnchor *anchors = stack_anchors;
        if (d->n_affinity > AFFINITY_STACK)
                anchors = heap_anchors = xmalloc(d->n_affinity * sizeof *anchors);
        size_t n_anchors = (why & PLACE_WHY_AFFINITY) ? table_anchors(t, d, anchors) : 0;
        build_reason(t->hosts, &t->hosts[i], d, why, anchors, n_anchors, ret);
}

ssize_t place_score_best(const PlaceScore *scores, size_t n) {
        ssize_t best = -1;
        double best_rating = 0;
        for (size_t i = 0; i < n; i++)
                if (scores[i].rating > best_rating) {
                        best_rating = scores[i].rating;
                        best = (ssize_t) i;
                }
        return best;
}

static int score_order_cmp(const void *a, const void *b, void *userdata) {
        const PlaceScore *scores = userdata;
        size_t i = *(const size_t *) a, j = *(const size_t *) b;
        if (scores[i].rating != scores[j].rating)
                return scores[i].rating > scores[j].rating ? -1 : 1;
        return i < j ? -1 : i > j;
}

void place_score_order(const PlaceScore *scores, size_t n, size_t *ret_order) {
        for (size_t i = 0; i < n; i++)
                ret_order[i] = i;
        if (n > 1)
                qsort_r(ret_order, n, sizeof *ret_order, score_order_cmp, (void *) scores);
}

/* ---- consolidation ----
 *
 * Vector bin packing is NP-hard; we want a plan near the lower bound, fast.
 * Each server's demand is divided by the usable capacity, so every resource
 * is a fraction of one host, and the resources are weighted by their total
 * demand (the scarce resource, the one that sets the bound, counts most).
 * We build five candidate plans and keep the one with the fewest hosts:
 *
 * 1-3. First-fit decreasing, ordered by the weighted sum of the fractions
 *    (after Panigrahy et al., "Heuristics for Vector Bin Packing", 2011), by
 *    the dominant fraction, and by the plain sum. Cheap, O(servers x hosts),
 *    and good when one resource dominates; but FFD piles servers of the same
 *    shape together (disk-heavy ones fill a host's disk while its CPU idles).
 * 4-5. Bin-centric greedy: fill one host at a time with the server that best
 *    complements what is left of it (largest weighted dot product with the
 *    room left, or smallest weighted square of the room left afterwards).
 *    This mixes shapes and typically lands within 1-3% of the bound where FFD
 *    is 4-8% above it. It is O(n^2), so it runs on interleaved slices of the
 *    sorted servers of BIN_CENTRIC_CHUNK each (every slice has the same mix),
 *    which costs O(n x chunk) and leaves one part-filled host per slice.
 *
 * Then an improvement pass on the winner: from the least loaded host up, try
 * to move all of a host's servers into the other hosts, each to the fullest
 * host where it fits (best fit keeps the slack in few places); if they all find
 * room the host is closed, otherwise its moves are undone. This collects the
 * part-filled hosts the slices and the tail of first fit leave behind.
 * Each step is O(servers x hosts x resources) at worst; 10,000 servers on
 * ~600 hosts take about 100 ms in all (bench/results/placement.md). */

#define BIN_CENTRIC_CHUNK 512

typedef struct {
        size_t n;               /* placeable servers */
        double *frac;           /* n x PLACE_R__COUNT fractions of a host */
} Packing;

typedef struct {
        size_t idx;
        double key;
} SortKey;

static int key_cmp(const void *a, const void *b) {
        const SortKey *x = a, *y = b;
        if (x->key != y->key)
                return x->key > y->key ? -1 : 1;
        return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static bool fits(const double *load, const double *f) {
        bool ok = true;
        for (int r = 0; r < PLACE_R__COUNT; r++)
                ok &= load[r] + f[r] <= 1.0;
        return ok;
}

static void load_add(double *load, const double *f, double sign) {
        for (int r = 0; r < PLACE_R__COUNT; r++)
                load[r] += sign * f[r];
}

/* First fit of the placeable servers in the given order. Writes bin[] and
 * load[] (room for pk->n hosts) and returns the number of hosts opened. */
static size_t first_fit(const Packing *pk, const SortKey *order, size_t *bin, double *load) {
        size_t nb = 0, first_open = 0;
        for (size_t k = 0; k < pk->n; k++) {
                size_t j = order[k].idx;
                const double *f = &pk->frac[j * PLACE_R__COUNT];
                size_t b = first_open;
                while (b < nb && !fits(&load[b * PLACE_R__COUNT], f))
                        b++;
                if (b == nb) {
                        memset(&load[b * PLACE_R__COUNT], 0, sizeof(double) * PLACE_R__COUNT);
                        nb++;
                }
                load_add(&load[b * PLACE_R__COUNT], f, 1);
                bin[j] = b;
                /* hosts with less than 1% room in some resource rarely take
                 * anything more; skipping the full prefix keeps the scan short */
                while (first_open < nb) {
                        const double *l = &load[first_open * PLACE_R__COUNT];
                        double mx = 0;
                        for (int r = 0; r < PLACE_R__COUNT; r++)
                                mx = fmax(mx, l[r]);
                        if (mx < 0.999)
                                break;
                        first_open++;
                }
        }
        return nb;
}

/* Bin-centric greedy (plans 4-5 above) over interleaved slices of `chunk`
 * servers of the given order: fill one host at a time, each time adding the
 * server that suits what is left of the host best, among those that fit. With
 * l2 false "best" is the largest weighted dot product of the server with the
 * host's remaining room; with l2 true it is the smallest weighted square of
 * the room left afterwards (the host ends up full and balanced). Candidates
 * keep the given order, so ties go to the bigger server. Returns the number
 * of hosts opened; writes bin[] and load[] as first_fit(). */
static size_t bin_centric(const Packing *pk, const SortKey *order, const double *w, bool l2,
                          size_t chunk, size_t *bin, double *load) {
        _cleanup_free_ size_t *rest = xmalloc(pk->n * sizeof *rest);
        size_t nb = 0, n_chunks = (pk->n + chunk - 1) / chunk;
        for (size_t c = 0; c < n_chunks; c++) {
                size_t cnt = 0;
                for (size_t k = c; k < pk->n; k += n_chunks)
                        rest[cnt++] = order[k].idx;
                while (cnt > 0) {
                        double *l = &load[nb * PLACE_R__COUNT];
                        memset(l, 0, sizeof(double) * PLACE_R__COUNT);
                        for (;;) {
                                size_t best_k = SIZE_MAX;
                                double best_score = -INFINITY;
                                for (size_t k = 0; k < cnt; k++) {
                                        const double *f = &pk->frac[rest[k] * PLACE_R__COUNT];
                                        double score = 0;
                                        bool ok = true;
                                        for (int r = 0; r < PLACE_R__COUNT; r++) {
                                                double room = 1.0 - l[r];
                                                ok &= l[r] + f[r] <= 1.0;
                                                score += l2 ? -w[r] * (room - f[r]) * (room - f[r]) :
                                                              w[r] * f[r] * room;
                                        }
                                        if (ok && score > best_score) {
                                                best_score = score;
                                                best_k = k;
                                        }
                                }
                                if (best_k == SIZE_MAX)
                                        break;
                                size_t j = rest[best_k];
                                load_add(l, &pk->frac[j * PLACE_R__COUNT], 1);
                                bin[j] = nb;
                                memmove(&rest[best_k], &rest[best_k + 1], (cnt - best_k - 1) * sizeof *rest);
                                cnt--;
                        }
                        nb++;
                }
        }
        return nb;
}

static double load_weight(const double *l, const double *w) {
        double s = 0;
        for (int r = 0; r < PLACE_R__COUNT; r++)
                s += w[r] * l[r];
        return s;
}

/* The improvement pass (step 2 above). Returns the number of hosts left
 * non-empty; bin[] and load[] are updated, emptied hosts keep zero load. */
static size_t empty_hosts(const Packing *pk, size_t nb, size_t *bin, double *load, const double *w) {
        _cleanup_free_ SortKey *hosts = xmalloc(nb * sizeof *hosts);
        _cleanup_free_ bool *closed = xcalloc(nb, sizeof *closed);
        _cleanup_free_ size_t *moved_to = xmalloc((pk->n ? pk->n : 1) * sizeof *moved_to);
        size_t left = nb;

        for (size_t b = 0; b < nb; b++)
                hosts[b] = (SortKey) { .idx = b, .key = -load_weight(&load[b * PLACE_R__COUNT], w) };
        qsort(hosts, nb, sizeof *hosts, key_cmp);      /* least loaded first */

        for (size_t hi = 0; hi < nb && left > 1; hi++) {
                size_t src = hosts[hi].idx;
                size_t cnt = 0;
                bool ok = true;
                /* The members of src: those still assigned to it (earlier
                 * successful passes may have moved others in). */
                for (size_t j = 0; j < pk->n && ok; j++) {
                        if (bin[j] != src)
                                continue;
                        const double *f = &pk->frac[j * PLACE_R__COUNT];
                        size_t best_b = SIZE_MAX;
                        double best_w = -1;
                        for (size_t b = 0; b < nb; b++) {
                                if (b == src || closed[b] || !fits(&load[b * PLACE_R__COUNT], f))
                                        continue;
                                double lw = load_weight(&load[b * PLACE_R__COUNT], w);
                                if (lw > best_w) {
                                        best_w = lw;
                                        best_b = b;
                                }
                        }
                        if (best_b == SIZE_MAX) {
                                ok = false;
                                break;
                        }
                        load_add(&load[best_b * PLACE_R__COUNT], f, 1);
                        moved_to[cnt++] = j;
                        bin[j] = best_b;
                }
                if (ok) {
                        closed[src] = true;
                        memset(&load[src * PLACE_R__COUNT], 0, sizeof(double) * PLACE_R__COUNT);
                        left--;
                } else {
                        for (size_t k = 0; k < cnt; k++) {
                                size_t j = moved_to[k];
                                load_add(&load[bin[j] * PLACE_R__COUNT], &pk->frac[j * PLACE_R__COUNT], -1);
                                bin[j] = src;
                        }
                }
        }
        return left;
}

int place_consolidate(const PlaceServer *servers, size_t n, const PlaceHostModel *model,
                      ssize_t *ret_host_of, PlaceConsolidation *ret) {
        if (!model || !ret || (n > 0 && (!servers || !ret_host_of)))
                return -EINVAL;

        const PlaceReserve *rs = &model->reserve;
        if (!figure_ok(rs->cpu_pct) || !figure_ok(rs->memory_mib) || !figure_ok(rs->disk_gib) ||
            !figure_ok(rs->disk_io_pct) || !figure_ok(rs->network_pct))
                return -EINVAL;
        double usable[PLACE_R__COUNT];
        for (int r = 0; r < PLACE_R__COUNT; r++)
                if (!figure_ok(model->cap[r]))
                        return -EINVAL;
        for (size_t i = 0; i < n; i++)
                for (int r = 0; r < PLACE_R__COUNT; r++)
                        if (!figure_ok(servers[i].demand[r]))
                                return -EINVAL;
        const double *cap = model->cap;
        usable[PLACE_R_CPU] = cap[PLACE_R_CPU] * (1 - rs->cpu_pct / 100);
        usable[PLACE_R_MEMORY] = cap[PLACE_R_MEMORY] - rs->memory_mib;
        usable[PLACE_R_DISK] = cap[PLACE_R_DISK] - rs->disk_gib;
        usable[PLACE_R_DISK_IO] = cap[PLACE_R_DISK_IO] * (1 - rs->disk_io_pct / 100);
        usable[PLACE_R_NETWORK] = cap[PLACE_R_NETWORK] * (1 - rs->network_pct / 100);

        /* Fractions of a host; a server that exceeds an empty host in any
         * resource is unplaceable. */
        _cleanup_free_ double *frac = xmalloc((n ? n : 1) * PLACE_R__COUNT * sizeof *frac);
        _cleanup_free_ size_t *server = xmalloc((n ? n : 1) * sizeof *server);
        double total[PLACE_R__COUNT] = {0};
        size_t m = 0, n_unplaceable = 0;
        for (size_t i = 0; i < n; i++) {
                double f[PLACE_R__COUNT];
                bool ok = true;
                for (int r = 0; r < PLACE_R__COUNT; r++) {
                        double dm = servers[i].demand[r];
                        if (dm <= 0)
                                f[r] = 0;
                        else if (usable[r] <= 0 || dm > usable[r])
                                ok = false;
                        else
                                f[r] = dm / usable[r];
                }
                if (!ok) {
                        n_unplaceable++;
                        continue;
                }
                memcpy(&frac[m * PLACE_R__COUNT], f, sizeof f);
                for (int r = 0; r < PLACE_R__COUNT; r++)
                        total[r] += f[r];
                server[m++] = i;
        }
        Packing pk = { .n = m, .frac = frac };

        size_t lower = 0;
        for (int r = 0; r < PLACE_R__COUNT; r++) {
                /* forgive the rounding of the sum so an exact fit counts exact */
                double b = ceil(total[r] - 1e-9);
                if (b > (double) lower)
                        lower = (size_t) b;
        }
        if (m > 0 && lower == 0)
                lower = 1;

        size_t n_used = 0;
        _cleanup_free_ size_t *best_bin = xmalloc((m ? m : 1) * sizeof *best_bin);
        if (m > 0) {
                _cleanup_free_ SortKey *order = xmalloc(m * sizeof *order);
                _cleanup_free_ size_t *bin = xmalloc(m * sizeof *bin);
                _cleanup_free_ double *load = xmalloc(m * PLACE_R__COUNT * sizeof *load);
                _cleanup_free_ double *best_load = xmalloc(m * PLACE_R__COUNT * sizeof *best_load);
                double w[PLACE_R__COUNT], tsum = 0;
                for (int r = 0; r < PLACE_R__COUNT; r++)
                        tsum += total[r];
                for (int r = 0; r < PLACE_R__COUNT; r++)
                        w[r] = tsum > 0 ? total[r] / tsum : 1.0 / PLACE_R__COUNT;

                n_used = SIZE_MAX;
                for (int variant = 0; variant < 5; variant++) {
                        int kind = variant <= 2 ? variant : 0;
                        for (size_t j = 0; j < m; j++) {
                                const double *f = &frac[j * PLACE_R__COUNT];
                                double key = 0;
                                for (int r = 0; r < PLACE_R__COUNT; r++)
                                        key = kind == 0 ? key + w[r] * f[r] :
                                              kind == 1 ? fmax(key, f[r]) : key + f[r];
                                order[j] = (SortKey) { .idx = j, .key = key };
                        }
                        qsort(order, m, sizeof *order, key_cmp);
                        size_t nb = variant <= 2 ? first_fit(&pk, order, bin, load) :
                                    bin_centric(&pk, order, w, variant == 4, BIN_CENTRIC_CHUNK, bin, load);
                        if (nb < n_used) {
                                n_used = nb;
                                memcpy(best_bin, bin, m * sizeof *bin);
                                memcpy(best_load, load, nb * PLACE_R__COUNT * sizeof *load);
                        }
                        if (n_used == lower)
                                break;
                }
                if (n_used > lower)
                        n_used = empty_hosts(&pk, n_used, best_bin, best_load, w);
        }

        /* Number the hosts left 0..n_used-1 in order of first use. */
        _cleanup_free_ ssize_t *renum = xmalloc((m ? m : 1) * sizeof *renum);
        for (size_t b = 0; b < m; b++)
                renum[b] = -1;
        ssize_t next = 0;
        for (size_t i = 0; i < n; i++)
                ret_host_of[i] = -1;
        for (size_t j = 0; j < m; j++) {
                size_t b = best_bin[j];
                if (renum[b] < 0)
                        renum[b] = next++;
                ret_host_of[server[j]] = renum[b];
        }
        *ret = (PlaceConsolidation) {
                .n_hosts = (size_t) next,
                .lower_bound = lower,
                .n_unplaceable = n_unplaceable,
        };
        return 0;
}
