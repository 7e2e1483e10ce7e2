/*
 * model/encoder — a BERT-family encoder loaded from a GGUF file with llama.cpp's conventions:
 * hyperparameters, weight views, and the heads that make it an embedder, a sequence
 * classifier, a reranker or a token classifier (a slot / named-entity tagger).
 *
 * Architectures:
 *   bert        learned absolute positions (position_embd), post-norm residuals, GELU FFN with
 *               biases, separate q / k / v with biases (BERT, MiniLM, bge, e5, RoBERTa-style
 *               files converted by llama.cpp);
 *   nomic-bert  rotary positions (NEOX pair layout), SwiGLU FFN without biases, fused QKV
 *               (attn_qkv), no position table (nomic-embed-text).
 * Both: token_embd + token_types row 0 (+ position_embd) -> LayerNorm (token_embd_norm), then
 * per layer x = LN(x + Wo MHA(x)) (attn_output_norm), x = LN(x + FFN(x)) (layer_output_norm);
 * attention is bidirectional within each input. "<arch>.attention.causal" must be false.
 *
 * Pooling ("<arch>.pooling_type", llama.cpp's numbering): none 0, mean 1, cls 2, last 3,
 * rank 4. Heads:
 *   sequence head  optional cls.weight/.bias (dense + tanh) then cls.output.weight/.bias, on
 *                  the first token ([CLS]); label names from "<arch>.classifier.output_labels"
 *                  (outputs without a name are called LABEL_i). One output with rank pooling
 *                  is a reranker's relevance score.
 *   token head     per token, for BIO tagging. llama.cpp has no convention for it; shoal's:
 *                  - a tagger-only file keeps llama.cpp's tensors (cls.output is the per-token
 *                    head, pooling none) and says so with the key
 *                    "shoal.classifier.task" = "token", so llama.cpp still loads it;
 *                  - a file with both heads (intent + slots in one pass, written by
 *                    `shoal train`) has the token head in shoal.token_cls.output.weight/.bias
 *                    with labels in "shoal.token_classifier.output_labels" (llama.cpp refuses
 *                    such a file; `shoal train --export-llama` writes one without it).
 *
 * Weights use any type the decoder supports, repacked at load time like the decoder's
 * (model/weights.h). Every problem with the file is an error naming the file and the key or
 * tensor; nothing in a bad file can make the loader crash.
 */
#ifndef SHOAL_MODEL_ENCODER_H
#define SHOAL_MODEL_ENCODER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "gguf/gguf.h"
#include "model/weights.h"

typedef enum encoder_arch { ENCODER_BERT = 0, ENCODER_NOMIC_BERT = 1 } encoder_arch;

typedef enum encoder_pooling {
    ENCODER_POOL_NONE = 0,
    ENCODER_POOL_MEAN = 1,
    ENCODER_POOL_CLS = 2,
    ENCODER_POOL_LAST = 3,
    ENCODER_POOL_RANK = 4,
} encoder_pooling;

/* "none" ... "rank" -> the value, or -1. */
int encoder_pooling_from_name(const char *name);
const char *encoder_pooling_name(encoder_pooling p);

typedef struct encoder_layer {
    model_mat wq, wk, wv;   /* [dim rows of dim] each, or all n_rows 0 when fused */
    model_mat wqkv;         /* [3 dim rows of dim] (nomic-bert), or n_rows 0 */
    float *bq, *bk, *bv;    /* [dim] or NULL (a fused bias is split into these) */
    model_mat wo;           /* [dim rows of dim] */
    float *bo;              /* [dim] or NULL */
    float *ln1_w, *ln1_b;   /* attn_output_norm [dim] */
    model_mat w_up;         /* [ffn rows of dim] */
    model_mat w_gate;       /* [ffn rows of dim] nomic-bert (SwiGLU), else n_rows 0 */
    float *b_up;            /* [ffn] or NULL */
    model_mat w_down;       /* [dim rows of ffn] */
    float *b_down;          /* [dim] or NULL */
    float *ln2_w, *ln2_b;   /* layer_output_norm [dim] */
} encoder_layer;

typedef struct encoder_hparams {
    encoder_arch arch;
    int n_vocab, dim, n_layers, n_heads, head_dim, ffn;
    int n_ctx_train;        /* longest input, [CLS] and [SEP] included */
    float norm_eps;         /* LayerNorm epsilon */
    int n_rot;              /* nomic-bert: rotary dimensions (<= head_dim); bert: 0 */
    float rope_base;
    encoder_pooling pooling; /* the file's pooling_type */
} encoder_hparams;

/* A linear head: optional dense + tanh, then n_out outputs with names. */
typedef struct encoder_head {
    model_mat dense;        /* [dim rows of dim] (cls.weight), or n_rows 0 */
    float *dense_b;         /* [dim] or NULL */
    model_mat out;          /* [n_out rows of dim] */
    float *out_b;           /* [n_out] or NULL */
    int n_out;              /* 0: no such head */
    char **labels;          /* [n_out] NUL-terminated names (owned) */
} encoder_head;

typedef struct encoder_model {
    gguf_ctx *g;            /* owns the mapping every model_mat points into */
    char *path;             /* owned copy of the file name, for messages */
    encoder_hparams hp;
    model_mat tok_embd;     /* [n_vocab rows of dim], looked up by rows (never repacked) */
    float *type_embd;       /* [dim] row 0 of token_types (every token is "sentence A"), or NULL */
    float *pos_embd;        /* bert: [n_ctx_train][dim]; nomic-bert: NULL */
    float *embd_ln_w, *embd_ln_b; /* token_embd_norm [dim] */
    encoder_layer *layers;  /* [n_layers] */
    encoder_head seq_head;  /* sequence classifier / reranker (n_out 0: none) */
    encoder_head tok_head;  /* token classifier (n_out 0: none) */
    uint64_t n_params, n_bytes;
    char type_name[32];     /* the most common 2-D weight type */
    weights_pack pack;      /* repacked matrices, empty with no_repack */
} encoder_model;

typedef struct encoder_params {
    bool no_repack;         /* keep every weight in the shared file mapping */
} encoder_params;

/* True when the file's general.architecture is one this module loads ("bert", "nomic-bert"). */
bool encoder_is_encoder_file(const gguf_ctx *g);

/* Opens and validates the encoder at path. NULL with "PATH: problem" in err on failure
 * (unsupported architecture, missing tensor, shape mismatch, unsupported tensor type, bad
 * hyperparameters, I/O errors). p may be NULL (defaults: repack). */
encoder_model *encoder_load(const char *path, const encoder_params *p, sh_err *err);

/* Builds an encoder over an already opened GGUF context; on success the model owns g (freed
 * by encoder_free), on failure g is left to the caller. */
encoder_model *encoder_from_gguf(gguf_ctx *g, const encoder_params *p, sh_err *err);

/* Releases everything, including the mapping. NULL is fine. */
void encoder_free(encoder_model *m);

#endif
