/*
 * engine/ew_avx2 — element-wise loops with AVX2 and FMA (compiled with those flags by the
 * Makefile; chosen at run time by ew_get()).
 */
#include <immintrin.h>
#include <string.h>

#include "engine/ew.h"

/* ============================================================ exp ===== */

/*
 * exp(x) for 8 floats: x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2 (ln2 in two
 * parts, so r is exact to a few ulp), exp(r) by the classic degree-6 polynomial for floats
 * (coefficients from the Cephes expf), times 2^n built in the exponent field. Within 2 ulp of
 * expf. x is clamped to [-87.3, 88] so that 2^n stays a normal float (no inf, no denormals):
 * below that the true result is < 1.2e-38 and silu's quotient underflows either way.
 */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 pr2 = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r); /* p r^2 + r */
    const __m256 e = _mm256_add_ps(pr2, _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(e, _mm256_castsi256_ps(bits));
}

/* ============================================================ silu ===== */

static inline __m256 silu_mul8(__m256 g, __m256 u) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

static void silu_mul(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(g + i, silu_mul8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) { /* the tail through the same vector code, so position never matters */
        float gt[8] = {0}, ut[8] = {0};
        memcpy(gt, g + i, (size_t)(n - i) * sizeof(float));
        memcpy(ut, u + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(gt, silu_mul8(_mm256_loadu_ps(gt), _mm256_loadu_ps(ut)));
        memcpy(g + i, gt, (size_t)(n - i) * sizeof(float));
    }
}

/* ============================================================ argmax ===== */

/* As the scalar version (ew.c): the maximum over four vector accumulators (max_ps(v, m) keeps
 * m when v is NaN, so NaNs never enter), then the first index equal to it. */
static int64_t argmax(const float *x, int64_t n) {
    if (n <= 1 || x[0] != x[0]) return 0;
    __m256 m0 = _mm256_set1_ps(x[0]), m1 = m0, m2 = m0, m3 = m0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), m1);
        m2 = _mm256_max_ps(_mm256_loadu_ps(x + i + 16), m2);
        m3 = _mm256_max_ps(_mm256_loadu_ps(x + i + 24), m3);
    }
    m0 = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
    float lane[8];
    _mm256_storeu_ps(lane, m0);
    float mx = lane[0];
    for (int j = 1; j < 8; j++) mx = lane[j] > mx ? lane[j] : mx;
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    const __m256 vm = _mm256_set1_ps(mx);
    for (i = 0; i + 8 <= n; i += 8) {
        int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), vm, _CMP_EQ_OQ));
        if (hit) return i + __builtin_ctz((unsigned)hit);
    }
    for (; i < n; i++)
        if (x[i] == mx) return i;
    return 0; /* not reached: mx is one of the x[i] */
}

const ew_ops ew_ops_avx2 = {silu_mul, argmax};
