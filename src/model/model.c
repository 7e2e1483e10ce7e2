/*
 * model/model — see model.h. Reads hyperparameters from "<arch>.*" keys and checks every
 * tensor's presence, type and shape before anything uses it.
 */
#include "model/model.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tensor/dtype.h"
#include "tensor/quant.h"
#include "tensor/vecdot.h"

/* ============================================================ row conversion ===== */

bool model_row_type_ok(uint32_t type) { return quant_supported(type); }

static void convert_row(uint32_t type, const void *src, float *dst, int64_t n) {
    int rc = quant_dequantize_row(type, src, dst, n);
    SH_ASSERT(rc == 0); /* the type and row length were checked at load time */
}

int model_mat_row(const model_mat *m, int64_t row, float *dst) {
    SH_ASSERT(row >= 0 && row < m->n_rows);
    if (!model_row_type_ok(m->type)) return -1;
    convert_row(m->type, (const uint8_t *)m->data + (size_t)row * m->row_bytes, dst, m->n_cols);
    return 0;
}

/* ============================================================ loading helpers ===== */

typedef struct loader {
    model *m;
    const gguf_ctx *g;
    sh_err *err;
    const char *arch; /* "llama" / "qwen2", the key prefix */
    uint64_t type_count[DT_COUNT]; /* elements per 2-D weight type, for type_name */
} loader;

/* An integer hyperparameter "<arch>.<suffix>"; def < 0 means required. */
static int hp_int(loader *L, const char *suffix, int64_t def, int64_t lo, int64_t hi, int *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", L->arch, suffix);
    uint64_t v;
    if (gguf_find(L->g, key)) {
        if (!gguf_get_u64(L->g, key, &v))
            return sh_errf(L->err, "metadata '%s' is not a non-negative integer", key);
    } else if (def < 0) {
        return sh_errf(L->err, "missing metadata '%s'", key);
    } else {
        v = (uint64_t)def;
    }
    if (v < (uint64_t)lo || v > (uint64_t)hi)
        return sh_errf(L->err, "metadata '%s' = %llu is out of range [%lld, %lld]", key,
                       (unsigned long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return 0;
}

static int hp_float(loader *L, const char *suffix, float def, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", L->arch, suffix);
    if (!gguf_find(L->g, key)) {
        *out = def;
        return 0;
    }
    double v;
    if (!gguf_get_f64(L->g, key, &v) || !isfinite(v))
        return sh_errf(L->err, "metadata '%s' is not a finite number", key);
    *out = (float)v;
    return 0;
}

/* The tensor `name` with ne = [ne0, ne1]; NULL and an error when missing (if required) or
 * misshapen. *missing is set when it is absent. */
static const gguf_tensor *find_shaped(loader *L, const char *name, int64_t ne0, int64_t ne1,
                                      bool required, bool *missing) {
    const gguf_tensor *t = gguf_find_tensor(L->g, name);
    *missing = t == NULL;
    if (!t) {
        if (required) sh_errf(L->err, "missing tensor '%s'", name);
        return NULL;
    }
    bool ok = t->ne[0] == (uint64_t)ne0 && t->ne[1] == (uint64_t)ne1 && t->ne[2] == 1 &&
              t->ne[3] == 1;
    if (!ok) {
        sh_errf(L->err, "tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%lld, %lld]",
                name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], (long long)ne0,
                (long long)ne1);
        return NULL;
    }
    return t;
}

/* A 2-D weight of n_rows rows of n_cols; its type must have a matmul kernel. */
static int load_mat(loader *L, model_mat *out, const char *name, int64_t n_cols, int64_t n_rows) {
    bool missing;
    const gguf_tensor *t = find_shaped(L, name, n_cols, n_rows, true, &missing);
    if (!t) return -1;
    const vecdot_kernel *k = vecdot_get(t->type);
    if (!k)
        return sh_errf(L->err, "tensor '%s' has type %s, which is not supported", name,
                       dtype_name(t->type));
    uint64_t rb;
    if (!dtype_row_bytes(t->type, (uint64_t)n_cols, &rb) ||
        n_cols % (int64_t)dtype_block_elems(k->act_type) != 0)
        return sh_errf(L->err, "tensor '%s': row length %lld does not fit type %s blocks", name,
                       (long long)n_cols, dtype_name(t->type));
    out->name = t->name;
    out->data = t->data;
    out->type = t->type;
    out->n_cols = n_cols;
    out->n_rows = n_rows;
    out->row_bytes = (size_t)rb;
    L->m->n_params += t->n_elems;
    L->m->n_bytes += t->size;
    L->type_count[t->type] += t->n_elems;
    return 0;
}

/* A 1-D tensor of n elements converted to an owned float array; *out stays NULL when the
 * tensor is absent and optional. */
static int load_vec(loader *L, float **out, const char *name, int64_t n, bool required) {
    bool missing;
    *out = NULL;
    const gguf_tensor *t = find_shaped(L, name, n, 1, required, &missing);
    if (!t) return (missing && !required) ? 0 : -1;
    if (!model_row_type_ok(t->type) || n % (int64_t)dtype_block_elems(t->type) != 0)
        return sh_errf(L->err, "tensor '%s' has type %s, which is not supported for a vector",
                       name, dtype_name(t->type));
    float *v = malloc((size_t)n * sizeof(float));
    if (!v) return sh_errf(L->err, "out of memory");
    convert_row(t->type, t->data, v, n);
    *out = v;
    L->m->n_params += t->n_elems;
    L->m->n_bytes += t->size;
    return 0;
}

/* ============================================================ hyperparameters ===== */

static int load_hparams(loader *L) {
    model_hparams *hp = &L->m->hp;
    gguf_str arch;
    if (!gguf_get_str(L->g, "general.architecture", &arch))
        return sh_errf(L->err, "missing metadata 'general.architecture'");
    if (gguf_str_eq(arch, "llama")) {
        hp->arch = MODEL_ARCH_LLAMA;
        hp->rope = MODEL_ROPE_NORM;
        L->arch = "llama";
    } else if (gguf_str_eq(arch, "qwen2")) {
        hp->arch = MODEL_ARCH_QWEN2;
        hp->rope = MODEL_ROPE_NEOX;
        L->arch = "qwen2";
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
    snprintf(key, sizeof key, "%s.rope.scaling.type", L->arch);
    gguf_str st;
    if (gguf_get_str(L->g, key, &st) && !gguf_str_eq(st, "none")) {
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
    const gguf_tensor *te = gguf_find_tensor(L->g, "token_embd.weight");
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
    if (gguf_find_tensor(L->g, "output.weight")) {
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
        if (gguf_find_tensor(L->g, NM("ffn_gate_inp.weight")))
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
    uint32_t best = DT_F32;
    for (uint32_t t = 0; t < DT_COUNT; t++)
        if (L->type_count[t] > L->type_count[best]) best = t;
    snprintf(m->type_name, sizeof m->type_name, "%s", dtype_name(best));
    return 0;
}

/* ============================================================ repacking ===== */

/* Every matrix the engine multiplies with (not tok_embd, which is only looked up by rows). */
static int all_mats(model *m, model_mat **out) {
    int n = 0;
    for (int l = 0; l < m->hp.n_layers; l++) {
        model_layer *ly = &m->layers[l];
        model_mat *ws[] = {&ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->w_gate, &ly->w_up, &ly->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) out[n++] = ws[i];
    }
    out[n++] = &m->output;
    return n;
}

static bool want_pack(const model_mat *w) {
    const vecdot_kernel *k = vecdot_get(w->type);
    return k && k->matmul_packed && vecdot_packed_group_bytes(w->type, w->n_cols) > 0;
}

/* Bytes a matrix takes in the repacked buffer: its packed form, or a plain copy (types without
 * a packed layout still gain from huge pages: no TLB misses while streaming), 64-aligned. */
static size_t repacked_bytes(const model_mat *w) {
    const size_t b = want_pack(w) ? vecdot_packed_bytes(w->type, w->n_cols, w->n_rows)
                                  : (size_t)w->n_rows * w->row_bytes;
    return (b + 63) & ~(size_t)63;
}

/* One loader thread's share of the repacking: matrices i = ith, ith + nth, ... */
typedef struct pack_job {
    model_mat **mats;
    const size_t *off; /* offset of each matrix in buf */
    int n, ith, nth;
    uint8_t *buf;
    bool drop;         /* release the file's pages afterwards (a real file mapping) */
} pack_job;

static void *pack_thread(void *arg) {
    const pack_job *j = arg;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int i = j->ith; i < j->n; i += j->nth) {
        model_mat *w = j->mats[i];
        const void *file = w->data;
        uint8_t *dst = j->buf + j->off[i];
        if (want_pack(w)) {
            vecdot_pack(w->type, w->n_cols, file, w->row_bytes, w->n_rows, 0, w->n_rows, dst);
            w->packed = dst;
            w->packed_stride = vecdot_packed_group_bytes(w->type, w->n_cols);
        } else {
            memcpy(dst, file, (size_t)w->n_rows * w->row_bytes);
            w->data = dst;
        }
        /* the file's copy is no longer read (except token rows of tied embeddings, which fault
         * back in): drop it from this process (whole pages inside the tensor only) */
        if (j->drop) {
            uintptr_t a = ((uintptr_t)file + page - 1) & ~(page - 1);
            uintptr_t b = ((uintptr_t)file + (size_t)w->n_rows * w->row_bytes) & ~(page - 1);
            if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
        }
    }
    return NULL;
}

/* Copies every matrix the engine multiplies with into one huge-page-backed anonymous mapping:
 * packed when its kernel has a packed layout, else in the file's layout. Matrices are spread
 * over up to 8 threads (reading the file, zeroing fresh huge pages and packing all scale with
 * cores: m374 Q8_0 loads in half the time with 2). */
static int repack(model *m, gguf_ctx *g, sh_err *err) {
    model_mat **mats = malloc(((size_t)m->hp.n_layers * 7 + 1) * sizeof *mats);
    if (!mats) return sh_errf(err, "out of memory");
    const int n = all_mats(m, mats);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += repacked_bytes(mats[i]);
    if (total == 0) {
        free(mats);
        return 0;
    }
    /* 2 MiB-aligned so that every huge page is fully ours; MADV_HUGEPAGE before the first
     * touch (THP is often in "madvise" mode). Failing to get huge pages is not an error. */
    const size_t huge = (size_t)2 << 20;
    const size_t bytes = (total + huge - 1) / huge * huge;
    uint8_t *raw = mmap(NULL, bytes + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
    if (raw == MAP_FAILED) {
        free(mats);
        return sh_errf(err, "cannot allocate %.1f MiB for the repacked weights (--no-repack "
                            "uses the file mapping instead)", (double)total / (1 << 20));
    }
    uint8_t *buf = (uint8_t *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
    if (buf > raw) munmap(raw, (size_t)(buf - raw));
    munmap(buf + bytes, (size_t)(raw + huge - buf));
    madvise(buf, bytes, MADV_HUGEPAGE);
    m->pack_buf = buf;
    m->pack_bytes = bytes;
    size_t *off = malloc((size_t)n * sizeof *off);
    if (!off) {
        free(mats);
        return sh_errf(err, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        off[i] = i ? off[i - 1] + repacked_bytes(mats[i - 1]) : 0;
        if (want_pack(mats[i])) m->n_packed++;
        else m->n_copied++;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nth = ncpu < 1 ? 1 : ncpu > 8 ? 8 : (int)ncpu;
    if (nth > n) nth = n;
    pack_job jobs[8];
    pthread_t tid[8];
    int started = 1; /* job 0 runs on this thread; a thread that cannot start leaves its share
                      * to this one */
    for (int t = 0; t < nth; t++)
        jobs[t] = (pack_job){mats, off, n, t, nth, buf, g->mapped};
    for (int t = 1; t < nth; t++, started++)
        if (pthread_create(&tid[t], NULL, pack_thread, &jobs[t])) break;
    pack_thread(&jobs[0]);
    for (int t = 1; t < started; t++) pthread_join(tid[t], NULL);
    for (int t = started; t < nth; t++) pack_thread(&jobs[t]);
    free(off);
    free(mats);
    return 0;
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
    loader L = {.m = m, .g = g, .err = err};
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
    if (m->pack_buf) munmap(m->pack_buf, m->pack_bytes);
    free(m->output_norm);
    free(m->rope_freqs);
    free(m->path);
    gguf_free(m->g);
    free(m);
}
