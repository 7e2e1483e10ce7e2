/*
 * train/lm — a small llama-architecture causal LM to train: parameters in the layout of
 * model/model.h (and llama.cpp's "llama" loader), the forward pass over a padded batch and the
 * backward pass of next-token cross-entropy on the positions that have a target.
 * Per layer: x += Wo Attn(RoPE(Wq h), RoPE(Wk h), Wv h) with h = RMSNorm(x) * attn_norm
 * (causal, GQA when kv_heads < heads, RoPE on adjacent pairs as llama.cpp's "normal" mode),
 * then x += Wdown (silu(Wgate h2) * Wup h2) with h2 = RMSNorm(x) * ffn_norm; logits =
 * Wout (RMSNorm(x) * output_norm), Wout = token_embd when tied.
 *
 * Memory is bounded at creation (max_tokens, max_seqs, max_t). Ownership: tlm owns everything.
 */
#ifndef SHOAL_TRAIN_LM_H
#define SHOAL_TRAIN_LM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "engine/pool.h"
#include "train/params.h"

typedef struct tlm_cfg {
    int vocab, dim, layers, heads, kv_heads, ffn;
    int ctx;            /* context_length written to the file (and the longest sequence) */
    float rope_base, eps, init_std;
    bool tied;          /* no output.weight: the output projection is token_embd */
} tlm_cfg;

typedef struct tlm_batch {
    int b, t;
    const int32_t *ids;     /* [b * t] */
    const int32_t *targets; /* [b * t] the next token to predict, or -1 */
    const int *lens;        /* [b] */
} tlm_batch;

typedef struct tlm_stats {
    double loss;            /* summed over counted positions */
    int64_t n, correct;     /* counted positions, argmax = target */
} tlm_stats;

typedef struct tlm tlm;

tlm *tlm_init(const tlm_cfg *c, int max_tokens, int max_seqs, int max_t, uint64_t seed, sh_err *err);
void tlm_free(tlm *m);
const tlm_cfg *tlm_config(const tlm *m);
tparams *tlm_params(tlm *m);

/* Forward (and with backward the gradient of the mean loss added to the parameters'). */
int tlm_run(tlm *m, pool *p, const tlm_batch *b, bool backward, tlm_stats *st, sh_err *err);

/* After tlm_run: the logits of token (s, i) ([vocab]). */
const float *tlm_logits(const tlm *m, int s, int i);

#endif
