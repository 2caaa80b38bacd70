/* The layering rule for the API (CONVENTIONS.md §10, issue 13): a handler
 * parses, calls one operation of a capability module and maps the result,
 * so no store_*() or hv_*() call is left in src/api/api-handlers.c (its
 * lists read the in-memory model, api-list.c), api.c, api-ha.c,
 * api-library.c, api-monitor.c, api-place.c, api-web.c, api-list.c or
 * api-stream.c (the stream's feed comes from the jobs module), api-snapshot.c
 * or api-network.c. Reads the sources: ARMADA_TEST_DATA is <root>/tests/data. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "util/util.h"

static char *source(const char *path) {
        char *s = NULL;
        size_t len;
        assert_int_equal(file_read_all(path, &s, &len), 0);
        return s;
}

/* Blanks comments and string and character literals (keeping newlines). */
static void strip(char *s) {
        for (char *p = s; *p; p++) {
                if (p[0] == '/' && p[1] == '*') {
                        char *e = strstr(p + 2, "*/");
                        char *end = e ? e + 2 : p + strlen(p);
                        for (; p < end; p++)
                                if (*p != '\n') *p = ' ';
                        p--;
                } else if (p[0] == '/' && p[1] == '/') {
                        for (; *p && *p != '\n'; p++)
                                *p = ' ';
                        if (!*p) return;
                } else if (*p == '"' || *p == '\'') {
                        char q = *p;
                        for (p++; *p && *p != q; p++) {
                                if (*p == '\\' && p[1]) *p++ = ' ';
                                if (*p != '\n') *p = ' ';
                        }
                        if (!*p) return;
                }
        }
}

static bool ident_char(char c) {
        return isalnum((unsigned char) c) || c == '_';
}

/* Counts calls of store_*() and hv_*() in file, outside the top-level
 * functions named in skip (a function starts at a line "... name(" in
 * column 0 and ends at a "}" in column 0); prints each. */
static int count_calls(const char *path, const char *const *skip) {
        _cleanup_free_ char *s = source(path);
        strip(s);
        int n = 0, line = 1;
        bool skipping = false;
        for (char *p = s; *p; p++) {
                bool bol = p == s || p[-1] == '\n';
                if (bol && *p == '}')
                        skipping = false;
                if (bol && *p && !isspace((unsigned char) *p) && *p != '}' && *p != '#') {
                        char *nl = strchr(p, '\n');
                        for (const char *const *k = skip; *k; k++) {
                                const char *m = strstr(p, *k);
                                size_t kl = strlen(*k);
                                if (m && (!nl || m < nl) && m[kl] == '(' && (m == p || !ident_char(m[-1])))
                                        skipping = true;
                        }
                }
                if (*p == '\n')
                        line++;
                if (skipping || (p > s && ident_char(p[-1])))
                        continue;
                size_t pre = strncmp(p, "store_", 6) == 0 ? 6 : strncmp(p, "hv_", 3) == 0 ? 3 : 0;
                if (!pre)
                        continue;
                char *q = p + pre;
                while (ident_char(*q))
                        q++;
                while (*q == ' ' || *q == '\t' || *q == '\n')
                        q++;
                if (*q == '(') {
                        print_message("%s:%d: %.*s()\n", path, line, (int) strcspn(p, " \t\n("), p);
                        n++;
                }
        }
        return n;
}

static int count_in_tree(const char *rel, const char *const *skip) {
        const char *data = getenv("ARMADA_TEST_DATA");
        assert_non_null(data);
        _cleanup_free_ char *path = xasprintf("%s/../../%s", data, rel);
        return count_calls(path, skip);
}

static void test_handlers_call_operations(void **state) {
        static const char *const skip[] = { NULL };
        assert_int_equal(count_in_tree("src/api/api-handlers.c", skip), 0);
}

static void test_server_calls_operations(void **state) {
        static const char *const skip[] = { NULL };
        assert_int_equal(count_in_tree("src/api/api.c", skip), 0);
}

static void test_capability_handlers_call_operations(void **state) {
        static const char *const skip[] = { NULL };
        static const char *const files[] = { "src/api/api-ha.c", "src/api/api-library.c", "src/api/api-monitor.c",
                                             "src/api/api-place.c", "src/api/api-web.c", "src/api/api-list.c",
                                             "src/api/api-stream.c", "src/api/api-snapshot.c", "src/api/api-network.c", NULL };
        for (size_t i = 0; files[i]; i++) {
                int n = count_in_tree(files[i], skip);
                if (n != 0)
                        print_error("%s calls store_*/hv_* %d time(s)\n", files[i], n);
                assert_int_equal(n, 0);
        }
}

/* The counter itself: it finds a call, and leaves comments, strings,
 * longer names and the skipped functions alone. */
static void test_counter(void **state) {
        char dir[] = "/tmp/armada-test-layering-XXXXXX", path[64];
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/probe.c", dir);
        const char *probe = "/* store_x() */\nstatic void a(void) {\n        reply_store_error(\"hv_y()\");\n        store_vm_get (1);\n}\n"
                            "void h_vms_list(Req *r) {\n        store_vm_list(1);\n}\nvoid b(void) {\n        hv_uri_check(0);\n}\n";
        assert_int_equal(file_write_atomic(path, probe, strlen(probe), 0600), 0);
        static const char *const skip[] = { "h_vms_list", NULL };
        int n = count_calls(path, skip);
        remove(path);
        rmdir(dir);
        assert_int_equal(n, 2);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_counter),
                cmocka_unit_test(test_handlers_call_operations),
                cmocka_unit_test(test_server_calls_operations),
                cmocka_unit_test(test_capability_handlers_call_operations),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
