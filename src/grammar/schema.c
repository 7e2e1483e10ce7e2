/*
 * grammar/schema — JSON Schema to GBNF text, then compiled by gbnf.c. Also the fixed JSON
 * grammars (any object, any value).
 *
 * Every schema node becomes one rule. Objects list their properties in schema order, required
 * ones always and optional ones possibly omitted (a chain of helper rules keeps the commas
 * right); additionalProperties defaults to false when "properties" is given (only the listed
 * properties may appear, what structured-output clients mean) and to true otherwise. Integer
 * bounds become exact digit-range rules; number bounds must be integral (then also exact).
 * $ref to #/$defs/NAME or #/definitions/NAME becomes a rule reference, so recursion works.
 * Unsupported keywords and values are refused with their JSON path.
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/gram_int.h"

#define PATH_MAX_LEN 240
#define GEN_DEPTH    64

typedef struct refmap {
    char *ref;
    char name[48];
} refmap;

typedef struct gen {
    gram_sb out;
    json_t *root;
    sh_err *err;
    bool failed;
    unsigned counter;
    refmap *refs;
    size_t n_refs, cap_refs;
    bool need_any;
    int depth;
} gen;

static int gfail(gen *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int gfail(gen *s, const char *fmt, ...) {
    if (s->failed) return -1;
    s->failed = true;
    if (s->err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->err->msg, sizeof s->err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static const char *pshow(const char *path) { return *path ? path : "(root)"; }

static void path_join(char *dst, const char *path, const char *seg) {
    if (*path) snprintf(dst, PATH_MAX_LEN, "%.*s.%.*s", 160, path, 70, seg);
    else snprintf(dst, PATH_MAX_LEN, "%.*s", 200, seg);
}

static void path_index(char *dst, const char *path, const char *kw, size_t i) {
    if (*path) snprintf(dst, PATH_MAX_LEN, "%.*s.%s[%zu]", 160, path, kw, i);
    else snprintf(dst, PATH_MAX_LEN, "%s[%zu]", kw, i);
}

/* A fresh rule name derived from hint (letters, digits, '-'). */
static void new_name(gen *s, const char *hint, char name[48]) {
    char h[24];
    size_t n = 0;
    for (const char *p = hint; *p && n < sizeof h - 1; p++) {
        char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) h[n++] = c;
        else if (n && h[n - 1] != '-') h[n++] = '-';
    }
    while (n && h[n - 1] == '-') n--;
    h[n] = 0;
    /* "s<k>-hint": never equal to a fixed rule name (ws, char, value-0, ...) */
    if (n) snprintf(name, 48, "s%u-%s", ++s->counter, h);
    else snprintf(name, 48, "s%u", ++s->counter);
}

/* last segment of a path, for rule names */
static const char *hint_of(const char *path) {
    const char *d = strrchr(path, '.');
    return d ? d + 1 : path;
}

static void rule_begin(gen *s, const char *name) { strbuf_printf(&s->out, "%s ::=", name); }
static void rule_end(gen *s) { strbuf_puts(&s->out, "\n"); }

/* Appends the JSON text of v (compact) as a GBNF literal. */
static int put_json_lit(gen *s, json_t *v) {
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!t) return gfail(s, "JSON Schema: out of memory");
    strbuf_puts(&s->out, " ");
    gram_sb_lit(&s->out, t, strlen(t));
    free(t);
    return 0;
}

static int gen_schema(gen *s, json_t *node, const char *path, const char *name);

/* ---- keyword checks ---------------------------------------------------------------------- */

static const char *const known_kw[] = {
    "type", "properties", "required", "additionalProperties", "enum", "const", "items",
    "prefixItems", "minItems", "maxItems", "minLength", "maxLength", "pattern", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "allOf",
    "$ref", "$defs", "definitions",
    /* annotations */
    "title", "description", "default", "examples", "$schema", "$id", "$comment",
    NULL,
};

static bool is_annotation(const char *k) {
    static const char *const ann[] = {"title", "description", "default", "examples", "$schema",
                                      "$id", "$comment", "$defs", "definitions", NULL};
    for (int i = 0; ann[i]; i++)
        if (!strcmp(k, ann[i])) return true;
    return false;
}

static int check_keywords(gen *s, json_t *node, const char *path) {
    const char *k;
    json_t *v;
    json_object_foreach(node, k, v) {
        bool ok = false;
        for (int i = 0; known_kw[i] && !ok; i++) ok = !strcmp(k, known_kw[i]);
        if (!ok) return gfail(s, "unsupported JSON Schema keyword '%.60s' at %s", k, pshow(path));
    }
    return 0;
}

/* Non-negative integer keyword, or -1 when absent. */
static int64_t get_count(gen *s, json_t *node, const char *kw, const char *path) {
    json_t *v = json_object_get(node, kw);
    if (!v) return -1;
    double d;
    if (json_is_integer(v)) d = (double)json_integer_value(v);
    else if (json_is_real(v)) d = json_real_value(v);
    else {
        gfail(s, "'%s' must be a non-negative integer at %s", kw, pshow(path));
        return -2;
    }
    if (d < 0 || d != floor(d)) {
        gfail(s, "'%s' must be a non-negative integer at %s", kw, pshow(path));
        return -2;
    }
    if (d > GRAM_REPEAT_MAX) {
        gfail(s, "unsupported value of '%s' at %s: %.0f is above the supported %d", kw, pshow(path), d,
              GRAM_REPEAT_MAX);
        return -2;
    }
    return (int64_t)d;
}

/* ---- integers and numbers ---------------------------------------------------------------- */

static void digits(uint64_t v, char *buf) { snprintf(buf, 24, "%llu", (unsigned long long)v); }

/* Same-length decimal strings a <= b (no sign): the strings in [a, b]. */
static void same_len(gram_sb *o, const char *a, const char *b, size_t L) {
    if (L == 0) {
        strbuf_puts(o, " \"\"");
        return;
    }
    if (!memcmp(a, b, L)) {
        strbuf_puts(o, " ");
        gram_sb_lit(o, a, L);
        return;
    }
    if (a[0] == b[0]) {
        strbuf_printf(o, " \"%c\" (", a[0]);
        same_len(o, a + 1, b + 1, L - 1);
        strbuf_puts(o, " )");
        return;
    }
    bool lo_full = true, hi_full = true;
    for (size_t i = 1; i < L; i++) {
        lo_full &= a[i] == '0';
        hi_full &= b[i] == '9';
    }
    char nines[24], zeros[24];
    memset(nines, '9', L);
    memset(zeros, '0', L);
    int alts = 0;
    strbuf_puts(o, " (");
    if (!lo_full) {
        strbuf_printf(o, " \"%c\" (", a[0]);
        same_len(o, a + 1, nines, L - 1);
        strbuf_puts(o, " )");
        alts++;
    }
    char s0 = lo_full ? a[0] : (char)(a[0] + 1), e0 = hi_full ? b[0] : (char)(b[0] - 1);
    if (s0 <= e0) {
        if (alts++) strbuf_puts(o, " |");
        strbuf_printf(o, " [%c-%c]", s0, e0);
        if (L > 1) strbuf_printf(o, " [0-9]{%zu}", L - 1);
    }
    if (!hi_full) {
        if (alts++) strbuf_puts(o, " |");
        strbuf_printf(o, " \"%c\" (", b[0]);
        same_len(o, zeros, b + 1, L - 1);
        strbuf_puts(o, " )");
    }
    strbuf_puts(o, " )");
}

/* Decimal numerals (no sign, no leading zeros) of the integers in [a, b]; b = UINT64_MAX
 * means unbounded. */
static void uint_range(gram_sb *o, uint64_t a, uint64_t b) {
    char A[24], B[24], t[24];
    digits(a, A);
    size_t la = strlen(A);
    strbuf_puts(o, " (");
    if (b == UINT64_MAX) {
        memset(t, '9', la);
        same_len(o, A, t, la);
        if (la <= 17) strbuf_printf(o, " | [1-9] [0-9]{%zu,17}", la);
        strbuf_puts(o, " )");
        return;
    }
    digits(b, B);
    size_t lb = strlen(B);
    if (la == lb) {
        same_len(o, A, B, la);
    } else {
        memset(t, '9', la);
        same_len(o, A, t, la);
        for (size_t L = la + 1; L < lb; L++) strbuf_printf(o, " | [1-9] [0-9]{%zu}", L - 1);
        t[0] = '1';
        memset(t + 1, '0', lb - 1);
        strbuf_puts(o, " |");
        same_len(o, t, B, lb);
    }
    strbuf_puts(o, " )");
}

enum frac { F_NONE, F_ANY, F_ZERO, F_NONZERO };

static enum frac frac_and(enum frac x, enum frac y) {
    if (x == F_NONE || y == F_NONE) return F_NONE;
    if (x == F_ANY) return y;
    if (y == F_ANY || x == y) return x;
    return F_NONE; /* zero and nonzero */
}

static void put_frac(gram_sb *o, enum frac f) {
    if (f == F_ANY) strbuf_puts(o, " (\".\" [0-9]{1,20})?");
    else if (f == F_ZERO) strbuf_puts(o, " (\".\" \"0\"{1,20})?");
    else if (f == F_NONZERO) strbuf_puts(o, " \".\" [0-9]{0,19} [1-9] [0-9]{0,19}");
}

/* Magnitudes m = I.F with A (<=, or < when !ai) m (<=, or < when !bi) B, B = UINT64_MAX
 * unbounded; integral: no fraction part. Appends alternatives; returns their count. */
static int mag_range(gram_sb *o, uint64_t A, bool ai, uint64_t B, bool bi, bool integral, int alts) {
    enum frac lowf = ai ? F_ANY : F_NONZERO, highf = bi ? F_ZERO : F_NONE;
    if (integral) {
        lowf = ai ? F_ZERO : F_NONE;
    }
    if (B != UINT64_MAX && A > B) return alts;
    if (B != UINT64_MAX && A == B) {
        enum frac f = frac_and(lowf, highf);
        if (integral && f == F_NONZERO) f = F_NONE;
        if (f == F_NONE) return alts;
        if (alts++) strbuf_puts(o, " |");
        uint_range(o, A, A);
        if (!integral) put_frac(o, f);
        return alts;
    }
    if (lowf != F_NONE) {
        if (alts++) strbuf_puts(o, " |");
        uint_range(o, A, A);
        if (!integral) put_frac(o, lowf);
    }
    if (B == UINT64_MAX || A + 1 <= B - 1) {
        if (alts++) strbuf_puts(o, " |");
        uint_range(o, A + 1, B == UINT64_MAX ? UINT64_MAX : B - 1);
        if (!integral) put_frac(o, F_ANY);
    }
    if (B != UINT64_MAX && highf != F_NONE) {
        if (alts++) strbuf_puts(o, " |");
        uint_range(o, B, B);
        if (!integral) put_frac(o, highf);
    }
    return alts;
}

typedef struct bound {
    bool set, incl;
    double v;
} bound;

#define BOUND_MAX 9.0e15

static int read_bounds(gen *s, json_t *node, const char *path, bool integral, bound *lo, bound *hi) {
    const char *kws[4] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
    memset(lo, 0, sizeof *lo);
    memset(hi, 0, sizeof *hi);
    for (int k = 0; k < 4; k++) {
        json_t *v = json_object_get(node, kws[k]);
        if (!v) continue;
        bound *b = k < 2 ? lo : hi;
        if (json_is_boolean(v)) { /* draft 4: exclusiveMinimum: true modifies minimum */
            if (k == 0 || k == 2) return gfail(s, "'%s' must be a number at %s", kws[k], pshow(path));
            continue;
        }
        if (!json_is_number(v)) return gfail(s, "'%s' must be a number at %s", kws[k], pshow(path));
        double d = json_number_value(v);
        if (!(fabs(d) <= BOUND_MAX))
            return gfail(s, "unsupported value of '%s' at %s: bounds beyond 9e15 are not supported",
                         kws[k], pshow(path));
        bool excl = k == 1 || k == 3;
        if (k == 0 || k == 2) {
            json_t *e = json_object_get(node, k == 0 ? "exclusiveMinimum" : "exclusiveMaximum");
            if (json_is_true(e)) excl = true;
        }
        if (!integral && d != floor(d))
            return gfail(s, "unsupported value of '%s' at %s: only integral bounds are supported for "
                         "type number (got %g)", kws[k], pshow(path), d);
        if (integral) { /* exact: round inwards */
            if (b == lo) {
                double c = excl ? floor(d) + 1 : ceil(d);
                d = c;
            } else {
                double c = excl ? ceil(d) - 1 : floor(d);
                d = c;
            }
            excl = false;
        }
        /* keep the tighter of two bounds on one side */
        bool tighter = !b->set || (b == lo ? (d > b->v || (d == b->v && excl)) : (d < b->v || (d == b->v && excl)));
        if (tighter) {
            b->set = true;
            b->v = d;
            b->incl = !excl;
        }
    }
    return 0;
}

/* A number or integer rule body with bounds lo/hi (exact; no exponent when bounded). */
static int put_bounded(gen *s, const char *path, bool integral, bound lo, bound hi) {
    gram_sb *o = &s->out;
    if (lo.set && hi.set && (lo.v > hi.v || (lo.v == hi.v && !(lo.incl && hi.incl))))
        return gfail(s, "empty range of values (minimum above maximum) at %s", pshow(path));
    int alts = 0;
    strbuf_puts(o, " (");
    /* v >= 0 */
    if (!hi.set || hi.v >= 0) {
        uint64_t A = 0;
        bool ai = true;
        if (lo.set && lo.v >= 0) {
            A = (uint64_t)lo.v;
            ai = lo.incl;
        }
        uint64_t B = hi.set ? (uint64_t)hi.v : UINT64_MAX;
        alts = mag_range(o, A, ai, B, hi.set ? hi.incl : true, integral, alts);
    }
    /* v < 0: m = -v > 0 */
    if (!lo.set || lo.v < 0) {
        uint64_t A = 0;
        bool ai = false;
        if (hi.set && hi.v < 0) {
            A = (uint64_t)(-hi.v);
            ai = hi.incl;
        }
        uint64_t B = lo.set ? (uint64_t)(-lo.v) : UINT64_MAX;
        gram_sb tmp = {0};
        int n = mag_range(&tmp, A, ai, B, lo.set ? lo.incl : true, integral, 0);
        if (n) {
            if (alts++) strbuf_puts(o, " |");
            strbuf_puts(o, " \"-\" (");
            strbuf_put(o, tmp.s, tmp.n);
            strbuf_puts(o, " )");
        }
        if (tmp.oom) o->oom = true;
        free(tmp.s);
    }
    if (!alts) return gfail(s, "empty range of values at %s", pshow(path));
    strbuf_puts(o, " )");
    return 0;
}

/* ---- strings ----------------------------------------------------------------------------- */

static const char *format_rule(const char *f) {
    static const struct {
        const char *name, *body;
    } fm[] = {
        {"date", "fmt-date"},
        {"time", "fmt-time"},
        {"date-time", "fmt-date \"T\" fmt-time"},
        {"uuid", "[0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" "
                 "[0-9a-fA-F]{12}"},
        {"email", "[a-zA-Z0-9._%+\\-]+ \"@\" [a-zA-Z0-9\\-]+ (\".\" [a-zA-Z0-9\\-]+)*"},
        {"ipv4", "fmt-octet \".\" fmt-octet \".\" fmt-octet \".\" fmt-octet"},
        {"hostname", "[a-zA-Z0-9] [a-zA-Z0-9\\-]{0,62} (\".\" [a-zA-Z0-9] [a-zA-Z0-9\\-]{0,62})*"},
    };
    for (size_t i = 0; i < sizeof fm / sizeof fm[0]; i++)
        if (!strcmp(f, fm[i].name)) return fm[i].body;
    return NULL;
}

static int gen_string(gen *s, json_t *node, const char *path) {
    gram_sb *o = &s->out;
    json_t *fmt = json_object_get(node, "format"), *pat = json_object_get(node, "pattern");
    int64_t mn = get_count(s, node, "minLength", path), mx = get_count(s, node, "maxLength", path);
    if (mn == -2 || mx == -2) return -1;
    if ((fmt || pat) && (mn >= 0 || mx >= 0))
        return gfail(s, "unsupported combination at %s: minLength/maxLength together with %s",
                     pshow(path), pat ? "pattern" : "format");
    if (fmt && pat) return gfail(s, "unsupported combination at %s: format together with pattern", pshow(path));
    if (fmt) {
        if (!json_is_string(fmt)) return gfail(s, "'format' must be a string at %s", pshow(path));
        const char *body = format_rule(json_string_value(fmt));
        if (!body)
            return gfail(s, "unsupported value of 'format' at %s: '%.40s' (supported: date, time, "
                         "date-time, uuid, email, ipv4, hostname)", pshow(path), json_string_value(fmt));
        strbuf_printf(o, " \"\\\"\" %s \"\\\"\"", body);
        return 0;
    }
    if (pat) {
        if (!json_is_string(pat)) return gfail(s, "'pattern' must be a string at %s", pshow(path));
        char msg[200];
        strbuf_puts(o, " \"\\\"\" ");
        if (gram_regex_to_gbnf(json_string_value(pat), json_string_length(pat), o, msg, sizeof msg) != 0)
            return gfail(s, "unsupported 'pattern' at %s: %s", pshow(path), msg);
        strbuf_puts(o, " \"\\\"\"");
        return 0;
    }
    if (mx >= 0 && mn > mx) return gfail(s, "minLength above maxLength at %s", pshow(path));
    if (mn < 0) mn = 0;
    if (mx < 0) {
        if (mn == 0) strbuf_puts(o, " string");
        else strbuf_printf(o, " \"\\\"\" char{%lld,} \"\\\"\"", (long long)mn);
    } else {
        strbuf_printf(o, " \"\\\"\" char{%lld,%lld} \"\\\"\"", (long long)mn, (long long)mx);
    }
    return 0;
}

/* ---- objects and arrays ------------------------------------------------------------------ */

static int gen_sub(gen *s, json_t *node, const char *path, char name[48]) {
    new_name(s, hint_of(path), name);
    return gen_schema(s, node, path, name);
}

static int gen_object(gen *s, json_t *node, const char *path, const char *name) {
    json_t *props = json_object_get(node, "properties");
    json_t *req = json_object_get(node, "required");
    json_t *addl = json_object_get(node, "additionalProperties");
    char p2[PATH_MAX_LEN], p3[PATH_MAX_LEN];
    if (props && !json_is_object(props)) return gfail(s, "'properties' must be an object at %s", pshow(path));
    if (req && !json_is_array(req)) return gfail(s, "'required' must be an array of names at %s", pshow(path));
    if (addl && !json_is_boolean(addl) && !json_is_object(addl))
        return gfail(s, "'additionalProperties' must be a boolean or a schema at %s", pshow(path));
    size_t n = props ? json_object_size(props) : 0;
    for (size_t i = 0; req && i < json_array_size(req); i++) {
        json_t *r = json_array_get(req, i);
        if (!json_is_string(r)) return gfail(s, "'required' must be an array of names at %s", pshow(path));
        if (!props || !json_object_get(props, json_string_value(r)))
            return gfail(s, "unsupported 'required' at %s: property '%.60s' is not in 'properties'",
                         pshow(path), json_string_value(r));
    }
    /* the extra member rule, when extra members are allowed */
    char extra[48] = "";
    bool allow_extra = addl ? !json_is_false(addl) : !props;
    if (allow_extra) {
        char val[48];
        if (addl && json_is_object(addl)) {
            path_join(p2, path, "additionalProperties");
            if (gen_sub(s, addl, p2, val)) return -1;
        } else {
            snprintf(val, sizeof val, "value-0");
            s->need_any = true;
        }
        new_name(s, "extra", extra);
        strbuf_printf(&s->out, "%s ::= string ws \":\" ws %s ws\n", extra, val);
    }
    /* one rule per property: "key" ws ":" ws value ws */
    char (*kv)[48] = calloc(n + 1, sizeof *kv);
    bool *required = calloc(n + 1, sizeof *required);
    if (!kv || !required) {
        free(kv);
        free(required);
        return gfail(s, "JSON Schema: out of memory");
    }
    size_t i = 0;
    const char *key;
    json_t *sub;
    json_object_foreach(props, key, sub) {
        path_join(p2, path, "properties");
        path_join(p3, p2, key);
        char val[48];
        if (gen_sub(s, sub, p3, val)) goto fail;
        new_name(s, key, kv[i]);
        strbuf_printf(&s->out, "%s ::=", kv[i]);
        json_t *ks = json_string(key);
        if (!ks || put_json_lit(s, ks)) {
            json_decref(ks);
            goto fail;
        }
        json_decref(ks);
        strbuf_printf(&s->out, " ws \":\" ws %s ws\n", val);
        for (size_t r = 0; req && r < json_array_size(req); r++)
            if (!strcmp(json_string_value(json_array_get(req, r)), key)) required[i] = true;
        i++;
    }
    /* R_i: what may follow once a member was written, from property i on; F_i: the first
     * member from property i on */
    char base[48];
    new_name(s, hint_of(path), base);
    for (size_t k = n + 1; k-- > 0;) {
        strbuf_printf(&s->out, "%s-r%zu ::=", base, k);
        if (k == n) {
            if (allow_extra) strbuf_printf(&s->out, " (\",\" ws %s)*", extra);
            else strbuf_puts(&s->out, " \"\"");
        } else {
            strbuf_printf(&s->out, " \",\" ws %s %s-r%zu", kv[k], base, k + 1);
            if (!required[k]) strbuf_printf(&s->out, " | %s-r%zu", base, k + 1);
        }
        strbuf_puts(&s->out, "\n");
        strbuf_printf(&s->out, "%s-f%zu ::=", base, k);
        if (k == n) {
            if (allow_extra) strbuf_printf(&s->out, " (%s (\",\" ws %s)*)?", extra, extra);
            else strbuf_puts(&s->out, " \"\"");
        } else {
            strbuf_printf(&s->out, " %s %s-r%zu", kv[k], base, k + 1);
            if (!required[k]) strbuf_printf(&s->out, " | %s-f%zu", base, k + 1);
        }
        strbuf_puts(&s->out, "\n");
    }
    strbuf_printf(&s->out, "%s ::= \"{\" ws %s-f0 \"}\"\n", name, base);
    free(kv);
    free(required);
    return 0;
fail:
    free(kv);
    free(required);
    return -1;
}

static int gen_array(gen *s, json_t *node, const char *path, const char *name) {
    json_t *items = json_object_get(node, "items"), *prefix = json_object_get(node, "prefixItems");
    char p2[PATH_MAX_LEN];
    int64_t mn = get_count(s, node, "minItems", path), mx = get_count(s, node, "maxItems", path);
    if (mn == -2 || mx == -2) return -1;
    if (mn < 0) mn = 0;
    if (mx >= 0 && mn > mx) return gfail(s, "minItems above maxItems at %s", pshow(path));
    if (prefix && !json_is_array(prefix)) return gfail(s, "'prefixItems' must be an array at %s", pshow(path));
    if (items && json_is_array(items))
        return gfail(s, "unsupported value of 'items' at %s: an array (use prefixItems)", pshow(path));
    char tail[48] = "";
    if (!items || json_is_true(items)) {
        snprintf(tail, sizeof tail, "value-0");
        s->need_any = true;
    } else if (json_is_object(items)) {
        path_join(p2, path, "items");
        if (gen_sub(s, items, p2, tail)) return -1;
    } else if (!json_is_false(items)) {
        return gfail(s, "'items' must be a schema at %s", pshow(path));
    }
    size_t k = prefix ? json_array_size(prefix) : 0;
    if (mx >= 0 && (size_t)mx < k) k = (size_t)mx;
    if (k == 0) {
        if (!tail[0]) {
            if (mn > 0) return gfail(s, "minItems cannot be met at %s (items is false)", pshow(path));
            strbuf_printf(&s->out, "%s ::= \"[\" ws \"]\"\n", name);
            return 0;
        }
        if (mx == 0) {
            strbuf_printf(&s->out, "%s ::= \"[\" ws \"]\"\n", name);
            return 0;
        }
        strbuf_printf(&s->out, "%s ::= \"[\" ws ", name);
        if (mn == 0) strbuf_puts(&s->out, "(");
        strbuf_printf(&s->out, "%s ws (\",\" ws %s ws)", tail, tail);
        int64_t a = mn > 0 ? mn - 1 : 0;
        if (mx < 0) strbuf_printf(&s->out, "{%lld,}", (long long)a);
        else strbuf_printf(&s->out, "{%lld,%lld}", (long long)a, (long long)(mx - 1));
        if (mn == 0) strbuf_puts(&s->out, ")?");
        strbuf_puts(&s->out, " \"]\"\n");
        return 0;
    }
    char (*pi)[48] = calloc(k, sizeof *pi);
    if (!pi) return gfail(s, "JSON Schema: out of memory");
    for (size_t j = 0; j < k; j++) {
        path_index(p2, path, "prefixItems", j);
        if (gen_sub(s, json_array_get(prefix, j), p2, pi[j])) {
            free(pi);
            return -1;
        }
    }
    char base[48];
    new_name(s, hint_of(path), base);
    /* A_j: after j items */
    for (size_t j = k; j >= 1; j--) {
        strbuf_printf(&s->out, "%s-a%zu ::=", base, j);
        if (j == k) {
            if (tail[0] && (mx < 0 || (size_t)mx > k)) {
                int64_t a = mn > (int64_t)k ? mn - (int64_t)k : 0;
                strbuf_printf(&s->out, " (\",\" ws %s ws)", tail);
                if (mx < 0) strbuf_printf(&s->out, "{%lld,}", (long long)a);
                else strbuf_printf(&s->out, "{%lld,%lld}", (long long)a, (long long)(mx - (int64_t)k));
            } else {
                if (mn > (int64_t)k) {
                    free(pi);
                    return gfail(s, "minItems cannot be met at %s (no items after prefixItems)", pshow(path));
                }
                strbuf_puts(&s->out, " \"\"");
            }
        } else {
            strbuf_printf(&s->out, " \",\" ws %s ws %s-a%zu", pi[j], base, j + 1);
            if ((int64_t)j >= mn) strbuf_puts(&s->out, " | \"\"");
        }
        strbuf_puts(&s->out, "\n");
    }
    strbuf_printf(&s->out, "%s ::= \"[\" ws %s ws %s-a1 \"]\"", name, pi[0], base);
    if (mn == 0) strbuf_puts(&s->out, " | \"[\" ws \"]\"");
    strbuf_puts(&s->out, "\n");
    free(pi);
    return 0;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static int gen_typed(gen *s, json_t *node, const char *path, const char *type, const char *name) {
    if (!strcmp(type, "object")) return gen_object(s, node, path, name);
    if (!strcmp(type, "array")) return gen_array(s, node, path, name);
    rule_begin(s, name);
    int rc = 0;
    if (!strcmp(type, "string")) {
        rc = gen_string(s, node, path);
    } else if (!strcmp(type, "integer") || !strcmp(type, "number")) {
        bool integral = type[0] == 'i';
        bound lo, hi;
        if (read_bounds(s, node, path, integral, &lo, &hi)) return -1;
        if (!lo.set && !hi.set) strbuf_puts(&s->out, integral ? " integer" : " number");
        else rc = put_bounded(s, path, integral, lo, hi);
    } else if (!strcmp(type, "boolean")) {
        strbuf_puts(&s->out, " \"true\" | \"false\"");
    } else if (!strcmp(type, "null")) {
        strbuf_puts(&s->out, " \"null\"");
    } else {
        return gfail(s, "unsupported value of 'type' at %s: '%.40s'", pshow(path), type);
    }
    rule_end(s);
    return rc;
}

/* The type a typeless schema implies by its keywords, or NULL (any value). */
static const char *infer_type(json_t *node) {
    static const struct {
        const char *kw, *type;
    } t[] = {
        {"properties", "object"}, {"additionalProperties", "object"}, {"required", "object"},
        {"items", "array"}, {"prefixItems", "array"}, {"minItems", "array"}, {"maxItems", "array"},
        {"minLength", "string"}, {"maxLength", "string"}, {"pattern", "string"}, {"format", "string"},
        {"minimum", "number"}, {"maximum", "number"}, {"exclusiveMinimum", "number"},
        {"exclusiveMaximum", "number"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (json_object_get(node, t[i].kw)) return t[i].type;
    return NULL;
}

static int gen_ref(gen *s, json_t *node, const char *path, const char *name) {
    json_t *r = json_object_get(node, "$ref");
    if (!json_is_string(r)) return gfail(s, "'$ref' must be a string at %s", pshow(path));
    const char *ref = json_string_value(r);
    const char *k;
    json_t *v;
    json_object_foreach(node, k, v) {
        if (strcmp(k, "$ref") && !is_annotation(k))
            return gfail(s, "unsupported keyword '%.60s' next to '$ref' at %s", k, pshow(path));
    }
    for (size_t i = 0; i < s->n_refs; i++) {
        if (!strcmp(s->refs[i].ref, ref)) {
            strbuf_printf(&s->out, "%s ::= %s\n", name, s->refs[i].name);
            return 0;
        }
    }
    json_t *target = NULL;
    char tpath[PATH_MAX_LEN];
    if (!strcmp(ref, "#")) {
        target = s->root;
        tpath[0] = 0;
    } else {
        const char *defs = NULL;
        if (!strncmp(ref, "#/$defs/", 8)) defs = "$defs";
        else if (!strncmp(ref, "#/definitions/", 14)) defs = "definitions";
        if (!defs)
            return gfail(s, "unsupported value of '$ref' at %s: '%.80s' (only #/$defs/NAME and "
                         "#/definitions/NAME)", pshow(path), ref);
        const char *nm = ref + (defs[0] == '$' ? 8 : 14);
        /* JSON pointer unescaping: ~1 -> '/', ~0 -> '~'; nested pointers are not supported */
        char key[256];
        size_t kn = 0;
        for (const char *p = nm; *p && kn < sizeof key - 1; p++) {
            if (*p == '/') return gfail(s, "unsupported value of '$ref' at %s: '%.80s' (nested pointer)", pshow(path), ref);
            if (p[0] == '~' && p[1] == '1') {
                key[kn++] = '/';
                p++;
            } else if (p[0] == '~' && p[1] == '0') {
                key[kn++] = '~';
                p++;
            } else {
                key[kn++] = *p;
            }
        }
        key[kn] = 0;
        target = json_object_get(json_object_get(s->root, defs), key);
        snprintf(tpath, sizeof tpath, "%s.%.200s", defs, key);
        if (!target) return gfail(s, "'$ref' at %s: '%.80s' does not exist", pshow(path), ref);
    }
    if (s->n_refs == s->cap_refs) {
        size_t cap = s->cap_refs ? 2 * s->cap_refs : 8;
        refmap *m = realloc(s->refs, cap * sizeof *m);
        if (!m) return gfail(s, "JSON Schema: out of memory");
        s->refs = m;
        s->cap_refs = cap;
    }
    refmap *e = &s->refs[s->n_refs];
    e->ref = strdup(ref);
    if (!e->ref) return gfail(s, "JSON Schema: out of memory");
    new_name(s, tpath[0] ? hint_of(tpath) : "root", e->name);
    s->n_refs++;
    char tname[48];
    snprintf(tname, sizeof tname, "%s", e->name); /* e may move when refs grows */
    strbuf_printf(&s->out, "%s ::= %s\n", name, tname);
    return gen_schema(s, target, tpath, tname);
}

static int gen_schema(gen *s, json_t *node, const char *path, const char *name) {
    if (s->failed) return -1;
    if (json_is_true(node)) {
        s->need_any = true;
        strbuf_printf(&s->out, "%s ::= value-0\n", name);
        return 0;
    }
    if (json_is_false(node)) return gfail(s, "schema 'false' at %s matches nothing", pshow(path));
    if (!json_is_object(node)) return gfail(s, "a schema must be an object or a boolean at %s", pshow(path));
    if (s->depth > GEN_DEPTH) return gfail(s, "schema nested too deeply at %s", pshow(path));
    if (check_keywords(s, node, path)) return -1;
    s->depth++;
    int rc = 0;
    char p2[PATH_MAX_LEN];
    json_t *v;
    if (json_object_get(node, "$ref")) {
        rc = gen_ref(s, node, path, name);
    } else if ((v = json_object_get(node, "anyOf")) || (v = json_object_get(node, "oneOf"))) {
        const char *kw = json_object_get(node, "anyOf") ? "anyOf" : "oneOf";
        if (json_object_get(node, "anyOf") && json_object_get(node, "oneOf")) {
            rc = gfail(s, "unsupported combination at %s: anyOf together with oneOf", pshow(path));
            goto out;
        }
        const char *k;
        json_t *x;
        json_object_foreach(node, k, x) {
            if (strcmp(k, kw) && !is_annotation(k)) {
                rc = gfail(s, "unsupported keyword '%.60s' next to '%s' at %s", k, kw, pshow(path));
                goto out;
            }
        }
        if (!json_is_array(v) || json_array_size(v) == 0) {
            rc = gfail(s, "'%s' must be a non-empty array of schemas at %s", kw, pshow(path));
            goto out;
        }
        size_t n = json_array_size(v);
        char (*alt)[48] = calloc(n, sizeof *alt);
        if (!alt) {
            rc = gfail(s, "JSON Schema: out of memory");
            goto out;
        }
        for (size_t i = 0; i < n && !rc; i++) {
            path_index(p2, path, kw, i);
            rc = gen_sub(s, json_array_get(v, i), p2, alt[i]);
        }
        if (!rc) {
            rule_begin(s, name);
            for (size_t i = 0; i < n; i++) strbuf_printf(&s->out, "%s %s", i ? " |" : "", alt[i]);
            rule_end(s);
        }
        free(alt);
    } else if ((v = json_object_get(node, "allOf"))) {
        if (!json_is_array(v) || json_array_size(v) != 1) {
            rc = gfail(s, "unsupported value of 'allOf' at %s: only one member is supported", pshow(path));
            goto out;
        }
        const char *k;
        json_t *x;
        json_object_foreach(node, k, x) {
            if (strcmp(k, "allOf") && !is_annotation(k)) {
                rc = gfail(s, "unsupported keyword '%.60s' next to 'allOf' at %s", k, pshow(path));
                goto out;
            }
        }
        path_index(p2, path, "allOf", 0);
        char sub[48];
        rc = gen_sub(s, json_array_get(v, 0), p2, sub);
        if (!rc) strbuf_printf(&s->out, "%s ::= %s\n", name, sub);
    } else if ((v = json_object_get(node, "enum")) || (v = json_object_get(node, "const"))) {
        bool is_enum = json_object_get(node, "enum") != NULL;
        if (is_enum && json_object_get(node, "const")) {
            rc = gfail(s, "unsupported combination at %s: enum together with const", pshow(path));
            goto out;
        }
        if (is_enum && (!json_is_array(v) || json_array_size(v) == 0)) {
            rc = gfail(s, "'enum' must be a non-empty array at %s", pshow(path));
            goto out;
        }
        rule_begin(s, name);
        if (is_enum) {
            for (size_t i = 0; i < json_array_size(v) && !rc; i++) {
                if (i) strbuf_puts(&s->out, " |");
                rc = put_json_lit(s, json_array_get(v, i));
            }
        } else {
            rc = put_json_lit(s, v);
        }
        rule_end(s);
    } else {
        json_t *type = json_object_get(node, "type");
        if (type && json_is_array(type)) {
            size_t n = json_array_size(type);
            if (n == 0) {
                rc = gfail(s, "'type' must not be an empty array at %s", pshow(path));
                goto out;
            }
            char (*alt)[48] = calloc(n, sizeof *alt);
            if (!alt) {
                rc = gfail(s, "JSON Schema: out of memory");
                goto out;
            }
            for (size_t i = 0; i < n && !rc; i++) {
                json_t *t = json_array_get(type, i);
                if (!json_is_string(t)) {
                    rc = gfail(s, "'type' must be a string or an array of strings at %s", pshow(path));
                    break;
                }
                new_name(s, json_string_value(t), alt[i]);
                rc = gen_typed(s, node, path, json_string_value(t), alt[i]);
            }
            if (!rc) {
                rule_begin(s, name);
                for (size_t i = 0; i < n; i++) strbuf_printf(&s->out, "%s %s", i ? " |" : "", alt[i]);
                rule_end(s);
            }
            free(alt);
        } else if (type) {
            if (!json_is_string(type)) {
                rc = gfail(s, "'type' must be a string or an array of strings at %s", pshow(path));
                goto out;
            }
            rc = gen_typed(s, node, path, json_string_value(type), name);
        } else {
            const char *t = infer_type(node);
            if (t) {
                rc = gen_typed(s, node, path, t, name);
            } else {
                s->need_any = true;
                strbuf_printf(&s->out, "%s ::= value-0\n", name);
            }
        }
    }
out:
    s->depth--;
    if (s->failed) rc = -1;
    return rc;
}

/* ---- the fixed JSON rules ---------------------------------------------------------------- */

static void put_base(gram_sb *o) {
    strbuf_printf(o, "ws ::= [ \\t\\n\\r]{0,%d}\n", GRAM_WS_MAX);
    strbuf_puts(o, "char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})\n");
    strbuf_puts(o, "string ::= \"\\\"\" char* \"\\\"\"\n");
    strbuf_puts(o, "integer ::= \"-\"? (\"0\" | [1-9] [0-9]{0,17})\n");
    strbuf_puts(o, "number ::= \"-\"? (\"0\" | [1-9] [0-9]{0,17}) (\".\" [0-9]{1,20})? ([eE] [-+]? [0-9]{1,2})?\n");
    strbuf_puts(o, "fmt-date ::= [0-9]{4} \"-\" (\"0\" [1-9] | \"1\" [0-2]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01])\n");
    strbuf_puts(o, "fmt-time ::= ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,9})? "
                    "(\"Z\" | [+\\-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])\n");
    strbuf_puts(o, "fmt-octet ::= \"25\" [0-5] | \"2\" [0-4] [0-9] | \"1\" [0-9] [0-9] | [1-9] [0-9] | [0-9]\n");
}

static void put_any(gram_sb *o) {
    for (int d = 0; d <= GRAM_JSON_DEPTH; d++) {
        strbuf_printf(o, "value-%d ::= string | number | \"true\" | \"false\" | \"null\"", d);
        if (d < GRAM_JSON_DEPTH) strbuf_printf(o, " | object-%d | array-%d", d, d);
        strbuf_puts(o, "\n");
        if (d == GRAM_JSON_DEPTH) break;
        strbuf_printf(o, "object-%d ::= \"{\" ws (string ws \":\" ws value-%d ws (\",\" ws string ws \":\" ws "
                          "value-%d ws)*)? \"}\"\n", d, d + 1, d + 1);
        strbuf_printf(o, "array-%d ::= \"[\" ws (value-%d ws (\",\" ws value-%d ws)*)? \"]\"\n", d, d + 1, d + 1);
    }
}

static gram *compile_text(gram_sb *o, const char *what, sh_err *err) {
    if (o->oom) {
        sh_errf(err, "%s: out of memory", what);
        return NULL;
    }
    sh_err e2 = {{0}};
    gram *g = gram_compile(o->s, o->n, what, &e2);
    if (!g && err) {
        /* the generated text is ours: a failure here is a bug, say so */
        if (strstr(e2.msg, "out of memory")) sh_errf(err, "%s", e2.msg);
        else sh_errf(err, "internal error compiling the JSON grammar: %s", e2.msg);
    }
    return g;
}

gram *gram_json_object(sh_err *err) {
    gram_sb o = {0};
    strbuf_puts(&o, "root ::= ws object-0\n");
    put_base(&o);
    put_any(&o);
    gram *g = compile_text(&o, "json_object", err);
    free(o.s);
    return g;
}

gram *gram_json_value(sh_err *err) {
    gram_sb o = {0};
    strbuf_puts(&o, "root ::= ws value-0\n");
    put_base(&o);
    put_any(&o);
    gram *g = compile_text(&o, "json_value", err);
    free(o.s);
    return g;
}

gram *gram_from_json_schema(const char *json, size_t len, sh_err *err) {
    json_error_t je;
    json_t *root = json_loadb(json ? json : "", json ? len : 0, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        sh_errf(err, "JSON Schema: invalid JSON at line %d, column %d: %s", je.line, je.column, je.text);
        return NULL;
    }
    gen s;
    memset(&s, 0, sizeof s);
    s.root = root;
    s.err = err;
    if (err) err->msg[0] = 0;
    strbuf_puts(&s.out, "root ::= ws schema-0\n");
    gram *g = NULL;
    if (gen_schema(&s, root, "", "schema-0") == 0) {
        put_base(&s.out);
        if (s.need_any) put_any(&s.out);
        g = compile_text(&s.out, "json_schema", err);
    }
    for (size_t i = 0; i < s.n_refs; i++) free(s.refs[i].ref);
    free(s.refs);
    free(s.out.s);
    json_decref(root);
    return g;
}
