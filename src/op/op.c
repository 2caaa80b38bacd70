/* op: the caller and the failure of a capability operation (op.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "op.h"

int op_fail(OpError *err, int status, const char *code, const char *field, const char *fmt, ...) {
        va_list ap;
        err->status = status;
        err->code = code;
        snprintf(err->field, sizeof err->field, "%s", field ? field : "");
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        switch (status) {
        case 400:
        case 422:
                return -EINVAL;
        case 403:
                return -EPERM;
        case 404:
                return -ENOENT;
        case 409:
                return -EEXIST;
        case 503:
                return -EBUSY;
        default:
                return -EIO;
        }
}

int op_fail_store(OpError *err, int e, const char *what) {
        if (e == -ENOENT)
                op_fail(err, 404, "not_found", NULL, "%s does not exist.", what);
        else if (e == -EEXIST)
                op_fail(err, 409, "conflict", NULL, "%s already exists.", what);
        else if (e == -ENOTEMPTY)
                op_fail(err, 409, "conflict", NULL, "%s is still in use.", what);
        else if (e == -EBUSY)
                op_fail(err, 503, "busy", NULL, "The database was busy while handling %s; try again in a moment.", what);
        else
                op_fail(err, 500, "internal", NULL, "A database error occurred while handling %s.", what);
        return e < 0 ? e : -EIO;
}

size_t op_group_chain(Store *st, int64_t group_id, int64_t *chain) {
        if (group_id <= 0)
                return 0;
        int n = store_group_chain(st, group_id, chain, AUTH_MAX_DEPTH);
        return n > 0 ? (size_t) n : 0;
}

bool op_allowed(Store *st, const OpCaller *c, AuthAction a, AuthObjectKind k, int64_t owner_id, int64_t group_id) {
        int64_t chain[AUTH_MAX_DEPTH];
        AuthObject o = { .kind = k, .owner_id = owner_id };
        /* Administrators and read-only users decide without the chain: skip the query. */
        if (c->subj.role == ROLE_DELEGATED_ADMIN) {
                o.n_groups = op_group_chain(st, group_id, chain);
                o.groups = chain;
                if (k == OBJ_GROUP && a != ACT_CREATE)
                        o.self_group_id = group_id;
        }
        return auth_policy_allows(&c->subj, a, &o);
}

bool op_allowed_some(const OpCaller *c, AuthAction a, AuthObjectKind k) {
        return auth_policy_allows_some(&c->subj, a, k);
}

void op_audit(Store *st, const OpCaller *c, const char *action, const char *object_kind, int64_t object_id,
              const char *object_name, const char *detail, const char *result) {
        (void) store_audit_add(st, c->user_id, c->user_id ? c->user_name : NULL, c->address, action, object_kind, object_id,
                               object_name, detail, result);
}

int op_deny(Store *st, const OpCaller *c, OpError *err, const char *action, const char *object_kind, int64_t object_id,
            const char *object_name) {
        op_audit(st, c, action, object_kind, object_id, object_name, NULL, "denied");
        const char *who = c->user_name ? c->user_name : "system", *role = c->role_name ? c->role_name : "?";
        if (object_name)
                return op_fail(err, 403, "forbidden", NULL, "User '%s' (%s) may not %s %s '%s'.", who, role, action, object_kind,
                               object_name);
        return op_fail(err, 403, "forbidden", NULL, "User '%s' (%s) may not %s %s.", who, role, action, object_kind);
}
