/* Small helpers that know nothing of Armada: logging, growable strings,
 * name validation, time, uuids, random bytes, hex, size parsing, JSON access. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <time.h>
#include <jansson.h>
#include "cleanup.h"

/* ---- logging (the one global besides the configuration) ---- */
typedef enum { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR } LogLevel;
void log_set_level(LogLevel level);
void log_msg(LogLevel level, const char *fmt, ...) _printf_(2, 3);
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

/* ---- allocation: abort on out-of-memory, as there is no sane recovery ---- */
void *xmalloc(size_t n);
/* n bytes at an address that is a multiple of align (a power of two, a
 * multiple of sizeof(void *)); free() releases them. */
void *xmalloc_aligned(size_t align, size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) _printf_(1, 2);

/* ---- StrBuf: a growable NUL-terminated string ---- */
typedef struct {
        char *s;
        size_t len, cap;
} StrBuf;
void strbuf_append(StrBuf *b, const char *s);
void strbuf_appendn(StrBuf *b, const char *s, size_t n);
void strbuf_printf(StrBuf *b, const char *fmt, ...) _printf_(2, 3);
/* Returns the string (caller frees) and resets the buffer. Never NULL. */
char *strbuf_steal(StrBuf *b);
void strbuf_free(StrBuf *b);

/* ---- names ---- */
/* True when s matches [A-Za-z0-9][A-Za-z0-9._-]{0,62}: the rule for every
 * object name (VMs, hosts, groups' segments, users, templates). */
bool name_is_valid(const char *s);
/* Explains why s is not a valid name, as a sentence fragment suitable after
 * "'<field>' ". Returns NULL when s is valid. Static string. */
const char *name_invalid_reason(const char *s);

/* ---- time ---- */
int64_t now_ms(void);          /* wall clock, ms since the epoch */
int64_t mono_ms(void);         /* monotonic, ms */
/* The time on clock (CLOCK_MONOTONIC, CLOCK_REALTIME) ms milliseconds from
 * now, as pthread_cond_timedwait wants it. */
struct timespec time_after_ms(int clock, int64_t ms);
/* Formats ms-since-epoch as RFC 3339 UTC ("2026-11-26T10:00:00.123Z"). */
void time_format(int64_t ms, char out[32]);

/* ---- FNV-1a: a fast 64-bit digest for ETags and change detection (not
 * for security) ---- */
#define FNV1A_INIT 0xcbf29ce484222325ULL
uint64_t fnv1a(uint64_t h, const void *p, size_t n);
/* s with its NUL; NULL hashes differently from "". */
uint64_t fnv1a_str(uint64_t h, const char *s);
uint64_t fnv1a_i64(uint64_t h, int64_t v);

/* ---- random, uuid, hex ---- */
/* Fills buf from the kernel's CSPRNG. Returns 0 or -errno. */
int random_bytes(void *buf, size_t n) _warn_unused_result_;
/* Writes a random (v4) UUID in canonical form into out (37 bytes). */
void uuid_generate(char out[37]);
bool uuid_is_valid(const char *s);
void hex_encode(const unsigned char *in, size_t n, char *out /* 2n+1 */);

/* ---- sizes ---- */
/* Parses "512", "512M", "1G", "1.5G", "20GiB", "1T" (binary units; a bare
 * number is in default_unit bytes). Returns 0 and *ret_bytes, or -EINVAL,
 * -ERANGE. */
int size_parse(const char *s, uint64_t default_unit, uint64_t *ret_bytes) _warn_unused_result_;

/* ---- strings ---- */
bool str_is_digits(const char *s);
/* Parses a non-negative decimal int64 without sign/space; -EINVAL/-ERANGE. */
int parse_i64(const char *s, int64_t *ret) _warn_unused_result_;

/* ---- files ---- */
/* Reads a whole file (NUL-terminated). Returns 0 or -errno. */
int file_read_all(const char *path, char **ret, size_t *ret_len) _warn_unused_result_;
/* Writes data atomically (tmp + rename) with the given mode. 0 or -errno. */
int file_write_atomic(const char *path, const char *data, size_t len, int mode) _warn_unused_result_;
/* mkdir -p. 0 or -errno. */
int mkdir_p(const char *path, int mode) _warn_unused_result_;
/* Makes path a private directory for temporary files and empties it:
 * creates it (mode 0700) when missing, refuses anything but a directory
 * of this user (a symbolic link included: -ENOTDIR, -EPERM), sets mode 0700
 * and removes everything inside it without following symbolic links.
 * Returns the number of entries removed from the top level, or -errno. */
int dir_private_clear(const char *path) _warn_unused_result_;

/* ---- paths ---- */
/* Checks a directory path that something will create and fill (a storage
 * pool) and returns it normalised: absolute; "//" and "/./" folded, a
 * trailing '/' dropped; no ".." segment; no control characters; and not
 * "/" itself nor inside a system directory: /etc, /usr, /boot, /proc,
 * /sys, /dev, and /bin, /sbin, /lib, /lib32, /lib64, /libx32 (aliases of
 * /usr on merged-/usr systems). The check is on the text only: a symbolic
 * link is not followed (the path is often on another machine). Returns 0
 * and a malloc'd normalised path in *ret, or -EINVAL and, in why (may be
 * NULL), a clause such as "is inside the system directory '/etc'" that
 * follows the path in a sentence; *ret is untouched then. */
int path_outside_system_normalize(const char *path, char **ret, char *why, size_t why_size) _warn_unused_result_;

/* ---- small JSON readers (jansson) ---- */
/* o[k] as an integer; 0 when absent or not an integer. */
int64_t jget_int(const json_t *o, const char *k);
/* o[k] as a string; "" (never NULL) when absent or not a string. */
const char *jget_str(const json_t *o, const char *k);

/* Whether word is one of the comma-separated items of csv ("a,b,c");
 * false for a NULL csv or an empty word. */
bool csv_has(const char *csv, const char *word);

/* Whether addr (an IP address or host name as a user typed it) is this
 * machine's loopback: 127.0.0.0/8, ::1 (bare or in brackets) or "localhost". */
bool addr_is_loopback(const char *addr);
