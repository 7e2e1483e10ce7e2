/*
 * model/quantize — converts a GGUF model to another weight type, tensor by tensor, with
 * llama.cpp's choice of per-tensor types, so that `shoal quantize` output is byte-identical
 * to llama.cpp's for the legacy types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) and loads in llama.cpp
 * for the others.
 *
 * The rules (from llama.cpp's quantizer):
 *   - only tensors with 2+ dimensions whose name ends in "weight" (not *_norm.weight) change
 *     type; everything else is copied as it is;
 *   - output.weight (or token_embd.weight when there is no output.weight) becomes Q6_K for the
 *     quantized file types, Q8_0 when its rows are not a multiple of 256 (and stays Q8_0 in a
 *     Q8_0 file);
 *   - Q4_K_M / Q5_K_M store attn_v and ffn_down as Q6_K in the first and last eighth of the
 *     layers and every third layer between; Q4_K_S stores the first 4 attn_v and the first
 *     eighth of ffn_down as Q5_K;
 *   - a row length that is not a multiple of the block size falls back: Q4_K -> Q5_0,
 *     Q5_K -> Q5_1, Q6_K -> Q8_0, legacy types -> F16, and F16 when the fallback does not fit
 *     either;
 *   - the pure types ("q4_k", "q5_k", "q6_k") give every quantizable tensor that one type.
 * Tensors are written in llama.cpp's order (non-layer tensors by name, then layer by layer,
 * by name within a layer); metadata is copied in file order with general.file_type and
 * general.quantization_version (= 2) moved to the end.
 */
#ifndef SHOAL_MODEL_QUANTIZE_H
#define SHOAL_MODEL_QUANTIZE_H

#include <stdint.h>

#include "core/err.h"

/* Called once per tensor before it is converted: i of n, name, source and target type. */
typedef void (*quantize_progress_fn)(void *ud, uint64_t i, uint64_t n, const char *name,
                                     uint32_t from, uint32_t to, const uint64_t *ne);

/* True when name is a file type `quantize_file` accepts (case-insensitive). */
int quantize_type_known(const char *name);

/* A space-separated list of the accepted file type names (for usage messages). */
const char *quantize_type_names(void);

/* Reads the GGUF file in, converts it to file type `type` ("q4_0", "q4_k_m", ...) and writes
 * out (atomically). n_threads >= 1 rows are quantized in parallel (the result does not depend
 * on it). progress may be NULL. Returns 0, or -1 with a message in err. */
int quantize_file(const char *in, const char *out, const char *type, int n_threads,
                  quantize_progress_fn progress, void *ud, sh_err *err);

#endif
