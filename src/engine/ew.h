/*
 * engine/ew — element-wise loops that have SIMD or FMA versions: the FFN's SiLU gate, the RoPE
 * rotation, and the argmax over a row of logits that greedy sampling takes for every token.
 * ew_get() picks the AVX2 + FMA version (ew_avx2.c) when vecdot's ISA level allows AVX2, else
 * the portable scalar one.
 *
 * Every version computes each element with the same operations wherever it sits in the array
 * and however long the array is, so results do not depend on how rows are split across threads
 * or batched, and every version gives the same bits: SiLU's exp and the RoPE rotation follow
 * llama.cpp's CPU arithmetic (ew_vexpf, FMAs; the portable versions call fmaf), which is what
 * makes shoal's activations equal to llama.cpp's on the same weights (scripts/compare-llama.sh).
 * argmax gives the same index in every version.
 */
#ifndef SHOAL_ENGINE_EW_H
#define SHOAL_ENGINE_EW_H

#include <stdint.h>

typedef struct ew_ops {
    /* g[i] = g[i] / (1 + e) * u[i] for i < n (silu(gate) * up), e = ew_vexpf(0 - g[i]) */
    void (*silu_mul)(float *g, const float *u, int64_t n);
    /* The softmax of llama.cpp's CPU soft_max over a row of n scores s (already scaled) in
     * place, as it runs for the f32-cache attention without flash attention: m = the max;
     * e = ew_vexpf(s - m) in chunks of 16 from the start (a partial last chunk padded with the
     * zeros that masked positions give there), each chunk summed by the tree l + 8, + 4, + 2,
     * + 1 and added to a double; s = e * (float)(1 / sum). */
    void (*softmax)(float *s, int n);
    /* RoPE of one head vector v in place: pair i (i < n_rot / 2) is (v[2i], v[2i + 1]), or
     * (v[i], v[i + n_rot / 2]) when neox, rotated by cs[2i] = cos, cs[2i + 1] = sin as
     * x0' = fma(x0, c, -(x1 s)), x1' = fma(x0, s, x1 c): the arithmetic of llama.cpp's CPU
     * rope, whose C++ build contracts x0 c - x1 s and x0 s + x1 c into those FMAs. Every version
     * gives the same bits (both use a true FMA; the portable one calls fmaf). */
    void (*rope)(float *v, const float *cs, int n_rot, int neox);
    /* The index of the largest x[i], i < n, the first one on a tie; NaNs never win, and the
     * answer is 0 when x[0] is NaN or n <= 1 (exactly what the plain loop
     * "if (x[i] > x[best]) best = i" from best = 0 gives). */
    int64_t (*argmax)(const float *x, int64_t n);
    /* LayerNorm of one row, as llama.cpp's CPU norm followed by its multiplication with the
     * weight and addition of the bias: mean = (float)(sum of x in double) / n; d = x - mean;
     * var = (float)(V / n) with V the double sum, over chunks of 16, of each chunk's float
     * squares added by the tree l + 8, + 4, + 2, + 1, then the last n % 16 squares one by one;
     * out = ((d * (1 / sqrtf(var + eps))) * w) + b, each step rounded. The double sums may be
     * taken in any order (a float result cannot tell). out may be x; b may be NULL. */
    void (*layernorm)(float *out, const float *x, const float *w, const float *b, int n,
                      float eps);
    /* GELU in place, as llama.cpp's CPU backend computes it: x <= -10 gives 0, x >= 10 gives
     * x, otherwise the tanh form of x rounded to f16, evaluated in float and rounded to f16
     * (its lookup table, ew_gelu_table); NaN stays NaN. */
    void (*gelu)(float *x, int64_t n);
    /* x[i] = (x[i] + a[i]) + b[i] for i < n, a and / or b NULL meaning none (a bias and a
     * residual, added in that order with two roundings) */
    void (*add)(float *x, const float *a, const float *b, int64_t n);
} ew_ops;

/* The tanh-form GELU in float: 0.5 x (1 + tanh(sqrt(2 / pi) x (1 + 0.044715 x^2))). */
float ew_gelu_f32(float x);

/* f32(f16(ew_gelu_f32(f16 value h))) for every f16 bit pattern h: the table behind the gelu
 * op (built by ew_get(); 256 KiB). */
extern float ew_gelu_table[65536];

/*
 * exp(x) in the arithmetic of llama.cpp's AVX-512 vector exp (ggml_v_expf, used by its SiLU and
 * softmax on the AVX-512 CPUs it runs on, Intel and AMD alike): n = round(x / ln2) via the
 * 1.5 * 2^23 shifter, b = x - n ln2 (ln2 in two parts, two FMAs), j = 1 + b + ... by a degree-5
 * polynomial in FMAs, then j * 2^n rounded once (vscalefps); |n| > 192 gives 0 or +inf. Within
 * 2.3 ulp of exp (measured on a sweep of floats in [-90, 90]). The reference for silu_mul; NaN in,
 * NaN out.
 */
float ew_vexpf(float x);

/*
 * RoPE angles of position pos into cs (cs[2i] = cos, cs[2i + 1] = sin of pair i < n_rot / 2),
 * the way llama.cpp's CPU backend fills its rope cache, in float throughout: theta_0 = pos,
 * theta_{i+1} = theta_i * base^(-2 / n_rot) (one rounded multiplication per pair), angle_i =
 * scale * (theta_i / freqs[i]) (freqs may be NULL: 1), then cosf and sinf.
 */
void ew_rope_angles(float *cs, int pos, int n_rot, float base, float scale, const float *freqs);

/*
 * out[i] = x[i] * scale * w[i], scale = 1 / sqrtf(mean + eps), as llama.cpp's CPU rms_norm
 * followed by its multiplication with the norm weight: each square x[i] * x[i] rounded to
 * float and summed in double, mean = (float)(sum / n). out may be x.
 */
void ew_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

/* The plain loop above, for tests and as the reference. */
int64_t ew_argmax_ref(const float *x, int64_t n);

/* The best implementation for this CPU (static, never NULL). */
const ew_ops *ew_get(void);

/* The portable implementation, and the AVX2 one (ew_avx2.c; call only when the CPU has AVX2
 * and FMA). */
extern const ew_ops ew_ops_scalar;
extern const ew_ops ew_ops_avx2;

#endif
