/*
 * cluster/router — see router.h.
 *
 * The objects, all owned by the router and freed only by router_free (so a request in flight
 * never holds a dangling pointer when a node leaves):
 *   rt_node     a remote node: URL, key, health, circuit breaker        (nodes[], append-only)
 *   rt_backend  one way to serve one model name: a local model or a node's model, with its
 *               live load and latency windows                           (per model, append-only)
 *   rt_model    a model name of the API: aliases, policy, backends, rules, fallback, hedging
 *   fwd         one forwarded request, from the decision to the end of its response
 * Everything mutable is guarded by rt->mu; the mutex is never held across I/O.
 */
#include "cluster/router.h"

#include <jansson.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/oai_req.h"
#include "cluster/route.h"
#include "cluster/upstream.h"
#include "core/mono.h"

#define RT_MAX_NODES 256
#define RT_MAX_MODELS 256
#define RT_MAX_BACKENDS 64    /* per model name */
#define RT_MAX_JOIN_MODELS 64 /* model names one join may announce */
#define RT_RULE_DEPTH 4       /* rules -> rules -> ... chains */
#define RT_MAX_ANSWER (64u << 20)

/* ============================================================ latency windows ===== */

/* The last LAT_N samples of a latency (ms) with an EWMA. A sorted copy of the window is kept
 * up to date on every sample (one binary search and one memmove to take the oldest sample out,
 * the same to put the new one in: well under a microsecond), so the percentiles a decision
 * reads are always current and no sample ever costs a sort. */
#define LAT_N 256

typedef struct lat_win {
    double v[LAT_N];      /* ring of the samples, oldest at next once full */
    double sorted[LAT_N]; /* the same n samples in ascending order */
    int n, next;
    double ewma, p50, p95, p99;
} lat_win;

/* The first index in a[0..n) whose value is >= x. */
static int lower_bound(const double *a, int n, double x) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (a[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static void lat_add(lat_win *w, double ms) {
    if (!(ms >= 0)) ms = 0; /* NaN never enters the window */
    if (w->n == LAT_N) { /* full: the oldest sample leaves */
        int k = lower_bound(w->sorted, w->n, w->v[w->next]);
        memmove(&w->sorted[k], &w->sorted[k + 1], (size_t)(w->n - k - 1) * sizeof(double));
        w->n--;
    }
    int k = lower_bound(w->sorted, w->n, ms);
    memmove(&w->sorted[k + 1], &w->sorted[k], (size_t)(w->n - k) * sizeof(double));
    w->sorted[k] = ms;
    w->n++;
    w->v[w->next] = ms;
    w->next = (w->next + 1) % LAT_N;
    w->ewma = w->n == 1 ? ms : 0.8 * w->ewma + 0.2 * ms;
    w->p50 = w->sorted[(w->n - 1) * 50 / 100];
    w->p95 = w->sorted[(w->n - 1) * 95 / 100];
    w->p99 = w->sorted[(w->n - 1) * 99 / 100];
}

static json_t *lat_json(const lat_win *w) {
    return json_pack("{s:i, s:f, s:f, s:f, s:f}", "samples", w->n, "ewma", w->ewma, "p50", w->p50,
                     "p95", w->p95, "p99", w->p99);
}

/* ============================================================ objects ===== */

typedef enum node_health { HEALTH_UNKNOWN, HEALTH_UP, HEALTH_DOWN, HEALTH_DRAINING } node_health;
typedef enum circ_state { CIRC_CLOSED, CIRC_OPEN, CIRC_HALF_OPEN } circ_state;

static const char *const health_names[] = {"unknown", "up", "down", "draining"};
static const char *const circ_names[] = {"closed", "open", "half_open"};

typedef struct rt_node {
    char *name, *url;
    char *auth;                 /* "Authorization: Bearer KEY" or NULL */
    bool joined, removed;       /* joined at run time / dropped (left or silent) */
    double last_seen_ms;        /* joined: last heartbeat */
    node_health health;
    circ_state circ;
    int consec_fail;
    double open_until_ms;       /* circuit open: half-open from then on */
    bool probe_busy;            /* half-open: the one probe request is out */
    char last_error[160];
    uint64_t ejections, failures;
    lat_win check;              /* health-check round trips */
    metrics_series *m_eject, *m_up;
} rt_node;

typedef struct rt_backend {
    char *name;                 /* "local:NAME" or "NODE/MODEL" */
    int local;                  /* index into cfg->locals, or -1 */
    rt_node *node;              /* remote, or NULL */
    char *model;                /* the name the backend knows the model by */
    int capability;
    int outstanding;
    int64_t out_tokens;
    lat_win lat;                /* whole requests (ms) */
    lat_win ttfb;               /* time to the first byte/token (ms): hedging */
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
    metrics_series *m_added;
    pthread_t health_thread;
    bool health_started, stop;
    pthread_cond_t stop_cv;
};

/* ============================================================ small helpers ===== */

static double now_ms(void) { return http_now_ms(); }

static void respond_json(http_response *resp, int status, json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(j);
    resp->status = s ? status : 500;
    resp->content_type = "application/json";
    resp->body = s;
    resp->body_len = s ? strlen(s) : 0;
}

static void respond_err(http_response *resp, int status, const char *type, const char *code,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void respond_err(http_response *resp, int status, const char *type, const char *code,
                        const char *fmt, ...) {
    oai_error e = {.status = status, .type = type, .code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    char *s = oai_error_body(&e);
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = s;
    resp->body_len = s ? strlen(s) : 0;
}

static metrics_series *counter(router *rt, const char *name, const char *help, const char *k1,
                               const char *v1, const char *k2, const char *v2) {
    char l[320], e1[128], e2[128];
    if (k2)
        snprintf(l, sizeof l, "%s=\"%s\",%s=\"%s\"", k1, metrics_label_escape(v1, e1, sizeof e1), k2,
                 metrics_label_escape(v2, e2, sizeof e2));
    else
        snprintf(l, sizeof l, "%s=\"%s\"", k1, metrics_label_escape(v1, e1, sizeof e1));
    return metrics_counter(rt->met, name, help, l);
}

/* ============================================================ nodes and circuits ===== */

static char *auth_header(const char *key) {
    if (!key || !*key) return NULL;
    size_t n = strlen(key) + 32;
    char *h = malloc(n);
    if (h) snprintf(h, n, "Authorization: Bearer %s", key);
    return h;
}

static rt_node *node_new(router *rt, const char *name, const char *url, const char *key, bool joined) {
    if (rt->n_nodes == RT_MAX_NODES) return NULL;
    rt_node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->name = strdup(name);
    n->url = strdup(url);
    n->auth = auth_header(key);
    n->joined = joined;
    char l[200], e[160];
    snprintf(l, sizeof l, "node=\"%s\"", metrics_label_escape(name, e, sizeof e));
    n->m_eject = metrics_counter(rt->met, "shoal_router_ejections_total",
                                 "Times a node's circuit opened (taken out of rotation) after failures.", l);
    n->m_up = metrics_gauge(rt->met, "shoal_router_node_up",
                            "1 when a node can take requests (healthy, circuit not open, not draining).", l);
    rt->nodes[rt->n_nodes++] = n;
    return n;
}

static void node_free(rt_node *n) {
    if (!n) return;
    free(n->name);
    free(n->url);
    free(n->auth);
    free(n);
}

/* Can the node take a request now? Moves an open circuit to half-open once its cooldown is
 * over. Under rt->mu. */
static bool node_usable(rt_node *n, double now) {
    if (n->removed || n->health == HEALTH_DOWN || n->health == HEALTH_DRAINING) return false;
    if (n->circ == CIRC_OPEN) {
        if (now < n->open_until_ms) return false;
        n->circ = CIRC_HALF_OPEN;
        n->probe_busy = false;
    }
    return n->circ == CIRC_CLOSED || !n->probe_busy;
}

static void node_update_gauge(rt_node *n) {
    bool up = !n->removed && n->health != HEALTH_DOWN && n->health != HEALTH_DRAINING && n->circ != CIRC_OPEN;
    metrics_set(n->m_up, up ? 1 : 0);
}

/* A failed request or check. hard: the connection was refused / the host is gone — no need to
 * wait for more evidence. Under rt->mu. */
static void node_trip(router *rt, rt_node *n, bool hard, const char *why) {
    n->failures++;
    n->consec_fail++;
    snprintf(n->last_error, sizeof n->last_error, "%s", why ? why : "");
    if (n->circ == CIRC_OPEN) return;
    if (n->circ == CIRC_HALF_OPEN || hard || n->consec_fail >= rt->cfg->fail_threshold) {
        n->circ = CIRC_OPEN;
        n->open_until_ms = now_ms() + rt->cfg->cooldown_ms;
        n->probe_busy = false;
        n->ejections++;
        metrics_inc(n->m_eject, 1);
        fprintf(stderr, "shoal: router: node %s (%s) ejected: %s\n", n->name, n->url, why ? why : "failures");
    }
    node_update_gauge(n);
}

static void node_success(rt_node *n) {
    n->consec_fail = 0;
    if (n->circ != CIRC_CLOSED) fprintf(stderr, "shoal: router: node %s (%s) back in rotation\n", n->name, n->url);
    n->circ = CIRC_CLOSED;
    n->probe_busy = false;
    node_update_gauge(n);
}

/* ============================================================ models and backends ===== */

static rt_model *find_model(router *rt, const char *name) {
    for (int i = 0; i < rt->n_models; i++) {
        rt_model *m = rt->models[i];
        if (!strcmp(m->name, name)) return m;
        for (int k = 0; k < m->n_aliases; k++)
            if (!strcmp(m->aliases[k], name)) return m;
    }
    return NULL;
}

/* The route state is rebuilt over the current backends (it hashes their names for the ring). */
static int model_rebuild(rt_model *m, sh_err *err) {
    if (m->policy == CCFG_POLICY_RULES || m->n == 0) return 0;
    route_backend rb[RT_MAX_BACKENDS];
    for (int i = 0; i < m->n; i++) rb[i] = (route_backend){.name = m->b[i]->name, .healthy = true};
    route_state *st = route_init(&m->rc, rb, m->n, err);
    if (!st) return -1;
    route_free(m->rs);
    m->rs = st;
    return 0;
}

static rt_backend *backend_add(router *rt, rt_model *m, int local, rt_node *node, const char *model,
                               int capability, sh_err *err) {
    if (m->n == RT_MAX_BACKENDS) return sh_errf(err, "model '%s': more than %d backends", m->name, RT_MAX_BACKENDS), NULL;
    rt_backend *b = calloc(1, sizeof *b);
    if (!b) return sh_errf(err, "out of memory"), NULL;
    b->local = local;
    b->node = node;
    b->capability = capability;
    b->model = strdup(model);
    size_t nl = strlen(model) + (node ? strlen(node->name) : 0) + 8;
    b->name = malloc(nl);
    if (!b->model || !b->name) {
        free(b->model), free(b->name), free(b);
        return sh_errf(err, "out of memory"), NULL;
    }
    if (node) snprintf(b->name, nl, "%s/%s", node->name, model);
    else snprintf(b->name, nl, "local:%s", model);
    const char *h = "Requests per backend by outcome (ok, failed, cancelled).";
    b->m_ok = counter(rt, "shoal_router_backend_requests_total", h, "backend", b->name, "outcome", "ok");
    b->m_failed = counter(rt, "shoal_router_backend_requests_total", h, "backend", b->name, "outcome", "failed");
    b->m_cancelled = counter(rt, "shoal_router_backend_requests_total", h, "backend", b->name, "outcome", "cancelled");
    m->b[m->n++] = b;
    if (model_rebuild(m, err)) {
        m->n--;
        free(b->model), free(b->name), free(b);
        return NULL;
    }
    return b;
}

static rt_model *model_new(router *rt, const char *name, int policy, sh_err *err) {
    if (rt->n_models == RT_MAX_MODELS) return sh_errf(err, "more than %d model names", RT_MAX_MODELS), NULL;
    rt_model *m = calloc(1, sizeof *m);
    if (m) m->b = calloc(RT_MAX_BACKENDS, sizeof *m->b);
    if (!m || !m->b || !(m->name = strdup(name))) {
        if (m) free(m->b);
        free(m);
        return sh_errf(err, "out of memory"), NULL;
    }
    m->policy = policy;
    m->rc = (route_config){.policy = policy == CCFG_POLICY_RULES ? ROUTE_ROUND_ROBIN : (route_policy)policy,
                           .prefix_bytes = 256, .load_factor = 1.25, .vnodes = 64,
                           .seed = (uint64_t)time(NULL) ^ (uintptr_t)m};
    const char *pname = policy == CCFG_POLICY_RULES ? "rules" : route_policy_name((route_policy)policy);
    m->m_decisions = counter(rt, "shoal_router_decisions_total", "Routing decisions by model name and policy.",
                             "model", name, "policy", pname);
    m->m_retries = counter(rt, "shoal_router_retries_total",
                           "Requests moved to another backend after a failure before any output.", "model", name, NULL, NULL);
    m->m_fallbacks = counter(rt, "shoal_router_fallbacks_total",
                             "Requests answered by the fallback model because this one had no usable backend.",
                             "model", name, NULL, NULL);
    m->m_hedges = counter(rt, "shoal_router_hedges_total", "Duplicate (hedged) requests sent.", "model", name, NULL, NULL);
    m->m_unavailable = counter(rt, "shoal_router_unavailable_total",
                               "Requests that no backend (nor fallback) could answer.", "model", name, NULL, NULL);
    rt->models[rt->n_models++] = m;
    return m;
}

static void model_free(rt_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        free(m->b[i]->name);
        free(m->b[i]->model);
        free(m->b[i]);
    }
    free(m->b);
    for (int i = 0; i < m->n_aliases; i++) free(m->aliases[i]);
    free(m->aliases);
    route_free(m->rs);
    route_rules_free(m->rules);
    free(m->default_target);
    free(m->fallback);
    free(m->name);
    free(m);
}

static int build_model(router *rt, const ccfg_model *cm, sh_err *err) {
    const cluster_config *c = rt->cfg;
    rt_model *m = model_new(rt, cm->name, cm->policy, err);
    if (!m) return -1;
    m->aliases = calloc((size_t)cm->n_aliases + 1, sizeof *m->aliases);
    if (!m->aliases) return sh_errf(err, "out of memory");
    for (int i = 0; i < cm->n_aliases; i++) m->aliases[m->n_aliases++] = strdup(cm->aliases[i]);
    m->rc.prefix_bytes = cm->prefix_bytes ? cm->prefix_bytes : 256;
    m->rc.load_factor = cm->load_factor > 1 ? cm->load_factor : 1.25;
    m->rc.vnodes = cm->vnodes > 0 ? cm->vnodes : 64;
    m->hedge = cm->hedge;
    m->hedge_after_ms = cm->hedge_after_ms;
    if (cm->fallback) m->fallback = strdup(cm->fallback);
    if (cm->default_target) m->default_target = strdup(cm->default_target);
    if (cm->policy == CCFG_POLICY_RULES) {
        route_rule rr[64];
        int n = cm->n_rules < 64 ? cm->n_rules : 64;
        for (int i = 0; i < n; i++)
            rr[i] = (route_rule){.pattern = cm->rules[i].pattern, .meta_key = cm->rules[i].meta_key,
                                 .meta_value = cm->rules[i].meta_value, .target = cm->rules[i].target};
        if (!(m->rules = route_rules_init(rr, n, err))) {
            sh_err_prefix(err, cm->name);
            return -1;
        }
        return 0;
    }
    for (int i = 0; i < cm->n_backends; i++) {
        const ccfg_backend *cb = &cm->backends[i];
        if (cb->local) {
            int li = -1;
            for (int k = 0; k < c->n_locals; k++)
                if (!strcmp(c->locals[k].name, cb->local)) li = k;
            if (li < 0) return sh_errf(err, "model '%s': unknown local model '%s'", cm->name, cb->local);
            if (!backend_add(rt, m, li, NULL, cb->local, cb->capability, err)) return -1;
        } else {
            rt_node *node = NULL;
            for (int k = 0; k < rt->n_nodes; k++)
                if (!strcmp(rt->nodes[k]->name, cb->node)) node = rt->nodes[k];
            if (!node) return sh_errf(err, "model '%s': unknown node '%s'", cm->name, cb->node);
            if (!backend_add(rt, m, -1, node, cb->model ? cb->model : cm->name, cb->capability, err)) return -1;
        }
    }
    return 0;
}

/* ============================================================ health checks ===== */

typedef struct check {
    rt_node *node;
    char url[600];
    char auth[600];
    upstream_call *call;
} check;

/* Checks up to 8 nodes at once: GET /health, all in flight together, at most timeout ms. */
static void check_batch(router *rt, check *ck, int n) {
    upstream_call *calls[8];
    const char *hdr[8][2];
    double t0 = now_ms();
    for (int i = 0; i < n; i++) {
        hdr[i][0] = ck[i].auth[0] ? ck[i].auth : NULL;
        hdr[i][1] = NULL;
        upstream_req r = {.method = "GET", .url = ck[i].url, .headers = hdr[i],
                          .connect_timeout_ms = rt->cfg->health_timeout_ms, .timeout_ms = rt->cfg->health_timeout_ms};
        calls[i] = ck[i].call = upstream_start(rt->pool, &r, NULL);
    }
    for (;;) {
        int pending = 0;
        for (int i = 0; i < n; i++) {
            if (!calls[i]) continue;
            char sink[512];
            while (upstream_read(calls[i], sink, sizeof sink) > 0) {}
            upstream_state st = upstream_get_state(calls[i]);
            if (st != UPSTREAM_DONE && st != UPSTREAM_FAILED) pending++;
        }
        if (!pending || now_ms() - t0 > rt->cfg->health_timeout_ms + 200) break;
        upstream_call *live[8];
        int nl = 0;
        for (int i = 0; i < n; i++)
            if (calls[i]) live[nl++] = calls[i];
        upstream_poll(live, nl, 50);
    }
    double took = now_ms() - t0;
    pthread_mutex_lock(&rt->mu);
    for (int i = 0; i < n; i++) {
        rt_node *nd = ck[i].node;
        upstream_call *c = ck[i].call;
        upstream_state st = c ? upstream_get_state(c) : UPSTREAM_FAILED;
        int status = c ? upstream_status(c) : 0;
        if (nd->removed) {
        } else if (st == UPSTREAM_DONE && status == 200) {
            nd->health = HEALTH_UP;
            lat_add(&nd->check, took);
            if (nd->circ == CIRC_CLOSED || (nd->circ == CIRC_OPEN && now_ms() >= nd->open_until_ms) ||
                nd->circ == CIRC_HALF_OPEN)
                node_success(nd);
        } else if (st == UPSTREAM_DONE && status == 503) {
            if (nd->health != HEALTH_DRAINING)
                fprintf(stderr, "shoal: router: node %s (%s) is draining\n", nd->name, nd->url);
            nd->health = HEALTH_DRAINING; /* not a failure: it finishes what it has */
        } else {
            char why[160];
            if (st == UPSTREAM_FAILED) snprintf(why, sizeof why, "health check: %s", c ? upstream_error(c) : "could not start");
            else if (st != UPSTREAM_DONE) snprintf(why, sizeof why, "health check: no answer in %.0f ms", rt->cfg->health_timeout_ms);
            else snprintf(why, sizeof why, "health check: HTTP %d", status);
            nd->health = HEALTH_DOWN;
            node_trip(rt, nd, c && upstream_connect_failed(c), why);
        }
        node_update_gauge(nd);
    }
    pthread_mutex_unlock(&rt->mu);
    for (int i = 0; i < n; i++) upstream_free(ck[i].call);
}

static void check_all(router *rt) {
    check ck[8];
    int n = 0;
    double now = now_ms();
    pthread_mutex_lock(&rt->mu);
    int total = rt->n_nodes;
    pthread_mutex_unlock(&rt->mu);
    for (int i = 0; i < total; i++) {
        pthread_mutex_lock(&rt->mu);
        rt_node *nd = rt->nodes[i];
        if (nd->joined && !nd->removed && now - nd->last_seen_ms > rt->cfg->node_ttl_ms) {
            nd->removed = true;
            node_update_gauge(nd);
            fprintf(stderr, "shoal: router: node %s (%s) dropped: no heartbeat for %.0f ms\n", nd->name,
                    nd->url, now - nd->last_seen_ms);
        }
        bool skip = nd->removed;
        if (!skip) {
            ck[n].node = nd;
            snprintf(ck[n].url, sizeof ck[n].url, "%s/health", nd->url);
            snprintf(ck[n].auth, sizeof ck[n].auth, "%s", nd->auth ? nd->auth : "");
            ck[n].call = NULL;
        }
        pthread_mutex_unlock(&rt->mu);
        if (!skip && ++n == 8) check_batch(rt, ck, n), n = 0;
    }
    if (n) check_batch(rt, ck, n);
}

static void *health_main(void *arg) {
    router *rt = arg;
    pthread_mutex_lock(&rt->mu);
    while (!rt->stop) {
        pthread_mutex_unlock(&rt->mu);
        check_all(rt);
        pthread_mutex_lock(&rt->mu);
        struct timespec ts = mono_deadline(rt->cfg->health_interval_ms);
        if (!rt->stop) pthread_cond_timedwait(&rt->stop_cv, &rt->mu, &ts);
    }
    pthread_mutex_unlock(&rt->mu);
    return NULL;
}

/* ============================================================ the request's text ===== */

/* What rules match on and prefix affinity hashes: the prompt, the chat messages (role and
 * content, in order), the first embedding / classify input or the rerank query. Token-id
 * prompts hash their id bytes. */
static char *request_text(const oai_request *r, size_t *len) {
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f) return NULL;
    if (r->kind == OAI_CHAT) {
        for (size_t i = 0; i < r->n_messages; i++)
            fprintf(f, "%s\n%s\n", r->messages[i].role, r->messages[i].content ? r->messages[i].content : "");
    } else if (r->kind == OAI_EMBEDDING || r->kind == OAI_CLASSIFY) {
        if (r->n_inputs && r->inputs) fputs(r->inputs[0], f);
        else if (r->n_inputs) fwrite(r->input_ids[0], sizeof **r->input_ids, r->n_input_ids[0], f);
    } else if (r->kind == OAI_RERANK) {
        fputs(r->query, f);
    } else if (r->prompt) {
        fputs(r->prompt, f);
    } else if (r->prompt_ids) {
        fwrite(r->prompt_ids, sizeof *r->prompt_ids, r->n_prompt_ids, f);
    }
    fclose(f);
    *len = n;
    return s;
}

/* ============================================================ forwarding ===== */

typedef struct fwd {
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
} fwd;

static void fwd_free(fwd *f) {
    if (!f) return;
    upstream_free(f->call);
    json_decref(f->root);
    free(f->held);
    free(f);
}

/* The endpoint of each oai_kind. */
static const char *const kind_path[OAI_KIND_COUNT] = {"/v1/completions", "/v1/chat/completions",
                                                      "/v1/embeddings", "/v1/rerank", "/v1/classify"};

/* The request's one log record (router.h); f may be NULL when the request never got that far.
 * outcome: NULL for a whole answer. */
static void route_log(router *rt, const fwd *f, const char *rid, const char *tp, const char *peer,
                      int kind, double t_req, int status, const char *outcome, const char *error) {
    if (!rt->ops.log) return;
    const double now = now_ms();
    router_log l = {.request_id = rid,
                    .traceparent = tp && tp[0] ? tp : NULL,
                    .peer = peer,
                    .path = kind >= 0 && kind < OAI_KIND_COUNT ? kind_path[kind] : "",
                    .status = status,
                    .outcome = outcome        ? outcome
                               : status < 400 ? "ok"
                                              : NULL,
                    .error = error,
                    .total_ms = now - t_req,
                    .ttfb_ms = now - t_req};
    if (f) {
        l.model = f->asked ? f->asked->name : NULL;
        l.answered_by = f->m && f->b ? f->m->name : NULL;
        l.backend = f->b ? f->b->name : NULL;
        l.attempts = f->attempts;
        l.stream = f->stream;
        l.hedged = f->hedged;
        l.fallback = f->fallback_used;
        l.degraded = f->degraded;
        if (f->t_commit > 0) l.ttfb_ms = f->t_commit - t_req;
    }
    rt->ops.log(rt->ops.ud, &l);
}

/* An error answer's message for the log: error.message of its JSON body, else fallback. */
static void answer_error(const http_response *resp, const char *fallback, char *out, size_t n) {
    json_t *j = resp->body ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    snprintf(out, n, "%s", m ? m : fallback);
    json_decref(j);
}

/* Request accounting: start and end of one attempt on a backend. Under rt->mu. */
static void load_add(rt_backend *b, int64_t tokens, int dir) {
    b->outstanding += dir;
    b->out_tokens += dir * tokens;
}

typedef enum outcome { OUT_OK, OUT_FAILED, OUT_CANCELLED } outcome;

static void attempt_end(router *rt, fwd *f, rt_backend *b, outcome o, double total_ms) {
    pthread_mutex_lock(&rt->mu);
    load_add(b, f->tokens, -1);
    if (o == OUT_OK) {
        b->ok++;
        metrics_inc(b->m_ok, 1);
        if (total_ms > 0) lat_add(&b->lat, total_ms);
        if (b->node) node_success(b->node);
    } else if (o == OUT_FAILED) {
        b->failed++;
        metrics_inc(b->m_failed, 1);
    } else {
        b->cancelled++;
        metrics_inc(b->m_cancelled, 1);
        if (b->node && b->node->circ == CIRC_HALF_OPEN) b->node->probe_busy = false;
    }
    pthread_mutex_unlock(&rt->mu);
}

/* Picks a backend of m not in excluded[]; counts it as loaded. NULL when none is usable. */
static rt_backend *pick(router *rt, fwd *f, rt_model *m, const bool *excluded, const route_request *rq, int *idx) {
    route_backend rb[RT_MAX_BACKENDS];
    double now = now_ms();
    pthread_mutex_lock(&rt->mu);
    int n = m->n;
    for (int i = 0; i < n; i++) {
        rt_backend *b = m->b[i];
        rb[i] = (route_backend){.name = b->name, .healthy = !b->node || node_usable(b->node, now),
                                .outstanding_tokens = b->out_tokens, .outstanding = b->outstanding,
                                .ewma_ms = b->lat.ewma, .p95_ms = b->lat.p95, .capability = b->capability};
    }
    route_decision d = {.backend = -1};
    rt_backend *b = NULL;
    if (m->rs && route_pick(m->rs, rb, n, excluded, rq, &d) >= 0) {
        b = m->b[d.backend];
        if (b->node && b->node->circ == CIRC_HALF_OPEN) b->node->probe_busy = true;
        load_add(b, f->tokens, +1);
        metrics_inc(m->m_decisions, 1);
        if (d.degraded) f->degraded = true;
        *idx = d.backend;
    }
    pthread_mutex_unlock(&rt->mu);
    return b;
}

/* The body for backend b: the client's, with "model" set to the name b knows. */
static char *body_for(fwd *f, const rt_backend *b, size_t *len) {
    /* the backend knows the model by the name the client used: the client's bytes as they are
     * (no re-serialisation on the common path) */
    const char *asked = json_string_value(json_object_get(f->root, "model"));
    if (f->raw && !f->root_changed && !f->degraded && asked && !strcmp(asked, b->model)) {
        char *s = malloc(f->raw_len + 1);
        if (!s) return NULL;
        memcpy(s, f->raw, f->raw_len);
        s[f->raw_len] = 0;
        *len = f->raw_len;
        return s;
    }
    f->root_changed = true;
    json_object_set_new(f->root, "model", json_string(b->model));
    /* degraded: no backend is expected to meet the deadline; the client gets a late answer
     * marked as such, rather than a refusal from a node that checks the deadline itself */
    if (f->degraded) json_object_del(f->root, "deadline_ms");
    char *s = json_dumps(f->root, JSON_COMPACT);
    *len = s ? strlen(s) : 0;
    return s;
}

static void add_route_headers(fwd *f, http_response *resp) {
    http_resp_header(resp, "X-Shoal-Backend", f->b->name);
    if (f->fallback_used) http_resp_header(resp, "X-Shoal-Fallback", f->m->name);
    if (f->degraded) http_resp_header(resp, "X-Shoal-Degraded", "deadline");
}

/* Whole answers say how they were routed when that matters to the client: a fallback model or
 * a degraded latency choice. */
static void annotate_body(fwd *f, http_response *resp) {
    if (!f->fallback_used && !f->degraded) return;
    if (resp->status != 200 || !resp->body) return;
    json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return;
    }
    json_t *info = json_object();
    json_object_set_new(info, "backend", json_string(f->b->name));
    if (f->fallback_used) {
        json_object_set_new(info, "fallback", json_true());
        json_object_set_new(info, "requested_model", json_string(f->asked->name));
        json_object_set_new(info, "answered_by", json_string(f->m->name));
    }
    if (f->degraded) json_object_set_new(info, "degraded", json_string("no backend's p95 fits deadline_ms"));
    json_object_set_new(j, "shoal", info);
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(j);
    if (!s) return;
    free(resp->body);
    resp->body = s;
    resp->body_len = strlen(s);
}

/* ---- local backends ---------------------------------------------------------------- */

static ssize_t local_pull(void *ctx, char *buf, size_t max) {
    fwd *f = ctx;
    return f->lpull(f->lctx, buf, max);
}

static void local_done(void *ctx, bool aborted) {
    fwd *f = ctx;
    f->ldone(f->lctx, aborted);
    attempt_end(f->rt, f, f->b, aborted ? OUT_CANCELLED : OUT_OK, now_ms() - f->t_start);
    route_log(f->rt, f, f->rid, f->tp, f->peer, f->kind, f->t_req, 200,
              aborted ? "cancelled" : "ok", NULL);
    atomic_fetch_sub(&f->rt->active, 1);
    fwd_free(f);
}

typedef enum attempt_rc { ATT_DONE, ATT_RETRY } attempt_rc;

static attempt_rc try_local(router *rt, fwd *f, rt_backend *b, http_request *req, http_response *resp) {
    size_t len;
    char *body = body_for(f, b, &len);
    if (!body) {
        attempt_end(rt, f, b, OUT_FAILED, 0);
        return ATT_RETRY;
    }
    f->t_start = now_ms();
    memset(resp, 0, sizeof *resp);
    rt->ops.generate(rt->ops.ud, b->local, f->kind, req, body, len, resp);
    free(body);
    if (resp->status == 429 || resp->status == 503) {
        /* queue full or shutting down: another backend may have room */
        f->last_status = resp->status;
        snprintf(f->last_error, sizeof f->last_error, "%s answered %d", b->name, resp->status);
        free(resp->body);
        free(resp->extra_headers);
        memset(resp, 0, sizeof *resp);
        attempt_end(rt, f, b, OUT_FAILED, 0);
        return ATT_RETRY;
    }
    f->b = b;
    add_route_headers(f, resp);
    if (resp->pull) {
        f->lpull = resp->pull;
        f->ldone = resp->done;
        f->lctx = resp->stream_ctx;
        resp->pull = local_pull;
        resp->done = local_done;
        resp->stream_ctx = f;
        return ATT_DONE; /* f lives until local_done */
    }
    annotate_body(f, resp);
    attempt_end(rt, f, b, resp->status < 500 ? OUT_OK : OUT_FAILED, now_ms() - f->t_start);
    return ATT_DONE;
}

/* ---- remote backends --------------------------------------------------------------- */

/* One attempt in flight on a remote backend. */
typedef struct leg {
    rt_backend *b;
    int idx;                    /* in m->b */
    upstream_call *call;
    char *body;
    char *buf;                  /* bytes read so far (held until the commit) */
    size_t len, cap;
    double t_start;
} leg;

static void leg_drop(router *rt, fwd *f, leg *l, outcome o) {
    upstream_free(l->call);
    l->call = NULL;
    free(l->body);
    free(l->buf);
    attempt_end(rt, f, l->b, o, 0);
    l->b = NULL;
}

static int leg_start(router *rt, fwd *f, leg *l, rt_backend *b, int idx, const char *path) {
    memset(l, 0, sizeof *l);
    l->b = b;
    l->idx = idx;
    size_t len;
    l->body = body_for(f, b, &len);
    char url[700], rid[120], tp[120];
    snprintf(url, sizeof url, "%s%s", b->node->url, path);
    snprintf(rid, sizeof rid, "X-Request-Id: %s", f->rid);
    snprintf(tp, sizeof tp, "traceparent: %s", f->tp);
    const char *hdr[6];
    int nh = 0;
    hdr[nh++] = "Content-Type: application/json";
    hdr[nh++] = rid;
    if (f->tp[0]) hdr[nh++] = tp;
    pthread_mutex_lock(&rt->mu);
    char *auth = b->node->auth ? strdup(b->node->auth) : NULL;
    pthread_mutex_unlock(&rt->mu);
    if (auth) hdr[nh++] = auth;
    hdr[nh] = NULL;
    upstream_req r = {.method = "POST", .url = url, .body = l->body, .body_len = len, .headers = hdr,
                      .connect_timeout_ms = rt->cfg->connect_timeout_ms};
    sh_err err = {{0}};
    l->t_start = now_ms();
    l->call = l->body ? upstream_start(rt->pool, &r, &err) : NULL;
    free(auth);
    return l->call ? 0 : -1;
}

/* Reads what the leg has buffered into its hold buffer. -1 when the answer is too large. */
static int leg_slurp(leg *l) {
    for (;;) {
        size_t have = upstream_buffered(l->call);
        if (!have) return 0;
        if (l->len + have + 1 > l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 4096;
            while (cap < l->len + have + 1) cap *= 2;
            if (cap > RT_MAX_ANSWER) return -1;
            char *nb = realloc(l->buf, cap);
            if (!nb) return -1;
            l->buf = nb;
            l->cap = cap;
        }
        l->len += upstream_read(l->call, l->buf + l->len, l->cap - l->len - 1);
        l->buf[l->len] = 0;
    }
}

typedef enum leg_rc { LEG_WAIT, LEG_COMMIT, LEG_FAIL } leg_rc;

/* Where a leg stands. Commit: a stream that produced its first data event (or a non-200 answer
 * complete), or a whole answer complete. Fail: transport error, 5xx or 429 (retryable). */
static leg_rc leg_check(router *rt, fwd *f, leg *l, double now) {
    upstream_state st = upstream_get_state(l->call);
    if (st == UPSTREAM_FAILED) {
        bool hard = upstream_connect_failed(l->call);
        char why[200];
        snprintf(why, sizeof why, "%s", upstream_error(l->call));
        pthread_mutex_lock(&rt->mu);
        node_trip(rt, l->b->node, hard, why);
        pthread_mutex_unlock(&rt->mu);
        f->last_status = 502;
        snprintf(f->last_error, sizeof f->last_error, "%s: %s", l->b->name, why);
        return LEG_FAIL;
    }
    if (leg_slurp(l)) {
        f->last_status = 502;
        snprintf(f->last_error, sizeof f->last_error, "%s: answer larger than %u bytes", l->b->name, RT_MAX_ANSWER);
        return LEG_FAIL;
    }
    int status = upstream_status(l->call);
    if (status == 0) {
        if (now - l->t_start > rt->cfg->first_byte_timeout_ms) {
            char why[120];
            snprintf(why, sizeof why, "no answer in %.0f ms", rt->cfg->first_byte_timeout_ms);
            pthread_mutex_lock(&rt->mu);
            node_trip(rt, l->b->node, false, why);
            pthread_mutex_unlock(&rt->mu);
            f->last_status = 504;
            snprintf(f->last_error, sizeof f->last_error, "%s: %s", l->b->name, why);
            return LEG_FAIL;
        }
        return LEG_WAIT;
    }
    bool complete = st == UPSTREAM_DONE;
    if (status == 429 || status >= 500) {
        if (!complete) return LEG_WAIT; /* read the error body first, for the final answer */
        f->last_status = status;
        snprintf(f->last_error, sizeof f->last_error, "%s answered %d: %.180s", l->b->name, status, l->buf ? l->buf : "");
        pthread_mutex_lock(&rt->mu);
        if (status == 503 && l->buf && strstr(l->buf, "draining")) l->b->node->health = HEALTH_DRAINING;
        else if (status >= 500 && status != 503) node_trip(rt, l->b->node, false, f->last_error);
        node_update_gauge(l->b->node);
        pthread_mutex_unlock(&rt->mu);
        return LEG_FAIL;
    }
    if (status == 200 && f->stream && !complete)
        return l->buf && strstr(l->buf, "data:") ? LEG_COMMIT : LEG_WAIT;
    return complete ? LEG_COMMIT : LEG_WAIT;
}

static ssize_t remote_pull(void *ctx, char *buf, size_t max) {
    fwd *f = ctx;
    if (f->held_off < f->held_len) {
        size_t n = f->held_len - f->held_off;
        if (n > max) n = max;
        memcpy(buf, f->held + f->held_off, n);
        f->held_off += n;
        return (ssize_t)n;
    }
    if (f->ended) return -1;
    size_t n = upstream_read(f->call, buf, max);
    if (n) return (ssize_t)n;
    upstream_state st = upstream_get_state(f->call);
    if (st == UPSTREAM_DONE) {
        f->ended = true;
        return -1;
    }
    if (st == UPSTREAM_FAILED) {
        /* mid-stream: tokens already reached the client, so no retry — a clear error event */
        char why[200];
        snprintf(why, sizeof why, "%s", upstream_error(f->call));
        snprintf(f->last_error, sizeof f->last_error, "%s failed mid-stream: %s", f->b->name, why);
        pthread_mutex_lock(&f->rt->mu);
        node_trip(f->rt, f->b->node, upstream_connect_failed(f->call), why);
        pthread_mutex_unlock(&f->rt->mu);
        json_t *e = json_pack("{s:{s:s++, s:s, s:s}}", "error", "message", "backend ", f->b->name,
                              " failed mid-stream: ", "type", "server_error", "code", "upstream_failed");
        json_object_set_new(json_object_get(e, "error"), "detail", json_string(why));
        char *s = json_dumps(e, JSON_COMPACT);
        json_decref(e);
        free(f->held);
        f->held = NULL;
        f->held_len = f->held_off = 0;
        if (s && asprintf(&f->held, "event: error\ndata: %s\n\n", s) > 0) f->held_len = strlen(f->held);
        free(s);
        f->ended = true;
        f->last_status = -1; /* remembered for the outcome */
        return 0;
    }
    upstream_call *c = f->call;
    upstream_poll(&c, 1, 200);
    return 0;
}

static void remote_done(void *ctx, bool aborted) {
    fwd *f = ctx;
    /* freeing the call closes its connection: the node sees the client go and stops */
    upstream_free(f->call);
    f->call = NULL;
    outcome o = aborted ? OUT_CANCELLED : f->last_status == -1 ? OUT_FAILED : OUT_OK;
    attempt_end(f->rt, f, f->b, o, now_ms() - f->t_start);
    route_log(f->rt, f, f->rid, f->tp, f->peer, f->kind, f->t_req, 200,
              o == OUT_CANCELLED ? "cancelled"
              : o == OUT_FAILED  ? "failed"
                                 : "ok",
              o == OUT_FAILED ? f->last_error : NULL);
    atomic_fetch_sub(&f->rt->active, 1);
    fwd_free(f);
}

/* Commits leg l as the answer: its bytes so far go out first, the rest streams or is whole. */
static void commit_remote(router *rt, fwd *f, leg *l, http_response *resp) {
    f->b = l->b;
    f->t_start = l->t_start;
    int status = upstream_status(l->call);
    double fb = upstream_first_byte_ms(l->call);
    pthread_mutex_lock(&rt->mu);
    lat_add(&l->b->ttfb, fb > 0 ? fb : now_ms() - l->t_start);
    pthread_mutex_unlock(&rt->mu);
    const char *ct = upstream_header(l->call, "Content-Type");
    resp->status = status;
    if (f->stream && status == 200 && upstream_get_state(l->call) != UPSTREAM_DONE) {
        resp->content_type = "text/event-stream";
        http_resp_header(resp, "Cache-Control", "no-cache");
        add_route_headers(f, resp);
        f->call = l->call;
        f->held = l->buf;
        f->held_len = l->len;
        free(l->body);
        memset(l, 0, sizeof *l);
        resp->pull = remote_pull;
        resp->done = remote_done;
        resp->stream_ctx = f;
        return;
    }
    resp->content_type = ct && !strncmp(ct, "text/event-stream", 17) ? "text/event-stream"
                         : ct && !strncmp(ct, "text/plain", 10)      ? "text/plain"
                                                                     : "application/json";
    resp->body = l->buf;
    resp->body_len = l->len;
    l->buf = NULL;
    add_route_headers(f, resp);
    if (status == 200) annotate_body(f, resp);
    rt_backend *b = l->b;
    upstream_free(l->call);
    l->call = NULL;
    free(l->body);
    l->body = NULL;
    attempt_end(rt, f, b, OUT_OK, now_ms() - l->t_start);
    l->b = NULL;
}

/* One remote attempt, with a hedge leg when the model asks for it. excluded[] gains every
 * backend that failed. */
static attempt_rc try_remote(router *rt, fwd *f, rt_model *m, rt_backend *b, int idx, bool *excluded,
                             const route_request *rq, http_request *req, const char *path,
                             http_response *resp) {
    leg legs[2];
    int n = 0;
    if (leg_start(rt, f, &legs[0], b, idx, path)) {
        snprintf(f->last_error, sizeof f->last_error, "%s: could not start the request", b->name);
        f->last_status = 502;
        leg_drop(rt, f, &legs[0], OUT_FAILED);
        excluded[idx] = true;
        return ATT_RETRY;
    }
    n = 1;
    double hedge_at = 1e300;
    if (m->hedge) {
        pthread_mutex_lock(&rt->mu);
        double after = m->hedge_after_ms > 0 ? m->hedge_after_ms : b->ttfb.n >= 8 ? b->ttfb.p95 : 0;
        pthread_mutex_unlock(&rt->mu);
        if (after > 0) hedge_at = legs[0].t_start + after;
    }
    for (;;) {
        double now = now_ms();
        for (int i = 0; i < n; i++) {
            leg_rc rc = leg_check(rt, f, &legs[i], now);
            if (rc == LEG_WAIT) continue;
            if (rc == LEG_COMMIT) {
                for (int k = 0; k < n; k++)
                    if (k != i) leg_drop(rt, f, &legs[k], OUT_CANCELLED);
                commit_remote(rt, f, &legs[i], resp);
                return ATT_DONE;
            }
            excluded[legs[i].idx] = true;
            leg_drop(rt, f, &legs[i], OUT_FAILED);
            legs[i] = legs[n - 1];
            n--;
            i--;
        }
        if (n == 0) return ATT_RETRY;
        if (now >= hedge_at && n == 1) {
            hedge_at = 1e300;
            bool ex2[RT_MAX_BACKENDS];
            memcpy(ex2, excluded, sizeof ex2);
            ex2[legs[0].idx] = true;
            int i2 = -1;
            rt_backend *b2 = pick(rt, f, m, ex2, rq, &i2);
            if (b2 && b2->node) {
                metrics_inc(m->m_hedges, 1);
                f->hedged = true;
                f->attempts++;
                if (leg_start(rt, f, &legs[1], b2, i2, path) == 0) n = 2;
                else leg_drop(rt, f, &legs[1], OUT_FAILED);
            } else if (b2) {
                /* hedging is between remote nodes: a local engine is not raced against itself */
                pthread_mutex_lock(&rt->mu);
                load_add(b2, f->tokens, -1);
                pthread_mutex_unlock(&rt->mu);
            }
        }
        upstream_call *calls[2] = {legs[0].call, n > 1 ? legs[1].call : NULL};
        double wait = 50;
        if (hedge_at < 1e300 && hedge_at - now < wait) wait = hedge_at - now > 0 ? hedge_at - now : 0;
        /* a quiet wait is the time to look whether the client is still there (a syscall, so
         * not after every bit of progress) */
        if (upstream_poll(calls, n, wait) < 0 && wait >= 50 && http_req_client_gone(req)) {
            for (int k = 0; k < n; k++) leg_drop(rt, f, &legs[k], OUT_CANCELLED);
            respond_err(resp, 499, "server_error", NULL, "client closed the request");
            return ATT_DONE;
        }
    }
}

/* ============================================================ router_handle ===== */


/* Resolves rules names to a model that has backends. NULL with a message in resp. */
static rt_model *resolve(router *rt, rt_model *m, const char *text, json_t *root, http_response *resp) {
    const char *keys[16], *vals[16];
    int nm = 0;
    json_t *md = json_object_get(root, "metadata");
    const char *k;
    json_t *v;
    if (json_is_object(md))
        json_object_foreach(md, k, v) {
            if (nm < 16 && json_is_string(v)) keys[nm] = k, vals[nm++] = json_string_value(v);
        }
    for (int depth = 0; m && m->policy == CCFG_POLICY_RULES; depth++) {
        if (depth == RT_RULE_DEPTH) {
            respond_err(resp, 500, "server_error", NULL, "model '%s': rules nest deeper than %d", m->name, RT_RULE_DEPTH);
            return NULL;
        }
        const char *target = route_rules_match(m->rules, text ? text : "", keys, vals, nm);
        if (!target) target = m->default_target;
        if (!target) {
            respond_err(resp, 400, "invalid_request_error", "model_not_found",
                        "model '%s': no routing rule matches this request and there is no default", m->name);
            return NULL;
        }
        pthread_mutex_lock(&rt->mu);
        rt_model *next = find_model(rt, target);
        pthread_mutex_unlock(&rt->mu);
        if (!next) {
            respond_err(resp, 500, "server_error", NULL, "model '%s': rule target '%s' is not defined", m->name, target);
            return NULL;
        }
        m = next;
    }
    return m;
}

void router_handle(router *rt, int kind, http_request *req, http_response *resp) {
    double t0 = http_req_start_ms(req);
    size_t len;
    const char *body = http_req_body(req, &len);
    oai_request r;
    oai_error e;
    json_t *doc = NULL;
    if (oai_parse_request_doc((oai_kind)kind, body, len, &r, &e, &doc)) {
        char *s = oai_error_body(&e);
        resp->status = e.status;
        resp->content_type = "application/json";
        resp->body = s;
        resp->body_len = s ? strlen(s) : 0;
        const char *tp = http_req_header(req, "traceparent");
        route_log(rt, NULL, http_req_id(req), tp && strlen(tp) == 55 ? tp : NULL,
                  http_req_peer(req), kind, t0, e.status, NULL, e.message);
        return;
    }
    fwd *f = calloc(1, sizeof *f);
    size_t text_len = 0;
    char *text = request_text(&r, &text_len);
    if (!f || !text) {
        json_decref(doc);
        respond_err(resp, 500, "server_error", NULL, "out of memory");
        goto out;
    }
    f->root = doc; /* the parse above, kept: "model" is rewritten in it per attempt */
    f->raw = body;
    f->raw_len = len;
    f->rt = rt;
    f->kind = kind;
    f->stream = r.stream && (kind == OAI_COMPLETION || kind == OAI_CHAT);
    f->tokens = (int64_t)(text_len / 4) +
                (kind == OAI_COMPLETION || kind == OAI_CHAT ? (r.max_tokens > 0 ? r.max_tokens : 256) : 0);
    snprintf(f->rid, sizeof f->rid, "%s", http_req_id(req));
    const char *tp = http_req_header(req, "traceparent");
    if (tp && strlen(tp) == 55) snprintf(f->tp, sizeof f->tp, "%s", tp);
    const char *peer = http_req_peer(req);
    snprintf(f->peer, sizeof f->peer, "%s", peer ? peer : "");
    f->t_req = t0;

    pthread_mutex_lock(&rt->mu);
    rt_model *m = r.model ? find_model(rt, r.model) : rt->n_models ? rt->models[0] : NULL;
    pthread_mutex_unlock(&rt->mu);
    if (!m) {
        respond_err(resp, 404, "invalid_request_error", "model_not_found", "The model '%s' does not exist",
                    r.model ? r.model : "");
        goto out;
    }
    f->asked = m;
    if (!(m = resolve(rt, m, text, f->root, resp))) goto out;
    route_request rq = {.prefix = text, .prefix_len = text_len, .deadline_ms = r.has_deadline ? r.deadline_ms : 0};
    bool added_observed = false;
    for (int hop = 0; m; hop++) {
        f->m = m;
        bool excluded[RT_MAX_BACKENDS] = {0};
        for (int attempt = 0; attempt < rt->cfg->max_attempts; attempt++) {
            int idx = -1;
            rt_backend *b = pick(rt, f, m, excluded, &rq, &idx);
            if (!b) break;
            f->attempts++;
            if (attempt > 0) metrics_inc(m->m_retries, 1);
            if (!added_observed) {
                metrics_observe(rt->m_added, (now_ms() - t0) * 1e-3);
                added_observed = true;
            }
            attempt_rc rc;
            if (b->local >= 0) {
                rc = try_local(rt, f, b, req, resp);
                if (rc == ATT_RETRY) excluded[idx] = true;
            } else {
                rc = try_remote(rt, f, m, b, idx, excluded, &rq, req, kind_path[kind], resp);
            }
            if (rc == ATT_DONE) {
                f->t_commit = now_ms();
                if (resp->pull) {
                    atomic_fetch_add(&rt->active, 1);
                    f->raw = NULL; /* the request body goes away with this handler */
                    f = NULL;      /* the stream owns it now */
                }
                goto out;
            }
        }
        /* no backend of this name could answer: its fallback, once */
        if (!m->fallback || f->fallback_used || hop > 0) {
            metrics_inc(m->m_unavailable, 1);
            break;
        }
        pthread_mutex_lock(&rt->mu);
        rt_model *fb = find_model(rt, m->fallback);
        pthread_mutex_unlock(&rt->mu);
        if (fb && !(fb = resolve(rt, fb, text, f->root, resp))) goto out;
        metrics_inc(m->m_fallbacks, 1);
        f->fallback_used = true;
        m = fb;
    }
    /* a 429 from every backend is back-pressure the client should see as such */
    respond_err(resp, f->last_status == 429 ? 429 : 503, "server_error", "backend_unavailable",
                "no backend of model '%s' could answer%s%s%s", f->m ? f->m->name : "?",
                f->last_error[0] ? " (last: " : "", f->last_error, f->last_error[0] ? ")" : "");
    http_resp_header(resp, "Retry-After", "1");
out:
    if (f) { /* answered whole (or refused) here; a stream logs when it ends */
        char msg[256] = "";
        if (resp->status >= 400) answer_error(resp, f->last_error, msg, sizeof msg);
        route_log(rt, f, f->rid, f->tp, f->peer, kind, t0, resp->status, NULL, msg[0] ? msg : NULL);
    }
    free(text);
    oai_request_free(&r);
    fwd_free(f);
}

/* ============================================================ joins ===== */

static bool url_ok(const char *u) {
    if (!u || strlen(u) > 500) return false;
    const char *h = !strncmp(u, "http://", 7) ? u + 7 : !strncmp(u, "https://", 8) ? u + 8 : NULL;
    if (!h || !*h || *h == '/' || *h == ':') return false;
    for (const char *p = h; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '\\' || *p == '/' || *p == '?' || *p == '#' || *p == '@') return false;
    return true;
}

void router_join(router *rt, http_request *req, http_response *resp) {
    size_t len;
    const char *body = http_req_body(req, &len);
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *token = json_string_value(json_object_get(j, "token"));
    const char *url = json_string_value(json_object_get(j, "url"));
    const char *name = json_string_value(json_object_get(j, "name"));
    const char *key = json_string_value(json_object_get(j, "api_key"));
    json_t *models = json_object_get(j, "models");
    bool draining = json_is_true(json_object_get(j, "draining"));
    bool leave = json_is_true(json_object_get(j, "leave"));
    const char *jt = rt->cfg->join_token;
    if (!json_is_object(j)) {
        respond_err(resp, 400, "invalid_request_error", NULL, "join: the body must be a JSON object");
    } else if (!jt) {
        respond_err(resp, 403, "invalid_request_error", NULL, "this router takes no joins (no join_token in its config)");
    } else if (!token || strlen(token) != strlen(jt) || CRYPTO_memcmp(token, jt, strlen(jt))) {
        respond_err(resp, 401, "invalid_request_error", "invalid_join_token", "join: missing or wrong token");
    } else if (!url_ok(url)) {
        respond_err(resp, 400, "invalid_request_error", NULL, "join: 'url' must be http(s)://host[:port]");
    } else if (!leave && (!json_is_array(models) || json_array_size(models) < 1 ||
                          json_array_size(models) > RT_MAX_JOIN_MODELS)) {
        respond_err(resp, 400, "invalid_request_error", NULL, "join: 'models' must list 1..%d model names",
                    RT_MAX_JOIN_MODELS);
    } else if (name && (!*name || strlen(name) > 64)) {
        respond_err(resp, 400, "invalid_request_error", NULL, "join: 'name' must be 1..64 characters");
    } else {
        size_t i;
        json_t *v;
        bool ok = true;
        json_array_foreach(models, i, v) {
            const char *s = json_string_value(v);
            if (!s || !*s || strlen(s) > 128) ok = false;
        }
        if (!ok) {
            respond_err(resp, 400, "invalid_request_error", NULL, "join: every model name must be a string of 1..128 characters");
            json_decref(j);
            return;
        }
        sh_err err = {{0}};
        pthread_mutex_lock(&rt->mu);
        rt_node *n = NULL;
        for (int k = 0; k < rt->n_nodes; k++)
            if (!strcmp(rt->nodes[k]->url, url)) n = rt->nodes[k];
        if (!n && !leave) {
            char nm[80];
            snprintf(nm, sizeof nm, "%s", name ? name : url + (url[4] == 's' ? 8 : 7));
            n = node_new(rt, nm, url, key, true);
            if (n) fprintf(stderr, "shoal: router: node %s (%s) joined\n", n->name, n->url);
        }
        if (!n && !leave) {
            pthread_mutex_unlock(&rt->mu);
            respond_err(resp, 503, "server_error", NULL, "join: the router already knows %d nodes", RT_MAX_NODES);
            json_decref(j);
            return;
        }
        if (n && leave) {
            if (!n->removed) fprintf(stderr, "shoal: router: node %s (%s) left\n", n->name, n->url);
            n->removed = n->joined; /* a configured node stays known; health checks decide */
            if (!n->joined) n->health = HEALTH_DRAINING;
        } else if (n) {
            if (n->removed) fprintf(stderr, "shoal: router: node %s (%s) rejoined\n", n->name, n->url);
            n->removed = false;
            n->last_seen_ms = now_ms();
            if (key && (!n->auth || strcmp(n->auth + 22, key))) {
                free(n->auth);
                n->auth = auth_header(key);
            }
            if (draining) n->health = HEALTH_DRAINING;
            else if (n->health != HEALTH_UP) n->health = HEALTH_UNKNOWN; /* the next check confirms */
            json_array_foreach(models, i, v) {
                const char *mn = json_string_value(v);
                rt_model *m = find_model(rt, mn);
                if (!m) {
                    if (!(m = model_new(rt, mn, ROUTE_LEAST_LOADED, &err))) break;
                    m->dynamic = true; /* a name only joined nodes serve */
                }
                if (m->policy == CCFG_POLICY_RULES) continue;
                bool have = false;
                for (int k = 0; k < m->n; k++)
                    if (m->b[k]->node == n && !strcmp(m->b[k]->model, mn)) have = true;
                if (!have && !backend_add(rt, m, -1, n, mn, 0, &err)) break;
            }
        }
        if (n) node_update_gauge(n);
        json_t *out = json_pack("{s:b, s:s, s:f, s:f}", "ok", !err.msg[0], "node", n ? n->name : "",
                                "heartbeat_ms", rt->cfg->heartbeat_ms, "ttl_ms", rt->cfg->node_ttl_ms);
        pthread_mutex_unlock(&rt->mu);
        if (err.msg[0]) json_object_set_new(out, "warning", json_string(err.msg));
        respond_json(resp, 200, out);
    }
    json_decref(j);
}

/* ============================================================ state endpoints ===== */

void router_models(router *rt, http_response *resp) {
    json_t *data = json_array();
    pthread_mutex_lock(&rt->mu);
    for (int i = 0; i < rt->n_models; i++) {
        rt_model *m = rt->models[i];
        json_t *al = json_array();
        for (int k = 0; k < m->n_aliases; k++) json_array_append_new(al, json_string(m->aliases[k]));
        json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", m->name, "object", "model",
                                              "created", (json_int_t)0, "owned_by", "shoal", "aliases", al));
    }
    pthread_mutex_unlock(&rt->mu);
    respond_json(resp, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

void router_cluster(router *rt, http_response *resp) {
    json_t *nodes = json_array(), *models = json_array();
    double now = now_ms();
    pthread_mutex_lock(&rt->mu);
    for (int i = 0; i < rt->n_nodes; i++) {
        rt_node *n = rt->nodes[i];
        node_usable(n, now); /* moves an expired open circuit to half-open for the report */
        json_t *o = json_pack("{s:s, s:s, s:b, s:b, s:s, s:s, s:i, s:I, s:I, s:o}", "name", n->name, "url", n->url,
                              "joined", n->joined, "removed", n->removed, "health", health_names[n->health],
                              "circuit", circ_names[n->circ], "consecutive_failures", n->consec_fail,
                              "failures", (json_int_t)n->failures, "ejections", (json_int_t)n->ejections,
                              "health_check_ms", lat_json(&n->check));
        if (n->last_error[0]) json_object_set_new(o, "last_error", json_string(n->last_error));
        if (n->joined) json_object_set_new(o, "last_heartbeat_ms_ago", json_real(now - n->last_seen_ms));
        json_array_append_new(nodes, o);
    }
    for (int i = 0; i < rt->n_models; i++) {
        rt_model *m = rt->models[i];
        json_t *bs = json_array(), *al = json_array();
        for (int k = 0; k < m->n_aliases; k++) json_array_append_new(al, json_string(m->aliases[k]));
        for (int k = 0; k < m->n; k++) {
            rt_backend *b = m->b[k];
            bool usable = !b->node || node_usable(b->node, now);
            json_array_append_new(
                bs, json_pack("{s:s, s:s, s:s?, s:s, s:b, s:i, s:I, s:i, s:I, s:I, s:I, s:o, s:o}", "name", b->name,
                              "kind", b->node ? "remote" : "local", "node", b->node ? b->node->name : NULL, "model",
                              b->model, "usable", usable, "outstanding", b->outstanding, "outstanding_tokens",
                              (json_int_t)b->out_tokens, "capability", b->capability, "ok", (json_int_t)b->ok,
                              "failed", (json_int_t)b->failed, "cancelled", (json_int_t)b->cancelled, "latency_ms",
                              lat_json(&b->lat), "first_byte_ms", lat_json(&b->ttfb)));
        }
        const char *pol = m->policy == CCFG_POLICY_RULES ? "rules" : route_policy_name((route_policy)m->policy);
        json_array_append_new(models, json_pack("{s:s, s:o, s:s, s:s?, s:s?, s:b, s:b, s:o}", "name", m->name,
                                                "aliases", al, "policy", pol, "fallback", m->fallback, "default",
                                                m->default_target, "hedge", m->hedge, "joined", m->dynamic,
                                                "backends", bs));
    }
    pthread_mutex_unlock(&rt->mu);
    respond_json(resp, 200, json_pack("{s:o, s:o, s:i}", "nodes", nodes, "models", models, "active",
                                      atomic_load(&rt->active)));
}

int router_active(router *rt) { return atomic_load(&rt->active); }

/* ============================================================ lifetime ===== */

/* Start-up: every configured node is asked for /v1/models once. Down is a warning (the router
 * serves what it can and health checks bring the node in later); up but without a model the
 * config routes to it is an error. */
/* The host part of http(s)://host[:port] into out ("[::1]" loses its brackets). */
static void url_host(const char *url, char *out, size_t n) {
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    size_t len;
    if (*h == '[') {
        h++;
        len = strcspn(h, "]");
    } else {
        len = strcspn(h, ":/");
    }
    snprintf(out, n, "%.*s", (int)len, h);
}

static int startup_check(router *rt, sh_err *err) {
    const cluster_config *c = rt->cfg;
    for (int i = 0; i < c->n_nodes; i++) {
        rt_node *n = rt->nodes[i];
        /* a name that does not resolve is a mistake in the file, not a node that is down */
        char host[256];
        url_host(n->url, host, sizeof host);
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
        int gai = getaddrinfo(host, NULL, &hints, &ai);
        if (gai) {
            return sh_errf(err, "%s:%d: node '%s': cannot resolve host '%s' of %s (%s)", c->path ? c->path : "config",
                           c->nodes[i].line, n->name, host, n->url, gai_strerror(gai));
        }
        freeaddrinfo(ai);
        char url[600];
        snprintf(url, sizeof url, "%s/v1/models", n->url);
        const char *hdr[2] = {n->auth, NULL};
        upstream_req r = {.method = "GET", .url = url, .headers = hdr,
                          .connect_timeout_ms = c->connect_timeout_ms, .timeout_ms = c->health_timeout_ms * 4};
        char *body = NULL;
        size_t len = 0;
        sh_err e = {{0}};
        int status = upstream_fetch(rt->pool, &r, &body, &len, &e);
        if (status != 200) {
            fprintf(stderr, "shoal: router: warning: node %s (%s) is not answering (%s); it joins the rotation "
                            "when its health checks pass\n", n->name, n->url,
                    status < 0 ? e.msg : status == 401 ? "401: wrong api_key?" : "HTTP error");
            n->health = HEALTH_DOWN;
            snprintf(n->last_error, sizeof n->last_error, "start-up: %.140s", status < 0 ? e.msg : "HTTP error");
            if (status == 401) {
                free(body);
                return sh_errf(err, "%s:%d: node '%s' (%s) refused the api_key (401)", c->path ? c->path : "config",
                               c->nodes[i].line, n->name, n->url);
            }
            free(body);
            continue;
        }
        n->health = HEALTH_UP;
        json_t *j = json_loadb(body, len, 0, NULL);
        free(body);
        json_t *data = json_object_get(j, "data");
        for (int mi = 0; mi < c->n_models; mi++) {
            const ccfg_model *cm = &c->models[mi];
            for (int bi = 0; bi < cm->n_backends; bi++) {
                const ccfg_backend *cb = &cm->backends[bi];
                if (!cb->node || strcmp(cb->node, n->name)) continue;
                const char *want = cb->model ? cb->model : cm->name;
                bool found = false;
                size_t k;
                json_t *v;
                json_array_foreach(data, k, v) {
                    const char *id = json_string_value(json_object_get(v, "id"));
                    if (id && !strcmp(id, want)) found = true;
                    json_t *al = json_object_get(v, "aliases");
                    size_t q;
                    json_t *a;
                    json_array_foreach(al, q, a) if (json_string_value(a) && !strcmp(json_string_value(a), want)) found = true;
                }
                if (!found) {
                    json_decref(j);
                    return sh_errf(err, "%s:%d: model '%s': node '%s' (%s) does not serve a model named '%s'",
                                   c->path ? c->path : "config", cb->line, cm->name, n->name, n->url, want);
                }
            }
        }
        json_decref(j);
    }
    return 0;
}

router *router_init(const cluster_config *cfg, const router_local_ops *ops, metrics *met, sh_err *err) {
    router *rt = calloc(1, sizeof *rt);
    if (!rt) return sh_errf(err, "out of memory"), NULL;
    rt->cfg = cfg;
    if (ops) rt->ops = *ops;
    rt->met = met;
    pthread_mutex_init(&rt->mu, NULL);
    mono_cond_init(&rt->stop_cv);
    static const double added_buckets[] = {10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3};
    rt->m_added = metrics_histogram(met, "shoal_router_added_latency_seconds",
                                    "Time from a request's arrival to its dispatch to a backend: parsing, "
                                    "rule matching and the routing decision.",
                                    "", added_buckets, sizeof added_buckets / sizeof *added_buckets);
    if (!(rt->pool = upstream_pool_init(err))) goto fail;
    for (int i = 0; i < cfg->n_nodes; i++)
        if (!node_new(rt, cfg->nodes[i].name, cfg->nodes[i].url, cfg->nodes[i].api_key, false)) {
            sh_errf(err, "out of memory");
            goto fail;
        }
    for (int i = 0; i < cfg->n_models; i++)
        if (build_model(rt, &cfg->models[i], err)) goto fail;
    if (startup_check(rt, err)) goto fail;
    for (int i = 0; i < rt->n_nodes; i++) node_update_gauge(rt->nodes[i]);
    if (pthread_create(&rt->health_thread, NULL, health_main, rt)) {
        sh_errf(err, "cannot start the health-check thread");
        goto fail;
    }
    rt->health_started = true;
    return rt;
fail:
    router_free(rt);
    return NULL;
}

void router_free(router *rt) {
    if (!rt) return;
    if (rt->health_started) {
        pthread_mutex_lock(&rt->mu);
        rt->stop = true;
        pthread_cond_broadcast(&rt->stop_cv);
        pthread_mutex_unlock(&rt->mu);
        pthread_join(rt->health_thread, NULL);
    }
    for (int i = 0; i < rt->n_models; i++) model_free(rt->models[i]);
    for (int i = 0; i < rt->n_nodes; i++) node_free(rt->nodes[i]);
    upstream_pool_free(rt->pool);
    pthread_cond_destroy(&rt->stop_cv);
    pthread_mutex_destroy(&rt->mu);
    free(rt);
}
