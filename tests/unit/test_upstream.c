/*
 * Unit tests: cluster/upstream — against a real in-process server (src/http) on a free
 * loopback port: requests carry their method, body and headers; error statuses are answers,
 * not failures; refused connections and timeouts fail with the right flags; streams arrive in
 * pieces; one poll drives several calls; oversized responses fail; keep-alive connections are
 * reused, also from another thread; cancelling a stream closes its connection so the server
 * sees the client go away. No test depends on exact timings: waits are generous and the checks
 * are on order and state.
 *
 * The suite runs twice: against http://127.0.0.1:PORT (the built-in HTTP/1.1 client) and
 * http://localhost:PORT (a host name: libcurl). Then a scripted raw server feeds the built-in
 * client what a node might send and what it should never: chunk extensions and trailers, a
 * 100 Continue before the answer, a body that ends with the close, a head split in one-byte
 * pieces, a truncated body, a non-HTTP answer, and a kept-alive connection the server has
 * closed (the request is sent again on a fresh one).
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "cluster/upstream.h"
#include "http/http.h"

/* ============================================================ the test server ===== */

typedef struct stream_ctx {
    int n;      /* chunks to send, 0: forever */
    int ms;     /* pause before each chunk */
    int sent;
} stream_ctx;

static _Atomic int g_stream_done;    /* streams over */
static _Atomic int g_stream_aborted; /* ... of which the client went away first */

static ssize_t pull(void *ctx, char *buf, size_t max) {
    stream_ctx *st = ctx;
    if (st->n && st->sent >= st->n) return -1;
    usleep((useconds_t)st->ms * 1000);
    return snprintf(buf, max, "data: chunk %d\n\n", st->sent++);
}

static void done(void *ctx, bool aborted) {
    if (aborted) atomic_fetch_add(&g_stream_aborted, 1);
    atomic_fetch_add(&g_stream_done, 1);
    free(ctx);
}

static int qint(http_request *req, const char *key, int def) {
    const char *v = http_req_query(req, key);
    return v ? atoi(v) : def;
}

static void handler(void *ud, http_request *req, http_response *resp) {
    (void)ud;
    const char *path = http_req_path(req);
    if (!strcmp(path, "/stream")) {
        stream_ctx *st = calloc(1, sizeof *st);
        st->n = qint(req, "n", 3);
        st->ms = qint(req, "ms", 10);
        resp->status = 200;
        resp->content_type = "text/event-stream";
        resp->pull = pull;
        resp->done = done;
        resp->stream_ctx = st;
        return;
    }
    if (!strcmp(path, "/status")) {
        http_resp_set(resp, qint(req, "code", 500), "text/plain", "nope", 4);
        return;
    }
    if (!strcmp(path, "/sleep")) { /* answers late, or never if the client leaves first */
        double end = http_now_ms() + qint(req, "ms", 1000);
        while (http_now_ms() < end && !http_req_client_gone(req)) usleep(2000);
        http_resp_set(resp, 200, "text/plain", "late", 4);
        return;
    }
    if (!strcmp(path, "/big")) {
        size_t n = (size_t)qint(req, "bytes", 1000);
        char *b = malloc(n);
        memset(b, 'x', n);
        http_resp_set(resp, 200, "application/octet-stream", b, n);
        free(b);
        return;
    }
    if (!strcmp(path, "/headers")) {
        http_resp_set(resp, 200, "text/plain", "h", 1);
        for (int i = 0; i < qint(req, "n", 10); i++) {
            char name[32];
            snprintf(name, sizeof name, "X-H%d", i);
            http_resp_header(resp, name, "v");
        }
        return;
    }
    size_t len;
    const char *body = http_req_body(req, &len);
    const char *xt = http_req_header(req, "X-Test");
    const char *ex = http_req_header(req, "Expect");
    char out[512];
    int k = snprintf(out, sizeof out, "%s %s len=%zu body=%.64s xtest=%s expect=%s",
                     http_req_method(req), path, len, body, xt ? xt : "-", ex ? ex : "-");
    http_resp_set(resp, 200, "text/plain", out, (size_t)k);
    http_resp_header(resp, "X-Extra", "yes");
    http_resp_header(resp, "X-Dup", "first");
    http_resp_header(resp, "x-dup", "last");
}

static http_server *g_srv;
static upstream_pool *g_pool;
static char g_base[64];
static const char *g_host; /* "127.0.0.1" (built-in client) or "localhost" (libcurl) */

/* The server and a pool; URLs name the server by g_host. */
static int setup(void **state) {
    (void)state;
    http_config cfg = {.host = "127.0.0.1", .port = 0};
    sh_err err;
    g_srv = http_server_start(&cfg, handler, NULL, &err);
    if (!g_srv) fail_msg("%s", err.msg);
    snprintf(g_base, sizeof g_base, "http://%s:%u", g_host, http_server_port(g_srv));
    g_pool = upstream_pool_init(&err);
    if (!g_pool) fail_msg("%s", err.msg);
    return 0;
}

/* The suite with the built-in client (an IP address in the URLs). */
static int setup_h1(void **state) {
    g_host = "127.0.0.1";
    return setup(state);
}

/* The suite with libcurl (a host name in the URLs). */
static int setup_curl(void **state) {
    g_host = "localhost";
    return setup(state);
}

static int teardown(void **state) {
    (void)state;
    upstream_pool_free(g_pool);
    http_server_stop(g_srv);
    return 0;
}

/* ============================================================ helpers ===== */

static const char *url(const char *path) {
    static char u[256];
    snprintf(u, sizeof u, "%s%s", g_base, path);
    return u;
}

/* Runs c to DONE or FAILED (30 s at most), collecting the body into out. */
static upstream_state run(upstream_call *c, char *out, size_t cap) {
    size_t len = 0;
    double end = http_now_ms() + 30000;
    for (;;) {
        upstream_state st = upstream_get_state(c);
        if (st == UPSTREAM_DONE || st == UPSTREAM_FAILED) break;
        if (http_now_ms() > end) fail_msg("call did not finish in 30 s");
        upstream_poll(&c, 1, 1000);
        len += upstream_read(c, out + len, cap - 1 - len);
    }
    out[len] = 0;
    return upstream_get_state(c);
}

static upstream_call *start(upstream_pool *p, const upstream_req *r) {
    sh_err err;
    upstream_call *c = upstream_start(p, r, &err);
    if (!c) fail_msg("upstream_start: %s", err.msg);
    return c;
}

static upstream_call *get(const char *path) {
    upstream_req r = {.method = "GET", .url = url(path)};
    return start(g_pool, &r);
}

/* A loopback port nobody listens on. */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

/* ============================================================ tests ===== */

static void test_get_post_headers(void **state) {
    (void)state;
    char body[4096];
    const char *hdrs[] = {"X-Test: hello", "Content-Type: application/json", NULL};
    upstream_req r = {.method = "GET", .url = url("/echo?x=1"), .headers = hdrs};
    upstream_call *c = start(g_pool, &r);
    assert_int_equal(upstream_get_state(c), UPSTREAM_CONNECTING);
    assert_int_equal(upstream_status(c), 0);
    assert_null(upstream_header(c, "X-Extra"));
    assert_int_equal(run(c, body, sizeof body), UPSTREAM_DONE);
    assert_int_equal(upstream_status(c), 200);
    assert_string_equal(body, "GET /echo len=0 body= xtest=hello expect=-");
    assert_string_equal(upstream_header(c, "x-extra"), "yes");
    assert_string_equal(upstream_header(c, "X-DUP"), "last"); /* last value wins */
    assert_string_equal(upstream_header(c, "content-type"), "text/plain");
    assert_null(upstream_header(c, "X-Missing"));
    assert_string_equal(upstream_error(c), "");
    assert_true(upstream_first_byte_ms(c) > 0);
    upstream_free(c);

    /* POST: the body is copied at start (the caller's buffer may go away at once) */
    char *json = strdup("{\"a\":1}");
    r = (upstream_req){.method = "POST", .url = url("/v1/echo"), .body = json, .body_len = 7,
                       .headers = hdrs};
    c = start(g_pool, &r);
    memset(json, '#', 7);
    free(json);
    assert_int_equal(run(c, body, sizeof body), UPSTREAM_DONE);
    assert_string_equal(body, "POST /v1/echo len=7 body={\"a\":1} xtest=hello expect=-");
    upstream_free(c);

    /* a large POST is sent without "Expect: 100-continue" */
    size_t n = 300000;
    char *big = malloc(n);
    memset(big, 'b', n);
    r = (upstream_req){.method = "POST", .url = url("/v1/echo"), .body = big, .body_len = n};
    c = start(g_pool, &r);
    free(big);
    assert_int_equal(run(c, body, sizeof body), UPSTREAM_DONE);
    assert_non_null(strstr(body, "len=300000 body=bbbb"));
    assert_non_null(strstr(body, "expect=-"));
    upstream_free(c);

    /* an empty POST */
    r = (upstream_req){.method = "POST", .url = url("/e")};
    c = start(g_pool, &r);
    assert_int_equal(run(c, body, sizeof body), UPSTREAM_DONE);
    assert_non_null(strstr(body, "POST /e len=0"));
    upstream_free(c);
}

static void test_status_codes(void **state) {
    (void)state;
    char body[256];
    upstream_call *c = get("/status?code=404");
    assert_int_equal(run(c, body, sizeof body), UPSTREAM_DONE); /* an answer, not a failure */
    assert_int_equal(upstream_status(c), 404);
    assert_string_equal(body, "nope");
    assert_false(upstream_connect_failed(c));
    upstream_free(c);

    c = get("/status?code=503");
    assert_int_equal(run(c, body, sizeof body), UPSTREAM_DONE);
    assert_int_equal(upstream_status(c), 503);
    assert_string_equal(body, "nope");
    upstream_free(c);

    upstream_free(NULL);
}

static void test_refused(void **state) {
    (void)state;
    char u[64], body[64];
    snprintf(u, sizeof u, "http://%s:%d/v1/models", g_host, free_port());
    upstream_req r = {.method = "GET", .url = u};
    upstream_call *c = start(g_pool, &r);
    assert_int_equal(run(c, body, sizeof body), UPSTREAM_FAILED);
    assert_true(upstream_connect_failed(c));
    assert_true(strlen(upstream_error(c)) > 0);
    assert_int_equal(upstream_status(c), 0);
    assert_int_equal(upstream_poll(&c, 1, 0), -1); /* FAILED was reported by run's poll */
    upstream_free(c);

    char *out = (char *)1;
    size_t len = 7;
    sh_err err;
    assert_int_equal(upstream_fetch(g_pool, &r, &out, &len, &err), -1);
    assert_null(out);
    assert_int_equal(len, 0);
    assert_non_null(strstr(err.msg, u));
}

static void test_timeout(void **state) {
    (void)state;
    char body[64];
    upstream_req r = {.method = "GET", .url = url("/sleep?ms=20000"), .timeout_ms = 300};
    upstream_call *c = start(g_pool, &r);
    assert_int_equal(run(c, body, sizeof body), UPSTREAM_FAILED);
    assert_non_null(strstr(upstream_error(c), "timed out"));
    assert_false(upstream_connect_failed(c)); /* it connected: the node may have the request */
    assert_int_equal(upstream_status(c), 0);
    upstream_free(c);
}

static void test_stream_incremental(void **state) {
    (void)state;
    /* an endless stream: chunks arrive one after another while the transfer goes on */
    upstream_call *c = get("/stream?n=0&ms=20");
    char buf[256];
    int reads = 0;
    bool saw_headers = false;
    double end = http_now_ms() + 30000;
    while (reads < 3 && http_now_ms() < end) {
        int i = upstream_poll(&c, 1, 1000);
        if (i < 0) continue;
        assert_int_equal(i, 0);
        if (upstream_get_state(c) == UPSTREAM_HEADERS) saw_headers = true;
        size_t k = upstream_read(c, buf, sizeof buf - 1);
        if (k) {
            buf[k] = 0;
            assert_non_null(strstr(buf, "data: chunk "));
            reads++;
            assert_int_equal(upstream_get_state(c), UPSTREAM_BODY); /* not done: endless */
            assert_int_equal(upstream_buffered(c), 0);
        }
    }
    assert_int_equal(reads, 3);
    (void)saw_headers; /* headers and the first chunk may come in one packet */
    assert_int_equal(upstream_status(c), 200);
    assert_string_equal(upstream_header(c, "Content-Type"), "text/event-stream");
    upstream_free(c);

    /* a finite stream: BODY while it lasts, then DONE with every chunk in order */
    c = get("/stream?n=4&ms=20");
    char all[512];
    size_t len = 0;
    bool saw_body = false;
    upstream_state last = UPSTREAM_CONNECTING;
    end = http_now_ms() + 30000;
    while (last != UPSTREAM_DONE && last != UPSTREAM_FAILED && http_now_ms() < end) {
        if (upstream_poll(&c, 1, 1000) < 0) continue;
        upstream_state st = upstream_get_state(c);
        assert_true(st >= last || (last == UPSTREAM_BODY && st == UPSTREAM_DONE));
        if (st == UPSTREAM_BODY) saw_body = true;
        len += upstream_read(c, all + len, sizeof all - 1 - len);
        last = upstream_get_state(c);
    }
    all[len] = 0;
    assert_int_equal(last, UPSTREAM_DONE);
    assert_true(saw_body);
    assert_string_equal(all, "data: chunk 0\n\ndata: chunk 1\n\ndata: chunk 2\n\ndata: chunk 3\n\n");
    /* DONE is reported once (now, if the last read is what made it DONE), then nothing more */
    int k = upstream_poll(&c, 1, 0);
    assert_true(k == 0 || k == -1);
    assert_int_equal(upstream_poll(&c, 1, 0), -1);
    upstream_free(c);
}

static void test_poll_two(void **state) {
    (void)state;
    upstream_call *calls[3] = {get("/sleep?ms=20000"), NULL, get("/echo")};
    char buf[256];
    double end = http_now_ms() + 30000;
    int i;
    while ((i = upstream_poll(calls, 3, 1000)) >= 0 || http_now_ms() < end) {
        if (i < 0) continue;
        assert_int_equal(i, 2); /* only the fast one progresses */
        upstream_read(calls[2], buf, sizeof buf);
        if (upstream_get_state(calls[2]) == UPSTREAM_DONE) break;
    }
    assert_int_equal(upstream_get_state(calls[2]), UPSTREAM_DONE);
    assert_int_equal(upstream_get_state(calls[0]), UPSTREAM_CONNECTING);
    /* the fast one's DONE (made by the last read) is reported at most once more; then the
     * slow one alone: nothing within a short wait */
    i = upstream_poll(calls, 3, 0);
    assert_true(i == 2 || i == -1);
    assert_int_equal(upstream_poll(calls, 3, 50), -1);
    upstream_free(calls[0]);
    upstream_free(calls[2]);

    /* two streams at once: neither starves, both finish */
    upstream_call *two[2] = {get("/stream?n=5&ms=5"), get("/stream?n=5&ms=5")};
    size_t got[2] = {0, 0};
    end = http_now_ms() + 30000;
    while ((upstream_get_state(two[0]) != UPSTREAM_DONE ||
            upstream_get_state(two[1]) != UPSTREAM_DONE) &&
           http_now_ms() < end) {
        int j = upstream_poll(two, 2, 1000);
        if (j >= 0) got[j] += upstream_read(two[j], buf, sizeof buf);
    }
    assert_int_equal(got[0], 5 * strlen("data: chunk 0\n\n"));
    assert_int_equal(got[1], got[0]);
    upstream_free(two[0]);
    upstream_free(two[1]);
}

static void test_body_too_large(void **state) {
    (void)state;
    sh_err err;
    upstream_pool *p = upstream_pool_init(&err);
    upstream_pool_set_max_body(p, 64 * 1024);
    upstream_req r = {.method = "GET", .url = url("/big?bytes=1000000")};

    /* nobody reads: the buffer hits the limit */
    upstream_call *c = start(p, &r);
    double end = http_now_ms() + 30000;
    while (upstream_get_state(c) != UPSTREAM_FAILED && http_now_ms() < end)
        upstream_poll(&c, 1, 1000);
    assert_int_equal(upstream_get_state(c), UPSTREAM_FAILED);
    assert_non_null(strstr(upstream_error(c), "exceeds 65536 bytes"));
    assert_false(upstream_connect_failed(c));
    assert_true(upstream_buffered(c) <= 64 * 1024);
    upstream_free(c);

    char *body;
    assert_int_equal(upstream_fetch(p, &r, &body, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "exceeds"));

    /* a reader that keeps up may receive more than the limit in total (libcurl hands over up
     * to ~1.6 MB per poll step, so a realistic limit is a few MiB or more) */
    upstream_pool_set_max_body(p, 4u << 20);
    r.url = url("/big?bytes=20000000");
    c = start(p, &r);
    static char big[65536];
    size_t total = 0;
    end = http_now_ms() + 30000;
    while (upstream_get_state(c) != UPSTREAM_DONE && upstream_get_state(c) != UPSTREAM_FAILED &&
           http_now_ms() < end) {
        upstream_poll(&c, 1, 1000);
        size_t k;
        while ((k = upstream_read(c, big, sizeof big))) total += k;
    }
    assert_string_equal(upstream_error(c), "");
    assert_int_equal(total, 20000000);
    upstream_free(c);

    /* too many header lines */
    r.url = url("/headers?n=300");
    c = start(p, &r);
    assert_int_equal(run(c, big, sizeof big), UPSTREAM_FAILED);
    assert_non_null(strstr(upstream_error(c), "headers exceed"));
    upstream_free(c);
    r.url = url("/headers?n=50");
    c = start(p, &r);
    assert_int_equal(run(c, big, sizeof big), UPSTREAM_DONE);
    assert_string_equal(upstream_header(c, "x-h49"), "v");
    upstream_free(c);
    upstream_pool_free(p);
}

typedef struct {
    upstream_pool *p;
    long connects;
    int status;
} thread_arg;

static void *other_thread(void *ud) {
    thread_arg *a = ud;
    upstream_req r = {.method = "POST", .url = url("/t"), .body = "x", .body_len = 1};
    upstream_call *c = upstream_start(a->p, &r, NULL);
    char body[256];
    if (run(c, body, sizeof body) == UPSTREAM_DONE) a->status = upstream_status(c);
    a->connects = upstream_num_connects(c);
    upstream_free(c);
    return NULL;
}

static void test_connection_reuse(void **state) {
    (void)state;
    sh_err err;
    upstream_pool *p = upstream_pool_init(&err);
    long total = 0;
    char body[256];
    for (int i = 0; i < 50; i++) {
        upstream_req r = {.method = i % 2 ? "GET" : "POST", .url = url("/echo"), .body = "{}",
                          .body_len = i % 2 ? 0 : 2};
        upstream_call *c = start(p, &r);
        assert_int_equal(run(c, body, sizeof body), UPSTREAM_DONE);
        assert_int_equal(upstream_status(c), 200);
        if (i == 0) assert_int_equal(upstream_num_connects(c), 1);
        total += upstream_num_connects(c);
        upstream_free(c);
    }
    assert_int_equal(total, 1); /* one TCP connection for all 50 */

    /* another thread picks up the same kept-alive connection */
    thread_arg a = {.p = p};
    pthread_t t;
    pthread_create(&t, NULL, other_thread, &a);
    pthread_join(t, NULL);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.connects, 0);

    /* upstream_fetch too */
    char *out;
    size_t len;
    upstream_req r = {.method = "GET", .url = url("/f")};
    assert_int_equal(upstream_fetch(p, &r, &out, &len, &err), 200);
    assert_string_equal(out, "GET /f len=0 body= xtest=- expect=-");
    assert_int_equal(len, strlen(out));
    free(out);

    /* two calls at once need two connections; both are kept for later */
    upstream_call *two[2] = {start(p, &r), start(p, &r)};
    for (int i = 0; i < 2; i++) assert_int_equal(run(two[i], body, sizeof body), UPSTREAM_DONE);
    assert_int_equal(upstream_num_connects(two[0]) + upstream_num_connects(two[1]), 1);
    upstream_free(two[0]);
    upstream_free(two[1]);
    two[0] = start(p, &r);
    two[1] = start(p, &r);
    for (int i = 0; i < 2; i++) assert_int_equal(run(two[i], body, sizeof body), UPSTREAM_DONE);
    assert_int_equal(upstream_num_connects(two[0]) + upstream_num_connects(two[1]), 0);
    upstream_free(two[0]);
    upstream_free(two[1]);
    upstream_pool_free(p);
}

static void test_cancel(void **state) {
    (void)state;
    int done0 = atomic_load(&g_stream_done), aborted0 = atomic_load(&g_stream_aborted);
    upstream_call *c = get("/stream?n=0&ms=10"); /* forever */
    char buf[256];
    int reads = 0;
    double end = http_now_ms() + 30000;
    while (reads < 3 && http_now_ms() < end)
        if (upstream_poll(&c, 1, 1000) >= 0 && upstream_read(c, buf, sizeof buf)) reads++;
    assert_int_equal(reads, 3);
    assert_int_equal(upstream_get_state(c), UPSTREAM_BODY);
    upstream_free(c);
    for (int i = 0; i < 1000 && atomic_load(&g_stream_done) == done0; i++) usleep(10000);
    assert_int_equal(atomic_load(&g_stream_done), done0 + 1);
    assert_int_equal(atomic_load(&g_stream_aborted), aborted0 + 1);

    /* the cancelled connection is not reused half-read: the next call works */
    upstream_call *d = get("/after");
    assert_int_equal(run(d, buf, sizeof buf), UPSTREAM_DONE);
    assert_string_equal(buf, "GET /after len=0 body= xtest=- expect=-");
    upstream_free(d);

    /* cancelling before anything happened, or while connecting, is fine too */
    upstream_free(get("/never-polled"));
    d = get("/sleep?ms=20000");
    upstream_poll(&d, 1, 20);
    upstream_free(d);
}

static void test_bad_input(void **state) {
    (void)state;
    sh_err err;
    upstream_req r = {.method = "PUT", .url = url("/x")};
    assert_null(upstream_start(g_pool, &r, &err));
    assert_non_null(strstr(err.msg, "PUT"));
    r = (upstream_req){.method = "GET", .url = url("/x"), .body = "a", .body_len = 1};
    assert_null(upstream_start(g_pool, &r, &err));
    assert_non_null(strstr(err.msg, "GET"));
    r = (upstream_req){.method = "GET", .url = "file:///etc/passwd"};
    assert_null(upstream_start(g_pool, &r, &err));
    assert_non_null(strstr(err.msg, "not an http"));
    r = (upstream_req){.method = "GET", .url = "http://127.0.0.1/a b"};
    assert_null(upstream_start(g_pool, &r, &err));
    const char *crlf[] = {"X-A: 1\r\nX-Injected: 2", NULL};
    r = (upstream_req){.method = "GET", .url = url("/x"), .headers = crlf};
    assert_null(upstream_start(g_pool, &r, &err));
    assert_non_null(strstr(err.msg, "bad request header"));
    const char *nocolon[] = {"X-A 1", NULL};
    r.headers = nocolon;
    assert_null(upstream_start(g_pool, &r, NULL));
    r = (upstream_req){.method = "GET"};
    assert_null(upstream_start(g_pool, &r, &err));
    assert_int_equal(upstream_poll(NULL, 0, 0), -1);
}

/* ============================================================ the scripted server ===== */

/* A raw server on loopback: each connection has its own thread, which reads requests (head and
 * Content-Length body) and answers each by its path with the bytes below, verbatim. */
static int g_raw_fd = -1;
static char g_raw_base[64];
static _Atomic int g_raw_conns;                   /* connections accepted */

/* Sends s one byte at a time (with a pause) when slow, else at once. */
static void raw_send(int fd, const char *s, size_t n, bool slow) {
    for (size_t i = 0; i < n;) {
        ssize_t k = send(fd, s + i, slow ? 1 : n - i, MSG_NOSIGNAL);
        if (k <= 0) return;
        i += (size_t)k;
        if (slow) usleep(300);
    }
}

/* One connection of the raw server: requests answered in order until a scripted close or the
 * client's. */
static void *raw_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[8192];
    size_t len = 0;
    for (;;) {
        char *end;
        while (!(end = memmem(req, len, "\r\n\r\n", 4))) {
            ssize_t k = recv(fd, req + len, sizeof req - 1 - len, 0);
            if (k <= 0) goto out;
            len += (size_t)k;
        }
        req[len] = 0;
        size_t head = (size_t)(end + 4 - req), body = 0;
        const char *cl = strcasestr(req, "\r\nContent-Length:");
        if (cl && cl < end) body = strtoul(cl + 17, NULL, 10);
        while (len < head + body) {
            ssize_t k = recv(fd, req + len, sizeof req - 1 - len, 0);
            if (k <= 0) goto out;
            len += (size_t)k;
        }
        char path[128] = "";
        sscanf(req, "%*s %127s", path);
        char out[8192];
        bool close_after = false, slow = false;
        if (!strcmp(path, "/chunked")) {
            snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
        } else if (!strcmp(path, "/slow")) {
            snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      "3\r\nabc\r\n0\r\n\r\n");
            slow = true;
        } else if (!strcmp(path, "/interim")) {
            snprintf(out, sizeof out, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
                                      "Content-Length: 2\r\n\r\nok");
        } else if (!strcmp(path, "/to-close")) {
            snprintf(out, sizeof out, "HTTP/1.0 200 OK\r\n\r\nuntil the close");
            close_after = true;
        } else if (!strcmp(path, "/short")) {
            snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
            close_after = true;
        } else if (!strcmp(path, "/garbage")) {
            snprintf(out, sizeof out, "SSH-2.0-OpenSSH\r\n\r\n");
            close_after = true;
        } else if (!strcmp(path, "/then-close")) { /* kept alive by its headers, closed anyway */
            snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbye.");
            close_after = true;
        } else { /* the request's head, as the body */
            snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%.*s", head, (int)head, req);
        }
        raw_send(fd, out, strlen(out), slow);
        if (close_after) break;
        memmove(req, req + head + body, len - head - body);
        len -= head + body;
    }
out:
    close(fd);
    return NULL;
}

/* The raw server's accept loop: a thread per connection. */
static void *raw_accept(void *arg) {
    (void)arg;
    for (;;) {
        int fd = accept(g_raw_fd, NULL, NULL);
        if (fd < 0) return NULL;
        atomic_fetch_add(&g_raw_conns, 1);
        pthread_t t;
        pthread_create(&t, NULL, raw_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
}

/* The raw server (left running until the process ends) and a pool. */
static int setup_raw(void **state) {
    (void)state;
    g_raw_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(g_raw_fd, (struct sockaddr *)&a, sizeof a) || listen(g_raw_fd, 16)) fail_msg("raw server");
    socklen_t l = sizeof a;
    getsockname(g_raw_fd, (struct sockaddr *)&a, &l);
    snprintf(g_raw_base, sizeof g_raw_base, "http://127.0.0.1:%d", ntohs(a.sin_port));
    pthread_t t;
    pthread_create(&t, NULL, raw_accept, NULL);
    pthread_detach(t);
    sh_err err;
    g_pool = upstream_pool_init(&err);
    return g_pool ? 0 : -1;
}

/* The pool (the raw server stays until the process ends). */
static int teardown_raw(void **state) {
    (void)state;
    upstream_pool_free(g_pool);
    return 0;
}

/* A call to the raw server, run to its end; the body in out. */
static upstream_call *raw_run(const char *path, const char *method, const char *const *hdrs, const char *body,
                              char *out, size_t cap) {
    char u[128];
    snprintf(u, sizeof u, "%s%s", g_raw_base, path);
    upstream_req r = {.method = method, .url = u, .headers = hdrs, .body = body, .body_len = body ? strlen(body) : 0,
                      .timeout_ms = 10000};
    upstream_call *c = start(g_pool, &r);
    run(c, out, cap);
    return c;
}

/* What goes on the wire: Host, Accept, Content-Length, the caller's headers; no Expect, no
 * header with an empty value, no fragment; "/" for an empty path. */
static void test_raw_request_bytes(void **state) {
    (void)state;
    char out[4096];
    const char *hdrs[] = {"X-Test: 1", "Accept:", "X-Empty: ", NULL};
    upstream_call *c = raw_run("/echo?q=1#frag", "POST", hdrs, "{}", out, sizeof out);
    assert_int_equal(upstream_get_state(c), UPSTREAM_DONE);
    assert_non_null(strstr(out, "POST /echo?q=1 HTTP/1.1\r\n"));
    char host[80];
    snprintf(host, sizeof host, "\r\nHost: %s\r\n", g_raw_base + 7);
    assert_non_null(strstr(out, host));
    assert_non_null(strstr(out, "\r\nX-Test: 1\r\n"));
    assert_non_null(strstr(out, "\r\nContent-Length: 2\r\n"));
    assert_null(strstr(out, "Accept")); /* an empty value: not sent, the default neither */
    assert_null(strstr(out, "X-Empty"));
    assert_null(strstr(out, "Expect"));
    upstream_free(c);
    c = raw_run("", "GET", NULL, NULL, out, sizeof out); /* no path: "/" */
    assert_non_null(strstr(out, "GET / HTTP/1.1\r\n"));
    assert_non_null(strstr(out, "\r\nAccept: */*\r\n"));
    assert_null(strstr(out, "Content-Length"));
    upstream_free(c);
}

/* Chunks with extensions and trailers, a head in one-byte pieces on a reused connection, a
 * 100 Continue first, a body that ends with the close. */
static void test_raw_framing(void **state) {
    (void)state;
    char out[4096];
    upstream_call *c = raw_run("/chunked", "GET", NULL, NULL, out, sizeof out);
    assert_int_equal(upstream_get_state(c), UPSTREAM_DONE);
    assert_string_equal(out, "hello world");
    upstream_free(c);
    int conns = atomic_load(&g_raw_conns);
    c = raw_run("/slow", "GET", NULL, NULL, out, sizeof out); /* reuses the connection */
    assert_int_equal(upstream_get_state(c), UPSTREAM_DONE);
    assert_string_equal(out, "abc");
    assert_string_equal(upstream_header(c, "x-a"), "1");
    assert_int_equal(upstream_num_connects(c), 0);
    assert_int_equal(atomic_load(&g_raw_conns), conns);
    upstream_free(c);
    c = raw_run("/interim", "GET", NULL, NULL, out, sizeof out);
    assert_int_equal(upstream_get_state(c), UPSTREAM_DONE);
    assert_int_equal(upstream_status(c), 201);
    assert_string_equal(out, "ok");
    upstream_free(c);
    c = raw_run("/to-close", "GET", NULL, NULL, out, sizeof out);
    assert_int_equal(upstream_get_state(c), UPSTREAM_DONE);
    assert_string_equal(out, "until the close");
    upstream_free(c);
}

/* A truncated body and a non-HTTP answer fail, with messages that say so. */
static void test_raw_failures(void **state) {
    (void)state;
    char out[4096];
    upstream_call *c = raw_run("/short", "GET", NULL, NULL, out, sizeof out);
    assert_int_equal(upstream_get_state(c), UPSTREAM_FAILED);
    assert_non_null(strstr(upstream_error(c), "7 bytes remaining"));
    assert_false(upstream_connect_failed(c));
    upstream_free(c);
    c = raw_run("/garbage", "GET", NULL, NULL, out, sizeof out);
    assert_int_equal(upstream_get_state(c), UPSTREAM_FAILED);
    assert_non_null(strstr(upstream_error(c), "not HTTP"));
    upstream_free(c);
}

/* A kept-alive connection the server closed: the next request goes again on a fresh one. */
static void test_raw_stale_connection(void **state) {
    (void)state;
    char out[4096];
    upstream_call *c = raw_run("/then-close", "GET", NULL, NULL, out, sizeof out);
    assert_string_equal(out, "bye.");
    upstream_free(c); /* kept: the headers said nothing of a close */
    usleep(50000);    /* the server's close has arrived */
    int conns = atomic_load(&g_raw_conns);
    c = raw_run("/echo", "POST", NULL, "x", out, sizeof out);
    assert_int_equal(upstream_get_state(c), UPSTREAM_DONE); /* sent again on a fresh connection */
    assert_non_null(strstr(out, "POST /echo HTTP/1.1"));
    assert_int_equal(upstream_num_connects(c), 1);
    assert_int_equal(atomic_load(&g_raw_conns), conns + 1);
    upstream_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_post_headers), cmocka_unit_test(test_status_codes),
        cmocka_unit_test(test_refused),          cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_stream_incremental), cmocka_unit_test(test_poll_two),
        cmocka_unit_test(test_body_too_large),   cmocka_unit_test(test_connection_reuse),
        cmocka_unit_test(test_cancel),           cmocka_unit_test(test_bad_input),
    };
    const struct CMUnitTest raw[] = {
        cmocka_unit_test(test_raw_request_bytes), cmocka_unit_test(test_raw_framing),
        cmocka_unit_test(test_raw_failures),      cmocka_unit_test(test_raw_stale_connection),
    };
    int failed = cmocka_run_group_tests_name("built-in client", tests, setup_h1, teardown);
    failed += cmocka_run_group_tests_name("libcurl", tests, setup_curl, teardown);
    failed += cmocka_run_group_tests_name("built-in client, scripted server", raw, setup_raw, teardown_raw);
    return failed;
}
