/*
 * engine/engine — see engine.h.
 *
 * Threading: one engine_decode is one pool job. All threads run forward_thread() together;
 * a barrier separates phases that depend on each other. Matmul rows, head units and
 * attention items are taken in chunks from a per-phase atomic counter (dynamic: a thread
 * slowed down by another process does not hold everyone at the next barrier); row-wise
 * conversions are split statically by thread index. Which thread computes a value never
 * changes it: kernels give the same result for any row range and any number of activation
 * rows, so results depend neither on the thread count nor on the batch composition.
 */
#include "engine/engine.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
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

struct engine {
    const model *m;           /* borrowed */
    model_hparams hp;         /* copy of m->hp */
    int n_ctx, n_seq, n_batch, n_logits;
    bool kv_f32;
    int q_dim, kv_dim;        /* n_heads * head_dim, n_kv_heads * head_dim */
    int qkv_dim;              /* q_dim + 2 * kv_dim: one row of qkv */
    pool *pool;
    const attn_ops *attn;
    const ew_ops *ew;

    /* KV cache: element [layer][seq][pos][kv_dim], f16 (uint16_t) or f32 */
    void *k_cache, *v_cache;
    size_t kv_elem;           /* 2 or 4 bytes */
    int *seq_len;             /* [n_seq] cached positions per sequence */
    int *seq_next;            /* [n_seq] scratch for batch validation */

    /* activations, one row per batch entry (n_batch rows) */
    float *x;                 /* [n_batch][dim] residual stream */
    float *tmp;               /* [n_batch][dim] output of Wo / Wdown before the residual add */
    float *qkv;               /* [n_batch][qkv_dim] q | k | v after bias and RoPE */
    float *att;               /* [n_batch][q_dim] attention output */
    float *hb, *hb2;          /* [n_batch][ffn] gate (then silu(gate)*up), up */
    uint8_t *act;             /* [n_batch][act_row] activations converted for the kernels */
    size_t act_row;           /* bytes of one act row (largest act type, largest k) */
    uint8_t *act_priv;        /* [n_threads][act_row] per-thread act row for 1-entry batches */
    atomic_llong *counters;   /* [n_phases] work counters of one forward pass */
    int n_phases;             /* 5 per layer + 1 */
    float *rope_cs;           /* [n_batch][n_rot] cos, sin pairs for each entry's position */
    float *scratch;           /* [n_threads][scratch_n] per-thread attention / norm rows */
    int scratch_n;            /* floats per thread in scratch */
    float *logits;            /* [n_logits][n_vocab] */
    int *out_row;             /* [n_batch] row of logits for each entry, or -1 */
    int *out_src;             /* [n_logits] entry index of each logits row */
    int n_out;                /* logits rows in the current batch */
    int last_n;               /* entries of the last batch (for engine_logits) */
    bool last_all_hidden;     /* the last batch ran the last layer for every entry */

    const vecdot_kernel *k_embd_out;  /* kernel of the output matrix */

    /* the current batch (valid during engine_decode) */
    const engine_batch *b;
};

/* ============================================================ setup ===== */

void engine_params_default(engine_params *p) { memset(p, 0, sizeof *p); }

static int max_i(int a, int b) { return a > b ? a : b; }

static size_t act_bytes_for(const model_mat *w) {
    const vecdot_kernel *k = vecdot_get(w->type);
    SH_ASSERT(k != NULL); /* model_load checked it */
    return vecdot_act_row_bytes(k->act_type, w->n_cols);
}

engine *engine_init(const model *m, const engine_params *pin, sh_err *err) {
    engine_params p = *pin;
    const model_hparams *hp = &m->hp;
    if (p.n_ctx <= 0) p.n_ctx = hp->n_ctx_train;
    if (p.n_seq <= 0) p.n_seq = 1;
    if (p.n_batch <= 0) p.n_batch = p.n_ctx < 512 ? p.n_ctx : 512;
    if (p.n_logits <= 0) p.n_logits = p.n_seq;
    if (p.n_logits > p.n_batch) p.n_logits = p.n_batch;
    if (p.n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        p.n_threads = n > 0 ? (int)n : 1;
    }
    if (p.n_ctx > (1 << 22) || p.n_seq > 4096 || p.n_batch > (1 << 16) || p.n_threads > 512) {
        sh_errf(err, "engine parameters out of range (ctx %d, seqs %d, batch %d, threads %d)",
                p.n_ctx, p.n_seq, p.n_batch, p.n_threads);
        return NULL;
    }
    engine *e = calloc(1, sizeof *e);
    if (!e) {
        sh_errf(err, "out of memory");
        return NULL;
    }
    e->m = m;
    e->hp = *hp;
    e->n_ctx = p.n_ctx;
    e->n_seq = p.n_seq;
    e->n_batch = p.n_batch;
    e->n_logits = p.n_logits;
    e->kv_f32 = p.kv_f32;
    e->q_dim = hp->n_heads * hp->head_dim;
    e->kv_dim = hp->n_kv_heads * hp->head_dim;
    e->qkv_dim = e->q_dim + 2 * e->kv_dim;
    e->kv_elem = p.kv_f32 ? 4 : 2;
    e->attn = attn_get();
    e->ew = ew_get();
    e->k_embd_out = vecdot_get(m->output.type);

    size_t nb = (size_t)p.n_batch;
    size_t kv_bytes = (size_t)hp->n_layers * p.n_seq * (size_t)p.n_ctx * e->kv_dim * e->kv_elem;
    size_t act_row = 0;
    for (int l = 0; l < hp->n_layers; l++) {
        const model_layer *ly = &m->layers[l];
        const model_mat *ws[] = {&ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->w_gate, &ly->w_up,
                                 &ly->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if (act_bytes_for(ws[i]) > act_row) act_row = act_bytes_for(ws[i]);
    }
    if (act_bytes_for(&m->output) > act_row) act_row = act_bytes_for(&m->output);
    act_row = (act_row + 63) & ~(size_t)63;
    e->act_row = act_row;
    /* per thread: attention scores of one KV group's heads (f32 cache), or the weights and
     * rescale factors of up to ATTN_WSUM_MAX_HEADS heads and one f16 query (f16 cache), or
     * one norm row */
    int group = hp->n_heads / hp->n_kv_heads;
    int att_n = max_i(p.n_ctx * group, 2 * ATTN_WSUM_MAX_HEADS * p.n_ctx + hp->head_dim);
    e->scratch_n = (max_i(att_n, max_i(hp->dim, hp->ffn)) + 15) & ~15;

    e->k_cache = malloc(kv_bytes ? kv_bytes : 1);
    e->v_cache = malloc(kv_bytes ? kv_bytes : 1);
    e->seq_len = calloc((size_t)p.n_seq, sizeof(int));
    e->seq_next = calloc((size_t)p.n_seq, sizeof(int));
    e->x = malloc(nb * hp->dim * sizeof(float));
    e->tmp = malloc(nb * hp->dim * sizeof(float));
    e->qkv = malloc(nb * e->qkv_dim * sizeof(float));
    e->att = malloc(nb * e->q_dim * sizeof(float));
    e->hb = malloc(nb * hp->ffn * sizeof(float));
    e->hb2 = malloc(nb * hp->ffn * sizeof(float));
    e->act = aligned_alloc(64, nb * act_row);
    e->act_priv = aligned_alloc(64, (size_t)p.n_threads * act_row);
    e->n_phases = 5 * hp->n_layers + 1;
    e->counters = calloc((size_t)e->n_phases, sizeof *e->counters);
    e->rope_cs = malloc(nb * hp->n_rot * sizeof(float));
    e->scratch = malloc((size_t)p.n_threads * e->scratch_n * sizeof(float));
    e->logits = malloc((size_t)p.n_logits * hp->n_vocab * sizeof(float));
    e->out_row = malloc(nb * sizeof(int));
    e->out_src = malloc((size_t)p.n_logits * sizeof(int));
    if (!e->k_cache || !e->v_cache || !e->seq_len || !e->seq_next || !e->x || !e->tmp ||
        !e->qkv || !e->att || !e->hb || !e->hb2 || !e->act || !e->act_priv || !e->counters ||
        !e->rope_cs || !e->scratch || !e->logits || !e->out_row || !e->out_src) {
        sh_errf(err, "out of memory allocating the engine (KV cache %.1f MiB)",
                (double)kv_bytes * 2 / (1024.0 * 1024.0));
        engine_free(e);
        return NULL;
    }
    e->pool = pool_shared(p.n_threads);
    if (!e->pool) {
        sh_errf(err, "cannot start %d threads", p.n_threads);
        engine_free(e);
        return NULL;
    }
    return e;
}

void engine_free(engine *e) {
    if (!e) return;
    pool_free(e->pool);
    free(e->k_cache);
    free(e->v_cache);
    free(e->seq_len);
    free(e->seq_next);
    free(e->x);
    free(e->tmp);
    free(e->qkv);
    free(e->att);
    free(e->hb);
    free(e->hb2);
    free(e->act);
    free(e->act_priv);
    free(e->counters);
    free(e->rope_cs);
    free(e->scratch);
    free(e->logits);
    free(e->out_row);
    free(e->out_src);
    free(e);
}

const model *engine_model(const engine *e) { return e->m; }
int engine_n_ctx(const engine *e) { return e->n_ctx; }
int engine_n_seq(const engine *e) { return e->n_seq; }
int engine_n_batch(const engine *e) { return e->n_batch; }
int engine_n_threads(const engine *e) { return pool_threads(e->pool); }

int engine_seq_len(const engine *e, int seq) {
    SH_ASSERT(seq >= 0 && seq < e->n_seq);
    return e->seq_len[seq];
}

void engine_seq_truncate(engine *e, int seq, int len) {
    SH_ASSERT(seq >= 0 && seq < e->n_seq && len >= 0);
    if (len < e->seq_len[seq]) e->seq_len[seq] = len;
}

const float *engine_logits(const engine *e, int i) {
    if (i < 0 || i >= e->last_n || e->out_row[i] < 0) return NULL;
    return e->logits + (size_t)e->out_row[i] * e->hp.n_vocab;
}

/* ============================================================ helpers ===== */

static void split(int64_t n, int64_t align, int ith, int nth, int64_t *lo, int64_t *hi) {
    mm_split(n, align, ith, nth, lo, hi);
}

static inline int seq_of(const engine_batch *b, int i) { return b->seq ? b->seq[i] : 0; }

/* Pointer to cache element [layer][seq][pos][0]. */
static inline void *kv_at(const engine *e, void *cache, int layer, int seq, int pos) {
    size_t idx = (((size_t)layer * e->n_seq + seq) * e->n_ctx + pos) * e->kv_dim;
    return (uint8_t *)cache + idx * e->kv_elem;
}

void engine_seq_copy(engine *e, int src, int dst, int len) {
    SH_ASSERT(src >= 0 && src < e->n_seq && dst >= 0 && dst < e->n_seq);
    SH_ASSERT(len >= 0 && len <= e->seq_len[src]);
    if (src == dst) return;
    size_t bytes = (size_t)len * e->kv_dim * e->kv_elem;
    for (int l = 0; l < e->hp.n_layers; l++) {
        memcpy(kv_at(e, e->k_cache, l, dst, 0), kv_at(e, e->k_cache, l, src, 0), bytes);
        memcpy(kv_at(e, e->v_cache, l, dst, 0), kv_at(e, e->v_cache, l, src, 0), bytes);
    }
    e->seq_len[dst] = len;
}

/* Rows [r0, r1) of every batch row: out[j][r] = W[r] . act[j] */
static void matmul_rows(const engine *e, const model_mat *w, const uint8_t *act, int n,
                        int64_t r0, int64_t r1, float *out, int64_t out_stride) {
    mm_rows(w, act, e->act_row, n, r0, r1, out, out_stride);
}

/* Converts rows [lo, hi) of src (row stride `stride` floats) into act for w's kernel. */
static void quantize_rows(engine *e, const model_mat *w, uint8_t *act, const float *src,
                          int64_t stride, int64_t lo, int64_t hi) {
    const vecdot_kernel *k = vecdot_get(w->type);
    for (int64_t i = lo; i < hi; i++)
        vecdot_quantize_act(k->act_type, src + i * stride, act + i * e->act_row, w->n_cols);
}

/* rmsnorm of x rows map[i] (or i when map is NULL), i in [lo, hi), with weight w into act row i
 * for matrix mm */
static void norm_rows(engine *e, const float *w, const model_mat *mm, uint8_t *act,
                      const int *map, int64_t lo, int64_t hi, float *scratch) {
    const vecdot_kernel *k = vecdot_get(mm->type);
    int dim = e->hp.dim;
    for (int64_t i = lo; i < hi; i++) {
        ew_rmsnorm(scratch, e->x + (size_t)(map ? map[i] : i) * dim, w, dim, e->hp.norm_eps);
        vecdot_quantize_act(k->act_type, scratch, act + i * e->act_row, dim);
    }
}

static bool grab(engine *e, int phase, int64_t n, int64_t chunk, int64_t *lo, int64_t *hi) {
    return mm_grab(&e->counters[phase], n, chunk, lo, hi);
}

static bool grab_rows(engine *e, int phase, int64_t n, int nth, int64_t *lo, int64_t *hi) {
    return mm_grab_rows(&e->counters[phase], n, nth, lo, hi);
}

/* ============================================================ the forward pass ===== */

/* Q, K and V for head unit u (q heads first, then kv heads of K, then of V): matmul of that
 * head's rows, bias, RoPE, and for K / V the store into the cache. */
static void qkv_unit(engine *e, const model_layer *ly, const uint8_t *act, int layer, int u,
                     int n) {
    const model_hparams *hp = &e->hp;
    const engine_batch *b = e->b;
    int hd = hp->head_dim;
    const model_mat *w;
    const float *bias;
    int col0, row0, kind; /* kind 0 q, 1 k, 2 v */
    if (u < hp->n_heads) {
        w = &ly->wq, bias = ly->bq, row0 = u * hd, col0 = row0, kind = 0;
    } else if (u < hp->n_heads + hp->n_kv_heads) {
        w = &ly->wk, bias = ly->bk, row0 = (u - hp->n_heads) * hd, kind = 1;
        col0 = e->q_dim + row0;
    } else {
        w = &ly->wv, bias = ly->bv, row0 = (u - hp->n_heads - hp->n_kv_heads) * hd, kind = 2;
        col0 = e->q_dim + e->kv_dim + row0;
    }
    /* the kernel writes out[j * stride + r] for absolute row r: shift the base by row0 */
    matmul_rows(e, w, act, n, row0, row0 + hd, e->qkv + col0 - row0, e->qkv_dim);
    for (int i = 0; i < n; i++) {
        float *v = e->qkv + (size_t)i * e->qkv_dim + col0;
        if (bias)
            for (int d = 0; d < hd; d++) v[d] += bias[row0 + d];
        if (kind < 2)
            e->ew->rope(v, e->rope_cs + (size_t)i * hp->n_rot, hp->n_rot, hp->rope == MODEL_ROPE_NEOX);
        if (kind == 0) continue;
        void *dst = (uint8_t *)kv_at(e, kind == 1 ? e->k_cache : e->v_cache, layer, seq_of(b, i),
                                     b->pos[i]) + (size_t)row0 * e->kv_elem;
        if (e->kv_f32) {
            memcpy(dst, v, (size_t)hd * sizeof(float));
        } else {
            e->attn->to_f16(dst, v, hd);
        }
    }
}

/*
 * Attention with the f16 cache, in the arithmetic of llama.cpp's CPU flash attention (on by
 * default there, and what it runs per query row with an f16 cache): each query is rounded to
 * f16, its dot products with the f16 keys are summed in the order of llama.cpp's AVX-512
 * ggml_vec_dot_f16 (dot_f16h), and the softmax runs online (one pass over the positions,
 * rescaling by exp(old max - new max) when the max grows, the sum of weights updated as
 * sum * ms + vs with two roundings) into an f16 accumulator that is rounded after every
 * update; the result is that accumulator times 1 / (sum of weights). Computing it as the f32
 * path does (f32 query, two-pass softmax, f32 accumulator) differed from llama.cpp's defaults
 * by rel L2 0.75-1.25e-3 at the logits; with the f16 roundings but other dot / sum orders, by
 * 1-4e-4 on the 24-token prompt of scripts/compare-llama.sh; now every head row of that prompt
 * is bit-identical to llama.cpp's (eval-callback dumps, head sizes 32, 64, 96, 128). Same
 * contract as attend(), except that [h0, h1) may span several KV heads; work holds
 * 2 * ATTN_WSUM_MAX_HEADS * n_ctx + head_dim floats.
 */
static void attend_f16(engine *e, int layer, int i, int orow, int h0, int h1, float *work) {
    const model_hparams *hp = &e->hp;
    const attn_ops *op = e->attn;
    int hd = hp->head_dim, group = hp->n_heads / hp->n_kv_heads, nh = h1 - h0;
    int seq = seq_of(e->b, i), pos = e->b->pos[i];
    const float *q = e->qkv + (size_t)i * e->qkv_dim + (size_t)h0 * hd;
    float *out = e->att + (size_t)orow * e->q_dim + (size_t)h0 * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t sn = (size_t)e->n_ctx;
    /* per head of a chunk: weights vs[t] then rescale factors ms[t]; then the f16 query */
    uint16_t *q16 = (uint16_t *)(work + 2 * ATTN_WSUM_MAX_HEADS * sn); /* [hd] */
    const uint8_t *kb = kv_at(e, e->k_cache, layer, seq, 0);
    const uint8_t *vb = kv_at(e, e->v_cache, layer, seq, 0);
    /* Head by head over all positions: the scores (q in registers), then the online softmax's
     * running max and sum, which give each position's weight vs[t] and the factor ms[t] the
     * accumulator is rescaled by first (1: none). Then the f16 accumulators over the V rows,
     * up to ATTN_WSUM_MAX_HEADS heads in one pass (their chains interleave). Per head, the
     * same operations in the same order as walking the positions with dot_f16h, scale_f16h
     * and mad_f16h (tested: test_attn). */
    for (int c0 = 0; c0 < nh; c0 += ATTN_WSUM_MAX_HEADS) {
        const int cn = nh - c0 < ATTN_WSUM_MAX_HEADS ? nh - c0 : ATTN_WSUM_MAX_HEADS;
        float *ys[ATTN_WSUM_MAX_HEADS], sums[ATTN_WSUM_MAX_HEADS];
        const float *mss[ATTN_WSUM_MAX_HEADS], *vss[ATTN_WSUM_MAX_HEADS];
        const uint16_t *xs[ATTN_WSUM_MAX_HEADS];
        for (int j = 0; j < cn; j++) {
            const int h = c0 + j;
            const size_t off = (size_t)((h0 + h) / group) * hd * e->kv_elem;
            float *vs = work + (size_t)(2 * j) * sn, *ms = vs + sn;
            op->to_f16(q16, q + (size_t)h * hd, hd); /* F16C where there is AVX2 */
            op->dots_f16h(vs, q16, (const uint16_t *)(kb + off), e->kv_dim, pos + 1, hd, scale);
            sums[j] = attn_online_softmax(vs, ms, pos + 1);
            ys[j] = out + (size_t)h * hd;
            mss[j] = ms;
            vss[j] = vs;
            xs[j] = (const uint16_t *)(vb + off);
        }
        op->wsum_f16h_n(ys, mss, vss, xs, e->kv_dim, pos + 1, hd, cn);
        for (int j = 0; j < cn; j++) {
            const float inv = 1.0f / sums[j];
            for (int d = 0; d < hd; d++) ys[j][d] *= inv;
        }
    }
}

/* Attention of entry i for query heads [h0, h1), which share one KV head, over positions
 * 0..pos of the entry's sequence, into row orow of att. The f32 cache, in the arithmetic of
 * llama.cpp's f32-cache attention without flash attention (its like-for-like configuration in
 * scripts/compare-llama.sh): the scores in ggml_vec_dot_f32's order times the scale
 * (dots_f32), its softmax (ew softmax: vector exp, chunk sums in double), the weighted sum of V
 * in the order of its batched f32 matmul (wsum_f32; llama.cpp itself takes another order for a
 * single query, so its decode steps can differ from its prefill in the last bits). Head by head
 * over all positions; the heads of a GQA group re-read the same K / V rows from cache. scores
 * holds (h1 - h0) * n_ctx floats. The f16 cache: see attend_f16. */
static void attend(engine *e, int layer, int i, int orow, int h0, int h1, float *scores) {
    if (!e->kv_f32) {
        attend_f16(e, layer, i, orow, h0, h1, scores);
        return;
    }
    const model_hparams *hp = &e->hp;
    const attn_ops *op = e->attn;
    int hd = hp->head_dim, g = h0 / (hp->n_heads / hp->n_kv_heads), nh = h1 - h0;
    int seq = seq_of(e->b, i), pos = e->b->pos[i];
    const float *q = e->qkv + (size_t)i * e->qkv_dim + (size_t)h0 * hd;
    float *out = e->att + (size_t)orow * e->q_dim + (size_t)h0 * hd;
    float scale = 1.0f / sqrtf((float)hd);
    const uint8_t *kb = kv_at(e, e->k_cache, layer, seq, 0);
    const uint8_t *vb = kv_at(e, e->v_cache, layer, seq, 0);
    size_t off = (size_t)g * hd * e->kv_elem;
    size_t sn = (size_t)e->n_ctx;
    for (int h = 0; h < nh; h++)
        op->dots_f32(scores + h * sn, q + h * hd, (const float *)(kb + off), e->kv_dim, pos + 1,
                     hd, scale);
    for (int h = 0; h < nh; h++) e->ew->softmax(scores + h * sn, pos + 1);
    /* head by head over all positions, sums in registers */
    for (int h = 0; h < nh; h++)
        op->wsum_f32(out + h * hd, scores + h * sn, (const float *)(vb + off), e->kv_dim, pos + 1,
                     hd);
}

static void forward_thread(void *ctx, int ith, int nth) {
    engine *e = ctx;
    const model *m = e->m;
    const model_hparams *hp = &e->hp;
    const engine_batch *b = e->b;
    int n = b->n, dim = hp->dim, ffn = hp->ffn;
    float *scratch = e->scratch + (size_t)ith * e->scratch_n;
    int64_t lo, hi;
    int phase = 0; /* index of the current work counter; every thread counts the same way */
    /* A single entry (decode) is normalised / converted by every thread into its own act row,
     * which saves a barrier per conversion; larger batches share the conversion work. */
    bool solo = n == 1;
    uint8_t *act = solo ? e->act_priv + (size_t)ith * e->act_row : e->act;
#define ROWS_SHARED(cnt, fn)                                                                       \
    do {                                                                                           \
        if (solo) {                                                                                \
            lo = 0, hi = 1;                                                                        \
            fn;                                                                                    \
        } else {                                                                                   \
            split(cnt, 1, ith, nth, &lo, &hi);                                                     \
            fn;                                                                                    \
            pool_barrier(e->pool);                                                                 \
        }                                                                                          \
    } while (0)

    /* embeddings and RoPE angles, split by batch rows */
    split(n, 1, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        model_mat_row(&m->tok_embd, b->token[i], e->x + i * dim);
        /* llama.cpp's float recurrence (ew_rope_angles): angles computed in double differ in
         * the last bits, and after the rotation 5-15% of a position's q / k elements were an
         * ulp off llama.cpp's (its eval callback on a 3-layer model), enough to flip an 8-bit
         * activation level now and then (~1e-2 at the logits of a random-weight model) */
        ew_rope_angles(e->rope_cs + i * hp->n_rot, b->pos[i], hp->n_rot, hp->rope_base,
                       hp->rope_scale, m->rope_freqs);
    }
    pool_barrier(e->pool);

    int units = hp->n_heads + 2 * hp->n_kv_heads;
    /* attention work items: the query heads of a KV head go together, split into n_sub
     * subsets when there are too few items to keep every thread busy (decode) */
    int group = hp->n_heads / hp->n_kv_heads;
    int n_sub = (4 * nth + n * hp->n_kv_heads - 1) / (n * hp->n_kv_heads);
    if (n_sub > group) n_sub = group;
    if (n_sub < 1) n_sub = 1;
    /* With the f16 cache and whole groups per item, consecutive KV heads go together when
     * there are enough items anyway: attend_f16 runs their accumulators side by side. */
    int kpi = 1;
    if (!e->kv_f32 && n_sub == 1)
        for (int c = ATTN_WSUM_MAX_HEADS / group; c > 1; c--)
            if (hp->n_kv_heads % c == 0 && n * (hp->n_kv_heads / c) >= 2 * nth) {
                kpi = c;
                break;
            }
    for (int l = 0; l < hp->n_layers; l++) {
        const model_layer *ly = &m->layers[l];
        /* In the last layer only the entries that want logits need anything after their K and
         * V are cached: they are processed as rows 0..nr-1, row r standing for entry map[r]
         * (row-independent work, so nothing else changes). */
        int nr = n;
        const int *map = NULL;
        if (l == hp->n_layers - 1 && e->n_out < n && !e->b->all_hidden) nr = e->n_out, map = e->out_src;
#define XROW(r) ((size_t)(map ? map[r] : (r)))

        /* attention norm */
        ROWS_SHARED(n, norm_rows(e, ly->attn_norm, &ly->wq, act, NULL, lo, hi, scratch));

        /* q, k, v by head; RoPE; cache store */
        for (int ph = phase++; grab(e, ph, units, 1, &lo, &hi);)
            qkv_unit(e, ly, act, l, (int)lo, n);
        pool_barrier(e->pool);
        if (nr == 0) break; /* nothing asks for logits: the cache is all this batch produces */

        /* attention by (row, KV head, subset of its query heads), or by (row, kpi consecutive
         * KV heads with all their query heads) */
        int items = hp->n_kv_heads / kpi * n_sub;
        /* a few items per grab in a batch (hundreds of items, one atomic operation each
         * would add up), one at a time in decode */
        const int64_t n_items = (int64_t)nr * items;
        const int64_t ch_items = n_items / (16 * nth) > 1 ? n_items / (16 * nth) : 1;
        for (int ph = phase++; grab(e, ph, n_items, ch_items, &lo, &hi);) {
            for (int64_t it = lo; it < hi; it++) {
                int r = (int)(it / items), u = (int)(it % items);
                int g = u / n_sub * kpi, s = u % n_sub;
                int h0 = g * group + group * kpi * s / n_sub;
                int h1 = g * group + group * kpi * (s + 1) / n_sub;
                attend(e, l, (int)XROW(r), r, h0, h1, scratch);
            }
        }
        pool_barrier(e->pool);

        ROWS_SHARED(nr, quantize_rows(e, &ly->wo, act, e->att, e->q_dim, lo, hi));

        /* output projection and residual, by rows of Wo */
        for (int ph = phase++; grab_rows(e, ph, dim, nth, &lo, &hi);) {
            matmul_rows(e, &ly->wo, act, nr, lo, hi, e->tmp, dim);
            for (int i = 0; i < nr; i++) {
                float *x = e->x + XROW(i) * dim, *t = e->tmp + (size_t)i * dim;
                for (int64_t r = lo; r < hi; r++) x[r] += t[r] + (ly->bo ? ly->bo[r] : 0);
            }
        }
        pool_barrier(e->pool);

        /* FFN norm */
        ROWS_SHARED(nr, norm_rows(e, ly->ffn_norm, &ly->w_gate, act, map, lo, hi, scratch));

        /* gate and up by rows, then silu(gate) * up */
        for (int ph = phase++; grab_rows(e, ph, ffn, nth, &lo, &hi);) {
            matmul_rows(e, &ly->w_gate, act, nr, lo, hi, e->hb, ffn);
            matmul_rows(e, &ly->w_up, act, nr, lo, hi, e->hb2, ffn);
            for (int i = 0; i < nr; i++) {
                float *g = e->hb + (size_t)i * ffn, *u = e->hb2 + (size_t)i * ffn;
                e->ew->silu_mul(g + lo, u + lo, hi - lo);
            }
        }
        pool_barrier(e->pool);

        ROWS_SHARED(nr, quantize_rows(e, &ly->w_down, act, e->hb, ffn, lo, hi));

        /* down projection and residual */
        for (int ph = phase++; grab_rows(e, ph, dim, nth, &lo, &hi);) {
            matmul_rows(e, &ly->w_down, act, nr, lo, hi, e->tmp, dim);
            for (int i = 0; i < nr; i++) {
                float *x = e->x + XROW(i) * dim, *t = e->tmp + (size_t)i * dim;
                for (int64_t r = lo; r < hi; r++) x[r] += t[r];
            }
        }
        pool_barrier(e->pool);
#undef XROW
    }
#undef ROWS_SHARED

    /* final norm of the entries that want logits, compacted into act rows 0..n_out-1 */
    if (e->n_out == 0) return;
    const vecdot_kernel *ko = e->k_embd_out;
    split(e->n_out, 1, ith, nth, &lo, &hi);
    for (int64_t o = lo; o < hi; o++) {
        ew_rmsnorm(scratch, e->x + (size_t)e->out_src[o] * dim, m->output_norm, dim, hp->norm_eps);
        vecdot_quantize_act(ko->act_type, scratch, e->act + o * e->act_row, dim);
    }
    pool_barrier(e->pool);
    for (int ph = phase++; grab_rows(e, ph, hp->n_vocab, nth, &lo, &hi);)
        matmul_rows(e, &m->output, e->act, e->n_out, lo, hi, e->logits, hp->n_vocab);
}

/* ============================================================ decode ===== */

static int check_batch(engine *e, const engine_batch *b, sh_err *err) {
    if (b->n <= 0) return sh_errf(err, "empty batch");
    if (b->n > e->n_batch)
        return sh_errf(err, "batch of %d tokens exceeds the engine's batch size %d", b->n,
                       e->n_batch);
    for (int s = 0; s < e->n_seq; s++) e->seq_next[s] = -1;
    int n_out = 0;
    for (int i = 0; i < b->n; i++) {
        int s = seq_of(b, i), p = b->pos[i], t = b->token[i]; /* ranges first */
        if (t < 0 || t >= e->hp.n_vocab)
            return sh_errf(err, "entry %d: token id %d out of range [0, %d)", i, t, e->hp.n_vocab);
        if (s < 0 || s >= e->n_seq)
            return sh_errf(err, "entry %d: sequence %d out of range [0, %d)", i, s, e->n_seq);
        if (p < 0 || p >= e->n_ctx)
            return sh_errf(err, "entry %d: position %d is outside the context of %d", i, p,
                           e->n_ctx);
    }
    for (int i = 0; i < b->n; i++) {
        int s = seq_of(b, i), p = b->pos[i];
        if (e->seq_next[s] < 0) {
            if (p > e->seq_len[s])
                return sh_errf(err, "entry %d: position %d skips past the %d cached positions "
                                    "of sequence %d", i, p, e->seq_len[s], s);
        } else if (p != e->seq_next[s]) {
            return sh_errf(err, "entry %d: position %d of sequence %d does not follow %d", i, p,
                           s, e->seq_next[s] - 1);
        }
        e->seq_next[s] = p + 1;
        bool want = b->logits ? b->logits[i] != 0 : i == b->n - 1;
        if (want) n_out++;
    }
    if (n_out > e->n_logits)
        return sh_errf(err, "batch asks for %d logits rows, the engine holds %d", n_out,
                       e->n_logits);
    return 0;
}

int engine_decode(engine *e, const engine_batch *b, sh_err *err) {
    if (check_batch(e, b, err)) return -1;
    e->n_out = 0;
    for (int i = 0; i < b->n; i++) {
        bool want = b->logits ? b->logits[i] != 0 : i == b->n - 1;
        e->out_row[i] = want ? e->n_out : -1;
        if (want) e->out_src[e->n_out++] = i;
    }
    for (int s = 0; s < e->n_seq; s++)
        if (e->seq_next[s] >= 0) e->seq_len[s] = e->seq_next[s];
    e->b = b;
    e->last_n = b->n;
    e->last_all_hidden = b->all_hidden;
    for (int i = 0; i < e->n_phases; i++) atomic_store_explicit(&e->counters[i], 0, memory_order_relaxed);
    pool_run(e->pool, forward_thread, e); /* the job hand-off publishes the reset counters */
    e->b = NULL;
    return 0;
}

const float *engine_hidden(const engine *e, int i) {
    SH_ASSERT(i >= 0 && i < e->last_n);
    SH_ASSERT(e->last_all_hidden || e->out_row[i] >= 0); /* else its last layer was skipped */
    return e->x + (size_t)i * e->hp.dim;
}
