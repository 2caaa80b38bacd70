/* The library's operations for the REST API (library.h, "operations"):
 * shares, items, streamed uploads, templates, grants and the self-service
 * view. The deploy is in library-deploy.c. Each operation decides the
 * caller's rights, checks what needs the database or the files, writes,
 * queues jobs and audits; the API only parses the request and maps the
 * result. */
#include "library-priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>

#include "store/store-library.h"

#define SSH_KEYS_MAX 32
#define DATA_DISKS_MAX 4

static const char *who(const OpCaller *c) {
        return c->user_name ? c->user_name : "system";
}

/* Changing the library, templates and grants is the administrator's. */
static int may_change_library(Store *st, const OpCaller *c, const char *what, OpError *err) {
        if (op_allowed(st, c, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return 0;
        return op_deny(st, c, err, what, "library", 0, NULL);
}

/* The library is readable by every role but self-service. */
static int may_read_library(const OpCaller *c, OpError *err) {
        if (c->subj.role != ROLE_SELF_SERVICE)
                return 0;
        return op_fail(err, 403, "forbidden", NULL, "User '%s' (self-service) sees the library only through"
                       " 'GET /api/v1/self-service'.", who(c));
}

json_t *library_job_json(Store *st, int64_t id) {
        json_t *j = NULL;
        return store_job_get_json(st, id, &j) == 0 ? j : json_null();
}

int library_queue_new_vm(Store *st, Jobs *jobs, const OpCaller *c, const char *kind, int64_t vm_id, const char *name,
                         json_t *params, json_t **ret_vm, int64_t *ret_job, OpError *err) {
        json_t *vm = NULL;
        (void) store_vm_get_json(st, vm_id, &vm);
        if (jobs_submit(jobs, kind, "vm", vm_id, name, c->user_id, params, ret_job) < 0) {
                json_decref(vm);
                (void) store_vm_delete(st, vm_id);
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        }
        *ret_vm = vm ?: json_null();
        return 0;
}

int library_group_of(Store *st, const OpCaller *c, const char *field, const char *path, int64_t *ret_id, OpError *err) {
        const char *why = NULL;
        _cleanup_free_ char *norm = store_group_path_normalize(path, &why);
        if (!norm)
                return op_fail(err, 400, "invalid_argument", field, "Field '%s' (\"%.200s\") is not a valid host-group path: a"
                               " segment %s.", field, path, why);
        int64_t id;
        int r = store_group_find(st, norm, &id);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the host group");
        if (r < 0 || !op_allowed(st, c, ACT_READ, OBJ_GROUP, 0, id))
                return op_fail(err, 422, "not_found", field, "There is no host group '%.200s'.", path);
        *ret_id = id;
        return 0;
}

LibraryAmounts library_grant_limit(json_t *g) {
        json_t *p = json_object_get(g, "points"), *v = json_object_get(g, "max_vms"), *c = json_object_get(g, "max_cpus"),
               *m = json_object_get(g, "max_memory_mib");
        return (LibraryAmounts) { json_is_integer(p) ? json_integer_value(p) : -1, json_is_integer(v) ? json_integer_value(v) : -1,
                                  json_is_integer(c) ? json_integer_value(c) : -1, json_is_integer(m) ? json_integer_value(m) : -1 };
}

LibraryAmounts library_grant_used(json_t *g) {
        return (LibraryAmounts) { jget_int(g, "used_points"), jget_int(g, "used_vms"), jget_int(g, "used_cpus"),
                                  jget_int(g, "used_memory_mib") };
}

/* ------------------------------------------------------------------ */
/* shares */

int library_shares_list(Store *st, const OpCaller *c, json_t **ret, OpError *err) {
        int e = may_read_library(c, err);
        if (e < 0)
                return e;
        e = store_share_list(st, ret);
        return e < 0 ? op_fail_store(err, e, "the library shares") : 0;
}

/* 0 when real neither is nor overlaps a share (an item belongs to one
 * share only), else 409 naming "path". */
static int share_overlap_check(Store *st, const char *real, OpError *err) {
        _cleanup_json_ json_t *all = NULL;
        int r = store_share_list(st, &all);
        if (r < 0)
                return op_fail_store(err, r, "the library shares");
        size_t i;
        json_t *s;
        json_array_foreach(all, i, s) {
                const char *p = jget_str(s, "path");
                size_t a = strlen(p), b = strlen(real);
                if (streq(p, real))
                        return op_fail(err, 409, "conflict", "path", "'%.200s' is already a library share.", real);
                if ((a < b && strncmp(real, p, a) == 0 && real[a] == '/') || (b < a && strncmp(p, real, b) == 0 && p[b] == '/'))
                        return op_fail(err, 409, "conflict", "path", "'%.200s' overlaps library share '%.200s'.", real, p);
        }
        return 0;
}

int library_share_create(Store *st, Jobs *jobs, const OpCaller *c, const char *path, json_t **ret, OpError *err) {
        int e = may_change_library(st, c, "add shares to", err);
        if (e < 0)
                return e;
        if (path[0] != '/')
                return op_fail(err, 400, "invalid_argument", "path", "Field 'path' (\"%.200s\") must be an absolute directory path.",
                               path);
        _cleanup_free_ char *real = realpath(path, NULL);
        struct stat sb;
        if (!real || stat(real, &sb) < 0 || !S_ISDIR(sb.st_mode))
                return op_fail(err, 422, "not_found", "path", "'%.200s' is not a directory on the Armada server.", path);
        e = share_overlap_check(st, real, err);
        if (e < 0)
                return e;
        int64_t id, job;
        e = store_share_insert(st, real, &id);
        if (e < 0)
                return op_fail_store(err, e, "The library share");
        e = jobs_submit(jobs, "library.refresh", "library_share", id, real, c->user_id, NULL, &job);
        op_audit(st, c, "library.add-share", "library_share", id, real, NULL, "ok");
        json_t *share = NULL;
        (void) store_share_get_json(st, id, &share); /* added already: a failed re-read (logged) shows null */
        *ret = json_pack("{s:o, s:o}", "share", share ?: json_null(), "job",
                         e < 0 ? json_null() : library_job_json(st, job));
        return 0;
}

int library_share_delete(Store *st, const OpCaller *c, int64_t id, OpError *err) {
        int e = may_change_library(st, c, "remove shares from", err);
        if (e < 0)
                return e;
        _cleanup_json_ json_t *s = NULL;
        e = store_share_get_json(st, id, &s);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no library share with id %lld.", (long long) id);
        if (e < 0)
                return op_fail_store(err, e, "the library share");
        e = store_share_delete(st, id);
        if (e == -ENOTEMPTY)
                return op_fail(err, 409, "conflict", NULL, "Library share '%s' holds the base image of a template; delete those"
                               " templates first.", jget_str(s, "path"));
        if (e < 0)
                return op_fail_store(err, e, "The library share");
        op_audit(st, c, "library.remove-share", "library_share", id, jget_str(s, "path"), NULL, "ok");
        return 0;
}

int library_share_refresh(Store *st, Jobs *jobs, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        int e = may_change_library(st, c, "refresh", err);
        if (e < 0)
                return e;
        _cleanup_json_ json_t *s = NULL;
        e = store_share_get_json(st, id, &s);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no library share with id %lld.", (long long) id);
        if (e < 0)
                return op_fail_store(err, e, "the library share");
        int64_t job;
        if (jobs_submit(jobs, "library.refresh", "library_share", id, jget_str(s, "path"), c->user_id, NULL, &job) < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        op_audit(st, c, "library.refresh", "library_share", id, jget_str(s, "path"), NULL, "accepted");
        *ret = json_pack("{s:o}", "job", library_job_json(st, job));
        return 0;
}

/* ------------------------------------------------------------------ */
/* items */

int library_items_list(Store *st, const OpCaller *c, int64_t share_id, const char *kind, json_t **ret, OpError *err) {
        int e = may_read_library(c, err);
        if (e < 0)
                return e;
        if (kind && !streq(kind, "disk") && !streq(kind, "iso") && !streq(kind, "script"))
                return op_fail(err, 400, "invalid_argument", "kind", "Query 'kind' must be disk, iso or script.");
        e = store_item_list(st, share_id, kind, ret);
        return e < 0 ? op_fail_store(err, e, "the library items") : 0;
}

int library_item_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        int e = may_read_library(c, err);
        if (e < 0)
                return e;
        e = store_item_get_json(st, id, ret);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no library item with id %lld.", (long long) id);
        return e < 0 ? op_fail_store(err, e, "the library item") : 0;
}

/* The share holding an absolute path: 0 with its id, root and the relative
 * path (malloc'd), or a 4xx naming field. */
static int share_of_path(Store *st, const char *field, const char *path, int64_t *ret_share, char root[1024], char **ret_rel,
                         OpError *err) {
        if (path[0] != '/')
                return op_fail(err, 400, "invalid_argument", field, "Field '%s' (\"%.200s\") must be an absolute path inside a"
                               " library share.", field, path);
        _cleanup_json_ json_t *all = NULL;
        int r = store_share_list(st, &all);
        if (r < 0)
                return op_fail_store(err, r, "the library shares");
        size_t i;
        json_t *s;
        json_array_foreach(all, i, s) {
                char *rel = NULL;
                int e = library_path_in_share(jget_str(s, "path"), path, &rel);
                if (e == -ENOENT)
                        return op_fail(err, 422, "not_found", field, "There is no file '%.200s'.", path);
                if (e == 0) {
                        *ret_share = jget_int(s, "id");
                        snprintf(root, 1024, "%s", jget_str(s, "path"));
                        *ret_rel = rel;
                        return 0;
                }
        }
        return op_fail(err, 422, "outside_library", field, "'%.200s' is not inside any library share.", path);
}

static const char *open_error(int e) {
        switch (e) {
        case -ELOOP: return "passes through a symbolic link, which Armada never follows inside a share";
        case -ENOENT: return "does not exist";
        case -ENOTDIR: return "has a segment that is not a directory";
        case -EACCES: return "cannot be read by armadad";
        default: return "cannot be opened";
        }
}

static void item_fill(StoreItem *it, const char *rel, const LibraryImageInfo *info) {
        snprintf(it->rel_path, sizeof it->rel_path, "%s", rel);
        snprintf(it->kind, sizeof it->kind, "%s", info->kind);
        snprintf(it->format, sizeof it->format, "%s", info->format);
        snprintf(it->backing, sizeof it->backing, "%s", info->backing);
}

int library_item_import(Store *st, Jobs *jobs, const OpCaller *c, const char *path, json_t **ret, OpError *err) {
        int e = may_change_library(st, c, "import into", err);
        if (e < 0)
                return e;
        int64_t share_id;
        char root[1024];
        _cleanup_free_ char *rel = NULL;
        e = share_of_path(st, "path", path, &share_id, root, &rel, err);
        if (e < 0)
                return e;
        const char *bad = library_rel_path_invalid(rel);
        if (bad)
                return op_fail(err, 422, "invalid_argument", "path", "The path '%.200s' inside share '%.200s' %s.", rel, root, bad);
        _cleanup_close_ int fd = library_open_in_share(root, rel, O_RDONLY, 0);
        if (fd < 0)
                return op_fail(err, 422, "invalid_argument", "path", "'%.200s' %s.", path, open_error(fd));
        struct stat sb;
        if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))
                return op_fail(err, 422, "invalid_argument", "path", "'%.200s' is not a regular file.", path);
        LibraryImageInfo info;
        if (library_image_detect(fd, rel, (uint64_t) sb.st_size, &info) < 0)
                return op_fail(err, 422, "not_an_image", "path", "'%.200s' is neither a disk image (qcow2, raw .img/.raw, vmdk,"
                               " vhd, vhdx), an ISO image nor a script.", path);
        /* The row now (templates can use it at once); the checksum in a job. */
        StoreItem it = { .share_id = share_id, .size = (uint64_t) sb.st_size, .virtual_size = info.virtual_size };
        item_fill(&it, rel, &info);
        int64_t id, job;
        e = store_item_upsert(st, &it, &id);
        if (e < 0)
                return op_fail_store(err, e, "The library item");
        json_t *p = json_pack("{s:s}", "rel_path", rel);
        e = jobs_submit(jobs, "library.refresh", "library_share", share_id, root, c->user_id, p, &job);
        json_decref(p);
        op_audit(st, c, "library.import", "library_item", id, rel, NULL, "accepted");
        json_t *item = NULL;
        (void) store_item_get_json(st, id, &item); /* recorded already: a failed re-read (logged) shows null */
        *ret = json_pack("{s:o, s:o}", "item", item ?: json_null(), "job",
                         e < 0 ? json_null() : library_job_json(st, job));
        return 0;
}

/* ------------------------------------------------------------------ */
/* streamed uploads */

struct LibraryUpload {
        int dir_fd, fd;
        char tmp[64];            /* the hidden temporary file in dir_fd, "" once renamed */
        char base[256], rel[1024], root[1024];
        int64_t share_id;
        uint64_t bytes, max;
        crypto_hash_sha256_state sha;
};

LibraryUpload *library_upload_free(LibraryUpload *u) {
        if (!u)
                return NULL;
        if (u->fd >= 0)
                close(u->fd);
        if (u->tmp[0] && u->dir_fd >= 0)
                (void) unlinkat(u->dir_fd, u->tmp, 0);
        if (u->dir_fd >= 0)
                close(u->dir_fd);
        free(u);
        return NULL;
}

/* The directory of u->rel inside the share, opened without symlinks; then
 * the hidden temporary file in it. */
static int upload_open(LibraryUpload *u, OpError *err) {
        const char *slash = strrchr(u->rel, '/');
        if (slash) {
                _cleanup_free_ char *dir = strndup(u->rel, (size_t) (slash - u->rel));
                u->dir_fd = library_open_in_share(u->root, dir, O_RDONLY | O_DIRECTORY, 0);
        } else
                u->dir_fd = open(u->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (u->dir_fd < 0)
                return op_fail(err, 422, "invalid_argument", "name", "The directory of '%.200s' in share '%.200s' %s.", u->rel,
                               u->root, open_error(u->dir_fd));
        struct stat sb;
        if (fstatat(u->dir_fd, u->base, &sb, AT_SYMLINK_NOFOLLOW) == 0)
                return op_fail(err, 409, "conflict", "name", "'%.200s' already exists in library share '%.200s'.", u->rel, u->root);
        unsigned char rnd[8];
        if (random_bytes(rnd, sizeof rnd) < 0)
                memset(rnd, 0, sizeof rnd);
        char hex[17];
        hex_encode(rnd, sizeof rnd, hex);
        /* Hidden: indexing skips it until it is complete and renamed. */
        snprintf(u->tmp, sizeof u->tmp, ".armada-upload-%s", hex);
        u->fd = openat(u->dir_fd, u->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (u->fd < 0) {
                int e = errno;
                u->tmp[0] = 0;
                return op_fail(err, 500, "internal", NULL, "Cannot create a file in library share '%.200s': %s.", u->root,
                               strerror(e));
        }
        crypto_hash_sha256_init(&u->sha);
        return 0;
}

int library_upload_begin(Store *st, const OpCaller *c, int64_t share_id, const char *name, int64_t content_length,
                         LibraryUpload **ret, OpError *err) {
        int e = may_change_library(st, c, "upload into", err);
        if (e < 0)
                return e;
        char root[1024];
        if (store_share_path(st, share_id, root, sizeof root) < 0)
                return op_fail(err, 404, "not_found", NULL, "There is no library share with id %lld.", (long long) share_id);
        if (!name || !*name)
                return op_fail(err, 400, "invalid_argument", "name", "Query 'name' (the file's path inside the share) is required.");
        const char *bad = library_rel_path_invalid(name);
        if (bad)
                return op_fail(err, 400, "invalid_argument", "name", "Query 'name' (\"%.200s\") %s.", name, bad);
        uint64_t max = library_config()->upload_max_bytes;
        if (content_length >= 0 && (uint64_t) content_length > max)
                return op_fail(err, 413, "too_large", NULL, "The upload is %lld bytes; the limit is %llu bytes"
                               " (armadad's library-upload-max).", (long long) content_length, (unsigned long long) max);
        LibraryUpload *u = xcalloc(1, sizeof *u);
        u->fd = u->dir_fd = -1;
        u->share_id = share_id;
        u->max = max;
        snprintf(u->root, sizeof u->root, "%s", root);
        snprintf(u->rel, sizeof u->rel, "%s", name);
        const char *slash = strrchr(name, '/');
        snprintf(u->base, sizeof u->base, "%s", slash ? slash + 1 : name);
        e = upload_open(u, err);
        if (e < 0) {
                library_upload_free(u);
                return e;
        }
        *ret = u;
        return 0;
}

int library_upload_write(LibraryUpload *u, const void *buf, size_t len, OpError *err) {
        if (u->bytes + len > u->max)
                return op_fail(err, 413, "too_large", NULL, "The upload is larger than the limit of %llu bytes"
                               " (armadad's library-upload-max).", (unsigned long long) library_config()->upload_max_bytes);
        size_t off = 0;
        while (off < len) {
                ssize_t w = write(u->fd, (const char *) buf + off, len - off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return op_fail(err, 507, "write_failed", NULL, "Cannot write the upload into library share '%.200s': %s.",
                                       u->root, strerror(errno));
                off += (size_t) w;
        }
        crypto_hash_sha256_update(&u->sha, buf, len);
        u->bytes += len;
        return 0;
}

int library_upload_finish(Store *st, const OpCaller *c, LibraryUpload *u, json_t **ret, OpError *err) {
        struct stat sb;
        LibraryImageInfo info;
        if (fsync(u->fd) < 0 || fstat(u->fd, &sb) < 0)
                return op_fail(err, 507, "write_failed", NULL, "Cannot store the upload: %s.", strerror(errno));
        /* Detection reads through a read-only descriptor of the same file. */
        _cleanup_close_ int ro = openat(u->dir_fd, u->tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (ro < 0 || library_image_detect(ro, u->rel, (uint64_t) sb.st_size, &info) < 0)
                return op_fail(err, 422, "not_an_image", "name", "The upload '%.200s' is neither a disk image (qcow2, raw .img/.raw,"
                               " vmdk, vhd, vhdx), an ISO image nor a script; it was not kept.", u->rel);
        if (renameat2(u->dir_fd, u->tmp, u->dir_fd, u->base, RENAME_NOREPLACE) < 0) {
                if (errno == EEXIST)
                        return op_fail(err, 409, "conflict", "name", "'%.200s' appeared in the share during the upload.", u->rel);
                return op_fail(err, 500, "internal", NULL, "Cannot put the upload in place: %s.", strerror(errno));
        }
        u->tmp[0] = 0;
        unsigned char d[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_final(&u->sha, d);
        StoreItem it = { .share_id = u->share_id, .size = u->bytes, .virtual_size = info.virtual_size,
                         .mtime_ms = (int64_t) sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000 };
        hex_encode(d, sizeof d, it.checksum);
        item_fill(&it, u->rel, &info);
        int64_t id;
        int e = store_item_upsert(st, &it, &id);
        if (e < 0)
                return op_fail_store(err, e, "The library item");
        op_audit(st, c, "library.upload", "library_item", id, it.rel_path, NULL, "ok");
        json_t *item = NULL;
        (void) store_item_get_json(st, id, &item); /* recorded already: a failed re-read (logged) shows null */
        *ret = json_pack("{s:o}", "item", item ?: json_null());
        return 0;
}

/* ------------------------------------------------------------------ */
/* templates */

/* Sizes in a body: "20G" strings or byte counts (from 1M to 64T). */
static int size_of(const char *field, json_t *v, uint64_t *ret, OpError *err) {
        if (json_is_integer(v) && json_integer_value(v) > 0) {
                *ret = (uint64_t) json_integer_value(v);
                return 0;
        }
        if (json_is_string(v) && size_parse(json_string_value(v), 1ULL << 30, ret) == 0 && *ret >= (1ULL << 20) &&
            *ret <= (64ULL << 40))
                return 0;
        return op_fail(err, 400, "invalid_argument", field, "Field '%s' must be a size such as 512M, 20G or 1T (from 1M to 64T).",
                       field);
}

/* The item image names (an absolute path, or a path relative to the one
 * share that holds it), else image_id. */
static int template_item(Store *st, const char *field, const char *image, int64_t image_id, StoreItem *ret, OpError *err) {
        if (image && image[0] == '/') {
                int64_t share;
                char root[1024];
                _cleanup_free_ char *rel = NULL;
                int e = share_of_path(st, field, image, &share, root, &rel, err);
                if (e < 0)
                        return e;
                e = store_item_find(st, share, rel, ret);
                if (e == -ENOENT)
                        return op_fail(err, 422, "not_found", field, "'%.200s' is not in the library index; import it or refresh"
                                       " its share.", image);
                if (e < 0)
                        return op_fail_store(err, e, "the library item");
        } else if (image) {
                _cleanup_json_ json_t *all = NULL;
                int r = store_item_ids_at(st, image, &all);
                if (r < 0)
                        return op_fail_store(err, r, "the library items");
                size_t n = json_array_size(all);
                if (n != 1)
                        return op_fail(err, 422, n ? "ambiguous" : "not_found", field, n ? "Several library shares hold '%.200s';"
                                       " give its absolute path." : "There is no library image '%.200s'.", image);
                r = store_item_get(st, jget_int(json_array_get(all, 0), "id"), ret);
                if (r < 0)
                        return op_fail_store(err, r, "the library item");
        } else {
                int r = store_item_get(st, image_id, ret);
                if (r == -ENOENT)
                        return op_fail(err, 422, "not_found", field, "There is no library item with id %lld.", (long long) image_id);
                if (r < 0)
                        return op_fail_store(err, r, "the library item");
        }
        return 0;
}

/* Resolves a template's base image: a standalone qcow2 or raw disk. */
static int template_image(Store *st, const char *image, int64_t image_id, StoreItem *ret, OpError *err) {
        const char *field = image ? "image" : "image_id";
        int e = template_item(st, field, image, image_id, ret, err);
        if (e < 0)
                return e;
        const char *label = image ? image : ret->rel_path;
        if (!streq(ret->kind, "disk"))
                return op_fail(err, 422, "not_a_disk", field, "'%.200s' is %s, not a disk image.", label,
                               streq(ret->kind, "iso") ? "an ISO image" : "a script");
        if (!streq(ret->format, "qcow2") && !streq(ret->format, "raw"))
                return op_fail(err, 422, "unsupported_format", field, "'%.200s' is a %s disk; templates need qcow2 or raw (convert it"
                               " with qemu-img).", label, ret->format);
        if (ret->backing[0])
                return op_fail(err, 422, "has_backing_file", field, "'%.200s' is itself an overlay of '%.200s'; a template's base"
                               " must stand alone.", label, ret->backing);
        return 0;
}

/* The ISO a template names for its VMs' CD-ROM drive (issue 12), if any:
 * an indexed ISO, else 422 naming "iso" or "iso_id". */
static int template_iso(Store *st, const LibraryTemplateSpec *s, StoreItem *ret, OpError *err) {
        if (!s->iso && !s->iso_id)
                return 0;
        const char *field = s->iso ? "iso" : "iso_id";
        if (s->iso && s->iso_id)
                return op_fail(err, 400, "invalid_argument", "iso_id", "Give either 'iso' or 'iso_id', not both.");
        int e = template_item(st, field, s->iso, s->iso_id, ret, err);
        if (e < 0)
                return e;
        if (!streq(ret->kind, "iso"))
                return op_fail(err, 422, "not_an_iso", field, "'%.200s' is %s, not an ISO image.", s->iso ? s->iso : ret->rel_path,
                               streq(ret->kind, "disk") ? "a disk image" : "a script");
        return 0;
}

static bool tz_ok(const char *s) {
        if (!*s || strlen(s) > 64)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("/_+-", *p)))
                        return false;
        return true;
}

static bool granted(json_t *grants, int64_t template_id) {
        size_t j, k;
        json_t *g, *gt;
        json_array_foreach(grants, j, g) json_array_foreach(json_object_get(g, "templates"), k, gt) if (jget_int(gt, "id") == template_id)
                return true;
        return false;
}

int library_templates_list(Store *st, const OpCaller *c, json_t **ret, OpError *err) {
        json_t *all = NULL;
        int r = store_template_list(st, &all);
        if (r < 0)
                return op_fail_store(err, r, "the templates");
        if (c->subj.role == ROLE_SELF_SERVICE) {
                /* Only the granted ones. */
                _cleanup_json_ json_t *grants = NULL;
                r = store_grant_list(st, c->user_id, &grants);
                if (r < 0) {
                        json_decref(all);
                        return op_fail_store(err, r, "the grants");
                }
                json_t *out = json_array();
                size_t i;
                json_t *t;
                json_array_foreach(all, i, t) if (granted(grants, jget_int(t, "id")))
                        json_array_append(out, t);
                json_decref(all);
                all = out;
        }
        *ret = all ?: json_array();
        return 0;
}

int library_template_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        json_t *t = NULL;
        int r = store_template_get_json(st, id, &t);
        if (r < 0 && r != -ENOENT)
                return op_fail_store(err, r, "the template");
        if (t && c->subj.role == ROLE_SELF_SERVICE) {
                _cleanup_json_ json_t *g = NULL;
                r = store_grants_for(st, c->user_id, id, &g);
                if (r < 0) {
                        json_decref(t);
                        return op_fail_store(err, r, "the grants");
                }
                if (json_array_size(g) == 0) {
                        json_decref(t);
                        t = NULL;
                }
        }
        if (!t)
                return op_fail(err, 404, "not_found", NULL, "There is no template with id %lld.", (long long) id);
        *ret = t;
        return 0;
}

/* The checks of a template's own fields (no database). */
static int template_fields_check(const LibraryTemplateSpec *s, OpError *err) {
        if (!s->image && !s->image_id)
                return op_fail(err, 400, "invalid_argument", "image", "Field 'image' (a library path) or 'image_id' is required.");
        if (s->image && s->image_id)
                return op_fail(err, 400, "invalid_argument", "image_id", "Give either 'image' or 'image_id', not both.");
        if (!streq(s->firmware, "bios") && !streq(s->firmware, "uefi"))
                return op_fail(err, 400, "invalid_argument", "firmware", "Field 'firmware' must be bios or uefi.");
        char out[64];
        if (s->hostname_pattern && library_hostname_expand(s->hostname_pattern, "x", 1, out) < 0)
                return op_fail(err, 400, "invalid_argument", "hostname_pattern", "Field 'hostname_pattern' (\"%.63s\") must give a"
                               " host name of letters, digits and '-' from '{name}', '{n}' and literal text.", s->hostname_pattern);
        if (s->timezone && !tz_ok(s->timezone))
                return op_fail(err, 400, "invalid_argument", "timezone", "Field 'timezone' (\"%.64s\") must be a zone name such as"
                               " Europe/Berlin or UTC.", s->timezone);
        if (s->user_data) {
                size_t n = strlen(s->user_data);
                if (n > LIBRARY_USER_DATA_MAX)
                        return op_fail(err, 422, "too_large", "user_data", "Field 'user_data' is %zu bytes; at most %d are allowed.", n,
                                       LIBRARY_USER_DATA_MAX);
                if (n && !library_user_data_type(s->user_data))
                        return op_fail(err, 422, "invalid_argument", "user_data", "Field 'user_data' must start with '#cloud-config',"
                                       " '#!' (a script), '#cloud-boothook' or '#include'.");
                if (strstr(s->user_data, "==ARMADA-CLOUD-INIT-BOUNDARY=="))
                        return op_fail(err, 422, "invalid_argument", "user_data", "Field 'user_data' must not contain Armada's MIME"
                                       " boundary.");
        }
        return 0;
}

/* ssh_keys (NULL or JSON null: none): OpenSSH public keys on one line. */
static int template_keys_check(json_t *keys, OpError *err) {
        if (!keys || json_is_null(keys))
                return 0;
        if (!json_is_array(keys) || json_array_size(keys) > SSH_KEYS_MAX)
                return op_fail(err, 400, "invalid_argument", "ssh_keys", "Field 'ssh_keys' must be a list of at most %d public keys.",
                               SSH_KEYS_MAX);
        size_t i;
        json_t *k;
        json_array_foreach(keys, i, k) {
                const char *s = json_string_value(k);
                bool ok = s && strlen(s) < 8192 && (strncmp(s, "ssh-", 4) == 0 || strncmp(s, "ecdsa-", 6) == 0 ||
                                                   strncmp(s, "sk-", 3) == 0);
                for (const char *p = s; ok && *p; p++)
                        ok = (unsigned char) *p >= 0x20 && *p != 0x7f;
                if (!ok)
                        return op_fail(err, 400, "invalid_argument", "ssh_keys", "Field 'ssh_keys' item %zu is not an OpenSSH public"
                                       " key on one line (ssh-ed25519 AAAA... comment).", i + 1);
        }
        return 0;
}

/* data_disks (NULL or JSON null: none) as a JSON array of byte counts. */
static int template_data_disks(json_t *data, json_t *ret_sizes, OpError *err) {
        if (!data || json_is_null(data))
                return 0;
        if (!json_is_array(data) || json_array_size(data) > DATA_DISKS_MAX)
                return op_fail(err, 400, "invalid_argument", "data_disks", "Field 'data_disks' must be a list of at most %d sizes.",
                               DATA_DISKS_MAX);
        size_t i;
        json_t *v;
        json_array_foreach(data, i, v) {
                uint64_t b;
                int e = size_of("data_disks", v, &b, err);
                if (e < 0)
                        return e;
                json_array_append_new(ret_sizes, json_integer((json_int_t) b));
        }
        return 0;
}

/* The system disk's size: 0 (the base's) when none is given, never less
 * than the base's virtual size. */
static int template_disk_size(const char *disk_size, const StoreItem *base, uint64_t *ret, OpError *err) {
        *ret = 0;
        if (!disk_size)
                return 0;
        json_t *v = json_string(disk_size);
        int e = size_of("disk_size", v, ret, err);
        json_decref(v);
        if (e < 0)
                return e;
        if (*ret < base->virtual_size)
                return op_fail(err, 422, "out_of_range", "disk_size", "Field 'disk_size' (%s) is smaller than the %llu bytes of"
                               " image '%s'.", disk_size, (unsigned long long) base->virtual_size, base->rel_path);
        return 0;
}

int library_template_create(Store *st, const OpCaller *c, const LibraryTemplateSpec *s, json_t **ret, OpError *err) {
        int e = may_change_library(st, c, "create templates in", err);
        if (e < 0)
                return e;
        _cleanup_json_ json_t *data_sizes = json_array();
        json_t *keys = s->ssh_keys && !json_is_null(s->ssh_keys) ? s->ssh_keys : NULL;
        if ((e = template_fields_check(s, err)) < 0 || (e = template_keys_check(keys, err)) < 0 ||
            (e = template_data_disks(s->data_disks, data_sizes, err)) < 0)
                return e;
        int64_t existing;
        if (store_template_find(st, s->name, &existing) == 0)
                return op_fail(err, 409, "conflict", "name", "A template named '%s' already exists.", s->name);
        StoreItem base, iso = {0};
        uint64_t disk_bytes;
        if ((e = template_image(st, s->image, s->image_id, &base, err)) < 0 ||
            (e = template_disk_size(s->disk_size, &base, &disk_bytes, err)) < 0 || (e = template_iso(st, s, &iso, err)) < 0)
                return e;
        _cleanup_free_ char *keys_s = keys ? json_dumps(keys, JSON_COMPACT) : NULL;
        _cleanup_free_ char *data_s = json_array_size(data_sizes) ? json_dumps(data_sizes, JSON_COMPACT) : NULL;
        StoreTemplate t = { .name = s->name, .description = s->description, .cpus = s->cpus, .memory_mib = s->memory_mib,
                            .disk_bytes = (int64_t) disk_bytes, .data_disks_json = data_s, .firmware = s->firmware,
                            .network = s->network, .base_item_id = base.id, .hostname_pattern = s->hostname_pattern,
                            .admin_user = s->admin_user, .ssh_keys_json = keys_s, .timezone = s->timezone,
                            .user_data = s->user_data && *s->user_data ? s->user_data : NULL, .points = s->points,
                            .domain_type = s->domain_type, .iso_item_id = iso.id };
        int64_t id;
        e = store_template_insert(st, &t, &id);
        if (e == -EEXIST)
                return op_fail(err, 409, "conflict", "name", "A template named '%s' already exists.", s->name);
        if (e < 0)
                return op_fail_store(err, e, "The template");
        op_audit(st, c, "template.create", "template", id, s->name, base.rel_path, "ok");
        json_t *made = NULL;
        (void) store_template_get_json(st, id, &made); /* created already: a failed re-read (logged) shows null */
        *ret = made ?: json_null();
        return 0;
}

int library_template_delete(Store *st, const OpCaller *c, int64_t id, OpError *err) {
        int e = may_change_library(st, c, "delete templates from", err);
        if (e < 0)
                return e;
        _cleanup_json_ json_t *t = NULL;
        e = store_template_get_json(st, id, &t);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no template with id %lld.", (long long) id);
        if (e < 0)
                return op_fail_store(err, e, "the template");
        e = store_template_delete(st, id);
        if (e < 0)
                return op_fail_store(err, e, "The template");
        op_audit(st, c, "template.delete", "template", id, jget_str(t, "name"), NULL, "ok");
        return 0;
}

/* The share a captured disk goes to: share_id, or the only share. */
static int capture_share(Store *st, int64_t share_id, char root[1024], int64_t *ret_id, OpError *err) {
        if (!share_id) {
                _cleanup_json_ json_t *all = NULL;
                int r = store_share_list(st, &all);
                if (r < 0)
                        return op_fail_store(err, r, "the library shares");
                if (json_array_size(all) != 1)
                        return op_fail(err, 400, "invalid_argument", "share_id", json_array_size(all) ? "There are several library"
                                       " shares; say which one in 'share_id'." : "There is no library share to copy the disk into.");
                share_id = jget_int(json_array_get(all, 0), "id");
        }
        if (store_share_path(st, share_id, root, 1024) < 0)
                return op_fail(err, 422, "not_found", "share_id", "There is no library share with id %lld.", (long long) share_id);
        *ret_id = share_id;
        return 0;
}

int library_template_from_vm(Store *st, Jobs *jobs, const OpCaller *c, const char *vm_name, const char *name, int64_t share_id,
                             int64_t points, json_t **ret, OpError *err) {
        int e = may_change_library(st, c, "create templates in", err);
        if (e < 0)
                return e;
        int64_t vm_id, existing;
        StoreVm vm;
        e = store_vm_find(st, vm_name, &vm_id);
        if (e >= 0)
                e = store_vm_get(st, vm_id, &vm);
        if (e == -ENOENT)
                return op_fail(err, 422, "not_found", "vm", "There is no VM named '%s'.", vm_name);
        if (e < 0)
                return op_fail_store(err, e, "the VM");
        if (!streq(vm.state, "stopped"))
                return op_fail(err, 409, "conflict", "vm", "VM '%s' is %s; stop it before making a template of it.", vm.name, vm.state);
        if (store_template_find(st, name, &existing) == 0)
                return op_fail(err, 409, "conflict", "name", "A template named '%s' already exists.", name);
        char root[1024];
        e = capture_share(st, share_id, root, &share_id, err);
        if (e < 0)
                return e;
        _cleanup_free_ char *rel = xasprintf("%s.qcow2", name);
        _cleanup_free_ char *dst = xasprintf("%s/%s", root, rel);
        struct stat sb;
        if (lstat(dst, &sb) == 0)
                return op_fail(err, 409, "conflict", "name", "'%s' already exists in library share '%s'.", rel, root);
        json_t *p = json_pack("{s:s, s:s, s:I, s:I}", "template_name", name, "rel_path", rel, "share_id", (json_int_t) share_id,
                              "points", (json_int_t) points);
        int64_t job;
        e = jobs_submit(jobs, "vm.capture", "vm", vm.id, vm.name, c->user_id, p, &job);
        json_decref(p);
        if (e < 0)
                return op_fail(err, 500, "internal", NULL, "Cannot queue the job.");
        op_audit(st, c, "template.from-vm", "vm", vm.id, vm.name, name, "accepted");
        *ret = json_pack("{s:o}", "job", library_job_json(st, job));
        return 0;
}

/* ------------------------------------------------------------------ */
/* grants and self-service */

static json_t *quota_json(json_t *g) {
        LibraryAmounts l = library_grant_limit(g), u = library_grant_used(g);
        const int64_t lv[4] = { l.points, l.vms, l.cpus, l.memory_mib }, uv[4] = { u.points, u.vms, u.cpus, u.memory_mib };
        static const char *const names[4] = { "points", "vms", "cpus", "memory_mib" };
        json_t *q = json_object();
        for (int i = 0; i < 4; i++)
                json_object_set_new(q, names[i], json_pack("{s:o, s:I, s:o}", "limit", lv[i] < 0 ? json_null() : json_integer(lv[i]),
                                                           "used", (json_int_t) uv[i], "left",
                                                           lv[i] < 0 ? json_null() : json_integer(lv[i] > uv[i] ? lv[i] - uv[i] : 0)));
        return q;
}

static json_t *grant_out(json_t *g) {
        if (!g)
                return json_null();
        json_object_set_new(g, "quota", quota_json(g));
        return g;
}

int library_grants_list(Store *st, const OpCaller *c, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_READ, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "list", "grants", 0, NULL);
        json_t *all = NULL;
        int r = store_grant_list(st, 0, &all);
        if (r < 0)
                return op_fail_store(err, r, "the grants");
        size_t i;
        json_t *g;
        json_array_foreach(all, i, g) json_object_set_new(g, "quota", quota_json(g));
        *ret = all;
        return 0;
}

int library_grant_get(Store *st, const OpCaller *c, int64_t id, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_READ, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "read", "grants", 0, NULL);
        json_t *g = NULL;
        int r = store_grant_get_json(st, id, &g);
        if (r == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no grant with id %lld.", (long long) id);
        if (r < 0)
                return op_fail_store(err, r, "the grant");
        *ret = grant_out(g);
        return 0;
}

/* The ids of the template names in list (1 to 100 of them) into ids. */
static int grant_templates(Store *st, json_t *list, int64_t ids[100], size_t *ret_n, OpError *err) {
        if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > 100)
                return op_fail(err, 400, "invalid_argument", "templates", "Field 'templates' must be a list of 1 to 100 template names.");
        size_t n = 0, i;
        json_t *t;
        json_array_foreach(list, i, t) {
                const char *tn = json_string_value(t);
                int r = tn ? store_template_find(st, tn, &ids[n]) : -ENOENT;
                if (r == -ENOENT)
                        return op_fail(err, 422, "not_found", "templates", "There is no template named '%.64s'.",
                                       tn ? tn : "(not a string)");
                if (r < 0)
                        return op_fail_store(err, r, "the templates");
                n++;
        }
        *ret_n = n;
        return 0;
}

int library_grant_create(Store *st, const OpCaller *c, const LibraryGrantSpec *s, json_t **ret, OpError *err) {
        if (!op_allowed(st, c, ACT_CREATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "create", "grants", 0, NULL);
        const char *bad = library_actions_invalid(s->actions);
        if (bad)
                return op_fail(err, 400, "invalid_argument", "actions", "Field 'actions' (\"%.200s\") %s.", s->actions, bad);
        StoreUser u;
        int ur = store_user_find(st, s->user, &u);
        if (ur == -ENOENT)
                return op_fail(err, 422, "not_found", "user", "There is no user named '%s'.", s->user);
        if (ur < 0)
                return op_fail_store(err, ur, "the user");
        if (!streq(u.role, "self-service"))
                return op_fail(err, 422, "invalid_argument", "user", "User '%s' is %s; grants are for self-service users.", s->user,
                               u.role);
        int64_t gid, tids[100];
        size_t n = 0;
        int e;
        if ((e = library_group_of(st, c, "group", s->group, &gid, err)) < 0 || (e = grant_templates(st, s->templates, tids, &n, err)) < 0)
                return e;
        StoreGrant g = { .user_id = u.id, .group_id = gid, .points = s->points, .max_vms = s->max_vms, .max_cpus = s->max_cpus,
                         .max_memory_mib = s->max_memory_mib, .actions = s->actions };
        int64_t id;
        e = store_grant_insert(st, &g, tids, n, &id);
        if (e < 0)
                return op_fail_store(err, e, "The grant");
        _cleanup_free_ char *detail = xasprintf("group %s", s->group);
        op_audit(st, c, "grant.create", "grant", id, s->user, detail, "ok");
        json_t *made = NULL;
        (void) store_grant_get_json(st, id, &made); /* created already: a failed re-read (logged) shows null */
        *ret = grant_out(made);
        return 0;
}

int library_grant_delete(Store *st, const OpCaller *c, int64_t id, OpError *err) {
        if (!op_allowed(st, c, ACT_DELETE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "delete", "grants", 0, NULL);
        int e = store_grant_delete(st, id);
        if (e == -ENOENT)
                return op_fail(err, 404, "not_found", NULL, "There is no grant with id %lld.", (long long) id);
        if (e < 0)
                return op_fail_store(err, e, "The grant");
        op_audit(st, c, "grant.delete", "grant", id, NULL, NULL, "ok");
        return 0;
}

int library_self_service(Store *st, const OpCaller *c, json_t **ret, OpError *err) {
        /* The lists take user 0 for "everyone's": the system has no view. */
        _cleanup_json_ json_t *grants = NULL, *vms = NULL;
        int r = c->user_id > 0 ? store_grant_list(st, c->user_id, &grants) : 0;
        if (r >= 0 && c->user_id > 0)
                r = store_vm_list(st, NULL, 0, c->user_id, &vms);
        if (r < 0)
                return op_fail_store(err, r, "your grants and VMs");
        size_t i;
        json_t *g;
        json_array_foreach(grants, i, g) {
                json_object_set_new(g, "quota", quota_json(g));
                json_t *acts = json_array();
                _cleanup_free_ char *copy = xstrdup(jget_str(g, "actions"));
                char *save = NULL;
                for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save))
                        json_array_append_new(acts, json_string(w));
                json_object_set_new(g, "actions", acts);
        }
        *ret = json_pack("{s:s, s:s, s:o, s:o}", "user", who(c), "role", c->role_name ? c->role_name : "?", "grants",
                         grants ? json_incref(grants) : json_array(), "vms", vms ? json_incref(vms) : json_array());
        return 0;
}
