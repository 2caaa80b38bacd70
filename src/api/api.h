/* api: armadad's HTTP server (libmicrohttpd): the REST API under /api/v1
 * (JSON in and out; described in docs/openapi.yaml), authentication by
 * bearer token, authorization through auth_policy_allows() for every
 * request, the audit trail, and the web console's static files.
 * Handlers never wait on a host: anything that does becomes a job (202). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include "store/store.h"
#include "jobs/jobs.h"
#include "inventory/inventory.h"

typedef struct {
        const char *listen_addr;     /* IPv4 address, default 127.0.0.1 */
        int port;                    /* default 8080; 0 picks a free port */
        const char *tls_cert;        /* PEM files; both or neither */
        const char *tls_key;
        const char *web_dir;         /* static files, may be NULL */
        int token_ttl_s;             /* default 12 h */
        size_t max_body;             /* default 1 MiB */
        unsigned threads;            /* default 4 */
        bool metrics_public;         /* /metrics answers without a token */
        unsigned per_ip_connections; /* open connections one address may hold; default 64 */
        unsigned idle_timeout_s;     /* a connection silent this long is closed; default 15 */
        bool allow_test_hosts;       /* POST /hosts accepts test: URIs (armadad --allow-test-hosts) */
        unsigned max_streams;        /* open GET /events/stream at once; default 64 */
        unsigned max_streams_per_user; /* of them, one user's; default 8 */
        struct Model *model;         /* the read model (model.h) lists and health read; NULL: api_new() makes one */
        struct Manager *manager;     /* manager.h: a standby refuses writes (503); NULL: always active */
} ApiConfig;

typedef struct Api Api;

int api_new(Store *st, Jobs *jobs, Inventory *inv, const ApiConfig *cfg, Api **ret);
/* Starts listening. Returns 0 or negative (logged). */
int api_start(Api *api);
/* The port actually bound (useful with port 0). */
int api_port(Api *api);
void api_stop(Api *api);
Api *api_free(Api *api);
