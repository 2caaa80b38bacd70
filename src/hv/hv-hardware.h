/* hv-hardware: changing a defined domain's virtual hardware — vCPUs,
 * memory, disks, the CD-ROM's medium and the boot order — live where
 * libvirt and QEMU can (vCPU hotplug within the maximum, the balloon within
 * the maximum memory, disk hotplug, a media change) and otherwise in the
 * persistent definition for the next boot. Each change says which it was
 * (HvApplied). Changes to the definition of a domain that is shut off go
 * through its inactive XML (edited with libxml2, redefined), which every
 * driver supports, the test driver included; user text (paths) reaches
 * the XML only through libxml2's attribute setter. Errors as in hv.h
 * (hv_last_error()). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include "hv.h"

typedef enum {
        HV_APPLIED_NONE = 0,        /* the field did not change */
        HV_APPLIED_LIVE,            /* the running guest has it now (and its next boot) */
        HV_APPLIED_NEXT_BOOT,       /* in the definition only: the guest gets it when it boots next */
} HvApplied;
/* "live", "next_boot", or NULL for HV_APPLIED_NONE. */
const char *hv_applied_name(HvApplied a);

/* A domain's sizes: the running guest's when it runs (else the
 * definition's), and the definition's apart. */
typedef struct {
        bool running;
        unsigned vcpus, max_vcpus;                 /* online vCPUs, hotpluggable maximum */
        uint64_t memory_mib, max_memory_mib;       /* the balloon's target, <memory> */
        unsigned config_vcpus, config_max_vcpus;
        uint64_t config_memory_mib, config_max_memory_mib;
        char boot[4][8];                           /* the definition's boot order */
        size_t n_boot;
} HvHardware;
/* Reads the sizes of the domain with uuid. 0, -ENOENT, or negative. */
int hv_domain_hardware(HvConn *c, const char *uuid, HvHardware *ret);

typedef struct {
        unsigned vcpus, max_vcpus;                 /* 0 keeps */
        uint64_t memory_mib, max_memory_mib;       /* 0 keeps */
} HvHardwareChange;
typedef struct {
        HvApplied vcpus, max_vcpus, memory, max_memory;
} HvHardwareApplied;
/* Applies chg to the domain with uuid. A running domain gets vCPUs up to
 * its live maximum and memory up to its live maximum at once (and in its
 * definition); more than that, a new maximum, and any change of a domain
 * that is shut off go to the definition (the maximum raised as far as the
 * new count needs). When a live change fails (a guest that refuses an
 * unplug, a driver without it) the definition still gets it: next boot.
 * The caller has checked chg (a count not above a maximum given with it).
 * 0 and *ret, -ENOENT, or negative (nothing changed when the first step
 * failed; a failure half-way leaves what was done, which a repeat redoes). */
int hv_domain_hardware_set(HvConn *c, const char *uuid, const HvHardwareChange *chg, HvHardwareApplied *ret);

/* The <disk> element of d: a file (format "qcow2" or "raw", "" is raw), a
 * disk or a read-only CD-ROM, its bus from its target's prefix (vd virtio,
 * sd sata, hd ide); an empty path is an empty drive. NULL with the error set
 * when the target is not vd/sd/hd plus 1-3 letters, or a CD-ROM is on vd.
 * Pure; malloc'd. */
char *hv_disk_xml_build(const HvDisk *d);
/* Edits domain XML (the definition, as VIR_DOMAIN_XML_INACTIVE gives it):
 * boot_order (at most 4 of "cdrom", "hd", "network"; n 0 keeps) replaces
 * every <os><boot>; add (may be NULL) is appended to <devices>; a disk or
 * CD-ROM of target drop (may be NULL) is removed; media (with media_target)
 * sets that drive's source file ("" empties it). Pure; malloc'd, or NULL
 * with the error set (not domain XML, no such target). */
typedef struct {
        const char *const *boot_order;
        size_t n_boot;
        const HvDisk *add;
        const char *drop;
        const char *media_target, *media;
} HvConfigEdit;
char *hv_domain_xml_edit(const char *xml, const HvConfigEdit *e);

/* Adds disk d to the domain: hotplugged and defined when it runs (next boot
 * only, when the hotplug fails: a sata or ide disk), defined otherwise.
 * 0 and *ret, -ENOENT, -EINVAL, or negative. */
int hv_domain_disk_attach(HvConn *c, const char *uuid, const HvDisk *d, HvApplied *ret);
/* Removes the disk with target from the domain: unplugged and undefined
 * when it runs (a failed unplug fails the call: the disk is still in use),
 * undefined otherwise. 0 and *ret, -ENOENT (domain or disk), or negative. */
int hv_domain_disk_detach(HvConn *c, const char *uuid, const char *target, HvApplied *ret);
/* Grows the disk with target, whose volume is at path, to bytes: through
 * the running guest's block layer (live), else the volume itself (the guest
 * sees it at its next boot). 0 and *ret, -ENOENT, or negative. */
int hv_domain_disk_resize(HvConn *c, const char *uuid, const char *target, const char *path, uint64_t bytes,
                          HvApplied *ret);
/* Puts the file path ("" or NULL: none, an eject) in the domain's CD-ROM
 * drive: a media change when it runs (and in the definition), the
 * definition otherwise. A domain without a drive gets one (hdc, ide) in
 * its definition: next boot. 0 with *ret and the drive's target in
 * ret_target, -ENOENT, or negative. */
int hv_domain_cd_set(HvConn *c, const char *uuid, const char *path, HvApplied *ret, char ret_target[16]);
/* Sets the boot order (devs: "cdrom", "hd", "network"; 1 to 4) in the
 * definition: next boot. 0, -ENOENT, -EINVAL, or negative. */
int hv_domain_boot_order(HvConn *c, const char *uuid, const char *const *devs, size_t n);
/* The boot order of domain XML into devs (up to 4 words, "hd" when it names
 * none): count, or -EINVAL. Pure. */
int hv_domain_xml_boot_order(const char *xml, char devs[4][8]);
