/* The backups' REST resources: back up a VM now, list recovery points,
 * restore one, list the files of one and download a file. Each handler parses the request, calls one operation of the
 * protect module (protect.h, Backups) and maps its result. */
#include "api-priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "protect/protect.h"

static void h_vm_backup(Req *r) {
        static const char *const fields[] = { "datastore", NULL };
        const char *ds = NULL;
        if (!req_body_fields(r, fields) || !body_name(r, "datastore", false, &ds))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_backup_now(r->api->st, r->api->jobs, &c, r->id[0], ds, &out, &err);
        reply_result(r, e, &err, 202, out);
}

static void h_backups_list(Req *r) {
        ProtectBackupListSpec spec = { .vm = req_query(r, "vm"), .datastore = req_query(r, "datastore") };
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_backup_list(r->api->st, &c, &spec, &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_backups_restore(Req *r) {
        static const char *const fields[] = { "vm", "point", "datastore", "as", "in_place", "host", "disk", NULL };
        ProtectRestoreSpec spec = {0};
        if (!req_body_fields(r, fields) || !body_string(r, "vm", true, 200, &spec.vm) ||
            !body_string(r, "point", true, 32, &spec.point) || !body_name(r, "datastore", false, &spec.datastore) ||
            !body_name(r, "as", false, &spec.as_name) || !body_bool(r, "in_place", &spec.in_place) ||
            !body_name(r, "host", false, &spec.host) || !body_name(r, "disk", false, &spec.disk))
                return;
        if (!spec.as_name == !spec.in_place)
                return reply_error(r, 400, "invalid_argument", "as", "Give either 'as' (the name of a new VM) or 'in_place': true.");
        if (spec.in_place && spec.host)
                return reply_error(r, 400, "invalid_argument", "host", "A restore in place stays on the VM's host; 'host' is for a "
                                   "new VM.");
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_backup_restore(r->api->st, r->api->jobs, &c, &spec, &out, &err);
        reply_result(r, e, &err, 202, out);
}

/* A query parameter of at most max characters that holds no NUL (MHD
 * decodes "%00" into the value, which a C string would cut silently):
 * false and a 400 naming it otherwise. *ret NULL when absent. */
static bool query_text(Req *r, const char *key, size_t max, const char **ret) {
        const char *v = NULL;
        size_t len = 0;
        if (MHD_lookup_connection_value_n(r->mc, MHD_GET_ARGUMENT_KIND, key, strlen(key), &v, &len) != MHD_YES || !v) {
                *ret = NULL;
                return true;
        }
        if (strlen(v) != len || len > max) {
                reply_error(r, 400, "invalid_argument", key, "Query parameter '%s' must be at most %zu characters, without NUL.", key, max);
                return false;
        }
        *ret = v;
        return true;
}

/* The point, disk and path of a file-level restore request. */
static bool files_spec(Req *r, ProtectFilesSpec *spec) {
        *spec = (ProtectFilesSpec) {0};
        if (!query_text(r, "vm", 200, &spec->vm) || !query_text(r, "point", 32, &spec->point) ||
            !query_text(r, "datastore", 128, &spec->datastore) || !query_text(r, "disk", 32, &spec->disk) ||
            !query_text(r, "path", PROTECT_FILES_PATH_MAX, &spec->path))
                return false;
        if (!spec->vm || !spec->point) {
                reply_error(r, 400, "invalid_argument", spec->vm ? "point" : "vm", "Query parameters 'vm' and 'point' name the "
                            "recovery point.");
                return false;
        }
        return true;
}

static void h_backup_files(Req *r) {
        ProtectFilesSpec spec;
        if (!files_spec(r, &spec))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_backup_files(r->api->st, &c, &spec, &out, &err);
        reply_result(r, e, &err, 200, out);
}

static ssize_t download_read(void *cls, uint64_t pos, char *buf, size_t max) {
        (void) pos;
        ssize_t n = protect_file_stream_read(cls, buf, max);
        return n > 0 ? n : n == 0 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void download_free(void *cls) {
        protect_file_stream_close(cls);
}

static void h_backup_download(Req *r) {
        ProtectFilesSpec spec;
        if (!files_spec(r, &spec))
                return;
        if (!spec.path)
                return reply_error(r, 400, "invalid_argument", "path", "Query parameter 'path' names the file to download.");
        OpCaller c = api_caller(r);
        OpError err = {0};
        ProtectFileStream *f = NULL;
        int e = protect_backup_download(r->api->st, &c, &spec, &f, &err);
        if (e < 0)
                return reply_op_error(r, &err);
        struct MHD_Response *resp = MHD_create_response_from_callback(protect_file_stream_size(f), 64 * 1024, download_read, f,
                                                                      download_free);
        if (!resp) {
                protect_file_stream_close(f);
                return reply_error(r, 500, "internal", NULL, "The file could not be sent.");
        }
        /* The name as an attachment, reduced to characters that need no
         * quoting (the guest's file names are anyone's). */
        char name[200];
        snprintf(name, sizeof name, "%s", protect_file_stream_name(f));
        for (char *p = name; *p; p++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", *p))
                        *p = '_';
        _cleanup_free_ char *disp = xasprintf("attachment; filename=\"%s\"", name[0] ? name : "file");
        reply_header(r, "Content-Disposition", disp);
        r->content_type = "application/octet-stream";
        r->status = 200;
        r->mhd_resp = resp;
}

/* "30s", "15m", "1h", "1d" or a whole number of seconds: 0 and *ret, or -EINVAL. */
static int parse_every(const char *s, int64_t *ret) {
        char *end = NULL;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (errno || end == s || n <= 0)
                return -EINVAL;
        int64_t mul = streq(end, "") || streq(end, "s") ? 1 : streq(end, "m") ? 60 : streq(end, "h") ? 3600 : streq(end, "d") ? 86400 : 0;
        if (!mul || n > INT64_C(366) * 86400 / mul)
                return -EINVAL;
        *ret = n * mul;
        return 0;
}

static void h_policies_list(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_policy_list(r->api->st, &c, &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_policies_set(Req *r) {
        static const char *const fields[] = { "vm", "group", "every", "datastore", "keep_last", "keep_hourly", "keep_daily",
                                              "keep_weekly", "keep_monthly", "keep_yearly", NULL };
        ProtectPolicySpec spec = {0};
        const char *every = NULL;
        if (!req_body_fields(r, fields) || !body_name(r, "vm", false, &spec.vm) || !body_string(r, "group", false, 1024, &spec.group) ||
            !body_string(r, "every", true, 32, &every) || !body_name(r, "datastore", false, &spec.datastore))
                return;
        for (int k = 0; k < 6; k++)
                if (!body_int(r, fields[4 + k], false, 0, 100000, &spec.keep[k]))
                        return;
        if (!spec.vm == !spec.group)
                return reply_error(r, 400, "invalid_argument", "vm", "Give either 'vm' (a VM's name) or 'group' (a host-group path).");
        if (parse_every(every, &spec.every_s) < 0 || spec.every_s < 10)
                return reply_error(r, 400, "invalid_argument", "every", "Field 'every' (\"%.40s\") must be an interval of at least "
                                   "10 seconds, such as \"30s\", \"15m\", \"1h\" or \"1d\".", every);
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = protect_policy_set(r->api->st, &c, &spec, &out, &err);
        reply_result(r, e, &err, 200, out);
}

static void h_policy_delete(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        int e = protect_policy_delete(r->api->st, &c, r->id[0], &err);
        reply_result(r, e, &err, 204, NULL);
}

const Route api_routes_backup[] = {
        { "GET", "/api/v1/backup-policies", h_policies_list, false },
        { "POST", "/api/v1/backup-policies", h_policies_set, false },
        { "DELETE", "/api/v1/backup-policies/#", h_policy_delete, false },
        { "POST", "/api/v1/vms/#/backups", h_vm_backup, false },
        { "GET", "/api/v1/backups", h_backups_list, false },
        { "POST", "/api/v1/backups/restore", h_backups_restore, false },
        { "GET", "/api/v1/backups/files", h_backup_files, false },
        { "GET", "/api/v1/backups/download", h_backup_download, false },
        { NULL, NULL, NULL, false },
};
