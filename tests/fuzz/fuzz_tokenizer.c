/*
 * fuzz_tokenizer — libFuzzer target for the tokenizers, the detokenizers and the chat
 * formatter. Input: byte 0 picks the vocabulary and the flags, the rest is the text.
 * Checks: ids in range; the streaming detokenizer is lossless and never splits a character of
 * valid output between two pushes; for SPM and
 * BPE vocabularies, valid UTF-8 without special parsing round-trips exactly; chat formatting of
 * the text split into messages never fails. Vocabularies come from tests/data/vocab (run from the
 * repository root, as `make fuzz` does).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat.h"
#include "tokenizer/tok_unicode.h"
#include "tokenizer/tokenizer.h"

static const char *const names[] = {"llama-spm", "gpt-2", "llama-bpe", "qwen2", "phi-3", "bert-bge"};
#define NV (sizeof names / sizeof names[0])
static tok_vocab *vocabs[NV];

static void load_all(void) {
    for (size_t i = 0; i < NV; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/data/vocab/ggml-vocab-%s.gguf", names[i]);
        sh_err err = {{0}};
        vocabs[i] = tok_vocab_load(path, &err);
        if (!vocabs[i]) {
            fprintf(stderr, "fuzz_tokenizer: %s (run from the repository root)\n", err.msg);
            abort();
        }
    }
}

/* Strict UTF-8 validity (no overlongs, no surrogates, <= U+10FFFF). */
static bool valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t l;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c < 0x80) l = 1;
        else if (c >= 0xC2 && c <= 0xDF) l = 2;
        else if (c >= 0xE0 && c <= 0xEF) l = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) l = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else return false;
        if (i + l > n) return false;
        for (size_t k = 1; k < l; k++) {
            uint8_t x = s[i + k];
            if (x < (k == 1 ? lo : 0x80) || x > (k == 1 ? hi : 0xBF)) return false;
        }
        i += l;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!vocabs[0]) load_all();
    if (size < 1) return 0;
    uint8_t sel = data[0];
    const tok_vocab *v = vocabs[sel % NV];
    bool add = sel & 0x40, special = sel & 0x80;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;

    tok_ids ids = {0};
    if (tok_tokenize(v, text, n, add, special, &ids, NULL)) abort();
    for (size_t i = 0; i < ids.n; i++)
        if (ids.ids[i] < 0 || ids.ids[i] >= tok_n_tokens(v)) abort();

    /* streaming: record where each push's output starts */
    tok_detok d;
    tok_detok_init(&d, v, special);
    tok_buf out = {0};
    size_t *cuts = malloc((ids.n + 2) * sizeof *cuts);
    if (!cuts) return 0;
    for (size_t i = 0; i < ids.n; i++) {
        cuts[i] = out.n;
        if (tok_detok_push(&d, ids.ids[i], &out, NULL)) abort();
    }
    cuts[ids.n] = out.n;
    if (tok_detok_flush(&d, &out, NULL)) abort();
    /* lossless: the stream is the pieces back to back (first leading space removed the same way
     * as tok_detokenize without the clean-up pass) */
    tok_buf raw = {0};
    for (size_t i = 0; i < ids.n; i++) {
        size_t pl;
        const char *p = tok_piece(v, ids.ids[i], special, &pl);
        if (!p) abort();
        if (i == 0 && tok_vocab_type(v) == TOK_SPM && pl && p[0] == ' ') p++, pl--;
        if (pl) {
            raw.data = realloc(raw.data, raw.n + pl);
            if (!raw.data) abort();
            memcpy(raw.data + raw.n, p, pl);
            raw.n += pl;
        }
    }
    if (raw.n != out.n || (raw.n && memcmp(raw.data, out.data, raw.n) != 0)) abort();
    /* never half a character: when the whole stream is valid UTF-8, so is every chunk */
    if (out.n && valid_utf8((const uint8_t *)out.data, out.n))
        for (size_t i = 0; i < ids.n; i++)
            if (cuts[i + 1] > cuts[i] &&
                !valid_utf8((const uint8_t *)out.data + cuts[i], cuts[i + 1] - cuts[i]))
                abort();
    free(cuts);
    free(raw.data);
    if (!add && !special && tok_vocab_type(v) != TOK_WPM && valid_utf8(data + 1, n) &&
        !(tok_vocab_type(v) == TOK_SPM && memmem(text, n, "\xE2\x96\x81", 3))) {
        if (out.n != n || (n && memcmp(out.data, text, n) != 0)) abort(); /* round trip */
    }
    tok_buf whole = {0};
    if (tok_detokenize(v, ids.ids, ids.n, special, &whole, NULL)) abort();
    tok_buf_free(&whole);
    tok_buf_free(&out);
    tok_ids_free(&ids);

    /* chat: NUL-separated "role\0content\0role\0content..." with the template from the text */
    char *copy = malloc(n + 2);
    if (!copy) return 0;
    memcpy(copy, text, n);
    copy[n] = copy[n + 1] = 0;
    tok_chat_msg msgs[16];
    size_t nm = 0;
    for (size_t p = 0; p < n && nm < 16;) {
        const char *role = copy + p;
        p += strlen(role) + 1;
        const char *content = p <= n ? copy + p : "";
        if (p <= n) p += strlen(content) + 1;
        msgs[nm++] = (tok_chat_msg){role, content};
    }
    bool fb;
    char *prompt = tok_chat_apply(copy, NULL, msgs, nm, sel & 1, &fb, NULL, NULL);
    if (!prompt) abort();
    free(prompt);
    free(copy);
    return 0;
}
