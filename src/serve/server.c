/*
 * serve/server — see server.h.
 *
 * A generation request goes: HTTP thread (auth, parse, tokenize, submit) -> engine thread
 * (events through gen_emit) -> either the HTTP thread waiting for the whole answer, or the
 * connection's stream pulling SSE chunks from a channel. A gen_ctx carries one request across
 * those threads; it is reference-counted (the engine side drops its reference after the DONE
 * event, the HTTP side when the response is over).
 */
#include "serve/server.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "api/oai_req.h"
#include "cluster/router.h"
#include "core/hash.h"
#include "core/utf8.h"
#include "http/chan.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "model/model.h"
#include "serve/sched.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

typedef struct srv_model {
    char *name;
    model *m;
    tok_vocab *v;
    sched *sc;
    char sha[65];
    const char *chat_template;  /* family name overriding the file's template, or NULL */
} srv_model;

struct server {
    server_params p;
    srv_model *models;
    int n_models;
    http_server *http;
    router *rt;                 /* cluster mode (--config), or NULL */
    metrics *met;
    _Atomic bool ready, draining;
    FILE *log;
    pthread_mutex_t log_mu;
};

/* ============================================================ small helpers ===== */

static char *dump(json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(j);
    return s;
}

static void respond_json(http_response *resp, int status, json_t *j) {
    char *s = dump(j);
    resp->status = s ? status : 500;
    resp->content_type = "application/json";
    resp->body = s;
    resp->body_len = s ? strlen(s) : 0;
}

static void respond_error(http_response *resp, const oai_error *e) {
    char *s = oai_error_body(e);
    resp->status = e->status;
    resp->content_type = "application/json";
    resp->body = s;
    resp->body_len = s ? strlen(s) : 0;
}

static void new_id(char *out, size_t n, const char *prefix) {
    uint8_t b[12];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) memset(b, 0, sizeof b);
    static const char hx[] = "0123456789abcdef";
    size_t k = (size_t)snprintf(out, n, "%s", prefix);
    for (int i = 0; i < 12 && k + 2 < n; i++) {
        out[k++] = hx[b[i] >> 4];
        out[k++] = hx[b[i] & 15];
    }
    out[k] = 0;
}

/* W3C traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>. */
static bool traceparent_ok(const char *t) {
    if (!t || strlen(t) != 55 || t[2] != '-' || t[35] != '-' || t[52] != '-') return false;
    for (int i = 0; i < 55; i++) {
        if (i == 2 || i == 35 || i == 52) continue;
        char c = t[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

static const char *finish_name(sched_finish f) {
    switch (f) {
    case SCHED_FINISH_STOP: return "stop";
    case SCHED_FINISH_LENGTH: return "length";
    case SCHED_FINISH_CANCELLED: return "cancelled";
    case SCHED_FINISH_ERROR: return "error";
    default: return NULL;
    }
}

static srv_model *find_model(server *s, const char *name) {
    if (!name) return &s->models[0];
    for (int i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i].name, name) == 0) return &s->models[i];
    return NULL;
}

static void count_request(server *s, const char *model_name, const char *endpoint, int status) {
    char l[256], e1[96], e2[64];
    snprintf(l, sizeof l, "model=\"%s\",endpoint=\"%s\",status=\"%d\"",
             metrics_label_escape(model_name ? model_name : "", e1, sizeof e1),
             metrics_label_escape(endpoint, e2, sizeof e2), status);
    metrics_inc(metrics_counter(s->met, "shoal_requests_total", "Requests by model, endpoint and HTTP status.", l), 1);
}

/* ============================================================ request log ===== */

typedef struct log_info {
    const char *request_id, *traceparent, *method, *path, *peer;
    const srv_model *sm;
    int status;
    const char *finish;
    int prompt_tokens, completion_tokens, cached_tokens;
    double queue_ms, ttft_ms, total_ms;
    const char *prompt, *output; /* only with log_prompts */
    const char *error;
    const router_log *route; /* a router's record of a request it routed, or NULL */
} log_info;

/* Generated text as a JSON string. The detokenizer passes bytes that never form UTF-8 through
 * (a model can emit any byte token), which a JSON string cannot hold: those bytes become
 * U+FFFD rather than losing the whole field. */
static json_t *text_json(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j) return j;
    size_t m;
    char *clean = utf8_replace_invalid(s, n, &m);
    j = clean ? json_stringn(clean, m) : NULL;
    free(clean);
    return j ? j : json_string("");
}

static void log_request(server *s, const log_info *li) {
    json_t *j = json_object();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t k = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + k, sizeof when - k, ".%03ldZ", ts.tv_nsec / 1000000L);
    json_object_set_new(j, "ts", json_string(when));
    json_object_set_new(j, "request_id", json_string(li->request_id));
    if (li->traceparent) {
        json_object_set_new(j, "trace_id", json_stringn(li->traceparent + 3, 32));
        json_object_set_new(j, "parent_id", json_stringn(li->traceparent + 36, 16));
    }
    json_object_set_new(j, "method", json_string(li->method));
    json_object_set_new(j, "path", json_string(li->path));
    if (li->peer && *li->peer) json_object_set_new(j, "peer", json_string(li->peer));
    json_object_set_new(j, "status", json_integer(li->status));
    if (li->sm) {
        json_object_set_new(j, "model", json_string(li->sm->name));
        json_object_set_new(j, "model_sha256", json_string(li->sm->sha));
        json_object_set_new(j, "quant", json_string(li->sm->m->type_name));
    }
    if (li->finish) json_object_set_new(j, "finish_reason", json_string(li->finish));
    if (li->sm) {
        json_object_set_new(j, "prompt_tokens", json_integer(li->prompt_tokens));
        json_object_set_new(j, "completion_tokens", json_integer(li->completion_tokens));
        json_object_set_new(j, "cached_tokens", json_integer(li->cached_tokens));
        json_object_set_new(j, "queue_ms", json_real(li->queue_ms));
        json_object_set_new(j, "ttft_ms", json_real(li->ttft_ms));
    }
    const router_log *rl = li->route;
    if (rl) {
        if (rl->model) json_object_set_new(j, "model", json_string(rl->model));
        if (rl->answered_by && (!rl->model || strcmp(rl->answered_by, rl->model)))
            json_object_set_new(j, "answered_by", json_string(rl->answered_by));
        if (rl->backend) json_object_set_new(j, "backend", json_string(rl->backend));
        json_object_set_new(j, "attempts", json_integer(rl->attempts));
        json_object_set_new(j, "stream", json_boolean(rl->stream));
        if (rl->outcome) json_object_set_new(j, "outcome", json_string(rl->outcome));
        if (rl->hedged) json_object_set_new(j, "hedged", json_true());
        if (rl->fallback) json_object_set_new(j, "fallback", json_true());
        if (rl->degraded) json_object_set_new(j, "degraded", json_true());
        json_object_set_new(j, "ttfb_ms", json_real(rl->ttfb_ms));
    }
    json_object_set_new(j, "total_ms", json_real(li->total_ms));
    if (li->error) json_object_set_new(j, "error", json_string(li->error));
    if (s->p.log_prompts && li->prompt) json_object_set_new(j, "prompt", json_string(li->prompt));
    if (s->p.log_prompts && li->output)
        json_object_set_new(j, "output", text_json(li->output, strlen(li->output)));
    char *line = dump(j);
    if (!line) return;
    pthread_mutex_lock(&s->log_mu);
    fputs(line, s->log);
    fputc('\n', s->log);
    fflush(s->log);
    pthread_mutex_unlock(&s->log_mu);
    free(line);
}

/* ============================================================ generation context ===== */

typedef struct gen_ctx {
    _Atomic int refs;
    server *srv;
    srv_model *sm;
    oai_kind kind;
    bool stream, include_usage, logprobs;
    int n_top;
    char id[48];
    long created;
    sched_req *req;
    chan *ch;                   /* streaming */
    bool sent_role;             /* chat stream: the first delta carries the role */
    size_t streamed;            /* bytes of text streamed so far (logprobs text_offset) */

    pthread_mutex_t mu;         /* non-streaming: the collected answer */
    pthread_cond_t cv;
    bool done;
    tok_buf text;
    json_t *lp;                 /* logprobs being collected */
    sched_event fin;            /* the DONE event (strings not kept) */
    char error[256];

    /* for the log line */
    char request_id[72], traceparent[56], path[64], peer[64];
    char *prompt_text;          /* only kept with log_prompts */
    double start_ms;
} gen_ctx;

static void gen_release(gen_ctx *g) {
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
    sched_req_release(g->req);
    chan_release(g->ch);
    tok_buf_free(&g->text);
    json_decref(g->lp);
    free(g->prompt_text);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

/* One token's logprobs in OpenAI's chat form, or appended to the legacy completion arrays. */
static json_t *token_bytes(const char *p, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)p[i]));
    return a;
}

static json_t *piece_json(const tok_vocab *v, int32_t id) {
    size_t n = 0;
    const char *p = tok_piece(v, id, false, &n);
    json_t *s = p ? json_stringn(p, n) : NULL;
    return s ? s : json_string("\xef\xbf\xbd"); /* a piece that is part of a character */
}

static void add_logprobs(gen_ctx *g, json_t *lp, const sched_event *ev, size_t text_offset) {
    const tok_vocab *v = g->sm->v;
    size_t n = 0;
    const char *p = tok_piece(v, ev->token, false, &n);
    if (g->kind == OAI_CHAT) {
        json_t *content = json_object_get(lp, "content"), *top = json_array();
        for (int i = 0; i < ev->n_top; i++) {
            size_t tn = 0;
            const char *tp = tok_piece(v, ev->top[i].id, false, &tn);
            json_array_append_new(top, json_pack("{s:o, s:f, s:o}", "token", piece_json(v, ev->top[i].id),
                                                 "logprob", ev->top[i].logprob, "bytes", token_bytes(tp ? tp : "", tn)));
        }
        json_array_append_new(content, json_pack("{s:o, s:f, s:o, s:o}", "token", piece_json(v, ev->token),
                                                 "logprob", ev->logprob, "bytes", token_bytes(p ? p : "", n),
                                                 "top_logprobs", top));
        return;
    }
    json_t *top = json_object();
    for (int i = 0; i < ev->n_top; i++) {
        json_t *k = piece_json(v, ev->top[i].id);
        json_object_set_new(top, json_string_value(k), json_real(ev->top[i].logprob));
        json_decref(k);
    }
    json_array_append_new(json_object_get(lp, "tokens"), piece_json(v, ev->token));
    json_array_append_new(json_object_get(lp, "token_logprobs"), json_real(ev->logprob));
    json_array_append_new(json_object_get(lp, "top_logprobs"), top);
    json_array_append_new(json_object_get(lp, "text_offset"), json_integer((json_int_t)text_offset));
}

static json_t *new_logprobs(oai_kind kind) {
    if (kind == OAI_CHAT) return json_pack("{s:[]}", "content");
    return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

static json_t *usage_json(const sched_event *ev) {
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", ev->prompt_tokens,
                     "completion_tokens", ev->completion_tokens, "total_tokens",
                     ev->prompt_tokens + ev->completion_tokens, "prompt_tokens_details",
                     "cached_tokens", ev->cached_tokens);
}

/* ============================================================ SSE chunks ===== */

static json_t *chunk_base(gen_ctx *g) {
    return json_pack("{s:s, s:s, s:I, s:s}", "id", g->id, "object",
                     g->kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)g->created, "model", g->sm->name);
}

static void sse_write(gen_ctx *g, json_t *j) {
    char *s = dump(j);
    if (!s) return;
    size_t n = strlen(s);
    char *line = malloc(n + 9);
    if (line) {
        memcpy(line, "data: ", 6);
        memcpy(line + 6, s, n);
        memcpy(line + 6 + n, "\n\n", 3);
        if (chan_write(g->ch, line, n + 8)) sched_cancel(g->req); /* client gone or too slow */
        free(line);
    }
    free(s);
}

/* One choice of a stream chunk: text or delta, logprobs, finish_reason. */
static json_t *chunk_choice(gen_ctx *g, const char *text, size_t len, json_t *lp, const char *finish) {
    json_t *c = json_pack("{s:i}", "index", 0);
    if (g->kind == OAI_CHAT) {
        json_t *delta = json_object();
        if (!g->sent_role) {
            json_object_set_new(delta, "role", json_string("assistant"));
            g->sent_role = true;
        }
        if (len || !finish) json_object_set_new(delta, "content", text_json(text, len));
        json_object_set_new(c, "delta", delta);
    } else {
        json_object_set_new(c, "text", text_json(text, len));
    }
    json_object_set_new(c, "logprobs", lp ? lp : json_null());
    json_object_set_new(c, "finish_reason", finish ? json_string(finish) : json_null());
    return c;
}

static void stream_event(gen_ctx *g, const sched_event *ev) {
    if (ev->kind == SCHED_EV_TOKEN) {
        json_t *lp = NULL;
        if (g->logprobs && ev->token >= 0) {
            lp = new_logprobs(g->kind);
            add_logprobs(g, lp, ev, g->streamed);
        }
        g->streamed += ev->text_len;
        if (!ev->text_len && !lp) return; /* held back for a stop string: nothing to say yet */
        json_t *j = chunk_base(g);
        json_object_set_new(j, "choices", json_pack("[o]", chunk_choice(g, ev->text, ev->text_len, lp, NULL)));
        sse_write(g, j);
        return;
    }
    if (ev->finish == SCHED_FINISH_ERROR) {
        json_t *e = json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", ev->error ? ev->error : "error",
                              "type", "server_error", "param", "code");
        sse_write(g, e);
    } else if (ev->finish != SCHED_FINISH_CANCELLED) {
        json_t *j = chunk_base(g);
        json_object_set_new(j, "choices", json_pack("[o]", chunk_choice(g, "", 0, NULL, finish_name(ev->finish))));
        if (ev->deadline_exceeded) json_object_set_new(j, "deadline_exceeded", json_true());
        sse_write(g, j);
        if (g->include_usage) {
            j = chunk_base(g);
            json_object_set_new(j, "choices", json_array());
            json_object_set_new(j, "usage", usage_json(ev));
            sse_write(g, j);
        }
        chan_write(g->ch, "data: [DONE]\n\n", 14);
    }
    chan_close(g->ch);
}

/* ============================================================ events (engine thread) ===== */

static void log_done(gen_ctx *g, const sched_event *ev, int status, const char *output) {
    log_info li = {.request_id = g->request_id, .traceparent = g->traceparent[0] ? g->traceparent : NULL,
                   .method = "POST", .path = g->path, .peer = g->peer, .sm = g->sm, .status = status,
                   .finish = finish_name(ev->finish), .prompt_tokens = ev->prompt_tokens,
                   .completion_tokens = ev->completion_tokens, .cached_tokens = ev->cached_tokens,
                   .queue_ms = ev->queue_ms, .ttft_ms = ev->ttft_ms,
                   .total_ms = http_now_ms() - g->start_ms, .prompt = g->prompt_text, .output = output,
                   .error = ev->error};
    log_request(g->srv, &li);
    count_request(g->srv, g->sm->name, g->path, status);
}

static void gen_emit(void *ctx, const sched_event *ev) {
    gen_ctx *g = ctx;
    if (g->stream) {
        stream_event(g, ev);
        if (ev->kind == SCHED_EV_DONE) {
            log_done(g, ev, ev->finish == SCHED_FINISH_CANCELLED ? 499 : 200, NULL);
            gen_release(g); /* the engine side's reference */
        }
        return;
    }
    pthread_mutex_lock(&g->mu);
    if (ev->kind == SCHED_EV_TOKEN) {
        if (g->logprobs && ev->token >= 0) add_logprobs(g, g->lp, ev, g->text.n);
        if (ev->text_len) {
            if (g->text.n + ev->text_len + 1 > g->text.cap) {
                size_t cap = (g->text.cap ? g->text.cap * 2 : 256) + ev->text_len;
                char *d = realloc(g->text.data, cap);
                if (d) g->text.data = d, g->text.cap = cap;
            }
            if (g->text.n + ev->text_len + 1 <= g->text.cap) {
                memcpy(g->text.data + g->text.n, ev->text, ev->text_len);
                g->text.n += ev->text_len;
                g->text.data[g->text.n] = 0;
            }
        }
    } else {
        g->fin = *ev;
        g->fin.error = NULL;
        if (ev->error) snprintf(g->error, sizeof g->error, "%s", ev->error);
        g->done = true;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    if (ev->kind == SCHED_EV_DONE) gen_release(g);
}

/* ============================================================ stream glue (HTTP thread) ===== */

static ssize_t gen_pull(void *ctx, char *buf, size_t max) { return chan_pull(((gen_ctx *)ctx)->ch, buf, max); }

static void gen_stream_done(void *ctx, bool aborted) {
    gen_ctx *g = ctx;
    if (aborted) {
        chan_abort(g->ch);
        sched_cancel(g->req);
    }
    gen_release(g); /* the HTTP side's reference */
}

/* ============================================================ prompts ===== */

/* The prompt's token ids: given ids, or the text tokenized with BOS as the vocabulary says. */
static int prompt_ids(srv_model *sm, const oai_request *r, const char *text, tok_ids *ids, oai_error *e) {
    if (r->prompt_ids) {
        for (size_t i = 0; i < r->n_prompt_ids; i++) {
            if (r->prompt_ids[i] >= tok_n_tokens(sm->v))
                return oai_errorf(e, 400, "invalid_request_error", "prompt", "token %d is not in the vocabulary", r->prompt_ids[i]);
            if (ids->n == ids->cap) {
                size_t cap = ids->cap ? ids->cap * 2 : 64;
                int32_t *p = realloc(ids->ids, cap * sizeof *p);
                if (!p) return oai_errorf(e, 500, "server_error", NULL, "out of memory");
                ids->ids = p;
                ids->cap = cap;
            }
            ids->ids[ids->n++] = r->prompt_ids[i];
        }
        return 0;
    }
    sh_err err = {{0}};
    bool special = r->kind == OAI_CHAT; /* chat templates contain control tokens */
    if (tok_tokenize(sm->v, text, strlen(text), true, special, ids, &err))
        return oai_errorf(e, 500, "server_error", NULL, "tokenizer: %s", err.msg);
    return 0;
}

/* The chat prompt text for r's messages with the model's chat template. Returns a malloc'd
 * string, or NULL with e filled. */

static char *render_chat(srv_model *sm, const oai_request *r, oai_error *e);

/* ============================================================ generation handler ===== */

static const char *const endpoint_path[] = {"/v1/completions", "/v1/chat/completions", "/v1/embeddings"};

static int submit_rc_status(sched_submit_rc rc) {
    switch (rc) {
    case SUBMIT_QUEUE_FULL: return 429;
    case SUBMIT_DEADLINE: case SUBMIT_SHUTTING_DOWN: return 503;
    default: return 400;
    }
}

/* Waits for a non-streamed answer; cancels it when the client hangs up. */
static void wait_done(gen_ctx *g, http_request *req) {
    pthread_mutex_lock(&g->mu);
    while (!g->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 5 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
        if (!g->done && http_req_client_gone(req)) sched_cancel(g->req);
    }
    pthread_mutex_unlock(&g->mu);
}

static void answer_whole(gen_ctx *g, http_request *req, http_response *resp) {
    wait_done(g, req);
    const sched_event *ev = &g->fin;
    if (ev->finish == SCHED_FINISH_ERROR || ev->finish == SCHED_FINISH_CANCELLED) {
        oai_error e;
        if (ev->finish == SCHED_FINISH_CANCELLED)
            oai_errorf(&e, 499, "invalid_request_error", NULL, "the request was cancelled");
        else if (ev->deadline_exceeded)
            oai_errorf(&e, 503, "server_error", "deadline_ms", "%s", g->error);
        else
            oai_errorf(&e, 500, "server_error", NULL, "%s", g->error[0] ? g->error : "generation failed");
        respond_error(resp, &e);
        sched_event copy = *ev;
        copy.error = g->error;
        log_done(g, &copy, e.status, NULL);
        return;
    }
    json_t *choice = json_pack("{s:i}", "index", 0);
    const char *text = g->text.data ? g->text.data : "";
    if (g->kind == OAI_CHAT)
        json_object_set_new(choice, "message",
                            json_pack("{s:s, s:o}", "role", "assistant", "content", text_json(text, g->text.n)));
    else
        json_object_set_new(choice, "text", text_json(text, g->text.n));
    json_object_set_new(choice, "logprobs", g->logprobs ? json_incref(g->lp) : json_null());
    json_object_set_new(choice, "finish_reason", json_string(finish_name(ev->finish)));
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", g->id, "object",
                          g->kind == OAI_CHAT ? "chat.completion" : "text_completion", "created",
                          (json_int_t)g->created, "model", g->sm->name, "choices", choice, "usage",
                          usage_json(ev));
    if (ev->deadline_exceeded) json_object_set_new(j, "deadline_exceeded", json_true());
    respond_json(resp, 200, j);
    log_done(g, ev, 200, text);
}

/* ============================================================ embeddings ===== */

typedef struct emb_job {
    struct emb_set *set;
    int index;
    sched_req *req;
} emb_job;

typedef struct emb_set {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;                /* submitted requests whose DONE has not come */
    int dim;
    float *vecs;                /* [n][dim] */
    int prompt_tokens;
    bool failed;
    char error[256];
} emb_set;

static void emb_emit(void *ctx, const sched_event *ev) {
    emb_job *j = ctx;
    emb_set *es = j->set;
    if (ev->kind != SCHED_EV_DONE) return;
    pthread_mutex_lock(&es->mu);
    if (ev->embedding) {
        memcpy(es->vecs + (size_t)j->index * es->dim, ev->embedding, (size_t)es->dim * sizeof(float));
        es->prompt_tokens += ev->prompt_tokens;
    } else if (!es->failed) {
        es->failed = true;
        snprintf(es->error, sizeof es->error, "%s", ev->error ? ev->error : finish_name(ev->finish));
    }
    es->pending--;
    pthread_cond_broadcast(&es->cv);
    pthread_mutex_unlock(&es->mu);
}

static void handle_embeddings(server *s, srv_model *sm, const oai_request *r, http_request *req,
                              http_response *resp, oai_error *e) {
    size_t n = r->n_inputs;
    emb_set es = {.dim = sm->m->hp.dim};
    pthread_mutex_init(&es.mu, NULL);
    pthread_cond_init(&es.cv, NULL);
    es.vecs = malloc(n * (size_t)es.dim * sizeof(float));
    emb_job *jobs = calloc(n, sizeof *jobs);
    int status = 200;
    if (!es.vecs || !jobs) {
        oai_errorf(e, 500, "server_error", NULL, "out of memory");
        status = 500;
    }
    for (size_t i = 0; status == 200 && i < n; i++) {
        tok_ids ids = {0};
        sh_err err = {{0}};
        jobs[i] = (emb_job){.set = &es, .index = (int)i};
        if (tok_tokenize(sm->v, r->inputs[i], strlen(r->inputs[i]), true, false, &ids, &err)) {
            oai_errorf(e, 500, "server_error", NULL, "tokenizer: %s", err.msg);
            status = 500;
            break;
        }
        sched_req_params rp = {.prompt = ids.ids, .n_prompt = (int)ids.n, .embed = true,
                               .arrival_ms = http_req_start_ms(req), .emit = emb_emit, .ctx = &jobs[i]};
        sampler_params_default(&rp.sp);
        pthread_mutex_lock(&es.mu);
        es.pending++;
        pthread_mutex_unlock(&es.mu);
        sched_submit_rc rc = sched_submit(sm->sc, &rp, &jobs[i].req, &err);
        tok_ids_free(&ids);
        if (rc != SUBMIT_OK) {
            pthread_mutex_lock(&es.mu);
            es.pending--;
            pthread_mutex_unlock(&es.mu);
            status = submit_rc_status(rc);
            oai_errorf(e, status, rc == SUBMIT_QUEUE_FULL ? "server_error" : "invalid_request_error",
                       rc == SUBMIT_TOO_LONG ? "input" : NULL, "input %zu: %s", i, err.msg);
            if (rc == SUBMIT_TOO_LONG) e->code = "context_length_exceeded";
            if (rc == SUBMIT_QUEUE_FULL) http_resp_header(resp, "Retry-After", "1");
        }
    }
    /* Every submitted request delivers DONE exactly once: wait for all of them (cancelling
     * them when this request failed or the client left) before the jobs are freed. */
    pthread_mutex_lock(&es.mu);
    while (es.pending > 0) {
        if (status != 200 || http_req_client_gone(req))
            for (size_t i = 0; i < n; i++) sched_cancel(jobs[i].req);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 5 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&es.cv, &es.mu, &ts);
    }
    pthread_mutex_unlock(&es.mu);
    if (status == 200 && es.failed)
    {
        oai_errorf(e, 500, "server_error", NULL, "embedding failed: %s", es.error);
        status = 500;
    }
    if (status == 200) {
        json_t *data = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_array();
            for (int k = 0; k < es.dim; k++) json_array_append_new(v, json_real(es.vecs[i * (size_t)es.dim + k]));
            json_array_append_new(data, json_pack("{s:s, s:I, s:o}", "object", "embedding", "index", (json_int_t)i, "embedding", v));
        }
        respond_json(resp, 200, json_pack("{s:s, s:o, s:s, s:{s:i, s:i}}", "object", "list", "data", data,
                                          "model", sm->name, "usage", "prompt_tokens", es.prompt_tokens,
                                          "total_tokens", es.prompt_tokens));
    } else {
        respond_error(resp, e);
    }
    log_info li = {.request_id = http_req_id(req), .method = "POST", .path = "/v1/embeddings",
                   .peer = http_req_peer(req), .sm = sm, .status = status, .prompt_tokens = es.prompt_tokens,
                   .total_ms = http_now_ms() - http_req_start_ms(req), .error = status == 200 ? NULL : e->message};
    log_request(s, &li);
    count_request(s, sm->name, "/v1/embeddings", status);
    for (size_t i = 0; jobs && i < n; i++) sched_req_release(jobs[i].req);
    free(jobs);
    free(es.vecs);
    pthread_mutex_destroy(&es.mu);
    pthread_cond_destroy(&es.cv);
}

/* body: the request's own, or the router's rewrite of it (cluster mode) */
static void handle_generate(server *s, oai_kind kind, http_request *req, const char *body, size_t len,
                            http_response *resp) {
    oai_request r;
    oai_error e;
    if (oai_parse_request(kind, body, len, &r, &e)) {
        respond_error(resp, &e);
        count_request(s, NULL, endpoint_path[kind], e.status);
        return;
    }
    srv_model *sm = find_model(s, r.model);
    char *chat_text = NULL;
    tok_ids ids = {0};
    gen_ctx *g = NULL;
    if (!sm) {
        oai_errorf(&e, 404, "invalid_request_error", "model", "The model '%s' does not exist", r.model);
        e.code = "model_not_found";
        goto fail;
    }
    if (kind == OAI_EMBEDDING) {
        handle_embeddings(s, sm, &r, req, resp, &e);
        oai_request_free(&r);
        return;
    }
    if (kind == OAI_CHAT && !(chat_text = render_chat(sm, &r, &e))) goto fail;
    if (prompt_ids(sm, &r, kind == OAI_CHAT ? chat_text : r.prompt, &ids, &e)) goto fail;

    g = calloc(1, sizeof *g);
    if (!g) {
        oai_errorf(&e, 500, "server_error", NULL, "out of memory");
        goto fail;
    }
    atomic_store(&g->refs, 1); /* the HTTP side; the engine side's is added at submit */
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->srv = s;
    g->sm = sm;
    g->kind = kind;
    g->stream = r.stream;
    g->include_usage = r.include_usage;
    g->logprobs = r.logprobs;
    g->n_top = r.top_logprobs;
    g->created = (long)time(NULL);
    g->start_ms = http_req_start_ms(req);
    new_id(g->id, sizeof g->id, kind == OAI_CHAT ? "chatcmpl-" : "cmpl-");
    snprintf(g->request_id, sizeof g->request_id, "%s", http_req_id(req));
    const char *tp = http_req_header(req, "traceparent");
    if (traceparent_ok(tp)) snprintf(g->traceparent, sizeof g->traceparent, "%s", tp);
    snprintf(g->path, sizeof g->path, "%s", endpoint_path[kind]);
    snprintf(g->peer, sizeof g->peer, "%s", http_req_peer(req));
    if (s->p.log_prompts) g->prompt_text = strdup(kind == OAI_CHAT ? chat_text : (r.prompt ? r.prompt : ""));
    if (g->logprobs) g->lp = new_logprobs(kind);
    if (g->stream && !(g->ch = chan_init(4u << 20, 250, NULL))) {
        oai_errorf(&e, 500, "server_error", NULL, "out of memory");
        goto fail;
    }
    /* the channel starts with a reference for each side, but here both sides reach it through
     * g, which is itself reference-counted: g keeps one, dropped in gen_release */
    if (g->ch) chan_release(g->ch);

    sched_req_params rp = {.prompt = ids.ids, .n_prompt = (int)ids.n, .max_tokens = r.max_tokens,
                           .stop = (const char *const *)r.stop, .n_stop = (int)r.n_stop,
                           .n_top = r.logprobs ? r.top_logprobs : 0,
                           .arrival_ms = http_req_start_ms(req),
                           .deadline_ms = r.has_deadline ? r.deadline_ms : 0,
                           .priority = r.priority, .emit = gen_emit, .ctx = g};
    sampler_params_default(&rp.sp);
    rp.sp.temp = r.temperature;
    rp.sp.top_p = r.top_p;
    rp.sp.top_k = r.top_k;
    rp.sp.min_p = r.min_p;
    rp.sp.repeat_penalty = r.repeat_penalty;
    rp.sp.presence_penalty = r.presence_penalty;
    rp.sp.frequency_penalty = r.frequency_penalty;
    rp.logprobs = r.logprobs;
    rp.sp.seed = r.seed;
    if (!r.has_seed && getrandom(&rp.sp.seed, sizeof rp.sp.seed, 0) != (ssize_t)sizeof rp.sp.seed)
        rp.sp.seed = (uint64_t)(http_now_ms() * 1e3);
    sh_err err = {{0}};
    atomic_store(&g->refs, 2);
    sched_submit_rc rc = sched_submit(sm->sc, &rp, &g->req, &err);
    if (rc != SUBMIT_OK) {
        oai_errorf(&e, submit_rc_status(rc), rc == SUBMIT_DEADLINE || rc == SUBMIT_SHUTTING_DOWN || rc == SUBMIT_QUEUE_FULL
                                              ? "server_error" : "invalid_request_error",
                   rc == SUBMIT_DEADLINE ? "deadline_ms" : rc == SUBMIT_TOO_LONG ? "prompt" : NULL, "%s", err.msg);
        if (rc == SUBMIT_TOO_LONG) e.code = "context_length_exceeded";
        if (rc == SUBMIT_QUEUE_FULL) http_resp_header(resp, "Retry-After", "1");
        atomic_store(&g->refs, 1);
        goto fail;
    }
    tok_ids_free(&ids);
    free(chat_text);
    oai_request_free(&r);
    if (g->stream) {
        resp->status = 200;
        resp->content_type = "text/event-stream";
        http_resp_header(resp, "Cache-Control", "no-cache");
        resp->pull = gen_pull;
        resp->done = gen_stream_done;
        resp->stream_ctx = g;
        return;
    }
    answer_whole(g, req, resp);
    gen_release(g);
    return;
fail:
    respond_error(resp, &e);
    {
        log_info li = {.request_id = http_req_id(req), .method = "POST", .path = endpoint_path[kind],
                       .peer = http_req_peer(req), .status = e.status, .error = e.message,
                       .total_ms = http_now_ms() - http_req_start_ms(req)};
        log_request(s, &li);
    }
    /* unknown model names are the client's text: one label for all, so metrics stay bounded */
    count_request(s, sm ? sm->name : "(unknown)", endpoint_path[kind], e.status);
    if (g) gen_release(g);
    tok_ids_free(&ids);
    free(chat_text);
    oai_request_free(&r);
}

/* ============================================================ other endpoints ===== */

static void handle_models(server *s, http_response *resp) {
    json_t *data = json_array();
    for (int i = 0; i < s->n_models; i++) {
        srv_model *sm = &s->models[i];
        json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:{s:s, s:s, s:I, s:i, s:s}}",
                                              "id", sm->name, "object", "model", "created", (json_int_t)0,
                                              "owned_by", "shoal", "meta", "file", sm->m->path,
                                              "sha256", sm->sha, "n_params", (json_int_t)sm->m->n_params,
                                              "n_ctx", sched_n_ctx(sm->sc), "quant", sm->m->type_name));
    }
    respond_json(resp, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static void handle_health(server *s, http_response *resp) {
    const char *status = atomic_load(&s->draining) ? "draining" : atomic_load(&s->ready) ? "ok" : "loading";
    respond_json(resp, strcmp(status, "ok") ? 503 : 200, json_pack("{s:s}", "status", status));
}

static void handle_slots(server *s, http_response *resp) {
    json_t *a = json_array();
    for (int i = 0; i < s->n_models; i++) {
        sched_stats st;
        sched_get_stats(s->models[i].sc, &st);
        json_array_append_new(a, json_pack("{s:s, s:i, s:i, s:i, s:f, s:f}", "model", s->models[i].name,
                                           "slots", st.n_slots, "busy", st.busy_slots, "queued", st.queued,
                                           "prompt_tok_s", st.pp_tok_s, "step_ms", st.tg_step_ms));
    }
    respond_json(resp, 200, a);
}

static void handle_metrics(server *s, http_response *resp) {
    char *t = metrics_render(s->met);
    resp->status = t ? 200 : 500;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp->body = t;
    resp->body_len = t ? strlen(t) : 0;
}

/* ============================================================ routing ===== */

static bool authorized(server *s, http_request *req) {
    if (!s->p.api_key) return true;
    const char *h = http_req_header(req, "Authorization");
    size_t kl = strlen(s->p.api_key);
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    /* constant time in the key's content; the length comparison leaks only the length */
    return strlen(h) == kl && CRYPTO_memcmp(h, s->p.api_key, kl) == 0;
}

static void simple_log(server *s, http_request *req, int status) {
    log_info li = {.request_id = http_req_id(req), .method = http_req_method(req),
                   .path = http_req_path(req), .peer = http_req_peer(req), .status = status,
                   .total_ms = http_now_ms() - http_req_start_ms(req)};
    log_request(s, &li);
}

static void on_request(void *ud, http_request *req, http_response *resp) {
    server *s = ud;
    const char *m = http_req_method(req), *path = http_req_path(req);
    bool get = !strcmp(m, "GET"), post = !strcmp(m, "POST");
    oai_error e;
    if (!strcmp(path, "/health")) {
        if (!get) goto bad_method;
        handle_health(s, resp);
        return; /* health checks are not logged: they would drown the log */
    }
    if (s->rt && !strcmp(path, "/v1/cluster/join")) {
        /* nodes authenticate with the join token, not the clients' API key */
        if (!post) goto bad_method;
        router_join(s->rt, req, resp);
        simple_log(s, req, resp->status);
        return;
    }
    if (!authorized(s, req)) {
        oai_errorf(&e, 401, "invalid_request_error", NULL, "missing or wrong API key (Authorization: Bearer KEY)");
        e.code = "invalid_api_key";
        respond_error(resp, &e);
        http_resp_header(resp, "WWW-Authenticate", "Bearer");
        simple_log(s, req, 401);
        return;
    }
    int kind = !strcmp(path, "/v1/completions") ? OAI_COMPLETION
               : !strcmp(path, "/v1/chat/completions") ? OAI_CHAT
               : !strcmp(path, "/v1/embeddings") ? OAI_EMBEDDING : -1;
    if (kind >= 0) {
        if (!post) goto bad_method;
        if (atomic_load(&s->draining)) {
            oai_errorf(&e, 503, "server_error", NULL, "the server is draining; retry on another node");
            respond_error(resp, &e);
            http_resp_header(resp, "Retry-After", "1");
            simple_log(s, req, 503);
            return;
        }
        if (s->rt) {
            router_handle(s->rt, kind, req, resp); /* logs through route_log below */
            return;
        }
        size_t len;
        const char *body = http_req_body(req, &len);
        handle_generate(s, (oai_kind)kind, req, body, len, resp);
        return;
    }
    if (!strcmp(path, "/v1/models")) {
        if (!get) goto bad_method;
        if (s->rt) router_models(s->rt, resp);
        else handle_models(s, resp);
    } else if (s->rt && !strcmp(path, "/v1/cluster")) {
        if (!get) goto bad_method;
        router_cluster(s->rt, resp);
    } else if (!strcmp(path, "/metrics")) {
        if (!get) goto bad_method;
        handle_metrics(s, resp);
    } else if (!strcmp(path, "/slots")) {
        if (!get) goto bad_method;
        handle_slots(s, resp);
    } else {
        oai_errorf(&e, 404, "invalid_request_error", NULL, "no route for %s %s", m, path);
        respond_error(resp, &e);
    }
    simple_log(s, req, resp->status);
    return;
bad_method:
    oai_errorf(&e, 405, "invalid_request_error", NULL, "%s is not allowed on %s", m, path);
    respond_error(resp, &e);
    simple_log(s, req, 405);
}

/* ============================================================ lifetime ===== */

static void model_free_one(srv_model *sm) {
    sched_free(sm->sc);
    tok_vocab_free(sm->v);
    model_free(sm->m);
    free(sm->name);
}

static void local_generate(void *ud, int local, int kind, http_request *req, const char *body, size_t len,
                           http_response *resp) {
    (void)local; /* the body names the local model */
    handle_generate(ud, (oai_kind)kind, req, body, len, resp);
}

/* The router's one line per routed request (router.h: router_log). */
static void route_log(void *ud, const router_log *rl) {
    log_info li = {.request_id = rl->request_id,
                   .method = "POST",
                   .traceparent = traceparent_ok(rl->traceparent) ? rl->traceparent : NULL,
                   .path = rl->path,
                   .peer = rl->peer,
                   .status = rl->status,
                   .error = rl->error,
                   .total_ms = rl->total_ms,
                   .route = rl};
    log_request(ud, &li);
}

server *server_init(const server_params *p, const server_model *models, int n_models, sh_err *err) {
    const cluster_config *cc = p->cluster;
    server_model cm[256];
    if (cc) {
        /* cluster mode: the config's local models, then the router over them and the nodes */
        if (n_models) return sh_errf(err, "give models either with -m or in the cluster config, not both"), NULL;
        for (int i = 0; i < cc->n_locals && i < 256; i++) cm[i] = (server_model){cc->locals[i].name, cc->locals[i].path};
        models = cm;
        n_models = cc->n_locals < 256 ? cc->n_locals : 256;
    }
    if (n_models < 1 && !cc) {
        sh_errf(err, "no model given (-m MODEL.gguf)");
        return NULL;
    }
    server *s = calloc(1, sizeof *s);
    if (!s) return sh_errf(err, "out of memory"), NULL;
    s->p = *p;
    s->log = p->log ? p->log : stderr;
    pthread_mutex_init(&s->log_mu, NULL);
    s->met = metrics_init();
    s->models = calloc((size_t)(n_models ? n_models : 1), sizeof *s->models);
    if (!s->met || !s->models) {
        sh_errf(err, "out of memory");
        goto fail;
    }
    metrics_gauge_fn_add(s->met, "shoal_resident_memory_bytes", "Resident set size of the process.", metrics_process_rss, NULL);
    for (int i = 0; i < n_models; i++) {
        for (int k = 0; k < i; k++)
            if (!strcmp(models[k].name, models[i].name)) {
                sh_errf(err, "model name '%s' is given twice", models[i].name);
                goto fail;
            }
        srv_model *sm = &s->models[i];
        s->n_models = i + 1;
        sm->name = strdup(models[i].name);
        model_params mp = {.no_repack = p->no_repack};
        if (!(sm->m = model_load_ex(models[i].path, &mp, err))) goto fail;
        if (!(sm->v = tok_vocab_from_gguf(sm->m->g, err))) goto fail;
        hash_sha256_hex(sm->m->g->base, (size_t)sm->m->g->size, sm->sha);
        sm->chat_template = p->chat_template;
        if (p->chat_template && tok_chat_detect(p->chat_template) == TOK_CHAT_UNKNOWN) {
            sh_errf(err, "--chat-template '%s' is not a known template family", p->chat_template);
            goto fail;
        }
        if (!p->chat_template && tok_chat_detect(tok_chat_template(sm->v)) == TOK_CHAT_UNKNOWN)
            fprintf(stderr, "shoal: warning: model '%s': %s chat template; chat requests use ChatML "
                            "(--chat-template NAME to choose)\n", sm->name,
                    tok_chat_template(sm->v) ? "unrecognised" : "no");
        sched_params sp = {.n_slots = p->n_slots, .n_ctx = p->n_ctx, .n_threads = p->n_threads,
                           .max_queue = p->max_queue, .chunk = p->chunk, .kv_f32 = p->kv_f32,
                           .name = sm->name, .metrics = s->met};
        if (!(sm->sc = sched_init(sm->m, sm->v, &sp, err))) {
            sh_err_prefix(err, models[i].path);
            goto fail;
        }
    }
    if (cc) {
        router_local_ops ops = {.generate = local_generate, .log = route_log, .ud = s};
        if (!(s->rt = router_init(cc, &ops, s->met, err))) goto fail;
    }
    http_config hc = {.host = p->host, .port = p->port, .max_body = p->max_body};
    if (!(s->http = http_server_start(&hc, on_request, s, err))) goto fail;
    atomic_store(&s->ready, true);
    return s;
fail:
    server_free(s);
    return NULL;
}

uint16_t server_port(const server *s) { return http_server_port(s->http); }

int server_drain(server *s, double timeout_s) {
    atomic_store(&s->draining, true);
    double end = http_now_ms() + timeout_s * 1e3;
    int busy;
    for (;;) {
        busy = 0;
        for (int i = 0; i < s->n_models; i++) {
            sched_stats st;
            sched_get_stats(s->models[i].sc, &st);
            busy += st.busy_slots + st.queued;
        }
        unsigned active = http_server_active(s->http);
        if ((busy == 0 && active == 0) || http_now_ms() > end) break;
        usleep(10000);
    }
    return busy;
}

void server_free(server *s) {
    if (!s) return;
    if (s->http) http_server_quiesce(s->http);
    for (int i = 0; i < s->n_models; i++) sched_free(s->models[i].sc), s->models[i].sc = NULL;
    http_server_stop(s->http);
    router_free(s->rt);
    for (int i = 0; i < s->n_models; i++) model_free_one(&s->models[i]);
    free(s->models);
    metrics_free(s->met);
    pthread_mutex_destroy(&s->log_mu);
    free(s);
}

/* ============================================================ chat templates ===== */

static char *render_chat(srv_model *sm, const oai_request *r, oai_error *e) {
    tok_chat_msg *msgs = calloc(r->n_messages, sizeof *msgs);
    if (!msgs) return oai_errorf(e, 500, "server_error", NULL, "out of memory"), NULL;
    for (size_t i = 0; i < r->n_messages; i++) {
        msgs[i].role = r->messages[i].role;
        msgs[i].content = r->messages[i].content;
    }
    sh_err err = {{0}};
    char *text = tok_chat_apply(tok_chat_template(sm->v), sm->chat_template, msgs, r->n_messages,
                                true, NULL, NULL, &err);
    free(msgs);
    if (!text) oai_errorf(e, 400, "invalid_request_error", "messages", "chat template: %s", err.msg);
    return text;
}
