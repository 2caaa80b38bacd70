/* hv: the only module that includes libvirt. It connects to hosts (any
 * libvirt URI), builds and parses domain XML, runs the VM lifecycle and
 * manages storage volumes. Errors: functions return 0 (or a positive count)
 * on success and a negative errno-style code on failure; the human-readable
 * reason of the last failure in this thread is hv_last_error(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Registers libvirt's default event loop and starts the thread that runs it,
 * so keepalive and close callbacks work. Call once before any hv_connect().
 * Returns 0 or -errno. Idempotent. */
int hv_init(void);

/* The reason (a complete sentence) for the last hv failure in this thread,
 * or "" when there is none. Valid until the next hv call in this thread. */
const char *hv_last_error(void);

typedef struct HvConn HvConn;

/* Called from the event thread when a connection drops (keepalive timeout,
 * daemon gone). Must not block. */
typedef void (*HvCloseFn)(void *userdata, const char *reason);

/* Opens a connection to uri (e.g. "qemu:///system", "qemu+tcp://10.0.0.2/system",
 * "test:///default"), with libvirt keepalive (interval_s, count) when the
 * driver supports it (remote URIs). on_close may be NULL. Returns 0 and
 * *ret, or a negative code with hv_last_error() set. */
int hv_connect(const char *uri, int keepalive_interval_s, unsigned keepalive_count,
               HvCloseFn on_close, void *userdata, HvConn **ret);
/* Closes the connection. Accepts NULL; returns NULL. Thread-safe with
 * respect to other calls on other connections. */
HvConn *hv_conn_free(HvConn *c);
/* True while the connection is usable (virConnectIsAlive). */
bool hv_conn_alive(HvConn *c);

typedef struct {
        char hostname[256];
        char hv_driver[32];     /* "QEMU", "Test", ... (virConnectGetType) */
        unsigned cpus;          /* logical CPUs */
        uint64_t memory_mib;    /* physical memory */
        uint64_t free_memory_mib;
        bool kvm;               /* capabilities offer domain type 'kvm' for x86_64 */
        char default_domain_type[8]; /* "kvm" when kvm, else "qemu"; "test" for test:// */
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
        uint64_t capacity_bytes; /* 0 when unknown */
} HvDisk;

typedef struct {
        char uuid[37];
        char name[256];
        HvState state;
        unsigned vcpus;
        uint64_t memory_mib;
        bool persistent;
        char domain_type[8];  /* "kvm", "qemu", "test" */
        size_t n_disks;
        HvDisk disks[HV_MAX_DISKS];
} HvDomainInfo;

/* Lists every domain (running and defined-but-off). Returns 0 and a
 * malloc'd array in *ret (caller frees with free()), *ret_n its length. */
int hv_list_domains(HvConn *c, HvDomainInfo **ret, size_t *ret_n);
/* Looks one domain up by UUID. 0, -ENOENT when there is none, or negative. */
int hv_domain_get(HvConn *c, const char *uuid, HvDomainInfo *ret);

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
        bool vnc;                  /* VNC graphics on 127.0.0.1 with autoport */
} HvDomainSpec;

/* Builds libvirt domain XML for spec, x86_64 'pc' machine, boots from the
 * first disk. Pure: no I/O. Returns a malloc'd string, or NULL with
 * hv_last_error() set when spec is invalid (e.g. 0 vcpus). */
char *hv_domain_xml_build(const HvDomainSpec *spec);
/* Parses domain XML (as virDomainGetXMLDesc returns it) into *ret (state is
 * left NOSTATE). 0 or -EINVAL. Pure. */
int hv_domain_xml_parse(const char *xml, HvDomainInfo *ret);

/* Defines (persistently) the domain described by spec. 0 or negative. */
int hv_domain_define(HvConn *c, const HvDomainSpec *spec);
/* Lifecycle by UUID. Each returns 0, -ENOENT when the domain does not exist,
 * or negative. start: from shut off; stop: ACPI shutdown request (returns
 * once requested); kill: hard power off; pause/resume: suspend vCPUs.
 * undefine: removes the definition (and managed save, snapshots metadata,
 * NVRAM); a running domain is killed first. */
int hv_domain_start(HvConn *c, const char *uuid);
int hv_domain_stop(HvConn *c, const char *uuid);
int hv_domain_kill(HvConn *c, const char *uuid);
int hv_domain_pause(HvConn *c, const char *uuid);
int hv_domain_resume(HvConn *c, const char *uuid);
int hv_domain_undefine(HvConn *c, const char *uuid);
/* Current state of a domain. 0, -ENOENT or negative. */
int hv_domain_state(HvConn *c, const char *uuid, HvState *ret);

/* Makes sure a directory storage pool called name exists, is active and
 * autostarts; defines it at path (creating the directory) when it does not
 * exist. When it exists its own path is kept. Returns 0 and the pool's real
 * path in ret_path (malloc'd; may be NULL to ignore), or negative. */
int hv_pool_ensure(HvConn *c, const char *name, const char *path, char **ret_path);
/* Creates a volume called vol_name (qcow2 unless format says "raw") of
 * capacity bytes in pool. Returns 0 and its path (malloc'd), -EEXIST when a
 * volume of that name exists, or negative. */
int hv_volume_create(HvConn *c, const char *pool, const char *vol_name, const char *format,
                     uint64_t capacity, char **ret_path);
/* Deletes the volume at path. 0, -ENOENT (no such volume), or negative. */
int hv_volume_delete(HvConn *c, const char *path);
