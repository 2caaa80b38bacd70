/* Unit tests for library/: image format detection on small files made here,
 * path confinement to a share (symlinks and '..' included), the quota
 * arithmetic, host-name patterns, grant actions, SHA-256, and the cloud-init
 * files rendered from a guest profile against golden files in
 * tests/data/library/ (ARMADA_REGEN_GOLDEN=1 rewrites them); and the
 * library's operations run without HTTP against a temporary store (a share
 * refused for its path, a self-service deploy refused by its quota): the
 * status, code and field the API would send, the audit record, and nothing
 * left recorded. */
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
#include "store/store-library.h"
#include "tmpstore.h"

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


/* ---- operations, against a temporary store ---- */

typedef struct {
        Store *st;
        Jobs *jobs;          /* not started: submitted jobs stay queued */
        int64_t admin_id, self_id, tpl_id, host_id;
} Ops;

static void ops_open(Ops *o) {
        memset(o, 0, sizeof *o);
        assert_int_equal(store_open(path_of("ops.db"), &o->st), 0);
        assert_int_equal(jobs_new(o->st, 1, &o->jobs), 0);
        assert_int_equal(store_user_insert(o->st, "root", "x", "administrator", &o->admin_id), 0);
        assert_int_equal(store_user_insert(o->st, "sam", "x", "self-service", &o->self_id), 0);
}

static void ops_close(Ops *o) {
        o->jobs = jobs_free(o->jobs);
        store_free(o->st);
        (void) unlink(path_of("ops.db"));
}

static OpCaller caller(AuthRole role, int64_t id, const char *name, const char *role_name) {
        return (OpCaller) { .subj = { .user_id = id, .role = role }, .user_id = id, .user_name = name, .role_name = role_name,
                            .address = "127.0.0.1" };
}

/* The newest audit record's action and result. */
static void assert_last_audit(Store *st, const char *action, const char *result) {
        _cleanup_json_ json_t *all = NULL;
        assert_int_equal(store_audit_list(st, 100, &all), 0);
        json_t *last = NULL, *a;
        size_t i;
        json_array_foreach(all, i, a) if (!last || jget_int(a, "id") > jget_int(last, "id"))
                last = a;
        assert_non_null(last);
        assert_string_equal(jget_str(last, "action"), action);
        assert_string_equal(jget_str(last, "result"), result);
}

static size_t n_shares(Store *st) {
        _cleanup_json_ json_t *all = NULL;
        assert_int_equal(store_share_list(st, &all), 0);
        return json_array_size(all);
}

static void test_op_share_create(void **state) {
        Ops o;
        ops_open(&o);
        OpCaller admin = caller(ROLE_ADMIN, o.admin_id, "root", "administrator");
        OpCaller ro = caller(ROLE_READ_ONLY, o.admin_id, "root", "read-only");
        OpError err = { 0 };
        json_t *out = NULL;
        mkdir(path_of("share"), 0755);
        mkdir(path_of("share/sub"), 0755);

        /* Not absolute: 400 naming 'path'; nothing recorded. */
        assert_int_equal(library_share_create(o.st, o.jobs, &admin, "share", &out, &err), -EINVAL);
        assert_int_equal(err.status, 400);
        assert_string_equal(err.code, "invalid_argument");
        assert_string_equal(err.field, "path");
        assert_null(out);
        /* Not a directory on the server. */
        assert_int_equal(library_share_create(o.st, o.jobs, &admin, path_of("nowhere"), &out, &err), -EINVAL);
        assert_int_equal(err.status, 422);
        assert_string_equal(err.field, "path");
        assert_int_equal(n_shares(o.st), 0);
        /* A read-only user may not: 403, audited as denied. */
        assert_int_equal(library_share_create(o.st, o.jobs, &ro, path_of("share"), &out, &err), -EPERM);
        assert_int_equal(err.status, 403);
        assert_string_equal(err.message, "User 'root' (read-only) may not add shares to library.");
        assert_last_audit(o.st, "add shares to", "denied");
        assert_int_equal(n_shares(o.st), 0);

        /* The administrator: the share and its first refresh job. */
        assert_int_equal(library_share_create(o.st, o.jobs, &admin, path_of("share"), &out, &err), 0);
        assert_non_null(out);
        assert_true(jget_int(json_object_get(out, "share"), "id") > 0);
        assert_string_equal(jget_str(json_object_get(out, "job"), "kind"), "library.refresh");
        json_decref(out);
        out = NULL;
        assert_last_audit(o.st, "library.add-share", "ok");

        /* The same directory again, or one inside it: 409 naming 'path'. */
        assert_int_equal(library_share_create(o.st, o.jobs, &admin, path_of("share/"), &out, &err), -EEXIST);
        assert_int_equal(err.status, 409);
        assert_string_equal(err.field, "path");
        assert_non_null(strstr(err.message, "is already a library share"));
        assert_int_equal(library_share_create(o.st, o.jobs, &admin, path_of("share/sub"), &out, &err), -EEXIST);
        assert_non_null(strstr(err.message, "overlaps library share"));
        assert_null(out);
        assert_int_equal(n_shares(o.st), 1);
        ops_close(&o);
}

/* A share with a qcow2 base, a template of points 2 on it, a host, and a
 * grant of 5 points for sam. */
static void ops_deploy_fixture(Ops *o) {
        int64_t share, item, grant;
        mkdir(path_of("deploy"), 0755);
        assert_int_equal(store_share_insert(o->st, path_of("deploy"), &share), 0);
        StoreItem it = { .share_id = share, .size = 1 << 20, .virtual_size = 1 << 30 };
        snprintf(it.rel_path, sizeof it.rel_path, "base.qcow2");
        snprintf(it.kind, sizeof it.kind, "disk");
        snprintf(it.format, sizeof it.format, "qcow2");
        assert_int_equal(store_item_upsert(o->st, &it, &item), 0);
        StoreTemplate t = { .name = "small", .cpus = 1, .memory_mib = 512, .firmware = "bios", .base_item_id = item, .points = 2 };
        assert_int_equal(store_template_insert(o->st, &t, &o->tpl_id), 0);
        assert_int_equal(store_host_insert(o->st, "h1", "test:///default", STORE_ROOT_GROUP_ID, "armada", NULL, &o->host_id), 0);
        assert_int_equal(store_host_set_facts(o->st, o->host_id, 16, 65536, 65536, "TEST", "test", "h1", "/tmp"), 0);
        assert_true(store_host_set_state(o->st, o->host_id, "ok", NULL) >= 0);
        StoreGrant g = { .user_id = o->self_id, .group_id = STORE_ROOT_GROUP_ID, .points = 5, .max_vms = -1, .max_cpus = -1,
                         .max_memory_mib = -1, .actions = LIBRARY_GRANT_ACTIONS };
        assert_int_equal(store_grant_insert(o->st, &g, &o->tpl_id, 1, &grant), 0);
}

static size_t n_vms(Store *st) {
        _cleanup_json_ json_t *all = NULL;
        assert_int_equal(store_vm_list(st, NULL, 0, 0, &all), 0);
        return json_array_size(all);
}

static void test_op_self_service_deploy_quota(void **state) {
        Ops o;
        ops_open(&o);
        ops_deploy_fixture(&o);
        OpCaller sam = caller(ROLE_SELF_SERVICE, o.self_id, "sam", "self-service");
        OpError err = { 0 };
        json_t *out = NULL;

        /* 3 VMs of 2 points against 5: 422 naming 'count', audited as
         * denied, and no VM row (the transaction rolled back). */
        LibraryDeploySpec s = { .template_id = o.tpl_id, .name = "web", .count = 3, .numbered = true, .start = true };
        assert_int_equal(library_template_deploy(o.st, o.jobs, &sam, &s, &out, &err), -EINVAL);
        assert_int_equal(err.status, 422);
        assert_string_equal(err.code, "quota_exceeded");
        assert_string_equal(err.field, "count");
        assert_non_null(strstr(err.message, "template 'small' costs 2 points per VM"));
        assert_null(out);
        assert_int_equal(n_vms(o.st), 0);
        assert_last_audit(o.st, "template.deploy", "denied");

        /* A host for the VM: self-service VMs are placed in the grant's group. */
        s.host = "h1";
        assert_int_equal(library_template_deploy(o.st, o.jobs, &sam, &s, &out, &err), -EPERM);
        assert_int_equal(err.status, 403);
        assert_string_equal(err.field, "host");
        s.host = NULL;

        /* 2 VMs fit: both recorded (state creating, owned by sam), one
         * vm.deploy job each, under the grant. */
        s.count = 2;
        assert_int_equal(library_template_deploy(o.st, o.jobs, &sam, &s, &out, &err), 0);
        assert_int_equal(json_array_size(json_object_get(out, "vms")), 2);
        assert_int_equal(json_array_size(json_object_get(out, "jobs")), 2);
        assert_true(jget_int(out, "grant_id") > 0);
        json_t *vm = json_array_get(json_object_get(out, "vms"), 0);
        assert_string_equal(jget_str(vm, "name"), "web-1");
        assert_string_equal(jget_str(vm, "state"), "creating");
        assert_int_equal(jget_int(vm, "owner_id"), o.self_id);
        assert_string_equal(jget_str(json_array_get(json_object_get(out, "jobs"), 1), "kind"), "vm.deploy");
        json_decref(out);
        out = NULL;
        assert_int_equal(n_vms(o.st), 2);
        assert_last_audit(o.st, "vm.deploy", "accepted");

        /* The quota is used now: one more VM is refused, nothing added. */
        s.count = 1;
        s.name = "db";
        s.numbered = false;
        assert_int_equal(library_template_deploy(o.st, o.jobs, &sam, &s, &out, &err), -EINVAL);
        assert_string_equal(err.code, "quota_exceeded");
        assert_int_equal(n_vms(o.st), 2);
        ops_close(&o);
}

/* An administrator's deploy of 2 VMs onto a host with room for one: the
 * second VM's placement counts the first one's row, fails with 422 naming
 * 'host', and the first row is rolled back with it. */
static void test_op_deploy_all_or_nothing(void **state) {
        Ops o;
        ops_open(&o);
        ops_deploy_fixture(&o);
        int64_t tiny;
        /* 1280 MiB less the default 512 MiB reserve: one VM of 512 MiB. */
        assert_int_equal(store_host_insert(o.st, "tiny", "test:///default", STORE_ROOT_GROUP_ID, "armada", NULL, &tiny), 0);
        assert_int_equal(store_host_set_facts(o.st, tiny, 4, 1280, 1280, "TEST", "test", "tiny", "/tmp"), 0);
        assert_true(store_host_set_state(o.st, tiny, "ok", NULL) >= 0);
        OpCaller admin = caller(ROLE_ADMIN, o.admin_id, "root", "administrator");
        OpError err = { 0 };
        json_t *out = NULL;
        LibraryDeploySpec s = { .template_id = o.tpl_id, .name = "app", .count = 2, .numbered = true, .host = "tiny" };
        assert_int_equal(library_template_deploy(o.st, o.jobs, &admin, &s, &out, &err), -EINVAL);
        assert_int_equal(err.status, 422);
        assert_string_equal(err.code, "no_capacity");
        assert_string_equal(err.field, "host");
        assert_non_null(strstr(err.message, "Cannot deploy VM 2 of 2 from template 'small': host 'tiny' cannot take VM 'app-2'"));
        assert_null(out);
        assert_int_equal(n_vms(o.st), 0);
        /* One fits. */
        s.count = 1;
        assert_int_equal(library_template_deploy(o.st, o.jobs, &admin, &s, &out, &err), 0);
        assert_int_equal(jget_int(out, "grant_id"), 0);
        json_decref(out);
        assert_int_equal(n_vms(o.st), 1);
        ops_close(&o);
}

/* A database failure is not "not found": showing a library item or a
 * template answers 5xx "internal" (no SQL or file in the sentence), where a
 * missing one answers 404 as it always did. */
static void test_op_show_db_error(void **state) {
        Ops o;
        ops_open(&o);
        OpCaller admin = caller(ROLE_ADMIN, o.admin_id, "root", "administrator");
        OpError err = { 0 };
        json_t *out = NULL;
        assert_int_equal(library_item_get(o.st, &admin, 42, &out, &err), -ENOENT);
        assert_int_equal(err.status, 404);
        assert_string_equal(err.code, "not_found");
        assert_string_equal(err.message, "There is no library item with id 42.");
        memset(&err, 0, sizeof err);
        assert_int_equal(library_template_get(o.st, &admin, 7, &out, &err), -ENOENT);
        assert_int_equal(err.status, 404);
        assert_string_equal(err.message, "There is no template with id 7.");
        assert_null(out);

        assert_int_equal(tmpstore_break_table(o.st, "library_item"), 0);
        memset(&err, 0, sizeof err);
        int r = library_item_get(o.st, &admin, 42, &out, &err);
        assert_true(r < 0 && r != -ENOENT);
        assert_int_equal(err.status, 500);
        assert_string_equal(err.code, "internal");
        assert_string_equal(err.message, "A database error occurred while handling the library item.");
        /* A template's row names its base item: it fails the same way. */
        memset(&err, 0, sizeof err);
        r = library_template_get(o.st, &admin, 7, &out, &err);
        assert_true(r < 0 && r != -ENOENT);
        assert_int_equal(err.status, 500);
        assert_string_equal(err.code, "internal");
        assert_null(strstr(err.message, "SELECT"));
        assert_null(strstr(err.message, "ops.db"));
        assert_null(out);
        ops_close(&o);
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
                cmocka_unit_test(test_op_share_create),
                cmocka_unit_test(test_op_self_service_deploy_quota),
                cmocka_unit_test(test_op_deploy_all_or_nothing),
                cmocka_unit_test(test_op_show_db_error),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
