/*
 * train/gemm_avx2 — the trainer's 4 x 16 micro-kernel (gemm.h) with AVX2 and FMA: 8
 * accumulators; edge tiles go through a small buffer. Called only when the CPU has AVX2.
 */
#include <immintrin.h>
#include <string.h>

#include "train/gemm.h"

static void kernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int mr,
                   int nr, int first) {
    float tile[4][16];
    const int full = mr == 4 && nr == 16;
    float *t = full ? c : &tile[0][0];
    const int64_t lt = full ? ldc : 16;
    if (!full)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 16; j++) tile[i][j] = !first && i < mr && j < nr ? c[i * ldc + j] : 0.0f;
    __m256 acc[4][2];
    for (int i = 0; i < 4; i++) {
        acc[i][0] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(t + i * lt);
        acc[i][1] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(t + i * lt + 8);
    }
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(bp + k * 16), b1 = _mm256_load_ps(bp + k * 16 + 8);
        const float *a = ap + k * 4;
        for (int i = 0; i < 4; i++) {
            const __m256 av = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(t + i * lt, acc[i][0]);
        _mm256_storeu_ps(t + i * lt + 8, acc[i][1]);
    }
    if (!full)
        for (int i = 0; i < mr; i++) memcpy(c + i * ldc, tile[i], (size_t)nr * sizeof(float));
}

const gemm_kernel gemm_kernel_avx2 = {4, 16, kernel, "avx2"};
