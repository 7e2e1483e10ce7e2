/*
 * shoal bench — prompt processing and generation speed, measured like llama-bench: pp is one
 * batch of p tokens into an empty cache, tg is n single-token decodes from an empty cache;
 * each is run once as a warm-up, then r times, and the median tokens per second is reported.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "engine/engine.h"
#include "model/model.h"

static void usage(FILE *f) {
    fputs("usage: shoal bench -m MODEL [-p 128] [-n 64] [-r 3] [-t N] [--kv-f32] [--no-repack]\n"
          "                   [--json]\n",
          f);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Token ids for the benchmark: a fixed pseudo-random sequence (the speed does not depend on
 * which ids they are). */
static int32_t bench_token(int i, int n_vocab) {
    uint32_t x = (uint32_t)i * 2654435761u + 12345u;
    return (int32_t)(x % (uint32_t)n_vocab);
}

/* One pp run: p tokens as one batch into an empty cache. Returns ms or -1. */
static double run_pp(engine *e, int32_t *tok, int32_t *pos, int p, sh_err *err) {
    engine_seq_truncate(e, 0, 0);
    engine_batch b = {.n = p, .token = tok, .pos = pos};
    double t = now_ms();
    if (engine_decode(e, &b, err)) return -1;
    return now_ms() - t;
}

/* One tg run: n single-token decodes from an empty cache. */
static double run_tg(engine *e, int n, int n_vocab, sh_err *err) {
    engine_seq_truncate(e, 0, 0);
    double t = now_ms();
    for (int i = 0; i < n; i++) {
        int32_t tok = bench_token(i, n_vocab), pos = i;
        engine_batch b = {.n = 1, .token = &tok, .pos = &pos};
        if (engine_decode(e, &b, err)) return -1;
    }
    return now_ms() - t;
}

int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL;
    int p = 128, n = 64, r = 3, n_threads = 0, json = 0, kv_f32 = 0;
    model_params mp = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        } else if (!strcmp(a, "--kv-f32")) {
            kv_f32 = 1;
            continue;
        } else if (!strcmp(a, "--no-repack")) {
            mp.no_repack = true;
            continue;
        }
        if (!v) {
            usage(stderr);
            return cli_error("option '%s' is unknown or needs a value", a);
        }
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "-p")) rc = cli_int(a, v, 0, 1 << 16, &p);
        else if (!strcmp(a, "-n")) rc = cli_int(a, v, 0, 1 << 16, &n);
        else if (!strcmp(a, "-r")) rc = cli_int(a, v, 1, 1000, &r);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) rc = cli_int(a, v, 1, 512, &n_threads);
        else {
            usage(stderr);
            return cli_error("unknown option '%s'", a);
        }
        if (rc) return rc;
    }
    if (!model_path) {
        usage(stderr);
        return cli_error("a model is required (-m MODEL)");
    }
    if (p == 0 && n == 0) return cli_error("nothing to measure (-p 0 and -n 0)");
    sh_err err = {{0}};
    int status = 1;
    engine *e = NULL;
    int32_t *tok = NULL, *pos = NULL;
    double *pp = NULL, *tg = NULL;
    model *m = model_load_ex(model_path, &mp, &err);
    if (!m) {
        cli_error("%s", err.msg);
        goto done;
    }
    engine_params ep;
    engine_params_default(&ep);
    ep.n_ctx = (p > n ? p : n) + 1;
    ep.n_batch = p > 0 ? p : 1;
    ep.n_threads = n_threads;
    ep.kv_f32 = kv_f32;
    e = engine_init(m, &ep, &err);
    if (!e) {
        cli_error("%s: %s", model_path, err.msg);
        goto done;
    }
    tok = malloc(((size_t)p + 1) * sizeof *tok);
    pos = malloc(((size_t)p + 1) * sizeof *pos);
    pp = calloc((size_t)r, sizeof *pp);
    tg = calloc((size_t)r, sizeof *tg);
    if (!tok || !pos || !pp || !tg) {
        cli_error("out of memory");
        goto done;
    }
    for (int i = 0; i < p; i++) {
        tok[i] = bench_token(i, m->hp.n_vocab);
        pos[i] = i;
    }
    double pp_ts = 0, tg_ts = 0;
    if (p > 0) {
        if (run_pp(e, tok, pos, p, &err) < 0) goto fail;
        for (int k = 0; k < r; k++) {
            double ms = run_pp(e, tok, pos, p, &err);
            if (ms < 0) goto fail;
            pp[k] = p / (ms / 1e3);
        }
        pp_ts = median(pp, r);
    }
    if (n > 0) {
        if (run_tg(e, 1, m->hp.n_vocab, &err) < 0) goto fail;
        for (int k = 0; k < r; k++) {
            double ms = run_tg(e, n, m->hp.n_vocab, &err);
            if (ms < 0) goto fail;
            tg[k] = n / (ms / 1e3);
        }
        tg_ts = median(tg, r);
    }
    if (json) {
        json_t *o = json_pack("{s:f, s:f, s:i, s:i, s:i, s:i, s:s, s:s, s:I, s:I}", "pp_tok_s",
                              pp_ts, "tg_tok_s", tg_ts, "p", p, "n", n, "r", r, "threads",
                              engine_n_threads(e), "model", model_path, "type", m->type_name,
                              "params", (json_int_t)m->n_params, "size_bytes",
                              (json_int_t)m->n_bytes);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!s) {
            cli_error("out of memory");
            goto done;
        }
        puts(s);
        free(s);
    } else {
        printf("bench: pp=%.2f tg=%.2f p=%d n=%d r=%d t=%d model=\"%s\" type=%s params=%llu "
               "size=%.1fMiB\n", pp_ts, tg_ts, p, n, r, engine_n_threads(e), model_path,
               m->type_name, (unsigned long long)m->n_params, m->n_bytes / (1024.0 * 1024.0));
    }
    status = 0;
    goto done;
fail:
    cli_error("%s: %s", model_path, err.msg);
done:
    free(tok);
    free(pos);
    free(pp);
    free(tg);
    engine_free(e);
    model_free(m);
    return status;
}
