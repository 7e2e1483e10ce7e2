/*
 * model/encoder — see encoder.h. Hyperparameters from "<arch>.*" keys, every tensor's presence,
 * type and shape checked before anything uses it, and no tensor in the file left unexplained.
 */
#include "model/encoder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "tensor/vecdot.h"

static const char *const pool_names[] = {"none", "mean", "cls", "last", "rank"};

int encoder_pooling_from_name(const char *name) {
    for (int i = 0; i < 5; i++)
        if (name && !strcmp(name, pool_names[i])) return i;
    return -1;
}

const char *encoder_pooling_name(encoder_pooling p) {
    return (unsigned)p < 5 ? pool_names[p] : "?";
}

bool encoder_is_encoder_file(const gguf_ctx *g) {
    gguf_str a;
    return gguf_get_str(g, "general.architecture", &a) &&
           (gguf_str_eq(a, "bert") || gguf_str_eq(a, "nomic-bert"));
}

typedef struct loader {
    encoder_model *m;
    weights_loader w;
    sh_err *err;
} loader;

/* ============================================================ hyperparameters ===== */

static int load_hparams(loader *L) {
    encoder_hparams *hp = &L->m->hp;
    const gguf_ctx *g = L->w.g;
    gguf_str arch;
    if (!gguf_get_str(g, "general.architecture", &arch))
        return sh_errf(L->err, "missing metadata 'general.architecture'");
    if (gguf_str_eq(arch, "bert")) {
        hp->arch = ENCODER_BERT;
        L->w.arch = "bert";
    } else if (gguf_str_eq(arch, "nomic-bert")) {
        hp->arch = ENCODER_NOMIC_BERT;
        L->w.arch = "nomic-bert";
    } else {
        int n = arch.len > 64 ? 64 : (int)arch.len;
        return sh_errf(L->err, "unsupported encoder architecture '%.*s' (supported: bert, "
                               "nomic-bert)", n, arch.ptr);
    }
    weights_loader *W = &L->w;
    const int64_t BIG = 1 << 20;
    int kv;
    if (weights_int(W, "embedding_length", -1, 1, BIG, &hp->dim) ||
        weights_int(W, "block_count", -1, 1, 1024, &hp->n_layers) ||
        weights_int(W, "feed_forward_length", -1, 1, BIG, &hp->ffn) ||
        weights_int(W, "attention.head_count", -1, 1, 4096, &hp->n_heads) ||
        weights_int(W, "attention.head_count_kv", hp->n_heads, 1, 4096, &kv) ||
        weights_int(W, "context_length", -1, 1, 1 << 16, &hp->n_ctx_train))
        return -1;
    if (kv != hp->n_heads)
        return sh_errf(L->err, "attention.head_count_kv %d differs from head_count %d (grouped "
                               "attention is not supported in encoders)", kv, hp->n_heads);
    if (hp->dim % hp->n_heads)
        return sh_errf(L->err, "embedding_length %d is not a multiple of head_count %d",
                       hp->dim, hp->n_heads);
    hp->head_dim = hp->dim / hp->n_heads;
    if (weights_float(W, "attention.layer_norm_epsilon", 1e-12f, &hp->norm_eps)) return -1;
    if (!(hp->norm_eps >= 0)) return sh_errf(L->err, "layer_norm_epsilon must be >= 0");
    char key[96];
    snprintf(key, sizeof key, "%s.attention.causal", W->arch);
    bool causal = false;
    if (gguf_find(g, key) && !gguf_get_bool(g, key, &causal))
        return sh_errf(L->err, "metadata '%s' is not a boolean", key);
    if (causal) return sh_errf(L->err, "'%s' is true: causal encoders are not supported", key);
    int pool;
    if (weights_int(W, "pooling_type", ENCODER_POOL_NONE, 0, 4, &pool)) return -1;
    hp->pooling = (encoder_pooling)pool;
    if (hp->arch == ENCODER_NOMIC_BERT) {
        if (weights_int(W, "rope.dimension_count", hp->head_dim, 2, hp->head_dim, &hp->n_rot) ||
            weights_float(W, "rope.freq_base", 10000.0f, &hp->rope_base))
            return -1;
        if (hp->n_rot % 2) return sh_errf(L->err, "rope.dimension_count %d is odd", hp->n_rot);
        if (!(hp->rope_base > 0)) return sh_errf(L->err, "rope.freq_base must be > 0");
    }
    return 0;
}

/* ============================================================ heads ===== */

/* Label names from a string array key (n of them, or LABEL_i where missing). */
static int load_labels(loader *L, const char *key, int n, char ***out) {
    const gguf_ctx *g = L->w.g;
    const gguf_arr *a = NULL;
    if (gguf_find(g, key)) {
        a = gguf_get_arr(g, key, GGUF_STR);
        if (!a) return sh_errf(L->err, "metadata '%s' is not an array of strings", key);
        if (a->n != (uint64_t)n)
            return sh_errf(L->err, "metadata '%s' names %llu labels, the head has %d outputs",
                           key, (unsigned long long)a->n, n);
    }
    char **labels = calloc((size_t)n, sizeof *labels);
    if (!labels) return sh_errf(L->err, "out of memory");
    *out = labels;
    for (int i = 0; i < n; i++) {
        if (a) {
            gguf_str s = a->items[i].v.str;
            size_t len = s.len > 256 ? 256 : (size_t)s.len; /* names are shown, keep them short */
            size_t m;
            labels[i] = utf8_replace_invalid(s.ptr, len, &m); /* JSON needs valid UTF-8 */
            if (labels[i] && m == 0) {
                free(labels[i]);
                labels[i] = NULL;
            }
        }
        if (!labels[i]) {
            char buf[32];
            snprintf(buf, sizeof buf, "LABEL_%d", i);
            labels[i] = strdup(buf);
        }
        if (!labels[i]) return sh_errf(L->err, "out of memory");
    }
    return 0;
}

/* A head's output matrix "<prefix>.weight" [dim, n_out] (+ bias); n_out from its shape. */
static int load_head_out(loader *L, encoder_head *h, const char *prefix, const char *labels_key) {
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const gguf_tensor *t = gguf_find_tensor(L->w.g, name);
    if (!t) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        if (gguf_find_tensor(L->w.g, name))
            return sh_errf(L->err, "the file has '%s' but no '%s.weight'", name, prefix);
        return 0;
    }
    if (t->ne[0] != (uint64_t)L->m->hp.dim || t->ne[1] < 1 || t->ne[1] > 65536)
        return sh_errf(L->err, "tensor '%s' has shape [%llu, %llu], expected [%d, outputs "
                               "1..65536]", name, (unsigned long long)t->ne[0],
                       (unsigned long long)t->ne[1], L->m->hp.dim);
    h->n_out = (int)t->ne[1];
    if (weights_mat(&L->w, &h->out, name, L->m->hp.dim, h->n_out, true)) return -1;
    snprintf(name, sizeof name, "%s.bias", prefix);
    if (weights_vec(&L->w, &h->out_b, name, h->n_out, false)) return -1;
    return load_labels(L, labels_key, h->n_out, &h->labels);
}

static int load_heads(loader *L) {
    encoder_model *m = L->m;
    const gguf_ctx *g = L->w.g;
    const int dim = m->hp.dim;
    bool token_task = false;
    gguf_str task;
    if (gguf_find(g, "shoal.classifier.task")) {
        if (!gguf_get_str(g, "shoal.classifier.task", &task) ||
            !(gguf_str_eq(task, "token") || gguf_str_eq(task, "sequence")))
            return sh_errf(L->err, "metadata 'shoal.classifier.task' must be \"token\" or "
                                   "\"sequence\"");
        token_task = gguf_str_eq(task, "token");
    }
    char key[96];
    snprintf(key, sizeof key, "%s.classifier.output_labels", L->w.arch);
    encoder_head *cls = token_task ? &m->tok_head : &m->seq_head;
    if (weights_mat(&L->w, &cls->dense, "cls.weight", dim, dim, false) ||
        weights_vec(&L->w, &cls->dense_b, "cls.bias", dim, false) ||
        load_head_out(L, cls, "cls.output", key))
        return -1;
    if ((cls->dense.n_rows || cls->dense_b) && !cls->n_out)
        return sh_errf(L->err, "the file has 'cls.weight' / 'cls.bias' but no 'cls.output.weight'");
    if (cls->dense_b && !cls->dense.n_rows)
        return sh_errf(L->err, "the file has 'cls.bias' but no 'cls.weight'");
    if (token_task && !cls->n_out)
        return sh_errf(L->err, "'shoal.classifier.task' is \"token\" but there is no "
                               "'cls.output.weight'");
    if (!token_task) {
        if (load_head_out(L, &m->tok_head, "shoal.token_cls.output",
                          "shoal.token_classifier.output_labels"))
            return -1;
    } else if (gguf_find_tensor(g, "shoal.token_cls.output.weight")) {
        return sh_errf(L->err, "a tagger file (shoal.classifier.task = token) must not also "
                               "have 'shoal.token_cls.output.weight'");
    }
    return 0;
}

/* ============================================================ tensors ===== */

static const char *const layer_tensors[] = {
    "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_q.bias", "attn_k.bias",
    "attn_v.bias", "attn_qkv.weight", "attn_qkv.bias", "attn_output.weight", "attn_output.bias",
    "attn_output_norm.weight", "attn_output_norm.bias", "ffn_up.weight", "ffn_up.bias",
    "ffn_gate.weight", "ffn_down.weight", "ffn_down.bias", "layer_output_norm.weight",
    "layer_output_norm.bias"};

static const char *const global_tensors[] = {
    "token_embd.weight", "token_types.weight", "position_embd.weight", "token_embd_norm.weight",
    "token_embd_norm.bias", "cls.weight", "cls.bias", "cls.output.weight", "cls.output.bias",
    "shoal.token_cls.output.weight", "shoal.token_cls.output.bias"};

/* True when the loader knows what the tensor is (it was checked, or it is one that this
 * architecture never uses and that would have been refused above). */
static bool known_tensor(const encoder_model *m, const char *name) {
    for (size_t i = 0; i < sizeof global_tensors / sizeof *global_tensors; i++)
        if (!strcmp(name, global_tensors[i])) return true;
    int l, n = 0;
    if (sscanf(name, "blk.%d.%n", &l, &n) == 1 && n > 0 && l >= 0 && l < m->hp.n_layers) {
        char canon[32];
        snprintf(canon, sizeof canon, "blk.%d.", l);
        if (strncmp(name, canon, strlen(canon))) return false; /* "blk.01." and the like */
        for (size_t i = 0; i < sizeof layer_tensors / sizeof *layer_tensors; i++)
            if (!strcmp(name + n, layer_tensors[i])) return true;
    }
    return false;
}

static int load_qkv(loader *L, encoder_layer *ly, int l) {
    weights_loader *W = &L->w;
    const int dim = L->m->hp.dim;
    char name[96];
#define NM(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, l), name)
    if (gguf_find_tensor(W->g, NM("attn_qkv.weight"))) {
        if (gguf_find_tensor(W->g, NM("attn_q.weight")))
            return sh_errf(L->err, "layer %d has both attn_qkv and attn_q", l);
        float *b = NULL;
        if (weights_mat(W, &ly->wqkv, NM("attn_qkv.weight"), dim, 3 * (int64_t)dim, true) ||
            weights_vec(W, &b, NM("attn_qkv.bias"), 3 * (int64_t)dim, false))
            return -1;
        if (b) { /* split into the three per-projection biases */
            ly->bq = malloc((size_t)dim * sizeof(float));
            ly->bk = malloc((size_t)dim * sizeof(float));
            ly->bv = malloc((size_t)dim * sizeof(float));
            if (!ly->bq || !ly->bk || !ly->bv) {
                free(b);
                return sh_errf(L->err, "out of memory");
            }
            memcpy(ly->bq, b, (size_t)dim * sizeof(float));
            memcpy(ly->bk, b + dim, (size_t)dim * sizeof(float));
            memcpy(ly->bv, b + 2 * dim, (size_t)dim * sizeof(float));
            free(b);
        } else if (gguf_find_tensor(W->g, NM("attn_q.bias")) &&
                   (weights_vec(W, &ly->bq, NM("attn_q.bias"), dim, true) ||
                    weights_vec(W, &ly->bk, NM("attn_k.bias"), dim, true) ||
                    weights_vec(W, &ly->bv, NM("attn_v.bias"), dim, true))) {
            return -1;
        }
        return 0;
    }
    if (weights_mat(W, &ly->wq, NM("attn_q.weight"), dim, dim, true) ||
        weights_mat(W, &ly->wk, NM("attn_k.weight"), dim, dim, true) ||
        weights_mat(W, &ly->wv, NM("attn_v.weight"), dim, dim, true) ||
        weights_vec(W, &ly->bq, NM("attn_q.bias"), dim, false) ||
        weights_vec(W, &ly->bk, NM("attn_k.bias"), dim, false) ||
        weights_vec(W, &ly->bv, NM("attn_v.bias"), dim, false))
        return -1;
#undef NM
    return 0;
}

static int load_tensors(loader *L) {
    encoder_model *m = L->m;
    encoder_hparams *hp = &m->hp;
    weights_loader *W = &L->w;
    const gguf_ctx *g = W->g;
    const int dim = hp->dim;
    const gguf_tensor *te = gguf_find_tensor(g, "token_embd.weight");
    if (!te) return sh_errf(L->err, "missing tensor 'token_embd.weight'");
    if (te->ne[1] < 1 || te->ne[1] > (1u << 24))
        return sh_errf(L->err, "tensor 'token_embd.weight' has %llu rows (vocabulary size out "
                               "of range)", (unsigned long long)te->ne[1]);
    hp->n_vocab = (int)te->ne[1];
    if (weights_mat(W, &m->tok_embd, "token_embd.weight", dim, hp->n_vocab, true)) return -1;
    if (!model_row_type_ok(te->type))
        return sh_errf(L->err, "tensor 'token_embd.weight' has type %s, which is not supported "
                               "for the embedding lookup", dtype_name(te->type));
    const gguf_tensor *tt = gguf_find_tensor(g, "token_types.weight");
    if (tt) { /* only row 0 is ever used; any number of rows */
        if (tt->ne[1] < 1 || tt->ne[1] > 1024 || tt->ne[2] != 1 || tt->ne[3] != 1)
            return sh_errf(L->err, "tensor 'token_types.weight' has shape [%llu, %llu, %llu, "
                                   "%llu], expected [%d, 1..1024]", (unsigned long long)tt->ne[0],
                           (unsigned long long)tt->ne[1], (unsigned long long)tt->ne[2],
                           (unsigned long long)tt->ne[3], dim);
        if (weights_table(W, &m->type_embd, "token_types.weight", dim, (int64_t)tt->ne[1], true))
            return -1;
    }
    if (hp->arch == ENCODER_BERT) {
        if (weights_table(W, &m->pos_embd, "position_embd.weight", dim, hp->n_ctx_train, true))
            return -1;
    } else if (gguf_find_tensor(g, "position_embd.weight")) {
        return sh_errf(L->err, "tensor 'position_embd.weight' is not used by nomic-bert "
                               "(rotary positions)");
    }
    if (weights_vec(W, &m->embd_ln_w, "token_embd_norm.weight", dim, true) ||
        weights_vec(W, &m->embd_ln_b, "token_embd_norm.bias", dim, true))
        return -1;

    m->layers = calloc((size_t)hp->n_layers, sizeof *m->layers);
    if (!m->layers) return sh_errf(L->err, "out of memory");
    char name[96];
#define NM(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, l), name)
    for (int l = 0; l < hp->n_layers; l++) {
        encoder_layer *ly = &m->layers[l];
        const bool nomic = hp->arch == ENCODER_NOMIC_BERT;
        if (load_qkv(L, ly, l) ||
            weights_mat(W, &ly->wo, NM("attn_output.weight"), dim, dim, true) ||
            weights_vec(W, &ly->bo, NM("attn_output.bias"), dim, false) ||
            weights_vec(W, &ly->ln1_w, NM("attn_output_norm.weight"), dim, true) ||
            weights_vec(W, &ly->ln1_b, NM("attn_output_norm.bias"), dim, true) ||
            weights_mat(W, &ly->w_up, NM("ffn_up.weight"), dim, hp->ffn, true) ||
            weights_vec(W, &ly->b_up, NM("ffn_up.bias"), hp->ffn, false) ||
            weights_mat(W, &ly->w_gate, NM("ffn_gate.weight"), dim, hp->ffn, nomic) ||
            weights_mat(W, &ly->w_down, NM("ffn_down.weight"), hp->ffn, dim, true) ||
            weights_vec(W, &ly->b_down, NM("ffn_down.bias"), dim, false) ||
            weights_vec(W, &ly->ln2_w, NM("layer_output_norm.weight"), dim, true) ||
            weights_vec(W, &ly->ln2_b, NM("layer_output_norm.bias"), dim, true))
            return -1;
        if (!nomic && ly->w_gate.n_rows)
            return sh_errf(L->err, "tensor '%s' is not used by bert (GELU FFN)", NM("ffn_gate.weight"));
    }
#undef NM
    if (load_heads(L)) return -1;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!known_tensor(m, g->tensors[i].name))
            return sh_errf(L->err, "tensor '%s' is not part of a %s encoder (a variant shoal "
                                   "does not support?)", g->tensors[i].name, W->arch);
    weights_type_name(W, m->type_name);
    m->n_params = W->n_params;
    m->n_bytes = W->n_bytes;
    return 0;
}

/* ============================================================ repacking ===== */

/* Every matrix the forward pass multiplies with (not tok_embd: rows are looked up). */
static int repack(encoder_model *m, gguf_ctx *g, sh_err *err) {
    model_mat **mats = malloc(((size_t)m->hp.n_layers * 8 + 4) * sizeof *mats);
    if (!mats) return sh_errf(err, "out of memory");
    int n = 0;
    for (int l = 0; l < m->hp.n_layers; l++) {
        encoder_layer *ly = &m->layers[l];
        model_mat *ws[] = {&ly->wq, &ly->wk,   &ly->wv,     &ly->wqkv,
                           &ly->wo, &ly->w_up, &ly->w_gate, &ly->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) mats[n++] = ws[i];
    }
    mats[n++] = &m->seq_head.dense;
    mats[n++] = &m->seq_head.out;
    mats[n++] = &m->tok_head.dense;
    mats[n++] = &m->tok_head.out;
    int rc = weights_repack(mats, n, g->mapped, &m->pack, err);
    free(mats);
    return rc;
}

/* ============================================================ public ===== */

encoder_model *encoder_from_gguf(gguf_ctx *g, const encoder_params *p, sh_err *err) {
    const encoder_params defaults = {0};
    if (!p) p = &defaults;
    encoder_model *m = calloc(1, sizeof *m);
    if (!m) {
        sh_errf(err, "%s: out of memory", g->path);
        return NULL;
    }
    m->path = strdup(g->path ? g->path : "<model>");
    loader L = {.m = m, .w = {.g = g, .err = err}, .err = err};
    if (!m->path || load_hparams(&L) || load_tensors(&L) ||
        (!p->no_repack && repack(m, g, err))) {
        if (!m->path) sh_errf(err, "out of memory");
        sh_err_prefix(err, g->path ? g->path : "<model>");
        m->g = NULL; /* the caller keeps g on failure */
        encoder_free(m);
        return NULL;
    }
    m->g = g;
    return m;
}

encoder_model *encoder_load(const char *path, const encoder_params *p, sh_err *err) {
    gguf_ctx *g = gguf_open(path, err);
    if (!g) return NULL;
    encoder_model *m = encoder_from_gguf(g, p, err);
    if (!m) gguf_free(g);
    return m;
}

static void head_free(encoder_head *h) {
    free(h->dense_b);
    free(h->out_b);
    for (int i = 0; h->labels && i < h->n_out; i++) free(h->labels[i]);
    free(h->labels);
}

void encoder_free(encoder_model *m) {
    if (!m) return;
    for (int l = 0; m->layers && l < m->hp.n_layers; l++) {
        encoder_layer *ly = &m->layers[l];
        float *vs[] = {ly->bq, ly->bk, ly->bv, ly->bo, ly->ln1_w, ly->ln1_b,
                       ly->b_up, ly->b_down, ly->ln2_w, ly->ln2_b};
        for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) free(vs[i]);
    }
    free(m->layers);
    head_free(&m->seq_head);
    head_free(&m->tok_head);
    weights_pack_free(&m->pack);
    free(m->type_embd);
    free(m->pos_embd);
    free(m->embd_ln_w);
    free(m->embd_ln_b);
    free(m->path);
    gguf_free(m->g);
    free(m);
}
