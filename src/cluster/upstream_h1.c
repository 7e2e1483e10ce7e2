/*
 * cluster/upstream_h1 — the built-in HTTP/1.1 client of cluster/upstream (upstream_int.h), for
 * http:// URLs whose host is an IPv4 or IPv6 address. Everything else (https://, host names
 * that need a resolver, user info in the URL, paths with dot segments) stays with libcurl.
 *
 * A call is one non-blocking socket, driven by upstream.c's poll loop: connect (or take a
 * kept-alive connection from the pool's idle list), send the request in one piece, read the
 * status line and headers, then the body (Content-Length, chunked, or up to the close).
 * What a call does matches the libcurl path: the request carries Host and Accept: * / * (and
 * libcurl's default Content-Type for a POST whose caller sets none); a header the caller gives
 * with an empty value is not sent; a request that fails on a reused connection before any
 * response byte is sent again, once, on a fresh one (the node had closed the idle connection);
 * the limits on response headers and buffered body bytes, the timeouts and the "connect
 * failed" flag mean what upstream.h says. A finished call's connection goes back to the idle
 * list when the response allows it (HTTP/1.1 without "Connection: close", a framed body);
 * an unfinished one is closed, so the node sees the client go.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cluster/upstream_int.h"

#define H1_READ_CHUNK     16384 /* bytes per recv */
#define H1_READS_PER_STEP 16    /* recvs per step: one busy call does not hold the poll loop */
#define H1_HEAD_MAX                                                                                \
    (UPSTREAM_MAX_HEADER_BYTES + 16384) /* raw head bytes (names, values, syntax)                  \
                                         */

enum { CS_SIZE, CS_DATA, CS_DATA_END, CS_TRAILER }; /* chunked decoder states */

/* ============================================================ the request ===== */

/* Is the caller's header h (a "Name: value" line) named name? */
static bool header_is(const char *h, const char *name) {
    size_t n = strlen(name);
    return !strncasecmp(h, name, n) && h[n] == ':';
}

/* A caller's header whose value is empty: libcurl's way to say "do not send this one". */
static bool header_empty(const char *h) {
    const char *v = strchr(h, ':') + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    return !*v;
}

/* Splits an http:// URL with an IP-address host into its address, port, the Host header's
 * value and the request target. false when the URL is for libcurl. */
static bool parse_url(const char *url, up_h1 *h, char *hostport, size_t hpn, const char **path,
                      size_t *path_len) {
    if (strncasecmp(url, "http://", 7)) return false;
    const char *p = url + 7, *auth_end = p + strcspn(p, "/?#");
    if (memchr(p, '@', (size_t)(auth_end - p))) return false; /* user info */
    const char *host = p, *host_end;
    bool v6 = *p == '[';
    if (v6) {
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (!host_end) return false;
        p = host_end + 1;
    } else {
        host_end = host + strcspn(host, ":/?#");
        p = host_end;
    }
    size_t hl = (size_t)(host_end - host);
    if (!hl || hl >= sizeof h->host) return false;
    memcpy(h->host, host, hl);
    h->host[hl] = 0;
    int port = 80;
    if (*p == ':') {
        p++;
        if (p == auth_end) return false;
        port = 0;
        for (; p < auth_end; p++) {
            if (*p < '0' || *p > '9') return false;
            port = port * 10 + (*p - '0');
            if (port > 65535) return false;
        }
        if (port == 0) return false;
    }
    if (p != auth_end) return false;
    memset(&h->addr, 0, sizeof h->addr);
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&h->addr;
        if (inet_pton(AF_INET6, h->host, &a->sin6_addr) != 1) return false; /* zone ids too */
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        h->addr_len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&h->addr;
        if (inet_pton(AF_INET, h->host, &a->sin_addr) != 1) return false; /* names: libcurl */
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        h->addr_len = sizeof *a;
    }
    h->port = port;
    if (port == 80)
        snprintf(hostport, hpn, v6 ? "[%s]" : "%s", h->host);
    else
        snprintf(hostport, hpn, v6 ? "[%s]:%d" : "%s:%d", h->host, port);
    /* the target: the path and query, without the fragment; "/" when empty */
    const char *t = auth_end;
    size_t tl = strcspn(t, "#");
    /* dot segments are libcurl's to normalise */
    for (size_t i = 0; i < tl; i++)
        if (t[i] == '/' && i + 1 < tl && t[i + 1] == '.') {
            size_t k = i + 1;
            while (k < tl && t[k] == '.')
                k++;
            if (k - i - 1 <= 2 && (k == tl || t[k] == '/' || t[k] == '?')) return false;
        }
    *path = t;
    *path_len = tl;
    return true;
}

/* The request's bytes: request line, headers, blank line, body. NULL when memory runs out. */
static char *build_request(const upstream_req *r, bool post, const char *hostport, const char *path,
                           size_t path_len, size_t *len) {
    bool own_host = true, own_accept = true, own_len = true, own_type = true;
    size_t n = 64 + path_len + strlen(hostport) + r->body_len + 96;
    for (const char *const *h = r->headers; h && *h; h++) {
        n += strlen(*h) + 2;
        if (header_is(*h, "Host"))
            own_host = false;
        else if (header_is(*h, "Accept"))
            own_accept = false;
        else if (header_is(*h, "Content-Length"))
            own_len = false;
        else if (header_is(*h, "Content-Type"))
            own_type = false;
    }
    char *b = malloc(n);
    if (!b) return NULL;
    size_t k = (size_t)snprintf(b, n, "%s %s%.*s HTTP/1.1\r\n", post ? "POST" : "GET",
                                path_len && path[0] == '/' ? "" : "/", (int)path_len, path);
    if (own_host) k += (size_t)snprintf(b + k, n - k, "Host: %s\r\n", hostport);
    if (own_accept) k += (size_t)snprintf(b + k, n - k, "Accept: */*\r\n");
    for (const char *const *h = r->headers; h && *h; h++) {
        if (header_empty(*h)) continue;
        size_t hl = strlen(*h);
        memcpy(b + k, *h, hl);
        memcpy(b + k + hl, "\r\n", 2);
        k += hl + 2;
    }
    if (post && own_len)
        k += (size_t)snprintf(b + k, n - k, "Content-Length: %zu\r\n", r->body_len);
    if (post && own_type)
        k += (size_t)snprintf(b + k, n - k, "Content-Type: application/x-www-form-urlencoded\r\n");
    memcpy(b + k, "\r\n", 2);
    k += 2;
    if (r->body_len) memcpy(b + k, r->body, r->body_len);
    *len = k + r->body_len;
    return b;
}

/* The pool's idle connection to key most recently used, or -1; connections idle too long are
 * closed on the way. */
static int idle_take(upstream_pool *p, const char *key, double now) {
    int fd = -1, stale[UP_IDLE_MAX], ns = 0;
    pthread_mutex_lock(&p->mu);
    int k = 0;
    for (int i = 0; i < p->nidle; i++) { /* oldest first: drop the expired ones */
        if (now - p->idle[i].since > UP_IDLE_MS)
            stale[ns++] = p->idle[i].fd;
        else
            p->idle[k++] = p->idle[i];
    }
    p->nidle = k;
    for (int i = p->nidle - 1; i >= 0; i--)
        if (!strcmp(p->idle[i].origin, key)) {
            fd = p->idle[i].fd;
            memmove(&p->idle[i], &p->idle[i + 1], (size_t)(p->nidle - i - 1) * sizeof *p->idle);
            p->nidle--;
            break;
        }
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < ns; i++)
        close(stale[i]);
    return fd;
}

/* upstream_int.h */
bool up_h1_start(upstream_pool *p, const upstream_req *r, bool post, upstream_call **out,
                 sh_err *err) {
    up_h1 h = {.fd = -1};
    char hostport[80];
    const char *path;
    size_t path_len;
    if (!parse_url(r->url, &h, hostport, sizeof hostport, &path, &path_len)) return false;
    *out = NULL;
    upstream_call *c = calloc(1, sizeof *c);
    char *req = c ? build_request(r, post, hostport, path, path_len, &h.req_len) : NULL;
    if (!req) {
        free(c);
        sh_errf(err, "out of memory");
        return true;
    }
    h.req = req;
    c->pool = p;
    c->native = true;
    c->timer_at = -1;
    c->max_body = atomic_load(&p->max_body);
    c->start_ms = up_now_ms();
    snprintf(c->origin, sizeof c->origin, "h1:%s", hostport);
    h.connect_deadline = c->start_ms + (r->connect_timeout_ms > 0 ? r->connect_timeout_ms : 1000);
    h.deadline = r->timeout_ms > 0 ? c->start_ms + (r->timeout_ms < 1 ? 1 : r->timeout_ms) : 0;
    h.fd = idle_take(p, c->origin, c->start_ms);
    h.reused = h.fd >= 0;
    c->connected = h.reused;
    c->h1 = h;
    *out = c;
    return true;
}

/* ============================================================ failing and ending ===== */

/* The call fails with msg (unless an error is already said) and its connection is closed. */
static void h1_fail(upstream_call *c, const char *msg) {
    up_set_error(c, msg);
    c->failed = true;
    c->h1.phase = UP_H1_END;
    if (c->h1.fd >= 0) close(c->h1.fd);
    c->h1.fd = -1;
}

static void h1_failf(upstream_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* h1_fail with a printf message. */
static void h1_failf(upstream_call *c, const char *fmt, ...) {
    char msg[CURL_ERROR_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    h1_fail(c, msg);
}

/* The response is complete. */
static void h1_complete(upstream_call *c) {
    c->complete = true;
    c->h1.phase = UP_H1_END;
}

/* A reused connection that the node had closed: the request goes again, once, on a fresh
 * connection. true when that is what happens. */
static bool h1_retry(upstream_call *c) {
    up_h1 *h = &c->h1;
    if (!h->reused || h->retried || h->got_any) return false;
    close(h->fd);
    h->fd = -1;
    h->reused = false;
    h->retried = true;
    h->req_off = 0;
    h->phase = UP_H1_START;
    c->connected = false;
    return true;
}

/* ============================================================ the response ===== */

static void body_feed(upstream_call *c, const char *d, size_t n);

/* Parses the head raw[0..end) (status line and headers). false when the call failed. */
static bool parse_head(upstream_call *c, size_t end, bool *interim) {
    up_h1 *h = &c->h1;
    const char *s = h->raw, *e = h->raw + end;
    *interim = false;
    if (end < 12 || strncmp(s, "HTTP/1.", 7) || s[8] != ' ') {
        h1_fail(c, "unsupported response: not HTTP/1.x");
        return false;
    }
    bool http10 = s[7] == '0';
    int code = 0;
    for (int i = 9; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9') {
            h1_fail(c, "unsupported response: bad status line");
            return false;
        }
        code = code * 10 + (s[i] - '0');
    }
    if (code < 200) { /* 100 Continue and friends: the real answer follows */
        *interim = true;
        return true;
    }
    c->hdr_len = 0;
    c->nhdr = 0;
    bool chunked = false, have_len = false, close_conn = false, keep = false;
    uint64_t clen = 0;
    const char *line = memchr(s, '\n', (size_t)(e - s));
    for (line = line ? line + 1 : e; line < e;) {
        const char *le = memchr(line, '\n', (size_t)(e - line));
        if (!le) le = e;
        const char *ne = line;
        while (ne < le && *ne != ':')
            ne++;
        if (ne < le && line[0] != ' ' && line[0] != '\t' &&
            ne > line) { /* folded or malformed: ignored */
            const char *ns = line, *vs = ne + 1, *ve = le;
            while (ne > ns && (ne[-1] == ' ' || ne[-1] == '\t'))
                ne--;
            while (vs < ve && (*vs == ' ' || *vs == '\t'))
                vs++;
            while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r'))
                ve--;
            size_t nl = (size_t)(ne - ns), vl = (size_t)(ve - vs);
            if (!up_header_add(c, ns, nl, vs, vl)) {
                h1_fail(c, "out of memory");
                return false;
            }
            if (nl == 14 && !strncasecmp(ns, "Content-Length", 14)) {
                uint64_t v = 0;
                bool ok = vl > 0 && vl <= 19;
                for (size_t i = 0; ok && i < vl; i++) {
                    if (vs[i] < '0' || vs[i] > '9')
                        ok = false;
                    else
                        v = v * 10 + (uint64_t)(vs[i] - '0');
                }
                if (!ok || (have_len && v != clen)) {
                    h1_fail(c, "unsupported response: bad Content-Length");
                    return false;
                }
                clen = v;
                have_len = true;
            } else if (nl == 17 && !strncasecmp(ns, "Transfer-Encoding", 17)) {
                chunked = vl >= 7 && !strncasecmp(ve - 7, "chunked", 7);
            } else if (nl == 10 && !strncasecmp(ns, "Connection", 10)) {
                for (const char *q = vs; q + 5 <= ve; q++) {
                    if (!strncasecmp(q, "close", 5)) close_conn = true;
                    if (q + 10 <= ve && !strncasecmp(q, "keep-alive", 10)) keep = true;
                }
            }
        }
        line = le + 1;
    }
    c->status = code;
    c->headers_done = true;
    c->header_ms = up_now_ms();
    free(h->req); /* answered: no resend any more */
    h->req = NULL;
    h->framing = code == 204 || code == 304 ? UP_NONE
                 : chunked                  ? UP_CHUNKED
                 : have_len                 ? UP_LEN
                                            : UP_TO_EOF;
    h->left = clen;
    h->chunk_state = CS_SIZE;
    /* kept alive: HTTP/1.1 unless "close", HTTP/1.0 only with "keep-alive"; a body that ends
     * with the close, or a request the node answered before it had all of it, is not */
    h->reusable = (http10 ? keep && !close_conn : !close_conn) && h->framing != UP_TO_EOF &&
                  h->req_off == h->req_len;
    h->phase = UP_H1_BODY;
    if (h->framing == UP_NONE || (h->framing == UP_LEN && clen == 0)) h1_complete(c);
    return true;
}

/* Response head bytes: kept until the blank line, then parsed; what follows is body (or, after
 * an interim 1xx answer, the next head). */
static void head_feed(upstream_call *c, const char *d, size_t n) {
    up_h1 *h = &c->h1;
    if (h->raw_len + n > H1_HEAD_MAX) {
        h1_failf(c, "response headers exceed the limit (%d lines, %d bytes)", UPSTREAM_MAX_HEADERS,
                 UPSTREAM_MAX_HEADER_BYTES);
        return;
    }
    if (h->raw_len + n + 1 > h->raw_cap) {
        size_t cap = h->raw_cap ? h->raw_cap : 2048;
        while (cap < h->raw_len + n + 1)
            cap *= 2;
        char *nr = realloc(h->raw, cap);
        if (!nr) {
            h1_fail(c, "out of memory for response headers");
            return;
        }
        h->raw = nr;
        h->raw_cap = cap;
    }
    size_t from = h->raw_len > 3 ? h->raw_len - 3 : 0;
    memcpy(h->raw + h->raw_len, d, n);
    h->raw_len += n;
    h->raw[h->raw_len] = 0;
    for (;;) {
        size_t end = 0;
        for (size_t i = from; i + 1 < h->raw_len && !end;
             i++) { /* the blank line: CRLF CRLF or LF LF */
            if (h->raw[i] != '\n') continue;
            if (h->raw[i + 1] == '\n')
                end = i + 2;
            else if (h->raw[i + 1] == '\r' && i + 2 < h->raw_len && h->raw[i + 2] == '\n')
                end = i + 3;
        }
        if (!end) return;
        bool interim;
        if (!parse_head(c, end, &interim)) return;
        size_t rest = h->raw_len - end;
        if (interim) { /* the next head starts after this one */
            memmove(h->raw, h->raw + end, rest);
            h->raw_len = rest;
            h->raw[rest] = 0;
            from = 0;
            continue;
        }
        h->raw_len = 0;
        if (rest && h->phase == UP_H1_BODY)
            body_feed(c, h->raw + end, rest);
        else if (rest)
            h->reusable = false; /* bytes after a complete answer */
        return;
    }
}

/* One line of the chunked framing (a chunk size, a chunk's CRLF, a trailer) into h->line.
 * Returns the bytes of d it took; *done when the line is complete. -1 when too long. */
static long line_feed(up_h1 *h, const char *d, size_t n, bool *done) {
    const char *nl = memchr(d, '\n', n);
    size_t k = nl ? (size_t)(nl - d) + 1 : n;
    if (h->line_len + k >= sizeof h->line) return -1;
    memcpy(h->line + h->line_len, d, k);
    h->line_len += k;
    h->line[h->line_len] = 0;
    *done = nl != NULL;
    return (long)k;
}

/* Body bytes as they come off the socket: framed by Content-Length, chunks, or the close. */
static void body_feed(upstream_call *c, const char *d, size_t n) {
    up_h1 *h = &c->h1;
    while (n && h->phase == UP_H1_BODY) {
        if (h->framing == UP_TO_EOF) {
            if (!up_body_add(c, d, n)) {
                h1_fail(c, "out of memory");
                return;
            }
            h->received += n;
            return;
        }
        if (h->framing == UP_LEN || (h->framing == UP_CHUNKED && h->chunk_state == CS_DATA)) {
            size_t k = n < h->left ? n : (size_t)h->left;
            if (!up_body_add(c, d, k)) {
                h1_fail(c, "out of memory");
                return;
            }
            h->received += k;
            h->left -= k;
            d += k;
            n -= k;
            if (h->left == 0) {
                if (h->framing == UP_LEN)
                    h1_complete(c);
                else
                    h->chunk_state = CS_DATA_END;
            }
            continue;
        }
        bool done = false;
        long k = line_feed(h, d, n, &done);
        if (k < 0) {
            h1_fail(c, "bad chunked encoding: line too long");
            return;
        }
        d += k;
        n -= (size_t)k;
        if (!done) return;
        const char *l = h->line;
        h->line_len = 0;
        if (h->chunk_state == CS_SIZE) {
            uint64_t v = 0;
            int digits = 0;
            for (; *l; l++, digits++) {
                int x = *l >= '0' && *l <= '9'                 ? *l - '0'
                        : (*l | 32) >= 'a' && (*l | 32) <= 'f' ? (*l | 32) - 'a' + 10
                                                               : -1;
                if (x < 0) break;
                if (digits == 15) {
                    h1_fail(c, "bad chunked encoding: chunk too large");
                    return;
                }
                v = v * 16 + (uint64_t)x;
            }
            if (!digits || (*l != ';' && *l != '\r' && *l != '\n' && *l != ' ' && *l != '\t')) {
                h1_fail(c, "bad chunked encoding: chunk size");
                return;
            }
            h->left = v;
            h->chunk_state = v ? CS_DATA : CS_TRAILER;
        } else if (h->chunk_state == CS_DATA_END) {
            if (strcmp(l, "\r\n") && strcmp(l, "\n")) {
                h1_fail(c, "bad chunked encoding: chunk end");
                return;
            }
            h->chunk_state = CS_SIZE;
        } else if (!strcmp(l, "\r\n") || !strcmp(l, "\n")) { /* trailers end */
            h1_complete(c);
        }
    }
    if (n && h->phase == UP_H1_END && c->complete) h->reusable = false; /* bytes after the answer */
}

/* The node closed the connection (recv returned 0). */
static void h1_eof(upstream_call *c) {
    up_h1 *h = &c->h1;
    if (h->phase == UP_H1_HEAD || h->phase == UP_H1_SENDING) {
        if (h1_retry(c)) return;
        h1_fail(c,
                h->raw_len ? "the response ended before its headers" : "Empty reply from server");
    } else if (h->framing == UP_TO_EOF) {
        h->reusable = false;
        close(h->fd);
        h->fd = -1;
        h1_complete(c);
    } else if (h->framing == UP_LEN) {
        h1_failf(c, "transfer closed with %llu bytes remaining to read",
                 (unsigned long long)h->left);
    } else {
        h1_fail(c, "transfer closed with outstanding read data remaining");
    }
}

/* ============================================================ the steps ===== */

/* Opens a non-blocking socket and starts connecting. false when the call failed. */
static bool h1_connect(upstream_call *c, double now) {
    up_h1 *h = &c->h1;
    int fd = socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        h1_failf(c, "Failed to connect to %s port %d: %s", h->host, h->port, strerror(errno));
        return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    h->fd = fd;
    c->num_connects = 1;
    if (connect(fd, (struct sockaddr *)&h->addr, h->addr_len) == 0) {
        c->connected = true;
        h->phase = UP_H1_SENDING;
    } else if (errno == EINPROGRESS) {
        h->phase = UP_H1_CONNECTING;
    } else {
        h1_failf(c, "Failed to connect to %s port %d after %.0f ms: %s", h->host, h->port,
                 now - c->start_ms, strerror(errno));
        return false;
    }
    return true;
}

/* Sends what the socket takes. false when the step is over for now (waiting for room, or the
 * call failed); true when the request is out, or must go again on a fresh connection
 * (phase START), or the node answered early (phase HEAD). */
static bool h1_send(upstream_call *c) {
    up_h1 *h = &c->h1;
    while (h->req_off < h->req_len) {
        ssize_t k =
            send(h->fd, h->req + h->req_off, h->req_len - h->req_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
            h->req_off += (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false; /* the rest when there is room */
        if (h1_retry(c)) return true;
        /* the node may have answered before it closed (a 413, say): read that */
        int e = errno;
        char tmp[H1_READ_CHUNK];
        ssize_t r = recv(h->fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (r <= 0) {
            h1_failf(c, "Send failure: %s", strerror(e));
            return false;
        }
        h->phase = UP_H1_HEAD;
        h->got_any = true;
        head_feed(c, tmp, (size_t)r);
        return true;
    }
    h->phase = UP_H1_HEAD;
    return true;
}

/* Reads what has arrived (at most H1_READS_PER_STEP pieces, so that one busy call does not
 * hold the poll loop) into the head or the body. */
static void h1_read(upstream_call *c) {
    up_h1 *h = &c->h1;
    char tmp[H1_READ_CHUNK];
    for (int i = 0; i < H1_READS_PER_STEP && (h->phase == UP_H1_HEAD || h->phase == UP_H1_BODY);
         i++) {
        ssize_t k = recv(h->fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (k > 0) {
            h->got_any = true;
            if (h->phase == UP_H1_HEAD)
                head_feed(c, tmp, (size_t)k);
            else
                body_feed(c, tmp, (size_t)k);
            if ((size_t)k < sizeof tmp) return; /* drained: the poll says when there is more */
        } else if (k == 0) {
            h1_eof(c);
            return;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        } else if (errno != EINTR) {
            if (!h1_retry(c)) h1_failf(c, "Recv failure: %s", strerror(errno));
            return;
        }
    }
}

/* upstream_int.h */
void up_h1_step(upstream_call *c, double now) {
    up_h1 *h = &c->h1;
    for (;;) { /* repeats only to send again on a fresh connection */
        if (h->phase == UP_H1_END) return;
        if (h->deadline > 0 && now >= h->deadline) {
            if (!c->connected)
                h1_failf(c, "Connection timed out after %.0f milliseconds", now - c->start_ms);
            else
                h1_failf(c, "Operation timed out after %.0f milliseconds with %llu bytes received",
                         now - c->start_ms, (unsigned long long)h->received);
            return;
        }
        if (h->phase == UP_H1_START) {
            if (h->fd >= 0)
                h->phase = UP_H1_SENDING;
            else if (!h1_connect(c, now))
                return;
        }
        if (h->phase == UP_H1_CONNECTING) {
            if (connect(h->fd, (struct sockaddr *)&h->addr, h->addr_len) == 0 || errno == EISCONN) {
                c->connected = true;
                h->phase = UP_H1_SENDING;
            } else if (errno != EINPROGRESS && errno != EALREADY) {
                h1_failf(c, "Failed to connect to %s port %d after %.0f ms: %s", h->host, h->port,
                         now - c->start_ms, strerror(errno));
                return;
            } else {
                if (now >= h->connect_deadline)
                    h1_failf(c, "Connection timed out after %.0f milliseconds", now - c->start_ms);
                return;
            }
        }
        if (h->phase == UP_H1_SENDING && !h1_send(c)) return;
        if (h->phase == UP_H1_HEAD || h->phase == UP_H1_BODY) h1_read(c);
        if (h->phase != UP_H1_START) return;
    }
}

/* upstream_int.h */
short up_h1_events(const upstream_call *c) {
    switch (c->h1.phase) {
    case UP_H1_CONNECTING:
    case UP_H1_SENDING:
        return POLLOUT;
    case UP_H1_HEAD:
    case UP_H1_BODY:
        return POLLIN;
    default:
        return 0;
    }
}

/* upstream_int.h */
double up_h1_deadline(const upstream_call *c) {
    const up_h1 *h = &c->h1;
    if (h->phase == UP_H1_END) return 0;
    double d = h->deadline;
    if ((h->phase == UP_H1_START || h->phase == UP_H1_CONNECTING) &&
        (d == 0 || h->connect_deadline < d))
        d = h->connect_deadline;
    return d;
}

/* ============================================================ the end ===== */

/* upstream_int.h */
void up_h1_free(upstream_call *c) {
    up_h1 *h = &c->h1;
    upstream_pool *p = c->pool;
    if (h->fd >= 0 && c->complete && h->reusable) {
        int old = -1;
        pthread_mutex_lock(&p->mu);
        if (p->nidle == UP_IDLE_MAX) { /* full: the oldest goes */
            old = p->idle[0].fd;
            memmove(&p->idle[0], &p->idle[1], (size_t)(UP_IDLE_MAX - 1) * sizeof *p->idle);
            p->nidle--;
        }
        up_idle *e = &p->idle[p->nidle++];
        snprintf(e->origin, sizeof e->origin, "%s", c->origin);
        e->fd = h->fd;
        e->since = up_now_ms();
        pthread_mutex_unlock(&p->mu);
        if (old >= 0) close(old);
    } else if (h->fd >= 0) {
        close(h->fd); /* unfinished: the node sees the client go */
    }
    free(h->req);
    free(h->raw);
    free(c->hdr);
    free(c->buf);
    free(c);
}

/* upstream_int.h */
void up_h1_pool_close(upstream_pool *p) {
    for (int i = 0; i < p->nidle; i++)
        close(p->idle[i].fd);
    p->nidle = 0;
}
