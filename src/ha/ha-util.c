/* The pure decisions of ha (priorities, the failure-declaration state
 * machine, restart order and candidates, fence argv parsing) and the one
 * process runner fencing uses. See ha.h. */
#include "ha.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int ha_priority_parse(const char *s, int *ret) {
        static const char *const names[] = { "off", "high", "medium", "low" };
        for (int i = 0; s && i < 4; i++)
                if (streq(s, names[i])) {
                        *ret = i;
                        return 0;
                }
        return -EINVAL;
}

const char *ha_priority_name(int p) {
        switch (p) {
        case 1: return "high";
        case 2: return "medium";
        case 3: return "low";
        default: return "off";
        }
}

HaWatchEvent ha_watch_step(HaWatch *w, bool alive, int64_t now, int64_t declare_ms) {
        if (alive) {
                HaWatchState was = w->state;
                w->state = HA_WATCH_OK;
                w->last_alive_ms = now;
                if (was == HA_WATCH_UNSEEN)
                        return HA_EV_UP;
                if (was == HA_WATCH_SUSPECT || was == HA_WATCH_FAILED)
                        return HA_EV_BACK;
                return HA_EV_NONE;
        }
        switch (w->state) {
        case HA_WATCH_OK:
                w->state = HA_WATCH_SUSPECT;
                return now - w->last_alive_ms >= declare_ms ? (w->state = HA_WATCH_FAILED, HA_EV_FAILED) : HA_EV_SUSPECT;
        case HA_WATCH_SUSPECT:
                if (now - w->last_alive_ms >= declare_ms) {
                        w->state = HA_WATCH_FAILED;
                        return HA_EV_FAILED;
                }
                return HA_EV_NONE;
        case HA_WATCH_UNSEEN:
        case HA_WATCH_FAILED:
        default:
                return HA_EV_NONE;
        }
}

size_t ha_candidates(const HaRated *rated, size_t n_rated, const int64_t *members, size_t n_members,
                     int64_t exclude, int64_t *out, size_t max) {
        size_t k = 0;
        for (size_t i = 0; i < n_rated && k < max; i++) {
                if (!(rated[i].rating > 0) || rated[i].host_id == exclude)
                        continue;
                bool member = false;
                for (size_t m = 0; m < n_members && !member; m++)
                        member = members[m] == rated[i].host_id;
                bool dup = false;
                for (size_t j = 0; j < k && !dup; j++)
                        dup = out[j] == rated[i].host_id;
                if (member && !dup)
                        out[k++] = rated[i].host_id;
        }
        return k;
}

static int cmp_ref(const void *a, const void *b) {
        const StoreHaRef *x = a, *y = b;
        int px = x->priority > 0 ? x->priority : 1000, py = y->priority > 0 ? y->priority : 1000;
        if (px != py)
                return px < py ? -1 : 1;
        return x->vm_id < y->vm_id ? -1 : x->vm_id > y->vm_id;
}

void ha_restart_order(StoreHaRef *refs, size_t n) {
        if (n > 1)
                qsort(refs, n, sizeof *refs, cmp_ref);
}

void ha_argv_free(char **argv) {
        for (char **p = argv; p && *p; p++)
                free(*p);
        free(argv);
}

char **ha_argv_parse(const char *json, char *why, size_t why_size) {
        _cleanup_json_ json_t *a = json ? json_loads(json, 0, NULL) : NULL;
        if (!a || !json_is_array(a) || json_array_size(a) == 0 || json_array_size(a) > 32) {
                snprintf(why, why_size, "The fence command must be a list of 1 to 32 arguments.");
                return NULL;
        }
        size_t n = json_array_size(a);
        char **argv = xcalloc(n + 1, sizeof *argv);
        for (size_t i = 0; i < n; i++) {
                json_t *s = json_array_get(a, i);
                if (!json_is_string(s) || json_string_length(s) == 0 || json_string_length(s) > 1024 ||
                    strlen(json_string_value(s)) != json_string_length(s)) {
                        snprintf(why, why_size, "Argument %zu of the fence command must be a non-empty string of at most"
                                                " 1024 bytes without NUL characters.", i + 1);
                        ha_argv_free(argv);
                        return NULL;
                }
                argv[i] = xstrdup(json_string_value(s));
        }
        return argv;
}

size_t ha_redact_args(char *text, char *const *argv) {
        size_t len = strlen(text);
        for (size_t a = 1; argv && argv[a]; a++) {
                size_t n = strlen(argv[a]);
                if (n < 4 || argv[a][0] == '-')
                        continue;
                char *p;
                while ((p = strstr(text, argv[a]))) {
                        memcpy(p, "***", 3);
                        memmove(p + 3, p + n, len - (size_t) (p - text) - n + 1);
                        len -= n - 3;
                }
        }
        return len;
}

int ha_run_command(char *const *argv, int timeout_ms, char *why, size_t why_size) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0) {
                snprintf(why, why_size, "cannot create a pipe: %s", strerror(errno));
                return -errno;
        }
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        /* Its own process group, so a timeout kills what it started too. */
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        posix_spawnattr_setpgroup(&attr, 0);
        /* armadad blocks its signals and ignores SIGPIPE; the command gets
         * the defaults. */
        sigset_t none, deflt;
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&attr, &none);
        sigemptyset(&deflt);
        sigaddset(&deflt, SIGPIPE);
        posix_spawnattr_setsigdefault(&attr, &deflt);
        pid_t pid;
        int e = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        close(fds[1]);
        if (e != 0) {
                close(fds[0]);
                snprintf(why, why_size, "cannot run '%s': %s", argv[0], strerror(e));
                return -e;
        }
        char out[4096];
        size_t len = 0;
        int64_t deadline = mono_ms() + timeout_ms;
        bool timed_out = false, eof = false;
        int status = 0;
        for (;;) {
                if (!eof) {
                        struct pollfd p = { .fd = fds[0], .events = POLLIN };
                        if (poll(&p, 1, 20) > 0) {
                                char buf[1024];
                                ssize_t k = read(fds[0], buf, sizeof buf);
                                if (k <= 0)
                                        eof = true;
                                else {
                                        /* Keep the last bytes: that is where errors are. */
                                        if (len + (size_t) k >= sizeof out) {
                                                size_t drop = len + (size_t) k - (sizeof out - 1);
                                                drop = drop > len ? len : drop;
                                                memmove(out, out + drop, len - drop);
                                                len -= drop;
                                        }
                                        memcpy(out + len, buf, (size_t) k);
                                        len += (size_t) k;
                                }
                        }
                } else
                        usleep(10 * 1000);
                pid_t w = waitpid(pid, &status, WNOHANG);
                if (w == pid)
                        break;
                if (mono_ms() > deadline) {
                        kill(-pid, SIGKILL);
                        kill(pid, SIGKILL);
                        waitpid(pid, &status, 0);
                        timed_out = true;
                        break;
                }
        }
        close(fds[0]);
        out[len] = 0;
        while (len && (out[len - 1] == '\n' || out[len - 1] == ' ')) out[--len] = 0;
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) out[i] < 0x20) out[i] = ' ';
        len = ha_redact_args(out, argv);
        const char *tail = len > 300 ? out + len - 300 : out;
        if (timed_out) {
                snprintf(why, why_size, "'%s' did not finish within %d ms and was killed%s%s", argv[0], timeout_ms,
                         len ? "; it said: " : "", tail);
                return -ETIMEDOUT;
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        if (WIFEXITED(status))
                snprintf(why, why_size, "'%s' exited with status %d%s%s", argv[0], WEXITSTATUS(status),
                         len ? "; it said: " : "", tail);
        else
                snprintf(why, why_size, "'%s' was killed by signal %d%s%s", argv[0], WTERMSIG(status),
                         len ? "; it said: " : "", tail);
        return -EIO;
}
