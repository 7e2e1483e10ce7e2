/*
 * cluster/route — routing decisions: which backend (a local engine or a remote node) serves a
 * request for one model name. Pure decision logic over the live state the router keeps per
 * backend; no I/O, so every policy is tested by the decisions it makes.
 *
 * Policies:
 *   round_robin      the next healthy backend in turn
 *   least_loaded     fewest outstanding tokens (prompt + max_tokens of requests in flight),
 *                    then fewest requests, then the lower index
 *   p2c              power of two choices: two distinct healthy backends drawn at random, the
 *                    one with the lower latency EWMA weighted by (1 + outstanding requests)
 *   prefix_affinity  consistent hashing of the prompt's first prefix_len bytes on a ring of
 *                    virtual nodes, with bounded load: a backend that would hold more than
 *                    ceil(load_factor x (requests in flight + 1) / backends) + 1 requests is
 *                    passed over for the next one on the ring, so a hot prefix cannot overload
 *                    one node
 *   latency_budget   the most capable backend whose live p95 fits the request's deadline; if
 *                    none fits, the one with the lowest p95, marked degraded
 *   weighted         a traffic split by weight (a canary: 9 and 1). Without a sticky key:
 *                    smooth weighted round robin (every backend's current weight grows by its
 *                    weight, the largest is picked and lowered by the total), so a 9:1 split is
 *                    exact over every 10 requests. With one (the user or a session header):
 *                    weighted rendezvous hashing (score -weight / ln(u), u a hash of the key and
 *                    the backend's name in (0,1)), so a key always lands on the same backend
 *                    while it is usable, moves only when that backend goes away (and returns
 *                    when it is back), and many keys split by the weights. Unusable backends
 *                    are skipped and the others' weights renormalise. Weight 0 gets nothing.
 * (Rules — regex / keyword / metadata routing to another model name — happen before this,
 * in route_rules_match, because they pick a model, not a backend.)
 *
 * Unhealthy backends (failed checks, open circuit) are never picked; excluded[] lets a retry
 * skip the backends that already failed this request. Thread-safety: a route_state is used
 * under the router's lock for its model.
 */
#ifndef SHOAL_CLUSTER_ROUTE_H
#define SHOAL_CLUSTER_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef enum route_policy {
    ROUTE_ROUND_ROBIN = 0,
    ROUTE_LEAST_LOADED,
    ROUTE_P2C,
    ROUTE_PREFIX_AFFINITY,
    ROUTE_LATENCY_BUDGET,
    ROUTE_WEIGHTED,
    ROUTE_POLICY_COUNT
} route_policy;

/* "round_robin" ... ; -1 for an unknown name. */
int route_policy_from_name(const char *name);
const char *route_policy_name(route_policy p);

/* What the router knows of one backend right now. */
typedef struct route_backend {
    const char *name;           /* for the ring's hash and for messages (borrowed) */
    bool healthy;               /* health checks pass and the circuit lets requests through */
    int64_t outstanding_tokens; /* prompt + max_tokens of requests in flight */
    int outstanding;            /* requests in flight */
    double ewma_ms;             /* latency EWMA (0: unknown, treated as the best) */
    double p95_ms;              /* live p95 estimate of a request (0: unknown) */
    int capability;             /* larger = more capable model (latency_budget) */
    double weight;              /* weighted: relative share of the traffic (9 and 1: 90/10); 0,
                                 * negative or not finite: no traffic at all, even when it is the
                                 * only usable backend. Other policies ignore it. */
} route_backend;

typedef struct route_request {
    const char *prefix;         /* the prompt text (prefix_affinity), may be NULL */
    size_t prefix_len;          /* bytes of it to hash (the policy caps it) */
    double deadline_ms;         /* 0: none (latency_budget picks the most capable) */
    const char *sticky;         /* weighted: the stickiness key (the request's user, a session
                                 * header; need not be NUL-terminated), or NULL: none */
    size_t sticky_len;          /* its bytes; 0 is the same as no key */
} route_request;

typedef struct route_config {
    route_policy policy;
    size_t prefix_bytes;        /* prefix_affinity: bytes hashed (default 256) */
    double load_factor;         /* prefix_affinity: bound on load vs the mean (default 1.25) */
    int vnodes;                 /* prefix_affinity: ring points per backend (default 64) */
    uint64_t seed;              /* p2c: random stream */
} route_config;

typedef struct route_state route_state;

/* State for one model name over n backends (names are hashed once, for the ring). */
route_state *route_init(const route_config *cfg, const route_backend *b, int n, sh_err *err);
void route_free(route_state *st); /* NULL is fine */

typedef struct route_decision {
    int backend;                /* index into b[], or -1 when none is healthy */
    bool degraded;              /* latency_budget: nothing fits the deadline */
} route_decision;

/* Picks a backend for rq among b[0..n) (the same n as at init, in the same order: weighted
 * hashes the names given at init), skipping excluded[i] (may be NULL) and unhealthy backends;
 * weighted also skips weight 0, and the weights of the rest renormalise. rq may be NULL (no
 * prefix, deadline or key). Returns the index, or -1 when no candidate is left (or n differs
 * from init); out (may be NULL) gets the decision. A keyed weighted pick leaves st unchanged. */
int route_pick(route_state *st, const route_backend *b, int n, const bool *excluded,
               const route_request *rq, route_decision *out);

/* ---- rules ------------------------------------------------------------------------- */

typedef struct route_rule {
    const char *pattern;        /* POSIX extended regex, case-insensitive, matched on the text */
    const char *meta_key;       /* or: a request metadata key ... */
    const char *meta_value;     /* ... that must have this value (both NULL: use pattern) */
    const char *target;         /* the model name to route to */
} route_rule;

typedef struct route_rules route_rules;

/* Compiles the rules; NULL with "rule N: ..." in err for a bad regex or an empty target. */
route_rules *route_rules_init(const route_rule *rules, int n, sh_err *err);
void route_rules_free(route_rules *r);

/* The target of the first rule that matches the text (NUL-terminated) or the metadata
 * (n_meta key/value pairs), or NULL. */
const char *route_rules_match(const route_rules *r, const char *text, const char *const *meta_keys,
                              const char *const *meta_values, int n_meta);

#endif
