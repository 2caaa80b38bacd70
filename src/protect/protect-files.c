/* protect-files: file-level restore -- list a directory of a recovery
 * point's disk and download one file, without writing the disk out and
 * without the original VM or host.
 *
 * The operation (in armadad) checks the request and the caller's rights,
 * then runs a child: armadad itself again, "armadad --files-child ...",
 * in a process group of its own. The child serves the point's disk from
 * the chunk store over a private NBD socket (protect-nbdserve.c) and
 * starts libguestfs's appliance on it, read-only (direct backend; TCG
 * when /dev/kvm cannot be used), mounts the file system asked for
 * read-only and answers on its stdout: one line of JSON (the listing, the
 * file's size, or an error: status, code, field, message), then for a
 * download the file's bytes. libguestfs (its forks, signal handlers and
 * the QEMU it starts) never runs in armadad's own process, and a child
 * that hangs is killed with its whole group when its time is up.
 *
 * Paths: "/" lists the disk's file systems (partitions, LVs, or the whole
 * disk), named after the appliance's device without "/dev/" ("sda1",
 * "sda", "vg-root"); "/sda1/etc/hosts" is /etc/hosts of file system sda1.
 * A path is normalised lexically ("." and "//" dropped, ".." taken back,
 * never above the root); the appliance's own mount point is the guest
 * file system's root, so nothing outside it can be named. */
#include "protect-priv.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <guestfs.h>

#include "util/util.h"

extern char **environ;

#define FILES_CHILD_ARG "--files-child"
#define FILES_HEADER_MAX (8u << 20)      /* the JSON line: a listing of PROTECT_FILES_LIST_MAX entries */
#define FILES_MEMSIZE_MIB 512

/* ---- paths (pure) ---- */

int protect_files_path_normalize(const char *path, char **ret) {
        if (!path || path[0] != '/' || strlen(path) > PROTECT_FILES_PATH_MAX)
                return -EINVAL;
        size_t n = strlen(path);
        char *out = xmalloc(n + 2);
        size_t len = 0;
        for (const char *p = path; *p;) {
                while (*p == '/')
                        p++;
                const char *e = strchrnul(p, '/');
                size_t seg = (size_t) (e - p);
                if (seg == 0 || (seg == 1 && p[0] == '.')) {
                } else if (seg == 2 && p[0] == '.' && p[1] == '.') {
                        if (len == 0) {
                                free(out);
                                return -EINVAL;
                        }
                        while (len > 0 && out[len - 1] != '/')
                                len--;
                        len--;          /* the '/' before it */
                } else {
                        out[len++] = '/';
                        memcpy(out + len, p, seg);
                        len += seg;
                }
                p = e;
        }
        if (len == 0)
                out[len++] = '/';
        out[len] = 0;
        *ret = out;
        return 0;
}

/* Splits a normalised path into its file system and the path inside it:
 * "/" -> "", "/"; "/sda1" -> "sda1", "/"; "/sda1/etc" -> "sda1", "/etc". */
static void path_split(const char *norm, char *fs, size_t fs_size, const char **inner) {
        const char *p = norm + 1;
        const char *e = strchrnul(p, '/');
        snprintf(fs, fs_size, "%.*s", (int) (e - p), p);
        *inner = *e ? e : "/";
}

/* ---- the child ---- */

static void child_error(int status, const char *code, const char *field, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void child_error(int status, const char *code, const char *field, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char msg[1024];
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        json_t *e = json_pack("{s:{s:i, s:s, s:s?, s:s}}", "error", "status", status, "code", code, "field", field, "message", msg);
        char *s = json_dumps(e, JSON_COMPACT);
        printf("%s\n", s);
        fflush(stdout);
        free(s);
        json_decref(e);
}

/* libguestfs's last error as a sentence's end: its text without a trailing
 * newline (never the content of a guest file: the daemon reports errno
 * strings and paths). */
static const char *gerr(guestfs_h *g) {
        const char *e = guestfs_last_error(g);
        return e ? e : "unknown error";
}

/* The file systems libguestfs finds, as {"name": device} pairs: name
 * "sda1" for "/dev/sda1", "vg-root" for "/dev/vg/root". */
static char *fs_name(const char *dev) {
        const char *p = strncmp(dev, "/dev/", 5) == 0 ? dev + 5 : dev;
        char *n = xstrdup(p);
        for (char *q = n; *q; q++)
                if (*q == '/')
                        *q = '-';
        return n;
}

static void free_strv(char **v) {
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
}

static int child_list_filesystems(guestfs_h *g, char **fss) {
        json_t *items = json_array();
        for (size_t i = 0; fss[i] && fss[i + 1]; i += 2) {
                _cleanup_free_ char *name = fs_name(fss[i]);
                int64_t size = guestfs_blockdev_getsize64(g, fss[i]);
                json_array_append_new(items, json_pack("{s:s, s:s, s:s, s:I}", "name", name, "type", "filesystem", "fstype",
                                                       fss[i + 1], "size", (json_int_t) (size > 0 ? size : 0)));
        }
        json_t *out = json_pack("{s:s, s:o, s:b}", "path", "/", "items", items, "truncated", false);
        char *s = json_dumps(out, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(out);
        return 0;
}

static const char *ftyp_name(char t) {
        switch (t) {
        case 'f': return "file";
        case 'd': return "directory";
        case 'l': return "symlink";
        case 'b': return "block";
        case 'c': return "char";
        case 'p': return "fifo";
        case 's': return "socket";
        default: return "other";
        }
}

static int cmp_dirent(const void *a, const void *b) {
        return strcmp(((const struct guestfs_dirent *) a)->name, ((const struct guestfs_dirent *) b)->name);
}

static int child_list_dir(guestfs_h *g, const char *norm, const char *inner) {
        struct guestfs_dirent_list *d = guestfs_readdir(g, inner);
        if (!d) {
                child_error(422, "invalid_argument", "path", "Directory '%.1000s' cannot be read.", norm);
                return -EIO;
        }
        qsort(d->val, d->len, sizeof d->val[0], cmp_dirent);
        size_t n = 0;
        char **names = xcalloc((size_t) d->len + 1, sizeof *names);
        bool truncated = false;
        for (uint32_t i = 0; i < d->len; i++) {
                if (streq(d->val[i].name, ".") || streq(d->val[i].name, ".."))
                        continue;
                if (n == PROTECT_FILES_LIST_MAX) {
                        truncated = true;
                        break;
                }
                names[n++] = d->val[i].name;
        }
        json_t *items = json_array();
        /* lstat in batches: one message of the appliance's protocol each. */
        for (size_t at = 0; at < n; at += 1000) {
                size_t m = n - at < 1000 ? n - at : 1000;
                char **batch = xcalloc(m + 1, sizeof *batch);
                memcpy(batch, names + at, m * sizeof *batch);
                struct guestfs_statns_list *st = guestfs_lstatnslist(g, inner, batch);
                free(batch);
                for (size_t i = 0; i < m; i++) {
                        const char *name = names[at + i];
                        char t = 'u';
                        for (uint32_t k = 0; k < d->len; k++)
                                if (d->val[k].name == name)
                                        t = d->val[k].ftyp;
                        json_t *e = json_pack("{s:s, s:s}", "name", name, "type", ftyp_name(t));
                        if (st && i < st->len && st->val[i].st_ino >= 0) {
                                json_object_set_new(e, "size", json_integer(st->val[i].st_size));
                                json_object_set_new(e, "mtime", json_integer(st->val[i].st_mtime_sec));
                                json_object_set_new(e, "mode", json_integer(st->val[i].st_mode & 07777));
                        }
                        json_array_append_new(items, e);
                }
                if (st)
                        guestfs_free_statns_list(st);
        }
        free(names);
        guestfs_free_dirent_list(d);
        json_t *out = json_pack("{s:s, s:o, s:b}", "path", norm, "items", items, "truncated", truncated);
        char *s = json_dumps(out, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(out);
        return 0;
}

static int child_get(guestfs_h *g, const char *norm, const char *inner) {
        if (guestfs_is_file_opts(g, inner, GUESTFS_IS_FILE_OPTS_FOLLOWSYMLINKS, 0, -1) != 1) {
                if (guestfs_is_dir(g, inner) == 1)
                        child_error(422, "invalid_argument", "path", "'%.1000s' is a directory: list it instead.", norm);
                else if (guestfs_exists(g, inner) == 1)
                        child_error(422, "invalid_argument", "path", "'%.1000s' is not a regular file.", norm);
                else
                        child_error(404, "not_found", "path", "There is no file '%.1000s' in the point.", norm);
                return -ENOENT;
        }
        struct guestfs_statns *st = guestfs_lstatns(g, inner);
        if (!st) {
                child_error(422, "invalid_argument", "path", "File '%.1000s' cannot be read.", norm);
                return -EIO;
        }
        printf("{\"size\":%" PRId64 "}\n", st->st_size);
        fflush(stdout);
        guestfs_free_statns(st);
        /* Streams through the appliance's protocol to our stdout, the pipe
         * armadad reads; a failure half-way shows as a short file there. */
        return guestfs_download(g, inner, "/dev/fd/1") < 0 ? -EIO : 0;
}

/* After launch: the file system asked for, mounted read-only at the
 * appliance's root. 0, or negative with the error written. */
static int child_mount(guestfs_h *g, char **fss, const char *fs, const char *norm, const char *disk) {
        for (size_t i = 0; fss[i] && fss[i + 1]; i += 2) {
                _cleanup_free_ char *name = fs_name(fss[i]);
                if (!streq(name, fs))
                        continue;
                if (guestfs_mount_ro(g, fss[i], "/") < 0) {
                        child_error(422, "invalid_argument", "path", "File system '%.200s' (%.40s) of disk '%s' cannot be mounted.", fs,
                                    fss[i + 1], disk);
                        return -EIO;
                }
                return 0;
        }
        child_error(404, "not_found", "path", "Disk '%s' of the point has no file system '%.200s' ('/' lists them).", disk, fs);
        (void) norm;
        return -ENOENT;
}

static guestfs_h *child_launch(const char *sock, const char *export_name, const char *workdir) {
        guestfs_h *g = guestfs_create_flags(GUESTFS_CREATE_NO_ENVIRONMENT);
        if (!g)
                return NULL;
        (void) guestfs_parse_environment(g);
        /* Its temporary files (the read-only overlay, the console socket)
         * in the request's directory, which armadad removes; the appliance
         * stays in the cache directory, built once and reused. */
        (void) guestfs_set_tmpdir(g, workdir);
        (void) guestfs_set_backend(g, "direct");
        (void) guestfs_set_memsize(g, FILES_MEMSIZE_MIB);
        if (access("/dev/kvm", R_OK | W_OK) < 0) {
                char *tcg[] = { (char *) "force_tcg", NULL };
                (void) guestfs_set_backend_settings(g, tcg);
        }
        char server[300];
        snprintf(server, sizeof server, "unix:%s", sock);
        const char *servers[] = { server, NULL };
        if (guestfs_add_drive_opts(g, export_name, GUESTFS_ADD_DRIVE_OPTS_READONLY, 1, GUESTFS_ADD_DRIVE_OPTS_FORMAT, "raw",
                                   GUESTFS_ADD_DRIVE_OPTS_PROTOCOL, "nbd", GUESTFS_ADD_DRIVE_OPTS_SERVER, servers, -1) < 0 ||
            guestfs_launch(g) < 0) {
                child_error(500, "internal", NULL, "The file-level restore's appliance (libguestfs) did not start: %.600s", gerr(g));
                guestfs_close(g);
                return NULL;
        }
        return g;
}

/* armadad --files-child DATASTORE_DIR VM_UUID POINT_ID DISK ls|get PATH WORKDIR (a 0700 directory armadad
 * made for this request and removes after it). */
int protect_files_child_main(int argc, char **argv) {
        if (argc != 9 || !streq(argv[1], FILES_CHILD_ARG)) {
                fprintf(stderr, "usage: armadad %s DATASTORE_DIR VM_UUID POINT_ID DISK ls|get PATH TMPDIR\n", FILES_CHILD_ARG);
                return 2;
        }
        const char *dsdir = argv[2], *uuid = argv[3], *pid = argv[4], *disk = argv[5], *cmd = argv[6], *norm = argv[7];
        ChunkStore *s = NULL;
        Point *p = NULL;
        ProtectNbdServer *srv = NULL;
        guestfs_h *g = NULL;
        char **fss = NULL;
        int r = chunkstore_open(dsdir, false, &s);
        if (r == 0)
                r = point_open(s, uuid, pid, &p);
        if (r < 0) {
                child_error(409, "conflict", "point", "Point %s cannot be read from its datastore: %s.", pid, strerror(-r));
                goto done;
        }
        unsigned k = point_disk_count(p);
        for (unsigned i = 0; i < point_disk_count(p); i++)
                if (streq(point_disk_target(p, i), disk))
                        k = i;
        if (k == point_disk_count(p)) {
                child_error(404, "not_found", "disk", "Point %s has no disk '%s'.", pid, disk);
                r = -ENOENT;
                goto done;
        }
        if ((r = protect_nbdserve_start(s, p, k, argv[8], &srv)) < 0) {
                child_error(500, "internal", NULL, "Cannot serve disk '%s' of point %s: %s.", disk, pid, strerror(-r));
                goto done;
        }
        if (!(g = child_launch(protect_nbdserve_socket(srv), protect_nbdserve_export(srv), argv[8]))) {
                r = -EIO;
                goto done;
        }
        if (!(fss = guestfs_list_filesystems(g))) {
                child_error(422, "invalid_argument", "disk", "The file systems of disk '%s' cannot be read: %.400s", disk, gerr(g));
                r = -EIO;
                goto done;
        }
        char fs[256];
        const char *inner;
        path_split(norm, fs, sizeof fs, &inner);
        if (!fs[0]) {
                if (streq(cmd, "get")) {
                        child_error(422, "invalid_argument", "path", "'/' lists the file systems; name a file inside one.");
                        r = -EINVAL;
                } else
                        r = child_list_filesystems(g, fss);
                goto done;
        }
        if ((r = child_mount(g, fss, fs, norm, disk)) < 0)
                goto done;
        if (streq(cmd, "get"))
                r = child_get(g, norm, inner);
        else if (guestfs_is_dir(g, inner) != 1) {
                if (guestfs_exists(g, inner) == 1)
                        child_error(422, "invalid_argument", "path", "'%.1000s' is not a directory.", norm);
                else
                        child_error(404, "not_found", "path", "There is no directory '%.1000s' in the point.", norm);
                r = -ENOENT;
        } else
                r = child_list_dir(g, norm, inner);
done:
        fflush(stdout);
        free_strv(fss);
        if (g) {
                (void) guestfs_shutdown(g);
                guestfs_close(g);
        }
        srv = protect_nbdserve_stop(srv);
        point_free(p);
        chunkstore_free(s);
        return r < 0 ? 1 : 0;
}

/* ---- the operation, in armadad ---- */

/* File-level restores running now; at most PROTECT_FILES_MAX_RUNNING,
 * since each holds an API thread and an appliance (a QEMU) while it runs. */
static unsigned files_running;

struct ProtectFileStream {
        pid_t pid;
        int fd;
        char *workdir;
        uint64_t size, done;
        char name[256];
        int timeout_ms;
};

/* Starts the child on spec's point: 0 with its pid and the read end of its
 * stdout, or 500. */
static int child_spawn(const char *dsdir, const char *uuid, const char *point_id, const char *disk, const char *cmd,
                       const char *norm, char **ret_workdir, pid_t *ret_pid, int *ret_fd, OpError *err) {
        const char *tmp = getenv("TMPDIR");
        _cleanup_free_ char *workdir = xasprintf("%s/armada-files-XXXXXX", tmp && tmp[0] == '/' ? tmp : "/tmp");
        if (!mkdtemp(workdir))
                return op_fail(err, 500, "internal", NULL, "Cannot start the file-level restore: %s.", strerror(errno));
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0) {
                int e = errno;
                (void) rmdir(workdir);
                return op_fail(err, 500, "internal", NULL, "Cannot start the file-level restore: %s.", strerror(e));
        }
        char *argv[] = { (char *) "armadad", (char *) FILES_CHILD_ARG, (char *) dsdir, (char *) uuid, (char *) point_id,
                         (char *) disk, (char *) cmd, (char *) norm, workdir, NULL };
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        /* Its own process group, so that a timeout kills the QEMU it starts too;
         * the default signal mask and dispositions (armadad blocks its own). */
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        posix_spawnattr_setpgroup(&attr, 0);
        sigset_t none, deflt;
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&attr, &none);
        sigemptyset(&deflt);
        sigaddset(&deflt, SIGPIPE);
        sigaddset(&deflt, SIGCHLD);
        posix_spawnattr_setsigdefault(&attr, &deflt);
        pid_t pid;
        int e = posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        close(fds[1]);
        if (e != 0) {
                close(fds[0]);
                (void) rmdir(workdir);
                return op_fail(err, 500, "internal", NULL, "Cannot start the file-level restore: %s.", strerror(e));
        }
        *ret_workdir = steal_ptr(workdir);
        *ret_pid = pid;
        *ret_fd = fds[0];
        return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
        (void) sb;
        (void) flag;
        (void) ftw;
        (void) remove(path);
        return 0;
}

/* Ends the child and everything it started (its process group: the
 * appliance's QEMU too) at once -- its answer is read -- and removes its
 * work directory. Takes pid 0 and a NULL workdir. */
static void child_reap(pid_t pid, char *workdir) {
        if (pid > 0) {
                (void) kill(-pid, SIGKILL);
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        }
        if (workdir)
                (void) nftw(workdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(workdir);
}

/* Reads up to len bytes from fd, waiting at most timeout_ms for the first:
 * the count, 0 at the end, -ETIMEDOUT or -errno. */
static ssize_t read_timeout(int fd, void *buf, size_t len, int timeout_ms) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int k;
        do
                k = poll(&p, 1, timeout_ms);
        while (k < 0 && errno == EINTR);
        if (k == 0)
                return -ETIMEDOUT;
        if (k < 0)
                return -errno;
        ssize_t n;
        do
                n = read(fd, buf, len);
        while (n < 0 && errno == EINTR);
        return n < 0 ? -errno : n;
}

/* The child's first line, parsed: 0 and *ret, or 500/504 in err. With
 * exact, read a byte at a time so that nothing after the line is taken
 * (a download's bytes follow it); else in blocks (a listing is the whole
 * answer). */
static int child_header(int fd, bool exact, json_t **ret, OpError *err) {
        StrBuf b = {0};
        int64_t deadline = mono_ms() + (int64_t) PROTECT_FILES_TIMEOUT_S * 1000;
        char buf[65536];
        size_t have = 0, at = 0;
        for (;;) {
                char c;
                int64_t left = deadline - mono_ms();
                ssize_t n = 1;
                if (at == have) {
                        at = have = 0;
                        n = left > 0 ? read_timeout(fd, buf, exact ? 1 : sizeof buf, (int) left) : -ETIMEDOUT;
                        if (n > 0)
                                have = (size_t) n;
                }
                if (n > 0)
                        c = buf[at++];
                if (n == -ETIMEDOUT) {
                        free(b.s);
                        return op_fail(err, 504, "timeout", NULL, "The file-level restore did not answer within %d seconds.",
                                       PROTECT_FILES_TIMEOUT_S);
                }
                if (n <= 0 || b.len >= FILES_HEADER_MAX) {
                        free(b.s);
                        return op_fail(err, 500, "internal", NULL, "The file-level restore ended without an answer.");
                }
                if (c == '\n')
                        break;
                strbuf_appendn(&b, &c, 1);
        }
        json_t *j = b.s ? json_loadb(b.s, b.len, 0, NULL) : NULL;
        free(b.s);
        if (!json_is_object(j)) {
                json_decref(j);
                return op_fail(err, 500, "internal", NULL, "The file-level restore gave an answer that cannot be read.");
        }
        json_t *e = json_object_get(j, "error");
        if (e) {
                int status = (int) jget_int(e, "status");
                /* err keeps the code as a pointer: one of ours, never the
                 * JSON's string, which goes below. */
                static const char *const codes[] = { "invalid_argument", "not_found", "conflict", "internal" };
                const char *code = "internal";
                for (size_t i = 0; i < ELEMENTSOF(codes); i++)
                        if (jget_str(e, "code") && streq(jget_str(e, "code"), codes[i]))
                                code = codes[i];
                op_fail(err, status >= 400 && status < 600 ? status : 500, code, jget_str(e, "field"), "%s",
                        jget_str(e, "message") ? jget_str(e, "message") : "The file-level restore failed.");
                json_decref(j);
                return -EIO;
        }
        *ret = j;
        return 0;
}

/* Checks and finds everything a request names: the normalised path, the
 * point (visible and operable by the caller), its datastore's directory
 * and the disk. */
typedef struct {
        char *norm;
        char *dsdir;
        json_t *pt;
        char disk[64];
        int64_t vm_id;
        char vm_name[256];
} FilesReq;

static void files_req_done(FilesReq *q) {
        free(q->norm);
        free(q->dsdir);
        json_decref(q->pt);
}

static int files_prepare(Store *st, const OpCaller *c, const ProtectFilesSpec *spec, const char *action, FilesReq *q,
                         OpError *err) {
        if (protect_files_path_normalize(spec->path ? spec->path : "/", &q->norm) < 0)
                return op_fail(err, 400, "invalid_argument", "path", "Field 'path' must be an absolute path of at most %d characters "
                               "that does not lead above '/'.", PROTECT_FILES_PATH_MAX);
        if (spec->disk && (!spec->disk[0] || strlen(spec->disk) > 32 || strspn(spec->disk, "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(spec->disk)))
                return op_fail(err, 400, "invalid_argument", "disk", "Field 'disk' must be a disk's target such as \"vda\".");
        if (!op_allowed_some(c, ACT_OPERATE, OBJ_VM))
                return op_deny(st, c, err, action, "VM", 0, spec->vm);
        char uuid[37];
        int r = protect_vm_ref(st, c, "vm", spec->vm, uuid, &q->vm_id, err);
        if (r < 0)
                return r;
        ProtectRestoreSpec rs = { .vm = spec->vm, .point = spec->point, .datastore = spec->datastore };
        if ((r = protect_point_find(st, c, &rs, uuid, &q->pt, err)) < 0)
                return r;
        _cleanup_json_ json_t *src = NULL;
        if (q->vm_id > 0)
                (void) store_vm_get_json(st, q->vm_id, &src);
        int64_t owner = src ? jget_int(src, "owner_id") : jget_int(q->pt, "owner_id");
        int64_t group = src ? jget_int(src, "group_id") : jget_int(q->pt, "group_id");
        const char *vm_name = src ? jget_str(src, "name") : jget_str(q->pt, "vm_name");
        snprintf(q->vm_name, sizeof q->vm_name, "%s", vm_name ? vm_name : "");
        if (!op_allowed(st, c, ACT_OPERATE, OBJ_VM, owner, group))
                return op_deny(st, c, err, action, "VM", q->vm_id, spec->vm);
        char ds_name[128];
        if (protect_datastore_path(st, jget_str(q->pt, "datastore"), ds_name, sizeof ds_name, &q->dsdir) < 0)
                return op_fail(err, 409, "conflict", "datastore", "Datastore '%s' no longer exists.", jget_str(q->pt, "datastore"));
        /* The disk: named, or the point's first. */
        ChunkStore *s = NULL;
        Point *p = NULL;
        if (chunkstore_open(q->dsdir, false, &s) < 0 || point_open(s, jget_str(q->pt, "vm_uuid"), jget_str(q->pt, "point_id"), &p) < 0) {
                chunkstore_free(s);
                return op_fail(err, 409, "conflict", "point", "Point '%s' cannot be read from datastore '%s'.", jget_str(q->pt, "point_id"),
                               jget_str(q->pt, "datastore"));
        }
        bool found = false;
        for (unsigned k = 0; k < point_disk_count(p) && !found; k++)
                if (!spec->disk || streq(point_disk_target(p, k), spec->disk)) {
                        snprintf(q->disk, sizeof q->disk, "%s", point_disk_target(p, k));
                        found = true;
                }
        point_free(p);
        chunkstore_free(s);
        if (!found)
                return spec->disk ? op_fail(err, 404, "not_found", "disk", "Point '%s' has no disk '%s'.", jget_str(q->pt, "point_id"), spec->disk)
                                  : op_fail(err, 422, "invalid_argument", "point", "Point '%s' has no disks.", jget_str(q->pt, "point_id"));
        return 0;
}

static bool files_slot_take(void) {
        unsigned n = __atomic_add_fetch(&files_running, 1, __ATOMIC_SEQ_CST);
        if (n <= PROTECT_FILES_MAX_RUNNING)
                return true;
        __atomic_sub_fetch(&files_running, 1, __ATOMIC_SEQ_CST);
        return false;
}

static void files_slot_give(void) {
        __atomic_sub_fetch(&files_running, 1, __ATOMIC_SEQ_CST);
}

static int files_busy(OpError *err) {
        return op_fail(err, 503, "busy", NULL, "%d file-level restores are running; try again when one has ended.",
                       PROTECT_FILES_MAX_RUNNING);
}

int protect_backup_files(Store *st, const OpCaller *c, const ProtectFilesSpec *spec, json_t **ret, OpError *err) {
        FilesReq q = {0};
        int r = files_prepare(st, c, spec, "list files of", &q, err);
        if (r < 0) {
                files_req_done(&q);
                return r;
        }
        if (!files_slot_take()) {
                files_req_done(&q);
                return files_busy(err);
        }
        pid_t pid = 0;
        int fd = -1;
        char *workdir = NULL;
        json_t *out = NULL;
        r = child_spawn(q.dsdir, jget_str(q.pt, "vm_uuid"), jget_str(q.pt, "point_id"), q.disk, "ls", q.norm, &workdir, &pid, &fd, err);
        if (r == 0)
                r = child_header(fd, false, &out, err);
        if (fd >= 0)
                close(fd);
        child_reap(pid, workdir);
        files_slot_give();
        if (r == 0) {
                json_object_set_new(out, "point_id", json_string(jget_str(q.pt, "point_id")));
                json_object_set_new(out, "datastore", json_string(jget_str(q.pt, "datastore")));
                json_object_set_new(out, "disk", json_string(q.disk));
                *ret = out;
        }
        files_req_done(&q);
        return r < 0 ? r : 0;
}

int protect_backup_download(Store *st, const OpCaller *c, const ProtectFilesSpec *spec, ProtectFileStream **ret, OpError *err) {
        FilesReq q = {0};
        int r = files_prepare(st, c, spec, "download files of", &q, err);
        if (r < 0) {
                files_req_done(&q);
                return r;
        }
        if (streq(q.norm, "/") || !strchr(q.norm + 1, '/')) {
                files_req_done(&q);
                return op_fail(err, 422, "invalid_argument", "path", "Field 'path' must name a file inside a file system, such as "
                               "\"/sda1/etc/hostname\" ('/' lists the file systems).");
        }
        if (!files_slot_take()) {
                files_req_done(&q);
                return files_busy(err);
        }
        pid_t pid = 0;
        int fd = -1;
        char *workdir = NULL;
        json_t *h = NULL;
        r = child_spawn(q.dsdir, jget_str(q.pt, "vm_uuid"), jget_str(q.pt, "point_id"), q.disk, "get", q.norm, &workdir, &pid, &fd, err);
        if (r == 0)
                r = child_header(fd, true, &h, err);
        if (r < 0 || !json_is_integer(json_object_get(h, "size"))) {
                if (r == 0)
                        r = op_fail(err, 500, "internal", NULL, "The file-level restore gave an answer that cannot be read.");
                json_decref(h);
                if (fd >= 0)
                        close(fd);
                child_reap(pid, workdir);
                files_slot_give();
                files_req_done(&q);
                return r;
        }
        ProtectFileStream *f = xcalloc(1, sizeof *f);
        f->pid = pid;
        f->fd = fd;
        f->workdir = workdir;
        f->size = (uint64_t) jget_int(h, "size");
        f->timeout_ms = PROTECT_FILES_TIMEOUT_S * 1000;
        snprintf(f->name, sizeof f->name, "%s", strrchr(q.norm, '/') + 1);
        json_decref(h);
        _cleanup_free_ char *detail = xasprintf("'%.1000s' (%" PRIu64 " bytes) of disk %s, point %s from datastore '%s'", q.norm,
                                                f->size, q.disk, jget_str(q.pt, "point_id"), jget_str(q.pt, "datastore"));
        op_audit(st, c, "backup.download", "vm", q.vm_id, q.vm_name, detail, "ok");
        files_req_done(&q);
        *ret = f;
        return 0;
}

uint64_t protect_file_stream_size(const ProtectFileStream *f) {
        return f->size;
}

const char *protect_file_stream_name(const ProtectFileStream *f) {
        return f->name;
}

ssize_t protect_file_stream_read(ProtectFileStream *f, void *buf, size_t len) {
        if (f->done >= f->size)
                return 0;
        if (len > f->size - f->done)
                len = (size_t) (f->size - f->done);
        ssize_t n = read_timeout(f->fd, buf, len, f->timeout_ms);
        if (n == 0)
                return -EPIPE;  /* the child ended before the whole file */
        if (n > 0)
                f->done += (uint64_t) n;
        return n;
}

ProtectFileStream *protect_file_stream_close(ProtectFileStream *f) {
        if (!f)
                return NULL;
        close(f->fd);
        child_reap(f->pid, f->workdir);
        files_slot_give();
        free(f);
        return NULL;
}
