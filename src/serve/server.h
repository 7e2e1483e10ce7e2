/*
 * serve/server — one shoal node: models behind the OpenAI-compatible HTTP API.
 *
 * Endpoints: POST /v1/completions, /v1/chat/completions, /v1/embeddings, /v1/rerank (also
 * /rerank, /reranking, /v1/reranking), /v1/classify; GET /v1/models, /health (no auth; 200
 * ready, 503 loading or draining), /metrics (Prometheus), /slots. A decoder has a generation
 * scheduler (serve/sched.h), an encoder a batching one (serve/esched.h). Requests are parsed at the edge
 * (api/oai_req.h); the engine never sees JSON.
 *
 * Security defaults: listens on 127.0.0.1; with an API key every endpoint but /health needs
 * "Authorization: Bearer KEY" (compared in constant time). Prompts and outputs are never
 * logged unless log_prompts is set. One JSON line per request goes to the log stream.
 */
#ifndef SHOAL_SERVE_SERVER_H
#define SHOAL_SERVE_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cache/cache.h"
#include "cluster/config.h"
#include "core/err.h"

typedef struct server_model {
    const char *name;           /* the API's model id */
    const char *path;           /* GGUF file: a decoder (llama, qwen2) or an encoder (bert, nomic-bert) */
    const char *pooling;        /* encoders: "none" | "mean" | "cls" | "last" | "rank" overriding
                                 * the file's pooling_type, or NULL */
    bool matryoshka;            /* embeddings may be cut to a request's `dimensions` (a model
                                 * trained for it); otherwise only its full size is accepted */
} server_model;

typedef struct server_params {
    const char *host;           /* default 127.0.0.1 */
    uint16_t port;              /* default 8080; 0: any free port */
    const char *api_key;        /* NULL: no auth */
    int n_slots, n_ctx, n_threads, max_queue, chunk;
    bool kv_f32;
    bool no_repack;             /* weights stay in the shared file mapping (model_params) */
    size_t max_body;            /* default 4 MiB */
    const char *chat_template;  /* family name for every model ("chatml", "llama3", ...), or NULL:
                                 * detected from each file's tokenizer.chat_template */
    bool log_prompts;           /* include prompts and outputs in the request log */
    FILE *log;                  /* request log (JSON lines); NULL: stderr */
    const cluster_config *cluster; /* cluster mode: the config's local models are loaded (give no
                                 * models to server_init) and requests are routed over them and the
                                 * config's nodes (cluster/router.h); borrowed, outlives the server */
    const cache_params *cache;  /* the response cache in front of generation (docs/cache.md), or
                                 * NULL: none */
    const char *const *cache_policy; /* "[MODEL=]deterministic|always|never" (later ones win) */
    int n_cache_policy;
    bool cache_fold_case;       /* cache keys ignore letter case */
    const char *semantic_model; /* the semantic cache's encoder: a model of this node with mean, cls
                                 * or last pooling (needs cache), or NULL: no semantic tier */
    double min_similarity;      /* cosine similarity a semantic hit needs (0: 0.93) */
    bool semantic_label;        /* the encoder's top label partitions the semantic cache too */
    size_t semantic_max;        /* semantic entries (0: 100000) */
    const cache_params *responses; /* the store of the Responses API (stored responses and their
                                 * conversations: memory, an SQLite file, Redis), or NULL: none
                                 * (nothing is stored; previous_response_id is a 404) */
} server_params;

typedef struct server server;

/* Loads every model, starts their schedulers and the HTTP listener. The first model is the
 * default for requests without "model". In cluster mode (p->cluster) models must be NULL / 0:
 * the config lists them, and the router adds GET /v1/cluster and POST /v1/cluster/join. */
server *server_init(const server_params *p, const server_model *models, int n_models,
                    sh_err *err);

uint16_t server_port(const server *s);

/* Drain: /health answers 503, new requests 503; in-flight requests continue. Then waits up to
 * timeout_s for them to finish. Returns the number still running (0: drained). */
int server_drain(server *s, double timeout_s);

/* Stops the listener and the schedulers (remaining requests are cancelled). NULL is fine. */
void server_free(server *s);

#endif
