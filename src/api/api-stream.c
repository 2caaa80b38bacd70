/* api-stream: GET /api/v1/events/stream, a server-sent-events stream of
 * events and job changes, each filtered by what its caller may read (the
 * rules of GET /events and GET /jobs), resumable with Last-Event-ID.
 *
 * The server runs a pool of threads, each with many connections on one
 * epoll; a stream must not hold one of them while it waits. So a stream's
 * content reader hands over what is buffered and, with nothing buffered,
 * suspends its connection (MHD_suspend_connection) and returns 0. One pump
 * thread does the waiting: the jobs module's change hook (jobs_on_change())
 * wakes it when an event or a job change commits; it reads what is new once
 * per stream, appends the messages the caller may see to the stream's
 * buffer and resumes the connection. It also wakes on its own, every
 * STREAM_FALLBACK_MS (a change by another process) and for heartbeats.
 *
 * Message ids are the jobs module's stream sequence (jobs_stream_seq()):
 * event ids and job revisions are drawn from one sequence, so "id: 42" says "I
 * have seen everything up to 42" for both, and a reconnect with
 * Last-Event-ID: 42 (or ?since=42) replays what came after it: every event,
 * and every job that changed, in its latest state (a job's intermediate
 * progress is not kept, only where it is now). */
#include "api-priv.h"
#include "account/account.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#define STREAM_REPLAY_MAX 1000          /* at most this far back on reconnect */
#define STREAM_BATCH 200                /* rows read per query */
#define STREAM_FALLBACK_MS 1000         /* the pump looks even when nothing told it */
#define STREAM_HEARTBEAT_MAX_MS 15000
#define STREAM_BUF_MAX (4u << 20)       /* unsent bytes before a stream is ended */
#define STREAM_DEFAULT_MAX 64
#define STREAM_DEFAULT_MAX_PER_USER 8

typedef struct Stream Stream;
struct Stream {
        Stream *next;
        unsigned refs;                  /* the hub's list, the response, the pump */
        ApiStreams *hub;
        struct MHD_Connection *mc;
        Req ctx;                        /* the caller, for the visibility checks */
        /* filters */
        int64_t job_id;
        char **kinds;                   /* NULL-terminated, or NULL for all */
        char object_type[32];
        int64_t object_id;
        char token_hash[65];            /* the caller's session, checked again */
        /* the pump's (no lock) */
        int64_t cursor;                 /* last sequence number looked at */
        int64_t auth_checked_ms;
        /* under hub->lock */
        StrBuf out;
        size_t out_pos;
        int64_t last_sent_ms;
        bool suspended;
        bool closing;                   /* end once out is sent */
        bool gone;                      /* the connection has ended */
};

struct ApiStreams {
        Api *api;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint64_t changes;               /* bumped by the change hook */
        bool stop;
        bool running;
        pthread_t thread;
        Stream *list;
        unsigned n;
        uint64_t opened;                /* since start, for /metrics */
        unsigned max, max_per_user;
        int64_t heartbeat_ms;
};

static void stream_unref_locked(Stream *s) {
        assert(s->refs > 0);
        if (--s->refs > 0)
                return;
        strbuf_free(&s->out);
        if (s->kinds)
                for (char **k = s->kinds; *k; k++) free(*k);
        free(s->kinds);
        free(s);
}

static void stream_unref(Stream *s) {
        ApiStreams *h = s->hub;
        pthread_mutex_lock(&h->lock);
        stream_unref_locked(s);
        pthread_mutex_unlock(&h->lock);
}

/* ---- filters and messages ---- */

static bool kind_matches(Stream *s, const char *kind) {
        if (!s->kinds)
                return true;
        for (char **k = s->kinds; *k; k++) {
                size_t n = strlen(*k);
                if (n >= 2 && streq(*k + n - 2, ".*") ? strncmp(kind, *k, n - 1) == 0 : streq(kind, *k))
                        return true;
        }
        return false;
}

static bool object_matches(Stream *s, json_t *it, const char *kind_key, const char *id_key) {
        if (!s->object_type[0])
                return true;
        const char *k = json_string_value(json_object_get(it, kind_key));
        return k && streq(k, s->object_type) && json_integer_value(json_object_get(it, id_key)) == s->object_id;
}

static bool job_final(json_t *job) {
        const char *st = json_string_value(json_object_get(job, "state"));
        return st && (streq(st, "succeeded") || streq(st, "failed") || streq(st, "cancelled"));
}

static void append_message(StrBuf *b, int64_t seq, const char *type, json_t *data) {
        _cleanup_free_ char *s = json_dumps(data, JSON_COMPACT | JSON_ENSURE_ASCII);
        strbuf_printf(b, "id: %lld\nevent: %s\ndata: %s\n\n", (long long) seq, type, s ? s : "null");
}

static bool want_event(Stream *s, json_t *ev) {
        if (s->job_id > 0)
                return false;
        const char *kind = json_string_value(json_object_get(ev, "kind"));
        return kind_matches(s, kind ? kind : "") && object_matches(s, ev, "object_kind", "object_id") &&
               api_event_visible(&s->ctx, ev);
}

static bool want_job(Stream *s, json_t *job) {
        if (s->job_id > 0 && json_integer_value(json_object_get(job, "id")) != s->job_id)
                return false;
        const char *kind = json_string_value(json_object_get(job, "kind"));
        return kind_matches(s, kind ? kind : "") && object_matches(s, job, "target_kind", "target_id") &&
               api_job_visible(&s->ctx, job);
}

/* Reads what is new for s (pump thread, no lock held): the messages into
 * *out, in sequence order; moves s->cursor; *ret_end when a ?job= stream's
 * job has ended. */
static void stream_collect(Stream *s, StrBuf *out, bool *ret_end) {
        Jobs *jb = s->hub->api->jobs;
        int64_t high;
        if (jobs_stream_seq(jb, &high) < 0 || high <= s->cursor)
                return;
        _cleanup_json_ json_t *evs = NULL, *jobs = NULL;
        if (jobs_stream_read(jb, s->cursor, STREAM_BATCH, s->job_id, &evs, &jobs) < 0)
                return;
        /* Both lists are read up to one number: what a full list leaves out
         * beyond its last row, and what committed after high was read, is
         * for the next round. */
        int64_t upto = high;
        size_t ne = json_array_size(evs), nj = json_array_size(jobs);
        if (ne == STREAM_BATCH) {
                int64_t last = json_integer_value(json_object_get(json_array_get(evs, ne - 1), "id"));
                if (last < upto) upto = last;
        }
        if (nj == STREAM_BATCH) {
                int64_t last = json_integer_value(json_object_get(json_array_get(jobs, nj - 1), "stream_seq"));
                if (last < upto) upto = last;
        }
        size_t ie = 0, ij = 0;
        for (;;) {
                json_t *e = ie < ne ? json_array_get(evs, ie) : NULL;
                json_t *j = ij < nj ? json_array_get(jobs, ij) : NULL;
                int64_t se = e ? json_integer_value(json_object_get(e, "id")) : INT64_MAX;
                int64_t sj = j ? json_integer_value(json_object_get(j, "stream_seq")) : INT64_MAX;
                if (se <= sj && se <= upto) {
                        if (want_event(s, e))
                                append_message(out, se, "event", e);
                        ie++;
                } else if (sj < se && sj <= upto) {
                        json_object_del(j, "stream_seq");
                        if (want_job(s, j)) {
                                append_message(out, sj, "job", j);
                                if (s->job_id > 0 && job_final(j)) {
                                        *ret_end = true;
                                        s->cursor = sj;
                                        return;
                                }
                        }
                        ij++;
                } else
                        break;
        }
        s->cursor = upto;
}

static int id_cmp(const void *a, const void *b) {
        int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
        return x < y ? -1 : x > y;
}

/* Whether a delegated administrator's scopes are still those s was opened
 * with (as sets). */
static bool stream_scopes_same(Stream *s) {
        if (s->ctx.subj.role != ROLE_DELEGATED_ADMIN)
                return true;
        _cleanup_free_ int64_t *now = NULL;
        int n = account_user_scopes(s->hub->api->st, s->ctx.user.id, &now);
        if (n < 0)
                return false;
        if (n > API_MAX_SCOPES)
                n = API_MAX_SCOPES; /* as api_set_caller() keeps them */
        if ((size_t) n != s->ctx.subj.n_scopes)
                return false;
        int64_t had[API_MAX_SCOPES];
        memcpy(had, s->ctx.scopes, (size_t) n * sizeof *had);
        qsort(had, (size_t) n, sizeof *had, id_cmp);
        qsort(now, (size_t) n, sizeof *now, id_cmp);
        return memcmp(had, now, (size_t) n * sizeof *had) == 0;
}

/* Whether the session that opened s still stands, for the same user with
 * the same role and, for a delegated administrator, the same scopes: a
 * stream outlives no logout, expiry, change of role or of scope (pump
 * thread, every heartbeat interval). The client reconnects and is filtered
 * by what it may see now. */
static bool stream_caller_valid(Stream *s) {
        StoreUser u;
        if (account_session_user(s->hub->api->st, s->token_hash, &u) < 0)
                return false;
        return u.id == s->ctx.user.id && streq(u.role, s->ctx.user.role) && stream_scopes_same(s);
}

/* ---- the pump ---- */

static void on_jobs_change(void *userdata) {
        ApiStreams *h = userdata;
        pthread_mutex_lock(&h->lock);
        h->changes++;
        pthread_cond_broadcast(&h->cond);
        pthread_mutex_unlock(&h->lock);
}

/* With h->lock held: whether s's connection must be resumed now (it is
 * suspended and has something to send, or is to end); clears suspended.
 * The caller resumes it after dropping the lock: a suspended connection
 * cannot end, so s->mc stays valid until then. */
static bool stream_take_resume(Stream *s) {
        if (!s->suspended || (s->out.len == s->out_pos && !s->closing))
                return false;
        s->suspended = false;
        return true;
}

static void pump_round(ApiStreams *h) {
        /* Under the lock: every open stream, held. */
        size_t n = 0;
        for (Stream *s = h->list; s; s = s->next) n++;
        _cleanup_free_ Stream **all = xcalloc(n ? n : 1, sizeof *all);
        n = 0;
        for (Stream *s = h->list; s; s = s->next)
                if (!s->closing) {
                        s->refs++;
                        all[n++] = s;
                }
        pthread_mutex_unlock(&h->lock);
        for (size_t i = 0; i < n; i++) {
                Stream *s = all[i];
                StrBuf msgs = {0};
                bool end = false;
                int64_t t = mono_ms();
                if (t - s->auth_checked_ms >= h->heartbeat_ms) {
                        s->auth_checked_ms = t;
                        end = !stream_caller_valid(s);
                }
                if (!end)
                        stream_collect(s, &msgs, &end);
                pthread_mutex_lock(&h->lock);
                int64_t now = mono_ms();
                if (!s->gone) {
                        if (msgs.len > 0 && s->out.len - s->out_pos + msgs.len > STREAM_BUF_MAX) {
                                /* It does not read: end it; it resumes from its last id. */
                                s->closing = true;
                        } else if (msgs.len > 0) {
                                strbuf_appendn(&s->out, msgs.s, msgs.len);
                        } else if (now - s->last_sent_ms >= h->heartbeat_ms && s->out.len == s->out_pos) {
                                strbuf_append(&s->out, ": keepalive\n\n");
                                s->last_sent_ms = now;
                        }
                        if (end)
                                s->closing = true;
                }
                bool resume = !s->gone && stream_take_resume(s);
                struct MHD_Connection *mc = s->mc;
                stream_unref_locked(s);
                pthread_mutex_unlock(&h->lock);
                strbuf_free(&msgs);
                if (resume)
                        MHD_resume_connection(mc);
        }
        pthread_mutex_lock(&h->lock);
}

static void *pump_main(void *arg) {
        ApiStreams *h = arg;
        uint64_t seen = 0;
        pthread_mutex_lock(&h->lock);
        while (!h->stop) {
                if (h->changes == seen) {
                        int64_t wait_ms = STREAM_FALLBACK_MS;
                        int64_t now = mono_ms();
                        for (Stream *s = h->list; s; s = s->next) {
                                int64_t due = s->last_sent_ms + h->heartbeat_ms - now;
                                if (due < wait_ms) wait_ms = due < 1 ? 1 : due;
                        }
                        struct timespec ts = time_after_ms(CLOCK_REALTIME, wait_ms);
                        (void) pthread_cond_timedwait(&h->cond, &h->lock, &ts);
                        if (h->stop)
                                break;
                }
                seen = h->changes;
                if (h->list)
                        pump_round(h);
        }
        pthread_mutex_unlock(&h->lock);
        return NULL;
}

/* ---- the connection's side (MHD worker threads) ---- */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
        (void) pos;
        Stream *s = cls;
        ApiStreams *h = s->hub;
        ssize_t ret;
        pthread_mutex_lock(&h->lock);
        size_t have = s->out.len - s->out_pos;
        if (have > 0) {
                size_t n = have < max ? have : max;
                memcpy(buf, s->out.s + s->out_pos, n);
                s->out_pos += n;
                if (s->out_pos == s->out.len)
                        s->out.len = s->out_pos = 0;
                s->last_sent_ms = mono_ms();
                ret = (ssize_t) n;
        } else if (s->closing || h->stop) {
                ret = MHD_CONTENT_READER_END_OF_STREAM;
        } else {
                /* Nothing to send: park the connection until the pump
                 * resumes it. Returning 0 without this would spin. */
                s->suspended = true;
                MHD_suspend_connection(s->mc);
                ret = 0;
        }
        pthread_mutex_unlock(&h->lock);
        return ret;
}

static void stream_response_done(void *cls) {
        stream_unref(cls);
}

void api_event_stream_closed(Req *r) {
        Stream *s = r->event_stream;
        if (!s)
                return;
        r->event_stream = NULL;
        ApiStreams *h = s->hub;
        pthread_mutex_lock(&h->lock);
        for (Stream **p = &h->list; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        h->n--;
                        break;
                }
        s->gone = true;
        stream_unref_locked(s);
        pthread_mutex_unlock(&h->lock);
}

/* ---- the handler ---- */

static char **split_kinds(const char *v) {
        size_t n = 1;
        for (const char *p = v; *p; p++)
                if (*p == ',') n++;
        char **out = xcalloc(n + 1, sizeof *out);
        size_t i = 0;
        for (const char *p = v; *p;) {
                size_t l = strcspn(p, ",");
                if (l > 0) {
                        out[i] = xcalloc(l + 1, 1);
                        memcpy(out[i++], p, l);
                }
                p += l;
                if (*p == ',') p++;
        }
        return out;
}

static bool word_ok(const char *s, size_t max, bool allow_star) {
        size_t n = strlen(s);
        if (n == 0 || n > max)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_' ||
                      (allow_star && *p == '*')))
                        return false;
        return true;
}

/* The request's resume point and filters. */
typedef struct {
        int64_t since;                  /* -1: none */
        int64_t job, object_id;
        const char *kinds, *object_type;
} StreamQuery;

/* Parses and checks them: false after a 400 naming the first that is wrong. */
static bool stream_query(Req *r, StreamQuery *q) {
        *q = (StreamQuery) { .since = -1 };
        const char *last = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Last-Event-ID");
        if (last && *last) {
                if (parse_i64(last, &q->since) < 0 || q->since < 0) {
                        reply_error(r, 400, "invalid_argument", "Last-Event-ID",
                                    "Header 'Last-Event-ID' must be the id of a message of this stream (a whole number).");
                        return false;
                }
        } else if (req_query(r, "since") && !req_query_int(r, "since", 0, 0, INT64_MAX, &q->since))
                return false;
        if (!req_query_int(r, "job", 0, 1, INT64_MAX, &q->job) || !req_query_int(r, "object_id", 0, 1, INT64_MAX, &q->object_id))
                return false;
        q->kinds = req_query(r, "kinds");
        q->object_type = req_query(r, "object_type");
        if (q->kinds) {
                _cleanup_free_ char *copy = xstrdup(q->kinds);
                bool ok = strlen(q->kinds) <= 1024;
                char *save = NULL;
                for (char *k = strtok_r(copy, ",", &save); ok && k; k = strtok_r(NULL, ",", &save))
                        ok = word_ok(k, 64, true);
                if (!ok) {
                        reply_error(r, 400, "invalid_argument", "kinds",
                                    "Query 'kinds' must be a comma-separated list of kinds such as 'vm.state' or 'vm.*'.");
                        return false;
                }
        }
        if (q->object_type && !word_ok(q->object_type, 31, false)) {
                reply_error(r, 400, "invalid_argument", "object_type", "Query 'object_type' must be a kind of object such as 'vm' or 'host'.");
                return false;
        }
        if (!q->object_type != !q->object_id) {
                reply_error(r, 400, "invalid_argument", q->object_type ? "object_id" : "object_type",
                            "Queries 'object_type' and 'object_id' go together: give both or neither.");
                return false;
        }
        return true;
}

static void h_events_stream(Req *r) {
        ApiStreams *h = r->api->streams;
        StreamQuery q;
        if (!stream_query(r, &q))
                return;
        int64_t since = q.since, job = q.job;
        const char *kinds = q.kinds, *object_type = q.object_type;
        /* The number first, then the job: a change made in between comes
         * again after the job's state, never not at all. */
        int64_t high;
        if (jobs_stream_seq(r->api->jobs, &high) < 0)
                return reply_error(r, 500, "internal", NULL, "A database error occurred while opening the event stream.");
        _cleanup_json_ json_t *job_now = NULL;
        if (job > 0) {
                if (jobs_get_json(r->api->jobs, job, &job_now) < 0 || !api_job_visible(r, job_now))
                        return reply_error(r, 404, "not_found", "job", "There is no job with id %lld.", (long long) job);
        }

        Stream *s = xcalloc(1, sizeof *s);
        s->hub = h;
        s->mc = r->mc;
        s->ctx = (Req) { .api = r->api, .authed = true, .user = r->user, .subj = r->subj };
        memset(s->ctx.user.password_hash, 0, sizeof s->ctx.user.password_hash);
        memcpy(s->ctx.scopes, r->scopes, sizeof s->ctx.scopes);
        s->ctx.subj.scopes = s->ctx.scopes;
        memcpy(s->token_hash, r->token_hash, sizeof s->token_hash);
        s->auth_checked_ms = mono_ms();
        s->job_id = job;
        s->kinds = kinds ? split_kinds(kinds) : NULL;
        if (object_type) {
                snprintf(s->object_type, sizeof s->object_type, "%s", object_type);
                s->object_id = q.object_id;
        }
        /* A resume replays what came after the id it gives, at most
         * STREAM_REPLAY_MAX numbers back; an id from the future (another
         * database) counts as now. */
        s->cursor = since < 0 || since > high ? high : (since < high - STREAM_REPLAY_MAX ? high - STREAM_REPLAY_MAX : since);
        strbuf_append(&s->out, ": armada event stream\nretry: 2000\n\n");
        if (job_now && since < 0) {
                /* Where the job is now, numbered as of before it was read. */
                append_message(&s->out, high, "job", job_now);
                if (job_final(job_now))
                        s->closing = true;
        }
        s->last_sent_ms = mono_ms();

        pthread_mutex_lock(&h->lock);
        unsigned mine = 0;
        for (Stream *o = h->list; o; o = o->next)
                if (o->ctx.user.id == r->user.id) mine++;
        bool full = h->n >= h->max, user_full = mine >= h->max_per_user;
        if (!full && !user_full && !h->stop) {
                s->refs = 2; /* the list (until the connection ends) and the response */
                s->next = h->list;
                h->list = s;
                h->n++;
                h->opened++;
                /* A change that committed after high was read told the pump
                 * before this stream was listed: one more round. */
                h->changes++;
                pthread_cond_broadcast(&h->cond);
        }
        pthread_mutex_unlock(&h->lock);
        if (full || user_full || s->refs == 0) {
                s->refs = 1;
                stream_unref(s);
                if (user_full)
                        return reply_error(r, 429, "too_many_streams", NULL,
                                           "User '%s' already has %u event streams open, the most one user may; close one first.",
                                           r->user.name, h->max_per_user);
                return reply_error(r, 429, "too_many_streams", NULL,
                                   "armadad already serves %u event streams, the most it serves at once; try again later.", h->max);
        }
        r->event_stream = s;
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_response_done);
        if (!resp) {
                stream_unref(s);
                api_event_stream_closed(r);
                return reply_error(r, 500, "internal", NULL, "The event stream could not be opened.");
        }
        /* Proxies must pass each message on as it comes. */
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        r->mhd_resp = resp;
        r->status = 200;
        r->content_type = "text/event-stream";
}

const Route api_routes_stream[] = {
        { "GET", "/api/v1/events/stream", h_events_stream, false },
        { NULL, NULL, NULL, false },
};

void api_streams_counts(Api *api, unsigned *ret_open, uint64_t *ret_opened) {
        ApiStreams *h = api->streams;
        *ret_open = 0;
        *ret_opened = 0;
        if (!h)
                return;
        pthread_mutex_lock(&h->lock);
        *ret_open = h->n;
        *ret_opened = h->opened;
        pthread_mutex_unlock(&h->lock);
}

/* ---- start and stop ---- */

int api_streams_start(Api *api) {
        ApiStreams *h = xcalloc(1, sizeof *h);
        h->api = api;
        pthread_mutex_init(&h->lock, NULL);
        pthread_cond_init(&h->cond, NULL);
        h->max = api->cfg.max_streams ? api->cfg.max_streams : STREAM_DEFAULT_MAX;
        h->max_per_user = api->cfg.max_streams_per_user ? api->cfg.max_streams_per_user : STREAM_DEFAULT_MAX_PER_USER;
        /* Every 15 s, or half the idle timeout when that is shorter, so that
         * nothing between (a proxy with armadad's own habits) finds it idle. */
        h->heartbeat_ms = STREAM_HEARTBEAT_MAX_MS;
        if ((int64_t) api->cfg.idle_timeout_s * 500 < h->heartbeat_ms)
                h->heartbeat_ms = (int64_t) api->cfg.idle_timeout_s * 500;
        if (h->heartbeat_ms < 200)
                h->heartbeat_ms = 200;
        if (pthread_create(&h->thread, NULL, pump_main, h) != 0) {
                pthread_cond_destroy(&h->cond);
                pthread_mutex_destroy(&h->lock);
                free(h);
                return -errno;
        }
        h->running = true;
        api->streams = h;
        jobs_on_change(api->jobs, on_jobs_change, h);
        return 0;
}

void api_streams_stop(Api *api) {
        ApiStreams *h = api->streams;
        if (!h || !h->running)
                return;
        jobs_on_change(api->jobs, NULL, NULL);
        pthread_mutex_lock(&h->lock);
        h->stop = true;
        pthread_cond_broadcast(&h->cond);
        pthread_mutex_unlock(&h->lock);
        pthread_join(h->thread, NULL);
        h->running = false;
        /* The daemon must not stop with a connection suspended: every
         * stream ends, and a parked one is woken to say so. */
        for (;;) {
                struct MHD_Connection *mc = NULL;
                pthread_mutex_lock(&h->lock);
                for (Stream *s = h->list; s && !mc; s = s->next) {
                        s->closing = true;
                        if (stream_take_resume(s))
                                mc = s->mc;
                }
                pthread_mutex_unlock(&h->lock);
                if (!mc)
                        break;
                MHD_resume_connection(mc);
        }
}

void api_streams_free(Api *api) {
        ApiStreams *h = api->streams;
        if (!h)
                return;
        /* Streams still listed belong to connections MHD_stop_daemon ended. */
        pthread_cond_destroy(&h->cond);
        pthread_mutex_destroy(&h->lock);
        free(h);
        api->streams = NULL;
}
