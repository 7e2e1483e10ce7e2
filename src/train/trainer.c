/*
 * train/trainer — see trainer.h.
 */
#include "train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "train/bpe.h"
#include "train/gemm.h"
#include "train/enc.h"
#include "train/lm.h"
#include "train/params.h"
#include "train/tdata.h"
#include "train/tsave.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void train_opts_default(train_opts *o, bool lm) {
    memset(o, 0, sizeof *o);
    o->dim = 256;
    o->layers = 4;
    o->heads = 4;
    o->kv_heads = 0;
    o->ffn = lm ? 768 : 1024;
    o->ctx = lm ? 128 : 64;
    o->rope_base = 10000.0f;
    o->w_intent = 1.0f;
    o->w_tags = 1.0f;
    o->w_nce = 0.2f;
    o->tau = 0.05f;
    o->nce_pairs = lm ? 0 : 8;
    o->mask_prob = lm ? 0.0f : 0.1f;
    o->dropout = lm ? 0.0f : 0.1f;
    o->epochs = 3;
    o->batch = lm ? 32 : 64;
    o->lr = lm ? 2e-3f : 1e-3f;
    o->warmup_frac = 0.05f;
    o->wd = 0.01f;
    o->clip = 1.0f;
    o->min_lr_ratio = 0.05f;
    o->seed = 1;
    o->eval_every = 200;
    o->patience = 5;
}

/* ============================================================ the data stream ===== */

/* Which example is at position k of the stream: epochs one after another, each a permutation
 * of 0..n-1 drawn from (seed, epoch). */
typedef struct stream {
    int n;
    uint64_t seed;
    int64_t epoch;              /* of perm */
    int *perm;
} stream;

static int stream_at(stream *s, int64_t k) {
    const int64_t e = k / s->n;
    if (e != s->epoch) {
        for (int i = 0; i < s->n; i++) s->perm[i] = i;
        char nm[32];
        snprintf(nm, sizeof nm, "epoch %lld", (long long)e);
        trng r = trng_seed(s->seed, nm);
        for (int i = s->n - 1; i > 0; i--) {
            int j = (int)(trng_next(&r) % (uint64_t)(i + 1)), t = s->perm[i];
            s->perm[i] = s->perm[j];
            s->perm[j] = t;
        }
        s->epoch = e;
    }
    return s->perm[k % s->n];
}

/* ============================================================ the loop ===== */

typedef struct job {
    const train_opts *o;
    pool *pool;
    tparams *P;
    adamw_cfg adam;
    int64_t start, total;
    double best;
    int64_t best_step;
    int bad_evals;
    float *best_w;              /* snapshot of the best weights */
    /* the model-specific parts */
    int (*step)(struct job *j, int64_t s, double *loss, int64_t *tokens, sh_err *err);
    int (*eval)(struct job *j, train_progress *p, sh_err *err);
    int (*save)(struct job *j, const char *path, bool checkpoint, sh_err *err);
    void *m;
} job;

static int run_loop(job *j, train_result *res, sh_err *err) {
    const train_opts *o = j->o;
    const double t0 = now_s();
    double tok_rate = 0, tok_acc = 0, time_acc = 0, flop_rate = 0;
    uint64_t flops0 = 0;
    int64_t s = j->start;
    train_progress pr = {.total = j->total};
    bool have_dev = o->dev != NULL;
    if (!j->best_w) {
        j->best_w = malloc(j->P->total * sizeof(float));
        if (!j->best_w) return sh_errf(err, "out of memory");
        memcpy(j->best_w, j->P->w, j->P->total * sizeof(float));
    }
    for (; s < j->total; s++) {
        if (o->stop && *o->stop) break;
        if (o->stop_after > 0 && s >= o->stop_after) break; /* as if interrupted here */
        const double ts = now_s();
        const uint64_t fs = gemm_flops();
        double loss;
        int64_t tokens;
        tparams_zero_grad(j->P);
        if (j->step(j, s, &loss, &tokens, err)) return -1;
        if (!isfinite(loss)) return sh_errf(err, "step %lld: the loss is not finite (%g): lower --lr?", (long long)s, loss);
        const double norm = adamw_step(j->pool, j->P, &j->adam, s);
        const double dt = now_s() - ts;
        tok_acc += (double)tokens, time_acc += dt;
        flops0 += gemm_flops() - fs;
        if (time_acc > 0.5 || s == j->start) {
            tok_rate = tok_acc / time_acc;
            flop_rate = (double)flops0 / time_acc * 1e-9;
            tok_acc = time_acc = 0;
            flops0 = 0;
        }
        pr.step = s + 1;
        pr.loss = loss;
        pr.lr = adamw_lr(&j->adam, s);
        pr.grad_norm = norm;
        pr.tok_s = tok_rate;
        pr.gflop_s = flop_rate;
        pr.elapsed_s = now_s() - t0;
        pr.eta_s = (double)(j->total - s - 1) * (pr.elapsed_s / (double)(s + 1 - j->start));
        if (o->on_step) o->on_step(o->ud, &pr);
        const bool last = s + 1 == j->total;
        if (have_dev && ((o->eval_every > 0 && (s + 1) % o->eval_every == 0) || last)) {
            if (j->eval(j, &pr, err)) return -1;
            pr.improved = pr.dev_metric > j->best;
            if (pr.improved) {
                j->best = pr.dev_metric;
                j->best_step = s + 1;
                j->bad_evals = 0;
                memcpy(j->best_w, j->P->w, j->P->total * sizeof(float));
            } else {
                j->bad_evals++;
            }
            pr.stopping = o->patience > 0 && j->bad_evals >= o->patience && !last;
            if (o->on_eval) o->on_eval(o->ud, &pr);
            if (pr.stopping) {
                res->early_stopped = true;
                s++;
                break;
            }
        }
        if (o->ckpt_every > 0 && (s + 1) % o->ckpt_every == 0 && !last) {
            j->start = s + 1;
            if (j->save(j, o->checkpoint, true, err)) return -1;
        }
    }
    res->steps = s;
    res->seconds = now_s() - t0;
    res->tok_s = tok_rate;
    res->best_metric = j->best;
    res->best_step = j->best_step;
    res->n_params = j->P->total;
    if (s < j->total && !res->early_stopped) { /* interrupted: the state to resume from */
        j->start = s;
        res->interrupted = true;
        snprintf(res->checkpoint, sizeof res->checkpoint, "%s", o->checkpoint);
        return j->save(j, o->checkpoint, true, err);
    }
    /* the result: the best weights seen on dev (the last ones without dev data) */
    if (have_dev) memcpy(j->P->w, j->best_w, j->P->total * sizeof(float));
    return j->save(j, o->out, false, err);
}

/* The trainer's state keys of a checkpoint. */
static void put_state(gguf_writer *w, const job *j) {
    uint64_t bits;
    memcpy(&bits, &j->best, sizeof bits);
    gguf_writer_add_u64(w, "train.step", (uint64_t)j->start);
    gguf_writer_add_u64(w, "train.total", (uint64_t)j->total);
    gguf_writer_add_u64(w, "train.best_bits", bits);
    gguf_writer_add_u64(w, "train.best_step", (uint64_t)j->best_step);
    gguf_writer_add_u32(w, "train.bad_evals", (uint32_t)j->bad_evals);
    gguf_writer_add_u64(w, "train.seed", j->o->seed);
    for (int i = 0; i < j->P->n; i++) {
        const tparam *t = &j->P->t[i];
        char nm[160];
        snprintf(nm, sizeof nm, "train.b.%s", t->name);
        const uint64_t ne[2] = {(uint64_t)t->ne0, (uint64_t)t->ne1};
        gguf_writer_add_tensor(w, nm, 0 /* F32 */, t->ne1 > 1 ? 2 : 1, ne, j->best_w + t->off,
                               (uint64_t)(t->ne0 * t->ne1) * sizeof(float));
    }
}

/* Restores the trainer's position, moments and best weights from a checkpoint. */
static int get_state(job *j, const gguf_ctx *g, sh_err *err) {
    uint64_t step, total, bits, best_step, seed;
    uint32_t bad;
    if (!gguf_get_u64(g, "train.step", &step) || !gguf_get_u64(g, "train.total", &total) ||
        !gguf_get_u64(g, "train.best_bits", &bits) || !gguf_get_u64(g, "train.best_step", &best_step) ||
        !gguf_get_u32(g, "train.bad_evals", &bad) || !gguf_get_u64(g, "train.seed", &seed))
        return sh_errf(err, "%s: not a shoal training checkpoint (train.* keys missing)", g->path);
    if (seed != j->o->seed) return sh_errf(err, "%s: the checkpoint was made with --seed %llu", g->path, (unsigned long long)seed);
    if ((int64_t)total != j->total)
        return sh_errf(err, "%s: the checkpoint plans %llu steps, these options %lld", g->path,
                       (unsigned long long)total, (long long)j->total);
    int loaded = 0;
    if (tsave_load_params(j->P, g, true, &loaded, err)) return -1;
    j->best_w = malloc(j->P->total * sizeof(float));
    if (!j->best_w) return sh_errf(err, "out of memory");
    memcpy(j->best_w, j->P->w, j->P->total * sizeof(float));
    for (int i = 0; i < j->P->n; i++) {
        const tparam *t = &j->P->t[i];
        char nm[160];
        snprintf(nm, sizeof nm, "train.b.%s", t->name);
        const gguf_tensor *bt = gguf_find_tensor(g, nm);
        if (bt && bt->type == 0 && bt->n_elems == (uint64_t)(t->ne0 * t->ne1))
            memcpy(j->best_w + t->off, bt->data, (size_t)bt->n_elems * sizeof(float));
    }
    j->start = (int64_t)step;
    memcpy(&j->best, &bits, sizeof bits);
    j->best_step = (int64_t)best_step;
    j->bad_evals = (int)bad;
    return 0;
}

static int write_file(gguf_writer *w, const char *path, sh_err *err) {
    int rc = gguf_writer_error(w) ? sh_errf(err, "%s: %s", path, gguf_writer_error(w)) : gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    return rc;
}

/* ============================================================ the encoder job ===== */

typedef struct enc_job {
    job j;
    tenc *m;
    tset train, dev;
    tlabels intents, tags;
    gguf_ctx *vocab_g;          /* the tokenizer the model is saved with */
    uint8_t *vocab_mem;         /* a pruned vocabulary's file image */
    stream st;
    int **groups;               /* [n_groups] members (paraphrase pairs), -1 terminated */
    int *pair_groups;           /* groups with at least two members */
    int n_pair_groups;
    int32_t *b_ids, *b_tags, *b_intent;
    int *b_lens, *b_idx;
    int32_t mask_id;            /* the token training inputs are masked with ([MASK], else [UNK]) */
    char *tag_kind;             /* [n_tags] 'O', 'B', 'I' */
    int *tag_slot;              /* [n_tags] slot index of B-x / I-x */
} enc_job;

/* Fills the batch buffers with the given examples, padded to the longest. */
static int fill_batch(enc_job *ej, const tset *set, const int *idx, int n, int n_pairs, tenc_batch *b) {
    int t = 1;
    for (int i = 0; i < n; i++) t = set->v[idx[i]].n > t ? set->v[idx[i]].n : t;
    for (int i = 0; i < n; i++) {
        const tex *e = &set->v[idx[i]];
        for (int k = 0; k < t; k++) {
            ej->b_ids[i * t + k] = k < e->n ? e->ids[k] : 0;
            ej->b_tags[i * t + k] = k < e->n ? e->tags[k] : -1;
        }
        ej->b_lens[i] = e->n;
        ej->b_intent[i] = e->intent;
    }
    *b = (tenc_batch){.b = n, .t = t, .ids = ej->b_ids, .lens = ej->b_lens,
                      .intent = ej->intents.n ? ej->b_intent : NULL, .tags = ej->tags.n ? ej->b_tags : NULL,
                      .n_pairs = n_pairs};
    int tokens = 0;
    for (int i = 0; i < n; i++) tokens += ej->b_lens[i];
    return tokens;
}

static int enc_step(job *j, int64_t s, double *loss, int64_t *tokens, sh_err *err) {
    enc_job *ej = (enc_job *)j;
    const train_opts *o = j->o;
    int n = 0, np = 0;
    /* paraphrase pairs from distinct groups (so no in-batch negative is a paraphrase) */
    if (o->w_nce > 0 && ej->n_pair_groups >= 2) {
        char nm[40];
        snprintf(nm, sizeof nm, "pairs %lld", (long long)s);
        trng r = trng_seed(o->seed, nm);
        const int want = o->nce_pairs < ej->n_pair_groups ? o->nce_pairs : ej->n_pair_groups;
        int chosen[256];
        for (int p = 0; p < want && p < 256; p++) {
            int g, tries = 0;
            bool dup;
            do {
                g = ej->pair_groups[trng_next(&r) % (uint64_t)ej->n_pair_groups];
                dup = false;
                for (int q = 0; q < np; q++) dup |= chosen[q] == g;
            } while (dup && ++tries < 32);
            if (dup) continue;
            chosen[np] = g;
            int cnt = 0;
            while (ej->groups[g][cnt] >= 0) cnt++;
            const int a = (int)(trng_next(&r) % (uint64_t)cnt);
            int b = (int)(trng_next(&r) % (uint64_t)(cnt - 1));
            if (b >= a) b++;
            ej->b_idx[np] = ej->groups[g][a];
            ej->b_idx[want + np] = ej->groups[g][b]; /* placed after the loop: shifted if np < want */
            np++;
        }
        /* the second halves right after the first np */
        for (int p = 0; p < np; p++) ej->b_idx[np + p] = ej->b_idx[want + p];
        n = 2 * np;
    }
    for (; n < o->batch; n++) ej->b_idx[n] = stream_at(&ej->st, s * (int64_t)(o->batch - 2 * np) + (n - 2 * np));
    tenc_batch b;
    *tokens = fill_batch(ej, &ej->train, ej->b_idx, n, np, &b);
    if (o->mask_prob > 0 && ej->mask_id >= 0) { /* token masking: no single word decides */
        char nm[40];
        snprintf(nm, sizeof nm, "mask %lld", (long long)s);
        trng r = trng_seed(o->seed, nm);
        const uint64_t thr = (uint64_t)((double)o->mask_prob * 4294967296.0);
        for (int i = 0; i < n; i++)
            for (int k = 1; k + 1 < b.lens[i]; k++) /* never [CLS] / [SEP] */
                if ((trng_next(&r) >> 32) < thr) ej->b_ids[i * b.t + k] = ej->mask_id;
    }
    tenc_weights w = {o->w_intent, o->w_tags, o->w_nce, o->tau, o->dropout, 0};
    {
        char nm[40];
        snprintf(nm, sizeof nm, "dropout %lld", (long long)s);
        trng r = trng_seed(o->seed, nm);
        w.drop_key = trng_next(&r);
    }
    tenc_stats st;
    if (tenc_run(ej->m, j->pool, &b, &w, true, &st, err)) return -1;
    *loss = st.loss;
    return 0;
}

/* Spans (label, first word, last word) of a BIO sequence over word positions. */
typedef struct wspan {
    int slot, a, b;
} wspan;

static int bio_spans(const enc_job *ej, const int32_t *tags, int n, wspan *out) {
    int k = 0, w = 0;
    for (int i = 0; i < n; i++, w++) {
        const int t = tags[i];
        const char kind = ej->tag_kind[t];
        if (kind == 'O') continue;
        if (kind == 'I' && k > 0 && out[k - 1].slot == ej->tag_slot[t] && out[k - 1].b == w - 1) out[k - 1].b = w;
        else out[k++] = (wspan){ej->tag_slot[t], w, w};
    }
    return k;
}

static int enc_eval(job *j, train_progress *p, sh_err *err) {
    enc_job *ej = (enc_job *)j;
    const train_opts *o = j->o;
    int64_t ok_i = 0, n_i = 0, tp = 0, n_pred = 0, n_gold = 0;
    double loss = 0;
    int64_t n_loss = 0;
    int idx[4096];
    int32_t gold[512], pred[512];
    wspan gs[512], ps[512];
    const int n_tags = ej->tags.n;
    for (int i0 = 0; i0 < ej->dev.n; i0 += o->batch) {
        const int n = ej->dev.n - i0 < o->batch ? ej->dev.n - i0 : o->batch;
        for (int k = 0; k < n; k++) idx[k] = i0 + k;
        tenc_batch b;
        fill_batch(ej, &ej->dev, idx, n, 0, &b);
        tenc_weights w = {o->w_intent, o->w_tags, 0, o->tau, 0, 0};
        tenc_stats st;
        if (tenc_run(ej->m, j->pool, &b, &w, false, &st, err)) return -1;
        ok_i += st.ok_intent, n_i += st.n_intent;
        loss += st.intent_loss + st.tag_loss;
        n_loss += st.n_intent + st.n_tag;
        for (int s = 0; n_tags && s < n; s++) {
            const tex *e = &ej->dev.v[i0 + s];
            int nw = 0;
            for (int t = 0; t < e->n && nw < 512; t++) {
                if (e->tags[t] < 0) continue;
                const float *lg = tenc_tag_logits(ej->m, s, t);
                int best = 0;
                for (int c = 1; c < n_tags; c++)
                    if (lg[c] > lg[best]) best = c;
                gold[nw] = e->tags[t];
                pred[nw++] = best;
            }
            const int ng = bio_spans(ej, gold, nw, gs), npd = bio_spans(ej, pred, nw, ps);
            n_gold += ng, n_pred += npd;
            for (int a = 0; a < npd; a++)
                for (int c = 0; c < ng; c++)
                    if (ps[a].slot == gs[c].slot && ps[a].a == gs[c].a && ps[a].b == gs[c].b) {
                        tp++;
                        break;
                    }
        }
    }
    p->dev_intent_acc = n_i ? (double)ok_i / (double)n_i : -1;
    const double prec = n_pred ? (double)tp / (double)n_pred : 0, rec = n_gold ? (double)tp / (double)n_gold : 0;
    p->dev_slot_f1 = n_tags ? (prec + rec > 0 ? 2 * prec * rec / (prec + rec) : (n_gold == 0 ? 1.0 : 0.0)) : -1;
    p->dev_loss = n_loss ? loss / (double)n_loss : -1;
    double m = 0;
    int k = 0;
    if (p->dev_intent_acc >= 0) m += p->dev_intent_acc, k++;
    if (p->dev_slot_f1 >= 0) m += p->dev_slot_f1, k++;
    p->dev_metric = k ? m / k : -p->dev_loss;
    return 0;
}

static int enc_save(job *j, const char *path, bool checkpoint, sh_err *err) {
    enc_job *ej = (enc_job *)j;
    const tenc_cfg *c = tenc_config(ej->m);
    const train_opts *o = j->o;
    for (int pass = 0; pass < (checkpoint || !o->export_llama ? 1 : 2); pass++) {
        const bool llama = pass == 1; /* the export for llama.cpp: intent head only, no shoal.* */
        gguf_writer *w = gguf_writer_init();
        if (!w) return sh_errf(err, "out of memory");
        gguf_writer_add_str(w, "general.architecture", "bert");
        gguf_writer_add_str(w, "general.name", o->name ? o->name : "shoal-encoder");
        gguf_writer_add_str(w, "general.description", "trained by shoal train encoder");
        gguf_writer_add_u32(w, "general.file_type", 0);
        gguf_writer_add_u32(w, "bert.context_length", (uint32_t)c->ctx);
        gguf_writer_add_u32(w, "bert.embedding_length", (uint32_t)c->dim);
        gguf_writer_add_u32(w, "bert.feed_forward_length", (uint32_t)c->ffn);
        gguf_writer_add_u32(w, "bert.block_count", (uint32_t)c->layers);
        gguf_writer_add_u32(w, "bert.attention.head_count", (uint32_t)c->heads);
        gguf_writer_add_f32(w, "bert.attention.layer_norm_epsilon", c->eps);
        gguf_writer_add_bool(w, "bert.attention.causal", 0);
        /* shoal's file: mean, the embedding objective's pooling (shoal's sequence head reads
         * [CLS] whatever the pooling); llama.cpp applies a classifier head only with rank
         * pooling, which reads [CLS] too */
        gguf_writer_add_u32(w, "bert.pooling_type", llama ? 4 : 1);
        if (ej->intents.n)
            gguf_writer_add_str_arr(w, "bert.classifier.output_labels", (uint64_t)ej->intents.n,
                                    (const char *const *)ej->intents.name);
        if (ej->tags.n && !llama)
            gguf_writer_add_str_arr(w, "shoal.token_classifier.output_labels", (uint64_t)ej->tags.n,
                                    (const char *const *)ej->tags.name);
        if (tsave_tokenizer(w, ej->vocab_g, NULL, 0, err)) {
            gguf_writer_free(w);
            return -1;
        }
        if (!gguf_find(ej->vocab_g, "tokenizer.ggml.token_type_count"))
            gguf_writer_add_u32(w, "tokenizer.ggml.token_type_count", 2);
        tsave_params(w, j->P, llama ? "shoal." : NULL, checkpoint);
        if (checkpoint) put_state(w, j);
        if (write_file(w, llama ? o->export_llama : path, err)) return -1;
    }
    return 0;
}

static void enc_job_free(enc_job *ej) {
    tenc_free(ej->m);
    tset_free(&ej->train);
    tset_free(&ej->dev);
    tlabels_free(&ej->intents);
    tlabels_free(&ej->tags);
    gguf_free(ej->vocab_g);
    free(ej->vocab_mem);
    for (int g = 0; ej->groups && g < ej->train.n_groups; g++) free(ej->groups[g]);
    free(ej->groups);
    free(ej->pair_groups);
    free(ej->st.perm);
    free(ej->b_ids), free(ej->b_tags), free(ej->b_intent), free(ej->b_lens), free(ej->b_idx);
    free(ej->tag_kind), free(ej->tag_slot);
    free(ej->j.best_w);
    pool_free(ej->j.pool);
}

/* The steps of a run: --steps, or epochs over the training set. */
static int64_t plan_steps(const train_opts *o, int n_train) {
    if (o->steps > 0) return o->steps;
    const int64_t per = (n_train + o->batch - 1) / o->batch;
    return per * (o->epochs > 0 ? o->epochs : 1);
}

static void adam_from(adamw_cfg *a, const train_opts *o, int64_t total) {
    adamw_defaults(a);
    a->lr = o->lr;
    a->weight_decay = o->wd;
    a->clip = o->clip;
    a->total = total;
    a->warmup = (int64_t)(o->warmup_frac * (float)total);
    a->min_ratio = o->min_lr_ratio;
}

/* The parts of a job both models share: the threads, the plan of steps, AdamW's schedule. */
static int job_start(job *j, const train_opts *o, int n_train, sh_err *err) {
    if (!(j->pool = pool_init(o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN))))
        return sh_errf(err, "cannot start the trainer's threads");
    j->total = plan_steps(o, n_train);
    adam_from(&j->adam, o, j->total);
    j->best = -INFINITY;
    return 0;
}

int train_encoder(const train_opts *o, train_result *res, sh_err *err) {
    memset(res, 0, sizeof *res);
    enc_job ej = {0};
    job *j = &ej.j;
    j->o = o;
    int rc = -1;
    tok_vocab *v = NULL;
    gguf_ctx *ck = NULL;
    if (!o->vocab) return sh_errf(err, "an encoder needs --vocab VOCAB.gguf (a WordPiece vocabulary)");
    if (o->batch < 2 || o->batch > 4096) return sh_errf(err, "--batch must be 2..4096");
    if (!(ej.vocab_g = gguf_open(o->vocab, err))) goto done;
    if (!(v = tok_vocab_from_gguf(ej.vocab_g, err))) goto done;
    if (tok_vocab_type(v) != TOK_WPM) {
        sh_errf(err, "%s: an encoder needs a WordPiece (bert) vocabulary", o->vocab);
        goto done;
    }
    if (o->prune_vocab) { /* only the tokens the data uses (and every special / one-character token) */
        const char *paths[2] = {o->train, o->dev};
        int32_t *map = NULL;
        int kept = 0;
        if (tdata_vocab_keep(paths, o->dev ? 2 : 1, v, &map, &kept, err)) goto done;
        gguf_writer *w = gguf_writer_init();
        size_t len = 0;
        int r2 = tsave_tokenizer(w, ej.vocab_g, map, kept, err) || gguf_writer_write_mem(w, &ej.vocab_mem, &len, err);
        gguf_writer_free(w);
        free(map);
        if (r2) goto done;
        gguf_free(ej.vocab_g);
        tok_vocab_free(v);
        v = NULL;
        if (!(ej.vocab_g = gguf_open_mem(ej.vocab_mem, len, "pruned vocabulary", err)) ||
            !(v = tok_vocab_from_gguf(ej.vocab_g, err)))
            goto done;
    }
    {
        int32_t mk = tok_find(v, "[MASK]", 6);
        ej.mask_id = mk >= 0 ? mk : tok_unk(v);
    }
    if (tdata_load_enc(o->train, v, &ej.intents, &ej.tags, true, o->ctx, &ej.train, err)) goto done;
    if (o->dev && tdata_load_enc(o->dev, v, &ej.intents, &ej.tags, false, o->ctx, &ej.dev, err)) goto done;
    /* paraphrase groups */
    ej.groups = calloc((size_t)(ej.train.n_groups ? ej.train.n_groups : 1), sizeof *ej.groups);
    int *cnt = calloc((size_t)(ej.train.n_groups ? ej.train.n_groups : 1), sizeof *cnt);
    ej.pair_groups = malloc((size_t)(ej.train.n_groups ? ej.train.n_groups : 1) * sizeof *ej.pair_groups);
    if (!ej.groups || !cnt || !ej.pair_groups) {
        free(cnt);
        sh_errf(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < ej.train.n; i++)
        if (ej.train.v[i].group >= 0) cnt[ej.train.v[i].group]++;
    for (int g = 0; g < ej.train.n_groups; g++) {
        ej.groups[g] = malloc((size_t)(cnt[g] + 1) * sizeof(int));
        if (!ej.groups[g]) break;
        ej.groups[g][0] = -1;
        if (cnt[g] >= 2) ej.pair_groups[ej.n_pair_groups++] = g;
        cnt[g] = 0;
    }
    for (int i = 0; i < ej.train.n; i++) {
        const int g = ej.train.v[i].group;
        if (g < 0 || !ej.groups[g]) continue;
        ej.groups[g][cnt[g]++] = i;
        ej.groups[g][cnt[g]] = -1;
    }
    free(cnt);
    ej.tag_kind = malloc((size_t)(ej.tags.n ? ej.tags.n : 1));
    ej.tag_slot = malloc((size_t)(ej.tags.n ? ej.tags.n : 1) * sizeof(int));
    for (int t = 0; ej.tag_kind && ej.tag_slot && t < ej.tags.n; t++) {
        ej.tag_kind[t] = ej.tags.name[t][0] == 'O' && !ej.tags.name[t][1] ? 'O' : ej.tags.name[t][0];
        ej.tag_slot[t] = (t + 1) / 2; /* O, B-x, I-x, B-y, ... */
    }
    /* the model */
    tenc_cfg cfg = {.vocab = tok_n_tokens(v), .dim = o->dim, .layers = o->layers, .heads = o->heads,
                    .ffn = o->ffn, .ctx = o->ctx, .n_intents = ej.intents.n, .n_tags = ej.tags.n,
                    .eps = 1e-12f, .init_std = 0.02f};
    const int max_t = o->ctx;
    if (!(ej.m = tenc_init(&cfg, o->batch * max_t, o->batch, o->seed, err))) goto done;
    j->P = tenc_params(ej.m);
    ej.b_ids = malloc((size_t)o->batch * max_t * sizeof(int32_t));
    ej.b_tags = malloc((size_t)o->batch * max_t * sizeof(int32_t));
    ej.b_intent = malloc((size_t)o->batch * sizeof(int32_t));
    ej.b_lens = malloc((size_t)o->batch * sizeof(int));
    ej.b_idx = malloc((size_t)(o->batch + 512) * sizeof(int));
    ej.st = (stream){.n = ej.train.n, .seed = o->seed, .epoch = -1, .perm = malloc((size_t)ej.train.n * sizeof(int))};
    if (!ej.b_ids || !ej.b_tags || !ej.b_intent || !ej.b_lens || !ej.b_idx || !ej.st.perm || !ej.tag_kind || !ej.tag_slot) {
        sh_errf(err, "out of memory");
        goto done;
    }
    if (job_start(j, o, ej.train.n, err)) goto done;
    if (o->init && !o->resume) {
        gguf_ctx *g = gguf_open(o->init, err);
        int loaded = 0;
        if (!g || tsave_load_params(j->P, g, false, &loaded, err)) {
            gguf_free(g);
            goto done;
        }
        gguf_free(g);
        if (loaded == 0) {
            sh_errf(err, "%s: no tensor matches this encoder's names and shapes", o->init);
            goto done;
        }
    }
    if (o->resume) {
        if (!(ck = gguf_open(o->resume, err)) || get_state(j, ck, err)) goto done;
    }
    j->step = enc_step;
    j->eval = enc_eval;
    j->save = enc_save;
    rc = run_loop(j, res, err);
done:
    gguf_free(ck);
    tok_vocab_free(v);
    enc_job_free(&ej);
    return rc;
}

/* ============================================================ the LM job ===== */

typedef struct lm_job {
    job j;
    tlm *m;
    tset train, dev;
    gguf_ctx *vocab_g;
    uint8_t *vocab_mem;
    stream st;
    int32_t *b_ids, *b_tg;
    int *b_lens, *b_idx;
} lm_job;

static int lm_fill(lm_job *lj, const tset *set, const int *idx, int n, tlm_batch *b) {
    int t = 1, tokens = 0;
    for (int i = 0; i < n; i++) t = set->v[idx[i]].n > t ? set->v[idx[i]].n : t;
    for (int i = 0; i < n; i++) {
        const tex *e = &set->v[idx[i]];
        for (int k = 0; k < t; k++) {
            lj->b_ids[i * t + k] = k < e->n ? e->ids[k] : 0;
            lj->b_tg[i * t + k] = k < e->n ? e->tags[k] : -1;
        }
        lj->b_lens[i] = e->n;
        tokens += e->n;
    }
    *b = (tlm_batch){.b = n, .t = t, .ids = lj->b_ids, .targets = lj->b_tg, .lens = lj->b_lens};
    return tokens;
}

static int lm_step(job *j, int64_t s, double *loss, int64_t *tokens, sh_err *err) {
    lm_job *lj = (lm_job *)j;
    const int B = j->o->batch;
    for (int i = 0; i < B; i++) lj->b_idx[i] = stream_at(&lj->st, s * B + i);
    tlm_batch b;
    *tokens = lm_fill(lj, &lj->train, lj->b_idx, B, &b);
    tlm_stats st;
    if (tlm_run(lj->m, j->pool, &b, true, &st, err)) return -1;
    *loss = st.n ? st.loss / (double)st.n : 0;
    return 0;
}

static int lm_eval(job *j, train_progress *p, sh_err *err) {
    lm_job *lj = (lm_job *)j;
    const int B = j->o->batch;
    double loss = 0;
    int64_t n = 0, ok = 0;
    int idx[4096];
    for (int i0 = 0; i0 < lj->dev.n; i0 += B) {
        const int k = lj->dev.n - i0 < B ? lj->dev.n - i0 : B;
        for (int i = 0; i < k; i++) idx[i] = i0 + i;
        tlm_batch b;
        lm_fill(lj, &lj->dev, idx, k, &b);
        tlm_stats st;
        if (tlm_run(lj->m, j->pool, &b, false, &st, err)) return -1;
        loss += st.loss, n += st.n, ok += st.correct;
    }
    p->dev_loss = n ? loss / (double)n : 0;
    p->dev_intent_acc = n ? (double)ok / (double)n : -1; /* next-token accuracy */
    p->dev_slot_f1 = -1;
    /* greedy decoding wants the right argmax, not a calibrated loss: on replies whose wording
     * varies at random the dev loss rises long before the model stops improving at copying
     * values from the prompt, which is what the accuracy measures */
    p->dev_metric = p->dev_intent_acc;
    return 0;
}

static int lm_save(job *j, const char *path, bool checkpoint, sh_err *err) {
    lm_job *lj = (lm_job *)j;
    const tlm_cfg *c = tlm_config(lj->m);
    gguf_writer *w = gguf_writer_init();
    if (!w) return sh_errf(err, "out of memory");
    gguf_writer_add_str(w, "general.architecture", "llama");
    gguf_writer_add_str(w, "general.name", j->o->name ? j->o->name : "shoal-lm");
    gguf_writer_add_str(w, "general.description", "trained by shoal train lm");
    gguf_writer_add_u32(w, "general.file_type", 0);
    gguf_writer_add_u32(w, "llama.context_length", (uint32_t)c->ctx);
    gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t)c->dim);
    gguf_writer_add_u32(w, "llama.block_count", (uint32_t)c->layers);
    gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t)c->ffn);
    gguf_writer_add_u32(w, "llama.attention.head_count", (uint32_t)c->heads);
    gguf_writer_add_u32(w, "llama.attention.head_count_kv", (uint32_t)c->kv_heads);
    gguf_writer_add_u32(w, "llama.rope.dimension_count", (uint32_t)(c->dim / c->heads));
    gguf_writer_add_f32(w, "llama.rope.freq_base", c->rope_base);
    gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", c->eps);
    gguf_writer_add_u32(w, "llama.vocab_size", (uint32_t)c->vocab);
    if (tsave_tokenizer(w, lj->vocab_g, NULL, 0, err)) {
        gguf_writer_free(w);
        return -1;
    }
    tsave_params(w, j->P, NULL, checkpoint);
    if (checkpoint) put_state(w, j);
    return write_file(w, path, err);
}

int train_lm(const train_opts *o, train_result *res, sh_err *err) {
    memset(res, 0, sizeof *res);
    lm_job lj = {0};
    job *j = &lj.j;
    j->o = o;
    int rc = -1;
    tok_vocab *v = NULL;
    gguf_ctx *ck = NULL;
    char **texts = NULL;
    size_t n_texts = 0;
    bpe_vocab bv = {0};
    if (o->batch < 1 || o->batch > 4096) return sh_errf(err, "--batch must be 1..4096");
    if (!!o->vocab == (o->bpe_vocab > 0)) return sh_errf(err, "give either --vocab FILE or --bpe SIZE");
    if (o->vocab) {
        if (!(lj.vocab_g = gguf_open(o->vocab, err))) goto done;
    } else {
        if (o->bpe_vocab < 300 || o->bpe_vocab > 65536) {
            sh_errf(err, "--bpe %d: a vocabulary of 300..65536 tokens", o->bpe_vocab);
            goto done;
        }
        if (tdata_lm_texts(o->train, &texts, &n_texts, err)) goto done;
        static const char *const specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
        if (bpe_train((const char *const *)texts, n_texts, o->bpe_vocab, specials, 3, &bv, err)) goto done;
        gguf_writer *w = gguf_writer_init();
        bpe_write_keys(w, &bv);
        size_t len = 0;
        int r2 = gguf_writer_write_mem(w, &lj.vocab_mem, &len, err);
        gguf_writer_free(w);
        if (r2 || !(lj.vocab_g = gguf_open_mem(lj.vocab_mem, len, "BPE vocabulary", err))) goto done;
    }
    if (!(v = tok_vocab_from_gguf(lj.vocab_g, err))) goto done;
    if (tdata_load_lm(o->train, v, o->ctx, &lj.train, err)) goto done;
    if (o->dev && tdata_load_lm(o->dev, v, o->ctx, &lj.dev, err)) goto done;
    tlm_cfg cfg = {.vocab = tok_n_tokens(v), .dim = o->dim, .layers = o->layers, .heads = o->heads,
                   .kv_heads = o->kv_heads > 0 ? o->kv_heads : o->heads, .ffn = o->ffn, .ctx = o->ctx,
                   .rope_base = o->rope_base, .eps = 1e-5f, .init_std = 0.02f, .tied = o->tied};
    if (!(lj.m = tlm_init(&cfg, o->batch * o->ctx, o->batch, o->ctx, o->seed, err))) goto done;
    j->P = tlm_params(lj.m);
    lj.b_ids = malloc((size_t)o->batch * o->ctx * sizeof(int32_t));
    lj.b_tg = malloc((size_t)o->batch * o->ctx * sizeof(int32_t));
    lj.b_lens = malloc((size_t)o->batch * sizeof(int));
    lj.b_idx = malloc((size_t)o->batch * sizeof(int));
    lj.st = (stream){.n = lj.train.n, .seed = o->seed, .epoch = -1, .perm = malloc((size_t)lj.train.n * sizeof(int))};
    if (!lj.b_ids || !lj.b_tg || !lj.b_lens || !lj.b_idx || !lj.st.perm) {
        sh_errf(err, "out of memory");
        goto done;
    }
    if (job_start(j, o, lj.train.n, err)) goto done;
    if (o->resume && (!(ck = gguf_open(o->resume, err)) || get_state(j, ck, err))) goto done;
    j->step = lm_step;
    j->eval = lm_eval;
    j->save = lm_save;
    rc = run_loop(j, res, err);
done:
    gguf_free(ck);
    tok_vocab_free(v);
    for (size_t i = 0; i < n_texts; i++) free(texts[i]);
    free(texts);
    bpe_free(&bv);
    tlm_free(lj.m);
    tset_free(&lj.train);
    tset_free(&lj.dev);
    gguf_free(lj.vocab_g);
    free(lj.vocab_mem);
    free(lj.st.perm);
    free(lj.b_ids), free(lj.b_tg), free(lj.b_lens), free(lj.b_idx);
    free(j->best_w);
    pool_free(j->pool);
    return rc;
}
