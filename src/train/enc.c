/*
 * train/enc — see enc.h. Forward top to bottom, then the backward pass in reverse, every layer
 * through train/ops.h. The q, k, v weights (and biases) are added to the parameter table one
 * after the other, so together they are one [3 dim x dim] matrix: one product per layer.
 */
#include "train/enc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/ops.h"

typedef struct tlayer {
    int q, bq, o, bo, ln1w, ln1b, up, bup, down, bdown, ln2w, ln2b; /* parameter indices */
    float *qkv, *att, *probs, *r1, *x1, *ln1m, *ln1r, *u, *g, *r2, *ln2m, *ln2r;
} tlayer;

struct tenc {
    tenc_cfg c;
    tparams P;
    int tok, typ, pos, elnw, elnb, cls, clsb, tag, tagb;
    tlayer *L;
    int max_tokens, max_seqs, max_t;
    float drop;                 /* this run's dropout */
    uint64_t drop_key;
    float **xs;                 /* [layers + 1][T][dim]: layer inputs, then the output */
    float *e0, *elnm, *elnr;    /* embeddings before their norm, its stats */
    float *cls_x, *ilog, *tlog, *pooled, *emb, *enorm;
    float *dx, *dt2, *dqkv, *datt, *du, *dg, *dcls, *dint, *dtag, *dpool, *demb, *demb2;
    int *pos_ids;               /* [T] position of each token */
    bool add_failed;            /* a parameter could not be added (out of memory) */
    const tenc_batch *b;
};

const tenc_cfg *tenc_config(const tenc *m) { return &m->c; }
tparams *tenc_params(tenc *m) { return &m->P; }

/* ============================================================ setup ===== */

static int add(tenc *m, const char *name, int64_t ne0, int64_t ne1, bool decay, tinit init) {
    const int i = tparams_add(&m->P, name, ne0, ne1, decay, init, m->c.init_std);
    if (i < 0) m->add_failed = true;
    return i < 0 ? 0 : i;
}

tenc *tenc_init(const tenc_cfg *c, int max_tokens, int max_seqs, uint64_t seed, sh_err *err) {
    if (c->dim < 2 || c->layers < 1 || c->heads < 1 || c->dim % c->heads || c->ffn < 1 ||
        c->vocab < 1 || c->ctx < 2 || max_tokens < 1 || max_seqs < 1)
        return sh_errf(err, "encoder shape out of range (dim %d, heads %d, layers %d, ffn %d)", c->dim,
                       c->heads, c->layers, c->ffn), NULL;
    tenc *m = calloc(1, sizeof *m);
    if (!m) return sh_errf(err, "out of memory"), NULL;
    m->c = *c;
    const int d = c->dim, f = c->ffn;
    m->tok = add(m, "token_embd.weight", d, c->vocab, false, TINIT_NORMAL);
    m->typ = add(m, "token_types.weight", d, 2, false, TINIT_NORMAL);
    m->pos = add(m, "position_embd.weight", d, c->ctx, false, TINIT_NORMAL);
    m->elnw = add(m, "token_embd_norm.weight", d, 1, false, TINIT_ONES);
    m->elnb = add(m, "token_embd_norm.bias", d, 1, false, TINIT_ZEROS);
    m->L = calloc((size_t)c->layers, sizeof *m->L);
    if (!m->L) goto oom;
    char nm[96];
#define P(suffix, ne0, ne1, decay, init) (snprintf(nm, sizeof nm, "blk.%d." suffix, l), add(m, nm, ne0, ne1, decay, init))
    for (int l = 0; l < c->layers; l++) {
        tlayer *y = &m->L[l];
        y->q = P("attn_q.weight", d, d, true, TINIT_NORMAL);
        P("attn_k.weight", d, d, true, TINIT_NORMAL);
        P("attn_v.weight", d, d, true, TINIT_NORMAL);
        y->bq = P("attn_q.bias", d, 1, false, TINIT_ZEROS);
        P("attn_k.bias", d, 1, false, TINIT_ZEROS);
        P("attn_v.bias", d, 1, false, TINIT_ZEROS);
        y->o = P("attn_output.weight", d, d, true, TINIT_NORMAL);
        y->bo = P("attn_output.bias", d, 1, false, TINIT_ZEROS);
        y->ln1w = P("attn_output_norm.weight", d, 1, false, TINIT_ONES);
        y->ln1b = P("attn_output_norm.bias", d, 1, false, TINIT_ZEROS);
        y->up = P("ffn_up.weight", d, f, true, TINIT_NORMAL);
        y->bup = P("ffn_up.bias", f, 1, false, TINIT_ZEROS);
        y->down = P("ffn_down.weight", f, d, true, TINIT_NORMAL);
        y->bdown = P("ffn_down.bias", d, 1, false, TINIT_ZEROS);
        y->ln2w = P("layer_output_norm.weight", d, 1, false, TINIT_ONES);
        y->ln2b = P("layer_output_norm.bias", d, 1, false, TINIT_ZEROS);
    }
#undef P
    m->cls = m->clsb = m->tag = m->tagb = -1;
    if (c->n_intents) {
        m->cls = add(m, "cls.output.weight", d, c->n_intents, true, TINIT_NORMAL);
        m->clsb = add(m, "cls.output.bias", c->n_intents, 1, false, TINIT_ZEROS);
    }
    if (c->n_tags) {
        m->tag = add(m, "shoal.token_cls.output.weight", d, c->n_tags, true, TINIT_NORMAL);
        m->tagb = add(m, "shoal.token_cls.output.bias", c->n_tags, 1, false, TINIT_ZEROS);
    }
    if (m->add_failed) goto oom;
    if (tparams_alloc(&m->P, seed, err)) {
        tenc_free(m);
        return NULL;
    }
    m->max_tokens = max_tokens;
    m->max_seqs = max_seqs;
    m->max_t = c->ctx < max_tokens ? c->ctx : max_tokens;
    const size_t T = (size_t)max_tokens, S = (size_t)max_seqs;
    bool ok = true;
#define ALLOC(ptr, n) do { (ptr) = calloc((n), sizeof *(ptr)); ok = ok && (ptr); } while (0)
    m->xs = calloc((size_t)c->layers + 1, sizeof *m->xs);
    ok = ok && m->xs;
    for (int l = 0; ok && l <= c->layers; l++) ALLOC(m->xs[l], T * d);
    for (int l = 0; ok && l < c->layers; l++) {
        tlayer *y = &m->L[l];
        ALLOC(y->qkv, T * 3 * d);
        ALLOC(y->att, T * d);
        ALLOC(y->probs, (size_t)c->heads * T * m->max_t);
        ALLOC(y->r1, T * d);
        ALLOC(y->x1, T * d);
        ALLOC(y->ln1m, T);
        ALLOC(y->ln1r, T);
        ALLOC(y->u, T * f);
        ALLOC(y->g, T * f);
        ALLOC(y->r2, T * d);
        ALLOC(y->ln2m, T);
        ALLOC(y->ln2r, T);
    }
    ALLOC(m->e0, T * d);
    ALLOC(m->elnm, T);
    ALLOC(m->elnr, T);
    ALLOC(m->cls_x, S * d);
    ALLOC(m->ilog, S * (c->n_intents ? c->n_intents : 1));
    ALLOC(m->tlog, T * (c->n_tags ? c->n_tags : 1));
    ALLOC(m->pooled, S * d);
    ALLOC(m->emb, S * d);
    ALLOC(m->enorm, S);
    ALLOC(m->dx, T * d);
    ALLOC(m->dt2, T * d);
    ALLOC(m->dqkv, T * 3 * d);
    ALLOC(m->datt, T * d);
    ALLOC(m->du, T * f);
    ALLOC(m->dg, T * f);
    ALLOC(m->dcls, S * d);
    ALLOC(m->dint, S * (c->n_intents ? c->n_intents : 1));
    ALLOC(m->dtag, T * (c->n_tags ? c->n_tags : 1));
    ALLOC(m->dpool, S * d);
    ALLOC(m->demb, S * d);
    ALLOC(m->demb2, S * d);
    ALLOC(m->pos_ids, T);
#undef ALLOC
    if (!ok) goto oom;
    return m;
oom:
    sh_errf(err, "out of memory for the encoder's activations (%d tokens)", max_tokens);
    tenc_free(m);
    return NULL;
}

void tenc_free(tenc *m) {
    if (!m) return;
    for (int l = 0; m->xs && l <= m->c.layers; l++) free(m->xs[l]);
    free(m->xs);
    for (int l = 0; m->L && l < m->c.layers; l++) {
        tlayer *y = &m->L[l];
        float *bufs[] = {y->qkv, y->att, y->probs, y->r1, y->x1, y->ln1m, y->ln1r, y->u, y->g, y->r2, y->ln2m, y->ln2r};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    }
    free(m->L);
    float *bufs[] = {m->e0, m->elnm, m->elnr, m->cls_x, m->ilog, m->tlog, m->pooled, m->emb, m->enorm,
                     m->dx, m->dt2, m->dqkv, m->datt, m->du, m->dg, m->dcls, m->dint, m->dtag,
                     m->dpool, m->demb, m->demb2};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(m->pos_ids);
    tparams_free(&m->P);
    free(m);
}

/* ============================================================ dropout ===== */

/* Dropout without stored masks: value i of site `site` is kept when a hash of (key, site, i)
 * is above the threshold, so the backward pass recomputes the same mask; the same on any
 * thread count. Kept values are scaled by 1 / (1 - p). */
typedef struct dmask {
    uint64_t key;
    uint32_t thr;               /* drop when hash24 < thr */
    float scale;
} dmask;

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static dmask dmask_at(const tenc *m, int site) {
    const float p = m->drop;
    return (dmask){mix64(m->drop_key ^ (0x9e3779b97f4a7c15ull * (uint64_t)(site + 1))),
                   (uint32_t)(p * 16777216.0f), p > 0 ? 1.0f / (1.0f - p) : 1.0f};
}

/* v[i] *= mask(i) over n values (forward and backward alike). */
static void dmask_apply(const tenc *m, int site, float *v, size_t n) {
    if (m->drop <= 0) return;
    const dmask k = dmask_at(m, site);
    for (size_t i = 0; i < n; i++)
        v[i] = (uint32_t)(mix64(k.key + i) >> 40) < k.thr ? 0.0f : v[i] * k.scale;
}

/* ============================================================ forward ===== */

static void embed(tenc *m, pool *p, const tenc_batch *b) {
    const int d = m->c.dim, n = b->b * b->t;
    const tparams *P = &m->P;
    const float *tok = tp_w(P, m->tok), *typ = tp_w(P, m->typ), *pos = tp_w(P, m->pos);
    for (int i = 0; i < n; i++) {
        const int pp = i % b->t;
        m->pos_ids[i] = pp;
        float *e = m->e0 + (size_t)i * d;
        const float *te = tok + (size_t)b->ids[i] * d, *pe = pos + (size_t)pp * d;
        for (int k = 0; k < d; k++) e[k] = te[k] + typ[k] + pe[k];
    }
    op_layernorm_fwd(p, m->xs[0], m->elnm, m->elnr, m->e0, tp_w(P, m->elnw), tp_w(P, m->elnb), n, d, m->c.eps);
    dmask_apply(m, 0, m->xs[0], (size_t)n * d);
}

static void layer_fwd(tenc *m, pool *p, int l, const tenc_batch *b) {
    const int d = m->c.dim, f = m->c.ffn, n = b->b * b->t;
    const tparams *P = &m->P;
    tlayer *y = &m->L[l];
    const float *x = m->xs[l];
    op_linear_fwd(p, y->qkv, x, tp_w(P, y->q), tp_w(P, y->bq), n, d, 3 * d);
    op_attn_shape s = {.b = b->b, .t = b->t, .hq = m->c.heads, .hkv = m->c.heads, .hd = d / m->c.heads,
                       .lens = b->lens, .q_stride = 3 * d, .k_stride = 3 * d, .v_stride = 3 * d, .o_stride = d};
    op_attn_fwd(p, &s, y->att, y->probs, y->qkv, y->qkv + d, y->qkv + 2 * d);
    op_linear_fwd(p, y->r1, y->att, tp_w(P, y->o), tp_w(P, y->bo), n, d, d);
    dmask_apply(m, 1 + 2 * l, y->r1, (size_t)n * d);
    for (size_t i = 0; i < (size_t)n * d; i++) y->r1[i] += x[i];
    op_layernorm_fwd(p, y->x1, y->ln1m, y->ln1r, y->r1, tp_w(P, y->ln1w), tp_w(P, y->ln1b), n, d, m->c.eps);
    op_linear_fwd(p, y->u, y->x1, tp_w(P, y->up), tp_w(P, y->bup), n, d, f);
    op_gelu_fwd(p, y->g, y->u, (int64_t)n * f);
    op_linear_fwd(p, y->r2, y->g, tp_w(P, y->down), tp_w(P, y->bdown), n, f, d);
    dmask_apply(m, 2 + 2 * l, y->r2, (size_t)n * d);
    for (size_t i = 0; i < (size_t)n * d; i++) y->r2[i] += y->x1[i];
    op_layernorm_fwd(p, m->xs[l + 1], y->ln2m, y->ln2r, y->r2, tp_w(P, y->ln2w), tp_w(P, y->ln2b), n, d, m->c.eps);
}

/* ============================================================ backward ===== */

/* dx holds the gradient of the layer's output; afterwards, of its input. */
static void layer_bwd(tenc *m, pool *p, int l, const tenc_batch *b) {
    const int d = m->c.dim, f = m->c.ffn, n = b->b * b->t;
    tparams *P = &m->P;
    tlayer *y = &m->L[l];
    float *dx = m->dx, *dr = m->dt2;
    /* x_out = LN2(r2): dr2 */
    op_layernorm_bwd(p, dr, tp_g(P, y->ln2w), tp_g(P, y->ln2b), dx, y->r2, y->ln2m, y->ln2r, tp_w(P, y->ln2w), n, d);
    /* r2 = x1 + drop(down(g)): dx1 = dr2 + the branch's path */
    memcpy(dx, dr, (size_t)n * d * sizeof(float)); /* dx1 (residual) */
    dmask_apply(m, 2 + 2 * l, dr, (size_t)n * d);
    op_linear_bwd(p, m->dg, tp_g(P, y->down), tp_g(P, y->bdown), dr, y->g, tp_w(P, y->down), n, f, d, false);
    op_gelu_bwd(p, m->du, m->dg, y->u, (int64_t)n * f);
    op_linear_bwd(p, dx, tp_g(P, y->up), tp_g(P, y->bup), m->du, y->x1, tp_w(P, y->up), n, d, f, true);
    /* x1 = LN1(r1): dr1 */
    op_layernorm_bwd(p, dr, tp_g(P, y->ln1w), tp_g(P, y->ln1b), dx, y->r1, y->ln1m, y->ln1r, tp_w(P, y->ln1w), n, d);
    /* r1 = x_in + drop(o(att)) */
    memcpy(dx, dr, (size_t)n * d * sizeof(float)); /* dx_in (residual) */
    dmask_apply(m, 1 + 2 * l, dr, (size_t)n * d);
    op_linear_bwd(p, m->datt, tp_g(P, y->o), tp_g(P, y->bo), dr, y->att, tp_w(P, y->o), n, d, d, false);
    op_attn_shape s = {.b = b->b, .t = b->t, .hq = m->c.heads, .hkv = m->c.heads, .hd = d / m->c.heads,
                       .lens = b->lens, .q_stride = 3 * d, .k_stride = 3 * d, .v_stride = 3 * d, .o_stride = d};
    op_attn_bwd(p, &s, m->dqkv, m->dqkv + d, m->dqkv + 2 * d, m->datt, y->probs, y->qkv, y->qkv + d, y->qkv + 2 * d);
    op_linear_bwd(p, dx, tp_g(P, y->q), tp_g(P, y->bq), m->dqkv, m->xs[l], tp_w(P, y->q), n, d, 3 * d, true);
}

static void embed_bwd(tenc *m, pool *p, const tenc_batch *b) {
    const int d = m->c.dim, n = b->b * b->t;
    tparams *P = &m->P;
    dmask_apply(m, 0, m->dx, (size_t)n * d);
    op_layernorm_bwd(p, m->dt2, tp_g(P, m->elnw), tp_g(P, m->elnb), m->dx, m->e0, m->elnm, m->elnr, tp_w(P, m->elnw), n, d);
    op_embed_bwd(p, tp_g(P, m->tok), m->dt2, b->ids, n, d);
    op_embed_bwd(p, tp_g(P, m->pos), m->dt2, m->pos_ids, n, d);
    float *dtyp = tp_g(P, m->typ);
    for (int i = 0; i < n; i++) {
        const float *g = m->dt2 + (size_t)i * d;
        for (int k = 0; k < d; k++) dtyp[k] += g[k];
    }
}

/* ============================================================ the objective ===== */

int tenc_run(tenc *m, pool *p, const tenc_batch *b, const tenc_weights *w, bool backward,
             tenc_stats *st, sh_err *err) {
    const tenc_cfg *c = &m->c;
    const int d = c->dim, n = b->b * b->t;
    memset(st, 0, sizeof *st);
    if (b->b < 1 || b->t < 1 || n > m->max_tokens || b->b > m->max_seqs || b->t > m->max_t)
        return sh_errf(err, "batch of %d x %d tokens does not fit the trainer's buffers (%d tokens, %d "
                            "sequences, %d positions)", b->b, b->t, m->max_tokens, m->max_seqs, m->max_t);
    if (b->n_pairs * 2 > b->b) return sh_errf(err, "%d pairs need %d sequences", b->n_pairs, 2 * b->n_pairs);
    for (int s = 0; s < b->b; s++)
        if (b->lens[s] < 1 || b->lens[s] > b->t) return sh_errf(err, "sequence %d: length %d", s, b->lens[s]);
    for (int i = 0; i < n; i++)
        if (b->ids[i] < 0 || b->ids[i] >= c->vocab) return sh_errf(err, "token id %d out of range", b->ids[i]);
    m->b = b;
    m->drop = w->dropout > 0 ? w->dropout : 0;
    m->drop_key = w->drop_key;
    tparams *P = &m->P;
    embed(m, p, b);
    for (int l = 0; l < c->layers; l++) layer_fwd(m, p, l, b);
    const float *x = m->xs[c->layers];
    if (backward) memset(m->dx, 0, (size_t)n * d * sizeof(float));

    /* intent on [CLS] */
    if (c->n_intents) {
        for (int s = 0; s < b->b; s++) memcpy(m->cls_x + (size_t)s * d, x + (size_t)s * b->t * d, (size_t)d * sizeof(float));
        op_linear_fwd(p, m->ilog, m->cls_x, tp_w(P, m->cls), tp_w(P, m->clsb), b->b, d, c->n_intents);
        if (b->intent) {
            int64_t cnt = 0;
            for (int s = 0; s < b->b; s++) cnt += b->intent[s] >= 0;
            const float scale = cnt ? w->intent / (float)cnt : 0;
            st->intent_loss = op_xent(p, m->ilog, b->intent, b->b, c->n_intents, backward ? m->dint : NULL,
                                      scale, &st->n_intent, &st->ok_intent);
            if (cnt) st->loss += w->intent * st->intent_loss / (double)cnt;
            if (backward && cnt) {
                op_linear_bwd(p, m->dcls, tp_g(P, m->cls), tp_g(P, m->clsb), m->dint, m->cls_x, tp_w(P, m->cls), b->b, d, c->n_intents, false);
                for (int s = 0; s < b->b; s++) {
                    float *dr = m->dx + (size_t)s * b->t * d;
                    const float *g = m->dcls + (size_t)s * d;
                    for (int k = 0; k < d; k++) dr[k] += g[k];
                }
            }
        }
    }
    /* tags per token */
    if (c->n_tags) {
        op_linear_fwd(p, m->tlog, x, tp_w(P, m->tag), tp_w(P, m->tagb), n, d, c->n_tags);
        if (b->tags) {
            int64_t cnt = 0;
            for (int i = 0; i < n; i++) cnt += b->tags[i] >= 0;
            const float scale = cnt ? w->tags / (float)cnt : 0;
            st->tag_loss = op_xent(p, m->tlog, b->tags, n, c->n_tags, backward ? m->dtag : NULL, scale,
                                   &st->n_tag, &st->ok_tag);
            if (cnt) st->loss += w->tags * st->tag_loss / (double)cnt;
            if (backward && cnt)
                op_linear_bwd(p, m->dx, tp_g(P, m->tag), tp_g(P, m->tagb), m->dtag, x, tp_w(P, m->tag), n, d, c->n_tags, true);
        }
    }
    /* mean-pooled unit embeddings, and InfoNCE on the pairs */
    for (int s = 0; s < b->b; s++) {
        float *pl = m->pooled + (size_t)s * d;
        memset(pl, 0, (size_t)d * sizeof(float));
        for (int i = 0; i < b->lens[s]; i++) {
            const float *r = x + ((size_t)s * b->t + i) * d;
            for (int k = 0; k < d; k++) pl[k] += r[k];
        }
        for (int k = 0; k < d; k++) pl[k] /= (float)b->lens[s];
    }
    op_l2norm_fwd(m->emb, m->enorm, m->pooled, b->b, d);
    if (b->n_pairs > 1 && w->nce > 0) {
        const int np = b->n_pairs;
        st->nce_loss = op_infonce(m->emb, m->emb + (size_t)np * d, np, d, w->tau, m->demb, m->demb + (size_t)np * d);
        st->loss += w->nce * st->nce_loss;
        if (backward) {
            for (size_t i = 0; i < (size_t)2 * np * d; i++) m->demb[i] *= w->nce;
            op_l2norm_bwd(m->dpool, m->demb, m->emb, m->enorm, 2 * np, d);
            for (int s = 0; s < 2 * np; s++) {
                const float *g = m->dpool + (size_t)s * d;
                const float inv = 1.0f / (float)b->lens[s];
                for (int i = 0; i < b->lens[s]; i++) {
                    float *dr = m->dx + ((size_t)s * b->t + i) * d;
                    for (int k = 0; k < d; k++) dr[k] += g[k] * inv;
                }
            }
        }
    }
    if (!backward) return 0;
    for (int l = c->layers - 1; l >= 0; l--) layer_bwd(m, p, l, b);
    embed_bwd(m, p, b);
    return 0;
}

const float *tenc_intent_logits(const tenc *m, int s) { return m->ilog + (size_t)s * m->c.n_intents; }

const float *tenc_tag_logits(const tenc *m, int s, int i) {
    return m->tlog + ((size_t)s * m->b->t + i) * m->c.n_tags;
}

const float *tenc_embedding(const tenc *m, int s) { return m->emb + (size_t)s * m->c.dim; }
