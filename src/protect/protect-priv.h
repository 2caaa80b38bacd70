/* Internals shared by src/protect's own files (datastores, backups,
 * snapshots) and its unit tests. */
#pragma once

#ifndef PROTECT_PRIV_ALLOW
#error "protect-priv.h is for src/protect's own files only (their meson target defines PROTECT_PRIV_ALLOW)"
#endif

#include <time.h>
#include "protect/chunkstore.h"
#include "protect/protect.h"

/* --- Datastores --- */

/* Opens datastore id's chunk store: 0, -ENOENT (no such datastore), or the
 * chunk store's error. */
int protect_datastore_open(Store *st, int64_t id, ChunkStore **ret);
/* Recomputes datastore id's usage (chunkstore_usage(), a walk of its
 * chunks) into its row: for the end of every job that changes it (a backup
 * too). 0 or negative. */
int protect_datastore_usage_refresh(Store *st, int64_t id, ChunkStore *s);
/* The start of the oldest backup still running (its chunks are not named
 * by a committed point yet, so the GC must keep what is newer), or 0 when
 * none runs. The backups part defines it; until then, 0. */
time_t protect_oldest_running_backup(Store *st);
/* Parses a point id "YYYYMMDDTHHMMSSZ" (UTC): 0 and *ret, or -EINVAL. */
int protect_point_time(const char *point_id, time_t *ret);
/* Calls the alert hook (protect_on_alert()), if any. */
void protect_alert(int64_t datastore_id, const char *name, bool open, const char *message);
