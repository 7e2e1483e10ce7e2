/*
 * test_train_models — the trainer's whole models (train/enc.h, train/lm.h) against finite
 * differences: the gradient of the full objective (intent + slot tags + InfoNCE for the
 * encoder, next-token cross-entropy for the LM) with respect to sampled entries of every
 * parameter tensor; and the same gradients on 1 and 2 threads, bit for bit.
 */
#include "testutil.h"

#include <math.h>

#include "engine/pool.h"
#include "train/enc.h"
#include "train/lm.h"
#include "train/params.h"

/* Samples up to 4 entries of each tensor; the numeric derivative of loss() against the
 * analytic one in P->g. */
typedef double (*loss_fn)(void *ctx);
static void check_grads(const char *what, tparams *P, loss_fn f, void *ctx, double tol) {
    float *g = malloc(P->total * sizeof *g);
    memcpy(g, P->g, P->total * sizeof *g);
    uint64_t s = 99;
    double num2 = 0, diff2 = 0;
    int checked = 0;
    for (int t = 0; t < P->n; t++) {
        const size_t n = (size_t)(P->t[t].ne0 * P->t[t].ne1);
        for (int k = 0; k < 4 && k < (int)n; k++) {
            const size_t i = P->t[t].off + tu_rand(&s) % n;
            const float w0 = P->w[i], h = 1e-2f;
            P->w[i] = w0 + h;
            const double lp = f(ctx);
            P->w[i] = w0 - h;
            const double lm = f(ctx);
            P->w[i] = w0;
            const double num = (lp - lm) / (2 * h);
            num2 += num * num;
            diff2 += (num - g[i]) * (num - g[i]);
            checked++;
            if (fabs(num - g[i]) > tol * (fabs(num) + 1e-3) && fabs(num - g[i]) > 1e-4)
                fail_msg("%s: %s[%zu]: analytic %g, numeric %g", what, P->t[t].name, i - P->t[t].off, g[i], num);
        }
    }
    assert_true(checked > 20);
    if (sqrt(diff2 / num2) > tol) fail_msg("%s: rel L2 %g over %d entries", what, sqrt(diff2 / num2), checked);
    free(g);
}

/* ============================================================ encoder ===== */

typedef struct ectx {
    tenc *m;
    tenc_batch b;
    tenc_weights w;
} ectx;

static double enc_loss(void *arg) {
    ectx *c = arg;
    tenc_stats st;
    assert_int_equal(tenc_run(c->m, NULL, &c->b, &c->w, false, &st, NULL), 0);
    return st.loss;
}

static void test_encoder_grads(void **state) {
    (void)state;
    tenc_cfg cfg = {.vocab = 30, .dim = 8, .layers = 2, .heads = 2, .ffn = 12, .ctx = 6,
                    .n_intents = 3, .n_tags = 4, .eps = 1e-5f, .init_std = 0.3f};
    sh_err err = {{0}};
    tenc *m = tenc_init(&cfg, 24, 4, 5, &err);
    assert_non_null(m);
    int32_t ids[24], tags[24];
    uint64_t s = 3;
    for (int i = 0; i < 24; i++) ids[i] = (int32_t)(tu_rand(&s) % 30), tags[i] = (int32_t)(tu_rand(&s) % 5) - 1;
    int lens[4] = {6, 4, 5, 2};
    int32_t intent[4] = {0, 2, -1, 1};
    ectx c = {m, {.b = 4, .t = 6, .ids = ids, .lens = lens, .intent = intent, .tags = tags, .n_pairs = 2},
              {.intent = 1, .tags = 1, .nce = 0.5f, .tau = 0.5f}};
    for (int i = 0; i < 4; i++)
        for (int k = lens[i]; k < 6; k++) tags[i * 6 + k] = -1; /* padding has no tag */
    tparams_zero_grad(tenc_params(m));
    tenc_stats st;
    assert_int_equal(tenc_run(m, NULL, &c.b, &c.w, true, &st, &err), 0);
    assert_true(st.n_intent == 3 && st.n_tag > 0 && st.nce_loss > 0);
    check_grads("encoder", tenc_params(m), enc_loss, &c, 2e-2);
    /* two threads: the same gradients, bit for bit */
    tparams *P = tenc_params(m);
    float *g1 = malloc(P->total * sizeof *g1);
    memcpy(g1, P->g, P->total * sizeof *g1);
    pool *p = pool_init(2);
    tparams_zero_grad(P);
    assert_int_equal(tenc_run(m, p, &c.b, &c.w, true, &st, &err), 0);
    assert_memory_equal(g1, P->g, P->total * sizeof *g1);
    /* with dropout: the masks are a function of the key, so the check still holds */
    c.w.dropout = 0.25f;
    c.w.drop_key = 77;
    tparams_zero_grad(P);
    assert_int_equal(tenc_run(m, p, &c.b, &c.w, true, &st, &err), 0);
    check_grads("encoder with dropout", P, enc_loss, &c, 2e-2);
    assert_memory_not_equal(g1, P->g, P->total * sizeof *g1);
    pool_free(p);
    free(g1);
    tenc_free(m);
}

/* ============================================================ LM ===== */

typedef struct lctx {
    tlm *m;
    tlm_batch b;
} lctx;

static double lm_loss(void *arg) {
    lctx *c = arg;
    tlm_stats st;
    assert_int_equal(tlm_run(c->m, NULL, &c->b, false, &st, NULL), 0);
    return st.loss / (double)st.n;
}

static void check_lm(bool tied, int kv_heads) {
    tlm_cfg cfg = {.vocab = 20, .dim = 8, .layers = 2, .heads = 2, .kv_heads = kv_heads, .ffn = 10,
                   .ctx = 16, .rope_base = 100.0f, .eps = 1e-5f, .init_std = 0.3f, .tied = tied};
    sh_err err = {{0}};
    tlm *m = tlm_init(&cfg, 15, 3, 5, 8, &err);
    assert_non_null(m);
    int32_t ids[15], tg[15];
    int lens[3] = {5, 3, 4};
    uint64_t s = 4;
    for (int i = 0; i < 15; i++) {
        ids[i] = (int32_t)(tu_rand(&s) % 20);
        tg[i] = (i % 5) < lens[i / 5] && (i % 3) ? (int32_t)(tu_rand(&s) % 20) : -1;
    }
    lctx c = {m, {.b = 3, .t = 5, .ids = ids, .targets = tg, .lens = lens}};
    tparams_zero_grad(tlm_params(m));
    tlm_stats st;
    assert_int_equal(tlm_run(m, NULL, &c.b, true, &st, &err), 0);
    check_grads(tied ? "lm (tied)" : "lm", tlm_params(m), lm_loss, &c, 2e-2);
    tlm_free(m);
}

static void test_lm_grads(void **state) {
    (void)state;
    check_lm(false, 2);
    check_lm(true, 1); /* tied embeddings, multi-query attention */
}

/* Causality: the logits at position i do not depend on tokens after i. */
static void test_lm_causal(void **state) {
    (void)state;
    tlm_cfg cfg = {.vocab = 20, .dim = 8, .layers = 1, .heads = 2, .kv_heads = 2, .ffn = 10,
                   .ctx = 16, .rope_base = 100.0f, .eps = 1e-5f, .init_std = 0.3f};
    tlm *m = tlm_init(&cfg, 8, 1, 8, 9, NULL);
    int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 8}, tg[8] = {2, 3, 4, 5, 6, 7, 8, 9};
    int len = 8;
    tlm_batch b = {.b = 1, .t = 8, .ids = ids, .targets = tg, .lens = &len};
    tlm_stats st;
    assert_int_equal(tlm_run(m, NULL, &b, false, &st, NULL), 0);
    float first[20];
    memcpy(first, tlm_logits(m, 0, 3), sizeof first);
    ids[5] = 11;
    ids[7] = 0;
    assert_int_equal(tlm_run(m, NULL, &b, false, &st, NULL), 0);
    assert_memory_equal(first, tlm_logits(m, 0, 3), sizeof first);
    tlm_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encoder_grads),
        cmocka_unit_test(test_lm_grads),
        cmocka_unit_test(test_lm_causal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
