/*
 * metrics — a small Prometheus registry: counters, gauges and histograms, rendered in the text
 * exposition format 0.0.4 for GET /metrics.
 *
 * Series are created (usually at start-up, or lazily for a new label value) under the
 * registry's lock; updating a series is lock-free (atomics), so the serving hot path pays a
 * few nanoseconds per observation. A series is identified by its family name plus a label
 * string such as `model="smol",status="200"` (the caller formats and escapes labels with
 * metrics_label_escape). Asking twice for the same name + labels returns the same series.
 *
 * Ownership: the registry owns every series; pointers stay valid until metrics_free().
 */
#ifndef SHOAL_METRICS_METRICS_H
#define SHOAL_METRICS_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct metrics metrics;
typedef struct metrics_series metrics_series;

typedef enum metrics_kind { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM } metrics_kind;

metrics *metrics_init(void);
void metrics_free(metrics *m); /* NULL is fine */

/* Returns the series for family `name` with `labels` ("" for none), creating the family (with
 * its help text, kind and, for histograms, the n_bounds ascending bucket upper bounds) on
 * first use. Returns NULL when the name is reused with another kind, or out of memory. */
metrics_series *metrics_counter(metrics *m, const char *name, const char *help,
                                const char *labels);
metrics_series *metrics_gauge(metrics *m, const char *name, const char *help,
                              const char *labels);
metrics_series *metrics_histogram(metrics *m, const char *name, const char *help,
                                  const char *labels, const double *bounds, size_t n_bounds);

/* Updates. NULL series are ignored, so a failed registration never crashes the caller. */
void metrics_inc(metrics_series *s, double by);     /* counters: by >= 0; gauges: any */
void metrics_set(metrics_series *s, double v);      /* gauges */
void metrics_observe(metrics_series *s, double v);  /* histograms */

/* Current value of a counter or gauge (histograms: the observation count). */
double metrics_value(const metrics_series *s);

/* A gauge whose value is computed at render time (e.g. resident memory). */
typedef double (*metrics_gauge_fn)(void *ud);
int metrics_gauge_fn_add(metrics *m, const char *name, const char *help, metrics_gauge_fn fn,
                         void *ud);

/* Renders every family in registration order. Returns a malloc'd NUL-terminated string the
 * caller frees, or NULL when out of memory. */
char *metrics_render(metrics *m);

/* Writes v with \ " and newline escaped as the text format requires into out (size n);
 * returns out. */
char *metrics_label_escape(const char *v, char *out, size_t n);

/* Standard latency buckets in seconds (0.5 ms .. 60 s) for time-to-first-token, per-token,
 * end-to-end and queue-wait histograms. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_n_buckets;

/* Resident set size of this process in bytes (from /proc/self/statm), 0 when unknown. */
double metrics_process_rss(void *unused);

#endif
