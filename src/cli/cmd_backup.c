/* armada backup commands: the `backup` dispatcher. Datastores (add, list,
 * remove) and their maintenance (verify, gc, prune, archive, import); the
 * backups themselves (now, restore, policies) join here. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "util/cleanup.h"

/* The --keep-* options of prune and policy set (add_keeps() reads them). */
#define KEEP_OPTS                                                                                         \
        { "keep-last", 0, true, "N", "keep the N newest points" },                                       \
        { "keep-hourly", 0, true, "N", "keep the newest point of each of the last N hours with points" }, \
        { "keep-daily", 0, true, "N", "... of the last N days" },                                        \
        { "keep-weekly", 0, true, "N", "... of the last N ISO weeks" },                                  \
        { "keep-monthly", 0, true, "N", "... of the last N months" },                                    \
        { "keep-yearly", 0, true, "N", "... of the last N years" }

const OptSpec BACKUP_DATASTORE_OPTS[] = {
        { "path", 0, true, "DIR", "the datastore's directory on the server (add)" },
        { "chunk-size", 0, true, "SIZE", "256K, 512K, 1M, 2M or 4M: the chunks a new datastore cuts disks into (add;"
          " default 256K; an adopted datastore keeps its own)" },
        { "force", 0, false, NULL, "forget it even though it holds points (remove; its files stay)" },
        { NULL },
};
const OptSpec BACKUP_VERIFY_OPTS[] = {
        { "path", 0, true, "DIR", "verify a datastore directory (an archive) that is not registered" },
        { NULL },
};
const OptSpec BACKUP_PRUNE_OPTS[] = {
        { "vm", 0, true, "VM", "only this VM's points (a name, or the uuid of a deleted VM)" },
        KEEP_OPTS,
        { "dry-run", 0, false, NULL, "only list what would be kept and removed" },
        { NULL },
};
const OptSpec BACKUP_ARCHIVE_OPTS[] = {
        { "datastore", 0, true, "NAME", "the datastore to copy from (required)" },
        { "vm", 0, true, "VM", "every point of this VM" },
        { "point", 0, true, "VM/POINT", "one point" },
        { "to", 0, true, "DIR", "the archive directory on the server: empty, missing or an archive (required)" },
        { NULL },
};
const OptSpec BACKUP_IMPORT_OPTS[] = {
        { "datastore", 0, true, "NAME", "the datastore to copy into (required)" },
        { NULL },
};

static int datastore_id(Ctx *c, const char *name, int64_t *ret) {
        return resolve(c, "datastores", "name", name, "datastore", ret, NULL);
}

/* The path of datastore name's action ("gc", "prune"...) into *ret_path
 * (malloc'd); the resolve error otherwise. */
static int datastore_action(Ctx *c, const char *name, const char *action, char **ret_path) {
        int64_t id;
        int r = datastore_id(c, name, &id);
        if (r)
                return r;
        *ret_path = xasprintf("/datastores/%" PRId64 "/actions/%s", id, action);
        return 0;
}

/* GETs path and prints the reply: as JSON, or as print_table lays it out. */
static int show_reply(Ctx *c, const char *path, void (*print_table)(json_t *reply)) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", path, NULL, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON)
                print_json(reply);
        else
                print_table(reply);
        return 0;
}

/* POSTs body (may be NULL) to path and reports the job the server started. */
static int post_job(Ctx *c, const char *path, json_t *body) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", path, body, &reply);
        return r ? r : job_started(c, reply);
}

static const char *const KEEPS[] = { "keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly" };

/* Sets each --keep-* option given into body as keep_*; a message and
 * EXIT_ERROR when one is not a whole number. */
static int add_keeps(json_t *body, const Args *a) {
        for (size_t i = 0; i < ELEMENTSOF(KEEPS); i++) {
                const char *v = args_get(a, KEEPS[i]);
                int64_t n;
                if (!v)
                        continue;
                if (parse_i64(v, &n) < 0 || n < 0)
                        return fail("--%s must be a whole number, not '%s'", KEEPS[i], v);
                _cleanup_free_ char *key = xstrdup(KEEPS[i]);
                key[4] = '_';
                json_object_set_new(body, key, json_integer(n));
        }
        return 0;
}

/* ---- datastores ---- */

static int datastore_add(Ctx *c, const Args *a) {
        if (a->n_pos != 2 || !args_get(a, "path"))
                return fail("usage: armada backup datastore add NAME --path DIR [--chunk-size 256K|512K|1M|2M|4M]");
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s}", "name", a->pos[1], "path", args_get(a, "path"));
        if (!body)
                return fail("the name and the path must be valid UTF-8");
        const char *cs = args_get(a, "chunk-size");
        if (cs) {
                /* A plain number is bytes; the server says which sizes it takes. */
                uint64_t bytes = 0;
                if (size_parse(cs, 1, &bytes) < 0 || bytes > INT64_MAX)
                        return fail("--chunk-size '%s' is not a size (256K, 512K, 1M, 2M or 4M)", cs);
                json_object_set_new(body, "chunk_size", json_integer((json_int_t) bytes));
        }
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", "/datastores", body, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_TABLE)
                outf("datastore '%s' %s at %s", a->pos[1],
                     json_is_true(json_object_get(reply, "adopted")) ? "adopted with its points" : "created",
                     jstr(json_object_get(reply, "datastore"), "path"));
        if (json_is_object(json_object_get(reply, "job")) && (c->wait || c->output == OUTPUT_JSON))
                return job_started(c, reply);
        return 0;
}

static void add_bytes(Table *t, json_t *o, const char *key) {
        char b[32];
        if (!json_is_integer(json_object_get(o, key))) {
                table_add(t, NULL);
                return;
        }
        fmt_bytes((uint64_t) jint(o, key, 0), b);
        table_add(t, b);
}

static void print_datastores(json_t *reply) {
        _cleanup_table_ Table *t = table_new("NAME", "PATH", ">CHUNK", ">POINTS", ">CHUNKS", ">STORED", ">LOGICAL", ">DEDUP", "COUNTED",
                                             NULL);
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(reply, "items"), i, d) {
                json_t *u = json_object_get(d, "usage");
                char when[64];
                table_add(t, jstr(d, "name"));
                table_add(t, jstr(d, "path"));
                add_bytes(t, d, "chunk_size");
                if (json_is_object(u)) {
                        table_addf(t, "%" PRId64, jint(u, "points", 0));
                        table_addf(t, "%" PRId64, jint(u, "chunks", 0));
                } else {
                        table_add(t, NULL);
                        table_add(t, NULL);
                }
                add_bytes(t, u, "stored_bytes");
                add_bytes(t, u, "logical_bytes");
                if (json_is_number(json_object_get(u, "dedup_factor")))
                        table_addf(t, "%.1fx", json_number_value(json_object_get(u, "dedup_factor")));
                else
                        table_add(t, NULL);
                fmt_time_of(d, "usage_at", when);
                table_add(t, when);
        }
        table_print(t, stdout);
}

static int datastore_list(Ctx *c) {
        return show_reply(c, "/datastores", print_datastores);
}

static int datastore_remove(Ctx *c, const Args *a) {
        if (a->n_pos != 2)
                return fail("usage: armada backup datastore remove NAME [--force]");
        int64_t id;
        int r = datastore_id(c, a->pos[1], &id);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/datastores/%" PRId64 "%s", id, args_has(a, "force") ? "?force=true" : "");
        r = api_call(c, "DELETE", path, NULL, NULL);
        if (r == 0 && c->output == OUTPUT_TABLE)
                outf("datastore '%s' forgotten (its files were not touched)", a->pos[1]);
        return r;
}

int cmd_backup_datastore(Ctx *c, const Command *cmd, const Args *a) {
        const char *what = a->pos[0];
        if (streq(what, "add"))
                return datastore_add(c, a);
        if (streq(what, "list")) {
                if (a->n_pos != 1)
                        return fail("usage: armada backup datastore list");
                return datastore_list(c);
        }
        if (streq(what, "remove"))
                return datastore_remove(c, a);
        return fail("unknown datastore command '%s'; use add, list or remove", what);
}

/* ---- maintenance ---- */

/* Follows the job of reply to its end and returns it (NULL when it did not
 * succeed; the status in *ret_r). */
static json_t *follow_job(Ctx *c, json_t *reply, int *ret_r) {
        int64_t id = jint(json_object_get(reply, "job"), "id", 0);
        if (id <= 0) {
                *ret_r = fail("the server did not say which job it started");
                return NULL;
        }
        OutputFormat out = c->output;
        c->output = OUTPUT_TABLE; /* the job's JSON is printed once, below */
        int r = job_follow(c, id);
        c->output = out;
        _cleanup_free_ char *path = xasprintf("/jobs/%" PRId64, id);
        json_t *job = NULL;
        if (r == 0)
                r = api_call(c, "GET", path, NULL, &job);
        *ret_r = r;
        if (r == 0 && c->output == OUTPUT_JSON)
                print_json(job);
        return r == 0 ? job : NULL;
}

int cmd_backup_verify(Ctx *c, const Command *cmd, const Args *a) {
        const char *dir = args_get(a, "path");
        if ((a->n_pos == 1) == !!dir)
                return fail("usage: armada backup verify DATASTORE | --path DIR");
        _cleanup_json_ json_t *reply = NULL;
        int r;
        if (dir) {
                _cleanup_json_ json_t *body = json_pack("{s:s}", "path", dir);
                r = api_call(c, "POST", "/datastores/verify-path", body, &reply);
        } else {
                _cleanup_free_ char *path = NULL;
                r = datastore_action(c, a->pos[0], "verify", &path);
                if (r)
                        return r;
                r = api_call(c, "POST", path, NULL, &reply);
        }
        if (r)
                return r;
        _cleanup_json_ json_t *job = follow_job(c, reply, &r);
        if (!job)
                return r;
        json_t *res = json_object_get(job, "result");
        json_t *bad = json_object_get(res, "bad_points");
        if (c->output == OUTPUT_TABLE) {
                outf("%" PRId64 " points, %" PRId64 " chunks read", jint(res, "points", 0), jint(res, "chunks", 0));
                size_t i;
                json_t *b;
                json_array_foreach(bad, i, b)
                        outf("cannot be restored: %s/%s (%s chunk %" PRId64 " of disk %s)", jstr(b, "vm_uuid"),
                             jstr(b, "point_id"), jstr(b, "reason"), jint(b, "chunk", -1),
                             jstr(b, "disk") ? jstr(b, "disk") : "?");
        }
        return json_array_size(bad) ? EXIT_ERROR : 0;
}

int cmd_backup_gc(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_free_ char *path = NULL;
        int r = datastore_action(c, a->pos[0], "gc", &path);
        if (r)
                return r;
        return post_job(c, path, NULL);
}

int cmd_backup_prune(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *body = json_object();
        int r = add_keeps(body, a);
        if (r)
                return r;
        if (args_get(a, "vm"))
                json_object_set_new(body, "vm", json_string(args_get(a, "vm")));
        if (args_has(a, "dry-run"))
                json_object_set_new(body, "dry_run", json_true());
        _cleanup_free_ char *path = NULL;
        r = datastore_action(c, a->pos[0], "prune", &path);
        if (r)
                return r;
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "POST", path, body, &reply);
        if (r)
                return r;
        _cleanup_json_ json_t *job = follow_job(c, reply, &r);
        if (!job || c->output != OUTPUT_TABLE)
                return r;
        json_t *res = json_object_get(job, "result");
        bool dry = json_is_true(json_object_get(res, "dry_run"));
        _cleanup_table_ Table *t = table_new("VM", "POINT", "ACTION", NULL);
        const char *lists[2] = { "kept", "removed" };
        for (int l = 0; l < 2; l++) {
                size_t i;
                json_t *p;
                json_array_foreach(json_object_get(res, lists[l]), i, p) {
                        table_add(t, jstr(p, "vm_name") ? jstr(p, "vm_name") : jstr(p, "vm_uuid"));
                        table_add(t, jstr(p, "point_id"));
                        table_add(t, l == 0 ? "keep" : dry ? "would remove" : "removed");
                }
        }
        table_print(t, stdout);
        return 0;
}

int cmd_backup_archive(Ctx *c, const Command *cmd, const Args *a) {
        const char *ds = args_get(a, "datastore"), *to = args_get(a, "to"), *vm = args_get(a, "vm"),
                   *point = args_get(a, "point");
        if (!ds || !to || !!vm == !!point)
                return fail("usage: armada backup archive --datastore D --vm VM|--point VM/POINT --to DIR");
        _cleanup_free_ char *path = NULL;
        int r = datastore_action(c, ds, "archive", &path);
        if (r)
                return r;
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s?, s:s?}", "to", to, "vm", vm, "point", point);
        return post_job(c, path, body);
}

int cmd_backup_import(Ctx *c, const Command *cmd, const Args *a) {
        const char *ds = args_get(a, "datastore");
        if (!ds)
                return fail("usage: armada backup import DIR --datastore D");
        _cleanup_free_ char *path = NULL;
        int r = datastore_action(c, ds, "import", &path);
        if (r)
                return r;
        _cleanup_json_ json_t *body = json_pack("{s:s}", "path", a->pos[0]);
        return post_job(c, path, body);
}

/* ---- backups: now, list, restore ---- */

const OptSpec BACKUP_NOW_OPTS[] = {
        { "datastore", 0, true, "NAME", "the datastore (needed when there are several)" },
        { NULL },
};
const OptSpec BACKUP_LIST_OPTS[] = {
        { "datastore", 0, true, "NAME", "only this datastore's points" },
        { NULL },
};
const OptSpec BACKUP_RESTORE_OPTS[] = {
        { "as", 0, true, "NAME", "restore as a new VM of this name" },
        { "in-place", 0, false, NULL, "restore over the VM itself (it must be stopped)" },
        { "host", 0, true, "HOST", "the new VM's host (else placement picks)" },
        { "datastore", 0, true, "NAME", "the datastore holding the point (needed when several do)" },
        { "disk", 0, true, "TARGET", "only this disk of the point (vdb); in place the others stay as they are" },
        { NULL },
};

int cmd_backup_now(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "vms", "name", a->pos[0], "VM", &id, NULL);
        if (r)
                return r;
        _cleanup_json_ json_t *body = json_pack("{s:s?}", "datastore", args_get(a, "datastore"));
        _cleanup_free_ char *path = xasprintf("/vms/%" PRId64 "/backups", id);
        return post_job(c, path, body);
}

/* Names and point ids are plain words; anything else is refused here
 * rather than escaped into a query. */
static bool query_word(const char *s) {
        for (; s && *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || strchr("-_.", *s)))
                        return false;
        return true;
}

static void print_points(json_t *reply) {
        _cleanup_table_ Table *t = table_new("VM", "POINT", "DATASTORE", "KIND", "CONSISTENCY", "SIZE", "READ", "WRITTEN", NULL);
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(reply, "items"), i, p) {
                table_add(t, jstr(p, "vm_name"));
                table_add(t, jstr(p, "point_id"));
                table_add(t, jstr(p, "datastore"));
                table_add(t, json_is_true(json_object_get(p, "full")) ? "full" : "incremental");
                table_add(t, jstr(p, "consistency"));
                add_bytes(t, p, "size_bytes");
                add_bytes(t, p, "bytes_read");
                add_bytes(t, p, "bytes_written");
        }
        table_print(t, stdout);
}

int cmd_backup_list(Ctx *c, const Command *cmd, const Args *a) {
        const char *vm = a->n_pos ? a->pos[0] : NULL, *ds = args_get(a, "datastore");
        if (!query_word(vm) || !query_word(ds))
                return fail("a VM or datastore name holds only letters, digits, '-', '_' and '.'");
        _cleanup_free_ char *path = xasprintf("/backups%s%s%s%s%s%s", vm || ds ? "?" : "", vm ? "vm=" : "", vm ? vm : "",
                                              vm && ds ? "&" : "", ds ? "datastore=" : "", ds ? ds : "");
        return show_reply(c, path, print_points);
}

int cmd_backup_restore(Ctx *c, const Command *cmd, const Args *a) {
        const char *as = args_get(a, "as");
        bool in_place = args_has(a, "in-place");
        const char *slash = strrchr(a->pos[0], '/');
        if (!slash || slash == a->pos[0] || !slash[1] || !as == !in_place)
                return fail("usage: armada backup restore VM/POINT (--as NAME [--host H] | --in-place) [--disk TARGET] "
                            "[--datastore D]");
        _cleanup_free_ char *vm = strndup(a->pos[0], (size_t) (slash - a->pos[0]));
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:s?}", "vm", vm, "point", slash + 1, "as", as,
                                                "host", args_get(a, "host"), "datastore", args_get(a, "datastore"), "disk",
                                                args_get(a, "disk"));
        if (!body)
                return fail("the names must be valid UTF-8");
        if (in_place)
                json_object_set_new(body, "in_place", json_true());
        return post_job(c, "/backups/restore", body);
}

/* ---- file-level restore: files, download ---- */

/* The server boots an appliance for a point's first request: minutes under
 * TCG on a loaded host (it waits up to 900 s). */
#define FILES_TIMEOUT_S 960L

const OptSpec BACKUP_FILES_OPTS[] = {
        { "disk", 0, true, "TARGET", "the point's disk (default: its first, e.g. vda)" },
        { "datastore", 0, true, "NAME", "the datastore holding the point (needed when several do)" },
        { NULL },
};
const OptSpec BACKUP_DOWNLOAD_OPTS[] = {
        { "to", 0, true, "FILE", "write the file here (required; made anew, never half-written)" },
        { "disk", 0, true, "TARGET", "the point's disk (default: its first, e.g. vda)" },
        { "datastore", 0, true, "NAME", "the datastore holding the point (needed when several do)" },
        { NULL },
};

/* "/backups/<route>?vm=..&point=..[&disk][&datastore]&path=..", every value
 * URL-encoded; NULL (after printing why) for a malformed VM/POINT. */
static char *files_query(Ctx *c, const char *route, const char *ref, const char *path, const Args *a) {
        const char *slash = strrchr(ref, '/');
        if (!slash || slash == ref || !slash[1])
                return NULL;
        _cleanup_free_ char *vm = strndup(ref, (size_t) (slash - ref));
        StrBuf b = {0};
        strbuf_printf(&b, "/backups/%s", route);
        query_add(c, &b, "vm", vm);
        query_add(c, &b, "point", slash + 1);
        if (args_get(a, "disk"))
                query_add(c, &b, "disk", args_get(a, "disk"));
        if (args_get(a, "datastore"))
                query_add(c, &b, "datastore", args_get(a, "datastore"));
        query_add(c, &b, "path", path);
        return strbuf_steal(&b);
}

static void print_files(json_t *reply) {
        bool top = streq(jstr(reply, "path"), "/");
        _cleanup_table_ Table *t = top ? table_new("FILESYSTEM", "TYPE", ">SIZE", NULL)
                                       : table_new("NAME", "TYPE", ">SIZE", "MODIFIED", NULL);
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(reply, "items"), i, e) {
                table_add(t, jstr(e, "name"));
                table_add(t, top ? jstr(e, "fstype") : jstr(e, "type"));
                add_bytes(t, e, "size");
                if (!top) {
                        char when[64] = "-";
                        if (json_is_integer(json_object_get(e, "mtime"))) {
                                time_t tt = (time_t) jint(e, "mtime", 0);
                                struct tm tm;
                                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime_r(&tt, &tm));
                        }
                        table_add(t, when);
                }
        }
        table_print(t, stdout);
        if (json_is_true(json_object_get(reply, "truncated")))
                outf("(only the first %zu entries)", json_array_size(json_object_get(reply, "items")));
}

int cmd_backup_files(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_free_ char *q = files_query(c, "files", a->pos[0], a->n_pos > 1 ? a->pos[1] : "/", a);
        if (!q)
                return fail("usage: armada backup files VM/POINT [PATH] [--disk vda] [--datastore D]");
        ApiReply rep = {0};
        int r = api_send(c, "GET", q, NULL, FILES_TIMEOUT_S, &rep);
        if (r || rep.status >= 300) {
                r = api_report(c, &rep, r);
                api_reply_done(&rep);
                return r;
        }
        if (c->output == OUTPUT_JSON)
                print_json(rep.json);
        else
                print_files(rep.json);
        api_reply_done(&rep);
        return 0;
}

int cmd_backup_download(Ctx *c, const Command *cmd, const Args *a) {
        const char *to = args_get(a, "to");
        _cleanup_free_ char *q = a->n_pos == 2 && to ? files_query(c, "download", a->pos[0], a->pos[1], a) : NULL;
        if (!q)
                return fail("usage: armada backup download VM/POINT PATH --to FILE [--disk vda] [--datastore D]");
        /* Into a temporary file beside FILE, renamed over it once whole. */
        _cleanup_free_ char *tmp = xasprintf("%s.armada-XXXXXX", to);
        int fd = mkstemp(tmp);
        if (fd < 0)
                return fail("cannot create '%s': %s", tmp, strerror(errno));
        FILE *f = fdopen(fd, "wb");
        ApiReply rep = {0};
        uint64_t bytes = 0;
        int r = api_download(c, q, f, FILES_TIMEOUT_S, &rep, &bytes);
        if (fclose(f) != 0 && r == 0) {
                r = EXIT_ERROR;
                rep.error = xasprintf("cannot write '%s': %s", to, strerror(errno));
        }
        if (r == 0 && rep.status == 200 && rename(tmp, to) < 0) {
                r = EXIT_ERROR;
                rep.error = xasprintf("cannot rename the download to '%s': %s", to, strerror(errno));
        }
        if (r || rep.status != 200) {
                (void) unlink(tmp);
                r = api_report(c, &rep, r);
                api_reply_done(&rep);
                return r ? r : EXIT_ERROR;
        }
        api_reply_done(&rep);
        char b[32];
        fmt_bytes(bytes, b);
        if (c->output == OUTPUT_JSON) {
                _cleanup_json_ json_t *j = json_pack("{s:s, s:I}", "to", to, "bytes", (json_int_t) bytes);
                print_json(j);
        } else
                outf("downloaded %s (%s) to %s", a->pos[1], b, to);
        return 0;
}

/* ---- protection policies ---- */

const OptSpec BACKUP_POLICY_OPTS[] = {
        { "every", 0, true, "INTERVAL", "back up this often: 30s, 15m, 1h, 1d (set)" },
        { "datastore", 0, true, "NAME", "into this datastore (set; default: the only one)" },
        KEEP_OPTS,
        { NULL },
};

static int policy_set(Ctx *c, const Args *a) {
        if (a->n_pos != 2 || !args_get(a, "every"))
                return fail("usage: armada backup policy set GROUP|VM --every 15m [--datastore D] [--keep-last N] ...");
        /* A VM when one has that name, else a host-group path. */
        const char *target = a->pos[1];
        bool is_vm = false;
        if (!strchr(target, '/') && query_word(target)) {
                _cleanup_free_ char *q = xasprintf("/vms?name=%s", target);
                ApiReply rep = {0};
                if (api_send(c, "GET", q, NULL, 30, &rep) == 0 && rep.status == 200)
                        is_vm = json_array_size(json_object_get(rep.json, "items")) > 0;
                api_reply_done(&rep);
        }
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s, s:s?}", is_vm ? "vm" : "group", target, "every", args_get(a, "every"),
                                                "datastore", args_get(a, "datastore"));
        if (!body)
                return fail("the names must be valid UTF-8");
        int r = add_keeps(body, a);
        if (r)
                return r;
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "POST", "/backup-policies", body, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON)
                print_json(reply);
        else
                outf("policy %" PRId64 ": %s '%s' every %" PRId64 " s", jint(reply, "id", 0), is_vm ? "VM" : "group", target,
                     jint(reply, "every_s", 0));
        return 0;
}

static void print_policies(json_t *reply) {
        _cleanup_table_ Table *t = table_new("ID", "APPLIES TO", "EVERY", "DATASTORE", "KEEP (L/H/D/W/M/Y)", NULL);
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(reply, "items"), i, p) {
                table_addf(t, "%" PRId64, jint(p, "id", 0));
                if (jstr(p, "vm_name"))
                        table_addf(t, "VM %s", jstr(p, "vm_name"));
                else
                        table_addf(t, "group /%s", jstr(p, "group_path") ? jstr(p, "group_path") : "");
                table_addf(t, "%" PRId64 " s", jint(p, "every_s", 0));
                table_add(t, jstr(p, "datastore") ? jstr(p, "datastore") : "(the only one)");
                table_addf(t, "%" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64, jint(p, "keep_last", 0),
                           jint(p, "keep_hourly", 0), jint(p, "keep_daily", 0), jint(p, "keep_weekly", 0),
                           jint(p, "keep_monthly", 0), jint(p, "keep_yearly", 0));
        }
        table_print(t, stdout);
}

static int policy_list(Ctx *c) {
        return show_reply(c, "/backup-policies", print_policies);
}

int cmd_backup_policy(Ctx *c, const Command *cmd, const Args *a) {
        const char *sub = a->pos[0];
        if (streq(sub, "set"))
                return policy_set(c, a);
        if (streq(sub, "list")) {
                if (a->n_pos != 1)
                        return fail("usage: armada backup policy list");
                return policy_list(c);
        }
        if (streq(sub, "remove")) {
                int64_t id;
                if (a->n_pos != 2 || parse_i64(a->pos[1], &id) < 0 || id <= 0)
                        return fail("usage: armada backup policy remove ID");
                _cleanup_free_ char *path = xasprintf("/backup-policies/%" PRId64, id);
                _cleanup_json_ json_t *reply = NULL;
                int r = api_call(c, "DELETE", path, NULL, &reply);
                if (r == 0 && c->output == OUTPUT_TABLE)
                        outf("policy %" PRId64 " removed", id);
                return r;
        }
        return fail("usage: armada backup policy set GROUP|VM --every 15m ... | list | remove ID");
}

/* ---- replication to a second site ---- */

const OptSpec BACKUP_REPLICATE_OPTS[] = {
        { "to-path", 0, true, "DIR", "replicate into this directory on the server (under a backup root)" },
        { "to-url", 0, true, "URL", "replicate to another armadad, https://HOST:PORT" },
        { "to-datastore", 0, true, "NAME", "the datastore there (with --to-url)" },
        { "token-file", 0, true, "FILE", "a file holding an administrator's API token there (with --to-url)" },
        { "ca-file", 0, true, "FILE", "the PEM file on the server to trust for the target's certificate" },
        { "every", 0, true, "DURATION", "run every DURATION (30s, 15m, 6h, 1d; at least 10s)" },
        { "name", 0, true, "NAME", "the replication's name (default SOURCE-to-TARGET)" },
        { NULL },
};

/* "15m" and the like into seconds: 0 or -1. */
static int64_t parse_every(const char *s) {
        char *end = NULL;
        long long v = strtoll(s, &end, 10);
        if (end == s || v <= 0)
                return -1;
        int64_t mul = streq(end, "") || streq(end, "s") ? 1 : streq(end, "m") ? 60 : streq(end, "h") ? 3600 : streq(end, "d") ? 86400 : -1;
        if (mul < 0 || v > INT64_MAX / mul)
                return -1;
        return (int64_t) v * mul;
}

/* The token in FILE, its trailing white space cut; NULL after a message. */
static char *read_token(const char *file) {
        FILE *f = fopen(file, "re");
        if (!f) {
                fail("cannot read the token file '%s'", file);
                return NULL;
        }
        char buf[1024];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
                buf[--n] = 0;
        if (n == 0) {
                fail("the token file '%s' is empty", file);
                return NULL;
        }
        return xstrdup(buf);
}

static int replicate_add(Ctx *c, const Args *a) {
        const char *to_path = args_get(a, "to-path"), *to_url = args_get(a, "to-url"), *every_s = args_get(a, "every"),
                   *tf = args_get(a, "token-file");
        if (a->n_pos != 2 || !!to_path == !!to_url || (to_url && (!args_get(a, "to-datastore") || !tf)))
                return fail("usage: armada backup replicate add SOURCE_DS --to-path DIR | --to-url https://HOST:PORT"
                            " --to-datastore NAME --token-file FILE [--ca-file FILE] [--every 15m] [--name NAME]");
        int64_t every = 0;
        if (every_s && (every = parse_every(every_s)) < 0)
                return fail("--every takes a duration such as 30s, 15m, 6h or 1d");
        _cleanup_free_ char *token = NULL;
        if (tf && !(token = read_token(tf)))
                return EXIT_ERROR;
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:I}", "source", a->pos[1], "name",
                                                args_get(a, "name"), "to_path", to_path, "to_url", to_url, "to_datastore",
                                                args_get(a, "to-datastore"), "token", token, "ca_file", args_get(a, "ca-file"),
                                                "every", (json_int_t) every);
        if (token)
                explicit_bzero(token, strlen(token));
        if (!body)
                return fail("the arguments must be valid UTF-8");
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", "/replications", body, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON)
                print_json(reply);
        else
                outf("replication '%s' created", jstr(reply, "name"));
        return 0;
}

static void print_replications(json_t *reply) {
        _cleanup_table_ Table *t = table_new("NAME", "SOURCE", "TARGET", "EVERY", "LAST RUN", "STATE", ">POINTS", ">CHUNKS",
                                             ">BYTES", NULL);
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(reply, "items"), i, p) {
                char when[64];
                table_add(t, jstr(p, "name"));
                table_add(t, jstr(p, "datastore"));
                if (json_is_string(json_object_get(p, "to_url")))
                        table_addf(t, "%s %s", jstr(p, "to_url"), jstr(p, "to_datastore"));
                else
                        table_add(t, jstr(p, "to_path"));
                if (jint(p, "every_s", 0) > 0)
                        table_addf(t, "%" PRId64 "s", jint(p, "every_s", 0));
                else
                        table_add(t, "-");
                fmt_time_of(p, "last_run_at", when);
                table_add(t, when);
                table_add(t, json_is_string(json_object_get(p, "last_state")) ? jstr(p, "last_state") : NULL);
                json_t *res = json_object_get(p, "last_result");
                if (json_is_object(res)) {
                        table_addf(t, "%" PRId64, jint(res, "points_sent", 0));
                        table_addf(t, "%" PRId64, jint(res, "chunks_sent", 0));
                        table_addf(t, "%" PRId64, jint(res, "bytes_sent", 0));
                } else {
                        table_add(t, NULL);
                        table_add(t, NULL);
                        table_add(t, NULL);
                }
        }
        table_print(t, stdout);
}

static int replicate_list(Ctx *c) {
        return show_reply(c, "/replications", print_replications);
}

static int replication_id(Ctx *c, const char *name, int64_t *ret) {
        return resolve(c, "replications", "name", name, "replication", ret, NULL);
}

int cmd_backup_replicate(Ctx *c, const Command *cmd, const Args *a) {
        const char *what = a->pos[0];
        if (streq(what, "add"))
                return replicate_add(c, a);
        if (streq(what, "list")) {
                if (a->n_pos != 1)
                        return fail("usage: armada backup replicate list");
                return replicate_list(c);
        }
        if (!streq(what, "remove") && !streq(what, "run"))
                return fail("unknown replicate command '%s'; use add, list, remove or run", what);
        if (a->n_pos != 2)
                return fail("usage: armada backup replicate %s NAME", what);
        int64_t id;
        int r = replication_id(c, a->pos[1], &id);
        if (r)
                return r;
        if (streq(what, "remove")) {
                _cleanup_free_ char *path = xasprintf("/replications/%" PRId64, id);
                r = api_call(c, "DELETE", path, NULL, NULL);
                if (r == 0 && c->output == OUTPUT_TABLE)
                        outf("replication '%s' removed (nothing at its target was touched)", a->pos[1]);
                return r;
        }
        _cleanup_free_ char *path = xasprintf("/replications/%" PRId64 "/actions/run", id);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "POST", path, NULL, &reply);
        if (r)
                return r;
        _cleanup_json_ json_t *job = follow_job(c, reply, &r);
        if (!job)
                return r ? r : EXIT_ERROR;
        json_t *res = json_object_get(job, "result");
        if (c->output == OUTPUT_TABLE)
                outf("replication '%s': %" PRId64 " of %" PRId64 " points sent, %" PRId64 " chunks, %" PRId64 " bytes", a->pos[1],
                     jint(res, "points_sent", 0), jint(res, "points_total", 0), jint(res, "chunks_sent", 0),
                     jint(res, "bytes_sent", 0));
        return 0;
}
