/* What the library's operation files (library-ops.c, library-deploy.c)
 * share and nobody else needs. */
#pragma once

#ifndef LIBRARY_PRIV_ALLOW
#error "library-priv.h is for the library's own files only"
#endif

#include <limits.h>
#include "hv/hv.h"
#include "library.h"

/* A job as the API shows it (store_job_get_json()), JSON null when it
 * cannot be read. */
json_t *library_job_json(Store *st, int64_t id);

/* Queues a job of kind on the VM row vm_id just recorded (params: the
 * job's parameters, not consumed), reading the row first: a job that
 * fails at once removes the row, and a read after the submission found
 * nothing (the reply held null). When the job cannot be queued the row is
 * removed and err says so. 0 with *ret_vm (JSON null only when the read
 * failed, logged) and *ret_job, or negative. */
int library_queue_new_vm(Store *st, Jobs *jobs, const OpCaller *c, const char *kind, int64_t vm_id, const char *name,
                         json_t *params, json_t **ret_vm, int64_t *ret_job, OpError *err);

/* The host group at path, which the caller may read: 0 and *ret_id, or
 * 400 (not a group path) / 422 (no such group, or not the caller's to see)
 * naming field. */
int library_group_of(Store *st, const OpCaller *c, const char *field, const char *path, int64_t *ret_id, OpError *err);

/* A grant's limits (-1 unlimited) and what its VMs use now, from its JSON
 * (store_grant_list()). */
LibraryAmounts library_grant_limit(json_t *g);
LibraryAmounts library_grant_used(json_t *g);

/* Runs argv (argv[0] looked up in PATH, never a shell) with stdout and
 * stderr into the file log; its exit status, or -ENOENT when it cannot be
 * run (library.c). */
int library_spawn_wait(char *const argv[], const char *log);

/* ---- a new VM of clone and import (library-import.c) ---- */
typedef struct {
        const char *name;          /* checked here: valid, not taken (409 naming "name") */
        unsigned cpus;
        uint64_t memory_mib;
        uint64_t disk_bytes;       /* what its disks take on the host */
        const char *host;          /* a host name (422 naming "host" when unknown), or NULL ... */
        int64_t host_id;           /* ... a host id (the clone's source host), or 0 ... */
        int64_t group_id;          /* ... else placement in this group's subtree */
        const char *origin;        /* "created" */
        const char *description;
        const char *const *networks; /* the networks its cards will use (placement needs them on the host) */
        size_t n_networks;
} LibraryNewVm;
/* Places (the named host, checked against its reserve, or the best of the
 * group) and records the VM in state "creating", under the placement lock;
 * the caller must be allowed to create VMs on the host. 0 and its id and
 * host, or the OpError. */
int library_new_vm_record(Store *st, const OpCaller *c, const LibraryNewVm *n, int64_t *ret_id, StoreHost *ret_host,
                          OpError *err);

/* What a clone or import job makes on the host, so that a failure removes
 * all of it (and the VM's row). */
typedef struct {
        void *inv;                 /* Inventory * */
        JobCtx *ctx;
        StoreVm vm;
        StoreHost host;
        InventoryLink *link;
        HvConn *streams;           /* a connection of its own for uploads */
        char *made[HV_MAX_DISKS];
        size_t n_made;
        bool defined;
} LibraryBuild;
/* Reads the job's VM and its host, connects and readies the host's pool.
 * 0 or the job's failure. */
int library_build_begin(LibraryBuild *b, Inventory *inv, JobCtx *ctx);
/* The connection uploads go over (the link itself for test hosts). */
HvConn *library_build_stream_conn(LibraryBuild *b);
/* Records a volume made for disk target (a row of the VM, owned). */
void library_build_made(LibraryBuild *b, const char *target, const char *path, uint64_t size);
/* Defines the domain of spec, marks the VM stopped, starts it when asked. */
int library_build_define(LibraryBuild *b, const HvDomainSpec *spec, bool start);
/* The same, the domain defined from xml as given (a clone's:
 * hv_domain_xml_clone()), spec saying its CPUs, memory and type for the
 * record; xml NULL: from spec. */
int library_build_define_xml(LibraryBuild *b, const HvDomainSpec *spec, const char *xml, bool start);
/* Starts the new VM vm, just defined on host h (reached through link),
 * under the host's start slot, and records the state it reached. 0, or
 * the job's failure: the start refused, or the job cancelled while it
 * waited for the slot (-ECANCELED; ctx->error then becomes cancel_note
 * when it is not NULL). Shared by deploy, clone and import. */
int library_start_new_vm(JobCtx *ctx, Inventory *inv, InventoryLink *link, const StoreHost *h, const StoreVm *vm,
                         const char *cancel_note);
/* After a failure r: removes the domain and volumes made, records an error
 * event "<kind>-failed" and deletes the VM's row. Returns r (or -EIO). */
int library_build_undo(LibraryBuild *b, const char *kind, int r);
/* After success: releases the link and the bookkeeping. */
void library_build_end(LibraryBuild *b);
/* A clone or import interrupted by a restart: the VM is marked failed and
 * a vm.delete removes what exists. */
void library_build_abandon(Store *st, const StoreJob *job, void *userdata);

/* ---- virt-v2v-in-place on a new VM's disks (library-v2v.c) ---- */
/* Whether virt-v2v-in-place can be run (in PATH or the configured path). */
bool library_v2v_installed(void);
/* The mode a request's "v2v" value asks for (NULL: armadad's default) as
 * the job keeps it ("auto", "always", "never", static). 0, or 400 naming
 * "v2v" for another value, 422 naming it for "always" without virt-v2v. */
int library_v2v_mode_of(const char *value, const char **ret_name, OpError *err);
/* What a job knows of where a guest came from, for auto's rule. */
typedef struct {
        const char *kind;                   /* "p2v", or an import's "ova", "ovf", "vmx", "image", "libvirt";
                                               NULL: unknown (a job queued before the rule: foreign) */
        const char *formats[HV_MAX_DISKS];  /* an image's disks as read: qcow2, raw, vmdk, vpc, vhdx */
        size_t n_formats;
} LibraryV2vSource;
/* Whether auto converts a guest from src: true for a foreign one (P2V,
 * OVA, OVF, VMX, an image with a VMDK, VHD or VHDX disk, an unknown kind);
 * false for a qcow2 or raw image or a libvirt export, with a sentence
 * saying so in why (no full stop; why untouched on true). Pure. */
bool library_v2v_source_foreign(const LibraryV2vSource *src, char *why, size_t why_len);
/* Whether a job of mode (NULL: a job queued before there was one: auto)
 * runs virt-v2v on a guest from src (installed or not). Pure. */
bool library_v2v_wanted(const char *mode, const LibraryV2vSource *src);
/* The conversion phase: virt-v2v-in-place on the n local disk images at
 * paths (all of format, "qcow2" or "raw"), changed in place, progress at
 * pct, when mode asks for it for a guest from src. 0 with *ret_result (the
 * job result's "v2v" object, owned by the caller) and *ret_converted (the
 * guest is ready for virtio) when the job goes on: converted, or not run
 * or not converted in auto/never (the reason in *ret_result); or the job's
 * failure (always and not converted, a cancel): then nothing is set. Its
 * output goes to armadad's log only. */
int library_v2v_convert(JobCtx *ctx, const char *mode, const LibraryV2vSource *src, char *const *paths, size_t n,
                        const char *format, int pct, json_t **ret_result, bool *ret_converted);

/* Job registration of the three files. */
void library_register_clone_jobs(Jobs *jobs, Inventory *inv);
void library_register_export_jobs(Jobs *jobs, Inventory *inv);
void library_register_import_jobs(Jobs *jobs, Inventory *inv);
void library_register_p2v_jobs(Jobs *jobs, Inventory *inv);   /* library-p2v.c */

/* The export root (realpath) into out: 0, or -ENOENT when none is configured
 * or it does not exist. */
int library_export_root(char out[PATH_MAX]);
