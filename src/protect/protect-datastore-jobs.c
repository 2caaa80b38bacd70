/* The datastore.* jobs (protect.h, "Maintenance"): each opens the chunk
 * store, does its work with progress, and recomputes the datastore's cached
 * usage at the end. */
#include "protect-priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store-protect.h"
#include "util/cleanup.h"

/* Keeps this long past the oldest running backup (or now): a chunk a
 * writer has just put but not yet named survives a GC started beside it. */
#define GC_GRACE_S 300

static void progress_cb(uint64_t done, uint64_t total, void *userdata) {
        JobCtx *ctx = userdata;
        static __thread int last = -1;
        int pct = total ? (int) (5 + done * 85 / total) : 90;
        if (pct != last) {
                last = pct;
                job_progress(ctx, pct, "%llu of %llu", (unsigned long long) done, (unsigned long long) total);
        }
}

/* The job's datastore (target_id), opened; fails the job otherwise. */
static int job_open(JobCtx *ctx, ChunkStore **ret) {
        int e = protect_datastore_open(ctx->st, ctx->job->target_id, ret);
        if (e < 0)
                return job_fail(ctx, e, "Datastore '%s' cannot be opened: %s.", ctx->job->target_name, strerror(-e));
        return 0;
}

static void usage_refresh(JobCtx *ctx, ChunkStore *s) {
        if (ctx->job->target_id > 0) {
                (void) protect_datastore_usage_refresh(ctx->st, ctx->job->target_id, s);
                (void) protect_backup_index_sync(ctx->st, ctx->job->target_name, s);
        }
}

static int job_usage(JobCtx *ctx, void *userdata) {
        ChunkStore *s = NULL;
        int e = job_open(ctx, &s);
        if (e < 0)
                return e;
        job_progress(ctx, 10, "counting chunks");
        e = protect_datastore_usage_refresh(ctx->st, ctx->job->target_id, s);
        if (e == 0)
                (void) protect_backup_index_sync(ctx->st, ctx->job->target_name, s);
        chunkstore_free(s);
        if (e < 0)
                return job_fail(ctx, e, "The usage of datastore '%s' cannot be computed: %s.", ctx->job->target_name,
                                strerror(-e));
        json_t *row = NULL;
        if (store_datastore_get_json(ctx->st, ctx->job->target_id, &row) == 0) {
                ctx->result = json_incref(json_object_get(row, "usage"));
                json_decref(row);
        }
        return 0;
}

/* Records each point's last_verified (a bad point named in bad, else good). */
static void verify_record(JobCtx *ctx, ChunkStore *s, json_t *bad) {
        _cleanup_json_ json_t *points = NULL;
        if (ctx->job->target_id <= 0 || point_list(s, NULL, &points) < 0)
                return;
        size_t i, j;
        json_t *p, *b;
        json_array_foreach(points, i, p) {
                bool ok = true;
                json_array_foreach(bad, j, b)
                        if (streq(jget_str(b, "vm_uuid"), jget_str(p, "vm_uuid")) &&
                            streq(jget_str(b, "point_id"), jget_str(p, "point_id")))
                                ok = false;
                (void) store_datastore_point_verified(ctx->st, ctx->job->target_id, jget_str(p, "vm_uuid"),
                                                      jget_str(p, "point_id"), ok);
        }
}

static int job_verify(JobCtx *ctx, void *userdata) {
        const char *path = json_string_value(json_object_get(ctx->params, "path"));
        ChunkStore *s = NULL;
        int e = path ? chunkstore_open(path, false, &s) : job_open(ctx, &s);
        if (e < 0)
                return path ? job_fail(ctx, e, "'%s' cannot be opened as a datastore: %s.", ctx->job->target_name,
                                       strerror(-e))
                            : e;
        job_progress(ctx, 5, "reading every chunk");
        json_t *res = NULL;
        e = chunkstore_verify(s, progress_cb, ctx, &res);
        if (e < 0) {
                chunkstore_free(s);
                return job_fail(ctx, e, "Verifying '%s' failed: %s.", ctx->job->target_name, strerror(-e));
        }
        json_t *bad = json_object_get(res, "bad_points");
        verify_record(ctx, s, bad);
        chunkstore_free(s);
        size_t nbad = json_array_size(bad);
        json_object_set_new(res, "ok", json_boolean(nbad == 0));
        ctx->result = res;
        if (nbad == 0) {
                if (ctx->job->target_id > 0)
                        protect_alert(ctx->job->target_id, ctx->job->target_name, false, "verify found every point good");
                return 0;
        }
        /* Name every point that cannot be restored. */
        StrBuf b = { 0 };
        strbuf_printf(&b, "Datastore '%s': %zu point%s cannot be restored:", ctx->job->target_name, nbad,
                      nbad == 1 ? "" : "s");
        size_t i;
        json_t *p;
        json_array_foreach(bad, i, p) {
                if (i == 20) {
                        strbuf_printf(&b, " and %zu more", nbad - 20);
                        break;
                }
                strbuf_printf(&b, "%s %s/%s (%s chunk %lld of disk %s)", i ? "," : "", jget_str(p, "vm_uuid"),
                              jget_str(p, "point_id"), jget_str(p, "reason"), (long long) jget_int(p, "chunk"),
                              *jget_str(p, "disk") ? jget_str(p, "disk") : "?");
        }
        strbuf_append(&b, ".");
        _cleanup_free_ char *msg = strbuf_steal(&b);
        (void) store_event_add(ctx->st, "error", "datastore.verify-failed", "datastore", ctx->job->target_id,
                               ctx->job->target_name, ctx->job->owner_id, msg);
        if (ctx->job->target_id > 0)
                protect_alert(ctx->job->target_id, ctx->job->target_name, true, msg);
        return 0;
}

static int job_gc(JobCtx *ctx, void *userdata) {
        ChunkStore *s = NULL;
        int e = job_open(ctx, &s);
        if (e < 0)
                return e;
        time_t keep = time(NULL) - GC_GRACE_S, oldest = protect_oldest_running_backup(ctx->st);
        if (oldest > 0 && oldest - GC_GRACE_S < keep)
                keep = oldest - GC_GRACE_S;
        job_progress(ctx, 10, "marking and sweeping");
        ChunkStoreGc g;
        e = chunkstore_gc(s, keep, &g);
        if (e == 0)
                usage_refresh(ctx, s);
        chunkstore_free(s);
        if (e == -EBADMSG)
                return job_fail(ctx, e, "Datastore '%s' holds a point whose manifest cannot be read; nothing was removed"
                                " (run verify).", ctx->job->target_name);
        if (e < 0)
                return job_fail(ctx, e, "Garbage collection of '%s' failed: %s.", ctx->job->target_name, strerror(-e));
        ctx->result = json_pack("{s:I, s:I, s:I}", "chunks_removed", (json_int_t) g.chunks_removed, "bytes_removed",
                                (json_int_t) g.bytes_removed, "chunks_kept", (json_int_t) g.chunks_kept);
        return 0;
}

/* Prunes the points of one VM (POINTS, oldest first) into kept/removed. */
static int prune_vm(ChunkStore *s, json_t *points, const PrunePolicy *pol, bool dry_run, json_t *kept, json_t *removed) {
        size_t n = json_array_size(points);
        _cleanup_free_ time_t *times = xmalloc((n ? n : 1) * sizeof *times);
        _cleanup_free_ bool *keep = xmalloc((n ? n : 1) * sizeof *keep);
        for (size_t i = 0; i < n; i++)
                if (protect_point_time(jget_str(json_array_get(points, i), "point_id"), &times[i]) < 0)
                        times[i] = 0;
        prune_select(times, n, pol, keep);
        for (size_t i = 0; i < n; i++) {
                json_t *p = json_array_get(points, i);
                json_t *o = json_pack("{s:s, s:s, s:O?}", "vm_uuid", jget_str(p, "vm_uuid"), "point_id",
                                      jget_str(p, "point_id"), "vm_name",
                                      json_object_get(json_object_get(p, "meta"), "vm_name"));
                /* An id that is not a time is never removed by a rule. */
                if (keep[i] || times[i] == 0) {
                        json_array_append_new(kept, o);
                        continue;
                }
                json_array_append_new(removed, o);
                if (!dry_run) {
                        int e = point_remove(s, jget_str(p, "vm_uuid"), jget_str(p, "point_id"));
                        if (e < 0 && e != -ENOENT)
                                return e;
                }
        }
        return 0;
}

static int job_prune(JobCtx *ctx, void *userdata) {
        ChunkStore *s = NULL;
        int e = job_open(ctx, &s);
        if (e < 0)
                return e;
        PrunePolicy pol = {
                .keep_last = (unsigned) jget_int(ctx->params, "keep_last"),
                .keep_hourly = (unsigned) jget_int(ctx->params, "keep_hourly"),
                .keep_daily = (unsigned) jget_int(ctx->params, "keep_daily"),
                .keep_weekly = (unsigned) jget_int(ctx->params, "keep_weekly"),
                .keep_monthly = (unsigned) jget_int(ctx->params, "keep_monthly"),
                .keep_yearly = (unsigned) jget_int(ctx->params, "keep_yearly"),
        };
        bool dry_run = json_is_true(json_object_get(ctx->params, "dry_run"));
        const char *only = json_string_value(json_object_get(ctx->params, "vm_uuid"));
        _cleanup_json_ json_t *all = NULL;
        e = point_list(s, only, &all);
        if (e < 0) {
                chunkstore_free(s);
                return job_fail(ctx, e, "The points of '%s' cannot be read: %s.", ctx->job->target_name, strerror(-e));
        }
        /* Group by VM (the rules apply per VM). */
        _cleanup_json_ json_t *by_vm = json_object(), *kept = json_array(), *removed = json_array();
        size_t i;
        json_t *p;
        json_array_foreach(all, i, p) {
                const char *vm = jget_str(p, "vm_uuid");
                if (!json_object_get(by_vm, vm))
                        json_object_set_new(by_vm, vm, json_array());
                json_array_append(json_object_get(by_vm, vm), p);
        }
        const char *vm;
        json_t *pts;
        job_progress(ctx, 20, dry_run ? "selecting (dry run)" : "removing points");
        json_object_foreach(by_vm, vm, pts) {
                e = prune_vm(s, pts, &pol, dry_run, kept, removed);
                if (e < 0)
                        break;
        }
        if (e == 0 && !dry_run)
                usage_refresh(ctx, s);
        chunkstore_free(s);
        if (e < 0)
                return job_fail(ctx, e, "Pruning '%s' failed: %s.", ctx->job->target_name, strerror(-e));
        ctx->result = json_pack("{s:b, s:O, s:O}", "dry_run", dry_run, "kept", kept, "removed", removed);
        return 0;
}

/* Why a copy between datastores failed, for a job's message. */
static const char *copy_why(int e) {
        return e == -EXDEV ? "the two datastores have different chunk sizes (points are not re-cut)" : strerror(-e);
}

/* Copies points from SRC to DST with progress; the result's counters. */
static int copy_job(JobCtx *ctx, ChunkStore *src, ChunkStore *dst, json_t *points) {
        uint64_t chunks = 0, bytes = 0;
        int e = chunkstore_copy_points(src, dst, points, progress_cb, ctx, &chunks, &bytes);
        if (e < 0)
                return e;
        ctx->result = json_pack("{s:I, s:I, s:I}", "points", (json_int_t) json_array_size(points), "chunks_sent",
                                (json_int_t) chunks, "bytes_sent", (json_int_t) bytes);
        return 0;
}

static int job_archive(JobCtx *ctx, void *userdata) {
        const char *to = jget_str(ctx->params, "to");
        ChunkStore *src = NULL, *dst = NULL;
        int e = job_open(ctx, &src);
        if (e < 0)
                return e;
        e = chunkstore_open_sized(to, true, chunkstore_chunk_size(src), &dst);
        if (e < 0) {
                chunkstore_free(src);
                return job_fail(ctx, e, "The archive directory cannot be made a datastore: %s.", strerror(-e));
        }
        job_progress(ctx, 5, "copying points");
        e = copy_job(ctx, src, dst, json_object_get(ctx->params, "points"));
        chunkstore_free(src);
        chunkstore_free(dst);
        if (e < 0)
                return job_fail(ctx, e, "Archiving from '%s' failed: %s.", ctx->job->target_name, copy_why(e));
        json_object_set_new(ctx->result, "to", json_string(to));
        return 0;
}

static int job_import(JobCtx *ctx, void *userdata) {
        const char *from = jget_str(ctx->params, "from");
        ChunkStore *src = NULL, *dst = NULL;
        int e = chunkstore_open(from, false, &src);
        if (e < 0)
                return job_fail(ctx, e, "The directory to import is not a datastore: %s.", strerror(-e));
        e = job_open(ctx, &dst);
        if (e < 0) {
                chunkstore_free(src);
                return e;
        }
        _cleanup_json_ json_t *all = NULL, *names = json_array();
        e = point_list(src, NULL, &all);
        size_t i;
        json_t *p;
        json_array_foreach(all, i, p)
                json_array_append_new(names, json_pack("{s:O, s:O}", "vm_uuid", json_object_get(p, "vm_uuid"), "point_id",
                                                       json_object_get(p, "point_id")));
        job_progress(ctx, 5, "copying %zu points", json_array_size(names));
        if (e == 0)
                e = copy_job(ctx, src, dst, names);
        if (e == 0)
                usage_refresh(ctx, dst);
        chunkstore_free(src);
        chunkstore_free(dst);
        if (e < 0)
                return job_fail(ctx, e, "Importing into '%s' failed: %s.", ctx->job->target_name, copy_why(e));
        return 0;
}

void protect_register_jobs(Jobs *jobs) {
        jobs_register(jobs, "datastore.usage", job_usage, NULL, NULL, true);
        jobs_register(jobs, "datastore.verify", job_verify, NULL, NULL, true);
        jobs_register(jobs, "datastore.gc", job_gc, NULL, NULL, true);
        /* Prune, archive and import repeat safely too: what was done is
         * skipped (a removed point is gone, a copied point is there). */
        jobs_register(jobs, "datastore.prune", job_prune, NULL, NULL, true);
        jobs_register(jobs, "datastore.archive", job_archive, NULL, NULL, true);
        jobs_register(jobs, "datastore.import", job_import, NULL, NULL, true);
}
