/*
 * cluster/router_join — POST /v1/cluster/join (router.h): a node announces itself with the
 * join token, its URL, its key and the model names it serves, and repeats that as a
 * heartbeat; it can say it is draining, or leave. A new URL becomes a node, a new model name a
 * "joined" name only joined nodes serve.
 */
#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/router_int.h"

/* Is u a join URL we take: http(s)://host[:port], at most 500 bytes, no path, query,
 * credentials, quotes or spaces. */
static bool url_ok(const char *u) {
    if (!u || strlen(u) > 500) return false;
    const char *h = !strncmp(u, "http://", 7) ? u + 7 : !strncmp(u, "https://", 8) ? u + 8 : NULL;
    if (!h || !*h || *h == '/' || *h == ':') return false;
    for (const char *p = h; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '\\' || *p == '/' || *p == '?' || *p == '#' || *p == '@') return false;
    return true;
}

/* router.h */
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
        rt_respond_err(resp, 400, "invalid_request_error", NULL, "join: the body must be a JSON object");
    } else if (!jt) {
        rt_respond_err(resp, 403, "invalid_request_error", NULL, "this router takes no joins (no join_token in its config)");
    } else if (!token || strlen(token) != strlen(jt) || CRYPTO_memcmp(token, jt, strlen(jt))) {
        rt_respond_err(resp, 401, "invalid_request_error", "invalid_join_token", "join: missing or wrong token");
    } else if (!url_ok(url)) {
        rt_respond_err(resp, 400, "invalid_request_error", NULL, "join: 'url' must be http(s)://host[:port]");
    } else if (!leave && (!json_is_array(models) || json_array_size(models) < 1 ||
                          json_array_size(models) > RT_MAX_JOIN_MODELS)) {
        rt_respond_err(resp, 400, "invalid_request_error", NULL, "join: 'models' must list 1..%d model names",
                    RT_MAX_JOIN_MODELS);
    } else if (name && (!*name || strlen(name) > 64)) {
        rt_respond_err(resp, 400, "invalid_request_error", NULL, "join: 'name' must be 1..64 characters");
    } else {
        size_t i;
        json_t *v;
        bool ok = true;
        json_array_foreach(models, i, v) {
            const char *s = json_string_value(v);
            if (!s || !*s || strlen(s) > 128) ok = false;
        }
        if (!ok) {
            rt_respond_err(resp, 400, "invalid_request_error", NULL, "join: every model name must be a string of 1..128 characters");
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
            n = rt_node_new(rt, nm, url, key, true);
            if (n) fprintf(stderr, "shoal: router: node %s (%s) joined\n", n->name, n->url);
        }
        if (!n && !leave) {
            pthread_mutex_unlock(&rt->mu);
            rt_respond_err(resp, 503, "server_error", NULL, "join: the router already knows %d nodes", RT_MAX_NODES);
            json_decref(j);
            return;
        }
        if (n && leave) {
            if (!n->removed) fprintf(stderr, "shoal: router: node %s (%s) left\n", n->name, n->url);
            n->removed = n->joined; /* a configured node stays known; health checks decide */
            if (!n->joined) n->health = RT_HEALTH_DRAINING;
        } else if (n) {
            if (n->removed) fprintf(stderr, "shoal: router: node %s (%s) rejoined\n", n->name, n->url);
            n->removed = false;
            n->last_seen_ms = http_now_ms();
            if (key && (!n->auth || strcmp(n->auth + 22, key))) {
                free(n->auth);
                n->auth = rt_auth_header(key);
            }
            if (draining) n->health = RT_HEALTH_DRAINING;
            else if (n->health != RT_HEALTH_UP) n->health = RT_HEALTH_UNKNOWN; /* the next check confirms */
            json_array_foreach(models, i, v) {
                const char *mn = json_string_value(v);
                rt_model *m = rt_find_model(rt, mn);
                if (!m) {
                    if (!(m = rt_model_new(rt, mn, ROUTE_LEAST_LOADED, &err))) break;
                    m->dynamic = true; /* a name only joined nodes serve */
                }
                if (m->policy == CCFG_POLICY_RULES) continue;
                bool have = false;
                for (int k = 0; k < m->n; k++)
                    if (m->b[k]->node == n && !strcmp(m->b[k]->model, mn)) have = true;
                if (!have && !rt_backend_add(rt, m, -1, n, mn, 0, &err)) break;
            }
        }
        if (n) rt_node_update_gauge(n);
        json_t *out = json_pack("{s:b, s:s, s:f, s:f}", "ok", !err.msg[0], "node", n ? n->name : "",
                                "heartbeat_ms", rt->cfg->heartbeat_ms, "ttl_ms", rt->cfg->node_ttl_ms);
        pthread_mutex_unlock(&rt->mu);
        if (err.msg[0]) json_object_set_new(out, "warning", json_string(err.msg));
        rt_respond_json(resp, 200, out);
    }
    json_decref(j);
}
