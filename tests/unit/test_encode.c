/*
 * test_encode — the encoder forward pass (engine/encode.h) against a double-precision reference
 * written here from the definitions, on generated bert / nomic-bert models with every head and
 * pooling type; batch and thread-count invariance; batch validation; the loader's refusals
 * (model/encoder.h) with the tensor or key named.
 */
#include "testutil.h"

#include <math.h>

#include "core/half.h"
#include "engine/encode.h"
#include "engine/ew.h"
#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "model/encoder.h"
#include "model/modelgen.h"
#include "model/quantize.h"
#include "tensor/dtype.h"

#define VOCAB TU_DATA("vocab/ggml-vocab-bert-bge.gguf")

static char *gen(const modelgen_params *p, const char *name) {
    static char path[16][512];
    static int next;
    char *out = path[next++ % 16];
    snprintf(out, 512, "%s/%s.gguf", tu_tmpdir(), name);
    sh_err err = {{0}};
    int rc = modelgen_write(p, out, NULL, &err);
    if (rc) fprintf(stderr, "modelgen: %s\n", err.msg);
    assert_int_equal(rc, 0);
    return out;
}

static void base(modelgen_params *p, const char *arch) {
    modelgen_defaults(p);
    p->arch = arch;
    p->vocab = VOCAB;
    p->dim = 64;
    p->layers = 2;
    p->heads = 4;
    p->ffn = 128;
    p->ctx = 64;
    p->init_std = 0.05f;
    p->seed = 11;
    p->rope_theta = 1000.0f;
}

/* ============================================================ reference ===== */

typedef struct ref {
    gguf_ctx *g;
    int dim, layers, heads, ffn;
    bool nomic, f16;
    double eps, rope_base;
} ref;

static double *tensor(const ref *R, const char *name) {
    const gguf_tensor *t = gguf_find_tensor(R->g, name);
    if (!t) return NULL;
    double *d = malloc(t->n_elems * sizeof *d);
    for (uint64_t i = 0; i < t->n_elems; i++) {
        if (t->type == DT_F32) {
            float f;
            memcpy(&f, (const uint8_t *)t->data + 4 * i, 4);
            d[i] = f;
        } else {
            uint16_t h;
            memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
            d[i] = half_to_f32(h);
        }
    }
    return d;
}

static double *layer_tensor(const ref *R, int l, const char *suffix) {
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s", l, suffix);
    return tensor(R, name);
}

/* y = W x (+ b); x rounded to f16 first when the weights are f16 (as the engine and llama.cpp) */
static void linear(const ref *R, double *y, const double *W, const double *b, const double *x,
                   int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) {
            double xc = R->f16 ? half_to_f32(half_from_f32((float)x[c])) : x[c];
            s += W[(size_t)r * cols + c] * xc;
        }
        y[r] = s + (b ? b[r] : 0);
    }
}

static void layernorm(double *x, const double *w, const double *b, int n, double eps) {
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += x[i];
    m /= n;
    for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    v /= n;
    for (int i = 0; i < n; i++) x[i] = (x[i] - m) / sqrt(v + eps) * w[i] + b[i];
}

/* GELU as the engine computes it (ew.h: llama.cpp's f16 table) */
static double gelu(double x) {
    if (x <= -10) return 0;
    if (x >= 10) return x;
    return ew_gelu_table[half_from_f32((float)x)];
}

/* Final hidden states [n][dim] of one input, then the pooled vector and heads. */
static void ref_forward(const ref *R, const int32_t *tok, int n, double *h) {
    const int D = R->dim, F = R->ffn, H = R->heads, hd = D / H;
    double *te = tensor(R, "token_embd.weight"), *tt = tensor(R, "token_types.weight");
    double *pe = R->nomic ? NULL : tensor(R, "position_embd.weight");
    double *nw = tensor(R, "token_embd_norm.weight"), *nb = tensor(R, "token_embd_norm.bias");
    for (int t = 0; t < n; t++) {
        for (int c = 0; c < D; c++)
            h[t * D + c] = te[(size_t)tok[t] * D + c] + tt[c] + (pe ? pe[(size_t)t * D + c] : 0);
        layernorm(h + t * D, nw, nb, D, R->eps);
    }
    double *q = malloc(sizeof(double) * n * D), *k = malloc(sizeof(double) * n * D);
    double *v = malloc(sizeof(double) * n * D), *a = malloc(sizeof(double) * n * D);
    double *u = malloc(sizeof(double) * F), *gt = malloc(sizeof(double) * F), *o = malloc(sizeof(double) * D);
    double *sc = malloc(sizeof(double) * n);
    for (int l = 0; l < R->layers; l++) {
        double *wq, *wk, *wv, *bq = NULL, *bk = NULL, *bv = NULL, *wqkv = NULL;
        if (R->nomic) {
            wqkv = layer_tensor(R, l, "attn_qkv.weight");
            wq = wqkv, wk = wqkv + (size_t)D * D, wv = wqkv + (size_t)2 * D * D;
        } else {
            wq = layer_tensor(R, l, "attn_q.weight"), wk = layer_tensor(R, l, "attn_k.weight");
            wv = layer_tensor(R, l, "attn_v.weight");
            bq = layer_tensor(R, l, "attn_q.bias"), bk = layer_tensor(R, l, "attn_k.bias");
            bv = layer_tensor(R, l, "attn_v.bias");
        }
        double *wo = layer_tensor(R, l, "attn_output.weight"), *bo = layer_tensor(R, l, "attn_output.bias");
        double *l1w = layer_tensor(R, l, "attn_output_norm.weight"), *l1b = layer_tensor(R, l, "attn_output_norm.bias");
        double *wu = layer_tensor(R, l, "ffn_up.weight"), *bu = layer_tensor(R, l, "ffn_up.bias");
        double *wg = layer_tensor(R, l, "ffn_gate.weight");
        double *wd = layer_tensor(R, l, "ffn_down.weight"), *bd = layer_tensor(R, l, "ffn_down.bias");
        double *l2w = layer_tensor(R, l, "layer_output_norm.weight"), *l2b = layer_tensor(R, l, "layer_output_norm.bias");
        for (int t = 0; t < n; t++) {
            linear(R, q + t * D, wq, bq, h + t * D, D, D);
            linear(R, k + t * D, wk, bk, h + t * D, D, D);
            linear(R, v + t * D, wv, bv, h + t * D, D, D);
            if (R->nomic)
                for (int hh = 0; hh < H; hh++)
                    for (int i = 0; i < hd / 2; i++) { /* NEOX pairs (i, i + hd / 2) */
                        double th = t * pow(R->rope_base, -2.0 * i / hd);
                        double *qq = q + t * D + hh * hd, *kk = k + t * D + hh * hd;
                        double x0 = qq[i], x1 = qq[i + hd / 2];
                        qq[i] = x0 * cos(th) - x1 * sin(th), qq[i + hd / 2] = x0 * sin(th) + x1 * cos(th);
                        x0 = kk[i], x1 = kk[i + hd / 2];
                        kk[i] = x0 * cos(th) - x1 * sin(th), kk[i + hd / 2] = x0 * sin(th) + x1 * cos(th);
                    }
        }
        for (int hh = 0; hh < H; hh++)
            for (int i = 0; i < n; i++) {
                double mx = -1e300, sum = 0;
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    for (int d = 0; d < hd; d++) s += q[i * D + hh * hd + d] * k[j * D + hh * hd + d];
                    sc[j] = s / sqrt((double)hd);
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int j = 0; j < n; j++) sum += sc[j] = exp(sc[j] - mx);
                for (int d = 0; d < hd; d++) {
                    double s = 0;
                    for (int j = 0; j < n; j++) s += sc[j] / sum * v[j * D + hh * hd + d];
                    a[i * D + hh * hd + d] = s;
                }
            }
        for (int t = 0; t < n; t++) {
            double *x = h + t * D;
            linear(R, o, wo, bo, a + t * D, D, D);
            for (int c = 0; c < D; c++) x[c] += o[c];
            layernorm(x, l1w, l1b, D, R->eps);
            linear(R, u, wu, bu, x, F, D);
            if (R->nomic) {
                linear(R, gt, wg, NULL, x, F, D);
                for (int f = 0; f < F; f++) u[f] = gt[f] / (1 + exp(-gt[f])) * u[f];
            } else {
                for (int f = 0; f < F; f++) u[f] = gelu(u[f]);
            }
            linear(R, o, wd, bd, u, D, F);
            for (int c = 0; c < D; c++) x[c] += o[c];
            layernorm(x, l2w, l2b, D, R->eps);
        }
        if (!R->nomic) free(wq), free(wk), free(wv);
        free(wqkv), free(bq), free(bk), free(bv), free(wo), free(bo), free(l1w), free(l1b), free(wu);
        free(bu), free(wg), free(wd), free(bd), free(l2w), free(l2b);
    }
    free(q), free(k), free(v), free(a), free(u), free(gt), free(o), free(sc);
    free(te), free(tt), free(pe), free(nw), free(nb);
}

/* A head (prefix "cls" or "shoal.token_cls") on one hidden row. */
static void ref_head(const ref *R, const char *dense, const char *out, const double *x, double *y,
                     int n_out) {
    char nm[96];
    const int D = R->dim;
    double *tmp = malloc(sizeof(double) * D);
    memcpy(tmp, x, sizeof(double) * D);
    if (dense) {
        snprintf(nm, sizeof nm, "%s.weight", dense);
        double *W = tensor(R, nm);
        snprintf(nm, sizeof nm, "%s.bias", dense);
        double *b = tensor(R, nm);
        linear(R, tmp, W, b, x, D, D);
        for (int c = 0; c < D; c++) tmp[c] = tanh(tmp[c]);
        free(W), free(b);
    }
    snprintf(nm, sizeof nm, "%s.weight", out);
    double *W = tensor(R, nm);
    snprintf(nm, sizeof nm, "%s.bias", out);
    double *b = tensor(R, nm);
    linear(R, y, W, b, tmp, n_out, D);
    free(W), free(b), free(tmp);
}

static double rel_l2(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

/* ============================================================ tests ===== */

static const int32_t TOKS[] = {101, 7592, 2088, 1010, 2023, 2003, 1037, 3231, 102,  /* 9 */
                               101, 2735, 2006, 1996, 3829, 4597, 102,              /* 7 */
                               101, 102};                                          /* 2 */
static const int LENS[] = {9, 7, 2};

/* Every output of the engine against the reference for model p, pooling `pool`. */
static void check_model(const modelgen_params *p, const char *path, double tol) {
    sh_err err = {{0}};
    encoder_model *m = encoder_load(path, NULL, &err);
    if (!m) fail_msg("%s", err.msg);
    ref R = {.g = m->g, .dim = (int)p->dim, .layers = (int)p->layers, .heads = (int)p->heads,
             .ffn = (int)m->hp.ffn, .nomic = !strcmp(p->arch, "nomic-bert"),
             .f16 = p->dtype == DT_F16, .eps = m->hp.norm_eps, .rope_base = p->rope_theta};
    encode_params ep;
    encode_params_default(&ep);
    ep.n_threads = 2;
    encode_ctx *e = encode_init(m, &ep, &err);
    assert_non_null(e);
    unsigned want = (m->hp.pooling != ENCODER_POOL_NONE && m->hp.pooling != ENCODER_POOL_RANK ? ENCODE_POOLED : 0) |
                    (m->seq_head.n_out ? ENCODE_SEQ_HEAD : 0) | (m->tok_head.n_out ? ENCODE_TOK_HEAD : 0);
    encode_batch b = {.n_seq = 3, .tokens = TOKS, .n_tokens = LENS, .want = want};
    if (encode_run(e, &b, &err)) fail_msg("%s", err.msg);
    const int D = R.dim;
    for (int s = 0, t0 = 0; s < 3; t0 += LENS[s], s++) {
        const int n = LENS[s];
        double *h = malloc(sizeof(double) * n * D);
        ref_forward(&R, TOKS + t0, n, h);
        float *got = malloc(sizeof(float) * n * D);
        for (int t = 0; t < n; t++) memcpy(got + t * D, encode_hidden(e, t0 + t), sizeof(float) * D);
        double r = rel_l2(got, h, (size_t)n * D);
        if (r > tol) fail_msg("%s input %d: hidden states rel L2 %g > %g", path, s, r, tol);
        if (want & ENCODE_POOLED) {
            double pooled[512] = {0};
            for (int c = 0; c < D; c++) {
                if (m->hp.pooling == ENCODER_POOL_MEAN) {
                    for (int t = 0; t < n; t++) pooled[c] += h[t * D + c] / n;
                } else {
                    pooled[c] = h[(m->hp.pooling == ENCODER_POOL_LAST ? n - 1 : 0) * D + c];
                }
            }
            r = rel_l2(encode_pooled(e, s), pooled, (size_t)D);
            if (r > tol) fail_msg("%s input %d: pooled rel L2 %g", path, s, r);
        }
        if (want & ENCODE_SEQ_HEAD) {
            double y[64];
            ref_head(&R, m->seq_head.dense.n_rows ? "cls" : NULL, "cls.output", h, y, m->seq_head.n_out);
            r = rel_l2(encode_seq_logits(e, s), y, (size_t)m->seq_head.n_out);
            if (r > tol) fail_msg("%s input %d: sequence head rel L2 %g", path, s, r);
        }
        if (want & ENCODE_TOK_HEAD) {
            const bool tagger = p->tok_only;
            const int no = m->tok_head.n_out;
            double *y = malloc(sizeof(double) * n * no);
            float *g2 = malloc(sizeof(float) * n * no);
            for (int t = 0; t < n; t++) {
                ref_head(&R, NULL, tagger ? "cls.output" : "shoal.token_cls.output", h + t * D,
                         y + t * no, no);
                memcpy(g2 + t * no, encode_tok_logits(e, t0 + t), sizeof(float) * no);
            }
            r = rel_l2(g2, y, (size_t)n * no);
            if (r > tol) fail_msg("%s input %d: token head rel L2 %g", path, s, r);
            free(y), free(g2);
        }
        free(h);
        free(got);
    }
    encode_free(e);
    encoder_free(m);
}

static void test_bert_heads(void **state) {
    (void)state;
    modelgen_params p;
    base(&p, "bert");
    p.cls_labels = "neg,neu,pos";
    p.cls_dense = true;
    p.tok_labels = "O,B-room,I-room";
    check_model(&p, gen(&p, "bert-heads"), 5e-5);
    p.pooling = 2; /* cls */
    check_model(&p, gen(&p, "bert-cls"), 5e-5);
    p.pooling = 3; /* last */
    p.cls_dense = false;
    p.dtype = DT_F16;
    check_model(&p, gen(&p, "bert-last-f16"), 1e-4);
}

static void test_tagger_and_reranker(void **state) {
    (void)state;
    modelgen_params p;
    base(&p, "bert");
    p.pooling = 0;
    p.tok_only = true;
    p.tok_labels = "O,B-x,I-x,B-y,I-y";
    check_model(&p, gen(&p, "tagger"), 5e-5);
    base(&p, "bert");
    p.pooling = 4;
    p.cls_dense = true;
    check_model(&p, gen(&p, "reranker"), 5e-5);
}

static void test_nomic(void **state) {
    (void)state;
    modelgen_params p;
    base(&p, "nomic-bert");
    p.ctx = 128;
    check_model(&p, gen(&p, "nomic"), 5e-5);
    p.dtype = DT_F16;
    p.cls_labels = "a,b";
    check_model(&p, gen(&p, "nomic-f16"), 1e-4);
}

/* Q8_0 weights: within a quantized tolerance of the f32 file's reference. */
static void test_quantized(void **state) {
    (void)state;
    modelgen_params p;
    base(&p, "bert");
    p.cls_labels = "a,b,c";
    const char *f32 = gen(&p, "q-src");
    char q8[600];
    snprintf(q8, sizeof q8, "%s/q8.gguf", tu_tmpdir());
    sh_err err = {{0}};
    assert_int_equal(quantize_file(f32, q8, "q8_0", 2, NULL, NULL, &err), 0);
    /* the reference reads the f32 file's weights; the engine the Q8_0 file */
    encoder_model *m = encoder_load(q8, NULL, &err), *mf = encoder_load(f32, NULL, &err);
    assert_non_null(m);
    assert_non_null(mf);
    assert_string_equal(m->type_name, "Q8_0");
    encode_params ep;
    encode_params_default(&ep);
    encode_ctx *e = encode_init(m, &ep, &err), *ef = encode_init(mf, &ep, &err);
    encode_batch b = {.n_seq = 3, .tokens = TOKS, .n_tokens = LENS, .want = ENCODE_POOLED | ENCODE_SEQ_HEAD};
    assert_int_equal(encode_run(e, &b, &err), 0);
    assert_int_equal(encode_run(ef, &b, &err), 0);
    for (int s = 0; s < 3; s++) {
        double want_v[64];
        for (int c = 0; c < 64; c++) want_v[c] = encode_pooled(ef, s)[c];
        double r = rel_l2(encode_pooled(e, s), want_v, 64);
        if (r > 2e-2) fail_msg("Q8_0 input %d: rel L2 %g", s, r);
    }
    encode_free(e), encode_free(ef), encoder_free(m), encoder_free(mf);
}

/* The same input alone, batched with others or at another place, and with 1 or 2 threads:
 * the same bits. */
static void test_invariance(void **state) {
    (void)state;
    modelgen_params p;
    base(&p, "bert");
    p.cls_labels = "a,b";
    p.tok_labels = "O,B-x,I-x";
    sh_err err = {{0}};
    encoder_model *m = encoder_load(gen(&p, "inv"), NULL, &err);
    assert_non_null(m);
    const unsigned want = ENCODE_POOLED | ENCODE_SEQ_HEAD | ENCODE_TOK_HEAD;
    const int D = 64;
    float alone[9 * 64], pooled_alone[64], seq_alone[2];
    for (int threads = 1; threads <= 2; threads++) {
        encode_params ep;
        encode_params_default(&ep);
        ep.n_threads = threads;
        encode_ctx *e = encode_init(m, &ep, &err);
        int len0 = 9;
        encode_batch b1 = {.n_seq = 1, .tokens = TOKS, .n_tokens = &len0, .want = want};
        assert_int_equal(encode_run(e, &b1, &err), 0);
        if (threads == 1) {
            for (int t = 0; t < 9; t++) memcpy(alone + t * D, encode_hidden(e, t), sizeof(float) * D);
            memcpy(pooled_alone, encode_pooled(e, 0), sizeof pooled_alone);
            memcpy(seq_alone, encode_seq_logits(e, 0), sizeof seq_alone);
        }
        /* the first input again, now second in a batch after another */
        int32_t toks[16];
        memcpy(toks, TOKS + 9, 7 * sizeof *toks);
        memcpy(toks + 7, TOKS, 9 * sizeof *toks);
        int lens[2] = {7, 9};
        encode_batch b2 = {.n_seq = 2, .tokens = toks, .n_tokens = lens, .want = want};
        assert_int_equal(encode_run(e, &b2, &err), 0);
        for (int t = 0; t < 9; t++) assert_memory_equal(encode_hidden(e, 7 + t), alone + t * D, sizeof(float) * D);
        assert_memory_equal(encode_pooled(e, 1), pooled_alone, sizeof pooled_alone);
        assert_memory_equal(encode_seq_logits(e, 1), seq_alone, sizeof seq_alone);
        encode_free(e);
    }
    encoder_free(m);
}

static void test_batch_errors(void **state) {
    (void)state;
    modelgen_params p;
    base(&p, "bert");
    p.ctx = 16;
    sh_err err = {{0}};
    encoder_model *m = encoder_load(gen(&p, "errs"), NULL, &err);
    assert_non_null(m);
    encode_params ep;
    encode_params_default(&ep);
    ep.n_seqs = 4;
    encode_ctx *e = encode_init(m, &ep, &err);
    int32_t toks[40] = {0};
    int lens[8] = {17};
    encode_batch b = {.n_seq = 1, .tokens = toks, .n_tokens = lens, .want = ENCODE_POOLED};
    assert_int_equal(encode_run(e, &b, &err), -1);
    assert_non_null(strstr(err.msg, "17 tokens"));
    lens[0] = 0;
    assert_int_equal(encode_run(e, &b, &err), -1);
    lens[0] = 3;
    toks[1] = 999999;
    assert_int_equal(encode_run(e, &b, &err), -1);
    assert_non_null(strstr(err.msg, "999999"));
    toks[1] = 5;
    b.want = ENCODE_SEQ_HEAD;
    assert_int_equal(encode_run(e, &b, &err), -1);
    assert_non_null(strstr(err.msg, "sequence classification head"));
    b.want = ENCODE_TOK_HEAD;
    assert_int_equal(encode_run(e, &b, &err), -1);
    b.want = ENCODE_POOLED;
    b.n_seq = 5;
    for (int i = 0; i < 8; i++) lens[i] = 2;
    assert_int_equal(encode_run(e, &b, &err), -1);
    b.n_seq = 4;
    assert_int_equal(encode_run(e, &b, &err), 0);
    encode_free(e);
    encoder_free(m);
}

/* ============================================================ the loader ===== */

/* The generated file with tensor `drop` left out, tensor `reshape` given a wrong shape, or a
 * key changed, rewritten into memory; returns the loader's message (or "" when it loads). */
static const char *load_variant(const char *src, const char *drop, const char *reshape,
                                const char *key, const gguf_value *val, const char *extra) {
    static sh_err err;
    memset(&err, 0, sizeof err);
    gguf_ctx *g = gguf_open(src, &err);
    assert_non_null(g);
    gguf_writer *w = gguf_writer_init();
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (key && !strcmp(g->kv[i].key, key)) {
            if (val) gguf_writer_add(w, key, val);
            continue;
        }
        gguf_writer_add(w, g->kv[i].key, &g->kv[i].val);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (drop && !strcmp(t->name, drop)) continue;
        uint64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        uint64_t size = t->size;
        if (reshape && !strcmp(t->name, reshape)) { /* half the rows */
            ne[t->n_dims - 1] /= 2;
            size /= 2;
        }
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, ne, t->data, size);
    }
    if (extra) {
        static float z[64];
        uint64_t ne[1] = {64};
        gguf_writer_add_tensor(w, extra, DT_F32, 1, ne, z, sizeof z);
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(gguf_writer_write_mem(w, &buf, &len, &err), 0);
    gguf_writer_free(w);
    gguf_free(g);
    gguf_ctx *mg = gguf_open_mem(buf, len, "variant.gguf", &err);
    assert_non_null(mg);
    encoder_model *m = encoder_from_gguf(mg, NULL, &err);
    if (m) {
        encoder_free(m);
        err.msg[0] = 0;
    } else {
        gguf_free(mg);
    }
    free(buf);
    return err.msg;
}

static void test_load_errors(void **state) {
    (void)state;
    modelgen_params p;
    base(&p, "bert");
    p.cls_labels = "a,b";
    const char *src = gen(&p, "loader");
    assert_string_equal(load_variant(src, NULL, NULL, NULL, NULL, NULL), "");
    const char *msg = load_variant(src, "blk.1.attn_k.weight", NULL, NULL, NULL, NULL);
    assert_non_null(strstr(msg, "missing tensor 'blk.1.attn_k.weight'"));
    msg = load_variant(src, NULL, "blk.0.ffn_up.weight", NULL, NULL, NULL);
    assert_non_null(strstr(msg, "tensor 'blk.0.ffn_up.weight' has shape"));
    msg = load_variant(src, "position_embd.weight", NULL, NULL, NULL, NULL);
    assert_non_null(strstr(msg, "position_embd.weight"));
    msg = load_variant(src, NULL, NULL, NULL, NULL, "blk.0.attn_q_norm.weight");
    assert_non_null(strstr(msg, "'blk.0.attn_q_norm.weight' is not part of a bert encoder"));
    gguf_value v = {.type = GGUF_BOOL, .v.u = 1};
    msg = load_variant(src, NULL, NULL, "bert.attention.causal", &v, NULL);
    assert_non_null(strstr(msg, "causal"));
    gguf_value arch = {.type = GGUF_STR, .v.str = {"jina-bert-v2", 12}};
    msg = load_variant(src, NULL, NULL, "general.architecture", &arch, NULL);
    assert_non_null(strstr(msg, "unsupported encoder architecture 'jina-bert-v2'"));
    gguf_value pool = {.type = GGUF_U32, .v.u = 9};
    msg = load_variant(src, NULL, NULL, "bert.pooling_type", &pool, NULL);
    assert_non_null(strstr(msg, "pooling_type"));
    msg = load_variant(src, NULL, NULL, "bert.classifier.output_labels", NULL, NULL);
    assert_string_equal(msg, ""); /* unnamed outputs are LABEL_i */
    msg = load_variant(src, "cls.output.weight", NULL, NULL, NULL, NULL);
    assert_non_null(strstr(msg, "'cls.output.bias' but no 'cls.output.weight'"));
}

static void test_labels_and_pooling_names(void **state) {
    (void)state;
    modelgen_params p;
    base(&p, "bert");
    p.cls_labels = "a,b";
    sh_err err = {{0}};
    const char *src = gen(&p, "unnamed");
    encoder_model *m = encoder_load(src, NULL, &err);
    assert_non_null(m);
    assert_int_equal(m->seq_head.n_out, 2);
    assert_string_equal(m->seq_head.labels[1], "b");
    assert_int_equal(m->hp.pooling, ENCODER_POOL_MEAN);
    encoder_free(m);
    assert_int_equal(encoder_pooling_from_name("rank"), ENCODER_POOL_RANK);
    assert_int_equal(encoder_pooling_from_name("avg"), -1);
    assert_string_equal(encoder_pooling_name(ENCODER_POOL_LAST), "last");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bert_heads),
        cmocka_unit_test(test_tagger_and_reranker),
        cmocka_unit_test(test_nomic),
        cmocka_unit_test(test_quantized),
        cmocka_unit_test(test_invariance),
        cmocka_unit_test(test_batch_errors),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_labels_and_pooling_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
