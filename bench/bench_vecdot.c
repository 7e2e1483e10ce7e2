/*
 * bench_vecdot — throughput of the vecdot kernels per weight type and ISA level.
 *
 *   matvec (n_act = 1):  GB/s of weight bytes streamed, for a matrix far larger than L2 (and
 *                        L3), with 1 and 2 threads (rows split in halves);
 *   matmul (n_act = 32): GFLOP/s (2 * k * rows * n_act per call), one thread, on at most
 *                        512 rows (cache-resident: the arithmetic alone), and with 2 threads
 *                        on the whole matrix ("mm-mem": weights from memory, as a decode
 *                        step of several sequences reads them).
 *
 * Types with a packed layout (vecdot.h) are measured a second time on it ("avx512 packed").
 * Matrices live in 2 MiB-aligned anonymous memory with MADV_HUGEPAGE, as the engine's packed
 * weights do (BENCH_HUGE=0: without the madvise, 4 KiB pages like a file mapping).
 *
 * Usage: bench_vecdot [TYPE...]   (default: all types); SHOAL_ISA does not apply here, every
 * level the CPU supports is measured. BENCH_K (row length, default 4096) and BENCH_N (matmul
 * activation rows, default 32) change the shapes. Not a test: numbers depend on the machine
 * and its load.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

/* bytes in 2 MiB-aligned anonymous memory, huge pages unless BENCH_HUGE=0 (never freed) */
static void *big_alloc(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    bytes = (bytes + huge - 1) / huge * huge;
    uint8_t *p = mmap(NULL, bytes + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    uint8_t *a = (uint8_t *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
    const char *h = getenv("BENCH_HUGE");
    if (!h || strcmp(h, "0")) madvise(a, bytes, MADV_HUGEPAGE);
    return a;
}

typedef struct {
    vecdot_matmul_fn fn;
    int64_t k, r0, r1, n_act;
    const uint8_t *W, *A;
    size_t ws, as;
    float *out;
    int64_t os;
} call;

static void *run_call(void *p) {
    call *c = p;
    c->fn(c->k, c->W, c->ws, c->r0, c->r1, c->A, c->as, c->n_act, c->out, c->os);
    return NULL;
}

/* Best time of `reps` runs of the matmul over all rows, split across n_thr threads. */
static double time_matmul(vecdot_matmul_fn kn, int64_t k, int64_t rows, const uint8_t *W,
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

    const int64_t k = getenv("BENCH_K") ? atol(getenv("BENCH_K")) : 4096; /* a multiple of 256 */
    /* matvec matrix: well beyond L2 and L3 by default; BENCH_KIB=512 measures an L2-resident one */
    const char *kib = getenv("BENCH_KIB");
    const size_t target_bytes = (kib ? (size_t)atol(kib) : (size_t)256 << 10) << 10;
    const int64_t n_mm = getenv("BENCH_N") ? atol(getenv("BENCH_N")) : 32;
    printf("k=%lld; matvec over ~%zu KiB of weights (best of 5); matmul n_act=%lld, <= 512 rows\n",
           (long long)k, target_bytes >> 10, (long long)n_mm);
    printf("%-6s %-14s %12s %12s %14s %16s\n", "type", "isa", "mv GB/s 1t", "mv GB/s 2t",
           "mm GFLOP/s 1t", "mm-mem GFLOP/s 2t");

    float *x = malloc((size_t)k * sizeof(float));
    for (int ti = 0; ti < n_types; ti++) {
        const uint32_t wt = types[ti];
        uint64_t rb = 0;
        dtype_row_bytes(wt, (uint64_t)k, &rb);
        const int64_t rows = target_bytes / rb > 0 ? (int64_t)(target_bytes / rb) : 1;
        const int64_t mm_rows = rows < 512 ? rows : 512;
        uint8_t *W = big_alloc((size_t)rows * rb);
        /* 64 properly quantized rows, repeated (quantizing 256 MiB of K-quants takes long) */
        const int64_t proto = rows < 64 ? rows : 64;
        for (int64_t r = 0; r < proto; r++) {
            for (int64_t i = 0; i < k; i++) x[i] = randf() * 0.05f;
            quant_quantize_row(wt, x, W + r * rb, k);
        }
        for (int64_t r = proto; r < rows; r++) memcpy(W + r * rb, W + (r % proto) * rb, rb);
        const size_t pgs = vecdot_packed_group_bytes(wt, k);
        uint8_t *P = NULL;
        if (pgs) {
            P = big_alloc(vecdot_packed_bytes(wt, k, rows));
            vecdot_pack(wt, k, W, rb, rows, 0, rows, P);
        }

        const vecdot_kernel *any = vecdot_get(wt);
        const size_t as = vecdot_act_row_bytes(any->act_type, k);
        uint8_t *A = malloc(as * (size_t)n_mm);
        for (int64_t j = 0; j < n_mm; j++) {
            for (int64_t i = 0; i < k; i++) x[i] = randf();
            vecdot_quantize_act(any->act_type, x, A + j * as, k);
        }
        float *out = malloc((size_t)(rows * n_mm) * sizeof(float)); /* mm-mem: every row x n_mm */

        for (int isa = ISA_SCALAR; isa <= ISA_AVX512; isa++) {
            const vecdot_kernel *kn = vecdot_get_isa(wt, (vecdot_isa)isa);
            if (!kn) continue;
            const int reps = isa == ISA_SCALAR ? 2 : target_bytes < (8u << 20) ? 200 : 5;
            for (int packed = 0; packed < 2; packed++) {
                vecdot_matmul_fn fn = packed ? kn->matmul_packed : kn->matmul;
                if (!fn) continue;
                const uint8_t *M = packed ? P : W;
                const size_t ms = packed ? pgs : rb;
                time_matmul(fn, k, rows, M, ms, A, as, 1, out, 1, 1); /* warm-up */
                double t1 = time_matmul(fn, k, rows, M, ms, A, as, 1, out, 1, reps);
                double t2 = time_matmul(fn, k, rows, M, ms, A, as, 1, out, 2, reps);
                double tm = time_matmul(fn, k, mm_rows, M, ms, A, as, n_mm, out, 1, reps);
                /* the whole matrix (from memory, as a decode step of n_mm sequences reads it) */
                double tb = time_matmul(fn, k, rows, M, ms, A, as, n_mm, out, 2, reps < 5 ? reps : 5);
                /* GB/s of the file layout's bytes, so packed and plain compare as tokens/s */
                double bytes = (double)rows * (double)rb;
                char name[32];
                snprintf(name, sizeof name, "%s%s", vecdot_isa_name(kn->isa),
                         packed ? " packed" : "");
                printf("%-6s %-14s %12.1f %12.1f %14.1f %16.1f\n", dtype_name(wt), name,
                       bytes / t1 * 1e-9, bytes / t2 * 1e-9,
                       2.0 * (double)k * (double)mm_rows * (double)n_mm / tm * 1e-9,
                       2.0 * (double)k * (double)rows * (double)n_mm / tb * 1e-9);
                fflush(stdout);
            }
        }
        free(A);
        free(out);
    }
    free(x);
    return 0;
}
