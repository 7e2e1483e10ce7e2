/*
 * train/ops — the forward and backward pass of every layer the trainer uses, in f32, on rows of
 * activations (row-major [n][d]). Each backward takes what its forward saved and the gradient
 * of its output, and ADDS the gradients of its parameters (so one buffer collects a whole
 * batch) while it WRITES the gradient of its input (unless stated). Every op is checked against
 * finite differences in tests/unit/test_train_ops.c.
 *
 * Threads: ops take the trainer's pool (NULL: the calling thread). Work is split by rows, or by
 * columns for sums over rows (parameter gradients), so no value depends on the number of
 * threads: the same inputs give the same bits on any thread count.
 */
#ifndef SHOAL_TRAIN_OPS_H
#define SHOAL_TRAIN_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/pool.h"

/* Runs fn(ctx, lo, hi) over [0, n) split into the pool's threads' shares (or one call). */
typedef void (*ops_range_fn)(void *ctx, int64_t lo, int64_t hi);
void ops_parallel(pool *p, int64_t n, ops_range_fn fn, void *ctx);

/* ---- linear: y[n][out] = x[n][in] W[out][in]^T + b[out] (b may be NULL) ------------------- */
void op_linear_fwd(pool *p, float *y, const float *x, const float *w, const float *b, int64_t n,
                   int in, int out);
/* dx = dy W (written, or added when accumulate_dx); dW += dy^T x; db += column sums of dy.
 * dx may be NULL (no input gradient needed: an embedding's or the first layer's). */
void op_linear_bwd(pool *p, float *dx, float *dw, float *db, const float *dy, const float *x,
                   const float *w, int64_t n, int in, int out, bool accumulate_dx);

/* ---- LayerNorm: y = (x - mean) * rstd * w + b, per row; mean / rstd [n] saved ------------- */
void op_layernorm_fwd(pool *p, float *y, float *mean, float *rstd, const float *x, const float *w,
                      const float *b, int64_t n, int d, float eps);
/* dx written; dw, db added */
void op_layernorm_bwd(pool *p, float *dx, float *dw, float *db, const float *dy, const float *x,
                      const float *mean, const float *rstd, const float *w, int64_t n, int d);

/* ---- RMSNorm: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps) ------------------------- */
void op_rmsnorm_fwd(pool *p, float *y, float *rstd, const float *x, const float *w, int64_t n,
                    int d, float eps);
void op_rmsnorm_bwd(pool *p, float *dx, float *dw, const float *dy, const float *x,
                    const float *rstd, const float *w, int64_t n, int d);

/* ---- activations (element-wise, n elements) --------------------------------------------- */
/* GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
void op_gelu_fwd(pool *p, float *y, const float *x, int64_t n);
void op_gelu_bwd(pool *p, float *dx, const float *dy, const float *x, int64_t n); /* dx written */
/* SwiGLU: y = silu(g) * u */
void op_swiglu_fwd(pool *p, float *y, const float *g, const float *u, int64_t n);
void op_swiglu_bwd(pool *p, float *dg, float *du, const float *dy, const float *g,
                   const float *u, int64_t n); /* dg, du written */

/* ---- RoPE on q / k rows in place: row r of a batch of sequences of t positions has position
 * r % t; heads of hd elements, pairs (2i, 2i + 1) (llama's "normal" layout) over the first
 * n_rot elements, angle pos * base^(-2i / n_rot). bwd rotates gradients back. -------------- */
void op_rope_fwd(pool *p, float *x, int64_t n, int t, int heads, int hd, int n_rot, float base,
                 int64_t stride);
void op_rope_bwd(pool *p, float *dx, int64_t n, int t, int heads, int hd, int n_rot, float base,
                 int64_t stride);

/* ---- attention over a padded batch: b sequences of t positions, lens[s] valid positions; q
 * [b t][hq * hd], k / v [b t][hkv * hd] with row strides; query head h reads kv head
 * h / (hq / hkv). Keys past lens[s] are masked, and with causal keys after the query too.
 * probs [b][hq][t][t] saved (rows of padding queries are zero, and so is their output). ---- */
typedef struct op_attn_shape {
    int b, t, hq, hkv, hd;
    const int *lens;
    bool causal;
    int64_t q_stride, k_stride, v_stride, o_stride; /* row strides in floats */
} op_attn_shape;
void op_attn_fwd(pool *p, const op_attn_shape *s, float *out, float *probs, const float *q,
                 const float *k, const float *v);
/* dq, dk, dv written (same strides as q, k, v); work: per thread 2 * t * t floats */
void op_attn_bwd(pool *p, const op_attn_shape *s, float *dq, float *dk, float *dv,
                 const float *dout, const float *probs, const float *q, const float *k,
                 const float *v);

/* ---- embeddings: y[i] = table[ids[i]] (+ add[i % period] when add is not NULL) ------------ */
void op_embed_fwd(float *y, const float *table, const int32_t *ids, int64_t n, int d);
/* dtable[ids[i]] += dy[i], in row order (deterministic) */
void op_embed_bwd(pool *p, float *dtable, const float *dy, const int32_t *ids, int64_t n, int d);

/* ---- losses ------------------------------------------------------------------------------ */
/* Cross-entropy of n rows of c logits against targets (-1: ignored). Returns the summed loss
 * over counted rows and their count in *count; dlogits (may be NULL) gets
 * scale * (softmax - onehot) on counted rows, 0 on ignored ones. correct (may be NULL)
 * counts rows whose argmax is the target. */
double op_xent(pool *p, const float *logits, const int32_t *targets, int64_t n, int c,
               float *dlogits, float scale, int64_t *count, int64_t *correct);

/* In-batch contrastive loss (InfoNCE) over n pairs of embeddings a[i], b[i] (d wide, already
 * unit length): logits = a b^T / tau, targets the diagonal, both directions averaged. Returns
 * the loss; da, db get its gradients (written). */
double op_infonce(const float *a, const float *b, int n, int d, float tau, float *da, float *db);

/* L2 normalization of n rows: y = x / |x| (norm [n] saved); bwd writes dx. */
void op_l2norm_fwd(float *y, float *norm, const float *x, int n, int d);
void op_l2norm_bwd(float *dx, const float *dy, const float *y, const float *norm, int n, int d);

#endif
