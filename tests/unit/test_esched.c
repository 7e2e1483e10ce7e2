/*
 * test_esched — the encoder scheduler: concurrent requests batched into shared passes give the
 * results of each input run alone; requests longer than one pass continue; every accepted
 * request gets exactly one DONE; queue limits, deadlines and bad input are refused at submit.
 */
#include "testutil.h"

#include <pthread.h>

#include "engine/encode.h"
#include "model/encoder.h"
#include "model/modelgen.h"
#include "serve/esched.h"

#define VOCAB TU_DATA("vocab/ggml-vocab-bert-bge.gguf")
#define DIM 64

static encoder_model *enc_model(void) {
    static encoder_model *m;
    if (m) return m;
    modelgen_params p;
    modelgen_defaults(&p);
    p.arch = "bert";
    p.vocab = VOCAB;
    p.dim = DIM;
    p.layers = 2;
    p.heads = 4;
    p.ffn = 128;
    p.ctx = 64;
    p.seed = 3;
    p.cls_labels = "a,b,c";
    char path[512];
    snprintf(path, sizeof path, "%s/esched.gguf", tu_tmpdir());
    sh_err err = {{0}};
    assert_int_equal(modelgen_write(&p, path, NULL, &err), 0);
    m = encoder_load(path, NULL, &err);
    assert_non_null(m);
    return m;
}

/* Input i: deterministic tokens of length 2 + i % 13. */
static int make_input(int i, int32_t *tok) {
    int n = 2 + i % 13;
    tok[0] = 101;
    for (int k = 1; k < n - 1; k++) tok[k] = 1000 + (i * 31 + k * 7) % 20000;
    tok[n - 1] = 102;
    return n;
}

/* The pooled vector of input i computed alone. */
static void alone(int i, float *out) {
    static encode_ctx *e;
    sh_err err = {{0}};
    if (!e) {
        encode_params ep;
        encode_params_default(&ep);
        ep.n_threads = 1;
        e = encode_init(enc_model(), &ep, &err);
    }
    int32_t tok[16];
    int n = make_input(i, tok);
    encode_batch b = {.n_seq = 1, .tokens = tok, .n_tokens = &n, .want = ENCODE_POOLED};
    assert_int_equal(encode_run(e, &b, &err), 0);
    memcpy(out, encode_pooled(e, 0), DIM * sizeof(float));
}

typedef struct collect {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n_results, n_done, next_index;
    bool in_order;
    sched_finish finish;
    float vecs[64][DIM];
    int tokens;
} collect;

static void emit(void *ctx, const esched_event *ev) {
    collect *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (ev->kind == ESCHED_EV_RESULT) {
        if (ev->index != c->next_index++) c->in_order = false;
        if (ev->index < 64 && ev->pooled) memcpy(c->vecs[ev->index], ev->pooled, DIM * sizeof(float));
        c->n_results++;
    } else {
        c->n_done++;
        c->finish = ev->finish;
        c->tokens = ev->prompt_tokens;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

static void wait_done(collect *c) {
    pthread_mutex_lock(&c->mu);
    while (!c->n_done) pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

typedef struct client {
    esched *s;
    int first, n;  /* inputs first .. first + n - 1 */
    collect c;
    int rc;
} client;

static void *client_main(void *arg) {
    client *cl = arg;
    int32_t tok[64 * 16];
    int lens[64], nt = 0;
    for (int k = 0; k < cl->n; k++) {
        lens[k] = make_input(cl->first + k, tok + nt);
        nt += lens[k];
    }
    pthread_mutex_init(&cl->c.mu, NULL);
    pthread_cond_init(&cl->c.cv, NULL);
    cl->c.in_order = true;
    esched_req_params rp = {.n_seq = cl->n, .tokens = tok, .n_tokens = lens, .want = ENCODE_POOLED,
                            .emit = emit, .ctx = &cl->c};
    esched_req *r = NULL;
    sh_err err = {{0}};
    cl->rc = esched_submit(cl->s, &rp, &r, &err);
    if (cl->rc == SUBMIT_OK) wait_done(&cl->c);
    esched_req_release(r);
    return NULL;
}

static void test_concurrent_equals_alone(void **state) {
    (void)state;
    sh_err err = {{0}};
    esched_params sp = {.n_tokens = 96, .n_seqs = 8, .n_threads = 2, .pooling = -1};
    esched *s = esched_init(enc_model(), &sp, &err);
    assert_non_null(s);
    enum { N = 8 };
    client cl[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        cl[i] = (client){.s = s, .first = i * 20, .n = 1 + (i * 5) % 20};
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        assert_int_equal(cl[i].rc, SUBMIT_OK);
        assert_int_equal(cl[i].c.n_done, 1);
        assert_int_equal(cl[i].c.finish, SCHED_FINISH_STOP);
        assert_int_equal(cl[i].c.n_results, cl[i].n); /* more inputs than a pass holds: continued */
        assert_true(cl[i].c.in_order);
        for (int k = 0; k < cl[i].n; k++) {
            float want[DIM];
            alone(cl[i].first + k, want);
            assert_memory_equal(cl[i].c.vecs[k], want, sizeof want);
        }
    }
    esched_free(s);
}

static void test_refusals(void **state) {
    (void)state;
    sh_err err = {{0}};
    esched_params sp = {.n_threads = 1, .pooling = -1, .max_queued_tokens = 40};
    esched *s = esched_init(enc_model(), &sp, &err);
    assert_non_null(s);
    int32_t tok[128];
    int lens[4];
    collect c = {.in_order = true};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    esched_req *r = NULL;
    for (int k = 0; k < 128; k++) tok[k] = 1000 + k;
    lens[0] = 65; /* the context is 64 */
    esched_req_params rp = {.n_seq = 1, .tokens = tok, .n_tokens = lens, .want = ENCODE_POOLED,
                            .emit = emit, .ctx = &c};
    assert_int_equal(esched_submit(s, &rp, &r, &err), SUBMIT_TOO_LONG);
    assert_non_null(strstr(err.msg, "65 tokens"));
    lens[0] = lens[1] = lens[2] = 20; /* 60 queued tokens > 40 */
    rp.n_seq = 3;
    assert_int_equal(esched_submit(s, &rp, &r, &err), SUBMIT_QUEUE_FULL);
    rp.n_seq = 1;
    rp.deadline_ms = 1e-6; /* cannot be met at any measured speed */
    assert_int_equal(esched_submit(s, &rp, &r, &err), SUBMIT_DEADLINE);
    assert_non_null(strstr(err.msg, "deadline_ms"));
    rp.deadline_ms = 0;
    rp.want = ENCODE_TOK_HEAD;
    assert_int_equal(esched_submit(s, &rp, &r, &err), SUBMIT_INVALID);
    rp.want = ENCODE_POOLED;
    tok[3] = 1 << 30;
    assert_int_equal(esched_submit(s, &rp, &r, &err), SUBMIT_INVALID);
    tok[3] = 7;
    assert_null(r);
    assert_int_equal(c.n_done, 0); /* nothing refused is ever emitted */
    /* accepted and cancelled: exactly one DONE, cancelled or (if it ran first) complete */
    assert_int_equal(esched_submit(s, &rp, &r, &err), SUBMIT_OK);
    esched_cancel(r);
    wait_done(&c);
    assert_int_equal(c.n_done, 1);
    assert_true(c.finish == SCHED_FINISH_CANCELLED || c.finish == SCHED_FINISH_STOP);
    esched_req_release(r);
    esched_free(s);
}

/* Requests still queued when the scheduler stops end as cancelled, each once. */
static void test_shutdown(void **state) {
    (void)state;
    sh_err err = {{0}};
    esched_params sp = {.n_tokens = 64, .n_seqs = 1, .n_threads = 1, .pooling = -1};
    esched *s = esched_init(enc_model(), &sp, &err);
    enum { N = 6 };
    collect c[N];
    esched_req *r[N];
    int32_t tok[64 * 40];
    int lens[40];
    int nt = 0;
    for (int k = 0; k < 40; k++) lens[k] = make_input(k, tok + nt), nt += lens[k];
    for (int i = 0; i < N; i++) {
        memset(&c[i], 0, sizeof c[i]);
        pthread_mutex_init(&c[i].mu, NULL);
        pthread_cond_init(&c[i].cv, NULL);
        esched_req_params rp = {.n_seq = 40, .tokens = tok, .n_tokens = lens, .want = ENCODE_POOLED,
                                .emit = emit, .ctx = &c[i]};
        assert_int_equal(esched_submit(s, &rp, &r[i], &err), SUBMIT_OK);
    }
    esched_free(s);
    for (int i = 0; i < N; i++) {
        assert_int_equal(c[i].n_done, 1);
        if (c[i].finish == SCHED_FINISH_STOP) assert_int_equal(c[i].n_results, 40);
        else assert_int_equal(c[i].finish, SCHED_FINISH_CANCELLED);
        esched_req_release(r[i]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_equals_alone),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_shutdown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    encoder_free(enc_model());
    return rc;
}
