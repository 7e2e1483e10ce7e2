/*
 * test_train_bpe — the BPE vocabulary learner (train/bpe.h): the vocabulary has the size asked
 * for, learning twice gives the same merges, the most frequent pair is merged first, the file
 * it writes loads as a gpt2 tokenizer that puts frequent words in one token and round-trips
 * any text (unseen words and bytes included), and the special tokens parse as single ids.
 */
#include "testutil.h"

#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "tokenizer/tokenizer.h"
#include "train/bpe.h"

static const char *corpus[] = {
    "Okay, turning on the kitchen lights.", "Okay, turning off the kitchen lights.",
    "Setting the bedroom lights to 40 percent.", "Okay, the front door is locked.",
    "Timer set for 10 minutes.", "Playing jazz in the living room.",
    "Okay, turning on the hall lights.", "Here is the weather in Berlin tomorrow.",
};
static const char *specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};

static void learn(bpe_vocab *v, int size) {
    const char *texts[64];
    size_t n = 0;
    for (int rep = 0; rep < 8; rep++)
        for (size_t i = 0; i < sizeof corpus / sizeof *corpus; i++) texts[n++] = corpus[i];
    sh_err err = {0};
    assert_int_equal(bpe_train(texts, n, size, specials, 3, v, &err), 0);
}

static tok_vocab *load(const bpe_vocab *bv, uint8_t **mem, gguf_ctx **g) {
    gguf_writer *w = gguf_writer_init();
    bpe_write_keys(w, bv);
    size_t len = 0;
    sh_err err = {0};
    assert_int_equal(gguf_writer_write_mem(w, mem, &len, &err), 0);
    gguf_writer_free(w);
    *g = gguf_open_mem(*mem, len, "bpe", &err);
    assert_non_null(*g);
    tok_vocab *v = tok_vocab_from_gguf(*g, &err);
    if (!v) fail_msg("%s", err.msg);
    return v;
}

static void test_size_and_determinism(void **state) {
    (void)state;
    bpe_vocab a = {0}, b = {0};
    learn(&a, 320);
    learn(&b, 320);
    assert_int_equal(a.n, 320);
    assert_int_equal(a.n, 256 + a.n_merges + 3);
    assert_int_equal(a.n_merges, b.n_merges);
    for (int i = 0; i < a.n_merges; i++) assert_string_equal(a.merges[i], b.merges[i]);
    /* " the" is in nearly every line: it became one token ("\xc4\xa0" is GPT-2's space) */
    int the = -1;
    for (int i = 0; i < a.n && the < 0; i++)
        if (!strcmp(a.tokens[i], "\xc4\xa0the")) the = i;
    assert_true(the >= 256);
    assert_int_equal(a.types[a.n - 1], 3);
    assert_int_equal(a.types[0], 1);
    bpe_free(&a);
    bpe_free(&b);
    bpe_free(NULL);
}

static void test_tokenizer_roundtrip(void **state) {
    (void)state;
    bpe_vocab bv = {0};
    learn(&bv, 340);
    uint8_t *mem = NULL;
    gguf_ctx *g = NULL;
    tok_vocab *v = load(&bv, &mem, &g);
    assert_int_equal(tok_vocab_type(v), TOK_BPE);
    assert_int_equal(tok_n_tokens(v), 340);
    sh_err err = {0};
    const char *texts[] = {"Okay, turning on the kitchen lights.", "zqxv unseen wörds, 123 & émoji 🙂",
                           "  leading spaces\nand a newline"};
    for (size_t i = 0; i < 3; i++) {
        tok_ids ids = {0};
        tok_buf out = {0};
        assert_int_equal(tok_tokenize(v, texts[i], strlen(texts[i]), false, false, &ids, &err), 0);
        if (i == 0) assert_true(ids.n <= 8); /* a training sentence is a few tokens */
        assert_int_equal(tok_detokenize(v, ids.ids, ids.n, false, &out, &err), 0);
        assert_int_equal(out.n, strlen(texts[i]));
        assert_memory_equal(out.data, texts[i], out.n);
        tok_ids_free(&ids);
        tok_buf_free(&out);
    }
    /* ChatML control tokens parse as one id each */
    const char *chat = "<|im_start|>user\nhi<|im_end|>";
    tok_ids ids = {0};
    assert_int_equal(tok_tokenize(v, chat, strlen(chat), false, true, &ids, &err), 0);
    assert_int_equal(ids.ids[0], tok_find(v, "<|im_start|>", 12));
    assert_int_equal(ids.ids[ids.n - 1], bv.eos);
    assert_true(tok_is_eog(v, bv.eos));
    assert_non_null(tok_chat_template(v));
    tok_ids_free(&ids);
    tok_vocab_free(v);
    gguf_free(g);
    free(mem);
    bpe_free(&bv);
}

static void test_errors(void **state) {
    (void)state;
    bpe_vocab v = {0};
    sh_err err = {0};
    const char *one[] = {"a"};
    assert_int_not_equal(bpe_train(one, 1, 100, specials, 3, &v, &err), 0); /* below 256 + specials */
    assert_true(strlen(err.msg) > 0);
    bpe_free(&v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_and_determinism),
        cmocka_unit_test(test_tokenizer_roundtrip),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
