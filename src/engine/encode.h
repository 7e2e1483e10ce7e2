/*
 * engine/encode — the CPU forward pass of a BERT-family encoder (model/encoder.h) over a ragged
 * batch: several inputs of different lengths, packed one after another with no padding, in one
 * pass. There is no KV cache: every call starts from the tokens.
 *
 * An encode context borrows the model and owns every buffer of the forward pass, sized at
 * creation for at most n_tokens tokens and n_seqs inputs per call: nothing is allocated per
 * call. Per input of n tokens (positions 0..n-1):
 *
 *   x = LN(tok_embd[id] + token_types[0] (+ position_embd[pos]))         token_embd_norm
 *   per layer:
 *     q, k, v = Wq x + bq, Wk x + bk, Wv x + bv   (nomic-bert: one fused Wqkv, then RoPE)
 *     a = softmax(q k^T / sqrt(head_dim)) v       per head, over the input's own tokens
 *     x = LN(x + Wo a + bo)                        attn_output_norm
 *     h = GELU(Wup x + bup)                        (nomic-bert: silu(Wgate x) * (Wup x))
 *     x = LN(x + Wdown h + bdown)                  layer_output_norm
 *   pooled = mean / first / last token of x   (pooling none: per token only)
 *   sequence head = Wout tanh(Wdense x[first] + bdense) + bout   (dense optional)
 *   token head    = Wout x[t] + bout, per token (a tagger file's dense + tanh first if present)
 *
 * The arithmetic follows llama.cpp's CPU backend where it matters for agreement
 * (scripts/compare-encoder.sh): activations of F16 / BF16 weights are rounded to f16 / bf16
 * before the product (llama.cpp converts them to the weight's type), quantized weights take
 * 8-bit activations, GELU goes through its f16 table, LayerNorm rounds as it does
 * (engine/ew.h). Attention is in f32.
 *
 * Every input is computed independently of what else shares the batch (row-independent work,
 * attention within the input only, kernels that do not depend on the number of rows), so an
 * input's outputs are the same alone or batched, for any thread count.
 */
#ifndef SHOAL_ENGINE_ENCODE_H
#define SHOAL_ENGINE_ENCODE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "model/encoder.h"

typedef struct encode_params {
    int n_tokens;       /* most tokens per encode_run (all inputs together); 0: 2048, raised
                         * to the model's n_ctx_train when that is longer */
    int n_seqs;         /* most inputs per encode_run; 0: 256 */
    int n_threads;      /* 0: the number of online CPUs */
    int pooling;        /* an encoder_pooling overriding the file's, or -1: the file's */
} encode_params;

/* What a call computes besides the hidden states (which are always there). */
enum {
    ENCODE_POOLED = 1,  /* the pooled vector of each input (mean / cls / last; rank: the first
                         * token's state) */
    ENCODE_SEQ_HEAD = 2, /* the sequence head's outputs per input (needs a sequence head) */
    ENCODE_TOK_HEAD = 4, /* the token head's outputs per token (needs a token head) */
};

typedef struct encode_batch {
    int n_seq;              /* inputs, 1..n_seqs */
    const int32_t *tokens;  /* the inputs' token ids one after another */
    const int *n_tokens;    /* [n_seq] tokens of each input, 1..n_ctx_train */
    unsigned want;          /* ENCODE_* flags */
} encode_batch;

typedef struct encode_ctx encode_ctx;

void encode_params_default(encode_params *p);

/* Creates a context over m (borrowed: it must outlive the context). NULL with a message when
 * the parameters are out of range or memory runs out. */
encode_ctx *encode_init(const encoder_model *m, const encode_params *p, sh_err *err);

/* Stops the threads and releases every buffer. NULL is fine. */
void encode_free(encode_ctx *e);

/* Runs the batch. -1 with a message (and nothing computed) when it is invalid: too many inputs
 * or tokens, an input empty or longer than the model's context, a token id out of range, a
 * head asked for that the model does not have. */
int encode_run(encode_ctx *e, const encode_batch *b, sh_err *err);

/* Results of the last encode_run, valid until the next one. seq indexes the batch's inputs,
 * tok the batch's tokens (all inputs together). */
const float *encode_hidden(const encode_ctx *e, int tok);      /* [dim] final hidden state */
const float *encode_pooled(const encode_ctx *e, int seq);      /* [dim] not normalized */
const float *encode_seq_logits(const encode_ctx *e, int seq);  /* [seq_head.n_out] raw */
const float *encode_tok_logits(const encode_ctx *e, int tok);  /* [tok_head.n_out] raw */

/* The pooling in effect (the file's or the override). */
encoder_pooling encode_pooling(const encode_ctx *e);
const encoder_model *encode_model(const encode_ctx *e);
int encode_n_tokens(const encode_ctx *e);
int encode_n_seqs(const encode_ctx *e);
int encode_n_threads(const encode_ctx *e);

#endif
