/* hv: the only module that includes libvirt. It connects to hosts (any
 * libvirt URI), builds and parses domain XML, runs the VM lifecycle and
 * manages storage volumes. Errors: functions return 0 (or a positive count)
 * on success and a negative errno-style code on failure; the human-readable
 * reason of the last failure in this thread is hv_last_error().
 *
 * How libvirt's errors map (every function below): -ENOENT no such domain,
 * pool, volume or network; -EBUSY the domain's state does not allow the
 * operation (start while running, stop/kill while shut off, pause while not
 * running, resume while not paused) -- the same on every driver, as hv asks
 * the state after a failure; -EEXIST it exists already; -EINVAL invalid
 * input (refused by hv before libvirt sees it, or libvirt's XML/argument
 * errors); -EACCES authentication or access denied; -EOPNOTSUPP the driver
 * cannot do it; -ECANCELED a job (migration) aborted on request; -EIO
 * everything else (connection lost included). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Registers libvirt's default event loop and starts the thread that runs it,
 * so keepalive and close callbacks work. Call once before any hv_connect()
 * (hv_connect() calls it too, to be safe). Also silences libvirt's default
 * printing of errors to stderr. Returns 0 or -errno. Idempotent. */
int hv_init(void);
/* For shutdown: every call waiting on a daemon (see HvDeadlines) returns now
 * with -ECANCELED, leaving its thread behind, and every later one fails at
 * once the same way. No connection is marked not responding for it. Not
 * undone. */
void hv_abandon_calls(void);

/* The reason (a complete sentence) for the last hv failure in this thread,
 * or "" when there is none. Valid until the next hv call in this thread.
 * Safe to show a client: it never quotes what libvirt read from a file. */
const char *hv_last_error(void);
/* libvirt's whole message behind the last hv failure in this thread, for
 * the log only: when a connection fails it can quote the file a test: URI
 * named (libxml2's parse context). "" when hv_last_error() says it all.
 * Valid until the next hv call in this thread. */
const char *hv_last_error_detail(void);

/* Whether uri may be handed to libvirt as a host's address. Parses it as
 * libvirt does (libxml2's xmlParseURI; query parameters split on '&' and
 * ';', percent-decoded) and allows only:
 *  - the schemes qemu, qemu+tcp, qemu+tls, qemu+ssh, qemu+libssh2 and esx
 *    (exactly, lower case), and test only when allow_test; never ext, unix
 *    or another transport;
 *  - for qemu*, the path /system or /session; for esx a server; for test
 *    a path and no server, user or port;
 *  - a server of host-name or address characters and a user name of
 *    letters, digits, '.', '_', '-', neither beginning with '-';
 *  - the query parameters no_verify, keyfile, known_hosts and sshauth (and
 *    socket only when allow_test), with values of path-like characters not
 *    beginning with '-'; never command, netcat, name or any other;
 *  - no fragment, no spaces, quotes or control characters.
 * Returns 0 when allowed, else -EINVAL and a sentence fragment saying why
 * and what is allowed in why (e.g. "the transport 'qemu+ext' is not
 * allowed; use ..."), for "URI '...' is refused: <why>." why may be NULL.
 * Pure: no I/O. */
int hv_uri_check(const char *uri, bool allow_test, char *why, size_t why_size);

typedef struct HvConn HvConn;

/* Called from the event thread when a connection drops (keepalive timeout,
 * daemon gone). Must not block. */
typedef void (*HvCloseFn)(void *userdata, const char *reason);

/* Opens a connection to uri (e.g. "qemu:///system", "qemu+tcp://10.0.0.2/system",
 * "test:///default"), with libvirt keepalive (interval_s, count) when the
 * driver supports it (remote URIs); keepalive_interval_s <= 0 leaves
 * libvirt's default. No credentials are ever prompted for (ssh uses its
 * agent, TLS its certificates). on_close may be NULL; its reason is one of
 * "keepalive timeout", "end of file", "I/O error", "client closed", or, from
 * the thread whose call missed its deadline, "not responding: <what> did
 * not return within N s" (hv_conn_not_responding). Returns 0
 * and *ret, or a negative code with hv_last_error() set and *ret untouched.
 * As a last line of defence it refuses (-EPERM) a uri that fails
 * hv_uri_check(uri, true, ...): callers check with their own allow_test
 * first. On a libvirt failure hv_last_error() is "cannot connect to 'URI':
 * <short reason>" without libvirt's parse context, which goes to
 * hv_last_error_detail(). A daemon that accepts the connection but does not
 * answer (stopped, wedged) fails it with -ETIMEDOUT after
 * HV_CONNECT_DEADLINE_MS: "... libvirtd did not answer within N s". */
#define HV_CONNECT_DEADLINE_MS 10000u
int hv_connect(const char *uri, int keepalive_interval_s, unsigned keepalive_count,
               HvCloseFn on_close, void *userdata, HvConn **ret);
/* How long a call may go unanswered before it fails with -ETIMEDOUT
 * ("libvirtd on 'URI' did not answer within N s (what)") and its HvConn is
 * marked not responding (hv_conn_not_responding): libvirtd accepts the
 * connection and keepalive, but its workers hang. 0 in a field of
 * hv_set_deadlines keeps the default. Migration itself has none (the
 * migrate job watches its progress and aborts it); its progress calls do. */
typedef struct {
        unsigned query_ms;      /* facts, lists, stats, state, XML, screenshots: 30 s */
        unsigned start_ms;      /* starting a domain: 60 s */
        unsigned change_ms;     /* define, stop, kill, pause, resume, undefine, mark, pools,
                                 * creating and deleting volumes, aborting a job: 60 s */
        unsigned copy_ms;       /* cloning, uploading, downloading volumes; managed save: 1 h */
} HvDeadlines;
void hv_set_deadlines(const HvDeadlines *d);

/* Closes the connection. Accepts NULL; returns NULL. Thread-safe with
 * respect to other calls on other connections. */
HvConn *hv_conn_free(HvConn *c);
/* True while the connection is usable: none of its connections was closed
 * under it and no call on it missed its deadline. */
bool hv_conn_alive(HvConn *c);
/* Watches c's domains for lifecycle events (defined, undefined, started,
 * stopped, crashed, migrated ...) over a connection of their own that stays
 * open (test driver: the shared one), so that a caller can tell that
 * nothing changed without listing domains. 0; -EOPNOTSUPP when the driver
 * has no events; -ETIMEDOUT when libvirtd did not answer within
 * HV_CONNECT_DEADLINE_MS; else negative. Calling it again is a no-op. The
 * watch ends with c; if its connection drops, c's on_close runs as for any
 * of c's connections, so a silent watch is never mistaken for a quiet host. */
int hv_conn_watch_domains(HvConn *c);
/* The number of domain events seen on c so far: true and *ret_count while
 * c is watched (hv_conn_watch_domains), false otherwise. No I/O. */
bool hv_conn_domain_events(HvConn *c, uint64_t *ret_count);
/* True once a call on c missed its deadline (see HvDeadlines); *what (may
 * be NULL) then says which, e.g. "starting a domain did not return within
 * 60 s". The connection's on_close was called with that too. */
bool hv_conn_not_responding(HvConn *c, const char **what);

/* The host part of a libvirt URI into out ("qemu+tcp://root@10.0.0.2:16509/system"
 * → "10.0.0.2", "qemu+tcp://[fd00::2]/system" → "fd00::2" without its
 * brackets), "" for a local URI. Pure. 0, -EINVAL (an unclosed '['), or
 * -ENAMETOOLONG (out too small). */
int hv_uri_host(const char *uri, char *out, size_t size);

/* The comparable form of a libvirt URI, for telling whether two URIs name
 * the same connection: scheme and host name in lower case, the user kept,
 * the transport's default port dropped (qemu+tcp 16509, qemu+tls 16514,
 * ssh transports 22), "localhost"/"127.0.0.1"/"[::1]" and an empty host the
 * same for local drivers, a trailing '/' of the path dropped, the query kept
 * as given. Pure. Returns a malloc'd string (never NULL); a string that is
 * not a URI comes back as given. Different forms of one address that only
 * libvirt could resolve (a name and its IP) are not unified: the host UUID
 * catches those when the host first connects. */
char *hv_uri_normalize(const char *uri);
/* True when uri uses libvirt's test driver ("test://..." or "test+...://"). */
bool hv_uri_is_test(const char *uri);

typedef struct {
        char hostname[256];
        char hv_driver[32];     /* "QEMU", "TEST", ... (virConnectGetType) */
        unsigned cpus;          /* logical CPUs */
        uint64_t memory_mib;    /* physical memory */
        uint64_t free_memory_mib; /* 0 when the driver cannot tell */
        bool kvm;               /* capabilities offer domain type 'kvm' for x86_64 */
        char default_domain_type[8]; /* "kvm" when kvm, else "qemu"; "test" for test:// */
        /* libvirt's host UUID (capabilities <host><uuid>, else the SMBIOS
         * system UUID of virConnectGetSysinfo), lower case; "" when the
         * driver reports none (the test driver never does). Two URIs that
         * reach one libvirtd report the same UUID. */
        char uuid[37];
} HvHostInfo;
/* Fills *ret with the host's facts. 0 or negative. */
int hv_host_info(HvConn *c, HvHostInfo *ret);

typedef enum {
        HV_STATE_NOSTATE = 0,
        HV_STATE_RUNNING,
        HV_STATE_BLOCKED,
        HV_STATE_PAUSED,
        HV_STATE_SHUTDOWN,  /* shutting down */
        HV_STATE_SHUTOFF,
        HV_STATE_CRASHED,
        HV_STATE_PMSUSPENDED,
} HvState;
/* "running", "paused", "stopped" (shutoff), "crashed", "shutting-down",
 * "suspended", "unknown": Armada's state words for a libvirt state. */
const char *hv_state_name(HvState s);

#define HV_MAX_DISKS 8
typedef struct {
        char path[1024];      /* source file */
        char format[16];      /* "qcow2", "raw" */
        char target[16];      /* "vda", "vdb", "hdc" ... */
        bool cdrom;
        uint64_t capacity_bytes; /* 0 when unknown (always, from hv_list_domains/
                                  * hv_domain_get/hv_domain_xml_parse) */
} HvDisk;

typedef struct {
        char uuid[37];
        char name[256];
        HvState state;
        unsigned vcpus;       /* vCPUs online (<vcpu current=...>, else <vcpu>) */
        uint64_t memory_mib;  /* maximum memory (<memory>), rounded up to a MiB */
        bool persistent;
        char domain_type[8];  /* "kvm", "qemu", "test" */
        /* Disks, CD-ROMs and LUNs in XML order (floppies skipped); at most the
         * first HV_MAX_DISKS. path is the source file or device, "pool/volume"
         * for volume disks, "" for an empty CD-ROM drive. */
        size_t n_disks;
        HvDisk disks[HV_MAX_DISKS];
        /* The Armada marker in <metadata> (HV_ARMADA_XMLNS): the installation
         * that created the domain ("" for an unmarked domain, "unknown" for a
         * marker without a valid one) and its VM id there (0 when absent or
         * not a number). */
        char armada_installation[37];
        int64_t armada_vm_id;
        /* The memory the guest has now (<currentMemory>: a balloon below
         * <memory>), 0 when the XML does not say (hv-hardware.h). */
        uint64_t current_memory_mib;
} HvDomainInfo;

/* The namespace of the element Armada puts into every domain it defines:
 *   <metadata><armada:vm xmlns:armada="HV_ARMADA_XMLNS"
 *                        installation="<installation UUID>" id="<VM id>"/></metadata>
 * Stable: changing it makes every installation's domains look unmarked. */
#define HV_ARMADA_XMLNS "https://armada.example/xmlns/vm/1"
#define HV_ARMADA_XMLNS_PREFIX "armada"

/* Lists every domain (running and defined-but-off; transient ones too).
 * Returns 0 and a malloc'd array in *ret (caller frees with free(); never
 * NULL), *ret_n its length. A domain undefined while the list is read is
 * left out; any other failure fails the whole call. Running domains are
 * described by their live XML. */
int hv_list_domains(HvConn *c, HvDomainInfo **ret, size_t *ret_n);
/* Looks one domain up by UUID. 0, -ENOENT when there is none, -EINVAL when
 * uuid is not one, or negative. */
int hv_domain_get(HvConn *c, const char *uuid, HvDomainInfo *ret);

/* NICs a domain spec holds beyond its first. */
#define HV_SPEC_MORE_NICS 7

/* What Armada wants a domain to be. Strings are user-supplied and must be
 * escaped on their way into XML (the builder does that; tests prove it). */
typedef struct {
        const char *name;
        const char *uuid;
        const char *domain_type;   /* "kvm", "qemu" or "test" */
        unsigned vcpus;
        uint64_t memory_mib;
        const char *description;   /* may be NULL; free text */
        size_t n_disks;
        HvDisk disks[HV_MAX_DISKS];
        const char *network;       /* libvirt network for one virtio NIC, or NULL for none */
        const char *network_mac;   /* that NIC's MAC (aa:bb:cc:dd:ee:ff), or NULL: libvirt picks one */
        /* Further virtio NICs after that one (only with network set), in
         * order: more_networks[i] with MAC more_macs[i] (NULL: libvirt picks). */
        size_t n_more_nics;
        const char *more_networks[HV_SPEC_MORE_NICS];
        const char *more_macs[HV_SPEC_MORE_NICS];
        bool vnc;                  /* VNC graphics with autoport */
        const char *vnc_listen;    /* address VNC listens on; NULL: 127.0.0.1 */
        const char *vnc_password;  /* VNC password (at most 8 characters are used), or NULL for none */
        bool uefi;                 /* UEFI firmware (<os firmware='efi'>: libvirt picks OVMF from the
                                    * host's firmware descriptors, with its own NVRAM); BIOS otherwise.
                                    * Ignored for the test driver. */
        const char *installation_id; /* this Armada installation's UUID, written as the
                                      * <metadata> marker (see HV_ARMADA_XMLNS); NULL: unmarked */
        int64_t vm_id;             /* Armada's VM id, in the marker (with installation_id) */
} HvDomainSpec;

/* Builds libvirt domain XML for spec, x86_64 'pc' machine, boots from the
 * first disk (<boot dev='cdrom'/> before 'hd' when disks[0] is a CD-ROM).
 * Pure: no I/O. Returns a malloc'd string, or NULL with hv_last_error() set
 * when spec is invalid: name missing, longer than 255 bytes, not UTF-8 or
 * with control characters; uuid given but not a UUID; domain_type not
 * "kvm"/"qemu"/"test"; vcpus not 1..4096; memory_mib 0; more than
 * HV_MAX_DISKS disks; a disk target that is not vd/sd/hd plus 1-3 letters
 * (vd → virtio, sd → sata, hd → ide), twice the same target, a CD-ROM on
 * vd; a format other than "qcow2"/"raw" ("" means raw for a CD-ROM); an
 * empty path (allowed for a CD-ROM: an empty drive); a network name empty or
 * with control characters, more NICs without a first or beyond
 * HV_SPEC_MORE_NICS; installation_id
 * given but not a UUID. Names are not checked
 * against name_is_valid() here; any text is escaped. */
char *hv_domain_xml_build(const HvDomainSpec *spec);
/* Parses domain XML (as virDomainGetXMLDesc returns it) into *ret (state is
 * left NOSTATE, persistent false), the Armada marker included (a marker
 * whose installation is missing or not a UUID reads as installation
 * "unknown": someone else's, never this installation's). 0 or -EINVAL (not well-formed, has a DTD
 * -- entities are never expanded, nothing is fetched -- no <name>, or a
 * field too long for HvDomainInfo); *ret is untouched on failure. Pure. */
int hv_domain_xml_parse(const char *xml, HvDomainInfo *ret);

/* Defines (persistently) the domain described by spec; with the uuid and
 * name of an existing domain it replaces that definition (live state applies at
 * next boot). 0, -EINVAL (spec invalid, see hv_domain_xml_build), or
 * negative. */
int hv_domain_define(HvConn *c, const HvDomainSpec *spec);
/* Writes the Armada marker (HV_ARMADA_XMLNS) into the definition of the
 * domain with uuid (and its live state when it runs), replacing any marker
 * it has: for definitions Armada did not build itself (a saved XML). 0,
 * -ENOENT, -EINVAL (installation_id not a UUID), or negative. */
int hv_domain_mark(HvConn *c, const char *uuid, const char *installation_id, int64_t vm_id);
/* Lifecycle by UUID. Each returns 0, -ENOENT when the domain does not exist,
 * or negative. start: from shut off; stop: ACPI shutdown request (returns
 * once requested); kill: hard power off; pause/resume: suspend vCPUs.
 * undefine: removes the definition (and managed save, snapshots metadata,
 * NVRAM, checkpoints metadata, as far as the driver supports these); a running
 * domain is killed first. -EBUSY when the state does not allow the
 * operation (see the top of this file); -EINVAL when uuid is not a UUID. */
int hv_domain_start(HvConn *c, const char *uuid);
int hv_domain_stop(HvConn *c, const char *uuid);
/* Starts the domain's QEMU paused (VIR_DOMAIN_START_PAUSED): the guest
 * never runs; hv_domain_kill() ends it. Same returns as hv_domain_start(). */
int hv_domain_start_paused(HvConn *c, const char *uuid);
int hv_domain_kill(HvConn *c, const char *uuid);
int hv_domain_pause(HvConn *c, const char *uuid);
int hv_domain_resume(HvConn *c, const char *uuid);
int hv_domain_undefine(HvConn *c, const char *uuid);
/* Current state of a domain. 0, -ENOENT or negative. */
int hv_domain_state(HvConn *c, const char *uuid, HvState *ret);

/* Makes sure a directory storage pool called name exists, is active and
 * autostarts; defines it at path (creating the directory) when it does not
 * exist (on the host, via virStoragePoolBuild; an existing directory is
 * fine). When it exists its own path is kept, and it is started and set to
 * autostart if need be. Returns 0 and the pool's real path in ret_path
 * (malloc'd; may be NULL to ignore), -EINVAL when it must be defined and
 * path is not absolute, or negative. A pool hv defined is undefined again
 * when it cannot be built or started. */
int hv_pool_ensure(HvConn *c, const char *name, const char *path, char **ret_path);
/* Creates a volume called vol_name (qcow2 when format is NULL or "qcow2",
 * raw for "raw", anything else -EINVAL) of capacity bytes in pool, thin
 * (allocation 0). Returns 0 and its path (malloc'd), -EEXIST when a volume
 * of that name exists, -ENOENT when the pool does not, or negative. */
int hv_volume_create(HvConn *c, const char *pool, const char *vol_name, const char *format,
                     uint64_t capacity, char **ret_path);
/* Deletes the volume at path through the storage pool that holds it; when
 * no pool lists it, every active pool is refreshed and it is looked up
 * again. 0; -ENOENT when a pool over the file's directory does not list it
 * (it is not there); -ENXIO when no pool of the host holds it at all (the
 * file may still be there: nothing was deleted); or negative. */
int hv_volume_delete(HvConn *c, const char *path);
