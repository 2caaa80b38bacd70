/* The consolidation assessment (P2V candidates): a thread scrapes
 * node_exporter on every registered physical server, turns its counters
 * into CPU, memory, disk and network figures, and stores them; the report
 * ranks the servers and packs them onto hosts with place_consolidate(). */
#include "monitor-priv.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <string.h>

typedef struct {
        StrBuf b;
        bool too_big;
} Body;

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Body *body = userdata;
        size_t n = size * nmemb;
        if (body->b.len + n > 16 << 20) {
                body->too_big = true;
                return 0;
        }
        strbuf_appendn(&body->b, ptr, n);
        return n;
}

/* GETs url; 0 and the body (malloc'd), or -EIO with a sentence in why. */
static int fetch(const char *url, long timeout_ms, char **ret, char *why, size_t why_size) {
        CURL *curl = curl_easy_init();
        if (!curl) {
                snprintf(why, why_size, "cannot initialise libcurl");
                return -ENOMEM;
        }
        Body body = {0};
        char err[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, err);
        CURLcode rc = curl_easy_perform(curl);
        long code = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(curl);
        if (rc != CURLE_OK || code != 200) {
                if (rc != CURLE_OK)
                        snprintf(why, why_size, "cannot scrape '%.300s': %s", url, body.too_big ? "the answer is larger than 16 MiB"
                                 : err[0] ? err : curl_easy_strerror(rc));
                else
                        snprintf(why, why_size, "cannot scrape '%.300s': it answered HTTP %ld", url, code);
                strbuf_free(&body.b);
                return -EIO;
        }
        *ret = strbuf_steal(&body.b);
        return 0;
}

static MonAssessPrev *prev_of(Monitor *m, int64_t id) {
        for (size_t i = 0; i < m->n_aprev; i++)
                if (m->aprev[i].id == id)
                        return &m->aprev[i];
        m->aprev = xrealloc(m->aprev, (m->n_aprev + 1) * sizeof *m->aprev);
        MonAssessPrev *p = &m->aprev[m->n_aprev++];
        memset(p, 0, sizeof *p);
        p->id = id;
        return p;
}

static double drate(double prev, double cur, double dt_s) {
        return dt_s > 0 && cur >= prev ? (cur - prev) / dt_s : NAN;
}

int monitor_assess_round(Monitor *m, int64_t now) {
        StoreAssessServer *srv = NULL;
        int n = store_assess_servers(m->st, &srv);
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *text = NULL;
                char why[512];
                MonNodeExporter ne;
                if (fetch(srv[i].url, 5000, &text, why, sizeof why) < 0) {
                        (void) store_assess_record(m->st, srv[i].id, false, now, NAN, NAN, NAN, NAN, NAN, 0, NAN, why);
                        continue;
                }
                if (mon_node_exporter_parse(text, &ne) < 0) {
                        snprintf(why, sizeof why, "'%.300s' does not serve node_exporter's metrics.", srv[i].url);
                        (void) store_assess_record(m->st, srv[i].id, false, now, NAN, NAN, NAN, NAN, NAN, 0, NAN, why);
                        continue;
                }
                MonAssessPrev *p = prev_of(m, srv[i].id);
                double dt = p->at > 0 ? (double) (now - p->at) / 1000.0 : 0;
                bool have = p->at > 0 && dt > 0;
                double cpu = NAN, iops = NAN, bps = NAN, mbit = NAN;
                if (have && ne.has_cpu) {
                        double total = ne.cpu_total_s - p->cpu_total, idle = ne.cpu_idle_s - p->cpu_idle;
                        if (total > 0 && idle >= 0)
                                cpu = fmax(0, fmin(100, (1 - idle / total) * 100));
                }
                if (have && ne.has_disk) {
                        iops = drate(p->disk_ops, ne.disk_reads + ne.disk_writes, dt);
                        bps = drate(p->disk_b, ne.disk_read_b + ne.disk_written_b, dt);
                }
                if (have && ne.has_net)
                        mbit = drate(p->net_b, ne.net_rx_b + ne.net_tx_b, dt) * 8 / 1e6;
                double mem_used = ne.has_memory ? (ne.memory_total_b - ne.memory_available_b) / 1048576.0 : NAN;
                (void) store_assess_record(m->st, srv[i].id, have, now, cpu, mem_used, iops, bps, mbit, ne.cpus,
                                           ne.has_memory ? ne.memory_total_b / 1048576.0 : NAN, NULL);
                *p = (MonAssessPrev) { .id = srv[i].id, .at = now, .cpu_total = ne.cpu_total_s, .cpu_idle = ne.cpu_idle_s,
                                       .disk_b = ne.disk_read_b + ne.disk_written_b, .disk_ops = ne.disk_reads + ne.disk_writes,
                                       .net_b = ne.net_rx_b + ne.net_tx_b };
        }
        free(srv);
        return n;
}

void *monitor_assess_main(void *arg) {
        Monitor *m = arg;
        int64_t next = mono_ms();
        for (;;) {
                if (monitor_sleep_until(m, next, false))
                        break;
                next += m->cfg.assess_interval_ms;
                (void) monitor_assess_round(m, now_ms());
                if (mono_ms() > next)
                        next = mono_ms();
        }
        return NULL;
}

/* ------------------------------------------------------------------ */
/* the report */

typedef struct {
        json_t *row;
        double key;
        bool spiky;
        double cpu_units, memory_mib, iops, mbit;
} Candidate;

static int cmp_candidate(const void *a, const void *b) {
        const Candidate *x = a, *y = b;
        if (x->spiky != y->spiky)
                return x->spiky ? 1 : -1;
        return x->key < y->key ? -1 : x->key > y->key;
}

static json_t *stat_json(const MonStat *s) {
        if (s->n == 0)
                return json_null();
        return json_pack("{s:f, s:f, s:f}", "mean", s->mean, "p95", s->p95, "max", s->max);
}

json_t *monitor_assess_report_json(Store *st, const PlaceHostModel *model, int64_t window_ms, int64_t now,
                                   char *why, size_t why_size) {
        _cleanup_json_ json_t *servers = NULL;
        if (store_assess_list_json(st, &servers) < 0) {
                snprintf(why, why_size, "A database error occurred while reading the assessment.");
                return NULL;
        }
        size_t n = json_array_size(servers);
        Candidate *cand = xcalloc(n + 1, sizeof *cand);
        size_t nc = 0;
        json_t *no_data = json_array();
        for (size_t i = 0; i < n; i++) {
                json_t *s = json_array_get(servers, i);
                int64_t id = json_integer_value(json_object_get(s, "id"));
                StoreAssessSample *smp = NULL;
                int k = store_assess_samples(st, id, now - window_ms, &smp);
                if (k <= 0) {
                        free(smp);
                        json_array_append_new(no_data, json_string(json_string_value(json_object_get(s, "name"))));
                        continue;
                }
                double *col = xcalloc((size_t) k, sizeof *col);
                MonStat st_[5];
                for (int f = 0; f < 5; f++) {
                        for (int j = 0; j < k; j++)
                                col[j] = f == 0 ? smp[j].cpu_pct : f == 1 ? smp[j].memory_used_mib : f == 2 ? smp[j].disk_iops
                                         : f == 3 ? smp[j].disk_bps : smp[j].net_mbit;
                        st_[f] = mon_stat(col, (size_t) k);
                }
                free(col);
                free(smp);
                unsigned cpus = (unsigned) json_integer_value(json_object_get(s, "cpus"));
                Candidate *c = &cand[nc++];
                c->spiky = mon_is_spiky(&st_[0]);
                c->key = isfinite(st_[0].p95) ? st_[0].p95 : 100;
                c->cpu_units = isfinite(st_[0].p95) ? st_[0].p95 * (cpus ? cpus : 1) : 0;
                c->memory_mib = isfinite(st_[1].p95) ? st_[1].p95 : 0;
                c->iops = isfinite(st_[2].p95) ? st_[2].p95 : 0;
                c->mbit = isfinite(st_[4].p95) ? st_[4].p95 : 0;
                c->row = json_pack("{s:I, s:s, s:i, s:I, s:o, s:o, s:o, s:o, s:o, s:b}",
                                   "id", (json_int_t) id, "name", json_string_value(json_object_get(s, "name")),
                                   "cpus", (int) cpus, "samples", (json_int_t) st_[0].n,
                                   "cpu_pct", stat_json(&st_[0]), "memory_used_mib", stat_json(&st_[1]),
                                   "disk_iops", stat_json(&st_[2]), "disk_bps", stat_json(&st_[3]),
                                   "net_mbit", stat_json(&st_[4]), "spiky", c->spiky);
                json_object_set_new(c->row, "demand", json_pack("{s:f, s:f, s:f, s:f}", "cpu_units", c->cpu_units,
                                                                "memory_mib", c->memory_mib, "disk_iops", c->iops,
                                                                "network_mbit", c->mbit));
        }
        qsort(cand, nc, sizeof *cand, cmp_candidate);
        PlaceServer *ps = xcalloc(nc + 1, sizeof *ps);
        ssize_t *host_of = xcalloc(nc + 1, sizeof *host_of);
        for (size_t i = 0; i < nc; i++) {
                ps[i].demand[PLACE_R_CPU] = cand[i].cpu_units;
                ps[i].demand[PLACE_R_MEMORY] = cand[i].memory_mib;
                ps[i].demand[PLACE_R_DISK_IO] = cand[i].iops;
                ps[i].demand[PLACE_R_NETWORK] = cand[i].mbit;
        }
        PlaceConsolidation plan = {0};
        json_t *board = json_array();
        int r = place_consolidate(ps, nc, model, host_of, &plan);
        for (size_t i = 0; i < nc; i++) {
                json_object_set_new(cand[i].row, "rank", json_integer((json_int_t) i + 1));
                json_object_set_new(cand[i].row, "plan_host", r == 0 && host_of[i] >= 0 ? json_integer(host_of[i] + 1) : json_null());
                json_array_append_new(board, cand[i].row);
        }
        free(ps);
        free(host_of);
        free(cand);
        if (r < 0) {
                json_decref(board);
                json_decref(no_data);
                snprintf(why, why_size, "The host model has invalid figures.");
                return NULL;
        }
        json_t *jmodel = json_pack("{s:f, s:f, s:f, s:f}", "cpu_units", model->cap[PLACE_R_CPU], "memory_mib",
                                   model->cap[PLACE_R_MEMORY], "disk_iops", model->cap[PLACE_R_DISK_IO], "network_mbit",
                                   model->cap[PLACE_R_NETWORK]);
        return json_pack("{s:I, s:o, s:o, s:{s:I, s:I, s:I}, s:o}", "window_s", (json_int_t) (window_ms / 1000),
                         "host_model", jmodel, "leaderboard", board, "plan", "hosts_needed", (json_int_t) plan.n_hosts,
                         "lower_bound", (json_int_t) plan.lower_bound, "unplaceable", (json_int_t) plan.n_unplaceable,
                         "no_data", no_data);
}
