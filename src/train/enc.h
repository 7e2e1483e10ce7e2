/*
 * train/enc — a BERT encoder to train: its parameters (the layout of model/encoder.h and
 * llama.cpp's loader), the forward pass over a padded batch and the backward pass of the joint
 * objective:
 *   - intent: cross-entropy of the sequence head on the first token ([CLS]);
 *   - slots: cross-entropy of the token head on each word's first sub-token (BIO tags);
 *   - dropout (when asked: training) on the embeddings and on each residual branch;
 *   - embeddings (optional): InfoNCE with in-batch negatives on the mean-pooled, unit-length
 *     states of paraphrase pairs (sequences i and i + n_pairs of the batch).
 * Per layer (post-norm, as BERT): x = LN(x + Wo Attn(Wqkv x + b) + bo), then
 * x = LN(x + Wdown GELU(Wup x + bup) + bdown); GELU in its tanh form.
 *
 * Memory is bounded at creation: activations for at most max_tokens tokens (b * t of a batch)
 * and max_seqs sequences. Ownership: tenc owns its parameters and buffers (tenc_free).
 */
#ifndef SHOAL_TRAIN_ENC_H
#define SHOAL_TRAIN_ENC_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "engine/pool.h"
#include "train/params.h"

typedef struct tenc_cfg {
    int vocab, dim, layers, heads, ffn;
    int ctx;            /* rows of position_embd: the longest input */
    int n_intents;      /* sequence head outputs (0: none) */
    int n_tags;         /* token head outputs (0: none) */
    float eps;          /* LayerNorm epsilon */
    float init_std;     /* weights ~ N(0, init_std) */
} tenc_cfg;

typedef struct tenc_batch {
    int b, t;                   /* sequences, padded length */
    const int32_t *ids;         /* [b * t], padding anything in range */
    const int *lens;            /* [b] valid tokens */
    const int32_t *intent;      /* [b] label or -1, or NULL */
    const int32_t *tags;        /* [b * t] tag or -1, or NULL */
    int n_pairs;                /* paraphrase pairs: sequence i with i + n_pairs, i < n_pairs */
} tenc_batch;

typedef struct tenc_weights {
    float intent, tags, nce;    /* loss weights */
    float tau;                  /* InfoNCE temperature */
    float dropout;              /* the chance a hidden value is dropped (training: the
                                 * embeddings' output and each layer's attention and FFN outputs,
                                 * before the residual add); 0: none */
    uint64_t drop_key;          /* which values: a pure function of (key, site, index) */
} tenc_weights;

typedef struct tenc_stats {
    double intent_loss, tag_loss, nce_loss; /* summed over counted items (nce: mean) */
    int64_t n_intent, ok_intent, n_tag, ok_tag;
    double loss;                /* the weighted objective that was differentiated */
} tenc_stats;

typedef struct tenc tenc;

/* Creates the model with seeded weights (max_tokens >= b * t of every batch). */
tenc *tenc_init(const tenc_cfg *c, int max_tokens, int max_seqs, uint64_t seed, sh_err *err);
void tenc_free(tenc *m); /* NULL is fine */

const tenc_cfg *tenc_config(const tenc *m);
tparams *tenc_params(tenc *m);

/* Forward over the batch, and with backward the gradients of the weighted objective added to
 * the parameters' gradients. -1 with a message when the batch does not fit. */
int tenc_run(tenc *m, pool *p, const tenc_batch *b, const tenc_weights *w, bool backward,
             tenc_stats *st, sh_err *err);

/* After tenc_run: the intent logits of sequence s ([n_intents]), the tag logits of token
 * (s, i) ([n_tags]), the pooled unit-length embedding of s ([dim]). */
const float *tenc_intent_logits(const tenc *m, int s);
const float *tenc_tag_logits(const tenc *m, int s, int i);
const float *tenc_embedding(const tenc *m, int s);

#endif
