/*
 * model/modelgen — see modelgen.h.
 */
#include "model/modelgen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "tensor/dtype.h"

void modelgen_defaults(modelgen_params *p) {
    memset(p, 0, sizeof *p);
    p->arch = "llama";
    p->dim = 64;
    p->layers = 2;
    p->heads = 4;
    p->ffn = 172;
    p->ctx = 2048;
    p->rope_theta = 10000.0f;
    p->norm_eps = 1e-5f;
    p->init_std = 0.02f;
    p->norm_std = 0.1f;
    p->dtype = DT_F32;
    p->pooling = 1;
    p->type_vocab = 2;
}

/* ============================================================ random streams ===== */

typedef struct {
    uint64_t s;
    double spare;
    int has_spare;
} rng;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static rng rng_for(uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the name, mixed with the seed */
    for (const char *c = name; *c; c++) h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
    rng r = {.s = h ^ splitmix(&seed)};
    return r;
}

/* Standard normal by Marsaglia's polar method. */
static double rng_normal(rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u, v, s;
    do {
        u = (double)(splitmix(&r->s) >> 11) * 0x1.0p-52 - 1.0;
        v = (double)(splitmix(&r->s) >> 11) * 0x1.0p-52 - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double m = sqrt(-2.0 * log(s) / s);
    r->spare = v * m;
    r->has_spare = 1;
    return u * m;
}

/* ============================================================ tensors ===== */

typedef struct {
    void **bufs;
    size_t n, cap;
} buflist;

static void *keep(buflist *b, size_t bytes) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        void **nb = realloc(b->bufs, cap * sizeof *nb);
        if (!nb) return NULL;
        b->bufs = nb;
        b->cap = cap;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (p) b->bufs[b->n++] = p;
    return p;
}

/* Adds one tensor: values mean + std * N(0,1), stored as `type` (F32 or F16). */
static int add_tensor(gguf_writer *w, buflist *b, const modelgen_params *p, const char *name,
                      uint64_t ne0, uint64_t ne1, double mean, double std, uint64_t *n_params) {
    uint32_t type = ne1 > 1 ? p->dtype : DT_F32;
    uint64_t n = ne0 * ne1;
    size_t esz = type == DT_F16 ? 2 : 4;
    uint8_t *data = keep(b, (size_t)(n * esz));
    if (!data) return -1;
    rng r = rng_for(p->seed, name);
    for (uint64_t i = 0; i < n; i++) {
        float x = (float)(mean + std * rng_normal(&r));
        if (type == DT_F16) {
            uint16_t h = half_from_f32(x);
            memcpy(data + 2 * i, &h, 2);
        } else {
            memcpy(data + 4 * i, &x, 4);
        }
    }
    uint64_t ne[2] = {ne0, ne1};
    *n_params += n;
    return gguf_writer_add_tensor(w, name, type, ne1 > 1 ? 2 : 1, ne, data, n * esz);
}

static bool is_encoder(const char *arch) {
    return !strcmp(arch, "bert") || !strcmp(arch, "nomic-bert");
}

static int check_params(const modelgen_params *p, sh_err *err) {
    if (strcmp(p->arch, "llama") && strcmp(p->arch, "qwen2") && !is_encoder(p->arch))
        return sh_errf(err, "unsupported architecture '%s' (llama, qwen2, bert, nomic-bert)", p->arch);
    if (is_encoder(p->arch)) {
        if (p->pooling < 0 || p->pooling > 4) return sh_errf(err, "pooling must be 0..4");
        if (p->tok_only && !p->tok_labels) return sh_errf(err, "tok_only needs tok_labels");
        if (p->tok_only && p->cls_labels)
            return sh_errf(err, "a tagger-only file has no sequence head (cls_labels)");
        if (!p->type_vocab || p->type_vocab > 1024) return sh_errf(err, "type_vocab must be 1..1024");
    }
    if (!p->vocab) return sh_errf(err, "a vocab GGUF is required (its tokenizer is copied)");
    if (!p->dim || !p->layers || !p->heads || !p->ffn || !p->ctx)
        return sh_errf(err, "dim, layers, heads, ffn and ctx must all be > 0");
    uint32_t kvh = p->kv_heads ? p->kv_heads : p->heads;
    if (p->heads % kvh) return sh_errf(err, "heads (%u) must be a multiple of kv-heads (%u)",
                                       p->heads, kvh);
    if (!p->head_dim && p->dim % p->heads)
        return sh_errf(err, "dim (%u) must be a multiple of heads (%u), or give a head size",
                       p->dim, p->heads);
    uint32_t hd = p->head_dim ? p->head_dim : p->dim / p->heads;
    if (hd % 2) return sh_errf(err, "head size %u must be even (RoPE rotates pairs)", hd);
    if (p->dtype != DT_F32 && p->dtype != DT_F16)
        return sh_errf(err, "dtype must be f32 or f16, not %s", dtype_name(p->dtype));
    if (p->dim > 65536 || p->ffn > 262144 || p->layers > 512 || p->heads > 1024)
        return sh_errf(err, "model dimensions are out of range");
    return 0;
}

/* "a,b,c" -> its items (pointers into a malloc'd copy in *store). */
static int split_labels(const char *list, char **store, const char ***items, uint64_t *n) {
    *store = strdup(list);
    size_t cap = 1;
    for (const char *c = list; *c; c++) cap += *c == ',';
    *items = calloc(cap, sizeof **items);
    if (!*store || !*items) return -1;
    *n = 0;
    for (char *tok = strtok(*store, ","); tok; tok = strtok(NULL, ",")) (*items)[(*n)++] = tok;
    return 0;
}

/* The encoder half of modelgen_write (model/encoder.h's layout). */
static int write_encoder(const modelgen_params *pin, const char *path, gguf_ctx *voc,
                         uint64_t n_vocab, uint64_t *n_params_out, sh_err *err) {
    modelgen_params pp = *pin, *p = &pp;
    const bool nomic = !strcmp(p->arch, "nomic-bert");
    if (p->ffn == 172) p->ffn = 4 * p->dim;
    if (p->ctx == 2048 && !nomic) p->ctx = 512;
    if (p->norm_eps == 1e-5f) p->norm_eps = 1e-12f;
    if (p->dim % p->heads) return sh_errf(err, "dim (%u) must be a multiple of heads (%u)", p->dim, p->heads);
    gguf_writer *w = gguf_writer_init();
    if (!w) return sh_errf(err, "out of memory");
    buflist bufs = {0};
    uint64_t n_params = 0, n_cls = 0, n_tok = 0;
    char *cls_store = NULL, *tok_store = NULL;
    const char **cls = NULL, **tok = NULL;
    int rc = 0;
    if ((p->cls_labels && split_labels(p->cls_labels, &cls_store, &cls, &n_cls)) ||
        (p->tok_labels && split_labels(p->tok_labels, &tok_store, &tok, &n_tok)))
        rc = -1;
    if (!rc && p->cls_dense && !n_cls) n_cls = 1; /* a dense head alone: a one-output reranker */
    if (!rc && p->pooling == 4 && !n_cls && !p->tok_only) n_cls = 1;
    char key[128], desc[512];
    const char *a = p->arch;
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, a), key)
    snprintf(desc, sizeof desc,
             "shoal gen-model: arch=%s dim=%u layers=%u heads=%u ffn=%u ctx=%u norm_eps=%g "
             "pooling=%d cls=%s dense=%d tok=%s tok_only=%d dtype=%s seed=%llu", a, p->dim,
             p->layers, p->heads, p->ffn, p->ctx, p->norm_eps, p->pooling,
             p->cls_labels ? p->cls_labels : "-", p->cls_dense, p->tok_labels ? p->tok_labels : "-",
             p->tok_only, dtype_name(p->dtype), (unsigned long long)p->seed);
    gguf_writer_add_str(w, "general.architecture", a);
    gguf_writer_add_str(w, "general.name", p->name ? p->name : "shoal-random-encoder");
    gguf_writer_add_str(w, "general.description", desc);
    gguf_writer_add_u32(w, "general.file_type", p->dtype == DT_F16 ? 1 : 0);
    gguf_writer_add_u32(w, KEY("context_length"), p->ctx);
    gguf_writer_add_u32(w, KEY("embedding_length"), p->dim);
    gguf_writer_add_u32(w, KEY("feed_forward_length"), p->ffn);
    gguf_writer_add_u32(w, KEY("block_count"), p->layers);
    gguf_writer_add_u32(w, KEY("attention.head_count"), p->heads);
    gguf_writer_add_f32(w, KEY("attention.layer_norm_epsilon"), p->norm_eps);
    gguf_writer_add_bool(w, KEY("attention.causal"), 0);
    gguf_writer_add_u32(w, KEY("pooling_type"), (uint32_t)p->pooling);
    if (nomic) gguf_writer_add_f32(w, KEY("rope.freq_base"), p->rope_theta);
    if (n_cls && cls) gguf_writer_add_str_arr(w, KEY("classifier.output_labels"), n_cls, cls);
    if (p->tok_only) {
        gguf_writer_add_str_arr(w, KEY("classifier.output_labels"), n_tok, tok);
        gguf_writer_add_str(w, "shoal.classifier.task", "token");
    } else if (n_tok) {
        gguf_writer_add_str_arr(w, "shoal.token_classifier.output_labels", n_tok, tok);
    }
#undef KEY
    bool wpm = false, have_bos = false, have_eos = false, have_ttc = false;
    for (uint64_t i = 0; i < voc->n_kv; i++) {
        const char *k = voc->kv[i].key;
        if (strncmp(k, "tokenizer.", 10)) continue;
        if (!strcmp(k, "tokenizer.ggml.model") && voc->kv[i].val.type == GGUF_STR)
            wpm = gguf_str_eq(voc->kv[i].val.v.str, "bert");
        have_bos |= !strcmp(k, "tokenizer.ggml.bos_token_id");
        have_eos |= !strcmp(k, "tokenizer.ggml.eos_token_id");
        have_ttc |= !strcmp(k, "tokenizer.ggml.token_type_count");
        gguf_writer_add(w, k, &voc->kv[i].val);
    }
    if (!have_ttc) gguf_writer_add_u32(w, "tokenizer.ggml.token_type_count", p->type_vocab);
    if (wpm && !have_bos && !have_eos) {
        gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 101);
        gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 102);
        gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 1);
        gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", 1);
        gguf_writer_add_bool(w, "tokenizer.ggml.add_sep_token", 0);
    }
    const double sd = p->init_std, ns = p->norm_std;
    const uint64_t d = p->dim;
#define G(name, ne0, ne1, mean, std)                                                               \
    (rc = rc ? rc : add_tensor(w, &bufs, p, name, ne0, ne1, mean, std, &n_params))
    G("token_embd.weight", d, n_vocab, 0, sd);
    G("token_types.weight", d, p->type_vocab, 0, sd);
    if (!nomic) G("position_embd.weight", d, p->ctx, 0, sd);
    G("token_embd_norm.weight", d, 1, 1.0, ns);
    G("token_embd_norm.bias", d, 1, 0, sd);
    char name[96];
#define T(fmt, ne0, ne1, mean, std) (snprintf(name, sizeof name, "blk.%u." fmt, l), G(name, ne0, ne1, mean, std))
    for (uint32_t l = 0; l < p->layers && !rc; l++) {
        if (nomic) {
            T("attn_qkv.weight", d, 3 * d, 0, sd);
        } else {
            T("attn_q.weight", d, d, 0, sd);
            T("attn_q.bias", d, 1, 0, sd);
            T("attn_k.weight", d, d, 0, sd);
            T("attn_k.bias", d, 1, 0, sd);
            T("attn_v.weight", d, d, 0, sd);
            T("attn_v.bias", d, 1, 0, sd);
        }
        T("attn_output.weight", d, d, 0, sd);
        if (!nomic) T("attn_output.bias", d, 1, 0, sd);
        T("attn_output_norm.weight", d, 1, 1.0, ns);
        T("attn_output_norm.bias", d, 1, 0, sd);
        T("ffn_up.weight", d, p->ffn, 0, sd);
        if (nomic) T("ffn_gate.weight", d, p->ffn, 0, sd);
        else T("ffn_up.bias", p->ffn, 1, 0, sd);
        T("ffn_down.weight", p->ffn, d, 0, sd);
        if (!nomic) T("ffn_down.bias", d, 1, 0, sd);
        T("layer_output_norm.weight", d, 1, 1.0, ns);
        T("layer_output_norm.bias", d, 1, 0, sd);
    }
#undef T
    if (p->cls_dense) {
        G("cls.weight", d, d, 0, sd);
        G("cls.bias", d, 1, 0, sd);
    }
    if (n_cls) {
        G("cls.output.weight", d, n_cls, 0, sd);
        G("cls.output.bias", n_cls, 1, 0, sd);
    }
    if (n_tok) {
        G(p->tok_only ? "cls.output.weight" : "shoal.token_cls.output.weight", d, n_tok, 0, sd);
        G(p->tok_only ? "cls.output.bias" : "shoal.token_cls.output.bias", n_tok, 1, 0, sd);
    }
#undef G
    if (gguf_writer_error(w)) rc = sh_errf(err, "%s: %s", path, gguf_writer_error(w));
    else if (rc) rc = sh_errf(err, "%s: out of memory generating weights", path);
    else rc = gguf_writer_write(w, path, err);
    for (size_t i = 0; i < bufs.n; i++) free(bufs.bufs[i]);
    free(bufs.bufs);
    free(cls_store);
    free(tok_store);
    free(cls);
    free(tok);
    gguf_writer_free(w);
    if (rc == 0 && n_params_out) *n_params_out = n_params;
    return rc ? -1 : 0;
}

int modelgen_write(const modelgen_params *p, const char *path, uint64_t *n_params_out,
                   sh_err *err) {
    if (check_params(p, err)) return -1;
    sh_err verr = {{0}};
    gguf_ctx *voc = gguf_open(p->vocab, &verr);
    if (!voc) return sh_errf(err, "vocab: %s", verr.msg);
    const gguf_arr *toks = gguf_get_arr(voc, "tokenizer.ggml.tokens", GGUF_STR);
    if (!toks || toks->n == 0) {
        gguf_free(voc);
        return sh_errf(err, "%s: no tokenizer.ggml.tokens array", p->vocab);
    }
    uint64_t n_vocab = toks->n;
    if (is_encoder(p->arch)) {
        int rc = write_encoder(p, path, voc, n_vocab, n_params_out, err);
        gguf_free(voc);
        return rc;
    }
    uint32_t kvh = p->kv_heads ? p->kv_heads : p->heads;
    uint32_t hd = p->head_dim ? p->head_dim : p->dim / p->heads;
    uint64_t q_dim = (uint64_t)p->heads * hd, kv_dim = (uint64_t)kvh * hd;

    gguf_writer *w = gguf_writer_init();
    if (!w) {
        gguf_free(voc);
        return sh_errf(err, "out of memory");
    }
    buflist bufs = {0};
    uint64_t n_params = 0;
    char key[128], desc[512];
    const char *a = p->arch;
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, a), key)
    snprintf(desc, sizeof desc,
             "shoal gen-model: arch=%s dim=%u layers=%u heads=%u kv_heads=%u head_dim=%u ffn=%u "
             "ctx=%u rope_theta=%g norm_eps=%g tied=%d qkv_bias=%d dtype=%s seed=%llu",
             a, p->dim, p->layers, p->heads, kvh, hd, p->ffn, p->ctx, p->rope_theta, p->norm_eps,
             p->tied, p->qkv_bias, dtype_name(p->dtype), (unsigned long long)p->seed);
    gguf_writer_add_str(w, "general.architecture", a);
    gguf_writer_add_str(w, "general.name", p->name ? p->name : "shoal-random");
    gguf_writer_add_str(w, "general.description", desc);
    gguf_writer_add_u32(w, "general.file_type", p->dtype == DT_F16 ? 1 : 0);
    gguf_writer_add_u32(w, KEY("context_length"), p->ctx);
    gguf_writer_add_u32(w, KEY("embedding_length"), p->dim);
    gguf_writer_add_u32(w, KEY("block_count"), p->layers);
    gguf_writer_add_u32(w, KEY("feed_forward_length"), p->ffn);
    gguf_writer_add_u32(w, KEY("attention.head_count"), p->heads);
    gguf_writer_add_u32(w, KEY("attention.head_count_kv"), kvh);
    if (p->head_dim && p->head_dim != p->dim / p->heads) {
        gguf_writer_add_u32(w, KEY("attention.key_length"), hd);
        gguf_writer_add_u32(w, KEY("attention.value_length"), hd);
    }
    gguf_writer_add_u32(w, KEY("rope.dimension_count"), hd);
    gguf_writer_add_f32(w, KEY("rope.freq_base"), p->rope_theta);
    gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), p->norm_eps);
    gguf_writer_add_u32(w, KEY("vocab_size"), (uint32_t)n_vocab);
#undef KEY
    for (uint64_t i = 0; i < voc->n_kv; i++)
        if (strncmp(voc->kv[i].key, "tokenizer.", 10) == 0)
            gguf_writer_add(w, voc->kv[i].key, &voc->kv[i].val);

    int rc = add_tensor(w, &bufs, p, "token_embd.weight", p->dim, n_vocab, 0, p->init_std,
                        &n_params);
    char name[96];
#define T(fmt, ne0, ne1, mean, std)                                                                \
    (snprintf(name, sizeof name, "blk.%u." fmt, l),                                                \
     rc = rc ? rc : add_tensor(w, &bufs, p, name, ne0, ne1, mean, std, &n_params))
    for (uint32_t l = 0; l < p->layers && !rc; l++) {
        T("attn_norm.weight", p->dim, 1, 1.0, p->norm_std);
        T("attn_q.weight", p->dim, q_dim, 0, p->init_std);
        if (p->qkv_bias) T("attn_q.bias", q_dim, 1, 0, p->init_std);
        T("attn_k.weight", p->dim, kv_dim, 0, p->init_std);
        if (p->qkv_bias) T("attn_k.bias", kv_dim, 1, 0, p->init_std);
        T("attn_v.weight", p->dim, kv_dim, 0, p->init_std);
        if (p->qkv_bias) T("attn_v.bias", kv_dim, 1, 0, p->init_std);
        T("attn_output.weight", q_dim, p->dim, 0, p->init_std);
        T("ffn_norm.weight", p->dim, 1, 1.0, p->norm_std);
        T("ffn_gate.weight", p->dim, p->ffn, 0, p->init_std);
        T("ffn_up.weight", p->dim, p->ffn, 0, p->init_std);
        T("ffn_down.weight", p->ffn, p->dim, 0, p->init_std);
    }
#undef T
    if (!rc) rc = add_tensor(w, &bufs, p, "output_norm.weight", p->dim, 1, 1.0, p->norm_std,
                             &n_params);
    if (!rc && !p->tied)
        rc = add_tensor(w, &bufs, p, "output.weight", p->dim, n_vocab, 0, p->init_std, &n_params);
    if (gguf_writer_error(w)) rc = sh_errf(err, "%s: %s", path, gguf_writer_error(w));
    else if (rc) rc = sh_errf(err, "%s: out of memory generating weights", path);
    else rc = gguf_writer_write(w, path, err);
    for (size_t i = 0; i < bufs.n; i++) free(bufs.bufs[i]);
    free(bufs.bufs);
    gguf_writer_free(w);
    gguf_free(voc);
    if (rc == 0 && n_params_out) *n_params_out = n_params;
    return rc ? -1 : 0;
}
