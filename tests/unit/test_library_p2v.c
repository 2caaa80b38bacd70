/* P2V's pure checks (issue 12): the disk paths and "user@address" that
 * reach ssh's argv and the server's shell. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "library/library.h"

static void test_disk_paths(void **state) {
        (void) state;
        static const char *const good[] = { "/dev/sda", "/dev/nvme0n1", "/dev/mapper/vg0-root", "/dev/disk/by-id/ata_x-1",
                                            "/dev/loop7", "/dev/vg_data/lv_01" };
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
                assert_null(library_p2v_disk_invalid(good[i]));
        static const char *const bad[] = { NULL, "", "sda", "/dev/", "/etc/passwd", "/dev/sda;reboot", "/dev/sda 1",
                                           "/dev/$(id)", "/dev/sda'", "/dev/SDA", "/dev//sda", "/dev/sda/", "/dev/../etc/shadow",
                                           "/dev/sda\n", "/dev/`id`", "/dev/a|b", "/dev/a&b", "/dev/*" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                assert_non_null(library_p2v_disk_invalid(bad[i]));
        char longp[260] = "/dev/";
        memset(longp + 5, 'a', 250);
        longp[255] = 0;
        assert_non_null(library_p2v_disk_invalid(longp));
}

static void test_ssh_parse(void **state) {
        (void) state;
        char user[33], addr[256];
        assert_int_equal(library_p2v_ssh_parse("root@10.0.0.5", user, addr), 0);
        assert_string_equal(user, "root");
        assert_string_equal(addr, "10.0.0.5");
        assert_int_equal(library_p2v_ssh_parse("svc_p2v@db1.example.com", user, addr), 0);
        assert_string_equal(user, "svc_p2v");
        assert_string_equal(addr, "db1.example.com");
        assert_int_equal(library_p2v_ssh_parse("srv2", user, addr), 0);   /* root by default */
        assert_string_equal(user, "root");
        assert_string_equal(addr, "srv2");
        assert_int_equal(library_p2v_ssh_parse("root@[fd00::5]", user, addr), 0);
        assert_string_equal(addr, "fd00::5");
        static const char *const bad[] = { NULL, "", "@host", "root@", "root@-oProxyCommand=x", "-oX@host", "ro ot@host",
                                           "root@host name", "root@host;id", "root@ho$t", "Root@host", "root@host/x",
                                           "a@b@c", "root@[]", "root@host\n" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                assert_int_equal(library_p2v_ssh_parse(bad[i], user, addr), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_disk_paths),
                cmocka_unit_test(test_ssh_parse),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
