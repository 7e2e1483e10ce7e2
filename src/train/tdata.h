/*
 * train/tdata — training data, read and checked: JSONL files for the encoder's joint objective
 * and for the LM, tokenized once at load; label sets; batches.
 *
 * Encoder lines: {"text": string, "intent": string, "slots": {"name": "span of the text"},
 * "group": string} -- intent, slots and group optional; "group" names paraphrases (lines with
 * the same group mean the same) for the embedding objective. Slot spans are found in the text
 * (longest first, each occurrence used once); a word's tag (BIO) is set on its first
 * sub-token, the others are ignored by the loss. LM lines: {"prompt": string, "completion":
 * string} (ChatML-formatted, loss on the completion and its <|im_end|>), or plain text lines
 * (loss on every token).
 *
 * Every problem is an error naming the file, the line and the reason: malformed JSON, a missing
 * or empty text, a slot span not in the text, an intent or slot the training data never has (in
 * dev / test files), an empty label set, an input longer than the model's context.
 */
#ifndef SHOAL_TRAIN_TDATA_H
#define SHOAL_TRAIN_TDATA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "tokenizer/tokenizer.h"

/* A set of names in index order (sorted when built from training data). */
typedef struct tlabels {
    char **name;
    int n;
} tlabels;

void tlabels_free(tlabels *l);
int tlabels_find(const tlabels *l, const char *name);

/* One example. */
typedef struct tex {
    int32_t *ids;       /* [n] tokens ([CLS] ... [SEP] for the encoder) */
    int32_t *tags;      /* [n] encoder: BIO tag per token or -1; LM: the target of each position or -1 */
    int n;
    int32_t intent;     /* -1: none */
    int group;          /* paraphrase group id, -1: none */
    int line;           /* 1-based line in its file */
} tex;

typedef struct tset {
    tex *v;
    int n, cap;
    int n_groups;
} tset;

void tset_free(tset *s);

/* Encoder data. With build, the intent and tag sets are made from this file (sorted; tags are
 * O, then B-x, I-x per slot name x in order); otherwise the given sets are used and an unknown
 * label is an error. max_len: the longest input allowed (the model's context). */
int tdata_load_enc(const char *path, const tok_vocab *v, tlabels *intents, tlabels *tags,
                   bool build, int max_len, tset *out, sh_err *err);

/* LM data: JSONL prompt / completion pairs, or plain text (one document per line). Sequences
 * longer than max_len are cut (plain text: split into pieces of max_len). */
int tdata_load_lm(const char *path, const tok_vocab *v, int max_len, tset *out, sh_err *err);

/* The LM's ChatML framing of a prompt (what the server's chat template produces for one user
 * message with the generation prompt): "<|im_start|>user\n" PROMPT "<|im_end|>\n<|im_start|>
 * assistant\n". Returns a malloc'd string. */
char *tdata_chatml_prompt(const char *prompt);

/* Texts of every line of a JSONL file's "prompt" and "completion" (or plain lines), for
 * building a vocabulary. Appends malloc'd strings to *texts (count in *n). */
int tdata_lm_texts(const char *path, char ***texts, size_t *n, sh_err *err);

/* Encoder vocabulary pruning: the tokens of every text of the files (tokenized with v), the
 * special tokens and every single character piece of v; returns old id -> new id (or -1) in
 * *map (malloc'd, tok_n_tokens(v) entries) and the kept count. */
int tdata_vocab_keep(const char *const *paths, int n_paths, const tok_vocab *v, int32_t **map,
                     int *n_kept, sh_err *err);

#endif
