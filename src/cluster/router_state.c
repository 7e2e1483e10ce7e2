/*
 * cluster/router_state — the router's live state (router_int.h): latency windows, nodes, model
 * names and their backends, the routing decision and the accounting of each attempt; and the
 * two endpoints that report it, GET /v1/models and GET /v1/cluster.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/router_int.h"

/* ============================================================ latency windows ===== */

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

/* router_int.h. A sorted copy of the window is kept up to date on every sample (one binary
 * search and one memmove to take the oldest sample out, the same to put the new one in: well
 * under a microsecond), so the percentiles a decision reads are always current and no sample
 * ever costs a sort. */
void rt_lat_add(rt_lat_win *w, double ms) {
    if (!(ms >= 0)) ms = 0; /* NaN never enters the window */
    if (w->n == RT_LAT_N) { /* full: the oldest sample leaves */
        int k = lower_bound(w->sorted, w->n, w->v[w->next]);
        memmove(&w->sorted[k], &w->sorted[k + 1], (size_t)(w->n - k - 1) * sizeof(double));
        w->n--;
    }
    int k = lower_bound(w->sorted, w->n, ms);
    memmove(&w->sorted[k + 1], &w->sorted[k], (size_t)(w->n - k) * sizeof(double));
    w->sorted[k] = ms;
    w->n++;
    w->v[w->next] = ms;
    w->next = (w->next + 1) % RT_LAT_N;
    w->ewma = w->n == 1 ? ms : 0.8 * w->ewma + 0.2 * ms;
    w->p50 = w->sorted[(w->n - 1) * 50 / 100];
    w->p95 = w->sorted[(w->n - 1) * 95 / 100];
    w->p99 = w->sorted[(w->n - 1) * 99 / 100];
}

/* The window as {"samples", "ewma", "p50", "p95", "p99"}. */
static json_t *lat_json(const rt_lat_win *w) {
    return json_pack("{s:i, s:f, s:f, s:f, s:f}", "samples", w->n, "ewma", w->ewma, "p50", w->p50,
                     "p95", w->p95, "p99", w->p99);
}

/* The counter `name` with one label (k2 NULL) or two, their values escaped. */
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

/* ============================================================ nodes ===== */

/* router_int.h */
char *rt_auth_header(const char *key) {
    if (!key || !*key) return NULL;
    size_t n = strlen(key) + 32;
    char *h = malloc(n);
    if (h) snprintf(h, n, "Authorization: Bearer %s", key);
    return h;
}

/* router_int.h */
rt_node *rt_node_new(router *rt, const char *name, const char *url, const char *key, bool joined) {
    if (rt->n_nodes == RT_MAX_NODES) return NULL;
    rt_node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->name = strdup(name);
    n->url = strdup(url);
    n->auth = rt_auth_header(key);
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

/* router_int.h */
void rt_node_free(rt_node *n) {
    if (!n) return;
    free(n->name);
    free(n->url);
    free(n->auth);
    free(n);
}

/* ============================================================ models and backends ===== */

/* router_int.h */
rt_model *rt_find_model(router *rt, const char *name) {
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

/* router_int.h */
rt_backend *rt_backend_add(router *rt, rt_model *m, int local, rt_node *node, const char *model,
                           int capability, sh_err *err) {
    if (m->n == RT_MAX_BACKENDS) return sh_errf(err, "model '%s': more than %d backends", m->name, RT_MAX_BACKENDS), NULL;
    rt_backend *b = calloc(1, sizeof *b);
    if (!b) return sh_errf(err, "out of memory"), NULL;
    b->local = local;
    b->node = node;
    b->capability = capability;
    b->weight = 1;
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

/* router_int.h */
rt_model *rt_model_new(router *rt, const char *name, int policy, sh_err *err) {
    if (rt->n_models == RT_MAX_MODELS) return sh_errf(err, "more than %d model names", RT_MAX_MODELS), NULL;
    rt_model *m = calloc(1, sizeof *m);
    if (m) m->b = calloc(RT_MAX_BACKENDS, sizeof *m->b);
    if (!m || !m->b || !(m->name = strdup(name))) {
        if (m) free(m->b);
        free(m);
        return sh_errf(err, "out of memory"), NULL;
    }
    m->policy = policy;
    m->cfg_index = -1;
    m->rc = (route_config){.policy = policy >= ROUTE_POLICY_COUNT ? ROUTE_ROUND_ROBIN : (route_policy)policy,
                           .prefix_bytes = 256, .load_factor = 1.25, .vnodes = 64,
                           .seed = (uint64_t)time(NULL) ^ (uintptr_t)m};
    const char *pname = ccfg_policy_name(policy);
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

/* router_int.h */
void rt_model_free(rt_model *m) {
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
    free(m->sticky);
    free(m->fallback);
    free(m->name);
    free(m);
}

/* router_int.h */
int rt_build_model(router *rt, const ccfg_model *cm, sh_err *err) {
    const cluster_config *c = rt->cfg;
    rt_model *m = rt_model_new(rt, cm->name, cm->policy, err);
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
    if (cm->sticky) m->sticky = strdup(cm->sticky);
    m->cfg_index = (int)(cm - c->models);
    if (cm->policy > CCFG_POLICY_RULES) return 0; /* classify and compositions call other names */
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
            rt_backend *b = rt_backend_add(rt, m, li, NULL, cb->local, cb->capability, err);
            if (!b) return -1;
            b->weight = cb->weight;
        } else {
            rt_node *node = NULL;
            for (int k = 0; k < rt->n_nodes; k++)
                if (!strcmp(rt->nodes[k]->name, cb->node)) node = rt->nodes[k];
            if (!node) return sh_errf(err, "model '%s': unknown node '%s'", cm->name, cb->node);
            rt_backend *b = rt_backend_add(rt, m, -1, node, cb->model ? cb->model : cm->name, cb->capability, err);
            if (!b) return -1;
            b->weight = cb->weight;
        }
    }
    return 0;
}

/* ============================================================ decisions and accounting ===== */

/* router_int.h */
void rt_load_add(rt_backend *b, int64_t tokens, int dir) {
    b->outstanding += dir;
    b->out_tokens += dir * tokens;
}

/* router_int.h */
void rt_attempt_end(router *rt, rt_backend *b, int64_t tokens, rt_outcome o, double total_ms) {
    pthread_mutex_lock(&rt->mu);
    rt_load_add(b, tokens, -1);
    if (o == RT_OUT_OK) {
        b->ok++;
        metrics_inc(b->m_ok, 1);
        if (total_ms > 0) rt_lat_add(&b->lat, total_ms);
        if (b->node) rt_node_success(b->node);
    } else if (o == RT_OUT_FAILED) {
        b->failed++;
        metrics_inc(b->m_failed, 1);
    } else {
        b->cancelled++;
        metrics_inc(b->m_cancelled, 1);
        if (b->node && b->node->circ == RT_CIRC_HALF_OPEN) b->node->probe_busy = false;
    }
    pthread_mutex_unlock(&rt->mu);
}

/* router_int.h */
rt_backend *rt_pick(router *rt, rt_model *m, const bool *excluded, const route_request *rq, int64_t tokens,
                    bool *degraded, int *idx) {
    route_backend rb[RT_MAX_BACKENDS];
    double now = http_now_ms();
    pthread_mutex_lock(&rt->mu);
    int n = m->n;
    for (int i = 0; i < n; i++) {
        rt_backend *b = m->b[i];
        rb[i] = (route_backend){.name = b->name, .healthy = !b->node || rt_node_usable(b->node, now),
                                .outstanding_tokens = b->out_tokens, .outstanding = b->outstanding,
                                .ewma_ms = b->lat.ewma, .p95_ms = b->lat.p95, .capability = b->capability,
                                .weight = b->weight};
    }
    route_decision d = {.backend = -1};
    rt_backend *b = NULL;
    if (m->rs && route_pick(m->rs, rb, n, excluded, rq, &d) >= 0) {
        b = m->b[d.backend];
        if (b->node && b->node->circ == RT_CIRC_HALF_OPEN) b->node->probe_busy = true;
        rt_load_add(b, tokens, +1);
        metrics_inc(m->m_decisions, 1);
        if (d.degraded) *degraded = true;
        *idx = d.backend;
    }
    pthread_mutex_unlock(&rt->mu);
    return b;
}

/* ============================================================ state endpoints ===== */

static const char *const health_names[] = {"unknown", "up", "down", "draining"};
static const char *const circ_names[] = {"closed", "open", "half_open"};

/* router.h */
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
    rt_respond_json(resp, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* router.h */
void router_cluster(router *rt, http_response *resp) {
    json_t *nodes = json_array(), *models = json_array();
    double now = http_now_ms();
    pthread_mutex_lock(&rt->mu);
    for (int i = 0; i < rt->n_nodes; i++) {
        rt_node *n = rt->nodes[i];
        rt_node_usable(n, now); /* moves an expired open circuit to half-open for the report */
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
            bool usable = !b->node || rt_node_usable(b->node, now);
            json_array_append_new(
                bs, json_pack("{s:s, s:s, s:s?, s:s, s:b, s:i, s:I, s:i, s:I, s:I, s:I, s:o, s:o}", "name", b->name,
                              "kind", b->node ? "remote" : "local", "node", b->node ? b->node->name : NULL, "model",
                              b->model, "usable", usable, "outstanding", b->outstanding, "outstanding_tokens",
                              (json_int_t)b->out_tokens, "capability", b->capability, "ok", (json_int_t)b->ok,
                              "failed", (json_int_t)b->failed, "cancelled", (json_int_t)b->cancelled, "latency_ms",
                              lat_json(&b->lat), "first_byte_ms", lat_json(&b->ttfb)));
        }
        const char *pol = ccfg_policy_name(m->policy);
        json_array_append_new(models, json_pack("{s:s, s:o, s:s, s:s?, s:s?, s:b, s:b, s:o}", "name", m->name,
                                                "aliases", al, "policy", pol, "fallback", m->fallback, "default",
                                                m->default_target, "hedge", m->hedge, "joined", m->dynamic,
                                                "backends", bs));
    }
    pthread_mutex_unlock(&rt->mu);
    rt_respond_json(resp, 200, json_pack("{s:o, s:o, s:i}", "nodes", nodes, "models", models, "active",
                                         atomic_load(&rt->active)));
}

/* router.h */
int router_active(router *rt) { return atomic_load(&rt->active); }
