/* model-view: ordered, paged and counted views of the read model for the
 * console on a large estate (model-view.h). */
#include "model-view.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct {
        const char *name;
        ModelSortKey key;
        bool vms_only;
} SORTS[] = {
        { "name", MODEL_SORT_NAME, false },
        { "state", MODEL_SORT_STATE, false },
        { "host", MODEL_SORT_HOST, true },
        { "cpus", MODEL_SORT_CPUS, false },
        { "memory", MODEL_SORT_MEMORY, false },
};

int model_sort_parse(const char *s, bool vms, ModelSort *ret) {
        bool desc = s[0] == '-';
        const char *col = desc ? s + 1 : s;
        for (size_t i = 0; i < ELEMENTSOF(SORTS); i++)
                if (streq(SORTS[i].name, col) && (vms || !SORTS[i].vms_only)) {
                        *ret = (ModelSort) { .key = SORTS[i].key, .desc = desc };
                        return 0;
                }
        return -EINVAL;
}

const char *model_sort_name(ModelSort sort) {
        static const char *const asc[] = { "name", "state", "host", "cpus", "memory" };
        static const char *const desc[] = { "-name", "-state", "-host", "-cpus", "-memory" };
        return (sort.desc ? desc : asc)[sort.key];
}

void model_sort_pos(const ModelRow *row, ModelSort sort, ModelSortPos *ret) {
        *ret = (ModelSortPos) { .name = row->name, .id = row->id };
        switch (sort.key) {
        case MODEL_SORT_NAME:
                break;
        case MODEL_SORT_STATE:
                ret->str = row->state ? row->state : "";
                break;
        case MODEL_SORT_HOST: {
                const char *h = jget_str(row->json, "host_name");
                ret->str = h ? h : "";
                break;
        }
        case MODEL_SORT_CPUS:
                ret->num = jget_int(row->json, "cpus");
                break;
        case MODEL_SORT_MEMORY:
                ret->num = jget_int(row->json, "memory_mib");
                break;
        }
}

static int pos_cmp_asc(const ModelSortPos *a, const ModelSortPos *b) {
        int c = 0;
        if (a->str || b->str)
                c = strcmp(a->str ? a->str : "", b->str ? b->str : "");
        else
                c = a->num < b->num ? -1 : a->num > b->num;
        if (c == 0)
                c = strcmp(a->name, b->name);
        if (c == 0)
                c = a->id < b->id ? -1 : a->id > b->id;
        return c;
}

int model_sort_cmp(const ModelSortPos *a, const ModelSortPos *b, ModelSort sort) {
        int c = pos_cmp_asc(a, b);
        return sort.desc ? -c : c;
}

int64_t model_view_root(const ModelSnap *s) {
        int64_t root = 0;
        for (size_t i = 0; i < s->groups->n; i++)
                if (s->groups->parents[i] <= 0) {
                        if (root)
                                return 0;
                        root = s->groups->ids[i];
                }
        return root;
}

bool model_group_exists(const ModelSnap *s, int64_t group_id) {
        int64_t chain[1];
        return model_group_chain(s, group_id, chain, 1) == 1;
}

/* Whether group_id is a root: a group without a parent. */
static bool group_is_root(const ModelSnap *s, int64_t group_id) {
        const ModelGroups *g = s->groups;
        for (size_t i = 0; i < g->n; i++)
                if (g->ids[i] == group_id)
                        return g->parents[i] <= 0;
        return false;
}

bool model_row_under(const ModelSnap *s, const ModelRow *row, int64_t group_id) {
        if (row->group_id <= 0)
                return group_is_root(s, group_id);
        int64_t chain[65];
        size_t n = model_group_chain(s, row->group_id, chain, ELEMENTSOF(chain));
        for (size_t i = 0; i < n; i++)
                if (chain[i] == group_id)
                        return true;
        return false;
}

static int cmp_group_id(const void *a, const void *b) {
        int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
        return x < y ? -1 : x > y;
}

typedef struct {
        ModelSortPos pos;
        const ModelRow *row;
} Ranked;

static int ranked_cmp(const void *a, const void *b) {
        return pos_cmp_asc(&((const Ranked *) a)->pos, &((const Ranked *) b)->pos);
}

/* By name: the table is in that order already (by_name sorts by name, then
 * id, as pos_cmp_asc() does), so the page is a walk from the cursor that
 * stops after limit rows, without sorting anything. */
static void select_by_name(const ModelTable *t, bool desc, const ModelSortPos *after, size_t limit, ModelRowFilter keep,
                           void *userdata, const ModelRow ***ret_rows, size_t *ret_n, bool *ret_more) {
        ModelSort sort = { .key = MODEL_SORT_NAME, .desc = desc };
        const ModelRow **rows = xmalloc(((limit && limit < t->n) ? limit : t->n ? t->n : 1) * sizeof *rows);
        size_t n = 0;
        bool more = false;
        /* Ascending: from the first row named at or after the cursor's
         * name; descending: from the last named at or before it. */
        size_t start = !after ? 0 : desc ? t->n - model_name_after(t, after->name) : model_name_from(t, after->name);
        for (size_t k = start; k < t->n; k++) {
                const ModelRow *row = t->by_name[desc ? t->n - 1 - k : k];
                if (keep && !keep(userdata, row))
                        continue;
                if (after) {
                        ModelSortPos pos;
                        model_sort_pos(row, sort, &pos);
                        if (model_sort_cmp(&pos, after, sort) <= 0)
                                continue;
                }
                if (limit && n == limit) {
                        more = true;
                        break;
                }
                rows[n++] = row;
        }
        *ret_rows = rows;
        *ret_n = n;
        *ret_more = more;
}

void model_view_select(const ModelTable *t, ModelSort sort, const ModelSortPos *after, size_t limit, ModelRowFilter keep,
                       void *userdata, const ModelRow ***ret_rows, size_t *ret_n, bool *ret_more) {
        if (sort.key == MODEL_SORT_NAME) {
                select_by_name(t, sort.desc, after, limit, keep, userdata, ret_rows, ret_n, ret_more);
                return;
        }
        /* Gather, then sort only what is accepted and past the cursor: a
         * group's page sorts that group's rows, not the estate's. */
        Ranked *r = xmalloc((t->n ? t->n : 1) * sizeof *r);
        size_t m = 0;
        for (size_t i = 0; i < t->n; i++) {
                const ModelRow *row = t->by_name[i];
                if (keep && !keep(userdata, row))
                        continue;
                model_sort_pos(row, sort, &r[m].pos);
                if (after && model_sort_cmp(&r[m].pos, after, sort) <= 0)
                        continue;
                r[m++].row = row;
        }
        qsort(r, m, sizeof *r, ranked_cmp);
        size_t n = limit && limit < m ? limit : m;
        const ModelRow **rows = xmalloc((n ? n : 1) * sizeof *rows);
        for (size_t i = 0; i < n; i++)
                rows[i] = r[sort.desc ? m - 1 - i : i].row;
        free(r);
        *ret_rows = rows;
        *ret_n = n;
        *ret_more = n < m;
}

typedef struct {
        const char *state;
        size_t n;
} StateCount;

static int state_count_cmp(const void *a, const void *b) {
        return strcmp(((const StateCount *) a)->state, ((const StateCount *) b)->state);
}

json_t *model_view_count(const ModelSnap *s, const ModelTable *t, int64_t group_id, ModelRowFilter keep, void *userdata) {
        /* A few distinct states: a small array beats a hash. */
        StateCount c[32];
        size_t k = 0, total = 0;
        for (size_t i = 0; i < t->n; i++) {
                const ModelRow *row = t->by_id[i];
                if (!model_row_under(s, row, group_id) || (keep && !keep(userdata, row)))
                        continue;
                const char *st = row->state ? row->state : "unknown";
                size_t j = 0;
                while (j < k && !streq(c[j].state, st))
                        j++;
                if (j == k) {
                        if (k == ELEMENTSOF(c))
                                continue;
                        c[k++] = (StateCount) { .state = st };
                }
                c[j].n++;
                total++;
        }
        qsort(c, k, sizeof *c, state_count_cmp);
        json_t *by = json_object();
        for (size_t j = 0; j < k; j++)
                json_object_set_new(by, c[j].state, json_integer((json_int_t) c[j].n));
        return json_pack("{s:I, s:o}", "total", (json_int_t) total, "by_state", by);
}

/* Adds 1 to counts[i] for the group of the row and each of its ancestors. */
static void count_chain(const ModelSnap *s, const ModelRow *row, size_t *counts) {
        int64_t chain[65];
        size_t n = model_group_chain(s, row->group_id, chain, ELEMENTSOF(chain));
        for (size_t i = 0; i < n; i++) {
                const int64_t *p = bsearch(&chain[i], s->groups->ids, s->groups->n, sizeof *s->groups->ids, cmp_group_id);
                if (p)
                        counts[p - s->groups->ids]++;
        }
}

json_t *model_view_count_groups(const ModelSnap *s, ModelRowFilter keep_host, ModelRowFilter keep_vm, bool (*show)(void *userdata, int64_t group_id),
                                void *userdata) {
        const ModelGroups *g = s->groups;
        size_t *hosts = xcalloc(g->n ? g->n : 1, sizeof *hosts), *vms = xcalloc(g->n ? g->n : 1, sizeof *vms);
        size_t unplaced = 0;
        for (size_t i = 0; i < s->hosts->n; i++)
                if (!keep_host || keep_host(userdata, s->hosts->by_id[i]))
                        count_chain(s, s->hosts->by_id[i], hosts);
        for (size_t i = 0; i < s->vms->n; i++) {
                const ModelRow *vm = s->vms->by_id[i];
                if (keep_vm && !keep_vm(userdata, vm))
                        continue;
                if (vm->group_id <= 0)
                        unplaced++;
                else
                        count_chain(s, vm, vms);
        }
        json_t *o = json_object();
        for (size_t i = 0; i < g->n; i++) {
                if (show && !show(userdata, g->ids[i]))
                        continue;
                /* A root stands for everything (model_row_under()). */
                size_t nv = vms[i] + (g->parents[i] <= 0 ? unplaced : 0);
                char key[24];
                snprintf(key, sizeof key, "%lld", (long long) g->ids[i]);
                json_object_set_new(o, key, json_pack("{s:I, s:I}", "hosts", (json_int_t) hosts[i], "vms", (json_int_t) nv));
        }
        free(hosts);
        free(vms);
        return o;
}
