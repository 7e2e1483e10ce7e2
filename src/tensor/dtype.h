/*
 * tensor/dtype — the ggml tensor types a GGUF file can name, and their storage geometry.
 *
 * Every type id that ggml has defined is listed with its name, block size (elements per block)
 * and bytes per block, so that a tensor of a type shoal cannot compute with is still sized
 * correctly and reported by name ("Q3_K is not supported"), never misread. Ids that ggml
 * retired (4, 5, 31-33, 36-38) are unknown.
 */
#ifndef SHOAL_TENSOR_DTYPE_H
#define SHOAL_TENSOR_DTYPE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum dtype {
    DT_F32 = 0,
    DT_F16 = 1,
    DT_Q4_0 = 2,
    DT_Q4_1 = 3,
    DT_Q5_0 = 6,
    DT_Q5_1 = 7,
    DT_Q8_0 = 8,
    DT_Q8_1 = 9,
    DT_Q2_K = 10,
    DT_Q3_K = 11,
    DT_Q4_K = 12,
    DT_Q5_K = 13,
    DT_Q6_K = 14,
    DT_Q8_K = 15,
    DT_IQ2_XXS = 16,
    DT_IQ2_XS = 17,
    DT_IQ3_XXS = 18,
    DT_IQ1_S = 19,
    DT_IQ4_NL = 20,
    DT_IQ3_S = 21,
    DT_IQ2_S = 22,
    DT_IQ4_XS = 23,
    DT_I8 = 24,
    DT_I16 = 25,
    DT_I32 = 26,
    DT_I64 = 27,
    DT_F64 = 28,
    DT_IQ1_M = 29,
    DT_BF16 = 30,
    DT_TQ1_0 = 34,
    DT_TQ2_0 = 35,
    DT_MXFP4 = 39,
    DT_COUNT = 40 /* one past the largest id; not a type */
} dtype;

/* True when id names a type whose geometry is known. */
bool dtype_known(uint32_t id);

/* "Q4_K", or "unknown" for an id dtype_known() rejects. Never NULL. */
const char *dtype_name(uint32_t id);

/* Elements per block (1 for plain types, 32 or 256 for quantized ones); 0 when unknown. */
uint32_t dtype_block_elems(uint32_t id);

/* Bytes per block; 0 when unknown. */
uint32_t dtype_block_bytes(uint32_t id);

/* Bytes of a row of n elements. Returns false (and leaves *out alone) when the id is unknown,
 * n is not a multiple of the block size, or the size overflows uint64. */
bool dtype_row_bytes(uint32_t id, uint64_t n, uint64_t *out);

/* Parses a type name, case-insensitively ("q8_0", "F16"); returns -1 when no type has it. */
int dtype_from_name(const char *name);

#endif
