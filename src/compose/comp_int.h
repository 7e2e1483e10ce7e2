/*
 * compose/comp_int — what the files of compose share: parsed results of calls (call.c), the
 * JSON Schema subset (schema.c), pipelines (pipeline.c) and their tool calls (pipe_tools.c) and
 * the comp itself (compose.c).
 * Private to src/compose.
 */
#ifndef SHOAL_COMPOSE_COMP_INT_H
#define SHOAL_COMPOSE_COMP_INT_H

#include <jansson.h>

#include "compose/compose.h"

/* ---- results of calls (call.c) ---- */

typedef struct comp_entity {
    char *label, *text;
    long start, end;          /* character offsets in the input */
    double score;
} comp_entity;

typedef struct comp_cls {     /* one input's classification */
    int n;                    /* labels */
    char **labels;            /* in the answer's order (highest probability first) */
    double *probs;
    int best;                 /* index of the top label, -1 when n == 0 */
    comp_entity *ents;
    int n_ents;
} comp_cls;

typedef struct comp_gen {     /* one generated answer (choice 0) */
    char *text;
    char *finish;             /* finish_reason, or NULL */
    int n_tok;                /* tokens with log-probs */
    double sum_lp, min_lp;    /* of the chosen tokens */
    double sum_margin;        /* sum of p(top1) - p(top2) */
    long prompt_tokens, completion_tokens;
} comp_gen;

void ccall_cls_free(comp_cls *r);
void ccall_gen_free(comp_gen *g);

/* Parses a /v1/classify answer: *out gets one comp_cls per input (malloc'd array, *n of them).
 * 0, or -1 with a message in err. */
int ccall_parse_cls(const char *body, size_t len, comp_cls **out, int *n, char *err, size_t errn);
/* Parses a completions (kind OAI_COMPLETION) or chat answer with or without logprobs. */
int ccall_parse_gen(const char *body, size_t len, int kind, comp_gen *out, char *err, size_t errn);

/* Calls c->ops for model with body; returns the answer (status 200) or fills err. The time the
 * call took goes to *ms. The answer's body is the caller's (free it). */
int ccall_run(comp *c, void *ctx, int kind, const char *model, json_t *body, double timeout_ms, comp_answer *ans,
              double *ms, char *err, size_t errn);

/* The confidence of a classification / a generation by signal (ccfg_signal), as a
 * probability-like number (mean_logprob stays a log-prob). */
double ccall_cls_signal(const comp_cls *r, int signal);
double ccall_gen_signal(const comp_gen *g, int signal);

/* ---- JSON Schema subset (schema.c) ---- */

/* Checks that schema uses only the supported keywords (type, properties, required,
 * additionalProperties, enum, const, minimum, maximum, exclusiveMinimum, exclusiveMaximum,
 * minLength, maxLength, items, minItems, maxItems, title, description). -1 with the first
 * unsupported keyword and its path in err. */
int cschema_check(const json_t *schema, char *err, size_t errn);
/* 0 when v satisfies schema, else -1 with the first violation ("$.room: expected ...") in err. */
int cschema_validate(const json_t *schema, const json_t *v, char *err, size_t errn);
/* The declared type of property key ("string", "integer", ...), or NULL. */
const char *cschema_prop_type(const json_t *schema, const char *key);

/* ---- the comp (compose.c) ---- */

typedef struct comp_model {   /* per model name of the config; only compositions use it */
    metrics_series *m_ok, *m_failed, *m_degraded;
    metrics_series **m_conf;       /* per stage / member / classifier: confidence histogram */
    metrics_series **m_stage;      /* cascade: answers accepted per stage */
    metrics_series **m_escalate;   /* cascade: escalations from each stage */
    metrics_series *m_disagree, *m_other;
    metrics_series *m_tok_avg, *m_tok_kept; /* token ensembles: positions averaged / not */
    metrics_series **m_route;      /* classify: per route (label), then default */
    metrics_series **m_step_s;     /* pipeline: per step latency histogram */
    metrics_series **m_step_out;   /* pipeline: per step x {ok, failed, fallback, skipped} */
    json_t **schemas;              /* pipeline: per step, the action schema or NULL */
} comp_model;

struct comp {
    const cluster_config *cfg;
    comp_ops ops;
    metrics *met;
    comp_model *pm;           /* cfg->n_models */
};

/* SSE text of a whole completions / chat answer j (its choices[0] text, or its message's
 * tool_calls, each with its index, in the first chunk), ending with [DONE]; the "shoal" object
 * of j goes into the last chunk. malloc'd. */
char *comp_sse_of(const json_t *j, int kind, size_t *len);
/* Fills resp with j (JSON, or SSE when stream). Takes j. */
void comp_respond(http_response *resp, json_t *j, int kind, bool stream);
void comp_error(http_response *resp, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Adds header name with the formatted value; bytes outside printable ASCII (values can come
 * from model answers) become '?'. */
void comp_header(http_response *resp, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ensemble_gen.c: policy ensemble with combine tokens / best_of */
void comp_mix(comp *c, int mi, void *ctx, int kind, json_t *root, http_response *resp, comp_info *info);
void comp_best_of(comp *c, int mi, void *ctx, int kind, json_t *root, http_response *resp, comp_info *info);

/* ---- tool calls of a pipeline (pipe_tools.c) ---- */

typedef struct cpt_req {      /* what a chat request says about tools */
    const json_t *tools;      /* its tools (an array, >= 1), borrowed from the request */
    const json_t *choice_json;/* tool_choice as sent, or NULL */
    int choice;               /* oai_tool_choice: auto (the default), none, required, function */
    const char *name;         /* function: the function tool_choice names */
    bool answered;            /* a tool result (or an assistant call) follows the last user message */
} cpt_req;

typedef struct cpt_call {     /* the call a pipeline answers with */
    char *name, *arguments;   /* malloc'd; arguments is compact JSON text of an object */
    char id[40];              /* "call_" and 24 random letters and digits */
} cpt_call;

/* Reads tools and tool_choice of a chat request (validated by the edge parser); false when it
 * declares no tools. */
bool cpt_read(const json_t *root, cpt_req *t);
const char *cpt_choice_name(const cpt_req *t); /* "auto", "none", "required", "function" */
/* Decides, from the pipeline's steps so far (their shoal.pipeline records), whether it answers
 * with a call: 1 with out filled, 0 with the reason in why (and rec; *infra when the reason is a
 * failed classify step), -1 when out of memory. rec (an object) gets the decision:
 * tool_choice, intent, function, called, id, arguments, dropped slots, reason. */
int cpt_decide(const cpt_req *t, const ccfg_comp *k, const json_t *steps, json_t *rec, cpt_call *out, char *why,
               size_t whyn, bool *infra);
void cpt_call_free(cpt_call *c);

/* pipeline.c */
void comp_pipeline(comp *c, int mi, void *ctx, int kind, json_t *root, http_response *resp, comp_info *info);

#endif
