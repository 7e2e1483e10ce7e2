/*
 * bench_vecdot — throughput of the vecdot kernels per weight type and ISA level.
 *
 *   matvec (n_act = 1):  GB/s of weight bytes streamed, for a matrix far larger than L2 (and
 *                        L3), with 1 and 2 threads (rows split in halves);
 *   matmul (n_act = 32): GFLOP/s (2 * k * rows * n_act per call), one thread.
 *
 * Usage: bench_vecdot [TYPE...]   (default: all types); SHOAL_ISA does not apply here, every
 * level the CPU supports is measured. Not a test: numbers depend on the machine and its load.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tensor/dtype.h"
#include "tensor/quant.h"
#include "tensor/vecdot.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x1234567;
static float randf(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

typedef struct {
    const vecdot_kernel *kn;
    int64_t k, r0, r1, n_act;
    const uint8_t *W, *A;
    size_t ws, as;
    float *out;
    int64_t os;
} call;

static void *run_call(void *p) {
    call *c = p;
    c->kn->matmul(c->k, c->W, c->ws, c->r0, c->r1, c->A, c->as, c->n_act, c->out, c->os);
    return NULL;
}

/* Best time of `reps` runs of the matmul over all rows, split across n_thr threads. */
static double time_matmul(const vecdot_kernel *kn, int64_t k, int64_t rows, const uint8_t *W,
                          size_t ws, const uint8_t *A, size_t as, int64_t n_act, float *out,
                          int n_thr, int reps) {
    double best = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        call c[2];
        pthread_t th;
        for (int t = 0; t < n_thr; t++)
            c[t] = (call){kn, k, rows * t / n_thr, rows * (t + 1) / n_thr, n_act, W, A, ws, as, out, rows};
        double t0 = now();
        if (n_thr == 2) pthread_create(&th, NULL, run_call, &c[1]);
        run_call(&c[0]);
        if (n_thr == 2) pthread_join(th, NULL);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

static const uint32_t default_types[] = {DT_F32,  DT_F16,  DT_BF16, DT_Q8_0, DT_Q4_0, DT_Q4_1,
                                         DT_Q5_0, DT_Q5_1, DT_Q4_K, DT_Q5_K, DT_Q6_K};

int main(int argc, char **argv) {
    uint32_t types[32];
    int n_types = 0;
    for (int i = 1; i < argc && n_types < 32; i++) {
        int t = dtype_from_name(argv[i]);
        if (t < 0 || !vecdot_get((uint32_t)t)) {
            fprintf(stderr, "bench_vecdot: no kernel for '%s'\n", argv[i]);
            return 2;
        }
        types[n_types++] = (uint32_t)t;
    }
    if (!n_types)
        for (size_t i = 0; i < sizeof default_types / sizeof default_types[0]; i++)
            types[n_types++] = default_types[i];

    const int64_t k = 4096;
    /* matvec matrix: well beyond L2 and L3 by default; BENCH_KIB=512 measures an L2-resident one */
    const char *kib = getenv("BENCH_KIB");
    const size_t target_bytes = (kib ? (size_t)atol(kib) : (size_t)256 << 10) << 10;
    const int64_t n_mm = 32;
    printf("k=%lld; matvec over ~%zu KiB of weights (best of 5); matmul n_act=%lld, <= 512 rows\n",
           (long long)k, target_bytes >> 10, (long long)n_mm);
    printf("%-6s %-7s %12s %12s %14s\n", "type", "isa", "mv GB/s 1t", "mv GB/s 2t",
           "mm GFLOP/s 1t");

    float *x = malloc((size_t)k * sizeof(float));
    for (int ti = 0; ti < n_types; ti++) {
        const uint32_t wt = types[ti];
        uint64_t rb = 0;
        dtype_row_bytes(wt, (uint64_t)k, &rb);
        const int64_t rows = (int64_t)(target_bytes / rb);
        const int64_t mm_rows = rows < 512 ? rows : 512;
        uint8_t *W = aligned_alloc(64, ((size_t)rows * rb + 63) / 64 * 64);
        /* 64 properly quantized rows, repeated (quantizing 256 MiB of K-quants takes long) */
        for (int64_t r = 0; r < 64; r++) {
            for (int64_t i = 0; i < k; i++) x[i] = randf() * 0.05f;
            quant_quantize_row(wt, x, W + r * rb, k);
        }
        for (int64_t r = 64; r < rows; r++) memcpy(W + r * rb, W + (r % 64) * rb, rb);

        const vecdot_kernel *any = vecdot_get(wt);
        const size_t as = vecdot_act_row_bytes(any->act_type, k);
        uint8_t *A = malloc(as * (size_t)n_mm);
        for (int64_t j = 0; j < n_mm; j++) {
            for (int64_t i = 0; i < k; i++) x[i] = randf();
            vecdot_quantize_act(any->act_type, x, A + j * as, k);
        }
        float *out = malloc((size_t)(rows > mm_rows * n_mm ? rows : mm_rows * n_mm) * sizeof(float));

        for (int isa = ISA_SCALAR; isa <= ISA_AVX512; isa++) {
            const vecdot_kernel *kn = vecdot_get_isa(wt, (vecdot_isa)isa);
            if (!kn) continue;
            const int reps = isa == ISA_SCALAR ? 2 : target_bytes < (8u << 20) ? 200 : 5;
            time_matmul(kn, k, rows, W, rb, A, as, 1, out, 1, 1); /* warm-up */
            double t1 = time_matmul(kn, k, rows, W, rb, A, as, 1, out, 1, reps);
            double t2 = time_matmul(kn, k, rows, W, rb, A, as, 1, out, 2, reps);
            double tm = time_matmul(kn, k, mm_rows, W, rb, A, as, n_mm, out, 1, reps);
            double bytes = (double)rows * (double)rb;
            printf("%-6s %-7s %12.1f %12.1f %14.1f\n", dtype_name(wt), vecdot_isa_name(kn->isa),
                   bytes / t1 * 1e-9, bytes / t2 * 1e-9,
                   2.0 * (double)k * (double)mm_rows * (double)n_mm / tm * 1e-9);
            fflush(stdout);
        }
        free(W);
        free(A);
        free(out);
    }
    free(x);
    return 0;
}
