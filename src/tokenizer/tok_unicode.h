/*
 * tokenizer/tok_unicode — the Unicode facts the tokenizers need, with llama.cpp's semantics.
 *
 * Code point properties come from generated range tables (tok_unicode_data.c, made by
 * scripts/gen_unicode_tables.py): general-category flags (\p{N} \p{L} \p{Z} \p{M} \p{P} \p{S}
 * \p{C}), White_Space, the simple lower-case mapping and the first code point of the NFD
 * decomposition. UTF-8 decoding follows llama.cpp's unicode_cpts_from_utf8: a lead byte decides
 * the length, continuation bytes must be 10xxxxxx, overlong forms and surrogates are accepted as
 * they decode, and every byte that does not start a complete sequence becomes U+FFFD and is
 * consumed alone. Sequences that decode above U+10FFFF are also U+FFFD (one byte) — llama.cpp
 * throws on those.
 */
#ifndef SHOAL_TOKENIZER_TOK_UNICODE_H
#define SHOAL_TOKENIZER_TOK_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Flag bits, numbered as llama.cpp's unicode_cpt_flags (low byte = category). */
#define TOK_U_UNDEF 0x0001u /* no category (unassigned, Cn) */
#define TOK_U_NUM   0x0002u /* \p{N} */
#define TOK_U_LET   0x0004u /* \p{L} */
#define TOK_U_SEP   0x0008u /* \p{Z} */
#define TOK_U_MARK  0x0010u /* \p{M} */
#define TOK_U_PUNCT 0x0020u /* \p{P} */
#define TOK_U_SYM   0x0040u /* \p{S} */
#define TOK_U_CTRL  0x0080u /* \p{C} */
#define TOK_U_WS    0x0100u /* White_Space (\s) */

#define TOK_U_REPLACEMENT 0xFFFDu

typedef struct tok_u_range { uint32_t start; uint16_t flags; } tok_u_range;
typedef struct tok_u_map { uint32_t from, to; } tok_u_map;
typedef struct tok_u_nfd { uint32_t first, last, nfd; } tok_u_nfd;

/* Generated tables (sorted by code point). */
extern const tok_u_range tok_u_flag_ranges[];
extern const size_t tok_u_n_flag_ranges;
extern const uint16_t tok_u_ascii_flags[128]; /* the flags of U+0000..U+007F, for speed */
extern const tok_u_map tok_u_lower_map[];
extern const size_t tok_u_n_lower_map;
extern const tok_u_nfd tok_u_nfd_ranges[];
extern const size_t tok_u_n_nfd_ranges;

/* Flags of a code point; TOK_U_UNDEF for values above U+10FFFF. */
unsigned tok_u_flags(uint32_t cp);

/* Simple lower-case mapping (first code point of str.lower()); cp itself when none. */
uint32_t tok_u_tolower(uint32_t cp);

/* First code point of the NFD decomposition; cp itself when it has none. */
uint32_t tok_u_nfd_first(uint32_t cp);

/* Byte length llama.cpp assigns to a UTF-8 sequence from its lead byte alone (1 for ASCII and
 * for stray continuation bytes, 2/3/4 from the high bits). */
static inline size_t tok_u_lead_len(uint8_t b) {
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[b >> 4];
}

/* Decodes the code point at s[0..n) (n >= 1) as described above; stores it in *cp and returns
 * the bytes consumed (1..4). */
size_t tok_u_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* Encodes cp (<= 0x10FFFF; surrogates are encoded like any other value) into out; returns the
 * length 1..4. */
size_t tok_u_encode(uint32_t cp, char out[4]);

/* Length of the longest prefix of s[0..n) that is complete, valid (strict) UTF-8, so that a
 * stream can hold back a trailing partial character. Bytes that can never start or continue a
 * valid sequence count as complete (they are passed through as they are). */
size_t tok_u_complete_prefix(const uint8_t *s, size_t n);

#endif
