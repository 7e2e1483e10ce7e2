/*
 * tokenizer — special-token splitting, the SPM / BPE / WPM models, pieces and
 * detokenization (the vocabulary is loaded by tok_vocab.c). The algorithms follow llama.cpp's llama-vocab.cpp so that ids agree.
 */
#include "tokenizer/tokenizer.h"
#include "tokenizer/tok_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_pretok.h"
#include "tokenizer/tok_unicode.h"


static int ids_push(tok_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *nv = realloc(a->ids, nc * sizeof *nv);
        if (!nv) return -1;
        a->ids = nv;
        a->cap = nc;
    }
    a->ids[a->n++] = id;
    return 0;
}

void tok_spans_free(tok_spans *a) {
    if (!a) return;
    free(a->v);
    memset(a, 0, sizeof *a);
}

/* Appends a span (nothing when a is NULL: the caller did not ask for spans). */
static int spans_push(tok_spans *a, size_t start, size_t end, bool word_start, bool special) {
    if (!a) return 0;
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        tok_span *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) return -1;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = (tok_span){(uint32_t)start, (uint32_t)end, word_start, special};
    return 0;
}

static int buf_reserve(tok_buf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 0;
    size_t nc = b->cap ? b->cap : 64;
    while (nc < b->n + extra) nc *= 2;
    char *nd = realloc(b->data, nc);
    if (!nd) return -1;
    b->data = nd;
    b->cap = nc;
    return 0;
}

static int buf_add(tok_buf *b, const void *p, size_t n) {
    if (buf_reserve(b, n + 1)) return -1;
    if (n) memcpy(b->data + b->n, p, n);
    b->n += n;
    b->data[b->n] = 0; /* keep a terminator after the bytes for convenience */
    return 0;
}

void tok_ids_free(tok_ids *a) {
    if (!a) return;
    free(a->ids);
    a->ids = NULL;
    a->n = a->cap = 0;
}

void tok_buf_free(tok_buf *b) {
    if (!b) return;
    free(b->data);
    b->data = NULL;
    b->n = b->cap = 0;
}

/* ============================================================ scratch state ===== */

typedef struct sym {
    int32_t id;      /* token id of the symbol's text, -1 when it is not a token */
    uint32_t start;  /* byte offset in the text being merged */
    uint32_t len;    /* bytes; 0 once merged into its left neighbour */
    int32_t prev, next;
} sym;

/* A candidate merge of symbols left and right: 16 bytes, ordered by one integer key whose high
 * half is the priority (BPE: the merge rank, lower first; SPM: the merged token's score,
 * higher first) and whose low half is `left`, so that ties go to the leftmost pair as in
 * llama.cpp. A stale entry is recognised by `size` (the two symbols' lengths) when popped. */
typedef struct cand {
    uint64_t key;
    int32_t right;
    uint32_t size;
} cand;

/* Word cache (BPE words, SPM chunks): their ids depend on nothing but their bytes, and
 * natural text repeats words a lot. */
typedef struct wc_entry {
    uint64_t hash;
    uint32_t key_off, key_len, ids_off, ids_n; /* key_len == UINT32_MAX: empty */
} wc_entry;

#define WC_MAX_SLOTS (1u << 16)
#define WC_MAX_WORD 128

typedef struct scratch {
    sym *syms;
    size_t n_syms, cap_syms;
    cand *heap;
    size_t n_heap, cap_heap;
    uint32_t *cps;
    uint16_t *flags;
    uint32_t *cp_off;   /* [n + 1] byte offset of each code point in the decoded text */
    size_t cap_cps;
    uint32_t *src_lo, *src_hi; /* WPM spans: source bytes of each byte of the word buffer */
    size_t cap_src;
    tok_lens words, tmp;
    tok_buf bytes;      /* re-encoded word / escaped SPM text */
    tok_buf enc;        /* byte-level encoded word */
    wc_entry *wc;
    size_t wc_slots;    /* power of two, sized from the input length (small inputs stay cheap) */
    size_t wc_used;
    tok_buf wc_keys;
    tok_ids wc_ids;
    int oom;
} scratch;

static void scratch_free(scratch *s) {
    free(s->syms);
    free(s->heap);
    free(s->cps);
    free(s->flags);
    free(s->cp_off);
    free(s->src_lo);
    free(s->src_hi);
    free(s->words.v);
    free(s->tmp.v);
    tok_buf_free(&s->bytes);
    tok_buf_free(&s->enc);
    free(s->wc);
    tok_buf_free(&s->wc_keys);
    tok_ids_free(&s->wc_ids);
}

static int syms_push(scratch *s, sym x) {
    if (s->n_syms == s->cap_syms) {
        size_t nc = s->cap_syms ? s->cap_syms * 2 : 256;
        sym *ns = realloc(s->syms, nc * sizeof *ns);
        if (!ns) return -1;
        s->syms = ns;
        s->cap_syms = nc;
    }
    s->syms[s->n_syms++] = x;
    return 0;
}

/* ---- 4-ary min-heap of merge candidates: half the depth of a binary heap, which matters
 * for the cache misses of one huge word (a million candidates) ---- */

static int heap_push(scratch *s, cand x) {
    if (s->n_heap == s->cap_heap) {
        size_t nc = s->cap_heap ? s->cap_heap * 2 : 256;
        cand *nh = realloc(s->heap, nc * sizeof *nh);
        if (!nh) return -1;
        s->heap = nh;
        s->cap_heap = nc;
    }
    cand *h = s->heap;
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 4;
        if (h[p].key <= x.key) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
    return 0;
}

static cand heap_pop(scratch *s) {
    cand *h = s->heap;
    cand top = h[0], x = h[--s->n_heap];
    size_t n = s->n_heap, i = 0;
    for (;;) {
        size_t c = 4 * i + 1;
        if (c >= n) break;
        size_t best = c, end = c + 4 < n ? c + 4 : n;
        for (size_t k = c + 1; k < end; k++)
            if (h[k].key < h[best].key) best = k;
        if (h[best].key >= x.key) break;
        h[i] = h[best];
        i = best;
    }
    if (n) h[i] = x;
    return top;
}

/* ============================================================ special tokens ===== */

typedef struct frag {
    int32_t id;       /* >= 0: a special token; -1: raw text */
    size_t off, len;  /* raw text: text[off .. off+len) */
} frag;

typedef struct frags {
    frag *v;
    size_t n, cap;
} frags;

static int frags_push(frags *f, frag x) {
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 16;
        frag *nv = realloc(f->v, nc * sizeof *nv);
        if (!nv) return -1;
        f->v = nv;
        f->cap = nc;
    }
    f->v[f->n++] = x;
    return 0;
}

static int is_c_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Splits the special tokens out of the text, longest token first, each token over all the
 * raw fragments left by the longer ones (llama.cpp's tokenizer_st_partition). */
static int partition(const tok_vocab *v, const char *text, size_t len, bool parse_special,
                     frags *out) {
    frags a = {0}, b = {0};
    uint8_t *occurs = NULL;
    out->n = 0;
    if (len == 0) return 0;
    if (frags_push(&a, (frag){-1, 0, len})) goto oom;
    /* one pass over the text finds which special tokens occur at all, so that only those
     * are searched for (a vocabulary can have hundreds) */
    occurs = calloc(v->n_special + 1, 1);
    if (!occurs) goto oom;
    const uint8_t *u = (const uint8_t *)text;
    for (size_t p = 0; p < len; p++) {
        for (int32_t k = v->sp_head1[u[p]]; k >= 0; k = v->sp_next[k]) occurs[k] = 1;
        if (p + 1 < len)
            for (int32_t k = v->sp_head[(size_t)u[p] << 8 | u[p + 1]]; k >= 0; k = v->sp_next[k]) {
                size_t tl = v->len[v->special[k]];
                if (!occurs[k] && tl <= len - p && !memcmp(u + p, v->text + v->off[v->special[k]], tl))
                    occurs[k] = 1;
            }
    }
    for (size_t k = 0; k < v->n_special; k++) {
        int32_t id = v->special[k];
        unsigned attr = v->attr[id];
        if (!occurs[k]) continue;
        if (!parse_special && (attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN))) continue;
        const char *t = v->text + v->off[id];
        size_t tl = v->len[id];
        b.n = 0;
        for (size_t i = 0; i < a.n; i++) {
            frag f = a.v[i];
            if (f.id >= 0 || f.len < tl) {
                if (frags_push(&b, f)) goto oom;
                continue;
            }
            size_t off = f.off, rem = f.len;
            for (;;) {
                const char *m = rem >= tl ? memmem(text + off, rem, t, tl) : NULL;
                if (!m) {
                    if (rem && frags_push(&b, (frag){-1, off, rem})) goto oom;
                    break;
                }
                size_t mo = (size_t)(m - text);
                size_t left = mo - off;
                if (attr & TOK_ATTR_LSTRIP)
                    while (left > 0 && is_c_space(text[off + left - 1])) left--;
                if (left && frags_push(&b, (frag){-1, off, left})) goto oom;
                if (frags_push(&b, (frag){id, 0, 0})) goto oom;
                size_t roff = mo + tl, rlen = off + rem - roff;
                if (attr & TOK_ATTR_RSTRIP)
                    while (rlen > 0 && is_c_space(text[roff])) roff++, rlen--;
                off = roff;
                rem = rlen;
                if (!rem) break;
            }
        }
        frags t2 = a;
        a = b;
        b = t2;
    }
    free(b.v);
    free(occurs);
    *out = a;
    return 0;
oom:
    free(a.v);
    free(b.v);
    free(occurs);
    return -1;
}

/* ============================================================ SPM ===== */

/* Maps a score to a 32-bit key that sorts highest score first (-0.0 equals +0.0, as the
 * float comparison in llama.cpp has it). */
static uint32_t score_key(float f) {
    uint32_t u;
    if (f == 0.0f) f = 0.0f;
    memcpy(&u, &f, 4);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* ascending order of f */
    return ~u;                                       /* descending */
}

static void spm_try_bigram(const tok_vocab *v, scratch *s, const char *text, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const sym *L = &s->syms[l], *R = &s->syms[r];
    size_t n = (size_t)L->len + R->len;
    if (n > (size_t)v->max_token_len) return;
    int32_t id = tokv_find_token(v, text + L->start, n);
    if (id < 0) return;
    cand bg = {(uint64_t)score_key(v->score[id]) << 32 | (uint32_t)l, r, (uint32_t)n};
    if (heap_push(s, bg)) s->oom = 1;
}

static int wc_lookup(scratch *s, const uint8_t *w, size_t n, tok_ids *out, uint64_t *h, size_t *slot);
static int wc_store(scratch *s, const uint8_t *w, size_t n, uint64_t h, size_t slot,
                    const tok_ids *out, size_t before);

static int sym_is_space(const char *text, const sym *y) {
    return y->len == 3 && !memcmp(text + y->start, "\xE2\x96\x81", 3);
}

/* Merges symbols [a, b) (their chain ends inside the range) and appends their ids. */
static int spm_merge_chunk(const tok_vocab *v, scratch *s, const char *text, size_t a, size_t b,
                           tok_ids *out) {
    s->n_heap = 0;
    for (size_t i = a + 1; i < b; i++) spm_try_bigram(v, s, text, (int32_t)i - 1, (int32_t)i);
    while (s->n_heap) {
        cand bg = heap_pop(s);
        int32_t left = (int32_t)(uint32_t)bg.key;
        sym *L = &s->syms[left], *R = &s->syms[bg.right];
        if (L->len == 0 || R->len == 0 || L->len + R->len != bg.size) continue;
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) s->syms[R->next].prev = left;
        spm_try_bigram(v, s, text, L->prev, left);
        spm_try_bigram(v, s, text, left, L->next);
    }
    if (s->oom) return -1;
    for (int32_t i = a < b ? (int32_t)a : -1; i != -1; i = s->syms[i].next) {
        const sym *y = &s->syms[i];
        int32_t id = tokv_find_token(v, text + y->start, y->len);
        if (id >= 0) {
            if (ids_push(out, id)) return -1;
            continue;
        }
        for (uint32_t j = 0; j < y->len; j++) { /* byte fallback */
            int32_t bt = v->byte_tok[(uint8_t)text[y->start + j]];
            if (bt < 0) bt = v->unk;
            if (bt >= 0 && ids_push(out, bt)) return -1;
        }
    }
    return 0;
}

static int spm_tokenize(const tok_vocab *v, scratch *s, const char *raw, size_t rawlen,
                        bool prefix_space, tok_ids *out) {
    /* escape spaces as U+2581, with the optional leading space */
    tok_buf *t = &s->bytes;
    t->n = 0;
    if (buf_reserve(t, rawlen * 3 + 4)) return -1;
    if (prefix_space) memcpy(t->data + t->n, "\xE2\x96\x81", 3), t->n += 3;
    for (size_t i = 0; i < rawlen; i++) {
        if (raw[i] == ' ') memcpy(t->data + t->n, "\xE2\x96\x81", 3), t->n += 3;
        else t->data[t->n++] = raw[i];
    }
    const char *text = t->data;
    size_t n = t->n;
    s->n_syms = 0;
    for (size_t off = 0; off < n;) {
        size_t l = tok_u_lead_len((uint8_t)text[off]);
        if (l > n - off) l = n - off;
        int32_t idx = (int32_t)s->n_syms;
        if (syms_push(s, (sym){-1, (uint32_t)off, (uint32_t)l, idx - 1, off + l == n ? -1 : idx + 1}))
            return -1;
        off += l;
    }
    /* Cut the symbol chain into chunks that start at a run of U+2581: when no token has a
     * U+2581 after another character (checked at load), no merge can cross such a cut, so
     * merging chunk by chunk gives llama.cpp's result with small, cache-friendly heaps. */
    size_t a = 0;
    for (size_t i = 1; i <= s->n_syms; i++) {
        if (i < s->n_syms) {
            if (!v->spm_split_ok || !sym_is_space(text, &s->syms[i]) ||
                sym_is_space(text, &s->syms[i - 1]))
                continue;
            s->syms[i - 1].next = -1;
            s->syms[i].prev = -1;
        }
        /* a chunk's ids depend only on its bytes: cache them */
        const uint8_t *cw = (const uint8_t *)text + s->syms[a].start;
        size_t cn = s->syms[i - 1].start + s->syms[i - 1].len - s->syms[a].start;
        uint64_t h = 0;
        size_t slot = 0, before = out->n;
        int hit = cn <= WC_MAX_WORD ? wc_lookup(s, cw, cn, out, &h, &slot) : 0;
        if (hit < 0) return -1;
        if (!hit) {
            if (spm_merge_chunk(v, s, text, a, i, out)) return -1;
            if (cn <= WC_MAX_WORD && wc_store(s, cw, cn, h, slot, out, before)) return -1;
        }
        a = i;
    }
    return 0;
}

/* ============================================================ BPE ===== */

/* Byte-level encoding of word bytes into s->enc. */
static int encode_bytes(const tok_vocab *v, tok_buf *enc, const uint8_t *w, size_t n) {
    enc->n = 0;
    if (buf_reserve(enc, n * 2 + 1)) return -1;
    for (size_t i = 0; i < n; i++) {
        memcpy(enc->data + enc->n, v->byte_enc[w[i]], v->byte_enc_len[w[i]]);
        enc->n += v->byte_enc_len[w[i]];
    }
    return 0;
}

/* The rank of merging symbols l and r (and the merged token), -1 if there is none. */
static int32_t bpe_rank(const tok_vocab *v, scratch *s, const uint8_t *w, const sym *L,
                        const sym *R, int32_t *merged) {
    if (L->id >= 0 && R->id >= 0) {
        const merge_id *m = tokv_find_merge_id(v, L->id, R->id);
        if (!m) return -1;
        *merged = m->merged;
        return m->rank;
    }
    if (!v->n_mstr) return -1;
    /* rare: a side is not a token; compare byte-level texts */
    tok_buf lt = {0}, rt = {0};
    int32_t rank = -1;
    if (encode_bytes(v, &lt, w + L->start, L->len) || encode_bytes(v, &rt, w + R->start, R->len)) {
        s->oom = 1;
        goto done;
    }
    for (size_t i = 0; i < v->n_mstr; i++) {
        const merge_str *m = &v->mstr[i];
        if (m->l_len == lt.n && m->r_len == rt.n && !memcmp(v->mtext + m->l_off, lt.data, lt.n) &&
            !memcmp(v->mtext + m->r_off, rt.data, rt.n) && (rank < 0 || m->rank < rank)) {
            rank = m->rank;
            *merged = m->merged;
        }
    }
done:
    tok_buf_free(&lt);
    tok_buf_free(&rt);
    return rank;
}

static void bpe_try_bigram(const tok_vocab *v, scratch *s, const uint8_t *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    int32_t merged = -1;
    int32_t rank = bpe_rank(v, s, w, &s->syms[l], &s->syms[r], &merged);
    if (rank < 0) return;
    cand bg = {(uint64_t)(uint32_t)rank << 32 | (uint32_t)l, r,
                     s->syms[l].len + s->syms[r].len};
    if (heap_push(s, bg)) s->oom = 1;
}

/* BPE of one pre-tokenized word (UTF-8 bytes w[0..n)); appends ids to out. */
static int bpe_word(const tok_vocab *v, scratch *s, const uint8_t *w, size_t n, tok_ids *out) {
    if (v->ignore_merges) { /* a word that is a token as a whole is taken as it is */
        if (encode_bytes(v, &s->enc, w, n)) return -1;
        int32_t id = tokv_find_token(v, s->enc.data, s->enc.n);
        if (id >= 0) return ids_push(out, id);
    }
    s->n_syms = 0;
    s->n_heap = 0;
    for (size_t i = 0; i < n; i++)
        if (syms_push(s, (sym){v->byte_sym[w[i]], (uint32_t)i, 1, (int32_t)i - 1,
                               i + 1 == n ? -1 : (int32_t)i + 1}))
            return -1;
    for (size_t i = 1; i < n; i++) bpe_try_bigram(v, s, w, (int32_t)i - 1, (int32_t)i);
    while (s->n_heap) {
        cand bg = heap_pop(s);
        int32_t left = (int32_t)(uint32_t)bg.key;
        sym *L = &s->syms[left], *R = &s->syms[bg.right];
        if (L->len == 0 || R->len == 0 || L->next != bg.right || L->len + R->len != bg.size) continue;
        int32_t merged = -1;
        bpe_rank(v, s, w, L, R, &merged); /* the merged token (not kept in the heap entry) */
        L->len += R->len;
        L->id = merged;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) s->syms[R->next].prev = left;
        bpe_try_bigram(v, s, w, L->prev, left);
        bpe_try_bigram(v, s, w, left, L->next);
    }
    if (s->oom) return -1;
    for (int32_t i = n ? 0 : -1; i != -1; i = s->syms[i].next) {
        const sym *y = &s->syms[i];
        if (y->id >= 0) {
            if (ids_push(out, y->id)) return -1;
            continue;
        }
        /* not a token: llama.cpp looks up each byte of the byte-level text on its own */
        if (encode_bytes(v, &s->enc, w + y->start, y->len)) return -1;
        for (size_t j = 0; j < s->enc.n; j++) {
            int32_t id = tokv_find_token(v, s->enc.data + j, 1);
            if (id >= 0 && ids_push(out, id)) return -1;
        }
    }
    return 0;
}

static void wc_reset(scratch *s) {
    for (size_t i = 0; i < s->wc_slots; i++) s->wc[i].key_len = UINT32_MAX;
    s->wc_used = 0;
    s->wc_keys.n = 0;
    s->wc_ids.n = 0;
}

/* Looks word w up in the per-call cache; on a hit appends its ids and returns 1. Returns 0 on
 * a miss (slot set for wc_store), -1 when memory runs out. */
static int wc_lookup(scratch *s, const uint8_t *w, size_t n, tok_ids *out, uint64_t *h, size_t *slot) {
    if (!s->wc) {
        if (!s->wc_slots) s->wc_slots = 256;
        s->wc = malloc(s->wc_slots * sizeof *s->wc);
        if (!s->wc) return -1;
        wc_reset(s);
    }
    *h = tokv_hash_bytes(w, n);
    size_t i = *h & (s->wc_slots - 1);
    for (;; i = (i + 1) & (s->wc_slots - 1)) {
        wc_entry *e = &s->wc[i];
        if (e->key_len == UINT32_MAX) break;
        if (e->hash == *h && e->key_len == n && !memcmp(s->wc_keys.data + e->key_off, w, n)) {
            for (uint32_t k = 0; k < e->ids_n; k++)
                if (ids_push(out, s->wc_ids.ids[e->ids_off + k])) return -1;
            return 1;
        }
    }
    *slot = i;
    return 0;
}

/* Remembers that word w gave out->ids[before ..]. */
static int wc_store(scratch *s, const uint8_t *w, size_t n, uint64_t h, size_t slot,
                    const tok_ids *out, size_t before) {
    if (s->wc_used * 2 >= s->wc_slots) { /* full enough: start over */
        wc_reset(s);
        for (slot = h & (s->wc_slots - 1); s->wc[slot].key_len != UINT32_MAX;
             slot = (slot + 1) & (s->wc_slots - 1)) {}
    }
    wc_entry e = {h, (uint32_t)s->wc_keys.n, (uint32_t)n, (uint32_t)s->wc_ids.n,
                  (uint32_t)(out->n - before)};
    if (buf_add(&s->wc_keys, w, n)) return -1;
    for (size_t k = before; k < out->n; k++)
        if (ids_push(&s->wc_ids, out->ids[k])) return -1;
    s->wc[slot] = e;
    s->wc_used++;
    return 0;
}

/* bpe_word through the per-call word cache. */
static int bpe_word_cached(const tok_vocab *v, scratch *s, const uint8_t *w, size_t n, tok_ids *out) {
    if (n > WC_MAX_WORD) return bpe_word(v, s, w, n, out);
    uint64_t h;
    size_t slot = 0;
    int r = wc_lookup(s, w, n, out, &h, &slot);
    if (r) return r < 0 ? -1 : 0;
    size_t before = out->n;
    if (bpe_word(v, s, w, n, out)) return -1;
    return wc_store(s, w, n, h, slot, out, before);
}

/* Decodes raw[0..n) into s->cps / s->flags; returns the code point count or -1. */
static long decode_text(scratch *s, const char *raw, size_t n) {
    if (n + 1 > s->cap_cps) {
        size_t nc = n + 64;
        uint32_t *c = realloc(s->cps, nc * sizeof *c);
        if (!c) return -1;
        s->cps = c;
        uint16_t *f = realloc(s->flags, nc * sizeof *f);
        if (!f) return -1;
        s->flags = f;
        uint32_t *o = realloc(s->cp_off, (nc + 1) * sizeof *o);
        if (!o) return -1;
        s->cp_off = o;
        s->cap_cps = nc;
    }
    size_t k = 0;
    const uint8_t *p = (const uint8_t *)raw;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        s->cp_off[k] = (uint32_t)i;
        i += tok_u_decode(p + i, n - i, &cp);
        s->cps[k] = cp;
        s->flags[k] = (uint16_t)tok_u_flags(cp);
        k++;
    }
    s->cp_off[k] = (uint32_t)n;
    return (long)k;
}

static int bpe_tokenize(const tok_vocab *v, scratch *s, const char *raw, size_t n, tok_ids *out) {
    long nc = decode_text(s, raw, n);
    if (nc < 0) return -1;
    if (tok_pretok_split(v->pre, s->cps, s->flags, (size_t)nc, &s->words, &s->tmp)) return -1;
    size_t start = 0;
    for (size_t w = 0; w < s->words.n; w++) {
        size_t len = s->words.v[w];
        /* re-encode the word's code points (invalid input bytes became U+FFFD) */
        tok_buf *b = &s->bytes;
        b->n = 0;
        if (buf_reserve(b, len * 4 + 1)) return -1;
        for (size_t i = start; i < start + len; i++) b->n += tok_u_encode(s->cps[i], b->data + b->n);
        if (bpe_word_cached(v, s, (const uint8_t *)b->data, b->n, out)) return -1;
        start += len;
    }
    return 0;
}

/* ============================================================ WPM ===== */

static int wpm_is_chinese(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Greedy longest match of one word (already lower-cased, "▁" + word in s->enc). With spans,
 * each piece gets the source bytes of its characters (s->src_lo / src_hi per word byte, base
 * added); the word's first piece is marked as the word start. */
static int wpm_word(const tok_vocab *v, scratch *s, tok_ids *out, tok_spans *spans,
                    size_t base) {
    const char *w = s->enc.data;
    size_t n = s->enc.n, before = out->n, sbefore = spans ? spans->n : 0;
    for (size_t i = 0; i < n; i++) {
        size_t jmax = i + (size_t)v->max_token_len + 1;
        if (jmax > n) jmax = n;
        int matched = 0;
        for (size_t j = jmax; j > i; j--) {
            int32_t id = tokv_find_token(v, w + i, j - i);
            if (id >= 0) {
                if (ids_push(out, id)) return -1;
                size_t a = i < 3 ? 3 : i; /* the "▁" prefix has no source bytes */
                if (spans && spans_push(spans, base + s->src_lo[a], base + s->src_hi[j - 1],
                                        out->n - 1 == before, false))
                    return -1;
                matched = 1;
                i = j - 1;
                break;
            }
        }
        if (!matched) {
            out->n = before;
            if (spans) spans->n = sbefore;
            break;
        }
    }
    if (out->n == before && v->unk >= 0) {
        if (ids_push(out, v->unk)) return -1;
        if (spans && spans_push(spans, base + s->src_lo[3], base + s->src_hi[n - 1], true, false))
            return -1;
    }
    return 0;
}

/* Appends bytes u[0..ul) of code point i to the word buffer, remembering (with spans) where
 * in the source they came from. */
static int wpm_add(scratch *s, const char *u, size_t ul, long i, bool spans) {
    tok_buf *wb = &s->enc;
    if (spans && wb->n + ul > s->cap_src) {
        size_t nc = (wb->n + ul) * 2 + 64;
        uint32_t *lo = realloc(s->src_lo, nc * sizeof *lo);
        if (!lo) return -1;
        s->src_lo = lo;
        uint32_t *hi = realloc(s->src_hi, nc * sizeof *hi);
        if (!hi) return -1;
        s->src_hi = hi;
        s->cap_src = nc;
    }
    if (spans)
        for (size_t k = 0; k < ul; k++) {
            s->src_lo[wb->n + k] = s->cp_off[i];
            s->src_hi[wb->n + k] = s->cp_off[i + 1];
        }
    return buf_add(wb, u, ul);
}

static int wpm_tokenize(const tok_vocab *v, scratch *s, const char *raw, size_t n, tok_ids *out,
                        tok_spans *spans, size_t base) {
    long nc = decode_text(s, raw, n);
    if (nc < 0) return -1;
    tok_buf *wb = &s->enc;
    wb->n = 0;
    if (wpm_add(s, "\xE2\x96\x81", 3, 0, spans != NULL)) return -1;
#define FLUSH_WORD()                                                                               \
    do {                                                                                           \
        if (wb->n > 3 && wpm_word(v, s, out, spans, base)) return -1;                              \
        wb->n = 3;                                                                                 \
    } while (0)
    for (long i = 0; i < nc; i++) {
        uint32_t cp = tok_u_nfd_first(s->cps[i]);
        unsigned f = tok_u_flags(cp);
        if (f & TOK_U_WS) {
            FLUSH_WORD();
            continue;
        }
        /* accents: NFD keeps the base letter, and the combining marks themselves go */
        if (cp == 0 || cp == 0xFFFD || (f & (TOK_U_CTRL | TOK_U_MARK))) continue;
        char u[4];
        size_t ul = tok_u_encode(tok_u_tolower(cp), u);
        if ((f & TOK_U_PUNCT) || (cp < 0x7F && (f & TOK_U_SYM)) || wpm_is_chinese(cp)) {
            FLUSH_WORD();
            if (wpm_add(s, u, ul, i, spans != NULL)) return -1;
            FLUSH_WORD();
        } else if (wpm_add(s, u, ul, i, spans != NULL)) return -1;
    }
    FLUSH_WORD();
#undef FLUSH_WORD
    return 0;
}

/* ============================================================ tokenize ===== */

static int tokenize(const tok_vocab *v, const char *text, size_t len, bool add_special,
                    bool parse_special, tok_ids *out, tok_spans *spans, sh_err *err) {
    scratch s = {0};
    frags fr = {0};
    int rc = -1;
    if (len > TOK_MAX_INPUT) /* symbol offsets are 32-bit and SPM text triples in size */
        return sh_errf(err, "tokenize: input of %zu bytes is larger than the limit (%u bytes)",
                       len, (unsigned)TOK_MAX_INPUT);
    s.wc_slots = 256;
    while (s.wc_slots < WC_MAX_SLOTS && s.wc_slots * 16 < len) s.wc_slots *= 2;
    if (partition(v, text, len, parse_special, &fr)) goto done;
    switch (v->type) {
    case TOK_SPM: {
        bool prev_special = true; /* the first text gets the space prefix */
        if (add_special && v->add_bos && v->bos >= 0 && ids_push(out, v->bos)) goto done;
        for (size_t i = 0; i < fr.n; i++) {
            if (fr.v[i].id >= 0) {
                if (ids_push(out, fr.v[i].id)) goto done;
                prev_special = true;
                continue;
            }
            if (spm_tokenize(v, &s, text + fr.v[i].off, fr.v[i].len,
                             v->add_space_prefix && prev_special, out))
                goto done;
            prev_special = false;
        }
        if (add_special && v->add_eos && v->eos >= 0 && ids_push(out, v->eos)) goto done;
        break;
    }
    case TOK_BPE:
        if (add_special && v->add_bos && v->bos >= 0 && ids_push(out, v->bos)) goto done;
        for (size_t i = 0; i < fr.n; i++) {
            if (fr.v[i].id >= 0) {
                if (ids_push(out, fr.v[i].id)) goto done;
            } else if (bpe_tokenize(v, &s, text + fr.v[i].off, fr.v[i].len, out))
                goto done;
        }
        if (add_special && v->add_eos && v->eos >= 0 && ids_push(out, v->eos)) goto done;
        break;
    case TOK_WPM:
        if (add_special && v->bos >= 0 &&
            (ids_push(out, v->bos) || spans_push(spans, 0, 0, false, true)))
            goto done;
        for (size_t i = 0; i < fr.n; i++) {
            if (fr.v[i].id >= 0) {
                if (ids_push(out, fr.v[i].id) ||
                    spans_push(spans, fr.v[i].off, fr.v[i].off + fr.v[i].len, true, true))
                    goto done;
            } else if (wpm_tokenize(v, &s, text + fr.v[i].off, fr.v[i].len, out, spans,
                                    fr.v[i].off))
                goto done;
        }
        if (add_special && v->sep >= 0 &&
            (ids_push(out, v->sep) || spans_push(spans, len, len, false, true)))
            goto done;
        break;
    }
    rc = 0;
done:
    if (rc) sh_errf(err, "tokenize: out of memory (%zu bytes of input)", len);
    free(fr.v);
    scratch_free(&s);
    return rc;
}

int tok_tokenize(const tok_vocab *v, const char *text, size_t len, bool add_special,
                 bool parse_special, tok_ids *out, sh_err *err) {
    return tokenize(v, text, len, add_special, parse_special, out, NULL, err);
}

int tok_tokenize_spans(const tok_vocab *v, const char *text, size_t len, bool add_special,
                       bool parse_special, tok_ids *out, tok_spans *spans, sh_err *err) {
    if (v->type != TOK_WPM)
        return sh_errf(err, "token offsets are only available for WordPiece (bert) vocabularies");
    size_t n0 = out->n, s0 = spans->n;
    int rc = tokenize(v, text, len, add_special, parse_special, out, spans, err);
    SH_ASSERT(rc != 0 || out->n - n0 == spans->n - s0);
    return rc;
}

/* ============================================================ pieces ===== */

/* token_to_piece(special = true) of one token into b. */
static int piece_of(const tok_vocab *v, int32_t id, tok_buf *b) {
    const char *t = v->text + v->off[id];
    size_t n = v->len[id];
    unsigned a = v->attr[id];
    if (a & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED)) return buf_add(b, t, n);
    if (v->type == TOK_BPE) {
        if (!(a & TOK_ATTR_NORMAL)) return 0;
        /* reverse the byte-level mapping; other characters are reported, as llama.cpp does */
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t l = tok_u_decode((const uint8_t *)t + i, n - i, &cp);
            if (cp < 0x144 && v->byte_dec[cp] >= 0) {
                char c = (char)v->byte_dec[cp];
                if (buf_add(b, &c, 1)) return -1;
            } else {
                char u[4], hx[8];
                size_t ul = tok_u_encode(cp, u);
                if (buf_add(b, "[UNK_BYTE_0x", 12)) return -1;
                for (size_t k = 0; k < ul; k++) {
                    snprintf(hx, sizeof hx, "%02x", (uint8_t)u[k]);
                    if (buf_add(b, hx, 2)) return -1;
                }
                if (buf_add(b, t, n) || buf_add(b, "]", 1)) return -1;
            }
            i += l;
        }
        return 0;
    }
    if (a & TOK_ATTR_NORMAL) { /* U+2581 -> space */
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && !memcmp(t + i, "\xE2\x96\x81", 3)) {
                if (buf_add(b, " ", 1)) return -1;
                i += 3;
            } else {
                if (buf_add(b, t + i, 1)) return -1;
                i++;
            }
        }
        return 0;
    }
    if (a & TOK_ATTR_BYTE) { /* "<0xNN>" */
        char c = 0;
        if (n >= 5) c = (char)strtol((char[3]){t[3], t[4], 0}, NULL, 16);
        return buf_add(b, &c, 1);
    }
    return 0;
}

int tokv_build_pieces(tok_vocab *v) {
    tok_buf b = {0};
    v->poff = malloc(sizeof *v->poff * (size_t)v->n);
    v->plen = malloc(sizeof *v->plen * (size_t)v->n);
    if (!v->poff || !v->plen) return -1;
    for (int32_t i = 0; i < v->n; i++) {
        size_t before = b.n;
        if (piece_of(v, i, &b)) {
            tok_buf_free(&b);
            return -1;
        }
        v->poff[i] = (uint32_t)before;
        v->plen[i] = (uint32_t)(b.n - before);
    }
    if (buf_add(&b, "", 0)) { /* make sure there is a buffer even when every piece is empty */
        tok_buf_free(&b);
        return -1;
    }
    v->pieces = b.data;
    return 0;
}

const char *tok_piece(const tok_vocab *v, int32_t id, bool special, size_t *len) {
    if (id < 0 || id >= v->n) return NULL;
    if (!special && (v->attr[id] & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL))) {
        *len = 0;
        return v->pieces;
    }
    *len = v->plen[id];
    return v->pieces + v->poff[id];
}

/* ============================================================ detokenize ===== */

/* llama.cpp's clean-up passes for BPE/WPM vocabularies: " ?" " !" " ." " ," lose the space,
 * " ' " becomes "'", and " 's" " 'm" " 're" " 've" lose the space. */
static size_t clean_spaces(char *t, size_t total) {
    if (total < 2) return total;
    size_t n = 1;
    for (size_t i = 1; i < total; i++) {
        char x = t[i];
        if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ','))
            n--;
        t[n++] = x;
    }
    size_t total2 = n;
    n = total2 ? 1 : 0;
    for (size_t i = 1; i < total2; i++) {
        char x = t[i];
        if (x == '\'' && i + 1 < total2 && t[i - 1] == ' ' && t[i + 1] == ' ') {
            n--;
            t[++i] = 0;
        }
        t[n++] = x;
    }
    size_t total3 = n;
    n = total3 ? 1 : 0;
    for (size_t i = 1; i < total3; i++) {
        char x = t[i];
        if (t[i - 1] == ' ' && x == '\'' && i + 1 < total3) {
            char x1 = t[i + 1];
            if (x1 == 's' || x1 == 'm') n--;
            else if (i + 2 < total3) {
                char x2 = t[i + 2];
                if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) n--;
            }
        }
        t[n++] = x;
    }
    return n;
}

int tok_detokenize(const tok_vocab *v, const int32_t *ids, size_t n, bool special, tok_buf *out,
                   sh_err *err) {
    size_t start = out->n;
    bool strip = v->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        size_t pl;
        const char *p = tok_piece(v, ids[i], special, &pl);
        if (!p) return sh_errf(err, "detokenize: token id %d out of range [0, %d)", ids[i], v->n);
        if (strip && pl && p[0] == ' ') p++, pl--;
        strip = false;
        if (buf_add(out, p, pl)) return sh_errf(err, "detokenize: out of memory");
    }
    if (v->clean_spaces && out->n > start) {
        size_t m = clean_spaces(out->data + start, out->n - start);
        out->n = start + m;
        if (out->data) out->data[out->n] = 0;
    }
    return 0;
}

void tok_detok_init(tok_detok *d, const tok_vocab *v, bool special) {
    memset(d, 0, sizeof *d);
    d->v = v;
    d->special = special;
    d->first = true;
}

int tok_detok_push(tok_detok *d, int32_t id, tok_buf *out, sh_err *err) {
    size_t pl;
    const char *p = tok_piece(d->v, id, d->special, &pl);
    if (!p) return sh_errf(err, "detokenize: token id %d out of range [0, %d)", id, d->v->n);
    if (d->first && d->v->add_space_prefix && pl && p[0] == ' ') p++, pl--;
    d->first = false;
    if (!pl) return 0;
    /* held bytes + piece: emit the complete prefix, hold a trailing partial character */
    uint8_t tmp[4 + 8];
    const uint8_t *src;
    size_t sn;
    if (d->n_held) {
        size_t k = pl < 8 ? pl : 8;
        memcpy(tmp, d->held, d->n_held);
        memcpy(tmp + d->n_held, p, k);
        size_t tn = d->n_held + k;
        size_t c = tok_u_complete_prefix(tmp, tn);
        if (c < d->n_held) { /* still incomplete (the piece was shorter than the character) */
            if (k != pl) c = tn; /* cannot happen: a character is at most 4 bytes */
            memcpy(d->held, tmp + c, tn - c);
            if (buf_add(out, tmp, c)) goto oom;
            d->n_held = tn - c;
            return 0;
        }
        /* emit held bytes plus however much of the piece completes them, then go on */
        size_t used = c - d->n_held;
        if (buf_add(out, tmp, c)) goto oom;
        d->n_held = 0;
        src = (const uint8_t *)p + used;
        sn = pl - used;
    } else {
        src = (const uint8_t *)p;
        sn = pl;
    }
    size_t c = tok_u_complete_prefix(src, sn);
    if (buf_add(out, src, c)) goto oom;
    memcpy(d->held, src + c, sn - c);
    d->n_held = sn - c;
    return 0;
oom:
    return sh_errf(err, "detokenize: out of memory");
}

int tok_detok_flush(tok_detok *d, tok_buf *out, sh_err *err) {
    if (d->n_held && buf_add(out, d->held, d->n_held)) return sh_errf(err, "detokenize: out of memory");
    tok_detok_init(d, d->v, d->special);
    return 0;
}
