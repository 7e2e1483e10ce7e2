/*
 * cluster/route — see route.h.
 */
#include "cluster/route.h"

#include <math.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

static const char *const policy_names[ROUTE_POLICY_COUNT] = {
    "round_robin", "least_loaded", "p2c", "prefix_affinity", "latency_budget", "weighted"};

int route_policy_from_name(const char *name) {
    for (int i = 0; name && i < ROUTE_POLICY_COUNT; i++)
        if (!strcmp(name, policy_names[i])) return i;
    return -1;
}

const char *route_policy_name(route_policy p) {
    return (unsigned)p < ROUTE_POLICY_COUNT ? policy_names[p] : "?";
}

/* ============================================================ state ===== */

typedef struct ring_point {
    uint64_t hash;
    int backend;
} ring_point;

struct route_state {
    route_config cfg;
    int n;
    uint64_t rr;               /* round robin: next start */
    uint64_t rng;              /* p2c: splitmix64 state */
    ring_point *ring;          /* prefix_affinity: n * vnodes points sorted by hash */
    int n_ring;
    double *cur;               /* weighted: smooth round robin's current weights [n] */
    uint64_t *name_hash;       /* weighted: each backend name's hash [n] */
};

/* FNV-1a, then a splitmix finaliser: well spread for short keys. */
static uint64_t hash_bytes(const void *p, size_t n, uint64_t seed) {
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

/* splitmix64: advances *s and returns its next well-mixed 64-bit value. */
static uint64_t next_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* qsort order of ring points: by hash, then by backend (a stable ring for equal hashes). */
static int cmp_point(const void *a, const void *b) {
    const ring_point *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash ? 1 : x->backend - y->backend;
}

route_state *route_init(const route_config *cfg, const route_backend *b, int n, sh_err *err) {
    if (n < 1) return sh_errf(err, "a model name needs at least one backend"), NULL;
    if ((unsigned)cfg->policy >= ROUTE_POLICY_COUNT) return sh_errf(err, "unknown routing policy"), NULL;
    route_state *st = calloc(1, sizeof *st);
    if (!st) return sh_errf(err, "out of memory"), NULL;
    st->cfg = *cfg;
    if (!st->cfg.prefix_bytes) st->cfg.prefix_bytes = 256;
    if (!(st->cfg.load_factor > 1.0)) st->cfg.load_factor = 1.25;
    if (st->cfg.vnodes <= 0) st->cfg.vnodes = 64;
    st->n = n;
    st->rng = cfg->seed ^ 0x5bd1e995u;
    if (cfg->policy == ROUTE_WEIGHTED) {
        st->cur = calloc((size_t)n, sizeof *st->cur);
        st->name_hash = calloc((size_t)n, sizeof *st->name_hash);
        if (!st->cur || !st->name_hash) {
            route_free(st);
            return sh_errf(err, "out of memory"), NULL;
        }
        for (int i = 0; i < n; i++)
            st->name_hash[i] = hash_bytes(b[i].name ? b[i].name : "", b[i].name ? strlen(b[i].name) : 0, 0x77);
    }
    if (cfg->policy == ROUTE_PREFIX_AFFINITY) {
        st->n_ring = n * st->cfg.vnodes;
        st->ring = malloc((size_t)st->n_ring * sizeof *st->ring);
        if (!st->ring) {
            free(st);
            return sh_errf(err, "out of memory"), NULL;
        }
        for (int i = 0, k = 0; i < n; i++) {
            const char *name = b[i].name ? b[i].name : "";
            for (int v = 0; v < st->cfg.vnodes; v++, k++)
                st->ring[k] = (ring_point){hash_bytes(name, strlen(name), (uint64_t)v), i};
        }
        qsort(st->ring, (size_t)st->n_ring, sizeof *st->ring, cmp_point);
    }
    return st;
}

void route_free(route_state *st) {
    if (!st) return;
    free(st->ring);
    free(st->cur);
    free(st->name_hash);
    free(st);
}

/* ============================================================ policies ===== */

/* Whether backend i may take this request: healthy and not excluded (excluded may be NULL). */
static bool usable(const route_backend *b, const bool *excluded, int i) {
    return b[i].healthy && !(excluded && excluded[i]);
}

/* Round robin: the first usable backend at or after st->rr, which then moves past it; -1: none. */
static int pick_round_robin(route_state *st, const route_backend *b, const bool *ex) {
    for (int k = 0; k < st->n; k++) {
        int i = (int)((st->rr + (uint64_t)k) % (uint64_t)st->n);
        if (usable(b, ex, i)) {
            st->rr = (uint64_t)i + 1;
            return i;
        }
    }
    return -1;
}

/* Least loaded: fewest outstanding tokens, then fewest requests, then the lower index; -1: none. */
static int pick_least_loaded(route_state *st, const route_backend *b, const bool *ex) {
    int best = -1;
    for (int i = 0; i < st->n; i++) {
        if (!usable(b, ex, i)) continue;
        if (best < 0 || b[i].outstanding_tokens < b[best].outstanding_tokens ||
            (b[i].outstanding_tokens == b[best].outstanding_tokens && b[i].outstanding < b[best].outstanding))
            best = i;
    }
    return best;
}

/* Expected wait on a backend: its latency EWMA times the queue it has (itself + 1). */
static double p2c_cost(const route_backend *b) { return b->ewma_ms * (1.0 + b->outstanding); }

/* Power of two choices: two distinct usable backends from st's random stream, the lower
 * p2c_cost (the first drawn on a tie); the only one if one is usable; -1: none. */
static int pick_p2c(route_state *st, const route_backend *b, const bool *ex) {
    int cand[2], nc = 0, n_ok = 0;
    for (int i = 0; i < st->n; i++) n_ok += usable(b, ex, i);
    if (n_ok == 0) return -1;
    if (n_ok == 1) {
        for (int i = 0; i < st->n; i++)
            if (usable(b, ex, i)) return i;
    }
    /* draw the k-th and l-th usable backends, k != l */
    int k = (int)(next_rand(&st->rng) % (uint64_t)n_ok);
    int l = (int)(next_rand(&st->rng) % (uint64_t)(n_ok - 1));
    if (l >= k) l++;
    for (int i = 0, u = 0; i < st->n && nc < 2; i++) {
        if (!usable(b, ex, i)) continue;
        if (u == k || u == l) cand[nc++] = i;
        u++;
    }
    double c0 = p2c_cost(&b[cand[0]]), c1 = p2c_cost(&b[cand[1]]);
    return c1 < c0 ? cand[1] : cand[0];
}

/* Prefix affinity: the prompt prefix's owner on the ring, or the next usable backend on it
 * within the load bound (the owner if none is); -1: none usable. rq may be NULL. */
static int pick_prefix(route_state *st, const route_backend *b, const bool *ex, const route_request *rq) {
    size_t len = rq && rq->prefix ? rq->prefix_len : 0;
    if (len > st->cfg.prefix_bytes) len = st->cfg.prefix_bytes;
    uint64_t h = hash_bytes(len ? rq->prefix : "", len, 0x9e37);
    /* bounded load: the chosen backend may hold at most ceil(load_factor * (total + 1) / n) + 1
     * requests with this one (the +1 keeps an idle cluster sticky: one request in flight is
     * no reason to leave a warm cache) */
    int total = 0, n_ok = 0;
    for (int i = 0; i < st->n; i++)
        if (usable(b, ex, i)) total += b[i].outstanding, n_ok++;
    if (n_ok == 0) return -1;
    double bound = ceil(st->cfg.load_factor * (double)(total + 1) / n_ok) + 1;
    /* first point at or after h, then walk the ring */
    int lo = 0, hi = st->n_ring;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (st->ring[mid].hash < h) lo = mid + 1;
        else hi = mid;
    }
    int fallback = -1;
    for (int k = 0; k < st->n_ring; k++) {
        int i = st->ring[(lo + k) % st->n_ring].backend;
        if (!usable(b, ex, i)) continue;
        if (fallback < 0) fallback = i;
        if (b[i].outstanding + 1 <= bound) return i;
    }
    return fallback; /* every usable backend is over the bound: the prefix's owner after all */
}

/* Latency budget: the most capable usable backend whose p95 fits rq's deadline (lower p95 on a
 * tie), else the lowest p95 with *degraded set; -1: none usable. rq may be NULL (no deadline). */
static int pick_budget(route_state *st, const route_backend *b, const bool *ex, const route_request *rq,
                       bool *degraded) {
    int best = -1, fastest = -1;
    double budget = rq ? rq->deadline_ms : 0;
    for (int i = 0; i < st->n; i++) {
        if (!usable(b, ex, i)) continue;
        if (fastest < 0 || b[i].p95_ms < b[fastest].p95_ms) fastest = i;
        bool fits = budget <= 0 || b[i].p95_ms <= budget;
        if (fits && (best < 0 || b[i].capability > b[best].capability ||
                     (b[i].capability == b[best].capability && b[i].p95_ms < b[best].p95_ms)))
            best = i;
    }
    if (best >= 0) return best;
    *degraded = fastest >= 0;
    return fastest;
}

/* Weighted: backend i's share, or 0 when it gets no traffic (weight <= 0, NaN or infinite: an
 * infinite weight would turn the round robin's current weights into NaN for good). */
static double weight_of(const route_backend *b, int i) {
    double w = b[i].weight;
    return w > 0 && isfinite(w) ? w : 0;
}

/* Weighted, keyed: weighted rendezvous hashing (highest random weight). Backend i scores
 * -w_i / ln(u_i), u_i in (0,1) a hash of the key and i's name; the highest score wins. -1/ln(u)
 * for uniform u is exponentially distributed, so i wins with probability w_i / sum(w) over the
 * usable backends; a key's scores do not depend on the others, so it moves only when its
 * backend drops out, and only to the backend that was second for it. Reads st, never writes. */
static int pick_rendezvous(const route_state *st, const route_backend *b, const bool *ex,
                           const route_request *rq) {
    uint64_t kh = hash_bytes(rq->sticky, rq->sticky_len, 0x51);
    int best = -1;
    double best_score = 0;
    for (int i = 0; i < st->n; i++) {
        double w = weight_of(b, i);
        if (!usable(b, ex, i) || w == 0) continue;
        uint64_t h = next_rand(&(uint64_t){kh ^ st->name_hash[i]});
        /* 52 bits + 0.5 ulp: strictly inside (0,1) (53 bits would round the top value to 1) */
        double u = ((double)(h >> 12) + 0.5) * 0x1p-52;
        double score = -w / log(u);
        if (best < 0 || score > best_score) best = i, best_score = score;
    }
    return best;
}

/* Weighted, no key: nginx's smooth weighted round robin over the usable backends with weight
 * > 0. Each grows its current weight by its weight; the largest (the lower index on a tie) is
 * picked and lowered by the total. With integer weights the picks repeat every sum(w), so while
 * the usable set stays the same every sum(w) consecutive picks hold each backend exactly w times,
 * spread out rather than in a run. A skipped backend's current weight
 * is kept as it is, so the sum over all stays 0 and it resumes its place when it is back. */
static int pick_smooth_wrr(route_state *st, const route_backend *b, const bool *ex) {
    int best = -1;
    double total = 0;
    for (int i = 0; i < st->n; i++) {
        double w = weight_of(b, i);
        if (!usable(b, ex, i) || w == 0) continue;
        st->cur[i] += w;
        total += w;
        if (best < 0 || st->cur[i] > st->cur[best]) best = i;
    }
    if (best >= 0) st->cur[best] -= total;
    return best;
}

/* Weighted: rendezvous hashing for a non-empty sticky key, else smooth weighted round robin. */
static int pick_weighted(route_state *st, const route_backend *b, const bool *ex, const route_request *rq) {
    if (rq && rq->sticky && rq->sticky_len) return pick_rendezvous(st, b, ex, rq);
    return pick_smooth_wrr(st, b, ex);
}

int route_pick(route_state *st, const route_backend *b, int n, const bool *excluded,
               const route_request *rq, route_decision *out) {
    route_decision d = {.backend = -1};
    if (n == st->n) {
        switch (st->cfg.policy) {
        case ROUTE_ROUND_ROBIN: d.backend = pick_round_robin(st, b, excluded); break;
        case ROUTE_LEAST_LOADED: d.backend = pick_least_loaded(st, b, excluded); break;
        case ROUTE_P2C: d.backend = pick_p2c(st, b, excluded); break;
        case ROUTE_PREFIX_AFFINITY: d.backend = pick_prefix(st, b, excluded, rq); break;
        case ROUTE_LATENCY_BUDGET: d.backend = pick_budget(st, b, excluded, rq, &d.degraded); break;
        case ROUTE_WEIGHTED: d.backend = pick_weighted(st, b, excluded, rq); break;
        default: break;
        }
    }
    if (out) *out = d;
    return d.backend;
}

/* ============================================================ rules ===== */

struct route_rules {
    int n;
    route_rule *rules;          /* copies of the strings */
    regex_t *re;                /* [n]; unused entries for metadata rules */
    bool *is_re;
};

void route_rules_free(route_rules *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) {
        if (r->is_re[i]) regfree(&r->re[i]);
        free((void *)r->rules[i].pattern);
        free((void *)r->rules[i].meta_key);
        free((void *)r->rules[i].meta_value);
        free((void *)r->rules[i].target);
    }
    free(r->rules);
    free(r->re);
    free(r->is_re);
    free(r);
}

/* strdup, or NULL for NULL (and on out of memory). */
static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

route_rules *route_rules_init(const route_rule *rules, int n, sh_err *err) {
    route_rules *r = calloc(1, sizeof *r);
    if (!r) return sh_errf(err, "out of memory"), NULL;
    r->rules = calloc((size_t)(n > 0 ? n : 1), sizeof *r->rules);
    r->re = calloc((size_t)(n > 0 ? n : 1), sizeof *r->re);
    r->is_re = calloc((size_t)(n > 0 ? n : 1), sizeof *r->is_re);
    if (!r->rules || !r->re || !r->is_re) {
        route_rules_free(r);
        return sh_errf(err, "out of memory"), NULL;
    }
    for (int i = 0; i < n; i++) {
        const route_rule *in = &rules[i];
        if (!in->target || !*in->target) {
            route_rules_free(r);
            return sh_errf(err, "rule %d: no target model", i + 1), NULL;
        }
        bool meta = in->meta_key != NULL;
        if (meta ? !in->meta_value : (!in->pattern || !*in->pattern)) {
            route_rules_free(r);
            return sh_errf(err, "rule %d: give a pattern, or a metadata key and value", i + 1), NULL;
        }
        r->n = i + 1;
        r->rules[i] = (route_rule){dup_or_null(in->pattern), dup_or_null(in->meta_key),
                                   dup_or_null(in->meta_value), dup_or_null(in->target)};
        if (!meta) {
            int rc = regcomp(&r->re[i], in->pattern, REG_EXTENDED | REG_ICASE | REG_NOSUB);
            if (rc) {
                char msg[128];
                regerror(rc, &r->re[i], msg, sizeof msg);
                route_rules_free(r);
                return sh_errf(err, "rule %d: pattern '%s': %s", i + 1, in->pattern, msg), NULL;
            }
            r->is_re[i] = true;
        }
    }
    return r;
}

const char *route_rules_match(const route_rules *r, const char *text, const char *const *meta_keys,
                              const char *const *meta_values, int n_meta) {
    for (int i = 0; r && i < r->n; i++) {
        const route_rule *ru = &r->rules[i];
        if (r->is_re[i]) {
            if (text && regexec(&r->re[i], text, 0, NULL, 0) == 0) return ru->target;
            continue;
        }
        for (int k = 0; k < n_meta; k++)
            if (!strcmp(meta_keys[k], ru->meta_key) && !strcmp(meta_values[k], ru->meta_value))
                return ru->target;
    }
    return NULL;
}
