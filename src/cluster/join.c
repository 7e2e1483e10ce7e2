/*
 * cluster/join — see join.h.
 */
#include "cluster/join.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/upstream.h"
#include "core/mono.h"

struct joiner {
    upstream_pool *pool;
    char *url;                  /* ROUTER/v1/cluster/join */
    json_t *msg;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, draining, kick, joined_once, last_ok;
    double interval_ms;
};

static char *render(joiner *j, bool leave) {
    json_object_set_new(j->msg, "draining", json_boolean(j->draining));
    json_object_set_new(j->msg, "leave", json_boolean(leave));
    return json_dumps(j->msg, JSON_COMPACT);
}

/* One announcement; adopts the router's heartbeat interval. */
static void announce(joiner *j, bool leave) {
    pthread_mutex_lock(&j->mu);
    char *body = render(j, leave);
    pthread_mutex_unlock(&j->mu);
    if (!body) return;
    const char *hdr[] = {"Content-Type: application/json", NULL};
    upstream_req r = {.method = "POST", .url = j->url, .body = body, .body_len = strlen(body), .headers = hdr,
                      .connect_timeout_ms = 1000, .timeout_ms = 3000};
    char *ans = NULL;
    size_t len = 0;
    sh_err err = {{0}};
    int status = upstream_fetch(j->pool, &r, &ans, &len, &err);
    free(body);
    bool ok = status == 200;
    if (ok) {
        json_t *a = json_loadb(ans, len, 0, NULL);
        double hb = json_number_value(json_object_get(a, "heartbeat_ms"));
        if (hb >= 50 && hb <= 60000) j->interval_ms = hb;
        json_decref(a);
    }
    if (ok && !j->last_ok && !leave) fprintf(stderr, "shoal: joined the router at %s\n", j->url);
    if (!ok && (j->last_ok || !j->joined_once))
        fprintf(stderr, "shoal: warning: cannot join the router at %s: %s%.200s (retrying)\n", j->url,
                status < 0 ? err.msg : "", status >= 0 && ans ? ans : "");
    j->joined_once = true;
    j->last_ok = ok;
    free(ans);
}

static void *heartbeat_main(void *arg) {
    joiner *j = arg;
    pthread_mutex_lock(&j->mu);
    while (!j->stop) {
        struct timespec ts = mono_deadline(j->interval_ms);
        while (!j->stop && !j->kick)
            if (pthread_cond_timedwait(&j->cv, &j->mu, &ts)) break;
        if (j->stop) break;
        j->kick = false;
        pthread_mutex_unlock(&j->mu);
        announce(j, false);
        pthread_mutex_lock(&j->mu);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

joiner *joiner_start(const joiner_params *p, sh_err *err) {
    if (!p->router_url || strncmp(p->router_url, "http", 4)) return sh_errf(err, "--join: give the router's URL, http://host:port"), NULL;
    if (!p->token || !*p->token) return sh_errf(err, "--join needs --token (the router's join_token)"), NULL;
    if (!p->self_url) return sh_errf(err, "--join: this node's URL is unknown (give --advertise http://host:port)"), NULL;
    joiner *j = calloc(1, sizeof *j);
    if (!j) return sh_errf(err, "out of memory"), NULL;
    j->interval_ms = 1000;
    pthread_mutex_init(&j->mu, NULL);
    mono_cond_init(&j->cv);
    size_t n = strlen(p->router_url);
    while (n && p->router_url[n - 1] == '/') n--;
    if (asprintf(&j->url, "%.*s/v1/cluster/join", (int)n, p->router_url) < 0) j->url = NULL;
    j->msg = json_object();
    json_t *models = json_array();
    for (int i = 0; i < p->n_models; i++) json_array_append_new(models, json_string(p->models[i]));
    json_object_set_new(j->msg, "token", json_string(p->token));
    json_object_set_new(j->msg, "url", json_string(p->self_url));
    if (p->name) json_object_set_new(j->msg, "name", json_string(p->name));
    if (p->api_key) json_object_set_new(j->msg, "api_key", json_string(p->api_key));
    json_object_set_new(j->msg, "models", models);
    if (!j->url || !(j->pool = upstream_pool_init(err))) {
        joiner_free(j);
        return NULL;
    }
    announce(j, false);
    if (pthread_create(&j->th, NULL, heartbeat_main, j)) {
        sh_errf(err, "cannot start the heartbeat thread");
        upstream_pool_free(j->pool);
        j->pool = NULL;
        joiner_free(j);
        return NULL;
    }
    return j;
}

void joiner_set_draining(joiner *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    j->draining = true;
    j->kick = true;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

void joiner_free(joiner *j) {
    if (!j) return;
    if (j->pool) {
        pthread_mutex_lock(&j->mu);
        j->stop = true;
        pthread_cond_signal(&j->cv);
        pthread_mutex_unlock(&j->mu);
        pthread_join(j->th, NULL);
        announce(j, true);
        upstream_pool_free(j->pool);
    }
    json_decref(j->msg);
    free(j->url);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}
