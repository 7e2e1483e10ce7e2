/*
 * cluster/config_compose — the composition keys of cluster.yaml (policies classify, cascade,
 * ensemble, pipeline); see config.h for the fields and docs/cluster.md for the file format.
 *
 * Everything a composition refers to is checked here, at load: model names exist, pipeline
 * templates only name earlier steps and fields those steps produce, conditions parse, and no
 * composition reaches itself through others (a request could otherwise recurse forever).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/config_int.h"

#define MAX_STAGES 16
#define MAX_STEPS 32
#define MAX_FIELDS 64


/* ============================================================ templates ===== */

/* The fields each step kind produces, for checking references. "slots." takes any slot name. */
static bool field_ok(int kind, const char *f) {
    if (!strcmp(f, "ok") || !strcmp(f, "ms") || !strcmp(f, "error")) return true;
    switch (kind) {
    case CCFG_STEP_CLASSIFY:
        return !strcmp(f, "label") || !strcmp(f, "confidence") || !strcmp(f, "slots_kv") ||
               (!strncmp(f, "slots.", 6) && f[6]);
    case CCFG_STEP_GENERATE: return !strcmp(f, "text") || !strcmp(f, "mean_logprob");
    default: return !strcmp(f, "json");
    }
}

/* A variable reference: "input", "slots.X" (the latest classify step's slot), or
 * "STEP.FIELD" of one of steps[0..n) — earlier steps only, so the steps form a DAG in file
 * order. */
static int check_var(pctx *p, int line, const char *what, const char *var, const ccfg_step *steps, int n) {
    if (!strcmp(var, "input")) return 0;
    if (!strncmp(var, "slots.", 6) && var[6]) {
        for (int i = 0; i < n; i++)
            if (steps[i].kind == CCFG_STEP_CLASSIFY) return 0;
        return ccfgi_fail(p, line, "%s: {{%s}} needs an earlier classify step", what, var);
    }
    const char *dot = strchr(var, '.');
    for (int i = 0; dot && i < n; i++)
        if (strlen(steps[i].name) == (size_t)(dot - var) && !strncmp(steps[i].name, var, (size_t)(dot - var))) {
            if (field_ok(steps[i].kind, dot + 1)) return 0;
            return ccfgi_fail(p, line, "%s: {{%s}}: step %s has no field %s", what, var, ccfgi_q(p, steps[i].name),
                              ccfgi_q(p, dot + 1));
        }
    return ccfgi_fail(p, line, "%s: {{%s}} names no earlier step (use input, slots.NAME or STEP.FIELD of a "
                      "step above this one)", what, ccfgi_q(p, var));
}

/* Every {{var}} or {{var|filter}} in t refers to something that exists before this step. */
static int check_template(pctx *p, int line, const char *what, const char *t, const ccfg_step *steps, int n) {
    for (const char *s = t; (s = strstr(s, "{{"));) {
        const char *e = strstr(s + 2, "}}");
        if (!e) return ccfgi_fail(p, line, "%s: unclosed {{ in template", what);
        char var[160];
        size_t len = (size_t)(e - s - 2);
        if (len >= sizeof var) return ccfgi_fail(p, line, "%s: reference longer than %zu bytes", what, sizeof var);
        memcpy(var, s + 2, len);
        var[len] = 0;
        char *bar = strchr(var, '|');
        if (bar) {
            *bar++ = 0;
            if (strcmp(bar, "lower") && strcmp(bar, "json"))
                return ccfgi_fail(p, line, "%s: unknown filter %s (lower, json)", what, ccfgi_q(p, bar));
        }
        if (check_var(p, line, what, var, steps, n)) return -1;
        s = e + 2;
    }
    return 0;
}

/* ============================================================ small pieces ===== */

static int name_list(pctx *p, const char *what, const ccfg_field *f, int min, int max, char ***out, int *n) {
    yaml_node_item_t *it;
    int cnt;
    *n = 0; /* counts the names stored, so that a failure frees exactly those */
    if (ccfgi_list(p, what, f, max, &it, &cnt)) return -1;
    if (cnt < min) return ccfgi_fail(p, ccfgi_line(f->v), "%s: %s needs at least %d names", what,
                                     (const char *)f->k->data.scalar.value, min);
    if (!(*out = calloc((size_t)cnt, sizeof **out))) return ccfgi_oom(p);
    for (int i = 0; i < cnt; i++) {
        ccfg_field e = {f->k, ccfgi_node(p, it[i])};
        *n = i + 1;
        if (ccfgi_name(p, what, &e, &(*out)[i])) return -1;
    }
    return 0;
}

/* A mapping of strings: key -> value. */
static int kv_map(pctx *p, const char *what, yaml_node_t *n, int max, ccfg_kv **out, int *cnt) {
    if (n->type != YAML_MAPPING_NODE)
        return ccfgi_fail(p, ccfgi_line(n), "%s: expected a mapping, got %s", what, ccfgi_kind(n));
    int k = (int)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (k > max) return ccfgi_fail(p, ccfgi_line(n), "%s: too many entries (%d, at most %d)", what, k, max);
    if (k && !(*out = calloc((size_t)k, sizeof **out))) return ccfgi_oom(p);
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        const char *ks = ccfgi_scalar(ccfgi_node(p, pr->key));
        yaml_node_t *v = ccfgi_node(p, pr->value);
        const char *vs = ccfgi_scalar(v);
        if (!ks || !*ks || !vs)
            return ccfgi_fail(p, ccfgi_line(n), "%s: keys and values must be strings", what);
        for (int j = 0; j < *cnt; j++)
            if (!strcmp((*out)[j].key, ks)) return ccfgi_fail(p, ccfgi_line(v), "%s: duplicate key %s", what, ccfgi_q(p, ks));
        ccfg_kv *e = &(*out)[(*cnt)++];
        if (!(e->key = strdup(ks)) || !(e->value = strdup(vs))) return ccfgi_oom(p);
    }
    return 0;
}

static int parse_signal(pctx *p, const char *what, const ccfg_field *f, int *out) {
    const char *s = ccfgi_scalar(f->v);
    for (int i = 0; s && i < 4; i++)
        if (!strcmp(s, ccfg_signal_name(i))) return *out = i, 0;
    return ccfgi_fail(p, ccfgi_line(f->v), "%s: signal %s is not one of mean_logprob, min_prob, margin, "
                      "classifier_prob", what, s ? ccfgi_q(p, s) : ccfgi_kind(f->v));
}

/* threshold: one number for every stage boundary, or a list of n_stages - 1. */
static int parse_thresholds(pctx *p, const char *what, const ccfg_field *f, ccfg_comp *c) {
    int nb = c->n_stages - 1;
    if (!(c->thresholds = calloc((size_t)nb, sizeof *c->thresholds))) return ccfgi_oom(p);
    double lo = c->signal == CCFG_SIG_MEAN_LOGPROB ? -1e6 : 0, hi = c->signal == CCFG_SIG_MEAN_LOGPROB ? 0 : 1;
    if (f->v->type == YAML_SEQUENCE_NODE) {
        yaml_node_item_t *it;
        int n;
        if (ccfgi_list(p, what, f, MAX_STAGES, &it, &n)) return -1;
        if (n != nb)
            return ccfgi_fail(p, ccfgi_line(f->v), "%s: threshold: %d values for %d stages (give one per stage "
                              "but the last, or one number)", what, n, c->n_stages);
        for (int i = 0; i < n; i++) {
            ccfg_field e = {f->k, ccfgi_node(p, it[i])};
            if (ccfgi_num(p, what, &e, lo, hi, &c->thresholds[i])) return -1;
        }
        return 0;
    }
    if (ccfgi_num(p, what, f, lo, hi, &c->thresholds[0])) return -1;
    for (int i = 1; i < nb; i++) c->thresholds[i] = c->thresholds[0];
    return 0;
}

static int parse_members(pctx *p, const char *what, const ccfg_field *f, ccfg_comp *c) {
    yaml_node_item_t *it;
    int n;
    if (ccfgi_list(p, what, f, MAX_STAGES, &it, &n)) return -1;
    if (n < (c->combine == CCFG_COMBINE_BEST_OF ? 1 : 2))
        return ccfgi_fail(p, ccfgi_line(f->v), "%s: ensemble needs at least %s", what,
                          c->combine == CCFG_COMBINE_BEST_OF ? "1 member" : "2 members");
    if (!(c->members = calloc((size_t)n, sizeof *c->members))) return ccfgi_oom(p);
    for (int i = 0; i < n; i++) {
        yaml_node_t *e = ccfgi_node(p, it[i]);
        ccfg_member *mb = &c->members[i];
        c->n_members = i + 1;
        mb->line = ccfgi_line(e);
        mb->weight = 1;
        if (e->type == YAML_SCALAR_NODE) {
            ccfg_field g = {f->k, e};
            if (ccfgi_name(p, what, &g, &mb->model)) return -1;
            continue;
        }
        static const char *const keys[] = {"model", "weight", NULL};
        ccfg_field g[2];
        if (ccfgi_fields(p, e, what, keys, g)) return -1;
        if (!g[0].v) return ccfgi_fail(p, mb->line, "%s: ensemble member #%d: missing model", what, i + 1);
        if (ccfgi_name(p, what, &g[0], &mb->model)) return -1;
        if (g[1].v && ccfgi_num(p, what, &g[1], 1e-9, 1e6, &mb->weight)) return -1;
    }
    return 0;
}

/* combine: and the keys that go with it (gate for tokens; k, scorer, score, temperature for
 * best_of), then the members. */
static int parse_ensemble(pctx *p, const char *what, const ccfg_field *f, ccfg_comp *c) {
    static const char *const combines[] = {"probs", "tokens", "best_of"};
    c->gate = 0.3, c->k = 4, c->temperature = 0.8;
    if (f[CC_COMBINE].v) {
        const char *s = ccfgi_scalar(f[CC_COMBINE].v);
        c->combine = -1;
        for (int i = 0; s && i < 3; i++)
            if (!strcmp(s, combines[i])) c->combine = i;
        if (c->combine < 0)
            return ccfgi_fail(p, ccfgi_line(f[CC_COMBINE].v), "%s: combine %s is not one of probs, tokens, best_of",
                              what, s ? ccfgi_q(p, s) : ccfgi_kind(f[CC_COMBINE].v));
    }
    static const int only[] = {CC_GATE, CC_K, CC_SCORER, CC_SCORE, CC_TEMPERATURE};
    static const int owner[] = {CCFG_COMBINE_TOKENS, CCFG_COMBINE_BEST_OF, CCFG_COMBINE_BEST_OF, CCFG_COMBINE_BEST_OF,
                                CCFG_COMBINE_BEST_OF};
    static const char *const names[] = {"gate", "k", "scorer", "score", "temperature"};
    for (int i = 0; i < 5; i++)
        if (f[only[i]].k && c->combine != owner[i])
            return ccfgi_fail(p, ccfgi_line(f[only[i]].k), "%s: %s is for combine: %s", what, names[i],
                              combines[owner[i]]);
    if (f[CC_GATE].v && ccfgi_num(p, what, &f[CC_GATE], 0, 1, &c->gate)) return -1;
    if (f[CC_K].v && ccfgi_int(p, what, &f[CC_K], 2, 16, &c->k)) return -1;
    if (f[CC_TEMPERATURE].v && ccfgi_num(p, what, &f[CC_TEMPERATURE], 0, 2, &c->temperature)) return -1;
    if (c->combine == CCFG_COMBINE_BEST_OF) {
        if (!f[CC_SCORER].v) return ccfgi_fail(p, ccfgi_line(f[CC_COMBINE].v), "%s: combine: best_of needs scorer:", what);
        if (ccfgi_name(p, what, &f[CC_SCORER], &c->scorer)) return -1;
        if (f[CC_SCORE].v) {
            const char *s = ccfgi_scalar(f[CC_SCORE].v);
            if (s && !strcmp(s, "loglik")) c->score = CCFG_SCORE_LOGLIK;
            else if (s && !strcmp(s, "rerank")) c->score = CCFG_SCORE_RERANK;
            else return ccfgi_fail(p, ccfgi_line(f[CC_SCORE].v), "%s: score %s is not one of loglik, rerank", what,
                                   s ? ccfgi_q(p, s) : ccfgi_kind(f[CC_SCORE].v));
        }
    }
    return parse_members(p, what, &f[CC_ENSEMBLE], c);
}

/* ============================================================ pipeline steps ===== */

static const char *const ops[] = {"==", "!=", "<=", ">=", "<", ">"};
static const int op_ids[] = {CCFG_OP_EQ, CCFG_OP_NE, CCFG_OP_LE, CCFG_OP_GE, CCFG_OP_LT, CCFG_OP_GT};

/* when: {VAR: [a, b]} (one of), {VAR: ">= 0.85"} (a comparison), {VAR: x} (equals). */
static int parse_when(pctx *p, const char *what, yaml_node_t *n, ccfg_step *st, const ccfg_step *steps, int ns) {
    if (n->type != YAML_MAPPING_NODE)
        return ccfgi_fail(p, ccfgi_line(n), "%s: when: expected a mapping of conditions, got %s", what, ccfgi_kind(n));
    int k = (int)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (k > MAX_FIELDS) return ccfgi_fail(p, ccfgi_line(n), "%s: when: more than %d conditions", what, MAX_FIELDS);
    if (k && !(st->when = calloc((size_t)k, sizeof *st->when))) return ccfgi_oom(p);
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        const char *var = ccfgi_scalar(ccfgi_node(p, pr->key));
        yaml_node_t *v = ccfgi_node(p, pr->value);
        if (!var || !*var || !v) return ccfgi_fail(p, ccfgi_line(n), "%s: when: keys must be variable names", what);
        if (check_var(p, ccfgi_line(v), what, var, steps, ns)) return -1;
        ccfg_cond *c = &st->when[st->n_when++];
        if (!(c->var = strdup(var))) return ccfgi_oom(p);
        if (v->type == YAML_SEQUENCE_NODE) {
            c->op = CCFG_OP_IN;
            int m = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
            if (m < 1 || m > 256) return ccfgi_fail(p, ccfgi_line(v), "%s: when %s: 1..256 values", what, var);
            if (!(c->set = calloc((size_t)m, sizeof *c->set))) return ccfgi_oom(p);
            for (int i = 0; i < m; i++) {
                const char *s = ccfgi_scalar(ccfgi_node(p, v->data.sequence.items.start[i]));
                if (!s) return ccfgi_fail(p, ccfgi_line(v), "%s: when %s: values must be strings", what, var);
                if (!(c->set[c->n_set++] = strdup(s))) return ccfgi_oom(p);
            }
            continue;
        }
        const char *s = ccfgi_scalar(v);
        if (!s) return ccfgi_fail(p, ccfgi_line(v), "%s: when %s: expected a value, a comparison or a list", what, var);
        c->op = CCFG_OP_EQ;
        for (int i = 0; i < 6; i++)
            if (!strncmp(s, ops[i], strlen(ops[i]))) {
                c->op = op_ids[i];
                s += strlen(ops[i]);
                break;
            }
        while (*s == ' ') s++;
        if (!(c->value = strdup(s))) return ccfgi_oom(p);
    }
    return 0;
}

enum { S_NAME, S_CLASSIFY, S_GENERATE, S_ACTION, S_INPUT, S_PROMPT, S_MAX_TOKENS, S_TEMPERATURE, S_SCHEMA,
       S_WHEN, S_TIMEOUT, S_FALLBACK, S_N };

static int parse_step(pctx *p, const char *mwhat, yaml_node_t *n, int idx, ccfg_step *steps) {
    static const char *const keys[] = {"name", "classify", "generate", "action", "input", "prompt", "max_tokens",
                                       "temperature", "schema", "when", "timeout_ms", "fallback", NULL};
    ccfg_field f[S_N];
    char what[CCFGI_WHAT];
    ccfg_step *st = &steps[idx];
    st->line = ccfgi_line(n);
    snprintf(what, sizeof what, "%s step #%d", mwhat, idx + 1);
    if (ccfgi_fields(p, n, what, keys, f)) return -1;
    if (!f[S_NAME].v) return ccfgi_fail(p, st->line, "%s: missing name", what);
    if (ccfgi_name(p, what, &f[S_NAME], &st->name)) return -1;
    snprintf(what, sizeof what, "%s step %s", mwhat, ccfgi_q(p, st->name));
    if (!strcmp(st->name, "input") || !strcmp(st->name, "slots"))
        return ccfgi_fail(p, st->line, "%s: the names input and slots are taken", what);
    for (int i = 0; i < idx; i++)
        if (!strcmp(steps[i].name, st->name))
            return ccfgi_fail(p, st->line, "%s: name already used by step #%d", what, i + 1);
    int kinds = !!f[S_CLASSIFY].v + !!f[S_GENERATE].v + !!f[S_ACTION].v;
    if (kinds != 1)
        return ccfgi_fail(p, st->line, "%s: give exactly one of classify, generate and action (%s)", what,
                          kinds ? "several given" : "none given");
    st->kind = f[S_CLASSIFY].v ? CCFG_STEP_CLASSIFY : f[S_GENERATE].v ? CCFG_STEP_GENERATE : CCFG_STEP_ACTION;
    /* keys that belong to another kind would be silently ignored: refuse them */
    static const struct { int key, kind; } only[] = {{S_INPUT, CCFG_STEP_CLASSIFY}, {S_PROMPT, CCFG_STEP_GENERATE},
        {S_MAX_TOKENS, CCFG_STEP_GENERATE}, {S_TEMPERATURE, CCFG_STEP_GENERATE}, {S_SCHEMA, CCFG_STEP_ACTION}};
    for (size_t i = 0; i < sizeof only / sizeof *only; i++)
        if (f[only[i].key].k && st->kind != only[i].kind)
            return ccfgi_fail(p, ccfgi_line(f[only[i].key].k), "%s: %s is not for this kind of step", what,
                              keys[only[i].key]);
    if (f[S_WHEN].v && parse_when(p, what, f[S_WHEN].v, st, steps, idx)) return -1;
    if (f[S_TIMEOUT].v && ccfgi_ms(p, what, &f[S_TIMEOUT], false, &st->timeout_ms)) return -1;
    st->max_tokens = 64;
    if (st->kind == CCFG_STEP_ACTION) {
        if (kv_map(p, what, f[S_ACTION].v, MAX_FIELDS, &st->fields, &st->n_fields)) return -1;
        for (int i = 0; i < st->n_fields; i++)
            if (check_template(p, ccfgi_line(f[S_ACTION].v), what, st->fields[i].value, steps, idx)) return -1;
        if (f[S_SCHEMA].v && ccfgi_json(p, f[S_SCHEMA].v, &st->schema)) return -1;
    } else {
        const ccfg_field *mf = st->kind == CCFG_STEP_CLASSIFY ? &f[S_CLASSIFY] : &f[S_GENERATE];
        if (ccfgi_name(p, what, mf, &st->model)) return -1;
        const ccfg_field *in = st->kind == CCFG_STEP_CLASSIFY ? &f[S_INPUT] : &f[S_PROMPT];
        if (in->v) {
            if (ccfgi_str(p, what, in, &st->input)) return -1;
        } else if (!(st->input = strdup("{{input}}"))) {
            return ccfgi_oom(p);
        }
        if (check_template(p, ccfgi_line(in->v ? in->v : n), what, st->input, steps, idx)) return -1;
        if (f[S_MAX_TOKENS].v && ccfgi_int(p, what, &f[S_MAX_TOKENS], 1, 4096, &st->max_tokens)) return -1;
        if (f[S_TEMPERATURE].v && ccfgi_num(p, what, &f[S_TEMPERATURE], 0, 2, &st->temperature)) return -1;
    }
    if (f[S_FALLBACK].v) {
        st->has_fallback = true;
        char fw[CCFGI_WHAT + 12];
        snprintf(fw, sizeof fw, "%s fallback", what);
        if (kv_map(p, fw, f[S_FALLBACK].v, MAX_FIELDS, &st->fallback, &st->n_fallback)) return -1;
        for (int i = 0; i < st->n_fallback; i++)
            if (!field_ok(st->kind, st->fallback[i].key) || !strcmp(st->fallback[i].key, "ok"))
                return ccfgi_fail(p, ccfgi_line(f[S_FALLBACK].v), "%s: fallback: %s is not an output of this step",
                                  what, ccfgi_q(p, st->fallback[i].key));
    }
    return 0;
}

static int parse_steps(pctx *p, const char *what, const ccfg_field *f, ccfg_comp *c) {
    yaml_node_item_t *it;
    int n;
    if (ccfgi_list(p, what, f, MAX_STEPS, &it, &n)) return -1;
    if (!n) return ccfgi_fail(p, ccfgi_line(f->v), "%s: steps: needs at least one step", what);
    if (!(c->steps = calloc((size_t)n, sizeof *c->steps))) return ccfgi_oom(p);
    for (int i = 0; i < n; i++) {
        c->n_steps = i + 1;
        if (parse_step(p, what, ccfgi_node(p, it[i]), i, c->steps)) return -1;
    }
    return 0;
}

/* functions: {INTENT: FUNCTION}: the tool call an intent answers with (docs/cluster.md,
 * "Tool calls"). A function name must be one a client can declare in tools (OpenAI's
 * [A-Za-z0-9_-]{1,64}), and the intent must come from a classify step of this pipeline. */
static int parse_functions(pctx *p, const char *what, yaml_node_t *n, ccfg_comp *c) {
    char fw[CCFGI_WHAT + 12];
    snprintf(fw, sizeof fw, "%s functions", what);
    if (kv_map(p, fw, n, 1024, &c->functions, &c->n_functions)) return -1;
    bool classify = false;
    for (int i = 0; i < c->n_steps; i++) classify |= c->steps[i].kind == CCFG_STEP_CLASSIFY;
    if (!classify)
        return ccfgi_fail(p, ccfgi_line(n), "%s: functions: needs a classify step (its label is the intent that "
                          "names the function)", what);
    for (int i = 0; i < c->n_functions; i++) {
        const char *fn = c->functions[i].value;
        size_t len = strlen(fn), ok = 0;
        for (size_t j = 0; j < len; j++) {
            unsigned char ch = (unsigned char)fn[j];
            ok += (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                  ch == '-';
        }
        if (!len || len > 64 || ok != len) {
            int line = ccfgi_line(n);
            for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
                const char *ks = ccfgi_scalar(ccfgi_node(p, pr->key));
                if (ks && !strcmp(ks, c->functions[i].key)) line = ccfgi_line(ccfgi_node(p, pr->value));
            }
            return ccfgi_fail(p, line, "%s: functions: intent %s: %s is not a function name a client can declare "
                              "(1 to 64 of a-z, A-Z, 0-9, '_' and '-')", what, ccfgi_q(p, c->functions[i].key),
                              ccfgi_q(p, fn));
        }
    }
    return 0;
}

/* ============================================================ per model ===== */

int ccfg_parse_compose(pctx *p, const char *what, const ccfg_field *f, ccfg_model *m) {
    static const char *const key_names[CC_N] = {CCFG_COMPOSE_KEYS};
    /* which keys each policy takes (1 allowed, 2 required) */
    static const signed char want[5][CC_N] = {
        /* classifier routes min_conf cascade signal threshold ensemble combine gate k scorer score
         * temperature steps output deadline functions */
        [0] = {0},                                                   /* not a composition */
        [1] = {2, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},   /* classify */
        [2] = {0, 0, 0, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},   /* cascade */
        [3] = {0, 0, 0, 0, 0, 0, 2, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},   /* ensemble */
        [4] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 1, 1},   /* pipeline */
    };
    int w = m->policy >= CCFG_POLICY_CLASSIFY && m->policy <= CCFG_POLICY_PIPELINE ? m->policy - CCFG_POLICY_RULES : 0;
    for (int k = 0; k < CC_N; k++) {
        if (f[k].k && !want[w][k])
            return ccfgi_fail(p, ccfgi_line(f[k].k), "%s: %s is not for this policy (classify: classifier, routes, "
                              "min_confidence; cascade: cascade, signal, threshold; ensemble: ensemble, combine, gate, k, "
                              "scorer, score, temperature; pipeline: "
                              "steps, output, deadline_ms, functions)", what, key_names[k]);
        if (want[w][k] == 2 && !f[k].v)
            return ccfgi_fail(p, m->line, "%s: this policy needs %s:", what, key_names[k]);
    }
    ccfg_comp *c = &m->comp;
    switch (m->policy) {
    case CCFG_POLICY_CLASSIFY:
        if (ccfgi_name(p, what, &f[CC_CLASSIFIER], &c->classifier)) return -1;
        if (kv_map(p, what, f[CC_ROUTES].v, 1024, &c->routes, &c->n_routes)) return -1;
        if (!c->n_routes) return ccfgi_fail(p, ccfgi_line(f[CC_ROUTES].v), "%s: routes: is empty", what);
        if (f[CC_MIN_CONFIDENCE].v && ccfgi_num(p, what, &f[CC_MIN_CONFIDENCE], 0, 1, &c->min_confidence)) return -1;
        return 0;
    case CCFG_POLICY_CASCADE:
        if (name_list(p, what, &f[CC_CASCADE], 2, MAX_STAGES, &c->stages, &c->n_stages)) return -1;
        if (parse_signal(p, what, &f[CC_SIGNAL], &c->signal)) return -1;
        return parse_thresholds(p, what, &f[CC_THRESHOLD], c);
    case CCFG_POLICY_ENSEMBLE: return parse_ensemble(p, what, f, c);
    case CCFG_POLICY_PIPELINE:
        if (parse_steps(p, what, &f[CC_STEPS], c)) return -1;
        if (f[CC_OUTPUT].v) {
            if (ccfgi_str(p, what, &f[CC_OUTPUT], &c->output)) return -1;
            if (check_template(p, ccfgi_line(f[CC_OUTPUT].v), what, c->output, c->steps, c->n_steps)) return -1;
        }
        if (f[CC_DEADLINE].v && ccfgi_ms(p, what, &f[CC_DEADLINE], false, &c->deadline_ms)) return -1;
        return f[CC_FUNCTIONS].v ? parse_functions(p, what, f[CC_FUNCTIONS].v, c) : 0;
    default: return 0;
    }
}

/* ============================================================ cross-references ===== */

static int index_of(const cluster_config *c, const char *name) {
    const ccfg_model *m = ccfg_find_model(c, name);
    return m ? (int)(m - c->models) : -1;
}

/* *name must be a model (by name or alias); stored as the name. */
static int resolve_ref(pctx *p, const cluster_config *c, const ccfg_model *m, const char *kind, int line, char **name) {
    int j = index_of(c, *name);
    if (j < 0) return ccfgi_fail(p, line, "model %s: %s %s is not a defined model", ccfgi_q(p, m->name), kind, ccfgi_q(p, *name));
    if (&c->models[j] == m) return ccfgi_fail(p, line, "model %s: %s refers to the model itself", ccfgi_q(p, m->name), kind);
    if (strcmp(*name, c->models[j].name)) {
        char *s = strdup(c->models[j].name);
        if (!s) return ccfgi_oom(p);
        free(*name), *name = s;
    }
    return 0;
}

/* The model names composition i calls (classify routes and default included). */
static int refs_of(const cluster_config *c, int i, int *out, int max) {
    const ccfg_model *m = &c->models[i];
    const ccfg_comp *k = &m->comp;
    int n = 0;
#define ADD(s) do { int j_ = (s) ? index_of(c, (s)) : -1; if (j_ >= 0 && n < max) out[n++] = j_; } while (0)
    ADD(k->classifier);
    for (int r = 0; r < k->n_routes; r++) ADD(k->routes[r].value);
    if (m->policy == CCFG_POLICY_CLASSIFY) ADD(m->default_target);
    for (int s = 0; s < k->n_stages; s++) ADD(k->stages[s]);
    for (int s = 0; s < k->n_members; s++) ADD(k->members[s].model);
    ADD(k->scorer);
    for (int s = 0; s < k->n_steps; s++) ADD(k->steps[s].model);
#undef ADD
    return n;
}

/* Depth-first search for a cycle through compositions: 0 white, 1 on the path, 2 done. */
static int find_cycle(const cluster_config *c, int i, unsigned char *color) {
    if (color[i] == 1) return i;
    if (color[i] == 2) return -1;
    color[i] = 1;
    int refs[MAX_FIELDS * 4];
    int n = refs_of(c, i, refs, (int)(sizeof refs / sizeof *refs));
    for (int r = 0; r < n; r++) {
        int at = find_cycle(c, refs[r], color);
        if (at >= 0) return at;
    }
    color[i] = 2;
    return -1;
}

int ccfg_check_compose(pctx *p, const cluster_config *c) {
    for (int i = 0; i < c->n_models; i++) {
        ccfg_model *m = &c->models[i];
        ccfg_comp *k = &m->comp;
        if (k->classifier && resolve_ref(p, c, m, "classifier", m->line, &k->classifier)) return -1;
        for (int r = 0; r < k->n_routes; r++)
            if (resolve_ref(p, c, m, "route target", m->line, &k->routes[r].value)) return -1;
        for (int s = 0; s < k->n_stages; s++)
            if (resolve_ref(p, c, m, "cascade stage", m->line, &k->stages[s])) return -1;
        for (int s = 0; s < k->n_members; s++)
            if (resolve_ref(p, c, m, "ensemble member", k->members[s].line, &k->members[s].model)) return -1;
        if (k->scorer && resolve_ref(p, c, m, "scorer", m->line, &k->scorer)) return -1;
        for (int s = 0; s < k->n_steps; s++)
            if (k->steps[s].model && resolve_ref(p, c, m, "step model", k->steps[s].line, &k->steps[s].model)) return -1;
    }
    unsigned char *color = calloc((size_t)c->n_models, 1);
    if (!color) return ccfgi_oom(p);
    int rc = 0;
    for (int i = 0; i < c->n_models && !rc; i++) {
        int at = find_cycle(c, i, color);
        if (at >= 0)
            rc = ccfgi_fail(p, c->models[at].line, "model %s: compositions call each other in a loop through %s",
                            ccfgi_q(p, c->models[i].name), ccfgi_q(p, c->models[at].name));
    }
    free(color);
    return rc;
}

/* ============================================================ free ===== */

static void free_kv(ccfg_kv *kv, int n) {
    for (int i = 0; i < n; i++) free(kv[i].key), free(kv[i].value);
    free(kv);
}

void ccfg_free_compose(ccfg_comp *c) {
    free(c->classifier);
    free_kv(c->routes, c->n_routes);
    for (int i = 0; i < c->n_stages; i++) free(c->stages[i]);
    free(c->stages);
    free(c->thresholds);
    for (int i = 0; i < c->n_members; i++) free(c->members[i].model);
    free(c->members);
    free(c->scorer);
    for (int i = 0; i < c->n_steps; i++) {
        ccfg_step *s = &c->steps[i];
        free(s->name), free(s->model), free(s->input), free(s->schema);
        free_kv(s->fields, s->n_fields);
        free_kv(s->fallback, s->n_fallback);
        for (int j = 0; j < s->n_when; j++) {
            free(s->when[j].var), free(s->when[j].value);
            for (int k = 0; k < s->when[j].n_set; k++) free(s->when[j].set[k]);
            free(s->when[j].set);
        }
        free(s->when);
    }
    free(c->steps);
    free(c->output);
    free_kv(c->functions, c->n_functions);
}
