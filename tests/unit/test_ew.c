/*
 * test_ew — the element-wise operations whose arithmetic follows llama.cpp's CPU backend bit for
 * bit (engine/ew.h): the vector exp of SiLU against a definition that scales with vscalefps
 * (AVX-512 machines) and against exp, silu_mul of every version against the scalar formula,
 * the RoPE rotation (FMAs, both pair layouts) of every version against its definition, the
 * rope angles' float recurrence, the RMS norm (squares rounded to float) and the softmax of the
 * f32-cache attention. None of this needs
 * llama.cpp: the definitions are written here.
 */
#include "testutil.h"

#include <immintrin.h>
#include <math.h>

#include "engine/ew.h"
#include "tensor/vecdot.h"

static const ew_ops *versions(int i) {
    if (i == 0) return &ew_ops_scalar;
    return vecdot_best_isa() >= ISA_AVX2 ? &ew_ops_avx2 : NULL;
}

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Inputs for exp / silu: a sweep of float bit patterns over [-110, 110] (every exponent, dense
 * around the rounding of n = x / ln2 and the limits where 2^n leaves the normal range or |n|
 * passes 192), plus special values. */
static int exp_inputs(float *x, int cap) {
    int n = 0;
    static const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 88.0f, 88.72f, 88.73f, 89.0f,
                                    -87.3f, -87.34f, -88.0f, -100.0f, -103.9f, -104.0f,
                                    -133.0f, -134.0f, 133.0f, 134.0f, 1e-30f, -1e-30f,
                                    INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof special / sizeof special[0] && n < cap; i++) x[n++] = special[i];
    for (uint32_t u = 0; n < cap - 1; u += 0x1b3d) { /* ~0.2M patterns, both signs */
        const float v = from_bits(u & 0x7fffffffu);
        if (!(v <= 110.0f)) break;
        x[n++] = v;
        x[n++] = -v;
    }
    return n;
}

/* j * 2^n scaled by vscalefps: the definition ew_vexpf mirrors (llama.cpp's AVX-512 exp), with
 * the same polynomial. */
__attribute__((target("avx512f,fma"))) static float vexpf_scalef(float x) {
    const float shift = 0x1.8p23f;
    const float n = fmaf(x, 0x1.715476p+0f, shift) - shift;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    const float u = b * b;
    const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                              fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                         u, fmaf(0x1.ffffecp-1f, b, 1.0f));
    if (fabsf(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
    return _mm_cvtss_f32(_mm_scalef_ss(_mm_set_ss(j), _mm_set_ss(n)));
}

/* ew_vexpf: equal to the vscalefps definition on every input (when the CPU has AVX-512), within
 * 3 ulp of exp where the result is normal (2.2 at worst on a sweep over [-90, 90]), 0 / +inf
 * / NaN at the ends. */
static void test_vexpf(void **state) {
    (void)state;
    enum { CAP = 1 << 19 };
    static float x[CAP];
    const int n = exp_inputs(x, CAP);
    assert_true(n > 100000);
    const int avx512 = vecdot_best_isa() >= ISA_AVX512;
    for (int i = 0; i < n; i++) {
        const float e = ew_vexpf(x[i]);
        if (avx512 && bits(e) != bits(vexpf_scalef(x[i])))
            fail_msg("ew_vexpf(%a) = %a, vscalefps definition %a", x[i], e, vexpf_scalef(x[i]));
        const double ref = exp((double)x[i]);
        if (ref >= 0x1p-126 && ref <= 0x1.fffffep127) {
            const double ulp = ldexp(1.0, ilogb(ref) - 23);
            if (fabs(e - ref) > 3 * ulp) fail_msg("ew_vexpf(%a) = %a, exp %a", x[i], e, ref);
        }
    }
    assert_true(ew_vexpf(-200.0f) == 0.0f);
    assert_true(ew_vexpf(200.0f) == INFINITY);
    assert_true(isnan(ew_vexpf(NAN)));
    if (!avx512) fprintf(stderr, "test_vexpf: no AVX-512 here, vscalefps definition not checked\n");
}

/* silu_mul, every version: g / (1 + ew_vexpf(0 - g)) * u to the bit, in every array position
 * and length (the AVX2 vector tail included). */
static void test_silu_definition(void **state) {
    (void)state;
    enum { CAP = 1 << 19 };
    static float x[CAP], u[CAP], got[CAP];
    const int n = exp_inputs(x, CAP);
    uint64_t seed = 3;
    for (int i = 0; i < n; i++) u[i] = tu_randf(&seed) * 4.0f;
    for (int v = 0; v < 2; v++) {
        const ew_ops *op = versions(v);
        if (!op) continue;
        for (int len = 1; len <= 19; len += 6) /* short arrays: the tail path */
            for (int i = 0; i + len <= 64; i += len) {
                memcpy(got, x + i, (size_t)len * sizeof(float));
                op->silu_mul(got, u + i, len);
                for (int k = 0; k < len; k++) {
                    const float want = x[i + k] / (1.0f + ew_vexpf(0.0f - x[i + k])) * u[i + k];
                    if (bits(got[k]) != bits(want) && !(isnan(got[k]) && isnan(want)))
                        fail_msg("version %d silu_mul(%a) = %a, want %a", v, x[i + k], got[k], want);
                }
            }
        memcpy(got, x, (size_t)n * sizeof(float));
        op->silu_mul(got, u, n);
        for (int i = 0; i < n; i++) {
            const float want = x[i] / (1.0f + ew_vexpf(0.0f - x[i])) * u[i];
            if (bits(got[i]) != bits(want) && !(isnan(got[i]) && isnan(want)))
                fail_msg("version %d silu_mul(%a) = %a, want %a", v, x[i], got[i], want);
        }
    }
}

/* rope, every version: fma(x0, c, -(x1 s)) and fma(x0, s, x1 c) per pair, for the adjacent
 * ("normal") and split-half (neox) layouts, full and partial rotation; the elements past n_rot
 * stay. On these inputs the unfused x0 c - x1 s differs in some elements, so the test tells the
 * two apart. */
static void test_rope_definition(void **state) {
    (void)state;
    enum { HD = 128 };
    uint64_t seed = 17;
    int fused_matters = 0;
    for (int v = 0; v < 2; v++) {
        const ew_ops *op = versions(v);
        if (!op) continue;
        for (int neox = 0; neox < 2; neox++)
            for (int n_rot = 2; n_rot <= HD; n_rot += n_rot < 32 ? 6 : 32) {
                float x[HD], got[HD], want[HD], cs[HD];
                for (int i = 0; i < HD; i++) x[i] = tu_randf(&seed) * 3.0f;
                for (int i = 0; i < n_rot / 2; i++) {
                    const float a = tu_randf(&seed) * 6.3f;
                    cs[2 * i] = cosf(a), cs[2 * i + 1] = sinf(a);
                }
                memcpy(got, x, sizeof x);
                memcpy(want, x, sizeof x);
                op->rope(got, cs, n_rot, neox);
                const int half = n_rot / 2;
                for (int i = 0; i < half; i++) {
                    const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                    const float c = cs[2 * i], s = cs[2 * i + 1];
                    want[a] = fmaf(x[a], c, -(x[b] * s));
                    want[b] = fmaf(x[a], s, x[b] * c);
                    const float plain = x[a] * c - x[b] * s;
                    fused_matters += bits(plain) != bits(want[a]);
                }
                assert_memory_equal(got, want, sizeof got);
            }
    }
    assert_true(fused_matters > 0);
}

/* ew_rope_angles: the float recurrence (theta *= base^(-2/n_rot) per pair, divided by the
 * frequency factor, times the scale, then cosf / sinf), to the bit; over many positions it
 * differs from angles computed in double somewhere, which is what the recurrence is for. */
static void test_rope_angles(void **state) {
    (void)state;
    enum { NR = 64 };
    float freqs[NR / 2];
    for (int i = 0; i < NR / 2; i++) freqs[i] = 1.0f + (float)(i % 5) * 0.75f;
    int differs_from_double = 0;
    for (int pos = 0; pos < 3000; pos += 7)
        for (int variant = 0; variant < 2; variant++) {
            const float base = variant ? 500000.0f : 10000.0f, scale = variant ? 0.25f : 1.0f;
            const float *ff = variant ? freqs : NULL;
            float cs[NR], want[NR];
            ew_rope_angles(cs, pos, NR, base, scale, ff);
            const float step = powf(base, -2.0f / NR);
            float theta = (float)pos;
            for (int i = 0; i < NR / 2; i++) {
                const float a = scale * (theta / (ff ? ff[i] : 1.0f));
                want[2 * i] = cosf(a), want[2 * i + 1] = sinf(a);
                const double ad = (double)pos * scale * pow(base, -2.0 * i / NR) / (ff ? ff[i] : 1.0);
                differs_from_double += bits(want[2 * i]) != bits((float)cos(ad));
                theta *= step;
            }
            assert_memory_equal(cs, want, sizeof cs);
        }
    assert_true(differs_from_double > 0);
}

/* softmax, every version: its definition (max; ew_vexpf(s - max) in 16-element chunks, each
 * chunk's tree sum added in double; times (float)(1 / sum)), to the bit, for row lengths
 * around the chunk size; a plain float sum of the exps differs on some rows. */
static void test_softmax(void **state) {
    (void)state;
    enum { N = 300 };
    uint64_t seed = 37;
    int plain_differs = 0;
    for (int v = 0; v < 2; v++) {
        const ew_ops *op = versions(v);
        if (!op) continue;
        for (int n = 1; n <= N; n += n < 40 ? 1 : 37) {
            float s[N], got[N], want[N];
            for (int i = 0; i < n; i++) s[i] = tu_randf(&seed) * 6.0f;
            memcpy(got, s, sizeof s);
            op->softmax(got, n);
            float mx = -INFINITY;
            for (int i = 0; i < n; i++) mx = mx > s[i] ? mx : s[i];
            double sum = 0;
            float plain = 0;
            for (int c = 0; c < n; c += 16) {
                float e[16] = {0};
                for (int l = 0; l < 16 && c + l < n; l++) e[l] = want[c + l] = ew_vexpf(s[c + l] - mx);
                for (int l = 0; l < 16 && c + l < n; l++) plain += e[l];
                for (int w = 8; w >= 1; w /= 2)
                    for (int l = 0; l < w; l++) e[l] = e[l] + e[l + w];
                sum += (double)e[0];
            }
            const float inv = (float)(1.0 / sum);
            plain_differs += bits(inv) != bits(1.0f / plain);
            for (int i = 0; i < n; i++) want[i] *= inv;
            assert_memory_equal(got, want, (size_t)n * sizeof(float));
        }
    }
    assert_true(plain_differs > 0);
}

/* ew_rmsnorm: llama.cpp's rms_norm then the weight: squares rounded to float, summed in double,
 * mean and scale in float, x * scale * w; in place too. Over these rows the exact (double)
 * squares give a different scale somewhere, so the test tells the two apart. */
static void test_rmsnorm(void **state) {
    (void)state;
    enum { N = 256 };
    uint64_t seed = 29;
    int exact_squares_differ = 0;
    for (int rep = 0; rep < 300; rep++) {
        const int n = rep % 3 ? N : 1 + rep % 200;
        float x[N], w[N], got[N], want[N];
        for (int i = 0; i < n; i++) {
            x[i] = tu_randf(&seed) * (1.0f + (float)(rep % 7));
            w[i] = 1.0f + tu_randf(&seed) * 0.1f;
        }
        const float eps = 1e-5f;
        double ss = 0, se = 0;
        for (int i = 0; i < n; i++) {
            const float sq = x[i] * x[i];
            ss += sq;
            se += (double)x[i] * x[i];
        }
        const float scale = 1.0f / sqrtf((float)(ss / n) + eps);
        const float scale_exact = 1.0f / sqrtf((float)(se / n) + eps);
        exact_squares_differ += bits(scale) != bits(scale_exact);
        for (int i = 0; i < n; i++) want[i] = x[i] * scale * w[i];
        ew_rmsnorm(got, x, w, n, eps);
        assert_memory_equal(got, want, (size_t)n * sizeof(float));
        ew_rmsnorm(x, x, w, n, eps);
        assert_memory_equal(x, want, (size_t)n * sizeof(float));
    }
    assert_true(exact_squares_differ > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vexpf),
        cmocka_unit_test(test_silu_definition),
        cmocka_unit_test(test_rope_definition),
        cmocka_unit_test(test_rope_angles),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_softmax),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
