/*
 * engine/ew — element-wise loops of the forward pass that have SIMD versions: the FFN's SiLU
 * gate. ew_get() picks the AVX2 + FMA version (ew_avx2.c) when vecdot's ISA level allows AVX2,
 * else the portable scalar one.
 *
 * Every version computes each element with the same operations wherever it sits in the array
 * and however long the array is, so results do not depend on how rows are split across threads
 * or batched. The versions differ from each other in the last bits: the AVX2 exp is a
 * polynomial (within 2 ulp of expf), the scalar one calls expf.
 */
#ifndef SHOAL_ENGINE_EW_H
#define SHOAL_ENGINE_EW_H

#include <stdint.h>

typedef struct ew_ops {
    /* g[i] = g[i] / (1 + exp(-g[i])) * u[i] for i < n (silu(gate) * up) */
    void (*silu_mul)(float *g, const float *u, int64_t n);
} ew_ops;

/* The best implementation for this CPU (static, never NULL). */
const ew_ops *ew_get(void);

/* The AVX2 implementation (ew_avx2.c; call only when the CPU has AVX2 and FMA). */
extern const ew_ops ew_ops_avx2;

#endif
