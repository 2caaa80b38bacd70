/* armada library, template, grant and self-service commands: library shares
 * and items (with streamed uploads), templates and deploying VMs from them,
 * self-service grants with quotas. "armada vm create NAME --template T" is
 * the same deploy (cmd_vm_create_any). */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const OptSpec LIBRARY_LIST_OPTS[] = {
        { "share", 0, true, "PATH", "only the items of this share" },
        { "kind", 0, true, "KIND", "only disk, iso or script items" },
        { NULL, 0, false, NULL, NULL },
};
const OptSpec LIBRARY_IMPORT_OPTS[] = {
        { "share", 0, true, "PATH", "the share to upload into (needed when there are several)" },
        { "name", 0, true, "REL", "the path inside the share (default: the file's name)" },
        { "path", 0, true, "PATH", "import a file already inside a share on the server instead of uploading" },
        { NULL, 0, false, NULL, NULL },
};
const OptSpec TEMPLATE_CREATE_OPTS[] = {
        { "image", 0, true, "PATH", "base disk: its path on the server, or its path inside a share (required)" },
        { "cpus", 0, true, "N", "virtual CPUs (default 1)" },
        { "memory", 0, true, "MIB", "memory in MiB, or a size such as 4G (default 512)" },
        { "disk", 0, true, "SIZE", "system disk size, at least the image's (default: the image's)" },
        { "data-disk", 0, true, "SIZE", "an extra empty disk; repeat for several" },
        { "network", 0, true, "NAME", "libvirt network of the VM's NIC (default: no NIC)" },
        { "firmware", 0, true, "FW", "bios (the default) or uefi (OVMF, chosen by the host's libvirt)" },
        { "domain-type", 0, true, "TYPE", "auto (the default: KVM when the host has it), kvm or qemu (TCG emulation)" },
        { "hostname", 0, true, "PATTERN", "guest host name, e.g. web-{n} or {name} (the default)" },
        { "admin-user", 0, true, "NAME", "a user cloud-init creates, with sudo" },
        { "ssh-key", 0, true, "KEY", "an SSH public key, or @FILE; repeat for several" },
        { "timezone", 0, true, "TZ", "guest time zone, e.g. Europe/Berlin" },
        { "user-data", 0, true, "FILE", "free-form cloud-init user-data merged after Armada's (at most 64 KiB)" },
        { "points", 0, true, "N", "what one VM costs against a self-service quota (default 1)" },
        { "description", 0, true, "TEXT", "free text" },
        { "iso", 0, true, "PATH", "a library ISO its VMs get in a CD-ROM drive (its path on the server or inside a share)" },
        { NULL, 0, false, NULL, NULL },
};
const OptSpec TEMPLATE_DEPLOY_OPTS[] = {
        { "count", 'n', true, "N", "deploy N VMs named NAME-1..NAME-N (without it: one VM named NAME)" },
        { "host", 0, true, "NAME", "the host (default: placement picks)" },
        { "group", 'g', true, "PATH", "the host group placement chooses in" },
        { "full-copy", 0, false, NULL, "copy the base disk instead of a linked clone" },
        { "no-start", 0, false, NULL, "define the VMs without starting them" },
        { NULL, 0, false, NULL, NULL },
};
const OptSpec VM_TO_TEMPLATE_OPTS[] = {
        { "share", 0, true, "PATH", "the library share to copy the disk into (needed when there are several)" },
        { "points", 0, true, "N", "what one VM of the template costs against a quota (default 1)" },
        { NULL, 0, false, NULL, NULL },
};
const OptSpec GRANT_CREATE_OPTS[] = {
        { "user", 'u', true, "NAME", "the self-service user (required)" },
        { "templates", 0, true, "LIST", "templates the user may deploy, comma-separated (required)" },
        { "group", 'g', true, "PATH", "host group the VMs are placed in (required)" },
        { "points", 0, true, "N", "quota in points (default: unlimited)" },
        { "max-vms", 0, true, "N", "at most N VMs" },
        { "max-cpus", 0, true, "N", "at most N vCPUs in all" },
        { "max-memory", 0, true, "MIB", "at most this much memory in all (MiB or a size such as 16G)" },
        { "actions", 0, true, "LIST", "allowed actions (default deploy,start,stop,kill,pause,resume,delete,snapshot)" },
        { NULL, 0, false, NULL, NULL },
};

static bool want_table(Ctx *c, json_t *reply) {
        if (c->output == OUTPUT_JSON) {
                print_json(reply);
                return false;
        }
        return true;
}

static void add_bytes(Table *t, json_t *o, const char *key) {
        if (!json_is_integer(json_object_get(o, key))) {
                table_add(t, NULL);
                return;
        }
        char b[32];
        fmt_bytes((uint64_t) jint(o, key, 0), b);
        table_add(t, b);
}

/* ---- shares ---- */

int cmd_library_add_share(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *body = json_pack("{s:s}", "path", a->pos[0]);
        if (!body)
                return fail("the path must be valid UTF-8");
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", "/library/shares", body, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_TABLE)
                outf("library share '%s' added; indexing it", jstr(json_object_get(reply, "share"), "path"));
        if (json_is_object(json_object_get(reply, "job")) && (c->wait || c->output == OUTPUT_JSON))
                return job_started(c, reply);
        return 0;
}

int cmd_library_shares(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/library/shares", NULL, &reply);
        if (r || !want_table(c, reply))
                return r;
        _cleanup_table_ Table *t = table_new("PATH", ">ITEMS", ">SIZE", "INDEXED", NULL);
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(reply, "items"), i, s) {
                char when[64];
                table_add(t, jstr(s, "path"));
                table_addf(t, "%" PRId64, jint(s, "n_items", 0));
                add_bytes(t, s, "size");
                fmt_time_of(s, "indexed_at", when);
                table_add(t, when);
        }
        table_print(t, stdout);
        return 0;
}

static int share_id(Ctx *c, const char *path, int64_t *ret) {
        return resolve(c, "library/shares", "path", path, "library share", ret, NULL);
}

int cmd_library_remove_share(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = share_id(c, a->pos[0], &id);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/library/shares/%" PRId64, id);
        r = api_call(c, "DELETE", path, NULL, NULL);
        if (!r && c->output == OUTPUT_TABLE)
                outf("library share '%s' removed (its files were not touched)", a->pos[0]);
        return r;
}

int cmd_library_refresh(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *shares = NULL;
        int r = api_call(c, "GET", "/library/shares", NULL, &shares);
        if (r)
                return r;
        int status = 0, n = 0;
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(shares, "items"), i, s) {
                if (a->n_pos && !streq(jstr(s, "path"), a->pos[0]))
                        continue;
                n++;
                _cleanup_free_ char *path = xasprintf("/library/shares/%" PRId64 "/actions/refresh", jint(s, "id", 0));
                _cleanup_json_ json_t *reply = NULL;
                r = api_call(c, "POST", path, NULL, &reply);
                if (!r)
                        r = job_started(c, reply);
                if (r)
                        status = r;
        }
        if (n == 0)
                return a->n_pos ? fail("no library share '%s'", a->pos[0]) : fail("there are no library shares; add one with"
                                                                                   " 'armada library add-share PATH'");
        return status;
}

int cmd_library_list(Ctx *c, const Command *cmd, const Args *a) {
        StrBuf p = {0};
        strbuf_append(&p, "/library/items");
        if (args_get(a, "share")) {
                int64_t id;
                int r = share_id(c, args_get(a, "share"), &id);
                if (r) {
                        strbuf_free(&p);
                        return r;
                }
                strbuf_printf(&p, "?share_id=%" PRId64, id);
        }
        if (args_get(a, "kind")) {
                strbuf_append(&p, p.len > 14 ? "&" : "?");
                strbuf_printf(&p, "kind=");
                const char *k = args_get(a, "kind");
                if (!streq(k, "disk") && !streq(k, "iso") && !streq(k, "script")) {
                        strbuf_free(&p);
                        return fail("--kind must be disk, iso or script, not '%s'", k);
                }
                strbuf_append(&p, k);
        }
        _cleanup_free_ char *path = strbuf_steal(&p);
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", path, NULL, &reply);
        if (r || !want_table(c, reply))
                return r;
        _cleanup_table_ Table *t = table_new(">ID", "PATH", "KIND", "FORMAT", ">SIZE", ">VIRTUAL", "SHA256", NULL);
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(reply, "items"), i, it) {
                table_addf(t, "%" PRId64, jint(it, "id", 0));
                table_add(t, jstr(it, "path"));
                table_add(t, json_is_true(json_object_get(it, "missing")) ? "missing" : jstr(it, "kind"));
                table_add(t, jstr(it, "format"));
                add_bytes(t, it, "size");
                add_bytes(t, it, "virtual_size");
                const char *sum = jstr(it, "checksum");
                table_addf(t, "%.12s", sum && *sum ? sum : "-");
        }
        table_print(t, stdout);
        return 0;
}

/* ---- upload ---- */

typedef struct {
        FILE *f;
        uint64_t size;
        int last_pct;
        bool tty;
} UploadProgress;

static size_t read_file(char *buf, size_t size, size_t n, void *userdata) {
        UploadProgress *u = userdata;
        return fread(buf, 1, size * n, u->f);
}

static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
        UploadProgress *u = userdata;
        if (!u->tty || u->size == 0)
                return 0;
        int pct = (int) ((uint64_t) ulnow * 100 / u->size);
        if (pct != u->last_pct) {
                char done[32], all[32];
                fmt_bytes((uint64_t) ulnow, done);
                fmt_bytes(u->size, all);
                fprintf(stderr, "\rupload: %3d%% (%s of %s)", pct, done, all);
                u->last_pct = pct;
        }
        return 0;
}

static size_t collect(char *data, size_t size, size_t n, void *userdata) {
        StrBuf *b = userdata;
        if (b->len + size * n > (1u << 20))
                return 0;
        strbuf_appendn(b, data, size * n);
        return size * n;
}

static void slist_free(struct curl_slist **l) { curl_slist_free_all(*l); }

/* POSTs the file to the share's upload resource, streamed. */
static int upload(Ctx *c, const char *file, int64_t share, const char *name, json_t **ret) {
        UploadProgress u = { .last_pct = -1, .tty = isatty(2) };
        u.f = fopen(file, "rbe");
        struct stat sb;
        if (!u.f || fstat(fileno(u.f), &sb) < 0 || !S_ISREG(sb.st_mode)) {
                int e = errno;
                if (u.f) fclose(u.f);
                return fail("cannot read '%s': %s", file, u.f ? "not a regular file" : strerror(e));
        }
        u.size = (uint64_t) sb.st_size;
        StrBuf url = {0};
        strbuf_printf(&url, "%s" API_PREFIX "/library/shares/%" PRId64 "/upload", c->server, share);
        query_add(c, &url, "name", name);
        _cleanup_free_ char *urls = strbuf_steal(&url);
        _cleanup_free_ char *auth = c->token ? xasprintf("Authorization: Bearer %s", c->token) : NULL;
        _cleanup_(slist_free) struct curl_slist *h = NULL;
        h = curl_slist_append(h, "Accept: application/json");
        h = curl_slist_append(h, "Content-Type: application/octet-stream");
        h = curl_slist_append(h, "Expect:");
        if (auth)
                h = curl_slist_append(h, auth);
        StrBuf resp = {0};
        char errbuf[CURL_ERROR_SIZE] = "";
        CURL *k = c->curl;
        curl_easy_reset(k);
        curl_easy_setopt(k, CURLOPT_URL, urls);
        curl_easy_setopt(k, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(k, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(k, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
        curl_easy_setopt(k, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(k, CURLOPT_LOW_SPEED_TIME, 120L);
        curl_easy_setopt(k, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(k, CURLOPT_POST, 1L);
        curl_easy_setopt(k, CURLOPT_READFUNCTION, read_file);
        curl_easy_setopt(k, CURLOPT_READDATA, &u);
        curl_easy_setopt(k, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) u.size);
        curl_easy_setopt(k, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(k, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(k, CURLOPT_WRITEDATA, &resp);
        curl_easy_setopt(k, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(k, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(k, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(k, CURLOPT_XFERINFODATA, &u);
        if (c->insecure) {
                curl_easy_setopt(k, CURLOPT_SSL_VERIFYPEER, 0L);
                curl_easy_setopt(k, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        if (c->cacert)
                curl_easy_setopt(k, CURLOPT_CAINFO, c->cacert);
        CURLcode cr = curl_easy_perform(k);
        fclose(u.f);
        if (auth)
                explicit_bzero(auth, strlen(auth));
        if (u.tty && u.last_pct >= 0)
                fputc('\n', stderr);
        _cleanup_free_ char *text = strbuf_steal(&resp);
        if (cr != CURLE_OK) {
                fprintf(stderr, "armada: cannot upload '%s': %s\n", file, errbuf[0] ? errbuf : curl_easy_strerror(cr));
                return EXIT_UNREACHABLE;
        }
        long status = 0;
        curl_easy_getinfo(k, CURLINFO_RESPONSE_CODE, &status);
        json_t *j = json_loads(text, 0, NULL);
        if (status >= 300) {
                const char *msg = jstr(json_object_get(j, "error"), "message");
                fail("%s", msg ? msg : "the server refused the upload");
                json_decref(j);
                return EXIT_ERROR;
        }
        *ret = j;
        return 0;
}

int cmd_library_import(Ctx *c, const Command *cmd, const Args *a) {
        const char *path = args_get(a, "path");
        _cleanup_json_ json_t *reply = NULL;
        int r;
        if (path) {
                if (a->n_pos)
                        return fail("give either a FILE to upload or --path of a file on the server, not both");
                _cleanup_json_ json_t *body = json_pack("{s:s}", "path", path);
                if (!body)
                        return fail("the path must be valid UTF-8");
                r = api_call(c, "POST", "/library/items", body, &reply);
                if (r)
                        return r;
                if (c->output == OUTPUT_TABLE)
                        outf("imported '%s' as item %" PRId64 " (%s %s); checksumming it", path,
                             jint(json_object_get(reply, "item"), "id", 0), jstr(json_object_get(reply, "item"), "kind"),
                             jstr(json_object_get(reply, "item"), "format"));
                return c->wait ? job_started(c, reply) : (c->output == OUTPUT_JSON ? (print_json(reply), 0) : 0);
        }
        if (!a->n_pos)
                return fail("library import needs a FILE to upload, or --path PATH of a file inside a share on the server");
        int64_t share;
        if (args_get(a, "share")) {
                r = share_id(c, args_get(a, "share"), &share);
                if (r)
                        return r;
        } else {
                _cleanup_json_ json_t *shares = NULL;
                r = api_call(c, "GET", "/library/shares", NULL, &shares);
                if (r)
                        return r;
                json_t *items = json_object_get(shares, "items");
                if (json_array_size(items) != 1)
                        return fail(json_array_size(items) ? "there are several library shares; choose one with --share PATH"
                                                           : "there are no library shares; add one with 'armada library add-share PATH'");
                share = jint(json_array_get(items, 0), "id", 0);
        }
        const char *name = args_get(a, "name");
        if (!name) {
                name = strrchr(a->pos[0], '/');
                name = name ? name + 1 : a->pos[0];
        }
        r = upload(c, a->pos[0], share, name, &reply);
        if (r || !want_table(c, reply))
                return r;
        json_t *it = json_object_get(reply, "item");
        char size[32];
        fmt_bytes((uint64_t) jint(it, "size", 0), size);
        outf("uploaded '%s' as %s (item %" PRId64 ", %s %s, %s, sha256 %s)", a->pos[0], jstr(it, "path"), jint(it, "id", 0),
             jstr(it, "kind"), jstr(it, "format"), size, jstr(it, "checksum"));
        return 0;
}

/* ---- templates ---- */

int cmd_template_list(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/templates", NULL, &reply);
        if (r || !want_table(c, reply))
                return r;
        _cleanup_table_ Table *t = table_new("NAME", ">CPUS", ">MEMORY", ">DISK", "BASE", ">POINTS", ">VMS", NULL);
        size_t i;
        json_t *tp;
        json_array_foreach(json_object_get(reply, "items"), i, tp) {
                char mem[32], disk[32];
                int64_t d = jint(tp, "disk_bytes", 0);
                fmt_bytes((uint64_t) jint(tp, "memory_mib", 0) << 20, mem);
                fmt_bytes((uint64_t) (d ? d : jint(tp, "base_virtual_size", 0)), disk);
                table_add(t, jstr(tp, "name"));
                table_addf(t, "%" PRId64, jint(tp, "cpus", 0));
                table_add(t, mem);
                table_add(t, disk);
                table_add(t, jstr(tp, "base_path"));
                table_addf(t, "%" PRId64, jint(tp, "points", 0));
                table_addf(t, "%" PRId64, jint(tp, "n_vms", 0));
        }
        table_print(t, stdout);
        return 0;
}

int cmd_template_show(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "templates", "name", a->pos[0], "template", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/templates/%" PRId64, id);
        _cleanup_json_ json_t *t = NULL;
        r = api_call(c, "GET", path, NULL, &t);
        if (r || !want_table(c, t))
                return r;
        _cleanup_table_ Table *kv = kv_new();
        static const char *const keys[][2] = {
                { "Name", "name" }, { "Id", "id" }, { "Description", "description" }, { "CPUs", "cpus" },
                { "Memory (MiB)", "memory_mib" }, { "Disk (bytes)", "disk_bytes" }, { "Data disks", "data_disks" },
                { "Firmware", "firmware" }, { "Domain type", "domain_type" }, { "Network", "network" }, { "Base image", "base_path" }, { "Base format", "base_format" },
                { "Host name", "hostname_pattern" }, { "Admin user", "admin_user" }, { "SSH keys", "ssh_keys" },
                { "Time zone", "timezone" }, { "Points", "points" }, { "VMs", "n_vms" },
        };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                _cleanup_free_ char *v = jtext(t, keys[i][1]);
                kv_add(kv, keys[i][0], v);
        }
        const char *ud = jstr(t, "user_data");
        _cleanup_free_ char *udlen = ud ? xasprintf("%zu bytes", strlen(ud)) : NULL;
        kv_add(kv, "User-data", udlen);
        table_print(kv, stdout);
        return 0;
}

static int read_value_file(const char *v, char **ret) {
        if (v[0] != '@') {
                *ret = xstrdup(v);
                return 0;
        }
        int r = file_read_all(v + 1, ret, NULL);
        if (r < 0)
                return fail("cannot read '%s': %s", v + 1, strerror(-r));
        size_t n = strlen(*ret);
        while (n && ((*ret)[n - 1] == '\n' || (*ret)[n - 1] == '\r')) (*ret)[--n] = 0;
        return 0;
}

int cmd_template_create(Ctx *c, const Command *cmd, const Args *a) {
        const char *image = args_get(a, "image");
        if (!image)
                return fail("template create needs --image PATH (a disk image in a library share)");
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s}", "name", a->pos[0], "image", image);
        if (!body)
                return fail("arguments must be valid UTF-8");
        const char *v;
        int64_t n;
        uint64_t bytes;
        if ((v = args_get(a, "iso")))
                json_object_set_new(body, "iso", json_string(v));
        if ((v = args_get(a, "cpus"))) {
                if (parse_i64(v, &n) < 0 || n < 1)
                        return fail("--cpus must be a whole number from 1, not '%s'", v);
                json_object_set_new(body, "cpus", json_integer(n));
        }
        if ((v = args_get(a, "memory"))) {
                if (size_parse(v, 1ULL << 20, &bytes) < 0 || bytes < (1ULL << 20))
                        return fail("--memory must be a number of MiB (or a size such as '4G'), not '%s'", v);
                json_object_set_new(body, "memory_mib", json_integer((json_int_t) (bytes >> 20)));
        }
        if ((v = args_get(a, "disk"))) {
                /* A bare number is GiB here; the API reads sizes with units. */
                _cleanup_free_ char *g = str_is_digits(v) ? xasprintf("%sG", v) : xstrdup(v);
                json_object_set_new(body, "disk_size", json_string(g));
        }
        size_t nd = 0, nk = 0;
        _cleanup_free_ const char **dd = args_get_all(a, "data-disk", &nd);
        if (nd) {
                json_t *arr = json_array();
                for (size_t i = 0; i < nd; i++) {
                        _cleanup_free_ char *s = str_is_digits(dd[i]) ? xasprintf("%sG", dd[i]) : xstrdup(dd[i]);
                        json_array_append_new(arr, json_string(s));
                }
                json_object_set_new(body, "data_disks", arr);
        }
        static const char *const plain[][2] = { { "network", "network" }, { "firmware", "firmware" }, { "hostname", "hostname_pattern" },
                                               { "admin-user", "admin_user" }, { "timezone", "timezone" }, { "domain-type", "domain_type" },
                                               { "description", "description" } };
        for (size_t i = 0; i < ELEMENTSOF(plain); i++)
                if ((v = args_get(a, plain[i][0])))
                        json_object_set_new(body, plain[i][1], json_string(v));
        _cleanup_free_ const char **keys = args_get_all(a, "ssh-key", &nk);
        if (nk) {
                json_t *arr = json_array();
                for (size_t i = 0; i < nk; i++) {
                        char *k = NULL;
                        int r = read_value_file(keys[i], &k);
                        if (r) {
                                json_decref(arr);
                                return r;
                        }
                        json_array_append_new(arr, json_string(k));
                        free(k);
                }
                json_object_set_new(body, "ssh_keys", arr);
        }
        if ((v = args_get(a, "user-data"))) {
                _cleanup_free_ char *ud = NULL;
                int r = file_read_all(v, &ud, NULL);
                if (r < 0)
                        return fail("cannot read the user-data file '%s': %s", v, strerror(-r));
                json_t *s = json_string(ud);
                if (!s)
                        return fail("the user-data file '%s' is not UTF-8 text", v);
                json_object_set_new(body, "user_data", s);
        }
        if ((v = args_get(a, "points"))) {
                if (parse_i64(v, &n) < 0)
                        return fail("--points must be a whole number, not '%s'", v);
                json_object_set_new(body, "points", json_integer(n));
        }
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", "/templates", body, &reply);
        if (r || !want_table(c, reply))
                return r;
        outf("template '%s' created (id %" PRId64 ", base %s)", jstr(reply, "name"), jint(reply, "id", 0), jstr(reply, "base_path"));
        return 0;
}

int cmd_template_delete(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        int r = resolve(c, "templates", "name", a->pos[0], "template", &id, NULL);
        if (r)
                return r;
        _cleanup_free_ char *path = xasprintf("/templates/%" PRId64, id);
        r = api_call(c, "DELETE", path, NULL, NULL);
        if (!r && c->output == OUTPUT_TABLE)
                outf("template '%s' deleted (its VMs and base image stay)", a->pos[0]);
        return r;
}

/* Deploys count VMs named name from template tname. */
static int deploy(Ctx *c, const char *tname, const char *name, const Args *a) {
        int64_t id;
        int r = resolve(c, "templates", "name", tname, "template", &id, NULL);
        if (r)
                return r;
        _cleanup_json_ json_t *body = json_pack("{s:s}", "name", name);
        if (!body)
                return fail("arguments must be valid UTF-8");
        const char *v;
        int64_t n;
        if ((v = args_get(a, "count"))) {
                if (parse_i64(v, &n) < 0 || n < 1 || n > 100)
                        return fail("--count must be a whole number from 1 to 100, not '%s'", v);
                json_object_set_new(body, "count", json_integer(n));
        }
        if ((v = args_get(a, "host")))
                json_object_set_new(body, "host", json_string(v));
        if ((v = args_get(a, "group")))
                json_object_set_new(body, "group", json_string(v));
        if (args_has(a, "full-copy"))
                json_object_set_new(body, "full_copy", json_true());
        if (args_has(a, "no-start"))
                json_object_set_new(body, "start", json_false());
        _cleanup_free_ char *path = xasprintf("/templates/%" PRId64 "/deploy", id);
        _cleanup_json_ json_t *reply = NULL;
        r = api_call(c, "POST", path, body, &reply);
        if (r)
                return r;
        if (c->output == OUTPUT_JSON && !c->wait) {
                print_json(reply);
                return 0;
        }
        int status = 0;
        size_t i;
        json_t *job;
        json_array_foreach(json_object_get(reply, "jobs"), i, job) {
                int q = job_started(c, job);
                if (q)
                        status = q;
        }
        return status;
}

int cmd_template_deploy(Ctx *c, const Command *cmd, const Args *a) {
        return deploy(c, a->pos[0], a->pos[1], a);
}

int cmd_vm_create_any(Ctx *c, const Command *cmd, const Args *a) {
        const char *t = args_get(a, "template");
        if (!t) {
                if (args_get(a, "count") || args_has(a, "full-copy") || args_has(a, "no-start"))
                        return fail("--count, --full-copy and --no-start go with --template");
                return cmd_vm_create(c, cmd, a);
        }
        if (args_get(a, "cpus") || args_get(a, "memory") || args_get(a, "disk") || args_get(a, "domain-type") || args_has(a, "force"))
                return fail("with --template the template sets CPUs, memory and disks; leave out --cpus, --memory, --disk,"
                            " --domain-type and --force");
        return deploy(c, t, a->pos[0], a);
}

int cmd_vm_to_template(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s}", "vm", a->pos[0], "name", a->pos[1]);
        if (!body)
                return fail("arguments must be valid UTF-8");
        const char *v;
        int64_t n;
        if ((v = args_get(a, "share"))) {
                int r = share_id(c, v, &n);
                if (r)
                        return r;
                json_object_set_new(body, "share_id", json_integer(n));
        }
        if ((v = args_get(a, "points"))) {
                if (parse_i64(v, &n) < 0)
                        return fail("--points must be a whole number, not '%s'", v);
                json_object_set_new(body, "points", json_integer(n));
        }
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", "/templates/from-vm", body, &reply);
        if (r)
                return r;
        return job_started(c, reply);
}

/* ---- grants and self-service ---- */

static const char *limit_text(json_t *g, const char *key, char buf[32]) {
        json_t *v = json_object_get(g, key);
        if (!json_is_integer(v))
                return "unlimited";
        snprintf(buf, 32, "%" PRId64, (int64_t) json_integer_value(v));
        return buf;
}

static void grant_row(Table *t, json_t *g) {
        char b[32];
        table_addf(t, "%" PRId64, jint(g, "id", 0));
        table_add(t, jstr(g, "user_name"));
        table_add(t, jstr(g, "group_path"));
        StrBuf names = {0};
        size_t i;
        json_t *tp;
        json_array_foreach(json_object_get(g, "templates"), i, tp) strbuf_printf(&names, "%s%s", i ? "," : "", jstr(tp, "name"));
        _cleanup_free_ char *ns = strbuf_steal(&names);
        table_add(t, ns);
        table_addf(t, "%" PRId64 "/%s", jint(g, "used_points", 0), limit_text(g, "points", b));
        table_addf(t, "%" PRId64 "/%s", jint(g, "used_vms", 0), limit_text(g, "max_vms", b));
        table_addf(t, "%" PRId64 "/%s", jint(g, "used_cpus", 0), limit_text(g, "max_cpus", b));
        table_addf(t, "%" PRId64 "/%s", jint(g, "used_memory_mib", 0), limit_text(g, "max_memory_mib", b));
}

int cmd_grant_list(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/grants", NULL, &reply);
        if (r || !want_table(c, reply))
                return r;
        _cleanup_table_ Table *t = table_new(">ID", "USER", "GROUP", "TEMPLATES", ">POINTS", ">VMS", ">VCPUS", ">MEMORY MIB", NULL);
        size_t i;
        json_t *g;
        json_array_foreach(json_object_get(reply, "items"), i, g) grant_row(t, g);
        table_print(t, stdout);
        return 0;
}

int cmd_grant_create(Ctx *c, const Command *cmd, const Args *a) {
        const char *user = args_get(a, "user"), *tl = args_get(a, "templates"), *group = args_get(a, "group");
        if (!user || !tl || !group)
                return fail("grant create needs --user, --templates and --group");
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s, s:[]}", "user", user, "group", group, "templates");
        if (!body)
                return fail("arguments must be valid UTF-8");
        _cleanup_free_ char *copy = xstrdup(tl);
        char *save = NULL;
        for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save))
                json_array_append_new(json_object_get(body, "templates"), json_string(w));
        static const char *const nums[][2] = { { "points", "points" }, { "max-vms", "max_vms" }, { "max-cpus", "max_cpus" } };
        const char *v;
        int64_t n;
        for (size_t i = 0; i < ELEMENTSOF(nums); i++)
                if ((v = args_get(a, nums[i][0]))) {
                        if (parse_i64(v, &n) < 0)
                                return fail("--%s must be a whole number, not '%s'", nums[i][0], v);
                        json_object_set_new(body, nums[i][1], json_integer(n));
                }
        if ((v = args_get(a, "max-memory"))) {
                uint64_t b;
                if (size_parse(v, 1ULL << 20, &b) < 0)
                        return fail("--max-memory must be a number of MiB or a size such as 16G, not '%s'", v);
                json_object_set_new(body, "max_memory_mib", json_integer((json_int_t) (b >> 20)));
        }
        if ((v = args_get(a, "actions")))
                json_object_set_new(body, "actions", json_string(v));
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "POST", "/grants", body, &reply);
        if (r || !want_table(c, reply))
                return r;
        outf("grant %" PRId64 " created for '%s' in '%s'", jint(reply, "id", 0), user, jstr(reply, "group_path"));
        return 0;
}

int cmd_grant_delete(Ctx *c, const Command *cmd, const Args *a) {
        int64_t id;
        if (parse_i64(a->pos[0], &id) < 0)
                return fail("the grant is named by its id (see 'armada grant list'), not '%s'", a->pos[0]);
        _cleanup_free_ char *path = xasprintf("/grants/%" PRId64, id);
        int r = api_call(c, "DELETE", path, NULL, NULL);
        if (!r && c->output == OUTPUT_TABLE)
                outf("grant %" PRId64 " deleted (its VMs stay)", id);
        return r;
}

int cmd_self_service(Ctx *c, const Command *cmd, const Args *a) {
        _cleanup_json_ json_t *reply = NULL;
        int r = api_call(c, "GET", "/self-service", NULL, &reply);
        if (r || !want_table(c, reply))
                return r;
        _cleanup_table_ Table *t = table_new(">ID", "USER", "GROUP", "TEMPLATES", ">POINTS", ">VMS", ">VCPUS", ">MEMORY MIB", NULL);
        size_t i;
        json_t *g;
        json_array_foreach(json_object_get(reply, "grants"), i, g) grant_row(t, g);
        printf("Grants (used/limit):\n");
        table_print(t, stdout);
        return 0;
}
