/* libvirt connection URIs: the allow-list (hv_uri_check in hv.h) and the
 * normal form two spellings of one connection share (hv_uri_normalize).
 *
 * The allow-list.
 *
 * A libvirt URI is a command: "qemu+ext:///system?command=/tmp/x" runs a
 * program as armadad's user, "test:///etc/passwd" reads a file and quotes
 * it back in the error, "?netcat=" or "?name=" change what runs on the
 * other side. So a host URI is parsed the way libvirt parses it (libxml2's
 * xmlParseURI, which libvirt's virURIParse wraps; query parameters split
 * on '&' and ';' and percent-decoded, as virURIParseParams does) and must
 * pass an allow-list of transports, servers, paths and parameters. Pure:
 * no I/O, no libvirt call. */
#include "hv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <libxml/uri.h>

#include "util/util.h"

static void uri_cleanup(xmlURIPtr *p) {
        if (*p)
                xmlFreeURI(*p);
}

static const char *const transports[] = { "qemu", "qemu+tcp", "qemu+tls", "qemu+ssh", "qemu+libssh2", "esx", NULL };
#define TRANSPORTS_TEXT "qemu, qemu+tcp, qemu+tls, qemu+ssh, qemu+libssh2 or esx"

/* Parameters of libvirt's remote and esx drivers that only tune how it
 * authenticates; never one that names a program (command, netcat), a
 * remote driver name (name) or a proxy. */
static const char *const params[] = { "no_verify", "keyfile", "known_hosts", "sshauth", NULL };
#define PARAMS_TEXT "no_verify, keyfile, known_hosts and sshauth"

static bool in_list(const char *s, const char *const *list) {
        for (size_t i = 0; list[i]; i++)
                if (streq(s, list[i]))
                        return true;
        return false;
}

_printf_(3, 4) static int refuse(char *why, size_t why_size, const char *fmt, ...) {
        if (why && why_size > 0) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(why, why_size, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

static int hexval(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
}

/* Percent-decodes s[0..n) into out (size out_size), '+' as a space when
 * plus_is_space (libvirt does that for values, not for names). Returns the
 * decoded length, or -1 when an escape is broken, decodes to NUL or to a
 * control character, or the result does not fit. */
static ssize_t decode(const char *s, size_t n, bool plus_is_space, char *out, size_t out_size) {
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
                int c = (unsigned char) s[i];
                if (c == '%') {
                        int hi = i + 1 < n ? hexval(s[i + 1]) : -1, lo = i + 2 < n ? hexval(s[i + 2]) : -1;
                        if (hi < 0 || lo < 0)
                                return -1;
                        c = hi * 16 + lo;
                        i += 2;
                } else if (c == '+' && plus_is_space)
                        c = ' ';
                if (c < 0x20 || c == 0x7f || o + 1 >= out_size)
                        return -1;
                out[o++] = (char) c;
        }
        out[o] = 0;
        return (ssize_t) o;
}

/* Values end up as arguments of ssh or in TLS settings: file paths and
 * short words only, nothing a shell or ssh's option parser would read. */
static bool value_ok(const char *v) {
        if (v[0] == '-')
                return false;
        return strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._-~,:@") == strlen(v);
}

/* Host names, IPv4 and (bracket-less, as libxml2 gives them) IPv6
 * addresses; never something ssh would take for an option. */
static bool server_ok(const char *s) {
        return s[0] && s[0] != '-' && strlen(s) < 256 &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-:[]") == strlen(s);
}

static bool user_ok(const char *s) {
        return s[0] && s[0] != '-' && strlen(s) < 64 &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == strlen(s);
}

static int check_query(const char *query, bool allow_test, char *why, size_t why_size) {
        for (const char *p = query; *p;) {
                size_t n = strcspn(p, "&;");
                const char *eq = memchr(p, '=', n);
                size_t name_len = eq ? (size_t) (eq - p) : n;
                if (n > 0) {
                        char name[64], value[512];
                        if (decode(p, name_len, false, name, sizeof name) < 0)
                                return refuse(why, why_size, "its query has a parameter name that is not plain text");
                        if (!(in_list(name, params) || (allow_test && streq(name, "socket"))))
                                return refuse(why, why_size, "the parameter '%s' is not allowed; a host URI may carry only %s",
                                              name, PARAMS_TEXT);
                        if (eq && decode(eq + 1, n - name_len - 1, true, value, sizeof value) < 0)
                                return refuse(why, why_size, "the value of parameter '%s' is not plain text", name);
                        if (eq && !value_ok(value))
                                return refuse(why, why_size, "the value of parameter '%s' may hold only letters, digits and"
                                              " '/', '.', '_', '-', '~', ',', ':', '@', and must not begin with '-'", name);
                }
                p += n;
                if (*p)
                        p++;
        }
        return 0;
}

int hv_uri_check(const char *uri, bool allow_test, char *why, size_t why_size) {
        if (!uri || !uri[0])
                return refuse(why, why_size, "it is empty");
        if (strlen(uri) > 1000)
                return refuse(why, why_size, "it is longer than 1000 characters");
        for (const char *p = uri; *p; p++)
                if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f || strchr("\"'<>\\`{}|^", *p))
                        return refuse(why, why_size, "it holds a space, a quote or another character a URI cannot hold");
        /* A scheme, then "//": libvirt would read anything else as an alias
         * from its own configuration. */
        const char *sep = strstr(uri, "://");
        if (!sep || sep == uri)
                return refuse(why, why_size, "it is not a libvirt URI such as qemu+tcp://10.0.0.2/system");

        _cleanup_(uri_cleanup) xmlURIPtr u = xmlParseURI(uri);
        if (!u || !u->scheme)
                return refuse(why, why_size, "it is not a libvirt URI such as qemu+tcp://10.0.0.2/system");
        if ((size_t) (sep - uri) != strlen(u->scheme) || strncmp(uri, u->scheme, strlen(u->scheme)) != 0)
                return refuse(why, why_size, "its scheme cannot be read");
        if (u->fragment || u->opaque)
                return refuse(why, why_size, "it has a fragment ('#') or an opaque part, which libvirt URIs do not have");

        bool test = streq(u->scheme, "test");
        if (test) {
                if (!allow_test)
                        return refuse(why, why_size, "test: URIs (libvirt's test driver, which reads any file it is given)"
                                      " are allowed only when armadad runs with --allow-test-hosts; use "
                                      TRANSPORTS_TEXT);
                if (u->server || u->user || u->port > 0)
                        return refuse(why, why_size, "a test: URI names no server: test:///default or test:///PATH");
                if (!u->path || u->path[0] != '/')
                        return refuse(why, why_size, "a test: URI needs a path: test:///default or test:///PATH");
        } else if (!in_list(u->scheme, transports)) {
                return refuse(why, why_size, "the transport '%s' is not allowed; use %s%s", u->scheme, TRANSPORTS_TEXT,
                              allow_test ? " or test" : "");
        } else if (streq(u->scheme, "esx")) {
                if (!u->server)
                        return refuse(why, why_size, "an esx: URI names its server: esx://HOST/");
                if (u->path && !streq(u->path, "/") &&
                    strspn(u->path, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._-") != strlen(u->path))
                        return refuse(why, why_size, "its path may hold only letters, digits and '/', '.', '_', '-'");
        } else {
                if (!u->path || !(streq(u->path, "/system") || streq(u->path, "/session")))
                        return refuse(why, why_size, "a qemu URI ends in /system or /session, such as qemu+tcp://10.0.0.2/system");
        }
        if (u->server && !server_ok(u->server))
                return refuse(why, why_size, "its server may hold only letters, digits, '.', '-' and ':', and must not begin with '-'");
        if (u->user && !user_ok(u->user))
                return refuse(why, why_size, "its user name may hold only letters, digits, '.', '_' and '-', and must not begin with '-'");
        const char *query = u->query_raw ? u->query_raw : u->query;
        if (query && query[0])
                return check_query(query, allow_test, why, why_size);
        return 0;
}

/* ---- normal form ----
 * So that registering a host a second time under the same URI is caught
 * before anything connects. Pure string work. */

static char *dup_n(const char *s, size_t n) {
        char *d = xmalloc(n + 1);
        memcpy(d, s, n);
        d[n] = 0;
        return d;
}

static void lower(char *s) {
        for (; *s; s++)
                if ('A' <= *s && *s <= 'Z')
                        *s = (char) (*s - 'A' + 'a');
}

/* The port a transport uses when the URI names none. */
static const char *default_port(const char *scheme) {
        const char *plus = strchr(scheme, '+');
        const char *transport = plus ? plus + 1 : "";
        if (streq(transport, "tcp"))
                return "16509";
        if (streq(transport, "tls") || (!plus && !streq(scheme, "test")))
                return "16514"; /* a remote host without a transport means TLS */
        if (streq(transport, "ssh") || streq(transport, "libssh") || streq(transport, "libssh2"))
                return "22";
        return NULL;
}

bool hv_uri_is_test(const char *uri) {
        if (!uri)
                return false;
        size_t n = strcspn(uri, "+:");
        return n == 4 && strncasecmp(uri, "test", 4) == 0 && (uri[4] == '+' || strncmp(uri + 4, "://", 3) == 0);
}

char *hv_uri_normalize(const char *uri) {
        const char *sep = uri ? strstr(uri, "://") : NULL;
        if (!sep)
                return xstrdup(uri ? uri : "");
        _cleanup_free_ char *scheme = dup_n(uri, (size_t) (sep - uri));
        lower(scheme);
        const char *rest = sep + 3;
        size_t auth_len = strcspn(rest, "/?");
        _cleanup_free_ char *auth = dup_n(rest, auth_len);
        const char *path = rest + auth_len;
        size_t path_len = strcspn(path, "?");
        const char *query = path + path_len;

        /* [user@]host[:port], host possibly an [IPv6] literal */
        char *at = strrchr(auth, '@');
        char *host = at ? at + 1 : auth;
        char *port = NULL;
        char *close = host[0] == '[' ? strchr(host, ']') : NULL;
        char *colon = close ? (close[1] == ':' ? close + 1 : NULL) : strrchr(host, ':');
        if (colon) {
                *colon = 0;
                port = colon + 1;
        }
        lower(host);
        if (port && (!port[0] || (default_port(scheme) && streq(port, default_port(scheme)))))
                port = NULL;
        /* A local driver's host part is the machine itself. */
        bool remote_transport = strchr(scheme, '+') && !strstr(scheme, "+unix");
        if (!remote_transport && (streq(host, "localhost") || streq(host, "127.0.0.1") || streq(host, "[::1]")))
                host[0] = 0;
        if (at)
                *at = 0;

        while (path_len > 1 && path[path_len - 1] == '/')
                path_len--;
        if (path_len == 1 && path[0] == '/')
                path_len = 0;
        return xasprintf("%s://%s%s%s%s%s/%.*s%s", scheme, at ? auth : "", at ? "@" : "", host, port ? ":" : "",
                         port ? port : "", (int) (path_len && path[0] == '/' ? path_len - 1 : path_len),
                         path_len && path[0] == '/' ? path + 1 : path, query);
}

int hv_uri_host(const char *uri, char *out, size_t size) {
        out[0] = 0;
        const char *p = strstr(uri, "://");
        if (!p)
                return 0;
        p += 3;
        const char *at = strchr(p, '@'), *slash = strchr(p, '/');
        if (at && (!slash || at < slash))
                p = at + 1;
        size_t n;
        if (*p == '[') {
                const char *close = strchr(++p, ']');
                if (!close)
                        return -EINVAL;
                n = (size_t) (close - p);
        } else
                n = strcspn(p, ":/?");
        if (n >= size)
                return -ENAMETOOLONG;
        memcpy(out, p, n);
        out[n] = 0;
        return 0;
}
