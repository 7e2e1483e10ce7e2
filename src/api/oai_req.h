/*
 * api/oai_req — OpenAI-compatible request bodies, parsed into C structs at the edge.
 *
 * The HTTP layer hands the raw body of POST /v1/completions, /v1/chat/completions,
 * /v1/responses, /v1/embeddings, /v1/rerank or /v1/classify to oai_parse_request(); everything
 * after that sees only oai_request. Bad input
 * (malformed JSON, wrong types, out-of-range values, invalid UTF-8, values shoal does not
 * support) gives an oai_error with the HTTP status, OpenAI's error type and the offending
 * parameter. No field is silently ignored: every field of OpenAI's request bodies is either
 * implemented, accepted as a documented no-op (metadata, service_tier, ...), or refused with a
 * 400 naming it (code "unsupported_parameter"); a field OpenAI does not define (and shoal does
 * not add) is a 400 "unknown field 'path'" too (code "unknown_parameter"), at every level:
 * the body, messages[i], tools[i], tool_choice, response_format, stream_options, content parts,
 * Responses input items (docs/api.md, "Request fields"). param is always the field's path, e.g.
 * "messages[2].content[0].type".
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
#define OAI_MAX_N 16 /* choices of one request */

typedef enum oai_kind {
    OAI_COMPLETION,
    OAI_CHAT,
    OAI_EMBEDDING,
    OAI_RERANK,   /* POST /v1/rerank (llama-server's request and response; also TEI's "texts") */
    OAI_CLASSIFY, /* POST /v1/classify (shoal) */
    OAI_RESPONSES, /* POST /v1/responses (OpenAI's Responses API) */
    OAI_KIND_COUNT
} oai_kind;

/* The most inputs of one embeddings / classify request, and documents of one rerank. */
#define OAI_MAX_INPUTS 2048

/* One call of a function tool: in an assistant message of the conversation, or produced. */
typedef struct oai_tool_call {
    char *id;        /* the client's (chat: tool_calls[k].id; Responses: call_id), or
                      * "call_<message>_<k>" when a chat client sent none */
    char *name;      /* function name */
    char *arguments; /* JSON text of the arguments, as the client sent it (not validated);
                      * an object sent instead of a string is kept as compact JSON text;
                      * "{}" when absent */
} oai_tool_call;

typedef struct oai_message {
    char *role;    /* system | developer | user | assistant | tool */
    char *content; /* text; array-of-parts content is the concatenation of its text parts
                    * (and refusal parts); "" when null or absent (tool messages require it) */
    char *name;    /* optional participant name; NULL when absent */
    char *tool_call_id;        /* role tool: the call this message answers (required) */
    oai_tool_call *tool_calls; /* role assistant: the calls it made (n_tool_calls) */
    size_t n_tool_calls;
} oai_message;

/* A function tool: {"type":"function","function":{name, description, parameters, strict}}. */
typedef struct oai_tool {
    char *name;        /* [A-Za-z0-9_-]{1,64} */
    char *description; /* NULL when absent */
    char *parameters;  /* JSON Schema of the arguments, compact JSON text (key order kept;
                        * not validated here); "{}" when absent */
    bool strict;
} oai_tool;

typedef enum oai_tool_choice {
    OAI_TOOL_AUTO = 0, /* the default when tools are given: the model decides */
    OAI_TOOL_NONE,     /* never call (also the default without tools) */
    OAI_TOOL_REQUIRED, /* at least one call */
    OAI_TOOL_FUNCTION, /* exactly the function tool_choice_name */
} oai_tool_choice;

/* response_format (chat), or the same object on completions (a shoal extension there). */
typedef enum oai_format {
    OAI_FORMAT_TEXT = 0,
    OAI_FORMAT_JSON_OBJECT, /* any JSON object */
    OAI_FORMAT_JSON_SCHEMA, /* {"type":"json_schema","json_schema":{name, schema, strict}} */
    OAI_FORMAT_GRAMMAR,     /* shoal: {"type":"grammar","grammar":"<GBNF text>"} */
} oai_format;

typedef struct oai_request {
    oai_kind kind;
    char *model;            /* NULL: the node's default model */

    /* completions: exactly one of prompt / prompt_ids */
    char *prompt;           /* UTF-8 text */
    int32_t *prompt_ids;    /* token ids, n_prompt_ids of them */
    size_t n_prompt_ids;

    /* chat */
    oai_message *messages;  /* n_messages >= 1 (Responses: 0 when previous_response_id is
                             * given without input or instructions) */
    size_t n_messages;

    /* embeddings, classify: n_inputs inputs, all texts (inputs[i]) or all token ids
     * (input_ids[i], n_input_ids[i] of them; embeddings only), never mixed */
    char **inputs;             /* NULL when the inputs are token ids */
    int32_t **input_ids;       /* NULL when the inputs are texts */
    size_t *n_input_ids;
    size_t n_inputs;
    bool base64;               /* embeddings: encoding_format "base64" (little-endian float32) */
    int32_t dimensions;        /* embeddings: output size (>= 1); 0: the model's own */
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
    bool logprobs;          /* Responses: include "message.output_text.logprobs" or
                             * top_logprobs > 0 */
    int32_t top_logprobs;   /* 0..20 (completions: the logprobs count, 0..5) */

    bool stream;
    bool include_usage;     /* stream_options.include_usage */
    bool echo;              /* completions: the prompt comes first in the text (and in the
                             * logprobs, its first token with a null logprob) */
    char *user;             /* all endpoints (the cluster router's sticky key) */
    bool tokens_as_ids;     /* return_tokens_as_token_ids (vLLM's extension): logprobs name
                             * tokens "token_id:N", and list the end-of-generation token too */
    bool cache_off;         /* "cache": false (shoal): neither read nor write the response cache */
    bool return_token_ids;  /* return_token_ids (vLLM's): "prompt_token_ids" in the answer,
                             * "token_ids" in the choice (not when streaming) */

    /* structured output and tools (completions: response_format only) */
    oai_format format;
    char *format_name;         /* json_schema.name; NULL when absent */
    char *format_schema;       /* json_schema.schema as compact JSON text (JSON_SCHEMA: always
                                * set; key order kept; keywords not checked here) */
    bool format_strict;        /* json_schema.strict */
    char *grammar;             /* GBNF text (GRAMMAR; non-empty) */
    oai_tool *tools;           /* n_tools function tools (at most 128, distinct names) */
    size_t n_tools;
    oai_tool_choice tool_choice;
    char *tool_choice_name;    /* OAI_TOOL_FUNCTION: a name among tools */
    bool parallel_tool_calls;  /* default true: several calls in one answer */
    int32_t n;                 /* choices to generate, 1..16 (default 1) */
    int32_t *logit_bias_ids;   /* logit_bias (at most 1024 entries, ids >= 0 but not checked
                                * against the vocabulary): token logit_bias_ids[i] gets logit_bias[i] */
    float *logit_bias;         /* (-100..100) added to its logit; n_logit_bias entries */
    size_t n_logit_bias;

    /* POST /v1/responses (OAI_RESPONSES): input and instructions become messages (the
     * instructions first, as a system message); function_call / function_call_output input
     * items become assistant tool_calls / tool messages; text.format becomes format;
     * max_output_tokens becomes max_tokens. */
    bool store;                /* keep the response for GET and previous_response_id
                                * (default true, as OpenAI) */
    char *previous_response_id; /* continue that stored conversation; NULL when absent */
    char *instructions;        /* NULL when absent (also kept in messages[0]) */
    char *metadata;            /* metadata (chat, Responses: OpenAI's; elsewhere shoal's, for the
                                * router's rules): compact JSON text of an object of up to 16
                                * strings; NULL when absent. Only echoed, never interpreted. */

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
