/* library_p2v() and the vm.p2v job: a running Linux physical server made
 * into a VM, its disks read over SSH, as named phases:
 *
 *   check     the caller (administrators only), armadad's SSH identity
 *             (--p2v-ssh-key), the request: "user@address", the port, each
 *             disk path against /dev/[a-z0-9/_-]+
 *   trust     the server's host key: armadad's --p2v-known-hosts, or the
 *             fingerprint given ("SHA256:..."), pinned by scanning the
 *             server's keys (ssh-keyscan) and keeping only the key with that
 *             fingerprint as the connection's known_hosts; StrictHostKeyChecking
 *             is always on
 *   probe     over SSH, a fixed script that only reads: nproc, MemTotal, the
 *             NICs in /sys/class/net, and for each disk whether it is a
 *             block device and its size (sysfs); the CPUs and memory of the
 *             assessment win when SERVER names an assessed server
 *   record    the VM placed and recorded in state "creating" (the import's
 *             library_new_vm_record)
 *   job       each disk streamed with `ssh ... dd if=DISK` (read-only: dd
 *             reads, nothing on the server is written) straight into one
 *             sparse libvirt upload stream (zero blocks stay holes), or,
 *             when armadad reaches the volume's file, into that file
 *             (O_DIRECT for the aligned pieces: hv_upload_data): one pass,
 *             no local copy; virt-v2v in place on those files (p2v_v2v);
 *             then the domain is defined (SATA disks unless virt-v2v
 *             converted the guest) and started when asked
 *
 * Why a streamed dd and not nbdkit's ssh plugin + qemu-img convert: dd over
 * one SSH channel runs at the speed of the cipher, needs nothing on the
 * server but dd and sftp-less sshd, and the bytes go once from the pipe
 * into the host's volume (the floor is `ssh dd` itself); the plugin reads
 * through SFTP in small requests and qemu-img would write a local file that
 * must then be uploaded again.
 *
 * Every program runs from a fixed argv (posix_spawn, never a shell here);
 * the only user text the server's shell sees are the disk paths, checked
 * against /dev/[a-z0-9/_-]+ first. A failed job removes the volumes, the
 * domain and the VM's row (LibraryBuild). */
#include "library-priv.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hv/hv-volume.h"
#include "store/store-monitor.h"

extern char **environ;

#define P2V_OUT_MAX (64 << 10)
#define P2V_CHUNK (1 << 20)
#define P2V_HOLE (64 << 10)
#define P2V_ARGV_MAX 64
#define P2V_PIPE (8 << 20)

static LibraryP2vConfig p2v_config;

void library_p2v_configure(const LibraryP2vConfig *cfg) {
        /* Set once at start-up, kept for the process's life. */
        if (cfg && cfg->ssh_key) {
                free((char *) p2v_config.ssh_key);
                p2v_config.ssh_key = xstrdup(cfg->ssh_key);
        }
        if (cfg && cfg->known_hosts) {
                free((char *) p2v_config.known_hosts);
                p2v_config.known_hosts = xstrdup(cfg->known_hosts);
        }
}

/* ------------------------------------------------------------------ */
/* check: the request's pieces */

const char *library_p2v_disk_invalid(const char *path) {
        if (!path || strncmp(path, "/dev/", 5) != 0)
                return "must be a device path under /dev/";
        if (strlen(path) > 200)
                return "is longer than 200 characters";
        if (!path[5])
                return "names no device";
        for (const char *p = path + 5; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '/' || *p == '_' || *p == '-'))
                        return "may hold only lower-case letters, digits, '/', '_' and '-' after /dev/";
        if (strstr(path, "//") || path[strlen(path) - 1] == '/')
                return "must not hold an empty path segment";
        return NULL;
}

int library_p2v_ssh_parse(const char *ssh, char user[33], char addr[256]) {
        const char *at = ssh ? strchr(ssh, '@') : NULL;
        const char *a = at ? at + 1 : ssh;
        if (!ssh)
                return -EINVAL;
        size_t ul = at ? (size_t) (at - ssh) : 4;
        if (ul == 0 || ul > 32)
                return -EINVAL;
        snprintf(user, 33, "%.*s", (int) ul, at ? ssh : "root");
        for (const char *p = user; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.') ||
                    (p == user && (*p == '-' || *p == '.')))
                        return -EINVAL;
        size_t al = strlen(a);
        if (al >= 2 && a[0] == '[' && a[al - 1] == ']')   /* an IPv6 address in brackets */
                a++, al -= 2;
        if (al == 0 || al > 253 || a[0] == '-')
                return -EINVAL;
        for (size_t i = 0; i < al; i++)
                if (!((a[i] >= 'a' && a[i] <= 'z') || (a[i] >= 'A' && a[i] <= 'Z') || (a[i] >= '0' && a[i] <= '9') ||
                      a[i] == '.' || a[i] == '-' || a[i] == ':'))
                        return -EINVAL;
        snprintf(addr, 256, "%.*s", (int) al, a);
        return 0;
}

/* "SHA256:" and 43 characters of unpadded base64 (OpenSSH's form). */
static bool fingerprint_valid(const char *f) {
        if (strncmp(f, "SHA256:", 7) != 0 || strlen(f) != 7 + 43)
                return false;
        for (const char *p = f + 7; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '+' || *p == '/'))
                        return false;
        return true;
}

/* ------------------------------------------------------------------ */
/* running ssh and ssh-keyscan */

typedef struct {
        char user[33], addr[256];
        int port;
        const char *known_hosts;   /* the file ssh checks the host key against */
} P2vConn;

/* ssh's argv for remote (a fixed script): key-only, batch mode, the host
 * key checked against conn->known_hosts only, no configuration file read. */
static void ssh_argv(const P2vConn *pc, char *port, char *kh, char *remote, char *argv[P2V_ARGV_MAX]) {
        size_t n = 0;
        snprintf(port, 8, "%d", pc->port);
        snprintf(kh, PATH_MAX + 32, "UserKnownHostsFile=%s", pc->known_hosts);
        argv[n++] = "ssh";
        argv[n++] = "-F";
        argv[n++] = "/dev/null";
        argv[n++] = "-i";
        argv[n++] = (char *) p2v_config.ssh_key;
        static char *const opts[] = {
                "IdentitiesOnly=yes", "BatchMode=yes", "StrictHostKeyChecking=yes", "GlobalKnownHostsFile=/dev/null",
                "ConnectTimeout=10", "ServerAliveInterval=15", "ServerAliveCountMax=4", "LogLevel=ERROR", "Compression=no",
                "ForwardAgent=no", "ForwardX11=no", "ClearAllForwardings=yes", "UpdateHostKeys=no",
                "Ciphers=aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr",
        };
        for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
                argv[n++] = "-o";
                argv[n++] = opts[i];
        }
        argv[n++] = "-o";
        argv[n++] = kh;
        argv[n++] = "-p";
        argv[n++] = port;
        argv[n++] = "-l";
        argv[n++] = (char *) pc->user;
        argv[n++] = "-T";
        argv[n++] = "--";
        argv[n++] = (char *) pc->addr;
        argv[n++] = remote;
        argv[n] = NULL;
        assert(n < P2V_ARGV_MAX);
}

/* Starts argv with stdin from /dev/null, stdout into out_fd and stderr into
 * the file err_log. 0 and the child's pid, or -errno. */
static int spawn_into(char *const argv[], int out_fd, const char *err_log, pid_t *ret_pid) {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
        posix_spawn_file_actions_addopen(&fa, 2, err_log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int r = posix_spawnp(ret_pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        return -r;
}

static int wait_child(pid_t pid) {
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* The last non-empty line of the file log (what ssh said last), at most
 * 300 bytes, into out ("" when none). */
static void last_line(const char *log, char out[320]) {
        _cleanup_free_ char *text = NULL;
        out[0] = 0;
        if (file_read_all(log, &text, NULL) < 0)
                return;
        size_t n = strlen(text);
        while (n && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ')) text[--n] = 0;
        const char *l = strrchr(text, '\n');
        l = l ? l + 1 : text;
        size_t k = 0;
        for (; *l && k < 300; l++)
                out[k++] = (*l >= 0x20 && *l < 0x7f) ? *l : '?';
        out[k] = 0;
}

/* Runs argv to its end with stdout captured (at most P2V_OUT_MAX bytes):
 * 0 and *ret (malloc'd), or the exit status (positive) with ssh's last
 * words in why, or -errno. */
static int run_capture(char *const argv[], char **ret, char why[320]) {
        _cleanup_free_ char *out = xasprintf("%s/armada-p2v-out-XXXXXX", library_tmp_dir());
        _cleanup_free_ char *log = xasprintf("%s/armada-p2v-err-XXXXXX", library_tmp_dir());
        int fd = mkostemp(out, O_CLOEXEC), lfd = mkostemp(log, O_CLOEXEC);
        if (fd < 0 || lfd < 0) {
                int e = -errno;
                if (fd >= 0) close(fd), unlink(out);
                if (lfd >= 0) close(lfd), unlink(log);
                snprintf(why, 320, "cannot create a temporary file in %s", library_tmp_dir());
                return e;
        }
        close(lfd);
        pid_t pid;
        int r = spawn_into(argv, fd, log, &pid);
        if (r == 0)
                r = wait_child(pid);
        close(fd);
        if (r == -ENOENT)
                snprintf(why, 320, "%s is not installed on armadad's machine", argv[0]);
        else
                last_line(log, why);
        char *text = NULL;
        size_t len = 0;
        if (r == 0 && (file_read_all(out, &text, &len) < 0 || len > P2V_OUT_MAX)) {
                free(text);
                text = NULL;
                snprintf(why, 320, "its answer could not be read or is larger than %d bytes", P2V_OUT_MAX);
                r = -EIO;
        }
        unlink(out);
        unlink(log);
        if (r == 0)
                *ret = text;
        return r;
}

/* OpenSSH's "SHA256:..." fingerprint of a base64 key blob, or -EINVAL. */
static int key_fingerprint(const char *b64, char out[64]) {
        unsigned char blob[8192];
        size_t n;
        if (sodium_base642bin(blob, sizeof blob, b64, strlen(b64), NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
                return -EINVAL;
        unsigned char dg[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(dg, blob, n);
        char enc[sodium_base64_ENCODED_LEN(crypto_hash_sha256_BYTES, sodium_base64_VARIANT_ORIGINAL_NO_PADDING)];
        sodium_bin2base64(enc, sizeof enc, dg, sizeof dg, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
        snprintf(out, 64, "SHA256:%s", enc);
        return 0;
}

/* trust: the known_hosts lines (of ssh-keyscan) whose key has fingerprint
 * fp: 0 and *ret (malloc'd), or the OpError. */
static int pin_host_key(const P2vConn *pc, const char *fp, char **ret, OpError *err) {
        char port[8], why[320];
        snprintf(port, sizeof port, "%d", pc->port);
        char *argv[] = { "ssh-keyscan", "-T", "10", "-p", port, "--", (char *) pc->addr, NULL };
        _cleanup_free_ char *out = NULL;
        int r = run_capture(argv, &out, why);
        if (r != 0 || !out || !out[0])
                return op_fail(err, 422, "unreachable", "ssh", "Cannot read the host keys of '%s' port %d: %s.", pc->addr, pc->port,
                               r == -ENOENT ? why : r != 0 && why[0] ? why : "it answered no SSH key scan");
        StrBuf kept = { 0 };
        char *save = NULL;
        for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                if (line[0] == '#')
                        continue;
                _cleanup_free_ char *copy = xstrdup(line);
                char *s2 = NULL, *host = strtok_r(copy, " ", &s2), *type = strtok_r(NULL, " ", &s2), *b64 = strtok_r(NULL, " \r", &s2);
                char got[64];
                if (host && type && b64 && key_fingerprint(b64, got) == 0 && streq(got, fp))
                        strbuf_printf(&kept, "%s %s %s\n", host, type, b64);
        }
        if (!kept.len) {
                strbuf_free(&kept);
                return op_fail(err, 422, "host_key_mismatch", "host_key_fingerprint", "No host key of '%s' port %d has the"
                               " fingerprint '%s'; check the server's key (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on it).",
                               pc->addr, pc->port, fp);
        }
        *ret = strbuf_steal(&kept);
        return 0;
}

/* A temporary file holding text: 0 and its path (malloc'd), or -errno. */
static int temp_file(const char *text, char **ret) {
        char *path = xasprintf("%s/armada-p2v-kh-XXXXXX", library_tmp_dir());
        int fd = mkostemp(path, O_CLOEXEC);
        if (fd < 0) {
                free(path);
                return -errno;
        }
        size_t n = strlen(text);
        bool ok = write(fd, text, n) == (ssize_t) n;
        close(fd);
        if (!ok) {
                unlink(path);
                free(path);
                return -EIO;
        }
        *ret = path;
        return 0;
}

/* ------------------------------------------------------------------ */
/* probe: what the server has, read-only */

typedef struct {
        unsigned cpus;
        uint64_t memory_mib;
        json_t *nics;                /* [{"name", "mac"}] */
        size_t n_disks;
        char disks[HV_MAX_DISKS][208];
        uint64_t sizes[HV_MAX_DISKS];
        bool block[HV_MAX_DISKS];
} P2vProbe;

/* The fixed script; the disk paths (checked) are its only variable part. */
static char *probe_script(const char *const *disks, size_t n) {
        StrBuf b = { 0 };
        strbuf_append(&b, "export LC_ALL=C; echo cpus $(nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo);"
                          " echo memkb $(sed -n 's/^MemTotal: *\\([0-9]*\\).*/\\1/p' /proc/meminfo);"
                          " for n in $(ls /sys/class/net); do [ \"$n\" = lo ] || echo nic \"$n\" $(cat /sys/class/net/$n/address);"
                          " done;");
        if (n) {
                strbuf_append(&b, " for d in");
                for (size_t i = 0; i < n; i++) strbuf_printf(&b, " '%s'", disks[i]);
                strbuf_append(&b, "; do if [ -b \"$d\" ]; then b=$(basename \"$(readlink -f \"$d\")\");"
                                  " echo disk \"$d\" $(( $(cat /sys/class/block/$b/size) * 512 )); else echo disk \"$d\" notblock; fi;"
                                  " done;");
        } else
                strbuf_append(&b, " for b in $(ls /sys/block); do case $b in loop*|ram*|sr*|zram*|dm-*|md*|nbd*|fd*) continue;; esac;"
                                  " [ -e /sys/block/$b/device ] && echo disk /dev/$b $(( $(cat /sys/block/$b/size) * 512 )); done;");
        strbuf_append(&b, " echo end");
        return strbuf_steal(&b);
}

static int probe_parse(char *out, P2vProbe *p) {
        bool end = false;
        char *save = NULL;
        p->nics = json_array();
        for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char a[256] = "", b[256] = "";
                unsigned long long v;
                if (sscanf(line, "cpus %llu", &v) == 1)
                        p->cpus = v > 0 && v <= 256 ? (unsigned) v : 0;
                else if (sscanf(line, "memkb %llu", &v) == 1)
                        p->memory_mib = v / 1024;
                else if (sscanf(line, "nic %255s %255s", a, b) >= 1)
                        json_array_append_new(p->nics, json_pack("{s:s, s:s}", "name", a, "mac", b));
                else if (sscanf(line, "disk %255s %255s", a, b) == 2 && p->n_disks < HV_MAX_DISKS) {
                        size_t i = p->n_disks++;
                        snprintf(p->disks[i], sizeof p->disks[i], "%s", a);
                        p->block[i] = !streq(b, "notblock");
                        p->sizes[i] = p->block[i] ? strtoull(b, NULL, 10) : 0;
                } else if (streq(line, "end"))
                        end = true;
        }
        return end ? 0 : -EBADMSG;
}

static int probe(const P2vConn *pc, const char *const *disks, size_t n, P2vProbe *p, OpError *err) {
        _cleanup_free_ char *script = probe_script(disks, n);
        char port[8], why[320];
        _cleanup_free_ char *kh = xmalloc(PATH_MAX + 32);
        char *argv[P2V_ARGV_MAX];
        ssh_argv(pc, port, kh, script, argv);
        _cleanup_free_ char *out = NULL;
        int r = run_capture(argv, &out, why);
        if (r != 0) {
                if (strstr(why, "Host key verification failed") || strstr(why, "REMOTE HOST IDENTIFICATION HAS CHANGED") ||
                    strstr(why, "No ED25519 host key is known") || strstr(why, "host key is known"))
                        return op_fail(err, 422, "host_key_mismatch", "host_key_fingerprint", "The host key of '%s' port %d is"
                                       " not the one armadad trusts (%s); give its fingerprint in 'host_key_fingerprint'.",
                                       pc->addr, pc->port, p2v_config.known_hosts ? "its --p2v-known-hosts" : "the fingerprint given");
                return op_fail(err, 422, "unreachable", "ssh", "Cannot run the read-only probe on '%s@%s' port %d over SSH: %s.",
                               pc->user, pc->addr, pc->port, why[0] ? why : "ssh failed");
        }
        if (probe_parse(out, p) < 0)
                return op_fail(err, 422, "unreachable", "ssh", "The probe of '%s' ended early; is it a Linux server with a POSIX"
                               " shell?", pc->addr);
        return 0;
}

/* ------------------------------------------------------------------ */
/* the operation */

/* The assessed server named name: 0 with its CPUs, memory and the host of
 * its node_exporter URL, -ENOENT when there is none. */
static int assessed(Store *st, const char *name, unsigned *cpus, uint64_t *mem, char host[256]) {
        _cleanup_json_ json_t *all = NULL;
        if (!name || store_assess_list_json(st, &all) < 0)
                return -ENOENT;
        size_t i;
        json_t *s;
        json_array_foreach(all, i, s) {
                const char *n = jget_str(s, "name");
                if (!n || !streq(n, name))
                        continue;
                *cpus = (unsigned) jget_int(s, "cpus");
                json_t *m = json_object_get(s, "memory_mib");
                *mem = json_is_number(m) ? (uint64_t) json_number_value(m) : 0;
                const char *url = jget_str(s, "url"), *h = url ? strstr(url, "://") : NULL;
                host[0] = 0;
                if (h) {
                        h += 3;
                        size_t k = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/");
                        snprintf(host, 256, "%.*s", (int) (k < 255 ? k : 255), h);
                }
                return 0;
        }
        return -ENOENT;
}

/* check: the caller, the configuration and the fields. Fills pc. */
static int p2v_check(Store *st, const OpCaller *c, const LibraryP2vSpec *spec, const char *assessed_host, P2vConn *pc,
                     OpError *err) {
        if (!op_allowed(st, c, ACT_UPDATE, OBJ_SYSTEM, 0, 0))
                return op_deny(st, c, err, "convert physical servers (P2V) into VMs on", "system", 0, NULL);
        if (!p2v_config.ssh_key)
                return op_fail(err, 503, "unavailable", "ssh", "P2V is off: armadad was started without --p2v-ssh-key (the SSH"
                               " identity it reads physical servers with).");
        if (!spec->server || !spec->server[0])
                return op_fail(err, 400, "invalid_argument", "server", "Field 'server' is required.");
        const char *ssh = spec->ssh;
        _cleanup_free_ char *derived = NULL;
        if (!ssh && assessed_host && assessed_host[0])
                ssh = derived = xasprintf("root@%s", assessed_host);
        if (!ssh)
                return op_fail(err, 400, "invalid_argument", "ssh", "Field 'ssh' is required: 'user@address' of server '%.64s'.",
                               spec->server);
        if (library_p2v_ssh_parse(ssh, pc->user, pc->addr) < 0)
                return op_fail(err, 400, "invalid_argument", "ssh", "Field 'ssh' ('%.300s') must be 'user@address': a user name of"
                               " lower-case letters, digits, '_', '-' or '.', and a host name or IP address.", ssh);
        pc->port = spec->port ? (int) spec->port : 22;
        if (pc->port < 1 || pc->port > 65535)
                return op_fail(err, 400, "invalid_argument", "port", "Field 'port' must be from 1 to 65535.");
        if (spec->n_disks > HV_MAX_DISKS)
                return op_fail(err, 400, "invalid_argument", "disks", "Field 'disks' may name at most %d disks.", HV_MAX_DISKS);
        for (size_t i = 0; i < spec->n_disks; i++) {
                const char *bad = library_p2v_disk_invalid(spec->disks[i]);
                if (bad)
                        return op_fail(err, 400, "invalid_argument", "disks", "Disk '%.200s' %s.", spec->disks[i] ? spec->disks[i] : "",
                                       bad);
                for (size_t j = 0; j < i; j++)
                        if (streq(spec->disks[i], spec->disks[j]))
                                return op_fail(err, 400, "invalid_argument", "disks", "Disk '%s' is named twice.", spec->disks[i]);
        }
        if (spec->host_key_fingerprint && !fingerprint_valid(spec->host_key_fingerprint))
                return op_fail(err, 400, "invalid_argument", "host_key_fingerprint", "Field 'host_key_fingerprint' ('%.100s') must"
                               " be an OpenSSH SHA-256 fingerprint such as 'SHA256:' and 43 base64 characters (ssh-keygen -lf).",
                               spec->host_key_fingerprint);
        if (!spec->host_key_fingerprint && !p2v_config.known_hosts)
                return op_fail(err, 400, "invalid_argument", "host_key_fingerprint", "Give the host key fingerprint of '%s' in"
                               " 'host_key_fingerprint' (armadad has no --p2v-known-hosts file to check it against).", pc->addr);
        return 0;
}

/* The probed disks as the job's parameters, each a block device of a size;
 * 400 naming "disks" else. */
static int p2v_disks(const P2vProbe *p, const P2vConn *pc, json_t **ret, uint64_t *ret_bytes, OpError *err) {
        if (!p->n_disks)
                return op_fail(err, 400, "invalid_argument", "disks", "Server '%s' shows no disk; name one in 'disks'.", pc->addr);
        json_t *arr = json_array();
        uint64_t total = 0;
        for (size_t i = 0; i < p->n_disks; i++) {
                if (!p->block[i] || p->sizes[i] == 0) {
                        json_decref(arr);
                        return op_fail(err, 400, "invalid_argument", "disks", "'%s' on server '%s' is %s.", p->disks[i], pc->addr,
                                       p->block[i] ? "an empty block device" : "not a block device (or does not exist)");
                }
                json_array_append_new(arr, json_pack("{s:s, s:I}", "path", p->disks[i], "size", (json_int_t) p->sizes[i]));
                total += p->sizes[i];
        }
        *ret = arr;
        *ret_bytes = total;
        return 0;
}

/* record + queue: the VM's row and the vm.p2v job. */
static int p2v_submit(Store *st, Jobs *jobs, const OpCaller *c, const LibraryP2vSpec *spec, const P2vConn *pc, P2vProbe *p,
                      bool from_assessment, const char *pinned, const char *v2v, json_t **ret, OpError *err) {
        json_t *disks = NULL;
        uint64_t bytes = 0;
        int e = p2v_disks(p, pc, &disks, &bytes, err);
        if (e < 0)
                return e;
        const char *name = spec->name ? spec->name : spec->server;
        if (!spec->name && name_invalid_reason(name)) {
                json_decref(disks);
                return op_fail(err, 400, "invalid_argument", "name", "Server name '%.64s' is not a valid VM name; give one in"
                               " 'name'.", name);
        }
        int64_t group_id = STORE_ROOT_GROUP_ID;
        if (spec->group && (e = library_group_of(st, c, "group", spec->group, &group_id, err)) < 0) {
                json_decref(disks);
                return e;
        }
        _cleanup_free_ char *descr = xasprintf("converted from physical server %.64s (%s)", spec->server, pc->addr);
        LibraryNewVm n = { .name = name, .cpus = p->cpus ? p->cpus : 1, .memory_mib = p->memory_mib, .disk_bytes = bytes,
                           .host = spec->host, .group_id = group_id, .origin = "created", .description = descr };
        int64_t vm_id;
        StoreHost h;
        if ((e = library_new_vm_record(st, c, &n, &vm_id, &h, err)) < 0) {
                json_decref(disks);
                return e;
        }
        json_t *src = json_pack("{s:s, s:s, s:s, s:i, s:I, s:I, s:o, s:O, s:b}", "server", spec->server, "user", pc->user,
                                "address", pc->addr, "port", pc->port, "cpus", (json_int_t) n.cpus, "memory_mib",
                                (json_int_t) n.memory_mib, "disks", disks, "nics", p->nics, "assessed", from_assessment);
        json_t *params = json_pack("{s:O, s:s?, s:s?, s:b, s:s, s:s}", "source", src, "known_hosts", pinned, "network", spec->network,
                                   "start", spec->start, "v2v", v2v, "domain_type", spec->domain_type ? spec->domain_type : "auto");
        int64_t job;
        json_t *vm;
        e = library_queue_new_vm(st, jobs, c, "vm.p2v", vm_id, name, params, &vm, &job, err);
        json_decref(params);
        if (e < 0) {
                json_decref(src);
                return e;
        }
        _cleanup_free_ char *detail = xasprintf("%s@%s:%d %zu disk(s)", pc->user, pc->addr, pc->port, p->n_disks);
        op_audit(st, c, "vm.p2v", "vm", vm_id, name, detail, "accepted");
        *ret = json_pack("{s:o, s:o, s:o}", "vm", vm, "job", library_job_json(st, job), "source", src);
        return 0;
}

int library_p2v(Store *st, Jobs *jobs, const OpCaller *c, const LibraryP2vSpec *spec, json_t **ret, OpError *err) {
        unsigned a_cpus = 0;
        uint64_t a_mem = 0;
        char a_host[256] = "";
        bool from_assessment = assessed(st, spec->server, &a_cpus, &a_mem, a_host) == 0;
        P2vConn pc = { .known_hosts = p2v_config.known_hosts };
        int e = p2v_check(st, c, spec, from_assessment ? a_host : NULL, &pc, err);
        if (e < 0)
                return e;
        const char *v2v;
        if ((e = library_v2v_mode_of(spec->v2v, &v2v, err)) < 0)
                return e;
        if (spec->domain_type && !streq(spec->domain_type, "auto") && !streq(spec->domain_type, "kvm") && !streq(spec->domain_type, "qemu"))
                return op_fail(err, 400, "invalid_argument", "domain_type", "Field 'domain_type' must be auto, kvm or qemu.");
        _cleanup_free_ char *pinned = NULL, *kh_file = NULL;
        if (spec->host_key_fingerprint) {
                if ((e = pin_host_key(&pc, spec->host_key_fingerprint, &pinned, err)) < 0)
                        return e;
                if (temp_file(pinned, &kh_file) < 0)
                        return op_fail(err, 500, "internal", NULL, "Cannot write a temporary file in %s.", library_tmp_dir());
                pc.known_hosts = kh_file;
        }
        P2vProbe p = { 0 };
        e = probe(&pc, spec->disks, spec->n_disks, &p, err);
        if (kh_file)
                unlink(kh_file);
        if (e == 0) {
                if (from_assessment && a_cpus)
                        p.cpus = a_cpus;
                if (from_assessment && a_mem >= 16)
                        p.memory_mib = a_mem;
                if (spec->cpus)
                        p.cpus = (unsigned) spec->cpus;
                if (spec->memory_mib)
                        p.memory_mib = (uint64_t) spec->memory_mib;
                if (p.memory_mib < 16)
                        e = op_fail(err, 422, "invalid_argument", "memory_mib", "Server '%s' reports no memory size; give"
                                    " 'memory_mib'.", pc.addr);
        }
        if (e == 0)
                e = p2v_submit(st, jobs, c, spec, &pc, &p, from_assessment, pinned, v2v, ret, err);
        json_decref(p.nics);
        return e;
}

/* ------------------------------------------------------------------ */
/* the job: each disk streamed into the host's volume */

typedef struct {
        JobCtx *ctx;
        int fd;                     /* ssh's stdout */
        uint64_t size, done;        /* this disk */
        uint64_t before, total;     /* the disks before it, all of them */
        const char *what;
        int64_t started_ms, last_ms;
        int error;                  /* why the source stopped (< 0), 0 */
} P2vStream;


static bool all_zero(const unsigned char *p, size_t n) {
        static const unsigned char zero[P2V_HOLE];
        return n <= sizeof zero && memcmp(p, zero, n) == 0;
}

static void stream_progress(P2vStream *s) {
        int64_t now = mono_ms();
        if (now - s->last_ms < 1000 && s->done < s->size)
                return;
        s->last_ms = now;
        double secs = (double) (now - s->started_ms) / 1000.0;
        uint64_t read = s->before + s->done;
        job_progress(s->ctx, 5 + (int) (85 * (double) read / (double) (s->total ? s->total : 1)),
                     "reading %s: %llu of %llu MiB (%.0f MiB/s)", s->what, (unsigned long long) (s->done >> 20),
                     (unsigned long long) (s->size >> 20), secs > 0 ? (double) s->done / 1048576.0 / secs : 0.0);
}

/* Reads up to want bytes from the pipe (less only at its end). */
static ssize_t read_full(int fd, unsigned char *buf, size_t want) {
        size_t got = 0;
        while (got < want) {
                ssize_t k = read(fd, buf + got, want - got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                got += (size_t) k;
        }
        return (ssize_t) got;
}

/* The upload's source: the pipe's bytes in order, all-zero 64 KiB blocks
 * as holes. */
static int stream_source(HvUpload *u, void *userdata) {
        P2vStream *s = userdata;
        /* Aligned: the pieces go into the volume with O_DIRECT when armadad
         * writes its file (hv_upload_data). */
        _cleanup_free_ unsigned char *buf = xmalloc_aligned(HV_DIRECT_ALIGN, P2V_CHUNK);
        while (s->done < s->size) {
                if (job_cancel_requested(s->ctx))
                        return s->error = -ECANCELED;
                size_t want = s->size - s->done < P2V_CHUNK ? (size_t) (s->size - s->done) : P2V_CHUNK;
                ssize_t k = read_full(s->fd, buf, want);
                if (k <= 0)
                        return s->error = k < 0 ? (int) k : -EPIPE;
                /* Runs of data blocks go in one call, zero blocks as holes. */
                size_t run = 0;
                for (size_t off = 0; off < (size_t) k; off += P2V_HOLE) {
                        size_t n = (size_t) k - off < P2V_HOLE ? (size_t) k - off : P2V_HOLE;
                        if (!all_zero(buf + off, n)) {
                                run += n;
                                continue;
                        }
                        int r = run ? hv_upload_data(u, buf + off - run, run) : 0;
                        run = 0;
                        if (r < 0 || (r = hv_upload_hole(u, n)) < 0)
                                return r;
                }
                if (run && hv_upload_data(u, buf + (size_t) k - run, run) < 0)
                        return -EIO;
                s->done += (uint64_t) k;
                stream_progress(s);
        }
        return 0;
}

/* One disk: `ssh ... dd if=DISK` into the volume <vm>-<uuid8>-sdX.raw. */
static int p2v_disk(LibraryBuild *b, const P2vConn *pc, json_t *d, size_t i, uint64_t before, uint64_t total, HvDomainSpec *spec,
                    json_t *stats, bool *ret_direct) {
        JobCtx *ctx = b->ctx;
        const char *dev = jget_str(d, "path");
        uint64_t size = (uint64_t) jget_int(d, "size");
        if (!dev || library_p2v_disk_invalid(dev) || !size)
                return job_fail(ctx, -EINVAL, "The job's disk %zu is not valid.", i);
        char target[8], port[8];
        snprintf(target, sizeof target, "sd%c", (char) ('a' + i));
        _cleanup_free_ char *what = xasprintf("disk '%s' of '%s'", dev, pc->addr);
        _cleanup_free_ char *remote = xasprintf("exec dd if='%s' bs=1048576", dev);
        _cleanup_free_ char *kh = xmalloc(PATH_MAX + 32);
        char *argv[P2V_ARGV_MAX];
        ssh_argv(pc, port, kh, remote, argv);
        _cleanup_free_ char *log = xasprintf("%s/armada-p2v-%.8s-%s.log", library_tmp_dir(), b->vm.uuid, target);
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return job_fail(ctx, -errno, "Cannot make a pipe: %s.", strerror(errno));
        /* A deep pipe lets ssh go on decrypting while a piece is sent to
         * the host (64 KiB would stall it at every send). */
        if (fcntl(pfd[0], F_SETPIPE_SZ, P2V_PIPE) < 0)
                (void) fcntl(pfd[0], F_SETPIPE_SZ, 1 << 20);
        pid_t pid;
        int r = spawn_into(argv, pfd[1], log, &pid);
        close(pfd[1]);
        if (r < 0) {
                close(pfd[0]);
                unlink(log);
                return job_fail(ctx, r, "Cannot run ssh: %s.", strerror(-r));
        }
        P2vStream s = { .ctx = ctx, .fd = pfd[0], .size = size, .before = before, .total = total, .what = what,
                        .started_ms = mono_ms() };
        job_progress(ctx, 5 + (int) (85 * (double) before / (double) total), "reading %s over SSH", what);
        HvConn *sc = library_build_stream_conn(b);
        _cleanup_free_ char *vol = xasprintf("%s-%.8s-%s.raw", b->vm.name, b->vm.uuid, target);
        _cleanup_free_ char *path = NULL;
        /* Directly into the volume's file when armadad reaches it (the
         * stream through libvirtd was the bound, bench/results/convert.md). */
        unsigned flags = streq(b->host.domain_type, "test") ? 0 : HV_UPLOAD_CONTENT | HV_UPLOAD_DIRECT;
        r = sc ? hv_volume_upload_stream(sc, b->host.pool, vol, size, flags, stream_source, &s, &path, ret_direct) : -EHOSTUNREACH;
        if (r < 0 || streq(b->host.domain_type, "test"))
                kill(pid, SIGTERM);
        close(pfd[0]);
        int st = wait_child(pid);
        char why[320];
        last_line(log, why);
        unlink(log);
        double secs = (double) (mono_ms() - s.started_ms) / 1000.0;
        if (r == 0 && st != 0 && !streq(b->host.domain_type, "test"))
                r = -EIO;
        if (r < 0) {
                if (path)
                        (void) hv_volume_delete(inventory_link_conn(b->link), path);
                if (s.error == -ECANCELED || r == -ECANCELED)
                        return job_fail(ctx, -ECANCELED, "Cancelled while reading %s; nothing of VM '%s' was left behind.", what,
                                        b->vm.name);
                if (s.error < 0 || st != 0)
                        return job_fail(ctx, -EIO, "Cannot read %s over SSH: %s (%llu of %llu bytes read).", what,
                                        why[0] ? why : "the stream ended early", (unsigned long long) s.done,
                                        (unsigned long long) size);
                return job_fail(ctx, r, "Cannot write %s into a volume on host '%s': %s", what, b->host.name, hv_last_error());
        }
        library_build_made(b, target, path, size);
        HvDisk *hd = &spec->disks[spec->n_disks++];
        *hd = (HvDisk) { .format = "raw", .capacity_bytes = size };
        snprintf(hd->target, sizeof hd->target, "%s", target);
        snprintf(hd->path, sizeof hd->path, "%s", path);
        json_array_append_new(stats, json_pack("{s:s, s:s, s:I, s:f, s:f, s:s}", "source", dev, "target", target, "bytes",
                                               (json_int_t) s.done, "seconds", secs,
                                               "mib_per_s", secs > 0 ? (double) s.done / 1048576.0 / secs : 0.0,
                                               "written", *ret_direct ? "direct" : "stream"));
        return 0;
}

/* virt-v2v in place on the volumes just written, where the bytes are: the
 * host's volume files when armadad wrote them directly (the test bed, a
 * host on this machine or on storage it mounts; no copy), else not at all
 * (a remote host's volume is reached only through libvirt's stream: a
 * round trip through a local copy would double the P2V's bytes, and the
 * floor is `ssh dd`). On success the disks move from sdX to vdX (virtio).
 * 0 with *ret_v2v, or the job's failure (v2v: always and not converted). */
static int p2v_v2v(LibraryBuild *b, HvDomainSpec *spec, bool direct, json_t **ret_v2v) {
        const char *mode = jget_str(b->ctx->params, "v2v");
        bool converted = false;
        static const LibraryV2vSource physical = { .kind = "p2v" };   /* always foreign */
        if (!direct && library_v2v_wanted(mode, &physical)) {
                if (mode && streq(mode, "always"))
                        return job_fail(b->ctx, -EREMOTE, "Cannot convert the guest with virt-v2v (v2v: always): the volumes on"
                                        " host '%s' are not files armadad reaches.", b->host.name);
                *ret_v2v = json_pack("{s:b, s:b, s:s}", "ran", 0, "converted", 0, "reason", "The host's volumes are not files"
                                     " armadad reaches (virt-v2v runs where the bytes are); the disks keep the source's bus.");
                return 0;
        }
        char *paths[HV_MAX_DISKS];
        for (size_t i = 0; i < spec->n_disks; i++) paths[i] = spec->disks[i].path;
        int r = library_v2v_convert(b->ctx, mode, &physical, paths, spec->n_disks, "raw", 92, ret_v2v, &converted);
        if (r < 0 || !converted)
                return r;
        /* The VM's disk rows follow (the inventory shows the targets). */
        for (size_t i = 0; i < spec->n_disks; i++) {
                HvDisk *hd = &spec->disks[i];
                StoreDisk sd = { .size_bytes = hd->capacity_bytes, .owned = true };
                (void) store_vm_disk_remove(b->ctx->st, b->vm.id, hd->target);
                snprintf(hd->target, sizeof hd->target, "vd%c", (char) ('a' + i));
                snprintf(sd.target, sizeof sd.target, "%s", hd->target);
                snprintf(sd.path, sizeof sd.path, "%s", hd->path);
                (void) store_vm_disk_add(b->ctx->st, b->vm.id, &sd);
        }
        return 0;
}

static int job_vm_p2v(JobCtx *ctx, void *userdata) {
        LibraryBuild b = { 0 };
        int r = library_build_begin(&b, userdata, ctx);
        if (r < 0)
                return library_build_undo(&b, "vm.p2v", r);
        json_t *src = json_object_get(ctx->params, "source"), *disks = json_object_get(src, "disks");
        const char *pinned = json_string_value(json_object_get(ctx->params, "known_hosts"));
        P2vConn pc = { .port = (int) jget_int(src, "port"), .known_hosts = p2v_config.known_hosts };
        snprintf(pc.user, sizeof pc.user, "%s", jget_str(src, "user") ?: "root");
        snprintf(pc.addr, sizeof pc.addr, "%s", jget_str(src, "address") ?: "");
        _cleanup_free_ char *kh_file = NULL;
        if (!p2v_config.ssh_key || (pinned && temp_file(pinned, &kh_file) < 0) || (!pinned && !pc.known_hosts)) {
                job_fail(ctx, -ENOKEY, "armadad has no SSH identity or host key for '%s' any more (--p2v-ssh-key,"
                         " --p2v-known-hosts).", pc.addr);
                return library_build_undo(&b, "vm.p2v", -ENOKEY);
        }
        if (kh_file)
                pc.known_hosts = kh_file;
        char vnc_listen[16], vnc_password[9];
        inventory_vnc_for_host(&b.host, vnc_listen, vnc_password);
        HvDomainSpec spec = { .name = b.vm.name, .uuid = b.vm.uuid, .domain_type = inventory_domain_type(&b.host, jget_str(ctx->params, "domain_type")),
                              .vcpus = b.vm.cpus, .memory_mib = b.vm.memory_mib, .description = b.vm.description,
                              .network = json_string_value(json_object_get(ctx->params, "network")), .vnc = true, .vnc_listen = vnc_listen,
                              .vnc_password = vnc_password[0] ? vnc_password : NULL,
                              .installation_id = inventory_installation_id(b.inv), .vm_id = b.vm.id };
        uint64_t total = 0, before = 0;
        size_t i;
        json_t *d;
        json_array_foreach(disks, i, d) total += (uint64_t) jget_int(d, "size");
        json_t *stats = json_array(), *v2v = NULL;
        int64_t t0 = mono_ms();
        bool direct = true;
        json_array_foreach(disks, i, d) {
                bool here = false;
                if (i >= HV_MAX_DISKS || (r = p2v_disk(&b, &pc, d, i, before, total, &spec, stats, &here)) < 0)
                        break;
                direct = direct && here;
                before += (uint64_t) jget_int(d, "size");
        }
        if (kh_file)
                unlink(kh_file);
        if (r == 0)
                r = p2v_v2v(&b, &spec, direct, &v2v);
        if (r == 0)
                r = library_build_define(&b, &spec, json_is_true(json_object_get(ctx->params, "start")));
        if (r < 0) {
                json_decref(stats);
                json_decref(v2v);
                return library_build_undo(&b, "vm.p2v", r);
        }
        bool converted = json_is_true(json_object_get(v2v, "converted"));
        double secs = (double) (mono_ms() - t0) / 1000.0;
        _cleanup_free_ char *msg = xasprintf("VM '%s' was converted from physical server '%s' (%s) onto host '%s'.", b.vm.name,
                                             jget_str(src, "server"), pc.addr, b.host.name);
        (void) store_event_add(ctx->st, "info", "vm.p2v", "vm", b.vm.id, b.vm.name, b.vm.owner_id, msg);
        ctx->result = json_pack("{s:I, s:s, s:o, s:I, s:f, s:f, s:s, s:s, s:s, s:o}", "vm_id", (json_int_t) b.vm.id, "host",
                                b.host.name, "disks", stats, "bytes", (json_int_t) total, "seconds", secs, "mib_per_s",
                                secs > 0 ? (double) total / 1048576.0 / secs : 0.0, "disk_bus", converted ? "virtio" : "sata",
                                "disk_format", "raw", "drivers",
                                converted ? "virt-v2v readied the guest for virtio: its disks and network card are on virtio"
                                          : "virt-v2v did not convert the guest (see v2v): the VM's disks are on the SATA bus, which"
                                            " the server's own kernel drives without virtio; switch to virtio once its drivers are"
                                            " in the guest", "v2v", v2v);
        library_build_end(&b);
        return 0;
}

void library_register_p2v_jobs(Jobs *jobs, Inventory *inv) {
        jobs_register(jobs, "vm.p2v", job_vm_p2v, library_build_abandon, inv, false);
}
