/*
 * model/modelgen — writes seeded random-weight llama / qwen2 GGUF models for tests and
 * benchmarks, with a real tokenizer copied from a vocab GGUF (every tokenizer.* key).
 *
 * Weights ~ N(0, init_std); norm weights ~ 1 + N(0, norm_std); biases ~ N(0, init_std).
 * Each tensor draws from its own stream seeded by (seed, tensor name), so the same parameters
 * give byte-identical files, and adding layers leaves the existing tensors unchanged.
 *
 * Tensor layout (ne0 = row length first):
 *   token_embd.weight [dim, n_vocab]          output.weight [dim, n_vocab] (absent if tied)
 *   blk.N.attn_norm.weight [dim]              blk.N.ffn_norm.weight [dim]
 *   blk.N.attn_q.weight [dim, heads*hd]       (+ attn_q.bias [heads*hd] with qkv_bias)
 *   blk.N.attn_k/v.weight [dim, kv_heads*hd]  (+ attn_k/v.bias [kv_heads*hd])
 *   blk.N.attn_output.weight [heads*hd, dim]
 *   blk.N.ffn_gate/up.weight [dim, ffn]       blk.N.ffn_down.weight [ffn, dim]
 *   output_norm.weight [dim]
 * 2-D tensors are F32 or F16 (dtype); 1-D tensors are always F32.
 *
 * Encoders (arch "bert" / "nomic-bert", the layout of model/encoder.h and of llama.cpp's
 * loader, so llama.cpp loads them too unless a joint token head is asked for): token_embd,
 * token_types [dim, type_vocab], position_embd [dim, ctx] (bert), token_embd_norm, per layer
 * attn_q/k/v + biases (bert) or attn_qkv (nomic-bert), attn_output (+ bias for bert),
 * attn_output_norm, ffn_up (+ bias) / ffn_gate (nomic-bert) / ffn_down (+ bias),
 * layer_output_norm; heads from cls_labels / cls_dense / tok_labels. LayerNorm weights ~ 1 +
 * N(0, norm_std), their biases and every other tensor ~ N(0, init_std). A WordPiece vocab
 * without them gets bos = [CLS], eos = [SEP], add_bos / add_eos = true, add_sep = false (what
 * llama.cpp's converter writes for a BERT tokenizer), and tokenizer.ggml.token_type_count.
 */
#ifndef SHOAL_MODEL_MODELGEN_H
#define SHOAL_MODEL_MODELGEN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"

typedef struct modelgen_params {
    const char *arch;   /* "llama" or "qwen2" */
    const char *vocab;  /* path of a GGUF whose tokenizer.* keys are copied */
    const char *name;   /* general.name; NULL: "shoal-random" */
    uint32_t dim, layers, heads, kv_heads, ffn, ctx;
    uint32_t head_dim;  /* 0: dim / heads; otherwise written as attention.key/value_length */
    float rope_theta, norm_eps, init_std, norm_std;
    bool tied, qkv_bias;
    uint32_t dtype;     /* DT_F32 or DT_F16 */
    uint64_t seed;
    /* encoders */
    int pooling;            /* encoder pooling type written (none 0, mean 1, cls 2, last 3,
                             * rank 4); default mean */
    const char *cls_labels; /* "a,b,c": a sequence head with these labels, or NULL */
    bool cls_dense;         /* the sequence head has cls.weight / cls.bias (dense + tanh) */
    const char *tok_labels; /* "O,B-x,I-x": a token head with these tags, or NULL */
    bool tok_only;          /* the token head is cls.output with shoal.classifier.task =
                             * "token" (no sequence head; llama.cpp loads it); otherwise it is
                             * shoal.token_cls.output */
    uint32_t type_vocab;    /* rows of token_types (default 2) */
} modelgen_params;

/* Defaults: llama, dim 64, 2 layers, 4 heads, kv_heads = heads, ffn 172, ctx 2048,
 * rope_theta 10000, norm_eps 1e-5, init_std 0.02, norm_std 0.1, F32, seed 0 (encoders: ffn
 * 4 dim when left at 172, ctx 512, norm_eps 1e-12 unless given, mean pooling, 2 token types). */
void modelgen_defaults(modelgen_params *p);

/* Validates p, generates the model and writes it to path (atomically). On success stores the
 * parameter count in *n_params (if not NULL). */
int modelgen_write(const modelgen_params *p, const char *path, uint64_t *n_params, sh_err *err);

#endif
