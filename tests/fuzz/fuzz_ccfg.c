/*
 * libFuzzer target: cluster.yaml. Any bytes give a config or an error; an error is one
 * "fuzz.yaml:LINE: ..." line, and an accepted config keeps the invariants the router relies on
 * (every backend names an existing local or node, every target is a model name with backends,
 * policies in range).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cluster/config.h"

static int find_local(const cluster_config *c, const char *n) {
    for (int i = 0; i < c->n_locals; i++)
        if (!strcmp(c->locals[i].name, n)) return 1;
    return 0;
}

static int find_node(const cluster_config *c, const char *n) {
    for (int i = 0; i < c->n_nodes; i++)
        if (!strcmp(c->nodes[i].name, n)) return 1;
    return 0;
}

static void check_target(const cluster_config *c, const char *t) {
    const ccfg_model *m = ccfg_find_model(c, t);
    if (!m || strcmp(m->name, t) || m->policy == CCFG_POLICY_RULES) __builtin_trap();
}

static void check_model(const cluster_config *c, const ccfg_model *m) {
    if (m->policy < 0 || m->policy > CCFG_POLICY_RULES || ccfg_find_model(c, m->name) != m) __builtin_trap();
    if ((m->policy == CCFG_POLICY_RULES) != (m->n_backends == 0) || (m->n_rules > 0) != (m->policy == CCFG_POLICY_RULES))
        __builtin_trap();
    for (int b = 0; b < m->n_backends; b++) {
        const ccfg_backend *be = &m->backends[b];
        if (!!be->local == !!be->node) __builtin_trap();
        if (be->local && (!find_local(c, be->local) || be->model)) __builtin_trap();
        if (be->node && (!find_node(c, be->node) || !be->model)) __builtin_trap();
    }
    for (int r = 0; r < m->n_rules; r++) {
        const ccfg_rule *ru = &m->rules[r];
        if (!!ru->pattern == !!ru->meta_key || !!ru->meta_key != !!ru->meta_value) __builtin_trap();
        check_target(c, ru->target);
    }
    if (m->default_target) check_target(c, m->default_target);
    if (m->fallback) {
        check_target(c, m->fallback);
        if (!strcmp(m->fallback, m->name)) __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sh_err err;
    cluster_config *c = ccfg_parse((const char *)data, size, "fuzz.yaml", &err);
    if (!c) {
        size_t n = strnlen(err.msg, sizeof err.msg);
        if (n == sizeof err.msg || strncmp(err.msg, "fuzz.yaml:", 10) || strchr(err.msg, '\n')) __builtin_trap();
        return 0;
    }
    if (c->n_models < 1 || c->port == 0 || c->port > 65535) __builtin_trap();
    for (int i = 0; i < c->n_nodes; i++) {
        const char *u = c->nodes[i].url;
        size_t n = strlen(u);
        if ((strncmp(u, "http://", 7) && strncmp(u, "https://", 8)) || u[n - 1] == '/') __builtin_trap();
    }
    for (int i = 0; i < c->n_models; i++) check_model(c, &c->models[i]);
    ccfg_free(c);
    return 0;
}
