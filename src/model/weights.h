/*
 * model/weights — reading a model's hyperparameters and weight tensors out of a GGUF file, with
 * every key and tensor checked before use, and the load-time repacking of weight matrices for
 * the kernels. Shared by the decoder loader (model/model.h) and the encoder loader
 * (model/encoder.h); the architecture-specific code says which tensors it wants, this module
 * checks them and keeps the count of parameters and bytes.
 *
 * Repacking: weights whose kernel has a packed layout (tensor/vecdot.h) are copied at load time
 * into that layout, the others in the file's layout, all in one anonymous mapping backed by
 * transparent huge pages (one sequential stream per 16 rows, no TLB misses). The file's pages
 * of those tensors are dropped from the process afterwards (MADV_DONTNEED; they stay in the
 * page cache). Without repacking every weight stays in the read-only file mapping.
 *
 * Errors name the key or tensor and the problem ("tensor 'blk.0.attn_q.weight' has shape [..],
 * expected [..]"); the caller prefixes the file name.
 */
#ifndef SHOAL_MODEL_WEIGHTS_H
#define SHOAL_MODEL_WEIGHTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "gguf/gguf.h"
#include "tensor/dtype.h"

/* A 2-D weight matrix as stored in the file: n_rows rows of n_cols elements each. In GGUF
 * terms n_cols = ne[0] (the input size of y = W x) and n_rows = ne[1] (the output size). */
typedef struct model_mat {
    const char *name;   /* tensor name, owned by the gguf context */
    const void *data;   /* n_rows * row_bytes bytes in the file's layout: into the mapping, or
                         * with repacking a private huge-page copy when the type has no
                         * packed layout (never for tok_embd) */
    uint32_t type;      /* ggml type id (tensor/dtype.h) */
    int64_t n_cols;     /* elements per row */
    int64_t n_rows;     /* rows; 0 for an absent optional matrix */
    size_t row_bytes;   /* bytes per row */
    const void *packed; /* the same matrix in the packed layout (tensor/vecdot.h), or NULL */
    size_t packed_stride; /* bytes per packed group of VECDOT_PACK_ROWS rows */
} model_mat;

/* The loading state of one model: the file, where errors go, the architecture's key prefix and
 * the running totals. Zero-initialise, then set g, err and arch. */
typedef struct weights_loader {
    const gguf_ctx *g;
    sh_err *err;
    const char *arch;                /* key prefix, e.g. "llama", "bert" */
    uint64_t n_params, n_bytes;      /* elements and bytes of every tensor loaded */
    uint64_t type_count[DT_COUNT];   /* elements per 2-D weight type, for weights_type_name */
} weights_loader;

/* The integer hyperparameter "<arch>.<suffix>" into *out; def < 0 means required. Out of
 * [lo, hi], missing (when required) or not an integer: -1 with a message. */
int weights_int(weights_loader *L, const char *suffix, int64_t def, int64_t lo, int64_t hi,
                int *out);

/* The number "<arch>.<suffix>", def when absent; not finite: -1. */
int weights_float(weights_loader *L, const char *suffix, float def, float *out);

/* A 2-D weight of n_rows rows of n_cols whose type has a matmul kernel. A missing tensor is an
 * error when required; when optional, *out is zeroed (n_rows = 0) and 0 returned. */
int weights_mat(weights_loader *L, model_mat *out, const char *name, int64_t n_cols,
                int64_t n_rows, bool required);

/* A 1-D tensor of n elements converted to an owned float array (the caller frees it); *out
 * stays NULL when the tensor is absent and optional. */
int weights_vec(weights_loader *L, float **out, const char *name, int64_t n, bool required);

/* A 2-D tensor of n_rows rows of n_cols converted to an owned float array (row-major), for
 * small tables such as position embeddings; *out stays NULL when absent and optional. */
int weights_table(weights_loader *L, float **out, const char *name, int64_t n_cols,
                  int64_t n_rows, bool required);

/* The tensor `name` if present, with a shape check against [ne0, ne1] (ne1 = 1 for vectors);
 * NULL with *missing set when absent, NULL with an error when misshapen. */
const gguf_tensor *weights_find(weights_loader *L, const char *name, int64_t ne0, int64_t ne1,
                                bool required, bool *missing);

/* The most common 2-D weight type, e.g. "Q8_0", into buf (32 bytes). */
void weights_type_name(const weights_loader *L, char buf[32]);

/* Converts row `row` of a weight matrix to floats (dst has n_cols entries). Returns -1 when
 * the type has no conversion (checked at load time for the token embeddings). */
int model_mat_row(const model_mat *m, int64_t row, float *dst);

/* True when model_mat_row() can convert rows of this type. */
bool model_row_type_ok(uint32_t type);

/* The repacked copy of a set of matrices. */
typedef struct weights_pack {
    void *buf;          /* anonymous mapping holding every repacked matrix, or NULL */
    size_t bytes;       /* its size */
    int n_packed;       /* matrices in a packed layout */
    int n_copied;       /* matrices copied in the file's layout (no packed kernel) */
} weights_pack;

/* Repacks mats[0..n) (entries with n_rows == 0 are skipped; the same matrix must not appear
 * twice) into one huge-page mapping: sets each matrix's packed / packed_stride, or points its
 * data at the copy. drop_file: release the file's pages afterwards (g->mapped). Uses up to 8
 * threads. -1 with a message when memory runs out. Free with weights_pack_free. */
int weights_repack(model_mat *const *mats, int n, bool drop_file, weights_pack *out, sh_err *err);

/* Unmaps the buffer (the matrices pointing into it become invalid). NULL / empty is fine. */
void weights_pack_free(weights_pack *p);

#endif
