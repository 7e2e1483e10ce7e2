/*
 * grammar — constrained decoding: the set of tokens that keep generated text inside a grammar.
 *
 * Three ways to get a compiled grammar (a `gram`):
 *   gram_from_gbnf         llama.cpp's GBNF notation (rules, "literals", [classes], ., ( ),
 *                          |, * + ? {m} {m,} {m,n}, # comments); the start rule is "root".
 *   gram_from_json_schema  a JSON Schema (the subset OpenAI structured outputs clients send:
 *                          see docs/grammar.md); anything else is refused with the keyword
 *                          and its JSON path named in the message (the server answers 400).
 *   gram_json_object       any JSON object (response_format {"type": "json_object"}).
 * All JSON grammars allow at most GRAM_WS_MAX whitespace characters between two JSON tokens
 * (and before the document), none after it, and nest "any value" at most GRAM_JSON_DEPTH deep.
 *
 * Per model, gram_vocab_init indexes the vocabulary once (a byte trie of the token pieces). Per
 * request, a gram_matcher follows the text generated so far: at every step the scheduler asks
 * gram_matcher_mask for the allowed tokens, samples among them and calls gram_matcher_accept.
 *
 * Threads: a gram and a gram_vocab are immutable after creation and may be shared by any
 * number of threads (the gram's internal mask cache has its own lock). A gram_matcher belongs
 * to one thread at a time.
 */
#ifndef SHOAL_GRAMMAR_GRAMMAR_H
#define SHOAL_GRAMMAR_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "tokenizer/tokenizer.h"

#define GRAM_WS_MAX     24 /* whitespace characters allowed between two JSON tokens */
#define GRAM_JSON_DEPTH 8  /* nesting levels of arrays/objects in "any JSON value" */
#define GRAM_REPEAT_MAX 4096 /* largest m or n in {m,n}, maxLength, maxItems */

typedef struct gram gram;

/* Compiles GBNF text[0..len) (UTF-8; need not be NUL-terminated). Returns NULL with a message
 * naming line and column ("gbnf: line 3, column 9: undefined rule 'value'") on a syntax error,
 * an undefined or twice-defined rule, a missing "root" rule, a rule that can recurse without
 * consuming input (left recursion), or repetition counts above GRAM_REPEAT_MAX. The caller
 * owns the result (gram_free). */
gram *gram_from_gbnf(const char *text, size_t len, sh_err *err);

/* Compiles a JSON Schema given as JSON text[0..len). Returns NULL with a message on invalid
 * JSON, an unsupported keyword or value ("unsupported JSON Schema keyword 'multipleOf' at
 * properties.age"), or a schema that matches nothing. The caller owns the result. */
gram *gram_from_json_schema(const char *json, size_t len, sh_err *err);

/* Any JSON object / any JSON value (nesting bounded by GRAM_JSON_DEPTH). NULL only when
 * memory runs out. The caller owns the result. */
gram *gram_json_object(sh_err *err);
gram *gram_json_value(sh_err *err);

/* Releases g (NULL is fine). Every matcher made from g must be freed first. */
void gram_free(gram *g);

/* GBNF text of the compiled rules, including the helper rules that repetitions and groups
 * were lowered to (a grammar that gram_from_gbnf accepts and that matches the same strings).
 * malloc'd, NUL-terminated, owned by the caller; NULL when memory runs out. */
char *gram_to_gbnf(const gram *g);

/* Number of rules after lowering, and the mask cache's entry count (statistics). */
size_t gram_n_rules(const gram *g);
size_t gram_cache_entries(const gram *g);

/* ---- vocabulary index ---------------------------------------------------------------- */

typedef struct gram_vocab gram_vocab;

/* Indexes the pieces (tok_piece, special = false) of every token of v. Tokens whose piece is
 * empty (control, unknown) are never allowed; end-of-generation tokens (tok_is_eog) are
 * allowed exactly when the grammar can end. v is borrowed and must outlive the result, which
 * the caller owns (gram_vocab_free). NULL with a message when memory runs out. */
gram_vocab *gram_vocab_init(const tok_vocab *v, sh_err *err);

/* Releases gv (NULL is fine). Every matcher using gv must be freed first. */
void gram_vocab_free(gram_vocab *gv);

/* Number of uint32 words of a mask for gv: ceil(n_vocab / 32). */
size_t gram_vocab_mask_words(const gram_vocab *gv);

/* ---- matcher ------------------------------------------------------------------------- */

typedef struct gram_matcher gram_matcher;

/* A matcher at the start of g's language. Borrows g and gv: both must outlive it. gv may be
 * NULL for a matcher that is only fed bytes (gram_matcher_accept_bytes; mask and accept then
 * assert). NULL with a message when memory runs out. */
gram_matcher *gram_matcher_init(const gram *g, const gram_vocab *gv, sh_err *err);

/* Releases m (NULL is fine). */
void gram_matcher_free(gram_matcher *m);

/* Back to the start state (for a new request on the same grammar). */
void gram_matcher_reset(gram_matcher *m);

/* Fills mask (gram_vocab_mask_words(gv) uint32 words; bit i of word i/32 set = token i
 * allowed) and returns the number of allowed tokens. End-of-generation tokens are allowed
 * iff the grammar can end here. A token is allowed iff gram_matcher_accept would accept it.
 * 0 only after an end-of-generation token was accepted. -1 when memory runs out; -2 when the
 * grammar is so ambiguous here that the mask would take too long (a work budget proportional to
 * the vocabulary's trie): the caller ends the request. */
int gram_matcher_mask(gram_matcher *m, uint32_t *mask);

/* Advances over token id: 0, or -1 when the token is not allowed (the state is unchanged).
 * Accepting an end-of-generation token ends the matcher (nothing more is allowed). */
int gram_matcher_accept(gram_matcher *m, int32_t id);

/* Advances over the raw bytes s[0..n) (which may end inside a UTF-8 character; the rest may
 * come with the next call): 0, or -1 when they are not allowed (the state is unchanged). */
int gram_matcher_accept_bytes(gram_matcher *m, const char *s, size_t n);

/* Would gram_matcher_accept(m, id) succeed? The state is not changed (the per-token
 * reference the mask is tested against). */
bool gram_matcher_allows(gram_matcher *m, int32_t id);

/* True when the text so far is a complete sentence of the grammar. */
bool gram_matcher_can_end(const gram_matcher *m);

/* True when the text so far is complete and nothing else may follow (or the matcher ended). */
bool gram_matcher_done(const gram_matcher *m);

/* Convenience for tests and validation: does g match exactly s[0..n)? */
bool gram_match(const gram *g, const char *s, size_t n);

#endif
