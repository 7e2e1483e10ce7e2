/*
 * serve/encode_api — /v1/embeddings (decoders and encoders), /v1/rerank and /v1/classify
 * (encoders) on a node (server_int.h).
 *
 * An encoder request is tokenized on the HTTP thread (with token spans when a tagger's
 * entities are wanted), submitted to the model's batching scheduler (serve/esched.h) as one
 * request of all its inputs, and answered when its DONE event arrives; the HTTP thread polls
 * the socket meanwhile and cancels the request when the client hangs up. A decoder's
 * embeddings go through its generation scheduler, one request per input (serve/sched.h).
 */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/enc_json.h"
#include "api/oai_req.h"
#include "nlu/nlu.h"
#include "serve/server_int.h"

#define INVALID "invalid_request_error"

static void l2_normalize(float *v, int n) {
    double ss = 0;
    for (int k = 0; k < n; k++) ss += (double)v[k] * v[k];
    const float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    for (int k = 0; k < n; k++) v[k] *= inv;
}

/* Waits on cv until *flag, with 5 ms steps in which cancel(arg) runs once the client is gone. */
static void wait_until(pthread_mutex_t *mu, pthread_cond_t *cv, const bool *flag,
                       http_request *req, void (*cancel)(void *), void *arg) {
    while (!*flag) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 5 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(cv, mu, &ts);
        if (!*flag && http_req_client_gone(req)) cancel(arg);
    }
}

/* ============================================================ decoders: embeddings ===== */

typedef struct dec_job {
    struct dec_set *set;
    int index;
    sched_req *req;
} dec_job;

typedef struct dec_set {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;                /* submitted requests whose DONE has not come */
    bool none_pending;          /* pending == 0 (what wait_until waits for) */
    int dim;
    float *vecs;                /* [n][dim] */
    int prompt_tokens;
    bool failed;
    char error[256];
    dec_job *jobs;
    size_t n_jobs;
} dec_set;

static void dec_emit(void *ctx, const sched_event *ev) {
    dec_job *j = ctx;
    dec_set *ds = j->set;
    if (ev->kind != SCHED_EV_DONE) return;
    pthread_mutex_lock(&ds->mu);
    if (ev->embedding) {
        memcpy(ds->vecs + (size_t)j->index * ds->dim, ev->embedding, (size_t)ds->dim * sizeof(float));
        ds->prompt_tokens += ev->prompt_tokens;
    } else if (!ds->failed) {
        ds->failed = true;
        snprintf(ds->error, sizeof ds->error, "%s", ev->error ? ev->error : srv_finish_name(ev->finish));
    }
    ds->pending--;
    ds->none_pending = ds->pending == 0;
    pthread_cond_broadcast(&ds->cv);
    pthread_mutex_unlock(&ds->mu);
}

static void dec_cancel_all(void *arg) {
    dec_set *ds = arg;
    for (size_t i = 0; i < ds->n_jobs; i++) sched_cancel(ds->jobs[i].req);
}

/* The tokens of input i: its ids, or its text tokenized with BOS as the vocabulary says. */
static int input_tokens(const tok_vocab *v, const oai_request *r, size_t i, bool parse_special,
                        tok_ids *ids, oai_error *e) {
    if (r->input_ids) {
        for (size_t k = 0; k < r->n_input_ids[i]; k++) {
            if (r->input_ids[i][k] >= tok_n_tokens(v))
                return oai_errorf(e, 400, INVALID, "input", "input %zu: token %d is not in the vocabulary (%d tokens)",
                                  i, r->input_ids[i][k], tok_n_tokens(v));
            if (ids->n == ids->cap) {
                ids->cap = ids->cap ? ids->cap * 2 : 64;
                int32_t *p = realloc(ids->ids, ids->cap * sizeof *p);
                if (!p) return oai_errorf(e, 500, "server_error", NULL, "out of memory");
                ids->ids = p;
            }
            ids->ids[ids->n++] = r->input_ids[i][k];
        }
        return 0;
    }
    sh_err err = {{0}};
    if (tok_tokenize(v, r->inputs[i], strlen(r->inputs[i]), true, parse_special, ids, &err))
        return oai_errorf(e, 500, "server_error", NULL, "tokenizer: %s", err.msg);
    return 0;
}

static json_t *embeddings_json(const srv_model *sm, const oai_request *r, float *vecs, int dim,
                               int prompt_tokens) {
    json_t *data = json_array();
    int out = r->dimensions > 0 && r->dimensions < dim ? r->dimensions : dim;
    for (size_t i = 0; i < r->n_inputs; i++) {
        float *v = vecs + i * (size_t)dim;
        if (out < dim) { /* the first `dimensions` components, at unit length again */
            double ss = 0;
            for (int k = 0; k < out; k++) ss += (double)v[k] * v[k];
            float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
            for (int k = 0; k < out; k++) v[k] *= inv;
        }
        json_array_append_new(data, encj_embedding((int)i, v, out, r->base64));
    }
    return json_pack("{s:s, s:o, s:s, s:o}", "object", "list", "data", data, "model", sm->name,
                     "usage", encj_usage(prompt_tokens));
}

/* Mean over the input's tokens of the final hidden state after the output norm, unit length
 * (sched.h: embed requests). Returns the HTTP status (e filled unless 200). */
static int decoder_embeddings(srv_model *sm, const oai_request *r, http_request *req,
                              http_response *resp, oai_error *e, int *prompt_tokens) {
    const size_t n = r->n_inputs;
    dec_set ds = {.dim = sm->m->hp.dim, .none_pending = true};
    pthread_mutex_init(&ds.mu, NULL);
    pthread_cond_init(&ds.cv, NULL);
    ds.vecs = malloc(n * (size_t)ds.dim * sizeof(float));
    ds.jobs = calloc(n, sizeof *ds.jobs);
    int status = 200;
    if (!ds.vecs || !ds.jobs) status = (oai_errorf(e, 500, "server_error", NULL, "out of memory"), 500);
    for (size_t i = 0; status == 200 && i < n; i++) {
        tok_ids ids = {0};
        ds.jobs[i] = (dec_job){.set = &ds, .index = (int)i};
        ds.n_jobs = i + 1;
        if (input_tokens(sm->v, r, i, false, &ids, e)) {
            status = e->status;
            tok_ids_free(&ids);
            break;
        }
        sched_req_params rp = {.prompt = ids.ids, .n_prompt = (int)ids.n, .embed = true,
                               .arrival_ms = http_req_start_ms(req), .priority = r->priority,
                               .deadline_ms = r->has_deadline ? r->deadline_ms : 0,
                               .emit = dec_emit, .ctx = &ds.jobs[i]};
        sampler_params_default(&rp.sp);
        for (;;) {
            sh_err err = {{0}};
            pthread_mutex_lock(&ds.mu);
            ds.pending++;
            ds.none_pending = false;
            pthread_mutex_unlock(&ds.mu);
            sched_submit_rc rc = sched_submit(sm->sc, &rp, &ds.jobs[i].req, &err);
            if (rc == SUBMIT_OK) break;
            pthread_mutex_lock(&ds.mu);
            ds.none_pending = --ds.pending == 0;
            /* a full queue with this request's own inputs in it: wait for them, then retry */
            const bool retry = rc == SUBMIT_QUEUE_FULL && ds.pending > 0;
            if (retry) {
                const int before = ds.pending;
                while (ds.pending == before) pthread_cond_wait(&ds.cv, &ds.mu);
            }
            pthread_mutex_unlock(&ds.mu);
            if (retry) continue;
            status = srv_submit_rc_status(rc);
            oai_errorf(e, status, rc == SUBMIT_QUEUE_FULL ? "server_error" : INVALID,
                       rc == SUBMIT_TOO_LONG ? "input" : rc == SUBMIT_DEADLINE ? "deadline_ms" : NULL,
                       "input %zu: %s", i, err.msg);
            if (rc == SUBMIT_TOO_LONG) e->code = "context_length_exceeded";
            if (rc == SUBMIT_QUEUE_FULL) http_resp_header(resp, "Retry-After", "1");
            break;
        }
        tok_ids_free(&ids);
    }
    /* every submitted request delivers DONE exactly once: wait for all of them (cancelled when
     * this request failed or the client left) before the jobs are freed */
    pthread_mutex_lock(&ds.mu);
    if (status != 200) dec_cancel_all(&ds);
    wait_until(&ds.mu, &ds.cv, &ds.none_pending, req, dec_cancel_all, &ds);
    pthread_mutex_unlock(&ds.mu);
    if (status == 200 && ds.failed)
        status = (oai_errorf(e, 500, "server_error", NULL, "embedding failed: %s", ds.error), 500);
    *prompt_tokens = ds.prompt_tokens;
    if (status == 200) srv_respond_json(resp, 200, embeddings_json(sm, r, ds.vecs, ds.dim, ds.prompt_tokens));
    for (size_t i = 0; i < ds.n_jobs; i++) sched_req_release(ds.jobs[i].req);
    free(ds.jobs);
    free(ds.vecs);
    pthread_mutex_destroy(&ds.mu);
    pthread_cond_destroy(&ds.cv);
    return status;
}

/* ============================================================ encoders ===== */

/* One encoder request in flight: its inputs and the results the engine thread copies in. */
typedef struct enc_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    esched_event fin;           /* the DONE event (error copied below) */
    char error[256];
    esched_req *req;
    int dim, n_seq_out, n_tok_out;
    float *pooled;              /* [n][dim] */
    float *seq;                 /* [n][n_seq_out] */
    float *tok;                 /* [total tokens][n_tok_out] */
    int64_t *tok_off;           /* [n] first token of each input */
} enc_job;

static void enc_emit(void *ctx, const esched_event *ev) {
    enc_job *j = ctx;
    if (ev->kind == ESCHED_EV_RESULT) { /* distinct rows of preallocated arrays: no lock needed */
        const size_t i = (size_t)ev->index;
        if (ev->pooled) memcpy(j->pooled + i * j->dim, ev->pooled, (size_t)j->dim * sizeof(float));
        if (ev->seq_logits) memcpy(j->seq + i * j->n_seq_out, ev->seq_logits, (size_t)j->n_seq_out * sizeof(float));
        if (ev->tok_logits)
            memcpy(j->tok + (size_t)j->tok_off[i] * j->n_tok_out, ev->tok_logits,
                   (size_t)ev->n_tokens * j->n_tok_out * sizeof(float));
        return;
    }
    pthread_mutex_lock(&j->mu);
    j->fin = *ev;
    j->fin.error = NULL;
    if (ev->error) snprintf(j->error, sizeof j->error, "%s", ev->error);
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void enc_cancel(void *arg) { esched_cancel(((enc_job *)arg)->req); }

/* The tokens of every input of r (texts, documents or token ids) appended to all, with their
 * lengths, and spans when wanted; made to fit the context (or 400). */
typedef struct enc_inputs {
    tok_ids all;
    tok_spans spans;            /* with a token head */
    int *len;                   /* [n] */
    int64_t *off;               /* [n] */
    size_t n;
} enc_inputs;

static void enc_inputs_free(enc_inputs *in) {
    tok_ids_free(&in->all);
    tok_spans_free(&in->spans);
    free(in->len);
    free(in->off);
}

static int prepare(srv_model *sm, const oai_request *r, bool spans, enc_inputs *in, oai_error *e) {
    const size_t n = r->kind == OAI_RERANK ? r->n_documents : r->n_inputs;
    in->n = n;
    in->len = malloc(n * sizeof *in->len);
    in->off = malloc(n * sizeof *in->off);
    if (!in->len || !in->off) return oai_errorf(e, 500, "server_error", NULL, "out of memory");
    const int n_ctx = sm->em->hp.n_ctx_train;
    if (spans && tok_vocab_type(sm->v) != TOK_WPM)
        return oai_errorf(e, 400, INVALID, "model", "'%s' has a token head but not a WordPiece "
                          "tokenizer: entities need token offsets, which shoal has for WordPiece only",
                          sm->name);
    for (size_t i = 0; i < n; i++) {
        const size_t from = in->all.n;
        sh_err err = {{0}};
        int rc;
        if (r->kind == OAI_RERANK) rc = nlu_rerank_tokens(sm->v, r->query, r->documents[i], &in->all, &err);
        else if (r->input_ids) rc = input_tokens(sm->v, r, i, true, &in->all, e) ? -2 : 0;
        else if (spans) rc = tok_tokenize_spans(sm->v, r->inputs[i], strlen(r->inputs[i]), true, true, &in->all, &in->spans, &err);
        else rc = tok_tokenize(sm->v, r->inputs[i], strlen(r->inputs[i]), true, true, &in->all, &err);
        if (rc == -2) return -1;
        if (rc) return oai_errorf(e, 500, "server_error", NULL, "tokenizer: %s", err.msg);
        if (in->all.n == from)
            return oai_errorf(e, 400, INVALID, r->kind == OAI_RERANK ? "documents" : "input",
                              "%s %zu has no tokens", r->kind == OAI_RERANK ? "document" : "input", i);
        if (nlu_fit(&in->all, spans ? &in->spans : NULL, from, n_ctx, r->truncate, &err)) {
            oai_errorf(e, 400, INVALID, r->kind == OAI_RERANK ? "documents" : "input", "%s %zu: %s",
                       r->kind == OAI_RERANK ? "document" : "input", i, err.msg);
            e->code = "context_length_exceeded";
            return -1;
        }
        in->off[i] = (int64_t)from;
        in->len[i] = (int)(in->all.n - from);
    }
    return 0;
}

/* Runs the prepared inputs through the scheduler and waits. Returns 200, or the status with e
 * filled. */
static int run_encoder(srv_model *sm, const oai_request *r, const enc_inputs *in, unsigned want,
                       http_request *req, http_response *resp, enc_job *j, oai_error *e) {
    const encoder_model *em = sm->em;
    j->dim = em->hp.dim;
    j->n_seq_out = em->seq_head.n_out;
    j->n_tok_out = em->tok_head.n_out;
    j->tok_off = in->off;
    if ((want & ENCODE_POOLED) && !(j->pooled = malloc(in->n * (size_t)j->dim * sizeof(float))))
        return oai_errorf(e, 500, "server_error", NULL, "out of memory"), 500;
    if ((want & ENCODE_SEQ_HEAD) && !(j->seq = malloc(in->n * (size_t)j->n_seq_out * sizeof(float))))
        return oai_errorf(e, 500, "server_error", NULL, "out of memory"), 500;
    if ((want & ENCODE_TOK_HEAD) && !(j->tok = malloc(in->all.n * (size_t)j->n_tok_out * sizeof(float))))
        return oai_errorf(e, 500, "server_error", NULL, "out of memory"), 500;
    esched_req_params rp = {.n_seq = (int)in->n, .tokens = in->all.ids, .n_tokens = in->len,
                            .want = want, .arrival_ms = http_req_start_ms(req),
                            .deadline_ms = r->has_deadline ? r->deadline_ms : 0,
                            .priority = r->priority, .emit = enc_emit, .ctx = j};
    sh_err err = {{0}};
    sched_submit_rc rc = esched_submit(sm->es, &rp, &j->req, &err);
    if (rc != SUBMIT_OK) {
        const int status = srv_submit_rc_status(rc);
        oai_errorf(e, status, status == 400 ? INVALID : "server_error",
                   rc == SUBMIT_DEADLINE ? "deadline_ms" : rc == SUBMIT_TOO_LONG ? "input" : NULL, "%s", err.msg);
        if (rc == SUBMIT_TOO_LONG) e->code = "context_length_exceeded";
        if (rc == SUBMIT_QUEUE_FULL) http_resp_header(resp, "Retry-After", "1");
        return status;
    }
    pthread_mutex_lock(&j->mu);
    wait_until(&j->mu, &j->cv, &j->done, req, enc_cancel, j);
    pthread_mutex_unlock(&j->mu);
    if (j->fin.finish == SCHED_FINISH_STOP) return 200;
    if (j->fin.finish == SCHED_FINISH_CANCELLED)
        return oai_errorf(e, 499, INVALID, NULL, "the request was cancelled"), 499;
    if (j->fin.deadline_exceeded) return oai_errorf(e, 503, "server_error", "deadline_ms", "%s", j->error), 503;
    return oai_errorf(e, 500, "server_error", NULL, "%s", j->error[0] ? j->error : "encoder failed"), 500;
}

/* 400 unless the encoder can do kind; fills e. */
static int check_task(const srv_model *sm, oai_kind kind, oai_error *e) {
    const encoder_model *em = sm->em;
    const encoder_pooling pool = esched_pooling(sm->es);
    const bool reranker = em->seq_head.n_out == 1 && pool == ENCODER_POOL_RANK;
    if (kind == OAI_EMBEDDING && (pool == ENCODER_POOL_NONE || pool == ENCODER_POOL_RANK))
        return oai_errorf(e, 400, INVALID, "model", "'%s' has pooling '%s': it gives %s, not "
                          "embeddings (start it with --pooling %s=mean|cls|last to embed)", sm->name,
                          encoder_pooling_name(pool), pool == ENCODER_POOL_RANK ? "rerank scores" : "per-token states",
                          sm->name);
    if (kind == OAI_RERANK && !reranker)
        return oai_errorf(e, 400, INVALID, "model", "'%s' is not a reranker (a reranker has rank "
                          "pooling and a one-output head; this model has pooling '%s' and %d head outputs)",
                          sm->name, encoder_pooling_name(pool), em->seq_head.n_out);
    if (kind == OAI_CLASSIFY && !em->seq_head.n_out && !em->tok_head.n_out)
        return oai_errorf(e, 400, INVALID, "model", "'%s' has no classification head (cls.output): "
                          "use /v1/embeddings", sm->name);
    if (kind == OAI_CLASSIFY && reranker && !em->tok_head.n_out)
        return oai_errorf(e, 400, INVALID, "model", "'%s' is a reranker: use /v1/rerank", sm->name);
    return 0;
}

static json_t *classify_json(srv_model *sm, const oai_request *r, const enc_inputs *in,
                             const enc_job *j, oai_error *e) {
    const encoder_model *em = sm->em;
    const int so = em->seq_head.n_out, to = em->tok_head.n_out;
    json_t *data = json_array();
    float *probs = malloc((size_t)(so > 0 ? so : 1) * sizeof(float));
    float *tprobs = NULL;
    size_t tcap = 0;
    for (size_t i = 0; probs && i < in->n; i++) {
        if (so) nlu_softmax(j->seq + i * so, so, probs);
        nlu_entities ents = {0};
        if (to) {
            const size_t n = (size_t)in->len[i];
            if (n * to > tcap) {
                float *nt = realloc(tprobs, n * to * sizeof(float));
                if (!nt) break;
                tprobs = nt, tcap = n * to;
            }
            for (size_t k = 0; k < n; k++)
                nlu_softmax(j->tok + ((size_t)in->off[i] + k) * to, to, tprobs + k * to);
            sh_err err = {{0}};
            if (nlu_bio_decode(r->inputs[i], strlen(r->inputs[i]), in->spans.v + in->off[i], n, tprobs,
                               to, (const char *const *)em->tok_head.labels, &ents, &err))
                break;
        }
        json_array_append_new(data, encj_classify_item((int)i, (const char *const *)em->seq_head.labels,
                                                       probs, so, to ? &ents : NULL));
        nlu_entities_free(&ents);
    }
    free(probs);
    free(tprobs);
    if ((size_t)json_array_size(data) != in->n) {
        json_decref(data);
        oai_errorf(e, 500, "server_error", NULL, "out of memory");
        return NULL;
    }
    return json_pack("{s:s, s:o, s:s, s:o}", "object", "list", "data", data, "model", sm->name,
                     "usage", encj_usage((int)in->all.n));
}

/* Embeddings, rerank or classify on an encoder. Returns the status (e filled unless 200). */
static int encoder_request(srv_model *sm, const oai_request *r, http_request *req,
                           http_response *resp, oai_error *e, int *prompt_tokens,
                           double *queue_ms) {
    if (check_task(sm, r->kind, e)) return e->status;
    if (r->kind == OAI_CLASSIFY && r->input_ids)
        return oai_errorf(e, 400, INVALID, "input", "classify takes texts (entities are spans of the text)"), 400;
    const encoder_model *em = sm->em;
    const bool tagger = r->kind == OAI_CLASSIFY && em->tok_head.n_out > 0;
    unsigned want = r->kind == OAI_EMBEDDING ? ENCODE_POOLED
                    : r->kind == OAI_RERANK  ? ENCODE_SEQ_HEAD
                                             : (em->seq_head.n_out ? ENCODE_SEQ_HEAD : 0) |
                                                   (tagger ? ENCODE_TOK_HEAD : 0);
    enc_inputs in = {0};
    enc_job j = {0};
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv, NULL);
    int status = prepare(sm, r, tagger, &in, e) ? e->status : 200;
    if (status == 200) status = run_encoder(sm, r, &in, want, req, resp, &j, e);
    *prompt_tokens = (int)in.all.n;
    *queue_ms = j.fin.queue_ms;
    if (status == 200) {
        json_t *out = NULL;
        if (r->kind == OAI_EMBEDDING) {
            for (size_t i = 0; i < in.n; i++) l2_normalize(j.pooled + i * (size_t)j.dim, j.dim);
            out = embeddings_json(sm, r, j.pooled, j.dim, (int)in.all.n);
        } else if (r->kind == OAI_RERANK) {
            float *scores = malloc(in.n * sizeof *scores);
            for (size_t i = 0; scores && i < in.n; i++) scores[i] = j.seq[i];
            out = scores ? encj_rerank(r, scores, sm->name, (int)in.all.n) : NULL;
            free(scores);
        } else {
            out = classify_json(sm, r, &in, &j, e);
        }
        if (out) {
            srv_respond_json(resp, 200, out);
        } else {
            oai_errorf(e, 500, "server_error", NULL, "out of memory");
            status = 500;
        }
    }
    esched_req_release(j.req);
    free(j.pooled);
    free(j.seq);
    free(j.tok);
    pthread_mutex_destroy(&j.mu);
    pthread_cond_destroy(&j.cv);
    enc_inputs_free(&in);
    return status;
}

/* ============================================================ the handler ===== */

void srv_handle_encode(server *s, oai_kind kind, http_request *req, const char *body, size_t len,
                       http_response *resp) {
    oai_request r;
    oai_error e;
    const char *path = srv_endpoint_path[kind];
    int status, prompt_tokens = 0;
    double queue_ms = 0;
    srv_model *sm = NULL;
    if (oai_parse_request(kind, body, len, &r, &e)) {
        srv_respond_error(resp, &e);
        srv_count_request(s, NULL, path, e.status);
        log_info li = {.request_id = http_req_id(req), .method = "POST", .path = path,
                       .peer = http_req_peer(req), .status = e.status, .error = e.message,
                       .total_ms = http_now_ms() - http_req_start_ms(req)};
        srv_log_request(s, &li);
        return;
    }
    if (!(sm = srv_find_model(s, r.model))) {
        status = (oai_errorf(&e, 404, INVALID, "model", "The model '%s' does not exist", r.model), 404);
        e.code = "model_not_found";
    } else if (kind == OAI_EMBEDDING && r.dimensions > 0 &&
               r.dimensions != (sm->em ? sm->em->hp.dim : sm->m->hp.dim) &&
               (r.dimensions > (sm->em ? sm->em->hp.dim : sm->m->hp.dim) || !sm->matryoshka)) {
        int d = sm->em ? sm->em->hp.dim : sm->m->hp.dim;
        status = r.dimensions > d
                     ? (oai_errorf(&e, 400, INVALID, "dimensions", "'dimensions' is %d; model '%s' gives %d", r.dimensions, sm->name, d), 400)
                     : (oai_errorf(&e, 400, INVALID, "dimensions",
                                   "model '%s' gives %d dimensions and is not marked as trained for shorter ones "
                                   "(serve --matryoshka %s if it is)", sm->name, d, sm->name), 400);
    } else if (sm->em) {
        status = encoder_request(sm, &r, req, resp, &e, &prompt_tokens, &queue_ms);
    } else if (kind == OAI_EMBEDDING) {
        status = decoder_embeddings(sm, &r, req, resp, &e, &prompt_tokens);
    } else {
        status = (oai_errorf(&e, 400, INVALID, "model", "'%s' is a decoder (a text generator): %s "
                            "needs an encoder with a %s head", sm->name, path,
                            kind == OAI_RERANK ? "reranking" : "classification"), 400);
        e.code = "model_not_supported";
    }
    if (status != 200) srv_respond_error(resp, &e);
    log_info li = {.request_id = http_req_id(req), .method = "POST", .path = path,
                   .peer = http_req_peer(req), .sm = sm, .status = status,
                   .prompt_tokens = prompt_tokens, .queue_ms = queue_ms, .n_inputs = (int)(kind == OAI_RERANK ? r.n_documents : r.n_inputs),
                   .total_ms = http_now_ms() - http_req_start_ms(req),
                   .error = status == 200 ? NULL : e.message};
    srv_log_request(s, &li);
    /* unknown model names are the client's text: one label for all, so metrics stay bounded */
    srv_count_request(s, sm ? sm->name : "(unknown)", path, status);
    oai_request_free(&r);
}

/* ============================================================ one text, in process ===== */

/* server_int.h */
int srv_encode_one(srv_model *sm, const char *text, float *emb, char *label, size_t label_n, double *conf,
                   char *slots, size_t slots_n, sh_err *err) {
    const encoder_model *em = sm->em;
    if (!em || esched_pooling(sm->es) == ENCODER_POOL_NONE || esched_pooling(sm->es) == ENCODER_POOL_RANK)
        return sh_errf(err, "'%s' is not an embedding encoder (it needs mean, cls or last pooling)", sm->name);
    label[0] = slots[0] = 0;
    *conf = 0;
    bool spans = em->tok_head.n_out > 0 && tok_vocab_type(sm->v) == TOK_WPM;
    tok_ids ids = {0};
    tok_spans sp = {0};
    int rc = spans ? tok_tokenize_spans(sm->v, text, strlen(text), true, true, &ids, &sp, err)
                   : tok_tokenize(sm->v, text, strlen(text), true, true, &ids, err);
    if (!rc && ids.n == 0) rc = sh_errf(err, "the text has no tokens");
    if (!rc) rc = nlu_fit(&ids, spans ? &sp : NULL, 0, em->hp.n_ctx_train, true, err);
    enc_job j = {0};
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv, NULL);
    int64_t off = 0;
    int len = (int)ids.n;
    unsigned want = ENCODE_POOLED | (em->seq_head.n_out ? ENCODE_SEQ_HEAD : 0u) | (spans ? ENCODE_TOK_HEAD : 0u);
    j.dim = em->hp.dim, j.n_seq_out = em->seq_head.n_out, j.n_tok_out = em->tok_head.n_out, j.tok_off = &off;
    j.pooled = emb;
    if (!rc && (want & ENCODE_SEQ_HEAD) && !(j.seq = malloc((size_t)j.n_seq_out * sizeof(float))))
        rc = sh_errf(err, "out of memory");
    if (!rc && (want & ENCODE_TOK_HEAD) && !(j.tok = malloc(ids.n * (size_t)j.n_tok_out * sizeof(float))))
        rc = sh_errf(err, "out of memory");
    if (!rc) {
        esched_req_params rp = {.n_seq = 1, .tokens = ids.ids, .n_tokens = &len, .want = want,
                                .emit = enc_emit, .ctx = &j};
        if (esched_submit(sm->es, &rp, &j.req, err) != SUBMIT_OK) {
            rc = -1;
        } else {
            pthread_mutex_lock(&j.mu);
            while (!j.done) pthread_cond_wait(&j.cv, &j.mu);
            pthread_mutex_unlock(&j.mu);
            if (j.fin.finish != SCHED_FINISH_STOP) rc = sh_errf(err, "encoder: %s", j.error[0] ? j.error : "failed");
        }
    }
    if (!rc) {
        double ss = 0;
        for (int i = 0; i < j.dim; i++) ss += (double)emb[i] * emb[i];
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0;
        for (int i = 0; i < j.dim; i++) emb[i] *= inv;
        if (j.seq) {
            nlu_softmax(j.seq, j.n_seq_out, j.seq);
            int b = nlu_argmax(j.seq, j.n_seq_out);
            snprintf(label, label_n, "%s", em->seq_head.labels[b]);
            *conf = j.seq[b];
        }
        if (j.tok) {
            for (size_t t = 0; t < ids.n; t++) nlu_softmax(j.tok + t * j.n_tok_out, j.n_tok_out, j.tok + t * j.n_tok_out);
            nlu_entities ents = {0};
            if (nlu_bio_decode(text, strlen(text), sp.v, ids.n, j.tok, j.n_tok_out,
                               (const char *const *)em->tok_head.labels, &ents, err) == 0) {
                size_t o = 0;
                for (size_t e = 0; e < ents.n && o < slots_n; e++)
                    o += (size_t)snprintf(slots + o, slots_n - o, "%s%s=%s", e ? ";" : "", ents.v[e].label, ents.v[e].text);
            }
            nlu_entities_free(&ents);
        }
    }
    esched_req_release(j.req);
    free(j.seq), free(j.tok);
    pthread_mutex_destroy(&j.mu);
    pthread_cond_destroy(&j.cv);
    tok_ids_free(&ids);
    tok_spans_free(&sp);
    return rc;
}
