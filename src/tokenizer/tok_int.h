/*
 * tokenizer/tok_int — what the tokenizer's two files share: the vocabulary's layout (built by
 * tok_vocab.c when a GGUF is loaded, read by tokenizer.c's algorithms) and the hash lookups
 * the hot loops inline. Private to src/tokenizer.
 */
#ifndef SHOAL_TOKENIZER_TOK_INT_H
#define SHOAL_TOKENIZER_TOK_INT_H

#include <stdint.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

static inline uint64_t tokv_hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t x;
        memcpy(&x, s, 8);
        h = (h ^ x) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t x = 0;
    memcpy(&x, s, n);
    h = (h ^ x) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

static inline uint64_t tokv_hash_pair(int32_t a, int32_t b) {
    uint64_t h = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}

static inline size_t tokv_pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

typedef struct merge_id { int32_t l, r, rank, merged; } merge_id;    /* both sides are tokens */
typedef struct merge_str { uint32_t l_off, l_len, r_off, r_len; int32_t rank, merged; } merge_str;

struct tok_vocab {
    tok_type type;
    tok_pre pre;
    int32_t n;
    char *text;          /* all token texts, back to back */
    uint32_t *off, *len; /* token i = text[off[i] .. off[i]+len[i]) */
    float *score;
    uint16_t *attr;
    uint32_t *th;        /* token hash: id+1 per slot, 0 = empty */
    size_t th_mask;
    int max_token_len;

    merge_id *mid;       /* open addressing, l == INT32_MIN marks empty */
    size_t mid_mask;
    merge_str *mstr;     /* linear list: merges with a side that is not a token (rare) */
    size_t n_mstr;
    char *mtext;         /* texts of mstr */

    int32_t bos, eos, eot, eom, unk, sep, pad;
    bool add_bos, add_eos, add_sep, add_space_prefix, ignore_merges, clean_spaces;
    bool spm_split_ok;   /* no token has U+2581 right after another character */
    uint8_t *eog;        /* per token: 1 when end-of-generation */

    int32_t *special;    /* control / user-defined / unknown tokens, longest text first */
    int32_t *sp_head;    /* 65536 chains of special[] indices by the first two bytes */
    int32_t *sp_next;
    int32_t sp_head1[256]; /* one-byte special tokens, by byte */
    size_t n_special;

    int32_t byte_tok[256];     /* SPM: <0xNN> token (or the byte itself), -1 if none */
    int32_t byte_sym[256];     /* BPE: id of the byte's byte-level character, -1 if none */
    char byte_enc[256][2];     /* BPE: byte -> UTF-8 of its byte-level character */
    uint8_t byte_enc_len[256];
    int16_t byte_dec[0x144];   /* BPE: byte-level code point -> byte, -1 if not one */

    char *pieces;              /* token_to_piece(special = true) of every token */
    uint32_t *poff, *plen;
    char *chat_template;
    char *rerank_template;  /* tokenizer.chat_template.rerank, or NULL */
};

/* The id whose text is s[0..len), or -1. */
static inline int32_t tokv_find_token(const tok_vocab *v, const char *s, size_t len) {
    uint64_t h = tokv_hash_bytes(s, len);
    for (size_t i = h & v->th_mask;; i = (i + 1) & v->th_mask) {
        uint32_t e = v->th[i];
        if (!e) return -1;
        int32_t id = (int32_t)e - 1;
        if (v->len[id] == len && memcmp(v->text + v->off[id], s, len) == 0) return id;
    }
}

/* The merge of tokens l and r, or NULL. */
static inline const merge_id *tokv_find_merge_id(const tok_vocab *v, int32_t l, int32_t r) {
    if (!v->mid) return NULL;
    for (size_t i = tokv_hash_pair(l, r) & v->mid_mask;; i = (i + 1) & v->mid_mask) {
        const merge_id *m = &v->mid[i];
        if (m->l == INT32_MIN) return NULL;
        if (m->l == l && m->r == r) return m;
    }
}

/* tokenizer.c: every token's piece (token_to_piece with special = true), stored in v. 0, or -1
 * when memory runs out. */
int tokv_build_pieces(tok_vocab *v);

#endif
