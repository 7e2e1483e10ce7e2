/*
 * engine/attn — the inner loops of attention over the KV cache: dot products of a query with
 * cached keys and weighted sums of cached values, for f16 and f32 caches.
 *
 * The f16 cache uses the *_f16h functions, which work on f16 queries and an f16 accumulator the
 * way llama.cpp's CPU flash attention does (see docs/engine.md); the f32 cache uses the f32
 * query / f32 accumulator functions, in the orders of llama.cpp's attention without flash
 * attention.
 *
 * attn_get() picks the AVX2+F16C+FMA versions (attn_avx2.c) when vecdot's ISA level allows
 * AVX2, else the portable scalar ones; at the AVX-512 level, the AVX2 table with the f16h and
 * f32 dots and weighted sums from attn_avx512.c, which give the AVX2 versions' bits. Every version
 * of one function gives the same result for the same inputs regardless of which entries share
 * a batch.
 */
#ifndef SHOAL_ENGINE_ATTN_H
#define SHOAL_ENGINE_ATTN_H

#include <stddef.h>
#include <stdint.h>

typedef struct attn_ops {
    /* sum_i q[i] * k[i] over n elements, k f16 */
    float (*dot_f16)(const float *q, const uint16_t *k, int n);
    /* sum_i q[i] * k[i] over n elements (f32), in the order of llama.cpp's ggml_vec_dot_f32 as
     * its AVX-512 builds run it (the scores of its f32-cache attention without flash attention):
     * over the first n64 = n & ~63 elements four 16-lane accumulators
     * a_j[l] = fma(q[i], k[i], a_j[l]) for i = 64 c + 16 j + l, then
     * x[l] = (a_0[l] + a_2[l]) + (a_1[l] + a_3[l]) reduced by the tree x[l] + x[l + 8], + 4,
     * + 2, + 1; then the remaining elements one by one as s = s + (q[i] k[i]) (product rounded,
     * no FMA). */
    float (*dot_f32)(const float *q, const float *k, int n);
    /* y[i] += a * x[i] over n elements */
    void (*axpy_f16)(float *y, float a, const uint16_t *x, int n);
    void (*axpy_f32)(float *y, float a, const float *x, int n);
    /* y[i] = sum over t = 0..nt-1 of p[t] * x[t * stride + i], i < n: bit-identical to zeroing y
     * and calling axpy_f16 for t = 0, 1, ... in order (the same operations per element), but with
     * the sums in registers instead of a store and reload per t */
    void (*wsum_f16)(float *y, const float *p, const uint16_t *x, size_t stride, int nt, int n);
    /* The same sum over an f32 cache in the order of llama.cpp's batched f32 matmul (tinyBLAS,
     * the weights x V of its f32-cache attention without flash attention, for a batch of
     * queries): 16 chains per element by position, acc_l = fma(x[t][i], p[t], acc_l) for
     * t = l, l + 16, l + 32, ... in order, then y[i] = the tree acc_l + acc_{l+8}, + 4, + 2,
     * + 1. (For a single query llama.cpp takes ggml_vec_dot_f32's order instead: its own
     * results depend on the batch there; this follows the batch.) */
    void (*wsum_f32)(float *y, const float *p, const float *x, size_t stride, int nt, int n);
    /* s[t] = dot(q, k + t * stride, n) * scale for t < nt: bit-identical to nt dot calls (the
     * same function inlined, so common head sizes keep q in registers) */
    void (*dots_f16)(float *s, const float *q, const uint16_t *k, size_t stride, int nt, int n,
                     float scale);
    void (*dots_f32)(float *s, const float *q, const float *k, size_t stride, int nt, int n,
                     float scale);
    /* dst[i] = f16(src[i]) for i < n, rounding to nearest even (as half_from_f32 for every
     * finite value; the AVX2 version uses F16C): the f16 KV cache stores */
    void (*to_f16)(uint16_t *dst, const float *src, int n);
    /* sum_i q[i] * k[i] with both in f16 (every product is exact in float), in the order of
     * llama.cpp's ggml_vec_dot_f16 as its AVX-512 builds run it (the CPUs it picks an AVX-512
     * variant for; its f16-cache flash attention scores with it): over the first
     * n64 = n & ~63 elements, four 16-lane float accumulators a_j[l] += q[i] k[i] for
     * i = 64 c + 16 j + l, then x[l] = (a_0[l] + a_2[l]) + (a_1[l] + a_3[l]) reduced by the tree
     * x[l] + x[l + 8], + 4, + 2, + 1; that float goes to double, the remaining n - n64 products
     * are added in double one by one, and the result is rounded to float. */
    float (*dot_f16h)(const uint16_t *q, const uint16_t *k, int n);
    /* y[i] = fp16(fma(x[i], a, y[i])): an f16 accumulator, rounded after every update */
    void (*mad_f16h)(uint16_t *y, float a, const uint16_t *x, int n);
    /* y[i] = fp16(y[i] * a) */
    void (*scale_f16h)(uint16_t *y, float a, int n);
    /* s[t] = dot_f16h(q, k + t * stride, n) * scale for t < nt: bit-identical to nt dot_f16h
     * calls (the same function inlined, so common head sizes keep q in registers) */
    void (*dots_f16h)(float *s, const uint16_t *q, const uint16_t *k, size_t stride, int nt,
                      int n, float scale);
    /* The f16 accumulator over nt rows x[t * stride + i], i < n, starting from 0: for t = 0, 1,
     * ...: if ms[t] != 1, acc = fp16(acc * ms[t]) (scale_f16h); then acc = fp16(fma(x, vs[t],
     * acc)) (mad_f16h); y[i] = the final acc as a float. Bit-identical to those calls on a
     * zeroed f16 buffer (scaling an f16 value by 1 is exact), with acc in registers. */
    void (*wsum_f16h)(float *y, const float *ms, const float *vs, const uint16_t *x,
                      size_t stride, int nt, int n);
    /* wsum_f16h for nh <= ATTN_WSUM_MAX_HEADS heads at once over the same positions: head j
     * has its own y[j], ms[j], vs[j] and x[j]. Bit-identical to nh wsum_f16h calls; one call
     * interleaves the heads' accumulator chains (each position's update waits on the
     * previous one's f16 rounding, so one head alone leaves the core mostly idle). */
    void (*wsum_f16h_n)(float *const *y, const float *const *ms, const float *const *vs,
                        const uint16_t *const *x, size_t stride, int nt, int n, int nh);
    /* Blocked f32 attention for an encoder (one input's one head, every query over every
     * key), in two steps around a row softmax. The keys come transposed: kt[d * np + j] is
     * element d of key j, for j < np (np a multiple of 16, keys past the input zero).
     *   scores_f32: s[i * s_stride + j] = scale * sum_d q[i * q_stride + d] * kt[d * np + j]
     *               for i < nq, j < np, d < hd summed in order (one FMA chain per element);
     *   wsum_rows_f32: out[i * o_stride + d] = sum_j p[i * p_stride + j] * v[j * v_stride + d]
     *               for i < nq, d < hd, j < nk summed in order (one FMA chain per element).
     * Every version gives the same bits (the same FMA chains), whatever nq is. */
    void (*scores_f32)(float *s, int s_stride, const float *q, size_t q_stride, const float *kt,
                       int np, int nq, int hd, float scale);
    void (*wsum_rows_f32)(float *out, size_t o_stride, const float *p, int p_stride,
                          const float *v, size_t v_stride, int nq, int nk, int hd);
} attn_ops;

#define ATTN_WSUM_MAX_HEADS 4

/*
 * The online softmax of llama.cpp's CPU flash attention over scores s[t], t < nt, in place:
 * walking t with the running max M (from -inf) and sum S (from 0), a score above M makes
 * ms[t] = expf(M - s[t]) (what the accumulated output is rescaled by) and weight 1, M = s[t];
 * otherwise ms[t] = 1 and the weight is expf(s[t] - M). s[t] becomes the weight; the return
 * value is S, updated as S * ms[t] + weight with two roundings (llama.cpp's build does not fuse
 * it: with an FMA, 2 of 168 head rows of a 7-token prompt came out an ulp off its output).
 */
float attn_online_softmax(float *s, float *ms, int nt);

/* The best implementation for this CPU (static, never NULL). */
const attn_ops *attn_get(void);

/* The AVX2 implementation (defined in attn_avx2.c; call only when the CPU has AVX2, FMA and
 * F16C). */
extern const attn_ops attn_ops_avx2;

/* Replaces ops' dot_f16h, dots_f16h, wsum_f16h, wsum_f16h_n, dot_f32, dots_f32 and wsum_f32
 * with the AVX-512 versions (attn_avx512.c), bit-identical to the AVX2 ones; call only when the
 * CPU has AVX-512F/BW/VL/DQ, AVX2, FMA and F16C. */
void attn_avx512_patch(attn_ops *ops);

/* The table attn_get() returns at the AVX-512 level (the AVX2 one patched as above); the
 * caller checks the CPU as for attn_avx512_patch. */
const attn_ops *attn_avx512_table(void);

#endif
