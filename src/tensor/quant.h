/*
 * tensor/quant — packed block layouts of the GGUF weight types and their scalar reference
 * quantizers / dequantizers.
 *
 * Each quantized type stores a row as a sequence of fixed-size blocks (32 or 256 elements).
 * The structs below are the exact on-disk bytes (little-endian; fp16 scales kept as raw
 * uint16_t bit patterns), checked with _Static_assert against the GGUF geometry.
 *
 * The quantizers reproduce llama.cpp's reference (no importance matrix) algorithms: for Q8_0,
 * Q4_0, Q4_1, Q5_0, Q5_1 and Q6_K the output is byte-identical to llama.cpp's; Q4_K and Q5_K
 * use the same search (weighted min/scale fit per 32-element sub-block, 6-bit scales), so files
 * are interchangeable. These functions are reference code: simple, allocation-free, and used
 * by `shoal quantize`, by the activation conversion of the kernels and by the tests.
 *
 * Element order inside the blocks (the part that matters to kernels):
 *   Q4_0/Q4_1: qs[j] low nibble = element j, high nibble = element j+16 (j < 16).
 *   Q5_0/Q5_1: as Q4, plus bit j of the little-endian u32 qh = 5th bit of element j.
 *   Q8_0:      qs[j] = element j.
 *   Q4_K:      for chunk c < 4: qs[32c+l] low nibble = element 64c+l, high = 64c+32+l;
 *              sub-block s (32 elements) has a 6-bit scale and min packed in scales[12]
 *              (quant_k4_scale_min()); x = d*sc*q - dmin*m.
 *   Q5_K:      as Q4_K; bit 2c of qh[l] is the 5th bit of element 64c+l, bit 2c+1 that of
 *              element 64c+32+l.
 *   Q6_K:      per half h < 2 and l < 32: ql[64h+l] holds elements 128h+l (low nibble) and
 *              128h+64+l (high), ql[64h+32+l] elements 128h+32+l and 128h+96+l; bits 2i, 2i+1
 *              of qh[32h+l] are the top two bits of element 128h+32i+l; int8 scales[s] per 16
 *              elements; x = d*sc*(q-32).
 *   Q8_1:      activation blocks for the Q4_1 / Q5_1 kernels: qs[j] = element j, fp16 d, and
 *              fp16 s = d * sum(qs) (the block sum the weight minimum multiplies).
 *   Q8_K:      activation blocks for the K-quant kernels: float d, 256 int8, and bsums[i] =
 *              sum of qs[16i..16i+15].
 */
#ifndef SHOAL_TENSOR_QUANT_H
#define SHOAL_TENSOR_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#define QUANT_QK   32  /* elements per block of the legacy types */
#define QUANT_QK_K 256 /* elements per super-block of the K-quants */

/* ============================================================ block layouts ===== */

typedef struct {
    uint16_t d;                  /* fp16 scale */
    uint8_t qs[QUANT_QK / 2];    /* x = d * (q - 8) */
} quant_block_q4_0;

typedef struct {
    uint16_t d, m;               /* fp16 scale and minimum */
    uint8_t qs[QUANT_QK / 2];    /* x = d * q + m */
} quant_block_q4_1;

typedef struct {
    uint16_t d;
    uint8_t qh[4];               /* 5th bits, a little-endian u32 */
    uint8_t qs[QUANT_QK / 2];    /* x = d * (q - 16) */
} quant_block_q5_0;

typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[QUANT_QK / 2];    /* x = d * q + m */
} quant_block_q5_1;

typedef struct {
    uint16_t d;
    int8_t qs[QUANT_QK];         /* x = d * q */
} quant_block_q8_0;

/* Activations only (what llama.cpp pairs with Q4_1 / Q5_1 weights). s is rounded to fp16
 * from the unrounded scale times the integer sum, so it is not exactly fp16(d) * sum(qs). */
typedef struct {
    uint16_t d, s;               /* fp16 scale and fp16(scale * sum(qs)) */
    int8_t qs[QUANT_QK];         /* x = d * q */
} quant_block_q8_1;

typedef struct {
    uint16_t d, dmin;            /* super-block scales of the 6-bit scales and mins */
    uint8_t scales[12];          /* 8 x (6-bit scale, 6-bit min) */
    uint8_t qs[QUANT_QK_K / 2];
} quant_block_q4_k;

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[QUANT_QK_K / 8];
    uint8_t qs[QUANT_QK_K / 2];
} quant_block_q5_k;

typedef struct {
    uint8_t ql[QUANT_QK_K / 2];  /* low 4 bits */
    uint8_t qh[QUANT_QK_K / 4];  /* high 2 bits */
    int8_t scales[QUANT_QK_K / 16];
    uint16_t d;
} quant_block_q6_k;

typedef struct {
    float d;
    int8_t qs[QUANT_QK_K];
    int16_t bsums[QUANT_QK_K / 16];
} quant_block_q8_k;

_Static_assert(sizeof(quant_block_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(quant_block_q4_1) == 20, "Q4_1 block is 20 bytes");
_Static_assert(sizeof(quant_block_q5_0) == 22, "Q5_0 block is 22 bytes");
_Static_assert(sizeof(quant_block_q5_1) == 24, "Q5_1 block is 24 bytes");
_Static_assert(sizeof(quant_block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(quant_block_q8_1) == 36, "Q8_1 block is 36 bytes");
_Static_assert(sizeof(quant_block_q4_k) == 144, "Q4_K block is 144 bytes");
_Static_assert(sizeof(quant_block_q5_k) == 176, "Q5_K block is 176 bytes");
_Static_assert(sizeof(quant_block_q6_k) == 210, "Q6_K block is 210 bytes");
_Static_assert(sizeof(quant_block_q8_k) == 292, "Q8_K block is 292 bytes");

/* ============================================================ generic entry points ===== */

/* True when quant_quantize_row / quant_dequantize_row handle type (F32, F16, BF16, Q4_0,
 * Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q4_K, Q5_K, Q6_K, Q8_K). */
bool quant_supported(uint32_t type);

/* Converts k floats to a row of type `type` (k a multiple of the type's block size; y holds
 * dtype_row_bytes(type, k) bytes). Returns -1 when the type or k is not supported. */
int quant_quantize_row(uint32_t type, const float *x, void *y, int64_t k);

/* Converts a row of k elements of type `type` back to floats; -1 when unsupported. */
int quant_dequantize_row(uint32_t type, const void *x, float *y, int64_t k);

/* ============================================================ per-type reference code ===== */

/* Each quantize_row takes k floats (k a multiple of the block size) and writes k/QK blocks;
 * each dequantize_row is its inverse up to the quantization error. */
void quant_quantize_row_f16(const float *x, uint16_t *y, int64_t k);
void quant_dequantize_row_f16(const uint16_t *x, float *y, int64_t k);
void quant_quantize_row_bf16(const float *x, uint16_t *y, int64_t k);
void quant_dequantize_row_bf16(const uint16_t *x, float *y, int64_t k);

void quant_quantize_row_q4_0(const float *x, quant_block_q4_0 *y, int64_t k);
void quant_dequantize_row_q4_0(const quant_block_q4_0 *x, float *y, int64_t k);
void quant_quantize_row_q4_1(const float *x, quant_block_q4_1 *y, int64_t k);
void quant_dequantize_row_q4_1(const quant_block_q4_1 *x, float *y, int64_t k);
void quant_quantize_row_q5_0(const float *x, quant_block_q5_0 *y, int64_t k);
void quant_dequantize_row_q5_0(const quant_block_q5_0 *x, float *y, int64_t k);
void quant_quantize_row_q5_1(const float *x, quant_block_q5_1 *y, int64_t k);
void quant_dequantize_row_q5_1(const quant_block_q5_1 *x, float *y, int64_t k);
void quant_quantize_row_q8_0(const float *x, quant_block_q8_0 *y, int64_t k);
void quant_dequantize_row_q8_0(const quant_block_q8_0 *x, float *y, int64_t k);
/* Q8_0 for activations, as llama.cpp's x86 CPU path converts them (scale 127 / amax, ties to
 * even); the same layout as Q8_0, so it dequantizes with quant_dequantize_row_q8_0. */
void quant_quantize_row_q8_0_act(const float *x, quant_block_q8_0 *y, int64_t k);
void quant_quantize_row_q4_k(const float *x, quant_block_q4_k *y, int64_t k);
void quant_dequantize_row_q4_k(const quant_block_q4_k *x, float *y, int64_t k);
void quant_quantize_row_q5_k(const float *x, quant_block_q5_k *y, int64_t k);
void quant_dequantize_row_q5_k(const quant_block_q5_k *x, float *y, int64_t k);
void quant_quantize_row_q6_k(const float *x, quant_block_q6_k *y, int64_t k);
void quant_dequantize_row_q6_k(const quant_block_q6_k *x, float *y, int64_t k);
/* Q8_1 is an activation format. The quantizer follows llama.cpp's x86 CPU path (the one its
 * kernels see), not its scalar reference: scale 127 / amax, ties rounded to even, and
 * s = fp16((amax / 127) * sum(qs)). Dequantizing gives d * q (s carries no extra values). */
void quant_quantize_row_q8_1(const float *x, quant_block_q8_1 *y, int64_t k);
void quant_dequantize_row_q8_1(const quant_block_q8_1 *x, float *y, int64_t k);
/* Q8_K is an activation format: symmetric 8-bit with one float scale per 256 elements. */
void quant_quantize_row_q8_k(const float *x, quant_block_q8_k *y, int64_t k);
void quant_dequantize_row_q8_k(const quant_block_q8_k *x, float *y, int64_t k);

/* The 6-bit scale and min of sub-block j (< 8) of a Q4_K / Q5_K block. */
static inline void quant_k4_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

#endif
