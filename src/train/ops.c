/*
 * train/ops — see ops.h.
 */
#include "train/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "train/gemm.h"

/* ============================================================ threads ===== */

typedef struct par_job {
    int64_t n;
    ops_range_fn fn;
    void *ctx;
} par_job;

static void par_thread(void *arg, int ith, int nth) {
    const par_job *j = arg;
    const int64_t lo = j->n * ith / nth, hi = j->n * (ith + 1) / nth;
    if (lo < hi) j->fn(j->ctx, lo, hi);
}

void ops_parallel(pool *p, int64_t n, ops_range_fn fn, void *ctx) {
    if (n <= 0) return;
    par_job j = {n, fn, ctx};
    if (!p || pool_threads(p) == 1 || n == 1) fn(ctx, 0, n);
    else pool_run(p, par_thread, &j);
}

/* ============================================================ linear ===== */

typedef struct bias_ctx {
    float *y;
    const float *b, *dy;
    float *db;
    int64_t n;
    int d;
} bias_ctx;

static void bias_rows(void *arg, int64_t lo, int64_t hi) {
    const bias_ctx *c = arg;
    for (int64_t r = lo; r < hi; r++) {
        float *y = c->y + r * c->d;
        for (int k = 0; k < c->d; k++) y[k] += c->b[k];
    }
}

/* db[k] += sum over rows of dy[r][k], columns [lo, hi), rows in order */
static void colsum(void *arg, int64_t lo, int64_t hi) {
    const bias_ctx *c = arg;
    for (int64_t r = 0; r < c->n; r++) {
        const float *dy = c->dy + r * c->d;
        for (int64_t k = lo; k < hi; k++) c->db[k] += dy[k];
    }
}

void op_linear_fwd(pool *p, float *y, const float *x, const float *w, const float *b, int64_t n,
                   int in, int out) {
    gemm_nt(p, n, out, in, x, w, y, 0);
    if (!b) return;
    bias_ctx c = {.y = y, .b = b, .d = out};
    ops_parallel(p, n, bias_rows, &c);
}

void op_linear_bwd(pool *p, float *dx, float *dw, float *db, const float *dy, const float *x,
                   const float *w, int64_t n, int in, int out, bool accumulate_dx) {
    if (dx) gemm_nn(p, n, in, out, dy, w, dx, accumulate_dx);
    gemm_tn(p, out, in, n, dy, x, dw, 1);
    if (db) {
        bias_ctx c = {.dy = dy, .db = db, .n = n, .d = out};
        ops_parallel(p, out, colsum, &c);
    }
}

/* ============================================================ norms ===== */

typedef struct norm_ctx {
    float *y, *mean, *rstd, *dx, *dw, *db;
    const float *x, *w, *b, *dy, *cmean, *crstd;
    int64_t n;
    int d;
    float eps;
} norm_ctx;

static void ln_fwd_rows(void *arg, int64_t lo, int64_t hi) {
    const norm_ctx *c = arg;
    const int d = c->d;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * d;
        float *y = c->y + r * d;
        double s = 0, ss = 0;
        for (int k = 0; k < d; k++) s += x[k];
        const float m = (float)(s / d);
        for (int k = 0; k < d; k++) ss += (double)(x[k] - m) * (x[k] - m);
        const float rs = (float)(1.0 / sqrt(ss / d + c->eps));
        c->mean[r] = m;
        c->rstd[r] = rs;
        for (int k = 0; k < d; k++) y[k] = (x[k] - m) * rs * c->w[k] + (c->b ? c->b[k] : 0.0f);
    }
}

void op_layernorm_fwd(pool *p, float *y, float *mean, float *rstd, const float *x, const float *w,
                      const float *b, int64_t n, int d, float eps) {
    norm_ctx c = {.y = y, .mean = mean, .rstd = rstd, .x = x, .w = w, .b = b, .d = d, .eps = eps};
    ops_parallel(p, n, ln_fwd_rows, &c);
}

static void ln_bwd_rows(void *arg, int64_t lo, int64_t hi) {
    const norm_ctx *c = arg;
    const int d = c->d;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * d, *dy = c->dy + r * d;
        float *dx = c->dx + r * d;
        const float m = c->cmean[r], rs = c->crstd[r];
        double a = 0, bsum = 0; /* mean(dxhat), mean(dxhat * xhat) */
        for (int k = 0; k < d; k++) {
            const float xh = (x[k] - m) * rs, dxh = dy[k] * c->w[k];
            a += dxh;
            bsum += (double)dxh * xh;
        }
        const float ma = (float)(a / d), mb = (float)(bsum / d);
        for (int k = 0; k < d; k++) {
            const float xh = (x[k] - m) * rs;
            dx[k] = rs * (dy[k] * c->w[k] - ma - xh * mb);
        }
    }
}

static void ln_bwd_cols(void *arg, int64_t lo, int64_t hi) {
    const norm_ctx *c = arg;
    const int d = c->d;
    for (int64_t r = 0; r < c->n; r++) {
        const float *x = c->x + r * d, *dy = c->dy + r * d;
        const float m = c->cmean[r], rs = c->crstd[r];
        for (int64_t k = lo; k < hi; k++) {
            c->dw[k] += dy[k] * ((x[k] - m) * rs);
            if (c->db) c->db[k] += dy[k];
        }
    }
}

void op_layernorm_bwd(pool *p, float *dx, float *dw, float *db, const float *dy, const float *x,
                      const float *mean, const float *rstd, const float *w, int64_t n, int d) {
    norm_ctx c = {.dx = dx, .dw = dw, .db = db, .dy = dy, .x = x, .cmean = mean, .crstd = rstd,
                  .w = w, .n = n, .d = d};
    ops_parallel(p, n, ln_bwd_rows, &c);
    ops_parallel(p, d, ln_bwd_cols, &c);
}

static void rms_fwd_rows(void *arg, int64_t lo, int64_t hi) {
    const norm_ctx *c = arg;
    const int d = c->d;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * d;
        float *y = c->y + r * d;
        double ss = 0;
        for (int k = 0; k < d; k++) ss += (double)x[k] * x[k];
        const float rs = (float)(1.0 / sqrt(ss / d + c->eps));
        c->rstd[r] = rs;
        for (int k = 0; k < d; k++) y[k] = x[k] * rs * c->w[k];
    }
}

void op_rmsnorm_fwd(pool *p, float *y, float *rstd, const float *x, const float *w, int64_t n,
                    int d, float eps) {
    norm_ctx c = {.y = y, .rstd = rstd, .x = x, .w = w, .d = d, .eps = eps};
    ops_parallel(p, n, rms_fwd_rows, &c);
}

static void rms_bwd_rows(void *arg, int64_t lo, int64_t hi) {
    const norm_ctx *c = arg;
    const int d = c->d;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * d, *dy = c->dy + r * d;
        float *dx = c->dx + r * d;
        const float rs = c->crstd[r];
        double s = 0;
        for (int k = 0; k < d; k++) s += (double)dy[k] * c->w[k] * x[k];
        const float f = (float)(s / d) * rs * rs * rs;
        for (int k = 0; k < d; k++) dx[k] = dy[k] * c->w[k] * rs - x[k] * f;
    }
}

static void rms_bwd_cols(void *arg, int64_t lo, int64_t hi) {
    const norm_ctx *c = arg;
    const int d = c->d;
    for (int64_t r = 0; r < c->n; r++) {
        const float *x = c->x + r * d, *dy = c->dy + r * d;
        const float rs = c->crstd[r];
        for (int64_t k = lo; k < hi; k++) c->dw[k] += dy[k] * x[k] * rs;
    }
}

void op_rmsnorm_bwd(pool *p, float *dx, float *dw, const float *dy, const float *x,
                    const float *rstd, const float *w, int64_t n, int d) {
    norm_ctx c = {.dx = dx, .dw = dw, .dy = dy, .x = x, .crstd = rstd, .w = w, .n = n, .d = d};
    ops_parallel(p, n, rms_bwd_rows, &c);
    ops_parallel(p, d, rms_bwd_cols, &c);
}

/* ============================================================ activations ===== */

typedef struct ew_ctx {
    float *y, *dx, *dg, *du;
    const float *x, *g, *u, *dy;
} ew_ctx;

#define GELU_C 0.79788456080286535588f /* sqrt(2 / pi) */
#define GELU_A 0.044715f

static void gelu_f(void *arg, int64_t lo, int64_t hi) {
    const ew_ctx *c = arg;
    for (int64_t i = lo; i < hi; i++) {
        const float x = c->x[i];
        c->y[i] = 0.5f * x * (1.0f + tanhf(GELU_C * (x + GELU_A * x * x * x)));
    }
}

static void gelu_b(void *arg, int64_t lo, int64_t hi) {
    const ew_ctx *c = arg;
    for (int64_t i = lo; i < hi; i++) {
        const float x = c->x[i], t = tanhf(GELU_C * (x + GELU_A * x * x * x));
        const float dt = (1.0f - t * t) * GELU_C * (1.0f + 3.0f * GELU_A * x * x);
        c->dx[i] = c->dy[i] * (0.5f * (1.0f + t) + 0.5f * x * dt);
    }
}

void op_gelu_fwd(pool *p, float *y, const float *x, int64_t n) {
    ew_ctx c = {.y = y, .x = x};
    ops_parallel(p, n, gelu_f, &c);
}

void op_gelu_bwd(pool *p, float *dx, const float *dy, const float *x, int64_t n) {
    ew_ctx c = {.dx = dx, .dy = dy, .x = x};
    ops_parallel(p, n, gelu_b, &c);
}

static void swiglu_f(void *arg, int64_t lo, int64_t hi) {
    const ew_ctx *c = arg;
    for (int64_t i = lo; i < hi; i++) {
        const float g = c->g[i];
        c->y[i] = g / (1.0f + expf(-g)) * c->u[i];
    }
}

static void swiglu_b(void *arg, int64_t lo, int64_t hi) {
    const ew_ctx *c = arg;
    for (int64_t i = lo; i < hi; i++) {
        const float g = c->g[i], s = 1.0f / (1.0f + expf(-g));
        c->dg[i] = c->dy[i] * c->u[i] * s * (1.0f + g * (1.0f - s));
        c->du[i] = c->dy[i] * g * s;
    }
}

void op_swiglu_fwd(pool *p, float *y, const float *g, const float *u, int64_t n) {
    ew_ctx c = {.y = y, .g = g, .u = u};
    ops_parallel(p, n, swiglu_f, &c);
}

void op_swiglu_bwd(pool *p, float *dg, float *du, const float *dy, const float *g,
                   const float *u, int64_t n) {
    ew_ctx c = {.dg = dg, .du = du, .dy = dy, .g = g, .u = u};
    ops_parallel(p, n, swiglu_b, &c);
}

/* ============================================================ RoPE ===== */

typedef struct rope_ctx {
    float *x;
    int t, heads, hd, n_rot;
    float base;
    int64_t stride;
    float sign; /* +1 forward, -1 backward (rotate by -angle) */
} rope_ctx;

static void rope_rows(void *arg, int64_t lo, int64_t hi) {
    const rope_ctx *c = arg;
    for (int64_t r = lo; r < hi; r++) {
        const int pos = (int)(r % c->t);
        float *row = c->x + r * c->stride;
        for (int i = 0; i < c->n_rot / 2; i++) {
            const double th = pos * pow((double)c->base, -2.0 * i / c->n_rot);
            const float cs = (float)cos(th), sn = c->sign * (float)sin(th);
            for (int h = 0; h < c->heads; h++) {
                float *v = row + (size_t)h * c->hd;
                const float x0 = v[2 * i], x1 = v[2 * i + 1];
                v[2 * i] = x0 * cs - x1 * sn;
                v[2 * i + 1] = x0 * sn + x1 * cs;
            }
        }
    }
}

void op_rope_fwd(pool *p, float *x, int64_t n, int t, int heads, int hd, int n_rot, float base,
                 int64_t stride) {
    rope_ctx c = {x, t, heads, hd, n_rot, base, stride, 1.0f};
    ops_parallel(p, n, rope_rows, &c);
}

void op_rope_bwd(pool *p, float *dx, int64_t n, int t, int heads, int hd, int n_rot, float base,
                 int64_t stride) {
    rope_ctx c = {dx, t, heads, hd, n_rot, base, stride, -1.0f};
    ops_parallel(p, n, rope_rows, &c);
}

/* ============================================================ attention ===== */

typedef struct attn_ctx {
    const op_attn_shape *s;
    float *out, *probs, *dq, *dk, *dv;
    const float *q, *k, *v, *dout, *cprobs;
} attn_ctx;

/* Masked softmax of row i of S (t keys) of a sequence with len valid positions. */
static void masked_softmax(float *row, int i, int t, int len, bool causal) {
    if (i >= len) {
        memset(row, 0, (size_t)t * sizeof(float));
        return;
    }
    const int nk = causal ? i + 1 : len;
    float mx = -INFINITY;
    for (int j = 0; j < nk; j++) mx = row[j] > mx ? row[j] : mx;
    double sum = 0;
    for (int j = 0; j < nk; j++) sum += row[j] = expf(row[j] - mx);
    const float inv = (float)(1.0 / sum);
    for (int j = 0; j < nk; j++) row[j] *= inv;
    for (int j = nk; j < t; j++) row[j] = 0.0f;
}

static void attn_fwd_items(void *arg, int64_t lo, int64_t hi) {
    const attn_ctx *c = arg;
    const op_attn_shape *s = c->s;
    const int t = s->t, hd = s->hd, group = s->hq / s->hkv;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int64_t it = lo; it < hi; it++) {
        const int b = (int)(it / s->hq), h = (int)(it % s->hq), kh = h / group;
        const float *q = c->q + (int64_t)b * t * s->q_stride + h * hd;
        const float *k = c->k + (int64_t)b * t * s->k_stride + kh * hd;
        const float *v = c->v + (int64_t)b * t * s->v_stride + kh * hd;
        float *P = c->probs + it * t * t, *o = c->out + (int64_t)b * t * s->o_stride + h * hd;
        gemm_args g1 = {t, t, hd, q, s->q_stride, 1, k, 1, s->k_stride, P, t, 0};
        gemm(NULL, &g1);
        for (int i = 0; i < t; i++) {
            for (int j = 0; j < t; j++) P[i * t + j] *= scale;
            masked_softmax(P + i * t, i, t, s->lens[b], s->causal);
        }
        gemm_args g2 = {t, hd, t, P, t, 1, v, s->v_stride, 1, o, s->o_stride, 0};
        gemm(NULL, &g2);
    }
}

void op_attn_fwd(pool *p, const op_attn_shape *s, float *out, float *probs, const float *q,
                 const float *k, const float *v) {
    attn_ctx c = {.s = s, .out = out, .probs = probs, .q = q, .k = k, .v = v};
    ops_parallel(p, (int64_t)s->b * s->hq, attn_fwd_items, &c);
}

/* One (sequence, kv head) with its group of query heads: dK and dV sum over the group in head
 * order, so no two items write the same rows. */
static void attn_bwd_items(void *arg, int64_t lo, int64_t hi) {
    const attn_ctx *c = arg;
    const op_attn_shape *s = c->s;
    const int t = s->t, hd = s->hd, group = s->hq / s->hkv;
    const float scale = 1.0f / sqrtf((float)hd);
    float *dS = malloc((size_t)t * t * sizeof(float));
    SH_ASSERT(dS);
    for (int64_t it = lo; it < hi; it++) {
        const int b = (int)(it / s->hkv), kh = (int)(it % s->hkv);
        const float *k = c->k + (int64_t)b * t * s->k_stride + kh * hd;
        const float *v = c->v + (int64_t)b * t * s->v_stride + kh * hd;
        float *dk = c->dk + (int64_t)b * t * s->k_stride + kh * hd;
        float *dv = c->dv + (int64_t)b * t * s->v_stride + kh * hd;
        for (int gi = 0; gi < group; gi++) {
            const int h = kh * group + gi;
            const float *q = c->q + (int64_t)b * t * s->q_stride + h * hd;
            const float *dO = c->dout + (int64_t)b * t * s->o_stride + h * hd;
            float *dq = c->dq + (int64_t)b * t * s->q_stride + h * hd;
            const float *P = c->cprobs + ((int64_t)b * s->hq + h) * t * t;
            /* dV (+)= P^T dO */
            gemm_args gv = {t, hd, t, P, 1, t, dO, s->o_stride, 1, dv, s->v_stride, gi > 0};
            gemm(NULL, &gv);
            /* dP = dO V^T, then dS = P (dP - rowsum(dP P)) * scale */
            gemm_args gp = {t, t, hd, dO, s->o_stride, 1, v, 1, s->v_stride, dS, t, 0};
            gemm(NULL, &gp);
            for (int i = 0; i < t; i++) {
                float *ds = dS + i * t;
                const float *pr = P + i * t;
                double dot = 0;
                for (int j = 0; j < t; j++) dot += (double)ds[j] * pr[j];
                for (int j = 0; j < t; j++) ds[j] = pr[j] * (ds[j] - (float)dot) * scale;
            }
            /* dQ = dS K; dK (+)= dS^T Q */
            gemm_args gq = {t, hd, t, dS, t, 1, k, s->k_stride, 1, dq, s->q_stride, 0};
            gemm(NULL, &gq);
            gemm_args gk = {t, hd, t, dS, 1, t, q, s->q_stride, 1, dk, s->k_stride, gi > 0};
            gemm(NULL, &gk);
        }
    }
    free(dS);
}

void op_attn_bwd(pool *p, const op_attn_shape *s, float *dq, float *dk, float *dv,
                 const float *dout, const float *probs, const float *q, const float *k,
                 const float *v) {
    attn_ctx c = {.s = s, .dq = dq, .dk = dk, .dv = dv, .dout = dout, .cprobs = probs, .q = q,
                  .k = k, .v = v};
    ops_parallel(p, (int64_t)s->b * s->hkv, attn_bwd_items, &c);
}

/* ============================================================ embeddings ===== */

void op_embed_fwd(float *y, const float *table, const int32_t *ids, int64_t n, int d) {
    for (int64_t i = 0; i < n; i++) memcpy(y + i * d, table + (int64_t)ids[i] * d, (size_t)d * sizeof(float));
}

typedef struct emb_ctx {
    float *dt;
    const float *dy;
    const int32_t *ids;
    int64_t n;
    int d;
} emb_ctx;

static void embed_cols(void *arg, int64_t lo, int64_t hi) {
    const emb_ctx *c = arg;
    for (int64_t i = 0; i < c->n; i++) {
        float *row = c->dt + (int64_t)c->ids[i] * c->d;
        const float *g = c->dy + i * c->d;
        for (int64_t k = lo; k < hi; k++) row[k] += g[k];
    }
}

void op_embed_bwd(pool *p, float *dtable, const float *dy, const int32_t *ids, int64_t n, int d) {
    emb_ctx c = {dtable, dy, ids, n, d};
    ops_parallel(p, d, embed_cols, &c);
}

/* ============================================================ losses ===== */

typedef struct xent_ctx {
    const float *logits;
    const int32_t *targets;
    float *dlogits, scale;
    double *loss;
    uint8_t *right;
    int c;
} xent_ctx;

static void xent_rows(void *arg, int64_t lo, int64_t hi) {
    const xent_ctx *x = arg;
    const int c = x->c;
    for (int64_t r = lo; r < hi; r++) {
        const float *l = x->logits + r * c;
        float *d = x->dlogits ? x->dlogits + r * c : NULL;
        const int32_t t = x->targets[r];
        x->loss[r] = 0;
        x->right[r] = 0;
        if (t < 0) {
            if (d) memset(d, 0, (size_t)c * sizeof(float));
            continue;
        }
        float mx = l[0];
        int best = 0;
        for (int k = 1; k < c; k++)
            if (l[k] > mx) mx = l[k], best = k;
        double sum = 0;
        for (int k = 0; k < c; k++) sum += exp((double)l[k] - mx);
        x->loss[r] = log(sum) - ((double)l[t] - mx);
        x->right[r] = best == t;
        if (d) {
            const double inv = 1.0 / sum;
            for (int k = 0; k < c; k++)
                d[k] = x->scale * ((float)(exp((double)l[k] - mx) * inv) - (k == t ? 1.0f : 0.0f));
        }
    }
}

double op_xent(pool *p, const float *logits, const int32_t *targets, int64_t n, int c,
               float *dlogits, float scale, int64_t *count, int64_t *correct) {
    double *loss = malloc((size_t)(n ? n : 1) * sizeof(double));
    uint8_t *right = malloc((size_t)(n ? n : 1));
    SH_ASSERT(loss && right);
    xent_ctx x = {logits, targets, dlogits, scale, loss, right, c};
    ops_parallel(p, n, xent_rows, &x);
    double total = 0;
    int64_t cnt = 0, ok = 0;
    for (int64_t r = 0; r < n; r++) {
        if (targets[r] < 0) continue;
        total += loss[r];
        cnt++;
        ok += right[r];
    }
    free(loss);
    free(right);
    if (count) *count = cnt;
    if (correct) *correct = ok;
    return total;
}

double op_infonce(const float *a, const float *b, int n, int d, float tau, float *da, float *db) {
    float *S = malloc((size_t)n * n * sizeof(float)), *G = malloc((size_t)n * n * sizeof(float));
    SH_ASSERT(S && G);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += (double)a[i * d + k] * b[j * d + k];
            S[i * n + j] = (float)(s / tau);
            G[i * n + j] = 0;
        }
    double loss = 0;
    /* rows: a_i against every b_j; columns: b_j against every a_i; each direction's mean */
    for (int dir = 0; dir < 2; dir++)
        for (int i = 0; i < n; i++) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < n; j++) mx = fmax(mx, dir ? S[j * n + i] : S[i * n + j]);
            for (int j = 0; j < n; j++) sum += exp((dir ? S[j * n + i] : S[i * n + j]) - mx);
            loss += log(sum) + mx - S[i * n + i];
            for (int j = 0; j < n; j++) {
                const double pr = exp((dir ? S[j * n + i] : S[i * n + j]) - mx) / sum;
                G[dir ? j * n + i : i * n + j] += (float)((pr - (i == j)) / (2.0 * n));
            }
        }
    for (int i = 0; i < n * d; i++) da[i] = db[i] = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            const float g = G[i * n + j] / tau;
            if (g == 0) continue;
            for (int k = 0; k < d; k++) {
                da[i * d + k] += g * b[j * d + k];
                db[j * d + k] += g * a[i * d + k];
            }
        }
    free(S);
    free(G);
    return loss / (2.0 * n);
}

void op_l2norm_fwd(float *y, float *norm, const float *x, int n, int d) {
    for (int i = 0; i < n; i++) {
        double ss = 0;
        for (int k = 0; k < d; k++) ss += (double)x[i * d + k] * x[i * d + k];
        const float nr = (float)sqrt(ss > 1e-24 ? ss : 1e-24);
        norm[i] = nr;
        for (int k = 0; k < d; k++) y[i * d + k] = x[i * d + k] / nr;
    }
}

void op_l2norm_bwd(float *dx, const float *dy, const float *y, const float *norm, int n, int d) {
    for (int i = 0; i < n; i++) {
        double dot = 0;
        for (int k = 0; k < d; k++) dot += (double)y[i * d + k] * dy[i * d + k];
        for (int k = 0; k < d; k++) dx[i * d + k] = (dy[i * d + k] - y[i * d + k] * (float)dot) / norm[i];
    }
}
