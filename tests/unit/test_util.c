/* Unit tests for util/: names, sizes, uuids, string buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "util/util.h"
#include "util/zip.h"

static void test_names(void **state) {
        assert_true(name_is_valid("web01"));
        assert_true(name_is_valid("a"));
        assert_true(name_is_valid("A.b_c-d9"));
        assert_true(name_is_valid("0abc"));
        assert_false(name_is_valid(""));
        assert_false(name_is_valid(NULL));
        assert_false(name_is_valid("-web"));
        assert_false(name_is_valid(".hidden"));
        assert_false(name_is_valid("a/b"));
        assert_false(name_is_valid(".."));
        assert_false(name_is_valid("web<1>"));
        assert_false(name_is_valid("we\"b"));
        assert_false(name_is_valid("we'b"));
        assert_false(name_is_valid("we b"));
        assert_false(name_is_valid("caf\xc3\xa9"));
        char longname[300];
        memset(longname, 'a', sizeof longname - 1);
        longname[299] = 0;
        assert_false(name_is_valid(longname));
        longname[64] = 0;
        assert_false(name_is_valid(longname));
        longname[63] = 0;
        assert_true(name_is_valid(longname));
        assert_string_equal(name_invalid_reason(""), "must not be empty");
}

static void test_sizes(void **state) {
        uint64_t b;
        assert_int_equal(size_parse("1G", 1, &b), 0);
        assert_true(b == 1ULL << 30);
        assert_int_equal(size_parse("512", 1 << 20, &b), 0);
        assert_true(b == 512ULL << 20);
        assert_int_equal(size_parse("1.5G", 1, &b), 0);
        assert_true(b == 3ULL << 29);
        assert_int_equal(size_parse("20GiB", 1, &b), 0);
        assert_true(b == 20ULL << 30);
        assert_int_equal(size_parse("4096M", 1, &b), 0);
        assert_true(b == 4096ULL << 20);
        assert_int_equal(size_parse("100B", 1, &b), 0);
        assert_true(b == 100);
        assert_int_equal(size_parse("-1G", 1, &b), -EINVAL);
        assert_int_equal(size_parse("", 1, &b), -EINVAL);
        assert_int_equal(size_parse("1X", 1, &b), -EINVAL);
        assert_int_equal(size_parse("1Gx", 1, &b), -EINVAL);
        assert_int_equal(size_parse("abc", 1, &b), -EINVAL);
        assert_int_equal(size_parse("99999999999T", 1, &b), -ERANGE);
}

static void test_uuid(void **state) {
        char a[37], b[37];
        uuid_generate(a);
        uuid_generate(b);
        assert_true(uuid_is_valid(a));
        assert_string_not_equal(a, b);
        assert_int_equal(a[14], '4');
        assert_false(uuid_is_valid("not-a-uuid"));
}

static void test_strbuf(void **state) {
        StrBuf b = {0};
        strbuf_append(&b, "a");
        for (int i = 0; i < 1000; i++)
                strbuf_printf(&b, "%d,", i);
        assert_int_equal(b.len, strlen(b.s));
        char *s = strbuf_steal(&b);
        assert_true(strncmp(s, "a0,1,2,", 7) == 0);
        assert_null(b.s);
        free(s);
        s = strbuf_steal(&b);
        assert_string_equal(s, "");
        free(s);
}

static void test_parse_i64(void **state) {
        int64_t v;
        assert_int_equal(parse_i64("42", &v), 0);
        assert_int_equal(v, 42);
        assert_int_equal(parse_i64("-1", &v), -EINVAL);
        assert_int_equal(parse_i64("4a", &v), -EINVAL);
        assert_int_equal(parse_i64("9999999999999999999999", &v), -ERANGE);
}

static void touch(const char *dir, const char *name) {
        char *p = xasprintf("%s/%s", dir, name);
        int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        free(p);
}

static void test_dir_private_clear(void **state) {
        char base[] = "/tmp/armada-util-test-XXXXXX";
        assert_non_null(mkdtemp(base));
        char *tmp = xasprintf("%s/tmp", base), *outside = xasprintf("%s/outside", base);
        /* Created 0700 when missing, nothing to remove. */
        assert_int_equal(dir_private_clear(tmp), 0);
        struct stat st;
        assert_int_equal(stat(tmp, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        /* Leftovers (a seed ISO, a half-built seed folder) go; a symbolic
         * link inside is removed, not followed. */
        assert_int_equal(mkdir(outside, 0700), 0);
        touch(outside, "keep");
        touch(tmp, "armada-seed-1.iso");
        char *seed = xasprintf("%s/armada-seed-abc", tmp), *files = xasprintf("%s/files", seed);
        assert_int_equal(mkdir(seed, 0700), 0);
        assert_int_equal(mkdir(files, 0700), 0);
        touch(files, "user-data");
        char *link = xasprintf("%s/link", tmp);
        assert_int_equal(symlink(outside, link), 0);
        assert_int_equal(chmod(tmp, 0755), 0);
        assert_int_equal(dir_private_clear(tmp), 3);
        assert_int_equal(stat(tmp, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        assert_int_equal(rmdir(tmp), 0);   /* empty */
        char *kept = xasprintf("%s/keep", outside);
        assert_int_equal(access(kept, F_OK), 0);
        /* A symbolic link in its place is refused. */
        assert_int_equal(symlink(outside, tmp), 0);
        assert_int_equal(dir_private_clear(tmp), -ENOTDIR);
        assert_int_equal(access(kept, F_OK), 0);
        unlink(tmp);
        unlink(kept);
        rmdir(outside);
        rmdir(base);
        free(kept);
        free(link);
        free(files);
        free(seed);
        free(outside);
        free(tmp);
}

/* A deadline ms from now: a whole timespec (nanoseconds carried into
 * seconds), never before now, and ms later within the call's own time. */
static void test_time_after_ms(void **state) {
        for (int64_t ms = 0; ms <= 2999; ms += 333) {
                struct timespec before, after;
                clock_gettime(CLOCK_MONOTONIC, &before);
                struct timespec t = time_after_ms(CLOCK_MONOTONIC, ms);
                clock_gettime(CLOCK_MONOTONIC, &after);
                assert_true(t.tv_nsec >= 0 && t.tv_nsec < 1000000000L);
                int64_t tn = (int64_t) t.tv_sec * 1000000000 + t.tv_nsec;
                assert_true(tn >= (int64_t) before.tv_sec * 1000000000 + before.tv_nsec + ms * 1000000);
                assert_true(tn <= (int64_t) after.tv_sec * 1000000000 + after.tv_nsec + ms * 1000000);
        }
}

static void test_path_outside_system(void **state) {
        static const struct {
                const char *in;
                const char *out;   /* NULL: refused */
                const char *why;
        } cases[] = {
                { "/var/lib/libvirt/images/armada", "/var/lib/libvirt/images/armada", NULL },
                { "/srv/shared//pool/", "/srv/shared/pool", NULL },
                { "/srv/./shared/", "/srv/shared", NULL },
                { "//srv///x", "/srv/x", NULL },
                { "/etcetera/x", "/etcetera/x", NULL },
                { "/usrlocal", "/usrlocal", NULL },
                { "/etc", NULL, "system directory '/etc'" },
                { "/etc/", NULL, "system directory '/etc'" },
                { "/etc/x", NULL, "system directory '/etc'" },
                { "//etc//x", NULL, "system directory '/etc'" },
                { "/./etc/x", NULL, "system directory '/etc'" },
                { "/usr/lib/x", NULL, "system directory '/usr'" },
                { "/boot", NULL, "system directory '/boot'" },
                { "/proc/self", NULL, "system directory '/proc'" },
                { "/sys/kernel", NULL, "system directory '/sys'" },
                { "/dev/shm/x", NULL, "system directory '/dev'" },
                { "/lib64/x", NULL, "system directory '/lib64'" },
                { "/", NULL, "root directory" },
                { "//", NULL, "root directory" },
                { "/.", NULL, "root directory" },
                { "/srv/../etc", NULL, "'..'" },
                { "/srv/..", NULL, "'..'" },
                { "relative/path", NULL, "absolute" },
                { "", NULL, "absolute" },
                { "/srv/a\nb", NULL, "control" },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                char *norm = NULL, why[128] = "";
                int r = path_outside_system_normalize(cases[i].in, &norm, why, sizeof why);
                if (cases[i].out) {
                        if (r != 0)
                                fail_msg("'%s' refused: %s", cases[i].in, why);
                        assert_string_equal(norm, cases[i].out);
                        free(norm);
                } else {
                        if (r != -EINVAL)
                                fail_msg("'%s' allowed as '%s'", cases[i].in, norm);
                        assert_null(norm);
                        if (!strstr(why, cases[i].why))
                                fail_msg("'%s': \"%s\" lacks \"%s\"", cases[i].in, why, cases[i].why);
                }
        }
        char *norm = NULL;
        assert_int_equal(path_outside_system_normalize(NULL, &norm, NULL, 0), -EINVAL);
        assert_int_equal(path_outside_system_normalize("/etc", &norm, NULL, 0), -EINVAL);
        assert_null(norm);
}

static void test_csv_has(void **state) {
        assert_true(csv_has("start,stop,delete", "start"));
        assert_true(csv_has("start,stop,delete", "delete"));
        assert_false(csv_has("start,stop,delete", "sto"));
        assert_false(csv_has("start,stop,delete", "stop,delete"));
        assert_false(csv_has("start", ""));
        assert_false(csv_has(NULL, "start"));
        assert_false(csv_has("", "start"));
}

/* FNV-1a: the published 64-bit test vectors, and NULL told from "". */
static void test_fnv1a(void **state) {
        (void) state;
        assert_true(fnv1a(FNV1A_INIT, "", 0) == 0xcbf29ce484222325ULL);
        assert_true(fnv1a(FNV1A_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
        assert_true(fnv1a(FNV1A_INIT, "foobar", 6) == 0x85944171f73967e8ULL);
        assert_true(fnv1a_str(FNV1A_INIT, NULL) != fnv1a_str(FNV1A_INIT, ""));
        assert_true(fnv1a_str(fnv1a_str(FNV1A_INIT, "ab"), "c") != fnv1a_str(fnv1a_str(FNV1A_INIT, "a"), "bc"));
        assert_true(fnv1a_i64(FNV1A_INIT, 1) != fnv1a_i64(FNV1A_INIT, 2));
}

/* zip_deflate: a gzip member and a raw stream that zlib reads back. */
static void test_zip_deflate(void **state) {
        (void) state;
        char in[4096];
        for (size_t i = 0; i < sizeof in; i++)
                in[i] = "armada "[i % 7];
        const int bits[] = { 15 + 16, -15 };
        for (size_t k = 0; k < 2; k++) {
                char *z = NULL, back[sizeof in];
                size_t zn = 0;
                assert_int_equal(zip_deflate(in, sizeof in, bits[k], Z_FINISH, &z, &zn), 0);
                assert_true(zn > 0 && zn < sizeof in / 4);
                z_stream s = {0};
                assert_int_equal(inflateInit2(&s, bits[k]), Z_OK);
                s.next_in = (Bytef *) z;
                s.avail_in = (uInt) zn;
                s.next_out = (Bytef *) back;
                s.avail_out = sizeof back;
                assert_int_equal(inflate(&s, Z_FINISH), Z_STREAM_END);
                assert_int_equal(s.total_out, sizeof in);
                inflateEnd(&s);
                assert_memory_equal(back, in, sizeof in);
                free(z);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_sizes),
                cmocka_unit_test(test_uuid),
                cmocka_unit_test(test_strbuf),
                cmocka_unit_test(test_parse_i64),
                cmocka_unit_test(test_dir_private_clear),
                cmocka_unit_test(test_path_outside_system),
                cmocka_unit_test(test_time_after_ms),
                cmocka_unit_test(test_csv_has),
                cmocka_unit_test(test_fnv1a),
                cmocka_unit_test(test_zip_deflate),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
