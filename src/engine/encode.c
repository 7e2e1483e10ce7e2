/*
 * engine/encode — see encode.h.
 *
 * Threading: one encode_run is one pool job. All threads run forward_thread() together; a
 * barrier separates phases that depend on each other. Matmul rows and attention items (one
 * input's one head) are taken from per-phase atomic counters (engine/mm.h); row-wise work
 * (LayerNorm, activation conversion) is split statically by token. Which thread computes a
 * value never changes it.
 */
#include "engine/encode.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/half.h"
#include "engine/attn.h"
#include "engine/ew.h"
#include "engine/mm.h"
#include "engine/pool.h"
#include "tensor/dtype.h"
#include "tensor/vecdot.h"

#define TOK_TILE 256 /* activation rows per work item: they stay in L2 while the rows pass */
#define ROW_TILE 64  /* weight rows per work item (a multiple of the packed groups' 16) */
#define QCHUNK 64 /* attention: queries whose scores are held at once */
#define N_ACT 3 /* activation buffers: one per distinct activation kind among a row's consumers */

struct encode_ctx {
    const encoder_model *m;   /* borrowed */
    encoder_hparams hp;
    encoder_pooling pooling;
    int n_tokens, n_seqs;
    pool *pool;
    const ew_ops *ew;
    const attn_ops *attn;

    /* activations, one row per token */
    float *x;                 /* [n_tokens][dim] the hidden state */
    float *tmp;               /* [n_tokens][dim] residual sums before LayerNorm */
    float *qkv;               /* [n_tokens][3 dim] q | k | v */
    float *att;               /* [n_tokens][dim] attention output */
    float *hb, *hg;           /* [n_tokens][ffn] FFN up (then its activation), gate */
    uint8_t *act[N_ACT];      /* [rows][act_row] activations converted for the kernels */
    size_t act_row;           /* bytes of one act row (largest act type, largest k) */
    int act_rows;             /* rows of each act buffer: max(n_tokens, n_seqs) */
    float *rope_cs;           /* nomic-bert: [n_ctx_train][n_rot] cos, sin per position */
    float *scratch;           /* [n_threads][scratch_n] attention: keys transposed, scores */
    int scratch_n;

    /* outputs */
    float *pooled;            /* [n_seqs][dim] */
    float *head_tmp;          /* [max(n_tokens, n_seqs)][dim] a head's dense + tanh output */
    float *seq_logits;        /* [n_seqs][seq_head.n_out] */
    float *tok_logits;        /* [n_tokens][tok_head.n_out] */

    atomic_llong *counters;   /* [n_phases] work counters of one pass */
    int n_phases;
    int *seq_start;           /* [n_seqs + 1] first token of each input */
    int *tok_seq;             /* [n_tokens] input of each token */
    int *first_tok;           /* [n_seqs] token index the sequence head reads */

    /* the current batch (valid during encode_run) */
    const encode_batch *b;
    const encoder_layer *ly;  /* the layer being computed (attention reads its biases) */
    int n;                    /* tokens of the batch */
    int last_n, last_seqs;    /* of the last completed batch */
    unsigned last_want;
};

/* ============================================================ setup ===== */

void encode_params_default(encode_params *p) {
    memset(p, 0, sizeof *p);
    p->pooling = -1;
}

static size_t act_bytes(const model_mat *w) {
    if (!w->n_rows) return 0;
    const vecdot_kernel *k = vecdot_get(w->type);
    SH_ASSERT(k != NULL); /* the loader checked it */
    return vecdot_act_row_bytes(k->act_type, w->n_cols);
}

static int max_i(int a, int b) { return a > b ? a : b; }

encode_ctx *encode_init(const encoder_model *m, const encode_params *pin, sh_err *err) {
    encode_params p = *pin;
    const encoder_hparams *hp = &m->hp;
    if (p.n_tokens <= 0) p.n_tokens = 2048;
    if (p.n_tokens < hp->n_ctx_train) p.n_tokens = hp->n_ctx_train;
    if (p.n_seqs <= 0) p.n_seqs = 256;
    if (p.n_seqs > p.n_tokens) p.n_seqs = p.n_tokens;
    if (p.n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        p.n_threads = n > 0 ? (int)n : 1;
    }
    if (p.n_tokens > (1 << 20) || p.n_seqs > 65536 || p.n_threads > 512 || p.pooling > 4) {
        sh_errf(err, "encoder parameters out of range (tokens %d, inputs %d, threads %d)",
                p.n_tokens, p.n_seqs, p.n_threads);
        return NULL;
    }
    encode_ctx *e = calloc(1, sizeof *e);
    if (!e) {
        sh_errf(err, "out of memory");
        return NULL;
    }
    e->m = m;
    e->hp = *hp;
    e->pooling = p.pooling >= 0 ? (encoder_pooling)p.pooling : hp->pooling;
    e->n_tokens = p.n_tokens;
    e->n_seqs = p.n_seqs;
    e->ew = ew_get();
    e->attn = attn_get();

    size_t act_row = 0;
    for (int l = 0; l < hp->n_layers; l++) {
        const encoder_layer *ly = &m->layers[l];
        const model_mat *ws[] = {&ly->wq,   &ly->wk,     &ly->wv,    &ly->wqkv,
                                 &ly->wo,   &ly->w_up,   &ly->w_gate, &ly->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if (act_bytes(ws[i]) > act_row) act_row = act_bytes(ws[i]);
    }
    const model_mat *hs[] = {&m->seq_head.dense, &m->seq_head.out, &m->tok_head.dense,
                             &m->tok_head.out};
    for (size_t i = 0; i < 4; i++)
        if (act_bytes(hs[i]) > act_row) act_row = act_bytes(hs[i]);
    e->act_row = (act_row + 63) & ~(size_t)63;
    e->act_rows = max_i(p.n_tokens, p.n_seqs);
    const int np = (hp->n_ctx_train + 15) & ~15;
    e->scratch_n = (hp->head_dim + QCHUNK) * np;
    e->n_phases = 5 * hp->n_layers + 8;

    const size_t T = (size_t)p.n_tokens, S = (size_t)p.n_seqs, dim = (size_t)hp->dim;
    const size_t R = (size_t)e->act_rows;
    e->x = malloc(T * dim * sizeof(float));
    e->tmp = malloc(T * dim * sizeof(float));
    e->qkv = malloc(T * 3 * dim * sizeof(float));
    e->att = malloc(T * dim * sizeof(float));
    e->hb = malloc(T * (size_t)hp->ffn * sizeof(float));
    e->hg = hp->arch == ENCODER_NOMIC_BERT ? malloc(T * (size_t)hp->ffn * sizeof(float)) : NULL;
    bool ok = e->x && e->tmp && e->qkv && e->att && e->hb &&
              (e->hg || hp->arch != ENCODER_NOMIC_BERT);
    for (int i = 0; i < N_ACT; i++) ok = ok && (e->act[i] = aligned_alloc(64, R * e->act_row));
    if (hp->arch == ENCODER_NOMIC_BERT) {
        e->rope_cs = malloc((size_t)hp->n_ctx_train * (size_t)hp->n_rot * sizeof(float));
        ok = ok && e->rope_cs;
        for (int pos = 0; ok && pos < hp->n_ctx_train; pos++)
            ew_rope_angles(e->rope_cs + (size_t)pos * hp->n_rot, pos, hp->n_rot, hp->rope_base,
                           1.0f, NULL);
    }
    e->scratch = malloc((size_t)p.n_threads * e->scratch_n * sizeof(float));
    e->pooled = malloc(S * dim * sizeof(float));
    e->head_tmp = malloc(R * dim * sizeof(float));
    e->seq_logits = malloc(S * (size_t)max_i(m->seq_head.n_out, 1) * sizeof(float));
    e->tok_logits = malloc(T * (size_t)max_i(m->tok_head.n_out, 1) * sizeof(float));
    e->counters = calloc((size_t)e->n_phases, sizeof *e->counters);
    e->seq_start = malloc((S + 1) * sizeof(int));
    e->tok_seq = malloc(T * sizeof(int));
    e->first_tok = malloc(S * sizeof(int));
    ok = ok && e->scratch && e->pooled && e->head_tmp && e->seq_logits && e->tok_logits &&
         e->counters && e->seq_start && e->tok_seq && e->first_tok;
    if (!ok) {
        sh_errf(err, "out of memory allocating the encoder for %d tokens", p.n_tokens);
        encode_free(e);
        return NULL;
    }
    if (!(e->pool = pool_shared(p.n_threads))) {
        sh_errf(err, "cannot start %d threads", p.n_threads);
        encode_free(e);
        return NULL;
    }
    return e;
}

void encode_free(encode_ctx *e) {
    if (!e) return;
    pool_free(e->pool);
    free(e->x);
    free(e->tmp);
    free(e->qkv);
    free(e->att);
    free(e->hb);
    free(e->hg);
    for (int i = 0; i < N_ACT; i++) free(e->act[i]);
    free(e->rope_cs);
    free(e->scratch);
    free(e->pooled);
    free(e->head_tmp);
    free(e->seq_logits);
    free(e->tok_logits);
    free(e->counters);
    free(e->seq_start);
    free(e->tok_seq);
    free(e->first_tok);
    free(e);
}

encoder_pooling encode_pooling(const encode_ctx *e) { return e->pooling; }
const encoder_model *encode_model(const encode_ctx *e) { return e->m; }
int encode_n_tokens(const encode_ctx *e) { return e->n_tokens; }
int encode_n_seqs(const encode_ctx *e) { return e->n_seqs; }
int encode_n_threads(const encode_ctx *e) { return pool_threads(e->pool); }

/* ============================================================ activations ===== */

/* How a matrix wants its activation rows: the kernel's act type, and for 16-bit float weights
 * the rounding llama.cpp applies by converting the activations to the weight's type. */
static int act_kind(const model_mat *w) {
    const vecdot_kernel *k = vecdot_get(w->type);
    int round = w->type == DT_F16 ? 1 : w->type == DT_BF16 ? 2 : 0;
    return (int)k->act_type * 4 + round;
}

/* For consumers ws[0..n): slot[i] is the act buffer holding row conversions for ws[i] (a
 * matrix shares the buffer of an earlier one with the same kind). */
static void act_slots(const model_mat *const *ws, int n, int *slot) {
    SH_ASSERT(n <= N_ACT);
    for (int i = 0; i < n; i++) {
        slot[i] = i;
        for (int j = 0; j < i; j++)
            if (act_kind(ws[j]) == act_kind(ws[i])) {
                slot[i] = slot[j];
                break;
            }
    }
}

/* Converts one float row into act row `row` of every distinct slot of the consumers. */
static void convert_row(encode_ctx *e, const model_mat *const *ws, int n, const int *slot,
                        const float *src, int64_t row) {
    for (int i = 0; i < n; i++) {
        if (slot[i] != i) continue;
        const vecdot_kernel *k = vecdot_get(ws[i]->type);
        uint8_t *dst = e->act[i] + (size_t)row * e->act_row;
        vecdot_quantize_act(k->act_type, src, dst, ws[i]->n_cols);
        if (ws[i]->type == DT_F16 || ws[i]->type == DT_BF16) {
            float *f = (float *)dst;
            const bool h = ws[i]->type == DT_F16;
            for (int64_t c = 0; c < ws[i]->n_cols; c++)
                f[c] = h ? half_to_f32(half_from_f32(f[c])) : bf16_to_f32(bf16_from_f32(f[c]));
        }
    }
}

static const uint8_t *act_of(const encode_ctx *e, const int *slot, int i) {
    return e->act[slot[i]];
}

/* ============================================================ the forward pass ===== */

/* Attention of input s, head h (positions 0..n-1 of the input), into att. nomic-bert rotates
 * the head's q and k rows first (in place: this item is the only one touching them). The keys
 * are transposed once, then QCHUNK queries at a time: their scores, a softmax per row, the
 * weighted sum of the values. work holds head_dim * np + QCHUNK * np floats. */
static void attend(encode_ctx *e, int s, int h, float *work) {
    const encoder_hparams *hp = &e->hp;
    const int dim = hp->dim, hd = hp->head_dim, t0 = e->seq_start[s];
    const int n = e->seq_start[s + 1] - t0, np = (n + 15) & ~15;
    const size_t stride = 3 * (size_t)dim;
    float *q = e->qkv + (size_t)t0 * stride + (size_t)h * hd;
    float *k = q + dim;
    float *v = q + 2 * dim;
    const encoder_layer *ly = e->ly;
    const float *bs[3] = {ly->bq, ly->bk, ly->bv}; /* this head's slice of the biases */
    float *xs[3] = {q, k, v};
    for (int m = 0; m < 3; m++)
        for (int i = 0; bs[m] && i < n; i++) e->ew->add(xs[m] + i * stride, bs[m] + h * hd, NULL, hd);
    if (hp->arch == ENCODER_NOMIC_BERT)
        for (int i = 0; i < n; i++) {
            const float *cs = e->rope_cs + (size_t)i * hp->n_rot;
            e->ew->rope(q + i * stride, cs, hp->n_rot, 1);
            e->ew->rope(k + i * stride, cs, hp->n_rot, 1);
        }
    float *kt = work, *sc = work + (size_t)hd * np;
    for (int d = 0; d < hd; d++) {
        float *row = kt + (size_t)d * np;
        for (int j = 0; j < n; j++) row[j] = k[j * stride + d];
        for (int j = n; j < np; j++) row[j] = 0.0f;
    }
    const float scale = 1.0f / sqrtf((float)hd);
    for (int i0 = 0; i0 < n; i0 += QCHUNK) {
        const int nq = n - i0 < QCHUNK ? n - i0 : QCHUNK;
        e->attn->scores_f32(sc, np, q + i0 * stride, stride, kt, np, nq, hd, scale);
        for (int i = 0; i < nq; i++) e->ew->softmax(sc + (size_t)i * np, n);
        e->attn->wsum_rows_f32(e->att + (size_t)(t0 + i0) * dim + (size_t)h * hd, dim, sc, np, v,
                               stride, nq, n, hd);
    }
}

/* One matmul of a phase: w times the batch's activation rows in act, into out (row stride
 * `stride` floats). */
typedef struct mm_job {
    const model_mat *w;
    const uint8_t *act;
    float *out;
    int64_t stride;
} mm_job;


/* The matmuls of one phase, shared by the threads in items of ROW_TILE weight rows x TOK_TILE
 * activation rows, token tile by token tile (consecutive items share their activations). */
static void mm_phase(encode_ctx *e, atomic_llong *ctr, const mm_job *jobs, int nj, int n) {
    int64_t per_tile = 0, lo, hi;
    for (int j = 0; j < nj; j++) per_tile += (jobs[j].w->n_rows + ROW_TILE - 1) / ROW_TILE;
    const int64_t n_tc = (n + TOK_TILE - 1) / TOK_TILE;
    while (mm_grab(ctr, n_tc * per_tile, 1, &lo, &hi)) {
        const int64_t tc = lo / per_tile;
        int64_t rc = lo % per_tile;
        int j = 0;
        for (;; j++) {
            const int64_t c = (jobs[j].w->n_rows + ROW_TILE - 1) / ROW_TILE;
            if (rc < c) break;
            rc -= c;
        }
        const mm_job *J = &jobs[j];
        const int64_t r0 = rc * ROW_TILE, r1 = r0 + ROW_TILE < J->w->n_rows ? r0 + ROW_TILE : J->w->n_rows;
        const int64_t t0 = tc * TOK_TILE, nt = n - t0 < TOK_TILE ? n - t0 : TOK_TILE;
        mm_rows(J->w, J->act + (size_t)t0 * e->act_row, e->act_row, (int)nt, r0, r1,
                J->out + t0 * J->stride, J->stride);
    }
}

/* A head over n_rows gathered rows (src row i is rows[i] of x, or row i of x when rows is
 * NULL): optional dense + tanh, then the output matrix + bias into out [n_rows][n_out]. All
 * threads call it; phase is the next free counter. */
static void head_rows(encode_ctx *e, const encoder_head *h, const int *rows, int n_rows,
                      float *out, int ith, int nth, int *phase) {
    const int dim = e->hp.dim;
    int64_t lo, hi;
    const model_mat *first = h->dense.n_rows ? &h->dense : &h->out;
    int slot[1] = {0};
    mm_split(n_rows, 1, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        convert_row(e, &first, 1, slot, e->x + (size_t)(rows ? rows[i] : i) * dim, i);
    pool_barrier(e->pool);
    if (h->dense.n_rows) {
        const mm_job jd = {&h->dense, e->act[0], e->head_tmp, dim};
        mm_phase(e, &e->counters[(*phase)++], &jd, 1, n_rows);
        pool_barrier(e->pool);
        const model_mat *o = &h->out;
        mm_split(n_rows, 1, ith, nth, &lo, &hi);
        for (int64_t i = lo; i < hi; i++) {
            float *y = e->head_tmp + i * dim;
            for (int c = 0; c < dim; c++) y[c] = tanhf(h->dense_b ? y[c] + h->dense_b[c] : y[c]);
            convert_row(e, &o, 1, slot, y, i);
        }
        pool_barrier(e->pool);
    }
    const mm_job jo = {&h->out, e->act[0], out, h->n_out};
    mm_phase(e, &e->counters[(*phase)++], &jo, 1, n_rows);
    pool_barrier(e->pool);
    mm_split(n_rows, 1, ith, nth, &lo, &hi);
    for (int64_t i = lo; h->out_b && i < hi; i++) e->ew->add(out + i * h->n_out, h->out_b, NULL, h->n_out);
    pool_barrier(e->pool);
}

static void forward_thread(void *ctx, int ith, int nth) {
    encode_ctx *e = ctx;
    const encoder_model *m = e->m;
    const encoder_hparams *hp = &e->hp;
    const encode_batch *b = e->b;
    const int n = e->n, dim = hp->dim, ffn = hp->ffn;
    const bool nomic = hp->arch == ENCODER_NOMIC_BERT;
    float *scratch = e->scratch + (size_t)ith * e->scratch_n;
    int64_t lo, hi;
    int phase = 0;
    int slot[N_ACT];

    /* embeddings and their LayerNorm, then the first layer's q / k / v activations */
    const encoder_layer *ly0 = &m->layers[0];
    const model_mat *in0[3] = {&ly0->wq, &ly0->wk, &ly0->wv};
    if (ly0->wqkv.n_rows) in0[0] = &ly0->wqkv;
    const int n_in0 = ly0->wqkv.n_rows ? 1 : 3;
    act_slots(in0, n_in0, slot);
    mm_split(n, 1, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        float *x = e->x + (size_t)t * dim;
        model_mat_row(&m->tok_embd, b->tokens[t], x);
        const int pos = (int)t - e->seq_start[e->tok_seq[t]];
        if (m->type_embd)
            for (int c = 0; c < dim; c++) x[c] += m->type_embd[c];
        if (m->pos_embd) {
            const float *pe = m->pos_embd + (size_t)pos * dim;
            for (int c = 0; c < dim; c++) x[c] = pe[c] + x[c];
        }
        e->ew->layernorm(x, x, m->embd_ln_w, m->embd_ln_b, dim, hp->norm_eps);
        convert_row(e, in0, n_in0, slot, x, t);
    }
    pool_barrier(e->pool);

    const int64_t n_items = (int64_t)b->n_seq * hp->n_heads;
    for (int l = 0; l < hp->n_layers; l++) {
        const encoder_layer *ly = &m->layers[l];
        const model_mat *qkv_in[3] = {&ly->wq, &ly->wk, &ly->wv};
        const bool fused = ly->wqkv.n_rows > 0;
        if (fused) qkv_in[0] = &ly->wqkv;
        act_slots(qkv_in, fused ? 1 : 3, slot);

        /* q | k | v into their columns of qkv */
        mm_job jq[3];
        for (int k = 0; k < (fused ? 1 : 3); k++)
            jq[k] = (mm_job){qkv_in[k], act_of(e, slot, k), e->qkv + (size_t)k * dim, 3 * dim};
        mm_phase(e, &e->counters[phase++], jq, fused ? 1 : 3, n);
        pool_barrier(e->pool);

        /* attention by (input, head), one at a time: items differ a lot in size */
        e->ly = ly; /* read after the barrier above */
        for (int ph = phase++; mm_grab(&e->counters[ph], n_items, 1, &lo, &hi);)
            attend(e, (int)(lo / hp->n_heads), (int)(lo % hp->n_heads), scratch);
        pool_barrier(e->pool);

        /* output projection + bias + residual, then LayerNorm */
        const model_mat *wo = &ly->wo;
        act_slots(&wo, 1, slot);
        mm_split(n, 1, ith, nth, &lo, &hi);
        for (int64_t t = lo; t < hi; t++) convert_row(e, &wo, 1, slot, e->att + t * dim, t);
        pool_barrier(e->pool);
        const mm_job jw = {wo, e->act[0], e->tmp, dim};
        mm_phase(e, &e->counters[phase++], &jw, 1, n);
        pool_barrier(e->pool);

        const model_mat *ffn_in[2] = {&ly->w_up, &ly->w_gate};
        const int n_ffn_in = nomic ? 2 : 1;
        act_slots(ffn_in, n_ffn_in, slot);
        mm_split(n, 1, ith, nth, &lo, &hi);
        for (int64_t t = lo; t < hi; t++) {
            float *x = e->x + (size_t)t * dim, *y = e->tmp + (size_t)t * dim;
            e->ew->add(y, ly->bo, x, dim);
            e->ew->layernorm(x, y, ly->ln1_w, ly->ln1_b, dim, hp->norm_eps);
            convert_row(e, ffn_in, n_ffn_in, slot, x, t);
        }
        pool_barrier(e->pool);

        /* FFN: GELU(up + b) for bert, silu(gate) * up for nomic-bert (the element-wise part
         * row by row in the next phase) */
        const mm_job jf[2] = {{&ly->w_up, act_of(e, slot, 0), nomic ? e->hg : e->hb, ffn},
                              {&ly->w_gate, nomic ? act_of(e, slot, 1) : NULL, e->hb, ffn}};
        mm_phase(e, &e->counters[phase++], jf, nomic ? 2 : 1, n);
        pool_barrier(e->pool);

        const model_mat *wd = &ly->w_down;
        act_slots(&wd, 1, slot);
        mm_split(n, 1, ith, nth, &lo, &hi);
        for (int64_t t = lo; t < hi; t++) {
            float *h = e->hb + (size_t)t * ffn;
            if (nomic) {
                float *u = e->hg + (size_t)t * ffn;
                e->ew->add(u, ly->b_up, NULL, ffn);
                e->ew->silu_mul(h, u, ffn);
            } else {
                e->ew->add(h, ly->b_up, NULL, ffn);
                e->ew->gelu(h, ffn);
            }
            convert_row(e, &wd, 1, slot, h, t);
        }
        pool_barrier(e->pool);
        const mm_job jd = {wd, e->act[0], e->tmp, dim};
        mm_phase(e, &e->counters[phase++], &jd, 1, n);
        pool_barrier(e->pool);

        /* LayerNorm, and the next layer's q / k / v activations */
        const encoder_layer *nx = l + 1 < hp->n_layers ? &m->layers[l + 1] : NULL;
        const model_mat *next_in[3];
        int n_next = 0;
        if (nx) {
            next_in[0] = nx->wqkv.n_rows ? &nx->wqkv : &nx->wq;
            next_in[1] = &nx->wk;
            next_in[2] = &nx->wv;
            n_next = nx->wqkv.n_rows ? 1 : 3;
            act_slots(next_in, n_next, slot);
        }
        mm_split(n, 1, ith, nth, &lo, &hi);
        for (int64_t t = lo; t < hi; t++) {
            float *x = e->x + (size_t)t * dim, *y = e->tmp + (size_t)t * dim;
            e->ew->add(y, ly->b_down, x, dim);
            e->ew->layernorm(x, y, ly->ln2_w, ly->ln2_b, dim, hp->norm_eps);
            if (nx) convert_row(e, next_in, n_next, slot, x, t);
        }
        pool_barrier(e->pool);
    }

    /* pooling, split by input */
    if (b->want & ENCODE_POOLED) {
        mm_split(b->n_seq, 1, ith, nth, &lo, &hi);
        for (int64_t s = lo; s < hi; s++) {
            const int t0 = e->seq_start[s], len = e->seq_start[s + 1] - t0;
            float *out = e->pooled + (size_t)s * dim;
            if (e->pooling == ENCODER_POOL_MEAN) {
                for (int c = 0; c < dim; c++) {
                    double acc = 0;
                    for (int t = 0; t < len; t++) acc += e->x[(size_t)(t0 + t) * dim + c];
                    out[c] = (float)(acc / len);
                }
            } else {
                const int t = e->pooling == ENCODER_POOL_LAST ? t0 + len - 1 : t0;
                memcpy(out, e->x + (size_t)t * dim, (size_t)dim * sizeof(float));
            }
        }
    }
    if (b->want & ENCODE_SEQ_HEAD)
        head_rows(e, &m->seq_head, e->first_tok, b->n_seq, e->seq_logits, ith, nth, &phase);
    if (b->want & ENCODE_TOK_HEAD)
        head_rows(e, &m->tok_head, NULL, n, e->tok_logits, ith, nth, &phase);
}

/* ============================================================ run ===== */

static int check_batch(encode_ctx *e, const encode_batch *b, sh_err *err) {
    if (b->n_seq < 1 || b->n_seq > e->n_seqs)
        return sh_errf(err, "batch of %d inputs; this encoder takes 1..%d", b->n_seq, e->n_seqs);
    if ((b->want & ENCODE_SEQ_HEAD) && !e->m->seq_head.n_out)
        return sh_errf(err, "the model has no sequence classification head");
    if ((b->want & ENCODE_TOK_HEAD) && !e->m->tok_head.n_out)
        return sh_errf(err, "the model has no token classification head");
    if ((b->want & ENCODE_POOLED) && e->pooling == ENCODER_POOL_NONE)
        return sh_errf(err, "the model's pooling is none: there is no pooled vector");
    int64_t total = 0;
    for (int s = 0; s < b->n_seq; s++) {
        const int len = b->n_tokens[s];
        if (len < 1 || len > e->hp.n_ctx_train)
            return sh_errf(err, "input %d has %d tokens; this model takes 1..%d", s, len,
                           e->hp.n_ctx_train);
        total += len;
    }
    if (total > e->n_tokens)
        return sh_errf(err, "batch of %lld tokens exceeds the encoder's %d", (long long)total,
                       e->n_tokens);
    for (int64_t t = 0; t < total; t++)
        if (b->tokens[t] < 0 || b->tokens[t] >= e->hp.n_vocab)
            return sh_errf(err, "token %lld: id %d out of range [0, %d)", (long long)t,
                           b->tokens[t], e->hp.n_vocab);
    return 0;
}

int encode_run(encode_ctx *e, const encode_batch *b, sh_err *err) {
    if (check_batch(e, b, err)) return -1;
    int t = 0;
    for (int s = 0; s < b->n_seq; s++) {
        e->seq_start[s] = t;
        e->first_tok[s] = t;
        for (int k = 0; k < b->n_tokens[s]; k++) e->tok_seq[t + k] = s;
        t += b->n_tokens[s];
    }
    e->seq_start[b->n_seq] = t;
    e->n = t;
    e->b = b;
    for (int i = 0; i < e->n_phases; i++)
        atomic_store_explicit(&e->counters[i], 0, memory_order_relaxed);
    pool_run(e->pool, forward_thread, e);
    e->b = NULL;
    e->last_n = t;
    e->last_seqs = b->n_seq;
    e->last_want = b->want;
    return 0;
}

const float *encode_hidden(const encode_ctx *e, int tok) {
    SH_ASSERT(tok >= 0 && tok < e->last_n);
    return e->x + (size_t)tok * e->hp.dim;
}

const float *encode_pooled(const encode_ctx *e, int seq) {
    SH_ASSERT(seq >= 0 && seq < e->last_seqs && (e->last_want & ENCODE_POOLED));
    return e->pooled + (size_t)seq * e->hp.dim;
}

const float *encode_seq_logits(const encode_ctx *e, int seq) {
    SH_ASSERT(seq >= 0 && seq < e->last_seqs && (e->last_want & ENCODE_SEQ_HEAD));
    return e->seq_logits + (size_t)seq * e->m->seq_head.n_out;
}

const float *encode_tok_logits(const encode_ctx *e, int tok) {
    SH_ASSERT(tok >= 0 && tok < e->last_n && (e->last_want & ENCODE_TOK_HEAD));
    return e->tok_logits + (size_t)tok * e->m->tok_head.n_out;
}
