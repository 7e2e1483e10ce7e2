/*
 * train/gemm_avx512 — the trainer's 8 x 32 micro-kernel (gemm.h): 16 accumulators, two vectors
 * of B and a broadcast of A per step; edge tiles masked. Compiled with AVX-512 flags, called
 * only when the CPU has them.
 */
#include <immintrin.h>

#include "train/gemm.h"

static void kernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int mr,
                   int nr, int first) {
    const __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
    const __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
    __m512 acc[8][2];
    for (int i = 0; i < 8; i++) {
        if (first || i >= mr) {
            acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        } else {
            acc[i][0] = _mm512_maskz_loadu_ps(m0, c + i * ldc);
            acc[i][1] = _mm512_maskz_loadu_ps(m1, c + i * ldc + 16);
        }
    }
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(bp + k * 32), b1 = _mm512_load_ps(bp + k * 32 + 16);
        const float *a = ap + k * 8;
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            const __m512 av = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < mr; i++) {
        _mm512_mask_storeu_ps(c + i * ldc, m0, acc[i][0]);
        _mm512_mask_storeu_ps(c + i * ldc + 16, m1, acc[i][1]);
    }
}

const gemm_kernel gemm_kernel_avx512 = {8, 32, kernel, "avx512"};
