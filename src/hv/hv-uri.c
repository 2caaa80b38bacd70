/* Comparing libvirt URIs: the form two spellings of one connection share,
 * so that registering a host a second time under the same URI is caught
 * before anything connects. Pure string work; nothing here talks to
 * libvirt (whose own URI parser is not public API). */
#include "hv.h"
#include "hv-internal.h"

#include <string.h>
#include <strings.h>

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
