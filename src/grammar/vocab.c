/*
 * grammar/vocab — the per-vocabulary index: every token's piece in one byte trie, laid out in
 * preorder so that a mask computation is one forward scan that jumps over the subtree of the
 * first rejected byte.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/gram_int.h"

#define PIECE_MAX 4096 /* longer pieces (none in real vocabularies) are never allowed */

typedef struct piece {
    const char *s;
    uint32_t n;
    int32_t id;
} piece;

static int cmp_piece(const void *a, const void *b) {
    const piece *x = a, *y = b;
    size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, n);
    if (c) return c;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static atomic_uint_fast64_t vocab_serial = 1;

const uint32_t gram_str_ranges[2 * GRAM_STR_RANGES] = {0x20, 0x21, 0x23, 0x5b, 0x5d, 0xd7ff, 0xe000, GRAM_MAX_CP};

static void trie_free(gram_trie *t) {
    free(t->byte);
    free(t->depth);
    free(t->end);
    free(t->tok_off);
    free(t->toks);
}

void gram_vocab_free(gram_vocab *gv) {
    if (!gv) return;
    trie_free(&gv->all);
    free(gv->eog);
    trie_free(&gv->rest);
    free(gv->str_le);
    free(gv);
}

size_t gram_vocab_mask_words(const gram_vocab *gv) { return gv->n_words; }

/* Builds the trie of ps[0..np) (sorted by cmp_piece, total bytes total); false: no memory. */
static bool trie_build(gram_trie *t, const piece *ps, size_t np, size_t total, uint32_t *max_depth) {
    /* at most one node per byte of all pieces */
    size_t cap = total + 1;
    t->byte = malloc(cap);
    t->depth = malloc(cap * sizeof *t->depth);
    t->end = malloc(cap * sizeof *t->end);
    t->tok_off = malloc((cap + 1) * sizeof *t->tok_off);
    t->toks = malloc((np + 1) * sizeof *t->toks);
    uint32_t *path = malloc((PIECE_MAX + 2) * sizeof *path);
    if (!t->byte || !t->depth || !t->end || !t->tok_off || !t->toks || !path) {
        free(path);
        return false;
    }
    uint32_t n = 0, open = 0; /* open: nodes path[1..open] have no end yet */
    const piece *prev = NULL;
    for (size_t k = 0; k < np; k++) {
        const piece *p = &ps[k];
        uint32_t lcp = 0;
        if (prev) {
            uint32_t m = prev->n < p->n ? prev->n : p->n;
            while (lcp < m && prev->s[lcp] == p->s[lcp]) lcp++;
        }
        if (!(prev && lcp == p->n && prev->n == p->n)) {
            while (open > lcp) t->end[path[open--]] = n;
            for (uint32_t d = lcp + 1; d <= p->n; d++) {
                t->byte[n] = (uint8_t)p->s[d - 1];
                t->depth[n] = (uint16_t)d;
                t->tok_off[n] = (uint32_t)k; /* first token at or after this node */
                path[d] = n++;
                open = d;
            }
        }
        t->toks[k] = p->id;
        if (p->n > *max_depth) *max_depth = p->n;
        prev = p;
    }
    while (open > 0) t->end[path[open--]] = n;
    free(path);
    /* tok_off[i] as written is the index of the first token sorted at or after node i; node i
     * owns tokens up to the next node's first token, except for nodes created for a prefix
     * (they own none): fix by checking which token's piece ends at the node. */
    t->tok_off[n] = (uint32_t)np;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = t->tok_off[i];
        /* token k ends at node i iff its length equals the node's depth and this is the
         * deepest node created for it; nodes created for a longer token own nothing */
        if (k < np && ps[k].n != t->depth[i]) t->tok_off[i] = UINT32_MAX;
    }
    /* turn into [start, next start): owners keep their first token, ranges run to the next
     * owner's start */
    {
        uint32_t next = (uint32_t)np;
        for (uint32_t i = n; i-- > 0;) {
            if (t->tok_off[i] == UINT32_MAX) t->tok_off[i] = next;
            else next = t->tok_off[i];
        }
    }
    t->n_nodes = n;
    return true;
}

static bool in_str(uint32_t cp) {
    for (int i = 0; i < GRAM_STR_RANGES; i++)
        if (cp >= gram_str_ranges[2 * i] && cp <= gram_str_ranges[2 * i + 1]) return true;
    return false;
}

/* Is u[0..n) (1 <= n < the sequence's length) the start of a valid UTF-8 encoding? */
static bool utf8_prefix(const uint8_t *u, size_t n) {
    size_t need;
    uint8_t lo = 0x80, hi = 0xbf; /* bounds of the second byte */
    if (u[0] >= 0xc2 && u[0] <= 0xdf) need = 2;
    else if (u[0] >= 0xe0 && u[0] <= 0xef) need = 3;
    else if (u[0] >= 0xf0 && u[0] <= 0xf4) need = 4;
    else return false;
    if (n >= need) return false;
    if (u[0] == 0xe0) lo = 0xa0;
    if (u[0] == 0xed) hi = 0x9f;
    if (u[0] == 0xf0) lo = 0x90;
    if (u[0] == 0xf4) hi = 0x8f;
    for (size_t i = 1; i < n; i++) {
        if (i == 1 ? (u[i] < lo || u[i] > hi) : (u[i] & 0xc0) != 0x80) return false;
    }
    return true;
}

/* The number of string-content characters of s[0..n) when it is a string token (an
 * incomplete last character counts as one), else 0. */
static uint32_t str_len(const char *s, size_t n) {
    uint32_t len = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = gram_utf8_decode(s + i, n - i, &cp);
        if (k == 0) {
            if (!utf8_prefix((const uint8_t *)s + i, n - i)) return 0;
            k = n - i; /* an incomplete character: always string content once complete */
        } else if (!in_str(cp)) {
            return 0;
        }
        i += k;
        if (++len > GRAM_STR_MAX) return 0;
    }
    return len;
}

gram_vocab *gram_vocab_init(const tok_vocab *v, sh_err *err) {
    SH_ASSERT(v);
    int32_t nv = tok_n_tokens(v);
    gram_vocab *gv = calloc(1, sizeof *gv);
    piece *ps = malloc(((size_t)nv + 1) * sizeof *ps);
    piece *rest = malloc(((size_t)nv + 1) * sizeof *rest);
    if (!gv || !ps || !rest) goto oom;
    gv->v = v;
    gv->serial = atomic_fetch_add(&vocab_serial, 1);
    gv->n_vocab = nv;
    gv->n_words = ((size_t)nv + 31) / 32;
    size_t np = 0, total = 0;
    gv->eog = malloc(((size_t)nv + 1) * sizeof *gv->eog);
    gv->str_le = calloc((size_t)GRAM_STR_MAX * gv->n_words, sizeof *gv->str_le);
    if (!gv->eog || !gv->str_le) goto oom;
    for (int32_t id = 0; id < nv; id++) {
        if (tok_is_eog(v, id)) {
            gv->eog[gv->n_eog++] = id;
            continue;
        }
        size_t len = 0;
        const char *s = tok_piece(v, id, false, &len);
        if (!s || len == 0 || len > PIECE_MAX) continue;
        ps[np].s = s;
        ps[np].n = (uint32_t)len;
        ps[np].id = id;
        np++;
        total += len;
    }
    qsort(ps, np, sizeof *ps, cmp_piece);
    gram_trie all = {0};
    bool ok = trie_build(&all, ps, np, total, &gv->max_depth);
    gv->all = all;
    if (!ok) goto oom;
    /* string tokens: str_le[n - 1] gets the ones of exactly n characters, then the sets are
     * made cumulative; the others go to the second trie (sorted still) */
    size_t nr = 0, rtotal = 0;
    for (size_t k = 0; k < np; k++) {
        uint32_t l = str_len(ps[k].s, ps[k].n);
        if (l) {
            uint32_t id = (uint32_t)ps[k].id;
            gv->str_le[(size_t)(l - 1) * gv->n_words + (id >> 5)] |= 1u << (id & 31);
        } else {
            rest[nr++] = ps[k];
            rtotal += ps[k].n;
        }
    }
    for (size_t l = 1; l < GRAM_STR_MAX; l++)
        for (size_t w = 0; w < gv->n_words; w++)
            gv->str_le[l * gv->n_words + w] |= gv->str_le[(l - 1) * gv->n_words + w];
    uint32_t unused = 0;
    if (!trie_build(&gv->rest, rest, nr, rtotal, &unused)) goto oom;
    free(ps);
    free(rest);
    return gv;
oom:
    free(ps);
    free(rest);
    gram_vocab_free(gv);
    sh_errf(err, "grammar vocabulary index: out of memory");
    return NULL;
}
