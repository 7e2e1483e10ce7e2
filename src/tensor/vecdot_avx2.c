/*
 * tensor/vecdot_avx2 — the kernels of vecdot_x86.inc for AVX2 + FMA + F16C (compiled with
 * those flags; only called after CPUID says they exist). 8-bit products go through
 * vpmaddubsw + vpmaddwd.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/half.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"
#include "tensor/vecdot_impl.h"

/* ============================================================ float vectors ===== */

typedef __m256 vf;
#define VF_N 8
#define FLOAT_NR 1 /* 16 registers: 2 x 4 x 2 accumulators would spill */
#define FLOAT_NR_DEC 1
#define FLOAT_CVT_K 0 /* one row per tile: converting in the tile costs less */
#define FLOAT_G 4
static inline vf vf_zero(void) { return _mm256_setzero_ps(); }
static inline vf vf_ld(const float *p) { return _mm256_loadu_ps(p); }
static inline vf vf_ld_h(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
static inline vf vf_ld_bf(const uint16_t *p) { /* bf16 is the top half of a float */
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
static inline vf vf_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline float vf_hsum(vf v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ============================================================ 8-bit products ===== */

static inline __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

static inline __m256i dot_u8s8_w(__m256i acc, __m256i u, __m256i s, __m256i w16) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), w16));
}

/* sum (w - off) * a for unsigned w, off: two u8 x s8 pair sums, subtracted in 16 bits (both
 * are at most 2 * 31 * 127 in magnitude), then widened. */
static inline __m256i dot_off(__m256i w, __m256i a, __m256i off) {
    const __m256i d = _mm256_sub_epi16(_mm256_maddubs_epi16(w, a), _mm256_maddubs_epi16(off, a));
    return _mm256_madd_epi16(d, _mm256_set1_epi16(1));
}


/* Byte i = 0x10 when bit i is set: broadcast the u32, route byte i/8 to byte i, test bit i%8. */
static inline __m256i bits_to_0x10(uint32_t bits) {
    const __m256i route = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                            0x0101010101010101, 0x0000000000000000);
    const __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), route);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

#include "tensor/vecdot_x86.inc"

/* ============================================================ table ===== */

const vecdot_kernel vecdot_avx2_kernels[] = {
    {DT_F32, DT_F32, ISA_AVX2, mm_f32, NULL},
    {DT_F16, DT_F32, ISA_AVX2, mm_f16, NULL},
    {DT_BF16, DT_F32, ISA_AVX2, mm_bf16, NULL},
    {DT_Q8_0, DT_Q8_0, ISA_AVX2, mm_q8_0, NULL},
    {DT_Q4_0, DT_Q8_0, ISA_AVX2, mm_q4_0, NULL},
    {DT_Q4_1, DT_Q8_1, ISA_AVX2, mm_q4_1, NULL},
    {DT_Q5_0, DT_Q8_0, ISA_AVX2, mm_q5_0, NULL},
    {DT_Q5_1, DT_Q8_1, ISA_AVX2, mm_q5_1, NULL},
    {DT_Q4_K, DT_Q8_K, ISA_AVX2, mm_q4_k, NULL},
    {DT_Q5_K, DT_Q8_K, ISA_AVX2, mm_q5_k, NULL},
    {DT_Q6_K, DT_Q8_K, ISA_AVX2, mm_q6_k, NULL},
    {0, 0, ISA_AVX2, NULL, NULL},
};

