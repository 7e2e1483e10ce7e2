/*
 * test_attn — the f16-cache attention primitives: the f16-accumulator functions of the chosen
 * table (scalar under SHOAL_ISA=scalar) and of the AVX2 table against their definition (round
 * to f16 after every update, as llama.cpp's CPU flash attention does with an f16 cache), and
 * the AVX2 f16 x f16 dot against an exact sum.
 */
#include "testutil.h"

#include <math.h>

#include "core/half.h"
#include "engine/attn.h"
#include "tensor/vecdot.h"

#define N 80 /* covers the 16- and 8-wide loops and a scalar tail for n = 1..N */

static void fill_f16(uint16_t *x, int n, uint64_t *seed, float scale) {
    for (int i = 0; i < n; i++) x[i] = half_from_f32(tu_randf(seed) * scale);
}

/* mad_f16h / scale_f16h: exactly fp16(fma(x, a, y)) and fp16(y * a), element by element,
 * for the portable table and (when the CPU has it) the AVX2 one. */
static void test_f16_accumulator_definition(void **state) {
    (void)state;
    const attn_ops *tables[2] = {attn_get(), vecdot_best_isa() >= ISA_AVX2 ? &attn_ops_avx2 : NULL};
    uint64_t seed = 7;
    for (int t = 0; t < 2; t++) {
        if (!tables[t]) continue;
        for (int n = 1; n <= N; n += 7) {
            uint16_t x[N], y[N], want[N];
            fill_f16(x, n, &seed, 4.0f);
            fill_f16(y, n, &seed, 4.0f);
            const float a = 0.3712f;
            for (int i = 0; i < n; i++)
                want[i] = half_from_f32(fmaf(half_to_f32(x[i]), a, half_to_f32(y[i])));
            tables[t]->mad_f16h(y, a, x, n);
            assert_memory_equal(y, want, (size_t)n * sizeof(uint16_t));
            for (int i = 0; i < n; i++) want[i] = half_from_f32(half_to_f32(y[i]) * 0.625f);
            tables[t]->scale_f16h(y, 0.625f, n);
            assert_memory_equal(y, want, (size_t)n * sizeof(uint16_t));
        }
    }
}

/* The f16 x f16 dot: products are exact in float, so the AVX2 sum differs from the scalar one
 * by reassociation only. */
static void test_dot_f16h(void **state) {
    (void)state;
    if (vecdot_best_isa() < ISA_AVX2) skip();
    uint64_t seed = 11;
    for (int n = 1; n <= N; n++) {
        uint16_t q[N], k[N];
        fill_f16(q, n, &seed, 2.0f);
        fill_f16(k, n, &seed, 2.0f);
        double exact = 0, mag = 0;
        for (int i = 0; i < n; i++) {
            const double p = (double)half_to_f32(q[i]) * half_to_f32(k[i]);
            exact += p;
            mag += fabs(p);
        }
        const float s = attn_ops_avx2.dot_f16h(q, k, n);
        assert_true(fabs((double)s - exact) <= 1e-6 * mag + 1e-30);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_accumulator_definition),
        cmocka_unit_test(test_dot_f16h),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
