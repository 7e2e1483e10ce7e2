/*
 * test_quant — block layouts and reference quantizers: round-trip error bounds per type,
 * hand-computed known answers, fp16 conversion against F16C over all 65536 values, and the
 * generic entry points.
 */
#include "testutil.h"

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>

#include "core/half.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"

/* ============================================================ round trips ===== */

typedef struct {
    uint32_t type;
    double max_rel_rmse; /* rmse / rms of the input */
} bound;

/* Bounds for uniform [-1, 1) data, about 1.5x the errors these quantizers reach (a b-bit
 * uniform grid over the block range gives rmse ~ step / sqrt(12)). */
static const bound bounds[] = {
    {DT_F32, 0.0},     {DT_F16, 4e-4},    {DT_BF16, 3e-3},   {DT_Q8_0, 6e-3},
    {DT_Q4_0, 0.11},   {DT_Q4_1, 0.085},  {DT_Q5_0, 0.055},  {DT_Q5_1, 0.042},
    {DT_Q4_K, 0.085},  {DT_Q5_K, 0.042},  {DT_Q6_K, 0.022},  {DT_Q8_K, 6e-3},
};

static void test_round_trip(void **state) {
    (void)state;
    const int64_t k = 4096;
    float *x = malloc(k * sizeof(float)), *y = malloc(k * sizeof(float));
    uint8_t *q = malloc(k * 4);
    uint64_t seed = 42;
    for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++) {
        for (int64_t i = 0; i < k; i++) x[i] = tu_randf(&seed);
        assert_int_equal(quant_quantize_row(bounds[b].type, x, q, k), 0);
        assert_int_equal(quant_dequantize_row(bounds[b].type, q, y, k), 0);
        double se = 0, sx = 0;
        for (int64_t i = 0; i < k; i++) {
            se += (double)(x[i] - y[i]) * (x[i] - y[i]);
            sx += (double)x[i] * x[i];
        }
        double rel = sqrt(se / sx);
        print_message("%-5s rel rmse %.5f (bound %.5f)\n", dtype_name(bounds[b].type), rel,
                      bounds[b].max_rel_rmse);
        assert_true(rel <= bounds[b].max_rel_rmse);
        /* idempotence: quantizing the dequantized values again changes nothing much */
        uint8_t *q2 = malloc(k * 4);
        float *z = malloc(k * sizeof(float));
        assert_int_equal(quant_quantize_row(bounds[b].type, y, q2, k), 0);
        assert_int_equal(quant_dequantize_row(bounds[b].type, q2, z, k), 0);
        double se2 = 0;
        for (int64_t i = 0; i < k; i++) se2 += (double)(y[i] - z[i]) * (y[i] - z[i]);
        assert_true(sqrt(se2 / sx) <= bounds[b].max_rel_rmse);
        free(q2);
        free(z);
    }
    free(x);
    free(y);
    free(q);
}

/* Every element of a symmetric 32-block is within half a step (plus the fp16 scale rounding)
 * of its input. */
static void test_q8_0_elementwise(void **state) {
    (void)state;
    float x[256], y[256];
    quant_block_q8_0 q[8];
    uint64_t seed = 7;
    for (int i = 0; i < 256; i++) x[i] = tu_randf(&seed) * 10.0f;
    quant_quantize_row_q8_0(x, q, 256);
    quant_dequantize_row_q8_0(q, y, 256);
    for (int b = 0; b < 8; b++) {
        const float d = half_to_f32(q[b].d);
        for (int j = 0; j < 32; j++)
            assert_true(fabsf(x[32 * b + j] - y[32 * b + j]) <= 0.5f * d + 127 * d * 1e-3f);
    }
}

static void test_zero_blocks(void **state) {
    (void)state;
    static const uint32_t types[] = {DT_Q8_0, DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1,
                                     DT_Q4_K, DT_Q5_K, DT_Q6_K, DT_Q8_K};
    float x[256] = {0}, y[256];
    uint8_t q[512];
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        assert_int_equal(quant_quantize_row(types[t], x, q, 256), 0);
        assert_int_equal(quant_dequantize_row(types[t], q, y, 256), 0);
        for (int i = 0; i < 256; i++) assert_true(y[i] == 0.0f);
    }
}

/* ============================================================ known answers ===== */

/* x_j = j - 16: the signed extreme is -16 at j = 0. Worked by hand from the format rules. */
static void test_known_q8_0(void **state) {
    (void)state;
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    quant_block_q8_0 q;
    quant_quantize_row_q8_0(x, &q, 32);
    /* d = 16/127 = 0.1259843 -> fp16 0x3008 (0.125 * (1 + 8/1024)); q = round(x * 127/16) */
    assert_int_equal(q.d, 0x3008);
    assert_int_equal(q.qs[0], -127);
    assert_int_equal(q.qs[16], 0);
    assert_int_equal(q.qs[17], 8);    /* 7.9375 */
    assert_int_equal(q.qs[18], 16);   /* 15.875 */
    assert_int_equal(q.qs[31], 119);  /* 119.0625 */
}

/* The activation quantizers round like llama.cpp's x86 path: multiplier 127 / amax, ties to
 * even (the weight quantizer above rounds ties away from zero). Q8_1 also stores
 * s = fp16((amax / 127) * sum(q)), rounded from the unrounded scale. */
static void test_known_act_q8(void **state) {
    (void)state;
    float x[32] = {127.0f, 2.5f, -2.5f, 3.5f, 0.5f}; /* amax 127: multiplier exactly 1 */
    quant_block_q8_0 w, a;
    quant_block_q8_1 a1;
    quant_quantize_row_q8_0(x, &w, 32);
    quant_quantize_row_q8_0_act(x, &a, 32);
    quant_quantize_row_q8_1(x, &a1, 32);
    static const int8_t away[5] = {127, 3, -3, 4, 1}, even[5] = {127, 2, -2, 4, 0};
    for (int j = 0; j < 5; j++) {
        assert_int_equal(w.qs[j], away[j]);
        assert_int_equal(a.qs[j], even[j]);
        assert_int_equal(a1.qs[j], even[j]);
    }
    assert_int_equal(a.d, 0x3C00);   /* 1.0 */
    assert_int_equal(a1.d, 0x3C00);
    assert_int_equal(a1.s, 0x5818);  /* 131 = 127 + 2 - 2 + 4 */
    float dq[32];
    quant_dequantize_row_q8_1(&a1, dq, 32);
    assert_true(dq[1] == 2.0f && dq[3] == 4.0f);

    /* amax 100: d = 100/127 is not an fp16 value; s comes from the float d */
    for (int j = 0; j < 32; j++) x[j] = (float)(j * 3 % 17) - 5.0f;
    x[7] = 100.0f;
    quant_quantize_row_q8_1(x, &a1, 32);
    int sum = 0;
    for (int j = 0; j < 32; j++) sum += a1.qs[j];
    assert_int_equal(a1.d, half_from_f32(100.0f / 127.f));
    assert_int_equal(a1.s, half_from_f32(100.0f / 127.f * (float)sum));
}

static void test_known_q4_0(void **state) {
    (void)state;
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    quant_block_q4_0 q;
    quant_quantize_row_q4_0(x, &q, 32);
    /* d = -16 / -8 = 2 (fp16 0x4000); level = trunc((j-16)/2 + 8.5) = floor((j+1)/2), max 15 */
    assert_int_equal(q.d, 0x4000);
    assert_int_equal(q.qs[0], 0x80);  /* j=0 -> 0, j=16 -> 8 */
    assert_int_equal(q.qs[1], 0x91);  /* j=1 -> 1, j=17 -> 9 */
    assert_int_equal(q.qs[15], 0xF8); /* j=15 -> 8, j=31 -> 16 clamped to 15 */
}

static void test_known_q4_1(void **state) {
    (void)state;
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)j; /* min 0, max 31: d = 31/15 */
    quant_block_q4_1 q;
    quant_quantize_row_q4_1(x, &q, 32);
    assert_int_equal(q.m, 0);
    assert_int_equal(q.d, half_from_f32(31.0f / 15));
    /* level = trunc(j * 15/31 + 0.5): j=1 -> 0 (0.98), j=2 -> 1, j=16 -> 8 (8.24), j=31 -> 15 */
    assert_int_equal(q.qs[1] & 0xF, 0);
    assert_int_equal(q.qs[2] & 0xF, 1);
    assert_int_equal(q.qs[0] >> 4, 8);
    assert_int_equal(q.qs[15] >> 4, 15);
}

static void test_known_q5_0_bits(void **state) {
    (void)state;
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    quant_block_q5_0 q;
    quant_quantize_row_q5_0(x, &q, 32);
    /* d = -16/-16 = 1, level = j (j - 16 + 16.5 truncated), max 31: bit 4 set for j >= 16 */
    assert_int_equal(q.d, 0x3C00);
    assert_int_equal(q.qh[0], 0x00);
    assert_int_equal(q.qh[1], 0x00);
    assert_int_equal(q.qh[2], 0xFF);
    assert_int_equal(q.qh[3], 0xFF);
    assert_int_equal(q.qs[3], 0x33); /* j=3 -> 3, j=19 -> 19 & 15 = 3 */
}

/* K-quant scale packing: sub-blocks of 32 have magnitudes 1..4, so a scale or min applied to
 * the wrong sub-block (or a wrong nibble / high-bit position) shows as an error far above the
 * sub-block's own step (its range over the number of levels). */
static void test_k_layouts(void **state) {
    (void)state;
    float x[512], y[512];
    uint64_t seed = 11;
    for (int i = 0; i < 512; i++) x[i] = tu_randf(&seed) * (float)(1 + (i / 32 * 3) % 4);
    uint8_t q[512];
    static const uint32_t types[] = {DT_Q4_K, DT_Q5_K, DT_Q6_K};
    static const float levels[] = {15.0f, 31.0f, 64.0f};
    for (int t = 0; t < 3; t++) {
        assert_int_equal(quant_quantize_row(types[t], x, q, 512), 0);
        assert_int_equal(quant_dequantize_row(types[t], q, y, 512), 0);
        for (int i = 0; i < 512; i++) {
            const float step = 2.0f * (float)(1 + (i / 32 * 3) % 4) / levels[t];
            /* 1.5 steps: the 6-bit sub-block scales add up to ~half a step at the top level */
            if (fabsf(x[i] - y[i]) > 1.5f * step)
                fail_msg("%s i=%d x=%g y=%g step=%g", dtype_name(types[t]), i, x[i], y[i], step);
        }
    }
}

static void test_q8_k_bsums(void **state) {
    (void)state;
    float x[512];
    uint64_t seed = 3;
    for (int i = 0; i < 512; i++) x[i] = tu_randf(&seed);
    quant_block_q8_k q[2];
    quant_quantize_row_q8_k(x, q, 512);
    for (int b = 0; b < 2; b++)
        for (int s = 0; s < 16; s++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += q[b].qs[16 * s + l];
            assert_int_equal(q[b].bsums[s], sum);
        }
}

/* ============================================================ fp16 vs F16C ===== */

__attribute__((target("f16c"))) static float f16c_to_f32(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) static uint16_t f16c_from_f32(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void test_f16_exhaustive(void **state) {
    (void)state;
    unsigned eax, ebx, ecx, edx; /* CPUID.1:ECX.F16C[bit 29] */
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_F16C)) skip();
    int nan_quiet_diff = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = half_to_f32((uint16_t)h), b = f16c_to_f32((uint16_t)h);
        if (isnan(a) && isnan(b)) { /* F16C quiets signalling NaNs; both stay NaN */
            nan_quiet_diff += bits_of(a) != bits_of(b);
            continue;
        }
        if (bits_of(a) != bits_of(b)) fail_msg("half %04x: %08x vs F16C %08x", h, bits_of(a), bits_of(b));
        /* float -> half on the exact value, and on the midpoints to the next half (ties) */
        if (half_from_f32(a) != f16c_from_f32(a)) fail_msg("to half of %04x", h);
        if ((h & 0x7fff) < 0x7c00) {
            float next = half_to_f32((uint16_t)(h + 1));
            if (!isinf(next) && !isnan(next)) {
                float mid = (float)(((double)a + (double)next) / 2);
                if (half_from_f32(mid) != f16c_from_f32(mid))
                    fail_msg("tie after %04x: %04x vs %04x", h, half_from_f32(mid), f16c_from_f32(mid));
            }
        }
    }
    uint64_t seed = 9;
    for (int i = 0; i < 1000000; i++) { /* random bit patterns over the whole float range */
        uint32_t u = (uint32_t)tu_rand(&seed);
        float f;
        memcpy(&f, &u, 4);
        if (isnan(f)) continue;
        if (half_from_f32(f) != f16c_from_f32(f)) fail_msg("float %08x", u);
    }
    print_message("signalling NaNs quieted by F16C: %d\n", nan_quiet_diff);
}

/* ============================================================ generic API ===== */

static void test_generic(void **state) {
    (void)state;
    float x[64] = {0};
    uint8_t q[256];
    assert_true(quant_supported(DT_Q4_K));
    assert_false(quant_supported(DT_Q2_K));
    assert_int_equal(quant_quantize_row(DT_Q2_K, x, q, 256), -1);
    assert_int_equal(quant_quantize_row(DT_Q8_0, x, q, 33), -1);  /* not a multiple of 32 */
    assert_int_equal(quant_quantize_row(DT_Q4_K, x, q, 64), -1);  /* not a multiple of 256 */
    assert_int_equal(quant_dequantize_row(DT_IQ2_XS, q, x, 256), -1);
    /* struct sizes match the dtype table */
    assert_int_equal(sizeof(quant_block_q4_k), dtype_block_bytes(DT_Q4_K));
    assert_int_equal(sizeof(quant_block_q6_k), dtype_block_bytes(DT_Q6_K));
    assert_int_equal(sizeof(quant_block_q8_k), dtype_block_bytes(DT_Q8_K));
    assert_int_equal(sizeof(quant_block_q5_1), dtype_block_bytes(DT_Q5_1));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_q8_0_elementwise),
        cmocka_unit_test(test_zero_blocks),     cmocka_unit_test(test_known_q8_0),
        cmocka_unit_test(test_known_q4_0),      cmocka_unit_test(test_known_q4_1),
        cmocka_unit_test(test_known_q5_0_bits), cmocka_unit_test(test_k_layouts),
        cmocka_unit_test(test_q8_k_bsums),      cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_generic),         cmocka_unit_test(test_known_act_q8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
