/* The library capability's REST resources:
 *
 *   GET|POST /api/v1/library/shares, DELETE /api/v1/library/shares/{id}
 *   POST /api/v1/library/shares/{id}/actions/refresh        index (job)
 *   POST /api/v1/library/shares/{id}/upload?name=REL         streamed body
 *   GET /api/v1/library/items[?share_id=&kind=], GET /api/v1/library/items/{id}
 *   POST /api/v1/library/items {path}                        import a file of a share
 *   GET|POST /api/v1/templates, GET|DELETE /api/v1/templates/{id}
 *   POST /api/v1/templates/{id}/deploy {name, count, host, group, full_copy, start}
 *   POST /api/v1/templates/from-vm {vm, name, share_id, points}  a stopped VM's disk (job)
 *   GET|POST /api/v1/grants, GET|DELETE /api/v1/grants/{id}
 *   GET /api/v1/self-service                                 the caller's grants, quota, VMs
 *
 * Changing the library, templates and grants is the administrator's
 * (OBJ_SYSTEM in the policy). Reading them is open to every role but
 * self-service users, who see only the templates granted to them. A deploy
 * by a self-service user is authorized by a grant (template, quota, host
 * group, actions) instead of the policy's VM CREATE, which it never has. */
#include "api-priv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>

#include "placement/placement.h"
#include "library/library.h"
#include "place/place.h"
#include "store/store-library.h"

#define VM_CPUS_MAX 256
#define VM_MEMORY_MIN_MIB 16
#define VM_MEMORY_MAX_MIB (4LL << 20)
#define DEPLOY_COUNT_MAX 100
#define SSH_KEYS_MAX 32
#define DATA_DISKS_MAX 4

static json_t *items(json_t *arr) {
        return json_pack("{s:o}", "items", arr ? arr : json_array());
}

static bool may_change_library(Req *r, const char *what) {
        if (api_allowed(r, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return true;
        deny(r, what, "library", 0, NULL);
        return false;
}

/* Library and templates are readable by every role but self-service. */
static bool may_read_library(Req *r) {
        if (r->subj.role != ROLE_SELF_SERVICE)
                return true;
        reply_error(r, 403, "forbidden", NULL, "User '%s' (self-service) sees the library only through 'GET /api/v1/self-service'.",
                    r->user.name);
        return false;
}

static json_t *job_json(Req *r, int64_t id) {
        json_t *j = store_job_get_json(r->api->st, id);
        return j ? j : json_null();
}

/* ------------------------------------------------------------------ */
/* shares */

static void h_shares_list(Req *r) {
        if (may_read_library(r))
                reply(r, 200, items(store_share_list(r->api->st)));
}

static void h_shares_create(Req *r) {
        static const char *const fields[] = { "path", NULL };
        const char *path = NULL;
        if (!req_body_fields(r, fields) || !body_string(r, "path", true, 1000, &path) || !may_change_library(r, "add shares to"))
                return;
        if (path[0] != '/')
                return reply_error(r, 400, "invalid_argument", "path", "Field 'path' (\"%.200s\") must be an absolute directory path.", path);
        _cleanup_free_ char *real = realpath(path, NULL);
        struct stat sb;
        if (!real || stat(real, &sb) < 0 || !S_ISDIR(sb.st_mode))
                return reply_error(r, 422, "not_found", "path", "'%.200s' is not a directory on the Armada server.", path);
        /* Shares may not overlap: an item must belong to one share only. */
        _cleanup_json_ json_t *all = store_share_list(r->api->st);
        size_t i;
        json_t *s;
        json_array_foreach(all, i, s) {
                const char *p = jget_str(s, "path");
                size_t a = strlen(p), b = strlen(real);
                if (streq(p, real))
                        return reply_error(r, 409, "conflict", "path", "'%.200s' is already a library share.", real);
                if ((a < b && strncmp(real, p, a) == 0 && real[a] == '/') || (b < a && strncmp(p, real, b) == 0 && p[b] == '/'))
                        return reply_error(r, 409, "conflict", "path", "'%.200s' overlaps library share '%.200s'.", real, p);
        }
        int64_t id, job;
        int e = store_share_insert(r->api->st, real, &id);
        if (e < 0)
                return reply_store_error(r, e, "The library share");
        e = jobs_submit(r->api->jobs, "library.refresh", "library_share", id, real, r->user.id, NULL, &job);
        audit(r, "library.add-share", "library_share", id, real, NULL, "ok");
        reply(r, 201, json_pack("{s:o, s:o}", "share", store_share_get_json(r->api->st, id) ?: json_null(), "job",
                                e < 0 ? json_null() : job_json(r, job)));
}

static void h_share_delete(Req *r) {
        if (!may_change_library(r, "remove shares from"))
                return;
        _cleanup_json_ json_t *s = store_share_get_json(r->api->st, r->id[0]);
        if (!s)
                return reply_error(r, 404, "not_found", NULL, "There is no library share with id %lld.", (long long) r->id[0]);
        int e = store_share_delete(r->api->st, r->id[0]);
        if (e == -ENOTEMPTY)
                return reply_error(r, 409, "conflict", NULL, "Library share '%s' holds the base image of a template; delete those"
                                   " templates first.", jget_str(s, "path"));
        if (e < 0)
                return reply_store_error(r, e, "The library share");
        audit(r, "library.remove-share", "library_share", r->id[0], jget_str(s, "path"), NULL, "ok");
        reply(r, 204, NULL);
}

static void h_share_refresh(Req *r) {
        if (!may_change_library(r, "refresh"))
                return;
        _cleanup_json_ json_t *s = store_share_get_json(r->api->st, r->id[0]);
        if (!s)
                return reply_error(r, 404, "not_found", NULL, "There is no library share with id %lld.", (long long) r->id[0]);
        int64_t job;
        if (jobs_submit(r->api->jobs, "library.refresh", "library_share", r->id[0], jget_str(s, "path"), r->user.id, NULL, &job) < 0)
                return reply_error(r, 500, "internal", NULL, "Cannot queue the job.");
        audit(r, "library.refresh", "library_share", r->id[0], jget_str(s, "path"), NULL, "accepted");
        reply(r, 202, json_pack("{s:o}", "job", job_json(r, job)));
}

/* ------------------------------------------------------------------ */
/* items */

static void h_items_list(Req *r) {
        int64_t share_id;
        const char *kind = req_query(r, "kind");
        if (!req_query_int(r, "share_id", 0, 0, INT64_MAX, &share_id) || !may_read_library(r))
                return;
        if (kind && !streq(kind, "disk") && !streq(kind, "iso") && !streq(kind, "script"))
                return reply_error(r, 400, "invalid_argument", "kind", "Query 'kind' must be disk, iso or script.");
        reply(r, 200, items(store_item_list(r->api->st, share_id, kind)));
}

static void h_item_get(Req *r) {
        if (!may_read_library(r))
                return;
        json_t *it = store_item_get_json(r->api->st, r->id[0]);
        if (!it)
                return reply_error(r, 404, "not_found", NULL, "There is no library item with id %lld.", (long long) r->id[0]);
        reply(r, 200, it);
}

/* The share holding an absolute path: 0 with its id, root and the relative
 * path, or false with a 4xx sent naming field. */
static bool share_of_path(Req *r, const char *field, const char *path, int64_t *ret_share, char root[1024], char **ret_rel) {
        if (path[0] != '/') {
                reply_error(r, 400, "invalid_argument", field, "Field '%s' (\"%.200s\") must be an absolute path inside a library share.",
                            field, path);
                return false;
        }
        _cleanup_json_ json_t *all = store_share_list(r->api->st);
        size_t i;
        json_t *s;
        json_array_foreach(all, i, s) {
                char *rel = NULL;
                int e = library_path_in_share(jget_str(s, "path"), path, &rel);
                if (e == -ENOENT) {
                        reply_error(r, 422, "not_found", field, "There is no file '%.200s'.", path);
                        return false;
                }
                if (e == 0) {
                        *ret_share = jget_int(s, "id");
                        snprintf(root, 1024, "%s", jget_str(s, "path"));
                        *ret_rel = rel;
                        return true;
                }
        }
        reply_error(r, 422, "outside_library", field, "'%.200s' is not inside any library share.", path);
        return false;
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

static void h_items_import(Req *r) {
        static const char *const fields[] = { "path", NULL };
        const char *path = NULL;
        if (!req_body_fields(r, fields) || !body_string(r, "path", true, 1000, &path) || !may_change_library(r, "import into"))
                return;
        int64_t share_id;
        char root[1024];
        _cleanup_free_ char *rel = NULL;
        if (!share_of_path(r, "path", path, &share_id, root, &rel))
                return;
        const char *bad = library_rel_path_invalid(rel);
        if (bad)
                return reply_error(r, 422, "invalid_argument", "path", "The path '%.200s' inside share '%.200s' %s.", rel, root, bad);
        _cleanup_close_ int fd = library_open_in_share(root, rel, O_RDONLY, 0);
        if (fd < 0)
                return reply_error(r, 422, "invalid_argument", "path", "'%.200s' %s.", path, open_error(fd));
        struct stat sb;
        if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))
                return reply_error(r, 422, "invalid_argument", "path", "'%.200s' is not a regular file.", path);
        LibraryImageInfo info;
        if (library_image_detect(fd, rel, (uint64_t) sb.st_size, &info) < 0)
                return reply_error(r, 422, "not_an_image", "path", "'%.200s' is neither a disk image (qcow2, raw .img/.raw, vmdk, vhdx),"
                                   " an ISO image nor a script.", path);
        /* The row now (templates can use it at once); the checksum in a job. */
        StoreItem it = { .share_id = share_id, .size = (uint64_t) sb.st_size, .virtual_size = info.virtual_size };
        snprintf(it.rel_path, sizeof it.rel_path, "%s", rel);
        snprintf(it.kind, sizeof it.kind, "%s", info.kind);
        snprintf(it.format, sizeof it.format, "%s", info.format);
        snprintf(it.backing, sizeof it.backing, "%s", info.backing);
        int64_t id, job;
        int e = store_item_upsert(r->api->st, &it, &id);
        if (e < 0)
                return reply_store_error(r, e, "The library item");
        json_t *p = json_pack("{s:s}", "rel_path", rel);
        e = jobs_submit(r->api->jobs, "library.refresh", "library_share", share_id, root, r->user.id, p, &job);
        json_decref(p);
        audit(r, "library.import", "library_item", id, rel, NULL, "accepted");
        reply(r, 202, json_pack("{s:o, s:o}", "item", store_item_get_json(r->api->st, id) ?: json_null(), "job",
                                e < 0 ? json_null() : job_json(r, job)));
}

/* ---- streamed upload ---- */

typedef struct {
        int dir_fd, fd;
        char tmp[64], base[256], rel[1024], root[1024];
        int64_t share_id;
        uint64_t bytes, max;
        crypto_hash_sha256_state sha;
} Upload;

static void upload_free(Req *r, bool remove) {
        Upload *u = r->stream_state;
        if (!u)
                return;
        if (u->fd >= 0)
                close(u->fd);
        if (remove && u->tmp[0])
                (void) unlinkat(u->dir_fd, u->tmp, 0);
        if (u->dir_fd >= 0)
                close(u->dir_fd);
        free(u);
        r->stream_state = NULL;
}

static void upload_begin(Req *r) {
        if (!may_change_library(r, "upload into"))
                return;
        char root[1024];
        if (store_share_path(r->api->st, r->id[0], root, sizeof root) < 0)
                return reply_error(r, 404, "not_found", NULL, "There is no library share with id %lld.", (long long) r->id[0]);
        const char *name = req_query(r, "name");
        if (!name || !*name)
                return reply_error(r, 400, "invalid_argument", "name", "Query 'name' (the file's path inside the share) is required.");
        const char *bad = library_rel_path_invalid(name);
        if (bad)
                return reply_error(r, 400, "invalid_argument", "name", "Query 'name' (\"%.200s\") %s.", name, bad);
        uint64_t max = library_config()->upload_max_bytes;
        const char *cl = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Content-Length");
        int64_t len;
        if (cl && parse_i64(cl, &len) == 0 && (uint64_t) len > max)
                return reply_error(r, 413, "too_large", NULL, "The upload is %lld bytes; the limit is %llu bytes"
                                   " (armadad's library-upload-max).", (long long) len, (unsigned long long) max);
        Upload *u = xcalloc(1, sizeof *u);
        u->fd = u->dir_fd = -1;
        u->share_id = r->id[0];
        u->max = max;
        snprintf(u->root, sizeof u->root, "%s", root);
        snprintf(u->rel, sizeof u->rel, "%s", name);
        const char *slash = strrchr(name, '/');
        snprintf(u->base, sizeof u->base, "%s", slash ? slash + 1 : name);
        r->stream_state = u;
        if (slash) {
                _cleanup_free_ char *dir = strndup(name, (size_t) (slash - name));
                u->dir_fd = library_open_in_share(root, dir, O_RDONLY | O_DIRECTORY, 0);
        } else
                u->dir_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (u->dir_fd < 0) {
                int e = u->dir_fd;
                upload_free(r, false);
                return reply_error(r, 422, "invalid_argument", "name", "The directory of '%.200s' in share '%.200s' %s.", name, root,
                                   open_error(e));
        }
        struct stat sb;
        if (fstatat(u->dir_fd, u->base, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
                upload_free(r, false);
                return reply_error(r, 409, "conflict", "name", "'%.200s' already exists in library share '%.200s'.", name, root);
        }
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
                upload_free(r, false);
                return reply_error(r, 500, "internal", NULL, "Cannot create a file in library share '%.200s': %s.", root, strerror(e));
        }
        crypto_hash_sha256_init(&u->sha);
}

static void upload_data(Req *r) {
        Upload *u = r->stream_state;
        if (!u)
                return;
        if (u->bytes + r->upload_len > u->max) {
                upload_free(r, true);
                return reply_error(r, 413, "too_large", NULL, "The upload is larger than the limit of %llu bytes"
                                   " (armadad's library-upload-max).", (unsigned long long) library_config()->upload_max_bytes);
        }
        size_t off = 0;
        while (off < r->upload_len) {
                ssize_t w = write(u->fd, r->upload + off, r->upload_len - off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0) {
                        int e = errno;
                        char root[1024];
                        snprintf(root, sizeof root, "%s", u->root);
                        upload_free(r, true);
                        return reply_error(r, 507, "write_failed", NULL, "Cannot write the upload into library share '%.200s': %s.",
                                           root, strerror(e));
                }
                off += (size_t) w;
        }
        crypto_hash_sha256_update(&u->sha, (const unsigned char *) r->upload, r->upload_len);
        u->bytes += r->upload_len;
}

static void upload_end(Req *r) {
        Upload *u = r->stream_state;
        if (!u)
                return reply_error(r, 500, "internal", NULL, "The upload lost its state.");
        struct stat sb;
        LibraryImageInfo info;
        if (fsync(u->fd) < 0 || fstat(u->fd, &sb) < 0) {
                upload_free(r, true);
                return reply_error(r, 507, "write_failed", NULL, "Cannot store the upload: %s.", strerror(errno));
        }
        /* Detection reads through a read-only descriptor of the same file. */
        _cleanup_close_ int ro = openat(u->dir_fd, u->tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (ro < 0 || library_image_detect(ro, u->rel, (uint64_t) sb.st_size, &info) < 0) {
                char rel[1024];
                snprintf(rel, sizeof rel, "%s", u->rel);
                upload_free(r, true);
                return reply_error(r, 422, "not_an_image", "name", "The upload '%.200s' is neither a disk image (qcow2, raw .img/.raw,"
                                   " vmdk, vhdx), an ISO image nor a script; it was not kept.", rel);
        }
        if (renameat2(u->dir_fd, u->tmp, u->dir_fd, u->base, RENAME_NOREPLACE) < 0) {
                int e = errno;
                char rel[1024];
                snprintf(rel, sizeof rel, "%s", u->rel);
                upload_free(r, true);
                if (e == EEXIST)
                        return reply_error(r, 409, "conflict", "name", "'%.200s' appeared in the share during the upload.", rel);
                return reply_error(r, 500, "internal", NULL, "Cannot put the upload in place: %s.", strerror(e));
        }
        u->tmp[0] = 0;
        unsigned char d[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_final(&u->sha, d);
        StoreItem it = { .share_id = u->share_id, .size = u->bytes, .virtual_size = info.virtual_size,
                         .mtime_ms = (int64_t) sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000 };
        hex_encode(d, sizeof d, it.checksum);
        snprintf(it.rel_path, sizeof it.rel_path, "%s", u->rel);
        snprintf(it.kind, sizeof it.kind, "%s", info.kind);
        snprintf(it.format, sizeof it.format, "%s", info.format);
        snprintf(it.backing, sizeof it.backing, "%s", info.backing);
        upload_free(r, false);
        int64_t id;
        int e = store_item_upsert(r->api->st, &it, &id);
        if (e < 0)
                return reply_store_error(r, e, "The library item");
        audit(r, "library.upload", "library_item", id, it.rel_path, NULL, "ok");
        reply(r, 201, json_pack("{s:o}", "item", store_item_get_json(r->api->st, id) ?: json_null()));
}

static void h_share_upload(Req *r) {
        switch (r->stream_phase) {
        case STREAM_BEGIN: upload_begin(r); break;
        case STREAM_DATA: upload_data(r); break;
        case STREAM_END: upload_end(r); break;
        case STREAM_ABORT: upload_free(r, true); break;
        default: reply_error(r, 400, "invalid_argument", NULL, "Uploads must be streamed.");
        }
}

/* ------------------------------------------------------------------ */
/* templates */

/* Sizes in a body: "20G" strings or byte counts. */
static bool body_size(Req *r, const char *field, json_t *v, uint64_t *ret) {
        if (json_is_integer(v) && json_integer_value(v) > 0) {
                *ret = (uint64_t) json_integer_value(v);
                return true;
        }
        if (json_is_string(v) && size_parse(json_string_value(v), 1ULL << 30, ret) == 0 && *ret >= (1ULL << 20) &&
            *ret <= (64ULL << 40))
                return true;
        reply_error(r, 400, "invalid_argument", field, "Field '%s' must be a size such as 512M, 20G or 1T (from 1M to 64T).", field);
        return false;
}

/* Resolves a template's base image: 0 and the item, or false with a 422. */
static bool template_image(Req *r, const char *image, int64_t image_id, StoreItem *ret) {
        const char *field = image ? "image" : "image_id";
        if (image && image[0] == '/') {
                int64_t share;
                char root[1024];
                _cleanup_free_ char *rel = NULL;
                if (!share_of_path(r, field, image, &share, root, &rel))
                        return false;
                if (store_item_find(r->api->st, share, rel, ret) < 0) {
                        reply_error(r, 422, "not_found", field, "'%.200s' is not in the library index; import it or refresh its share.", image);
                        return false;
                }
        } else if (image) {
                _cleanup_json_ json_t *all = store_query_json(r->api->st, "SELECT id FROM library_item WHERE rel_path = ?", "s", image);
                size_t n = json_array_size(all);
                if (n != 1) {
                        reply_error(r, 422, n ? "ambiguous" : "not_found", field, n ? "Several library shares hold '%.200s'; give its"
                                    " absolute path." : "There is no library image '%.200s'.", image);
                        return false;
                }
                (void) store_item_get(r->api->st, jget_int(json_array_get(all, 0), "id"), ret);
        } else if (store_item_get(r->api->st, image_id, ret) < 0) {
                reply_error(r, 422, "not_found", field, "There is no library item with id %lld.", (long long) image_id);
                return false;
        }
        const char *label = image ? image : ret->rel_path;
        if (!streq(ret->kind, "disk")) {
                reply_error(r, 422, "not_a_disk", field, "'%.200s' is %s, not a disk image.", label,
                            streq(ret->kind, "iso") ? "an ISO image" : "a script");
                return false;
        }
        if (!streq(ret->format, "qcow2") && !streq(ret->format, "raw")) {
                reply_error(r, 422, "unsupported_format", field, "'%.200s' is a %s disk; templates need qcow2 or raw (convert it with"
                            " qemu-img).", label, ret->format);
                return false;
        }
        if (ret->backing[0]) {
                reply_error(r, 422, "has_backing_file", field, "'%.200s' is itself an overlay of '%.200s'; a template's base must stand"
                            " alone.", label, ret->backing);
                return false;
        }
        return true;
}

static bool tz_ok(const char *s) {
        if (!*s || strlen(s) > 64)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("/_+-", *p)))
                        return false;
        return true;
}

static void h_templates_list(Req *r) {
        json_t *all = store_template_list(r->api->st);
        if (r->subj.role == ROLE_SELF_SERVICE && all) {
                /* Only the granted ones. */
                json_t *out = json_array();
                _cleanup_json_ json_t *grants = store_grant_list(r->api->st, r->user.id);
                size_t i, j, k;
                json_t *t, *g, *gt;
                json_array_foreach(all, i, t) {
                        bool ok = false;
                        json_array_foreach(grants, j, g) json_array_foreach(json_object_get(g, "templates"), k, gt)
                                ok = ok || jget_int(gt, "id") == jget_int(t, "id");
                        if (ok)
                                json_array_append(out, t);
                }
                json_decref(all);
                all = out;
        }
        reply(r, 200, items(all));
}

static json_t *template_visible(Req *r, int64_t id) {
        json_t *t = store_template_get_json(r->api->st, id);
        if (t && r->subj.role == ROLE_SELF_SERVICE) {
                _cleanup_json_ json_t *g = store_grants_for(r->api->st, r->user.id, id);
                if (json_array_size(g) == 0) {
                        json_decref(t);
                        t = NULL;
                }
        }
        if (!t)
                reply_error(r, 404, "not_found", NULL, "There is no template with id %lld.", (long long) id);
        return t;
}

static void h_template_get(Req *r) {
        json_t *t = template_visible(r, r->id[0]);
        if (t)
                reply(r, 200, t);
}

static void h_templates_create(Req *r) {
        static const char *const fields[] = { "name", "description", "cpus", "memory_mib", "disk_size", "data_disks", "firmware",
                                              "network", "image", "image_id", "hostname_pattern", "admin_user", "ssh_keys",
                                              "timezone", "user_data", "points", "domain_type", NULL };
        const char *dtype = "auto";
        const char *name = NULL, *descr = NULL, *disk_size = NULL, *firmware = "bios", *network = NULL, *image = NULL,
                   *pattern = NULL, *admin = NULL, *tz = NULL, *user_data = NULL;
        int64_t cpus = 1, memory = 512, image_id = 0, points = 1;
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &name) || !body_string(r, "description", false, 1000, &descr) ||
            !body_int(r, "cpus", false, 1, VM_CPUS_MAX, &cpus) ||
            !body_int(r, "memory_mib", false, VM_MEMORY_MIN_MIB, VM_MEMORY_MAX_MIB, &memory) ||
            !body_string(r, "disk_size", false, 32, &disk_size) || !body_string(r, "firmware", false, 16, &firmware) ||
            !body_name(r, "network", false, &network) || !body_string(r, "image", false, 1000, &image) ||
            !body_int(r, "image_id", false, 1, INT64_MAX, &image_id) || !body_string(r, "hostname_pattern", false, 63, &pattern) ||
            !body_name(r, "admin_user", false, &admin) || !body_string(r, "timezone", false, 64, &tz) ||
            !body_string(r, "user_data", false, SIZE_MAX, &user_data) || !body_int(r, "points", false, 0, 1000000, &points) ||
            !body_string(r, "domain_type", false, 8, &dtype))
                return;
        if (!streq(dtype, "auto") && !streq(dtype, "kvm") && !streq(dtype, "qemu"))
                return reply_error(r, 400, "invalid_argument", "domain_type", "Field 'domain_type' must be auto, kvm or qemu.");
        if (!may_change_library(r, "create templates in"))
                return;
        if (!image && !image_id)
                return reply_error(r, 400, "invalid_argument", "image", "Field 'image' (a library path) or 'image_id' is required.");
        if (image && image_id)
                return reply_error(r, 400, "invalid_argument", "image_id", "Give either 'image' or 'image_id', not both.");
        if (!streq(firmware, "bios") && !streq(firmware, "uefi"))
                return reply_error(r, 400, "invalid_argument", "firmware", "Field 'firmware' must be bios or uefi.");
        if (pattern) {
                char out[64];
                if (library_hostname_expand(pattern, "x", 1, out) < 0)
                        return reply_error(r, 400, "invalid_argument", "hostname_pattern", "Field 'hostname_pattern' (\"%.63s\") must"
                                           " give a host name of letters, digits and '-' from '{name}', '{n}' and literal text.", pattern);
        }
        if (tz && !tz_ok(tz))
                return reply_error(r, 400, "invalid_argument", "timezone", "Field 'timezone' (\"%.64s\") must be a zone name such as"
                                   " Europe/Berlin or UTC.", tz);
        if (user_data) {
                size_t n = strlen(user_data);
                if (n > LIBRARY_USER_DATA_MAX)
                        return reply_error(r, 422, "too_large", "user_data", "Field 'user_data' is %zu bytes; at most %d are allowed.", n,
                                           LIBRARY_USER_DATA_MAX);
                if (n && !library_user_data_type(user_data))
                        return reply_error(r, 422, "invalid_argument", "user_data", "Field 'user_data' must start with '#cloud-config',"
                                           " '#!' (a script), '#cloud-boothook' or '#include'.");
                if (strstr(user_data, "==ARMADA-CLOUD-INIT-BOUNDARY=="))
                        return reply_error(r, 422, "invalid_argument", "user_data", "Field 'user_data' must not contain Armada's MIME boundary.");
        }
        json_t *keys = json_object_get(r->json, "ssh_keys");
        if (keys && !json_is_null(keys)) {
                if (!json_is_array(keys) || json_array_size(keys) > SSH_KEYS_MAX)
                        return reply_error(r, 400, "invalid_argument", "ssh_keys", "Field 'ssh_keys' must be a list of at most %d public keys.",
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
                                return reply_error(r, 400, "invalid_argument", "ssh_keys", "Field 'ssh_keys' item %zu is not an OpenSSH"
                                                   " public key on one line (ssh-ed25519 AAAA... comment).", i + 1);
                }
        } else
                keys = NULL;
        json_t *data = json_object_get(r->json, "data_disks");
        _cleanup_json_ json_t *data_sizes = json_array();
        if (data && !json_is_null(data)) {
                if (!json_is_array(data) || json_array_size(data) > DATA_DISKS_MAX)
                        return reply_error(r, 400, "invalid_argument", "data_disks", "Field 'data_disks' must be a list of at most %d sizes.",
                                           DATA_DISKS_MAX);
                size_t i;
                json_t *v;
                json_array_foreach(data, i, v) {
                        uint64_t b;
                        if (!body_size(r, "data_disks", v, &b))
                                return;
                        json_array_append_new(data_sizes, json_integer((json_int_t) b));
                }
        }
        int64_t existing;
        if (store_template_find(r->api->st, name, &existing) == 0)
                return reply_error(r, 409, "conflict", "name", "A template named '%s' already exists.", name);
        StoreItem base;
        if (!template_image(r, image, image_id, &base))
                return;
        uint64_t disk_bytes = 0;
        if (disk_size) {
                json_t *v = json_string(disk_size);
                bool ok = body_size(r, "disk_size", v, &disk_bytes);
                json_decref(v);
                if (!ok)
                        return;
                if (disk_bytes < base.virtual_size)
                        return reply_error(r, 422, "out_of_range", "disk_size", "Field 'disk_size' (%s) is smaller than the %llu bytes of"
                                           " image '%s'.", disk_size, (unsigned long long) base.virtual_size, base.rel_path);
        }
        _cleanup_free_ char *keys_s = keys ? json_dumps(keys, JSON_COMPACT) : NULL;
        _cleanup_free_ char *data_s = json_array_size(data_sizes) ? json_dumps(data_sizes, JSON_COMPACT) : NULL;
        StoreTemplate t = { .name = name, .description = descr, .cpus = cpus, .memory_mib = memory, .disk_bytes = (int64_t) disk_bytes,
                            .data_disks_json = data_s, .firmware = firmware, .network = network, .base_item_id = base.id,
                            .hostname_pattern = pattern, .admin_user = admin, .ssh_keys_json = keys_s, .timezone = tz,
                            .user_data = user_data && *user_data ? user_data : NULL, .points = points, .domain_type = dtype };
        int64_t id;
        int e = store_template_insert(r->api->st, &t, &id);
        if (e == -EEXIST)
                return reply_error(r, 409, "conflict", "name", "A template named '%s' already exists.", name);
        if (e < 0)
                return reply_store_error(r, e, "The template");
        audit(r, "template.create", "template", id, name, base.rel_path, "ok");
        reply(r, 201, store_template_get_json(r->api->st, id));
}

static void h_template_delete(Req *r) {
        if (!may_change_library(r, "delete templates from"))
                return;
        _cleanup_json_ json_t *t = store_template_get_json(r->api->st, r->id[0]);
        if (!t)
                return reply_error(r, 404, "not_found", NULL, "There is no template with id %lld.", (long long) r->id[0]);
        int e = store_template_delete(r->api->st, r->id[0]);
        if (e < 0)
                return reply_store_error(r, e, "The template");
        audit(r, "template.delete", "template", r->id[0], jget_str(t, "name"), NULL, "ok");
        reply(r, 204, NULL);
}

/* POST /api/v1/templates/from-vm {vm, name, share_id?, points?}: a job copies
 * the stopped VM's system disk into a share (as <name>.qcow2) and makes a
 * template of it with the VM's CPUs and memory. */
static void h_template_from_vm(Req *r) {
        static const char *const fields[] = { "vm", "name", "share_id", "points", NULL };
        const char *vm_name = NULL, *name = NULL;
        int64_t share_id = 0, points = 1;
        if (!req_body_fields(r, fields) || !body_name(r, "vm", true, &vm_name) || !body_name(r, "name", true, &name) ||
            !body_int(r, "share_id", false, 1, INT64_MAX, &share_id) || !body_int(r, "points", false, 0, 1000000, &points))
                return;
        if (!may_change_library(r, "create templates in"))
                return;
        int64_t vm_id, existing;
        StoreVm vm;
        if (store_vm_find(r->api->st, vm_name, &vm_id) < 0 || store_vm_get(r->api->st, vm_id, &vm) < 0)
                return reply_error(r, 422, "not_found", "vm", "There is no VM named '%s'.", vm_name);
        if (!streq(vm.state, "stopped"))
                return reply_error(r, 409, "conflict", "vm", "VM '%s' is %s; stop it before making a template of it.", vm.name, vm.state);
        if (store_template_find(r->api->st, name, &existing) == 0)
                return reply_error(r, 409, "conflict", "name", "A template named '%s' already exists.", name);
        if (!share_id) {
                _cleanup_json_ json_t *all = store_share_list(r->api->st);
                if (json_array_size(all) != 1)
                        return reply_error(r, 400, "invalid_argument", "share_id", json_array_size(all) ? "There are several library"
                                           " shares; say which one in 'share_id'." : "There is no library share to copy the disk into.");
                share_id = jget_int(json_array_get(all, 0), "id");
        }
        char root[1024];
        if (store_share_path(r->api->st, share_id, root, sizeof root) < 0)
                return reply_error(r, 422, "not_found", "share_id", "There is no library share with id %lld.", (long long) share_id);
        _cleanup_free_ char *rel = xasprintf("%s.qcow2", name);
        _cleanup_free_ char *dst = xasprintf("%s/%s", root, rel);
        struct stat sb;
        if (lstat(dst, &sb) == 0)
                return reply_error(r, 409, "conflict", "name", "'%s' already exists in library share '%s'.", rel, root);
        json_t *p = json_pack("{s:s, s:s, s:I, s:I}", "template_name", name, "rel_path", rel, "share_id", (json_int_t) share_id,
                              "points", (json_int_t) points);
        int64_t job;
        int e = jobs_submit(r->api->jobs, "vm.capture", "vm", vm.id, vm.name, r->user.id, p, &job);
        json_decref(p);
        if (e < 0)
                return reply_error(r, 500, "internal", NULL, "Cannot queue the job.");
        audit(r, "template.from-vm", "vm", vm.id, vm.name, name, "accepted");
        reply(r, 202, json_pack("{s:o}", "job", job_json(r, job)));
}

/* ------------------------------------------------------------------ */
/* deploy */

static bool group_of(Req *r, const char *field, const char *path, int64_t *ret_id) {
        const char *why = NULL;
        _cleanup_free_ char *norm = store_group_path_normalize(path, &why);
        if (!norm) {
                reply_error(r, 400, "invalid_argument", field, "Field '%s' (\"%.200s\") is not a valid host-group path: a segment %s.",
                            field, path, why);
                return false;
        }
        if (store_group_find(r->api->st, norm, ret_id) < 0 || !api_allowed(r, ACT_READ, OBJ_GROUP, 0, *ret_id)) {
                reply_error(r, 422, "not_found", field, "There is no host group '%.200s'.", path);
                return false;
        }
        return true;
}

static LibraryAmounts grant_limit(json_t *g) {
        json_t *p = json_object_get(g, "points"), *v = json_object_get(g, "max_vms"), *c = json_object_get(g, "max_cpus"),
               *m = json_object_get(g, "max_memory_mib");
        return (LibraryAmounts) { json_is_integer(p) ? json_integer_value(p) : -1, json_is_integer(v) ? json_integer_value(v) : -1,
                                  json_is_integer(c) ? json_integer_value(c) : -1, json_is_integer(m) ? json_integer_value(m) : -1 };
}
static LibraryAmounts grant_used(json_t *g) {
        return (LibraryAmounts) { jget_int(g, "used_points"), jget_int(g, "used_vms"), jget_int(g, "used_cpus"), jget_int(g, "used_memory_mib") };
}

/* Inside the deploy transaction: picks the host of one VM. */
static int deploy_place(Req *r, const StoreHost *fixed, int64_t group_id, json_t *tpl, const char *name, bool full_copy,
                        StoreHost *ret, char *why, size_t why_size) {
        uint64_t vsize = (uint64_t) jget_int(tpl, "base_virtual_size"), want = (uint64_t) jget_int(tpl, "disk_bytes");
        PlacementDemand d = { .cpus = (unsigned) jget_int(tpl, "cpus"), .memory_mib = (uint64_t) jget_int(tpl, "memory_mib"),
                              .disk_bytes = full_copy ? (want > vsize ? want : vsize) : 0, .vm_name = name };
        if (fixed) {
                /* A named host must have the memory, as for POST /vms: the
                 * VMs this deploy already recorded count. */
                PlacementRating *rt = NULL;
                int n = placement_rate(r->api->st, fixed->group_id, &d, &rt);
                for (int i = 0; i < n; i++)
                        if (rt[i].host_id == fixed->id && (rt[i].why & PLACE_WHY_MEMORY)) {
                                snprintf(why, why_size, "host '%s' cannot take VM '%s': %s", fixed->name, name, rt[i].reason);
                                free(rt);
                                return -ENOSPC;
                        }
                free(rt);
                if (n < 0)
                        return n;
                *ret = *fixed;
                return 0;
        }
        /* A delegated administrator's VMs go to the groups it manages,
         * and its errors name no other host. */
        if (r->subj.role == ROLE_DELEGATED_ADMIN) {
                d.scope = r->subj.scopes;
                d.n_scope = r->subj.n_scopes;
                if (d.n_scope == 0)
                        return -EPERM;
        }
        int64_t host_id;
        int e = placement_choose(r->api->st, group_id, &d, &host_id, why, why_size);
        /* A self-service user sees no hosts: the reasons stay in the log. */
        if (e == -ENOSPC && r->subj.role == ROLE_SELF_SERVICE) {
                log_info("cannot place VM '%s' of user '%s': %s", name, r->user.name, why);
                snprintf(why, why_size, "no host of the grant's host group has %u vCPUs and %llu MiB of memory left for it", d.cpus,
                         (unsigned long long) d.memory_mib);
        }
        if (e < 0)
                return e;
        return store_host_get(r->api->st, host_id, ret);
}

static void h_template_deploy(Req *r) {
        static const char *const fields[] = { "name", "count", "host", "group", "full_copy", "start", NULL };
        const char *name = NULL, *host = NULL, *group = NULL;
        int64_t count = 1;
        bool full_copy = false, start = true;
        if (!req_body_fields(r, fields) || !body_name(r, "name", true, &name) ||
            !body_int(r, "count", false, 1, DEPLOY_COUNT_MAX, &count) || !body_string(r, "host", false, 64, &host) ||
            !body_string(r, "group", false, 1000, &group) || !body_bool(r, "full_copy", &full_copy) || !body_bool(r, "start", &start))
                return;
        if (host && group)
                return reply_error(r, 400, "invalid_argument", "group", "Give either 'host' or 'group', not both.");
        _cleanup_json_ json_t *tpl = template_visible(r, r->id[0]);
        if (!tpl)
                return;
        if (r->subj.role == ROLE_READ_ONLY)
                return deny(r, "deploy from", "template", r->id[0], jget_str(tpl, "name"));
        if (json_is_true(json_object_get(tpl, "base_missing")))
                return reply_error(r, 409, "conflict", NULL, "The base image '%s' of template '%s' is missing from its share.",
                                   jget_str(tpl, "base_path"), jget_str(tpl, "name"));
        bool self = r->subj.role == ROLE_SELF_SERVICE;
        if (self && host)
                return reply_error(r, 403, "forbidden", "host", "Self-service VMs are placed automatically in the host group of the grant;"
                                   " 'host' is not allowed.");
        /* Names and host names of every VM, checked before anything is made. */
        _cleanup_free_ char (*names)[64] = xcalloc((size_t) count, 64);
        _cleanup_free_ char (*hostnames)[64] = xcalloc((size_t) count, 64);
        /* A count asked for numbers the VMs, even a count of 1; without one
         * the VM is NAME itself. */
        bool numbered = json_is_integer(json_object_get(r->json, "count"));
        for (int64_t i = 0; i < count; i++) {
                if (library_deploy_vm_name(name, numbered, i + 1, names[i]) < 0) {
                        return reply_error(r, 400, "invalid_argument", "name", "Field 'name' is too long for %lld numbered VMs.",
                                           (long long) count);
                }
                int64_t existing;
                if (store_vm_find(r->api->st, names[i], &existing) == 0)
                        return reply_vm_name_taken(r, "name", names[i]);
                const char *pattern = json_string_value(json_object_get(tpl, "hostname_pattern"));
                if (library_hostname_expand(pattern, names[i], (int) i + 1, hostnames[i]) < 0) {
                        return reply_error(r, 422, "invalid_argument", "name", "VM '%s' gives no valid host name through template '%s''s"
                                           " pattern '%s'.", names[i], jget_str(tpl, "name"), pattern ? pattern : "{name}");
                }
        }
        int64_t group_id = STORE_ROOT_GROUP_ID;
        if (group && !group_of(r, "group", group, &group_id)) {
                return;
        }
        StoreHost fixed, *fixedp = NULL;
        if (host) {
                int64_t hid;
                if (store_host_find(r->api->st, host, &hid) < 0 || store_host_get(r->api->st, hid, &fixed) < 0 ||
                    !api_allowed(r, ACT_READ, OBJ_HOST, 0, fixed.group_id)) {
                        return reply_error(r, 422, "not_found", "host", "There is no host named '%.64s'.", host);
                }
                if (streq(fixed.state, "maintenance") || streq(fixed.state, "unreachable") ||
                    streq(fixed.state, "not-responding")) {
                        return reply_error(r, 409, "conflict", "host", "Host '%s' is %s; new VMs cannot be placed on it now.", fixed.name,
                                           fixed.state);
                }
                fixedp = &fixed;
        }
        Store *st = r->api->st;
        int64_t points = jget_int(tpl, "points"), cpus = jget_int(tpl, "cpus"), mem = jget_int(tpl, "memory_mib");
        int64_t ids[DEPLOY_COUNT_MAX];
        int64_t grant_id = 0;
        char why[2048] = "";
        int e = store_begin(st);
        if (e < 0) {
                return reply_error(r, 500, "internal", NULL, "Cannot start a database transaction.");
        }
        /* Quota and inserts in one transaction: two deploys cannot both
         * take the last points. */
        if (self) {
                _cleanup_json_ json_t *grants = store_grants_for(st, r->user.id, r->id[0]);
                LibraryAmounts add = { points * count, count, cpus * count, mem * count };
                char first[512] = "";
                size_t i;
                json_t *g;
                json_array_foreach(grants, i, g) {
                        char reason[256];
                        if (!library_actions_allow(jget_str(g, "actions"), "deploy")) {
                                if (!first[0])
                                        snprintf(first, sizeof first, "grant %lld does not allow deploying", (long long) jget_int(g, "id"));
                                continue;
                        }
                        if (group && jget_int(g, "group_id") != group_id) {
                                if (!first[0])
                                        snprintf(first, sizeof first, "grant %lld places VMs in host group '%s', not '%s'",
                                                 (long long) jget_int(g, "id"), jget_str(g, "group_path"), group);
                                continue;
                        }
                        LibraryAmounts lim = grant_limit(g), used = grant_used(g);
                        if (library_quota_check(&lim, &used, &add, reason, sizeof reason) < 0) {
                                if (!first[0])
                                        snprintf(first, sizeof first, "%s", reason);
                                continue;
                        }
                        grant_id = jget_int(g, "id");
                        group_id = jget_int(g, "group_id");
                        break;
                }
                if (!grant_id) {
                        store_rollback(st);
                        audit(r, "template.deploy", "template", r->id[0], jget_str(tpl, "name"), first, "denied");
                        if (strncmp(first, "quota:", 6) == 0)
                                return reply_error(r, 422, "quota_exceeded", "count", "%s (template '%s' costs %lld points per VM).",
                                                   first, jget_str(tpl, "name"), (long long) points);
                        return reply_error(r, 403, "forbidden", NULL, "User '%s' may not deploy from template '%s': %s.", r->user.name,
                                           jget_str(tpl, "name"), first);
                }
        }
        int made = 0;
        int status = 0;
        const char *taken = NULL;   /* a name another deploy took meanwhile */
        for (int64_t i = 0; i < count; i++) {
                StoreHost h;
                e = deploy_place(r, fixedp, group_id, tpl, names[i], full_copy, &h, why, sizeof why);
                if (e == -ENOSPC) {
                        status = 409;
                        break;
                }
                if (e == -EPERM) {
                        status = 403;
                        snprintf(why, sizeof why, "User '%s' (%s) manages no host group to place VMs in.", r->user.name, r->user.role);
                        break;
                }
                if (e < 0) {
                        status = 500;
                        snprintf(why, sizeof why, "placement failed (error %d)", e);
                        break;
                }
                if (!self && !api_allowed(r, ACT_CREATE, OBJ_VM, r->user.id, h.group_id)) {
                        status = 403;
                        if (api_allowed(r, ACT_READ, OBJ_HOST, 0, h.group_id))
                                snprintf(why, sizeof why, "User '%s' (%s) may not create VMs on host '%s'.", r->user.name, r->user.role, h.name);
                        else /* placement looked beyond the caller's scope: name nothing there */
                                snprintf(why, sizeof why, "User '%s' (%s) may not create VMs where placement would put VM '%s'; give a"
                                         " host group you manage in 'group'.", r->user.name, r->user.role, names[i]);
                        break;
                }
                StoreVm vm = { .host_id = h.id, .owner_id = r->user.id, .cpus = (unsigned) cpus, .memory_mib = (uint64_t) mem };
                uuid_generate(vm.uuid);
                snprintf(vm.name, sizeof vm.name, "%s", names[i]);
                snprintf(vm.state, sizeof vm.state, "creating");
                snprintf(vm.origin, sizeof vm.origin, "template");
                snprintf(vm.description, sizeof vm.description, "from template %s", jget_str(tpl, "name"));
                e = store_vm_insert(st, &vm, &ids[i]);
                if (e == 0)
                        e = store_vm_template_set(st, ids[i], r->id[0], grant_id, points);
                if (e < 0) {
                        status = e == -EEXIST ? 409 : 500;
                        taken = e == -EEXIST ? names[i] : NULL;
                        snprintf(why, sizeof why, "Cannot record VM '%s'.", names[i]);
                        break;
                }
                made++;
        }
        if (status) {
                store_rollback(st);
                if (taken)
                        return reply_vm_name_taken(r, "name", taken);
                if (status == 409 && fixedp)
                        return reply_error(r, 422, "no_capacity", "host", "Cannot deploy VM %d of %lld from template '%s': %.1500s.", made + 1,
                                           (long long) count, jget_str(tpl, "name"), why);
                if (status == 409)
                        return reply_error(r, 409, "no_capacity", NULL, "Cannot place VM %d of %lld from template '%s': %.1500s.", made + 1,
                                           (long long) count, jget_str(tpl, "name"), why);
                if (status == 403)
                        return reply_error(r, 403, "forbidden", NULL, "%s", why);
                return reply_error(r, status, status == 409 ? "conflict" : "internal", NULL, "%s", why);
        }
        if (store_commit(st) < 0) {
                return reply_error(r, 500, "internal", NULL, "Cannot commit the new VMs.");
        }
        json_t *vms = json_array(), *jobs = json_array();
        for (int64_t i = 0; i < count; i++) {
                json_t *p = json_pack("{s:I, s:s, s:b, s:b}", "template_id", (json_int_t) r->id[0], "hostname", hostnames[i],
                                      "full_copy", full_copy, "start", start);
                int64_t job;
                e = jobs_submit(r->api->jobs, "vm.deploy", "vm", ids[i], names[i], r->user.id, p, &job);
                json_decref(p);
                if (e < 0) {
                        (void) store_vm_delete(st, ids[i]);
                        continue;
                }
                json_array_append_new(vms, store_vm_get_json(st, ids[i]) ?: json_null());
                json_array_append_new(jobs, job_json(r, job));
                _cleanup_free_ char *detail = xasprintf("template %s%s", jget_str(tpl, "name"), full_copy ? ", full copy" : "");
                audit(r, "vm.deploy", "vm", ids[i], names[i], detail, "accepted");
        }
        reply(r, 202, json_pack("{s:o, s:o, s:I}", "vms", vms, "jobs", jobs, "grant_id", (json_int_t) grant_id));
}

/* ------------------------------------------------------------------ */
/* grants and self-service */

static json_t *quota_json(json_t *g) {
        LibraryAmounts l = grant_limit(g), u = grant_used(g);
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

static void h_grants_list(Req *r) {
        if (!api_allowed(r, ACT_READ, OBJ_SYSTEM, 0, 0))
                return deny(r, "list", "grants", 0, NULL);
        json_t *all = store_grant_list(r->api->st, 0);
        size_t i;
        json_t *g;
        json_array_foreach(all, i, g) json_object_set_new(g, "quota", quota_json(g));
        reply(r, 200, items(all));
}

static void h_grant_get(Req *r) {
        if (!api_allowed(r, ACT_READ, OBJ_SYSTEM, 0, 0))
                return deny(r, "read", "grants", 0, NULL);
        json_t *g = store_grant_get_json(r->api->st, r->id[0]);
        if (!g)
                return reply_error(r, 404, "not_found", NULL, "There is no grant with id %lld.", (long long) r->id[0]);
        reply(r, 200, grant_out(g));
}

static void h_grants_create(Req *r) {
        static const char *const fields[] = { "user", "templates", "group", "points", "max_vms", "max_cpus", "max_memory_mib", "actions",
                                              NULL };
        const char *user = NULL, *group = NULL, *actions = LIBRARY_GRANT_ACTIONS;
        int64_t points = -1, max_vms = -1, max_cpus = -1, max_mem = -1;
        if (!req_body_fields(r, fields) || !body_name(r, "user", true, &user) || !body_string(r, "group", true, 1000, &group) ||
            !body_int(r, "points", false, 0, 100000000, &points) || !body_int(r, "max_vms", false, 0, 100000, &max_vms) ||
            !body_int(r, "max_cpus", false, 0, 10000000, &max_cpus) || !body_int(r, "max_memory_mib", false, 0, INT32_MAX, &max_mem) ||
            !body_string(r, "actions", false, 200, &actions))
                return;
        if (!api_allowed(r, ACT_CREATE, OBJ_SYSTEM, 0, 0))
                return deny(r, "create", "grants", 0, NULL);
        const char *bad = library_actions_invalid(actions);
        if (bad)
                return reply_error(r, 400, "invalid_argument", "actions", "Field 'actions' (\"%.200s\") %s.", actions, bad);
        StoreUser u;
        if (store_user_find(r->api->st, user, &u) < 0)
                return reply_error(r, 422, "not_found", "user", "There is no user named '%s'.", user);
        if (!streq(u.role, "self-service"))
                return reply_error(r, 422, "invalid_argument", "user", "User '%s' is %s; grants are for self-service users.", user, u.role);
        int64_t gid;
        if (!group_of(r, "group", group, &gid))
                return;
        json_t *tl = json_object_get(r->json, "templates");
        if (!json_is_array(tl) || json_array_size(tl) == 0 || json_array_size(tl) > 100)
                return reply_error(r, 400, "invalid_argument", "templates", "Field 'templates' must be a list of 1 to 100 template names.");
        int64_t tids[100];
        size_t n = 0, i;
        json_t *t;
        json_array_foreach(tl, i, t) {
                const char *tn = json_string_value(t);
                if (!tn || store_template_find(r->api->st, tn, &tids[n]) < 0)
                        return reply_error(r, 422, "not_found", "templates", "There is no template named '%.64s'.", tn ? tn : "(not a string)");
                n++;
        }
        StoreGrant g = { .user_id = u.id, .group_id = gid, .points = points, .max_vms = max_vms, .max_cpus = max_cpus,
                         .max_memory_mib = max_mem, .actions = actions };
        int64_t id;
        int e = store_grant_insert(r->api->st, &g, tids, n, &id);
        if (e < 0)
                return reply_store_error(r, e, "The grant");
        _cleanup_free_ char *detail = xasprintf("group %s", group);
        audit(r, "grant.create", "grant", id, user, detail, "ok");
        reply(r, 201, grant_out(store_grant_get_json(r->api->st, id)));
}

static void h_grant_delete(Req *r) {
        if (!api_allowed(r, ACT_DELETE, OBJ_SYSTEM, 0, 0))
                return deny(r, "delete", "grants", 0, NULL);
        int e = store_grant_delete(r->api->st, r->id[0]);
        if (e == -ENOENT)
                return reply_error(r, 404, "not_found", NULL, "There is no grant with id %lld.", (long long) r->id[0]);
        if (e < 0)
                return reply_store_error(r, e, "The grant");
        audit(r, "grant.delete", "grant", r->id[0], NULL, NULL, "ok");
        reply(r, 204, NULL);
}

static void h_self_service(Req *r) {
        json_t *grants = store_grant_list(r->api->st, r->user.id);
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
        json_t *vms = store_vm_list(r->api->st, NULL, 0, r->user.id);
        reply(r, 200, json_pack("{s:s, s:s, s:o, s:o}", "user", r->user.name, "role", r->user.role, "grants", grants ?: json_array(),
                                "vms", vms ?: json_array()));
}

const Route api_routes_library[] = {
        { "GET", "/api/v1/library/shares", h_shares_list, false },
        { "POST", "/api/v1/library/shares", h_shares_create, false },
        { "DELETE", "/api/v1/library/shares/#", h_share_delete, false },
        { "POST", "/api/v1/library/shares/#/actions/refresh", h_share_refresh, false },
        { "POST", "/api/v1/library/shares/#/upload", h_share_upload, false, true },
        { "GET", "/api/v1/library/items", h_items_list, false },
        { "POST", "/api/v1/library/items", h_items_import, false },
        { "GET", "/api/v1/library/items/#", h_item_get, false },
        { "GET", "/api/v1/templates", h_templates_list, false },
        { "POST", "/api/v1/templates", h_templates_create, false },
        { "POST", "/api/v1/templates/from-vm", h_template_from_vm, false },
        { "GET", "/api/v1/templates/#", h_template_get, false },
        { "DELETE", "/api/v1/templates/#", h_template_delete, false },
        { "POST", "/api/v1/templates/#/deploy", h_template_deploy, false },
        { "GET", "/api/v1/grants", h_grants_list, false },
        { "POST", "/api/v1/grants", h_grants_create, false },
        { "GET", "/api/v1/grants/#", h_grant_get, false },
        { "DELETE", "/api/v1/grants/#", h_grant_delete, false },
        { "GET", "/api/v1/self-service", h_self_service, false },
        { NULL, NULL, NULL, false },
};
