/*
 * model/quantize — see quantize.h.
 */
#include "model/quantize.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"

/* ============================================================ file types ===== */

/* llama.cpp's file type ids (general.file_type). */
enum {
    FT_ALL_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_Q5_0 = 8, FT_Q5_1 = 9,
    FT_Q4_K_S = 14, FT_Q4_K_M = 15, FT_Q5_K_S = 16, FT_Q5_K_M = 17, FT_Q6_K = 18, FT_BF16 = 32,
};

typedef struct {
    const char *name;
    uint32_t ftype;   /* written as general.file_type */
    uint32_t deftype; /* the type of most tensors */
    int pure;         /* every quantizable tensor gets deftype */
} file_type;

static const file_type file_types[] = {
    {"f32", FT_ALL_F32, DT_F32, 0},    {"f16", FT_F16, DT_F16, 0},
    {"bf16", FT_BF16, DT_BF16, 0},     {"q8_0", FT_Q8_0, DT_Q8_0, 0},
    {"q4_0", FT_Q4_0, DT_Q4_0, 0},     {"q4_1", FT_Q4_1, DT_Q4_1, 0},
    {"q5_0", FT_Q5_0, DT_Q5_0, 0},     {"q5_1", FT_Q5_1, DT_Q5_1, 0},
    {"q4_k", FT_Q4_K_M, DT_Q4_K, 1},   {"q5_k", FT_Q5_K_M, DT_Q5_K, 1},
    {"q6_k", FT_Q6_K, DT_Q6_K, 1},     {"q4_k_s", FT_Q4_K_S, DT_Q4_K, 0},
    {"q4_k_m", FT_Q4_K_M, DT_Q4_K, 0}, {"q5_k_s", FT_Q5_K_S, DT_Q5_K, 0},
    {"q5_k_m", FT_Q5_K_M, DT_Q5_K, 0},
};
#define N_FILE_TYPES (sizeof file_types / sizeof file_types[0])

static const file_type *find_file_type(const char *name) {
    for (size_t i = 0; i < N_FILE_TYPES; i++)
        if (name && !strcasecmp(file_types[i].name, name)) return &file_types[i];
    return NULL;
}

int quantize_type_known(const char *name) { return find_file_type(name) != NULL; }

const char *quantize_type_names(void) {
    return "f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k q4_k_s q4_k_m q5_k_s q5_k_m";
}

static int is_quantized(uint32_t t) { return dtype_block_elems(t) > 1; }

/* ============================================================ tensor order ===== */

/* The layer of "blk.N.*", or -1. */
static int layer_of(const char *name) {
    int l = -1;
    if (sscanf(name, "blk.%d.", &l) != 1) return -1;
    return l;
}

typedef struct {
    int layer;
    const char *name;
    uint64_t index;
} order_key;

static int cmp_keys(const void *a, const void *b) {
    const order_key *x = a, *y = b;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* ============================================================ type choice ===== */

typedef enum {
    CAT_TOKEN_EMBD, CAT_ATTN_V, CAT_FFN_DOWN, CAT_ATTN_QKV, CAT_OUTPUT, CAT_OTHER
} category;

static category category_of(const char *n) {
    if (!strcmp(n, "output.weight")) return CAT_OUTPUT;
    if (!strcmp(n, "token_embd.weight") || !strcmp(n, "per_layer_token_embd.weight"))
        return CAT_TOKEN_EMBD;
    if (strstr(n, "attn_qkv.weight")) return CAT_ATTN_QKV;
    if (strstr(n, "attn_kv_b.weight") || strstr(n, "attn_v.weight")) return CAT_ATTN_V;
    if (strstr(n, "ffn_down")) return CAT_FFN_DOWN;
    return CAT_OTHER;
}

/* Dimensions that count: trailing dims of size 1 do not. */
static int n_dims_of(const gguf_tensor *t) {
    int n = 1;
    for (int i = 1; i < GGUF_MAX_DIMS; i++)
        if (t->ne[i] > 1) n = i + 1;
    return n;
}

static int may_quantize(const gguf_tensor *t) {
    const char *n = t->name;
    size_t len = strlen(n);
    if (n_dims_of(t) < 2) return 0;
    if (len < 6 || strcmp(n + len - 6, "weight") != 0) return 0;
    static const char *const keep[] = {"_norm.weight", "ffn_gate_inp.weight", "altup", "laurel",
                                       "per_layer_model_proj", "ssm_conv1d", "attn_rel_b.weight",
                                       "time_mix_", "shortconv.conv.weight", ".position_embd",
                                       ".patch_embd", ".rel_pos"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (strstr(n, keep[i])) return 0;
    if (!strcmp(n, "position_embd.weight") || !strcmp(n, "token_types.weight")) return 0;
    return 1;
}

typedef struct {
    const file_type *ft;
    int tied;         /* no output.weight: token_embd doubles as the output projection */
    int n_attn_v, i_attn_v;
    int n_layer, i_ffn_down;
} mix_state;

/* Layers that get more bits in the _M mixes: first and last eighth, every third between. */
static int more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static uint32_t choose_type(mix_state *s, const gguf_tensor *t) {
    if (!may_quantize(t)) return t->type;
    uint32_t ty = s->ft->deftype;
    if (!is_quantized(ty)) return ty;
    const uint32_t ft = s->ft->ftype;
    const category cat = category_of(t->name);
    if (!s->ft->pure) {
        if (cat == CAT_OUTPUT || (s->tied && cat == CAT_TOKEN_EMBD)) {
            if (t->ne[0] % dtype_block_elems(ty) != 0) ty = DT_Q8_0;
            else if (ty != DT_Q8_0) ty = DT_Q6_K;
        } else if (cat == CAT_ATTN_V || cat == CAT_ATTN_QKV) {
            if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && more_bits(s->i_attn_v, s->n_attn_v))
                ty = DT_Q6_K;
            else if (ft == FT_Q4_K_S && s->i_attn_v < 4)
                ty = DT_Q5_K;
            s->i_attn_v++;
        } else if (cat == CAT_FFN_DOWN) {
            const int i = s->i_ffn_down, n = s->n_layer;
            if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && more_bits(i, n)) ty = DT_Q6_K;
            else if (ft == FT_Q4_K_S && i < n / 8) ty = DT_Q5_K;
            s->i_ffn_down++;
        }
    }
    if (t->ne[0] % dtype_block_elems(ty) != 0) { /* row length does not fit the blocks */
        switch (ty) {
        case DT_Q4_K: ty = DT_Q5_0; break;
        case DT_Q5_K: ty = DT_Q5_1; break;
        case DT_Q6_K: ty = DT_Q8_0; break;
        default: ty = DT_F16; break;
        }
        if (t->ne[0] % dtype_block_elems(ty) != 0) ty = DT_F16;
    }
    return ty;
}

/* ============================================================ conversion ===== */

typedef struct {
    const gguf_tensor *t;
    uint32_t to;
    uint8_t *dst;
    size_t dst_row;
    int64_t row0, row1;
    int rc;
} job;

static void *convert_rows(void *arg) {
    job *j = arg;
    const int64_t k = (int64_t)j->t->ne[0];
    uint64_t src_row = 0;
    dtype_row_bytes(j->t->type, (uint64_t)k, &src_row);
    float *buf = malloc((size_t)k * sizeof(float));
    if (!buf) {
        j->rc = -1;
        return NULL;
    }
    for (int64_t r = j->row0; r < j->row1 && j->rc == 0; r++) {
        const uint8_t *src = (const uint8_t *)j->t->data + (size_t)r * src_row;
        if (quant_dequantize_row(j->t->type, src, buf, k) ||
            quant_quantize_row(j->to, buf, j->dst + (size_t)r * j->dst_row, k))
            j->rc = -1;
    }
    free(buf);
    return NULL;
}

/* Converts tensor t to type `to` into a new buffer (*out, *size). */
static int convert_tensor(const gguf_tensor *t, uint32_t to, int n_threads, uint8_t **out,
                          uint64_t *size, sh_err *err) {
    uint64_t row = 0;
    if (!dtype_row_bytes(to, t->ne[0], &row))
        return sh_errf(err, "tensor '%s': row length %llu does not fit type %s", t->name,
                       (unsigned long long)t->ne[0], dtype_name(to));
    if (!quant_supported(t->type))
        return sh_errf(err, "tensor '%s': cannot convert from type %s", t->name,
                       dtype_name(t->type));
    const int64_t rows = (int64_t)(t->n_elems / t->ne[0]);
    *size = row * (uint64_t)rows;
    *out = malloc(*size ? *size : 1);
    if (!*out) return sh_errf(err, "tensor '%s': out of memory (%llu bytes)", t->name,
                              (unsigned long long)*size);
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 16) n_threads = 16;
    if (rows < 64) n_threads = 1; /* not worth a thread */
    job jobs[16];
    pthread_t th[16];
    int started[16] = {0};
    for (int i = 0; i < n_threads; i++) {
        jobs[i] = (job){t, to, *out, (size_t)row, rows * i / n_threads, rows * (i + 1) / n_threads, 0};
        if (i > 0) started[i] = pthread_create(&th[i], NULL, convert_rows, &jobs[i]) == 0;
        if (i > 0 && !started[i]) convert_rows(&jobs[i]); /* no thread: do it here */
    }
    convert_rows(&jobs[0]);
    int rc = 0;
    for (int i = 0; i < n_threads; i++) {
        if (i > 0 && started[i]) pthread_join(th[i], NULL);
        rc |= jobs[i].rc;
    }
    if (rc) {
        free(*out);
        *out = NULL;
        return sh_errf(err, "tensor '%s': conversion %s -> %s failed", t->name,
                       dtype_name(t->type), dtype_name(to));
    }
    return 0;
}

/* ============================================================ driver ===== */

/* llama.cpp pads the data of the last tensor to the alignment too; the writer ends the file
 * right after it. Appending the zeros keeps the output byte-identical. */
static int pad_file_end(const char *path, uint32_t align, sh_err *err) {
    FILE *f = fopen(path, "ab");
    if (!f) return sh_errf(err, "%s: cannot reopen to pad: %m", path);
    long size = ftell(f);
    int rc = 0;
    if (size < 0) rc = sh_errf(err, "%s: cannot tell size: %m", path);
    else if (align > 1)
        for (long n = (long)(align - (uint64_t)size % align) % align; n > 0 && rc == 0; n--)
            if (fputc(0, f) == EOF) rc = sh_errf(err, "%s: write failed: %m", path);
    if (fclose(f) != 0 && rc == 0) rc = sh_errf(err, "%s: close failed: %m", path);
    return rc;
}

int quantize_file(const char *in, const char *out, const char *type, int n_threads,
                  quantize_progress_fn progress, void *ud, sh_err *err) {
    const file_type *ft = find_file_type(type);
    if (!ft)
        return sh_errf(err, "unknown type '%s' (one of: %s)", type ? type : "(null)",
                       quantize_type_names());
    gguf_ctx *g = gguf_open(in, err);
    if (!g) return -1;
    int rc = -1;
    gguf_writer *w = NULL;
    order_key *order = NULL;
    uint8_t **bufs = NULL;

    mix_state ms = {.ft = ft, .tied = 1};
    gguf_str arch;
    if (gguf_get_str(g, "general.architecture", &arch) && arch.len < 64) {
        char key[128];
        snprintf(key, sizeof key, "%.*s.block_count", (int)arch.len, arch.ptr);
        uint32_t nl = 0;
        if (gguf_get_u32(g, key, &nl)) ms.n_layer = (int)nl;
    }
    order = malloc((g->n_tensors ? g->n_tensors : 1) * sizeof *order);
    bufs = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *bufs);
    w = gguf_writer_init();
    if (!order || !bufs || !w) {
        sh_errf(err, "%s: out of memory", in);
        goto done;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        order[i] = (order_key){layer_of(g->tensors[i].name), g->tensors[i].name, i};
        category c = category_of(g->tensors[i].name);
        if (c == CAT_OUTPUT) ms.tied = 0;
        if (c == CAT_ATTN_V || c == CAT_ATTN_QKV) ms.n_attn_v++;
    }
    qsort(order, g->n_tensors, sizeof *order, cmp_keys);

    /* metadata: file order, with file_type and quantization_version re-added at the end */
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        if (!strcmp(kv->key, "general.file_type") ||
            !strcmp(kv->key, "general.quantization_version") || !strncmp(kv->key, "split.", 6))
            continue;
        gguf_writer_add(w, kv->key, &kv->val);
    }
    gguf_writer_add_u32(w, "general.quantization_version", 2);
    gguf_writer_add_u32(w, "general.file_type", ft->ftype);

    for (uint64_t oi = 0; oi < g->n_tensors; oi++) {
        const uint64_t i = order[oi].index;
        const gguf_tensor *t = &g->tensors[i];
        const uint32_t to = choose_type(&ms, t);
        if (progress) progress(ud, oi, g->n_tensors, t->name, t->type, to, t->ne);
        const void *data = t->data;
        uint64_t size = t->size;
        if (to != t->type) {
            if (convert_tensor(t, to, n_threads, &bufs[i], &size, err)) {
                sh_err_prefix(err, in);
                goto done;
            }
            data = bufs[i];
        }
        /* dims as ggml counts them: trailing 1s dropped */
        gguf_writer_add_tensor(w, t->name, to, (uint32_t)n_dims_of(t), t->ne, data, size);
    }
    if (gguf_writer_error(w)) {
        sh_errf(err, "%s: %s", out, gguf_writer_error(w));
        goto done;
    }
    if (gguf_writer_write(w, out, err)) goto done;
    rc = pad_file_end(out, g->alignment, err);
done:
    gguf_writer_free(w);
    if (bufs)
        for (uint64_t i = 0; i < g->n_tensors; i++) free(bufs[i]);
    free(bufs);
    free(order);
    gguf_free(g);
    return rc;
}
