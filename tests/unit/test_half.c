/*
 * Unit tests: core/half — binary16 and bfloat16 conversions, checked exhaustively against the
 * CPU's own F16C conversion where the CPU has it, and against exact arithmetic otherwise.
 */
#include "testutil.h"

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>

#include "core/half.h"

__attribute__((target("f16c"))) static float hw_h2f(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) static uint16_t hw_f2h(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

/* CPUID leaf 1, ECX bit 29 (clang 14's __builtin_cpu_supports does not know "f16c"). */
static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}

static uint32_t bits(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

static float from_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* Every half converts to float and back to itself (NaNs stay NaN). */
static void test_half_roundtrip_all(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = half_to_f32((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            assert_true(isnan(f));
            assert_true((half_from_f32(f) & 0x7c00) == 0x7c00 && (half_from_f32(f) & 0x3ff));
            continue;
        }
        assert_int_equal(half_from_f32(f), h);
    }
    assert_true(half_to_f32(0x3c00) == 1.0f);
    assert_true(half_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    assert_true(half_to_f32(0x7bff) == 65504.0f);
    assert_true(isinf(half_to_f32(0xfc00)) && half_to_f32(0xfc00) < 0);
}

/* Against F16C: all 65536 halves to float, and 4M floats (random bit patterns, plus every
 * float near each half's rounding boundaries) to half. */
static void test_half_vs_f16c(void **state) {
    (void)state;
    if (!cpu_has_f16c()) {
        skip();
        return;
    }
    for (uint32_t h = 0; h < 65536; h++) {
        float a = half_to_f32((uint16_t)h), b = hw_h2f((uint16_t)h);
        if (isnan(b)) assert_true(isnan(a));
        else assert_int_equal(bits(a), bits(b));
    }
    uint64_t seed = 42;
    for (int i = 0; i < 4000000; i++) {
        float f = from_bits((uint32_t)tu_rand(&seed));
        if (isnan(f)) continue;
        assert_int_equal(half_from_f32(f), hw_f2h(f));
    }
    for (uint32_t h = 0; h < 0x7c00; h++) { /* halfway points and their neighbours */
        float lo = half_to_f32((uint16_t)h), hi = half_to_f32((uint16_t)(h + 1));
        float mid = (float)(((double)lo + (double)hi) / 2);
        float cand[3] = {mid, nextafterf(mid, 0), nextafterf(mid, INFINITY)};
        for (int k = 0; k < 3; k++) {
            assert_int_equal(half_from_f32(cand[k]), hw_f2h(cand[k]));
            assert_int_equal(half_from_f32(-cand[k]), hw_f2h(-cand[k]));
        }
    }
}

static void test_bf16(void **state) {
    (void)state;
    assert_true(bf16_to_f32(0x3f80) == 1.0f);
    assert_int_equal(bf16_from_f32(1.0f), 0x3f80);
    assert_int_equal(bf16_from_f32(from_bits(0x3f808000)), 0x3f80); /* tie -> even */
    assert_int_equal(bf16_from_f32(from_bits(0x3f818000)), 0x3f82); /* tie -> even (up) */
    assert_int_equal(bf16_from_f32(from_bits(0x3f808001)), 0x3f81);
    assert_true(isnan(bf16_to_f32(bf16_from_f32(NAN))));
    for (uint32_t h = 0; h < 65536; h++) {
        float f = bf16_to_f32((uint16_t)h);
        if (!isnan(f)) assert_int_equal(bf16_from_f32(f), h);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_roundtrip_all),
        cmocka_unit_test(test_half_vs_f16c),
        cmocka_unit_test(test_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
