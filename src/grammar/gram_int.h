/*
 * grammar internals shared by the module's files (not part of the contract).
 *
 * A compiled grammar is a flat array of elements. Every alternative of every rule is a run of
 * elements ending with GE_END; a position is an index into that array. GE_CHAR elements match
 * one code point against a character class, GE_REF elements expand a rule. Repetitions and
 * groups have already been lowered to helper rules, and no rule can reach itself without
 * consuming a character (checked at compile time), so expansion always terminates.
 */
#ifndef SHOAL_GRAMMAR_INT_H
#define SHOAL_GRAMMAR_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "grammar/grammar.h"
#include "core/strbuf.h"

enum { GE_END = 0, GE_CHAR = 1, GE_REF = 2 };
#define GE_MAKE(kind, arg) (((uint32_t)(kind) << 30) | (uint32_t)(arg))
#define GE_KIND(e)         ((e) >> 30)
#define GE_ARG(e)          ((e) & 0x3fffffffu)

#define GRAM_MAX_CP 0x10ffffu

/* A character class: sorted, disjoint, non-adjacent ranges [lo, hi] (already complemented
 * when it was written negated) and a bitmap of its ASCII members for the fast path. */
typedef struct gram_class {
    uint32_t ascii[4];
    uint32_t off, n; /* ranges g->ranges[2*off ..], n pairs */
} gram_class;

typedef struct gram_rule {
    uint32_t name;    /* offset into g->names */
    uint32_t alt, n_alt; /* g->alts[alt .. alt + n_alt) are the alternatives' start positions */
} gram_rule;

typedef struct gram_cache gram_cache;

struct gram {
    uint32_t *elems;
    size_t n_elems;
    uint32_t *alts;
    size_t n_alts;
    gram_rule *rules;
    size_t n_rules;
    gram_class *classes;
    size_t n_classes;
    uint32_t *ranges; /* pairs */
    size_t n_ranges;
    char *names; /* NUL-terminated names, back to back */
    size_t n_names;
    uint32_t root;
    gram_cache *cache; /* mask cache shared by all matchers of this grammar (own lock) */
};

/* A byte trie of token pieces, nodes in preorder. Node i (depth depth[i] >= 1, reached from
 * its parent by byte[i]) ends the pieces of tokens toks[tok_off[i] .. tok_off[i+1]); end[i] is
 * the first node after its subtree. */
typedef struct gram_trie {
    uint32_t n_nodes;
    uint8_t *byte;
    uint16_t *depth;
    uint32_t *end;
    uint32_t *tok_off;
    int32_t *toks;
} gram_trie;

/* String content: the code points a JSON string holds unescaped, [^"\\\x00-\x1F] without the
 * surrogates (GRAM_STR_RANGES pairs in gram_str_ranges). */
#define GRAM_STR_RANGES 4
extern const uint32_t gram_str_ranges[2 * GRAM_STR_RANGES];
/* Tokens whose piece is at most GRAM_STR_MAX string-content characters (the last one may be
 * an incomplete UTF-8 sequence of such a character) are "string tokens": the mask keeps them
 * out of its walk when the state treats every string-content character alike. */
#define GRAM_STR_MAX 48

/* The vocabulary index: the trie of all pieces (EOG tokens and empty pieces left out), the
 * trie of the pieces that are not string tokens, and str_le[(n - 1) * n_words ..]: the bitset
 * of string tokens of at most n characters, for n = 1 .. GRAM_STR_MAX. */
struct gram_vocab {
    const tok_vocab *v;
    uint64_t serial; /* unique per index: part of the mask cache key */
    int32_t n_vocab;
    size_t n_words;
    gram_trie all;   /* every piece */
    int32_t *eog;
    uint32_t n_eog;
    uint32_t max_depth;
    gram_trie rest;  /* pieces that are not string tokens */
    uint32_t *str_le;
};

/* ---- string builder: core/strbuf ---- */
typedef strbuf gram_sb;

/* Appends s[0..n) as a GBNF string literal (quotes included, escapes as needed). */
void gram_sb_lit(gram_sb *b, const char *s, size_t n);
/* Appends code point cp as it must be written inside a GBNF literal or class. */
void gram_sb_cp(gram_sb *b, uint32_t cp, bool in_class);

/* ---- gbnf.c ---- */
/* The GBNF compiler behind gram_from_gbnf; `what` prefixes messages ("gbnf"). */
gram *gram_compile(const char *text, size_t len, const char *what, sh_err *err);
bool gram_class_match(const gram *g, uint32_t cls, uint32_t cp);
bool gram_class_overlaps(const gram *g, uint32_t cls, uint32_t lo, uint32_t hi);
/* Does class cls hold every code point of [lo, hi]? */
bool gram_class_covers(const gram *g, uint32_t cls, uint32_t lo, uint32_t hi);

/* ---- matcher.c ---- */
gram_cache *gram_cache_new(void);
void gram_cache_free(gram_cache *c);

/* ---- regex.c ---- */
/* Appends to out a GBNF expression matching the JSON-encoded form (between the quotes) of
 * the strings that pattern[0..len) matches (ECMA-262 subset; unanchored ends get any-text).
 * The expression may use the rule `char` (one JSON string character). Returns 0, or -1 with
 * a message in msg. */
int gram_regex_to_gbnf(const char *pattern, size_t len, gram_sb *out, char *msg, size_t msgsz);

/* ---- utf8 ---- */
/* Decodes one code point from s[0..n); returns its length (0 when invalid or incomplete). */
size_t gram_utf8_decode(const char *s, size_t n, uint32_t *cp);

#endif
