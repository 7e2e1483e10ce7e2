/*
 * tensor/vecdot_avx512 — the kernels of vecdot_x86.inc for AVX-512 (F, BW, VL, DQ, VNNI,
 * BF16; compiled with those flags, only called after CPUID says they exist). Float kernels use
 * 512-bit vectors in tiles of 2 weight rows; the 32-block types have 512-bit kernels of their
 * own (two blocks per vector, below); the K-quant kernels stay at 256 bits but use VNNI:
 * vpdpbusd for u8 x s8 sums, vpdpwssd for scaled 16-bit sums; mask moves expand 5th bits.
 */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "core/half.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"
#include "tensor/vecdot_impl.h"

/* ============================================================ float vectors ===== */

typedef __m512 vf;
#define VF_N 16
/* 4 weight rows x 2 activation rows x 2 accumulators: each activation vector loaded from L2
 * serves 4 rows (2 x 4 x 2 was bound by reading the activations) */
#define FLOAT_NR 4
#define FLOAT_NR_DEC 2
#define FLOAT_CVT_K 1024 /* 4 rows of f32: 16 KiB, in L1 with the activations */
#define FLOAT_G 2
static inline vf vf_zero(void) { return _mm512_setzero_ps(); }
static inline vf vf_ld(const float *p) { return _mm512_loadu_ps(p); }
static inline void vf_st(float *p, vf v) { _mm512_storeu_ps(p, v); }
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

/* ============================================================ 512-bit 32-block kernels ===== */

/*
 * The 32-block types with two blocks per 512-bit vector: one vpdpbusd covers 64 products
 * and the float part (convert, scale, FMA) runs once per pair, which is where the 256-bit
 * kernels spend most of their time. Lanes 0-7 belong to the first block, 8-15 to the second;
 * pairs alternate between two accumulators, a last odd block goes to the first one in the low
 * lanes. Same arithmetic for every activation row and every row range (batch invariance).
 */

/* two consecutive blocks' nibbles: [lo b, hi b, lo b+1, hi b+1] as 64 bytes 0..15 */
ALWAYS_INLINE __m512i w2_q4_0(const quant_block_q4_0 *w) {
    const __m256i x = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w[0].qs));
    const __m256i y = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w[1].qs));
    const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(x), y, 1);
    return _mm512_and_si512(_mm512_srlv_epi64(q, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0)),
                            _mm512_set1_epi8(0x0F));
}
ALWAYS_INLINE __m512i w2_q8_0(const quant_block_q8_0 *w) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)w[0].qs)),
                              _mm256_loadu_si256((const __m256i *)w[1].qs), 1);
}
/* sum (q - 8) * a per 4 bytes */
ALWAYS_INLINE __m512i dot2_q4_0(__m512i w, __m512i a) {
    const __m512i z = _mm512_setzero_si512();
    return _mm512_sub_epi32(_mm512_dpbusd_epi32(z, w, a),
                            _mm512_dpbusd_epi32(z, _mm512_set1_epi8(8), a));
}
/* signed x signed: |w| * (a with the sign of w) */
ALWAYS_INLINE __m512i dot2_q8_0(__m512i w, __m512i a) {
    const __m512i z = _mm512_setzero_si512();
    const __m512i s = _mm512_mask_sub_epi8(a, _mm512_movepi8_mask(w), z, a);
    return _mm512_dpbusd_epi32(z, _mm512_abs_epi8(w), s);
}
/* the int8 levels of two consecutive activation blocks (Q8_0 or Q8_1) */
#define ACT2(p)                                                                                    \
    _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p)[0].qs)),    \
                       _mm256_loadu_si256((const __m256i *)(p)[1].qs), 1)
ALWAYS_INLINE __m256i dot1_q4_0(__m256i w, __m256i a) { return wdot_off8(w, a); }
ALWAYS_INLINE __m256i dot1_q8_0(__m256i w, __m256i a) { return wdot_s8(w, a); }

ALWAYS_INLINE float hsum512(__m512 v) { return vf_hsum(v); }

/* [s0 x 8, s1 x 8] from the first two lanes of s */
ALWAYS_INLINE __m512 spread2(__m128 s) {
    return _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                                 _mm512_castps128_ps512(s));
}

/* two consecutive blocks' 5-bit levels (Q5_0 / Q5_1): nibbles plus 0x10 where the bit is set */
ALWAYS_INLINE __m512i w2_q5(const uint8_t *qs0, const uint8_t *qh0, const uint8_t *qs1,
                            const uint8_t *qh1) {
    const __m256i x = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs0));
    const __m256i y = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs1));
    const __m512i q = _mm512_and_si512(
        _mm512_srlv_epi64(_mm512_inserti64x4(_mm512_castsi256_si512(x), y, 1),
                          _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0)),
        _mm512_set1_epi8(0x0F));
    const __mmask64 hi = (__mmask64)ld_u32(qh0) | (__mmask64)ld_u32(qh1) << 32;
    return _mm512_or_si512(q, _mm512_maskz_mov_epi8(hi, _mm512_set1_epi8(0x10)));
}
ALWAYS_INLINE __m512i w2_q5_0(const quant_block_q5_0 *w) {
    return w2_q5(w[0].qs, w[0].qh, w[1].qs, w[1].qh);
}
ALWAYS_INLINE __m512i w2_q5_1(const quant_block_q5_1 *w) {
    return w2_q5(w[0].qs, w[0].qh, w[1].qs, w[1].qh);
}
ALWAYS_INLINE __m512i w2_q4_1(const quant_block_q4_1 *w) {
    const __m256i x = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w[0].qs));
    const __m256i y = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w[1].qs));
    const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(x), y, 1);
    return _mm512_and_si512(_mm512_srlv_epi64(q, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0)),
                            _mm512_set1_epi8(0x0F));
}
/* sum (q - 16) * a per 4 bytes */
ALWAYS_INLINE __m512i dot2_q5_0(__m512i w, __m512i a) {
    const __m512i z = _mm512_setzero_si512();
    return _mm512_sub_epi32(_mm512_dpbusd_epi32(z, w, a),
                            _mm512_dpbusd_epi32(z, _mm512_set1_epi8(16), a));
}
/* sum q * a (unsigned levels; the minimum is added separately) */
ALWAYS_INLINE __m512i dot2_u8(__m512i w, __m512i a) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, a);
}
ALWAYS_INLINE __m256i dot1_q5_0(__m256i w, __m256i a) { return wdot_off16(w, a); }
ALWAYS_INLINE __m256i dot1_u8(__m256i w, __m256i a) { return wdot_u8(w, a); }
/* fp16 minimums of two blocks as floats in lanes 0, 1 (zero for the symmetric types) */
ALWAYS_INLINE __m128 wmin2_none(const void *w) { return (void)w, _mm_setzero_ps(); }
ALWAYS_INLINE __m128 wmin2_q4_1(const quant_block_q4_1 *w) {
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)w[0].m | (uint32_t)w[1].m << 16)));
}
ALWAYS_INLINE __m128 wmin2_q5_1(const quant_block_q5_1 *w) {
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)w[0].m | (uint32_t)w[1].m << 16)));
}

#define PAIR_BLOCKS(W2, DOT2, WMIN2, ASYM, b, ACC, SM)                                             \
    do {                                                                                           \
        const __m512i wq = W2(&w[b]);                                                              \
        /* both fp16 scales in one 32-bit word: scalar ALU work, not shuffles on the vector ports */\
        const __m128 dw = _mm_cvtph_ps(                                                            \
            _mm_cvtsi32_si128((int)((uint32_t)w[b].d | (uint32_t)w[b + 1].d << 16)));              \
        const __m128 mw = WMIN2(&w[b]);                                                            \
        UNROLL_G for (int g = 0; g < na; g++) {                                                    \
            const __m512i aq = ACT2(&A->q[g][b]);                                                  \
            const __m128 da = pre ? _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)&A->d[g][b]))\
                                  : _mm_setr_ps(_cvtsh_ss(A->q[g][b].d),                           \
                                                _cvtsh_ss(A->q[g][b + 1].d), 0, 0);                \
            const __m512 d = spread2(_mm_mul_ps(dw, da));                                          \
            ACC[g] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(DOT2(wq, aq)), ACC[g]);                 \
            if (ASYM) {                                                                            \
                const __m128 sa = pre ? _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)&A->s[g][b]))\
                                      : _mm_setr_ps(ACT_SUM(&A->q[g][b]),                          \
                                                    ACT_SUM(&A->q[g][b + 1]), 0, 0);               \
                SM[g] = _mm_fmadd_ps(mw, sa, SM[g]);                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#define DEFINE_PAIR_ROWS(fn, bt, AS, W2, DOT2, WMIN2, WVEC1, DOT1, WMIN1, ASYM)                    \
    ALWAYS_INLINE void fn(int64_t k, const bt *w, const act_rows_##AS *A, int na, float *res,      \
                          int pre) {                                                               \
        __m512 acc0[G], acc1[G];                                                                   \
        __m128 sm0[G], sm1[G]; /* minimum terms of the asymmetric types, lanes 0 and 1 */          \
        UNROLL_G for (int g = 0; g < na; g++) {                                                    \
            acc0[g] = acc1[g] = _mm512_setzero_ps();                                               \
            sm0[g] = sm1[g] = _mm_setzero_ps();                                                    \
        }                                                                                          \
        const int64_t nb = k / QUANT_QK;                                                           \
        int64_t b = 0;                                                                             \
        for (; b + 4 <= nb; b += 4) {                                                              \
            _mm_prefetch((const char *)&w[b] + 2048, _MM_HINT_T0);                                 \
            PAIR_BLOCKS(W2, DOT2, WMIN2, ASYM, b, acc0, sm0);                                      \
            PAIR_BLOCKS(W2, DOT2, WMIN2, ASYM, b + 2, acc1, sm1);                                  \
        }                                                                                          \
        if (b + 2 <= nb) {                                                                         \
            PAIR_BLOCKS(W2, DOT2, WMIN2, ASYM, b, acc0, sm0);                                      \
            b += 2;                                                                                \
        }                                                                                          \
        if (b < nb) { /* odd block: low 8 lanes of the first accumulator */                        \
            const __m256i wq = WVEC1(&w[b]);                                                       \
            const float dw = _cvtsh_ss(w[b].d);                                                    \
            UNROLL_G for (int g = 0; g < na; g++) {                                                \
                const __m256i aq = _mm256_loadu_si256((const __m256i *)A->q[g][b].qs);             \
                const __m256 d = _mm256_set1_ps(dw * ACT_D(A, g, b, pre));                         \
                const __m256 p = _mm256_cvtepi32_ps(DOT1(wq, aq));                                 \
                acc0[g] = _mm512_fmadd_ps(_mm512_zextps256_ps512(d), _mm512_zextps256_ps512(p),    \
                                          acc0[g]);                                                \
                if (ASYM) { /* lane 0 only; _mm_fmadd_ss would take lanes 1-3 from its 1st operand */ \
                    const __m128 t = _mm_fmadd_ss(_mm_set_ss(WMIN1(&w[b])),                        \
                                                  _mm_set_ss(ACT_S(A, g, b, pre)), sm0[g]);        \
                    sm0[g] = _mm_move_ss(sm0[g], t);                                               \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        UNROLL_G for (int g = 0; g < na; g++) {                                                    \
            res[g] = hsum512(_mm512_add_ps(acc0[g], acc1[g]));                                     \
            if (ASYM) {                                                                            \
                const __m128 m = _mm_add_ps(sm0[g], sm1[g]);                                       \
                res[g] += _mm_cvtss_f32(m) + _mm_cvtss_f32(_mm_movehdup_ps(m));                    \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_PAIR_ROWS(rows2_q8_0, quant_block_q8_0, q8_0, w2_q8_0, dot2_q8_0, wmin2_none, wvec_q8_0,
                 dot1_q8_0, wmin_none, 0)
DEFINE_PAIR_ROWS(rows2_q4_0, quant_block_q4_0, q8_0, w2_q4_0, dot2_q4_0, wmin2_none, wvec_q4_0,
                 dot1_q4_0, wmin_none, 0)
DEFINE_PAIR_ROWS(rows2_q5_0, quant_block_q5_0, q8_0, w2_q5_0, dot2_q5_0, wmin2_none, wvec_q5_0,
                 dot1_q5_0, wmin_none, 0)
DEFINE_PAIR_ROWS(rows2_q4_1, quant_block_q4_1, q8_1, w2_q4_1, dot2_u8, wmin2_q4_1, wvec_q4_1,
                 dot1_u8, wmin_q4_1, 1)
DEFINE_PAIR_ROWS(rows2_q5_1, quant_block_q5_1, q8_1, w2_q5_1, dot2_u8, wmin2_q5_1, wvec_q5_1,
                 dot1_u8, wmin_q5_1, 1)
DEFINE_Q32_MATMUL(mm512_q8_0, quant_block_q8_0, q8_0, rows2_q8_0, 0)
DEFINE_Q32_MATMUL(mm512_q4_0, quant_block_q4_0, q8_0, rows2_q4_0, 0)
DEFINE_Q32_MATMUL(mm512_q5_0, quant_block_q5_0, q8_0, rows2_q5_0, 0)
DEFINE_Q32_MATMUL(mm512_q4_1, quant_block_q4_1, q8_1, rows2_q4_1, 1)
DEFINE_Q32_MATMUL(mm512_q5_1, quant_block_q5_1, q8_1, rows2_q5_1, 1)

/* ============================================================ packed Q8_0 / Q4_0 ===== */

/*
 * Kernels on the packed layout (vecdot.h, vecdot.c): lane r of every 512-bit vector belongs to
 * row r of a 16-row group, so a tile is one group x na activation rows and nothing is summed
 * horizontally. Per block column b and activation row j:
 *
 *     isum = -off * sum(a_jb) + sum_c dpbusd(w_c, broadcast(a_jb[4c..4c+3]))     (exact int32)
 *     acc_j = fma(float(isum), dw_b * da_jb, acc_j)                               (per lane)
 *
 * with off = 128 for Q8_0 (stored as w + 128, unsigned) and 8 for Q4_0 (nibbles 0..15): the
 * sums of the activation blocks come from the row's trailer. The integer part may be computed
 * in any order (it is exact); the float part is one FMA per block column in block order, the
 * same for every na and every group: results never depend on n_act or on the row split. One
 * weight load feeds 16 rows x na activation rows; the activation bytes are broadcast from
 * memory.
 */

#define PK VECDOT_PACK_ROWS

/* Tuning (measured with bench_vecdot on the reference VM): decode reads PK_NG groups side by
 * side and prefetches each cache line PK_PF bytes ahead; 1 to 4 streams, 0.5 to 8 KiB ahead,
 * into L1 or L2 were all within a few percent, a read loop gets no more out of DRAM. The first
 * activation tile of a small batch (several sequences decoding together) also streams the
 * weights from memory, with more arithmetic per byte: there PK_PF_TILE = 2 KiB ahead into L1
 * gave +7% over 1 KiB ("mm-mem" column, 8 activation rows: 2 and 4 KiB alike, 6 KiB and an
 * L2 hint worse). Non-temporal prefetches, to keep part of a model resident in L3, cost up to
 * 35% of decode speed. Prefill keeps blocks of groups of at most PK_L2_BYTES of weights in L2
 * while each tile of activation rows stays in L1 (128 KiB: +5-10% over one group at a time). */
#define PK_NG 2
#define PK_PF 1024
#define PK_PF_TILE 2048

/* Every cache line of the bytes at p, PK_PF_TILE ahead: a tile's first pass over weights that
 * come from memory. */
ALWAYS_INLINE void pk_prefetch_tile(const uint8_t *p, size_t bytes) {
    UNROLL_8 for (size_t l = 0; l < bytes; l += 64)
        _mm_prefetch((const char *)p + PK_PF_TILE + l, _MM_HINT_T0);
}
#define PK_L2_BYTES (128 << 10)

typedef struct {
    const uint8_t *q[8];         /* activation rows (blocks of 34 bytes: fp16 d, 32 x int8) */
    const uint8_t *t[8];         /* their trailers (vecdot_act_sum per block) */
} pk_acts;

ALWAYS_INLINE void pk_wload_q8_0(const uint8_t *g, int64_t b, __m512i w[8]) {
    const uint8_t *p = g + (size_t)b * 512;
    UNROLL_8 for (int c = 0; c < 8; c++) w[c] = _mm512_loadu_si512((const void *)(p + 64 * c));
}

ALWAYS_INLINE void pk_wload_q4_0(const uint8_t *g, int64_t b, __m512i w[8]) {
    const uint8_t *p = g + (size_t)b * 256;
    const __m512i m = _mm512_set1_epi8(0x0F);
    UNROLL_8 for (int c = 0; c < 4; c++) {
        const __m512i x = _mm512_loadu_si512((const void *)(p + 64 * c));
        w[c] = _mm512_and_si512(x, m);
        w[c + 4] = _mm512_and_si512(_mm512_srli_epi16(x, 4), m);
    }
}

typedef int32_t __attribute__((aligned(1), may_alias)) pk_i32u; /* any address */

/* acc += vpdpbusd(w, 4 bytes at p broadcast to every lane), with the bytes as the embedded-
 * broadcast memory operand: one fused uop, where the intrinsics version compiles to a separate
 * broadcast load per product (the prefill tile is bound by the front end otherwise). The 4
 * bytes need no alignment. */
ALWAYS_INLINE __m512i pk_dp_bcast(__m512i acc, __m512i w, const uint8_t *p) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0"
            : "+v"(acc)
            : "v"(w), "m"(*(const pk_i32u *)(const void *)p));
    return acc;
}
/* acc[j] (16 rows) over all nb block columns of group g, for na activation rows. SPLIT uses
 * two integer chains per activation row (decode: hides the vpdpbusd latency). */
#define DEFINE_PK_TILE(fn, WLOAD, VB, CORR)                                                        \
    ALWAYS_INLINE void fn(const uint8_t *g, int64_t nb, const pk_acts *A, int na, __m512 *acc,     \
                          int pf) {                                                                \
        const uint8_t *sc = g + (size_t)nb * (VB);                                                 \
        UNROLL_8 for (int j = 0; j < na; j++) acc[j] = _mm512_setzero_ps();                        \
        for (int64_t b = 0; b < nb; b++) {                                                         \
            if (pf) /* first pass over these weights (small batches): they come from memory */     \
                pk_prefetch_tile(g + (size_t)b * (VB), (VB));                                      \
            __m512i w[8];                                                                          \
            WLOAD(g, b, w);                                                                        \
            const __m512 dw =                                                                      \
                _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sc + (size_t)b * 2 * PK)));   \
            UNROLL_8 for (int j = 0; j < na; j++) {                                                \
                const uint8_t *aq = A->q[j] + (size_t)b * sizeof(quant_block_q8_0) + 2;            \
                /* scale and offset term broadcast straight from the trailer (load ports only) */  \
                const uint8_t *t = A->t[j] + (size_t)b * sizeof(vecdot_act_sum);                   \
                __m512i s0 = _mm512_set1_epi32((int)ld_u32(t + (CORR)));                           \
                if (na < 4) {                                                                      \
                    __m512i s1 = _mm512_setzero_si512();                                           \
                    UNROLL_8 for (int c = 0; c < 8; c += 2) {                                      \
                        s0 = pk_dp_bcast(s0, w[c], aq + 4 * c);                                    \
                        s1 = pk_dp_bcast(s1, w[c + 1], aq + 4 * c + 4);                            \
                    }                                                                              \
                    s0 = _mm512_add_epi32(s0, s1);                                                 \
                } else {                                                                           \
                    UNROLL_8 for (int c = 0; c < 8; c++)                                           \
                        s0 = pk_dp_bcast(s0, w[c], aq + 4 * c);                                    \
                }                                                                                  \
                const __m512 da = _mm512_castsi512_ps(_mm512_set1_epi32((int)ld_u32(t)));         \
                const __m512 d = _mm512_mul_ps(dw, da);                                            \
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), d, acc[j]);                       \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_PK_TILE(pk_tile_q8_0, pk_wload_q8_0, 512, offsetof(vecdot_act_sum, s_q8_0))
DEFINE_PK_TILE(pk_tile_q4_0, pk_wload_q4_0, 256, offsetof(vecdot_act_sum, s_q4_0))


/* Decode (one activation row): PK_NG groups side by side, so one thread reads several streams
 * at once; per group exactly the arithmetic of the na = 1 tile. */
#define DEFINE_PK_DEC(fn, WLOAD, VB, CORR)                                                         \
    ALWAYS_INLINE void fn(const uint8_t *const *g, int ng, int64_t nb, const pk_acts *A,           \
                          __m512 *acc) {                                                           \
        UNROLL_8 for (int i = 0; i < ng; i++) acc[i] = _mm512_setzero_ps();                        \
        for (int64_t b = 0; b < nb; b++) {                                                         \
            const uint8_t *aq = A->q[0] + (size_t)b * sizeof(quant_block_q8_0) + 2;                \
            const uint8_t *t = A->t[0] + (size_t)b * sizeof(vecdot_act_sum);                       \
            const __m512i s_init = _mm512_set1_epi32((int)ld_u32(t + (CORR)));                     \
            const __m512 da = _mm512_castsi512_ps(_mm512_set1_epi32((int)ld_u32(t)));              \
            UNROLL_8 for (int i = 0; i < ng; i++) {                                                \
                UNROLL_8 for (int l = 0; l < (VB); l += 64)                                        \
                    _mm_prefetch((const char *)g[i] + (size_t)b * (VB) + PK_PF + l, _MM_HINT_T0);  \
                __m512i w[8];                                                                      \
                WLOAD(g[i], b, w);                                                                 \
                const __m512 dw = _mm512_cvtph_ps(                                                 \
                    _mm256_loadu_si256((const __m256i *)(g[i] + nb * (VB) + (size_t)b * 2 * PK))); \
                __m512i s0 = s_init, s1 = _mm512_setzero_si512();                                  \
                UNROLL_8 for (int c = 0; c < 8; c += 2) {                                          \
                    s0 = pk_dp_bcast(s0, w[c], aq + 4 * c);                                        \
                    s1 = pk_dp_bcast(s1, w[c + 1], aq + 4 * c + 4);                                \
                }                                                                                  \
                s0 = _mm512_add_epi32(s0, s1);                                                     \
                const __m512 d = _mm512_mul_ps(dw, da);                                            \
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), d, acc[i]);                       \
            }                                                                                      \
        }                                                                                          \
    }
DEFINE_PK_DEC(pk_dec_q8_0, pk_wload_q8_0, 512, offsetof(vecdot_act_sum, s_q8_0))
DEFINE_PK_DEC(pk_dec_q4_0, pk_wload_q4_0, 256, offsetof(vecdot_act_sum, s_q4_0))

/* One group x na activation rows starting at j, stored under the row mask. */
#define PK_TILE_CASE(TILE, N)                                                                      \
    case N: {                                                                                      \
        __m512 acc[N];                                                                             \
        TILE(g, nb, &A, N, acc, j == 0);                                                           \
        UNROLL_8 for (int i = 0; i < N; i++)                                                       \
            _mm512_mask_storeu_ps(out + (j + i) * os + g0, m, acc[i]);                             \
        break;                                                                                     \
    }

#define DEFINE_PK_MATMUL(name, TILE, DEC)                                                          \
    static void name(int64_t k, const void *W, size_t gs, int64_t r0, int64_t r1, const void *Av,  \
                     size_t as, int64_t n, float *out, int64_t os) {                               \
        const int64_t nb = k / QUANT_QK;                                                           \
        const size_t toff = vecdot_act_trailer_offset(nb);                                         \
        if (n == 1) {                                                                              \
            pk_acts A;                                                                             \
            A.q[0] = Av;                                                                           \
            A.t[0] = A.q[0] + toff;                                                                \
            for (int64_t g0 = r0 / PK * PK; g0 < r1; g0 += PK_NG * PK) {                           \
                const uint8_t *g[PK_NG];                                                           \
                __m512 acc[PK_NG];                                                                 \
                int ng = 0;                                                                        \
                for (; ng < PK_NG && g0 + ng * PK < r1; ng++)                                      \
                    g[ng] = (const uint8_t *)W + (size_t)((g0 + ng * PK) / PK) * gs;               \
                if (ng == PK_NG) DEC(g, PK_NG, nb, &A, acc);                                       \
                else DEC(g, 1, nb, &A, acc), ng = 1;                                               \
                for (int i = 0; i < ng; i++) {                                                     \
                    const int64_t gi = g0 + i * PK;                                                \
                    const int64_t lo = r0 > gi ? r0 - gi : 0, hi = r1 - gi < PK ? r1 - gi : PK;    \
                    const __mmask16 m = (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));         \
                    _mm512_mask_storeu_ps(out + gi, m, acc[i]);                                    \
                }                                                                                  \
                g0 += (ng - PK_NG) * PK;                                                           \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        /* blocks of groups whose weights stay in L2 (PK_L2_BYTES); within a block, each tile of   \
         * activation rows (in L1) meets every group of the block */                               \
        int64_t gblk = (int64_t)(PK_L2_BYTES / gs);                                                \
        if (gblk < 1) gblk = 1;                                                                    \
        for (int64_t b0 = r0 / PK * PK; b0 < r1; b0 += gblk * PK) {                                \
            const int64_t b1 = b0 + gblk * PK < r1 ? b0 + gblk * PK : r1;                          \
            for (int64_t j = 0; j < n;) {                                                          \
                const int na = n - j >= 8 ? 8 : n - j >= 4 ? 4 : 1;                                \
                pk_acts A;                                                                         \
                for (int i = 0; i < na; i++) {                                                     \
                    A.q[i] = (const uint8_t *)Av + (size_t)(j + i) * as;                           \
                    A.t[i] = A.q[i] + toff;                                                        \
                }                                                                                  \
                for (int64_t g0 = b0; g0 < b1; g0 += PK) {                                         \
                    const uint8_t *g = (const uint8_t *)W + (size_t)(g0 / PK) * gs;                \
                    const int64_t lo = r0 > g0 ? r0 - g0 : 0, hi = b1 - g0 < PK ? b1 - g0 : PK;    \
                    const __mmask16 m = (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));         \
                    switch (na) {                                                                  \
                        PK_TILE_CASE(TILE, 8)                                                      \
                        PK_TILE_CASE(TILE, 4)                                                      \
                        PK_TILE_CASE(TILE, 1)                                                      \
                    }                                                                              \
                }                                                                                  \
                j += na;                                                                           \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_PK_MATMUL(mmp_q8_0, pk_tile_q8_0, pk_dec_q8_0)
DEFINE_PK_MATMUL(mmp_q4_0, pk_tile_q4_0, pk_dec_q4_0)

/* ============================================================ packed Q4_K, Q5_K ===== */

/*
 * Q4_K on its packed layout (VECDOT_Q4K_PACKED_BYTES in vecdot.h): one 32-bit lane per weight
 * row of a 16-row group, Q8_K activation rows. Per super-block, activation row j and weight
 * row r, exactly the scalar reference's integers and float operations (vecdot.c, dot_q4_k):
 *
 *     sumi = sum_j sc_j * sum(q * a)      (vpdpbusd per 4 values, vpmulld by the lane's scale)
 *     summ = sum_j m_j * (bsum_2j + bsum_2j+1)          (vpdpwssd on pairs of sub-blocks)
 *     acc  = fma(float(sumi), da * dw, acc), then fma(float(summ), -(da * dmin), acc)
 *
 * so the packed kernel gives the reference's bits for every n_act and row split. The values of
 * a 64-value chunk are loaded once per activation tile: low nibbles for every activation row,
 * then the high ones. Q5_K (VECDOT_Q5K_PACKED_BYTES) is the same with each value's fifth bit
 * OR-ed in at bit 4 (q up to 31: the integers still fit), as vecdot.c's dot_q5_k.
 */

/* The pairs (b_2p, b_2p+1) of sub-block sums b_j = bsums[2j] + bsums[2j+1] of one Q8_K block,
 * as 4 int32 (two int16 each) for vpdpwssd; |b_j| <= 32 * 128 fits an int16. */
ALWAYS_INLINE void q4kp_bpairs(const quant_block_q8_k *a, int32_t out[4]) {
    const __m256i bs = _mm256_loadu_si256((const __m256i *)a->bsums);
    const __m256i b32 = _mm256_madd_epi16(bs, _mm256_set1_epi16(1));
    _mm_storeu_si128((__m128i *)out,
                     _mm_packs_epi32(_mm256_castsi256_si128(b32), _mm256_extracti128_si256(b32, 1)));
}

/* acc[j] += the super-block at sb for activation rows j < na (a[j]: their Q8_K blocks, bp[j]:
 * their pairs from q4kp_bpairs). Q5 (a constant): Q5_K's layout, whose fifth bits are OR-ed into
 * the values at bit 4 (VECDOT_Q5K_PACKED_BYTES); the rest is Q4_K's arithmetic. Few rows (na
 * < 4): two integer chains per row, for latency. */
ALWAYS_INLINE void q4kp_block(const uint8_t *sb, const quant_block_q8_k *const *a,
                              const int32_t (*bp)[4], int na, __m512 *acc, int pf, const int Q5) {
    const __m512i mask = _mm512_set1_epi8(0x0F);
    const size_t tail = Q5 ? 2560 : 2048; /* scales, mins, d, dmin */
    __m512i sumi[8];
    UNROLL_8 for (int j = 0; j < na; j++) sumi[j] = _mm512_setzero_si512();
    if (pf) pk_prefetch_tile(sb, Q5 ? VECDOT_Q5K_PACKED_BYTES : VECDOT_Q4K_PACKED_BYTES);
    UNROLL_8 for (int c = 0; c < 4; c++) {
        UNROLL_8 for (int half = 0; half < 2; half++) {
            __m512i w[8];
            UNROLL_8 for (int q = 0; q < 8; q++) {
                const __m512i x = _mm512_loadu_si512((const void *)(sb + (size_t)(c * 8 + q) * 64));
                w[q] = _mm512_and_si512(half ? _mm512_srli_epi16(x, 4) : x, mask);
                if (Q5) { /* bit q % 4 + 4 half of the fifth-bit chunk, moved to bit 4 */
                    const __m512i h = _mm512_loadu_si512(
                        (const void *)(sb + 2048 + (size_t)(c * 2 + q / 4) * 64));
                    const int sh = 4 - (q % 4) - 4 * half;
                    const __m512i hs = sh > 0   ? _mm512_slli_epi16(h, sh)
                                       : sh < 0 ? _mm512_srli_epi16(h, -sh)
                                                : h;
                    w[q] = _mm512_ternarylogic_epi32(w[q], hs, _mm512_set1_epi8(0x10), 0xF8);
                }
            }
            const __m512i sc = _mm512_cvtepu8_epi32(
                _mm_loadu_si128((const __m128i *)(sb + tail + (2 * c + half) * 16)));
            UNROLL_8 for (int j = 0; j < na; j++) {
                const uint8_t *av = (const uint8_t *)a[j]->qs + 64 * c + 32 * half;
                __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
                UNROLL_8 for (int q = 0; q < 8; q += 2) {
                    s0 = pk_dp_bcast(s0, w[q], av + 4 * q);
                    if (na < 4) s1 = pk_dp_bcast(s1, w[q + 1], av + 4 * q + 4);
                    else s0 = pk_dp_bcast(s0, w[q + 1], av + 4 * q + 4);
                }
                if (na < 4) s0 = _mm512_add_epi32(s0, s1);
                sumi[j] = _mm512_add_epi32(sumi[j], _mm512_mullo_epi32(s0, sc));
            }
        }
    }
    __m512i mp[4];
    UNROLL_8 for (int p = 0; p < 4; p++) {
        const __m256i m8 = _mm256_loadu_si256((const __m256i *)(sb + tail + 128 + 32 * p));
        mp[p] = _mm512_cvtepu8_epi16(m8);
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + tail + 256)));
    const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + tail + 288)));
    UNROLL_8 for (int j = 0; j < na; j++) {
        __m512i summ = _mm512_setzero_si512();
        UNROLL_8 for (int p = 0; p < 4; p++)
            summ = _mm512_dpwssd_epi32(summ, mp[p], _mm512_set1_epi32(bp[j][p]));
        const __m512 da = _mm512_set1_ps(a[j]->d);
        acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[j]), _mm512_mul_ps(da, dw), acc[j]);
        const __m512 ndm = _mm512_xor_ps(_mm512_mul_ps(da, dmin), _mm512_set1_ps(-0.0f));
        acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(summ), ndm, acc[j]);
    }
}

/* One group x na activation rows over all super-blocks, stored under the row mask. */
#define K45P_CASE(N, Q5)                                                                           \
    case N: {                                                                                      \
        __m512 acc[N];                                                                             \
        UNROLL_8 for (int i = 0; i < N; i++) acc[i] = _mm512_setzero_ps();                         \
        for (int64_t b = 0; b < nsb; b++) {                                                        \
            const quant_block_q8_k *ab[N];                                                         \
            int32_t bp[N][4];                                                                      \
            UNROLL_8 for (int i = 0; i < N; i++) {                                                 \
                ab[i] = A[i] + b;                                                                  \
                q4kp_bpairs(ab[i], bp[i]);                                                         \
            }                                                                                      \
            q4kp_block(g + (size_t)b * (Q5 ? VECDOT_Q5K_PACKED_BYTES : VECDOT_Q4K_PACKED_BYTES),   \
                       ab, (const int32_t(*)[4])bp, N, acc, j == 0, Q5);                           \
        }                                                                                          \
        UNROLL_8 for (int i = 0; i < N; i++)                                                       \
            _mm512_mask_storeu_ps(out + (j + i) * os + g0, m, acc[i]);                             \
        break;                                                                                     \
    }
#define Q4KP_CASE(N) K45P_CASE(N, 0)
#define Q5KP_CASE(N) K45P_CASE(N, 1)

/* The matmul of vecdot_kernel.matmul_packed for the K-quants: as the Q8_0 / Q4_0 ones, blocks
 * of groups kept in L2, each meeting every tile of up to 8 activation rows (the first tile
 * prefetches the weights from memory). CASE(N) runs one group for N activation rows. */
#define DEFINE_KP_MATMUL(name, CASE)                                                               \
    static void name(int64_t k, const void *W, size_t gs, int64_t r0, int64_t r1, const void *Av,  \
                     size_t as, int64_t n, float *out, int64_t os) {                               \
        const int64_t nsb = k / QUANT_QK_K;                                                        \
        int64_t gblk = (int64_t)(PK_L2_BYTES / gs);                                                \
        if (gblk < 1) gblk = 1;                                                                    \
        for (int64_t b0 = r0 / PK * PK; b0 < r1; b0 += gblk * PK) {                                \
            const int64_t b1 = b0 + gblk * PK < r1 ? b0 + gblk * PK : r1;                          \
            for (int64_t j = 0; j < n;) {                                                          \
                const int na = n - j >= 8 ? 8 : n - j >= 4 ? 4 : 1;                                \
                const quant_block_q8_k *A[8];                                                      \
                for (int i = 0; i < na; i++)                                                       \
                    A[i] = (const quant_block_q8_k *)(const void *)((const uint8_t *)Av +          \
                                                                    (size_t)(j + i) * as);         \
                for (int64_t g0 = b0; g0 < b1; g0 += PK) {                                         \
                    const uint8_t *g = (const uint8_t *)W + (size_t)(g0 / PK) * gs;                \
                    const int64_t lo = r0 > g0 ? r0 - g0 : 0, hi = b1 - g0 < PK ? b1 - g0 : PK;    \
                    const __mmask16 m = (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));         \
                    switch (na) {                                                                  \
                        CASE(8)                                                                    \
                        CASE(4)                                                                    \
                        CASE(1)                                                                    \
                    }                                                                              \
                }                                                                                  \
                j += na;                                                                           \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_KP_MATMUL(mmp_q4_k, Q4KP_CASE)
DEFINE_KP_MATMUL(mmp_q5_k, Q5KP_CASE)

/* ============================================================ packed Q6_K ===== */

/*
 * Q6_K on its packed layout (VECDOT_Q6K_PACKED_BYTES in vecdot.h), Q8_K activation rows. The
 * weights are taken unsigned (u = q + 32, 0..63) so vpdpbusd can multiply them; the offset
 * comes back through the activation rows' 16-value sums. Per super-block, activation row j and
 * weight row r:
 *
 *     sumi = sum_s sc_s * sum(u * a)  -  32 * sum_s sc_s * bsum_s
 *
 * which is the reference's integer sum_s sc_s * sum((u - 32) * a) exactly (no term overflows
 * an int32), then acc = fma(float(sumi), da * dw, acc) as in vecdot.c's dot_q6_k: the packed
 * kernel gives the reference's bits for every n_act and row split.
 */

/* The 6-bit values of low chunk p (0..7) of chunk column c: the low or high nibbles of L (by
 * half) with their top two bits from H, the high-bit chunk of the pair (p / 2). */
ALWAYS_INLINE __m512i q6kp_values(__m512i L, __m512i H, int p, int half) {
    const __m512i lo = _mm512_and_si512(half ? _mm512_srli_epi16(L, 4) : L, _mm512_set1_epi8(0x0F));
    const int sh = 4 - 2 * half - 4 * (p & 1); /* where bits (2 * half + 4 * (p & 1)) go to 4-5 */
    const __m512i hi = sh > 0 ? _mm512_slli_epi16(H, sh) : sh < 0 ? _mm512_srli_epi16(H, -sh) : H;
    return _mm512_ternarylogic_epi32(lo, hi, _mm512_set1_epi8(0x30), 0xF8); /* lo | (hi & 0x30) */
}

/* acc[j] += the super-block at sb for activation rows j < na (a[j]: their Q8_K blocks). */
ALWAYS_INLINE void q6kp_block(const uint8_t *sb, const quant_block_q8_k *const *a, int na,
                              __m512 *acc, int pf) {
    __m512i sumi[8];
    UNROLL_8 for (int j = 0; j < na; j++) sumi[j] = _mm512_setzero_si512();
    if (pf) pk_prefetch_tile(sb, VECDOT_Q6K_PACKED_BYTES);
    UNROLL_8 for (int c = 0; c < 4; c++) {
        UNROLL_8 for (int half = 0; half < 2; half++) {
            __m512i w[8];
            UNROLL_8 for (int p = 0; p < 8; p++) {
                const __m512i L = _mm512_loadu_si512((const void *)(sb + (size_t)(c * 8 + p) * 64));
                const __m512i H =
                    _mm512_loadu_si512((const void *)(sb + 2048 + (size_t)(c * 4 + p / 2) * 64));
                w[p] = q6kp_values(L, H, p, half);
            }
            /* sub-blocks 4c + 2 half (p < 4) and 4c + 2 half + 1 (p >= 4): one scale pair */
            const __m512i pr = _mm512_cvtepi8_epi16(
                _mm256_loadu_si256((const __m256i *)(sb + 3072 + 32 * (2 * c + half))));
            const __m512i sc0 = _mm512_srai_epi32(_mm512_slli_epi32(pr, 16), 16);
            const __m512i sc1 = _mm512_srai_epi32(pr, 16);
            UNROLL_8 for (int j = 0; j < na; j++) {
                const uint8_t *av = (const uint8_t *)a[j]->qs + 64 * c + 32 * half;
                __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
                UNROLL_8 for (int p = 0; p < 4; p++) {
                    s0 = pk_dp_bcast(s0, w[p], av + 4 * p);
                    s1 = pk_dp_bcast(s1, w[p + 4], av + 4 * p + 16);
                }
                sumi[j] = _mm512_add_epi32(sumi[j], _mm512_add_epi32(_mm512_mullo_epi32(s0, sc0),
                                                                     _mm512_mullo_epi32(s1, sc1)));
            }
        }
    }
    __m512i sp[8];
    UNROLL_8 for (int p = 0; p < 8; p++) {
        sp[p] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(sb + 3072 + 32 * p)));
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + 3328)));
    UNROLL_8 for (int j = 0; j < na; j++) {
        __m512i corr = _mm512_setzero_si512();
        int32_t bs[8];
        memcpy(bs, a[j]->bsums, sizeof bs); /* (bsum_2p, bsum_2p+1) as one int32 each */
        UNROLL_8 for (int p = 0; p < 8; p++) {
            corr = _mm512_dpwssd_epi32(corr, sp[p], _mm512_set1_epi32(bs[p]));
        }
        const __m512i si = _mm512_sub_epi32(sumi[j], _mm512_slli_epi32(corr, 5));
        acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(si), _mm512_mul_ps(_mm512_set1_ps(a[j]->d), dw),
                                 acc[j]);
    }
}

#define Q6KP_CASE(N)                                                                               \
    case N: {                                                                                      \
        __m512 acc[N];                                                                             \
        UNROLL_8 for (int i = 0; i < N; i++) acc[i] = _mm512_setzero_ps();                         \
        for (int64_t b = 0; b < nsb; b++) {                                                        \
            const quant_block_q8_k *ab[N];                                                         \
            UNROLL_8 for (int i = 0; i < N; i++) ab[i] = A[i] + b;                                 \
            q6kp_block(g + (size_t)b * VECDOT_Q6K_PACKED_BYTES, ab, N, acc, j == 0);               \
        }                                                                                          \
        UNROLL_8 for (int i = 0; i < N; i++)                                                       \
            _mm512_mask_storeu_ps(out + (j + i) * os + g0, m, acc[i]);                             \
        break;                                                                                     \
    }

DEFINE_KP_MATMUL(mmp_q6_k, Q6KP_CASE)

/* ============================================================ activation rows ===== */

/* Blocks as quant_quantize_row_q8_0_act, which rounds like llama.cpp's x86 quantizer: the same
 * float operations per element (x * (127 / amax), rounded to nearest with ties to even, which
 * is what vcvtps2dq does with the explicit rounding mode), so the bytes are those of the scalar
 * version. amax is exact in any order; the running max keeps its accumulator as the second
 * operand of vmaxps, which (like the scalar comparison) never picks up a NaN. */
void vecdot_avx512_quantize_q8_0(const float *x, void *yv, int64_t k) {
    quant_block_q8_0 *y = yv;
    const int64_t nb = k / QUANT_QK;
    uint8_t *tr = (uint8_t *)yv + vecdot_act_trailer_offset(nb);
    for (int64_t b = 0; b < nb; b++, x += QUANT_QK) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const __m512 m0 = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps());
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v1), m0));
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[b].d = half_from_f32(amax / 127.f);
        const __m512 vid = _mm512_set1_ps(id);
        const __m512i q0 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, vid),
                                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m512i q1 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, vid),
                                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m128i b0 = _mm512_cvtepi32_epi8(q0), b1 = _mm512_cvtepi32_epi8(q1);
        _mm_storeu_si128((__m128i *)y[b].qs, b0);
        _mm_storeu_si128((__m128i *)(y[b].qs + 16), b1);
        /* the sum of the stored int8 levels, as the scalar trailer takes it */
        const int32_t sum = _mm512_reduce_add_epi32(
            _mm512_add_epi32(_mm512_cvtepi8_epi32(b0), _mm512_cvtepi8_epi32(b1)));
        const vecdot_act_sum e = {half_to_f32(y[b].d), sum, -8 * sum, -128 * sum};
        memcpy(tr + (size_t)b * sizeof e, &e, sizeof e);
    }
}

/* ============================================================ table ===== */

const vecdot_kernel vecdot_avx512_kernels[] = {
    {DT_F32, DT_F32, ISA_AVX512, mm_f32, NULL},
    {DT_F16, DT_F32, ISA_AVX512, mm_f16, NULL},
    {DT_BF16, DT_F32, ISA_AVX512, mm_bf16, NULL},
    {DT_Q8_0, DT_Q8_0, ISA_AVX512, mm512_q8_0, mmp_q8_0},
    {DT_Q4_0, DT_Q8_0, ISA_AVX512, mm512_q4_0, mmp_q4_0},
    {DT_Q4_1, DT_Q8_1, ISA_AVX512, mm512_q4_1, NULL},
    {DT_Q5_0, DT_Q8_0, ISA_AVX512, mm512_q5_0, NULL},
    {DT_Q5_1, DT_Q8_1, ISA_AVX512, mm512_q5_1, NULL},
    {DT_Q4_K, DT_Q8_K, ISA_AVX512, mm_q4_k, mmp_q4_k},
    {DT_Q5_K, DT_Q8_K, ISA_AVX512, mm_q5_k, mmp_q5_k},
    {DT_Q6_K, DT_Q8_K, ISA_AVX512, mm_q6_k, mmp_q6_k},
    {0, 0, ISA_AVX512, NULL, NULL},
};
