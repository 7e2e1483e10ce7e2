/*
 * Unit tests: the GGUF reader and writer — round trips of every value type, tensors and
 * alignment, typed getters, the malformed corpus, and every truncation / many byte mutations
 * of a valid file (run under ASan by `make asan`, where any out-of-bounds read is fatal).
 */
#include "testutil.h"

#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "tensor/dtype.h"

/* ============================================================ a rich image ===== */

static const uint32_t arr_u32[5] = {1, 2, 3, 4, 0xffffffffu};
static const int16_t arr_i16[3] = {-1, 0, 32767};
static const float arr_f32[4] = {0.5f, -2.25f, 1e-7f, 3.0e38f};
static const uint8_t arr_bool[3] = {1, 0, 1};
static const char *const strs[4] = {"", "hello", "\xe2\x96\x81world", "<0x0A>"};

static float t_f32[2][8];       /* [2, 8] F32 */
static uint16_t t_f16[3 * 16];  /* [16, 3] F16 */
static uint8_t t_q8[2 * 34];    /* [64] Q8_0 = 2 blocks */
static uint8_t t_q4k[144 * 2];  /* [256, 1, 1, 2] Q4_K */

/* Builds a writer holding one value of every type, nested arrays and four tensors. */
static gguf_writer *rich_writer(uint32_t alignment) {
    gguf_writer *w = gguf_writer_init();
    assert_non_null(w);
    uint64_t seed = 7;
    for (int i = 0; i < 16; i++) t_f32[i / 8][i % 8] = tu_randf(&seed);
    for (size_t i = 0; i < sizeof t_f16 / 2; i++) t_f16[i] = (uint16_t)tu_rand(&seed);
    for (size_t i = 0; i < sizeof t_q8; i++) t_q8[i] = (uint8_t)tu_rand(&seed);
    for (size_t i = 0; i < sizeof t_q4k; i++) t_q4k[i] = (uint8_t)tu_rand(&seed);

    if (alignment) assert_int_equal(gguf_writer_add_u32(w, "general.alignment", alignment), 0);
    gguf_value v;
    v = (gguf_value){.type = GGUF_U8, .v.u = 200};
    gguf_writer_add(w, "t.u8", &v);
    v = (gguf_value){.type = GGUF_I8, .v.i = -100};
    gguf_writer_add(w, "t.i8", &v);
    v = (gguf_value){.type = GGUF_U16, .v.u = 65000};
    gguf_writer_add(w, "t.u16", &v);
    v = (gguf_value){.type = GGUF_I16, .v.i = -30000};
    gguf_writer_add(w, "t.i16", &v);
    gguf_writer_add_u32(w, "t.u32", 4000000000u);
    gguf_writer_add_i32(w, "t.i32", -2000000000);
    gguf_writer_add_f32(w, "t.f32", 1.5f);
    gguf_writer_add_bool(w, "t.bool", 1);
    gguf_writer_add_str(w, "t.str", "h\xc3\xa9llo");
    gguf_writer_add_u64(w, "t.u64", 0xfedcba9876543210ull);
    v = (gguf_value){.type = GGUF_I64, .v.i = INT64_MIN};
    gguf_writer_add(w, "t.i64", &v);
    v = (gguf_value){.type = GGUF_F64, .v.f = -1.0 / 3.0};
    gguf_writer_add(w, "t.f64", &v);
    gguf_writer_add_arr(w, "a.u32", GGUF_U32, 5, arr_u32);
    gguf_writer_add_arr(w, "a.i16", GGUF_I16, 3, arr_i16);
    gguf_writer_add_arr(w, "a.f32", GGUF_F32, 4, arr_f32);
    gguf_writer_add_arr(w, "a.bool", GGUF_BOOL, 3, arr_bool);
    gguf_writer_add_arr(w, "a.empty", GGUF_U8, 0, NULL);
    gguf_writer_add_str_arr(w, "a.str", 4, strs);
    /* nested: [[1,2,3,4,max], ["", "hello", ...]] as an array of arrays */
    gguf_value inner[2] = {
        {.type = GGUF_ARR, .v.arr = {.elem = GGUF_U32, .n = 5, .raw = (const uint8_t *)arr_u32}},
        {.type = GGUF_ARR, .v.arr = {.elem = GGUF_STR, .n = 2, .items = NULL}},
    };
    gguf_value sitems[2] = {{.type = GGUF_STR, .v.str = {"ab", 2}},
                            {.type = GGUF_STR, .v.str = {"c\0d", 3}}};
    inner[1].v.arr.items = sitems;
    v = (gguf_value){.type = GGUF_ARR, .v.arr = {.elem = GGUF_ARR, .n = 2, .items = inner}};
    assert_int_equal(gguf_writer_add(w, "a.nested", &v), 0);

    uint64_t ne1[2] = {8, 2}, ne2[2] = {16, 3}, ne3[1] = {64}, ne4[4] = {256, 1, 1, 2};
    assert_int_equal(gguf_writer_add_tensor(w, "f32", DT_F32, 2, ne1, t_f32, sizeof t_f32), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "f16", DT_F16, 2, ne2, t_f16, sizeof t_f16), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "q8", DT_Q8_0, 1, ne3, t_q8, sizeof t_q8), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "blk.0.q4k", DT_Q4_K, 4, ne4, t_q4k, sizeof t_q4k), 0);
    assert_null(gguf_writer_error(w));
    return w;
}

static void check_rich(const gguf_ctx *g, uint32_t alignment) {
    uint64_t u;
    int64_t i;
    double d;
    bool b;
    gguf_str s;
    assert_int_equal(g->version, 3);
    assert_int_equal(g->alignment, alignment ? alignment : 32);
    assert_true(gguf_get_u64(g, "t.u8", &u) && u == 200);
    assert_true(gguf_get_i64(g, "t.i8", &i) && i == -100);
    assert_true(gguf_get_u64(g, "t.u16", &u) && u == 65000);
    assert_true(gguf_get_i64(g, "t.i16", &i) && i == -30000);
    assert_true(gguf_get_u64(g, "t.u32", &u) && u == 4000000000u);
    assert_true(gguf_get_i64(g, "t.i32", &i) && i == -2000000000);
    assert_true(gguf_get_f64(g, "t.f32", &d) && d == 1.5);
    assert_true(gguf_get_bool(g, "t.bool", &b) && b);
    assert_true(gguf_get_str(g, "t.str", &s) && gguf_str_eq(s, "h\xc3\xa9llo"));
    assert_true(gguf_get_u64(g, "t.u64", &u) && u == 0xfedcba9876543210ull);
    assert_true(gguf_get_i64(g, "t.i64", &i) && i == INT64_MIN);
    assert_true(gguf_get_f64(g, "t.f64", &d) && d == -1.0 / 3.0);

    const gguf_arr *a = gguf_get_arr(g, "a.u32", GGUF_U32);
    assert_non_null(a);
    assert_int_equal(a->n, 5);
    for (int k = 0; k < 5; k++) assert_true(gguf_arr_u64(a, k, &u) && u == arr_u32[k]);
    assert_false(gguf_arr_u64(a, 5, &u)); /* out of range */
    assert_null(gguf_get_arr(g, "a.u32", GGUF_I32)); /* wrong element type requested */
    a = gguf_get_arr(g, "a.i16", GGUF_I16);
    for (int k = 0; k < 3; k++) assert_true(gguf_arr_i64(a, k, &i) && i == arr_i16[k]);
    assert_false(gguf_arr_u64(a, 0, &u)); /* -1 does not fit an unsigned */
    a = gguf_get_arr(g, "a.f32", GGUF_F32);
    for (int k = 0; k < 4; k++) assert_true(gguf_arr_f64(a, k, &d) && (float)d == arr_f32[k]);
    a = gguf_get_arr(g, "a.bool", GGUF_BOOL);
    for (int k = 0; k < 3; k++) assert_true(gguf_arr_u64(a, k, &u) && u == arr_bool[k]);
    a = gguf_get_arr(g, "a.empty", GGUF_TYPE_COUNT);
    assert_non_null(a);
    assert_int_equal(a->n, 0);
    a = gguf_get_arr(g, "a.str", GGUF_STR);
    assert_int_equal(a->n, 4);
    for (int k = 0; k < 4; k++) assert_true(gguf_str_eq(a->items[k].v.str, strs[k]));
    a = gguf_get_arr(g, "a.nested", GGUF_ARR);
    assert_non_null(a);
    assert_int_equal(a->n, 2);
    assert_int_equal(a->items[0].v.arr.elem, GGUF_U32);
    assert_true(gguf_arr_u64(&a->items[0].v.arr, 4, &u) && u == 0xffffffffu);
    assert_int_equal(a->items[1].v.arr.n, 2);
    assert_int_equal(a->items[1].v.arr.items[1].v.str.len, 3);
    assert_memory_equal(a->items[1].v.arr.items[1].v.str.ptr, "c\0d", 3);

    assert_int_equal(g->n_tensors, 4);
    const gguf_tensor *t = gguf_find_tensor(g, "f32");
    assert_non_null(t);
    assert_int_equal(t->ne[0], 8);
    assert_int_equal(t->ne[1], 2);
    assert_int_equal(t->ne[2], 1);
    assert_memory_equal(t->data, t_f32, sizeof t_f32);
    t = gguf_find_tensor(g, "f16");
    assert_memory_equal(t->data, t_f16, sizeof t_f16);
    t = gguf_find_tensor(g, "q8");
    assert_int_equal(t->size, 68);
    assert_memory_equal(t->data, t_q8, sizeof t_q8);
    t = gguf_find_tensor(g, "blk.0.q4k");
    assert_int_equal(t->n_dims, 4);
    assert_int_equal(t->ne[3], 2);
    assert_int_equal(t->n_elems, 512);
    assert_memory_equal(t->data, t_q4k, sizeof t_q4k);
    for (uint64_t k = 0; k < g->n_tensors; k++) {
        assert_int_equal(g->tensors[k].offset % g->alignment, 0);
        assert_int_equal(((const uint8_t *)g->tensors[k].data - g->base) % g->alignment, 0);
    }
    assert_null(gguf_find_tensor(g, "nope"));
    assert_null(gguf_find(g, "nope"));
}

/* ============================================================ round trips ===== */

static void test_roundtrip_mem(void **state) {
    (void)state;
    uint32_t aligns[3] = {0, 64, 1};
    for (int k = 0; k < 3; k++) {
        gguf_writer *w = rich_writer(aligns[k]);
        uint8_t *buf;
        size_t len;
        sh_err err = {{0}};
        assert_int_equal(gguf_writer_write_mem(w, &buf, &len, &err), 0);
        gguf_ctx *g = gguf_open_mem(buf, len, "rich", &err);
        if (!g) fail_msg("%s", err.msg);
        check_rich(g, aligns[k]);

        /* Copy everything back through a second writer: the bytes must be identical. */
        gguf_writer *w2 = gguf_writer_init();
        for (uint64_t i = 0; i < g->n_kv; i++) gguf_writer_add(w2, g->kv[i].key, &g->kv[i].val);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const gguf_tensor *t = &g->tensors[i];
            gguf_writer_add_tensor(w2, t->name, t->type, t->n_dims, t->ne, t->data, t->size);
        }
        uint8_t *buf2;
        size_t len2;
        assert_int_equal(gguf_writer_write_mem(w2, &buf2, &len2, &err), 0);
        assert_int_equal(len, len2);
        assert_memory_equal(buf, buf2, len);
        free(buf2);
        gguf_writer_free(w2);
        gguf_free(g);
        free(buf);
        gguf_writer_free(w);
    }
}

static void test_roundtrip_file(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/rich.gguf", tu_tmpdir());
    gguf_writer *w = rich_writer(0);
    sh_err err = {{0}};
    assert_int_equal(gguf_writer_write(w, path, &err), 0);
    gguf_writer_free(w);
    gguf_ctx *g = gguf_open(path, &err);
    if (!g) fail_msg("%s", err.msg);
    assert_true(g->mapped);
    check_rich(g, 0);
    gguf_free(g);
    char tmp[520];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_not_equal(access(tmp, F_OK), 0); /* the temporary was renamed away */
    unlink(path);
}

static void test_v2_accepted(void **state) {
    (void)state;
    gguf_writer *w = rich_writer(0);
    uint8_t *buf;
    size_t len;
    assert_int_equal(gguf_writer_write_mem(w, &buf, &len, NULL), 0);
    buf[4] = 2; /* v2 has the same layout as v3 for little-endian files */
    sh_err err = {{0}};
    gguf_ctx *g = gguf_open_mem(buf, len, "v2", &err);
    assert_non_null(g);
    assert_int_equal(g->version, 2);
    gguf_free(g);
    free(buf);
    gguf_writer_free(w);
}

/* ============================================================ writer errors ===== */

static void test_writer_errors(void **state) {
    (void)state;
    gguf_writer *w = gguf_writer_init();
    assert_int_equal(gguf_writer_add_u32(w, "a", 1), 0);
    assert_int_equal(gguf_writer_add_u32(w, "a", 2), -1);
    assert_non_null(strstr(gguf_writer_error(w), "duplicate metadata key 'a'"));
    assert_int_equal(gguf_writer_add_u32(w, "b", 2), -1); /* sticky */
    sh_err err = {{0}};
    uint8_t *buf;
    size_t len;
    assert_int_equal(gguf_writer_write_mem(w, &buf, &len, &err), -1);
    assert_non_null(strstr(err.msg, "duplicate"));
    gguf_writer_free(w);

    w = gguf_writer_init();
    float x[32] = {0};
    uint64_t ne[1] = {32};
    assert_int_equal(gguf_writer_add_tensor(w, "x", DT_F32, 1, ne, x, 64), -1);
    assert_non_null(strstr(gguf_writer_error(w), "does not match"));
    gguf_writer_free(w);

    w = gguf_writer_init();
    ne[0] = 48;
    assert_int_equal(gguf_writer_add_tensor(w, "x", DT_Q4_0, 1, ne, x, 27), -1);
    assert_non_null(strstr(gguf_writer_error(w), "block size"));
    gguf_writer_free(w);

    w = gguf_writer_init();
    assert_int_equal(gguf_writer_add_u32(w, "general.alignment", 24), -1);
    gguf_writer_free(w);
    gguf_writer_free(NULL);
}

/* ============================================================ typed getters ===== */

static void test_getters_convert(void **state) {
    (void)state;
    gguf_writer *w = gguf_writer_init();
    gguf_writer_add_i32(w, "neg", -5);
    gguf_writer_add_u64(w, "big", 1ull << 40);
    gguf_writer_add_u32(w, "one", 1);
    gguf_writer_add_str(w, "s", "x");
    uint8_t *buf;
    size_t len;
    assert_int_equal(gguf_writer_write_mem(w, &buf, &len, NULL), 0);
    gguf_ctx *g = gguf_open_mem(buf, len, "getters", NULL);
    assert_non_null(g);
    uint64_t u = 77;
    uint32_t u32 = 77;
    int64_t i;
    double d;
    bool b;
    gguf_str s;
    assert_false(gguf_get_u64(g, "neg", &u));
    assert_int_equal(u, 77); /* untouched on failure */
    assert_true(gguf_get_i64(g, "neg", &i) && i == -5);
    assert_true(gguf_get_f64(g, "neg", &d) && d == -5.0);
    assert_false(gguf_get_u32(g, "big", &u32)); /* does not fit */
    assert_true(gguf_get_u64(g, "big", &u) && u == 1ull << 40);
    assert_true(gguf_get_bool(g, "one", &b) && b);
    assert_false(gguf_get_u64(g, "s", &u));
    assert_false(gguf_get_str(g, "one", &s));
    assert_false(gguf_get_u64(g, "missing", &u));
    assert_null(gguf_get_arr(g, "s", GGUF_TYPE_COUNT));
    gguf_free(g);
    free(buf);
    gguf_writer_free(w);
}

/* ============================================================ hostile input ===== */

/* Each file of the committed malformed corpus fails with its expected message. */
static void test_malformed_corpus(void **state) {
    (void)state;
    FILE *m = fopen(TU_DATA("malformed/MANIFEST"), "r");
    assert_non_null(m);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, m)) {
        char *tab = strchr(line, '\t');
        assert_non_null(tab);
        *tab = 0;
        char *expect = tab + 1;
        expect[strcspn(expect, "\n")] = 0;
        char path[600];
        snprintf(path, sizeof path, "%s%s", TU_DATA("malformed/"), line);
        sh_err err = {{0}};
        gguf_ctx *g = gguf_open(path, &err);
        if (g) fail_msg("%s: parsed, expected an error containing '%s'", line, expect);
        if (!strstr(err.msg, expect)) fail_msg("%s: got '%s', expected '%s'", line, err.msg, expect);
        assert_non_null(strstr(err.msg, line)); /* the message names the file */
        n++;
    }
    fclose(m);
    assert_true(n >= 40);
}

/* A valid image cut at every length fails cleanly; the buffer is exactly that long, so under
 * ASan any read past it is caught. */
static void test_every_truncation(void **state) {
    (void)state;
    gguf_writer *w = rich_writer(0);
    uint8_t *buf;
    size_t len;
    assert_int_equal(gguf_writer_write_mem(w, &buf, &len, NULL), 0);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        sh_err err = {{0}};
        gguf_ctx *g = gguf_open_mem(copy, cut, "cut", &err);
        if (g) fail_msg("truncation at %zu of %zu parsed", cut, len);
        assert_true(strlen(err.msg) > 5);
        free(copy);
    }
    free(buf);
    gguf_writer_free(w);
}

/* Byte mutations of the header, metadata and tensor infos: each parse either succeeds (and
 * then every tensor lies inside the buffer) or fails with a message. */
static void test_mutations(void **state) {
    (void)state;
    gguf_writer *w = rich_writer(0);
    uint8_t *buf;
    size_t len;
    assert_int_equal(gguf_writer_write_mem(w, &buf, &len, NULL), 0);
    gguf_ctx *g0 = gguf_open_mem(buf, len, "orig", NULL);
    size_t meta_end = (size_t)g0->data_offset;
    gguf_free(g0);
    static const uint8_t vals[] = {0x00, 0xff, 0x80, 0x7f, 0x01, 0x20, 0x09, 0x0d};
    uint8_t *copy = malloc(len);
    int parsed = 0, rejected = 0;
    for (size_t off = 0; off < meta_end; off++) {
        for (size_t k = 0; k < sizeof vals; k++) {
            memcpy(copy, buf, len);
            if (copy[off] == vals[k]) continue;
            copy[off] = vals[k];
            sh_err err = {{0}};
            gguf_ctx *g = gguf_open_mem(copy, len, "mut", &err);
            if (!g) {
                assert_true(err.msg[0] != 0);
                rejected++;
                continue;
            }
            parsed++;
            for (uint64_t t = 0; t < g->n_tensors; t++) {
                const uint8_t *p = g->tensors[t].data;
                assert_true(p >= copy && p + g->tensors[t].size <= copy + len);
            }
            gguf_free(g);
        }
    }
    free(copy);
    free(buf);
    gguf_writer_free(w);
    assert_true(rejected > 0 && parsed > 0);
}

/* ============================================================ dtype table ===== */

static void test_dtype(void **state) {
    (void)state;
    uint64_t b;
    assert_true(dtype_row_bytes(DT_Q4_K, 512, &b) && b == 288);
    assert_true(dtype_row_bytes(DT_Q8_0, 64, &b) && b == 68);
    assert_true(dtype_row_bytes(DT_BF16, 3, &b) && b == 6);
    assert_false(dtype_row_bytes(DT_Q4_0, 33, &b));
    assert_false(dtype_row_bytes(4, 32, &b));               /* retired id */
    assert_false(dtype_row_bytes(DT_F32, UINT64_MAX, &b));  /* overflow */
    assert_string_equal(dtype_name(DT_IQ4_XS), "IQ4_XS");
    assert_string_equal(dtype_name(12345), "unknown");
    assert_int_equal(dtype_from_name("q6_k"), DT_Q6_K);
    assert_int_equal(dtype_from_name("nope"), -1);
    assert_false(dtype_known(DT_COUNT));
}

static void test_err_prefix(void **state) {
    (void)state;
    sh_err e;
    sh_errf(&e, "bad %d", 3);
    sh_err_prefix(&e, "file.gguf");
    assert_string_equal(e.msg, "file.gguf: bad 3");
    char longp[700];
    memset(longp, 'p', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    sh_err_prefix(&e, longp);
    assert_int_equal(strlen(e.msg), SH_ERR_MAX - 1);
    assert_int_equal(sh_errf(NULL, "x"), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_mem),    cmocka_unit_test(test_roundtrip_file),
        cmocka_unit_test(test_v2_accepted),      cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_getters_convert),  cmocka_unit_test(test_malformed_corpus),
        cmocka_unit_test(test_every_truncation), cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_dtype),            cmocka_unit_test(test_err_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
