/*
 * http — see http.h. libmicrohttpd in thread-per-connection mode.
 */
#include "http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

struct http_server {
    struct MHD_Daemon *d;
    http_handler handler;
    void *ud;
    http_config cfg;
    uint16_t port;
    _Atomic unsigned active;
    bool quiesced;
};

struct http_request {
    http_server *srv;
    struct MHD_Connection *conn;
    const char *method;
    char path[1024];
    char id[72];
    char peer[64];
    char *body;
    size_t len, cap;
    bool too_large;
    double start_ms;
    http_done_fn sent;          /* a whole answer's done (http.h), called by on_completed */
    void *sent_ctx;
};

/* A streamed response's wrapper: remembers whether the source reached its end. */
typedef struct stream_wrap {
    http_pull_fn pull;
    http_done_fn done;
    void *ctx;
    bool ended;
    int fd;                     /* the connection's socket, to notice a hang-up early */
} stream_wrap;

double http_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ============================================================ request ids ===== */

static bool id_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return false;
    }
    return true;
}

/* A fresh "req-" + 24 hex digits id. The random bytes come 20 ids at a time per thread: one
 * getrandom call per 20 requests rather than one each. */
static void new_id(char *out) {
    static _Thread_local uint8_t pool[240];
    static _Thread_local size_t left;
    if (left < 12 && getrandom(pool, sizeof pool, 0) == (ssize_t)sizeof pool) left = sizeof pool;
    uint8_t b[12];
    if (left >= 12) {
        memcpy(b, pool + sizeof pool - left, sizeof b);
        left -= sizeof b;
    } else { /* fall back to time + counter */
        static _Atomic uint64_t ctr;
        uint64_t t = (uint64_t)(http_now_ms() * 1000) ^ (atomic_fetch_add(&ctr, 1) << 40);
        memcpy(b, &t, 8);
        memset(b + 8, 0, 4);
    }
    static const char hx[] = "0123456789abcdef";
    memcpy(out, "req-", 4);
    for (int i = 0; i < 12; i++) {
        out[4 + 2 * i] = hx[b[i] >> 4];
        out[5 + 2 * i] = hx[b[i] & 15];
    }
    out[28] = 0;
}

/* ============================================================ responses ===== */

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_wrap *w = cls;
    for (;;) {
        /* A client that closed its side is gone: stop now rather than after a send fails,
         * which TCP reports only a round trip later. */
        struct pollfd pfd = {.fd = w->fd, .events = POLLRDHUP};
        if (w->fd >= 0 && poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
            return MHD_CONTENT_READER_END_WITH_ERROR;
        ssize_t n = w->pull(w->ctx, buf, max);
        if (n < 0) {
            w->ended = true;
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (n > 0) return n;
        /* 0: the source waited and has nothing yet; ask again (thread-per-connection: MHD
         * must not be handed 0). Sources send SSE keep-alives themselves. */
    }
}

static void stream_free(void *cls) {
    stream_wrap *w = cls;
    if (w->done) w->done(w->ctx, !w->ended);
    free(w);
}

static void add_headers(struct MHD_Response *r, char *hdrs) {
    char *save = NULL;
    for (char *line = strtok_r(hdrs, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        *colon = 0;
        const char *v = colon + 1;
        while (*v == ' ') v++;
        MHD_add_response_header(r, line, v);
    }
}

static enum MHD_Result send_response(http_request *rq, http_response *resp) {
    struct MHD_Response *r;
    if (resp->pull) {
        stream_wrap *w = calloc(1, sizeof *w);
        if (!w) {
            if (resp->done) resp->done(resp->stream_ctx, true);
            return MHD_NO;
        }
        *w = (stream_wrap){resp->pull, resp->done, resp->stream_ctx, false, -1};
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(rq->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci) w->fd = ci->connect_fd;
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, w,
                                              stream_free);
        if (!r) {
            stream_free(w);
            return MHD_NO;
        }
    } else {
        r = MHD_create_response_from_buffer(resp->body_len, resp->body ? resp->body : (void *)"",
                                            resp->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (!r) {
            free(resp->body);
            free(resp->extra_headers);
            if (resp->done) resp->done(resp->stream_ctx, true);
            return MHD_NO;
        }
        rq->sent = resp->done; /* on_completed calls it, the answer sent or not */
        rq->sent_ctx = resp->stream_ctx;
    }
    if (resp->content_type) MHD_add_response_header(r, "Content-Type", resp->content_type);
    MHD_add_response_header(r, "X-Request-Id", rq->id);
    if (resp->extra_headers) add_headers(r, resp->extra_headers);
    free(resp->extra_headers);
    enum MHD_Result ok = MHD_queue_response(rq->conn, (unsigned)(resp->status ? resp->status : 500), r);
    MHD_destroy_response(r);
    return ok;
}

void http_resp_set(http_response *resp, int status, const char *content_type, const char *body,
                   size_t len) {
    resp->status = status;
    resp->content_type = content_type;
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
    if (len) {
        resp->body = malloc(len);
        if (resp->body) {
            memcpy(resp->body, body, len);
            resp->body_len = len;
        } else {
            resp->status = 500;
        }
    }
}

void http_resp_header(http_response *resp, const char *name, const char *value) {
    size_t old = resp->extra_headers ? strlen(resp->extra_headers) : 0;
    size_t add = strlen(name) + strlen(value) + 4;
    char *h = realloc(resp->extra_headers, old + add + 1);
    if (!h) return;
    snprintf(h + old, add + 1, "%s: %s\r\n", name, value);
    resp->extra_headers = h;
}

/* ============================================================ the access handler ===== */

static enum MHD_Result too_large(http_request *rq) {
    char body[160];
    int n = snprintf(body, sizeof body,
                     "{\"error\":{\"message\":\"request body exceeds %zu bytes\",\"type\":"
                     "\"invalid_request_error\",\"param\":null,\"code\":\"request_too_large\"}}",
                     rq->srv->cfg.max_body);
    http_response resp = {0};
    http_resp_set(&resp, 413, "application/json", body, (size_t)n);
    http_resp_header(&resp, "Connection", "close");
    return send_response(rq, &resp);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    http_server *s = cls;
    http_request *rq = *con_cls;
    if (!rq) { /* first call: headers are in */
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        rq->srv = s;
        rq->conn = conn;
        rq->method = method;
        rq->start_ms = http_now_ms();
        snprintf(rq->path, sizeof rq->path, "%s", url);
        const char *id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
        if (id && id_ok(id)) snprintf(rq->id, sizeof rq->id, "%s", id);
        else new_id(rq->id);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, rq->peer, sizeof rq->peer);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, rq->peer, sizeof rq->peer);
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body) rq->too_large = true;
        atomic_fetch_add(&s->active, 1);
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        size_t n = *upload_size;
        *upload_size = 0;
        if (rq->too_large || rq->len + n > s->cfg.max_body) {
            rq->too_large = true;
            return MHD_YES;
        }
        if (rq->len + n + 1 > rq->cap) {
            size_t cap = rq->cap ? rq->cap : 4096;
            while (cap < rq->len + n + 1) cap *= 2;
            char *b = realloc(rq->body, cap);
            if (!b) return MHD_NO;
            rq->body = b;
            rq->cap = cap;
        }
        memcpy(rq->body + rq->len, upload_data, n);
        rq->len += n;
        rq->body[rq->len] = 0;
        return MHD_YES;
    }
    if (rq->too_large) return too_large(rq);
    http_response resp = {0};
    s->handler(s->ud, rq, &resp);
    return send_response(rq, &resp);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    (void)toe;
    http_server *s = cls;
    http_request *rq = *con_cls;
    if (!rq) return;
    if (rq->sent) rq->sent(rq->sent_ctx, toe != MHD_REQUEST_TERMINATED_COMPLETED_OK);
    free(rq->body);
    free(rq);
    *con_cls = NULL;
    atomic_fetch_sub(&s->active, 1);
}

/* ============================================================ lifetime ===== */

http_server *http_server_start(const http_config *cfg, http_handler handler, void *ud,
                               sh_err *err) {
    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        sh_errf(err, "out of memory");
        return NULL;
    }
    s->handler = handler;
    s->ud = ud;
    s->cfg = *cfg;
    if (!s->cfg.host) s->cfg.host = "127.0.0.1";
    if (!s->cfg.max_body) s->cfg.max_body = 4u << 20;
    if (!s->cfg.max_connections) s->cfg.max_connections = 512;
    if (!s->cfg.timeout_s) s->cfg.timeout_s = 300;

    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s->cfg.port);
    int gai = getaddrinfo(s->cfg.host, port, &hints, &ai);
    if (gai != 0) {
        sh_errf(err, "--host '%s': not a numeric IPv4 or IPv6 address (%s)", s->cfg.host,
                gai_strerror(gai));
        free(s);
        return NULL;
    }
    /* poll(), not select(): select cannot watch a descriptor numbered 1024 or above, which a
     * busy server reaches. No MHD_USE_ERROR_LOG: a client hanging up is not an error. */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ITC | MHD_USE_POLL;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s,
                            MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_LIMIT, s->cfg.max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.timeout_s,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                            MHD_OPTION_END);
    int e = errno;
    freeaddrinfo(ai);
    if (!s->d) {
        sh_errf(err, "cannot listen on %s:%u: %s", s->cfg.host, (unsigned)s->cfg.port,
                e ? strerror(e) : "libmicrohttpd failed to start");
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->cfg.port;
    return s;
}

uint16_t http_server_port(const http_server *s) { return s->port; }

unsigned http_server_active(const http_server *s) { return atomic_load(&s->active); }

void http_server_quiesce(http_server *s) {
    if (!s || s->quiesced) return;
    s->quiesced = true;
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void http_server_stop(http_server *s) {
    if (!s) return;
    MHD_stop_daemon(s->d);
    free(s);
}

/* ============================================================ accessors ===== */

const char *http_req_method(const http_request *r) { return r->method; }
const char *http_req_path(const http_request *r) { return r->path; }
const char *http_req_id(const http_request *r) { return r->id; }
const char *http_req_peer(const http_request *r) { return r->peer; }
double http_req_start_ms(const http_request *r) { return r->start_ms; }

const char *http_req_header(const http_request *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_req_query(const http_request *r, const char *key) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *http_req_body(const http_request *r, size_t *len) {
    if (len) *len = r->len;
    return r->body ? r->body : "";
}

bool http_req_client_gone(const http_request *r) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd pfd = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}
