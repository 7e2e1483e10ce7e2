/*
 * engine/attn — see attn.h. Scalar versions and the run-time choice.
 */
#include "engine/attn.h"

#include <math.h>

#include "core/half.h"
#include "tensor/vecdot.h"

static float dot_f16(const float *q, const uint16_t *k, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += q[i] * half_to_f32(k[i]);
    return s;
}

static float dot_f32(const float *q, const float *k, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += q[i] * k[i];
    return s;
}

static void axpy_f16(float *y, float a, const uint16_t *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * half_to_f32(x[i]);
}

static void axpy_f32(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static float dot_f16h(const uint16_t *q, const uint16_t *k, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += half_to_f32(q[i]) * half_to_f32(k[i]);
    return s;
}

/* fmaf, as the AVX2 version's vfmadd: both give the same f16 results */
static void mad_f16h(uint16_t *y, float a, const uint16_t *x, int n) {
    for (int i = 0; i < n; i++) y[i] = half_from_f32(fmaf(half_to_f32(x[i]), a, half_to_f32(y[i])));
}

static void scale_f16h(uint16_t *y, float a, int n) {
    for (int i = 0; i < n; i++) y[i] = half_from_f32(half_to_f32(y[i]) * a);
}

static const attn_ops attn_ops_scalar = {dot_f16,  dot_f32,  axpy_f16,  axpy_f32,
                                         dot_f16h, mad_f16h, scale_f16h};

/* vecdot's AVX2 level is compiled with the same flags (AVX2, FMA, F16C) and only chosen when
 * the CPU and OS support all of them, so its ISA decision is ours too (SHOAL_ISA included). */
const attn_ops *attn_get(void) {
    return vecdot_best_isa() >= ISA_AVX2 ? &attn_ops_avx2 : &attn_ops_scalar;
}
