/*
 * cache/semantic — the semantic tier (cache.h): answers of earlier prompts found by the
 * cosine similarity of their embeddings, within a partition, behind a false-hit guard.
 *
 * Entries live in one ring of max_entries slots (the oldest is replaced first), each with its
 * partition digest, its unit-length embedding, its fingerprint and its answer. A lookup scans
 * the ring (flat: a partition compare, then a dot product for the entries of the same
 * partition), under a read lock; writes take the write lock.
 *
 * The fingerprint is what must be equal for a hit whatever the similarity: the numbers, the
 * negations and the polarity words (on/off, up/down, open/close, ...) of the prompt, sorted,
 * and the slot values a tagger found. "turn the lights on" and "turn the lights off" may embed
 * close together; their fingerprints differ.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"

typedef struct sent {
    uint8_t part[CACHE_KEY_BYTES];
    double expires;             /* 0: empty slot */
    char *fp;
    char *val;
    size_t n;
} sent;

struct csem {
    int dim;
    size_t cap, next;
    double ttl_s;
    float *vecs;                /* [cap][dim] */
    sent *e;                    /* [cap] */
    pthread_rwlock_t lock;
    metrics_series *m_hit, *m_miss, *m_guard, *m_sim;
};

static const double sim_bounds[] = {0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96, 0.98, 0.99, 1.0};

csem *csem_init(int dim, size_t max_entries, double ttl_s, metrics *met) {
    csem *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->dim = dim;
    s->cap = max_entries ? max_entries : 100000;
    s->ttl_s = ttl_s > 0 ? ttl_s : 3600;
    s->vecs = malloc(s->cap * (size_t)dim * sizeof(float));
    s->e = calloc(s->cap, sizeof *s->e);
    if (!s->vecs || !s->e) {
        free(s->vecs), free(s->e), free(s);
        return NULL;
    }
    pthread_rwlock_init(&s->lock, NULL);
    if (met) {
        static const char *const h = "Semantic cache lookups: hit, miss (nothing similar enough), guarded (similar "
                                     "enough but the numbers, negations, polarity or slots differ).";
        s->m_hit = metrics_counter(met, "shoal_cache_semantic_lookups_total", h, "result=\"hit\"");
        s->m_miss = metrics_counter(met, "shoal_cache_semantic_lookups_total", h, "result=\"miss\"");
        s->m_guard = metrics_counter(met, "shoal_cache_semantic_lookups_total", h, "result=\"guarded\"");
        s->m_sim = metrics_histogram(met, "shoal_cache_semantic_similarity", "Cosine similarity of semantic hits.", "",
                                     sim_bounds, sizeof sim_bounds / sizeof *sim_bounds);
    }
    return s;
}

void csem_clear(csem *s) {
    pthread_rwlock_wrlock(&s->lock);
    for (size_t i = 0; i < s->cap; i++) {
        free(s->e[i].fp), free(s->e[i].val);
        memset(&s->e[i], 0, sizeof s->e[i]);
    }
    s->next = 0;
    pthread_rwlock_unlock(&s->lock);
}

void csem_free(csem *s) {
    if (!s) return;
    csem_clear(s);
    pthread_rwlock_destroy(&s->lock);
    free(s->vecs), free(s->e), free(s);
}

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Eight partial sums: the compiler turns this into SIMD lanes. */
static float dot(const float *a, const float *b, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    float s = 0;
    for (; i < n; i++) s += a[i] * b[i];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

int csem_get(csem *s, const uint8_t part[CACHE_KEY_BYTES], const float *vec, const char *fp, double min_sim,
             char **val, size_t *n, double *sim) {
    double now = wall(), best = -2, best_any = -2;
    size_t at = SIZE_MAX;
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->cap; i++) {
        const sent *e = &s->e[i];
        if (e->expires <= now || memcmp(e->part, part, CACHE_KEY_BYTES)) continue;
        double d = dot(vec, s->vecs + i * (size_t)s->dim, s->dim);
        if (d > best_any) best_any = d;
        if (d >= min_sim && d > best && !strcmp(e->fp, fp)) best = d, at = i;
    }
    int rc = 0;
    if (at != SIZE_MAX && (*val = malloc(s->e[at].n ? s->e[at].n : 1))) {
        memcpy(*val, s->e[at].val, s->e[at].n);
        *n = s->e[at].n;
        rc = 1;
    }
    pthread_rwlock_unlock(&s->lock);
    *sim = rc ? best : best_any;
    if (rc) metrics_inc(s->m_hit, 1), metrics_observe(s->m_sim, best);
    else metrics_inc(best_any >= min_sim ? s->m_guard : s->m_miss, 1);
    return rc;
}

void csem_put(csem *s, const uint8_t part[CACHE_KEY_BYTES], const float *vec, const char *fp, const char *val,
              size_t n) {
    char *f = strdup(fp), *v = malloc(n ? n : 1);
    if (!f || !v) {
        free(f), free(v);
        return;
    }
    memcpy(v, val, n);
    pthread_rwlock_wrlock(&s->lock);
    sent *e = &s->e[s->next];
    free(e->fp), free(e->val);
    memcpy(e->part, part, CACHE_KEY_BYTES);
    memcpy(s->vecs + s->next * (size_t)s->dim, vec, (size_t)s->dim * sizeof(float));
    e->fp = f, e->val = v, e->n = n;
    e->expires = wall() + s->ttl_s;
    s->next = (s->next + 1) % s->cap;
    pthread_rwlock_unlock(&s->lock);
}

/* ============================================================ fingerprints ===== */

static const char *const guard_words[] = {
    /* negations */
    "not", "no", "never", "dont", "don't", "doesnt", "doesn't", "isnt", "isn't", "without", "none", "nothing",
    "cannot", "can't", "cant", "wont", "won't", "neither", "nor",
    /* polarity: a word and its opposite must not share an answer */
    "on", "off", "up", "down", "open", "close", "closed", "lock", "unlock", "locked", "unlocked", "start", "stop",
    "increase", "decrease", "raise", "lower", "enable", "disable", "higher", "warmer", "cooler", "colder", "hotter",
    "more", "less", "brighter", "dimmer", "dim", "louder", "quieter", "mute", "unmute", "add", "remove", "before",
    "after", "min", "max", "minimum", "maximum", "yes",
    /* number words */
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty", "thirty", "forty",
    "fifty", "sixty", "seventy", "eighty", "ninety", "hundred", "thousand", "half", "quarter", "first", "second",
    "third", NULL};

static bool guard_word(const char *w) {
    for (int i = 0; guard_words[i]; i++)
        if (!strcmp(w, guard_words[i])) return true;
    return false;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void csem_fingerprint(const char *text, const char *slots, char *out, size_t outn) {
    char words[64][32];
    char *list[64];
    int nw = 0;
    const unsigned char *p = (const unsigned char *)text;
    while (*p && nw < 64) {
        while (*p && !isalnum(*p) && *p != '\'' && *p != '.' && *p < 0x80) p++;
        char w[32];
        size_t n = 0;
        bool digit = false;
        while (*p && (isalnum(*p) || *p == '\'' || (*p == '.' && isdigit(p[1])) || *p >= 0x80)) {
            if (n + 1 < sizeof w) w[n++] = (char)tolower(*p);
            digit |= isdigit(*p) != 0;
            p++;
        }
        if (!n) {
            if (*p) p++;
            continue;
        }
        w[n] = 0;
        size_t wl = strlen(w);
        bool neg_suffix = wl > 3 && !strcmp(w + wl - 3, "n't");
        if (digit || neg_suffix || guard_word(w)) {
            snprintf(words[nw], sizeof words[nw], "%s", neg_suffix ? "not" : w);
            list[nw] = words[nw];
            nw++;
        }
    }
    qsort(list, (size_t)nw, sizeof *list, cmp_str);
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < nw && o < outn; i++) o += (size_t)snprintf(out + o, outn - o, "%s%s", i ? " " : "", list[i]);
    if (slots && *slots && o < outn) {
        /* slot values compare case-insensitively */
        o += (size_t)snprintf(out + o, outn - o, "|");
        for (const char *q = slots; *q && o + 1 < outn; q++) out[o++] = (char)tolower((unsigned char)*q);
        out[o < outn ? o : outn - 1] = 0;
    }
}
