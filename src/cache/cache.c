/*
 * cache/cache — the tiers in order, promotion of lower-tier hits, the writer thread and the
 * metrics (cache.h).
 */
#include "cache/cache.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache_int.h"

#define MAX_VALUE (64u << 20)   /* larger answers are not cached */
#define QUEUE_MAX_ITEMS 4096
#define QUEUE_MAX_BYTES (64u << 20)

enum { T_MEM, T_SQL, T_REDIS, N_TIERS };
static const char *const tier_names[N_TIERS] = {"memory", "sqlite", "redis"};

typedef struct wjob {           /* a write for the persistent tiers */
    uint8_t key[CACHE_KEY_BYTES];
    double expires, now;
    size_t n;
    struct wjob *next;
    char val[];
} wjob;

typedef struct tier_m {
    metrics_series *hit, *miss, *err, *puts, *evict, *dropped, *entries, *bytes, *lat;
    _Atomic uint64_t hits, misses, errors, n_puts, evictions, n_dropped;
} tier_m;

struct cache {
    cache_params p;
    cmem *mem;
    csql *sql;
    credis *redis;
    tier_m t[N_TIERS];
    metrics_series *up;

    pthread_t writer;
    bool has_writer;
    pthread_mutex_t qmu;
    pthread_cond_t qcv, qidle;
    wjob *qhead, *qtail;
    size_t q_items, q_bytes;
    bool stopping, writing;

    pthread_mutex_t wmu;        /* warnings, rate-limited */
    double last_warn;
};

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* At most one warning line a second: a dead tier must not flood the log. */
__attribute__((format(printf, 2, 3))) static void warn(cache *c, const char *fmt, ...) {
    pthread_mutex_lock(&c->wmu);
    double now = mono_s();
    if (now - c->last_warn >= 1.0) {
        c->last_warn = now;
        va_list ap;
        va_start(ap, fmt);
        fprintf(c->p.warn, "shoal: warning: cache: ");
        vfprintf(c->p.warn, fmt, ap);
        fputc('\n', c->p.warn);
        fflush(c->p.warn);
        va_end(ap);
    }
    pthread_mutex_unlock(&c->wmu);
}

static void count(metrics_series *s, _Atomic uint64_t *v, uint64_t by) {
    if (!by) return;
    atomic_fetch_add(v, by);
    metrics_inc(s, (double)by);
}

/* ============================================================ the writer thread ===== */

static void write_job(cache *c, const wjob *j) {
    if (c->sql) {
        long ev = csql_put(c->sql, j->key, j->val, j->n, j->expires, j->now);
        if (ev < 0) {
            count(c->t[T_SQL].err, &c->t[T_SQL].errors, 1);
            warn(c, "sqlite '%s': a write failed (disk full or the file is busy); serving on", c->p.db_path);
        } else {
            count(c->t[T_SQL].puts, &c->t[T_SQL].n_puts, 1);
            count(c->t[T_SQL].evict, &c->t[T_SQL].evictions, (uint64_t)ev);
        }
        uint64_t e, b;
        csql_stats(c->sql, &e, &b);
        metrics_set(c->t[T_SQL].entries, (double)e);
        metrics_set(c->t[T_SQL].bytes, (double)b);
    }
    if (c->redis) {
        if (credis_put(c->redis, j->key, j->val, j->n, j->expires - j->now) < 0) {
            count(c->t[T_REDIS].err, &c->t[T_REDIS].errors, 1);
            warn(c, "redis '%s': a write failed (down or slow); serving on", c->p.redis_url);
        } else {
            count(c->t[T_REDIS].puts, &c->t[T_REDIS].n_puts, 1);
        }
        metrics_set(c->up, credis_up(c->redis));
    }
}

static void *writer_main(void *arg) {
    cache *c = arg;
    pthread_mutex_lock(&c->qmu);
    for (;;) {
        while (!c->qhead && !c->stopping) pthread_cond_wait(&c->qcv, &c->qmu);
        if (!c->qhead) break;
        wjob *j = c->qhead;
        c->qhead = j->next;
        if (!c->qhead) c->qtail = NULL;
        c->q_items--;
        c->q_bytes -= j->n;
        c->writing = true;
        pthread_mutex_unlock(&c->qmu);
        write_job(c, j);
        free(j);
        pthread_mutex_lock(&c->qmu);
        c->writing = false;
        if (!c->qhead) pthread_cond_broadcast(&c->qidle);
    }
    pthread_mutex_unlock(&c->qmu);
    return NULL;
}

/* ============================================================ lifetime ===== */

static const double lat_bounds[] = {5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2};

static void register_metrics(cache *c) {
    metrics *m = c->p.met;
    if (!m) return;
    for (int i = 0; i < N_TIERS; i++) {
        char l[64], lr[96];
        snprintf(l, sizeof l, "tier=\"%s\"", tier_names[i]);
        tier_m *t = &c->t[i];
        static const char *const help_l = "Cache lookups by tier and result (a lookup goes down the tiers until a hit).";
        snprintf(lr, sizeof lr, "%s,result=\"hit\"", l);
        t->hit = metrics_counter(m, "shoal_cache_lookups_total", help_l, lr);
        snprintf(lr, sizeof lr, "%s,result=\"miss\"", l);
        t->miss = metrics_counter(m, "shoal_cache_lookups_total", help_l, lr);
        snprintf(lr, sizeof lr, "%s,result=\"error\"", l);
        t->err = metrics_counter(m, "shoal_cache_lookups_total", help_l, lr);
        t->puts = metrics_counter(m, "shoal_cache_writes_total", "Entries written, by tier.", l);
        t->evict = metrics_counter(m, "shoal_cache_evictions_total", "Entries evicted (budget, size cap, expiry).", l);
        t->dropped = metrics_counter(m, "shoal_cache_writes_dropped_total",
                                     "Writes dropped because the writer queue was full.", l);
        t->entries = metrics_gauge(m, "shoal_cache_entries", "Entries held (memory, sqlite).", l);
        t->bytes = metrics_gauge(m, "shoal_cache_bytes", "Bytes held (memory: with bookkeeping; sqlite: values).", l);
        t->lat = metrics_histogram(m, "shoal_cache_lookup_seconds", "Time of one tier's lookup.", l, lat_bounds,
                                   sizeof lat_bounds / sizeof *lat_bounds);
    }
    c->up = metrics_gauge(m, "shoal_cache_redis_up", "1 when the last Redis command succeeded.", "");
}

cache *cache_init(const cache_params *p, sh_err *err) {
    cache *c = calloc(1, sizeof *c);
    if (!c) return sh_errf(err, "out of memory"), NULL;
    c->p = *p;
    if (c->p.ttl_s <= 0) c->p.ttl_s = 3600;
    if (!c->p.db_bytes) c->p.db_bytes = 256u << 20;
    if (!c->p.warn) c->p.warn = stderr;
    pthread_mutex_init(&c->qmu, NULL);
    pthread_cond_init(&c->qcv, NULL);
    pthread_cond_init(&c->qidle, NULL);
    pthread_mutex_init(&c->wmu, NULL);
    c->last_warn = -10;
    if (p->mem_bytes && !(c->mem = cmem_init(p->mem_bytes))) {
        sh_errf(err, "out of memory");
        goto fail;
    }
    if (p->db_path && !(c->sql = csql_open(p->db_path, c->p.db_bytes, c->p.warn, err))) goto fail;
    if (p->redis_url && !(c->redis = credis_init(p->redis_url, p->redis_timeout_ms, p->redis_prefix, err))) goto fail;
    register_metrics(c);
    if (c->sql || c->redis) {
        if (pthread_create(&c->writer, NULL, writer_main, c) != 0) {
            sh_errf(err, "cannot start the cache writer thread");
            goto fail;
        }
        c->has_writer = true;
    }
    return c;
fail:
    cache_free(c);
    return NULL;
}

void cache_free(cache *c) {
    if (!c) return;
    if (c->has_writer) {
        pthread_mutex_lock(&c->qmu);
        c->stopping = true; /* the writer drains the queue, then stops */
        pthread_cond_broadcast(&c->qcv);
        pthread_mutex_unlock(&c->qmu);
        pthread_join(c->writer, NULL);
    }
    for (wjob *j = c->qhead, *n; j; j = n) n = j->next, free(j);
    cmem_free(c->mem);
    csql_close(c->sql);
    credis_free(c->redis);
    pthread_mutex_destroy(&c->qmu);
    pthread_cond_destroy(&c->qcv);
    pthread_cond_destroy(&c->qidle);
    pthread_mutex_destroy(&c->wmu);
    free(c);
}

/* ============================================================ get / put ===== */

int cache_get(cache *c, const uint8_t key[CACHE_KEY_BYTES], char **val, size_t *n, const char **tier) {
    double now = wall_s();
    for (int i = 0; i < N_TIERS; i++) {
        if ((i == T_MEM && !c->mem) || (i == T_SQL && !c->sql) || (i == T_REDIS && !c->redis)) continue;
        double t0 = mono_s();
        int rc = i == T_MEM   ? cmem_get(c->mem, key, now, val, n)
                 : i == T_SQL ? csql_get(c->sql, key, now, val, n)
                              : credis_get(c->redis, key, val, n);
        metrics_observe(c->t[i].lat, mono_s() - t0);
        tier_m *t = &c->t[i];
        if (rc == 1) {
            count(t->hit, &t->hits, 1);
            *tier = tier_names[i];
            if (i != T_MEM && c->mem) { /* promote */
                uint64_t ev = cmem_put(c->mem, key, *val, *n, now + c->p.ttl_s);
                count(c->t[T_MEM].evict, &c->t[T_MEM].evictions, ev);
            }
            return 1;
        }
        if (rc < 0) {
            count(t->err, &t->errors, 1);
            if (i == T_REDIS) metrics_set(c->up, credis_up(c->redis));
        } else {
            count(t->miss, &t->misses, 1);
        }
    }
    return 0;
}

void cache_flush(cache *c, double timeout_ms) {
    if (!c || !c->has_writer) return;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    long ns = dl.tv_nsec + (long)(timeout_ms * 1e6);
    dl.tv_sec += ns / 1000000000L;
    dl.tv_nsec = ns % 1000000000L;
    pthread_mutex_lock(&c->qmu);
    while ((c->qhead || c->writing) && pthread_cond_timedwait(&c->qidle, &c->qmu, &dl) == 0) {
    }
    pthread_mutex_unlock(&c->qmu);
}

void cache_put(cache *c, const uint8_t key[CACHE_KEY_BYTES], const char *val, size_t n) {
    if (n > MAX_VALUE) return;
    double now = wall_s(), expires = now + c->p.ttl_s;
    if (c->mem) {
        uint64_t ev = cmem_put(c->mem, key, val, n, expires);
        count(c->t[T_MEM].puts, &c->t[T_MEM].n_puts, 1);
        count(c->t[T_MEM].evict, &c->t[T_MEM].evictions, ev);
        uint64_t e, b;
        cmem_stats(c->mem, &e, &b);
        metrics_set(c->t[T_MEM].entries, (double)e);
        metrics_set(c->t[T_MEM].bytes, (double)b);
    }
    if (!c->has_writer) return;
    wjob *j = malloc(sizeof *j + n);
    pthread_mutex_lock(&c->qmu);
    bool full = !j || c->q_items >= QUEUE_MAX_ITEMS || c->q_bytes + n > QUEUE_MAX_BYTES;
    if (!full) {
        memcpy(j->key, key, CACHE_KEY_BYTES);
        j->expires = expires;
        j->now = now;
        j->n = n;
        memcpy(j->val, val, n);
        j->next = NULL;
        if (c->qtail) c->qtail->next = j;
        else c->qhead = j;
        c->qtail = j;
        c->q_items++;
        c->q_bytes += n;
        pthread_cond_signal(&c->qcv);
    }
    pthread_mutex_unlock(&c->qmu);
    if (full) {
        free(j);
        for (int i = T_SQL; i <= T_REDIS; i++)
            if ((i == T_SQL && c->sql) || (i == T_REDIS && c->redis))
                count(c->t[i].dropped, &c->t[i].n_dropped, 1);
    }
}

void cache_clear(cache *c) {
    /* queued writes first, so that nothing written before the clear survives it */
    pthread_mutex_lock(&c->qmu);
    for (wjob *j = c->qhead, *n; j; j = n) n = j->next, free(j);
    c->qhead = c->qtail = NULL;
    c->q_items = c->q_bytes = 0;
    while (c->writing) pthread_cond_wait(&c->qidle, &c->qmu);
    pthread_mutex_unlock(&c->qmu);
    if (c->mem) cmem_clear(c->mem);
    if (c->sql && csql_clear(c->sql)) warn(c, "sqlite '%s': clearing failed", c->p.db_path);
    if (c->redis && credis_clear(c->redis)) warn(c, "redis '%s': clearing failed (down?)", c->p.redis_url);
    metrics_set(c->t[T_MEM].entries, 0);
    metrics_set(c->t[T_MEM].bytes, 0);
}

void cache_get_stats(cache *c, cache_stats *st) {
    memset(st, 0, sizeof *st);
    cache_tier_stats *o[N_TIERS] = {&st->memory, &st->sqlite, &st->redis};
    for (int i = 0; i < N_TIERS; i++) {
        tier_m *t = &c->t[i];
        o[i]->hits = atomic_load(&t->hits);
        o[i]->misses = atomic_load(&t->misses);
        o[i]->errors = atomic_load(&t->errors);
        o[i]->puts = atomic_load(&t->n_puts);
        o[i]->evictions = atomic_load(&t->evictions);
        o[i]->dropped = atomic_load(&t->n_dropped);
    }
    st->memory.on = c->mem != NULL;
    st->sqlite.on = c->sql != NULL;
    st->redis.on = c->redis != NULL;
    if (c->mem) cmem_stats(c->mem, &st->memory.entries, &st->memory.bytes);
    if (c->sql) csql_stats(c->sql, &st->sqlite.entries, &st->sqlite.bytes);
    st->redis.up = c->redis && credis_up(c->redis);
}
