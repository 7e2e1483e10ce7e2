/*
 * cache/mem — the memory tier (cache_int.h): a chained hash table over the key digests (the
 * digest's first 8 bytes are already uniform: no further hashing) and a doubly linked LRU
 * list, under one mutex. Expired entries are dropped when met.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_int.h"

typedef struct ment {
    uint8_t key[CACHE_KEY_BYTES];
    double expires;
    size_t n;
    struct ment *chain;         /* next in the bucket */
    struct ment *prev, *next;   /* LRU: head most recent */
    char val[];                 /* [n] */
} ment;

struct cmem {
    pthread_mutex_t mu;
    ment **buckets;
    size_t n_buckets;           /* power of two */
    size_t n_entries, bytes, budget;
    ment *head, *tail;
};

/* What an entry costs against the budget: its value and its bookkeeping. */
static size_t cost(size_t n) { return n + sizeof(ment) + sizeof(ment *); }

static size_t bucket_of(const cmem *m, const uint8_t *key) {
    uint64_t h;
    memcpy(&h, key, sizeof h);
    return (size_t)h & (m->n_buckets - 1);
}

cmem *cmem_init(size_t budget) {
    cmem *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->n_buckets = 1024;
    m->buckets = calloc(m->n_buckets, sizeof *m->buckets);
    if (!m->buckets) {
        free(m);
        return NULL;
    }
    m->budget = budget;
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

static void lru_unlink(cmem *m, ment *e) {
    if (e->prev) e->prev->next = e->next;
    else m->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else m->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(cmem *m, ment *e) {
    e->prev = NULL;
    e->next = m->head;
    if (m->head) m->head->prev = e;
    m->head = e;
    if (!m->tail) m->tail = e;
}

/* Unlinks e from its bucket and the list, and frees it. */
static void drop(cmem *m, ment *e) {
    ment **pp = &m->buckets[bucket_of(m, e->key)];
    while (*pp != e) pp = &(*pp)->chain;
    *pp = e->chain;
    lru_unlink(m, e);
    m->n_entries--;
    m->bytes -= cost(e->n);
    free(e);
}

static ment *find(cmem *m, const uint8_t *key) {
    for (ment *e = m->buckets[bucket_of(m, key)]; e; e = e->chain)
        if (!memcmp(e->key, key, CACHE_KEY_BYTES)) return e;
    return NULL;
}

/* Doubles the bucket array when the table is fuller than one entry per bucket (best effort:
 * on allocation failure the chains just get longer). */
static void grow(cmem *m) {
    if (m->n_entries <= m->n_buckets) return;
    size_t nb = m->n_buckets * 2;
    ment **b = calloc(nb, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i < m->n_buckets; i++) {
        for (ment *e = m->buckets[i], *next; e; e = next) {
            next = e->chain;
            uint64_t h;
            memcpy(&h, e->key, sizeof h);
            size_t j = (size_t)h & (nb - 1);
            e->chain = b[j];
            b[j] = e;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->n_buckets = nb;
}

int cmem_get(cmem *m, const uint8_t *key, double now, char **val, size_t *n) {
    pthread_mutex_lock(&m->mu);
    ment *e = find(m, key);
    int rc = 0;
    if (e && e->expires <= now) {
        drop(m, e);
    } else if (e) {
        char *v = malloc(e->n ? e->n : 1);
        if (v) {
            memcpy(v, e->val, e->n);
            *val = v;
            *n = e->n;
            lru_unlink(m, e);
            lru_front(m, e);
            rc = 1;
        } else {
            rc = -1;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

uint64_t cmem_put(cmem *m, const uint8_t *key, const char *val, size_t n, double expires) {
    if (cost(n) > m->budget) return 0;
    ment *e = malloc(sizeof *e + n);
    if (!e) return 0;
    memcpy(e->key, key, CACHE_KEY_BYTES);
    e->expires = expires;
    e->n = n;
    memcpy(e->val, val, n);
    e->prev = e->next = NULL;
    uint64_t evicted = 0;
    pthread_mutex_lock(&m->mu);
    ment *old = find(m, key);
    if (old) drop(m, old);
    while (m->tail && m->bytes + cost(n) > m->budget) {
        drop(m, m->tail);
        evicted++;
    }
    size_t b = bucket_of(m, key);
    e->chain = m->buckets[b];
    m->buckets[b] = e;
    lru_front(m, e);
    m->n_entries++;
    m->bytes += cost(n);
    grow(m);
    pthread_mutex_unlock(&m->mu);
    return evicted;
}

void cmem_clear(cmem *m) {
    pthread_mutex_lock(&m->mu);
    while (m->head) drop(m, m->head);
    pthread_mutex_unlock(&m->mu);
}

void cmem_stats(cmem *m, uint64_t *entries, uint64_t *bytes) {
    pthread_mutex_lock(&m->mu);
    *entries = m->n_entries;
    *bytes = m->bytes;
    pthread_mutex_unlock(&m->mu);
}

void cmem_free(cmem *m) {
    if (!m) return;
    cmem_clear(m);
    free(m->buckets);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
