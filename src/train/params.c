/*
 * train/params — see params.h.
 */
#include "train/params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/ops.h"

/* ============================================================ random numbers ===== */

uint64_t trng_next(trng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

trng trng_seed(uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the name, mixed with the seed */
    for (const char *c = name ? name : ""; *c; c++) h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
    trng r = {.s = h ^ (seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull)};
    trng_next(&r);
    return r;
}

double trng_uniform(trng *r) { return (double)(trng_next(r) >> 11) * 0x1.0p-53; }

double trng_normal(trng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u, v, s;
    do {
        u = 2 * trng_uniform(r) - 1;
        v = 2 * trng_uniform(r) - 1;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    const double m = sqrt(-2.0 * log(s) / s);
    r->spare = v * m;
    r->has_spare = 1;
    return u * m;
}

/* ============================================================ tensors ===== */

int tparams_add(tparams *p, const char *name, int64_t ne0, int64_t ne1, bool decay, tinit init,
                float std) {
    if (p->n == p->cap) {
        int nc = p->cap ? p->cap * 2 : 64;
        tparam *nt = realloc(p->t, (size_t)nc * sizeof *nt);
        if (!nt) return -1;
        p->t = nt;
        p->cap = nc;
    }
    tparam *t = &p->t[p->n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ne0 = ne0;
    t->ne1 = ne1;
    t->off = p->total;
    t->decay = decay;
    t->init = init;
    t->std = std;
    p->total += (size_t)(ne0 * ne1);
    return p->n++;
}

int tparams_find(const tparams *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->t[i].name, name)) return i;
    return -1;
}

int tparams_alloc(tparams *p, uint64_t seed, sh_err *err) {
    const size_t n = p->total ? p->total : 1;
    p->w = malloc(n * sizeof(float));
    p->g = calloc(n, sizeof(float));
    p->m = calloc(n, sizeof(float));
    p->v = calloc(n, sizeof(float));
    if (!p->w || !p->g || !p->m || !p->v)
        return sh_errf(err, "out of memory for %zu parameters (%.1f MiB with gradients and "
                            "optimizer state)", p->total, 16.0 * (double)p->total / (1 << 20));
    for (int i = 0; i < p->n; i++) {
        const tparam *t = &p->t[i];
        float *w = p->w + t->off;
        const size_t k = (size_t)(t->ne0 * t->ne1);
        trng r = trng_seed(seed, t->name);
        for (size_t j = 0; j < k; j++)
            w[j] = t->init == TINIT_ONES ? 1.0f : t->init == TINIT_ZEROS ? 0.0f : (float)(t->std * trng_normal(&r));
    }
    return 0;
}

void tparams_free(tparams *p) {
    if (!p) return;
    free(p->t);
    free(p->w);
    free(p->g);
    free(p->m);
    free(p->v);
    memset(p, 0, sizeof *p);
}

void tparams_zero_grad(tparams *p) { memset(p->g, 0, p->total * sizeof(float)); }

/* ============================================================ AdamW ===== */

void adamw_defaults(adamw_cfg *c) {
    *c = (adamw_cfg){.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                     .weight_decay = 0.01f, .clip = 1.0f, .warmup = 100, .total = 1000,
                     .min_ratio = 0.1f};
}

float adamw_lr(const adamw_cfg *c, int64_t step) {
    if (c->warmup > 0 && step < c->warmup) return c->lr * (float)(step + 1) / (float)c->warmup;
    const int64_t span = c->total - c->warmup;
    if (span <= 0 || step >= c->total) return c->lr * c->min_ratio;
    const double f = (double)(step - c->warmup) / (double)span;
    const double cosv = 0.5 * (1.0 + cos(M_PI * f));
    return (float)(c->lr * (c->min_ratio + (1.0 - c->min_ratio) * cosv));
}

#define CHUNK 65536

typedef struct adam_ctx {
    tparams *tp;
    const adamw_cfg *c;
    double *partial;           /* [chunks] sums of squares */
    float scale, lr, bc1, bc2;
    const uint8_t *decay;      /* [chunks] per chunk: 0 none, 1 all, 2 mixed (look up per tensor) */
} adam_ctx;

static void sumsq_chunks(void *arg, int64_t lo, int64_t hi) {
    adam_ctx *a = arg;
    const float *g = a->tp->g;
    for (int64_t c = lo; c < hi; c++) {
        const size_t b = (size_t)c * CHUNK, e = b + CHUNK < a->tp->total ? b + CHUNK : a->tp->total;
        double s = 0;
        for (size_t i = b; i < e; i++) s += (double)g[i] * g[i];
        a->partial[c] = s;
    }
}

static void update_tensors(void *arg, int64_t lo, int64_t hi) {
    adam_ctx *a = arg;
    const adamw_cfg *c = a->c;
    tparams *tp = a->tp;
    for (int64_t t = lo; t < hi; t++) {
        const tparam *pt = &tp->t[t];
        const size_t b = pt->off, e = b + (size_t)(pt->ne0 * pt->ne1);
        const float wd = pt->decay ? c->weight_decay : 0.0f;
        for (size_t i = b; i < e; i++) {
            const float g = tp->g[i] * a->scale;
            tp->m[i] = c->beta1 * tp->m[i] + (1 - c->beta1) * g;
            tp->v[i] = c->beta2 * tp->v[i] + (1 - c->beta2) * g * g;
            const float mh = tp->m[i] / a->bc1, vh = tp->v[i] / a->bc2;
            tp->w[i] -= a->lr * (mh / (sqrtf(vh) + c->eps) + wd * tp->w[i]);
        }
    }
}

double adamw_step(pool *p, tparams *tp, const adamw_cfg *c, int64_t step) {
    const int64_t chunks = (int64_t)((tp->total + CHUNK - 1) / CHUNK);
    double *partial = calloc((size_t)(chunks ? chunks : 1), sizeof(double));
    SH_ASSERT(partial);
    adam_ctx a = {.tp = tp, .c = c, .partial = partial};
    ops_parallel(p, chunks, sumsq_chunks, &a);
    double ss = 0;
    for (int64_t i = 0; i < chunks; i++) ss += partial[i];
    free(partial);
    const double norm = sqrt(ss);
    a.scale = c->clip > 0 && norm > c->clip ? (float)(c->clip / norm) : 1.0f;
    a.lr = adamw_lr(c, step);
    a.bc1 = 1.0f - powf(c->beta1, (float)(step + 1));
    a.bc2 = 1.0f - powf(c->beta2, (float)(step + 1));
    ops_parallel(p, tp->n, update_tensors, &a);
    return norm;
}
