/*
 * serve/gen — /v1/completions and /v1/chat/completions on a decoder (server_int.h).
 *
 * A generation request goes: HTTP thread (auth, parse, tokenize, submit) -> engine thread
 * (events through gen_emit) -> either the HTTP thread waiting for the whole answer, or the
 * connection's stream pulling SSE chunks from a channel. A gen_ctx carries one request across
 * those threads; it is reference-counted (the engine side drops its reference after the DONE
 * event, the HTTP side when the response is over).
 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "api/oai_req.h"
#include "http/chan.h"
#include "http/http.h"
#include "serve/sched.h"
#include "serve/server_int.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

/* ============================================================ generation context ===== */

typedef struct gen_ctx {
    _Atomic int refs;
    server *srv;
    srv_model *sm;
    oai_kind kind;
    bool stream, include_usage, logprobs;
    bool tokens_as_ids;         /* logprobs name tokens "token_id:N" */
    json_t *prompt_ids, *out_ids; /* return_token_ids (non-streamed only), else NULL */
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

    bool store;                 /* a cacheable miss: the whole answer goes to the cache */
    srv_sem_pending sem;        /* and to the semantic tier, when on */
    srv_flight *flight;         /* the same request arriving meanwhile waits for this one */
    uint8_t ckey[CACHE_KEY_BYTES];
} gen_ctx;

static void gen_release(gen_ctx *g) {
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
    sched_req_release(g->req);
    chan_release(g->ch);
    tok_buf_free(&g->text);
    json_decref(g->lp);
    json_decref(g->prompt_ids);
    json_decref(g->out_ids);
    srv_sem_pending_free(&g->sem);
    srv_flight_end(g->srv, g->flight, NULL); /* no answer to share (an error, cancelled, ...) */
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

static json_t *piece_json(const gen_ctx *g, int32_t id) {
    const tok_vocab *v = g->sm->v;
    if (g->tokens_as_ids) return json_sprintf("token_id:%d", (int)id);
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
            json_array_append_new(top, json_pack("{s:o, s:f, s:o}", "token", piece_json(g, ev->top[i].id),
                                                 "logprob", ev->top[i].logprob, "bytes", token_bytes(tp ? tp : "", tn)));
        }
        json_array_append_new(content, json_pack("{s:o, s:f, s:o, s:o}", "token", piece_json(g, ev->token),
                                                 "logprob", ev->logprob, "bytes", token_bytes(p ? p : "", n),
                                                 "top_logprobs", top));
        return;
    }
    json_t *top = json_object();
    for (int i = 0; i < ev->n_top; i++) {
        json_t *k = piece_json(g, ev->top[i].id);
        json_object_set_new(top, json_string_value(k), json_real(ev->top[i].logprob));
        json_decref(k);
    }
    json_array_append_new(json_object_get(lp, "tokens"), piece_json(g, ev->token));
    if (ev->no_logprob) { /* the echoed prompt's first token: OpenAI gives nulls */
        json_decref(top);
        json_array_append_new(json_object_get(lp, "token_logprobs"), json_null());
        json_array_append_new(json_object_get(lp, "top_logprobs"), json_null());
    } else {
        json_array_append_new(json_object_get(lp, "token_logprobs"), json_real(ev->logprob));
        json_array_append_new(json_object_get(lp, "top_logprobs"), top);
    }
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
    char *s = srv_dump(j);
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
        if (len || !finish) json_object_set_new(delta, "content", srv_text_json(text, len));
        json_object_set_new(c, "delta", delta);
    } else {
        json_object_set_new(c, "text", srv_text_json(text, len));
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
        json_object_set_new(j, "choices", json_pack("[o]", chunk_choice(g, "", 0, NULL, srv_finish_name(ev->finish))));
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
                   .finish = srv_finish_name(ev->finish), .prompt_tokens = ev->prompt_tokens,
                   .completion_tokens = ev->completion_tokens, .cached_tokens = ev->cached_tokens,
                   .queue_ms = ev->queue_ms, .ttft_ms = ev->ttft_ms,
                   .total_ms = http_now_ms() - g->start_ms, .prompt = g->prompt_text, .output = output,
                   .error = ev->error};
    srv_log_request(g->srv, &li);
    srv_count_request(g->srv, g->sm->name, g->path, status);
}

/* Adds a token event to the whole answer being collected (text, logprobs, ids). */
static void collect(gen_ctx *g, const sched_event *ev) {
    if (g->logprobs && ev->token >= 0) add_logprobs(g, g->lp, ev, g->text.n);
    if (g->out_ids && ev->token >= 0 && !ev->prompt) json_array_append_new(g->out_ids, json_integer(ev->token));
    if (!ev->text_len) return;
    if (g->text.n + ev->text_len + 1 > g->text.cap) {
        size_t cap = (g->text.cap ? g->text.cap * 2 : 256) + ev->text_len;
        char *d = realloc(g->text.data, cap);
        if (d) g->text.data = d, g->text.cap = cap;
        else g->store = false; /* lost bytes: never cache a partial answer */
    }
    if (g->text.n + ev->text_len + 1 <= g->text.cap) {
        memcpy(g->text.data + g->text.n, ev->text, ev->text_len);
        g->text.n += ev->text_len;
        g->text.data[g->text.n] = 0;
    }
}

static json_t *whole_answer(gen_ctx *g, const sched_event *ev);

/* Only whole answers are stored: never errors, cancellations or deadline-cut ones. */
static bool storable(const gen_ctx *g, const sched_event *ev) {
    return g->store && (ev->finish == SCHED_FINISH_STOP || ev->finish == SCHED_FINISH_LENGTH) &&
           !ev->deadline_exceeded;
}

static void gen_emit(void *ctx, const sched_event *ev) {
    gen_ctx *g = ctx;
    if (g->stream) {
        /* a stream being cached also collects the whole answer (engine thread only: no lock) */
        if (g->store && ev->kind == SCHED_EV_TOKEN) collect(g, ev);
        stream_event(g, ev);
        if (ev->kind == SCHED_EV_DONE) {
            if (storable(g, ev)) {
                json_t *j = whole_answer(g, ev);
                if (j) srv_cache_store(g->srv, g->ckey, j), srv_sem_store(g->srv, &g->sem, j);
                if (j) srv_flight_end(g->srv, g->flight, j), g->flight = NULL;
                json_decref(j);
            }
            log_done(g, ev, ev->finish == SCHED_FINISH_CANCELLED ? 499 : 200, NULL);
            gen_release(g); /* the engine side's reference */
        }
        return;
    }
    pthread_mutex_lock(&g->mu);
    if (ev->kind == SCHED_EV_TOKEN) {
        collect(g, ev);
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
        srv_respond_error(resp, &e);
        sched_event copy = *ev;
        copy.error = g->error;
        log_done(g, &copy, e.status, NULL);
        return;
    }
    json_t *j = whole_answer(g, ev);
    if (storable(g, ev) && j) {
        srv_cache_store(g->srv, g->ckey, j), srv_sem_store(g->srv, &g->sem, j);
        srv_flight_end(g->srv, g->flight, j), g->flight = NULL;
    }
    srv_respond_json(resp, 200, j);
    log_done(g, ev, 200, g->text.data ? g->text.data : "");
}

/* The answer as a whole (chat.completion / text_completion) from what was collected. */
static json_t *whole_answer(gen_ctx *g, const sched_event *ev) {
    json_t *choice = json_pack("{s:i}", "index", 0);
    const char *text = g->text.data ? g->text.data : "";
    if (g->kind == OAI_CHAT)
        json_object_set_new(choice, "message",
                            json_pack("{s:s, s:o}", "role", "assistant", "content", srv_text_json(text, g->text.n)));
    else
        json_object_set_new(choice, "text", srv_text_json(text, g->text.n));
    json_object_set_new(choice, "logprobs", g->logprobs ? json_incref(g->lp) : json_null());
    json_object_set_new(choice, "finish_reason", json_string(srv_finish_name(ev->finish)));
    if (g->out_ids) json_object_set(choice, "token_ids", g->out_ids);
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", g->id, "object",
                          g->kind == OAI_CHAT ? "chat.completion" : "text_completion", "created",
                          (json_int_t)g->created, "model", g->sm->name, "choices", choice, "usage",
                          usage_json(ev));
    if (ev->deadline_exceeded) json_object_set_new(j, "deadline_exceeded", json_true());
    if (g->prompt_ids) json_object_set(j, "prompt_token_ids", g->prompt_ids);
    return j;
}

void srv_handle_generate(server *s, oai_kind kind, http_request *req, const char *body, size_t len,
                            http_response *resp) {
    oai_request r;
    oai_error e;
    if (oai_parse_request(kind, body, len, &r, &e)) {
        srv_respond_error(resp, &e);
        srv_count_request(s, NULL, srv_endpoint_path[kind], e.status);
        return;
    }
    srv_model *sm = srv_find_model(s, r.model);
    char *chat_text = NULL;
    tok_ids ids = {0};
    gen_ctx *g = NULL;
    srv_sem_pending sem = {0};
    srv_flight *flight = NULL;
    if (!sm) {
        oai_errorf(&e, 404, "invalid_request_error", "model", "The model '%s' does not exist", r.model);
        e.code = "model_not_found";
        goto fail;
    }
    if (sm->em) {
        oai_errorf(&e, 400, "invalid_request_error", "model",
                   "'%s' is an encoder (it does not generate text): use /v1/embeddings, "
                   "/v1/classify or /v1/rerank", sm->name);
        e.code = "model_not_supported";
        goto fail;
    }
    uint8_t key[CACHE_KEY_BYTES];
    srv_cache_mode cmode = srv_cache_plan(s, sm, &r, req, key);
    if (cmode == SRV_CACHE_USE && srv_cache_answer(s, sm, &r, req, key, resp)) { /* before any tokenizing */
        oai_request_free(&r);
        return;
    }
    if (cmode == SRV_CACHE_USE) { /* the same request being generated right now: wait for it */
        bool leader;
        flight = srv_flight_begin(s, key, &leader);
        if (flight && !leader) {
            char *val = NULL;
            size_t n = 0;
            int got = srv_flight_wait(s, flight, req, &val, &n);
            srv_flight_release(s, flight);
            flight = NULL;
            if (got && srv_cache_answer_value(s, sm, &r, req, resp, val, n, "inflight")) {
                oai_request_free(&r);
                return;
            }
            if (http_req_client_gone(req)) {
                oai_errorf(&e, 499, "invalid_request_error", NULL, "the request was cancelled");
                goto fail;
            }
        }
    }
    if (cmode == SRV_CACHE_USE && srv_sem_lookup(s, sm, &r, req, resp, &sem)) {
        srv_flight_end(s, flight, NULL);
        oai_request_free(&r);
        return;
    }
    if (cmode != SRV_CACHE_OFF) http_resp_header(resp, "X-Shoal-Cache", cmode == SRV_CACHE_BYPASS ? "bypass" : "miss");
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
    srv_new_id(g->id, sizeof g->id, kind == OAI_CHAT ? "chatcmpl-" : "cmpl-");
    snprintf(g->request_id, sizeof g->request_id, "%s", http_req_id(req));
    const char *tp = http_req_header(req, "traceparent");
    if (srv_traceparent_ok(tp)) snprintf(g->traceparent, sizeof g->traceparent, "%s", tp);
    snprintf(g->path, sizeof g->path, "%s", srv_endpoint_path[kind]);
    snprintf(g->peer, sizeof g->peer, "%s", http_req_peer(req));
    if (s->p.log_prompts) g->prompt_text = strdup(kind == OAI_CHAT ? chat_text : (r.prompt ? r.prompt : ""));
    if (g->logprobs) g->lp = new_logprobs(kind);
    g->tokens_as_ids = r.tokens_as_ids;
    g->store = cmode == SRV_CACHE_USE || cmode == SRV_CACHE_REFRESH;
    memcpy(g->ckey, key, sizeof key);
    g->sem = sem; /* g owns it now */
    sem.vec = NULL;
    g->flight = flight;
    flight = NULL;
    if (r.return_token_ids) {
        g->prompt_ids = json_array();
        g->out_ids = json_array();
        for (size_t i = 0; g->prompt_ids && i < ids.n; i++) json_array_append_new(g->prompt_ids, json_integer(ids.ids[i]));
        if (!g->prompt_ids || !g->out_ids) {
            oai_errorf(&e, 500, "server_error", NULL, "out of memory");
            goto fail;
        }
    }
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
    rp.echo = r.echo;
    rp.eog_event = r.tokens_as_ids || r.return_token_ids;
    rp.sp.seed = r.seed;
    if (!r.has_seed && getrandom(&rp.sp.seed, sizeof rp.sp.seed, 0) != (ssize_t)sizeof rp.sp.seed)
        rp.sp.seed = (uint64_t)(http_now_ms() * 1e3);
    sh_err err = {{0}};
    atomic_store(&g->refs, 2);
    sched_submit_rc rc = sched_submit(sm->sc, &rp, &g->req, &err);
    if (rc != SUBMIT_OK) {
        oai_errorf(&e, srv_submit_rc_status(rc), rc == SUBMIT_DEADLINE || rc == SUBMIT_SHUTTING_DOWN || rc == SUBMIT_QUEUE_FULL
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
    srv_sem_pending_free(&sem);
    srv_flight_end(s, flight, NULL);
    srv_respond_error(resp, &e);
    {
        log_info li = {.request_id = http_req_id(req), .method = "POST", .path = srv_endpoint_path[kind],
                       .peer = http_req_peer(req), .status = e.status, .error = e.message,
                       .total_ms = http_now_ms() - http_req_start_ms(req)};
        srv_log_request(s, &li);
    }
    /* unknown model names are the client's text: one label for all, so metrics stay bounded */
    srv_count_request(s, sm ? sm->name : "(unknown)", srv_endpoint_path[kind], e.status);
    if (g) gen_release(g);
    tok_ids_free(&ids);
    free(chat_text);
    oai_request_free(&r);
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

