/* protect-files: file-level restore -- list a directory of a recovery
 * point's disk and download one file, without writing the disk out and
 * without the original VM or host.
 *
 * The operation (in armadad) checks the request and the caller's rights,
 * then hands it to a session: a child, armadad itself run again
 * ("armadad --files-child ...") in a process group of its own, on one disk
 * of one point. The child serves the disk from the chunk store over a
 * private NBD socket (protect-nbdserve.c), starts libguestfs's appliance
 * on it read-only (direct backend; TCG when /dev/kvm cannot be used) with
 * its first command and keeps it for the next ones: commands come one line
 * at a time on its stdin, each answered with one line of JSON on its
 * stdout (the listing, the file's size, or an error: status, code, field,
 * message), then for a download the file's bytes. libguestfs (its forks,
 * signal handlers and the QEMU it starts) never runs in armadad's own
 * process; a session idle for PROTECT_FILES_IDLE_S ends, and one that
 * hangs or is left half-way is killed with its whole group.
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
#include <pthread.h>
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
        /* guestfs_readdir's letters: 'f' is a FIFO, 'r' a regular file. */
        switch (t) {
        case 'r': return "file";
        case 'd': return "directory";
        case 'l': return "symlink";
        case 'b': return "block";
        case 'c': return "char";
        case 'f': return "fifo";
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

/* The appliance on the export, under KVM when /dev/kvm opens unless tcg. */
static guestfs_h *child_launch_once(const char *sock, const char *export_name, const char *workdir, bool tcg, char *why, size_t why_size) {
        guestfs_h *g = guestfs_create_flags(GUESTFS_CREATE_NO_ENVIRONMENT);
        if (!g) {
                snprintf(why, why_size, "cannot create a libguestfs handle");
                return NULL;
        }
        (void) guestfs_parse_environment(g);
        /* Its temporary files (the read-only overlay, the console socket)
         * in the request's directory, which armadad removes; the appliance
         * stays in the cache directory, built once and reused. */
        (void) guestfs_set_tmpdir(g, workdir);
        (void) guestfs_set_backend(g, "direct");
        (void) guestfs_set_memsize(g, FILES_MEMSIZE_MIB);
        if (tcg) {
                char *settings[] = { (char *) "force_tcg", NULL };
                (void) guestfs_set_backend_settings(g, settings);
        }
        char server[300];
        snprintf(server, sizeof server, "unix:%s", sock);
        const char *servers[] = { server, NULL };
        if (guestfs_add_drive_opts(g, export_name, GUESTFS_ADD_DRIVE_OPTS_READONLY, 1, GUESTFS_ADD_DRIVE_OPTS_FORMAT, "raw",
                                   GUESTFS_ADD_DRIVE_OPTS_PROTOCOL, "nbd", GUESTFS_ADD_DRIVE_OPTS_SERVER, servers, -1) < 0 ||
            guestfs_launch(g) < 0) {
                snprintf(why, why_size, "%s", gerr(g));
                guestfs_close(g);
                return NULL;
        }
        return g;
}

/* The appliance: under KVM when /dev/kvm opens, and once more under TCG
 * when it did not start there (nested KVM may open /dev/kvm yet not run a
 * Linux kernel: QEMU aborts setting an MSR), else under TCG at once. */
static guestfs_h *child_launch(const char *sock, const char *export_name, const char *workdir) {
        char why[700] = "";
        bool kvm = access("/dev/kvm", R_OK | W_OK) == 0;
        guestfs_h *g = child_launch_once(sock, export_name, workdir, !kvm, why, sizeof why);
        if (!g && kvm)
                g = child_launch_once(sock, export_name, workdir, true, why, sizeof why);
        if (!g)
                child_error(500, "internal", NULL, "The file-level restore's appliance (libguestfs) did not start: %.600s", why);
        return g;
}

/* One command of a session: "ls PATH" or "get PATH" (PATH normalised by
 * armadad). The answer is written; 0, or negative when the session must
 * end (a download cut short: armadad counts bytes and would wait for the
 * rest). */
static int child_command(guestfs_h *g, char **fss, const char *disk, const char *cmd, const char *norm) {
        char fs[256];
        const char *inner;
        path_split(norm, fs, sizeof fs, &inner);
        if (!fs[0]) {
                if (streq(cmd, "get"))
                        child_error(422, "invalid_argument", "path", "'/' lists the file systems; name a file inside one.");
                else
                        (void) child_list_filesystems(g, fss);
                return 0;
        }
        (void) guestfs_umount_all(g);
        if (child_mount(g, fss, fs, norm, disk) < 0)
                return 0;
        if (streq(cmd, "get")) {
                int r = child_get(g, norm, inner);
                return r == -EIO ? r : 0;
        }
        if (guestfs_is_dir(g, inner) != 1) {
                if (guestfs_exists(g, inner) == 1)
                        child_error(422, "invalid_argument", "path", "'%.1000s' is not a directory.", norm);
                else
                        child_error(404, "not_found", "path", "There is no directory '%.1000s' in the point.", norm);
                return 0;
        }
        (void) child_list_dir(g, norm, inner);
        return 0;
}

/* The next command line on stdin, waiting at most PROTECT_FILES_IDLE_S:
 * true and line filled, false at the end of stdin or when idle. */
static bool child_next(char *line, size_t size) {
        struct pollfd p = { .fd = 0, .events = POLLIN };
        int k;
        do
                k = poll(&p, 1, PROTECT_FILES_IDLE_S * 1000);
        while (k < 0 && errno == EINTR);
        if (k <= 0 || !fgets(line, (int) size, stdin))
                return false;
        line[strcspn(line, "\n")] = 0;
        return true;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
        (void) sb;
        (void) flag;
        (void) ftw;
        (void) remove(path);
        return 0;
}

/* armadad --files-child DATASTORE_DIR VM_UUID POINT_ID DISK WORKDIR: a
 * session on one disk of one point. WORKDIR is a 0700 directory armadad
 * made for it; the child removes it when it ends. Commands come one line
 * at a time on stdin ("ls PATH", "get PATH"); each answer is one line of
 * JSON on stdout (and a download's bytes). The appliance starts with the
 * first command and serves every later one; the child ends at the end of
 * stdin, after PROTECT_FILES_IDLE_S without a command, or after an error
 * that leaves it unusable (reported as that command's answer). */
int protect_files_child_main(int argc, char **argv) {
        if (argc != 7 || !streq(argv[1], FILES_CHILD_ARG)) {
                fprintf(stderr, "usage: armadad %s DATASTORE_DIR VM_UUID POINT_ID DISK WORKDIR\n", FILES_CHILD_ARG);
                return 2;
        }
        const char *dsdir = argv[2], *uuid = argv[3], *pid = argv[4], *disk = argv[5], *workdir = argv[6];
        /* armadad gone (or a reader that stopped reading): a write fails
         * with EPIPE, the next read of stdin ends the session, and the
         * clean-up below runs -- never killed by SIGPIPE half-way. */
        signal(SIGPIPE, SIG_IGN);
        ChunkStore *s = NULL;
        Point *p = NULL;
        ProtectNbdServer *srv = NULL;
        guestfs_h *g = NULL;
        char **fss = NULL;
        char line[PROTECT_FILES_PATH_MAX + 16];
        int r = 0;
        while (r >= 0 && child_next(line, sizeof line)) {
                char *sp = strchr(line, ' ');
                if (!sp || sp[1] != '/') {
                        child_error(400, "invalid_argument", NULL, "The file-level restore got a command it does not know.");
                        break;
                }
                *sp = 0;
                const char *cmd = line, *norm = sp + 1;
                if (!g) {
                        /* The first command: the point, its export, the appliance. */
                        if ((r = chunkstore_open(dsdir, false, &s)) == 0)
                                r = point_open(s, uuid, pid, &p);
                        if (r < 0) {
                                child_error(409, "conflict", "point", "Point %s cannot be read from its datastore: %s.", pid, strerror(-r));
                                break;
                        }
                        unsigned k = point_disk_count(p);
                        for (unsigned i = 0; i < point_disk_count(p); i++)
                                if (streq(point_disk_target(p, i), disk))
                                        k = i;
                        if (k == point_disk_count(p)) {
                                child_error(404, "not_found", "disk", "Point %s has no disk '%s'.", pid, disk);
                                break;
                        }
                        if ((r = protect_nbdserve_start(s, p, k, workdir, &srv)) < 0) {
                                child_error(500, "internal", NULL, "Cannot serve disk '%s' of point %s: %s.", disk, pid, strerror(-r));
                                break;
                        }
                        if (!(g = child_launch(protect_nbdserve_socket(srv), protect_nbdserve_export(srv), workdir)))
                                break;
                        if (!(fss = guestfs_list_filesystems(g))) {
                                child_error(422, "invalid_argument", "disk", "The file systems of disk '%s' cannot be read: %.400s", disk,
                                            gerr(g));
                                break;
                        }
                }
                r = child_command(g, fss, disk, cmd, norm);
                fflush(stdout);
        }
        fflush(stdout);
        free_strv(fss);
        if (g) {
                (void) guestfs_shutdown(g);
                guestfs_close(g);
        }
        srv = protect_nbdserve_stop(srv);
        point_free(p);
        chunkstore_free(s);
        (void) nftw(workdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return r < 0 ? 1 : 0;
}

/* ---- the operation, in armadad ---- */

/* The sessions: at most PROTECT_FILES_MAX_RUNNING children, each a
 * libguestfs appliance on one disk of one point, kept between requests for
 * PROTECT_FILES_IDLE_S so that browsing a point boots one appliance, not
 * one per click. A session serves one request at a time (busy). */
typedef struct FilesSession {
        bool used, busy;
        char *key;               /* datastore dir, VM uuid, point id, disk */
        pid_t pid;
        int in, out;             /* the child's stdin (written), stdout (read) */
        char *workdir;
        int64_t last_ms;
        bool launched;           /* it has answered a command: its appliance is up */
} FilesSession;

static struct {
        pthread_mutex_t lock;
        FilesSession s[PROTECT_FILES_MAX_RUNNING];
} sessions = { .lock = PTHREAD_MUTEX_INITIALIZER };

struct ProtectFileStream {
        FilesSession *session;
        uint64_t size, done;
        char name[256];
        int timeout_ms;
};

/* Ends a session's child and everything it started (its process group: the
 * appliance's QEMU too) at once and removes its work directory; frees the
 * slot. Under sessions.lock. */
static void session_end(FilesSession *x) {
        if (x->pid > 0) {
                (void) kill(-x->pid, SIGKILL);
                while (waitpid(x->pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        }
        if (x->in >= 0)
                close(x->in);
        if (x->out >= 0)
                close(x->out);
        if (x->workdir)
                (void) nftw(x->workdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(x->workdir);
        free(x->key);
        *x = (FilesSession) { .in = -1, .out = -1 };
}

/* Starts a session's child: 0, or 500. Under sessions.lock. */
static int session_spawn(FilesSession *x, const char *dsdir, const char *uuid, const char *point_id, const char *disk,
                         OpError *err) {
        const char *tmp = getenv("TMPDIR");
        _cleanup_free_ char *workdir = xasprintf("%s/armada-files-XXXXXX", tmp && tmp[0] == '/' ? tmp : "/tmp");
        if (!mkdtemp(workdir))
                return op_fail(err, 500, "internal", NULL, "Cannot start the file-level restore: %s.", strerror(errno));
        int in[2], out[2];
        if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
                int e = errno;
                (void) rmdir(workdir);
                return op_fail(err, 500, "internal", NULL, "Cannot start the file-level restore: %s.", strerror(e));
        }
        char *argv[] = { (char *) "armadad", (char *) FILES_CHILD_ARG, (char *) dsdir, (char *) uuid, (char *) point_id,
                         (char *) disk, workdir, NULL };
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        /* Its own process group, so that ending it ends the QEMU it starts
         * too; the default signal mask and dispositions (armadad blocks its
         * own). */
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
        close(in[0]);
        close(out[1]);
        if (e != 0) {
                close(in[1]);
                close(out[0]);
                (void) rmdir(workdir);
                return op_fail(err, 500, "internal", NULL, "Cannot start the file-level restore: %s.", strerror(e));
        }
        *x = (FilesSession) { .used = true, .busy = true, .pid = pid, .in = in[1], .out = out[0], .workdir = steal_ptr(workdir),
                              .last_ms = mono_ms() };
        return 0;
}

/* A session on key for one request (busy): an idle one of that key, else a
 * new one in a free slot, or in place of an idle session of another key.
 * 0 and *ret, 503 when every session is busy, 500. Sessions idle for
 * nearly PROTECT_FILES_IDLE_S (the child is about to end by itself) or
 * whose child has ended are ended first. */
static int session_acquire(const char *dsdir, const char *uuid, const char *point_id, const char *disk, FilesSession **ret,
                           OpError *err) {
        _cleanup_free_ char *key = xasprintf("%s\n%s\n%s\n%s", dsdir, uuid, point_id, disk);
        int64_t now = mono_ms();
        pthread_mutex_lock(&sessions.lock);
        FilesSession *hit = NULL, *free_slot = NULL, *idle = NULL;
        for (size_t i = 0; i < PROTECT_FILES_MAX_RUNNING; i++) {
                FilesSession *x = &sessions.s[i];
                if (x->used && !x->busy &&
                    (now - x->last_ms > (PROTECT_FILES_IDLE_S - 10) * 1000 || waitpid(x->pid, NULL, WNOHANG) != 0))
                        session_end(x);
                if (!x->used)
                        free_slot = free_slot ? free_slot : x;
                else if (!x->busy && streq(x->key, key))
                        hit = x;
                else if (!x->busy)
                        idle = idle ? idle : x;
        }
        int r = 0;
        if (hit)
                hit->busy = true;
        else if (free_slot || idle) {
                hit = free_slot ? free_slot : idle;
                if (!free_slot)
                        session_end(hit);
                if ((r = session_spawn(hit, dsdir, uuid, point_id, disk, err)) == 0)
                        hit->key = steal_ptr(key);
        } else
                r = op_fail(err, 503, "busy", NULL, "%d file-level restores are running; try again when one has ended.",
                            PROTECT_FILES_MAX_RUNNING);
        pthread_mutex_unlock(&sessions.lock);
        if (r == 0)
                *ret = hit;
        return r;
}

/* The request is done with session x: kept for the next one when it is
 * usable, else ended. */
static void session_release(FilesSession *x, bool usable) {
        pthread_mutex_lock(&sessions.lock);
        if (usable) {
                x->busy = false;
                x->last_ms = mono_ms();
        } else
                session_end(x);
        pthread_mutex_unlock(&sessions.lock);
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
static int child_header(int fd, bool exact, int timeout_s, json_t **ret, OpError *err) {
        StrBuf b = {0};
        int64_t deadline = mono_ms() + (int64_t) timeout_s * 1000;
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
                                       timeout_s);
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
                int r = op_fail(err, status >= 400 && status < 600 ? status : 500, code, jget_str(e, "field"), "%s",
                                jget_str(e, "message") ? jget_str(e, "message") : "The file-level restore failed.");
                json_decref(j);
                return r;
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

/* Sends one command to session x and reads its answer's line: 0 and
 * *ret, or the error (the child's, or 500/504). */
static int session_command(FilesSession *x, const char *cmd, const char *norm, json_t **ret, OpError *err) {
        _cleanup_free_ char *line = xasprintf("%s %s\n", cmd, norm);
        size_t len = strlen(line), at = 0;
        while (at < len) {
                ssize_t n = write(x->in, line + at, len - at);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return op_fail(err, 500, "internal", NULL, "The file-level restore ended without an answer.");
                at += (size_t) n;
        }
        /* The first command waits for the appliance to boot as well. */
        int r = child_header(x->out, streq(cmd, "get"), x->launched ? PROTECT_FILES_TIMEOUT_S : PROTECT_FILES_LAUNCH_TIMEOUT_S,
                             ret, err);
        if (r == 0 || err->status != 504)
                x->launched = true;
        return r;
}

/* Whether a session is still usable after an error answer: the child's
 * own errors leave it so (it goes on reading commands), ours (no answer,
 * a timeout, an answer that cannot be read) do not. */
static bool session_usable_after(const OpError *err) {
        return err->status != 500 && err->status != 504;
}

int protect_backup_files(Store *st, const OpCaller *c, const ProtectFilesSpec *spec, json_t **ret, OpError *err) {
        FilesReq q = {0};
        FilesSession *x = NULL;
        json_t *out = NULL;
        int r = files_prepare(st, c, spec, "list files of", &q, err);
        if (r == 0)
                r = session_acquire(q.dsdir, jget_str(q.pt, "vm_uuid"), jget_str(q.pt, "point_id"), q.disk, &x, err);
        if (r == 0) {
                r = session_command(x, "ls", q.norm, &out, err);
                session_release(x, r == 0 || session_usable_after(err));
        }
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
        FilesSession *x = NULL;
        json_t *h = NULL;
        if ((r = session_acquire(q.dsdir, jget_str(q.pt, "vm_uuid"), jget_str(q.pt, "point_id"), q.disk, &x, err)) < 0) {
                files_req_done(&q);
                return r;
        }
        r = session_command(x, "get", q.norm, &h, err);
        if (r == 0 && !json_is_integer(json_object_get(h, "size")))
                r = op_fail(err, 500, "internal", NULL, "The file-level restore gave an answer that cannot be read.");
        if (r < 0) {
                json_decref(h);
                session_release(x, session_usable_after(err));
                files_req_done(&q);
                return r;
        }
        ProtectFileStream *f = xcalloc(1, sizeof *f);
        f->session = x;
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
        ssize_t n = read_timeout(f->session->out, buf, len, f->timeout_ms);
        if (n == 0)
                return -EPIPE;  /* the child ended before the whole file */
        if (n > 0)
                f->done += (uint64_t) n;
        return n;
}

ProtectFileStream *protect_file_stream_close(ProtectFileStream *f) {
        if (!f)
                return NULL;
        /* A download not read to its end leaves bytes in the pipe: that
         * session cannot answer another request. */
        session_release(f->session, f->done == f->size);
        free(f);
        return NULL;
}
