/*
 * cache/semantic — the semantic tier (cache.h): answers of earlier prompts found by the
 * cosine similarity of their embeddings, within a partition, behind a false-hit guard.
 *
 * Entries live in one ring of max_entries slots (the oldest is replaced first), each with its
 * partition digest, its unit-length embedding, its fingerprint and its answer. A lookup scans
 * the ring (flat: a partition compare, then a dot product for the entries of the same
 * partition), under a read lock; writes take the write lock.
 *
 * The fingerprint is what a hit needs whatever the similarity (csem_compatible): the same
 * numbers, the same negation parity, the same slot values (when a tagger found any), and no
 * polarity word whose opposite the other prompt has (on/off, up/down, open/close, lock/unlock,
 * today/tomorrow, ...). "turn the lights on" and "turn the lights off" may embed close
 * together; their fingerprints are not compatible.
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
        if (d >= min_sim && d > best && csem_compatible(e->fp, fp)) best = d, at = i;
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

static const char *const negations[] = {"not", "no", "never", "dont", "don't", "doesnt", "doesn't", "isnt", "isn't",
                                        "without", "none", "nothing", "cannot", "can't", "cant", "wont", "won't",
                                        "neither", "nor", NULL};

/* Polarity words by pole: "Xa" and "Xb" are opposites (a prompt with one and a prompt with the
 * other never share an answer); words of one pole are interchangeable ("louder" ~ "up"). */
static const struct { const char *w, *pole; } poles[] = {
    {"on", "1a"}, {"off", "1b"},
    {"up", "2a"}, {"louder", "2a"}, {"raise", "2a"}, {"increase", "2a"}, {"higher", "2a"}, {"brighter", "2a"},
    {"brighten", "2a"}, {"warmer", "2a"}, {"hotter", "2a"}, {"more", "2a"}, {"max", "2a"}, {"maximum", "2a"},
    {"down", "2b"}, {"quieter", "2b"}, {"lower", "2b"}, {"decrease", "2b"}, {"dimmer", "2b"}, {"dim", "2b"},
    {"cooler", "2b"}, {"colder", "2b"}, {"less", "2b"}, {"min", "2b"}, {"minimum", "2b"},
    {"open", "3a"}, {"close", "3b"}, {"closed", "3b"}, {"shut", "3b"},
    {"lock", "4a"}, {"locked", "4a"}, {"unlock", "4b"}, {"unlocked", "4b"},
    {"start", "5a"}, {"stop", "5b"}, {"enable", "6a"}, {"disable", "6b"}, {"mute", "7a"}, {"unmute", "7b"},
    {"add", "8a"}, {"remove", "8b"}, {"before", "9a"}, {"after", "9b"},
    {"today", "da"}, {"tomorrow", "db"}, {"yesterday", "dc"}, {"tonight", "dd"}, {NULL, NULL}};

static const char *const number_words[] = {
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty", "thirty", "forty",
    "fifty", "sixty", "seventy", "eighty", "ninety", "hundred", "thousand", "half", "quarter", NULL};

static bool in_list(const char *w, const char *const *l) {
    for (int i = 0; l[i]; i++)
        if (!strcmp(w, l[i])) return true;
    return false;
}

static const char *pole_of(const char *w) {
    for (int i = 0; poles[i].w; i++)
        if (!strcmp(w, poles[i].w)) return poles[i].pole;
    return NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Appends the sorted list (duplicates dropped when uniq) space-separated. */
static size_t put_list(char *out, size_t o, size_t n, char **l, int k, bool uniq) {
    qsort(l, (size_t)k, sizeof *l, cmp_str);
    for (int i = 0; i < k && o < n; i++) {
        if (uniq && i && !strcmp(l[i], l[i - 1])) continue;
        o += (size_t)snprintf(out + o, n - o, "%s%s", i ? " " : "", l[i]);
    }
    return o < n ? o : n - 1;
}

/* Format: "n=NUMBERS;g=PARITY;p=POLES;s=SLOTS" (see csem_compatible). */
void csem_fingerprint(const char *text, const char *slots, char *out, size_t outn) {
    char words[64][32];
    char *nums[64], *pl[64];
    int nn = 0, np = 0, neg = 0, nw = 0;
    const unsigned char *p = (const unsigned char *)text;
    while (*p && nw < 64) {
        char *w = words[nw];
        size_t n = 0;
        bool digit = false;
        while (*p && (isalnum(*p) || *p == '\'' || (*p == '.' && isdigit(p[1])) || *p >= 0x80)) {
            if (n + 1 < sizeof words[0]) w[n++] = (char)tolower(*p);
            digit |= isdigit(*p) != 0;
            p++;
        }
        if (!n) {
            p++;
            continue;
        }
        w[n] = 0;
        const char *pole;
        if (digit || in_list(w, number_words)) nums[nn++] = w, nw++;
        else if (in_list(w, negations) || (n > 3 && !strcmp(w + n - 3, "n't"))) neg++;
        else if ((pole = pole_of(w))) snprintf(w, sizeof words[0], "%s", pole), pl[np++] = w, nw++;
    }
    size_t o = (size_t)snprintf(out, outn, "n=");
    o = put_list(out, o, outn, nums, nn, false);
    o += (size_t)snprintf(out + o, o < outn ? outn - o : 0, ";g=%d;p=", neg & 1);
    if (o >= outn) return;
    o = put_list(out, o, outn, pl, np, true);
    o += (size_t)snprintf(out + o, o < outn ? outn - o : 0, ";s=");
    for (const char *q = slots ? slots : ""; *q && o + 1 < outn; q++) out[o++] = (char)tolower((unsigned char)*q);
    if (o < outn) out[o] = 0;
}

/* Two fingerprints are compatible when their numbers, negation parity and slots are equal and
 * no pole of one has its opposite in the other. */
static bool field(const char *fp, char k, const char **v, size_t *n) {
    for (const char *q = fp; q && *q; q = strchr(q, ';') ? strchr(q, ';') + 1 : NULL) {
        if (q[0] == k && q[1] == '=') {
            const char *e = k == 's' ? q + strlen(q) : strchr(q, ';');
            *v = q + 2;
            *n = (size_t)((e ? e : q + strlen(q)) - *v);
            return true;
        }
    }
    return false;
}

bool csem_compatible(const char *a, const char *b) {
    const char *va, *vb;
    size_t na, nb;
    static const char keys[] = {'n', 'g', 's'};
    for (int i = 0; i < 3; i++) {
        bool ha = field(a, keys[i], &va, &na), hb = field(b, keys[i], &vb, &nb);
        if (ha != hb || (ha && (na != nb || memcmp(va, vb, na)))) return false;
    }
    if (!field(a, 'p', &va, &na) || !field(b, 'p', &vb, &nb)) return false;
    /* poles are two characters each, space-separated */
    for (size_t i = 0; i + 1 < na; i += 3)
        for (size_t j = 0; j + 1 < nb; j += 3)
            if (va[i] == vb[j] && va[i + 1] != vb[j + 1]) return false;
    return true;
}
