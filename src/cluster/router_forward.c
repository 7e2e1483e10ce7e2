/*
 * cluster/router_forward — router_handle (router.h, steps 1-5): the body is parsed at the edge,
 * the model name resolved (aliases, rules), then attempts go to the backends the name's policy
 * picks, moving to another one on a failure before any output and to the fallback model when
 * none is left; local backends are called here, remote ones in router_remote.c. Every request
 * ends in one log record (a stream's when it ends).
 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/oai_req.h"
#include "cluster/router_int.h"
#include "compose/compose.h"

/* ============================================================ the request's text ===== */

/* What rules match on and prefix affinity hashes: the prompt, the chat messages (role and
 * content, in order), the first embedding / classify input or the rerank query. Token-id
 * prompts hash their id bytes. */
static char *request_text(const router *rt, const oai_request *r, size_t *len) {
    const void *one = NULL; /* every kind but chat: one piece */
    size_t n = 0, n_conv = 0;
    const bool chat = r->kind == OAI_CHAT || r->kind == OAI_RESPONSES;
    /* a Responses continuation: the instructions, the stored conversation, then the new input
     * (the text its first turn had, extended) */
    char *conv = r->kind == OAI_RESPONSES && r->previous_response_id && rt->ops.conversation
                     ? rt->ops.conversation(rt->ops.ud, r->previous_response_id, &n_conv)
                     : NULL;
    size_t lead = conv && r->instructions && r->n_messages ? 1 : 0;
    n += conv ? n_conv : 0;
    if (chat) {
        for (size_t i = 0; i < r->n_messages; i++)
            n += strlen(r->messages[i].role) + strlen(r->messages[i].content ? r->messages[i].content : "") + 2;
    } else if (r->kind == OAI_EMBEDDING || r->kind == OAI_CLASSIFY) {
        if (r->n_inputs && r->inputs) one = r->inputs[0], n = strlen(r->inputs[0]);
        else if (r->n_inputs) one = r->input_ids[0], n = sizeof **r->input_ids * r->n_input_ids[0];
    } else if (r->kind == OAI_RERANK) {
        one = r->query, n = strlen(r->query);
    } else if (r->prompt) {
        one = r->prompt, n = strlen(r->prompt);
    } else if (r->prompt_ids) {
        one = r->prompt_ids, n = sizeof *r->prompt_ids * r->n_prompt_ids;
    }
    char *s = malloc(n + 1);
    if (!s) {
        free(conv);
        return NULL;
    }
    if (chat) {
        char *p = s;
        for (size_t i = 0; i < r->n_messages; i++) {
            if (conv && i == lead) { /* the stored turns go after the instructions */
                memcpy(p, conv, n_conv);
                p += n_conv;
            }
            const char *role = r->messages[i].role, *content = r->messages[i].content ? r->messages[i].content : "";
            size_t rl = strlen(role), cl = strlen(content);
            memcpy(p, role, rl);
            p[rl] = '\n';
            memcpy(p + rl + 1, content, cl);
            p[rl + 1 + cl] = '\n';
            p += rl + cl + 2;
        }
        if (conv && lead >= r->n_messages) memcpy(p, conv, n_conv);
    } else if (n) {
        memcpy(s, one, n);
    }
    s[n] = 0;
    *len = n;
    free(conv);
    return s;
}

/* What a routing classifier reads: the last user message of a chat, the prompt, the first
 * input, or the rerank query (borrowed from r; NULL for token-id prompts). */
static const char *classify_text(const oai_request *r) {
    if (r->kind == OAI_CHAT || r->kind == OAI_RESPONSES) {
        for (size_t i = r->n_messages; i-- > 0;)
            if (!strcmp(r->messages[i].role, "user")) return r->messages[i].content;
        return NULL;
    }
    if (r->kind == OAI_EMBEDDING || r->kind == OAI_CLASSIFY) return r->n_inputs && r->inputs ? r->inputs[0] : NULL;
    if (r->kind == OAI_RERANK) return r->query;
    return r->prompt;
}

/* ============================================================ the forwarded request ===== */

/* router_int.h */
void rt_fwd_free(rt_fwd *f) {
    if (!f) return;
    upstream_free(f->call);
    json_decref(f->root);
    free(f->held);
    free(f);
}

/* The endpoint of each oai_kind. */
static const char *const kind_path[OAI_KIND_COUNT] = {"/v1/completions", "/v1/chat/completions",
                                                      "/v1/embeddings", "/v1/rerank", "/v1/classify",
                                                      "/v1/responses"};

/* router_int.h */
void rt_route_log(router *rt, const rt_fwd *f, const char *rid, const char *tp, const char *peer, int kind,
                  double t_req, int status, const char *outcome, const char *error) {
    if (!rt->ops.log) return;
    const double now = http_now_ms();
    router_log l = {.request_id = rid,
                    .traceparent = tp && tp[0] ? tp : NULL,
                    .peer = peer,
                    .path = kind >= 0 && kind < OAI_KIND_COUNT ? kind_path[kind] : "",
                    .status = status,
                    .outcome = outcome        ? outcome
                               : status < 400 ? "ok"
                                              : NULL,
                    .error = error,
                    .total_ms = now - t_req,
                    .ttfb_ms = now - t_req,
                    .confidence = -1};
    if (f) {
        l.label = f->label[0] ? f->label : NULL;
        l.confidence = f->confidence;
        l.decision = f->decision[0] ? f->decision : NULL;
        l.model = f->asked ? f->asked->name : NULL;
        l.answered_by = f->m && f->b ? f->m->name : NULL;
        l.backend = f->b ? f->b->name : NULL;
        l.attempts = f->attempts;
        l.stream = f->stream;
        l.hedged = f->hedged;
        l.fallback = f->fallback_used;
        l.degraded = f->degraded;
        if (f->t_commit > 0) l.ttfb_ms = f->t_commit - t_req;
    }
    rt->ops.log(rt->ops.ud, &l);
}

/* An error answer's message for the log: error.message of its JSON body, else fallback. */
static void answer_error(const http_response *resp, const char *fallback, char *out, size_t n) {
    json_t *j = resp->body ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    snprintf(out, n, "%s", m ? m : fallback);
    json_decref(j);
}

/* router_int.h */
char *rt_body_for(rt_fwd *f, const rt_backend *b, size_t *len) {
    /* the backend knows the model by the name the client used: the client's bytes as they are
     * (no re-serialisation on the common path) */
    const char *asked = json_string_value(json_object_get(f->root, "model"));
    if (f->raw && !f->root_changed && !f->degraded && asked && !strcmp(asked, b->model)) {
        char *s = malloc(f->raw_len + 1);
        if (!s) return NULL;
        memcpy(s, f->raw, f->raw_len);
        s[f->raw_len] = 0;
        *len = f->raw_len;
        return s;
    }
    f->root_changed = true;
    json_object_set_new(f->root, "model", json_string(b->model));
    /* degraded: no backend is expected to meet the deadline; the client gets a late answer
     * marked as such, rather than a refusal from a node that checks the deadline itself */
    if (f->degraded) json_object_del(f->root, "deadline_ms");
    char *s = json_dumps(f->root, JSON_COMPACT);
    *len = s ? strlen(s) : 0;
    return s;
}

/* router_int.h */
void rt_add_route_headers(rt_fwd *f, http_response *resp) {
    http_resp_header(resp, "X-Shoal-Backend", f->b->name);
    if (f->label[0]) {
        char v[32];
        http_resp_header(resp, "X-Shoal-Label", f->label);
        snprintf(v, sizeof v, "%.4f", f->confidence);
        http_resp_header(resp, "X-Shoal-Confidence", v);
    }
    if (f->fallback_used) http_resp_header(resp, "X-Shoal-Fallback", f->m->name);
    if (f->degraded) http_resp_header(resp, "X-Shoal-Degraded", "deadline");
}

/* router_int.h. Whole answers say how they were routed when that matters to the client: a
 * fallback model or a degraded latency choice. */
void rt_annotate_body(rt_fwd *f, http_response *resp) {
    if (!f->fallback_used && !f->degraded) return;
    if (resp->status != 200 || !resp->body) return;
    json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return;
    }
    json_t *info = json_object();
    json_object_set_new(info, "backend", json_string(f->b->name));
    if (f->fallback_used) {
        json_object_set_new(info, "fallback", json_true());
        json_object_set_new(info, "requested_model", json_string(f->asked->name));
        json_object_set_new(info, "answered_by", json_string(f->m->name));
    }
    if (f->degraded) json_object_set_new(info, "degraded", json_string("no backend's p95 fits deadline_ms"));
    json_object_set_new(j, "shoal", info);
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(j);
    if (!s) return;
    free(resp->body);
    resp->body = s;
    resp->body_len = strlen(s);
}

/* ---- local backends ---------------------------------------------------------------- */

/* A local stream's pull: the local handler's own. */
static ssize_t local_pull(void *ctx, char *buf, size_t max) {
    rt_fwd *f = ctx;
    return f->lpull(f->lctx, buf, max);
}

/* A local stream's end: the local handler's own done, then the attempt's accounting, the log
 * record, and f is freed. */
static void local_done(void *ctx, bool aborted) {
    rt_fwd *f = ctx;
    f->ldone(f->lctx, aborted);
    rt_attempt_end(f->rt, f->b, f->tokens, aborted ? RT_OUT_CANCELLED : RT_OUT_OK, http_now_ms() - f->t_start);
    rt_route_log(f->rt, f, f->rid, f->tp, f->peer, f->kind, f->t_req, 200, aborted ? "cancelled" : "ok", NULL);
    atomic_fetch_sub(&f->rt->active, 1);
    rt_fwd_free(f);
}

/* One attempt on local backend b (picked and loaded): the server's handler answers in resp.
 * RETRY (resp empty) when it is full or shutting down (429, 503) or memory runs out; DONE
 * otherwise — a whole answer, or a stream that now owns f. */
static rt_attempt_rc try_local(router *rt, rt_fwd *f, rt_backend *b, http_request *req, http_response *resp) {
    size_t len;
    char *body = rt_body_for(f, b, &len);
    if (!body) {
        rt_attempt_end(rt, b, f->tokens, RT_OUT_FAILED, 0);
        return RT_ATT_RETRY;
    }
    f->t_start = http_now_ms();
    memset(resp, 0, sizeof *resp);
    rt->ops.generate(rt->ops.ud, b->local, f->kind, req, body, len, resp);
    free(body);
    if (resp->status == 429 || resp->status == 503) {
        /* queue full or shutting down: another backend may have room */
        f->last_status = resp->status;
        snprintf(f->last_error, sizeof f->last_error, "%s answered %d", b->name, resp->status);
        free(resp->body);
        free(resp->extra_headers);
        memset(resp, 0, sizeof *resp);
        rt_attempt_end(rt, b, f->tokens, RT_OUT_FAILED, 0);
        return RT_ATT_RETRY;
    }
    f->b = b;
    rt_add_route_headers(f, resp);
    if (resp->pull) {
        f->lpull = resp->pull;
        f->ldone = resp->done;
        f->lctx = resp->stream_ctx;
        resp->pull = local_pull;
        resp->done = local_done;
        resp->stream_ctx = f;
        return RT_ATT_DONE; /* f lives until local_done */
    }
    rt_annotate_body(f, resp);
    rt_attempt_end(rt, b, f->tokens, resp->status < 500 ? RT_OUT_OK : RT_OUT_FAILED, http_now_ms() - f->t_start);
    return RT_ATT_DONE;
}

/* ============================================================ router_handle ===== */

/* Resolves rules names (by text and the body's "metadata" strings) to a model that has
 * backends. NULL with an error answer in resp. */
static rt_model *resolve(router *rt, rt_model *m, const char *text, json_t *root, http_response *resp) {
    const char *keys[16], *vals[16];
    int nm = 0;
    json_t *md = json_object_get(root, "metadata");
    const char *k;
    json_t *v;
    if (json_is_object(md))
        json_object_foreach(md, k, v) {
            if (nm < 16 && json_is_string(v)) keys[nm] = k, vals[nm++] = json_string_value(v);
        }
    for (int depth = 0; m && m->policy == CCFG_POLICY_RULES; depth++) {
        if (depth == RT_RULE_DEPTH) {
            rt_respond_err(resp, 500, "server_error", NULL, "model '%s': rules nest deeper than %d", m->name, RT_RULE_DEPTH);
            return NULL;
        }
        const char *target = route_rules_match(m->rules, text ? text : "", keys, vals, nm);
        if (!target) target = m->default_target;
        if (!target) {
            rt_respond_err(resp, 400, "invalid_request_error", "model_not_found",
                           "model '%s': no routing rule matches this request and there is no default", m->name);
            return NULL;
        }
        pthread_mutex_lock(&rt->mu);
        rt_model *next = rt_find_model(rt, target);
        pthread_mutex_unlock(&rt->mu);
        if (!next) {
            rt_respond_err(resp, 500, "server_error", NULL, "model '%s': rule target '%s' is not defined", m->name, target);
            return NULL;
        }
        m = next;
    }
    return m;
}

/* Classify routing (and rules after it): until m is a name with backends or a composition.
 * NULL with an error answer in resp. */
static rt_model *route_by_label(router *rt, rt_fwd *f, rt_model *m, const oai_request *r, const char *text,
                                http_request *req, http_response *resp) {
    for (int depth = 0; m && m->policy == CCFG_POLICY_CLASSIFY; depth++) {
        if (depth == RT_RULE_DEPTH) {
            rt_respond_err(resp, 500, "server_error", NULL, "model '%s': classify routing nests deeper than %d",
                           m->name, RT_RULE_DEPTH);
            return NULL;
        }
        const char *target = NULL;
        comp_info ci = {.confidence = -1};
        const char *in = classify_text(r);
        comp_route(rt->comp, m->cfg_index, req, in ? in : "", &target, &ci);
        snprintf(f->label, sizeof f->label, "%s", ci.label);
        f->confidence = ci.confidence;
        snprintf(f->decision, sizeof f->decision, "%s", ci.decision);
        pthread_mutex_lock(&rt->mu);
        rt_model *next = target ? rt_find_model(rt, target) : NULL;
        pthread_mutex_unlock(&rt->mu);
        if (!next) {
            rt_respond_err(resp, 500, "server_error", NULL, "model '%s': route target '%s' is not defined", m->name,
                           target ? target : "");
            return NULL;
        }
        if (!(m = resolve(rt, next, text, f->root, resp))) return NULL;
    }
    return m;
}

/* A composition answers (compose.h); the record says what it decided. */
static void composed(router *rt, rt_fwd *f, rt_model *m, int kind, http_request *req, http_response *resp) {
    char *owned = NULL;
    const char *body = f->raw;
    size_t len = f->raw_len;
    if (!body || f->root_changed) {
        owned = json_dumps(f->root, JSON_COMPACT);
        body = owned;
        len = owned ? strlen(owned) : 0;
    }
    comp_info ci = {.confidence = -1};
    if (!body) rt_respond_err(resp, 500, "server_error", NULL, "out of memory");
    else comp_handle(rt->comp, m->cfg_index, req, kind, body, len, resp, &ci);
    if (ci.label[0]) snprintf(f->label, sizeof f->label, "%s", ci.label);
    if (ci.confidence >= 0) f->confidence = ci.confidence;
    if (ci.decision[0]) snprintf(f->decision, sizeof f->decision, "%s", ci.decision);
    free(owned);
    metrics_inc(m->m_decisions, 1);
}

/* A whole answer has been sent (or its connection failed): its log record, and f is freed. */
static void whole_sent(void *ctx, bool aborted) {
    rt_fwd *f = ctx;
    (void)aborted; /* recorded as answered, as when the record was written before the send */
    rt_route_log(f->rt, f, f->rid, f->tp, f->peer, f->kind, f->t_req, f->log_status, NULL,
                 f->last_error[0] ? f->last_error : NULL);
    rt_fwd_free(f);
}

/* router_int.h */
void rt_forward(router *rt, int kind, const char *body, size_t len, json_t *doc, const oai_request *r,
                http_request *req, http_response *resp, rt_call *call) {
    double t0 = http_req_start_ms(req);
    rt_fwd *f = calloc(1, sizeof *f);
    size_t text_len = 0;
    char *text = request_text(rt, r, &text_len);
    if (!f || !text) {
        json_decref(doc);
        rt_respond_err(resp, 500, "server_error", NULL, "out of memory");
        goto out;
    }
    f->root = doc; /* the caller's parse, kept: "model" is rewritten in it per attempt */
    f->raw = body;
    f->raw_len = len;
    f->rt = rt;
    f->kind = kind;
    f->stream = r->stream && (kind == OAI_COMPLETION || kind == OAI_CHAT || kind == OAI_RESPONSES);
    f->tokens = (int64_t)(text_len / 4) +
                (kind == OAI_COMPLETION || kind == OAI_CHAT || kind == OAI_RESPONSES ? (r->max_tokens > 0 ? r->max_tokens : 256) : 0);
    snprintf(f->rid, sizeof f->rid, "%s", http_req_id(req));
    const char *tp = http_req_header(req, "traceparent");
    if (tp && strlen(tp) == 55) snprintf(f->tp, sizeof f->tp, "%s", tp);
    const char *peer = http_req_peer(req);
    snprintf(f->peer, sizeof f->peer, "%s", peer ? peer : "");
    f->t_req = t0;
    f->confidence = -1;
    if (call) {
        f->internal = true;
        f->timeout_ms = call->timeout_ms;
        f->stream = false;
        call->backend[0] = 0;
    }

    pthread_mutex_lock(&rt->mu);
    rt_model *m = r->model ? rt_find_model(rt, r->model) : rt->n_models ? rt->models[0] : NULL;
    pthread_mutex_unlock(&rt->mu);
    if (!m) {
        rt_respond_err(resp, 404, "invalid_request_error", "model_not_found", "The model '%s' does not exist",
                       r->model ? r->model : "");
        goto out;
    }
    f->asked = m;
    if (!(m = resolve(rt, m, text, f->root, resp))) goto out;
    if (m->policy == CCFG_POLICY_CLASSIFY && !(m = route_by_label(rt, f, m, r, text, req, resp))) goto out;
    if (CCFG_IS_COMPOSITE(m->policy)) {
        f->m = m;
        metrics_observe(rt->m_added, (http_now_ms() - t0) * 1e-3);
        composed(rt, f, m, kind, req, resp);
        f->t_commit = http_now_ms();
        goto out;
    }
    route_request rq = {.prefix = text, .prefix_len = text_len, .deadline_ms = r->has_deadline ? r->deadline_ms : 0};
    if (m->sticky) /* weighted: one user / session stays on one version */
        rq.sticky = !strcmp(m->sticky, "user") ? r->user : http_req_header(req, m->sticky + 7);
    rq.sticky_len = rq.sticky ? strlen(rq.sticky) : 0;
    bool added_observed = false;
    for (int hop = 0; m; hop++) {
        f->m = m;
        bool excluded[RT_MAX_BACKENDS] = {0};
        for (int attempt = 0; attempt < rt->cfg->max_attempts; attempt++) {
            int idx = -1;
            rt_backend *b = rt_pick(rt, m, excluded, &rq, f->tokens, &f->degraded, &idx);
            if (!b) break;
            f->attempts++;
            if (attempt > 0) metrics_inc(m->m_retries, 1);
            if (!added_observed) {
                metrics_observe(rt->m_added, (http_now_ms() - t0) * 1e-3);
                added_observed = true;
            }
            rt_attempt_rc rc;
            if (b->local >= 0) {
                rc = try_local(rt, f, b, req, resp);
                if (rc == RT_ATT_RETRY) excluded[idx] = true;
            } else {
                rc = rt_try_remote(rt, f, m, b, idx, excluded, &rq, req, kind_path[kind], resp);
            }
            if (rc == RT_ATT_DONE) {
                f->t_commit = http_now_ms();
                if (resp->pull) {
                    atomic_fetch_add(&rt->active, 1);
                    f->raw = NULL; /* the request body goes away with this handler */
                    f = NULL;      /* the stream owns it now */
                }
                goto out;
            }
        }
        /* no backend of this name could answer: its fallback, once */
        if (!m->fallback || f->fallback_used || hop > 0) {
            metrics_inc(m->m_unavailable, 1);
            break;
        }
        pthread_mutex_lock(&rt->mu);
        rt_model *fb = rt_find_model(rt, m->fallback);
        pthread_mutex_unlock(&rt->mu);
        if (fb && !(fb = resolve(rt, fb, text, f->root, resp))) goto out;
        if (fb && fb->policy == CCFG_POLICY_CLASSIFY && !(fb = route_by_label(rt, f, fb, r, text, req, resp))) goto out;
        metrics_inc(m->m_fallbacks, 1);
        f->fallback_used = true;
        m = fb;
    }
    /* a 429 from every backend is back-pressure the client should see as such */
    rt_respond_err(resp, f->last_status == 429 ? 429 : 503, "server_error", "backend_unavailable",
                   "no backend of model '%s' could answer%s%s%s", f->m ? f->m->name : "?",
                   f->last_error[0] ? " (last: " : "", f->last_error, f->last_error[0] ? ")" : "");
    http_resp_header(resp, "Retry-After", "1");
out:
    if (f && call && f->b) snprintf(call->backend, call->backend_n, "%s", f->b->name);
    if (f && !f->internal) { /* answered whole (or refused) here; a stream logs when it ends */
        char msg[256] = "";
        if (resp->status >= 400) answer_error(resp, f->last_error, msg, sizeof msg);
        if (!resp->pull && !resp->done) {
            /* the record is written once the answer has been sent (http calls done): when the
             * client has it, and not on its way */
            f->rt = rt;
            f->kind = kind;
            f->t_req = t0;
            f->log_status = resp->status;
            snprintf(f->last_error, sizeof f->last_error, "%s", msg);
            f->raw = NULL; /* the request body goes away with this handler */
            resp->done = whole_sent;
            resp->stream_ctx = f;
            f = NULL;
        } else {
            rt_route_log(rt, f, f->rid, f->tp, f->peer, kind, t0, resp->status, NULL, msg[0] ? msg : NULL);
        }
    }
    free(text);
    rt_fwd_free(f);
}

/* router.h */
void router_handle(router *rt, int kind, http_request *req, http_response *resp) {
    double t0 = http_req_start_ms(req);
    size_t len;
    const char *body = http_req_body(req, &len);
    oai_request r;
    oai_error e;
    json_t *doc = NULL;
    if (oai_parse_request_doc((oai_kind)kind, body, len, &r, &e, &doc)) {
        char *s = oai_error_body(&e);
        resp->status = e.status;
        resp->content_type = "application/json";
        resp->body = s;
        resp->body_len = s ? strlen(s) : 0;
        const char *tp = http_req_header(req, "traceparent");
        rt_route_log(rt, NULL, http_req_id(req), tp && strlen(tp) == 55 ? tp : NULL, http_req_peer(req), kind, t0,
                     e.status, NULL, e.message);
        return;
    }
    rt_forward(rt, kind, body, len, doc, &r, req, resp, NULL);
    oai_request_free(&r);
}

