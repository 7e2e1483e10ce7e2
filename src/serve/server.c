/*
 * serve/server — see server.h.
 *
 * A generation request goes: HTTP thread (auth, parse, tokenize, submit) -> engine thread
 * (events through gen_emit) -> either the HTTP thread waiting for the whole answer, or the
 * connection's stream pulling SSE chunks from a channel. A gen_ctx carries one request across
 * those threads; it is reference-counted (the engine side drops its reference after the DONE
 * event, the HTTP side when the response is over).
 */
#include "serve/server.h"
#include "serve/server_int.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "api/oai_req.h"
#include "cluster/router.h"
#include "core/hash.h"
#include "core/utf8.h"
#include "http/chan.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "model/model.h"
#include "serve/sched.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

/* ============================================================ small helpers ===== */

char *srv_dump(json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(j);
    return s;
}

void srv_respond_json(http_response *resp, int status, json_t *j) {
    char *s = srv_dump(j);
    resp->status = s ? status : 500;
    resp->content_type = "application/json";
    resp->body = s;
    resp->body_len = s ? strlen(s) : 0;
}

void srv_respond_error(http_response *resp, const oai_error *e) {
    char *s = oai_error_body(e);
    resp->status = e->status;
    resp->content_type = "application/json";
    resp->body = s;
    resp->body_len = s ? strlen(s) : 0;
}

void srv_new_id(char *out, size_t n, const char *prefix) {
    uint8_t b[12];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) memset(b, 0, sizeof b);
    static const char hx[] = "0123456789abcdef";
    size_t k = (size_t)snprintf(out, n, "%s", prefix);
    for (int i = 0; i < 12 && k + 2 < n; i++) {
        out[k++] = hx[b[i] >> 4];
        out[k++] = hx[b[i] & 15];
    }
    out[k] = 0;
}

/* W3C traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>. */
bool srv_traceparent_ok(const char *t) {
    if (!t || strlen(t) != 55 || t[2] != '-' || t[35] != '-' || t[52] != '-') return false;
    for (int i = 0; i < 55; i++) {
        if (i == 2 || i == 35 || i == 52) continue;
        char c = t[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

const char *srv_finish_name(sched_finish f) {
    switch (f) {
    case SCHED_FINISH_STOP: return "stop";
    case SCHED_FINISH_LENGTH: return "length";
    case SCHED_FINISH_CANCELLED: return "cancelled";
    case SCHED_FINISH_ERROR: return "error";
    default: return NULL;
    }
}

srv_model *srv_find_model(server *s, const char *name) {
    if (!name) return &s->models[0];
    for (int i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i].name, name) == 0) return &s->models[i];
    return NULL;
}

void srv_count_request(server *s, const char *model_name, const char *endpoint, int status) {
    char l[256], e1[96], e2[64];
    snprintf(l, sizeof l, "model=\"%s\",endpoint=\"%s\",status=\"%d\"",
             metrics_label_escape(model_name ? model_name : "", e1, sizeof e1),
             metrics_label_escape(endpoint, e2, sizeof e2), status);
    metrics_inc(metrics_counter(s->met, "shoal_requests_total", "Requests by model, endpoint and HTTP status.", l), 1);
}


const char *const srv_endpoint_path[OAI_KIND_COUNT] = {"/v1/completions", "/v1/chat/completions",
                                                       "/v1/embeddings", "/v1/rerank", "/v1/classify",
                                                       "/v1/responses"};

int srv_submit_rc_status(sched_submit_rc rc) {
    switch (rc) {
    case SUBMIT_QUEUE_FULL: return 429;
    case SUBMIT_DEADLINE: case SUBMIT_SHUTTING_DOWN: return 503;
    default: return 400;
    }
}

/* ============================================================ request log ===== */


/* Generated text as a JSON string. The detokenizer passes bytes that never form UTF-8 through
 * (a model can emit any byte token), which a JSON string cannot hold: those bytes become
 * U+FFFD rather than losing the whole field. */
json_t *srv_text_json(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j) return j;
    size_t m;
    char *clean = utf8_replace_invalid(s, n, &m);
    j = clean ? json_stringn(clean, m) : NULL;
    free(clean);
    return j ? j : json_string("");
}

void srv_log_request(server *s, const log_info *li) {
    json_t *j = json_object();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t k = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + k, sizeof when - k, ".%03ldZ", ts.tv_nsec / 1000000L);
    json_object_set_new(j, "ts", json_string(when));
    json_object_set_new(j, "request_id", json_string(li->request_id));
    if (li->traceparent) {
        json_object_set_new(j, "trace_id", json_stringn(li->traceparent + 3, 32));
        json_object_set_new(j, "parent_id", json_stringn(li->traceparent + 36, 16));
    }
    json_object_set_new(j, "method", json_string(li->method));
    json_object_set_new(j, "path", json_string(li->path));
    if (li->peer && *li->peer) json_object_set_new(j, "peer", json_string(li->peer));
    json_object_set_new(j, "status", json_integer(li->status));
    if (li->sm) {
        json_object_set_new(j, "model", json_string(li->sm->name));
        json_object_set_new(j, "model_sha256", json_string(li->sm->sha));
        json_object_set_new(j, "quant", json_string(li->sm->m ? li->sm->m->type_name : li->sm->em->type_name));
    }
    if (li->finish) json_object_set_new(j, "finish_reason", json_string(li->finish));
    if (li->cache) json_object_set_new(j, "cache", json_string(li->cache));
    if (li->n_inputs) json_object_set_new(j, "inputs", json_integer(li->n_inputs));
    if (li->sm && li->n_inputs) { /* embeddings, rerank, classify: no generated tokens */
        json_object_set_new(j, "prompt_tokens", json_integer(li->prompt_tokens));
        json_object_set_new(j, "queue_ms", json_real(li->queue_ms));
    } else if (li->sm) {
        json_object_set_new(j, "prompt_tokens", json_integer(li->prompt_tokens));
        json_object_set_new(j, "completion_tokens", json_integer(li->completion_tokens));
        json_object_set_new(j, "cached_tokens", json_integer(li->cached_tokens));
        json_object_set_new(j, "queue_ms", json_real(li->queue_ms));
        json_object_set_new(j, "ttft_ms", json_real(li->ttft_ms));
    }
    const router_log *rl = li->route;
    if (rl) {
        if (rl->model) json_object_set_new(j, "model", json_string(rl->model));
        if (rl->answered_by && (!rl->model || strcmp(rl->answered_by, rl->model)))
            json_object_set_new(j, "answered_by", json_string(rl->answered_by));
        if (rl->backend) json_object_set_new(j, "backend", json_string(rl->backend));
        json_object_set_new(j, "attempts", json_integer(rl->attempts));
        json_object_set_new(j, "stream", json_boolean(rl->stream));
        if (rl->outcome) json_object_set_new(j, "outcome", json_string(rl->outcome));
        if (rl->hedged) json_object_set_new(j, "hedged", json_true());
        if (rl->fallback) json_object_set_new(j, "fallback", json_true());
        if (rl->degraded) json_object_set_new(j, "degraded", json_true());
        if (rl->label) json_object_set_new(j, "label", json_string(rl->label));
        if (rl->confidence >= 0) json_object_set_new(j, "confidence", json_real(rl->confidence));
        if (rl->decision) json_object_set_new(j, "decision", json_string(rl->decision));
        json_object_set_new(j, "ttfb_ms", json_real(rl->ttfb_ms));
    }
    json_object_set_new(j, "total_ms", json_real(li->total_ms));
    if (li->error) json_object_set_new(j, "error", json_string(li->error));
    if (s->p.log_prompts && li->prompt) json_object_set_new(j, "prompt", json_string(li->prompt));
    if (s->p.log_prompts && li->output)
        json_object_set_new(j, "output", srv_text_json(li->output, strlen(li->output)));
    char *line = srv_dump(j);
    if (!line) return;
    pthread_mutex_lock(&s->log_mu);
    fputs(line, s->log);
    fputc('\n', s->log);
    fflush(s->log);
    pthread_mutex_unlock(&s->log_mu);
    free(line);
}

/* ============================================================ other endpoints ===== */

/* The labels of an encoder head as a JSON array. */
static json_t *labels_json(const encoder_head *h) {
    json_t *a = json_array();
    for (int i = 0; i < h->n_out; i++) json_array_append_new(a, json_string(h->labels[i]));
    return a;
}

static void handle_models(server *s, http_response *resp) {
    json_t *data = json_array();
    for (int i = 0; i < s->n_models; i++) {
        srv_model *sm = &s->models[i];
        json_t *meta;
        if (sm->em) {
            const encoder_model *em = sm->em;
            const bool rr = em->seq_head.n_out == 1 && esched_pooling(sm->es) == ENCODER_POOL_RANK;
            meta = json_pack("{s:s, s:s, s:s, s:s, s:I, s:i, s:i, s:s, s:s}", "file", em->path,
                             "sha256", sm->sha, "kind", "encoder", "arch",
                             em->hp.arch == ENCODER_BERT ? "bert" : "nomic-bert", "n_params",
                             (json_int_t)em->n_params, "n_ctx", em->hp.n_ctx_train, "dim",
                             em->hp.dim, "pooling", encoder_pooling_name(esched_pooling(sm->es)),
                             "quant", em->type_name);
            json_t *tasks = json_array();
            if (esched_pooling(sm->es) != ENCODER_POOL_NONE && esched_pooling(sm->es) != ENCODER_POOL_RANK)
                json_array_append_new(tasks, json_string("embeddings"));
            if (rr) json_array_append_new(tasks, json_string("rerank"));
            if ((em->seq_head.n_out && !rr) || em->tok_head.n_out)
                json_array_append_new(tasks, json_string("classify"));
            json_object_set_new(meta, "tasks", tasks);
            if (em->seq_head.n_out && !rr) json_object_set_new(meta, "labels", labels_json(&em->seq_head));
            if (em->tok_head.n_out) json_object_set_new(meta, "token_labels", labels_json(&em->tok_head));
        } else {
            meta = json_pack("{s:s, s:s, s:s, s:I, s:i, s:s}", "file", sm->m->path, "sha256",
                             sm->sha, "kind", "decoder", "n_params", (json_int_t)sm->m->n_params,
                             "n_ctx", sched_n_ctx(sm->sc), "quant", sm->m->type_name);
        }
        json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", sm->name, "object",
                                              "model", "created", (json_int_t)0, "owned_by", "shoal",
                                              "meta", meta));
    }
    srv_respond_json(resp, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static void handle_health(server *s, http_response *resp) {
    const char *status = atomic_load(&s->draining) ? "draining" : atomic_load(&s->ready) ? "ok" : "loading";
    srv_respond_json(resp, strcmp(status, "ok") ? 503 : 200, json_pack("{s:s}", "status", status));
}

static void handle_slots(server *s, http_response *resp) {
    json_t *a = json_array();
    for (int i = 0; i < s->n_models; i++) {
        if (s->models[i].es) {
            esched_stats es;
            esched_get_stats(s->models[i].es, &es);
            json_array_append_new(a, json_pack("{s:s, s:s, s:i, s:i, s:f}", "model", s->models[i].name,
                                               "kind", "encoder", "busy", es.busy, "queued", es.queued,
                                               "tok_s", es.tok_s));
            continue;
        }
        sched_stats st;
        sched_get_stats(s->models[i].sc, &st);
        json_array_append_new(a, json_pack("{s:s, s:i, s:i, s:i, s:f, s:f}", "model", s->models[i].name,
                                           "slots", st.n_slots, "busy", st.busy_slots, "queued", st.queued,
                                           "prompt_tok_s", st.pp_tok_s, "step_ms", st.tg_step_ms));
    }
    srv_respond_json(resp, 200, a);
}

static void handle_metrics(server *s, http_response *resp) {
    char *t = metrics_render(s->met);
    resp->status = t ? 200 : 500;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp->body = t;
    resp->body_len = t ? strlen(t) : 0;
}

/* ============================================================ routing ===== */

static bool authorized(server *s, http_request *req) {
    if (!s->p.api_key) return true;
    const char *h = http_req_header(req, "Authorization");
    size_t kl = strlen(s->p.api_key);
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    /* constant time in the key's content; the length comparison leaks only the length */
    return strlen(h) == kl && CRYPTO_memcmp(h, s->p.api_key, kl) == 0;
}

static void simple_log(server *s, http_request *req, int status) {
    log_info li = {.request_id = http_req_id(req), .method = http_req_method(req),
                   .path = http_req_path(req), .peer = http_req_peer(req), .status = status,
                   .total_ms = http_now_ms() - http_req_start_ms(req)};
    srv_log_request(s, &li);
}

int srv_endpoint_kind(const char *path) {
    for (int k = 0; k < OAI_KIND_COUNT; k++)
        if (!strcmp(path, srv_endpoint_path[k])) return k;
    /* llama-server's aliases for rerank */
    if (!strcmp(path, "/rerank") || !strcmp(path, "/reranking") || !strcmp(path, "/v1/reranking"))
        return OAI_RERANK;
    return -1;
}

/* The router's hook (router.h): a stored conversation for prefix affinity. */
static char *route_conversation(void *ud, const char *id, size_t *len) {
    return srv_response_conversation(ud, id, len);
}

static void dispatch(server *s, oai_kind kind, http_request *req, const char *body, size_t len,
                     http_response *resp) {
    if (kind == OAI_COMPLETION || kind == OAI_CHAT || kind == OAI_RESPONSES) srv_handle_generate(s, kind, req, body, len, resp);
    else srv_handle_encode(s, kind, req, body, len, resp);
}

static void on_request(void *ud, http_request *req, http_response *resp) {
    server *s = ud;
    const char *m = http_req_method(req), *path = http_req_path(req);
    bool get = !strcmp(m, "GET"), post = !strcmp(m, "POST");
    oai_error e;
    if (!strcmp(path, "/health")) {
        if (!get) goto bad_method;
        handle_health(s, resp);
        return; /* health checks are not logged: they would drown the log */
    }
    if (s->rt && !strcmp(path, "/v1/cluster/join")) {
        /* nodes authenticate with the join token, not the clients' API key */
        if (!post) goto bad_method;
        router_join(s->rt, req, resp);
        simple_log(s, req, resp->status);
        return;
    }
    if (!authorized(s, req)) {
        oai_errorf(&e, 401, "invalid_request_error", NULL, "missing or wrong API key (Authorization: Bearer KEY)");
        e.code = "invalid_api_key";
        srv_respond_error(resp, &e);
        http_resp_header(resp, "WWW-Authenticate", "Bearer");
        simple_log(s, req, 401);
        return;
    }
    int kind = srv_endpoint_kind(path);
    if (kind >= 0) {
        if (!post) goto bad_method;
        if (atomic_load(&s->draining)) {
            oai_errorf(&e, 503, "server_error", NULL, "the server is draining; retry on another node");
            srv_respond_error(resp, &e);
            http_resp_header(resp, "Retry-After", "1");
            simple_log(s, req, 503);
            return;
        }
        if (s->rt) {
            router_handle(s->rt, kind, req, resp); /* logs through route_log below */
            return;
        }
        size_t len;
        const char *body = http_req_body(req, &len);
        dispatch(s, (oai_kind)kind, req, body, len, resp);
        return;
    }
    if (!strcmp(path, "/v1/models")) {
        if (!get) goto bad_method;
        if (s->rt) router_models(s->rt, resp);
        else handle_models(s, resp);
    } else if (s->rt && !strcmp(path, "/v1/cluster")) {
        if (!get) goto bad_method;
        router_cluster(s->rt, resp);
    } else if (!strcmp(path, "/metrics")) {
        if (!get) goto bad_method;
        handle_metrics(s, resp);
    } else if (!strcmp(path, "/slots")) {
        if (!get) goto bad_method;
        handle_slots(s, resp);
    } else if (!strcmp(path, "/v1/cache")) {
        srv_handle_cache(s, req, resp);
    } else if (!strncmp(path, "/v1/responses/", 14) && path[14] && !strchr(path + 14, '/')) {
        srv_handle_response_id(s, req, path + 14, resp);
    } else {
        oai_errorf(&e, 404, "invalid_request_error", NULL, "no route for %s %s", m, path);
        srv_respond_error(resp, &e);
    }
    simple_log(s, req, resp->status);
    return;
bad_method:
    oai_errorf(&e, 405, "invalid_request_error", NULL, "%s is not allowed on %s", m, path);
    srv_respond_error(resp, &e);
    simple_log(s, req, 405);
}

/* ============================================================ lifetime ===== */

static void model_free_one(srv_model *sm) {
    sched_free(sm->sc);
    esched_free(sm->es);
    tok_vocab_free(sm->v);
    model_free(sm->m);
    encoder_free(sm->em);
    free(sm->name);
}

/* An encoder file: its model, tokenizer and scheduler. */
static int load_encoder(server *s, srv_model *sm, const server_model *sd, gguf_ctx *g, sh_err *err) {
    encoder_params ep = {.no_repack = s->p.no_repack};
    if (!(sm->em = encoder_from_gguf(g, &ep, err))) return -1;
    if (!(sm->v = tok_vocab_from_gguf(g, err))) return -1;
    hash_sha256_hex(g->base, (size_t)g->size, sm->sha);
    int pooling = -1;
    if (sd->pooling && (pooling = encoder_pooling_from_name(sd->pooling)) < 0)
        return sh_errf(err, "model '%s': pooling '%s' is not one of none, mean, cls, last, rank",
                       sm->name, sd->pooling);
    if (tok_n_tokens(sm->v) > sm->em->hp.n_vocab)
        return sh_errf(err, "%s: the tokenizer has %d tokens but the model only %d", sd->path,
                       tok_n_tokens(sm->v), sm->em->hp.n_vocab);
    esched_params ep2 = {.n_threads = s->p.n_threads, .pooling = pooling,
                         .max_queue = s->p.max_queue, .name = sm->name, .metrics = s->met};
    if (!(sm->es = esched_init(sm->em, &ep2, err))) {
        sh_err_prefix(err, sd->path);
        return -1;
    }
    return 0;
}

static void local_generate(void *ud, int local, int kind, http_request *req, const char *body, size_t len,
                           http_response *resp) {
    (void)local; /* the body names the local model */
    dispatch(ud, (oai_kind)kind, req, body, len, resp);
}

/* The router's one line per routed request (router.h: router_log). */
static void route_log(void *ud, const router_log *rl) {
    log_info li = {.request_id = rl->request_id,
                   .method = "POST",
                   .traceparent = srv_traceparent_ok(rl->traceparent) ? rl->traceparent : NULL,
                   .path = rl->path,
                   .peer = rl->peer,
                   .status = rl->status,
                   .error = rl->error,
                   .total_ms = rl->total_ms,
                   .route = rl};
    srv_log_request(ud, &li);
}

server *server_init(const server_params *p, const server_model *models, int n_models, sh_err *err) {
    const cluster_config *cc = p->cluster;
    server_model cm[256];
    if (cc) {
        /* cluster mode: the config's local models, then the router over them and the nodes */
        if (n_models) return sh_errf(err, "give models either with -m or in the cluster config, not both"), NULL;
        for (int i = 0; i < cc->n_locals && i < 256; i++)
            cm[i] = (server_model){.name = cc->locals[i].name, .path = cc->locals[i].path, .pooling = cc->locals[i].pooling};
        models = cm;
        n_models = cc->n_locals < 256 ? cc->n_locals : 256;
    }
    if (n_models < 1 && !cc) {
        sh_errf(err, "no model given (-m MODEL.gguf)");
        return NULL;
    }
    server *s = calloc(1, sizeof *s);
    if (!s) return sh_errf(err, "out of memory"), NULL;
    s->p = *p;
    s->log = p->log ? p->log : stderr;
    pthread_mutex_init(&s->log_mu, NULL);
    pthread_mutex_init(&s->flight_mu, NULL);
    pthread_mutex_init(&s->gram_mu, NULL);
    s->met = metrics_init();
    s->models = calloc((size_t)(n_models ? n_models : 1), sizeof *s->models);
    if (!s->met || !s->models) {
        sh_errf(err, "out of memory");
        goto fail;
    }
    metrics_gauge_fn_add(s->met, "shoal_resident_memory_bytes", "Resident set size of the process.", metrics_process_rss, NULL);
    for (int i = 0; i < n_models; i++) {
        for (int k = 0; k < i; k++)
            if (!strcmp(models[k].name, models[i].name)) {
                sh_errf(err, "model name '%s' is given twice", models[i].name);
                goto fail;
            }
        srv_model *sm = &s->models[i];
        s->n_models = i + 1;
        sm->name = strdup(models[i].name);
        sm->matryoshka = models[i].matryoshka;
        gguf_ctx *g = gguf_open(models[i].path, err);
        if (!g) goto fail;
        if (encoder_is_encoder_file(g)) {
            if (load_encoder(s, sm, &models[i], g, err)) {
                if (!sm->em) gguf_free(g);
                goto fail;
            }
            continue;
        }
        if (models[i].pooling) {
            gguf_free(g);
            sh_errf(err, "model '%s': --pooling applies to encoders; %s is a decoder (its "
                         "embeddings are the mean of its final hidden states)", sm->name, models[i].path);
            goto fail;
        }
        model_params mp = {.no_repack = p->no_repack};
        if (!(sm->m = model_from_gguf_ex(g, &mp, err))) {
            gguf_free(g);
            goto fail;
        }
        if (!(sm->v = tok_vocab_from_gguf(sm->m->g, err))) goto fail;
        hash_sha256_hex(sm->m->g->base, (size_t)sm->m->g->size, sm->sha);
        sm->chat_template = p->chat_template;
        if (p->chat_template && tok_chat_detect(p->chat_template) == TOK_CHAT_UNKNOWN) {
            sh_errf(err, "--chat-template '%s' is not a known template family", p->chat_template);
            goto fail;
        }
        if (!p->chat_template && tok_chat_detect(tok_chat_template(sm->v)) == TOK_CHAT_UNKNOWN)
            fprintf(stderr, "shoal: warning: model '%s': %s chat template; chat requests use ChatML "
                            "(--chat-template NAME to choose)\n", sm->name,
                    tok_chat_template(sm->v) ? "unrecognised" : "no");
        sched_params sp = {.n_slots = p->n_slots, .n_ctx = p->n_ctx, .n_threads = p->n_threads,
                           .max_queue = p->max_queue, .chunk = p->chunk, .kv_f32 = p->kv_f32,
                           .name = sm->name, .metrics = s->met};
        if (!(sm->sc = sched_init(sm->m, sm->v, &sp, err))) {
            sh_err_prefix(err, models[i].path);
            goto fail;
        }
    }
    if (p->cache) {
        cache_params cp = *p->cache;
        cp.met = s->met;
        if (!(s->cache = cache_init(&cp, err)) || srv_cache_policies(s, err)) goto fail;
    }
    if (p->responses) {
        cache_params rp = *p->responses;
        rp.met = NULL; /* the response cache's series are about the cache */
        if (!rp.redis_prefix) rp.redis_prefix = "shoal:r:";
        if (!(s->resp_store = cache_init(&rp, err))) {
            sh_err_prefix(err, "the responses store");
            goto fail;
        }
    }
    if (p->semantic_model) {
        if (!s->cache) {
            sh_errf(err, "the semantic cache needs the cache on (--cache)");
            goto fail;
        }
        for (int i = 0; i < s->n_models; i++)
            if (!strcmp(s->models[i].name, p->semantic_model)) s->sem_enc = &s->models[i];
        if (!s->sem_enc || !s->sem_enc->em) {
            sh_errf(err, "--semantic-cache '%s': %s", p->semantic_model,
                    s->sem_enc ? "is a decoder; it needs an encoder model of this node (-m NAME=ENCODER.gguf)"
                               : "no model of this node has that name");
            goto fail;
        }
        encoder_pooling pool = esched_pooling(s->sem_enc->es);
        if (pool == ENCODER_POOL_NONE || pool == ENCODER_POOL_RANK) {
            sh_errf(err, "--semantic-cache '%s': its pooling gives no sentence embedding (use mean, cls or last)",
                    p->semantic_model);
            goto fail;
        }
        if (!(s->sem = csem_init(s->sem_enc->em->hp.dim, p->semantic_max, p->cache->ttl_s, s->met))) {
            sh_errf(err, "out of memory for the semantic cache");
            goto fail;
        }
    }
    if (cc) {
        router_local_ops ops = {.generate = local_generate, .log = route_log,
                                .conversation = route_conversation, .ud = s};
        if (!(s->rt = router_init(cc, &ops, s->met, err))) goto fail;
    }
    http_config hc = {.host = p->host, .port = p->port, .max_body = p->max_body};
    if (!(s->http = http_server_start(&hc, on_request, s, err))) goto fail;
    atomic_store(&s->ready, true);
    return s;
fail:
    server_free(s);
    return NULL;
}

uint16_t server_port(const server *s) { return http_server_port(s->http); }

int server_drain(server *s, double timeout_s) {
    atomic_store(&s->draining, true);
    double end = http_now_ms() + timeout_s * 1e3;
    int busy;
    for (;;) {
        busy = 0;
        for (int i = 0; i < s->n_models; i++) {
            if (s->models[i].es) {
                esched_stats es;
                esched_get_stats(s->models[i].es, &es);
                busy += es.queued;
                continue;
            }
            sched_stats st;
            sched_get_stats(s->models[i].sc, &st);
            busy += st.busy_slots + st.queued;
        }
        unsigned active = http_server_active(s->http);
        if ((busy == 0 && active == 0) || http_now_ms() > end) break;
        usleep(10000);
    }
    return busy;
}

void server_free(server *s) {
    if (!s) return;
    if (s->http) http_server_quiesce(s->http);
    for (int i = 0; i < s->n_models; i++) {
        sched_free(s->models[i].sc), s->models[i].sc = NULL;
        esched_free(s->models[i].es), s->models[i].es = NULL;
    }
    http_server_stop(s->http);
    router_free(s->rt);
    cache_free(s->cache);
    cache_free(s->resp_store);
    srv_gram_cache_free(s);
    csem_free(s->sem);
    for (int i = 0; i < s->n_models; i++) model_free_one(&s->models[i]);
    free(s->models);
    metrics_free(s->met);
    pthread_mutex_destroy(&s->log_mu);
    pthread_mutex_destroy(&s->flight_mu);
    free(s);
}

