/* armada's HTTP client of armadad's REST API (base /api/v1): one reused curl
 * handle, JSON in and out, the API's error object turned into one sentence,
 * name-to-id resolution, and following jobs until they end. Redirects are
 * never followed, so the bearer token only ever goes to the server named. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define USER_AGENT "armada/" ARMADA_VERSION

void api_reply_done(ApiReply *r) {
        json_decref(r->json);
        free(r->error);
        free(r->field);
        *r = (ApiReply) {0};
}

static size_t on_body(char *data, size_t size, size_t n, void *userdata) {
        StrBuf *b = userdata;
        if (b->len + size * n > 64u << 20)
                return 0; /* refuse absurd bodies: aborts the transfer */
        strbuf_appendn(b, data, size * n);
        return size * n;
}

static void curl_slist_freep(struct curl_slist **l) { curl_slist_free_all(*l); }

/* Turns the body of an error response into a sentence and an optional field. */
static void parse_error(ApiReply *reply, const char *body) {
        json_t *e = json_object_get(reply->json, "error");
        const char *msg = jstr(e, "message");
        if (!msg)
                msg = json_is_string(e) ? json_string_value(e) : NULL;
        if (msg && *msg) {
                reply->error = xstrdup(msg);
                reply->field = xstrdup(jstr(e, "field"));
                return;
        }
        if (reply->status == 401)
                reply->error = xstrdup("not logged in, or the session has expired");
        else if (reply->status == 403)
                reply->error = xstrdup("permission denied");
        else if (reply->status == 404)
                reply->error = xstrdup("not found");
        else if (body && *body && !reply->json && strlen(body) < 200 && !strchr(body, '<'))
                reply->error = xasprintf("the server answered HTTP %ld: %s", reply->status, body);
        else
                reply->error = xasprintf("the server answered HTTP %ld", reply->status);
}

/* What every request to armadad sets: the URL, the transports, the
 * connect timeout, TLS as the context says, and the Accept and bearer-token
 * headers (appended to *headers; *auth keeps the token's header alive).
 * The caller adds its own options and sets CURLOPT_HTTPHEADER. */
static void request_setup(Ctx *c, const char *url, const char *accept, struct curl_slist **headers, char **auth) {
        CURL *h = c->curl;
        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
        curl_easy_setopt(h, CURLOPT_USERAGENT, USER_AGENT);
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        if (c->insecure) {
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        if (c->cacert)
                curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
        _cleanup_free_ char *accept_header = xasprintf("Accept: %s", accept);
        *headers = curl_slist_append(*headers, accept_header);
        if (c->token) {
                *auth = xasprintf("Authorization: Bearer %s", c->token);
                *headers = curl_slist_append(*headers, *auth);
        }
}

int api_send(Ctx *c, const char *method, const char *path, json_t *body, long timeout_s, ApiReply *reply) {
        _cleanup_free_ char *url = xasprintf("%s%s%s", c->server, API_PREFIX, path);
        _cleanup_(curl_slist_freep) struct curl_slist *headers = NULL;
        _cleanup_free_ char *auth = NULL;
        char *payload = NULL;
        char errbuf[CURL_ERROR_SIZE] = "";
        StrBuf resp = {0};
        CURL *h = c->curl;

        *reply = (ApiReply) {0};
        request_setup(c, url, "application/json", &headers, &auth);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
        if (body) {
                payload = json_dumps(body, JSON_COMPACT);
                if (!payload) {
                        reply->error = xstrdup("cannot encode the request as JSON");
                        return EXIT_ERROR;
                }
                headers = curl_slist_append(headers, "Content-Type: application/json");
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long) strlen(payload));
        }
        /* Without a body curl would send POST with an empty form; ask for
         * the method by name and, for POST, say the body is empty. */
        if (!body && streq(method, "POST")) {
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
        }
        if (!streq(method, "GET") && !streq(method, "POST"))
                curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        /* An empty Expect: keeps curl from waiting a second for 100-continue. */
        headers = curl_slist_append(headers, "Expect:");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);

        CURLcode cr = curl_easy_perform(h);
        if (auth)
                explicit_bzero(auth, strlen(auth));
        if (payload) {
                /* The body may hold a password. */
                explicit_bzero(payload, strlen(payload));
                free(payload);
        }
        if (cr != CURLE_OK) {
                strbuf_free(&resp);
                reply->error = xstrdup(errbuf[0] ? errbuf : curl_easy_strerror(cr));
                size_t n = strlen(reply->error);
                while (n > 0 && reply->error[n - 1] == '\n')
                        reply->error[--n] = 0;
                if (cr == CURLE_PEER_FAILED_VERIFICATION || cr == CURLE_SSL_CACERT_BADFILE) {
                        char *e = xasprintf("%s (use --cacert FILE to trust the server's certificate "
                                            "authority, or --insecure for a test server)", reply->error);
                        free(reply->error);
                        reply->error = e;
                }
                return EXIT_UNREACHABLE;
        }
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &reply->status);
        _cleanup_free_ char *text = strbuf_steal(&resp);
        if (*text) {
                json_error_t jerr;
                reply->json = json_loads(text, JSON_DECODE_ANY, &jerr);
        }
        if (reply->status >= 300)
                parse_error(reply, text);
        else if (*text && !reply->json) {
                reply->error = xasprintf("the server's answer to %s %s is not JSON; is %s an armadad?",
                                         method, path, c->server);
                reply->status = 0;
                return EXIT_ERROR;
        }
        return 0;
}

/* api_download's transfer: the body goes to the file on a 200, to err
 * (an error's JSON) otherwise. */
typedef struct {
        CURL *h;
        FILE *f;
        StrBuf err;
        uint64_t bytes;
        bool write_failed;
} Download;

static size_t on_download(char *data, size_t size, size_t n, void *userdata) {
        Download *d = userdata;
        long status = 0;
        curl_easy_getinfo(d->h, CURLINFO_RESPONSE_CODE, &status);
        if (status != 200)
                return on_body(data, size, n, &d->err);
        if (fwrite(data, size, n, d->f) != n) {
                d->write_failed = true;
                return 0;
        }
        d->bytes += size * n;
        return size * n;
}

int api_download(Ctx *c, const char *path, FILE *f, long idle_timeout_s, ApiReply *reply, uint64_t *ret_bytes) {
        _cleanup_free_ char *url = xasprintf("%s%s%s", c->server, API_PREFIX, path);
        _cleanup_(curl_slist_freep) struct curl_slist *headers = NULL;
        _cleanup_free_ char *auth = NULL;
        char errbuf[CURL_ERROR_SIZE] = "";
        CURL *h = c->curl;
        Download d = { .h = h, .f = f };

        *reply = (ApiReply) {0};
        request_setup(c, url, "application/octet-stream, application/json", &headers, &auth);
        /* No limit on the whole (a large file takes its time), but one on
         * silence: the server may take minutes to start its appliance. */
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 0L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, idle_timeout_s);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_download);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &d);
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        CURLcode cr = curl_easy_perform(h);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 0L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 0L);
        if (auth)
                explicit_bzero(auth, strlen(auth));
        _cleanup_free_ char *text = strbuf_steal(&d.err);
        if (d.write_failed) {
                reply->error = xasprintf("cannot write the file: %s", strerror(errno));
                return EXIT_ERROR;
        }
        if (cr != CURLE_OK) {
                reply->error = xstrdup(errbuf[0] ? errbuf : curl_easy_strerror(cr));
                size_t n = strlen(reply->error);
                while (n > 0 && reply->error[n - 1] == '\n')
                        reply->error[--n] = 0;
                /* Cut short after the answer began: the file is incomplete. */
                return cr == CURLE_PARTIAL_FILE || d.bytes ? EXIT_ERROR : EXIT_UNREACHABLE;
        }
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &reply->status);
        if (reply->status != 200) {
                if (*text)
                        reply->json = json_loads(text, JSON_DECODE_ANY, NULL);
                parse_error(reply, text);
        }
        if (ret_bytes)
                *ret_bytes = d.bytes;
        return 0;
}

int api_report(Ctx *c, const ApiReply *reply, int r) {
        if (r == EXIT_UNREACHABLE) {
                fprintf(stderr, "armada: cannot reach armadad at %s: %s\n", c->server, reply->error);
                return EXIT_UNREACHABLE;
        }
        if (reply->field)
                fprintf(stderr, "armada: %s (field: %s)\n", reply->error, reply->field);
        else
                fprintf(stderr, "armada: %s\n", reply->error ? reply->error : "request failed");
        if (reply->status == 401 && !c->logging_in)
                fprintf(stderr, "armada: log in with 'armada login'%s\n",
                        c->token ? " (the token in use was refused)" : "");
        return EXIT_ERROR;
}

int api_call(Ctx *c, const char *method, const char *path, json_t *body, json_t **ret_json) {
        ApiReply reply;
        int r = api_send(c, method, path, body, REQUEST_TIMEOUT_S, &reply);
        if (r != 0 || reply.status >= 300 || reply.status == 0) {
                if (r == 0)
                        r = EXIT_ERROR;
                api_report(c, &reply, r);
                api_reply_done(&reply);
                return r;
        }
        if (ret_json)
                *ret_json = steal_ptr(reply.json);
        api_reply_done(&reply);
        return 0;
}

int api_list_all(Ctx *c, const char *path, json_t **ret_json) {
        _cleanup_json_ json_t *all = json_array();
        _cleanup_free_ char *cursor = NULL;
        /* ARMADA_LIST_PAGE: another page size (1..5000), for tests. */
        const char *env = getenv("ARMADA_LIST_PAGE");
        int page_size = env && atoi(env) > 0 && atoi(env) <= 5000 ? atoi(env) : API_LIST_PAGE;
        for (;;) {
                StrBuf p = {0};
                strbuf_printf(&p, "%s%climit=%d", path, strchr(path, '?') ? '&' : '?', page_size);
                if (cursor)
                        query_add(c, &p, "cursor", cursor);
                _cleanup_free_ char *page_path = strbuf_steal(&p);
                _cleanup_json_ json_t *page = NULL;
                int r = api_call(c, "GET", page_path, NULL, &page);
                if (r)
                        return r;
                json_array_extend(all, json_object_get(page, "items"));
                /* An armadad without paging answers everything and no
                 * next_cursor: that was the last page too. */
                const char *next = json_string_value(json_object_get(page, "next_cursor"));
                if (!next)
                        break;
                free(cursor);
                cursor = xstrdup(next);
        }
        *ret_json = json_pack("{s:O}", "items", all);
        return 0;
}

void query_add(Ctx *c, StrBuf *b, const char *key, const char *value) {
        char *esc = curl_easy_escape(c->curl, value, 0);
        if (!esc)
                abort(); /* only on out of memory */
        strbuf_printf(b, "%c%s=%s", b->s && strchr(b->s, '?') ? '&' : '?', key, esc);
        curl_free(esc);
}

char *group_path_normalize(const char *path) {
        const char *p = path;
        size_t root = strlen(ROOT_GROUP_NAME);
        while (*p == '/')
                p++;
        if (strncmp(p, ROOT_GROUP_NAME, root) == 0 && (p[root] == 0 || p[root] == '/'))
                p += root;
        StrBuf b = {0};
        while (*p) {
                size_t n = strcspn(p, "/");
                if (n > 0) {
                        if (b.len)
                                strbuf_append(&b, "/");
                        strbuf_appendn(&b, p, n);
                }
                p += n;
                while (*p == '/')
                        p++;
        }
        return strbuf_steal(&b);
}

int resolve(Ctx *c, const char *collection, const char *key, const char *value, const char *what,
            int64_t *ret_id, json_t **ret_item) {
        StrBuf path = {0};
        strbuf_printf(&path, "/%s", collection);
        query_add(c, &path, key, value);
        _cleanup_free_ char *p = strbuf_steal(&path);
        _cleanup_json_ json_t *j = NULL;
        int r = api_call(c, "GET", p, NULL, &j);
        if (r)
                return r;
        json_t *items = json_object_get(j, "items"), *item, *found = NULL;
        bool is_path = streq(key, "path");
        _cleanup_free_ char *want = is_path ? group_path_normalize(value) : xstrdup(value);
        size_t i;
        json_array_foreach(items, i, item) {
                const char *v = jstr(item, key);
                _cleanup_free_ char *have = v && is_path ? group_path_normalize(v) : xstrdup(v);
                if (have && streq(have, want)) {
                        found = item;
                        break;
                }
        }
        /* Only an exact match counts: a server that ignored the filter must
         * not make us act on some other object. */
        if (!found || !json_is_integer(json_object_get(found, "id"))) {
                if (streq(key, "path"))
                        return fail("no %s '%s'", what, value);
                return fail("no %s named '%s'", what, value);
        }
        *ret_id = (int64_t) json_integer_value(json_object_get(found, "id"));
        if (ret_item)
                *ret_item = json_incref(found);
        return 0;
}

/* ---- jobs ---- */

static bool job_is_final(const char *state) {
        return state && (streq(state, "succeeded") || streq(state, "failed") || streq(state, "cancelled"));
}

/* "job 12 vm.start web01" */
static char *job_label(json_t *job) {
        const char *kind = jstr(job, "kind");
        const char *target = jstr(job, "target_name");
        return xasprintf("job %" PRId64 " %s%s%s", jint(job, "id", 0), kind ? kind : "?",
                         target ? " " : "", target ? target : "");
}

static volatile sig_atomic_t interrupted;
static void on_interrupt(int sig) { interrupted = 1; }

static void sleep_ms(long ms) {
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

/* Replaces control characters so a server's text cannot drive the terminal. */
static char *clean(const char *s) {
        char *r = xstrdup(s ? s : "");
        for (unsigned char *p = (unsigned char *) r; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        *p = ' ';
        return r;
}

static void print_final(Ctx *c, json_t *job) {
        const char *state = jstr(job, "state");
        if (c->output == OUTPUT_JSON) {
                print_json(job);
                return;
        }
        if (state && streq(state, "succeeded")) {
                _cleanup_free_ char *kind = clean(jstr(job, "kind"));
                _cleanup_free_ char *target = clean(jstr(job, "target_name"));
                printf("job %" PRId64 " succeeded: %s%s%s\n", jint(job, "id", 0), kind, *target ? " " : "",
                       target);
        }
}

static int job_outcome(json_t *job) {
        const char *state = jstr(job, "state");
        if (state && streq(state, "succeeded"))
                return 0;
        _cleanup_free_ char *label = job_label(job);
        _cleanup_free_ char *lbl = clean(label);
        if (state && streq(state, "cancelled"))
                return fail("%s was cancelled", lbl);
        _cleanup_free_ char *err = clean(jstr(job, "error"));
        return fail("%s failed: %s", lbl, *err ? err : "no reason given");
}

/* What the user sees while a job is followed: one progress line, redrawn
 * on a terminal, printed when it changes otherwise. */
typedef struct {
        int64_t id;
        bool tty;
        char *last_line;
} Follow;

static void follow_show(Follow *f, json_t *job) {
        const char *state = jstr(job, "state");
        _cleanup_free_ char *kind = clean(jstr(job, "kind"));
        _cleanup_free_ char *step = clean(jstr(job, "step"));
        _cleanup_free_ char *line = NULL;
        if (state && (streq(state, "queued") || (streq(state, "running") && !*step)))
                line = xasprintf("job %" PRId64 " %s: %" PRId64 "%% %s", f->id, kind, jint(job, "progress", 0), state);
        else
                line = xasprintf("job %" PRId64 " %s: %" PRId64 "%% %s", f->id, kind, jint(job, "progress", 0),
                                 *step ? step : (state ? state : "?"));
        if (!f->last_line || !streq(line, f->last_line)) {
                if (f->tty)
                        fprintf(stderr, "\r\033[K%s", line);
                else
                        fprintf(stderr, "%s\n", line);
                fflush(stderr);
                free(f->last_line);
                f->last_line = steal_ptr(line);
        }
}

static void follow_clear(Follow *f) {
        if (f->tty && f->last_line)
                fputs("\r\033[K", stderr);
}

/* ---- following a job on the event stream ---- */

/* Parser state of GET /events/stream?job=ID (text/event-stream). */
typedef struct {
        CURL *h;
        Follow *f;
        StrBuf line;            /* the line being received */
        StrBuf data;            /* the data: lines of the message so far */
        char event[16];
        bool refused;           /* not a 200 event stream: poll instead */
        json_t *final;          /* the job, once it has ended */
} Sse;

static void sse_dispatch(Sse *s) {
        if (streq(s->event, "job") && s->data.len > 0) {
                json_error_t jerr;
                _cleanup_json_ json_t *job = json_loadb(s->data.s, s->data.len, 0, &jerr);
                if (json_is_object(job) && jint(job, "id", 0) == s->f->id) {
                        if (job_is_final(jstr(job, "state")))
                                s->final = json_incref(job);
                        else
                                follow_show(s->f, job);
                }
        }
        s->event[0] = 0;
        s->data.len = 0;
}

static void sse_line(Sse *s, char *l, size_t n) {
        if (n > 0 && l[n - 1] == '\r')
                l[--n] = 0;
        if (n == 0) {
                sse_dispatch(s);
                return;
        }
        if (l[0] == ':')
                return; /* a comment: the heartbeat */
        char *v = strchr(l, ':');
        size_t kl = v ? (size_t) (v - l) : n;
        v = v ? v + 1 : l + n;
        if (*v == ' ')
                v++;
        if (kl == 5 && strncmp(l, "event", 5) == 0)
                snprintf(s->event, sizeof s->event, "%s", v);
        else if (kl == 4 && strncmp(l, "data", 4) == 0) {
                if (s->data.len)
                        strbuf_append(&s->data, "\n");
                strbuf_append(&s->data, v);
        }
}

static size_t sse_on_body(char *data, size_t size, size_t n, void *userdata) {
        Sse *s = userdata;
        size_t len = size * n;
        long status = 0;
        const char *ctype = NULL;
        curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(s->h, CURLINFO_CONTENT_TYPE, &ctype);
        if (status != 200 || !ctype || strncmp(ctype, "text/event-stream", 17) != 0) {
                s->refused = true;
                return 0;
        }
        for (size_t i = 0; i < len && !s->final; i++) {
                if (data[i] != '\n') {
                        if (s->line.len > (1u << 20))
                                return 0; /* no message is this long */
                        strbuf_appendn(&s->line, data + i, 1);
                        continue;
                }
                strbuf_appendn(&s->line, "", 0);
                sse_line(s, s->line.s ? s->line.s : (char *) "", s->line.len);
                s->line.len = 0;
        }
        /* The job has ended: stop reading at once. */
        return s->final ? 0 : len;
}

static int sse_on_progress(void *p, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
        return interrupted ? 1 : 0;
}

/* Follows job f->id on the event stream until it ends: 0 and *ret_job
 * (the ended job), or -1 when the stream cannot say (an armadad without
 * it, a refusal, a lost connection, an interrupt): the caller polls. */
static int job_follow_stream(Ctx *c, Follow *f, json_t **ret_job) {
        _cleanup_free_ char *url = xasprintf("%s%s/events/stream?job=%" PRId64, c->server, API_PREFIX, f->id);
        _cleanup_(curl_slist_freep) struct curl_slist *headers = NULL;
        _cleanup_free_ char *auth = NULL;
        CURL *h = c->curl;
        Sse s = { .h = h, .f = f };

        request_setup(c, url, "text/event-stream", &headers, &auth);
        /* No end to the whole transfer, but heartbeats come at least every
         * 15 s: a stream silent for a minute is dead. */
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sse_on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, sse_on_progress);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        (void) curl_easy_perform(h);
        if (auth)
                explicit_bzero(auth, strlen(auth));
        strbuf_free(&s.line);
        strbuf_free(&s.data);
        /* The next request on this handle starts afresh. */
        curl_easy_reset(h);
        if (!s.final)
                return -1;
        *ret_job = s.final;
        return 0;
}

/* The end of a followed job: its outcome, printed. */
static int follow_end(Ctx *c, Follow *f, json_t *job) {
        follow_show(f, job);
        if (f->tty)
                fputs("\r\033[K", stderr);
        print_final(c, job);
        return job_outcome(job);
}

int job_follow(Ctx *c, int64_t id) {
        _cleanup_free_ char *path = xasprintf("/jobs/%" PRId64, id);
        Follow f = { .id = id, .tty = isatty(STDERR_FILENO) };
        int failures = 0, r;
        struct sigaction sa = { .sa_handler = on_interrupt }, old_int;

        interrupted = 0;
        sigaction(SIGINT, &sa, &old_int);
        /* The event stream first: it tells the job's end as it happens.
         * Polling is the fallback, for an armadad without the stream or a
         * stream lost on the way. */
        json_t *ended = NULL;
        if (job_follow_stream(c, &f, &ended) == 0) {
                r = follow_end(c, &f, ended);
                json_decref(ended);
                free(f.last_line);
                sigaction(SIGINT, &old_int, NULL);
                return r;
        }
        for (;;) {
                ApiReply reply;
                r = api_send(c, "GET", path, NULL, POLL_REQUEST_TIMEOUT_S, &reply);
                if (r == EXIT_UNREACHABLE && ++failures < 20 && !interrupted) {
                        /* armadad may be restarting; jobs survive that. */
                        if (failures == 1) {
                                follow_clear(&f);
                                fprintf(stderr, "armada: lost armadad at %s (%s); trying again for 20 s\n",
                                        c->server, reply.error);
                                free(f.last_line);
                                f.last_line = NULL;
                        }
                        api_reply_done(&reply);
                        sleep_ms(1000);
                        continue;
                }
                if (r != 0 || reply.status >= 300) {
                        follow_clear(&f);
                        r = api_report(c, &reply, r ? r : EXIT_ERROR);
                        api_reply_done(&reply);
                        free(f.last_line);
                        sigaction(SIGINT, &old_int, NULL);
                        return r;
                }
                failures = 0;
                json_t *job = reply.json;
                if (job_is_final(jstr(job, "state"))) {
                        r = follow_end(c, &f, job);
                        api_reply_done(&reply);
                        free(f.last_line);
                        sigaction(SIGINT, &old_int, NULL);
                        return r;
                }
                follow_show(&f, job);
                api_reply_done(&reply);
                if (!interrupted)
                        sleep_ms(POLL_INTERVAL_MS);
                if (interrupted) {
                        if (f.tty)
                                fputs("\r\033[K", stderr);
                        free(f.last_line);
                        sigaction(SIGINT, &old_int, NULL);
                        fail("stopped waiting; job %" PRId64 " goes on (see 'armada job show %" PRId64
                             "', or 'armada job cancel %" PRId64 "')", id, id, id);
                        return 130;
                }
        }
}

int job_started(Ctx *c, json_t *reply) {
        json_t *job = json_object_get(reply, "job");
        if (!job)
                job = reply;
        if (!json_is_integer(json_object_get(job, "id")))
                return fail("the server did not say which job it started");
        int64_t id = (int64_t) json_integer_value(json_object_get(job, "id"));
        if (c->wait)
                return job_follow(c, id);
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return 0;
        }
        _cleanup_free_ char *kind = clean(jstr(job, "kind"));
        _cleanup_free_ char *target = clean(jstr(job, "target_name"));
        _cleanup_free_ char *state = clean(jstr(job, "state"));
        printf("job %" PRId64 " %s: %s%s%s\n", id, *state ? state : "queued", kind, *target ? " " : "", target);
        return 0;
}
