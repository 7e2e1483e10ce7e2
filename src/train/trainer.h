/*
 * train/trainer — the two training jobs behind `shoal train`: a BERT encoder with intent,
 * slot and embedding objectives, and a llama causal LM; from data files to a GGUF model that
 * shoal serves (and llama.cpp loads).
 *
 * A job: load and check the data (train/tdata.h), build or load the model (from scratch, from
 * --init weights, or from a checkpoint to resume), then the loop: step s trains on batch s, a
 * pure function of (seed, s), so a resumed run continues exactly where it stopped; AdamW with
 * warm-up and cosine decay, global-norm clipping; every eval_every steps the dev set is
 * scored and the best weights kept; early stopping after `patience` evaluations without
 * improvement; checkpoints every ckpt_every steps and when *stop becomes non-zero (the CLI's
 * Ctrl-C); at the end the best weights are written. Memory is bounded by the batch size and
 * the model's context. Same seed, data and thread count: the same bytes.
 *
 * Reporting goes through callbacks (the library prints nothing): on_step after every step,
 * on_eval after every evaluation.
 */
#ifndef SHOAL_TRAIN_TRAINER_H
#define SHOAL_TRAIN_TRAINER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"

typedef struct train_progress {
    int64_t step, total;        /* steps done (1-based after the step), planned */
    double loss;                /* this step's objective */
    double lr, grad_norm;
    double tok_s;               /* tokens per second over the last steps */
    double gflop_s;             /* matrix-product GFLOP/s over the same steps' whole time
                                 * (forward, backward, the other layers and the optimizer) */
    double eta_s;               /* estimated seconds left */
    double elapsed_s;
    /* at evaluations (on_eval): */
    double dev_metric;          /* higher is better: encoder mean(intent accuracy, slot F1), LM next-token
                                 * accuracy on the completions */
    double dev_intent_acc, dev_slot_f1, dev_loss; /* -1 where not measured */
    bool improved;              /* a new best */
    bool stopping;              /* early stop */
} train_progress;

typedef struct train_opts {
    const char *train, *dev;    /* data files (dev optional) */
    const char *out;            /* the model file written */
    const char *vocab;          /* a GGUF whose tokenizer is used (encoder: WordPiece; LM: any) */
    int bpe_vocab;              /* LM: learn a byte-level BPE vocabulary of this size instead */
    bool prune_vocab;           /* encoder: keep only the vocabulary's tokens the data uses (plus
                                 * special and single-character tokens) */
    const char *init;           /* encoder: start from this file's weights where names and
                                 * shapes match */
    const char *resume;         /* a checkpoint to continue */
    const char *checkpoint;     /* where checkpoints go (default OUT.ckpt) */
    int64_t ckpt_every;         /* steps between checkpoints (0: only on stop) */
    int64_t stop_after;         /* > 0: stop after this many steps, as *stop does (a checkpoint) */
    const char *export_llama;   /* encoder: also write the intent classifier alone, as llama.cpp
                                 * loads it */
    const char *name;           /* general.name */
    /* shape */
    int dim, layers, heads, kv_heads, ffn, ctx;
    float rope_base;
    bool tied;
    /* objective */
    float w_intent, w_tags, w_nce, tau;
    int nce_pairs;              /* paraphrase pairs per batch (0: no embedding objective) */
    float dropout;              /* encoder: hidden dropout while training */
    float mask_prob;            /* encoder: training tokens replaced by [MASK] with this chance */
    /* optimization */
    int64_t steps;              /* 0: from epochs */
    int epochs;
    int batch;                  /* sequences per step */
    float lr, warmup_frac, wd, clip, min_lr_ratio;
    uint64_t seed;
    int threads;
    int64_t eval_every;
    int patience;
    /* reporting */
    void (*on_step)(void *ud, const train_progress *p);
    void (*on_eval)(void *ud, const train_progress *p);
    void *ud;
    volatile sig_atomic_t *stop; /* non-zero: save a checkpoint and stop */
} train_opts;

/* Defaults for either job (the CLI's documented values). */
void train_opts_default(train_opts *o, bool lm);

typedef struct train_result {
    int64_t steps;              /* steps done */
    double seconds;
    double tok_s;
    double best_metric;
    int64_t best_step;
    bool interrupted;           /* stopped by *stop: a checkpoint was written */
    bool early_stopped;
    uint64_t n_params;
    char checkpoint[512];       /* written on interruption */
} train_result;

int train_encoder(const train_opts *o, train_result *res, sh_err *err);
int train_lm(const train_opts *o, train_result *res, sh_err *err);

#endif
