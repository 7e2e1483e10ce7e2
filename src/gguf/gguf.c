/*
 * gguf — the reader. See gguf.h for the contract and the file layout.
 *
 * Parsing goes through a cursor that knows how many bytes remain; every read is checked there,
 * and every count is checked against what remains *before* anything is allocated for it, so
 * the memory a file can make us allocate is bounded by a small multiple of its size.
 */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor/dtype.h"

#define MAX_KEY_LEN    65535u /* the format's limit on key length */
#define MAX_NAME_LEN   255u   /* tensor names: ggml allows 63; we are more lenient, not unbounded */
#define MAX_ARR_DEPTH  8      /* nested arrays deeper than this are refused (stack bound) */

/* ===================================================================== the cursor ===== */

typedef struct cursor {
    const uint8_t *base;
    uint64_t size; /* bytes in base */
    uint64_t pos;  /* next byte to read */
    sh_err *err;
    const char *what; /* what is being read, for messages: "header", "key 'x'", "tensor 3" */
} cursor;

static uint64_t remaining(const cursor *c) { return c->size - c->pos; }

static int need(cursor *c, uint64_t n, const char *field) {
    if (n > remaining(c))
        return sh_errf(c->err, "%s: %s: needs %llu bytes at offset %llu but only %llu remain",
                       c->what, field, (unsigned long long)n, (unsigned long long)c->pos,
                       (unsigned long long)remaining(c));
    return 0;
}

static uint64_t rd_le(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int rd_u32(cursor *c, const char *field, uint32_t *out) {
    if (need(c, 4, field)) return -1;
    *out = (uint32_t)rd_le(c->base + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int rd_u64(cursor *c, const char *field, uint64_t *out) {
    if (need(c, 8, field)) return -1;
    *out = rd_le(c->base + c->pos, 8);
    c->pos += 8;
    return 0;
}

static int rd_str(cursor *c, const char *field, gguf_str *out) {
    uint64_t len;
    if (rd_u64(c, field, &len)) return -1;
    if (len > remaining(c))
        return sh_errf(c->err, "%s: %s: string length %llu at offset %llu exceeds the %llu bytes "
                               "that remain", c->what, field, (unsigned long long)len,
                       (unsigned long long)(c->pos - 8), (unsigned long long)remaining(c));
    out->ptr = (const char *)c->base + c->pos;
    out->len = len;
    c->pos += len;
    return 0;
}

/* Reads a string that must become a C string: 1..max bytes, no NUL inside. */
static char *rd_cstr(cursor *c, const char *field, uint64_t max) {
    gguf_str s;
    if (rd_str(c, field, &s)) return NULL;
    if (s.len == 0 || s.len > max) {
        sh_errf(c->err, "%s: %s: length %llu is outside 1..%llu", c->what, field,
                (unsigned long long)s.len, (unsigned long long)max);
        return NULL;
    }
    if (memchr(s.ptr, 0, s.len)) {
        sh_errf(c->err, "%s: %s contains a NUL byte", c->what, field);
        return NULL;
    }
    char *z = malloc(s.len + 1);
    if (!z) {
        sh_errf(c->err, "%s: out of memory", c->what);
        return NULL;
    }
    memcpy(z, s.ptr, s.len);
    z[s.len] = 0;
    return z;
}

/* ============================================================== value types ===== */

static const char *const type_names[GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"};
static const uint8_t type_sizes[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *gguf_type_name(gguf_type t) {
    return (unsigned)t < GGUF_TYPE_COUNT ? type_names[t] : "?";
}

size_t gguf_type_size(gguf_type t) { return (unsigned)t < GGUF_TYPE_COUNT ? type_sizes[t] : 0; }

/* Smallest number of bytes one value of this type occupies in a file: used to bound counts
 * before allocating for them. */
static uint64_t min_value_bytes(gguf_type t) {
    if (t == GGUF_STR) return 8;      /* u64 length */
    if (t == GGUF_ARR) return 4 + 8;  /* element type + count */
    return type_sizes[t];
}

/* Decodes one little-endian scalar of type t at p into v. */
static void decode_scalar(gguf_type t, const uint8_t *p, gguf_value *v) {
    uint64_t raw = rd_le(p, type_sizes[t]);
    v->type = t;
    switch (t) {
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64: v->v.u = raw; break;
    case GGUF_BOOL: v->v.u = raw != 0; break;
    case GGUF_I8: v->v.i = (int8_t)raw; break;
    case GGUF_I16: v->v.i = (int16_t)raw; break;
    case GGUF_I32: v->v.i = (int32_t)raw; break;
    case GGUF_I64: v->v.i = (int64_t)raw; break;
    case GGUF_F32: {
        uint32_t b = (uint32_t)raw;
        float f;
        memcpy(&f, &b, 4);
        v->v.f = f;
        break;
    }
    case GGUF_F64: memcpy(&v->v.f, &raw, 8); break;
    default: SH_ASSERT(0 && "not a scalar type");
    }
}

static void value_free(gguf_value *v) {
    if (v->type != GGUF_ARR || !v->v.arr.items) return;
    if (v->v.arr.elem == GGUF_ARR)
        for (uint64_t i = 0; i < v->v.arr.n; i++) value_free(&v->v.arr.items[i]);
    free(v->v.arr.items);
    v->v.arr.items = NULL;
}

static int rd_value(cursor *c, gguf_type t, gguf_value *out, int depth);

static int rd_array(cursor *c, gguf_value *out, int depth) {
    uint32_t et;
    uint64_t n;
    out->type = GGUF_ARR;
    out->v.arr.items = NULL;
    out->v.arr.n = 0;
    if (depth >= MAX_ARR_DEPTH)
        return sh_errf(c->err, "%s: arrays nested more than %d deep", c->what, MAX_ARR_DEPTH);
    if (rd_u32(c, "array element type", &et)) return -1;
    if (et >= GGUF_TYPE_COUNT)
        return sh_errf(c->err, "%s: unknown array element type %u at offset %llu", c->what, et,
                       (unsigned long long)(c->pos - 4));
    if (rd_u64(c, "array count", &n)) return -1;
    uint64_t minb = min_value_bytes((gguf_type)et);
    if (n > remaining(c) / minb)
        return sh_errf(c->err, "%s: array of %llu %s elements cannot fit in the %llu bytes that "
                               "remain", c->what, (unsigned long long)n, type_names[et],
                       (unsigned long long)remaining(c));
    out->v.arr.elem = (gguf_type)et;
    out->v.arr.raw = c->base + c->pos;
    if (et != GGUF_STR && et != GGUF_ARR) {
        out->v.arr.n = n;
        c->pos += n * minb; /* bounded above */
        return 0;
    }
    gguf_value *items = n ? calloc(n, sizeof *items) : NULL;
    if (n && !items) return sh_errf(c->err, "%s: out of memory for %llu array items", c->what,
                                    (unsigned long long)n);
    out->v.arr.items = items;
    for (uint64_t i = 0; i < n; i++) {
        out->v.arr.n = i + 1; /* so value_free releases exactly what was parsed */
        if (rd_value(c, (gguf_type)et, &items[i], depth + 1)) {
            char tail[64];
            snprintf(tail, sizeof tail, " (array element %llu)", (unsigned long long)i);
            size_t l = strlen(c->err ? c->err->msg : "");
            if (c->err && l + strlen(tail) < SH_ERR_MAX) strcat(c->err->msg, tail);
            return -1;
        }
    }
    out->v.arr.n = n;
    return 0;
}

static int rd_value(cursor *c, gguf_type t, gguf_value *out, int depth) {
    if (t == GGUF_STR) {
        out->type = GGUF_STR;
        return rd_str(c, "string value", &out->v.str);
    }
    if (t == GGUF_ARR) return rd_array(c, out, depth);
    if (need(c, type_sizes[t], type_names[t])) return -1;
    decode_scalar(t, c->base + c->pos, out);
    c->pos += type_sizes[t];
    return 0;
}

/* ============================================================= sorted indices ===== */


typedef struct {
    const char *s;
    uint64_t i;
} name_ref;

static int cmp_name_ref(const void *a, const void *b) {
    const name_ref *x = a, *y = b;
    int r = strcmp(x->s, y->s);
    return r ? r : (x->i < y->i ? -1 : x->i > y->i);
}

/* Builds an index of n names sorted by name; fails on the first duplicate. */
static uint64_t *build_index(const char *const *names, size_t stride, uint64_t n,
                             const char *what, sh_err *err) {
    name_ref *refs = malloc((n ? n : 1) * sizeof *refs);
    uint64_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!refs || !idx) {
        free(refs);
        free(idx);
        sh_errf(err, "out of memory indexing %llu %ss", (unsigned long long)n, what);
        return NULL;
    }
    for (uint64_t i = 0; i < n; i++) {
        refs[i].s = *(const char *const *)((const char *)names + i * stride);
        refs[i].i = i;
    }
    qsort(refs, n, sizeof *refs, cmp_name_ref);
    for (uint64_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(refs[i - 1].s, refs[i].s) == 0) {
            sh_errf(err, "duplicate %s '%s' (entries %llu and %llu)", what, refs[i].s,
                    (unsigned long long)refs[i - 1].i, (unsigned long long)refs[i].i);
            free(refs);
            free(idx);
            return NULL;
        }
        idx[i] = refs[i].i;
    }
    free(refs);
    return idx;
}

/* ================================================================== parsing ===== */

static int parse_header(gguf_ctx *g, cursor *c) {
    uint32_t magic, version;
    c->what = "header";
    if (rd_u32(c, "magic", &magic)) return -1;
    if (magic != GGUF_MAGIC) {
        const uint8_t *m = c->base;
        return sh_errf(c->err, "not a GGUF file: magic bytes %02x %02x %02x %02x, expected "
                               "\"GGUF\"", m[0], m[1], m[2], m[3]);
    }
    if (rd_u32(c, "version", &version)) return -1;
    if (version == 1)
        return sh_errf(c->err, "GGUF version 1 is not supported (only 2 and 3); re-convert the "
                               "model with a current tool");
    if (version != 2 && version != 3) {
        uint32_t swapped = __builtin_bswap32(version);
        if (swapped == 2 || swapped == 3)
            return sh_errf(c->err, "big-endian GGUF files are not supported");
        return sh_errf(c->err, "unsupported GGUF version %u (only 2 and 3)", version);
    }
    g->version = version;
    if (rd_u64(c, "tensor count", &g->n_tensors) || rd_u64(c, "metadata count", &g->n_kv))
        return -1;
    /* Each key/value needs >= 13 bytes, each tensor info >= 32: bound both before allocating. */
    if (g->n_kv > remaining(c) / 13)
        return sh_errf(c->err, "metadata count %llu cannot fit in a %llu-byte file",
                       (unsigned long long)g->n_kv, (unsigned long long)c->size);
    if (g->n_tensors > remaining(c) / 32)
        return sh_errf(c->err, "tensor count %llu cannot fit in a %llu-byte file",
                       (unsigned long long)g->n_tensors, (unsigned long long)c->size);
    return 0;
}

static int parse_kvs(gguf_ctx *g, cursor *c) {
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    if (!g->kv) return sh_errf(c->err, "out of memory for %llu metadata entries",
                               (unsigned long long)g->n_kv);
    char what[96];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        snprintf(what, sizeof what, "metadata entry %llu", (unsigned long long)i);
        c->what = what;
        kv->key = rd_cstr(c, "key", MAX_KEY_LEN);
        if (!kv->key) {
            g->n_kv = i; /* free only what exists */
            return -1;
        }
        snprintf(what, sizeof what, "metadata '%.64s'", kv->key);
        uint32_t t;
        if (rd_u32(c, "value type", &t)) goto fail;
        if (t >= GGUF_TYPE_COUNT) {
            sh_errf(c->err, "%s: unknown value type %u", what, t);
            goto fail;
        }
        if (rd_value(c, (gguf_type)t, &kv->val, 0)) goto fail;
        continue;
    fail:
        g->n_kv = i + 1;
        return -1;
    }
    c->what = "metadata";
    g->kv_index_ = build_index((const char *const *)&g->kv[0].key, sizeof(gguf_kv), g->n_kv,
                               "metadata key", c->err);
    if (!g->kv_index_) return -1;

    const gguf_kv *al = gguf_find(g, "general.alignment");
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (al) {
        uint64_t a;
        if (!gguf_get_u64(g, "general.alignment", &a))
            return sh_errf(c->err, "general.alignment has type %s, expected u32",
                           gguf_type_name(al->val.type));
        if (a == 0 || (a & (a - 1)) || a > (1u << 30))
            return sh_errf(c->err, "general.alignment %llu is not a power of two in 1..2^30",
                           (unsigned long long)a);
        g->alignment = (uint32_t)a;
    }
    return 0;
}

static int parse_tensor_info(gguf_ctx *g, cursor *c, uint64_t i) {
    gguf_tensor *t = &g->tensors[i];
    char what[96];
    snprintf(what, sizeof what, "tensor info %llu", (unsigned long long)i);
    c->what = what;
    t->name = rd_cstr(c, "name", MAX_NAME_LEN);
    if (!t->name) return -1;
    snprintf(what, sizeof what, "tensor '%.64s'", t->name);
    if (rd_u32(c, "dimension count", &t->n_dims)) return -1;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return sh_errf(c->err, "%s: %u dimensions (must be 1..%d)", what, t->n_dims,
                       GGUF_MAX_DIMS);
    uint64_t n = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims) continue;
        if (rd_u64(c, "dimension", &t->ne[d])) return -1;
        if (t->ne[d] > (uint64_t)INT64_MAX)
            return sh_errf(c->err, "%s: dimension %u is negative", what, d);
        if (t->ne[d] != 0 && n > (uint64_t)INT64_MAX / t->ne[d])
            return sh_errf(c->err, "%s: element count overflows", what);
        n *= t->ne[d];
    }
    t->n_elems = n;
    if (rd_u32(c, "type", &t->type) || rd_u64(c, "data offset", &t->offset)) return -1;
    if (!dtype_known(t->type))
        return sh_errf(c->err, "%s: unknown tensor type id %u", what, t->type);
    uint64_t row;
    if (!dtype_row_bytes(t->type, t->ne[0], &row))
        return sh_errf(c->err, "%s: row length %llu is not a multiple of the %s block size %u",
                       what, (unsigned long long)t->ne[0], dtype_name(t->type),
                       dtype_block_elems(t->type));
    uint64_t rows = t->ne[0] ? n / t->ne[0] : 0;
    if (rows && row > UINT64_MAX / rows) return sh_errf(c->err, "%s: byte size overflows", what);
    t->size = row * rows;
    if (t->offset % g->alignment)
        return sh_errf(c->err, "%s: data offset %llu is not a multiple of the alignment %u", what,
                       (unsigned long long)t->offset, g->alignment);
    return 0;
}

typedef struct {
    uint64_t off, end, i;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off ? 1 : (x->i > y->i) - (x->i < y->i);
}

/* Places the data section and checks every tensor lies inside it, without overlaps. */
static int place_tensors(gguf_ctx *g, cursor *c) {
    c->what = "tensor data";
    uint64_t a = g->alignment;
    uint64_t end_infos = c->pos;
    if (end_infos > UINT64_MAX - a) return sh_errf(c->err, "data offset overflows");
    g->data_offset = (end_infos + a - 1) / a * a;
    uint64_t data_size = g->data_offset <= g->size ? g->size - g->data_offset : 0;
    if (g->n_tensors && g->data_offset > g->size)
        return sh_errf(c->err, "file ends at %llu, before the data section at %llu",
                       (unsigned long long)g->size, (unsigned long long)g->data_offset);
    span *sp = malloc((g->n_tensors ? g->n_tensors : 1) * sizeof *sp);
    if (!sp) return sh_errf(c->err, "out of memory");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        if (t->offset > data_size || t->size > data_size - t->offset) {
            sh_errf(c->err, "tensor '%s': data [%llu, +%llu) runs past the end of the data "
                            "section (%llu bytes); the file is truncated or the offset is wrong",
                    t->name, (unsigned long long)t->offset, (unsigned long long)t->size,
                    (unsigned long long)data_size);
            free(sp);
            return -1;
        }
        t->data = c->base + g->data_offset + t->offset;
        sp[i] = (span){t->offset, t->offset + t->size, i};
    }
    qsort(sp, g->n_tensors, sizeof *sp, cmp_span);
    for (uint64_t k = 1; k < g->n_tensors; k++) {
        if (sp[k].off < sp[k - 1].end && sp[k].end > sp[k].off && sp[k - 1].end > sp[k - 1].off) {
            sh_errf(c->err, "tensors '%s' and '%s' overlap (offsets %llu and %llu)",
                    g->tensors[sp[k - 1].i].name, g->tensors[sp[k].i].name,
                    (unsigned long long)sp[k - 1].off, (unsigned long long)sp[k].off);
            free(sp);
            return -1;
        }
    }
    free(sp);
    return 0;
}

static int parse(gguf_ctx *g, sh_err *err) {
    cursor c = {.base = g->base, .size = g->size, .pos = 0, .err = err, .what = "header"};
    if (parse_header(g, &c) || parse_kvs(g, &c)) return -1;
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->tensors) return sh_errf(err, "out of memory for tensor infos");
    uint64_t n = g->n_tensors;
    for (uint64_t i = 0; i < n; i++) {
        if (parse_tensor_info(g, &c, i)) {
            g->n_tensors = i + 1; /* free what was parsed */
            return -1;
        }
    }
    c.what = "tensor infos";
    g->tensor_index_ = build_index((const char *const *)&g->tensors[0].name,
                                   sizeof(gguf_tensor), g->n_tensors, "tensor name", err);
    if (!g->tensor_index_) return -1;
    return place_tensors(g, &c);
}

/* ================================================================ open / free ===== */

static gguf_ctx *open_common(gguf_ctx *g, sh_err *err) {
    if (parse(g, err)) {
        sh_err_prefix(err, g->path);
        gguf_free(g);
        return NULL;
    }
    return g;
}

gguf_ctx *gguf_open_mem(const void *buf, size_t len, const char *name, sh_err *err) {
    gguf_ctx *g = calloc(1, sizeof *g);
    if (!g) {
        sh_errf(err, "%s: out of memory", name ? name : "<memory>");
        return NULL;
    }
    g->path = strdup(name ? name : "<memory>");
    g->base = buf;
    g->size = len;
    if (!g->path) {
        free(g);
        sh_errf(err, "out of memory");
        return NULL;
    }
    return open_common(g, err);
}

gguf_ctx *gguf_open(const char *path, sh_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        sh_errf(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        sh_errf(err, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size == 0) {
        sh_errf(err, "%s: empty file", path);
        close(fd);
        return NULL;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        sh_errf(err, "%s: mmap failed: %s", path, strerror(errno));
        return NULL;
    }
    gguf_ctx *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        munmap(m, (size_t)st.st_size);
        sh_errf(err, "%s: out of memory", path);
        return NULL;
    }
    g->base = m;
    g->size = (uint64_t)st.st_size;
    g->mapped = true;
    return open_common(g, err);
}

void gguf_free(gguf_ctx *g) {
    if (!g) return;
    for (uint64_t i = 0; g->kv && i < g->n_kv; i++) {
        free(g->kv[i].key);
        value_free(&g->kv[i].val);
    }
    free(g->kv);
    for (uint64_t i = 0; g->tensors && i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    free(g->kv_index_);
    free(g->tensor_index_);
    if (g->mapped) munmap((void *)g->base, g->size);
    free(g->path);
    free(g);
}

/* ================================================================= look-ups ===== */

const gguf_kv *gguf_find(const gguf_ctx *g, const char *key) {
    if (!g || !key || !g->kv_index_) return NULL;
    uint64_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const gguf_kv *kv = &g->kv[g->kv_index_[mid]];
        int r = strcmp(kv->key, key);
        if (r == 0) return kv;
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_ctx *g, const char *name) {
    if (!g || !name || !g->tensor_index_) return NULL;
    uint64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const gguf_tensor *t = &g->tensors[g->tensor_index_[mid]];
        int r = strcmp(t->name, name);
        if (r == 0) return t;
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static bool is_unsigned(gguf_type t) {
    return t == GGUF_U8 || t == GGUF_U16 || t == GGUF_U32 || t == GGUF_U64;
}
static bool is_signed(gguf_type t) {
    return t == GGUF_I8 || t == GGUF_I16 || t == GGUF_I32 || t == GGUF_I64;
}

static bool val_u64(const gguf_value *v, uint64_t *out) {
    if (is_unsigned(v->type) || v->type == GGUF_BOOL) *out = v->v.u;
    else if (is_signed(v->type) && v->v.i >= 0) *out = (uint64_t)v->v.i;
    else return false;
    return true;
}

static bool val_i64(const gguf_value *v, int64_t *out) {
    if (is_signed(v->type)) *out = v->v.i;
    else if (is_unsigned(v->type) && v->v.u <= (uint64_t)INT64_MAX) *out = (int64_t)v->v.u;
    else return false;
    return true;
}

static bool val_f64(const gguf_value *v, double *out) {
    if (v->type == GGUF_F32 || v->type == GGUF_F64) *out = v->v.f;
    else if (is_signed(v->type)) *out = (double)v->v.i;
    else if (is_unsigned(v->type)) *out = (double)v->v.u;
    else return false;
    return true;
}

bool gguf_get_u64(const gguf_ctx *g, const char *key, uint64_t *out) {
    const gguf_kv *kv = gguf_find(g, key);
    return kv && val_u64(&kv->val, out);
}

bool gguf_get_u32(const gguf_ctx *g, const char *key, uint32_t *out) {
    uint64_t v;
    if (!gguf_get_u64(g, key, &v) || v > UINT32_MAX) return false;
    *out = (uint32_t)v;
    return true;
}

bool gguf_get_i64(const gguf_ctx *g, const char *key, int64_t *out) {
    const gguf_kv *kv = gguf_find(g, key);
    return kv && val_i64(&kv->val, out);
}

bool gguf_get_f64(const gguf_ctx *g, const char *key, double *out) {
    const gguf_kv *kv = gguf_find(g, key);
    return kv && val_f64(&kv->val, out);
}

bool gguf_get_f32(const gguf_ctx *g, const char *key, float *out) {
    double d;
    if (!gguf_get_f64(g, key, &d)) return false;
    *out = (float)d;
    return true;
}

bool gguf_get_bool(const gguf_ctx *g, const char *key, bool *out) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return false;
    if (kv->val.type == GGUF_BOOL) *out = kv->val.v.u != 0;
    else if (is_unsigned(kv->val.type) && kv->val.v.u <= 1) *out = kv->val.v.u != 0;
    else return false;
    return true;
}

bool gguf_get_str(const gguf_ctx *g, const char *key, gguf_str *out) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv || kv->val.type != GGUF_STR) return false;
    *out = kv->val.v.str;
    return true;
}

const gguf_arr *gguf_get_arr(const gguf_ctx *g, const char *key, gguf_type elem) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv || kv->val.type != GGUF_ARR) return NULL;
    if (elem != GGUF_TYPE_COUNT && kv->val.v.arr.elem != elem) return NULL;
    return &kv->val.v.arr;
}

static bool arr_elem(const gguf_arr *a, uint64_t i, gguf_value *v) {
    if (!a || i >= a->n || a->elem == GGUF_STR || a->elem == GGUF_ARR) return false;
    decode_scalar(a->elem, a->raw + i * type_sizes[a->elem], v);
    return true;
}

bool gguf_arr_u64(const gguf_arr *a, uint64_t i, uint64_t *out) {
    gguf_value v;
    return arr_elem(a, i, &v) && val_u64(&v, out);
}

bool gguf_arr_i64(const gguf_arr *a, uint64_t i, int64_t *out) {
    gguf_value v;
    return arr_elem(a, i, &v) && val_i64(&v, out);
}

bool gguf_arr_f64(const gguf_arr *a, uint64_t i, double *out) {
    gguf_value v;
    return arr_elem(a, i, &v) && val_f64(&v, out);
}

bool gguf_str_eq(gguf_str s, const char *z) {
    size_t n = strlen(z);
    return s.len == n && memcmp(s.ptr, z, n) == 0;
}
