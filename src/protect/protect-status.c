/* What the console, scripts and /metrics read of the protection state: the
 * last good recovery point of a VM, and the backup families of /metrics.
 * Reads only, from the index of points (store-protect.c); never a walk of
 * a datastore. */
#include "protect.h"
#include "protect-priv.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "store/store-protect.h"
#include "util/util.h"

int protect_vm_last_backup(Store *st, const OpCaller *c, const json_t *vm, json_t **ret, OpError *err) {
        (void) c; /* the caller read vm already: its points are visible to it */
        const char *uuid = jget_str(vm, "uuid");
        if (!uuid) {
                *ret = json_null();
                return 0;
        }
        json_t *p = NULL;
        int r = store_backup_point_last_good(st, uuid, &p);
        if (r == -ENOENT) {
                *ret = json_null();
                return 0;
        }
        if (r < 0)
                return op_fail_store(err, r, "the VM's last recovery point");
        json_t *at = json_object_get(p, "verified_at");
        json_t *verified = json_is_string(at)
                                   ? json_pack("{s:O, s:O}", "at", at, "ok", json_object_get(p, "verified_ok"))
                                   : json_null();
        json_object_del(p, "verified_at");
        json_object_del(p, "verified_ok");
        json_object_set_new(p, "last_verified", verified ? verified : json_null());
        time_t t;
        char ts[32];
        if (protect_point_time(jget_str(p, "point_id"), &t) == 0) {
                time_format((int64_t) t * 1000, ts);
                json_object_set_new(p, "taken_at", json_string(ts));
        }
        *ret = p;
        return 0;
}

/* A label value in the Prometheus text format: \, " and newline escaped. */
static void label_value(StrBuf *b, const char *s) {
        for (; s && *s; s++) {
                if (*s == '\\' || *s == '"')
                        strbuf_printf(b, "\\%c", *s);
                else if (*s == '\n')
                        strbuf_append(b, "\\n");
                else
                        strbuf_appendn(b, s, 1);
        }
}

int protect_backup_metrics(Store *st, int64_t now_ms_, StrBuf *b) {
        _cleanup_json_ json_t *all = NULL;
        int64_t unprotected = 0;
        time_t since = (time_t) (now_ms_ / 1000 - PROTECT_RPO_WINDOW_S);
        struct tm tm;
        char since_id[32];
        strftime(since_id, sizeof since_id, "%Y%m%dT%H%M%SZ", gmtime_r(&since, &tm));
        int r = store_backup_last_good_all(st, &all);
        if (r >= 0)
                r = store_backup_vms_unprotected(st, since_id, &unprotected);
        if (r < 0)
                return r;
        strbuf_printf(b, "# HELP armada_vms_without_recent_backup VMs of the inventory without a good recovery point in the"
                         " last %d hours.\n# TYPE armada_vms_without_recent_backup gauge\narmada_vms_without_recent_backup %lld\n",
                      PROTECT_RPO_WINDOW_S / 3600, (long long) unprotected);
        if (json_array_size(all) == 0)
                return 0;
        strbuf_append(b, "# HELP armada_vm_last_backup_timestamp_seconds When the newest good recovery point of the VM was"
                         " made (only VMs that have one).\n# TYPE armada_vm_last_backup_timestamp_seconds gauge\n");
        size_t i;
        json_t *v;
        json_array_foreach(all, i, v) {
                strbuf_append(b, "armada_vm_last_backup_timestamp_seconds{vm=\"");
                label_value(b, jget_str(v, "vm_name"));
                strbuf_append(b, "\",uuid=\"");
                label_value(b, jget_str(v, "vm_uuid"));
                time_t t = 0;
                (void) protect_point_time(jget_str(v, "point_id"), &t);
                strbuf_printf(b, "\"} %lld\n", (long long) t);
        }
        return 0;
}
