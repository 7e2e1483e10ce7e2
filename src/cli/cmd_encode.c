/*
 * shoal embed | classify | rerank — an encoder (BERT / nomic-bert GGUF) from the command line.
 *
 *   shoal embed -m MODEL (-p TEXT | -f FILE | --ids "101 7592 102") [--pooling P] [--raw]
 *               [--json] [--exact] [--truncate] [-t N]
 *   shoal classify -m MODEL (-p TEXT | -f FILE) [--json] [--raw [--tokens]] [--truncate] [-t N]
 *   shoal rerank -m MODEL --query Q (--doc D ... | -f FILE) [--top-n N] [--json] [--raw]
 *               [--truncate] [-t N]
 *
 * -f FILE (- for stdin) has one input per line, with the escapes of `shoal tokenize` (\n, \t,
 * \r, \\, \xHH). Texts are read as the server reads them: [CLS] text [SEP], special-token text
 * parsed. Output:
 *   embed     one line per input: the pooled vector, L2-normalized (--raw: as pooled); with
 *             --pooling none one line per token (the final hidden states, raw)
 *   classify  a table: input, label, probability, then its entities (label, text, character
 *             offsets, score); --raw: the sequence head's raw outputs per line (--tokens: the
 *             token head's per token)
 *   rerank    documents by relevance: score, index, text; --raw: the scores in document order
 * --json prints what the HTTP API answers (docs/api.md). Timing goes to stderr.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/enc_json.h"
#include "cli/cli.h"
#include "engine/encode.h"
#include "model/encoder.h"
#include "nlu/nlu.h"
#include "tokenizer/tokenizer.h"

enum { EMBED, CLASSIFY, RERANK };

typedef struct opts {
    int cmd;
    const char *model, *text, *file, *ids, *query;
    const char **docs;
    int n_docs;
    int pooling, top_n, threads;
    int raw, json, exact, truncate, tokens, no_repack;
} opts;

static const char *const usages[] = {
    "usage: shoal embed -m MODEL (-p TEXT | -f FILE | --ids \"ID ...\") [--pooling "
    "none|mean|cls|last|rank]\n                   [--raw] [--json] [--exact] [--truncate] [-t N] "
    "[--no-repack]\n",
    "usage: shoal classify -m MODEL (-p TEXT | -f FILE) [--json] [--raw [--tokens]] [--truncate] "
    "[-t N]\n",
    "usage: shoal rerank -m MODEL --query Q (--doc D ... | -f FILE) [--top-n N] [--json] [--raw] "
    "[--truncate] [-t N]\n",
};

static int parse_opts(int cmd, int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->cmd = cmd;
    o->pooling = -1;
    o->docs = calloc((size_t)argc, sizeof *o->docs);
    if (!o->docs) return cli_error("out of memory");
    const char *u = usages[cmd];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int more = i + 1 < argc;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && more) o->model = argv[++i];
        else if (!strcmp(a, "-p") && more && cmd != RERANK) o->text = argv[++i];
        else if (!strcmp(a, "-f") && more) o->file = argv[++i];
        else if (!strcmp(a, "--ids") && more && cmd == EMBED) o->ids = argv[++i];
        else if (!strcmp(a, "--query") && more && cmd == RERANK) o->query = argv[++i];
        else if (!strcmp(a, "--doc") && more && cmd == RERANK) o->docs[o->n_docs++] = argv[++i];
        else if (!strcmp(a, "--pooling") && more && cmd == EMBED) {
            o->pooling = encoder_pooling_from_name(argv[++i]);
            if (o->pooling < 0)
                return cli_error("--pooling: '%s' is not one of none, mean, cls, last, rank", argv[i]);
        } else if (!strcmp(a, "--top-n") && more && cmd == RERANK) {
            if (cli_int("--top-n", argv[++i], 1, 1 << 20, &o->top_n)) return 1;
        } else if (!strcmp(a, "-t") && more) {
            if (cli_int("-t", argv[++i], 1, 512, &o->threads)) return 1;
        } else if (!strcmp(a, "--raw")) o->raw = 1;
        else if (!strcmp(a, "--json")) o->json = 1;
        else if (!strcmp(a, "--exact")) o->exact = 1;
        else if (!strcmp(a, "--truncate")) o->truncate = 1;
        else if (!strcmp(a, "--no-repack")) o->no_repack = 1;
        else if (!strcmp(a, "--tokens") && cmd == CLASSIFY) o->tokens = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(u, stdout);
            return 2;
        } else {
            fputs(u, stderr);
            return cli_error("unknown or incomplete option '%s'", a);
        }
    }
    if (!o->model) return fputs(u, stderr), cli_error("-m MODEL is required");
    int sources = !!o->text + !!o->file + !!o->ids + (o->n_docs > 0);
    if (cmd == RERANK && !o->query) return fputs(u, stderr), cli_error("--query is required");
    if (sources != 1)
        return fputs(u, stderr), cli_error(cmd == RERANK ? "give the documents with --doc or -f"
                                                         : "give exactly one of -p, -f, --ids");
    if (o->json && o->raw) return cli_error("--json and --raw are alternatives");
    if (o->tokens && !o->raw) return cli_error("--tokens goes with --raw");
    return 0;
}

/* ============================================================ inputs ===== */

typedef struct inputs {
    char **text;
    size_t n, cap;
} inputs;

static int add_input(inputs *in, const char *s, size_t n) {
    if (in->n == in->cap) {
        size_t nc = in->cap ? in->cap * 2 : 16;
        char **nv = realloc(in->text, nc * sizeof *nv);
        if (!nv) return cli_error("out of memory");
        in->text = nv;
        in->cap = nc;
    }
    char *d = malloc(n + 1);
    if (!d) return cli_error("out of memory");
    memcpy(d, s, n);
    d[n] = 0;
    in->text[in->n++] = d;
    return 0;
}

static int read_lines(const char *path, inputs *in) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return cli_error("%s: cannot open", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        len = (ssize_t)cli_unescape(line, (size_t)len);
        if (len == 0) continue;
        rc = add_input(in, line, (size_t)len);
    }
    free(line);
    if (f != stdin) fclose(f);
    if (!rc && in->n == 0) rc = cli_error("%s: no inputs", path);
    return rc;
}

/* ============================================================ running ===== */

typedef struct seqs {
    tok_ids *ids;      /* [n] */
    tok_spans *spans;  /* [n] (classify with a token head) */
    size_t n;
} seqs;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Results of every input, copied out of the context batch by batch. */
typedef struct results {
    float *pooled;     /* [n][dim] */
    float *seq;        /* [n][seq_out] */
    float **tok;       /* [n] -> [tokens][tok_out] */
    float **hidden;    /* [n] -> [tokens][dim] (pooling none) */
} results;

static int run_all(encode_ctx *e, const seqs *sq, unsigned want, results *res, double *ms) {
    const encoder_model *m = encode_model(e);
    const int dim = m->hp.dim, so = m->seq_head.n_out, to = m->tok_head.n_out;
    const bool none = encode_pooling(e) == ENCODER_POOL_NONE;
    int *lens = malloc(sq->n * sizeof *lens);
    int32_t *toks = malloc((size_t)encode_n_tokens(e) * sizeof *toks);
    res->pooled = calloc(sq->n * (size_t)dim, sizeof(float));
    res->seq = calloc(sq->n * (size_t)(so ? so : 1), sizeof(float));
    res->tok = calloc(sq->n, sizeof *res->tok);
    res->hidden = calloc(sq->n, sizeof *res->hidden);
    if (!lens || !toks || !res->pooled || !res->seq || !res->tok || !res->hidden) {
        free(lens), free(toks);
        return cli_error("out of memory");
    }
    double t0 = now_ms();
    for (size_t i = 0; i < sq->n;) {
        size_t j = i, nt = 0;
        while (j < sq->n && j - i < (size_t)encode_n_seqs(e) &&
               nt + sq->ids[j].n <= (size_t)encode_n_tokens(e)) {
            memcpy(toks + nt, sq->ids[j].ids, sq->ids[j].n * sizeof *toks);
            lens[j - i] = (int)sq->ids[j].n;
            nt += sq->ids[j].n;
            j++;
        }
        encode_batch b = {.n_seq = (int)(j - i), .tokens = toks, .n_tokens = lens, .want = want};
        sh_err err = {{0}};
        if (encode_run(e, &b, &err)) {
            free(lens), free(toks);
            return cli_error("input %zu: %s", i, err.msg);
        }
        for (size_t s = i, t = 0; s < j; t += sq->ids[s].n, s++) {
            const size_t n = sq->ids[s].n;
            if (want & ENCODE_POOLED)
                memcpy(res->pooled + s * dim, encode_pooled(e, (int)(s - i)), (size_t)dim * sizeof(float));
            if (want & ENCODE_SEQ_HEAD)
                memcpy(res->seq + s * so, encode_seq_logits(e, (int)(s - i)), (size_t)so * sizeof(float));
            if (want & ENCODE_TOK_HEAD) {
                if (!(res->tok[s] = malloc(n * (size_t)to * sizeof(float)))) return cli_error("out of memory");
                for (size_t k = 0; k < n; k++)
                    memcpy(res->tok[s] + k * to, encode_tok_logits(e, (int)(t + k)), (size_t)to * sizeof(float));
            }
            if (none) {
                if (!(res->hidden[s] = malloc(n * (size_t)dim * sizeof(float)))) return cli_error("out of memory");
                for (size_t k = 0; k < n; k++)
                    memcpy(res->hidden[s] + k * dim, encode_hidden(e, (int)(t + k)), (size_t)dim * sizeof(float));
            }
        }
        i = j;
    }
    *ms = now_ms() - t0;
    free(lens);
    free(toks);
    return 0;
}

static void results_free(results *r, size_t n) {
    free(r->pooled);
    free(r->seq);
    for (size_t i = 0; r->tok && i < n; i++) free(r->tok[i]);
    for (size_t i = 0; r->hidden && i < n; i++) free(r->hidden[i]);
    free(r->tok);
    free(r->hidden);
}

static void print_floats(const float *v, int n, int exact) {
    for (int k = 0; k < n; k++) printf(exact ? "%s%.9g" : "%s%.6g", k ? " " : "", (double)v[k]);
    putchar('\n');
}

static void l2_normalize(float *v, int n) {
    double ss = 0;
    for (int k = 0; k < n; k++) ss += (double)v[k] * v[k];
    const float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    for (int k = 0; k < n; k++) v[k] *= inv;
}

static void print_json(json_t *j) {
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(7));
    if (s) puts(s);
    free(s);
    json_decref(j);
}

/* ============================================================ the commands ===== */

static int run(int cmd, int argc, char **argv) {
    opts o;
    int rc = parse_opts(cmd, argc, argv, &o);
    if (rc) {
        free(o.docs);
        return rc == 2 ? 0 : rc;
    }
    sh_err err = {{0}};
    encoder_params mp = {.no_repack = o.no_repack};
    encoder_model *m = NULL;
    tok_vocab *v = NULL;
    encode_ctx *e = NULL;
    inputs in = {0};
    seqs sq = {0};
    results res = {0};
    rc = 1;
    double t_load = now_ms();
    if (!(m = encoder_load(o.model, &mp, &err)) || !(v = tok_vocab_from_gguf(m->g, &err))) {
        cli_error("%s", err.msg);
        goto done;
    }
    t_load = now_ms() - t_load;
    const encoder_hparams *hp = &m->hp;
    if (cmd == CLASSIFY && !m->seq_head.n_out && !m->tok_head.n_out) {
        cli_error("%s: the model has no classification head (cls.output)", o.model);
        goto done;
    }
    if (cmd == RERANK && !(m->seq_head.n_out == 1 && hp->pooling == ENCODER_POOL_RANK)) {
        cli_error("%s: not a reranker (a reranker has rank pooling and a one-output head; this "
                  "model has pooling %s and %d head outputs)", o.model,
                  encoder_pooling_name(hp->pooling), m->seq_head.n_out);
        goto done;
    }
    encode_params ep;
    encode_params_default(&ep);
    ep.n_threads = o.threads;
    ep.pooling = o.pooling;
    if (!(e = encode_init(m, &ep, &err))) {
        cli_error("%s", err.msg);
        goto done;
    }
    const encoder_pooling pooling = encode_pooling(e);
    if (cmd == EMBED && pooling == ENCODER_POOL_RANK) {
        cli_error("%s: rank pooling gives head scores, not embeddings: use shoal rerank / "
                  "classify, or --pooling mean|cls|last", o.model);
        goto done;
    }
    /* inputs */
    if (o.text && add_input(&in, o.text, strlen(o.text))) goto done;
    for (int i = 0; i < o.n_docs; i++)
        if (add_input(&in, o.docs[i], strlen(o.docs[i]))) goto done;
    if (o.file && read_lines(o.file, &in)) goto done;
    size_t n_in = o.ids ? 1 : in.n;
    sq.ids = calloc(n_in, sizeof *sq.ids);
    sq.spans = calloc(n_in, sizeof *sq.spans);
    if (!sq.ids || !sq.spans) {
        cli_error("out of memory");
        goto done;
    }
    sq.n = n_in;
    const bool tagger = cmd == CLASSIFY && m->tok_head.n_out > 0;
    for (size_t i = 0; i < n_in; i++) {
        int r;
        if (o.ids) {
            for (char *p = (char *)o.ids, *end; *p; p = end) {
                long id = strtol(p, &end, 10);
                if (end == p) {
                    if (*p == ' ' || *p == ',') {
                        end = p + 1;
                        continue;
                    }
                    cli_error("--ids: '%s' is not a list of token ids", o.ids);
                    goto done;
                }
                tok_ids *t = &sq.ids[0];
                if (t->n == t->cap) {
                    t->cap = t->cap ? t->cap * 2 : 64;
                    int32_t *nv = realloc(t->ids, t->cap * sizeof *nv);
                    if (!nv) goto done;
                    t->ids = nv;
                }
                t->ids[t->n++] = (int32_t)id;
            }
            r = sq.ids[0].n ? 0 : sh_errf(&err, "--ids: no token ids");
        } else if (cmd == RERANK) {
            r = nlu_rerank_tokens(v, o.query, in.text[i], &sq.ids[i], &err);
        } else if (tagger) {
            r = tok_tokenize_spans(v, in.text[i], strlen(in.text[i]), true, true, &sq.ids[i],
                                   &sq.spans[i], &err);
        } else {
            r = tok_tokenize(v, in.text[i], strlen(in.text[i]), true, true, &sq.ids[i], &err);
        }
        if (r || nlu_fit(&sq.ids[i], tagger ? &sq.spans[i] : NULL, 0, hp->n_ctx_train,
                         o.truncate, &err)) {
            cli_error("input %zu: %s", i, err.msg);
            goto done;
        }
    }
    unsigned want = cmd == EMBED ? (pooling == ENCODER_POOL_NONE ? 0 : ENCODE_POOLED)
                    : cmd == RERANK ? ENCODE_SEQ_HEAD
                                    : (m->seq_head.n_out ? ENCODE_SEQ_HEAD : 0) |
                                          (m->tok_head.n_out ? ENCODE_TOK_HEAD : 0);
    double ms = 0;
    if (run_all(e, &sq, want, &res, &ms)) goto done;
    size_t n_tok = 0;
    for (size_t i = 0; i < sq.n; i++) n_tok += sq.ids[i].n;
    fprintf(stderr, "shoal %s: %zu inputs, %zu tokens, %.3f ms (load %.1f ms, %d threads, "
            "pooling %s)\n", argv[0], sq.n, n_tok, ms, t_load, encode_n_threads(e),
            encoder_pooling_name(pooling));

    /* output */
    const int dim = hp->dim, so = m->seq_head.n_out, to = m->tok_head.n_out;
    if (cmd == EMBED) {
        json_t *data = o.json ? json_array() : NULL;
        for (size_t i = 0; i < sq.n; i++) {
            if (pooling == ENCODER_POOL_NONE) {
                for (size_t k = 0; k < sq.ids[i].n; k++) print_floats(res.hidden[i] + k * dim, dim, o.exact);
                continue;
            }
            float *p = res.pooled + i * dim;
            if (!o.raw) l2_normalize(p, dim);
            if (data) json_array_append_new(data, encj_embedding((int)i, p, dim, false));
            else print_floats(p, dim, o.exact);
        }
        if (data)
            print_json(json_pack("{s:s, s:o, s:s, s:o}", "object", "list", "data", data, "model",
                                 o.model, "usage", encj_usage((int)n_tok)));
    } else if (cmd == RERANK) {
        float *scores = malloc(sq.n * sizeof *scores);
        if (!scores) goto done;
        for (size_t i = 0; i < sq.n; i++) scores[i] = res.seq[i];
        if (o.raw) {
            for (size_t i = 0; i < sq.n; i++) printf(o.exact ? "%.9g\n" : "%.6g\n", (double)scores[i]);
        } else {
            oai_request r = {.kind = OAI_RERANK, .documents = in.text, .n_documents = in.n,
                             .top_n = o.top_n, .return_documents = true};
            json_t *j = encj_rerank(&r, scores, o.model, (int)n_tok);
            if (o.json) {
                print_json(j);
            } else {
                json_t *x;
                size_t k;
                json_array_foreach(json_object_get(j, "results"), k, x) {
                    size_t idx = (size_t)json_integer_value(json_object_get(x, "index"));
                    printf("%9.4f  %4zu  %s\n", json_real_value(json_object_get(x, "relevance_score")),
                           idx, in.text[idx]);
                }
                json_decref(j);
            }
        }
        free(scores);
    } else { /* classify */
        json_t *data = o.json ? json_array() : NULL;
        float *probs = malloc((size_t)(so > to ? so : to) * sq.n * sizeof(float) + sizeof(float));
        float *tprobs = NULL;
        if (!probs) goto done;
        for (size_t i = 0; i < sq.n; i++) {
            if (o.raw) {
                if (o.tokens && to)
                    for (size_t k = 0; k < sq.ids[i].n; k++) print_floats(res.tok[i] + k * to, to, o.exact);
                else if (so)
                    print_floats(res.seq + i * so, so, o.exact);
                continue;
            }
            if (so) nlu_softmax(res.seq + i * so, so, probs);
            nlu_entities ents = {0};
            if (to) {
                const size_t n = sq.ids[i].n;
                tprobs = realloc(tprobs, n * (size_t)to * sizeof(float));
                if (!tprobs) goto done;
                for (size_t k = 0; k < n; k++) nlu_softmax(res.tok[i] + k * to, to, tprobs + k * to);
                if (nlu_bio_decode(in.text[i], strlen(in.text[i]), sq.spans[i].v, n, tprobs, to,
                                   (const char *const *)m->tok_head.labels, &ents, &err)) {
                    cli_error("%s", err.msg);
                    goto done;
                }
            }
            if (data) {
                json_array_append_new(data, encj_classify_item((int)i, (const char *const *)m->seq_head.labels,
                                                               probs, so, to ? &ents : NULL));
            } else {
                if (so) {
                    int b = nlu_argmax(probs, so);
                    printf("%s\t%s\t%.4f\n", in.text[i], m->seq_head.labels[b], (double)probs[b]);
                } else {
                    printf("%s\n", in.text[i]);
                }
                for (size_t k = 0; k < ents.n; k++)
                    printf("  %-16s %-24s [%zu, %zu)  %.4f\n", ents.v[k].label, ents.v[k].text,
                           ents.v[k].start, ents.v[k].end, (double)ents.v[k].score);
            }
            nlu_entities_free(&ents);
        }
        free(probs);
        free(tprobs);
        if (data)
            print_json(json_pack("{s:s, s:o, s:s, s:o}", "object", "list", "data", data, "model",
                                 o.model, "usage", encj_usage((int)n_tok)));
    }
    rc = 0;
done:
    results_free(&res, sq.n);
    for (size_t i = 0; i < sq.n; i++) {
        tok_ids_free(&sq.ids[i]);
        tok_spans_free(&sq.spans[i]);
    }
    free(sq.ids);
    free(sq.spans);
    for (size_t i = 0; i < in.n; i++) free(in.text[i]);
    free(in.text);
    free(o.docs);
    encode_free(e);
    tok_vocab_free(v);
    encoder_free(m);
    return rc;
}

int cmd_embed(int argc, char **argv) { return run(EMBED, argc, argv); }
int cmd_classify(int argc, char **argv) { return run(CLASSIFY, argc, argv); }
int cmd_rerank(int argc, char **argv) { return run(RERANK, argc, argv); }
