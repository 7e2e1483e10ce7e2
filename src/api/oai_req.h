/*
 * api/oai_req — OpenAI-compatible request bodies, parsed into C structs at the edge.
 *
 * The HTTP layer hands the raw body of POST /v1/completions, /v1/chat/completions,
 * /v1/embeddings, /v1/rerank or /v1/classify to oai_parse_request(); everything after that sees only oai_request. Bad input
 * (malformed JSON, wrong types, out-of-range values, invalid UTF-8, values shoal does not
 * support such as n > 1) gives an oai_error with the HTTP status, OpenAI's error type and the
 * offending parameter; unknown fields are ignored, as OpenAI-compatible servers do.
 *
 * Defaults follow OpenAI: temperature 1, top_p 1, max_tokens 16 for completions and unlimited
 * (-1: until end of generation or the context) for chat. shoal extensions: top_k, min_p,
 * repeat_penalty, deadline_ms, priority (docs/api.md).
 *
 * Ownership: the request owns every string and array in it; oai_request_free() releases them.
 */
#ifndef SHOAL_API_OAI_REQ_H
#define SHOAL_API_OAI_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OAI_MAX_STOP 4

typedef enum oai_kind {
    OAI_COMPLETION,
    OAI_CHAT,
    OAI_EMBEDDING,
    OAI_RERANK,   /* POST /v1/rerank (llama-server's request and response; also TEI's "texts") */
    OAI_CLASSIFY, /* POST /v1/classify (shoal) */
    OAI_KIND_COUNT
} oai_kind;

/* The most inputs of one embeddings / classify request, and documents of one rerank. */
#define OAI_MAX_INPUTS 2048

typedef struct oai_message {
    char *role;    /* system | developer | user | assistant | tool */
    char *content; /* text; array-of-parts content is the concatenation of its text parts */
} oai_message;

typedef struct oai_request {
    oai_kind kind;
    char *model;            /* NULL: the node's default model */

    /* completions: exactly one of prompt / prompt_ids */
    char *prompt;           /* UTF-8 text */
    int32_t *prompt_ids;    /* token ids, n_prompt_ids of them */
    size_t n_prompt_ids;

    /* chat */
    oai_message *messages;  /* n_messages >= 1 */
    size_t n_messages;

    /* embeddings, classify: n_inputs inputs, all texts (inputs[i]) or all token ids
     * (input_ids[i], n_input_ids[i] of them; embeddings only), never mixed */
    char **inputs;             /* NULL when the inputs are token ids */
    int32_t **input_ids;       /* NULL when the inputs are texts */
    size_t *n_input_ids;
    size_t n_inputs;
    bool base64;               /* embeddings: encoding_format "base64" (little-endian float32) */
    bool truncate;             /* shoal: cut an input longer than the context to fit it,
                                * instead of answering 400 (embeddings, classify, rerank) */

    /* rerank */
    char *query;
    char **documents;          /* strings, or the "text" of {"text": ...} objects */
    size_t n_documents;
    int32_t top_n;             /* results to return; 0: all */
    bool return_documents;     /* results carry {"document": {"text": ...}} */
    bool tei;                  /* TEI's form: "texts" in, a bare array of {index, score} out */
    bool return_text;          /* TEI: results carry "text" */

    /* sampling and limits */
    int32_t max_tokens;     /* >= 1, or -1 for no limit but the context; 0 only with echo */
    float temperature;      /* 0..2; 0 = greedy */
    float top_p;            /* (0..1] */
    int32_t top_k;          /* 0 = off */
    float min_p;            /* 0..1, 0 = off */
    float presence_penalty, frequency_penalty; /* -2..2 */
    float repeat_penalty;   /* > 0, 1 = off */
    bool has_seed;
    uint64_t seed;
    char *stop[OAI_MAX_STOP];
    size_t n_stop;
    bool logprobs;
    int32_t top_logprobs;   /* 0..20 */

    bool stream;
    bool include_usage;     /* stream_options.include_usage */
    bool echo;              /* completions: the prompt comes first in the text (and in the
                             * logprobs, its first token with a null logprob) */
    char *user;
    bool tokens_as_ids;     /* return_tokens_as_token_ids (vLLM's extension): logprobs name
                             * tokens "token_id:N", and list the end-of-generation token too */
    bool cache_off;         /* "cache": false (shoal): neither read nor write the response cache */
    bool return_token_ids;  /* return_token_ids (vLLM's): "prompt_token_ids" in the answer,
                             * "token_ids" in the choice (not when streaming) */

    bool has_deadline;
    double deadline_ms;     /* > 0: answer within this many ms of arrival, or be refused */
    int32_t priority;       /* higher first; default 0, range -100..100 */
} oai_request;

typedef struct oai_error {
    int status;             /* HTTP status: 400, 404, 413, ... */
    const char *type;       /* "invalid_request_error", ... (static) */
    const char *code;       /* OpenAI error code or NULL (static) */
    char param[64];         /* offending parameter, "" when none */
    char message[320];
} oai_error;

/* Parses body[0..len) as a request of `kind`. On success fills *req (which the caller frees
 * with oai_request_free) and returns 0; on failure fills *err, leaves *req empty and returns -1. */
int oai_parse_request(oai_kind kind, const char *body, size_t len, oai_request *req,
                      oai_error *err);

void oai_request_free(oai_request *req); /* NULL and empty requests are fine */

/* The same, for callers at the edge that forward the body (the cluster router): on success
 * *doc is the parsed JSON document (jansson's json_t), which the caller json_decref()s; on
 * failure *doc is NULL. */
struct json_t;
int oai_parse_request_doc(oai_kind kind, const char *body, size_t len, oai_request *req,
                          oai_error *err, struct json_t **doc);

/* Fills err (status, type, param, printf-style message); returns -1. */
int oai_errorf(oai_error *err, int status, const char *type, const char *param,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Renders {"error":{"message","type","param","code"}} as a malloc'd string. */
char *oai_error_body(const oai_error *err);

#endif
