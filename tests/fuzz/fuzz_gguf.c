/*
 * libFuzzer target: the GGUF reader on arbitrary bytes. A successful parse is then walked
 * fully (every key looked up, every array element read, every tensor's bytes touched), so a
 * parse that accepted something inconsistent shows up as a sanitizer report here.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gguf/gguf.h"

static volatile uint64_t sink;

static void walk(const gguf_value *v) {
    if (v->type == GGUF_STR) {
        if (v->v.str.len) sink += (uint8_t)v->v.str.ptr[v->v.str.len - 1];
        return;
    }
    if (v->type != GGUF_ARR) return;
    const gguf_arr *a = &v->v.arr;
    for (uint64_t i = 0; i < a->n; i++) {
        if (a->items) {
            walk(&a->items[i]);
        } else {
            double d;
            if (gguf_arr_f64(a, i, &d)) sink += (uint64_t)(d != 0);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sh_err err;
    gguf_ctx *g = gguf_open_mem(data, size, "fuzz", &err);
    if (!g) {
        sink += strlen(err.msg);
        return 0;
    }
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (gguf_find(g, g->kv[i].key) != &g->kv[i]) __builtin_trap();
        walk(&g->kv[i].val);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (gguf_find_tensor(g, t->name) != t) __builtin_trap();
        if (t->size) sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->size - 1];
    }
    gguf_free(g);
    return 0;
}
