/*
 * tensor/vecdot — see vecdot.h. Run-time ISA dispatch and the scalar reference kernels.
 *
 * The scalar kernels define what every SIMD kernel computes: per weight block an exact integer
 * dot product of the quantized values with the 8-bit activations, scaled by the product of the
 * two block scales and summed in float. SIMD kernels compute the same integer sums and only
 * reassociate the float additions.
 */
#include "tensor/vecdot.h"

#include <pthread.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/half.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"
#include "tensor/vecdot_impl.h"

/* ============================================================ scalar dot products ===== */

/* Each returns dot(weight row, activation row) over k elements. */

static float dot_f32(const void *w, const void *a, int64_t k) {
    const float *x = w, *y = a;
    float s = 0;
    for (int64_t i = 0; i < k; i++) s += x[i] * y[i];
    return s;
}

static float dot_f16(const void *w, const void *a, int64_t k) {
    const uint16_t *x = w;
    const float *y = a;
    float s = 0;
    for (int64_t i = 0; i < k; i++) s += half_to_f32(x[i]) * y[i];
    return s;
}

static float dot_bf16(const void *w, const void *a, int64_t k) {
    const uint16_t *x = w;
    const float *y = a;
    float s = 0;
    for (int64_t i = 0; i < k; i++) s += bf16_to_f32(x[i]) * y[i];
    return s;
}

static float dot_q8_0(const void *w, const void *a, int64_t k) {
    const quant_block_q8_0 *x = w, *y = a;
    float s = 0;
    for (int64_t b = 0; b < k / QUANT_QK; b++) {
        int sum = 0;
        for (int j = 0; j < QUANT_QK; j++) sum += x[b].qs[j] * y[b].qs[j];
        s += half_to_f32(x[b].d) * half_to_f32(y[b].d) * (float)sum;
    }
    return s;
}

static float dot_q4_0(const void *w, const void *a, int64_t k) {
    const quant_block_q4_0 *x = w;
    const quant_block_q8_0 *y = a;
    float s = 0;
    for (int64_t b = 0; b < k / QUANT_QK; b++) {
        int sum = 0;
        for (int j = 0; j < 16; j++)
            sum += ((x[b].qs[j] & 0xF) - 8) * y[b].qs[j] + ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + 16];
        s += half_to_f32(x[b].d) * half_to_f32(y[b].d) * (float)sum;
    }
    return s;
}

/* Q4_1 / Q5_1 against Q8_1 activations: sum (dw*q + m) * da*a  =  dw*da * sum(q*a) + m * s,
 * where s is the activation block's stored fp16 da * sum(a). Using the stored s (rather than
 * recomputing da * sum(a) in float) is what llama.cpp does; see quant_quantize_row_q8_1. */
static float dot_q4_1(const void *w, const void *a, int64_t k) {
    const quant_block_q4_1 *x = w;
    const quant_block_q8_1 *y = a;
    float s = 0;
    for (int64_t b = 0; b < k / QUANT_QK; b++) {
        int sum = 0;
        for (int j = 0; j < 16; j++)
            sum += (x[b].qs[j] & 0xF) * y[b].qs[j] + (x[b].qs[j] >> 4) * y[b].qs[j + 16];
        s += half_to_f32(x[b].d) * half_to_f32(y[b].d) * (float)sum +
             half_to_f32(x[b].m) * half_to_f32(y[b].s);
    }
    return s;
}

static inline uint32_t qh32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static float dot_q5_0(const void *w, const void *a, int64_t k) {
    const quant_block_q5_0 *x = w;
    const quant_block_q8_0 *y = a;
    float s = 0;
    for (int64_t b = 0; b < k / QUANT_QK; b++) {
        const uint32_t qh = qh32(x[b].qh);
        int sum = 0;
        for (int j = 0; j < 16; j++) {
            int lo = ((x[b].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4) - 16;
            int hi = ((x[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - 16;
            sum += lo * y[b].qs[j] + hi * y[b].qs[j + 16];
        }
        s += half_to_f32(x[b].d) * half_to_f32(y[b].d) * (float)sum;
    }
    return s;
}

static float dot_q5_1(const void *w, const void *a, int64_t k) {
    const quant_block_q5_1 *x = w;
    const quant_block_q8_1 *y = a;
    float s = 0;
    for (int64_t b = 0; b < k / QUANT_QK; b++) {
        const uint32_t qh = qh32(x[b].qh);
        int sum = 0;
        for (int j = 0; j < 16; j++) {
            int lo = (x[b].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int hi = (x[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            sum += lo * y[b].qs[j] + hi * y[b].qs[j + 16];
        }
        s += half_to_f32(x[b].d) * half_to_f32(y[b].d) * (float)sum +
             half_to_f32(x[b].m) * half_to_f32(y[b].s);
    }
    return s;
}

/*
 * K-quants: per super-block the exact integers sumi = sum_j sc_j * sum(q*a) (and for Q4_K / Q5_K
 * summ = sum_j m_j * sum(a), from bsums), then one float per output in block order:
 * s = fmaf((float)sumi, da * dw, s), then s = fmaf((float)summ, -(da * dmin), s). That is the
 * arithmetic of llama.cpp's AMX / AVX-512 VNNI K-quant kernels (its default for these types on
 * CPUs with AMX: the weights are repacked into its "AMX" buffer, and its one-row and tile paths
 * do the same two FMAs per block, so they agree with each other). Every SIMD version gives these
 * bits.
 */
static float dot_q4_k(const void *w, const void *a, int64_t k) {
    const quant_block_q4_k *x = w;
    const quant_block_q8_k *y = a;
    float s = 0;
    for (int64_t b = 0; b < k / QUANT_QK_K; b++) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            quant_k4_scale_min(j, x[b].scales, &sc, &m);
            const uint8_t *q = x[b].qs + 32 * (j / 2);
            const int8_t *qa = y[b].qs + 32 * j;
            const int shift = 4 * (j & 1);
            int t = 0;
            for (int l = 0; l < 32; l++) t += ((q[l] >> shift) & 0xF) * qa[l];
            sumi += sc * t;
            summ += m * (y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);
        }
        s = fmaf((float)sumi, y[b].d * half_to_f32(x[b].d), s);
        s = fmaf((float)summ, -(y[b].d * half_to_f32(x[b].dmin)), s);
    }
    return s;
}

static float dot_q5_k(const void *w, const void *a, int64_t k) {
    const quant_block_q5_k *x = w;
    const quant_block_q8_k *y = a;
    float s = 0;
    for (int64_t b = 0; b < k / QUANT_QK_K; b++) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            quant_k4_scale_min(j, x[b].scales, &sc, &m);
            const uint8_t *q = x[b].qs + 32 * (j / 2);
            const int8_t *qa = y[b].qs + 32 * j;
            const int shift = 4 * (j & 1);
            int t = 0;
            for (int l = 0; l < 32; l++)
                t += (((q[l] >> shift) & 0xF) | (((x[b].qh[l] >> j) & 1) << 4)) * qa[l];
            sumi += sc * t;
            summ += m * (y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);
        }
        s = fmaf((float)sumi, y[b].d * half_to_f32(x[b].d), s);
        s = fmaf((float)summ, -(y[b].d * half_to_f32(x[b].dmin)), s);
    }
    return s;
}

static float dot_q6_k(const void *w, const void *a, int64_t k) {
    const quant_block_q6_k *x = w;
    const quant_block_q8_k *y = a;
    float s = 0;
    for (int64_t b = 0; b < k / QUANT_QK_K; b++) {
        int sumi = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[b].ql + 64 * h, *qh = x[b].qh + 32 * h;
            const int8_t *qa = y[b].qs + 128 * h;
            const int8_t *sc = x[b].scales + 8 * h;
            for (int i = 0; i < 4; i++) {           /* element group 128h + 32i + l */
                const uint8_t *qlo = ql + 32 * (i & 1);
                const int shift = 4 * (i >> 1);
                int t0 = 0, t1 = 0;                 /* the two 16-element sub-blocks */
                for (int l = 0; l < 32; l++) {
                    int q = (((qlo[l] >> shift) & 0xF) | (((qh[l] >> (2 * i)) & 3) << 4)) - 32;
                    if (l < 16) t0 += q * qa[32 * i + l];
                    else t1 += q * qa[32 * i + l];
                }
                sumi += sc[2 * i] * t0 + sc[2 * i + 1] * t1;
            }
        }
        s = fmaf((float)sumi, y[b].d * half_to_f32(x[b].d), s);
    }
    return s;
}

/* ============================================================ scalar matmul ===== */

typedef float (*dot_fn)(const void *w, const void *a, int64_t k);

static inline void matmul_scalar(dot_fn dot, int64_t k, const void *W, size_t w_stride,
                                 int64_t r0, int64_t r1, const void *A, size_t a_stride,
                                 int64_t n_act, float *out, int64_t out_stride) {
    for (int64_t r = r0; r < r1; r++) {
        const void *w = (const uint8_t *)W + (size_t)r * w_stride;
        for (int64_t j = 0; j < n_act; j++)
            out[j * out_stride + r] = dot(w, (const uint8_t *)A + (size_t)j * a_stride, k);
    }
}

#define SCALAR_MATMUL(name)                                                                        \
    static void matmul_##name(int64_t k, const void *W, size_t ws, int64_t r0, int64_t r1,         \
                              const void *A, size_t as, int64_t n, float *out, int64_t os) {       \
        matmul_scalar(dot_##name, k, W, ws, r0, r1, A, as, n, out, os);                            \
    }
SCALAR_MATMUL(f32)
SCALAR_MATMUL(f16)
SCALAR_MATMUL(bf16)
SCALAR_MATMUL(q8_0)
SCALAR_MATMUL(q4_0)
SCALAR_MATMUL(q4_1)
SCALAR_MATMUL(q5_0)
SCALAR_MATMUL(q5_1)
SCALAR_MATMUL(q4_k)
SCALAR_MATMUL(q5_k)
SCALAR_MATMUL(q6_k)

static const vecdot_kernel scalar_kernels[] = {
    {DT_F32, DT_F32, ISA_SCALAR, matmul_f32, NULL},
    {DT_F16, DT_F32, ISA_SCALAR, matmul_f16, NULL},
    {DT_BF16, DT_F32, ISA_SCALAR, matmul_bf16, NULL},
    {DT_Q8_0, DT_Q8_0, ISA_SCALAR, matmul_q8_0, NULL},
    {DT_Q4_0, DT_Q8_0, ISA_SCALAR, matmul_q4_0, NULL},
    {DT_Q4_1, DT_Q8_1, ISA_SCALAR, matmul_q4_1, NULL},
    {DT_Q5_0, DT_Q8_0, ISA_SCALAR, matmul_q5_0, NULL},
    {DT_Q5_1, DT_Q8_1, ISA_SCALAR, matmul_q5_1, NULL},
    {DT_Q4_K, DT_Q8_K, ISA_SCALAR, matmul_q4_k, NULL},
    {DT_Q5_K, DT_Q8_K, ISA_SCALAR, matmul_q5_k, NULL},
    {DT_Q6_K, DT_Q8_K, ISA_SCALAR, matmul_q6_k, NULL},
    {0, 0, ISA_SCALAR, NULL, NULL},
};

/* ============================================================ dispatch ===== */

static const vecdot_kernel *tables[3] = {scalar_kernels, vecdot_avx2_kernels,
                                         vecdot_avx512_kernels};

static pthread_once_t isa_once = PTHREAD_ONCE_INIT;
static vecdot_isa cpu_isa = ISA_SCALAR;  /* what the CPU can run */
static vecdot_isa best_isa = ISA_SCALAR; /* capped by SHOAL_ISA */
/* best kernel per type at best_isa; filled once */
static const vecdot_kernel *best_kernel[DT_COUNT];

static const vecdot_kernel *find(const vecdot_kernel *t, uint32_t wtype) {
    for (; t->matmul; t++)
        if (t->wtype == wtype) return t;
    return NULL;
}

static void detect(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        cpu_isa = ISA_AVX2;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
            __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16"))
            cpu_isa = ISA_AVX512;
    }
    best_isa = cpu_isa;
    /* SHOAL_ISA caps the level for benchmarks and debugging; it can never raise it. */
    const char *env = getenv("SHOAL_ISA");
    if (env && *env) {
        vecdot_isa cap = best_isa;
        if (!strcmp(env, "scalar")) cap = ISA_SCALAR;
        else if (!strcmp(env, "avx2")) cap = ISA_AVX2;
        else if (!strcmp(env, "avx512")) cap = ISA_AVX512;
        if (cap < best_isa) best_isa = cap;
    }
    for (uint32_t t = 0; t < DT_COUNT; t++) {
        for (int isa = (int)best_isa; isa >= 0 && !best_kernel[t]; isa--)
            best_kernel[t] = find(tables[isa], t);
    }
}

const vecdot_kernel *vecdot_get(uint32_t wtype) {
    pthread_once(&isa_once, detect);
    return wtype < DT_COUNT ? best_kernel[wtype] : NULL;
}

const vecdot_kernel *vecdot_get_isa(uint32_t wtype, vecdot_isa isa) {
    pthread_once(&isa_once, detect);
    if ((int)isa < 0 || isa > cpu_isa) return NULL;
    return find(tables[isa], wtype);
}

vecdot_isa vecdot_best_isa(void) {
    pthread_once(&isa_once, detect);
    return best_isa;
}

const char *vecdot_isa_name(vecdot_isa isa) {
    switch (isa) {
    case ISA_SCALAR: return "scalar";
    case ISA_AVX2: return "avx2";
    case ISA_AVX512: return "avx512";
    }
    return "unknown";
}

size_t vecdot_act_row_bytes(uint32_t act_type, int64_t k) {
    uint64_t n = 0;
    if (k < 0 || !dtype_row_bytes(act_type, (uint64_t)k, &n)) return 0;
    if (act_type == DT_Q8_0) {
        const int64_t nb = k / QUANT_QK;
        return vecdot_act_trailer_offset(nb) + (size_t)nb * sizeof(vecdot_act_sum);
    }
    return (size_t)n;
}

void vecdot_scalar_quantize_q8_0(const float *x, void *y, int64_t k) {
    quant_quantize_row_q8_0_act(x, y, k);
    /* the trailer: the packed kernels need sum(a) per block (exact, shared by every weight row)
     * and save the fp16 conversion of the scale in their inner loop */
    const int64_t nb = k / QUANT_QK;
    const quant_block_q8_0 *a = y;
    uint8_t *t = (uint8_t *)y + vecdot_act_trailer_offset(nb);
    for (int64_t b = 0; b < nb; b++) {
        vecdot_act_sum e = {half_to_f32(a[b].d), 0, 0, 0};
        for (int i = 0; i < QUANT_QK; i++) e.s += a[b].qs[i];
        e.s_q4_0 = -8 * e.s;
        e.s_q8_0 = -128 * e.s;
        memcpy(t + (size_t)b * sizeof e, &e, sizeof e); /* rows need not be aligned */
    }
}

void vecdot_quantize_act(uint32_t act_type, const float *x, void *y, int64_t k) {
    /* Q8_0 activations round like llama.cpp's CPU path, not like its (weight) reference
     * quantizer (see quant_quantize_row_q8_0_act), and carry the trailer; the AVX-512 version
     * gives the same bytes. Q8_1 and Q8_K exist only as activations. */
    if (act_type == DT_Q8_0 && k >= 0 && k % QUANT_QK == 0) {
        if (vecdot_best_isa() >= ISA_AVX512) vecdot_avx512_quantize_q8_0(x, y, k);
        else vecdot_scalar_quantize_q8_0(x, y, k);
        return;
    }
    int rc = quant_quantize_row(act_type, x, y, k);
    SH_ASSERT(rc == 0 && "activation type and k must match a kernel's act_type");
}

/* ============================================================ packed layout ===== */

/*
 * Group of 16 rows, nb = k / 32 block columns. Values: for block column b, 4-byte chunk c of
 * the block (elements 4c..4c+3 in activation order) and row r, 4 bytes at
 *     Q8_0: b * 512 + c * 64 + r * 4         (c = 0..7; the int8 values + 128)
 *     Q4_0: b * 256 + c * 64 + r * 4         (c = 0..3; the block's bytes qs[4c..4c+3]: low
 *                                             nibbles are elements 4c.., high ones 16 + 4c..)
 * then at values_bytes + b * 32 + r * 2 the fp16 scale of row r's block b. A group starts at
 * a multiple of 64 bytes (relative to the matrix), so every 64-byte load is aligned when the
 * matrix is.
 */

static size_t packed_value_bytes(uint32_t wtype) {
    return wtype == DT_Q8_0 ? 512 : wtype == DT_Q4_0 ? 256 : 0;
}

/* Bytes per 256-value super-block of a packed K-quant group; 0 for other types. */
static size_t packed_k_bytes(uint32_t wtype) {
    return wtype == DT_Q4_K   ? VECDOT_Q4K_PACKED_BYTES
           : wtype == DT_Q5_K ? VECDOT_Q5K_PACKED_BYTES
           : wtype == DT_Q6_K ? VECDOT_Q6K_PACKED_BYTES
                              : 0;
}

int vecdot_packable(uint32_t wtype) {
    return packed_value_bytes(wtype) != 0 || packed_k_bytes(wtype) != 0;
}

size_t vecdot_packed_group_bytes(uint32_t wtype, int64_t k) {
    if (packed_k_bytes(wtype)) {
        if (k <= 0 || k % QUANT_QK_K) return 0;
        return (size_t)(k / QUANT_QK_K) * packed_k_bytes(wtype);
    }
    const size_t vb = packed_value_bytes(wtype);
    if (!vb || k <= 0 || k % QUANT_QK) return 0;
    const size_t nb = (size_t)(k / QUANT_QK);
    return (nb * (vb + 2 * VECDOT_PACK_ROWS) + 63) & ~(size_t)63;
}

size_t vecdot_packed_bytes(uint32_t wtype, int64_t k, int64_t n_rows) {
    const size_t gb = vecdot_packed_group_bytes(wtype, k);
    if (n_rows < 0) return 0;
    return gb * (size_t)((n_rows + VECDOT_PACK_ROWS - 1) / VECDOT_PACK_ROWS);
}

/* Row r of a packed Q4_K / Q5_K super-block at sb: the nibbles qs, then at tail the unpacked
 * 6-bit scales and mins of scales[12], d and dmin. */
static void pack_k4_row(uint8_t *sb, int r, const uint8_t *qs, const uint8_t *scales, uint16_t d,
                        uint16_t dmin, size_t tail) {
    for (int c = 0; c < 4; c++)
        for (int q = 0; q < 8; q++)
            memcpy(sb + (size_t)(c * 8 + q) * 64 + (size_t)r * 4, qs + 32 * c + 4 * q, 4);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        quant_k4_scale_min(j, scales, &sc, &m);
        sb[tail + j * 16 + r] = sc;
        sb[tail + 128 + (j / 2) * 32 + r * 2 + (j & 1)] = m;
    }
    memcpy(sb + tail + 256 + r * 2, &d, 2);
    memcpy(sb + tail + 288 + r * 2, &dmin, 2);
}

/* One group of Q4_K or Q5_K rows (VECDOT_Q4K_PACKED_BYTES, VECDOT_Q5K_PACKED_BYTES); rows past
 * n_rows stay zero. */
static void pack_k45(uint32_t wtype, int64_t k, const void *W, size_t w_stride, int64_t n_rows,
                     int64_t g0, uint8_t *g) {
    const int64_t nsb = k / QUANT_QK_K;
    for (int r = 0; r < VECDOT_PACK_ROWS; r++) {
        const int64_t row = g0 + r;
        if (row >= n_rows) continue;
        const uint8_t *wr = (const uint8_t *)W + (size_t)row * w_stride;
        for (int64_t b = 0; b < nsb; b++) {
            if (wtype == DT_Q4_K) {
                const quant_block_q4_k *w = (const quant_block_q4_k *)(const void *)wr + b;
                pack_k4_row(g + (size_t)b * VECDOT_Q4K_PACKED_BYTES, r, w->qs, w->scales, w->d,
                            w->dmin, 2048);
                continue;
            }
            const quant_block_q5_k *w = (const quant_block_q5_k *)(const void *)wr + b;
            uint8_t *sb = g + (size_t)b * VECDOT_Q5K_PACKED_BYTES;
            pack_k4_row(sb, r, w->qs, w->scales, w->d, w->dmin, 2560);
            /* fifth bits: value 64c + l has bit 2c of qh[l], value 64c + 32 + l bit 2c + 1 */
            for (int c = 0; c < 4; c++)
                for (int q = 0; q < 8; q++)
                    for (int i = 0; i < 4; i++) {
                        const int l = 4 * q + i;
                        const unsigned lo = (w->qh[l] >> (2 * c)) & 1;
                        const unsigned hi = (w->qh[l] >> (2 * c + 1)) & 1;
                        sb[2048 + (c * 2 + q / 4) * 64 + r * 4 + i] |=
                            (uint8_t)(lo << (q % 4) | hi << (4 + q % 4));
                    }
        }
    }
}

/* The unsigned 6 bits (q + 32) of the 256 values of a Q6_K block (layout in tensor/quant.h). */
static void q6_k_values(const quant_block_q6_k *w, uint8_t u[QUANT_QK_K]) {
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 4; i++)
            for (int l = 0; l < 32; l++) {
                const unsigned lo = (w->ql[64 * h + 32 * (i & 1) + l] >> (4 * (i >> 1))) & 0xF;
                u[128 * h + 32 * i + l] = (uint8_t)(lo | ((w->qh[32 * h + l] >> (2 * i)) & 3) << 4);
            }
}

/* One group of Q6_K rows (see VECDOT_Q6K_PACKED_BYTES); rows past n_rows stay zero. */
static void pack_q6_k(int64_t k, const void *W, size_t w_stride, int64_t n_rows, int64_t g0,
                      uint8_t *g) {
    const int64_t nsb = k / QUANT_QK_K;
    uint8_t u[QUANT_QK_K];
    for (int r = 0; r < VECDOT_PACK_ROWS; r++) {
        const int64_t row = g0 + r;
        if (row >= n_rows) continue;
        const quant_block_q6_k *w = (const void *)((const uint8_t *)W + (size_t)row * w_stride);
        for (int64_t b = 0; b < nsb; b++) {
            uint8_t *sb = g + (size_t)b * VECDOT_Q6K_PACKED_BYTES;
            q6_k_values(&w[b], u);
            for (int c = 0; c < 4; c++)
                for (int i = 0; i < 4; i++) {
                    const uint8_t *v = u + 64 * c + i;
                    for (int p = 0; p < 8; p++)
                        sb[(c * 8 + p) * 64 + r * 4 + i] =
                            (uint8_t)((v[4 * p] & 0xF) | (v[32 + 4 * p] & 0xF) << 4);
                    for (int t = 0; t < 4; t++)
                        sb[2048 + (c * 4 + t) * 64 + r * 4 + i] =
                            (uint8_t)(v[8 * t] >> 4 | (v[8 * t + 32] >> 4) << 2 |
                                      (v[8 * t + 4] >> 4) << 4 | (v[8 * t + 36] >> 4) << 6);
                }
            for (int s = 0; s < 16; s++)
                sb[3072 + 32 * (s / 2) + 2 * r + s % 2] = (uint8_t)w[b].scales[s];
            memcpy(sb + 3328 + r * 2, &w[b].d, 2);
        }
    }
}

void vecdot_pack(uint32_t wtype, int64_t k, const void *W, size_t w_stride, int64_t n_rows,
                 int64_t r0, int64_t r1, void *dst) {
    const size_t gb = vecdot_packed_group_bytes(wtype, k), vb = packed_value_bytes(wtype);
    SH_ASSERT(gb > 0 && (r0 % VECDOT_PACK_ROWS == 0 || r0 == r1) && r0 <= r1 && r1 <= n_rows);
    const int64_t nb = k / QUANT_QK;
    for (int64_t g0 = r0; g0 < r1; g0 += VECDOT_PACK_ROWS) {
        uint8_t *g = (uint8_t *)dst + (size_t)(g0 / VECDOT_PACK_ROWS) * gb;
        memset(g, 0, gb);
        if (wtype == DT_Q4_K || wtype == DT_Q5_K) {
            pack_k45(wtype, k, W, w_stride, n_rows, g0, g);
            continue;
        }
        if (wtype == DT_Q6_K) {
            pack_q6_k(k, W, w_stride, n_rows, g0, g);
            continue;
        }
        uint16_t *sc = (uint16_t *)(g + (size_t)nb * vb); /* 2-byte aligned: gb, vb are even */
        for (int r = 0; r < VECDOT_PACK_ROWS; r++) {
            const int64_t row = g0 + r;
            if (wtype == DT_Q8_0) {
                const uint8_t *src = (const uint8_t *)W + (size_t)row * w_stride;
                const quant_block_q8_0 *w = row < n_rows ? (const void *)src : NULL;
                for (int64_t b = 0; b < nb; b++) {
                    uint8_t *v = g + (size_t)b * vb + (size_t)r * 4;
                    for (int c = 0; c < 8; c++)
                        for (int i = 0; i < 4; i++)
                            v[c * 64 + i] = (uint8_t)((w ? (uint8_t)w[b].qs[4 * c + i] : 0) ^ 0x80);
                    sc[b * VECDOT_PACK_ROWS + r] = w ? w[b].d : 0;
                }
            } else {
                if (row >= n_rows) continue; /* zero values and scales */
                const quant_block_q4_0 *w =
                    (const void *)((const uint8_t *)W + (size_t)row * w_stride);
                for (int64_t b = 0; b < nb; b++) {
                    uint8_t *v = g + (size_t)b * vb + (size_t)r * 4;
                    for (int c = 0; c < 4; c++) memcpy(v + c * 64, w[b].qs + 4 * c, 4);
                    sc[b * VECDOT_PACK_ROWS + r] = w[b].d;
                }
            }
        }
    }
}
