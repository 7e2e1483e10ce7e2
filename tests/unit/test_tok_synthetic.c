/*
 * test_tok_synthetic — tiny vocabularies written with the GGUF writer, to pin the merge order
 * (SPM: higher score first; BPE: lower rank first), byte fallback, special-token rules and the
 * loader's error messages independently of the reference vocabularies.
 */
#include "testutil.h"

#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "tokenizer/tokenizer.h"

typedef struct spec {
    const char *model;        /* NULL: no tokenizer.ggml.model */
    const char *const *toks;
    size_t n;
    const float *scores;      /* NULL: none */
    size_t n_scores;
    const int32_t *types;     /* NULL: none */
    const char *const *merges;
    size_t n_merges;
} spec;

/* Builds the vocabulary (NULL with err filled on a loader error). */
static tok_vocab *build(const spec *s, sh_err *err) {
    gguf_writer *w = gguf_writer_init();
    assert_non_null(w);
    gguf_writer_add_str(w, "general.architecture", "llama");
    if (s->model) gguf_writer_add_str(w, "tokenizer.ggml.model", s->model);
    gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", s->n, s->toks);
    if (s->scores) gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_F32, s->n_scores, s->scores);
    if (s->types) gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_I32, s->n, s->types);
    if (s->merges) gguf_writer_add_str_arr(w, "tokenizer.ggml.merges", s->n_merges, s->merges);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(gguf_writer_write_mem(w, &buf, &len, NULL), 0);
    gguf_writer_free(w);
    gguf_ctx *g = gguf_open_mem(buf, len, "synthetic.gguf", NULL);
    assert_non_null(g);
    tok_vocab *v = tok_vocab_from_gguf(g, err);
    gguf_free(g);
    free(buf);
    return v;
}

static size_t tok(const tok_vocab *v, const char *s, bool special, int32_t *out) {
    tok_ids ids = {0};
    assert_int_equal(tok_tokenize(v, s, strlen(s), false, special, &ids, NULL), 0);
    memcpy(out, ids.ids, ids.n * sizeof *out);
    size_t n = ids.n;
    tok_ids_free(&ids);
    return n;
}

#define SP "\xE2\x96\x81"

static void test_spm_score_order(void **state) {
    (void)state;
    static const char *const toks[] = {"<unk>", "<s>", "</s>", SP, "a", "b", SP "a", "ab",
                                       "<0x41>", "<ctl>"};
    static const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1, 6, 3};
    float sc1[] = {0, 0, 0, -1, -1, -1, -2, -3, 0, 0}; /* "▁a" beats "ab" */
    float sc2[] = {0, 0, 0, -1, -1, -1, -3, -2, 0, 0}; /* "ab" beats "▁a" */
    spec s = {"llama", toks, 10, sc1, 10, types, NULL, 0};
    int32_t t[16];
    tok_vocab *v = build(&s, NULL);
    assert_non_null(v);
    assert_int_equal(tok(v, "ab", false, t), 2);
    assert_int_equal(t[0], 6); /* ▁a */
    assert_int_equal(t[1], 5); /* b */
    /* 'A' is not a token: byte fallback to <0x41>; 'C' has no byte token: <unk> */
    assert_int_equal(tok(v, "A", false, t), 2);
    assert_int_equal(t[0], 3);
    assert_int_equal(t[1], 8);
    assert_int_equal(tok(v, "C", false, t), 2);
    assert_int_equal(t[1], 0);
    /* control token only with parse_special */
    assert_int_equal(tok(v, "<ctl>", true, t), 1);
    assert_int_equal(t[0], 9);
    assert_true(tok(v, "<ctl>", false, t) > 1);
    tok_vocab_free(v);
    s.scores = sc2;
    v = build(&s, NULL);
    assert_non_null(v);
    assert_int_equal(tok(v, "ab", false, t), 2);
    assert_int_equal(t[0], 3); /* ▁ */
    assert_int_equal(t[1], 7); /* ab */
    tok_vocab_free(v);
}

static void test_bpe_rank_order(void **state) {
    (void)state;
    static const char *const toks[] = {"a", "b", "c", "ab", "bc", "<|user|>"};
    static const int32_t types[] = {1, 1, 1, 1, 1, 4};
    static const char *const m1[] = {"b c", "a b"};
    static const char *const m2[] = {"a b", "b c"};
    spec s = {"gpt2", toks, 6, NULL, 0, types, m1, 2};
    int32_t t[16];
    tok_vocab *v = build(&s, NULL);
    assert_non_null(v);
    assert_int_equal(tok(v, "abc", false, t), 2);
    assert_int_equal(t[0], 0);
    assert_int_equal(t[1], 4);
    /* user-defined tokens are split out even without parse_special */
    assert_int_equal(tok(v, "a<|user|>c", false, t), 3);
    assert_int_equal(t[1], 5);
    tok_vocab_free(v);
    s.merges = m2;
    v = build(&s, NULL);
    assert_non_null(v);
    assert_int_equal(tok(v, "abc", false, t), 2);
    assert_int_equal(t[0], 3);
    assert_int_equal(t[1], 2);
    /* bytes without a token are dropped, as llama.cpp does */
    assert_int_equal(tok(v, "axc", false, t), 2);
    tok_vocab_free(v);
}

static void test_loader_errors(void **state) {
    (void)state;
    static const char *const toks[] = {"a", "b"};
    float sc[] = {0};
    sh_err err = {{0}};
    spec s = {NULL, toks, 2, NULL, 0, NULL, NULL, 0};
    assert_null(build(&s, &err));
    assert_non_null(strstr(err.msg, "tokenizer.ggml.model"));
    s.model = "t5";
    assert_null(build(&s, &err));
    assert_non_null(strstr(err.msg, "not supported"));
    s.model = "llama";
    s.scores = sc;
    s.n_scores = 1;
    assert_null(build(&s, &err));
    assert_non_null(strstr(err.msg, "tokenizer.ggml.scores"));
    s.model = "gpt2";
    s.scores = NULL;
    assert_null(build(&s, &err));
    assert_non_null(strstr(err.msg, "tokenizer.ggml.merges"));
    assert_non_null(strstr(err.msg, "synthetic.gguf"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spm_score_order),
        cmocka_unit_test(test_bpe_rank_order),
        cmocka_unit_test(test_loader_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
