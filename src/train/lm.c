/*
 * train/lm — see lm.h. attn_q, attn_k and attn_v are added one after the other (all rows of
 * dim), so together they are one [(heads + 2 kv_heads) head_dim x dim] matrix; ffn_gate and
 * ffn_up likewise form one [2 ffn x dim] matrix. Each layer's input projections are then one
 * product each.
 */
#include "train/lm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/ops.h"

typedef struct llayer {
    int an, q, o, fn, gate, down;       /* parameter indices (q: q|k|v, gate: gate|up) */
    float *h, *r1, *qkv, *att, *probs, *xm, *h2, *r2, *gu, *a;
} llayer;

struct tlm {
    tlm_cfg c;
    tparams P;
    int tok, onorm, out;
    llayer *L;
    int max_tokens, max_seqs, max_t, hd, qkv_dim;
    float **xs;                         /* [layers + 1][T][dim] */
    float *hf, *rf, *logits;
    float *dx, *dh, *dqkv, *datt, *dgu, *da, *dlog;
    bool add_failed;
    const tlm_batch *b;
};

const tlm_cfg *tlm_config(const tlm *m) { return &m->c; }
tparams *tlm_params(tlm *m) { return &m->P; }

static int add(tlm *m, const char *name, int64_t ne0, int64_t ne1, bool decay, tinit init) {
    const int i = tparams_add(&m->P, name, ne0, ne1, decay, init, m->c.init_std);
    if (i < 0) m->add_failed = true;
    return i < 0 ? 0 : i;
}

tlm *tlm_init(const tlm_cfg *c, int max_tokens, int max_seqs, int max_t, uint64_t seed, sh_err *err) {
    if (c->dim < 2 || c->layers < 1 || c->heads < 1 || c->dim % c->heads || c->kv_heads < 1 ||
        c->heads % c->kv_heads || c->ffn < 1 || c->vocab < 2 || (c->dim / c->heads) % 2 ||
        max_tokens < 1 || max_seqs < 1 || max_t < 1)
        return sh_errf(err, "LM shape out of range (dim %d, heads %d, kv heads %d, layers %d)", c->dim,
                       c->heads, c->kv_heads, c->layers), NULL;
    tlm *m = calloc(1, sizeof *m);
    if (!m) return sh_errf(err, "out of memory"), NULL;
    m->c = *c;
    const int d = c->dim, f = c->ffn, hd = d / c->heads;
    m->hd = hd;
    m->qkv_dim = (c->heads + 2 * c->kv_heads) * hd;
    m->tok = add(m, "token_embd.weight", d, c->vocab, false, TINIT_NORMAL);
    m->L = calloc((size_t)c->layers, sizeof *m->L);
    if (!m->L) goto oom;
    char nm[96];
#define P(suffix, ne0, ne1, decay, init) (snprintf(nm, sizeof nm, "blk.%d." suffix, l), add(m, nm, ne0, ne1, decay, init))
    for (int l = 0; l < c->layers; l++) {
        llayer *y = &m->L[l];
        y->an = P("attn_norm.weight", d, 1, false, TINIT_ONES);
        y->q = P("attn_q.weight", d, c->heads * hd, true, TINIT_NORMAL);
        P("attn_k.weight", d, c->kv_heads * hd, true, TINIT_NORMAL);
        P("attn_v.weight", d, c->kv_heads * hd, true, TINIT_NORMAL);
        y->o = P("attn_output.weight", c->heads * hd, d, true, TINIT_NORMAL);
        y->fn = P("ffn_norm.weight", d, 1, false, TINIT_ONES);
        y->gate = P("ffn_gate.weight", d, f, true, TINIT_NORMAL);
        P("ffn_up.weight", d, f, true, TINIT_NORMAL);
        y->down = P("ffn_down.weight", f, d, true, TINIT_NORMAL);
    }
#undef P
    m->onorm = add(m, "output_norm.weight", d, 1, false, TINIT_ONES);
    m->out = c->tied ? m->tok : add(m, "output.weight", d, c->vocab, true, TINIT_NORMAL);
    if (m->add_failed) goto oom;
    if (tparams_alloc(&m->P, seed, err)) {
        tlm_free(m);
        return NULL;
    }
    m->max_tokens = max_tokens;
    m->max_seqs = max_seqs;
    m->max_t = max_t;
    const size_t T = (size_t)max_tokens;
    bool ok = true;
#define ALLOC(ptr, n) do { (ptr) = calloc((n), sizeof *(ptr)); ok = ok && (ptr); } while (0)
    m->xs = calloc((size_t)c->layers + 1, sizeof *m->xs);
    ok = ok && m->xs;
    for (int l = 0; ok && l <= c->layers; l++) ALLOC(m->xs[l], T * d);
    for (int l = 0; ok && l < c->layers; l++) {
        llayer *y = &m->L[l];
        ALLOC(y->h, T * d);
        ALLOC(y->r1, T);
        ALLOC(y->qkv, T * m->qkv_dim);
        ALLOC(y->att, T * c->heads * hd);
        ALLOC(y->probs, (size_t)c->heads * T * max_t);
        ALLOC(y->xm, T * d);
        ALLOC(y->h2, T * d);
        ALLOC(y->r2, T);
        ALLOC(y->gu, T * 2 * f);
        ALLOC(y->a, T * f);
    }
    ALLOC(m->hf, T * d);
    ALLOC(m->rf, T);
    ALLOC(m->logits, T * c->vocab);
    ALLOC(m->dx, T * d);
    ALLOC(m->dh, T * d);
    ALLOC(m->dqkv, T * m->qkv_dim);
    ALLOC(m->datt, T * c->heads * hd);
    ALLOC(m->dgu, T * 2 * f);
    ALLOC(m->da, T * f);
    ALLOC(m->dlog, T * c->vocab);
#undef ALLOC
    if (!ok) goto oom;
    return m;
oom:
    sh_errf(err, "out of memory for the LM's activations (%d tokens)", max_tokens);
    tlm_free(m);
    return NULL;
}

void tlm_free(tlm *m) {
    if (!m) return;
    for (int l = 0; m->xs && l <= m->c.layers; l++) free(m->xs[l]);
    free(m->xs);
    for (int l = 0; m->L && l < m->c.layers; l++) {
        llayer *y = &m->L[l];
        float *bufs[] = {y->h, y->r1, y->qkv, y->att, y->probs, y->xm, y->h2, y->r2, y->gu, y->a};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    }
    free(m->L);
    float *bufs[] = {m->hf, m->rf, m->logits, m->dx, m->dh, m->dqkv, m->datt, m->dgu, m->da, m->dlog};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    tparams_free(&m->P);
    free(m);
}

/* gate | up rows as [n][2 f] -> their two halves for the element-wise op, and back */
typedef struct split_ctx {
    float *a, *dgu;
    const float *gu, *da;
    int f;
} split_ctx;

static void swiglu_rows(void *arg, int64_t lo, int64_t hi) {
    const split_ctx *c = arg;
    for (int64_t r = lo; r < hi; r++)
        op_swiglu_fwd(NULL, c->a + r * c->f, c->gu + r * 2 * c->f, c->gu + r * 2 * c->f + c->f, c->f);
}

static void swiglu_bwd_rows(void *arg, int64_t lo, int64_t hi) {
    const split_ctx *c = arg;
    for (int64_t r = lo; r < hi; r++)
        op_swiglu_bwd(NULL, c->dgu + r * 2 * c->f, c->dgu + r * 2 * c->f + c->f, c->da + r * c->f,
                      c->gu + r * 2 * c->f, c->gu + r * 2 * c->f + c->f, c->f);
}

static op_attn_shape attn_shape(const tlm *m, const tlm_batch *b) {
    const int hq = m->c.heads, hkv = m->c.kv_heads, hd = m->hd;
    return (op_attn_shape){.b = b->b, .t = b->t, .hq = hq, .hkv = hkv, .hd = hd, .lens = b->lens,
                           .causal = true, .q_stride = m->qkv_dim, .k_stride = m->qkv_dim,
                           .v_stride = m->qkv_dim, .o_stride = hq * hd};
}

int tlm_run(tlm *m, pool *p, const tlm_batch *b, bool backward, tlm_stats *st, sh_err *err) {
    const tlm_cfg *c = &m->c;
    const int d = c->dim, f = c->ffn, hq = c->heads, hkv = c->kv_heads, hd = m->hd, n = b->b * b->t;
    memset(st, 0, sizeof *st);
    if (b->b < 1 || b->t < 1 || n > m->max_tokens || b->b > m->max_seqs || b->t > m->max_t)
        return sh_errf(err, "batch of %d x %d tokens does not fit the trainer's buffers", b->b, b->t);
    for (int i = 0; i < n; i++)
        if (b->ids[i] < 0 || b->ids[i] >= c->vocab || b->targets[i] >= c->vocab)
            return sh_errf(err, "token id out of range at %d", i);
    m->b = b;
    tparams *P = &m->P;
    const op_attn_shape s = attn_shape(m, b);
    op_embed_fwd(m->xs[0], tp_w(P, m->tok), b->ids, n, d);
    for (int l = 0; l < c->layers; l++) {
        llayer *y = &m->L[l];
        const float *x = m->xs[l];
        op_rmsnorm_fwd(p, y->h, y->r1, x, tp_w(P, y->an), n, d, c->eps);
        op_linear_fwd(p, y->qkv, y->h, tp_w(P, y->q), NULL, n, d, m->qkv_dim);
        op_rope_fwd(p, y->qkv, n, b->t, hq, hd, hd, c->rope_base, m->qkv_dim);
        op_rope_fwd(p, y->qkv + hq * hd, n, b->t, hkv, hd, hd, c->rope_base, m->qkv_dim);
        op_attn_fwd(p, &s, y->att, y->probs, y->qkv, y->qkv + hq * hd, y->qkv + (hq + hkv) * hd);
        op_linear_fwd(p, y->xm, y->att, tp_w(P, y->o), NULL, n, hq * hd, d);
        for (size_t i = 0; i < (size_t)n * d; i++) y->xm[i] += x[i];
        op_rmsnorm_fwd(p, y->h2, y->r2, y->xm, tp_w(P, y->fn), n, d, c->eps);
        op_linear_fwd(p, y->gu, y->h2, tp_w(P, y->gate), NULL, n, d, 2 * f);
        split_ctx sc = {.a = y->a, .gu = y->gu, .f = f};
        ops_parallel(p, n, swiglu_rows, &sc);
        op_linear_fwd(p, m->xs[l + 1], y->a, tp_w(P, y->down), NULL, n, f, d);
        for (size_t i = 0; i < (size_t)n * d; i++) m->xs[l + 1][i] += y->xm[i];
    }
    op_rmsnorm_fwd(p, m->hf, m->rf, m->xs[c->layers], tp_w(P, m->onorm), n, d, c->eps);
    op_linear_fwd(p, m->logits, m->hf, tp_w(P, m->out), NULL, n, d, c->vocab);
    int64_t cnt = 0;
    for (int i = 0; i < n; i++) cnt += b->targets[i] >= 0;
    st->loss = op_xent(p, m->logits, b->targets, n, c->vocab, backward ? m->dlog : NULL,
                       cnt ? 1.0f / (float)cnt : 0.0f, &st->n, &st->correct);
    if (!backward || !cnt) return 0;

    float *dx = m->dx, *dh = m->dh;
    op_linear_bwd(p, dh, tp_g(P, m->out), NULL, m->dlog, m->hf, tp_w(P, m->out), n, d, c->vocab, false);
    op_rmsnorm_bwd(p, dx, tp_g(P, m->onorm), dh, m->xs[c->layers], m->rf, tp_w(P, m->onorm), n, d);
    for (int l = c->layers - 1; l >= 0; l--) {
        llayer *y = &m->L[l];
        /* x_out = xm + down(a): dxm = dx + ffn path */
        op_linear_bwd(p, m->da, tp_g(P, y->down), NULL, dx, y->a, tp_w(P, y->down), n, f, d, false);
        split_ctx sc = {.dgu = m->dgu, .gu = y->gu, .da = m->da, .f = f};
        ops_parallel(p, n, swiglu_bwd_rows, &sc);
        op_linear_bwd(p, dh, tp_g(P, y->gate), NULL, m->dgu, y->h2, tp_w(P, y->gate), n, d, 2 * f, false);
        op_rmsnorm_bwd(p, m->dqkv, tp_g(P, y->fn), dh, y->xm, y->r2, tp_w(P, y->fn), n, d); /* dqkv as scratch */
        for (size_t i = 0; i < (size_t)n * d; i++) dx[i] += m->dqkv[i];
        /* xm = x + o(att) */
        op_linear_bwd(p, m->datt, tp_g(P, y->o), NULL, dx, y->att, tp_w(P, y->o), n, hq * hd, d, false);
        op_attn_bwd(p, &s, m->dqkv, m->dqkv + hq * hd, m->dqkv + (hq + hkv) * hd, m->datt, y->probs, y->qkv,
                    y->qkv + hq * hd, y->qkv + (hq + hkv) * hd);
        op_rope_bwd(p, m->dqkv, n, b->t, hq, hd, hd, c->rope_base, m->qkv_dim);
        op_rope_bwd(p, m->dqkv + hq * hd, n, b->t, hkv, hd, hd, c->rope_base, m->qkv_dim);
        op_linear_bwd(p, dh, tp_g(P, y->q), NULL, m->dqkv, y->h, tp_w(P, y->q), n, d, m->qkv_dim, false);
        op_rmsnorm_bwd(p, m->datt, tp_g(P, y->an), dh, m->xs[l], y->r1, tp_w(P, y->an), n, d); /* datt as scratch */
        for (size_t i = 0; i < (size_t)n * d; i++) dx[i] += m->datt[i];
    }
    op_embed_bwd(p, tp_g(P, m->tok), dx, b->ids, n, d);
    return 0;
}

const float *tlm_logits(const tlm *m, int s, int i) {
    return m->logits + ((size_t)s * m->b->t + i) * m->c.vocab;
}
