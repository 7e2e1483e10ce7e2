/*
 * model/model — see model.h. Reads hyperparameters from "<arch>.*" keys and checks every
 * tensor's presence, type and shape before anything uses it.
 */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/dtype.h"
#include "tensor/quant.h"
#include "tensor/vecdot.h"

typedef struct loader {
    model *m;
    weights_loader w; /* keys, tensors and the counts of the file (model/weights.h) */
    sh_err *err;
} loader;

#define hp_int(L, ...) weights_int(&(L)->w, __VA_ARGS__)
#define hp_float(L, ...) weights_float(&(L)->w, __VA_ARGS__)
#define load_mat(L, out, name, cols, rows) weights_mat(&(L)->w, out, name, cols, rows, true)
#define load_vec(L, ...) weights_vec(&(L)->w, __VA_ARGS__)

/* ============================================================ hyperparameters ===== */

static int load_hparams(loader *L) {
    model_hparams *hp = &L->m->hp;
    gguf_str arch;
    if (!gguf_get_str(L->w.g, "general.architecture", &arch))
        return sh_errf(L->err, "missing metadata 'general.architecture'");
    if (gguf_str_eq(arch, "llama")) {
        hp->arch = MODEL_ARCH_LLAMA;
        hp->rope = MODEL_ROPE_NORM;
        L->w.arch = "llama";
    } else if (gguf_str_eq(arch, "qwen2")) {
        hp->arch = MODEL_ARCH_QWEN2;
        hp->rope = MODEL_ROPE_NEOX;
        L->w.arch = "qwen2";
    } else {
        int n = arch.len > 64 ? 64 : (int)arch.len;
        return sh_errf(L->err, "unsupported architecture '%.*s' (supported: llama, qwen2)", n,
                       arch.ptr);
    }
    const int64_t BIG = 1 << 20;
    if (hp_int(L, "embedding_length", -1, 1, BIG, &hp->dim) ||
        hp_int(L, "block_count", -1, 1, 4096, &hp->n_layers) ||
        hp_int(L, "feed_forward_length", -1, 1, BIG, &hp->ffn) ||
        hp_int(L, "attention.head_count", -1, 1, 4096, &hp->n_heads) ||
        hp_int(L, "attention.head_count_kv", hp->n_heads, 1, hp->n_heads, &hp->n_kv_heads) ||
        hp_int(L, "context_length", 2048, 1, 1 << 24, &hp->n_ctx_train))
        return -1;
    if (hp->n_heads % hp->n_kv_heads)
        return sh_errf(L->err, "head_count %d is not a multiple of head_count_kv %d",
                       hp->n_heads, hp->n_kv_heads);
    int def_hd = hp->dim % hp->n_heads == 0 ? hp->dim / hp->n_heads : -1;
    int vlen;
    if (hp_int(L, "attention.key_length", def_hd, 2, 4096, &hp->head_dim)) return -1;
    if (hp_int(L, "attention.value_length", hp->head_dim, 1, 4096, &vlen)) return -1;
    if (vlen != hp->head_dim)
        return sh_errf(L->err, "attention.value_length %d differs from key_length %d "
                               "(not supported)", vlen, hp->head_dim);
    if (hp_int(L, "rope.dimension_count", hp->head_dim, 2, hp->head_dim, &hp->n_rot)) return -1;
    if (hp->n_rot % 2) return sh_errf(L->err, "rope.dimension_count %d is odd", hp->n_rot);
    if (hp_float(L, "rope.freq_base", 10000.0f, &hp->rope_base) ||
        hp_float(L, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->norm_eps))
        return -1;
    if (!(hp->rope_base > 0)) return sh_errf(L->err, "rope.freq_base must be > 0");
    if (!(hp->norm_eps >= 0)) return sh_errf(L->err, "layer_norm_rms_epsilon must be >= 0");
    hp->rope_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", L->w.arch);
    gguf_str st;
    if (gguf_get_str(L->w.g, key, &st) && !gguf_str_eq(st, "none")) {
        if (!gguf_str_eq(st, "linear")) {
            int n = st.len > 32 ? 32 : (int)st.len;
            return sh_errf(L->err, "rope scaling type '%.*s' is not supported", n, st.ptr);
        }
        float f;
        if (hp_float(L, "rope.scaling.factor", 1.0f, &f)) return -1;
        if (!(f > 0)) return sh_errf(L->err, "rope.scaling.factor must be > 0");
        hp->rope_scale = 1.0f / f;
    }
    return 0;
}

/* ============================================================ tensors ===== */

static int load_tensors(loader *L) {
    model *m = L->m;
    model_hparams *hp = &m->hp;
    const gguf_tensor *te = gguf_find_tensor(L->w.g, "token_embd.weight");
    if (!te) return sh_errf(L->err, "missing tensor 'token_embd.weight'");
    if (te->ne[1] < 1 || te->ne[1] > (1u << 24))
        return sh_errf(L->err, "tensor 'token_embd.weight' has %llu rows (vocabulary size out "
                               "of range)", (unsigned long long)te->ne[1]);
    hp->n_vocab = (int)te->ne[1];
    if (load_mat(L, &m->tok_embd, "token_embd.weight", hp->dim, hp->n_vocab)) return -1;
    if (!model_row_type_ok(te->type))
        return sh_errf(L->err, "tensor 'token_embd.weight' has type %s, which is not supported "
                               "for the embedding lookup", dtype_name(te->type));
    if (load_vec(L, &m->output_norm, "output_norm.weight", hp->dim, true)) return -1;
    if (gguf_find_tensor(L->w.g, "output.weight")) {
        if (load_mat(L, &m->output, "output.weight", hp->dim, hp->n_vocab)) return -1;
    } else {
        m->output = m->tok_embd;
        m->tied = true;
    }
    if (load_vec(L, &m->rope_freqs, "rope_freqs.weight", hp->n_rot / 2, false)) return -1;

    m->layers = calloc((size_t)hp->n_layers, sizeof *m->layers);
    if (!m->layers) return sh_errf(L->err, "out of memory");
    int64_t q_dim = (int64_t)hp->n_heads * hp->head_dim;
    int64_t kv_dim = (int64_t)hp->n_kv_heads * hp->head_dim;
    char name[96];
#define NM(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, l), name)
    for (int l = 0; l < hp->n_layers; l++) {
        model_layer *ly = &m->layers[l];
        if (gguf_find_tensor(L->w.g, NM("ffn_gate_inp.weight")))
            return sh_errf(L->err, "layer %d is a mixture of experts (not supported)", l);
        if (load_vec(L, &ly->attn_norm, NM("attn_norm.weight"), hp->dim, true) ||
            load_mat(L, &ly->wq, NM("attn_q.weight"), hp->dim, q_dim) ||
            load_mat(L, &ly->wk, NM("attn_k.weight"), hp->dim, kv_dim) ||
            load_mat(L, &ly->wv, NM("attn_v.weight"), hp->dim, kv_dim) ||
            load_mat(L, &ly->wo, NM("attn_output.weight"), q_dim, hp->dim) ||
            load_vec(L, &ly->bq, NM("attn_q.bias"), q_dim, false) ||
            load_vec(L, &ly->bk, NM("attn_k.bias"), kv_dim, false) ||
            load_vec(L, &ly->bv, NM("attn_v.bias"), kv_dim, false) ||
            load_vec(L, &ly->bo, NM("attn_output.bias"), hp->dim, false) ||
            load_vec(L, &ly->ffn_norm, NM("ffn_norm.weight"), hp->dim, true) ||
            load_mat(L, &ly->w_gate, NM("ffn_gate.weight"), hp->dim, hp->ffn) ||
            load_mat(L, &ly->w_up, NM("ffn_up.weight"), hp->dim, hp->ffn) ||
            load_mat(L, &ly->w_down, NM("ffn_down.weight"), hp->ffn, hp->dim))
            return -1;
    }
#undef NM
    weights_type_name(&L->w, m->type_name);
    m->n_params = L->w.n_params;
    m->n_bytes = L->w.n_bytes;
    return 0;
}

/* ============================================================ repacking ===== */

/* Every matrix the engine multiplies with (not tok_embd, which is only looked up by rows) goes
 * into the repacked buffer (model/weights.h). */
static int repack(model *m, gguf_ctx *g, sh_err *err) {
    model_mat **mats = malloc(((size_t)m->hp.n_layers * 7 + 1) * sizeof *mats);
    if (!mats) return sh_errf(err, "out of memory");
    int n = 0;
    for (int l = 0; l < m->hp.n_layers; l++) {
        model_layer *ly = &m->layers[l];
        model_mat *ws[] = {&ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->w_gate, &ly->w_up, &ly->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) mats[n++] = ws[i];
    }
    mats[n++] = &m->output;
    int rc = weights_repack(mats, n, g->mapped, &m->pack, err);
    m->n_packed = m->pack.n_packed;
    m->n_copied = m->pack.n_copied;
    free(mats);
    return rc;
}

/* ============================================================ public ===== */

model *model_from_gguf(gguf_ctx *g, sh_err *err) { return model_from_gguf_ex(g, NULL, err); }

model *model_from_gguf_ex(gguf_ctx *g, const model_params *p, sh_err *err) {
    const model_params defaults = {0};
    if (!p) p = &defaults;
    model *m = calloc(1, sizeof *m);
    if (!m) {
        sh_errf(err, "%s: out of memory", g->path);
        return NULL;
    }
    m->path = strdup(g->path ? g->path : "<model>");
    loader L = {.m = m, .w = {.g = g, .err = err}, .err = err};
    if (!m->path || load_hparams(&L) || load_tensors(&L) || (!p->no_repack && repack(m, g, err))) {
        if (!m->path) sh_errf(err, "out of memory");
        sh_err_prefix(err, g->path ? g->path : "<model>");
        m->g = NULL; /* the caller keeps g on failure */
        model_free(m);
        return NULL;
    }
    m->g = g;
    return m;
}

model *model_load(const char *path, sh_err *err) { return model_load_ex(path, NULL, err); }

model *model_load_ex(const char *path, const model_params *p, sh_err *err) {
    gguf_ctx *g = gguf_open(path, err);
    if (!g) return NULL;
    model *m = model_from_gguf_ex(g, p, err);
    if (!m) gguf_free(g);
    return m;
}

void model_free(model *m) {
    if (!m) return;
    if (m->layers) {
        for (int l = 0; l < m->hp.n_layers; l++) {
            model_layer *ly = &m->layers[l];
            free(ly->attn_norm);
            free(ly->ffn_norm);
            free(ly->bq);
            free(ly->bk);
            free(ly->bv);
            free(ly->bo);
        }
        free(m->layers);
    }
    weights_pack_free(&m->pack);
    free(m->output_norm);
    free(m->rope_freqs);
    free(m->path);
    gguf_free(m->g);
    free(m);
}
