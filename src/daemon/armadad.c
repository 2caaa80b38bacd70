/* armadad: the Armada management server. Reads its configuration (file,
 * then flags), opens the database, creates the first administrator when
 * there is none, starts the job workers, the host monitor and the HTTP API,
 * and shuts all of them down cleanly on SIGTERM or SIGINT. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/api.h"
#include "auth/auth.h"
#include "ha/ha.h"
#include "protect/protect.h"
#include "hv/hv.h"
#include "hv/hv-volume.h"
#include "inventory/inventory.h"
#include "jobs/jobs.h"
#include "library/library.h"
#include "protect/protect.h"
#include "inventory/inventory-monitor.h"
#include "placement/placement.h"
#include "model/model.h"
#include "manager/manager.h"
#include "monitor/monitor.h"
#include "store/store.h"
#include "util/util.h"

extern char **environ;

typedef struct {
        char *listen;
        char *db;
        char *state_dir;
        char *tls_cert, *tls_key;
        bool tls_self_signed;
        bool insecure_http;
        bool metrics_public;
        int audit_retention_days;
        int connections_per_address;
        int idle_timeout_s;
        int max_streams, max_streams_per_user;
        bool allow_test_hosts;   /* test: URIs (libvirt's test driver) may be registered */
        char *web_dir;
        int workers;
        int refresh_interval_ms;
        int full_refresh_ms;
        int stop_timeout_s;
        int max_parallel_starts, max_parallel_disk_ops;
        int job_stuck_percent;
        int backup_schedule_ms;      /* how often protection policies are applied (default 30000) */
        char *test_hold_starts;
        int token_ttl_s;
        int ha_declare_ms;
        int fence_timeout_s;
        int monitor_interval_ms, monitor_webhook_backoff_ms, monitor_assess_interval_ms, monitor_usage_window_ms;
        char *admin_user;
        char *log_level;
        int64_t lease_ttl_ms;    /* the manager lease (manager.h); default 6 s */
        char *manager_url;       /* the URL other managers send clients to; default from --listen */
        char **ensure_hosts;     /* "name=uri" */
        size_t n_ensure_hosts;
        char ensure_host_domain_type[8]; /* "" or the preference --ensure-host hosts get (new or not) */
} Config;

static void set_str(char **dst, const char *v) {
        free(*dst);
        *dst = xstrdup(v);
}

/* Applies one setting; the same keys serve the file and the flags. */
static int config_set(Config *c, const char *key, const char *val) {
        int64_t n;
        if (streq(key, "listen")) set_str(&c->listen, val);
        else if (streq(key, "db")) set_str(&c->db, val);
        else if (streq(key, "state-dir")) set_str(&c->state_dir, val);
        else if (streq(key, "tls-cert")) set_str(&c->tls_cert, val);
        else if (streq(key, "tls-key")) set_str(&c->tls_key, val);
        else if (streq(key, "tls-self-signed")) c->tls_self_signed = streq(val, "true") || streq(val, "yes") || streq(val, "1");
        else if (streq(key, "insecure-http")) c->insecure_http = streq(val, "true") || streq(val, "yes") || streq(val, "1");
        else if (streq(key, "metrics-public")) c->metrics_public = streq(val, "true") || streq(val, "yes") || streq(val, "1");
        else if (streq(key, "allow-test-hosts")) c->allow_test_hosts = streq(val, "true") || streq(val, "yes") || streq(val, "1");
        else if (streq(key, "web-dir")) set_str(&c->web_dir, val);
        else if (streq(key, "manager-url")) set_str(&c->manager_url, val);
        else if (streq(key, "lease-ttl")) {
                /* "6s", "6000ms" or a bare number of seconds */
                char *end = NULL;
                long long v = strtoll(val, &end, 10);
                int64_t ms = end && (streq(end, "ms")) ? v : end && (streq(end, "s") || !*end) ? v * 1000 : -1;
                if (end == val || ms < 300 || ms > 600000) {
                        fprintf(stderr, "armadad: 'lease-ttl' must be a time from 300ms to 600s such as 6s, not '%s'\n", val);
                        return -EINVAL;
                }
                c->lease_ttl_ms = ms;
        }
        else if (streq(key, "backup-root")) {
                if (val[0] != '/') {
                        fprintf(stderr, "armadad: 'backup-root' must be an absolute directory, not '%s'\n", val);
                        return -EINVAL;
                }
                protect_add_backup_root(val);
        }
        else if (streq(key, "restore-direct") || streq(key, "backup-tls")) {
                bool yes = streq(val, "true") || streq(val, "yes") || streq(val, "1");
                if (!yes && !streq(val, "false") && !streq(val, "no") && !streq(val, "0")) {
                        fprintf(stderr, "armadad: '%s' must be yes or no, not '%s'\n", key, val);
                        return -EINVAL;
                }
                ProtectSettings ps = *protect_settings();
                if (streq(key, "restore-direct"))
                        ps.restore_direct = yes;
                else
                        ps.backup_tls = yes;
                protect_configure(&ps);
        } else if (streq(key, "upload-streams")) {
                char *end = NULL;
                unsigned long streams = strtoul(val, &end, 10);
                if (end == val || *end || streams > 4) {
                        fprintf(stderr, "armadad: 'upload-streams' must be 0 (chosen per volume) to 4, not '%s'\n", val);
                        return -EINVAL;
                }
                hv_set_upload_streams((unsigned) streams);
        } else if (streq(key, "backup-tls-dir")) {
                if (val[0] != '/') {
                        fprintf(stderr, "armadad: 'backup-tls-dir' must be an absolute directory, not '%s'\n", val);
                        return -EINVAL;
                }
                ProtectSettings ps = *protect_settings();
                ps.backup_tls_dir = val;
                protect_configure(&ps);
        }
        else if (streq(key, "admin-user")) set_str(&c->admin_user, val);
        else if (streq(key, "log-level")) set_str(&c->log_level, val);
        else if (streq(key, "test-hold-starts")) set_str(&c->test_hold_starts, val);
        else if (streq(key, "library-upload-max")) {
                uint64_t b;
                if (size_parse(val, 1, &b) < 0 || b == 0) {
                        fprintf(stderr, "armadad: 'library-upload-max' must be a size such as 64G, not '%s'\n", val);
                        return -EINVAL;
                }
                library_configure(&(LibraryConfig) { .upload_max_bytes = b });
        } else if (streq(key, "export-root")) {
                if (val[0] != '/') {
                        fprintf(stderr, "armadad: 'export-root' must be an absolute directory, not '%s'\n", val);
                        return -EINVAL;
                }
                library_configure(&(LibraryConfig) { .export_root = val });
        } else if (streq(key, "p2v-ssh-key") || streq(key, "p2v-known-hosts")) {
                /* issue 12: P2V's SSH identity and the host keys it trusts */
                if (val[0] != '/' || access(val, R_OK) < 0) {
                        fprintf(stderr, "armadad: '%s' must be an absolute path of a readable file, not '%s'\n", key, val);
                        return -EINVAL;
                }
                library_p2v_configure(streq(key, "p2v-ssh-key") ? &(LibraryP2vConfig) { .ssh_key = val }
                                                                 : &(LibraryP2vConfig) { .known_hosts = val });
        } else if (streq(key, "v2v")) {
                /* issue 12: virt-v2v on imports and P2V, the default of requests without "v2v" */
                LibraryV2vConfig vc = { .mode_set = true };
                if (library_v2v_mode_parse(val, &vc.mode) < 0) {
                        fprintf(stderr, "armadad: 'v2v' must be auto, always or never, not '%s'\n", val);
                        return -EINVAL;
                }
                library_v2v_configure(&vc);
        } else if (streq(key, "v2v-timeout-s")) {
                if (parse_i64(val, &n) < 0 || n <= 0 || n > 7 * 24 * 3600) {
                        fprintf(stderr, "armadad: 'v2v-timeout-s' must be a number of seconds from 1 to 604800, not '%s'\n", val);
                        return -EINVAL;
                }
                library_v2v_configure(&(LibraryV2vConfig) { .timeout_s = (unsigned) n });
        } else if (strncmp(key, "deadline-", 9) == 0) {
                HvDeadlines d = { 0 };
                unsigned *field = streq(key, "deadline-query-s") ? &d.query_ms : streq(key, "deadline-start-s") ? &d.start_ms
                                : streq(key, "deadline-change-s") ? &d.change_ms : streq(key, "deadline-copy-s") ? &d.copy_ms : NULL;
                if (!field) {
                        fprintf(stderr, "armadad: unknown setting '%s'\n", key);
                        return -EINVAL;
                }
                if (parse_i64(val, &n) < 0 || n <= 0 || n > 7 * 24 * 3600) {
                        fprintf(stderr, "armadad: '%s' must be a number of seconds from 1 to 604800, not '%s'\n", key, val);
                        return -EINVAL;
                }
                *field = (unsigned) n * 1000u;
                hv_set_deadlines(&d);
        } else if (streq(key, "ensure-host-domain-type")) {
                if (!streq(val, "auto") && !streq(val, "kvm") && !streq(val, "qemu")) {
                        fprintf(stderr, "armadad: 'ensure-host-domain-type' must be auto, kvm or qemu, not '%s'\n", val);
                        return -EINVAL;
                }
                snprintf(c->ensure_host_domain_type, sizeof c->ensure_host_domain_type, "%s", val);
        } else if (streq(key, "ensure-host")) {
                c->ensure_hosts = xrealloc(c->ensure_hosts, sizeof(char *) * (c->n_ensure_hosts + 1));
                c->ensure_hosts[c->n_ensure_hosts++] = xstrdup(val);
        } else if (streq(key, "workers") || streq(key, "refresh-interval-ms") || streq(key, "full-refresh-s") || streq(key, "stop-timeout-s") || streq(key, "token-ttl-s") ||
                   streq(key, "ha-declare-ms") || streq(key, "fence-timeout-s") || strncmp(key, "monitor-", 8) == 0 ||
                   streq(key, "audit-retention-days") || streq(key, "connections-per-address") || streq(key, "idle-timeout-s") ||
                   streq(key, "max-streams") || streq(key, "max-streams-per-user") ||
                   streq(key, "max-parallel-starts") || streq(key, "max-parallel-disk-ops") || streq(key, "job-stuck-percent") ||
                   streq(key, "backup-schedule-ms")) {
                if (parse_i64(val, &n) < 0 || n <= 0 || n > 100000000) {
                        fprintf(stderr, "armadad: '%s' must be a positive whole number, not '%s'\n", key, val);
                        return -EINVAL;
                }
                if (streq(key, "workers")) c->workers = (int) n;
                else if (streq(key, "refresh-interval-ms")) c->refresh_interval_ms = (int) n;
                else if (streq(key, "full-refresh-s")) c->full_refresh_ms = n > 86400 ? 86400000 : (int) n * 1000;
                else if (streq(key, "stop-timeout-s")) c->stop_timeout_s = (int) n;
                else if (streq(key, "ha-declare-ms")) c->ha_declare_ms = (int) n;
                else if (streq(key, "fence-timeout-s")) c->fence_timeout_s = (int) n;
                else if (streq(key, "audit-retention-days")) c->audit_retention_days = (int) n;
                else if (streq(key, "connections-per-address")) c->connections_per_address = (int) n;
                else if (streq(key, "idle-timeout-s")) c->idle_timeout_s = (int) n;
                else if (streq(key, "max-streams")) c->max_streams = (int) n;
                else if (streq(key, "max-streams-per-user")) c->max_streams_per_user = (int) n;
                else if (streq(key, "max-parallel-starts")) c->max_parallel_starts = (int) n;
                else if (streq(key, "max-parallel-disk-ops")) c->max_parallel_disk_ops = (int) n;
                else if (streq(key, "job-stuck-percent")) c->job_stuck_percent = (int) n;
                else if (streq(key, "backup-schedule-ms")) c->backup_schedule_ms = (int) n;
                else if (streq(key, "monitor-interval-ms")) c->monitor_interval_ms = (int) n;
                else if (streq(key, "monitor-webhook-backoff-ms")) c->monitor_webhook_backoff_ms = (int) n;
                else if (streq(key, "monitor-assess-interval-ms")) c->monitor_assess_interval_ms = (int) n;
                else if (streq(key, "monitor-usage-window-ms")) c->monitor_usage_window_ms = (int) n;
                else if (strncmp(key, "monitor-", 8) == 0) {
                        fprintf(stderr, "armadad: unknown setting '%s'\n", key);
                        return -EINVAL;
                }
                else c->token_ttl_s = (int) n;
        } else {
                fprintf(stderr, "armadad: unknown setting '%s'\n", key);
                return -EINVAL;
        }
        return 0;
}

static int config_load_file(Config *c, const char *path) {
        _cleanup_free_ char *text = NULL;
        int r = file_read_all(path, &text, NULL);
        if (r < 0) {
                fprintf(stderr, "armadad: cannot read configuration file '%s': %s\n", path, strerror(-r));
                return r;
        }
        int line_no = 0;
        char *save = NULL;
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                line_no++;
                while (*line == ' ' || *line == '\t') line++;
                if (!*line || *line == '#')
                        continue;
                char *eq = strchr(line, '=');
                if (!eq) {
                        fprintf(stderr, "armadad: %s:%d: expected 'key = value'\n", path, line_no);
                        return -EINVAL;
                }
                char *end = eq;
                while (end > line && (end[-1] == ' ' || end[-1] == '\t')) end--;
                *end = 0;
                char *val = eq + 1;
                while (*val == ' ' || *val == '\t') val++;
                size_t vl = strlen(val);
                while (vl && (val[vl - 1] == ' ' || val[vl - 1] == '\t' || val[vl - 1] == '\r')) val[--vl] = 0;
                if (config_set(c, line, val) < 0)
                        return -EINVAL;
        }
        return 0;
}

static void usage(void) {
        puts("Usage: armadad [OPTIONS]\n"
             "  --config FILE              read settings from FILE (key = value; keys as the options)\n"
             "  --listen ADDR:PORT         address to listen on (default 127.0.0.1:8080)\n"
             "  --db DB                    the database: a SQLite file (default <state-dir>/armada.db; also\n"
             "                             sqlite:PATH) or PostgreSQL: postgresql://USER@HOST/DBNAME (a libpq\n"
             "                             URI, or postgresql:KEY=VALUE ...; the database must exist)\n"
             "  --state-dir DIR            where armadad keeps its files (default ./var)\n"
             "  --tls-cert FILE --tls-key FILE   serve HTTPS with this certificate\n"
             "  --tls-self-signed          generate a self-signed certificate under <state-dir>/tls\n"
             "  --insecure-http            allow plain HTTP on a non-loopback address\n"
             "  --metrics-public           serve /metrics without a token (default: an administrator's\n"
             "                             or read-only operator's token, from the loopback too)\n"
             "  --connections-per-address N  open connections one client address may hold (default 64)\n"
             "  --idle-timeout-s N         close a connection that sends nothing this long (default 15)\n"
             "  --max-streams N            event streams (GET /api/v1/events/stream) open at once (default 64)\n"
             "  --max-streams-per-user N   of them, one user's (default 8)\n"
             "  --audit-retention-days N   audit entries older than this are deleted (default 90)\n"
             "  --web-dir DIR              web console files (default ./web when present)\n"
             "  --workers N                job worker threads (default 4)\n"
             "  --refresh-interval-ms N    how often every host is checked (default 5000)\n"
             "  --full-refresh-s N         how often a host whose domains sent no event is listed anyway (default 60)\n"
             "  --stop-timeout-s N         default wait for a guest shutdown before power-off (60)\n"
             "  --deadline-query-s N       a host call that reads (facts, lists, stats) fails after N s and the host\n"
             "                             is not-responding (30); --deadline-start-s (60), --deadline-change-s\n"
             "                             (define, stop, undefine, volumes: 60), --deadline-copy-s (1 h)\n"
             "  --max-parallel-starts N    domain starts in flight on one host at once, for hosts that set\n"
             "                             none (default 4; the rest wait in order)\n"
             "  --max-parallel-disk-ops N  disk-heavy volume operations (full copies, uploads) in flight on\n"
             "                             one host at once, likewise (default 4)\n"
             "  --backup-schedule-ms N     how often protection policies queue the backups due (default 30000)\n"
             "  --job-stuck-percent N      scale every job kind's stuck limit (120 s for VM actions, 600 s\n"
             "                             for deploys and migrations) to N percent (default 100)\n"
             "  --test-hold-starts FILE    with --allow-test-hosts only: a start on a test host of a VM named\n"
             "                             on a line of FILE blocks until the line goes (tests of stuck jobs)\n"
             "  --token-ttl-s N            lifetime of a login token (default 43200)\n"
             "  --ha-declare-ms N          a cluster member whose connection is dead this long is declared\n"
             "                             failed, fenced and its HA VMs restarted (default 3000)\n"
             "  --fence-timeout-s N        a fence command running longer has failed (default 60)\n"
             "  --monitor-interval-ms N    how often every host and VM is sampled (default 10000)\n"
             "  --monitor-webhook-backoff-ms N  first webhook retry delay, doubling (default 1000)\n"
             "  --monitor-assess-interval-ms N  node_exporter scrape interval of the assessment (default 60000)\n"
             "  --monitor-usage-window-ms N     window of the measured load placement uses (default 300000)\n"
             "  --library-upload-max SIZE  largest library upload accepted (default 64G)\n"
"  --export-root DIR          VM exports go under DIR; imports come from DIR or a library share\n"
             "  --p2v-ssh-key FILE         the SSH private key P2V reads physical servers with (P2V is off\n"
             "                             without it)\n"
             "  --p2v-known-hosts FILE     the servers' host keys P2V trusts (else each request gives a fingerprint)\n"
             "  --v2v auto|always|never    virt-v2v readies imported and P2V guests for virtio: auto on foreign\n"
             "                             guests (P2V, OVA/OVF/VMX/VMDK/VHD/VHDX; not qcow2 or raw images)\n"
             "                             when it can (the default), always (any guest; the job fails when it\n"
             "                             cannot), never; a request's \"v2v\" overrides it\n"
             "  --v2v-timeout-s N          a virt-v2v run longer than this is killed (default 3600)\n"
             "  --backup-root DIR          backup datastores, archives and imports may live only under DIR\n"
             "                             (repeatable; default " PROTECT_DEFAULT_BACKUP_ROOT ")\n"
             "  --restore-direct yes|no    a restore writes the new volume's file itself when armadad reaches\n"
             "                             it at the host's path (checked per volume; default yes), else\n"
             "                             through libvirtd's stream\n"
             "  --upload-streams N         ranges of a volume a restore or a streamed import writes at once,\n"
             "                             each over its own libvirt stream (a restore's threads, when\n"
             "                             direct): 1-4; 0 (the default) chooses from the size and the CPUs\n"
             "  --backup-tls yes|no        backups read the host's NBD export over TLS only (the host's\n"
             "                             qemu.conf needs backup_tls_x509_cert_dir; default no)\n"
             "  --backup-tls-dir DIR       armadad's NBD client certificates: ca-cert.pem, client-cert.pem,\n"
             "                             client-key.pem (default " PROTECT_DEFAULT_BACKUP_TLS_DIR ")\n"
             "  --admin-user NAME          name of the first administrator (default admin)\n"
             "  --lease-ttl TIME           the active manager's lease (6s; renewed every third): armadads sharing\n"
             "                             one store take over from a dead active one within TTL + TTL/3\n"
             "  --manager-url URL          where a standby sends clients to reach this armadad when active\n"
             "                             (default http(s)://ADDR:PORT of --listen)\n"
             "  --ensure-host NAME=URI     register this host at start-up when missing (repeatable)\n"
             "  --ensure-host-domain-type auto|kvm|qemu\n"
             "                             the domain type preference of the --ensure-host hosts, new or\n"
             "                             registered before (without it an existing host keeps its own):\n"
             "                             what a VM asking \"auto\" runs as; qemu where nested KVM cannot boot\n"
             "                             Linux (make run probes it), kvm only for a host seen to offer KVM\n"
             "  --allow-test-hosts         accept test: host URIs (libvirt's test driver, which reads any file\n"
             "                             armadad can read): for test suites only, never in production\n"
             "  --log-level LEVEL          debug, info, warn or error (default info)");
}

/* Creates a self-signed certificate with openssl (no shell; fixed argv). */
static int make_self_signed(const char *dir, const char *addr, char **ret_cert, char **ret_key) {
        _cleanup_free_ char *cert = xasprintf("%s/armadad.crt", dir), *key = xasprintf("%s/armadad.key", dir);
        if (access(cert, R_OK) != 0 || access(key, R_OK) != 0) {
                if (mkdir_p(dir, 0700) < 0)
                        return -errno;
                _cleanup_free_ char *san = xasprintf("subjectAltName=IP:%s,DNS:localhost,IP:127.0.0.1", addr);
                char *argv[] = { "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825", "-subj", "/CN=armadad",
                                 "-addext", san, "-keyout", key, "-out", cert, NULL };
                pid_t pid;
                if (posix_spawnp(&pid, "openssl", NULL, NULL, argv, environ) != 0)
                        return -ENOENT;
                int status;
                if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        return -EIO;
                chmod(key, 0600);
        }
        *ret_cert = steal_ptr(cert);
        *ret_key = steal_ptr(key);
        return 0;
}

static int ensure_admin(Store *st, const Config *c) {
        if (store_user_count(st) > 0)
                return 0;
        char password[25];
        auth_password_generate(password, sizeof password);
        char hash[AUTH_HASH_MAX];
        if (auth_password_hash(password, hash) < 0)
                return -ENOMEM;
        int64_t id;
        int r = store_user_insert(st, c->admin_user, hash, auth_role_name(ROLE_ADMIN), &id);
        if (r < 0)
                return r;
        _cleanup_free_ char *path = xasprintf("%s/initial-admin-password", c->state_dir);
        _cleanup_free_ char *text = xasprintf("%s %s\n", c->admin_user, password);
        r = file_write_atomic(path, text, strlen(text), 0600);
        if (r < 0)
                log_warn("cannot write '%s': %s", path, strerror(-r));
        (void) store_audit_add(st, 0, "armadad", NULL, "user.create", "user", id, c->admin_user, "first administrator", "ok");
        printf("armadad: created the first administrator '%s' with password '%s' (also in %s, mode 0600)\n", c->admin_user, password, path);
        fflush(stdout);
        return 0;
}

/* Gives host id (an --ensure-host one) the preference of
 * --ensure-host-domain-type when it differs; audited like a PATCH. */
static void ensure_host_preference(Store *st, int64_t id, const char *pref) {
        StoreHost h;
        char why[256];
        if (!pref[0] || store_host_get(st, id, &h) < 0 || streq(h.domain_type_preference, pref))
                return;
        if (inventory_domain_type_preference_check(&h, pref, why, sizeof why) < 0) {
                log_warn("--ensure-host-domain-type %s: %s Host '%s' keeps '%s'.", pref, why, h.name, h.domain_type_preference);
                return;
        }
        if (store_host_set_domain_type_preference(st, id, pref) < 0)
                return;
        _cleanup_free_ char *detail = xasprintf("domain_type_preference=%s (--ensure-host-domain-type)", pref);
        (void) store_audit_add(st, 0, "armadad", NULL, "host.update", "host", id, h.name, detail, "ok");
        log_info("host '%s': VMs asking for domain type auto run as %s (--ensure-host-domain-type)", h.name, pref);
}

static void ensure_hosts(Store *st, Jobs *jobs, const Config *c) {
        for (size_t i = 0; i < c->n_ensure_hosts; i++) {
                _cleanup_free_ char *spec = xstrdup(c->ensure_hosts[i]);
                char *eq = strchr(spec, '=');
                if (!eq || !name_is_valid((*eq = 0, spec))) {
                        log_warn("--ensure-host '%s' is not NAME=URI with a valid name; ignored", c->ensure_hosts[i]);
                        continue;
                }
                int64_t id;
                if (store_host_find(st, spec, &id) == 0) {
                        ensure_host_preference(st, id, c->ensure_host_domain_type);
                        continue;
                }
                char why[512];
                if (hv_uri_check(eq + 1, c->allow_test_hosts, why, sizeof why) < 0) {
                        log_warn("--ensure-host '%s': the URI is refused: %s; ignored", spec, why);
                        continue;
                }
                if (store_host_insert(st, spec, eq + 1, STORE_ROOT_GROUP_ID, "armada", "/var/lib/libvirt/images/armada", &id) < 0)
                        continue;
                ensure_host_preference(st, id, c->ensure_host_domain_type);
                (void) jobs_submit(jobs, "host.refresh", "host", id, spec, 0, NULL, NULL);
                log_info("registered host '%s' at '%s'", spec, eq + 1);
        }
}

/* The monitor reads hosts through the inventory's connections. */
static int monitor_each_conn(void *source, MonitorConnFn fn, void *userdata) {
        return inventory_each_connection(source, fn, userdata);
}

/* A database that an older armadad (or a copy) left readable by others is
 * made private; SQLite gives its -wal and -shm files the database's mode. */
static void db_files_private(const char *db) {
        static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
        if (strncmp(db, "postgres", 8) == 0)
                return; /* a PostgreSQL URL: no file of ours */
        if (strncmp(db, "sqlite:", 7) == 0)
                db += 7;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                _cleanup_free_ char *p = xasprintf("%s%s", db, suffixes[i]);
                struct stat s;
                if (stat(p, &s) == 0 && S_ISREG(s.st_mode) && (s.st_mode & 0077) && chmod(p, 0600) < 0)
                        log_warn("cannot make '%s' private (mode 0600): %m", p);
        }
}

/* A host's state changed: its alerts and webhooks at once, not at the next
 * monitoring round. */
static void host_state_hook(void *userdata, int64_t host_id) {
        (void) monitor_host_state_changed(userdata, host_id);
}

static void job_stuck_hook(void *userdata, const StoreJobWatch *job, bool stuck, const char *message) {
        _cleanup_free_ char *name = xasprintf("%s on '%s'", job->kind, job->target_name);
        (void) monitor_job_stuck_changed(userdata, job->id, name, job->owner_id, stuck, message);
}

/* A VM with a protection policy has no point newer than twice its interval
 * (or has one again). */
static void backup_alert_hook(void *userdata, int64_t vm_id, const char *name, bool open, const char *message) {
        (void) monitor_object_alert_changed(userdata, "backup-overdue", "vm", vm_id, name, open, message);
}

/* A datastore's verify found points that cannot be restored (or none). */
static void datastore_alert_hook(void *userdata, int64_t id, const char *name, bool open, const char *message) {
        (void) monitor_object_alert_changed(userdata, "datastore-verify", "datastore", id, name, open, message);
}

/* Phase 1: the configuration file, then the flags over it. 0 to go on, or
 * the exit status (0 for --help) in *ret_status and 1. */
static int parse_arguments(int argc, char **argv, Config *c, int *ret_status) {
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' }, { "listen", required_argument, NULL, 0 },
                { "db", required_argument, NULL, 0 }, { "state-dir", required_argument, NULL, 0 },
                { "tls-cert", required_argument, NULL, 0 }, { "tls-key", required_argument, NULL, 0 },
                { "tls-self-signed", no_argument, NULL, 0 }, { "insecure-http", no_argument, NULL, 0 },
                { "metrics-public", no_argument, NULL, 0 }, { "audit-retention-days", required_argument, NULL, 0 },
                { "connections-per-address", required_argument, NULL, 0 }, { "idle-timeout-s", required_argument, NULL, 0 },
                { "allow-test-hosts", no_argument, NULL, 0 },
                { "max-streams", required_argument, NULL, 0 }, { "max-streams-per-user", required_argument, NULL, 0 },
                { "web-dir", required_argument, NULL, 0 }, { "lease-ttl", required_argument, NULL, 0 },
                { "manager-url", required_argument, NULL, 0 }, { "workers", required_argument, NULL, 0 },
                { "refresh-interval-ms", required_argument, NULL, 0 }, { "full-refresh-s", required_argument, NULL, 0 }, { "stop-timeout-s", required_argument, NULL, 0 },
                { "token-ttl-s", required_argument, NULL, 0 },
                { "ha-declare-ms", required_argument, NULL, 0 }, { "fence-timeout-s", required_argument, NULL, 0 }, { "admin-user", required_argument, NULL, 0 },
                { "monitor-interval-ms", required_argument, NULL, 0 }, { "monitor-webhook-backoff-ms", required_argument, NULL, 0 },
                { "monitor-assess-interval-ms", required_argument, NULL, 0 }, { "monitor-usage-window-ms", required_argument, NULL, 0 },
                { "ensure-host", required_argument, NULL, 0 }, { "ensure-host-domain-type", required_argument, NULL, 0 },
                { "log-level", required_argument, NULL, 0 },
                { "library-upload-max", required_argument, NULL, 0 }, { "backup-root", required_argument, NULL, 0 },
                { "export-root", required_argument, NULL, 0 },
                { "p2v-ssh-key", required_argument, NULL, 0 }, { "p2v-known-hosts", required_argument, NULL, 0 },
                { "v2v", required_argument, NULL, 0 }, { "v2v-timeout-s", required_argument, NULL, 0 },
                { "restore-direct", required_argument, NULL, 0 }, { "upload-streams", required_argument, NULL, 0 }, { "backup-tls", required_argument, NULL, 0 },
                { "backup-tls-dir", required_argument, NULL, 0 },
                { "deadline-query-s", required_argument, NULL, 0 }, { "deadline-start-s", required_argument, NULL, 0 },
                { "deadline-change-s", required_argument, NULL, 0 }, { "deadline-copy-s", required_argument, NULL, 0 },
                { "max-parallel-starts", required_argument, NULL, 0 }, { "max-parallel-disk-ops", required_argument, NULL, 0 },
                { "job-stuck-percent", required_argument, NULL, 0 }, { "backup-schedule-ms", required_argument, NULL, 0 }, { "test-hold-starts", required_argument, NULL, 0 },
                { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
        };
        for (int i = 1; i < argc - 1; i++)
                if (streq(argv[i], "--config") && config_load_file(c, argv[i + 1]) < 0) {
                        *ret_status = 2;
                        return 1;
                }
        int idx, ch;
        while ((ch = getopt_long(argc, argv, "c:h", opts, &idx)) != -1) {
                if (ch == 'h') { usage(); *ret_status = 0; return 1; }
                if (ch == 'c') continue;
                if (ch != 0) { usage(); *ret_status = 2; return 1; }
                const char *name = opts[idx].name;
                if (config_set(c, name, optarg ? optarg : "true") < 0) {
                        *ret_status = 2;
                        return 1;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "armadad: unexpected argument '%s'\n", argv[optind]);
                *ret_status = 2;
                return 1;
        }
        log_set_level(streq(c->log_level, "debug") ? LOG_LEVEL_DEBUG : streq(c->log_level, "warn") ? LOG_LEVEL_WARN
                      : streq(c->log_level, "error") ? LOG_LEVEL_ERROR : LOG_LEVEL_INFO);
        return 0;
}

/* Phase 2: where to listen, the state directory, TLS and the checks between
 * flags. 0, or the exit status. */
#define ADDR_MAX 64
static int prepare(Config *c, char addr[ADDR_MAX], int *port) {
        const ProtectSettings *ps = protect_settings();
        char why[512];
        if (ps->backup_tls && protect_backup_tls_check(ps->backup_tls_dir, why, sizeof why) < 0) {
                fprintf(stderr, "armadad: --backup-tls needs armadad's NBD client certificates in '%s': %s\n",
                        ps->backup_tls_dir, why);
                return 2;
        }
        const char *colon = strrchr(c->listen, ':');
        int64_t p;
        if (!colon || (size_t) (colon - c->listen) >= ADDR_MAX || parse_i64(colon + 1, &p) < 0 || p > 65535) {
                fprintf(stderr, "armadad: --listen must be ADDR:PORT, such as 127.0.0.1:8080, not '%s'\n", c->listen);
                return 2;
        }
        memcpy(addr, c->listen, (size_t) (colon - c->listen));
        addr[colon - c->listen] = 0;
        *port = (int) p;
        if (mkdir_p(c->state_dir, 0700) < 0) {
                fprintf(stderr, "armadad: cannot create state directory '%s': %m\n", c->state_dir);
                return 1;
        }
        {
                /* Seed ISOs are built under the state directory, not in a
                 * shared /tmp; what a killed deploy left there goes now. */
                _cleanup_free_ char *tmp = xasprintf("%s/tmp", c->state_dir);
                int k = dir_private_clear(tmp);
                if (k < 0) {
                        fprintf(stderr, "armadad: cannot prepare the directory for temporary files '%s': %s\n", tmp, strerror(-k));
                        return 1;
                }
                if (k > 0)
                        log_info("removed %d leftover temporary file(s) from '%s'", k, tmp);
                library_configure(&(LibraryConfig) { .tmp_dir = tmp });
        }
        if (!c->db)
                c->db = xasprintf("%s/armada.db", c->state_dir);
        if (c->tls_self_signed && !c->tls_cert) {
                _cleanup_free_ char *dir = xasprintf("%s/tls", c->state_dir);
                if (make_self_signed(dir, addr, &c->tls_cert, &c->tls_key) < 0) {
                        fprintf(stderr, "armadad: cannot generate a self-signed certificate with openssl in '%s'\n", dir);
                        return 1;
                }
        }
        if ((c->tls_cert != NULL) != (c->tls_key != NULL)) {
                fprintf(stderr, "armadad: --tls-cert and --tls-key go together\n");
                return 2;
        }
        if (!c->tls_cert && !addr_is_loopback(addr) && !c->insecure_http) {
                fprintf(stderr, "armadad: refusing plain HTTP on non-loopback address %s; give --tls-cert/--tls-key or"
                                " --tls-self-signed (or --insecure-http inside a test bed)\n", addr);
                return 2;
        }
        if (c->test_hold_starts && !c->allow_test_hosts) {
                fprintf(stderr, "armadad: --test-hold-starts is for test suites and needs --allow-test-hosts\n");
                return 2;
        }
        if (!c->web_dir && access("web/index.html", R_OK) == 0)
                c->web_dir = realpath("web", NULL);

        return 0;
}

/* The modules of a running armadad, outside in. */
typedef struct {
        Store *st;
        Model *model;
        Manager *manager;
        const Config *cfg;
        bool running;            /* the runners are started (this armadad is the active manager) */
        Jobs *jobs;
        Inventory *inv;
        Ha *ha;
        Monitor *mon;
        ProtectScheduler *backups;
        Api *api;
} Daemon;

/* Phase 3: the database (first administrator, released moves), the read
 * model and libvirt's event loop. 0, or the exit status. */
static int daemon_open(Daemon *d, const Config *c) {
        Store *st = NULL;
        /* A password in the URL is never printed (logs, messages). */
        _cleanup_free_ char *db_shown = store_db_masked(c->db);
        db_files_private(c->db);
        if (store_open(c->db, &st) < 0) {
                fprintf(stderr, "armadad: cannot open the database '%s'\n", db_shown);
                return 1;
        }
        db_files_private(c->db);
        if (ensure_admin(st, c) < 0) {
                fprintf(stderr, "armadad: cannot create the first administrator\n");
                return 1;
        }
        d->st = st;
        /* Before any writer starts; freed after the last one stopped (its
         * writer path runs in their threads). */
        if (model_new(st, &d->model) < 0) {
                fprintf(stderr, "armadad: cannot load hosts and VMs from the database '%s'\n", db_shown);
                return 1;
        }
        if (hv_init() < 0) {
                fprintf(stderr, "armadad: cannot start libvirt's event loop\n");
                return 1;
        }
        return 0;
}

/* The runners — everything that acts on hosts — start when this armadad
 * becomes the active manager (manager.h), from the manager's thread: at
 * start-up, or on a takeover exactly as after a crash (jobs_start()
 * resumes or fails the jobs left running). */
static int daemon_run(void *userdata) {
        Daemon *d = userdata;
        const Config *c = d->cfg;
        /* A standby's read model heard only its own commits (on SQLite). */
        if (model_reload(d->model) < 0)
                log_warn("cannot reload the read model before taking over; it catches up with the next changes");
        /* No move is in flight before the jobs start: room a stopped (or
         * dead) active manager promised to moves is free again (a resumed
         * job reserves anew). */
        (void) placement_release_all(d->st);
        ensure_hosts(d->st, d->jobs, c);
        if (jobs_start(d->jobs) < 0 || inventory_start(d->inv) < 0 || ha_start(d->ha) < 0 || monitor_start(d->mon) < 0 ||
            protect_replicate_start(d->st, d->jobs) < 0 || monitor_answers_start(d->st, d->model, 0) < 0 ||
            protect_scheduler_start(d->backups) < 0)
                return -EAGAIN;
        d->running = true;
        return 0;
}

/* Demotion: stop what acts on hosts; the API keeps answering, read-only. */
static void daemon_halt(void *userdata) {
        Daemon *d = userdata;
        d->backups = protect_scheduler_free(d->backups);
        protect_replicate_stop();
        jobs_stop(d->jobs);
        ha_stop(d->ha);
        inventory_stop(d->inv);
        monitor_answers_stop();
        monitor_stop(d->mon);
}

static void daemon_standby_tick(void *userdata) {
        Daemon *d = userdata;
        (void) model_reload(d->model);
}

/* A demoted armadad cannot start its modules again: SIGUSR2 has main()
 * stop everything and run armadad afresh. */
static void daemon_respawn(void *userdata) {
        (void) userdata;
        kill(getpid(), SIGUSR2);
}

static int daemon_manager(Daemon *d, const Config *c, const char *addr, int port) {
        _cleanup_free_ char *url = c->manager_url ? xstrdup(c->manager_url)
                                                  : xasprintf("%s://%s:%d", c->tls_cert ? "https" : "http", addr, port);
        ManagerConfig mc = { .lease_ttl_ms = c->lease_ttl_ms, .url = url, .db = c->db, .promote = daemon_run, .demote = daemon_halt,
                             .standby_tick = daemon_standby_tick, .respawn = daemon_respawn, .userdata = d };
        d->cfg = c;
        if (manager_new(d->st, &mc, &d->manager) < 0)
                return -ENOMEM;
        return manager_start(d->manager);
}

/* Phase 4: the modules and their threads, then the HTTP server. 0, or the
 * exit status. */
static int daemon_start(Daemon *d, const Config *c, const char *addr, int port) {
        Store *st = d->st;
        InventoryConfig icfg = { .refresh_interval_ms = c->refresh_interval_ms, .full_refresh_ms = c->full_refresh_ms, .stop_timeout_s = c->stop_timeout_s,
                                 .allow_test_hosts = c->allow_test_hosts, .max_parallel_starts = c->max_parallel_starts,
                                 .max_parallel_disk_ops = c->max_parallel_disk_ops, .test_hold_starts = c->test_hold_starts };
        (void) jobs_new(st, (unsigned) c->workers, &d->jobs);
        Jobs *jobs = d->jobs;
        if (c->job_stuck_percent > 0)
                jobs_set_stuck_percent(jobs, c->job_stuck_percent);
        (void) inventory_new(st, jobs, &icfg, &d->inv);
        Inventory *inv = d->inv;
        inventory_register_jobs(inv);
        library_register_jobs(jobs, inv);
        protect_register_jobs(jobs);
        protect_backup_register_jobs(jobs, inv);
        protect_snapshot_register_jobs(jobs, inv);
        protect_replicate_register_jobs(jobs);
        {
                _cleanup_free_ char *key = xasprintf("%s/replication.key", c->state_dir);
                if (protect_replicate_key_load(key) < 0) {
                        fprintf(stderr, "armadad: cannot read or create the replication key '%s'\n", key);
                        return 1;
                }
        }
        HaConfig hcfg = { .declare_ms = c->ha_declare_ms, .fence_timeout_ms = c->fence_timeout_s * 1000 };
        (void) ha_new(st, jobs, inv, &hcfg, &d->ha);
        Ha *ha = d->ha;
        ha_register_jobs(ha);
        MonitorConfig mcfg = { .interval_ms = c->monitor_interval_ms, .webhook_backoff_ms = c->monitor_webhook_backoff_ms,
                               .assess_interval_ms = c->monitor_assess_interval_ms, .usage_window_ms = c->monitor_usage_window_ms,
                               .audit_retention_ms = c->audit_retention_days * 24 * 3600 * 1000LL,
                               .each_conn = monitor_each_conn, .conn_source = inv, .model = d->model };
        (void) monitor_new(st, &mcfg, &d->mon);
        Monitor *mon = d->mon;
        inventory_on_host_state(inv, host_state_hook, mon);
        jobs_on_stuck(jobs, job_stuck_hook, mon);
        protect_on_alert(datastore_alert_hook, mon);
        protect_on_backup_alert(backup_alert_hook, mon);
        (void) protect_scheduler_new(st, jobs, (unsigned) (c->backup_schedule_ms > 0 ? c->backup_schedule_ms : 30000), &d->backups);
        protect_scheduler_set_model(d->backups, d->model);
        if (daemon_manager(d, c, addr, port) < 0) {
                fprintf(stderr, "armadad: cannot start worker threads\n");
                return 1;
        }
        ApiConfig acfg = { .listen_addr = addr, .port = port, .tls_cert = c->tls_cert, .tls_key = c->tls_key,
                           .web_dir = c->web_dir, .token_ttl_s = c->token_ttl_s, .metrics_public = c->metrics_public,
                           .per_ip_connections = (unsigned) c->connections_per_address, .idle_timeout_s = (unsigned) c->idle_timeout_s,
                           .allow_test_hosts = c->allow_test_hosts, .max_streams = (unsigned) c->max_streams,
                           .max_streams_per_user = (unsigned) c->max_streams_per_user, .model = d->model,
                           .manager = d->manager };
        (void) api_new(st, jobs, inv, &acfg, &d->api);
        if (api_start(d->api) < 0) {
                fprintf(stderr, "armadad: cannot listen on %s\n", c->listen);
                jobs_free(jobs);
                inventory_free(inv);
                return 1;
        }
        _cleanup_free_ char *db_shown = store_db_masked(c->db);
        printf("armadad: listening on %s://%s:%d (database %s, %s manager)\n", c->tls_cert ? "https" : "http", addr,
               api_port(d->api), db_shown,
               manager_is_active(d->manager) ? "active" : "standby");
        fflush(stdout);
        return 0;
}

/* Phase 6: outside in — no new requests, then no job running (handlers use
 * the modules below), then the modules, the connections, the database. */
static void daemon_stop(Daemon *d) {
        api_free(d->api);
        /* The lease goes back first: a standby takes over at once. */
        manager_stop(d->manager);
        d->backups = protect_scheduler_free(d->backups);
        protect_replicate_stop();
        jobs_stop(d->jobs);
        /* No thread may call the host-state hook into a freed monitor. */
        ha_stop(d->ha);
        /* Jobs and HA have had their say; a refresh or a statistics read
         * waiting on a host that does not answer would hold shutdown up
         * for its whole deadline (30 s). */
        hv_abandon_calls();
        inventory_stop(d->inv);
        inventory_on_host_state(d->inv, NULL, NULL);
        jobs_on_stuck(d->jobs, NULL, NULL);
        protect_on_alert(NULL, NULL);
        protect_on_backup_alert(NULL, NULL);
        monitor_answers_stop();
        monitor_free(d->mon);
        ha_free(d->ha);
        inventory_free(d->inv);
        jobs_free(d->jobs);
        model_free(d->model);
        manager_free(d->manager);
        store_free(d->st);
}

static void config_free(Config *c) {
        for (size_t i = 0; i < c->n_ensure_hosts; i++) free(c->ensure_hosts[i]);
        free(c->ensure_hosts);
        free(c->listen); free(c->db); free(c->state_dir); free(c->tls_cert); free(c->tls_key);
        free(c->web_dir); free(c->admin_user); free(c->log_level); free(c->test_hold_starts); free(c->manager_url);
}

int main(int argc, char **argv) {
        /* The child of a file-level restore (protect-files.c): armadad runs
         * itself again so that libguestfs never runs inside the daemon. */
        if (argc > 1 && streq(argv[1], "--files-child"))
                return protect_files_child_main(argc, argv);
        /* Everything armadad creates (database, its -wal/-shm, certificates,
         * keys, the initial password, temporary files) is its own alone,
         * whatever the mode of the directory it lands in. */
        umask(0077);
        /* The allocator reuses memory instead of handing it back at once: a
         * request that builds and frees a few MB (a rating of 10,000 hosts, a
         * whole list) otherwise maps or grows the heap, faults every page in,
         * and gives it back (munmap/brk: a TLB shootdown on every CPU), each
         * time. Blocks under 8 MiB come from the heap (not mmap), and up to
         * 32 MiB free at a heap's top is kept: a 10,000-host rating went from
         * 62 to 1.5-2 ms (bench/results/placement-live.md). */
        mallopt(M_MMAP_THRESHOLD, 8 << 20);
        mallopt(M_TRIM_THRESHOLD, 32 << 20);
        Config c = { 0 };
        set_str(&c.listen, "127.0.0.1:8080");
        set_str(&c.state_dir, "var");
        set_str(&c.admin_user, "admin");
        set_str(&c.log_level, "info");
        c.workers = 4;
        int status = 0;
        if (parse_arguments(argc, argv, &c, &status) != 0) {
                config_free(&c);        /* --help, --version, a bad option: nothing is leaked */
                return status;
        }
        char addr[ADDR_MAX];
        int port;
        if ((status = prepare(&c, addr, &port)) != 0) {
                config_free(&c);
                return status;
        }

        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGHUP);
        sigaddset(&sigs, SIGUSR2); /* daemon_respawn() */
        pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* every thread inherits the mask; main waits below */
        signal(SIGPIPE, SIG_IGN);

        Daemon d = { 0 };
        if ((status = daemon_open(&d, &c)) != 0 || (status = daemon_start(&d, &c, addr, port)) != 0)
                return status;

        /* Phase 5: run until told to stop. */
        int sig = 0;
        sigwait(&sigs, &sig);
        log_info("received signal %d; shutting down", sig);
        daemon_stop(&d);
        if (sig == SIGUSR2) {
                log_info("armadad starts afresh to take the manager lease");
                pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
                execv("/proc/self/exe", argv);
                log_error("cannot run armadad afresh: %m");
                return 1;
        }
        log_info("armadad stopped");
        config_free(&c);
        return 0;
}
