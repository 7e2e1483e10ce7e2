/* core/utf8 — see utf8.h. Follows RFC 3629: no overlongs, no surrogates, max U+10FFFF. */
#include "core/utf8.h"

#include <stdlib.h>
#include <string.h>

size_t utf8_seq_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;      /* overlong */
        else if (c == 0xed) hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;      /* overlong */
        else if (c == 0xf4) hi = 0x8f; /* > U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return len;
}

char *utf8_sanitize(char *s) {
    unsigned char *p = (unsigned char *)s;
    size_t n = strlen(s);
    while (n) {
        size_t k = utf8_seq_len(p, n);
        if (!k) {
            *p = '?';
            k = 1;
        }
        p += k;
        n -= k;
    }
    return s;
}

char *utf8_replace_invalid(const char *s, size_t n, size_t *out_n) {
    char *out = malloc(3 * n + 1); /* at worst every byte becomes three */
    if (!out) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    while (n) {
        size_t k = utf8_seq_len(p, n);
        if (k) {
            memcpy(out + o, p, k);
            o += k;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            k = 1;
        }
        p += k;
        n -= k;
    }
    out[o] = 0;
    *out_n = o;
    return out;
}
