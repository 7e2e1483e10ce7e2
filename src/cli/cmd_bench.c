/*
 * shoal bench — prompt processing and generation speed, measured like llama-bench: pp is one
 * batch of p tokens into an empty cache, tg is n single-token decodes from an empty cache;
 * each is run once as a warm-up, then r times, and the median tokens per second is reported.
 * With -s S, tg decodes S sequences together, one token each per step (a serving node's
 * continuous batch), and reports all of them per second; -d D first fills each sequence's
 * cache with D tokens (not timed), so that attention reads a context of that length.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "engine/engine.h"
#include "gguf/gguf.h"
#include "model/encoder.h"
#include "model/model.h"

static void usage(FILE *f) {
    fputs("usage: shoal bench -m MODEL [-p 128] [-n 64] [-r 3] [-t N] [-s SEQS] [-d DEPTH]\n"
          "                   [--kv-f32] [--no-repack] [--json]\n"
          "  -p N      prompt processing: one batch of N tokens (0: skip)\n"
          "  -n N      generation: N decode steps (0: skip)\n"
          "  -r N      timed runs of each, after a warm-up; the median is reported\n"
          "  -s SEQS   generation decodes SEQS sequences together, one token each per step (1)\n"
          "  -d DEPTH  tokens in each sequence's cache before generation starts (0)\n",
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

/* One tg run: for each of ns sequences, depth tokens into its cache (not timed, in batches
 * of at most n_batch), then n steps of ns tokens, one per sequence, every one with logits.
 * tok/pos/seq/lg hold max(ns, n_batch) entries. */
static double run_tg(engine *e, int n, int ns, int depth, int n_batch, int n_vocab, int32_t *tok,
                     int32_t *pos, int32_t *seq, uint8_t *lg, sh_err *err) {
    for (int s = 0; s < ns; s++) {
        engine_seq_truncate(e, s, 0);
        for (int d0 = 0; d0 < depth; d0 += n_batch) {
            const int m = depth - d0 < n_batch ? depth - d0 : n_batch;
            for (int j = 0; j < m; j++) {
                tok[j] = bench_token(d0 + j, n_vocab);
                pos[j] = d0 + j;
                seq[j] = s;
            }
            engine_batch b = {.n = m, .token = tok, .pos = pos, .seq = seq};
            if (engine_decode(e, &b, err)) return -1;
        }
    }
    double t = now_ms();
    for (int i = 0; i < n; i++) {
        for (int s = 0; s < ns; s++) {
            tok[s] = bench_token(depth + i + 7 * s, n_vocab);
            pos[s] = depth + i;
            seq[s] = s;
            lg[s] = 1;
        }
        engine_batch b = {.n = ns, .token = tok, .pos = pos, .seq = seq, .logits = lg};
        if (engine_decode(e, &b, err)) return -1;
    }
    return now_ms() - t;
}

/* The file named by -m / --model is an encoder (its own benchmark, cmd_bench_enc.c). */
static bool encoder_arg(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) {
            gguf_ctx *g = gguf_open(argv[i + 1], NULL);
            bool enc = g && encoder_is_encoder_file(g);
            gguf_free(g);
            return enc;
        }
    return false;
}

int cmd_bench(int argc, char **argv) {
    if (encoder_arg(argc, argv)) return cmd_bench_encoder(argc, argv);
    const char *model_path = NULL;
    int p = 128, n = 64, r = 3, n_threads = 0, json = 0, kv_f32 = 0, ns = 1, depth = 0;
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
        else if (!strcmp(a, "-s") || !strcmp(a, "--seqs"))
            rc = cli_int(a, v, 1, 256, &ns);
        else if (!strcmp(a, "-d") || !strcmp(a, "--depth"))
            rc = cli_int(a, v, 0, 1 << 16, &depth);
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
    int32_t *tok = NULL, *pos = NULL, *seq = NULL;
    uint8_t *lg = NULL;
    double *pp = NULL, *tg = NULL;
    model *m = model_load_ex(model_path, &mp, &err);
    if (!m) {
        cli_error("%s", err.msg);
        goto done;
    }
    engine_params ep;
    engine_params_default(&ep);
    ep.n_ctx = (p > depth + n ? p : depth + n) + 1;
    ep.n_seq = ns;
    ep.n_batch = p > ns ? p : ns;
    if (ep.n_batch < 512 && depth > ep.n_batch) ep.n_batch = depth < 512 ? depth : 512;
    ep.n_threads = n_threads;
    ep.kv_f32 = kv_f32;
    e = engine_init(m, &ep, &err);
    if (!e) {
        cli_error("%s: %s", model_path, err.msg);
        goto done;
    }
    const size_t nb = (size_t)ep.n_batch + 1;
    tok = malloc(nb * sizeof *tok);
    pos = malloc(nb * sizeof *pos);
    seq = calloc(nb, sizeof *seq);
    lg = calloc(nb, 1);
    pp = calloc((size_t)r, sizeof *pp);
    tg = calloc((size_t)r, sizeof *tg);
    if (!tok || !pos || !seq || !lg || !pp || !tg) {
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
        if (run_tg(e, 1, ns, depth, ep.n_batch, m->hp.n_vocab, tok, pos, seq, lg, &err) < 0)
            goto fail;
        for (int k = 0; k < r; k++) {
            double ms = run_tg(e, n, ns, depth, ep.n_batch, m->hp.n_vocab, tok, pos, seq, lg, &err);
            if (ms < 0) goto fail;
            tg[k] = (double)n * ns / (ms / 1e3);
        }
        tg_ts = median(tg, r);
    }
    if (json) {
        json_t *o =
            json_pack("{s:f, s:f, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:s, s:I, s:I}", "pp_tok_s",
                      pp_ts, "tg_tok_s", tg_ts, "p", p, "n", n, "seqs", ns, "depth", depth, "r", r,
                      "threads", engine_n_threads(e), "model", model_path, "type", m->type_name,
                      "params", (json_int_t)m->n_params, "size_bytes", (json_int_t)m->n_bytes);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!s) {
            cli_error("out of memory");
            goto done;
        }
        puts(s);
        free(s);
    } else {
        printf("bench: pp=%.2f tg=%.2f p=%d n=%d s=%d d=%d r=%d t=%d model=\"%s\" type=%s "
               "params=%llu size=%.1fMiB\n",
               pp_ts, tg_ts, p, n, ns, depth, r, engine_n_threads(e), model_path, m->type_name,
               (unsigned long long)m->n_params, m->n_bytes / (1024.0 * 1024.0));
    }
    status = 0;
    goto done;
fail:
    cli_error("%s: %s", model_path, err.msg);
done:
    free(tok);
    free(pos);
    free(seq);
    free(lg);
    free(pp);
    free(tg);
    engine_free(e);
    model_free(m);
    return status;
}
