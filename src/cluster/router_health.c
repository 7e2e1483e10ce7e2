/*
 * cluster/router_health — whether each remote node can take requests (router_int.h): circuit
 * breakers fed by requests and checks, the health-check thread (GET /health of every node each
 * health_interval_ms; joined nodes silent for node_ttl_ms are dropped), and the one-off check of
 * every configured node at start-up.
 */
#include <jansson.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/router_int.h"
#include "core/mono.h"

/* ============================================================ circuits ===== */

/* router_int.h */
bool rt_node_usable(rt_node *n, double now) {
    if (n->removed || n->health == RT_HEALTH_DOWN || n->health == RT_HEALTH_DRAINING) return false;
    if (n->circ == RT_CIRC_OPEN) {
        if (now < n->open_until_ms) return false;
        n->circ = RT_CIRC_HALF_OPEN;
        n->probe_busy = false;
    }
    return n->circ == RT_CIRC_CLOSED || !n->probe_busy;
}

/* router_int.h: up = not removed, not down, not draining, circuit not open. */
void rt_node_update_gauge(rt_node *n) {
    bool up = !n->removed && n->health != RT_HEALTH_DOWN && n->health != RT_HEALTH_DRAINING && n->circ != RT_CIRC_OPEN;
    metrics_set(n->m_up, up ? 1 : 0);
}

/* router_int.h. hard: the connection was refused / the host is gone — no need to wait for
 * more evidence. An ejection is reported on stderr. */
void rt_node_trip(router *rt, rt_node *n, bool hard, const char *why) {
    n->failures++;
    n->consec_fail++;
    snprintf(n->last_error, sizeof n->last_error, "%s", why ? why : "");
    if (n->circ == RT_CIRC_OPEN) return;
    if (n->circ == RT_CIRC_HALF_OPEN || hard || n->consec_fail >= rt->cfg->fail_threshold) {
        n->circ = RT_CIRC_OPEN;
        n->open_until_ms = http_now_ms() + rt->cfg->cooldown_ms;
        n->probe_busy = false;
        n->ejections++;
        metrics_inc(n->m_eject, 1);
        fprintf(stderr, "shoal: router: node %s (%s) ejected: %s\n", n->name, n->url, why ? why : "failures");
    }
    rt_node_update_gauge(n);
}

/* router_int.h. A circuit that was not closed is reported back in rotation on stderr. */
void rt_node_success(rt_node *n) {
    n->consec_fail = 0;
    if (n->circ != RT_CIRC_CLOSED) fprintf(stderr, "shoal: router: node %s (%s) back in rotation\n", n->name, n->url);
    n->circ = RT_CIRC_CLOSED;
    n->probe_busy = false;
    rt_node_update_gauge(n);
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
    double t0 = http_now_ms();
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
        if (!pending || http_now_ms() - t0 > rt->cfg->health_timeout_ms + 200) break;
        upstream_call *live[8];
        int nl = 0;
        for (int i = 0; i < n; i++)
            if (calls[i]) live[nl++] = calls[i];
        upstream_poll(live, nl, 50);
    }
    double took = http_now_ms() - t0;
    pthread_mutex_lock(&rt->mu);
    for (int i = 0; i < n; i++) {
        rt_node *nd = ck[i].node;
        upstream_call *c = ck[i].call;
        upstream_state st = c ? upstream_get_state(c) : UPSTREAM_FAILED;
        int status = c ? upstream_status(c) : 0;
        if (nd->removed) {
        } else if (st == UPSTREAM_DONE && status == 200) {
            nd->health = RT_HEALTH_UP;
            rt_lat_add(&nd->check, took);
            if (nd->circ == RT_CIRC_CLOSED || (nd->circ == RT_CIRC_OPEN && http_now_ms() >= nd->open_until_ms) ||
                nd->circ == RT_CIRC_HALF_OPEN)
                rt_node_success(nd);
        } else if (st == UPSTREAM_DONE && status == 503) {
            if (nd->health != RT_HEALTH_DRAINING)
                fprintf(stderr, "shoal: router: node %s (%s) is draining\n", nd->name, nd->url);
            nd->health = RT_HEALTH_DRAINING; /* not a failure: it finishes what it has */
        } else {
            char why[160];
            if (st == UPSTREAM_FAILED) snprintf(why, sizeof why, "health check: %s", c ? upstream_error(c) : "could not start");
            else if (st != UPSTREAM_DONE) snprintf(why, sizeof why, "health check: no answer in %.0f ms", rt->cfg->health_timeout_ms);
            else snprintf(why, sizeof why, "health check: HTTP %d", status);
            nd->health = RT_HEALTH_DOWN;
            rt_node_trip(rt, nd, c && upstream_connect_failed(c), why);
        }
        rt_node_update_gauge(nd);
    }
    pthread_mutex_unlock(&rt->mu);
    for (int i = 0; i < n; i++) upstream_free(ck[i].call);
}

/* One round: drops joined nodes past their TTL, then checks every other node, 8 at a time. */
static void check_all(router *rt) {
    check ck[8];
    int n = 0;
    double now = http_now_ms();
    pthread_mutex_lock(&rt->mu);
    int total = rt->n_nodes;
    pthread_mutex_unlock(&rt->mu);
    for (int i = 0; i < total; i++) {
        pthread_mutex_lock(&rt->mu);
        rt_node *nd = rt->nodes[i];
        if (nd->joined && !nd->removed && now - nd->last_seen_ms > rt->cfg->node_ttl_ms) {
            nd->removed = true;
            rt_node_update_gauge(nd);
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

/* The health thread: a round every health_interval_ms until rt->stop. */
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

/* router_int.h */
int rt_health_start(router *rt, sh_err *err) {
    if (pthread_create(&rt->health_thread, NULL, health_main, rt)) {
        sh_errf(err, "cannot start the health-check thread");
        return -1;
    }
    rt->health_started = true;
    return 0;
}

/* router_int.h */
void rt_health_stop(router *rt) {
    if (!rt->health_started) return;
    pthread_mutex_lock(&rt->mu);
    rt->stop = true;
    pthread_cond_broadcast(&rt->stop_cv);
    pthread_mutex_unlock(&rt->mu);
    pthread_join(rt->health_thread, NULL);
    rt->health_started = false;
}

/* ============================================================ start-up ===== */

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

/* router_int.h */
int rt_startup_check(router *rt, sh_err *err) {
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
            n->health = RT_HEALTH_DOWN;
            snprintf(n->last_error, sizeof n->last_error, "start-up: %.140s", status < 0 ? e.msg : "HTTP error");
            if (status == 401) {
                free(body);
                return sh_errf(err, "%s:%d: node '%s' (%s) refused the api_key (401)", c->path ? c->path : "config",
                               c->nodes[i].line, n->name, n->url);
            }
            free(body);
            continue;
        }
        n->health = RT_HEALTH_UP;
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
