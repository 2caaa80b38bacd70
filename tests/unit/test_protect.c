/* Unit tests of protect's pure parts. Snapshots: the name rule and the
 * default name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <string.h>
#include <cmocka.h>

#include "protect/protect.h"

static void test_snapshot_names(void **state) {
        static const char *const good[] = { "a", "Z", "0", "before-upgrade", "v1.2_rc-3", "snap-20261201-054000" };
        for (size_t i = 0; i < sizeof good / sizeof *good; i++)
                assert_int_equal(protect_snapshot_name_check(good[i], NULL, 0), 0);
        char max[PROTECT_SNAPSHOT_NAME_MAX + 2];
        memset(max, 'x', PROTECT_SNAPSHOT_NAME_MAX);
        max[PROTECT_SNAPSHOT_NAME_MAX] = 0;
        assert_int_equal(protect_snapshot_name_check(max, NULL, 0), 0);
        max[PROTECT_SNAPSHOT_NAME_MAX] = 'x';
        max[PROTECT_SNAPSHOT_NAME_MAX + 1] = 0;
        char why[128];
        assert_int_equal(protect_snapshot_name_check(max, why, sizeof why), -EINVAL);
        assert_non_null(strstr(why, "63"));
        static const char *const bad[] = { "", "-x", ".x", "_x", "a b", "a/b", "a;b", "a'b", "a\"b", "a<b", "é", "a\nb", "..", "a%2f" };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
                why[0] = 0;
                assert_int_equal(protect_snapshot_name_check(bad[i], why, sizeof why), -EINVAL);
                assert_true(why[0] != 0);
        }
        assert_int_equal(protect_snapshot_name_check(NULL, NULL, 0), -EINVAL);
}

static void test_snapshot_default_name(void **state) {
        char out[32];
        protect_snapshot_default_name(1764567600, out); /* 2025-12-01 05:40:00 UTC */
        assert_string_equal(out, "snap-20251201-054000");
        assert_int_equal(protect_snapshot_name_check(out, NULL, 0), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_snapshot_names),
                cmocka_unit_test(test_snapshot_default_name),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
