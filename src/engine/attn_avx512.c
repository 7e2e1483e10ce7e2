/*
 * engine/attn_avx512 — the f16-cache attention loops (dots_f16h, wsum_f16h) with AVX-512
 * (compiled with AVX-512F/BW/VL/DQ plus AVX2, FMA and F16C by the Makefile; chosen at run time
 * by attn_get()). Every result is bit-identical to the AVX2 version (attn_avx2.c) and to the
 * definitions in attn.h (the f32-cache dot and weighted sum too, at the end):
 *
 *  - dots_f16h: per position the four 16-lane accumulators of dot_f16h's definition (one
 *    register each), combined as (a0 + a2) + (a1 + a3), then the tree l + 8, + 4, + 2, + 1 for
 *    16 positions at once by transposing shuffles; the double tail (head sizes that are not a
 *    multiple of 64) per position after that.
 *  - wsum_f16h: the accumulator is per element, so only the per-element operations matter:
 *    f16 -> f32, fma(x, v, acc) or acc * m in f32, f32 -> f16 to nearest even, as there.
 */
#include <immintrin.h>
#include <math.h>

#include "core/half.h"
#include "engine/attn.h"

#define ATTN_INLINE static inline __attribute__((always_inline))
/* the loops over the 16 positions of a group, fully unrolled so their sums stay in registers */
#define UNROLL_16 _Pragma("GCC unroll 16")

static inline __m512 load16_f16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

/* dot_f16h's vector part (attn.h) for one position: the four accumulators over the n64 / 64
 * chunks, combined lane by lane (the tree comes after) */
ATTN_INLINE __m512 dot_x(const uint16_t *q, const uint16_t *k, int n64) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int c = 0; c < n64; c += 64) {
        a0 = _mm512_fmadd_ps(load16_f16(q + c), load16_f16(k + c), a0);
        a1 = _mm512_fmadd_ps(load16_f16(q + c + 16), load16_f16(k + c + 16), a1);
        a2 = _mm512_fmadd_ps(load16_f16(q + c + 32), load16_f16(k + c + 32), a2);
        a3 = _mm512_fmadd_ps(load16_f16(q + c + 48), load16_f16(k + c + 48), a3);
    }
    return _mm512_add_ps(_mm512_add_ps(a0, a2), _mm512_add_ps(a1, a3));
}

/* the tree x[l] + x[l + 8], + 4, + 2, + 1 of one register */
static inline float hsum16_tree(__m512 a) {
    const __m256 v = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* the products past n64 added in double, one by one, after the vector part v */
ATTN_INLINE float dot_tail(float v, const uint16_t *q, const uint16_t *k, int n64, int n) {
    double s = v;
    for (int i = n64; i < n; i++) s += (double)(_cvtsh_ss(q[i]) * _cvtsh_ss(k[i]));
    return (float)s;
}

/* one position */
ATTN_INLINE float dot_f16h(const uint16_t *q, const uint16_t *k, int n) {
    const int n64 = n & ~63;
    return dot_tail(hsum16_tree(dot_x(q, k, n64)), q, k, n64, n);
}

/* hsum16_tree of 16 registers at once; lane r of the result is register r's sum. Each step
 * pairs the lane that the tree takes as the first operand (the lower half) with its partner,
 * for two rows' halves per instruction:
 *   1) 256-bit halves: lane j + lane j+8  (128-bit blocks 0,1 + 2,3 of each row)
 *   2) lo + hi:      lane j + lane j+4   (128-bit blocks of the 8-lane sums)
 *   3) movehl:       lane j + lane j+2   (within a 128-bit block)
 *   4) movehdup/ss:  lane 0 + lane 1
 * After step 4, row 4e + L sits at lane 4L + e; a final permute puts row r at lane r. */
static inline __m512 hsum16x16_tree(const __m512 z[16]) {
    __m512 u[8], v[4], w[2];
    UNROLL_16 for (int m = 0; m < 8; m++) /* [rows 2m, 2m+1] x 8 lanes */
        u[m] = _mm512_add_ps(_mm512_shuffle_f32x4(z[2 * m], z[2 * m + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(z[2 * m], z[2 * m + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    UNROLL_16 for (int m = 0; m < 4; m++) /* [rows 4m .. 4m+3] x 4 lanes */
        v[m] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * m], u[2 * m + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(u[2 * m], u[2 * m + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    UNROLL_16 for (int m = 0; m < 2; m++) /* block L: rows 8m+L (2 lanes), 8m+4+L (2 lanes) */
        w[m] = _mm512_add_ps(_mm512_shuffle_ps(v[2 * m], v[2 * m + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(v[2 * m], v[2 * m + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* block L: rows L, 4+L, 8+L, 12+L */
    const __m512 s = _mm512_add_ps(_mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(idx, s);
}

/* Head sizes from 64 up: positions in groups of 16 (their trees reduced together), the double
 * tail per position when n is not a multiple of 64, the last positions one by one. Below 64 the
 * dot is all double tail: the AVX2 version's four positions side by side. */
ATTN_INLINE void dots_body(float *s, const uint16_t *q, const uint16_t *k, size_t stride, int nt,
                           int n, float scale) {
    const int n64 = n & ~63;
    int t = 0;
    if (n64 > 0) {
        const __m512 vscale = _mm512_set1_ps(scale);
        for (; t + 16 <= nt; t += 16) {
            const uint16_t *kt = k + (size_t)t * stride;
            /* the next group's rows: the cache rows of one head are a stride apart, and the
             * hardware prefetcher does not follow 16 short strided reads far enough ahead */
            if (t + 32 <= nt) {
                UNROLL_16 for (int r = 0; r < 16; r++) {
                    const char *next = (const char *)(kt + (size_t)(16 + r) * stride);
                    for (int l = 0; l < 2 * n; l += 64) _mm_prefetch(next + l, _MM_HINT_T0);
                }
            }
            __m512 z[16];
            UNROLL_16 for (int r = 0; r < 16; r++) z[r] = dot_x(q, kt + (size_t)r * stride, n64);
            const __m512 v = hsum16x16_tree(z);
            if (n64 == n) {
                _mm512_storeu_ps(s + t, _mm512_mul_ps(v, vscale));
            } else {
                float vs[16];
                _mm512_storeu_ps(vs, v);
                for (int r = 0; r < 16; r++)
                    s[t + r] = dot_tail(vs[r], q, kt + (size_t)r * stride, n64, n) * scale;
            }
        }
    } else { /* all tail: no 512-bit work, the AVX2 loop (the same bits) */
        attn_ops_avx2.dots_f16h(s, q, k, stride, nt, n, scale);
        return;
    }
    for (; t < nt; t++) s[t] = dot_f16h(q, k + (size_t)t * stride, n) * scale;
}

/* 64 and 128 (the usual head sizes) as constants so the element loop unrolls */
static void dots_f16h(float *s, const uint16_t *q, const uint16_t *k, size_t stride, int nt,
                      int n, float scale) {
    if (n == 64) dots_body(s, q, k, stride, nt, 64, scale);
    else if (n == 128) dots_body(s, q, k, stride, nt, 128, scale);
    else dots_body(s, q, k, stride, nt, n, scale);
}

/* fp16 rounding of every lane, back as floats (a store to and load from the f16 accumulator) */
static inline __m512 round_f16(__m512 v) {
    return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
static inline __m256 round_f16_8(__m256 v) {
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

/* NR registers of 16 elements each over all t: per element, scale_f16h's then mad_f16h's
 * operations in the same order, the accumulator rounded to f16 after each */
#define UNROLL_8 _Pragma("GCC unroll 8")
#define WSUM_F16H_CHUNK16(NR)                                                                      \
    for (; i + 16 * (NR) <= n; i += 16 * (NR)) {                                                   \
        __m512 a[NR];                                                                              \
        UNROLL_8 for (int r = 0; r < (NR); r++) a[r] = _mm512_setzero_ps();                        \
        for (int t = 0; t < nt; t++) {                                                             \
            const uint16_t *xr = x + (size_t)t * stride + i;                                       \
            if (ms[t] != 1.0f) {                                                                   \
                const __m512 m = _mm512_set1_ps(ms[t]);                                            \
                UNROLL_8 for (int r = 0; r < (NR); r++) a[r] = round_f16(_mm512_mul_ps(a[r], m));  \
            }                                                                                      \
            const __m512 v = _mm512_set1_ps(vs[t]);                                                \
            UNROLL_8 for (int r = 0; r < (NR); r++)                                                \
                a[r] = round_f16(_mm512_fmadd_ps(load16_f16(xr + 16 * r), v, a[r]));               \
        }                                                                                          \
        UNROLL_8 for (int r = 0; r < (NR); r++) _mm512_storeu_ps(y + i + 16 * r, a[r]);            \
    }

static void wsum_f16h(float *y, const float *ms, const float *vs, const uint16_t *x,
                      size_t stride, int nt, int n) {
    int i = 0;
    WSUM_F16H_CHUNK16(8)
    WSUM_F16H_CHUNK16(4)
    WSUM_F16H_CHUNK16(2)
    WSUM_F16H_CHUNK16(1)
    /* one 8-block (F16C), then the scalar tail: the elements the AVX2 version converts with
     * half_from_f32 are converted with it here too */
    if (i + 8 <= n) {
        __m256 a = _mm256_setzero_ps();
        for (int t = 0; t < nt; t++) {
            if (ms[t] != 1.0f) a = round_f16_8(_mm256_mul_ps(a, _mm256_set1_ps(ms[t])));
            const __m256 xv =
                _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + (size_t)t * stride + i)));
            a = round_f16_8(_mm256_fmadd_ps(xv, _mm256_set1_ps(vs[t]), a));
        }
        _mm256_storeu_ps(y + i, a);
        i += 8;
    }
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

#define WSUM_PF 8 /* positions the V rows are prefetched ahead */

/* NH heads of R registers each (n = 16 R), all positions in one pass: per head and element
 * exactly wsum_f16h's operations in its order (scale when ms != 1, then the fma, each rounded
 * to f16); the NH * R chains are independent, so their latencies overlap. */
ATTN_INLINE void wsum_heads(float *const *y, const float *const *ms, const float *const *vs,
                            const uint16_t *const *x, size_t stride, int nt, const int R,
                            const int NH) {
    __m512 a[16];
    UNROLL_16 for (int k = 0; k < R * NH; k++) a[k] = _mm512_setzero_ps();
    for (int t = 0; t < nt; t++) {
        UNROLL_16 for (int h = 0; h < NH; h++) {
            const float m = ms[h][t];
            if (m != 1.0f) {
                const __m512 mv = _mm512_set1_ps(m);
                UNROLL_16 for (int r = 0; r < R; r++)
                    a[h * R + r] = round_f16(_mm512_mul_ps(a[h * R + r], mv));
            }
        }
        UNROLL_16 for (int h = 0; h < NH; h++) {
            const uint16_t *xr = x[h] + (size_t)t * stride;
            UNROLL_16 for (int l = 0; l < R; l += 2) /* a few positions ahead (see dots_body) */
                _mm_prefetch((const char *)(xr + (size_t)WSUM_PF * stride + 16 * l), _MM_HINT_T0);
            const __m512 v = _mm512_set1_ps(vs[h][t]);
            UNROLL_16 for (int r = 0; r < R; r++)
                a[h * R + r] = round_f16(_mm512_fmadd_ps(load16_f16(xr + 16 * r), v, a[h * R + r]));
        }
    }
    UNROLL_16 for (int h = 0; h < NH; h++)
        UNROLL_16 for (int r = 0; r < R; r++) _mm512_storeu_ps(y[h] + 16 * r, a[h * R + r]);
}

/* Head sizes 32, 64 and 128 with up to 16 registers of sums; anything else head by head. */
static void wsum_f16h_n(float *const *y, const float *const *ms, const float *const *vs,
                        const uint16_t *const *x, size_t stride, int nt, int n, int nh) {
    int j = 0;
    if (n == 64) {
        for (; j + 4 <= nh; j += 4) wsum_heads(y + j, ms + j, vs + j, x + j, stride, nt, 4, 4);
        if (nh - j == 3) wsum_heads(y + j, ms + j, vs + j, x + j, stride, nt, 4, 3), j += 3;
        if (nh - j == 2) wsum_heads(y + j, ms + j, vs + j, x + j, stride, nt, 4, 2), j += 2;
    } else if (n == 128) {
        for (; j + 2 <= nh; j += 2) wsum_heads(y + j, ms + j, vs + j, x + j, stride, nt, 8, 2);
    } else if (n == 32) {
        for (; j + 4 <= nh; j += 4) wsum_heads(y + j, ms + j, vs + j, x + j, stride, nt, 2, 4);
        if (nh - j >= 2) wsum_heads(y + j, ms + j, vs + j, x + j, stride, nt, 2, 2), j += 2;
    }
    for (; j < nh; j++) wsum_f16h(y[j], ms[j], vs[j], x[j], stride, nt, n);
}

/* ============================================================ f32 cache ===== */

/* dot_f32's vector part (attn.h) for one position, as dot_x for f16 */
ATTN_INLINE __m512 dot_x32(const float *q, const float *k, int n64) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int c = 0; c < n64; c += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c), _mm512_loadu_ps(k + c), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c + 16), _mm512_loadu_ps(k + c + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c + 32), _mm512_loadu_ps(k + c + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c + 48), _mm512_loadu_ps(k + c + 48), a3);
    }
    return _mm512_add_ps(_mm512_add_ps(a0, a2), _mm512_add_ps(a1, a3));
}

/* the elements past n64 as rounded products added one by one */
ATTN_INLINE float dot_tail32(float s, const float *q, const float *k, int n64, int n) {
    for (int i = n64; i < n; i++) {
        const float p = q[i] * k[i]; /* rounded: no FMA (two statements: no contraction) */
        s = s + p;
    }
    return s;
}

static float dot_f32(const float *q, const float *k, int n) {
    const int n64 = n & ~63;
    return dot_tail32(hsum16_tree(dot_x32(q, k, n64)), q, k, n64, n);
}

/* As dots_body for f16: 16 positions' trees at once from 64 elements up; below 64 the dot is all
 * tail, four positions' chains side by side. */
ATTN_INLINE void dots32_body(float *s, const float *q, const float *k, size_t stride, int nt,
                             int n, float scale) {
    const int n64 = n & ~63;
    int t = 0;
    if (n64 > 0) {
        const __m512 vscale = _mm512_set1_ps(scale);
        for (; t + 16 <= nt; t += 16) {
            const float *kt = k + (size_t)t * stride;
            __m512 z[16];
            UNROLL_16 for (int r = 0; r < 16; r++) z[r] = dot_x32(q, kt + (size_t)r * stride, n64);
            const __m512 v = hsum16x16_tree(z);
            if (n64 == n) {
                _mm512_storeu_ps(s + t, _mm512_mul_ps(v, vscale));
            } else {
                float vs[16];
                _mm512_storeu_ps(vs, v);
                for (int r = 0; r < 16; r++)
                    s[t + r] = dot_tail32(vs[r], q, kt + (size_t)r * stride, n64, n) * scale;
            }
        }
    } else {
        for (; t + 4 <= nt; t += 4) {
            const float *k0 = k + (size_t)t * stride, *k1 = k0 + stride, *k2 = k1 + stride,
                        *k3 = k2 + stride;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (int i = 0; i < n; i++) {
                const float p0 = q[i] * k0[i], p1 = q[i] * k1[i], p2 = q[i] * k2[i],
                            p3 = q[i] * k3[i];
                s0 = s0 + p0, s1 = s1 + p1, s2 = s2 + p2, s3 = s3 + p3;
            }
            s[t] = s0 * scale, s[t + 1] = s1 * scale, s[t + 2] = s2 * scale, s[t + 3] = s3 * scale;
        }
    }
    for (; t < nt; t++) s[t] = dot_f32(q, k + (size_t)t * stride, n) * scale;
}

static void dots_f32(float *s, const float *q, const float *k, size_t stride, int nt, int n,
                     float scale) {
    if (n == 64) dots32_body(s, q, k, stride, nt, 64, scale);
    else if (n == 128) dots32_body(s, q, k, stride, nt, 128, scale);
    else dots32_body(s, q, k, stride, nt, n, scale);
}

/* wsum_f32 (attn.h): 16 elements at a time, the 16 position chains in 16 registers (position
 * t feeds register t % 16), the tree across the registers; the last n % 16 elements through the
 * AVX2 version (the same definition). */
static void wsum_f32(float *y, const float *p, const float *x, size_t stride, int nt, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 a[16];
        UNROLL_16 for (int l = 0; l < 16; l++) a[l] = _mm512_setzero_ps();
        int t = 0;
        for (; t + 16 <= nt; t += 16)
            UNROLL_16 for (int l = 0; l < 16; l++)
                a[l] = _mm512_fmadd_ps(_mm512_loadu_ps(x + (size_t)(t + l) * stride + i),
                                       _mm512_set1_ps(p[t + l]), a[l]);
        for (int l = 0; t + l < nt; l++)
            a[l] = _mm512_fmadd_ps(_mm512_loadu_ps(x + (size_t)(t + l) * stride + i),
                                   _mm512_set1_ps(p[t + l]), a[l]);
        UNROLL_16 for (int l = 0; l < 8; l++) a[l] = _mm512_add_ps(a[l], a[l + 8]);
        UNROLL_16 for (int l = 0; l < 4; l++) a[l] = _mm512_add_ps(a[l], a[l + 4]);
        UNROLL_16 for (int l = 0; l < 2; l++) a[l] = _mm512_add_ps(a[l], a[l + 2]);
        _mm512_storeu_ps(y + i, _mm512_add_ps(a[0], a[1]));
    }
    if (i < n) attn_ops_avx2.wsum_f32(y + i, p, x + i, stride, nt, n - i);
}

/* ============================================================ encoder blocks ===== */

/* attn.h's scores_f32: 16 keys per register, 4 queries at a time sharing each kt load. */
static void scores_f32(float *s, int s_stride, const float *q, size_t q_stride, const float *kt,
                       int np, int nq, int hd, float scale) {
    const __m512 vs = _mm512_set1_ps(scale);
    int i = 0;
    for (; i + 4 <= nq; i += 4) {
        const float *q0 = q + i * q_stride;
        for (int j = 0; j < np; j += 16) {
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int d = 0; d < hd; d++) {
                const __m512 k = _mm512_loadu_ps(kt + (size_t)d * np + j);
                a0 = _mm512_fmadd_ps(_mm512_set1_ps(q0[d]), k, a0);
                a1 = _mm512_fmadd_ps(_mm512_set1_ps(q0[q_stride + d]), k, a1);
                a2 = _mm512_fmadd_ps(_mm512_set1_ps(q0[2 * q_stride + d]), k, a2);
                a3 = _mm512_fmadd_ps(_mm512_set1_ps(q0[3 * q_stride + d]), k, a3);
            }
            float *o = s + (size_t)i * s_stride + j;
            _mm512_storeu_ps(o, _mm512_mul_ps(a0, vs));
            _mm512_storeu_ps(o + s_stride, _mm512_mul_ps(a1, vs));
            _mm512_storeu_ps(o + 2 * s_stride, _mm512_mul_ps(a2, vs));
            _mm512_storeu_ps(o + 3 * s_stride, _mm512_mul_ps(a3, vs));
        }
    }
    for (; i < nq; i++)
        for (int j = 0; j < np; j += 16) {
            __m512 a = _mm512_setzero_ps();
            for (int d = 0; d < hd; d++)
                a = _mm512_fmadd_ps(_mm512_set1_ps(q[i * q_stride + d]),
                                    _mm512_loadu_ps(kt + (size_t)d * np + j), a);
            _mm512_storeu_ps(s + (size_t)i * s_stride + j, _mm512_mul_ps(a, vs));
        }
}

/* attn.h's wsum_rows_f32: 16 elements per register (the last ones masked), 4 queries at a
 * time sharing each V load. */
static void wsum_rows_f32(float *out, size_t o_stride, const float *p, int p_stride,
                          const float *v, size_t v_stride, int nq, int nk, int hd) {
    for (int d = 0; d < hd; d += 16) {
        const int w = hd - d < 16 ? hd - d : 16;
        const __mmask16 m = (__mmask16)((1u << w) - 1);
        int i = 0;
        for (; i + 4 <= nq; i += 4) {
            const float *p0 = p + (size_t)i * p_stride;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int j = 0; j < nk; j++) {
                const __m512 x = _mm512_maskz_loadu_ps(m, v + j * v_stride + d);
                a0 = _mm512_fmadd_ps(_mm512_set1_ps(p0[j]), x, a0);
                a1 = _mm512_fmadd_ps(_mm512_set1_ps(p0[p_stride + j]), x, a1);
                a2 = _mm512_fmadd_ps(_mm512_set1_ps(p0[2 * p_stride + j]), x, a2);
                a3 = _mm512_fmadd_ps(_mm512_set1_ps(p0[3 * p_stride + j]), x, a3);
            }
            float *o = out + i * o_stride + d;
            _mm512_mask_storeu_ps(o, m, a0);
            _mm512_mask_storeu_ps(o + o_stride, m, a1);
            _mm512_mask_storeu_ps(o + 2 * o_stride, m, a2);
            _mm512_mask_storeu_ps(o + 3 * o_stride, m, a3);
        }
        for (; i < nq; i++) {
            __m512 a = _mm512_setzero_ps();
            for (int j = 0; j < nk; j++)
                a = _mm512_fmadd_ps(_mm512_set1_ps(p[(size_t)i * p_stride + j]),
                                    _mm512_maskz_loadu_ps(m, v + j * v_stride + d), a);
            _mm512_mask_storeu_ps(out + i * o_stride + d, m, a);
        }
    }
}

void attn_avx512_patch(attn_ops *ops) {
    ops->scores_f32 = scores_f32;
    ops->wsum_rows_f32 = wsum_rows_f32;
    ops->dot_f16h = dot_f16h;
    ops->dots_f16h = dots_f16h;
    ops->wsum_f16h = wsum_f16h;
    ops->wsum_f16h_n = wsum_f16h_n;
    ops->dot_f32 = dot_f32;
    ops->dots_f32 = dots_f32;
    ops->wsum_f32 = wsum_f32;
}
