/* The armada credentials file and secret input. The file,
 * ~/.config/armada/credentials (or $XDG_CONFIG_HOME/armada/credentials), holds
 * {"server","token","user"} from the last `armada login`; it is created 0600
 * in a 0700 directory because the token is as good as the password until it
 * expires. Passwords are read from stdin, the environment, or /dev/tty with
 * echo off, never from the command line where `ps` would show them. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>

char *creds_path(void) {
        const char *xdg = getenv("XDG_CONFIG_HOME");
        if (xdg && xdg[0] == '/')
                return xasprintf("%s/armada/credentials", xdg);
        const char *home = getenv("HOME");
        if (!home || !*home)
                return NULL;
        return xasprintf("%s/.config/armada/credentials", home);
}

void creds_done(Credentials *cr) {
        free(cr->server);
        secret_free(cr->token);
        free(cr->user);
        *cr = (Credentials) {0};
}

int creds_load(Credentials *ret) {
        _cleanup_free_ char *path = creds_path();
        _cleanup_free_ char *data = NULL;
        if (!path)
                return -ENOENT;
        int r = file_read_all(path, &data, NULL);
        if (r < 0)
                return r;
        json_error_t err;
        _cleanup_json_ json_t *j = json_loads(data, 0, &err);
        explicit_bzero(data, strlen(data));
        if (!json_is_object(j) || !jstr(j, "token"))
                return -EINVAL;
        *ret = (Credentials) {
                .server = xstrdup(jstr(j, "server")),
                .token = xstrdup(jstr(j, "token")),
                .user = xstrdup(jstr(j, "user")),
        };
        return 0;
}

int creds_save(const Credentials *cr) {
        _cleanup_free_ char *path = creds_path();
        if (!path)
                return -ENOENT;
        _cleanup_free_ char *dir = xstrdup(path);
        *strrchr(dir, '/') = 0;
        int r = mkdir_p(dir, 0700);
        if (r < 0)
                return r;
        /* mkdir_p leaves an existing directory's mode alone; tighten ours. */
        if (chmod(dir, 0700) < 0)
                return -errno;
        _cleanup_json_ json_t *j = json_pack("{s:s?, s:s, s:s?}", "server", cr->server,
                                             "token", cr->token, "user", cr->user);
        if (!j)
                return -EINVAL;
        char *s = json_dumps(j, JSON_INDENT(2));
        if (!s)
                return -ENOMEM;
        size_t len = strlen(s);
        s = xrealloc(s, len + 2);
        s[len++] = '\n';
        s[len] = 0;
        r = file_write_atomic(path, s, len, 0600);
        secret_free(s);
        return r;
}

int creds_remove(void) {
        _cleanup_free_ char *path = creds_path();
        if (!path)
                return 0;
        if (unlink(path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

void secret_free(char *s) {
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}

/* Reads one line from f, without its end of line. NULL at EOF before any
 * character or on error. */
static char *read_line(FILE *f) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, f);
        if (n < 0) {
                if (line)
                        explicit_bzero(line, cap);
                free(line);
                return NULL;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = 0;
        return line;
}

int read_line_tty(const char *prompt, char **ret) {
        _cleanup_fclose_ FILE *tty = fopen("/dev/tty", "r+e");
        if (!tty)
                return fail("cannot ask for %s: there is no terminal", prompt);
        fprintf(tty, "%s: ", prompt);
        fflush(tty);
        char *s = read_line(tty);
        if (!s)
                return fail("no %s given", prompt);
        *ret = s;
        return 0;
}

static volatile sig_atomic_t got_signal;
static void on_signal(int sig) { got_signal = sig; }

int read_password(const char *prompt, bool from_stdin, const char *env, char **ret) {
        if (from_stdin) {
                char *s = read_line(stdin);
                if (!s)
                        return fail("no password on standard input");
                *ret = s;
                return 0;
        }
        const char *e = env ? getenv(env) : NULL;
        if (e) {
                *ret = xstrdup(e);
                return 0;
        }

        _cleanup_fclose_ FILE *tty = fopen("/dev/tty", "r+e");
        if (!tty)
                return fail("cannot ask for the password: there is no terminal; use --password-stdin%s%s",
                            env ? " or set " : "", env ? env : "");
        int fd = fileno(tty);
        struct termios old, quiet;
        bool have_termios = tcgetattr(fd, &old) == 0;
        struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term;
        if (have_termios) {
                /* Restore the echo even when interrupted at the prompt. */
                got_signal = 0;
                sigaction(SIGINT, &sa, &old_int);
                sigaction(SIGTERM, &sa, &old_term);
                quiet = old;
                quiet.c_lflag &= ~(tcflag_t) (ECHO | ECHOE | ECHOK | ECHONL);
                quiet.c_lflag |= ICANON;
                tcsetattr(fd, TCSAFLUSH, &quiet);
        }
        fprintf(tty, "%s: ", prompt);
        fflush(tty);
        char *s = read_line(tty);
        fputc('\n', tty);
        fflush(tty);
        if (have_termios) {
                tcsetattr(fd, TCSAFLUSH, &old);
                sigaction(SIGINT, &old_int, NULL);
                sigaction(SIGTERM, &old_term, NULL);
                if (got_signal) {
                        secret_free(s);
                        raise(got_signal);
                        return EXIT_ERROR;
                }
        }
        if (!s)
                return fail("no password given");
        *ret = s;
        return 0;
}
