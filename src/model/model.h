/*
 * model/model — a llama / qwen2 model loaded from a GGUF file: hyperparameters and views of
 * the weight tensors.
 *
 * The GGUF file stays mmapped read-only; 2-D weights are used in whatever type the file stores,
 * as long as a vecdot kernel exists for that type. 1-D tensors (norm weights, biases, RoPE
 * frequency factors) are small and converted to owned float arrays at load time.
 *
 * Repacking (the default): weights whose kernel has a packed layout (tensor/vecdot.h; Q8_0 and
 * Q4_0 with AVX-512) are copied at load time into that layout, in anonymous memory backed by
 * transparent huge pages, which is what makes the engine's matmuls fast (interleaved rows for
 * the register-blocked kernels, one sequential stream per 16 rows, no TLB misses). The other
 * matrices the engine multiplies with are copied there too, in the file's layout (huge pages
 * only). The cost:
 * those weights are private to the process (about the size of the file's weights, plus
 * padding to 16 rows) and loading reads the whole file once. The file's pages of repacked
 * tensors are released from the mapping afterwards (MADV_DONTNEED; they stay in the page
 * cache). model_params.no_repack keeps every weight in the shared read-only file mapping
 * instead (several processes serving the same file share one copy), at lower speed.
 * The token embeddings are never repacked (rows are looked up one at a time); with tied
 * embeddings the output projection gets its own packed copy.
 *
 * Supported: arch "llama" (Llama 2/3, TinyLlama, SmolLM2, Mistral-style; RoPE "normal" mode,
 * rotating adjacent pairs 2i, 2i+1) and "qwen2" (RoPE NEOX mode, rotating i with i + n_rot/2;
 * q/k/v biases). Tied embeddings (no output.weight: token_embd is the output projection),
 * GQA / MQA, head size from attention.key_length, partial rotary (rope.dimension_count <
 * head size), linear RoPE scaling and Llama-3 rope_freqs factors.
 *
 * Every problem with the file is an error naming the file and the problem; nothing in a bad
 * file can make the loader crash.
 */
#ifndef SHOAL_MODEL_MODEL_H
#define SHOAL_MODEL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "gguf/gguf.h"
#include "model/weights.h"

typedef enum model_arch { MODEL_ARCH_LLAMA = 0, MODEL_ARCH_QWEN2 = 1 } model_arch;

typedef enum model_rope { MODEL_ROPE_NORM = 0, MODEL_ROPE_NEOX = 1 } model_rope;

/* Loading options; zero-initialised = the defaults. */
typedef struct model_params {
    bool no_repack;     /* keep every weight in the shared file mapping (see above) */
} model_params;

typedef struct model_layer {
    float *attn_norm;   /* [dim] */
    model_mat wq;       /* [n_heads*head_dim rows of dim] */
    model_mat wk, wv;   /* [n_kv_heads*head_dim rows of dim] */
    model_mat wo;       /* [dim rows of n_heads*head_dim] */
    float *bq;          /* [n_heads*head_dim] or NULL */
    float *bk, *bv;     /* [n_kv_heads*head_dim] or NULL */
    float *bo;          /* [dim] or NULL */
    float *ffn_norm;    /* [dim] */
    model_mat w_gate;   /* [ffn rows of dim] */
    model_mat w_up;     /* [ffn rows of dim] */
    model_mat w_down;   /* [dim rows of ffn] */
} model_layer;

typedef struct model_hparams {
    model_arch arch;
    int n_vocab;        /* rows of token_embd */
    int dim;            /* embedding size */
    int n_layers;
    int n_heads;
    int n_kv_heads;     /* divides n_heads (1: MQA, < n_heads: GQA) */
    int head_dim;       /* attention.key_length, or dim / n_heads */
    int ffn;            /* feed-forward hidden size */
    int n_ctx_train;    /* context_length from the file */
    int n_rot;          /* rope.dimension_count, even, <= head_dim */
    model_rope rope;    /* pair layout */
    float rope_base;    /* rope.freq_base */
    float rope_scale;   /* position multiplier: 1 / rope.scaling.factor for linear scaling */
    float norm_eps;     /* RMSNorm epsilon */
} model_hparams;

typedef struct model {
    gguf_ctx *g;            /* owns the mapping every model_mat points into */
    char *path;             /* owned copy of the file name, for messages */
    model_hparams hp;
    model_mat tok_embd;     /* [n_vocab rows of dim] */
    float *output_norm;     /* [dim] */
    model_mat output;       /* [n_vocab rows of dim]; a copy of tok_embd when tied */
    bool tied;              /* no output.weight in the file */
    float *rope_freqs;      /* [n_rot/2] divisors of each rotation frequency, or NULL */
    model_layer *layers;    /* [n_layers] */
    uint64_t n_params;      /* elements of every tensor used */
    uint64_t n_bytes;       /* bytes of those tensors */
    char type_name[32];     /* the most common 2-D weight type, e.g. "Q8_0" */
    weights_pack pack;      /* the repacked matrices (model/weights.h), empty with no_repack */
    int n_packed;           /* matrices repacked (= pack.n_packed) */
    int n_copied;           /* matrices copied in the file's layout (no packed kernel) */
} model;

/* Opens and validates the model at path. NULL with "PATH: problem" in err on failure
 * (unsupported architecture, missing tensor, shape mismatch, unsupported tensor type, bad
 * hyperparameters, I/O errors). */
model *model_load(const char *path, sh_err *err);

/* model_load with options (p NULL: defaults; model_load repacks). */
model *model_load_ex(const char *path, const model_params *p, sh_err *err);

/* Builds a model over an already opened GGUF context; on success the model owns g (freed by
 * model_free), on failure g is left to the caller. For tests with in-memory files. */
model *model_from_gguf(gguf_ctx *g, sh_err *err);
model *model_from_gguf_ex(gguf_ctx *g, const model_params *p, sh_err *err);

/* Releases everything, including the mapping. NULL is fine. */
void model_free(model *m);

#endif
