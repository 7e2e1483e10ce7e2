/*
 * tensor/vecdot_avx512 — the kernels of vecdot_x86.inc for AVX-512 (F, BW, VL, DQ, VNNI,
 * BF16; compiled with those flags, only called after CPUID says they exist). Float kernels use
 * 512-bit vectors; the 8-bit kernels stay at 256 bits (one 32-element block per vector) but use
 * VNNI: vpdpbusd for u8 x s8 sums, vpdpwssd for scaled 16-bit sums, and mask moves to expand
 * the 5th bits of Q5 blocks.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/half.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"
#include "tensor/vecdot_impl.h"

#define VD_ISA   ISA_AVX512
#define VD_TABLE vecdot_avx512_kernels

/* ============================================================ float vectors ===== */

typedef __m512 vf;
#define VF_N 16
static inline vf vf_zero(void) { return _mm512_setzero_ps(); }
static inline vf vf_ld(const float *p) { return _mm512_loadu_ps(p); }
static inline vf vf_ld_h(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline vf vf_ld_bf(const uint16_t *p) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
static inline vf vf_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline vf vf_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline float vf_hsum(vf v) {
    /* fixed reduction tree (not _mm512_reduce_add_ps, whose order is the compiler's choice) */
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ============================================================ 8-bit products ===== */

static inline __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(acc, u, s);
}

static inline __m256i dot_u8s8_w(__m256i acc, __m256i u, __m256i s, __m256i w16) {
    return _mm256_dpwssd_epi32(acc, _mm256_maddubs_epi16(u, s), w16);
}

/* sum (w - off) * a for unsigned w, off */
static inline __m256i dot_off(__m256i w, __m256i a, __m256i off) {
    const __m256i z = _mm256_setzero_si256();
    return _mm256_sub_epi32(_mm256_dpbusd_epi32(z, w, a), _mm256_dpbusd_epi32(z, off, a));
}


static inline __m256i bits_to_0x10(uint32_t bits) {
    return _mm256_maskz_mov_epi8((__mmask32)bits, _mm256_set1_epi8(0x10));
}

#include "tensor/vecdot_x86.inc"
