/*
 * api/oai_req — see oai_req.h. jansson parses; this file validates field by field.
 *
 * Every object of a request body is checked against the fields OpenAI defines for it (plus
 * shoal's extensions): a field that is neither is a 400 "unknown field" naming its path; a
 * field shoal cannot honour is a 400 naming it; the documented no-ops are validated and
 * dropped (docs/api.md, "Request fields").
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
#define OOM(err, p) oai_errorf(err, 500, "server_error", p, "out of memory")

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

static void free_message(oai_message *m) {
    free(m->role);
    free(m->content);
    free(m->name);
    free(m->tool_call_id);
    for (size_t k = 0; k < m->n_tool_calls; k++) {
        free(m->tool_calls[k].id);
        free(m->tool_calls[k].name);
        free(m->tool_calls[k].arguments);
    }
    free(m->tool_calls);
}

void oai_request_free(oai_request *r) {
    if (!r) return;
    free(r->model);
    free(r->prompt);
    free(r->prompt_ids);
    for (size_t i = 0; i < r->n_messages; i++) free_message(&r->messages[i]);
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
    free(r->format_name);
    free(r->format_schema);
    free(r->grammar);
    for (size_t i = 0; i < r->n_tools; i++) {
        free(r->tools[i].name);
        free(r->tools[i].description);
        free(r->tools[i].parameters);
    }
    free(r->tools);
    free(r->tool_choice_name);
    free(r->logit_bias_ids);
    free(r->logit_bias);
    free(r->previous_response_id);
    free(r->instructions);
    free(r->metadata);
    memset(r, 0, sizeof *r);
}

/* ============================================================ paths and errors ===== */

/* A field's path for param and messages: "key" at the top level, "pfx.key" below. */
typedef struct { char s[160]; } path;

/* Appends s to b at *n (a path longer than the buffer is cut: it only names the field). */
static void pput(path *b, size_t *n, const char *s) {
    size_t k = strlen(s);
    if (k > sizeof b->s - 1 - *n) k = sizeof b->s - 1 - *n;
    memmove(b->s + *n, s, k);
    *n += k;
    b->s[*n] = 0;
}

static const char *pjoin(path *b, const char *pfx, const char *key) {
    char tmp[sizeof b->s];
    size_t n = 0;
    snprintf(tmp, sizeof tmp, "%s", pfx ? pfx : ""); /* pfx may be b->s itself */
    b->s[0] = 0;
    if (tmp[0]) pput(b, &n, tmp), pput(b, &n, ".");
    pput(b, &n, key);
    return b->s;
}

static const char *pidx(path *b, const char *base, size_t i) {
    char tmp[sizeof b->s], num[24];
    size_t n = 0;
    snprintf(tmp, sizeof tmp, "%s", base);
    snprintf(num, sizeof num, "[%zu]", i);
    b->s[0] = 0;
    pput(b, &n, tmp);
    pput(b, &n, num);
    return b->s;
}

static const char *pindex(path *b, const char *pfx, const char *key, size_t i) {
    return pidx(b, pjoin(b, pfx, key), i);
}

static int unknown_field(oai_error *err, const char *p) {
    oai_errorf(err, 400, INVALID, p, "unknown field '%.150s'", p);
    err->code = "unknown_parameter";
    return -1;
}

/* A field OpenAI defines that shoal cannot honour. */
static int refused(oai_error *err, const char *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refused(oai_error *err, const char *p, const char *fmt, ...) {
    char why[240];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    oai_errorf(err, 400, INVALID, p, "'%.60s' is not supported: %s", p, why);
    err->code = "unsupported_parameter";
    return -1;
}

static bool absent(json_t *v) { return !v || json_is_null(v); }

/* Absent, null, false or an empty array: asks for nothing. */
static bool asks_nothing(json_t *v) {
    return absent(v) || json_is_false(v) || (json_is_array(v) && json_array_size(v) == 0);
}

/* Every key of o must be in known (NULL-terminated). */
static int check_keys(json_t *o, const char *pfx, const char *const *known, oai_error *err) {
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        bool ok = false;
        for (size_t i = 0; known[i] && !ok; i++) ok = !strcmp(k, known[i]);
        if (!ok) {
            path b;
            return unknown_field(err, pjoin(&b, pfx, k));
        }
    }
    return 0;
}

/* ============================================================ field readers ===== */
/* Each returns 0 when the field is absent or null (leaving *out), 0 after storing a valid
 * value, or -1 with err filled. pfx is the path of the object o (NULL: the body). */

static int bad_type(oai_error *err, const char *p, const char *want) {
    return oai_errorf(err, 400, INVALID, p, "'%.150s' must be %s", p, want);
}

static int get_num(json_t *o, const char *pfx, const char *key, double lo, double hi, double *out,
                   oai_error *err) {
    json_t *v = json_object_get(o, key);
    if (absent(v)) return 0;
    path b;
    const char *p = pjoin(&b, pfx, key);
    if (!json_is_number(v)) return bad_type(err, p, "a number");
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return oai_errorf(err, 400, INVALID, p, "'%s' is %g; it must be between %g and %g", p, d,
                          lo, hi);
    *out = d;
    return 0;
}

static int get_float(json_t *o, const char *pfx, const char *key, double lo, double hi, float *out,
                     oai_error *err) {
    double d = *out;
    if (get_num(o, pfx, key, lo, hi, &d, err)) return -1;
    *out = (float)d;
    return 0;
}

/* Integers; a real with an integral value (e.g. 16.0) is accepted too. */
static int get_int(json_t *o, const char *pfx, const char *key, int64_t lo, int64_t hi,
                   int64_t *out, oai_error *err) {
    json_t *v = json_object_get(o, key);
    if (absent(v)) return 0;
    path b;
    const char *p = pjoin(&b, pfx, key);
    int64_t x;
    if (json_is_integer(v)) x = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
             fabs(json_real_value(v)) < 9e15)
        x = (int64_t)json_real_value(v);
    else return bad_type(err, p, "an integer");
    if (x < lo || x > hi)
        return oai_errorf(err, 400, INVALID, p, "'%s' is %lld; it must be between %lld and %lld",
                          p, (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return 0;
}

static int get_i32(json_t *o, const char *pfx, const char *key, int64_t lo, int64_t hi,
                   int32_t *out, oai_error *err) {
    int64_t x = *out;
    if (get_int(o, pfx, key, lo, hi, &x, err)) return -1;
    *out = (int32_t)x;
    return 0;
}

static int get_bool(json_t *o, const char *pfx, const char *key, bool *out, oai_error *err) {
    json_t *v = json_object_get(o, key);
    if (absent(v)) return 0;
    path b;
    if (!json_is_boolean(v)) return bad_type(err, pjoin(&b, pfx, key), "a boolean");
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

/* out NULL: validate only (a documented no-op). */
static int get_str(json_t *o, const char *pfx, const char *key, char **out, oai_error *err) {
    json_t *v = json_object_get(o, key);
    if (absent(v)) return 0;
    path b;
    const char *p = pjoin(&b, pfx, key);
    if (!json_is_string(v)) return bad_type(err, p, "a string");
    if (!out) return 0;
    free(*out);
    if (!(*out = dup_str(v))) return OOM(err, p);
    return 0;
}

/* A string among choices (NULL-terminated); *out gets its index. */
static int get_enum(json_t *o, const char *pfx, const char *key, const char *const *choices,
                    int *out, oai_error *err) {
    json_t *v = json_object_get(o, key);
    if (absent(v)) return 0;
    path b;
    const char *p = pjoin(&b, pfx, key);
    char list[160] = "";
    for (int i = 0; choices[i]; i++) {
        if (json_is_string(v) && !strcmp(json_string_value(v), choices[i])) {
            if (out) *out = i;
            return 0;
        }
        size_t n = strlen(list);
        snprintf(list + n, sizeof list - n, "%s'%s'", i ? ", " : "", choices[i]);
    }
    if (!json_is_string(v)) return bad_type(err, p, "a string");
    return oai_errorf(err, 400, INVALID, p, "'%s' is '%.40s'; it must be one of %s", p,
                      json_string_value(v), list);
}

/* An object whose keys are among known; *out is it (NULL when absent or null). */
static int get_obj(json_t *o, const char *pfx, const char *key, const char *const *known,
                   json_t **out, oai_error *err) {
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (absent(v)) return 0;
    path b;
    const char *p = pjoin(&b, pfx, key);
    if (!json_is_object(v)) return bad_type(err, p, "an object");
    if (known && check_keys(v, p, known, err)) return -1;
    *out = v;
    return 0;
}

static int compact_json(json_t *v, char **out, const char *p, oai_error *err) {
    free(*out);
    /* key order kept: a schema's "properties" order is the order the model writes them in */
    if (!(*out = json_dumps(v, JSON_COMPACT))) return OOM(err, p);
    return 0;
}

/* ============================================================ prompts ===== */

static int token_array(json_t *a, const char *key, int32_t **ids, size_t *n, oai_error *err) {
    size_t len = json_array_size(a);
    if (len == 0) return oai_errorf(err, 400, INVALID, key, "'%s' is empty", key);
    int32_t *out = malloc(len * sizeof *out);
    if (!out) return OOM(err, key);
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
    if (absent(p)) return oai_errorf(err, 400, INVALID, "prompt", "'prompt' is required");
    if (json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0);
    if (json_is_string(p)) {
        if (json_string_length(p) == 0)
            return oai_errorf(err, 400, INVALID, "prompt", "'prompt' is empty");
        r->prompt = dup_str(p);
        return r->prompt ? 0 : OOM(err, "prompt");
    }
    if (json_is_array(p)) {
        if (json_array_size(p) > 1 && json_is_string(json_array_get(p, 0)))
            return oai_errorf(err, 400, INVALID, "prompt",
                              "several prompts in one request are not supported; send one per request");
        return token_array(p, "prompt", &r->prompt_ids, &r->n_prompt_ids, err);
    }
    return bad_type(err, "prompt", "a string, an array of one string, or an array of token ids");
}

/* ============================================================ content ===== */

/* Which content parts an object accepts. */
typedef enum {
    PARTS_TEXT,      /* chat system / developer / tool: text */
    PARTS_USER,      /* chat user: text; media refused */
    PARTS_ASSISTANT, /* chat assistant: text, refusal */
    PARTS_RESPONSES, /* Responses message: input_text, output_text, refusal; media refused */
    PARTS_FN_OUTPUT, /* Responses function_call_output: input_text; media refused */
} parts_kind;

static const char *const breakpoint_keys[] = {"mode", "ttl", NULL};

/* The text a part contributes ("" for none), or NULL with err filled. p: the part's path. */
static json_t *part_text(json_t *part, const char *p, parts_kind pk, oai_error *err) {
    path b;
    if (!json_is_object(part)) return bad_type(err, p, "an object"), NULL;
    json_t *t = json_object_get(part, "type");
    if (!json_is_string(t)) return bad_type(err, pjoin(&b, p, "type"), "a string"), NULL;
    const char *ty = json_string_value(t);
    static const char *const text_keys[] = {"type", "text", "prompt_cache_breakpoint", NULL};
    static const char *const output_keys[] = {"type", "text", "annotations", "logprobs", NULL};
    static const char *const refusal_keys[] = {"type", "refusal", NULL};
    const char *const *keys = NULL;
    const char *field = "text";
    bool resp = pk == PARTS_RESPONSES || pk == PARTS_FN_OUTPUT;
    if (!resp && !strcmp(ty, "text")) keys = text_keys;
    else if (resp && !strcmp(ty, "input_text")) keys = text_keys;
    else if (pk == PARTS_RESPONSES && !strcmp(ty, "output_text")) keys = output_keys;
    else if ((pk == PARTS_ASSISTANT || pk == PARTS_RESPONSES) && !strcmp(ty, "refusal"))
        keys = refusal_keys, field = "refusal";
    if (!keys) {
        static const char *const media[] = {"image_url", "input_audio", "file", "input_image",
                                            "input_file", "audio", "image", NULL};
        bool is_media = false;
        for (int i = 0; media[i]; i++) is_media |= !strcmp(ty, media[i]);
        const char *tp = pjoin(&b, p, "type");
        if (is_media) {
            oai_errorf(err, 400, INVALID, tp,
                       "content part type '%.40s' is not supported: shoal serves text models", ty);
            err->code = "unsupported_value";
            return NULL;
        }
        const char *allowed = pk == PARTS_ASSISTANT ? "'text' or 'refusal'"
                              : pk == PARTS_RESPONSES ? "'input_text', 'output_text' or 'refusal'"
                              : pk == PARTS_FN_OUTPUT ? "'input_text'" : "'text'";
        oai_errorf(err, 400, INVALID, tp, "unknown content part type '%.40s' here (%s)", ty, allowed);
        return NULL;
    }
    if (check_keys(part, p, keys, err)) return NULL;
    json_t *x = json_object_get(part, field);
    if (!json_is_string(x)) return bad_type(err, pjoin(&b, p, field), "a string"), NULL;
    json_t *bp = NULL;
    if (get_obj(part, p, "prompt_cache_breakpoint", breakpoint_keys, &bp, err)) return NULL;
    json_t *an = json_object_get(part, "annotations"), *lp = json_object_get(part, "logprobs");
    if (!absent(an) && !json_is_array(an)) return bad_type(err, pjoin(&b, p, "annotations"), "an array"), NULL;
    if (!absent(lp) && !json_is_array(lp)) return bad_type(err, pjoin(&b, p, "logprobs"), "an array"), NULL;
    return x;
}

/* content: "text" | [parts] | null (→ ""). p: the content's path. */
static int content_text(json_t *c, const char *p, parts_kind pk, char **out, oai_error *err) {
    if (absent(c)) {
        *out = strdup("");
    } else if (json_is_string(c)) {
        *out = dup_str(c);
    } else if (json_is_array(c)) {
        size_t total = 0, i;
        json_t *part;
        json_array_foreach(c, i, part) {
            path b;
            json_t *x = part_text(part, pidx(&b, p, i), pk, err);
            if (!x) return -1;
            total += json_string_length(x);
        }
        char *s = malloc(total + 1);
        if (!s) return OOM(err, p);
        size_t k = 0;
        json_array_foreach(c, i, part) {
            json_t *x = json_object_get(part, json_object_get(part, "refusal") ? "refusal" : "text");
            memcpy(s + k, json_string_value(x), json_string_length(x));
            k += json_string_length(x);
        }
        s[k] = 0;
        *out = s;
    } else {
        return bad_type(err, p, "a string or an array of content parts");
    }
    return *out ? 0 : OOM(err, p);
}

/* ============================================================ messages ===== */

static bool valid_fn_name(const char *s, size_t n) {
    if (n < 1 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

/* Appends a tool call to m. arguments: a string (kept as sent), an object (compact JSON text,
 * a leniency) or absent ("{}"). id NULL or "": made up from the message and call index. */
static int add_tool_call(oai_message *m, size_t msg_idx, json_t *id, json_t *name, json_t *args,
                         const char *p, oai_error *err) {
    path b;
    if (!json_is_string(name)) return bad_type(err, pjoin(&b, p, "name"), "a string");
    if (json_string_length(name) == 0)
        return oai_errorf(err, 400, INVALID, pjoin(&b, p, "name"), "'%s' is empty", b.s);
    if (!absent(id) && !json_is_string(id)) return bad_type(err, pjoin(&b, p, "id"), "a string");
    if (!absent(args) && !json_is_string(args) && !json_is_object(args))
        return bad_type(err, pjoin(&b, p, "arguments"), "a string (JSON text)");
    oai_tool_call *tc = realloc(m->tool_calls, (m->n_tool_calls + 1) * sizeof *tc);
    if (!tc) return OOM(err, p);
    m->tool_calls = tc;
    tc = &tc[m->n_tool_calls++];
    memset(tc, 0, sizeof *tc);
    if (json_is_string(id) && json_string_length(id) > 0) tc->id = dup_str(id);
    else if ((tc->id = malloc(48))) snprintf(tc->id, 48, "call_%zu_%zu", msg_idx, m->n_tool_calls - 1);
    tc->name = dup_str(name);
    if (json_is_string(args)) tc->arguments = dup_str(args);
    else if (json_is_object(args)) tc->arguments = json_dumps(args, JSON_COMPACT);
    else tc->arguments = strdup("{}");
    if (!tc->id || !tc->name || !tc->arguments) return OOM(err, p);
    return 0;
}

static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};

static int chat_message(json_t *e, size_t i, oai_message *m, oai_error *err) {
    path pb, b;
    const char *p = pindex(&pb, NULL, "messages", i);
    if (!json_is_object(e)) return bad_type(err, "messages", "an array of objects");
    json_t *role = json_object_get(e, "role");
    const char *rp = pjoin(&b, p, "role");
    if (!json_is_string(role)) return bad_type(err, rp, "a string");
    const char *rs = json_string_value(role);
    if (!strcmp(rs, "function"))
        return refused(err, rp, "role 'function' is deprecated: use tool_calls and role 'tool'");
    bool known = false;
    for (size_t k = 0; k < sizeof roles / sizeof *roles; k++) known |= strcmp(rs, roles[k]) == 0;
    if (!known)
        return oai_errorf(err, 400, INVALID, rp,
                          "unknown role '%.40s' (system, developer, user, assistant, tool)", rs);
    if (!(m->role = strdup(rs))) return OOM(err, rp);
    const bool assistant = !strcmp(rs, "assistant"), tool = !strcmp(rs, "tool");
    static const char *const plain_keys[] = {"role", "content", "name", NULL};
    static const char *const assistant_keys[] = {"role",  "content", "name", "tool_calls", "refusal",
                                                 "audio", "function_call", NULL};
    /* name on tool messages too: OpenAI's schema lacks it, but clients send the tool's name
     * there (LangChain does) and chat templates may use it */
    static const char *const tool_keys[] = {"role", "content", "tool_call_id", "name", NULL};
    if (check_keys(e, p, assistant ? assistant_keys : tool ? tool_keys : plain_keys, err)) return -1;
    if (get_str(e, p, "name", &m->name, err)) return -1;
    json_t *c = json_object_get(e, "content");
    if (tool && absent(c))
        return oai_errorf(err, 400, INVALID, pjoin(&b, p, "content"), "'%s' is required", b.s);
    parts_kind pk = assistant ? PARTS_ASSISTANT : !strcmp(rs, "user") ? PARTS_USER : PARTS_TEXT;
    if (content_text(c, pjoin(&b, p, "content"), pk, &m->content, err)) return -1;
    if (tool) {
        json_t *id = json_object_get(e, "tool_call_id");
        const char *ip = pjoin(&b, p, "tool_call_id");
        if (absent(id)) return oai_errorf(err, 400, INVALID, ip, "'%s' is required", ip);
        if (!json_is_string(id)) return bad_type(err, ip, "a string");
        if (!(m->tool_call_id = dup_str(id))) return OOM(err, ip);
    }
    if (!assistant) return 0;
    /* refusal: the text of a past refusal; a no-op (the content carries the turn) */
    if (get_str(e, p, "refusal", NULL, err)) return -1;
    if (!asks_nothing(json_object_get(e, "audio")))
        return refused(err, pjoin(&b, p, "audio"), "shoal serves text models");
    if (!asks_nothing(json_object_get(e, "function_call")))
        return refused(err, pjoin(&b, p, "function_call"), "it is deprecated: use 'tool_calls'");
    json_t *tcs = json_object_get(e, "tool_calls");
    if (absent(tcs)) return 0;
    const char *tp = pjoin(&b, p, "tool_calls");
    if (!json_is_array(tcs)) return bad_type(err, tp, "an array");
    size_t k;
    json_t *tc;
    json_array_foreach(tcs, k, tc) {
        path cb, fb;
        const char *cp = pidx(&cb, tp, k);
        static const char *const call_keys[] = {"id", "type", "function", NULL};
        static const char *const fn_keys[] = {"name", "arguments", NULL};
        if (!json_is_object(tc)) return bad_type(err, cp, "an object");
        json_t *ty = json_object_get(tc, "type");
        if (!absent(ty) && !(json_is_string(ty) && !strcmp(json_string_value(ty), "function"))) {
            if (json_is_string(ty) && !strcmp(json_string_value(ty), "custom"))
                return refused(err, pjoin(&fb, cp, "type"), "custom tools are not supported: use 'function'");
            return oai_errorf(err, 400, INVALID, pjoin(&fb, cp, "type"), "'%s' must be 'function'", fb.s);
        }
        json_t *fn;
        if (check_keys(tc, cp, call_keys, err) || get_obj(tc, cp, "function", fn_keys, &fn, err)) return -1;
        if (!fn) return oai_errorf(err, 400, INVALID, pjoin(&fb, cp, "function"), "'%s' is required", fb.s);
        if (add_tool_call(m, i, json_object_get(tc, "id"), json_object_get(fn, "name"),
                          json_object_get(fn, "arguments"), pjoin(&fb, cp, "function"), err))
            return -1;
    }
    return 0;
}

static int parse_messages(json_t *o, oai_request *r, oai_error *err) {
    json_t *m = json_object_get(o, "messages");
    if (absent(m)) return oai_errorf(err, 400, INVALID, "messages", "'messages' is required");
    if (!json_is_array(m)) return bad_type(err, "messages", "an array");
    size_t n = json_array_size(m);
    if (n == 0) return oai_errorf(err, 400, INVALID, "messages", "'messages' is empty");
    r->messages = calloc(n, sizeof *r->messages);
    if (!r->messages) return OOM(err, "messages");
    for (size_t i = 0; i < n; i++) {
        r->n_messages = i + 1;
        if (chat_message(json_array_get(m, i), i, &r->messages[i], err)) return -1;
    }
    return 0;
}

/* ============================================================ Responses input ===== */

static oai_message *push_message(oai_request *r, size_t *cap, oai_error *err) {
    if (r->n_messages == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        oai_message *m = realloc(r->messages, nc * sizeof *m);
        if (!m) return OOM(err, "input"), NULL;
        r->messages = m;
        *cap = nc;
    }
    oai_message *m = &r->messages[r->n_messages++];
    memset(m, 0, sizeof *m);
    return m;
}

static const char *const responses_roles[] = {"user", "assistant", "system", "developer", NULL};

/* input: "text" | [items]. Message items become messages; consecutive function_call items
 * (and one right after an assistant message) are one assistant message with tool_calls;
 * function_call_output items are role "tool" messages. instructions come first. */
static int parse_responses_input(json_t *o, oai_request *r, oai_error *err) {
    size_t cap = 0;
    if (get_str(o, NULL, "instructions", &r->instructions, err) ||
        get_str(o, NULL, "previous_response_id", &r->previous_response_id, err))
        return -1;
    if (r->previous_response_id && !r->previous_response_id[0])
        return oai_errorf(err, 400, INVALID, "previous_response_id", "'previous_response_id' is empty");
    if (r->instructions) {
        oai_message *m = push_message(r, &cap, err);
        if (!m) return -1;
        if (!(m->role = strdup("system")) || !(m->content = strdup(r->instructions))) return OOM(err, "instructions");
    }
    json_t *in = json_object_get(o, "input");
    if (absent(in) || (json_is_array(in) && json_array_size(in) == 0)) {
        if (r->previous_response_id) return 0;
        return oai_errorf(err, 400, INVALID, "input", absent(in) ? "'input' is required" : "'input' is empty");
    }
    if (json_is_string(in)) {
        oai_message *m = push_message(r, &cap, err);
        if (!m) return -1;
        if (!(m->role = strdup("user")) || !(m->content = dup_str(in))) return OOM(err, "input");
        return 0;
    }
    if (!json_is_array(in)) return bad_type(err, "input", "a string or an array of input items");
    bool merge = false; /* the last message is an assistant turn function calls may join */
    size_t i;
    json_t *e;
    json_array_foreach(in, i, e) {
        path pb, b;
        const char *p = pindex(&pb, NULL, "input", i);
        if (!json_is_object(e)) return bad_type(err, p, "an object");
        json_t *t = json_object_get(e, "type");
        if (!absent(t) && !json_is_string(t)) return bad_type(err, pjoin(&b, p, "type"), "a string");
        const char *ty = absent(t) ? "message" : json_string_value(t);
        if (!strcmp(ty, "message")) {
            static const char *const keys[] = {"type", "role", "content", "id", "status", "phase", NULL};
            if (check_keys(e, p, keys, err)) return -1;
            json_t *role = json_object_get(e, "role");
            const char *rp = pjoin(&b, p, "role");
            if (absent(role)) return oai_errorf(err, 400, INVALID, rp, "'%s' is required", rp);
            int ri = 0;
            if (get_enum(e, p, "role", responses_roles, &ri, err) ||
                get_str(e, p, "id", NULL, err) || get_str(e, p, "status", NULL, err) ||
                get_str(e, p, "phase", NULL, err))
                return -1;
            json_t *c = json_object_get(e, "content");
            if (absent(c)) return oai_errorf(err, 400, INVALID, pjoin(&b, p, "content"), "'%s' is required", b.s);
            oai_message *m = push_message(r, &cap, err);
            if (!m) return -1;
            if (!(m->role = strdup(responses_roles[ri]))) return OOM(err, p);
            if (content_text(c, pjoin(&b, p, "content"), PARTS_RESPONSES, &m->content, err)) return -1;
            merge = ri == 1;
        } else if (!strcmp(ty, "function_call")) {
            static const char *const keys[] = {"type", "call_id", "name", "arguments", "id", "status",
                                               "namespace", "caller", "async", NULL};
            if (check_keys(e, p, keys, err) || get_str(e, p, "id", NULL, err) ||
                get_str(e, p, "status", NULL, err))
                return -1;
            if (!asks_nothing(json_object_get(e, "namespace")))
                return refused(err, pjoin(&b, p, "namespace"), "tool namespaces are not supported");
            if (!asks_nothing(json_object_get(e, "async")))
                return refused(err, pjoin(&b, p, "async"), "asynchronous calls are not supported");
            json_t *caller = json_object_get(e, "caller");
            if (!absent(caller) && !(json_is_object(caller) && json_object_size(caller) == 1 &&
                                     json_is_string(json_object_get(caller, "type")) &&
                                     !strcmp(json_string_value(json_object_get(caller, "type")), "direct")))
                return refused(err, pjoin(&b, p, "caller"), "only direct calls are supported");
            json_t *cid = json_object_get(e, "call_id");
            if (absent(cid)) return oai_errorf(err, 400, INVALID, pjoin(&b, p, "call_id"), "'%s' is required", b.s);
            if (!json_is_string(cid) || json_string_length(cid) == 0)
                return bad_type(err, pjoin(&b, p, "call_id"), "a non-empty string");
            json_t *args = json_object_get(e, "arguments");
            if (!absent(args) && !json_is_string(args)) return bad_type(err, pjoin(&b, p, "arguments"), "a string");
            oai_message *m = merge ? &r->messages[r->n_messages - 1] : NULL;
            if (!m) {
                if (!(m = push_message(r, &cap, err))) return -1;
                if (!(m->role = strdup("assistant")) || !(m->content = strdup(""))) return OOM(err, p);
            }
            if (add_tool_call(m, r->n_messages - 1, cid, json_object_get(e, "name"), args, p, err)) return -1;
            merge = true;
        } else if (!strcmp(ty, "function_call_output")) {
            static const char *const keys[] = {"type", "call_id", "output", "id", "status", "name",
                                               "namespace", "caller", NULL};
            if (check_keys(e, p, keys, err) || get_str(e, p, "id", NULL, err) ||
                get_str(e, p, "status", NULL, err) || get_str(e, p, "name", NULL, err))
                return -1;
            if (!asks_nothing(json_object_get(e, "namespace")))
                return refused(err, pjoin(&b, p, "namespace"), "tool namespaces are not supported");
            if (!absent(json_object_get(e, "caller")))
                return refused(err, pjoin(&b, p, "caller"), "programmatic tool calling is not supported");
            json_t *cid = json_object_get(e, "call_id");
            if (absent(cid)) return oai_errorf(err, 400, INVALID, pjoin(&b, p, "call_id"), "'%s' is required", b.s);
            if (!json_is_string(cid) || json_string_length(cid) == 0)
                return bad_type(err, pjoin(&b, p, "call_id"), "a non-empty string");
            json_t *out = json_object_get(e, "output");
            if (absent(out)) return oai_errorf(err, 400, INVALID, pjoin(&b, p, "output"), "'%s' is required", b.s);
            oai_message *m = push_message(r, &cap, err);
            if (!m) return -1;
            if (!(m->role = strdup("tool")) || !(m->tool_call_id = dup_str(cid))) return OOM(err, p);
            if (content_text(out, pjoin(&b, p, "output"), PARTS_FN_OUTPUT, &m->content, err)) return -1;
            merge = false;
        } else if (!strcmp(ty, "item_reference")) {
            return refused(err, pjoin(&b, p, "type"), "item references are not supported: use 'previous_response_id'");
        } else {
            oai_errorf(err, 400, INVALID, pjoin(&b, p, "type"),
                       "input item type '%.40s' is not supported (message, function_call, function_call_output)", ty);
            err->code = "unsupported_value";
            return -1;
        }
    }
    return 0;
}

/* ============================================================ tools ===== */

#define OAI_MAX_TOOLS 128

/* One function tool from fn (chat: tools[i].function; Responses: tools[i] itself). */
static int tool_fields(json_t *fn, const char *p, oai_tool *t, oai_error *err) {
    path b;
    json_t *name = json_object_get(fn, "name");
    const char *np = pjoin(&b, p, "name");
    if (absent(name)) return oai_errorf(err, 400, INVALID, np, "'%s' is required", np);
    if (!json_is_string(name)) return bad_type(err, np, "a string");
    if (!valid_fn_name(json_string_value(name), json_string_length(name)))
        return oai_errorf(err, 400, INVALID, np, "'%s' must be 1 to 64 of a-z, A-Z, 0-9, '_' and '-'", np);
    if (!(t->name = dup_str(name))) return OOM(err, np);
    if (get_str(fn, p, "description", &t->description, err) || get_bool(fn, p, "strict", &t->strict, err))
        return -1;
    json_t *params = json_object_get(fn, "parameters");
    const char *pp = pjoin(&b, p, "parameters");
    if (absent(params)) return (t->parameters = strdup("{}")) ? 0 : OOM(err, pp);
    if (!json_is_object(params)) return bad_type(err, pp, "an object (a JSON Schema)");
    return compact_json(params, &t->parameters, pp, err);
}

static int parse_tools(json_t *o, oai_request *r, oai_error *err) {
    json_t *ts = json_object_get(o, "tools");
    if (absent(ts)) return 0;
    if (!json_is_array(ts)) return bad_type(err, "tools", "an array");
    size_t n = json_array_size(ts);
    if (n > OAI_MAX_TOOLS)
        return oai_errorf(err, 400, INVALID, "tools", "%zu tools; at most %d per request", n, OAI_MAX_TOOLS);
    if (n == 0) return 0;
    if (!(r->tools = calloc(n, sizeof *r->tools))) return OOM(err, "tools");
    const bool flat = r->kind == OAI_RESPONSES;
    for (size_t i = 0; i < n; i++) {
        path pb, b;
        const char *p = pindex(&pb, NULL, "tools", i);
        json_t *e = json_array_get(ts, i);
        if (!json_is_object(e)) return bad_type(err, p, "an object");
        json_t *ty = json_object_get(e, "type");
        const char *tp = pjoin(&b, p, "type");
        if (absent(ty)) return oai_errorf(err, 400, INVALID, tp, "'%s' is required", tp);
        if (!json_is_string(ty)) return bad_type(err, tp, "a string");
        if (strcmp(json_string_value(ty), "function")) {
            oai_errorf(err, 400, INVALID, tp, "tool type '%.40s' is not supported: only 'function' tools",
                       json_string_value(ty));
            err->code = "unsupported_value";
            return -1;
        }
        r->n_tools = i + 1;
        oai_tool *t = &r->tools[i];
        if (flat) {
            static const char *const keys[] = {"type", "name", "description", "parameters", "strict",
                                               "allowed_callers", "async", "defer_loading", NULL};
            if (check_keys(e, p, keys, err)) return -1;
            if (!asks_nothing(json_object_get(e, "async")))
                return refused(err, pjoin(&b, p, "async"), "asynchronous tools are not supported");
            if (!asks_nothing(json_object_get(e, "defer_loading")))
                return refused(err, pjoin(&b, p, "defer_loading"), "tool search is not supported");
            json_t *ac = json_object_get(e, "allowed_callers");
            if (!absent(ac)) {
                bool ok = json_is_array(ac);
                size_t k;
                json_t *c;
                json_array_foreach(ac, k, c) ok &= json_is_string(c) && !strcmp(json_string_value(c), "direct");
                if (!ok) return refused(err, pjoin(&b, p, "allowed_callers"), "only [\"direct\"] callers");
            }
            if (tool_fields(e, p, t, err)) return -1;
        } else {
            static const char *const keys[] = {"type", "function", NULL};
            static const char *const fn_keys[] = {"name", "description", "parameters", "strict", NULL};
            if (check_keys(e, p, keys, err)) return -1;
            json_t *fn;
            if (get_obj(e, p, "function", fn_keys, &fn, err)) return -1;
            if (!fn) return oai_errorf(err, 400, INVALID, pjoin(&b, p, "function"), "'%s' is required", b.s);
            if (tool_fields(fn, pjoin(&b, p, "function"), t, err)) return -1;
        }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(r->tools[k].name, t->name))
                return oai_errorf(err, 400, INVALID, p, "two tools are named '%s'", t->name);
    }
    return 0;
}

/* tool_choice: "auto" | "none" | "required" | {"type":"function","function":{"name"}} (chat) or
 * {"type":"function","name"} (Responses). Runs after parse_tools. */
static int parse_tool_choice(json_t *o, oai_request *r, oai_error *err) {
    json_t *tc = json_object_get(o, "tool_choice");
    if (get_bool(o, NULL, "parallel_tool_calls", &r->parallel_tool_calls, err)) return -1;
    r->tool_choice = r->n_tools ? OAI_TOOL_AUTO : OAI_TOOL_NONE;
    if (absent(tc)) return 0;
    path b;
    const char *name_p = "tool_choice.name";
    json_t *name = NULL;
    if (json_is_string(tc)) {
        static const char *const modes[] = {"auto", "none", "required", NULL};
        int m = 0;
        if (get_enum(o, NULL, "tool_choice", modes, &m, err)) return -1;
        r->tool_choice = m == 0 ? OAI_TOOL_AUTO : m == 1 ? OAI_TOOL_NONE : OAI_TOOL_REQUIRED;
    } else if (json_is_object(tc)) {
        json_t *ty = json_object_get(tc, "type");
        if (!json_is_string(ty)) return bad_type(err, "tool_choice.type", "a string");
        const char *t = json_string_value(ty);
        if (strcmp(t, "function")) {
            if (!strcmp(t, "allowed_tools"))
                return refused(err, "tool_choice.type", "'allowed_tools' is not supported: send only the allowed tools");
            oai_errorf(err, 400, INVALID, "tool_choice.type", "tool_choice type '%.40s' is not supported: only 'function'", t);
            err->code = "unsupported_value";
            return -1;
        }
        if (r->kind == OAI_RESPONSES) {
            static const char *const keys[] = {"type", "name", NULL};
            if (check_keys(tc, "tool_choice", keys, err)) return -1;
            name = json_object_get(tc, "name");
        } else {
            static const char *const keys[] = {"type", "function", NULL};
            static const char *const fn_keys[] = {"name", NULL};
            json_t *fn;
            if (check_keys(tc, "tool_choice", keys, err) ||
                get_obj(tc, "tool_choice", "function", fn_keys, &fn, err))
                return -1;
            if (!fn) return oai_errorf(err, 400, INVALID, "tool_choice.function", "'tool_choice.function' is required");
            name = json_object_get(fn, "name");
            name_p = "tool_choice.function.name";
        }
        if (!json_is_string(name)) return bad_type(err, name_p, "a string");
        r->tool_choice = OAI_TOOL_FUNCTION;
    } else {
        return bad_type(err, "tool_choice", "'auto', 'none', 'required' or an object");
    }
    if (r->tool_choice != OAI_TOOL_NONE && !r->n_tools)
        return oai_errorf(err, 400, INVALID, "tool_choice", "'tool_choice' needs 'tools'");
    if (name) {
        bool found = false;
        for (size_t i = 0; i < r->n_tools && !found; i++) found = !strcmp(r->tools[i].name, json_string_value(name));
        if (!found)
            return oai_errorf(err, 400, INVALID, pjoin(&b, NULL, name_p), "'%s' names '%.64s', which is not among 'tools'",
                              name_p, json_string_value(name));
        if (!(r->tool_choice_name = dup_str(name))) return OOM(err, name_p);
    }
    return 0;
}

/* ============================================================ structured output ===== */

/* f: response_format (chat, completions) or text.format (Responses: json_schema's fields flat). */
static int parse_format(json_t *f, const char *p, bool flat, oai_request *r, oai_error *err) {
    if (absent(f)) return 0;
    path b;
    if (!json_is_object(f)) return bad_type(err, p, "an object");
    static const char *const types[] = {"text", "json_object", "json_schema", "grammar", NULL};
    int t = 0;
    json_t *ty = json_object_get(f, "type");
    if (absent(ty)) return oai_errorf(err, 400, INVALID, pjoin(&b, p, "type"), "'%s' is required", b.s);
    if (get_enum(f, p, "type", types, &t, err)) return -1;
    static const char *const plain_keys[] = {"type", NULL};
    static const char *const grammar_keys[] = {"type", "grammar", NULL};
    static const char *const schema_keys[] = {"type", "json_schema", NULL};
    static const char *const js_keys[] = {"name", "description", "schema", "strict", NULL};
    static const char *const flat_keys[] = {"type", "name", "description", "schema", "strict", NULL};
    r->format = (oai_format)t;
    if (t == OAI_FORMAT_TEXT || t == OAI_FORMAT_JSON_OBJECT) return check_keys(f, p, plain_keys, err);
    if (t == OAI_FORMAT_GRAMMAR) {
        if (check_keys(f, p, grammar_keys, err) || get_str(f, p, "grammar", &r->grammar, err)) return -1;
        if (!r->grammar || !r->grammar[0])
            return oai_errorf(err, 400, INVALID, pjoin(&b, p, "grammar"), "'%s' is required (GBNF text)", b.s);
        return 0;
    }
    json_t *js = f;
    path jb;
    const char *jp = p;
    if (flat) {
        if (check_keys(f, p, flat_keys, err)) return -1;
    } else {
        if (check_keys(f, p, schema_keys, err) || get_obj(f, p, "json_schema", js_keys, &js, err)) return -1;
        jp = pjoin(&jb, p, "json_schema");
        if (!js) return oai_errorf(err, 400, INVALID, jp, "'%s' is required", jp);
    }
    if (get_str(js, jp, "name", &r->format_name, err) || get_str(js, jp, "description", NULL, err) ||
        get_bool(js, jp, "strict", &r->format_strict, err))
        return -1;
    json_t *s = json_object_get(js, "schema");
    const char *sp = pjoin(&b, jp, "schema");
    if (absent(s)) return oai_errorf(err, 400, INVALID, sp, "'%s' is required", sp);
    if (!json_is_object(s)) return bad_type(err, sp, "an object (a JSON Schema)");
    return compact_json(s, &r->format_schema, sp, err);
}

/* ============================================================ other fields ===== */

#define OAI_MAX_LOGIT_BIAS 1024

static int parse_logit_bias(json_t *o, oai_request *r, oai_error *err) {
    json_t *lb = json_object_get(o, "logit_bias");
    if (absent(lb)) return 0;
    if (!json_is_object(lb)) return bad_type(err, "logit_bias", "an object of token id: bias");
    size_t n = json_object_size(lb);
    if (n > OAI_MAX_LOGIT_BIAS)
        return oai_errorf(err, 400, INVALID, "logit_bias", "%zu logit_bias entries; at most %d", n, OAI_MAX_LOGIT_BIAS);
    if (n == 0) return 0;
    r->logit_bias_ids = malloc(n * sizeof *r->logit_bias_ids);
    r->logit_bias = malloc(n * sizeof *r->logit_bias);
    if (!r->logit_bias_ids || !r->logit_bias) return OOM(err, "logit_bias");
    const char *k;
    json_t *v;
    json_object_foreach(lb, k, v) {
        size_t len = strlen(k);
        bool ok = len >= 1 && len <= 10;
        int64_t id = 0;
        for (size_t i = 0; ok && i < len; i++) {
            ok = k[i] >= '0' && k[i] <= '9';
            id = id * 10 + (k[i] - '0');
        }
        if (!ok || id > INT32_MAX)
            return oai_errorf(err, 400, INVALID, "logit_bias", "'logit_bias' key '%.24s' is not a token id", k);
        if (!json_is_number(v)) return bad_type(err, "logit_bias", "an object of token id: bias (a number)");
        double d = json_number_value(v);
        if (!(d >= -100 && d <= 100))
            return oai_errorf(err, 400, INVALID, "logit_bias", "'logit_bias' of token %s is %g; it must be between -100 and 100", k, d);
        r->logit_bias_ids[r->n_logit_bias] = (int32_t)id;
        r->logit_bias[r->n_logit_bias++] = (float)d;
    }
    return 0;
}

/* metadata: up to 16 string values (keys up to 64 characters, values up to 512), as OpenAI. */
static int parse_metadata(json_t *o, oai_request *r, oai_error *err) {
    json_t *md = json_object_get(o, "metadata");
    if (absent(md)) return 0;
    if (!json_is_object(md)) return bad_type(err, "metadata", "an object of strings");
    if (json_object_size(md) > 16)
        return oai_errorf(err, 400, INVALID, "metadata", "'metadata' has %zu keys; at most 16", json_object_size(md));
    const char *k;
    json_t *v;
    json_object_foreach(md, k, v) {
        path b;
        if (strlen(k) > 64)
            return oai_errorf(err, 400, INVALID, "metadata", "'metadata' key '%.64s...' is longer than 64 characters", k);
        const char *p = pjoin(&b, "metadata", k);
        if (!json_is_string(v)) return bad_type(err, p, "a string");
        const unsigned char *s = (const unsigned char *)json_string_value(v);
        size_t chars = 0;
        for (size_t i = 0; i < json_string_length(v); i++) chars += (s[i] & 0xC0) != 0x80;
        if (chars > 512) return oai_errorf(err, 400, INVALID, p, "'%s' is longer than 512 characters", p);
    }
    return compact_json(md, &r->metadata, "metadata", err);
}

/* ============================================================ encoders ===== */

/* input: "text" | ["text", ...] | [1, 2, 3] | [[1, 2], [3]] (token ids: embeddings only). */
static int parse_input(json_t *o, oai_request *r, oai_error *err) {
    json_t *in = json_object_get(o, "input");
    if (absent(in)) return oai_errorf(err, 400, INVALID, "input", "'input' is required");
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
        if (!r->input_ids || !r->n_input_ids) return OOM(err, "input");
    } else if (!(r->inputs = calloc(n, sizeof *r->inputs))) {
        return OOM(err, "input");
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
        if (!(r->inputs[i] = dup_str(e))) return OOM(err, "input");
    }
    if (r->kind == OAI_EMBEDDING) {
        json_t *fmt = json_object_get(o, "encoding_format");
        if (!absent(fmt)) {
            const char *f = json_is_string(fmt) ? json_string_value(fmt) : "";
            if (!strcmp(f, "base64")) r->base64 = true;
            else if (strcmp(f, "float"))
                return oai_errorf(err, 400, INVALID, "encoding_format",
                                  "encoding_format must be 'float' or 'base64'");
        }
        if (get_i32(o, NULL, "dimensions", 1, INT32_MAX, &r->dimensions, err)) return -1;
    }
    return get_bool(o, NULL, "truncate", &r->truncate, err);
}

/* rerank: {query, documents: [str | {text}], top_n, return_documents} or TEI's {query, texts,
 * return_text}. */
static int parse_rerank(json_t *o, oai_request *r, oai_error *err) {
    json_t *q = json_object_get(o, "query");
    if (absent(q)) return oai_errorf(err, 400, INVALID, "query", "'query' is required");
    if (!json_is_string(q)) return bad_type(err, "query", "a string");
    if (json_string_length(q) == 0) return oai_errorf(err, 400, INVALID, "query", "'query' is empty");
    if (!(r->query = dup_str(q))) return OOM(err, "query");
    json_t *d = json_object_get(o, "documents");
    const char *key = "documents";
    if (absent(d)) {
        d = json_object_get(o, "texts");
        key = "texts";
        r->tei = !absent(d);
    } else if (!absent(json_object_get(o, "texts"))) {
        return oai_errorf(err, 400, INVALID, "texts", "'documents' and 'texts' are exclusive: send one");
    }
    if (absent(d)) return oai_errorf(err, 400, INVALID, "documents", "'documents' is required");
    if (!json_is_array(d)) return bad_type(err, key, "an array of strings");
    size_t n = json_array_size(d);
    if (n == 0) return oai_errorf(err, 400, INVALID, key, "'%s' is empty", key);
    if (n > OAI_MAX_INPUTS)
        return oai_errorf(err, 400, INVALID, key, "%zu documents; at most %d per request", n,
                          OAI_MAX_INPUTS);
    if (!(r->documents = calloc(n, sizeof *r->documents))) return OOM(err, key);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(d, i);
        if (json_is_object(e) && !r->tei) {
            static const char *const doc_keys[] = {"text", NULL};
            path b;
            if (check_keys(e, pindex(&b, NULL, key, i), doc_keys, err)) return -1;
            e = json_object_get(e, "text");
        }
        if (!json_is_string(e))
            return bad_type(err, key, r->tei ? "an array of strings" : "an array of strings or {\"text\": string} objects");
        if (json_string_length(e) == 0) return oai_errorf(err, 400, INVALID, key, "document %zu is empty", i);
        r->n_documents = i + 1;
        if (!(r->documents[i] = dup_str(e))) return OOM(err, key);
    }
    if (get_i32(o, NULL, "top_n", 1, OAI_MAX_INPUTS, &r->top_n, err) ||
        get_bool(o, NULL, "return_documents", &r->return_documents, err) ||
        get_bool(o, NULL, "return_text", &r->return_text, err) ||
        get_bool(o, NULL, "truncate", &r->truncate, err))
        return -1;
    return 0;
}

/* ============================================================ the body's fields ===== */

#define KC (1u << OAI_COMPLETION)
#define KH (1u << OAI_CHAT)
#define KE (1u << OAI_EMBEDDING)
#define KR (1u << OAI_RERANK)
#define KL (1u << OAI_CLASSIFY)
#define KS (1u << OAI_RESPONSES)
#define KGEN (KC | KH | KS)
#define KALL (KGEN | KE | KR | KL)

/* Every field of a body, by endpoint: OpenAI's (implemented, no-op or refused below) and
 * shoal's extensions. docs/api.md "Request fields" lists the same. */
static const struct { const char *key; unsigned kinds; } body_fields[] = {
    {"model", KALL}, {"user", KALL}, {"metadata", KALL}, {"deadline_ms", KALL}, {"priority", KALL},
    /* inputs */
    {"prompt", KC | KS}, {"messages", KH}, {"input", KE | KL | KS}, {"instructions", KS},
    {"previous_response_id", KS},
    /* generation */
    {"max_tokens", KC | KH}, {"max_completion_tokens", KH}, {"max_output_tokens", KS},
    {"temperature", KGEN}, {"top_p", KGEN}, {"top_k", KGEN}, {"min_p", KGEN},
    {"repeat_penalty", KGEN}, {"presence_penalty", KGEN}, {"frequency_penalty", KGEN},
    {"seed", KGEN}, {"stop", KGEN}, {"n", KC | KH}, {"best_of", KC}, {"suffix", KC},
    {"echo", KC}, {"logprobs", KC | KH}, {"top_logprobs", KH | KS}, {"logit_bias", KC | KH},
    {"stream", KGEN}, {"stream_options", KGEN}, {"cache", KGEN},
    {"return_tokens_as_token_ids", KC | KH}, {"return_token_ids", KC | KH},
    /* structured output and tools */
    {"response_format", KC | KH}, {"text", KS}, {"tools", KH | KS}, {"tool_choice", KH | KS},
    {"parallel_tool_calls", KH | KS},
    /* OpenAI's account-side settings (no-ops) and features shoal refuses */
    {"store", KH | KS}, {"service_tier", KH | KS}, {"safety_identifier", KH | KS},
    {"prompt_cache_key", KH | KS}, {"prompt_cache_retention", KH | KS},
    {"prompt_cache_options", KH | KS}, {"moderation", KH | KS}, {"reasoning_effort", KH},
    {"verbosity", KH}, {"audio", KH}, {"modalities", KH}, {"prediction", KH},
    {"web_search_options", KH}, {"functions", KH}, {"function_call", KH}, {"truncation", KS},
    {"reasoning", KS}, {"include", KS}, {"background", KS}, {"background_options", KS},
    {"conversation", KS}, {"max_tool_calls", KS}, {"context_management", KS}, {"image", KS},
    {"access_programs", KS},
    /* encoders */
    {"encoding_format", KE}, {"dimensions", KE}, {"truncate", KE | KR | KL}, {"query", KR},
    {"documents", KR}, {"texts", KR}, {"top_n", KR}, {"return_documents", KR}, {"return_text", KR},
};

/* OpenAI fields shoal refuses whenever they ask for something (not null, false or []). */
static const struct { const char *key; unsigned kinds; const char *why; } refused_fields[] = {
    {"audio", KH, "audio output: shoal serves text models"},
    {"prediction", KH, "Predicted Outputs are not implemented"},
    {"web_search_options", KH, "shoal has no web search"},
    {"functions", KH, "it is deprecated: use 'tools'"},
    {"function_call", KH, "it is deprecated: use 'tool_choice'"},
    {"moderation", KH | KS, "shoal runs no moderation model"},
    {"conversation", KS, "conversations are not stored: use 'previous_response_id'"},
    {"background", KS, "background responses are not supported: stream instead"},
    {"background_options", KS, "background responses are not supported"},
    {"context_management", KS, "context compaction is not implemented"},
    {"max_tool_calls", KS, "a limit on tool calls is not implemented"},
};

static int check_body(json_t *o, oai_kind kind, oai_error *err) {
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        bool ok = false;
        for (size_t i = 0; i < sizeof body_fields / sizeof *body_fields && !ok; i++)
            ok = (body_fields[i].kinds & (1u << kind)) && !strcmp(k, body_fields[i].key);
        if (!ok) return unknown_field(err, k);
    }
    for (size_t i = 0; i < sizeof refused_fields / sizeof *refused_fields; i++)
        if ((refused_fields[i].kinds & (1u << kind)) &&
            !asks_nothing(json_object_get(o, refused_fields[i].key)))
            return refused(err, refused_fields[i].key, "%s", refused_fields[i].why);
    if (kind == OAI_RESPONSES && !absent(json_object_get(o, "prompt")))
        return refused(err, "prompt", "reusable prompts are not stored here: send 'instructions' and 'input'");
    return 0;
}

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
        if (!(r->stop[r->n_stop] = dup_str(e))) return OOM(err, "stop");
        r->n_stop++;
    }
    return 0;
}

static int parse_sched(json_t *o, oai_request *r, oai_error *err) {
    double d = 0;
    if (get_num(o, NULL, "deadline_ms", 0, 86400000.0, &d, err)) return -1;
    if (!absent(json_object_get(o, "deadline_ms"))) {
        if (!(d > 0)) return oai_errorf(err, 400, INVALID, "deadline_ms", "'deadline_ms' must be > 0");
        r->has_deadline = true;
        r->deadline_ms = d;
    }
    return get_i32(o, NULL, "priority", -100, 100, &r->priority, err);
}

static int parse_stream_options(json_t *o, oai_request *r, oai_error *err) {
    static const char *const keys[] = {"include_usage", "include_obfuscation", NULL};
    static const char *const resp_keys[] = {"include_obfuscation", NULL};
    json_t *so = json_object_get(o, "stream_options");
    if (absent(so)) return 0;
    if (!json_is_object(so)) return bad_type(err, "stream_options", "an object");
    if (!r->stream)
        return oai_errorf(err, 400, INVALID, "stream_options", "'stream_options' is only allowed when 'stream' is true");
    bool obf = false; /* include_obfuscation: a no-op (shoal pads no stream events) */
    if (check_keys(so, "stream_options", r->kind == OAI_RESPONSES ? resp_keys : keys, err) ||
        get_bool(so, "stream_options", "include_usage", &r->include_usage, err) ||
        get_bool(so, "stream_options", "include_obfuscation", &obf, err))
        return -1;
    return 0;
}

/* The no-op fields: validated, then without effect (docs/api.md says why for each). */
static int parse_noops(json_t *o, oai_request *r, oai_error *err) {
    static const char *const cache_keys[] = {"mode", "ttl", NULL};
    static const char *const resp_cache_keys[] = {"mode", "ttl", "comparison_response_id", "prewarm", NULL};
    static const char *const verbosities[] = {"low", "medium", "high", NULL};
    json_t *x;
    bool store = r->store;
    if (get_str(o, NULL, "service_tier", NULL, err) || get_str(o, NULL, "safety_identifier", NULL, err) ||
        get_str(o, NULL, "prompt_cache_key", NULL, err) ||
        get_str(o, NULL, "prompt_cache_retention", NULL, err) ||
        get_obj(o, NULL, "prompt_cache_options", r->kind == OAI_RESPONSES ? resp_cache_keys : cache_keys, &x, err) ||
        get_bool(o, NULL, "store", &store, err))
        return -1;
    if (r->kind == OAI_RESPONSES) r->store = store;
    if (r->kind == OAI_CHAT) {
        if (get_str(o, NULL, "reasoning_effort", NULL, err) || get_enum(o, NULL, "verbosity", verbosities, NULL, err))
            return -1;
        json_t *mod = json_object_get(o, "modalities");
        if (!absent(mod)) {
            if (!json_is_array(mod)) return bad_type(err, "modalities", "an array");
            size_t i;
            json_t *e;
            json_array_foreach(mod, i, e) {
                if (!json_is_string(e) || strcmp(json_string_value(e), "text"))
                    return refused(err, "modalities", "shoal generates text only: [\"text\"]");
            }
        }
    }
    return 0;
}

/* The Responses API's own fields (input and instructions are read before). */
static int parse_responses_fields(json_t *o, oai_request *r, oai_error *err) {
    static const char *const text_keys[] = {"format", "verbosity", NULL};
    static const char *const verbosities[] = {"low", "medium", "high", NULL};
    static const char *const reasoning_keys[] = {"effort", "summary", "generate_summary", "mode", "context", NULL};
    static const char *const image_keys[] = {"context_compression", NULL};
    static const char *const access_keys[] = {"cyber", NULL};
    static const char *const truncations[] = {"disabled", "auto", NULL};
    json_t *text, *x;
    if (get_obj(o, NULL, "text", text_keys, &text, err)) return -1;
    if (text && (parse_format(json_object_get(text, "format"), "text.format", true, r, err) ||
                 get_enum(text, "text", "verbosity", verbosities, NULL, err)))
        return -1;
    int t = 0;
    if (get_enum(o, NULL, "truncation", truncations, &t, err)) return -1;
    if (t == 1)
        return refused(err, "truncation", "'auto' (dropping the start of the conversation) is not "
                                          "implemented: an input over the context is a 400");
    if (get_obj(o, NULL, "reasoning", reasoning_keys, &x, err)) return -1;
    if (x) {
        const char *const *k;
        static const char *const str_keys[] = {"effort", "summary", "generate_summary", "mode", "context", NULL};
        for (k = str_keys; *k; k++)
            if (get_str(x, "reasoning", *k, NULL, err)) return -1;
    }
    if (get_obj(o, NULL, "image", image_keys, &x, err) || (x && get_str(x, "image", "context_compression", NULL, err)) ||
        get_obj(o, NULL, "access_programs", access_keys, &x, err) || (x && get_str(x, "access_programs", "cyber", NULL, err)))
        return -1;
    json_t *inc = json_object_get(o, "include");
    if (!absent(inc)) {
        if (!json_is_array(inc)) return bad_type(err, "include", "an array of strings");
        size_t i;
        json_t *e;
        json_array_foreach(inc, i, e) {
            path b;
            const char *p = pindex(&b, NULL, "include", i);
            if (!json_is_string(e)) return bad_type(err, p, "a string");
            const char *v = json_string_value(e);
            if (!strcmp(v, "message.output_text.logprobs")) r->logprobs = true;
            else if (strcmp(v, "reasoning.encrypted_content")) /* no reasoning: nothing to include */
                return refused(err, p, "'%.60s': shoal has no such tool or input", v);
        }
    }
    if (get_i32(o, NULL, "top_logprobs", 0, 20, &r->top_logprobs, err)) return -1;
    if (r->top_logprobs > 0) r->logprobs = true;
    return 0;
}

static int parse_common(json_t *o, oai_request *r, oai_error *err) {
    int64_t x;
    if (get_str(o, NULL, "model", &r->model, err) || get_str(o, NULL, "user", &r->user, err) ||
        parse_metadata(o, r, err) || parse_sched(o, r, err))
        return -1;
    if (r->kind == OAI_EMBEDDING || r->kind == OAI_RERANK || r->kind == OAI_CLASSIFY) return 0;

    x = r->max_tokens;
    /* max_tokens 0 is the scoring idiom of the legacy completions API: with echo (checked
     * below) it returns the prompt and its logprobs, nothing generated */
    if (r->kind != OAI_RESPONSES &&
        get_int(o, NULL, "max_tokens", r->kind == OAI_COMPLETION ? 0 : 1, INT32_MAX, &x, err))
        return -1;
    if (r->kind == OAI_CHAT && get_int(o, NULL, "max_completion_tokens", 1, INT32_MAX, &x, err)) return -1;
    if (r->kind == OAI_RESPONSES && get_int(o, NULL, "max_output_tokens", 1, INT32_MAX, &x, err)) return -1;
    r->max_tokens = (int32_t)x;
    if (get_float(o, NULL, "temperature", 0, 2, &r->temperature, err) ||
        get_float(o, NULL, "top_p", 0, 1, &r->top_p, err) ||
        get_float(o, NULL, "min_p", 0, 1, &r->min_p, err) ||
        get_float(o, NULL, "presence_penalty", -2, 2, &r->presence_penalty, err) ||
        get_float(o, NULL, "frequency_penalty", -2, 2, &r->frequency_penalty, err) ||
        get_float(o, NULL, "repeat_penalty", 0.01, 100, &r->repeat_penalty, err) ||
        get_i32(o, NULL, "top_k", 0, 1000000, &r->top_k, err))
        return -1;
    json_t *seed = json_object_get(o, "seed");
    if (!absent(seed)) {
        if (!json_is_integer(seed)) return bad_type(err, "seed", "an integer");
        r->has_seed = true;
        r->seed = (uint64_t)json_integer_value(seed);
    }
    if (get_i32(o, NULL, "n", 1, OAI_MAX_N, &r->n, err)) return -1;
    json_t *lp = json_object_get(o, "logprobs");
    if (r->kind == OAI_CHAT) {
        if (get_bool(o, NULL, "logprobs", &r->logprobs, err) ||
            get_i32(o, NULL, "top_logprobs", 0, 20, &r->top_logprobs, err))
            return -1;
        if (r->top_logprobs > 0 && !r->logprobs)
            return oai_errorf(err, 400, INVALID, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    } else if (r->kind == OAI_COMPLETION && !absent(lp)) { /* legacy completions: a count 0..5 */
        if (get_i32(o, NULL, "logprobs", 0, 5, &r->top_logprobs, err)) return -1;
        r->logprobs = true;
    }
    if (parse_stop(o, r, err) || get_bool(o, NULL, "stream", &r->stream, err)) return -1;
    if (r->kind == OAI_COMPLETION && get_bool(o, NULL, "echo", &r->echo, err)) return -1;
    bool use_cache = true;
    if (get_bool(o, NULL, "cache", &use_cache, err)) return -1;
    r->cache_off = !use_cache;
    if (get_bool(o, NULL, "return_tokens_as_token_ids", &r->tokens_as_ids, err) ||
        get_bool(o, NULL, "return_token_ids", &r->return_token_ids, err))
        return -1;
    if (r->return_token_ids && r->stream)
        return oai_errorf(err, 400, INVALID, "return_token_ids", "'return_token_ids' is not available when streaming");
    if (r->max_tokens == 0 && !r->echo)
        return oai_errorf(err, 400, INVALID, "max_tokens", "'max_tokens' 0 generates nothing: it needs 'echo': true");
    if (parse_stream_options(o, r, err)) return -1;
    if (r->kind == OAI_COMPLETION) {
        x = 1;
        if (get_int(o, NULL, "best_of", 1, 128, &x, err)) return -1;
        if (x != 1 && x != r->n)
            return refused(err, "best_of", "only 1 or equal to 'n' (shoal returns every choice it generates)");
        json_t *sfx = json_object_get(o, "suffix");
        if (!absent(sfx) && !json_is_string(sfx)) return bad_type(err, "suffix", "a string");
        if (json_is_string(sfx) && json_string_length(sfx) > 0)
            return refused(err, "suffix", "insertion (fill-in-the-middle) is not implemented");
    }
    if (r->kind != OAI_RESPONSES &&
        (parse_logit_bias(o, r, err) || parse_format(json_object_get(o, "response_format"), "response_format", false, r, err)))
        return -1;
    if (r->kind != OAI_COMPLETION && (parse_tools(o, r, err) || parse_tool_choice(o, r, err))) return -1;
    if (r->kind == OAI_RESPONSES && parse_responses_fields(o, r, err)) return -1;
    return parse_noops(o, r, err);
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
    r->n = 1;
    r->parallel_tool_calls = true;
    r->tool_choice = OAI_TOOL_NONE; /* AUTO once tools are given */
    r->store = kind == OAI_RESPONSES;
    if ((unsigned)kind >= OAI_KIND_COUNT)
        return oai_errorf(err, 500, "server_error", NULL, "unknown request kind %d", (int)kind);
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        oai_errorf(err, 400, INVALID, NULL, "invalid JSON body: %s (line %d, column %d)", je.text,
                   je.line, je.column);
        return -1;
    }
    int rc;
    if (!json_is_object(o)) rc = oai_errorf(err, 400, INVALID, NULL, "the body must be a JSON object");
    else if (check_body(o, kind, err)) rc = -1;
    else if (kind == OAI_COMPLETION) rc = parse_prompt(o, r, err);
    else if (kind == OAI_CHAT) rc = parse_messages(o, r, err);
    else if (kind == OAI_RERANK) rc = parse_rerank(o, r, err);
    else if (kind == OAI_RESPONSES) rc = parse_responses_input(o, r, err);
    else rc = parse_input(o, r, err);
    if (rc == 0) rc = parse_common(o, r, err);
    if (rc == 0 && doc) *doc = o;
    else json_decref(o);
    if (rc) oai_request_free(r);
    return rc;
}
