/*
 * cache/key — canonical request serialization and text normalization for cache keys
 * (cache.h). Each field is "tag \x1f length(8 bytes, little-endian) bytes", so fields can
 * neither run into each other nor be confused with one another.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cache/cache.h"
#include "tokenizer/tok_unicode.h"

void ckey_init(ckey *k) { memset(k, 0, sizeof *k); }

void ckey_free(ckey *k) {
    if (!k) return;
    free(k->buf);
    memset(k, 0, sizeof *k);
}

static char *room(ckey *k, size_t more) {
    if (k->oom) return NULL;
    if (k->n + more > k->cap) {
        size_t cap = k->cap ? k->cap : 256;
        while (cap < k->n + more) cap *= 2;
        char *b = realloc(k->buf, cap);
        if (!b) {
            k->oom = true;
            return NULL;
        }
        k->buf = b;
        k->cap = cap;
    }
    return k->buf + k->n;
}

/* The field header; returns where its n bytes go, or NULL. */
static char *field(ckey *k, const char *tag, size_t n) {
    size_t tl = strlen(tag);
    char *p = room(k, tl + 9 + n);
    if (!p) return NULL;
    memcpy(p, tag, tl);
    p[tl] = 0x1f;
    for (int i = 0; i < 8; i++) p[tl + 1 + i] = (char)((uint64_t)n >> (8 * i));
    k->n += tl + 9;
    return p + tl + 9;
}

void ckey_bytes(ckey *k, const char *tag, const void *s, size_t n) {
    char *p = field(k, tag, n);
    if (!p) return;
    if (n) memcpy(p, s, n);
    k->n += n;
}

void ckey_text(ckey *k, const char *tag, const char *s, size_t n, bool fold_case) {
    size_t tl = strlen(tag), cap = ckey_normalize_cap(n);
    char *p = room(k, tl + 9 + cap);
    if (!p) return;
    size_t len = ckey_normalize(s, n, fold_case, p + tl + 9);
    memcpy(p, tag, tl);
    p[tl] = 0x1f;
    for (int i = 0; i < 8; i++) p[tl + 1 + i] = (char)((uint64_t)len >> (8 * i));
    k->n += tl + 9 + len;
}

void ckey_int(ckey *k, const char *tag, int64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)v >> (8 * i));
    ckey_bytes(k, tag, b, 8);
}

void ckey_num(ckey *k, const char *tag, double v) {
    uint64_t u;
    if (v == 0) v = 0; /* -0 and 0 give the same answer */
    memcpy(&u, &v, sizeof u);
    ckey_int(k, tag, (int64_t)u);
}

int ckey_digest(const ckey *k, uint8_t out[CACHE_KEY_BYTES]) {
    unsigned int n = 0;
    if (k->oom) return -1;
    if (!EVP_Digest(k->buf ? k->buf : "", k->n, out, &n, EVP_sha256(), NULL) || n != CACHE_KEY_BYTES) return -1;
    return 0;
}

size_t ckey_normalize(const char *in, size_t n, bool fold_case, char *out) {
    const uint8_t *s = (const uint8_t *)in;
    size_t o = 0, i = 0;
    bool space = false; /* white space seen since the last character written */
    while (i < n) {
        uint32_t cp;
        size_t len = tok_u_decode(s + i, n - i, &cp);
        bool invalid = cp == TOK_U_REPLACEMENT && len == 1 && s[i] >= 0x80;
        if (!invalid && (tok_u_flags(cp) & TOK_U_WS)) {
            space = true;
            i += len;
            continue;
        }
        if (space && o) out[o++] = ' ';
        space = false;
        if (invalid) {
            out[o++] = (char)s[i];
        } else if (fold_case) {
            o += tok_u_encode(tok_u_tolower(cp), out + o);
        } else {
            memcpy(out + o, s + i, len);
            o += len;
        }
        i += len;
    }
    return o;
}
