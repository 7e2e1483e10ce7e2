/*
 * grammar/matcher — following generated text through a compiled grammar, and the token mask.
 *
 * State. The grammar is run as a nondeterministic pushdown automaton: a state is a set of
 * stacks; each stack is a chain of nodes (position, parent) whose top is a character element
 * and whose lower nodes are the positions to return to. Nodes are interned per matcher, so a
 * stack is one node id and a state is a sorted array of node ids (id 0 = the empty stack:
 * "the grammar may end here"). A state also carries the bytes of an incomplete UTF-8
 * character, so tokens may split characters.
 *
 * Lazy DFA. States are interned too, and each interned state has a 256-entry transition row
 * filled on demand: advancing over a byte is one table lookup once seen. Rows belong to the
 * matcher (one thread); they are dropped when they grow past a bound.
 *
 * Mask. One forward scan over the vocabulary trie (preorder): the state after a node's byte
 * is the parent's state advanced by that byte; a dead state skips the whole subtree. Inside
 * a JSON string the state loops on itself for ordinary characters, so after the first token
 * almost every step is a cached lookup. The finished mask is stored in the grammar's cache,
 * keyed by the state's canonical form (positions, not node ids) and the vocabulary, shared by
 * every matcher of that grammar under one mutex: a repeated schema is warm from its second
 * request on.
 *
 * String tokens. A bounded string (maxLength n) is a chain of helper rules, one state per
 * remaining count, each with most of the vocabulary alive: a cold mask there would walk
 * nearly the whole trie. The vocabulary index sets apart the "string tokens" (pieces of at
 * most GRAM_STR_MAX string-content characters, [^"\\\x00-\x1F], the last maybe incomplete)
 * with, per length, the bitset of those at most that long. When every stack top of a state
 * holds either all string-content characters or no character of them and no other non-ASCII
 * one ("uniform"), all of them lead to one next state; following that chain with one
 * representative character ('a') for up to GRAM_STR_MAX steps, each a cached transition,
 * gives the longest run k it survives, and then the allowed string tokens are exactly those
 * of at most k characters: one bitset copy. Only the other tokens (quotes, escapes,
 * controls, pieces that are not UTF-8, long ones) are walked, in a trie of their own.
 * States that are not uniform along the chain walk the whole trie as before.
 */
#include <stdlib.h>
#include <string.h>

#include "grammar/gram_int.h"

#define DEAD          0xffffffffu
#define DS_FLUSH      8192      /* interned DFA states before the tables are rebuilt */
#define NODE_FLUSH    (1u << 20)
#define CACHE_BYTES   (16u << 20) /* per grammar (a server keeps up to 16 grammars: 256 MiB at most) */
#define MAX_STACKS    4096      /* parse stacks in one state: more is refused (ambiguity blowup) */
/* One mask may take at most this many parse-stack steps per trie node (on average): a normal
 * grammar needs a few; an ambiguous client grammar (many stacks alive at every byte) would
 * otherwise hold the engine thread for seconds. Over budget, the mask fails (-2). */
#define MASK_WORK_PER_NODE 8

/* ---- the shared mask cache ---------------------------------------------------------------- */

typedef struct centry {
    struct centry *next;
    uint64_t h;
    uint32_t klen, count;
    size_t nw;
    uint32_t *key, *mask;
} centry;

struct gram_cache {
    pthread_mutex_t mu;
    centry **b;
    size_t nb, n, bytes;
};

gram_cache *gram_cache_new(void) {
    gram_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->nb = 1024;
    c->b = calloc(c->nb, sizeof *c->b);
    if (!c->b || pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c->b);
        free(c);
        return NULL;
    }
    return c;
}

static void cache_clear(gram_cache *c) {
    for (size_t i = 0; i < c->nb; i++) {
        for (centry *e = c->b[i], *nx; e; e = nx) {
            nx = e->next;
            free(e->key);
            free(e->mask);
            free(e);
        }
        c->b[i] = NULL;
    }
    c->n = c->bytes = 0;
}

void gram_cache_free(gram_cache *c) {
    if (!c) return;
    cache_clear(c);
    pthread_mutex_destroy(&c->mu);
    free(c->b);
    free(c);
}

size_t gram_cache_entries(const gram *g) {
    if (!g || !g->cache) return 0;
    pthread_mutex_lock(&g->cache->mu);
    size_t n = g->cache->n;
    pthread_mutex_unlock(&g->cache->mu);
    return n;
}

static bool cache_get(gram_cache *c, uint64_t h, const uint32_t *key, uint32_t klen, uint32_t *mask,
                      size_t nw, int *count) {
    bool hit = false;
    pthread_mutex_lock(&c->mu);
    for (centry *e = c->b[h & (c->nb - 1)]; e; e = e->next) {
        if (e->h == h && e->klen == klen && e->nw == nw && !memcmp(e->key, key, klen * 4u)) {
            memcpy(mask, e->mask, nw * 4);
            *count = (int)e->count;
            hit = true;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

static void cache_put(gram_cache *c, uint64_t h, const uint32_t *key, uint32_t klen,
                      const uint32_t *mask, size_t nw, int count) {
    centry *e = malloc(sizeof *e);
    uint32_t *k = malloc(klen * 4u + 4), *m = malloc(nw * 4);
    if (!e || !k || !m) {
        free(e);
        free(k);
        free(m);
        return; /* a cache that cannot grow is still correct */
    }
    memcpy(k, key, klen * 4u);
    memcpy(m, mask, nw * 4);
    e->h = h;
    e->klen = klen;
    e->count = (uint32_t)count;
    e->nw = nw;
    e->key = k;
    e->mask = m;
    size_t sz = sizeof *e + klen * 4u + nw * 4;
    pthread_mutex_lock(&c->mu);
    for (centry *o = c->b[h & (c->nb - 1)]; o; o = o->next) {
        if (o->h == h && o->klen == klen && o->nw == nw && !memcmp(o->key, key, klen * 4u)) {
            pthread_mutex_unlock(&c->mu); /* another thread was first */
            free(e);
            free(k);
            free(m);
            return;
        }
    }
    if (c->bytes + sz > CACHE_BYTES) cache_clear(c); /* simple and bounded */
    e->next = c->b[h & (c->nb - 1)];
    c->b[h & (c->nb - 1)] = e;
    c->n++;
    c->bytes += sz;
    pthread_mutex_unlock(&c->mu);
}

/* ---- matcher state ------------------------------------------------------------------------ */

typedef struct mnode {
    uint32_t pos, parent;
} mnode;

typedef struct dstate {
    uint32_t off, n; /* node ids m->sets[off .. off + n), sorted */
    uint64_t h;
    uint8_t npend, pend[3];
} dstate;

typedef struct vec32 {
    uint32_t *v;
    size_t n, cap;
} vec32;

struct gram_matcher {
    const gram *g;
    const gram_vocab *gv;
    mnode *nodes;
    uint32_t n_nodes, cap_nodes;
    uint32_t *nslot; /* node hash: id + 1 */
    size_t nslot_cap;
    uint32_t *mark, epoch;
    dstate *ds;
    uint32_t n_ds, cap_ds;
    uint32_t *dslot; /* state hash: id + 1 */
    size_t dslot_cap;
    vec32 sets;
    uint32_t *trans; /* cap_ds * 256: 0 unknown, DEAD, or state + 1 */
    vec32 out, work, key, tmp;
    uint32_t cur;
    bool ended, oom;
    uint64_t steps;             /* parse-stack steps of the mask being computed (budget) */
    uint32_t *walk;
};

static bool vpush(gram_matcher *m, vec32 *a, uint32_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        uint32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p) {
            m->oom = true;
            return false;
        }
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return true;
}

static inline uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_u32(const uint32_t *v, size_t n, uint64_t seed) {
    uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ull);
    for (size_t i = 0; i < n; i++) h = mix(h ^ v[i]) + 0x632be59bd9b4e019ull;
    return h;
}

static bool grow_nodes(gram_matcher *m) {
    uint32_t cap = m->cap_nodes ? 2 * m->cap_nodes : 1024;
    mnode *n = realloc(m->nodes, cap * sizeof *n);
    if (!n) return false;
    m->nodes = n;
    uint32_t *mk = realloc(m->mark, cap * sizeof *mk);
    if (!mk) return false;
    memset(mk + m->cap_nodes, 0, (cap - m->cap_nodes) * sizeof *mk);
    m->mark = mk;
    m->cap_nodes = cap;
    return true;
}

static bool rehash_nodes(gram_matcher *m, size_t cap) {
    uint32_t *s = calloc(cap, sizeof *s);
    if (!s) return false;
    for (uint32_t id = 1; id < m->n_nodes; id++) {
        size_t i = mix(((uint64_t)m->nodes[id].pos << 32) | m->nodes[id].parent) & (cap - 1);
        while (s[i]) i = (i + 1) & (cap - 1);
        s[i] = id + 1;
    }
    free(m->nslot);
    m->nslot = s;
    m->nslot_cap = cap;
    return true;
}

/* The node (pos, parent), created on first use; DEAD when memory runs out. */
static uint32_t intern_node(gram_matcher *m, uint32_t pos, uint32_t parent) {
    size_t i = mix(((uint64_t)pos << 32) | parent) & (m->nslot_cap - 1);
    for (uint32_t v; (v = m->nslot[i]) != 0; i = (i + 1) & (m->nslot_cap - 1)) {
        const mnode *n = &m->nodes[v - 1];
        if (n->pos == pos && n->parent == parent) return v - 1;
    }
    if (m->n_nodes == m->cap_nodes && !grow_nodes(m)) {
        m->oom = true;
        return DEAD;
    }
    uint32_t id = m->n_nodes++;
    m->nodes[id].pos = pos;
    m->nodes[id].parent = parent;
    m->nslot[i] = id + 1;
    if (2 * (size_t)m->n_nodes > m->nslot_cap && !rehash_nodes(m, 2 * m->nslot_cap)) m->oom = true;
    return id;
}

/* Adds to m->out the stacks (top at a character element) that the partial stack (pos,
 * parent) expands to; marks guard against repeats within one epoch. */
static void closure(gram_matcher *m, uint32_t pos, uint32_t parent) {
    const gram *g = m->g;
    m->work.n = 0;
    if (!vpush(m, &m->work, pos) || !vpush(m, &m->work, parent)) return;
    while (m->work.n) {
        uint32_t par = m->work.v[--m->work.n];
        uint32_t p = m->work.v[--m->work.n];
        uint32_t id;
        if (GE_KIND(g->elems[p]) == GE_END) {
            id = par; /* return into the parent: its node is (its position, grandparent) */
        } else {
            id = intern_node(m, p, par);
            if (id == DEAD) return;
        }
        if (m->mark[id] == m->epoch) continue;
        m->mark[id] = m->epoch;
        if (id == 0) {
            vpush(m, &m->out, 0);
            continue;
        }
        const mnode n = m->nodes[id];
        uint32_t e = g->elems[n.pos];
        if (GE_KIND(e) == GE_CHAR) {
            vpush(m, &m->out, id);
            if (m->out.n > MAX_STACKS) return; /* step_cp refuses the character */
            continue;
        }
        /* GE_REF: the return position, unless the reference ends its alternative */
        uint32_t np = n.parent;
        if (GE_KIND(g->elems[n.pos + 1]) != GE_END) {
            np = intern_node(m, n.pos + 1, n.parent);
            if (np == DEAD) return;
        }
        const gram_rule *r = &g->rules[GE_ARG(e)];
        for (uint32_t a = r->n_alt; a-- > 0;) {
            if (!vpush(m, &m->work, g->alts[r->alt + a]) || !vpush(m, &m->work, np)) return;
        }
    }
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void sort_out(gram_matcher *m) {
    uint32_t *v = m->out.v;
    size_t n = m->out.n;
    if (n < 16) {
        for (size_t i = 1; i < n; i++) {
            uint32_t x = v[i];
            size_t j = i;
            while (j > 0 && v[j - 1] > x) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = x;
        }
    } else {
        qsort(v, n, sizeof *v, cmp_u32);
    }
}

static bool rehash_states(gram_matcher *m, size_t cap) {
    uint32_t *s = calloc(cap, sizeof *s);
    if (!s) return false;
    for (uint32_t id = 0; id < m->n_ds; id++) {
        size_t i = m->ds[id].h & (cap - 1);
        while (s[i]) i = (i + 1) & (cap - 1);
        s[i] = id + 1;
    }
    free(m->dslot);
    m->dslot = s;
    m->dslot_cap = cap;
    return true;
}

/* The state (set, pend); DEAD for an empty set or when memory runs out. */
static uint32_t intern_state(gram_matcher *m, const uint32_t *set, uint32_t n, const uint8_t *pend,
                             uint8_t npend) {
    if (n == 0) return DEAD;
    uint64_t h = hash_u32(set, n, 0x51ed27u + npend);
    for (uint8_t i = 0; i < npend; i++) h = mix(h ^ pend[i]);
    size_t i = h & (m->dslot_cap - 1);
    for (uint32_t v; (v = m->dslot[i]) != 0; i = (i + 1) & (m->dslot_cap - 1)) {
        const dstate *d = &m->ds[v - 1];
        if (d->h == h && d->n == n && d->npend == npend && (!npend || !memcmp(d->pend, pend, npend)) &&
            !memcmp(m->sets.v + d->off, set, n * sizeof *set))
            return v - 1;
    }
    if (m->n_ds == m->cap_ds) {
        uint32_t cap = m->cap_ds ? 2 * m->cap_ds : 256;
        dstate *d = realloc(m->ds, cap * sizeof *d);
        if (!d) goto oom;
        m->ds = d;
        uint32_t *t = realloc(m->trans, (size_t)cap * 256 * sizeof *t);
        if (!t) goto oom;
        m->trans = t;
        m->cap_ds = cap;
    }
    size_t off = m->sets.n;
    for (uint32_t k = 0; k < n; k++)
        if (!vpush(m, &m->sets, set[k])) return DEAD;
    /* set may have pointed into m->sets: it is copied already, do not touch it below */
    uint32_t id = m->n_ds++;
    dstate *d = &m->ds[id];
    d->off = (uint32_t)off;
    d->n = n;
    d->h = h;
    d->npend = npend;
    memset(d->pend, 0, sizeof d->pend);
    if (npend) memcpy(d->pend, pend, npend);
    memset(m->trans + (size_t)id * 256, 0, 256 * sizeof *m->trans);
    m->dslot[i] = id + 1;
    if (2 * (size_t)m->n_ds > m->dslot_cap && !rehash_states(m, 2 * m->dslot_cap)) goto oom;
    return id;
oom:
    m->oom = true;
    return DEAD;
}

/* Stacks of state s whose top accepts some code point in [lo, hi]? */
static bool any_overlap(gram_matcher *m, uint32_t s, uint32_t lo, uint32_t hi) {
    const dstate *d = &m->ds[s];
    for (uint32_t k = 0; k < d->n; k++) {
        uint32_t id = m->sets.v[d->off + k];
        if (id && gram_class_overlaps(m->g, GE_ARG(m->g->elems[m->nodes[id].pos]), lo, hi)) return true;
    }
    return false;
}

/* Narrows [lo, hi] (the code points an incomplete sequence of len bytes may still become) to
 * the ones UTF-8 can encode that way: no overlong forms, no surrogates. */
static bool utf8_range(uint32_t *lo, uint32_t *hi, size_t len) {
    uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (*lo < min) *lo = min;
    if (*hi > GRAM_MAX_CP) *hi = GRAM_MAX_CP;
    if (*lo > *hi) return false;
    if (*lo >= 0xd800 && *hi <= 0xdfff) return false;
    return true;
}

/* Advances state s over one complete code point. */
static uint32_t step_cp(gram_matcher *m, uint32_t s, uint32_t cp) {
    const gram *g = m->g;
    if (++m->epoch == 0) {
        memset(m->mark, 0, m->cap_nodes * sizeof *m->mark);
        m->epoch = 1;
    }
    m->out.n = 0;
    uint32_t off = m->ds[s].off, n = m->ds[s].n;
    m->steps += n;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t id = m->sets.v[off + k];
        if (!id) continue;
        mnode nd = m->nodes[id];
        if (!gram_class_match(g, GE_ARG(g->elems[nd.pos]), cp)) continue;
        closure(m, nd.pos + 1, nd.parent);
    }
    m->steps += m->out.n;
    if (m->oom || m->out.n > MAX_STACKS) return DEAD;
    sort_out(m);
    return intern_state(m, m->out.v, (uint32_t)m->out.n, NULL, 0);
}

static uint32_t step_byte_slow(gram_matcher *m, uint32_t s, uint8_t b) {
    const dstate d0 = m->ds[s];
    if (d0.npend == 0) {
        if (b < 0x80) return step_cp(m, s, b);
        uint32_t lo, hi;
        if (b >= 0xc2 && b <= 0xdf) {
            lo = (uint32_t)(b & 0x1f) << 6;
            hi = lo | 0x3f;
        } else if (b >= 0xe0 && b <= 0xef) {
            lo = (uint32_t)(b & 0x0f) << 12;
            hi = lo | 0xfff;
        } else if (b >= 0xf0 && b <= 0xf4) {
            lo = (uint32_t)(b & 0x07) << 18;
            hi = lo | 0x3ffff;
        } else {
            return DEAD;
        }
        if (!utf8_range(&lo, &hi, b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2) || !any_overlap(m, s, lo, hi)) return DEAD;
        m->tmp.n = 0;
        for (uint32_t k = 0; k < d0.n; k++)
            if (!vpush(m, &m->tmp, m->sets.v[d0.off + k])) return DEAD;
        return intern_state(m, m->tmp.v, d0.n, &b, 1);
    }
    if ((b & 0xc0) != 0x80) return DEAD;
    uint8_t buf[4];
    memcpy(buf, d0.pend, d0.npend);
    buf[d0.npend] = b;
    uint8_t nb = (uint8_t)(d0.npend + 1);
    size_t need = buf[0] >= 0xf0 ? 4 : buf[0] >= 0xe0 ? 3 : 2;
    if (nb == need) {
        uint32_t cp;
        if (gram_utf8_decode((const char *)buf, nb, &cp) != nb) return DEAD;
        /* the node set is unchanged while bytes are pending */
        return step_cp(m, s, cp);
    }
    /* narrow the range with the bytes known so far */
    uint32_t c = buf[0] & (need == 3 ? 0x0fu : 0x07u);
    for (uint8_t i = 1; i < nb; i++) c = (c << 6) | (buf[i] & 0x3fu);
    uint32_t shift = 6u * (uint32_t)(need - nb);
    uint32_t lo = c << shift, hi = lo | ((1u << shift) - 1);
    if (!utf8_range(&lo, &hi, need) || !any_overlap(m, s, lo, hi)) return DEAD;
    m->tmp.n = 0;
    for (uint32_t k = 0; k < d0.n; k++)
        if (!vpush(m, &m->tmp, m->sets.v[d0.off + k])) return DEAD;
    return intern_state(m, m->tmp.v, d0.n, buf, nb);
}

static inline uint32_t step(gram_matcher *m, uint32_t s, uint8_t b) {
    uint32_t t = m->trans[(size_t)s * 256 + b];
    if (t) return t == DEAD ? DEAD : t - 1;
    uint32_t r = step_byte_slow(m, s, b);
    if (m->oom) return DEAD; /* do not remember transitions cut short */
    m->trans[(size_t)s * 256 + b] = r == DEAD ? DEAD : r + 1;
    return r;
}

/* ---- canonical form (cache key, rebuilds) ------------------------------------------------ */

/* m->key = [vocab serial lo, hi, npend, pend bytes, n stacks, then per stack: length,
 * positions top to bottom], stacks sorted. */
static bool make_key(gram_matcher *m, uint32_t s) {
    const dstate d = m->ds[s];
    uint64_t serial = m->gv ? m->gv->serial : 0;
    m->key.n = 0;
    m->tmp.n = 0; /* per stack: offset into work, length */
    m->work.n = 0;
    for (uint32_t k = 0; k < d.n; k++) {
        uint32_t id = m->sets.v[d.off + k];
        uint32_t start = (uint32_t)m->work.n;
        for (uint32_t x = id; x; x = m->nodes[x].parent)
            if (!vpush(m, &m->work, m->nodes[x].pos)) return false;
        if (!vpush(m, &m->tmp, start) || !vpush(m, &m->tmp, (uint32_t)m->work.n - start)) return false;
    }
    /* insertion sort of (offset, length) pairs by (length, content) */
    uint32_t ns = (uint32_t)(m->tmp.n / 2);
    uint32_t *t = m->tmp.v, *w = m->work.v;
    for (uint32_t i = 1; i < ns; i++) {
        uint32_t o = t[2 * i], l = t[2 * i + 1];
        uint32_t j = i;
        while (j > 0) {
            uint32_t po = t[2 * (j - 1)], pl = t[2 * (j - 1) + 1];
            int c = pl != l ? (pl < l ? -1 : 1) : memcmp(w + po, w + o, l * sizeof *w);
            if (c <= 0) break;
            t[2 * j] = po;
            t[2 * j + 1] = pl;
            j--;
        }
        t[2 * j] = o;
        t[2 * j + 1] = l;
    }
    uint32_t pend = (uint32_t)d.pend[0] | (uint32_t)d.pend[1] << 8 | (uint32_t)d.pend[2] << 16;
    if (!vpush(m, &m->key, (uint32_t)serial) || !vpush(m, &m->key, (uint32_t)(serial >> 32)) ||
        !vpush(m, &m->key, d.npend) || !vpush(m, &m->key, pend) || !vpush(m, &m->key, ns))
        return false;
    for (uint32_t i = 0; i < ns; i++) {
        if (!vpush(m, &m->key, t[2 * i + 1])) return false;
        for (uint32_t k = 0; k < t[2 * i + 1]; k++)
            if (!vpush(m, &m->key, m->work.v[t[2 * i] + k])) return false;
    }
    return true;
}

static void clear_tables(gram_matcher *m) {
    m->n_nodes = 1; /* node 0: the empty stack */
    memset(m->nslot, 0, m->nslot_cap * sizeof *m->nslot);
    m->n_ds = 0;
    memset(m->dslot, 0, m->dslot_cap * sizeof *m->dslot);
    m->sets.n = 0;
    memset(m->mark, 0, m->cap_nodes * sizeof *m->mark);
    m->epoch = 1;
}

/* Rebuilds the tables with only the current state in them (bounds memory on long runs). */
static void compact(gram_matcher *m) {
    if (!make_key(m, m->cur)) return;
    vec32 k = m->key;
    m->key = (vec32){0};
    clear_tables(m);
    uint8_t pend[3] = {(uint8_t)k.v[3], (uint8_t)(k.v[3] >> 8), (uint8_t)(k.v[3] >> 16)};
    uint32_t ns = k.v[4];
    size_t p = 5;
    m->out.n = 0;
    for (uint32_t i = 0; i < ns; i++) {
        uint32_t l = k.v[p++];
        uint32_t parent = 0;
        for (uint32_t j = l; j-- > 0;) {
            parent = intern_node(m, k.v[p + j], parent);
            if (parent == DEAD) break;
        }
        p += l;
        vpush(m, &m->out, parent);
    }
    sort_out(m);
    m->cur = intern_state(m, m->out.v, (uint32_t)m->out.n, pend, (uint8_t)k.v[2]);
    free(m->key.v);
    m->key = k;
}

/* ---- public ------------------------------------------------------------------------------ */

void gram_matcher_reset(gram_matcher *m) {
    clear_tables(m);
    m->ended = false;
    m->epoch++;
    m->out.n = 0;
    const gram_rule *r = &m->g->rules[m->g->root];
    for (uint32_t a = 0; a < r->n_alt; a++) closure(m, m->g->alts[r->alt + a], 0);
    sort_out(m);
    m->cur = intern_state(m, m->out.v, (uint32_t)m->out.n, NULL, 0);
    if (m->cur == DEAD) m->ended = true; /* a grammar matching nothing (or no memory) */
}

gram_matcher *gram_matcher_init(const gram *g, const gram_vocab *gv, sh_err *err) {
    SH_ASSERT(g);
    gram_matcher *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->g = g;
    m->gv = gv;
    m->nslot_cap = 4096;
    m->dslot_cap = 1024;
    m->nslot = calloc(m->nslot_cap, sizeof *m->nslot);
    m->dslot = calloc(m->dslot_cap, sizeof *m->dslot);
    m->walk = malloc(((gv ? gv->max_depth : 0) + 2) * sizeof *m->walk);
    if (!m->nslot || !m->dslot || !m->walk || !grow_nodes(m)) goto oom;
    m->nodes[0].pos = m->nodes[0].parent = UINT32_MAX;
    gram_matcher_reset(m);
    if (m->oom) goto oom;
    return m;
oom:
    gram_matcher_free(m);
    sh_errf(err, "grammar matcher: out of memory");
    return NULL;
}

void gram_matcher_free(gram_matcher *m) {
    if (!m) return;
    free(m->nodes);
    free(m->nslot);
    free(m->mark);
    free(m->ds);
    free(m->dslot);
    free(m->sets.v);
    free(m->trans);
    free(m->out.v);
    free(m->work.v);
    free(m->key.v);
    free(m->tmp.v);
    free(m->walk);
    free(m);
}

static bool state_can_end(const gram_matcher *m, uint32_t s) {
    const dstate *d = &m->ds[s];
    return d->npend == 0 && d->n > 0 && m->sets.v[d->off] == 0;
}

bool gram_matcher_can_end(const gram_matcher *m) { return m->ended || state_can_end(m, m->cur); }

bool gram_matcher_done(const gram_matcher *m) {
    return m->ended || (state_can_end(m, m->cur) && m->ds[m->cur].n == 1);
}

static void maybe_compact(gram_matcher *m) {
    if (m->n_ds > DS_FLUSH || m->n_nodes > NODE_FLUSH) compact(m);
}

int gram_matcher_accept_bytes(gram_matcher *m, const char *s, size_t n) {
    if (m->ended) return -1;
    maybe_compact(m);
    uint32_t st = m->cur;
    for (size_t i = 0; i < n && st != DEAD; i++) st = step(m, st, (uint8_t)s[i]);
    if (st == DEAD) return -1;
    m->cur = st;
    return 0;
}

int gram_matcher_accept(gram_matcher *m, int32_t id) {
    SH_ASSERT(m->gv);
    if (m->ended || id < 0 || id >= m->gv->n_vocab) return -1;
    if (tok_is_eog(m->gv->v, id)) {
        if (!state_can_end(m, m->cur)) return -1;
        m->ended = true;
        return 0;
    }
    size_t len = 0;
    const char *p = tok_piece(m->gv->v, id, false, &len);
    if (!p || len == 0) return -1;
    return gram_matcher_accept_bytes(m, p, len);
}

bool gram_matcher_allows(gram_matcher *m, int32_t id) {
    SH_ASSERT(m->gv);
    if (m->ended || id < 0 || id >= m->gv->n_vocab) return false;
    if (tok_is_eog(m->gv->v, id)) return state_can_end(m, m->cur);
    size_t len = 0;
    const char *p = tok_piece(m->gv->v, id, false, &len);
    if (!p || len == 0) return false;
    uint32_t st = m->cur;
    for (size_t i = 0; i < len && st != DEAD; i++) st = step(m, st, (uint8_t)p[i]);
    return st != DEAD;
}

/* Does state s treat all string-content characters alike? True when every stack's top class
 * holds all of them or none (nor any other code point that is not ASCII: no incomplete UTF-8
 * sequence can then be alive through it); *any: some stack takes them. */
static bool str_uniform(const gram_matcher *m, uint32_t s, bool *any) {
    static const uint32_t none[6] = {0x20, 0x21, 0x23, 0x5b, 0x5d, GRAM_MAX_CP};
    const gram *g = m->g;
    const dstate *d = &m->ds[s];
    *any = false;
    if (d->npend) return false;
    for (uint32_t k = 0; k < d->n; k++) {
        uint32_t id = m->sets.v[d->off + k];
        if (!id) continue;
        uint32_t cls = GE_ARG(g->elems[m->nodes[id].pos]);
        bool all = true, some = false;
        for (int i = 0; i < GRAM_STR_RANGES && all; i++)
            all = gram_class_covers(g, cls, gram_str_ranges[2 * i], gram_str_ranges[2 * i + 1]);
        for (int i = 0; i < 3 && !some; i++) some = gram_class_overlaps(g, cls, none[2 * i], none[2 * i + 1]);
        if (all) *any = true;
        else if (some) return false;
    }
    return true;
}

/* The string-token shortcut of the mask. If from the current state every string-content
 * character leads to the same next state, for as many characters as a string token holds, a
 * string token of n characters (the last maybe incomplete) is allowed iff the first n steps
 * of that chain are alive; *n_ok is the longest such n (at most GRAM_STR_MAX). False: the
 * state does not qualify (the mask walks the whole trie). */
static bool str_chain(gram_matcher *m, uint32_t *n_ok) {
    uint32_t s = m->cur;
    for (uint32_t j = 0; j < GRAM_STR_MAX; j++) {
        bool any;
        if (!str_uniform(m, s, &any)) return false;
        uint32_t t = step(m, s, 'a'); /* any string-content character would do */
        if (t == DEAD) {
            /* no stack takes a character (else a step died of too many stacks or no memory,
             * where an incomplete character could still be alive: walk instead) */
            if (any || m->oom) return false;
            *n_ok = j;
            return true;
        }
        s = t;
    }
    *n_ok = GRAM_STR_MAX;
    return true;
}

int gram_matcher_mask(gram_matcher *m, uint32_t *mask) {
    const gram_vocab *gv = m->gv;
    SH_ASSERT(gv);
    memset(mask, 0, gv->n_words * sizeof *mask);
    if (m->ended) return 0;
    maybe_compact(m);
    m->oom = false;
    if (!make_key(m, m->cur)) return -1;
    uint64_t h = hash_u32(m->key.v, m->key.n, 0x9au);
    int count = 0;
    if (cache_get(m->g->cache, h, m->key.v, (uint32_t)m->key.n, mask, gv->n_words, &count))
        return count;
    uint32_t *st = m->walk;
    uint32_t n_str = 0;
    bool fast = str_chain(m, &n_str);
    if (m->oom) return -1;
    st[0] = m->cur;
    const gram_trie *trie = fast ? &gv->rest : &gv->all;
    const uint8_t *byte = trie->byte;
    const uint16_t *depth = trie->depth;
    const uint32_t *end = trie->end, *off = trie->tok_off;
    const int32_t *toks = trie->toks;
    uint32_t n_nodes = trie->n_nodes;
    if (fast && n_str) {
        const uint32_t *le = gv->str_le + (size_t)(n_str - 1) * gv->n_words;
        for (size_t w = 0; w < gv->n_words; w++) mask[w] = le[w];
    }
    m->steps = 0;
    const uint64_t budget = (uint64_t)MASK_WORK_PER_NODE * (gv->all.n_nodes > 4096 ? gv->all.n_nodes : 4096);
    for (uint32_t i = 0; i < n_nodes;) {
        if (m->steps > budget) return -2; /* nothing cached: the state is unchanged */
        uint32_t d = depth[i];
        uint32_t t = step(m, st[d - 1], byte[i]);
        if (t == DEAD) {
            i = end[i];
            continue;
        }
        st[d] = t;
        for (uint32_t k = off[i]; k < off[i + 1]; k++) {
            uint32_t id = (uint32_t)toks[k];
            mask[id >> 5] |= 1u << (id & 31);
        }
        i++;
    }
    if (m->oom) return -1;
    if (state_can_end(m, m->cur))
        for (uint32_t k = 0; k < gv->n_eog; k++)
            mask[(uint32_t)gv->eog[k] >> 5] |= 1u << ((uint32_t)gv->eog[k] & 31);
    for (size_t w = 0; w < gv->n_words; w++) count += __builtin_popcount(mask[w]);
    cache_put(m->g->cache, h, m->key.v, (uint32_t)m->key.n, mask, gv->n_words, count);
    return count;
}

bool gram_match(const gram *g, const char *s, size_t n) {
    gram_matcher *m = gram_matcher_init(g, NULL, NULL);
    if (!m) return false;
    bool ok = gram_matcher_accept_bytes(m, s, n) == 0 && gram_matcher_can_end(m);
    gram_matcher_free(m);
    return ok;
}
