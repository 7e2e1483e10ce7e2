/*
 * cluster/router_int — what the router's own files share: its objects and the internal
 * functions between them. Not a contract for anyone else (only src/cluster/router*.c include
 * it; the public one is router.h):
 *   router.c          lifetime (init, free) and the error / JSON answers every file gives
 *   router_state.c    live state: latency windows, nodes, model names and their backends, the
 *                     routing decision (pick) and per-attempt accounting; GET /v1/models and
 *                     GET /v1/cluster, which report that state
 *   router_health.c   health checks (the thread), circuit breakers, the start-up check
 *   router_forward.c  router_handle: parse, name resolution (rules), attempts and failover,
 *                     fallback, local backends, the request log
 *   router_remote.c   remote attempts: legs, hedging, holding bytes until the commit,
 *                     streaming through
 *   router_join.c     POST /v1/cluster/join
 *   router_compose.c  the compositions' calls (compose/compose.h): a whole request run through
 *                     rt_forward for a model name, answered into a comp_answer
 *
 * The objects, all owned by the router and freed only by router_free (so a request in flight
 * never holds a dangling pointer when a node leaves):
 *   rt_node     a remote node: URL, key, health, circuit breaker        (nodes[], append-only)
 *   rt_backend  one way to serve one model name: a local model or a node's model, with its
 *               live load and latency windows                           (per model, append-only)
 *   rt_model    a model name of the API: aliases, policy, backends, rules, fallback, hedging
 *   rt_fwd      one forwarded request, from the decision to the end of its response
 * Everything mutable is guarded by rt->mu; the mutex is never held across I/O. "Under rt->mu"
 * below: the caller holds it.
 */
#ifndef SHOAL_CLUSTER_ROUTER_INT_H
#define SHOAL_CLUSTER_ROUTER_INT_H

#include <jansson.h>
#include <pthread.h>

#include "api/oai_req.h"
#include <stdbool.h>
#include <stdint.h>

#include "cluster/route.h"
#include "cluster/router.h"
#include "cluster/upstream.h"

#define RT_MAX_NODES 256
#define RT_MAX_MODELS 256
#define RT_MAX_BACKENDS 64    /* per model name */
#define RT_MAX_JOIN_MODELS 64 /* model names one join may announce */
#define RT_RULE_DEPTH 4       /* rules -> rules -> ... chains */
#define RT_MAX_ANSWER (64u << 20)

/* ============================================================ objects ===== */

/* The last RT_LAT_N samples of a latency (ms) with an EWMA and the window's percentiles, always
 * current (router_state.c keeps a sorted copy up to date on every sample). */
#define RT_LAT_N 256

typedef struct rt_lat_win {
    double v[RT_LAT_N];      /* ring of the samples, oldest at next once full */
    double sorted[RT_LAT_N]; /* the same n samples in ascending order */
    int n, next;
    double ewma, p50, p95, p99;
} rt_lat_win;

typedef enum rt_health { RT_HEALTH_UNKNOWN, RT_HEALTH_UP, RT_HEALTH_DOWN, RT_HEALTH_DRAINING } rt_health;
typedef enum rt_circ { RT_CIRC_CLOSED, RT_CIRC_OPEN, RT_CIRC_HALF_OPEN } rt_circ;

typedef struct rt_node {
    char *name, *url;
    char *auth;                 /* "Authorization: Bearer KEY" or NULL */
    bool joined, removed;       /* joined at run time / dropped (left or silent) */
    double last_seen_ms;        /* joined: last heartbeat */
    rt_health health;
    rt_circ circ;
    int consec_fail;
    double open_until_ms;       /* circuit open: half-open from then on */
    bool probe_busy;            /* half-open: the one probe request is out */
    char last_error[160];
    uint64_t ejections, failures;
    rt_lat_win check;           /* health-check round trips */
    metrics_series *m_eject, *m_up;
} rt_node;

typedef struct rt_backend {
    char *name;                 /* "local:NAME" or "NODE/MODEL" */
    int local;                  /* index into cfg->locals, or -1 */
    rt_node *node;              /* remote, or NULL */
    char *model;                /* the name the backend knows the model by */
    int capability;
    double weight;              /* weighted: share of the traffic (config; 1 for joined nodes) */
    int outstanding;
    int64_t out_tokens;
    rt_lat_win lat;             /* whole requests (ms) */
    rt_lat_win ttfb;            /* time to the first byte/token (ms): hedging */
    uint64_t ok, failed, cancelled;
    metrics_series *m_ok, *m_failed, *m_cancelled;
} rt_backend;

typedef struct rt_model {
    char *name;
    char **aliases;
    int n_aliases;
    int policy;                 /* route_policy or CCFG_POLICY_RULES */
    rt_backend **b;
    int n;
    route_config rc;
    route_state *rs;            /* rebuilt when a backend is added */
    route_rules *rules;
    char *default_target, *fallback;
    bool hedge;
    bool dynamic;               /* created by a join: a name only joined nodes serve */
    int cfg_index;              /* its entry in cfg->models, or -1 (joined names) */
    char *sticky;               /* weighted: "user" or "header:NAME", or NULL */
    double hedge_after_ms;
    metrics_series *m_decisions, *m_retries, *m_fallbacks, *m_hedges, *m_unavailable;
} rt_model;

struct router {
    const cluster_config *cfg;
    router_local_ops ops;
    metrics *met;
    upstream_pool *pool;
    pthread_mutex_t mu;
    rt_node *nodes[RT_MAX_NODES];
    int n_nodes;
    rt_model *models[RT_MAX_MODELS];
    int n_models;
    _Atomic int active;
    struct comp *comp;          /* compositions (compose/compose.h), or NULL when the config has none */
    metrics_series *m_added;
    pthread_t health_thread;
    bool health_started, stop;
    pthread_cond_t stop_cv;
};

/* One forwarded request (router_forward.c makes it; a stream's pull/done callbacks own it
 * once the answer is committed, and free it when the stream ends). */
typedef struct rt_fwd {
    router *rt;
    rt_model *asked;            /* the name the client used */
    rt_model *m;                /* the name answering (after rules and fallback) */
    rt_backend *b;
    int kind;
    bool stream, fallback_used, degraded;
    json_t *root;               /* the client's body, parsed; "model" rewritten per attempt */
    const char *raw;            /* the client's body as it came (valid while the handler runs) */
    size_t raw_len;
    bool root_changed;          /* root no longer says what raw says */
    int64_t tokens;             /* outstanding-token estimate of this request */
    double t_start;             /* when the answering attempt started */
    double t_req, t_commit;     /* when the request arrived / the answer started (monotonic ms) */
    int attempts;
    bool hedged;
    char rid[80], tp[64], peer[64];
    /* remote stream */
    upstream_call *call;
    char *held;                 /* bytes read before the commit / an error event to send */
    size_t held_len, held_off;
    bool ended;
    /* local stream */
    http_pull_fn lpull;
    http_done_fn ldone;
    void *lctx;
    /* the last failure, for the final error */
    int last_status;
    char last_error[256];
    int log_status;             /* a whole answer's status, for its record written once it is sent */
    /* an internal call of a composition: no log record of its own, its own first-byte timeout */
    bool internal;
    double timeout_ms;          /* > 0: overrides retry.first_byte_timeout_ms */
    /* classify routing and compositions: what they decided (headers and log) */
    char label[128];
    double confidence;          /* < 0: none */
    char decision[512];
} rt_fwd;

typedef enum rt_outcome { RT_OUT_OK, RT_OUT_FAILED, RT_OUT_CANCELLED } rt_outcome;
/* An attempt answered the request (resp is final, or a stream now owns the rt_fwd), or the
 * request should move to another backend. */
typedef enum rt_attempt_rc { RT_ATT_DONE, RT_ATT_RETRY } rt_attempt_rc;

/* ============================================================ router.c ===== */

/* resp answers status with j (consumed) as compact JSON; 500 with no body if it cannot be
 * written. */
void rt_respond_json(http_response *resp, int status, json_t *j);
/* resp answers status with an OpenAI-style error body (type, code or NULL, printf message). */
void rt_respond_err(http_response *resp, int status, const char *type, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ============================================================ router_state.c ===== */

/* Adds one sample (ms; negative or NaN counts as 0) and updates the EWMA and percentiles. */
void rt_lat_add(rt_lat_win *w, double ms);

/* "Authorization: Bearer KEY" (malloc'd), or NULL for no key / an empty one. */
char *rt_auth_header(const char *key);
/* Appends a node (health unknown, circuit closed) with its metrics. NULL when the router
 * holds RT_MAX_NODES already or memory runs out. Under rt->mu once the router serves. */
rt_node *rt_node_new(router *rt, const char *name, const char *url, const char *key, bool joined);
void rt_node_free(rt_node *n); /* NULL is fine */

/* The model a name or an alias of it means, or NULL. Under rt->mu once the router serves. */
rt_model *rt_find_model(router *rt, const char *name);
/* Appends an empty model name with the policy's defaults and its metrics. NULL with err. */
rt_model *rt_model_new(router *rt, const char *name, int policy, sh_err *err);
/* Adds a backend to m — local model `local` (node NULL) or node's model `model` — and rebuilds
 * m's route state. NULL with err (m unchanged). Under rt->mu once the router serves. */
rt_backend *rt_backend_add(router *rt, rt_model *m, int local, rt_node *node, const char *model,
                           int capability, sh_err *err);
void rt_model_free(rt_model *m); /* its backends too; NULL is fine */
/* The model name of config entry cm, with its backends (nodes must exist already). -1 with err. */
int rt_build_model(router *rt, const ccfg_model *cm, sh_err *err);

/* Request accounting: dir +1 when an attempt of `tokens` starts on b, -1 when it ends. Under
 * rt->mu. */
void rt_load_add(rt_backend *b, int64_t tokens, int dir);
/* Picks a backend of m with m's policy among the usable ones not in excluded[] and counts it
 * as loaded with `tokens`; a half-open node's one probe is taken. Sets *degraded when no
 * backend meets rq's deadline, *idx to its index in m->b. NULL when none is usable. Takes
 * rt->mu. */
rt_backend *rt_pick(router *rt, rt_model *m, const bool *excluded, const route_request *rq, int64_t tokens,
                    bool *degraded, int *idx);
/* The end of an attempt on b picked with `tokens`: unloads it and counts the outcome; an ok
 * one adds total_ms (if > 0) to b's latency window and closes its node's circuit. Takes rt->mu. */
void rt_attempt_end(router *rt, rt_backend *b, int64_t tokens, rt_outcome o, double total_ms);

/* ============================================================ router_health.c ===== */

/* Can the node take a request now? Moves an open circuit to half-open once its cooldown is
 * over. Under rt->mu. */
bool rt_node_usable(rt_node *n, double now);
/* shoal_router_node_up follows the node's state. Under rt->mu. */
void rt_node_update_gauge(rt_node *n);
/* A failed request or check: counts it and opens the circuit after fail_threshold in a row, at
 * once when half-open or hard (the connection was refused / the host is gone). Under rt->mu. */
void rt_node_trip(router *rt, rt_node *n, bool hard, const char *why);
/* A request or check that worked: the failure streak ends and the circuit closes. Under rt->mu. */
void rt_node_success(rt_node *n);
/* Start-up: every configured node is asked for /v1/models once. Down is a warning (the router
 * serves what it can and health checks bring the node in later); a host that does not
 * resolve, a refused api_key, or a node up without a model the config routes to it is an
 * error (-1 with err). Before the health thread starts. */
int rt_startup_check(router *rt, sh_err *err);
/* Starts / stops (and joins) the health-check thread. Start: -1 with err. Stop: a no-op when
 * it never started. */
int rt_health_start(router *rt, sh_err *err);
void rt_health_stop(router *rt);

/* ============================================================ router_forward.c ===== */

void rt_fwd_free(rt_fwd *f); /* with its upstream call, parsed body and held bytes; NULL is fine */
/* An internal call's options (rt_forward's call argument). */
typedef struct rt_call {
    double timeout_ms;          /* > 0: per-attempt first-byte timeout instead of the config's */
    char *backend;              /* out: the backend that answered ("" when none) */
    size_t backend_n;
} rt_call;
/* Runs one parsed request of `kind` through name resolution (aliases, rules, classify
 * routing), compositions, the name's policy, failover and fallback, and answers it in resp:
 * whole, or a stream that now owns what it needs. body[0..len): the request as it came
 * (borrowed, valid during the call); doc: its JSON parse (consumed); r: its typed parse
 * (borrowed). req: the client's request (id, traceparent, peer, arrival time, client-gone
 * check; a local backend's handler reads it). call: NULL for a client's request (one log
 * record); else an internal call of a composition: never streamed by the caller, no log
 * record of its own. */
void rt_forward(router *rt, int kind, const char *body, size_t len, json_t *doc, const oai_request *r,
                http_request *req, http_response *resp, rt_call *call);
/* The request's one log record (router.h) through ops.log; f may be NULL when the request
 * never got that far. outcome: NULL for a whole answer (then "ok" below 400, else none). */
void rt_route_log(router *rt, const rt_fwd *f, const char *rid, const char *tp, const char *peer, int kind,
                  double t_req, int status, const char *outcome, const char *error);
/* The body for backend b (malloc'd, *len its length): the client's, with "model" set to the
 * name b knows (the client's bytes as they are when that is the name they say). NULL when
 * memory runs out. */
char *rt_body_for(rt_fwd *f, const rt_backend *b, size_t *len);
/* X-Shoal-Backend, and X-Shoal-Fallback / X-Shoal-Degraded when they apply (f->b answered). */
void rt_add_route_headers(rt_fwd *f, http_response *resp);
/* A whole 200 JSON answer gains a "shoal" object when it came from a fallback model or a
 * degraded choice; anything else is left as it is. */
void rt_annotate_body(rt_fwd *f, http_response *resp);

/* ============================================================ router_compose.c ===== */

/* Builds rt->comp when the config has compositions (classify routing included). */
int rt_compose_init(router *rt, sh_err *err);
void rt_compose_free(router *rt);

/* ============================================================ router_remote.c ===== */

/* One attempt on remote backend b (index idx of m, already picked and loaded), with a hedge
 * leg on a second backend when m hedges. DONE: resp holds the answer (whole, a stream that
 * now owns f, or 499 when the client went). RETRY: nothing reached resp; excluded[] has every
 * backend that failed. */
rt_attempt_rc rt_try_remote(router *rt, rt_fwd *f, rt_model *m, rt_backend *b, int idx, bool *excluded,
                            const route_request *rq, http_request *req, const char *path, http_response *resp);

#endif
