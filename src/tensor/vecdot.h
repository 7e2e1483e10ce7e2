/*
 * tensor/vecdot — the hot kernels: weight rows (any supported type) times activation rows.
 *
 * The engine multiplies a weight matrix W (rows of k elements in type wtype, as stored in the
 * GGUF file) by n_act activation rows. Activations are first converted once to the kernel's
 * act_type (F32 for float weights; 8-bit blocks for quantized weights, so the inner loop is an
 * integer dot product: Q8_0 for Q8_0 / Q4_0 / Q5_0, Q8_1 (Q8_0 plus an fp16 block sum) for
 * Q4_1 / Q5_1, Q8_K for the K-quants — the pairing llama.cpp's CPU backend uses, rounded the
 * way its x86 quantizers round) with vecdot_quantize_act(). Then, for a range of weight
 * rows [r0, r1) (the engine splits rows across threads):
 *
 *     out[j * out_stride + r] = dot(W row r, A row j)      for r in [r0, r1), j in [0, n_act)
 *
 * n_act = 1 is the decode path (matrix x vector, bound by memory bandwidth); n_act > 1 is the
 * batched prefill path (matrix x matrix: kernels reuse each weight block for several rows).
 *
 * Every type has a scalar reference kernel that is always built; AVX2 and AVX-512 kernels are
 * compiled in *_avx2.c / *_avx512.c files and chosen at run time from CPUID. The environment
 * variable SHOAL_ISA=scalar|avx2|avx512 caps the level (for benchmarks and debugging).
 * Results of one kernel never depend on n_act or on how rows are split (batch invariance).
 */
#ifndef SHOAL_TENSOR_VECDOT_H
#define SHOAL_TENSOR_VECDOT_H

#include <stddef.h>
#include <stdint.h>

typedef enum vecdot_isa { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 } vecdot_isa;

typedef void (*vecdot_matmul_fn)(int64_t k, const void *W, size_t w_stride, int64_t r0,
                                 int64_t r1, const void *A, size_t a_stride, int64_t n_act,
                                 float *out, int64_t out_stride);

typedef struct vecdot_kernel {
    uint32_t wtype;          /* weight type (tensor/dtype.h) */
    uint32_t act_type;       /* the type activations are converted to */
    vecdot_isa isa;          /* which implementation this is */
    vecdot_matmul_fn matmul; /* see above; w_stride / a_stride are row strides in bytes */
} vecdot_kernel;

/* The best kernel for weights of type wtype on this CPU, or NULL when the type cannot be
 * computed with. Thread-safe; the result is static. */
const vecdot_kernel *vecdot_get(uint32_t wtype);

/* The kernel of exactly this ISA level, or NULL when it is not built or the CPU lacks it
 * (tests compare every level against ISA_SCALAR). */
const vecdot_kernel *vecdot_get_isa(uint32_t wtype, vecdot_isa isa);

/* The ISA level vecdot_get() uses: the CPU's best, capped by SHOAL_ISA. */
vecdot_isa vecdot_best_isa(void);
const char *vecdot_isa_name(vecdot_isa isa);

/* Bytes of one activation row of k elements in act_type (k must be a multiple of its block). */
size_t vecdot_act_row_bytes(uint32_t act_type, int64_t k);

/* Converts one row of k floats to act_type (F32: a copy). Q8_0 uses the activation rounding
 * (quant_quantize_row_q8_0_act), not the weight quantizer's. */
void vecdot_quantize_act(uint32_t act_type, const float *x, void *y, int64_t k);

#endif
