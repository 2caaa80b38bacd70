/* manager: the lease that makes one armadad active, its renewal thread,
 * promotion and demotion, and the status of every manager (manager.h). */
#include "manager-priv.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TTL_MS 6000

int manager_new(Store *st, const ManagerConfig *cfg, Manager **ret) {
        Manager *m = xcalloc(1, sizeof *m);
        m->st = st;
        m->cfg = *cfg;
        if (m->cfg.lease_ttl_ms <= 0)
                m->cfg.lease_ttl_ms = DEFAULT_TTL_MS;
        m->url = xstrdup(cfg->url ? cfg->url : "");
        m->db = xstrdup(cfg->db ? cfg->db : "");
        char host[256] = "";
        if (gethostname(host, sizeof host - 1) < 0 || !host[0])
                snprintf(host, sizeof host, "localhost");
        m->hostname = xstrdup(host);
        uint32_t rnd = 0;
        if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd)
                rnd = (uint32_t) mono_ms();
        m->id = xasprintf("%s-%d-%08x", host, (int) getpid(), rnd);
        m->self = (StoreManagerSelf) { .id = m->id, .url = m->url, .pid = getpid(), .hostname = m->hostname,
                                       .started_at = now_ms(), .lease_ttl_ms = m->cfg.lease_ttl_ms };
        pthread_mutex_init(&m->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&m->cond, &ca);
        pthread_condattr_destroy(&ca);
        *ret = m;
        return 0;
}

/* The fence's stale hook: any thread whose fenced write was refused. */
static void on_stale(void *userdata) {
        Manager *m = userdata;
        pthread_mutex_lock(&m->lock);
        m->stale = true;
        pthread_cond_broadcast(&m->cond);
        pthread_mutex_unlock(&m->lock);
}

static const char *role_of(Manager *m) {
        pthread_mutex_lock(&m->lock);
        bool a = m->active;
        pthread_mutex_unlock(&m->lock);
        return a ? "active" : "standby";
}

static void heartbeat(Manager *m, int64_t now) {
        if (store_manager_heartbeat(m->st, &m->self, role_of(m), now) < 0)
                log_warn("cannot record this manager's heartbeat in the store");
}

/* Remembers where the active manager is (for the API's standby answers). */
static void note_active(Manager *m, const StoreLease *l, int64_t now) {
        char *url = NULL;
        if (l->holder[0] && l->expires > now) {
                char host[256];
                int64_t pid;
                if (store_manager_where(m->st, l->holder, host, &pid, &url) < 0)
                        url = NULL;
        }
        pthread_mutex_lock(&m->lock);
        free(m->active_url);
        m->active_url = url;
        pthread_mutex_unlock(&m->lock);
}

/* Phase: promotion. The fence first, so the runners' first writes carry
 * the new token; then the runners; then the API takes writes. */
static void promote(Manager *m, const StoreLease *l) {
        log_info("this manager (%s) holds the lease with token %lld; it becomes the active manager", m->id, (long long) l->token);
        store_fence_set(m->st, m->id, l->token, on_stale, m);
        /* The API takes writes from now on: what they queue waits for the
         * workers that start next. */
        pthread_mutex_lock(&m->lock);
        m->token = l->token;
        m->lease_expires = l->expires;
        m->stale = false;
        m->active = true;
        free(m->active_url);
        m->active_url = xstrdup(m->url);
        pthread_mutex_unlock(&m->lock);
        int r = m->cfg.promote ? m->cfg.promote(m->cfg.userdata) : 0;
        if (r < 0) {
                log_error("this manager could not start its runners; it gives the lease back and stays standby");
                (void) store_lease_release(m->st, m->id, l->token);
                store_fence_set(m->st, m->id, -1, on_stale, m);
                pthread_mutex_lock(&m->lock);
                m->active = false;
                m->token = 0;
                m->spent = true;
                pthread_mutex_unlock(&m->lock);
                return;
        }
        heartbeat(m, now_ms());
}

/* Phase: demotion. The fence refuses every host-changing step at once,
 * before the runners are stopped (which may take a while). */
static void demote(Manager *m, const char *why) {
        store_fence_set(m->st, m->id, -1, on_stale, m);
        pthread_mutex_lock(&m->lock);
        bool was = m->active;
        m->active = false;
        m->spent = true;
        m->stale = false;
        int64_t token = m->token;
        m->token = 0;
        free(m->active_url);     /* no longer this one: the store says who */
        m->active_url = NULL;
        pthread_mutex_unlock(&m->lock);
        StoreLease l = { 0 };
        int64_t now = now_ms();
        if (store_lease_get(m->st, &l) == 0)
                note_active(m, &l, now);
        if (!was)
                return;
        log_warn("this manager (%s) is demoted to standby: %s; it stops its runners and drops its host connections",
                 m->id, why);
        if (m->cfg.demote)
                m->cfg.demote(m->cfg.userdata);
        log_warn("this manager (%s) is a standby now (it held token %lld)", m->id, (long long) token);
        heartbeat(m, now_ms());
}

/* Active: renew, or demote when the store says the token is stale or the
 * lease could not be renewed before it ran out. */
static void tick_active(Manager *m, int64_t now) {
        pthread_mutex_lock(&m->lock);
        bool stale = m->stale;
        int64_t token = m->token, expires = m->lease_expires;
        pthread_mutex_unlock(&m->lock);
        if (stale) {
                demote(m, "the store refused a host-changing step of it as stale (another manager holds the lease)");
                return;
        }
        StoreLease l;
        int r = store_lease_acquire(m->st, m->id, token, m->cfg.lease_ttl_ms, now, &l);
        if (r == -ESTALE) {
                _cleanup_free_ char *why = xasprintf("the store refused its lease renewal: token %lld is stale, manager '%s' holds"
                                                     " the lease with token %lld", (long long) token, l.holder, (long long) l.token);
                demote(m, why);
                note_active(m, &l, now);
                return;
        }
        if (r < 0) {
                if (now >= expires)
                        demote(m, "it could not renew its lease before it expired (the store did not answer)");
                else
                        log_warn("cannot renew the manager lease (%s); retrying", strerror(-r));
                return;
        }
        pthread_mutex_lock(&m->lock);
        m->lease_expires = l.expires;
        pthread_mutex_unlock(&m->lock);
        heartbeat(m, now);
}

/* The holder of an unexpired lease whose process is gone on this very
 * machine (a crashed or killed armadad restarted here): no need to wait
 * out its lease. */
static bool holder_dead_here(Manager *m, const StoreLease *l) {
        char host[256];
        int64_t pid = 0;
        _cleanup_free_ char *url = NULL;
        if (!l->holder[0] || streq(l->holder, m->id) || store_manager_where(m->st, l->holder, host, &pid, &url) < 0)
                return false;
        return streq(host, m->hostname) && pid > 0 && pid != getpid() && kill((pid_t) pid, 0) < 0 && errno == ESRCH;
}

/* Standby: take the lease when it is free, expired or its holder died
 * here; a spent manager asks to be started afresh instead. */
static void tick_standby(Manager *m, int64_t now) {
        StoreLease cur = { 0 };
        int r = store_lease_get(m->st, &cur);
        if (r < 0 && r != -ENOENT) {
                heartbeat(m, now);
                return;
        }
        /* The shortcut serves a restarted armadad (its first look only); a
         * running standby waits for the lease to run out, as it must for a
         * holder on another machine. */
        bool free_now = r == -ENOENT || cur.expires <= now || (!m->running && holder_dead_here(m, &cur));
        pthread_mutex_lock(&m->lock);
        bool spent = m->spent, asked = m->respawn_asked;
        if (spent && free_now)
                m->respawn_asked = true;
        pthread_mutex_unlock(&m->lock);
        if (spent) {
                if (free_now && !asked && m->cfg.respawn) {
                        log_warn("no manager holds the lease; this demoted manager starts afresh to take it");
                        m->cfg.respawn(m->cfg.userdata);
                }
                note_active(m, &cur, now);
                heartbeat(m, now);
                return;
        }
        StoreLease l = { 0 };
        if (free_now) {
                r = r == 0 && cur.expires > now ? store_lease_acquire_from(m->st, m->id, m->cfg.lease_ttl_ms, now, cur.holder, &l)
                                                : store_lease_acquire(m->st, m->id, 0, m->cfg.lease_ttl_ms, now, &l);
                if (r == 0 && streq(l.holder, m->id)) {
                        promote(m, &l);
                        return;
                }
        } else
                l = cur;
        note_active(m, &l, now);
        heartbeat(m, now);
        if (m->cfg.standby_tick)
                m->cfg.standby_tick(m->cfg.userdata);
}

void manager_tick(Manager *m, int64_t now) {
        pthread_mutex_lock(&m->lock);
        bool active = m->active;
        pthread_mutex_unlock(&m->lock);
        if (active)
                tick_active(m, now);
        else
                tick_standby(m, now);
}

static void *manager_main(void *arg) {
        Manager *m = arg;
        int64_t period = m->cfg.lease_ttl_ms / 3;
        if (period < 100)
                period = 100;
        pthread_mutex_lock(&m->lock);
        while (!m->stopping) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                int64_t ns = ts.tv_nsec + (period % 1000) * 1000000LL;
                ts.tv_sec += period / 1000 + ns / 1000000000LL;
                ts.tv_nsec = ns % 1000000000LL;
                while (!m->stopping && !m->stale) {
                        if (pthread_cond_timedwait(&m->cond, &m->lock, &ts) == ETIMEDOUT)
                                break;
                }
                if (m->stopping)
                        break;
                pthread_mutex_unlock(&m->lock);
                manager_tick(m, now_ms());
                pthread_mutex_lock(&m->lock);
        }
        pthread_mutex_unlock(&m->lock);
        return NULL;
}

int manager_start(Manager *m) {
        manager_tick(m, now_ms());
        if (!manager_is_active(m))
                log_info("this manager (%s) is a standby: another manager holds the lease", m->id);
        if (pthread_create(&m->thread, NULL, manager_main, m) != 0)
                return -errno;
        m->running = true;
        return 0;
}

void manager_stop(Manager *m) {
        if (!m)
                return;
        pthread_mutex_lock(&m->lock);
        m->stopping = true;
        pthread_cond_broadcast(&m->cond);
        pthread_mutex_unlock(&m->lock);
        if (m->running)
                pthread_join(m->thread, NULL);
        m->running = false;
        pthread_mutex_lock(&m->lock);
        bool active = m->active;
        int64_t token = m->token;
        m->active = false;
        pthread_mutex_unlock(&m->lock);
        if (active && store_lease_release(m->st, m->id, token) == 0)
                log_info("this manager gave its lease back");
        (void) store_manager_remove(m->st, m->id);
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        manager_stop(m);
        store_fence_set(m->st, NULL, 0, NULL, NULL);
        pthread_mutex_destroy(&m->lock);
        pthread_cond_destroy(&m->cond);
        free(m->url);
        free(m->db);
        free(m->id);
        free(m->hostname);
        free(m->active_url);
        free(m);
        return NULL;
}

bool manager_is_active(Manager *m) {
        if (!m)
                return true;
        pthread_mutex_lock(&m->lock);
        bool a = m->active;
        pthread_mutex_unlock(&m->lock);
        return a;
}

int manager_active_url(Manager *m, char **ret) {
        pthread_mutex_lock(&m->lock);
        char *u = m->active_url && m->active_url[0] ? xstrdup(m->active_url) : NULL;
        pthread_mutex_unlock(&m->lock);
        if (!u)
                return -ENOENT;
        *ret = u;
        return 0;
}

static json_t *json_string_ms(int64_t ms) {
        char t[32];
        time_format(ms, t);
        return json_string(t);
}

static const char *engine_of(const char *db) {
        return strncmp(db, "postgresql:", 11) == 0 || strncmp(db, "postgres:", 9) == 0 ? "postgresql" : "sqlite";
}

int manager_status(Manager *m, const OpCaller *c, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *list = NULL;
        int r = store_manager_list_json(m->st, &list);
        if (r < 0)
                return op_fail_store(err, r, "the list of managers");
        StoreLease l = { 0 };
        r = store_lease_get(m->st, &l);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the manager lease");
        int64_t now = now_ms();
        bool held = l.holder[0] && l.expires > now;
        size_t i;
        json_t *it;
        json_array_foreach(list, i, it) {
                const char *id = json_string_value(json_object_get(it, "id"));
                bool me = id && streq(id, m->id);
                /* This manager: what its API does (it takes writes), not
                 * only what the lease row says. */
                bool active = held && id && streq(id, l.holder) && (!me || manager_is_active(m));
                json_object_set_new(it, "active", json_boolean(active));
                json_object_set_new(it, "this", json_boolean(me));
                if (active)
                        json_object_set_new(it, "active_since", json_string_ms(l.since));
                else
                        json_object_set_new(it, "active_since", json_null());
        }
        json_t *lease = l.token > 0 ? json_pack("{s:s, s:I, s:o, s:o, s:b}", "holder", l.holder, "token", (json_int_t) l.token,
                                                "since_at", json_string_ms(l.since), "expires_at", json_string_ms(l.expires),
                                                "held", held)
                                    : json_null();
        json_t *store = json_pack("{s:s}", "engine", engine_of(m->db));
        if (op_allowed(m->st, c, ACT_UPDATE, OBJ_SYSTEM, 0, 0)) {
                _cleanup_free_ char *masked = store_db_masked(m->db);
                json_object_set_new(store, "url", json_string(masked));
        }
        *ret = json_pack("{s:O, s:o, s:o, s:I}", "managers", list, "lease", lease, "store", store,
                         "lease_ttl_ms", (json_int_t) m->cfg.lease_ttl_ms);
        return 0;
}
