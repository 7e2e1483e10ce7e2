/*
 * libFuzzer target: the cache key normalizer (cache/key.c). Any bytes, with and without case
 * folding: the output fits ckey_normalize_cap, has no leading, trailing or doubled space,
 * normalizing it again changes nothing, and keys of it digest.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    bool fold = size && (data[0] & 1);
    size_t cap = ckey_normalize_cap(size);
    char *a = malloc(cap + 1), *b = malloc(ckey_normalize_cap(cap) + 1);
    if (!a || !b) __builtin_trap();
    size_t n = ckey_normalize((const char *)data, size, fold, a);
    if (n > cap) __builtin_trap();
    if (n && (a[0] == ' ' || a[n - 1] == ' ')) __builtin_trap();
    for (size_t i = 1; i < n; i++)
        if (a[i] == ' ' && a[i - 1] == ' ') __builtin_trap();
    size_t m = ckey_normalize(a, n, fold, b);
    if (m != n || memcmp(a, b, n)) __builtin_trap();
    ckey k;
    ckey_init(&k);
    ckey_text(&k, "t", (const char *)data, size, fold);
    ckey_bytes(&k, "b", data, size);
    uint8_t d[CACHE_KEY_BYTES];
    if (ckey_digest(&k, d)) __builtin_trap();
    ckey_free(&k);
    free(a), free(b);
    return 0;
}
