/*
 * test_engine — the forward pass against a naive double-precision reference written here, on
 * small generated models (llama / qwen2, GQA / MQA, head sizes, RoPE bases, tied embeddings,
 * biases), plus prefill-vs-decode consistency, multi-sequence batch invariance, thread-count
 * invariance and batch validation errors.
 */
#include "testutil.h"

#include <math.h>

#include "core/half.h"
#include "engine/attn.h"
#include "engine/engine.h"
#include "engine/ew.h"
#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "model/model.h"
#include "model/modelgen.h"
#include "model/quantize.h"
#include "tensor/dtype.h"
#include "tensor/vecdot.h"

#define N_VOCAB 96

/* ============================================================ fixtures ===== */

/* A vocab-only GGUF with N_VOCAB tokens (modelgen copies its tokenizer keys). */
static const char *vocab_path(void) {
    static char path[512];
    if (path[0]) return path;
    snprintf(path, sizeof path, "%s/vocab.gguf", tu_tmpdir());
    gguf_writer *w = gguf_writer_init();
    char bufs[N_VOCAB][16];
    const char *toks[N_VOCAB];
    for (int i = 0; i < N_VOCAB; i++) {
        snprintf(bufs[i], sizeof bufs[i], "t%d", i);
        toks[i] = bufs[i];
    }
    gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", N_VOCAB, toks);
    sh_err err = {{0}};
    assert_int_equal(gguf_writer_write(w, path, &err), 0);
    gguf_writer_free(w);
    return path;
}

static char *gen_model(const modelgen_params *p, const char *name) {
    static char path[8][512];
    static int next;
    char *out = path[next++ % 8];
    snprintf(out, 512, "%s/%s.gguf", tu_tmpdir(), name);
    sh_err err = {{0}};
    int rc = modelgen_write(p, out, NULL, &err);
    if (rc) fprintf(stderr, "modelgen: %s\n", err.msg);
    assert_int_equal(rc, 0);
    return out;
}

static void base_params(modelgen_params *p) {
    modelgen_defaults(p);
    p->vocab = vocab_path();
    p->dim = 64;
    p->layers = 2;
    p->heads = 4;
    p->kv_heads = 2;
    p->ffn = 96;
    p->ctx = 64;
    p->init_std = 0.1f; /* larger than the default so attention is far from uniform */
    p->seed = 7;
}

/* ============================================================ reference ===== */

/* A tensor of the generated file as doubles (F32 / F16 only), malloc'd. */
static double *ref_tensor(const gguf_ctx *g, const char *name, uint64_t *n_out) {
    const gguf_tensor *t = gguf_find_tensor(g, name);
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
    if (n_out) *n_out = t->n_elems;
    return d;
}

/* y[r] = sum_c W[r * cols + c] x[c] */
static void ref_matvec(double *y, const double *W, const double *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += W[(size_t)r * cols + c] * x[c];
        y[r] = s;
    }
}

static void ref_rmsnorm(double *o, const double *x, const double *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) o[i] = x[i] * s * w[i];
}

/* RoPE on the first n_rot dims of one head: pairs (2i, 2i+1) or, NEOX, (i, i + n_rot/2);
 * angle pos * scale * base^(-2i/n_rot) / ff[i] (ff: Llama-3 frequency factors, or NULL). */
static void ref_rope(double *v, int n_rot, int pos, double base, double scale, const double *ff,
                     bool neox) {
    for (int i = 0; i < n_rot / 2; i++) {
        double th = pos * scale * pow(base, -2.0 * i / n_rot) / (ff ? ff[i] : 1.0);
        int a = neox ? i : 2 * i, b = neox ? i + n_rot / 2 : 2 * i + 1;
        double x0 = v[a], x1 = v[b];
        v[a] = x0 * cos(th) - x1 * sin(th);
        v[b] = x0 * sin(th) + x1 * cos(th);
    }
}

/* Logits of the last of n tokens, straight from the definition (no cache tricks: K and V of
 * every position are recomputed). p gives the shape; the weights come from the file. */
static void ref_forward(const modelgen_params *p, const char *path, const int32_t *tok, int n,
                        double *logits) {
    sh_err err = {{0}};
    gguf_ctx *g = gguf_open(path, &err);
    assert_non_null(g);
    int dim = (int)p->dim, H = (int)p->heads, KV = (int)(p->kv_heads ? p->kv_heads : p->heads);
    int hd = (int)(p->head_dim ? p->head_dim : p->dim / p->heads), F = (int)p->ffn;
    int qd = H * hd, kvd = KV * hd;
    bool neox = !strcmp(p->arch, "qwen2");
    /* optional RoPE settings, read from the file like a loader would */
    char key[96];
    uint32_t n_rot = (uint32_t)hd;
    snprintf(key, sizeof key, "%s.rope.dimension_count", p->arch);
    gguf_get_u32(g, key, &n_rot);
    double rscale = 1.0, factor;
    snprintf(key, sizeof key, "%s.rope.scaling.factor", p->arch);
    if (gguf_get_f64(g, key, &factor)) rscale = 1.0 / factor;
    double *ff = ref_tensor(g, "rope_freqs.weight", NULL);
    double *emb = ref_tensor(g, "token_embd.weight", NULL);
    double *x = calloc((size_t)n * dim, sizeof *x);
    for (int t = 0; t < n; t++)
        for (int i = 0; i < dim; i++) x[t * dim + i] = emb[(size_t)tok[t] * dim + i];
    double *h = malloc(sizeof *h * dim), *q = malloc(sizeof *q * (size_t)n * qd);
    double *k = malloc(sizeof *k * (size_t)n * kvd), *v = malloc(sizeof *v * (size_t)n * kvd);
    double *a = malloc(sizeof *a * qd), *o = malloc(sizeof *o * dim);
    double *g1 = malloc(sizeof *g1 * F), *u1 = malloc(sizeof *u1 * F);
    double *sc = malloc(sizeof *sc * n);
    char nm[96];
    for (uint32_t l = 0; l < p->layers; l++) {
#define W(s) (snprintf(nm, sizeof nm, "blk.%u." s, l), ref_tensor(g, nm, NULL))
        double *an = W("attn_norm.weight"), *wq = W("attn_q.weight"), *wk = W("attn_k.weight");
        double *wv = W("attn_v.weight"), *wo = W("attn_output.weight");
        double *bq = W("attn_q.bias"), *bk = W("attn_k.bias"), *bv = W("attn_v.bias");
        double *fn = W("ffn_norm.weight"), *wg = W("ffn_gate.weight"), *wu = W("ffn_up.weight");
        double *wd = W("ffn_down.weight");
#undef W
        for (int t = 0; t < n; t++) {
            ref_rmsnorm(h, x + t * dim, an, dim, p->norm_eps);
            ref_matvec(q + t * qd, wq, h, qd, dim);
            ref_matvec(k + t * kvd, wk, h, kvd, dim);
            ref_matvec(v + t * kvd, wv, h, kvd, dim);
            for (int i = 0; bq && i < qd; i++) q[t * qd + i] += bq[i];
            for (int i = 0; bk && i < kvd; i++) k[t * kvd + i] += bk[i];
            for (int i = 0; bv && i < kvd; i++) v[t * kvd + i] += bv[i];
            for (int hh = 0; hh < H; hh++)
                ref_rope(q + t * qd + hh * hd, (int)n_rot, t, p->rope_theta, rscale, ff, neox);
            for (int hh = 0; hh < KV; hh++)
                ref_rope(k + t * kvd + hh * hd, (int)n_rot, t, p->rope_theta, rscale, ff, neox);
        }
        for (int t = 0; t < n; t++) {
            for (int hh = 0; hh < H; hh++) {
                int kh = hh / (H / KV);
                double mx = -INFINITY, sum = 0;
                for (int s = 0; s <= t; s++) {
                    double d = 0;
                    for (int i = 0; i < hd; i++) d += q[t * qd + hh * hd + i] * k[s * kvd + kh * hd + i];
                    sc[s] = d / sqrt((double)hd);
                    if (sc[s] > mx) mx = sc[s];
                }
                for (int s = 0; s <= t; s++) sum += (sc[s] = exp(sc[s] - mx));
                for (int i = 0; i < hd; i++) {
                    double acc = 0;
                    for (int s = 0; s <= t; s++) acc += sc[s] / sum * v[s * kvd + kh * hd + i];
                    a[hh * hd + i] = acc;
                }
            }
            ref_matvec(o, wo, a, dim, qd);
            for (int i = 0; i < dim; i++) x[t * dim + i] += o[i];
            ref_rmsnorm(h, x + t * dim, fn, dim, p->norm_eps);
            ref_matvec(g1, wg, h, F, dim);
            ref_matvec(u1, wu, h, F, dim);
            for (int i = 0; i < F; i++) g1[i] = g1[i] / (1 + exp(-g1[i])) * u1[i];
            ref_matvec(o, wd, g1, dim, F);
            for (int i = 0; i < dim; i++) x[t * dim + i] += o[i];
        }
        free(an), free(wq), free(wk), free(wv), free(wo), free(bq), free(bk), free(bv);
        free(fn), free(wg), free(wu), free(wd);
    }
    double *on = ref_tensor(g, "output_norm.weight", NULL);
    double *wout = ref_tensor(g, "output.weight", NULL);
    ref_rmsnorm(h, x + (n - 1) * dim, on, dim, p->norm_eps);
    ref_matvec(logits, wout ? wout : emb, h, N_VOCAB, dim);
    free(on), free(wout), free(emb), free(x), free(h), free(q), free(k), free(v), free(a);
    free(o), free(g1), free(u1), free(sc), free(ff);
    gguf_free(g);
}

/* ============================================================ engine helpers ===== */

static engine *mk_engine(const model *m, int n_seq, int threads, bool kv_f32) {
    engine_params ep;
    engine_params_default(&ep);
    ep.n_ctx = 48;
    ep.n_seq = n_seq;
    ep.n_batch = 64;
    ep.n_logits = 64;
    ep.n_threads = threads;
    ep.kv_f32 = kv_f32;
    sh_err err = {{0}};
    engine *e = engine_init(m, &ep, &err);
    if (!e) fprintf(stderr, "engine_init: %s\n", err.msg);
    assert_non_null(e);
    return e;
}

static model *load(const char *path) {
    sh_err err = {{0}};
    model *m = model_load(path, &err);
    if (!m) fprintf(stderr, "model_load: %s\n", err.msg);
    assert_non_null(m);
    return m;
}

static void prompt(int32_t *tok, int n, uint64_t seed) {
    for (int i = 0; i < n; i++) tok[i] = (int32_t)(tu_rand(&seed) % N_VOCAB);
}

/* Prefill of tok[0..n) into sequence 0; copies the last logits to out. */
static void prefill(engine *e, const int32_t *tok, int n, float *out) {
    int32_t pos[64];
    for (int i = 0; i < n; i++) pos[i] = i;
    engine_batch b = {.n = n, .token = tok, .pos = pos};
    sh_err err = {{0}};
    assert_int_equal(engine_decode(e, &b, &err), 0);
    memcpy(out, engine_logits(e, n - 1), N_VOCAB * sizeof(float));
}

static double rel_l2(const float *a, const double *ref, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        num += (a[i] - ref[i]) * (a[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num / den);
}

/* ============================================================ tests ===== */

static void check_file_vs_reference(modelgen_params *p, const char *path, const char *name) {
    model *m = load(path);
    int32_t tok[20];
    prompt(tok, 20, p->seed + 1);
    double ref[N_VOCAB];
    float got[N_VOCAB];
    ref_forward(p, path, tok, 20, ref);
    engine *e = mk_engine(m, 1, 2, true);
    prefill(e, tok, 20, got);
    double r32 = rel_l2(got, ref, N_VOCAB);
    engine_free(e);
    e = mk_engine(m, 1, 2, false);
    prefill(e, tok, 20, got);
    double r16 = rel_l2(got, ref, N_VOCAB);
    engine_free(e);
    model_free(m);
    double tol32 = p->dtype == DT_F16 ? 1e-3 : 1e-5; /* f16 weights: reference uses them too */
    if (r32 > tol32 || r16 > 2e-3)
        fprintf(stderr, "%s: rel_l2 f32-kv %.3g f16-kv %.3g\n", name, r32, r16);
    assert_true(r32 <= tol32);
    assert_true(r16 <= 2e-3);
}

static void check_vs_reference(modelgen_params *p, const char *name) {
    check_file_vs_reference(p, gen_model(p, name), name);
}

/* Llama-3 style RoPE extras added to a generated file: linear scaling (factor 2), partial
 * rotary (8 of 16 dims) and rope_freqs.weight frequency divisors. */
static void test_llama_rope_extras(void **state) {
    (void)state;
    modelgen_params p;
    base_params(&p);
    const char *src = gen_model(&p, "rx_src");
    char dst[512];
    snprintf(dst, sizeof dst, "%s/rx.gguf", tu_tmpdir());
    sh_err err = {{0}};
    gguf_ctx *g = gguf_open(src, &err);
    assert_non_null(g);
    gguf_writer *w = gguf_writer_init();
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, "llama.rope.dimension_count"))
            gguf_writer_add(w, g->kv[i].key, &g->kv[i].val);
    gguf_writer_add_u32(w, "llama.rope.dimension_count", 8);
    gguf_writer_add_str(w, "llama.rope.scaling.type", "linear");
    gguf_writer_add_f32(w, "llama.rope.scaling.factor", 2.0f);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->size);
    }
    float ff[4] = {1.0f, 1.5f, 4.0f, 8.0f};
    uint64_t ne[1] = {4};
    gguf_writer_add_tensor(w, "rope_freqs.weight", DT_F32, 1, ne, ff, sizeof ff);
    assert_null(gguf_writer_error(w));
    assert_int_equal(gguf_writer_write(w, dst, &err), 0);
    gguf_writer_free(w);
    gguf_free(g);
    model *m = load(dst);
    assert_int_equal(m->hp.n_rot, 8);
    assert_float_equal(m->hp.rope_scale, 0.5, 1e-7);
    assert_non_null(m->rope_freqs);
    model_free(m);
    check_file_vs_reference(&p, dst, "rope_extras");
}

static void test_llama_gqa(void **state) {
    (void)state;
    modelgen_params p;
    base_params(&p);
    check_vs_reference(&p, "llama_gqa");
}

static void test_llama_mqa_hd32_theta(void **state) {
    (void)state;
    modelgen_params p;
    base_params(&p);
    p.heads = 2;
    p.kv_heads = 1;
    p.rope_theta = 500000.0f;
    check_vs_reference(&p, "llama_mqa");
}

static void test_llama_head_dim_override(void **state) {
    (void)state;
    modelgen_params p;
    base_params(&p);
    p.head_dim = 24; /* q_dim 96 != dim 64: attention.key_length is used */
    check_vs_reference(&p, "llama_hd24");
}

static void test_qwen2_tied_bias(void **state) {
    (void)state;
    modelgen_params p;
    base_params(&p);
    p.arch = "qwen2";
    p.tied = true;
    p.qkv_bias = true;
    p.rope_theta = 1000000.0f;
    check_vs_reference(&p, "qwen2");
}

static void test_llama_f16(void **state) {
    (void)state;
    modelgen_params p;
    base_params(&p);
    p.dtype = DT_F16;
    p.kv_heads = 4;
    check_vs_reference(&p, "llama_f16");
}

/* Quantized copies of a model (llama.cpp's quantizer rules) against the f32 reference: the
 * error must stay at the quantization noise level, and the embedding lookup of a quantized
 * token_embd must work. */
static void test_quantized(void **state) {
    (void)state;
    modelgen_params p;
    base_params(&p);
    const char *path = gen_model(&p, "qsrc");
    int32_t tok[16];
    prompt(tok, 16, 77);
    double ref[N_VOCAB];
    ref_forward(&p, path, tok, 16, ref);
    const char *types[] = {"q8_0", "q4_0", "q5_1"};
    const double tol[] = {5e-2, 0.4, 0.3}; /* measured 0.023, 0.22, 0.15; a wrong row or scale gives ~1 */
    for (int t = 0; t < 3; t++) {
        char out[512];
        snprintf(out, sizeof out, "%s/q-%s.gguf", tu_tmpdir(), types[t]);
        sh_err err = {{0}};
        assert_int_equal(quantize_file(path, out, types[t], 1, NULL, NULL, &err), 0);
        model *m = load(out);
        engine *e = mk_engine(m, 1, 2, true);
        float got[N_VOCAB];
        prefill(e, tok, 16, got);
        double r = rel_l2(got, ref, N_VOCAB);
        fprintf(stderr, "%s: rel_l2 vs f32 reference %.3g (%s)\n", types[t], r, m->type_name);
        assert_true(r < tol[t]);
        engine_free(e);
        model_free(m);
    }
}

/* attn dots (loops over positions with q in registers) are bit-identical to one dot per
 * position, wsum_f16 to zeroing and one axpy per position, for every length path; wsum_f32
 * (llama.cpp's order, pinned in test_attn) is within float rounding of the exact sum. */
static void test_attn_wsum(void **state) {
    (void)state;
    const attn_ops *op = attn_get();
    enum { NT = 13, N = 130, STRIDE = 136 };
    float p[NT], xf[NT * STRIDE], a[N], b[N];
    uint16_t xh[NT * STRIDE];
    uint64_t seed = 17;
    for (int t = 0; t < NT; t++) p[t] = tu_randf(&seed);
    for (int i = 0; i < NT * STRIDE; i++) {
        xf[i] = tu_randf(&seed) * 3;
        xh[i] = half_from_f32(xf[i]);
    }
    float q[N], sa[NT], sb[NT];
    for (int i = 0; i < N; i++) q[i] = tu_randf(&seed);
    static const int ns[] = {64, 128, 1, 38, 75};
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) { /* dots = one dot per position */
        const int n = ns[c];
        for (int t = 0; t < NT; t++) sa[t] = op->dot_f16(q, xh + t * STRIDE, n) * 0.125f;
        op->dots_f16(sb, q, xh, STRIDE, NT, n, 0.125f);
        assert_memory_equal(sa, sb, sizeof sa);
        for (int t = 0; t < NT; t++) sa[t] = op->dot_f32(q, xf + t * STRIDE, n) * 0.125f;
        op->dots_f32(sb, q, xf, STRIDE, NT, n, 0.125f);
        assert_memory_equal(sa, sb, sizeof sa);
    }
    for (int n = 1; n <= N; n += 37) {
        memset(a, 0, sizeof a);
        for (int t = 0; t < NT; t++) op->axpy_f16(a, p[t], xh + t * STRIDE, n);
        op->wsum_f16(b, p, xh, STRIDE, NT, n);
        assert_memory_equal(a, b, (size_t)n * sizeof(float));
        op->wsum_f32(b, p, xf, STRIDE, NT, n); /* its own order: test_attn pins it */
        for (int i = 0; i < n; i++) {
            double ref = 0, mag = 0;
            for (int t = 0; t < NT; t++) {
                ref += (double)p[t] * xf[t * STRIDE + i];
                mag += fabs((double)p[t] * xf[t * STRIDE + i]);
            }
            assert_true(fabs(b[i] - ref) <= 1e-6 * mag + 1e-30);
        }
    }
}

/* silu(g) * u: close to the expf formula (also far into both tails), and each element's
 * result independent of its position and of the array length (the vector tail). */
static void test_ew_silu(void **state) {
    (void)state;
    const ew_ops *op = ew_get();
    enum { N = 83 };
    float g[N], u[N], a[N], b[N];
    uint64_t seed = 23;
    for (int i = 0; i < N; i++) {
        g[i] = tu_randf(&seed) * (i % 7 == 0 ? 120.0f : 12.0f);
        u[i] = tu_randf(&seed) * 2;
    }
    g[0] = 0.0f, g[1] = -100.0f, g[2] = 100.0f, g[3] = -87.0f;
    memcpy(a, g, sizeof a);
    op->silu_mul(a, u, N);
    for (int i = 0; i < N; i++) {
        const double ref = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        if (fabs(a[i] - ref) > 1e-6 * fabs(ref) + 1e-30)
            fail_msg("silu_mul(%.9g) * %.9g = %.9g, expected %.9g", g[i], u[i], a[i], ref);
    }
    for (int off = 1; off < 12; off += 5) /* shifted and shortened: the same bits */
        for (int len = 1; len + off <= N; len += 13) {
            memcpy(b, g + off, (size_t)len * sizeof(float));
            op->silu_mul(b, u + off, len);
            assert_memory_equal(b, a + off, (size_t)len * sizeof(float));
        }
}

/* argmax: every version gives the reference loop's index, on random rows of every length up
 * to 100, with ties (the first wins), NaNs (never win; x[0] NaN gives 0), -0.0 next to 0.0,
 * infinities, and the maximum in the vector tail. */
static void test_ew_argmax(void **state) {
    (void)state;
    const ew_ops *ops[2] = {&ew_ops_scalar, vecdot_best_isa() >= ISA_AVX2 ? &ew_ops_avx2 : NULL};
    enum { N = 100 };
    float x[N];
    uint64_t seed = 5;
    int checked = 0;
    for (int trial = 0; trial < 4000; trial++) {
        int n = 1 + trial % N;
        for (int i = 0; i < n; i++) x[i] = (float)(int)(tu_randf(&seed) * 8); /* many ties */
        switch (trial % 7) {
        case 1: x[tu_rand(&seed) % (uint64_t)n] = NAN; break;
        case 2: x[0] = NAN; break;
        case 3: x[tu_rand(&seed) % (uint64_t)n] = INFINITY; break;
        case 4:
            for (int i = 0; i < n; i++) x[i] = i % 2 ? -0.0f : 0.0f;
            break;
        case 5: x[n - 1] = 100.0f; break;
        case 6:
            for (int i = 0; i < n; i++) x[i] = -INFINITY;
            break;
        }
        const int64_t want = ew_argmax_ref(x, n);
        for (int k = 0; k < 2; k++) {
            if (!ops[k]) continue;
            const int64_t got = ops[k]->argmax(x, n);
            if (got != want) fail_msg("argmax version %d, n=%d trial %d: %lld, want %lld", k, n,
                                      trial, (long long)got, (long long)want);
            checked++;
        }
    }
    assert_true(checked >= 4000);
}

/* Repacked (default) and file-layout (no_repack) weights: both close to the f32 reference,
 * each bit-identical between one prefill batch and token-by-token decoding. */
static void test_repack(void **state) {
    (void)state;
    modelgen_params p;
    base_params(&p);
    const char *path = gen_model(&p, "rpsrc");
    int32_t tok[16];
    prompt(tok, 16, 77);
    double ref[N_VOCAB];
    ref_forward(&p, path, tok, 16, ref);
    const char *types[] = {"q8_0", "q4_0"};
    const double tol[] = {5e-2, 0.4};
    for (int t = 0; t < 2; t++) {
        char out[512];
        snprintf(out, sizeof out, "%s/rp-%s.gguf", tu_tmpdir(), types[t]);
        sh_err err = {{0}};
        assert_int_equal(quantize_file(path, out, types[t], 1, NULL, NULL, &err), 0);
        for (int no_repack = 0; no_repack < 2; no_repack++) {
            model_params mp = {.no_repack = no_repack};
            model *m = model_load_ex(out, &mp, &err);
            assert_non_null(m);
            const vecdot_kernel *k = vecdot_get(m->layers[0].wq.type);
            const bool packs = !no_repack && k->matmul_packed != NULL;
            assert_int_equal(m->n_packed > 0, packs);
            /* with repacking, every matrix is either packed or copied to huge pages */
            assert_int_equal(m->n_packed + m->n_copied, no_repack ? 0 : 7 * m->hp.n_layers + 1);
            assert_int_equal(m->layers[0].w_down.packed != NULL, packs);
            assert_null(m->tok_embd.packed); /* looked up by rows: never packed */
            engine *e = mk_engine(m, 1, 2, false);
            float a[N_VOCAB], b[N_VOCAB];
            prefill(e, tok, 16, a);
            double r = rel_l2(a, ref, N_VOCAB);
            fprintf(stderr, "%s %s: rel_l2 vs f32 reference %.3g (%d packed)\n", types[t],
                    no_repack ? "no-repack" : "repack", r, m->n_packed);
            assert_true(r < tol[t]);
            engine_seq_truncate(e, 0, 0);
            for (int i = 0; i < 16; i++) {
                int32_t pos = i;
                engine_batch bt = {.n = 1, .token = &tok[i], .pos = &pos};
                assert_int_equal(engine_decode(e, &bt, NULL), 0);
            }
            memcpy(b, engine_logits(e, 0), sizeof b);
            assert_memory_equal(a, b, sizeof a);
            engine_free(e);
            model_free(m);
        }
    }
}

/* Decoding token by token gives the same logits as one prefill batch. */
static void test_prefill_vs_decode(void **state) {
    (void)state;
    modelgen_params p;
    base_params(&p);
    model *m = load(gen_model(&p, "pd"));
    int32_t tok[24];
    prompt(tok, 24, 3);
    for (int kv32 = 0; kv32 < 2; kv32++) {
        engine *e = mk_engine(m, 1, 2, kv32);
        float a[N_VOCAB], b[N_VOCAB];
        prefill(e, tok, 24, a);
        engine_seq_truncate(e, 0, 0);
        for (int i = 0; i < 24; i++) {
            int32_t pos = i;
            engine_batch bt = {.n = 1, .token = &tok[i], .pos = &pos};
            assert_int_equal(engine_decode(e, &bt, NULL), 0);
        }
        memcpy(b, engine_logits(e, 0), sizeof b);
        for (int i = 0; i < N_VOCAB; i++) assert_float_equal(a[i], b[i], 1e-5);
        /* split prefill: 10 then 14 */
        engine_seq_truncate(e, 0, 0);
        prefill(e, tok, 10, b);
        int32_t pos[14];
        for (int i = 0; i < 14; i++) pos[i] = 10 + i;
        engine_batch bt = {.n = 14, .token = tok + 10, .pos = pos};
        assert_int_equal(engine_decode(e, &bt, NULL), 0);
        memcpy(b, engine_logits(e, 13), sizeof b);
        for (int i = 0; i < N_VOCAB; i++) assert_float_equal(a[i], b[i], 1e-5);
        engine_free(e);
    }
    model_free(m);
}

/* Three sequences in one interleaved batch give each the logits it gets alone, bit for bit;
 * so do different thread counts. */
static void test_batch_invariance(void **state) {
    (void)state;
    modelgen_params p;
    base_params(&p);
    model *m = load(gen_model(&p, "bi"));
    int32_t toks[3][16];
    int lens[3] = {16, 5, 11};
    for (int s = 0; s < 3; s++) prompt(toks[s], lens[s], 100 + s);
    float alone[3][N_VOCAB];
    for (int s = 0; s < 3; s++) {
        engine *e = mk_engine(m, 1, 1 + s, false); /* 1, 2, 3 threads */
        prefill(e, toks[s], lens[s], alone[s]);
        engine_free(e);
    }
    engine *e = mk_engine(m, 3, 2, false);
    /* sequence 1 first gets 2 tokens on its own, then everything else in one mixed batch */
    int32_t pos0[2] = {0, 1}, seq1[2] = {1, 1};
    engine_batch b0 = {.n = 2, .token = toks[1], .pos = pos0, .seq = seq1};
    assert_int_equal(engine_decode(e, &b0, NULL), 0);
    int32_t tk[64], ps[64], sq[64];
    uint8_t lg[64] = {0};
    int n = 0, next[3] = {0, 2, 0}, last[3];
    for (int round = 0; n < 16 + 3 + 11; round++)
        for (int s = 0; s < 3; s++)
            if (next[s] < lens[s]) {
                tk[n] = toks[s][next[s]], ps[n] = next[s], sq[n] = s;
                last[s] = n++;
                next[s]++;
            }
    for (int s = 0; s < 3; s++) lg[last[s]] = 1;
    engine_batch b = {.n = n, .token = tk, .pos = ps, .seq = sq, .logits = lg};
    sh_err err = {{0}};
    assert_int_equal(engine_decode(e, &b, &err), 0);
    for (int s = 0; s < 3; s++) {
        const float *l = engine_logits(e, last[s]);
        assert_non_null(l);
        assert_memory_equal(l, alone[s], sizeof alone[s]);
        assert_int_equal(engine_seq_len(e, s), lens[s]);
    }
    assert_null(engine_logits(e, 0));
    engine_free(e);
    model_free(m);
}

/* A batch that asks for no logits only fills the cache (the last layer stops after K and V);
 * the next token then sees exactly the same cache as after a normal prefill. */
static void test_no_logits_batch(void **state) {
    (void)state;
    modelgen_params p;
    base_params(&p);
    model *m = load(gen_model(&p, "nl"));
    int32_t tok[12];
    prompt(tok, 12, 91);
    float want[N_VOCAB];
    engine *e = mk_engine(m, 1, 2, false);
    prefill(e, tok, 12, want);
    engine_seq_truncate(e, 0, 0);
    int32_t pos[11];
    uint8_t none[11] = {0};
    for (int i = 0; i < 11; i++) pos[i] = i;
    engine_batch b = {.n = 11, .token = tok, .pos = pos, .logits = none};
    assert_int_equal(engine_decode(e, &b, NULL), 0);
    assert_null(engine_logits(e, 10));
    int32_t p11 = 11;
    engine_batch d = {.n = 1, .token = &tok[11], .pos = &p11};
    assert_int_equal(engine_decode(e, &d, NULL), 0);
    assert_memory_equal(engine_logits(e, 0), want, sizeof want);
    engine_free(e);
    model_free(m);
}

/* A prompt prefilled once and copied into two other sequences continues like a fresh one. */
static void test_seq_copy(void **state) {
    (void)state;
    modelgen_params p;
    base_params(&p);
    model *m = load(gen_model(&p, "sc"));
    int32_t tok[20];
    prompt(tok, 20, 55);
    float want[2][N_VOCAB];
    for (int k = 0; k < 2; k++) {
        int32_t t2[13];
        memcpy(t2, tok, 12 * sizeof *t2);
        t2[12] = tok[12 + k]; /* two different continuations of the same 12-token prefix */
        engine *e = mk_engine(m, 1, 2, false);
        prefill(e, t2, 13, want[k]);
        engine_free(e);
    }
    engine *e = mk_engine(m, 3, 2, false);
    float scratch[N_VOCAB];
    prefill(e, tok, 12, scratch);
    engine_seq_copy(e, 0, 1, 12);
    engine_seq_copy(e, 0, 2, 12);
    assert_int_equal(engine_seq_len(e, 2), 12);
    int32_t tk[2] = {tok[12], tok[13]}, ps[2] = {12, 12}, sq[2] = {1, 2};
    uint8_t lg[2] = {1, 1};
    engine_batch b = {.n = 2, .token = tk, .pos = ps, .seq = sq, .logits = lg};
    assert_int_equal(engine_decode(e, &b, NULL), 0);
    assert_memory_equal(engine_logits(e, 0), want[0], sizeof want[0]);
    assert_memory_equal(engine_logits(e, 1), want[1], sizeof want[1]);
    engine_free(e);
    model_free(m);
}

static void test_batch_errors(void **state) {
    (void)state;
    modelgen_params p;
    base_params(&p);
    model *m = load(gen_model(&p, "be"));
    engine *e = mk_engine(m, 2, 1, false);
    sh_err err = {{0}};
    int32_t tok[4] = {1, 2, 3, 4}, pos[4] = {0, 1, 2, 3}, seq[4] = {0, 0, 0, 0};
    engine_batch b = {.n = 4, .token = tok, .pos = pos, .seq = seq};
    pos[2] = 5; /* gap */
    assert_int_equal(engine_decode(e, &b, &err), -1);
    assert_non_null(strstr(err.msg, "does not follow"));
    pos[2] = 2;
    pos[0] = 1, pos[1] = 2, pos[2] = 3, pos[3] = 4; /* starts past the empty cache */
    assert_int_equal(engine_decode(e, &b, &err), -1);
    assert_non_null(strstr(err.msg, "skips past"));
    for (int i = 0; i < 4; i++) pos[i] = 46 + i; /* past n_ctx 48: a prompt too long */
    assert_int_equal(engine_decode(e, &b, &err), -1);
    assert_non_null(strstr(err.msg, "outside the context"));
    for (int i = 0; i < 4; i++) pos[i] = i;
    tok[1] = N_VOCAB;
    assert_int_equal(engine_decode(e, &b, &err), -1);
    assert_non_null(strstr(err.msg, "token id"));
    tok[1] = 2;
    seq[3] = 2;
    assert_int_equal(engine_decode(e, &b, &err), -1);
    assert_non_null(strstr(err.msg, "sequence 2"));
    seq[3] = 0;
    assert_int_equal(engine_seq_len(e, 0), 0); /* failed batches change nothing */
    assert_int_equal(engine_decode(e, &b, &err), 0);
    assert_int_equal(engine_seq_len(e, 0), 4);
    engine_free(e);
    model_free(m);
}

/* ============================================================ load errors ===== */

/* Rewrites src to dst: optionally without tensor `drop`, with tensor `retype` given type
 * `new_type` (same byte size), with tensor `reshape` given ne1 = ne1 / 2 (first half of
 * the data), and with the architecture set to `arch`. */
static void rewrite_kv(const char *src, const char *dst, const char *drop, const char *retype,
                       uint32_t new_type, const char *reshape, const char *arch,
                       const char *kv_key, const char *kv_str, uint32_t kv_u32) {
    sh_err err = {{0}};
    gguf_ctx *g = gguf_open(src, &err);
    assert_non_null(g);
    gguf_writer *w = gguf_writer_init();
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (arch && !strcmp(g->kv[i].key, "general.architecture"))
            gguf_writer_add_str(w, "general.architecture", arch);
        else if (!kv_key || strcmp(g->kv[i].key, kv_key))
            gguf_writer_add(w, g->kv[i].key, &g->kv[i].val);
    }
    if (kv_key && kv_str) gguf_writer_add_str(w, kv_key, kv_str);
    else if (kv_key) gguf_writer_add_u32(w, kv_key, kv_u32);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (drop && !strcmp(t->name, drop)) continue;
        uint64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]}, size = t->size;
        uint32_t type = t->type;
        if (retype && !strcmp(t->name, retype)) type = new_type;
        if (reshape && !strcmp(t->name, reshape)) ne[1] /= 2, size /= 2;
        gguf_writer_add_tensor(w, t->name, type, t->n_dims, ne, t->data, size);
    }
    assert_null(gguf_writer_error(w));
    assert_int_equal(gguf_writer_write(w, dst, &err), 0);
    gguf_writer_free(w);
    gguf_free(g);
}

static void rewrite(const char *src, const char *dst, const char *drop, const char *retype,
                    uint32_t new_type, const char *reshape, const char *arch) {
    rewrite_kv(src, dst, drop, retype, new_type, reshape, arch, NULL, NULL, 0);
}

static void expect_load_error(const char *path, const char *needle) {
    sh_err err = {{0}};
    model *m = model_load(path, &err);
    assert_null(m);
    if (!strstr(err.msg, needle)) fprintf(stderr, "message: %s (expected '%s')\n", err.msg, needle);
    assert_non_null(strstr(err.msg, needle));
    assert_non_null(strstr(err.msg, path)); /* names the file */
}

static void test_load_errors(void **state) {
    (void)state;
    modelgen_params p;
    base_params(&p);
    const char *src = gen_model(&p, "le");
    char dst[512];
    snprintf(dst, sizeof dst, "%s/bad.gguf", tu_tmpdir());
    rewrite(src, dst, "blk.1.ffn_up.weight", NULL, 0, NULL, NULL);
    expect_load_error(dst, "missing tensor 'blk.1.ffn_up.weight'");
    rewrite(src, dst, NULL, NULL, 0, "blk.0.attn_k.weight", NULL);
    expect_load_error(dst, "tensor 'blk.0.attn_k.weight' has shape [64, 16");
    rewrite(src, dst, NULL, "blk.0.attn_q.weight", DT_I32, NULL, NULL);
    expect_load_error(dst, "type I32, which is not supported");
    rewrite(src, dst, NULL, NULL, 0, NULL, "gpt2");
    expect_load_error(dst, "unsupported architecture 'gpt2'");
    rewrite_kv(src, dst, NULL, NULL, 0, NULL, NULL, "llama.attention.head_count_kv", NULL, 3);
    expect_load_error(dst, "not a multiple of head_count_kv 3");
    rewrite_kv(src, dst, NULL, NULL, 0, NULL, NULL, "llama.rope.scaling.type", "yarn", 0);
    expect_load_error(dst, "rope scaling type 'yarn' is not supported");
    rewrite_kv(src, dst, NULL, NULL, 0, NULL, NULL, "llama.block_count", NULL, 3);
    expect_load_error(dst, "missing tensor 'blk.2.attn_norm.weight'");
    rewrite_kv(src, dst, NULL, NULL, 0, NULL, NULL, "llama.embedding_length", NULL, 0);
    expect_load_error(dst, "llama.embedding_length");
    rewrite_kv(src, dst, NULL, NULL, 0, NULL, NULL, "llama.rope.dimension_count", NULL, 8);
    {
        model *pm = load(dst); /* partial rotary is fine */
        assert_int_equal(pm->hp.n_rot, 8);
        model_free(pm);
    }
    /* a truncated file */
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    f = fopen(dst, "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
    sh_err err = {{0}};
    assert_null(model_load(dst, &err));
    assert_true(err.msg[0] != 0);
    /* the good file loads, with the expected hyperparameters */
    model *m = load(src);
    assert_int_equal(m->hp.n_vocab, N_VOCAB);
    assert_int_equal(m->hp.n_kv_heads, 2);
    assert_int_equal(m->hp.head_dim, 16);
    assert_int_equal(m->hp.rope, MODEL_ROPE_NORM);
    assert_false(m->tied);
    model_free(m);
}

/* Corrupted copies of a valid file (random bytes changed in the metadata and tensor infos)
 * load or fail with a message; they never crash (run under ASan by `make asan`). A model that
 * still loads runs one small batch. */
static void test_corrupt_files(void **state) {
    (void)state;
    modelgen_params p;
    base_params(&p);
    p.layers = 1;
    const char *src = gen_model(&p, "cf");
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *orig = malloc((size_t)size), *buf = malloc((size_t)size);
    assert_int_equal(fread(orig, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    gguf_ctx *g0 = gguf_open(src, NULL);
    assert_non_null(g0);
    uint64_t head = g0->data_offset; /* corrupt only the header: weights are just numbers */
    gguf_free(g0);
    uint64_t seed = 4242;
    int loaded = 0;
    for (int it = 0; it < 300; it++) {
        memcpy(buf, orig, (size_t)size);
        int flips = 1 + (int)(tu_rand(&seed) % 4);
        for (int k = 0; k < flips; k++) buf[tu_rand(&seed) % head] = (uint8_t)tu_rand(&seed);
        sh_err err = {{0}};
        gguf_ctx *g = gguf_open_mem(buf, (size_t)size, "corrupt.gguf", &err);
        if (!g) continue;
        model *m = model_from_gguf(g, &err);
        if (!m) {
            assert_true(err.msg[0] != 0);
            gguf_free(g);
            continue;
        }
        loaded++;
        engine_params ep;
        engine_params_default(&ep);
        ep.n_ctx = 8;
        ep.n_threads = 2;
        engine *e = engine_init(m, &ep, &err);
        if (e) {
            int32_t tok[2] = {1, 2}, pos[2] = {0, 1};
            engine_batch b = {.n = 2, .token = tok, .pos = pos};
            engine_decode(e, &b, &err); /* may fail (e.g. a smaller vocabulary), never crash */
            engine_free(e);
        }
        model_free(m);
    }
    assert_true(loaded > 0); /* some corruptions only touch names or values that do not matter */
    free(orig);
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_gqa),
        cmocka_unit_test(test_llama_rope_extras),
        cmocka_unit_test(test_llama_mqa_hd32_theta),
        cmocka_unit_test(test_llama_head_dim_override),
        cmocka_unit_test(test_qwen2_tied_bias),
        cmocka_unit_test(test_llama_f16),
        cmocka_unit_test(test_quantized),
        cmocka_unit_test(test_repack),
        cmocka_unit_test(test_attn_wsum),
        cmocka_unit_test(test_ew_silu),
        cmocka_unit_test(test_ew_argmax),
        cmocka_unit_test(test_prefill_vs_decode),
        cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_seq_copy),
        cmocka_unit_test(test_no_logits_batch),
        cmocka_unit_test(test_batch_errors),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_corrupt_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
