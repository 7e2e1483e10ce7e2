/*
 * test_vecdot — the matmul kernels: scalar reference against a double-precision dot of the
 * dequantized rows (for Q8_1 activations, with each block's minimum term taken from the stored
 * fp16 block sum, as the format defines it), every SIMD kernel against the scalar one (K-quants
 * to the bit, the others within float reassociation), the K-quants against their definition
 * (llama.cpp's AMX / VNNI order), batch invariance (n_act and row split never change a
 * result), untouched outputs.
 */
#include "testutil.h"

#include <math.h>

#include "core/half.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"
#include "tensor/vecdot.h"
#include "tensor/vecdot_impl.h"

static const uint32_t all_types[] = {DT_F32,  DT_F16,  DT_BF16, DT_Q8_0, DT_Q4_0, DT_Q4_1,
                                     DT_Q5_0, DT_Q5_1, DT_Q4_K, DT_Q5_K, DT_Q6_K};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* A test problem: n_rows weight rows and n_act activation rows of k elements, converted to the
 * kernel's formats, plus the per-output bound sum |w_i * a_i| over dequantized values and the
 * exact (double) dot of the dequantized values. */
typedef struct {
    uint32_t wtype, atype;
    int64_t k, n_rows, n_act;
    size_t w_stride, a_stride;
    uint8_t *W, *A;
    double *exact, *mag; /* [n_act][n_rows] */
} problem;

/* Q4_1 / Q5_1 against Q8_1: the minimum m of a weight block multiplies the activation block's
 * stored s = fp16(d * sum(q)), not the sum of the dequantized activations. Returns
 * sum over blocks of m * (s - sum(a)) for weight row r and activation row j (a dequantized). */
static double q8_1_min_correction(const problem *p, int64_t r, int64_t j, const float *a) {
    const uint8_t *wrow = p->W + r * p->w_stride;
    const quant_block_q8_1 *arow = (const void *)(p->A + j * p->a_stride);
    const size_t wb = dtype_block_bytes(p->wtype);
    double c = 0;
    for (int64_t b = 0; b < p->k / QUANT_QK; b++) {
        uint16_t m; /* Q4_1 and Q5_1 blocks both start with fp16 d, m */
        memcpy(&m, wrow + (size_t)b * wb + 2, sizeof m);
        double sa = 0;
        for (int i = 0; i < QUANT_QK; i++) sa += a[b * QUANT_QK + i];
        c += (double)half_to_f32(m) * ((double)half_to_f32(arow[b].s) - sa);
    }
    return c;
}

static void problem_make(problem *p, uint32_t wtype, int64_t k, int64_t n_rows, int64_t n_act,
                         uint64_t seed) {
    const vecdot_kernel *ref = vecdot_get_isa(wtype, ISA_SCALAR);
    assert_non_null(ref);
    p->wtype = wtype;
    p->atype = ref->act_type;
    p->k = k;
    p->n_rows = n_rows;
    p->n_act = n_act;
    uint64_t wb = 0;
    assert_true(dtype_row_bytes(wtype, (uint64_t)k, &wb));
    p->w_stride = (size_t)wb + 8; /* padded rows: strides are honoured, not assumed */
    p->a_stride = vecdot_act_row_bytes(p->atype, k) + 4;
    assert_true(p->a_stride > 4);
    p->W = calloc((size_t)n_rows, p->w_stride);
    p->A = calloc((size_t)n_act, p->a_stride);
    p->exact = calloc((size_t)(n_rows * n_act), sizeof(double));
    p->mag = calloc((size_t)(n_rows * n_act), sizeof(double));
    float *x = malloc((size_t)k * sizeof(float));
    float *wd = malloc((size_t)(n_rows * k) * sizeof(float));
    float *ad = malloc((size_t)(n_act * k) * sizeof(float));
    for (int64_t r = 0; r < n_rows; r++) {
        /* varied magnitudes per row and sub-block so scales differ */
        for (int64_t i = 0; i < k; i++)
            x[i] = tu_randf(&seed) * (1.0f + (float)((i / 16 + r) % 5));
        assert_int_equal(quant_quantize_row(wtype, x, p->W + r * p->w_stride, k), 0);
        assert_int_equal(quant_dequantize_row(wtype, p->W + r * p->w_stride, wd + r * k, k), 0);
    }
    for (int64_t j = 0; j < n_act; j++) {
        for (int64_t i = 0; i < k; i++) x[i] = tu_randf(&seed) * 3.0f;
        vecdot_quantize_act(p->atype, x, p->A + j * p->a_stride, k);
        assert_int_equal(quant_dequantize_row(p->atype, p->A + j * p->a_stride, ad + j * k, k), 0);
    }
    for (int64_t j = 0; j < n_act; j++)
        for (int64_t r = 0; r < n_rows; r++) {
            double s = 0, m = 0;
            for (int64_t i = 0; i < k; i++) {
                double t = (double)wd[r * k + i] * (double)ad[j * k + i];
                s += t;
                m += fabs(t);
            }
            if (p->atype == DT_Q8_1) s += q8_1_min_correction(p, r, j, ad + j * k);
            p->exact[j * n_rows + r] = s;
            p->mag[j * n_rows + r] = m;
        }
    free(x);
    free(wd);
    free(ad);
}

static void problem_free(problem *p) {
    free(p->W);
    free(p->A);
    free(p->exact);
    free(p->mag);
}

/* Runs kernel kn on rows [r0, r1) and all activation rows into a fresh NaN-filled buffer. */
static float *run(const vecdot_kernel *kn, const problem *p, int64_t r0, int64_t r1,
                  int64_t n_act) {
    float *out = malloc((size_t)(p->n_rows * p->n_act) * sizeof(float));
    for (int64_t i = 0; i < p->n_rows * p->n_act; i++) out[i] = NAN;
    kn->matmul(p->k, p->W, p->w_stride, r0, r1, p->A, p->a_stride, n_act, out, p->n_rows);
    return out;
}

static int64_t ks_for(uint32_t t, int i) {
    static const int64_t kf[] = {1, 7, 31, 32, 33, 100, 256, 1000};
    static const int64_t k32[] = {32, 64, 96, 256, 1056, 2048, 160, 320};
    static const int64_t k256[] = {256, 512, 768, 1280, 2048, 256, 512, 1024};
    uint32_t be = dtype_block_elems(t);
    return be == 1 ? kf[i] : be == 32 ? k32[i] : k256[i];
}

/* ============================================================ tests ===== */

/* The scalar reference equals the exact dot of the dequantized rows up to float rounding. */
static void test_scalar_vs_exact(void **state) {
    (void)state;
    int checked = 0;
    for (size_t t = 0; t < N_TYPES; t++) {
        for (int ki = 0; ki < 8; ki++) {
            problem p;
            problem_make(&p, all_types[t], ks_for(all_types[t], ki), 5, 3, 100 + t * 10 + ki);
            const vecdot_kernel *kn = vecdot_get_isa(all_types[t], ISA_SCALAR);
            float *out = run(kn, &p, 0, p.n_rows, p.n_act);
            for (int64_t i = 0; i < p.n_rows * p.n_act; i++) {
                double err = fabs((double)out[i] - p.exact[i]);
                if (err > 1e-5 * p.mag[i] + 1e-30) {
                    fail_msg("%s k=%lld out[%lld]=%.9g exact=%.9g mag=%.3g",
                             dtype_name(all_types[t]), (long long)p.k, (long long)i, out[i],
                             p.exact[i], p.mag[i]);
                }
                checked++;
            }
            free(out);
            problem_free(&p);
        }
    }
    assert_true(checked > 0);
}

/* Every SIMD kernel against the scalar one: several k, n_act 1..9, odd row ranges; the
 * K-quant kernels to the bit, the others within float reassociation. */
static void test_simd_vs_scalar(void **state) {
    (void)state;
    int compared = 0;
    for (int isa = ISA_AVX2; isa <= ISA_AVX512; isa++) {
        for (size_t t = 0; t < N_TYPES; t++) {
            const vecdot_kernel *kn = vecdot_get_isa(all_types[t], (vecdot_isa)isa);
            if (!kn) continue; /* not built or CPU lacks it */
            assert_int_equal(kn->isa, isa);
            const vecdot_kernel *ref = vecdot_get_isa(all_types[t], ISA_SCALAR);
            assert_int_equal(kn->act_type, ref->act_type);
            for (int ki = 0; ki < 8; ki++) {
                for (int64_t na = 1; na <= 9; na++) {
                    problem p;
                    problem_make(&p, all_types[t], ks_for(all_types[t], ki), 11, na,
                                 1000 + t * 100 + ki * 10 + (uint64_t)na);
                    const int64_t r0 = na % 3, r1 = p.n_rows - (na % 2);
                    float *o = run(kn, &p, r0, r1, na);
                    float *e = run(ref, &p, r0, r1, na);
                    for (int64_t j = 0; j < na; j++)
                        for (int64_t r = 0; r < p.n_rows; r++) {
                            const int64_t i = j * p.n_rows + r;
                            if (r < r0 || r >= r1) { /* outside the range: untouched */
                                assert_true(isnan(o[i]));
                                continue;
                            }
                            double err = fabs((double)o[i] - (double)e[i]);
                            /* K-quants: the same float operations as the scalar reference */
                            const bool exact = dtype_block_elems(all_types[t]) == QUANT_QK_K;
                            if (exact ? memcmp(&o[i], &e[i], sizeof(float)) != 0
                                      : err > 2e-6 * p.mag[i] + 1e-30)
                                fail_msg("%s/%s k=%lld na=%lld r=%lld simd=%.9g ref=%.9g mag=%.3g",
                                         vecdot_isa_name(kn->isa), dtype_name(all_types[t]),
                                         (long long)p.k, (long long)na, (long long)r, o[i], e[i],
                                         p.mag[i]);
                            compared++;
                        }
                    free(o);
                    free(e);
                    problem_free(&p);
                }
            }
        }
    }
    print_message("compared %d SIMD outputs with the scalar reference\n", compared);
    if (vecdot_best_isa() > ISA_SCALAR) assert_true(compared > 0);
}

/* The K-quant definition, from the outside: per super-block the integer sums sumi (scales x
 * levels x activation levels) and summ (mins x activation sums), read off the dequantizer on a
 * copy of the block with d = 1, dmin = 0 (every value sc * q, exact) and with d = 0, dmin = 1
 * (every value -m), then c = fmaf(sumi, da * dw, c) and c = fmaf(summ, -(da * dmin), c) in
 * block order: what llama.cpp's AMX / VNNI kernels compute. Every ISA level, to the bit; a
 * plain float sum of the per-block terms differs on these rows, so the order is pinned. */
static void test_k_quant_definition(void **state) {
    (void)state;
    static const uint32_t types[] = {DT_Q4_K, DT_Q5_K, DT_Q6_K};
    const uint16_t one = 0x3c00, zero = 0; /* fp16 1.0 and 0.0 */
    int order_matters = 0;
    for (size_t t = 0; t < 3; t++) {
        problem p;
        problem_make(&p, types[t], 2048, 6, 5, 4242 + t);
        const size_t wb = dtype_block_bytes(types[t]);
        const int64_t nb = p.k / QUANT_QK_K;
        float want[6 * 5];
        for (int64_t r = 0; r < p.n_rows; r++)
            for (int64_t j = 0; j < p.n_act; j++) {
                const quant_block_q8_k *ab = (const void *)(p.A + j * p.a_stride);
                float c = 0, plain = 0;
                for (int64_t b = 0; b < nb; b++) {
                    uint8_t blk[256];
                    float v[QUANT_QK_K];
                    const uint8_t *wblk = p.W + r * p.w_stride + (size_t)b * wb;
                    /* d (and dmin) sit at the start of Q4_K / Q5_K blocks, at the end of Q6_K */
                    const size_t d_off = types[t] == DT_Q6_K ? wb - 2 : 0;
                    uint16_t dw, dm = 0;
                    memcpy(&dw, wblk + d_off, 2);
                    if (types[t] != DT_Q6_K) memcpy(&dm, wblk + 2, 2);
                    long long sumi = 0, summ = 0;
                    memcpy(blk, wblk, wb);
                    memcpy(blk + d_off, &one, 2);
                    if (types[t] != DT_Q6_K) memcpy(blk + 2, &zero, 2);
                    assert_int_equal(quant_dequantize_row(types[t], blk, v, QUANT_QK_K), 0);
                    for (int i = 0; i < QUANT_QK_K; i++) sumi += (long long)v[i] * ab[b].qs[i];
                    if (types[t] != DT_Q6_K) {
                        memcpy(blk, &zero, 2);
                        memcpy(blk + 2, &one, 2);
                        assert_int_equal(quant_dequantize_row(types[t], blk, v, QUANT_QK_K), 0);
                        for (int i = 0; i < QUANT_QK_K; i++) summ -= (long long)v[i] * ab[b].qs[i];
                    }
                    const float da = ab[b].d;
                    c = fmaf((float)sumi, da * half_to_f32(dw), c);
                    c = fmaf((float)summ, -(da * half_to_f32(dm)), c);
                    plain += (float)sumi * (da * half_to_f32(dw)) - (float)summ * (da * half_to_f32(dm));
                }
                want[j * p.n_rows + r] = c;
                order_matters += memcmp(&c, &plain, sizeof c) != 0;
            }
        for (int isa = ISA_SCALAR; isa <= ISA_AVX512; isa++) {
            const vecdot_kernel *kn = vecdot_get_isa(types[t], (vecdot_isa)isa);
            if (!kn) continue;
            for (int64_t na = 1; na <= p.n_act; na += p.n_act - 1) { /* 1 row, and a group + 1 */
                float *o = run(kn, &p, 0, p.n_rows, na);
                for (int64_t i = 0; i < na * p.n_rows; i++)
                    if (memcmp(&o[i], &want[i], sizeof(float)) != 0)
                        fail_msg("%s/%s na=%lld out[%lld]=%a, definition %a",
                                 vecdot_isa_name(kn->isa), dtype_name(types[t]), (long long)na,
                                 (long long)i, o[i], want[i]);
                free(o);
            }
        }
        problem_free(&p);
    }
    assert_true(order_matters > 0);
}

/* n_act = 7 in one call vs one activation row per call, and a different row split: equal bit
 * for bit, for every kernel at every ISA level. */
static void test_batch_invariance(void **state) {
    (void)state;
    for (int isa = ISA_SCALAR; isa <= ISA_AVX512; isa++) {
        for (size_t t = 0; t < N_TYPES; t++) {
            const vecdot_kernel *kn = vecdot_get_isa(all_types[t], (vecdot_isa)isa);
            if (!kn) continue;
            problem p;
            problem_make(&p, all_types[t], ks_for(all_types[t], 4), 9, 7, 77 + t);
            float *all = run(kn, &p, 0, p.n_rows, 7);
            float *one = malloc((size_t)(p.n_rows * 7) * sizeof(float));
            for (int64_t j = 0; j < 7; j++) /* one activation row at a time, rows in 3 parts */
                for (int64_t part = 0; part < 3; part++) {
                    int64_t r0 = part * 3, r1 = part == 2 ? p.n_rows : r0 + 3;
                    kn->matmul(p.k, p.W, p.w_stride, r0, r1, p.A + j * p.a_stride, p.a_stride, 1,
                               one + j * p.n_rows, p.n_rows);
                }
            if (memcmp(all, one, (size_t)(p.n_rows * 7) * sizeof(float)) != 0)
                fail_msg("%s/%s: result depends on n_act or row split",
                         vecdot_isa_name(kn->isa), dtype_name(all_types[t]));
            free(all);
            free(one);
            problem_free(&p);
        }
    }
}

/* The 32-block kernels convert activation scales once per call into a fixed stack buffer:
 * many activation rows are processed in chunks, and very long rows (more blocks than the
 * buffer) convert in the loop. Both must agree with the scalar kernel and be batch invariant. */
static void test_scale_buffer_paths(void **state) {
    (void)state;
    static const uint32_t types[] = {DT_Q8_0, DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1};
    static const struct { int64_t k, n_act; } cases[] = {{2048, 70}, {32 * 4100, 3}};
    for (int isa = ISA_AVX2; isa <= ISA_AVX512; isa++)
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
            for (size_t c = 0; c < 2; c++) {
                const vecdot_kernel *kn = vecdot_get_isa(types[t], (vecdot_isa)isa);
                if (!kn) continue;
                problem p;
                problem_make(&p, types[t], cases[c].k, 3, cases[c].n_act, 500 + t * 7 + c);
                float *o = run(kn, &p, 0, p.n_rows, p.n_act);
                float *e = run(vecdot_get_isa(types[t], ISA_SCALAR), &p, 0, p.n_rows, p.n_act);
                float *one = malloc((size_t)(p.n_rows * p.n_act) * sizeof(float));
                for (int64_t j = 0; j < p.n_act; j++)
                    kn->matmul(p.k, p.W, p.w_stride, 0, p.n_rows, p.A + j * p.a_stride,
                               p.a_stride, 1, one + j * p.n_rows, p.n_rows);
                for (int64_t i = 0; i < p.n_rows * p.n_act; i++) {
                    if (fabs((double)o[i] - (double)e[i]) > 2e-6 * p.mag[i] + 1e-30)
                        fail_msg("%s/%s k=%lld i=%lld %.9g vs %.9g", vecdot_isa_name(kn->isa),
                                 dtype_name(types[t]), (long long)p.k, (long long)i, o[i], e[i]);
                    if (memcmp(&o[i], &one[i], sizeof(float)) != 0)
                        fail_msg("%s/%s k=%lld: not batch invariant", vecdot_isa_name(kn->isa),
                                 dtype_name(types[t]), (long long)p.k);
                }
                free(o);
                free(e);
                free(one);
                problem_free(&p);
            }
}

static void test_dispatch(void **state) {
    (void)state;
    vecdot_isa best = vecdot_best_isa();
    for (size_t t = 0; t < N_TYPES; t++) {
        const vecdot_kernel *kn = vecdot_get(all_types[t]);
        assert_non_null(kn);
        assert_int_equal(kn->wtype, all_types[t]);
        assert_true(kn->isa <= best);
        assert_non_null(vecdot_get_isa(all_types[t], ISA_SCALAR));
    }
    assert_null(vecdot_get(DT_Q2_K));
    assert_null(vecdot_get(DT_COUNT + 5));
    assert_string_equal(vecdot_isa_name(ISA_AVX2), "avx2");
    /* Q8_0 activation rows: 2 blocks (68 bytes, rounded up to 80) + a trailer of 2 x 16 bytes */
    assert_int_equal(vecdot_act_row_bytes(DT_Q8_0, 64), 112);
    assert_int_equal(vecdot_act_row_bytes(DT_Q8_K, 256), 292);
    assert_int_equal(vecdot_act_row_bytes(DT_Q8_0, 33), 0);
}

/* A hand-computed case: Q8_0 weights all 1 (d = 1/127 * 127 = 1 after rounding) against an
 * activation of all 2 gives k * 2 exactly. */
static void test_known_answer(void **state) {
    (void)state;
    float w[64], a[64];
    for (int i = 0; i < 64; i++) w[i] = 1.0f, a[i] = 2.0f;
    quant_block_q8_0 wq[2], aq[2];
    quant_quantize_row_q8_0(w, wq, 64);
    quant_quantize_row_q8_0(a, aq, 64);
    assert_int_equal(wq[0].qs[5], 127);
    for (int isa = ISA_SCALAR; isa <= ISA_AVX512; isa++) {
        const vecdot_kernel *kn = vecdot_get_isa(DT_Q8_0, (vecdot_isa)isa);
        if (!kn) continue;
        float out = 0;
        kn->matmul(64, wq, sizeof wq, 0, 1, aq, sizeof aq, 1, &out, 1);
        /* d = fp16(1/127) and fp16(2/127): the product is within 1e-3 of 128 */
        assert_true(fabsf(out - 128.0f) < 0.1f);
    }
}

/* Q8_0 activation rows from vecdot_quantize_act (SIMD when available): the blocks are those
 * of the activation quantizer byte for byte (llama.cpp's x86 rounding: multiplier 127 / amax,
 * ties to even, unlike the weight quantizer's halves away from zero), the trailer holds each
 * block's scale and sum. */
static void test_act_q8_0(void **state) {
    (void)state;
    uint64_t seed = 5;
    for (int64_t k = 32; k <= 320; k += 96) {
        float x[320];
        for (int64_t i = 0; i < k; i++) x[i] = tu_randf(&seed) * 10.0f;
        x[0] = 127.0f; /* block 0: multiplier 1, so these land exactly on halves */
        x[1] = 2.5f, x[2] = -3.5f, x[3] = 0.5f, x[4] = -0.5f, x[5] = 126.5f;
        for (int i = 32; i < 64 && i < k; i++) x[i] = 0.0f; /* an all-zero block */
        const int64_t nb = k / 32;
        const size_t bytes = vecdot_act_row_bytes(DT_Q8_0, k);
        uint8_t *got = calloc(1, bytes + 2), *ref = calloc(1, bytes);
        quant_block_q8_0 w;
        vecdot_quantize_act(DT_Q8_0, x, got + 2, k); /* a row not 4-byte aligned */
        quant_quantize_row_q8_0_act(x, (quant_block_q8_0 *)ref, k);
        quant_quantize_row_q8_0(x, &w, 32);
        assert_memory_equal(got + 2, ref, (size_t)nb * sizeof(quant_block_q8_0));
        const quant_block_q8_0 *blk = (const quant_block_q8_0 *)ref;
        static const int8_t even[6] = {127, 2, -4, 0, 0, 126}, away[6] = {127, 3, -4, 1, -1, 127};
        for (int j = 0; j < 6; j++) {
            assert_int_equal(blk[0].qs[j], even[j]);
            assert_int_equal(w.qs[j], away[j]);
        }
        for (int64_t b = 0; b < nb; b++) {
            vecdot_act_sum e;
            memcpy(&e, got + 2 + vecdot_act_trailer_offset(nb) + (size_t)b * sizeof e, sizeof e);
            int32_t sum = 0;
            for (int i = 0; i < 32; i++) sum += blk[b].qs[i];
            assert_int_equal(e.s, sum);
            assert_int_equal(e.s_q4_0, -8 * sum);
            assert_int_equal(e.s_q8_0, -128 * sum);
            assert_true(e.d == half_to_f32(blk[b].d));
        }
        free(got);
        free(ref);
    }
}

/* The scalar and AVX-512 Q8_0 activation quantizers write the same bytes (blocks and trailer)
 * whatever the CPU picks, on blocks built to hit the rounding boundaries: exact halves with an
 * exact multiplier, values one ulp either side of (n + 0.5) / multiplier with an inexact one,
 * magnitudes from 2^-60 to 2^60, signed zeros, subnormals, all-zero and one-element blocks. */
static void test_act_q8_0_scalar_vs_simd(void **state) {
    (void)state;
    enum { NB = 600, K = NB * 32 };
    float *x = malloc(K * sizeof(float));
    uint64_t seed = 99;
    for (int b = 0; b < NB; b++) {
        float *v = x + b * 32;
        const int kind = b % 6;
        const float amax = ldexpf(1.0f + (tu_randf(&seed) + 1.0f) * 0.49f, (b % 121) - 60);
        const float id = 127.f / amax;
        for (int j = 0; j < 32; j++) {
            const float r = tu_randf(&seed); /* [-1, 1) */
            switch (kind) {
            case 0: v[j] = r * amax; break;
            case 1: /* exact multiplier 1: halves */
                v[j] = (float)((int)(r * 126.0f)) + (j % 2 ? 0.5f : -0.5f);
                break;
            case 2: { /* one ulp around a rounding boundary */
                const float t = ((float)(int)(r * 126.0f) + 0.5f) / id;
                v[j] = j % 3 == 0 ? t : nextafterf(t, j % 3 == 1 ? INFINITY : -INFINITY);
                break;
            }
            case 3: v[j] = j % 2 ? -0.0f : ldexpf(r, -140); break; /* subnormals, -0 */
            case 4: v[j] = 0.0f; break;
            default: v[j] = j == 7 ? -amax : 0.0f; break;
            }
        }
        if (kind == 1) v[31] = b % 2 ? 127.0f : -127.0f;
        if (kind == 2) v[5] = b % 2 ? amax : -amax;
    }
    const size_t bytes = vecdot_act_row_bytes(DT_Q8_0, K);
    uint8_t *a = calloc(1, bytes), *s = calloc(1, bytes), *ref = calloc(1, bytes);
    quant_quantize_row_q8_0_act(x, (quant_block_q8_0 *)ref, K);
    vecdot_scalar_quantize_q8_0(x, s, K);
    assert_memory_equal(s, ref, (size_t)NB * sizeof(quant_block_q8_0));
    vecdot_quantize_act(DT_Q8_0, x, a, K); /* whichever the CPU runs */
    assert_memory_equal(a, s, bytes);
    if (vecdot_best_isa() >= ISA_AVX512) {
        memset(a, 0x5A, bytes);
        vecdot_avx512_quantize_q8_0(x, a, K);
        for (int b = 0; b < NB; b++)
            if (memcmp(a + b * 34, s + b * 34, 34) != 0)
                fail_msg("block %d (kind %d): AVX-512 and scalar Q8_0 activations differ", b,
                         b % 6);
        assert_memory_equal(a, s, bytes);
    } else {
        print_message("no AVX-512: only the scalar quantizer checked\n");
    }
    free(x);
    free(a);
    free(s);
    free(ref);
}

/* ============================================================ packed layout ===== */

/* The packed matrix of a problem's weights (plain malloc: kernels must not assume alignment
 * beyond what the layout gives, so it is offset by 16 bytes from a 64-byte boundary). */
static uint8_t *pack_problem(const problem *p, uint8_t **base) {
    const size_t bytes = vecdot_packed_bytes(p->wtype, p->k, p->n_rows);
    assert_true(bytes > 0);
    *base = malloc(bytes + 80);
    uint8_t *P = (uint8_t *)(((uintptr_t)*base + 63) & ~(uintptr_t)63) + 16;
    memset(P, 0xA5, bytes); /* vecdot_pack must write every byte it owns */
    /* in two calls, as threads would: groups are independent */
    const int64_t mid = p->n_rows > VECDOT_PACK_ROWS ? VECDOT_PACK_ROWS : p->n_rows;
    vecdot_pack(p->wtype, p->k, p->W, p->w_stride, p->n_rows, 0, mid, P);
    vecdot_pack(p->wtype, p->k, p->W, p->w_stride, p->n_rows, mid, p->n_rows, P);
    return P;
}

static float *run_packed(const vecdot_kernel *kn, const problem *p, const uint8_t *P, int64_t r0,
                         int64_t r1, int64_t n_act) {
    float *out = malloc((size_t)(p->n_rows * p->n_act) * sizeof(float));
    for (int64_t i = 0; i < p->n_rows * p->n_act; i++) out[i] = NAN;
    kn->matmul_packed(p->k, P, vecdot_packed_group_bytes(p->wtype, p->k), r0, r1, p->A,
                      p->a_stride, n_act, out, p->n_rows);
    return out;
}

static void test_packed_sizes(void **state) {
    (void)state;
    assert_true(vecdot_packable(DT_Q8_0) && vecdot_packable(DT_Q4_0) && vecdot_packable(DT_Q4_K) &&
                vecdot_packable(DT_Q6_K));
    assert_true(vecdot_packable(DT_Q5_K));
    assert_false(vecdot_packable(DT_Q4_1) || vecdot_packable(DT_F16));
    /* Q8_0, k = 64: 2 block columns x (512 + 32) bytes */
    assert_int_equal(vecdot_packed_group_bytes(DT_Q8_0, 64), 1088);
    assert_int_equal(vecdot_packed_group_bytes(DT_Q4_0, 32), 320); /* 288 rounded to 64 */
    assert_int_equal(vecdot_packed_bytes(DT_Q8_0, 64, 17), 2 * 1088);
    assert_int_equal(vecdot_packed_group_bytes(DT_Q8_0, 33), 0);
    /* Q4_K: 2368 bytes per 256-value super-block and group; k must be whole super-blocks */
    assert_int_equal(vecdot_packed_group_bytes(DT_Q4_K, 512), 2 * VECDOT_Q4K_PACKED_BYTES);
    assert_int_equal(vecdot_packed_group_bytes(DT_Q4_K, 128), 0);
    assert_int_equal(vecdot_packed_group_bytes(DT_Q6_K, 512), 2 * VECDOT_Q6K_PACKED_BYTES);
    assert_int_equal(vecdot_packed_group_bytes(DT_Q6_K, 100), 0);
    assert_int_equal(vecdot_packed_group_bytes(DT_Q5_K, 256), VECDOT_Q5K_PACKED_BYTES);
    assert_int_equal(vecdot_packed_group_bytes(DT_Q4_1, 256), 0);
}

/* Every packed kernel against the scalar kernel on the file layout: row counts around the
 * group size, odd row ranges, n_act 1..35 (all tile shapes and their tails), outputs outside
 * the range untouched (K-quants: bit-identical to the scalar kernel, whose integer sums and
 * float operations they repeat); then bit-identical results for one activation row at a time and
 * rows split at odd places. */
static void test_packed_vs_scalar(void **state) {
    (void)state;
    static const uint32_t types[] = {DT_Q8_0, DT_Q4_0, DT_Q4_K, DT_Q5_K, DT_Q6_K};
    static const int64_t rows[] = {1, 5, 16, 17, 40};
    int compared = 0;
    for (int isa = ISA_SCALAR; isa <= ISA_AVX512; isa++)
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            const vecdot_kernel *kn = vecdot_get_isa(types[t], (vecdot_isa)isa);
            if (!kn || !kn->matmul_packed) continue;
            const vecdot_kernel *ref = vecdot_get_isa(types[t], ISA_SCALAR);
            for (int ki = 0; ki < 6; ki++)
                for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
                    const int64_t na = 1 + (ki * 7 + (int64_t)ri * 5) % 35;
                    problem p;
                    problem_make(&p, types[t], ks_for(types[t], ki), rows[ri], na,
                                 3000 + t * 100 + (uint64_t)ki * 10 + ri);
                    uint8_t *base, *P = pack_problem(&p, &base);
                    const int64_t r0 = rows[ri] > 3 ? 3 : 0;
                    const int64_t r1 = rows[ri] > 6 ? rows[ri] - 2 : rows[ri];
                    float *o = run_packed(kn, &p, P, r0, r1, na);
                    float *e = run(ref, &p, r0, r1, na);
                    for (int64_t j = 0; j < na; j++)
                        for (int64_t r = 0; r < p.n_rows; r++) {
                            const int64_t i = j * p.n_rows + r;
                            if (r < r0 || r >= r1) {
                                assert_true(isnan(o[i]));
                                continue;
                            }
                            const bool exact = dtype_block_elems(types[t]) == QUANT_QK_K;
                            if (exact ? memcmp(&o[i], &e[i], sizeof(float)) != 0
                                      : fabs((double)o[i] - (double)e[i]) > 2e-6 * p.mag[i] + 1e-30)
                                fail_msg("packed %s/%s k=%lld rows=%lld na=%lld r=%lld: %.9g vs "
                                         "%.9g", vecdot_isa_name(kn->isa), dtype_name(types[t]),
                                         (long long)p.k, (long long)p.n_rows, (long long)na,
                                         (long long)r, o[i], e[i]);
                            compared++;
                        }
                    /* batch invariance: one activation row per call, rows split at 5 and 21 */
                    float *one = malloc((size_t)(p.n_rows * na) * sizeof(float));
                    for (int64_t i = 0; i < p.n_rows * na; i++) one[i] = NAN;
                    const int64_t cut[] = {r0, r0 + 5 < r1 ? r0 + 5 : r1, 21 < r1 ? 21 : r1, r1};
                    for (int64_t j = 0; j < na; j++)
                        for (int c = 0; c < 3; c++)
                            if (cut[c] < cut[c + 1])
                                kn->matmul_packed(p.k, P, vecdot_packed_group_bytes(p.wtype, p.k),
                                                  cut[c], cut[c + 1], p.A + j * p.a_stride,
                                                  p.a_stride, 1, one + j * p.n_rows, p.n_rows);
                    for (int64_t i = 0; i < p.n_rows * na; i++)
                        if (memcmp(&o[i], &one[i], sizeof(float)) != 0 &&
                            !(isnan(o[i]) && isnan(one[i])))
                            fail_msg("packed %s/%s k=%lld: result depends on n_act or row split",
                                     vecdot_isa_name(kn->isa), dtype_name(types[t]),
                                     (long long)p.k);
                    free(one);
                    free(o);
                    free(e);
                    free(base);
                    problem_free(&p);
                }
        }
    print_message("compared %d packed outputs with the scalar reference\n", compared);
    if (vecdot_best_isa() >= ISA_AVX512) assert_true(compared > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_scalar_vs_exact),
        cmocka_unit_test(test_simd_vs_scalar),
        cmocka_unit_test(test_k_quant_definition),
        cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_scale_buffer_paths),
        cmocka_unit_test(test_act_q8_0),
        cmocka_unit_test(test_act_q8_0_scalar_vs_simd),
        cmocka_unit_test(test_packed_sizes),
        cmocka_unit_test(test_packed_vs_scalar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
