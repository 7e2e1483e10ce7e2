/*
 * engine/attn_avx2 — attention inner loops with AVX2, FMA and F16C (compiled with those flags
 * by the Makefile; chosen at run time by attn_get()).
 */
#include <immintrin.h>
#include <math.h>

#include "core/half.h"
#include "engine/attn.h"

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* always inlined into dots_f16 / dots_f32 (the table gets an out-of-line copy as well) */
#define ATTN_INLINE static inline __attribute__((always_inline))
#define UNROLL_16 _Pragma("GCC unroll 16")
ATTN_INLINE float dot_f16(const float *q, const uint16_t *k, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 k0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i)));
        __m256 k1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i + 8)));
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), k0, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), k1, a1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 k0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i)));
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), k0, a0);
    }
    float s = hsum8(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += q[i] * half_to_f32(k[i]);
    return s;
}

/* dot_f32 (attn.h): the 16-lane accumulators as 8-lane halves (a[r] covers elements
 * 64 c + 8 r .. + 7), hsum8 of the halves' sum is the tree, then the unfused tail. */
ATTN_INLINE float dot_f32(const float *q, const float *k, int n) {
    const int n64 = n & ~63;
    __m256 a[8];
    for (int r = 0; r < 8; r++) a[r] = _mm256_setzero_ps();
    for (int c = 0; c < n64; c += 64)
        for (int r = 0; r < 8; r++)
            a[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q + c + 8 * r), _mm256_loadu_ps(k + c + 8 * r), a[r]);
    const __m256 xlo = _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6]));
    const __m256 xhi = _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7]));
    float s = hsum8(_mm256_add_ps(xlo, xhi));
    for (int i = n64; i < n; i++) {
        const float p = q[i] * k[i]; /* rounded: no FMA (two statements: no contraction) */
        s = s + p;
    }
    return s;
}

static void axpy_f16(float *y, float a, const uint16_t *x, int n) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, xv, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] += a * half_to_f32(x[i]);
}

static void axpy_f32(float *y, float a, const float *x, int n) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i),
                                                _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

/* 32 elements at a time in four registers over all t, then 8 at a time, then the scalar tail of
 * axpy: per element the same fma / mul-add sequence as the axpy loop. */
#define DEFINE_WSUM(name, T, LOAD8, SCALAR)                                                        \
    static void name(float *y, const float *p, const T *x, size_t stride, int nt, int n) {        \
        int i = 0;                                                                                 \
        for (; i + 32 <= n; i += 32) {                                                             \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                            \
            for (int t = 0; t < nt; t++) {                                                         \
                const T *r = x + (size_t)t * stride + i;                                           \
                const __m256 pt = _mm256_set1_ps(p[t]);                                            \
                a0 = _mm256_fmadd_ps(pt, LOAD8(r), a0);                                            \
                a1 = _mm256_fmadd_ps(pt, LOAD8(r + 8), a1);                                        \
                a2 = _mm256_fmadd_ps(pt, LOAD8(r + 16), a2);                                       \
                a3 = _mm256_fmadd_ps(pt, LOAD8(r + 24), a3);                                       \
            }                                                                                      \
            _mm256_storeu_ps(y + i, a0);                                                           \
            _mm256_storeu_ps(y + i + 8, a1);                                                       \
            _mm256_storeu_ps(y + i + 16, a2);                                                      \
            _mm256_storeu_ps(y + i + 24, a3);                                                      \
        }                                                                                          \
        for (; i + 8 <= n; i += 8) {                                                               \
            __m256 a0 = _mm256_setzero_ps();                                                       \
            for (int t = 0; t < nt; t++)                                                           \
                a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[t]), LOAD8(x + (size_t)t * stride + i), a0); \
            _mm256_storeu_ps(y + i, a0);                                                           \
        }                                                                                          \
        for (; i < n; i++) {                                                                       \
            float s = 0;                                                                           \
            for (int t = 0; t < nt; t++) s += p[t] * SCALAR(x[(size_t)t * stride + i]);            \
            y[i] = s;                                                                              \
        }                                                                                          \
    }

static inline __m256 load8_f16(const uint16_t *x) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)x));
}
DEFINE_WSUM(wsum_f16, uint16_t, load8_f16, half_to_f32)

/* wsum_f32 (attn.h): 8 elements at a time, the 16 position chains in 16 registers (position t
 * feeds register t % 16), then the tree across the registers; the last n % 8 elements as the
 * definition does them. */
static void wsum_f32(float *y, const float *p, const float *x, size_t stride, int nt, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a[16];
        UNROLL_16 for (int l = 0; l < 16; l++) a[l] = _mm256_setzero_ps();
        int t = 0;
        for (; t + 16 <= nt; t += 16)
            UNROLL_16 for (int l = 0; l < 16; l++)
                a[l] = _mm256_fmadd_ps(_mm256_loadu_ps(x + (size_t)(t + l) * stride + i),
                                       _mm256_set1_ps(p[t + l]), a[l]);
        for (int l = 0; t + l < nt; l++)
            a[l] = _mm256_fmadd_ps(_mm256_loadu_ps(x + (size_t)(t + l) * stride + i),
                                   _mm256_set1_ps(p[t + l]), a[l]);
        for (int w = 8; w >= 1; w /= 2)
            for (int l = 0; l < w; l++) a[l] = _mm256_add_ps(a[l], a[l + w]);
        _mm256_storeu_ps(y + i, a[0]);
    }
    for (; i < n; i++) {
        float a[16] = {0};
        for (int t = 0; t < nt; t++) a[t & 15] = fmaf(x[(size_t)t * stride + i], p[t], a[t & 15]);
        for (int w = 8; w >= 1; w /= 2)
            for (int l = 0; l < w; l++) a[l] = a[l] + a[l + w];
        y[i] = a[0];
    }
}


/* dots: the dot product inlined into the loop over positions; 64 and 128 (the usual head
 * sizes) as constants so the compiler unrolls the dot and hoists the loads of q. */
#define DEFINE_DOTS(name, T, DOT)                                                                  \
    static void name(float *s, const float *q, const T *k, size_t stride, int nt, int n,          \
                     float scale) {                                                                \
        if (n == 64)                                                                               \
            for (int t = 0; t < nt; t++) s[t] = DOT(q, k + (size_t)t * stride, 64) * scale;        \
        else if (n == 128)                                                                         \
            for (int t = 0; t < nt; t++) s[t] = DOT(q, k + (size_t)t * stride, 128) * scale;       \
        else                                                                                       \
            for (int t = 0; t < nt; t++) s[t] = DOT(q, k + (size_t)t * stride, n) * scale;         \
    }
DEFINE_DOTS(dots_f16, uint16_t, dot_f16)
DEFINE_DOTS(dots_f32, float, dot_f32)

static void to_f16(uint16_t *dst, const float *src, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = half_from_f32(src[i]);
}

static inline __m256 load8h(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* dot_f16h (attn.h): the 16-lane accumulators a_j as 8-lane halves (a[2j] lanes 0-7, a[2j+1]
 * lanes 8-15, i.e. a[r] covers elements 64 c + 8 r .. + 7); x[l] + x[l + 8] is the sum of the
 * halves, and hsum8 then takes lanes l + 4, l + 2, l + 1: the tree of the definition. */
ATTN_INLINE float dot_f16h(const uint16_t *q, const uint16_t *k, int n) {
    const int n64 = n & ~63;
    __m256 a[8];
    for (int r = 0; r < 8; r++) a[r] = _mm256_setzero_ps();
    for (int c = 0; c < n64; c += 64)
        for (int r = 0; r < 8; r++) a[r] = _mm256_fmadd_ps(load8h(q + c + 8 * r), load8h(k + c + 8 * r), a[r]);
    const __m256 xlo = _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6]));
    const __m256 xhi = _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7]));
    double s = hsum8(_mm256_add_ps(xlo, xhi));
    for (int i = n64; i < n; i++) s += (double)(_cvtsh_ss(q[i]) * _cvtsh_ss(k[i]));
    return (float)s;
}

/* Head sizes below 64: the dot is all double tail, one add after another; four positions side by
 * side (each its own chain, in element order) keep the adder busy. */
static void dots_f16h_small(float *s, const uint16_t *q, const uint16_t *k, size_t stride,
                            int nt, int n, float scale) {
    float qf[64];
    for (int i = 0; i < n; i++) qf[i] = _cvtsh_ss(q[i]);
    int t = 0;
    for (; t + 4 <= nt; t += 4) {
        const uint16_t *k0 = k + (size_t)t * stride, *k1 = k0 + stride, *k2 = k1 + stride,
                       *k3 = k2 + stride;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int i = 0; i < n; i++) {
            s0 += (double)(qf[i] * _cvtsh_ss(k0[i]));
            s1 += (double)(qf[i] * _cvtsh_ss(k1[i]));
            s2 += (double)(qf[i] * _cvtsh_ss(k2[i]));
            s3 += (double)(qf[i] * _cvtsh_ss(k3[i]));
        }
        s[t] = (float)s0 * scale, s[t + 1] = (float)s1 * scale;
        s[t + 2] = (float)s2 * scale, s[t + 3] = (float)s3 * scale;
    }
    for (; t < nt; t++) s[t] = dot_f16h(q, k + (size_t)t * stride, n) * scale;
}

static void mad_f16h(uint16_t *y, float a, const uint16_t *x, int n) {
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 xv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        const __m256 yv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i)));
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_fmadd_ps(xv, va, yv), _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) y[i] = half_from_f32(fmaf(half_to_f32(x[i]), a, half_to_f32(y[i])));
}

static void scale_f16h(uint16_t *y, float a, int n) {
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 yv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i)));
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_mul_ps(yv, va), _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) y[i] = half_from_f32(half_to_f32(y[i]) * a);
}

/* Position t's score, with the K row DOTS_PF positions ahead prefetched (one head's rows are a
 * whole cache row apart, too far for the hardware prefetcher to run ahead of) */
#define DOTS_PF 16
ATTN_INLINE float dot_f16h_pf(const uint16_t *q, const uint16_t *k, size_t stride, int t, int nt,
                              int n) {
    const uint16_t *kt = k + (size_t)t * stride;
    if (t + DOTS_PF < nt)
        for (int l = 0; l < 2 * n; l += 64)
            _mm_prefetch((const char *)(kt + (size_t)DOTS_PF * stride) + l, _MM_HINT_T0);
    return dot_f16h(q, kt, n);
}

/* dots_f16h: dot_f16h inlined, 64 and 128 as constants (q stays in registers) */
static void dots_f16h(float *s, const uint16_t *q, const uint16_t *k, size_t stride, int nt,
                      int n, float scale) {
    if (n < 64)
        dots_f16h_small(s, q, k, stride, nt, n, scale);
    else if (n == 64)
        for (int t = 0; t < nt; t++) s[t] = dot_f16h_pf(q, k, stride, t, nt, 64) * scale;
    else if (n == 128)
        for (int t = 0; t < nt; t++) s[t] = dot_f16h_pf(q, k, stride, t, nt, 128) * scale;
    else
        for (int t = 0; t < nt; t++) s[t] = dot_f16h_pf(q, k, stride, t, nt, n) * scale;
}

/* fp16 rounding of every lane, back as floats (what a store to and load from the f16
 * accumulator of mad_f16h / scale_f16h gives) */
static inline __m256 round_f16(__m256 v) {
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

/* NR registers of 8 elements each, over all t: per element the operations of scale_f16h and
 * mad_f16h in the same order, the accumulator rounded to f16 after each */
#define UNROLL_8 _Pragma("GCC unroll 8")
#define WSUM_PF 8 /* positions the V rows are prefetched ahead (rows of one head are far apart) */
#define WSUM_F16H_CHUNK(NR)                                                                        \
    for (; i + 8 * (NR) <= n; i += 8 * (NR)) {                                                     \
        __m256 a[NR];                                                                              \
        UNROLL_8 for (int r = 0; r < (NR); r++) a[r] = _mm256_setzero_ps();                        \
        for (int t = 0; t < nt; t++) {                                                             \
            const uint16_t *xr = x + (size_t)t * stride + i;                                       \
            UNROLL_8 for (int l = 0; l < (NR); l += 4)                                             \
                _mm_prefetch((const char *)(xr + (size_t)WSUM_PF * stride + 8 * l), _MM_HINT_T0);  \
            if (ms[t] != 1.0f) {                                                                   \
                const __m256 m = _mm256_set1_ps(ms[t]);                                            \
                UNROLL_8 for (int r = 0; r < (NR); r++) a[r] = round_f16(_mm256_mul_ps(a[r], m));  \
            }                                                                                      \
            const __m256 v = _mm256_set1_ps(vs[t]);                                                \
            for (int r = 0; r < (NR); r++)                                                         \
                a[r] = round_f16(_mm256_fmadd_ps(                                                  \
                    _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(xr + 8 * r))), v, a[r]));    \
        }                                                                                          \
        UNROLL_8 for (int r = 0; r < (NR); r++) _mm256_storeu_ps(y + i + 8 * r, a[r]);             \
    }

static void wsum_f16h(float *y, const float *ms, const float *vs, const uint16_t *x,
                      size_t stride, int nt, int n) {
    int i = 0;
    WSUM_F16H_CHUNK(8)
    WSUM_F16H_CHUNK(4)
    WSUM_F16H_CHUNK(1)
    for (; i < n; i++) {
        uint16_t acc = 0;
        for (int t = 0; t < nt; t++) {
            if (ms[t] != 1.0f) acc = half_from_f32(half_to_f32(acc) * ms[t]);
            const float xv = half_to_f32(x[(size_t)t * stride + i]);
            acc = half_from_f32(fmaf(xv, vs[t], half_to_f32(acc)));
        }
        y[i] = half_to_f32(acc);
    }
}

/* Head by head: with 8-lane registers one head of 64 already runs 8 chains side by side. */
static void wsum_f16h_n(float *const *y, const float *const *ms, const float *const *vs,
                        const uint16_t *const *x, size_t stride, int nt, int n, int nh) {
    for (int j = 0; j < nh; j++) wsum_f16h(y[j], ms[j], vs[j], x[j], stride, nt, n);
}

/* ============================================================ encoder blocks ===== */

/* attn.h's scores_f32: 8 keys per register, 4 queries at a time sharing each kt load. */
static void scores_f32(float *s, int s_stride, const float *q, size_t q_stride, const float *kt,
                       int np, int nq, int hd, float scale) {
    const __m256 vs = _mm256_set1_ps(scale);
    int i = 0;
    for (; i + 4 <= nq; i += 4) {
        const float *q0 = q + i * q_stride;
        for (int j = 0; j < np; j += 8) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int d = 0; d < hd; d++) {
                const __m256 k = _mm256_loadu_ps(kt + (size_t)d * np + j);
                a0 = _mm256_fmadd_ps(_mm256_set1_ps(q0[d]), k, a0);
                a1 = _mm256_fmadd_ps(_mm256_set1_ps(q0[q_stride + d]), k, a1);
                a2 = _mm256_fmadd_ps(_mm256_set1_ps(q0[2 * q_stride + d]), k, a2);
                a3 = _mm256_fmadd_ps(_mm256_set1_ps(q0[3 * q_stride + d]), k, a3);
            }
            float *o = s + (size_t)i * s_stride + j;
            _mm256_storeu_ps(o, _mm256_mul_ps(a0, vs));
            _mm256_storeu_ps(o + s_stride, _mm256_mul_ps(a1, vs));
            _mm256_storeu_ps(o + 2 * s_stride, _mm256_mul_ps(a2, vs));
            _mm256_storeu_ps(o + 3 * s_stride, _mm256_mul_ps(a3, vs));
        }
    }
    for (; i < nq; i++)
        for (int j = 0; j < np; j += 8) {
            __m256 a = _mm256_setzero_ps();
            for (int d = 0; d < hd; d++)
                a = _mm256_fmadd_ps(_mm256_set1_ps(q[i * q_stride + d]),
                                    _mm256_loadu_ps(kt + (size_t)d * np + j), a);
            _mm256_storeu_ps(s + (size_t)i * s_stride + j, _mm256_mul_ps(a, vs));
        }
}

/* attn.h's wsum_rows_f32: 8 elements per register (the last ones masked), 4 queries at a time
 * sharing each V load. */
static void wsum_rows_f32(float *out, size_t o_stride, const float *p, int p_stride,
                          const float *v, size_t v_stride, int nq, int nk, int hd) {
    for (int d = 0; d < hd; d += 8) {
        const int w = hd - d < 8 ? hd - d : 8;
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(w), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        int i = 0;
        for (; i + 4 <= nq; i += 4) {
            const float *p0 = p + (size_t)i * p_stride;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int j = 0; j < nk; j++) {
                const __m256 x = _mm256_maskload_ps(v + j * v_stride + d, m);
                a0 = _mm256_fmadd_ps(_mm256_set1_ps(p0[j]), x, a0);
                a1 = _mm256_fmadd_ps(_mm256_set1_ps(p0[p_stride + j]), x, a1);
                a2 = _mm256_fmadd_ps(_mm256_set1_ps(p0[2 * p_stride + j]), x, a2);
                a3 = _mm256_fmadd_ps(_mm256_set1_ps(p0[3 * p_stride + j]), x, a3);
            }
            float *o = out + i * o_stride + d;
            _mm256_maskstore_ps(o, m, a0);
            _mm256_maskstore_ps(o + o_stride, m, a1);
            _mm256_maskstore_ps(o + 2 * o_stride, m, a2);
            _mm256_maskstore_ps(o + 3 * o_stride, m, a3);
        }
        for (; i < nq; i++) {
            __m256 a = _mm256_setzero_ps();
            for (int j = 0; j < nk; j++)
                a = _mm256_fmadd_ps(_mm256_set1_ps(p[(size_t)i * p_stride + j]),
                                    _mm256_maskload_ps(v + j * v_stride + d, m), a);
            _mm256_maskstore_ps(out + i * o_stride + d, m, a);
        }
    }
}

const attn_ops attn_ops_avx2 = {
    dot_f16, dot_f32, axpy_f16, axpy_f32, wsum_f16, wsum_f32, dots_f16, dots_f32, to_f16,
    dot_f16h, mad_f16h, scale_f16h, dots_f16h, wsum_f16h, wsum_f16h_n, scores_f32, wsum_rows_f32,
};
