/*
 * serve/esched — see esched.h. The engine thread's loop, top to bottom:
 *   drop cancelled and expired requests -> pack the next inputs of the queue's head requests
 *   into one batch -> encode_run -> emit each input's results -> DONE for finished requests.
 */
#include "serve/esched.h"

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

struct esched_req {
    _Atomic int refs;
    _Atomic int cancelled;
    int32_t *tokens;            /* all inputs' tokens */
    int *n_tokens;              /* [n_seq] */
    int64_t *off;               /* [n_seq] first token of each input in tokens */
    int n_seq, next;            /* inputs; the next one to run */
    int64_t total_tokens, left_tokens;
    unsigned want;
    double arrival_ms, deadline_abs, start_ms;
    int priority;
    esched_emit_fn emit;
    void *ctx;
    struct esched_req *qnext;   /* queue link */
};

void esched_req_release(esched_req *r) {
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    free(r->tokens);
    free(r->n_tokens);
    free(r->off);
    free(r);
}

void esched_cancel(esched_req *r) {
    if (r) atomic_store(&r->cancelled, 1);
}

/* One input of the current batch. */
typedef struct entry {
    esched_req *r;
    int seq;                    /* its index in r */
    int tok0;                   /* its first token in the batch */
} entry;

struct esched {
    const encoder_model *m;
    encode_ctx *e;
    esched_params p;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping, started;
    esched_req *queue;          /* priority desc, then arrival */
    int n_queued;
    int64_t queued_tokens;      /* tokens of queued inputs not yet run */
    int busy;
    double tok_s;               /* EWMA of measured speed */

    int32_t *b_tok;             /* [n_tokens] */
    int *b_len;                 /* [n_seqs] */
    entry *b_ent;               /* [n_seqs] */
    unsigned b_want;

    metrics_series *m_e2e, *m_wait, *m_prompt, *m_cancel, *m_queue, *m_busy, *m_rej_full,
        *m_rej_deadline, *m_batch;
};

static double ewma(double old, double x) { return old == 0 ? x : 0.8 * old + 0.2 * x; }

/* ============================================================ events ===== */

static void done(esched *s, esched_req *r, sched_finish why, bool deadline, const char *error) {
    const double t = now_ms();
    esched_event ev = {.kind = ESCHED_EV_DONE, .finish = why, .deadline_exceeded = deadline,
                       .error = error, .prompt_tokens = (int)r->total_tokens};
    ev.queue_ms = (r->start_ms ? r->start_ms : t) - r->arrival_ms;
    ev.total_ms = t - r->arrival_ms;
    r->emit(r->ctx, &ev);
    metrics_observe(s->m_wait, ev.queue_ms / 1e3);
    metrics_observe(s->m_e2e, ev.total_ms / 1e3);
    if (why == SCHED_FINISH_STOP) metrics_inc(s->m_prompt, (double)r->total_tokens);
    if (why == SCHED_FINISH_CANCELLED) metrics_inc(s->m_cancel, 1);
}

/* Unlinks r from the queue (the caller holds the lock). */
static void unlink_req(esched *s, esched_req *r) {
    for (esched_req **pp = &s->queue; *pp; pp = &(*pp)->qnext)
        if (*pp == r) {
            *pp = r->qnext;
            s->n_queued--;
            s->queued_tokens -= r->left_tokens;
            metrics_set(s->m_queue, s->n_queued);
            return;
        }
    SH_ASSERT(!"request not in the queue");
}

/* ============================================================ one pass ===== */

/* Under the lock: takes cancelled and expired requests out of the queue (into *gone, linked
 * by qnext) and packs the next inputs into the batch. Returns the number of inputs. */
static int build(esched *s, esched_req **gone, int *n_tok) {
    const double t = now_ms();
    *gone = NULL;
    for (esched_req **pp = &s->queue; *pp;) {
        esched_req *r = *pp;
        bool drop = atomic_load(&r->cancelled) || (r->deadline_abs && t > r->deadline_abs);
        if (!drop) {
            pp = &r->qnext;
            continue;
        }
        *pp = r->qnext;
        s->n_queued--;
        s->queued_tokens -= r->left_tokens;
        r->qnext = *gone;
        *gone = r;
    }
    metrics_set(s->m_queue, s->n_queued);
    int n = 0, nt = 0;
    const int max_t = encode_n_tokens(s->e), max_s = encode_n_seqs(s->e);
    s->b_want = 0;
    for (esched_req *r = s->queue; r && n < max_s; r = r->qnext) {
        int k = r->next;
        while (k < r->n_seq && n < max_s && nt + r->n_tokens[k] <= max_t) {
            memcpy(s->b_tok + nt, r->tokens + r->off[k], (size_t)r->n_tokens[k] * sizeof(int32_t));
            s->b_len[n] = r->n_tokens[k];
            s->b_ent[n] = (entry){r, k, nt};
            nt += r->n_tokens[k];
            n++;
            k++;
        }
        if (k > r->next) {
            if (!r->start_ms) r->start_ms = t;
            s->b_want |= r->want;
        }
        if (k < r->n_seq) break; /* the rest of this request first, in the next pass */
    }
    *n_tok = nt;
    return n;
}

static void pass(esched *s) {
    esched_req *gone;
    int nt;
    pthread_mutex_lock(&s->mu);
    const int n = build(s, &gone, &nt);
    s->busy = n > 0;
    metrics_set(s->m_busy, s->busy);
    pthread_mutex_unlock(&s->mu);
    for (esched_req *r = gone, *next; r; r = next) {
        next = r->qnext;
        if (atomic_load(&r->cancelled)) done(s, r, SCHED_FINISH_CANCELLED, false, NULL);
        else done(s, r, SCHED_FINISH_ERROR, true, "the deadline passed while the request was queued");
        esched_req_release(r);
    }
    if (n == 0) return;

    encode_batch b = {.n_seq = n, .tokens = s->b_tok, .n_tokens = s->b_len, .want = s->b_want};
    sh_err err = {{0}};
    const double t0 = now_ms();
    const int rc = encode_run(s->e, &b, &err);
    const double dt = now_ms() - t0;
    if (rc == 0 && dt > 0) s->tok_s = ewma(s->tok_s, nt / (dt / 1e3));
    metrics_observe(s->m_batch, nt);
    /* results, and DONE for each request whose last input was in this pass */
    for (int i = 0; i < n; i++) {
        const entry *en = &s->b_ent[i];
        esched_req *r = en->r;
        const bool last = en->seq == r->n_seq - 1;
        if (rc == 0 && !atomic_load(&r->cancelled)) {
            esched_event ev = {.kind = ESCHED_EV_RESULT, .index = en->seq, .n_tokens = s->b_len[i]};
            if (r->want & ENCODE_POOLED) ev.pooled = encode_pooled(s->e, i);
            if (r->want & ENCODE_SEQ_HEAD) ev.seq_logits = encode_seq_logits(s->e, i);
            if (r->want & ENCODE_TOK_HEAD) ev.tok_logits = encode_tok_logits(s->e, en->tok0);
            r->emit(r->ctx, &ev);
        }
        pthread_mutex_lock(&s->mu);
        r->next = en->seq + 1;
        r->left_tokens -= s->b_len[i];
        s->queued_tokens -= s->b_len[i];
        const bool finished = last || rc != 0;
        if (finished) unlink_req(s, r);
        pthread_mutex_unlock(&s->mu);
        if (finished) {
            if (rc) done(s, r, SCHED_FINISH_ERROR, false, err.msg);
            else if (atomic_load(&r->cancelled)) done(s, r, SCHED_FINISH_CANCELLED, false, NULL);
            else done(s, r, SCHED_FINISH_STOP, false, NULL);
            esched_req_release(r);
            /* a failed pass ends every request in it: skip its other inputs */
            while (rc && i + 1 < n && s->b_ent[i + 1].r == r) i++;
        }
    }
    pthread_mutex_lock(&s->mu);
    s->busy = 0;
    metrics_set(s->m_busy, 0);
    pthread_mutex_unlock(&s->mu);
}

static void *engine_thread(void *arg) {
    esched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && !s->queue) pthread_cond_wait(&s->cv, &s->mu);
        const bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping) break;
        pass(s);
    }
    pthread_mutex_lock(&s->mu);
    esched_req *q = s->queue;
    s->queue = NULL;
    s->n_queued = 0;
    s->queued_tokens = 0;
    pthread_mutex_unlock(&s->mu);
    while (q) {
        esched_req *next = q->qnext;
        done(s, q, SCHED_FINISH_CANCELLED, false, NULL);
        esched_req_release(q);
        q = next;
    }
    return NULL;
}

/* ============================================================ submit ===== */

sched_submit_rc esched_submit(esched *s, const esched_req_params *p, esched_req **out, sh_err *err) {
    *out = NULL;
    const encoder_model *m = s->m;
    if (p->n_seq < 1) return sh_errf(err, "no inputs"), SUBMIT_INVALID;
    if ((p->want & ENCODE_SEQ_HEAD) && !m->seq_head.n_out)
        return sh_errf(err, "the model has no sequence classification head"), SUBMIT_INVALID;
    if ((p->want & ENCODE_TOK_HEAD) && !m->tok_head.n_out)
        return sh_errf(err, "the model has no token classification head"), SUBMIT_INVALID;
    if ((p->want & ENCODE_POOLED) && encode_pooling(s->e) == ENCODER_POOL_NONE)
        return sh_errf(err, "the model's pooling is none: no pooled vector"), SUBMIT_INVALID;
    int64_t total = 0;
    for (int i = 0; i < p->n_seq; i++) {
        if (p->n_tokens[i] < 1 || p->n_tokens[i] > m->hp.n_ctx_train)
            return sh_errf(err, "input %d has %d tokens; this model reads 1..%d", i, p->n_tokens[i],
                           m->hp.n_ctx_train), SUBMIT_TOO_LONG;
        total += p->n_tokens[i];
    }
    for (int64_t t = 0; t < total; t++)
        if (p->tokens[t] < 0 || p->tokens[t] >= m->hp.n_vocab)
            return sh_errf(err, "token id %d is not in the vocabulary (%d tokens)", p->tokens[t],
                           m->hp.n_vocab), SUBMIT_INVALID;
    esched_req *r = calloc(1, sizeof *r);
    if (r) {
        r->tokens = malloc((size_t)total * sizeof(int32_t));
        r->n_tokens = malloc((size_t)p->n_seq * sizeof(int));
        r->off = malloc((size_t)p->n_seq * sizeof(int64_t));
    }
    if (!r || !r->tokens || !r->n_tokens || !r->off) {
        if (r) atomic_store(&r->refs, 1);
        esched_req_release(r);
        return sh_errf(err, "out of memory"), SUBMIT_INVALID;
    }
    memcpy(r->tokens, p->tokens, (size_t)total * sizeof(int32_t));
    memcpy(r->n_tokens, p->n_tokens, (size_t)p->n_seq * sizeof(int));
    for (int i = 0, o = 0; i < p->n_seq; o += p->n_tokens[i], i++) r->off[i] = o;
    r->n_seq = p->n_seq;
    r->total_tokens = r->left_tokens = total;
    r->want = p->want;
    r->arrival_ms = p->arrival_ms ? p->arrival_ms : now_ms();
    r->deadline_abs = p->deadline_ms > 0 ? r->arrival_ms + p->deadline_ms : 0;
    r->priority = p->priority;
    r->emit = p->emit;
    r->ctx = p->ctx;
    atomic_store(&r->refs, 2);

    sched_submit_rc rc = SUBMIT_OK;
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        rc = SUBMIT_SHUTTING_DOWN;
        sh_errf(err, "the server is shutting down");
    } else if (s->n_queued >= s->p.max_queue || s->queued_tokens + total > s->p.max_queued_tokens) {
        rc = SUBMIT_QUEUE_FULL;
        sh_errf(err, "the queue is full (%d requests, %lld tokens waiting)", s->n_queued,
                (long long)s->queued_tokens);
        metrics_inc(s->m_rej_full, 1);
    } else if (r->deadline_abs) {
        int64_t ahead = 0;
        for (esched_req *q = s->queue; q; q = q->qnext)
            if (q->priority >= r->priority) ahead += q->left_tokens;
        const double est = s->tok_s > 0 ? (double)(ahead + total) / s->tok_s * 1e3 : 0;
        const double left = r->deadline_abs - now_ms();
        if (est > left) {
            rc = SUBMIT_DEADLINE;
            sh_errf(err, "deadline_ms %.0f cannot be met: estimated %.2f ms (%lld tokens ahead, %lld "
                         "of its own, at %.0f tokens/s)", p->deadline_ms, est, (long long)ahead,
                    (long long)total, s->tok_s);
            metrics_inc(s->m_rej_deadline, 1);
        }
    }
    if (rc == SUBMIT_OK) {
        esched_req **pp = &s->queue;
        while (*pp && (*pp)->priority >= r->priority) pp = &(*pp)->qnext;
        r->qnext = *pp;
        *pp = r;
        s->n_queued++;
        s->queued_tokens += total;
        metrics_set(s->m_queue, s->n_queued);
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != SUBMIT_OK) {
        atomic_store(&r->refs, 1);
        esched_req_release(r);
        return rc;
    }
    *out = r;
    return SUBMIT_OK;
}

/* ============================================================ lifetime ===== */

static void register_metrics(esched *s) {
    metrics *m = s->p.metrics;
    if (!m) return;
    char l[200], esc[128];
    snprintf(l, sizeof l, "model=\"%s\"", metrics_label_escape(s->p.name ? s->p.name : "", esc, sizeof esc));
    const double *b = metrics_latency_buckets;
    size_t nb = metrics_latency_n_buckets;
    s->m_e2e = metrics_histogram(m, "shoal_request_duration_seconds", "Time from arrival to the last event of a request.", l, b, nb);
    s->m_wait = metrics_histogram(m, "shoal_queue_wait_seconds", "Time a request waited for a slot.", l, b, nb);
    s->m_prompt = metrics_counter(m, "shoal_prompt_tokens_total", "Prompt tokens of finished requests.", l);
    s->m_cancel = metrics_counter(m, "shoal_cancellations_total", "Requests cancelled because the client went away.", l);
    s->m_busy = metrics_gauge(m, "shoal_busy_slots", "Slots holding a request.", l);
    s->m_queue = metrics_gauge(m, "shoal_queue_depth", "Requests waiting for a slot.", l);
    static const double tb[] = {1, 4, 16, 64, 256, 1024, 4096, 16384};
    s->m_batch = metrics_histogram(m, "shoal_encoder_batch_tokens", "Tokens per encoder forward pass (all inputs packed together).", l, tb, sizeof tb / sizeof tb[0]);
    char lr[260];
    snprintf(lr, sizeof lr, "%s,reason=\"queue_full\"", l);
    s->m_rej_full = metrics_counter(m, "shoal_rejections_total", "Requests refused at submission.", lr);
    snprintf(lr, sizeof lr, "%s,reason=\"deadline\"", l);
    s->m_rej_deadline = metrics_counter(m, "shoal_rejections_total", "Requests refused at submission.", lr);
}

/* One pass over a short input: the weights are touched (no page faults on the first request)
 * and the deadline estimate has a measured speed. */
static void warm_up(esched *s) {
    const int n = s->m->hp.n_ctx_train < 16 ? s->m->hp.n_ctx_train : 16;
    for (int i = 0; i < n; i++) s->b_tok[i] = i % s->m->hp.n_vocab;
    s->b_len[0] = n;
    encode_batch b = {.n_seq = 1, .tokens = s->b_tok, .n_tokens = s->b_len};
    for (int k = 0; k < 2; k++) {
        const double t0 = now_ms();
        if (encode_run(s->e, &b, NULL) == 0) s->tok_s = n / ((now_ms() - t0) / 1e3);
    }
}

esched *esched_init(const encoder_model *m, const esched_params *p, sh_err *err) {
    esched *s = calloc(1, sizeof *s);
    if (!s) return sh_errf(err, "out of memory"), NULL;
    s->m = m;
    s->p = *p;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (s->p.max_queue <= 0) s->p.max_queue = 64;
    if (s->p.max_queued_tokens <= 0) s->p.max_queued_tokens = (int64_t)1 << 20;
    encode_params ep;
    encode_params_default(&ep);
    ep.n_tokens = p->n_tokens;
    ep.n_seqs = p->n_seqs;
    ep.n_threads = p->n_threads;
    ep.pooling = p->pooling;
    if (!(s->e = encode_init(m, &ep, err))) {
        esched_free(s);
        return NULL;
    }
    s->b_tok = malloc((size_t)encode_n_tokens(s->e) * sizeof *s->b_tok);
    s->b_len = malloc((size_t)encode_n_seqs(s->e) * sizeof *s->b_len);
    s->b_ent = malloc((size_t)encode_n_seqs(s->e) * sizeof *s->b_ent);
    if (!s->b_tok || !s->b_len || !s->b_ent) {
        sh_errf(err, "out of memory");
        esched_free(s);
        return NULL;
    }
    register_metrics(s);
    warm_up(s);
    if (pthread_create(&s->thread, NULL, engine_thread, s) != 0) {
        sh_errf(err, "cannot start the encoder thread");
        esched_free(s);
        return NULL;
    }
    s->started = true;
    return s;
}

void esched_free(esched *s) {
    if (!s) return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    encode_free(s->e);
    free(s->b_tok);
    free(s->b_len);
    free(s->b_ent);
    free(s);
}

void esched_get_stats(esched *s, esched_stats *st) {
    pthread_mutex_lock(&s->mu);
    st->queued = s->n_queued;
    st->busy = s->busy;
    st->tok_s = s->tok_s;
    pthread_mutex_unlock(&s->mu);
}

encoder_pooling esched_pooling(const esched *s) { return encode_pooling(s->e); }
const encoder_model *esched_model(const esched *s) { return s->m; }
