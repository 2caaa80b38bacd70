/* The library's pure helpers and local file work: paths confined to a share,
 * image format detection, SHA-256, cloud-init rendering, the seed ISO and
 * the quota arithmetic (see library.h). */
#include "library-priv.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sodium.h>

extern char **environ;

static LibraryConfig config = { .upload_max_bytes = 64ULL << 30 };

void library_configure(const LibraryConfig *cfg) {
        if (cfg && cfg->upload_max_bytes > 0)
                config.upload_max_bytes = cfg->upload_max_bytes;
        if (cfg && cfg->tmp_dir) {
                /* Set once at start-up, kept for the process's life. */
                free((char *) config.tmp_dir);
                config.tmp_dir = xstrdup(cfg->tmp_dir);
        }
        if (cfg && cfg->export_root) {
                free((char *) config.export_root);
                config.export_root = xstrdup(cfg->export_root);
        }
}
const LibraryConfig *library_config(void) {
        return &config;
}
const char *library_tmp_dir(void) {
        if (config.tmp_dir)
                return config.tmp_dir;
        const char *tmp = getenv("TMPDIR");
        return tmp && *tmp ? tmp : "/tmp";
}

/* ------------------------------------------------------------------ */
/* paths */

const char *library_rel_path_invalid(const char *rel) {
        if (!rel || !*rel)
                return "is empty";
        if (strlen(rel) > 1023)
                return "is longer than 1023 bytes";
        if (rel[0] == '/')
                return "must be relative to the share, not absolute";
        for (const unsigned char *p = (const unsigned char *) rel; *p; p++)
                if (*p < 0x20 || *p == 0x7f || *p == '\\')
                        return "must not contain control characters or backslashes";
        const char *s = rel;
        while (*s) {
                size_t n = strcspn(s, "/");
                if (n == 0)
                        return "must not contain empty segments ('//' or a trailing '/')";
                if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
                        return "must not contain '.' or '..' segments";
                if (s[0] == '.')
                        return "must not name hidden files (segments starting with '.')";
                s += n;
                if (*s == '/') {
                        s++;
                        if (!*s)
                                return "must not contain empty segments ('//' or a trailing '/')";
                }
        }
        return NULL;
}

int library_open_in_share(const char *root, const char *rel, int flags, int mode) {
        if (!root || root[0] != '/' || library_rel_path_invalid(rel))
                return -EINVAL;
        int dir = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0)
                return -errno;
        _cleanup_free_ char *copy = xstrdup(rel);
        char *seg = copy;
        for (;;) {
                char *slash = strchr(seg, '/');
                if (!slash)
                        break;
                *slash = 0;
                int next = openat(dir, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                int e = errno;
                if (next < 0) {
                        /* O_NOFOLLOW|O_DIRECTORY on a symlink says ENOTDIR: call it ELOOP */
                        struct stat sb;
                        if (e == ENOTDIR && fstatat(dir, seg, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(sb.st_mode))
                                e = ELOOP;
                        close(dir);
                        return -e;
                }
                close(dir);
                dir = next;
                seg = slash + 1;
        }
        int fd = openat(dir, seg, flags | O_NOFOLLOW | O_CLOEXEC, (mode_t) mode);
        int e = errno;
        if (fd < 0 && e == ENOTDIR) {
                /* A symlink to a directory opened with O_DIRECTORY|O_NOFOLLOW. */
                struct stat sb;
                if (fstatat(dir, seg, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(sb.st_mode))
                        e = ELOOP;
        }
        close(dir);
        return fd < 0 ? -e : fd;
}

int library_path_in_share(const char *root, const char *path, char **ret_rel) {
        if (!path || path[0] != '/' || !root)
                return -EINVAL;
        _cleanup_free_ char *rr = realpath(root, NULL);
        if (!rr)
                return -errno;
        _cleanup_free_ char *rp = realpath(path, NULL);
        if (!rp)
                return -errno;
        size_t n = strlen(rr);
        if (strncmp(rp, rr, n) != 0 || rp[n] != '/' || rp[n + 1] == 0)
                return -EXDEV;
        *ret_rel = xstrdup(rp + n + 1);
        return 0;
}

/* ------------------------------------------------------------------ */
/* formats */

static uint64_t be64(const unsigned char *p) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
        return v;
}
static uint32_t be32(const unsigned char *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}
static uint64_t le64(const unsigned char *p) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
        return v;
}

static bool has_ext(const char *name, const char *const *exts) {
        const char *base = strrchr(name, '/');
        base = base ? base + 1 : name;
        const char *dot = strrchr(base, '.');
        if (!dot)
                return false;
        for (const char *const *e = exts; *e; e++)
                if (strcasecmp(dot, *e) == 0)
                        return true;
        return false;
}

static ssize_t pread_full(int fd, void *buf, size_t n, off_t off) {
        size_t got = 0;
        while (got < n) {
                ssize_t r = pread(fd, (char *) buf + got, n - got, off + (off_t) got);
                if (r < 0) {
                        if (errno == EINTR) continue;
                        return -1;
                }
                if (r == 0)
                        break;
                got += (size_t) r;
        }
        return (ssize_t) got;
}

int library_image_detect(int fd, const char *name, uint64_t size, LibraryImageInfo *ret) {
        static const char *const raw_ext[] = { ".img", ".raw", NULL };
        static const char *const script_ext[] = { ".sh", ".ps1", ".py", ".cmd", ".bat", ".yaml", ".yml", ".cfg", ".txt", NULL };
        unsigned char h[4096];
        ssize_t n = pread_full(fd, h, sizeof h, 0);
        if (n < 0)
                return -EIO;
        LibraryImageInfo info = {0};
        if (n >= 72 && memcmp(h, "QFI\xfb", 4) == 0) {
                uint32_t version = be32(h + 4);
                if (version != 2 && version != 3)
                        return -EMEDIUMTYPE;
                uint64_t boff = be64(h + 8);
                uint32_t blen = be32(h + 16);
                snprintf(info.kind, sizeof info.kind, "disk");
                snprintf(info.format, sizeof info.format, "qcow2");
                info.virtual_size = be64(h + 24);
                if (boff && blen) {
                        if (blen >= sizeof info.backing)
                                return -EMEDIUMTYPE;
                        if (pread_full(fd, info.backing, blen, (off_t) boff) != (ssize_t) blen)
                                return -EMEDIUMTYPE;
                        info.backing[blen] = 0;
                }
                *ret = info;
                return 0;
        }
        if (n >= 20 && memcmp(h, "KDMV", 4) == 0) {
                snprintf(info.kind, sizeof info.kind, "disk");
                snprintf(info.format, sizeof info.format, "vmdk");
                info.virtual_size = le64(h + 12) * 512;
                *ret = info;
                return 0;
        }
        if (n >= 8 && memcmp(h, "vhdxfile", 8) == 0) {
                snprintf(info.kind, sizeof info.kind, "disk");
                snprintf(info.format, sizeof info.format, "vhdx");
                *ret = info;
                return 0;
        }
        /* VHD: a "conectix" footer in the last 512 bytes (a dynamic disk
         * also copies it to the front); the guest size at 48, big-endian. */
        unsigned char foot[512];
        const unsigned char *f = NULL;
        if (n >= 512 && memcmp(h, "conectix", 8) == 0)
                f = h;
        else if (size >= 1024 && pread_full(fd, foot, sizeof foot, (off_t) (size - 512)) == (ssize_t) sizeof foot &&
                 memcmp(foot, "conectix", 8) == 0)
                f = foot;
        if (f) {
                snprintf(info.kind, sizeof info.kind, "disk");
                snprintf(info.format, sizeof info.format, "vhd");
                info.virtual_size = be64(f + 48);
                *ret = info;
                return 0;
        }
        char cd[5];
        if (size >= 0x8006 && pread_full(fd, cd, 5, 0x8001) == 5 && memcmp(cd, "CD001", 5) == 0) {
                snprintf(info.kind, sizeof info.kind, "iso");
                snprintf(info.format, sizeof info.format, "iso");
                info.virtual_size = size;
                *ret = info;
                return 0;
        }
        if (has_ext(name, raw_ext)) {
                if (size == 0 || size % 512 != 0)
                        return -EMEDIUMTYPE;
                snprintf(info.kind, sizeof info.kind, "disk");
                snprintf(info.format, sizeof info.format, "raw");
                info.virtual_size = size;
                *ret = info;
                return 0;
        }
        bool text = memchr(h, 0, (size_t) n) == NULL;
        if (text && (has_ext(name, script_ext) || (n >= 2 && h[0] == '#' && h[1] == '!'))) {
                snprintf(info.kind, sizeof info.kind, "script");
                snprintf(info.format, sizeof info.format, "text");
                *ret = info;
                return 0;
        }
        return -EMEDIUMTYPE;
}

int library_sha256_fd(int fd, char out[65], uint64_t *ret_size) {
        crypto_hash_sha256_state s;
        crypto_hash_sha256_init(&s);
        size_t cap = 1 << 20;
        _cleanup_free_ unsigned char *buf = xmalloc(cap);
        uint64_t total = 0;
        for (;;) {
                ssize_t n = pread(fd, buf, cap, (off_t) total);
                if (n < 0) {
                        if (errno == EINTR) continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                crypto_hash_sha256_update(&s, buf, (unsigned long long) n);
                total += (uint64_t) n;
        }
        unsigned char d[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_final(&s, d);
        hex_encode(d, sizeof d, out);
        if (ret_size)
                *ret_size = total;
        return 0;
}

/* ------------------------------------------------------------------ */
/* cloud-init */

#define BOUNDARY "==ARMADA-CLOUD-INIT-BOUNDARY=="

const char *library_user_data_type(const char *u) {
        if (!u)
                return NULL;
        if (strncmp(u, "#cloud-config", 13) == 0)
                return "text/cloud-config";
        if (strncmp(u, "#!", 2) == 0)
                return "text/x-shellscript";
        if (strncmp(u, "#cloud-boothook", 15) == 0)
                return "text/cloud-boothook";
        if (strncmp(u, "#include", 8) == 0)
                return "text/x-include-url";
        return NULL;
}

/* A YAML double-quoted scalar. */
static void yq(StrBuf *b, const char *s) {
        strbuf_append(b, "\"");
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        strbuf_printf(b, "\\%c", *p);
                else if (*p == '\n')
                        strbuf_append(b, "\\n");
                else if (*p == '\t')
                        strbuf_append(b, "\\t");
                else if (*p < 0x20 || *p == 0x7f)
                        strbuf_printf(b, "\\x%02x", *p);
                else
                        strbuf_appendn(b, (const char *) p, 1);
        }
        strbuf_append(b, "\"");
}

int library_cloudinit_render(const LibraryGuest *g, char **ret_meta, char **ret_user) {
        bool free_form = g->user_data && *g->user_data;
        const char *type = free_form ? library_user_data_type(g->user_data) : NULL;
        if (free_form && (!type || strstr(g->user_data, BOUNDARY)))
                return -EINVAL;
        StrBuf m = {0}, c = {0};
        strbuf_append(&m, "instance-id: ");
        yq(&m, g->instance_id);
        strbuf_append(&m, "\nlocal-hostname: ");
        yq(&m, g->hostname);
        strbuf_append(&m, "\n");

        strbuf_append(&c, "#cloud-config\nhostname: ");
        yq(&c, g->hostname);
        strbuf_append(&c, "\npreserve_hostname: false\n");
        if (g->admin_user && *g->admin_user) {
                strbuf_append(&c, "users:\n  - default\n  - name: ");
                yq(&c, g->admin_user);
                strbuf_append(&c, "\n    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n    shell: /bin/bash\n    lock_passwd: true\n");
                if (g->n_ssh_keys > 0) {
                        strbuf_append(&c, "    ssh_authorized_keys:\n");
                        for (size_t i = 0; i < g->n_ssh_keys; i++) {
                                strbuf_append(&c, "      - ");
                                yq(&c, g->ssh_keys[i]);
                                strbuf_append(&c, "\n");
                        }
                }
        } else if (g->n_ssh_keys > 0) {
                strbuf_append(&c, "ssh_authorized_keys:\n");
                for (size_t i = 0; i < g->n_ssh_keys; i++) {
                        strbuf_append(&c, "  - ");
                        yq(&c, g->ssh_keys[i]);
                        strbuf_append(&c, "\n");
                }
        }
        if (g->timezone && *g->timezone) {
                strbuf_append(&c, "timezone: ");
                yq(&c, g->timezone);
                strbuf_append(&c, "\n");
        }
        if (!free_form) {
                *ret_meta = strbuf_steal(&m);
                *ret_user = strbuf_steal(&c);
                return 0;
        }
        StrBuf u = {0};
        strbuf_append(&u, "Content-Type: multipart/mixed; boundary=\"" BOUNDARY "\"\nMIME-Version: 1.0\n\n");
        strbuf_append(&u, "--" BOUNDARY "\nContent-Type: text/cloud-config; charset=\"utf-8\"\n"
                          "Content-Disposition: attachment; filename=\"armada.cfg\"\n\n");
        strbuf_append(&u, c.s);
        strbuf_printf(&u, "\n--" BOUNDARY "\nContent-Type: %s; charset=\"utf-8\"\n"
                          "Content-Disposition: attachment; filename=\"user-data\"\n"
                          "Merge-Type: list(append)+dict(no_replace,recurse_list)+str()\n\n", type);
        strbuf_append(&u, g->user_data);
        if (u.s[u.len - 1] != '\n')
                strbuf_append(&u, "\n");
        strbuf_append(&u, "--" BOUNDARY "--\n");
        strbuf_free(&c);
        *ret_meta = strbuf_steal(&m);
        *ret_user = strbuf_steal(&u);
        return 0;
}

int library_hostname_expand(const char *pattern, const char *vm_name, int n, char out[64]) {
        if (!pattern || !*pattern)
                pattern = "{name}";
        StrBuf b = {0};
        for (const char *p = pattern; *p;) {
                if (strncmp(p, "{name}", 6) == 0) {
                        for (const char *q = vm_name; *q; q++)
                                strbuf_appendn(&b, (*q == '.' || *q == '_') ? "-" : q, 1);
                        p += 6;
                } else if (strncmp(p, "{n}", 3) == 0) {
                        strbuf_printf(&b, "%d", n);
                        p += 3;
                } else if (*p == '{' || *p == '}') {
                        strbuf_free(&b);
                        return -EINVAL;
                } else
                        strbuf_appendn(&b, p++, 1);
        }
        _cleanup_free_ char *s = strbuf_steal(&b);
        size_t len = strlen(s);
        if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-')
                return -EINVAL;
        for (const char *q = s; *q; q++)
                if (!(isalnum((unsigned char) *q) && (unsigned char) *q < 0x80) && *q != '-')
                        return -EINVAL;
        memcpy(out, s, len + 1);
        return 0;
}

int library_deploy_vm_name(const char *name, bool numbered, int64_t n, char out[64]) {
        int k = numbered ? snprintf(out, 64, "%s-%lld", name, (long long) n) : snprintf(out, 64, "%s", name);
        return k < 0 || k >= 64 ? -ENAMETOOLONG : 0;
}

/* Runs argv (argv[0] looked up in PATH) with stdout and stderr into log;
 * returns its exit status, or -ENOENT when it cannot be run. */
int library_spawn_wait(char *const argv[], const char *log) {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        pid_t pid;
        int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0)
                return -r;
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static bool in_path(const char *prog) {
        const char *path = getenv("PATH");
        _cleanup_free_ char *copy = xstrdup(path && *path ? path : "/usr/bin:/bin");
        char *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                _cleanup_free_ char *p = xasprintf("%s/%s", d, prog);
                if (access(p, X_OK) == 0)
                        return true;
        }
        return false;
}

int library_seed_iso_build(const char *meta, const char *user, const char *out_path, char *why, size_t why_size) {
        _cleanup_free_ char *dir = xasprintf("%s/armada-seed-XXXXXX", library_tmp_dir());
        if (!mkdtemp(dir)) {
                snprintf(why, why_size, "Cannot create a temporary directory for the seed ISO: %s.", strerror(errno));
                return -errno;
        }
        _cleanup_free_ char *files = xasprintf("%s/files", dir);
        _cleanup_free_ char *mp = xasprintf("%s/meta-data", files), *up = xasprintf("%s/user-data", files);
        _cleanup_free_ char *log = xasprintf("%s/log", dir);
        int r = mkdir(files, 0700) < 0 ? -errno : 0;
        if (r == 0)
                r = file_write_atomic(mp, meta, strlen(meta), 0600);
        if (r == 0)
                r = file_write_atomic(up, user, strlen(user), 0600);
        if (r < 0)
                snprintf(why, why_size, "Cannot write the cloud-init files in '%s': %s.", dir, strerror(-r));
        else {
                /* The same flags as cloud-localds; xorriso emulates mkisofs. */
                char *xorriso[] = { "xorriso", "-as", "mkisofs", "-quiet", "-output", (char *) out_path, "-volid", "cidata",
                                    "-joliet", "-rock", files, NULL };
                char *geniso[] = { "genisoimage", "-quiet", "-output", (char *) out_path, "-volid", "cidata", "-joliet", "-rock",
                                   files, NULL };
                /* genisoimage starts three times faster than xorriso (it
                 * shows in deploying a hundred VMs at once). */
                char *const *argv = in_path("genisoimage") ? geniso : xorriso;
                int st = library_spawn_wait(argv, log);
                if (st != 0) {
                        _cleanup_free_ char *text = NULL;
                        if (file_read_all(log, &text, NULL) < 0)
                                text = xstrdup("");
                        size_t n = strlen(text);
                        while (n && (text[n - 1] == '\n' || text[n - 1] == ' ')) text[--n] = 0;
                        if (st == -ENOENT)
                                snprintf(why, why_size, "Cannot build the seed ISO: neither genisoimage nor xorriso is installed.");
                        else
                                snprintf(why, why_size, "Cannot build the seed ISO: %s exited with status %d: %.300s", argv[0], st, text);
                        r = -EIO;
                }
        }
        unlink(mp);
        unlink(up);
        unlink(log);
        rmdir(files);
        rmdir(dir);
        return r;
}

int library_image_convert(const char *src, const char *dst, char *why, size_t why_size) {
        _cleanup_free_ char *log = xasprintf("%s.log", dst);
        char *argv[] = { "qemu-img", "convert", "-q", "-O", "qcow2", (char *) src, (char *) dst, NULL };
        int st = library_spawn_wait(argv, log);
        _cleanup_free_ char *text = NULL;
        if (st != 0 && file_read_all(log, &text, NULL) < 0)
                text = xstrdup("");
        unlink(log);
        if (st == 0)
                return 0;
        if (st == -ENOENT)
                snprintf(why, why_size, "Cannot copy '%s': qemu-img is not installed.", src);
        else
                snprintf(why, why_size, "Cannot copy '%s': qemu-img exited with status %d: %.300s", src, st, text ? text : "");
        unlink(dst);
        return -EIO;
}

/* ------------------------------------------------------------------ */
/* quota */

int library_quota_check(const LibraryAmounts *limit, const LibraryAmounts *used, const LibraryAmounts *add,
                        char *why, size_t why_size) {
        const int64_t l[4] = { limit->points, limit->vms, limit->cpus, limit->memory_mib };
        const int64_t u[4] = { used->points, used->vms, used->cpus, used->memory_mib };
        const int64_t a[4] = { add->points, add->vms, add->cpus, add->memory_mib };
        static const char *const one[4] = { "point", "VM", "vCPU", "MiB of memory" };
        static const char *const many[4] = { "points", "VMs", "vCPUs", "MiB of memory" };
        for (int i = 0; i < 4; i++) {
                if (l[i] < 0 || a[i] <= 0)
                        continue;
                int64_t left = l[i] - u[i] > 0 ? l[i] - u[i] : 0;
                if (a[i] > left) {
                        if (why)
                                snprintf(why, why_size, "quota: needs %lld %s, %lld of %lld left", (long long) a[i],
                                         a[i] == 1 ? one[i] : many[i], (long long) left, (long long) l[i]);
                        return -EDQUOT;
                }
        }
        return 0;
}

const char *library_actions_invalid(const char *csv) {
        if (!csv || !*csv)
                return "must name at least one action";
        _cleanup_free_ char *copy = xstrdup(csv);
        char *save = NULL;
        for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save))
                if (!library_actions_allow(LIBRARY_GRANT_ACTIONS, w))
                        return "may only hold deploy, start, stop, kill, pause, resume and delete, separated by commas";
        return NULL;
}

bool library_actions_allow(const char *csv, const char *action) {
        return csv_has(csv, action);
}
