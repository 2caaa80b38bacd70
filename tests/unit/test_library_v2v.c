/* virt-v2v's modes (issue 12): the words a request's "v2v" and armadad's
 * --v2v accept, and that a bad one changes nothing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "library/library.h"

static void test_mode_parse(void **state) {
        (void) state;
        LibraryV2vMode m = LIBRARY_V2V_NEVER;
        assert_int_equal(library_v2v_mode_parse("auto", &m), 0);
        assert_int_equal(m, LIBRARY_V2V_AUTO);
        assert_int_equal(library_v2v_mode_parse("always", &m), 0);
        assert_int_equal(m, LIBRARY_V2V_ALWAYS);
        assert_int_equal(library_v2v_mode_parse("never", &m), 0);
        assert_int_equal(m, LIBRARY_V2V_NEVER);
        m = LIBRARY_V2V_ALWAYS;
        static const char *const bad[] = { NULL, "", "AUTO", "auto ", "yes", "sometimes", "alwaysx", "neve" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                assert_int_equal(library_v2v_mode_parse(bad[i], &m), -EINVAL);
                assert_int_equal(m, LIBRARY_V2V_ALWAYS);   /* untouched */
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_mode_parse),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
