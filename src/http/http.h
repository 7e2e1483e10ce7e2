/*
 * http — the HTTP/1.1 front door (libmicrohttpd underneath), kept thin: it accepts
 * connections (keep-alive), reads request bodies up to a limit (413 beyond it), gives every
 * request an id, hands complete requests to one handler, and sends what the handler answers:
 * a whole body, or a stream pulled chunk by chunk (Server-Sent Events).
 *
 * Threading: one thread per connection (MHD_USE_THREAD_PER_CONNECTION). The handler runs on the
 * connection's thread and may block (e.g. until a non-streamed completion is done); a stream's
 * pull function also runs there and may block waiting for data. A client that disconnects
 * makes the next write fail; the stream's done function is then called with aborted = true.
 *
 * Request ids: an incoming X-Request-Id of 1..64 characters [A-Za-z0-9._:-] is kept, anything
 * else is replaced by a fresh random id; every response carries X-Request-Id.
 */
#ifndef SHOAL_HTTP_HTTP_H
#define SHOAL_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/err.h"

typedef struct http_server http_server;
typedef struct http_request http_request;

/* A stream's source. pull() fills buf (up to max bytes) and returns the count, 0 to be called
 * again (it should then have waited a little), or -1 at the end of the stream. done() is
 * called once when the response is over: aborted is true when the client went away first.
 * A whole answer (pull NULL) may set done too: it is called once the answer has been sent
 * (aborted: the connection failed first), with stream_ctx — for work that should not delay
 * the answer, such as a log record. */
typedef ssize_t (*http_pull_fn)(void *ctx, char *buf, size_t max);
typedef void (*http_done_fn)(void *ctx, bool aborted);

typedef struct http_response {
    int status;
    const char *content_type;   /* static or owned by the handler until the call returns */
    char *body;                 /* malloc'd; http takes ownership (NULL for empty) */
    size_t body_len;
    char *extra_headers;        /* malloc'd "Name: value\r\n..." or NULL; http takes ownership */
    http_pull_fn pull;          /* non-NULL: a streamed body; body must be NULL */
    http_done_fn done;          /* a stream's end, or a whole answer's (see above); or NULL */
    void *stream_ctx;           /* pull's and done's ctx */
} http_response;

/* Fills *resp; called once per request with the complete body. */
typedef void (*http_handler)(void *ud, http_request *req, http_response *resp);

typedef struct http_config {
    const char *host;           /* "127.0.0.1" by default; "::1", "0.0.0.0" ... */
    uint16_t port;              /* 0: any free port (see http_server_port) */
    size_t max_body;            /* bytes; default 4 MiB */
    unsigned max_connections;   /* default 512 */
    unsigned timeout_s;         /* idle connection timeout; default 300 */
} http_config;

/* Starts listening and serving. Returns NULL with err on failure (port taken, bad host...). */
http_server *http_server_start(const http_config *cfg, http_handler handler, void *ud,
                               sh_err *err);

uint16_t http_server_port(const http_server *s);

/* Stops accepting new connections; requests in flight continue. */
void http_server_quiesce(http_server *s);

/* Requests being handled or streamed right now. */
unsigned http_server_active(const http_server *s);

/* Stops everything (in-flight connections are closed) and frees the server. NULL is fine. */
void http_server_stop(http_server *s);

/* ---- request accessors (valid during the handler call) -------------------------------- */
const char *http_req_method(const http_request *r);
const char *http_req_path(const http_request *r);   /* without the query string */
const char *http_req_header(const http_request *r, const char *name); /* NULL if absent */
const char *http_req_query(const http_request *r, const char *key);   /* NULL if absent */
const char *http_req_body(const http_request *r, size_t *len);       /* NUL-terminated too */
const char *http_req_id(const http_request *r);
double http_req_start_ms(const http_request *r); /* monotonic ms when the request arrived */
const char *http_req_peer(const http_request *r); /* client address, e.g. "127.0.0.1" */

/* True when the client has closed its side of the connection (for handlers that block while
 * a non-streamed answer is computed: they poll this to cancel work nobody will read). */
bool http_req_client_gone(const http_request *r);

/* Monotonic clock in milliseconds (CLOCK_MONOTONIC). */
double http_now_ms(void);

/* Convenience: fills resp with a copy of body. */
void http_resp_set(http_response *resp, int status, const char *content_type, const char *body,
                   size_t len);

/* Appends "name: value\r\n" to resp->extra_headers. */
void http_resp_header(http_response *resp, const char *name, const char *value);

#endif
