/*
 * test_nlu — WordPiece token spans (tokenizer.h), BIO decoding into entities, softmax, rerank
 * pairs and context fitting (nlu/nlu.h).
 */
#include "testutil.h"

#include <ctype.h>
#include <math.h>

#include "nlu/nlu.h"
#include "tokenizer/tokenizer.h"

#define BGE TU_DATA("vocab/ggml-vocab-bert-bge.gguf")

static tok_vocab *bge(void) {
    static tok_vocab *v;
    sh_err err = {{0}};
    if (!v) v = tok_vocab_load(BGE, &err);
    if (!v) fail_msg("%s", err.msg);
    return v;
}

/* Spans cover the source bytes of each piece, the same ids as tok_tokenize, word starts mark
 * the first piece of each word. */
static void test_spans(void **state) {
    (void)state;
    tok_vocab *v = bge();
    const char *text = "Turn ON the kitchen-lights, Zo\xc3\xab!  unbelievably";
    tok_ids a = {0}, b = {0};
    tok_spans sp = {0};
    sh_err err = {{0}};
    assert_int_equal(tok_tokenize(v, text, strlen(text), true, true, &a, &err), 0);
    assert_int_equal(tok_tokenize_spans(v, text, strlen(text), true, true, &b, &sp, &err), 0);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.ids, b.ids, a.n * sizeof *a.ids);
    assert_int_equal(sp.n, b.n);
    assert_true(sp.v[0].special && sp.v[sp.n - 1].special); /* [CLS] ... [SEP] */
    int words = 0;
    for (size_t i = 1; i + 1 < sp.n; i++) {
        assert_true(sp.v[i].start < sp.v[i].end && sp.v[i].end <= strlen(text));
        size_t len;
        const char *piece = tok_token_text(v, b.ids[i], &len);
        if (sp.v[i].word_start) {
            words++;
            assert_memory_equal(piece, "\xe2\x96\x81", 3); /* word-initial pieces carry U+2581 */
            piece += 3, len -= 3;
        }
        char src[64] = {0};
        size_t n = sp.v[i].end - sp.v[i].start;
        assert_true(n < sizeof src);
        for (size_t k = 0; k < n; k++) src[k] = (char)tolower((unsigned char)text[sp.v[i].start + k]);
        if (strcmp(src, "zo\xc3\xab") != 0) { /* the accent is stripped in the piece */
            assert_int_equal(len, n);
            assert_memory_equal(piece, src, n);
        }
    }
    /* turn on the kitchen - lights , zoe ! unbelievably */
    assert_int_equal(words, 10);
    tok_ids_free(&a), tok_ids_free(&b), tok_spans_free(&sp);
    /* other vocabularies say so */
    tok_vocab *spm = tok_vocab_load(TU_DATA("vocab/ggml-vocab-llama-spm.gguf"), &err);
    assert_non_null(spm);
    assert_int_equal(tok_tokenize_spans(spm, "hi", 2, true, true, &b, &sp, &err), -1);
    assert_non_null(strstr(err.msg, "WordPiece"));
    tok_vocab_free(spm);
    tok_ids_free(&b), tok_spans_free(&sp);
}

/* Tags per token from a label list; probability 0.9 on the tag, the rest spread. */
static void tags(float *probs, int n_labels, const int *tag, size_t n) {
    for (size_t t = 0; t < n; t++)
        for (int l = 0; l < n_labels; l++)
            probs[t * n_labels + l] = l == tag[t] ? 0.9f : 0.1f / (n_labels - 1);
}

static void test_bio(void **state) {
    (void)state;
    tok_vocab *v = bge();
    const char *text = "turn on the living room lights in São Paulo at 5pm";
    tok_ids ids = {0};
    tok_spans sp = {0};
    sh_err err = {{0}};
    assert_int_equal(tok_tokenize_spans(v, text, strlen(text), true, true, &ids, &sp, &err), 0);
    const char *labels[] = {"O", "B-room", "I-room", "B-loc", "I-loc", "time"};
    /* tag each token by the word it starts: living room -> room, sao paulo -> loc, 5pm ->
     * time (IO tag); continuation pieces get a contradicting tag, which must be ignored */
    int tag[64];
    for (size_t i = 0; i < ids.n; i++) {
        char w[32] = {0};
        size_t n = sp.v[i].end - sp.v[i].start;
        memcpy(w, text + sp.v[i].start, n < 31 ? n : 31);
        tag[i] = 0;
        if (!sp.v[i].word_start) tag[i] = 4;
        else if (!strcmp(w, "living")) tag[i] = 1;
        else if (!strcmp(w, "room")) tag[i] = 2;
        else if (!strncmp(w, "S", 1)) tag[i] = 3;
        else if (!strcmp(w, "Paulo")) tag[i] = 4;
        else if (!strncmp(w, "5", 1)) tag[i] = 5;
    }
    float probs[64 * 6];
    tags(probs, 6, tag, ids.n);
    nlu_entities e = {0};
    assert_int_equal(nlu_bio_decode(text, strlen(text), sp.v, ids.n, probs, 6, labels, &e, &err), 0);
    assert_int_equal(e.n, 3);
    assert_string_equal(e.v[0].label, "room");
    assert_string_equal(e.v[0].text, "living room");
    assert_int_equal(e.v[0].start, 12);
    assert_int_equal(e.v[0].end, 23);
    assert_string_equal(e.v[1].label, "loc");
    assert_string_equal(e.v[1].text, "São Paulo");
    assert_int_equal(e.v[1].start, 34); /* code points: "ã" is one */
    assert_int_equal(e.v[1].end, 43);
    assert_int_equal(e.v[1].byte_end - e.v[1].byte_start, 10);
    assert_string_equal(e.v[2].label, "time");
    assert_string_equal(e.v[2].text, "5pm"); /* 5 + pm: one word, pieces merged */
    assert_true(fabsf(e.v[0].score - 0.9f) < 1e-6);
    nlu_entities_free(&e);
    /* B after B starts a new entity; I of another label starts one too */
    int t2[64];
    for (size_t i = 0; i < ids.n; i++) t2[i] = 0;
    for (size_t i = 0, w = 0; i < ids.n; i++) {
        if (sp.v[i].special || !sp.v[i].word_start) continue;
        if (w == 3 || w == 4) t2[i] = 1;      /* living, room: B-room B-room */
        if (w == 5) t2[i] = 4;                /* lights: I-loc after room */
        w++;
    }
    tags(probs, 6, t2, ids.n);
    assert_int_equal(nlu_bio_decode(text, strlen(text), sp.v, ids.n, probs, 6, labels, &e, &err), 0);
    assert_int_equal(e.n, 3);
    assert_string_equal(e.v[0].text, "living");
    assert_string_equal(e.v[1].text, "room");
    assert_string_equal(e.v[2].label, "loc");
    assert_string_equal(e.v[2].text, "lights");
    nlu_entities_free(&e);
    tok_ids_free(&ids), tok_spans_free(&sp);
}

static void test_softmax_argmax(void **state) {
    (void)state;
    float x[4] = {1000, 1001, 999, -INFINITY}, p[4];
    nlu_softmax(x, 4, p);
    assert_true(fabsf(p[0] + p[1] + p[2] + p[3] - 1) < 1e-6f);
    assert_true(p[1] > p[0] && p[0] > p[2] && p[3] == 0);
    assert_int_equal(nlu_argmax(p, 4), 1);
    float tie[3] = {2, 2, 1};
    assert_int_equal(nlu_argmax(tie, 3), 0);
}

static void test_rerank_and_fit(void **state) {
    (void)state;
    tok_vocab *v = bge();
    tok_ids q = {0}, d = {0}, pair = {0};
    sh_err err = {{0}};
    assert_int_equal(tok_tokenize(v, "what is a panda?", 16, false, false, &q, &err), 0);
    assert_int_equal(tok_tokenize(v, "a bear", 6, false, false, &d, &err), 0);
    assert_int_equal(nlu_rerank_tokens(v, "what is a panda?", "a bear", &pair, &err), 0);
    /* this vocab: add_bos, add_sep, no EOS: [CLS] q [SEP] d */
    assert_int_equal(pair.n, 1 + q.n + 1 + d.n);
    assert_int_equal(pair.ids[0], tok_bos(v));
    assert_int_equal(pair.ids[1 + q.n], tok_sep(v));
    assert_memory_equal(pair.ids + 2 + q.n, d.ids, d.n * sizeof *d.ids);
    /* fitting: too long is an error naming both lengths; truncation keeps the last token */
    size_t n = pair.n;
    assert_int_equal(nlu_fit(&pair, NULL, 0, 4, false, &err), -1);
    assert_non_null(strstr(err.msg, "at most 4"));
    int32_t last = pair.ids[n - 1];
    assert_int_equal(nlu_fit(&pair, NULL, 0, 4, true, &err), 0);
    assert_int_equal(pair.n, 4);
    assert_int_equal(pair.ids[3], last);
    assert_int_equal(nlu_fit(&pair, NULL, 0, 4, false, &err), 0);
    assert_int_equal(nlu_codepoints("S\xc3\xa3o", 4), 3);
    tok_ids_free(&q), tok_ids_free(&d), tok_ids_free(&pair);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spans),
        cmocka_unit_test(test_bio),
        cmocka_unit_test(test_softmax_argmax),
        cmocka_unit_test(test_rerank_and_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
