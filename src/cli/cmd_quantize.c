/*
 * shoal quantize — convert a GGUF model to another weight type (llama.cpp's per-tensor mix).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "model/quantize.h"
#include "tensor/dtype.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: shoal quantize IN.gguf OUT.gguf TYPE [-t THREADS] [-q]\n"
            "  TYPE: %s\n"
            "  q4_k, q5_k, q6_k give every quantizable tensor that type; the others follow\n"
            "  llama.cpp's mix (output.weight as Q6_K, ...). -t: threads (default: all cores),\n"
            "  -q: no per-tensor progress on stderr.\n",
            quantize_type_names());
}

static void progress(void *ud, uint64_t i, uint64_t n, const char *name, uint32_t from,
                     uint32_t to, const uint64_t *ne) {
    (void)ud;
    fprintf(stderr, "[%4llu/%4llu] %-36s %-5s -> %-5s [%llu x %llu]\n", (unsigned long long)i + 1,
            (unsigned long long)n, name, dtype_name(from), dtype_name(to),
            (unsigned long long)ne[0], (unsigned long long)ne[1]);
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {0};
    int npos = 0, quiet = 0;
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            char *end;
            if (i + 1 >= argc) return cli_error("%s needs a value", a);
            threads = strtol(argv[++i], &end, 10);
            if (*end || threads < 1 || threads > 16)
                return cli_error("%s: '%s' is not a thread count in 1..16", a, argv[i]);
        } else if (a[0] == '-' && a[1]) {
            usage(stderr);
            return cli_error("unknown option '%s'", a);
        } else if (npos < 3) {
            pos[npos++] = a;
        } else {
            usage(stderr);
            return cli_error("too many arguments");
        }
    }
    if (npos != 3) {
        usage(stderr);
        return cli_error("IN, OUT and TYPE are required");
    }
    if (!quantize_type_known(pos[2]))
        return cli_error("unknown type '%s' (one of: %s)", pos[2], quantize_type_names());
    if (threads < 1) threads = 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sh_err err = {{0}};
    if (quantize_file(pos[0], pos[1], pos[2], (int)threads, quiet ? NULL : progress, NULL, &err))
        return cli_error("%s", err.msg);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "quantize: wrote %s (%s) in %.2f s\n", pos[1], pos[2],
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    return 0;
}
