/*
 * serve/gen_int — the generation context shared by gen.c (completions, chat: parsing, prompts,
 * submission, events) and responses.c (the Responses API's output and its store). Internal to
 * src/serve.
 *
 * A request with n choices is n scheduler requests; each choice collects its own text,
 * logprobs and tool calls, and the answer (or the stream's end) comes when every choice is done.
 * All the choices of one request run on the same model, so their events arrive on one engine
 * thread, one at a time.
 */
#ifndef SHOAL_SERVE_GEN_INT_H
#define SHOAL_SERVE_GEN_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

#include "api/oai_req.h"
#include "api/tools.h"
#include "http/chan.h"
#include "serve/sched.h"
#include "serve/server_int.h"

/* How a choice's text is treated when tools are offered. */
typedef enum gen_tool_mode {
    GEN_TEXT = 0,   /* plain text, streamed as it comes */
    GEN_WATCH,      /* tool_choice auto: the text so far may still open a call; held */
    GEN_CALLS,      /* the answer is tool calls: held whole, parsed at the end */
} gen_tool_mode;

typedef struct gen_ctx gen_ctx;

typedef struct gen_choice {
    gen_ctx *g;
    int index;
    sched_req *req;
    bool sent_role;             /* chat stream: the first delta carries the role */
    size_t streamed;            /* bytes of text streamed so far (logprobs text_offset) */
    size_t sent_text;           /* bytes of text handed to the client (tool modes hold some) */
    tok_buf text;               /* the whole text (always collected) */
    json_t *lp;                 /* logprobs being collected (non-streamed) */
    json_t *out_ids;            /* return_token_ids, else NULL */
    gen_tool_mode mode;
    bool done;
    sched_event fin;            /* the DONE event (strings not kept) */
    char error[256];
    /* filled when the choice is done, from its text */
    oai_tool_call *calls;
    size_t n_calls;
    char *content;              /* text beside the calls (malloc'd), or NULL: the text itself */
} gen_choice;

struct gen_ctx {
    _Atomic int refs;           /* the HTTP side's, and one per running choice */
    server *srv;
    srv_model *sm;
    oai_kind kind;
    bool stream, include_usage, logprobs;
    bool tokens_as_ids;         /* logprobs name tokens "token_id:N" */
    json_t *prompt_ids;         /* return_token_ids (non-streamed only), else NULL */
    int n_top;
    char id[48];
    long created;
    chan *ch;                   /* streaming */
    int n;                      /* choices */
    gen_choice *choices;        /* [n] */
    int n_done;
    const oai_tools_plan *tools; /* &tp for chat and responses requests, else NULL */
    oai_tools_plan tp;
    struct gram *gram;          /* the constraint of every choice (owned), or NULL */

    pthread_mutex_t mu;         /* non-streaming: waiting for the choices */
    pthread_cond_t cv;
    bool done;
    sched_event fin;            /* usage of all choices summed, the finish of the last */

    /* for the log line */
    char request_id[72], traceparent[56], path[64], peer[64];
    char *prompt_text;          /* only kept with log_prompts */
    double start_ms;

    bool store;                 /* a cacheable miss: the whole answer goes to the cache */
    srv_sem_pending sem;        /* and to the semantic tier, when on */
    srv_flight *flight;         /* the same request arriving meanwhile waits for this one */
    uint8_t ckey[CACHE_KEY_BYTES];

    /* the Responses API (responses.c) */
    struct resp_state *rs;
};

/* responses.c: what gen.c calls for OAI_RESPONSES requests. */
struct resp_state;
/* Prepares the request: loads previous_response_id's conversation and prepends it to r's
 * messages. 0, or -1 with e filled (404 for an unknown id). */
int resp_prepare(server *s, oai_request *r, oai_error *e);
/* Creates the per-request state (keeps what the stored response needs from r). NULL on OOM. */
struct resp_state *resp_state_init(const oai_request *r);
void resp_state_free(struct resp_state *rs);
/* Stream events of a choice (TOKEN with text to send; DONE), on the engine thread. */
void resp_stream_start(gen_ctx *g);
void resp_stream_text(gen_ctx *g, gen_choice *c, const char *text, size_t n, json_t *lp); /* consumes lp */
void resp_stream_done(gen_ctx *g);
void resp_stream_error(gen_ctx *g, const char *message); /* the Responses "error" event */
/* The whole response object, after every choice is done (stores it when asked). */
json_t *resp_whole(gen_ctx *g);

/* gen.c helpers used by responses.c */
void gen_sse(gen_ctx *g, const char *event, json_t *j); /* "event: E\ndata: J\n\n"; consumes j */
json_t *gen_usage_json(const sched_event *ev);

#endif
