/* Lists for large estates: GET /api/v1/hosts and GET /api/v1/vms served
 * from the read model (model.h), not SQLite.
 *
 * Rows come in name order (as before), each as the store shapes it. A
 * request may page (limit, cursor), filter (name, name_prefix, state,
 * host_id, group_id, owner_id, owner: the owner's user name), select fields, revalidate (ETag,
 * If-None-Match: 304) and take gzip. A page holds only rows the caller may
 * read; the cursor names the last row the caller was given (nothing else),
 * so it reveals nothing and survives rows coming and going between pages:
 * the next page starts after that name.
 *
 * For the console on a large estate (issue 17): sort (name, state, host,
 * cpus, memory; '-' descending) and under_group_id (a group's subtree) go
 * through model_view_select() (model-view.h) and page by a view cursor
 * that names the last row's place in that order; GET /summary counts hosts
 * and VMs by state under a group and per group (model_view_count*). The
 * caller's visibility is the same predicate as the lists'. */
#include "api-priv.h"
#include "model/model.h"
#include "model/model-view.h"
#include "monitor/monitor.h"

#include <errno.h>
#include <string.h>
#include "util/zip.h"

#define LIST_LIMIT_MAX 5000
#define LIST_MAX_STATES 8
#define LIST_MAX_FIELDS 32
#define CURSOR_PREFIX "n1."
/* A cursor under another order than the name's, or within a subtree:
 * "sort\nkey\nname\nid" of the last row given (model-view.h). */
#define CURSOR_VIEW_PREFIX "s1."

/* The fields of each kind (the keys of store_host_list()/store_vm_list()). */
static const char *const HOST_FIELDS[] = {
        "id", "name", "uri", "group_id", "group_path", "state", "state_reason", "hostname", "cpus", "memory_mib",
        "free_memory_mib", "hv_driver", "domain_type", "pool", "pool_path", "n_vms", "last_seen_at", "created_at",
        "hv_uuid", "max_parallel_starts", "max_parallel_disk_ops", "domain_type_preference", NULL,
};
static const char *const VM_FIELDS[] = {
        "id", "uuid", "name", "host_id", "host_name", "owner_id", "owner_name", "cpus", "memory_mib", "disks", "state",
        "origin", "domain_type", "description", "group_id", "created_at", "updated_at", NULL,
};

typedef struct {
        bool vms;
        const char *name;             /* exact */
        const char *name_prefix;
        const char *states[LIST_MAX_STATES];
        size_t n_states;
        int64_t host_id, group_id, owner_id;
        bool has_owner;               /* owner=NAME: only the VMs of the user named */
        char owner[65];
        int64_t limit;                /* 0: all */
        const char *cursor;           /* as sent */
        char after[64];               /* decoded: start after this name ("" from the start) */
        /* sort (other than by name ascending) or under_group_id: the rows
         * come through model_view_select(), paged by a view cursor. */
        bool view;
        ModelSort sort;
        int64_t under_group_id;
        int64_t root_group;           /* model_view_root() of the request's snapshot */
        bool has_pos;
        ModelSortPos pos;             /* decoded view cursor: start after this */
        char pos_buf[256];
        const char *fields[LIST_MAX_FIELDS];
        size_t n_fields;
        char fields_buf[1024];
        char states_buf[256];
        /* health=1: the /health answer whose nodes' health each row carries
         * (a reference; list_query_free() drops it). */
        bool want_health;
        MonitorAnswer *health;
} ListQuery;

static void list_query_free(ListQuery *q) {
        if (q)
                monitor_answer_unref(q->health);
        free(q);
}
static inline void list_query_freep(ListQuery **q) { list_query_free(*q); }

/* ---- parsing ---- */

static bool in_list(const char *const *list, const char *s) {
        for (size_t i = 0; list[i]; i++)
                if (streq(list[i], s))
                        return true;
        return false;
}

/* Splits a comma-separated query value into buf/out; false (400 naming
 * key) when a part is empty or there are too many. */
static bool split_list(Req *r, const char *key, const char *v, char *buf, size_t size, const char **out, size_t max, size_t *ret_n) {
        if (strlen(v) >= size) {
                reply_error(r, 400, "invalid_argument", key, "Query parameter '%s' is too long.", key);
                return false;
        }
        snprintf(buf, size, "%s", v);
        size_t n = 0;
        for (char *p = buf, *tok; (tok = strsep(&p, ",")); ) {
                if (!*tok || n == max) {
                        reply_error(r, 400, "invalid_argument", key, "Query parameter '%s' must be a comma-separated list of at most"
                                    " %zu names, without empty ones.", key, max);
                        return false;
                }
                out[n++] = tok;
        }
        *ret_n = n;
        return true;
}

/* base64url without padding: the cursor's encoding. */
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64url(const char *in, char *out, size_t size) {
        size_t n = strlen(in), o = 0;
        for (size_t i = 0; i < n && o + 5 < size; i += 3) {
                uint32_t v = (uint32_t) (unsigned char) in[i] << 16;
                if (i + 1 < n) v |= (uint32_t) (unsigned char) in[i + 1] << 8;
                if (i + 2 < n) v |= (unsigned char) in[i + 2];
                out[o++] = B64[(v >> 18) & 63];
                out[o++] = B64[(v >> 12) & 63];
                if (i + 1 < n) out[o++] = B64[(v >> 6) & 63];
                if (i + 2 < n) out[o++] = B64[v & 63];
        }
        out[o] = 0;
}

static int b64url_decode(const char *in, char *out, size_t size) {
        uint32_t acc = 0;
        int bits = 0;
        size_t o = 0;
        for (const char *p = in; *p; p++) {
                const char *c = strchr(B64, *p);
                if (!c || !*p)
                        return -EINVAL;
                acc = (acc << 6) | (uint32_t) (c - B64);
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        if (o + 1 >= size)
                                return -EINVAL;
                        out[o++] = (char) ((acc >> bits) & 0xff);
                }
        }
        out[o] = 0;
        return 0;
}

/* A view cursor: the sort it was given under must be the request's. */
static bool parse_view_cursor(ListQuery *q) {
        size_t pl = strlen(CURSOR_VIEW_PREFIX);
        if (strncmp(q->cursor, CURSOR_VIEW_PREFIX, pl) != 0 || strlen(q->cursor) > 400 ||
            b64url_decode(q->cursor + pl, q->pos_buf, sizeof q->pos_buf) < 0)
                return false;
        char *p = q->pos_buf;
        char *sort = strsep(&p, "\n"), *key = strsep(&p, "\n"), *name = strsep(&p, "\n"), *id = p;
        if (!sort || !key || !name || !id || !streq(sort, model_sort_name(q->sort)) || !name_is_valid(name))
                return false;
        char *end;
        errno = 0;
        long long v = strtoll(id, &end, 10);
        if (errno || end == id || *end || v <= 0)
                return false;
        /* The column's value: a number for cpus and memory, else text. */
        q->pos = (ModelSortPos) { .name = name, .id = v };
        if (q->sort.key == MODEL_SORT_CPUS || q->sort.key == MODEL_SORT_MEMORY) {
                errno = 0;
                long long k = strtoll(key, &end, 10);
                if (errno || end == key || *end)
                        return false;
                q->pos.num = k;
        } else if (q->sort.key != MODEL_SORT_NAME)
                q->pos.str = key;
        q->has_pos = true;
        return true;
}

static bool parse_cursor(Req *r, ListQuery *q) {
        q->cursor = req_query(r, "cursor");
        if (!q->cursor)
                return true;
        size_t pl = strlen(CURSOR_PREFIX);
        bool ok = q->view ? parse_view_cursor(q)
                          : strncmp(q->cursor, CURSOR_PREFIX, pl) == 0 && strlen(q->cursor) <= 120 &&
                                    b64url_decode(q->cursor + pl, q->after, sizeof q->after) >= 0 && name_is_valid(q->after);
        if (!ok) {
                reply_error(r, 400, "invalid_argument", "cursor", "Query parameter 'cursor' is not a cursor this list gave out; start"
                            " again without it.");
                return false;
        }
        return true;
}

static bool parse_name_prefix(Req *r, ListQuery *q) {
        q->name_prefix = req_query(r, "name_prefix");
        if (!q->name_prefix)
                return true;
        if (strlen(q->name_prefix) > 63 ||
            strspn(q->name_prefix, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != strlen(q->name_prefix)) {
                reply_error(r, 400, "invalid_argument", "name_prefix", "Query parameter 'name_prefix' must be at most 63 letters, digits,"
                            " '.', '_' or '-'.");
                return false;
        }
        return true;
}

static bool parse_fields(Req *r, ListQuery *q) {
        const char *v = req_query(r, "fields");
        if (!v)
                return true;
        if (!split_list(r, "fields", v, q->fields_buf, sizeof q->fields_buf, q->fields, LIST_MAX_FIELDS, &q->n_fields))
                return false;
        const char *const *known = q->vms ? VM_FIELDS : HOST_FIELDS;
        for (size_t i = 0; i < q->n_fields; i++)
                if (!in_list(known, q->fields[i])) {
                        reply_error(r, 400, "invalid_argument", "fields", "Query parameter 'fields' names '%.64s', which %s do not have.",
                                    q->fields[i], q->vms ? "VMs" : "hosts");
                        return false;
                }
        return true;
}

/* owner=NAME: a user name, as users are named (an unknown one matches
 * nothing, as an owner_id of nobody does: the list says nothing of who
 * exists). */
static bool parse_owner(Req *r, ListQuery *q) {
        const char *v = req_query(r, "owner");
        if (!v)
                return true;
        if (!*v || strlen(v) >= sizeof q->owner) {
                reply_error(r, 400, "invalid_argument", "owner", "Query parameter 'owner' must be a user name of 1 to %zu characters.",
                            sizeof q->owner - 1);
                return false;
        }
        snprintf(q->owner, sizeof q->owner, "%s", v);
        q->has_owner = true;
        return true;
}

/* sort and under_group_id: whether the rows come through the view. */
static bool parse_view(Req *r, ListQuery *q) {
        const char *sort = req_query(r, "sort");
        if (sort && model_sort_parse(sort, q->vms, &q->sort) < 0) {
                reply_error(r, 400, "invalid_argument", "sort", "Query parameter 'sort' must be one of %s, with '-' before it for"
                            " descending order.", q->vms ? "name, state, host, cpus or memory" : "name, state, cpus or memory");
                return false;
        }
        if (!req_query_int(r, "under_group_id", 0, 1, INT64_MAX, &q->under_group_id))
                return false;
        /* The root's subtree is everything: no filter (and, by name, the
         * streamed or early-stopping name walk). */
        if (q->under_group_id && q->under_group_id == q->root_group)
                q->under_group_id = 0;
        q->view = q->under_group_id || (sort && !(q->sort.key == MODEL_SORT_NAME && !q->sort.desc));
        return true;
}

static bool parse_query(Req *r, ListQuery *q) {
        int64_t health = 0;
        q->name = req_query(r, "name");
        const char *states = req_query(r, "state");
        if (!req_query_int(r, "limit", 0, 1, LIST_LIMIT_MAX, &q->limit) ||
            !req_query_int(r, "group_id", 0, 0, INT64_MAX, &q->group_id) || !req_query_int(r, "health", 0, 0, 1, &health) ||
            !parse_view(r, q) || !parse_cursor(r, q) ||
            !parse_name_prefix(r, q) ||
            !parse_fields(r, q))
                return false;
        if (q->vms && (!req_query_int(r, "host_id", 0, 0, INT64_MAX, &q->host_id) ||
                       !req_query_int(r, "owner_id", 0, 0, INT64_MAX, &q->owner_id) || !parse_owner(r, q)))
                return false;
        if (states && !split_list(r, "state", states, q->states_buf, sizeof q->states_buf, q->states, LIST_MAX_STATES, &q->n_states))
                return false;
        q->want_health = health == 1;
        return true;
}

/* ---- selection ---- */

static bool row_matches(const ListQuery *q, const ModelRow *row) {
        if (q->name && !streq(row->name, q->name))
                return false;
        if (q->name_prefix && strncmp(row->name, q->name_prefix, strlen(q->name_prefix)) != 0)
                return false;
        if (q->group_id && row->group_id != q->group_id)
                return false;
        if (q->host_id && row->host_id != q->host_id)
                return false;
        if (q->owner_id && row->owner_id != q->owner_id)
                return false;
        if (q->has_owner) {
                /* A scalar of the row's JSON: read without the print lock. */
                const char *o = json_string_value(json_object_get(row->json, "owner_name"));
                if (!o || !streq(o, q->owner))
                        return false;
        }
        if (q->n_states) {
                size_t i = 0;
                while (i < q->n_states && !streq(q->states[i], row->state))
                        i++;
                if (i == q->n_states)
                        return false;
        }
        return true;
}

/* The rules of GET /hosts and GET /vms before the read model (api_allowed
 * per row), with the group chain from the model instead of a query. */
static bool row_visible(const AuthSubject *subj, const ModelSnap *s, bool vms, const ModelRow *row) {
        if (subj->role == ROLE_ADMIN || subj->role == ROLE_READ_ONLY)
                return true;
        int64_t chain[AUTH_MAX_DEPTH];
        AuthObject o = { .kind = vms ? OBJ_VM : OBJ_HOST, .owner_id = vms ? row->owner_id : 0 };
        if (subj->role == ROLE_DELEGATED_ADMIN) {
                o.n_groups = model_group_chain(s, row->group_id, chain, AUTH_MAX_DEPTH);
                o.groups = chain;
        }
        return auth_policy_allows(subj, ACT_READ, &o);
}

/* ---- output ---- */

/* Values that are arrays or objects are printed under one lock: rows are
 * shared between threads, and printing must not depend on the library
 * marking containers it walks. Scalars need none. */
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

static void append_fields(StrBuf *b, const ModelRow *row, const ListQuery *q) {
        strbuf_append(b, "{");
        for (size_t i = 0; i < q->n_fields; i++) {
                json_t *v = json_object_get(row->json, q->fields[i]);
                bool container = json_is_object(v) || json_is_array(v);
                if (container)
                        pthread_mutex_lock(&print_lock);
                char *text = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
                if (container)
                        pthread_mutex_unlock(&print_lock);
                strbuf_printf(b, "%s\"%s\":%s", i ? "," : "", q->fields[i], text ? text : "null");
                free(text);
        }
        strbuf_append(b, "}");
}

/* One row as the query asks: whole or its fields, and with health=1 its
 * health from the answer (the row's closing brace gives way to it). */
static void append_row(StrBuf *b, const ModelRow *row, const ListQuery *q) {
        size_t at = b->len;
        if (q->n_fields)
                append_fields(b, row, q);
        else
                strbuf_appendn(b, row->text, row->text_len);
        if (!q->health || b->len < at + 2 || b->s[b->len - 1] != '}')
                return;
        b->s[--b->len] = 0;
        if (b->len > at + 1)
                strbuf_append(b, ",");
        size_t n;
        const char *frag = monitor_answer_health(q->health, q->vms, row->id, &n);
        if (frag)
                strbuf_appendn(b, frag, n);
        else
                strbuf_append(b, "\"health\":null,\"health_reasons\":[]");
        strbuf_append(b, "}");
}

static void url_append(StrBuf *b, const char *key, const char *v) {
        if (!v)
                return;
        strbuf_printf(b, "&%s=", key);
        for (const unsigned char *p = (const unsigned char *) v; *p; p++) {
                if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("-._~", *p))
                        strbuf_appendn(b, (const char *) p, 1);
                else
                        strbuf_printf(b, "%%%02X", *p);
        }
}

/* Link: <next page>; rel="next", with the request's other parameters. */
static char *link_next(Req *r, const ListQuery *q, const char *cursor) {
        StrBuf b = {0};
        strbuf_printf(&b, "<%s?limit=%lld", r->path, (long long) q->limit);
        strbuf_printf(&b, "&cursor=%s", cursor);
        static const char *const keys[] = { "name", "name_prefix", "state", "host_id", "group_id", "owner_id", "owner", "fields",
                                            "sort", "under_group_id", "health" };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                url_append(&b, keys[i], req_query(r, keys[i]));
        strbuf_append(&b, ">; rel=\"next\"");
        return strbuf_steal(&b);
}

/* The ETag of a list answer: the table's and the groups' generations, the
 * model instance, who asks (their rows differ) and every parameter. A change
 * of any row of the table gives a new one. */
static void list_etag(Req *r, const ModelSnap *s, const ListQuery *q, char out[64]) {
        /* with health=1, the answer's too (the health of the rows) */
        uint64_t h = FNV1A_INIT;
        const ModelTable *t = q->vms ? s->vms : s->hosts;
        int64_t who[3] = { r->user.id, r->subj.role, (int64_t) r->subj.n_scopes };
        h = fnv1a(h, &r->api->list_instance, sizeof r->api->list_instance);
        h = fnv1a(h, &t->generation, sizeof t->generation);
        h = fnv1a(h, &s->groups->generation, sizeof s->groups->generation);
        h = fnv1a(h, who, sizeof who);
        h = fnv1a(h, r->subj.scopes, r->subj.n_scopes * sizeof *r->subj.scopes);
        if (q->health)
                h = fnv1a_str(h, q->health->etag);
        static const char *const keys[] = { "limit", "cursor", "name", "name_prefix", "state", "host_id", "group_id",
                                            "owner_id", "owner", "fields", "sort", "under_group_id", "health" };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                h = fnv1a_str(fnv1a_str(h, keys[i]), req_query(r, keys[i]));
        snprintf(out, 64, "W/\"%c%016llx\"", q->vms ? 'v' : 'h', (unsigned long long) h);
}

/* Whether If-None-Match names etag (or is "*"); weak comparison. */
bool api_etag_matches(Req *r, const char *etag) {
        const char *v = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "If-None-Match");
        if (!v)
                return false;
        const char *mine = strncmp(etag, "W/", 2) == 0 ? etag + 2 : etag;
        _cleanup_free_ char *copy = xstrdup(v);
        for (char *p = copy, *tok; (tok = strsep(&p, ",")); ) {
                tok += strspn(tok, " \t");
                size_t n = strcspn(tok, " \t");
                tok[n] = 0;
                if (streq(tok, "*"))
                        return true;
                if (strncmp(tok, "W/", 2) == 0)
                        tok += 2;
                if (streq(tok, mine))
                        return true;
        }
        return false;
}

/* Whether the client takes gzip (Accept-Encoding, q=0 refuses). */
bool api_accepts_gzip(Req *r) {
        const char *v = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Accept-Encoding");
        if (!v)
                return false;
        _cleanup_free_ char *copy = xstrdup(v);
        for (char *p = copy, *tok; (tok = strsep(&p, ",")); ) {
                tok += strspn(tok, " \t");
                size_t n = strcspn(tok, " \t;");
                bool gz = (n == 4 && strncasecmp(tok, "gzip", 4) == 0) || (n == 1 && tok[0] == '*');
                if (!gz)
                        continue;
                const char *qv = strstr(tok + n, "q=");
                return !(qv && strtod(qv + 2, NULL) <= 0.0);
        }
        return false;
}

/* gzip of in (RFC 1952). 0 and *ret (malloc'd), or -EIO. */
int api_gzip(const char *in, size_t n, char **ret, size_t *ret_len) {
        return zip_deflate(in, n, 15 + 16, Z_FINISH, ret, ret_len);
}

/* Builds the page: rows of t in name order after q->after that match and
 * the caller may see, at most q->limit; *ret_next the name of the last one
 * given when more visible rows follow. */
static void build_items(Req *r, const ModelSnap *s, const ListQuery *q, StrBuf *b, const char **ret_next) {
        const ModelTable *t = q->vms ? s->vms : s->hosts;
        size_t start = q->after[0] ? model_name_after(t, q->after) : 0;
        /* An exact name or a prefix: binary search to the first candidate. */
        const char *from = q->name ? q->name : q->name_prefix;
        if (from && strcmp(from, q->after) > 0)
                start = model_name_from(t, from);
        size_t given = 0;
        const ModelRow *last = NULL;
        *ret_next = NULL;
        for (size_t i = start; i < t->n; i++) {
                const ModelRow *row = t->by_name[i];
                if (from && strncmp(row->name, from, strlen(from)) > 0)
                        break; /* past every name with this prefix */
                if (!row_matches(q, row) || !row_visible(&r->subj, s, q->vms, row))
                        continue;
                if (q->limit && given == (size_t) q->limit) {
                        *ret_next = last->name;
                        break;
                }
                if (given++)
                        strbuf_append(b, ",");
                append_row(b, row, q);
                last = row;
        }
}

/* ---- sorted, or within a subtree (model-view.h) ---- */

typedef struct {
        const AuthSubject *subj;
        const ModelSnap *snap;
        const ListQuery *q;
} ViewFilter;

static bool view_keep(void *userdata, const ModelRow *row) {
        const ViewFilter *f = userdata;
        return row_matches(f->q, row) && (!f->q->under_group_id || model_row_under(f->snap, row, f->q->under_group_id)) &&
                row_visible(f->subj, f->snap, f->q->vms, row);
}

/* The view cursor of row: where the next page starts. */
static void view_cursor(const ListQuery *q, const ModelRow *row, char *out, size_t size) {
        ModelSortPos pos;
        model_sort_pos(row, q->sort, &pos);
        char key[128], plain[256], enc[360];
        if (pos.str)
                snprintf(key, sizeof key, "%s", pos.str);
        else
                snprintf(key, sizeof key, "%lld", (long long) pos.num);
        snprintf(plain, sizeof plain, "%s\n%s\n%s\n%lld", model_sort_name(q->sort), key, row->name, (long long) row->id);
        b64url(plain, enc, sizeof enc);
        snprintf(out, size, CURSOR_VIEW_PREFIX "%s", enc);
}

/* The page (or, without limit, every row) of the view; *ret_more when
 * rows follow, with their cursor in next (size bytes). */
static void build_view_items(Req *r, const ModelSnap *s, const ListQuery *q, StrBuf *b, char *next, size_t size, bool *ret_more) {
        const ModelTable *t = q->vms ? s->vms : s->hosts;
        ViewFilter f = { .subj = &r->subj, .snap = s, .q = q };
        _cleanup_free_ const ModelRow **rows = NULL;
        size_t n = 0;
        model_view_select(t, q->sort, q->has_pos ? &q->pos : NULL, (size_t) q->limit, view_keep, &f, &rows, &n, ret_more);
        for (size_t i = 0; i < n; i++) {
                if (i)
                        strbuf_append(b, ",");
                append_row(b, rows[i], q);
        }
        if (*ret_more && n)
                view_cursor(q, rows[n - 1], next, size);
        else
                *ret_more = false;
}

/* ---- the full list, streamed ----
 * Without limit or cursor the list is written out as MHD asks for
 * it, a chunk of rows at a time, from the snapshot the request took (held
 * until the response is done): no whole copy of a 7 MB body in memory, and
 * the first bytes leave at once. gzip is a deflate stream over the chunks. */

#define STREAM_CHUNK (64 * 1024)

typedef struct {
        ModelSnap *snap;
        ListQuery *q;
        char *name, *name_prefix;     /* q's copies (q points here) */
        AuthSubject subj;             /* the caller, copied: scopes below */
        int64_t scopes[API_MAX_SCOPES];
        size_t next;                  /* index in by_name */
        size_t given;
        bool head_done;
        bool plain_done;              /* the closing bracket is out */
        bool gzip, z_done;
        z_stream z;
        StrBuf plain, out;            /* out: bytes not yet handed to MHD */
        size_t off;
} ListStream;

/* Appends the next chunk of rows (or the end) to s->plain. */
static void stream_fill(ListStream *s) {
        const ModelTable *t = s->q->vms ? s->snap->vms : s->snap->hosts;
        if (!s->head_done) {
                strbuf_append(&s->plain, "{\"items\":[");
                s->head_done = true;
        }
        const char *from = s->q->name ? s->q->name : s->q->name_prefix;
        while (s->next < t->n && s->plain.len < STREAM_CHUNK) {
                const ModelRow *row = t->by_name[s->next++];
                if (from && strncmp(row->name, from, strlen(from)) > 0) {
                        s->next = t->n;
                        break;
                }
                if (!row_matches(s->q, row) || !row_visible(&s->subj, s->snap, s->q->vms, row))
                        continue;
                if (s->given++)
                        strbuf_append(&s->plain, ",");
                append_row(&s->plain, row, s->q);
        }
        if (s->next >= t->n && !s->plain_done) {
                strbuf_append(&s->plain, "]}\n");
                s->plain_done = true;
        }
}

/* Moves s->plain into s->out, compressed when asked. */
static int stream_pack(ListStream *s) {
        if (!s->gzip) {
                strbuf_appendn(&s->out, s->plain.s ? s->plain.s : "", s->plain.len);
                s->plain.len = 0;
                return 0;
        }
        s->z.next_in = (Bytef *) s->plain.s;
        s->z.avail_in = (uInt) s->plain.len;
        int flush = s->plain_done ? Z_FINISH : Z_NO_FLUSH;
        for (;;) {
                char buf[16384];
                s->z.next_out = (Bytef *) buf;
                s->z.avail_out = sizeof buf;
                int rc = deflate(&s->z, flush);
                if (rc == Z_STREAM_ERROR)
                        return -EIO;
                strbuf_appendn(&s->out, buf, sizeof buf - s->z.avail_out);
                if (rc == Z_STREAM_END) {
                        s->z_done = true;
                        break;
                }
                if (s->z.avail_in == 0 && s->z.avail_out != 0)
                        break;
        }
        s->plain.len = 0;
        return 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
        ListStream *s = cls;
        (void) pos;
        for (;;) {
                if (s->off < s->out.len) {
                        size_t n = s->out.len - s->off < max ? s->out.len - s->off : max;
                        memcpy(buf, s->out.s + s->off, n);
                        s->off += n;
                        return (ssize_t) n;
                }
                s->out.len = 0;
                s->off = 0;
                if (s->plain_done && (!s->gzip || s->z_done))
                        return MHD_CONTENT_READER_END_OF_STREAM;
                stream_fill(s);
                if (stream_pack(s) < 0)
                        return MHD_CONTENT_READER_END_WITH_ERROR;
        }
}

static void stream_free(void *cls) {
        ListStream *s = cls;
        if (s->gzip)
                deflateEnd(&s->z);
        model_snap_unref(s->snap);
        strbuf_free(&s->plain);
        strbuf_free(&s->out);
        free(s->name);
        free(s->name_prefix);
        list_query_free(s->q);
        free(s);
}

/* Streams the whole list; false (nothing sent) when it cannot. Takes q. */
static bool list_stream(Req *r, ModelSnap *snap, ListQuery *q) {
        ListStream *s = xcalloc(1, sizeof *s);
        const char *name = q->name, *name_prefix = q->name_prefix;
        s->q = q;
        s->name = q->name ? xstrdup(q->name) : NULL;
        s->name_prefix = q->name_prefix ? xstrdup(q->name_prefix) : NULL;
        q->name = s->name;
        q->name_prefix = s->name_prefix;
        s->subj = r->subj;
        size_t n = r->subj.n_scopes < API_MAX_SCOPES ? r->subj.n_scopes : API_MAX_SCOPES;
        memcpy(s->scopes, r->subj.scopes, n * sizeof *s->scopes);
        s->subj.scopes = s->scopes;
        s->subj.n_scopes = n;
        s->snap = snap;
        const ModelTable *t = q->vms ? snap->vms : snap->hosts;
        const char *from = q->name ? q->name : q->name_prefix;
        if (from)
                s->next = model_name_from(t, from);
        if (api_accepts_gzip(r)) {
                if (deflateInit2(&s->z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK)
                        s->gzip = true;
        }
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_CHUNK, stream_read, s, stream_free);
        if (!resp) {
                /* The caller keeps q and the snapshot. */
                q->name = name;
                q->name_prefix = name_prefix;
                s->snap = NULL;
                s->q = NULL;
                stream_free(s);
                return false;
        }
        if (s->gzip)
                reply_header(r, "Content-Encoding", "gzip");
        r->status = 200;
        r->content_type = "application/json";
        r->mhd_resp = resp;
        return true;
}

static void list_reply(Req *r, bool vms) {
        _cleanup_(list_query_freep) ListQuery *qp = xcalloc(1, sizeof *qp);
        ListQuery *q = qp;
        q->vms = vms;
        ModelSnap *snap = model_snap(r->api->model);
        _cleanup_model_snap_ ModelSnap *s = snap;
        q->root_group = model_view_root(s);
        if (!parse_query(r, q))
                return;
        /* A self-service user lists its own VMs only (as before). */
        if (vms && r->subj.role == ROLE_SELF_SERVICE) {
                if ((q->owner_id && q->owner_id != r->user.id) || (q->has_owner && !streq(q->owner, r->user.name))) {
                        q->owner_id = -1; /* nobody's: an empty list, as filtering another's VMs would give */
                } else
                        q->owner_id = r->user.id;
        }
        if (q->want_health) {
                OpCaller c = api_caller(r);
                OpError err = {0};
                MonitorHealthReply rep;
                if (monitor_op_health_answer(r->api->st, s, &c, false, &rep, &err) < 0)
                        return reply_op_error(r, &err);
                q->health = rep.answer;
        }
        char etag[64];
        list_etag(r, s, q, etag);
        reply_header(r, "ETag", etag);
        reply_header(r, "Vary", "Accept-Encoding");
        if (api_etag_matches(r, etag)) {
                r->status = 304;
                return;
        }
        if (!q->limit && !q->cursor && !q->view) {
                s = NULL; /* the stream holds the snapshot now, or gives it back */
                if (list_stream(r, snap, q)) {
                        qp = NULL;
                        return;
                }
                s = snap;
        }
        StrBuf b = {0};
        strbuf_append(&b, "{\"items\":[");
        const char *next = NULL;
        char cur[400] = "";
        if (q->view) {
                bool more = false;
                build_view_items(r, s, q, &b, cur, sizeof cur, &more);
                next = more ? cur : NULL;
        } else
                build_items(r, s, q, &b, &next);
        strbuf_append(&b, "]");
        if (q->limit || q->cursor) {
                if (next && !q->view) {
                        char enc[100];
                        b64url(next, enc, sizeof enc);
                        snprintf(cur, sizeof cur, CURSOR_PREFIX "%s", enc);
                }
                if (next) {
                        _cleanup_free_ char *link = link_next(r, q, cur);
                        reply_header(r, "Link", link);
                }
                strbuf_printf(&b, ",\"next_cursor\":%s%s%s", next ? "\"" : "", next ? cur : "null", next ? "\"" : "");
        }
        strbuf_append(&b, "}\n");
        size_t len = b.len;
        char *body = strbuf_steal(&b);
        char *gz = NULL;
        size_t gz_len = 0;
        if (len > 1024 && api_accepts_gzip(r) && api_gzip(body, len, &gz, &gz_len) == 0) {
                free(body);
                body = gz;
                len = gz_len;
                reply_header(r, "Content-Encoding", "gzip");
        }
        r->status = 200;
        r->content_type = "application/json";
        r->raw = body;
        r->raw_len = len;
}

void api_list_hosts(Req *r) {
        list_reply(r, false);
}

void api_list_vms(Req *r) {
        list_reply(r, true);
}

/* ---- GET /api/v1/jobs and /api/v1/events: history, paged back ----
 * Newest first, a page of at most limit; before_id (a row's id) asks for
 * the rows older than it, so a client pages back through any length of
 * history with the answer's next_before_id (null when nothing older
 * remains) or the Link header's rel="next". New rows only ever come with
 * larger ids: a page is never shifted by what happens meanwhile. */

#define HISTORY_LIMIT_MAX 1000

/* {"items": arr, "next_before_id": next or null}, and the Link header to
 * the next page with the request's other parameters (keys). */
static void history_reply(Req *r, json_t *arr, int64_t limit, int64_t next, const char *const *keys, size_t n_keys) {
        if (next > 0) {
                StrBuf b = {0};
                strbuf_printf(&b, "<%s?limit=%lld&before_id=%lld", r->path, (long long) limit, (long long) next);
                for (size_t i = 0; i < n_keys; i++)
                        url_append(&b, keys[i], req_query(r, keys[i]));
                strbuf_append(&b, ">; rel=\"next\"");
                _cleanup_free_ char *link = strbuf_steal(&b);
                reply_header(r, "Link", link);
        }
        reply(r, 200, json_pack("{s:o, s:o}", "items", arr, "next_before_id", next > 0 ? json_integer(next) : json_null()));
}

void h_jobs_list(Req *r) {
        static const char *const keys[] = { "state", "stuck" };
        int64_t limit, before_id;
        if (!req_query_int(r, "limit", 100, 1, HISTORY_LIMIT_MAX, &limit) || !req_query_int(r, "before_id", 0, 1, INT64_MAX, &before_id))
                return;
        const char *state = req_query(r, "state");
        if (state && !streq(state, "queued") && !streq(state, "running") && !streq(state, "succeeded") && !streq(state, "failed") &&
            !streq(state, "cancelled"))
                return reply_error(r, 400, "invalid_argument", "state", "Query 'state' must be queued, running, succeeded, failed or cancelled.");
        const char *stuck = req_query(r, "stuck");
        if (stuck && !streq(stuck, "true") && !streq(stuck, "false"))
                return reply_error(r, 400, "invalid_argument", "stuck", "Query 'stuck' must be true or false.");
        JobsListSpec spec = { .state = state, .only_stuck = stuck && streq(stuck, "true"), .before_id = before_id, .limit = (int) limit };
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *arr = NULL;
        int64_t next = 0;
        if (jobs_job_list(r->api->jobs, &c, &spec, &arr, &next, &err) < 0)
                return reply_op_error(r, &err);
        history_reply(r, arr, limit, next, keys, ELEMENTSOF(keys));
}

void h_events_list(Req *r) {
        static const char *const keys[] = { "since_id" };
        int64_t limit;
        JobsEventListSpec spec = {0};
        if (!req_query_int(r, "limit", 100, 1, HISTORY_LIMIT_MAX, &limit) || !req_query_int(r, "since_id", 0, 0, INT64_MAX, &spec.since_id) ||
            !req_query_int(r, "before_id", 0, 1, INT64_MAX, &spec.before_id))
                return;
        spec.limit = (int) limit;
        OpCaller c = api_caller(r);
        OpError err = {0};
        json_t *arr = NULL;
        int64_t next = 0;
        if (jobs_event_list(r->api->jobs, &c, &spec, &arr, &next, &err) < 0)
                return reply_op_error(r, &err);
        history_reply(r, arr, limit, next, keys, ELEMENTSOF(keys));
}

/* ---- GET /api/v1/summary: counts for the console ---- */

typedef struct {
        const AuthSubject *subj;
        const ModelSnap *snap;
} SummaryFilter;

static bool summary_host(void *userdata, const ModelRow *row) {
        const SummaryFilter *f = userdata;
        return row_visible(f->subj, f->snap, false, row);
}

static bool summary_vm(void *userdata, const ModelRow *row) {
        const SummaryFilter *f = userdata;
        return row_visible(f->subj, f->snap, true, row);
}

/* Whether the caller may see the group (the rules of GET /host-groups). */
static bool summary_group(void *userdata, int64_t group_id) {
        const SummaryFilter *f = userdata;
        int64_t chain[AUTH_MAX_DEPTH];
        AuthObject o = { .kind = OBJ_GROUP, .self_group_id = group_id };
        o.n_groups = model_group_chain(f->snap, group_id, chain, AUTH_MAX_DEPTH);
        o.groups = chain;
        return o.n_groups > 0 && auth_policy_allows(f->subj, ACT_READ, &o);
}

/* Counts of the hosts and VMs the caller may see under a group (the root
 * by default: everything the caller may see), by state, and per group of
 * the tree. A group the caller may not see is "not found" as one that does
 * not exist, but for the root, which stands for "all I may see". */
static void h_summary(Req *r) {
        int64_t group_id = 0;
        if (!req_query_int(r, "group_id", 0, 1, INT64_MAX, &group_id))
                return;
        _cleanup_model_snap_ ModelSnap *s = model_snap(r->api->model);
        SummaryFilter f = { .subj = &r->subj, .snap = s };
        int64_t root = model_view_root(s);
        if (!group_id)
                group_id = root;
        if (group_id != root && (!model_group_exists(s, group_id) || !summary_group(&f, group_id))) {
                reply_error(r, 404, "not_found", "group_id", "Host group %lld does not exist.", (long long) group_id);
                return;
        }
        json_t *body = json_pack("{s:I, s:o, s:o, s:o}", "group_id", (json_int_t) group_id,
                                 "hosts", model_view_count(s, s->hosts, group_id, summary_host, &f),
                                 "vms", model_view_count(s, s->vms, group_id, summary_vm, &f),
                                 "groups", model_view_count_groups(s, summary_host, summary_vm, summary_group, &f));
        reply(r, 200, body);
}

const Route api_routes_list[] = {
        { "GET", "/api/v1/summary", h_summary, false },
        { NULL, NULL, NULL, false },
};
