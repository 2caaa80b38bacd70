/* jobs: every operation that talks to a host runs as a persisted job —
 * queued, running, succeeded, failed or cancelled — with steps, percent
 * progress, a cancel request, an owner and a result or error. A pool of
 * worker threads claims queued jobs from the database (one job per target
 * object at a time) and runs the handler registered for the job's kind.
 *
 * After a crash or restart, jobs left "running" are resumed when their kind
 * is safe to repeat (resumable), otherwise failed with the reason and handed
 * to the kind's abandon hook so the owner module can clean up. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "op/op.h"
#include "store/store.h"

typedef struct Jobs Jobs;

typedef struct {
        Jobs *jobs;
        Store *st;
        const StoreJob *job;
        json_t *params;          /* parsed params (never NULL: {} when none) */
        json_t *result;          /* handler may set (owned by the context) */
        char error[1024];        /* set through job_fail() */
} JobCtx;

/* Runs a job. Returns 0 on success, -ECANCELED when it stopped because of a
 * cancel request, another negative code on failure (after job_fail()). */
typedef int (*JobHandler)(JobCtx *ctx, void *userdata);
/* Called at start-up for a job of a non-resumable kind found "running":
 * the job is already marked failed; the hook cleans up what it can. */
typedef void (*JobAbandonFn)(Store *st, const StoreJob *job, void *userdata);

/* Creates the job engine over st with n_workers threads (not yet started). */
int jobs_new(Store *st, unsigned n_workers, Jobs **ret);
/* Registers the handler of a kind. Call before jobs_start(). */
void jobs_register(Jobs *j, const char *kind, JobHandler fn, JobAbandonFn abandon, void *userdata, bool resumable);
/* Recovers jobs a previous run left running, then starts the workers.
 * Returns 0 or negative. */
int jobs_start(Jobs *j);
/* Queues a job and wakes a worker. params may be NULL (borrowed). */
int jobs_submit(Jobs *j, const char *kind, const char *target_kind, int64_t target_id,
                const char *target_name, int64_t owner_id, json_t *params, int64_t *ret_id);
/* ---- stuck jobs ----
 * A running job that records no progress (job_progress()) for longer than
 * its kind's limit is stuck: the watch thread marks it (stuck, stuck_since
 * in its JSON), records a job.stuck event and calls the stuck hook, which
 * armadad points at the monitor (an alert). The hook is called again with
 * stuck false when the job ends or moves again. Limits: 120 s for host.refresh
 * and the VM lifecycle kinds (vm.create/start/stop/kill/pause/resume/delete),
 * 600 s for vm.deploy, vm.migrate, host.maintenance and kinds not named here,
 * 1800 s for vm.capture; scaled by percent/100. */
typedef void (*JobStuckFn)(void *userdata, const StoreJobWatch *job, bool stuck, const char *message);
/* Sets the hook (before jobs_start()); fn NULL for none. */
void jobs_on_stuck(Jobs *j, JobStuckFn fn, void *userdata);
/* Scales every kind's stuck limit to percent of its default (1..100000;
 * 100 when never called). Call before jobs_start(). */
void jobs_set_stuck_percent(Jobs *j, int percent);
/* The stuck limit of kind in ms, scaled. */
int64_t jobs_stuck_limit_ms(const Jobs *j, const char *kind);
/* Cancels a job for a user: a queued job ends at once; a running one is
 * asked to stop where it is safe — unless it is stuck, when it is ended
 * (cancelled) at once: its worker may be blocked inside a hypervisor call,
 * and what that call returns later no longer changes the job's end (its
 * target stays locked until the call comes back). 0, -EALREADY when the job
 * has ended, -ENOENT or another negative code. */
int jobs_cancel(Jobs *j, int64_t id);
/* Stops the workers after their current jobs, which see
 * job_cancel_requested() turn true. Idempotent. */
void jobs_stop(Jobs *j);
Jobs *jobs_free(Jobs *j);

/* ---- for handlers ---- */
/* Records progress (0-100, monotone) and the step being done. */
void job_progress(JobCtx *ctx, int percent, const char *step_fmt, ...) _printf_(3, 4);
/* Says the current step may go without progress for up to seconds (beyond
 * the kind's stuck limit) before the job counts as stuck: a step that waits
 * on purpose, such as a guest's shutdown with its timeout. Until the next
 * job_progress(). */
void job_expect_quiet(JobCtx *ctx, int seconds);
/* True once a cancel was requested for this job, or armadad is shutting
 * down (a handler that then returns -ECANCELED is left "running" and
 * recovered at the next start). */
bool job_cancel_requested(JobCtx *ctx);
/* Sets the error sentence and returns code (negative), for `return job_fail(...)`. */
int job_fail(JobCtx *ctx, int code, const char *fmt, ...) _printf_(3, 4);

/* ---- operations for callers (op/op.h): reading the record of jobs,
 * events and audit, and cancelling a job. Each returns 0 with a new
 * reference in *ret, or -errno with err filled (and *ret untouched). ---- */
typedef struct {
        const char *state;           /* queued, running, succeeded, failed, cancelled; NULL for all */
        bool only_stuck;             /* only running jobs marked stuck */
        int64_t before_id;           /* > 0: only jobs with a smaller id (the next page back) */
        int limit;                   /* newest first, at most this many */
} JobsListSpec;
/* The jobs the caller may see (op_job_visible()): a self-service user its
 * own; newest first, a page of at most limit. *ret_next_before_id: the
 * before_id of the next page back, 0 when nothing older remains (a page
 * of a delegated administrator may hold fewer than limit jobs and still
 * have a next one: the rows it may not see were skipped). A database
 * error is a 5xx. */
int jobs_job_list(Jobs *j, const OpCaller *c, const JobsListSpec *spec, json_t **ret, int64_t *ret_next_before_id, OpError *err);
/* One job: -ENOENT (404) when it does not exist or the caller may not see it. */
int jobs_job_get(Jobs *j, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
/* Cancels a job (jobs_cancel()) for the caller, who must see it (else 404)
 * and own it or be allowed to operate it (else -EPERM, 403, audited as
 * denied); -EEXIST (409) when it has ended. Audits "job.cancel" and
 * returns the job as it is now. */
int jobs_job_cancel(Jobs *j, const OpCaller *c, int64_t id, json_t **ret, OpError *err);
typedef struct {
        int64_t since_id;            /* only events with a larger id */
        int64_t before_id;           /* > 0: only events with a smaller id (the next page back) */
        int limit;
} JobsEventListSpec;
/* Events the caller may see (op_event_visible()), newest first, a page of
 * at most limit; *ret_next_before_id as jobs_job_list()'s. A database
 * error is a 5xx. */
int jobs_event_list(Jobs *j, const OpCaller *c, const JobsEventListSpec *spec, json_t **ret, int64_t *ret_next_before_id,
                    OpError *err);
/* The newest limit audit records: -EPERM (403, audited) unless the caller
 * may read the system. */
int jobs_audit_list(Jobs *j, const OpCaller *c, int limit, json_t **ret, OpError *err);

/* ---- the event stream's feed (GET /api/v1/events/stream) ----
 * Event ids and job revisions (a job's "rev", renewed on every change) are
 * drawn from one sequence, so a reader's place in both is one number, and
 * a number becomes visible only after every smaller one. The feed is not
 * filtered by caller: the stream applies the rules of GET /events and
 * GET /jobs to each message itself. */
/* The highest number drawn so far (0 on an empty database): 0 or -errno. */
int jobs_stream_seq(Jobs *j, int64_t *ret);
/* What came after cursor, at most batch of each: the events (id > cursor,
 * oldest first; an empty array when only_job_id > 0, a stream that follows
 * one job) and the jobs whose last change is numbered > cursor, in that
 * order, each as jobs_get_json() returns it plus "stream_seq", the number
 * of its last change. 0 with a new reference in both, or -EIO with
 * neither set. */
int jobs_stream_read(Jobs *j, int64_t cursor, size_t batch, int64_t only_job_id, json_t **ret_events, json_t **ret_jobs);
/* One job's JSON, whoever asks: 0 with a new reference in *ret, -ENOENT
 * when it does not exist (or cannot be read). */
int jobs_get_json(Jobs *j, int64_t id, json_t **ret);
/* Called after an event is added or a job changes, once the change is
 * committed, from the thread that made it with the store's lock held: fn
 * must be quick and must not call into jobs or the store. One hook (the
 * store keeps one); fn NULL removes it. */
typedef void (*JobsChangeFn)(void *userdata);
void jobs_on_change(Jobs *j, JobsChangeFn fn, void *userdata);
