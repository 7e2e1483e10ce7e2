/*
 * tokenizer/tok_pretok — pre-tokenizer passes. Each pass partitions one fragment [a, b) of the
 * code point array; positions outside the fragment read as "no character" (flags 0), which is
 * how the expressions' look-aheads see the fragment end.
 */
#include "tokenizer/tok_pretok.h"

#include <stdlib.h>

#include "tokenizer/tok_unicode.h"

typedef struct pass_ctx {
    const uint32_t *cps;
    const uint16_t *flags;
    size_t a, b;    /* the fragment */
    size_t prev;    /* end of the last emitted piece */
    tok_lens *out;
    int oom;
} pass_ctx;

#define NONE 0xFFFFFFFFu

static inline unsigned F(const pass_ctx *c, size_t p) { return p < c->b ? c->flags[p] : 0; }
static inline uint32_t C(const pass_ctx *c, size_t p) { return p < c->b ? c->cps[p] : NONE; }

static int lens_push(tok_lens *l, uint32_t x) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        uint32_t *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return -1;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = x;
    return 0;
}

/* Ends the current piece at `end` (nothing when empty). */
static void emit(pass_ctx *c, size_t end) {
    if (end > c->prev && lens_push(c->out, (uint32_t)(end - c->prev))) c->oom = 1;
    c->prev = end;
}

/* The "mapped" code point the std::regex / std::wregex fallbacks of llama.cpp match against:
 * non-ASCII whitespace reads as U+000B so that \s sees it. */
static inline uint32_t mapped(const pass_ctx *c, size_t p) {
    uint32_t cp = c->cps[p];
    return (cp > 0x7F && (c->flags[p] & TOK_U_WS)) ? 0x0B : cp;
}

static inline int ascii_space(uint32_t m) { return m == ' ' || (m >= 0x09 && m <= 0x0D); }

/* ============================================================ gpt2 ===== */

static void pass_gpt2(pass_ctx *c) {
    size_t pos = c->a;
    const size_t b = c->b;
    while (pos < b) {
        uint32_t cp = c->cps[pos];
        unsigned f = c->flags[pos];
        if (cp == '\'' && pos + 1 < b) { /* 's 't 'm 'd 're 've 'll (lower case only) */
            uint32_t n1 = c->cps[pos + 1];
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                pos += 2;
                emit(c, pos);
                continue;
            }
            if (pos + 2 < b) {
                uint32_t n2 = c->cps[pos + 2];
                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                    pos += 3;
                    emit(c, pos);
                    continue;
                }
            }
        }
        unsigned f2 = cp == ' ' ? F(c, pos + 1) : f;
        if (f2 & TOK_U_LET) { /* ' ?\p{L}+' */
            pos += cp == ' ';
            while (F(c, pos) & TOK_U_LET) pos++;
            emit(c, pos);
            continue;
        }
        if (f2 & TOK_U_NUM) { /* ' ?\p{N}+' */
            pos += cp == ' ';
            while (F(c, pos) & TOK_U_NUM) pos++;
            emit(c, pos);
            continue;
        }
        if (!(f2 & (TOK_U_WS | TOK_U_LET | TOK_U_NUM)) && f2) { /* ' ?[^\s\p{L}\p{N}]+' */
            pos += cp == ' ';
            for (;;) {
                unsigned g = F(c, pos);
                if (!g || (g & (TOK_U_WS | TOK_U_LET | TOK_U_NUM))) break;
                pos++;
            }
            emit(c, pos);
            continue;
        }
        size_t nws = 0;
        while (F(c, pos + nws) & TOK_U_WS) nws++;
        if (nws > 1 && pos + nws < b) { /* '\s+(?!\S)': leave the last space to the next word */
            pos += nws - 1;
            emit(c, pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            emit(c, pos);
            continue;
        }
        emit(c, ++pos);
    }
}

/* ============================================================ llama3 / qwen2 ===== */

static void pass_llama3(pass_ctx *c, size_t max_digits) {
    size_t pos = c->a;
    const size_t b = c->b;
    while (pos < b) {
        uint32_t cp = c->cps[pos];
        unsigned f = c->flags[pos];
        if (cp == '\'' && pos + 1 < b) { /* contractions, case-insensitive */
            uint32_t n1 = tok_u_tolower(c->cps[pos + 1]);
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                pos += 2;
                emit(c, pos);
                continue;
            }
            if (pos + 2 < b) {
                uint32_t n2 = tok_u_tolower(c->cps[pos + 2]);
                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                    pos += 3;
                    emit(c, pos);
                    continue;
                }
            }
        }
        /* '[^\r\n\p{L}\p{N}]?\p{L}+' */
        if (!(cp == '\r' || cp == '\n' || (f & TOK_U_NUM))) {
            if ((f & TOK_U_LET) || (F(c, pos + 1) & TOK_U_LET)) {
                pos++;
                while (F(c, pos) & TOK_U_LET) pos++;
                emit(c, pos);
                continue;
            }
        }
        if (f & TOK_U_NUM) { /* '\p{N}{1,max}' */
            size_t ini = pos;
            while (F(c, pos) & TOK_U_NUM) {
                if (++pos - ini >= max_digits) {
                    emit(c, pos);
                    ini = pos;
                }
            }
            emit(c, pos);
            continue;
        }
        /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
        unsigned f2 = cp == ' ' ? F(c, pos + 1) : f;
        if (!(f2 & (TOK_U_WS | TOK_U_LET | TOK_U_NUM)) && f) {
            pos += cp == ' ';
            for (;;) {
                unsigned g = F(c, pos);
                if (!g || (g & (TOK_U_WS | TOK_U_LET | TOK_U_NUM))) break;
                pos++;
            }
            while (C(c, pos) == '\r' || C(c, pos) == '\n') pos++;
            emit(c, pos);
            continue;
        }
        size_t nws = 0, last_rn = 0;
        while (F(c, pos + nws) & TOK_U_WS) {
            uint32_t w = c->cps[pos + nws];
            if (w == '\r' || w == '\n') last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn > 0) { /* '\s*[\r\n]+' */
            pos = last_rn;
            emit(c, pos);
            continue;
        }
        if (nws > 1 && pos + nws < b) { /* '\s+(?!\S)' */
            pos += nws - 1;
            emit(c, pos);
            continue;
        }
        if (nws > 0) { /* '\s+' */
            pos += nws;
            emit(c, pos);
            continue;
        }
        emit(c, ++pos);
    }
}

/* ============================================================ helper expressions ===== */

typedef int (*class_fn)(const pass_ctx *c, size_t p);

/* 'X' for every single character of class X: each one its own piece. */
static void pass_each(pass_ctx *c, class_fn in) {
    for (size_t p = c->a; p < c->b; p++)
        if (in(c, p)) {
            emit(c, p);
            emit(c, p + 1);
        }
    emit(c, c->b);
}

/* 'X+' (with_space: '\s?X+'): maximal runs, the optional leading whitespace taken when it
 * directly precedes a run. */
static void pass_runs(pass_ctx *c, class_fn in, class_fn space) {
    size_t p = c->a;
    while (p < c->b) {
        size_t start;
        if (in(c, p)) start = p;
        else if (space && space(c, p) && p + 1 < c->b && in(c, p + 1)) start = p++;
        else {
            p++;
            continue;
        }
        while (p < c->b && in(c, p)) p++;
        emit(c, start);
        emit(c, p);
    }
    emit(c, c->b);
}

static int is_num(const pass_ctx *c, size_t p) { return (c->flags[p] & TOK_U_NUM) != 0; }
static int is_let(const pass_ctx *c, size_t p) { return (c->flags[p] & TOK_U_LET) != 0; }
static int is_punct(const pass_ctx *c, size_t p) { return (c->flags[p] & TOK_U_PUNCT) != 0; }
static int is_ws(const pass_ctx *c, size_t p) { return ascii_space(mapped(c, p)); }
static int is_crlf(const pass_ctx *c, size_t p) { return c->cps[p] == '\r' || c->cps[p] == '\n'; }

static int ascii_in(uint32_t cp, const char *set) {
    for (; *set; set++)
        if ((uint32_t)(unsigned char)*set == cp) return 1;
    return 0;
}

/* '[\p{P}\$\+<=>\^~\|]+' (default) and with '`' (falcon) */
static int is_punct_default(const pass_ctx *c, size_t p) {
    return is_punct(c, p) || ascii_in(c->cps[p], "$+<=>^~|");
}
static int is_punct_falcon(const pass_ctx *c, size_t p) {
    return is_punct(c, p) || ascii_in(c->cps[p], "$+<=>^~|`");
}

typedef struct { uint32_t lo, hi; } cp_range;

static int in_ranges(uint32_t cp, const cp_range *r, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (cp >= r[i].lo && cp <= r[i].hi) return 1;
    return 0;
}

/* deepseek-llm's Latin/Greek/Cyrillic/... class (cased letters), as listed in llama.cpp. */
static const cp_range ds_latin[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
    {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377},
    {0x37B, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C},
    {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
    {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
    {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE},
    {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC},
    {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
    {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
    {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149},
    {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787},
    {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
/* '[!-/:-~！-／：-～‘-‟　-。]' */
static const cp_range ds_punct[] = {
    {0x21, 0x2F}, {0x3A, 0x7E}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E}, {0x2018, 0x201F},
    {0x3000, 0x3002},
};
/* '[一-龥ࠀ-一가-퟿]' */
static const cp_range ds_cjk[] = {{0x4E00, 0x9FA5}, {0x800, 0x4E00}, {0xAC00, 0xD7FF}};

static int is_ds_latin(const pass_ctx *c, size_t p) {
    return in_ranges(mapped(c, p), ds_latin, sizeof ds_latin / sizeof ds_latin[0]);
}
static int is_ds_punct(const pass_ctx *c, size_t p) {
    return in_ranges(mapped(c, p), ds_punct, sizeof ds_punct / sizeof ds_punct[0]);
}
static int is_ds_cjk(const pass_ctx *c, size_t p) {
    return in_ranges(mapped(c, p), ds_cjk, sizeof ds_cjk / sizeof ds_cjk[0]);
}

/* '[0-9][0-9][0-9]': leftmost non-overlapping groups of three ASCII digits. */
static void pass_digit3(pass_ctx *c) {
    size_t p = c->a;
    while (p + 3 <= c->b) {
        int ok = 1;
        for (size_t k = 0; k < 3; k++)
            if (c->cps[p + k] < '0' || c->cps[p + k] > '9') ok = 0;
        if (ok) {
            emit(c, p);
            emit(c, p + 3);
            p += 3;
        } else p++;
    }
    emit(c, c->b);
}

/* '\s+$': the whitespace run that ends the fragment. */
static void pass_trailing_ws(pass_ctx *c) {
    size_t q = c->b;
    while (q > c->a && is_ws(c, q - 1)) q--;
    emit(c, q);
    emit(c, c->b);
}

/* ============================================================ pass lists ===== */

typedef enum pass_id {
    P_GPT2, P_LLAMA3, P_QWEN2, P_NUM_EACH, P_NUM_RUN, P_DIGIT3, P_PUNCT_DEFAULT, P_PUNCT_FALCON,
    P_CRLF_EACH, P_DS_LATIN, P_DS_PUNCT, P_TRAIL_WS, P_DS_CJK, P_S_LETTERS, P_S_PUNCT,
    P_END
} pass_id;

static const pass_id *passes_for(tok_pre pre) {
    static const pass_id deflt[] = {P_PUNCT_DEFAULT, P_GPT2, P_NUM_RUN, P_DIGIT3, P_END};
    static const pass_id gpt2[] = {P_GPT2, P_END};
    static const pass_id llama3[] = {P_LLAMA3, P_END};
    static const pass_id qwen2[] = {P_QWEN2, P_END};
    static const pass_id starcoder[] = {P_NUM_EACH, P_GPT2, P_END};
    static const pass_id falcon[] = {P_PUNCT_FALCON, P_GPT2, P_DIGIT3, P_END};
    static const pass_id ds_llm[] = {P_CRLF_EACH, P_DS_LATIN, P_DS_PUNCT, P_TRAIL_WS, P_DS_CJK,
                                     P_NUM_RUN, P_END};
    static const pass_id ds_coder[] = {P_CRLF_EACH, P_S_LETTERS, P_S_PUNCT, P_DS_CJK, P_NUM_EACH,
                                       P_END};
    switch (pre) {
    case TOK_PRE_GPT2: return gpt2;
    case TOK_PRE_LLAMA3: return llama3;
    case TOK_PRE_QWEN2: return qwen2;
    case TOK_PRE_STARCODER: return starcoder;
    case TOK_PRE_FALCON: return falcon;
    case TOK_PRE_DEEPSEEK_LLM: return ds_llm;
    case TOK_PRE_DEEPSEEK_CODER: return ds_coder;
    case TOK_PRE_DEFAULT: break;
    }
    return deflt;
}

static void run_pass(pass_id id, pass_ctx *c) {
    switch (id) {
    case P_GPT2: pass_gpt2(c); break;
    case P_LLAMA3: pass_llama3(c, 3); break;
    case P_QWEN2: pass_llama3(c, 1); break;
    case P_NUM_EACH: pass_each(c, is_num); break;
    case P_NUM_RUN: pass_runs(c, is_num, NULL); break;
    case P_DIGIT3: pass_digit3(c); break;
    case P_PUNCT_DEFAULT: pass_runs(c, is_punct_default, NULL); break;
    case P_PUNCT_FALCON: pass_runs(c, is_punct_falcon, NULL); break;
    case P_CRLF_EACH: pass_each(c, is_crlf); break;
    case P_DS_LATIN: pass_runs(c, is_ds_latin, is_ws); break;
    case P_DS_PUNCT: pass_runs(c, is_ds_punct, is_ws); break;
    case P_TRAIL_WS: pass_trailing_ws(c); break;
    case P_DS_CJK: pass_runs(c, is_ds_cjk, NULL); break;
    case P_S_LETTERS: pass_runs(c, is_let, is_ws); break;
    case P_S_PUNCT: pass_runs(c, is_punct, is_ws); break;
    case P_END: break;
    }
}

int tok_pretok_split(tok_pre pre, const uint32_t *cps, const uint16_t *flags, size_t n,
                     tok_lens *out, tok_lens *tmp) {
    out->n = 0;
    if (n == 0) return 0;
    if (lens_push(out, (uint32_t)n)) return -1;
    for (const pass_id *p = passes_for(pre); *p != P_END; p++) {
        tmp->n = 0;
        pass_ctx c = {.cps = cps, .flags = flags, .out = tmp};
        size_t start = 0;
        for (size_t i = 0; i < out->n; i++) {
            c.a = c.prev = start;
            c.b = start + out->v[i];
            run_pass(*p, &c);
            start = c.b;
        }
        if (c.oom) return -1;
        tok_lens t = *out;
        *out = *tmp;
        *tmp = t;
    }
    return 0;
}
