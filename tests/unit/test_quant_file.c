/*
 * test_quant_file — `shoal quantize` as a library (model/quantize.h): per-tensor type rules,
 * llama.cpp's tensor order and metadata order, and tensor data equal to the reference
 * quantizers. (Byte identity with llama.cpp itself is checked by scripts/quantize-vs-peer.sh,
 * which needs the peer and is not part of the unit tests.)
 */
#include "testutil.h"

#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "model/quantize.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"

#define N_LAYER 8
#define DIM     256

/* A fake 8-layer llama file: token_embd, optional output, per layer a norm, attn_q, attn_v
 * and ffn_down (rows of 512), plus a tensor with rows of 160 (not a multiple of 256) and one
 * with rows of 48 (not a multiple of 32). All 2-D data F32. */
static char *write_model(int tied, float **keep, int *n_keep) {
    gguf_writer *w = gguf_writer_init();
    gguf_writer_add_str(w, "general.architecture", "llama");
    gguf_writer_add_u32(w, "general.file_type", 0);
    gguf_writer_add_str(w, "general.name", "quant-file-test");
    gguf_writer_add_u32(w, "llama.block_count", N_LAYER);
    gguf_writer_add_u32(w, "llama.embedding_length", DIM);
    uint64_t seed = 5;
    *n_keep = 0;
#define ADD(name, n0, n1)                                                                          \
    do {                                                                                           \
        uint64_t ne[2] = {(n0), (n1)};                                                             \
        float *d = malloc(sizeof(float) * (n0) * (n1));                                            \
        for (uint64_t i = 0; i < (uint64_t)(n0) * (n1); i++) d[i] = tu_randf(&seed) * 0.1f;        \
        keep[(*n_keep)++] = d;                                                                     \
        assert_int_equal(gguf_writer_add_tensor(w, name, DT_F32, (n1) > 1 ? 2 : 1, ne, d,          \
                                                sizeof(float) * (n0) * (n1)),                      \
                         0);                                                                       \
    } while (0)
    ADD("token_embd.weight", DIM, 64);
    for (int l = 0; l < N_LAYER; l++) {
        char n[64];
        snprintf(n, sizeof n, "blk.%d.attn_norm.weight", l);
        ADD(n, DIM, 1);
        snprintf(n, sizeof n, "blk.%d.attn_q.weight", l);
        ADD(n, DIM, DIM);
        snprintf(n, sizeof n, "blk.%d.attn_v.weight", l);
        ADD(n, DIM, 128);
        snprintf(n, sizeof n, "blk.%d.ffn_down.weight", l);
        ADD(n, 512, DIM);
    }
    ADD("blk.0.ffn_gate.weight", 160, 8);
    ADD("blk.0.ffn_up.weight", 48, 8);
    ADD("output_norm.weight", DIM, 1);
    if (!tied) ADD("output.weight", DIM, 64);
#undef ADD
    char *path = malloc(512);
    snprintf(path, 512, "%s/model-%d.gguf", tu_tmpdir(), tied);
    sh_err err = {{0}};
    if (gguf_writer_write(w, path, &err)) fail_msg("write: %s", err.msg);
    gguf_writer_free(w);
    return path;
}

static uint32_t type_of(const gguf_ctx *g, const char *name) {
    const gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t) fail_msg("no tensor %s", name);
    return t->type;
}

static gguf_ctx *quantize_to(const char *in, const char *type) {
    char out[512];
    snprintf(out, sizeof out, "%s/out-%s.gguf", tu_tmpdir(), type);
    sh_err err = {{0}};
    if (quantize_file(in, out, type, 2, NULL, NULL, &err)) fail_msg("quantize: %s", err.msg);
    gguf_ctx *g = gguf_open(out, &err);
    if (!g) fail_msg("open: %s", err.msg);
    return g;
}

static void test_legacy_rules(void **state) {
    (void)state;
    float *keep[64];
    int n_keep;
    char *in = write_model(0, keep, &n_keep);
    gguf_ctx *g = quantize_to(in, "q4_0");
    assert_int_equal(type_of(g, "output.weight"), DT_Q6_K);
    assert_int_equal(type_of(g, "token_embd.weight"), DT_Q4_0);
    assert_int_equal(type_of(g, "output_norm.weight"), DT_F32);
    assert_int_equal(type_of(g, "blk.3.attn_norm.weight"), DT_F32);
    assert_int_equal(type_of(g, "blk.3.attn_v.weight"), DT_Q4_0);
    assert_int_equal(type_of(g, "blk.0.ffn_gate.weight"), DT_Q4_0); /* 160 = 5 x 32 */
    assert_int_equal(type_of(g, "blk.0.ffn_up.weight"), DT_F16);    /* 48: no 32-blocks */
    /* order: non-layer tensors by name, then layer by layer, by name within a layer */
    assert_string_equal(g->tensors[0].name, "output.weight");
    assert_string_equal(g->tensors[1].name, "output_norm.weight");
    assert_string_equal(g->tensors[2].name, "token_embd.weight");
    assert_string_equal(g->tensors[3].name, "blk.0.attn_norm.weight");
    assert_string_equal(g->tensors[g->n_tensors - 1].name, "blk.7.ffn_down.weight");
    /* metadata: input order, file_type and quantization_version moved to the end */
    assert_string_equal(g->kv[0].key, "general.architecture");
    assert_string_equal(g->kv[1].key, "general.name");
    assert_string_equal(g->kv[g->n_kv - 2].key, "general.quantization_version");
    assert_string_equal(g->kv[g->n_kv - 1].key, "general.file_type");
    uint32_t ft = 0, qv = 0;
    assert_true(gguf_get_u32(g, "general.file_type", &ft));
    assert_true(gguf_get_u32(g, "general.quantization_version", &qv));
    assert_int_equal(ft, 2);
    assert_int_equal(qv, 2);
    /* data: the reference quantizer's bytes (attn_q of layer 2 is keep[1 + 2*4 + 1]) */
    const gguf_tensor *t = gguf_find_tensor(g, "blk.2.attn_q.weight");
    quant_block_q4_0 *ref = malloc(t->size);
    quant_quantize_row_q4_0(keep[1 + 2 * 4 + 1], ref, DIM * DIM);
    assert_memory_equal(t->data, ref, t->size);
    free(ref);
    gguf_free(g);

    g = quantize_to(in, "q8_0"); /* Q8_0 files keep output.weight as Q8_0 */
    assert_int_equal(type_of(g, "output.weight"), DT_Q8_0);
    gguf_free(g);
    for (int i = 0; i < n_keep; i++) free(keep[i]);
    free(in);
}

static void test_k_mix_rules(void **state) {
    (void)state;
    float *keep[64];
    int n_keep;
    char *in = write_model(0, keep, &n_keep);
    gguf_ctx *g = quantize_to(in, "q4_k_m");
    /* more bits on layers i < n/8, i >= 7n/8, and (i - n/8) % 3 == 2: 0, 3, 6, 7 of 8 */
    for (int l = 0; l < N_LAYER; l++) {
        char n[64];
        const uint32_t want = (l == 0 || l == 3 || l == 6 || l == 7) ? DT_Q6_K : DT_Q4_K;
        snprintf(n, sizeof n, "blk.%d.attn_v.weight", l);
        assert_int_equal(type_of(g, n), want);
        snprintf(n, sizeof n, "blk.%d.ffn_down.weight", l);
        assert_int_equal(type_of(g, n), want);
        snprintf(n, sizeof n, "blk.%d.attn_q.weight", l);
        assert_int_equal(type_of(g, n), DT_Q4_K);
    }
    assert_int_equal(type_of(g, "output.weight"), DT_Q6_K);
    assert_int_equal(type_of(g, "blk.0.ffn_gate.weight"), DT_Q5_0); /* 160: Q4_K -> Q5_0 */
    assert_int_equal(type_of(g, "blk.0.ffn_up.weight"), DT_F16);    /* 48: -> F16 */
    uint32_t ft = 0;
    assert_true(gguf_get_u32(g, "general.file_type", &ft));
    assert_int_equal(ft, 15);
    gguf_free(g);

    g = quantize_to(in, "q4_k_s"); /* first 4 attn_v and first eighth of ffn_down: Q5_K */
    assert_int_equal(type_of(g, "blk.3.attn_v.weight"), DT_Q5_K);
    assert_int_equal(type_of(g, "blk.4.attn_v.weight"), DT_Q4_K);
    assert_int_equal(type_of(g, "blk.0.ffn_down.weight"), DT_Q5_K);
    assert_int_equal(type_of(g, "blk.1.ffn_down.weight"), DT_Q4_K);
    gguf_free(g);

    g = quantize_to(in, "q6_k"); /* pure: output too */
    assert_int_equal(type_of(g, "output.weight"), DT_Q6_K);
    assert_int_equal(type_of(g, "blk.5.attn_v.weight"), DT_Q6_K);
    assert_int_equal(type_of(g, "blk.0.ffn_gate.weight"), DT_Q8_0); /* 160: Q6_K -> Q8_0 */
    gguf_free(g);
    for (int i = 0; i < n_keep; i++) free(keep[i]);
    free(in);
}

static void test_tied_and_float(void **state) {
    (void)state;
    float *keep[64];
    int n_keep;
    char *in = write_model(1, keep, &n_keep);
    gguf_ctx *g = quantize_to(in, "q5_1"); /* tied: token_embd is the output projection */
    assert_int_equal(type_of(g, "token_embd.weight"), DT_Q6_K);
    assert_null(gguf_find_tensor(g, "output.weight"));
    gguf_free(g);
    g = quantize_to(in, "f16");
    assert_int_equal(type_of(g, "token_embd.weight"), DT_F16);
    assert_int_equal(type_of(g, "blk.0.ffn_up.weight"), DT_F16);
    assert_int_equal(type_of(g, "output_norm.weight"), DT_F32);
    gguf_free(g);
    sh_err err = {{0}};
    char out[512];
    snprintf(out, sizeof out, "%s/never.gguf", tu_tmpdir());
    assert_int_equal(quantize_file(in, out, "q3_k", 1, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "q3_k"));
    for (int i = 0; i < n_keep; i++) free(keep[i]);
    free(in);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_legacy_rules),
        cmocka_unit_test(test_k_mix_rules),
        cmocka_unit_test(test_tied_and_float),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
