/*
 * sampler/sampler — picks the next token from a row of logits.
 *
 * The chain follows llama.cpp's default order and semantics:
 *   1. penalties over the last penalty_last_n accepted tokens: a token seen c > 0 times has its
 *      logit divided by repeat_penalty when positive, multiplied when negative, then lowered
 *      by c * frequency_penalty + presence_penalty;
 *   2. top-k: keep the k largest logits (k <= 0: all);
 *   3. top-p: keep the smallest set of most likely tokens whose probabilities (softmax of the
 *      current logits) sum to at least top_p (1: all);
 *   4. min-p: keep tokens whose probability is at least min_p times the largest (0: all);
 *   5. temperature: logits / temp, then a draw from the softmax with the sampler's own PRNG
 *      (xoshiro256**, seeded by seed: same seed and same logits give the same tokens).
 * temp <= 0 is greedy decoding: the largest (penalised) logit, the lowest id on a tie, with
 * steps 2-4 skipped (they cannot change the argmax).
 *
 * Log-probabilities are computed from the raw logits (the model's distribution, before
 * penalties and filters): the chosen token's, and the n_probs most likely alternatives.
 *
 * Stop strings are the caller's business (it has the detokenizer); the sampler only keeps the
 * token history for the penalties. All buffers are allocated by sampler_init.
 */
#ifndef SHOAL_SAMPLER_SAMPLER_H
#define SHOAL_SAMPLER_SAMPLER_H

#include <stdint.h>

#include "core/err.h"

typedef struct sampler_params {
    float temp;              /* <= 0: greedy */
    int top_k;               /* <= 0: disabled */
    float top_p;             /* >= 1: disabled */
    float min_p;             /* <= 0: disabled */
    float repeat_penalty;    /* 1: disabled */
    float presence_penalty;  /* 0: disabled */
    float frequency_penalty; /* 0: disabled */
    int penalty_last_n;      /* window of accepted tokens the penalties look at; 0: none */
    uint64_t seed;
    int n_probs;             /* alternatives reported by sampler_sample; 0: none */
} sampler_params;

typedef struct sampler_prob {
    int32_t id;
    float logprob; /* natural log of the model's probability */
} sampler_prob;

typedef struct sampler_result {
    int32_t id;            /* the chosen token */
    float logprob;         /* its log-probability */
    int n_top;             /* entries in top (min(n_probs, n_vocab)) */
    const sampler_prob *top; /* most likely first; owned by the sampler, valid until the next
                              * sampler_sample */
} sampler_result;

typedef struct sampler sampler;

/* llama.cpp's defaults: temp 0.8, top_k 40, top_p 0.95, min_p 0.05, penalties off
 * (repeat 1, last_n 64), seed 0, n_probs 0. */
void sampler_params_default(sampler_params *p);

/* NULL with a message when a parameter is out of range (negative temp is allowed: greedy). */
sampler *sampler_init(const sampler_params *p, int n_vocab, sh_err *err);

void sampler_free(sampler *s); /* NULL is fine */

/* Forgets the token history and reseeds the PRNG with the original seed. */
void sampler_reset(sampler *s);

/* Adds a token to the history the penalties look at (prompt tokens too, if wanted). */
void sampler_accept(sampler *s, int32_t id);

/* Chooses a token from logits[n_vocab] (not modified). Does NOT accept it: call
 * sampler_accept with the token that is actually used. res may be NULL. */
int32_t sampler_sample(sampler *s, const float *logits, sampler_result *res);

/* Scores a given token instead of choosing one: res gets id's log-probability under the raw
 * logits[n_vocab] and the n_probs most likely alternatives, exactly as sampler_sample reports
 * them. The history and the PRNG are untouched. */
void sampler_score(sampler *s, const float *logits, int32_t id, sampler_result *res);

/* The argmax of logits[n], lowest index on a tie. */
int32_t sampler_argmax(const float *logits, int n);

#endif
