/*
 * engine/engine — the CPU forward pass of a llama / qwen2 model, with a KV cache that holds
 * several independent sequences.
 *
 * An engine is created over a loaded model (which it borrows) and owns every buffer the
 * forward pass needs, sized at creation for at most n_batch tokens per call: nothing is
 * allocated per token.
 *
 * A batch is a list of entries (token, seq, pos): entry i feeds `token` at position `pos` of
 * sequence `seq`. Each sequence has its own KV region of n_ctx positions, so one batch can mix
 * the prompt of one sequence with decode steps of others (continuous batching). Within a batch
 * the entries of one sequence must have consecutive positions, the first no greater than the
 * sequence's current length (a smaller one drops the cached positions from there on: this is
 * how a sequence is rewound or restarted). An entry attends to positions 0..pos of its own
 * sequence only, and all per-token work is row-independent, so a sequence's logits do not
 * depend on what else is in the batch (batch invariance); prefill and token-by-token decode of
 * the same tokens give the same logits up to the kernels' rounding (exactly the same with the
 * reference kernels).
 *
 * Per layer (x is the residual stream, one row per entry):
 *   h = rmsnorm(x) * attn_norm;  q, k, v = Wq h (+bq), Wk h (+bk), Wv h (+bv)
 *   RoPE on q and k (normal or NEOX pair layout); k, v stored in the cache (f16 or f32)
 *   a = softmax(q K^T / sqrt(head_dim), causal) V   per head, GQA: head h reads kv head
 *       h / (n_heads / n_kv_heads)
 *   x += Wo a (+bo);  h = rmsnorm(x) * ffn_norm;  x += Wdown (silu(Wgate h) * (Wup h))
 * then logits = Woutput (rmsnorm(x) * output_norm) for the entries that ask for them.
 */
#ifndef SHOAL_ENGINE_ENGINE_H
#define SHOAL_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "model/model.h"

typedef struct engine_params {
    int n_ctx;      /* positions per sequence; 0: the model's context length */
    int n_seq;      /* sequences with their own KV region; 0: 1 */
    int n_batch;    /* most entries per engine_decode call; 0: min(n_ctx, 512) */
    int n_logits;   /* most entries per call that ask for logits; 0: n_seq */
    int n_threads;  /* 0: the number of online CPUs */
    bool kv_f32;    /* KV cache in f32 instead of f16 */
} engine_params;

typedef struct engine_batch {
    int n;                 /* entries */
    const int32_t *token;  /* [n] token ids */
    const int32_t *pos;    /* [n] positions */
    const int32_t *seq;    /* [n] sequence ids, or NULL: all 0 */
    const uint8_t *logits; /* [n] nonzero: compute this entry's logits; NULL: only the last */
    bool all_hidden;       /* run the last layer for every entry, not only those that want
                            * logits, so engine_hidden() is valid for all (embeddings) */
} engine_batch;

typedef struct engine engine;

/* Fills p with the defaults (all zero: see the fields). */
void engine_params_default(engine_params *p);

/* Creates an engine over m (borrowed: it must outlive the engine). NULL with a message when
 * the parameters are out of range or memory runs out. */
engine *engine_init(const model *m, const engine_params *p, sh_err *err);

/* Stops the threads and releases every buffer. NULL is fine. */
void engine_free(engine *e);

/* Runs one batch through the model: stores k/v of every entry in the cache and computes the
 * logits of the entries that ask for them. Returns -1 with a message (and changes nothing)
 * when the batch is invalid: too many entries, token / seq / pos out of range, positions that
 * are not consecutive within a sequence or skip past its length, too many logits. */
int engine_decode(engine *e, const engine_batch *b, sh_err *err);

/* The logits (n_vocab floats) of entry i of the last engine_decode batch, or NULL when that
 * entry did not ask for them. Valid until the next engine_decode. */
const float *engine_logits(const engine *e, int i);

/* The hidden state of entry i of the last engine_decode batch: dim floats, the residual stream
 * after the last layer and before the final norm (embeddings pool these). Available for the
 * entries that asked for logits, and for all entries of a batch with all_hidden set (the last
 * layer is otherwise skipped for the rest). Valid until the next engine_decode. */
const float *engine_hidden(const engine *e, int i);

/* Cached length of sequence seq (positions 0..len-1 are valid). */
int engine_seq_len(const engine *e, int seq);

/* Keeps only the first len positions of sequence seq (0 clears it). */
void engine_seq_truncate(engine *e, int seq, int len);

/* Copies the first len cached positions of sequence src into sequence dst (which then has
 * length len; its later positions are dropped), e.g. to start several sequences from one
 * prefilled prompt. len must not exceed src's length; src == dst is a no-op. */
void engine_seq_copy(engine *e, int src, int dst, int len);

/* Accessors. */
const model *engine_model(const engine *e);
int engine_n_ctx(const engine *e);
int engine_n_seq(const engine *e);
int engine_n_batch(const engine *e);
int engine_n_threads(const engine *e);

#endif
