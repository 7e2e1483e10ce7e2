/*
 * Unit tests: cluster/config — the example file parses to the expected struct, defaults,
 * bare-string backends, aliases, and every validation error with its line and its words.
 */
#include "testutil.h"

#include <errno.h>
#include <sys/stat.h>

#include "cluster/config.h"

/* ============================================================ helpers ===== */

/* text with every "$T" replaced by the test's temporary directory (a static buffer). */
static const char *T(const char *text) {
    static char buf[8192];
    const char *dir = tu_tmpdir();
    size_t o = 0;
    for (const char *s = text; *s && o < sizeof buf - 300; s++) {
        if (s[0] == '$' && s[1] == 'T') o += (size_t)snprintf(buf + o, sizeof buf - o, "%s", dir), s++;
        else buf[o++] = *s;
    }
    buf[o] = 0;
    return buf;
}

static void touch(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) fail_msg("%s: %s", path, strerror(errno));
    fclose(f);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) fail_msg("%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

static int setup(void **state) {
    (void)state;
    char p[512];
    snprintf(p, sizeof p, "%s/smol.gguf", tu_tmpdir());
    touch(p);
    snprintf(p, sizeof p, "%s/tiny.gguf", tu_tmpdir());
    touch(p);
    return 0;
}

static cluster_config *parse(const char *yaml, sh_err *err) {
    return ccfg_parse(yaml, strlen(yaml), "t.yaml", err);
}

static cluster_config *ok(const char *yaml) {
    sh_err err;
    cluster_config *c = parse(yaml, &err);
    if (!c) fail_msg("unexpected error: %s", err.msg);
    return c;
}

/* The config is refused with "t.yaml:LINE: ...WANT...". */
static void bad_at(const char *yaml, int line, const char *want, const char *file, int src_line) {
    sh_err err;
    cluster_config *c = parse(yaml, &err);
    if (c) {
        ccfg_free(c);
        _fail(file, src_line);
    }
    char prefix[32];
    snprintf(prefix, sizeof prefix, "t.yaml:%d: ", line);
    if (strncmp(err.msg, prefix, strlen(prefix)) || !strstr(err.msg, want) || strchr(err.msg, '\n')) {
        print_error("want '%s...%s', got '%s'\n", prefix, want, err.msg);
        _fail(file, src_line);
    }
}
#define bad(yaml, line, want) bad_at((yaml), (line), (want), __FILE__, __LINE__)

/* A valid config's first lines: one local (smol), two nodes (edge-a, edge-b). */
#define PRE                                                                                        \
    "local:\n"                                                                                     \
    "  - {name: smol, path: $T/smol.gguf}\n"                                                       \
    "nodes:\n"                                                                                     \
    "  - {name: edge-a, url: \"http://10.0.0.2:8080\"}\n"                                          \
    "  - {name: edge-b, url: \"http://10.0.0.3:8080/\"}\n"
#define PRE_LINES 5
#define MODEL_OK "models:\n  - {name: chat, backends: [smol]}\n" /* lines 6-7 after PRE */

/* ============================================================ valid configs ===== */

static void test_example_file(void **state) {
    (void)state;
    char dir[512], p[600], cmd[2600];
    snprintf(dir, sizeof dir, "%s/ex", tu_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s/models && cp docs/cluster-reference.yaml %s/cluster.yaml && touch %s/models/smollm2-135m-q8_0.gguf %s/models/tiny-q4_0.gguf",
             dir, dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    setenv("SHOAL_KEY", "client-key", 1);
    setenv("EDGE_A_KEY", "edge-key", 1);
    snprintf(p, sizeof p, "%s/cluster.yaml", dir);
    sh_err err;
    cluster_config *c = ccfg_load(p, &err);
    if (!c) fail_msg("%s", err.msg);
    assert_string_equal(c->path, p);
    assert_string_equal(c->host, "127.0.0.1");
    assert_int_equal(c->port, 8080);
    assert_string_equal(c->api_key, "client-key");
    assert_string_equal(c->join_token, "s3cret");
    assert_true(c->health_interval_ms == 500 && c->health_timeout_ms == 400 && c->cooldown_ms == 2000);
    assert_int_equal(c->fail_threshold, 3);
    assert_int_equal(c->max_attempts, 3);
    assert_true(c->connect_timeout_ms == 500 && c->first_byte_timeout_ms == 30000);
    assert_true(c->heartbeat_ms == 1000 && c->node_ttl_ms == 3000);
    assert_true(c->slots == 8 && c->ctx == 2048 && c->threads == 2);

    assert_int_equal(c->n_locals, 2);
    assert_string_equal(c->locals[0].name, "smol");
    snprintf(p, sizeof p, "%s/models/smollm2-135m-q8_0.gguf", dir); /* relative to the file */
    assert_string_equal(c->locals[0].path, p);
    assert_int_equal(c->n_nodes, 2);
    assert_string_equal(c->nodes[0].url, "http://10.0.0.2:8080");
    assert_string_equal(c->nodes[0].api_key, "edge-key");
    assert_string_equal(c->nodes[1].url, "https://edge-b.example.org"); /* slash stripped */
    assert_null(c->nodes[1].api_key);

    assert_int_equal(c->n_models, 5);
    const ccfg_model *m = &c->models[0];
    assert_string_equal(m->name, "chat");
    assert_int_equal(m->n_aliases, 2);
    assert_string_equal(m->aliases[0], "gpt-4o-mini");
    assert_int_equal(m->policy, ROUTE_PREFIX_AFFINITY);
    assert_int_equal(m->prefix_bytes, 256);
    assert_int_equal(m->n_backends, 2);
    assert_string_equal(m->backends[0].local, "smol");
    assert_null(m->backends[0].node);
    assert_null(m->backends[0].model);
    assert_string_equal(m->backends[1].node, "edge-a");
    assert_string_equal(m->backends[1].model, "smollm2");
    assert_int_equal(m->backends[1].capability, 1);
    assert_string_equal(m->fallback, "tiny");
    assert_true(m->hedge);
    assert_true(m->hedge_after_ms == 0);
    assert_true(m->line > 0 && m->backends[1].line > m->line);

    m = &c->models[1]; /* bare names: tiny is a local, edge-b a node asked for "tiny" */
    assert_int_equal(m->policy, ROUTE_LEAST_LOADED);
    assert_string_equal(m->backends[0].local, "tiny");
    assert_string_equal(m->backends[1].node, "edge-b");
    assert_string_equal(m->backends[1].model, "tiny");
    assert_int_equal(c->models[2].policy, ROUTE_P2C);
    assert_int_equal(c->models[3].policy, ROUTE_LATENCY_BUDGET);
    assert_int_equal(c->models[3].backends[1].capability, 2);

    m = &c->models[4];
    assert_string_equal(m->name, "assistant");
    assert_int_equal(m->policy, CCFG_POLICY_RULES);
    assert_int_equal(m->n_backends, 0);
    assert_int_equal(m->n_rules, 2);
    assert_string_equal(m->rules[0].pattern, "weather|temperature");
    assert_string_equal(m->rules[0].target, "intent");
    assert_null(m->rules[1].pattern);
    assert_string_equal(m->rules[1].meta_key, "task");
    assert_string_equal(m->rules[1].meta_value, "classify");
    assert_string_equal(m->rules[1].target, "classifier");
    assert_string_equal(m->default_target, "chat");
    assert_ptr_equal(ccfg_find_model(c, "default"), &c->models[0]);
    ccfg_free(c);
    unsetenv("SHOAL_KEY");
    unsetenv("EDGE_A_KEY");
}

static void test_defaults(void **state) {
    (void)state;
    cluster_config *c = ok(T("local: [{name: smol, path: $T/smol.gguf}]\nmodels: [{name: chat, backends: [smol]}]\n"));
    assert_null(c->host);
    assert_int_equal(c->port, -1);
    assert_null(c->api_key);
    assert_null(c->join_token);
    assert_true(c->health_interval_ms == 500 && c->health_timeout_ms == 400 && c->cooldown_ms == 2000);
    assert_int_equal(c->fail_threshold, 3);
    assert_int_equal(c->max_attempts, 3);
    assert_true(c->connect_timeout_ms == 500 && c->first_byte_timeout_ms == 30000);
    assert_true(c->heartbeat_ms == 1000 && c->node_ttl_ms == 3000);
    assert_true(c->slots == 0 && c->ctx == 0 && c->threads == 0);
    assert_int_equal(c->n_nodes, 0); /* locals only: the single-machine setup */
    const ccfg_model *m = &c->models[0];
    assert_int_equal(m->policy, ROUTE_ROUND_ROBIN);
    assert_int_equal(m->prefix_bytes, 256);
    assert_true(m->load_factor == 1.25);
    assert_int_equal(m->vnodes, 64);
    assert_false(m->hedge);
    assert_null(m->fallback);
    assert_int_equal(m->n_aliases, 0);
    assert_string_equal(c->path, "t.yaml");
    ccfg_free(c);

    /* partial sections keep the other defaults; null values count as absent */
    c = ok(T(PRE "health: {timeout_ms: 250}\nretry:\nserve: {ctx: 512}\n"
              "models:\n  - {name: c, policy: prefix_affinity, load_factor: 2.5, vnodes: 16, prefix_bytes: 64, backends: [smol], fallback: ~}\n"));
    assert_true(c->health_timeout_ms == 250 && c->health_interval_ms == 500);
    assert_int_equal(c->max_attempts, 3);
    assert_int_equal(c->ctx, 512);
    assert_true(c->models[0].load_factor == 2.5);
    assert_int_equal(c->models[0].vnodes, 16);
    assert_int_equal(c->models[0].prefix_bytes, 64);
    assert_null(c->models[0].fallback);
    ccfg_free(c);
}

static void test_bare_backends(void **state) {
    (void)state;
    /* "dual" is both a local and a node: the local wins */
    cluster_config *c = ok(T("local:\n  - {name: dual, path: $T/smol.gguf}\n"
                             "nodes:\n  - {name: dual, url: http://h:1}\n  - {name: far, url: http://h:2}\n"
                             "models:\n  - name: chat\n    backends: [dual, far, {node: dual}]\n"));
    const ccfg_model *m = &c->models[0];
    assert_int_equal(m->n_backends, 3);
    assert_string_equal(m->backends[0].local, "dual");
    assert_null(m->backends[0].node);
    assert_string_equal(m->backends[1].node, "far");
    assert_string_equal(m->backends[1].model, "chat"); /* the model name itself */
    assert_string_equal(m->backends[2].node, "dual");
    assert_string_equal(m->backends[2].model, "chat");
    ccfg_free(c);
    bad(T(PRE "models:\n  - name: chat\n    backends: [smol, nowhere]\n"), 8, "'nowhere' is neither a local nor a node");
    bad(T(PRE "models:\n  - name: chat\n    backends: [[smol]]\n"), 8, "expected a local/node name or a mapping, got a list");
}

static void test_find_model_and_free(void **state) {
    (void)state;
    cluster_config *c = ok(T(PRE "models:\n  - {name: chat, aliases: [gpt-4o-mini, default], backends: [smol]}\n"
                                 "  - {name: other, backends: [edge-a], fallback: default}\n"));
    assert_ptr_equal(ccfg_find_model(c, "chat"), &c->models[0]);
    assert_ptr_equal(ccfg_find_model(c, "gpt-4o-mini"), &c->models[0]);
    assert_ptr_equal(ccfg_find_model(c, "default"), &c->models[0]);
    assert_ptr_equal(ccfg_find_model(c, "other"), &c->models[1]);
    assert_null(ccfg_find_model(c, "Chat")); /* names are case-sensitive */
    assert_null(ccfg_find_model(c, NULL));
    assert_null(ccfg_find_model(NULL, "chat"));
    assert_string_equal(c->models[1].fallback, "chat"); /* an alias target is stored as the name */
    ccfg_free(c);
    ccfg_free(NULL);
}

static void test_relative_paths_and_load(void **state) {
    (void)state;
    char dir[512], p[600], m[600];
    snprintf(dir, sizeof dir, "%s/rel", tu_tmpdir());
    mkdir(dir, 0700);
    snprintf(m, sizeof m, "%s/m.gguf", dir);
    touch(m);
    snprintf(p, sizeof p, "%s/key.txt", dir);
    write_file(p, "sekrit\r\nsecond line\n");
    snprintf(p, sizeof p, "%s/c.yaml", dir);
    write_file(p, "api_key_file: key.txt\nlocal: [{name: a, path: m.gguf}]\nmodels: [{name: x, backends: [a]}]\n");
    sh_err err;
    cluster_config *c = ccfg_load(p, &err);
    if (!c) fail_msg("%s", err.msg);
    assert_string_equal(c->locals[0].path, m);
    assert_string_equal(c->api_key, "sekrit"); /* first line, CR LF stripped */
    ccfg_free(c);

    snprintf(p, sizeof p, "%s/missing.yaml", dir);
    assert_null(ccfg_load(p, &err));
    assert_non_null(strstr(err.msg, "missing.yaml: cannot read config: No such file or directory"));
    assert_null(ccfg_load(dir, &err));
    assert_non_null(strstr(err.msg, "Is a directory"));
}

/* ============================================================ YAML-level errors ===== */

static void test_yaml_errors(void **state) {
    (void)state;
    bad("models: [a,\n  b\n\nfoo: [", 4, "YAML syntax error");
    bad("a: b\n c: d\n", 2, "YAML syntax error");
    bad("", 1, "empty config");
    bad("# only a comment\n", 1, "empty config");
    bad("- a\n- b\n", 1, "the config: expected a mapping, got a list");
    bad("just text\n", 1, "expected a mapping, got a scalar");
    bad(T(PRE MODEL_OK "---\nmodels: []\n"), 8, "more than one YAML document");
    bad(T(PRE "models:\n  - &m {name: chat, backends: [smol]}\n  - *m\n"), 8, "aliases (*name) are not supported");
    bad("a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n", 1,
        "nested deeper than 32 levels");
    bad("\"models\\0x\": []\n", 1, "unknown key with a NUL byte in the top level"); /* never read as "models" */
    bad("mo\xff\xfe: 1\n", 1, "YAML syntax error");
    bad("models:\n  - {name: \"a\\0b\", backends: [x]}\n", 2, "name: expected a string, got a string with a NUL byte");
    bad("{[a]: 1}\n", 1, "unknown key a list in the top level");

    /* bytes after a NUL are still read (the length counts, not the terminator) */
    const char text[] = "models:\n\0  - x\n";
    sh_err err;
    assert_null(ccfg_parse(text, sizeof text - 1, "t.yaml", &err));
    assert_non_null(strstr(err.msg, "t.yaml:2: YAML syntax error"));
}

static void test_kinds(void **state) {
    (void)state;
    bad("models: {a: 1}\n", 1, "models: expected a list, got a mapping");
    bad("listen: [1, 2]\n", 1, "listen: expected a mapping, got a list");
    bad("health: 5\n", 1, "health: expected a mapping, got a scalar");
    bad(T(PRE "models:\n  - chat\n"), 7, "model #1: expected a mapping, got a scalar");
    bad(T(PRE "models:\n  - {name: chat, backends: smol}\n"), 7, "model 'chat': backends: expected a list, got a scalar");
    bad(T(PRE "models:\n  - {name: [chat], backends: [smol]}\n"), 7, "model #1: name: expected a string, got a list");
    bad(T(PRE "models:\n  - {name: chat, aliases: gpt, backends: [smol]}\n"), 7, "aliases: expected a list");
    bad(T(PRE "models:\n  - {name: chat, aliases: [{a: b}], backends: [smol]}\n"), 7, "aliases: expected a string");
    bad(T(PRE "models:\n  - name: r\n    policy: rules\n    rules: [{metadata: [a], model: chat}]\n"), 9,
        "metadata: expected one key: value mapping");
    bad(T(PRE "models:\n  - name: r\n    policy: rules\n    rules: [{metadata: {a: 1, b: 2}, model: chat}]\n"), 9,
        "metadata: expected one key: value mapping");
    bad("local: {name: a}\n", 1, "local: expected a list, got a mapping");
}

static void test_unknown_keys(void **state) {
    (void)state;
    bad("modles: []\n", 1, "unknown key 'modles' in the top level (allowed: listen, api_key");
    bad("listen: {host: h, prot: 1}\n", 1, "unknown key 'prot' in listen (allowed: host, port)");
    bad("health: {interval: 5}\n", 1, "unknown key 'interval' in health");
    bad("retry: {attempts: 5}\n", 1, "unknown key 'attempts' in retry");
    bad("join:\n  heartbeat: 5\n", 2, "unknown key 'heartbeat' in join");
    bad("serve: {slot: 5}\n", 1, "unknown key 'slot' in serve");
    bad(T("local:\n  - {name: a, file: x}\n"), 2, "unknown key 'file' in local 'a' (allowed: name, path, pooling)");
    bad(T("local:\n  - {name: a, path: $T/smol.gguf, pooling: avg}\n"), 2,
        "local 'a': pooling 'avg' is not one of none, mean, cls, last, rank");
    bad("nodes:\n  - {name: a, uri: x}\n", 2, "unknown key 'uri' in node 'a'");
    bad(T(PRE "models:\n  - name: chat\n    backends: [smol]\n    polcy: p2c\n"), 9, "unknown key 'polcy' in model 'chat'");
    bad(T(PRE "models:\n  - name: chat\n    backends:\n      - {local: smol, wieght: 2}\n"), 9,
        "unknown key 'wieght' in model 'chat' backend #1 (allowed: local, node, model, capability, weight)");
    bad(T(PRE "models:\n  - name: chat\n    backends:\n      - {local: smol, weight: 2}\n"), 9,
        "model 'chat' backend #1: weight is only for policy weighted");
    bad(T(PRE MODEL_OK "  - name: r\n    policy: rules\n    rules:\n      - {regex: a, model: chat}\n"), 11,
        "unknown key 'regex' in model 'r' rule #1 (allowed: match, metadata, model)");
    bad("listen: {port: 1, port: 2}\n", 1, "duplicate key 'listen.port' (first on line 1)");
    bad(T(PRE "models:\n  - name: chat\n    backends: [smol]\n    name: x\n"), 9, "duplicate key 'model 'chat': name'");
}

static void test_bad_values(void **state) {
    (void)state;
    bad("listen: {port: 0}\n", 1, "listen.port: expected an integer in 1..65535, got '0'");
    bad("listen: {port: 70000}\n", 1, "listen.port: expected an integer in 1..65535, got '70000'");
    bad("listen: {port: 80x}\n", 1, "got '80x'");
    bad("listen: {port: 8080.5}\n", 1, "got '8080.5'");
    bad("listen: {port: 99999999999999999999999}\n", 1, "expected an integer in 1..65535");
    bad("listen: {host: \"\"}\n", 1, "listen.host: must not be empty");
    bad("health: {interval_ms: -5}\n", 1, "health.interval_ms: expected milliseconds > 0");
    bad("health: {timeout_ms: 0}\n", 1, "health.timeout_ms: expected milliseconds > 0");
    bad("health: {cooldown_ms: fast}\n", 1, "health.cooldown_ms: expected milliseconds > 0 and <= 86400000, got 'fast'");
    bad("health: {cooldown_ms: 0x10}\n", 1, "got '0x10'");
    bad("health: {cooldown_ms: .inf}\n", 1, "got '.inf'");
    bad("health: {cooldown_ms: 1e300}\n", 1, "got '1e300'");
    bad("health: {fail_threshold: 0}\n", 1, "health.fail_threshold: expected an integer in 1..1000, got '0'");
    bad("retry: {max_attempts: 0}\n", 1, "retry.max_attempts: expected an integer in 1..100, got '0'");
    bad("retry: {connect_timeout_ms: -1}\n", 1, "retry.connect_timeout_ms");
    bad("retry: {first_byte_timeout_ms: 1 s}\n", 1, "retry.first_byte_timeout_ms");
    bad("join: {heartbeat_ms: 0}\n", 1, "join.heartbeat_ms");
    bad("join: {ttl_ms: 500}\n", 1, "join.ttl_ms (500) must be greater than join.heartbeat_ms (1000)");
    bad("serve: {slots: 0}\n", 1, "serve.slots: expected an integer in 1..256");
    bad("serve: {ctx: 8}\n", 1, "serve.ctx: expected an integer in 16..1048576");
    bad("serve: {threads: two}\n", 1, "serve.threads");
    bad(T(PRE "models:\n  - {name: chat, backends: [smol], hedge: yes}\n"), 7, "hedge: expected true or false, got 'yes'");
    bad(T(PRE "models:\n  - {name: chat, backends: [smol], hedge: true, hedge_after_ms: -1}\n"), 7,
        "hedge_after_ms: expected milliseconds >= 0");
    bad(T(PRE "models:\n  - {name: c, policy: prefix_affinity, backends: [smol], load_factor: 1}\n"), 7,
        "model 'c': load_factor: expected a number > 1 and <= 100, got '1'");
    bad(T(PRE "models:\n  - {name: c, policy: prefix_affinity, backends: [smol], vnodes: 0}\n"), 7, "vnodes: expected an integer in 1..1024");
    bad(T(PRE "models:\n  - {name: c, policy: prefix_affinity, backends: [smol], prefix_bytes: -3}\n"), 7, "prefix_bytes");
    bad(T(PRE "models:\n  - name: chat\n    backends:\n      - {node: edge-a, capability: high}\n"), 9, "capability: expected an integer");
    bad(T(PRE "models:\n  - {name: my model, backends: [smol]}\n"), 7, "name 'my model': only printable ASCII without spaces");
    bad(T(PRE "models:\n  - {name: \"caf\xc3\xa9\", backends: [smol]}\n"), 7, "'caf\\xc3\\xa9'");
}

/* ============================================================ compositions ===== */

#define COMP_MODELS                                                                                \
    "models:\n"                                                                                    \
    "  - {name: nlu, backends: [smol]}\n"                         /* 7 */                          \
    "  - {name: lm, aliases: [chatty], backends: [smol]}\n"       /* 8 */

static void test_compose_ok(void **state) {
    (void)state;
    cluster_config *c = ok(T(PRE COMP_MODELS
        "  - {name: by-intent, policy: classify, classifier: nlu, routes: {chat: chatty, lights_on: lm},\n"
        "     min_confidence: 0.7, default: lm}\n"
        "  - {name: casc, policy: cascade, cascade: [nlu, lm], signal: margin, threshold: 0.5}\n"
        "  - {name: ens, policy: ensemble, ensemble: [nlu, {model: lm, weight: 2}]}\n"
        "  - name: pipe\n"
        "    policy: pipeline\n"
        "    deadline_ms: 100\n"
        "    steps:\n"
        "      - {name: intent, classify: nlu, timeout_ms: 30, fallback: {label: chat}}\n"
        "      - name: act\n"
        "        when: {intent.label: [lights_on], intent.confidence: \">= 0.85\"}\n"
        "        action: {intent: \"{{intent.label}}\", room: \"{{slots.room|lower}}\"}\n"
        "        schema: {type: object, required: [intent], properties: {n: {type: integer, maximum: 3}}}\n"
        "      - {name: reply, when: {act.ok: \"true\"}, generate: chatty, prompt: \"{{intent.slots_kv}}\", max_tokens: 8}\n"
        "    output: \"{{reply.text}}\"\n"));
    assert_non_null(c);
    const ccfg_model *m = ccfg_find_model(c, "by-intent");
    assert_int_equal(m->policy, CCFG_POLICY_CLASSIFY);
    assert_string_equal(m->comp.classifier, "nlu");
    assert_int_equal(m->comp.n_routes, 2);
    assert_string_equal(m->comp.routes[0].value, "lm"); /* alias resolved to the name */
    assert_true(m->comp.min_confidence == 0.7);
    m = ccfg_find_model(c, "casc");
    assert_int_equal(m->comp.n_stages, 2);
    assert_int_equal(m->comp.signal, CCFG_SIG_MARGIN);
    assert_true(m->comp.thresholds[0] == 0.5);
    m = ccfg_find_model(c, "ens");
    assert_true(m->comp.members[1].weight == 2);
    m = ccfg_find_model(c, "pipe");
    assert_int_equal(m->comp.n_steps, 3);
    assert_int_equal(m->comp.steps[1].kind, CCFG_STEP_ACTION);
    assert_int_equal(m->comp.steps[1].n_when, 2);
    assert_int_equal(m->comp.steps[1].when[1].op, CCFG_OP_GE);
    assert_string_equal(m->comp.steps[1].when[1].value, "0.85");
    assert_non_null(strstr(m->comp.steps[1].schema, "\"maximum\":3"));
    assert_string_equal(m->comp.steps[2].model, "lm");
    assert_true(m->comp.deadline_ms == 100);
    ccfg_free(c);
}

static void test_compose_errors(void **state) {
    (void)state;
    bad(T(PRE COMP_MODELS "  - {name: x, policy: classify, classifier: nlu, routes: {a: lm}}\n"), 9,
        "model 'x': policy classify needs default:");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: classify, routes: {a: lm}, default: lm}\n"), 9, "this policy needs classifier:");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: classify, classifier: nlu, routes: {a: nope}, default: lm}\n"), 9,
        "model 'x': route target 'nope' is not a defined model");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: cascade, cascade: [nlu], signal: margin, threshold: 0.5}\n"), 9,
        "cascade needs at least 2 names");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: cascade, cascade: [nlu, lm], signal: vibes, threshold: 0.5}\n"), 9,
        "signal 'vibes' is not one of mean_logprob, min_prob, margin, classifier_prob");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: cascade, cascade: [nlu, lm, nlu], signal: margin, threshold: [0.5]}\n"), 9,
        "threshold: 1 values for 3 stages");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: cascade, cascade: [nlu, lm], signal: margin, threshold: 1.5}\n"), 9,
        "expected a number in 0..1");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: cascade, cascade: [nlu, x], signal: margin, threshold: 0.5}\n"), 9,
        "model 'x': cascade stage refers to the model itself");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: ensemble, ensemble: [nlu, y]}\n"
                          "  - {name: y, policy: ensemble, ensemble: [nlu, x]}\n"), 9,
        "compositions call each other in a loop");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: ensemble, ensemble: [nlu]}\n"), 9, "ensemble needs at least 2 members");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: ensemble, ensemble: [nlu, lm], backends: [smol]}\n"), 9,
        "backends is not for policy ensemble");
    bad(T(PRE COMP_MODELS "  - {name: x, backends: [smol], cascade: [nlu, lm]}\n"), 9, "cascade is not for this policy");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: pipeline, steps: [{name: a, classify: nlu, generate: lm}]}\n"), 9,
        "give exactly one of classify, generate and action (several given)");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: pipeline, steps: [{name: a, generate: lm, prompt: \"{{b.text}}\"}]}\n"), 9,
        "{{'b.text'}} names no earlier step");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: pipeline, steps: [{name: a, generate: lm}, {name: b, generate: lm, "
                          "prompt: \"{{a.label}}\"}]}\n"), 9, "step 'a' has no field 'label'");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: pipeline, steps: [{name: a, generate: lm, prompt: \"{{input|upper}}\"}]}\n"), 9,
        "unknown filter 'upper'");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: pipeline, steps: [{name: a, generate: lm, input: x}]}\n"), 9,
        "input is not for this kind of step");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: pipeline, steps: [{name: a, generate: lm}, {name: a, generate: lm}]}\n"), 9,
        "name already used by step #1");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: pipeline, steps: [{name: a, generate: lm, fallback: {label: q}}]}\n"), 9,
        "fallback: 'label' is not an output of this step");
    bad(T(PRE COMP_MODELS "  - {name: x, policy: pipeline, steps: [{name: a, generate: lm, when: {zz.ok: \"true\"}}]}\n"), 9,
        "{{'zz.ok'}} names no earlier step");
    bad(T(PRE "models:\n  - {name: w, backends: [smol], sticky: user}\n"), 7, "sticky is only for policy weighted");
}

/* ============================================================ semantic errors ===== */

static void test_policy(void **state) {
    (void)state;
    bad(T(PRE "models:\n  - name: chat\n    policy: fastest\n    backends: [smol]\n"), 8,
        "model 'chat': unknown policy 'fastest' (valid: round_robin, least_loaded, p2c, prefix_affinity, "
        "latency_budget, weighted, rules, classify, cascade, ensemble, pipeline)");
    bad(T(PRE "models:\n  - name: r\n    policy: rules\n"), 7, "model 'r': policy rules needs a non-empty rules: list");
    bad(T(PRE "models:\n  - name: r\n    policy: rules\n    rules: []\n"), 7, "needs a non-empty rules: list");
    bad(T(PRE "models:\n  - name: chat\n    policy: p2c\n"), 7, "model 'chat': policy p2c needs a non-empty backends: list");
    bad(T(PRE "models:\n  - name: chat\n    backends: [smol]\n    rules: [{match: a, model: chat}]\n"), 9,
        "rules: only with policy rules (policy is round_robin)");
    bad(T(PRE MODEL_OK "  - name: r\n    policy: rules\n    rules: [{match: a, model: chat}]\n    backends: [smol]\n"), 11,
        "model 'r': backends is not for policy rules");
    bad(T(PRE "models:\n  - name: chat\n    backends: [smol]\n    default: chat\n"), 9, "default: only with policy rules");
    bad(T(PRE "models:\n  - name: chat\n    backends: [smol]\n    hedge_after_ms: 50\n"), 9, "hedge_after_ms needs hedge: true");
    bad(T(PRE "models:\n  - name: chat\n    backends: [smol]\n    prefix_bytes: 64\n"), 9,
        "prefix_bytes is only for policy prefix_affinity");
}

static void test_duplicates(void **state) {
    (void)state;
    bad(T("local:\n  - {name: a, path: $T/smol.gguf}\n  - {name: a, path: $T/tiny.gguf}\n"), 3,
        "duplicate local name 'a' (first on line 2)");
    bad("nodes:\n  - {name: n, url: http://a}\n  - {name: n, url: http://b}\n", 3, "duplicate node name 'n' (first on line 2)");
    bad(T(PRE "models:\n  - {name: chat, backends: [smol]}\n  - {name: chat, backends: [edge-a]}\n"), 8,
        "model 'chat': name or alias 'chat' is already used by model 'chat' (line 7)");
    bad(T(PRE "models:\n  - {name: chat, aliases: [gpt], backends: [smol]}\n  - {name: gpt, backends: [edge-a]}\n"), 8,
        "model 'gpt': name or alias 'gpt' is already used by model 'chat' (line 7)");
    bad(T(PRE "models:\n  - {name: a, aliases: [x], backends: [smol]}\n  - {name: b, aliases: [y, x], backends: [edge-a]}\n"),
        8, "model 'b': name or alias 'x' is already used by model 'a'");
    bad(T(PRE "models:\n  - {name: a, aliases: [a], backends: [smol]}\n"), 7, "alias 'a' is already used by model 'a'");
    bad(T(PRE "models:\n  - name: a\n    backends: [smol, {local: smol}]\n"), 8, "backend #2 repeats backend #1");
    /* the same node asked for two different models is fine */
    cluster_config *c = ok(T(PRE "models:\n  - name: a\n    backends: [{node: edge-a, model: x}, {node: edge-a, model: y}]\n"));
    ccfg_free(c);
}

static void test_backend_refs(void **state) {
    (void)state;
    bad(T(PRE "models:\n  - name: chat\n    backends:\n      - local: smoll\n"), 9, "model 'chat' backend #1: unknown local 'smoll'");
    bad(T(PRE "models:\n  - name: chat\n    backends:\n      - {node: edge-c}\n"), 9, "unknown node 'edge-c'");
    bad(T(PRE "models:\n  - name: chat\n    backends:\n      - {local: smol, node: edge-a}\n"), 9,
        "give exactly one of local and node (both given)");
    bad(T(PRE "models:\n  - name: chat\n    backends:\n      - {capability: 3}\n"), 9, "give exactly one of local and node (neither given)");
    bad(T(PRE "models:\n  - name: chat\n    backends:\n      - {local: smol, model: other}\n"), 9,
        "model: is only for node backends");
}

static void test_targets(void **state) {
    (void)state;
    const char *rules = PRE MODEL_OK "  - name: r\n    policy: rules\n    rules:\n"; /* rules from line 11 */
    char buf[2048];
    snprintf(buf, sizeof buf, "%s      - {match: a, model: intent}\n", rules);
    bad(T(buf), 11, "model 'r': rule target 'intent' is not a defined model");
    snprintf(buf, sizeof buf, "%s      - {match: a, model: chat}\n    default: nope\n", rules);
    bad(T(buf), 12, "model 'r': default 'nope' is not a defined model");
    snprintf(buf, sizeof buf, "%s      - {match: a, model: r}\n", rules);
    bad(T(buf), 11, "rule target 'r' is a rules model (targets must have backends)");
    bad(T(PRE "models:\n  - name: chat\n    backends: [smol]\n    fallback: tiny\n"), 9,
        "model 'chat': fallback 'tiny' is not a defined model");
    bad(T(PRE "models:\n  - name: chat\n    backends: [smol]\n    fallback: chat\n"), 9, "model 'chat': fallback points to itself");
    bad(T(PRE "models:\n  - name: chat\n    aliases: [c]\n    backends: [smol]\n    fallback: c\n"), 10, "fallback points to itself");
    bad(T(PRE "models:\n  - {name: a, backends: [smol], fallback: b}\n  - {name: b, backends: [smol], fallback: c}\n"
              "  - {name: c, backends: [smol], fallback: a}\n"), 7,
        "model 'a': fallback 'b' leads back to 'a' (fallback loop)");
    bad(T(PRE "models:\n  - name: r\n    policy: rules\n    rules: [{match: a, model: chat}]\n    fallback: x\n"), 10,
        "fallback is not for policy rules");
    snprintf(buf, sizeof buf, "%s      - {match: a}\n", rules);
    bad(T(buf), 11, "missing model (the target)");
    snprintf(buf, sizeof buf, "%s      - {model: chat}\n", rules);
    bad(T(buf), 11, "give exactly one of match and metadata (neither given)");
    snprintf(buf, sizeof buf, "%s      - {match: a, metadata: {k: v}, model: chat}\n", rules);
    bad(T(buf), 11, "give exactly one of match and metadata (both given)");
}

static void test_regex(void **state) {
    (void)state;
    const char *rules = PRE MODEL_OK "  - name: r\n    policy: rules\n    rules:\n";
    char buf[4096];
    snprintf(buf, sizeof buf, "%s      - {match: \"weather|(temp\", model: chat}\n", rules);
    bad(T(buf), 11, "model 'r' rule #1: match 'weather|(temp': invalid regex: ");
    snprintf(buf, sizeof buf, "%s      - {match: \"[a-\", model: chat}\n", rules);
    bad(T(buf), 11, "invalid regex");
    snprintf(buf, sizeof buf, "%s      - {match: \"^000[[:\", model: chat}\n", rules);
    bad(T(buf), 11, "invalid regex");
    snprintf(buf, sizeof buf, "%s      - {match: \"(a)\\\\1\", model: chat}\n", rules);
    bad(T(buf), 11, "back-references are not supported");
    snprintf(buf, sizeof buf, "%s      - {match: \"((a{1,100}){1,100}){1,100}\", model: chat}\n", rules);
    bad(T(buf), 11, "too complex (repetitions expand it to about");
    snprintf(buf, sizeof buf, "%s      - {match: \"we++++++++++++++++++++ather\", model: chat}\n", rules);
    bad(T(buf), 11, "too complex");
    snprintf(buf, sizeof buf, "%s      - {match: \"a+b+c+d+e+f+g+h+i+j+k+l+m+[a-z]{1,50}(x|y)*\", model: chat}\n", rules);
    ccfg_free(ok(T(buf))); /* many quantifiers side by side are fine */
    snprintf(buf, sizeof buf, "%s      - {match: \"%01100d\", model: chat}\n", rules, 0);
    bad(T(buf), 11, "match: pattern longer than 1024 bytes");
    snprintf(buf, sizeof buf, "%s      - {match: \"^(hi|hello)[[:space:]]{1,3}there\", model: chat}\n", rules);
    ccfg_free(ok(T(buf)));
}

static void test_urls(void **state) {
    (void)state;
    static const struct {
        const char *url, *want;
    } cases[] = {
        {"ftp://host", "url 'ftp://host' must start with http:// or https://"},
        {"host:8080", "must start with http:// or https://"},
        {"HTTP://host", "must start with http:// or https://"},
        {"http://", "url 'http://' has no host"},
        {"http://:8080", "has no host"},
        {"http://host/v1", "only scheme://host[:port] (no path"},
        {"http://host/?a=1", "only scheme://host[:port]"},
        {"http://user@host", "only scheme://host[:port]"},
        {"http://host:0", "port must be 1..65535"},
        {"http://host:65536", "port must be 1..65535"},
        {"http://host:", "port must be 1..65535"},
        {"http://host:80a", "port must be 1..65535"},
        {"http://[zz]:80", "bad IPv6 address"},
        {"http://host\\nx", "'http://host\\x0ax'"},
    };
    char buf[512];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(buf, sizeof buf, "nodes:\n  - {name: n, url: \"%s\"}\n", cases[i].url);
        bad(buf, 2, cases[i].want);
    }
    bad("nodes:\n  - {name: n}\n", 2, "node 'n': missing url");
    bad("nodes:\n  - {url: http://h}\n", 2, "node #1: missing name");
}

static void test_urls_valid(void **state) {
    (void)state;
    cluster_config *c = ok("nodes:\n  - {name: a, url: \"https://x.example.org:8443/\"}\n  - {name: b, url: \"http://[::1]:80\"}\n"
                           "  - {name: c, url: http://node_3}\nmodels: [{name: m, backends: [a, b, c]}]\n");
    assert_string_equal(c->nodes[0].url, "https://x.example.org:8443");
    assert_string_equal(c->nodes[1].url, "http://[::1]:80");
    assert_string_equal(c->nodes[2].url, "http://node_3");
    ccfg_free(c);
}

static void test_model_files(void **state) {
    (void)state;
    bad(T("local:\n  - {name: a, path: $T/nope.gguf}\n"), 2, "/nope.gguf': No such file or directory");
    bad(T("local:\n  - name: a\n    path: $T\n"), 3, "local 'a': model file");
    bad(T("local:\n  - name: a\n    path: $T\n"), 3, "Is a directory");
    bad(T("local:\n  - {name: a}\n"), 2, "local 'a': missing path");
    bad(T("local:\n  - {path: $T/smol.gguf}\n"), 2, "local #1: missing name");
    if (geteuid() != 0) { /* root reads everything */
        char p[512];
        snprintf(p, sizeof p, "%s/locked.gguf", tu_tmpdir());
        touch(p);
        chmod(p, 0);
        bad(T("local:\n  - {name: a, path: $T/locked.gguf}\n"), 2, "Permission denied");
    }
    ccfg_free(ok(T("local:\n  - {name: a, path: $T/smol.gguf}\nmodels: [{name: m, backends: [a]}]\n")));
}

static void test_secrets(void **state) {
    (void)state;
    unsetenv("CCFG_TEST_UNSET");
    bad(T("api_key_env: CCFG_TEST_UNSET\n" PRE MODEL_OK), 1, "api_key_env: environment variable 'CCFG_TEST_UNSET' is not set");
    setenv("CCFG_TEST_EMPTY", "", 1);
    bad(T("join_token_env: CCFG_TEST_EMPTY\n" PRE MODEL_OK), 1, "join_token_env: environment variable 'CCFG_TEST_EMPTY' is empty (empty key)");
    bad(T("api_key: \"\"\n" PRE MODEL_OK), 1, "api_key: must not be empty");
    bad(T("api_key:\n" PRE MODEL_OK), 1, "api_key: empty key");
    bad(T("api_key: a\napi_key_env: B\n" PRE MODEL_OK), 2, "api_key_env: give only one of api_key, api_key_env and api_key_file");
    bad(T("join_token: a\njoin_token_file: f\n" PRE MODEL_OK), 2, "give only one of join_token, join_token_env and join_token_file");
    bad(T("api_key_file: $T/no-such-key\n" PRE MODEL_OK), 1, "api_key_file: cannot read");
    char p[512];
    snprintf(p, sizeof p, "%s/empty.key", tu_tmpdir());
    write_file(p, "\nkey-on-second-line\n");
    bad(T("api_key_file: $T/empty.key\n" PRE MODEL_OK), 1, "api_key_file: empty key in");
    bad(T("nodes:\n  - {name: n, url: http://h, api_key_env: CCFG_TEST_UNSET}\n"), 2,
        "node 'n': api_key_env: environment variable 'CCFG_TEST_UNSET' is not set");

    setenv("CCFG_TEST_KEY", "from-env", 1);
    snprintf(p, sizeof p, "%s/token", tu_tmpdir());
    write_file(p, "tok-from-file"); /* no newline at the end */
    cluster_config *c = ok(T("api_key_env: CCFG_TEST_KEY\njoin_token_file: $T/token\n"
                             "nodes:\n  - {name: n, url: http://h, api_key: literal}\nmodels: [{name: m, backends: [n]}]\n"));
    assert_string_equal(c->api_key, "from-env");
    assert_string_equal(c->join_token, "tok-from-file");
    assert_string_equal(c->nodes[0].api_key, "literal");
    ccfg_free(c);
    unsetenv("CCFG_TEST_KEY");
    unsetenv("CCFG_TEST_EMPTY");
}

static void test_limits(void **state) {
    (void)state;
    bad(T(PRE), 1, "no models: defined");
    bad(T(PRE "models: []\n"), 6, "no models: defined");
    bad(T(PRE "models:\n"), 6, "no models: defined");

    size_t n = (size_t)CCFG_MAX_FILE_BYTES + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, '#', n);
    sh_err err;
    assert_null(ccfg_parse(big, n, "t.yaml", &err));
    assert_non_null(strstr(err.msg, "t.yaml:1: file too large (1048577 bytes, at most 1048576)"));
    free(big);

    /* 257 nodes */
    char *text = malloc(64 * 300);
    assert_non_null(text);
    size_t o = (size_t)sprintf(text, "nodes:\n");
    for (int i = 0; i <= CCFG_MAX_ITEMS; i++) o += (size_t)sprintf(text + o, "  - {name: n%d, url: http://h}\n", i);
    bad(text, 2, "nodes: too many entries (257, at most 256)");
    o = (size_t)sprintf(text, "nodes: [{name: n, url: http://h}]\nmodels:\n  - name: m\n    backends: [n]\n    aliases: [");
    for (int i = 0; i <= CCFG_MAX_ALIASES; i++) o += (size_t)sprintf(text + o, "%sa%d", i ? ", " : "", i);
    sprintf(text + o, "]\n");
    bad(text, 5, "model 'm': aliases: too many entries (65, at most 64)");
    free(text);

    /* a long name: the message stays one line in the buffer, the value cut */
    char name[400];
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "nodes:\n  - {name: %s, url: http://h}\n", name);
    bad(buf, 2, "xxx...' longer than 128 bytes");
}

static void test_long_file_name(void **state) {
    (void)state;
    char name[1000];
    memset(name, 'd', sizeof name - 1);
    name[sizeof name - 1] = 0;
    sh_err err;
    const char *text = "listen: {port: 0}\n";
    assert_null(ccfg_parse(text, strlen(text), name, &err));
    assert_non_null(strstr(err.msg, "ddd:1: listen.port: expected an integer in 1..65535, got '0'"));
    assert_true(strlen(err.msg) < SH_ERR_MAX - 1);
    assert_null(ccfg_parse(text, strlen(text), NULL, NULL)); /* no name, no err: fine */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_file),  cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bare_backends), cmocka_unit_test(test_find_model_and_free),
        cmocka_unit_test(test_relative_paths_and_load), cmocka_unit_test(test_yaml_errors),
        cmocka_unit_test(test_kinds),         cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_bad_values),    cmocka_unit_test(test_policy),
        cmocka_unit_test(test_duplicates),    cmocka_unit_test(test_backend_refs),
        cmocka_unit_test(test_targets),       cmocka_unit_test(test_regex),
        cmocka_unit_test(test_urls),          cmocka_unit_test(test_urls_valid),
        cmocka_unit_test(test_model_files),   cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_limits),        cmocka_unit_test(test_long_file_name),
        cmocka_unit_test(test_compose_ok),    cmocka_unit_test(test_compose_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
