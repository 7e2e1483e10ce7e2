/*
 * serve/server_int — what the node's own files share: the model table, the server struct, the
 * request log and the JSON helpers. Not a contract for anyone else (only src/serve/ includes it):
 *   server.c      lifetime, routing, /v1/models, /health, /metrics, /slots, the request log
 *   gen.c         /v1/completions and /v1/chat/completions (decoders)
 *   encode_api.c  /v1/embeddings (decoders and encoders), /v1/rerank, /v1/classify
 */
#ifndef SHOAL_SERVE_SERVER_INT_H
#define SHOAL_SERVE_SERVER_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include "api/oai_req.h"
#include "cluster/router.h"
#include "grammar/grammar.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "model/encoder.h"
#include "model/model.h"
#include "serve/esched.h"
#include "serve/sched.h"
#include "serve/server.h"
#include "tokenizer/tokenizer.h"

/* One served model: a decoder (m, sc) or an encoder (em, es), never both. */
typedef struct srv_model {
    char *name;
    model *m;                   /* decoder, or NULL */
    sched *sc;
    encoder_model *em;          /* encoder, or NULL */
    esched *es;
    tok_vocab *v;
    char sha[65];
    const char *chat_template;  /* family name overriding the file's template, or NULL */
    int cache_policy;           /* srv_cache_policy */
    bool matryoshka;            /* server_model.matryoshka */
} srv_model;

typedef enum srv_cache_policy {
    SRV_CACHE_DETERMINISTIC,    /* only answers that do not vary: temperature 0 or a seed */
    SRV_CACHE_ALWAYS,           /* sampled answers too (the first one is replayed) */
    SRV_CACHE_NEVER
} srv_cache_policy;

/* gram_cache.c: compiled grammars shared by the requests of the same schema / tool set. */
#define SRV_GRAMS 16
typedef struct srv_gram {
    uint8_t key[CACHE_KEY_BYTES];
    gram *g;                    /* NULL: free */
    int refs;                   /* requests holding it */
    uint64_t used;
} srv_gram;
enum { SRV_GRAM_GBNF, SRV_GRAM_SCHEMA, SRV_GRAM_JSON_OBJECT };

struct server {
    server_params p;
    srv_model *models;
    int n_models;
    http_server *http;
    router *rt;                 /* cluster mode (--config), or NULL */
    cache *cache;               /* response cache, or NULL */
    cache *resp_store;          /* the Responses API's stored responses (responses.c), or NULL */
    pthread_mutex_t gram_mu;
    srv_gram grams[SRV_GRAMS];
    uint64_t gram_clock;
    csem *sem;                  /* its semantic tier, or NULL */
    srv_model *sem_enc;         /* the encoder that embeds prompts for it */
    pthread_mutex_t flight_mu;  /* the cacheable requests being generated (srv_flight) */
    struct srv_flight *flights;
    metrics *met;
    _Atomic bool ready, draining;
    FILE *log;
    pthread_mutex_t log_mu;
};

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
    int n_inputs;            /* encoder requests: inputs (documents for rerank) */
    const char *cache;       /* answered from this cache tier, or NULL */
} log_info;

/* The endpoint of each oai_kind. */
extern const char *const srv_endpoint_path[OAI_KIND_COUNT];

/* The oai_kind served at path (llama-server's rerank aliases included), or -1. */
int srv_endpoint_kind(const char *path);

/* JSON helpers: srv_dump consumes j (compact text, malloc'd); srv_respond_json consumes j. */
char *srv_dump(json_t *j);
void srv_respond_json(http_response *resp, int status, json_t *j);
void srv_respond_error(http_response *resp, const oai_error *e);
/* Generated text as a JSON string (bytes that never form UTF-8 become U+FFFD). */
json_t *srv_text_json(const char *s, size_t n);

void srv_new_id(char *out, size_t n, const char *prefix);
bool srv_traceparent_ok(const char *t);
const char *srv_finish_name(sched_finish f);
int srv_submit_rc_status(sched_submit_rc rc);

/* The model called name (NULL: the first), or NULL. */
srv_model *srv_find_model(server *s, const char *name);
void srv_count_request(server *s, const char *model_name, const char *endpoint, int status);
void srv_log_request(server *s, const log_info *li);

/* gen.c: completions and chat (kind OAI_COMPLETION / OAI_CHAT). */
void srv_handle_generate(server *s, oai_kind kind, http_request *req, const char *body, size_t len,
                         http_response *resp);

/* The compiled grammar of (kind, text) — SRV_GRAM_*, text NULL for a JSON object — shared
 * with other requests; NULL with err on a grammar or schema that does not compile. Every
 * acquire is matched by one release. */
gram *srv_gram_acquire(server *s, int kind, const char *text, sh_err *err);
void srv_gram_release(server *s, gram *g); /* NULL is fine */
void srv_gram_cache_free(server *s);       /* at shutdown, when no request runs */

/* responses.c: the stored conversation of response id as "role\ncontent\n" per message
 * (malloc'd; the router's prefix affinity hashes it), or NULL. */
char *srv_response_conversation(server *s, const char *id, size_t *len);
/* responses.c: GET and DELETE /v1/responses/{id}. */
void srv_handle_response_id(server *s, http_request *req, const char *id, http_response *resp);

/* cache_api.c: the response cache in front of generation. */
typedef enum srv_cache_mode {
    SRV_CACHE_OFF,              /* no cache on this node: no header */
    SRV_CACHE_BYPASS,           /* not cacheable, or the client said no-store / "cache": false */
    SRV_CACHE_USE,              /* look up; store the answer on a miss */
    SRV_CACHE_REFRESH           /* Cache-Control: no-cache: do not look up, store the fresh answer */
} srv_cache_mode;
/* Decides the mode of request r for model sm and computes its key. */
srv_cache_mode srv_cache_plan(server *s, const srv_model *sm, const oai_request *r, http_request *req,
                              uint8_t key[CACHE_KEY_BYTES]);
/* Looks key up; on a hit fills resp with the stored answer (re-stamped id and created; SSE when
 * r streams) and the X-Shoal-Cache headers, logs and counts it, and returns true. */
bool srv_cache_answer(server *s, const srv_model *sm, const oai_request *r, http_request *req,
                      const uint8_t key[CACHE_KEY_BYTES], http_response *resp);
/* Stores a whole answer (the JSON the client got) under key. */
void srv_cache_store(server *s, const uint8_t key[CACHE_KEY_BYTES], const json_t *answer);
/* The semantic tier: a request's embedding, partition and fingerprint, kept from the lookup
 * until its answer is stored. */
typedef struct srv_sem_pending {
    bool on;
    uint8_t part[CACHE_KEY_BYTES];
    float *vec;                 /* [dim] (owned) */
    char fp[512];
} srv_sem_pending;
/* After an exact miss: embeds the prompt's last turn and looks it up; on a hit fills resp like
 * srv_cache_answer (tier "semantic", X-Shoal-Similarity) and returns true; else fills *pend
 * for srv_sem_store (pend->on false when the prompt cannot be embedded). */
bool srv_sem_lookup(server *s, const srv_model *sm, const oai_request *r, http_request *req, http_response *resp,
                    srv_sem_pending *pend);
void srv_sem_store(server *s, srv_sem_pending *pend, const json_t *answer);
void srv_sem_pending_free(srv_sem_pending *pend);
/* encode_api.c: one text through encoder sm, in process: its unit-length pooled embedding
 * into emb[dim]; the top sequence label and its probability ("" / 0 without a head); the
 * slots as "label=text;..." ("" without a token head). 0, or -1 with err. */
int srv_encode_one(srv_model *sm, const char *text, float *emb, char *label, size_t label_n, double *conf,
                   char *slots, size_t slots_n, sh_err *err);

/* Coalescing: while a cacheable answer is being generated, the same request again waits for
 * it instead of generating it too. srv_flight_begin returns the flight of key and says whether
 * the caller leads it (generates; must end it with srv_flight_end, the answer or NULL when
 * there is none to share) or follows (srv_flight_wait, then srv_flight_release). */
typedef struct srv_flight srv_flight;
srv_flight *srv_flight_begin(server *s, const uint8_t key[CACHE_KEY_BYTES], bool *leader);
void srv_flight_end(server *s, srv_flight *f, const json_t *answer);
/* Follower: 1 with the leader's answer (malloc'd), 0 when it had none or the client left. */
int srv_flight_wait(server *s, srv_flight *f, http_request *req, char **val, size_t *n);
void srv_flight_release(server *s, srv_flight *f);
/* Answers r from a value (which it frees), as a hit of tier; false when it is not an answer. */
bool srv_cache_answer_value(server *s, const srv_model *sm, const oai_request *r, http_request *req,
                            http_response *resp, char *val, size_t n, const char *tier);

/* GET /v1/cache (stats) and DELETE /v1/cache (clear). */
void srv_handle_cache(server *s, http_request *req, http_response *resp);
/* Sets every model's policy from the params; -1 with err on a bad entry. */
int srv_cache_policies(server *s, sh_err *err);

/* encode_api.c: embeddings, rerank, classify (kind OAI_EMBEDDING / OAI_RERANK / OAI_CLASSIFY). */
void srv_handle_encode(server *s, oai_kind kind, http_request *req, const char *body, size_t len,
                       http_response *resp);

#endif
