/* Replication of a datastore to a second site (protect.h, "Replication"):
 * the replications' records, the datastore.replicate job (to a directory
 * through chunkstore_copy_points(), to another armadad over HTTP(S) with
 * libcurl), the thread that queues scheduled runs, and the receiving
 * side's operations.
 *
 * The protocol, all under /api/v1/datastores/{id} of the target (ids
 * looked up by the target datastore's name with GET /api/v1/datastores):
 *   GET  .../points                    the points it has
 *   POST .../replica/missing           {"digests": [...]} -> {"missing": [...]}
 *   POST .../replica/chunks?digest=H   a chunk file's bytes, checked there
 *   POST .../replica/points            a point (point_export()), committed
 *                                      only when every chunk is present
 * A run sends, point by point (oldest first), the chunks the target says
 * it lacks, then the manifest: an interrupted run resumes, as the chunks
 * already sent are no longer missing. */
#include "protect-priv.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store-protect.h"
#include "util/cleanup.h"

#define REMOTE_REPLY_MAX (64u << 20)
#define TOKEN_MAX 512

/* ------------------------------------------------------------ checks */

static int may_manage(Store *st, const OpCaller *c, const char *what, int64_t id, const char *name, OpError *err) {
        if (op_allowed(st, c, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return 0;
        return op_deny(st, c, err, what, "replication", id, name);
}

/* https://HOST[:PORT][/] or, to a loopback host only, http://: no user
 * info, path, query or odd characters. */
static bool url_valid(const char *url) {
        const char *rest;
        bool plain = false;
        if (strncmp(url, "https://", 8) == 0)
                rest = url + 8;
        else if (strncmp(url, "http://", 7) == 0) {
                rest = url + 7;
                plain = true;
        } else
                return false;
        size_t n = strlen(rest);
        if (n == 0 || n > 255)
                return false;
        if (rest[n - 1] == '/')
                n--;
        char host[256];
        snprintf(host, sizeof host, "%.*s", (int) n, rest);
        for (const char *p = host; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                      *p == '.' || *p == ':' || *p == '[' || *p == ']'))
                        return false;
        if (!plain)
                return host[0] != 0 && host[0] != ':';
        /* The host without its port. */
        char *colon = host[0] == '[' ? strstr(host, "]:") : strrchr(host, ':');
        if (colon)
                colon[host[0] == '[' ? 1 : 0] = 0;
        return addr_is_loopback(host);
}

/* The token's text: printable ASCII without spaces. */
static bool token_valid(const char *t) {
        size_t n = strlen(t);
        if (n < 1 || n > TOKEN_MAX)
                return false;
        for (const char *p = t; *p; p++)
                if (*p <= ' ' || *p > '~')
                        return false;
        return true;
}

static json_t *job_json(Store *st, int64_t id) {
        json_t *j = NULL;
        return store_job_get_json(st, id, &j) == 0 ? j : json_null();
}

/* ------------------------------------------------------------ the token at rest */

/* Tokens are sealed with XSalsa20-Poly1305 (libsodium's secretbox) under a
 * key kept in its own 0600 file of the state directory: a copy of the
 * database alone does not give them away. Stored as "sb1:" and the base64
 * of the nonce and the sealed bytes. */
static uint8_t token_key[crypto_secretbox_KEYBYTES];
static bool token_key_loaded;

int protect_replicate_key_load(const char *path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 && errno == ENOENT) {
                uint8_t k[sizeof token_key];
                randombytes_buf(k, sizeof k);
                fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0)
                        return -errno;
                ssize_t n = write(fd, k, sizeof k);
                int e = n == (ssize_t) sizeof k && fsync(fd) == 0 ? 0 : -EIO;
                close(fd);
                sodium_memzero(k, sizeof k);
                if (e < 0) {
                        (void) unlink(path);
                        return e;
                }
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        }
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, token_key, sizeof token_key);
        close(fd);
        if (n != (ssize_t) sizeof token_key)
                return -EBADMSG;
        token_key_loaded = true;
        return 0;
}

static char *token_seal(const char *token) {
        if (!token_key_loaded)
                return NULL;
        size_t n = strlen(token), blen = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + n;
        _cleanup_free_ uint8_t *buf = xmalloc(blen);
        randombytes_buf(buf, crypto_secretbox_NONCEBYTES);
        crypto_secretbox_easy(buf + crypto_secretbox_NONCEBYTES, (const uint8_t *) token, n, buf, token_key);
        size_t b64 = sodium_base64_ENCODED_LEN(blen, sodium_base64_VARIANT_ORIGINAL);
        char *out = xmalloc(4 + b64);
        memcpy(out, "sb1:", 4);
        sodium_bin2base64(out + 4, b64, buf, blen, sodium_base64_VARIANT_ORIGINAL);
        return out;
}

/* The token sealed in STORED: malloc'd, or NULL. */
static char *token_open(const char *stored) {
        if (!token_key_loaded || strncmp(stored, "sb1:", 4) != 0)
                return NULL;
        size_t slen = strlen(stored + 4), blen = 0;
        _cleanup_free_ uint8_t *buf = xmalloc(slen + 1);
        if (sodium_base642bin(buf, slen + 1, stored + 4, slen, NULL, &blen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
            blen < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES)
                return NULL;
        size_t n = blen - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
        char *out = xmalloc(n + 1);
        if (crypto_secretbox_open_easy((uint8_t *) out, buf + crypto_secretbox_NONCEBYTES, blen - crypto_secretbox_NONCEBYTES,
                                       buf, token_key) != 0) {
                free(out);
                return NULL;
        }
        out[n] = 0;
        return out;
}

/* ------------------------------------------------------------ records */

/* The target part of a spec: 400 naming the field at fault. */
static int target_check(Store *st, const ProtectReplicationSpec *spec, char **ret_real, OpError *err) {
        if (!!spec->to_path == !!spec->to_url)
                return op_fail(err, 400, "invalid_argument", "to_path", "Give exactly one of 'to_path' and 'to_url'.");
        if (spec->to_path) {
                if (spec->to_datastore || spec->token || spec->ca_file)
                        return op_fail(err, 400, "invalid_argument", spec->to_datastore ? "to_datastore" : spec->token ? "token" : "ca_file",
                                       "'to_datastore', 'token' and 'ca_file' go with 'to_url' only.");
                int e = protect_path_check("to_path", spec->to_path, true, ret_real, err);
                if (e < 0)
                        return e;
                _cleanup_json_ json_t *all = NULL;
                if ((e = store_datastore_list(st, &all)) < 0)
                        return op_fail_store(err, e, "the datastores");
                size_t i;
                json_t *d;
                json_array_foreach(all, i, d) {
                        const char *p = jget_str(d, "path");
                        size_t lp = strlen(p), lr = strlen(*ret_real);
                        bool overlap = streq(p, *ret_real) || (lr > lp && strncmp(*ret_real, p, lp) == 0 && (*ret_real)[lp] == '/') ||
                                       (lp > lr && strncmp(p, *ret_real, lr) == 0 && p[lr] == '/');
                        if (overlap)
                                return op_fail(err, 400, "invalid_argument", "to_path",
                                               "'%.200s' overlaps datastore '%s' of this site.", spec->to_path, jget_str(d, "name"));
                }
                return 0;
        }
        if (!url_valid(spec->to_url))
                return op_fail(err, 400, "invalid_argument", "to_url",
                               "'%.200s' is not https://HOST:PORT (plain http:// only to a loopback address).", spec->to_url);
        if (!spec->to_datastore || !protect_name_valid(spec->to_datastore))
                return op_fail(err, 400, "invalid_argument", "to_datastore",
                               "Name the target datastore in 'to_datastore' (letters, digits, '-', '_' and '.').");
        if (!spec->token || !token_valid(spec->token))
                return op_fail(err, 400, "invalid_argument", "token",
                               "Give the target site's API token in 'token' (printable characters, no spaces, at most %d).",
                               TOKEN_MAX);
        if (spec->ca_file && (spec->ca_file[0] != '/' || access(spec->ca_file, R_OK) != 0))
                return op_fail(err, 400, "invalid_argument", "ca_file", "'%.200s' is not a readable absolute path.", spec->ca_file);
        return 0;
}

/* Points are copied chunk by chunk, never re-cut: a target directory that
 * already is a datastore must have the source's chunk size (409 naming
 * "chunk_size"). A missing or empty one is made with it at the first run. */
static int target_chunk_size_check(Store *st, int64_t ds_id, const char *path, const char *real, OpError *err) {
        ChunkStore *src = NULL, *dst = NULL;
        if (chunkstore_open(real, false, &dst) < 0)
                return 0;
        int e = protect_datastore_open(st, ds_id, &src);
        uint32_t want = e == 0 ? chunkstore_chunk_size(src) : 0, have = chunkstore_chunk_size(dst);
        chunkstore_free(src);
        chunkstore_free(dst);
        if (e < 0)
                return op_fail(err, 503, "unavailable", NULL, "The source datastore cannot be opened: %s.", strerror(-e));
        if (want == have)
                return 0;
        return op_fail(err, 409, "conflict", "chunk_size", "'%.200s' is a datastore of chunk size %u KiB, the source one of"
                       " %u KiB: a replica must have the source's chunk size (chunks are copied, not re-cut).", path,
                       have >> 10, want >> 10);
}

int protect_replication_add(Store *st, const OpCaller *c, const ProtectReplicationSpec *spec, json_t **ret, OpError *err) {
        int e = may_manage(st, c, "create", 0, spec->name, err);
        if (e < 0)
                return e;
        if (spec->name && !protect_name_valid(spec->name))
                return op_fail(err, 400, "invalid_argument", "name",
                               "'%.100s' is not a valid name: 1 to 63 letters, digits, '-', '_' and '.', not beginning"
                               " with '-' or '.'.", spec->name);
        if (!spec->source || !protect_name_valid(spec->source))
                return op_fail(err, 400, "invalid_argument", "source", "Name the datastore to replicate in 'source'.");
        int64_t ds_id = 0;
        e = store_datastore_find(st, spec->source, &ds_id);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", "source", "There is no datastore '%s'.", spec->source);
        if (e < 0)
                return op_fail_store(err, e, "the datastore");
        if (spec->every_s != 0 && (spec->every_s < PROTECT_REPLICA_EVERY_MIN || spec->every_s > PROTECT_REPLICA_EVERY_MAX))
                return op_fail(err, 400, "invalid_argument", "every", "'every' is 0 (by hand only) or %d to %d seconds.",
                               PROTECT_REPLICA_EVERY_MIN, PROTECT_REPLICA_EVERY_MAX);
        _cleanup_free_ char *real = NULL;
        e = target_check(st, spec, &real, err);
        if (e < 0)
                return e;
        if (real) {
                e = target_chunk_size_check(st, ds_id, spec->to_path, real, err);
                if (e < 0)
                        return e;
        }
        _cleanup_free_ char *name = NULL;
        if (spec->name)
                name = xstrdup(spec->name);
        else {
                const char *base = spec->to_datastore;
                if (!base) {
                        base = strrchr(real, '/');
                        base = base && base[1] ? base + 1 : "path";
                }
                name = xasprintf("%.20s-to-%.38s", spec->source, base);
                if (!protect_name_valid(name))
                        return op_fail(err, 400, "invalid_argument", "name", "Give the replication a name in 'name'.");
        }
        _cleanup_free_ char *sealed = NULL;
        if (spec->token && !(sealed = token_seal(spec->token)))
                return op_fail(err, 500, "internal", NULL, "The token cannot be sealed: armadad has no key for it.");
        StoreReplication r = { .name = name, .datastore_id = ds_id, .to_path = real, .to_url = spec->to_url,
                               .to_datastore = spec->to_datastore, .token = sealed, .ca_file = spec->ca_file,
                               .every_s = spec->every_s };
        int64_t id = 0;
        e = store_replication_insert(st, &r, &id);
        if (e == -EEXIST)
                return op_fail(err, 409, "conflict", "name", "There already is a replication '%s'.", name);
        if (e < 0)
                return op_fail_store(err, e, "the replication");
        op_audit(st, c, "replication.create", "replication", id, name, NULL, "done");
        if (store_replication_get_json(st, id, ret) < 0)
                *ret = json_pack("{s:I, s:s}", "id", (json_int_t) id, "name", name);
        return 0;
}

int protect_replications_list(Store *st, const OpCaller *c, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_READ, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "list", "replication", 0, NULL);
        int e = store_replication_list(st, ret);
        return e < 0 ? op_fail_store(err, e, "the replications") : 0;
}

static int replication_row(Store *st, int64_t id, json_t **ret, OpError *err) {
        int e = store_replication_get_json(st, id, ret);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no replication with id %lld.", (long long) id);
        return e < 0 ? op_fail_store(err, e, "the replication") : 0;
}

int protect_replication_remove(Store *st, const OpCaller *c, int64_t id, OpError *err) {
        int e = may_manage(st, c, "delete", id, NULL, err);
        if (e < 0)
                return e;
        _cleanup_json_ json_t *row = NULL;
        if ((e = replication_row(st, id, &row, err)) < 0)
                return e;
        e = store_replication_delete(st, id);
        if (e < 0)
                return op_fail_store(err, e, "the replication");
        op_audit(st, c, "replication.delete", "replication", id, jget_str(row, "name"), NULL, "done");
        return 0;
}

/* Queues a run of row (owner 0: the schedule). */
static int submit_run(Store *st, Jobs *jobs, json_t *row, int64_t owner_id, int64_t *ret_job) {
        int64_t id = jget_int(row, "id");
        int e = jobs_submit(jobs, "datastore.replicate", "replication", id, jget_str(row, "name"), owner_id, NULL, ret_job);
        if (e < 0)
                return e;
        (void) store_replication_started(st, id, *ret_job);
        return 0;
}

static bool run_pending(Store *st, json_t *row) {
        int64_t job = jget_int(row, "last_job_id");
        _cleanup_json_ json_t *j = NULL;
        if (job <= 0 || store_job_get_json(st, job, &j) < 0)
                return false;
        const char *s = jget_str(j, "state");
        return streq(s, "queued") || streq(s, "running");
}

/* "Is a run queued or running?" and the submit of one are one step under
 * this lock, for a run by hand and the schedule alike: two callers cannot
 * both see none and both queue one. Process wide (the records are). */
static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;

int protect_replication_run(Store *st, Jobs *jobs, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        int e = may_manage(st, c, "run", id, NULL, err);
        if (e < 0)
                return e;
        pthread_mutex_lock(&submit_lock);
        _cleanup_json_ json_t *row = NULL;
        if ((e = replication_row(st, id, &row, err)) < 0) {
                pthread_mutex_unlock(&submit_lock);
                return e;
        }
        if (run_pending(st, row)) {
                pthread_mutex_unlock(&submit_lock);
                return op_fail(err, 409, "conflict", NULL, "Replication '%s' is running already (job %lld).",
                               jget_str(row, "name"), (long long) jget_int(row, "last_job_id"));
        }
        int64_t job = 0;
        e = submit_run(st, jobs, row, c->user_id, &job);
        pthread_mutex_unlock(&submit_lock);
        if (e < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        op_audit(st, c, "datastore.replicate", "replication", id, jget_str(row, "name"), NULL, "accepted");
        *ret = json_pack("{s:o}", "job", job_json(st, job));
        return 0;
}

/* ------------------------------------------------------------ the remote site */

typedef struct Remote {
        CURL *h;
        char *base;                  /* https://host:port */
        struct curl_slist *hdrs;     /* Authorization, Accept */
        char why[300];               /* the last failure, a sentence */
        long status;
} Remote;

typedef struct {
        StrBuf b;
        bool too_big;
} Reply;

static size_t on_reply(char *p, size_t size, size_t n, void *userdata) {
        Reply *r = userdata;
        if (r->b.len + size * n > REMOTE_REPLY_MAX) {
                r->too_big = true;
                return 0;
        }
        strbuf_appendn(&r->b, p, size * n);
        return size * n;
}

static void remote_free(Remote *rm) {
        if (rm->h)
                curl_easy_cleanup(rm->h);
        curl_slist_free_all(rm->hdrs);
        free(rm->base);
}

static int remote_open(Remote *rm, const char *url, const char *token, const char *ca_file) {
        *rm = (Remote){ 0 };
        rm->h = curl_easy_init();
        if (!rm->h)
                return -ENOMEM;
        size_t n = strlen(url);
        rm->base = xasprintf("%.*s", (int) (n && url[n - 1] == '/' ? n - 1 : n), url);
        _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s", token);
        rm->hdrs = curl_slist_append(rm->hdrs, auth);
        rm->hdrs = curl_slist_append(rm->hdrs, "Accept: application/json");
        explicit_bzero(auth, strlen(auth));
        curl_easy_setopt(rm->h, CURLOPT_HTTPHEADER, rm->hdrs);
        curl_easy_setopt(rm->h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(rm->h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(rm->h, CURLOPT_CONNECTTIMEOUT, 15L);
        curl_easy_setopt(rm->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(rm->h, CURLOPT_LOW_SPEED_TIME, 120L);
        curl_easy_setopt(rm->h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(rm->h, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(rm->h, CURLOPT_SSL_VERIFYHOST, 2L);
        if (ca_file && *ca_file)
                curl_easy_setopt(rm->h, CURLOPT_CAINFO, ca_file);
        return 0;
}

/* One request: 0 and *ret (may be NULL) for a 2xx answer; else negative
 * with rm->why a sentence (the target's own error message when it gave
 * one: never the token). */
static int remote_call(Remote *rm, const char *method, const char *path, const void *body, size_t len, bool binary,
                       json_t **ret) {
        _cleanup_free_ char *url = xasprintf("%s%s", rm->base, path);
        Reply rep = { 0 };
        struct curl_slist *h = NULL;
        for (struct curl_slist *s = rm->hdrs; s; s = s->next)
                h = curl_slist_append(h, s->data);
        if (body)
                h = curl_slist_append(h, binary ? "Content-Type: application/octet-stream" : "Content-Type: application/json");
        curl_easy_setopt(rm->h, CURLOPT_URL, url);
        curl_easy_setopt(rm->h, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(rm->h, CURLOPT_WRITEFUNCTION, on_reply);
        curl_easy_setopt(rm->h, CURLOPT_WRITEDATA, &rep);
        if (body) {
                curl_easy_setopt(rm->h, CURLOPT_POST, 1L);
                curl_easy_setopt(rm->h, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(rm->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
        } else
                curl_easy_setopt(rm->h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(rm->h, CURLOPT_CUSTOMREQUEST, streq(method, "GET") || streq(method, "POST") ? NULL : method);
        CURLcode cc = curl_easy_perform(rm->h);
        curl_easy_setopt(rm->h, CURLOPT_HTTPHEADER, rm->hdrs);
        curl_slist_free_all(h);
        _cleanup_free_ char *text = strbuf_steal(&rep.b);
        if (cc != CURLE_OK) {
                snprintf(rm->why, sizeof rm->why, "%s %s failed: %s", method, path,
                         rep.too_big ? "the answer is too large" : curl_easy_strerror(cc));
                return -EIO;
        }
        curl_easy_getinfo(rm->h, CURLINFO_RESPONSE_CODE, &rm->status);
        json_t *j = json_loads(text, 0, NULL);
        if (rm->status < 200 || rm->status > 299) {
                const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
                snprintf(rm->why, sizeof rm->why, "%s %s: the target answered %ld%s%.200s", method, path, rm->status,
                         msg ? ": " : "", msg ? msg : "");
                json_decref(j);
                return rm->status == 401 || rm->status == 403 ? -EACCES : rm->status == 404 ? -ENOENT : -EPROTO;
        }
        if (ret)
                *ret = j ? j : json_object();
        else
                json_decref(j);
        return 0;
}

/* ------------------------------------------------------------ the job */

typedef struct {
        JobCtx *ctx;
        uint64_t points_total, points_sent, chunks_sent, bytes_sent;
} Run;

static void run_progress(Run *run, size_t i, size_t n) {
        int pct = n ? (int) (5 + i * 90 / n) : 95;
        job_progress(run->ctx, pct, "point %zu of %zu: %llu chunks, %llu bytes sent", i, n,
                     (unsigned long long) run->chunks_sent, (unsigned long long) run->bytes_sent);
}

/* The points of SRC missing from the list THERE ([{vm_uuid, point_id}]). */
static json_t *points_missing(json_t *mine, json_t *there) {
        json_t *out = json_array();
        size_t i, k;
        json_t *p, *q;
        json_array_foreach(mine, i, p) {
                bool found = false;
                json_array_foreach(there, k, q) if (streq(jget_str(p, "vm_uuid"), jget_str(q, "vm_uuid")) &&
                                                     streq(jget_str(p, "point_id"), jget_str(q, "point_id"))) {
                        found = true;
                        break;
                }
                if (!found)
                        json_array_append_new(out, json_pack("{s:O, s:O}", "vm_uuid", json_object_get(p, "vm_uuid"), "point_id",
                                                             json_object_get(p, "point_id")));
        }
        return out;
}

static void copy_progress(uint64_t done, uint64_t total, void *userdata) {
        Run *run = userdata;
        static __thread int last = -1;
        int pct = total ? (int) (5 + done * 90 / total) : 95;
        if (pct != last) {
                last = pct;
                job_progress(run->ctx, pct, "%llu of %llu chunks looked at", (unsigned long long) done,
                             (unsigned long long) total);
        }
}

static int run_to_path(Run *run, ChunkStore *src, json_t *mine, const char *to) {
        ChunkStore *dst = NULL;
        int e = chunkstore_open_sized(to, true, chunkstore_chunk_size(src), &dst);
        if (e < 0)
                return job_fail(run->ctx, e, "The target directory cannot be made a datastore: %s.", strerror(-e));
        if (chunkstore_chunk_size(dst) != chunkstore_chunk_size(src)) {
                uint32_t have = chunkstore_chunk_size(dst);
                chunkstore_free(dst);
                return job_fail(run->ctx, -EXDEV, "The target directory is a datastore of chunk size %u KiB, the source"
                                " one of %u KiB: a replica must have the source's chunk size.", have >> 10,
                                chunkstore_chunk_size(src) >> 10);
        }
        _cleanup_json_ json_t *there = NULL;
        e = point_list(dst, NULL, &there);
        if (e == 0) {
                _cleanup_json_ json_t *todo = points_missing(mine, there);
                run->points_sent = json_array_size(todo);
                e = chunkstore_copy_points(src, dst, todo, copy_progress, run, &run->chunks_sent, &run->bytes_sent);
        }
        chunkstore_free(dst);
        if (e < 0)
                return job_fail(run->ctx, e, "Copying to the target directory failed: %s.", strerror(-e));
        return 0;
}

/* The id of the target datastore NAME at the remote site, which must cut
 * disks at CHUNK_SIZE (an armadad without chunk_size in its list: 4 MiB). */
static int remote_datastore(Remote *rm, const char *name, uint32_t chunk_size, int64_t *ret) {
        _cleanup_json_ json_t *all = NULL;
        int e = remote_call(rm, "GET", "/api/v1/datastores", NULL, 0, false, &all);
        if (e < 0)
                return e;
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(all, "items"), i, d) if (streq(jget_str(d, "name"), name)) {
                json_t *cs = json_object_get(d, "chunk_size");
                json_int_t have = cs ? json_integer_value(cs) : CHUNK_SIZE;
                if (have != chunk_size) {
                        snprintf(rm->why, sizeof rm->why, "the target datastore '%s' has chunk size %lld KiB, the source"
                                 " %u KiB; a replica must have the source's chunk size", name, (long long) have >> 10,
                                 chunk_size >> 10);
                        return -EXDEV;
                }
                *ret = jget_int(d, "id");
                return 0;
        }
        snprintf(rm->why, sizeof rm->why, "the target site has no datastore '%s'", name);
        return -ENOENT;
}

/* Sends the chunks of DIGESTS (hex, unique) that the target lacks. */
static int send_batch(Run *run, Remote *rm, ChunkStore *src, int64_t ds, json_t *digests) {
        _cleanup_json_ json_t *q = json_pack("{s:O}", "digests", digests);
        _cleanup_free_ char *body = json_dumps(q, JSON_COMPACT);
        _cleanup_free_ char *path = xasprintf("/api/v1/datastores/%lld/replica/missing", (long long) ds);
        _cleanup_json_ json_t *ans = NULL;
        int e = remote_call(rm, "POST", path, body, strlen(body), false, &ans);
        if (e < 0)
                return e;
        size_t i;
        json_t *h;
        json_array_foreach(json_object_get(ans, "missing"), i, h) {
                ChunkDigest d;
                const char *hex = json_string_value(h);
                if (chunk_digest_parse(hex, &d) < 0) {
                        snprintf(rm->why, sizeof rm->why, "the target named a malformed digest");
                        return -EPROTO;
                }
                _cleanup_free_ uint8_t *file = NULL;
                size_t len;
                e = chunkstore_read_raw(src, &d, &file, &len);
                if (e < 0) {
                        snprintf(rm->why, sizeof rm->why, "chunk %s of the source cannot be read: %s (run verify)", hex,
                                 strerror(-e));
                        return e;
                }
                _cleanup_free_ char *cpath = xasprintf("/api/v1/datastores/%lld/replica/chunks?digest=%s", (long long) ds, hex);
                e = remote_call(rm, "POST", cpath, file, len, true, NULL);
                if (e < 0)
                        return e;
                run->chunks_sent++;
                run->bytes_sent += len;
                if (job_cancel_requested(run->ctx))
                        return -ECANCELED;
        }
        return 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Sends one point: its missing chunks in batches, then its manifest. */
static int send_point(Run *run, Remote *rm, ChunkStore *src, int64_t ds, const Point *p) {
        _cleanup_json_ json_t *m = NULL;
        int e = point_export(p, &m);
        if (e < 0)
                return e;
        /* Its distinct non-zero digests. */
        size_t n = 0;
        json_t *jd;
        size_t i;
        json_array_foreach(json_object_get(m, "disks"), i, jd) n += strlen(jget_str(jd, "digests")) / 64;
        char **all = xmalloc((n ? n : 1) * sizeof *all);
        size_t k = 0;
        json_array_foreach(json_object_get(m, "disks"), i, jd) {
                const char *hex = jget_str(jd, "digests");
                for (size_t c = 0; c < strlen(hex) / 64; c++)
                        if (strspn(hex + c * 64, "0") < 64)
                                all[k++] = xasprintf("%.64s", hex + c * 64);
        }
        qsort(all, k, sizeof *all, cmp_str);
        json_t *batch = json_array();
        for (size_t c = 0; c < k && e == 0; c++) {
                if (c > 0 && streq(all[c], all[c - 1]))
                        continue;
                json_array_append_new(batch, json_string(all[c]));
                if (json_array_size(batch) == PROTECT_REPLICA_MISSING_MAX) {
                        e = send_batch(run, rm, src, ds, batch);
                        json_array_clear(batch);
                }
        }
        if (e == 0 && json_array_size(batch) > 0)
                e = send_batch(run, rm, src, ds, batch);
        json_decref(batch);
        for (size_t c = 0; c < k; c++)
                free(all[c]);
        free(all);
        if (e < 0)
                return e;
        _cleanup_free_ char *body = json_dumps(m, JSON_COMPACT);
        _cleanup_free_ char *path = xasprintf("/api/v1/datastores/%lld/replica/points", (long long) ds);
        return remote_call(rm, "POST", path, body, strlen(body), false, NULL);
}

static int run_to_url(Run *run, ChunkStore *src, json_t *mine, json_t *row, const char *token) {
        Remote rm;
        int e = remote_open(&rm, jget_str(row, "to_url"), token, json_string_value(json_object_get(row, "ca_file")));
        if (e < 0)
                return job_fail(run->ctx, e, "Cannot make an HTTP client.");
        int64_t ds = 0;
        _cleanup_json_ json_t *there = NULL, *todo = NULL;
        e = remote_datastore(&rm, jget_str(row, "to_datastore"), chunkstore_chunk_size(src), &ds);
        if (e == 0) {
                _cleanup_free_ char *path = xasprintf("/api/v1/datastores/%lld/points", (long long) ds);
                e = remote_call(&rm, "GET", path, NULL, 0, false, &there);
        }
        if (e == 0) {
                todo = points_missing(mine, json_object_get(there, "items"));
                size_t n = json_array_size(todo), i;
                json_t *q;
                json_array_foreach(todo, i, q) {
                        run_progress(run, i, n);
                        Point *p = NULL;
                        e = point_open(src, jget_str(q, "vm_uuid"), jget_str(q, "point_id"), &p);
                        if (e < 0) {
                                snprintf(rm.why, sizeof rm.why, "point %s/%s of the source cannot be read: %s",
                                         jget_str(q, "vm_uuid"), jget_str(q, "point_id"), strerror(-e));
                                break;
                        }
                        e = send_point(run, &rm, src, ds, p);
                        point_free(p);
                        if (e < 0)
                                break;
                        run->points_sent++;
                }
        }
        if (e < 0) {
                e = e == -ECANCELED ? e : job_fail(run->ctx, e, "Replicating to %s failed: %s.", rm.base, rm.why);
                remote_free(&rm);
                return e;
        }
        remote_free(&rm);
        return 0;
}

/* Runs between the same source datastore and the same target (two
 * replications may name one pair) take turns: the second then finds the
 * points there and sends nothing, where two at once would both send the
 * same chunks (counted twice) and race on each manifest. A short list of
 * the pairs being copied, process wide. */
static struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        char **busy;
        size_t n;
} pairs = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static bool pair_busy(const char *key) {
        for (size_t i = 0; i < pairs.n; i++)
                if (streq(pairs.busy[i], key))
                        return true;
        return false;
}

/* Waits until no run copies the pair key, then holds it: 0, or
 * -ECANCELED when the job is cancelled while it waits. */
static int pair_acquire(JobCtx *ctx, const char *key) {
        pthread_mutex_lock(&pairs.lock);
        bool waited = false;
        while (pair_busy(key)) {
                if (!waited)
                        job_progress(ctx, 1, "waiting for another run between the same datastores");
                waited = true;
                if (job_cancel_requested(ctx)) {
                        pthread_mutex_unlock(&pairs.lock);
                        return -ECANCELED;
                }
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += 1;
                pthread_cond_timedwait(&pairs.cond, &pairs.lock, &until); /* 1 s: to see a cancel */
        }
        pairs.busy = xrealloc(pairs.busy, (pairs.n + 1) * sizeof *pairs.busy);
        pairs.busy[pairs.n++] = xstrdup(key);
        pthread_mutex_unlock(&pairs.lock);
        return 0;
}

static void pair_release(const char *key) {
        pthread_mutex_lock(&pairs.lock);
        for (size_t i = 0; i < pairs.n; i++)
                if (streq(pairs.busy[i], key)) {
                        free(pairs.busy[i]);
                        pairs.busy[i] = pairs.busy[--pairs.n];
                        break;
                }
        pthread_cond_broadcast(&pairs.cond);
        pthread_mutex_unlock(&pairs.lock);
}

static int job_replicate_run(JobCtx *ctx, void *userdata);

static int job_replicate(JobCtx *ctx, void *userdata) {
        _cleanup_json_ json_t *row = NULL;
        if (store_replication_get_json(ctx->st, ctx->job->target_id, &row) < 0)
                return job_fail(ctx, -ENOENT, "Replication '%s' no longer exists.", ctx->job->target_name);
        const char *to_path = json_string_value(json_object_get(row, "to_path"));
        _cleanup_free_ char *key = to_path ? xasprintf("%lld>%s", (long long) jget_int(row, "datastore_id"), to_path)
                                           : xasprintf("%lld>%s#%s", (long long) jget_int(row, "datastore_id"),
                                                       jget_str(row, "to_url"), jget_str(row, "to_datastore"));
        int e = pair_acquire(ctx, key);
        if (e < 0)
                return e;
        e = job_replicate_run(ctx, userdata);
        pair_release(key);
        return e;
}

static int job_replicate_run(JobCtx *ctx, void *userdata) {
        int64_t id = ctx->job->target_id;
        _cleanup_json_ json_t *row = NULL;
        if (store_replication_get_json(ctx->st, id, &row) < 0)
                return job_fail(ctx, -ENOENT, "Replication '%s' no longer exists.", ctx->job->target_name);
        ChunkStore *src = NULL;
        int e = protect_datastore_open(ctx->st, jget_int(row, "datastore_id"), &src);
        if (e < 0)
                return job_fail(ctx, e, "Datastore '%s' cannot be opened: %s.", jget_str(row, "datastore"), strerror(-e));
        Run run = { .ctx = ctx };
        _cleanup_json_ json_t *mine = NULL;
        e = point_list(src, NULL, &mine);
        if (e < 0) {
                chunkstore_free(src);
                return job_fail(ctx, e, "The points of '%s' cannot be read: %s.", jget_str(row, "datastore"), strerror(-e));
        }
        run.points_total = json_array_size(mine);
        job_progress(ctx, 5, "comparing %llu points with the target", (unsigned long long) run.points_total);
        const char *to_path = json_string_value(json_object_get(row, "to_path"));
        if (to_path)
                e = run_to_path(&run, src, mine, to_path);
        else {
                _cleanup_free_ char *stored = NULL, *token = NULL;
                e = store_replication_secret(ctx->st, id, &stored);
                if (e == 0 && !(token = token_open(stored)))
                        e = -EBADMSG;
                if (e < 0)
                        e = job_fail(ctx, e, "The replication's token cannot be read (was armadad's replication key"
                                     " replaced?); add the replication again.");
                else {
                        e = run_to_url(&run, src, mine, row, token);
                        explicit_bzero(token, strlen(token));
                }
        }
        chunkstore_free(src);
        json_t *res = json_pack("{s:I, s:I, s:I, s:I}", "points_total", (json_int_t) run.points_total, "points_sent",
                                (json_int_t) run.points_sent, "chunks_sent", (json_int_t) run.chunks_sent, "bytes_sent",
                                (json_int_t) run.bytes_sent);
        _cleanup_free_ char *text = json_dumps(res, JSON_COMPACT);
        (void) store_replication_finished(ctx->st, id, e < 0 ? (e == -ECANCELED ? "cancelled" : "failed") : "succeeded", text);
        if (e < 0) {
                json_decref(res);
                return e;
        }
        ctx->result = res;
        return 0;
}

void protect_replicate_register_jobs(Jobs *jobs) {
        /* Resumable: a repeated run skips what the target has. */
        jobs_register(jobs, "datastore.replicate", job_replicate, NULL, NULL, true);
}

/* ------------------------------------------------------------ the schedule */

#define TICK_S 2

static struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        pthread_t thread;
        bool running, stop;
        Store *st;
        Jobs *jobs;
} sched = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void schedule_once(Store *st, Jobs *jobs) {
        _cleanup_json_ json_t *due = NULL;
        pthread_mutex_lock(&submit_lock);
        int e = store_replication_due(st, now_ms(), &due);
        if (e < 0) {
                pthread_mutex_unlock(&submit_lock);
                return;
        }
        size_t i;
        json_t *row;
        json_array_foreach(due, i, row) {
                int64_t job = 0;
                if (submit_run(st, jobs, row, 0, &job) == 0)
                        log_info("replication '%s': scheduled run, job %lld", jget_str(row, "name"), (long long) job);
        }
        pthread_mutex_unlock(&submit_lock);
}

static void *sched_main(void *arg) {
        pthread_mutex_lock(&sched.lock);
        while (!sched.stop) {
                pthread_mutex_unlock(&sched.lock);
                schedule_once(sched.st, sched.jobs);
                pthread_mutex_lock(&sched.lock);
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += TICK_S;
                while (!sched.stop && pthread_cond_timedwait(&sched.cond, &sched.lock, &ts) == 0)
                        ;
        }
        pthread_mutex_unlock(&sched.lock);
        return NULL;
}

int protect_replicate_start(Store *st, Jobs *jobs) {
        pthread_mutex_lock(&sched.lock);
        sched.st = st;
        sched.jobs = jobs;
        sched.stop = false;
        int e = sched.running ? 0 : -pthread_create(&sched.thread, NULL, sched_main, NULL);
        if (e == 0)
                sched.running = true;
        pthread_mutex_unlock(&sched.lock);
        return e;
}

void protect_replicate_stop(void) {
        pthread_mutex_lock(&sched.lock);
        bool running = sched.running;
        sched.stop = true;
        pthread_cond_broadcast(&sched.cond);
        pthread_mutex_unlock(&sched.lock);
        if (running)
                pthread_join(sched.thread, NULL);
        sched.running = false;
}

/* ------------------------------------------------------------ the receiving side */

int protect_replica_begin(Store *st, const OpCaller *c, int64_t ds_id, OpError *err) {
        if (!op_allowed(st, c, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "replicate into", "datastore", ds_id, NULL);
        _cleanup_json_ json_t *row = NULL;
        int e = store_datastore_get_json(st, ds_id, &row);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no datastore with id %lld.", (long long) ds_id);
        return e < 0 ? op_fail_store(err, e, "the datastore") : 0;
}

/* Checks the caller and opens datastore ds_id (its row in *ret_row). */
static int replica_open(Store *st, const OpCaller *c, int64_t ds_id, ChunkStore **ret, json_t **ret_row, OpError *err) {
        int e = protect_replica_begin(st, c, ds_id, err);
        if (e < 0)
                return e;
        if (ret_row && store_datastore_get_json(st, ds_id, ret_row) < 0)
                return op_fail(err, 500, "internal", NULL, "The datastore cannot be read.");
        e = protect_datastore_open(st, ds_id, ret);
        if (e < 0)
                return op_fail(err, 503, "unavailable", NULL, "The datastore cannot be opened: %s.", strerror(-e));
        return 0;
}

int protect_replica_missing(Store *st, const OpCaller *c, int64_t ds_id, const json_t *digests, json_t **ret, OpError *err) {
        if (!json_is_array(digests) || json_array_size(digests) > PROTECT_REPLICA_MISSING_MAX)
                return op_fail(err, 400, "invalid_argument", "digests", "'digests' is an array of at most %d SHA-256 digests.",
                               PROTECT_REPLICA_MISSING_MAX);
        size_t i;
        json_t *h;
        ChunkDigest d;
        json_array_foreach(digests, i, h) if (chunk_digest_parse(json_string_value(h), &d) < 0)
                return op_fail(err, 400, "invalid_argument", "digests", "Item %zu of 'digests' is not a SHA-256 digest in hex.", i);
        ChunkStore *s = NULL;
        int e = replica_open(st, c, ds_id, &s, NULL, err);
        if (e < 0)
                return e;
        json_t *missing = json_array();
        json_array_foreach(digests, i, h) {
                (void) chunk_digest_parse(json_string_value(h), &d);
                if (!chunkstore_has(s, &d))
                        json_array_append(missing, h);
        }
        chunkstore_free(s);
        *ret = json_pack("{s:o}", "missing", missing);
        return 0;
}

int protect_replica_chunk(Store *st, const OpCaller *c, int64_t ds_id, const char *digest, const void *data, size_t len,
                          json_t **ret, OpError *err) {
        ChunkDigest d;
        if (!digest || chunk_digest_parse(digest, &d) < 0)
                return op_fail(err, 400, "invalid_argument", "digest", "Query 'digest' must be a SHA-256 digest in hex.");
        if (len > PROTECT_REPLICA_CHUNK_MAX)
                return op_fail(err, 413, "too_large", "body", "A chunk is at most %u bytes.", PROTECT_REPLICA_CHUNK_MAX);
        ChunkStore *s = NULL;
        int e = replica_open(st, c, ds_id, &s, NULL, err);
        if (e < 0)
                return e;
        uint64_t written = 0;
        e = chunkstore_put_raw(s, &d, data, len, &written);
        chunkstore_free(s);
        if (e == -EBADMSG)
                return op_fail(err, 400, "invalid_argument", "body",
                               "The body is not a chunk whose bytes have digest %.64s; nothing was stored.", digest);
        if (e < 0)
                return op_fail(err, 500, "internal", NULL, "The chunk cannot be stored: %s.", strerror(-e));
        *ret = json_pack("{s:s, s:I}", "digest", digest, "stored", (json_int_t) written);
        return 0;
}

int protect_replica_point(Store *st, const OpCaller *c, int64_t ds_id, const void *body, size_t len, json_t **ret,
                          OpError *err) {
        _cleanup_json_ json_t *m = json_loadb(body, len, 0, NULL);
        if (!json_is_object(m))
                return op_fail(err, 400, "invalid_argument", "body", "The body is not a point's JSON.");
        ChunkStore *s = NULL;
        _cleanup_json_ json_t *row = NULL;
        int e = replica_open(st, c, ds_id, &s, &row, err);
        if (e < 0)
                return e;
        e = point_import(s, m);
        bool existed = e == -EEXIST;
        if (e == 0 && json_is_string(json_object_get(m, "vm_uuid")))
                (void) protect_backup_index_sync_vm(st, jget_str(row, "name"), s, jget_str(m, "vm_uuid"));
        chunkstore_free(s);
        const char *vm = jget_str(m, "vm_uuid"), *pid = jget_str(m, "point_id");
        if (e == -EINVAL)
                return op_fail(err, 400, "invalid_argument", "body", "The point's JSON is malformed.");
        if (e == -EXDEV)
                return op_fail(err, 409, "conflict", "chunk_size", "Point %.64s/%.64s was cut at another chunk size than"
                               " datastore '%s' uses; nothing was committed.", vm, pid, jget_str(row, "name"));
        if (e == -EBADMSG)
                return op_fail(err, 422, "invalid_argument", "chunks",
                               "Point %.64s/%.64s names chunks this datastore does not have; nothing was committed.", vm, pid);
        if (e < 0 && !existed)
                return op_fail(err, 500, "internal", NULL, "The point cannot be committed: %s.", strerror(-e));
        if (!existed)
                op_audit(st, c, "datastore.replica-commit", "datastore", ds_id, jget_str(row, "name"), NULL, "done");
        *ret = json_pack("{s:s, s:s, s:b}", "vm_uuid", vm, "point_id", pid, "existed", existed);
        return 0;
}
