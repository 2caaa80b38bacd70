/* Implementation of util.h: the Armada-agnostic helpers. */
#include "util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static LogLevel log_level = LOG_LEVEL_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_level(LogLevel level) { log_level = level; }

void log_msg(LogLevel level, const char *fmt, ...) {
        static const char *const names[] = { "debug", "info", "warn", "error" };
        if (level < log_level)
                return;
        char ts[32];
        time_format(now_ms(), ts);
        va_list ap;
        va_start(ap, fmt);
        pthread_mutex_lock(&log_lock);
        fprintf(stderr, "%s %-5s ", ts, names[level]);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        fflush(stderr);
        pthread_mutex_unlock(&log_lock);
        va_end(ap);
}

static void oom(void) {
        fputs("armada: out of memory\n", stderr);
        abort();
}

void *xmalloc(size_t n) {
        void *p = malloc(n ? n : 1);
        if (!p) oom();
        return p;
}
void *xmalloc_aligned(size_t align, size_t n) {
        void *p = NULL;
        if (posix_memalign(&p, align, n ? n : 1) != 0) oom();
        return p;
}
void *xcalloc(size_t n, size_t m) {
        void *p = calloc(n ? n : 1, m ? m : 1);
        if (!p) oom();
        return p;
}
void *xrealloc(void *p, size_t n) {
        p = realloc(p, n ? n : 1);
        if (!p) oom();
        return p;
}
char *xstrdup(const char *s) {
        if (!s) return NULL;
        char *p = strdup(s);
        if (!p) oom();
        return p;
}
char *xasprintf(const char *fmt, ...) {
        va_list ap;
        char *s;
        va_start(ap, fmt);
        int r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0) oom();
        return s;
}

static void strbuf_reserve(StrBuf *b, size_t extra) {
        if (b->len + extra + 1 <= b->cap)
                return;
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + extra + 1)
                cap *= 2;
        b->s = xrealloc(b->s, cap);
        b->cap = cap;
}
void strbuf_appendn(StrBuf *b, const char *s, size_t n) {
        strbuf_reserve(b, n);
        memcpy(b->s + b->len, s, n);
        b->len += n;
        b->s[b->len] = 0;
}
void strbuf_append(StrBuf *b, const char *s) { strbuf_appendn(b, s, strlen(s)); }
void strbuf_printf(StrBuf *b, const char *fmt, ...) {
        va_list ap, ap2;
        va_start(ap, fmt);
        va_copy(ap2, ap);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0) { va_end(ap2); return; }
        strbuf_reserve(b, (size_t) n);
        vsnprintf(b->s + b->len, (size_t) n + 1, fmt, ap2);
        va_end(ap2);
        b->len += (size_t) n;
}
char *strbuf_steal(StrBuf *b) {
        char *s = b->s ? b->s : xstrdup("");
        *b = (StrBuf) {0};
        return s;
}
void strbuf_free(StrBuf *b) {
        free(b->s);
        *b = (StrBuf) {0};
}

const char *name_invalid_reason(const char *s) {
        if (!s || !*s)
                return "must not be empty";
        size_t n = strlen(s);
        if (n > 63)
                return "must be at most 63 characters long";
        if (!isalnum((unsigned char) s[0]) || (unsigned char) s[0] >= 0x80)
                return "must start with a letter or a digit";
        for (size_t i = 1; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                if (c >= 0x80 || !(isalnum(c) || c == '.' || c == '_' || c == '-'))
                        return "may contain only letters, digits, '.', '_' and '-'";
        }
        return NULL;
}
bool name_is_valid(const char *s) { return name_invalid_reason(s) == NULL; }

int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
int64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
struct timespec time_after_ms(int clock, int64_t ms) {
        struct timespec ts;
        clock_gettime(clock, &ts);
        int64_t ns = ts.tv_nsec + (ms % 1000) * 1000000;
        ts.tv_sec += ms / 1000 + ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        return ts;
}
void time_format(int64_t ms, char out[32]) {
        time_t t = (time_t) (ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out + n, 32 - n, ".%03dZ", (int) (ms % 1000));
}

int random_bytes(void *buf, size_t n) {
        unsigned char *p = buf;
        while (n > 0) {
                ssize_t r = getrandom(p, n, 0);
                if (r < 0) {
                        if (errno == EINTR) continue;
                        return -errno;
                }
                p += r;
                n -= (size_t) r;
        }
        return 0;
}
uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
        const unsigned char *b = p;
        for (size_t i = 0; i < n; i++) {
                h ^= b[i];
                h *= 0x100000001b3ULL;
        }
        return h;
}

uint64_t fnv1a_str(uint64_t h, const char *s) {
        return fnv1a(h, s ? s : "\1", s ? strlen(s) + 1 : 1);
}

uint64_t fnv1a_i64(uint64_t h, int64_t v) {
        return fnv1a(h, &v, sizeof v);
}

void hex_encode(const unsigned char *in, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 15];
        }
        out[2 * n] = 0;
}
void uuid_generate(char out[37]) {
        unsigned char b[16];
        if (random_bytes(b, sizeof b) < 0)
                abort(); /* getrandom() cannot fail on Linux >= 3.17 once seeded */
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}
bool uuid_is_valid(const char *s) {
        if (!s || strlen(s) != 36)
                return false;
        for (int i = 0; i < 36; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-') return false;
                } else if (!isxdigit((unsigned char) s[i]))
                        return false;
        }
        return true;
}

int size_parse(const char *s, uint64_t default_unit, uint64_t *ret_bytes) {
        if (!s || !*s)
                return -EINVAL;
        for (const char *p = s; *p; p++)
                if (*p == '-' || isspace((unsigned char) *p))
                        return -EINVAL;
        errno = 0;
        char *end;
        double v = strtod(s, &end);
        if (errno || end == s || !isfinite(v) || v < 0)
                return -EINVAL;
        uint64_t unit = default_unit;
        if (*end) {
                char u = (char) toupper((unsigned char) *end);
                const char *rest = end + 1;
                switch (u) {
                case 'B': unit = 1; rest = end + 1; break;
                case 'K': unit = 1ULL << 10; break;
                case 'M': unit = 1ULL << 20; break;
                case 'G': unit = 1ULL << 30; break;
                case 'T': unit = 1ULL << 40; break;
                default: return -EINVAL;
                }
                if (u != 'B') {
                        if (strcasecmp(rest, "") != 0 && strcasecmp(rest, "B") != 0 && strcasecmp(rest, "iB") != 0)
                                return -EINVAL;
                } else if (*rest)
                        return -EINVAL;
        }
        double bytes = v * (double) unit;
        if (bytes >= 18446744073709551615.0)
                return -ERANGE;
        *ret_bytes = (uint64_t) bytes;
        return 0;
}

bool str_is_digits(const char *s) {
        if (!s || !*s) return false;
        for (; *s; s++)
                if (!isdigit((unsigned char) *s)) return false;
        return true;
}
int parse_i64(const char *s, int64_t *ret) {
        if (!str_is_digits(s) || strlen(s) > 18)
                return strlen(s ? s : "") > 18 && str_is_digits(s) ? -ERANGE : -EINVAL;
        *ret = strtoll(s, NULL, 10);
        return 0;
}

int file_read_all(const char *path, char **ret, size_t *ret_len) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        StrBuf b = {0};
        char chunk[8192];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
                strbuf_appendn(&b, chunk, n);
        if (ferror(f)) {
                strbuf_free(&b);
                return -EIO;
        }
        if (ret_len) *ret_len = b.len;
        *ret = strbuf_steal(&b);
        return 0;
}
int file_write_atomic(const char *path, const char *data, size_t len, int mode) {
        _cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", path, (int) getpid());
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        size_t off = 0;
        while (off < len) {
                ssize_t w = write(fd, data + off, len - off);
                if (w < 0) {
                        if (errno == EINTR) continue;
                        int e = -errno;
                        close(fd);
                        unlink(tmp);
                        return e;
                }
                off += (size_t) w;
        }
        if (fchmod(fd, (mode_t) mode) < 0 || fsync(fd) < 0 || close(fd) < 0) {
                int e = -errno;
                unlink(tmp);
                return e;
        }
        if (rename(tmp, path) < 0) {
                int e = -errno;
                unlink(tmp);
                return e;
        }
        return 0;
}
/* Removes everything inside the directory open as dfd (closed here). The
 * count of top-level entries removed, or the last -errno. */
static int clear_dir_fd(int dfd) {
        DIR *d = fdopendir(dfd);
        if (!d) {
                int e = -errno;
                close(dfd);
                return e;
        }
        int n = 0, r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                const char *name = de->d_name;
                if (streq(name, ".") || streq(name, ".."))
                        continue;
                if (unlinkat(dirfd(d), name, 0) == 0) {
                        n++;
                        continue;
                }
                if (errno != EISDIR) {
                        r = -errno;
                        continue;
                }
                int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0) {
                        r = -errno;
                        continue;
                }
                int k = clear_dir_fd(sub);
                if (k < 0)
                        r = k;
                if (unlinkat(dirfd(d), name, AT_REMOVEDIR) == 0)
                        n++;
                else
                        r = -errno;
        }
        closedir(d);
        return r < 0 ? r : n;
}

int dir_private_clear(const char *path) {
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return -errno;
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ELOOP ? -ENOTDIR : -errno;
        struct stat st;
        int e = 0;
        if (fstat(fd, &st) < 0)
                e = -errno;
        else if (st.st_uid != geteuid())
                e = -EPERM;
        else if (fchmod(fd, 0700) < 0)
                e = -errno;
        if (e < 0) {
                close(fd);
                return e;
        }
        return clear_dir_fd(fd);
}

static const char *const system_dirs[] = { "/etc", "/usr", "/boot", "/proc", "/sys", "/dev",
                                           "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", NULL };

int path_outside_system_normalize(const char *path, char **ret, char *why, size_t why_size) {
        char scratch[1];
        if (!why || why_size == 0) {
                why = scratch;
                why_size = sizeof scratch;
        }
        if (!path || path[0] != '/') {
                snprintf(why, why_size, "is not an absolute path");
                return -EINVAL;
        }
        for (const char *p = path; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f) {
                        snprintf(why, why_size, "holds a control character");
                        return -EINVAL;
                }
        StrBuf out = {0};
        for (const char *p = path; *p;) {
                while (*p == '/')
                        p++;
                size_t n = strcspn(p, "/");
                if (n == 0)
                        break;
                if (n == 2 && p[0] == '.' && p[1] == '.') {
                        strbuf_free(&out);
                        snprintf(why, why_size, "has a '..' segment");
                        return -EINVAL;
                }
                if (!(n == 1 && p[0] == '.')) {
                        strbuf_append(&out, "/");
                        strbuf_appendn(&out, p, n);
                }
                p += n;
        }
        _cleanup_free_ char *norm = strbuf_steal(&out);
        if (!norm[0]) {
                snprintf(why, why_size, "is the root directory");
                return -EINVAL;
        }
        for (size_t i = 0; system_dirs[i]; i++) {
                size_t n = strlen(system_dirs[i]);
                if (strncmp(norm, system_dirs[i], n) == 0 && (norm[n] == 0 || norm[n] == '/')) {
                        snprintf(why, why_size, "is inside the system directory '%s'", system_dirs[i]);
                        return -EINVAL;
                }
        }
        *ret = steal_ptr(norm);
        return 0;
}

int mkdir_p(const char *path, int mode) {
        _cleanup_free_ char *p = xstrdup(path);
        for (char *s = p + 1; *s; s++) {
                if (*s != '/') continue;
                *s = 0;
                if (mkdir(p, (mode_t) mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, (mode_t) mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int64_t jget_int(const json_t *o, const char *k) {
        return json_integer_value(json_object_get(o, k));
}

const char *jget_str(const json_t *o, const char *k) {
        const char *s = json_string_value(json_object_get(o, k));
        return s ? s : "";
}

bool csv_has(const char *csv, const char *word) {
        size_t n = strlen(word);
        if (!csv || n == 0)
                return false;
        for (const char *p = csv; *p;) {
                size_t k = strcspn(p, ",");
                if (k == n && strncmp(p, word, n) == 0)
                        return true;
                p += k;
                if (*p == ',') p++;
        }
        return false;
}

bool addr_is_loopback(const char *addr) {
        return strncmp(addr, "127.", 4) == 0 || streq(addr, "::1") || streq(addr, "[::1]") || streq(addr, "localhost");
}
