/*
 * engine/ew_avx2 — element-wise loops with AVX2 and FMA (compiled with those flags by the
 * Makefile; chosen at run time by ew_get()).
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "engine/ew.h"

/* ============================================================ exp ===== */

/* 2^k for integral k in [-126, 127] (as floats), built in the exponent field */
static inline __m256 pow2i(__m256 k) {
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23));
}

/* ew_vexpf for 8 floats: the same FMAs, and j * 2^n as (j * 2^n1) * 2^(n - n1) with n1 = n / 2
 * truncated (the first product exact, the second rounded once, as vscalefps rounds j * 2^n);
 * lanes with |n| > 192 get 0 or +inf. Bit-identical to the scalar function. */
static inline __m256 vexp8(__m256 x) {
    const __m256 shift = _mm256_set1_ps(0x1.8p23f);
    const __m256 n = _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shift), shift);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b,
                                        _mm256_set1_ps(0x1.573e2ep-5f)),
                        u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b,
                                        _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), b, _mm256_set1_ps(1.0f)));
    /* clamp (a NaN n becomes 192: j is NaN there, and so is the product) */
    const __m256 nc = _mm256_max_ps(_mm256_min_ps(n, _mm256_set1_ps(192.0f)), _mm256_set1_ps(-192.0f));
    const __m256 n1 = _mm256_round_ps(_mm256_mul_ps(nc, _mm256_set1_ps(0.5f)),
                                      _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 r = _mm256_mul_ps(_mm256_mul_ps(j, pow2i(n1)), pow2i(_mm256_sub_ps(nc, n1)));
    const __m256 big = _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), n),
                                     _mm256_set1_ps(192.0f), _CMP_GT_OQ);
    const __m256 alt = _mm256_andnot_ps(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ),
                                        _mm256_set1_ps(INFINITY));
    return _mm256_blendv_ps(r, alt, big);
}

/* ============================================================ silu ===== */

static inline __m256 silu_mul8(__m256 g, __m256 u) {
    const __m256 e = vexp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

static void silu_mul(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(g + i, silu_mul8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) { /* the tail through the same vector code (every lane is independent) */
        float gt[8] = {0}, ut[8] = {0};
        memcpy(gt, g + i, (size_t)(n - i) * sizeof(float));
        memcpy(ut, u + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(gt, silu_mul8(_mm256_loadu_ps(gt), _mm256_loadu_ps(ut)));
        memcpy(g + i, gt, (size_t)(n - i) * sizeof(float));
    }
}

/* ============================================================ softmax ===== */

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The scalar version's operations: a chunk of 16 is two registers, lane l + 8 is the other
 * register's lane l, and hsum8 takes lanes + 4, + 2, + 1 (the tree); a partial last chunk is
 * loaded into zeroed registers. */
static void softmax(float *s, int n) {
    float mx = -INFINITY;
    for (int t = 0; t < n; t++) mx = mx > s[t] ? mx : s[t];
    const __m256 vmx = _mm256_set1_ps(mx);
    double sum = 0;
    int c = 0;
    for (; c + 16 <= n; c += 16) {
        const __m256 e0 = vexp8(_mm256_sub_ps(_mm256_loadu_ps(s + c), vmx));
        const __m256 e1 = vexp8(_mm256_sub_ps(_mm256_loadu_ps(s + c + 8), vmx));
        _mm256_storeu_ps(s + c, e0);
        _mm256_storeu_ps(s + c + 8, e1);
        sum += (double)hsum8(_mm256_add_ps(e0, e1));
    }
    if (c < n) {
        float t[16];
        for (int l = 0; l < 16; l++) t[l] = c + l < n ? s[c + l] - mx : -INFINITY; /* exp: 0 */
        const __m256 e0 = vexp8(_mm256_loadu_ps(t)), e1 = vexp8(_mm256_loadu_ps(t + 8));
        _mm256_storeu_ps(t, e0);
        _mm256_storeu_ps(t + 8, e1);
        for (int l = 0; c + l < n; l++) s[c + l] = t[l];
        sum += (double)hsum8(_mm256_add_ps(e0, e1));
    }
    const __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
    int t = 0;
    for (; t + 8 <= n; t += 8) _mm256_storeu_ps(s + t, _mm256_mul_ps(_mm256_loadu_ps(s + t), inv));
    for (; t < n; t++) s[t] *= _mm256_cvtss_f32(inv);
}

/* ============================================================ rope ===== */

/* The portable version's loop: compiled with -mfma, fmaf is one vfmadd instruction. A few
 * hundred pairs per token and layer, next to millions of multiply-adds in the matmuls: not
 * worth vectorising, but worth this copy (the portable one calls libm's fmaf: pointing this
 * table at it cost ~5% of m134 Q8_0 prompt speed, measured). */
static void rope(float *v, const float *cs, int n_rot, int neox) {
    const int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float x0 = v[a], x1 = v[b], c = cs[2 * i], s = cs[2 * i + 1];
        v[a] = fmaf(x0, c, -(x1 * s));
        v[b] = fmaf(x0, s, x1 * c);
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

/* ============================================================ LayerNorm, GELU ===== */

/* ew.c's layernorm: the double sums in four lanes, the squares of a chunk of 16 as two
 * registers added lane by lane (l + 8) and then by hsum8's tree (+ 4, + 2, + 1). */
static void layernorm(float *out, const float *x, const float *w, const float *b, int n,
                      float eps) {
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    double sd[4];
    _mm256_storeu_pd(sd, _mm256_add_pd(s0, s1));
    double sum = (sd[0] + sd[1]) + (sd[2] + sd[3]);
    for (; i < n; i++) sum += (double)x[i];
    const float mean = (float)sum / (float)n;
    const __m256 vm = _mm256_set1_ps(mean);
    double v = 0;
    i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        const __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm);
        v += (double)hsum8(_mm256_add_ps(_mm256_mul_ps(d0, d0), _mm256_mul_ps(d1, d1)));
    }
    for (; i < n; i++) {
        const float d = x[i] - mean;
        v += (double)(d * d);
    }
    const float scale = 1.0f / sqrtf((float)(v / n) + eps);
    const __m256 vs = _mm256_set1_ps(scale);
    i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 y = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vs),
                                 _mm256_loadu_ps(w + i));
        if (b) y = _mm256_add_ps(y, _mm256_loadu_ps(b + i));
        _mm256_storeu_ps(out + i, y);
    }
    for (; i < n; i++) {
        const float y = ((x[i] - mean) * scale) * w[i];
        out[i] = b ? y + b[i] : y;
    }
}

/* The table lookup of ew.c's gelu, 8 lanes at a time: F16C rounds to f16 (to nearest even, as
 * half_from_f32), the f16 bits index the float table. */
static void gelu(float *x, int64_t n) {
    const __m256 lo = _mm256_set1_ps(-10.0f), hi = _mm256_set1_ps(10.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256 y = _mm256_i32gather_ps(ew_gelu_table, _mm256_cvtepu16_epi32(h), 4);
        y = _mm256_blendv_ps(y, v, _mm256_cmp_ps(v, hi, _CMP_GE_OQ));
        y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(v, lo, _CMP_LE_OQ));
        _mm256_storeu_ps(x + i, y);
    }
    for (; i < n; i++) {
        const float v = x[i];
        if (v <= -10.0f) x[i] = 0.0f;
        else if (v < 10.0f) x[i] = ew_gelu_table[_cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT)];
    }
}

static void add(float *x, const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 y = _mm256_loadu_ps(x + i);
        if (a) y = _mm256_add_ps(y, _mm256_loadu_ps(a + i));
        if (b) y = _mm256_add_ps(y, _mm256_loadu_ps(b + i));
        _mm256_storeu_ps(x + i, y);
    }
    for (; i < n; i++) {
        float y = x[i];
        if (a) y += a[i];
        if (b) y += b[i];
        x[i] = y;
    }
}

const ew_ops ew_ops_avx2 = {silu_mul, softmax, rope, argmax, layernorm, gelu, add};
