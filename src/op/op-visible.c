/* op: what a caller may see of lists and of the record of activity (jobs
 * and events): the read rules every list, GET /jobs, GET /events and the
 * event stream share (op.h). */
#include "op.h"

int64_t op_object_group(Store *st, const char *kind, int64_t id) {
        int64_t g = 0;
        (void) store_object_group(st, kind, id, &g); /* a database error leaves 0: no group, the stricter answer */
        return g;
}

static bool sees_everything(const OpCaller *c) {
        return c->subj.role == ROLE_ADMIN || c->subj.role == ROLE_READ_ONLY;
}

bool op_job_visible(Store *st, const OpCaller *c, const json_t *job) {
        if (sees_everything(c))
                return true;
        if (jget_int(job, "owner_id") == c->user_id)
                return true;
        int64_t g = op_object_group(st, jget_str(job, "target_kind"), jget_int(job, "target_id"));
        return op_allowed(st, c, ACT_READ, OBJ_JOB, jget_int(job, "owner_id"), g);
}

bool op_event_visible(Store *st, const OpCaller *c, const json_t *ev) {
        if (sees_everything(c))
                return true;
        if (jget_int(ev, "owner_id") == c->user_id && c->user_id > 0)
                return true;
        if (c->subj.role != ROLE_DELEGATED_ADMIN)
                return false;
        int64_t g = op_object_group(st, jget_str(ev, "object_kind"), jget_int(ev, "object_id"));
        return g > 0 && op_allowed(st, c, ACT_READ, OBJ_EVENT, jget_int(ev, "owner_id"), g);
}

json_t *op_filter_visible(Store *st, const OpCaller *c, json_t *arr, OpVisKind kind) {
        if (!arr || sees_everything(c))
                return arr;
        json_t *out = json_array();
        size_t i;
        json_t *it;
        json_array_foreach(arr, i, it) {
                bool ok;
                switch (kind) {
                case OP_VIS_GROUP:
                        ok = op_allowed(st, c, ACT_READ, OBJ_GROUP, 0, jget_int(it, "id"));
                        break;
                case OP_VIS_HOST:
                        ok = op_allowed(st, c, ACT_READ, OBJ_HOST, 0, jget_int(it, "group_id"));
                        break;
                case OP_VIS_VM:
                        ok = op_allowed(st, c, ACT_READ, OBJ_VM, jget_int(it, "owner_id"), jget_int(it, "group_id"));
                        break;
                case OP_VIS_JOB:
                        ok = op_job_visible(st, c, it);
                        break;
                case OP_VIS_EVENT:
                default:
                        ok = op_event_visible(st, c, it);
                        break;
                }
                if (ok)
                        json_array_append(out, it);
        }
        json_decref(arr);
        return out;
}
