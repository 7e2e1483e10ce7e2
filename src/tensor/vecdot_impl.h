/*
 * tensor/vecdot_impl — private glue between vecdot.c (dispatch, scalar kernels) and the
 * per-ISA kernel files vecdot_avx2.c / vecdot_avx512.c. Not part of the engine contract.
 *
 * Each ISA file exports a table of the kernels it implements, terminated by an entry with
 * matmul == NULL. The tables are plain data, so referencing them from baseline code is safe;
 * their functions are only called after CPUID says the instructions exist.
 */
#ifndef SHOAL_TENSOR_VECDOT_IMPL_H
#define SHOAL_TENSOR_VECDOT_IMPL_H

#include "tensor/vecdot.h"

extern const vecdot_kernel vecdot_avx2_kernels[];
extern const vecdot_kernel vecdot_avx512_kernels[];

/* vecdot_quantize_act for DT_Q8_0 (k a multiple of 32): blocks as quant_quantize_row_q8_0_act
 * (scale 127 / amax, ties to even) followed by the trailer. The scalar version, and the AVX-512
 * one, which writes the same bytes for every finite input (the same float operations; only the
 * order of the max, which is exact, differs). */
void vecdot_scalar_quantize_q8_0(const float *x, void *y, int64_t k);
void vecdot_avx512_quantize_q8_0(const float *x, void *y, int64_t k);

/* How many activation rows the SIMD kernels process together per weight block. Each
 * activation row keeps its own accumulators, so grouping never changes a result. */
#define VECDOT_ACT_GROUP 4

#endif
