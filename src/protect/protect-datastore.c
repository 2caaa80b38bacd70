/* Backup datastores: the operations behind `armada backup datastore ...`,
 * verify, gc, prune, archive and import (protect.h, "Datastores"). Each
 * checks the caller (administrators only), the names and paths, records
 * and queues the job that does the work (protect-datastore-jobs.c); the
 * chunk store itself (chunkstore.c) holds the data and knows no database. */
#include "protect-priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store-protect.h"
#include "util/cleanup.h"

/* ------------------------------------------------------------ configuration */

/* The parsed configuration: set at start-up, read after. */
static char **backup_roots;
static size_t n_backup_roots;

static ProtectSettings settings = { .restore_direct = true, .backup_tls_dir = PROTECT_DEFAULT_BACKUP_TLS_DIR };

void protect_configure(const ProtectSettings *s) {
        static char *dir; /* the copy settings names */
        char *d = xstrdup(s->backup_tls_dir ? s->backup_tls_dir : PROTECT_DEFAULT_BACKUP_TLS_DIR);
        settings = *s;
        free(dir);
        settings.backup_tls_dir = dir = d;
}

const ProtectSettings *protect_settings(void) {
        return &settings;
}

void protect_add_backup_root(const char *dir) {
        backup_roots = xrealloc(backup_roots, sizeof(char *) * (n_backup_roots + 1));
        backup_roots[n_backup_roots++] = xstrdup(dir);
}

size_t protect_backup_roots(const char *const **ret) {
        static const char *const def[] = { PROTECT_DEFAULT_BACKUP_ROOT };
        if (n_backup_roots == 0) {
                *ret = def;
                return 1;
        }
        *ret = (const char *const *) backup_roots;
        return n_backup_roots;
}

static ProtectAlertFn alert_fn;
static void *alert_userdata;

void protect_on_alert(ProtectAlertFn fn, void *userdata) {
        alert_fn = fn;
        alert_userdata = userdata;
}

void protect_alert(int64_t id, const char *name, bool open, const char *message) {
        if (alert_fn)
                alert_fn(alert_userdata, id, name, open, message);
}

/* The backups part defines the real one (protect-backup.c); until it is
 * linked in, no backup runs. Weak so that its definition wins. */
__attribute__((weak)) time_t protect_oldest_running_backup(Store *st) {
        return 0;
}

/* ------------------------------------------------------------------ paths */

static bool path_has_dot_segment(const char *path) {
        for (const char *p = path; *p;) {
                while (*p == '/')
                        p++;
                const char *e = strchrnul(p, '/');
                size_t n = (size_t) (e - p);
                if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return true;
                p = e;
        }
        return false;
}

/* real lies strictly under root (both resolved). */
static bool under(const char *real, const char *root) {
        size_t n = strlen(root);
        if (n == 1 && root[0] == '/')
                return real[1] != 0;
        return strncmp(real, root, n) == 0 && real[n] == '/' && real[n + 1] != 0;
}

/* path, as written (no "." or ".." segments), lies strictly under root:
 * root's text then '/' and more, doubled or trailing slashes aside. */
static bool under_lexically(const char *path, const char *root) {
        size_t n = strlen(root);
        while (n > 1 && root[n - 1] == '/')
                n--;
        if (strncmp(path, root, n) != 0 || (n > 1 && path[n] != '/'))
                return false;
        const char *rest = path + n;
        while (*rest == '/')
                rest++;
        return *rest != 0;
}

int protect_path_check(const char *field, const char *path, bool may_create, char **ret_real, OpError *err) {
        if (!path || path[0] != '/')
                return op_fail(err, 400, "invalid_argument", field, "Field '%s' (\"%.200s\") must be an absolute path.", field,
                               path ? path : "");
        if (path_has_dot_segment(path))
                return op_fail(err, 400, "invalid_argument", field, "Field '%s' (\"%.200s\") may not hold '.' or '..' segments.",
                               field, path);
        if (strlen(path) >= PATH_MAX - 1)
                return op_fail(err, 400, "invalid_argument", field, "Field '%s' is too long.", field);
        /* As written, first: a path outside every root is refused before
         * anything outside is looked at (whether it exists is not told). */
        const char *const *roots;
        size_t n = protect_backup_roots(&roots), lexical = 0, found = 0;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *root_real = realpath(roots[i], NULL);
                found += root_real != NULL;
                lexical += under_lexically(path, roots[i]) || (root_real && under_lexically(path, root_real));
        }
        if (!lexical)
                return op_fail(err, 400, "invalid_argument", field, "'%.200s' is not inside an allowed backup root (armadad"
                               " --backup-root).", path);
        if (found == 0)
                return op_fail(err, 422, "not_found", field, "No backup root exists on the Armada server (armadad"
                               " --backup-root, default " PROTECT_DEFAULT_BACKUP_ROOT "): create one first.");
        _cleanup_free_ char *real = realpath(path, NULL);
        if (!real) {
                if (errno != ENOENT || !may_create)
                        return op_fail(err, 422, "not_found", field, "'%.200s' does not exist on the Armada server.", path);
                /* A missing directory: its parent must exist, and it is
                 * made there (one level). */
                _cleanup_free_ char *copy = xstrdup(path);
                size_t l = strlen(copy);
                while (l > 1 && copy[l - 1] == '/')
                        copy[--l] = 0;
                char *slash = strrchr(copy, '/');
                const char *base = slash + 1;
                *slash = 0;
                _cleanup_free_ char *parent = realpath(slash == copy ? "/" : copy, NULL);
                if (!parent || !*base)
                        return op_fail(err, 422, "not_found", field, "The parent directory of '%.200s' does not exist on the"
                                       " Armada server.", path);
                real = xasprintf("%s%s%s", parent, streq(parent, "/") ? "" : "/", base);
        }
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *root = realpath(roots[i], NULL);
                if (root && under(real, root)) {
                        *ret_real = steal_ptr(real);
                        return 0;
                }
        }
        return op_fail(err, 400, "invalid_argument", field, "'%.200s' is not inside an allowed backup root (armadad"
                       " --backup-root); symbolic links that lead outside one are refused.", path);
}

/* ------------------------------------------------------------- helpers */

static int may_manage(Store *st, const OpCaller *c, const char *what, int64_t id, const char *name, OpError *err) {
        if (op_allowed(st, c, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return 0;
        return op_deny(st, c, err, what, "datastore", id, name);
}

static int may_read(Store *st, const OpCaller *c, OpError *err) {
        if (op_allowed(st, c, ACT_READ, OBJ_SYSTEM, 0, 0))
                return 0;
        return op_deny(st, c, err, "list", "datastore", 0, NULL);
}

static json_t *job_json(Store *st, int64_t id) {
        json_t *j = NULL;
        return store_job_get_json(st, id, &j) == 0 ? j : json_null();
}

bool protect_name_valid(const char *name) {
        size_t n = strlen(name);
        if (n < 1 || n > 63 || name[0] == '-' || name[0] == '.')
                return false;
        for (const char *p = name; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                      *p == '_' || *p == '.'))
                        return false;
        return true;
}

/* The datastore row of id: 404 when there is none. */
static int datastore_row(Store *st, int64_t id, json_t **ret, OpError *err) {
        int e = store_datastore_get_json(st, id, ret);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no datastore with id %lld.", (long long) id);
        return e < 0 ? op_fail_store(err, e, "the datastore") : 0;
}

int protect_datastore_open(Store *st, int64_t id, ChunkStore **ret) {
        _cleanup_json_ json_t *row = NULL;
        int e = store_datastore_get_json(st, id, &row);
        if (e < 0)
                return e;
        return chunkstore_open(jget_str(row, "path"), false, ret);
}

int protect_datastore_usage_refresh(Store *st, int64_t id, ChunkStore *s) {
        ChunkStoreUsage u;
        int e = chunkstore_usage(s, &u);
        if (e < 0)
                return e;
        double factor = u.stored_bytes ? (double) u.logical_bytes / (double) u.stored_bytes : 0;
        _cleanup_json_ json_t *j = json_pack("{s:I, s:I, s:I, s:f, s:I}", "chunks", (json_int_t) u.chunks, "stored_bytes",
                                             (json_int_t) u.stored_bytes, "logical_bytes", (json_int_t) u.logical_bytes,
                                             "dedup_factor", factor, "points", (json_int_t) u.points);
        _cleanup_free_ char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (!text)
                return -ENOMEM;
        return store_datastore_set_usage(st, id, text);
}

int protect_point_time(const char *point_id, time_t *ret) {
        struct tm tm = { 0 };
        const char *end = point_id ? strptime(point_id, "%Y%m%dT%H%M%SZ", &tm) : NULL;
        /* A second point of the same second carries "-2" .. "-9". */
        if (end && end[0] == '-' && end[1] >= '2' && end[1] <= '9')
                end += 2;
        if (!end || *end)
                return -EINVAL;
        *ret = timegm(&tm);
        return 0;
}

/* Submits a datastore job and audits it. ret: {"job"}. */
static int submit(Store *st, Jobs *jobs, const OpCaller *c, const char *kind, int64_t id, const char *name,
                  json_t *params, const char *action, json_t **ret, OpError *err) {
        int64_t job;
        if (jobs_submit(jobs, kind, "datastore", id, name, c->user_id, params, &job) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        op_audit(st, c, action, "datastore", id, name, NULL, "accepted");
        *ret = json_pack("{s:o}", "job", job_json(st, job));
        return 0;
}

/* ------------------------------------------------------------- reading */

int protect_datastores_list(Store *st, const OpCaller *c, const char *name, json_t **ret, OpError *err) {
        int e = may_read(st, c, err);
        if (e < 0)
                return e;
        json_t *all = NULL;
        e = store_datastore_list(st, &all);
        if (e < 0)
                return op_fail_store(err, e, "the datastores");
        if (name) {
                json_t *one = json_array();
                size_t i;
                json_t *d;
                json_array_foreach(all, i, d)
                        if (streq(jget_str(d, "name"), name))
                                json_array_append(one, d);
                json_decref(all);
                all = one;
        }
        *ret = all;
        return 0;
}

int protect_datastore_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        int e = may_read(st, c, err);
        if (e < 0)
                return e;
        return datastore_row(st, id, ret, err);
}

int protect_datastore_points(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        int e = may_read(st, c, err);
        if (e < 0)
                return e;
        _cleanup_json_ json_t *row = NULL;
        e = datastore_row(st, id, &row, err);
        if (e < 0)
                return e;
        ChunkStore *s = NULL;
        e = chunkstore_open(jget_str(row, "path"), false, &s);
        if (e < 0)
                return op_fail(err, 503, "unavailable", NULL, "Datastore '%s' cannot be opened: %s.", jget_str(row, "name"),
                               strerror(-e));
        _cleanup_json_ json_t *points = NULL, *verified = NULL;
        e = point_list(s, NULL, &points);
        chunkstore_free(s);
        if (e < 0)
                return op_fail(err, 500, "internal", NULL, "The points of datastore '%s' cannot be read: %s.",
                               jget_str(row, "name"), strerror(-e));
        e = store_datastore_verified_list(st, id, &verified);
        if (e < 0)
                return op_fail_store(err, e, "the datastore's verifications");
        /* Keyed "uuid/point": a datastore may hold many thousands. */
        _cleanup_json_ json_t *by_key = json_object();
        size_t i;
        json_t *p, *v;
        json_array_foreach(verified, i, v) {
                _cleanup_free_ char *key = xasprintf("%s/%s", jget_str(v, "vm_uuid"), jget_str(v, "point_id"));
                json_object_set_new(by_key, key, json_pack("{s:O, s:O}", "at", json_object_get(v, "verified_at"), "ok",
                                                           json_object_get(v, "ok")));
        }
        json_array_foreach(points, i, p) {
                _cleanup_free_ char *key = xasprintf("%s/%s", jget_str(p, "vm_uuid"), jget_str(p, "point_id"));
                json_t *lv = json_object_get(by_key, key);
                json_object_set_new(p, "last_verified", lv ? json_incref(lv) : json_null());
        }
        *ret = steal_ptr(points);
        return 0;
}

/* ------------------------------------------------------------- add/remove */

/* 409 naming field when real is a datastore already or lies inside one (or
 * holds one). */
static int overlap_check(Store *st, const char *field, const char *real, OpError *err) {
        _cleanup_json_ json_t *all = NULL;
        int e = store_datastore_list(st, &all);
        if (e < 0)
                return op_fail_store(err, e, "the datastores");
        size_t i;
        json_t *d;
        json_array_foreach(all, i, d) {
                const char *p = jget_str(d, "path");
                if (streq(p, real))
                        return op_fail(err, 409, "conflict", field, "That directory already is datastore '%s'.",
                                       jget_str(d, "name"));
                if (under(real, p) || under(p, real))
                        return op_fail(err, 409, "conflict", field, "That directory overlaps datastore '%s'.",
                                       jget_str(d, "name"));
        }
        return 0;
}

/* Undoes what chunkstore_open() with create made in a directory that was
 * empty or missing (made says whether the directory itself was made). */
static void undo_create(const char *real, bool made) {
        _cleanup_free_ char *a = xasprintf("%s/.chunks", real), *b = xasprintf("%s/vm", real),
                            *m = xasprintf("%s/.armada-datastore", real);
        (void) unlink(m);
        (void) rmdir(a);
        (void) rmdir(b);
        if (made)
                (void) rmdir(real);
}

/* Opens or creates the datastore directory real for add, a new one cut at
 * chunk_size: 0, or 422/500 naming "path", or 409 naming "chunk_size" when
 * an existing datastore has another size than the one asked (nothing made
 * then; asked false: the default, and an existing one keeps its own). *ret_made_dir, *ret_fresh and *ret_chunk_size say
 * what was made or found. */
static int add_open_dir(const char *path, const char *real, uint32_t chunk_size, bool asked, bool *ret_made_dir,
                        bool *ret_fresh, uint32_t *ret_chunk_size, OpError *err) {
        struct stat sb;
        bool exists = stat(real, &sb) == 0;
        if (exists && !S_ISDIR(sb.st_mode))
                return op_fail(err, 422, "invalid_argument", "path", "'%.200s' is not a directory.", path);
        _cleanup_free_ char *marker = xasprintf("%s/.armada-datastore", real);
        bool fresh = access(marker, F_OK) < 0;
        ChunkStore *s = NULL;
        int e = chunkstore_open_sized(real, true, chunk_size, &s);
        if (e == -ENOTEMPTY)
                return op_fail(err, 422, "invalid_argument", "path", "'%.200s' holds other files and is not a datastore:"
                               " give an empty directory or an existing datastore.", path);
        if (e == -EBADMSG)
                return op_fail(err, 422, "invalid_argument", "path", "'%.200s' has a datastore marker Armada cannot read.",
                               path);
        if (e < 0)
                return op_fail(err, 500, "internal", "path", "Cannot make a datastore in '%.200s': %s.", path, strerror(-e));
        uint32_t have = chunkstore_chunk_size(s);
        chunkstore_free(s);
        if (!fresh && asked && have != chunk_size)
                return op_fail(err, 409, "conflict", "chunk_size", "'%.200s' is a datastore of chunk size %u KiB already;"
                               " an adopted datastore keeps its own (leave chunk_size out to adopt it).", path, have >> 10);
        *ret_made_dir = !exists;
        *ret_fresh = fresh;
        *ret_chunk_size = have;
        return 0;
}

int protect_datastore_add(Store *st, Jobs *jobs, const OpCaller *c, const char *name, const char *path, uint64_t chunk_size,
                          json_t **ret, OpError *err) {
        int e = may_manage(st, c, "add", 0, name, err);
        if (e < 0)
                return e;
        if (!protect_name_valid(name))
                return op_fail(err, 400, "invalid_argument", "name", "Field 'name' (\"%.100s\") must be 1 to 63 letters, digits,"
                               " '-', '_' or '.', not starting with '-' or '.'.", name);
        if (chunk_size && !chunk_size_valid(chunk_size))
                return op_fail(err, 400, "invalid_argument", "chunk_size", "Field 'chunk_size' (%llu) must be 262144,"
                               " 524288, 1048576, 2097152 or 4194304 bytes (256 KiB to 4 MiB, a power of two).",
                               (unsigned long long) chunk_size);
        int64_t id;
        e = store_datastore_find(st, name, &id);
        if (e == 0)
                return op_fail(err, 409, "conflict", "name", "Datastore '%s' already exists.", name);
        if (e != -ENOENT)
                return op_fail_store(err, e, "the datastores");
        _cleanup_free_ char *real = NULL;
        e = protect_path_check("path", path, true, &real, err);
        if (e < 0)
                return e;
        e = overlap_check(st, "path", real, err);
        if (e < 0)
                return e;
        bool made = false, fresh = false;
        uint32_t have = 0;
        e = add_open_dir(path, real, chunk_size ? (uint32_t) chunk_size : CHUNK_SIZE_DEFAULT, !!chunk_size, &made, &fresh,
                         &have, err);
        if (e < 0)
                return e;
        e = store_datastore_insert(st, name, real, have, &id);
        if (e < 0) {
                if (fresh)
                        undo_create(real, made);
                if (e == -EEXIST)
                        return op_fail(err, 409, "conflict", "name", "Datastore '%s' or its directory is registered already.",
                                       name);
                return op_fail_store(err, e, "The datastore");
        }
        op_audit(st, c, "datastore.add", "datastore", id, name, fresh ? "created" : "adopted", "ok");
        int64_t job;
        int je = jobs_submit(jobs, "datastore.usage", "datastore", id, name, c->user_id, NULL, &job);
        json_t *row = NULL;
        (void) store_datastore_get_json(st, id, &row);
        *ret = json_pack("{s:o, s:o, s:b}", "datastore", row ?: json_null(), "job", je < 0 ? json_null() : job_json(st, job),
                         "adopted", !fresh);
        return 0;
}

int protect_datastore_remove(Store *st, const OpCaller *c, int64_t id, bool force, OpError *err) {
        int e = may_manage(st, c, "remove", id, NULL, err);
        if (e < 0)
                return e;
        _cleanup_json_ json_t *row = NULL;
        e = datastore_row(st, id, &row, err);
        if (e < 0)
                return e;
        const char *name = jget_str(row, "name");
        if (!force) {
                ChunkStore *s = NULL;
                _cleanup_json_ json_t *points = NULL;
                if (chunkstore_open(jget_str(row, "path"), false, &s) == 0 && point_list(s, NULL, &points) == 0 &&
                    json_array_size(points) > 0) {
                        chunkstore_free(s);
                        return op_fail(err, 409, "conflict", NULL, "Datastore '%s' holds %zu recovery points; give force to"
                                       " forget it anyway (its files stay).", name, json_array_size(points));
                }
                chunkstore_free(s);
        }
        e = store_datastore_delete(st, id);
        if (e < 0)
                return op_fail_store(err, e, "The datastore");
        op_audit(st, c, "datastore.remove", "datastore", id, name, force ? "force" : NULL, "ok");
        return 0;
}

/* ------------------------------------------------------------- maintenance */

/* The datastore row of id for a maintenance op by c. */
static int maint_begin(Store *st, const OpCaller *c, int64_t id, const char *what, json_t **row, OpError *err) {
        int e = may_manage(st, c, what, id, NULL, err);
        if (e < 0)
                return e;
        return datastore_row(st, id, row, err);
}

int protect_datastore_verify(Store *st, Jobs *jobs, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *row = NULL;
        int e = maint_begin(st, c, id, "verify", &row, err);
        if (e < 0)
                return e;
        return submit(st, jobs, c, "datastore.verify", id, jget_str(row, "name"), NULL, "datastore.verify", ret, err);
}

int protect_path_verify(Store *st, Jobs *jobs, const OpCaller *c, const char *path, json_t **ret, OpError *err) {
        int e = may_manage(st, c, "verify", 0, NULL, err);
        if (e < 0)
                return e;
        _cleanup_free_ char *real = NULL;
        e = protect_path_check("path", path, false, &real, err);
        if (e < 0)
                return e;
        ChunkStore *s = NULL;
        e = chunkstore_open(real, false, &s);
        chunkstore_free(s);
        if (e < 0)
                return op_fail(err, 422, "invalid_argument", "path", "'%.200s' is not a datastore.", path);
        _cleanup_json_ json_t *params = json_pack("{s:s}", "path", real);
        return submit(st, jobs, c, "datastore.verify", 0, path, params, "datastore.verify", ret, err);
}

int protect_datastore_gc(Store *st, Jobs *jobs, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        _cleanup_json_ json_t *row = NULL;
        int e = maint_begin(st, c, id, "collect garbage in", &row, err);
        if (e < 0)
                return e;
        return submit(st, jobs, c, "datastore.gc", id, jget_str(row, "name"), NULL, "datastore.gc", ret, err);
}

/* The uuid of VM vm (a name in the inventory, or a uuid given as is):
 * 0, or 422 naming field. */
static int vm_uuid_of(Store *st, const OpCaller *c, const char *field, const char *vm, char out[64], OpError *err) {
        int64_t vid;
        int e = store_vm_find(st, vm, &vid);
        if (e == 0) {
                StoreVm v;
                e = store_vm_get(st, vid, &v);
                if (e < 0)
                        return op_fail_store(err, e, "the VM");
                snprintf(out, 64, "%s", v.uuid);
                return 0;
        }
        if (e != -ENOENT)
                return op_fail_store(err, e, "the VM");
        /* A VM deleted since its backups: its uuid. */
        size_t n = strlen(vm);
        bool uuid = n == 36;
        for (size_t i = 0; uuid && i < n; i++)
                uuid = (i == 8 || i == 13 || i == 18 || i == 23) ? vm[i] == '-'
                                                                   : ((vm[i] >= '0' && vm[i] <= '9') ||
                                                                      (vm[i] >= 'a' && vm[i] <= 'f'));
        if (!uuid)
                return op_fail(err, 422, "not_found", field, "There is no VM '%.100s'.", vm);
        snprintf(out, 64, "%s", vm);
        return 0;
}

int protect_datastore_prune(Store *st, Jobs *jobs, const OpCaller *c, int64_t id, const ProtectPruneSpec *spec,
                            json_t **ret, OpError *err) {
        _cleanup_json_ json_t *row = NULL;
        int e = maint_begin(st, c, id, "prune", &row, err);
        if (e < 0)
                return e;
        if (!spec->keep_last && !spec->keep_hourly && !spec->keep_daily && !spec->keep_weekly && !spec->keep_monthly &&
            !spec->keep_yearly)
                return op_fail(err, 400, "invalid_argument", "keep_last", "Give at least one of keep_last, keep_hourly,"
                               " keep_daily, keep_weekly, keep_monthly, keep_yearly above 0.");
        char uuid[64] = "";
        if (spec->vm) {
                e = vm_uuid_of(st, c, "vm", spec->vm, uuid, err);
                if (e < 0)
                        return e;
        }
        _cleanup_json_ json_t *params = json_pack("{s:s?, s:i, s:i, s:i, s:i, s:i, s:i, s:b}", "vm_uuid",
                                                  spec->vm ? uuid : NULL, "keep_last", spec->keep_last, "keep_hourly",
                                                  spec->keep_hourly, "keep_daily", spec->keep_daily, "keep_weekly",
                                                  spec->keep_weekly, "keep_monthly", spec->keep_monthly, "keep_yearly",
                                                  spec->keep_yearly, "dry_run", spec->dry_run);
        return submit(st, jobs, c, "datastore.prune", id, jget_str(row, "name"), params, "datastore.prune", ret, err);
}

/* A datastore directory real (path as the user gave it, for field) that
 * exists must cut disks at chunk_size, datastore name's: points are copied
 * chunk by chunk, never re-cut. 0 (also when real is no datastore yet), or
 * 409 naming "chunk_size". */
static int same_chunk_size(const char *field, const char *path, const char *real, uint32_t chunk_size, const char *name,
                           OpError *err) {
        ChunkStore *o = NULL;
        if (chunkstore_open(real, false, &o) < 0)
                return 0;
        uint32_t have = chunkstore_chunk_size(o);
        chunkstore_free(o);
        if (have == chunk_size)
                return 0;
        return op_fail(err, 409, "conflict", "chunk_size", "'%.200s' (%s) cuts disks into chunks of %u KiB, datastore '%s'"
                       " into chunks of %u KiB: points move only between datastores of the same chunk size.", path, field,
                       have >> 10, name, chunk_size >> 10);
}

/* The points of the archive spec in datastore s: 0 and a JSON array of
 * {vm_uuid, point_id} (not empty), or 4xx naming vm/point. */
static int archive_points(Store *st, const OpCaller *c, ChunkStore *s, const ProtectArchiveSpec *spec, json_t **ret,
                          OpError *err) {
        const char *field = spec->vm ? "vm" : "point";
        char uuid[64];
        const char *point_id = NULL;
        _cleanup_free_ char *vm = xstrdup(spec->vm ? spec->vm : spec->point);
        if (spec->point) {
                char *slash = strchr(vm, '/');
                if (!slash || !slash[1])
                        return op_fail(err, 400, "invalid_argument", "point", "Field 'point' (\"%.100s\") must be VM/POINT_ID.",
                                       spec->point);
                *slash = 0;
                point_id = slash + 1;
        }
        int e = vm_uuid_of(st, c, field, vm, uuid, err);
        if (e < 0)
                return e;
        _cleanup_json_ json_t *all = NULL;
        e = point_list(s, uuid, &all);
        if (e < 0)
                return op_fail(err, 500, "internal", NULL, "The points of the datastore cannot be read: %s.", strerror(-e));
        json_t *out = json_array();
        size_t i;
        json_t *p;
        json_array_foreach(all, i, p)
                if (!point_id || streq(point_id, jget_str(p, "point_id")))
                        json_array_append_new(out, json_pack("{s:s, s:s}", "vm_uuid", uuid, "point_id",
                                                             jget_str(p, "point_id")));
        if (json_array_size(out) == 0) {
                json_decref(out);
                return op_fail(err, 422, "not_found", field, point_id ? "There is no point '%.100s' of VM '%.100s'."
                                                                      : "VM '%.100s' has no points in this datastore.%.0s",
                               point_id ? point_id : vm, vm);
        }
        *ret = out;
        return 0;
}

int protect_datastore_archive(Store *st, Jobs *jobs, const OpCaller *c, int64_t id, const ProtectArchiveSpec *spec,
                              json_t **ret, OpError *err) {
        _cleanup_json_ json_t *row = NULL;
        int e = maint_begin(st, c, id, "archive", &row, err);
        if (e < 0)
                return e;
        if (!!spec->vm == !!spec->point)
                return op_fail(err, 400, "invalid_argument", "vm", "Give exactly one of 'vm' and 'point'.");
        _cleanup_free_ char *real = NULL;
        e = protect_path_check("to", spec->to, true, &real, err);
        if (e < 0)
                return e;
        e = overlap_check(st, "to", real, err);
        if (e < 0)
                return e;
        /* The target must be empty, missing or an archive already: checked
         * now so that the job does not fail on it later. */
        struct stat sb;
        _cleanup_free_ char *marker = xasprintf("%s/.armada-datastore", real);
        if (stat(real, &sb) == 0) {
                if (!S_ISDIR(sb.st_mode))
                        return op_fail(err, 422, "invalid_argument", "to", "'%.200s' is not a directory.", spec->to);
                DIR *d = opendir(real);
                struct dirent *de;
                bool empty = true;
                while (d && (de = readdir(d)))
                        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                                empty = false;
                if (d)
                        closedir(d);
                if (!empty && access(marker, F_OK) < 0)
                        return op_fail(err, 422, "invalid_argument", "to", "'%.200s' holds other files and is not a datastore.",
                                       spec->to);
        }
        ChunkStore *s = NULL;
        e = chunkstore_open(jget_str(row, "path"), false, &s);
        if (e < 0)
                return op_fail(err, 503, "unavailable", NULL, "Datastore '%s' cannot be opened: %s.", jget_str(row, "name"),
                               strerror(-e));
        e = same_chunk_size("to", spec->to, real, chunkstore_chunk_size(s), jget_str(row, "name"), err);
        json_t *points = NULL;
        if (e == 0)
                e = archive_points(st, c, s, spec, &points, err);
        chunkstore_free(s);
        if (e < 0)
                return e;
        _cleanup_json_ json_t *params = json_pack("{s:s, s:o}", "to", real, "points", points);
        return submit(st, jobs, c, "datastore.archive", id, jget_str(row, "name"), params, "datastore.archive", ret, err);
}

int protect_datastore_import(Store *st, Jobs *jobs, const OpCaller *c, int64_t id, const char *path, json_t **ret,
                             OpError *err) {
        _cleanup_json_ json_t *row = NULL;
        int e = maint_begin(st, c, id, "import into", &row, err);
        if (e < 0)
                return e;
        _cleanup_free_ char *real = NULL;
        e = protect_path_check("path", path, false, &real, err);
        if (e < 0)
                return e;
        if (streq(real, jget_str(row, "path")))
                return op_fail(err, 422, "invalid_argument", "path", "'%.200s' is the datastore itself.", path);
        ChunkStore *s = NULL;
        e = chunkstore_open(real, false, &s);
        chunkstore_free(s);
        if (e < 0)
                return op_fail(err, 422, "invalid_argument", "path", "'%.200s' is not a datastore.", path);
        e = same_chunk_size("path", path, real, (uint32_t) jget_int(row, "chunk_size"), jget_str(row, "name"), err);
        if (e < 0)
                return e;
        _cleanup_json_ json_t *params = json_pack("{s:s}", "from", real);
        return submit(st, jobs, c, "datastore.import", id, jget_str(row, "name"), params, "datastore.import", ret, err);
}

/* ------------------------------------------------------------- metrics */

char *protect_metrics_text(Store *st) {
        _cleanup_json_ json_t *all = NULL;
        if (store_datastore_list(st, &all) < 0)
                return NULL;
        static const struct {
                const char *key, *metric, *help;
        } fams[] = {
                { "chunks", "armada_datastore_chunks", "Chunk files in the datastore (as its last job counted)." },
                { "stored_bytes", "armada_datastore_stored_bytes", "Bytes its chunks take on disk, compressed." },
                { "logical_bytes", "armada_datastore_logical_bytes", "Sum of the disk sizes of every point it holds." },
                { "dedup_factor", "armada_datastore_dedup_factor", "logical_bytes / stored_bytes." },
                { "points", "armada_datastore_points", "Recovery points it holds." },
        };
        StrBuf b = { 0 };
        for (size_t f = 0; f < ELEMENTSOF(fams) && json_array_size(all) > 0; f++) {
                strbuf_printf(&b, "# HELP %s %s\n# TYPE %s gauge\n", fams[f].metric, fams[f].help, fams[f].metric);
                size_t i;
                json_t *d;
                json_array_foreach(all, i, d) {
                        json_t *u = json_object_get(d, "usage");
                        if (!json_is_object(u))
                                continue;
                        strbuf_printf(&b, "%s{datastore=\"%s\"} %.6g\n", fams[f].metric, jget_str(d, "name"),
                                      json_number_value(json_object_get(u, fams[f].key)));
                }
        }
        if (protect_backup_metrics(st, now_ms(), &b) < 0) {
                free(strbuf_steal(&b));
                return NULL;
        }
        char *text = strbuf_steal(&b);
        return text ? text : xstrdup("");
}
