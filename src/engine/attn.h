/*
 * engine/attn — the inner loops of attention over the KV cache: dot products of a query with
 * cached keys and weighted sums of cached values, for f16 and f32 caches.
 *
 * The f16 cache uses the *_f16h functions, which work on f16 queries and an f16 accumulator the
 * way llama.cpp's CPU flash attention does (see docs/engine.md); the f32 cache uses the f32
 * query / f32 accumulator functions.
 *
 * attn_get() picks the AVX2+F16C+FMA versions (attn_avx2.c) when vecdot's ISA level allows
 * AVX2, else the portable scalar ones. Every version of one function gives the same result
 * for the same inputs regardless of which entries share a batch.
 */
#ifndef SHOAL_ENGINE_ATTN_H
#define SHOAL_ENGINE_ATTN_H

#include <stdint.h>

typedef struct attn_ops {
    /* sum_i q[i] * k[i] over n elements; k is f16 (dot_f16) or f32 (dot_f32) */
    float (*dot_f16)(const float *q, const uint16_t *k, int n);
    float (*dot_f32)(const float *q, const float *k, int n);
    /* y[i] += a * x[i] over n elements */
    void (*axpy_f16)(float *y, float a, const uint16_t *x, int n);
    void (*axpy_f32)(float *y, float a, const float *x, int n);
    /* sum_i q[i] * k[i] with both in f16 (every product is exact in float) */
    float (*dot_f16h)(const uint16_t *q, const uint16_t *k, int n);
    /* y[i] = fp16(fma(x[i], a, y[i])): an f16 accumulator, rounded after every update */
    void (*mad_f16h)(uint16_t *y, float a, const uint16_t *x, int n);
    /* y[i] = fp16(y[i] * a) */
    void (*scale_f16h)(uint16_t *y, float a, int n);
} attn_ops;

/* The best implementation for this CPU (static, never NULL). */
const attn_ops *attn_get(void);

/* The AVX2 implementation (defined in attn_avx2.c; call only when the CPU has AVX2, FMA and
 * F16C). */
extern const attn_ops attn_ops_avx2;

#endif
