/*
 * shoal bench on an encoder (BERT / nomic-bert GGUF): inputs per second, measured as
 * llama_peer bench-embed measures llama.cpp, so the two compare on the same file:
 *
 *   shoal bench -m ENCODER [-L 128] [-N 32] [-b 4] [-r 3] [-t N] [--pooling P] [--task T]
 *
 * N deterministic pseudo-random inputs of L tokens ([CLS] first, [SEP] last), b inputs per
 * forward pass, every pooled vector read and L2-normalized (--task classify: the sequence
 * head's probabilities instead); one warm-up pass, then r timed runs over all N inputs; the
 * median is reported, with the median time of one pass.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "engine/encode.h"
#include "model/encoder.h"
#include "nlu/nlu.h"
#include "tokenizer/tokenizer.h"

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

static void usage(FILE *f) {
    fputs("usage: shoal bench -m ENCODER [-L 128] [-N 32] [-b 4] [-r 3] [-t N] [--pooling P]\n"
          "                   [--task embed|classify] [--no-repack] [--json]\n"
          "  -L N      tokens per input ([CLS] ... [SEP])\n"
          "  -N N      inputs per run\n"
          "  -b N      inputs per forward pass\n"
          "  -r N      timed runs after a warm-up pass; the median is reported\n",
          f);
}

int cmd_bench_encoder(int argc, char **argv) {
    const char *path = NULL;
    int L = 128, N = 32, B = 4, r = 3, threads = 0, json = 0, pooling = -1, classify = 0;
    encoder_params mp = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), 0;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(a, "--no-repack")) {
            mp.no_repack = true;
            continue;
        }
        if (!v) return usage(stderr), cli_error("option '%s' is unknown or needs a value", a);
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) path = v;
        else if (!strcmp(a, "-L")) rc = cli_int(a, v, 2, 1 << 16, &L);
        else if (!strcmp(a, "-N")) rc = cli_int(a, v, 1, 1 << 20, &N);
        else if (!strcmp(a, "-b")) rc = cli_int(a, v, 1, 4096, &B);
        else if (!strcmp(a, "-r")) rc = cli_int(a, v, 1, 1000, &r);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) rc = cli_int(a, v, 1, 512, &threads);
        else if (!strcmp(a, "--pooling")) {
            if ((pooling = encoder_pooling_from_name(v)) < 0)
                return cli_error("--pooling: '%s' is not one of none, mean, cls, last, rank", v);
        } else if (!strcmp(a, "--task")) {
            if (strcmp(v, "embed") && strcmp(v, "classify"))
                return cli_error("--task: '%s' is not embed or classify", v);
            classify = !strcmp(v, "classify");
        } else
            return usage(stderr), cli_error("unknown option '%s'", a);
        if (rc) return rc;
    }
    if (!path) return usage(stderr), cli_error("a model is required (-m MODEL)");
    sh_err err = {{0}};
    int status = 1;
    encode_ctx *e = NULL;
    int32_t *toks = NULL;
    int *lens = NULL;
    double *runs = NULL, *pass = NULL;
    tok_vocab *voc = NULL;
    encoder_model *m = encoder_load(path, &mp, &err);
    if (!m || !(voc = tok_vocab_from_gguf(m->g, &err))) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (L > m->hp.n_ctx_train) {
        cli_error("-L %d: the model reads at most %d tokens", L, m->hp.n_ctx_train);
        goto done;
    }
    if (classify && !m->seq_head.n_out) {
        cli_error("%s: --task classify needs a sequence head (cls.output)", path);
        goto done;
    }
    if (B > N) B = N;
    encode_params ep;
    encode_params_default(&ep);
    ep.n_threads = threads;
    ep.pooling = pooling;
    ep.n_tokens = L * B;
    ep.n_seqs = B;
    if (!(e = encode_init(m, &ep, &err))) {
        cli_error("%s: %s", path, err.msg);
        goto done;
    }
    if (!classify && encode_pooling(e) == ENCODER_POOL_NONE) {
        cli_error("%s: pooling none has no pooled vector (--pooling mean|cls|last)", path);
        goto done;
    }
    toks = malloc((size_t)N * L * sizeof *toks);
    lens = malloc((size_t)B * sizeof *lens);
    runs = calloc((size_t)r, sizeof *runs);
    pass = calloc((size_t)r * ((N + B - 1) / B), sizeof *pass);
    float *buf = malloc((size_t)(m->hp.dim > m->seq_head.n_out ? m->hp.dim : m->seq_head.n_out) * sizeof(float));
    if (!toks || !lens || !runs || !pass || !buf) {
        free(buf);
        cli_error("out of memory");
        goto done;
    }
    const int32_t cls = tok_bos(voc) >= 0 ? tok_bos(voc) : 0;
    const int32_t sep = tok_sep(voc) >= 0 ? tok_sep(voc) : cls;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < L; k++) {
            uint32_t x = (uint32_t)(i * L + k) * 2654435761u + 12345u;
            toks[(size_t)i * L + k] = k == 0 ? cls : k == L - 1 ? sep : (int32_t)(1000 + x % (uint32_t)(m->hp.n_vocab - 1000 > 0 ? m->hp.n_vocab - 1000 : 1));
        }
    for (int k = 0; k < B; k++) lens[k] = L;
    const unsigned want = classify ? ENCODE_SEQ_HEAD : ENCODE_POOLED;
    int n_pass = 0;
    for (int run = -1; run < r; run++) {
        double t0 = now_ms();
        for (int i = 0; i < N; i += B) {
            const int nb = N - i < B ? N - i : B;
            encode_batch b = {.n_seq = nb, .tokens = toks + (size_t)i * L, .n_tokens = lens, .want = want};
            double tp = now_ms();
            if (encode_run(e, &b, &err)) {
                free(buf);
                cli_error("%s: %s", path, err.msg);
                goto done;
            }
            for (int s = 0; s < nb; s++) { /* read every result as a server would */
                if (classify) {
                    nlu_softmax(encode_seq_logits(e, s), m->seq_head.n_out, buf);
                } else {
                    const float *p = encode_pooled(e, s);
                    double ss = 0;
                    for (int c = 0; c < m->hp.dim; c++) ss += (double)p[c] * p[c];
                    const float inv = (float)(1.0 / sqrt(ss > 0 ? ss : 1));
                    for (int c = 0; c < m->hp.dim; c++) buf[c] = p[c] * inv;
                }
            }
            if (run >= 0) pass[n_pass++] = now_ms() - tp;
            if (run < 0) break; /* the warm-up is one pass */
        }
        if (run >= 0) runs[run] = N / ((now_ms() - t0) / 1e3);
    }
    free(buf);
    const double ips = median(runs, r), pass_ms = median(pass, n_pass);
    if (json) {
        json_t *o = json_pack("{s:f, s:f, s:f, s:i, s:i, s:i, s:i, s:i, s:s, s:s, s:s, s:I}",
                              "inputs_s", ips, "tokens_s", ips * L, "pass_ms", pass_ms, "L", L,
                              "N", N, "b", B, "r", r, "threads", encode_n_threads(e), "pooling",
                              classify ? "rank" : encoder_pooling_name(encode_pooling(e)),
                              "model", path, "type", m->type_name, "params", (json_int_t)m->n_params);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (s) puts(s);
        free(s);
    } else {
        printf("bench-embed: inputs_s=%.2f tokens_s=%.2f pass_ms=%.4f L=%d N=%d b=%d r=%d t=%d "
               "task=%s pooling=%s model=\"%s\" type=%s params=%llu\n",
               ips, ips * L, pass_ms, L, N, B, r, encode_n_threads(e), classify ? "classify" : "embed",
               encoder_pooling_name(encode_pooling(e)), path, m->type_name,
               (unsigned long long)m->n_params);
    }
    status = 0;
done:
    free(toks);
    free(lens);
    free(runs);
    free(pass);
    encode_free(e);
    tok_vocab_free(voc);
    encoder_free(m);
    return status;
}
