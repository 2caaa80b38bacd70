/* op: what every capability operation takes and gives back.
 *
 * An operation (inventory_vm_create, library_template_deploy, ...) decides a
 * request from start to end: it checks its arguments and the caller's rights
 * (the one policy function), writes, submits jobs and audits. It does not
 * know HTTP. It takes an OpCaller (who asks, from where) and, when it fails,
 * fills an OpError with an HTTP-like status, a machine code, the field to
 * blame and a whole sentence; the API maps that to a response unchanged.
 *
 * Layering: op builds on auth and store; capability modules and the API build
 * on op. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include "auth/auth.h"
#include "store/store.h"
#include "util/util.h"

typedef struct OpCaller {
        AuthSubject subj;         /* for auth_policy_allows() */
        int64_t user_id;          /* 0: the system itself (a job, the monitor) */
        const char *user_name;    /* for audit and messages; "system" when none */
        const char *role_name;    /* "administrator", ... */
        const char *address;      /* where the request came from (audit); may be NULL */
} OpCaller;

typedef struct OpError {
        int status;               /* 400, 403, 404, 409, 422, 500, 503 ... (0: none) */
        const char *code;         /* "invalid_argument", "forbidden", "not_found", "conflict", ... */
        char field[64];           /* the request field to blame, or "" */
        char message[1024];       /* a whole sentence for the user */
} OpError;

/* Fills err and returns the -errno that goes with status (400/422 -EINVAL,
 * 403 -EPERM, 404 -ENOENT, 409 -EEXIST, 503 -EBUSY, anything else -EIO), so an
 * operation can `return op_fail(err, ...)`. field may be NULL. */
int op_fail(OpError *err, int status, const char *code, const char *field, const char *fmt, ...) _printf_(5, 6);

/* op_fail() for a store error: -ENOENT 404 "WHAT does not exist.", -EEXIST 409
 * "WHAT already exists.", -ENOTEMPTY 409 "WHAT is still in use.", -EBUSY
 * 503 "busy" (another writer held the database too long), else 500
 * "internal" "A database error occurred while handling WHAT." (what: "VM
 * 'web01'"). No SQL and no file name reaches the message. Returns e (or
 * -EIO when e >= 0). */
int op_fail_store(OpError *err, int e, const char *what);

/* The policy, asked with the group chain of group_id read from the store
 * (only for delegated administrators: the others decide without it). */
bool op_allowed(Store *st, const OpCaller *c, AuthAction a, AuthObjectKind k, int64_t owner_id, int64_t group_id);
/* auth_policy_allows_some() for the caller. */
bool op_allowed_some(const OpCaller *c, AuthAction a, AuthObjectKind k);
/* The group chain of group_id (itself first) into chain[AUTH_MAX_DEPTH]. */
size_t op_group_chain(Store *st, int64_t group_id, int64_t *chain);

/* Writes an audit record for the caller; errors are ignored (logged by the
 * store), as an audit failure must not undo what was done. result:
 * "accepted", "denied", "failed", "done". */
void op_audit(Store *st, const OpCaller *c, const char *action, const char *object_kind, int64_t object_id,
              const char *object_name, const char *detail, const char *result);

/* Audits a denial and fills err with 403 "User 'U' (ROLE) may not ACTION
 * KIND 'NAME'." (NAME left out when NULL). Returns -EPERM. */
int op_deny(Store *st, const OpCaller *c, OpError *err, const char *action, const char *object_kind, int64_t object_id,
            const char *object_name);

/* ---- what a caller may see (op-visible.c) ---- */
/* The host group an object of a job or event (kind "vm", "host", "group")
 * lives in, for the policy; 0 when none or on a database error. */
int64_t op_object_group(Store *st, const char *kind, int64_t id);
/* Whether the caller may see a job or an event (its JSON, as the lists
 * return it): administrators and read-only users see all; the owner sees
 * its own; a delegated administrator what happens in its groups. The rules
 * of GET /jobs and GET /events, which the event stream applies too. */
bool op_job_visible(Store *st, const OpCaller *c, const json_t *job);
bool op_event_visible(Store *st, const OpCaller *c, const json_t *ev);

typedef enum { OP_VIS_GROUP, OP_VIS_HOST, OP_VIS_VM, OP_VIS_JOB, OP_VIS_EVENT } OpVisKind;
/* Keeps the items of arr (stolen; NULL passes through) the caller may read:
 * a group by its id, a host by its group_id, a VM by owner_id and group_id,
 * a job or an event as above. Returns the (new) array. */
json_t *op_filter_visible(Store *st, const OpCaller *c, json_t *arr, OpVisKind kind);
