/*
 * test_train_ops — the trainer's layers (train/ops.h) against finite differences: for each op a
 * random linear function of its output, L = sum w_i y_i, is differentiated numerically
 * (central differences) with respect to every input and parameter, and compared with the
 * backward pass. Also the matrix products (train/gemm.h): every transposition, edge sizes and
 * thread counts give exactly the reference loop's bits.
 */
#include "testutil.h"

#include <math.h>

#include "engine/pool.h"
#include "train/gemm.h"
#include "train/ops.h"

static uint64_t seed = 42;

static float *rnd(size_t n, float scale) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = tu_randf(&seed) * scale;
    return v;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* rel L2 distance of the analytic gradient g from the numeric one */
static double rel(const float *g, const double *num, size_t n) {
    double a = 0, b = 0;
    for (size_t i = 0; i < n; i++) a += (g[i] - num[i]) * (g[i] - num[i]), b += num[i] * num[i];
    return sqrt(a / (b > 1e-30 ? b : 1e-30));
}

/* The numeric gradient of loss() with respect to x[0..n), central differences of step h. */
typedef double (*loss_fn)(void *ctx);
static double *numeric(float *x, size_t n, loss_fn f, void *ctx, float h) {
    double *g = malloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++) {
        const float x0 = x[i];
        x[i] = x0 + h;
        const double lp = f(ctx);
        x[i] = x0 - h;
        const double lm = f(ctx);
        x[i] = x0;
        g[i] = (lp - lm) / (2.0 * h);
    }
    return g;
}

static void expect_close(const char *what, const float *g, float *x, size_t n, loss_fn f, void *ctx,
                         double tol) {
    double *num = numeric(x, n, f, ctx, 1e-2f);
    const double r = rel(g, num, n);
    if (!(r <= tol)) fail_msg("%s: gradient rel L2 %g > %g", what, r, tol);
    free(num);
}

/* ============================================================ gemm ===== */

static void test_gemm_exact(void **state) {
    (void)state;
    pool *p = pool_init(2);
    const int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {8, 32, 256}, {9, 33, 257}, {64, 100, 300},
                             {130, 1030, 70}, {3, 2000, 5}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *a = rnd((size_t)m * k, 1), *b = rnd((size_t)n * k, 1);
        float *c0 = rnd((size_t)m * n, 1), *c1 = malloc(sizeof(float) * m * n), *c2 = malloc(sizeof(float) * m * n);
        for (int form = 0; form < 3; form++)
            for (int beta = 0; beta < 2; beta++) {
                /* nt: A [m k], B [n k]; nn: B read as [k n]; tn: A read as [k m] */
                gemm_args g = {m, n, k, a, k, 1, b, 1, k, c1, n, beta};
                if (form == 1) g.b_rs = n, g.b_cs = 1;
                if (form == 2) g.a_rs = 1, g.a_cs = m;
                memcpy(c1, c0, sizeof(float) * m * n);
                memcpy(c2, c0, sizeof(float) * m * n);
                gemm(p, &g);
                g.c = c2;
                gemm_ref(&g);
                if (memcmp(c1, c2, sizeof(float) * m * n))
                    fail_msg("gemm %dx%dx%d form %d beta %d differs from the reference", m, n, k, form, beta);
                g.c = c1;
                memcpy(c1, c0, sizeof(float) * m * n);
                gemm(NULL, &g); /* one thread: the same bits */
                if (memcmp(c1, c2, sizeof(float) * m * n)) fail_msg("gemm %dx%dx%d: threads change it", m, n, k);
            }
        free(a), free(b), free(c0), free(c1), free(c2);
    }
    pool_free(p);
}

/* ============================================================ ops ===== */

typedef struct lin {
    float *x, *w, *b, *y, *wt;
    int n, in, out;
} lin;

static double lin_loss(void *ctx) {
    lin *l = ctx;
    op_linear_fwd(NULL, l->y, l->x, l->w, l->b, l->n, l->in, l->out);
    return dot(l->y, l->wt, (size_t)l->n * l->out);
}

static void test_linear(void **state) {
    (void)state;
    lin l = {.n = 5, .in = 7, .out = 6};
    l.x = rnd(35, 1), l.w = rnd(42, 1), l.b = rnd(6, 1), l.y = malloc(30 * sizeof(float)), l.wt = rnd(30, 1);
    float dx[35], dw[42] = {0}, db[6] = {0};
    lin_loss(&l);
    op_linear_bwd(NULL, dx, dw, db, l.wt, l.x, l.w, l.n, l.in, l.out, false);
    expect_close("linear dx", dx, l.x, 35, lin_loss, &l, 1e-3);
    expect_close("linear dw", dw, l.w, 42, lin_loss, &l, 1e-3);
    expect_close("linear db", db, l.b, 6, lin_loss, &l, 1e-3);
    free(l.x), free(l.w), free(l.b), free(l.y), free(l.wt);
}

typedef struct norm {
    float *x, *w, *b, *y, *wt, mean[8], rstd[8];
    int n, d;
    bool rms;
} norm;

static double norm_loss(void *ctx) {
    norm *s = ctx;
    if (s->rms) op_rmsnorm_fwd(NULL, s->y, s->rstd, s->x, s->w, s->n, s->d, 1e-5f);
    else op_layernorm_fwd(NULL, s->y, s->mean, s->rstd, s->x, s->w, s->b, s->n, s->d, 1e-5f);
    return dot(s->y, s->wt, (size_t)s->n * s->d);
}

static void test_norms(void **state) {
    (void)state;
    for (int rms = 0; rms < 2; rms++) {
        norm s = {.n = 4, .d = 12, .rms = rms};
        s.x = rnd(48, 2), s.w = rnd(12, 1), s.b = rnd(12, 1), s.y = malloc(48 * sizeof(float)), s.wt = rnd(48, 1);
        float dx[48], dw[12] = {0}, db[12] = {0};
        norm_loss(&s);
        if (rms) op_rmsnorm_bwd(NULL, dx, dw, s.wt, s.x, s.rstd, s.w, s.n, s.d);
        else op_layernorm_bwd(NULL, dx, dw, db, s.wt, s.x, s.mean, s.rstd, s.w, s.n, s.d);
        expect_close(rms ? "rmsnorm dx" : "layernorm dx", dx, s.x, 48, norm_loss, &s, 2e-3);
        expect_close(rms ? "rmsnorm dw" : "layernorm dw", dw, s.w, 12, norm_loss, &s, 2e-3);
        if (!rms) expect_close("layernorm db", db, s.b, 12, norm_loss, &s, 2e-3);
        free(s.x), free(s.w), free(s.b), free(s.y), free(s.wt);
    }
}

typedef struct act {
    float *x, *u, *y, *wt;
    int n, kind; /* 0 gelu, 1 swiglu */
} act;

static double act_loss(void *ctx) {
    act *a = ctx;
    if (a->kind == 0) op_gelu_fwd(NULL, a->y, a->x, a->n);
    else op_swiglu_fwd(NULL, a->y, a->x, a->u, a->n);
    return dot(a->y, a->wt, (size_t)a->n);
}

static void test_activations(void **state) {
    (void)state;
    act a = {.n = 40};
    a.x = rnd(40, 4), a.u = rnd(40, 2), a.y = malloc(40 * sizeof(float)), a.wt = rnd(40, 1);
    float dx[40], du[40];
    op_gelu_bwd(NULL, dx, a.wt, a.x, 40);
    expect_close("gelu dx", dx, a.x, 40, act_loss, &a, 2e-3);
    a.kind = 1;
    op_swiglu_bwd(NULL, dx, du, a.wt, a.x, a.u, 40);
    expect_close("swiglu dgate", dx, a.x, 40, act_loss, &a, 2e-3);
    expect_close("swiglu dup", du, a.u, 40, act_loss, &a, 2e-3);
    free(a.x), free(a.u), free(a.y), free(a.wt);
}

typedef struct rope {
    float *x, *y, *wt;
    int n, t, heads, hd, n_rot;
} rope;

static double rope_loss(void *ctx) {
    rope *r = ctx;
    memcpy(r->y, r->x, sizeof(float) * r->n * r->heads * r->hd);
    op_rope_fwd(NULL, r->y, r->n, r->t, r->heads, r->hd, r->n_rot, 10000.0f, r->heads * r->hd);
    return dot(r->y, r->wt, (size_t)r->n * r->heads * r->hd);
}

static void test_rope(void **state) {
    (void)state;
    rope r = {.n = 6, .t = 3, .heads = 2, .hd = 8, .n_rot = 6};
    const int sz = 6 * 16;
    r.x = rnd(sz, 1), r.y = malloc(sz * sizeof(float)), r.wt = rnd(sz, 1);
    float dx[96];
    memcpy(dx, r.wt, sizeof dx);
    op_rope_bwd(NULL, dx, r.n, r.t, r.heads, r.hd, r.n_rot, 10000.0f, 16);
    expect_close("rope dx", dx, r.x, sz, rope_loss, &r, 1e-3);
    free(r.x), free(r.y), free(r.wt);
}

typedef struct attn {
    op_attn_shape s;
    float *q, *k, *v, *o, *probs, *wt;
} attn;

static double attn_loss(void *ctx) {
    attn *a = ctx;
    op_attn_fwd(NULL, &a->s, a->o, a->probs, a->q, a->k, a->v);
    return dot(a->o, a->wt, (size_t)a->s.b * a->s.t * a->s.o_stride);
}

static void test_attention(void **state) {
    (void)state;
    pool *p = pool_init(2);
    for (int causal = 0; causal < 2; causal++) {
        int lens[2] = {5, 3};
        attn a = {.s = {.b = 2, .t = 5, .hq = 4, .hkv = 2, .hd = 6, .lens = lens, .causal = causal,
                        .q_stride = 24, .k_stride = 12, .v_stride = 12, .o_stride = 24}};
        const int nq = 2 * 5 * 24, nk = 2 * 5 * 12;
        a.q = rnd(nq, 1), a.k = rnd(nk, 1), a.v = rnd(nk, 1), a.o = calloc(nq, sizeof(float));
        a.probs = malloc(sizeof(float) * 2 * 4 * 25), a.wt = rnd(nq, 1);
        /* padding query rows have no loss (their output is zero) */
        for (int i = 3; i < 5; i++)
            for (int c = 0; c < 24; c++) a.wt[(5 + i) * 24 + c] = 0;
        float *dq = malloc(sizeof(float) * nq), *dk = malloc(sizeof(float) * nk), *dv = malloc(sizeof(float) * nk);
        attn_loss(&a);
        op_attn_bwd(p, &a.s, dq, dk, dv, a.wt, a.probs, a.q, a.k, a.v);
        /* padded keys of sequence 1 get no gradient */
        for (int j = 3; j < 5; j++)
            for (int c = 0; c < 12; c++) dk[(5 + j) * 12 + c] = 0, dv[(5 + j) * 12 + c] = 0;
        expect_close(causal ? "causal attention dq" : "attention dq", dq, a.q, nq, attn_loss, &a, 5e-3);
        expect_close(causal ? "causal attention dk" : "attention dk", dk, a.k, nk, attn_loss, &a, 5e-3);
        expect_close(causal ? "causal attention dv" : "attention dv", dv, a.v, nk, attn_loss, &a, 5e-3);
        free(a.q), free(a.k), free(a.v), free(a.o), free(a.probs), free(a.wt), free(dq), free(dk), free(dv);
    }
    pool_free(p);
}

typedef struct xe {
    float *l;
    int32_t t[6];
    int n, c;
} xe;

static double xe_loss(void *ctx) {
    xe *x = ctx;
    return op_xent(NULL, x->l, x->t, x->n, x->c, NULL, 1, NULL, NULL);
}

static void test_xent(void **state) {
    (void)state;
    xe x = {.t = {2, -1, 0, 4, 4, 1}, .n = 6, .c = 5};
    x.l = rnd(30, 3);
    float d[30];
    int64_t cnt, ok;
    op_xent(NULL, x.l, x.t, 6, 5, d, 1, &cnt, &ok);
    assert_int_equal(cnt, 5);
    expect_close("cross-entropy dlogits", d, x.l, 30, xe_loss, &x, 2e-3);
    free(x.l);
}

typedef struct nce {
    float *x, *y, *ya, *yb, nrm[8], nrm2[8], *wt;
    int n, d;
} nce;

/* l2norm then InfoNCE of the first n rows against the next n */
static double nce_loss(void *ctx) {
    nce *s = ctx;
    op_l2norm_fwd(s->ya, s->nrm, s->x, s->n, s->d);
    op_l2norm_fwd(s->yb, s->nrm2, s->y, s->n, s->d);
    float da[64], db[64];
    return op_infonce(s->ya, s->yb, s->n, s->d, 0.1f, da, db);
}

static void test_infonce(void **state) {
    (void)state;
    nce s = {.n = 4, .d = 6};
    s.x = rnd(24, 1), s.y = rnd(24, 1), s.ya = malloc(96), s.yb = malloc(96);
    nce_loss(&s);
    float da[24], db[24], dx[24], dy[24];
    op_infonce(s.ya, s.yb, s.n, s.d, 0.1f, da, db);
    op_l2norm_bwd(dx, da, s.ya, s.nrm, s.n, s.d);
    op_l2norm_bwd(dy, db, s.yb, s.nrm2, s.n, s.d);
    expect_close("infonce + l2norm d(first)", dx, s.x, 24, nce_loss, &s, 3e-3);
    expect_close("infonce + l2norm d(second)", dy, s.y, 24, nce_loss, &s, 3e-3);
    free(s.x), free(s.y), free(s.ya), free(s.yb);
}

typedef struct emb {
    float *table, *y, *wt;
    int32_t ids[5];
} emb;

static double emb_loss(void *ctx) {
    emb *e = ctx;
    op_embed_fwd(e->y, e->table, e->ids, 5, 4);
    return dot(e->y, e->wt, 20);
}

static void test_embedding(void **state) {
    (void)state;
    emb e = {.ids = {3, 1, 3, 0, 2}};
    e.table = rnd(16, 1), e.y = malloc(80), e.wt = rnd(20, 1);
    float dt[16] = {0};
    op_embed_bwd(NULL, dt, e.wt, e.ids, 5, 4);
    expect_close("embedding dtable (repeated ids)", dt, e.table, 16, emb_loss, &e, 1e-3);
    free(e.table), free(e.y), free(e.wt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_exact), cmocka_unit_test(test_linear),
        cmocka_unit_test(test_norms),      cmocka_unit_test(test_activations),
        cmocka_unit_test(test_rope),       cmocka_unit_test(test_attention),
        cmocka_unit_test(test_xent),       cmocka_unit_test(test_infonce),
        cmocka_unit_test(test_embedding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
