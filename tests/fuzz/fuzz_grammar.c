/*
 * libFuzzer target: grammar compilation and matching. The first byte picks GBNF (even) or
 * JSON Schema (odd) and how much of the input's tail is replayed as generated text; the rest
 * is the grammar. A compiled grammar must print as GBNF that compiles again; then the tail is
 * fed byte by byte and the matcher must agree with gram_match on the accepted prefix.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

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
    gram_free(g);
    return 0;
}
