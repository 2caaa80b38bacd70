/* model: the in-memory read model of hosts, VMs and host groups, so that
 * lists (and health, metrics) read memory, not SQLite.
 *
 * The store stays the truth; the model is a cache with ONE writer path:
 * the store's rows hook (store_set_rows_hook) names the host_group, host
 * and vm rows a commit changed, and the model re-reads only those rows (and
 * the rows whose JSON shows them: a VM's host name and group, a host's
 * group path and VM count), builds new tables that share every unchanged
 * row with the old ones, and swaps them in. It is loaded whole at
 * model_new().
 *
 * Readers take a snapshot (model_snap): an immutable, refcounted set of
 * tables, taken under a mutex held only for a pointer copy and a refcount.
 * A reader never waits for the writer's SQLite reads, and a long reader (a
 * 20,000-VM list being written out) never holds up the writer.
 *
 * Layering: model builds on store and util. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "store/store.h"

typedef struct Model Model;

/* One host or VM, as the lists show it. Immutable once in a table: read,
 * never change (rows are shared between snapshots and threads). */
typedef struct ModelRow {
        int refs;                 /* the model's */
        int64_t id;
        const char *name;
        const char *state;
        int64_t host_id;          /* a VM's host, 0 when not placed; 0 for hosts */
        int64_t group_id;         /* a host's group, a VM's host's group; 0 when none */
        int64_t owner_id;         /* a VM's owner, 0 when none; 0 for hosts */
        json_t *json;             /* exactly what store_host_list()/store_vm_list() return for the row */
        char *text;               /* json printed compact and ASCII-only, as the API prints it */
        size_t text_len;
} ModelRow;

/* The rows of one table at one moment. generation changes whenever the
 * table does (a number no other table of the model has had). */
typedef struct ModelTable {
        int refs;
        uint64_t generation;
        size_t n;
        ModelRow **by_id;         /* ascending id */
        ModelRow **by_name;       /* ascending name (bytes, as SQLite's ORDER BY name): the lists' order */
} ModelTable;

/* Every host group as (id, parent id; 0 for the root), ascending id. */
typedef struct ModelGroups {
        int refs;
        uint64_t generation;
        size_t n;
        int64_t *ids;
        int64_t *parents;
} ModelGroups;

/* A consistent view of all three tables. */
typedef struct ModelSnap {
        int refs;
        ModelTable *hosts;
        ModelTable *vms;
        ModelGroups *groups;
} ModelSnap;

/* Loads every host, VM and group from st and hooks the model to st's
 * changed rows (st's one rows hook). 0 and *ret, or -EIO (logged). */
int model_new(Store *st, Model **ret);
/* Unhooks from the store and frees. Call when no thread writes to the
 * store any more (the hook may be running otherwise). Accepts NULL;
 * returns NULL. Snapshots still held stay valid. */
Model *model_free(Model *m);
/* Loads every row again and swaps the tables in: for a reader whose rows
 * hook cannot hear other processes' commits (a standby manager on SQLite,
 * see manager.h). 0, or -errno with the old tables kept. */
int model_reload(Model *m);

/* The current snapshot: a new reference; never NULL. */
ModelSnap *model_snap(Model *m);
/* Another reference to s (kept rows stay alive, so a row's address names
 * that row while it is held). Accepts NULL; returns s. */
ModelSnap *model_snap_ref(ModelSnap *s);
/* Drops a reference. Accepts NULL; returns NULL. */
ModelSnap *model_snap_unref(ModelSnap *s);
static inline void model_snap_unrefp(ModelSnap **s) { model_snap_unref(*s); }
#define _cleanup_model_snap_ __attribute__((cleanup(model_snap_unrefp)))

/* The row with id, or NULL. */
const ModelRow *model_row_find(const ModelTable *t, int64_t id);
/* The index in t->by_name of the first row whose name sorts after name
 * (bytewise); t->n when none. */
size_t model_name_after(const ModelTable *t, const char *name);
/* The index in t->by_name of the first row whose name sorts at or after
 * name (bytewise): where an exact name or a prefix starts; t->n when none. */
size_t model_name_from(const ModelTable *t, const char *name);
/* The group chain of group_id as store_group_chain() gives it: the group,
 * then its ancestors up to the root, at most max ids. The count; 0 when
 * group_id names no group. */
size_t model_group_chain(const ModelSnap *s, int64_t group_id, int64_t *chain, size_t max);

/* How many rows of t are in each state: calls fn once per state (in name
 * order of the states), with its count. */
void model_count_states(const ModelTable *t, void (*fn)(void *userdata, const char *state, size_t n), void *userdata);

/* For tests and /metrics: changes applied and rows re-read since the start. */
typedef struct {
        uint64_t batches;         /* row-change batches the store delivered */
        uint64_t rows_read;       /* rows re-read from the store for them */
} ModelStats;
void model_stats(Model *m, ModelStats *ret);
