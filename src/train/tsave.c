/*
 * train/tsave — see tsave.h.
 */
#include "train/tsave.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/dtype.h"
#include "tensor/quant.h"

int tsave_tokenizer(gguf_writer *w, const gguf_ctx *src, const int32_t *map, int n_new, sh_err *err) {
    const gguf_arr *toks = gguf_get_arr(src, "tokenizer.ggml.tokens", GGUF_STR);
    const uint64_t n_old = toks ? toks->n : 0;
    for (uint64_t i = 0; i < src->n_kv; i++) {
        const gguf_kv *kv = &src->kv[i];
        if (strncmp(kv->key, "tokenizer.", 10)) continue;
        if (!map) {
            gguf_writer_add(w, kv->key, &kv->val);
            continue;
        }
        const size_t kl = strlen(kv->key);
        if (kl > 9 && !strcmp(kv->key + kl - 9, "_token_id")) { /* an id: remapped, dropped if pruned */
            uint64_t id;
            if (gguf_get_u64(src, kv->key, &id) && id < n_old && map[id] >= 0)
                gguf_writer_add_u32(w, kv->key, (uint32_t)map[id]);
            continue;
        }
        if (kv->val.type == GGUF_ARR && kv->val.v.arr.n == n_old) { /* a per-token array */
            const gguf_arr *a = &kv->val.v.arr;
            if (a->elem == GGUF_STR) {
                const char **s = malloc((size_t)n_new * sizeof *s);
                char **copies = calloc((size_t)n_new, sizeof *copies);
                if (!s || !copies) {
                    free(s), free(copies);
                    return sh_errf(err, "out of memory");
                }
                for (uint64_t t = 0; t < n_old; t++) {
                    if (map[t] < 0) continue;
                    gguf_str gs = a->items[t].v.str;
                    copies[map[t]] = malloc(gs.len + 1);
                    if (copies[map[t]]) memcpy(copies[map[t]], gs.ptr, gs.len), copies[map[t]][gs.len] = 0;
                    s[map[t]] = copies[map[t]] ? copies[map[t]] : "";
                }
                gguf_writer_add_str_arr(w, kv->key, (uint64_t)n_new, s);
                for (int t = 0; t < n_new; t++) free(copies[t]);
                free(copies), free(s);
            } else {
                const size_t es = gguf_type_size(a->elem);
                uint8_t *raw = malloc((size_t)n_new * es + 1);
                if (!raw) return sh_errf(err, "out of memory");
                for (uint64_t t = 0; t < n_old; t++)
                    if (map[t] >= 0) memcpy(raw + (size_t)map[t] * es, a->raw + t * es, es);
                gguf_writer_add_arr(w, kv->key, a->elem, (uint64_t)n_new, raw);
                free(raw);
            }
            continue;
        }
        gguf_writer_add(w, kv->key, &kv->val);
    }
    return gguf_writer_error(w) ? sh_errf(err, "%s", gguf_writer_error(w)) : 0;
}

static void add_f32(gguf_writer *w, const char *name, const tparam *t, const float *data) {
    const uint64_t ne[2] = {(uint64_t)t->ne0, (uint64_t)t->ne1};
    gguf_writer_add_tensor(w, name, DT_F32, t->ne1 > 1 ? 2 : 1, ne, data,
                           (uint64_t)(t->ne0 * t->ne1) * sizeof(float));
}

void tsave_params(gguf_writer *w, const tparams *p, const char *skip, bool optimizer) {
    for (int i = 0; i < p->n; i++) {
        const tparam *t = &p->t[i];
        if (skip && !strncmp(t->name, skip, strlen(skip))) continue;
        add_f32(w, t->name, t, p->w + t->off);
    }
    if (!optimizer) return;
    char nm[160];
    for (int i = 0; i < p->n; i++) {
        const tparam *t = &p->t[i];
        snprintf(nm, sizeof nm, "train.m.%s", t->name);
        add_f32(w, nm, t, p->m + t->off);
        snprintf(nm, sizeof nm, "train.v.%s", t->name);
        add_f32(w, nm, t, p->v + t->off);
    }
}

/* Tensor `name` of shape [ne0, ne1] into dst as floats; 0 loaded, 1 absent or other shape. */
static int load_one(const gguf_ctx *g, const char *name, int64_t ne0, int64_t ne1, float *dst) {
    const gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t || t->ne[0] != (uint64_t)ne0 || t->ne[1] != (uint64_t)ne1 || t->ne[2] != 1 || t->ne[3] != 1) return 1;
    if (!quant_supported(t->type) || ne0 % (int64_t)dtype_block_elems(t->type)) return 1;
    uint64_t rb;
    if (!dtype_row_bytes(t->type, (uint64_t)ne0, &rb)) return 1;
    for (int64_t r = 0; r < ne1; r++)
        if (quant_dequantize_row(t->type, (const uint8_t *)t->data + (size_t)r * rb, dst + r * ne0, ne0)) return 1;
    return 0;
}

int tsave_load_params(tparams *p, const gguf_ctx *g, bool optimizer, int *loaded, sh_err *err) {
    int n = 0;
    char nm[160];
    for (int i = 0; i < p->n; i++) {
        const tparam *t = &p->t[i];
        if (load_one(g, t->name, t->ne0, t->ne1, p->w + t->off)) continue;
        n++;
        if (!optimizer) continue;
        snprintf(nm, sizeof nm, "train.m.%s", t->name);
        int bad = load_one(g, nm, t->ne0, t->ne1, p->m + t->off);
        snprintf(nm, sizeof nm, "train.v.%s", t->name);
        bad |= load_one(g, nm, t->ne0, t->ne1, p->v + t->off);
        if (bad) return sh_errf(err, "%s: the checkpoint lacks the optimizer state of '%s'", g->path, t->name);
    }
    if (optimizer && n != p->n)
        return sh_errf(err, "%s: the checkpoint has %d of the model's %d tensors (another shape?)", g->path, n, p->n);
    if (loaded) *loaded = n;
    return 0;
}
