/*
 * cluster/router_remote — one attempt on a remote backend (router.h, steps 4-6): the request
 * goes out over a pooled upstream connection, with a duplicate to a second node when the model
 * hedges; bytes are held until the answer commits (a stream's first data event, or a whole
 * answer), so a failure before that can still move the request elsewhere; then the answer
 * streams through to the client, and a failure mid-stream ends it with an SSE error event.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/router_int.h"

/* ============================================================ legs ===== */

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

/* Ends a leg that is not the answer: its call closed, its bytes freed, the attempt counted
 * with outcome o. */
static void leg_drop(router *rt, rt_fwd *f, leg *l, rt_outcome o) {
    upstream_free(l->call);
    l->call = NULL;
    free(l->body);
    free(l->buf);
    rt_attempt_end(rt, l->b, f->tokens, o, 0);
    l->b = NULL;
}

/* Starts a leg on remote backend b (index idx): POST path with f's body for b, its request id,
 * traceparent and the node's key. -1 when it could not start (l is then still to be dropped). */
static int leg_start(router *rt, rt_fwd *f, leg *l, rt_backend *b, int idx, const char *path) {
    memset(l, 0, sizeof *l);
    l->b = b;
    l->idx = idx;
    size_t len;
    l->body = rt_body_for(f, b, &len);
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
    l->t_start = http_now_ms();
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
static leg_rc leg_check(router *rt, rt_fwd *f, leg *l, double now) {
    upstream_state st = upstream_get_state(l->call);
    if (st == UPSTREAM_FAILED) {
        bool hard = upstream_connect_failed(l->call);
        char why[200];
        snprintf(why, sizeof why, "%s", upstream_error(l->call));
        pthread_mutex_lock(&rt->mu);
        rt_node_trip(rt, l->b->node, hard, why);
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
        const double fbt = f->timeout_ms > 0 ? f->timeout_ms : rt->cfg->first_byte_timeout_ms;
        if (now - l->t_start > fbt) {
            char why[120];
            snprintf(why, sizeof why, "no answer in %.0f ms", fbt);
            pthread_mutex_lock(&rt->mu);
            rt_node_trip(rt, l->b->node, false, why);
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
        if (status == 503 && l->buf && strstr(l->buf, "draining")) l->b->node->health = RT_HEALTH_DRAINING;
        else if (status >= 500 && status != 503) rt_node_trip(rt, l->b->node, false, f->last_error);
        rt_node_update_gauge(l->b->node);
        pthread_mutex_unlock(&rt->mu);
        return LEG_FAIL;
    }
    if (status == 200 && f->stream && !complete)
        return l->buf && strstr(l->buf, "data:") ? LEG_COMMIT : LEG_WAIT;
    return complete ? LEG_COMMIT : LEG_WAIT;
}

/* ============================================================ streaming through ===== */

/* A remote stream's pull: the held bytes first (or the error event that replaced them), then
 * what the upstream call has; 0 while waiting (up to 200 ms), -1 at the end. */
static ssize_t remote_pull(void *ctx, char *buf, size_t max) {
    rt_fwd *f = ctx;
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
        rt_node_trip(f->rt, f->b->node, upstream_connect_failed(f->call), why);
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

/* A remote stream's end (the whole answer sent, a failure mid-stream, or the client gone):
 * closes the call, counts the attempt, writes the log record and frees f. */
static void remote_done(void *ctx, bool aborted) {
    rt_fwd *f = ctx;
    /* freeing the call closes its connection: the node sees the client go and stops */
    upstream_free(f->call);
    f->call = NULL;
    rt_outcome o = aborted ? RT_OUT_CANCELLED : f->last_status == -1 ? RT_OUT_FAILED : RT_OUT_OK;
    rt_attempt_end(f->rt, f->b, f->tokens, o, http_now_ms() - f->t_start);
    rt_route_log(f->rt, f, f->rid, f->tp, f->peer, f->kind, f->t_req, 200,
                 o == RT_OUT_CANCELLED ? "cancelled"
                 : o == RT_OUT_FAILED  ? "failed"
                                       : "ok",
                 o == RT_OUT_FAILED ? f->last_error : NULL);
    atomic_fetch_sub(&f->rt->active, 1);
    rt_fwd_free(f);
}

/* Commits leg l as the answer: its bytes so far go out first, the rest streams or is whole. */
static void commit_remote(router *rt, rt_fwd *f, leg *l, http_response *resp) {
    f->b = l->b;
    f->t_start = l->t_start;
    int status = upstream_status(l->call);
    double fb = upstream_first_byte_ms(l->call);
    pthread_mutex_lock(&rt->mu);
    rt_lat_add(&l->b->ttfb, fb > 0 ? fb : http_now_ms() - l->t_start);
    pthread_mutex_unlock(&rt->mu);
    const char *ct = upstream_header(l->call, "Content-Type");
    resp->status = status;
    if (f->stream && status == 200 && upstream_get_state(l->call) != UPSTREAM_DONE) {
        resp->content_type = "text/event-stream";
        http_resp_header(resp, "Cache-Control", "no-cache");
        rt_add_route_headers(f, resp);
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
    rt_add_route_headers(f, resp);
    if (status == 200) rt_annotate_body(f, resp);
    rt_backend *b = l->b;
    upstream_free(l->call);
    l->call = NULL;
    free(l->body);
    l->body = NULL;
    rt_attempt_end(rt, b, f->tokens, RT_OUT_OK, http_now_ms() - l->t_start);
    l->b = NULL;
}

/* ============================================================ the attempt ===== */

/* router_int.h */
rt_attempt_rc rt_try_remote(router *rt, rt_fwd *f, rt_model *m, rt_backend *b, int idx, bool *excluded,
                            const route_request *rq, http_request *req, const char *path, http_response *resp) {
    leg legs[2];
    int n = 0;
    if (leg_start(rt, f, &legs[0], b, idx, path)) {
        snprintf(f->last_error, sizeof f->last_error, "%s: could not start the request", b->name);
        f->last_status = 502;
        leg_drop(rt, f, &legs[0], RT_OUT_FAILED);
        excluded[idx] = true;
        return RT_ATT_RETRY;
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
        double now = http_now_ms();
        for (int i = 0; i < n; i++) {
            leg_rc rc = leg_check(rt, f, &legs[i], now);
            if (rc == LEG_WAIT) continue;
            if (rc == LEG_COMMIT) {
                for (int k = 0; k < n; k++)
                    if (k != i) leg_drop(rt, f, &legs[k], RT_OUT_CANCELLED);
                commit_remote(rt, f, &legs[i], resp);
                return RT_ATT_DONE;
            }
            excluded[legs[i].idx] = true;
            leg_drop(rt, f, &legs[i], RT_OUT_FAILED);
            legs[i] = legs[n - 1];
            n--;
            i--;
        }
        if (n == 0) return RT_ATT_RETRY;
        if (now >= hedge_at && n == 1) {
            hedge_at = 1e300;
            bool ex2[RT_MAX_BACKENDS];
            memcpy(ex2, excluded, sizeof ex2);
            ex2[legs[0].idx] = true;
            int i2 = -1;
            rt_backend *b2 = rt_pick(rt, m, ex2, rq, f->tokens, &f->degraded, &i2);
            if (b2 && b2->node) {
                metrics_inc(m->m_hedges, 1);
                f->hedged = true;
                f->attempts++;
                if (leg_start(rt, f, &legs[1], b2, i2, path) == 0) n = 2;
                else leg_drop(rt, f, &legs[1], RT_OUT_FAILED);
            } else if (b2) {
                /* hedging is between remote nodes: a local engine is not raced against itself */
                pthread_mutex_lock(&rt->mu);
                rt_load_add(b2, f->tokens, -1);
                pthread_mutex_unlock(&rt->mu);
            }
        }
        upstream_call *calls[2] = {legs[0].call, n > 1 ? legs[1].call : NULL};
        double wait = 50;
        if (hedge_at < 1e300 && hedge_at - now < wait) wait = hedge_at - now > 0 ? hedge_at - now : 0;
        if (f->timeout_ms > 0 && legs[0].t_start + f->timeout_ms - now < wait) /* a composition step's timeout */
            wait = legs[0].t_start + f->timeout_ms - now > 0 ? legs[0].t_start + f->timeout_ms - now : 0;
        /* a quiet wait is the time to look whether the client is still there (a syscall, so
         * not after every bit of progress) */
        if (upstream_poll(calls, n, wait) < 0 && wait >= 50 && http_req_client_gone(req)) {
            for (int k = 0; k < n; k++) leg_drop(rt, f, &legs[k], RT_OUT_CANCELLED);
            rt_respond_err(resp, 499, "server_error", NULL, "client closed the request");
            return RT_ATT_DONE;
        }
    }
}
