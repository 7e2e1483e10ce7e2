/*
 * engine/ew — element-wise loops that have SIMD versions: the FFN's SiLU gate, and the argmax
 * over a row of logits that greedy sampling takes for every token. ew_get() picks the AVX2 + FMA version (ew_avx2.c) when vecdot's ISA level allows AVX2,
 * else the portable scalar one.
 *
 * Every version computes each element with the same operations wherever it sits in the array
 * and however long the array is, so results do not depend on how rows are split across threads
 * or batched. The versions differ from each other in the last bits: the AVX2 exp is a
 * polynomial (within 2 ulp of expf), the scalar one calls expf. argmax gives the same index
 * in every version.
 */
#ifndef SHOAL_ENGINE_EW_H
#define SHOAL_ENGINE_EW_H

#include <stdint.h>

typedef struct ew_ops {
    /* g[i] = g[i] / (1 + exp(-g[i])) * u[i] for i < n (silu(gate) * up) */
    void (*silu_mul)(float *g, const float *u, int64_t n);
    /* The index of the largest x[i], i < n, the first one on a tie; NaNs never win, and the
     * answer is 0 when x[0] is NaN or n <= 1 (exactly what the plain loop
     * "if (x[i] > x[best]) best = i" from best = 0 gives). */
    int64_t (*argmax)(const float *x, int64_t n);
} ew_ops;

/* The plain loop above, for tests and as the reference. */
int64_t ew_argmax_ref(const float *x, int64_t n);

/* The best implementation for this CPU (static, never NULL). */
const ew_ops *ew_get(void);

/* The portable implementation, and the AVX2 one (ew_avx2.c; call only when the CPU has AVX2
 * and FMA). */
extern const ew_ops ew_ops_scalar;
extern const ew_ops ew_ops_avx2;

#endif
