/*
 * Unit tests: cluster/route — each policy shown by the decisions it makes: round robin order
 * and skipping, least outstanding tokens, power of two choices avoiding a slow backend, prefix
 * affinity (stickiness, spread, bounded load, consistent remapping), latency budgets, rules,
 * weighted splits (smooth round robin exact per window; rendezvous hashing of sticky keys:
 * stable, split by weight, moving only the keys of a backend that goes away).
 */
#include "testutil.h"

#include <math.h>

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

/* Sets rq's sticky key to "user-<k>" in buf (64 bytes). */
static void key_of(route_request *rq, char *buf, int k) {
    rq->sticky = buf;
    rq->sticky_len = (size_t)snprintf(buf, 64, "user-%d", k);
}

static void test_weighted_wrr_exact(void **state) {
    (void)state;
    route_backend b[2] = {{.name = "v1", .healthy = true, .weight = 9}, {.name = "v2", .healthy = true, .weight = 1}};
    route_state *st = mk(ROUTE_WEIGHTED, b, 2);
    /* no key: smooth weighted round robin, 9:1 exactly in every 10 consecutive requests */
    int seq[1000], total[2] = {0, 0};
    for (int i = 0; i < 1000; i++) total[seq[i] = route_pick(st, b, 2, NULL, NULL, NULL)]++;
    assert_int_equal(total[0], 900);
    assert_int_equal(total[1], 100);
    for (int i = 0; i + 10 <= 1000; i++) { /* every window, not only the aligned ones */
        int c = 0;
        for (int j = i; j < i + 10; j++) c += seq[j] == 1;
        assert_int_equal(c, 1);
    }
    /* an empty key is no key; keyed picks in between leave the rotation alone */
    char buf[64];
    route_request none = {.sticky = "", .sticky_len = 0}, keyed;
    key_of(&keyed, buf, 1);
    int c[2] = {0, 0};
    for (int i = 0; i < 1000; i++) {
        c[route_pick(st, b, 2, NULL, &none, NULL)]++;
        (void)route_pick(st, b, 2, NULL, &keyed, NULL);
    }
    assert_int_equal(c[0], 900);
    assert_int_equal(c[1], 100);
    route_free(st);

    /* 6:3:1 with a down: the other two renormalise to 3:1, exact in every 4 */
    route_backend t[3] = {{.name = "a", .healthy = true, .weight = 6}, {.name = "b", .healthy = true, .weight = 3},
                          {.name = "c", .healthy = true, .weight = 1}};
    st = mk(ROUTE_WEIGHTED, t, 3);
    t[0].healthy = false;
    for (int round = 0; round < 50; round++) {
        int k[3] = {0, 0, 0};
        for (int i = 0; i < 4; i++) k[route_pick(st, t, 3, NULL, NULL, NULL)]++;
        assert_int_equal(k[0], 0);
        assert_int_equal(k[1], 3);
        assert_int_equal(k[2], 1);
    }
    t[0].healthy = true; /* back: 6:3:1 over every 10 */
    for (int round = 0; round < 50; round++) {
        int k[3] = {0, 0, 0};
        for (int i = 0; i < 10; i++) k[route_pick(st, t, 3, NULL, NULL, NULL)]++;
        assert_int_equal(k[0], 6);
        assert_int_equal(k[1], 3);
        assert_int_equal(k[2], 1);
    }
    route_free(st);
}

static void test_weighted_sticky_stable(void **state) {
    (void)state;
    route_backend b[2] = {{.name = "v1", .healthy = true, .weight = 9}, {.name = "v2", .healthy = true, .weight = 1}};
    route_state *st = mk(ROUTE_WEIGHTED, b, 2);
    char buf[64];
    route_request rq;
    bool seen[2] = {false, false};
    for (int k = 0; k < 40; k++) {
        key_of(&rq, buf, k);
        int first = route_pick(st, b, 2, NULL, &rq, NULL);
        assert_true(first == 0 || first == 1);
        seen[first] = true;
        for (int rep = 0; rep < 1000; rep++) {
            assert_int_equal(route_pick(st, b, 2, NULL, &rq, NULL), first);
            if (rep % 7 == 0) (void)route_pick(st, b, 2, NULL, NULL, NULL); /* unkeyed traffic in between */
        }
        /* a second state over the same backends (another process, a restart) agrees */
        route_state *other = mk(ROUTE_WEIGHTED, b, 2);
        assert_int_equal(route_pick(other, b, 2, NULL, &rq, NULL), first);
        route_free(other);
    }
    assert_true(seen[0] && seen[1]); /* the 40 keys are not all on one backend */
    route_free(st);
}

static void test_weighted_sticky_split(void **state) {
    (void)state;
    route_backend b[2] = {{.name = "v1", .healthy = true, .weight = 9}, {.name = "v2", .healthy = true, .weight = 1}};
    route_state *st = mk(ROUTE_WEIGHTED, b, 2);
    char buf[64];
    route_request rq;
    int c[2] = {0, 0};
    for (int k = 0; k < 10000; k++) {
        key_of(&rq, buf, k);
        c[route_pick(st, b, 2, NULL, &rq, NULL)]++;
    }
    assert_int_equal(c[0] + c[1], 10000);
    assert_in_range(c[1], 800, 1200); /* 10% +- 2 points */
    route_free(st);

    /* 5:3:2 over three backends, each within 2 points */
    route_backend t[3] = {{.name = "a", .healthy = true, .weight = 5}, {.name = "b", .healthy = true, .weight = 3},
                          {.name = "c", .healthy = true, .weight = 2}};
    st = mk(ROUTE_WEIGHTED, t, 3);
    int k3[3] = {0, 0, 0};
    for (int k = 0; k < 10000; k++) {
        key_of(&rq, buf, k);
        k3[route_pick(st, t, 3, NULL, &rq, NULL)]++;
    }
    assert_in_range(k3[0], 4800, 5200);
    assert_in_range(k3[1], 2800, 3200);
    assert_in_range(k3[2], 1800, 2200);
    route_free(st);
}

static void test_weighted_sticky_moves_only_lost_keys(void **state) {
    (void)state;
    enum { N = 3, K = 6000 };
    route_backend b[N] = {{.name = "a", .healthy = true, .weight = 5}, {.name = "b", .healthy = true, .weight = 3},
                          {.name = "c", .healthy = true, .weight = 2}};
    route_state *st = mk(ROUTE_WEIGHTED, b, N);
    static int owner[K];
    char buf[64];
    route_request rq;
    for (int k = 0; k < K; k++) {
        key_of(&rq, buf, k);
        owner[k] = route_pick(st, b, N, NULL, &rq, NULL);
    }
    /* b unhealthy: b's keys move (to a and c, about 5:2), every other key stays put */
    b[1].healthy = false;
    int moved[N] = {0, 0, 0}, lost = 0;
    for (int k = 0; k < K; k++) {
        key_of(&rq, buf, k);
        int now = route_pick(st, b, N, NULL, &rq, NULL);
        assert_int_not_equal(now, 1);
        if (owner[k] != 1) assert_int_equal(now, owner[k]);
        else lost++, moved[now]++;
    }
    assert_true(lost > 1500);
    assert_in_range(moved[0] * 100 / lost, 64, 79); /* 5/7 = 71% */
    /* back: every key is home again */
    b[1].healthy = true;
    for (int k = 0; k < K; k++) {
        key_of(&rq, buf, k);
        assert_int_equal(route_pick(st, b, N, NULL, &rq, NULL), owner[k]);
    }
    /* a retry that excludes a key's backend goes elsewhere; the others are untouched */
    bool ex[N] = {false, false, true};
    for (int k = 0; k < K; k++) {
        key_of(&rq, buf, k);
        int now = route_pick(st, b, N, ex, &rq, NULL);
        assert_int_not_equal(now, 2);
        if (owner[k] != 2) assert_int_equal(now, owner[k]);
    }
    route_free(st);
}

static void test_weighted_zero_excluded_unhealthy(void **state) {
    (void)state;
    route_backend b[3] = {{.name = "v1", .healthy = true, .weight = 9}, {.name = "off", .healthy = true, .weight = 0},
                          {.name = "v2", .healthy = true, .weight = 1}};
    route_state *st = mk(ROUTE_WEIGHTED, b, 3);
    char buf[64];
    route_request rq;
    /* weight 0 gets nothing, keyed or not */
    int c[3] = {0, 0, 0};
    for (int i = 0; i < 1000; i++) c[route_pick(st, b, 3, NULL, NULL, NULL)]++;
    assert_int_equal(c[1], 0);
    assert_int_equal(c[0], 900);
    for (int k = 0; k < 10000; k++) {
        key_of(&rq, buf, k);
        assert_int_not_equal(route_pick(st, b, 3, NULL, &rq, NULL), 1);
    }
    /* nor do negative or non-finite weights */
    b[1].weight = -3;
    for (int i = 0; i < 100; i++) assert_int_not_equal(route_pick(st, b, 3, NULL, NULL, NULL), 1);
    b[1].weight = INFINITY;
    for (int i = 0; i < 100; i++) assert_int_not_equal(route_pick(st, b, 3, NULL, NULL, NULL), 1);
    b[1].weight = 0;
    /* excluded respected: with v1 excluded everything goes to v2, keyed or not */
    bool ex[3] = {true, false, false};
    for (int k = 0; k < 200; k++) {
        key_of(&rq, buf, k);
        assert_int_equal(route_pick(st, b, 3, ex, &rq, NULL), 2);
        assert_int_equal(route_pick(st, b, 3, ex, NULL, NULL), 2);
    }
    /* only a weight-0 backend left: nothing, not the weight-0 one */
    ex[2] = true;
    key_of(&rq, buf, 5);
    assert_int_equal(route_pick(st, b, 3, ex, NULL, NULL), -1);
    assert_int_equal(route_pick(st, b, 3, ex, &rq, NULL), -1);
    /* every backend unhealthy: -1, and the decision says so */
    b[0].healthy = b[1].healthy = b[2].healthy = false;
    route_decision d = {.backend = 7};
    assert_int_equal(route_pick(st, b, 3, NULL, NULL, &d), -1);
    assert_int_equal(d.backend, -1);
    assert_int_equal(route_pick(st, b, 3, NULL, &rq, &d), -1);
    assert_int_equal(d.backend, -1);
    /* healthy again: the split resumes exactly */
    b[0].healthy = b[1].healthy = b[2].healthy = true;
    int r[3] = {0, 0, 0};
    for (int i = 0; i < 1000; i++) r[route_pick(st, b, 3, NULL, NULL, NULL)]++;
    assert_int_equal(r[0], 900);
    assert_int_equal(r[2], 100);
    route_free(st);
}

static void test_names(void **state) {
    (void)state;
    assert_int_equal(route_policy_from_name("prefix_affinity"), ROUTE_PREFIX_AFFINITY);
    assert_int_equal(route_policy_from_name("fastest"), -1);
    assert_string_equal(route_policy_name(ROUTE_P2C), "p2c");
    assert_int_equal(route_policy_from_name("weighted"), ROUTE_WEIGHTED);
    assert_string_equal(route_policy_name(ROUTE_WEIGHTED), "weighted");
    assert_int_equal(route_policy_from_name(NULL), -1);
    assert_string_equal(route_policy_name(ROUTE_POLICY_COUNT), "?");
    for (int p = 0; p < ROUTE_POLICY_COUNT; p++)
        assert_int_equal(route_policy_from_name(route_policy_name((route_policy)p)), p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin),         cmocka_unit_test(test_least_loaded_counts_tokens),
        cmocka_unit_test(test_p2c_avoids_the_slow_backend), cmocka_unit_test(test_prefix_affinity),
        cmocka_unit_test(test_latency_budget),      cmocka_unit_test(test_rules),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_weighted_wrr_exact),
        cmocka_unit_test(test_weighted_sticky_stable),
        cmocka_unit_test(test_weighted_sticky_split),
        cmocka_unit_test(test_weighted_sticky_moves_only_lost_keys),
        cmocka_unit_test(test_weighted_zero_excluded_unhealthy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
