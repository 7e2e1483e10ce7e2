/*
 * Unit tests: cluster/route — each policy shown by the decisions it makes: round robin order
 * and skipping, least outstanding tokens, power of two choices avoiding a slow backend, prefix
 * affinity (stickiness, spread, bounded load, consistent remapping), latency budgets, rules.
 */
#include "testutil.h"

#include "cluster/route.h"

static route_state *mk(route_policy p, const route_backend *b, int n) {
    route_config c = {.policy = p, .seed = 7};
    sh_err err;
    route_state *st = route_init(&c, b, n, &err);
    if (!st) fail_msg("%s", err.msg);
    return st;
}

static void test_round_robin(void **state) {
    (void)state;
    route_backend b[3] = {{.name = "a", .healthy = true}, {.name = "b", .healthy = true}, {.name = "c", .healthy = true}};
    route_state *st = mk(ROUTE_ROUND_ROBIN, b, 3);
    int seq[6];
    for (int i = 0; i < 6; i++) seq[i] = route_pick(st, b, 3, NULL, NULL, NULL);
    int want[6] = {0, 1, 2, 0, 1, 2};
    assert_memory_equal(seq, want, sizeof want);
    b[1].healthy = false; /* skipped while down */
    for (int i = 0; i < 4; i++) assert_int_not_equal(route_pick(st, b, 3, NULL, NULL, NULL), 1);
    bool ex[3] = {true, false, false}; /* a retry excludes the backend that failed */
    assert_int_equal(route_pick(st, b, 3, ex, NULL, NULL), 2);
    b[0].healthy = b[2].healthy = false;
    assert_int_equal(route_pick(st, b, 3, NULL, NULL, NULL), -1);
    route_free(st);
}

static void test_least_loaded_counts_tokens(void **state) {
    (void)state;
    /* b has fewer requests but far more tokens in flight: a wins */
    route_backend b[3] = {{.name = "a", .healthy = true, .outstanding_tokens = 300, .outstanding = 3},
                          {.name = "b", .healthy = true, .outstanding_tokens = 5000, .outstanding = 1},
                          {.name = "c", .healthy = true, .outstanding_tokens = 300, .outstanding = 2}};
    route_state *st = mk(ROUTE_LEAST_LOADED, b, 3);
    assert_int_equal(route_pick(st, b, 3, NULL, NULL, NULL), 2); /* tie on tokens: fewer requests */
    b[2].healthy = false;
    assert_int_equal(route_pick(st, b, 3, NULL, NULL, NULL), 0);
    route_free(st);
}

static void test_p2c_avoids_the_slow_backend(void **state) {
    (void)state;
    route_backend b[4] = {{.name = "a", .healthy = true, .ewma_ms = 10},
                          {.name = "slow", .healthy = true, .ewma_ms = 400},
                          {.name = "c", .healthy = true, .ewma_ms = 12},
                          {.name = "d", .healthy = true, .ewma_ms = 11}};
    route_state *st = mk(ROUTE_P2C, b, 4);
    int count[4] = {0};
    for (int i = 0; i < 3000; i++) count[route_pick(st, b, 4, NULL, NULL, NULL)]++;
    assert_int_equal(count[1], 0);           /* it always loses its pairing */
    assert_true(count[0] > 500 && count[2] > 200 && count[3] > 300); /* load still spreads */
    route_free(st);
}

static void test_prefix_affinity(void **state) {
    (void)state;
    enum { N = 4 };
    route_backend b[N] = {{.name = "node-a", .healthy = true}, {.name = "node-b", .healthy = true},
                          {.name = "node-c", .healthy = true}, {.name = "node-d", .healthy = true}};
    route_state *st = mk(ROUTE_PREFIX_AFFINITY, b, N);
    const char *sys = "You are a helpful voice assistant for the kitchen. User: ";
    route_request rq = {.prefix = sys, .prefix_len = strlen(sys)};
    int first = route_pick(st, b, N, NULL, &rq, NULL);
    for (int i = 0; i < 20; i++) assert_int_equal(route_pick(st, b, N, NULL, &rq, NULL), first);

    /* 400 distinct prefixes spread over every backend */
    int owner[400], per[N] = {0};
    char buf[64];
    for (int i = 0; i < 400; i++) {
        snprintf(buf, sizeof buf, "conversation %d: hello", i);
        route_request r = {.prefix = buf, .prefix_len = strlen(buf)};
        owner[i] = route_pick(st, b, N, NULL, &r, NULL);
        per[owner[i]]++;
    }
    for (int k = 0; k < N; k++) assert_true(per[k] > 40);

    /* a backend going down moves only the prefixes it owned */
    b[2].healthy = false;
    int moved_other = 0;
    for (int i = 0; i < 400; i++) {
        snprintf(buf, sizeof buf, "conversation %d: hello", i);
        route_request r = {.prefix = buf, .prefix_len = strlen(buf)};
        int now = route_pick(st, b, N, NULL, &r, NULL);
        assert_int_not_equal(now, 2);
        if (owner[i] != 2 && now != owner[i]) moved_other++;
    }
    assert_int_equal(moved_other, 0);
    b[2].healthy = true;

    /* bounded load: the hot prefix's owner is busy far beyond the mean, so it overflows */
    b[first].outstanding = 10;
    int next = route_pick(st, b, N, NULL, &rq, NULL);
    assert_int_not_equal(next, first);
    b[first].outstanding = 1; /* back within the bound: home again */
    assert_int_equal(route_pick(st, b, N, NULL, &rq, NULL), first);
    route_free(st);
}

static void test_latency_budget(void **state) {
    (void)state;
    route_backend b[3] = {{.name = "tiny", .healthy = true, .p95_ms = 15, .capability = 1},
                          {.name = "small", .healthy = true, .p95_ms = 60, .capability = 2},
                          {.name = "large", .healthy = true, .p95_ms = 400, .capability = 3}};
    route_state *st = mk(ROUTE_LATENCY_BUDGET, b, 3);
    route_decision d;
    route_request rq = {.deadline_ms = 80};
    assert_int_equal(route_pick(st, b, 3, NULL, &rq, &d), 1); /* the most capable that fits */
    assert_false(d.degraded);
    rq.deadline_ms = 20;
    assert_int_equal(route_pick(st, b, 3, NULL, &rq, &d), 0); /* tight budget: the fast model */
    rq.deadline_ms = 1000;
    assert_int_equal(route_pick(st, b, 3, NULL, &rq, &d), 2);
    rq.deadline_ms = 5; /* nothing fits: the fastest, marked degraded */
    assert_int_equal(route_pick(st, b, 3, NULL, &rq, &d), 0);
    assert_true(d.degraded);
    rq.deadline_ms = 0; /* no deadline: the most capable */
    assert_int_equal(route_pick(st, b, 3, NULL, &rq, &d), 2);
    route_free(st);
}

static void test_rules(void **state) {
    (void)state;
    route_rule rules[3] = {{.pattern = "weather|temperature|forecast", .target = "intent"},
                           {.meta_key = "tier", .meta_value = "premium", .target = "large"},
                           {.pattern = "^translate ", .target = "translator"}};
    sh_err err;
    route_rules *r = route_rules_init(rules, 3, &err);
    assert_non_null(r);
    assert_string_equal(route_rules_match(r, "What's the Weather like?", NULL, NULL, 0), "intent");
    assert_string_equal(route_rules_match(r, "translate this", NULL, NULL, 0), "translator");
    const char *k[1] = {"tier"}, *v[1] = {"premium"};
    assert_string_equal(route_rules_match(r, "hello", k, v, 1), "large");
    assert_null(route_rules_match(r, "tell me a story", NULL, NULL, 0));
    route_rules_free(r);
    route_rule bad[1] = {{.pattern = "(unclosed", .target = "x"}};
    assert_null(route_rules_init(bad, 1, &err));
    assert_non_null(strstr(err.msg, "rule 1: pattern '(unclosed'"));
    route_rule notarget[1] = {{.pattern = "x"}};
    assert_null(route_rules_init(notarget, 1, &err));
    assert_non_null(strstr(err.msg, "no target"));
}

static void test_weighted(void **state) {
    (void)state;
    route_backend b[2] = {{.name = "v1", .healthy = true, .weight = 9}, {.name = "v2", .healthy = true, .weight = 1}};
    route_state *st = mk(ROUTE_WEIGHTED, b, 2);
    route_request rq = {0};
    /* no key: smooth weighted round robin, 9:1 exactly over every 10 */
    for (int round = 0; round < 100; round++) {
        int c[2] = {0, 0};
        for (int i = 0; i < 10; i++) c[route_pick(st, b, 2, NULL, &rq, NULL)]++;
        assert_int_equal(c[0], 9);
        assert_int_equal(c[1], 1);
    }
    /* sticky keys: stable, and 10000 keys split about 90/10 */
    int c[2] = {0, 0}, first[10000];
    char key[32];
    for (int k = 0; k < 10000; k++) {
        rq.sticky = key;
        rq.sticky_len = (size_t)snprintf(key, sizeof key, "user-%d", k);
        first[k] = route_pick(st, b, 2, NULL, &rq, NULL);
        c[first[k]]++;
        for (int rep = 0; rep < 3; rep++) assert_int_equal(route_pick(st, b, 2, NULL, &rq, NULL), first[k]);
    }
    assert_true(c[1] > 800 && c[1] < 1200);
    /* v2 unhealthy: its keys move to v1, v1's keys stay; back again when v2 returns */
    b[1].healthy = false;
    for (int k = 0; k < 10000; k++) {
        rq.sticky_len = (size_t)snprintf(key, sizeof key, "user-%d", k);
        assert_int_equal(route_pick(st, b, 2, NULL, &rq, NULL), 0);
    }
    b[1].healthy = true;
    for (int k = 0; k < 10000; k++) {
        rq.sticky_len = (size_t)snprintf(key, sizeof key, "user-%d", k);
        assert_int_equal(route_pick(st, b, 2, NULL, &rq, NULL), first[k]);
    }
    /* weight 0 gets nothing; excluded respected; nothing usable: -1 */
    b[1].weight = 0;
    rq.sticky = NULL;
    for (int i = 0; i < 50; i++) assert_int_equal(route_pick(st, b, 2, NULL, &rq, NULL), 0);
    bool ex[2] = {true, false};
    assert_int_equal(route_pick(st, b, 2, ex, &rq, NULL), -1);
    b[1].weight = 1;
    assert_int_equal(route_pick(st, b, 2, ex, &rq, NULL), 1);
    b[0].healthy = b[1].healthy = false;
    assert_int_equal(route_pick(st, b, 2, NULL, &rq, NULL), -1);
    route_free(st);
}

static void test_names(void **state) {
    (void)state;
    assert_int_equal(route_policy_from_name("prefix_affinity"), ROUTE_PREFIX_AFFINITY);
    assert_int_equal(route_policy_from_name("fastest"), -1);
    assert_string_equal(route_policy_name(ROUTE_P2C), "p2c");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin),         cmocka_unit_test(test_least_loaded_counts_tokens),
        cmocka_unit_test(test_p2c_avoids_the_slow_backend), cmocka_unit_test(test_prefix_affinity),
        cmocka_unit_test(test_latency_budget),      cmocka_unit_test(test_rules),
        cmocka_unit_test(test_names),               cmocka_unit_test(test_weighted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
