/* Unit tests for util/: names, sizes, uuids, string buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <string.h>
#include <cmocka.h>

#include "util/util.h"

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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_sizes),
                cmocka_unit_test(test_uuid),
                cmocka_unit_test(test_strbuf),
                cmocka_unit_test(test_parse_i64),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
