/*
 * nlu — what turns an encoder's numbers into language-understanding results: probabilities
 * from a head's logits, entities from per-token BIO tags, and the token sequence of a
 * query / document pair for a reranker. Shared by the server, the command line and the
 * trainer; no model or engine state.
 *
 * BIO decoding (nlu_bio_decode): a tagger labels every token, but a word's label is read from
 * its first sub-token only (the convention taggers are trained with), so a word is never split
 * between entities. Tags are "O", "B-X" (begins entity X), "I-X" (continues X); an "I-X" that
 * does not continue an X starts one, and a tag without a B- / I- prefix other than O is read as
 * I-X (IO tagging). An entity's text is the input from its first word's first byte to its last
 * word's last byte; its score is the mean probability of its words' tags.
 */
#ifndef SHOAL_NLU_NLU_H
#define SHOAL_NLU_NLU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "tokenizer/tokenizer.h"

/* probs[i] = softmax(logits)[i] for i < n (max subtracted first, sums in double). probs may be
 * logits. */
void nlu_softmax(const float *logits, int n, float *probs);

/* The index of the largest value (the first on a tie). */
int nlu_argmax(const float *x, int n);

typedef struct nlu_entity {
    char *label;            /* the tag without its B- / I- prefix (owned) */
    char *text;             /* the input bytes it covers (owned, NUL-terminated) */
    size_t start, end;      /* Unicode code point offsets in the input, end exclusive */
    size_t byte_start, byte_end; /* the same in bytes */
    float score;            /* mean probability of the words' tags */
} nlu_entity;

typedef struct nlu_entities {
    nlu_entity *v;
    size_t n, cap;
} nlu_entities;

/* Decodes the tags of n_tokens tokens of text[0..len): spans from tok_tokenize_spans, probs
 * [n_tokens][n_labels] per-token tag probabilities, labels[n_labels] the tag names. Special
 * tokens ([CLS], [SEP]) are skipped. Appends to out; -1 when memory runs out. */
int nlu_bio_decode(const char *text, size_t len, const tok_span *spans, size_t n_tokens,
                   const float *probs, int n_labels, const char *const *labels,
                   nlu_entities *out, sh_err *err);

void nlu_entities_free(nlu_entities *e); /* NULL is fine */

/* The token ids a reranker reads for (query, document), as llama-server builds them: with the
 * vocabulary's rerank template, "{query}" and "{document}" replaced and the result tokenized
 * with special tokens parsed; otherwise [BOS] query [EOS] [SEP] document [EOS], each marker
 * present as the vocabulary's add_bos / add_eos / add_sep flags say (EOS: the vocabulary's,
 * or SEP when it has none), texts tokenized without special parsing. Appends to out; -1 with
 * a message when the vocabulary lacks a needed token or memory runs out. */
int nlu_rerank_tokens(const tok_vocab *v, const char *query, const char *doc, tok_ids *out,
                      sh_err *err);

/* Makes the n tokens appended since `from` (and their spans, when spans is not NULL) fit an
 * encoder's context of n_ctx tokens: nothing to do when they fit; with truncate the first
 * n_ctx - 1 are kept, and the last token (the closing [SEP]); otherwise -1 with a message that
 * gives both lengths. */
int nlu_fit(tok_ids *ids, tok_spans *spans, size_t from, int n_ctx, bool truncate, sh_err *err);

/* The UTF-8 code points in s[0..n) (bytes that start no valid sequence count one each). */
size_t nlu_codepoints(const char *s, size_t n);

#endif
