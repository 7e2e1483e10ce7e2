/*
 * serve/gen — /v1/completions, /v1/chat/completions and /v1/responses on a decoder
 * (server_int.h; the Responses API's output and store are in responses.c).
 *
 * n choices are n scheduler requests (gen_int.h). Tools (api/tools) and response_format give
 * a grammar that the scheduler applies token by token; a choice whose text is tool calls is
 * held back while streaming and sent as tool_calls deltas when it ends.
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
#include "api/tools.h"
#include "grammar/grammar.h"
#include "http/chan.h"
#include "http/http.h"
#include "serve/gen_int.h"
#include "serve/sched.h"
#include "serve/server_int.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

/* ============================================================ generation context ===== */

static void gen_release(gen_ctx *g) {
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
    for (int i = 0; g->choices && i < g->n; i++) {
        gen_choice *c = &g->choices[i];
        sched_req_release(c->req);
        tok_buf_free(&c->text);
        json_decref(c->lp);
        json_decref(c->out_ids);
        oai_tool_calls_free(c->calls, c->n_calls);
        free(c->content);
    }
    free(g->choices);
    chan_release(g->ch);
    json_decref(g->prompt_ids);
    oai_tools_plan_free(&g->tp);
    srv_gram_release(g->srv, g->gram);
    resp_state_free(g->rs);
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
    if (g->kind != OAI_COMPLETION) {
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
    if (kind != OAI_COMPLETION) return json_pack("{s:[]}", "content");
    return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

json_t *gen_usage_json(const sched_event *ev) {
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", ev->prompt_tokens,
                     "completion_tokens", ev->completion_tokens, "total_tokens",
                     ev->prompt_tokens + ev->completion_tokens, "prompt_tokens_details",
                     "cached_tokens", ev->cached_tokens);
}

/* tool_calls as OpenAI's chat API writes them; with_index: the streaming form. */
static json_t *tool_calls_json(const gen_choice *c, bool with_index) {
    json_t *a = json_array();
    for (size_t i = 0; i < c->n_calls; i++) {
        json_t *t = json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", c->calls[i].id, "type", "function", "function",
                              "name", c->calls[i].name, "arguments", c->calls[i].arguments);
        if (with_index) json_object_set_new(t, "index", json_integer((json_int_t)i));
        json_array_append_new(a, t);
    }
    return a;
}

static const char *choice_finish(const gen_choice *c) {
    return c->n_calls ? "tool_calls" : srv_finish_name(c->fin.finish);
}

/* ============================================================ SSE chunks ===== */

static json_t *chunk_base(gen_ctx *g) {
    return json_pack("{s:s, s:s, s:I, s:s}", "id", g->id, "object",
                     g->kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)g->created, "model", g->sm->name);
}

void gen_sse(gen_ctx *g, const char *event, json_t *j) {
    char *s = srv_dump(j);
    if (!s) return;
    size_t n = strlen(s), e = event ? strlen(event) + 8 : 0;
    char *line = malloc(n + e + 9);
    if (line) {
        size_t k = 0;
        if (event) k = (size_t)sprintf(line, "event: %s\n", event);
        memcpy(line + k, "data: ", 6);
        memcpy(line + k + 6, s, n);
        memcpy(line + k + 6 + n, "\n\n", 3);
        if (chan_write(g->ch, line, k + n + 8)) /* client gone or too slow */
            for (int i = 0; i < g->n; i++) sched_cancel(g->choices[i].req);
        free(line);
    }
    free(s);
}

/* One choice of a stream chunk: text or delta, logprobs, finish_reason. */
static json_t *chunk_choice(gen_ctx *g, gen_choice *c, const char *text, size_t len, json_t *lp,
                            const char *finish) {
    json_t *ch = json_pack("{s:i}", "index", c->index);
    if (g->kind == OAI_CHAT) {
        json_t *delta = json_object();
        if (!c->sent_role) {
            json_object_set_new(delta, "role", json_string("assistant"));
            c->sent_role = true;
        }
        if (len || !finish) json_object_set_new(delta, "content", srv_text_json(text, len));
        json_object_set_new(ch, "delta", delta);
    } else {
        json_object_set_new(ch, "text", srv_text_json(text, len));
    }
    json_object_set_new(ch, "logprobs", lp ? lp : json_null());
    json_object_set_new(ch, "finish_reason", finish ? json_string(finish) : json_null());
    return ch;
}

/* Streams text[0..n) of choice c (held text being released, or a token's), with lp. */
static void stream_text(gen_ctx *g, gen_choice *c, const char *text, size_t n, json_t *lp) {
    c->sent_text += n;
    if (g->kind == OAI_RESPONSES) {
        if (n || lp) resp_stream_text(g, c, text, n, lp);
        return;
    }
    if (!n && !lp) return;
    json_t *j = chunk_base(g);
    json_object_set_new(j, "choices", json_pack("[o]", chunk_choice(g, c, text, n, lp, NULL)));
    gen_sse(g, NULL, j);
}

/* The text collected so far decides a tool-watching choice's mode. */
static void decide_mode(gen_ctx *g, gen_choice *c) {
    if (c->mode != GEN_WATCH) return;
    const char *t = c->text.data ? c->text.data : "";
    if (oai_tools_opens(g->tools, t, c->text.n)) c->mode = GEN_CALLS;
    else if (!oai_tools_may_open(g->tools, t, c->text.n)) c->mode = GEN_TEXT;
}

/* A choice is over: its calls parsed from the text when it made any. */
static void settle_choice(gen_ctx *g, gen_choice *c) {
    if (!g->tools || !g->tools->calls || c->mode == GEN_TEXT) return;
    if (c->fin.finish != SCHED_FINISH_STOP) return; /* cut short: the text as it is */
    const char *t = c->text.data ? c->text.data : "";
    if (oai_tools_parse(g->tools, t, c->text.n, &c->calls, &c->n_calls) != 1) c->n_calls = 0;
}

static void stream_choice_done(gen_ctx *g, gen_choice *c) {
    if (c->fin.finish == SCHED_FINISH_ERROR || c->fin.finish == SCHED_FINISH_CANCELLED) return;
    if (!c->n_calls && c->sent_text < c->text.n) /* held text that turned out to be text */
        stream_text(g, c, c->text.data + c->sent_text, c->text.n - c->sent_text, NULL);
    if (g->kind == OAI_RESPONSES) return;
    json_t *j = chunk_base(g);
    if (c->n_calls) {
        json_t *ch = chunk_choice(g, c, "", 0, NULL, NULL);
        json_t *delta = json_object_get(ch, "delta");
        json_object_set_new(delta, "content", json_null());
        json_object_set_new(delta, "tool_calls", tool_calls_json(c, true));
        json_object_set_new(j, "choices", json_pack("[o]", ch));
        gen_sse(g, NULL, j);
        j = chunk_base(g);
    }
    json_object_set_new(j, "choices", json_pack("[o]", chunk_choice(g, c, "", 0, NULL, choice_finish(c))));
    if (c->fin.deadline_exceeded) json_object_set_new(j, "deadline_exceeded", json_true());
    gen_sse(g, NULL, j);
}

static void stream_all_done(gen_ctx *g) {
    const sched_event *ev = &g->fin;
    bool failed = false, cancelled = false;
    for (int i = 0; i < g->n; i++) {
        failed |= g->choices[i].fin.finish == SCHED_FINISH_ERROR;
        cancelled |= g->choices[i].fin.finish == SCHED_FINISH_CANCELLED;
    }
    if (failed) {
        const char *msg = "error";
        for (int i = 0; i < g->n; i++)
            if (g->choices[i].fin.finish == SCHED_FINISH_ERROR) msg = g->choices[i].error;
        if (g->kind == OAI_RESPONSES) {
            resp_stream_error(g, msg);
        } else {
            json_t *e = json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", msg, "type", "server_error", "param", "code");
            gen_sse(g, NULL, e);
        }
    } else if (!cancelled) {
        if (g->kind == OAI_RESPONSES) {
            resp_stream_done(g);
        } else {
            if (g->include_usage) {
                json_t *j = chunk_base(g);
                json_object_set_new(j, "choices", json_array());
                json_object_set_new(j, "usage", gen_usage_json(ev));
                gen_sse(g, NULL, j);
            }
            chan_write(g->ch, "data: [DONE]\n\n", 14);
        }
    }
    chan_close(g->ch);
}

static void stream_event(gen_ctx *g, gen_choice *c, const sched_event *ev) {
    if (ev->kind != SCHED_EV_TOKEN) return;
    json_t *lp = NULL;
    if (g->logprobs && ev->token >= 0) {
        lp = new_logprobs(g->kind);
        add_logprobs(g, lp, ev, c->streamed);
    }
    c->streamed += ev->text_len;
    decide_mode(g, c);
    if (c->mode != GEN_TEXT) { /* held: a tool call, or maybe one */
        json_decref(lp);
        return;
    }
    size_t from = c->sent_text, n = c->text.n - from; /* the new text, and any held before */
    stream_text(g, c, c->text.data ? c->text.data + from : "", n, lp);
}

/* ============================================================ events (engine thread) ===== */

static void log_done(gen_ctx *g, const sched_event *ev, int status, const char *output) {
    log_info li = {.request_id = g->request_id, .traceparent = g->traceparent[0] ? g->traceparent : NULL,
                   .method = "POST", .path = g->path, .peer = g->peer, .sm = g->sm, .status = status,
                   .finish = g->n == 1 ? choice_finish(&g->choices[0]) : srv_finish_name(ev->finish),
                   .prompt_tokens = ev->prompt_tokens,
                   .completion_tokens = ev->completion_tokens, .cached_tokens = ev->cached_tokens,
                   .queue_ms = ev->queue_ms, .ttft_ms = ev->ttft_ms,
                   .total_ms = http_now_ms() - g->start_ms, .prompt = g->prompt_text, .output = output,
                   .error = ev->error};
    srv_log_request(g->srv, &li);
    srv_count_request(g->srv, g->sm->name, g->path, status);
}

/* Adds a token event to the choice's whole answer (text, logprobs, ids). */
static void collect(gen_ctx *g, gen_choice *c, const sched_event *ev) {
    if (g->logprobs && !g->stream && ev->token >= 0) add_logprobs(g, c->lp, ev, c->text.n);
    if (c->out_ids && ev->token >= 0 && !ev->prompt) json_array_append_new(c->out_ids, json_integer(ev->token));
    if (!ev->text_len) return;
    if (c->text.n + ev->text_len + 1 > c->text.cap) {
        size_t cap = (c->text.cap ? c->text.cap * 2 : 256) + ev->text_len;
        char *d = realloc(c->text.data, cap);
        if (d) c->text.data = d, c->text.cap = cap;
        else g->store = false; /* lost bytes: never cache a partial answer */
    }
    if (c->text.n + ev->text_len + 1 <= c->text.cap) {
        memcpy(c->text.data + c->text.n, ev->text, ev->text_len);
        c->text.n += ev->text_len;
        c->text.data[c->text.n] = 0;
    }
}

static json_t *whole_answer(gen_ctx *g);

/* Only whole answers are stored: never errors, cancellations or deadline-cut ones. */
static bool storable(const gen_ctx *g) {
    const sched_event *ev = &g->fin;
    return g->store && (ev->finish == SCHED_FINISH_STOP || ev->finish == SCHED_FINISH_LENGTH) &&
           !ev->deadline_exceeded;
}

/* The DONE of one choice: kept, summed into g->fin; true when it was the last. */
static bool choice_done(gen_ctx *g, gen_choice *c, const sched_event *ev) {
    c->fin = *ev;
    c->fin.error = NULL;
    c->done = true;
    if (ev->error) snprintf(c->error, sizeof c->error, "%s", ev->error);
    settle_choice(g, c);
    sched_event *f = &g->fin;
    if (g->n_done == 0) {
        *f = c->fin;
    } else {
        f->completion_tokens += ev->completion_tokens;
        if (ev->finish == SCHED_FINISH_ERROR || ev->finish == SCHED_FINISH_CANCELLED || f->finish == SCHED_FINISH_STOP)
            f->finish = ev->finish;
        f->deadline_exceeded |= ev->deadline_exceeded;
        if (ev->total_ms > f->total_ms) f->total_ms = ev->total_ms;
    }
    return ++g->n_done == g->n;
}

static void gen_emit(void *ctx, const sched_event *ev) {
    gen_choice *c = ctx;
    gen_ctx *g = c->g;
    if (g->stream) { /* the engine thread alone touches a stream's choices: no lock */
        if (ev->kind == SCHED_EV_TOKEN) {
            collect(g, c, ev);
            stream_event(g, c, ev);
            return;
        }
        bool last = choice_done(g, c, ev);
        stream_choice_done(g, c);
        if (last) {
            stream_all_done(g);
            if (storable(g)) {
                json_t *j = whole_answer(g);
                if (j) srv_cache_store(g->srv, g->ckey, j), srv_sem_store(g->srv, &g->sem, j);
                if (j) srv_flight_end(g->srv, g->flight, j), g->flight = NULL;
                json_decref(j);
            }
            log_done(g, &g->fin, g->fin.finish == SCHED_FINISH_CANCELLED ? 499 : 200, NULL);
        }
        gen_release(g); /* this choice's engine-side reference */
        return;
    }
    pthread_mutex_lock(&g->mu);
    if (ev->kind == SCHED_EV_TOKEN) {
        collect(g, c, ev);
    } else if (choice_done(g, c, ev)) {
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
        for (int i = 0; i < g->n; i++) sched_cancel(g->choices[i].req);
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
    bool special = r->kind != OAI_COMPLETION; /* chat templates contain control tokens */
    if (tok_tokenize(sm->v, text, strlen(text), true, special, ids, &err))
        return oai_errorf(e, 500, "server_error", NULL, "tokenizer: %s", err.msg);
    return 0;
}

static tok_chat_tmpl chat_family(const srv_model *sm) {
    tok_chat_tmpl t = tok_chat_detect(sm->chat_template ? sm->chat_template : tok_chat_template(sm->v));
    return t == TOK_CHAT_UNKNOWN ? TOK_CHAT_CHATML : t;
}

/* The chat prompt text of the plan's messages with the model's chat template. Returns a
 * malloc'd string, or NULL with e filled. */
static char *render_chat(srv_model *sm, const oai_tools_plan *tp, oai_error *e) {
    sh_err err = {{0}};
    char *text = tok_chat_apply(tok_chat_template(sm->v), sm->chat_template, tp->msgs, tp->n_msgs, true,
                                NULL, NULL, &err);
    if (!text) oai_errorf(e, 400, "invalid_request_error", "messages", "chat template: %s", err.msg);
    return text;
}

/* The constraint of the request's output: the tool calls' grammar, or response_format's.
 * NULL with e->status 0 when the output is free; NULL with e filled on an error. */
static gram *output_grammar(server *s, const oai_request *r, const oai_tools_plan *tp, const char **trigger,
                            oai_error *e) {
    *trigger = NULL;
    e->status = 0;
    sh_err err = {{0}};
    gram *gm = NULL;
    const char *param = r->kind == OAI_RESPONSES ? "text.format" : "response_format";
    if (tp && tp->calls) {
        if (r->format != OAI_FORMAT_TEXT && tp->trigger)
            return oai_errorf(e, 400, "invalid_request_error", param,
                              "a response format together with tools and tool_choice 'auto' is not supported: "
                              "use tool_choice 'required' or a named function, or leave the tools out"), NULL;
        if (!(gm = srv_gram_acquire(s, SRV_GRAM_GBNF, tp->gbnf, &err)))
            return oai_errorf(e, 500, "server_error", "tools", "tool-call grammar: %s", err.msg), NULL;
        *trigger = tp->trigger;
        return gm;
    }
    switch (r->format) {
    case OAI_FORMAT_TEXT: return NULL;
    case OAI_FORMAT_JSON_OBJECT:
        if (!(gm = srv_gram_acquire(s, SRV_GRAM_JSON_OBJECT, NULL, &err))) oai_errorf(e, 500, "server_error", param, "%s", err.msg);
        return gm;
    case OAI_FORMAT_JSON_SCHEMA:
        gm = srv_gram_acquire(s, SRV_GRAM_SCHEMA, r->format_schema, &err);
        if (!gm) oai_errorf(e, 400, "invalid_request_error", param, "%s", err.msg);
        return gm;
    case OAI_FORMAT_GRAMMAR:
        gm = srv_gram_acquire(s, SRV_GRAM_GBNF, r->grammar, &err);
        if (!gm) oai_errorf(e, 400, "invalid_request_error", param, "grammar: %s", err.msg);
        return gm;
    }
    return NULL;
}

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
        if (!g->done && http_req_client_gone(req))
            for (int i = 0; i < g->n; i++) sched_cancel(g->choices[i].req);
    }
    pthread_mutex_unlock(&g->mu);
}

static void answer_whole(gen_ctx *g, http_request *req, http_response *resp) {
    wait_done(g, req);
    const sched_event *ev = &g->fin;
    if (ev->finish == SCHED_FINISH_ERROR || ev->finish == SCHED_FINISH_CANCELLED) {
        const char *msg = "";
        for (int i = 0; i < g->n; i++)
            if (g->choices[i].error[0]) msg = g->choices[i].error;
        oai_error e;
        if (ev->finish == SCHED_FINISH_CANCELLED)
            oai_errorf(&e, 499, "invalid_request_error", NULL, "the request was cancelled");
        else if (ev->deadline_exceeded)
            oai_errorf(&e, 503, "server_error", "deadline_ms", "%s", msg);
        else
            oai_errorf(&e, 500, "server_error", NULL, "%s", msg[0] ? msg : "generation failed");
        srv_respond_error(resp, &e);
        sched_event copy = *ev;
        copy.error = msg;
        log_done(g, &copy, e.status, NULL);
        return;
    }
    json_t *j = whole_answer(g);
    if (storable(g) && j) {
        srv_cache_store(g->srv, g->ckey, j), srv_sem_store(g->srv, &g->sem, j);
        srv_flight_end(g->srv, g->flight, j), g->flight = NULL;
    }
    srv_respond_json(resp, 200, j);
    const gen_choice *c0 = &g->choices[0];
    log_done(g, ev, 200, c0->text.data ? c0->text.data : "");
}

/* The answer as a whole (chat.completion / text_completion / response) from what was collected. */
static json_t *whole_answer(gen_ctx *g) {
    if (g->kind == OAI_RESPONSES) return resp_whole(g);
    json_t *choices = json_array();
    for (int i = 0; i < g->n; i++) {
        gen_choice *c = &g->choices[i];
        json_t *choice = json_pack("{s:i}", "index", i);
        const char *text = c->text.data ? c->text.data : "";
        if (g->kind == OAI_CHAT) {
            json_t *m = json_pack("{s:s, s:o, s:n}", "role", "assistant", "content",
                                  c->n_calls ? json_null() : srv_text_json(text, c->text.n), "refusal");
            if (c->n_calls) json_object_set_new(m, "tool_calls", tool_calls_json(c, false));
            json_object_set_new(choice, "message", m);
        } else {
            json_object_set_new(choice, "text", srv_text_json(text, c->text.n));
        }
        json_object_set_new(choice, "logprobs", g->logprobs ? json_incref(c->lp) : json_null());
        json_object_set_new(choice, "finish_reason", json_string(choice_finish(c)));
        if (c->out_ids) json_object_set(choice, "token_ids", c->out_ids);
        json_array_append_new(choices, choice);
    }
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:o, s:o}", "id", g->id, "object",
                          g->kind == OAI_CHAT ? "chat.completion" : "text_completion", "created",
                          (json_int_t)g->created, "model", g->sm->name, "choices", choices, "usage",
                          gen_usage_json(&g->fin));
    if (g->fin.deadline_exceeded) json_object_set_new(j, "deadline_exceeded", json_true());
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
    oai_tools_plan tp = {0};
    gram *gm = NULL;
    const char *trigger = NULL;
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
    if (kind == OAI_RESPONSES && resp_prepare(s, &r, &e)) goto fail;
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
    if (kind != OAI_COMPLETION) {
        if (oai_tools_plan_init(&r, chat_family(sm), &tp, &e)) goto fail;
        if (!(chat_text = render_chat(sm, &tp, &e))) goto fail;
    }
    if (!(gm = output_grammar(s, &r, kind != OAI_COMPLETION ? &tp : NULL, &trigger, &e)) && e.status) goto fail;
    if (prompt_ids(sm, &r, kind != OAI_COMPLETION ? chat_text : r.prompt, &ids, &e)) goto fail;

    int n_choices = r.n > 1 ? r.n : 1;
    g = calloc(1, sizeof *g);
    if (g && !(g->choices = calloc((size_t)n_choices, sizeof *g->choices))) {
        free(g);
        g = NULL;
    }
    if (!g) {
        oai_errorf(&e, 500, "server_error", NULL, "out of memory");
        goto fail;
    }
    atomic_store(&g->refs, 1); /* the HTTP side; the engine side's are added at submit */
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->srv = s;
    g->sm = sm;
    g->kind = kind;
    g->n = n_choices;
    g->stream = r.stream;
    g->include_usage = r.include_usage;
    g->logprobs = r.logprobs;
    g->n_top = r.top_logprobs;
    g->created = (long)time(NULL);
    g->start_ms = http_req_start_ms(req);
    g->tp = tp;
    memset(&tp, 0, sizeof tp);
    if (kind != OAI_COMPLETION) g->tools = &g->tp;
    g->gram = gm;
    gm = NULL;
    srv_new_id(g->id, sizeof g->id, kind == OAI_CHAT ? "chatcmpl-" : kind == OAI_RESPONSES ? "resp_" : "cmpl-");
    snprintf(g->request_id, sizeof g->request_id, "%s", http_req_id(req));
    const char *tph = http_req_header(req, "traceparent");
    if (srv_traceparent_ok(tph)) snprintf(g->traceparent, sizeof g->traceparent, "%s", tph);
    snprintf(g->path, sizeof g->path, "%s", srv_endpoint_path[kind]);
    snprintf(g->peer, sizeof g->peer, "%s", http_req_peer(req));
    if (s->p.log_prompts) g->prompt_text = strdup(kind != OAI_COMPLETION ? chat_text : (r.prompt ? r.prompt : ""));
    g->tokens_as_ids = r.tokens_as_ids;
    g->store = cmode == SRV_CACHE_USE || cmode == SRV_CACHE_REFRESH;
    memcpy(g->ckey, key, sizeof key);
    g->sem = sem; /* g owns it now */
    sem.vec = NULL;
    g->flight = flight;
    flight = NULL;
    if (kind == OAI_RESPONSES && !(g->rs = resp_state_init(&r))) {
        oai_errorf(&e, 500, "server_error", NULL, "out of memory");
        goto fail;
    }
    bool oom = false;
    if (r.return_token_ids) {
        g->prompt_ids = json_array();
        for (size_t i = 0; g->prompt_ids && i < ids.n; i++) json_array_append_new(g->prompt_ids, json_integer(ids.ids[i]));
        oom |= !g->prompt_ids;
    }
    for (int i = 0; i < n_choices; i++) {
        gen_choice *c = &g->choices[i];
        c->g = g;
        c->index = i;
        c->mode = g->tools && g->tools->calls ? (g->tools->trigger ? GEN_WATCH : GEN_CALLS) : GEN_TEXT;
        if (g->logprobs) oom |= !(c->lp = new_logprobs(kind));
        if (r.return_token_ids) oom |= !(c->out_ids = json_array());
    }
    if (g->stream && !(g->ch = chan_init(4u << 20, 250, NULL))) oom = true;
    if (oom) {
        oai_errorf(&e, 500, "server_error", NULL, "out of memory");
        goto fail;
    }
    /* the channel starts with a reference for each side, but here both sides reach it through
     * g, which is itself reference-counted: g keeps one, dropped in gen_release */
    if (g->ch) chan_release(g->ch);
    if (g->stream && kind == OAI_RESPONSES) resp_stream_start(g); /* before any engine event */

    sched_req_params rp = {.prompt = ids.ids, .n_prompt = (int)ids.n, .max_tokens = r.max_tokens,
                           .stop = (const char *const *)r.stop, .n_stop = (int)r.n_stop,
                           .n_top = r.logprobs ? r.top_logprobs : 0,
                           .grammar = g->gram, .trigger = trigger,
                           .bias_ids = r.logit_bias_ids, .bias = r.logit_bias, .n_bias = (int)r.n_logit_bias,
                           .arrival_ms = http_req_start_ms(req),
                           .deadline_ms = r.has_deadline ? r.deadline_ms : 0,
                           .priority = r.priority, .emit = gen_emit};
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
    uint64_t seed = r.seed;
    if (!r.has_seed && getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed) seed = (uint64_t)(http_now_ms() * 1e3);
    /* n choices are n requests with seeds seed, seed + 1, ..., queued together so that they run
     * side by side in the slots */
    int submitted = 0;
    sh_err err = {{0}};
    sched_submit_rc rc = SUBMIT_OK;
    for (int i = 0; i < n_choices; i++) {
        rp.sp.seed = seed + (uint64_t)i;
        rp.ctx = &g->choices[i];
        atomic_fetch_add(&g->refs, 1);
        rc = sched_submit(sm->sc, &rp, &g->choices[i].req, &err);
        if (rc != SUBMIT_OK) {
            atomic_fetch_sub(&g->refs, 1);
            break;
        }
        submitted++;
    }
    if (rc != SUBMIT_OK) {
        /* choices already queued are cancelled; their DONE events drop their references, and
         * g->n shrinks to them so that the last one is seen as the last */
        if (submitted) {
            pthread_mutex_lock(&g->mu);
            g->n = submitted;
            pthread_mutex_unlock(&g->mu);
            for (int i = 0; i < submitted; i++) sched_cancel(g->choices[i].req);
        }
        oai_errorf(&e, srv_submit_rc_status(rc), rc == SUBMIT_DEADLINE || rc == SUBMIT_SHUTTING_DOWN || rc == SUBMIT_QUEUE_FULL
                                              ? "server_error" : "invalid_request_error",
                   rc == SUBMIT_DEADLINE ? "deadline_ms" : rc == SUBMIT_TOO_LONG ? "prompt" : NULL, "%s", err.msg);
        if (rc == SUBMIT_TOO_LONG) e.code = "context_length_exceeded";
        if (rc == SUBMIT_QUEUE_FULL) http_resp_header(resp, "Retry-After", "1");
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
    oai_tools_plan_free(&tp);
    srv_gram_release(s, gm);
    tok_ids_free(&ids);
    free(chat_text);
    oai_request_free(&r);
}
