/*
 * tokenizer/tok_pretok — the byte-level BPE pre-tokenizers, hand-written from the regular
 * expressions llama.cpp uses for each tokenizer.ggml.pre (no regex engine).
 *
 * A pre-tokenizer is a list of passes; each pass splits every fragment the previous one left
 * into pieces (matches and the text between matches both become pieces), exactly as
 * llama.cpp's unicode_regex_split applies its expression list. The passes:
 *   gpt2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   llama3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *           ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   qwen2   the llama3 expression with \p{N} instead of \p{N}{1,3}
 * plus the small helper expressions of the default / starcoder / falcon / deepseek lists
 * (\p{N}, \p{N}+, [0-9]{3}, punctuation runs, the deepseek Latin / CJK / punctuation classes,
 * \s+$, [\r\n]). Whitespace is Unicode White_Space; letters and numbers are the full-Unicode
 * \p{L} / \p{N} of tok_unicode.
 */
#ifndef SHOAL_TOKENIZER_TOK_PRETOK_H
#define SHOAL_TOKENIZER_TOK_PRETOK_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* A growable array of lengths (code points). Zero-initialise; free(v) when done. */
typedef struct tok_lens {
    uint32_t *v;
    size_t n, cap;
} tok_lens;

/* Splits cps[0..n) (flags[i] == tok_u_flags(cps[i])) into the words of pre-tokenizer pre and
 * stores their lengths, in order, in *out (replacing its contents; they sum to n). tmp is
 * scratch owned by the caller. Returns 0, or -1 when memory runs out. */
int tok_pretok_split(tok_pre pre, const uint32_t *cps, const uint16_t *flags, size_t n,
                     tok_lens *out, tok_lens *tmp);

#endif
