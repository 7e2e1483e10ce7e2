/*
 * compose/pipeline — a named chain of steps (docs/cluster.md, "Pipelines").
 *
 * Steps run in file order; a step runs when every condition of its when: holds, and then
 * publishes its outputs as variables (NAME.label, NAME.text, ...), which later steps and the
 * pipeline's output template read as {{NAME.field}}. A step that fails (its call fails or times
 * out, its action does not satisfy its schema, the deadline passed) takes its fallback outputs
 * when it declares some, else the pipeline answers 502 naming the step. NAME.ok is "true" for a
 * step that succeeded and "false" for one that failed (fallback or not); a step that did not run
 * leaves its variables unset (they render as "").
 *
 * With the request's tools (chat, tool_choice not "none") the call is decided once the classify
 * and action steps have run (pipe_tools.c); a call, or a tool_choice that forces one, skips the
 * generate steps after them, and the answer is the call (finish_reason "tool_calls").
 *
 * Per request the variables live in a small array owned by the run; nothing is kept after it.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/oai_req.h"
#include "compose/comp_int.h"
#include "http/http.h"

#define MAX_VARS 512
#define ERRN 256
#define MAX_RENDER (64 * 1024)

typedef struct var { char *k, *v; } var;

typedef struct run {
    var vars[MAX_VARS];
    int n;
} run;

static void vars_free(run *r) {
    for (int i = 0; i < r->n; i++) free(r->vars[i].k), free(r->vars[i].v);
    r->n = 0;
}

static const char *get(const run *r, const char *k) {
    for (int i = r->n - 1; i >= 0; i--)
        if (!strcmp(r->vars[i].k, k)) return r->vars[i].v;
    return NULL;
}

/* Sets k = v (formatted); a later set of the same name wins (get looks from the end). */
__attribute__((format(printf, 3, 4))) static void set(run *r, const char *k, const char *fmt, ...) {
    if (r->n == MAX_VARS) return;
    va_list ap;
    va_start(ap, fmt);
    char *v = NULL;
    if (vasprintf(&v, fmt, ap) < 0) v = NULL;
    va_end(ap);
    char *kk = strdup(k);
    if (!v || !kk) {
        free(v), free(kk);
        return;
    }
    r->vars[r->n++] = (var){kk, v};
}

/* ============================================================ templates ===== */

static void put_json_str(FILE *o, const char *s) {
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') fprintf(o, "\\%c", *c);
        else if (*c < 0x20) fprintf(o, "\\u%04x", *c);
        else fputc(*c, o);
    }
}

/* t with every {{var}} / {{var|lower}} / {{var|json}} replaced (unset: ""). The config
 * checked the references. malloc'd; NULL when out of memory or larger than MAX_RENDER. */
static char *render(const run *r, const char *t) {
    char *out = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&out, &len);
    if (!o) return NULL;
    for (const char *s = t; *s;) {
        const char *b = strstr(s, "{{"), *e = b ? strstr(b + 2, "}}") : NULL;
        if (!b || !e) {
            fputs(s, o);
            break;
        }
        fwrite(s, 1, (size_t)(b - s), o);
        char name[160];
        size_t n = (size_t)(e - b - 2);
        if (n >= sizeof name) n = sizeof name - 1;
        memcpy(name, b + 2, n);
        name[n] = 0;
        char *bar = strchr(name, '|');
        if (bar) *bar++ = 0;
        const char *v = get(r, name);
        if (v && bar && !strcmp(bar, "lower")) {
            for (const char *c = v; *c; c++) fputc(tolower((unsigned char)*c), o);
        } else if (v && bar && !strcmp(bar, "json")) {
            put_json_str(o, v);
        } else if (v) {
            fputs(v, o);
        }
        s = e + 2;
    }
    fclose(o);
    if (out && len > MAX_RENDER) free(out), out = NULL;
    return out;
}

/* ============================================================ conditions ===== */

static bool number(const char *s, double *v) {
    char *end;
    if (!s || !*s) return false;
    *v = strtod(s, &end);
    return !*end && isfinite(*v);
}

static bool cond_holds(const run *r, const ccfg_cond *c) {
    const char *v = get(r, c->var);
    if (c->op == CCFG_OP_IN) {
        for (int i = 0; v && i < c->n_set; i++)
            if (!strcmp(v, c->set[i])) return true;
        return false;
    }
    double a, b;
    int cmp;
    if (number(v, &a) && number(c->value, &b)) cmp = (a > b) - (a < b);
    else if (c->op != CCFG_OP_EQ && c->op != CCFG_OP_NE && !v) return false; /* unset is not < or > anything */
    else cmp = strcmp(v ? v : "", c->value);
    switch (c->op) {
    case CCFG_OP_EQ: return cmp == 0;
    case CCFG_OP_NE: return cmp != 0;
    case CCFG_OP_LT: return cmp < 0;
    case CCFG_OP_LE: return cmp <= 0;
    case CCFG_OP_GT: return cmp > 0;
    default: return cmp >= 0;
    }
}

/* ============================================================ steps ===== */

/* Publishes a classification: NAME.label, NAME.confidence, NAME.slots.X, NAME.slots_kv
 * (" key=value" for each slot, keys sorted) and slots.X. */
static void publish_cls(run *r, const char *name, const comp_cls *c, json_t *out) {
    char k[300];
    const char *label = c->best >= 0 ? c->labels[c->best] : "";
    double p = c->best >= 0 ? c->probs[c->best] : 0;
    snprintf(k, sizeof k, "%s.label", name), set(r, k, "%s", label);
    snprintf(k, sizeof k, "%s.confidence", name), set(r, k, "%.6f", p);
    json_object_set_new(out, "label", json_string(label));
    json_object_set_new(out, "confidence", json_real(p));
    json_t *slots = json_object();
    /* the first entity of each label is that slot's value */
    int order[1024], ns = 0;
    for (int i = 0; i < c->n_ents && ns < 1024; i++) {
        if (json_object_get(slots, c->ents[i].label)) continue;
        json_object_set_new(slots, c->ents[i].label, json_string(c->ents[i].text));
        snprintf(k, sizeof k, "%s.slots.%s", name, c->ents[i].label), set(r, k, "%s", c->ents[i].text);
        snprintf(k, sizeof k, "slots.%s", c->ents[i].label), set(r, k, "%s", c->ents[i].text);
        int j = ns++;
        while (j > 0 && strcmp(c->ents[order[j - 1]].label, c->ents[i].label) > 0) order[j] = order[j - 1], j--;
        order[j] = i;
    }
    char *kv = NULL;
    size_t kvn = 0;
    FILE *o = open_memstream(&kv, &kvn);
    for (int j = 0; o && j < ns; j++) fprintf(o, " %s=%s", c->ents[order[j]].label, c->ents[order[j]].text);
    if (o) fclose(o);
    snprintf(k, sizeof k, "%s.slots_kv", name), set(r, k, "%s", kv ? kv : "");
    free(kv);
    json_object_set_new(out, "slots", slots);
}

/* The action object: each field's template rendered; empty values left out; a value becomes
 * a number or boolean when the schema says the property is one. */
static json_t *build_action(const run *r, const ccfg_step *st, const json_t *schema) {
    json_t *o = json_object();
    for (int i = 0; o && i < st->n_fields; i++) {
        char *v = render(r, st->fields[i].value);
        if (!v) continue;
        if (!*v) {
            free(v);
            continue;
        }
        const char *t = schema ? cschema_prop_type(schema, st->fields[i].key) : NULL;
        double x;
        json_t *jv = NULL;
        if (t && (!strcmp(t, "integer") || !strcmp(t, "number")) && number(v, &x))
            jv = !strcmp(t, "integer") && floor(x) == x && fabs(x) < 9e15 ? json_integer((json_int_t)x) : json_real(x);
        else if (t && !strcmp(t, "boolean") && (!strcmp(v, "true") || !strcmp(v, "false")))
            jv = json_boolean(!strcmp(v, "true"));
        else
            jv = json_string(v);
        json_object_set_new(o, st->fields[i].key, jv);
        free(v);
    }
    return o;
}

/* The text the pipeline works on: the last user message of a chat, or the prompt. */
static const char *input_of(const json_t *root, int kind) {
    if (kind == OAI_COMPLETION) return json_string_value(json_object_get(root, "prompt"));
    const json_t *msgs = json_object_get(root, "messages");
    for (size_t i = json_array_size(msgs); i-- > 0;) {
        const json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role && !strcmp(role, "user"))
            return json_string_value(json_object_get(m, "content"));
    }
    return NULL;
}

/* Runs step st; 0 on success with its outputs published and described in out, -1 with err. */
static int run_step(comp *c, void *ctx, const ccfg_step *st, const json_t *schema, run *r, double timeout,
                    long usage[2], json_t *out, char *err) {
    char k[300];
    if (st->kind == CCFG_STEP_ACTION) {
        json_t *obj = build_action(r, st, schema);
        if (!obj) return snprintf(err, ERRN, "out of memory"), -1;
        int rc = schema ? cschema_validate(schema, obj, err, ERRN) : 0;
        json_object_set(out, "action", obj);
        if (!rc) {
            char *s = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
            snprintf(k, sizeof k, "%s.json", st->name), set(r, k, "%s", s ? s : "");
            free(s);
        }
        json_decref(obj);
        return rc;
    }
    char *text = render(r, st->input);
    if (!text) return snprintf(err, ERRN, "the rendered %s is too large", st->kind == CCFG_STEP_CLASSIFY ? "input" : "prompt"), -1;
    json_t *body = st->kind == CCFG_STEP_CLASSIFY
                       ? json_pack("{s:s}", "input", text)
                       : json_pack("{s:[{s:s, s:s}], s:i, s:f}", "messages", "role", "user", "content", text,
                                   "max_tokens", st->max_tokens, "temperature", st->temperature);
    free(text);
    if (!body) return snprintf(err, ERRN, "out of memory"), -1;
    /* the client's user goes with every call, so that a weighted (canary) step stays sticky */
    if (get(r, "\x01user")) json_object_set_new(body, "user", json_string(get(r, "\x01user")));
    /* an encoder's deadline estimate is one forward pass, so a node refuses only what it cannot
     * do; a generator's assumes max_tokens and would refuse most short replies, so generation
     * steps are bounded by the call's timeout instead (below, and run_step's caller) */
    if (timeout > 0 && st->kind == CCFG_STEP_CLASSIFY) json_object_set_new(body, "deadline_ms", json_real(timeout));
    comp_answer a;
    double ms;
    int kind = st->kind == CCFG_STEP_CLASSIFY ? OAI_CLASSIFY : OAI_CHAT;
    int rc = ccall_run(c, ctx, kind, st->model, body, timeout, &a, &ms, err, ERRN);
    json_decref(body);
    if (rc) return -1;
    if (timeout > 0 && ms > timeout) {
        /* a local engine is not interrupted mid-answer: a late answer is a timeout all the same */
        free(a.body);
        return snprintf(err, ERRN, "%s answered after %.1f ms (timeout %.1f ms)", st->model, ms, timeout), -1;
    }
    json_object_set_new(out, "backend", json_string(a.backend));
    if (st->kind == CCFG_STEP_CLASSIFY) {
        comp_cls *res;
        int n;
        rc = ccall_parse_cls(a.body, a.len, &res, &n, err, ERRN);
        free(a.body);
        if (rc) return -1;
        publish_cls(r, st->name, &res[0], out);
        for (int i = 0; i < n; i++) ccall_cls_free(&res[i]);
        free(res);
        return 0;
    }
    comp_gen g;
    rc = ccall_parse_gen(a.body, a.len, OAI_CHAT, &g, err, ERRN);
    free(a.body);
    if (rc) return -1;
    snprintf(k, sizeof k, "%s.text", st->name), set(r, k, "%s", g.text);
    set(r, "\x01last_text", "%s", g.text);
    json_object_set_new(out, "text", json_string(g.text));
    if (g.finish) json_object_set_new(out, "finish_reason", json_string(g.finish));
    usage[0] += g.prompt_tokens, usage[1] += g.completion_tokens;
    ccall_gen_free(&g);
    return 0;
}

/* A failed step's declared fallback outputs. */
static void take_fallback(run *r, const ccfg_step *st, json_t *out) {
    char k[300];
    json_t *fo = json_object();
    for (int i = 0; i < st->n_fallback; i++) {
        snprintf(k, sizeof k, "%s.%s", st->name, st->fallback[i].key);
        set(r, k, "%s", st->fallback[i].value);
        if (!strncmp(st->fallback[i].key, "slots.", 6)) {
            snprintf(k, sizeof k, "%s", st->fallback[i].key);
            set(r, k, "%s", st->fallback[i].value);
        }
        if (!strcmp(st->fallback[i].key, "text")) set(r, "\x01last_text", "%s", st->fallback[i].value);
        json_object_set_new(fo, st->fallback[i].key, json_string(st->fallback[i].value));
    }
    json_object_set_new(out, "fallback", fo);
}

/* Request fields a pipeline applies: the others are named in shoal.pipeline.ignored (the
 * steps' own settings come from the config), never dropped silently. */
static const char *const applied[] = {"model", "messages", "prompt", "stream", "user", "metadata", "deadline_ms",
                                      "tools", "tool_choice", "parallel_tool_calls", NULL};
static const char *const refused[] = {"response_format", "logprobs", "top_logprobs", "n", "echo", "suffix", "best_of",
                                      NULL};

/* The answer's choice: the content, or the tool call. */
static json_t *choice_of(int kind, const char *content, const cpt_call *call) {
    if (call)
        return json_pack("{s:i, s:{s:s, s:n, s:[{s:s, s:s, s:{s:s, s:s}}]}, s:n, s:s}", "index", 0, "message", "role",
                         "assistant", "content", "tool_calls", "id", call->id, "type", "function", "function", "name",
                         call->name, "arguments", call->arguments, "logprobs", "finish_reason", "tool_calls");
    return kind == OAI_CHAT ? json_pack("{s:i, s:{s:s, s:s}, s:n, s:s}", "index", 0, "message", "role", "assistant",
                                        "content", content ? content : "", "logprobs", "finish_reason", "stop")
                            : json_pack("{s:i, s:s, s:n, s:s}", "index", 0, "text", content ? content : "", "logprobs",
                                        "finish_reason", "stop");
}

void comp_pipeline(comp *c, int mi, void *ctx, int kind, json_t *root, http_response *resp, comp_info *info) {
    const ccfg_model *m = &c->cfg->models[mi];
    const ccfg_comp *k = &m->comp;
    comp_model *pm = &c->pm[mi];
    double t0 = http_now_ms();
    if (kind != OAI_CHAT && kind != OAI_COMPLETION) {
        comp_error(resp, 400, "unsupported_endpoint", "model '%s' is a pipeline: it answers chat and completions",
                   m->name);
        return;
    }
    for (int i = 0; refused[i]; i++) {
        const json_t *v = json_object_get(root, refused[i]);
        if (v && !json_is_null(v) && !json_is_false(v) && !(json_is_integer(v) && json_integer_value(v) == 1 &&
                                                          !strcmp(refused[i], "n"))) {
            comp_error(resp, 400, "unsupported_parameter", "model '%s' is a pipeline: '%s' is not supported by "
                       "pipelines", m->name, refused[i]);
            return;
        }
    }
    static const char *const chat_only[] = {"tools", "tool_choice", NULL};
    for (int i = 0; kind != OAI_CHAT && chat_only[i]; i++) {
        const json_t *v = json_object_get(root, chat_only[i]);
        if (v && !json_is_null(v)) {
            comp_error(resp, 400, "unsupported_parameter", "model '%s' is a pipeline: '%s' is for chat requests",
                       m->name, chat_only[i]);
            return;
        }
    }
    json_t *ignored = json_array();
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        bool known = false;
        for (int i = 0; applied[i] && !known; i++) known = !strcmp(key, applied[i]);
        for (int i = 0; refused[i] && !known; i++) known = !strcmp(key, refused[i]);
        if (!known) json_array_append_new(ignored, json_string(key));
    }
    const char *input = input_of(root, kind);
    if (!input) {
        json_decref(ignored);
        comp_error(resp, 400, "invalid_request", "model '%s' is a pipeline: it needs a user message (or a prompt)",
                   m->name);
        return;
    }
    double deadline = k->deadline_ms;
    const json_t *cd = json_object_get(root, "deadline_ms");
    if (json_is_number(cd) && json_number_value(cd) > 0 && (!deadline || json_number_value(cd) < deadline))
        deadline = json_number_value(cd);
    run *r = calloc(1, sizeof *r);
    json_t *steps = json_array();
    if (!r || !steps) {
        free(r), json_decref(steps), json_decref(ignored);
        comp_error(resp, 500, NULL, "out of memory");
        return;
    }
    set(r, "input", "%s", input);
    const char *user = json_string_value(json_object_get(root, "user"));
    if (user) set(r, "\x01user", "%s", user);
    long usage[2] = {0, 0};
    char failed_step[160] = "", failed_err[ERRN] = "";
    size_t dl = (size_t)snprintf(info->decision, sizeof info->decision, "pipeline");
    /* tools: the call is decided once the classify and action steps have run, before the
     * generate steps after them (the reply steps), which a call or a forced tool_choice skips */
    cpt_req tr;
    bool tools = kind == OAI_CHAT && cpt_read(root, &tr);
    bool forced = tools && (tr.choice == OAI_TOOL_REQUIRED || tr.choice == OAI_TOOL_FUNCTION);
    int first_reply = 0;
    for (int s = 0; s < k->n_steps; s++)
        if (k->steps[s].kind != CCFG_STEP_GENERATE) first_reply = s + 1;
    json_t *trec = tools ? json_object() : NULL;
    cpt_call call = {0};
    int called = 0;
    bool decided = false, infra = false;
    char why[512] = "";
    for (int s = 0; s < k->n_steps && !failed_step[0]; s++) {
        const ccfg_step *st = &k->steps[s];
        if (tools && !decided && s == first_reply) {
            decided = true;
            called = cpt_decide(&tr, k, steps, trec, &call, why, sizeof why, &infra);
        }
        bool skip = s >= first_reply && decided && (called || forced);
        bool go = !skip;
        for (int i = 0; i < st->n_when && go; i++) go = cond_holds(r, &st->when[i]);
        static const char *const kinds[] = {"classify", "generate", "action"};
        json_t *out = json_pack("{s:s, s:s, s:b}", "name", st->name, "kind", kinds[st->kind], "ran", go);
        if (st->model) json_object_set_new(out, "model", json_string(st->model));
        if (skip) json_object_set_new(out, "skipped", json_string(called ? "a tool call answers" : "tool_choice "
                                                                  "allows only a tool call"));
        int outcome = 3; /* skipped */
        double ts = http_now_ms();
        if (go) {
            double left = deadline > 0 ? deadline - (ts - t0) : 0;
            double timeout = st->timeout_ms;
            if (deadline > 0 && (!timeout || left < timeout)) timeout = left;
            char err[ERRN] = "";
            int rc = deadline > 0 && left <= 0 ? (snprintf(err, sizeof err, "the pipeline's deadline passed"), -1)
                                               : run_step(c, ctx, st, pm->schemas[s], r, timeout, usage, out, err);
            char okk[300];
            snprintf(okk, sizeof okk, "%s.ok", st->name);
            set(r, okk, "%s", rc ? "false" : "true");
            json_object_set_new(out, "ok", json_boolean(!rc));
            if (rc) {
                json_object_set_new(out, "error", json_string(err));
                char ek[300];
                snprintf(ek, sizeof ek, "%s.error", st->name), set(r, ek, "%s", err);
                if (st->has_fallback) {
                    take_fallback(r, st, out);
                    outcome = 2;
                } else {
                    snprintf(failed_step, sizeof failed_step, "%s", st->name);
                    snprintf(failed_err, sizeof failed_err, "%s", err);
                    outcome = 1;
                }
            } else {
                outcome = 0;
            }
            double ms = http_now_ms() - ts;
            char mk[300];
            snprintf(mk, sizeof mk, "%s.ms", st->name), set(r, mk, "%.3f", ms);
            json_object_set_new(out, "ms", json_real(ms));
            metrics_observe(pm->m_step_s[s], ms * 1e-3);
            if (st->kind == CCFG_STEP_CLASSIFY && !rc && !info->label[0]) {
                char lk[300];
                snprintf(lk, sizeof lk, "%s.label", st->name);
                const char *l = get(r, lk);
                snprintf(lk, sizeof lk, "%s.confidence", st->name);
                const char *p = get(r, lk);
                snprintf(info->label, sizeof info->label, "%s", l ? l : "");
                info->confidence = p ? atof(p) : -1;
            }
        }
        metrics_inc(pm->m_step_out[s * 4 + outcome], 1);
        static const char *const oc[] = {"ok", "failed", "fallback", "skipped"};
        if (dl < sizeof info->decision)
            dl += (size_t)snprintf(info->decision + dl, sizeof info->decision - dl, " %s:%s", st->name, oc[outcome]);
        json_array_append_new(steps, out);
    }
    if (!failed_step[0] && tools && !decided) {
        decided = true;
        called = cpt_decide(&tr, k, steps, trec, &call, why, sizeof why, &infra);
    }
    if (tools && dl < sizeof info->decision)
        dl += (size_t)snprintf(info->decision + dl, sizeof info->decision - dl, " tool_call=%.64s",
                               called == 1 ? call.name : "none");
    if (failed_step[0] || called < 0 || (forced && !called)) {
        bool named = forced && tr.choice == OAI_TOOL_FUNCTION;
        const char *forced_pre = named ? "(function '" : "'", *forced_name = named ? tr.name : "required",
                   *forced_post = named ? "')" : "'";
        if (failed_step[0])
            comp_error(resp, 502, "pipeline_step_failed", "pipeline '%s': step '%s' failed and has no fallback: %s",
                       m->name, failed_step, failed_err);
        else if (called < 0)
            comp_error(resp, 500, NULL, "out of memory");
        else if (infra)
            comp_error(resp, 502, "pipeline_step_failed", "model '%s' is a pipeline: tool_choice %s%s%s needs a "
                       "tool call, but %s", m->name, forced_pre, forced_name, forced_post, why);
        else
            comp_error(resp, 422, "tool_call_not_possible", "model '%s' is a pipeline: tool_choice %s%s%s needs a "
                       "tool call, but %s", m->name, forced_pre, forced_name, forced_post, why);
        if (failed_step[0] || infra) metrics_inc(pm->m_failed, 1);
        json_decref(steps), json_decref(ignored), json_decref(trec);
        cpt_call_free(&call);
        vars_free(r), free(r);
        return;
    }
    char *content = called ? NULL
                    : k->output ? render(r, k->output)
                                : strdup(get(r, "\x01last_text") ? get(r, "\x01last_text") : "");
    double total = http_now_ms() - t0;
    char id[64];
    snprintf(id, sizeof id, "%s-pipe-%llx", kind == OAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)(t0 * 1e3) ^ (unsigned long long)(uintptr_t)r);
    json_t *choice = choice_of(kind, content, called ? &call : NULL);
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:[o], s:{s:I, s:I, s:I}, s:{s:{s:s, s:o, s:f, s:o}}}", "id", id,
                          "object", kind == OAI_CHAT ? "chat.completion" : "text_completion", "created",
                          (json_int_t)time(NULL), "model", m->name, "choices", choice, "usage", "prompt_tokens",
                          (json_int_t)usage[0], "completion_tokens", (json_int_t)usage[1], "total_tokens",
                          (json_int_t)(usage[0] + usage[1]), "shoal", "pipeline", "name", m->name, "steps", steps,
                          "total_ms", total, "ignored", ignored);
    if (deadline > 0 && j) json_object_set_new(json_object_get(json_object_get(j, "shoal"), "pipeline"), "deadline_ms",
                                               json_real(deadline));
    if (trec && j) json_object_set(json_object_get(json_object_get(j, "shoal"), "pipeline"), "tool_call", trec);
    json_decref(trec);
    char tool_name[80];
    snprintf(tool_name, sizeof tool_name, "%s", called ? call.name : "");
    cpt_call_free(&call);
    free(content);
    vars_free(r);
    free(r);
    if (!j) {
        comp_error(resp, 500, NULL, "out of memory");
        return;
    }
    metrics_inc(pm->m_ok, 1);
    bool stream = json_is_true(json_object_get(root, "stream"));
    comp_respond(resp, j, kind, stream);
    if (info->label[0]) {
        comp_header(resp, "X-Shoal-Label", "%s", info->label);
        comp_header(resp, "X-Shoal-Confidence", "%.4f", info->confidence);
    }
    if (tool_name[0]) comp_header(resp, "X-Shoal-Tool-Call", "%s", tool_name);
}
