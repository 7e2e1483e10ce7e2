/*
 * tokenizer — text <-> token ids from the tokenizer stored in a GGUF file, id for id what
 * llama.cpp produces for the same file and text.
 *
 * Supported `tokenizer.ggml.model` values:
 *   llama  SentencePiece-style: score-driven bigram merges, <0xNN> byte fallback, U+2581 for
 *          spaces and the add_space_prefix convention.
 *   gpt2   byte-level BPE: merge ranks from tokenizer.ggml.merges, the GPT-2 byte<->unicode
 *          mapping and the pre-tokenizer named by tokenizer.ggml.pre (see tok_pretok.h).
 *   bert   WordPiece: lower-casing, accent stripping, punctuation/CJK splitting, greedy
 *          longest-match with the U+2581 word-start marker used by GGUF bert vocabularies.
 * Special tokens (token_type control / user-defined / unknown) are split out of the input
 * before the model runs: user-defined tokens always, control and unknown tokens only when
 * parse_special is set — llama.cpp's rule.
 *
 * Invalid UTF-8 policy (the same as llama.cpp, so ids still agree): for gpt2 and bert every
 * byte that does not start a complete UTF-8 sequence is read as U+FFFD (bert then drops it);
 * for llama (SPM) bytes are never decoded: an invalid byte is its own symbol and comes out as
 * its <0xNN> byte token. Tokenizing never fails on any byte string.
 *
 * A tok_vocab is immutable after loading and may be shared by threads; tok_tokenize keeps its
 * scratch state (including a per-call word cache) on the heap of the calling thread.
 */
#ifndef SHOAL_TOKENIZER_TOKENIZER_H
#define SHOAL_TOKENIZER_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "gguf/gguf.h"

typedef enum tok_type { TOK_SPM = 1, TOK_BPE = 2, TOK_WPM = 3 } tok_type;

/* Pre-tokenizers for TOK_BPE, selected by tokenizer.ggml.pre. */
typedef enum tok_pre {
    TOK_PRE_DEFAULT = 0,    /* "default", missing or unknown names */
    TOK_PRE_GPT2,           /* gpt-2, phi-2, mpt, olmo, jais, ... */
    TOK_PRE_LLAMA3,         /* llama-bpe, llama3, llama-v3, dbrx, smaug-bpe, ... */
    TOK_PRE_QWEN2,          /* qwen2, deepseek-r1-qwen, stablelm2, megrez, ... */
    TOK_PRE_STARCODER,      /* starcoder, smollm, refact, command-r, codeshell, exaone, ... */
    TOK_PRE_FALCON,         /* falcon */
    TOK_PRE_DEEPSEEK_LLM,   /* deepseek-llm */
    TOK_PRE_DEEPSEEK_CODER, /* deepseek-coder */
} tok_pre;

/* Token attributes (bit values as llama.cpp's llama_token_attr). */
#define TOK_ATTR_UNKNOWN      0x001u
#define TOK_ATTR_UNUSED       0x002u
#define TOK_ATTR_NORMAL       0x004u
#define TOK_ATTR_CONTROL      0x008u
#define TOK_ATTR_USER_DEFINED 0x010u
#define TOK_ATTR_BYTE         0x020u
#define TOK_ATTR_LSTRIP       0x080u
#define TOK_ATTR_RSTRIP       0x100u

typedef struct tok_vocab tok_vocab;

/* A growable array of token ids. Zero-initialise it; tok_ids_free releases it. */
typedef struct tok_ids {
    int32_t *ids;
    size_t n, cap;
} tok_ids;

/* A growable byte buffer (not NUL-terminated unless the producer says so). */
typedef struct tok_buf {
    char *data;
    size_t n, cap;
} tok_buf;

void tok_ids_free(tok_ids *a);
void tok_buf_free(tok_buf *b);

/* ---- loading ------------------------------------------------------------------------- */

/* Builds a vocabulary from the tokenizer.ggml.* keys of an open GGUF file (tensors are not
 * needed: vocab-only files work). Everything is copied: g may be freed afterwards. Returns NULL
 * with a message ("PATH: tokenizer.ggml.tokens: ...") on missing or inconsistent metadata. */
tok_vocab *tok_vocab_from_gguf(const gguf_ctx *g, sh_err *err);

/* gguf_open + tok_vocab_from_gguf + gguf_free. */
tok_vocab *tok_vocab_load(const char *path, sh_err *err);

/* Releases the vocabulary. NULL is fine. */
void tok_vocab_free(tok_vocab *v);

/* ---- properties ---------------------------------------------------------------------- */

tok_type tok_vocab_type(const tok_vocab *v);
tok_pre tok_vocab_pre(const tok_vocab *v);
int32_t tok_n_tokens(const tok_vocab *v);
int32_t tok_bos(const tok_vocab *v); /* -1 when the vocabulary has none */
int32_t tok_eos(const tok_vocab *v);
int32_t tok_eot(const tok_vocab *v);
int32_t tok_unk(const tok_vocab *v);
bool tok_add_bos(const tok_vocab *v);
bool tok_add_eos(const tok_vocab *v);
/* End-of-generation tokens (eos, eot, <|im_end|>, <|end|>, ... as llama.cpp lists them). */
bool tok_is_eog(const tok_vocab *v, int32_t id);
/* Text of token id as stored in the file (pointer valid until tok_vocab_free); NULL when id is
 * out of range. */
const char *tok_token_text(const tok_vocab *v, int32_t id, size_t *len);
unsigned tok_token_attr(const tok_vocab *v, int32_t id);
/* tokenizer.chat_template, NUL-terminated, or NULL when the file has none. */
const char *tok_chat_template(const tok_vocab *v);
/* tokenizer.chat_template.rerank (a reranker's "{query}" / "{document}" template), or NULL. */
const char *tok_rerank_template(const tok_vocab *v);
/* The separator token ([SEP]), or -1, and tokenizer.ggml.add_sep_token (WordPiece default:
 * true), which pairs of texts use (rerank). */
int32_t tok_sep(const tok_vocab *v);
bool tok_add_sep(const tok_vocab *v);
/* The id of the token whose text is exactly s[0..len), or -1. */
int32_t tok_find(const tok_vocab *v, const char *s, size_t len);

/* ---- tokenize ------------------------------------------------------------------------ */

#define TOK_MAX_INPUT (1u << 30) /* bytes per tok_tokenize call */

/* Appends the ids of text[0..len) to out. add_special adds BOS/EOS (SPM, BPE) or CLS/SEP
 * (WPM) as the vocabulary's flags say; parse_special recognises control tokens in the text.
 * Returns 0, or -1 (message in err) when memory runs out or len > TOK_MAX_INPUT. */
int tok_tokenize(const tok_vocab *v, const char *text, size_t len, bool add_special,
                 bool parse_special, tok_ids *out, sh_err *err);

/* Where a token came from: bytes [start, end) of the text given to tok_tokenize_spans.
 * word_start marks the first piece of a word (the one a tagger's label is read from); special
 * marks [CLS] / [SEP] added by add_special (start = end: 0 for the first, the text's length
 * for the last) and special tokens parsed from the text (their bytes). */
typedef struct tok_span {
    uint32_t start, end;
    bool word_start, special;
} tok_span;

typedef struct tok_spans {
    tok_span *v;
    size_t n, cap;
} tok_spans;

void tok_spans_free(tok_spans *s);

/* tok_tokenize that also appends one span per token to spans (WordPiece vocabularies only:
 * -1 with a message for the others). The ids are exactly tok_tokenize's. */
int tok_tokenize_spans(const tok_vocab *v, const char *text, size_t len, bool add_special,
                       bool parse_special, tok_ids *out, tok_spans *spans, sh_err *err);

/* ---- detokenize ---------------------------------------------------------------------- */

/* The bytes token id stands for (llama.cpp's token_to_piece): U+2581 -> space and <0xNN> ->
 * the byte for SPM/WPM, the byte<->unicode mapping reversed for BPE. Control and unknown
 * tokens give "" unless special is set (their text then). Pointer valid until tok_vocab_free;
 * NULL for an out-of-range id. */
const char *tok_piece(const tok_vocab *v, int32_t id, bool special, size_t *len);

/* Whole-sequence detokenization exactly as llama_detokenize(remove_special = false): the
 * first piece loses one leading space when the vocabulary adds a space prefix, and the BPE /
 * WPM clean-up of " ." " ," " 's" ... is applied where llama.cpp applies it. Appends to out;
 * -1 (message in err) for an out-of-range id or on allocation failure. */
int tok_detokenize(const tok_vocab *v, const int32_t *ids, size_t n, bool special, tok_buf *out,
                   sh_err *err);

/* Streaming detokenizer: feed ids one at a time, get text that is always whole UTF-8
 * characters. Bytes of a character split across tokens (byte-fallback or byte-level tokens)
 * are held until the character completes; bytes that can never form valid UTF-8 are passed
 * through as they are so nothing is lost. No clean-up pass (that needs look-ahead). The first
 * piece loses one leading space like tok_detokenize when the vocabulary adds a space prefix —
 * right for text that was tokenized from its start; when streaming generated tokens that
 * continue a prompt, set `first` to false after tok_detok_init to keep that space. */
typedef struct tok_detok {
    const tok_vocab *v;
    bool special;
    bool first; /* true until the first push: strip one leading space (see above) */
    uint8_t held[4];
    size_t n_held;
} tok_detok;

void tok_detok_init(tok_detok *d, const tok_vocab *v, bool special);

/* Appends the complete characters now available to out. -1 for an out-of-range id or on
 * allocation failure. */
int tok_detok_push(tok_detok *d, int32_t id, tok_buf *out, sh_err *err);

/* Appends whatever is still held (an incomplete character at the end of the stream, as raw
 * bytes) and resets the state for a new stream. -1 on allocation failure. */
int tok_detok_flush(tok_detok *d, tok_buf *out, sh_err *err);

#endif
