/*
 * cluster/upstream_int — what the two transports of cluster/upstream share. Private to
 *   upstream.c     the API, the pool, libcurl calls (https://, host names) and the poll loop
 *   upstream_h1.c  the built-in HTTP/1.1 client for http:// URLs whose host is an IP address
 * Both keep a call's response in the same fields (status, headers, buffered body, progress
 * flags), so everything upstream.h reads from a call is transport-blind.
 */
#ifndef SHOAL_CLUSTER_UPSTREAM_INT_H
#define SHOAL_CLUSTER_UPSTREAM_INT_H

#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cluster/upstream.h"

#define UP_FREE_MAX 64        /* idle curl pairs kept by a pool */
#define UP_CONNS_PER_PAIR 4L  /* idle connections kept by one pair's cache */
#define UP_IDLE_MAX 64        /* idle built-in connections kept by a pool */
#define UP_IDLE_MS 118000.0   /* ... for at most this long (libcurl's own default) */
#define UP_ORIGIN_MAX 256
#define UP_SOCKS_MAX 8        /* sockets one curl call may ask us to watch (happy eyeballs + resolver) */

/* An idle kept-alive connection of the built-in client. */
typedef struct up_idle {
    char origin[UP_ORIGIN_MAX];
    int fd;
    double since;             /* when it went idle (monotonic ms) */
} up_idle;

struct upstream_pool {
    CURLSH *share;
    pthread_mutex_t locks[CURL_LOCK_DATA_LAST];   /* one per kind of shared data */
    pthread_mutex_t mu;                           /* guards free[] and idle[] */
    upstream_call *free[UP_FREE_MAX];             /* idle curl pairs, most recently used last */
    int nfree;
    up_idle idle[UP_IDLE_MAX];                    /* idle built-in connections, oldest first */
    int nidle;
    _Atomic size_t max_body;
    _Atomic uint64_t serve_seq;                   /* upstream_poll's fairness clock */
};

typedef struct up_sock_watch {
    curl_socket_t fd;
    int what;                 /* CURL_POLL_IN / OUT / INOUT */
} up_sock_watch;

/* Where a built-in call stands. */
typedef enum up_phase {
    UP_H1_START,              /* nothing done yet: the first poll connects (or reuses) and sends */
    UP_H1_CONNECTING,         /* non-blocking connect in progress */
    UP_H1_SENDING,            /* request bytes going out */
    UP_H1_HEAD,               /* reading the status line and headers */
    UP_H1_BODY,               /* reading the body */
    UP_H1_END                 /* complete or failed: no more I/O */
} up_phase;

typedef enum up_framing { UP_LEN, UP_CHUNKED, UP_TO_EOF, UP_NONE } up_framing;

/* The built-in client's part of a call. */
typedef struct up_h1 {
    int fd;                   /* -1: none */
    up_phase phase;
    bool reused;              /* the connection came from the pool's idle list */
    bool retried;             /* already resent once on a fresh connection */
    bool got_any;             /* a response byte has arrived (no resend after that) */
    bool reusable;            /* the connection may go back to the pool once complete */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char host[64];            /* for messages: the address as the URL has it */
    int port;
    char *req;                /* the whole request: head and body */
    size_t req_len, req_off;
    double connect_deadline;  /* monotonic ms */
    double deadline;          /* whole transfer; 0: none */
    char *raw;                /* response head bytes until the blank line */
    size_t raw_len, raw_cap;
    up_framing framing;
    uint64_t left;            /* UP_LEN: body bytes to come; chunked: bytes left in this chunk */
    int chunk_state;          /* chunked decoder state (upstream_h1.c) */
    char line[1024];          /* a chunk-size or trailer line being read */
    size_t line_len;
    uint64_t received;        /* body bytes received, for messages */
} up_h1;

struct upstream_call {
    upstream_pool *pool;
    bool native;              /* the built-in client (h1), not libcurl */
    up_h1 h1;

    /* libcurl */
    CURLM *multi;
    CURL *easy;
    bool configured;          /* easy holds the options every request shares (set_options) */
    struct curl_slist *hdrs;  /* request headers (copies) */
    char origin[UP_ORIGIN_MAX]; /* "http://host:port" of the last request: the pool's match key */
    up_sock_watch socks[UP_SOCKS_MAX]; /* what libcurl wants watched */
    int nsocks;
    bool socks_overflow;      /* more sockets than fit: fall back to short sleeps */
    double timer_at;          /* monotonic ms of libcurl's next timeout, < 0: none */

    /* progress */
    double start_ms, header_ms, body_ms;
    bool connected;           /* a connection was made or reused */
    bool headers_done;        /* final (>= 200) response's headers are complete */
    bool body_started;
    bool complete;            /* transfer finished without error */
    bool failed;
    int status;
    long num_connects;
    upstream_state reported;  /* what upstream_poll last returned this call with */
    uint64_t served;          /* serve_seq when upstream_poll last returned it */

    /* response headers: "name\0value\0" pairs */
    char *hdr;
    size_t hdr_len, hdr_cap;
    int nhdr;

    /* body bytes received and not yet read: buf[off, len) */
    char *buf;
    size_t off, len, cap, max_body;

    char error[CURL_ERROR_SIZE + 64]; /* what upstream_error says */
    char curl_err[CURL_ERROR_SIZE];   /* CURLOPT_ERRORBUFFER */
};

/* ============================================================ upstream.c ===== */

double up_now_ms(void);                              /* monotonic */
void up_set_error(upstream_call *c, const char *msg); /* the first error wins */
/* One response header (trimmed name and value): stored for upstream_header. false, with the
 * error set, when the limits (UPSTREAM_MAX_HEADERS lines, UPSTREAM_MAX_HEADER_BYTES) are hit
 * or memory runs out. */
bool up_header_add(upstream_call *c, const char *name, size_t nl, const char *value, size_t vl);
/* Body bytes into the call's buffer, bounded by its max_body. false, with the error set, when
 * the bound is hit or memory runs out. */
bool up_body_add(upstream_call *c, const char *data, size_t k);

/* ============================================================ upstream_h1.c ===== */

/* A built-in call for r when the URL is http:// with an IP-address host and a plain path (the
 * caller has checked the method, the body and the headers): *out is the call, or NULL with err
 * when memory runs out. Returns false, and does nothing, when the URL is for libcurl. */
bool up_h1_start(upstream_pool *p, const upstream_req *r, bool post, upstream_call **out, sh_err *err);
/* Every non-blocking step the call can take now (connect, send, read, timeouts); after it, the
 * events to watch (POLLIN / POLLOUT, 0 for none) and the next deadline (monotonic ms, 0:
 * none). */
void up_h1_step(upstream_call *c, double now);
short up_h1_events(const upstream_call *c);
double up_h1_deadline(const upstream_call *c);
/* Closes or keeps (complete, reusable: back to the pool's idle list) the connection, and frees
 * the call. */
void up_h1_free(upstream_call *c);
/* Closes every idle connection (upstream_pool_free). Under no lock: the pool is going away. */
void up_h1_pool_close(upstream_pool *p);

#endif
