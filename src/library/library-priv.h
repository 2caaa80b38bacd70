/* What the library's operation files (library-ops.c, library-deploy.c)
 * share and nobody else needs. */
#pragma once

#ifndef LIBRARY_PRIV_ALLOW
#error "library-priv.h is for the library's own files only"
#endif

#include "library.h"

/* A job as the API shows it (store_job_get_json()), JSON null when it
 * cannot be read. */
json_t *library_job_json(Store *st, int64_t id);

/* The host group at path, which the caller may read: 0 and *ret_id, or
 * 400 (not a group path) / 422 (no such group, or not the caller's to see)
 * naming field. */
int library_group_of(Store *st, const OpCaller *c, const char *field, const char *path, int64_t *ret_id, OpError *err);

/* A grant's limits (-1 unlimited) and what its VMs use now, from its JSON
 * (store_grant_list()). */
LibraryAmounts library_grant_limit(json_t *g);
LibraryAmounts library_grant_used(json_t *g);
