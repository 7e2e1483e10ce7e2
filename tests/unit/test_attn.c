/*
 * test_attn — the f16-cache attention primitives: the f16-accumulator functions of the chosen
 * table (scalar under SHOAL_ISA=scalar) and of the AVX2 table against their definition (round
 * to f16 after every update, as llama.cpp's CPU flash attention does with an f16 cache), the
 * f16 x f16 dot of every table against its definition (the summation order of llama.cpp's
 * AVX-512 ggml_vec_dot_f16) and the online softmax against its definition (sum updated with two
 * roundings); the f32-cache dot and weighted sum against theirs (llama.cpp's orders without
 * flash attention); and the AVX-512 f16-cache loops against the AVX2 ones (and wsum_f16h
 * against the scalar one), byte for byte.
 */
#include "testutil.h"

#include <math.h>
#include <string.h>

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

/* f16 values over a wide range of exponents (so a different summation order shows in the low
 * bits of a dot), with some ties: small integers and halves, whose products with a power-of-two
 * weight often fall exactly halfway between two f16 values. */
static void fill_f16_wide(uint16_t *x, int n, uint64_t *seed) {
    for (int i = 0; i < n; i++) {
        const float r = tu_randf(seed);
        const int e = (int)((tu_randf(seed) + 1.0f) * 6.0f) - 6; /* 2^-6 .. 2^6 */
        if (i % 5 == 0) x[i] = half_from_f32((float)(int)(r * 64.0f) * 0.5f);
        else x[i] = half_from_f32(ldexpf(r, e));
    }
}

/* dot_f16h's definition, written out lane by lane: 16 lanes x 4 accumulators over the 64-element
 * chunks, (a0 + a2) + (a1 + a3), the tree l + 8, + 4, + 2, + 1, then the rest in double. */
static float dot_f16h_def(const uint16_t *q, const uint16_t *k, int n) {
    const int chunks = n / 64;
    float x[16];
    for (int l = 0; l < 16; l++) {
        float a[4] = {0, 0, 0, 0};
        for (int c = 0; c < chunks; c++)
            for (int j = 0; j < 4; j++) {
                const int i = 64 * c + 16 * j + l;
                a[j] = fmaf(half_to_f32(q[i]), half_to_f32(k[i]), a[j]);
            }
        x[l] = (a[0] + a[2]) + (a[1] + a[3]);
    }
    float t8[8], t4[4], t2[2];
    for (int l = 0; l < 8; l++) t8[l] = x[l] + x[l + 8];
    for (int l = 0; l < 4; l++) t4[l] = t8[l] + t8[l + 4];
    for (int l = 0; l < 2; l++) t2[l] = t4[l] + t4[l + 2];
    double s = t2[0] + t2[1];
    for (int i = 64 * chunks; i < n; i++) s += (double)(half_to_f32(q[i]) * half_to_f32(k[i]));
    return (float)s;
}

/* The f16 x f16 dot of every table: its definition (llama.cpp's AVX-512 order) to the bit, for
 * n = 1..200 (below 64: all in double; 64, 128, 192 and the tails between). A plain float sum
 * in element order differs from it on these inputs, so the test tells the orders apart. */
static void test_dot_f16h(void **state) {
    (void)state;
    const attn_ops *tables[3] = {attn_get(), vecdot_best_isa() >= ISA_AVX2 ? &attn_ops_avx2 : NULL,
                                 vecdot_best_isa() >= ISA_AVX512 ? attn_avx512_table() : NULL};
    enum { M = 200 };
    uint64_t seed = 11;
    int plain_differs = 0;
    for (int rep = 0; rep < 8; rep++)
        for (int n = 1; n <= M; n++) {
            uint16_t q[M], k[M];
            fill_f16_wide(q, n, &seed);
            fill_f16_wide(k, n, &seed);
            const float want = dot_f16h_def(q, k, n);
            float plain = 0;
            for (int i = 0; i < n; i++) plain += half_to_f32(q[i]) * half_to_f32(k[i]);
            plain_differs += memcmp(&plain, &want, sizeof want) != 0;
            for (int t = 0; t < 3; t++) {
                if (!tables[t]) continue;
                const float got = tables[t]->dot_f16h(q, k, n);
                if (memcmp(&got, &want, sizeof got))
                    fail_msg("table %d n=%d: dot_f16h %a, definition %a", t, n, got, want);
            }
        }
    assert_true(plain_differs > 0);
}

/* dot_f32 / dots_f32 / wsum_f32 of every table against their definitions, written out here:
 * the score in ggml_vec_dot_f32's AVX-512 order (4 x 16 FMA lanes per 64 elements, combined,
 * the tree, then the rest as rounded products), the weighted sum of V in the order of
 * llama.cpp's batched f32 matmul (16 FMA chains by position, then the tree). n = 1..140 and
 * position counts around the 16-position chunks; plain sequential sums differ on these
 * inputs, so the orders are pinned. */
static float dot_f32_def(const float *q, const float *k, int n) {
    const int chunks = n / 64;
    float x[16];
    for (int l = 0; l < 16; l++) {
        float a[4] = {0, 0, 0, 0};
        for (int c = 0; c < chunks; c++)
            for (int j = 0; j < 4; j++) a[j] = fmaf(q[64 * c + 16 * j + l], k[64 * c + 16 * j + l], a[j]);
        x[l] = (a[0] + a[2]) + (a[1] + a[3]);
    }
    float t8[8], t4[4], t2[2];
    for (int l = 0; l < 8; l++) t8[l] = x[l] + x[l + 8];
    for (int l = 0; l < 4; l++) t4[l] = t8[l] + t8[l + 4];
    for (int l = 0; l < 2; l++) t2[l] = t4[l] + t4[l + 2];
    float s = t2[0] + t2[1];
    for (int i = 64 * chunks; i < n; i++) {
        const volatile float p = q[i] * k[i]; /* volatile: the test's own build may fuse */
        s = s + p;
    }
    return s;
}

static float wsum_f32_def(const float *p, const float *x, size_t stride, int nt, int i) {
    float chain[16];
    for (int l = 0; l < 16; l++) {
        chain[l] = 0.0f;
        for (int t = l; t < nt; t += 16) chain[l] = fmaf(x[(size_t)t * stride + i], p[t], chain[l]);
    }
    float t8[8], t4[4], t2[2];
    for (int l = 0; l < 8; l++) t8[l] = chain[l] + chain[l + 8];
    for (int l = 0; l < 4; l++) t4[l] = t8[l] + t8[l + 4];
    for (int l = 0; l < 2; l++) t2[l] = t4[l] + t4[l + 2];
    return t2[0] + t2[1];
}

static void test_f32_definitions(void **state) {
    (void)state;
    const attn_ops *tables[3] = {attn_get(), vecdot_best_isa() >= ISA_AVX2 ? &attn_ops_avx2 : NULL,
                                 vecdot_best_isa() >= ISA_AVX512 ? attn_avx512_table() : NULL};
    enum { M = 140, NT = 53, STRIDE = 144 };
    static float x[NT * STRIDE];
    float q[M], p[NT], s[NT], y[M];
    uint64_t seed = 41;
    for (int i = 0; i < NT * STRIDE; i++) x[i] = ldexpf(tu_randf(&seed), (int)(tu_rand(&seed) % 9) - 4);
    for (int i = 0; i < M; i++) q[i] = ldexpf(tu_randf(&seed), (int)(tu_rand(&seed) % 9) - 4);
    for (int t = 0; t < NT; t++) p[t] = fabsf(tu_randf(&seed));
    int dot_plain_differs = 0, wsum_plain_differs = 0;
    for (int tb = 0; tb < 3; tb++) {
        const attn_ops *op = tables[tb];
        if (!op) continue;
        for (int n = 1; n <= M; n++) {
            for (int t = 0; t < 3; t++) {
                const float got = op->dot_f32(q, x + t * STRIDE, n), want = dot_f32_def(q, x + t * STRIDE, n);
                if (memcmp(&got, &want, sizeof got)) fail_msg("table %d dot_f32 n=%d: %a, definition %a", tb, n, got, want);
                float plain = 0;
                for (int i = 0; i < n; i++) plain += q[i] * x[t * STRIDE + i];
                dot_plain_differs += memcmp(&plain, &want, sizeof want) != 0;
            }
            if (n % 7 != 1 && n != 64 && n != 128) continue;
            op->dots_f32(s, q, x, STRIDE, NT, n, 0.125f);
            for (int t = 0; t < NT; t++) {
                const float want = dot_f32_def(q, x + t * STRIDE, n) * 0.125f;
                assert_memory_equal(&s[t], &want, sizeof want);
            }
            static const int nts[] = {1, 15, 16, 17, 33, 53};
            for (size_t c = 0; c < sizeof nts / sizeof nts[0]; c++) {
                op->wsum_f32(y, p, x, STRIDE, nts[c], n);
                for (int i = 0; i < n; i++) {
                    const float want = wsum_f32_def(p, x, STRIDE, nts[c], i);
                    if (memcmp(&y[i], &want, sizeof want))
                        fail_msg("table %d wsum_f32 n=%d nt=%d i=%d: %a, definition %a", tb, n, nts[c], i, y[i], want);
                    float plain = 0;
                    for (int t = 0; t < nts[c]; t++) plain = fmaf(x[t * STRIDE + i], p[t], plain);
                    wsum_plain_differs += memcmp(&plain, &want, sizeof want) != 0;
                }
            }
        }
    }
    assert_true(dot_plain_differs > 0 && wsum_plain_differs > 0);
}

/* attn_online_softmax: weights, rescale factors and the sum of its definition (the sum updated
 * with two roundings), to the bit; with an FMA the sum would differ on some of these rows. */
static void test_online_softmax(void **state) {
    (void)state;
    enum { NT = 40 };
    uint64_t seed = 19;
    int fused_differs = 0;
    for (int rep = 0; rep < 500; rep++) {
        const int nt = 1 + rep % NT;
        float s[NT], w[NT], ms[NT], want_w[NT], want_ms[NT];
        for (int t = 0; t < nt; t++) s[t] = tu_randf(&seed) * 4.0f + (float)t * 0.05f;
        memcpy(w, s, sizeof s);
        const float sum = attn_online_softmax(w, ms, nt);
        float mx = -INFINITY, want = 0, fused = 0;
        for (int t = 0; t < nt; t++) {
            float m = 1.0f, v = 1.0f;
            if (s[t] > mx) m = expf(mx - s[t]), mx = s[t];
            else v = expf(s[t] - mx);
            want_ms[t] = m, want_w[t] = v;
            const volatile float scaled = want * m; /* volatile: the test's own build may fuse */
            want = scaled + v;
            fused = fmaf(fused, m, v);
        }
        assert_memory_equal(w, want_w, (size_t)nt * sizeof(float));
        assert_memory_equal(ms, want_ms, (size_t)nt * sizeof(float));
        assert_memory_equal(&sum, &want, sizeof sum);
        fused_differs += memcmp(&fused, &want, sizeof want) != 0;
    }
    assert_true(fused_differs > 0);
}

/* dots_f16h / wsum_f16h (head by head over all positions, q or the accumulator in registers)
 * against the per-position calls they replace: bit-identical, for the portable table and the
 * AVX2 one, for lengths that take every chunk width and the scalar tail. */
static void test_f16h_loops(void **state) {
    (void)state;
    const attn_ops *tables[2] = {attn_get(), vecdot_best_isa() >= ISA_AVX2 ? &attn_ops_avx2 : NULL};
    enum { NT = 13, M = 140, STRIDE = 150 };
    uint16_t x[NT * STRIDE], q[M], acc[M];
    float ms[NT], vs[NT], sa[NT], sb[NT], want[M], got[M];
    uint64_t seed = 31;
    fill_f16(x, NT * STRIDE, &seed, 3.0f);
    fill_f16(q, M, &seed, 1.0f);
    for (int t = 0; t < NT; t++) { /* as the online softmax makes them: one of the two is 1 */
        const float r = fabsf(tu_randf(&seed));
        ms[t] = t == 0 ? 0.0f : t % 3 == 1 ? r : 1.0f;
        vs[t] = ms[t] == 1.0f ? r : 1.0f;
    }
    static const int ns[] = {1, 7, 8, 32, 40, 64, 72, 96, 128, 139};
    for (int tb = 0; tb < 2; tb++) {
        const attn_ops *op = tables[tb];
        if (!op) continue;
        for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
            const int n = ns[c];
            for (int t = 0; t < NT; t++) sa[t] = op->dot_f16h(q, x + t * STRIDE, n) * 0.125f;
            op->dots_f16h(sb, q, x, STRIDE, NT, n, 0.125f);
            assert_memory_equal(sa, sb, sizeof sa);
            memset(acc, 0, sizeof acc);
            for (int t = 0; t < NT; t++) {
                if (ms[t] != 1.0f) op->scale_f16h(acc, ms[t], n);
                op->mad_f16h(acc, vs[t], x + t * STRIDE, n);
            }
            for (int i = 0; i < n; i++) want[i] = half_to_f32(acc[i]);
            op->wsum_f16h(got, ms, vs, x, STRIDE, NT, n);
            assert_memory_equal(got, want, (size_t)n * sizeof(float));
        }
    }
}


/* The AVX-512 dot_f16h / dots_f16h / wsum_f16h against the AVX2 ones (what they replace),
 * byte-identical: head sizes 1..140 (every 16- and 8-wide chunk count and scalar tail, 32, 64
 * and 128 among them), position counts that take the 16-position groups and the rest, weights
 * with ties (powers of two) and rescale factors as the online softmax makes them. wsum_f16h is
 * also checked against the scalar definition. */
static void test_avx512_f16h(void **state) {
    (void)state;
    if (vecdot_best_isa() < ISA_AVX512) skip();
    const attn_ops *z = attn_avx512_table(), *a2 = &attn_ops_avx2;
    enum { NT = 53, M = 140, STRIDE = 152 };
    static uint16_t x[NT * STRIDE];
    uint16_t q[M];
    float ms[NT], vs[NT], sa[NT], sb[NT], ya[M], yb[M], want[M];
    uint64_t seed = 97;
    for (int rep = 0; rep < 4; rep++) {
        fill_f16_wide(x, NT * STRIDE, &seed);
        fill_f16_wide(q, M, &seed);
        for (int t = 0; t < NT; t++) {
            const float r = fabsf(tu_randf(&seed));
            const float w = (t + rep) % 4 == 0 ? ldexpf(1.0f, -(t % 5)) : r; /* ties */
            ms[t] = t == 0 ? 0.0f : t % 3 == 1 ? r : 1.0f;
            vs[t] = ms[t] == 1.0f ? w : 1.0f;
        }
        static const int nts[] = {1, 15, 16, 17, 32, 53};
        for (int n = 1; n <= M; n++) {
            for (size_t c = 0; c < sizeof nts / sizeof nts[0]; c++) {
                const int nt = nts[c];
                a2->dots_f16h(sa, q, x, STRIDE, nt, n, 0.125f);
                z->dots_f16h(sb, q, x, STRIDE, nt, n, 0.125f);
                assert_memory_equal(sa, sb, (size_t)nt * sizeof(float));
                for (int t = 0; t < nt; t++) {
                    const float d = z->dot_f16h(q, x + t * STRIDE, n);
                    const float e = a2->dot_f16h(q, x + t * STRIDE, n);
                    assert_memory_equal(&d, &e, sizeof d);
                }
                a2->wsum_f16h(ya, ms, vs, x, STRIDE, nt, n);
                z->wsum_f16h(yb, ms, vs, x, STRIDE, nt, n);
                assert_memory_equal(ya, yb, (size_t)n * sizeof(float));
                if (n % 16 != 0 && n != 1 && n != 139) continue; /* the definition (scalar): some n */
                for (int i = 0; i < n; i++) {
                    uint16_t acc = 0;
                    for (int t = 0; t < nt; t++) {
                        if (ms[t] != 1.0f) acc = half_from_f32(half_to_f32(acc) * ms[t]);
                        const float xv = half_to_f32(x[(size_t)t * STRIDE + i]);
                        acc = half_from_f32(fmaf(xv, vs[t], half_to_f32(acc)));
                    }
                    want[i] = half_to_f32(acc);
                }
                assert_memory_equal(yb, want, (size_t)n * sizeof(float));
            }
        }
    }
}

/* wsum_f16h_n, every table: byte-identical to one wsum_f16h call per head, for 1..4 heads with
 * their own weights, rescale factors and V rows, at the head sizes with a multi-head path (32,
 * 64, 128) and others (8, 48, 80). */
static void test_wsum_f16h_n(void **state) {
    (void)state;
    const attn_ops *tables[3] = {attn_get(), vecdot_best_isa() >= ISA_AVX2 ? &attn_ops_avx2 : NULL,
                                 vecdot_best_isa() >= ISA_AVX512 ? attn_avx512_table() : NULL};
    enum { NT = 41, H = ATTN_WSUM_MAX_HEADS, STRIDE = 4 * 136 };
    static uint16_t x[NT * STRIDE];
    static float ms[H][NT], vs[H][NT], got[H][128], want[H][128];
    uint64_t seed = 61;
    fill_f16_wide(x, NT * STRIDE, &seed);
    for (int h = 0; h < H; h++)
        for (int t = 0; t < NT; t++) {
            const float r = fabsf(tu_randf(&seed));
            ms[h][t] = t == 0 ? 0.0f : (t + h) % 3 == 1 ? r : 1.0f;
            vs[h][t] = ms[h][t] == 1.0f ? (t % 4 == 0 ? ldexpf(1.0f, -(t % 5)) : r) : 1.0f;
        }
    static const int ns[] = {8, 32, 48, 64, 80, 128};
    int checked = 0;
    for (int tb = 0; tb < 3; tb++) {
        const attn_ops *op = tables[tb];
        if (!op) continue;
        for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++)
            for (int nh = 1; nh <= H; nh++)
                for (int nt = 1; nt <= NT; nt += 20) {
                    const int n = ns[c];
                    float *ys[H];
                    const float *mp[H], *vp[H];
                    const uint16_t *xp[H];
                    for (int h = 0; h < nh; h++) {
                        ys[h] = got[h], mp[h] = ms[h], vp[h] = vs[h];
                        xp[h] = x + (size_t)((h * 3) % 4) * 136; /* heads at scattered offsets */
                        op->wsum_f16h(want[h], ms[h], vs[h], xp[h], STRIDE, nt, n);
                    }
                    op->wsum_f16h_n(ys, mp, vp, xp, STRIDE, nt, n, nh);
                    for (int h = 0; h < nh; h++)
                        assert_memory_equal(got[h], want[h], (size_t)n * sizeof(float));
                    checked++;
                }
    }
    assert_true(checked >= 6 * 4 * 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wsum_f16h_n),
        cmocka_unit_test(test_f16_accumulator_definition),
        cmocka_unit_test(test_dot_f16h),
        cmocka_unit_test(test_online_softmax),
        cmocka_unit_test(test_f32_definitions),
        cmocka_unit_test(test_f16h_loops),
        cmocka_unit_test(test_avx512_f16h),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
