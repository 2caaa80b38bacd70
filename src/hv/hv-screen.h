/* hv-screen: what a VM shows on its screen. Takes screenshots through
 * libvirt (virDomainScreenshot: QEMU sends a PPM, or a PNG when it can; the
 * test driver a PNG), turns them into small PNG thumbnails (pure code:
 * decode, area-average scale, encode), and finds where a running domain's
 * VNC server listens, for the web console's proxy.
 *
 * Errors follow hv.h: 0 or a negative errno-style code, with a sentence in
 * hv_last_error(). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hv.h"

/* An 8-bit RGB picture, rows top to bottom, 3 bytes a pixel, no padding. */
typedef struct {
        unsigned width, height;
        uint8_t *rgb;           /* malloc'd, width * height * 3 bytes */
} HvImage;

/* Frees img->rgb and zeroes *img. Accepts NULL. */
void hv_image_clear(HvImage *img);

/* The largest screenshot hv accepts from a host (a 4K screen as PPM is
 * about 25 MB). */
#define HV_SCREENSHOT_MAX_BYTES (64u << 20)

/* Takes a screenshot of screen 0 of the domain with this UUID. Returns 0
 * with the image as the driver sent it in *ret_data (malloc'd, caller frees)
 * and its length in *ret_len; -ENOENT when there is no such domain, -EBUSY
 * when it is not running, -EOPNOTSUPP when the driver cannot take
 * screenshots, -EFBIG when the image is larger than HV_SCREENSHOT_MAX_BYTES,
 * or negative. Blocks while the host sends the picture (libvirt's keepalive
 * bounds that on a dead connection). Outputs are untouched on failure. */
int hv_domain_screenshot(HvConn *c, const char *uuid, char **ret_data, size_t *ret_len);

/* Decodes a binary PPM (P6, maxval 1..255) or a PNG (any colour type,
 * flattened to RGB on black). Pure. 0 and *ret (caller clears), or -EINVAL
 * (not a picture it knows, truncated, or larger than 16384 pixels a side);
 * *ret untouched on failure. */
int hv_image_decode(const void *data, size_t len, HvImage *ret);

/* Scales src to width pixels wide (height keeps the aspect ratio, at least 1)
 * by averaging the source pixels each target pixel covers; enlarging copies
 * the nearest pixel. Pure. 0 and *ret (caller clears), -EINVAL when width is
 * 0 or above 16384 or src is empty. */
int hv_image_scale(const HvImage *src, unsigned width, HvImage *ret);

/* Encodes img as an 8-bit RGB PNG. Pure. 0 and a malloc'd *ret_png of
 * *ret_len bytes, or -EINVAL (empty image) / -ENOMEM. */
int hv_image_png(const HvImage *img, char **ret_png, size_t *ret_len);

/* Where a running domain's VNC server listens. */
typedef struct {
        char listen[64];        /* address from <graphics listen=...>, "" when not given */
        int port;               /* TCP port; -1 when autoport has not assigned one */
        char password[64];      /* the VNC password, "" when there is none */
} HvVnc;

/* Reads the first <graphics type='vnc'> of the domain's live XML. 0 and
 * *ret, -ENOENT when there is no such domain or it has no VNC graphics,
 * -EBUSY when it is not running, or negative. */
int hv_domain_vnc(HvConn *c, const char *uuid, HvVnc *ret);

/* The VNC part of domain XML, pure (what hv_domain_vnc parses). 0, or
 * -ENOENT (no VNC graphics) / -EINVAL (not well-formed). */
int hv_vnc_xml_parse(const char *xml, HvVnc *ret);
