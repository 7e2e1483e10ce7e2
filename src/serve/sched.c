/*
 * serve/sched — see sched.h. The engine thread's loop, top to bottom:
 *   admit queued requests into free slots -> build one batch (decode tokens + prompt chunks)
 *   -> engine_decode -> sample, detokenize, check stop strings and limits, emit events.
 */
#include "serve/sched.h"

#include "grammar/grammar.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ============================================================ requests ===== */

struct sched_req {
    _Atomic int refs;
    _Atomic int cancelled;
    int32_t *prompt;            /* [n_prompt] */
    int n_prompt;
    sampler_params sp;
    int max_tokens;
    char *stop[SCHED_MAX_STOP];
    size_t stop_len[SCHED_MAX_STOP];
    int n_stop;
    int n_top;
    bool logprobs, embed, echo, eog_event;
    double arrival_ms, deadline_abs; /* deadline_abs 0: none */
    const gram *grammar;        /* borrowed, or NULL */
    char *trigger;              /* lazy grammar: its opening text, or NULL */
    int32_t *bias_ids;          /* [n_bias] */
    float *bias;
    int n_bias;
    int priority;
    uint64_t seqno;             /* arrival order, breaks priority ties */
    sched_emit_fn emit;
    void *ctx;
    struct sched_req *next;     /* queue link */
};

void sched_req_release(sched_req *r) {
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    free(r->prompt);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->trigger);
    free(r->bias_ids);
    free(r->bias);
    free(r);
}

void sched_cancel(sched_req *r) {
    if (r) atomic_store(&r->cancelled, 1);
}

/* ============================================================ slots ===== */

typedef struct slot {
    int id;                     /* the engine sequence this slot owns */
    sched_req *req;             /* NULL: free */
    int32_t *cache;             /* [n_ctx] tokens whose K/V the engine holds for this seq */
    int n_cache;                /* == engine_seq_len(e, id) */
    int n_done;                 /* prompt tokens of req in the cache */
    int chunk_end;              /* prefill: end of the chunk in this step's batch */
    bool gen;                   /* prompt read, generating */
    int32_t last;               /* last sampled token: fed in the next step */
    int n_gen;
    int cached_tokens;          /* prompt tokens reused from the previous sequence */
    int batch_idx;              /* entry with logits in this step's batch, or -1 */
    int batch_start;            /* first entry of this slot in this step's batch */
    int in_batch;               /* entries this slot has in this step's batch */
    float *emb;                 /* [dim] embed requests: sum of normalised hidden states */
    sampler *smp;
    gram_matcher *gm;           /* the request's grammar state, or NULL */
    int gstate;                 /* GRAM_OFF / GRAM_WATCH (lazy, not yet opened) / GRAM_ON */
    tok_detok detok;
    tok_buf text;               /* generated text so far */
    size_t sent;                /* bytes of text already emitted */
    double t_admit, t_first;
    uint64_t last_used;
} slot;

struct sched {
    const model *m;
    const tok_vocab *v;
    engine *e;
    sched_params p;
    int n_vocab;
    slot *slots;                /* [n_slots] */
    uint64_t use_clock;

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    sched_req *queue;           /* sorted: priority desc, then seqno */
    int n_queued;
    uint64_t next_seqno;
    int busy;

    gram_vocab *gv;             /* the vocabulary's index for grammars (built on first use) */
    pthread_mutex_t gv_mu;
    bool gv_failed;
    uint32_t *mask;             /* [(n_vocab + 31) / 32] the allowed tokens of this step */
    float *scratch;             /* [n_vocab] logits with the mask and biases applied */

    /* batch buffers, [n_batch] each */
    int32_t *b_tok, *b_pos, *b_seq;
    uint8_t *b_logits;

    /* measured speeds for deadline estimates (EWMA; 0 until measured) */
    double pp_tok_s, tg_step_ms, service_ms;

    /* metrics (NULL when no registry) */
    metrics_series *m_ttft, *m_tpot, *m_e2e, *m_wait, *m_prompt, *m_gen, *m_cached, *m_cancel,
        *m_busy, *m_queue, *m_rej_full, *m_rej_deadline;
};

enum { GRAM_OFF, GRAM_WATCH, GRAM_ON };

static double ewma(double old, double x) { return old == 0 ? x : 0.8 * old + 0.2 * x; }

/* ============================================================ events ===== */

static void emit_text(slot *sl, int32_t token, const sampler_result *res, size_t upto) {
    sched_req *r = sl->req;
    sched_event ev = {.kind = SCHED_EV_TOKEN, .token = token};
    ev.text = sl->text.data ? sl->text.data + sl->sent : "";
    ev.text_len = upto > sl->sent ? upto - sl->sent : 0;
    if (res) {
        ev.logprob = res->logprob;
        ev.n_top = res->n_top < r->n_top ? res->n_top : r->n_top;
        ev.top = res->top;
    }
    sl->sent = upto > sl->sent ? upto : sl->sent;
    r->emit(r->ctx, &ev);
}

/* Echo: prompt token i as an event, its text from the prompt's own detokenizer (sl->detok and
 * sl->text hold the prompt until it is read). res: its score, or NULL (no logprobs asked, or
 * the first token, which nothing before it scores). -1 when the detokenizer fails. */
static int emit_prompt(slot *sl, int i, const sampler_result *res, sh_err *err) {
    sched_req *r = sl->req;
    size_t plen = 0;
    tok_piece(sl->detok.v, r->prompt[i], false, &plen);
    /* a control token (BOS) has no text: leave the first piece's space strip for real text */
    if (plen && tok_detok_push(&sl->detok, r->prompt[i], &sl->text, err)) return -1;
    sched_event ev = {.kind = SCHED_EV_TOKEN, .token = r->prompt[i], .prompt = true};
    ev.text = sl->text.data ? sl->text.data + sl->sent : "";
    ev.text_len = sl->text.n - sl->sent;
    sl->sent = sl->text.n;
    ev.no_logprob = !res;
    if (res) {
        ev.logprob = res->logprob;
        ev.n_top = res->n_top < r->n_top ? res->n_top : r->n_top;
        ev.top = res->top;
    }
    r->emit(r->ctx, &ev);
    return 0;
}

/* Echo: the prompt is read. Bytes of an unfinished character go out as they are, then the text
 * and the detokenizer start over for the generated tokens (which continue the prompt, so keep
 * their leading space). */
static int end_prompt(const sched *s, slot *sl, sh_err *err) {
    if (tok_detok_flush(&sl->detok, &sl->text, err)) return -1;
    if (sl->text.n > sl->sent) {
        sched_event ev = {.kind = SCHED_EV_TOKEN, .token = -1, .prompt = true, .no_logprob = true};
        ev.text = sl->text.data + sl->sent;
        ev.text_len = sl->text.n - sl->sent;
        sl->req->emit(sl->req->ctx, &ev);
    }
    sl->text.n = 0;
    sl->sent = 0;
    tok_detok_init(&sl->detok, s->v, false);
    sl->detok.first = false;
    return 0;
}

/* Ends the slot's request: flushes held text (unless a stop string cut it), sends DONE, frees
 * the slot. The K/V of the sequence stays for prefix reuse. */
static void finish(sched *s, slot *sl, sched_finish why, bool deadline, const char *error) {
    sched_req *r = sl->req;
    double t = now_ms();
    if (why != SCHED_FINISH_CANCELLED && why != SCHED_FINISH_ERROR && sl->sent < sl->text.n)
        emit_text(sl, -1, NULL, sl->text.n);
    sched_event ev = {.kind = SCHED_EV_DONE, .finish = why, .deadline_exceeded = deadline,
                      .error = error, .prompt_tokens = r->n_prompt,
                      .completion_tokens = sl->n_gen, .cached_tokens = sl->cached_tokens};
    if (r->embed && why == SCHED_FINISH_STOP) {
        ev.embedding = sl->emb;
        ev.n_embd = s->m->hp.dim;
    }
    ev.queue_ms = sl->t_admit - r->arrival_ms;
    ev.ttft_ms = sl->n_gen ? sl->t_first - r->arrival_ms : 0;
    ev.total_ms = t - r->arrival_ms;
    r->emit(r->ctx, &ev);

    metrics_observe(s->m_wait, ev.queue_ms / 1e3);
    if (sl->n_gen) metrics_observe(s->m_ttft, ev.ttft_ms / 1e3);
    if (sl->n_gen > 1) metrics_observe(s->m_tpot, (t - sl->t_first) / 1e3 / (sl->n_gen - 1));
    metrics_observe(s->m_e2e, ev.total_ms / 1e3);
    metrics_inc(s->m_prompt, r->n_prompt);
    metrics_inc(s->m_gen, sl->n_gen);
    metrics_inc(s->m_cached, sl->cached_tokens);
    if (why == SCHED_FINISH_CANCELLED) metrics_inc(s->m_cancel, 1);
    if (why != SCHED_FINISH_CANCELLED) s->service_ms = ewma(s->service_ms, t - sl->t_admit);

    sl->req = NULL;
    sl->gen = false;
    sampler_free(sl->smp);
    sl->smp = NULL;
    gram_matcher_free(sl->gm);
    sl->gm = NULL;
    sched_req_release(r);
    pthread_mutex_lock(&s->mu);
    s->busy--;
    metrics_set(s->m_busy, s->busy);
    pthread_mutex_unlock(&s->mu);
}

/* Ends a request that never reached a slot. Caller holds no lock. */
static void finish_unstarted(sched *s, sched_req *r, sched_finish why, bool deadline,
                             const char *error) {
    sched_event ev = {.kind = SCHED_EV_DONE, .finish = why, .deadline_exceeded = deadline,
                      .error = error, .prompt_tokens = r->n_prompt};
    ev.queue_ms = ev.total_ms = now_ms() - r->arrival_ms;
    r->emit(r->ctx, &ev);
    if (why == SCHED_FINISH_CANCELLED) metrics_inc(s->m_cancel, 1);
    sched_req_release(r);
}

/* ============================================================ admission ===== */

/* Tokens at the start of a and b that agree. */
static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb) {
    int n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Puts r into the free slot that shares the longest prefix with its prompt (least recently
 * used among equals). Called on the engine thread without the lock. */
static int assign(sched *s, sched_req *r, sh_err *err) {
    slot *best = NULL;
    int best_common = -1;
    for (int i = 0; i < s->p.n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->req) continue;
        int c = common_prefix(sl->cache, sl->n_cache, r->prompt, r->n_prompt);
        if (c > best_common || (c == best_common && sl->last_used < best->last_used)) {
            best = sl;
            best_common = c;
        }
    }
    SH_ASSERT(best != NULL);
    /* The last prompt token is always computed again: its logits give the first token. */
    int keep = best_common < r->n_prompt ? best_common : r->n_prompt - 1;
    if (r->embed) { /* hidden states of cached positions are not kept: read the whole input */
        keep = 0;
        memset(best->emb, 0, (size_t)s->m->hp.dim * sizeof(float));
    }
    if (r->echo && r->logprobs) keep = 0; /* nor are their logits: score the whole prompt */
    sampler *smp = sampler_init(&r->sp, s->n_vocab, err);
    if (!smp) return -1;
    gram_matcher *gm = NULL;
    if (r->grammar) {
        if (!s->gv || !(gm = gram_matcher_init(r->grammar, s->gv, err))) {
            if (!s->gv) sh_errf(err, "the grammar index of this vocabulary could not be built");
            sampler_free(smp);
            return -1;
        }
    }
    best->gm = gm;
    best->gstate = !gm ? GRAM_OFF : r->trigger ? GRAM_WATCH : GRAM_ON;
    engine_seq_truncate(s->e, best->id, keep);
    best->n_cache = keep;
    best->n_done = keep;
    best->cached_tokens = keep;
    best->req = r;
    best->gen = false;
    best->n_gen = 0;
    best->smp = smp;
    for (int i = 0; i < r->n_prompt; i++) sampler_accept(smp, r->prompt[i]);
    tok_detok_init(&best->detok, s->v, false);
    best->text.n = 0;
    best->sent = 0;
    best->t_admit = now_ms();
    best->last_used = ++s->use_clock;
    if (r->echo && !r->logprobs) { /* nothing to compute for the echo: send it all now */
        for (int i = 0; i < r->n_prompt; i++)
            if (emit_prompt(best, i, NULL, err)) return -1;
        if (end_prompt(s, best, err)) return -1;
    }
    return 0;
}

/* Moves queued requests into free slots. Requests cancelled or past their deadline while
 * waiting end here. */
static void admit(sched *s) {
    for (;;) {
        pthread_mutex_lock(&s->mu);
        sched_req *r = NULL;
        if (s->queue && s->busy < s->p.n_slots) {
            r = s->queue;
            s->queue = r->next;
            s->n_queued--;
            s->busy++;
            metrics_set(s->m_queue, s->n_queued);
            metrics_set(s->m_busy, s->busy);
        }
        pthread_mutex_unlock(&s->mu);
        if (!r) return;
        const char *why = NULL;
        sched_finish f = SCHED_FINISH_NONE;
        bool dl = false;
        sh_err err = {{0}};
        if (atomic_load(&r->cancelled)) f = SCHED_FINISH_CANCELLED;
        else if (r->deadline_abs && now_ms() > r->deadline_abs)
            f = SCHED_FINISH_ERROR, dl = true, why = "the deadline passed while the request was queued";
        else if (assign(s, r, &err)) f = SCHED_FINISH_ERROR, why = err.msg;
        if (f != SCHED_FINISH_NONE) {
            pthread_mutex_lock(&s->mu);
            s->busy--;
            metrics_set(s->m_busy, s->busy);
            pthread_mutex_unlock(&s->mu);
            finish_unstarted(s, r, f, dl, why);
        }
    }
}

/* ============================================================ one step ===== */

/* Longest suffix of text[0..n) (starting at or after `from`) that is a proper prefix of a stop
 * string: those bytes are held back until the next token decides. */
static size_t held_back(const sched_req *r, const char *text, size_t n, size_t from) {
    size_t hold = 0;
    for (int k = 0; k < r->n_stop; k++) {
        size_t L = r->stop_len[k];
        for (size_t h = L - 1; h > hold; h--) {
            if (h > n - from) continue;
            if (memcmp(text + n - h, r->stop[k], h) == 0) {
                hold = h;
                break;
            }
        }
    }
    return hold;
}

/* A lazy grammar: has the text so far opened its trigger (then the grammar takes over, fed the
 * text from the trigger on), or can it no longer (then the text stays free)? */
static void watch_trigger(slot *sl) {
    const char *t = sl->req->trigger, *p = sl->text.data;
    size_t n = sl->text.n, tl = strlen(t), i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\n' || p[i] == '\t' || p[i] == '\r')) i++;
    size_t k = n - i < tl ? n - i : tl;
    if (memcmp(p + i, t, k) != 0) {
        sl->gstate = GRAM_OFF;
    } else if (n - i >= tl) {
        sl->gstate = gram_matcher_accept_bytes(sl->gm, p + i, n - i) == 0 ? GRAM_ON : GRAM_OFF;
    }
}

/* The next token of a slot from its logits row: the logit biases and the grammar's mask
 * applied to a copy, logprobs (res) from the model's own logits. */
static int32_t choose(sched *s, slot *sl, const float *logits, sampler_result *res) {
    sched_req *r = sl->req;
    bool masked = sl->gstate == GRAM_ON;
    if (!masked && !r->n_bias) return sampler_sample(sl->smp, logits, res);
    float *x = s->scratch;
    memcpy(x, logits, (size_t)s->n_vocab * sizeof *x);
    for (int i = 0; i < r->n_bias; i++) x[r->bias_ids[i]] += r->bias[i];
    if (masked) {
        int allowed = gram_matcher_mask(sl->gm, s->mask);
        if (allowed <= 0) return allowed == -2 ? -2 : -1;
        for (int w = 0; w < (s->n_vocab + 31) / 32; w++) {
            uint32_t m = s->mask[w];
            if (m == 0xffffffffu) continue;
            int base = w * 32, lim = base + 32 < s->n_vocab ? base + 32 : s->n_vocab;
            for (int i = base; i < lim; i++)
                if (!(m >> (i - base) & 1)) x[i] = -INFINITY;
        }
    }
    int32_t id = sampler_sample(sl->smp, x, NULL);
    if (res) sampler_score(sl->smp, logits, id, res);
    return id;
}

/* Takes the sampled token of a slot: text, stop strings, limits. */
static void on_token(sched *s, slot *sl, int32_t id, const sampler_result *res) {
    sched_req *r = sl->req;
    sl->n_gen++;
    if (sl->n_gen == 1) sl->t_first = now_ms();
    sampler_accept(sl->smp, id);
    if (sl->gstate == GRAM_ON && !tok_is_eog(s->v, id) && gram_matcher_accept(sl->gm, id)) {
        finish(s, sl, SCHED_FINISH_ERROR, false, "grammar: the sampled token is not allowed (a bug)");
        return;
    }
    if (tok_is_eog(s->v, id)) {
        if (r->eog_event) emit_text(sl, id, res, sl->sent); /* no new text: held text stays held */
        finish(s, sl, SCHED_FINISH_STOP, false, NULL);
        return;
    }
    size_t before = sl->text.n;
    sh_err err = {{0}};
    if (tok_detok_push(&sl->detok, id, &sl->text, &err)) {
        finish(s, sl, SCHED_FINISH_ERROR, false, err.msg);
        return;
    }
    /* A stop string that ends in the new text: emit up to it and stop. */
    size_t look = before >= 64 ? before - 64 : 0;
    look = look > sl->sent ? look : sl->sent;
    size_t cut = SIZE_MAX;
    for (int k = 0; k < r->n_stop; k++) {
        const char *hit = memmem(sl->text.data + look, sl->text.n - look, r->stop[k], r->stop_len[k]);
        if (hit && (size_t)(hit - sl->text.data) < cut) cut = (size_t)(hit - sl->text.data);
    }
    if (sl->gstate == GRAM_WATCH) watch_trigger(sl);
    if (cut != SIZE_MAX) {
        emit_text(sl, id, res, cut);
        sl->text.n = cut;
        finish(s, sl, SCHED_FINISH_STOP, false, NULL);
        return;
    }
    size_t safe = sl->text.n - held_back(r, sl->text.data, sl->text.n, sl->sent);
    emit_text(sl, id, res, safe);

    if (sl->gstate == GRAM_ON && gram_matcher_done(sl->gm)) finish(s, sl, SCHED_FINISH_STOP, false, NULL);
    else if (r->max_tokens > 0 && sl->n_gen >= r->max_tokens) finish(s, sl, SCHED_FINISH_LENGTH, false, NULL);
    else if (sl->n_cache + 1 >= engine_n_ctx(s->e)) finish(s, sl, SCHED_FINISH_LENGTH, false, NULL);
    else if (r->deadline_abs && now_ms() > r->deadline_abs) finish(s, sl, SCHED_FINISH_LENGTH, true, NULL);
    else sl->last = id;
}

/* Adds the output-normed hidden state of each of the slot's entries in this batch to emb. */
static void pool_hidden(sched *s, slot *sl) {
    const model_hparams *hp = &s->m->hp;
    for (int k = 0; k < sl->in_batch; k++) {
        const float *h = engine_hidden(s->e, sl->batch_start + k);
        double ss = 0;
        for (int j = 0; j < hp->dim; j++) ss += (double)h[j] * h[j];
        float scale = (float)(1.0 / sqrt(ss / hp->dim + hp->norm_eps));
        for (int j = 0; j < hp->dim; j++) sl->emb[j] += h[j] * scale * s->m->output_norm[j];
    }
}

/* Mean over the input's tokens, then unit length; DONE carries it. */
static void finish_embed(sched *s, slot *sl) {
    int dim = s->m->hp.dim;
    double ss = 0;
    for (int j = 0; j < dim; j++) {
        sl->emb[j] /= (float)sl->req->n_prompt;
        ss += (double)sl->emb[j] * sl->emb[j];
    }
    float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    for (int j = 0; j < dim; j++) sl->emb[j] *= inv;
    finish(s, sl, SCHED_FINISH_STOP, false, NULL);
}

/* Echo + logprobs: the chunk of prompt positions from..n_done just ran with logits for each;
 * position p's logits score prompt token p + 1. Emits those tokens (token 0 first, unscored)
 * and ends the prompt's text after the last one. -1 when the slot was finished on an error. */
static int score_chunk(sched *s, slot *sl, int from) {
    sched_req *r = sl->req;
    sh_err err = {{0}};
    int rc = from == 0 ? emit_prompt(sl, 0, NULL, &err) : 0;
    for (int p = from; rc == 0 && p < sl->n_done && p + 1 < r->n_prompt; p++) {
        sampler_result res;
        sampler_score(sl->smp, engine_logits(s->e, sl->batch_start + (p - from)), r->prompt[p + 1], &res);
        rc = emit_prompt(sl, p + 1, &res, &err);
    }
    if (rc == 0 && sl->n_done == r->n_prompt) rc = end_prompt(s, sl, &err);
    if (rc) finish(s, sl, SCHED_FINISH_ERROR, false, err.msg);
    return rc;
}

static void step(sched *s) {
    int n = 0, n_prefill = 0, n_decode = 0;
    bool all_hidden = false; /* an embedding's chunk is in the batch */
    bool scoring = false;    /* an echo + logprobs chunk is in the batch (one per step: the
                              * engine holds n_slots + SCHED_ECHO_CHUNK rows of logits) */
    const int C = s->p.chunk;
    /* cancellations first: their slots are freed before the batch is built */
    for (int i = 0; i < s->p.n_slots; i++) {
        slot *sl = &s->slots[i];
        sl->batch_idx = -1;
        sl->in_batch = 0;
        if (sl->req && atomic_load(&sl->req->cancelled)) finish(s, sl, SCHED_FINISH_CANCELLED, false, NULL);
    }
    for (int i = 0; i < s->p.n_slots; i++) { /* decode: one token per generating slot */
        slot *sl = &s->slots[i];
        if (!sl->req || !sl->gen) continue;
        s->b_tok[n] = sl->last;
        s->b_pos[n] = sl->n_cache;
        s->b_seq[n] = sl->id;
        s->b_logits[n] = 1;
        sl->batch_idx = n++;
        sl->in_batch = 1;
        n_decode++;
    }
    for (int i = 0; i < s->p.n_slots; i++) { /* prefill: the next aligned chunk, if it fits */
        slot *sl = &s->slots[i];
        if (!sl->req || sl->gen) continue;
        sched_req *r = sl->req;
        bool score = r->echo && r->logprobs;
        if (score && scoring) continue;
        int align = score && SCHED_ECHO_CHUNK < C ? SCHED_ECHO_CHUNK : C;
        int end = (sl->n_done / align + 1) * align;
        if (end > r->n_prompt) end = r->n_prompt;
        int take = end - sl->n_done;
        if (n + take > s->p.n_batch) continue;
        for (int k = 0; k < take; k++) {
            s->b_tok[n + k] = r->prompt[sl->n_done + k];
            s->b_pos[n + k] = sl->n_done + k;
            s->b_seq[n + k] = sl->id;
            s->b_logits[n + k] = score;
        }
        scoring |= score;
        if (end == r->n_prompt && !r->embed) {
            s->b_logits[n + take - 1] = 1;
            sl->batch_idx = n + take - 1;
        }
        sl->batch_start = n;
        sl->chunk_end = end;
        sl->in_batch = take;
        all_hidden |= r->embed;
        n += take;
        n_prefill += take;
    }
    if (n == 0) return;

    engine_batch b = {.n = n, .token = s->b_tok, .pos = s->b_pos, .seq = s->b_seq,
                      .logits = s->b_logits, .all_hidden = all_hidden};
    sh_err err = {{0}};
    double t0 = now_ms();
    int rc = engine_decode(s->e, &b, &err);
    double dt = now_ms() - t0;
    if (rc == 0) {
        if (n_prefill == 0) s->tg_step_ms = ewma(s->tg_step_ms, dt);
        else if (n_prefill >= 16) s->pp_tok_s = ewma(s->pp_tok_s, n_prefill / (dt / 1e3));
    }
    for (int i = 0; i < s->p.n_slots; i++) {
        slot *sl = &s->slots[i];
        if (!sl->req || !sl->in_batch) continue;
        if (rc) {
            finish(s, sl, SCHED_FINISH_ERROR, false, err.msg);
            continue;
        }
        if (sl->gen) {
            sl->cache[sl->n_cache++] = sl->last;
        } else {
            sched_req *r = sl->req;
            int from = sl->n_done;
            memcpy(sl->cache + sl->n_cache, r->prompt + sl->n_done,
                   (size_t)(sl->chunk_end - sl->n_done) * sizeof(int32_t));
            sl->n_cache = sl->n_done = sl->chunk_end;
            if (r->echo && r->logprobs && score_chunk(s, sl, from)) continue;
            if (sl->req->embed) {
                pool_hidden(s, sl);
                if (sl->n_done == sl->req->n_prompt) finish_embed(s, sl);
                continue;
            }
            if (sl->n_done == r->n_prompt) sl->gen = true;
            if (sl->gen && r->max_tokens == 0) { /* echo scoring: nothing to generate */
                finish(s, sl, SCHED_FINISH_LENGTH, false, NULL);
                continue;
            }
        }
        if (sl->batch_idx < 0) continue;
        const float *logits = engine_logits(s->e, sl->batch_idx);
        sampler_result res;
        bool lp = sl->req->logprobs;
        int32_t id = choose(s, sl, logits, lp ? &res : NULL);
        if (id < 0) {
            finish(s, sl, SCHED_FINISH_ERROR, false,
                   id == -2 ? "grammar: too ambiguous to follow (its token mask exceeded the work budget)"
                            : "grammar: no token can continue the output");
            continue;
        }
        on_token(s, sl, id, lp ? &res : NULL);
    }
}

/* ============================================================ the engine thread ===== */

static void *engine_thread(void *arg) {
    sched *s = arg;
    for (;;) {
        admit(s);
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->busy == 0 && !s->queue) pthread_cond_wait(&s->cv, &s->mu);
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping) break;
        step(s);
    }
    /* shutting down: everything still here ends as cancelled */
    for (int i = 0; i < s->p.n_slots; i++)
        if (s->slots[i].req) finish(s, &s->slots[i], SCHED_FINISH_CANCELLED, false, NULL);
    pthread_mutex_lock(&s->mu);
    sched_req *q = s->queue;
    s->queue = NULL;
    s->n_queued = 0;
    pthread_mutex_unlock(&s->mu);
    while (q) {
        sched_req *n = q->next;
        finish_unstarted(s, q, SCHED_FINISH_CANCELLED, false, NULL);
        q = n;
    }
    return NULL;
}

/* ============================================================ submit ===== */

/* The grammar index is built once per scheduler, when the first constrained request comes
 * (a vocabulary's trie: a few ms and a few MB, paid only by models that use grammars). */
static bool gram_vocab_ready(sched *s) {
    pthread_mutex_lock(&s->gv_mu);
    if (!s->gv && !s->gv_failed) {
        sh_err e = {{0}};
        s->gv = gram_vocab_init(s->v, &e);
        s->gv_failed = !s->gv;
        if (!s->gv) fprintf(stderr, "shoal: grammar index: %s\n", e.msg);
    }
    bool ok = s->gv != NULL;
    pthread_mutex_unlock(&s->gv_mu);
    return ok;
}

sched_submit_rc sched_submit(sched *s, const sched_req_params *p, sched_req **out, sh_err *err) {
    *out = NULL;
    if (p->n_prompt <= 0) return sh_errf(err, "the prompt is empty"), SUBMIT_INVALID;
    if (p->n_prompt + (p->embed ? 0 : 1) > engine_n_ctx(s->e))
        return sh_errf(err, "the prompt has %d tokens; this model's context holds %d (prompt + at "
                            "least one generated token)", p->n_prompt, engine_n_ctx(s->e)),
               SUBMIT_TOO_LONG;
    for (int i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= s->n_vocab)
            return sh_errf(err, "token %d of the prompt (%d) is not in the vocabulary (%d tokens)",
                           i, p->prompt[i], s->n_vocab), SUBMIT_INVALID;
    if (p->n_stop > SCHED_MAX_STOP || p->n_top < 0 || p->n_top > SCHED_MAX_TOP)
        return sh_errf(err, "too many stop strings or alternatives"), SUBMIT_INVALID;
    for (int i = 0; i < p->n_bias; i++)
        if (p->bias_ids[i] < 0 || p->bias_ids[i] >= s->n_vocab)
            return sh_errf(err, "logit_bias: token %d is not in the vocabulary (%d tokens)", p->bias_ids[i],
                           s->n_vocab), SUBMIT_INVALID;

    sched_req *r = calloc(1, sizeof *r);
    if (!r || !(r->prompt = malloc((size_t)p->n_prompt * sizeof(int32_t)))) {
        free(r);
        return sh_errf(err, "out of memory"), SUBMIT_INVALID;
    }
    memcpy(r->prompt, p->prompt, (size_t)p->n_prompt * sizeof(int32_t));
    r->n_prompt = p->n_prompt;
    r->sp = p->sp;
    r->sp.n_probs = p->n_top;
    r->max_tokens = p->max_tokens;
    r->n_top = p->n_top;
    r->logprobs = p->logprobs || p->n_top > 0;
    r->embed = p->embed;
    r->echo = p->echo && !p->embed;
    r->eog_event = p->eog_event;
    r->grammar = p->grammar;
    atomic_store(&r->refs, 1); /* until queued: released on the errors below */
    if (p->grammar && !gram_vocab_ready(s)) {
        sched_req_release(r);
        return sh_errf(err, "the grammar index of this vocabulary could not be built"), SUBMIT_INVALID;
    }
    if (p->grammar && p->trigger && !(r->trigger = strdup(p->trigger))) {
        sched_req_release(r);
        return sh_errf(err, "out of memory"), SUBMIT_INVALID;
    }
    if (p->n_bias > 0) {
        r->bias_ids = malloc((size_t)p->n_bias * sizeof *r->bias_ids);
        r->bias = malloc((size_t)p->n_bias * sizeof *r->bias);
        if (!r->bias_ids || !r->bias) {
            sched_req_release(r);
            return sh_errf(err, "out of memory"), SUBMIT_INVALID;
        }
        memcpy(r->bias_ids, p->bias_ids, (size_t)p->n_bias * sizeof *r->bias_ids);
        memcpy(r->bias, p->bias, (size_t)p->n_bias * sizeof *r->bias);
        r->n_bias = p->n_bias;
    }
    for (int i = 0; i < p->n_stop; i++) {
        r->stop_len[r->n_stop] = strlen(p->stop[i]);
        if (!r->stop_len[r->n_stop]) continue;
        r->stop[r->n_stop] = strdup(p->stop[i]);
        if (r->stop[r->n_stop]) r->n_stop++;
    }
    r->arrival_ms = p->arrival_ms ? p->arrival_ms : now_ms();
    r->deadline_abs = p->deadline_ms > 0 ? r->arrival_ms + p->deadline_ms : 0;
    r->priority = p->priority;
    r->emit = p->emit;
    r->ctx = p->ctx;
    atomic_store(&r->refs, 2);

    pthread_mutex_lock(&s->mu);
    sched_submit_rc rc = SUBMIT_OK;
    if (s->stopping) {
        rc = SUBMIT_SHUTTING_DOWN;
        sh_errf(err, "the server is shutting down");
    } else if (s->n_queued >= s->p.max_queue) {
        rc = SUBMIT_QUEUE_FULL;
        sh_errf(err, "the queue is full (%d requests waiting for %d slots)", s->n_queued, s->p.n_slots);
        metrics_inc(s->m_rej_full, 1);
    } else if (r->deadline_abs) {
        /* wait: requests ahead of this one beyond the free slots, each a service time / slots */
        int ahead = 0;
        for (sched_req *q = s->queue; q; q = q->next) ahead += q->priority >= r->priority;
        int free_slots = s->p.n_slots - s->busy;
        double wait = ahead + 1 > free_slots ? (ahead + 1 - free_slots) * s->service_ms / s->p.n_slots : 0;
        double prefill = s->pp_tok_s > 0 ? r->n_prompt / s->pp_tok_s * 1e3 : 0;
        int gen = r->max_tokens > 0 ? r->max_tokens : 1;
        double est = wait + prefill + gen * s->tg_step_ms;
        double left = r->deadline_abs - now_ms();
        if (est > left) {
            rc = SUBMIT_DEADLINE;
            sh_errf(err, "deadline_ms %.0f cannot be met: estimated %.1f ms (queue %.1f, prompt %.1f, "
                         "%d tokens at %.2f ms)", p->deadline_ms, est, wait, prefill, gen, s->tg_step_ms);
            metrics_inc(s->m_rej_deadline, 1);
        }
    }
    if (rc == SUBMIT_OK) {
        r->seqno = s->next_seqno++;
        sched_req **pp = &s->queue;
        while (*pp && (*pp)->priority >= r->priority) pp = &(*pp)->next;
        r->next = *pp;
        *pp = r;
        s->n_queued++;
        metrics_set(s->m_queue, s->n_queued);
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != SUBMIT_OK) {
        atomic_store(&r->refs, 1);
        sched_req_release(r);
        return rc;
    }
    *out = r;
    return SUBMIT_OK;
}

/* ============================================================ lifetime ===== */

static void register_metrics(sched *s) {
    metrics *m = s->p.metrics;
    if (!m) return;
    char l[200], esc[128];
    snprintf(l, sizeof l, "model=\"%s\"", metrics_label_escape(s->p.name ? s->p.name : "", esc, sizeof esc));
    const double *b = metrics_latency_buckets;
    size_t nb = metrics_latency_n_buckets;
    s->m_ttft = metrics_histogram(m, "shoal_time_to_first_token_seconds", "Time from arrival to the first generated token.", l, b, nb);
    s->m_tpot = metrics_histogram(m, "shoal_time_per_output_token_seconds", "Mean time between generated tokens of a request.", l, b, nb);
    s->m_e2e = metrics_histogram(m, "shoal_request_duration_seconds", "Time from arrival to the last event of a request.", l, b, nb);
    s->m_wait = metrics_histogram(m, "shoal_queue_wait_seconds", "Time a request waited for a slot.", l, b, nb);
    s->m_prompt = metrics_counter(m, "shoal_prompt_tokens_total", "Prompt tokens of finished requests.", l);
    s->m_gen = metrics_counter(m, "shoal_generated_tokens_total", "Generated tokens.", l);
    s->m_cached = metrics_counter(m, "shoal_prefix_cache_tokens_total", "Prompt tokens reused from a slot's cache instead of recomputed.", l);
    s->m_cancel = metrics_counter(m, "shoal_cancellations_total", "Requests cancelled because the client went away.", l);
    s->m_busy = metrics_gauge(m, "shoal_busy_slots", "Slots holding a request.", l);
    s->m_queue = metrics_gauge(m, "shoal_queue_depth", "Requests waiting for a slot.", l);
    char lr[260];
    snprintf(lr, sizeof lr, "%s,reason=\"queue_full\"", l);
    s->m_rej_full = metrics_counter(m, "shoal_rejections_total", "Requests refused at submission.", lr);
    snprintf(lr, sizeof lr, "%s,reason=\"deadline\"", l);
    s->m_rej_deadline = metrics_counter(m, "shoal_rejections_total", "Requests refused at submission.", lr);
}

/* One prefill chunk and one decode step on slot 0, then forgotten: touches the weights (so the
 * first request does not pay for page faults) and gives the deadline estimates real speeds. */
static void warm_up(sched *s) {
    int n = s->p.chunk < 32 ? s->p.chunk : 32;
    if (n + 2 > engine_n_ctx(s->e)) return;
    for (int i = 0; i < n; i++) {
        s->b_tok[i] = i % s->n_vocab;
        s->b_pos[i] = i;
        s->b_seq[i] = 0;
        s->b_logits[i] = i == n - 1;
    }
    engine_batch b = {.n = n, .token = s->b_tok, .pos = s->b_pos, .seq = s->b_seq, .logits = s->b_logits};
    double t0 = now_ms();
    if (engine_decode(s->e, &b, NULL) == 0) s->pp_tok_s = n / ((now_ms() - t0) / 1e3);
    b.n = 1;
    s->b_pos[0] = n;
    s->b_logits[0] = 1;
    t0 = now_ms();
    if (engine_decode(s->e, &b, NULL) == 0) s->tg_step_ms = now_ms() - t0;
    engine_seq_truncate(s->e, 0, 0);
}

sched *sched_init(const model *m, const tok_vocab *v, const sched_params *p, sh_err *err) {
    sched *s = calloc(1, sizeof *s);
    if (!s) {
        sh_errf(err, "out of memory");
        return NULL;
    }
    s->m = m;
    s->v = v;
    s->p = *p;
    if (s->p.n_slots <= 0) s->p.n_slots = 8;
    if (s->p.n_ctx <= 0) s->p.n_ctx = m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096;
    if (s->p.max_queue <= 0) s->p.max_queue = 64;
    if (s->p.chunk <= 0) s->p.chunk = 128;
    if (s->p.chunk > s->p.n_ctx) s->p.chunk = s->p.n_ctx;
    if (s->p.n_batch <= 0) s->p.n_batch = s->p.chunk + s->p.n_slots > 256 ? s->p.chunk + s->p.n_slots : 256;
    if (s->p.n_batch < s->p.chunk + s->p.n_slots) s->p.n_batch = s->p.chunk + s->p.n_slots;
    s->n_vocab = m->hp.n_vocab;
    if (tok_n_tokens(v) > s->n_vocab) {
        sh_errf(err, "the tokenizer has %d tokens but the model only %d", tok_n_tokens(v), s->n_vocab);
        free(s);
        return NULL;
    }
    engine_params ep;
    engine_params_default(&ep);
    ep.n_ctx = s->p.n_ctx;
    ep.n_seq = s->p.n_slots;
    ep.n_batch = s->p.n_batch;
    ep.n_logits = s->p.n_slots + SCHED_ECHO_CHUNK;
    ep.n_threads = s->p.n_threads;
    ep.kv_f32 = s->p.kv_f32;
    s->e = engine_init(m, &ep, err);
    s->slots = calloc((size_t)s->p.n_slots, sizeof *s->slots);
    size_t nb = (size_t)s->p.n_batch;
    s->b_tok = malloc(nb * sizeof(int32_t));
    s->b_pos = malloc(nb * sizeof(int32_t));
    s->b_seq = malloc(nb * sizeof(int32_t));
    s->b_logits = malloc(nb);
    s->mask = malloc((size_t)(s->n_vocab + 31) / 32 * sizeof(uint32_t));
    s->scratch = malloc((size_t)s->n_vocab * sizeof(float));
    int ok = s->e && s->slots && s->b_tok && s->b_pos && s->b_seq && s->b_logits && s->mask && s->scratch;
    for (int i = 0; ok && i < s->p.n_slots; i++) {
        s->slots[i].id = i;
        s->slots[i].cache = malloc((size_t)s->p.n_ctx * sizeof(int32_t));
        s->slots[i].emb = malloc((size_t)m->hp.dim * sizeof(float));
        ok = s->slots[i].cache && s->slots[i].emb;
    }
    if (!ok) {
        if (s->e) sh_errf(err, "out of memory for %d slots", s->p.n_slots);
        s->stopping = true;
        sched_free(s);
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->gv_mu, NULL);
    register_metrics(s);
    warm_up(s);
    if (pthread_create(&s->thread, NULL, engine_thread, s) != 0) {
        sh_errf(err, "cannot start the engine thread");
        s->stopping = true;
        sched_free(s);
        return NULL;
    }
    return s;
}

void sched_free(sched *s) {
    if (!s) return;
    if (!s->stopping) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->gv_mu);
    }
    for (int i = 0; s->slots && i < s->p.n_slots; i++) {
        free(s->slots[i].cache);
        free(s->slots[i].emb);
        tok_buf_free(&s->slots[i].text);
        sampler_free(s->slots[i].smp);
        gram_matcher_free(s->slots[i].gm);
    }
    free(s->slots);
    gram_vocab_free(s->gv);
    free(s->mask);
    free(s->scratch);
    engine_free(s->e);
    free(s->b_tok);
    free(s->b_pos);
    free(s->b_seq);
    free(s->b_logits);
    free(s);
}

void sched_get_stats(sched *s, sched_stats *st) {
    pthread_mutex_lock(&s->mu);
    st->n_slots = s->p.n_slots;
    st->busy_slots = s->busy;
    st->queued = s->n_queued;
    st->pp_tok_s = s->pp_tok_s;
    st->tg_step_ms = s->tg_step_ms;
    pthread_mutex_unlock(&s->mu);
}

const model *sched_model(const sched *s) { return s->m; }
const tok_vocab *sched_vocab(const sched *s) { return s->v; }
int sched_n_ctx(const sched *s) { return engine_n_ctx(s->e); }
