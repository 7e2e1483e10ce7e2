/*
 * grammar/gbnf — the GBNF parser and compiler: text -> rules -> flat element array; the
 * checks that make matching terminate (no left recursion); gram_to_gbnf; string helpers.
 *
 * Syntax (llama.cpp's GBNF): `name ::= alternatives`, names of letters, digits, '-' and '_';
 * sequences of "literals", [classes] ([^...] negated, a-z ranges), '.' (any character), rule
 * names and ( groups ), each optionally followed by * + ? {m} {m,} {m,n}; '|' between
 * alternatives; '#' comments to the end of the line. A rule ends at a newline unless the
 * newline is inside parentheses or follows '|'. Escapes: \n \r \t \\ \" \[ \] \- \^ \xHH
 * \uHHHH \UHHHHHHHH.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/gram_int.h"

/* ---- string builder ---------------------------------------------------------------------- */

static void sb_utf8(gram_sb *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    strbuf_put(b, u, n);
}

void gram_sb_cp(gram_sb *b, uint32_t cp, bool in_class) {
    switch (cp) {
    case '\n': strbuf_puts(b, "\\n"); return;
    case '\r': strbuf_puts(b, "\\r"); return;
    case '\t': strbuf_puts(b, "\\t"); return;
    case '\\': strbuf_puts(b, "\\\\"); return;
    case '"': strbuf_puts(b, "\\\""); return;
    default: break;
    }
    if (in_class && (cp == ']' || cp == '[' || cp == '-' || cp == '^')) {
        char e[3] = {'\\', (char)cp, 0};
        strbuf_puts(b, e);
        return;
    }
    if (cp < 0x20 || cp == 0x7f) {
        strbuf_printf(b, "\\x%02X", (unsigned)cp);
        return;
    }
    if (cp >= 0xd800 && cp <= 0xdfff) { /* not encodable as UTF-8 */
        strbuf_printf(b, "\\u%04X", (unsigned)cp);
        return;
    }
    if (cp < 0x80) {
        char c = (char)cp;
        strbuf_put(b, &c, 1);
        return;
    }
    if (cp < 0xa0) {
        strbuf_printf(b, "\\u%04X", (unsigned)cp);
        return;
    }
    sb_utf8(b, cp);
}

void gram_sb_lit(gram_sb *b, const char *s, size_t n) {
    strbuf_put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = gram_utf8_decode(s + i, n - i, &cp);
        if (!k) { /* not UTF-8: the caller's bug; keep the byte visible */
            cp = (uint8_t)s[i];
            k = 1;
        }
        gram_sb_cp(b, cp, false);
        i += k;
    }
    strbuf_put(b, "\"", 1);
}

size_t gram_utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const uint8_t *u = (const uint8_t *)s;
    if (n == 0) return 0;
    if (u[0] < 0x80) {
        *cp = u[0];
        return 1;
    }
    size_t len;
    uint32_t c, min;
    if (u[0] >= 0xc2 && u[0] <= 0xdf) {
        len = 2;
        c = u[0] & 0x1fu;
        min = 0x80;
    } else if (u[0] >= 0xe0 && u[0] <= 0xef) {
        len = 3;
        c = u[0] & 0x0fu;
        min = 0x800;
    } else if (u[0] >= 0xf0 && u[0] <= 0xf4) {
        len = 4;
        c = u[0] & 0x07u;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xc0) != 0x80) return 0;
        c = (c << 6) | (u[i] & 0x3fu);
    }
    if (c < min || c > GRAM_MAX_CP || (c >= 0xd800 && c <= 0xdfff)) return 0;
    *cp = c;
    return len;
}

/* ---- classes ----------------------------------------------------------------------------- */

bool gram_class_match(const gram *g, uint32_t cls, uint32_t cp) {
    const gram_class *c = &g->classes[cls];
    if (cp < 128) return (c->ascii[cp >> 5] >> (cp & 31)) & 1u;
    const uint32_t *r = g->ranges + 2 * (size_t)c->off;
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[2 * mid]) hi = mid;
        else if (cp > r[2 * mid + 1]) lo = mid + 1;
        else return true;
    }
    return false;
}

bool gram_class_overlaps(const gram *g, uint32_t cls, uint32_t lo, uint32_t hi) {
    const gram_class *c = &g->classes[cls];
    const uint32_t *r = g->ranges + 2 * (size_t)c->off;
    for (uint32_t i = 0; i < c->n; i++)
        if (r[2 * i] <= hi && r[2 * i + 1] >= lo) return true;
    return false;
}

bool gram_class_covers(const gram *g, uint32_t cls, uint32_t lo, uint32_t hi) {
    const gram_class *c = &g->classes[cls];
    const uint32_t *r = g->ranges + 2 * (size_t)c->off;
    for (uint32_t i = 0; i < c->n; i++) /* ranges are disjoint and non-adjacent */
        if (r[2 * i] <= lo && r[2 * i + 1] >= hi) return true;
    return false;
}

/* ---- parser state ------------------------------------------------------------------------ */

typedef struct u32v {
    uint32_t *v;
    size_t n, cap;
} u32v;

static bool u32v_push(u32v *a, uint32_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 8;
        uint32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p) return false;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return true;
}

typedef struct prule {
    char *name;      /* NULL for helper rules until naming */
    uint32_t parent; /* helper rules: the user rule they came from */
    u32v *alts;
    size_t n_alts, cap_alts;
    bool defined;
    size_t ref_at; /* offset of the first reference (for "undefined rule") */
} prule;

typedef struct parser {
    const char *src, *p, *end;
    const char *what;
    sh_err *err;
    bool failed;
    prule *rules;
    size_t n_rules, cap_rules;
    u32v ranges; /* class ranges, pairs */
    struct pclass {
        uint32_t off, n;
    } *classes;
    size_t n_classes, cap_classes;
    int32_t ascii_cls[128]; /* single-character classes, deduplicated */
    size_t n_elems;         /* running total, bounds the size of the grammar */
} parser;

#define GRAM_MAX_ELEMS (1u << 24)

static void perr(parser *ps, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void perr(parser *ps, const char *at, const char *fmt, ...) {
    if (ps->failed) return;
    ps->failed = true;
    if (!ps->err) return;
    int line = 1, col = 1;
    for (const char *q = ps->src; q < at && q < ps->end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else if (((uint8_t)*q & 0xc0) != 0x80) {
            col++;
        }
    }
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sh_errf(ps->err, "%s: line %d, column %d: %s", ps->what, line, col, msg);
}

static void poom(parser *ps) {
    if (!ps->failed) sh_errf(ps->err, "%s: out of memory", ps->what);
    ps->failed = true;
}

static int32_t new_rule(parser *ps, char *name, uint32_t parent) {
    if (ps->n_rules == ps->cap_rules) {
        size_t cap = ps->cap_rules ? 2 * ps->cap_rules : 16;
        prule *r = realloc(ps->rules, cap * sizeof *r);
        if (!r) {
            free(name);
            poom(ps);
            return -1;
        }
        ps->rules = r;
        ps->cap_rules = cap;
    }
    if (ps->n_rules >= (1u << 29)) {
        free(name);
        perr(ps, ps->p, "too many rules");
        return -1;
    }
    prule *r = &ps->rules[ps->n_rules];
    memset(r, 0, sizeof *r);
    r->name = name;
    r->parent = parent;
    r->ref_at = (size_t)-1;
    return (int32_t)ps->n_rules++;
}

/* A new empty alternative of rule ri; returns its index or -1. */
static int32_t new_alt(parser *ps, uint32_t ri) {
    prule *r = &ps->rules[ri];
    if (r->n_alts == r->cap_alts) {
        size_t cap = r->cap_alts ? 2 * r->cap_alts : 2;
        u32v *a = realloc(r->alts, cap * sizeof *a);
        if (!a) {
            poom(ps);
            return -1;
        }
        r->alts = a;
        r->cap_alts = cap;
    }
    memset(&r->alts[r->n_alts], 0, sizeof(u32v));
    return (int32_t)r->n_alts++;
}

static bool push_elem(parser *ps, uint32_t ri, int32_t ai, uint32_t e) {
    if (++ps->n_elems > GRAM_MAX_ELEMS) {
        perr(ps, ps->p, "grammar too large (more than %u elements after expansion)", GRAM_MAX_ELEMS);
        return false;
    }
    if (!u32v_push(&ps->rules[ri].alts[ai], e)) {
        poom(ps);
        return false;
    }
    return true;
}

/* Adds a class from raw ranges (pairs, any order, possibly overlapping); negate complements. */
static int32_t add_class(parser *ps, uint32_t *pairs, size_t n, bool negate) {
    /* sort pairs by lo (insertion sort: classes are small) */
    for (size_t i = 1; i < n; i++) {
        uint32_t lo = pairs[2 * i], hi = pairs[2 * i + 1];
        size_t j = i;
        while (j > 0 && pairs[2 * (j - 1)] > lo) {
            pairs[2 * j] = pairs[2 * (j - 1)];
            pairs[2 * j + 1] = pairs[2 * (j - 1) + 1];
            j--;
        }
        pairs[2 * j] = lo;
        pairs[2 * j + 1] = hi;
    }
    size_t m = 0; /* merge in place */
    for (size_t i = 0; i < n; i++) {
        if (m && pairs[2 * i] <= pairs[2 * (m - 1) + 1] + 1) {
            if (pairs[2 * i + 1] > pairs[2 * (m - 1) + 1]) pairs[2 * (m - 1) + 1] = pairs[2 * i + 1];
        } else {
            pairs[2 * m] = pairs[2 * i];
            pairs[2 * m + 1] = pairs[2 * i + 1];
            m++;
        }
    }
    if (!negate && m == 1 && pairs[0] == pairs[1] && pairs[0] < 128 && ps->ascii_cls[pairs[0]] >= 0)
        return ps->ascii_cls[pairs[0]];
    if (ps->n_classes == ps->cap_classes) {
        size_t cap = ps->cap_classes ? 2 * ps->cap_classes : 32;
        struct pclass *c = realloc(ps->classes, cap * sizeof *c);
        if (!c) {
            poom(ps);
            return -1;
        }
        ps->classes = c;
        ps->cap_classes = cap;
    }
    uint32_t off = (uint32_t)(ps->ranges.n / 2), cnt = 0;
    if (!negate) {
        for (size_t i = 0; i < m; i++) {
            if (!u32v_push(&ps->ranges, pairs[2 * i]) || !u32v_push(&ps->ranges, pairs[2 * i + 1])) {
                poom(ps);
                return -1;
            }
            cnt++;
        }
    } else {
        uint32_t next = 0;
        for (size_t i = 0; i <= m; i++) {
            uint32_t lo = i < m ? pairs[2 * i] : GRAM_MAX_CP + 1;
            if (lo > next) {
                if (!u32v_push(&ps->ranges, next) || !u32v_push(&ps->ranges, lo - 1)) {
                    poom(ps);
                    return -1;
                }
                cnt++;
            }
            if (i < m) next = pairs[2 * i + 1] + 1;
        }
    }
    ps->classes[ps->n_classes].off = off;
    ps->classes[ps->n_classes].n = cnt;
    int32_t id = (int32_t)ps->n_classes++;
    if (!negate && m == 1 && pairs[0] == pairs[1] && pairs[0] < 128) ps->ascii_cls[pairs[0]] = id;
    return id;
}

static int32_t char_class(parser *ps, uint32_t cp) {
    uint32_t pr[2] = {cp, cp};
    return add_class(ps, pr, 1, false);
}

/* ---- lexing ------------------------------------------------------------------------------ */

static bool is_word(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* Skips blanks and comments; newlines too when nl is set. */
static void skip_space(parser *ps, bool nl) {
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == ' ' || c == '\t') {
            ps->p++;
        } else if (c == '#') {
            while (ps->p < ps->end && *ps->p != '\n') ps->p++;
        } else if (nl && (c == '\n' || c == '\r')) {
            ps->p++;
        } else {
            break;
        }
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads one (possibly escaped) character of a literal or class. */
static bool read_char(parser *ps, uint32_t *cp) {
    const char *at = ps->p;
    if (ps->p >= ps->end) {
        perr(ps, at, "unexpected end of input");
        return false;
    }
    if (*ps->p == '\\') {
        ps->p++;
        if (ps->p >= ps->end) {
            perr(ps, at, "unexpected end of input after '\\'");
            return false;
        }
        char c = *ps->p++;
        int nd = 0;
        switch (c) {
        case 'n': *cp = '\n'; return true;
        case 'r': *cp = '\r'; return true;
        case 't': *cp = '\t'; return true;
        case '\\': case '"': case '[': case ']': case '-': case '^': *cp = (uint8_t)c; return true;
        case 'x': nd = 2; break;
        case 'u': nd = 4; break;
        case 'U': nd = 8; break;
        default:
            perr(ps, at, "bad escape '\\%c'", c >= 0x20 && c < 0x7f ? c : '?');
            return false;
        }
        uint32_t v = 0;
        for (int i = 0; i < nd; i++) {
            int h = ps->p < ps->end ? hexval(*ps->p) : -1;
            if (h < 0) {
                perr(ps, at, "bad escape: '\\%c' needs %d hex digits", c, nd);
                return false;
            }
            v = v * 16 + (uint32_t)h;
            ps->p++;
        }
        if (v > GRAM_MAX_CP) {
            perr(ps, at, "bad escape: code point U+%X is beyond U+10FFFF", (unsigned)v);
            return false;
        }
        *cp = v;
        return true;
    }
    size_t k = gram_utf8_decode(ps->p, (size_t)(ps->end - ps->p), cp);
    if (!k) {
        perr(ps, at, "invalid UTF-8");
        return false;
    }
    if (*cp == 0) {
        perr(ps, at, "NUL character (write \\x00)");
        return false;
    }
    ps->p += k;
    return true;
}

static int32_t find_rule(parser *ps, const char *name, size_t n) {
    for (size_t i = 0; i < ps->n_rules; i++) {
        const char *rn = ps->rules[i].name;
        if (rn && strlen(rn) == n && memcmp(rn, name, n) == 0) return (int32_t)i;
    }
    return -1;
}

/* Name lookup goes through a small hash table: grammars generated from schemas have
 * thousands of rules. */
typedef struct name_tab {
    uint32_t *slot; /* rule index + 1 */
    size_t cap, used;
} name_tab;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int32_t tab_find(parser *ps, name_tab *t, const char *s, size_t n, bool *full) {
    *full = false;
    if (!t->cap) return find_rule(ps, s, n);
    size_t i = (size_t)hash_bytes(s, n) & (t->cap - 1);
    for (;;) {
        uint32_t v = t->slot[i];
        if (!v) return -1;
        const char *rn = ps->rules[v - 1].name;
        if (strlen(rn) == n && memcmp(rn, s, n) == 0) return (int32_t)(v - 1);
        i = (i + 1) & (t->cap - 1);
    }
}

static bool tab_add(name_tab *t, parser *ps, uint32_t ri) {
    size_t used = ++t->used;
    if (2 * used + 2 > t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        while (cap < 4 * used + 4) cap *= 2;
        uint32_t *s = calloc(cap, sizeof *s);
        if (!s) return false;
        free(t->slot);
        t->slot = s;
        t->cap = cap;
        for (size_t i = 0; i < ps->n_rules; i++) {
            if (!ps->rules[i].name || i == ri) continue;
            size_t j = (size_t)hash_bytes(ps->rules[i].name, strlen(ps->rules[i].name)) & (cap - 1);
            while (s[j]) j = (j + 1) & (cap - 1);
            s[j] = (uint32_t)i + 1;
        }
    }
    const char *nm = ps->rules[ri].name;
    size_t j = (size_t)hash_bytes(nm, strlen(nm)) & (t->cap - 1);
    while (t->slot[j]) j = (j + 1) & (t->cap - 1);
    t->slot[j] = ri + 1;
    return true;
}

/* Rule index for name (creating an undefined placeholder on first sight). */
static int32_t rule_by_name(parser *ps, name_tab *t, const char *s, size_t n, const char *at) {
    bool full;
    int32_t ri = tab_find(ps, t, s, n, &full);
    if (ri >= 0) return ri;
    char *nm = malloc(n + 1);
    if (!nm) {
        poom(ps);
        return -1;
    }
    memcpy(nm, s, n);
    nm[n] = 0;
    ri = new_rule(ps, nm, 0);
    if (ri < 0) return -1;
    ps->rules[ri].parent = (uint32_t)ri;
    ps->rules[ri].ref_at = (size_t)(at - ps->src);
    if (!tab_add(t, ps, (uint32_t)ri)) {
        poom(ps);
        return -1;
    }
    return ri;
}

/* ---- expressions ------------------------------------------------------------------------- */

static bool parse_alternates(parser *ps, name_tab *t, uint32_t ri, bool nested, int depth);

/* Moves elements alt[from..] of (ri, ai) into a fresh helper rule; returns the rule index. */
static int32_t wrap_tail(parser *ps, uint32_t ri, int32_t ai, size_t from) {
    int32_t hr = new_rule(ps, NULL, ps->rules[ri].parent);
    if (hr < 0) return -1;
    int32_t ha = new_alt(ps, (uint32_t)hr);
    if (ha < 0) return -1;
    u32v *src = &ps->rules[ri].alts[ai];
    for (size_t i = from; i < src->n; i++) {
        if (!u32v_push(&ps->rules[hr].alts[ha], src->v[i])) {
            poom(ps);
            return -1;
        }
    }
    ps->rules[ri].alts[ai].n = from;
    return hr;
}

/* Lowers atom = alt[from..] repeated {mn, mx} (mx = UINT32_MAX: unbounded). */
static bool repeat(parser *ps, uint32_t ri, int32_t ai, size_t from, uint32_t mn, uint32_t mx,
                   const char *at) {
    u32v *alt = &ps->rules[ri].alts[ai];
    if (alt->n == from) return true; /* repeating nothing */
    if (mn > GRAM_REPEAT_MAX || (mx != UINT32_MAX && mx > GRAM_REPEAT_MAX)) {
        perr(ps, at, "repetition count too large (at most %d)", GRAM_REPEAT_MAX);
        return false;
    }
    if (mx < mn) {
        perr(ps, at, "repetition {%u,%u}: maximum below minimum", (unsigned)mn, (unsigned)mx);
        return false;
    }
    uint32_t x;
    if (alt->n - from == 1) {
        x = alt->v[from];
        alt->n = from;
    } else {
        int32_t hr = wrap_tail(ps, ri, ai, from);
        if (hr < 0) return false;
        x = GE_MAKE(GE_REF, hr);
    }
    for (uint32_t i = 0; i < mn; i++)
        if (!push_elem(ps, ri, ai, x)) return false;
    if (mx == UINT32_MAX) { /* S ::= x S | "" */
        int32_t s = new_rule(ps, NULL, ps->rules[ri].parent);
        if (s < 0) return false;
        int32_t a0 = new_alt(ps, (uint32_t)s), a1 = new_alt(ps, (uint32_t)s);
        (void)a1;
        if (a0 < 0 || a1 < 0) return false;
        if (!push_elem(ps, (uint32_t)s, a0, x) || !push_elem(ps, (uint32_t)s, a0, GE_MAKE(GE_REF, s)))
            return false;
        return push_elem(ps, ri, ai, GE_MAKE(GE_REF, s));
    }
    /* O_1 ::= x | "" ; O_k ::= x O_{k-1} | "" */
    int32_t prev = -1;
    for (uint32_t k = 0; k < mx - mn; k++) {
        int32_t o = new_rule(ps, NULL, ps->rules[ri].parent);
        if (o < 0) return false;
        int32_t a0 = new_alt(ps, (uint32_t)o), a1 = new_alt(ps, (uint32_t)o);
        if (a0 < 0 || a1 < 0) return false;
        if (!push_elem(ps, (uint32_t)o, a0, x)) return false;
        if (prev >= 0 && !push_elem(ps, (uint32_t)o, a0, GE_MAKE(GE_REF, prev))) return false;
        prev = o;
    }
    if (prev >= 0) return push_elem(ps, ri, ai, GE_MAKE(GE_REF, prev));
    return true;
}

static bool parse_uint(parser *ps, uint32_t *v) {
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return false;
    uint64_t x = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        x = x * 10 + (uint64_t)(*ps->p - '0');
        if (x > 100000000) x = 100000000;
        ps->p++;
    }
    *v = (uint32_t)x;
    return true;
}

static bool parse_class(parser *ps, uint32_t ri, int32_t ai) {
    const char *at = ps->p;
    ps->p++; /* [ */
    bool neg = false;
    if (ps->p < ps->end && *ps->p == '^') {
        neg = true;
        ps->p++;
    }
    u32v pr = {0};
    while (ps->p < ps->end && *ps->p != ']') {
        uint32_t lo, hi;
        if (!read_char(ps, &lo)) goto fail;
        hi = lo;
        if (ps->p + 1 < ps->end && *ps->p == '-' && ps->p[1] != ']') {
            ps->p++;
            const char *rat = ps->p;
            if (!read_char(ps, &hi)) goto fail;
            if (hi < lo) {
                perr(ps, rat, "class range end below its start");
                goto fail;
            }
        }
        if (!u32v_push(&pr, lo) || !u32v_push(&pr, hi)) {
            poom(ps);
            goto fail;
        }
    }
    if (ps->p >= ps->end) {
        perr(ps, at, "unterminated character class (missing ']')");
        goto fail;
    }
    ps->p++;
    int32_t c = add_class(ps, pr.v, pr.n / 2, neg);
    free(pr.v);
    return c >= 0 && push_elem(ps, ri, ai, GE_MAKE(GE_CHAR, c));
fail:
    free(pr.v);
    return false;
}

static bool parse_sequence(parser *ps, name_tab *t, uint32_t ri, int32_t ai, bool nested, int depth) {
    size_t last = (size_t)-1; /* start of the last atom in the alternative */
    for (;;) {
        skip_space(ps, nested);
        if (ps->p >= ps->end || ps->failed) return !ps->failed;
        char c = *ps->p;
        const char *at = ps->p;
        size_t start = ps->rules[ri].alts[ai].n;
        if (c == '"') {
            ps->p++;
            while (ps->p < ps->end && *ps->p != '"') {
                if (*ps->p == '\n') break;
                uint32_t cp;
                if (!read_char(ps, &cp)) return false;
                int32_t cl = char_class(ps, cp);
                if (cl < 0 || !push_elem(ps, ri, ai, GE_MAKE(GE_CHAR, cl))) return false;
            }
            if (ps->p >= ps->end || *ps->p != '"') {
                perr(ps, at, "unterminated string literal");
                return false;
            }
            ps->p++;
            last = start;
        } else if (c == '[') {
            if (!parse_class(ps, ri, ai)) return false;
            last = start;
        } else if (c == '.') {
            ps->p++;
            uint32_t pr[2] = {0, GRAM_MAX_CP};
            int32_t cl = add_class(ps, pr, 1, false);
            if (cl < 0 || !push_elem(ps, ri, ai, GE_MAKE(GE_CHAR, cl))) return false;
            last = start;
        } else if (c == '(') {
            if (depth > 200) {
                perr(ps, at, "parentheses nested too deeply");
                return false;
            }
            ps->p++;
            int32_t hr = new_rule(ps, NULL, ps->rules[ri].parent);
            if (hr < 0) return false;
            if (!parse_alternates(ps, t, (uint32_t)hr, true, depth + 1)) return false;
            skip_space(ps, true);
            if (ps->p >= ps->end || *ps->p != ')') {
                perr(ps, at, "unbalanced parentheses: '(' without ')'");
                return false;
            }
            ps->p++;
            if (!push_elem(ps, ri, ai, GE_MAKE(GE_REF, hr))) return false;
            last = start;
        } else if (is_word(c)) {
            const char *s = ps->p;
            while (ps->p < ps->end && is_word(*ps->p)) ps->p++;
            /* a name followed by ::= starts the next rule */
            const char *q = ps->p;
            while (q < ps->end && (*q == ' ' || *q == '\t')) q++;
            if (!nested && q + 3 <= ps->end && memcmp(q, "::=", 3) == 0) {
                ps->p = s;
                return true;
            }
            int32_t r = rule_by_name(ps, t, s, (size_t)(ps->p - s), s);
            if (r < 0 || !push_elem(ps, ri, ai, GE_MAKE(GE_REF, r))) return false;
            last = start;
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (last == (size_t)-1) {
                perr(ps, at, "'%c' without a symbol before it", c);
                return false;
            }
            uint32_t mn = 0, mx = UINT32_MAX;
            ps->p++;
            if (c == '+') mn = 1;
            else if (c == '?') mx = 1;
            else if (c == '{') {
                skip_space(ps, false);
                if (!parse_uint(ps, &mn)) {
                    perr(ps, at, "expected a number after '{'");
                    return false;
                }
                skip_space(ps, false);
                if (ps->p < ps->end && *ps->p == ',') {
                    ps->p++;
                    skip_space(ps, false);
                    if (ps->p < ps->end && *ps->p != '}' && !parse_uint(ps, &mx)) {
                        perr(ps, at, "expected a number or '}' in repetition");
                        return false;
                    }
                } else {
                    mx = mn;
                }
                skip_space(ps, false);
                if (ps->p >= ps->end || *ps->p != '}') {
                    perr(ps, at, "expected '}' to close the repetition");
                    return false;
                }
                ps->p++;
            }
            if (!repeat(ps, ri, ai, last, mn, mx, at)) return false;
            last = (size_t)-1; /* x** is an error, as in llama.cpp */
        } else {
            return true; /* '|', ')', newline, or junk the caller reports */
        }
    }
}

static bool parse_alternates(parser *ps, name_tab *t, uint32_t ri, bool nested, int depth) {
    for (;;) {
        int32_t ai = new_alt(ps, ri);
        if (ai < 0) return false;
        if (!parse_sequence(ps, t, ri, ai, nested, depth)) return false;
        skip_space(ps, nested);
        if (ps->p < ps->end && *ps->p == '|') {
            ps->p++;
            skip_space(ps, true);
            continue;
        }
        return true;
    }
}

static bool parse_grammar(parser *ps, name_tab *t) {
    bool any = false;
    for (;;) {
        skip_space(ps, true);
        if (ps->p >= ps->end) break;
        const char *at = ps->p;
        if (!is_word(*ps->p)) {
            if (*ps->p == ')') perr(ps, at, "unbalanced parentheses: ')' without '('");
            else perr(ps, at, "expected a rule name");
            return false;
        }
        const char *s = ps->p;
        while (ps->p < ps->end && is_word(*ps->p)) ps->p++;
        size_t n = (size_t)(ps->p - s);
        skip_space(ps, false);
        if (ps->end - ps->p < 3 || memcmp(ps->p, "::=", 3) != 0) {
            perr(ps, ps->p, "expected '::=' after rule name '%.*s'", (int)(n > 60 ? 60 : n), s);
            return false;
        }
        ps->p += 3;
        int32_t ri = rule_by_name(ps, t, s, n, s);
        if (ri < 0) return false;
        if (ps->rules[ri].defined) {
            perr(ps, at, "rule '%.*s' defined twice", (int)(n > 60 ? 60 : n), s);
            return false;
        }
        ps->rules[ri].defined = true;
        skip_space(ps, true);
        if (!parse_alternates(ps, t, (uint32_t)ri, false, 0)) return false;
        skip_space(ps, false);
        if (ps->p < ps->end && *ps->p != '\n' && *ps->p != '\r') {
            if (*ps->p == ')') perr(ps, ps->p, "unbalanced parentheses: ')' without '('");
            else perr(ps, ps->p, "unexpected '%c'", (uint8_t)*ps->p >= 0x20 && (uint8_t)*ps->p < 0x7f ? *ps->p : '?');
            return false;
        }
        any = true;
    }
    if (!any) {
        perr(ps, ps->p, "empty grammar (no rules)");
        return false;
    }
    return true;
}

/* ---- checks ------------------------------------------------------------------------------ */

/* No rule may reach itself without consuming a character: otherwise expansion would not
 * terminate. Returns the offending rule or -1. */
static int32_t find_left_recursion(const parser *ps) {
    size_t n = ps->n_rules;
    bool *nullable = calloc(n, 1);
    uint8_t *color = calloc(n, 1);
    uint32_t *stk = malloc(n * 2 * sizeof *stk + 2 * sizeof *stk);
    int32_t bad = -2;
    if (!nullable || !color || !stk) goto out;
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t r = 0; r < n; r++) {
            if (nullable[r]) continue;
            for (size_t a = 0; a < ps->rules[r].n_alts && !nullable[r]; a++) {
                const u32v *al = &ps->rules[r].alts[a];
                bool all = true;
                for (size_t i = 0; i < al->n && all; i++)
                    all = GE_KIND(al->v[i]) == GE_REF && nullable[GE_ARG(al->v[i])];
                if (all) nullable[r] = changed = true;
            }
        }
    }
    bad = -1;
    /* iterative DFS over "r may begin with s" edges; stack holds (rule, next edge index) */
    for (size_t root = 0; root < n && bad < 0; root++) {
        if (color[root]) continue;
        size_t sp = 0;
        stk[sp++] = (uint32_t)root;
        stk[sp++] = 0;
        color[root] = 1;
        while (sp && bad < 0) {
            uint32_t r = stk[sp - 2], k = stk[sp - 1];
            /* enumerate edges: flatten (alt, index) into k */
            uint32_t cnt = 0, next = UINT32_MAX;
            for (size_t a = 0; a < ps->rules[r].n_alts && next == UINT32_MAX; a++) {
                const u32v *al = &ps->rules[r].alts[a];
                for (size_t i = 0; i < al->n; i++) {
                    if (GE_KIND(al->v[i]) != GE_REF) break;
                    if (cnt++ == k) {
                        next = GE_ARG(al->v[i]);
                        break;
                    }
                    if (!nullable[GE_ARG(al->v[i])]) break;
                }
            }
            if (next == UINT32_MAX) {
                color[r] = 2;
                sp -= 2;
                continue;
            }
            stk[sp - 1] = k + 1;
            if (color[next] == 1) bad = (int32_t)next;
            else if (color[next] == 0) {
                color[next] = 1;
                stk[sp++] = next;
                stk[sp++] = 0;
            }
        }
    }
out:
    free(nullable);
    free(color);
    free(stk);
    return bad;
}

/* ---- assembly ---------------------------------------------------------------------------- */

static void free_parser(parser *ps) {
    for (size_t i = 0; i < ps->n_rules; i++) {
        for (size_t a = 0; a < ps->rules[i].n_alts; a++) free(ps->rules[i].alts[a].v);
        free(ps->rules[i].alts);
        free(ps->rules[i].name);
    }
    free(ps->rules);
    free(ps->ranges.v);
    free(ps->classes);
}

void gram_free(gram *g) {
    if (!g) return;
    gram_cache_free(g->cache);
    free(g->elems);
    free(g->alts);
    free(g->rules);
    free(g->classes);
    free(g->ranges);
    free(g->names);
    free(g);
}

/* Names helper rules "<user rule>-<k>", skipping names that are taken. */
static bool name_helpers(parser *ps, name_tab *t) {
    uint32_t *counter = calloc(ps->n_rules, sizeof *counter);
    if (!counter) return false;
    for (size_t i = 0; i < ps->n_rules; i++) {
        if (ps->rules[i].name) continue;
        const char *base = ps->rules[ps->rules[i].parent].name;
        size_t bl = strlen(base);
        char *nm = malloc(bl + 16);
        if (!nm) {
            free(counter);
            return false;
        }
        for (;;) {
            snprintf(nm, bl + 16, "%s-%u", base, (unsigned)++counter[ps->rules[i].parent]);
            bool full;
            if (tab_find(ps, t, nm, strlen(nm), &full) < 0) break;
        }
        ps->rules[i].name = nm;
        if (!tab_add(t, ps, (uint32_t)i)) {
            free(counter);
            return false;
        }
    }
    free(counter);
    return true;
}

gram *gram_compile(const char *text, size_t len, const char *what, sh_err *err) {
    parser ps;
    memset(&ps, 0, sizeof ps);
    ps.src = ps.p = text ? text : "";
    ps.end = ps.src + (text ? len : 0);
    ps.what = what;
    ps.err = err;
    for (int i = 0; i < 128; i++) ps.ascii_cls[i] = -1;
    name_tab t = {0};
    gram *g = NULL;
    if (!parse_grammar(&ps, &t)) goto fail;
    for (size_t i = 0; i < ps.n_rules; i++) {
        if (ps.rules[i].name && !ps.rules[i].defined) {
            perr(&ps, ps.src + ps.rules[i].ref_at, "undefined rule '%s'", ps.rules[i].name);
            goto fail;
        }
    }
    bool full;
    int32_t root = tab_find(&ps, &t, "root", 4, &full);
    if (root < 0) {
        sh_errf(err, "%s: no rule named 'root' (the start rule)", what);
        goto fail;
    }
    if (!name_helpers(&ps, &t)) {
        poom(&ps);
        goto fail;
    }
    int32_t lr = find_left_recursion(&ps);
    if (lr == -2) {
        poom(&ps);
        goto fail;
    }
    if (lr >= 0) {
        uint32_t user = ps.rules[lr].parent;
        size_t at = ps.rules[user].ref_at;
        perr(&ps, ps.src + (at == (size_t)-1 ? 0 : at),
             "rule '%s' can reach itself without consuming input (left recursion or an empty "
             "repetition) — rewrite it", ps.rules[user].name);
        goto fail;
    }
    g = calloc(1, sizeof *g);
    if (!g) goto oom;
    size_t n_alts = 0, n_elems = 0, n_names = 0;
    for (size_t i = 0; i < ps.n_rules; i++) {
        n_alts += ps.rules[i].n_alts;
        for (size_t a = 0; a < ps.rules[i].n_alts; a++) n_elems += ps.rules[i].alts[a].n + 1;
        n_names += strlen(ps.rules[i].name) + 1;
    }
    g->elems = malloc((n_elems + 1) * sizeof *g->elems);
    g->alts = malloc((n_alts + 1) * sizeof *g->alts);
    g->rules = malloc(ps.n_rules * sizeof *g->rules);
    g->classes = malloc((ps.n_classes + 1) * sizeof *g->classes);
    g->ranges = malloc((ps.ranges.n + 2) * sizeof *g->ranges);
    g->names = malloc(n_names + 1);
    g->cache = gram_cache_new();
    if (!g->elems || !g->alts || !g->rules || !g->classes || !g->ranges || !g->names || !g->cache)
        goto oom;
    size_t e = 0, al = 0, nm = 0;
    for (size_t i = 0; i < ps.n_rules; i++) {
        const prule *r = &ps.rules[i];
        g->rules[i].alt = (uint32_t)al;
        g->rules[i].n_alt = (uint32_t)r->n_alts;
        g->rules[i].name = (uint32_t)nm;
        size_t l = strlen(r->name) + 1;
        memcpy(g->names + nm, r->name, l);
        nm += l;
        for (size_t a = 0; a < r->n_alts; a++) {
            g->alts[al++] = (uint32_t)e;
            if (r->alts[a].n) memcpy(g->elems + e, r->alts[a].v, r->alts[a].n * sizeof(uint32_t));
            e += r->alts[a].n;
            g->elems[e++] = GE_MAKE(GE_END, 0);
        }
    }
    g->n_elems = e;
    g->n_alts = al;
    g->n_rules = ps.n_rules;
    g->n_names = nm;
    g->n_classes = ps.n_classes;
    g->n_ranges = ps.ranges.n / 2;
    if (ps.ranges.n) memcpy(g->ranges, ps.ranges.v, ps.ranges.n * sizeof(uint32_t));
    for (size_t c = 0; c < ps.n_classes; c++) {
        gram_class *gc = &g->classes[c];
        gc->off = ps.classes[c].off;
        gc->n = ps.classes[c].n;
        memset(gc->ascii, 0, sizeof gc->ascii);
        for (uint32_t k = 0; k < gc->n; k++) {
            uint32_t lo = g->ranges[2 * (gc->off + k)], hi = g->ranges[2 * (gc->off + k) + 1];
            for (uint32_t cp = lo; cp <= hi && cp < 128; cp++) gc->ascii[cp >> 5] |= 1u << (cp & 31);
        }
    }
    g->root = (uint32_t)root;
    free(t.slot);
    free_parser(&ps);
    return g;
oom:
    poom(&ps);
fail:
    gram_free(g);
    free(t.slot);
    free_parser(&ps);
    return NULL;
}

gram *gram_from_gbnf(const char *text, size_t len, sh_err *err) {
    return gram_compile(text, len, "gbnf", err);
}

size_t gram_n_rules(const gram *g) { return g ? g->n_rules : 0; }

/* ---- printing ---------------------------------------------------------------------------- */

static void put_class(gram_sb *b, const gram *g, uint32_t cls) {
    const gram_class *c = &g->classes[cls];
    const uint32_t *r = g->ranges + 2 * (size_t)c->off;
    /* write the complement when that is shorter (it is for [^"\\] and friends) */
    bool neg = c->n > 0 && r[0] == 0 && r[2 * (c->n - 1) + 1] == GRAM_MAX_CP;
    if (c->n == 1 && r[0] == 0 && r[1] == GRAM_MAX_CP) {
        strbuf_puts(b, ".");
        return;
    }
    strbuf_puts(b, neg ? "[^" : "[");
    if (!neg) {
        for (uint32_t i = 0; i < c->n; i++) {
            gram_sb_cp(b, r[2 * i], true);
            if (r[2 * i + 1] != r[2 * i]) {
                strbuf_puts(b, "-");
                gram_sb_cp(b, r[2 * i + 1], true);
            }
        }
    } else {
        for (uint32_t i = 0; i + 1 < c->n; i++) {
            uint32_t lo = r[2 * i + 1] + 1, hi = r[2 * (i + 1)] - 1;
            gram_sb_cp(b, lo, true);
            if (hi != lo) {
                strbuf_puts(b, "-");
                gram_sb_cp(b, hi, true);
            }
        }
    }
    strbuf_puts(b, "]");
}

static bool single_char(const gram *g, uint32_t e, uint32_t *cp) {
    if (GE_KIND(e) != GE_CHAR) return false;
    const gram_class *c = &g->classes[GE_ARG(e)];
    const uint32_t *r = g->ranges + 2 * (size_t)c->off;
    if (c->n != 1 || r[0] != r[1]) return false;
    *cp = r[0];
    return true;
}

char *gram_to_gbnf(const gram *g) {
    if (!g) return NULL;
    gram_sb b = {0};
    for (size_t ri = 0; ri < g->n_rules; ri++) {
        const gram_rule *r = &g->rules[ri];
        strbuf_printf(&b, "%s ::=", g->names + r->name);
        for (uint32_t a = 0; a < r->n_alt; a++) {
            if (a) strbuf_puts(&b, " |");
            uint32_t pos = g->alts[r->alt + a];
            if (GE_KIND(g->elems[pos]) == GE_END) strbuf_puts(&b, " \"\"");
            while (GE_KIND(g->elems[pos]) != GE_END) {
                uint32_t e = g->elems[pos], cp;
                strbuf_puts(&b, " ");
                if (single_char(g, e, &cp)) {
                    strbuf_puts(&b, "\"");
                    while (single_char(g, g->elems[pos], &cp)) {
                        gram_sb_cp(&b, cp, false);
                        pos++;
                    }
                    strbuf_puts(&b, "\"");
                    continue;
                }
                if (GE_KIND(e) == GE_CHAR) put_class(&b, g, GE_ARG(e));
                else strbuf_puts(&b, g->names + g->rules[GE_ARG(e)].name);
                pos++;
            }
        }
        strbuf_puts(&b, "\n");
    }
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    if (!b.s) return calloc(1, 1);
    return b.s;
}
