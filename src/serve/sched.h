/*
 * serve/sched — the scheduler of one model: continuous batching over slots.
 *
 * One engine thread owns the model's engine (weights, KV cache) and n_slots slots. Requests
 * (token ids plus sampling settings) wait in a bounded queue ordered by priority, then arrival;
 * a free slot takes the next one. Every step is ONE engine_decode call holding
 *   - one token for every generating slot (decode), and
 *   - the next prompt chunk of slots still reading their prompt (prefill), chunks permitting,
 * so running streams keep flowing while a long prompt is read. Chunk boundaries are fixed by
 * absolute position (multiples of `chunk`), never by load, and the engine's arithmetic is per
 * sequence, so a request's tokens do not depend on what else is in the batch: greedy output
 * under any load equals the output of the same request alone.
 *
 * Prefix reuse: a slot keeps the KV of its last sequence; a new request goes to the free slot
 * whose cached tokens share the longest prefix with its prompt and skips recomputing it
 * (usage.prompt_tokens_details.cached_tokens).
 *
 * Real time: a request may carry a deadline; one that the scheduler estimates it cannot meet
 * (queue wait + prefill + generation at the measured speeds) is refused at submit, a queued
 * one whose deadline passes is dropped, and a running one stops at its deadline
 * (finish "length", deadline_exceeded set). Cancellation (client gone) is seen at the next
 * step. A full queue refuses at once.
 *
 * Events go to the request's emit callback ON THE ENGINE THREAD: it must be quick and must not
 * call back into the scheduler (write into a channel, append to a buffer).
 *
 * Ownership: sched_submit takes the request; the scheduler and the submitter each hold a
 * reference (sched_req_release). The emit callback's ctx must stay valid until the final
 * SCHED_EV_DONE event, which is always delivered exactly once for an accepted request.
 */
#ifndef SHOAL_SERVE_SCHED_H
#define SHOAL_SERVE_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "engine/engine.h"
#include "metrics/metrics.h"
#include "model/model.h"
#include "sampler/sampler.h"
#include "tokenizer/tokenizer.h"

#define SCHED_MAX_STOP 4
#define SCHED_MAX_TOP  20
#define SCHED_ECHO_CHUNK 32 /* prompt positions with logits per step (echo + logprobs) */

typedef enum sched_finish {
    SCHED_FINISH_NONE = 0,
    SCHED_FINISH_STOP,      /* end-of-generation token or a stop string */
    SCHED_FINISH_LENGTH,    /* max_tokens, the context, or the deadline */
    SCHED_FINISH_CANCELLED, /* the client went away */
    SCHED_FINISH_ERROR,     /* see the event's message */
} sched_finish;

typedef enum sched_ev_kind { SCHED_EV_TOKEN, SCHED_EV_DONE } sched_ev_kind;

typedef struct sched_event {
    sched_ev_kind kind;
    /* TOKEN */
    int32_t token;
    const char *text;           /* text to emit now (may be empty: held for a stop string) */
    size_t text_len;
    float logprob;
    bool prompt;                /* an echoed prompt token (echo requests), sent before any
                                 * generated one; text is its piece of the prompt */
    bool no_logprob;            /* the first prompt token: nothing before it to score it */
    int n_top;
    const sampler_prob *top;    /* most likely alternatives */
    /* DONE */
    sched_finish finish;
    bool deadline_exceeded;
    const char *error;          /* SCHED_FINISH_ERROR */
    int prompt_tokens, completion_tokens, cached_tokens;
    double queue_ms, ttft_ms, total_ms; /* from arrival */
    const float *embedding;     /* embed requests: n_embd floats, unit length (valid during
                                 * the callback only) */
    int n_embd;
} sched_event;

typedef void (*sched_emit_fn)(void *ctx, const sched_event *ev);

typedef struct sched_req sched_req;

typedef struct sched_req_params {
    const int32_t *prompt;      /* copied */
    int n_prompt;
    sampler_params sp;
    int max_tokens;             /* -1: until end of generation or the context; 0: read the
                                 * prompt only (echo scoring) */
    const char *const *stop;    /* copied; up to SCHED_MAX_STOP */
    int n_stop;
    bool embed;                 /* an embedding: the prompt is read, its final hidden states
                                 * (after the output norm) mean-pooled and normalised to unit
                                 * length; DONE carries the vector. No tokens are generated. */
    bool logprobs;              /* report each token's log-probability */
    bool eog_event;             /* the end-of-generation token gets a TOKEN event too (no text) */
    bool echo;                  /* first a TOKEN event (prompt set) for each prompt token; with
                                 * logprobs each carries log p(token | the tokens before it),
                                 * computed in chunks of SCHED_ECHO_CHUNK positions with logits
                                 * (so such a prompt is never served from the prefix cache) */
    int n_top;                  /* alternatives per token (logprobs), 0..SCHED_MAX_TOP */
    const struct gram *grammar; /* constrain every generated token to it (borrowed: it must
                                 * outlive the request; NULL: free text). Logprobs stay the
                                 * model's own (before the mask). The request ends (finish STOP)
                                 * as soon as the grammar is complete. */
    const char *trigger;        /* with grammar: lazy — free text until the generated text
                                 * starts (after white space) with this, then constrained from
                                 * the trigger on; text that can no longer open it stays free.
                                 * Copied. NULL: the grammar applies from the first token. */
    const int32_t *bias_ids;    /* logit_bias: bias[i] added to token bias_ids[i]'s logit */
    const float *bias;          /* (copied; ids checked against the vocabulary at submit) */
    int n_bias;
    double arrival_ms;          /* http_now_ms() when the request arrived */
    double deadline_ms;         /* relative to arrival; 0: none */
    int priority;               /* higher first */
    sched_emit_fn emit;
    void *ctx;
} sched_req_params;

typedef struct sched_params {
    int n_slots;                /* concurrent sequences (default 8) */
    int n_ctx;                  /* positions per slot (default min(model, 4096)) */
    int n_threads;              /* engine threads (0: cores) */
    int max_queue;              /* queued requests before 429 (default 64) */
    int chunk;                  /* prefill chunk (default 128) */
    int n_batch;                /* entries per step (default max(chunk + n_slots, 256)) */
    bool kv_f32;
    const char *name;           /* model name for metrics labels */
    metrics *metrics;           /* may be NULL */
} sched_params;

typedef struct sched sched;

/* Creates the engine over m and v (both borrowed; they must outlive the scheduler) and starts
 * the engine thread. */
sched *sched_init(const model *m, const tok_vocab *v, const sched_params *p, sh_err *err);

/* Stops the engine thread: queued and running requests end with SCHED_FINISH_CANCELLED.
 * NULL is fine. */
void sched_free(sched *s);

typedef enum sched_submit_rc {
    SUBMIT_OK = 0,
    SUBMIT_QUEUE_FULL,           /* 429 */
    SUBMIT_DEADLINE,             /* 503: cannot be met; message says the estimate */
    SUBMIT_TOO_LONG,             /* 400: prompt + 1 does not fit the context */
    SUBMIT_INVALID,              /* 400: bad parameters */
    SUBMIT_SHUTTING_DOWN,        /* 503 */
} sched_submit_rc;

/* Queues a request. On SUBMIT_OK *out holds the submitter's reference. Otherwise nothing is
 * kept, emit is never called, and err says why. */
sched_submit_rc sched_submit(sched *s, const sched_req_params *p, sched_req **out, sh_err *err);

/* Asks the scheduler to stop the request (client gone); DONE follows within one step. */
void sched_cancel(sched_req *r);

/* Drops the submitter's reference. NULL is fine. */
void sched_req_release(sched_req *r);

/* State for /health, /metrics and /slots. */
typedef struct sched_stats {
    int n_slots, busy_slots, queued;
    double pp_tok_s, tg_step_ms; /* measured speeds (EWMA) used by deadline estimates */
} sched_stats;
void sched_get_stats(sched *s, sched_stats *st);

const model *sched_model(const sched *s);
const tok_vocab *sched_vocab(const sched *s);
int sched_n_ctx(const sched *s);

#endif
