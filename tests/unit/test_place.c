/* Unit tests for place/: host rating against a brute-force oracle, reasons,
 * stars, rules and edge cases; consolidation plans against capacity and the
 * lower bound. Random inputs come from a seeded PRNG, so every run is the
 * same. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "place/place.h"

/* ---- deterministic PRNG (splitmix64) ---- */

static uint64_t rng_state;

static uint64_t rng_next(void) {
        uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static double rng_unit(void) {
        return (double) (rng_next() >> 11) * 0x1.0p-53;
}

static unsigned rng_below(unsigned n) {
        return (unsigned) (rng_next() % n);
}

/* ---- the oracle: the documented rating, written as plainly as possible ---- */

static bool bad(double v) {
        return isnan(v) || isinf(v) || v < 0;
}

static bool runs_group(const PlaceHost *h, int32_t g) {
        for (size_t k = 0; k < h->n_members; k++)
                if (h->members[k].group == g)
                        return true;
        return false;
}

static double oracle_rating(const PlaceHost *hosts, size_t n, size_t i, const PlaceDemand *d,
                            const PlacePolicy *p, unsigned *ret_why) {
        const PlaceHost *h = &hosts[i];
        unsigned why = 0;

        if (h->state != PLACE_HOST_OK) {
                *ret_why = PLACE_WHY_STATE;
                return 0;
        }
        bool invalid = bad(h->reserve.cpu_pct) || bad(h->reserve.memory_mib) || bad(h->reserve.disk_gib) ||
                       bad(h->reserve.disk_io_pct) || bad(h->reserve.network_pct) ||
                       bad(h->failover_reserve_mib);
        for (int r = 0; r < PLACE_R__COUNT; r++)
                if (bad(h->cap[r]) || bad(h->used[r]))
                        invalid = true;
        if (invalid) {
                why |= PLACE_WHY_INVALID;
        } else {
                double mem = d->demand[PLACE_R_MEMORY];
                double mem_free = h->cap[PLACE_R_MEMORY] - h->used[PLACE_R_MEMORY] - h->reserve.memory_mib;
                if (mem > 0 && mem > mem_free)
                        why |= PLACE_WHY_MEMORY;
                else if (mem > 0 && mem > mem_free - h->failover_reserve_mib)
                        why |= PLACE_WHY_FAILOVER;
                double disk = d->demand[PLACE_R_DISK];
                if (disk > 0 && disk > h->cap[PLACE_R_DISK] - h->used[PLACE_R_DISK] - h->reserve.disk_gib)
                        why |= PLACE_WHY_DISK;
        }
        for (size_t g = 0; g < d->n_anti_affinity; g++)
                if (runs_group(h, d->anti_affinity[g]))
                        why |= PLACE_WHY_ANTI_AFFINITY;
        for (size_t g = 0; g < d->n_affinity; g++) {
                bool anywhere = false;
                for (size_t j = 0; j < n; j++)
                        if (runs_group(&hosts[j], d->affinity[g]))
                                anywhere = true;
                if (anywhere && !runs_group(h, d->affinity[g]))
                        why |= PLACE_WHY_AFFINITY;
        }
        *ret_why = why;
        if (why)
                return 0;

        double sum = 0, wsum = 0;
        for (int r = 0; r < PLACE_R__COUNT; r++) {
                double cap = h->cap[r];
                if (cap == 0) {
                        if (d->demand[r] > 0)
                                wsum += p->weight[r];
                        continue;
                }
                double s = 100.0 / cap;
                double reserve_pct;
                if (r == PLACE_R_CPU)
                        reserve_pct = h->reserve.cpu_pct;
                else if (r == PLACE_R_MEMORY)
                        reserve_pct = (h->reserve.memory_mib + h->failover_reserve_mib) * s;
                else if (r == PLACE_R_DISK)
                        reserve_pct = h->reserve.disk_gib * s;
                else if (r == PLACE_R_DISK_IO)
                        reserve_pct = h->reserve.disk_io_pct;
                else
                        reserve_pct = h->reserve.network_pct;
                double left = 100.0 - h->used[r] * s - reserve_pct - d->demand[r] * s;
                double score;
                if (left < 0)
                        score = 0;
                else if (p->goal == PLACE_GOAL_LOAD_BALANCING)
                        score = left;
                else
                        score = 100.0 - left;
                sum += p->weight[r] * score;
                wsum += p->weight[r];
        }
        double rating = wsum > 0 ? sum / wsum : 0;
        return rating < 0.01 ? 0.01 : rating;
}

/* ---- random inputs that hit boundaries: small integers make exact fits,
 * ties, zero capacities and reserves above capacity common ---- */

static const PlaceMember member_pool[] = {
        { 1, "web01" }, { 2, "db01" }, { 3, "cache01" }, { 4, NULL }, { 5, "mq01" },
};

static double rnd_figure(double scale) {
        switch (rng_below(8)) {
        case 0: return 0;
        case 1: return (double) rng_below(9) * scale / 8;       /* coarse grid: exact fits */
        default: return rng_unit() * scale;
        }
}

static void random_host(PlaceHost *h, size_t i) {
        static const char *const names[] = { "kvm01", "kvm02", NULL, "kvm04" };
        static const double scale[PLACE_R__COUNT] = { 6400, 65536, 2000, 100000, 10000 };
        *h = (PlaceHost) {
                .id = (int64_t) i,
                .name = names[rng_below(4)],
                .state = rng_below(10) == 0 ? (PlaceHostState) (1 + rng_below(4)) : PLACE_HOST_OK,
        };
        for (int r = 0; r < PLACE_R__COUNT; r++) {
                h->cap[r] = rng_below(20) == 0 ? 0 : scale[r] * (0.25 + rng_below(4) * 0.25);
                h->used[r] = rnd_figure(h->cap[r] > 0 ? h->cap[r] : 1);
        }
        h->reserve = (PlaceReserve) {
                .cpu_pct = rnd_figure(30),
                .memory_mib = rnd_figure(8192),
                .disk_gib = rnd_figure(200),
                .disk_io_pct = rnd_figure(30),
                .network_pct = rnd_figure(30),
        };
        if (rng_below(30) == 0)
                h->reserve.memory_mib = 200000;         /* reserve above capacity */
        h->failover_reserve_mib = rng_below(3) == 0 ? rnd_figure(16384) : 0;
        if (rng_below(50) == 0)
                h->used[rng_below(PLACE_R__COUNT)] = rng_below(2) ? NAN : -1;
        if (rng_below(4) == 0) {
                size_t off = rng_below(ELEMENTSOF(member_pool));
                h->members = &member_pool[off];
                h->n_members = 1 + rng_below((unsigned) (ELEMENTSOF(member_pool) - off));
        }
}

static void random_demand(PlaceDemand *d, PlacePolicy *p, int32_t *anti, int32_t *aff) {
        static const double scale[PLACE_R__COUNT] = { 800, 8192, 200, 5000, 1000 };
        *d = (PlaceDemand) { .vm_name = rng_below(5) ? "web02" : NULL };
        for (int r = 0; r < PLACE_R__COUNT; r++)
                d->demand[r] = rng_below(6) == 0 ? 0 : rnd_figure(scale[r] * 4);
        if (rng_below(3) == 0) {
                anti[0] = 1 + (int32_t) rng_below(6);
                d->anti_affinity = anti;
                d->n_anti_affinity = 1;
        }
        if (rng_below(4) == 0) {
                aff[0] = 1 + (int32_t) rng_below(6);
                aff[1] = 1 + (int32_t) rng_below(6);
                d->affinity = aff;
                d->n_affinity = 1 + rng_below(2);
        }
        place_policy_default(rng_below(2) ? PLACE_GOAL_LOAD_BALANCING : PLACE_GOAL_RESOURCE_MAXIMIZATION, p);
        if (rng_below(2))
                for (int r = 0; r < PLACE_R__COUNT; r++)
                        p->weight[r] = rng_below(4) == 0 ? 0 : rng_unit() * 3;
        p->weight[rng_below(PLACE_R__COUNT)] += 0.5;    /* at least one positive */
}

/* Finds "<prefix>: needs A <u>, B <u> left after the C <u> reserve" in a
 * reason and returns A, B, C. */
static const char *expect_text(const char *at, const char *text) {
        assert_non_null(at);
        assert_true(strncmp(at, text, strlen(text)) == 0);
        return at + strlen(text);
}

static const char *expect_number(const char *at, long long *ret) {
        char *end;
        *ret = strtoll(at, &end, 10);
        assert_true(end > at);
        return end;
}

static void parse_sentence(const char *reason, const char *prefix, const char *unit,
                           long long *a, long long *b, long long *c) {
        char u[16];
        snprintf(u, sizeof u, " %s", unit);
        const char *at = strstr(reason, prefix);
        at = expect_text(at, prefix);
        at = expect_number(expect_text(at, ": needs "), a);
        at = expect_number(expect_text(expect_text(at, u), ", "), b);
        at = expect_number(expect_text(expect_text(at, u), " left after the "), c);
        expect_text(expect_text(at, u), " reserve");
}

static void check_reason_numbers(const PlaceHost *h, const PlaceDemand *d, const PlaceRating *r) {
        long long a, b, c;
        size_t len = strlen(r->reason);
        /* Sentences that did not fit were dropped whole; the first always fits. */
        bool cut = len >= 5 && streq(r->reason + len - 5, "; ...");
        assert_false(streq(r->reason, "...") || strncmp(r->reason, "; ", 2) == 0);
        if (r->why & PLACE_WHY_MEMORY) {
                parse_sentence(r->reason, "memory", "MiB", &a, &b, &c);
                double left = h->cap[PLACE_R_MEMORY] - h->used[PLACE_R_MEMORY] - h->reserve.memory_mib;
                assert_true(a == (long long) ceil(d->demand[PLACE_R_MEMORY]));
                assert_true(b == (long long) floor(left > 0 ? left : 0));
                assert_true(c == (long long) round(h->reserve.memory_mib));
                assert_true(a > b);
        }
        if ((r->why & PLACE_WHY_FAILOVER) && !(cut && !strstr(r->reason, "failover reserve:"))) {
                parse_sentence(r->reason, "failover reserve", "MiB", &a, &b, &c);
                double left = h->cap[PLACE_R_MEMORY] - h->used[PLACE_R_MEMORY] - h->reserve.memory_mib -
                              h->failover_reserve_mib;
                assert_true(a == (long long) ceil(d->demand[PLACE_R_MEMORY]));
                assert_true(b == (long long) floor(left > 0 ? left : 0));
                assert_non_null(strstr(r->reason, "MiB kept free for the cluster's N+1 failover"));
        }
        if ((r->why & PLACE_WHY_DISK) && !(cut && !strstr(r->reason, "disk space:"))) {
                parse_sentence(r->reason, "disk space", "GiB", &a, &b, &c);
                double left = h->cap[PLACE_R_DISK] - h->used[PLACE_R_DISK] - h->reserve.disk_gib;
                assert_true(a == (long long) ceil(d->demand[PLACE_R_DISK]));
                assert_true(b == (long long) floor(left > 0 ? left : 0));
                assert_true(c == (long long) round(h->reserve.disk_gib));
        }
        if (r->why & PLACE_WHY_STATE)
                assert_non_null(strstr(r->reason, "host "));
        if ((r->why & PLACE_WHY_ANTI_AFFINITY) && !cut)
                assert_non_null(strstr(r->reason, "anti-affinity: runs "));
        if ((r->why & PLACE_WHY_AFFINITY) && !cut)
                assert_non_null(strstr(r->reason, "affinity: '"));
        if (r->why & PLACE_WHY_INVALID)
                assert_non_null(strstr(r->reason, "invalid resource figures"));
}

static void test_oracle(void **state) {
        enum { ROUNDS = 20000, MAX_HOSTS = 40 };
        PlaceHost hosts[MAX_HOSTS];
        PlaceRating out[MAX_HOSTS];
        size_t order[MAX_HOSTS];
        int32_t anti[1], aff[2];
        rng_state = 20261126;
        size_t zeros = 0, fits = 0, cuts = 0;

        for (int round = 0; round < ROUNDS; round++) {
                size_t n = rng_below(MAX_HOSTS + 1);
                for (size_t i = 0; i < n; i++)
                        random_host(&hosts[i], i);
                PlaceDemand d;
                PlacePolicy p;
                random_demand(&d, &p, anti, aff);

                int n_fit = place_rate_hosts(hosts, n, &d, &p, out);
                assert_true(n_fit >= 0);

                double best_rating = 0;
                ssize_t best = -1;
                int expect_fit = 0;
                for (size_t i = 0; i < n; i++) {
                        unsigned why;
                        double want = oracle_rating(hosts, n, i, &d, &p, &why);
                        assert_int_equal(out[i].host_index, i);
                        assert_true(fabs(out[i].rating - want) <= 1e-9);
                        assert_true(isfinite(out[i].rating));
                        /* state and invalid figures stop the later checks
                         * in the engine; the oracle lists all rule bits */
                        if (why & PLACE_WHY_STATE)
                                assert_int_equal(out[i].why, PLACE_WHY_STATE);
                        else
                                assert_int_equal(out[i].why, why);
                        if (want > 0) {
                                expect_fit++;
                                fits++;
                                assert_string_equal(out[i].reason, "");
                                assert_true(out[i].half_stars >= 1 && out[i].half_stars <= 10);
                                if (want > best_rating) {
                                        best_rating = want;
                                        best = (ssize_t) i;
                                }
                        } else {
                                zeros++;
                                assert_int_equal(out[i].half_stars, 0);
                                assert_true(strlen(out[i].reason) > 0);
                                assert_true(strlen(out[i].reason) < PLACE_REASON_MAX);
                                check_reason_numbers(&hosts[i], &d, &out[i]);
                                cuts += strstr(out[i].reason, "; ...") != NULL;
                        }
                }
                assert_int_equal(n_fit, expect_fit);
                assert_int_equal(place_best(out, n), best);
                /* stars exactly as documented: round(10 * rating / best), at least 1 */
                for (size_t i = 0; i < n && best >= 0; i++) {
                        if (out[i].rating <= 0)
                                continue;
                        int hs = (int) floor(10.0 * out[i].rating / out[best].rating + 0.5);
                        assert_int_equal(out[i].half_stars, hs < 1 ? 1 : hs);
                }
                if (best >= 0)
                        assert_int_equal(out[best].half_stars, 10);

                place_order(out, n, order);
                for (size_t k = 0; k + 1 < n; k++) {
                        const PlaceRating *x = &out[order[k]], *y = &out[order[k + 1]];
                        assert_true(x->rating > y->rating ||
                                    (x->rating == y->rating && x->host_index < y->host_index));
                        /* stars monotone in rating */
                        assert_true(x->half_stars >= y->half_stars);
                }
                if (n > 0 && best >= 0)
                        assert_int_equal(order[0], best);
        }
        /* the generator must exercise both sides */
        assert_true(zeros > 1000);
        assert_true(fits > 1000);
        /* names here are short: dropping a sentence must stay exceptional */
        assert_true(cuts * 100 < zeros);
}

/* Many hosts in one call: the affinity anchors are looked up across the
 * whole array, and the results must still match host by host. */
static void test_oracle_large(void **state) {
        enum { N = 2000 };
        PlaceHost *hosts = calloc(N, sizeof *hosts);
        PlaceRating *out = calloc(N, sizeof *out);
        assert_non_null(hosts);
        assert_non_null(out);
        rng_state = 77;
        int32_t anti[1], aff[2];
        for (int round = 0; round < 4; round++) {
                for (size_t i = 0; i < N; i++)
                        random_host(&hosts[i], i);
                PlaceDemand d;
                PlacePolicy p;
                random_demand(&d, &p, anti, aff);
                aff[0] = 2;
                d.affinity = aff;
                d.n_affinity = round % 2 + 1;
                assert_true(place_rate_hosts(hosts, N, &d, &p, out) >= 0);
                for (size_t i = 0; i < N; i++) {
                        unsigned why;
                        double want = oracle_rating(hosts, N, i, &d, &p, &why);
                        assert_true(fabs(out[i].rating - want) <= 1e-9);
                        assert_int_equal(out[i].why, why & PLACE_WHY_STATE ? PLACE_WHY_STATE : why);
                }
        }
        free(out);
        free(hosts);
}

/* ---- hand-made cases ---- */

static PlaceHost plain_host(void) {
        return (PlaceHost) {
                .name = "kvm01",
                .cap = { 3200, 16384, 1000, 10000, 10000 },
                .used = { 800, 4096, 200, 1000, 1000 },
        };
}

static PlaceDemand plain_demand(void) {
        return (PlaceDemand) { .vm_name = "web02", .demand = { 200, 4096, 50, 100, 100 } };
}

static void test_no_hosts(void **state) {
        PlaceDemand d = plain_demand();
        PlacePolicy p;
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, &p);
        assert_int_equal(place_rate_hosts(NULL, 0, &d, &p, NULL), 0);
        assert_int_equal(place_best(NULL, 0), -1);
        place_order(NULL, 0, NULL);
}

static void test_invalid_input(void **state) {
        PlaceHost h = plain_host();
        PlaceRating r = { .rating = 42 };
        PlaceDemand d = plain_demand();
        PlacePolicy p;
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, &p);
        assert_int_equal(place_rate_hosts(&h, 1, NULL, &p, &r), -EINVAL);
        assert_int_equal(place_rate_hosts(&h, 1, &d, NULL, &r), -EINVAL);
        assert_int_equal(place_rate_hosts(NULL, 1, &d, &p, &r), -EINVAL);
        d.demand[PLACE_R_CPU] = NAN;
        assert_int_equal(place_rate_hosts(&h, 1, &d, &p, &r), -EINVAL);
        d = plain_demand();
        d.demand[PLACE_R_DISK] = -1;
        assert_int_equal(place_rate_hosts(&h, 1, &d, &p, &r), -EINVAL);
        d = plain_demand();
        p.weight[PLACE_R_NETWORK] = -0.5;
        assert_int_equal(place_rate_hosts(&h, 1, &d, &p, &r), -EINVAL);
        memset(p.weight, 0, sizeof p.weight);
        assert_int_equal(place_rate_hosts(&h, 1, &d, &p, &r), -EINVAL);
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, &p);
        p.goal = (PlaceGoal) 9;
        assert_int_equal(place_rate_hosts(&h, 1, &d, &p, &r), -EINVAL);
        /* outputs untouched on error */
        assert_true(r.rating == 42);

        /* a host's bad figures are not an error, only a zero */
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, &p);
        h.used[PLACE_R_NETWORK] = NAN;
        assert_int_equal(place_rate_hosts(&h, 1, &d, &p, &r), 0);
        assert_int_equal(r.why, PLACE_WHY_INVALID);
        assert_string_equal(r.reason, "host reports invalid resource figures (negative, NaN or infinite)");
}

static void test_memory_reason_exact(void **state) {
        PlaceHost h = plain_host();
        h.cap[PLACE_R_MEMORY] = 16384;
        h.used[PLACE_R_MEMORY] = 16384 - 1024 - 2900;
        h.reserve.memory_mib = 1024;
        PlaceDemand d = plain_demand();
        PlacePolicy p;
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, &p);
        PlaceRating r;
        assert_int_equal(place_rate_hosts(&h, 1, &d, &p, &r), 0);
        assert_true(r.rating == 0);
        assert_int_equal(r.half_stars, 0);
        assert_int_equal(r.why, PLACE_WHY_MEMORY);
        assert_string_equal(r.reason, "memory: needs 4096 MiB, 2900 MiB left after the 1024 MiB reserve");
        assert_int_equal(place_best(&r, 1), -1);

        /* exactly enough fits */
        h.used[PLACE_R_MEMORY] = 16384 - 1024 - 4096;
        assert_int_equal(place_rate_hosts(&h, 1, &d, &p, &r), 1);
        assert_true(r.rating > 0);
        assert_int_equal(r.half_stars, 10);
        assert_string_equal(r.reason, "");

        /* huge figures still print as whole numbers */
        PlaceHost huge = plain_host();
        huge.cap[PLACE_R_MEMORY] = 1e18;
        huge.used[PLACE_R_MEMORY] = 1e18;
        PlaceDemand dh = plain_demand();
        dh.demand[PLACE_R_MEMORY] = 2e15;
        assert_int_equal(place_rate_hosts(&huge, 1, &dh, &p, &r), 0);
        assert_string_equal(r.reason, "memory: needs 2000000000000000 MiB, 0 MiB left after the 0 MiB reserve");
        huge.reserve.memory_mib = 0;
        huge.used[PLACE_R_MEMORY] = 1e18 - 1e17;
        dh.demand[PLACE_R_MEMORY] = 2e17;
        assert_int_equal(place_rate_hosts(&huge, 1, &dh, &p, &r), 0);
        assert_string_equal(r.reason, "memory: needs 200000000000000000 MiB, 100000000000000000 MiB left after "
                                      "the 0 MiB reserve");

        /* fractional figures never read as if they fitted */
        h.used[PLACE_R_MEMORY] = 16384 - 1024 - 4095.6;
        d.demand[PLACE_R_MEMORY] = 4095.7;
        assert_int_equal(place_rate_hosts(&h, 1, &d, &p, &r), 0);
        assert_string_equal(r.reason, "memory: needs 4096 MiB, 4095 MiB left after the 1024 MiB reserve");
}

static void test_all_full(void **state) {
        PlaceHost hosts[3];
        PlaceRating r[3];
        for (int i = 0; i < 3; i++) {
                hosts[i] = plain_host();
                hosts[i].used[PLACE_R_MEMORY] = 16000;
                hosts[i].used[PLACE_R_DISK] = 999;
        }
        PlaceDemand d = plain_demand();
        PlacePolicy p;
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, &p);
        assert_int_equal(place_rate_hosts(hosts, 3, &d, &p, r), 0);
        assert_int_equal(place_best(r, 3), -1);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(r[i].why, PLACE_WHY_MEMORY | PLACE_WHY_DISK);
                assert_string_equal(r[i].reason, "memory: needs 4096 MiB, 384 MiB left after the 0 MiB reserve; "
                                                 "disk space: needs 50 GiB, 1 GiB left after the 0 GiB reserve");
        }
}

static void test_zero_capacity(void **state) {
        PlaceHost h[2] = { plain_host(), plain_host() };
        PlaceRating r[2];
        PlaceDemand d = plain_demand();
        PlacePolicy p;
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, &p);

        /* demanded hard resource with no capacity: zero with a reason */
        h[0].cap[PLACE_R_MEMORY] = 0;
        h[0].used[PLACE_R_MEMORY] = 0;
        assert_int_equal(place_rate_hosts(h, 2, &d, &p, r), 1);
        assert_string_equal(r[0].reason, "memory: needs 4096 MiB, 0 MiB left after the 0 MiB reserve");
        assert_int_equal(place_best(r, 2), 1);

        /* no network and none asked: left out of the mean */
        h[0] = plain_host();
        h[0].cap[PLACE_R_NETWORK] = 0;
        h[0].used[PLACE_R_NETWORK] = 0;
        d.demand[PLACE_R_NETWORK] = 0;
        PlacePolicy p_no_net = p;
        p_no_net.weight[PLACE_R_NETWORK] = 0;
        PlaceRating ref;
        assert_int_equal(place_rate_hosts(&h[1], 1, &d, &p_no_net, &ref), 1);
        assert_int_equal(place_rate_hosts(h, 2, &d, &p, r), 2);
        assert_true(isfinite(r[0].rating));
        assert_true(fabs(r[0].rating - ref.rating) < 1e-12);

        /* no network but some asked: soft, fits, scores lower */
        d.demand[PLACE_R_NETWORK] = 100;
        assert_int_equal(place_rate_hosts(h, 2, &d, &p, r), 2);
        assert_true(isfinite(r[0].rating));
        assert_true(r[0].rating > 0 && r[0].rating < r[1].rating);

        /* disk space not demanded (shared storage): a full local disk is fine */
        h[0] = plain_host();
        h[0].used[PLACE_R_DISK] = 1000;
        d = plain_demand();
        d.demand[PLACE_R_DISK] = 0;
        assert_int_equal(place_rate_hosts(h, 1, &d, &p, r), 1);

        /* everything zero: still a fitting host, at the floor */
        PlaceHost empty = { .name = "void" };
        PlaceDemand none = { .vm_name = "tiny" };
        assert_int_equal(place_rate_hosts(&empty, 1, &none, &p, r), 1);
        assert_true(r[0].rating == 0.01);
        assert_int_equal(r[0].half_stars, 10);
}

static void test_reserves_above_capacity(void **state) {
        PlaceHost h[2] = { plain_host(), plain_host() };
        PlaceRating r[2];
        PlaceDemand d = plain_demand();
        PlacePolicy p;
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, &p);
        h[0].reserve.memory_mib = 20000;
        h[0].reserve.disk_gib = 5000;
        assert_int_equal(place_rate_hosts(h, 2, &d, &p, r), 1);
        assert_string_equal(r[0].reason, "memory: needs 4096 MiB, 0 MiB left after the 20000 MiB reserve; "
                                         "disk space: needs 50 GiB, 0 GiB left after the 5000 GiB reserve");
        /* soft reserves above capacity only lower the rating */
        h[0] = plain_host();
        h[0].reserve.cpu_pct = 150;
        h[0].reserve.network_pct = 101;
        assert_int_equal(place_rate_hosts(h, 2, &d, &p, r), 2);
        assert_true(r[0].rating > 0 && r[0].rating < r[1].rating);
        assert_int_equal(place_best(r, 2), 1);
}

static void test_ties_and_states(void **state) {
        PlaceHost h[4] = { plain_host(), plain_host(), plain_host(), plain_host() };
        PlaceRating r[4];
        size_t order[4];
        PlaceDemand d = plain_demand();
        PlacePolicy p;
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, &p);
        assert_int_equal(place_rate_hosts(h, 4, &d, &p, r), 4);
        assert_int_equal(place_best(r, 4), 0);
        place_order(r, 4, order);
        for (size_t i = 0; i < 4; i++)
                assert_int_equal(order[i], i);

        /* the emptiest hosts are in maintenance or unreachable: never chosen */
        static const PlaceHostState bad_states[] = {
                PLACE_HOST_MAINTENANCE, PLACE_HOST_UNREACHABLE, PLACE_HOST_FAILED, PLACE_HOST_DISABLED };
        static const char *const sentences[] = {
                "host is in maintenance", "host is unreachable", "host has failed",
                "host is disabled for placement" };
        for (size_t s = 0; s < ELEMENTSOF(bad_states); s++) {
                h[0].used[PLACE_R_CPU] = 0;
                h[0].used[PLACE_R_MEMORY] = 0;
                h[0].state = bad_states[s];
                h[3].used[PLACE_R_MEMORY] = 16384;      /* also full: state says it all */
                h[3].state = bad_states[s];
                assert_int_equal(place_rate_hosts(h, 4, &d, &p, r), 2);
                assert_int_equal(place_best(r, 4), 1);
                assert_string_equal(r[0].reason, sentences[s]);
                assert_string_equal(r[3].reason, sentences[s]);
                assert_int_equal(r[3].why, PLACE_WHY_STATE);
                place_order(r, 4, order);
                assert_int_equal(order[0], 1);
                assert_int_equal(order[1], 2);
                assert_int_equal(order[2], 0);
                assert_int_equal(order[3], 3);
        }
}

static void test_goals(void **state) {
        PlaceHost h[4] = { plain_host(), plain_host(), plain_host(), plain_host() };
        PlaceRating r[4];
        PlaceDemand d = plain_demand();
        PlacePolicy p;
        /* memory 10%, 50%, 70%, 90% used; 90% cannot take 4096 of 16384 */
        h[0].used[PLACE_R_MEMORY] = 1638;
        h[1].used[PLACE_R_MEMORY] = 8192;
        h[2].used[PLACE_R_MEMORY] = 11468;
        h[3].used[PLACE_R_MEMORY] = 14745;
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, &p);
        assert_int_equal(place_rate_hosts(h, 4, &d, &p, r), 3);
        assert_int_equal(place_best(r, 4), 0);
        assert_true(r[0].rating > r[1].rating && r[1].rating > r[2].rating);
        assert_true(r[0].half_stars >= r[1].half_stars && r[1].half_stars >= r[2].half_stars);
        assert_true(r[2].half_stars >= 1);

        place_policy_default(PLACE_GOAL_RESOURCE_MAXIMIZATION, &p);
        assert_int_equal(place_rate_hosts(h, 4, &d, &p, r), 3);
        assert_int_equal(place_best(r, 4), 2);  /* the fullest that still fits */
        assert_true(r[2].rating > r[1].rating && r[1].rating > r[0].rating);
        assert_true(r[3].rating == 0);
        assert_non_null(strstr(r[3].reason, "memory: needs 4096 MiB, 1639 MiB left"));

        /* maximization does not prefer overcommitting CPU */
        h[2].used[PLACE_R_CPU] = 3100;
        assert_int_equal(place_rate_hosts(h, 4, &d, &p, r), 3);
        assert_int_equal(place_best(r, 4), 1);
        assert_true(r[2].rating > 0);
}

static void test_failover_reserve(void **state) {
        PlaceHost h[2] = { plain_host(), plain_host() };
        PlaceRating r[2];
        PlaceDemand d = plain_demand();
        PlacePolicy p;
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, &p);
        h[0].used[PLACE_R_MEMORY] = 8192;
        h[0].reserve.memory_mib = 1024;
        h[0].failover_reserve_mib = 4000;       /* 7168 left, 3168 after failover */
        assert_int_equal(place_rate_hosts(h, 2, &d, &p, r), 1);
        assert_int_equal(r[0].why, PLACE_WHY_FAILOVER);
        assert_string_equal(r[0].reason, "failover reserve: needs 4096 MiB, 3168 MiB left after the 1024 MiB "
                                         "reserve and the 4000 MiB kept free for the cluster's N+1 failover");
        h[0].failover_reserve_mib = 3072;       /* exactly enough */
        assert_int_equal(place_rate_hosts(h, 2, &d, &p, r), 2);
        /* the failover reserve counts as reserve in the rating too */
        h[1] = h[0];
        h[1].failover_reserve_mib = 0;
        assert_int_equal(place_rate_hosts(h, 2, &d, &p, r), 2);
        assert_true(r[0].rating < r[1].rating);
}

static void test_rules(void **state) {
        const PlaceMember on0[] = { { 10, "web01" } };
        const PlaceMember on2[] = { { 3, "x" }, { 20, "db01" } };
        PlaceHost h[3] = { plain_host(), plain_host(), plain_host() };
        h[0].members = on0;
        h[0].n_members = 1;
        h[0].used[PLACE_R_CPU] = 0;     /* the emptiest */
        h[2].name = "kvm03";
        h[2].members = on2;
        h[2].n_members = 2;
        PlaceRating r[3];
        PlaceDemand d = plain_demand();
        PlacePolicy p;
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, &p);
        const int32_t anti[] = { 10 }, aff[] = { 20 }, aff_nobody[] = { 99 };

        d.anti_affinity = anti;
        d.n_anti_affinity = 1;
        assert_int_equal(place_rate_hosts(h, 3, &d, &p, r), 2);
        assert_int_equal(place_best(r, 3), 1);
        assert_int_equal(r[0].why, PLACE_WHY_ANTI_AFFINITY);
        assert_string_equal(r[0].reason, "anti-affinity: runs 'web01', which must not share a host with 'web02'");

        d.affinity = aff;
        d.n_affinity = 1;
        assert_int_equal(place_rate_hosts(h, 3, &d, &p, r), 1);
        assert_int_equal(place_best(r, 3), 2);
        assert_string_equal(r[1].reason, "affinity: 'web02' must share a host with 'db01', which runs on 'kvm03'");
        assert_string_equal(r[0].reason, "anti-affinity: runs 'web01', which must not share a host with 'web02'; "
                                         "affinity: 'web02' must share a host with 'db01', which runs on 'kvm03'");

        /* an affinity group with no running member constrains nothing */
        d.affinity = aff_nobody;
        assert_int_equal(place_rate_hosts(h, 3, &d, &p, r), 2);

        /* the member's host in maintenance still anchors the group: nothing fits */
        d.affinity = aff;
        h[2].state = PLACE_HOST_MAINTENANCE;
        assert_int_equal(place_rate_hosts(h, 3, &d, &p, r), 0);
        assert_int_equal(place_best(r, 3), -1);
        assert_string_equal(r[2].reason, "host is in maintenance");

        /* unnamed VMs still give whole sentences */
        const PlaceMember anon[] = { { 10, NULL } };
        h[0].members = anon;
        d.vm_name = NULL;
        d.n_affinity = 0;
        assert_int_equal(place_rate_hosts(h, 3, &d, &p, r), 1);
        assert_string_equal(r[0].reason, "anti-affinity: runs a member of rule group 10, which must not share "
                                         "a host with 'the new VM'");
}

/* A VM whose cards use networks rates 0 where one is missing or not
 * active, with one sentence per network, both through place_rate_hosts()
 * and the prepared table; a demand without networks ignores them. */
static void test_networks(void **state) {
        const PlaceNetwork both[] = { { "lan", true }, { "dmz", true } };
        const PlaceNetwork lan_down[] = { { "lan", false }, { "dmz", true } };
        const PlaceNetwork only_dmz[] = { { "dmz", true } };
        PlaceHost h[4] = { plain_host(), plain_host(), plain_host(), plain_host() };
        h[0].networks = both;
        h[0].n_networks = 2;
        h[1].networks = lan_down;
        h[1].n_networks = 2;
        h[2].networks = only_dmz;
        h[2].n_networks = 1;
        /* h[3] has no network at all */
        h[3].used[PLACE_R_MEMORY] = 16384;              /* and no memory left */
        PlaceDemand d = plain_demand();
        PlacePolicy p;
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, &p);
        PlaceRating r[4];
        assert_int_equal(place_rate_hosts(h, 4, &d, &p, r), 3);        /* no networks asked: only memory counts */

        const char *const nets[] = { "lan", "dmz" };
        d.networks = nets;
        d.n_networks = 2;
        assert_int_equal(place_rate_hosts(h, 4, &d, &p, r), 1);
        assert_int_equal(place_best(r, 4), 0);
        assert_true(r[0].half_stars > 0);
        assert_int_equal(r[1].why, PLACE_WHY_NETWORK);
        assert_int_equal(r[1].half_stars, 0);
        assert_string_equal(r[1].reason, "network 'lan' not active on host");
        assert_string_equal(r[2].reason, "network 'lan' missing on host");
        assert_int_equal(r[3].why, PLACE_WHY_MEMORY | PLACE_WHY_NETWORK);
        assert_true(strstr(r[3].reason, "memory: needs 4096 MiB") == r[3].reason);
        assert_non_null(strstr(r[3].reason, "; network 'lan' missing on host; network 'dmz' missing on host"));

        /* the table rates and explains the same */
        PlaceTable *t = NULL;
        assert_int_equal(place_table_new(h, 4, &t), 0);
        PlaceScore sc[4];
        assert_int_equal(place_table_rate(t, &d, &p, sc), 1);
        for (size_t i = 0; i < 4; i++) {
                char reason[PLACE_REASON_MAX];
                assert_int_equal(sc[i].why, r[i].why);
                assert_int_equal(sc[i].half_stars, r[i].half_stars);
                place_table_reason(t, i, &d, sc[i].why, reason);
                assert_string_equal(reason, r[i].reason);
        }
        /* a host in maintenance gives only its state */
        h[2].state = PLACE_HOST_MAINTENANCE;
        assert_int_equal(place_rate_hosts(h, 4, &d, &p, r), 1);
        assert_string_equal(r[2].reason, "host is in maintenance");
        t = place_table_free(t);

        /* arrays NULL with a count are refused */
        d.networks = NULL;
        assert_int_equal(place_rate_hosts(h, 4, &d, &p, r), -EINVAL);
        const char *const holes[] = { "lan", NULL };
        d.networks = holes;
        assert_int_equal(place_rate_hosts(h, 4, &d, &p, r), -EINVAL);
        h[0].networks = NULL;
        assert_int_equal(place_table_new(h, 4, &t), -EINVAL);
        (void) state;
}

static void test_long_reasons(void **state) {
        char big_vm[200], big_host[200];
        memset(big_vm, 'v', sizeof big_vm - 1);
        big_vm[sizeof big_vm - 1] = 0;
        memset(big_host, 'h', sizeof big_host - 1);
        big_host[sizeof big_host - 1] = 0;
        const PlaceMember m0[] = { { 1, big_vm } }, m1[] = { { 2, big_vm } };
        PlaceHost h[2] = { plain_host(), plain_host() };
        h[0].members = m0;
        h[0].n_members = 1;
        h[0].used[PLACE_R_MEMORY] = 16384;
        h[1].name = big_host;
        h[1].members = m1;
        h[1].n_members = 1;
        PlaceDemand d = plain_demand();
        const int32_t anti[] = { 1 }, aff[] = { 2 };
        d.vm_name = big_vm;
        d.anti_affinity = anti;
        d.n_anti_affinity = 1;
        d.affinity = aff;
        d.n_affinity = 1;
        PlacePolicy p;
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, &p);
        PlaceRating r[2];
        assert_int_equal(place_rate_hosts(h, 2, &d, &p, r), 1);
        assert_int_equal(r[0].why, PLACE_WHY_MEMORY | PLACE_WHY_ANTI_AFFINITY | PLACE_WHY_AFFINITY);
        size_t len = strlen(r[0].reason);
        assert_true(len < PLACE_REASON_MAX);
        assert_true(strncmp(r[0].reason, "memory: needs 4096 MiB, 0 MiB left", 34) == 0);
        assert_string_equal(r[0].reason + len - 5, "; ...");
}

/* ---- consolidation ---- */

static void usable_of(const PlaceHostModel *m, double *u) {
        u[PLACE_R_CPU] = m->cap[PLACE_R_CPU] * (1 - m->reserve.cpu_pct / 100);
        u[PLACE_R_MEMORY] = m->cap[PLACE_R_MEMORY] - m->reserve.memory_mib;
        u[PLACE_R_DISK] = m->cap[PLACE_R_DISK] - m->reserve.disk_gib;
        u[PLACE_R_DISK_IO] = m->cap[PLACE_R_DISK_IO] * (1 - m->reserve.disk_io_pct / 100);
        u[PLACE_R_NETWORK] = m->cap[PLACE_R_NETWORK] * (1 - m->reserve.network_pct / 100);
}

/* Checks a plan against capacity and recomputes the bound independently. */
static void check_plan(const PlaceServer *s, size_t n, const PlaceHostModel *m, const ssize_t *host_of,
                       const PlaceConsolidation *c) {
        double u[PLACE_R__COUNT];
        usable_of(m, u);
        double *load = calloc(n + 1, sizeof(double) * PLACE_R__COUNT);
        bool *seen = calloc(n + 1, sizeof(bool));
        double total[PLACE_R__COUNT] = {0};
        size_t unplaceable = 0, placeable = 0;
        for (size_t i = 0; i < n; i++) {
                bool too_big = false;
                for (int r = 0; r < PLACE_R__COUNT; r++)
                        if (s[i].demand[r] > 0 && s[i].demand[r] > u[r])
                                too_big = true;
                if (too_big) {
                        assert_int_equal(host_of[i], -1);
                        unplaceable++;
                        continue;
                }
                placeable++;
                assert_true(host_of[i] >= 0 && (size_t) host_of[i] < c->n_hosts);
                seen[host_of[i]] = true;
                for (int r = 0; r < PLACE_R__COUNT; r++) {
                        load[(size_t) host_of[i] * PLACE_R__COUNT + r] += s[i].demand[r];
                        total[r] += s[i].demand[r] / u[r];
                }
        }
        for (size_t b = 0; b < c->n_hosts; b++) {
                assert_true(seen[b]);           /* no empty host in the plan */
                for (int r = 0; r < PLACE_R__COUNT; r++)
                        assert_true(load[b * PLACE_R__COUNT + r] <= u[r] * (1 + 1e-9) + 1e-9);
        }
        size_t lb = 0;
        for (int r = 0; r < PLACE_R__COUNT; r++)
                if (ceil(total[r] - 1e-6) > (double) lb)
                        lb = (size_t) ceil(total[r] - 1e-6);
        if (placeable > 0 && lb == 0)
                lb = 1;
        assert_int_equal(c->n_unplaceable, unplaceable);
        assert_true(c->lower_bound == lb || c->lower_bound == lb + 1);  /* rounding at an exact integer */
        assert_true(c->n_hosts >= c->lower_bound);
        assert_true(c->n_hosts >= lb);
        free(seen);
        free(load);
}

static const PlaceHostModel model64 = {
        .cap = { 6400, 524288, 20000, 200000, 20000 },
        .reserve = { 10, 8192, 500, 10, 10 },
};

static void random_server(PlaceServer *s, int profile) {
        double vcpus = (double) (2u << rng_below(4));
        switch (profile) {
        case 0:         /* P2V-like: small against the host */
                *s = (PlaceServer) { .demand = {
                        vcpus * 100 * (0.1 + 0.7 * rng_unit()),
                        (double) (2048u << rng_below(5)) * (0.5 + 0.5 * rng_unit()),
                        40 + 1460 * rng_unit(), 50 + 5950 * rng_unit(), 5 + 795 * rng_unit() } };
                break;
        case 1:         /* memory-heavy and CPU-heavy servers mixed */
                if (rng_below(2))
                        *s = (PlaceServer) { .demand = { 200 * rng_unit(), 20000 + 60000 * rng_unit(),
                                                         100, 500, 50 } };
                else
                        *s = (PlaceServer) { .demand = { 300 + 900 * rng_unit(), 2048 + 4096 * rng_unit(),
                                                         100, 500, 50 } };
                break;
        default:        /* big ones, and now and then too big */
                *s = (PlaceServer) { .demand = {
                        600 * rng_unit() * vcpus, 65536 * rng_unit() * 2, 3000 * rng_unit(),
                        20000 * rng_unit(), 4000 * rng_unit() } };
                if (rng_below(50) == 0)
                        s->demand[PLACE_R_MEMORY] = 600000;
                break;
        }
}

static void test_consolidate_random(void **state) {
        enum { N = 200 };
        PlaceServer s[N];
        ssize_t host_of[N];
        rng_state = 5;
        double worst = 0;
        for (int profile = 0; profile < 3; profile++)
                for (int round = 0; round < 30; round++) {
                        for (size_t i = 0; i < N; i++)
                                random_server(&s[i], profile);
                        PlaceConsolidation c;
                        assert_int_equal(place_consolidate(s, N, &model64, host_of, &c), 0);
                        check_plan(s, N, &model64, host_of, &c);
                        double ratio = (double) c.n_hosts / (double) c.lower_bound;
                        if (ratio > worst)
                                worst = ratio;
                        assert_true(ratio <= 1.10);
                }
        print_message("consolidation: worst hosts/lower bound over 90 sets of %d servers: %.3f\n", N, worst);
}

/* Above BIN_CENTRIC_CHUNK servers the greedy works in slices: still valid,
 * still near the bound, and the same plan every time. */
static void test_consolidate_large(void **state) {
        enum { N = 2500 };
        PlaceServer *s = calloc(N, sizeof *s);
        ssize_t *a = calloc(N, sizeof *a), *b = calloc(N, sizeof *b);
        assert_non_null(s);
        assert_non_null(a);
        assert_non_null(b);
        rng_state = 99;
        for (int profile = 0; profile < 2; profile++) {
                for (size_t i = 0; i < N; i++)
                        random_server(&s[i], profile);
                PlaceConsolidation c1, c2;
                assert_int_equal(place_consolidate(s, N, &model64, a, &c1), 0);
                check_plan(s, N, &model64, a, &c1);
                print_message("consolidation: %d servers, profile %d: %zu hosts, lower bound %zu\n", N, profile,
                              c1.n_hosts, c1.lower_bound);
                /* the 1.05 target; P2V-like sets reach the bound within 1%
                 * only with the improvement pass */
                assert_true((double) c1.n_hosts <= (profile == 0 ? 1.01 : 1.05) * (double) c1.lower_bound);
                assert_int_equal(place_consolidate(s, N, &model64, b, &c2), 0);
                assert_int_equal(c1.n_hosts, c2.n_hosts);
                assert_memory_equal(a, b, N * sizeof *a);
        }
        free(b);
        free(a);
        free(s);
}

static void test_consolidate_edges(void **state) {
        PlaceConsolidation c = { .n_hosts = 99 };
        ssize_t host_of[8];
        assert_int_equal(place_consolidate(NULL, 0, &model64, NULL, &c), 0);
        assert_int_equal(c.n_hosts, 0);
        assert_int_equal(c.lower_bound, 0);
        assert_int_equal(c.n_unplaceable, 0);

        /* four half-hosts exactly fill two hosts */
        PlaceHostModel m = { .cap = { 1000, 1000, 1000, 1000, 1000 } };
        PlaceServer half[4];
        for (int i = 0; i < 4; i++)
                half[i] = (PlaceServer) { .demand = { 500, 500, 500, 500, 500 } };
        assert_int_equal(place_consolidate(half, 4, &m, host_of, &c), 0);
        assert_int_equal(c.n_hosts, 2);
        assert_int_equal(c.lower_bound, 2);
        check_plan(half, 4, &m, host_of, &c);

        /* complementary shapes pair up: bound 2, the plan must find it */
        PlaceServer pairs[4] = {
                { { 700, 300, 0, 0, 0 } }, { { 700, 300, 0, 0, 0 } },
                { { 300, 700, 0, 0, 0 } }, { { 300, 700, 0, 0, 0 } },
        };
        assert_int_equal(place_consolidate(pairs, 4, &m, host_of, &c), 0);
        assert_int_equal(c.lower_bound, 2);
        assert_int_equal(c.n_hosts, 2);
        check_plan(pairs, 4, &m, host_of, &c);

        /* too big for an empty host: -1, out of the bound */
        PlaceServer big[3] = { { { 100, 100 } }, { { 100, 1500 } }, { { 100, 100, 0, 0, 1001 } } };
        assert_int_equal(place_consolidate(big, 3, &m, host_of, &c), 0);
        assert_int_equal(host_of[0], 0);
        assert_int_equal(host_of[1], -1);
        assert_int_equal(host_of[2], -1);
        assert_int_equal(c.n_unplaceable, 2);
        assert_int_equal(c.lower_bound, 1);
        assert_int_equal(c.n_hosts, 1);

        /* nothing demanded: one host holds everything */
        PlaceServer zero[3] = {0};
        assert_int_equal(place_consolidate(zero, 3, &m, host_of, &c), 0);
        assert_int_equal(c.n_hosts, 1);
        assert_int_equal(c.lower_bound, 1);

        /* reserve leaves no network: servers that need some are unplaceable */
        PlaceHostModel no_net = m;
        no_net.reserve.network_pct = 100;
        PlaceServer net[2] = { { { 100, 100 } }, { { 100, 100, 0, 0, 1 } } };
        assert_int_equal(place_consolidate(net, 2, &no_net, host_of, &c), 0);
        assert_int_equal(c.n_unplaceable, 1);
        assert_int_equal(host_of[0], 0);
        assert_int_equal(host_of[1], -1);

        /* bad figures */
        PlaceServer nan_s[1] = { { { NAN } } };
        c.n_hosts = 77;
        assert_int_equal(place_consolidate(nan_s, 1, &m, host_of, &c), -EINVAL);
        assert_int_equal(c.n_hosts, 77);
        assert_int_equal(place_consolidate(half, 4, NULL, host_of, &c), -EINVAL);
        PlaceHostModel neg = m;
        neg.cap[PLACE_R_DISK] = -1;
        assert_int_equal(place_consolidate(half, 4, &neg, host_of, &c), -EINVAL);
}

static void test_names(void **state) {
        assert_string_equal(place_resource_name(PLACE_R_MEMORY), "memory");
        assert_string_equal(place_resource_name(PLACE_R_DISK_IO), "disk I/O");
        assert_string_equal(place_resource_name(PLACE_R__COUNT), "unknown");
}

/* The prepared table (place_table_new/rate/reason) against place_rate_hosts()
 * on random estates of 2,000 hosts — states, invalid figures, zero
 * capacities, reserves above capacity, failover reserves, rule members,
 * both goals, random weights, affinity and anti-affinity: every rating
 * bit for bit, every why, half star, reason and the order. Half the rounds
 * have no zero capacity, so the table's fast per-host path is the one
 * compared. */
static void test_table_identical(void **state) {
        enum { N = 2000, ROUNDS = 40 };
        PlaceHost *hosts = calloc(N, sizeof *hosts);
        PlaceRating *ref = calloc(N, sizeof *ref);
        PlaceScore *fast = calloc(N, sizeof *fast);
        size_t *ref_order = calloc(N, sizeof *ref_order), *fast_order = calloc(N, sizeof *fast_order);
        assert_non_null(hosts);
        assert_non_null(ref);
        assert_non_null(fast);
        rng_state = 1313;
        size_t compared_fit = 0, compared_zero = 0;
        for (int round = 0; round < ROUNDS; round++) {
                for (size_t i = 0; i < N; i++) {
                        random_host(&hosts[i], i);
                        for (int r = 0; round % 2 == 0 && r < PLACE_R__COUNT; r++)
                                if (hosts[i].cap[r] == 0)
                                        hosts[i].cap[r] = 1000;
                }
                PlaceDemand d;
                PlacePolicy p;
                int32_t anti[1], aff[2];
                random_demand(&d, &p, anti, aff);
                int n_ref = place_rate_hosts(hosts, N, &d, &p, ref);
                PlaceTable *t = NULL;
                assert_int_equal(place_table_new(hosts, N, &t), 0);
                assert_int_equal(place_table_size(t), N);
                int n_fast = place_table_rate(t, &d, &p, fast);
                assert_int_equal(n_fast, n_ref);
                for (size_t i = 0; i < N; i++) {
                        char reason[PLACE_REASON_MAX];
                        assert_memory_equal(&fast[i].rating, &ref[i].rating, sizeof(double));
                        assert_int_equal(fast[i].why, ref[i].why);
                        assert_int_equal(fast[i].half_stars, ref[i].half_stars);
                        place_table_reason(t, i, &d, fast[i].why, reason);
                        assert_string_equal(reason, ref[i].reason);
                        if (ref[i].rating > 0)
                                compared_fit++;
                        else
                                compared_zero++;
                }
                assert_int_equal(place_score_best(fast, N), place_best(ref, N));
                place_order(ref, N, ref_order);
                place_score_order(fast, N, fast_order);
                assert_memory_equal(fast_order, ref_order, N * sizeof *ref_order);
                t = place_table_free(t);
                assert_null(t);
        }
        /* both paths were exercised */
        assert_true(compared_fit > 1000);
        assert_true(compared_zero > 1000);
        free(fast_order);
        free(ref_order);
        free(fast);
        free(ref);
        free(hosts);
        (void) state;
}

static void test_table_invalid(void **state) {
        PlaceTable *t = NULL;
        PlaceHost h = plain_host();
        h.n_members = 1;        /* members NULL with a count */
        assert_int_equal(place_table_new(&h, 1, &t), -EINVAL);
        assert_int_equal(place_table_new(NULL, 1, &t), -EINVAL);
        assert_int_equal(place_table_new(NULL, 0, &t), 0);
        PlaceDemand d = plain_demand();
        PlacePolicy p;
        place_policy_default(PLACE_GOAL_LOAD_BALANCING, &p);
        assert_int_equal(place_table_rate(t, &d, &p, NULL), 0);
        p.weight[0] = -1;
        assert_int_equal(place_table_rate(t, &d, &p, NULL), -EINVAL);
        assert_null(place_table_free(t));
        assert_null(place_table_free(NULL));
        (void) state;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_oracle),
                cmocka_unit_test(test_oracle_large),
                cmocka_unit_test(test_no_hosts),
                cmocka_unit_test(test_invalid_input),
                cmocka_unit_test(test_memory_reason_exact),
                cmocka_unit_test(test_all_full),
                cmocka_unit_test(test_zero_capacity),
                cmocka_unit_test(test_reserves_above_capacity),
                cmocka_unit_test(test_ties_and_states),
                cmocka_unit_test(test_goals),
                cmocka_unit_test(test_failover_reserve),
                cmocka_unit_test(test_rules),
                cmocka_unit_test(test_networks),
                cmocka_unit_test(test_long_reasons),
                cmocka_unit_test(test_consolidate_random),
                cmocka_unit_test(test_consolidate_large),
                cmocka_unit_test(test_consolidate_edges),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_table_identical),
                cmocka_unit_test(test_table_invalid),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
