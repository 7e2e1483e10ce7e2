/*
 * grammar/regex — JSON Schema "pattern" (an ECMA-262 subset) to a GBNF expression over the
 * JSON-encoded string content.
 *
 * Supported: literals, escapes (\d \D \w \W \s \S \n \r \t \f \v \0 \xHH \uHHHH and escaped
 * punctuation), classes [...] and [^...] with ranges and the class escapes, '.', groups (...)
 * and (?:...), '|', quantifiers ? * + {m} {m,} {m,n} (a trailing lazy '?' is accepted and
 * ignored), '^' at the very start and '$' at the very end. A pattern without '^' may be
 * preceded by any text, one without '$' followed by any text (JSON Schema patterns are not
 * anchored). Refused: backreferences, lookaround, named groups, \b \B, '^'/'$' elsewhere.
 *
 * Characters that JSON must escape come out escaped: '"' as \", '\' as \\, control characters
 * as \n \t ... or \u00XX. '.' and negated classes match any character including newline
 * (written \n inside the string).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/gram_int.h"

typedef struct rx {
    const char *start, *p, *end;
    gram_sb *out;
    char *msg;
    size_t msgsz;
    bool failed;
    int depth;
} rx;

typedef struct rset {
    uint32_t *v; /* pairs */
    size_t n, cap;
    bool oom;
} rset;

static void rx_fail(rx *r, const char *what) {
    if (r->failed) return;
    r->failed = true;
    snprintf(r->msg, r->msgsz, "%s at offset %zu of the pattern", what, (size_t)(r->p - r->start));
}

static void rs_add(rset *s, uint32_t lo, uint32_t hi) {
    if (s->n + 2 > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        uint32_t *v = realloc(s->v, cap * sizeof *v);
        if (!v) {
            s->oom = true;
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = lo;
    s->v[s->n++] = hi;
}

static int cmp_pair(const void *a, const void *b) {
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Sorts and merges; complements when neg. */
static void rs_norm(rset *s, bool neg) {
    size_t np = s->n / 2;
    qsort(s->v, np, 2 * sizeof *s->v, cmp_pair);
    size_t m = 0;
    for (size_t i = 0; i < np; i++) {
        if (m && s->v[2 * i] <= s->v[2 * m - 1] + 1) {
            if (s->v[2 * i + 1] > s->v[2 * m - 1]) s->v[2 * m - 1] = s->v[2 * i + 1];
        } else {
            s->v[2 * m] = s->v[2 * i];
            s->v[2 * m + 1] = s->v[2 * i + 1];
            m++;
        }
    }
    s->n = 2 * m;
    if (!neg) return;
    rset c = {0};
    uint32_t next = 0;
    for (size_t i = 0; i <= m; i++) {
        uint32_t lo = i < m ? s->v[2 * i] : GRAM_MAX_CP + 1;
        if (lo > next) rs_add(&c, next, lo - 1);
        if (i < m) next = s->v[2 * i + 1] + 1;
    }
    free(s->v);
    *s = c;
}

static bool rs_has(const rset *s, uint32_t cp) {
    for (size_t i = 0; i < s->n; i += 2)
        if (s->v[i] <= cp && cp <= s->v[i + 1]) return true;
    return false;
}

static void put_escaped_cp(gram_sb *o, uint32_t cp) {
    /* the JSON escape of a character that must be escaped, as a GBNF literal */
    switch (cp) {
    case '"': strbuf_puts(o, "\"\\\\\\\"\""); return;  /* "\\\"" */
    case '\\': strbuf_puts(o, "\"\\\\\\\\\""); return; /* "\\\\" */
    case '\b': strbuf_puts(o, "\"\\\\b\""); return;
    case '\t': strbuf_puts(o, "\"\\\\t\""); return;
    case '\n': strbuf_puts(o, "\"\\\\n\""); return;
    case '\f': strbuf_puts(o, "\"\\\\f\""); return;
    case '\r': strbuf_puts(o, "\"\\\\r\""); return;
    default: break;
    }
    const char *hex = "0123456789abcdef";
    strbuf_puts(o, "\"\\\\u00\" ");
    for (int sh = 4; sh >= 0; sh -= 4) {
        char c = hex[(cp >> sh) & 15];
        if (c >= 'a') strbuf_printf(o, "[%c%c]", c, c - 32);
        else strbuf_printf(o, "\"%c\"", c);
        if (sh) strbuf_puts(o, " ");
    }
}

/* Emits a normalized set as a GBNF expression. */
static void emit_set(rx *r, rset *s) {
    gram_sb *o = r->out;
    if (s->oom) {
        rx_fail(r, "out of memory");
        return;
    }
    /* the plain part: everything except controls, '"' and '\' */
    rset plain = {0};
    for (size_t i = 0; i < s->n; i += 2) {
        uint32_t lo = s->v[i], hi = s->v[i + 1];
        uint32_t cuts[3][2] = {{0, 0x1f}, {'"', '"'}, {'\\', '\\'}};
        /* subtract the cut ranges (sorted, disjoint) */
        uint32_t cur = lo;
        for (int k = 0; k < 3 && cur <= hi; k++) {
            if (cuts[k][1] < cur) continue;
            if (cuts[k][0] > hi) break;
            if (cuts[k][0] > cur) rs_add(&plain, cur, cuts[k][0] - 1);
            cur = cuts[k][1] + 1;
        }
        if (cur <= hi) rs_add(&plain, cur, hi);
    }
    int alts = 0;
    strbuf_puts(o, "(");
    if (plain.n) {
        strbuf_puts(o, "[");
        for (size_t i = 0; i < plain.n; i += 2) {
            gram_sb_cp(o, plain.v[i], true);
            if (plain.v[i + 1] != plain.v[i]) {
                strbuf_puts(o, "-");
                gram_sb_cp(o, plain.v[i + 1], true);
            }
        }
        strbuf_puts(o, "]");
        alts++;
    }
    free(plain.v);
    for (uint32_t cp = 0; cp < 0x20; cp++) {
        if (!rs_has(s, cp)) continue;
        strbuf_puts(o, alts++ ? " | " : "");
        put_escaped_cp(o, cp);
    }
    if (rs_has(s, '"')) {
        strbuf_puts(o, alts++ ? " | " : "");
        put_escaped_cp(o, '"');
    }
    if (rs_has(s, '\\')) {
        strbuf_puts(o, alts++ ? " | " : "");
        put_escaped_cp(o, '\\');
    }
    if (!alts) strbuf_puts(o, "[]"); /* matches nothing */
    strbuf_puts(o, ")");
}

static void add_class_escape(rset *s, char c) {
    bool neg = c >= 'A' && c <= 'Z';
    rset t = {0};
    switch (c | 0x20) {
    case 'd': rs_add(&t, '0', '9'); break;
    case 'w':
        rs_add(&t, '0', '9');
        rs_add(&t, 'A', 'Z');
        rs_add(&t, '_', '_');
        rs_add(&t, 'a', 'z');
        break;
    default: /* s */
        rs_add(&t, '\t', '\r');
        rs_add(&t, ' ', ' ');
        rs_add(&t, 0xa0, 0xa0);
        rs_add(&t, 0x2028, 0x2029);
        rs_add(&t, 0xfeff, 0xfeff);
        break;
    }
    rs_norm(&t, neg);
    for (size_t i = 0; i < t.n; i += 2) rs_add(s, t.v[i], t.v[i + 1]);
    if (t.oom) s->oom = true;
    free(t.v);
}

static int hexv(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* After '\': a single character escape. Returns 1 with *cp, 2 when it was a class escape
 * (added to set), 0 on error. */
static int read_escape(rx *r, uint32_t *cp, rset *set, bool in_class) {
    if (r->p >= r->end) {
        rx_fail(r, "pattern ends with '\\'");
        return 0;
    }
    char c = *r->p++;
    switch (c) {
    case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
        add_class_escape(set, c);
        return 2;
    case 'n': *cp = '\n'; return 1;
    case 'r': *cp = '\r'; return 1;
    case 't': *cp = '\t'; return 1;
    case 'f': *cp = '\f'; return 1;
    case 'v': *cp = '\v'; return 1;
    case '0': *cp = 0; return 1;
    case 'b':
        if (in_class) {
            *cp = '\b';
            return 1;
        }
        r->p--;
        rx_fail(r, "unsupported regex feature '\\b' (word boundary)");
        return 0;
    case 'x': case 'u': {
        int nd = c == 'x' ? 2 : 4;
        uint32_t v = 0;
        for (int i = 0; i < nd; i++) {
            int h = r->p < r->end ? hexv(*r->p) : -1;
            if (h < 0) {
                rx_fail(r, "bad hex escape");
                return 0;
            }
            v = v * 16 + (uint32_t)h;
            r->p++;
        }
        *cp = v;
        return 1;
    }
    default: break;
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '1' && c <= '9')) {
        r->p--;
        char what[80];
        snprintf(what, sizeof what, "unsupported regex feature '\\%c'%s", c,
                 c >= '1' && c <= '9' ? " (backreference)" : "");
        rx_fail(r, what);
        return 0;
    }
    uint32_t u;
    r->p--;
    size_t k = gram_utf8_decode(r->p, (size_t)(r->end - r->p), &u);
    if (!k) {
        rx_fail(r, "invalid UTF-8 in the pattern");
        return 0;
    }
    r->p += k;
    *cp = u;
    return 1;
}

static void parse_alt(rx *r);

static void parse_class(rx *r) {
    r->p++; /* [ */
    bool neg = false;
    if (r->p < r->end && *r->p == '^') {
        neg = true;
        r->p++;
    }
    rset s = {0};
    while (r->p < r->end && *r->p != ']' && !r->failed) {
        uint32_t lo;
        if (*r->p == '\\') {
            r->p++;
            int k = read_escape(r, &lo, &s, true);
            if (k != 1) continue;
        } else {
            size_t k = gram_utf8_decode(r->p, (size_t)(r->end - r->p), &lo);
            if (!k) {
                rx_fail(r, "invalid UTF-8 in the pattern");
                break;
            }
            r->p += k;
        }
        uint32_t hi = lo;
        if (r->p + 1 < r->end && *r->p == '-' && r->p[1] != ']') {
            r->p++;
            if (*r->p == '\\') {
                r->p++;
                rset dummy = {0};
                int k = read_escape(r, &hi, &dummy, true);
                free(dummy.v);
                if (k == 2) {
                    rx_fail(r, "class escape as a range end");
                    break;
                }
                if (k == 0) break;
            } else {
                size_t k = gram_utf8_decode(r->p, (size_t)(r->end - r->p), &hi);
                if (!k) {
                    rx_fail(r, "invalid UTF-8 in the pattern");
                    break;
                }
                r->p += k;
            }
            if (hi < lo) {
                rx_fail(r, "class range out of order");
                break;
            }
        }
        rs_add(&s, lo, hi);
    }
    if (!r->failed && r->p >= r->end) rx_fail(r, "unterminated '[' class");
    if (!r->failed) {
        r->p++;
        rs_norm(&s, neg);
        emit_set(r, &s);
    }
    free(s.v);
}

static bool parse_count(rx *r, uint32_t *v) {
    if (r->p >= r->end || *r->p < '0' || *r->p > '9') return false;
    uint64_t x = 0;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        x = x * 10 + (uint64_t)(*r->p++ - '0');
        if (x > 1000000) x = 1000000;
    }
    *v = (uint32_t)x;
    return true;
}

/* One atom and its quantifier. */
static void parse_piece(rx *r) {
    gram_sb *o = r->out;
    char c = *r->p;
    const char *at = r->p;
    if (c == '*' || c == '+' || c == '?') {
        rx_fail(r, "nothing to repeat");
        return;
    }
    if (c == '^' || c == '$') {
        rx_fail(r, c == '^' ? "unsupported regex feature '^' (only at the start)"
                            : "unsupported regex feature '$' (only at the end)");
        return;
    }
    strbuf_puts(o, " (");
    if (c == '(') {
        r->p++;
        if (r->p < r->end && *r->p == '?') {
            if (r->p + 1 < r->end && r->p[1] == ':') {
                r->p += 2;
            } else {
                rx_fail(r, "unsupported regex feature '(?' (lookaround or named group)");
                return;
            }
        }
        if (++r->depth > 100) {
            rx_fail(r, "pattern nested too deeply");
            return;
        }
        parse_alt(r);
        r->depth--;
        if (r->failed) return;
        if (r->p >= r->end || *r->p != ')') {
            r->p = at;
            rx_fail(r, "unbalanced '(' in the pattern");
            return;
        }
        r->p++;
    } else if (c == '[') {
        parse_class(r);
    } else if (c == '.') {
        r->p++;
        strbuf_puts(o, "char");
    } else {
        uint32_t cp;
        rset s = {0};
        int k;
        if (c == '\\') {
            r->p++;
            k = read_escape(r, &cp, &s, false);
        } else {
            size_t n = gram_utf8_decode(r->p, (size_t)(r->end - r->p), &cp);
            if (!n) {
                rx_fail(r, "invalid UTF-8 in the pattern");
                return;
            }
            r->p += n;
            k = 1;
        }
        if (k == 1) {
            if (cp < 0x20 || cp == '"' || cp == '\\') {
                put_escaped_cp(o, cp);
            } else {
                strbuf_puts(o, "\"");
                gram_sb_cp(o, cp, false);
                strbuf_puts(o, "\"");
            }
        } else if (k == 2) {
            rs_norm(&s, false);
            emit_set(r, &s);
        }
        free(s.v);
        if (r->failed) return;
    }
    if (r->failed) return;
    strbuf_puts(o, ")");
    /* quantifier */
    if (r->p >= r->end) return;
    c = *r->p;
    if (c == '*' || c == '+' || c == '?') {
        r->p++;
        strbuf_put(o, &c, 1);
    } else if (c == '{') {
        const char *save = r->p;
        r->p++;
        uint32_t mn, mx;
        if (!parse_count(r, &mn)) {
            r->p = save;
            rx_fail(r, "bad '{' quantifier (write \\{ for a literal brace)");
            return;
        }
        mx = mn;
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            mx = UINT32_MAX;
            if (r->p < r->end && *r->p != '}' && !parse_count(r, &mx)) {
                rx_fail(r, "bad '{m,n}' quantifier");
                return;
            }
        }
        if (r->p >= r->end || *r->p != '}') {
            rx_fail(r, "bad '{m,n}' quantifier");
            return;
        }
        r->p++;
        if (mn > GRAM_REPEAT_MAX || (mx != UINT32_MAX && mx > GRAM_REPEAT_MAX)) {
            rx_fail(r, "repetition count too large in the pattern (at most 4096)");
            return;
        }
        if (mx < mn) {
            rx_fail(r, "quantifier {m,n} with n < m");
            return;
        }
        if (mx == UINT32_MAX) strbuf_printf(o, "{%u,}", (unsigned)mn);
        else strbuf_printf(o, "{%u,%u}", (unsigned)mn, (unsigned)mx);
    } else {
        return;
    }
    if (r->p < r->end && *r->p == '?') r->p++; /* lazy: the same language */
    if (r->p < r->end && (*r->p == '*' || *r->p == '+' || *r->p == '?' || *r->p == '{'))
        rx_fail(r, "nothing to repeat (a quantifier after a quantifier)");
}

static void parse_alt(rx *r) {
    strbuf_puts(r->out, "(");
    for (;;) {
        strbuf_puts(r->out, " \"\"");
        while (r->p < r->end && *r->p != '|' && *r->p != ')' && !r->failed) parse_piece(r);
        if (r->failed) return;
        if (r->p < r->end && *r->p == '|') {
            r->p++;
            strbuf_puts(r->out, " |");
            continue;
        }
        break;
    }
    strbuf_puts(r->out, " )");
}

int gram_regex_to_gbnf(const char *pattern, size_t len, gram_sb *out, char *msg, size_t msgsz) {
    rx r = {.start = pattern, .p = pattern, .end = pattern + len, .out = out, .msg = msg, .msgsz = msgsz};
    bool anchor_start = false, anchor_end = false;
    if (r.p < r.end && *r.p == '^') {
        anchor_start = true;
        r.p++;
    }
    if (r.end > r.p && r.end[-1] == '$') {
        size_t bs = 0; /* an escaped '$' is a literal */
        for (const char *q = r.end - 2; q >= r.p && *q == '\\'; q--) bs++;
        if (bs % 2 == 0) {
            anchor_end = true;
            r.end--;
        }
    }
    strbuf_puts(out, "(");
    if (!anchor_start) strbuf_puts(out, " char*");
    parse_alt(&r);
    if (!r.failed && r.p < r.end) {
        if (*r.p == ')') rx_fail(&r, "unbalanced ')' in the pattern");
        else rx_fail(&r, "unexpected character in the pattern");
    }
    if (!anchor_end) strbuf_puts(out, " char*");
    strbuf_puts(out, " )");
    if (out->oom && !r.failed) rx_fail(&r, "out of memory");
    return r.failed ? -1 : 0;
}
