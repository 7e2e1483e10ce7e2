/*
 * train/gemm — see gemm.h. Loop order per thread (its rows [i0, i1) of C): for each KC block of
 * k, for each NC block of columns, pack B's block (kc x nc, NR columns per panel), then for each
 * MC block of the thread's rows pack A's block (mc x kc, MR rows per panel) and run the
 * micro-kernel on every (MR, NR) tile.
 */
#include "train/gemm.h"

#include <math.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

#include "core/err.h"
#include "tensor/vecdot.h"

#define KC 256
#define MC 128
#define NC 1024

/* ============================================================ portable kernel ===== */

static void kernel_scalar(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                          int mr, int nr, int first) {
    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = first || i >= mr || j >= nr ? 0.0f : c[i * ldc + j];
    for (int64_t k = 0; k < kc; k++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) acc[i][j] = fmaf(ap[k * 4 + i], bp[k * 4 + j], acc[i][j]);
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) c[i * ldc + j] = acc[i][j];
}

static const gemm_kernel kernel_portable = {4, 4, kernel_scalar, "scalar"};

const gemm_kernel *gemm_get_kernel(void) {
    const vecdot_isa isa = vecdot_best_isa();
    if (isa >= ISA_AVX512) return &gemm_kernel_avx512;
    if (isa >= ISA_AVX2) return &gemm_kernel_avx2;
    return &kernel_portable;
}

/* ============================================================ packing ===== */

/* A rows [i0, i0 + mc), k [k0, k0 + kc) into panels of MR rows: panel p, step k, row r at
 * dst[p * kc * MR + k * MR + r]; rows past m are zero. */
static void pack_a(const gemm_args *g, int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr,
                   float *dst) {
    for (int64_t p = 0; p < mc; p += mr) {
        float *d = dst + (p / mr) * kc * mr;
        for (int r = 0; r < mr; r++) {
            const int64_t i = i0 + p + r;
            if (p + r >= mc) {
                for (int64_t k = 0; k < kc; k++) d[k * mr + r] = 0.0f;
                continue;
            }
            const float *src = g->a + i * g->a_rs + k0 * g->a_cs;
            if (g->a_cs == 1)
                for (int64_t k = 0; k < kc; k++) d[k * mr + r] = src[k];
            else
                for (int64_t k = 0; k < kc; k++) d[k * mr + r] = src[k * g->a_cs];
        }
    }
}

/* B k [k0, k0 + kc), columns [j0, j0 + nc) into panels of NR columns: panel p, step k, column
 * c at dst[p * kc * NR + k * NR + c]; columns past n are zero. */
static void pack_b(const gemm_args *g, int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr,
                   float *dst) {
    for (int64_t p = 0; p < nc; p += nr) {
        float *d = dst + (p / nr) * kc * nr;
        const int w = nc - p < nr ? (int)(nc - p) : nr;
        for (int64_t k = 0; k < kc; k++) {
            const float *src = g->b + (k0 + k) * g->b_rs + (j0 + p) * g->b_cs;
            float *o = d + k * nr;
            if (g->b_cs == 1) memcpy(o, src, (size_t)w * sizeof(float));
            else
                for (int c = 0; c < w; c++) o[c] = src[c * g->b_cs];
            for (int c = w; c < nr; c++) o[c] = 0.0f;
        }
    }
}

/* ============================================================ driver ===== */

typedef struct job {
    const gemm_args *g;
    const gemm_kernel *kn;
} job;

static void run_rows(const gemm_args *g, const gemm_kernel *kn, int64_t i0, int64_t i1) {
    if (i0 >= i1) return;
    const int mr = kn->mr, nr = kn->nr;
    float *ap = aligned_alloc(64, (size_t)(MC + mr) * KC * sizeof(float));
    float *bp = aligned_alloc(64, (size_t)(NC + nr) * KC * sizeof(float));
    SH_ASSERT(ap && bp);
    for (int64_t k0 = 0; k0 < g->k; k0 += KC) {
        const int64_t kc = g->k - k0 < KC ? g->k - k0 : KC;
        const int first = k0 == 0 && !g->beta;
        for (int64_t j0 = 0; j0 < g->n; j0 += NC) {
            const int64_t nc = g->n - j0 < NC ? g->n - j0 : NC;
            pack_b(g, k0, kc, j0, nc, nr, bp);
            for (int64_t ib = i0; ib < i1; ib += MC) {
                const int64_t mc = i1 - ib < MC ? i1 - ib : MC;
                pack_a(g, ib, mc, k0, kc, mr, ap);
                for (int64_t p = 0; p < mc; p += mr)
                    for (int64_t q = 0; q < nc; q += nr)
                        kn->fn(kc, ap + (p / mr) * kc * mr, bp + (q / nr) * kc * nr,
                               g->c + (ib + p) * g->ldc + j0 + q, g->ldc,
                               mc - p < mr ? (int)(mc - p) : mr, nc - q < nr ? (int)(nc - q) : nr,
                               first);
            }
        }
    }
    free(ap);
    free(bp);
}

static void thread_fn(void *ctx, int ith, int nth) {
    const job *j = ctx;
    const int64_t m = j->g->m, mr = j->kn->mr;
    const int64_t blocks = (m + mr - 1) / mr;
    int64_t i0 = blocks * ith / nth * mr, i1 = blocks * (ith + 1) / nth * mr;
    if (i0 > m) i0 = m;
    if (i1 > m) i1 = m;
    run_rows(j->g, j->kn, i0, i1);
}

static _Atomic uint64_t g_flops; /* 2 m n k of every product since the start */

uint64_t gemm_flops(void) { return atomic_load_explicit(&g_flops, memory_order_relaxed); }

void gemm(pool *p, const gemm_args *g) {
    if (g->m <= 0 || g->n <= 0) return;
    atomic_fetch_add_explicit(&g_flops, (uint64_t)(2 * g->m * g->n * (g->k > 0 ? g->k : 0)), memory_order_relaxed);
    if (g->k <= 0) {
        for (int64_t i = 0; !g->beta && i < g->m; i++) memset(g->c + i * g->ldc, 0, (size_t)g->n * sizeof(float));
        return;
    }
    job j = {g, gemm_get_kernel()};
    /* small products are not worth waking the other threads */
    if (!p || pool_threads(p) == 1 || g->m * g->n * g->k < (1 << 18)) thread_fn(&j, 0, 1);
    else pool_run(p, thread_fn, &j);
}

void gemm_nt(pool *p, int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c, int beta) {
    gemm_args g = {m, n, k, a, k, 1, b, 1, k, c, n, beta};
    gemm(p, &g);
}

void gemm_nn(pool *p, int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c, int beta) {
    gemm_args g = {m, n, k, a, k, 1, b, n, 1, c, n, beta};
    gemm(p, &g);
}

void gemm_tn(pool *p, int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c, int beta) {
    gemm_args g = {m, n, k, a, 1, m, b, n, 1, c, n, beta};
    gemm(p, &g);
}

void gemm_ref(const gemm_args *g) {
    for (int64_t i = 0; i < g->m; i++)
        for (int64_t j = 0; j < g->n; j++) {
            float acc = g->beta ? g->c[i * g->ldc + j] : 0.0f;
            for (int64_t k = 0; k < g->k; k++)
                acc = fmaf(g->a[i * g->a_rs + k * g->a_cs], g->b[k * g->b_rs + j * g->b_cs], acc);
            g->c[i * g->ldc + j] = acc;
        }
}
