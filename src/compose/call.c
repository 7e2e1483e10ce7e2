/*
 * compose/call — the edge of compose: request bodies out, answers parsed into results in.
 * Answers come from our own nodes, but a node may be anything on the network: every field is
 * type-checked and bounded, and a malformed answer is an error, never a crash.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/oai_req.h"
#include "compose/comp_int.h"
#include "http/http.h"

#define MAX_LABELS 4096
#define MAX_ENTS 1024

void ccall_cls_free(comp_cls *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) free(r->labels[i]);
    free(r->labels);
    free(r->probs);
    for (int i = 0; i < r->n_ents; i++) free(r->ents[i].label), free(r->ents[i].text);
    free(r->ents);
    memset(r, 0, sizeof *r);
}

void ccall_gen_free(comp_gen *g) {
    if (!g) return;
    free(g->text);
    free(g->finish);
    memset(g, 0, sizeof *g);
}

static int fail(char *err, size_t n, const char *msg) {
    snprintf(err, n, "%s", msg);
    return -1;
}

static char *dup_str(const json_t *v) {
    const char *s = json_string_value(v);
    return s ? strdup(s) : NULL;
}

/* One data[] item of a classify answer. */
static int parse_item(const json_t *it, comp_cls *r, char *err, size_t errn) {
    const json_t *labels = json_object_get(it, "labels");
    size_t n = json_array_size(labels);
    if (!json_is_array(labels) || n == 0 || n > MAX_LABELS)
        return fail(err, errn, "classify answer: data[].labels is missing, empty or too long");
    r->labels = calloc(n, sizeof *r->labels);
    r->probs = calloc(n, sizeof *r->probs);
    if (!r->labels || !r->probs) return fail(err, errn, "out of memory");
    r->best = -1;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(labels, i), *sc = json_object_get(e, "score");
        const char *l = json_string_value(json_object_get(e, "label"));
        if (!l || !json_is_number(sc)) return fail(err, errn, "classify answer: a label without label/score");
        double p = json_number_value(sc);
        if (!(p >= 0 && p <= 1.000001)) return fail(err, errn, "classify answer: a score outside 0..1");
        if (!(r->labels[i] = strdup(l))) return fail(err, errn, "out of memory");
        r->probs[i] = p;
        r->n = (int)i + 1;
        if (r->best < 0 || p > r->probs[r->best]) r->best = (int)i;
    }
    const json_t *ents = json_object_get(it, "entities");
    size_t ne = json_array_size(ents);
    if (ne > MAX_ENTS) return fail(err, errn, "classify answer: too many entities");
    if (ne && !(r->ents = calloc(ne, sizeof *r->ents))) return fail(err, errn, "out of memory");
    for (size_t i = 0; i < ne; i++) {
        const json_t *e = json_array_get(ents, i);
        comp_entity *x = &r->ents[r->n_ents];
        x->label = dup_str(json_object_get(e, "label"));
        x->text = dup_str(json_object_get(e, "text"));
        if (!x->label || !x->text) {
            free(x->label), free(x->text);
            return fail(err, errn, "classify answer: an entity without label/text");
        }
        x->start = (long)json_integer_value(json_object_get(e, "start"));
        x->end = (long)json_integer_value(json_object_get(e, "end"));
        x->score = json_number_value(json_object_get(e, "score"));
        r->n_ents++;
    }
    return 0;
}

int ccall_parse_cls(const char *body, size_t len, comp_cls **out, int *n, char *err, size_t errn) {
    *out = NULL;
    *n = 0;
    json_t *j = json_loadb(body, len, 0, NULL);
    const json_t *data = json_object_get(j, "data");
    size_t nd = json_array_size(data);
    if (!json_is_array(data) || nd == 0 || nd > OAI_MAX_INPUTS) {
        json_decref(j);
        return fail(err, errn, "classify answer: no data[]");
    }
    comp_cls *r = calloc(nd, sizeof *r);
    int rc = r ? 0 : fail(err, errn, "out of memory");
    for (size_t i = 0; !rc && i < nd; i++) {
        rc = parse_item(json_array_get(data, i), &r[i], err, errn);
        *n = (int)i + 1;
    }
    json_decref(j);
    if (rc) {
        for (int i = 0; i < *n; i++) ccall_cls_free(&r[i]);
        free(r);
        *n = 0;
        return -1;
    }
    *out = r;
    return 0;
}

/* The probabilities of the two most likely tokens at one position, from a list (chat:
 * [{logprob}]) or an object (completions: {token: logprob}). */
static double top_margin(const json_t *top) {
    double a = -INFINITY, b = -INFINITY;
    if (json_is_array(top)) {
        for (size_t i = 0; i < json_array_size(top); i++) {
            double lp = json_number_value(json_object_get(json_array_get(top, i), "logprob"));
            if (lp > a) b = a, a = lp;
            else if (lp > b) b = lp;
        }
    } else if (json_is_object(top)) {
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)top, k, v) {
            double lp = json_number_value(v);
            if (lp > a) b = a, a = lp;
            else if (lp > b) b = lp;
        }
    }
    if (!isfinite(a)) return 0;
    return exp(a) - (isfinite(b) ? exp(b) : 0);
}

static void add_token(comp_gen *g, double lp, const json_t *top) {
    if (!isfinite(lp)) lp = -1e9;
    g->sum_lp += lp;
    if (g->n_tok == 0 || lp < g->min_lp) g->min_lp = lp;
    g->sum_margin += top_margin(top);
    g->n_tok++;
}

int ccall_parse_gen(const char *body, size_t len, int kind, comp_gen *g, char *err, size_t errn) {
    memset(g, 0, sizeof *g);
    json_t *j = json_loadb(body, len, 0, NULL);
    const json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    const json_t *text = kind == OAI_CHAT ? json_object_get(json_object_get(ch, "message"), "content")
                                          : json_object_get(ch, "text");
    if (!json_is_string(text)) {
        json_decref(j);
        return fail(err, errn, "generation answer: no choices[0] text");
    }
    g->text = dup_str(text);
    g->finish = dup_str(json_object_get(ch, "finish_reason"));
    const json_t *lp = json_object_get(ch, "logprobs");
    if (kind == OAI_CHAT) {
        const json_t *content = json_object_get(lp, "content");
        for (size_t i = 0; i < json_array_size(content); i++) {
            const json_t *t = json_array_get(content, i);
            add_token(g, json_number_value(json_object_get(t, "logprob")), json_object_get(t, "top_logprobs"));
        }
    } else {
        const json_t *tl = json_object_get(lp, "token_logprobs"), *tops = json_object_get(lp, "top_logprobs");
        for (size_t i = 0; i < json_array_size(tl); i++)
            add_token(g, json_number_value(json_array_get(tl, i)), json_array_get(tops, i));
    }
    const json_t *u = json_object_get(j, "usage");
    g->prompt_tokens = (long)json_integer_value(json_object_get(u, "prompt_tokens"));
    g->completion_tokens = (long)json_integer_value(json_object_get(u, "completion_tokens"));
    json_decref(j);
    if (!g->text) return fail(err, errn, "out of memory");
    return 0;
}

double ccall_cls_signal(const comp_cls *r, int signal) {
    if (r->best < 0) return 0;
    double p1 = r->probs[r->best], p2 = 0;
    for (int i = 0; i < r->n; i++)
        if (i != r->best && r->probs[i] > p2) p2 = r->probs[i];
    switch (signal) {
    case CCFG_SIG_MEAN_LOGPROB: return log(p1 > 1e-30 ? p1 : 1e-30);
    case CCFG_SIG_MARGIN: return p1 - p2;
    default: return p1; /* classifier_prob, min_prob */
    }
}

double ccall_gen_signal(const comp_gen *g, int signal) {
    if (g->n_tok == 0) return signal == CCFG_SIG_MEAN_LOGPROB ? -1e9 : 0; /* no evidence: not sure */
    switch (signal) {
    case CCFG_SIG_MEAN_LOGPROB: return g->sum_lp / g->n_tok;
    case CCFG_SIG_MIN_PROB: return exp(g->min_lp);
    case CCFG_SIG_MARGIN: return g->sum_margin / g->n_tok;
    default: return exp(g->sum_lp / g->n_tok); /* classifier_prob on a generator: the geometric mean */
    }
}

int ccall_run(comp *c, void *ctx, int kind, const char *model, json_t *body, double timeout_ms, comp_answer *ans,
              double *ms, char *err, size_t errn) {
    memset(ans, 0, sizeof *ans);
    json_object_set_new(body, "model", json_string(model));
    char *s = json_dumps(body, JSON_COMPACT);
    if (!s) return fail(err, errn, "out of memory");
    comp_call call = {.kind = kind, .model = model, .body = s, .len = strlen(s), .timeout_ms = timeout_ms};
    double t0 = http_now_ms();
    c->ops.call(c->ops.ud, ctx, &call, ans);
    *ms = http_now_ms() - t0;
    free(s);
    if (ans->status == 200 && ans->body) return 0;
    if (ans->error[0]) snprintf(err, errn, "%s", ans->error);
    else if (ans->status) {
        /* the answer's own message says the most */
        json_t *j = ans->body ? json_loadb(ans->body, ans->len, 0, NULL) : NULL;
        const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        snprintf(err, errn, "%s answered %d%s%.200s", model, ans->status, m ? ": " : "", m ? m : "");
        json_decref(j);
    } else {
        snprintf(err, errn, "%s: no answer", model);
    }
    free(ans->body);
    ans->body = NULL;
    return -1;
}
