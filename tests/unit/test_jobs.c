/* Unit tests for jobs/: the event stream's feed (jobs_stream_seq(),
 * jobs_stream_read(), jobs_get_json(), jobs_on_change()) and the pages of
 * history (jobs_event_list() by before_id), over a store in a temporary
 * directory; the engine is never started. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "jobs/jobs.h"
#include "util/cleanup.h"

static char dir[] = "/tmp/armada-test-jobs-XXXXXX";

typedef struct {
        Store *st;
        Jobs *jobs;
} Fixture;

static int setup(void **state) {
        static char path[256];
        static Fixture f;
        if (!mkdtemp(dir))
                return -1;
        snprintf(path, sizeof path, "%s/t.db", dir);
        if (store_open(path, &f.st) < 0 || jobs_new(f.st, 1, &f.jobs) < 0)
                return -1;
        *state = &f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        jobs_free(f->jobs);
        store_free(f->st);
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : -1;
}

static int changes;

static void count_change(void *userdata) {
        (void) userdata;
        changes++;
}

static int64_t seq_of(json_t *arr, size_t i, const char *key) {
        return json_integer_value(json_object_get(json_array_get(arr, i), key));
}

static void test_stream_feed(void **state) {
        Fixture *f = *state;
        int64_t base, job, seq;
        jobs_on_change(f->jobs, count_change, NULL);
        assert_int_equal(jobs_stream_seq(f->jobs, &base), 0);
        changes = 0;
        assert_int_equal(jobs_submit(f->jobs, "vm.start", "vm", 7, "feedvm", 0, NULL, &job), 0);
        assert_int_equal(store_event_add(f->st, "info", "vm.state", "vm", 7, "feedvm", 0, "m1"), 0);
        assert_int_equal(store_job_progress(f->st, job, 50, "half"), 0);
        assert_int_equal(store_event_add(f->st, "info", "vm.state", "vm", 7, "feedvm", 0, "m2"), 0);
        /* The hook told every change (jobs_submit() may add an event too). */
        assert_true(changes >= 4);
        assert_int_equal(jobs_stream_seq(f->jobs, &seq), 0);
        assert_true(seq >= base + 4);

        /* Events and the job's latest state after the cursor. */
        json_t *evs = NULL, *jobs = NULL;
        assert_int_equal(jobs_stream_read(f->jobs, base, 10, 0, &evs, &jobs), 0);
        assert_true(json_array_size(evs) >= 2);
        assert_int_equal(json_array_size(jobs), 1);
        assert_int_equal(seq_of(jobs, 0, "id"), job);
        assert_int_equal(seq_of(jobs, 0, "progress"), 50);
        assert_true(seq_of(jobs, 0, "stream_seq") > base);
        for (size_t i = 1; i < json_array_size(evs); i++)
                assert_true(seq_of(evs, i, "id") > seq_of(evs, i - 1, "id"));
        json_decref(evs);
        json_decref(jobs);

        /* One row of each per batch of 1; a stream that follows one job
         * gets no events. */
        assert_int_equal(jobs_stream_read(f->jobs, base, 1, 0, &evs, &jobs), 0);
        assert_int_equal(json_array_size(evs), 1);
        assert_int_equal(json_array_size(jobs), 1);
        json_decref(evs);
        json_decref(jobs);
        assert_int_equal(jobs_stream_read(f->jobs, base, 10, job, &evs, &jobs), 0);
        assert_int_equal(json_array_size(evs), 0);
        assert_int_equal(json_array_size(jobs), 1);
        json_decref(evs);
        json_decref(jobs);
        /* Nothing after the newest number. */
        assert_int_equal(jobs_stream_read(f->jobs, seq, 10, 0, &evs, &jobs), 0);
        assert_int_equal(json_array_size(evs), 0);
        assert_int_equal(json_array_size(jobs), 0);
        json_decref(evs);
        json_decref(jobs);

        /* One job, whoever asks; -ENOENT for none. */
        _cleanup_json_ json_t *one = NULL;
        assert_int_equal(jobs_get_json(f->jobs, job, &one), 0);
        assert_string_equal(json_string_value(json_object_get(one, "kind")), "vm.start");
        json_t *none = NULL;
        assert_int_equal(jobs_get_json(f->jobs, job + 1000, &none), -ENOENT);
        assert_null(none);

        /* Removing the hook: no more calls. */
        jobs_on_change(f->jobs, NULL, NULL);
        changes = 0;
        assert_int_equal(store_event_add(f->st, "info", "vm.state", "vm", 7, "feedvm", 0, "m3"), 0);
        assert_int_equal(changes, 0);
}

/* Pages back through history: an administrator's cover every event once,
 * newest first; a self-service user who owns only the oldest few gets an
 * empty page where the bounded scan stopped (20,000 rows), then its own. */
static void test_history_pages(void **state) {
        Fixture *f = *state;
        enum { N = 20500, MINE = 5, OWNER = 42 };
        _cleanup_json_ json_t *before = NULL;
        int64_t next = -1;
        OpCaller admin = { .subj = { .user_id = 1, .role = ROLE_ADMIN }, .user_id = 1, .user_name = "admin", .role_name = "administrator" };
        OpCaller self = { .subj = { .user_id = OWNER, .role = ROLE_SELF_SERVICE }, .user_id = OWNER, .user_name = "sam",
                          .role_name = "self-service" };
        OpError err = {0};
        JobsEventListSpec all = { .limit = 1000 };
        assert_int_equal(jobs_event_list(f->jobs, &admin, &all, &before, &next, &err), 0);
        size_t had = json_array_size(before);
        assert_int_equal(next, 0);
        assert_int_equal(store_begin(f->st), 0);
        for (int i = 0; i < N; i++)
                assert_int_equal(store_event_add(f->st, "info", "vm.state", "vm", 7, "pagevm", i < MINE ? OWNER : 0, "m"), 0);
        assert_int_equal(store_commit(f->st), 0);

        size_t seen = 0;
        int64_t last = INT64_MAX;
        JobsEventListSpec spec = { .limit = 1000 };
        do {
                json_t *page = NULL;
                assert_int_equal(jobs_event_list(f->jobs, &admin, &spec, &page, &next, &err), 0);
                assert_true(json_array_size(page) <= 1000);
                for (size_t i = 0; i < json_array_size(page); i++) {
                        int64_t id = seq_of(page, i, "id");
                        assert_true(id < last); /* newest first, none twice */
                        last = id;
                }
                seen += json_array_size(page);
                if (next)
                        assert_int_equal(next, last);
                json_decref(page);
                spec.before_id = next;
        } while (next);
        assert_int_equal(seen, had + N);

        /* The restricted scan: nothing of its own in the newest 20,000. */
        JobsEventListSpec mine = { .limit = 10 };
        json_t *page = NULL;
        assert_int_equal(jobs_event_list(f->jobs, &self, &mine, &page, &next, &err), 0);
        assert_int_equal(json_array_size(page), 0);
        assert_true(next > 0);
        json_decref(page);
        mine.before_id = next;
        assert_int_equal(jobs_event_list(f->jobs, &self, &mine, &page, &next, &err), 0);
        assert_int_equal(json_array_size(page), MINE);
        assert_int_equal(next, 0);
        json_decref(page);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_stream_feed),
                cmocka_unit_test(test_history_pages),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
