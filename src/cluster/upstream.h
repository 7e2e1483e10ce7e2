/*
 * cluster/upstream — the HTTP client the router uses to call remote nodes. Two transports under
 * one API, driven by the same ppoll: a built-in HTTP/1.1 client for http:// URLs whose host is
 * an IP address (the router's hot path: a fraction of libcurl's CPU time per request), and
 * libcurl's multi interface (curl_multi_socket_action) for everything else — https://, host
 * names, which need a resolver. Both behave as described below.
 *
 * A call is one request in flight. Nothing happens until upstream_poll drives it; the response
 * arrives in steps (headers, then body bytes that the caller takes out with upstream_read while
 * the transfer continues, which is how SSE streams are passed through chunk by chunk).
 *
 * Ownership: upstream_start copies everything it needs from the upstream_req (method, URL,
 * body, headers), so the caller's strings may be freed as soon as upstream_start returns.
 * Strings returned by the accessors (upstream_header, upstream_error) belong to the call and
 * stay valid until upstream_free.
 *
 * Every byte from a socket is hostile: response headers are bounded (UPSTREAM_MAX_HEADER_BYTES
 * in total, UPSTREAM_MAX_HEADERS lines) and so are the body bytes buffered and not yet read
 * (64 MiB by default, see upstream_pool_set_max_body); beyond either the call FAILS with a
 * message that says which limit. A stream that is read out as it arrives may be any length
 * (libcurl hands over up to ~1.6 MB per poll step, so the limit must stay well above that).
 *
 * Transport: HTTP/1.1 only, no proxies (environment proxies never apply), no compression, no
 * redirects followed, only http:// and https:// URLs, no "Expect: 100-continue" round trip,
 * no signals (CURLOPT_NOSIGNAL, MSG_NOSIGNAL), TCP_NODELAY. A request that fails on a reused
 * keep-alive connection before any byte of the answer is sent again once on a fresh one.
 */
#ifndef SHOAL_CLUSTER_UPSTREAM_H
#define SHOAL_CLUSTER_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

#define UPSTREAM_MAX_HEADER_BYTES (64 * 1024) /* response header names + values, in total */
#define UPSTREAM_MAX_HEADERS 128              /* response header lines */
#define UPSTREAM_DEFAULT_MAX_BODY ((size_t)64 << 20)
#define UPSTREAM_POLL_MAX 8                   /* calls one upstream_poll can drive */

/* A pool keeps keep-alive connections to nodes so that a routed request does not pay a TCP
 * handshake: connections are reused across requests and threads. Thread-safe.
 *
 * How: a finished call's handles (a curl multi + easy pair, each with its own connection
 * cache) go back to a free list in the pool; the next call to the same origin (scheme, host,
 * port) takes the pair that last talked to that origin, and with it the warm connection. The
 * DNS cache is shared by all handles (CURLSH, CURL_LOCK_DATA_DNS, one mutex per lock data).
 * The connection cache itself is deliberately not put in the CURLSH: sharing it between
 * threads (CURL_LOCK_DATA_CONNECT) is a known, unfixed thread-safety bug in libcurl (the
 * "shared connection cache is not thread-safe" entry of its KNOWN_BUGS), while a pair used by
 * one thread at a time is the supported model. Up to 64 idle pairs are kept, each holding at
 * most 4 idle connections; libcurl drops idle connections older than 118 s and checks a
 * cached connection is alive before reusing it. The built-in client keeps up to 64 idle
 * connections of its own per pool (the most recently used one to the origin is taken; none
 * older than 118 s). */
typedef struct upstream_pool upstream_pool;
upstream_pool *upstream_pool_init(sh_err *err);   /* also calls curl_global_init once (thread-safe via pthread_once) */
void upstream_pool_free(upstream_pool *p);         /* NULL is fine; all calls must be freed first */

/* Body bytes a call may hold buffered and unread before it FAILS (default 64 MiB). Applies to
 * calls started afterwards. */
void upstream_pool_set_max_body(upstream_pool *p, size_t max_bytes);

typedef struct upstream_req {
    const char *method;          /* "GET" or "POST" */
    const char *url;             /* full URL, e.g. "http://127.0.0.1:8081/v1/completions" */
    const char *body; size_t body_len;   /* POST body; copied by upstream_start (GET: none) */
    const char *const *headers;  /* "Name: value" strings, NULL-terminated, or NULL; copied */
    double connect_timeout_ms;   /* 0: 1000 */
    double timeout_ms;           /* whole transfer; 0: none (streams) */
} upstream_req;

typedef struct upstream_call upstream_call;   /* one request in flight; used by one thread at a time */

/* What upstream_get_state says. BODY is the body phase: body bytes have arrived and the
 * transfer goes on, or it has finished with bytes still buffered (upstream_buffered says
 * whether any are waiting right now). DONE comes once the transfer is complete and every byte
 * has been read out (a response without body goes straight from CONNECTING/HEADERS to DONE).
 * FAILED is reported as soon as the transport fails; bytes that were buffered before the
 * failure can still be read. An HTTP error status (404, 503...) is not a failure. */
typedef enum upstream_state {
    UPSTREAM_CONNECTING = 0,   /* no response header yet */
    UPSTREAM_HEADERS,          /* status + headers known, no body bytes buffered yet */
    UPSTREAM_BODY,             /* body bytes are buffered (take them with upstream_read) */
    UPSTREAM_DONE,             /* transfer complete, all bytes read out */
    UPSTREAM_FAILED            /* transport error (refused, reset, timeout...): see upstream_error */
} upstream_state;

/* Starts a request (non-blocking: nothing happens until upstream_poll). NULL + err on bad input
 * (a method other than GET/POST, a GET with a body, a URL that is not http(s)://, a header
 * without ':' or with CR/LF in it). */
upstream_call *upstream_start(upstream_pool *p, const upstream_req *r, sh_err *err);

/* Drives the calls (up to UPSTREAM_POLL_MAX; NULL entries are skipped; all from the same
 * pool, used by this thread) for at most timeout_ms (0: just do what is ready, don't wait),
 * returning as soon as a call is ready, with its index, or -1 on timeout.
 *
 * A call is ready when it has unread body bytes buffered (level-triggered: a call that still
 * has bytes buffered is returned again at once, without waiting) or when its state changed
 * since upstream_poll last returned it (edge-triggered: a DONE or FAILED call is returned once
 * for that change, then never again — also when the caller's own upstream_read of the last
 * bytes is what made it DONE, so a loop that switches on the state after each poll sees DONE). Among several ready calls the one returned least
 * recently wins, so a busy stream cannot starve the others. Every upstream_poll gives all the
 * calls at least one non-blocking look, also when one is ready at once, so bytes a caller
 * leaves buffered in one call do not stall the others. Returns -1 at once when no call can
 * progress any more (all DONE/FAILED and already reported). */
int upstream_poll(upstream_call *const *calls, int n, double timeout_ms);

upstream_state upstream_get_state(const upstream_call *c);
int upstream_status(const upstream_call *c);                   /* HTTP status; 0 before headers */
const char *upstream_header(const upstream_call *c, const char *name); /* case-insensitive, NULL if absent; last value wins */
const char *upstream_error(const upstream_call *c);            /* transport error text, "" if none */
bool upstream_connect_failed(const upstream_call *c);         /* FAILED before a connection was made (refused, DNS, connect timeout) */
double upstream_first_byte_ms(const upstream_call *c);         /* ms from start to the first body byte (or headers), 0 if none yet */

/* New TCP connections this call opened: 0 when it reused a kept-alive one (or has not
 * connected yet), 1 normally otherwise. For metrics and tests. */
long upstream_num_connects(const upstream_call *c);

/* Moves up to max buffered body bytes into buf; returns the count (0: nothing buffered now). */
size_t upstream_read(upstream_call *c, char *buf, size_t max);
size_t upstream_buffered(const upstream_call *c);

/* Convenience: runs the call to completion (or failure) and returns the whole body (malloc'd,
 * NUL-terminated, caller frees) — for health checks and small JSON calls. Returns the HTTP
 * status, or -1 on transport failure (err says what; *body is NULL, *len 0). The body is
 * bounded by the pool's max body. Blocks at most r->timeout_ms (0: until the node answers).
 * len may be NULL. */
int upstream_fetch(upstream_pool *p, const upstream_req *r, char **body, size_t *len, sh_err *err);

/* Cancels a call still running (its connection is closed, so the node sees the client go away
 * and cancels its generation) and frees it. A call that finished leaves its connection kept
 * alive for the next call. NULL is fine. */
void upstream_free(upstream_call *c);

#endif
