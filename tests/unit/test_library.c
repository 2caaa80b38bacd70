/* Unit tests for library/: image format detection on small files made here,
 * path confinement to a share (symlinks and '..' included), the quota
 * arithmetic, host-name patterns, grant actions, SHA-256, and the cloud-init
 * files rendered from a guest profile against golden files in
 * tests/data/library/ (ARMADA_REGEN_GOLDEN=1 rewrites them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "library/library.h"

static char dir[256];

static int setup(void **state) {
        snprintf(dir, sizeof dir, "/tmp/armada-test-library-XXXXXX");
        return mkdtemp(dir) ? 0 : -1;
}

static void rm_rf(const char *path) {
        /* Only our own temporary directory, by a fixed argv: no shell. */
        pid_t pid = fork();
        if (pid == 0) {
                execlp("rm", "rm", "-rf", "--", path, (char *) NULL);
                _exit(127);
        }
        int st;
        waitpid(pid, &st, 0);
}

static int teardown(void **state) {
        rm_rf(dir);
        return 0;
}

/* dir/rel; four rotating buffers, so that one call can take two paths. */
static char *path_of(const char *rel) {
        static char buf[4][512];
        static int k;
        k = (k + 1) % 4;
        snprintf(buf[k], sizeof buf[k], "%s/%s", dir, rel);
        return buf[k];
}

static void write_file(const char *rel, const void *data, size_t n) {
        int fd = open(path_of(rel), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, n), (ssize_t) n);
        close(fd);
}

static int detect(const char *rel, LibraryImageInfo *info) {
        int fd = open(path_of(rel), O_RDONLY);
        assert_true(fd >= 0);
        struct stat sb;
        fstat(fd, &sb);
        int r = library_image_detect(fd, rel, (uint64_t) sb.st_size, info);
        close(fd);
        return r;
}

static void put_be64(unsigned char *p, uint64_t v) {
        for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (unsigned char) v;
}
static void put_be32(unsigned char *p, uint32_t v) {
        for (int i = 3; i >= 0; i--, v >>= 8) p[i] = (unsigned char) v;
}

static void test_detect(void **state) {
        LibraryImageInfo info;
        unsigned char q[512] = "QFI\xfb";
        put_be32(q + 4, 3);
        put_be64(q + 24, 10ULL << 30);
        /* Named .img: the content decides. */
        write_file("disk.img", q, sizeof q);
        assert_int_equal(detect("disk.img", &info), 0);
        assert_string_equal(info.kind, "disk");
        assert_string_equal(info.format, "qcow2");
        assert_true(info.virtual_size == 10ULL << 30);
        assert_string_equal(info.backing, "");

        put_be64(q + 8, 400);
        put_be32(q + 16, 9);
        memcpy(q + 400, "base.img!", 9);
        write_file("overlay.qcow2", q, sizeof q);
        assert_int_equal(detect("overlay.qcow2", &info), 0);
        assert_string_equal(info.backing, "base.img!");

        put_be32(q + 4, 4); /* no such qcow2 version */
        write_file("v4.qcow2", q, sizeof q);
        assert_int_equal(detect("v4.qcow2", &info), -EMEDIUMTYPE);

        /* A raw disk: by name, whole sectors only. */
        static unsigned char zeros[1 << 16];
        write_file("raw.raw", zeros, sizeof zeros);
        assert_int_equal(detect("raw.raw", &info), 0);
        assert_string_equal(info.format, "raw");
        assert_true(info.virtual_size == sizeof zeros);
        write_file("odd.img", zeros, 1000);
        assert_int_equal(detect("odd.img", &info), -EMEDIUMTYPE);
        write_file("empty.img", zeros, 0);
        assert_int_equal(detect("empty.img", &info), -EMEDIUMTYPE);
        /* The name says qcow2, the content does not: not a disk. */
        write_file("fake.qcow2", "hello world\n", 12);
        assert_int_equal(detect("fake.qcow2", &info), -EMEDIUMTYPE);

        /* ISO 9660: "CD001" at 0x8001, whatever the name. */
        static unsigned char iso[0x9000];
        memcpy(iso + 0x8001, "CD001", 5);
        write_file("image.bin", iso, sizeof iso);
        assert_int_equal(detect("image.bin", &info), 0);
        assert_string_equal(info.kind, "iso");
        write_file("notiso.iso", zeros, 0x9000);
        assert_int_equal(detect("notiso.iso", &info), -EMEDIUMTYPE);

        unsigned char vmdk[512] = "KDMV";
        vmdk[12] = 0x00; vmdk[13] = 0x00; vmdk[14] = 0x10; /* 0x100000 sectors = 512 MiB */
        write_file("d.vmdk", vmdk, sizeof vmdk);
        assert_int_equal(detect("d.vmdk", &info), 0);
        assert_string_equal(info.format, "vmdk");
        assert_true(info.virtual_size == 512ULL << 20);

        write_file("setup.sh", "echo hi\n", 8);
        assert_int_equal(detect("setup.sh", &info), 0);
        assert_string_equal(info.kind, "script");
        write_file("noext", "#!/bin/sh\nexit 0\n", 17);
        assert_int_equal(detect("noext", &info), 0);
        assert_string_equal(info.kind, "script");
        unsigned char bin[16] = { 0x7f, 'E', 'L', 'F', 0 };
        write_file("tool.sh", bin, sizeof bin); /* NUL bytes: not text */
        assert_int_equal(detect("tool.sh", &info), -EMEDIUMTYPE);
        write_file("random.bin", bin, sizeof bin);
        assert_int_equal(detect("random.bin", &info), -EMEDIUMTYPE);
}

static void test_rel_paths(void **state) {
        assert_null(library_rel_path_invalid("debian.qcow2"));
        assert_null(library_rel_path_invalid("linux/debian-12.qcow2"));
        assert_non_null(library_rel_path_invalid(""));
        assert_non_null(library_rel_path_invalid(NULL));
        assert_non_null(library_rel_path_invalid("/etc/passwd"));
        assert_non_null(library_rel_path_invalid(".."));
        assert_non_null(library_rel_path_invalid("../x"));
        assert_non_null(library_rel_path_invalid("a/../../x"));
        assert_non_null(library_rel_path_invalid("a/./x"));
        assert_non_null(library_rel_path_invalid("a//x"));
        assert_non_null(library_rel_path_invalid("a/"));
        assert_non_null(library_rel_path_invalid(".armada-upload-1"));
        assert_non_null(library_rel_path_invalid("a\nb"));
        assert_non_null(library_rel_path_invalid("a\\b"));
        char longp[1100];
        memset(longp, 'a', sizeof longp - 1);
        longp[sizeof longp - 1] = 0;
        assert_non_null(library_rel_path_invalid(longp));
}

static void test_confinement(void **state) {
        char share[300], outside[300];
        snprintf(share, sizeof share, "%s/share", dir);
        snprintf(outside, sizeof outside, "%s/outside", dir);
        assert_int_equal(mkdir(share, 0755), 0);
        assert_int_equal(mkdir(outside, 0755), 0);
        assert_int_equal(mkdir(path_of("share/sub"), 0755), 0);
        write_file("share/a.img", "x", 1);
        write_file("share/sub/b.img", "y", 1);
        write_file("outside/secret", "s", 1);
        assert_int_equal(symlink(path_of("outside/secret"), path_of("share/esc-file")), 0);
        assert_int_equal(symlink(outside, path_of("share/esc-dir")), 0);
        assert_int_equal(symlink("a.img", path_of("share/inner-link")), 0);

        int fd = library_open_in_share(share, "a.img", O_RDONLY, 0);
        assert_true(fd >= 0);
        close(fd);
        fd = library_open_in_share(share, "sub/b.img", O_RDONLY, 0);
        assert_true(fd >= 0);
        close(fd);
        fd = library_open_in_share(share, "sub", O_RDONLY | O_DIRECTORY, 0);
        assert_true(fd >= 0);
        close(fd);
        /* Symlinks are refused wherever they are and wherever they point. */
        assert_int_equal(library_open_in_share(share, "esc-file", O_RDONLY, 0), -ELOOP);
        assert_int_equal(library_open_in_share(share, "esc-dir/secret", O_RDONLY, 0), -ELOOP);
        assert_int_equal(library_open_in_share(share, "esc-dir", O_RDONLY | O_DIRECTORY, 0), -ELOOP);
        assert_int_equal(library_open_in_share(share, "inner-link", O_RDONLY, 0), -ELOOP);
        assert_int_equal(library_open_in_share(share, "../outside/secret", O_RDONLY, 0), -EINVAL);
        assert_int_equal(library_open_in_share(share, "/etc/passwd", O_RDONLY, 0), -EINVAL);
        assert_int_equal(library_open_in_share(share, "missing.img", O_RDONLY, 0), -ENOENT);
        assert_int_equal(library_open_in_share(share, "a.img/x", O_RDONLY, 0), -ENOTDIR);
        /* Creating a file never goes through a symlink either. */
        assert_int_equal(library_open_in_share(share, "esc-dir/new", O_WRONLY | O_CREAT | O_EXCL, 0600), -ELOOP);
        assert_int_equal(access(path_of("outside/new"), F_OK), -1);

        char *rel = NULL;
        assert_int_equal(library_path_in_share(share, path_of("share/sub/b.img"), &rel), 0);
        assert_string_equal(rel, "sub/b.img");
        free(rel);
        char dotted[400];
        snprintf(dotted, sizeof dotted, "%s/share/sub/../a.img", dir);
        assert_int_equal(library_path_in_share(share, dotted, &rel), 0);
        assert_string_equal(rel, "a.img");
        free(rel);
        rel = NULL;
        snprintf(dotted, sizeof dotted, "%s/share/../outside/secret", dir);
        assert_int_equal(library_path_in_share(share, dotted, &rel), -EXDEV);
        assert_int_equal(library_path_in_share(share, path_of("share/esc-file"), &rel), -EXDEV);
        assert_int_equal(library_path_in_share(share, path_of("share/esc-dir/secret"), &rel), -EXDEV);
        assert_int_equal(library_path_in_share(share, share, &rel), -EXDEV);
        assert_int_equal(library_path_in_share(share, path_of("share/none"), &rel), -ENOENT);
        assert_int_equal(library_path_in_share(share, "relative/a.img", &rel), -EINVAL);
        /* A sibling whose name starts with the share's is outside it. */
        assert_int_equal(mkdir(path_of("share2"), 0755), 0);
        write_file("share2/c.img", "z", 1);
        assert_int_equal(library_path_in_share(share, path_of("share2/c.img"), &rel), -EXDEV);
        assert_null(rel);
}

static void test_quota(void **state) {
        char why[256];
        LibraryAmounts limit = { 20, 5, -1, -1 }, used = { 18, 1, 4, 1024 };
        LibraryAmounts add = { 4, 2, 2, 1024 };
        assert_int_equal(library_quota_check(&limit, &used, &add, why, sizeof why), -EDQUOT);
        assert_string_equal(why, "quota: needs 4 points, 2 of 20 left");
        add = (LibraryAmounts) { 2, 1, 100, 1 << 20 };
        assert_int_equal(library_quota_check(&limit, &used, &add, why, sizeof why), 0); /* cpus, memory unlimited */
        limit = (LibraryAmounts) { -1, 2, -1, -1 };
        add = (LibraryAmounts) { 1, 2, 1, 1 };
        assert_int_equal(library_quota_check(&limit, &used, &add, why, sizeof why), -EDQUOT);
        assert_string_equal(why, "quota: needs 2 VMs, 1 of 2 left");
        limit = (LibraryAmounts) { -1, -1, 4, 2048 };
        add = (LibraryAmounts) { 0, 1, 1, 512 };
        assert_int_equal(library_quota_check(&limit, &used, &add, why, sizeof why), -EDQUOT);
        assert_string_equal(why, "quota: needs 1 vCPU, 0 of 4 left");
        limit.cpus = -1;
        add.memory_mib = 1025;
        assert_int_equal(library_quota_check(&limit, &used, &add, why, sizeof why), -EDQUOT);
        assert_string_equal(why, "quota: needs 1025 MiB of memory, 1024 of 2048 left");
        /* Over the limit already (it was lowered): 0 left, never negative. */
        limit = (LibraryAmounts) { 10, -1, -1, -1 };
        used.points = 12;
        add = (LibraryAmounts) { 1, 1, 1, 1 };
        assert_int_equal(library_quota_check(&limit, &used, &add, why, sizeof why), -EDQUOT);
        assert_string_equal(why, "quota: needs 1 point, 0 of 10 left");
        /* Exactly filling it is fine; a free template (0 points) always fits. */
        used.points = 9;
        assert_int_equal(library_quota_check(&limit, &used, &add, why, sizeof why), 0);
        used.points = 10;
        add.points = 0;
        assert_int_equal(library_quota_check(&limit, &used, &add, NULL, 0), 0);
}

static void test_hostnames_and_actions(void **state) {
        char out[64];
        assert_int_equal(library_hostname_expand("web-{n}", "web", 3, out), 0);
        assert_string_equal(out, "web-3");
        assert_int_equal(library_hostname_expand(NULL, "db_1.prod", 1, out), 0);
        assert_string_equal(out, "db-1-prod");
        assert_int_equal(library_hostname_expand("{name}-x{n}", "app", 12, out), 0);
        assert_string_equal(out, "app-x12");
        assert_int_equal(library_hostname_expand("{nam}", "a", 1, out), -EINVAL);
        assert_int_equal(library_hostname_expand("-{n}", "a", 1, out), -EINVAL);
        assert_int_equal(library_hostname_expand("a b", "a", 1, out), -EINVAL);
        assert_int_equal(library_hostname_expand("{name}{name}", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1, out), -EINVAL);

        assert_null(library_actions_invalid("deploy,start,delete"));
        assert_non_null(library_actions_invalid("deploy,format"));
        assert_non_null(library_actions_invalid(""));
        assert_true(library_actions_allow(LIBRARY_GRANT_ACTIONS, "pause"));
        assert_true(library_actions_allow("start,stop", "stop"));
        assert_false(library_actions_allow("start,stop", "sto"));
        assert_false(library_actions_allow("start,stopx", "stop"));
        assert_false(library_actions_allow("start", "deploy"));
}

static void test_deploy_vm_names(void **state) {
        char out[64];
        /* A count asked for numbers the VMs, a count of 1 too ("--count 1" -> NAME-1). */
        assert_int_equal(library_deploy_vm_name("web", true, 1, out), 0);
        assert_string_equal(out, "web-1");
        assert_int_equal(library_deploy_vm_name("web", true, 12, out), 0);
        assert_string_equal(out, "web-12");
        assert_int_equal(library_deploy_vm_name("web", false, 1, out), 0);
        assert_string_equal(out, "web");
        char long_name[64];
        memset(long_name, 'a', 62);
        long_name[62] = 0;
        assert_int_equal(library_deploy_vm_name(long_name, false, 1, out), 0);
        assert_int_equal(library_deploy_vm_name(long_name, true, 1, out), -ENAMETOOLONG);
}

static void test_sha256(void **state) {
        write_file("abc", "abc", 3);
        int fd = open(path_of("abc"), O_RDONLY);
        char hex[65];
        uint64_t n = 0;
        assert_int_equal(library_sha256_fd(fd, hex, &n), 0);
        close(fd);
        assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_true(n == 3);
}

/* Compares text with tests/data/library/<name>, or rewrites the file. */
static void golden(const char *name, const char *text) {
        const char *data = getenv("ARMADA_TEST_DATA");
        char path[512];
        snprintf(path, sizeof path, "%s/library/%s", data ? data : "tests/data", name);
        if (getenv("ARMADA_REGEN_GOLDEN")) {
                FILE *f = fopen(path, "w");
                assert_non_null(f);
                fputs(text, f);
                fclose(f);
                return;
        }
        char *want = NULL;
        assert_int_equal(file_read_all(path, &want, NULL), 0);
        assert_string_equal(text, want);
        free(want);
}

static void test_cloudinit(void **state) {
        const char *keys[] = { "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBogus alice@laptop", "ssh-rsa AAAAB3Nza \"quoted\" bob" };
        LibraryGuest g = { .instance_id = "6b0c3f4e-2f0a-4d7e-9a51-0d1e2f3a4b5c", .hostname = "web-1", .admin_user = "ops",
                           .ssh_keys = keys, .n_ssh_keys = 2, .timezone = "Europe/Berlin" };
        char *meta = NULL, *user = NULL;
        assert_int_equal(library_cloudinit_render(&g, &meta, &user), 0);
        golden("meta-data", meta);
        golden("user-data", user);
        free(meta), free(user);

        g.user_data = "#cloud-config\npackages:\n  - nginx\nruncmd:\n  - [systemctl, enable, --now, nginx]\n";
        assert_int_equal(library_cloudinit_render(&g, &meta, &user), 0);
        golden("user-data-merged", user);
        free(meta), free(user);

        /* Keys without an admin user go to the image's default user. */
        LibraryGuest d = { .instance_id = "i-1", .hostname = "db", .ssh_keys = keys, .n_ssh_keys = 1,
                           .user_data = "#!/bin/sh\necho ready > /etc/motd" };
        assert_int_equal(library_cloudinit_render(&d, &meta, &user), 0);
        golden("user-data-script", user);
        free(meta), free(user);

        d.user_data = "packages: [nginx]\n"; /* no header: cloud-init would ignore it */
        assert_int_equal(library_cloudinit_render(&d, &meta, &user), -EINVAL);
        d.user_data = "#cloud-config\n--==ARMADA-CLOUD-INIT-BOUNDARY==\n";
        assert_int_equal(library_cloudinit_render(&d, &meta, &user), -EINVAL);
        assert_string_equal(library_user_data_type("#cloud-config\n"), "text/cloud-config");
        assert_string_equal(library_user_data_type("#!/bin/bash\n"), "text/x-shellscript");
        assert_null(library_user_data_type("hello"));
}

static void test_seed_iso(void **state) {
        if (access("/usr/bin/xorriso", X_OK) != 0 && access("/usr/bin/genisoimage", X_OK) != 0)
                skip();
        char why[512] = "";
        const char *iso = path_of("seed.iso");
        assert_int_equal(library_seed_iso_build("instance-id: \"x\"\n", "#cloud-config\n", iso, why, sizeof why), 0);
        int fd = open(iso, O_RDONLY);
        assert_true(fd >= 0);
        struct stat sb;
        fstat(fd, &sb);
        LibraryImageInfo info;
        assert_int_equal(library_image_detect(fd, "seed.iso", (uint64_t) sb.st_size, &info), 0);
        assert_string_equal(info.kind, "iso");
        char volid[7] = "";
        assert_int_equal(pread(fd, volid, 6, 0x8028), 6);
        close(fd);
        assert_string_equal(volid, "cidata");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_detect),
                cmocka_unit_test(test_rel_paths),
                cmocka_unit_test(test_confinement),
                cmocka_unit_test(test_quota),
                cmocka_unit_test(test_hostnames_and_actions),
                cmocka_unit_test(test_deploy_vm_names),
                cmocka_unit_test(test_sha256),
                cmocka_unit_test(test_cloudinit),
                cmocka_unit_test(test_seed_iso),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
