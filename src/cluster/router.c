/*
 * cluster/router — see router.h. This file: the router's lifetime, and the error and JSON
 * answers every part of it gives. The parts (router_int.h lists them): live state and the
 * routing decision (router_state.c), health and circuits (router_health.c), forwarding
 * (router_forward.c, router_remote.c), joins (router_join.c).
 */
#include "cluster/router.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/oai_req.h"
#include "cluster/router_int.h"
#include "core/mono.h"

/* ============================================================ answers ===== */

/* router_int.h */
void rt_respond_json(http_response *resp, int status, json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(j);
    resp->status = s ? status : 500;
    resp->content_type = "application/json";
    resp->body = s;
    resp->body_len = s ? strlen(s) : 0;
}

/* router_int.h */
void rt_respond_err(http_response *resp, int status, const char *type, const char *code, const char *fmt, ...) {
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

/* ============================================================ lifetime ===== */

/* router.h */
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
        if (!rt_node_new(rt, cfg->nodes[i].name, cfg->nodes[i].url, cfg->nodes[i].api_key, false)) {
            sh_errf(err, "out of memory");
            goto fail;
        }
    for (int i = 0; i < cfg->n_models; i++)
        if (rt_build_model(rt, &cfg->models[i], err)) goto fail;
    if (rt_compose_init(rt, err)) goto fail;
    if (rt_startup_check(rt, err)) goto fail;
    for (int i = 0; i < rt->n_nodes; i++) rt_node_update_gauge(rt->nodes[i]);
    if (rt_health_start(rt, err)) goto fail;
    return rt;
fail:
    router_free(rt);
    return NULL;
}

/* router.h */
void router_free(router *rt) {
    if (!rt) return;
    rt_health_stop(rt);
    rt_compose_free(rt);
    for (int i = 0; i < rt->n_models; i++) rt_model_free(rt->models[i]);
    for (int i = 0; i < rt->n_nodes; i++) rt_node_free(rt->nodes[i]);
    upstream_pool_free(rt->pool);
    pthread_cond_destroy(&rt->stop_cv);
    pthread_mutex_destroy(&rt->mu);
    free(rt);
}
