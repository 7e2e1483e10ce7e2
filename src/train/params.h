/*
 * train/params — a model's trainable tensors in one place: weights, gradients and the AdamW
 * moments, each one contiguous float array with a table of named tensors into it; seeded
 * initialization; AdamW with warm-up, cosine decay and global-norm clipping.
 *
 * Ownership: tparams owns its arrays (tparams_free); tensor pointers stay valid until then.
 * Determinism: initialization draws each tensor from its own stream seeded by (seed, name);
 * the gradient norm is summed in a fixed order; the update is element-wise. The same seed and
 * gradients give the same bytes on any thread count.
 */
#ifndef SHOAL_TRAIN_PARAMS_H
#define SHOAL_TRAIN_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "engine/pool.h"

#define TPARAM_NAME 96

typedef enum tinit { TINIT_NORMAL = 0, TINIT_ONES, TINIT_ZEROS } tinit;

typedef struct tparam {
    char name[TPARAM_NAME];   /* the GGUF tensor name it is saved as */
    int64_t ne0, ne1;         /* row length, rows (1 for vectors) */
    size_t off;               /* element offset into the arrays */
    bool decay;               /* AdamW weight decay applies (matrices, not norms / biases) */
    tinit init;
    float std;                /* TINIT_NORMAL */
} tparam;

typedef struct tparams {
    tparam *t;
    int n, cap;
    size_t total;             /* elements in all tensors */
    float *w, *g, *m, *v;     /* [total] weights, gradients, Adam first / second moments */
} tparams;

/* Adds a tensor (before tparams_alloc); returns its index, or -1 when memory runs out. */
int tparams_add(tparams *p, const char *name, int64_t ne0, int64_t ne1, bool decay, tinit init,
                float std);

/* Allocates the arrays and initializes the weights from seed; moments and gradients zero. */
int tparams_alloc(tparams *p, uint64_t seed, sh_err *err);

void tparams_free(tparams *p); /* NULL and empty are fine */

static inline float *tp_w(const tparams *p, int i) { return p->w + p->t[i].off; }
static inline float *tp_g(const tparams *p, int i) { return p->g + p->t[i].off; }

/* The index of the tensor called name, or -1. */
int tparams_find(const tparams *p, const char *name);

void tparams_zero_grad(tparams *p);

typedef struct adamw_cfg {
    float lr;                 /* peak learning rate */
    float beta1, beta2, eps;
    float weight_decay;       /* decoupled, on decay tensors */
    float clip;               /* global gradient norm clip (0: none) */
    int64_t warmup, total;    /* linear warm-up steps, then cosine decay to lr * min_ratio at total */
    float min_ratio;
} adamw_cfg;

void adamw_defaults(adamw_cfg *c);

/* The learning rate at step (0-based). */
float adamw_lr(const adamw_cfg *c, int64_t step);

/* One update at step (0-based): clips the gradients to c->clip by their global norm, then
 * AdamW. Returns the gradient norm before clipping. */
double adamw_step(pool *p, tparams *tp, const adamw_cfg *c, int64_t step);

/* A seeded normal number stream (splitmix64 + Marsaglia's polar method). */
typedef struct trng {
    uint64_t s;
    double spare;
    int has_spare;
} trng;
trng trng_seed(uint64_t seed, const char *name);
uint64_t trng_next(trng *r);
double trng_normal(trng *r);
double trng_uniform(trng *r); /* [0, 1) */

#endif
