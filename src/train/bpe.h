/*
 * train/bpe — a byte-level BPE vocabulary learned from a corpus, in the form GGUF files and
 * llama.cpp's "gpt2" tokenizer use: 256 byte tokens (GPT-2's byte-to-character mapping), one
 * token per merge in the order learned (the merge list is the ranks), then the special
 * tokens as control tokens. Words are split with GPT-2's pre-tokenizer before counting.
 *
 * Deterministic: the most frequent pair wins, ties broken by the lower (left, right) token
 * ids. Ownership: bpe_vocab owns its strings (bpe_free).
 */
#ifndef SHOAL_TRAIN_BPE_H
#define SHOAL_TRAIN_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "gguf/gguf_writer.h"

typedef struct bpe_vocab {
    char **tokens;      /* [n] token text (GPT-2 mapped UTF-8) */
    int32_t *types;     /* [n] 1 normal, 3 control */
    int n;
    char **merges;      /* [n_merges] "left right" */
    int n_merges;
    int32_t eos, bos;   /* ids of the special tokens used as EOS (<|im_end|>) / BOS (<|endoftext|>) */
} bpe_vocab;

/* Learns merges from texts until the vocabulary has vocab_size tokens (specials included) or
 * no pair occurs twice. specials: e.g. "<|endoftext|>", "<|im_start|>", "<|im_end|>". */
int bpe_train(const char *const *texts, size_t n_texts, int vocab_size,
              const char *const *specials, int n_specials, bpe_vocab *out, sh_err *err);

void bpe_free(bpe_vocab *v);

/* Writes the tokenizer keys: model "gpt2", pre "gpt-2", tokens, token types, merges, BOS /
 * EOS / EOT ids (add_bos false), and a ChatML chat template. */
void bpe_write_keys(gguf_writer *w, const bpe_vocab *v);

#endif
