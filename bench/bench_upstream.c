/*
 * bench_upstream — round-trip latency of cluster/upstream (a benchmark, not a test).
 *
 * N sequential small POSTs (upstream_start, upstream_poll, upstream_read, upstream_free) to an
 * in-process http server on loopback; prints p50/p99/max in microseconds. For reference the
 * same requests through one reused curl easy handle (curl_easy_perform) are timed too: the
 * difference is what the upstream layer costs on top of libcurl, the rest is the server and
 * the loopback round trip.
 *
 *   build/bench/bench_upstream [N]      (default 20000)
 *
 * BENCH_UPSTREAM_URL=http://127.0.0.1:PORT/v1/completions sends the requests (a one-token
 * greedy completion for model "tiny") to that server instead, e.g. a running shoal node.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/upstream.h"
#include "http/http.h"

static void handler(void *ud, http_request *req, http_response *resp) {
    (void)ud;
    size_t len;
    http_req_body(req, &len);
    char out[64];
    int k = snprintf(out, sizeof out, "{\"ok\":true,\"len\":%zu}", len);
    http_resp_set(resp, 200, "application/json", out, (size_t)k);
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *name, double *us, int n) {
    qsort(us, (size_t)n, sizeof *us, cmp);
    printf("%-34s n=%d  p50 %.1f us  p99 %.1f us  max %.1f us\n", name, n, us[n / 2],
           us[(int)(n * 0.99)], us[n - 1]);
}

static size_t sink(char *p, size_t sz, size_t n, void *ud) {
    (void)p;
    (void)ud;
    return sz * n;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    if (n < 100) n = 100;
    sh_err err;
    http_config cfg = {.host = "127.0.0.1"};
    http_server *srv = http_server_start(&cfg, handler, NULL, &err);
    upstream_pool *pool = srv ? upstream_pool_init(&err) : NULL;
    if (!pool) {
        fprintf(stderr, "bench_upstream: %s\n", err.msg);
        return 1;
    }
    char url[512];
    const char *ext = getenv("BENCH_UPSTREAM_URL");
    if (ext) snprintf(url, sizeof url, "%s", ext);
    else snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/completions", http_server_port(srv));
    const char *body = "{\"model\":\"tiny\",\"prompt\":\"hello\",\"max_tokens\":1,\"temperature\":0}";
    const char *hdrs[] = {"Content-Type: application/json", "X-Request-Id: bench-1", NULL};
    upstream_req r = {.method = "POST", .url = url, .body = body, .body_len = strlen(body),
                      .headers = hdrs, .timeout_ms = 5000};
    double *us = malloc(sizeof *us * (size_t)n);
    char buf[256];

    /* upstream, warm-up first (the first call connects) */
    long connects = 0;
    for (int i = -200; i < n; i++) {
        double t0 = http_now_ms();
        upstream_call *c = upstream_start(pool, &r, &err);
        if (!c) {
            fprintf(stderr, "bench_upstream: %s\n", err.msg);
            return 1;
        }
        for (;;) {
            upstream_state st = upstream_get_state(c);
            if (st == UPSTREAM_DONE || st == UPSTREAM_FAILED) break;
            upstream_poll(&c, 1, 1000);
            while (upstream_read(c, buf, sizeof buf)) {}
        }
        if (upstream_get_state(c) != UPSTREAM_DONE || upstream_status(c) != 200) {
            fprintf(stderr, "bench_upstream: request %d failed: %s\n", i, upstream_error(c));
            return 1;
        }
        if (i >= 0) connects += upstream_num_connects(c);
        upstream_free(c);
        if (i >= 0) us[i] = (http_now_ms() - t0) * 1e3;
    }
    report("upstream (start/poll/read/free)", us, n);
    printf("%-34s %ld new connections in %d requests\n", "", connects, n);

    /* baseline: one reused easy handle, blocking perform */
    CURL *e = curl_easy_init();
    struct curl_slist *sl = NULL;
    for (int i = 0; hdrs[i]; i++) sl = curl_slist_append(sl, hdrs[i]);
    sl = curl_slist_append(sl, "Expect:");
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, sl);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    for (int i = -200; i < n; i++) {
        double t0 = http_now_ms();
        if (curl_easy_perform(e) != CURLE_OK) {
            fprintf(stderr, "bench_upstream: baseline request failed\n");
            return 1;
        }
        if (i >= 0) us[i] = (http_now_ms() - t0) * 1e3;
    }
    report("baseline (curl_easy_perform)", us, n);
    curl_slist_free_all(sl);
    curl_easy_cleanup(e);

    free(us);
    upstream_pool_free(pool);
    http_server_stop(srv);
    return 0;
}
