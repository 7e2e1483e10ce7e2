/*
 * test_tokenizer — the tokenizers against llama.cpp's reference vectors (tests/data/vocab, from
 * llama.cpp's tests: *.inp inputs separated by "\n__ggml_vocab_test__\n", *.out one line of
 * " id id ..." per input, no BOS/EOS, no special parsing), plus special tokens, invalid UTF-8,
 * round trips and the streaming detokenizer.
 */
#include "testutil.h"

#include "tokenizer/tok_unicode.h"
#include "tokenizer/tokenizer.h"

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0, *len = (size_t)n;
    return b;
}

static tok_vocab *load(const char *name) {
    char path[256];
    snprintf(path, sizeof path, TU_DATA("vocab/ggml-vocab-%s.gguf"), name);
    sh_err err = {{0}};
    tok_vocab *v = tok_vocab_load(path, &err);
    if (!v) fail_msg("%s", err.msg);
    return v;
}

/* ============================================================ reference vectors ===== */

static void check_vectors(const char *name) {
    char path[256];
    size_t ilen, olen;
    snprintf(path, sizeof path, TU_DATA("vocab/ggml-vocab-%s.gguf.inp"), name);
    char *inp = read_all(path, &ilen);
    snprintf(path, sizeof path, TU_DATA("vocab/ggml-vocab-%s.gguf.out"), name);
    char *out = read_all(path, &olen);
    assert_non_null(inp);
    assert_non_null(out);
    tok_vocab *v = load(name);
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t pos = 0, count = 0;
    char *oline = out;
    tok_ids ids = {0};
    while (pos < ilen) {
        char *next = strstr(inp + pos, sep);
        size_t end = next ? (size_t)(next - inp) : ilen;
        ids.n = 0;
        assert_int_equal(tok_tokenize(v, inp + pos, end - pos, false, false, &ids, NULL), 0);
        char *nl = strchr(oline, '\n');
        assert_non_null(nl);
        *nl = 0;
        char got[8192] = "";
        size_t gl = 0;
        for (size_t i = 0; i < ids.n && gl < sizeof got - 16; i++)
            gl += (size_t)snprintf(got + gl, sizeof got - gl, " %d", ids.ids[i]);
        if (strcmp(got, oline) != 0)
            fail_msg("%s input %zu ('%.*s'):\n  want:%s\n  got: %s", name, count,
                     (int)(end - pos > 60 ? 60 : end - pos), inp + pos, oline, got);
        oline = nl + 1;
        count++;
        if (!next) break;
        pos = end + strlen(sep);
    }
    assert_true(count >= 40);
    tok_ids_free(&ids);
    tok_vocab_free(v);
    free(inp);
    free(out);
}

static void test_vectors_llama_spm(void **s) { (void)s; check_vectors("llama-spm"); }
static void test_vectors_llama_bpe(void **s) { (void)s; check_vectors("llama-bpe"); }
static void test_vectors_gpt2(void **s) { (void)s; check_vectors("gpt-2"); }
static void test_vectors_qwen2(void **s) { (void)s; check_vectors("qwen2"); }
static void test_vectors_phi3(void **s) { (void)s; check_vectors("phi-3"); }
static void test_vectors_bert_bge(void **s) { (void)s; check_vectors("bert-bge"); }

/* ============================================================ helpers ===== */

static size_t tokenize(const tok_vocab *v, const char *s, bool add, bool special, int32_t *out,
                       size_t cap) {
    tok_ids ids = {0};
    assert_int_equal(tok_tokenize(v, s, strlen(s), add, special, &ids, NULL), 0);
    assert_true(ids.n <= cap);
    memcpy(out, ids.ids, ids.n * sizeof *out);
    size_t n = ids.n;
    tok_ids_free(&ids);
    return n;
}

/* ============================================================ special tokens, flags ===== */

static void test_spm_special_and_bos(void **state) {
    (void)state;
    tok_vocab *v = load("llama-spm");
    int32_t t[64];
    /* documented llama.cpp example: BOS + "Hello world" */
    size_t n = tokenize(v, "Hello world", true, false, t, 64);
    assert_int_equal(n, 3);
    assert_int_equal(t[0], 1);
    assert_int_equal(t[1], 15043);
    assert_int_equal(t[2], 3186);
    /* "<s>" is text unless parse_special */
    n = tokenize(v, "<s>", false, false, t, 64);
    assert_true(n > 1);
    n = tokenize(v, "<s>", false, true, t, 64);
    assert_int_equal(n, 1);
    assert_int_equal(t[0], 1);
    /* after a special token the next text gets the space prefix again */
    int32_t a[64], b[64];
    size_t na = tokenize(v, "<s>Hello", false, true, a, 64);
    size_t nb = tokenize(v, "Hello", false, false, b, 64);
    assert_int_equal(na, nb + 1);
    assert_memory_equal(a + 1, b, nb * sizeof *b);
    /* byte fallback: a character the vocabulary lacks comes out as <0xNN> tokens */
    n = tokenize(v, "\xF0\x9F\xA6\x80", false, false, t, 64); /* U+1F980 */
    assert_true(n >= 4);
    for (size_t i = n - 4; i < n; i++) assert_true(tok_token_attr(v, t[i]) & TOK_ATTR_BYTE);
    assert_true(tok_add_bos(v));
    assert_false(tok_add_eos(v));
    tok_vocab_free(v);
}

static void test_bpe_special(void **state) {
    (void)state;
    tok_vocab *v = load("qwen2");
    int32_t t[64];
    int32_t im_start = tok_find(v, "<|im_start|>", 12);
    assert_true(im_start >= 0);
    size_t n = tokenize(v, "<|im_start|>user", false, true, t, 64);
    assert_int_equal(n, 2);
    assert_int_equal(t[0], im_start);
    n = tokenize(v, "<|im_start|>user", false, false, t, 64);
    assert_true(n > 2);
    for (size_t i = 0; i < n; i++) assert_int_not_equal(t[i], im_start);
    assert_true(tok_is_eog(v, tok_find(v, "<|im_end|>", 10)));
    assert_false(tok_add_bos(v));
    tok_vocab_free(v);
    v = load("llama-bpe");
    n = tokenize(v, "hi", true, false, t, 64);
    assert_int_equal(n, 2);
    assert_int_equal(t[0], tok_bos(v)); /* llama-bpe adds BOS */
    tok_vocab_free(v);
}

static void test_bert_cls_sep_lowercase(void **state) {
    (void)state;
    tok_vocab *v = load("bert-bge");
    int32_t a[64], b[64];
    size_t na = tokenize(v, "Hello WORLD", true, false, a, 64);
    size_t nb = tokenize(v, "hello world", true, false, b, 64);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    assert_int_equal(a[0], 101);      /* [CLS] */
    assert_int_equal(a[na - 1], 102); /* [SEP] */
    /* accents are stripped: é (precomposed) and e + U+0301 both read as e */
    na = tokenize(v, "caf\xC3\xA9", false, false, a, 64);
    nb = tokenize(v, "cafe\xCC\x81", false, false, b, 64);
    int32_t c[64];
    size_t nc = tokenize(v, "cafe", false, false, c, 64);
    assert_int_equal(na, nc);
    assert_int_equal(nb, nc);
    assert_memory_equal(a, c, na * sizeof *a);
    assert_memory_equal(b, c, nb * sizeof *b);
    tok_vocab_free(v);
}

/* ============================================================ invalid UTF-8 ===== */

static void test_invalid_utf8(void **state) {
    (void)state;
    /* byte-level BPE reads each invalid byte as U+FFFD, like llama.cpp */
    tok_vocab *v = load("gpt-2");
    int32_t a[64], b[64];
    size_t na = tokenize(v, "a\xFF" "b", false, false, a, 64);
    size_t nb = tokenize(v, "a\xEF\xBF\xBD" "b", false, false, b, 64);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    tok_vocab_free(v);
    /* SPM keeps the raw byte: it comes out as its byte token */
    v = load("llama-spm");
    na = tokenize(v, "\xFF", false, false, a, 64);
    assert_true(na >= 1);
    assert_int_equal(a[na - 1], tok_find(v, "<0xFF>", 6));
    tok_vocab_free(v);
    /* every byte value, in every tokenizer: no crash, some output */
    const char *names[] = {"llama-spm", "gpt-2", "llama-bpe", "qwen2", "phi-3", "bert-bge"};
    char all[512];
    for (int i = 0; i < 512; i++) all[i] = (char)(i & 255 ? i & 255 : 'x');
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        v = load(names[k]);
        tok_ids ids = {0};
        assert_int_equal(tok_tokenize(v, all, sizeof all, true, true, &ids, NULL), 0);
        assert_true(ids.n > 0);
        for (size_t i = 0; i < ids.n; i++) assert_true(ids.ids[i] >= 0 && ids.ids[i] < tok_n_tokens(v));
        tok_ids_free(&ids);
        tok_vocab_free(v);
    }
}

/* ============================================================ round trips ===== */

/* Random valid UTF-8: ASCII (with spaces, newlines, digits, punctuation) and code points from
 * several planes, never surrogates. */
static size_t random_utf8(uint64_t *rng, char *buf, size_t cap) {
    size_t n = 0;
    size_t want = 1 + tu_rand(rng) % 60;
    for (size_t k = 0; k < want && n + 4 < cap; k++) {
        uint64_t r = tu_rand(rng) % 10;
        uint32_t cp;
        if (r < 4) cp = 0x20 + (uint32_t)(tu_rand(rng) % 95);
        else if (r == 4) cp = " \n\t  "[tu_rand(rng) % 5];
        else if (r == 5) cp = 0x80 + (uint32_t)(tu_rand(rng) % 0x780);
        else if (r == 6) cp = 0x800 + (uint32_t)(tu_rand(rng) % 0xD000);
        else if (r == 7) cp = 0x4E00 + (uint32_t)(tu_rand(rng) % 0x5000);
        else if (r == 8) cp = 0x1F300 + (uint32_t)(tu_rand(rng) % 0x700);
        else cp = 0x10000 + (uint32_t)(tu_rand(rng) % 0xFFFF0);
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
        n += tok_u_encode(cp, buf + n);
    }
    return n;
}

static void round_trip(const char *name, int n_cases) {
    tok_vocab *v = load(name);
    uint64_t rng = 42;
    char text[512];
    tok_ids ids = {0};
    tok_buf out = {0}, stream = {0};
    for (int c = 0; c < n_cases; c++) {
        size_t n = random_utf8(&rng, text, sizeof text);
        ids.n = 0;
        assert_int_equal(tok_tokenize(v, text, n, false, false, &ids, NULL), 0);
        /* streaming: one token at a time, each chunk whole characters */
        tok_detok d;
        tok_detok_init(&d, v, false);
        stream.n = 0;
        for (size_t i = 0; i < ids.n; i++) {
            size_t before = stream.n;
            assert_int_equal(tok_detok_push(&d, ids.ids[i], &stream, NULL), 0);
            if (stream.n > before)
                assert_int_equal(tok_u_complete_prefix((const uint8_t *)stream.data + before,
                                                       stream.n - before),
                                 stream.n - before);
        }
        assert_int_equal(tok_detok_flush(&d, &stream, NULL), 0);
        if (stream.n != n || memcmp(stream.data, text, n) != 0)
            fail_msg("%s: round trip %d differs: '%.*s' -> '%.*s'", name, c, (int)n, text,
                     (int)stream.n, stream.data);
    }
    tok_ids_free(&ids);
    tok_buf_free(&out);
    tok_buf_free(&stream);
    tok_vocab_free(v);
}

static void test_round_trip_spm(void **s) { (void)s; round_trip("llama-spm", 300); }
static void test_round_trip_phi3(void **s) { (void)s; round_trip("phi-3", 300); }
static void test_round_trip_gpt2(void **s) { (void)s; round_trip("gpt-2", 300); }
static void test_round_trip_llama_bpe(void **s) { (void)s; round_trip("llama-bpe", 300); }
static void test_round_trip_qwen2(void **s) { (void)s; round_trip("qwen2", 300); }

/* ============================================================ detokenize ===== */

static void test_detokenize_llama_compat(void **state) {
    (void)state;
    tok_vocab *v = load("llama-spm");
    int32_t ids[] = {1, 15043, 3186};
    tok_buf b = {0};
    /* BOS renders as "" without special, and the first piece's leading space is removed
     * only from the first token (here the BOS), as llama_detokenize does */
    assert_int_equal(tok_detokenize(v, ids, 3, false, &b, NULL), 0);
    assert_string_equal(b.data, " Hello world");
    b.n = 0;
    assert_int_equal(tok_detokenize(v, ids + 1, 2, false, &b, NULL), 0);
    assert_string_equal(b.data, "Hello world");
    b.n = 0;
    assert_int_equal(tok_detokenize(v, ids, 3, true, &b, NULL), 0);
    assert_string_equal(b.data, "<s> Hello world");
    int32_t bad = tok_n_tokens(v);
    sh_err err = {{0}};
    assert_int_equal(tok_detokenize(v, &bad, 1, false, &b, &err), -1);
    assert_non_null(strstr(err.msg, "out of range"));
    tok_buf_free(&b);
    tok_vocab_free(v);
    /* gpt-2 cleans " ," and " 's" as llama.cpp does */
    v = load("gpt-2");
    tok_ids t = {0};
    const char *s = "Hello , world 's end .";
    assert_int_equal(tok_tokenize(v, s, strlen(s), false, false, &t, NULL), 0);
    assert_int_equal(tok_detokenize(v, t.ids, t.n, false, &b, NULL), 0);
    assert_string_equal(b.data, "Hello, world's end.");
    tok_buf_free(&b);
    tok_ids_free(&t);
    tok_vocab_free(v);
}

/* A character split over byte tokens is held until complete. */
static void test_stream_holds_partial(void **state) {
    (void)state;
    tok_vocab *v = load("llama-spm");
    const char *emoji = "\xF0\x9F\xA6\x80"; /* U+1F980, not in the vocabulary */
    tok_ids ids = {0};
    assert_int_equal(tok_tokenize(v, emoji, 4, false, false, &ids, NULL), 0);
    assert_true(ids.n >= 4);
    tok_detok d;
    tok_detok_init(&d, v, false);
    tok_buf b = {0};
    for (size_t i = 0; i + 1 < ids.n; i++) {
        assert_int_equal(tok_detok_push(&d, ids.ids[i], &b, NULL), 0);
        if (b.n) assert_int_equal(tok_u_complete_prefix((const uint8_t *)b.data, b.n), b.n);
    }
    assert_int_equal(tok_detok_push(&d, ids.ids[ids.n - 1], &b, NULL), 0);
    assert_true(b.n >= 4);
    assert_memory_equal(b.data + b.n - 4, emoji, 4);
    /* an unfinished character at the end of the stream comes out on flush */
    tok_detok_init(&d, v, false);
    b.n = 0;
    assert_int_equal(tok_detok_push(&d, tok_find(v, "<0xF0>", 6), &b, NULL), 0);
    assert_int_equal(b.n, 0);
    assert_int_equal(tok_detok_flush(&d, &b, NULL), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal((uint8_t)b.data[0], 0xF0);
    tok_buf_free(&b);
    tok_ids_free(&ids);
    tok_vocab_free(v);
}

/* ============================================================ long inputs ===== */

/* 1 MB without a space is one huge pre-tokenizer word: must not be quadratic (the bench
 * reports the time; here it must simply finish and cover every byte). */
static void test_huge_word(void **state) {
    (void)state;
    size_t n = 1 << 20;
    char *s = malloc(n);
    uint64_t rng = 7;
    for (size_t i = 0; i < n; i++) s[i] = (char)('a' + tu_rand(&rng) % 26);
    const char *names[] = {"gpt-2", "llama-spm", "bert-bge"};
    for (size_t k = 0; k < 3; k++) {
        tok_vocab *v = load(names[k]);
        tok_ids ids = {0};
        assert_int_equal(tok_tokenize(v, s, n, false, false, &ids, NULL), 0);
        assert_true(ids.n > n / 16);
        if (k < 2) { /* SPM and BPE reproduce the text */
            tok_buf b = {0};
            tok_detok d;
            tok_detok_init(&d, v, false);
            for (size_t i = 0; i < ids.n; i++) assert_int_equal(tok_detok_push(&d, ids.ids[i], &b, NULL), 0);
            assert_int_equal(b.n, n);
            assert_memory_equal(b.data, s, n);
            tok_buf_free(&b);
        }
        tok_ids_free(&ids);
        tok_vocab_free(v);
    }
    free(s);
}

static void test_load_errors(void **state) {
    (void)state;
    sh_err err = {{0}};
    assert_null(tok_vocab_load(TU_DATA("vocab/does-not-exist.gguf"), &err));
    assert_true(strlen(err.msg) > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_llama_spm),
        cmocka_unit_test(test_vectors_llama_bpe),
        cmocka_unit_test(test_vectors_gpt2),
        cmocka_unit_test(test_vectors_qwen2),
        cmocka_unit_test(test_vectors_phi3),
        cmocka_unit_test(test_vectors_bert_bge),
        cmocka_unit_test(test_spm_special_and_bos),
        cmocka_unit_test(test_bpe_special),
        cmocka_unit_test(test_bert_cls_sep_lowercase),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_round_trip_spm),
        cmocka_unit_test(test_round_trip_phi3),
        cmocka_unit_test(test_round_trip_gpt2),
        cmocka_unit_test(test_round_trip_llama_bpe),
        cmocka_unit_test(test_round_trip_qwen2),
        cmocka_unit_test(test_detokenize_llama_compat),
        cmocka_unit_test(test_stream_holds_partial),
        cmocka_unit_test(test_huge_word),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
