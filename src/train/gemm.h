/*
 * train/gemm — single-precision matrix products for the trainer: C (+)= op(A) op(B), any
 * transposition given by strides, run on the trainer's threads.
 *
 *   C[i * ldc + j] = beta * C[i * ldc + j] + sum_k A(i, k) B(k, j)      i < m, j < n, k < kk
 *   A(i, k) = a[i * a_rs + k * a_cs]       B(k, j) = b[k * b_rs + j * b_cs]
 *
 * beta is 0 (overwrite) or 1 (accumulate, for gradients). The product is blocked the BLIS way:
 * panels of B and A are packed (KC = 256 deep) and a register-blocked micro-kernel (AVX-512:
 * 8 x 32, AVX2: 4 x 16, portable: 4 x 4) runs over them; rows of C are split between threads.
 *
 * Determinism: every element is one FMA chain over k in increasing order, starting from 0 (or
 * from C when beta = 1), whatever the ISA, the blocking and the number of threads, so results
 * are the same bits on every machine and thread count (the portable kernel calls fmaf).
 */
#ifndef SHOAL_TRAIN_GEMM_H
#define SHOAL_TRAIN_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "engine/pool.h"

typedef struct gemm_args {
    int64_t m, n, k;
    const float *a;
    int64_t a_rs, a_cs;   /* A(i, k) = a[i * a_rs + k * a_cs] */
    const float *b;
    int64_t b_rs, b_cs;   /* B(k, j) = b[k * b_rs + j * b_cs] */
    float *c;
    int64_t ldc;
    int beta;             /* 0: C = A B; 1: C += A B */
} gemm_args;

/* Runs the product on the pool's threads (p NULL: the calling thread alone). */
void gemm(pool *p, const gemm_args *g);

/* Common forms, row-major, leading dimension = row length:
 *   gemm_nt: C[m x n] (+)= A[m x k] B[n x k]^T     (y = x W^T: a linear layer)
 *   gemm_nn: C[m x n] (+)= A[m x k] B[k x n]       (dx = dy W)
 *   gemm_tn: C[m x n] (+)= A[k x m]^T B[k x n]     (dW = dy^T x) */
void gemm_nt(pool *p, int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c, int beta);
void gemm_nn(pool *p, int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c, int beta);
void gemm_tn(pool *p, int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c, int beta);

/* Floating-point operations (2 m n k per product) of every gemm() in this process so far, on
 * any thread: the trainer divides it by time for its matmul GFLOP/s. */
uint64_t gemm_flops(void);

/* The straightforward triple loop with the same FMA chains (tests compare against it). */
void gemm_ref(const gemm_args *g);

/* Micro-kernel interface (gemm_avx512.c, gemm_avx2.c): C tile of mr x nr at c (row stride ldc)
 * gets the chain over kc packed steps: ap holds MR floats per step, bp NR floats per step; only
 * the first mr rows and nr columns are read and written. first: start from 0 (beta 0 and the
 * first k block), else from C. */
typedef void (*gemm_kernel_fn)(int64_t kc, const float *ap, const float *bp, float *c,
                               int64_t ldc, int mr, int nr, int first);
typedef struct gemm_kernel {
    int mr, nr;
    gemm_kernel_fn fn;
    const char *name;
} gemm_kernel;

extern const gemm_kernel gemm_kernel_avx512, gemm_kernel_avx2;

/* The kernel gemm() uses on this CPU (vecdot's ISA level, SHOAL_ISA capped). */
const gemm_kernel *gemm_get_kernel(void);

#endif
