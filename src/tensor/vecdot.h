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
 *
 * Packed layout. Q8_0 and Q4_0 weights can be rearranged once at load time (vecdot_pack) into
 * groups of VECDOT_PACK_ROWS rows interleaved block by block: per 32-element block column, the
 * 16 rows' quantized values are stored so that one 64-byte load holds 4 elements of each of the
 * 16 rows, then (after all block columns) the 16 rows' fp16 scales per block column. A kernel
 * with a matmul_packed function then computes 16 rows at once with no horizontal sums, and one
 * thread reads one contiguous stream per group. Packed Q8_0 values are stored offset by +128
 * (unsigned bytes), packed Q4_0 values keep their bytes. Both layouts are the same for every
 * ISA; which kernels use them is up to the kernel table (vecdot_get(t)->matmul_packed != NULL).
 * The K-quants Q4_K, Q5_K and Q6_K have their own packed layouts, per 256-value super-block
 * (VECDOT_Q4K_PACKED_BYTES, VECDOT_Q5K_PACKED_BYTES, VECDOT_Q6K_PACKED_BYTES).
 *
 * Q8_0 activation rows (act_type DT_Q8_0) produced by vecdot_quantize_act carry, after their
 * blocks (at offset vecdot_act_trailer_offset), per block the scale as a float and the sum of
 * its 32 values (vecdot_act_sum): the packed kernels fold the weight offset into that sum. Kernels
 * on the file layout ignore the trailer.
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
    /* The same product on weights in the packed layout, or NULL when this kernel has none:
     * W is the packed matrix, w_stride the bytes of one group (vecdot_packed_group_bytes);
     * r0, r1 are row numbers of the original matrix (any range, not necessarily a multiple of
     * VECDOT_PACK_ROWS; rows outside it are never written). Its results are those of its own
     * arithmetic, not bit-identical to matmul's: an engine uses one of the two for a matrix. */
    vecdot_matmul_fn matmul_packed;
} vecdot_kernel;

/* Rows per group of the packed layout. */
#define VECDOT_PACK_ROWS 16

/* Q4_K's packed layout: per 256-value super-block, a group's 16 rows take 2368 bytes:
 *   [0, 2048)     the 4-bit values: 64-byte chunk 8c + q holds, for each row r, the 4 bytes
 *                 qs[32c + 4q .. +3] of its block at r * 4 (low nibbles: values 64c + 4q ..,
 *                 of sub-block 2c; high nibbles: values 64c + 32 + 4q .., of sub-block 2c + 1)
 *   [2048, 2176)  the 6-bit scales, sub-block j of row r at 16 j + r
 *   [2176, 2304)  the 6-bit mins in pairs, sub-block j of row r at 32 (j / 2) + 2 r + (j % 2)
 *   [2304, 2336)  the rows' d (f16), [2336, 2368) their dmin (f16) */
#define VECDOT_Q4K_PACKED_BYTES 2368

/* Q5_K's packed layout: Q4_K's with the values' fifth bits in between, 2880 bytes:
 *   [0, 2048)     the low 4 bits, as Q4_K's
 *   [2048, 2560)  the fifth bits: chunk 2c + q / 4, row r at r * 4, byte i: bit q % 4 for value
 *                 64c + 4q + i (the low nibble's), bit 4 + q % 4 for value 64c + 32 + 4q + i
 *   [2560, 2880)  scales, mins, d and dmin as Q4_K's [2048, 2368) */
#define VECDOT_Q5K_PACKED_BYTES 2880

/* Q6_K's packed layout: per 256-value super-block, a group's 16 rows take 3360 bytes (as many
 * as in the file). q is a value's unsigned 6 bits (the file's q - 32 + 32):
 *   [0, 2048)     the low 4 bits, arranged as Q4_K's values: chunk 8c + p, row r at r * 4,
 *                 byte i: low nibble of value 64c + 4p + i, high nibble of value 64c + 32 + 4p + i
 *   [2048, 3072)  the top 2 bits: chunk 4c + t, row r at r * 4, byte i: bits 0-1 of value
 *                 64c + 8t + i, bits 2-3 of 64c + 32 + 8t + i, bits 4-5 of 64c + 8t + 4 + i,
 *                 bits 6-7 of 64c + 32 + 8t + 4 + i (so the chunk serves low chunks 2t, 2t + 1)
 *   [3072, 3328)  the int8 scales in pairs, 16-value sub-block s of row r at 32 (s / 2) + 2 r +
 *                 (s % 2)
 *   [3328, 3360)  the rows' d (f16) */
#define VECDOT_Q6K_PACKED_BYTES 3360

/* True when weights of this type have a packed layout (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K). */
int vecdot_packable(uint32_t wtype);

/* Bytes of one packed group of VECDOT_PACK_ROWS rows of k elements (a multiple of 64), and of
 * a whole packed matrix of n_rows rows (rounded up to full groups; the padding rows are zero).
 * 0 when the type is not packable or k does not fit its blocks. */
size_t vecdot_packed_group_bytes(uint32_t wtype, int64_t k);
size_t vecdot_packed_bytes(uint32_t wtype, int64_t k, int64_t n_rows);

/* Writes the packed form of n_rows rows of k elements (row stride w_stride bytes) to dst,
 * which holds vecdot_packed_bytes(). Only the groups of rows [r0, r1) are written: groups are
 * independent, so r0 must be a multiple of VECDOT_PACK_ROWS unless the range is empty, and
 * r1 should be one too or n_rows (several threads may pack disjoint group ranges). */
void vecdot_pack(uint32_t wtype, int64_t k, const void *W, size_t w_stride, int64_t n_rows,
                 int64_t r0, int64_t r1, void *dst);

/* The best kernel for weights of type wtype on this CPU, or NULL when the type cannot be
 * computed with. Thread-safe; the result is static. */
const vecdot_kernel *vecdot_get(uint32_t wtype);

/* The kernel of exactly this ISA level, or NULL when it is not built or the CPU lacks it
 * (tests compare every level against ISA_SCALAR). */
const vecdot_kernel *vecdot_get_isa(uint32_t wtype, vecdot_isa isa);

/* The ISA level vecdot_get() uses: the CPU's best, capped by SHOAL_ISA. */
vecdot_isa vecdot_best_isa(void);
const char *vecdot_isa_name(vecdot_isa isa);

/* Bytes of one activation row of k elements in act_type (k must be a multiple of its block),
 * including the Q8_0 trailer (see above). */
size_t vecdot_act_row_bytes(uint32_t act_type, int64_t k);

/* Where the trailer of a Q8_0 activation row of nb blocks starts: nb * 34 rounded up to 16. */
static inline size_t vecdot_act_trailer_offset(int64_t nb) {
    return ((size_t)nb * 34 + 15) & ~(size_t)15;
}

/* One trailer entry: the block's scale as a float, the sum s of its values, and -8 s and
 * -128 s (the offsets of packed Q4_0 / Q8_0 weights, ready to broadcast from memory). */
typedef struct vecdot_act_sum {
    float d;
    int32_t s;
    int32_t s_q4_0; /* -8 * s */
    int32_t s_q8_0; /* -128 * s */
} vecdot_act_sum;

/* Converts one row of k floats to act_type (F32: a copy). Q8_0 uses the activation rounding
 * (quant_quantize_row_q8_0_act), not the weight quantizer's, and also writes the trailer; the
 * SIMD version writes the same bytes as the scalar one. */
void vecdot_quantize_act(uint32_t act_type, const float *x, void *y, int64_t k);

#endif
