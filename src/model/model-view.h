/* model-view: what the console asks of the read model on a large estate —
 * a list ordered by a column other than the name (and paged stably under
 * that order), the rows under a host group's subtree, and counts by state.
 *
 * Pure functions of a snapshot (model.h): they read, never change, and
 * know nothing of HTTP or of who asks; the caller passes what it may see
 * as a predicate, so the rules stay with the policy (auth).
 *
 * Layering: builds on model (and so on store and util). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "model/model.h"

typedef enum {
        MODEL_SORT_NAME,
        MODEL_SORT_STATE,
        MODEL_SORT_HOST,          /* a VM's host name ("" when not placed); hosts: not allowed */
        MODEL_SORT_CPUS,
        MODEL_SORT_MEMORY,        /* memory_mib */
} ModelSortKey;

typedef struct {
        ModelSortKey key;
        bool desc;
} ModelSort;

/* Parses "name", "-state", ... for a table of VMs (vms) or hosts. 0, or
 * -EINVAL when s names no column of that kind. */
int model_sort_parse(const char *s, bool vms, ModelSort *ret);
/* The text of sort as model_sort_parse() takes it ("-cpus"). Static. */
const char *model_sort_name(ModelSort sort);

/* Where a row stands in an order: the column's value (a number, or a
 * string), then the name, then the id, so that every position is unique
 * and a page can start right after one. */
typedef struct {
        int64_t num;
        const char *str;          /* NULL for number columns; points into the row or the cursor */
        const char *name;
        int64_t id;
} ModelSortPos;

/* The position of row under sort. The strings point into row. */
void model_sort_pos(const ModelRow *row, ModelSort sort, ModelSortPos *ret);
/* <0, 0, >0 as a comes before, at, after b under sort (desc reverses the
 * column, the name and the id alike: a descending page is the ascending
 * one read backwards). */
int model_sort_cmp(const ModelSortPos *a, const ModelSortPos *b, ModelSort sort);

/* Whether row (a host, or a VM by its host's group) is in group_id or a
 * group below it. A root group (no parent) also holds the rows in no group
 * (a VM not placed): it stands for everything. */
bool model_row_under(const ModelSnap *s, const ModelRow *row, int64_t group_id);
/* The root group when there is exactly one (its subtree is everything);
 * 0 otherwise. */
int64_t model_view_root(const ModelSnap *s);
/* Whether group_id names a group of the snapshot. */
bool model_group_exists(const ModelSnap *s, int64_t group_id);

typedef bool (*ModelRowFilter)(void *userdata, const ModelRow *row);

/* The rows of t that keep(userdata, row) accepts, ordered by sort, after
 * position after (NULL: from the first), at most limit of them (0: all).
 * *ret_rows (malloc'd, references into t: hold the snapshot while using
 * them) and *ret_n; *ret_more true when accepted rows follow the last
 * one returned. By name: a walk of the name index from the cursor that
 * stops after limit rows; by another column O(m log m) in the m accepted
 * rows. */
void model_view_select(const ModelTable *t, ModelSort sort, const ModelSortPos *after, size_t limit, ModelRowFilter keep,
                       void *userdata, const ModelRow ***ret_rows, size_t *ret_n, bool *ret_more);

/* Counts by state of the rows of t under group_id (see model_row_under())
 * that keep accepts (NULL: all). A JSON object {"total": N, "by_state":
 * {"running": n, ...}}; a new reference. */
json_t *model_view_count(const ModelSnap *s, const ModelTable *t, int64_t group_id, ModelRowFilter keep, void *userdata);

/* Per host group, how many hosts of s and how many VMs of s are in it or
 * below it, counting only rows keep accepts (NULL: all) and only groups
 * show(userdata, group_id) accepts (NULL: all). A JSON object
 * {"<group id>": {"hosts": n, "vms": n}, ...}; a new reference. One pass
 * over the rows, each walking its group chain. */
json_t *model_view_count_groups(const ModelSnap *s, ModelRowFilter keep_host, ModelRowFilter keep_vm, bool (*show)(void *userdata, int64_t group_id),
                                void *userdata);
