/* The armada command-line client's shared declarations: the run context, the
 * option parser, the HTTP client of armadad's API, the credentials file,
 * output helpers (tables, sizes, times) and the command entry points.
 *
 * Functions that run a command, or a step of one that talks to the user,
 * return an exit status: 0 on success, EXIT_ERROR (1) for an error reported
 * by the server or a usage error, EXIT_UNREACHABLE (2) when armadad cannot be
 * reached. They print why on stderr before returning non-zero, so callers only
 * pass the status on. Pure helpers return 0 or -errno as elsewhere. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <curl/curl.h>
#include <jansson.h>

#include "util/util.h"

#define EXIT_OK 0
#define EXIT_ERROR 1
#define EXIT_UNREACHABLE 2

#define DEFAULT_SERVER "http://127.0.0.1:8080"
#define API_PREFIX "/api/v1"

/* Per-request timeouts, seconds. */
#define CONNECT_TIMEOUT_S 5L
#define REQUEST_TIMEOUT_S 60L
#define POLL_REQUEST_TIMEOUT_S 15L
#define POLL_INTERVAL_MS 500

/* ---- options ---- */

/* One option a command (or the whole program) accepts. */
typedef struct {
        const char *name;       /* long name, without "--" */
        char short_name;        /* 0 when there is none */
        bool has_arg;           /* takes a value: "--name VALUE" or "--name=VALUE" */
        const char *arg_name;   /* for usage text: "URL", "PATH" ... */
        const char *help;
} OptSpec;

typedef struct {
        const char *name;       /* the OptSpec's name (static) */
        const char *value;      /* NULL for a flag; points into argv */
} OptVal;

typedef struct {
        const char **pos;       /* positional arguments, pointing into argv */
        size_t n_pos;
        OptVal *opts;           /* in command-line order */
        size_t n_opts;
} Args;

/* Parses argv[0..argc) against the option lists in specs (a NULL-terminated
 * array of arrays, each ending with an entry whose name is NULL), appending to
 * *args. "--" ends the options. Returns 0, or EXIT_ERROR after printing what
 * is wrong. */
int args_parse(int argc, char **argv, const OptSpec *const *specs, Args *args);
/* The value of the last occurrence of option name, or NULL. */
const char *args_get(const Args *a, const char *name);
/* True when option name was given at least once. */
bool args_has(const Args *a, const char *name);
/* Every value given to option name, in order; *ret_n gets the count. The
 * array is allocated (caller frees it, not the strings). */
const char **args_get_all(const Args *a, const char *name, size_t *ret_n);
void args_done(Args *a);

/* ---- run context ---- */

typedef enum { OUTPUT_TABLE, OUTPUT_JSON } OutputFormat;

typedef struct {
        char *server;           /* base URL, no trailing '/' */
        char *token;            /* bearer token, or NULL */
        char *cacert;           /* CA bundle file, or NULL */
        bool insecure;          /* skip TLS verification */
        bool wait;              /* follow started jobs to their end */
        OutputFormat output;
        bool logging_in;        /* a 401 means a wrong password, not "log in" */
        CURL *curl;             /* reused so that connections are kept alive */
} Ctx;

/* ---- HTTP client ---- */

typedef struct {
        long status;            /* HTTP status; 0 when the server was not reached */
        json_t *json;           /* parsed body, NULL when empty or not JSON */
        char *error;            /* whole sentence: the server's message, or what failed */
        char *field;            /* the field the server's error names, or NULL */
} ApiReply;

void api_reply_done(ApiReply *r);

/* Sends METHOD API_PREFIX+path (path already escaped) with an optional JSON
 * body, waiting at most timeout_s seconds in all. Fills *reply. Returns 0 when
 * an HTTP answer came back (of any status), EXIT_UNREACHABLE when not (then
 * reply->error says why). Prints nothing. */
int api_send(Ctx *c, const char *method, const char *path, json_t *body, long timeout_s, ApiReply *reply);

/* As api_send with the default timeout, but treats any status >= 300 as an
 * error: prints "armada: <message> (field: <field>)" and returns EXIT_ERROR,
 * or EXIT_UNREACHABLE after printing why the server was not reached. On 0,
 * *ret_json (if not NULL) owns the parsed body (NULL for an empty one). */
int api_call(Ctx *c, const char *method, const char *path, json_t *body, json_t **ret_json);

/* GET path (a list: GET /vms, GET /hosts) page by page, limit+cursor while
 * the server gives a next_cursor, into one {"items": [...]} as a request
 * without paging would return: api_call's result. */
#define API_LIST_PAGE 1000
int api_list_all(Ctx *c, const char *path, json_t **ret_json);

/* GETs API_PREFIX+path and, on a 200, writes the body to f as it comes
 * (never held whole), with no limit on the whole transfer but at most
 * idle_timeout_s seconds without a byte. Fills *reply as api_send does
 * (the error of a non-200 answer); *ret_bytes (may be NULL) the bytes
 * written. 0 when an answer came back whole, EXIT_ERROR when it was cut
 * short or f could not be written, EXIT_UNREACHABLE. Prints nothing. */
int api_download(Ctx *c, const char *path, FILE *f, long idle_timeout_s, ApiReply *reply, uint64_t *ret_bytes);

/* Prints the error in reply as api_call does; returns the exit status. */
int api_report(Ctx *c, const ApiReply *reply, int r);

/* Appends "?key=value" or "&key=value" to b, URL-encoding value. */
void query_add(Ctx *c, StrBuf *b, const char *key, const char *value);

/* The top of the host-group tree, as the API names it. */
#define ROOT_GROUP_NAME "All Hosts"

/* A host-group path in the form the server compares: without leading,
 * trailing or doubled '/', and without the root's name in front ("All
 * Hosts/Seattle/" -> "Seattle"; the root itself -> ""). Caller frees. */
char *group_path_normalize(const char *path);

/* Looks up one object by an exact attribute: GET /<collection>?<key>=<value>
 * and takes the item that matches exactly (host-group paths compared after
 * group_path_normalize()). what names the kind in the error message
 * ("VM", "host", "user", "host group"). Returns 0 with *ret_id (and *ret_item,
 * a new reference, when not NULL), EXIT_ERROR after printing "armada: no VM
 * named 'web9'", or EXIT_UNREACHABLE. */
int resolve(Ctx *c, const char *collection, const char *key, const char *value, const char *what,
            int64_t *ret_id, json_t **ret_item);

/* After a request that started a job (reply holds {"job": {...}} or is the
 * job itself): without --wait prints "job 12 queued: vm.start web01" (or the
 * reply in JSON mode) and returns 0; with --wait follows the job as
 * job_follow() does. */
int job_started(Ctx *c, json_t *reply);

/* Polls job id every POLL_INTERVAL_MS until it ends, showing progress on
 * stderr. Prints the final state (the job's JSON in JSON mode). Returns 0 when
 * it succeeded, EXIT_ERROR after printing its error when it failed or was
 * cancelled, EXIT_UNREACHABLE when the server went away. */
int job_follow(Ctx *c, int64_t id);

/* ---- credentials (~/.config/armada/credentials) ---- */

typedef struct {
        char *server;
        char *token;
        char *user;
} Credentials;

/* Path of the credentials file (caller frees), or NULL when neither
 * $XDG_CONFIG_HOME nor $HOME is set. */
char *creds_path(void);
/* Loads the file. Returns 0, -ENOENT when there is none, -EINVAL when it is
 * not the expected JSON, or another -errno. Leaves *ret untouched on failure. */
int creds_load(Credentials *ret);
/* Saves (creating the directory 0700, the file 0600). 0 or -errno. */
int creds_save(const Credentials *cr);
/* Removes the file. 0 (also when there was none) or -errno. */
int creds_remove(void);
void creds_done(Credentials *cr);

/* Reads a password: one line from stdin when from_stdin, else from the
 * environment variable env (when set), else prompts on /dev/tty with echo
 * off. Returns 0 with *ret (caller wipes and frees), or EXIT_ERROR after
 * printing why. */
int read_password(const char *prompt, bool from_stdin, const char *env, char **ret);
/* Prompts on /dev/tty with echo on. Same returns. */
int read_line_tty(const char *prompt, char **ret);
/* Overwrites and frees a secret. */
void secret_free(char *s);

/* ---- output ---- */

/* A table of strings printed with aligned columns. A header starting with '>'
 * marks a right-aligned column (the '>' is not printed). */
typedef struct {
        size_t n_cols;
        char **headers;
        bool *right;
        char **cells;           /* row-major */
        size_t n_cells;
        bool no_header;
} Table;

/* Columns are given as a NULL-terminated list of header strings. */
Table *table_new(const char *first, ...) __attribute__((sentinel));
/* Adds the next cell (row after row); NULL prints as "-". Control characters
 * in s are replaced so that nothing from the server reaches the terminal as an
 * escape sequence. */
void table_add(Table *t, const char *s);
void table_addf(Table *t, const char *fmt, ...) _printf_(2, 3);
void table_print(const Table *t, FILE *f);
Table *table_free(Table *t);
static inline void table_freep(Table **t) { table_free(*t); }
#define _cleanup_table_ _cleanup_(table_freep)

/* Prints "Label:  value" lines with aligned values (a two-column table). */
Table *kv_new(void);
void kv_add(Table *t, const char *label, const char *value);

/* "512 MiB", "1.5 GiB", "20 GiB", "900 B". */
void fmt_bytes(uint64_t bytes, char out[32]);
/* An RFC 3339 time as local "2026-11-26 11:00:05"; "-" for NULL; the input as
 * is when it does not parse. */
void fmt_time(const char *rfc3339, char out[64]);

/* As fmt_time for member key of o, which may also be an integer of
 * milliseconds since the epoch. */
void fmt_time_of(json_t *o, const char *key, char out[64]);

/* Field access that tolerates absent or null members. */
const char *jstr(json_t *o, const char *key);           /* string or NULL */
int64_t jint(json_t *o, const char *key, int64_t dflt);  /* integer (or real) */
/* Any member as text (caller frees): strings as is, numbers, booleans,
 * objects/arrays as compact JSON; NULL when absent or null. */
char *jtext(json_t *o, const char *key);

/* Prints one line on stdout, with control characters replaced. */
void outf(const char *fmt, ...) _printf_(1, 2);

/* Pretty-prints JSON to stdout (JSON mode). */
void print_json(json_t *j);

/* ---- commands ---- */

typedef struct Command Command;
typedef int (*CommandFn)(Ctx *c, const Command *cmd, const Args *a);

struct Command {
        const char *noun;       /* "vm", or the whole command ("login") */
        const char *verb;       /* "create", or NULL */
        const char *synopsis;   /* arguments after "armada noun verb" */
        const char *summary;
        size_t min_pos, max_pos;
        const OptSpec *opts;    /* may be NULL */
        CommandFn run;
};

int cmd_login(Ctx *c, const Command *cmd, const Args *a);
int cmd_logout(Ctx *c, const Command *cmd, const Args *a);
int cmd_whoami(Ctx *c, const Command *cmd, const Args *a);
int cmd_version(Ctx *c, const Command *cmd, const Args *a);

int cmd_host_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_host_show(Ctx *c, const Command *cmd, const Args *a);
int cmd_host_add(Ctx *c, const Command *cmd, const Args *a);
int cmd_host_set(Ctx *c, const Command *cmd, const Args *a);
int cmd_host_remove(Ctx *c, const Command *cmd, const Args *a);
int cmd_host_refresh(Ctx *c, const Command *cmd, const Args *a);

int cmd_group_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_group_create(Ctx *c, const Command *cmd, const Args *a);
int cmd_group_rename(Ctx *c, const Command *cmd, const Args *a);
int cmd_group_move(Ctx *c, const Command *cmd, const Args *a);
int cmd_group_delete(Ctx *c, const Command *cmd, const Args *a);

int cmd_vm_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_vm_show(Ctx *c, const Command *cmd, const Args *a);
int cmd_vm_create(Ctx *c, const Command *cmd, const Args *a);
int cmd_vm_action(Ctx *c, const Command *cmd, const Args *a);   /* start stop kill pause resume */
int cmd_vm_delete(Ctx *c, const Command *cmd, const Args *a);
int cmd_vm_set(Ctx *c, const Command *cmd, const Args *a);

int cmd_job_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_job_show(Ctx *c, const Command *cmd, const Args *a);
int cmd_job_wait(Ctx *c, const Command *cmd, const Args *a);
int cmd_job_cancel(Ctx *c, const Command *cmd, const Args *a);
int cmd_event_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_audit_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_manager_status(Ctx *c, const Command *cmd, const Args *a);

/* placement (cmd_place.c) */
int cmd_group_set_reserves(Ctx *c, const Command *cmd, const Args *a);
int cmd_group_show_policy(Ctx *c, const Command *cmd, const Args *a);
int cmd_vm_rate(Ctx *c, const Command *cmd, const Args *a);
int cmd_rule_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_rule_create(Ctx *c, const Command *cmd, const Args *a);
int cmd_rule_update(Ctx *c, const Command *cmd, const Args *a);
int cmd_rule_delete(Ctx *c, const Command *cmd, const Args *a);
int cmd_plan_consolidate(Ctx *c, const Command *cmd, const Args *a);

/* monitoring (cmd_monitor.c) */
int cmd_perf_show(Ctx *c, const Command *cmd, const Args *a);
int cmd_health(Ctx *c, const Command *cmd, const Args *a);
int cmd_alert_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_alert_ack(Ctx *c, const Command *cmd, const Args *a);
int cmd_alert_rule_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_alert_rule_create(Ctx *c, const Command *cmd, const Args *a);
int cmd_alert_rule_enable(Ctx *c, const Command *cmd, const Args *a);
int cmd_alert_rule_disable(Ctx *c, const Command *cmd, const Args *a);
int cmd_alert_rule_delete(Ctx *c, const Command *cmd, const Args *a);
int cmd_webhook_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_webhook_add(Ctx *c, const Command *cmd, const Args *a);
int cmd_webhook_delete(Ctx *c, const Command *cmd, const Args *a);
int cmd_assess_add(Ctx *c, const Command *cmd, const Args *a);
int cmd_assess_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_assess_remove(Ctx *c, const Command *cmd, const Args *a);
int cmd_assess_report(Ctx *c, const Command *cmd, const Args *a);

int cmd_user_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_user_create(Ctx *c, const Command *cmd, const Args *a);
int cmd_user_delete(Ctx *c, const Command *cmd, const Args *a);
int cmd_user_passwd(Ctx *c, const Command *cmd, const Args *a);

/* cmd_network.c: networks, NICs, storage pools and volumes (issue 12) */
extern const OptSpec NETWORK_CREATE_OPTS[], NIC_OPTS[], POOL_LIST_OPTS[], POOL_ADD_OPTS[];
int cmd_network_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_network_create(Ctx *c, const Command *cmd, const Args *a);
int cmd_network_delete(Ctx *c, const Command *cmd, const Args *a);
int cmd_vm_nic(Ctx *c, const Command *cmd, const Args *a);
int cmd_pool_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_pool_add(Ctx *c, const Command *cmd, const Args *a);
int cmd_pool_remove(Ctx *c, const Command *cmd, const Args *a);
int cmd_volume_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_volume_delete(Ctx *c, const Command *cmd, const Args *a);

/* cmd_ha.c: migration, maintenance, clusters, HA, fencing */
extern const OptSpec HA_MIGRATE_OPTS[], HA_MAINTENANCE_OPTS[], HA_CLUSTER_CREATE_OPTS[], HA_VM_HA_OPTS[];
int cmd_vm_migrate(Ctx *c, const Command *cmd, const Args *a);

/* snapshots (cmd_snapshot.c) */
extern const OptSpec SNAPSHOT_OPTS[];
int cmd_vm_snapshot(Ctx *c, const Command *cmd, const Args *a);
int cmd_vm_ha(Ctx *c, const Command *cmd, const Args *a);
int cmd_host_maintenance(Ctx *c, const Command *cmd, const Args *a);
int cmd_host_set_fence(Ctx *c, const Command *cmd, const Args *a);
int cmd_cluster_create(Ctx *c, const Command *cmd, const Args *a);
int cmd_cluster_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_cluster_show(Ctx *c, const Command *cmd, const Args *a);
int cmd_cluster_delete(Ctx *c, const Command *cmd, const Args *a);

/* library, templates, grants (cmd_library.c) */
extern const OptSpec LIBRARY_LIST_OPTS[], LIBRARY_IMPORT_OPTS[], TEMPLATE_CREATE_OPTS[], TEMPLATE_DEPLOY_OPTS[],
        VM_TO_TEMPLATE_OPTS[], GRANT_CREATE_OPTS[];
int cmd_library_add_share(Ctx *c, const Command *cmd, const Args *a);
int cmd_library_shares(Ctx *c, const Command *cmd, const Args *a);
int cmd_library_remove_share(Ctx *c, const Command *cmd, const Args *a);
int cmd_library_refresh(Ctx *c, const Command *cmd, const Args *a);
int cmd_library_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_library_import(Ctx *c, const Command *cmd, const Args *a);
int cmd_template_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_template_show(Ctx *c, const Command *cmd, const Args *a);
int cmd_template_create(Ctx *c, const Command *cmd, const Args *a);
int cmd_template_delete(Ctx *c, const Command *cmd, const Args *a);
int cmd_template_deploy(Ctx *c, const Command *cmd, const Args *a);
/* "vm create": with --template a deploy, else cmd_vm_create. */
int cmd_vm_create_any(Ctx *c, const Command *cmd, const Args *a);
int cmd_vm_to_template(Ctx *c, const Command *cmd, const Args *a);
/* cmd_export.c (issue 12) */
extern const OptSpec VM_CLONE_OPTS[], VM_EXPORT_OPTS[], VM_IMPORT_OPTS[];
int cmd_vm_clone(Ctx *c, const Command *cmd, const Args *a);
int cmd_vm_export(Ctx *c, const Command *cmd, const Args *a);
int cmd_vm_import(Ctx *c, const Command *cmd, const Args *a);
/* cmd_p2v.c (issue 12) */
extern const OptSpec P2V_OPTS[];
int cmd_p2v(Ctx *c, const Command *cmd, const Args *a);
int cmd_grant_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_grant_create(Ctx *c, const Command *cmd, const Args *a);
int cmd_grant_delete(Ctx *c, const Command *cmd, const Args *a);
int cmd_self_service(Ctx *c, const Command *cmd, const Args *a);

/* backups: datastores and their maintenance (cmd_backup.c) */
extern const OptSpec BACKUP_DATASTORE_OPTS[], BACKUP_VERIFY_OPTS[], BACKUP_PRUNE_OPTS[], BACKUP_ARCHIVE_OPTS[],
        BACKUP_IMPORT_OPTS[];
int cmd_backup_datastore(Ctx *c, const Command *cmd, const Args *a);
int cmd_backup_verify(Ctx *c, const Command *cmd, const Args *a);
int cmd_backup_gc(Ctx *c, const Command *cmd, const Args *a);
int cmd_backup_prune(Ctx *c, const Command *cmd, const Args *a);
int cmd_backup_archive(Ctx *c, const Command *cmd, const Args *a);
int cmd_backup_import(Ctx *c, const Command *cmd, const Args *a);
extern const OptSpec BACKUP_REPLICATE_OPTS[];
int cmd_backup_replicate(Ctx *c, const Command *cmd, const Args *a);
/* backups themselves: now, list, restore */
extern const OptSpec BACKUP_NOW_OPTS[], BACKUP_LIST_OPTS[], BACKUP_RESTORE_OPTS[], BACKUP_FILES_OPTS[], BACKUP_DOWNLOAD_OPTS[];
int cmd_backup_now(Ctx *c, const Command *cmd, const Args *a);
int cmd_backup_list(Ctx *c, const Command *cmd, const Args *a);
int cmd_backup_restore(Ctx *c, const Command *cmd, const Args *a);
int cmd_backup_files(Ctx *c, const Command *cmd, const Args *a);
int cmd_backup_download(Ctx *c, const Command *cmd, const Args *a);
extern const OptSpec BACKUP_POLICY_OPTS[];
int cmd_backup_policy(Ctx *c, const Command *cmd, const Args *a);

/* ---- VM hardware (cmd_hardware.c) ---- */
extern const OptSpec HW_DISK_OPTS[];
/* Whether vm set was given a size (--cpus, --max-cpus, --memory, --max-memory). */
bool hardware_set_wanted(const Args *a);
/* PATCH /vms/{id}/hardware with the sizes of a; prints what was applied how. */
int hardware_set(Ctx *c, int64_t id, const char *name, const Args *a);
int cmd_vm_hardware(Ctx *c, const Command *cmd, const Args *a);
int cmd_vm_disk(Ctx *c, const Command *cmd, const Args *a);
int cmd_vm_cd(Ctx *c, const Command *cmd, const Args *a);
int cmd_vm_boot_order(Ctx *c, const Command *cmd, const Args *a);

/* Prints "armada: <message>" on stderr; returns EXIT_ERROR. */
int fail(const char *fmt, ...) _printf_(1, 2);
/* Parses a positive count/limit option value; EXIT_ERROR after printing. */
int parse_count(const char *opt, const char *s, int64_t *ret);
/* parse_count() of s into body's member key. */
int body_set_count(json_t *body, const char *key, const char *opt, const char *s);
