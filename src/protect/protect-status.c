/* What the console, scripts and /metrics read of the protection state: the
 * last good recovery point of a VM, and the backup families of /metrics.
 * Reads only, from the index of points (store-protect.c); never a walk of
 * a datastore. */
#include "protect.h"
#include "protect-priv.h"

#include <errno.h>
#include <pthread.h>
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

/* The families are rebuilt only when the index changed (the fingerprint
 * store_backup_status_key()) or PROTECT_METRICS_MAX_AGE_MS passed (the
 * 24-hour window moves, VMs are renamed): a build reads every VM, about
 * 250 ms at 20,000 VMs with five points each on a loaded machine, and
 * /metrics is asked often. */
#define PROTECT_METRICS_MAX_AGE_MS 60000
static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static char *metrics_text, *metrics_key;
static int64_t metrics_at;
static const void *metrics_store;

static int metrics_build(Store *st, int64_t now_ms_, char **ret) {
        _cleanup_json_ json_t *all = NULL;
        int r = store_backup_vms_last_good(st, &all);
        if (r < 0)
                return r;
        time_t since = (time_t) (now_ms_ / 1000 - PROTECT_RPO_WINDOW_S);
        struct tm tm;
        char since_id[32];
        strftime(since_id, sizeof since_id, "%Y%m%dT%H%M%SZ", gmtime_r(&since, &tm));
        StrBuf lines = { 0 }, b = { 0 };
        int64_t unprotected = 0;
        size_t i;
        json_t *v;
        json_array_foreach(all, i, v) {
                const char *pid = jget_str(v, "point_id");
                time_t t = 0;
                if (!pid || strcmp(pid, since_id) < 0)
                        unprotected++;
                if (!pid || protect_point_time(pid, &t) < 0)
                        continue;
                strbuf_append(&lines, "armada_vm_last_backup_timestamp_seconds{vm=\"");
                label_value(&lines, jget_str(v, "vm_name"));
                strbuf_append(&lines, "\",uuid=\"");
                label_value(&lines, jget_str(v, "vm_uuid"));
                strbuf_printf(&lines, "\"} %lld\n", (long long) t);
        }
        _cleanup_free_ char *body = strbuf_steal(&lines);
        strbuf_printf(&b, "# HELP armada_vms_without_recent_backup VMs of the inventory without a good recovery point in the"
                          " last %d hours.\n# TYPE armada_vms_without_recent_backup gauge\narmada_vms_without_recent_backup %lld\n",
                      PROTECT_RPO_WINDOW_S / 3600, (long long) unprotected);
        if (*body)
                strbuf_printf(&b, "# HELP armada_vm_last_backup_timestamp_seconds When the newest good recovery point of the VM"
                                  " was taken (only VMs that have one).\n# TYPE armada_vm_last_backup_timestamp_seconds gauge\n%s",
                              body);
        *ret = strbuf_steal(&b);
        return 0;
}

int protect_backup_metrics(Store *st, int64_t now_ms_, StrBuf *b) {
        _cleanup_json_ json_t *k = NULL;
        int r = store_backup_status_key(st, &k);
        if (r < 0)
                return r;
        _cleanup_free_ char *key = json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS);
        if (!key)
                return -ENOMEM;
        pthread_mutex_lock(&metrics_lock);
        if (!metrics_text || metrics_store != st || !streq(metrics_key, key) || now_ms_ - metrics_at >= PROTECT_METRICS_MAX_AGE_MS ||
            now_ms_ < metrics_at) {
                char *text = NULL;
                r = metrics_build(st, now_ms_, &text);
                if (r < 0) {
                        pthread_mutex_unlock(&metrics_lock);
                        return r;
                }
                free(metrics_text);
                free(metrics_key);
                metrics_text = text;
                metrics_key = steal_ptr(key);
                metrics_at = now_ms_;
                metrics_store = st;
        }
        strbuf_append(b, metrics_text);
        pthread_mutex_unlock(&metrics_lock);
        return 0;
}
