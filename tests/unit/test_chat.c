/*
 * test_chat — chat template detection and the built-in formatters (exact prompt strings in
 * llama.cpp's formats), including the templates stored in the phi-3 and qwen2 test vocabs.
 */
#include "testutil.h"

#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

static const tok_chat_msg conv[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
};
#define NCONV (sizeof conv / sizeof conv[0])

static void expect(const char *name, bool gen, const char *want) {
    bool fb = true;
    tok_chat_tmpl used = TOK_CHAT_UNKNOWN;
    sh_err err = {{0}};
    char *got = tok_chat_apply(NULL, name, conv, NCONV, gen, &fb, &used, &err);
    if (!got) fail_msg("%s: %s", name, err.msg);
    assert_false(fb);
    assert_string_equal(tok_chat_name(used), name);
    if (strcmp(got, want) != 0) fail_msg("%s:\n want: %s\n got:  %s", name, want, got);
    free(got);
}

static void test_formats(void **state) {
    (void)state;
    expect("chatml", true,
           "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello"
           "<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you"
           "<|im_end|>\n<|im_start|>assistant\n");
    expect("chatml", false,
           "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello"
           "<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you"
           "<|im_end|>\n");
    expect("llama2", true,
           "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]");
    expect("llama2-sys", true,
           "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>"
           "[INST] Who are you [/INST]");
    expect("llama2-sys-bos", true,
           "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>"
           "<s>[INST] Who are you [/INST]");
    expect("llama3", true,
           "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect("phi3", true,
           "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\n"
           "Hi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n");
    expect("zephyr", true,
           "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello<|endoftext|>\n"
           "<|assistant|>\nHi there<|endoftext|>\n<|user|>\nWho are you<|endoftext|>\n"
           "<|assistant|>\n");
    expect("gemma", true,
           "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
           "<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are you"
           "<end_of_turn>\n<start_of_turn>model\n");
    expect("mistral-v7", true,
           "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there"
           "</s>[INST] Who are you[/INST]");
    expect("mistral-v3", false,
           "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who are you[/INST]");
    expect("mistral-v1", false,
           " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]");
}

static void test_detect(void **state) {
    (void)state;
    struct {
        const char *tmpl;
        tok_chat_tmpl want;
    } cases[] = {
        {"{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n'}}{% endfor %}", TOK_CHAT_CHATML},
        {"{{'<|im_start|>' + m['role'] + '<|im_sep|>'}}", TOK_CHAT_PHI4},
        {"{{ bos_token }}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}",
         TOK_CHAT_LLAMA2},
        {"[INST] <<SYS>>\\n' + system_message + '\\n<</SYS>>", TOK_CHAT_LLAMA2_SYS},
        {"{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }} <<SYS>>", TOK_CHAT_LLAMA2_SYS_STRIP},
        {"[SYSTEM_PROMPT] [INST]", TOK_CHAT_MISTRAL_V7},
        {"{{'<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n'}}", TOK_CHAT_LLAMA3},
        {"{{'<|user|>\\n' + m['content'] + '<|end|>\\n<|assistant|>\\n'}}", TOK_CHAT_PHI3},
        {"{{'<|user|>\\n' + m['content'] + '<|endoftext|>'}}", TOK_CHAT_ZEPHYR},
        {"{{'<start_of_turn>' + role + '\\n'}}", TOK_CHAT_GEMMA},
        {"### Instruction:\\n ... <|EOT|>", TOK_CHAT_DEEPSEEK},
        {"llama3", TOK_CHAT_LLAMA3},
        {"{{ messages | tojson }}", TOK_CHAT_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tok_chat_tmpl got = tok_chat_detect(cases[i].tmpl);
        if (got != cases[i].want)
            fail_msg("case %zu: want %s, got %s", i, tok_chat_name(cases[i].want), tok_chat_name(got));
    }
    assert_int_equal(tok_chat_detect(NULL), TOK_CHAT_UNKNOWN);
}

static void test_unknown_falls_back_to_chatml(void **state) {
    (void)state;
    bool fb = false;
    tok_chat_tmpl used = TOK_CHAT_UNKNOWN;
    tok_chat_msg m[] = {{"user", "hi"}};
    char *s = tok_chat_apply("{{ something else }}", NULL, m, 1, true, &fb, &used, NULL);
    assert_non_null(s);
    assert_true(fb);
    assert_int_equal(used, TOK_CHAT_CHATML);
    assert_string_equal(s, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    free(s);
    /* a name overrides the template; an unknown name is an error */
    s = tok_chat_apply("<|im_start|>", "llama3", m, 1, false, &fb, &used, NULL);
    assert_non_null(s);
    assert_false(fb);
    assert_string_equal(s, "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");
    free(s);
    sh_err err = {{0}};
    assert_null(tok_chat_apply(NULL, "no-such-template", m, 1, true, &fb, &used, &err));
    assert_non_null(strstr(err.msg, "no-such-template"));
    tok_chat_msg bad[] = {{"user", NULL}};
    assert_null(tok_chat_apply(NULL, "chatml", bad, 1, true, &fb, &used, &err));
}

/* The templates stored in real vocab files are detected, and the prompt tokenizes with the
 * control tokens recognised. */
static void test_vocab_templates(void **state) {
    (void)state;
    sh_err err = {{0}};
    tok_vocab *v = tok_vocab_load(TU_DATA("vocab/ggml-vocab-phi-3.gguf"), &err);
    assert_non_null(v);
    assert_int_equal(tok_chat_detect(tok_chat_template(v)), TOK_CHAT_PHI3);
    tok_chat_msg m[] = {{"user", "hi"}};
    char *s = tok_chat_apply(tok_chat_template(v), NULL, m, 1, true, NULL, NULL, &err);
    assert_non_null(s);
    tok_ids ids = {0};
    assert_int_equal(tok_tokenize(v, s, strlen(s), true, true, &ids, NULL), 0);
    int32_t user = tok_find(v, "<|user|>", 8), end = tok_find(v, "<|end|>", 7);
    assert_true(user >= 0 && end >= 0);
    int seen_user = 0, seen_end = 0;
    for (size_t i = 0; i < ids.n; i++) seen_user |= ids.ids[i] == user, seen_end |= ids.ids[i] == end;
    assert_true(seen_user && seen_end);
    tok_ids_free(&ids);
    free(s);
    tok_vocab_free(v);
    v = tok_vocab_load(TU_DATA("vocab/ggml-vocab-qwen2.gguf"), &err);
    assert_non_null(v);
    assert_int_equal(tok_chat_detect(tok_chat_template(v)), TOK_CHAT_CHATML);
    tok_vocab_free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_unknown_falls_back_to_chatml),
        cmocka_unit_test(test_vocab_templates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
