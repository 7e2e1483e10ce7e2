/*
 * serve/esched — the scheduler of one encoder model: many concurrent short requests batched
 * into one forward pass.
 *
 * An encoder request is one forward pass with nothing to keep afterwards (no KV cache), so
 * there are no slots: one engine thread takes queued requests in priority order, then
 * arrival, and packs their inputs one after another (ragged: no padding work) into one
 * encode_run of at most the engine's token and input budgets. A request with more inputs
 * than fit continues in the next pass. Because each input is computed independently of what
 * shares its batch (engine/encode.h), a request's results do not depend on the load.
 *
 * The contract is the generation scheduler's (serve/sched.h): a bounded queue (requests and
 * queued tokens) refused with SUBMIT_QUEUE_FULL, a deadline checked at submit against the
 * measured speed (SUBMIT_DEADLINE), a queued request whose deadline passes ends with an error,
 * cancellation is seen before the next pass, priorities order the queue.
 *
 * Events go to the request's emit callback ON THE ENGINE THREAD (it must be quick and must not
 * call back into the scheduler): one ESCHED_EV_RESULT per input, in input order, then exactly
 * one ESCHED_EV_DONE for an accepted request. Result pointers are valid during the callback
 * only. Ownership: esched_submit copies the tokens; the scheduler and the submitter each hold
 * a reference to the request (esched_req_release); ctx must stay valid until DONE.
 */
#ifndef SHOAL_SERVE_ESCHED_H
#define SHOAL_SERVE_ESCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "engine/encode.h"
#include "metrics/metrics.h"
#include "serve/sched.h"

typedef enum esched_ev_kind { ESCHED_EV_RESULT, ESCHED_EV_DONE } esched_ev_kind;

typedef struct esched_event {
    esched_ev_kind kind;
    /* RESULT: input `index` of the request */
    int index;
    int n_tokens;
    const float *pooled;        /* [dim] as pooled (not normalized), when asked for */
    const float *seq_logits;    /* [seq_head.n_out] raw, when asked for */
    const float *tok_logits;    /* [n_tokens][tok_head.n_out] raw, when asked for */
    /* DONE */
    sched_finish finish;        /* STOP (all results delivered), CANCELLED, ERROR */
    bool deadline_exceeded;
    const char *error;
    int prompt_tokens;          /* tokens of every input */
    double queue_ms, total_ms;  /* from arrival: until its first pass started, until DONE */
} esched_event;

typedef void (*esched_emit_fn)(void *ctx, const esched_event *ev);

typedef struct esched_req esched_req;

typedef struct esched_req_params {
    int n_seq;                  /* inputs */
    const int32_t *tokens;      /* their tokens one after another (copied) */
    const int *n_tokens;        /* [n_seq] (copied) */
    unsigned want;              /* ENCODE_POOLED / ENCODE_SEQ_HEAD / ENCODE_TOK_HEAD */
    double arrival_ms;          /* http_now_ms() at arrival (0: now) */
    double deadline_ms;         /* relative to arrival; 0: none */
    int priority;               /* higher first */
    esched_emit_fn emit;
    void *ctx;
} esched_req_params;

typedef struct esched_params {
    int n_tokens;               /* tokens per pass (encode_params; default 2048) */
    int n_seqs;                 /* inputs per pass (default 256) */
    int n_threads;              /* 0: cores */
    int pooling;                /* encoder_pooling override, or -1 */
    int max_queue;              /* queued requests before 429 (default 64) */
    int64_t max_queued_tokens;  /* queued tokens before 429 (default 1 << 20) */
    const char *name;           /* model name for metrics labels */
    metrics *metrics;           /* may be NULL */
} esched_params;

typedef struct esched esched;

/* Creates the engine over m (borrowed) and starts the engine thread. */
esched *esched_init(const encoder_model *m, const esched_params *p, sh_err *err);

/* Stops the engine thread: queued requests end with SCHED_FINISH_CANCELLED. NULL is fine. */
void esched_free(esched *s);

/* Queues a request. On SUBMIT_OK *out holds the submitter's reference; otherwise nothing is
 * kept, emit is never called and err says why (SUBMIT_INVALID: an input empty, too long or
 * with a token out of range, or a head the model lacks). */
sched_submit_rc esched_submit(esched *s, const esched_req_params *p, esched_req **out, sh_err *err);

/* Asks the scheduler to stop the request; DONE (cancelled) follows before the next pass. */
void esched_cancel(esched_req *r);

/* Drops the submitter's reference. NULL is fine. */
void esched_req_release(esched_req *r);

typedef struct esched_stats {
    int queued;                 /* requests waiting or being run */
    int busy;                   /* 1 while a pass runs */
    double tok_s;               /* measured tokens per second (EWMA) */
} esched_stats;
void esched_get_stats(esched *s, esched_stats *st);

encoder_pooling esched_pooling(const esched *s);
const encoder_model *esched_model(const esched *s);

#endif
