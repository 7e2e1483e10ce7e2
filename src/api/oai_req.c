/*
 * api/oai_req — see oai_req.h. jansson parses; this file validates field by field.
 */
#include "api/oai_req.h"

#include "core/utf8.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INVALID "invalid_request_error"

int oai_errorf(oai_error *err, int status, const char *type, const char *param,
               const char *fmt, ...) {
    if (!err) return -1;
    err->status = status;
    err->type = type;
    err->code = NULL;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    /* messages may quote request bytes (jansson's parse errors do): keep them valid UTF-8,
     * also where vsnprintf cut a multi-byte character */
    utf8_sanitize(err->message);
    utf8_sanitize(err->param);
    return -1;
}

char *oai_error_body(const oai_error *err) {
    json_t *e = json_pack("{s:{s:s, s:s, s:o, s:o}}", "error", "message", err->message, "type",
                          err->type ? err->type : INVALID, "param",
                          err->param[0] ? json_string(err->param) : json_null(), "code",
                          err->code ? json_string(err->code) : json_null());
    char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    return s;
}

void oai_request_free(oai_request *r) {
    if (!r) return;
    free(r->model);
    free(r->prompt);
    free(r->prompt_ids);
    for (size_t i = 0; i < r->n_messages; i++) {
        free(r->messages[i].role);
        free(r->messages[i].content);
    }
    free(r->messages);
    for (size_t i = 0; i < r->n_inputs; i++) {
        if (r->inputs) free(r->inputs[i]);
        if (r->input_ids) free(r->input_ids[i]);
    }
    free(r->inputs);
    free(r->input_ids);
    free(r->n_input_ids);
    free(r->query);
    for (size_t i = 0; i < r->n_documents; i++) free(r->documents[i]);
    free(r->documents);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->user);
    memset(r, 0, sizeof *r);
}

/* ============================================================ field readers ===== */
/* Each returns 0 when the field is absent or null (leaving *out), 0 after storing a valid
 * value, or -1 with err filled. */

static int bad_type(oai_error *err, const char *key, const char *want) {
    return oai_errorf(err, 400, INVALID, key, "'%s' must be %s", key, want);
}

static int get_num(json_t *o, const char *key, double lo, double hi, double *out,
                   oai_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return bad_type(err, key, "a number");
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return oai_errorf(err, 400, INVALID, key, "'%s' is %g; it must be between %g and %g", key,
                          d, lo, hi);
    *out = d;
    return 0;
}

static int get_float(json_t *o, const char *key, double lo, double hi, float *out,
                     oai_error *err) {
    double d = *out;
    if (get_num(o, key, lo, hi, &d, err)) return -1;
    *out = (float)d;
    return 0;
}

/* Integers; a real with an integral value (e.g. 16.0) is accepted too. */
static int get_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out,
                   oai_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    int64_t x;
    if (json_is_integer(v)) x = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
             fabs(json_real_value(v)) < 9e15)
        x = (int64_t)json_real_value(v);
    else return bad_type(err, key, "an integer");
    if (x < lo || x > hi)
        return oai_errorf(err, 400, INVALID, key, "'%s' is %lld; it must be between %lld and %lld",
                          key, (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return 0;
}

static int get_bool(json_t *o, const char *key, bool *out, oai_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return bad_type(err, key, "a boolean");
    *out = json_is_true(v);
    return 0;
}

static char *dup_str(json_t *v) {
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static int get_str(json_t *o, const char *key, char **out, oai_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return bad_type(err, key, "a string");
    if (!(*out = dup_str(v))) return oai_errorf(err, 500, "server_error", key, "out of memory");
    return 0;
}

/* ============================================================ prompts and messages ===== */

static int token_array(json_t *a, const char *key, int32_t **ids, size_t *n, oai_error *err) {
    size_t len = json_array_size(a);
    if (len == 0) return oai_errorf(err, 400, INVALID, key, "'%s' is empty", key);
    int32_t *out = malloc(len * sizeof *out);
    if (!out) return oai_errorf(err, 500, "server_error", key, "out of memory");
    for (size_t i = 0; i < len; i++) {
        json_t *e = json_array_get(a, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > INT32_MAX) {
            free(out);
            return oai_errorf(err, 400, INVALID, key, "'%s' token %zu is not a valid token id", key, i);
        }
        out[i] = (int32_t)json_integer_value(e);
    }
    *ids = out;
    *n = len;
    return 0;
}

/* prompt: "text" | ["text"] | [1,2,3] | [[1,2,3]] — one prompt per request. */
static int parse_prompt(json_t *o, oai_request *r, oai_error *err) {
    json_t *p = json_object_get(o, "prompt");
    if (!p || json_is_null(p)) return oai_errorf(err, 400, INVALID, "prompt", "'prompt' is required");
    if (json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0);
    if (json_is_string(p)) {
        if (json_string_length(p) == 0)
            return oai_errorf(err, 400, INVALID, "prompt", "'prompt' is empty");
        r->prompt = dup_str(p);
        return r->prompt ? 0 : oai_errorf(err, 500, "server_error", "prompt", "out of memory");
    }
    if (json_is_array(p)) {
        if (json_array_size(p) > 1 && json_is_string(json_array_get(p, 0)))
            return oai_errorf(err, 400, INVALID, "prompt",
                              "several prompts in one request are not supported; send one per request");
        return token_array(p, "prompt", &r->prompt_ids, &r->n_prompt_ids, err);
    }
    return bad_type(err, "prompt", "a string, an array of one string, or an array of token ids");
}

static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};

/* content: "text" | [{"type":"text","text":"..."}, ...] | null */
static int message_content(json_t *c, size_t idx, char **out, oai_error *err) {
    char param[48];
    snprintf(param, sizeof param, "messages[%zu].content", idx);
    if (!c || json_is_null(c)) {
        *out = strdup("");
    } else if (json_is_string(c)) {
        *out = dup_str(c);
    } else if (json_is_array(c)) {
        size_t total = 0, i;
        json_t *part;
        json_array_foreach(c, i, part) {
            json_t *t = json_object_get(part, "type"), *x = json_object_get(part, "text");
            if (!json_is_string(t) || strcmp(json_string_value(t), "text") != 0)
                return oai_errorf(err, 400, INVALID, param,
                                  "only text content parts are supported (part %zu)", i);
            if (!json_is_string(x)) return bad_type(err, param, "text parts with a string 'text'");
            total += json_string_length(x);
        }
        char *s = malloc(total + 1);
        if (!s) return oai_errorf(err, 500, "server_error", param, "out of memory");
        size_t k = 0;
        json_array_foreach(c, i, part) {
            json_t *x = json_object_get(part, "text");
            memcpy(s + k, json_string_value(x), json_string_length(x));
            k += json_string_length(x);
        }
        s[k] = 0;
        *out = s;
    } else {
        return bad_type(err, param, "a string or an array of content parts");
    }
    return *out ? 0 : oai_errorf(err, 500, "server_error", param, "out of memory");
}

static int parse_messages(json_t *o, oai_request *r, oai_error *err) {
    json_t *m = json_object_get(o, "messages");
    if (!m || json_is_null(m))
        return oai_errorf(err, 400, INVALID, "messages", "'messages' is required");
    if (!json_is_array(m)) return bad_type(err, "messages", "an array");
    size_t n = json_array_size(m);
    if (n == 0) return oai_errorf(err, 400, INVALID, "messages", "'messages' is empty");
    r->messages = calloc(n, sizeof *r->messages);
    if (!r->messages) return oai_errorf(err, 500, "server_error", "messages", "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(m, i), *role = json_object_get(e, "role");
        char param[40];
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!json_is_object(e)) return bad_type(err, "messages", "an array of objects");
        if (!json_is_string(role)) return bad_type(err, param, "a string");
        const char *rs = json_string_value(role);
        bool known = false;
        for (size_t k = 0; k < sizeof roles / sizeof *roles; k++) known |= strcmp(rs, roles[k]) == 0;
        if (!known)
            return oai_errorf(err, 400, INVALID, param,
                              "unknown role '%.40s' (system, developer, user, assistant, tool)", rs);
        r->n_messages = i + 1;
        if (!(r->messages[i].role = strdup(rs)))
            return oai_errorf(err, 500, "server_error", param, "out of memory");
        if (message_content(json_object_get(e, "content"), i, &r->messages[i].content, err))
            return -1;
    }
    return 0;
}

/* input: "text" | ["text", ...] | [1, 2, 3] | [[1, 2], [3]] (token ids: embeddings only). */
static int parse_input(json_t *o, oai_request *r, oai_error *err) {
    json_t *in = json_object_get(o, "input");
    if (!in || json_is_null(in)) return oai_errorf(err, 400, INVALID, "input", "'input' is required");
    const bool ids_ok = r->kind == OAI_EMBEDDING;
    size_t n = json_is_array(in) ? json_array_size(in) : 1;
    if (json_is_array(in) && n == 0) return oai_errorf(err, 400, INVALID, "input", "'input' is empty");
    /* one array of integers is one input of token ids */
    bool flat_ids = json_is_array(in) && json_is_integer(json_array_get(in, 0));
    if (flat_ids) n = 1;
    if (n > OAI_MAX_INPUTS)
        return oai_errorf(err, 400, INVALID, "input", "%zu inputs; at most %d per request", n,
                          OAI_MAX_INPUTS);
    json_t *first = json_is_array(in) && !flat_ids ? json_array_get(in, 0) : in;
    const bool ids = flat_ids || json_is_array(first);
    if (ids && !ids_ok)
        return oai_errorf(err, 400, INVALID, "input", "token id inputs are only accepted by /v1/embeddings");
    if (ids) {
        r->input_ids = calloc(n, sizeof *r->input_ids);
        r->n_input_ids = calloc(n, sizeof *r->n_input_ids);
        if (!r->input_ids || !r->n_input_ids) return oai_errorf(err, 500, "server_error", "input", "out of memory");
    } else if (!(r->inputs = calloc(n, sizeof *r->inputs))) {
        return oai_errorf(err, 500, "server_error", "input", "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = flat_ids ? in : json_is_array(in) ? json_array_get(in, i) : in;
        r->n_inputs = i + 1;
        if (ids) {
            if (!json_is_array(e))
                return bad_type(err, "input", "a string, an array of strings, an array of token ids or an array of such arrays");
            if (token_array(e, "input", &r->input_ids[i], &r->n_input_ids[i], err)) return -1;
            continue;
        }
        if (!json_is_string(e))
            return bad_type(err, "input", "a string or an array of strings");
        if (json_string_length(e) == 0)
            return oai_errorf(err, 400, INVALID, "input", "input %zu is empty", i);
        if (!(r->inputs[i] = dup_str(e))) return oai_errorf(err, 500, "server_error", "input", "out of memory");
    }
    if (r->kind == OAI_EMBEDDING) {
        json_t *fmt = json_object_get(o, "encoding_format");
        if (fmt && !json_is_null(fmt)) {
            const char *f = json_is_string(fmt) ? json_string_value(fmt) : "";
            if (!strcmp(f, "base64")) r->base64 = true;
            else if (strcmp(f, "float"))
                return oai_errorf(err, 400, INVALID, "encoding_format",
                                  "encoding_format must be 'float' or 'base64'");
        }
        if (json_object_get(o, "dimensions") && !json_is_null(json_object_get(o, "dimensions")))
            return oai_errorf(err, 400, INVALID, "dimensions", "'dimensions' is not supported");
    }
    return get_bool(o, "truncate", &r->truncate, err);
}

/* rerank: {query, documents: [str | {text}], top_n, return_documents} or TEI's {query, texts,
 * return_text}. */
static int parse_rerank(json_t *o, oai_request *r, oai_error *err) {
    json_t *q = json_object_get(o, "query");
    if (!q || json_is_null(q)) return oai_errorf(err, 400, INVALID, "query", "'query' is required");
    if (!json_is_string(q)) return bad_type(err, "query", "a string");
    if (json_string_length(q) == 0) return oai_errorf(err, 400, INVALID, "query", "'query' is empty");
    if (!(r->query = dup_str(q))) return oai_errorf(err, 500, "server_error", "query", "out of memory");
    json_t *d = json_object_get(o, "documents");
    const char *key = "documents";
    if (!d || json_is_null(d)) {
        d = json_object_get(o, "texts");
        key = "texts";
        r->tei = d && !json_is_null(d);
    }
    if (!d || json_is_null(d))
        return oai_errorf(err, 400, INVALID, "documents", "'documents' is required");
    if (!json_is_array(d)) return bad_type(err, key, "an array of strings");
    size_t n = json_array_size(d);
    if (n == 0) return oai_errorf(err, 400, INVALID, key, "'%s' is empty", key);
    if (n > OAI_MAX_INPUTS)
        return oai_errorf(err, 400, INVALID, key, "%zu documents; at most %d per request", n,
                          OAI_MAX_INPUTS);
    if (!(r->documents = calloc(n, sizeof *r->documents)))
        return oai_errorf(err, 500, "server_error", key, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(d, i);
        if (json_is_object(e) && !r->tei) e = json_object_get(e, "text");
        if (!json_is_string(e))
            return bad_type(err, key, r->tei ? "an array of strings" : "an array of strings or {\"text\": string} objects");
        if (json_string_length(e) == 0) return oai_errorf(err, 400, INVALID, key, "document %zu is empty", i);
        r->n_documents = i + 1;
        if (!(r->documents[i] = dup_str(e))) return oai_errorf(err, 500, "server_error", key, "out of memory");
    }
    int64_t x = 0;
    if (get_int(o, "top_n", 1, OAI_MAX_INPUTS, &x, err)) return -1;
    r->top_n = (int32_t)x;
    if (get_bool(o, "return_documents", &r->return_documents, err) ||
        get_bool(o, "return_text", &r->return_text, err) || get_bool(o, "truncate", &r->truncate, err))
        return -1;
    return 0;
}

/* ============================================================ sampling fields ===== */

static int parse_stop(json_t *o, oai_request *r, oai_error *err) {
    json_t *s = json_object_get(o, "stop");
    if (!s || json_is_null(s)) return 0;
    size_t n = json_is_array(s) ? json_array_size(s) : 1;
    if (!json_is_array(s) && !json_is_string(s)) return bad_type(err, "stop", "a string or an array of strings");
    if (n > OAI_MAX_STOP)
        return oai_errorf(err, 400, INVALID, "stop", "at most %d stop sequences", OAI_MAX_STOP);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_is_array(s) ? json_array_get(s, i) : s;
        if (!json_is_string(e)) return bad_type(err, "stop", "a string or an array of strings");
        if (json_string_length(e) == 0) continue; /* an empty stop string would stop at once */
        if (!(r->stop[r->n_stop] = dup_str(e))) return oai_errorf(err, 500, "server_error", "stop", "out of memory");
        r->n_stop++;
    }
    return 0;
}

static int parse_common(json_t *o, oai_request *r, oai_error *err) {
    int64_t x;
    if (get_str(o, "model", &r->model, err) || get_str(o, "user", &r->user, err)) return -1;
    if (r->kind == OAI_EMBEDDING || r->kind == OAI_RERANK || r->kind == OAI_CLASSIFY) {
        /* the scheduling extensions apply to encoders too */
        double dl = 0;
        if (get_num(o, "deadline_ms", 0, 86400000.0, &dl, err)) return -1;
        if (json_object_get(o, "deadline_ms") && !json_is_null(json_object_get(o, "deadline_ms"))) {
            if (!(dl > 0)) return oai_errorf(err, 400, INVALID, "deadline_ms", "'deadline_ms' must be > 0");
            r->has_deadline = true;
            r->deadline_ms = dl;
        }
        x = 0;
        if (get_int(o, "priority", -100, 100, &x, err)) return -1;
        r->priority = (int32_t)x;
        return 0;
    }

    x = r->max_tokens;
    /* max_tokens 0 is the scoring idiom of the legacy completions API: with echo (checked
     * below) it returns the prompt and its logprobs, nothing generated */
    if (get_int(o, "max_tokens", r->kind == OAI_COMPLETION ? 0 : 1, INT32_MAX, &x, err)) return -1;
    if (r->kind == OAI_CHAT && get_int(o, "max_completion_tokens", 1, INT32_MAX, &x, err)) return -1;
    r->max_tokens = (int32_t)x;
    if (get_float(o, "temperature", 0, 2, &r->temperature, err) ||
        get_float(o, "top_p", 0, 1, &r->top_p, err) ||
        get_float(o, "min_p", 0, 1, &r->min_p, err) ||
        get_float(o, "presence_penalty", -2, 2, &r->presence_penalty, err) ||
        get_float(o, "frequency_penalty", -2, 2, &r->frequency_penalty, err) ||
        get_float(o, "repeat_penalty", 0.01, 100, &r->repeat_penalty, err))
        return -1;
    x = 0;
    if (get_int(o, "top_k", 0, 1000000, &x, err)) return -1;
    r->top_k = (int32_t)x;
    json_t *seed = json_object_get(o, "seed");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed)) return bad_type(err, "seed", "an integer");
        r->has_seed = true;
        r->seed = (uint64_t)json_integer_value(seed);
    }
    x = 1;
    if (get_int(o, "n", 1, 1000, &x, err)) return -1;
    if (x != 1) return oai_errorf(err, 400, INVALID, "n", "n > 1 is not supported yet; send n requests");
    json_t *lp = json_object_get(o, "logprobs");
    if (r->kind == OAI_CHAT) {
        if (get_bool(o, "logprobs", &r->logprobs, err)) return -1;
        x = 0;
        if (get_int(o, "top_logprobs", 0, 20, &x, err)) return -1;
        r->top_logprobs = (int32_t)x;
        if (r->top_logprobs > 0 && !r->logprobs)
            return oai_errorf(err, 400, INVALID, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    } else if (lp && !json_is_null(lp)) { /* legacy completions: logprobs is a count 0..5 */
        x = 0;
        if (get_int(o, "logprobs", 0, 5, &x, err)) return -1;
        r->logprobs = true;
        r->top_logprobs = (int32_t)x;
    }
    if (parse_stop(o, r, err) || get_bool(o, "stream", &r->stream, err)) return -1;
    if (r->kind == OAI_COMPLETION && get_bool(o, "echo", &r->echo, err)) return -1;
    bool use_cache = true;
    if (get_bool(o, "cache", &use_cache, err)) return -1;
    r->cache_off = !use_cache;
    if (get_bool(o, "return_tokens_as_token_ids", &r->tokens_as_ids, err) ||
        get_bool(o, "return_token_ids", &r->return_token_ids, err))
        return -1;
    if (r->return_token_ids && r->stream)
        return oai_errorf(err, 400, INVALID, "return_token_ids", "'return_token_ids' is not available when streaming");
    if (r->max_tokens == 0 && !r->echo)
        return oai_errorf(err, 400, INVALID, "max_tokens", "'max_tokens' 0 generates nothing: it needs 'echo': true");
    json_t *so = json_object_get(o, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return bad_type(err, "stream_options", "an object");
        if (!r->stream)
            return oai_errorf(err, 400, INVALID, "stream_options", "'stream_options' is only allowed when 'stream' is true");
        if (get_bool(so, "include_usage", &r->include_usage, err)) return -1;
    }
    double d = 0;
    if (get_num(o, "deadline_ms", 0, 86400000.0, &d, err)) return -1;
    if (json_object_get(o, "deadline_ms") && !json_is_null(json_object_get(o, "deadline_ms"))) {
        if (!(d > 0)) return oai_errorf(err, 400, INVALID, "deadline_ms", "'deadline_ms' must be > 0");
        r->has_deadline = true;
        r->deadline_ms = d;
    }
    x = 0;
    if (get_int(o, "priority", -100, 100, &x, err)) return -1;
    r->priority = (int32_t)x;
    return 0;
}

int oai_parse_request(oai_kind kind, const char *body, size_t len, oai_request *r,
                      oai_error *err) {
    return oai_parse_request_doc(kind, body, len, r, err, NULL);
}

int oai_parse_request_doc(oai_kind kind, const char *body, size_t len, oai_request *r,
                          oai_error *err, json_t **doc) {
    if (doc) *doc = NULL;
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->max_tokens = kind == OAI_COMPLETION ? 16 : -1;
    r->temperature = 1.0f;
    r->top_p = 1.0f;
    r->repeat_penalty = 1.0f;
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        oai_errorf(err, 400, INVALID, NULL, "invalid JSON body: %s (line %d, column %d)", je.text,
                   je.line, je.column);
        return -1;
    }
    int rc;
    if (!json_is_object(o)) rc = oai_errorf(err, 400, INVALID, NULL, "the body must be a JSON object");
    else if (kind == OAI_COMPLETION) rc = parse_prompt(o, r, err);
    else if (kind == OAI_CHAT) rc = parse_messages(o, r, err);
    else if (kind == OAI_RERANK) rc = parse_rerank(o, r, err);
    else rc = parse_input(o, r, err);
    if (rc == 0) rc = parse_common(o, r, err);
    if (rc == 0 && doc) *doc = o;
    else json_decref(o);
    if (rc) oai_request_free(r);
    return rc;
}
