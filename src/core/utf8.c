/* core/utf8 — see utf8.h. Follows RFC 3629: no overlongs, no surrogates, max U+10FFFF. */
#include "core/utf8.h"

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
