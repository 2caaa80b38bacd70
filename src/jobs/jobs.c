/* jobs: the persisted job queue and its worker pool (see jobs.h). Workers
 * wait on a condition variable that jobs_submit() signals, and also wake
 * once a second so jobs queued by another process are not left waiting. */
#include "jobs.h"

#include <errno.h>
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
        bool stopping, started;
        bool stuck;             /* a worker did not end at shutdown: never free */
        Handler *handlers;
        size_t n_handlers;
};

int jobs_new(Store *st, unsigned n_workers, Jobs **ret) {
        Jobs *j = xcalloc(1, sizeof *j);
        j->st = st;
        j->n_workers = n_workers ? n_workers : 1;
        pthread_mutex_init(&j->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&j->cond, &ca);
        pthread_condattr_destroy(&ca);
        *ret = j;
        return 0;
}

void jobs_register(Jobs *j, const char *kind, JobHandler fn, JobAbandonFn abandon, void *userdata, bool resumable) {
        j->handlers = xrealloc(j->handlers, sizeof(Handler) * (j->n_handlers + 1));
        Handler *h = &j->handlers[j->n_handlers++];
        *h = (Handler) { .fn = fn, .abandon = abandon, .userdata = userdata, .resumable = resumable };
        snprintf(h->kind, sizeof h->kind, "%s", kind);
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
        (void) store_job_progress(ctx->st, ctx->job->id, percent, step);
        if (step)
                (void) store_job_step_add(ctx->st, ctx->job->id, step);
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

static void run_one(Jobs *j, StoreJob *job) {
        const Handler *h = find_handler(j, job->kind);
        JobCtx ctx = { .jobs = j, .st = j->st, .job = job };
        ctx.params = job->params_json ? json_loads(job->params_json, 0, NULL) : NULL;
        if (!ctx.params)
                ctx.params = json_object();
        int64_t t0 = mono_ms();
        int r;
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
                (void) store_job_finish(j->st, job->id, "cancelled", ctx.error[0] ? ctx.error : "cancelled on request", result);
                log_info("job %lld %s on '%s' cancelled", (long long) job->id, job->kind, job->target_name);
        } else if (r < 0) {
                if (!ctx.error[0])
                        snprintf(ctx.error, sizeof ctx.error, "The job failed (%s).", strerror(-r));
                (void) store_job_finish(j->st, job->id, "failed", ctx.error, result);
                log_warn("job %lld %s on '%s' failed: %s", (long long) job->id, job->kind, job->target_name, ctx.error);
        } else {
                (void) store_job_finish(j->st, job->id, "succeeded", NULL, result);
                log_info("job %lld %s on '%s' succeeded in %lld ms", (long long) job->id, job->kind, job->target_name,
                         (long long) (mono_ms() - t0));
        }
        json_decref(ctx.params);
        json_decref(ctx.result);
}

static void *worker(void *arg) {
        Jobs *j = arg;
        for (;;) {
                pthread_mutex_lock(&j->lock);
                bool stop = j->stopping;
                pthread_mutex_unlock(&j->lock);
                if (stop)
                        break;
                StoreJob job = {0};
                int r = store_job_claim(j->st, &job);
                if (r == 0) {
                        run_one(j, &job);
                        store_job_clear(&job);
                        continue;
                }
                pthread_mutex_lock(&j->lock);
                if (!j->stopping) {
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
                        (void) store_job_finish(j->st, job->id, "failed", why, NULL);
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
        pthread_mutex_lock(&j->lock);
        pthread_cond_broadcast(&j->cond);
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
        pthread_mutex_destroy(&j->lock);
        pthread_cond_destroy(&j->cond);
        free(j);
        return NULL;
}
