/*
 * engine/attn — see attn.h. Scalar versions and the run-time choice.
 */
#include "engine/attn.h"

#include <math.h>
#include <pthread.h>

#include "core/half.h"
#include "tensor/vecdot.h"

static float dot_f16(const float *q, const uint16_t *k, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += q[i] * half_to_f32(k[i]);
    return s;
}

/* The definition (attn.h). */
static float dot_f32(const float *q, const float *k, int n) {
    const int n64 = n & ~63;
    float a[4][16] = {{0}}, x[16];
    for (int c = 0; c < n64; c += 64)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 16; l++) a[j][l] = fmaf(q[c + 16 * j + l], k[c + 16 * j + l], a[j][l]);
    for (int l = 0; l < 16; l++) x[l] = (a[0][l] + a[2][l]) + (a[1][l] + a[3][l]);
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) x[l] = x[l] + x[l + w];
    float s = x[0];
    for (int i = n64; i < n; i++) {
        const float p = q[i] * k[i]; /* rounded: no FMA */
        s = s + p;
    }
    return s;
}

static void axpy_f16(float *y, float a, const uint16_t *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * half_to_f32(x[i]);
}

static void axpy_f32(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void wsum_f16(float *y, const float *p, const uint16_t *x, size_t stride, int nt, int n) {
    for (int i = 0; i < n; i++) y[i] = 0;
    for (int t = 0; t < nt; t++) axpy_f16(y, p[t], x + (size_t)t * stride, n);
}

/* The definition (attn.h): 16 chains by position, then the tree. */
static void wsum_f32(float *y, const float *p, const float *x, size_t stride, int nt, int n) {
    for (int i = 0; i < n; i++) {
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
    for (int i = 0; i < n; i++) dst[i] = half_from_f32(src[i]);
}

/* The definition (attn.h). A product of two f16 values is exact in float, so a += p here is
 * the fma of the vector versions. */
static float dot_f16h(const uint16_t *q, const uint16_t *k, int n) {
    const int n64 = n & ~63;
    float a[4][16] = {{0}}, x[16];
    for (int c = 0; c < n64; c += 64)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 16; l++) {
                const int i = c + 16 * j + l;
                a[j][l] += half_to_f32(q[i]) * half_to_f32(k[i]);
            }
    for (int l = 0; l < 16; l++) x[l] = (a[0][l] + a[2][l]) + (a[1][l] + a[3][l]);
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) x[l] = x[l] + x[l + w];
    double s = x[0];
    for (int i = n64; i < n; i++) s += (double)(half_to_f32(q[i]) * half_to_f32(k[i]));
    return (float)s;
}

/* fmaf, as the AVX2 version's vfmadd: both give the same f16 results */
static void mad_f16h(uint16_t *y, float a, const uint16_t *x, int n) {
    for (int i = 0; i < n; i++) y[i] = half_from_f32(fmaf(half_to_f32(x[i]), a, half_to_f32(y[i])));
}

static void scale_f16h(uint16_t *y, float a, int n) {
    for (int i = 0; i < n; i++) y[i] = half_from_f32(half_to_f32(y[i]) * a);
}

static void dots_f16h(float *s, const uint16_t *q, const uint16_t *k, size_t stride, int nt,
                      int n, float scale) {
    for (int t = 0; t < nt; t++) s[t] = dot_f16h(q, k + (size_t)t * stride, n) * scale;
}

static void wsum_f16h(float *y, const float *ms, const float *vs, const uint16_t *x,
                      size_t stride, int nt, int n) {
    for (int i = 0; i < n; i++) {
        uint16_t acc = 0;
        for (int t = 0; t < nt; t++) {
            if (ms[t] != 1.0f) acc = half_from_f32(half_to_f32(acc) * ms[t]);
            const float xv = half_to_f32(x[(size_t)t * stride + i]);
            acc = half_from_f32(fmaf(xv, vs[t], half_to_f32(acc)));
        }
        y[i] = half_to_f32(acc);
    }
}

static void wsum_f16h_n(float *const *y, const float *const *ms, const float *const *vs,
                        const uint16_t *const *x, size_t stride, int nt, int n, int nh) {
    for (int j = 0; j < nh; j++) wsum_f16h(y[j], ms[j], vs[j], x[j], stride, nt, n);
}

static void scores_f32(float *s, int s_stride, const float *q, size_t q_stride, const float *kt,
                       int np, int nq, int hd, float scale) {
    for (int i = 0; i < nq; i++)
        for (int j = 0; j < np; j++) {
            float acc = 0.0f;
            for (int d = 0; d < hd; d++) acc = fmaf(q[i * q_stride + d], kt[(size_t)d * np + j], acc);
            s[(size_t)i * s_stride + j] = acc * scale;
        }
}

static void wsum_rows_f32(float *out, size_t o_stride, const float *p, int p_stride,
                          const float *v, size_t v_stride, int nq, int nk, int hd) {
    for (int i = 0; i < nq; i++)
        for (int d = 0; d < hd; d++) {
            float acc = 0.0f;
            for (int j = 0; j < nk; j++) acc = fmaf(p[(size_t)i * p_stride + j], v[j * v_stride + d], acc);
            out[i * o_stride + d] = acc;
        }
}

static const attn_ops attn_ops_scalar = {
    dot_f16, dot_f32, axpy_f16, axpy_f32, wsum_f16, wsum_f32, dots_f16, dots_f32, to_f16,
    dot_f16h, mad_f16h, scale_f16h, dots_f16h, wsum_f16h, wsum_f16h_n, scores_f32, wsum_rows_f32,
};

float attn_online_softmax(float *s, float *ms, int nt) {
    float mx = -INFINITY, sum = 0.0f;
    for (int t = 0; t < nt; t++) {
        float m = 1.0f, w = 1.0f;
        if (s[t] > mx) { /* new max: rescale what is accumulated; this weight is 1 */
            m = expf(mx - s[t]);
            mx = s[t];
        } else {
            w = expf(s[t] - mx);
        }
        ms[t] = m;
        s[t] = w;
        /* two statements: no contraction into an FMA under any compiler's default */
        const float scaled = sum * m;
        sum = scaled + w;
    }
    return sum;
}

/* vecdot's AVX2 level is compiled with the same flags (AVX2, FMA, F16C) and only chosen when
 * the CPU and OS support all of them, so its ISA decision is ours too (SHOAL_ISA included). */
const attn_ops *attn_get(void) {
    const vecdot_isa isa = vecdot_best_isa();
    if (isa >= ISA_AVX512) return attn_avx512_table();
    return isa >= ISA_AVX2 ? &attn_ops_avx2 : &attn_ops_scalar;
}

/* Built once: the attention loops with AVX-512 versions replace the AVX2 table's. */
static attn_ops avx512_ops;
static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;
static void avx512_init(void) {
    avx512_ops = attn_ops_avx2;
    attn_avx512_patch(&avx512_ops);
}

const attn_ops *attn_avx512_table(void) {
    pthread_once(&avx512_once, avx512_init);
    return &avx512_ops;
}
