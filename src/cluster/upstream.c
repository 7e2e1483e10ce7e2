/*
 * cluster/upstream — see upstream.h.
 *
 * Each call owns a curl multi + easy pair. The multi runs in "socket" mode: libcurl tells us
 * (socket and timer callbacks) which sockets to watch and when its next timeout is, and
 * upstream_poll waits on the sockets of all the calls it was given with one ppoll, then hands
 * the events back with curl_multi_socket_action. That is what lets one poll drive calls that
 * each have their own multi, without select()'s FD_SETSIZE limit.
 *
 * The pairs are pooled: curl_multi_init costs a socketpair and a few allocations, and a
 * multi's connection cache is where the kept-alive connections live, so a pair going back to
 * the pool keeps its connections warm for the next call to the same origin.
 *
 * http:// URLs whose host is an IP address (every node URL of a cluster on one network, and
 * the router's hot path) skip libcurl: upstream_h1.c speaks HTTP/1.1 on its own pooled
 * keep-alive sockets, in the same poll (libcurl's state machine, URL parser and callbacks
 * were most of the router's CPU time per request). The poll loop below drives both kinds.
 */
#include "cluster/upstream.h"

#include <curl/curl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cluster/upstream_int.h"

/* upstream_int.h: the clock of both transports */
double up_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ============================================================ the pool ===== */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static CURLcode g_init_rc = CURLE_FAILED_INIT;

static void global_init(void) { g_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud) {
    (void)h;
    (void)access;
    upstream_pool *p = ud;
    if ((unsigned)data < CURL_LOCK_DATA_LAST) pthread_mutex_lock(&p->locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud) {
    (void)h;
    upstream_pool *p = ud;
    if ((unsigned)data < CURL_LOCK_DATA_LAST) pthread_mutex_unlock(&p->locks[data]);
}

upstream_pool *upstream_pool_init(sh_err *err) {
    pthread_once(&g_once, global_init);
    if (g_init_rc != CURLE_OK) {
        sh_errf(err, "curl_global_init failed: %s", curl_easy_strerror(g_init_rc));
        return NULL;
    }
    upstream_pool *p = calloc(1, sizeof *p);
    if (!p) {
        sh_errf(err, "out of memory");
        return NULL;
    }
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&p->locks[i], NULL);
    pthread_mutex_init(&p->mu, NULL);
    atomic_store(&p->max_body, UPSTREAM_DEFAULT_MAX_BODY);
    p->share = curl_share_init();
    if (!p->share ||
        curl_share_setopt(p->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
        curl_share_setopt(p->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
        curl_share_setopt(p->share, CURLSHOPT_USERDATA, p) != CURLSHE_OK ||
        curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK) {
        sh_errf(err, "cannot set up the curl share handle");
        upstream_pool_free(p);
        return NULL;
    }
    return p;
}

void upstream_pool_set_max_body(upstream_pool *p, size_t max_bytes) {
    atomic_store(&p->max_body, max_bytes ? max_bytes : UPSTREAM_DEFAULT_MAX_BODY);
}

static void pair_destroy(upstream_call *c) {
    if (!c) return;
    /* The easy handle first: it holds a reference on the share (curl_share_cleanup refuses
     * while any easy handle uses it). The multi then closes its cached connections. */
    if (c->easy) curl_easy_cleanup(c->easy);
    if (c->multi) curl_multi_cleanup(c->multi);
    curl_slist_free_all(c->hdrs);
    free(c->hdr);
    free(c->buf);
    free(c);
}

void upstream_pool_free(upstream_pool *p) {
    if (!p) return;
    for (int i = 0; i < p->nfree; i++) pair_destroy(p->free[i]);
    up_h1_pool_close(p);
    if (p->share) curl_share_cleanup(p->share);
    pthread_mutex_destroy(&p->mu);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_destroy(&p->locks[i]);
    free(p);
}

/* ============================================================ libcurl callbacks ===== */

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp) {
    (void)easy;
    (void)sockp;
    upstream_call *c = ud;
    int i = 0;
    while (i < c->nsocks && c->socks[i].fd != fd) i++;
    if (what == CURL_POLL_REMOVE) {
        if (i < c->nsocks) c->socks[i] = c->socks[--c->nsocks];
        return 0;
    }
    if (i == c->nsocks) {
        if (c->nsocks == UP_SOCKS_MAX) { /* not seen in practice; poll by time instead */
            c->socks_overflow = true;
            return 0;
        }
        c->nsocks++;
    }
    c->socks[i] = (up_sock_watch){fd, what};
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *ud) {
    (void)multi;
    upstream_call *c = ud;
    c->timer_at = timeout_ms < 0 ? -1.0 : up_now_ms() + (double)timeout_ms;
    return 0;
}

/* A connection is up (new or reused) and the request is about to be sent: from here on a
 * failure is no longer "could not connect", the node may have seen the request. */
static int on_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port) {
    (void)conn_primary_ip;
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    upstream_call *c = ud;
    c->connected = true;
    return CURL_PREREQFUNC_OK;
}

void up_set_error(upstream_call *c, const char *msg) {
    if (!c->error[0]) snprintf(c->error, sizeof c->error, "%s", msg);
}

static void trim(const char **s, const char **e) {
    while (*s < *e && (**s == ' ' || **s == '\t')) (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t' || (*e)[-1] == '\r' || (*e)[-1] == '\n'))
        (*e)--;
}

static size_t on_header(char *line, size_t size, size_t n, void *ud) {
    upstream_call *c = ud;
    size_t k = size * n;
    if (c->headers_done) return k; /* trailers of a chunked body: not kept */
    if (k >= 5 && !memcmp(line, "HTTP/", 5)) { /* a status line: a new response (after 1xx) */
        c->hdr_len = 0;
        c->nhdr = 0;
        if (c->header_ms == 0) c->header_ms = up_now_ms();
        return k;
    }
    if (k <= 2 && (line[0] == '\r' || line[0] == '\n')) { /* end of this response's headers */
        long code = 0;
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200) {
            c->status = (int)code;
            c->headers_done = true;
            c->header_ms = up_now_ms();
        }
        return k;
    }
    const char *colon = memchr(line, ':', k);
    if (!colon || line[0] == ' ' || line[0] == '\t') return k; /* folded or malformed: ignored */
    const char *ns = line, *ne = colon, *vs = colon + 1, *ve = line + k;
    trim(&ns, &ne);
    trim(&vs, &ve);
    return up_header_add(c, ns, (size_t)(ne - ns), vs, (size_t)(ve - vs)) ? k : 0; /* 0 aborts */
}

bool up_header_add(upstream_call *c, const char *ns, size_t nl, const char *vs, size_t vl) {
    size_t need = c->hdr_len + nl + vl + 2;
    if (c->nhdr >= UPSTREAM_MAX_HEADERS || need > UPSTREAM_MAX_HEADER_BYTES) {
        snprintf(c->error, sizeof c->error,
                 "response headers exceed the limit (%d lines, %d bytes)", UPSTREAM_MAX_HEADERS,
                 UPSTREAM_MAX_HEADER_BYTES);
        return false;
    }
    if (need > c->hdr_cap) {
        size_t cap = c->hdr_cap ? c->hdr_cap : 1024;
        while (cap < need) cap *= 2;
        char *h = realloc(c->hdr, cap);
        if (!h) {
            up_set_error(c, "out of memory for response headers");
            return false;
        }
        c->hdr = h;
        c->hdr_cap = cap;
    }
    memcpy(c->hdr + c->hdr_len, ns, nl);
    c->hdr[c->hdr_len + nl] = 0;
    memcpy(c->hdr + c->hdr_len + nl + 1, vs, vl);
    c->hdr[c->hdr_len + nl + 1 + vl] = 0;
    c->hdr_len = need;
    c->nhdr++;
    return true;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
    upstream_call *c = ud;
    size_t k = size * n;
    if (k == 0) return 0;
    return up_body_add(c, data, k) ? k : 0; /* 0: CURLE_WRITE_ERROR, the connection is closed */
}

bool up_body_add(upstream_call *c, const char *data, size_t k) {
    size_t unread = c->len - c->off;
    if (unread + k > c->max_body || unread + k < unread) {
        snprintf(c->error, sizeof c->error,
                 "response body exceeds %zu bytes buffered (limit of the upstream pool)",
                 c->max_body);
        return false;
    }
    if (c->off > 0 && c->len + k > c->cap) { /* slide the unread bytes to the front first */
        memmove(c->buf, c->buf + c->off, unread);
        c->off = 0;
        c->len = unread;
    }
    if (c->len + k > c->cap) {
        size_t cap = c->cap ? c->cap : 16384;
        while (cap < c->len + k) cap *= 2;
        char *b = realloc(c->buf, cap);
        if (!b) {
            up_set_error(c, "out of memory for the response body");
            return false;
        }
        c->buf = b;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, data, k);
    c->len += k;
    if (!c->body_started) {
        c->body_started = true;
        c->body_ms = up_now_ms();
    }
    return true;
}

/* ============================================================ starting a call ===== */

/* A fresh pair with the options that never change (curl_easy_reset keeps the share). */
static upstream_call *pair_new(upstream_pool *p) {
    upstream_call *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->pool = p;
    c->timer_at = -1;
    c->multi = curl_multi_init();
    c->easy = curl_easy_init();
    if (!c->multi || !c->easy || curl_easy_setopt(c->easy, CURLOPT_SHARE, p->share) != CURLE_OK) {
        pair_destroy(c);
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, UP_CONNS_PER_PAIR);
    return c;
}

/* "scheme://host:port" prefix of url (up to the path), the free list's match key. */
static void url_origin(const char *url, char *out, size_t cap) {
    const char *s = strstr(url, "://");
    size_t n = s ? (size_t)(s + 3 - url) + strcspn(s + 3, "/?#") : strlen(url);
    if (n >= cap) n = cap - 1;
    memcpy(out, url, n);
    out[n] = 0;
}

/* Takes an idle pair from the pool: the most recent one that talked to this origin, else the
 * least recently used one (its connections are the coldest), else a new one. */
static upstream_call *pair_take(upstream_pool *p, const char *origin) {
    upstream_call *c = NULL;
    pthread_mutex_lock(&p->mu);
    int pick = -1;
    for (int i = p->nfree - 1; i >= 0; i--)
        if (!strcmp(p->free[i]->origin, origin)) {
            pick = i;
            break;
        }
    if (pick < 0 && p->nfree > 0) pick = 0;
    if (pick >= 0) {
        c = p->free[pick];
        memmove(&p->free[pick], &p->free[pick + 1], (size_t)(p->nfree - pick - 1) * sizeof c);
        p->nfree--;
    }
    pthread_mutex_unlock(&p->mu);
    return c ? c : pair_new(p);
}

static bool header_ok(const char *h) {
    const char *colon = strchr(h, ':');
    if (!colon || colon == h) return false;
    for (const char *q = h; *q; q++)
        if (*q == '\r' || *q == '\n') return false;
    return true;
}

static bool url_ok(const char *u) {
    if (strncasecmp(u, "http://", 7) && strncasecmp(u, "https://", 8)) return false;
    for (const unsigned char *q = (const unsigned char *)u; *q; q++)
        if (*q <= ' ' || *q == 0x7f) return false;
    return true;
}

/* The options every request shares, on a handle that curl_easy_reset just cleared; set once
 * per pair (curl_easy_reset and twenty setopt calls per request were a visible part of the
 * router's CPU time per request). */
static CURLcode set_static_options(upstream_call *c) {
    CURL *e = c->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val);                                    \
    } while (0)
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROXY, ""); /* environment proxies never apply */
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_ERRORBUFFER, c->curl_err);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, c);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, c);
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, c);
    return rc;
}

/* The options of this request; every one of them is set on every request (a timeout of 0 is
 * none, HTTPGET undoes an earlier POST), so nothing carries over from the pair's last call. */
static CURLcode set_options(upstream_call *c, const upstream_req *r, bool post) {
    CURL *e = c->easy;
    CURLcode rc = CURLE_OK;
    SET(CURLOPT_URL, r->url);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)(r->connect_timeout_ms > 0 ? r->connect_timeout_ms : 1000));
    SET(CURLOPT_TIMEOUT_MS, r->timeout_ms > 0 ? (long)(r->timeout_ms < 1 ? 1 : r->timeout_ms) : 0L);
    if (post) {
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        SET(CURLOPT_COPYPOSTFIELDS, r->body_len ? r->body : "");
    } else {
        SET(CURLOPT_HTTPGET, 1L);
    }
    SET(CURLOPT_HTTPHEADER, c->hdrs);
#undef SET
    return rc;
}

upstream_call *upstream_start(upstream_pool *p, const upstream_req *r, sh_err *err) {
    if (!p || !r || !r->url || !r->method) {
        sh_errf(err, "upstream: request without %s", !r || !r->url ? "a URL" : "a method");
        return NULL;
    }
    bool post = !strcmp(r->method, "POST");
    if (!post && strcmp(r->method, "GET")) {
        sh_errf(err, "upstream: method '%.32s' not supported (GET or POST)", r->method);
        return NULL;
    }
    if (!post && r->body_len) {
        sh_errf(err, "upstream: a GET request with a body");
        return NULL;
    }
    if (post && r->body_len && !r->body) {
        sh_errf(err, "upstream: body_len %zu without a body", r->body_len);
        return NULL;
    }
    if (!url_ok(r->url)) {
        sh_errf(err, "upstream: '%.200s' is not an http:// or https:// URL", r->url);
        return NULL;
    }
    for (const char *const *h = r->headers; h && *h; h++)
        if (!header_ok(*h)) {
            sh_errf(err, "upstream: bad request header '%.100s'", *h);
            return NULL;
        }
    upstream_call *c = NULL;
    if (up_h1_start(p, r, post, &c, err)) return c; /* the built-in client takes it */
    struct curl_slist *hdrs = NULL;
    for (const char *const *h = r->headers; h && *h; h++) {
        struct curl_slist *n = curl_slist_append(hdrs, *h);
        if (!n) goto oom;
        hdrs = n;
    }
    if (post) { /* no "Expect: 100-continue" round trip for larger bodies */
        struct curl_slist *n = curl_slist_append(hdrs, "Expect:");
        if (!n) goto oom;
        hdrs = n;
    }

    char origin[UP_ORIGIN_MAX];
    url_origin(r->url, origin, sizeof origin);
    c = pair_take(p, origin);
    if (!c) goto oom;
    snprintf(c->origin, sizeof c->origin, "%s", origin);
    c->hdrs = hdrs;
    c->max_body = atomic_load(&p->max_body);
    c->start_ms = up_now_ms();
    CURLcode rc = CURLE_OK;
    if (!c->configured) {
        curl_easy_reset(c->easy);
        rc = set_static_options(c);
        c->configured = rc == CURLE_OK;
    }
    if (rc == CURLE_OK) rc = set_options(c, r, post);
    CURLMcode mrc = rc == CURLE_OK ? curl_multi_add_handle(c->multi, c->easy) : CURLM_OK;
    if (rc != CURLE_OK || mrc != CURLM_OK) {
        sh_errf(err, "upstream: cannot set up the request: %s",
                rc != CURLE_OK ? curl_easy_strerror(rc) : curl_multi_strerror(mrc));
        upstream_free(c); /* not added: goes back to the pool as is */
        return NULL;
    }
    return c;
oom:
    curl_slist_free_all(hdrs);
    sh_errf(err, "out of memory");
    return NULL;
}

/* Puts a pair back to its pool (or destroys it) after clearing what belonged to the request. */
static void pair_release(upstream_call *c) {
    upstream_pool *p = c->pool;
    curl_slist_free_all(c->hdrs);
    c->hdrs = NULL;
    /* Everything else back to zero, keeping the handles and the buffers' memory. */
    char *hdr = c->hdr, *buf = c->buf;
    size_t hdr_cap = c->hdr_cap, cap = c->cap;
    CURLM *multi = c->multi;
    CURL *easy = c->easy;
    bool configured = c->configured;
    char origin[UP_ORIGIN_MAX];
    memcpy(origin, c->origin, sizeof origin);
    if (cap > 1u << 20) { /* a big response: do not keep its memory around idle */
        free(buf);
        buf = NULL;
        cap = 0;
    }
    memset(c, 0, sizeof *c);
    c->pool = p;
    c->multi = multi;
    c->easy = easy;
    c->configured = configured;
    c->hdr = hdr;
    c->hdr_cap = hdr_cap;
    c->buf = buf;
    c->cap = cap;
    c->timer_at = -1;
    memcpy(c->origin, origin, sizeof origin);

    pthread_mutex_lock(&p->mu);
    if (p->nfree == UP_FREE_MAX) { /* full: drop the coldest pair */
        upstream_call *old = p->free[0];
        memmove(&p->free[0], &p->free[1], (size_t)(UP_FREE_MAX - 1) * sizeof old);
        p->free[UP_FREE_MAX - 1] = c;
        pthread_mutex_unlock(&p->mu);
        pair_destroy(old);
        return;
    }
    p->free[p->nfree++] = c;
    pthread_mutex_unlock(&p->mu);
}

void upstream_free(upstream_call *c) {
    if (!c) return;
    if (c->native) {
        up_h1_free(c);
        return;
    }
    /* Removing a handle whose transfer is unfinished makes libcurl close that connection (it
     * is never put back in the cache half-read), so the node sees the client go away. A
     * finished transfer's connection is already back in the pair's cache, kept alive. The
     * call is not attached when upstream_start failed; remove_handle then just says so. */
    curl_multi_remove_handle(c->multi, c->easy);
    pair_release(c);
}

/* ============================================================ driving calls ===== */

upstream_state upstream_get_state(const upstream_call *c) {
    if (c->failed) return UPSTREAM_FAILED;
    if (c->complete && c->off == c->len) return UPSTREAM_DONE;
    if (c->body_started || c->off < c->len) return UPSTREAM_BODY;
    if (c->headers_done) return UPSTREAM_HEADERS;
    return UPSTREAM_CONNECTING;
}

/* Collects the end of the transfer, if libcurl has reported it. */
static void check_done(upstream_call *c) {
    int left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        CURLcode res = m->data.result;
        curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &c->num_connects);
        if (res == CURLE_OK && c->headers_done) {
            c->complete = true;
            continue;
        }
        c->failed = true;
        if (res == CURLE_OK) up_set_error(c, "the response ended before its headers");
        else if (c->error[0]) { /* our own limit, already said */
        } else if (c->curl_err[0]) up_set_error(c, c->curl_err);
        else up_set_error(c, curl_easy_strerror(res));
    }
}

static void act(upstream_call *c, curl_socket_t fd, int ev) {
    int running;
    curl_multi_socket_action(c->multi, fd, ev, &running);
    check_done(c);
}

static bool finished(const upstream_call *c) { return c->failed || c->complete; }

/* The ready call upstream_poll returns (see upstream.h), or -1; peek: only look, do not mark
 * it returned. With until_done, ready means finished instead (upstream_fetch reads nothing out
 * until the end). */
static int pick_ready(upstream_call *const *calls, int n, bool until_done, bool peek) {
    int best = -1;
    for (int i = 0; i < n; i++) {
        const upstream_call *c = calls[i];
        if (!c) continue;
        if (until_done ? !finished(c)
                       : c->off == c->len && upstream_get_state(c) == c->reported)
            continue;
        if (best < 0 || c->served < calls[best]->served) best = i;
    }
    if (best >= 0 && !until_done && !peek) {
        upstream_call *c = calls[best];
        c->reported = upstream_get_state(c);
        c->served = atomic_fetch_add(&c->pool->serve_seq, 1) + 1;
    }
    return best;
}

/* Fires the libcurl timers that are due, and starts the built-in calls that have not started
 * or ends those past a deadline; true when anything moved (a built-in call moved when its
 * state did: sending a request is no reason not to wait for the answer). */
static bool run_timers(upstream_call *const *calls, int n, double now) {
    bool fired = false;
    for (int i = 0; i < n; i++) {
        upstream_call *c = calls[i];
        if (!c || finished(c)) continue;
        if (c->native) {
            double dl = up_h1_deadline(c);
            if (c->h1.phase == UP_H1_START || (dl > 0 && dl <= now)) {
                upstream_state st = upstream_get_state(c);
                up_h1_step(c, now);
                if (upstream_get_state(c) != st) fired = true;
            }
            continue;
        }
        if (c->timer_at >= 0 && c->timer_at <= now) {
            c->timer_at = -1;
            act(c, CURL_SOCKET_TIMEOUT, 0);
            fired = true;
        } else if (c->socks_overflow) { /* sockets we cannot watch: let libcurl look itself */
            act(c, CURL_SOCKET_TIMEOUT, 0);
        }
    }
    return fired;
}

/* Waits up to wait_ms for socket events or timers of the live calls, then hands the events to
 * libcurl or to the built-in client. */
static void drive(upstream_call *const *calls, int n, double wait_ms) {
    double now = up_now_ms();
    if (run_timers(calls, n, now)) wait_ms = 0; /* something moved: look, don't sleep */
    struct pollfd pfd[UPSTREAM_POLL_MAX * UP_SOCKS_MAX];
    upstream_call *owner[UPSTREAM_POLL_MAX * UP_SOCKS_MAX];
    int np = 0;
    double wake = now + wait_ms;
    for (int i = 0; i < n; i++) {
        upstream_call *c = calls[i];
        if (!c || finished(c)) continue;
        if (c->native) {
            double dl = up_h1_deadline(c);
            if (dl > 0 && dl < wake) wake = dl;
            short ev = up_h1_events(c);
            if (ev) {
                pfd[np] = (struct pollfd){.fd = c->h1.fd, .events = ev};
                owner[np++] = c;
            }
            continue;
        }
        if (c->timer_at >= 0 && c->timer_at < wake) wake = c->timer_at;
        if (c->socks_overflow && now + 1 < wake) wake = now + 1;
        for (int k = 0; k < c->nsocks; k++) {
            short ev = 0;
            if (c->socks[k].what & CURL_POLL_IN) ev |= POLLIN;
            if (c->socks[k].what & CURL_POLL_OUT) ev |= POLLOUT;
            pfd[np] = (struct pollfd){.fd = c->socks[k].fd, .events = ev};
            owner[np++] = c;
        }
    }
    double wait = wake - now;
    if (wait < 0) wait = 0;
    time_t sec = (time_t)(wait / 1e3);
    struct timespec ts = {.tv_sec = sec, .tv_nsec = (long)((wait - (double)sec * 1e3) * 1e6)};
    if (ppoll(pfd, (nfds_t)np, &ts, NULL) <= 0) { /* timeout or EINTR */
        run_timers(calls, n, up_now_ms());
        return;
    }
    for (int i = 0; i < np; i++) {
        if (!pfd[i].revents || finished(owner[i])) continue;
        if (owner[i]->native) {
            up_h1_step(owner[i], up_now_ms());
            continue;
        }
        int ev = 0;
        if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) ev |= CURL_CSELECT_IN;
        if (pfd[i].revents & POLLOUT) ev |= CURL_CSELECT_OUT;
        if (pfd[i].revents & (POLLERR | POLLNVAL)) ev |= CURL_CSELECT_ERR;
        act(owner[i], pfd[i].fd, ev);
    }
}

static int poll_calls(upstream_call *const *calls, int n, double timeout_ms, bool until_done) {
    SH_ASSERT(n >= 0 && n <= UPSTREAM_POLL_MAX);
    /* Something is ready already: still give every call one look without waiting, so that a
     * call whose bytes the caller leaves buffered does not stop the others. */
    if (pick_ready(calls, n, until_done, true) >= 0) {
        drive(calls, n, 0);
        return pick_ready(calls, n, until_done, false);
    }
    double end = up_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        bool live = false;
        for (int i = 0; i < n; i++) live |= calls[i] && !finished(calls[i]);
        if (!live) return -1;
        double wait = end - up_now_ms();
        drive(calls, n, wait > 0 ? wait : 0);
        int r = pick_ready(calls, n, until_done, false);
        if (r >= 0) return r;
        if (up_now_ms() >= end) return -1;
    }
}

int upstream_poll(upstream_call *const *calls, int n, double timeout_ms) {
    return poll_calls(calls, n, timeout_ms, false);
}

/* ============================================================ accessors ===== */

int upstream_status(const upstream_call *c) { return c->headers_done ? c->status : 0; }
const char *upstream_error(const upstream_call *c) { return c->error; }
bool upstream_connect_failed(const upstream_call *c) { return c->failed && !c->connected; }
long upstream_num_connects(const upstream_call *c) { return c->num_connects; }
size_t upstream_buffered(const upstream_call *c) { return c->len - c->off; }

double upstream_first_byte_ms(const upstream_call *c) {
    if (c->body_started) return c->body_ms - c->start_ms;
    if (c->headers_done) return c->header_ms - c->start_ms;
    return 0;
}

const char *upstream_header(const upstream_call *c, const char *name) {
    if (!c->headers_done) return NULL;
    const char *found = NULL;
    for (size_t i = 0; i < c->hdr_len;) {
        const char *n = c->hdr + i, *v = n + strlen(n) + 1;
        if (!strcasecmp(n, name)) found = v;
        i = (size_t)(v + strlen(v) + 1 - c->hdr);
    }
    return found;
}

size_t upstream_read(upstream_call *c, char *buf, size_t max) {
    size_t k = c->len - c->off;
    if (k > max) k = max;
    if (k == 0) return 0;
    memcpy(buf, c->buf + c->off, k);
    c->off += k;
    if (c->off == c->len) c->off = c->len = 0;
    return k;
}

/* ============================================================ fetch ===== */

int upstream_fetch(upstream_pool *p, const upstream_req *r, char **body, size_t *len, sh_err *err) {
    *body = NULL;
    if (len) *len = 0;
    upstream_call *c = upstream_start(p, r, err);
    if (!c) return -1;
    /* The body accumulates in the call's buffer, bounded by the pool's max body. */
    while (!finished(c)) poll_calls(&c, 1, 1000, true);
    if (c->failed) {
        sh_errf(err, "%s: %s", r->url, c->error);
        upstream_free(c);
        return -1;
    }
    /* The body is complete in the call's buffer: hand it over whole. */
    size_t n = c->len - c->off;
    char *out = malloc(n + 1);
    if (!out) {
        sh_errf(err, "out of memory");
        upstream_free(c);
        return -1;
    }
    if (n) memcpy(out, c->buf + c->off, n);
    out[n] = 0;
    int status = c->status;
    upstream_free(c);
    *body = out;
    if (len) *len = n;
    return status;
}
