/* Scope-bound cleanup: attributes that release memory and handles on every
 * path out of a block, in the style of systemd's _cleanup_. Every destructor
 * used here accepts NULL. */
#pragma once

#include <stdlib.h>
#include <unistd.h>
#include <stdio.h>
#include <jansson.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _warn_unused_result_ __attribute__((warn_unused_result))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

static inline void freep(void *p) { free(*(void **) p); }
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd) { if (*fd >= 0) close(*fd); }
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f) { if (*f) fclose(*f); }
#define _cleanup_fclose_ _cleanup_(fclosep)

#define _cleanup_json_ _cleanup_(json_decrefp) /* json_decrefp comes from jansson.h */

/* Hands ownership on: returns the pointer and leaves NULL behind. */
#define steal_ptr(p) ({ __typeof__(p) *_pp = &(p); __typeof__(p) _v = *_pp; *_pp = NULL; _v; })

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
#define streq(a, b) (strcmp((a), (b)) == 0)
