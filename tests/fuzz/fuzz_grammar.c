/*
 * libFuzzer target: grammar compilation and matching. The first byte picks GBNF (even) or
 * JSON Schema (odd) and how much of the input's tail is replayed as generated text; the rest
 * is the grammar. A compiled grammar must print as GBNF that compiles again; then the tail is
 * fed byte by byte and the matcher must agree with gram_match on the accepted prefix. Then,
 * with a real vocabulary (llama-spm, loaded once; the fuzzer runs from the repository root),
 * masks are computed along a short walk driven by the input's bytes, and every mask must agree
 * with per-token acceptance on sampled tokens.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"
#include "tokenizer/tokenizer.h"

static gram_vocab *fuzz_vocab(int *n_vocab) {
    static gram_vocab *gv;
    static tok_vocab *v;
    static int tried, nv;
    if (!tried) {
        tried = 1;
        sh_err e = {{0}};
        v = tok_vocab_load("tests/data/vocab/ggml-vocab-llama-spm.gguf", &e);
        if (v) gv = gram_vocab_init(v, &e), nv = tok_n_tokens(v);
    }
    *n_vocab = nv;
    return gv;
}

/* A walk of masks: at each step the mask is checked against gram_matcher_allows on 64 tokens
 * chosen by the input, and one allowed token (chosen by the input) is accepted. */
static void mask_walk(const gram *g, const uint8_t *seed, size_t n) {
    int nv = 0;
    gram_vocab *gv = fuzz_vocab(&nv);
    if (!gv || n == 0) return;
    sh_err err = {{0}};
    gram_matcher *m = gram_matcher_init(g, gv, &err);
    uint32_t *mask = malloc(gram_vocab_mask_words(gv) * sizeof *mask);
    for (size_t step = 0; m && mask && step < 6; step++) {
        int allowed = gram_matcher_mask(m, mask);
        if (allowed <= 0) break;
        uint32_t h = 2166136261u ^ (uint32_t)step;
        int pick = -1, seen = 0;
        for (int k = 0; k < 64; k++) {
            h = (h ^ seed[(step * 64 + (size_t)k) % n]) * 16777619u;
            int id = (int)(h % (uint32_t)nv);
            bool in = mask[id / 32] >> (id % 32) & 1;
            if (in != gram_matcher_allows(m, id)) __builtin_trap();
            if (in) pick = id, seen++;
        }
        if (pick < 0) { /* none sampled: the first allowed token */
            for (int id = 0; id < nv && pick < 0; id++)
                if (mask[id / 32] >> (id % 32) & 1) pick = id;
        }
        if (pick < 0 || gram_matcher_accept(m, pick) != 0) break;
        (void)seen;
    }
    free(mask);
    gram_matcher_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    sh_err err = {{0}};
    gram *g = (data[0] & 1) ? gram_from_json_schema(text, n, &err) : gram_from_gbnf(text, n, &err);
    if (!g) {
        if (!err.msg[0] || !strncmp(err.msg, "internal error", 14)) __builtin_trap();
        return 0;
    }
    char *t = gram_to_gbnf(g);
    if (!t) __builtin_trap();
    gram *g2 = gram_from_gbnf(t, strlen(t), &err);
    if (!g2) __builtin_trap();
    gram_free(g2);
    free(t);
    /* replay the last (data[0] >> 1) bytes as text */
    size_t tail = (size_t)(data[0] >> 1);
    if (tail > n) tail = n;
    const char *s = text + n - tail;
    gram_matcher *m = gram_matcher_init(g, NULL, &err);
    if (m) {
        size_t ok = 0;
        for (size_t i = 0; i < tail; i++) {
            if (gram_matcher_accept_bytes(m, s + i, 1) != 0) break;
            ok = i + 1;
        }
        if (gram_matcher_can_end(m) != gram_match(g, s, ok)) __builtin_trap();
        if (gram_matcher_done(m) && !gram_matcher_can_end(m)) __builtin_trap();
        gram_matcher_reset(m);
        if (ok && gram_matcher_accept_bytes(m, s, ok) != 0) __builtin_trap();
        gram_matcher_free(m);
    }
    mask_walk(g, data, size);
    gram_free(g);
    return 0;
}
