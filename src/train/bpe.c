/*
 * train/bpe — see bpe.h. Words are kept once each with their counts; every round counts the
 * adjacent pairs of all words (weighted), merges the best pair everywhere and records it.
 */
#include "train/bpe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_pretok.h"
#include "tokenizer/tok_unicode.h"

/* GPT-2's byte -> code point table: printable bytes map to themselves, the others to 256.. */
static void byte_map(uint32_t *cp) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        const int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

typedef struct word {
    uint8_t *bytes;
    size_t len;
    int32_t *sym;   /* current symbols */
    int n_sym;
    int64_t count;
} word;

typedef struct wmap {   /* open addressing: word bytes -> index */
    int32_t *slot;
    size_t cap;
    word *w;
    int n, wcap;
} wmap;

static uint64_t hash_bytes(const uint8_t *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

static int wmap_add(wmap *m, const uint8_t *s, size_t n) {
    if ((size_t)m->n * 2 >= m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 4096;
        int32_t *ns = malloc(nc * sizeof *ns);
        if (!ns) return -1;
        for (size_t i = 0; i < nc; i++) ns[i] = -1;
        for (int i = 0; i < m->n; i++) {
            size_t h = hash_bytes(m->w[i].bytes, m->w[i].len) & (nc - 1);
            while (ns[h] >= 0) h = (h + 1) & (nc - 1);
            ns[h] = i;
        }
        free(m->slot);
        m->slot = ns;
        m->cap = nc;
    }
    size_t h = hash_bytes(s, n) & (m->cap - 1);
    while (m->slot[h] >= 0) {
        word *w = &m->w[m->slot[h]];
        if (w->len == n && !memcmp(w->bytes, s, n)) {
            w->count++;
            return 0;
        }
        h = (h + 1) & (m->cap - 1);
    }
    if (m->n == m->wcap) {
        int nc = m->wcap ? m->wcap * 2 : 4096;
        word *nw = realloc(m->w, (size_t)nc * sizeof *nw);
        if (!nw) return -1;
        m->w = nw;
        m->wcap = nc;
    }
    word *w = &m->w[m->n];
    w->bytes = malloc(n);
    w->sym = malloc(n * sizeof *w->sym);
    if (!w->bytes || !w->sym) return -1;
    memcpy(w->bytes, s, n);
    w->len = n;
    for (size_t i = 0; i < n; i++) w->sym[i] = s[i];
    w->n_sym = (int)n;
    w->count = 1;
    m->slot[h] = m->n++;
    return 0;
}

typedef struct pcount { /* pair -> count, open addressing, rebuilt per round */
    uint64_t *key;
    int64_t *cnt;
    size_t cap;
} pcount;

static void pc_add(pcount *p, uint64_t key, int64_t c) {
    size_t h = (key * 0x9e3779b97f4a7c15ull >> 20) & (p->cap - 1);
    while (p->key[h] != UINT64_MAX && p->key[h] != key) h = (h + 1) & (p->cap - 1);
    p->key[h] = key;
    p->cnt[h] += c;
}

/* UTF-8 of the mapped characters of bytes s[0..n) */
static char *mapped(const uint32_t *cp, const uint8_t *s, size_t n) {
    char *out = malloc(n * 2 + 1);
    size_t k = 0;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) k += tok_u_encode(cp[s[i]], out + k);
    out[k] = 0;
    return out;
}

int bpe_train(const char *const *texts, size_t n_texts, int vocab_size,
              const char *const *specials, int n_specials, bpe_vocab *out, sh_err *err) {
    memset(out, 0, sizeof *out);
    if (vocab_size < 256 + n_specials)
        return sh_errf(err, "a vocabulary of %d tokens cannot hold the 256 byte tokens and %d special tokens",
                       vocab_size, n_specials);
    uint32_t cp[256];
    byte_map(cp);
    wmap m = {0};
    tok_lens words = {0}, tmp = {0};
    uint32_t *cps = NULL;
    uint16_t *fl = NULL;
    size_t cap = 0;
    int rc = 0;
    for (size_t t = 0; !rc && t < n_texts; t++) {
        const uint8_t *s = (const uint8_t *)texts[t];
        const size_t len = strlen(texts[t]);
        if (len + 1 > cap) {
            cap = len + 64;
            uint32_t *nc = realloc(cps, cap * sizeof *cps);
            uint16_t *nf = realloc(fl, cap * sizeof *fl);
            if (nc) cps = nc;
            if (nf) fl = nf;
            if (!nc || !nf) {
                rc = -1;
                break;
            }
        }
        size_t n = 0;
        uint32_t *off = malloc((len + 1) * sizeof *off);
        if (!off) {
            rc = -1;
            break;
        }
        for (size_t i = 0; i < len;) {
            off[n] = (uint32_t)i;
            i += tok_u_decode(s + i, len - i, &cps[n]);
            fl[n] = (uint16_t)tok_u_flags(cps[n]);
            n++;
        }
        off[n] = (uint32_t)len;
        if (tok_pretok_split(TOK_PRE_GPT2, cps, fl, n, &words, &tmp)) rc = -1;
        for (size_t w = 0, at = 0; !rc && w < words.n; at += words.v[w], w++)
            if (wmap_add(&m, s + off[at], off[at + words.v[w]] - off[at])) rc = -1;
        free(off);
    }
    free(cps), free(fl), free(words.v), free(tmp.v);
    /* tokens: bytes, then merges */
    const int max_merges = vocab_size - 256 - n_specials;
    int32_t *left = malloc((size_t)(max_merges > 0 ? max_merges : 1) * sizeof *left);
    int32_t *right = malloc((size_t)(max_merges > 0 ? max_merges : 1) * sizeof *right);
    uint8_t **tb = calloc((size_t)vocab_size + 256, sizeof *tb); /* bytes of each token */
    size_t *tl = calloc((size_t)vocab_size + 256, sizeof *tl);
    pcount pc = {0};
    pc.cap = 1;
    while (pc.cap < (size_t)m.n * 32 + 1024) pc.cap *= 2;
    pc.key = malloc(pc.cap * sizeof *pc.key);
    pc.cnt = malloc(pc.cap * sizeof *pc.cnt);
    if (rc || !left || !right || !tb || !tl || !pc.key || !pc.cnt) rc = sh_errf(err, "out of memory building the BPE vocabulary");
    for (int b = 0; !rc && b < 256; b++) {
        tb[b] = malloc(1);
        if (!tb[b]) rc = sh_errf(err, "out of memory");
        else tb[b][0] = (uint8_t)b, tl[b] = 1;
    }
    int nm = 0;
    while (!rc && nm < max_merges) {
        for (size_t i = 0; i < pc.cap; i++) pc.key[i] = UINT64_MAX, pc.cnt[i] = 0;
        for (int i = 0; i < m.n; i++) {
            const word *w = &m.w[i];
            for (int k = 0; k + 1 < w->n_sym; k++)
                pc_add(&pc, (uint64_t)(uint32_t)w->sym[k] << 32 | (uint32_t)w->sym[k + 1], w->count);
        }
        uint64_t best = UINT64_MAX;
        int64_t bc = 1;
        for (size_t i = 0; i < pc.cap; i++)
            if (pc.key[i] != UINT64_MAX && (pc.cnt[i] > bc || (pc.cnt[i] == bc && bc > 1 && pc.key[i] < best)))
                best = pc.key[i], bc = pc.cnt[i];
        if (best == UINT64_MAX || bc < 2) break;
        const int32_t a = (int32_t)(best >> 32), b = (int32_t)(best & 0xffffffffu), id = 256 + nm;
        left[nm] = a, right[nm] = b;
        tl[id] = tl[a] + tl[b];
        tb[id] = malloc(tl[id]);
        if (!tb[id]) {
            rc = sh_errf(err, "out of memory");
            break;
        }
        memcpy(tb[id], tb[a], tl[a]);
        memcpy(tb[id] + tl[a], tb[b], tl[b]);
        for (int i = 0; i < m.n; i++) {
            word *w = &m.w[i];
            int o = 0;
            for (int k = 0; k < w->n_sym; k++) {
                if (k + 1 < w->n_sym && w->sym[k] == a && w->sym[k + 1] == b) {
                    w->sym[o++] = id;
                    k++;
                } else {
                    w->sym[o++] = w->sym[k];
                }
            }
            w->n_sym = o;
        }
        nm++;
    }
    const int n = 256 + nm + n_specials;
    if (!rc) {
        out->tokens = calloc((size_t)n, sizeof *out->tokens);
        out->types = malloc((size_t)n * sizeof *out->types);
        out->merges = calloc((size_t)(nm ? nm : 1), sizeof *out->merges);
        if (!out->tokens || !out->types || !out->merges) rc = sh_errf(err, "out of memory");
    }
    for (int i = 0; !rc && i < 256 + nm; i++) {
        out->tokens[i] = mapped(cp, tb[i], tl[i]);
        out->types[i] = 1;
        if (!out->tokens[i]) rc = sh_errf(err, "out of memory");
    }
    for (int i = 0; !rc && i < nm; i++) {
        const char *l = out->tokens[left[i]], *r = out->tokens[right[i]];
        out->merges[i] = malloc(strlen(l) + strlen(r) + 2);
        if (!out->merges[i]) rc = sh_errf(err, "out of memory");
        else sprintf(out->merges[i], "%s %s", l, r);
    }
    out->bos = out->eos = -1;
    for (int i = 0; !rc && i < n_specials; i++) {
        out->tokens[256 + nm + i] = strdup(specials[i]);
        out->types[256 + nm + i] = 3;
        if (!strcmp(specials[i], "<|im_end|>")) out->eos = 256 + nm + i;
        if (!strcmp(specials[i], "<|endoftext|>")) out->bos = 256 + nm + i;
    }
    out->n = n;
    out->n_merges = nm;
    for (int i = 0; i < m.n; i++) free(m.w[i].bytes), free(m.w[i].sym);
    free(m.w), free(m.slot), free(pc.key), free(pc.cnt), free(left), free(right);
    for (int i = 0; i < 256 + nm && tb; i++) free(tb[i]);
    free(tb), free(tl);
    if (rc) {
        bpe_free(out);
        return -1;
    }
    return 0;
}

void bpe_free(bpe_vocab *v) {
    if (!v) return;
    for (int i = 0; v->tokens && i < v->n; i++) free(v->tokens[i]);
    for (int i = 0; v->merges && i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens), free(v->types), free(v->merges);
    memset(v, 0, sizeof *v);
}

void bpe_write_keys(gguf_writer *w, const bpe_vocab *v) {
    gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_add_str(w, "tokenizer.ggml.pre", "gpt-2");
    gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", (uint64_t)v->n, (const char *const *)v->tokens);
    gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_I32, (uint64_t)v->n, v->types);
    gguf_writer_add_str_arr(w, "tokenizer.ggml.merges", (uint64_t)v->n_merges, (const char *const *)v->merges);
    if (v->bos >= 0) gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
    if (v->eos >= 0) {
        gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
        gguf_writer_add_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)v->eos);
        gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v->eos);
    }
    gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 0);
    gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", 0);
    gguf_writer_add_str(w, "tokenizer.chat_template",
                        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                        "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if "
                        "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}");
}
