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

static int check_params(const modelgen_params *p, sh_err *err) {
    if (strcmp(p->arch, "llama") && strcmp(p->arch, "qwen2"))
        return sh_errf(err, "unsupported architecture '%s' (llama or qwen2)", p->arch);
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
