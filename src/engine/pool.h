/*
 * engine/pool — a small fixed thread pool for the forward pass.
 *
 * pool_run(p, fn, ctx) runs fn(ctx, ith, nth) on all nth threads at once (the calling thread
 * is ith = 0) and returns when every thread has returned. Inside fn, pool_barrier(p) waits
 * until all nth threads have reached it, so one job can be a sequence of phases (the whole
 * forward pass is one job with a barrier between dependent operations).
 *
 * Hand-offs are cheap: workers spin on an atomic generation counter for a while (a decode
 * step is a few milliseconds, sampling between steps a few tens of microseconds) and only then
 * sleep on a futex; barriers spin with a pause instruction. With nth = 1 no thread is started.
 */
#ifndef SHOAL_ENGINE_POOL_H
#define SHOAL_ENGINE_POOL_H

typedef struct pool pool;

typedef void (*pool_fn)(void *ctx, int ith, int nth);

/* Starts n_threads - 1 workers (n_threads >= 1). NULL when a thread cannot be started. */
pool *pool_init(int n_threads);

/* The process's shared pool of n_threads (made on first use, counted per user): the engines
 * of all models in one process use it, so that calling one model after another finds its
 * workers awake. Its jobs run one at a time (pool_run may be called from several threads; they
 * take turns). pool_free releases one use; the last one stops the workers. NULL when a thread
 * cannot be started. */
pool *pool_shared(int n_threads);

/* Stops and joins the workers (a shared pool: when its last user frees it). NULL is fine. */
void pool_free(pool *p);

int pool_threads(const pool *p);

/* Runs fn on every thread; not reentrant. A private pool: one job at a time, from one caller
 * thread; a shared pool: callers on several threads take turns. */
void pool_run(pool *p, pool_fn fn, void *ctx);

/* Waits for all threads of the running job. Must be called by every thread the same number of
 * times. */
void pool_barrier(pool *p);

#endif
