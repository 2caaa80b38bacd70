/* api: a VM's virtual hardware — GET/PATCH /vms/{id}/hardware (vCPUs,
 * memory), /vms/{id}/disks (add, grow, remove), /vms/{id}/cd (insert a
 * library ISO, eject) and PUT /vms/{id}/boot-order. Each handler parses,
 * calls one inventory operation (inventory.h, "Hardware") and maps. */
#include "api-priv.h"
#include "inventory/inventory.h"

#include <string.h>

#define HW_CPUS_MAX 256
#define HW_MEMORY_MIN_MIB 16
#define HW_MEMORY_MAX_MIB (4LL << 20)       /* 4 TiB */
#define HW_DISK_MIN_BYTES (1LL << 20)
#define HW_DISK_MAX_BYTES (64LL << 40)      /* 64 TiB */

static void h_vm_hardware_get(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_vm_hardware_get(r->api->inv, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 200, out);
}

/* PATCH /vms/{id}/hardware: {"cpus", "max_cpus", "memory_mib", "max_memory_mib"}, at least one. */
static void h_vm_hardware_set(Req *r) {
        static const char *const fields[] = { "cpus", "max_cpus", "memory_mib", "max_memory_mib", NULL };
        InventoryHardwareSpec spec = {0};
        if (!req_body_fields(r, fields) || !body_int(r, "cpus", false, 1, HW_CPUS_MAX, &spec.cpus) ||
            !body_int(r, "max_cpus", false, 1, HW_CPUS_MAX, &spec.max_cpus) ||
            !body_int(r, "memory_mib", false, HW_MEMORY_MIN_MIB, HW_MEMORY_MAX_MIB, &spec.memory_mib) ||
            !body_int(r, "max_memory_mib", false, HW_MEMORY_MIN_MIB, HW_MEMORY_MAX_MIB, &spec.max_memory_mib))
                return;
        if (!spec.cpus && !spec.max_cpus && !spec.memory_mib && !spec.max_memory_mib)
                return reply_error(r, 400, "invalid_argument", NULL, "Give 'cpus', 'max_cpus', 'memory_mib' or 'max_memory_mib'.");
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_vm_hardware_set(r->api->inv, &c, r->id[0], &spec, &out, &err);
        reply_result(r, e, &err, 200, out);
}

/* A disk size: "size" ("20G"; a bare number is GiB) or "size_bytes"
 * (exactly one, required), within bounds. false with a 4xx sent. */
static bool body_disk_size(Req *r, uint64_t *ret) {
        const char *size = NULL;
        int64_t bytes = 0;
        if (!body_string(r, "size", false, 32, &size) ||
            !body_int(r, "size_bytes", false, HW_DISK_MIN_BYTES, HW_DISK_MAX_BYTES, &bytes))
                return false;
        if (size && bytes) {
                reply_error(r, 400, "invalid_argument", "size", "Give either 'size' or 'size_bytes', not both.");
                return false;
        }
        if (!size && !bytes) {
                reply_error(r, 400, "invalid_argument", "size", "Field 'size' is required (a size such as 512M, 20G or 1T).");
                return false;
        }
        if (bytes) {
                *ret = (uint64_t) bytes;
                return true;
        }
        uint64_t b;
        if (size_parse(size, 1ULL << 30, &b) < 0) {
                reply_error(r, 400, "invalid_argument", "size", "Field 'size' (\"%s\") must be a size such as 512M, 20G or 1T.", size);
                return false;
        }
        if (b < (uint64_t) HW_DISK_MIN_BYTES || b > (uint64_t) HW_DISK_MAX_BYTES) {
                reply_error(r, 422, "out_of_range", "size", "Field 'size' must be from 1M to 64T; %s was given.", size);
                return false;
        }
        *ret = b;
        return true;
}

/* POST /vms/{id}/disks: {"size" | "size_bytes", "bus"}. */
static void h_vm_disk_add(Req *r) {
        static const char *const fields[] = { "size", "size_bytes", "bus", NULL };
        InventoryDiskSpec spec = {0};
        if (!req_body_fields(r, fields) || !body_disk_size(r, &spec.size_bytes) || !body_string(r, "bus", false, 16, &spec.bus))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_vm_disk_add(r->api->inv, &c, r->id[0], &spec, &out, &err);
        reply_result(r, e, &err, 201, out);
}

/* PATCH /vms/{id}/disks/{target}: {"size" | "size_bytes"} (grow only). */
static void h_vm_disk_resize(Req *r) {
        static const char *const fields[] = { "size", "size_bytes", NULL };
        uint64_t bytes;
        if (!req_body_fields(r, fields) || !body_disk_size(r, &bytes))
                return;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_vm_disk_resize(r->api->inv, &c, r->id[0], r->word[0], bytes, &out, &err);
        reply_result(r, e, &err, 200, out);
}

/* DELETE /vms/{id}/disks/{target}?keep_volume=true. */
static void h_vm_disk_remove(Req *r) {
        const char *keep_s = req_query(r, "keep_volume");
        if (keep_s && !streq(keep_s, "true") && !streq(keep_s, "false") && !streq(keep_s, "1") && !streq(keep_s, "0"))
                return reply_error(r, 400, "invalid_argument", "keep_volume", "Query 'keep_volume' must be true or false.");
        bool keep = keep_s && (streq(keep_s, "true") || streq(keep_s, "1"));
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_vm_disk_remove(r->api->inv, &c, r->id[0], r->word[0], keep, &out, &err);
        reply_result(r, e, &err, 200, out);
}

/* POST /vms/{id}/cd: {"iso": ID | "NAME"}. */
static void h_vm_cd_insert(Req *r) {
        static const char *const fields[] = { "iso", NULL };
        if (!req_body_fields(r, fields))
                return;
        json_t *v = r->json ? json_object_get(r->json, "iso") : NULL;
        char idbuf[24];
        const char *iso = NULL;
        if (json_is_integer(v) && json_integer_value(v) > 0) {
                snprintf(idbuf, sizeof idbuf, "%lld", (long long) json_integer_value(v));
                iso = idbuf;
        } else if (!body_string(r, "iso", true, 1024, &iso))
                return;
        if (!*iso)
                return reply_error(r, 400, "invalid_argument", "iso", "Field 'iso' must name a library ISO.");
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_vm_cd_insert(r->api->inv, &c, r->id[0], iso, &out, &err);
        reply_result(r, e, &err, 202, out);
}

static void h_vm_cd_eject(Req *r) {
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_vm_cd_eject(r->api->inv, &c, r->id[0], &out, &err);
        reply_result(r, e, &err, 200, out);
}

/* PUT /vms/{id}/boot-order: {"order": ["cd", "disk"]}. */
static void h_vm_boot_order(Req *r) {
        static const char *const fields[] = { "order", NULL };
        if (!req_body_fields(r, fields))
                return;
        json_t *order = r->json ? json_object_get(r->json, "order") : NULL;
        if (!json_is_array(order))
                return reply_error(r, 400, "invalid_argument", "order", "Field 'order' must be a list such as [\"cd\", \"disk\"].");
        const char *words[4];
        size_t n = json_array_size(order);
        if (n == 0 || n > 3)
                return reply_error(r, 400, "invalid_argument", "order", "Field 'order' names one to three boot devices (cd, disk, network).");
        for (size_t i = 0; i < n; i++) {
                words[i] = json_string_value(json_array_get(order, i));
                if (!words[i])
                        return reply_error(r, 400, "invalid_argument", "order", "Field 'order' must hold device names (cd, disk, network).");
        }
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *out = NULL;
        int e = inventory_vm_boot_order(r->api->inv, &c, r->id[0], words, n, &out, &err);
        reply_result(r, e, &err, 200, out);
}

const Route api_routes_hardware[] = {
        { "GET", "/api/v1/vms/#/hardware", h_vm_hardware_get, false },
        { "PATCH", "/api/v1/vms/#/hardware", h_vm_hardware_set, false },
        { "POST", "/api/v1/vms/#/disks", h_vm_disk_add, false },
        { "PATCH", "/api/v1/vms/#/disks/*", h_vm_disk_resize, false },
        { "DELETE", "/api/v1/vms/#/disks/*", h_vm_disk_remove, false },
        { "POST", "/api/v1/vms/#/cd", h_vm_cd_insert, false },
        { "DELETE", "/api/v1/vms/#/cd", h_vm_cd_eject, false },
        { "PUT", "/api/v1/vms/#/boot-order", h_vm_boot_order, false },
        { NULL, NULL, NULL, false },
};
