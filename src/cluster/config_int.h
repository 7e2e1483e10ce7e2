/*
 * cluster/config_int — the YAML helpers of cluster/config shared with the parser of its
 * composition section (config_compose.c). Private to those two files.
 *
 * Every helper fails with "NAME:LINE: problem" in the parse's error and returns -1; values are
 * untrusted bytes and are quoted (bounded, escaped) in messages.
 */
#ifndef SHOAL_CLUSTER_CONFIG_INT_H
#define SHOAL_CLUSTER_CONFIG_INT_H

#include <yaml.h>

#include "cluster/config.h"

typedef struct pctx pctx;

typedef struct ccfg_field {
    yaml_node_t *k;        /* the key, NULL when absent */
    yaml_node_t *v;        /* the value, NULL when absent or null */
} ccfg_field;

#define CCFGI_WHAT 100     /* bytes of a "model 'x' step 'y'" owner name for messages */

int ccfgi_fail(pctx *p, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int ccfgi_oom(pctx *p);
int ccfgi_line(const yaml_node_t *n);
yaml_node_t *ccfgi_node(pctx *p, int idx);
const char *ccfgi_scalar(const yaml_node_t *n);      /* NULL unless a NUL-free scalar */
const char *ccfgi_q(pctx *p, const char *s);         /* 'value' for messages */
const char *ccfgi_kind(const yaml_node_t *n);        /* "a mapping", "a list", "a scalar" */
/* map's keys must all be in keys[] (NULL-terminated), once each; out[i] is keys[i]'s field */
int ccfgi_fields(pctx *p, yaml_node_t *map, const char *what, const char *const *keys, ccfg_field *out);
int ccfgi_str(pctx *p, const char *what, const ccfg_field *f, char **out);   /* non-empty string */
int ccfgi_name(pctx *p, const char *what, const ccfg_field *f, char **out);  /* a config name */
int ccfgi_int(pctx *p, const char *what, const ccfg_field *f, long lo, long hi, int *out);
int ccfgi_num(pctx *p, const char *what, const ccfg_field *f, double lo, double hi, double *out);
int ccfgi_ms(pctx *p, const char *what, const ccfg_field *f, bool zero_ok, double *out);
int ccfgi_list(pctx *p, const char *what, const ccfg_field *f, int max, yaml_node_item_t **items, int *n);
/* Any YAML value as JSON text (plain scalars that read as numbers, true/false or null become
 * those; everything else a string). malloc'd. */
int ccfgi_json(pctx *p, yaml_node_t *n, char **out);

/* config_compose.c. The composition keys of a model entry, in this order (config.c lists them
 * last among the model keys, so that it passes &f[first] here). */
enum { CC_CLASSIFIER, CC_ROUTES, CC_MIN_CONFIDENCE, CC_CASCADE, CC_SIGNAL, CC_THRESHOLD, CC_ENSEMBLE,
       CC_COMBINE, CC_GATE, CC_K, CC_SCORER, CC_SCORE, CC_TEMPERATURE, CC_STEPS, CC_OUTPUT, CC_DEADLINE, CC_FUNCTIONS, CC_N };
#define CCFG_COMPOSE_KEYS \
    "classifier", "routes", "min_confidence", "cascade", "signal", "threshold", "ensemble", "combine", "gate", \
        "k", "scorer", "score", "temperature", "steps", "output", "deadline_ms", "functions"

/* Parses the composition keys of model m (policy already set): each policy's own keys are
 * required or allowed, the others refused. */
int ccfg_parse_compose(pctx *p, const char *what, const ccfg_field *f, ccfg_model *m);
/* Once every model is parsed: names referenced resolve to model names (aliases replaced), and
 * no composition refers to itself through others. */
int ccfg_check_compose(pctx *p, const cluster_config *c);
void ccfg_free_compose(ccfg_comp *c); /* frees the members, not c */

#endif
