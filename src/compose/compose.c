/*
 * compose — see compose.h. This file: set-up and metrics, classifier routing, cascades,
 * ensembles and the answer's forms (JSON or SSE). Pipelines are in pipeline.c.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/oai_req.h"
#include "compose/comp_int.h"

#define ERRN 256

static const double conf_buckets[] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0};
#define N_CONF (sizeof conf_buckets / sizeof *conf_buckets)
static const char *const step_outcomes[] = {"ok", "failed", "fallback", "skipped"};

/* ============================================================ answers ===== */

void comp_error(http_response *resp, int status, const char *code, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *j = json_pack("{s:{s:s, s:s, s:s?}}", "error", "message", msg, "type",
                          status < 500 ? "invalid_request_error" : "server_error", "code", code);
    free(resp->body);
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    resp->body_len = resp->body ? strlen(resp->body) : 0;
    json_decref(j);
}

static json_t *chunk(const json_t *j, int kind, json_t *choice) {
    return json_pack("{s:O?, s:s, s:O?, s:O?, s:[o]}", "id", json_object_get(j, "id"), "object",
                     kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     json_object_get(j, "created"), "model", json_object_get(j, "model"), "choices", choice);
}

char *comp_sse_of(const json_t *j, int kind, size_t *len) {
    const json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    const json_t *text = kind == OAI_CHAT ? json_object_get(json_object_get(ch, "message"), "content")
                                          : json_object_get(ch, "text");
    const json_t *fin = json_object_get(ch, "finish_reason");
    const json_t *calls = kind == OAI_CHAT ? json_object_get(json_object_get(ch, "message"), "tool_calls") : NULL;
    json_t *first = kind == OAI_CHAT
                        ? json_pack("{s:i, s:{s:s, s:O?}, s:n}", "index", 0, "delta", "role", "assistant", "content",
                                    text, "finish_reason")
                        : json_pack("{s:i, s:O?, s:n}", "index", 0, "text", text, "finish_reason");
    if (first && json_array_size(calls)) {
        /* tool calls: whole in the first chunk, each with its index */
        json_t *d = json_deep_copy(calls), *delta = json_object_get(first, "delta");
        size_t i;
        json_t *c;
        json_array_foreach(d, i, c) json_object_set_new(c, "index", json_integer((json_int_t)i));
        json_object_set_new(delta, "content", json_null());
        json_object_set_new(delta, "tool_calls", d);
    }
    json_t *last = kind == OAI_CHAT ? json_pack("{s:i, s:{}, s:O?}", "index", 0, "delta", "finish_reason", fin)
                                    : json_pack("{s:i, s:s, s:O?}", "index", 0, "text", "", "finish_reason", fin);
    json_t *c1 = chunk(j, kind, first), *c2 = chunk(j, kind, last);
    if (c2 && json_object_get(j, "shoal")) json_object_set(c2, "shoal", json_object_get(j, "shoal"));
    if (c2 && json_object_get(j, "usage")) json_object_set(c2, "usage", json_object_get(j, "usage"));
    char *a = c1 ? json_dumps(c1, JSON_COMPACT) : NULL, *b = c2 ? json_dumps(c2, JSON_COMPACT) : NULL;
    json_decref(c1), json_decref(c2);
    char *out = NULL;
    if (a && b) {
        size_t n = strlen(a) + strlen(b) + 64;
        if ((out = malloc(n))) *len = (size_t)snprintf(out, n, "data: %s\n\ndata: %s\n\ndata: [DONE]\n\n", a, b);
    }
    free(a), free(b);
    return out;
}

void comp_respond(http_response *resp, json_t *j, int kind, bool stream) {
    free(resp->body);
    resp->body = NULL;
    resp->status = 200;
    if (stream && (kind == OAI_CHAT || kind == OAI_COMPLETION)) {
        resp->content_type = "text/event-stream";
        resp->body = comp_sse_of(j, kind, &resp->body_len);
    } else {
        resp->content_type = "application/json";
        resp->body = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
        resp->body_len = resp->body ? strlen(resp->body) : 0;
    }
    json_decref(j);
    if (!resp->body) comp_error(resp, 500, NULL, "out of memory");
}

static void set_label(comp_info *info, const char *label, double conf) {
    snprintf(info->label, sizeof info->label, "%s", label ? label : "");
    info->confidence = conf;
}

void comp_header(http_response *resp, const char *name, const char *fmt, ...) {
    char v[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    for (char *c = v; *c; c++) /* header values from model answers: no line breaks, printable */
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f) *c = '?';
    http_resp_header(resp, name, v);
}

/* The probability-like value a confidence histogram holds: mean log-probs as the geometric
 * mean probability. */
static double as_prob(double v, int signal) {
    double p = signal == CCFG_SIG_MEAN_LOGPROB ? exp(v) : v;
    return p < 0 ? 0 : p > 1 ? 1 : p;
}

/* ============================================================ classify routing ===== */

void comp_route(comp *c, int mi, void *ctx, const char *text, const char **target, comp_info *info) {
    const ccfg_model *m = &c->cfg->models[mi];
    comp_model *pm = &c->pm[mi];
    json_t *body = json_pack("{s:s}", "input", text ? text : "");
    comp_answer ans;
    char err[ERRN] = "";
    double ms = 0;
    comp_cls *r = NULL;
    int n = 0;
    *target = m->default_target;
    info->confidence = -1;
    int rc = body ? ccall_run(c, ctx, OAI_CLASSIFY, m->comp.classifier, body, 0, &ans, &ms, err, sizeof err) : -1;
    json_decref(body);
    if (!rc) rc = ccall_parse_cls(ans.body, ans.len, &r, &n, err, sizeof err), free(ans.body);
    if (rc || r[0].best < 0) {
        /* no label: the default answers, and the log says why */
        snprintf(info->decision, sizeof info->decision, "classify default (classifier failed: %.200s)", err);
        metrics_inc(pm->m_failed, 1);
        metrics_inc(pm->m_route[m->comp.n_routes], 1);
        for (int i = 0; i < n; i++) ccall_cls_free(&r[i]);
        free(r);
        return;
    }
    const char *label = r[0].labels[r[0].best];
    double p = r[0].probs[r[0].best];
    metrics_observe(pm->m_conf[0], p);
    int route = -1;
    for (int i = 0; i < m->comp.n_routes && route < 0; i++)
        if (!strcmp(m->comp.routes[i].key, label)) route = i;
    bool low = p < m->comp.min_confidence;
    if (route >= 0 && !low) *target = m->comp.routes[route].value;
    metrics_inc(pm->m_route[route >= 0 && !low ? route : m->comp.n_routes], 1);
    metrics_inc(pm->m_ok, 1);
    set_label(info, label, p);
    snprintf(info->decision, sizeof info->decision, "classify label=%.60s p=%.3f -> %.60s%s", label, p, *target,
             route < 0 ? " (unmapped label)" : low ? " (below min_confidence)" : "");
    for (int i = 0; i < n; i++) ccall_cls_free(&r[i]);
    free(r);
}

/* ============================================================ cascade ===== */

/* The confidence of one stage's answer (the least confident input for a batch). */
static int stage_signal(int kind, int signal, const comp_answer *a, double *conf, char *err) {
    if (kind == OAI_CLASSIFY) {
        comp_cls *r;
        int n;
        if (ccall_parse_cls(a->body, a->len, &r, &n, err, ERRN)) return -1;
        *conf = INFINITY;
        for (int i = 0; i < n; i++) {
            double s = ccall_cls_signal(&r[i], signal);
            if (s < *conf) *conf = s;
            ccall_cls_free(&r[i]);
        }
        free(r);
        return 0;
    }
    comp_gen g;
    if (ccall_parse_gen(a->body, a->len, kind, &g, err, ERRN)) return -1;
    *conf = ccall_gen_signal(&g, signal);
    ccall_gen_free(&g);
    return 0;
}

static void cascade(comp *c, int mi, void *ctx, int kind, json_t *root, http_response *resp, comp_info *info) {
    const ccfg_model *m = &c->cfg->models[mi];
    const ccfg_comp *k = &m->comp;
    comp_model *pm = &c->pm[mi];
    if (kind != OAI_CLASSIFY && kind != OAI_CHAT && kind != OAI_COMPLETION) {
        comp_error(resp, 400, "unsupported_endpoint", "model '%s' is a cascade: it answers completions, chat and "
                   "classify", m->name);
        return;
    }
    bool stream = json_is_true(json_object_get(root, "stream"));
    json_object_del(root, "stream");
    json_object_del(root, "stream_options");
    /* generators need their token log-probs for the signal; the client gets them only if asked */
    json_t *client_lp = json_object_get(root, "logprobs");
    bool want_lp = kind == OAI_CHAT ? json_is_true(client_lp) : client_lp && !json_is_null(client_lp);
    if (kind == OAI_CHAT) {
        json_object_set_new(root, "logprobs", json_true());
        if (json_integer_value(json_object_get(root, "top_logprobs")) < 2)
            json_object_set_new(root, "top_logprobs", json_integer(2));
    } else if (kind == OAI_COMPLETION && json_integer_value(client_lp) < 2) {
        json_object_set_new(root, "logprobs", json_integer(2));
    }
    json_t *tried = json_array();
    comp_answer best = {0};
    double best_conf = -INFINITY;
    int best_stage = -1, accepted = -1;
    double conf = 0;
    char err[ERRN];
    size_t dl = 0;
    for (int s = 0; s < k->n_stages && accepted < 0; s++) {
        comp_answer a;
        double ms;
        bool last = s == k->n_stages - 1;
        if (ccall_run(c, ctx, kind, k->stages[s], root, 0, &a, &ms, err, sizeof err) ||
            stage_signal(kind, k->signal, &a, &conf, err)) {
            if (a.body) free(a.body);
            json_array_append_new(tried, json_pack("{s:s, s:b, s:s, s:f}", "model", k->stages[s], "ok", 0, "error",
                                                   err, "ms", ms));
            dl += (size_t)snprintf(info->decision + dl, dl < sizeof info->decision ? sizeof info->decision - dl : 0,
                                   "%s%s:failed", s ? "," : "cascade tried=", k->stages[s]);
            if (!last) metrics_inc(pm->m_escalate[s], 1);
            continue;
        }
        metrics_observe(pm->m_conf[s], as_prob(conf, k->signal));
        json_array_append_new(tried, json_pack("{s:s, s:b, s:f, s:f}", "model", k->stages[s], "ok", 1, "confidence",
                                               conf, "ms", ms));
        dl += (size_t)snprintf(info->decision + dl, dl < sizeof info->decision ? sizeof info->decision - dl : 0,
                               "%s%s:%.3f", s ? "," : "cascade tried=", k->stages[s], conf);
        if (last || conf >= k->thresholds[s]) {
            accepted = s;
            free(best.body);
            best = a;
            best_conf = conf;
            best_stage = s;
            break;
        }
        metrics_inc(pm->m_escalate[s], 1);
        if (conf > best_conf) {
            free(best.body);
            best = a, best_conf = conf, best_stage = s;
        } else {
            free(a.body);
        }
    }
    if (best_stage < 0) {
        metrics_inc(pm->m_failed, 1);
        comp_error(resp, 503, "backend_unavailable", "cascade '%s': every stage failed (last: %s)", m->name, err);
        json_decref(tried);
        return;
    }
    json_t *j = json_loadb(best.body, best.len, 0, NULL);
    free(best.body);
    if (!json_is_object(j)) {
        json_decref(j), json_decref(tried);
        comp_error(resp, 502, "bad_answer", "cascade '%s': stage '%s' answered something that is not JSON", m->name,
                   k->stages[best_stage]);
        return;
    }
    if (!want_lp && kind != OAI_CLASSIFY) {
        json_t *ch;
        size_t i;
        json_array_foreach(json_object_get(j, "choices"), i, ch) json_object_set_new(ch, "logprobs", json_null());
    }
    bool degraded = accepted < 0;
    json_t *info_j = json_pack("{s:{s:i, s:i, s:s, s:s, s:f, s:o, s:o}}", "cascade", "stage", best_stage + 1,
                               "stages", k->n_stages, "model", k->stages[best_stage], "signal",
                               ccfg_signal_name(k->signal),
                               "confidence", best_conf, "threshold",
                               best_stage < k->n_stages - 1 ? json_real(k->thresholds[best_stage]) : json_null(),
                               "tried", tried);
    if (degraded) json_object_set_new(json_object_get(info_j, "cascade"), "degraded",
                                      json_string("the later stages failed: the most confident earlier answer"));
    json_object_set_new(j, "shoal", info_j);
    metrics_inc(degraded ? pm->m_degraded : pm->m_ok, 1);
    metrics_inc(pm->m_stage[best_stage], 1);
    info->confidence = best_conf;
    snprintf(info->decision + (dl < sizeof info->decision ? dl : sizeof info->decision - 1),
             dl < sizeof info->decision ? sizeof info->decision - dl : 1, " stage=%d/%d%s", best_stage + 1,
             k->n_stages, degraded ? " degraded" : "");
    comp_respond(resp, j, kind, stream);
    comp_header(resp, "X-Shoal-Stage", "%d/%d %s", best_stage + 1, k->n_stages, k->stages[best_stage]);
    comp_header(resp, "X-Shoal-Confidence", "%.4f", best_conf);
}

/* ============================================================ ensemble ===== */

static int label_index(const comp_cls *r, const char *l) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->labels[i], l)) return i;
    return -1;
}

static void ensemble(comp *c, int mi, void *ctx, int kind, json_t *root, http_response *resp, comp_info *info) {
    const ccfg_model *m = &c->cfg->models[mi];
    const ccfg_comp *k = &m->comp;
    comp_model *pm = &c->pm[mi];
    if (kind != OAI_CLASSIFY) {
        comp_error(resp, 400, "unsupported_endpoint", "model '%s' is a classifier ensemble: it answers /v1/classify",
                   m->name);
        return;
    }
    int nm = k->n_members;
    comp_cls **res = calloc((size_t)nm, sizeof *res);
    int *nres = calloc((size_t)nm, sizeof *nres);
    json_t *members = json_array();
    char err[ERRN] = "", bad[ERRN] = "";
    int ref = -1, n_in = 0;
    for (int i = 0; res && nres && i < nm; i++) {
        comp_answer a;
        double ms;
        int rc = ccall_run(c, ctx, kind, k->members[i].model, root, 0, &a, &ms, err, sizeof err);
        if (!rc) rc = ccall_parse_cls(a.body, a.len, &res[i], &nres[i], err, sizeof err), free(a.body);
        json_t *mj = json_pack("{s:s, s:f, s:f}", "model", k->members[i].model, "weight", k->members[i].weight, "ms", ms);
        if (rc) {
            json_object_set_new(mj, "error", json_string(err));
        } else if (ref >= 0 && (nres[i] != n_in || res[i][0].n != res[ref][0].n)) {
            snprintf(bad, sizeof bad, "members '%s' and '%s' answer with different label sets or inputs",
                     k->members[ref].model, k->members[i].model);
        } else if (ref >= 0) {
            for (int l = 0; l < res[ref][0].n && !bad[0]; l++)
                if (label_index(&res[i][0], res[ref][0].labels[l]) < 0)
                    snprintf(bad, sizeof bad, "member '%s' has no label '%s' that '%s' has", k->members[i].model,
                             res[ref][0].labels[l], k->members[ref].model);
        } else {
            ref = i, n_in = nres[i];
        }
        json_array_append_new(members, mj);
    }
    json_t *out = NULL;
    if (!res || !nres) {
        comp_error(resp, 500, NULL, "out of memory");
    } else if (bad[0]) {
        comp_error(resp, 500, "ensemble_mismatch", "ensemble '%s': %s", m->name, bad);
    } else if (ref < 0) {
        comp_error(resp, 503, "backend_unavailable", "ensemble '%s': no member answered (last: %s)", m->name, err);
    } else {
        const comp_cls *r0 = &res[ref][0];
        int nl = r0->n;
        double *avg = calloc((size_t)nl, sizeof *avg);
        json_t *data = json_array();
        bool disagree = false;
        for (int in = 0; avg && in < n_in; in++) {
            double wsum = 0;
            memset(avg, 0, (size_t)nl * sizeof *avg);
            const char *first_label = NULL;
            const comp_cls *ents = NULL;
            double ents_w = -1;
            for (int i = 0; i < nm; i++) {
                if (!res[i]) continue;
                const comp_cls *r = &res[i][in];
                double w = k->members[i].weight;
                for (int l = 0; l < nl; l++) {
                    int j = label_index(r, res[ref][in].labels[l]);
                    if (j >= 0) avg[l] += w * r->probs[j];
                }
                wsum += w;
                const char *top = r->best >= 0 ? r->labels[r->best] : "";
                if (!first_label) first_label = top;
                else if (strcmp(first_label, top)) disagree = true;
                if (r->n_ents && w > ents_w) ents = r, ents_w = w;
            }
            int best = 0;
            for (int l = 0; l < nl; l++) {
                avg[l] /= wsum;
                if (avg[l] > avg[best]) best = l;
            }
            /* labels by averaged probability, highest first */
            json_t *labels = json_array();
            char *used = calloc((size_t)nl, 1);
            for (int t = 0; used && t < nl; t++) {
                int b = -1;
                for (int l = 0; l < nl; l++)
                    if (!used[l] && (b < 0 || avg[l] > avg[b])) b = l;
                used[b] = 1;
                json_array_append_new(labels, json_pack("{s:s, s:f}", "label", res[ref][in].labels[b], "score", avg[b]));
            }
            free(used);
            json_t *el = json_array();
            for (int e = 0; ents && e < ents->n_ents; e++) {
                const comp_entity *x = &ents->ents[e];
                json_array_append_new(el, json_pack("{s:s, s:s, s:I, s:I, s:f}", "label", x->label, "text", x->text,
                                                    "start", (json_int_t)x->start, "end", (json_int_t)x->end, "score",
                                                    x->score));
            }
            json_array_append_new(data, json_pack("{s:i, s:s, s:f, s:o, s:o}", "index", in, "label",
                                                  res[ref][in].labels[best], "score", avg[best], "labels", labels,
                                                  "entities", el));
            if (in == 0) {
                set_label(info, res[ref][0].labels[best], avg[best]);
                metrics_observe(pm->m_conf[0], avg[best]);
            }
        }
        free(avg);
        if (disagree) metrics_inc(pm->m_disagree, 1);
        metrics_inc(pm->m_ok, 1);
        out = json_pack("{s:s, s:s, s:o, s:{s:{s:O, s:b}}}", "object", "list", "model", m->name, "data", data, "shoal",
                        "ensemble", "members", members, "disagreement", disagree);
        snprintf(info->decision, sizeof info->decision, "ensemble members=%d%s", nm, disagree ? " disagreement" : "");
    }
    for (int i = 0; res && i < nm; i++) {
        for (int j = 0; j < nres[i]; j++) ccall_cls_free(&res[i][j]);
        free(res[i]);
    }
    free(res), free(nres);
    json_decref(members);
    if (out) {
        comp_respond(resp, out, kind, false);
        comp_header(resp, "X-Shoal-Label", "%s", info->label);
        comp_header(resp, "X-Shoal-Confidence", "%.4f", info->confidence);
    } else {
        metrics_inc(pm->m_failed, 1);
    }
}

/* ============================================================ dispatch ===== */

void comp_handle(comp *c, int mi, void *ctx, int kind, const char *body, size_t len, http_response *resp,
                 comp_info *info) {
    info->confidence = -1;
    json_t *root = json_loadb(body, len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        comp_error(resp, 400, NULL, "the body is not a JSON object");
        return;
    }
    switch (c->cfg->models[mi].policy) {
    case CCFG_POLICY_CASCADE: cascade(c, mi, ctx, kind, root, resp, info); break;
    case CCFG_POLICY_ENSEMBLE:
        switch (c->cfg->models[mi].comp.combine) {
        case CCFG_COMBINE_TOKENS: comp_mix(c, mi, ctx, kind, root, resp, info); break;
        case CCFG_COMBINE_BEST_OF: comp_best_of(c, mi, ctx, kind, root, resp, info); break;
        default: ensemble(c, mi, ctx, kind, root, resp, info);
        }
        break;
    case CCFG_POLICY_PIPELINE: comp_pipeline(c, mi, ctx, kind, root, resp, info); break;
    default: comp_error(resp, 500, NULL, "model '%s' is not a composition", c->cfg->models[mi].name);
    }
    json_decref(root);
}

/* ============================================================ set-up ===== */

__attribute__((format(printf, 5, 6))) static metrics_series *series(comp *c, metrics_kind kind, const char *name,
                                                                    const char *help, const char *fmt, ...) {
    char labels[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(labels, sizeof labels, fmt, ap);
    va_end(ap);
    if (kind == METRICS_COUNTER) return metrics_counter(c->met, name, help, labels);
    if (!strcmp(name, "shoal_compose_step_seconds"))
        return metrics_histogram(c->met, name, help, labels, metrics_latency_buckets, metrics_latency_n_buckets);
    return metrics_histogram(c->met, name, help, labels, conf_buckets, N_CONF);
}

/* Label values are config names only (bounded); escaped all the same. */
static const char *esc(const char *s, char *buf, size_t n) { return metrics_label_escape(s, buf, n); }

static int init_model(comp *c, int mi, sh_err *err) {
    const ccfg_model *m = &c->cfg->models[mi];
    const ccfg_comp *k = &m->comp;
    comp_model *pm = &c->pm[mi];
    char e1[300], e2[300];
    const char *mn = esc(m->name, e1, sizeof e1);
    static const char *const help_req = "Requests a composition answered: ok, degraded (an earlier answer after later "
                                        "failures), failed.";
    pm->m_ok = series(c, METRICS_COUNTER, "shoal_compose_requests_total", help_req, "model=\"%s\",outcome=\"ok\"", mn);
    pm->m_degraded = series(c, METRICS_COUNTER, "shoal_compose_requests_total", help_req,
                            "model=\"%s\",outcome=\"degraded\"", mn);
    pm->m_failed = series(c, METRICS_COUNTER, "shoal_compose_requests_total", help_req,
                          "model=\"%s\",outcome=\"failed\"", mn);
    int nconf = m->policy == CCFG_POLICY_CASCADE ? k->n_stages : 1;
    pm->m_conf = calloc((size_t)nconf, sizeof *pm->m_conf);
    if (!pm->m_conf) return sh_errf(err, "out of memory"), -1;
    static const char *const help_conf = "Confidence of the answers a composition saw (classifier probability, "
                                         "cascade signal as a probability), per stage: drift shows as a moving "
                                         "distribution.";
    for (int s = 0; s < nconf; s++) {
        const char *stage = m->policy == CCFG_POLICY_CASCADE ? k->stages[s]
                            : m->policy == CCFG_POLICY_CLASSIFY ? k->classifier
                                                                : m->name;
        pm->m_conf[s] = series(c, METRICS_HISTOGRAM, "shoal_compose_confidence", help_conf,
                               "model=\"%s\",stage=\"%s\"", mn, esc(stage, e2, sizeof e2));
    }
    if (m->policy == CCFG_POLICY_CLASSIFY) {
        pm->m_route = calloc((size_t)k->n_routes + 1, sizeof *pm->m_route);
        if (!pm->m_route) return sh_errf(err, "out of memory"), -1;
        for (int r = 0; r <= k->n_routes; r++) {
            char e3[300];
            bool dflt = r == k->n_routes;
            pm->m_route[r] = series(c, METRICS_COUNTER, "shoal_compose_routes_total",
                                    "Classifier routing decisions by label (default: unmapped, low confidence or "
                                    "classifier failed).", "model=\"%s\",label=\"%s\",target=\"%s\"", mn,
                                    dflt ? "default" : esc(k->routes[r].key, e2, sizeof e2),
                                    esc(dflt ? m->default_target : k->routes[r].value, e3, sizeof e3));
        }
    }
    if (m->policy == CCFG_POLICY_CASCADE) {
        pm->m_stage = calloc((size_t)k->n_stages, sizeof *pm->m_stage);
        pm->m_escalate = calloc((size_t)k->n_stages, sizeof *pm->m_escalate);
        if (!pm->m_stage || !pm->m_escalate) return sh_errf(err, "out of memory"), -1;
        for (int s = 0; s < k->n_stages; s++) {
            esc(k->stages[s], e2, sizeof e2);
            pm->m_stage[s] = series(c, METRICS_COUNTER, "shoal_compose_cascade_answers_total",
                                    "Cascade answers by the stage whose answer was accepted.",
                                    "model=\"%s\",stage=\"%s\"", mn, e2);
            pm->m_escalate[s] = series(c, METRICS_COUNTER, "shoal_compose_escalations_total",
                                       "Cascade escalations from a stage (low confidence or failure).",
                                       "model=\"%s\",stage=\"%s\"", mn, e2);
        }
    }
    if (m->policy == CCFG_POLICY_ENSEMBLE)
        pm->m_disagree = series(c, METRICS_COUNTER, "shoal_compose_disagreements_total",
                                "Ensemble requests whose members' top labels (tokens) differ.", "model=\"%s\"", mn);
    if (m->policy == CCFG_POLICY_ENSEMBLE && k->combine == CCFG_COMBINE_TOKENS) {
        static const char *const help_tok = "Token-level ensembles: positions decided by the averaged distribution "
                                            "(members disagree or the margin is low) or by the heaviest member alone.";
        pm->m_tok_avg = series(c, METRICS_COUNTER, "shoal_compose_ensemble_tokens_total", help_tok,
                               "model=\"%s\",decided=\"averaged\"", mn);
        pm->m_tok_kept = series(c, METRICS_COUNTER, "shoal_compose_ensemble_tokens_total", help_tok,
                                "model=\"%s\",decided=\"heaviest\"", mn);
    }
    if (m->policy == CCFG_POLICY_PIPELINE) {
        int ns = k->n_steps;
        pm->m_step_s = calloc((size_t)ns, sizeof *pm->m_step_s);
        pm->m_step_out = calloc((size_t)ns * 4, sizeof *pm->m_step_out);
        pm->schemas = calloc((size_t)ns, sizeof *pm->schemas);
        if (!pm->m_step_s || !pm->m_step_out || !pm->schemas) return sh_errf(err, "out of memory"), -1;
        for (int s = 0; s < ns; s++) {
            esc(k->steps[s].name, e2, sizeof e2);
            pm->m_step_s[s] = series(c, METRICS_HISTOGRAM, "shoal_compose_step_seconds",
                                     "Pipeline step latency.", "model=\"%s\",step=\"%s\"", mn, e2);
            for (int o = 0; o < 4; o++)
                pm->m_step_out[s * 4 + o] = series(c, METRICS_COUNTER, "shoal_compose_steps_total",
                                                   "Pipeline steps by outcome.",
                                                   "model=\"%s\",step=\"%s\",outcome=\"%s\"", mn, e2, step_outcomes[o]);
            if (!k->steps[s].schema) continue;
            json_error_t je;
            pm->schemas[s] = json_loads(k->steps[s].schema, 0, &je);
            char msg[ERRN];
            if (!pm->schemas[s]) return sh_errf(err, "%s:%d: model '%s' step '%s': schema: %s", c->cfg->path,
                                                k->steps[s].line, m->name, k->steps[s].name, je.text), -1;
            if (cschema_check(pm->schemas[s], msg, sizeof msg))
                return sh_errf(err, "%s:%d: model '%s' step '%s': %s", c->cfg->path, k->steps[s].line, m->name,
                               k->steps[s].name, msg), -1;
        }
    }
    return 0;
}

comp *comp_init(const cluster_config *cfg, const comp_ops *ops, metrics *met, sh_err *err) {
    comp *c = calloc(1, sizeof *c);
    if (!c || !(c->pm = calloc((size_t)(cfg->n_models ? cfg->n_models : 1), sizeof *c->pm))) {
        free(c);
        return sh_errf(err, "out of memory"), NULL;
    }
    c->cfg = cfg;
    c->ops = *ops;
    c->met = met;
    for (int i = 0; i < cfg->n_models; i++) {
        int p = cfg->models[i].policy;
        if ((p == CCFG_POLICY_CLASSIFY || CCFG_IS_COMPOSITE(p)) && init_model(c, i, err)) {
            comp_free(c);
            return NULL;
        }
    }
    return c;
}

void comp_free(comp *c) {
    if (!c) return;
    for (int i = 0; c->pm && i < c->cfg->n_models; i++) {
        comp_model *pm = &c->pm[i];
        free(pm->m_conf), free(pm->m_stage), free(pm->m_escalate), free(pm->m_route);
        free(pm->m_step_s), free(pm->m_step_out);
        for (int s = 0; pm->schemas && s < c->cfg->models[i].comp.n_steps; s++) json_decref(pm->schemas[s]);
        free(pm->schemas);
    }
    free(c->pm);
    free(c);
}
