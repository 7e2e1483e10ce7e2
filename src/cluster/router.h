/*
 * cluster/router — one API over many backends: the models a cluster config names, each served
 * by local engines (models loaded in this process) and remote shoal nodes alike.
 *
 * For every request of the model endpoints (completions, chat, embeddings, rerank, classify)
 * the router:
 *   1. parses the body at the edge (bad requests are answered 400 here, never forwarded);
 *   2. resolves the model name (aliases; a "rules" name picks its target model by regex on the
 *      request text or by request metadata);
 *   3. picks a backend with the name's policy (cluster/route.h) among the usable ones: health
 *      checks pass, the circuit is closed (or half-open with its one probe free), not draining;
 *   4. calls it — a local backend through the server's own handler, a remote one over HTTP
 *      (cluster/upstream.h, pooled keep-alive connections) with "model" rewritten to the name
 *      the backend knows;
 *   5. fails over: while nothing has reached the client (no token of a stream, no byte of a
 *      whole answer), a refused connection, a timeout, a 5xx or 429 answer moves the request to
 *      another backend of the same name (up to max_attempts); with hedging, a duplicate goes to
 *      a second backend after the first one's live p95 time-to-first-byte and the slower one is
 *      cancelled; when no backend of the name is usable, the name's fallback model answers and
 *      the response says so (X-Shoal-Fallback header; "shoal" object in whole answers);
 *   6. streams the answer through: SSE chunks are forwarded as they come; a backend failing
 *      mid-stream ends the stream with an SSE error event; a client that disconnects cancels
 *      the upstream generation (its connection is closed).
 *
 * Health: a thread checks every remote node's /health every health_interval_ms. A node that
 * fails fail_threshold consecutive checks or requests — or refuses a connection, which is
 * definitive — has its circuit opened (ejected); after cooldown_ms one probe (a health check
 * or a request) may close it again. A node answering 503 "draining" gets no new requests but
 * is not a failure. Nodes may join at run time (POST /v1/cluster/join with the join token,
 * repeated as a heartbeat); a joined node silent for node_ttl_ms is dropped.
 *
 * Log: every generation request ends in one router_log (ops.log), written when the client has
 * the whole answer — for a stream, when it ends or the client goes — with the backend that
 * answered. (A local backend's own request line, with its tokens and timings, is written by the
 * server's handler as well, with the same request id.)
 *
 * Threading: router_handle runs on the HTTP connection's thread and may block until the
 * backend answers; all shared state is under one mutex held only for decisions and updates.
 */
#ifndef SHOAL_CLUSTER_ROUTER_H
#define SHOAL_CLUSTER_ROUTER_H

#include <stdbool.h>

#include "cluster/config.h"
#include "core/err.h"
#include "http/http.h"
#include "metrics/metrics.h"

typedef struct router router;

/* One routed request, as the router logs it (ops.log). */
typedef struct router_log {
    const char *request_id, *traceparent, *path, *peer; /* traceparent: NULL or 55 chars */
    int status;              /* HTTP status the client got (200 for a stream that started) */
    const char *model;       /* the name asked for (aliases resolved), or NULL */
    const char *answered_by; /* the model name that answered (rules, fallback), or NULL */
    const char *backend;     /* "NODE/MODEL" or "local:NAME" that answered, or NULL */
    int attempts;            /* backends tried, hedge legs included */
    bool stream, hedged, fallback, degraded;
    const char *outcome;      /* "ok", "cancelled" (client went), "failed" (mid-stream) */
    double ttfb_ms, total_ms; /* from the request's arrival to the answer's start / end */
    const char *label;        /* classify routing, ensemble, pipeline: the label decided, or NULL */
    double confidence;        /* its probability (cascade: the accepted stage's signal); < 0: none */
    const char *decision;     /* a composition's decisions ("cascade tried=a:0.41,b:0.93 stage=2/2"), or NULL */
    const char *error;        /* the error answered, or NULL */
} router_log;

/* How the router reaches the models of its own process. generate() answers a request for local
 * model `local` (an index into cfg->locals) exactly as the node's HTTP handler would, with body
 * (the client's request, "model" rewritten to the local name) instead of the request's own.
 * kind is an oai_kind. */
typedef struct router_local_ops {
    void (*generate)(void *ud, int local, int kind, http_request *req, const char *body, size_t len,
                     http_response *resp);
    /* one record per generation request, from any thread (NULL: none); its strings are valid
     * during the call only */
    void (*log)(void *ud, const router_log *l);
    /* the stored conversation a Responses request continues (previous_response_id), as
     * "role\ncontent\n" per message, malloc'd; NULL when unknown or without a store (NULL: none).
     * Prefix affinity then hashes the whole conversation, so a continuation goes where the
     * conversation's first turn went and finds its prefix cache warm. */
    char *(*conversation)(void *ud, const char *response_id, size_t *len);
    void *ud;
} router_local_ops;

/* Builds the router for cfg (borrowed: it must outlive the router), registers its metrics in
 * met (borrowed), checks every remote node once (down nodes are reported on stderr, not
 * fatal; a node that is up but does not serve a model the config asks of it is an error) and
 * starts the health thread. NULL with err on failure. */
router *router_init(const cluster_config *cfg, const router_local_ops *ops, metrics *met,
                    sh_err *err);

/* Stops the health thread and frees everything. No request may be in flight. NULL is fine. */
void router_free(router *rt);

/* POST /v1/completions, /v1/chat/completions, /v1/embeddings, /v1/rerank, /v1/classify
 * (kind = oai_kind). */
void router_handle(router *rt, int kind, http_request *req, http_response *resp);

/* GET /v1/models: the cluster's model names (aliases listed in each entry's "aliases"). */
void router_models(router *rt, http_response *resp);

/* GET /v1/cluster: nodes, models, backends, health, circuit state, load, latency percentiles. */
void router_cluster(router *rt, http_response *resp);

/* POST /v1/cluster/join: a node announcing itself (and heartbeating). Authorized by the
 * config's join_token in the body, not by the API key. */
void router_join(router *rt, http_request *req, http_response *resp);

/* Requests the router is handling now (streams included). */
int router_active(router *rt);

#endif
