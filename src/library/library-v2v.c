/* virt-v2v-in-place on a new VM's disks: the phase import and P2V share
 * between "the disks are converted/copied" and "the VM is defined", so a
 * guest that came with the drivers of another hypervisor (or of bare metal)
 * boots on virtio.
 *
 *   mode      per request ("v2v": auto, always, never; default armadad's
 *             --v2v, itself auto): auto runs it when virt-v2v is installed
 *             and the guest is foreign (below), and keeps the source's bus
 *             when it cannot inspect or convert the guest; always runs it
 *             on any guest and fails the job then; never does not run it
 *   foreign   what auto converts, from what the job knows of the source
 *             (a run costs a minute or more even when there is nothing to
 *             do, and libguestfs's cheapest inspection boots the same
 *             appliance): P2V, OVA, OVF, VMX and VMDK/VHD/VHDX images are
 *             foreign; qcow2 and raw images and libvirt exports are taken
 *             for KVM guests already on virtio
 *   run       virt-v2v-in-place -i disk -if FORMAT DISK... from a fixed argv
 *             (posix_spawn, never a shell), in a process group of its own
 *             (it starts nbdkit and QEMU: a timeout or a cancel kills them
 *             all), with LIBGUESTFS_BACKEND=direct and, when /dev/kvm cannot
 *             be opened, LIBGUESTFS_BACKEND_SETTINGS=force_tcg; once more
 *             with force_tcg when the appliance did not start under KVM
 *   report    its output goes into armadad's log, tagged with the job; the
 *             job's result gets {ran, converted, reason, backend, seconds}
 *             in words of our own (no line of its output, which may quote
 *             the guest's files)
 *
 * virt-v2v-in-place 2.2 writes no domain XML of its own: on success the
 * caller defines the VM with virtio disks and NICs, which is what its
 * conversion readies the guest for (virtio drivers in the initramfs, fstab
 * and the bootloader by UUID or /dev/vdX). */
#include "library-priv.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define V2V_ARGV_MAX (8 + HV_MAX_DISKS)
#define V2V_LOG_LINES 200

static struct {
        LibraryV2vMode mode;
        unsigned timeout_s;
        const char *program;
} v2v_config = { .mode = LIBRARY_V2V_AUTO, .timeout_s = 3600, .program = "virt-v2v-in-place" };

void library_v2v_configure(const LibraryV2vConfig *cfg) {
        if (cfg->mode_set)
                v2v_config.mode = cfg->mode;
        if (cfg->timeout_s)
                v2v_config.timeout_s = cfg->timeout_s;
        if (cfg->program)
                v2v_config.program = cfg->program;
}

int library_v2v_mode_parse(const char *s, LibraryV2vMode *ret) {
        if (!s)
                return -EINVAL;
        LibraryV2vMode m = streq(s, "auto") ? LIBRARY_V2V_AUTO : streq(s, "always") ? LIBRARY_V2V_ALWAYS
                         : streq(s, "never") ? LIBRARY_V2V_NEVER : (LibraryV2vMode) -1;
        if ((int) m < 0)
                return -EINVAL;
        *ret = m;
        return 0;
}

static const char *mode_name(LibraryV2vMode m) {
        return m == LIBRARY_V2V_ALWAYS ? "always" : m == LIBRARY_V2V_NEVER ? "never" : "auto";
}

/* The program's path when it is installed (in PATH, or the configured
 * absolute path), else NULL. */
static char *v2v_program(void) {
        const char *p = v2v_config.program;
        if (p[0] == '/')
                return access(p, X_OK) == 0 ? xstrdup(p) : NULL;
        const char *path = getenv("PATH");
        _cleanup_free_ char *copy = xstrdup(path && *path ? path : "/usr/bin:/bin");
        char *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                char *full = xasprintf("%s/%s", d, p);
                if (access(full, X_OK) == 0)
                        return full;
                free(full);
        }
        return NULL;
}

bool library_v2v_installed(void) {
        _cleanup_free_ char *p = v2v_program();
        return p != NULL;
}

int library_v2v_mode_of(const char *value, const char **ret_name, OpError *err) {
        LibraryV2vMode m = v2v_config.mode;
        if (value && library_v2v_mode_parse(value, &m) < 0)
                return op_fail(err, 400, "invalid_argument", "v2v", "Field 'v2v' must be auto, always or never, not '%.32s'.", value);
        if (m == LIBRARY_V2V_ALWAYS && !library_v2v_installed())
                return op_fail(err, 422, "invalid_argument", "v2v", "Field 'v2v' is 'always' but virt-v2v is not installed on"
                               " armadad's machine.");
        *ret_name = mode_name(m);
        return 0;
}

bool library_v2v_source_foreign(const LibraryV2vSource *src, char *why, size_t why_len) {
        const char *kind = src ? src->kind : NULL;
        if (!kind || streq(kind, "p2v") || streq(kind, "ova") || streq(kind, "ovf") || streq(kind, "vmx"))
                return true;
        if (streq(kind, "libvirt")) {
                snprintf(why, why_len, "The source is a libvirt export (a KVM guest already on virtio)");
                return false;
        }
        if (!streq(kind, "image"))
                return true;            /* a kind this rule does not know: as before it, convert */
        const char *native = NULL;
        for (size_t i = 0; i < src->n_formats; i++) {
                const char *f = src->formats[i];
                if (!f || (!streq(f, "qcow2") && !streq(f, "raw")))
                        return true;    /* vmdk, vpc (VHD), vhdx: another hypervisor's */
                if (!native || streq(f, "qcow2"))
                        native = f;
        }
        if (!native)
                return true;
        snprintf(why, why_len, "The source is a %s disk image, taken for a KVM guest already on virtio", native);
        return false;
}

bool library_v2v_wanted(const char *mode, const LibraryV2vSource *src) {
        char why[160];
        if (mode && streq(mode, "never"))
                return false;
        if (mode && streq(mode, "always"))
                return true;
        return library_v2v_source_foreign(src, why, sizeof why);
}

/* "kvm" when this process can open /dev/kvm (libguestfs's appliance then
 * runs accelerated), else "tcg". */
static const char *v2v_backend(void) {
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return "tcg";
        close(fd);
        return "kvm";
}

/* environ plus the libguestfs settings (the strings are static or leaked
 * into the child only: the array is freed by the caller, its entries are
 * environ's or literals). */
static char **v2v_env(bool tcg) {
        size_t n = 0;
        while (environ[n]) n++;
        char **env = xmalloc(sizeof(char *) * (n + 3));
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
                if (strncmp(environ[i], "LIBGUESTFS_BACKEND=", 19) != 0 && strncmp(environ[i], "LIBGUESTFS_BACKEND_SETTINGS=", 28) != 0)
                        env[k++] = environ[i];
        env[k++] = (char *) "LIBGUESTFS_BACKEND=direct";
        if (tcg)
                env[k++] = (char *) "LIBGUESTFS_BACKEND_SETTINGS=force_tcg";
        env[k] = NULL;
        return env;
}

static int v2v_spawn(char *const argv[], bool tcg, const char *log, pid_t *ret_pid) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t at;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        posix_spawnattr_init(&at);
        posix_spawnattr_setpgroup(&at, 0);      /* its nbdkit and QEMU go with it */
        sigset_t none;
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&at, &none);
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
        _cleanup_free_ char **env = v2v_env(tcg);
        int r = posix_spawn(ret_pid, argv[0], &fa, &at, argv, env);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        return -r;
}

/* Waits for the process group of pid: its exit status (128+signal when
 * killed), -ETIMEDOUT after timeout_s or -ECANCELED on the job's cancel
 * (then the whole group is killed and reaped). Reports progress every 10 s
 * so the job is not taken for stuck. */
static int v2v_wait(JobCtx *ctx, pid_t pid, unsigned timeout_s, int pct) {
        int64_t t0 = mono_ms(), last = t0;
        int stop = 0;
        for (;;) {
                int status;
                pid_t w = waitpid(pid, &status, stop ? 0 : WNOHANG);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w == pid || w < 0) {
                        (void) kill(-pid, SIGKILL);     /* anything it left behind in its group */
                        if (stop)
                                return stop;
                        if (w < 0)
                                return -errno;
                        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
                }
                int64_t now = mono_ms();
                if (job_cancel_requested(ctx))
                        stop = -ECANCELED;
                else if (now - t0 > (int64_t) timeout_s * 1000)
                        stop = -ETIMEDOUT;
                if (stop) {
                        (void) kill(-pid, SIGTERM);
                        struct timespec ts = { 0, 500 * 1000 * 1000 };
                        nanosleep(&ts, NULL);
                        (void) kill(-pid, SIGKILL);
                        continue;
                }
                if (now - last >= 10000) {
                        last = now;
                        job_progress(ctx, pct, "converting the guest's drivers with virt-v2v (%lld s)", (long long) ((now - t0) / 1000));
                }
                struct timespec ts = { 0, 200 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
}

/* The last V2V_LOG_LINES lines of the output into armadad's log, tagged
 * with the job; whether it says the guest could not be inspected, and
 * whether libguestfs's appliance did not start. */
static void v2v_log(JobCtx *ctx, const char *log, bool *ret_uninspectable, bool *ret_no_launch) {
        _cleanup_free_ char *text = NULL;
        *ret_uninspectable = *ret_no_launch = false;
        if (file_read_all(log, &text, NULL) < 0)
                return;
        *ret_uninspectable = strstr(text, "inspection could not detect") || strstr(text, "No root device found") ||
                             strstr(text, "no root device found");
        *ret_no_launch = strstr(text, "guestfs_launch failed") != NULL;
        size_t lines = 0;
        for (const char *p = text; *p; p++) lines += *p == '\n';
        size_t skip = lines > V2V_LOG_LINES ? lines - V2V_LOG_LINES : 0;
        char *save = NULL;
        for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                if (skip) {
                        skip--;
                        continue;
                }
                log_info("job %lld (%s): virt-v2v: %.400s", (long long) ctx->job->id, ctx->job->kind, l);
        }
}

/* One run of argv (TCG or not) to its end: its exit status, or -ETIMEDOUT,
 * -ECANCELED, or -errno when it could not be started; its output logged
 * and what it said of the guest and of the appliance in the flags. */
static int v2v_run(JobCtx *ctx, char *const argv[], bool tcg, const char *log, unsigned timeout_s, int pct,
                   bool *ret_uninspectable, bool *ret_no_launch) {
        log_info("job %lld (%s): running %s, libguestfs backend direct%s", (long long) ctx->job->id, ctx->job->kind, argv[0],
                 tcg ? " with force_tcg" : "");
        pid_t pid;
        int st = v2v_spawn(argv, tcg, log, &pid);
        if (st == 0)
                st = v2v_wait(ctx, pid, timeout_s, pct);
        else
                log_warn("job %lld (%s): cannot run %s: %s", (long long) ctx->job->id, ctx->job->kind, argv[0], strerror(-st));
        v2v_log(ctx, log, ret_uninspectable, ret_no_launch);
        unlink(log);
        return st;
}

static json_t *v2v_result(bool ran, bool converted, const char *backend, double secs, const char *reason) {
        json_t *o = json_pack("{s:b, s:b, s:s}", "ran", ran, "converted", converted, "reason", reason);
        if (backend)
                json_object_set_new(o, "backend", json_string(backend));
        if (ran)
                json_object_set_new(o, "seconds", json_real(secs));
        return o;
}

int library_v2v_convert(JobCtx *ctx, const char *mode, const LibraryV2vSource *src, char *const *paths, size_t n,
                        const char *format, int pct, json_t **ret_result, bool *ret_converted) {
        bool always = mode && streq(mode, "always");
        *ret_converted = false;
        if (mode && streq(mode, "never")) {
                *ret_result = v2v_result(false, false, NULL, 0, "Not asked for (v2v: never); the disks keep the source's bus.");
                return 0;
        }
        char native[160];
        if (!always && !library_v2v_source_foreign(src, native, sizeof native)) {
                _cleanup_free_ char *reason = xasprintf("%s: v2v auto converts only foreign guests (P2V, OVA, OVF, VMX, VMDK,"
                                                        " VHD, VHDX; v2v: always forces it); the disks keep the source's bus.",
                                                        native);
                *ret_result = v2v_result(false, false, NULL, 0, reason);
                return 0;
        }
        _cleanup_free_ char *prog = v2v_program();
        if (!prog) {
                if (always)
                        return job_fail(ctx, -ENOENT, "Cannot convert the guest with virt-v2v: it is not installed.");
                *ret_result = v2v_result(false, false, NULL, 0, "virt-v2v is not installed; the disks keep the source's bus.");
                return 0;
        }
        if (n == 0 || n > HV_MAX_DISKS)
                return job_fail(ctx, -EINVAL, "Cannot convert the guest with virt-v2v: it has no disks.");
        const char *backend = v2v_backend();
        bool tcg = streq(backend, "tcg");
        char *argv[V2V_ARGV_MAX];
        size_t k = 0;
        argv[k++] = prog;
        argv[k++] = (char *) "-i";
        argv[k++] = (char *) "disk";
        argv[k++] = (char *) "-if";
        argv[k++] = (char *) format;
        for (size_t i = 0; i < n; i++) argv[k++] = paths[i];
        argv[k] = NULL;
        _cleanup_free_ char *log = xasprintf("%s/armada-v2v-%lld.log", library_tmp_dir(), (long long) ctx->job->id);
        job_progress(ctx, pct, "converting the guest's drivers with virt-v2v (%s)", tcg ? "TCG: no usable /dev/kvm" : "KVM");
        int64_t t0 = mono_ms();
        bool uninspectable = false, no_launch = false;
        int st = v2v_run(ctx, argv, tcg, log, v2v_config.timeout_s, pct, &uninspectable, &no_launch);
        if (st > 0 && !tcg && no_launch) {
                /* /dev/kvm opened, yet QEMU could not run the appliance on it
                 * (nested KVM without what QEMU needs: this CI machine's
                 * QEMU aborts setting MSR 0x10a). Once more under TCG. */
                log_warn("job %lld (%s): libguestfs's appliance did not start under KVM; running virt-v2v again under TCG",
                         (long long) ctx->job->id, ctx->job->kind);
                job_progress(ctx, pct, "converting the guest's drivers with virt-v2v (TCG: the appliance did not start under KVM)");
                tcg = true;
                backend = "tcg";
                int64_t spent = (mono_ms() - t0) / 1000;
                unsigned left = spent < (int64_t) v2v_config.timeout_s ? v2v_config.timeout_s - (unsigned) spent : 1;
                st = v2v_run(ctx, argv, tcg, log, left, pct, &uninspectable, &no_launch);
        }
        double secs = (double) (mono_ms() - t0) / 1000.0;
        if (st == -ECANCELED)
                return job_fail(ctx, -ECANCELED, "Cancelled while virt-v2v converted the guest.");
        if (st == 0) {
                *ret_converted = true;
                *ret_result = v2v_result(true, true, backend, secs, "virt-v2v converted the guest; its disks and network cards are"
                                         " on virtio.");
                return 0;
        }
        char why[200];
        if (st == -ETIMEDOUT)
                snprintf(why, sizeof why, "virt-v2v did not finish within %u s", v2v_config.timeout_s);
        else if (uninspectable)
                snprintf(why, sizeof why, "virt-v2v found no operating system it can inspect on the disks");
        else if (no_launch)
                snprintf(why, sizeof why, "virt-v2v could not start libguestfs's appliance (its output is in armadad's log, job"
                         " %lld)", (long long) ctx->job->id);
        else if (st < 0)
                snprintf(why, sizeof why, "virt-v2v could not be started (%s)", strerror(-st));
        else
                snprintf(why, sizeof why, "virt-v2v could not convert the guest (exit status %d; its output is in armadad's log,"
                         " job %lld)", st, (long long) ctx->job->id);
        if (always)
                return job_fail(ctx, -EMEDIUMTYPE, "Cannot convert the guest with virt-v2v (v2v: always): %s.", why);
        _cleanup_free_ char *reason = xasprintf("%s; the disks keep the source's bus.", why);
        *ret_result = v2v_result(true, false, backend, secs, reason);
        return 0;
}
