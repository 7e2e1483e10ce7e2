/*
 * metrics — see metrics.h.
 *
 * Families are kept in registration order, each with its series. Doubles are updated
 * atomically by compare-and-swap on their bit pattern; histogram buckets are plain atomic
 * counters (non-cumulative; rendering accumulates them).
 */
#include "metrics/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const double metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,    0.25,  0.5,    1,     2.5,  5,     10,
                                          30,     60};
const size_t metrics_latency_n_buckets = sizeof metrics_latency_buckets / sizeof(double);

struct metrics_series {
    struct metrics_family *fam;
    char *labels;
    _Atomic uint64_t value;   /* double bits: counter / gauge value, histogram sum */
    _Atomic uint64_t count;   /* histograms: observations */
    _Atomic uint64_t *buckets; /* histograms: n_bounds + 1 (the last is +Inf) */
    struct metrics_series *next;
};

typedef struct metrics_family {
    char *name, *help;
    metrics_kind kind;
    double *bounds;
    size_t n_bounds;
    metrics_gauge_fn fn; /* computed gauge */
    void *ud;
    metrics_series *series, *last;
    struct metrics_family *next;
} metrics_family;

struct metrics {
    pthread_mutex_t lock;
    metrics_family *first, *last;
};

/* ============================================================ atomics on doubles ===== */

static double bits_to_d(uint64_t b) {
    double d;
    memcpy(&d, &b, 8);
    return d;
}

static uint64_t d_to_bits(double d) {
    uint64_t b;
    memcpy(&b, &d, 8);
    return b;
}

static void atomic_add_d(_Atomic uint64_t *p, double by) {
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, d_to_bits(bits_to_d(old) + by),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* ============================================================ registration ===== */

metrics *metrics_init(void) {
    metrics *m = calloc(1, sizeof *m);
    if (m) pthread_mutex_init(&m->lock, NULL);
    return m;
}

static void family_free(metrics_family *f) {
    metrics_series *s = f->series;
    while (s) {
        metrics_series *n = s->next;
        free(s->labels);
        free(s->buckets);
        free(s);
        s = n;
    }
    free(f->name);
    free(f->help);
    free(f->bounds);
    free(f);
}

void metrics_free(metrics *m) {
    if (!m) return;
    metrics_family *f = m->first;
    while (f) {
        metrics_family *n = f->next;
        family_free(f);
        f = n;
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* Finds or creates the family; caller holds the lock. */
static metrics_family *family_get(metrics *m, const char *name, const char *help,
                                  metrics_kind kind, const double *bounds, size_t n_bounds) {
    for (metrics_family *f = m->first; f; f = f->next)
        if (strcmp(f->name, name) == 0) return f->kind == kind && !f->fn ? f : NULL;
    metrics_family *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->kind = kind;
    if (n_bounds) {
        f->bounds = malloc(n_bounds * sizeof *f->bounds);
        if (f->bounds) memcpy(f->bounds, bounds, n_bounds * sizeof *bounds);
        f->n_bounds = n_bounds;
    }
    if (!f->name || !f->help || (n_bounds && !f->bounds)) {
        family_free(f);
        return NULL;
    }
    if (m->last) m->last->next = f;
    else m->first = f;
    m->last = f;
    return f;
}

static metrics_series *series_get(metrics *m, const char *name, const char *help,
                                  metrics_kind kind, const char *labels, const double *bounds,
                                  size_t n_bounds) {
    if (!m || !name) return NULL;
    labels = labels ? labels : "";
    pthread_mutex_lock(&m->lock);
    metrics_series *s = NULL;
    metrics_family *f = family_get(m, name, help, kind, bounds, n_bounds);
    if (!f) goto out;
    for (s = f->series; s; s = s->next)
        if (strcmp(s->labels, labels) == 0) goto out;
    s = calloc(1, sizeof *s);
    if (!s) goto out;
    s->fam = f;
    s->labels = strdup(labels);
    if (kind == METRICS_HISTOGRAM) s->buckets = calloc(f->n_bounds + 1, sizeof *s->buckets);
    if (!s->labels || (kind == METRICS_HISTOGRAM && !s->buckets)) {
        free(s->labels);
        free(s->buckets);
        free(s);
        s = NULL;
        goto out;
    }
    atomic_store(&s->value, d_to_bits(0.0));
    if (f->last) f->last->next = s;
    else f->series = s;
    f->last = s;
out:
    pthread_mutex_unlock(&m->lock);
    return s;
}

metrics_series *metrics_counter(metrics *m, const char *name, const char *help,
                                const char *labels) {
    return series_get(m, name, help, METRICS_COUNTER, labels, NULL, 0);
}

metrics_series *metrics_gauge(metrics *m, const char *name, const char *help,
                              const char *labels) {
    return series_get(m, name, help, METRICS_GAUGE, labels, NULL, 0);
}

metrics_series *metrics_histogram(metrics *m, const char *name, const char *help,
                                  const char *labels, const double *bounds, size_t n_bounds) {
    for (size_t i = 1; i < n_bounds; i++)
        if (!(bounds[i] > bounds[i - 1])) return NULL;
    return series_get(m, name, help, METRICS_HISTOGRAM, labels, bounds, n_bounds);
}

int metrics_gauge_fn_add(metrics *m, const char *name, const char *help, metrics_gauge_fn fn,
                         void *ud) {
    pthread_mutex_lock(&m->lock);
    metrics_family *f = NULL;
    for (metrics_family *g = m->first; g; g = g->next)
        if (strcmp(g->name, name) == 0) goto out; /* taken */
    f = family_get(m, name, help, METRICS_GAUGE, NULL, 0);
    if (f) {
        f->fn = fn;
        f->ud = ud;
    }
out:
    pthread_mutex_unlock(&m->lock);
    return f ? 0 : -1;
}

/* ============================================================ updates ===== */

void metrics_inc(metrics_series *s, double by) {
    if (!s || (s->fam->kind == METRICS_COUNTER && !(by >= 0))) return;
    atomic_add_d(&s->value, by);
}

void metrics_set(metrics_series *s, double v) {
    if (s && s->fam->kind == METRICS_GAUGE) atomic_store(&s->value, d_to_bits(v));
}

void metrics_observe(metrics_series *s, double v) {
    if (!s || s->fam->kind != METRICS_HISTOGRAM || isnan(v)) return;
    size_t i = 0, n = s->fam->n_bounds;
    while (i < n && v > s->fam->bounds[i]) i++; /* le: v <= bound lands in that bucket */
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    atomic_add_d(&s->value, v);
}

double metrics_value(const metrics_series *s) {
    if (!s) return 0;
    if (s->fam->kind == METRICS_HISTOGRAM) return (double)atomic_load(&s->count);
    return bits_to_d(atomic_load(&s->value));
}

/* ============================================================ rendering ===== */

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n + 1;
        char *nb = realloc(b->buf, cap);
        if (!nb) {
            b->oom = 1;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
}

/* Prometheus floats: integers without a fraction, +Inf/-Inf/NaN spelled as the format wants. */
static void fmt_num(char *out, size_t n, double v) {
    if (isnan(v)) snprintf(out, n, "NaN");
    else if (isinf(v)) snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15) snprintf(out, n, "%.0f", v);
    else snprintf(out, n, "%.9g", v);
}

/* Appends `name{labels,extra} value\n` (braces only when there are labels). */
static void sample(sbuf *b, const char *name, const char *suffix, const char *labels,
                   const char *extra, const char *value) {
    int has = labels && *labels, hx = extra && *extra;
    if (!has && !hx) sb_printf(b, "%s%s %s\n", name, suffix, value);
    else sb_printf(b, "%s%s{%s%s%s} %s\n", name, suffix, has ? labels : "", has && hx ? "," : "",
                   hx ? extra : "", value);
}

static const char *kind_name(metrics_kind k) {
    return k == METRICS_COUNTER ? "counter" : k == METRICS_GAUGE ? "gauge" : "histogram";
}

char *metrics_render(metrics *m) {
    sbuf b = {.buf = malloc(4096), .cap = 4096};
    if (!b.buf) return NULL;
    b.buf[0] = 0;
    char num[64], le[80], cnt[32];
    pthread_mutex_lock(&m->lock);
    for (metrics_family *f = m->first; f; f = f->next) {
        sb_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, kind_name(f->kind));
        if (f->fn) {
            fmt_num(num, sizeof num, f->fn(f->ud));
            sb_printf(&b, "%s %s\n", f->name, num);
            continue;
        }
        for (metrics_series *s = f->series; s; s = s->next) {
            if (f->kind != METRICS_HISTOGRAM) {
                fmt_num(num, sizeof num, bits_to_d(atomic_load(&s->value)));
                sample(&b, f->name, "", s->labels, NULL, num);
                continue;
            }
            uint64_t cum = 0;
            for (size_t i = 0; i <= f->n_bounds; i++) {
                cum += atomic_load(&s->buckets[i]);
                if (i < f->n_bounds) fmt_num(num, sizeof num, f->bounds[i]);
                snprintf(le, sizeof le, "le=\"%s\"", i < f->n_bounds ? num : "+Inf");
                snprintf(cnt, sizeof cnt, "%llu", (unsigned long long)cum);
                sample(&b, f->name, "_bucket", s->labels, le, cnt);
            }
            fmt_num(num, sizeof num, bits_to_d(atomic_load(&s->value)));
            sample(&b, f->name, "_sum", s->labels, NULL, num);
            snprintf(cnt, sizeof cnt, "%llu", (unsigned long long)atomic_load(&s->count));
            sample(&b, f->name, "_count", s->labels, NULL, cnt);
        }
    }
    pthread_mutex_unlock(&m->lock);
    if (b.oom) {
        free(b.buf);
        return NULL;
    }
    return b.buf;
}

char *metrics_label_escape(const char *v, char *out, size_t n) {
    size_t j = 0;
    for (; *v && j + 2 < n; v++) {
        if (*v == '\\' || *v == '"') {
            out[j++] = '\\';
            out[j++] = *v;
        } else if (*v == '\n') {
            out[j++] = '\\';
            out[j++] = 'n';
        } else {
            out[j++] = *v;
        }
    }
    if (n) out[j < n ? j : n - 1] = 0;
    return out;
}

double metrics_process_rss(void *unused) {
    (void)unused;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size = 0, rss = 0;
    int ok = fscanf(f, "%lu %lu", &size, &rss) == 2;
    fclose(f);
    return ok ? (double)rss * (double)sysconf(_SC_PAGESIZE) : 0;
}
