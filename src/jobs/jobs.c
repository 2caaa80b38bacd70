/* jobs: the persisted job queue and its worker pool (see jobs.h). Workers
 * wait on a condition variable that jobs_submit() signals, and also wake
 * once a second so jobs queued by another process are not left waiting.
 * A watch thread compares every running job's last progress with its
 * kind's stuck limit (see jobs.h). */
#include "jobs.h"
#include "store/store-manager.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

typedef struct {
        char kind[32];
        JobHandler fn;
        JobAbandonFn abandon;
        void *userdata;
        bool resumable;
} Handler;

struct Jobs {
        Store *st;
        unsigned n_workers;
        pthread_t *threads;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint64_t submits;       /* jobs_submit() calls so far (under lock): a worker waits only when none came since it looked */
        bool stopping, started;
        bool stuck;             /* a worker did not end at shutdown: never free */
        Handler *handlers;
        size_t n_handlers;
        /* the stuck-job watch */
        pthread_t watch;
        pthread_cond_t watch_cond;   /* only jobs_stop() signals it: submits do not wake the watch */
        bool watching;
        int stuck_percent;
        JobStuckFn on_stuck;
        void *on_stuck_data;
        StoreJobWatch *stuck_jobs; /* jobs the hook was told are stuck (under lock) */
        size_t n_stuck;
};

static const struct {
        const char *kind;
        int64_t limit_s;
} STUCK_LIMITS[] = {
        { "host.refresh", 120 }, { "vm.create", 120 }, { "vm.start", 120 }, { "vm.stop", 120 }, { "vm.kill", 120 },
        { "vm.pause", 120 }, { "vm.resume", 120 }, { "vm.delete", 120 }, { "vm.deploy", 600 }, { "vm.migrate", 600 },
        { "host.maintenance", 600 }, { "vm.capture", 1800 },
};
#define STUCK_LIMIT_DEFAULT_S 600

int jobs_new(Store *st, unsigned n_workers, Jobs **ret) {
        Jobs *j = xcalloc(1, sizeof *j);
        j->st = st;
        j->n_workers = n_workers ? n_workers : 1;
        pthread_mutex_init(&j->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&j->cond, &ca);
        pthread_cond_init(&j->watch_cond, &ca);
        pthread_condattr_destroy(&ca);
        j->stuck_percent = 100;
        *ret = j;
        return 0;
}

void jobs_register(Jobs *j, const char *kind, JobHandler fn, JobAbandonFn abandon, void *userdata, bool resumable) {
        j->handlers = xrealloc(j->handlers, sizeof(Handler) * (j->n_handlers + 1));
        Handler *h = &j->handlers[j->n_handlers++];
        *h = (Handler) { .fn = fn, .abandon = abandon, .userdata = userdata, .resumable = resumable };
        snprintf(h->kind, sizeof h->kind, "%s", kind);
}

void jobs_on_stuck(Jobs *j, JobStuckFn fn, void *userdata) {
        pthread_mutex_lock(&j->lock);
        j->on_stuck = fn;
        j->on_stuck_data = userdata;
        pthread_mutex_unlock(&j->lock);
}

void jobs_set_stuck_percent(Jobs *j, int percent) {
        j->stuck_percent = percent > 0 ? percent : 100;
}

int64_t jobs_stuck_limit_ms(const Jobs *j, const char *kind) {
        int64_t s = STUCK_LIMIT_DEFAULT_S;
        for (size_t i = 0; i < sizeof STUCK_LIMITS / sizeof STUCK_LIMITS[0]; i++)
                if (streq(STUCK_LIMITS[i].kind, kind))
                        s = STUCK_LIMITS[i].limit_s;
        return s * 1000 * j->stuck_percent / 100;
}

/* Forgets that job id was reported stuck; true (and what was reported in
 * *ret) when it had been: the caller then tells the hook. */
static bool stuck_forget(Jobs *j, int64_t id, StoreJobWatch *ret) {
        bool had = false;
        pthread_mutex_lock(&j->lock);
        for (size_t i = 0; i < j->n_stuck; i++)
                if (j->stuck_jobs[i].id == id) {
                        *ret = j->stuck_jobs[i];
                        j->stuck_jobs[i] = j->stuck_jobs[--j->n_stuck];
                        had = true;
                        break;
                }
        pthread_mutex_unlock(&j->lock);
        return had;
}

static void stuck_tell(Jobs *j, const StoreJobWatch *w, bool stuck, const char *msg) {
        pthread_mutex_lock(&j->lock);
        JobStuckFn fn = j->on_stuck;
        void *data = j->on_stuck_data;
        if (stuck) {
                j->stuck_jobs = xrealloc(j->stuck_jobs, sizeof(StoreJobWatch) * (j->n_stuck + 1));
                j->stuck_jobs[j->n_stuck++] = *w;
        }
        pthread_mutex_unlock(&j->lock);
        if (fn)
                fn(data, w, stuck, msg);
}

/* The job ended or moved again: closes what its being stuck opened. */
static void stuck_over(Jobs *j, int64_t id, const char *why) {
        StoreJobWatch w;
        if (!stuck_forget(j, id, &w))
                return;
        _cleanup_free_ char *msg = xasprintf("Job %lld (%s on '%s') %s.", (long long) id, w.kind, w.target_name, why);
        stuck_tell(j, &w, false, msg);
}

/* One pass of the watch: marks the jobs that crossed their limit, and
 * closes the ones reported before that no longer are stuck. */
static void watch_round(Jobs *j) {
        StoreJobWatch *run = NULL;
        int n = store_job_watch_list(j->st, &run);
        if (n < 0)
                return;
        int64_t now = now_ms();
        for (int i = 0; i < n; i++) {
                StoreJobWatch *w = &run[i];
                int64_t limit = jobs_stuck_limit_ms(j, w->kind) + w->quiet_ms;
                if (w->stuck_since || now - w->progress_at <= limit)
                        continue;
                if (store_job_set_stuck(j->st, w->id, now) != 1)
                        continue;
                w->stuck_since = now;
                _cleanup_free_ char *msg = xasprintf(
                        "Job %lld (%s on '%s') has made no progress for %.1f s, longer than the %.1f s its kind is allowed;"
                        " its last step: '%s'. It can be cancelled.", (long long) w->id, w->kind, w->target_name,
                        (double) (now - w->progress_at) / 1000, (double) limit / 1000, w->step[0] ? w->step : "none");
                (void) store_event_add(j->st, "warning", "job.stuck", "job", w->id, w->target_name, w->owner_id, msg);
                log_warn("%s", msg);
                stuck_tell(j, w, true, msg);
        }
        /* Reported stuck, but now ended or moving again. */
        pthread_mutex_lock(&j->lock);
        size_t ns = j->n_stuck;
        int64_t *ids = xcalloc(ns + 1, sizeof(int64_t));
        for (size_t k = 0; k < ns; k++)
                ids[k] = j->stuck_jobs[k].id;
        pthread_mutex_unlock(&j->lock);
        for (size_t k = 0; k < ns; k++) {
                const StoreJobWatch *w = NULL;
                for (int i = 0; i < n && !w; i++)
                        if (run[i].id == ids[k]) w = &run[i];
                if (w && w->stuck_since)
                        continue;
                if (w)
                        stuck_over(j, w->id, "is making progress again");
                else {
                        char state[16] = "ended";
                        (void) store_job_state(j->st, ids[k], state);
                        _cleanup_free_ char *why = xasprintf("has ended (%s)", state);
                        stuck_over(j, ids[k], why);
                }
        }
        free(ids);
        free(run);
}

static void *watch_main(void *arg) {
        Jobs *j = arg;
        /* A quarter of the shortest limit, within [100 ms, 1 s]. */
        int64_t tick = jobs_stuck_limit_ms(j, "vm.start") / 4;
        tick = tick < 100 ? 100 : tick > 1000 ? 1000 : tick;
        pthread_mutex_lock(&j->lock);
        while (!j->stopping) {
                pthread_mutex_unlock(&j->lock);
                watch_round(j);
                pthread_mutex_lock(&j->lock);
                if (j->stopping)
                        break;
                struct timespec ts = time_after_ms(CLOCK_MONOTONIC, tick);
                pthread_cond_timedwait(&j->watch_cond, &j->lock, &ts);
        }
        pthread_mutex_unlock(&j->lock);
        return NULL;
}

int jobs_cancel(Jobs *j, int64_t id) {
        int r = store_job_request_cancel(j->st, id);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *o = NULL;
        r = store_job_get_json(j->st, id, &o);
        if (r < 0)
                return r == -ENOENT ? 0 : r;
        if (!json_is_true(json_object_get(o, "stuck")))
                return 0;
        const char *kind = json_string_value(json_object_get(o, "kind"));
        const char *target = json_string_value(json_object_get(o, "target_name"));
        _cleanup_free_ char *why = xasprintf("Cancelled while stuck (no progress since %s; last step: '%s'). Its worker may still be"
                                             " waiting on the host: %s '%s' stays locked until that call returns.",
                                             json_string_value(json_object_get(o, "stuck_since")) ?: "?",
                                             json_string_value(json_object_get(o, "step")) ?: "none",
                                             json_string_value(json_object_get(o, "target_kind")) ?: "object", target ?: "?");
        r = store_job_end_stuck(j->st, id, why);
        if (r < 0)
                return r;
        if (r > 0) {
                log_info("job %lld %s on '%s' cancelled while stuck", (long long) id, kind ?: "?", target ?: "?");
                stuck_over(j, id, "was cancelled");
        }
        return 0;
}

static const Handler *find_handler(Jobs *j, const char *kind) {
        for (size_t i = 0; i < j->n_handlers; i++)
                if (streq(j->handlers[i].kind, kind))
                        return &j->handlers[i];
        return NULL;
}

void job_progress(JobCtx *ctx, int percent, const char *step_fmt, ...) {
        _cleanup_free_ char *step = NULL;
        if (step_fmt) {
                va_list ap;
                va_start(ap, step_fmt);
                if (vasprintf(&step, step_fmt, ap) < 0)
                        step = NULL;
                va_end(ap);
        }
        /* A step is host-changing progress: fenced, so a manager that lost
         * its lease records nothing more (and demotes itself). */
        bool outer = store_in_transaction(ctx->st);
        int r = outer ? store_fence_check(ctx->st) : store_fence_begin(ctx->st);
        if (r >= 0)
                r = store_job_progress(ctx->st, ctx->job->id, percent, step);
        if (r >= 0 && step)
                r = store_job_step_add(ctx->st, ctx->job->id, step);
        if (!outer && r != -ESTALE)
                (void) store_end(ctx->st, r);
}

void job_expect_quiet(JobCtx *ctx, int seconds) {
        (void) store_job_quiet(ctx->st, ctx->job->id, (int64_t) (seconds > 0 ? seconds : 0) * 1000);
}

bool job_cancel_requested(JobCtx *ctx) {
        pthread_mutex_lock(&ctx->jobs->lock);
        bool stopping = ctx->jobs->stopping;
        pthread_mutex_unlock(&ctx->jobs->lock);
        if (stopping)
                return true; /* armadad is shutting down: stop where it is safe, resume after restart */
        bool c = false;
        (void) store_job_cancel_requested(ctx->st, ctx->job->id, &c);
        return c;
}

int job_fail(JobCtx *ctx, int code, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
        va_end(ap);
        return code < 0 ? code : -EIO;
}

/* Ends a running job in a fenced transaction (store-manager.h): a manager
 * whose lease went stale leaves the job to the one that holds it now.
 * store_job_finish()'s result, or -ESTALE. */
static int job_finish_fenced(Store *st, int64_t id, const char *state, const char *error, const char *result) {
        int r = store_fence_begin(st);
        if (r < 0)
                return r;
        return store_end(st, store_job_finish(st, id, state, error, result));
}

static void run_one(Jobs *j, StoreJob *job) {
        const Handler *h = find_handler(j, job->kind);
        JobCtx ctx = { .jobs = j, .st = j->st, .job = job };
        ctx.params = job->params_json ? json_loads(job->params_json, 0, NULL) : NULL;
        if (!ctx.params)
                ctx.params = json_object();
        int64_t t0 = mono_ms();
        int r, fr = 0;
        if (!h)
                r = job_fail(&ctx, -ENOSYS, "No handler is registered for jobs of kind '%s'.", job->kind);
        else
                r = h->fn(&ctx, h->userdata);
        _cleanup_free_ char *result = ctx.result ? json_dumps(ctx.result, JSON_COMPACT) : NULL;
        pthread_mutex_lock(&j->lock);
        bool stopping = j->stopping;
        pthread_mutex_unlock(&j->lock);
        bool asked = false;
        (void) store_job_cancel_requested(j->st, job->id, &asked);
        if (r == -ECANCELED && stopping && !asked) {
                /* Interrupted by shutdown, not by a user: leave it running so
                 * the next start resumes it (or fails it, when unsafe). */
                log_info("job %lld %s on '%s' interrupted by shutdown; it will be recovered at the next start",
                         (long long) job->id, job->kind, job->target_name);
        } else if (r == -ECANCELED) {
                if (job_finish_fenced(j->st, job->id, "cancelled", ctx.error[0] ? ctx.error : "cancelled on request", result) == 0)
                        log_info("job %lld %s on '%s' cancelled", (long long) job->id, job->kind, job->target_name);
        } else if (r < 0) {
                if (!ctx.error[0])
                        snprintf(ctx.error, sizeof ctx.error, "The job failed (%s).", strerror(-r));
                if (job_finish_fenced(j->st, job->id, "failed", ctx.error, result) == 0)
                        log_warn("job %lld %s on '%s' failed: %s", (long long) job->id, job->kind, job->target_name, ctx.error);
        } else if ((fr = job_finish_fenced(j->st, job->id, "succeeded", NULL, result)) == 0)
                log_info("job %lld %s on '%s' succeeded in %lld ms", (long long) job->id, job->kind, job->target_name,
                         (long long) (mono_ms() - t0));
        else if (fr != -ESTALE)
                log_info("job %lld %s on '%s' came back after %lld ms, after it had been cancelled while stuck; its end stays",
                         (long long) job->id, job->kind, job->target_name, (long long) (mono_ms() - t0));
        /* A stale manager leaves the job's worker mark alone too: the
         * manager holding the lease now may be running it. */
        if (store_fence_begin(j->st) == 0)
                (void) store_end(j->st, store_job_worker_done(j->st, job->id));
        else
                log_warn("job %lld %s on '%s': this manager's lease is stale; the job is left to the active manager",
                         (long long) job->id, job->kind, job->target_name);
        if (!(r == -ECANCELED && stopping && !asked)) {
                char state[16] = "ended";
                (void) store_job_state(j->st, job->id, state);
                _cleanup_free_ char *why = xasprintf("has ended (%s)", state);
                stuck_over(j, job->id, why);
        }
        json_decref(ctx.params);
        json_decref(ctx.result);
}

static void *worker(void *arg) {
        Jobs *j = arg;
        for (;;) {
                pthread_mutex_lock(&j->lock);
                bool stop = j->stopping;
                uint64_t seen = j->submits;
                pthread_mutex_unlock(&j->lock);
                if (stop)
                        break;
                StoreJob job = {0};
                /* Claiming is fenced: a manager whose lease went stale
                 * claims nothing (the stale hook demotes it). The fenced
                 * claim takes the writers' lock (on PostgreSQL five round
                 * trips), so an idle worker first asks, without it,
                 * whether there is anything to claim. */
                int r = store_job_claimable(j->st);
                if (r > 0)
                        r = store_fence_begin(j->st);
                else if (r == 0)
                        r = -ENOENT;
                if (r >= 0) {
                        int c = store_job_claim(j->st, &job);
                        r = store_end(j->st, c);
                        if (r < 0 && c == 0)
                                store_job_clear(&job);
                }
                if (r == 0) {
                        run_one(j, &job);
                        store_job_clear(&job);
                        continue;
                }
                pthread_mutex_lock(&j->lock);
                if (!j->stopping && j->submits == seen) {
                        struct timespec ts;
                        clock_gettime(CLOCK_MONOTONIC, &ts);
                        ts.tv_sec += 1;
                        pthread_cond_timedwait(&j->cond, &j->lock, &ts);
                }
                pthread_mutex_unlock(&j->lock);
        }
        return NULL;
}

static void recover(Jobs *j) {
        (void) store_job_workers_reset(j->st);
        StoreJob *running = NULL;
        int n = store_job_list_running(j->st, &running);
        for (int i = 0; i < n; i++) {
                StoreJob *job = &running[i];
                const Handler *h = find_handler(j, job->kind);
                if (h && h->resumable && job->attempts < 3) {
                        (void) store_job_requeue(j->st, job->id);
                        (void) store_event_add(j->st, "warning", "job.resumed", "job", job->id, job->target_name, job->owner_id,
                                               "Job was running when armadad stopped; it is resumed.");
                        log_info("job %lld %s resumed after restart", (long long) job->id, job->kind);
                } else {
                        _cleanup_free_ char *why = xasprintf(
                                "armadad stopped while this job was running; a %s job is not safe to repeat, so it was"
                                " failed and what it left behind is being cleaned up.", job->kind);
                        (void) job_finish_fenced(j->st, job->id, "failed", why, NULL);
                        (void) store_event_add(j->st, "error", "job.abandoned", "job", job->id, job->target_name, job->owner_id, why);
                        log_warn("job %lld %s abandoned after restart", (long long) job->id, job->kind);
                        if (h && h->abandon)
                                h->abandon(j->st, job, h->userdata);
                }
                store_job_clear(job);
        }
        free(running);
}

int jobs_start(Jobs *j) {
        recover(j);
        j->threads = xcalloc(j->n_workers, sizeof(pthread_t));
        for (unsigned i = 0; i < j->n_workers; i++)
                if (pthread_create(&j->threads[i], NULL, worker, j) != 0)
                        return -errno;
        j->watching = pthread_create(&j->watch, NULL, watch_main, j) == 0;
        j->started = true;
        return 0;
}

int jobs_submit(Jobs *j, const char *kind, const char *target_kind, int64_t target_id,
                const char *target_name, int64_t owner_id, json_t *params, int64_t *ret_id) {
        _cleanup_free_ char *p = params ? json_dumps(params, JSON_COMPACT) : NULL;
        int64_t id;
        int r = store_job_insert(j->st, kind, target_kind, target_id, target_name, owner_id, p, &id);
        if (r < 0)
                return r;
        /* One job, one worker woken: waking them all had each take the
         * writers' lock to claim, and all but one find nothing (8 claims
         * per create with --workers 8). A busy worker claims again when
         * its job ends. */
        pthread_mutex_lock(&j->lock);
        j->submits++;
        pthread_cond_signal(&j->cond);
        pthread_mutex_unlock(&j->lock);
        if (ret_id)
                *ret_id = id;
        return 0;
}

void jobs_stop(Jobs *j) {
        if (!j || !j->started)
                return;
        pthread_mutex_lock(&j->lock);
        j->stopping = true;
        pthread_cond_broadcast(&j->cond);
        pthread_cond_broadcast(&j->watch_cond);
        pthread_mutex_unlock(&j->lock);
        /* Handlers see the cancel request and stop where it is safe; one
         * stuck inside libvirt (a host that never answers) cannot be
         * interrupted, so it is left behind after a bounded wait. */
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 10;
        for (unsigned i = 0; i < j->n_workers; i++)
                if (pthread_timedjoin_np(j->threads[i], NULL, &deadline) != 0) {
                        log_warn("a job worker is still busy at shutdown; leaving it behind");
                        j->stuck = true;
                }
        if (j->watching)
                pthread_join(j->watch, NULL);
        j->watching = false;
        j->started = false;
}

Jobs *jobs_free(Jobs *j) {
        if (!j)
                return NULL;
        jobs_stop(j);
        if (j->stuck)
                return NULL; /* a worker may still use it; the process is about to end */
        free(j->threads);
        free(j->handlers);
        free(j->stuck_jobs);
        pthread_mutex_destroy(&j->lock);
        pthread_cond_destroy(&j->cond);
        pthread_cond_destroy(&j->watch_cond);
        free(j);
        return NULL;
}

/* ------------------------------------------------------------------ */
/* operations for callers: the record of jobs, events and audit */

/* ---- a page of history, newest first (GET /jobs, GET /events) ----
 * The rows the caller may not see are left out after each read, so a read
 * of limit rows can give fewer: the page is filled by reading further back,
 * until it holds limit rows, nothing older remains, or PAGE_SCAN_MAX rows
 * were examined (a delegated administrator of a small scope over a long
 * history: the answer stays bounded). *ret_next says where the next page
 * starts: the id of the last row given when more may follow, the last row
 * examined when the scan stopped short, 0 when nothing older remains. */
#define PAGE_SCAN_MAX 20000
#define PAGE_BATCH_FILTERED 200

typedef struct {
        Jobs *j;
        const OpCaller *c;
        OpVisKind vis;
        const JobsListSpec *jobs;     /* jobs: the filters */
        int64_t since_id;             /* events */
} PageRead;

static int page_read(const PageRead *p, int64_t before_id, int limit, json_t **ret) {
        if (p->jobs) {
                /* A self-service user's jobs are its own (the store filters);
                 * a delegated administrator sees those of its groups. */
                int64_t owner = p->c->subj.role == ROLE_SELF_SERVICE ? p->c->user_id : 0;
                return store_job_list(p->j->st, p->jobs->state, owner, p->jobs->only_stuck, before_id, limit, ret);
        }
        return store_event_list(p->j->st, p->since_id, before_id, limit, ret);
}

static int page_back(const PageRead *p, int64_t before_id, int limit, json_t **ret, int64_t *ret_next) {
        bool filtered = p->c->subj.role != ROLE_ADMIN && p->c->subj.role != ROLE_READ_ONLY;
        int batch = filtered && limit < PAGE_BATCH_FILTERED ? PAGE_BATCH_FILTERED : limit + 1;
        _cleanup_json_ json_t *out = json_array();
        int64_t cursor = before_id, next = 0;
        size_t scanned = 0;
        for (;;) {
                json_t *arr = NULL;
                int r = page_read(p, cursor, batch, &arr);
                if (r < 0)
                        return r;
                size_t n = json_array_size(arr);
                int64_t last = n ? jget_int(json_array_get(arr, n - 1), "id") : 0;
                arr = op_filter_visible(p->j->st, p->c, arr, p->vis);
                bool full = false;
                size_t i;
                json_t *it;
                json_array_foreach(arr, i, it) {
                        if (json_array_size(out) == (size_t) limit) {
                                full = true;
                                break;
                        }
                        json_array_append(out, it);
                }
                json_decref(arr);
                if (full) {
                        next = jget_int(json_array_get(out, json_array_size(out) - 1), "id");
                        break;
                }
                if (n < (size_t) batch)
                        break; /* nothing older */
                cursor = last;
                scanned += n;
                if (scanned >= PAGE_SCAN_MAX) {
                        next = cursor;
                        break;
                }
        }
        *ret = steal_ptr(out);
        *ret_next = next;
        return 0;
}

int jobs_job_list(Jobs *j, const OpCaller *c, const JobsListSpec *spec, json_t **ret, int64_t *ret_next_before_id, OpError *err) {
        PageRead p = { .j = j, .c = c, .vis = OP_VIS_JOB, .jobs = spec };
        int r = page_back(&p, spec->before_id, spec->limit, ret, ret_next_before_id);
        return r < 0 ? op_fail_store(err, r, "the list of jobs") : 0;
}

/* 0 and the job id in *ret if the caller may see it, else 404 (a job the
 * caller may not see does not exist for it), or 5xx on a database error. */
static int job_visible(Jobs *j, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        json_t *o = NULL;
        int r = store_job_get_json(j->st, id, &o);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the job");
        if (!o || !op_job_visible(j->st, c, o)) {
                json_decref(o);
                return op_fail(err, 404, "not_found", NULL, "There is no job with id %lld.", (long long) id);
        }
        *ret = o;
        return 0;
}

int jobs_job_get(Jobs *j, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        return job_visible(j, c, id, ret, err);
}

int jobs_job_cancel(Jobs *j, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *o = NULL;
        int r = job_visible(j, c, id, &o, err);
        if (r < 0)
                return r;
        int64_t owner = jget_int(o, "owner_id");
        int64_t g = op_object_group(j->st, jget_str(o, "target_kind"), jget_int(o, "target_id"));
        if (owner != c->user_id && !op_allowed(j->st, c, ACT_OPERATE, OBJ_JOB, owner, g))
                return op_deny(j->st, c, err, "cancel", "job", id, jget_str(o, "kind"));
        int e = jobs_cancel(j, id);
        if (e == -EALREADY)
                return op_fail(err, 409, "conflict", NULL, "Job %lld has already ended (%s).", (long long) id, jget_str(o, "state"));
        if (e < 0)
                return op_fail_store(err, e, "the job");
        op_audit(j->st, c, "job.cancel", "job", id, jget_str(o, "kind"), NULL, "ok");
        r = store_job_get_json(j->st, id, ret);
        return r < 0 ? op_fail_store(err, r, "the job") : 0;
}

int jobs_event_list(Jobs *j, const OpCaller *c, const JobsEventListSpec *spec, json_t **ret, int64_t *ret_next_before_id,
                    OpError *err) {
        PageRead p = { .j = j, .c = c, .vis = OP_VIS_EVENT, .since_id = spec->since_id };
        int r = page_back(&p, spec->before_id, spec->limit, ret, ret_next_before_id);
        return r < 0 ? op_fail_store(err, r, "the list of events") : 0;
}

int jobs_audit_list(Jobs *j, const OpCaller *c, int limit, json_t **ret, OpError *err) {
        if (!op_allowed(j->st, c, ACT_READ, OBJ_SYSTEM, 0, 0))
                return op_deny(j->st, c, err, "read", "audit log", 0, NULL);
        int r = store_audit_list(j->st, limit, ret);
        return r < 0 ? op_fail_store(err, r, "the audit log") : 0;
}

/* ------------------------------------------------------------------ */
/* the event stream's feed */

int jobs_stream_seq(Jobs *j, int64_t *ret) {
        return store_stream_seq(j->st, ret);
}

int jobs_stream_read(Jobs *j, int64_t cursor, size_t batch, int64_t only_job_id, json_t **ret_events, json_t **ret_jobs) {
        int limit = batch > INT_MAX ? INT_MAX : (int) batch;
        _cleanup_json_ json_t *evs = only_job_id > 0 ? json_array() : NULL, *jobs = NULL;
        int r = evs ? 0 : store_event_list_after(j->st, cursor, limit, &evs);
        if (r >= 0)
                r = store_job_list_changed(j->st, cursor, limit, &jobs);
        if (r < 0)
                return r;
        *ret_events = steal_ptr(evs);
        *ret_jobs = steal_ptr(jobs);
        return 0;
}

int jobs_get_json(Jobs *j, int64_t id, json_t **ret) {
        return store_job_get_json(j->st, id, ret);
}

void jobs_on_change(Jobs *j, JobsChangeFn fn, void *userdata) {
        store_set_change_hook(j->st, fn, userdata);
}
