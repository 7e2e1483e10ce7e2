/*
 * cluster/config — the cluster configuration (`cluster.yaml`): which models this process loads,
 * which remote nodes it routes to, the model names of the API with their routing policy and
 * backends, and the router's timeouts. Parsed with libyaml and validated completely at load, so
 * that the router never meets an unknown name, a bad URL or a missing model file at run time.
 *
 * Contract:
 *   - ccfg_load / ccfg_parse return a fully validated config, or NULL with one line in err,
 *     "PATH:LINE: problem" (LINE 1-based; the key or value at fault is named and quoted, with
 *     control and non-ASCII bytes escaped as \xNN and long values cut with "...").
 *   - The config owns every string and array in it; ccfg_free frees everything.
 *   - Every cross-reference is resolved: a backend names an existing local or node; rule,
 *     default and fallback targets are model *names* (an alias given in the file is replaced by
 *     its model's name); no fallback loops; no rule target is itself a rules model.
 *   - Relative paths (local path, api_key_file, join_token_file) are taken relative to the
 *     directory of the config file (ccfg_load) or the current directory (ccfg_parse); the
 *     stored local path is the resolved one.
 *   - Secrets given as *_env / *_file are read at load time; the stored value is the key itself.
 *   - The input is untrusted: any bytes give a config or an error, never a crash. YAML anchors
 *     are allowed, aliases (*x) are not (no expansion bombs); one document per file.
 * Not thread-safe while loading; a loaded config is read-only and may be shared.
 */
#ifndef SHOAL_CLUSTER_CONFIG_H
#define SHOAL_CLUSTER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "cluster/route.h" /* route_policy */
#include "core/err.h"

/* Policies beyond route_policy: names that pick another model (rules, classify) or compose
 * several (cascade, ensemble, pipeline; see compose/compose.h). */
#define CCFG_POLICY_RULES ROUTE_POLICY_COUNT          /* "rules" */
#define CCFG_POLICY_CLASSIFY (ROUTE_POLICY_COUNT + 1) /* "classify": a classifier's label picks the model */
#define CCFG_POLICY_CASCADE (ROUTE_POLICY_COUNT + 2)  /* "cascade": fast model first, escalate when unsure */
#define CCFG_POLICY_ENSEMBLE (ROUTE_POLICY_COUNT + 3) /* "ensemble": classifiers' probabilities averaged */
#define CCFG_POLICY_PIPELINE (ROUTE_POLICY_COUNT + 4) /* "pipeline": a chain of steps */
#define CCFG_IS_COMPOSITE(p) ((p) >= CCFG_POLICY_CASCADE)

/* Limits: beyond them the config is refused with a message naming the limit. */
#define CCFG_MAX_FILE_BYTES (1 << 20) /* size of the YAML text */
#define CCFG_MAX_ITEMS 256            /* locals, nodes, models; backends and rules per model */
#define CCFG_MAX_ALIASES 64           /* aliases per model */
#define CCFG_MAX_NAME 128             /* bytes of a name (printable ASCII, no spaces) */
#define CCFG_MAX_PATTERN 1024         /* bytes of a rule's regex */
#define CCFG_MAX_SECRET 4096          /* bytes of an API key / join token */
#define CCFG_MAX_DEPTH 32             /* nesting of YAML collections */

typedef struct ccfg_local {   /* a model loaded in this process */
    char *name;               /* unique among locals */
    char *path;               /* GGUF file; must exist and be readable at load */
    char *pooling;            /* encoders: pooling override ("mean", ...), or NULL */
    int line;
} ccfg_local;

typedef struct ccfg_node {    /* a remote shoal node */
    char *name;               /* unique among nodes */
    char *url;                /* "http://host:port" (no trailing slash; https allowed) */
    char *api_key;            /* NULL: none. From api_key, or api_key_env (environment variable name),
                               * or api_key_file (first line) */
    int line;
} ccfg_node;

typedef struct ccfg_backend { /* one backend of a model name: exactly one of local / node */
    char *local;              /* a ccfg_local name, or NULL */
    char *node;               /* a ccfg_node name, or NULL */
    char *model;              /* the model id to ask the node for (default: the model name itself;
                               * for a local backend always NULL) */
    int capability;           /* latency_budget: larger = more capable (default 0) */
    double weight;            /* weighted: share of the traffic (default 1; 0: none) */
    int line;
} ccfg_backend;

typedef struct ccfg_rule {    /* policy "rules": first match wins */
    char *pattern;            /* POSIX extended regex (case-insensitive) on the request text, or NULL */
    char *meta_key, *meta_value; /* or metadata key = value (both set), pattern NULL */
    char *target;             /* model name to route to (must be defined in models) */
    int line;
} ccfg_rule;

/* ---- composition (policies classify, cascade, ensemble, pipeline) ---- */

typedef struct ccfg_kv {      /* key: template (a string with {{var}} references) */
    char *key, *value;
} ccfg_kv;

typedef enum ccfg_signal {    /* a cascade stage's confidence in its own answer */
    CCFG_SIG_MEAN_LOGPROB,    /* mean token log-probability (<= 0) */
    CCFG_SIG_MIN_PROB,        /* the least likely chosen token's probability */
    CCFG_SIG_MARGIN,          /* mean over tokens of p(top1) - p(top2); classifiers: of the labels */
    CCFG_SIG_CLASSIFIER       /* classifiers: the top label's probability */
} ccfg_signal;

typedef enum ccfg_op { CCFG_OP_EQ, CCFG_OP_NE, CCFG_OP_LT, CCFG_OP_LE, CCFG_OP_GT, CCFG_OP_GE, CCFG_OP_IN } ccfg_op;

typedef struct ccfg_cond {    /* one condition of a step's when: (all must hold) */
    char *var;                /* "intent.label" */
    int op;                   /* ccfg_op; numbers compare as numbers, else as strings */
    char *value;              /* the operand (not for IN) */
    char **set; int n_set;    /* IN: the allowed values */
} ccfg_cond;

typedef enum ccfg_step_kind { CCFG_STEP_CLASSIFY, CCFG_STEP_GENERATE, CCFG_STEP_ACTION } ccfg_step_kind;

typedef struct ccfg_step {    /* one pipeline step; steps run in file order, each sees earlier ones */
    char *name;               /* unique in the pipeline; its outputs are NAME.field */
    int kind;                 /* ccfg_step_kind */
    char *model;              /* classify / generate: a model name of this config */
    char *input;              /* classify: the text; generate: the user message (template) */
    int max_tokens;           /* generate (default 64) */
    double temperature;       /* generate (default 0) */
    ccfg_kv *fields; int n_fields; /* action: the JSON object, key -> template */
    char *schema;             /* action: JSON Schema (as JSON text) the object must satisfy, or NULL */
    ccfg_cond *when; int n_when;   /* the step runs only when all hold (none: always) */
    double timeout_ms;        /* 0: only the pipeline's deadline bounds it */
    bool has_fallback;        /* a failed step takes these outputs instead of failing the pipeline */
    ccfg_kv *fallback; int n_fallback;
    int line;
} ccfg_step;

typedef struct ccfg_member { char *model; double weight; int line; } ccfg_member;

typedef enum ccfg_combine {   /* how an ensemble combines its members */
    CCFG_COMBINE_PROBS,       /* classifiers: weighted average of the label probabilities */
    CCFG_COMBINE_TOKENS,      /* generators with one vocabulary: token-level averaging in lockstep,
                               * gated to the tokens where members disagree or the margin is low */
    CCFG_COMBINE_BEST_OF      /* k candidates from the members (distinct seeds), the best by scorer */
} ccfg_combine;

typedef enum ccfg_score {     /* best_of: how the scorer judges a candidate */
    CCFG_SCORE_LOGLIK,        /* an LM's mean log-likelihood of the candidate after the prompt */
    CCFG_SCORE_RERANK         /* a reranker's score of (prompt, candidate) */
} ccfg_score;

typedef struct ccfg_comp {
    /* classify: a classifier's label picks the target */
    char *classifier;         /* model name answering /v1/classify */
    ccfg_kv *routes; int n_routes; /* label -> target model name */
    double min_confidence;    /* below it: default_target */
    /* cascade */
    char **stages; int n_stages;   /* model names, fastest first (>= 2) */
    int signal;               /* ccfg_signal */
    double *thresholds;       /* n_stages - 1: a stage's answer is accepted when its confidence >= this */
    /* ensemble */
    ccfg_member *members; int n_members;  /* probs, tokens: >= 2; best_of: >= 1 generators */
    int combine;              /* ccfg_combine (default probs) */
    double gate;              /* tokens: average where the top-1 tokens differ or the heaviest
                               * member's p(top1) - p(top2) is below this (default 0.3; 0: only where
                               * the top tokens differ) */
    int k;                    /* best_of: candidates (default 4) */
    char *scorer;             /* best_of: the model that scores them */
    int score;                /* best_of: ccfg_score (default loglik) */
    double temperature;       /* best_of: the candidates' temperature when the request's is 0
                               * or unset (default 0.8) */
    /* pipeline */
    ccfg_step *steps; int n_steps;
    char *output;             /* template of the answer's content (default: the last text produced) */
    double deadline_ms;       /* the whole pipeline (0: none) */
    ccfg_kv *functions; int n_functions; /* pipeline: intent label -> function name of a tool
                               * call (an intent not listed is its own function name) */
} ccfg_comp;

typedef struct ccfg_model {   /* a model name of the API */
    char *name;
    char **aliases; int n_aliases;   /* other names clients may use */
    int policy;               /* route_policy, or CCFG_POLICY_RULES */
    ccfg_backend *backends; int n_backends;  /* >= 1 unless policy is rules */
    ccfg_rule *rules; int n_rules;           /* policy rules only (>= 1) */
    char *default_target;     /* rules: model name when no rule matches (NULL: 404-style error) */
    char *fallback;           /* model name answering when this one has no usable backend, or NULL */
    bool hedge;               /* send a duplicate after hedge_after_ms (0 = the backend's live p95) */
    double hedge_after_ms;
    size_t prefix_bytes;      /* prefix_affinity (default 256) */
    double load_factor;       /* prefix_affinity (default 1.25) */
    int vnodes;               /* prefix_affinity (default 64) */
    char *sticky;             /* weighted: "user" (the request's user field) or "header:NAME", or NULL */
    ccfg_comp comp;           /* policies classify, cascade, ensemble, pipeline */
    int line;
    int default_line, fallback_line; /* where default / fallback were given (0: not given) */
} ccfg_model;

typedef struct cluster_config {
    char *host; int port;     /* listen: host NULL / port -1 when not given (CLI decides) */
    char *api_key;            /* clients' key for this router (api_key / api_key_env / api_key_file), or NULL */
    char *join_token;         /* nodes joining at run time must present it (join_token / _env / _file), or NULL: joins refused */
    double health_interval_ms;   /* health: interval_ms (default 500) */
    double health_timeout_ms;    /* health: timeout_ms (default 400) */
    int fail_threshold;          /* health: fail_threshold — consecutive failures that open the circuit (default 3) */
    double cooldown_ms;          /* health: cooldown_ms — open circuit -> half-open probe (default 2000) */
    int max_attempts;            /* retry: max_attempts — backends tried per request (default 3) */
    double connect_timeout_ms;   /* retry: connect_timeout_ms (default 500) */
    double first_byte_timeout_ms;/* retry: first_byte_timeout_ms — no answer by then = failed attempt (default 30000) */
    double heartbeat_ms;         /* join: heartbeat_ms — how often joined nodes report (default 1000) */
    double node_ttl_ms;          /* join: ttl_ms — a joined node silent this long is dropped (default 3000) */
    int slots, ctx, threads;     /* serve: slots / ctx / threads for local models (0 = server default) */
    ccfg_local *locals; int n_locals;
    ccfg_node *nodes; int n_nodes;
    ccfg_model *models; int n_models;
    char *path;                  /* the file it came from */
} cluster_config;

/* Reads and validates a config file. NULL with err = "PATH:LINE: problem" on any error. */
cluster_config *ccfg_load(const char *path, sh_err *err);
/* The same from memory (name is used in messages). */
cluster_config *ccfg_parse(const char *text, size_t len, const char *name, sh_err *err);
void ccfg_free(cluster_config *c);   /* NULL is fine */

/* "mean_logprob", "min_prob", "margin", "classifier_prob" (ccfg_signal). */
const char *ccfg_signal_name(int signal);

/* "round_robin", ..., "rules", "classify", "cascade", "ensemble", "pipeline". */
const char *ccfg_policy_name(int policy);

/* The model whose name or alias is `name`, or NULL. */
const ccfg_model *ccfg_find_model(const cluster_config *c, const char *name);

#endif
