/* The library capability's tables: library shares and their indexed items,
 * templates, self-service grants with their templates and quotas, and which
 * template (and grant) each deployed VM came from. Conventions as in
 * store.h: 0 or a positive id/count on success, -ENOENT/-EEXIST/-ENOTEMPTY/
 * -EIO on failure; JSON results are new references the caller owns. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include "store.h"

/* ---- shares ---- */
int store_share_insert(Store *st, const char *path, int64_t *ret_id);
/* The share's absolute path into out (size bytes). 0 or -ENOENT. */
int store_share_path(Store *st, int64_t id, char *out, size_t size);
int store_share_find(Store *st, const char *path, int64_t *ret_id);
/* Deletes a share and its items; -ENOTEMPTY while a template uses one. */
int store_share_delete(Store *st, int64_t id);
int store_share_set_indexed(Store *st, int64_t id);
int store_share_list(Store *st, json_t **ret);
int store_share_get_json(Store *st, int64_t id, json_t **ret);

/* ---- items ---- */
typedef struct {
        int64_t id;
        int64_t share_id;
        char rel_path[1024];
        char kind[8];            /* disk, iso, script */
        char format[8];          /* qcow2, raw, vmdk, vhdx, iso, text */
        uint64_t size;           /* bytes of the file */
        uint64_t virtual_size;   /* disks: the guest-visible size */
        char checksum[65];       /* sha256, hex */
        char backing[1024];      /* qcow2 backing file, "" when none */
        int64_t mtime_ms;
} StoreItem;
/* Inserts or updates the item (share_id, rel_path); clears its missing
 * mark. 0 and *ret_id. */
int store_item_upsert(Store *st, const StoreItem *it, int64_t *ret_id);
int store_item_get(Store *st, int64_t id, StoreItem *ret);
int store_item_find(Store *st, int64_t share_id, const char *rel_path, StoreItem *ret);
/* Items of a share not in keep (rel paths): deleted, or marked missing when
 * a template refers to them. Returns the number deleted or marked. */
int store_item_forget_except(Store *st, int64_t share_id, const char *const *keep, size_t n_keep);
/* Deletes the item (share_id, rel_path) unless a template uses it. */
int store_item_delete(Store *st, int64_t share_id, const char *rel_path);
int store_item_list(Store *st, int64_t share_id, const char *kind, json_t **ret);
int store_item_get_json(Store *st, int64_t id, json_t **ret);
/* The ids of the items at rel_path in any share: 0 and an array of
 * objects {"id": ...} (empty when none), or negative. */
int store_item_ids_at(Store *st, const char *rel_path, json_t **ret);

/* ---- templates ---- */
typedef struct {
        const char *name;
        const char *description;       /* may be NULL */
        int64_t cpus;
        int64_t memory_mib;
        int64_t disk_bytes;            /* system disk; 0: the base's virtual size */
        const char *data_disks_json;   /* JSON array of sizes in bytes, or NULL */
        const char *firmware;          /* "bios" */
        const char *domain_type;       /* "auto" (NULL), "kvm" or "qemu" (TCG) */
        const char *network;           /* may be NULL: no NIC */
        int64_t base_item_id;
        const char *hostname_pattern;  /* may be NULL: "{name}" */
        const char *admin_user;        /* may be NULL */
        const char *ssh_keys_json;     /* JSON array of strings, or NULL */
        const char *timezone;          /* may be NULL */
        const char *user_data;         /* may be NULL */
        int64_t points;
        int64_t iso_item_id;           /* an ISO item its VMs get in a CD-ROM drive; 0: none */
} StoreTemplate;
int store_template_insert(Store *st, const StoreTemplate *t, int64_t *ret_id);
int store_template_find(Store *st, const char *name, int64_t *ret_id);
/* -ENOTEMPTY while VMs deployed from it still exist is NOT enforced: VMs
 * keep running and forget their template (SET NULL). */
int store_template_delete(Store *st, int64_t id);
int store_template_list(Store *st, json_t **ret);
/* With the base item's path fields (base_path, base_format,
 * base_virtual_size, base_kind) joined in, and the ISO's (iso_item_id,
 * iso_path, iso_rel_path, iso_share_path, iso_size, iso_checksum; null
 * when the template names none or its item is gone). */
int store_template_get_json(Store *st, int64_t id, json_t **ret);

/* ---- grants ---- */
typedef struct {
        int64_t user_id;
        int64_t group_id;
        int64_t points, max_vms, max_cpus, max_memory_mib;   /* -1: unlimited */
        const char *actions;                                  /* comma list */
} StoreGrant;
/* Inserts the grant and its templates in one transaction. */
int store_grant_insert(Store *st, const StoreGrant *g, const int64_t *template_ids, size_t n, int64_t *ret_id);
int store_grant_delete(Store *st, int64_t id);
/* Every grant (user_id 0) or one user's, each with its templates and what
 * its VMs use now (used_points, used_vms, used_cpus, used_memory_mib). */
int store_grant_list(Store *st, int64_t user_id, json_t **ret);
int store_grant_get_json(Store *st, int64_t id, json_t **ret);
/* The grants of user_id that include template_id, oldest first. */
int store_grants_for(Store *st, int64_t user_id, int64_t template_id, json_t **ret);

/* ---- deployed VMs ---- */
int store_vm_template_set(Store *st, int64_t vm_id, int64_t template_id, int64_t grant_id, int64_t points);
/* The grant a VM was deployed under: 0 and *ret_grant_id (0 when none). */
int store_vm_grant(Store *st, int64_t vm_id, int64_t *ret_grant_id);
