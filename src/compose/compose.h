/*
 * compose — a cluster of specialists: classifier routing, confidence cascades, classifier
 * ensembles and pipelines over the model names of a cluster config (docs/cluster.md).
 *
 * Compose never talks to a model itself. Every call goes through comp_ops.call, which the
 * router implements by running the request through its own routing (policies, failover,
 * circuits, fallback) to a local engine or a remote node alike, and which answers whole
 * (never streamed). Compose builds the request bodies, parses the answers into results
 * (labels with probabilities and entities; text with token log-probs) and decides.
 *
 *   classify  the request text goes to the classifier; its label maps to a target model name,
 *             or default when the label is unmapped or its probability is below
 *             min_confidence. The router then forwards the client's request to the target
 *             (streams included).
 *   cascade   stages fastest first; a stage's answer is accepted when its confidence signal
 *             reaches the threshold, else the next stage is asked; a failed stage escalates;
 *             the last stage's answer is taken as it is. If the last stage fails too, the
 *             most confident earlier answer is returned, marked so.
 *   ensemble  classifiers with one label set; their probability vectors are averaged with
 *             the members' weights; entities come from the heaviest member that gave any.
 *   pipeline  steps in file order (classify, generate, action), each run when its when:
 *             holds, seeing earlier steps' outputs through {{templates}}; per-step timeout,
 *             whole-pipeline deadline, per-step fallback outputs. A chat request with tools
 *             can be answered with a tool call: the intent names the function (through the
 *             pipeline's functions: map), the slots are its arguments (pipe_tools.c).
 *
 * Answers: cascade and pipeline answer completions and chat (the pipeline as a chat model:
 * the reply is the message content); streaming clients get the accepted answer as SSE events
 * once it is decided. Every answer carries a "shoal" object saying what happened (stage and
 * confidence and stages tried; members' labels; each step's output and time), and headers
 * (X-Shoal-Label, X-Shoal-Confidence, X-Shoal-Stage). The decisions, never the prompts,
 * go to the request log (comp_info) and the metrics.
 *
 * Threading: comp_handle and comp_route run on the request's thread and may block on calls;
 * a comp is read-only after init apart from its metrics.
 */
#ifndef SHOAL_COMPOSE_COMPOSE_H
#define SHOAL_COMPOSE_COMPOSE_H

#include <stdbool.h>
#include <stddef.h>

#include "cluster/config.h"
#include "core/err.h"
#include "http/http.h"
#include "metrics/metrics.h"

/* One whole call to a model name of the config. */
typedef struct comp_call {
    int kind;                 /* oai_kind: the endpoint */
    const char *model;        /* the model name (config name) */
    const char *body;         /* the request JSON, "model" already set */
    size_t len;
    double timeout_ms;        /* > 0: the answer must come by then, else the call fails */
} comp_call;

typedef struct comp_answer {
    int status;               /* HTTP status; 0 when nothing answered (timeout, transport) */
    char *body;               /* malloc'd answer body (the caller of call frees it), or NULL */
    size_t len;
    char backend[160];        /* "NODE/MODEL" or "local:NAME" that answered, or "" */
    char error[256];          /* why it failed, or "" */
} comp_answer;

typedef struct comp_ops {
    /* Runs c through the router; fills out (status 200 on success). ctx is comp_handle's. */
    void (*call)(void *ud, void *ctx, const comp_call *c, comp_answer *out);
    void *ud;
} comp_ops;

/* What a composition decided, for the router's headers and log line. */
typedef struct comp_info {
    char label[128];          /* classify routing, ensemble, pipeline: the label decided, or "" */
    double confidence;        /* its probability (or the cascade stage's signal); < 0: none */
    char decision[512];       /* e.g. "cascade tried=a:0.41,b:0.93 stage=2/2", "pipeline intent:ok ..." */
} comp_info;

typedef struct comp comp;

/* Builds the compositions of cfg (borrowed: it must outlive the comp); compiles pipeline
 * action schemas (an unsupported schema keyword is an error naming it) and registers metrics
 * in met (borrowed). NULL with err on failure. */
comp *comp_init(const cluster_config *cfg, const comp_ops *ops, metrics *met, sh_err *err);
void comp_free(comp *c); /* NULL is fine */

/* policy classify, model index mi: classifies text and names the target model (a config
 * name; borrowed from cfg) in *target, and says why in info. A classifier that fails or
 * answers without a usable label routes to the default; info->decision says so. */
void comp_route(comp *c, int mi, void *ctx, const char *text, const char **target, comp_info *info);

/* Runs composite model mi (cascade, ensemble, pipeline) for the client's request body
 * (already validated by the edge parser as kind) and fills resp with the whole answer (SSE
 * text when the client asked to stream). Never fails silently: an error is an OpenAI error
 * answer in resp. */
void comp_handle(comp *c, int mi, void *ctx, int kind, const char *body, size_t len, http_response *resp,
                 comp_info *info);

#endif
