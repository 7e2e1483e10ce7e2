/*
 * compose/ensemble_gen — ensembles of generators (policy ensemble, compose.h):
 *
 *   combine: tokens   members with one vocabulary decode in lockstep. At every position each
 *                     member is asked for its next-token distribution (one-token calls with
 *                     token-id prompts, so each call reuses the member's prefix cache and costs
 *                     one decode step); where the members' top tokens agree and the heaviest
 *                     member's top-1/top-2 margin reaches `gate`, its distribution is used as it
 *                     is, elsewhere the weighted average of the members' top-MIX_TOP
 *                     probabilities. The token is the argmax (temperature 0) or a draw at the
 *                     request's temperature; the text is the chosen ids detokenized by the
 *                     heaviest member (an echo call).
 *   combine: best_of  k candidates from the members in turn, with distinct seeds, and the one
 *                     the scorer likes best: an LM's mean log-likelihood of the candidate after
 *                     the prompt (score: loglik, echo scoring calls), or a reranker's score of
 *                     (prompt, candidate) (score: rerank).
 *
 * Calls are made one after another on the request's thread (comp_ops.call); a member that
 * fails fails the request (tokens) or loses its candidate (best_of).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "api/oai_req.h"
#include "compose/comp_int.h"
#include "http/http.h"

#define ERRN 256
#define MIX_TOP 5           /* alternatives per position: the legacy completions API's most */
#define MIX_MAX_TOKENS 512  /* a mixed answer without max_tokens stops here */
#define MIX_MAX_PROMPT 32768
#define MIX_MAX_EOG 8

/* The first field of root named in list, or NULL. */
static const char *present(const json_t *root, const char *const *list) {
    for (int i = 0; list[i]; i++) {
        const json_t *v = json_object_get(root, list[i]);
        if (v && !json_is_null(v) && !json_is_false(v)) return list[i];
    }
    return NULL;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t request_seed(const json_t *root) {
    const json_t *s = json_object_get(root, "seed");
    if (json_is_integer(s)) return (uint64_t)json_integer_value(s);
    uint64_t v;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) v = (uint64_t)(http_now_ms() * 1e3);
    return v;
}

/* The request's temperature (OpenAI's default 1). */
static double request_temp(const json_t *root) {
    const json_t *t = json_object_get(root, "temperature");
    return json_is_number(t) ? json_number_value(t) : 1.0;
}

static json_t *answer_json(const char *model, int kind, const char *text, const char *finish, long prompt_tokens,
                           long completion_tokens, json_t *shoal) {
    char id[64];
    static _Atomic unsigned long long counter;
    snprintf(id, sizeof id, "%s-ens-%llx-%llx", kind == OAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)time(NULL), ++counter);
    json_t *choice = kind == OAI_CHAT ? json_pack("{s:i, s:{s:s, s:s}, s:n, s:s}", "index", 0, "message", "role",
                                                  "assistant", "content", text, "logprobs", "finish_reason", finish)
                                      : json_pack("{s:i, s:s, s:n, s:s}", "index", 0, "text", text, "logprobs",
                                                  "finish_reason", finish);
    return json_pack("{s:s, s:s, s:I, s:s, s:[o], s:{s:I, s:I, s:I}, s:o}", "id", id, "object",
                     kind == OAI_CHAT ? "chat.completion" : "text_completion", "created", (json_int_t)time(NULL),
                     "model", model, "choices", choice, "usage", "prompt_tokens", (json_int_t)prompt_tokens,
                     "completion_tokens", (json_int_t)completion_tokens, "total_tokens",
                     (json_int_t)(prompt_tokens + completion_tokens), "shoal", shoal);
}

/* Cuts text at the first of the request's stop strings; true when one was found. */
static bool cut_at_stop(const json_t *root, char *text) {
    const json_t *st = json_object_get(root, "stop");
    char *cut = NULL;
    for (size_t i = 0; i < (json_is_array(st) ? json_array_size(st) : 1); i++) {
        const char *s = json_string_value(json_is_array(st) ? json_array_get(st, i) : st);
        char *hit = s && *s ? strstr(text, s) : NULL;
        if (hit && (!cut || hit < cut)) cut = hit;
    }
    if (cut) *cut = 0;
    return cut != NULL;
}

/* ============================================================ tokens ===== */

typedef struct mix_dist {     /* one member's next-token distribution at one position */
    int n;                    /* alternatives (<= MIX_TOP) */
    int32_t id[MIX_TOP];
    double p[MIX_TOP];        /* probabilities, most likely first */
    int32_t chosen;           /* the member's greedy token */
    bool eog;                 /* ... and it ended the generation */
} mix_dist;

/* "token_id:N" -> N; -1 when it is not that. */
static int32_t token_id(const char *s) {
    if (!s || strncmp(s, "token_id:", 9)) return -1;
    char *end;
    long v = strtol(s + 9, &end, 10);
    return *end || end == s + 9 || v < 0 || v > INT32_MAX ? -1 : (int32_t)v;
}

static void dist_add(mix_dist *d, const char *tok, double lp) {
    int32_t id = token_id(tok);
    if (id < 0 || d->n >= MIX_TOP || !isfinite(lp)) return;
    int i = d->n++;
    while (i > 0 && d->p[i - 1] < exp(lp)) d->id[i] = d->id[i - 1], d->p[i] = d->p[i - 1], i--;
    d->id[i] = id;
    d->p[i] = exp(lp);
}

/* Parses a one-token answer asked with return_tokens_as_token_ids (chat or completions form);
 * *prompt_ids gets the answer's prompt_token_ids when it has them (a new reference). */
static int parse_dist(const comp_answer *a, int kind, mix_dist *d, json_t **prompt_ids, char *err) {
    memset(d, 0, sizeof *d);
    json_t *j = json_loadb(a->body, a->len, 0, NULL);
    const json_t *ch = json_array_get(json_object_get(j, "choices"), 0), *lp = json_object_get(ch, "logprobs");
    const char *tok = NULL;
    if (kind == OAI_CHAT) {
        const json_t *t = json_array_get(json_object_get(lp, "content"), 0), *top = json_object_get(t, "top_logprobs");
        tok = json_string_value(json_object_get(t, "token"));
        for (size_t i = 0; i < json_array_size(top); i++) {
            const json_t *e = json_array_get(top, i);
            dist_add(d, json_string_value(json_object_get(e, "token")), json_number_value(json_object_get(e, "logprob")));
        }
    } else {
        const json_t *top = json_array_get(json_object_get(lp, "top_logprobs"), 0);
        tok = json_string_value(json_array_get(json_object_get(lp, "tokens"), 0));
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)top, k, v) dist_add(d, k, json_number_value(v));
    }
    d->chosen = token_id(tok);
    const char *fin = json_string_value(json_object_get(ch, "finish_reason"));
    d->eog = fin && !strcmp(fin, "stop");
    if (prompt_ids) {
        json_t *p = json_object_get(j, "prompt_token_ids");
        *prompt_ids = json_is_array(p) && json_array_size(p) > 0 && json_array_size(p) <= MIX_MAX_PROMPT ? json_incref(p)
                                                                                                            : NULL;
    }
    json_decref(j);
    if (d->chosen < 0 || d->n == 0) return snprintf(err, ERRN, "the answer has no token ids in its logprobs"), -1;
    if (prompt_ids && !*prompt_ids) return snprintf(err, ERRN, "the answer has no prompt_token_ids"), -1;
    return 0;
}

/* One member's distribution after seq (completions with token ids). */
static int member_step(comp *c, void *ctx, const char *model, json_t *seq, mix_dist *d, double *ms, char *err) {
    json_t *b = json_pack("{s:O, s:i, s:i, s:i, s:b}", "prompt", seq, "max_tokens", 1, "temperature", 0, "logprobs",
                          MIX_TOP, "return_tokens_as_token_ids", 1);
    comp_answer a;
    int rc = b ? ccall_run(c, ctx, OAI_COMPLETION, model, b, 0, &a, ms, err, ERRN) : -1;
    json_decref(b);
    if (rc == 0) rc = parse_dist(&a, OAI_COMPLETION, d, NULL, err), free(a.body);
    return rc;
}

/* The text of ids as the member detokenizes generated tokens (echo, nothing generated). */
static char *detok(comp *c, void *ctx, const char *model, json_t *ids, char *err) {
    if (json_array_size(ids) == 0) return strdup("");
    json_t *b = json_pack("{s:O, s:i, s:b}", "prompt", ids, "max_tokens", 0, "echo", 1);
    comp_answer a;
    double ms;
    int rc = b ? ccall_run(c, ctx, OAI_COMPLETION, model, b, 0, &a, &ms, err, ERRN) : -1;
    json_decref(b);
    if (rc) return NULL;
    comp_gen g;
    rc = ccall_parse_gen(a.body, a.len, OAI_COMPLETION, &g, err, ERRN);
    free(a.body);
    if (rc) return NULL;
    char *t = g.text;
    g.text = NULL;
    ccall_gen_free(&g);
    return t;
}

static const char *const mix_refused[] = {"logprobs", "top_logprobs", "echo", "suffix", "best_of", "n", "top_p",
                                          "top_k", "min_p", "presence_penalty", "frequency_penalty", "repeat_penalty",
                                          "logit_bias", "tools", "tool_choice", "response_format", "return_token_ids",
                                          "return_tokens_as_token_ids", NULL};

void comp_mix(comp *c, int mi, void *ctx, int kind, json_t *root, http_response *resp, comp_info *info) {
    const ccfg_model *m = &c->cfg->models[mi];
    const ccfg_comp *k = &m->comp;
    comp_model *pm = &c->pm[mi];
    if (kind != OAI_CHAT && kind != OAI_COMPLETION) {
        comp_error(resp, 400, "unsupported_endpoint", "model '%s' is a token-level ensemble: it answers completions "
                   "and chat", m->name);
        return;
    }
    const char *no = present(root, mix_refused);
    if (no) {
        comp_error(resp, 400, "unsupported_parameter", "model '%s' is a token-level ensemble: '%s' is not supported "
                   "(it averages the members' greedy top-%d distributions)", m->name, no, MIX_TOP);
        return;
    }
    bool stream = json_is_true(json_object_get(root, "stream"));
    json_object_del(root, "stream");
    json_object_del(root, "stream_options");
    const json_t *mt = json_object_get(root, kind == OAI_CHAT && json_object_get(root, "max_completion_tokens")
                                                 ? "max_completion_tokens" : "max_tokens");
    long max_tokens = json_is_integer(mt) ? (long)json_integer_value(mt) : kind == OAI_COMPLETION ? 16 : MIX_MAX_TOKENS;
    if (max_tokens > MIX_MAX_TOKENS) max_tokens = MIX_MAX_TOKENS;
    double temp = request_temp(root);
    uint64_t rng = request_seed(root);
    int nm = k->n_members, heavy = 0;
    for (int i = 1; i < nm; i++)
        if (k->members[i].weight > k->members[heavy].weight) heavy = i;
    double wsum = 0;
    for (int i = 0; i < nm; i++) wsum += k->members[i].weight;

    /* position 0: the heaviest member answers the client's own request (its chat template and
     * tokenizer make the prompt ids), the others are asked with those ids */
    json_t *first = json_deep_copy(root);
    json_object_set_new(first, "max_tokens", json_integer(1));
    json_object_del(first, "max_completion_tokens");
    json_object_set_new(first, "temperature", json_integer(0));
    json_object_set_new(first, "logprobs", kind == OAI_CHAT ? json_true() : json_integer(MIX_TOP));
    if (kind == OAI_CHAT) json_object_set_new(first, "top_logprobs", json_integer(MIX_TOP));
    json_object_set_new(first, "return_tokens_as_token_ids", json_true());
    json_object_set_new(first, "return_token_ids", json_true());
    json_object_del(first, "stop");
    mix_dist *d = calloc((size_t)nm, sizeof *d);
    double *member_ms = calloc((size_t)nm, sizeof *member_ms);
    json_t *seq = NULL, *gen = json_array();
    char err[ERRN] = "";
    const char *failed = NULL;
    comp_answer a;
    double ms;
    if (!d || !member_ms || !first || !gen) {
        failed = m->name, snprintf(err, sizeof err, "out of memory");
    } else if (ccall_run(c, ctx, kind, k->members[heavy].model, first, 0, &a, &ms, err, sizeof err)) {
        failed = k->members[heavy].model;
    } else {
        member_ms[heavy] += ms;
        if (parse_dist(&a, kind, &d[heavy], &seq, err)) failed = k->members[heavy].model;
        free(a.body);
    }
    json_decref(first);
    long prompt_tokens = seq ? (long)json_array_size(seq) : 0;
    int32_t eog[MIX_MAX_EOG];
    int n_eog = 0, n_avg = 0, n_dis = 0, n_pos = 0; /* positions: decided, averaged, disagreed */
    bool stopped = false;
    for (long t = 0; !failed && t < max_tokens; t++) {
        for (int i = 0; i < nm && !failed; i++) {
            if (t == 0 && i == heavy) continue;
            if (member_step(c, ctx, k->members[i].model, seq, &d[i], &ms, err)) failed = k->members[i].model;
            member_ms[i] += ms;
        }
        if (failed) break;
        bool agree = true;
        for (int i = 0; i < nm; i++) {
            agree &= d[i].chosen == d[heavy].chosen;
            if (d[i].eog && n_eog < MIX_MAX_EOG) {
                bool known = false;
                for (int e = 0; e < n_eog; e++) known |= eog[e] == d[i].chosen;
                if (!known) eog[n_eog++] = d[i].chosen;
            }
        }
        n_pos++;
        const mix_dist *h = &d[heavy];
        double margin = h->p[0] - (h->n > 1 ? h->p[1] : 0);
        /* the distribution to pick from: the heaviest member's, or the weighted average over the
         * union of the members' alternatives (a token outside a member's top counts 0 there) */
        int32_t ids[MIX_TOP * 16];
        double p[MIX_TOP * 16];
        int n = 0;
        if (agree && margin >= k->gate) {
            for (int j = 0; j < h->n; j++) ids[n] = h->id[j], p[n++] = h->p[j];
        } else {
            n_avg++;
            n_dis += !agree;
            for (int i = 0; i < nm; i++)
                for (int j = 0; j < d[i].n; j++) {
                    int at = 0;
                    while (at < n && ids[at] != d[i].id[j]) at++;
                    if (at == n) ids[n] = d[i].id[j], p[n++] = 0;
                    p[at] += k->members[i].weight * d[i].p[j] / wsum;
                }
        }
        int pick = 0;
        for (int j = 1; j < n; j++)
            if (p[j] > p[pick]) pick = j;
        if (temp > 0) { /* a draw at the request's temperature from what is known */
            double z = 0, q[MIX_TOP * 16];
            for (int j = 0; j < n; j++) z += q[j] = pow(p[j] / p[pick], 1.0 / temp);
            double u = (double)(splitmix(&rng) >> 11) / 9007199254740992.0 * z;
            for (pick = 0; pick < n - 1 && (u -= q[pick]) > 0; pick++) {
            }
        }
        int32_t tok = ids[pick];
        bool is_eog = false;
        for (int e = 0; e < n_eog; e++) is_eog |= eog[e] == tok;
        if (is_eog) {
            stopped = true;
            break;
        }
        json_array_append_new(seq, json_integer(tok));
        json_array_append_new(gen, json_integer(tok));
    }
    char *text = failed ? NULL : detok(c, ctx, k->members[heavy].model, gen, err);
    if (!failed && !text) failed = k->members[heavy].model;
    long n_gen = (long)json_array_size(gen);
    json_decref(seq);
    json_decref(gen);
    if (failed) {
        free(d), free(member_ms);
        metrics_inc(pm->m_failed, 1);
        comp_error(resp, 503, "backend_unavailable", "ensemble '%s': member '%s' failed: %s", m->name, failed, err);
        return;
    }
    if (cut_at_stop(root, text)) stopped = true;
    json_t *members = json_array();
    for (int i = 0; i < nm; i++)
        json_array_append_new(members, json_pack("{s:s, s:f, s:f}", "model", k->members[i].model, "weight",
                                                 k->members[i].weight, "ms", member_ms[i]));
    free(d), free(member_ms);
    json_t *shoal = json_pack("{s:{s:s, s:o, s:f, s:I, s:i, s:i}}", "ensemble", "combine", "tokens", "members", members,
                              "gate", k->gate, "tokens", (json_int_t)n_gen, "averaged", n_avg, "disagreed", n_dis);
    json_t *j = answer_json(m->name, kind, text, stopped ? "stop" : "length", prompt_tokens, n_gen, shoal);
    free(text);
    if (!j) {
        comp_error(resp, 500, NULL, "out of memory");
        return;
    }
    metrics_inc(pm->m_ok, 1);
    metrics_inc(pm->m_tok_avg, n_avg);
    metrics_inc(pm->m_tok_kept, n_pos - n_avg);
    if (n_dis) metrics_inc(pm->m_disagree, 1);
    double share = n_pos ? (double)n_avg / (double)n_pos : 0;
    metrics_observe(pm->m_conf[0], 1 - share);
    info->confidence = 1 - share;
    snprintf(info->decision, sizeof info->decision, "ensemble tokens=%ld averaged=%d disagreed=%d", n_gen, n_avg, n_dis);
    comp_respond(resp, j, kind, stream);
    comp_header(resp, "X-Shoal-Confidence", "%.4f", 1 - share);
}

/* ============================================================ best_of ===== */

/* The prompt as text, for the scorer: the completions prompt, or the chat messages as
 * "role: content" lines (the scorer's own chat template is not known here). NULL when the
 * prompt is token ids. malloc'd. */
static char *prompt_text(const json_t *root, int kind, bool last_user_only) {
    if (kind == OAI_COMPLETION) {
        const json_t *p = json_object_get(root, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1) p = json_array_get(p, 0);
        return json_is_string(p) ? strdup(json_string_value(p)) : NULL;
    }
    const json_t *msgs = json_object_get(root, "messages");
    size_t cap = 1, n = 0;
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        const json_t *c = json_object_get(json_array_get(msgs, i), "content");
        cap += (json_is_string(c) ? json_string_length(c) : 0) + 32;
    }
    char *out = malloc(cap);
    if (!out) return NULL;
    out[0] = 0;
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        const json_t *msg = json_array_get(msgs, i), *c = json_object_get(msg, "content");
        const char *role = json_string_value(json_object_get(msg, "role"));
        if (!json_is_string(c) || !role) continue;
        if (last_user_only) {
            if (!strcmp(role, "user")) n = (size_t)snprintf(out, cap, "%s", json_string_value(c));
            continue;
        }
        n += (size_t)snprintf(out + n, cap - n, "%.16s: %s\n", role, json_string_value(c));
    }
    if (!last_user_only) snprintf(out + n, cap - n, "assistant: ");
    return out;
}

/* Sum and count of the echo-scored logprobs of text (the first token has none). */
static int loglik(comp *c, void *ctx, const char *model, const char *text, double *sum, long *n, double *ms,
                  char *err) {
    json_t *b = json_pack("{s:s, s:i, s:b, s:i}", "prompt", text, "max_tokens", 0, "echo", 1, "logprobs", 0);
    comp_answer a;
    int rc = b ? ccall_run(c, ctx, OAI_COMPLETION, model, b, 0, &a, ms, err, ERRN) : -1;
    json_decref(b);
    if (rc) return -1;
    json_t *j = json_loadb(a.body, a.len, 0, NULL);
    free(a.body);
    const json_t *tl = json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs"),
                                       "token_logprobs");
    *sum = 0, *n = 0;
    for (size_t i = 0; i < json_array_size(tl); i++)
        if (json_is_number(json_array_get(tl, i))) *sum += json_number_value(json_array_get(tl, i)), (*n)++;
    bool ok = json_is_array(tl);
    json_decref(j);
    if (!ok) return snprintf(err, ERRN, "%s: the scoring answer has no token_logprobs", model), -1;
    return 0;
}

static const char *const best_refused[] = {"n", "echo", "best_of", "suffix", NULL};

void comp_best_of(comp *c, int mi, void *ctx, int kind, json_t *root, http_response *resp, comp_info *info) {
    const ccfg_model *m = &c->cfg->models[mi];
    const ccfg_comp *k = &m->comp;
    comp_model *pm = &c->pm[mi];
    if (kind != OAI_CHAT && kind != OAI_COMPLETION) {
        comp_error(resp, 400, "unsupported_endpoint", "model '%s' is a best-of ensemble: it answers completions and "
                   "chat", m->name);
        return;
    }
    const char *no = present(root, best_refused);
    if (no) {
        comp_error(resp, 400, "unsupported_parameter", "model '%s' is a best-of ensemble: '%s' is not supported",
                   m->name, no);
        return;
    }
    char *ptext = prompt_text(root, kind, k->score == CCFG_SCORE_RERANK);
    if (!ptext) {
        comp_error(resp, 400, "unsupported_parameter", "model '%s' is a best-of ensemble: its scorer needs the "
                   "prompt as text, not token ids", m->name);
        return;
    }
    bool stream = json_is_true(json_object_get(root, "stream"));
    json_object_del(root, "stream");
    json_object_del(root, "stream_options");
    double temp = request_temp(root);
    if (!(temp > 0)) temp = k->temperature; /* greedy candidates would all be the same */
    json_object_set_new(root, "temperature", json_real(temp));
    uint64_t seed = request_seed(root);
    comp_answer *cand = calloc((size_t)k->k, sizeof *cand);
    char **texts = calloc((size_t)k->k, sizeof *texts);
    double *score = calloc((size_t)k->k, sizeof *score);
    json_t *list = json_array();
    char err[ERRN] = "";
    int n_ok = 0;
    for (int i = 0; cand && texts && score && i < k->k; i++) {
        const char *model = k->members[i % k->n_members].model;
        json_object_set_new(root, "seed", json_integer((json_int_t)((seed + (uint64_t)i) & INT64_MAX)));
        double ms;
        comp_gen g;
        json_t *e = json_pack("{s:s, s:I}", "model", model, "seed", (json_int_t)((seed + (uint64_t)i) & INT64_MAX));
        if (ccall_run(c, ctx, kind, model, root, 0, &cand[i], &ms, err, sizeof err) ||
            ccall_parse_gen(cand[i].body, cand[i].len, kind, &g, err, sizeof err)) {
            free(cand[i].body), cand[i].body = NULL;
            json_object_set_new(e, "error", json_string(err));
        } else {
            texts[i] = g.text, g.text = NULL;
            ccall_gen_free(&g);
            n_ok++;
        }
        json_object_set_new(e, "ms", json_real(ms));
        json_array_append_new(list, e);
    }
    /* scores */
    double score_ms = 0, ms = 0;
    int best = -1;
    const char *scorer_err = NULL;
    if (n_ok && k->score == CCFG_SCORE_RERANK) {
        json_t *docs = json_array();
        int *map = calloc((size_t)k->k, sizeof *map), nd = 0;
        for (int i = 0; map && i < k->k; i++)
            if (texts[i]) map[nd++] = i, json_array_append_new(docs, json_string(texts[i]));
        json_t *b = json_pack("{s:s, s:o}", "query", ptext, "documents", docs);
        comp_answer a;
        if (!map || !b || ccall_run(c, ctx, OAI_RERANK, k->scorer, b, 0, &a, &ms, err, sizeof err)) {
            scorer_err = err;
        } else {
            json_t *j = json_loadb(a.body, a.len, 0, NULL);
            const json_t *res = json_object_get(j, "results");
            for (size_t r = 0; r < json_array_size(res); r++) {
                const json_t *e = json_array_get(res, r);
                json_int_t ix = json_integer_value(json_object_get(e, "index"));
                const json_t *sc = json_object_get(e, "relevance_score");
                if (ix < 0 || ix >= nd || !json_is_number(sc)) continue;
                score[map[ix]] = json_number_value(sc);
                json_object_set_new(json_array_get(list, (size_t)map[ix]), "score", json_real(score[map[ix]]));
                if (best < 0 || score[map[ix]] > score[best]) best = map[ix];
            }
            json_decref(j);
            free(a.body);
            if (best < 0) scorer_err = "the rerank answer has no usable results";
        }
        score_ms += ms;
        json_decref(b);
        free(map);
    } else if (n_ok) {
        double ps;
        long pn;
        if (loglik(c, ctx, k->scorer, ptext, &ps, &pn, &ms, err)) {
            scorer_err = err;
        }
        score_ms += ms;
        for (int i = 0; !scorer_err && i < k->k; i++) {
            if (!texts[i]) continue;
            size_t lp = strlen(ptext), lt = strlen(texts[i]);
            char *full = malloc(lp + lt + 1);
            double s;
            long n;
            if (!full) {
                scorer_err = "out of memory";
                break;
            }
            memcpy(full, ptext, lp), memcpy(full + lp, texts[i], lt + 1);
            int rc = loglik(c, ctx, k->scorer, full, &s, &n, &ms, err);
            free(full);
            score_ms += ms;
            if (rc) {
                scorer_err = err;
                break;
            }
            /* the candidate's own tokens: the whole text's minus the prompt's (an empty candidate
             * has none and scores lowest) */
            score[i] = n > pn ? (s - ps) / (double)(n - pn) : -1e9;
            json_object_set_new(json_array_get(list, (size_t)i), "score", json_real(score[i]));
            if (best < 0 || score[i] > score[best]) best = i;
        }
    }
    free(ptext);
    json_t *out = NULL;
    bool degraded = false;
    if (!n_ok) {
        comp_error(resp, 503, "backend_unavailable", "ensemble '%s': no candidate was generated (last: %s)", m->name,
                   err);
    } else {
        if (scorer_err) { /* the scorer failed: the first candidate, said so */
            degraded = true;
            for (best = 0; !texts[best]; best++) {
            }
        }
        out = json_loadb(cand[best].body, cand[best].len, 0, NULL);
        if (!json_is_object(out)) {
            json_decref(out), out = NULL;
            comp_error(resp, 502, "bad_answer", "ensemble '%s': a candidate is not JSON", m->name);
        }
    }
    if (out) {
        json_t *sj = json_pack("{s:s, s:i, s:s, s:s, s:i, s:O, s:f}", "combine", "best_of", "k", k->k, "scorer",
                               k->scorer, "score", k->score == CCFG_SCORE_RERANK ? "rerank" : "loglik", "chosen",
                               best, "candidates", list, "score_ms", score_ms);
        if (degraded) json_object_set_new(sj, "degraded", json_sprintf("the scorer failed: %s", scorer_err));
        json_object_set_new(out, "shoal", json_pack("{s:o}", "ensemble", sj));
        json_object_set_new(out, "model", json_string(m->name));
        metrics_inc(degraded ? pm->m_degraded : pm->m_ok, 1);
        double conf = k->score == CCFG_SCORE_LOGLIK ? exp(score[best]) : score[best];
        if (!degraded) metrics_observe(pm->m_conf[0], conf);
        info->confidence = degraded ? -1 : conf;
        snprintf(info->decision, sizeof info->decision, "ensemble best_of k=%d ok=%d chosen=%d%s", k->k, n_ok, best,
                 degraded ? " degraded" : "");
        comp_respond(resp, out, kind, stream);
        if (!degraded) comp_header(resp, "X-Shoal-Confidence", "%.4f", conf);
    } else {
        metrics_inc(pm->m_failed, 1);
    }
    json_decref(list);
    for (int i = 0; cand && i < k->k; i++) free(cand[i].body);
    for (int i = 0; texts && i < k->k; i++) free(texts[i]);
    free(cand), free(texts), free(score);
}
