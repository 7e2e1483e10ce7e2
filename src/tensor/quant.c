/*
 * tensor/quant — see quant.h.
 *
 * The float arithmetic of the quantizers is written in the same order as llama.cpp's
 * reference quantizers (which run in its baseline, non-FMA build), because a different order
 * of operations changes the rounding of a scale in rare blocks and so breaks byte identity.
 * This file is compiled for the baseline target (no FMA contraction is possible).
 */
#include "tensor/quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core/half.h"
#include "tensor/dtype.h"

/* Below this, a group of weights counts as all-zero (no scale can be fitted). */
#define TINY_GROUP 1e-15f

/* Round to nearest, ties to even, for |x| < 2^22: adding 1.5 * 2^23 leaves the rounded
 * integer in the low mantissa bits. Same result as lrintf() in the default rounding mode,
 * without the libm call in the inner loops. */
static inline int round_even(float x) {
    float v = x + 12582912.f;
    int32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* ============================================================ F16 / BF16 ===== */

void quant_quantize_row_f16(const float *x, uint16_t *y, int64_t k) {
    for (int64_t i = 0; i < k; i++) y[i] = half_from_f32(x[i]);
}

void quant_dequantize_row_f16(const uint16_t *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k; i++) y[i] = half_to_f32(x[i]);
}

void quant_quantize_row_bf16(const float *x, uint16_t *y, int64_t k) {
    for (int64_t i = 0; i < k; i++) y[i] = bf16_from_f32(x[i]);
}

void quant_dequantize_row_bf16(const uint16_t *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k; i++) y[i] = bf16_to_f32(x[i]);
}

/* ============================================================ legacy 32-blocks ===== */

/* The element of largest magnitude, with its sign (the first one wins a tie). Symmetric types
 * map it to the most negative level, which has one more step than the positive side. */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *mn, float *mx) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

void quant_quantize_row_q4_0(const float *x, quant_block_q4_0 *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK; b++, x += QUANT_QK) {
        const float d = signed_absmax(x, QUANT_QK) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = half_from_f32(d);
        for (int j = 0; j < QUANT_QK / 2; j++) {
            /* +8.5 then truncation: round half up onto the 0..16 range; 16 only for the
             * extreme element of the other sign, clamped to 15. */
            int lo = imin(15, (int8_t)(x[j] * id + 8.5f));
            int hi = imin(15, (int8_t)(x[j + 16] * id + 8.5f));
            y[b].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void quant_dequantize_row_q4_0(const quant_block_q4_0 *x, float *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK; b++, y += QUANT_QK) {
        const float d = half_to_f32(x[b].d);
        for (int j = 0; j < QUANT_QK / 2; j++) {
            y[j] = (float)((x[b].qs[j] & 0xF) - 8) * d;
            y[j + 16] = (float)((x[b].qs[j] >> 4) - 8) * d;
        }
    }
}

void quant_quantize_row_q4_1(const float *x, quant_block_q4_1 *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK; b++, x += QUANT_QK) {
        float mn, mx;
        min_max(x, QUANT_QK, &mn, &mx);
        const float d = (mx - mn) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = half_from_f32(d);
        y[b].m = half_from_f32(mn);
        for (int j = 0; j < QUANT_QK / 2; j++) {
            int lo = imin(15, (int8_t)((x[j] - mn) * id + 0.5f));
            int hi = imin(15, (int8_t)((x[j + 16] - mn) * id + 0.5f));
            y[b].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void quant_dequantize_row_q4_1(const quant_block_q4_1 *x, float *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK; b++, y += QUANT_QK) {
        const float d = half_to_f32(x[b].d), m = half_to_f32(x[b].m);
        for (int j = 0; j < QUANT_QK / 2; j++) {
            y[j] = (float)(x[b].qs[j] & 0xF) * d + m;
            y[j + 16] = (float)(x[b].qs[j] >> 4) * d + m;
        }
    }
}

void quant_quantize_row_q5_0(const float *x, quant_block_q5_0 *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK; b++, x += QUANT_QK) {
        const float d = signed_absmax(x, QUANT_QK) / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = half_from_f32(d);
        uint32_t qh = 0;
        for (int j = 0; j < QUANT_QK / 2; j++) {
            int lo = imin(31, (int8_t)(x[j] * id + 16.5f));
            int hi = imin(31, (int8_t)(x[j + 16] * id + 16.5f));
            y[b].qs[j] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
            qh |= (uint32_t)(lo >> 4) << j;
            qh |= (uint32_t)(hi >> 4) << (j + 16);
        }
        for (int i = 0; i < 4; i++) y[b].qh[i] = (uint8_t)(qh >> (8 * i));
    }
}

static inline uint32_t load_qh(const uint8_t *qh) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

void quant_dequantize_row_q5_0(const quant_block_q5_0 *x, float *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK; b++, y += QUANT_QK) {
        const float d = half_to_f32(x[b].d);
        const uint32_t qh = load_qh(x[b].qh);
        for (int j = 0; j < QUANT_QK / 2; j++) {
            int lo = (x[b].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int hi = (x[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)(lo - 16) * d;
            y[j + 16] = (float)(hi - 16) * d;
        }
    }
}

void quant_quantize_row_q5_1(const float *x, quant_block_q5_1 *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK; b++, x += QUANT_QK) {
        float mn, mx;
        min_max(x, QUANT_QK, &mn, &mx);
        const float d = (mx - mn) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = half_from_f32(d);
        y[b].m = half_from_f32(mn);
        uint32_t qh = 0;
        for (int j = 0; j < QUANT_QK / 2; j++) {
            /* no clamp here (llama.cpp has none): (x-min)*id <= 31 up to rounding */
            int lo = (uint8_t)((x[j] - mn) * id + 0.5f);
            int hi = (uint8_t)((x[j + 16] - mn) * id + 0.5f);
            y[b].qs[j] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
            qh |= (uint32_t)((lo & 0x10) >> 4) << j;
            qh |= (uint32_t)((hi & 0x10) >> 4) << (j + 16);
        }
        for (int i = 0; i < 4; i++) y[b].qh[i] = (uint8_t)(qh >> (8 * i));
    }
}

void quant_dequantize_row_q5_1(const quant_block_q5_1 *x, float *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK; b++, y += QUANT_QK) {
        const float d = half_to_f32(x[b].d), m = half_to_f32(x[b].m);
        const uint32_t qh = load_qh(x[b].qh);
        for (int j = 0; j < QUANT_QK / 2; j++) {
            int lo = (x[b].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int hi = (x[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)lo * d + m;
            y[j + 16] = (float)hi * d + m;
        }
    }
}

void quant_quantize_row_q8_0(const float *x, quant_block_q8_0 *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK; b++, x += QUANT_QK) {
        float amax = 0.0f;
        for (int j = 0; j < QUANT_QK; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = half_from_f32(d);
        for (int j = 0; j < QUANT_QK; j++) y[b].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* The activation variant: what llama.cpp's x86 build runs when it converts activations for
 * Q8_0 / Q4_0 / Q5_0 weights (its SIMD quantizer, which differs from the reference above in
 * two roundings: the multiplier is 127 / amax instead of 1 / d, and ties go to even). A level
 * that lands on the other side of a rounding boundary moves an activation by one step, which a
 * random-weight model amplifies into logit differences of ~1e-2. */
void quant_quantize_row_q8_0_act(const float *x, quant_block_q8_0 *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK; b++, x += QUANT_QK) {
        float amax = 0.0f;
        for (int j = 0; j < QUANT_QK; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[b].d = half_from_f32(amax / 127.f);
        for (int j = 0; j < QUANT_QK; j++) y[b].qs[j] = (int8_t)round_even(x[j] * id);
    }
}

void quant_dequantize_row_q8_0(const quant_block_q8_0 *x, float *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK; b++, y += QUANT_QK) {
        const float d = half_to_f32(x[b].d);
        for (int j = 0; j < QUANT_QK; j++) y[j] = (float)x[b].qs[j] * d;
    }
}

/* ============================================================ K-quant helpers ===== */

/*
 * Asymmetric fit of n values to levels 0..nmax: x ~ scale * L + min with min <= 0, minimising
 * the weighted squared error. Starts from the plain min/max grid, then tries nstep+1 slightly
 * different grid densities (rmin + rdelta*is extra steps); for each it solves the weighted
 * least-squares problem for (scale, min) in closed form and keeps the best. Returns scale and
 * stores -min (>= 0) in *neg_min; L gets the levels.
 */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *neg_min, uint8_t *Ltry, float rmin, float rdelta, int nstep) {
    float lo = x[0], hi = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *neg_min = -lo;
        return 0.0f;
    }
    float iscale = nmax / (hi - lo);
    float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; i++) {
        int l = imax(0, imin(nmax, round_even(iscale * (x[i] - lo))));
        L[i] = (uint8_t)l;
        float e = scale * L[i] + lo - x[i];
        best += w[i] * (e * e);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (hi - lo);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = imax(0, imin(nmax, round_even(iscale * (x[i] - lo))));
            Ltry[i] = (uint8_t)l;
            sl += w[i] * l;
            sl2 += w[i] * l * l;
            sxl += w[i] * l * x[i];
        }
        float det = sum_w * sl2 - sl * sl;
        if (det > 0) {
            float s = (sum_w * sxl - sum_x * sl) / det;
            float m = (sl2 * sum_x - sl * sxl) / det;
            if (m > 0) { /* the offset may only lower values: refit the scale alone */
                m = 0;
                s = sxl / sl2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                float e = s * Ltry[i] + m - x[i];
                err += w[i] * (e * e);
            }
            if (err < best) {
                memcpy(L, Ltry, (size_t)n);
                best = err;
                scale = s;
                lo = m;
            }
        }
    }
    *neg_min = -lo;
    return scale;
}

/*
 * Symmetric fit of n values to levels -nmax..nmax-1 (stored as L + nmax), weighting each
 * value by x^2: the plain grid through the signed extreme, then 18 grids with +-0.1..0.9
 * extra steps, keeping the one whose least-squares scale explains most of the signal.
 */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < TINY_GROUP) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sxl = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = imax(-nmax, imin(nmax - 1, round_even(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sxl += w * x[i] * l;
        sl2 += w * l * l;
    }
    float scale = sl2 != 0.0f ? sxl / sl2 : 0.0f;
    float best = scale * sxl;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sxl = sl2 = 0;
        for (int i = 0; i < n; i++) {
            int l = imax(-nmax, imin(nmax - 1, round_even(iscale * x[i])));
            float w = x[i] * x[i];
            sxl += w * x[i] * l;
            sl2 += w * l * l;
        }
        if (sl2 > 0 && sxl * sxl > best * sl2) {
            for (int i = 0; i < n; i++) {
                int l = imax(-nmax, imin(nmax - 1, round_even(iscale * x[i])));
                L[i] = (int8_t)(l + nmax);
            }
            scale = sxl / sl2;
            best = scale * sxl;
        }
    }
    return scale;
}

/* Packs the 6-bit scale ls and min lm of sub-block j into the 12-byte Q4_K/Q5_K field. */
static void k4_pack_scale_min(uint8_t *s, int j, int ls, int lm) {
    if (j < 4) {
        s[j] = (uint8_t)ls;
        s[j + 4] = (uint8_t)lm;
    } else {
        s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        s[j - 4] |= (uint8_t)((ls >> 4) << 6);
        s[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

/*
 * The common part of Q4_K and Q5_K: per 32-element sub-block a weighted (scale, min) fit,
 * then the 8 scales and 8 mins quantized to 6 bits against the block maxima, and finally
 * every value re-quantized against the rounded scales. Writes d, dmin, scales and the levels
 * L (0..nmax).
 */
static void k4_block_levels(const float *x, int nmax, float rmin, float rdelta, int nstep,
                            uint16_t *d_out, uint16_t *dmin_out, uint8_t *scales, uint8_t *L) {
    float sc[8], mn[8], w[32];
    uint8_t Ltry[32];
    float max_sc = 0, max_mn = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        float av = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av + fabsf(xs[l]);
        sc[j] = fit_scale_min(32, nmax, xs, w, L + 32 * j, &mn[j], Ltry, rmin, rdelta, nstep);
        if (sc[j] > max_sc) max_sc = sc[j];
        if (mn[j] > max_mn) max_mn = mn[j];
    }
    float inv_sc = max_sc > 0 ? 63.f / max_sc : 0.f;
    float inv_mn = max_mn > 0 ? 63.f / max_mn : 0.f;
    memset(scales, 0, 12);
    for (int j = 0; j < 8; j++) {
        /* uint8_t truncation before the clamp, as in the format's reference quantizer */
        uint8_t ls = (uint8_t)round_even(inv_sc * sc[j]);
        uint8_t lm = (uint8_t)round_even(inv_mn * mn[j]);
        k4_pack_scale_min(scales, j, ls > 63 ? 63 : ls, lm > 63 ? 63 : lm);
    }
    *d_out = half_from_f32(max_sc / 63.f);
    *dmin_out = half_from_f32(max_mn / 63.f);
    const float d = half_to_f32(*d_out), dmin = half_to_f32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        quant_k4_scale_min(j, scales, &s, &m);
        const float ds = d * s;
        if (ds == 0.0f) continue;
        const float dm = dmin * m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)imax(0, imin(nmax, round_even((x[32 * j + l] + dm) / ds)));
    }
}

/* ============================================================ Q4_K ===== */

void quant_quantize_row_q4_k(const float *x, quant_block_q4_k *y, int64_t k) {
    uint8_t L[QUANT_QK_K];
    for (int64_t b = 0; b < k / QUANT_QK_K; b++, x += QUANT_QK_K) {
        k4_block_levels(x, 15, -1.f, 0.1f, 20, &y[b].d, &y[b].dmin, y[b].scales, L);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                y[b].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

void quant_dequantize_row_q4_k(const quant_block_q4_k *x, float *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK_K; b++) {
        const float d = half_to_f32(x[b].d), dmin = half_to_f32(x[b].dmin);
        for (int c = 0; c < 4; c++) {
            uint8_t s0, m0, s1, m1;
            quant_k4_scale_min(2 * c, x[b].scales, &s0, &m0);
            quant_k4_scale_min(2 * c + 1, x[b].scales, &s1, &m1);
            const float d0 = d * s0, n0 = dmin * m0, d1 = d * s1, n1 = dmin * m1;
            const uint8_t *q = x[b].qs + 32 * c;
            for (int l = 0; l < 32; l++) *y++ = d0 * (q[l] & 0xF) - n0;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] >> 4) - n1;
        }
    }
}

/* ============================================================ Q5_K ===== */

void quant_quantize_row_q5_k(const float *x, quant_block_q5_k *y, int64_t k) {
    uint8_t L[QUANT_QK_K];
    for (int64_t b = 0; b < k / QUANT_QK_K; b++, x += QUANT_QK_K) {
        k4_block_levels(x, 31, -0.5f, 0.1f, 15, &y[b].d, &y[b].dmin, y[b].scales, L);
        memset(y[b].qh, 0, sizeof y[b].qh);
        for (int c = 0; c < 4; c++) {
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                if (lo > 15) y[b].qh[l] |= (uint8_t)(1u << (2 * c));
                if (hi > 15) y[b].qh[l] |= (uint8_t)(2u << (2 * c));
                y[b].qs[32 * c + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
            }
        }
    }
}

void quant_dequantize_row_q5_k(const quant_block_q5_k *x, float *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK_K; b++) {
        const float d = half_to_f32(x[b].d), dmin = half_to_f32(x[b].dmin);
        for (int c = 0; c < 4; c++) {
            uint8_t s0, m0, s1, m1;
            quant_k4_scale_min(2 * c, x[b].scales, &s0, &m0);
            quant_k4_scale_min(2 * c + 1, x[b].scales, &s1, &m1);
            const float d0 = d * s0, n0 = dmin * m0, d1 = d * s1, n1 = dmin * m1;
            const uint8_t *q = x[b].qs + 32 * c;
            for (int l = 0; l < 32; l++)
                *y++ = d0 * ((q[l] & 0xF) + ((x[b].qh[l] >> (2 * c)) & 1) * 16) - n0;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * ((q[l] >> 4) + ((x[b].qh[l] >> (2 * c + 1)) & 1) * 16) - n1;
        }
    }
}

/* ============================================================ Q6_K ===== */

void quant_quantize_row_q6_k(const float *x, quant_block_q6_k *y, int64_t k) {
    int8_t L[QUANT_QK_K];
    float sc[16];
    for (int64_t b = 0; b < k / QUANT_QK_K; b++, x += QUANT_QK_K) {
        float max_sc = 0, max_abs = 0;
        for (int s = 0; s < 16; s++) {
            sc[s] = fit_scale_sym(16, 32, x + 16 * s, L + 16 * s);
            if (fabsf(sc[s]) > max_abs) {
                max_abs = fabsf(sc[s]);
                max_sc = sc[s];
            }
        }
        memset(&y[b], 0, sizeof y[b]);
        if (max_abs < TINY_GROUP) continue; /* d = +0 */
        /* the signed largest scale maps to -128 so the int8 scales use their full range */
        const float iscale = -128.f / max_sc;
        y[b].d = half_from_f32(1 / iscale);
        for (int s = 0; s < 16; s++) y[b].scales[s] = (int8_t)imin(127, round_even(iscale * sc[s]));
        const float d = half_to_f32(y[b].d);
        for (int s = 0; s < 16; s++) {
            const float ds = d * y[b].scales[s];
            if (ds == 0.0f) continue;
            for (int l = 0; l < 16; l++)
                L[16 * s + l] = (int8_t)(imax(-32, imin(31, round_even(x[16 * s + l] / ds))) + 32);
        }
        for (int h = 0; h < 2; h++) {
            const int8_t *Lh = L + 128 * h;
            uint8_t *ql = y[b].ql + 64 * h, *qh = y[b].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                  ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}

void quant_dequantize_row_q6_k(const quant_block_q6_k *x, float *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK_K; b++) {
        const float d = half_to_f32(x[b].d);
        for (int h = 0; h < 2; h++, y += 128) {
            const uint8_t *ql = x[b].ql + 64 * h, *qh = x[b].qh + 32 * h;
            const int8_t *sc = x[b].scales + 8 * h;
            for (int l = 0; l < 32; l++) {
                int q0 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
                int q1 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[l / 16] * q0;
                y[l + 32] = d * sc[2 + l / 16] * q1;
                y[l + 64] = d * sc[4 + l / 16] * q2;
                y[l + 96] = d * sc[6 + l / 16] * q3;
            }
        }
    }
}

/* ============================================================ Q8_1 (activations) ===== */

/* What llama.cpp's x86 build does when it converts activations for Q4_1 / Q5_1 weights (its
 * SIMD quantizer, not quantize_row_q8_1_ref): the multiplier is 127 / amax rather than 1 / d,
 * rounding is to nearest even, and the block sum is scaled by the float d before its own fp16
 * rounding. Matching those steps matters: the minimum term m * s of every block uses s as
 * stored, and a model with random weights turns a systematic 2^-11 relative difference in s
 * into logit differences of ~2e-2. */
void quant_quantize_row_q8_1(const float *x, quant_block_q8_1 *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK; b++, x += QUANT_QK) {
        float amax = 0.0f;
        for (int j = 0; j < QUANT_QK; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < QUANT_QK; j++) {
            y[b].qs[j] = (int8_t)round_even(x[j] * id);
            sum += y[b].qs[j];
        }
        y[b].d = half_from_f32(d);
        y[b].s = half_from_f32(d * (float)sum);
    }
}

void quant_dequantize_row_q8_1(const quant_block_q8_1 *x, float *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK; b++, y += QUANT_QK) {
        const float d = half_to_f32(x[b].d);
        for (int j = 0; j < QUANT_QK; j++) y[j] = (float)x[b].qs[j] * d;
    }
}

/* ============================================================ Q8_K (activations) ===== */

void quant_quantize_row_q8_k(const float *x, quant_block_q8_k *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK_K; b++, x += QUANT_QK_K) {
        float amax = 0;
        for (int j = 0; j < QUANT_QK_K; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const float iscale = 127.f / amax;
        for (int j = 0; j < QUANT_QK_K; j++)
            y[b].qs[j] = (int8_t)imax(-127, imin(127, round_even(iscale * x[j])));
        for (int s = 0; s < QUANT_QK_K / 16; s++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[b].qs[16 * s + l];
            y[b].bsums[s] = (int16_t)sum;
        }
        y[b].d = 1 / iscale;
    }
}

void quant_dequantize_row_q8_k(const quant_block_q8_k *x, float *y, int64_t k) {
    for (int64_t b = 0; b < k / QUANT_QK_K; b++)
        for (int j = 0; j < QUANT_QK_K; j++) *y++ = x[b].d * x[b].qs[j];
}

/* ============================================================ dispatch ===== */

bool quant_supported(uint32_t type) {
    switch (type) {
    case DT_F32: case DT_F16: case DT_BF16: case DT_Q4_0: case DT_Q4_1: case DT_Q5_0:
    case DT_Q5_1: case DT_Q8_0: case DT_Q8_1: case DT_Q4_K: case DT_Q5_K: case DT_Q6_K:
    case DT_Q8_K:
        return true;
    default:
        return false;
    }
}

int quant_quantize_row(uint32_t type, const float *x, void *y, int64_t k) {
    if (!quant_supported(type) || k < 0 || k % dtype_block_elems(type) != 0) return -1;
    switch (type) {
    case DT_F32: memcpy(y, x, (size_t)k * sizeof(float)); break;
    case DT_F16: quant_quantize_row_f16(x, y, k); break;
    case DT_BF16: quant_quantize_row_bf16(x, y, k); break;
    case DT_Q4_0: quant_quantize_row_q4_0(x, y, k); break;
    case DT_Q4_1: quant_quantize_row_q4_1(x, y, k); break;
    case DT_Q5_0: quant_quantize_row_q5_0(x, y, k); break;
    case DT_Q5_1: quant_quantize_row_q5_1(x, y, k); break;
    case DT_Q8_0: quant_quantize_row_q8_0(x, y, k); break;
    case DT_Q8_1: quant_quantize_row_q8_1(x, y, k); break;
    case DT_Q4_K: quant_quantize_row_q4_k(x, y, k); break;
    case DT_Q5_K: quant_quantize_row_q5_k(x, y, k); break;
    case DT_Q6_K: quant_quantize_row_q6_k(x, y, k); break;
    case DT_Q8_K: quant_quantize_row_q8_k(x, y, k); break;
    default: return -1;
    }
    return 0;
}

int quant_dequantize_row(uint32_t type, const void *x, float *y, int64_t k) {
    if (!quant_supported(type) || k < 0 || k % dtype_block_elems(type) != 0) return -1;
    switch (type) {
    case DT_F32: memcpy(y, x, (size_t)k * sizeof(float)); break;
    case DT_F16: quant_dequantize_row_f16(x, y, k); break;
    case DT_BF16: quant_dequantize_row_bf16(x, y, k); break;
    case DT_Q4_0: quant_dequantize_row_q4_0(x, y, k); break;
    case DT_Q4_1: quant_dequantize_row_q4_1(x, y, k); break;
    case DT_Q5_0: quant_dequantize_row_q5_0(x, y, k); break;
    case DT_Q5_1: quant_dequantize_row_q5_1(x, y, k); break;
    case DT_Q8_0: quant_dequantize_row_q8_0(x, y, k); break;
    case DT_Q8_1: quant_dequantize_row_q8_1(x, y, k); break;
    case DT_Q4_K: quant_dequantize_row_q4_k(x, y, k); break;
    case DT_Q5_K: quant_dequantize_row_q5_k(x, y, k); break;
    case DT_Q6_K: quant_dequantize_row_q6_k(x, y, k); break;
    case DT_Q8_K: quant_dequantize_row_q8_k(x, y, k); break;
    default: return -1;
    }
    return 0;
}
