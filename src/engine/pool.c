/*
 * engine/pool — see pool.h.
 *
 * Job hand-off: the caller stores fn/ctx, then increments `gen` (release). Workers watch gen
 * (acquire); each runs fn and increments `done`. The caller runs its own share, then spins until
 * done == nth - 1. A worker that sees no new generation for SPIN_NS goes to sleep on the futex
 * word `gen`; the caller wakes sleepers only when `sleepers` is non-zero, so the common case is
 * one atomic store and no system call.
 *
 * Shared pools (pool_shared): every model of a process asks for the same pool, so a cascade or
 * a pipeline that calls one model after another finds the workers awake instead of waking a
 * sleeping pool per model (a futex wake-up on an idle virtual CPU can cost a millisecond) or
 * competing with another pool's spinning threads. Jobs on a shared pool take run_mu, so models
 * serving at the same time take turns instead of oversubscribing the cores.
 *
 * Barrier: a counter and a phase; the last thread to arrive resets the counter and flips the
 * phase, the others spin until the phase changes.
 */
#include "engine/pool.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"

#define SPIN_NS 2000000ll /* 2 ms of spinning before a worker sleeps */

struct pool {
    int nth;                       /* threads including the caller */
    bool is_shared;                /* made by pool_shared (set before anyone else sees it) */
    int refs;                      /* shared: users (under g_shared_mu) */
    pthread_mutex_t run_mu;        /* shared: one job at a time */
    struct pool *next_shared;
    pthread_t *threads;            /* [nth - 1] workers */
    pool_fn fn;                    /* the current job */
    void *ctx;
    _Alignas(64) atomic_uint gen;  /* job generation; also the futex word */
    atomic_int sleepers;           /* workers blocked in futex wait */
    atomic_int stop;               /* set by pool_free */
    _Alignas(64) atomic_int done;  /* workers finished with the current job */
    _Alignas(64) atomic_int bar_count; /* threads arrived at the current barrier */
    atomic_uint bar_phase;         /* flips when a barrier opens */
};

typedef struct worker_arg {
    pool *p;
    int ith;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Spin-wait step i: pause, and every so often give the CPU away, so that a machine with more
 * runnable threads than cores (other processes) does not spin whole time slices waiting for a
 * descheduled peer. */
static inline void wait_step(int i) {
    if ((i & 255) == 255) sched_yield();
    else cpu_relax();
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void futex_wait(atomic_uint *addr, unsigned val) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(atomic_uint *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    pool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    unsigned seen = 0; /* gen starts at 0: a job posted before this thread ran is not missed */
    for (;;) {
        /* spin, then sleep, until the generation moves */
        long long t0 = 0;
        unsigned g;
        for (int i = 0;; i++) {
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
            if (g != seen) break;
            cpu_relax();
            if ((i & 1023) == 1023) {
                long long t = now_ns();
                if (!t0) t0 = t;
                else if (t - t0 > SPIN_NS) {
                    atomic_fetch_add(&p->sleepers, 1);
                    if (atomic_load_explicit(&p->gen, memory_order_seq_cst) == seen)
                        futex_wait(&p->gen, seen);
                    atomic_fetch_sub(&p->sleepers, 1);
                    t0 = 0;
                }
            }
        }
        seen = g;
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        p->fn(p->ctx, ith, p->nth);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
    return NULL;
}

pool *pool_init(int n_threads) {
    SH_ASSERT(n_threads >= 1);
    pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->nth = n_threads;
    pthread_mutex_init(&p->run_mu, NULL);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            free(p);
            return NULL;
        }
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (worker_arg){p, i};
        if (!wa || pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
            free(wa);
            p->nth = i; /* join only the started ones */
            pool_free(p);
            return NULL;
        }
    }
    return p;
}

static pthread_mutex_t g_shared_mu = PTHREAD_MUTEX_INITIALIZER;
static pool *g_shared; /* the shared pools, one per thread count */

pool *pool_shared(int n_threads) {
    pthread_mutex_lock(&g_shared_mu);
    pool *p = g_shared;
    while (p && p->nth != n_threads) p = p->next_shared;
    if (!p && (p = pool_init(n_threads))) {
        p->is_shared = true;
        p->next_shared = g_shared;
        g_shared = p;
    }
    if (p) p->refs++;
    pthread_mutex_unlock(&g_shared_mu);
    return p;
}

static void pool_stop(pool *p);

void pool_free(pool *p) {
    if (!p) return;
    if (p->is_shared) {
        pthread_mutex_lock(&g_shared_mu);
        bool last = --p->refs == 0;
        if (last) {
            pool **pp = &g_shared;
            while (*pp != p) pp = &(*pp)->next_shared;
            *pp = p->next_shared;
        }
        pthread_mutex_unlock(&g_shared_mu);
        if (!last) return;
    }
    pool_stop(p);
}

static void pool_stop(pool *p) {
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    futex_wake_all(&p->gen);
    for (int i = 1; i < p->nth; i++) pthread_join(p->threads[i - 1], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->run_mu);
    free(p);
}

int pool_threads(const pool *p) { return p->nth; }

void pool_run(pool *p, pool_fn fn, void *ctx) {
    if (p->nth == 1) { /* no workers to share: callers on several threads run side by side */
        fn(ctx, 0, 1);
        return;
    }
    const bool shared = p->is_shared;
    if (shared) pthread_mutex_lock(&p->run_mu);
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    /* seq_cst on both sides (here and the worker's sleepers increment then gen load): either
     * the worker sees the new generation or we see it registered as a sleeper and wake it */
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&p->sleepers, memory_order_seq_cst) > 0) futex_wake_all(&p->gen);
    fn(ctx, 0, p->nth);
    for (int i = 0; atomic_load_explicit(&p->done, memory_order_acquire) != p->nth - 1; i++)
        wait_step(i);
    if (shared) pthread_mutex_unlock(&p->run_mu);
}

void pool_barrier(pool *p) {
    if (p->nth == 1) return;
    unsigned phase = atomic_load_explicit(&p->bar_phase, memory_order_relaxed);
    if (atomic_fetch_add_explicit(&p->bar_count, 1, memory_order_acq_rel) == p->nth - 1) {
        atomic_store_explicit(&p->bar_count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->bar_phase, 1, memory_order_release);
    } else {
        for (int i = 0; atomic_load_explicit(&p->bar_phase, memory_order_acquire) == phase; i++)
            wait_step(i);
    }
}
