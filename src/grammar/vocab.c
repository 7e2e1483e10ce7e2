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

void gram_vocab_free(gram_vocab *gv) {
    if (!gv) return;
    free(gv->byte);
    free(gv->depth);
    free(gv->end);
    free(gv->tok_off);
    free(gv->toks);
    free(gv->eog);
    free(gv);
}

size_t gram_vocab_mask_words(const gram_vocab *gv) { return gv->n_words; }

gram_vocab *gram_vocab_init(const tok_vocab *v, sh_err *err) {
    SH_ASSERT(v);
    int32_t nv = tok_n_tokens(v);
    gram_vocab *gv = calloc(1, sizeof *gv);
    piece *ps = malloc(((size_t)nv + 1) * sizeof *ps);
    if (!gv || !ps) goto oom;
    gv->v = v;
    gv->serial = atomic_fetch_add(&vocab_serial, 1);
    gv->n_vocab = nv;
    gv->n_words = ((size_t)nv + 31) / 32;
    size_t np = 0, total = 0;
    gv->eog = malloc(((size_t)nv + 1) * sizeof *gv->eog);
    if (!gv->eog) goto oom;
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
    /* at most one node per byte of all pieces */
    size_t cap = total + 1;
    gv->byte = malloc(cap);
    gv->depth = malloc(cap * sizeof *gv->depth);
    gv->end = malloc(cap * sizeof *gv->end);
    gv->tok_off = malloc((cap + 1) * sizeof *gv->tok_off);
    gv->toks = malloc((np + 1) * sizeof *gv->toks);
    uint32_t *path = malloc((PIECE_MAX + 2) * sizeof *path);
    if (!gv->byte || !gv->depth || !gv->end || !gv->tok_off || !gv->toks || !path) {
        free(path);
        goto oom;
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
            while (open > lcp) gv->end[path[open--]] = n;
            for (uint32_t d = lcp + 1; d <= p->n; d++) {
                gv->byte[n] = (uint8_t)p->s[d - 1];
                gv->depth[n] = (uint16_t)d;
                gv->tok_off[n] = (uint32_t)k; /* first token at or after this node */
                path[d] = n++;
                open = d;
            }
        }
        gv->toks[k] = p->id;
        if (p->n > gv->max_depth) gv->max_depth = p->n;
        prev = p;
    }
    while (open > 0) gv->end[path[open--]] = n;
    free(path);
    /* tok_off[i] as written is the index of the first token sorted at or after node i; node i
     * owns tokens up to the next node's first token, except for nodes created for a prefix
     * (they own none): fix by checking which token's piece ends at the node. */
    gv->tok_off[n] = (uint32_t)np;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = gv->tok_off[i];
        /* token k ends at node i iff its length equals the node's depth and this is the
         * deepest node created for it; nodes created for a longer token own nothing */
        if (k < np && ps[k].n != gv->depth[i]) gv->tok_off[i] = UINT32_MAX;
    }
    /* turn into [start, next start): owners keep their first token, ranges run to the next
     * owner's start */
    {
        uint32_t next = (uint32_t)np;
        for (uint32_t i = n; i-- > 0;) {
            if (gv->tok_off[i] == UINT32_MAX) gv->tok_off[i] = next;
            else next = gv->tok_off[i];
        }
    }
    gv->n_nodes = n;
    free(ps);
    return gv;
oom:
    free(ps);
    gram_vocab_free(gv);
    sh_errf(err, "grammar vocabulary index: out of memory");
    return NULL;
}
