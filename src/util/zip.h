/* Deflate in one call: the gzip answers of the lists, /health and /metrics. */
#pragma once

#include <stddef.h>
#include <zlib.h>

/* in compressed at level 1 (megabytes of JSON and text that compress well
 * even so; the CPU goes to the next request). window_bits 15 + 16: a gzip
 * member (RFC 1952); -15: raw deflate. flush Z_FINISH: a whole stream;
 * Z_SYNC_FLUSH: no final block, so more may be appended. 0 and *ret
 * (malloc'd), or -EIO. */
int zip_deflate(const char *in, size_t n, int window_bits, int flush, char **ret, size_t *ret_len);
