/*
 * sampler/sampler — see sampler.h.
 *
 * Candidates are (id, logit) pairs in one array allocated at init. Filters shrink the array
 * in place; "sorted" tracks whether it is in (logit desc, id asc) order, so that top-k /
 * top-p sort at most once and ties always break the same way.
 */
#include "sampler/sampler.h"

#include "core/err.h"
#include "engine/ew.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    int32_t id;
    float logit;
    float p; /* probability, set by top-p */
} cand;

struct sampler {
    sampler_params p;
    int n_vocab;
    cand *c;              /* [n_vocab] candidates */
    int n_c;              /* live candidates */
    bool sorted;          /* c[0..n_c) ordered by cand_before */
    float *probs;         /* [n_vocab] scratch probabilities */
    int32_t *hist;        /* [penalty_last_n] ring of accepted tokens */
    int n_hist, hist_pos; /* tokens in the ring, next write index */
    int32_t *count;       /* [n_vocab] occurrence counts, all zero between calls */
    sampler_prob *top;    /* [n_probs] result alternatives */
    uint64_t rng[4];      /* xoshiro256** state */
};

/* ============================================================ PRNG ===== */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t *s) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* uniform in [0, 1) with 53 random bits */
static double rng_uniform(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* ============================================================ setup ===== */

void sampler_params_default(sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->temp = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->penalty_last_n = 64;
}

void sampler_reset(sampler *s) {
    s->n_hist = s->hist_pos = 0;
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

sampler *sampler_init(const sampler_params *p, int n_vocab, sh_err *err) {
    if (n_vocab <= 0) {
        sh_errf(err, "sampler: vocabulary size %d", n_vocab);
        return NULL;
    }
    if (isnan(p->temp) || isnan(p->top_p) || isnan(p->min_p) || p->top_p < 0 || p->min_p > 1 ||
        !(p->repeat_penalty > 0) || !isfinite(p->presence_penalty) ||
        !isfinite(p->frequency_penalty) || p->penalty_last_n < 0 || p->n_probs < 0 ||
        p->penalty_last_n > (1 << 24)) {
        sh_errf(err, "sampler: parameter out of range (temp %g top_p %g min_p %g repeat %g "
                     "last_n %d n_probs %d)", p->temp, p->top_p, p->min_p, p->repeat_penalty,
                p->penalty_last_n, p->n_probs);
        return NULL;
    }
    sampler *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->p = *p;
    if (s->p.n_probs > n_vocab) s->p.n_probs = n_vocab;
    s->n_vocab = n_vocab;
    s->c = malloc((size_t)n_vocab * sizeof *s->c);
    s->probs = malloc((size_t)n_vocab * sizeof *s->probs);
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    s->hist = malloc((size_t)(p->penalty_last_n ? p->penalty_last_n : 1) * sizeof *s->hist);
    s->top = malloc((size_t)(s->p.n_probs ? s->p.n_probs : 1) * sizeof *s->top);
    if (!s->c || !s->probs || !s->count || !s->hist || !s->top) goto oom;
    sampler_reset(s);
    return s;
oom:
    sampler_free(s);
    sh_errf(err, "sampler: out of memory");
    return NULL;
}

void sampler_free(sampler *s) {
    if (!s) return;
    free(s->c);
    free(s->probs);
    free(s->count);
    free(s->hist);
    free(s->top);
    free(s);
}

void sampler_accept(sampler *s, int32_t id) {
    if (s->p.penalty_last_n == 0) return;
    s->hist[s->hist_pos] = id;
    s->hist_pos = (s->hist_pos + 1) % s->p.penalty_last_n;
    if (s->n_hist < s->p.penalty_last_n) s->n_hist++;
}

/* ============================================================ helpers ===== */

int32_t sampler_argmax(const float *logits, int n) { return (int32_t)ew_get()->argmax(logits, n); }

/* a comes before b: larger logit first, then smaller id */
static inline bool cand_before(const cand *a, const cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

/* Moves the k best candidates to c[0..k) in order (min-heap selection, O(n log k)). */
static void select_top(cand *c, int n, int k) {
    if (k >= n) {
        qsort(c, (size_t)n, sizeof *c, cand_cmp);
        return;
    }
    /* heap in c[0..k): the root is the worst of the k kept */
    for (int i = k / 2 - 1; i >= 0; i--) {
        int j = i;
        for (;;) {
            int l = 2 * j + 1, r = l + 1, w = j;
            if (l < k && cand_before(&c[w], &c[l])) w = l;
            if (r < k && cand_before(&c[w], &c[r])) w = r;
            if (w == j) break;
            cand t = c[j];
            c[j] = c[w];
            c[w] = t;
            j = w;
        }
    }
    for (int i = k; i < n; i++) {
        if (!cand_before(&c[i], &c[0])) continue;
        c[0] = c[i];
        int j = 0;
        for (;;) {
            int l = 2 * j + 1, r = l + 1, w = j;
            if (l < k && cand_before(&c[w], &c[l])) w = l;
            if (r < k && cand_before(&c[w], &c[r])) w = r;
            if (w == j) break;
            cand t = c[j];
            c[j] = c[w];
            c[w] = t;
            j = w;
        }
    }
    qsort(c, (size_t)k, sizeof *c, cand_cmp);
}

/* probs[i] = softmax of c[i].logit / temp over the live candidates */
static void softmax_cands(sampler *s, float temp) {
    float mx = -INFINITY;
    for (int i = 0; i < s->n_c; i++)
        if (s->c[i].logit > mx) mx = s->c[i].logit;
    double sum = 0;
    for (int i = 0; i < s->n_c; i++) {
        float pr = expf((s->c[i].logit - mx) / temp);
        s->probs[i] = pr;
        sum += pr;
    }
    for (int i = 0; i < s->n_c; i++) s->probs[i] = (float)(s->probs[i] / sum);
}

static void apply_penalties(sampler *s) {
    const sampler_params *p = &s->p;
    if (s->n_hist == 0 || (p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f &&
                           p->frequency_penalty == 0.0f))
        return;
    for (int i = 0; i < s->n_hist; i++)
        if (s->hist[i] >= 0 && s->hist[i] < s->n_vocab) s->count[s->hist[i]]++;
    /* candidates are still indexed by id here (c[i].id == i) */
    for (int i = 0; i < s->n_hist; i++) {
        int32_t id = s->hist[i];
        if (id < 0 || id >= s->n_vocab || s->count[id] == 0) continue;
        float *l = &s->c[id].logit;
        if (*l <= 0) *l *= p->repeat_penalty;
        else *l /= p->repeat_penalty;
        *l -= (float)s->count[id] * p->frequency_penalty + p->presence_penalty;
        s->count[id] = 0; /* each distinct token once; also leaves count all zero */
    }
}

/* ============================================================ sampling ===== */

static void fill_logprobs(sampler *s, const float *logits, int32_t id, sampler_result *res) {
    float mx = logits[sampler_argmax(logits, s->n_vocab)];
    double sum = 0;
    /* float exponentials (each within an ulp), summed in double: as exact as the logits are,
     * at a third of the cost of double exp over the whole vocabulary, per token */
    for (int i = 0; i < s->n_vocab; i++) sum += expf(logits[i] - mx);
    float lse = mx + (float)log(sum);
    res->id = id;
    res->logprob = logits[id] - lse;
    res->n_top = s->p.n_probs;
    res->top = s->top;
    if (s->p.n_probs == 0) return;
    /* the candidate array is free again: reuse it for the selection */
    for (int i = 0; i < s->n_vocab; i++) s->c[i] = (cand){i, logits[i], 0};
    select_top(s->c, s->n_vocab, s->p.n_probs);
    for (int i = 0; i < s->p.n_probs; i++)
        s->top[i] = (sampler_prob){s->c[i].id, s->c[i].logit - lse};
}

void sampler_score(sampler *s, const float *logits, int32_t id, sampler_result *res) {
    SH_ASSERT(id >= 0 && id < s->n_vocab);
    fill_logprobs(s, logits, id, res);
}

/* top-p: keep the smallest prefix (in sorted order) whose probabilities, taken over all live
 * candidates, sum to at least top_p. */
static void top_p_filter(sampler *s, float top_p) {
    softmax_cands(s, 1.0f);
    for (int i = 0; i < s->n_c; i++) s->c[i].p = s->probs[i];
    if (!s->sorted) {
        /* Only tokens with probability >= (1 - top_p) / n can be in the nucleus: all tokens
         * below that together hold less than 1 - top_p. Drop them before sorting. */
        float thr = (1.0f - top_p) / (float)s->n_c;
        int k = 0;
        for (int i = 0; i < s->n_c; i++)
            if (s->c[i].p >= thr) s->c[k++] = s->c[i];
        s->n_c = k;
        qsort(s->c, (size_t)s->n_c, sizeof *s->c, cand_cmp);
        s->sorted = true;
    }
    double cum = 0;
    for (int i = 0; i < s->n_c; i++) {
        cum += s->c[i].p;
        if (cum >= top_p) {
            s->n_c = i + 1;
            break;
        }
    }
}

/* min-p: keep logits >= max + log(min_p), i.e. probability >= min_p * the largest */
static void min_p_filter(sampler *s, float min_p) {
    float mx = -INFINITY;
    for (int i = 0; i < s->n_c; i++)
        if (s->c[i].logit > mx) mx = s->c[i].logit;
    float thr = mx + logf(min_p);
    int k = 0;
    for (int i = 0; i < s->n_c; i++)
        if (s->c[i].logit >= thr) s->c[k++] = s->c[i];
    s->n_c = k; /* order is kept, so "sorted" stays true if it was */
}

int32_t sampler_sample(sampler *s, const float *logits, sampler_result *res) {
    const sampler_params *p = &s->p;
    bool no_penalties = s->n_hist == 0 || (p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f &&
                                           p->frequency_penalty == 0.0f);
    if (!(p->temp > 0) && no_penalties) {
        /* greedy on the raw logits: the same choice as below (ties go to the smaller id),
         * without building the candidate array for every token */
        int32_t id = sampler_argmax(logits, s->n_vocab);
        if (res) fill_logprobs(s, logits, id, res);
        return id;
    }
    for (int i = 0; i < s->n_vocab; i++) s->c[i] = (cand){i, logits[i], 0};
    s->n_c = s->n_vocab;
    s->sorted = false;
    apply_penalties(s);

    int32_t id;
    if (!(p->temp > 0)) {
        int best = 0;
        for (int i = 1; i < s->n_c; i++)
            if (cand_before(&s->c[i], &s->c[best])) best = i;
        id = s->c[best].id;
    } else {
        if (p->top_k > 0 && p->top_k < s->n_c) {
            select_top(s->c, s->n_c, p->top_k);
            s->n_c = p->top_k;
            s->sorted = true;
        }
        if (p->top_p < 1.0f && s->n_c > 1) top_p_filter(s, p->top_p);
        if (p->min_p > 0.0f && s->n_c > 1) min_p_filter(s, p->min_p);
        softmax_cands(s, p->temp);
        double r = rng_uniform(s->rng), cum = 0;
        id = s->c[s->n_c - 1].id; /* if rounding leaves r above the total */
        for (int i = 0; i < s->n_c; i++) {
            cum += s->probs[i];
            if (r < cum) {
                id = s->c[i].id;
                break;
            }
        }
    }
    if (res) fill_logprobs(s, logits, id, res);
    return id;
}
