/*
 * test_engine_pool — the forward pass's thread pool: every thread runs every job, barriers
 * separate phases, and workers that went to sleep (idle > 2 ms) wake for the next job.
 */
#include "testutil.h"

#include <stdatomic.h>
#include <time.h>

#include "engine/pool.h"

typedef struct job {
    pool *p;
    atomic_int ran;          /* threads that entered the job */
    int slots[8];            /* phase 1 writes, phase 2 reads */
    atomic_int sum_ok;       /* threads that saw every slot written after the barrier */
    int round;
} job;

static void job_fn(void *ctx, int ith, int nth) {
    job *j = ctx;
    atomic_fetch_add(&j->ran, 1);
    j->slots[ith] = j->round * 10 + ith;
    pool_barrier(j->p);
    int ok = 1;
    for (int i = 0; i < nth; i++) ok &= j->slots[i] == j->round * 10 + i;
    pool_barrier(j->p); /* nobody starts the next round's writes while others still read */
    if (ok) atomic_fetch_add(&j->sum_ok, 1);
}

static void run_rounds(int nth, int rounds, int sleep_every) {
    pool *p = pool_init(nth);
    assert_non_null(p);
    assert_int_equal(pool_threads(p), nth);
    job j = {.p = p};
    for (int r = 0; r < rounds; r++) {
        atomic_store(&j.ran, 0);
        atomic_store(&j.sum_ok, 0);
        j.round = r;
        pool_run(p, job_fn, &j);
        assert_int_equal(atomic_load(&j.ran), nth);
        assert_int_equal(atomic_load(&j.sum_ok), nth);
        if (sleep_every && r % sleep_every == 0) {
            struct timespec ts = {0, 4 * 1000 * 1000}; /* past the spin time: workers sleep */
            nanosleep(&ts, NULL);
        }
    }
    pool_free(p);
}

static void test_pool_many_jobs(void **state) {
    (void)state;
    run_rounds(1, 100, 0);
    run_rounds(2, 1000, 0);
    run_rounds(3, 300, 0);
}

static void test_pool_sleeping_workers(void **state) {
    (void)state;
    run_rounds(2, 40, 1);
    run_rounds(4, 40, 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_many_jobs),
        cmocka_unit_test(test_pool_sleeping_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
