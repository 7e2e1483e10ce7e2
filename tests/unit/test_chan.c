/*
 * Unit tests: http/chan — order and completeness across threads, keep-alives when idle, the
 * byte bound, abort from either side, and the two-reference lifetime.
 */
#include "testutil.h"

#include <pthread.h>

#include "http/chan.h"

static void *producer(void *p) {
    chan *c = p;
    char line[32];
    for (int i = 0; i < 20000; i++) {
        int k = snprintf(line, sizeof line, "%d\n", i);
        if (chan_write(c, line, (size_t)k)) break;
    }
    chan_close(c);
    chan_release(c);
    return NULL;
}

static void test_all_bytes_in_order(void **state) {
    (void)state;
    chan *c = chan_init(1 << 24, 1000, NULL);
    pthread_t t;
    pthread_create(&t, NULL, producer, c);
    char *all = malloc(1 << 20), buf[777];
    size_t len = 0;
    ssize_t n;
    while ((n = chan_pull(c, buf, sizeof buf)) >= 0) {
        memcpy(all + len, buf, (size_t)n);
        len += (size_t)n;
    }
    pthread_join(t, NULL);
    all[len] = 0;
    char *p = all;
    for (int i = 0; i < 20000; i++) {
        char *e;
        long v = strtol(p, &e, 10);
        assert_int_equal(v, i);
        assert_int_equal(*e, '\n');
        p = e + 1;
    }
    assert_int_equal(*p, 0);
    free(all);
    chan_release(c);
}

static void test_keepalive_and_bound(void **state) {
    (void)state;
    chan *c = chan_init(100, 20, ": ka\n\n");
    char buf[64];
    ssize_t n = chan_pull(c, buf, sizeof buf); /* nothing written: keep-alive after ~20 ms */
    assert_int_equal(n, 6);
    assert_memory_equal(buf, ": ka\n\n", 6);
    char big[80] = {0};
    assert_int_equal(chan_write(c, big, 80), 0);
    assert_int_equal(chan_write(c, big, 80), -1); /* over 100 pending bytes: aborted */
    assert_true(chan_aborted(c));
    assert_int_equal(chan_pull(c, buf, sizeof buf), -1);
    chan_release(c);
    chan_release(c);
}

static void test_consumer_abort(void **state) {
    (void)state;
    chan *c = chan_init(0, 0, NULL);
    assert_int_equal(chan_write(c, "x", 1), 0);
    chan_abort(c); /* the client went away */
    assert_int_equal(chan_write(c, "y", 1), -1);
    chan_release(c);
    chan_close(c);
    chan_release(c);
    chan_release(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_bytes_in_order),
        cmocka_unit_test(test_keepalive_and_bound),
        cmocka_unit_test(test_consumer_abort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
