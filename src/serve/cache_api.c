/*
 * serve/cache_api — the node's response cache in front of generation (server_int.h,
 * docs/cache.md): which requests are cacheable, their keys, answers from the cache (JSON or
 * replayed as SSE), storing whole answers, and GET / DELETE /v1/cache.
 *
 * The key covers what decides the answer: the model's name and file hash, the chat template
 * in effect, the endpoint, the normalized prompt or messages (roles included), and every
 * sampling and output parameter. Not in the key: stream and stream_options (a hit replays as
 * the client asks), user, deadline_ms and priority (an answer cut by its deadline is never
 * stored).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/server_int.h"

static const char *const policy_names[] = {"deterministic", "always", "never"};

int srv_cache_policies(server *s, sh_err *err) {
    for (int i = 0; i < s->p.n_cache_policy; i++) {
        const char *e = s->p.cache_policy[i], *eq = strrchr(e, '=');
        const char *pol = eq ? eq + 1 : e;
        int p = -1;
        for (int k = 0; k < 3; k++)
            if (!strcmp(pol, policy_names[k])) p = k;
        if (p < 0) return sh_errf(err, "--cache-policy '%s': expected [MODEL=]deterministic|always|never", e);
        bool found = !eq;
        for (int m = 0; m < s->n_models; m++) {
            if (eq && (strlen(s->models[m].name) != (size_t)(eq - e) || strncmp(s->models[m].name, e, (size_t)(eq - e))))
                continue;
            s->models[m].cache_policy = p;
            found = true;
        }
        if (!found) return sh_errf(err, "--cache-policy '%s': no model is called '%.*s'", e, (int)(eq - e), e);
    }
    return 0;
}

/* ============================================================ plan and key ===== */

/* The exact key; with `partition`, the semantic partition instead: everything but the last
 * turn's text (the completions prompt, or the last message's content), plus label. */
static void key_of(server *s, const srv_model *sm, const oai_request *r, uint8_t key[CACHE_KEY_BYTES], bool *ok,
                   bool partition, const char *label) {
    bool fold = s->p.cache_fold_case;
    ckey k;
    ckey_init(&k);
    ckey_bytes(&k, "v", partition ? "semantic-1" : "1", partition ? 10 : 1);
    if (label) ckey_bytes(&k, "label", label, strlen(label));
    ckey_bytes(&k, "model", sm->name, strlen(sm->name));
    ckey_bytes(&k, "sha", sm->sha, strlen(sm->sha));
    const char *tmpl = sm->chat_template ? sm->chat_template : "";
    ckey_bytes(&k, "template", tmpl, strlen(tmpl));
    ckey_int(&k, "kind", r->kind);
    if (r->kind == OAI_CHAT) {
        ckey_int(&k, "messages", (int64_t)r->n_messages);
        for (size_t i = 0; i < r->n_messages; i++) {
            const oai_message *m = &r->messages[i];
            ckey_bytes(&k, "role", m->role, strlen(m->role));
            if (partition && i + 1 == r->n_messages) continue;
            ckey_text(&k, "content", m->content ? m->content : "", m->content ? strlen(m->content) : 0, fold);
        }
    } else if (partition) {
        /* the prompt is what is compared */
    } else if (r->prompt_ids) {
        ckey_bytes(&k, "prompt_ids", r->prompt_ids, r->n_prompt_ids * sizeof *r->prompt_ids);
    } else {
        ckey_text(&k, "prompt", r->prompt ? r->prompt : "", r->prompt ? strlen(r->prompt) : 0, fold);
    }
    ckey_int(&k, "max_tokens", r->max_tokens);
    ckey_num(&k, "temperature", r->temperature);
    ckey_num(&k, "top_p", r->top_p);
    ckey_int(&k, "top_k", r->top_k);
    ckey_num(&k, "min_p", r->min_p);
    ckey_num(&k, "presence", r->presence_penalty);
    ckey_num(&k, "frequency", r->frequency_penalty);
    ckey_num(&k, "repeat", r->repeat_penalty);
    ckey_int(&k, "has_seed", r->has_seed);
    if (r->has_seed) ckey_int(&k, "seed", (int64_t)r->seed);
    ckey_int(&k, "stops", (int64_t)r->n_stop);
    for (size_t i = 0; i < r->n_stop; i++) ckey_bytes(&k, "stop", r->stop[i], strlen(r->stop[i]));
    ckey_int(&k, "logprobs", r->logprobs);
    ckey_int(&k, "top_logprobs", r->top_logprobs);
    ckey_int(&k, "echo", r->echo);
    ckey_int(&k, "ids", r->tokens_as_ids);
    ckey_int(&k, "return_ids", r->return_token_ids);
    ckey_int(&k, "format", r->format); /* the output's constraint changes the answer */
    if (r->format_schema) ckey_bytes(&k, "schema", r->format_schema, strlen(r->format_schema));
    if (r->grammar) ckey_bytes(&k, "grammar", r->grammar, strlen(r->grammar));
    *ok = ckey_digest(&k, key) == 0;
    ckey_free(&k);
}

/* Does the Cache-Control header hold this directive (a comma-separated list, any case)? */
static bool directive(const char *cc, const char *d) {
    size_t n = strlen(d);
    for (const char *p = cc; p && *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t')) t--;
        if ((size_t)(t - p) == n && !strncasecmp(p, d, n)) return true;
        p = e;
    }
    return false;
}

srv_cache_mode srv_cache_plan(server *s, const srv_model *sm, const oai_request *r, http_request *req,
                              uint8_t key[CACHE_KEY_BYTES]) {
    if (!s->cache) return SRV_CACHE_OFF;
    const char *cc = http_req_header(req, "Cache-Control");
    if (r->cache_off || directive(cc, "no-store")) return SRV_CACHE_BYPASS;
    /* not cached (docs/cache.md): several choices, tool calls, logit biases, Responses API
     * requests (they have their own store) */
    if (r->kind == OAI_RESPONSES || r->n > 1 || r->n_tools || r->n_logit_bias) return SRV_CACHE_BYPASS;
    bool deterministic = r->temperature == 0 || r->has_seed;
    if (sm->cache_policy == SRV_CACHE_NEVER || (sm->cache_policy == SRV_CACHE_DETERMINISTIC && !deterministic))
        return SRV_CACHE_BYPASS;
    bool ok;
    key_of(s, sm, r, key, &ok, false, NULL);
    if (!ok) return SRV_CACHE_BYPASS;
    return directive(cc, "no-cache") ? SRV_CACHE_REFRESH : SRV_CACHE_USE;
}

/* ============================================================ answers ===== */

/* The stored answer as SSE: the whole text in one chunk, then the finish, the usage when
 * asked, and [DONE]. */
static char *as_sse(json_t *j, const oai_request *r, size_t *len) {
    bool chat = r->kind == OAI_CHAT;
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    json_t *lines = json_array();
    json_t *base = json_pack("{s:O, s:s, s:O, s:O}", "id", json_object_get(j, "id"), "object",
                             chat ? "chat.completion.chunk" : "text_completion", "created",
                             json_object_get(j, "created"), "model", json_object_get(j, "model"));
    json_t *c1 = json_deep_copy(base), *c2 = json_deep_copy(base);
    json_t *text = chat ? json_object_get(json_object_get(ch, "message"), "content") : json_object_get(ch, "text");
    json_t *lp = json_object_get(ch, "logprobs");
    json_t *choice1 = json_pack("{s:i, s:O, s:n}", "index", 0, "logprobs", lp ? lp : json_null(), "finish_reason");
    if (chat) json_object_set_new(choice1, "delta", json_pack("{s:s, s:O}", "role", "assistant", "content", text));
    else json_object_set(choice1, "text", text);
    json_object_set_new(c1, "choices", json_pack("[o]", choice1));
    json_t *choice2 = json_pack("{s:i, s:n, s:O}", "index", 0, "logprobs", "finish_reason",
                                json_object_get(ch, "finish_reason"));
    if (chat) json_object_set_new(choice2, "delta", json_object());
    else json_object_set_new(choice2, "text", json_string(""));
    json_object_set_new(c2, "choices", json_pack("[o]", choice2));
    json_array_append_new(lines, c1);
    json_array_append_new(lines, c2);
    if (r->include_usage) {
        json_t *c3 = json_deep_copy(base);
        json_object_set_new(c3, "choices", json_array());
        json_object_set(c3, "usage", json_object_get(j, "usage"));
        json_array_append_new(lines, c3);
    }
    json_decref(base);
    size_t cap = 64, n = 0;
    char *out = malloc(cap);
    size_t i;
    json_t *line;
    json_array_foreach(lines, i, line) {
        char *t = json_dumps(line, JSON_COMPACT);
        size_t tl = t ? strlen(t) : 0;
        if (out && n + tl + 16 > cap) {
            while (n + tl + 16 > cap) cap *= 2;
            char *o = realloc(out, cap);
            if (!o) free(out);
            out = o;
        }
        if (out && t) n += (size_t)sprintf(out + n, "data: %s\n\n", t);
        free(t);
    }
    if (out && n + 16 <= cap) n += (size_t)sprintf(out + n, "data: [DONE]\n\n");
    json_decref(lines);
    *len = n;
    return out;
}

/* Answers r with the stored value (which it frees); false when the value is not an answer. */
static bool answer_value(server *s, const srv_model *sm, const oai_request *r, http_request *req,
                         http_response *resp, char *val, size_t n, const char *tier, double sim) {
    json_t *j = json_loadb(val, n, 0, NULL);
    free(val);
    if (!json_is_object(j)) { /* not ours (another writer, a damaged value): a miss */
        json_decref(j);
        return false;
    }
    char id[48];
    srv_new_id(id, sizeof id, r->kind == OAI_CHAT ? "chatcmpl-" : "cmpl-");
    /* a fresh id and time, first as in any answer */
    json_t *fresh = json_pack("{s:s, s:O, s:I}", "id", id, "object", json_object_get(j, "object"), "created",
                              (json_int_t)time(NULL));
    if (!fresh || json_object_update_missing(fresh, j)) {
        json_decref(fresh), json_decref(j);
        return false;
    }
    json_decref(j);
    j = fresh;
    const char *finish = json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0),
                                                           "finish_reason"));
    json_t *u = json_object_get(j, "usage");
    log_info li = {.request_id = http_req_id(req), .method = "POST", .path = srv_endpoint_path[r->kind],
                   .peer = http_req_peer(req), .sm = sm, .status = 200, .finish = finish,
                   .prompt_tokens = (int)json_integer_value(json_object_get(u, "prompt_tokens")),
                   .completion_tokens = (int)json_integer_value(json_object_get(u, "completion_tokens")),
                   .cache = tier};
    if (r->stream) {
        size_t len = 0;
        char *sse = as_sse(j, r, &len);
        json_decref(j);
        if (!sse) return false;
        resp->status = 200;
        resp->content_type = "text/event-stream";
        resp->body = sse;
        resp->body_len = len;
        http_resp_header(resp, "Cache-Control", "no-cache");
    } else {
        srv_respond_json(resp, 200, j);
    }
    http_resp_header(resp, "X-Shoal-Cache", "hit");
    http_resp_header(resp, "X-Shoal-Cache-Tier", tier);
    if (sim > -2) {
        char v[32];
        snprintf(v, sizeof v, "%.4f", sim);
        http_resp_header(resp, "X-Shoal-Similarity", v);
    }
    li.total_ms = http_now_ms() - http_req_start_ms(req);
    srv_log_request(s, &li);
    srv_count_request(s, sm->name, srv_endpoint_path[r->kind], 200);
    return true;
}

bool srv_cache_answer(server *s, const srv_model *sm, const oai_request *r, http_request *req,
                      const uint8_t key[CACHE_KEY_BYTES], http_response *resp) {
    char *val = NULL;
    size_t n = 0;
    const char *tier = NULL;
    if (cache_get(s->cache, key, &val, &n, &tier) != 1) return false;
    return answer_value(s, sm, r, req, resp, val, n, tier, -2);
}

/* ============================================================ the semantic tier ===== */

/* The text that is embedded: the last message's content, or the completions prompt. */
static const char *last_turn(const oai_request *r) {
    if (r->kind == OAI_CHAT) return r->n_messages ? r->messages[r->n_messages - 1].content : NULL;
    return r->prompt; /* token-id prompts: none */
}

bool srv_sem_lookup(server *s, const srv_model *sm, const oai_request *r, http_request *req, http_response *resp,
                    srv_sem_pending *pend) {
    memset(pend, 0, sizeof *pend);
    const char *text = last_turn(r);
    if (!s->sem || !text || !*text) return false;
    size_t cap = ckey_normalize_cap(strlen(text));
    char *norm = malloc(cap + 1);
    float *vec = malloc((size_t)s->sem_enc->em->hp.dim * sizeof(float));
    char label[128], slots[384];
    double conf;
    sh_err err = {{0}};
    bool ok = norm && vec;
    if (ok) norm[ckey_normalize(text, strlen(text), s->p.cache_fold_case, norm)] = 0;
    if (ok && srv_encode_one(s->sem_enc, norm, vec, label, sizeof label, &conf, slots, sizeof slots, &err)) ok = false;
    if (ok) key_of(s, sm, r, pend->part, &ok, true, s->p.semantic_label ? label : NULL);
    if (!ok) {
        free(norm), free(vec);
        return false;
    }
    csem_fingerprint(norm, slots, pend->fp, sizeof pend->fp);
    free(norm);
    pend->vec = vec;
    pend->on = true;
    char *val = NULL;
    size_t n = 0;
    double sim;
    double min = s->p.min_similarity > 0 ? s->p.min_similarity : 0.93;
    if (csem_get(s->sem, pend->part, vec, pend->fp, min, &val, &n, &sim) == 1 &&
        answer_value(s, sm, r, req, resp, val, n, "semantic", sim)) {
        srv_sem_pending_free(pend);
        return true;
    }
    return false;
}

void srv_sem_store(server *s, srv_sem_pending *pend, const json_t *answer) {
    if (!pend->on || !s->sem) return;
    json_t *j = json_deep_copy(answer);
    if (!j) return;
    json_object_del(j, "id");
    json_object_del(j, "created");
    char *t = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (t) csem_put(s->sem, pend->part, pend->vec, pend->fp, t, strlen(t));
    free(t);
}

void srv_sem_pending_free(srv_sem_pending *pend) {
    free(pend->vec);
    memset(pend, 0, sizeof *pend);
}

void srv_cache_store(server *s, const uint8_t key[CACHE_KEY_BYTES], const json_t *answer) {
    json_t *j = json_deep_copy(answer);
    if (!j) return;
    json_object_del(j, "id"); /* a hit gets its own */
    json_object_del(j, "created");
    char *t = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (t) cache_put(s->cache, key, t, strlen(t));
    free(t);
}

/* ============================================================ coalescing ===== */

struct srv_flight {
    uint8_t key[CACHE_KEY_BYTES];
    int refs;                   /* the leader and the followers */
    bool done;
    char *val;                  /* the answer, or NULL: none to share */
    size_t n;
    pthread_cond_t cv;
    struct srv_flight *next;
};

srv_flight *srv_flight_begin(server *s, const uint8_t key[CACHE_KEY_BYTES], bool *leader) {
    pthread_mutex_lock(&s->flight_mu);
    srv_flight *f = s->flights;
    while (f && memcmp(f->key, key, CACHE_KEY_BYTES)) f = f->next;
    *leader = !f;
    if (f) {
        f->refs++;
    } else if ((f = calloc(1, sizeof *f))) {
        memcpy(f->key, key, CACHE_KEY_BYTES);
        f->refs = 1;
        pthread_cond_init(&f->cv, NULL);
        f->next = s->flights;
        s->flights = f;
    }
    pthread_mutex_unlock(&s->flight_mu);
    return f;
}

static void unlink_flight(server *s, srv_flight *f) {
    for (srv_flight **pp = &s->flights; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            return;
        }
}

void srv_flight_release(server *s, srv_flight *f) {
    if (!f) return;
    pthread_mutex_lock(&s->flight_mu);
    bool last = --f->refs == 0;
    if (last && !f->done) unlink_flight(s, f); /* cannot happen for a leader that ended */
    pthread_mutex_unlock(&s->flight_mu);
    if (!last) return;
    pthread_cond_destroy(&f->cv);
    free(f->val);
    free(f);
}

void srv_flight_end(server *s, srv_flight *f, const json_t *answer) {
    if (!f) return;
    char *t = NULL;
    if (answer) {
        json_t *j = json_deep_copy(answer);
        if (j) json_object_del(j, "id"), json_object_del(j, "created"), t = json_dumps(j, JSON_COMPACT);
        json_decref(j);
    }
    pthread_mutex_lock(&s->flight_mu);
    unlink_flight(s, f); /* a request arriving from now on looks in the cache itself */
    f->done = true;
    f->val = t;
    f->n = t ? strlen(t) : 0;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&s->flight_mu);
    srv_flight_release(s, f);
}

int srv_flight_wait(server *s, srv_flight *f, http_request *req, char **val, size_t *n) {
    pthread_mutex_lock(&s->flight_mu);
    double give_up = http_now_ms() + 120e3;
    while (!f->done && !http_req_client_gone(req) && http_now_ms() < give_up) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 5 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&f->cv, &s->flight_mu, &ts);
    }
    int rc = 0;
    if (f->done && f->val && (*val = malloc(f->n ? f->n : 1))) {
        memcpy(*val, f->val, f->n);
        *n = f->n;
        rc = 1;
    }
    pthread_mutex_unlock(&s->flight_mu);
    return rc;
}

bool srv_cache_answer_value(server *s, const srv_model *sm, const oai_request *r, http_request *req,
                            http_response *resp, char *val, size_t n, const char *tier) {
    return answer_value(s, sm, r, req, resp, val, n, tier, -2);
}

/* ============================================================ /v1/cache ===== */

static json_t *tier_json(const cache_tier_stats *t, bool redis) {
    if (!t->on) return json_null();
    json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "hits", (json_int_t)t->hits, "misses",
                          (json_int_t)t->misses, "errors", (json_int_t)t->errors, "writes", (json_int_t)t->puts,
                          "evictions", (json_int_t)t->evictions, "writes_dropped", (json_int_t)t->dropped);
    if (redis) {
        json_object_set_new(j, "up", json_boolean(t->up));
    } else {
        json_object_set_new(j, "entries", json_integer((json_int_t)t->entries));
        json_object_set_new(j, "bytes", json_integer((json_int_t)t->bytes));
    }
    uint64_t looked = t->hits + t->misses + t->errors;
    json_object_set_new(j, "hit_ratio", looked ? json_real((double)t->hits / (double)looked) : json_null());
    return j;
}

void srv_handle_cache(server *s, http_request *req, http_response *resp) {
    const char *m = http_req_method(req);
    oai_error e;
    if (!s->cache) {
        oai_errorf(&e, 404, "invalid_request_error", NULL, "this node has no response cache (serve --cache)");
        srv_respond_error(resp, &e);
        return;
    }
    if (!strcmp(m, "DELETE")) {
        cache_clear(s->cache);
        if (s->sem) csem_clear(s->sem);
        srv_respond_json(resp, 200, json_pack("{s:b}", "cleared", 1));
        return;
    }
    if (strcmp(m, "GET")) {
        oai_errorf(&e, 405, "invalid_request_error", NULL, "%s is not allowed on /v1/cache (GET, DELETE)", m);
        srv_respond_error(resp, &e);
        return;
    }
    cache_stats st;
    cache_get_stats(s->cache, &st);
    srv_respond_json(resp, 200, json_pack("{s:o, s:o, s:o}", "memory", tier_json(&st.memory, false), "sqlite",
                                          tier_json(&st.sqlite, false), "redis", tier_json(&st.redis, true)));
}
