/*
 * test_sampler — greedy ties, top-k / top-p / min-p sets, penalties, temperature, seeds,
 * log-probabilities.
 */
#include "testutil.h"

#include <math.h>
#include <stdbool.h>

#include "sampler/sampler.h"

static sampler *mk(const sampler_params *p, int n) {
    sh_err err = {{0}};
    sampler *s = sampler_init(p, n, &err);
    assert_non_null(s);
    return s;
}

/* all filters off, temperature t */
static void plain(sampler_params *p, float t) {
    sampler_params_default(p);
    p->temp = t;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
}

static void test_greedy_ties(void **state) {
    (void)state;
    float l[6] = {1, 3, 0.5f, 3, -2, 3};
    assert_int_equal(sampler_argmax(l, 6), 1);
    sampler_params p;
    plain(&p, 0.0f);
    sampler *s = mk(&p, 6);
    for (int i = 0; i < 5; i++) assert_int_equal(sampler_sample(s, l, NULL), 1);
    sampler_free(s);
    p.temp = -1.0f; /* negative is greedy too */
    s = mk(&p, 6);
    assert_int_equal(sampler_sample(s, l, NULL), 1);
    sampler_free(s);
}

/* Draws n tokens and counts them. */
static void histogram(sampler *s, const float *l, int nv, int draws, int *count) {
    memset(count, 0, sizeof(int) * (size_t)nv);
    for (int i = 0; i < draws; i++) {
        int32_t id = sampler_sample(s, l, NULL);
        assert_true(id >= 0 && id < nv);
        count[id]++;
    }
}

static void test_top_k(void **state) {
    (void)state;
    float l[8] = {0.1f, 2.0f, 1.0f, 1.9f, 0.0f, 1.95f, -1.0f, 0.5f};
    sampler_params p;
    plain(&p, 5.0f); /* flat: every kept token is drawn often */
    p.top_k = 3;
    sampler *s = mk(&p, 8);
    int c[8];
    histogram(s, l, 8, 3000, c);
    for (int i = 0; i < 8; i++) {
        bool kept = i == 1 || i == 3 || i == 5;
        if (kept) assert_true(c[i] > 500);
        else assert_int_equal(c[i], 0);
    }
    sampler_free(s);
    p.top_k = 1;
    s = mk(&p, 8);
    histogram(s, l, 8, 200, c);
    assert_int_equal(c[1], 200);
    sampler_free(s);
}

static void test_top_p(void **state) {
    (void)state;
    /* probabilities 0.5, 0.3, 0.15, 0.05 (ids shuffled) */
    float l[4] = {logf(0.15f), logf(0.5f), logf(0.05f), logf(0.3f)};
    sampler_params p;
    plain(&p, 1.0f);
    p.top_p = 0.75f; /* 0.5 < 0.75 <= 0.8: ids 1 and 3 */
    sampler *s = mk(&p, 4);
    int c[4];
    histogram(s, l, 4, 4000, c);
    assert_int_equal(c[0] + c[2], 0);
    assert_true(c[1] > 2000 && c[3] > 1000);
    /* renormalised over the kept set: 0.5/0.8 = 0.625 */
    assert_true(fabs(c[1] / 4000.0 - 0.625) < 0.04);
    sampler_free(s);
    p.top_p = 0.45f; /* the first one alone */
    s = mk(&p, 4);
    histogram(s, l, 4, 300, c);
    assert_int_equal(c[1], 300);
    sampler_free(s);
    p.top_p = 0.93f; /* 0.8 < 0.93 <= 0.95: all but the last */
    s = mk(&p, 4);
    histogram(s, l, 4, 4000, c);
    assert_int_equal(c[2], 0);
    assert_true(c[0] > 300);
    sampler_free(s);
}

static void test_top_p_large_vocab(void **state) {
    (void)state;
    /* many tiny tokens and a few big ones: the pre-filter must not change the set */
    enum { N = 5000 };
    static float l[N];
    for (int i = 0; i < N; i++) l[i] = -10.0f;
    l[17] = 5.0f, l[4000] = 4.5f, l[2] = 4.0f;
    sampler_params p;
    plain(&p, 1.0f);
    p.top_p = 0.9f;
    sampler *s = mk(&p, N);
    static int c[N];
    histogram(s, l, N, 3000, c);
    int others = 0;
    for (int i = 0; i < N; i++)
        if (i != 17 && i != 4000 && i != 2) others += c[i];
    assert_int_equal(others, 0);
    assert_true(c[17] > 0 && c[4000] > 0 && c[2] > 0);
    sampler_free(s);
}

static void test_min_p(void **state) {
    (void)state;
    float l[4] = {logf(0.4f), logf(0.3f), logf(0.19f), logf(0.11f)};
    sampler_params p;
    plain(&p, 1.0f);
    p.min_p = 0.5f; /* keep p >= 0.2: ids 0, 1 */
    sampler *s = mk(&p, 4);
    int c[4];
    histogram(s, l, 4, 3000, c);
    assert_int_equal(c[2] + c[3], 0);
    assert_true(c[0] > 1000 && c[1] > 800);
    sampler_free(s);
}

static void test_penalties(void **state) {
    (void)state;
    sampler_params p;
    plain(&p, 0.0f);
    p.repeat_penalty = 2.0f;
    p.penalty_last_n = 3;
    float l[3] = {2.0f, 1.5f, -1.0f};
    sampler *s = mk(&p, 3);
    assert_int_equal(sampler_sample(s, l, NULL), 0);
    sampler_accept(s, 0); /* 2.0 -> 1.0 < 1.5 */
    assert_int_equal(sampler_sample(s, l, NULL), 1);
    sampler_accept(s, 1); /* 1.5 -> 0.75 and 2.0 -> 1.0 */
    assert_int_equal(sampler_sample(s, l, NULL), 0);
    sampler_accept(s, 2);
    sampler_accept(s, 2); /* window of 3: only 1, 2, 2 remain; 0 is free again */
    assert_int_equal(sampler_sample(s, l, NULL), 0);
    sampler_free(s);

    /* a negative logit is multiplied: -0.1 * 2 = -0.2 loses to -0.15 */
    float m[2] = {-0.1f, -0.15f};
    s = mk(&p, 2);
    sampler_accept(s, 0);
    assert_int_equal(sampler_sample(s, m, NULL), 1);
    sampler_free(s);

    /* frequency and presence: 1.0 - 2 * 0.1 - 0.05 = 0.75 < 0.8 */
    plain(&p, 0.0f);
    p.frequency_penalty = 0.1f;
    p.presence_penalty = 0.05f;
    p.penalty_last_n = 8;
    float f[2] = {1.0f, 0.8f};
    s = mk(&p, 2);
    sampler_accept(s, 0);
    assert_int_equal(sampler_sample(s, f, NULL), 0); /* 1 - 0.1 - 0.05 = 0.85 */
    sampler_accept(s, 0);
    assert_int_equal(sampler_sample(s, f, NULL), 1);
    sampler_reset(s); /* history cleared */
    assert_int_equal(sampler_sample(s, f, NULL), 0);
    sampler_free(s);
}

static void test_seed_and_distribution(void **state) {
    (void)state;
    enum { N = 50 };
    float l[N];
    uint64_t r = 9;
    for (int i = 0; i < N; i++) l[i] = 2.0f * tu_randf(&r);
    sampler_params p;
    sampler_params_default(&p);
    p.seed = 1234;
    int32_t a[64], b[64];
    sampler *s = mk(&p, N);
    for (int i = 0; i < 64; i++) a[i] = sampler_sample(s, l, NULL);
    sampler_free(s);
    s = mk(&p, N);
    for (int i = 0; i < 64; i++) b[i] = sampler_sample(s, l, NULL);
    assert_memory_equal(a, b, sizeof a);
    sampler_reset(s); /* reset replays the same stream */
    for (int i = 0; i < 64; i++) b[i] = sampler_sample(s, l, NULL);
    assert_memory_equal(a, b, sizeof a);
    sampler_free(s);
    p.seed = 1235;
    s = mk(&p, N);
    for (int i = 0; i < 64; i++) b[i] = sampler_sample(s, l, NULL);
    assert_true(memcmp(a, b, sizeof a) != 0);
    sampler_free(s);

    /* temperature 1 without filters follows softmax(l); temperature 0.5 sharpens */
    float q[3] = {logf(0.7f), logf(0.2f), logf(0.1f)};
    plain(&p, 1.0f);
    s = mk(&p, 3);
    int c[3];
    histogram(s, q, 3, 20000, c);
    assert_true(fabs(c[0] / 20000.0 - 0.7) < 0.02);
    assert_true(fabs(c[1] / 20000.0 - 0.2) < 0.02);
    sampler_free(s);
    plain(&p, 0.5f); /* p ~ {0.49, 0.04, 0.01} / 0.54 */
    s = mk(&p, 3);
    histogram(s, q, 3, 20000, c);
    assert_true(fabs(c[0] / 20000.0 - 0.49 / 0.54) < 0.02);
    sampler_free(s);
}

static void test_logprobs(void **state) {
    (void)state;
    float l[5] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
    sampler_params p;
    plain(&p, 0.0f);
    p.n_probs = 3;
    sampler *s = mk(&p, 5);
    sampler_result res;
    int32_t id = sampler_sample(s, l, &res);
    assert_int_equal(id, 1);
    assert_int_equal(res.id, 1);
    double z = 0;
    for (int i = 0; i < 5; i++) z += exp(l[i]);
    assert_float_equal(res.logprob, 2.0 - log(z), 1e-5);
    assert_int_equal(res.n_top, 3);
    assert_int_equal(res.top[0].id, 1);
    assert_int_equal(res.top[1].id, 3);
    assert_int_equal(res.top[2].id, 4);
    assert_float_equal(res.top[2].logprob, 1.0 - log(z), 1e-5);
    sampler_free(s);
}

static void test_bad_params(void **state) {
    (void)state;
    sampler_params p;
    sampler_params_default(&p);
    p.repeat_penalty = 0.0f;
    sh_err err = {{0}};
    assert_null(sampler_init(&p, 10, &err));
    assert_true(err.msg[0] != 0);
    sampler_params_default(&p);
    assert_null(sampler_init(&p, 0, &err));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_ties),     cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),           cmocka_unit_test(test_top_p_large_vocab),
        cmocka_unit_test(test_min_p),           cmocka_unit_test(test_penalties),
        cmocka_unit_test(test_seed_and_distribution), cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_bad_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
