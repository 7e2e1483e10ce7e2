/*
 * Unit tests: http — a real server on a free loopback port, driven with libcurl: request
 * fields reach the handler, request ids are kept or made, bodies over the limit get 413,
 * keep-alive reuses the connection, streams arrive whole, and a client that hangs up mid-stream
 * makes the stream's done() see aborted = true.
 */
#include "testutil.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>

#include "http/http.h"

/* ============================================================ the test handler ===== */

typedef struct {
    int n;            /* chunks to send */
    int sent;
    _Atomic int done_called;
    _Atomic int aborted;
} stream_state;

static stream_state g_stream;

static ssize_t pull(void *ctx, char *buf, size_t max) {
    stream_state *st = ctx;
    if (st->sent >= st->n) return -1;
    usleep(2000);
    int k = snprintf(buf, max, "data: chunk %d\n\n", st->sent++);
    return k;
}

static void done(void *ctx, bool aborted) {
    stream_state *st = ctx;
    atomic_store(&st->aborted, aborted);
    atomic_store(&st->done_called, 1);
}

static void handler(void *ud, http_request *req, http_response *resp) {
    (void)ud;
    const char *path = http_req_path(req);
    if (!strcmp(path, "/stream")) {
        const char *n = http_req_query(req, "n");
        g_stream.n = n ? atoi(n) : 5;
        g_stream.sent = 0;
        atomic_store(&g_stream.done_called, 0);
        atomic_store(&g_stream.aborted, 0);
        resp->status = 200;
        resp->content_type = "text/event-stream";
        resp->pull = pull;
        resp->done = done;
        resp->stream_ctx = &g_stream;
        return;
    }
    size_t len;
    const char *body = http_req_body(req, &len);
    const char *h = http_req_header(req, "X-Test");
    char out[512];
    int k = snprintf(out, sizeof out, "%s %s len=%zu body=%s xtest=%s peer=%s", http_req_method(req),
                     path, len, body, h ? h : "-", http_req_peer(req));
    http_resp_set(resp, 201, "text/plain", out, (size_t)k);
    http_resp_header(resp, "X-Extra", "yes");
}

/* ============================================================ a small curl client ===== */

typedef struct {
    char data[65536];
    size_t len;
    size_t abort_after; /* 0: never */
} sink;

static size_t on_data(char *p, size_t sz, size_t n, void *ud) {
    sink *s = ud;
    size_t k = sz * n;
    if (s->len + k < sizeof s->data) {
        memcpy(s->data + s->len, p, k);
        s->len += k;
        s->data[s->len] = 0;
    }
    if (s->abort_after && s->len >= s->abort_after) return 0; /* hang up */
    return k;
}

static sink g_hdr;

static long request(CURL *c, const char *url, const char *body, struct curl_slist *hdrs, sink *out) {
    memset(out, 0, sizeof *out - sizeof out->abort_after);
    memset(&g_hdr, 0, sizeof g_hdr);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &g_hdr);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static http_server *g_srv;
static char g_base[64];

static int setup(void **state) {
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    http_config cfg = {.host = "127.0.0.1", .port = 0, .max_body = 1000};
    sh_err err;
    g_srv = http_server_start(&cfg, handler, NULL, &err);
    if (!g_srv) fail_msg("%s", err.msg);
    snprintf(g_base, sizeof g_base, "http://127.0.0.1:%u", http_server_port(g_srv));
    return 0;
}

static int teardown(void **state) {
    (void)state;
    http_server_stop(g_srv);
    curl_global_cleanup();
    return 0;
}

static void test_echo_and_ids(void **state) {
    (void)state;
    CURL *c = curl_easy_init();
    sink out = {0};
    char url[128];
    snprintf(url, sizeof url, "%s/v1/echo?x=1", g_base);
    struct curl_slist *h = curl_slist_append(NULL, "X-Test: hello");
    h = curl_slist_append(h, "X-Request-Id: my-id.42");
    assert_int_equal(request(c, url, "{\"a\":1}", h, &out), 201);
    assert_string_equal(out.data, "POST /v1/echo len=7 body={\"a\":1} xtest=hello peer=127.0.0.1");
    assert_non_null(strstr(g_hdr.data, "X-Request-Id: my-id.42\r\n"));
    assert_non_null(strstr(g_hdr.data, "X-Extra: yes\r\n"));
    curl_slist_free_all(h);

    /* a bad id is replaced; the same connection is reused (keep-alive) */
    h = curl_slist_append(NULL, "X-Request-Id: bad id with spaces");
    assert_int_equal(request(c, url, NULL, h, &out), 201);
    assert_non_null(strstr(out.data, "GET /v1/echo len=0"));
    assert_non_null(strstr(g_hdr.data, "X-Request-Id: req-"));
    long conns = -1;
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &conns);
    assert_int_equal(conns, 0);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void test_body_limit(void **state) {
    (void)state;
    CURL *c = curl_easy_init();
    sink out = {0};
    char url[128];
    snprintf(url, sizeof url, "%s/big", g_base);
    char *big = malloc(5000);
    memset(big, 'x', 4999);
    big[4999] = 0;
    assert_int_equal(request(c, url, big, NULL, &out), 413);
    assert_non_null(strstr(out.data, "request_too_large"));
    free(big);
    curl_easy_cleanup(c);
    /* the server still serves */
    c = curl_easy_init();
    assert_int_equal(request(c, url, "small", NULL, &out), 201);
    curl_easy_cleanup(c);
}

static void test_stream_whole(void **state) {
    (void)state;
    CURL *c = curl_easy_init();
    sink out = {0};
    char url[128];
    snprintf(url, sizeof url, "%s/stream?n=20", g_base);
    assert_int_equal(request(c, url, NULL, NULL, &out), 200);
    assert_non_null(strstr(out.data, "data: chunk 0\n\n"));
    assert_non_null(strstr(out.data, "data: chunk 19\n\n"));
    assert_null(strstr(out.data, "chunk 20"));
    for (int i = 0; i < 200 && !atomic_load(&g_stream.done_called); i++) usleep(5000);
    assert_true(atomic_load(&g_stream.done_called));
    assert_false(atomic_load(&g_stream.aborted));
    curl_easy_cleanup(c);
}

static void test_stream_client_abort(void **state) {
    (void)state;
    CURL *c = curl_easy_init();
    sink out = {0};
    out.abort_after = 40; /* hang up after the first couple of events */
    char url[128];
    snprintf(url, sizeof url, "%s/stream?n=100000", g_base);
    request(c, url, NULL, NULL, &out);
    curl_easy_cleanup(c);
    for (int i = 0; i < 400 && !atomic_load(&g_stream.done_called); i++) usleep(5000);
    assert_true(atomic_load(&g_stream.done_called));
    assert_true(atomic_load(&g_stream.aborted));
    assert_true(g_stream.sent < 100000);
    for (int i = 0; i < 200 && http_server_active(g_srv) != 0; i++) usleep(5000);
    assert_int_equal(http_server_active(g_srv), 0);
}

static void test_bad_host(void **state) {
    (void)state;
    http_config cfg = {.host = "localhost.invalid", .port = 0};
    sh_err err;
    assert_null(http_server_start(&cfg, handler, NULL, &err));
    assert_non_null(strstr(err.msg, "not a numeric"));
    cfg.host = "127.0.0.1";
    cfg.port = http_server_port(g_srv); /* taken */
    assert_null(http_server_start(&cfg, handler, NULL, &err));
    assert_non_null(strstr(err.msg, "cannot listen"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_and_ids),   cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_stream_whole),   cmocka_unit_test(test_stream_client_abort),
        cmocka_unit_test(test_bad_host),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
