/*
 * Unit tests: cache — key normalization (white space, case, invalid bytes, idempotence), keys
 * that must differ, the memory tier's LRU budget and TTL, and the SQLite tier: persistence,
 * expiry, the size cap, a damaged file and a file of another schema version rebuilt.
 */
#include "testutil.h"

#include <sqlite3.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/cache_int.h"

static const char *norm(const char *s, bool fold) {
    static char out[1024];
    size_t n = ckey_normalize(s, strlen(s), fold, out);
    out[n] = 0;
    return out;
}

static void test_normalize(void **state) {
    (void)state;
    assert_string_equal(norm("  turn on\n\tthe   lights ", false), "turn on the lights");
    assert_string_equal(norm("a\xe3\x80\x80" "b\xc2\xa0" "c", false), "a b c"); /* U+3000, U+00A0 */
    assert_string_equal(norm("Turn ON", false), "Turn ON");
    assert_string_equal(norm("Turn ON \xc3\x89T\xc3\x89", true), "turn on \xc3\xa9t\xc3\xa9");
    assert_string_equal(norm("ok\xff\xfe" " x", false), "ok\xff\xfe x"); /* invalid bytes kept */
    assert_string_equal(norm("", false), "");
    assert_string_equal(norm(" \n\t ", false), "");
    const char *cases[] = {"  a  b ", "A\xc8\xba\xc8\xba", "x\xe2\x80\xa8y", "\xf0\x9f\x98\x80  \xf0\x9f\x98\x80"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char once[256];
        size_t n = ckey_normalize(cases[i], strlen(cases[i]), true, once);
        assert_true(n <= ckey_normalize_cap(strlen(cases[i])));
        once[n] = 0;
        assert_string_equal(norm(once, true), once); /* idempotent */
    }
}

static void digest_of(const char *a, const char *b, uint8_t out[CACHE_KEY_BYTES]) {
    ckey k;
    ckey_init(&k);
    ckey_text(&k, "x", a, strlen(a), false);
    if (b) ckey_text(&k, "y", b, strlen(b), false);
    assert_int_equal(ckey_digest(&k, out), 0);
    ckey_free(&k);
}

static void test_keys_differ(void **state) {
    (void)state;
    uint8_t a[32], b[32];
    digest_of("ab", "c", a), digest_of("a", "bc", b);
    assert_memory_not_equal(a, b, 32); /* fields cannot run into each other */
    digest_of("lights on", NULL, a), digest_of("lights off", NULL, b);
    assert_memory_not_equal(a, b, 32);
    digest_of("lights  on", NULL, a), digest_of(" lights on", NULL, b);
    assert_memory_equal(a, b, 32);
    ckey k1, k2;
    ckey_init(&k1), ckey_init(&k2);
    ckey_num(&k1, "t", 0.0), ckey_num(&k2, "t", -0.0);
    assert_int_equal(ckey_digest(&k1, a), 0), assert_int_equal(ckey_digest(&k2, b), 0);
    assert_memory_equal(a, b, 32);
    ckey_free(&k2), ckey_init(&k2);
    ckey_num(&k2, "t", 1e-300);
    assert_int_equal(ckey_digest(&k2, b), 0);
    assert_memory_not_equal(a, b, 32);
    ckey_free(&k1), ckey_free(&k2);
}

static void key(uint8_t k[32], int i) {
    memset(k, 0, 32);
    memcpy(k, &i, sizeof i);
    k[31] = (uint8_t)i;
}

static void test_mem_lru(void **state) {
    (void)state;
    char v[1000];
    memset(v, 'v', sizeof v);
    cmem *m = cmem_init(10 * 1100); /* about 10 values of 1000 bytes with bookkeeping */
    uint8_t k[32];
    uint64_t evicted = 0;
    for (int i = 0; i < 30; i++) key(k, i), evicted += cmem_put(m, k, v, sizeof v, 1e12);
    uint64_t entries, bytes;
    cmem_stats(m, &entries, &bytes);
    assert_true(entries >= 8 && entries <= 10 && bytes <= 10 * 1100);
    assert_int_equal(evicted + entries, 30);
    char *out;
    size_t n;
    key(k, 0);
    assert_int_equal(cmem_get(m, k, 0, &out, &n), 0); /* the oldest went first */
    key(k, 29);
    assert_int_equal(cmem_get(m, k, 0, &out, &n), 1);
    assert_int_equal(n, sizeof v);
    free(out);
    /* a recently read entry survives the next evictions */
    key(k, 25);
    assert_int_equal(cmem_get(m, k, 0, &out, &n), 1), free(out);
    for (int i = 30; i < 36; i++) key(k, i), cmem_put(m, k, v, sizeof v, 1e12);
    key(k, 25);
    assert_int_equal(cmem_get(m, k, 0, &out, &n), 1), free(out);
    key(k, 26);
    assert_int_equal(cmem_get(m, k, 0, &out, &n), 0);
    /* TTL */
    key(k, 100);
    cmem_put(m, k, "x", 1, 50.0);
    assert_int_equal(cmem_get(m, k, 49.0, &out, &n), 1), free(out);
    assert_int_equal(cmem_get(m, k, 50.0, &out, &n), 0);
    /* too big for the budget: not stored, nothing evicted */
    cmem_stats(m, &entries, &bytes);
    char *big = calloc(1, 20000);
    key(k, 101);
    assert_int_equal(cmem_put(m, k, big, 20000, 1e12), 0);
    free(big);
    uint64_t e2, b2;
    cmem_stats(m, &e2, &b2);
    assert_int_equal(e2, entries);
    cmem_clear(m);
    cmem_stats(m, &entries, &bytes);
    assert_int_equal(entries, 0), assert_int_equal(bytes, 0);
    cmem_free(m);
    cmem_free(NULL);
}

static char dbpath[256];

static void test_sqlite(void **state) {
    (void)state;
    snprintf(dbpath, sizeof dbpath, "/tmp/shoal-test-cache-%d.db", (int)getpid());
    unlink(dbpath);
    FILE *warn = tmpfile();
    sh_err err = {{0}};
    csql *q = csql_open(dbpath, 1 << 20, warn, &err);
    assert_non_null(q);
    uint8_t k[32];
    key(k, 1);
    assert_int_equal(csql_put(q, k, "hello", 5, 2000.0, 1000.0), 0);
    char *out;
    size_t n;
    assert_int_equal(csql_get(q, k, 1500.0, &out, &n), 1);
    assert_int_equal(n, 5), assert_memory_equal(out, "hello", 5), free(out);
    assert_int_equal(csql_get(q, k, 2000.0, &out, &n), 0); /* expired */
    csql_close(q);
    /* persistence */
    q = csql_open(dbpath, 1 << 20, warn, &err);
    assert_non_null(q);
    assert_int_equal(csql_get(q, k, 1500.0, &out, &n), 1), free(out);
    /* the size cap: 300 values of 10 KB into 1 MiB; the oldest go */
    char v[10000];
    memset(v, 'z', sizeof v);
    for (int i = 10; i < 310; i++) key(k, i), assert_true(csql_put(q, k, v, sizeof v, 1e12, 1000.0 + i) >= 0);
    uint64_t entries, bytes;
    csql_stats(q, &entries, &bytes);
    assert_true(bytes <= (1 << 20) && entries < 110 && entries > 50);
    key(k, 10);
    assert_int_equal(csql_get(q, k, 1500.0, &out, &n), 0);
    key(k, 309);
    assert_int_equal(csql_get(q, k, 1500.0, &out, &n), 1), free(out);
    assert_int_equal(csql_clear(q), 0);
    assert_int_equal(csql_get(q, k, 1500.0, &out, &n), 0);
    csql_close(q);
    /* another schema version: moved aside, a new file */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE meta SET v = '99' WHERE k = 'schema'", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    q = csql_open(dbpath, 1 << 20, warn, &err);
    assert_non_null(q);
    char aside[300];
    snprintf(aside, sizeof aside, "%s.damaged", dbpath);
    assert_int_equal(access(aside, F_OK), 0);
    key(k, 2);
    assert_int_equal(csql_put(q, k, "x", 1, 1e12, 1.0), 0);
    csql_close(q);
    /* garbage: the same */
    unlink(aside);
    FILE *f = fopen(dbpath, "wb");
    for (int i = 0; i < 8192; i++) fputc((i * 7919) & 255, f);
    fclose(f);
    q = csql_open(dbpath, 1 << 20, warn, &err);
    assert_non_null(q);
    assert_int_equal(access(aside, F_OK), 0);
    csql_close(q);
    /* a path that cannot be created: an error naming it */
    assert_null(csql_open("/nonexistent-dir/x.db", 1 << 20, warn, &err));
    assert_non_null(strstr(err.msg, "/nonexistent-dir/x.db"));
    rewind(warn);
    char line[512];
    assert_non_null(fgets(line, sizeof line, warn));
    assert_non_null(strstr(line, "is damaged"));
    fclose(warn);
    unlink(dbpath), unlink(aside);
    char side[300];
    snprintf(side, sizeof side, "%s-wal", dbpath), unlink(side);
    snprintf(side, sizeof side, "%s-shm", dbpath), unlink(side);
}

static void test_cache_tiers(void **state) {
    (void)state;
    cache_params p = {.mem_bytes = 1 << 20, .db_path = dbpath};
    snprintf(dbpath, sizeof dbpath, "/tmp/shoal-test-cache2-%d.db", (int)getpid());
    unlink(dbpath);
    sh_err err = {{0}};
    cache *c = cache_init(&p, &err);
    assert_non_null(c);
    uint8_t k[32];
    key(k, 7);
    char *out;
    size_t n;
    const char *tier;
    assert_int_equal(cache_get(c, k, &out, &n, &tier), 0);
    cache_put(c, k, "answer", 6);
    assert_int_equal(cache_get(c, k, &out, &n, &tier), 1);
    assert_string_equal(tier, "memory"), free(out);
    cache_free(c); /* flushes the writer */
    c = cache_init(&p, &err);
    assert_int_equal(cache_get(c, k, &out, &n, &tier), 1);
    assert_string_equal(tier, "sqlite"), free(out);
    assert_int_equal(cache_get(c, k, &out, &n, &tier), 1);
    assert_string_equal(tier, "memory"), free(out); /* promoted */
    cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.memory.hits, 1), assert_int_equal(st.sqlite.hits, 1);
    cache_clear(c);
    assert_int_equal(cache_get(c, k, &out, &n, &tier), 0);
    cache_free(c);
    cache_free(NULL);
    unlink(dbpath);
    char side[300];
    snprintf(side, sizeof side, "%s-wal", dbpath), unlink(side);
    snprintf(side, sizeof side, "%s-shm", dbpath), unlink(side);
}

static bool compat(const char *a, const char *sa, const char *b, const char *sb) {
    char fa[512], fb[512];
    csem_fingerprint(a, sa, fa, sizeof fa);
    csem_fingerprint(b, sb, fb, sizeof fb);
    return csem_compatible(fa, fb);
}

static void test_semantic(void **state) {
    (void)state;
    assert_true(compat("turn on the lights", "", "switch the lights on please", ""));
    assert_false(compat("turn on the lights", "", "turn off the lights", ""));
    assert_true(compat("turn up the volume", "", "make it louder, turn the volume up", ""));
    assert_false(compat("turn up the volume", "", "turn the volume down", ""));
    assert_false(compat("set it to 21", "", "set it to 22", ""));
    assert_true(compat("set it to 21.5", "", "make it 21.5", ""));
    assert_false(compat("play jazz", "", "don't play jazz", ""));
    assert_true(compat("do not play jazz", "", "don't ever play jazz", "")); /* one negation each */
    assert_false(compat("is it raining today", "", "is it raining tomorrow", ""));
    assert_false(compat("lights on", "room=kitchen", "lights on", "room=bedroom"));
    assert_true(compat("lights on", "room=Kitchen", "lights on", "room=kitchen"));
    /* the store: nearest within a partition, the guard, expiry of nothing here */
    csem *sm = csem_init(4, 3, 100, NULL);
    uint8_t p1[32] = {1}, p2[32] = {2};
    float v1[4] = {1, 0, 0, 0}, v2[4] = {0.96f, 0.28f, 0, 0}, v3[4] = {0, 1, 0, 0};
    char fp[512];
    csem_fingerprint("turn on the lights", "", fp, sizeof fp);
    csem_put(sm, p1, v1, fp, "A", 1);
    char *val;
    size_t n;
    double sim;
    assert_int_equal(csem_get(sm, p1, v2, fp, 0.93, &val, &n, &sim), 1);
    assert_true(sim > 0.95 && sim < 0.97 && n == 1 && val[0] == 'A');
    free(val);
    assert_int_equal(csem_get(sm, p2, v1, fp, 0.93, &val, &n, &sim), 0); /* another partition */
    assert_int_equal(csem_get(sm, p1, v3, fp, 0.93, &val, &n, &sim), 0); /* not similar */
    char off[512];
    csem_fingerprint("turn off the lights", "", off, sizeof off);
    assert_int_equal(csem_get(sm, p1, v1, off, 0.5, &val, &n, &sim), 0); /* guarded */
    assert_true(sim > 0.99);
    for (int i = 0; i < 3; i++) csem_put(sm, p2, v3, fp, "B", 1); /* the ring replaces the oldest */
    assert_int_equal(csem_get(sm, p1, v1, fp, 0.5, &val, &n, &sim), 0);
    csem_clear(sm);
    assert_int_equal(csem_get(sm, p2, v3, fp, 0.5, &val, &n, &sim), 0);
    csem_free(sm);
    csem_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_normalize), cmocka_unit_test(test_keys_differ),
                                       cmocka_unit_test(test_mem_lru), cmocka_unit_test(test_sqlite),
                                       cmocka_unit_test(test_cache_tiers), cmocka_unit_test(test_semantic)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
