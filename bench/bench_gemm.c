/*
 * bench_gemm — GFLOP/s of the trainer's matrix products (train/gemm.h) against OpenBLAS's
 * cblas_sgemm on the same shapes and threads (a benchmark, not a test).
 *
 *   bench_gemm [-t THREADS] [-r RUNS] [MxNxK ...]
 *
 * OpenBLAS is loaded at run time (libopenblas.so.0, Debian's libopenblas0) so the project does
 * not link it; without it only shoal's figures are printed. Both compute C = A B^T with A
 * [M x K] and B [N x K] row-major (a linear layer's forward). OpenBLAS gets the same thread
 * count through openblas_set_num_threads. Each figure is the best of RUNS, after one warm-up;
 * the two libraries alternate run by run.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/pool.h"
#include "train/gemm.h"

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *,
                         int, float, float *, int);
typedef void (*set_threads_fn)(int);

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int threads = 2, runs = 7;
    const char *shapes[64];
    int ns = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (ns < 64) shapes[ns++] = argv[i];
    }
    static const char *def[] = {"1024x1024x1024", "4096x256x1024", "512x256x256", "1024x768x256",
                                "1024x256x768", "256x256x1024", "1024x3000x256"};
    if (!ns) {
        ns = (int)(sizeof def / sizeof *def);
        memcpy(shapes, def, sizeof def);
    }
    void *lib = dlopen("libopenblas.so.0", RTLD_NOW);
    sgemm_fn sgemm = lib ? (sgemm_fn)dlsym(lib, "cblas_sgemm") : NULL;
    set_threads_fn set_threads = lib ? (set_threads_fn)dlsym(lib, "openblas_set_num_threads") : NULL;
    if (set_threads) set_threads(threads);
    pool *p = pool_init(threads);
    printf("kernel %s, %d threads%s\n", gemm_get_kernel()->name, threads,
           sgemm ? ", OpenBLAS loaded" : " (OpenBLAS not found: libopenblas.so.0)");
    for (int s = 0; s < ns; s++) {
        int m, n, k;
        if (sscanf(shapes[s], "%dx%dx%d", &m, &n, &k) != 3) continue;
        float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * n * k);
        float *c = malloc(sizeof(float) * m * n);
        for (long i = 0; i < (long)m * k; i++) a[i] = (float)((i * 7) % 13) * 0.01f;
        for (long i = 0; i < (long)n * k; i++) b[i] = (float)((i * 5) % 11) * 0.01f;
        double best_s = 1e9, best_o = 1e9;
        for (int r = -1; r < runs; r++) {
            double t = now_s();
            gemm_nt(p, m, n, k, a, b, c, 0);
            t = now_s() - t;
            if (r >= 0 && t < best_s) best_s = t;
            if (sgemm) {
                t = now_s();
                sgemm(101 /* row major */, 111 /* no trans */, 112 /* trans */, m, n, k, 1.0f, a, k,
                      b, k, 0.0f, c, n);
                t = now_s() - t;
                if (r >= 0 && t < best_o) best_o = t;
            }
        }
        const double fl = 2.0 * m * n * k;
        if (sgemm)
            printf("%-16s shoal %7.1f GFLOP/s  OpenBLAS %7.1f GFLOP/s  %5.1f%%\n", shapes[s], fl / best_s / 1e9,
                   fl / best_o / 1e9, 100.0 * best_o / best_s);
        else
            printf("%-16s shoal %7.1f GFLOP/s\n", shapes[s], fl / best_s / 1e9);
        free(a), free(b), free(c);
    }
    pool_free(p);
    return 0;
}
