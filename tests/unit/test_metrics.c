/*
 * Unit tests: metrics — series identity, counters/gauges/histograms, the text format, label
 * escaping, and lock-free updates from several threads adding up exactly.
 */
#include "testutil.h"

#include <pthread.h>

#include "metrics/metrics.h"

static void test_counter_gauge_render(void **state) {
    (void)state;
    metrics *m = metrics_init();
    metrics_series *a = metrics_counter(m, "shoal_requests_total", "Requests.", "status=\"200\"");
    metrics_series *b = metrics_counter(m, "shoal_requests_total", "Requests.", "status=\"429\"");
    assert_ptr_equal(a, metrics_counter(m, "shoal_requests_total", "x", "status=\"200\""));
    assert_ptr_not_equal(a, b);
    assert_null(metrics_gauge(m, "shoal_requests_total", "wrong kind", ""));
    metrics_inc(a, 1);
    metrics_inc(a, 2);
    metrics_inc(a, -5); /* counters never go down */
    metrics_inc(b, 1);
    metrics_series *g = metrics_gauge(m, "shoal_busy_slots", "Busy slots.", "");
    metrics_set(g, 3);
    metrics_inc(g, -1);
    metrics_set(a, 100); /* not a gauge: ignored */
    assert_true(metrics_value(a) == 3.0);
    assert_true(metrics_value(g) == 2.0);
    metrics_inc(NULL, 1); /* tolerated */
    char *t = metrics_render(m);
    assert_non_null(t);
    assert_non_null(strstr(t, "# HELP shoal_requests_total Requests.\n# TYPE shoal_requests_total counter\n"
                              "shoal_requests_total{status=\"200\"} 3\n"
                              "shoal_requests_total{status=\"429\"} 1\n"));
    assert_non_null(strstr(t, "# TYPE shoal_busy_slots gauge\nshoal_busy_slots 2\n"));
    free(t);
    metrics_free(m);
    metrics_free(NULL);
}

static void test_histogram(void **state) {
    (void)state;
    metrics *m = metrics_init();
    const double bounds[3] = {0.01, 0.1, 1};
    const double bad[2] = {1, 0.5};
    assert_null(metrics_histogram(m, "h_bad", "", "", bad, 2));
    metrics_series *h = metrics_histogram(m, "shoal_ttft_seconds", "TTFT.", "model=\"m\"", bounds, 3);
    metrics_observe(h, 0.005);
    metrics_observe(h, 0.01); /* le is inclusive */
    metrics_observe(h, 0.5);
    metrics_observe(h, 7);
    char *t = metrics_render(m);
    assert_non_null(strstr(t, "shoal_ttft_seconds_bucket{model=\"m\",le=\"0.01\"} 2\n"
                              "shoal_ttft_seconds_bucket{model=\"m\",le=\"0.1\"} 2\n"
                              "shoal_ttft_seconds_bucket{model=\"m\",le=\"1\"} 3\n"
                              "shoal_ttft_seconds_bucket{model=\"m\",le=\"+Inf\"} 4\n"
                              "shoal_ttft_seconds_sum{model=\"m\"} 7.515\n"
                              "shoal_ttft_seconds_count{model=\"m\"} 4\n"));
    free(t);
    metrics_free(m);
}

static double forty_two(void *ud) { return *(double *)ud; }

static void test_gauge_fn_and_escape(void **state) {
    (void)state;
    metrics *m = metrics_init();
    double v = 42;
    assert_int_equal(metrics_gauge_fn_add(m, "shoal_x", "X.", forty_two, &v), 0);
    assert_int_equal(metrics_gauge_fn_add(m, "shoal_x", "X.", forty_two, &v), -1);
    assert_int_equal(metrics_gauge_fn_add(m, "shoal_rss_bytes", "RSS.", metrics_process_rss, NULL), 0);
    char *t = metrics_render(m);
    assert_non_null(strstr(t, "shoal_x 42\n"));
    char *r = strstr(t, "\nshoal_rss_bytes ");
    assert_non_null(r);
    assert_true(atof(r + 17) > 1e5); /* a live process has resident pages */
    free(t);
    char esc[64];
    assert_string_equal(metrics_label_escape("a\"b\\c\nd", esc, sizeof esc), "a\\\"b\\\\c\\nd");
    metrics_free(m);
}

typedef struct {
    metrics_series *c, *h;
} thr_arg;

static void *hammer(void *p) {
    thr_arg *a = p;
    for (int i = 0; i < 100000; i++) {
        metrics_inc(a->c, 1);
        metrics_observe(a->h, 0.25);
    }
    return NULL;
}

static void test_concurrent_updates(void **state) {
    (void)state;
    metrics *m = metrics_init();
    thr_arg a = {metrics_counter(m, "c", "", ""),
                 metrics_histogram(m, "h", "", "", metrics_latency_buckets, metrics_latency_n_buckets)};
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, hammer, &a);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    assert_true(metrics_value(a.c) == 400000.0);
    assert_true(metrics_value(a.h) == 400000.0);
    char *txt = metrics_render(m);
    assert_non_null(strstr(txt, "h_sum 100000\n"));
    free(txt);
    metrics_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge_render),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_gauge_fn_and_escape),
        cmocka_unit_test(test_concurrent_updates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
