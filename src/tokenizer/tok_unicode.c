/*
 * tokenizer/tok_unicode — look-ups in the generated tables and llama.cpp-compatible UTF-8.
 */
#include "tokenizer/tok_unicode.h"

/* ============================================================ properties ===== */

static unsigned flags_search(uint32_t cp) {
    size_t lo = 0, hi = tok_u_n_flag_ranges; /* invariant: ranges[lo].start <= cp */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tok_u_flag_ranges[mid].start <= cp) lo = mid;
        else hi = mid;
    }
    return tok_u_flag_ranges[lo].flags;
}

unsigned tok_u_flags(uint32_t cp) {
    if (cp < 128) return tok_u_ascii_flags[cp]; /* the common case, without a search */
    if (cp > 0x10FFFF) return TOK_U_UNDEF;
    return flags_search(cp);
}

uint32_t tok_u_tolower(uint32_t cp) {
    if (cp < 128) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    size_t lo = 0, hi = tok_u_n_lower_map;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tok_u_lower_map[mid].from < cp) lo = mid + 1;
        else hi = mid;
    }
    return (lo < tok_u_n_lower_map && tok_u_lower_map[lo].from == cp) ? tok_u_lower_map[lo].to : cp;
}

uint32_t tok_u_nfd_first(uint32_t cp) {
    if (cp < 0xC0) return cp;
    size_t lo = 0, hi = tok_u_n_nfd_ranges; /* first range with first > cp */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tok_u_nfd_ranges[mid].first <= cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return cp;
    const tok_u_nfd *r = &tok_u_nfd_ranges[lo - 1];
    return (r->first <= cp && cp <= r->last) ? r->nfd : cp;
}

/* ============================================================ UTF-8 ===== */

size_t tok_u_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t len;
    uint32_t v;
    if ((b & 0x40) == 0) goto bad; /* stray continuation byte */
    if ((b & 0x20) == 0) { len = 2; v = b & 0x1F; }
    else if ((b & 0x10) == 0) { len = 3; v = b & 0x0F; }
    else if ((b & 0x08) == 0) { len = 4; v = b & 0x07; }
    else goto bad;
    if (len > n) goto bad;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) goto bad;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v > 0x10FFFF) goto bad;
    *cp = v;
    return len;
bad:
    *cp = TOK_U_REPLACEMENT;
    return 1;
}

size_t tok_u_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | ((cp >> 18) & 0x07));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Strict length of the sequence starting at s (n bytes available): >0 complete and valid,
 * 0 = could still become valid with more bytes, -1 = can never be valid. */
static int strict_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    int len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return -1;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return 0;
        uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (s[i] < l || s[i] > h) return -1;
    }
    return len;
}

size_t tok_u_complete_prefix(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int l = strict_len(s + i, n - i);
        if (l == 0) return i; /* a partial character at the end: hold it back */
        i += l > 0 ? (size_t)l : 1;
    }
    return i;
}
