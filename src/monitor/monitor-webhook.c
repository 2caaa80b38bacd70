/* Webhook delivery: a thread of its own takes due deliveries from the
 * queue in the database, POSTs each payload as JSON with a bounded timeout,
 * and on failure schedules a retry with exponential backoff until the
 * attempts run out. Nothing else ever waits for it. */
#include "monitor-priv.h"

#include <curl/curl.h>
#include <string.h>

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata) {
        return size * nmemb;
}

/* POSTs payload to url. Returns true on a 2xx answer; status gets "HTTP
 * 200" or curl's reason. */
static bool post(const char *url, const char *payload, long timeout_ms, char *status, size_t status_size) {
        CURL *curl = curl_easy_init();
        if (!curl) {
                snprintf(status, status_size, "cannot initialise libcurl");
                return false;
        }
        struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
        hdrs = curl_slist_append(hdrs, "User-Agent: armadad-webhook/1");
        char err[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, err);
        CURLcode rc = curl_easy_perform(curl);
        long code = 0;
        bool ok = false;
        if (rc == CURLE_OK) {
                curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
                ok = code >= 200 && code < 300;
                snprintf(status, status_size, "HTTP %ld", code);
        } else
                snprintf(status, status_size, "%s", err[0] ? err : curl_easy_strerror(rc));
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(curl);
        return ok;
}

void *monitor_hooks_main(void *arg) {
        Monitor *m = arg;
        for (;;) {
                StoreDelivery *due = NULL;
                int n = store_delivery_due(m->st, now_ms(), 16, &due);
                for (int i = 0; i < n; i++) {
                        char status[256];
                        bool ok = post(due[i].url, due[i].payload, m->cfg.webhook_timeout_ms, status, sizeof status);
                        int attempts = due[i].attempts + 1;
                        int64_t next = 0;
                        if (!ok && attempts < m->cfg.webhook_max_attempts)
                                next = now_ms() + mon_backoff_ms(attempts, m->cfg.webhook_backoff_ms, 5 * 60 * 1000);
                        if (!ok)
                                log_warn("webhook '%s' failed (attempt %d): %s%s", due[i].url, attempts, status,
                                         next ? "; will retry" : "; giving up");
                        (void) store_delivery_done(m->st, due[i].id, due[i].webhook_id, ok, next, status, now_ms());
                        free(due[i].payload);
                }
                free(due);
                if (n > 0)
                        continue; /* more may be due */
                int64_t next_at, wait = 1000;
                if (store_delivery_next_at(m->st, &next_at) == 0) {
                        int64_t d = next_at - now_ms();
                        wait = d < 0 ? 0 : d < 1000 ? d : 1000;
                }
                if (monitor_sleep_until(m, mono_ms() + wait, true))
                        break;
        }
        return NULL;
}
