/* virt-v2v's modes (issue 12): the words a request's "v2v" and armadad's
 * --v2v accept, and that a bad one changes nothing; auto's rule of which
 * guests are foreign, and that auto skips the others with a reason, always
 * forcing them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>

/* The module's unit test reads its private header (CONVENTIONS.md 9). */
#define LIBRARY_PRIV_ALLOW
#include "library/library-priv.h"

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

static LibraryV2vSource source(const char *kind, const char *f0, const char *f1) {
        LibraryV2vSource s = { .kind = kind };
        if (f0)
                s.formats[s.n_formats++] = f0;
        if (f1)
                s.formats[s.n_formats++] = f1;
        return s;
}

static void test_foreign_rule(void **state) {
        (void) state;
        static const struct { const char *kind, *f0, *f1; bool foreign; const char *why; } cases[] = {
                { "p2v", NULL, NULL, true, NULL },
                { "ova", "vmdk", NULL, true, NULL },
                { "ova", "qcow2", NULL, true, NULL },      /* a descriptor is another hypervisor's, whatever its disks */
                { "ovf", "vmdk", NULL, true, NULL },
                { "vmx", "vmdk", NULL, true, NULL },
                { "image", "vmdk", NULL, true, NULL },
                { "image", "vpc", NULL, true, NULL },
                { "image", "vhdx", NULL, true, NULL },
                { "image", "qcow2", "vmdk", true, NULL },  /* one foreign disk is enough */
                { "image", NULL, NULL, true, NULL },       /* no format read: convert, as before the rule */
                { "something-new", "qcow2", NULL, true, NULL },
                { NULL, "qcow2", NULL, true, NULL },       /* a job queued before the rule */
                { "image", "qcow2", NULL, false, "The source is a qcow2 disk image, taken for a KVM guest already on virtio" },
                { "image", "raw", NULL, false, "The source is a raw disk image, taken for a KVM guest already on virtio" },
                { "image", "raw", "qcow2", false, "The source is a qcow2 disk image, taken for a KVM guest already on virtio" },
                { "libvirt", "qcow2", NULL, false, "The source is a libvirt export (a KVM guest already on virtio)" },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                LibraryV2vSource s = source(cases[i].kind, cases[i].f0, cases[i].f1);
                char why[160] = "untouched";
                bool foreign = library_v2v_source_foreign(&s, why, sizeof why);
                if (foreign != cases[i].foreign)
                        fail_msg("case %zu (%s %s): foreign %d", i, cases[i].kind ? cases[i].kind : "NULL",
                                 cases[i].f0 ? cases[i].f0 : "-", foreign);
                assert_string_equal(why, cases[i].why ? cases[i].why : "untouched");
                /* auto follows the rule; always runs on any guest; never on none. */
                assert_int_equal(library_v2v_wanted("auto", &s), cases[i].foreign);
                assert_int_equal(library_v2v_wanted(NULL, &s), cases[i].foreign);
                assert_true(library_v2v_wanted("always", &s));
                assert_false(library_v2v_wanted("never", &s));
        }
        assert_true(library_v2v_source_foreign(NULL, NULL, 0));
        char small[16];
        LibraryV2vSource q = source("image", "qcow2", NULL);
        assert_false(library_v2v_source_foreign(&q, small, sizeof small));
        assert_int_equal(strlen(small), sizeof small - 1);   /* cut, terminated */
}

/* The conversion phase itself: auto on a native guest does not run the
 * program (here one that would fail the test: it does not exist) and says
 * why; never says so; neither touches the job. */
static void test_convert_skips(void **state) {
        (void) state;
        LibraryV2vConfig cfg = { .program = "/nonexistent/virt-v2v-in-place" };
        library_v2v_configure(&cfg);
        LibraryV2vSource q = source("image", "qcow2", NULL);
        char *paths[] = { (char *) "/nonexistent/disk.qcow2" };
        json_t *res = NULL;
        bool converted = true;
        assert_int_equal(library_v2v_convert(NULL, "auto", &q, paths, 1, "qcow2", 75, &res, &converted), 0);
        assert_false(converted);
        assert_false(json_is_true(json_object_get(res, "ran")));
        assert_false(json_is_true(json_object_get(res, "converted")));
        const char *reason = json_string_value(json_object_get(res, "reason"));
        assert_non_null(reason);
        assert_non_null(strstr(reason, "The source is a qcow2 disk image, taken for a KVM guest already on virtio: v2v auto"
                                        " converts only foreign guests"));
        assert_non_null(strstr(reason, "v2v: always forces it"));
        assert_null(json_object_get(res, "seconds"));
        json_decref(res);
        res = NULL;
        converted = true;
        assert_int_equal(library_v2v_convert(NULL, NULL, &q, paths, 1, "qcow2", 75, &res, &converted), 0);
        assert_false(converted);
        assert_non_null(strstr(json_string_value(json_object_get(res, "reason")), "v2v auto converts only foreign guests"));
        json_decref(res);
        res = NULL;
        LibraryV2vSource v = source("image", "vmdk", NULL);
        assert_int_equal(library_v2v_convert(NULL, "never", &v, paths, 1, "qcow2", 75, &res, &converted), 0);
        assert_string_equal(json_string_value(json_object_get(res, "reason")),
                            "Not asked for (v2v: never); the disks keep the source's bus.");
        json_decref(res);
        res = NULL;
        /* A foreign guest in auto without the program: not run, and says that. */
        assert_int_equal(library_v2v_convert(NULL, "auto", &v, paths, 1, "qcow2", 75, &res, &converted), 0);
        assert_string_equal(json_string_value(json_object_get(res, "reason")),
                            "virt-v2v is not installed; the disks keep the source's bus.");
        json_decref(res);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_mode_parse),
                cmocka_unit_test(test_foreign_rule),
                cmocka_unit_test(test_convert_skips),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
