/* hvupload: a local file into a new volume of a real host through
 * hv_volume_upload_ranges(), for the system test of ranged uploads
 * (tests/system/test_upload_ranges_kvm.py; issues 11 and 12).
 *
 *   hvupload URI POOL VOLUME FILE STREAMS RANGE_BYTES [AFTER]
 *
 * The file is cut into ranges of RANGE_BYTES (the last one shorter), the
 * last AFTER of them (default 0) written once the others are; each range
 * reads its bytes with pread and sends every all-zero 64 KiB block as a
 * hole, as a restore does with zero clusters. STREAMS 0 lets hv choose.
 * Prints "PATH STREAMS" on success, the error on failure (exit 1). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hv/hv.h"
#include "hv/hv-volume.h"

#define BLOCK (64u << 10)

typedef struct {
        int fd;
        const HvRange *ranges;
} Src;

static bool all_zero(const unsigned char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

static int send_range(HvUpload *u, size_t i, void *userdata) {
        Src *s = userdata;
        static __thread unsigned char buf[BLOCK];
        const HvRange *rg = &s->ranges[i];
        for (uint64_t at = 0; at < rg->len;) {
                size_t n = rg->len - at < BLOCK ? (size_t) (rg->len - at) : BLOCK;
                if (pread(s->fd, buf, n, (off_t) (rg->off + at)) != (ssize_t) n)
                        return -EIO;
                int r = all_zero(buf, n) ? hv_upload_hole(u, n) : hv_upload_data(u, buf, n);
                if (r < 0)
                        return r;
                at += n;
        }
        return 0;
}

int main(int argc, char **argv) {
        if (argc < 7) {
                fprintf(stderr, "usage: hvupload URI POOL VOLUME FILE STREAMS RANGE_BYTES [AFTER]\n");
                return 2;
        }
        Src s = { .fd = open(argv[4], O_RDONLY | O_CLOEXEC) };
        struct stat sb;
        if (s.fd < 0 || fstat(s.fd, &sb) < 0 || sb.st_size == 0) {
                fprintf(stderr, "hvupload: cannot read '%s'\n", argv[4]);
                return 1;
        }
        uint64_t size = (uint64_t) sb.st_size, step = strtoull(argv[6], NULL, 10);
        if (step == 0)
                step = size;
        size_t n = (size_t) ((size + step - 1) / step);
        HvRange *ranges = calloc(n, sizeof *ranges);
        for (size_t i = 0; i < n; i++)
                ranges[i] = (HvRange) { .off = i * step, .len = size - i * step < step ? size - i * step : step };
        s.ranges = ranges;
        HvRanges plan = { .ranges = ranges, .n = n, .n_after = argc > 7 ? strtoul(argv[7], NULL, 10) : 0,
                          .source = send_range, .userdata = &s, .streams = (unsigned) strtoul(argv[5], NULL, 10) };
        HvConn *c = NULL;
        if (hv_connect(argv[1], 0, 0, NULL, NULL, &c) < 0) {
                fprintf(stderr, "hvupload: %s\n", hv_last_error());
                return 1;
        }
        char *path = NULL;
        unsigned streams = 0;
        int r = hv_volume_upload_ranges(c, argv[2], argv[3], size, HV_UPLOAD_CONTENT, &plan, &path, NULL, &streams);
        if (r < 0) {
                fprintf(stderr, "hvupload: %s\n", hv_last_error());
                hv_conn_free(c);
                free(ranges);
                return 1;
        }
        printf("%s %u\n", path, streams);
        free(path);
        free(ranges);
        close(s.fd);
        hv_conn_free(c);
        return 0;
}
