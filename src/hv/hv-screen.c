/* hv-screen: screenshots and VNC addresses of running domains, and the pure
 * image code that turns a screenshot into a thumbnail. The web console asks
 * for many small pictures every few seconds, so the scaling averages pixels
 * (a thumbnail of a text console stays readable as a texture, not noise) and
 * the PNG is written with libpng's simplified API. */
#include "hv-screen.h"
#include "hv-internal.h"
#include "hv-cleanup.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <png.h>

#define IMAGE_SIDE_MAX 16384u

/* Records the failure and maps libvirt's code as hv.c does. */
static int fail(const char *what, const char *uuid) {
        virErrorPtr e = virGetLastError();
        int code = e ? e->code : VIR_ERR_OK;
        hv_set_error("%s of domain '%s' failed: %s", what, uuid, e && e->message ? e->message : "libvirt gave no reason");
        switch (code) {
        case VIR_ERR_NO_DOMAIN:
                return -ENOENT;
        case VIR_ERR_OPERATION_INVALID:
                return -EBUSY;
        case VIR_ERR_NO_SUPPORT:
        case VIR_ERR_OPERATION_UNSUPPORTED:
                return -EOPNOTSUPP;
        case VIR_ERR_AUTH_FAILED:
        case VIR_ERR_OPERATION_DENIED:
        case VIR_ERR_ACCESS_DENIED:
                return -EACCES;
        default:
                return -EIO;
        }
}

static int lookup(HvConn *c, const char *uuid, const char *what, virDomainPtr *ret) {
        if (!c || !uuid || !uuid_is_valid(uuid)) {
                hv_set_error("%s: '%s' is not a UUID", what, uuid ? uuid : "");
                return -EINVAL;
        }
        virDomainPtr d = virDomainLookupByUUIDString(hv_conn_virt(c), uuid);
        if (!d)
                return fail(what, uuid);
        *ret = d;
        return 0;
}

static int require_running(virDomainPtr d, const char *what, const char *uuid) {
        int active = virDomainIsActive(d);
        if (active < 0)
                return fail(what, uuid);
        if (active == 0) {
                hv_set_error("%s of domain '%s' is not possible: it is not running", what, uuid);
                return -EBUSY;
        }
        return 0;
}

static int domain_screenshot_now(HvConn *c, const char *uuid, char **ret_data, size_t *ret_len) {
        HV_LEASE(c);
        _cleanup_domain_ virDomainPtr d = NULL;
        int r = lookup(c, uuid, "a screenshot", &d);
        if (r < 0)
                return r;
        r = require_running(d, "a screenshot", uuid);
        if (r < 0)
                return r;
        _cleanup_stream_ virStreamPtr st = virStreamNew(hv_conn_virt(c), 0);
        if (!st)
                return fail("a screenshot", uuid);
        _cleanup_free_ char *mime = virDomainScreenshot(d, st, 0, 0);
        if (!mime)
                return fail("a screenshot", uuid);
        size_t cap = 1 << 16, len = 0;
        _cleanup_free_ char *buf = xmalloc(cap);
        for (;;) {
                if (len == cap) {
                        if (cap >= HV_SCREENSHOT_MAX_BYTES) {
                                (void) virStreamAbort(st);
                                hv_set_error("the screenshot of domain '%s' is larger than %u MiB", uuid,
                                             HV_SCREENSHOT_MAX_BYTES >> 20);
                                return -EFBIG;
                        }
                        cap *= 2;
                        buf = xrealloc(buf, cap);
                }
                int n = virStreamRecv(st, buf + len, cap - len);
                if (n < 0) {
                        r = fail("reading the screenshot", uuid);
                        (void) virStreamAbort(st);
                        return r;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        if (virStreamFinish(st) < 0)
                return fail("finishing the screenshot", uuid);
        *ret_data = steal_ptr(buf);
        *ret_len = len;
        return 0;
}

static int domain_screenshot_body(HvConn *c, HvCall *a) {
        return domain_screenshot_now(c, a->s[0], &a->ret.str, &a->ret_n);
}

int hv_domain_screenshot(HvConn *c, const char *uuid, char **ret_data, size_t *ret_len) {
        return HV_CALL_TAKE(c, hv_call_new(domain_screenshot_body, "taking a screenshot", uuid, NULL, NULL, NULL), hv_deadlines.query_ms, ret_data, ret_len);
}

/* ---- images (pure) ---- */

void hv_image_clear(HvImage *img) {
        if (!img)
                return;
        free(img->rgb);
        *img = (HvImage) {0};
}

/* Reads one header number of a PPM, skipping white space and comments. */
static bool ppm_number(const uint8_t *p, size_t len, size_t *pos, unsigned *ret) {
        for (;;) {
                while (*pos < len && (p[*pos] == ' ' || p[*pos] == '\t' || p[*pos] == '\n' || p[*pos] == '\r'))
                        (*pos)++;
                if (*pos < len && p[*pos] == '#') {
                        while (*pos < len && p[*pos] != '\n')
                                (*pos)++;
                        continue;
                }
                break;
        }
        unsigned v = 0;
        size_t start = *pos;
        while (*pos < len && p[*pos] >= '0' && p[*pos] <= '9') {
                v = v * 10 + (unsigned) (p[*pos] - '0');
                if (v > 1000000)
                        return false;
                (*pos)++;
        }
        if (*pos == start)
                return false;
        *ret = v;
        return true;
}

static int decode_ppm(const uint8_t *p, size_t len, HvImage *ret) {
        size_t pos = 2;
        unsigned w, h, maxval;
        if (!ppm_number(p, len, &pos, &w) || !ppm_number(p, len, &pos, &h) || !ppm_number(p, len, &pos, &maxval) ||
            pos >= len || maxval == 0 || maxval > 255) {
                hv_set_error("the screenshot is not a PPM picture hv can read (only 8-bit binary P6)");
                return -EINVAL;
        }
        pos++; /* the single white-space character before the pixels */
        if (w == 0 || h == 0 || w > IMAGE_SIDE_MAX || h > IMAGE_SIDE_MAX) {
                hv_set_error("the screenshot is %u x %u pixels, outside 1..%u a side", w, h, IMAGE_SIDE_MAX);
                return -EINVAL;
        }
        size_t n = (size_t) w * h * 3;
        if (len - pos < n) {
                hv_set_error("the PPM screenshot is truncated: %zu of %zu pixel bytes", len - pos, n);
                return -EINVAL;
        }
        uint8_t *rgb = xmalloc(n);
        if (maxval == 255)
                memcpy(rgb, p + pos, n);
        else
                for (size_t i = 0; i < n; i++)
                        rgb[i] = (uint8_t) ((p[pos + i] > maxval ? maxval : p[pos + i]) * 255u / maxval);
        *ret = (HvImage) { .width = w, .height = h, .rgb = rgb };
        return 0;
}

static int decode_png(const uint8_t *p, size_t len, HvImage *ret) {
        png_image img = { .version = PNG_IMAGE_VERSION };
        if (!png_image_begin_read_from_memory(&img, p, len)) {
                hv_set_error("the screenshot is not a PNG picture hv can read: %s", img.message);
                return -EINVAL;
        }
        if (img.width == 0 || img.height == 0 || img.width > IMAGE_SIDE_MAX || img.height > IMAGE_SIDE_MAX) {
                hv_set_error("the screenshot is %u x %u pixels, outside 1..%u a side", img.width, img.height, IMAGE_SIDE_MAX);
                png_image_free(&img);
                return -EINVAL;
        }
        img.format = PNG_FORMAT_RGB;
        png_color black = { 0, 0, 0 };
        uint8_t *rgb = xmalloc(PNG_IMAGE_SIZE(img));
        if (!png_image_finish_read(&img, &black, rgb, 0, NULL)) {
                hv_set_error("the PNG screenshot cannot be decoded: %s", img.message);
                free(rgb);
                png_image_free(&img);
                return -EINVAL;
        }
        *ret = (HvImage) { .width = img.width, .height = img.height, .rgb = rgb };
        return 0;
}

int hv_image_decode(const void *data, size_t len, HvImage *ret) {
        const uint8_t *p = data;
        if (p && len > 8 && png_sig_cmp(p, 0, 8) == 0)
                return decode_png(p, len, ret);
        if (p && len > 2 && p[0] == 'P' && p[1] == '6')
                return decode_ppm(p, len, ret);
        hv_set_error("the screenshot is neither a PNG nor a binary PPM picture");
        return -EINVAL;
}

int hv_image_scale(const HvImage *src, unsigned width, HvImage *ret) {
        if (!src || !src->rgb || src->width == 0 || src->height == 0 || width == 0 || width > IMAGE_SIDE_MAX) {
                hv_set_error("cannot scale an empty picture or to %u pixels wide", width);
                return -EINVAL;
        }
        unsigned height = (unsigned) (((uint64_t) src->height * width + src->width / 2) / src->width);
        if (height == 0)
                height = 1;
        if (height > IMAGE_SIDE_MAX)
                height = IMAGE_SIDE_MAX;
        uint8_t *out = xmalloc((size_t) width * height * 3);
        for (unsigned y = 0; y < height; y++) {
                unsigned y0 = (unsigned) ((uint64_t) y * src->height / height);
                unsigned y1 = (unsigned) ((uint64_t) (y + 1) * src->height / height);
                if (y1 <= y0) y1 = y0 + 1;
                for (unsigned x = 0; x < width; x++) {
                        unsigned x0 = (unsigned) ((uint64_t) x * src->width / width);
                        unsigned x1 = (unsigned) ((uint64_t) (x + 1) * src->width / width);
                        if (x1 <= x0) x1 = x0 + 1;
                        uint64_t sum[3] = { 0, 0, 0 };
                        for (unsigned sy = y0; sy < y1; sy++) {
                                const uint8_t *row = src->rgb + ((size_t) sy * src->width + x0) * 3;
                                for (unsigned sx = x0; sx < x1; sx++, row += 3) {
                                        sum[0] += row[0];
                                        sum[1] += row[1];
                                        sum[2] += row[2];
                                }
                        }
                        uint64_t n = (uint64_t) (y1 - y0) * (x1 - x0);
                        uint8_t *o = out + ((size_t) y * width + x) * 3;
                        for (int k = 0; k < 3; k++)
                                o[k] = (uint8_t) ((sum[k] + n / 2) / n);
                }
        }
        *ret = (HvImage) { .width = width, .height = height, .rgb = out };
        return 0;
}

int hv_image_png(const HvImage *img, char **ret_png, size_t *ret_len) {
        if (!img || !img->rgb || img->width == 0 || img->height == 0) {
                hv_set_error("cannot encode an empty picture as PNG");
                return -EINVAL;
        }
        png_image pi = { .version = PNG_IMAGE_VERSION, .width = img->width, .height = img->height, .format = PNG_FORMAT_RGB };
        png_alloc_size_t size = 0;
        if (!png_image_write_to_memory(&pi, NULL, &size, 0, img->rgb, 0, NULL)) {
                hv_set_error("cannot size the PNG: %s", pi.message);
                return -ENOMEM;
        }
        char *buf = xmalloc(size);
        if (!png_image_write_to_memory(&pi, buf, &size, 0, img->rgb, 0, NULL)) {
                hv_set_error("cannot encode the PNG: %s", pi.message);
                free(buf);
                return -ENOMEM;
        }
        *ret_png = buf;
        *ret_len = size;
        return 0;
}

/* ---- VNC ---- */

int hv_vnc_xml_parse(const char *xml, HvVnc *ret) {
        if (!xml || strlen(xml) > INT_MAX) {
                hv_set_error("cannot read the domain's graphics: there is no XML");
                return -EINVAL;
        }
        xmlDoc *doc = xmlReadMemory(xml, (int) strlen(xml), NULL, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc || doc->intSubset || !xmlDocGetRootElement(doc)) {
                if (doc)
                        xmlFreeDoc(doc);
                hv_set_error("cannot read the domain's graphics: its XML is not well-formed");
                return -EINVAL;
        }
        int r = -ENOENT;
        HvVnc v = { .port = -1 };
        xmlNode *root = xmlDocGetRootElement(doc);
        for (xmlNode *dev = root->children; dev && r == -ENOENT; dev = dev->next) {
                if (dev->type != XML_ELEMENT_NODE || !xmlStrEqual(dev->name, BAD_CAST "devices"))
                        continue;
                for (xmlNode *g = dev->children; g; g = g->next) {
                        if (g->type != XML_ELEMENT_NODE || !xmlStrEqual(g->name, BAD_CAST "graphics"))
                                continue;
                        xmlChar *type = xmlGetProp(g, BAD_CAST "type");
                        bool vnc = type && xmlStrEqual(type, BAD_CAST "vnc");
                        xmlFree(type);
                        if (!vnc)
                                continue;
                        xmlChar *passwd = xmlGetProp(g, BAD_CAST "passwd");
                        if (passwd && strlen((const char *) passwd) < sizeof v.password)
                                snprintf(v.password, sizeof v.password, "%s", (const char *) passwd);
                        xmlFree(passwd);
                        xmlChar *port = xmlGetProp(g, BAD_CAST "port");
                        xmlChar *listen = xmlGetProp(g, BAD_CAST "listen");
                        int64_t p;
                        if (port && parse_i64((const char *) port, &p) == 0 && p > 0 && p < 65536)
                                v.port = (int) p;
                        if (!listen) /* <listen type='address' address=.../> */
                                for (xmlNode *l = g->children; l && !listen; l = l->next)
                                        if (l->type == XML_ELEMENT_NODE && xmlStrEqual(l->name, BAD_CAST "listen"))
                                                listen = xmlGetProp(l, BAD_CAST "address");
                        if (listen && strlen((const char *) listen) < sizeof v.listen)
                                snprintf(v.listen, sizeof v.listen, "%s", (const char *) listen);
                        xmlFree(port);
                        xmlFree(listen);
                        r = 0;
                        break;
                }
        }
        xmlFreeDoc(doc);
        if (r == 0)
                *ret = v;
        else
                hv_set_error("the domain has no VNC graphics");
        return r;
}

static int domain_vnc_now(HvConn *c, const char *uuid, HvVnc *ret) {
        HV_LEASE(c);
        _cleanup_domain_ virDomainPtr d = NULL;
        int r = lookup(c, uuid, "reading the VNC address", &d);
        if (r < 0)
                return r;
        r = require_running(d, "reading the VNC address", uuid);
        if (r < 0)
                return r;
        /* SECURE: the VNC password, which the console hands to the user. */
        _cleanup_free_ char *xml = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_SECURE);
        if (!xml)
                return fail("reading the VNC address", uuid);
        return hv_vnc_xml_parse(xml, ret);
}

static int domain_vnc_body(HvConn *c, HvCall *a) {
        return domain_vnc_now(c, a->s[0], &a->out.vnc);
}

int hv_domain_vnc(HvConn *c, const char *uuid, HvVnc *ret) {
        return hv_call_out(c, hv_call_new(domain_vnc_body, "reading a domain's console", uuid, NULL, NULL, NULL), hv_deadlines.query_ms, ret, sizeof *ret);
}
