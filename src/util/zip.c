/* Implementation of zip.h. */
#include "zip.h"

#include <errno.h>
#include <stdlib.h>
#include "util.h"

int zip_deflate(const char *in, size_t n, int window_bits, int flush, char **ret, size_t *ret_len) {
        z_stream z = {0};
        if (deflateInit2(&z, 1, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                return -EIO;
        size_t cap = deflateBound(&z, (uLong) n) + 16;  /* + 16: the sync flush's empty block */
        char *out = xmalloc(cap);
        z.next_in = (Bytef *) in;
        z.avail_in = (uInt) n;
        z.next_out = (Bytef *) out;
        z.avail_out = (uInt) cap;
        int rc = deflate(&z, flush);
        size_t len = z.total_out;
        deflateEnd(&z);
        if (rc != (flush == Z_FINISH ? Z_STREAM_END : Z_OK)) {
                free(out);
                return -EIO;
        }
        *ret = out;
        *ret_len = len;
        return 0;
}
