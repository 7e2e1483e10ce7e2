/*
 * testutil — shared helpers for the cmocka unit tests.
 */
#ifndef SHOAL_TESTUTIL_H
#define SHOAL_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* Deterministic per-test random numbers (splitmix64). */
static inline uint64_t tu_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform float in [-1, 1). */
static inline float tu_randf(uint64_t *s) {
    return (float)((double)(tu_rand(s) >> 11) / (double)(1ull << 52) - 1.0);
}

/* Directory for temporary files of this test run (created on first use). */
static inline const char *tu_tmpdir(void) {
    static char dir[256];
    if (!dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/shoal-test-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            abort();
        }
    }
    return dir;
}

/* Path of the repository's tests/data directory (tests run from the repository root). */
#define TU_DATA(name) "tests/data/" name

#endif
