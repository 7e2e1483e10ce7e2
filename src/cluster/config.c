/*
 * cluster/config — see config.h.
 *
 * Two passes over the YAML: an event pass that refuses what the schema never needs and that
 * could make a hostile file expensive (aliases, deep nesting, several documents) and reports
 * syntax errors, then libyaml's document loader, whose node tree (with line marks) is walked
 * by one function per section. Cross-references between sections are checked last, when every
 * name is known.
 */
#include "cluster/config.h"
#include "cluster/config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* ============================================================ context and messages ===== */

#define QBUF 100
#define NQBUF 8
#define MAX_MS 86400000.0 /* one day: any larger timeout is a typo */

struct pctx {
    const char *name;      /* the file name, for messages */
    char *base_dir;        /* relative paths are taken from here (NULL: current directory) */
    yaml_document_t doc;
    sh_err *err;
    char qbuf[NQBUF][QBUF]; /* rotating buffers for quoted values and key paths */
    int qi;
};

static int line_of(const yaml_node_t *n) { return n ? (int)n->start_mark.line + 1 : 1; }

/* Fills err with "NAME:LINE: message" and returns -1. A very long file name is cut from the
 * front so that the line number and the problem always fit. */
__attribute__((format(printf, 3, 4))) static int fail_at(pctx *p, int line, const char *fmt, ...) {
    char msg[SH_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t nl = strlen(p->name);
    const char *nm = nl > 160 ? p->name + nl - 157 : p->name;
    sh_errf(p->err, "%s%s:%d: %s", nl > 160 ? "..." : "", nm, line, msg);
    return -1;
}

static char *next_buf(pctx *p) { return p->qbuf[p->qi++ % NQBUF]; }

/* 'value' for messages: one line, printable ASCII, bounded (file bytes are untrusted). */
static const char *q(pctx *p, const char *s) {
    char *b = next_buf(p);
    size_t o = 0;
    b[o++] = '\'';
    for (; *s && o < QBUF - 9; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch >= 0x20 && ch < 0x7f) b[o++] = (char)ch;
        else o += (size_t)snprintf(b + o, QBUF - o, "\\x%02x", ch);
    }
    if (*s) memcpy(b + o, "...", 3), o += 3;
    b[o++] = '\'';
    b[o] = 0;
    return b;
}

/* "listen.port", "model 'chat': policy", or "models" at the top level. */
static const char *key_path(pctx *p, const char *what, const char *key) {
    char *b = next_buf(p);
    if (!*what) snprintf(b, QBUF, "%s", key);
    else snprintf(b, QBUF, "%s%s%s", what, strchr(what, ' ') ? ": " : ".", key);
    return b;
}

static int oom(pctx *p) { return fail_at(p, 1, "out of memory"); }

/* ============================================================ YAML nodes ===== */

typedef ccfg_field field;

static yaml_node_t *node_at(pctx *p, int idx) { return yaml_document_get_node(&p->doc, idx); }

static const char *kind_name(const yaml_node_t *n) {
    switch (n->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    default: return "a scalar";
    }
}

/* A scalar whose bytes are a C string (no NUL inside: "a\0b" would compare as "a"). */
static const char *scalar(const yaml_node_t *n) {
    if (!n || n->type != YAML_SCALAR_NODE) return NULL;
    const char *s = (const char *)n->data.scalar.value;
    return strlen(s) == n->data.scalar.length ? s : NULL;
}

/* YAML's null (nothing, ~, null) counts as "not given", so `nodes:` alone means no nodes. */
static bool is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* Checks that map is a mapping whose keys are all in keys[] (NULL-terminated), each at most
 * once, and fills out[i] for keys[i]. */
static int get_fields(pctx *p, yaml_node_t *map, const char *what, const char *const *keys, field *out) {
    int nk = 0;
    while (keys[nk]) out[nk++] = (field){0};
    if (map->type != YAML_MAPPING_NODE)
        return fail_at(p, line_of(map), "%s: expected a mapping, got %s", *what ? what : "the config",
                       kind_name(map));
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node_at(p, pr->key), *v = node_at(p, pr->value);
        if (!k || !v) return fail_at(p, line_of(map), "%s: broken mapping", *what ? what : "the config");
        const char *ks = scalar(k);
        int i = 0;
        while (ks && keys[i] && strcmp(keys[i], ks)) i++;
        if (!ks || !keys[i]) {
            char allowed[320] = "";
            for (int j = 0; keys[j]; j++)
                snprintf(allowed + strlen(allowed), sizeof allowed - strlen(allowed), "%s%s", j ? ", " : "",
                         keys[j]);
            return fail_at(p, line_of(k), "unknown key %s in %s (allowed: %s)",
                           ks ? q(p, ks) : k->type == YAML_SCALAR_NODE ? "with a NUL byte" : kind_name(k),
                           *what ? what : "the top level", allowed);
        }
        if (out[i].k)
            return fail_at(p, line_of(k), "duplicate key %s (first on line %d)",
                           q(p, key_path(p, what, ks)), line_of(out[i].k));
        out[i].k = k;
        out[i].v = is_null(v) ? NULL : v;
    }
    return 0;
}

static const char *fkey(const field *f) { return (const char *)f->k->data.scalar.value; }

/* ============================================================ typed values ===== */

/* A non-empty string. */
static int get_str(pctx *p, const char *what, const field *f, char **out) {
    const char *s = scalar(f->v);
    if (!s)
        return fail_at(p, line_of(f->v), "%s: expected a string, got %s", key_path(p, what, fkey(f)),
                       f->v->type == YAML_SCALAR_NODE ? "a string with a NUL byte" : kind_name(f->v));
    if (!*s) return fail_at(p, line_of(f->v), "%s: must not be empty", key_path(p, what, fkey(f)));
    free(*out);
    if (!(*out = strdup(s))) return oom(p);
    return 0;
}

/* Names of locals, nodes, models: printable ASCII without spaces, bounded (they end up in
 * logs, URLs and messages). */
static int check_name(pctx *p, const yaml_node_t *at, const char *what, const char *s) {
    const char *s0 = s;
    if (strlen(s) > CCFG_MAX_NAME)
        return fail_at(p, line_of(at), "%s: name %s longer than %d bytes", what, q(p, s), CCFG_MAX_NAME);
    for (; *s; s++)
        if (*s <= 0x20 || *s >= 0x7f)
            return fail_at(p, line_of(at), "%s: name %s: only printable ASCII without spaces", what, q(p, s0));
    return 0;
}

static int get_name(pctx *p, const char *what, const field *f, char **out) {
    if (get_str(p, what, f, out)) return -1;
    return check_name(p, f->v, key_path(p, what, fkey(f)), *out);
}

/* Strict decimal integer: optional '-', digits, nothing else (no atoi: "12abc" is an error). */
static bool parse_long(const char *s, long *out) {
    const char *d = s + (*s == '-');
    if (!*d) return false;
    for (const char *c = d; *c; c++)
        if (*c < '0' || *c > '9') return false;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

/* Strict decimal number: digits, '.', an exponent; no hex, inf or nan. */
static bool parse_num(const char *s, double *out) {
    bool digit = false;
    for (const char *c = s; *c; c++) {
        if (*c >= '0' && *c <= '9') digit = true;
        else if (!strchr(".eE+-", *c)) return false;
    }
    if (!digit) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v)) return false;
    *out = v;
    return true;
}

static int get_int(pctx *p, const char *what, const field *f, long lo, long hi, int *out) {
    const char *s = scalar(f->v);
    long v;
    if (!s || !parse_long(s, &v) || v < lo || v > hi)
        return fail_at(p, line_of(f->v), "%s: expected an integer in %ld..%ld, got %s",
                       key_path(p, what, fkey(f)), lo, hi, s ? q(p, s) : kind_name(f->v));
    *out = (int)v;
    return 0;
}

/* Milliseconds: > 0 (or >= 0 when zero_ok), at most a day. */
static int get_ms(pctx *p, const char *what, const field *f, bool zero_ok, double *out) {
    const char *s = scalar(f->v);
    double v;
    if (!s || !parse_num(s, &v) || v < 0 || (v == 0 && !zero_ok) || v > MAX_MS)
        return fail_at(p, line_of(f->v), "%s: expected milliseconds %s 0 and <= %.0f, got %s",
                       key_path(p, what, fkey(f)), zero_ok ? ">=" : ">", MAX_MS,
                       s ? q(p, s) : kind_name(f->v));
    *out = v;
    return 0;
}

static int get_bool(pctx *p, const char *what, const field *f, bool *out) {
    const char *s = scalar(f->v);
    static const char *const t[] = {"true", "True", "TRUE"}, *const fl[] = {"false", "False", "FALSE"};
    for (int i = 0; s && i < 3; i++) {
        if (!strcmp(s, t[i])) return *out = true, 0;
        if (!strcmp(s, fl[i])) return *out = false, 0;
    }
    return fail_at(p, line_of(f->v), "%s: expected true or false, got %s", key_path(p, what, fkey(f)),
                   s ? q(p, s) : kind_name(f->v));
}

/* A list of at most max items; *n = 0 when the key is absent. */
static int get_list(pctx *p, const char *what, const field *f, int max, yaml_node_item_t **items, int *n) {
    *items = NULL;
    *n = 0;
    if (!f->v) return 0;
    if (f->v->type != YAML_SEQUENCE_NODE)
        return fail_at(p, line_of(f->v), "%s: expected a list, got %s", key_path(p, what, fkey(f)),
                       kind_name(f->v));
    ptrdiff_t cnt = f->v->data.sequence.items.top - f->v->data.sequence.items.start;
    if (cnt > max)
        return fail_at(p, line_of(f->v), "%s: too many entries (%td, at most %d)", key_path(p, what, fkey(f)),
                       cnt, max);
    *items = f->v->data.sequence.items.start;
    *n = (int)cnt;
    return 0;
}

/* ============================================================ files and secrets ===== */

/* path as written, or joined to the config file's directory when relative. */
static char *resolve(pctx *p, const char *path) {
    if (path[0] == '/' || !p->base_dir) return strdup(path);
    size_t a = strlen(p->base_dir), b = strlen(path);
    char *r = malloc(a + b + 2);
    if (r) memcpy(r, p->base_dir, a), r[a] = '/', memcpy(r + a + 1, path, b + 1);
    return r;
}

/* Opens a regular file for reading; -1 with errno otherwise. O_NONBLOCK: a FIFO or a /proc
 * file that blocks must not hang the load. */
static int open_regular(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    if (S_ISDIR(st.st_mode)) return errno = EISDIR, -1;
    if (!S_ISREG(st.st_mode)) return errno = EINVAL, -1;
    return open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
}

/* The first line of a key file, without its line end. */
static int read_secret_file(pctx *p, const yaml_node_t *at, const char *key, const char *path, char **out) {
    char *full = resolve(p, path);
    if (!full) return oom(p);
    int fd = open_regular(full);
    if (fd < 0) {
        int e = errno;
        fail_at(p, line_of(at), "%s: cannot read %s: %s", key, q(p, full), strerror(e));
        return free(full), -1;
    }
    char buf[CCFG_MAX_SECRET + 2];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof buf - 1 && (r = read(fd, buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)r;
    close(fd);
    buf[len] = 0;
    size_t ln = strcspn(buf, "\n");
    if (ln > CCFG_MAX_SECRET) {
        fail_at(p, line_of(at), "%s: first line of %s longer than %d bytes", key, q(p, full), CCFG_MAX_SECRET);
        return free(full), -1;
    }
    buf[ln] = 0;
    if (ln && buf[ln - 1] == '\r') buf[--ln] = 0;
    free(full);
    if (!ln) return fail_at(p, line_of(at), "%s: empty key in %s", key, q(p, path));
    if (!(*out = strdup(buf))) return oom(p);
    return 0;
}

/* base = "api_key" or "join_token": at most one of base, base_env, base_file, which are f[0..2].
 * what names the owner ("" at the top level). */
static int get_secret(pctx *p, const char *what, const char *base, const field f[3], char **out) {
    int given = 0, last = 0;
    for (int i = 0; i < 3; i++)
        if (f[i].k) given++, last = i;
    if (given > 1)
        return fail_at(p, line_of(f[last].k), "%s: give only one of %s, %s_env and %s_file",
                       key_path(p, what, fkey(&f[last])), base, base, base);
    if (!given) return 0;
    const field *g = &f[last];
    const char *kp = key_path(p, what, fkey(g));
    if (!g->v) return fail_at(p, line_of(g->k), "%s: empty key", kp);
    char *val = NULL;
    if (get_str(p, what, g, &val)) return -1;
    int rc = 0;
    if (last == 0) {
        *out = val, val = NULL;
    } else if (last == 1) {
        const char *env = getenv(val);
        if (!env) rc = fail_at(p, line_of(g->v), "%s: environment variable %s is not set", kp, q(p, val));
        else if (!*env) rc = fail_at(p, line_of(g->v), "%s: environment variable %s is empty (empty key)", kp, q(p, val));
        else if (strlen(env) > CCFG_MAX_SECRET)
            rc = fail_at(p, line_of(g->v), "%s: key longer than %d bytes", kp, CCFG_MAX_SECRET);
        else if (!(*out = strdup(env))) rc = oom(p);
    } else {
        rc = read_secret_file(p, g->v, kp, val, out);
    }
    free(val);
    return rc;
}

/* ============================================================ sections ===== */

static int parse_listen(pctx *p, cluster_config *c, yaml_node_t *n) {
    static const char *const keys[] = {"host", "port", NULL};
    field f[2];
    if (get_fields(p, n, "listen", keys, f)) return -1;
    if (f[0].v && get_str(p, "listen", &f[0], &c->host)) return -1;
    if (f[1].v && get_int(p, "listen", &f[1], 1, 65535, &c->port)) return -1;
    return 0;
}

static int parse_health(pctx *p, cluster_config *c, yaml_node_t *n) {
    static const char *const keys[] = {"interval_ms", "timeout_ms", "fail_threshold", "cooldown_ms", NULL};
    field f[4];
    if (get_fields(p, n, "health", keys, f)) return -1;
    if (f[0].v && get_ms(p, "health", &f[0], false, &c->health_interval_ms)) return -1;
    if (f[1].v && get_ms(p, "health", &f[1], false, &c->health_timeout_ms)) return -1;
    if (f[2].v && get_int(p, "health", &f[2], 1, 1000, &c->fail_threshold)) return -1;
    if (f[3].v && get_ms(p, "health", &f[3], false, &c->cooldown_ms)) return -1;
    return 0;
}

static int parse_retry(pctx *p, cluster_config *c, yaml_node_t *n) {
    static const char *const keys[] = {"max_attempts", "connect_timeout_ms", "first_byte_timeout_ms", NULL};
    field f[3];
    if (get_fields(p, n, "retry", keys, f)) return -1;
    if (f[0].v && get_int(p, "retry", &f[0], 1, 100, &c->max_attempts)) return -1;
    if (f[1].v && get_ms(p, "retry", &f[1], false, &c->connect_timeout_ms)) return -1;
    if (f[2].v && get_ms(p, "retry", &f[2], false, &c->first_byte_timeout_ms)) return -1;
    return 0;
}

static int parse_join(pctx *p, cluster_config *c, yaml_node_t *n) {
    static const char *const keys[] = {"heartbeat_ms", "ttl_ms", NULL};
    field f[2];
    if (get_fields(p, n, "join", keys, f)) return -1;
    if (f[0].v && get_ms(p, "join", &f[0], false, &c->heartbeat_ms)) return -1;
    if (f[1].v && get_ms(p, "join", &f[1], false, &c->node_ttl_ms)) return -1;
    /* a ttl within one heartbeat would drop healthy nodes between two reports */
    if (c->node_ttl_ms <= c->heartbeat_ms)
        return fail_at(p, line_of(f[1].k ? f[1].k : f[0].k), "join.ttl_ms (%g) must be greater than join.heartbeat_ms (%g)",
                       c->node_ttl_ms, c->heartbeat_ms);
    return 0;
}

static int parse_serve(pctx *p, cluster_config *c, yaml_node_t *n) {
    static const char *const keys[] = {"slots", "ctx", "threads", NULL};
    field f[3];
    if (get_fields(p, n, "serve", keys, f)) return -1;
    /* the same ranges as `shoal serve --slots/--ctx/--threads` */
    if (f[0].v && get_int(p, "serve", &f[0], 1, 256, &c->slots)) return -1;
    if (f[1].v && get_int(p, "serve", &f[1], 16, 1 << 20, &c->ctx)) return -1;
    if (f[2].v && get_int(p, "serve", &f[2], 1, 1024, &c->threads)) return -1;
    return 0;
}

/* ============================================================ locals and nodes ===== */

/* "KIND 'name'" when the entry has a usable name: key, else "KIND #N", for messages about an
 * entry before its fields are checked. */
static void entry_name(pctx *p, yaml_node_t *n, const char *kind, int idx, char what[QBUF]) {
    const char *name = NULL;
    if (n->type == YAML_MAPPING_NODE)
        for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
            const char *k = scalar(node_at(p, pr->key));
            if (k && !strcmp(k, "name")) {
                name = scalar(node_at(p, pr->value));
                break;
            }
        }
    if (name && *name) snprintf(what, QBUF, "%s %s", kind, q(p, name));
    else snprintf(what, QBUF, "%s #%d", kind, idx + 1);
}

static int parse_local(pctx *p, yaml_node_t *n, int idx, ccfg_local *l) {
    static const char *const keys[] = {"name", "path", "pooling", NULL};
    field f[3];
    char what[QBUF];
    entry_name(p, n, "local", idx, what);
    if (get_fields(p, n, what, keys, f)) return -1;
    l->line = line_of(n);
    if (!f[0].v) return fail_at(p, l->line, "%s: missing name", what);
    if (get_name(p, what, &f[0], &l->name)) return -1;
    snprintf(what, sizeof what, "local %s", q(p, l->name));
    if (!f[1].v) return fail_at(p, l->line, "%s: missing path", what);
    char *path = NULL;
    if (get_str(p, what, &f[1], &path)) return -1;
    l->path = resolve(p, path);
    free(path);
    if (!l->path) return oom(p);
    /* existence and readability only: the engine checks the contents when it loads */
    int fd = open_regular(l->path);
    if (fd < 0) {
        int e = errno;
        return fail_at(p, line_of(f[1].v), "%s: model file %s: %s", what, q(p, l->path), strerror(e));
    }
    close(fd);
    if (f[2].v) {
        if (get_str(p, what, &f[2], &l->pooling)) return -1;
        static const char *const pools[] = {"none", "mean", "cls", "last", "rank"};
        bool ok = false;
        for (int i = 0; i < 5; i++) ok |= !strcmp(l->pooling, pools[i]);
        if (!ok)
            return fail_at(p, line_of(f[2].v), "%s: pooling %s is not one of none, mean, cls, last, rank",
                           what, q(p, l->pooling));
    }
    return 0;
}

/* http[s]://host[:port][/] -> "scheme://host[:port]". host: a name or address ([v6] too). */
static int check_url(pctx *p, const yaml_node_t *at, const char *what, char *url) {
    const char *rest = !strncmp(url, "http://", 7) ? url + 7 : !strncmp(url, "https://", 8) ? url + 8 : NULL;
    if (!rest) return fail_at(p, line_of(at), "%s: url %s must start with http:// or https://", what, q(p, url));
    const char *h = rest;
    if (*h == '[') {
        h++;
        while (*h && (strchr("0123456789abcdefABCDEF:.", *h))) h++;
        if (*h != ']' || h == rest + 1)
            return fail_at(p, line_of(at), "%s: url %s: bad IPv6 address", what, q(p, url));
        h++;
    } else {
        while (*h && (strchr("-._", *h) || (*h >= '0' && *h <= '9') || ((*h | 0x20) >= 'a' && (*h | 0x20) <= 'z'))) h++;
        if (h == rest) return fail_at(p, line_of(at), "%s: url %s has no host", what, q(p, url));
    }
    if (*h == ':') {
        long port;
        char digits[8] = "";
        size_t nd = strspn(h + 1, "0123456789");
        if (nd >= 1 && nd <= 5) memcpy(digits, h + 1, nd);
        char after = h[1 + nd];
        if (!nd || nd > 5 || (after && after != '/') || !parse_long(digits, &port) || port < 1 || port > 65535)
            return fail_at(p, line_of(at), "%s: url %s: port must be 1..65535", what, q(p, url));
        h += 1 + nd;
    }
    if (*h && strcmp(h, "/"))
        return fail_at(p, line_of(at), "%s: url %s: only scheme://host[:port] (no path, query, user or fragment)",
                       what, q(p, url));
    url[h - url] = 0; /* strips the trailing slash */
    return 0;
}

static int parse_node(pctx *p, yaml_node_t *n, int idx, ccfg_node *nd) {
    static const char *const keys[] = {"name", "url", "api_key", "api_key_env", "api_key_file", NULL};
    field f[5];
    char what[QBUF];
    entry_name(p, n, "node", idx, what);
    if (get_fields(p, n, what, keys, f)) return -1;
    nd->line = line_of(n);
    if (!f[0].v) return fail_at(p, nd->line, "%s: missing name", what);
    if (get_name(p, what, &f[0], &nd->name)) return -1;
    snprintf(what, sizeof what, "node %s", q(p, nd->name));
    if (!f[1].v) return fail_at(p, nd->line, "%s: missing url", what);
    if (get_str(p, what, &f[1], &nd->url) || check_url(p, f[1].v, what, nd->url)) return -1;
    return get_secret(p, what, "api_key", &f[2], &nd->api_key);
}

/* Names within one list must be unique (n <= CCFG_MAX_ITEMS: quadratic is fine). */
static int check_unique(pctx *p, const char *kind, char *const *names, const int *lines, int n) {
    for (int i = 1; i < n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(names[i], names[j]))
                return fail_at(p, lines[i], "duplicate %s name %s (first on line %d)", kind, q(p, names[i]), lines[j]);
    return 0;
}

static int parse_locals(pctx *p, cluster_config *c, const field *f) {
    yaml_node_item_t *it;
    int n;
    if (get_list(p, "", f, CCFG_MAX_ITEMS, &it, &n)) return -1;
    if (n && !(c->locals = calloc((size_t)n, sizeof *c->locals))) return oom(p);
    char *names[CCFG_MAX_ITEMS];
    int lines[CCFG_MAX_ITEMS];
    for (int i = 0; i < n; i++) {
        c->n_locals = i + 1;
        if (parse_local(p, node_at(p, it[i]), i, &c->locals[i])) return -1;
        names[i] = c->locals[i].name, lines[i] = c->locals[i].line;
        if (check_unique(p, "local", names, lines, i + 1)) return -1;
    }
    return 0;
}

static int parse_nodes(pctx *p, cluster_config *c, const field *f) {
    yaml_node_item_t *it;
    int n;
    if (get_list(p, "", f, CCFG_MAX_ITEMS, &it, &n)) return -1;
    if (n && !(c->nodes = calloc((size_t)n, sizeof *c->nodes))) return oom(p);
    char *names[CCFG_MAX_ITEMS];
    int lines[CCFG_MAX_ITEMS];
    for (int i = 0; i < n; i++) {
        c->n_nodes = i + 1;
        if (parse_node(p, node_at(p, it[i]), i, &c->nodes[i])) return -1;
        names[i] = c->nodes[i].name, lines[i] = c->nodes[i].line;
        if (check_unique(p, "node", names, lines, i + 1)) return -1;
    }
    return 0;
}

static int find_local(const cluster_config *c, const char *name) {
    for (int i = 0; i < c->n_locals; i++)
        if (!strcmp(c->locals[i].name, name)) return i;
    return -1;
}

static int find_node(const cluster_config *c, const char *name) {
    for (int i = 0; i < c->n_nodes; i++)
        if (!strcmp(c->nodes[i].name, name)) return i;
    return -1;
}

/* ============================================================ backends and rules ===== */

/* `- smol`: a local of that name, else a node of that name (asked for the model's own name). */
static int parse_bare_backend(pctx *p, const cluster_config *c, const ccfg_model *m, const char *what,
                              yaml_node_t *n, ccfg_backend *b) {
    const char *s = scalar(n);
    if (!s || !*s) return fail_at(p, line_of(n), "%s: expected a local or node name", what);
    if (find_local(c, s) >= 0) return (b->local = strdup(s)) ? 0 : oom(p);
    if (find_node(c, s) < 0)
        return fail_at(p, line_of(n), "%s: %s is neither a local nor a node", what, q(p, s));
    if (!(b->node = strdup(s)) || !(b->model = strdup(m->name))) return oom(p);
    return 0;
}

static int parse_backend(pctx *p, const cluster_config *c, const ccfg_model *m, yaml_node_t *n, int idx,
                         ccfg_backend *b) {
    static const char *const keys[] = {"local", "node", "model", "capability", "weight", NULL};
    field f[5];
    char what[QBUF];
    snprintf(what, sizeof what, "model %s backend #%d", q(p, m->name), idx + 1);
    b->line = line_of(n);
    b->weight = 1;
    if (n->type == YAML_SCALAR_NODE) return parse_bare_backend(p, c, m, what, n, b);
    if (n->type != YAML_MAPPING_NODE)
        return fail_at(p, b->line, "%s: expected a local/node name or a mapping, got %s", what, kind_name(n));
    if (get_fields(p, n, what, keys, f)) return -1;
    if (!!f[0].v == !!f[1].v)
        return fail_at(p, b->line, "%s: give exactly one of local and node (%s)", what, f[0].v ? "both given" : "neither given");
    if (f[0].v) {
        if (get_str(p, what, &f[0], &b->local)) return -1;
        if (find_local(c, b->local) < 0)
            return fail_at(p, line_of(f[0].v), "%s: unknown local %s", what, q(p, b->local));
        if (f[2].k)
            return fail_at(p, line_of(f[2].k), "%s: model: is only for node backends (a local serves its own file)", what);
    } else {
        if (get_str(p, what, &f[1], &b->node)) return -1;
        if (find_node(c, b->node) < 0) return fail_at(p, line_of(f[1].v), "%s: unknown node %s", what, q(p, b->node));
        if (f[2].v) {
            if (get_name(p, what, &f[2], &b->model)) return -1;
        } else if (!(b->model = strdup(m->name))) {
            return oom(p);
        }
    }
    if (f[3].v && get_int(p, what, &f[3], -1000000, 1000000, &b->capability)) return -1;
    if (f[4].k && m->policy != ROUTE_WEIGHTED)
        return fail_at(p, line_of(f[4].k), "%s: weight is only for policy weighted", what);
    if (f[4].v && ccfgi_num(p, what, &f[4], 0, 1e6, &b->weight)) return -1;
    return 0;
}

/* The same local, or the same node asked for the same model, twice is a typo. */
static int check_backend_dups(pctx *p, const ccfg_model *m) {
    for (int i = 1; i < m->n_backends; i++)
        for (int j = 0; j < i; j++) {
            const ccfg_backend *a = &m->backends[i], *b = &m->backends[j];
            bool same = a->local ? b->local && !strcmp(a->local, b->local)
                                 : b->node && !strcmp(a->node, b->node) && !strcmp(a->model, b->model);
            if (same)
                return fail_at(p, a->line, "model %s: backend #%d repeats backend #%d (line %d)", q(p, m->name), i + 1,
                               j + 1, b->line);
        }
    return 0;
}

/* A repetition count, saturated (only its size matters). */
static long read_count(const char **d) {
    long v = 0;
    for (; **d >= '0' && **d <= '9'; (*d)++)
        if (v < 100000) v = v * 10 + (**d - '0');
    return v;
}

/* The last byte of a bracket expression starting at s ('['): "[]a]", "[^]a]", "[[:alpha:]]";
 * the string's last byte when it is not closed. */
static const char *skip_bracket(const char *s) {
    s++;
    if (*s == '^') s++;
    if (*s == ']') s++;
    for (; *s && *s != ']'; s++)
        if (*s == '[' && (s[1] == ':' || s[1] == '.' || s[1] == '=')) {
            const char *e = strchr(s + 2, s[1]);
            while (e && e[1] != ']') e = strchr(e + 1, s[1]);
            if (!e) return s + strlen(s) - 1;
            s = e + 1;
        }
    return *s ? s : s - 1;
}

#define RE_MAX_GROUPS 64
#define RE_MAX_NODES 2000

/* Copies a quantifier makes of its operand in glibc's tree: a+ is a a*, a{2,5} is five a's. */
static double quantifier_copies(const char **sp) {
    const char *s = *sp;
    if (*s == '*' || *s == '?') return 1;
    if (*s == '+') return 2;
    const char *d = s + 1;
    if (*s != '{' || *d < '0' || *d > '9') return 0;
    long lo = read_count(&d), hi = lo;
    if (*d == ',') d++, hi = *d >= '0' && *d <= '9' ? read_count(&d) : lo + 1;
    if (*d != '}') return 0;
    *sp = d;
    return (double)(hi > lo ? hi : lo) + 1;
}

/* Estimates the size of the tree glibc's regcomp builds: quantifiers copy their operand, so
 * nested or stacked ones multiply ("(a{1,100}){1,100}" is 10^4 copies, "a++++" 2^4) and a
 * 60-byte pattern could take gigabytes. Back-references are refused: matching them is
 * exponential on hostile request text. */
static int check_regex_cost(pctx *p, int line, const char *what, const char *pat) {
    double total[RE_MAX_GROUPS + 1] = {0}, branch[RE_MAX_GROUPS + 1] = {0}, last[RE_MAX_GROUPS + 1] = {0};
    int depth = 0;
    for (const char *s = pat; *s; s++) {
        double copies = quantifier_copies(&s), atom = 1;
        if (copies > 0) { /* the quantified operand becomes the last atom */
            double q = last[depth] * copies + 1;
            branch[depth] += q - last[depth], last[depth] = q;
            continue;
        }
        if (*s == '\\' && s[1]) {
            if (s[1] >= '1' && s[1] <= '9')
                return fail_at(p, line, "%s: match %s: back-references are not supported", what, q(p, pat));
            s++;
        } else if (*s == '[') {
            s = skip_bracket(s);
        } else if (*s == '(') {
            if (++depth > RE_MAX_GROUPS)
                return fail_at(p, line, "%s: match: groups nested deeper than %d", what, RE_MAX_GROUPS);
            total[depth] = branch[depth] = last[depth] = 0;
            continue;
        } else if (*s == ')' && depth > 0) {
            atom = total[depth] + branch[depth] + 1, depth--;
        } else if (*s == '|') {
            total[depth] += branch[depth], branch[depth] = last[depth] = 0;
            continue;
        }
        branch[depth] += atom, last[depth] = atom;
    }
    double size = 0;
    for (int d = 0; d <= depth; d++) size += total[d] + branch[d];
    if (size > RE_MAX_NODES)
        return fail_at(p, line, "%s: match %s: too complex (repetitions expand it to about %.0f parts, at most %d)",
                       what, q(p, pat), size, RE_MAX_NODES);
    return 0;
}

static int check_regex(pctx *p, int line, const char *what, const char *pat) {
    if (strlen(pat) > CCFG_MAX_PATTERN)
        return fail_at(p, line, "%s: match: pattern longer than %d bytes", what, CCFG_MAX_PATTERN);
    if (check_regex_cost(p, line, what, pat)) return -1;
    regex_t re;
    /* the flags route_rules_init compiles with */
    int rc = regcomp(&re, pat, REG_EXTENDED | REG_ICASE | REG_NOSUB);
    if (rc) {
        char msg[128];
        regerror(rc, &re, msg, sizeof msg);
        return fail_at(p, line, "%s: match %s: invalid regex: %s", what, q(p, pat), msg);
    }
    regfree(&re);
    return 0;
}

/* metadata: {key: value}, exactly one pair. */
static int parse_metadata(pctx *p, const char *what, yaml_node_t *n, ccfg_rule *r) {
    if (n->type != YAML_MAPPING_NODE || n->data.mapping.pairs.top - n->data.mapping.pairs.start != 1)
        return fail_at(p, line_of(n), "%s: metadata: expected one key: value mapping", what);
    yaml_node_pair_t *pr = n->data.mapping.pairs.start;
    const char *k = scalar(node_at(p, pr->key)), *v = scalar(node_at(p, pr->value));
    if (!k || !v || !*k || !*v)
        return fail_at(p, line_of(n), "%s: metadata: key and value must be non-empty strings", what);
    if (!(r->meta_key = strdup(k)) || !(r->meta_value = strdup(v))) return oom(p);
    return 0;
}

static int parse_rule(pctx *p, const ccfg_model *m, yaml_node_t *n, int idx, ccfg_rule *r) {
    static const char *const keys[] = {"match", "metadata", "model", NULL};
    field f[3];
    char what[QBUF];
    snprintf(what, sizeof what, "model %s rule #%d", q(p, m->name), idx + 1);
    r->line = line_of(n);
    if (get_fields(p, n, what, keys, f)) return -1;
    if (!!f[0].v == !!f[1].v)
        return fail_at(p, r->line, "%s: give exactly one of match and metadata (%s)", what,
                       f[0].v ? "both given" : "neither given");
    if (!f[2].v) return fail_at(p, r->line, "%s: missing model (the target)", what);
    if (get_str(p, what, &f[2], &r->target)) return -1;
    if (f[1].v) return parse_metadata(p, what, f[1].v, r);
    if (get_str(p, what, &f[0], &r->pattern)) return -1;
    return check_regex(p, line_of(f[0].v), what, r->pattern);
}

/* ============================================================ models ===== */

enum { M_NAME, M_ALIASES, M_POLICY, M_BACKENDS, M_RULES, M_DEFAULT, M_FALLBACK, M_HEDGE, M_HEDGE_AFTER,
       M_PREFIX_BYTES, M_LOAD_FACTOR, M_VNODES, M_STICKY, M_COMPOSE, M_N = M_COMPOSE + CC_N };
static const char *const model_keys[] = {"name", "aliases", "policy", "backends", "rules", "default", "fallback",
                                         "hedge", "hedge_after_ms", "prefix_bytes", "load_factor", "vnodes",
                                         "sticky", CCFG_COMPOSE_KEYS, NULL};

static int parse_policy(pctx *p, const char *what, const field *f, int *out) {
    const char *s = scalar(f->v);
    static const char *const extra[] = {"rules", "classify", "cascade", "ensemble", "pipeline"};
    int pol = !s ? -1 : route_policy_from_name(s);
    for (int i = 0; s && pol < 0 && i < 5; i++)
        if (!strcmp(s, extra[i])) pol = CCFG_POLICY_RULES + i;
    if (pol < 0)
        return fail_at(p, line_of(f->v), "%s: unknown policy %s (valid: round_robin, least_loaded, p2c, "
                       "prefix_affinity, latency_budget, weighted, rules, classify, cascade, ensemble, "
                       "pipeline)", what, s ? q(p, s) : kind_name(f->v));
    *out = pol;
    return 0;
}

static int parse_aliases(pctx *p, const char *what, const field *f, ccfg_model *m) {
    yaml_node_item_t *it;
    int n;
    if (get_list(p, what, f, CCFG_MAX_ALIASES, &it, &n)) return -1;
    if (n && !(m->aliases = calloc((size_t)n, sizeof *m->aliases))) return oom(p);
    for (int i = 0; i < n; i++) {
        m->n_aliases = i + 1;
        field a = {f->k, node_at(p, it[i])};
        if (is_null(a.v)) return fail_at(p, line_of(a.v), "%s: aliases: empty alias", what);
        if (get_name(p, what, &a, &m->aliases[i])) return -1;
    }
    return 0;
}

/* prefix_bytes / load_factor / vnodes: prefix_affinity only (elsewhere they would be ignored). */
static int parse_affinity(pctx *p, const char *what, const field *f, ccfg_model *m) {
    for (int k = M_PREFIX_BYTES; k <= M_VNODES; k++)
        if (f[k].k && m->policy != ROUTE_PREFIX_AFFINITY)
            return fail_at(p, line_of(f[k].k), "%s: %s is only for policy prefix_affinity", what, model_keys[k]);
    int pb = (int)m->prefix_bytes;
    if (f[M_PREFIX_BYTES].v && get_int(p, what, &f[M_PREFIX_BYTES], 1, 1 << 20, &pb)) return -1;
    m->prefix_bytes = (size_t)pb;
    if (f[M_VNODES].v && get_int(p, what, &f[M_VNODES], 1, 1024, &m->vnodes)) return -1;
    if (f[M_LOAD_FACTOR].v) {
        const char *s = scalar(f[M_LOAD_FACTOR].v);
        double v;
        /* route treats <= 1 as "unset": a bound at the mean would refuse every hot prefix */
        if (!s || !parse_num(s, &v) || !(v > 1.0) || v > 100)
            return fail_at(p, line_of(f[M_LOAD_FACTOR].v), "%s: expected a number > 1 and <= 100, got %s",
                           key_path(p, what, "load_factor"), s ? q(p, s) : kind_name(f[M_LOAD_FACTOR].v));
        m->load_factor = v;
    }
    return 0;
}

static int parse_backends(pctx *p, const cluster_config *c, const char *what, const field *f, ccfg_model *m) {
    yaml_node_item_t *it;
    int n;
    if (get_list(p, what, f, CCFG_MAX_ITEMS, &it, &n)) return -1;
    if (n && !(m->backends = calloc((size_t)n, sizeof *m->backends))) return oom(p);
    for (int i = 0; i < n; i++) {
        m->n_backends = i + 1;
        if (parse_backend(p, c, m, node_at(p, it[i]), i, &m->backends[i])) return -1;
    }
    return check_backend_dups(p, m);
}

static int parse_rules(pctx *p, const char *what, const field *f, ccfg_model *m) {
    yaml_node_item_t *it;
    int n;
    if (get_list(p, what, f, CCFG_MAX_ITEMS, &it, &n)) return -1;
    if (n && !(m->rules = calloc((size_t)n, sizeof *m->rules))) return oom(p);
    for (int i = 0; i < n; i++) {
        m->n_rules = i + 1;
        if (parse_rule(p, m, node_at(p, it[i]), i, &m->rules[i])) return -1;
    }
    return 0;
}

/* The keys that go with the policy: backends xor rules (+ default), hedging only with backends. */
static int check_policy_keys(pctx *p, const char *what, const field *f, const ccfg_model *m) {
    if (f[M_STICKY].k && m->policy != ROUTE_WEIGHTED)
        return fail_at(p, line_of(f[M_STICKY].k), "%s: sticky is only for policy weighted", what);
    if (m->policy > CCFG_POLICY_RULES) {
        /* classify / cascade / ensemble / pipeline: config_compose.c checked their own keys */
        static const int not_composed[] = {M_BACKENDS, M_RULES, M_HEDGE, M_HEDGE_AFTER, M_FALLBACK};
        for (size_t i = 0; i < sizeof not_composed / sizeof *not_composed; i++) {
            const field *g = &f[not_composed[i]];
            if (g->k)
                return fail_at(p, line_of(g->k), "%s: %s is not for policy %s (it calls other model names)",
                               what, fkey(g), scalar(f[M_POLICY].v));
        }
        if (f[M_DEFAULT].k && m->policy != CCFG_POLICY_CLASSIFY)
            return fail_at(p, line_of(f[M_DEFAULT].k), "%s: default: only with policy rules or classify", what);
        if (m->policy == CCFG_POLICY_CLASSIFY && !f[M_DEFAULT].v)
            return fail_at(p, m->line, "%s: policy classify needs default: (the model for low confidence or "
                           "an unmapped label)", what);
        return 0;
    }
    bool rules = m->policy == CCFG_POLICY_RULES;
    if (rules) {
        if (!m->n_rules) return fail_at(p, m->line, "%s: policy rules needs a non-empty rules: list", what);
        static const int not_for_rules[] = {M_BACKENDS, M_FALLBACK, M_HEDGE, M_HEDGE_AFTER};
        for (size_t i = 0; i < sizeof not_for_rules / sizeof *not_for_rules; i++) {
            const field *g = &f[not_for_rules[i]];
            if (g->k)
                return fail_at(p, line_of(g->k), "%s: %s is not for policy rules (a rules model only picks "
                               "another model)", what, fkey(g));
        }
        return 0;
    }
    const char *pol = route_policy_name((route_policy)m->policy);
    if (!m->n_backends) return fail_at(p, m->line, "%s: policy %s needs a non-empty backends: list", what, pol);
    if (f[M_RULES].k) return fail_at(p, line_of(f[M_RULES].k), "%s: rules: only with policy rules (policy is %s)", what, pol);
    if (f[M_DEFAULT].k) return fail_at(p, line_of(f[M_DEFAULT].k), "%s: default: only with policy rules (policy is %s)", what, pol);
    if (f[M_HEDGE_AFTER].k && !m->hedge)
        return fail_at(p, line_of(f[M_HEDGE_AFTER].k), "%s: hedge_after_ms needs hedge: true", what);
    return 0;
}

static int parse_model(pctx *p, const cluster_config *c, yaml_node_t *n, int idx, ccfg_model *m) {
    field f[M_N];
    char what[QBUF];
    entry_name(p, n, "model", idx, what);
    *m = (ccfg_model){.policy = ROUTE_ROUND_ROBIN, .prefix_bytes = 256, .load_factor = 1.25, .vnodes = 64,
                      .line = line_of(n)};
    if (get_fields(p, n, what, model_keys, f)) return -1;
    if (!f[M_NAME].v) return fail_at(p, m->line, "%s: missing name", what);
    if (get_name(p, what, &f[M_NAME], &m->name)) return -1;
    snprintf(what, sizeof what, "model %s", q(p, m->name));
    if (parse_aliases(p, what, &f[M_ALIASES], m)) return -1;
    if (f[M_POLICY].v && parse_policy(p, what, &f[M_POLICY], &m->policy)) return -1;
    if (parse_backends(p, c, what, &f[M_BACKENDS], m) || parse_rules(p, what, &f[M_RULES], m)) return -1;
    if (f[M_DEFAULT].v) {
        if (get_name(p, what, &f[M_DEFAULT], &m->default_target)) return -1;
        m->default_line = line_of(f[M_DEFAULT].v);
    }
    if (f[M_FALLBACK].v) {
        if (get_name(p, what, &f[M_FALLBACK], &m->fallback)) return -1;
        m->fallback_line = line_of(f[M_FALLBACK].v);
    }
    if (f[M_HEDGE].v && get_bool(p, what, &f[M_HEDGE], &m->hedge)) return -1;
    if (f[M_HEDGE_AFTER].v && get_ms(p, what, &f[M_HEDGE_AFTER], true, &m->hedge_after_ms)) return -1;
    if (parse_affinity(p, what, f, m)) return -1;
    if (f[M_STICKY].v) {
        if (get_str(p, what, &f[M_STICKY], &m->sticky)) return -1;
        const char *h = m->sticky + 7;
        bool hdr = !strncmp(m->sticky, "header:", 7) && *h && strlen(h) < 64 && strspn(h, "abcdefghijklmnopqrstuvwxyz"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == strlen(h);
        if (strcmp(m->sticky, "user") && !hdr)
            return fail_at(p, line_of(f[M_STICKY].v), "%s: sticky %s: expected user or header:NAME", what,
                           q(p, m->sticky));
    }
    if (ccfg_parse_compose(p, what, &f[M_COMPOSE], m)) return -1;
    return check_policy_keys(p, what, f, m);
}

/* ============================================================ cross-references ===== */

typedef struct name_ref {
    const char *s;
    int line, model, order;
} name_ref;

static int cmp_ref(const void *a, const void *b) {
    const name_ref *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

/* Model names and aliases share one namespace: sorted, a clash is two neighbours. Reports
 * the clash whose second use comes first in the file. */
static int check_model_names(pctx *p, const cluster_config *c) {
    int n = 0;
    for (int i = 0; i < c->n_models; i++) n += 1 + c->models[i].n_aliases;
    name_ref *r = malloc((size_t)n * sizeof *r);
    if (!r) return oom(p);
    n = 0;
    for (int i = 0; i < c->n_models; i++) {
        const ccfg_model *m = &c->models[i];
        r[n] = (name_ref){m->name, m->line, i, n}, n++;
        for (int a = 0; a < m->n_aliases; a++) r[n] = (name_ref){m->aliases[a], m->line, i, n}, n++;
    }
    qsort(r, (size_t)n, sizeof *r, cmp_ref);
    int best = -1;
    for (int i = 1; i < n; i++)
        if (!strcmp(r[i].s, r[i - 1].s) && (best < 0 || r[i].order < r[best].order)) best = i;
    int rc = 0;
    if (best >= 0)
        rc = fail_at(p, r[best].line, "model %s: name or alias %s is already used by model %s (line %d)",
                     q(p, c->models[r[best].model].name), q(p, r[best].s), q(p, c->models[r[best - 1].model].name),
                     r[best - 1].line);
    free(r);
    return rc;
}

static int model_index(const cluster_config *c, const char *name) {
    const ccfg_model *m = ccfg_find_model(c, name);
    return m ? (int)(m - c->models) : -1;
}

/* A target (rule, default, fallback) names a model by name or alias; stored as the name. Rules
 * targets must have backends, so that routing never chains through rules models. */
static int resolve_target(pctx *p, const cluster_config *c, const ccfg_model *m, const char *kind, int line,
                          char **t) {
    int j = model_index(c, *t);
    if (j < 0) return fail_at(p, line, "model %s: %s %s is not a defined model", q(p, m->name), kind, q(p, *t));
    if (c->models[j].policy == CCFG_POLICY_RULES)
        return fail_at(p, line, "model %s: %s %s is a rules model (targets must have backends)", q(p, m->name), kind,
                       q(p, *t));
    if (strcmp(*t, c->models[j].name)) {
        char *name = strdup(c->models[j].name);
        if (!name) return oom(p);
        free(*t), *t = name;
    }
    return 0;
}

static int check_targets(pctx *p, const cluster_config *c, ccfg_model *m) {
    for (int r = 0; r < m->n_rules; r++)
        if (resolve_target(p, c, m, "rule target", m->rules[r].line, &m->rules[r].target)) return -1;
    if (m->default_target && resolve_target(p, c, m, "default", m->default_line, &m->default_target)) return -1;
    if (!m->fallback) return 0;
    if (resolve_target(p, c, m, "fallback", m->fallback_line, &m->fallback)) return -1;
    if (!strcmp(m->fallback, m->name))
        return fail_at(p, m->fallback_line, "model %s: fallback points to itself", q(p, m->name));
    return 0;
}

/* Following fallbacks from any model must end: a loop would bounce a request forever. */
static int check_fallback_loops(pctx *p, const cluster_config *c) {
    for (int i = 0; i < c->n_models; i++) {
        int j = c->models[i].fallback ? model_index(c, c->models[i].fallback) : -1;
        for (int steps = 0; j >= 0 && j != i && steps < c->n_models; steps++)
            j = c->models[j].fallback ? model_index(c, c->models[j].fallback) : -1;
        if (j == i)
            return fail_at(p, c->models[i].fallback_line, "model %s: fallback %s leads back to %s (fallback loop)",
                           q(p, c->models[i].name), q(p, c->models[i].fallback), q(p, c->models[i].name));
    }
    return 0;
}

static int parse_models(pctx *p, cluster_config *c, const field *f, const yaml_node_t *root) {
    yaml_node_item_t *it;
    int n;
    if (get_list(p, "", f, CCFG_MAX_ITEMS, &it, &n)) return -1;
    if (!n)
        return fail_at(p, f->k ? line_of(f->k) : line_of(root), "no models: defined (at least one is needed)");
    if (!(c->models = calloc((size_t)n, sizeof *c->models))) return oom(p);
    for (int i = 0; i < n; i++) {
        c->n_models = i + 1;
        if (parse_model(p, c, node_at(p, it[i]), i, &c->models[i])) return -1;
    }
    if (check_model_names(p, c)) return -1;
    for (int i = 0; i < n; i++)
        if (check_targets(p, c, &c->models[i])) return -1;
    if (check_fallback_loops(p, c)) return -1;
    return ccfg_check_compose(p, c);
}

/* ============================================================ top level ===== */

enum { T_LISTEN, T_KEY, T_KEY_ENV, T_KEY_FILE, T_TOKEN, T_TOKEN_ENV, T_TOKEN_FILE, T_HEALTH, T_RETRY, T_JOIN,
       T_SERVE, T_LOCAL, T_NODES, T_MODELS, T_N };

static int parse_root(pctx *p, cluster_config *c, yaml_node_t *root) {
    static const char *const keys[] = {"listen", "api_key", "api_key_env", "api_key_file", "join_token",
                                       "join_token_env", "join_token_file", "health", "retry", "join", "serve",
                                       "local", "nodes", "models", NULL};
    field f[T_N];
    if (get_fields(p, root, "", keys, f)) return -1;
    if (f[T_LISTEN].v && parse_listen(p, c, f[T_LISTEN].v)) return -1;
    if (get_secret(p, "", "api_key", &f[T_KEY], &c->api_key) ||
        get_secret(p, "", "join_token", &f[T_TOKEN], &c->join_token))
        return -1;
    if (f[T_HEALTH].v && parse_health(p, c, f[T_HEALTH].v)) return -1;
    if (f[T_RETRY].v && parse_retry(p, c, f[T_RETRY].v)) return -1;
    if (f[T_JOIN].v && parse_join(p, c, f[T_JOIN].v)) return -1;
    if (f[T_SERVE].v && parse_serve(p, c, f[T_SERVE].v)) return -1;
    if (parse_locals(p, c, &f[T_LOCAL]) || parse_nodes(p, c, &f[T_NODES])) return -1;
    return parse_models(p, c, &f[T_MODELS], root);
}

/* ============================================================ shared helpers (config_int.h) ===== */

int ccfgi_fail(pctx *p, int line, const char *fmt, ...) {
    char msg[SH_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fail_at(p, line, "%s", msg);
}
int ccfgi_oom(pctx *p) { return oom(p); }
int ccfgi_line(const yaml_node_t *n) { return line_of(n); }
yaml_node_t *ccfgi_node(pctx *p, int idx) { return node_at(p, idx); }
const char *ccfgi_scalar(const yaml_node_t *n) { return scalar(n); }
const char *ccfgi_q(pctx *p, const char *s) { return q(p, s); }
const char *ccfgi_kind(const yaml_node_t *n) { return kind_name(n); }
int ccfgi_fields(pctx *p, yaml_node_t *map, const char *what, const char *const *keys, ccfg_field *out) {
    return get_fields(p, map, what, keys, out);
}
int ccfgi_str(pctx *p, const char *what, const ccfg_field *f, char **out) { return get_str(p, what, f, out); }
int ccfgi_name(pctx *p, const char *what, const ccfg_field *f, char **out) { return get_name(p, what, f, out); }
int ccfgi_int(pctx *p, const char *what, const ccfg_field *f, long lo, long hi, int *out) {
    return get_int(p, what, f, lo, hi, out);
}
int ccfgi_ms(pctx *p, const char *what, const ccfg_field *f, bool zero_ok, double *out) {
    return get_ms(p, what, f, zero_ok, out);
}
int ccfgi_list(pctx *p, const char *what, const ccfg_field *f, int max, yaml_node_item_t **items, int *n) {
    return get_list(p, what, f, max, items, n);
}

/* A number in lo..hi. */
int ccfgi_num(pctx *p, const char *what, const ccfg_field *f, double lo, double hi, double *out) {
    const char *s = scalar(f->v);
    double v;
    if (!s || !parse_num(s, &v) || v < lo || v > hi)
        return fail_at(p, line_of(f->v), "%s: expected a number in %g..%g, got %s", key_path(p, what, fkey(f)), lo,
                       hi, s ? q(p, s) : kind_name(f->v));
    *out = v;
    return 0;
}

static void json_str(FILE *o, const char *s) {
    fputc('"', o);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') fprintf(o, "\\%c", *c);
        else if (*c < 0x20) fprintf(o, "\\u%04x", *c);
        else fputc(*c, o);
    }
    fputc('"', o);
}

/* Appends n as JSON to the memstream. Depth is bounded by the prescan (CCFG_MAX_DEPTH). */
static int json_of(pctx *p, FILE *o, yaml_node_t *n) {
    if (n->type == YAML_SCALAR_NODE) {
        const char *s = scalar(n);
        if (!s) return fail_at(p, line_of(n), "a string with a NUL byte");
        double v;
        bool plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (plain && (is_null(n) || !strcmp(s, "true") || !strcmp(s, "false"))) fputs(*s ? s : "null", o);
        else if (plain && parse_num(s, &v)) fputs(s, o);
        else json_str(o, s);
        return 0;
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        fputc('[', o);
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            if (it > n->data.sequence.items.start) fputc(',', o);
            yaml_node_t *e = node_at(p, *it);
            if (!e || json_of(p, o, e)) return -1;
        }
        fputc(']', o);
        return 0;
    }
    fputc('{', o);
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node_at(p, pr->key), *v = node_at(p, pr->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE) return fail_at(p, line_of(n), "mapping keys must be strings");
        if (pr > n->data.mapping.pairs.start) fputc(',', o);
        const char *ks = scalar(k);
        if (!ks) return fail_at(p, line_of(k), "a key with a NUL byte");
        json_str(o, ks);
        fputc(':', o);
        if (json_of(p, o, v)) return -1;
    }
    fputc('}', o);
    return 0;
}

int ccfgi_json(pctx *p, yaml_node_t *n, char **out) {
    size_t len = 0;
    *out = NULL;
    FILE *o = open_memstream(out, &len);
    if (!o) return oom(p);
    int rc = json_of(p, o, n);
    fclose(o);
    if (rc) free(*out), *out = NULL;
    return rc;
}

/* ============================================================ YAML passes ===== */

static int line_at_offset(const char *text, size_t len, size_t off) {
    int line = 1;
    for (size_t i = 0; i < off && i < len; i++) line += text[i] == '\n';
    return line;
}

static int yaml_fail(pctx *p, const yaml_parser_t *y, const char *text, size_t len) {
    if (y->error == YAML_MEMORY_ERROR) return oom(p);
    int line = y->error == YAML_READER_ERROR ? line_at_offset(text, len, y->problem_offset)
                                             : (int)y->problem_mark.line + 1;
    const char *problem = y->problem ? y->problem : "unknown error";
    if (y->context)
        return fail_at(p, line, "YAML syntax error: %s %s (line %d)", problem, y->context, (int)y->context_mark.line + 1);
    return fail_at(p, line, "YAML syntax error: %s", problem);
}

/* Event pass: syntax errors, one document, no aliases, bounded nesting. */
static int prescan(pctx *p, const char *text, size_t len) {
    yaml_parser_t y;
    if (!yaml_parser_initialize(&y)) return oom(p);
    yaml_parser_set_input_string(&y, (const unsigned char *)text, len);
    int depth = 0, docs = 0, rc = 0;
    for (bool done = false; !done && !rc;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&y, &ev)) {
            rc = yaml_fail(p, &y, text, len);
            break;
        }
        int line = (int)ev.start_mark.line + 1;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) rc = fail_at(p, line, "more than one YAML document (one config per file)");
            break;
        case YAML_ALIAS_EVENT: rc = fail_at(p, line, "YAML aliases (*name) are not supported"); break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (++depth > CCFG_MAX_DEPTH) rc = fail_at(p, line, "nested deeper than %d levels", CCFG_MAX_DEPTH);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: depth--; break;
        default: break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&y);
    return rc;
}

static int load_doc(pctx *p, const char *text, size_t len) {
    yaml_parser_t y;
    if (!yaml_parser_initialize(&y)) return oom(p);
    yaml_parser_set_input_string(&y, (const unsigned char *)text, len);
    int rc = yaml_parser_load(&y, &p->doc) ? 0 : yaml_fail(p, &y, text, len);
    yaml_parser_delete(&y);
    return rc;
}

static void set_defaults(cluster_config *c) {
    c->port = -1;
    c->health_interval_ms = 500;
    c->health_timeout_ms = 400;
    c->fail_threshold = 3;
    c->cooldown_ms = 2000;
    c->max_attempts = 3;
    c->connect_timeout_ms = 500;
    c->first_byte_timeout_ms = 30000;
    c->heartbeat_ms = 1000;
    c->node_ttl_ms = 3000;
}

static cluster_config *parse_in(pctx *p, const char *text, size_t len) {
    if (len > CCFG_MAX_FILE_BYTES)
        return fail_at(p, 1, "file too large (%zu bytes, at most %d)", len, CCFG_MAX_FILE_BYTES), NULL;
    if (prescan(p, text, len) || load_doc(p, text, len)) return NULL;
    cluster_config *c = calloc(1, sizeof *c);
    yaml_node_t *root = yaml_document_get_root_node(&p->doc);
    int rc = !c ? oom(p) : !(c->path = strdup(p->name)) ? oom(p) : 0;
    if (!rc && !root) rc = fail_at(p, 1, "empty config (at least models: is needed)");
    if (!rc) set_defaults(c), rc = parse_root(p, c, root);
    yaml_document_delete(&p->doc);
    if (rc) ccfg_free(c), c = NULL;
    return c;
}

/* ============================================================ API ===== */

cluster_config *ccfg_parse(const char *text, size_t len, const char *name, sh_err *err) {
    pctx p = {.name = name ? name : "<config>", .err = err};
    if (err) err->msg[0] = 0;
    return parse_in(&p, text ? text : "", text ? len : 0);
}

/* Reads at most limit + 1 bytes, so that a huge file is refused without reading it all. */
static char *read_file(const char *path, size_t limit, size_t *len, int *e) {
    int fd = open_regular(path);
    if (fd < 0) return *e = errno, NULL;
    char *buf = malloc(limit + 2);
    size_t n = 0;
    ssize_t r = 0;
    while (buf && n < limit + 1 && (r = read(fd, buf + n, limit + 1 - n)) > 0) n += (size_t)r;
    *e = r < 0 ? errno : buf ? 0 : ENOMEM;
    close(fd);
    if (*e) return free(buf), NULL;
    buf[n] = 0;
    *len = n;
    return buf;
}

cluster_config *ccfg_load(const char *path, sh_err *err) {
    if (err) err->msg[0] = 0;
    size_t len = 0;
    int e = 0;
    char *text = read_file(path, CCFG_MAX_FILE_BYTES, &len, &e);
    if (!text) return sh_errf(err, "%s: cannot read config: %s", path, strerror(e)), NULL;
    pctx p = {.name = path, .err = err};
    const char *slash = strrchr(path, '/');
    if (slash && !(p.base_dir = strndup(path, slash == path ? 1 : (size_t)(slash - path)))) {
        free(text);
        return sh_errf(err, "%s: out of memory", path), NULL;
    }
    cluster_config *c = parse_in(&p, text, len);
    free(text);
    free(p.base_dir);
    return c;
}

static void free_model(ccfg_model *m) {
    free(m->name);
    for (int i = 0; i < m->n_aliases; i++) free(m->aliases[i]);
    free(m->aliases);
    for (int i = 0; i < m->n_backends; i++) free(m->backends[i].local), free(m->backends[i].node), free(m->backends[i].model);
    free(m->backends);
    for (int i = 0; i < m->n_rules; i++) {
        ccfg_rule *r = &m->rules[i];
        free(r->pattern), free(r->meta_key), free(r->meta_value), free(r->target);
    }
    free(m->rules);
    free(m->default_target);
    free(m->fallback);
    free(m->sticky);
    ccfg_free_compose(&m->comp);
}

void ccfg_free(cluster_config *c) {
    if (!c) return;
    free(c->host);
    free(c->api_key);
    free(c->join_token);
    for (int i = 0; i < c->n_locals; i++)
        free(c->locals[i].name), free(c->locals[i].path), free(c->locals[i].pooling);
    free(c->locals);
    for (int i = 0; i < c->n_nodes; i++) free(c->nodes[i].name), free(c->nodes[i].url), free(c->nodes[i].api_key);
    free(c->nodes);
    for (int i = 0; i < c->n_models; i++) free_model(&c->models[i]);
    free(c->models);
    free(c->path);
    free(c);
}

const char *ccfg_signal_name(int signal) {
    static const char *const names[] = {"mean_logprob", "min_prob", "margin", "classifier_prob"};
    return signal >= 0 && signal < 4 ? names[signal] : "?";
}

const char *ccfg_policy_name(int policy) {
    static const char *const extra[] = {"rules", "classify", "cascade", "ensemble", "pipeline"};
    if (policy >= 0 && policy < ROUTE_POLICY_COUNT) return route_policy_name((route_policy)policy);
    if (policy >= CCFG_POLICY_RULES && policy <= CCFG_POLICY_PIPELINE) return extra[policy - CCFG_POLICY_RULES];
    return "?";
}

const ccfg_model *ccfg_find_model(const cluster_config *c, const char *name) {
    for (int i = 0; c && name && i < c->n_models; i++) {
        const ccfg_model *m = &c->models[i];
        if (m->name && !strcmp(m->name, name)) return m;
        for (int a = 0; a < m->n_aliases; a++)
            if (m->aliases[a] && !strcmp(m->aliases[a], name)) return m;
    }
    return NULL;
}
