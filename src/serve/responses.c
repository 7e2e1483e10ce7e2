/*
 * serve/responses — OpenAI's Responses API on top of the chat machinery (gen.c): the response
 * object, its stream of typed events, and the store that keeps conversations outside the
 * engine (docs/api.md, "Responses").
 *
 * A stored response is one JSON value in the response store (a cache instance: memory, the
 * SQLite file, Redis; keyed by the SHA-256 of the id):
 *   {"response": <the response object>, "conversation": [<messages>]}
 * where the conversation is every message before the response plus its output, without the
 * instructions (which, as OpenAI has it, do not carry over to a continuation). Any node that
 * reaches the same store can continue any conversation (previous_response_id). A deleted
 * response is overwritten with a tombstone that expires with the retention period.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/gen_int.h"

#define INVALID "invalid_request_error"

struct resp_state {
    json_t *conversation;       /* messages before this response (oai form), without instructions */
    json_t *echo;               /* the request's fields the response object repeats */
    bool store;
    int seq;                    /* stream events' sequence_number */
    char msg_id[48];            /* the output message item's id */
    bool text_open;             /* stream: the message item and its text part were announced */
    tok_buf streamed;           /* stream: the text sent in deltas */
};

/* ============================================================ store ===== */

static void store_key(const char *id, uint8_t key[CACHE_KEY_BYTES]) {
    ckey k;
    ckey_init(&k);
    ckey_bytes(&k, "response", id, strlen(id));
    if (ckey_digest(&k, key)) memset(key, 0, CACHE_KEY_BYTES); /* OOM: a key no response has */
    ckey_free(&k);
}

/* The stored value of id, parsed; NULL when there is none (or it was deleted). retry: a miss in
 * a shared tier is retried (below). */
static json_t *store_get(server *s, const char *id, bool retry) {
    if (!s->resp_store) return NULL;
    uint8_t key[CACHE_KEY_BYTES];
    store_key(id, key);
    char *val = NULL;
    size_t n = 0;
    const char *tier = NULL;
    /* another node's write may still be on its way to the shared file or Redis (writes are
     * asynchronous, normally well under a millisecond): a miss there is retried for up to 20 ms */
    const cache_params *p = s->p.responses;
    int tries = retry && p && (p->db_path || p->redis_url) ? 5 : 1;
    int rc = 0;
    for (int i = 0; i < tries && (rc = cache_get(s->resp_store, key, &val, &n, &tier)) != 1; i++)
        if (i + 1 < tries) nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
    if (rc != 1) return NULL;
    json_t *j = n > 1 ? json_loadb(val, n, 0, NULL) : NULL;
    free(val);
    if (j && !json_is_object(json_object_get(j, "response"))) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* ============================================================ messages as JSON ===== */

static json_t *message_json(const oai_message *m) {
    json_t *o = json_pack("{s:s, s:s}", "role", m->role, "content", m->content ? m->content : "");
    if (m->tool_call_id) json_object_set_new(o, "tool_call_id", json_string(m->tool_call_id));
    if (m->n_tool_calls) {
        json_t *a = json_array();
        for (size_t i = 0; i < m->n_tool_calls; i++)
            json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "id", m->tool_calls[i].id, "name",
                                               m->tool_calls[i].name, "arguments", m->tool_calls[i].arguments));
        json_object_set_new(o, "tool_calls", a);
    }
    return o;
}

static char *dup_json_str(json_t *v) {
    return json_is_string(v) ? strndup(json_string_value(v), json_string_length(v)) : NULL;
}

/* Stored conversation message -> oai_message (owned strings). -1 on a malformed entry. */
static int message_from_json(json_t *o, oai_message *m) {
    memset(m, 0, sizeof *m);
    m->role = dup_json_str(json_object_get(o, "role"));
    m->content = dup_json_str(json_object_get(o, "content"));
    m->tool_call_id = dup_json_str(json_object_get(o, "tool_call_id"));
    json_t *tc = json_object_get(o, "tool_calls");
    if (json_is_array(tc) && json_array_size(tc)) {
        m->tool_calls = calloc(json_array_size(tc), sizeof *m->tool_calls);
        if (!m->tool_calls) return -1;
        size_t i;
        json_t *c;
        json_array_foreach(tc, i, c) {
            m->tool_calls[i].id = dup_json_str(json_object_get(c, "id"));
            m->tool_calls[i].name = dup_json_str(json_object_get(c, "name"));
            m->tool_calls[i].arguments = dup_json_str(json_object_get(c, "arguments"));
            m->n_tool_calls = i + 1;
            if (!m->tool_calls[i].id || !m->tool_calls[i].name || !m->tool_calls[i].arguments) return -1;
        }
    }
    return m->role && m->content ? 0 : -1;
}

static void message_clear(oai_message *m) {
    free(m->role);
    free(m->content);
    free(m->name);
    free(m->tool_call_id);
    oai_tool_calls_free(m->tool_calls, m->n_tool_calls);
    memset(m, 0, sizeof *m);
}

/* ============================================================ before generation ===== */

int resp_prepare(server *s, oai_request *r, oai_error *e) {
    if (r->n > 1) return oai_errorf(e, 400, INVALID, "n", "the Responses API has one output per request");
    if (!r->previous_response_id) return 0;
    json_t *prev = store_get(s, r->previous_response_id, true);
    if (!prev)
        return oai_errorf(e, 404, INVALID, "previous_response_id",
                          "no stored response '%.80s' (never stored, deleted, or past the retention period)",
                          r->previous_response_id);
    json_t *conv = json_object_get(prev, "conversation");
    size_t np = json_is_array(conv) ? json_array_size(conv) : 0;
    /* new order: [instructions], the stored conversation, then this request's input */
    size_t lead = r->instructions ? 1 : 0, n = lead + np + (r->n_messages - lead);
    oai_message *m = calloc(n, sizeof *m);
    if (!m) {
        json_decref(prev);
        return oai_errorf(e, 500, "server_error", NULL, "out of memory");
    }
    if (lead) m[0] = r->messages[0];
    for (size_t i = 0; i < np; i++) {
        if (message_from_json(json_array_get(conv, i), &m[lead + i])) {
            for (size_t k = lead; k <= lead + i; k++) message_clear(&m[k]);
            free(m);
            json_decref(prev);
            return oai_errorf(e, 500, "server_error", "previous_response_id", "the stored conversation is damaged");
        }
    }
    for (size_t i = lead; i < r->n_messages; i++) m[np + i] = r->messages[i];
    free(r->messages);
    r->messages = m;
    r->n_messages = n;
    json_decref(prev);
    return 0;
}

struct resp_state *resp_state_init(const oai_request *r) {
    struct resp_state *rs = calloc(1, sizeof *rs);
    if (!rs) return NULL;
    rs->store = r->store;
    rs->conversation = json_array();
    for (size_t i = r->instructions ? 1 : 0; i < r->n_messages; i++)
        json_array_append_new(rs->conversation, message_json(&r->messages[i]));
    json_t *tools = json_array();
    for (size_t i = 0; i < r->n_tools; i++) {
        json_t *params = json_loads(r->tools[i].parameters, 0, NULL);
        json_t *t = json_pack("{s:s, s:s, s:o, s:b}", "type", "function", "name", r->tools[i].name, "parameters",
                              params ? params : json_object(), "strict", r->tools[i].strict);
        json_object_set_new(t, "description", r->tools[i].description ? json_string(r->tools[i].description) : json_null());
        json_array_append_new(tools, t);
    }
    json_t *fmt;
    if (r->format == OAI_FORMAT_JSON_SCHEMA) {
        json_t *schema = json_loads(r->format_schema, 0, NULL);
        fmt = json_pack("{s:s, s:s, s:o, s:b}", "type", "json_schema", "name", r->format_name ? r->format_name : "response",
                        "schema", schema ? schema : json_object(), "strict", r->format_strict);
    } else {
        fmt = json_pack("{s:s}", "type", r->format == OAI_FORMAT_JSON_OBJECT ? "json_object" : "text");
    }
    const char *tc = r->tool_choice == OAI_TOOL_NONE ? "none" : r->tool_choice == OAI_TOOL_REQUIRED ? "required" : "auto";
    json_t *choice = r->tool_choice == OAI_TOOL_FUNCTION
                         ? json_pack("{s:s, s:s}", "type", "function", "name", r->tool_choice_name)
                         : json_string(tc);
    rs->echo = json_pack("{s:o, s:o, s:f, s:f, s:o, s:o, s:b, s:o, s:{s:o}, s:o, s:b}",
                         "instructions", r->instructions ? json_string(r->instructions) : json_null(),
                         "max_output_tokens", r->max_tokens > 0 ? json_integer(r->max_tokens) : json_null(),
                         "temperature", r->temperature, "top_p", r->top_p, "tools", tools, "tool_choice", choice,
                         "parallel_tool_calls", r->parallel_tool_calls, "previous_response_id",
                         r->previous_response_id ? json_string(r->previous_response_id) : json_null(), "text",
                         "format", fmt, "metadata", r->metadata ? json_loads(r->metadata, 0, NULL) : json_object(),
                         "store", r->store);
    if (rs->echo && !json_object_get(rs->echo, "metadata")) json_object_set_new(rs->echo, "metadata", json_object());
    if (rs->echo) json_object_set_new(rs->echo, "top_logprobs", json_integer(r->top_logprobs));
    if (!rs->conversation || !rs->echo) {
        resp_state_free(rs);
        return NULL;
    }
    return rs;
}

void resp_state_free(struct resp_state *rs) {
    if (!rs) return;
    json_decref(rs->conversation);
    json_decref(rs->echo);
    tok_buf_free(&rs->streamed);
    free(rs);
}

/* ============================================================ the response object ===== */

static json_t *usage_of(const sched_event *ev) {
    return json_pack("{s:i, s:{s:i}, s:i, s:{s:i}, s:i}", "input_tokens", ev->prompt_tokens,
                     "input_tokens_details", "cached_tokens", ev->cached_tokens, "output_tokens",
                     ev->completion_tokens, "output_tokens_details", "reasoning_tokens", 0, "total_tokens",
                     ev->prompt_tokens + ev->completion_tokens);
}

static void new_item_id(char *out, size_t n, const char *prefix) { srv_new_id(out, n, prefix); }

/* The output items of the (single) choice. */
static json_t *output_items(gen_ctx *g) {
    gen_choice *c = &g->choices[0];
    struct resp_state *rs = g->rs;
    json_t *out = json_array();
    if (c->n_calls) {
        for (size_t i = 0; i < c->n_calls; i++) {
            char id[48];
            new_item_id(id, sizeof id, "fc_");
            json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "function_call", "id", id,
                                                 "call_id", c->calls[i].id, "name", c->calls[i].name, "arguments",
                                                 c->calls[i].arguments, "status", "completed"));
        }
        return out;
    }
    if (!rs->msg_id[0]) new_item_id(rs->msg_id, sizeof rs->msg_id, "msg_");
    const char *text = c->text.data ? c->text.data : "";
    json_t *part = json_pack("{s:s, s:o, s:[]}", "type", "output_text", "text", srv_text_json(text, c->text.n),
                             "annotations");
    if (g->logprobs && c->lp) json_object_set(part, "logprobs", json_object_get(c->lp, "content"));
    json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s, s:[o]}", "type", "message", "id", rs->msg_id, "status",
                                         c->fin.finish == SCHED_FINISH_LENGTH ? "incomplete" : "completed", "role",
                                         "assistant", "content", part));
    return out;
}

/* The response object; status "in_progress" before the end (stream events), else from the
 * finish. */
static json_t *response_object(gen_ctx *g, bool final) {
    gen_choice *c = &g->choices[0];
    const char *status = !final ? "in_progress" : c->fin.finish == SCHED_FINISH_LENGTH ? "incomplete" : "completed";
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:s, s:n, s:o, s:o}", "id", g->id, "object", "response", "created_at",
                          (json_int_t)g->created, "status", status, "model", g->sm->name, "error", "incomplete_details",
                          final && c->fin.finish == SCHED_FINISH_LENGTH
                              ? json_pack("{s:s}", "reason", "max_output_tokens")
                              : json_null(),
                          "output", final ? output_items(g) : json_array());
    json_object_update(j, g->rs->echo);
    json_object_set_new(j, "usage", final ? usage_of(&g->fin) : json_null());
    return j;
}

/* Keeps the finished response and its conversation in the store. */
static void store_response(gen_ctx *g, json_t *resp) {
    server *s = g->srv;
    if (!g->rs->store || !s->resp_store) return;
    gen_choice *c = &g->choices[0];
    json_t *conv = json_deep_copy(g->rs->conversation);
    oai_message out = {.role = "assistant", .content = c->n_calls ? "" : (c->text.data ? c->text.data : "")};
    out.tool_calls = c->calls;
    out.n_tool_calls = c->n_calls;
    json_array_append_new(conv, message_json(&out));
    json_t *v = json_pack("{s:O, s:o}", "response", resp, "conversation", conv);
    char *txt = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!txt) return;
    uint8_t key[CACHE_KEY_BYTES];
    store_key(g->id, key);
    cache_put(s->resp_store, key, txt, strlen(txt));
    free(txt);
}

json_t *resp_whole(gen_ctx *g) {
    json_t *j = response_object(g, true);
    if (j) store_response(g, j);
    /* the HTTP thread (not streamed): the client gets the answer once the store has it, so a
     * continuation sent anywhere right away finds it (a stream's end cannot wait on the engine
     * thread: there a continuation may miss it for a moment, and the lookup's retry covers that) */
    if (j && g->rs->store) cache_flush(g->srv->resp_store, 100);
    return j;
}

/* ============================================================ streaming ===== */

static void event(gen_ctx *g, const char *type, json_t *j) {
    json_object_set_new(j, "type", json_string(type));
    json_object_set_new(j, "sequence_number", json_integer(g->rs->seq++));
    gen_sse(g, type, j);
}

void resp_stream_start(gen_ctx *g) {
    /* called on the HTTP thread right after submission, before the engine thread can emit:
     * the choice's first event waits for the scheduler's next step */
    event(g, "response.created", json_pack("{s:o}", "response", response_object(g, false)));
    event(g, "response.in_progress", json_pack("{s:o}", "response", response_object(g, false)));
}

static void open_text(gen_ctx *g) {
    struct resp_state *rs = g->rs;
    if (rs->text_open) return;
    rs->text_open = true;
    new_item_id(rs->msg_id, sizeof rs->msg_id, "msg_");
    event(g, "response.output_item.added",
          json_pack("{s:i, s:{s:s, s:s, s:s, s:s, s:[]}}", "output_index", 0, "item", "type", "message", "id", rs->msg_id,
                    "status", "in_progress", "role", "assistant", "content"));
    event(g, "response.content_part.added",
          json_pack("{s:s, s:i, s:i, s:{s:s, s:s, s:[]}}", "item_id", rs->msg_id, "output_index", 0, "content_index", 0,
                    "part", "type", "output_text", "text", "", "annotations"));
}

void resp_stream_text(gen_ctx *g, gen_choice *c, const char *text, size_t n, json_t *lp) {
    open_text(g);
    json_t *l = lp ? json_incref(json_object_get(lp, "content")) : NULL;
    json_decref(lp);
    event(g, "response.output_text.delta",
          json_pack("{s:s, s:i, s:i, s:o, s:o}", "item_id", g->rs->msg_id, "output_index", 0, "content_index", 0,
                    "delta", srv_text_json(text, n), "logprobs", l ? l : json_array()));
}

void resp_stream_done(gen_ctx *g) {
    struct resp_state *rs = g->rs;
    gen_choice *c = &g->choices[0];
    json_t *final = response_object(g, true); /* fixes msg_id when no text was streamed */
    json_t *items = json_object_get(final, "output");
    if (!c->n_calls) {
        json_t *item = json_array_get(items, 0);
        json_t *part = json_array_get(json_object_get(item, "content"), 0);
        open_text(g);
        event(g, "response.output_text.done",
              json_pack("{s:s, s:i, s:i, s:O, s:[]}", "item_id", rs->msg_id, "output_index", 0, "content_index", 0,
                        "text", json_object_get(part, "text"), "logprobs"));
        event(g, "response.content_part.done",
              json_pack("{s:s, s:i, s:i, s:O}", "item_id", rs->msg_id, "output_index", 0, "content_index", 0, "part", part));
        json_object_set_new(item, "id", json_string(rs->msg_id));
        event(g, "response.output_item.done", json_pack("{s:i, s:O}", "output_index", 0, "item", item));
    } else {
        size_t i;
        json_t *item;
        json_array_foreach(items, i, item) {
            json_t *added = json_deep_copy(item);
            json_object_set_new(added, "status", json_string("in_progress"));
            json_object_set_new(added, "arguments", json_string(""));
            event(g, "response.output_item.added", json_pack("{s:i, s:o}", "output_index", (int)i, "item", added));
            event(g, "response.function_call_arguments.delta",
                  json_pack("{s:O, s:i, s:O}", "item_id", json_object_get(item, "id"), "output_index", (int)i, "delta",
                            json_object_get(item, "arguments")));
            event(g, "response.function_call_arguments.done",
                  json_pack("{s:O, s:i, s:O, s:O}", "item_id", json_object_get(item, "id"), "output_index", (int)i,
                            "name", json_object_get(item, "name"), "arguments", json_object_get(item, "arguments")));
            event(g, "response.output_item.done", json_pack("{s:i, s:O}", "output_index", (int)i, "item", item));
        }
    }
    store_response(g, final);
    event(g, final && !strcmp(json_string_value(json_object_get(final, "status")), "incomplete") ? "response.incomplete"
                                                                                                 : "response.completed",
          json_pack("{s:o}", "response", final));
}

void resp_stream_error(gen_ctx *g, const char *message) {
    event(g, "error", json_pack("{s:s, s:s, s:n}", "code", "server_error", "message", message, "param"));
}

char *srv_response_conversation(server *s, const char *id, size_t *len) {
    json_t *v = store_get(s, id, false); /* a router's guess: never waits */
    json_t *conv = json_object_get(v, "conversation");
    size_t n = 0, i;
    json_t *m;
    json_array_foreach(conv, i, m) {
        n += json_string_length(json_object_get(m, "role")) + json_string_length(json_object_get(m, "content")) + 2;
    }
    char *out = v && json_is_array(conv) ? malloc(n + 1) : NULL;
    if (out) {
        char *p = out;
        json_array_foreach(conv, i, m) {
            json_t *r = json_object_get(m, "role"), *c = json_object_get(m, "content");
            memcpy(p, json_string_value(r) ? json_string_value(r) : "", json_string_length(r));
            p += json_string_length(r);
            *p++ = '\n';
            memcpy(p, json_string_value(c) ? json_string_value(c) : "", json_string_length(c));
            p += json_string_length(c);
            *p++ = '\n';
        }
        *p = 0;
        *len = n;
    }
    json_decref(v);
    return out;
}

/* ============================================================ GET / DELETE ===== */

void srv_handle_response_id(server *s, http_request *req, const char *id, http_response *resp) {
    const char *m = http_req_method(req);
    oai_error e;
    bool get = !strcmp(m, "GET"), del = !strcmp(m, "DELETE");
    if (!get && !del) {
        oai_errorf(&e, 405, INVALID, NULL, "%s is not allowed on /v1/responses/{id}", m);
        srv_respond_error(resp, &e);
        return;
    }
    json_t *v = store_get(s, id, true);
    if (!v) {
        oai_errorf(&e, 404, INVALID, NULL, "no stored response '%.80s'", id);
        srv_respond_error(resp, &e);
        return;
    }
    if (get) {
        srv_respond_json(resp, 200, json_incref(json_object_get(v, "response")));
    } else {
        uint8_t key[CACHE_KEY_BYTES];
        store_key(id, key);
        cache_put(s->resp_store, key, "-", 1); /* a tombstone: gone for every reader of the store */
        cache_flush(s->resp_store, 100);       /* ... once the answer says so */
        srv_respond_json(resp, 200, json_pack("{s:s, s:s, s:b}", "id", id, "object", "response", "deleted", 1));
    }
    json_decref(v);
}
