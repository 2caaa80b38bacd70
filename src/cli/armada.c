/* armada: the command-line client of armadad. Every console action is a
 * command ("armada vm start web01"); tables for people, --output json for
 * scripts. This file holds the command table, usage text, the global options
 * and how the server and token are chosen; the commands live in cmd_*.c. */
#include "cli.h"

#include <errno.h>
#include <string.h>

static const OptSpec GLOBAL_OPTS[] = {
        { "server", 0, true, "URL", "armadad's address (else $ARMADA_URL, else the one saved at login, "
                                    "else " DEFAULT_SERVER ")" },
        { "output", 'o', true, "FORMAT", "table (the default) or json (the server's JSON, pretty-printed)" },
        { "token", 0, true, "TOKEN", "bearer token (else $ARMADA_TOKEN, else the one saved at login)" },
        { "insecure", 'k', false, NULL, "do not verify the server's TLS certificate (self-signed test servers)" },
        { "cacert", 0, true, "FILE", "trust the certificate authorities in FILE" },
        { "wait", 'w', false, NULL, "follow a started job until it ends; exit 1 when it fails" },
        { "help", 'h', false, NULL, "show help for armada or a command" },
        { NULL, 0, false, NULL, NULL },
};

static const OptSpec LOGIN_OPTS[] = {
        { "user", 'u', true, "NAME", "user name (else $ARMADA_USER, else asked)" },
        { "password-stdin", 0, false, NULL, "read the password from the first line of standard input "
                                            "(else $ARMADA_PASSWORD, else asked on the terminal)" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec HOST_ADD_OPTS[] = {
        { "uri", 0, true, "URI", "libvirt URI of the host, e.g. qemu+tls://kvm1.example.com/system (required)" },
        { "group", 'g', true, "PATH", "host group, e.g. Seattle/Production" },
        { "pool", 0, true, "NAME", "libvirt storage pool for VM disks" },
        { "pool-path", 0, true, "PATH", "directory of that pool, when Armada should create it" },
        { "max-parallel-starts", 0, true, "N", "VM starts in flight on this host at once (default: armadad's, 4)" },
        { "max-parallel-disk-ops", 0, true, "N", "full copies and uploads in flight on this host at once (default: armadad's, 4)" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec HOST_SET_OPTS[] = {
        { "max-parallel-starts", 0, true, "N|default", "VM starts in flight on this host at once; the rest wait in order" },
        { "max-parallel-disk-ops", 0, true, "N|default", "full copies and uploads in flight on this host at once" },
        { "domain-type", 0, true, "auto|kvm|qemu", "what VMs asking domain type auto run as here (auto: KVM where offered)" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec HOST_REMOVE_OPTS[] = {
        { "force", 'f', false, NULL, "remove the host even though it still has VMs" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec VM_LIST_OPTS[] = {
        { "host", 0, true, "NAME", "only the VMs on this host" },
        { "state", 0, true, "STATE[,STATE...]", "only the VMs in one of these states (running, stopped, ...)" },
        { "prefix", 0, true, "TEXT", "only the VMs whose name starts with TEXT" },
        { "owner", 0, true, "USER", "only the VMs this user owns" },
        { "health", 0, false, NULL, "add each VM's health (healthy, warning, critical, unknown) and why" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec VM_SET_OPTS[] = {
        { "owner", 0, true, "USER", "give the VM to this user (administrators, and delegated administrators in their scope)" },
        { "no-owner", 0, false, NULL, "take the VM from its owner: nobody owns it" },
        { "description", 0, true, "TEXT", "the VM's description ('' clears it)" },
        { "cpus", 0, true, "N", "vCPUs: live up to the running maximum, else from the next boot" },
        { "max-cpus", 0, true, "N", "the most vCPUs the VM can hotplug (from the next boot)" },
        { "memory", 0, true, "MIB", "memory (2048, 512M, 4G): live up to the maximum memory, else from the next boot" },
        { "max-memory", 0, true, "MIB", "the most memory the balloon can give (from the next boot)" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec HOST_LIST_OPTS[] = {
        { "state", 0, true, "STATE[,STATE...]", "only the hosts in one of these states (ok, maintenance, ...)" },
        { "prefix", 0, true, "TEXT", "only the hosts whose name starts with TEXT" },
        { "health", 0, false, NULL, "add each host's health (its VMs' rolled up) and why" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec VM_CREATE_OPTS[] = {
        { "host", 0, true, "NAME", "host to create the VM on (else placement picks the best-rated host)" },
        { "cpus", 0, true, "N", "virtual CPUs (required)" },
        { "memory", 0, true, "MIB", "memory in MiB, or a size such as 4G (required)" },
        { "disk", 0, true, "SIZE", "size of the system disk, e.g. 20G; a bare number is GiB (required)" },
        { "domain-type", 0, true, "TYPE", "auto (the default), kvm or qemu (TCG emulation)" },
        { "description", 0, true, "TEXT", "free text shown with the VM" },
        { "group", 'g', true, "PATH", "without --host: place the VM in this host group (default: all hosts); "
                                      "with --host: refuse unless the host is in it" },
        { "template", 0, true, "NAME", "deploy from this template instead (see 'armada template deploy')" },
        { "count", 'n', true, "N", "with --template: deploy N VMs named NAME-1..NAME-N (without it: one named NAME)" },
        { "full-copy", 0, false, NULL, "with --template: copy the base disk instead of a linked clone" },
        { "no-start", 0, false, NULL, "with --template: define the VMs without starting them" },
        { "no-nic", 0, false, NULL, "no network card (else one on the group's default network, or the host's libvirt 'default')" },
        { "force", 0, false, NULL, "with --host: create the VM there even though the host lacks the memory (administrators only)" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec GROUP_RESERVES_OPTS[] = {
        { "cpu", 0, true, "PCT", "CPU reserve, percent of each host's CPU ('inherit' clears)" },
        { "memory", 0, true, "MIB", "memory reserve in MiB" },
        { "disk", 0, true, "GIB", "disk-space reserve in GiB of each host's storage pool" },
        { "disk-io", 0, true, "PCT", "disk I/O reserve, percent" },
        { "network", 0, true, "PCT", "network reserve, percent" },
        { "goal", 0, true, "GOAL", "load-balancing (emptiest host first) or resource-maximization (fullest that fits)" },
        { "weights", 0, true, "LIST", "resource weights, e.g. cpu=1,memory=2,disk=0.5,disk_io=0.5,network=0.5" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec VM_RATE_OPTS[] = {
        { "cpus", 0, true, "N", "virtual CPUs (default 1)" },
        { "memory", 0, true, "MIB", "memory in MiB, or a size such as 4G (default 512)" },
        { "disk", 0, true, "SIZE", "disk size, e.g. 20G (default none)" },
        { "group", 'g', true, "PATH", "rate the hosts of this host group (default: all hosts)" },
        { "goal", 0, true, "GOAL", "load-balancing or resource-maximization (default: the group's)" },
        { "name", 0, true, "VM", "the VM's name: its placement rules apply" },
        { "limit", 0, true, "N", "show only the best N hosts (default: every host)" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec RULE_OPTS[] = {
        { "kind", 0, true, "KIND", "anti-affinity (never on one host) or affinity (always on one host)" },
        { "vms", 0, true, "LIST", "the rule's VMs, comma-separated: web01,web02" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec PLAN_OPTS[] = {
        { "host-cpus", 0, true, "N", "cores of the host model (overrides the file's host.cpus)" },
        { "host-memory", 0, true, "MIB", "memory of the host model in MiB" },
        { "host-disk", 0, true, "GIB", "disk space of the host model in GiB" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec VM_DELETE_OPTS[] = {
        { "keep-disks", 0, false, NULL, "undefine the VM but keep its disk images" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec JOB_LIST_OPTS[] = {
        { "state", 0, true, "STATE", "queued, running, succeeded, failed or cancelled" },
        { "stuck", 0, false, NULL, "only running jobs that made no progress for longer than their kind's limit" },
        { "limit", 'n', true, "N", "at most N jobs, newest first" },
        { "before", 0, true, "ID", "only the jobs older than job ID (the next page back)" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec EVENT_LIST_OPTS[] = {
        { "limit", 'n', true, "N", "at most N events, newest first" },
        { "before", 0, true, "ID", "only the events older than event ID (the next page back)" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec VM_STOP_OPTS[] = {
        { "timeout", 't', true, "SECONDS", "how long to wait for the guest to shut down (default: the server's, 60)" },
        { "no-force", 0, false, NULL, "fail instead of powering the VM off when it does not shut down in time" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec LIMIT_OPTS[] = {
        { "limit", 'n', true, "N", "at most N entries, newest first" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec PERF_OPTS[] = {
        { "last", 0, true, "DURATION", "how far back, e.g. 15m, 1h (the default), 7d" },
        { "metric", 'm', true, "METRIC", "only this metric: cpu, memory, memory_pct, disk_read, disk_write, disk_iops, net_rx, "
                                         "net_tx, pool_pct (hosts)" },
        { "step", 0, true, "DURATION", "one point per step, e.g. 1m (default: about 300 points)" },
        { "host", 0, false, NULL, "NAME is a host, not a VM" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec ALERT_LIST_OPTS[] = {
        { "state", 0, true, "STATE", "open (the default), resolved or all" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec ALERT_RULE_OPTS[] = {
        { "on", 0, true, "KIND", "host or vm (required)" },
        { "metric", 'm', true, "METRIC", "state, or a metric such as cpu, memory_pct, pool_pct (required)" },
        { "comparison", 0, true, "OP", ">, >=, <, <=, == or != (state rules: == or !=) (required)" },
        { "threshold", 0, true, "NUMBER", "the value a metric is compared with" },
        { "state", 0, true, "STATE", "the state a state rule compares with, e.g. crashed, unreachable" },
        { "for", 0, true, "DURATION", "how long the condition must hold before the alert opens, e.g. 5m" },
        { "severity", 0, true, "SEVERITY", "info, warning (the default) or critical" },
        { "group", 'g', true, "PATH", "only hosts (or VMs on hosts) in this host group" },
        { "object", 0, true, "NAME", "only this host or VM" },
        { "description", 0, true, "TEXT", "free text" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec WEBHOOK_OPTS[] = {
        { "description", 0, true, "TEXT", "free text" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec ASSESS_ADD_OPTS[] = {
        { "node-exporter", 0, true, "URL", "the server's node_exporter, e.g. http://srv1:9100 (required)" },
        { "ssh", 0, true, "USER@HOST", "read /proc over ssh (not supported yet)" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec ASSESS_REPORT_OPTS[] = {
        { "host-cpus", 0, true, "N", "CPU cores of the host model (default 32)" },
        { "host-memory-mib", 0, true, "MIB", "memory of the host model (default 262144)" },
        { "host-disk-iops", 0, true, "N", "disk IOPS of the host model (default 100000)" },
        { "host-network-mbit", 0, true, "N", "network Mbit/s of the host model (default 10000)" },
        { "reserve-cpu-pct", 0, true, "N", "CPU percent to keep free on each host (default 20)" },
        { "reserve-memory-mib", 0, true, "MIB", "memory to keep free on each host (default 4096)" },
        { "window", 0, true, "DURATION", "how much history to use (default 7d)" },
        { NULL, 0, false, NULL, NULL },
};
static const OptSpec USER_CREATE_OPTS[] = {
        { "role", 'r', true, "ROLE", "administrator, delegated-administrator, self-service or read-only (required)" },
        { "scope", 's', true, "PATH", "host group a delegated administrator manages; repeat for several" },
        { "password-stdin", 0, false, NULL, "read the password from the first line of standard input "
                                            "(else $ARMADA_NEW_PASSWORD, else asked twice on the terminal)" },
        { NULL, 0, false, NULL, NULL },
};

static const OptSpec USER_PASSWD_OPTS[] = {
        { "password-stdin", 0, false, NULL, "read the new password from the first line of standard input "
                                            "(else $ARMADA_NEW_PASSWORD, else asked twice on the terminal without echo)" },
        { NULL, 0, false, NULL, NULL },
};

static const Command COMMANDS[] = {
        { "login", NULL, "[--user NAME] [--password-stdin]", "log in and save the token", 0, 0, LOGIN_OPTS, cmd_login },
        { "logout", NULL, "", "end the session and forget the token", 0, 0, NULL, cmd_logout },
        { "whoami", NULL, "", "show who the saved token belongs to", 0, 0, NULL, cmd_whoami },
        { "version", NULL, "", "show the client's and the server's versions", 0, 0, NULL, cmd_version },

        { "host", "list", "[--state S] [--prefix TEXT] [--health]", "list hosts", 0, 0, HOST_LIST_OPTS, cmd_host_list },
        { "host", "show", "NAME", "show one host", 1, 1, NULL, cmd_host_show },
        { "host", "set", "NAME [--max-parallel-starts N|default] [--max-parallel-disk-ops N|default] [--domain-type auto|kvm|qemu]",
          "change a host's settings", 1, 1, HOST_SET_OPTS, cmd_host_set },
        { "host", "add", "NAME --uri URI [--group PATH] [--pool NAME] [--pool-path PATH] [--max-parallel-starts N]"
          " [--max-parallel-disk-ops N]",
          "add a host (starts a job)", 1, 1, HOST_ADD_OPTS, cmd_host_add },
        { "host", "remove", "NAME [--force]", "remove a host from Armada (its VMs keep running)", 1, 1,
          HOST_REMOVE_OPTS, cmd_host_remove },
        { "host", "refresh", "NAME", "reconnect and re-read a host's state (starts a job)", 1, 1, NULL,
          cmd_host_refresh },

        { "group", "list", "", "list host groups", 0, 0, NULL, cmd_group_list },
        { "group", "create", "PATH", "create a host group, e.g. Seattle/Production (and its parents)", 1, 1, NULL,
          cmd_group_create },
        { "group", "rename", "PATH NEWNAME", "rename a host group", 2, 2, NULL, cmd_group_rename },
        { "group", "move", "PATH NEWPARENTPATH", "move a host group under another ('/' or 'All Hosts' for the top)", 2, 2, NULL,
          cmd_group_move },
        { "group", "delete", "PATH", "delete an empty host group", 1, 1, NULL, cmd_group_delete },
        { "group", "set-reserves", "PATH [--cpu PCT] [--memory MIB] [--disk GIB] [--disk-io PCT] [--network PCT] "
                                   "[--goal GOAL] [--weights cpu=1,memory=1,...]",
          "set a host group's placement reserves, goal and weights ('inherit' clears one)", 1, 1, GROUP_RESERVES_OPTS,
          cmd_group_set_reserves },
        { "group", "show-policy", "PATH", "show a host group's placement policy and where each value comes from", 1, 1, NULL,
          cmd_group_show_policy },

        { "vm", "list", "[--host NAME] [--state S] [--prefix TEXT] [--owner USER] [--health]", "list VMs", 0, 0, VM_LIST_OPTS, cmd_vm_list },
        { "vm", "set", "NAME [--owner USER | --no-owner] [--description TEXT] [--cpus N] [--max-cpus N] [--memory MIB] "
                       "[--max-memory MIB]",
          "change a VM's owner, description, vCPUs or memory (live where possible)", 1, 1, VM_SET_OPTS, cmd_vm_set },
        { "vm", "show", "NAME", "show one VM", 1, 1, NULL, cmd_vm_show },
        { "vm", "create", "NAME [--host H [--force] | --group PATH] --cpus N --memory MIB --disk SIZE [--domain-type auto|kvm|qemu] "
                          "[--description TEXT] | NAME --template T [--count N] [--host H | --group PATH] [--full-copy]",
          "create a VM, or deploy VMs from a template (starts a job each)", 1, 1, VM_CREATE_OPTS, cmd_vm_create_any },
        { "vm", "rate", "[--cpus N] [--memory MIB] [--disk SIZE] [--group PATH] [--goal GOAL] [--name VM] [--limit N]",
          "rate every host for a VM: 0-5 stars, and why a host cannot take it", 0, 0, VM_RATE_OPTS, cmd_vm_rate },
        { "vm", "start", "NAME", "start a VM (starts a job)", 1, 1, NULL, cmd_vm_action },
        { "vm", "stop", "NAME [--timeout SECONDS] [--no-force]",
          "shut a VM down gracefully, powering it off after the timeout unless --no-force (starts a job)", 1, 1,
          VM_STOP_OPTS, cmd_vm_action },
        { "vm", "kill", "NAME", "power a VM off at once (starts a job)", 1, 1, NULL, cmd_vm_action },
        { "vm", "pause", "NAME", "pause a running VM (starts a job)", 1, 1, NULL, cmd_vm_action },
        { "vm", "resume", "NAME", "resume a paused VM (starts a job)", 1, 1, NULL, cmd_vm_action },
        { "vm", "delete", "NAME [--keep-disks]", "delete a VM and its disks (starts a job)", 1, 1, VM_DELETE_OPTS,
          cmd_vm_delete },
        /* issue 12: clone, export and import */
        { "vm", "clone", "VM NEW [--linked] [--host H] [--start]",
          "clone a stopped VM: new UUID and MACs, full copy or linked overlay (starts a job)", 2, 2, VM_CLONE_OPTS, cmd_vm_clone },
        { "vm", "export", "VM --to DIR [--format ova|qcow2]",
          "export a stopped VM as an OVA or a directory of qcow2 disks under armadad's export root (starts a job)", 1, 1,
          VM_EXPORT_OPTS, cmd_vm_export },
        { "vm", "import", "FILE|DIR [--name N] [--host H | --group PATH] [--cpus N] [--memory MIB] [--network NET] [--start]"
          " [--v2v auto|always|never]",
          "import an OVA/OVF, VMX+VMDK, disk image (qcow2, raw, vmdk, vhd, vhdx) or qcow2 export (starts a job)", 1, 1,
          VM_IMPORT_OPTS, cmd_vm_import },
        /* issue 12: P2V */
        { "p2v", NULL, "SERVER [--ssh USER@ADDR] [--port N] [--disk /dev/X ...] [--host-key-fingerprint SHA256:...] [--name N]"
          " [--host H | --group PATH] [--cpus N] [--memory MIB] [--network NET] [--start] [--v2v auto|always|never]"
          " [--domain-type auto|kvm|qemu]",
          "convert a running Linux physical server into a VM: its disks read over SSH, read-only (starts a job)", 1, 1,
          P2V_OPTS, cmd_p2v },

        { "job", "list", "[--state STATE] [--stuck] [--limit N] [--before ID]", "list jobs, newest first", 0, 0, JOB_LIST_OPTS,
          cmd_job_list },
        { "job", "show", "ID", "show one job", 1, 1, NULL, cmd_job_show },
        { "job", "wait", "ID", "follow a job until it ends; exit 1 when it fails", 1, 1, NULL, cmd_job_wait },
        { "job", "cancel", "ID", "cancel a queued or running job", 1, 1, NULL, cmd_job_cancel },

        { "event", "list", "[--limit N] [--before ID]", "list events, newest first", 0, 0, EVENT_LIST_OPTS, cmd_event_list },
        { "audit", "list", "[--limit N]", "list the audit log", 0, 0, LIMIT_OPTS, cmd_audit_list },
        { "manager", "status", "", "show the managers sharing the store, which one is active and since when, the lease and the store",
          0, 0, NULL, cmd_manager_status },

        { "rule", "list", "", "list placement rules", 0, 0, NULL, cmd_rule_list },
        { "rule", "create", "NAME --kind anti-affinity|affinity --vms VM1,VM2", "create a placement rule", 1, 1, RULE_OPTS,
          cmd_rule_create },
        { "rule", "update", "NAME --vms VM1,VM2", "replace a placement rule's VMs", 1, 1, RULE_OPTS, cmd_rule_update },
        { "rule", "delete", "NAME", "delete a placement rule", 1, 1, NULL, cmd_rule_delete },

        { "plan", "consolidate", "FILE [--host-cpus N] [--host-memory MIB] [--host-disk GIB]",
          "pack servers (JSON: {\"host\": {...}, \"servers\": [...]}, '-' for stdin) onto as few hosts as possible", 1, 1,
          PLAN_OPTS, cmd_plan_consolidate },

        { "library", "add-share", "PATH", "register a directory of the server as a library share (indexes it)", 1, 1, NULL,
          cmd_library_add_share },
        { "library", "shares", "", "list library shares", 0, 0, NULL, cmd_library_shares },
        { "library", "remove-share", "PATH", "forget a library share (its files stay)", 1, 1, NULL, cmd_library_remove_share },
        { "library", "refresh", "[PATH]", "re-index one share or all (starts jobs)", 0, 1, NULL, cmd_library_refresh },
        { "library", "list", "[--share PATH] [--kind disk|iso|script]", "list library items", 0, 0, LIBRARY_LIST_OPTS,
          cmd_library_list },
        { "library", "import", "FILE [--share PATH] [--name REL] | --path PATH",
          "upload a file into a share (streamed, with progress), or import a file already in one", 0, 1, LIBRARY_IMPORT_OPTS,
          cmd_library_import },
        { "template", "list", "", "list templates", 0, 0, NULL, cmd_template_list },
        { "template", "show", "NAME", "show one template", 1, 1, NULL, cmd_template_show },
        { "template", "create", "NAME --image PATH [--cpus N] [--memory MIB] [--disk SIZE] [--hostname PATTERN] "
                                "[--admin-user NAME] [--ssh-key KEY|@FILE]... [--user-data FILE] [--points N] ...",
          "create a template from a library disk image", 1, 1, TEMPLATE_CREATE_OPTS, cmd_template_create },
        { "template", "delete", "NAME", "delete a template (its VMs and base image stay)", 1, 1, NULL, cmd_template_delete },
        { "vm", "to-template", "VM NAME [--share PATH] [--points N]",
          "copy a stopped VM's system disk into the library as template NAME (starts a job)", 2, 2, VM_TO_TEMPLATE_OPTS,
          cmd_vm_to_template },
        { "template", "deploy", "TEMPLATE NAME [--count N] [--host H | --group PATH] [--full-copy] [--no-start]",
          "deploy VMs from a template (starts a job per VM)", 2, 2, TEMPLATE_DEPLOY_OPTS, cmd_template_deploy },
        { "grant", "list", "", "list self-service grants with their quota use", 0, 0, NULL, cmd_grant_list },
        { "grant", "create", "--user NAME --templates T1,T2 --group PATH [--points N] [--max-vms N] [--max-cpus N] "
                             "[--max-memory MIB] [--actions LIST]",
          "let a self-service user deploy templates into a host group, within a quota", 0, 0, GRANT_CREATE_OPTS, cmd_grant_create },
        { "grant", "delete", "ID", "delete a grant (its VMs stay)", 1, 1, NULL, cmd_grant_delete },
        { "self-service", NULL, "", "show your grants, templates and quota", 0, 0, NULL, cmd_self_service },

        { "backup", "datastore", "add NAME --path DIR | list | remove NAME [--force]",
          "manage backup datastores (administrators; remove never deletes files)", 1, 2, BACKUP_DATASTORE_OPTS,
          cmd_backup_datastore },
        { "backup", "verify", "DATASTORE | --path DIR", "re-read every chunk; name every point that cannot be restored"
          " (waits; exit 1 when one cannot)", 0, 1, BACKUP_VERIFY_OPTS, cmd_backup_verify },
        { "backup", "gc", "DATASTORE", "remove chunks no point uses (starts a job)", 1, 1, NULL, cmd_backup_gc },
        { "backup", "prune", "DATASTORE [--vm VM] --keep-last N [--keep-hourly N] [--keep-daily N] [--keep-weekly N] "
                             "[--keep-monthly N] [--keep-yearly N] [--dry-run]",
          "remove points by a retention policy; lists kept and removed (waits)", 1, 1, BACKUP_PRUNE_OPTS, cmd_backup_prune },
        { "backup", "archive", "--datastore D --vm VM|--point VM/POINT --to DIR",
          "copy points into a self-contained datastore directory (starts a job)", 0, 0, BACKUP_ARCHIVE_OPTS,
          cmd_backup_archive },
        { "backup", "import", "DIR --datastore D", "copy every point of a datastore directory in (starts a job)", 1, 1,
          BACKUP_IMPORT_OPTS, cmd_backup_import },
        { "backup", "replicate", "add SOURCE_DS --to-path DIR | --to-url https://HOST:PORT --to-datastore NAME --token-file FILE"
          " [--ca-file FILE] [--every 15m] [--name NAME] | list | remove NAME | run NAME",
          "replicate a datastore to a second site, sending only missing chunks (administrators; run waits)", 1, 2,
          BACKUP_REPLICATE_OPTS, cmd_backup_replicate },
        { "backup", "now", "VM [--datastore D]", "back up a running VM now: full the first time, then only what changed"
          " (starts a job)", 1, 1, BACKUP_NOW_OPTS, cmd_backup_now },
        { "backup", "list", "[VM] [--datastore D]", "list recovery points, newest first", 0, 1, BACKUP_LIST_OPTS,
          cmd_backup_list },
        { "backup", "restore", "VM/POINT (--as NAME [--host H] | --in-place) [--datastore D]",
          "restore a point as a new VM, or over its stopped VM (POINT: an id or 'latest'; starts a job)", 1, 1,
          BACKUP_RESTORE_OPTS, cmd_backup_restore },
        { "backup", "files", "VM/POINT [PATH] [--disk vda] [--datastore D]", "list a directory of a point's disk without "
          "restoring it ('/' lists its file systems; '/sda1/etc' is /etc of sda1)", 1, 2, BACKUP_FILES_OPTS, cmd_backup_files },
        { "backup", "download", "VM/POINT PATH --to FILE [--disk vda] [--datastore D]", "download one file of a point's disk"
          " without restoring it", 2, 2, BACKUP_DOWNLOAD_OPTS, cmd_backup_download },
        { "backup", "policy", "set GROUP|VM --every 15m [--datastore D] [--keep-last N] [--keep-hourly N] [--keep-daily N] "
                              "[--keep-weekly N] [--keep-monthly N] [--keep-yearly N] | list | remove ID",
          "protection policies: back up every VM they cover that often, keep points by the rules", 1, 2, BACKUP_POLICY_OPTS,
          cmd_backup_policy },

        { "user", "list", "", "list users", 0, 0, NULL, cmd_user_list },
        { "user", "create", "NAME --role ROLE [--scope PATH]... [--password-stdin]", "create a user", 1, 1,
          USER_CREATE_OPTS, cmd_user_create },
        { "user", "delete", "NAME", "delete a user", 1, 1, NULL, cmd_user_delete },
        { "user", "passwd", "[NAME] [--password-stdin]",
          "change your own password, or (administrators) another user's; ends that user's other sessions", 0, 1,
          USER_PASSWD_OPTS, cmd_user_passwd },

        { "vm", "migrate", "NAME [--to HOST] [--with-storage] [--auto-converge] [--postcopy] [--bandwidth MIB/S]",
          "live-migrate a running VM (starts a job)", 1, 1, HA_MIGRATE_OPTS, cmd_vm_migrate },
        /* issue 12: VM hardware and ISOs (cmd_hardware.c) */
        { "vm", "hardware", "NAME", "show a VM's vCPUs, memory, boot order and disks, now and for its next boot", 1, 1, NULL,
          cmd_vm_hardware },
        { "vm", "disk", "add VM --size SIZE [--bus virtio|sata] | resize VM TARGET --size SIZE | remove VM TARGET [--keep-volume]",
          "add, grow or remove a VM's disk (hotplugged into a running VM where possible)", 2, 3, HW_DISK_OPTS, cmd_vm_disk },
        { "vm", "cd", "insert VM ISO | eject VM",
          "put a library ISO into a VM's CD-ROM drive (starts a job) or eject it (live in a running VM)", 2, 3, NULL, cmd_vm_cd },
        { "vm", "boot-order", "VM cd,disk,network", "set the devices a VM boots from, in order (from its next boot)", 2, 2, NULL,
          cmd_vm_boot_order },
        { "vm", "snapshot", "create VM [NAME] [--memory|--no-memory] [--description TEXT] | list VM | revert VM NAME | delete VM NAME",
          "take, list, revert to or delete a VM's snapshots (create, revert and delete start a job)", 2, 3, SNAPSHOT_OPTS,
          cmd_vm_snapshot },
        { "vm", "ha", "NAME --priority high|medium|low|off", "make a VM on a cluster highly available, or not", 1, 1,
          HA_VM_HA_OPTS, cmd_vm_ha },
        { "host", "maintenance", "on|off NAME [--force]", "move every VM off a host and keep it free, or end that (starts a job)",
          2, 2, HA_MAINTENANCE_OPTS, cmd_host_maintenance },
        { "host", "set-fence", "NAME -- COMMAND [ARG...] | NAME none", "set the command that powers a failed host off (administrators)",
          2, 64, NULL, cmd_host_set_fence },
        { "cluster", "create", "NAME --hosts H1,H2,... --shared-storage PATH [--tolerate N]", "create a failover cluster", 1, 1,
          HA_CLUSTER_CREATE_OPTS, cmd_cluster_create },
        { "cluster", "list", "", "list failover clusters", 0, 0, NULL, cmd_cluster_list },
        { "cluster", "show", "NAME", "show one cluster, with VMs waiting after a failover", 1, 1, NULL, cmd_cluster_show },
        { "cluster", "delete", "NAME", "delete a cluster (its hosts and VMs stay)", 1, 1, NULL, cmd_cluster_delete },

        /* issue 12: networks, NICs, storage pools and volumes (cmd_network.c) */
        { "network", "list", "", "list networks and where each stands", 0, 0, NULL, cmd_network_list },
        { "network", "create", "NAME --group PATH|--host H [--mode nat|bridge|isolated] [--bridge br0] [--vlan N] "
                               "[--subnet 10.x.y.0/24] [--default]",
          "create a network on every host of a group, or on one host (administrators; starts a job)", 1, 1,
          NETWORK_CREATE_OPTS, cmd_network_create },
        { "network", "delete", "NAME", "delete a network from its hosts; refused while a VM uses it (starts a job)", 1, 1, NULL,
          cmd_network_delete },
        { "vm", "nic", "add VM --network NET [--mac MAC] [--model virtio] | remove VM MAC | list VM",
          "add (hotplugged when running), remove or list a VM's network cards (add and remove start a job)", 2, 3, NIC_OPTS,
          cmd_vm_nic },
        { "pool", "list", "[--host NAME]", "list storage pools with their size, used and free space", 0, 0, POOL_LIST_OPTS,
          cmd_pool_list },
        { "pool", "add", "HOST NAME [--type dir|netfs|iscsi|logical] [--path DIR] [--source-host S] [--source-path DIR] "
                         "[--source-name NAME]",
          "add a storage pool to a host (administrators)", 2, 2, POOL_ADD_OPTS, cmd_pool_add },
        { "pool", "remove", "HOST NAME", "remove an empty storage pool from a host; its data stays (administrators)", 2, 2, NULL,
          cmd_pool_remove },
        { "volume", "list", "HOST POOL", "list the volumes of a storage pool", 2, 2, NULL, cmd_volume_list },
        { "volume", "delete", "HOST POOL VOLUME", "delete a volume no VM uses (administrators)", 3, 3, NULL, cmd_volume_delete },

        { "perf", "show", "NAME [--host] [--last 1h] [--metric cpu] [--step 1m]", "show a VM's or host's performance", 1, 1,
          PERF_OPTS, cmd_perf_show },
        { "health", NULL, "", "show the health of every host group, host and VM", 0, 0, NULL, cmd_health },
        { "alert", "list", "[--state open|resolved|all]", "list alerts", 0, 0, ALERT_LIST_OPTS, cmd_alert_list },
        { "alert", "ack", "ID", "acknowledge an alert", 1, 1, NULL, cmd_alert_ack },
        { "alert-rule", "list", "", "list alert rules", 0, 0, NULL, cmd_alert_rule_list },
        { "alert-rule", "create", "NAME --on host|vm --metric M --comparison OP [--threshold N | --state S] [--for 5m] "
                                  "[--severity S] [--group PATH | --object NAME]",
          "create an alert rule", 1, 1, ALERT_RULE_OPTS, cmd_alert_rule_create },
        { "alert-rule", "enable", "NAME", "enable an alert rule", 1, 1, NULL, cmd_alert_rule_enable },
        { "alert-rule", "disable", "NAME", "disable an alert rule (built-in ones too)", 1, 1, NULL, cmd_alert_rule_disable },
        { "alert-rule", "delete", "NAME", "delete an alert rule", 1, 1, NULL, cmd_alert_rule_delete },
        { "webhook", "list", "", "list webhooks and their deliveries", 0, 0, NULL, cmd_webhook_list },
        { "webhook", "add", "URL [--description TEXT]", "send alerts to URL (HTTP POST, JSON)", 1, 1, WEBHOOK_OPTS, cmd_webhook_add },
        { "webhook", "delete", "ID", "delete a webhook", 1, 1, NULL, cmd_webhook_delete },
        { "assess", "add", "NAME --node-exporter URL", "add a physical server to the consolidation assessment", 1, 1,
          ASSESS_ADD_OPTS, cmd_assess_add },
        { "assess", "list", "", "list the servers being assessed", 0, 0, NULL, cmd_assess_list },
        { "assess", "remove", "NAME", "remove a server from the assessment", 1, 1, NULL, cmd_assess_remove },
        { "assess", "report", "[--host-cpus N] [--host-memory-mib MIB] [--window 7d] ...",
          "rank the servers and plan their consolidation onto hosts", 0, 0, ASSESS_REPORT_OPTS, cmd_assess_report },
};

static bool is_noun(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(COMMANDS); i++)
                if (streq(COMMANDS[i].noun, s))
                        return true;
        return false;
}

static bool noun_has_verbs(const char *noun) {
        for (size_t i = 0; i < ELEMENTSOF(COMMANDS); i++)
                if (streq(COMMANDS[i].noun, noun) && COMMANDS[i].verb)
                        return true;
        return false;
}

static const Command *find_command(const char *noun, const char *verb) {
        for (size_t i = 0; i < ELEMENTSOF(COMMANDS); i++)
                if (streq(COMMANDS[i].noun, noun) &&
                    (COMMANDS[i].verb ? verb && streq(COMMANDS[i].verb, verb) : !verb))
                        return &COMMANDS[i];
        return NULL;
}

static void print_opts(FILE *f, const OptSpec *opts) {
        for (const OptSpec *o = opts; o && o->name; o++) {
                char left[64];
                if (o->short_name)
                        snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name, o->has_arg ? " " : "",
                                 o->has_arg ? o->arg_name : "");
                else
                        snprintf(left, sizeof left, "    --%s%s%s", o->name, o->has_arg ? " " : "",
                                 o->has_arg ? o->arg_name : "");
                fprintf(f, "  %-26s %s\n", left, o->help);
        }
}

static void usage_main(FILE *f) {
        fprintf(f, "usage: armada [OPTIONS] COMMAND [ARGS]\n\n"
                   "The command-line client of Armada, the KVM virtualization manager.\n\nCommands:\n");
        for (size_t i = 0; i < ELEMENTSOF(COMMANDS); i++) {
                const Command *c = &COMMANDS[i];
                char left[64];
                snprintf(left, sizeof left, "%s%s%s", c->noun, c->verb ? " " : "", c->verb ? c->verb : "");
                fprintf(f, "  %-18s %s\n", left, c->summary);
        }
        fprintf(f, "\nOptions (before or after the command):\n");
        print_opts(f, GLOBAL_OPTS);
        fprintf(f, "\nEnvironment: ARMADA_URL, ARMADA_TOKEN, ARMADA_USER, ARMADA_PASSWORD, ARMADA_NEW_PASSWORD.\n"
                   "Credentials: ~/.config/armada/credentials (written by 'armada login').\n"
                   "Exit status: 0 success, 1 error (from the server, a failed job, or usage), "
                   "2 armadad unreachable, 130 interrupted while waiting for a job.\n"
                   "'armada COMMAND --help' shows a command's options.\n");
}

static void usage_noun(FILE *f, const char *noun) {
        fprintf(f, "usage: armada %s COMMAND [ARGS]\n\nCommands:\n", noun);
        for (size_t i = 0; i < ELEMENTSOF(COMMANDS); i++) {
                const Command *c = &COMMANDS[i];
                if (!streq(c->noun, noun))
                        continue;
                char left[200];
                snprintf(left, sizeof left, "%s %s %s", c->noun, c->verb, c->synopsis);
                fprintf(f, "  %s\n      %s\n", left, c->summary);
        }
        fprintf(f, "\n'armada %s COMMAND --help' shows a command's options; 'armada --help' the global ones.\n", noun);
}

static void usage_command(FILE *f, const Command *c) {
        fprintf(f, "usage: armada %s%s%s%s%s\n\n%c%s.\n", c->noun, c->verb ? " " : "", c->verb ? c->verb : "",
                *c->synopsis ? " " : "", c->synopsis, c->summary[0] - ('a' - 'A'), c->summary + 1);
        if (c->opts) {
                fprintf(f, "\nOptions:\n");
                print_opts(f, c->opts);
        }
        fprintf(f, "\nGlobal options:\n");
        print_opts(f, GLOBAL_OPTS);
}

/* Drops trailing slashes so that paths can be appended and servers compared. */
static char *normalize_server(const char *s) {
        char *r = xstrdup(s);
        size_t n = strlen(r);
        while (n > 0 && r[n - 1] == '/')
                r[--n] = 0;
        return r;
}

/* Chooses the server and token from options, environment and the
 * credentials file, in that order. A saved token goes only to the server it
 * was issued by. */
static int setup_ctx(Ctx *c, const Args *g) {
        Credentials cr = {0};
        const char *v;
        int k = creds_load(&cr);
        if (k < 0 && k != -ENOENT) {
                _cleanup_free_ char *path = creds_path();
                fprintf(stderr, "armada: warning: ignoring '%s': %s\n", path,
                        k == -EINVAL ? "not the JSON armada writes" : strerror(-k));
        }

        if ((v = args_get(g, "server")))
                c->server = normalize_server(v);
        else if ((v = getenv("ARMADA_URL")) && *v)
                c->server = normalize_server(v);
        else if (cr.server && *cr.server)
                c->server = normalize_server(cr.server);
        else
                c->server = xstrdup(DEFAULT_SERVER);
        if (!strstr(c->server, "://")) {
                creds_done(&cr);
                return fail("the server '%s' is not a URL; write it as http://HOST:PORT or https://HOST:PORT",
                            c->server);
        }

        if ((v = args_get(g, "token")))
                c->token = xstrdup(v);
        else if ((v = getenv("ARMADA_TOKEN")) && *v)
                c->token = xstrdup(v);
        else if (cr.token && cr.server) {
                _cleanup_free_ char *saved = normalize_server(cr.server);
                if (streq(saved, c->server))
                        c->token = steal_ptr(cr.token);
        }
        creds_done(&cr);

        v = args_get(g, "output");
        if (!v || streq(v, "table"))
                c->output = OUTPUT_TABLE;
        else if (streq(v, "json"))
                c->output = OUTPUT_JSON;
        else
                return fail("--output must be 'table' or 'json', not '%s'", v);
        c->insecure = args_has(g, "insecure");
        c->wait = args_has(g, "wait");
        if ((v = args_get(g, "cacert"))) {
                if (access(v, R_OK) < 0)
                        return fail("cannot read the CA file '%s': %s", v, strerror(errno));
                c->cacert = xstrdup(v);
        }
        c->curl = curl_easy_init();
        if (!c->curl)
                return fail("cannot initialise libcurl");
        return 0;
}

static void ctx_done(Ctx *c) {
        free(c->server);
        secret_free(c->token);
        free(c->cacert);
        if (c->curl)
                curl_easy_cleanup(c->curl);
        *c = (Ctx) {0};
}

static const OptSpec NO_OPTS[] = { { NULL, 0, false, NULL, NULL } };

/* The option lists the parser knows while it looks for the command. */
static const OptSpec *const GLOBAL_ONLY[] = { GLOBAL_OPTS, NULL };

/* Is argv[i] a global option that consumes the next argument as its value? */
static bool takes_next(const char *arg) {
        if (arg[0] != '-' || strchr(arg, '='))
                return false;
        for (const OptSpec *o = GLOBAL_OPTS; o->name; o++) {
                if (!o->has_arg)
                        continue;
                if (arg[1] == '-' ? streq(arg + 2, o->name) : (arg[1] == o->short_name && arg[2] == 0))
                        return true;
        }
        return false;
}

/* Phase 1 of run: the command's noun and verb (verb NULL for a noun without
 * verbs), taking the global options that come before them into g. 0 and
 * the index of the first argument after the command in *ret_next, or the
 * exit code. */
static int run_find(int argc, char **argv, Args *g, const char **ret_noun, const char **ret_verb, int *ret_next) {
        const char *noun = NULL, *verb = NULL;
        int i, r;
        for (i = 1; i < argc; i++) {
                const char *arg = argv[i];
                if (streq(arg, "--"))
                        continue; /* nothing before the command needs it */
                if (arg[0] == '-' && arg[1]) {
                        int n = takes_next(arg) && i + 1 < argc ? 2 : 1;
                        r = args_parse(n, argv + i, GLOBAL_ONLY, g);
                        if (r)
                                return r;
                        i += n - 1;
                        continue;
                }
                if (!noun) {
                        noun = arg;
                        if (streq(noun, "help")) {
                                noun = NULL;
                                args_parse(1, (char *[]) { (char *) "--help" }, GLOBAL_ONLY, g);
                                continue;
                        }
                        if (!is_noun(noun))
                                return fail("unknown command '%s'; see 'armada --help'", noun);
                        if (!noun_has_verbs(noun)) {
                                i++;
                                break;
                        }
                } else {
                        verb = arg;
                        i++;
                        break;
                }
        }
        *ret_noun = noun;
        *ret_verb = verb;
        *ret_next = i;
        return 0;
}

/* Phase 2: help, a missing command and the count of arguments. true with
 * the exit code in *ret_code when run ends here. */
static bool run_usage(const Args *g, const Args *a, const char *noun, const Command *cmd, int *ret_code) {
        if (args_has(g, "help") || args_has(a, "help")) {
                if (cmd)
                        usage_command(stdout, cmd);
                else if (noun)
                        usage_noun(stdout, noun);
                else
                        usage_main(stdout);
                *ret_code = 0;
                return true;
        }
        *ret_code = EXIT_ERROR;
        if (!noun) {
                usage_main(stderr);
                return true;
        }
        if (!cmd) {
                fprintf(stderr, "armada: '%s' needs a command\n\n", noun);
                usage_noun(stderr, noun);
                return true;
        }
        if (a->n_pos < cmd->min_pos || a->n_pos > cmd->max_pos) {
                if (a->n_pos < cmd->min_pos)
                        fail("too few arguments");
                else
                        fail("unexpected argument '%s'", a->pos[cmd->max_pos]);
                fprintf(stderr, "usage: armada %s%s%s %s\n", cmd->noun, cmd->verb ? " " : "",
                        cmd->verb ? cmd->verb : "", cmd->synopsis);
                return true;
        }
        return false;
}

/* Finds the command (run_find), parses its options, answers help and usage
 * errors (run_usage), then runs it with the global options given before or
 * after it. The exit code. */
static int run(int argc, char **argv) {
        Args g = {0}, a = {0};
        _cleanup_(ctx_done) Ctx c = {0};
        const Command *cmd = NULL;
        const char *noun = NULL, *verb = NULL;
        int i, r;

        r = run_find(argc, argv, &g, &noun, &verb, &i);
        if (r)
                goto out;
        if (noun && (!noun_has_verbs(noun) || verb)) {
                cmd = find_command(noun, verb);
                if (!cmd) {
                        if (args_has(&g, "help")) {
                                usage_noun(stdout, noun);
                                r = 0;
                        } else
                                r = fail("unknown command '%s %s'; see 'armada %s --help'", noun, verb, noun);
                        goto out;
                }
                const OptSpec *const specs[] = { GLOBAL_OPTS, cmd->opts ? cmd->opts : NO_OPTS, NULL };
                r = args_parse(argc - i, argv + i, specs, &a);
                if (r)
                        goto out;
        }
        if (run_usage(&g, &a, noun, cmd, &r))
                goto out;

        /* Global options given after the command count as well. */
        g.opts = xrealloc(g.opts, (g.n_opts + a.n_opts) * sizeof *g.opts);
        for (size_t k = 0; k < a.n_opts; k++)
                g.opts[g.n_opts++] = a.opts[k];
        r = setup_ctx(&c, &g);
        if (r)
                goto out;
        r = cmd->run(&c, cmd, &a);
out:
        args_done(&g);
        args_done(&a);
        return r;
}

int main(int argc, char **argv) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
                fputs("armada: cannot initialise libcurl\n", stderr);
                return EXIT_ERROR;
        }
        int r = run(argc, argv);
        fflush(stdout);
        if (ferror(stdout) && r == 0) {
                fputs("armada: cannot write the output\n", stderr);
                r = EXIT_ERROR;
        }
        curl_global_cleanup();
        return r;
}
