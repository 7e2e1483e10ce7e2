/*
 * Unit tests: serve/sched on a small generated model — greedy output equals a plain engine
 * loop; results do not depend on concurrency or prefill chunk size; prefix reuse; stop strings;
 * cancellation; the queue bound; priority order; deadline refusal; embeddings equal a direct
 * computation from the engine's hidden states.
 */
#include "testutil.h"

#include <math.h>
#include <stdatomic.h>
#include <pthread.h>
#include <time.h>

#include "model/modelgen.h"
#include "serve/sched.h"

static model *g_model;
static tok_vocab *g_vocab;

/* ============================================================ collecting events ===== */

typedef struct result {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t tokens[512];
    int n_tokens;
    char text[4096];
    size_t text_len;
    bool done;
    sched_event fin;
    float emb[256];
    int order; /* completion order among a test's requests */
} result;

static _Atomic int g_order;

static void emit(void *ctx, const sched_event *ev) {
    result *r = ctx;
    pthread_mutex_lock(&r->mu);
    if (ev->kind == SCHED_EV_TOKEN) {
        if (ev->token >= 0 && r->n_tokens < 512) r->tokens[r->n_tokens++] = ev->token;
        if (r->text_len + ev->text_len < sizeof r->text) {
            memcpy(r->text + r->text_len, ev->text, ev->text_len);
            r->text_len += ev->text_len;
        }
    } else {
        r->fin = *ev;
        if (ev->embedding) memcpy(r->emb, ev->embedding, (size_t)ev->n_embd * sizeof(float));
        r->order = atomic_fetch_add(&g_order, 1);
        r->done = true;
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
}

static void result_init(result *r) {
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
}

static void wait_done(result *r) {
    pthread_mutex_lock(&r->mu);
    while (!r->done) pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

static sched_req_params greedy(const int32_t *prompt, int n, int max_tokens, result *r) {
    sched_req_params p = {.prompt = prompt, .n_prompt = n, .max_tokens = max_tokens, .emit = emit, .ctx = r};
    sampler_params_default(&p.sp);
    p.sp.temp = 0;
    return p;
}

static sched *new_sched(int slots, int chunk, int max_queue) {
    sched_params sp = {.n_slots = slots, .n_ctx = 256, .n_threads = 2, .chunk = chunk, .max_queue = max_queue};
    sh_err err;
    sched *s = sched_init(g_model, g_vocab, &sp, &err);
    if (!s) fail_msg("%s", err.msg);
    return s;
}

/* A prompt of n ids made from a seed (valid ids, no end-of-generation tokens). */
static void make_prompt(int32_t *p, int n, int seed) {
    p[0] = 1;
    for (int i = 1; i < n; i++) p[i] = 100 + (seed * 7919 + i * 104729) % 30000;
}

static int run_one(sched *s, const int32_t *prompt, int n, int max_tokens, result *r) {
    result_init(r);
    sched_req_params p = greedy(prompt, n, max_tokens, r);
    sched_req *q;
    sh_err err;
    int rc = sched_submit(s, &p, &q, &err);
    if (rc != SUBMIT_OK) return rc;
    wait_done(r);
    sched_req_release(q);
    return 0;
}

/* ============================================================ tests ===== */

static void test_greedy_equals_engine_loop(void **state) {
    (void)state;
    int32_t prompt[20];
    make_prompt(prompt, 20, 1);
    /* reference: one engine, one sequence, prefill then argmax decode */
    engine_params ep;
    engine_params_default(&ep);
    ep.n_ctx = 256;
    ep.n_threads = 2;
    sh_err err;
    engine *e = engine_init(g_model, &ep, &err);
    assert_non_null(e);
    int32_t pos[20], ref[24];
    for (int i = 0; i < 20; i++) pos[i] = i;
    engine_batch b = {.n = 20, .token = prompt, .pos = pos};
    assert_int_equal(engine_decode(e, &b, &err), 0);
    int n_vocab = g_model->hp.n_vocab;
    for (int t = 0; t < 24; t++) {
        ref[t] = sampler_argmax(engine_logits(e, b.n - 1), n_vocab);
        int32_t p1 = 20 + t;
        b = (engine_batch){.n = 1, .token = &ref[t], .pos = &p1};
        assert_int_equal(engine_decode(e, &b, &err), 0);
    }
    engine_free(e);

    sched *s = new_sched(2, 128, 8);
    result r;
    assert_int_equal(run_one(s, prompt, 20, 24, &r), 0);
    assert_int_equal(r.fin.finish, SCHED_FINISH_LENGTH);
    assert_int_equal(r.n_tokens, 24);
    assert_memory_equal(r.tokens, ref, sizeof ref);
    assert_int_equal(r.fin.prompt_tokens, 20);
    assert_int_equal(r.fin.completion_tokens, 24);
    sched_free(s);
}

/* Six requests at once on four slots, a prefill chunk of 8, against each alone on a scheduler
 * with a 128 chunk: the same tokens. */
static void test_invariant_to_load_and_chunks(void **state) {
    (void)state;
    enum { N = 6 };
    int32_t prompts[N][40];
    result alone[N], together[N];
    sched *s1 = new_sched(1, 128, 8);
    for (int i = 0; i < N; i++) {
        make_prompt(prompts[i], 20 + 3 * i, i + 10);
        assert_int_equal(run_one(s1, prompts[i], 20 + 3 * i, 16, &alone[i]), 0);
    }
    sched_free(s1);
    sched *s2 = new_sched(4, 8, 8);
    sched_req *q[N];
    for (int i = 0; i < N; i++) {
        result_init(&together[i]);
        sched_req_params p = greedy(prompts[i], 20 + 3 * i, 16, &together[i]);
        sh_err err;
        assert_int_equal(sched_submit(s2, &p, &q[i], &err), SUBMIT_OK);
    }
    for (int i = 0; i < N; i++) {
        wait_done(&together[i]);
        assert_int_equal(together[i].n_tokens, alone[i].n_tokens);
        assert_memory_equal(together[i].tokens, alone[i].tokens, (size_t)alone[i].n_tokens * 4);
        sched_req_release(q[i]);
    }
    sched_free(s2);
}

static void test_prefix_reuse(void **state) {
    (void)state;
    int32_t prompt[30];
    make_prompt(prompt, 30, 3);
    sched *s = new_sched(2, 128, 8);
    result a, b;
    assert_int_equal(run_one(s, prompt, 30, 8, &a), 0);
    assert_int_equal(a.fin.cached_tokens, 0);
    assert_int_equal(run_one(s, prompt, 30, 8, &b), 0);
    assert_int_equal(b.fin.cached_tokens, 29); /* the last prompt token is recomputed */
    assert_memory_equal(a.tokens, b.tokens, 8 * 4);
    /* a longer prompt that starts with the first one's prompt and answer reuses both */
    int32_t longer[40];
    memcpy(longer, prompt, sizeof prompt);
    memcpy(longer + 30, a.tokens, 7 * 4);
    result c;
    assert_int_equal(run_one(s, longer, 37, 4, &c), 0);
    assert_int_equal(c.fin.cached_tokens, 36);
    assert_memory_equal(c.tokens, a.tokens + 7, 4); /* the continuation of the same greedy path */
    sched_free(s);
}

static void test_stop_string(void **state) {
    (void)state;
    int32_t prompt[12];
    make_prompt(prompt, 12, 4);
    sched *s = new_sched(1, 128, 8);
    result a;
    assert_int_equal(run_one(s, prompt, 12, 24, &a), 0);
    assert_true(a.text_len > 10);
    char stop[4];
    memcpy(stop, a.text + a.text_len / 2, 3);
    stop[3] = 0;
    const char *stops[1] = {stop};
    result b;
    result_init(&b);
    sched_req_params p = greedy(prompt, 12, 24, &b);
    p.stop = stops;
    p.n_stop = 1;
    sched_req *q;
    sh_err err;
    assert_int_equal(sched_submit(s, &p, &q, &err), SUBMIT_OK);
    wait_done(&b);
    sched_req_release(q);
    size_t cut = (size_t)(strstr(a.text, stop) - a.text);
    assert_int_equal(b.fin.finish, SCHED_FINISH_STOP);
    assert_int_equal(b.text_len, cut);
    assert_memory_equal(b.text, a.text, cut);
    sched_free(s);
}

static void test_cancel_queue_priority_deadline(void **state) {
    (void)state;
    int32_t prompt[10];
    make_prompt(prompt, 10, 5);
    sched *s = new_sched(1, 128, 2);
    result run, low, high, over;
    result_init(&run);
    result_init(&low);
    result_init(&high);
    sched_req_params p = greedy(prompt, 10, 200, &run);
    sched_req *qr, *ql, *qh, *qo;
    sh_err err;
    assert_int_equal(sched_submit(s, &p, &qr, &err), SUBMIT_OK);
    while (!__atomic_load_n(&run.n_tokens, __ATOMIC_ACQUIRE)) usleep(1000); /* it holds the slot */
    p = greedy(prompt, 10, 3, &low);
    assert_int_equal(sched_submit(s, &p, &ql, &err), SUBMIT_OK);
    p = greedy(prompt, 10, 3, &high);
    p.priority = 10;
    assert_int_equal(sched_submit(s, &p, &qh, &err), SUBMIT_OK);
    result_init(&over);
    p = greedy(prompt, 10, 3, &over);
    assert_int_equal(sched_submit(s, &p, &qo, &err), SUBMIT_QUEUE_FULL); /* two already wait */
    assert_non_null(strstr(err.msg, "queue is full"));
    assert_null(qo);
    sched_stats st;
    sched_get_stats(s, &st);
    assert_int_equal(st.busy_slots, 1);
    assert_int_equal(st.queued, 2);
    sched_cancel(qr);
    wait_done(&run);
    assert_int_equal(run.fin.finish, SCHED_FINISH_CANCELLED);
    assert_true(run.n_tokens < 200);
    wait_done(&low);
    wait_done(&high);
    assert_true(high.order < low.order); /* priority 10 went first */
    sched_req_release(qr);
    sched_req_release(ql);
    sched_req_release(qh);

    /* a deadline that no estimate can meet is refused at once */
    p = greedy(prompt, 10, 150, &over);
    p.deadline_ms = 0.01;
    assert_int_equal(sched_submit(s, &p, &qo, &err), SUBMIT_DEADLINE);
    assert_non_null(strstr(err.msg, "cannot be met"));
    /* a prompt that does not fit the context */
    int32_t big[300];
    make_prompt(big, 300, 6);
    p = greedy(big, 300, 1, &over);
    assert_int_equal(sched_submit(s, &p, &qo, &err), SUBMIT_TOO_LONG);
    sched_free(s);
}

/* Embedding = unit-length mean over tokens of rmsnorm(hidden) * output_norm. */
static void test_embedding_matches_direct(void **state) {
    (void)state;
    int32_t prompt[17];
    make_prompt(prompt, 17, 7);
    engine_params ep;
    engine_params_default(&ep);
    ep.n_ctx = 64;
    ep.n_threads = 2;
    sh_err err;
    engine *e = engine_init(g_model, &ep, &err);
    int32_t pos[17];
    for (int i = 0; i < 17; i++) pos[i] = i;
    engine_batch b = {.n = 17, .token = prompt, .pos = pos, .all_hidden = true};
    assert_int_equal(engine_decode(e, &b, &err), 0);
    int dim = g_model->hp.dim;
    double ref[256] = {0}, norm = 0;
    for (int t = 0; t < 17; t++) {
        const float *h = engine_hidden(e, t);
        double ss = 0;
        for (int j = 0; j < dim; j++) ss += (double)h[j] * h[j];
        double sc = 1.0 / sqrt(ss / dim + g_model->hp.norm_eps);
        for (int j = 0; j < dim; j++) ref[j] += h[j] * sc * g_model->output_norm[j] / 17.0;
    }
    for (int j = 0; j < dim; j++) norm += ref[j] * ref[j];
    engine_free(e);
    sched *s = new_sched(2, 8, 8); /* chunked: the pooled sum spans three steps */
    result r;
    result_init(&r);
    sched_req_params p = greedy(prompt, 17, 0, &r);
    p.embed = true;
    sched_req *q;
    assert_int_equal(sched_submit(s, &p, &q, &err), SUBMIT_OK);
    wait_done(&r);
    sched_req_release(q);
    assert_int_equal(r.fin.finish, SCHED_FINISH_STOP);
    assert_int_equal(r.fin.n_embd, dim);
    assert_int_equal(r.n_tokens, 0);
    double maxd = 0;
    for (int j = 0; j < dim; j++) maxd = fmax(maxd, fabs(r.emb[j] - ref[j] / sqrt(norm)));
    if (maxd > 1e-5) fail_msg("embedding differs from the direct computation by %g", maxd);
    sched_free(s);
}

/* ============================================================ fixture ===== */

static int setup(void **state) {
    (void)state;
    modelgen_params mp;
    modelgen_defaults(&mp);
    mp.vocab = TU_DATA("vocab/ggml-vocab-llama-spm.gguf");
    mp.dim = 64;
    mp.layers = 2;
    mp.heads = 4;
    mp.kv_heads = 2;
    mp.ffn = 128;
    mp.ctx = 512;
    mp.seed = 11;
    char path[512];
    snprintf(path, sizeof path, "%s/sched.gguf", tu_tmpdir());
    sh_err err;
    if (modelgen_write(&mp, path, NULL, &err)) fail_msg("%s", err.msg);
    g_model = model_load(path, &err);
    if (!g_model) fail_msg("%s", err.msg);
    g_vocab = tok_vocab_from_gguf(g_model->g, &err);
    if (!g_vocab) fail_msg("%s", err.msg);
    unlink(path);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tok_vocab_free(g_vocab);
    model_free(g_model);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_equals_engine_loop),
        cmocka_unit_test(test_invariant_to_load_and_chunks),
        cmocka_unit_test(test_prefix_reuse),
        cmocka_unit_test(test_stop_string),
        cmocka_unit_test(test_cancel_queue_priority_deadline),
        cmocka_unit_test(test_embedding_matches_direct),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
