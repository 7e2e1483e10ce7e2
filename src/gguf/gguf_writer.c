/*
 * gguf_writer — see gguf_writer.h.
 *
 * Metadata is serialised into a growing byte buffer as it is added; tensor infos are kept as a
 * list and their offsets assigned at write time, each tensor's data padded to the alignment.
 */
#include "gguf/gguf_writer.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/dtype.h"

typedef struct wtensor {
    char *name;
    uint32_t type, n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    const void *data;
    uint64_t size;
} wtensor;

struct gguf_writer {
    uint8_t *meta; /* serialised key/value pairs */
    size_t meta_len, meta_cap;
    uint64_t n_kv;
    char **keys; /* for the duplicate check */
    wtensor *tensors;
    uint64_t n_tensors, cap_tensors;
    uint32_t alignment;
    sh_err err; /* sticky: first failure */
    int failed;
};

/* ============================================================= byte buffer ===== */

static int fail(gguf_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(gguf_writer *w, const char *fmt, ...) {
    if (!w->failed) {
        w->failed = 1;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->err.msg, sizeof w->err.msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int put(gguf_writer *w, const void *p, size_t n) {
    if (w->meta_len + n > w->meta_cap) {
        size_t cap = w->meta_cap ? w->meta_cap : 4096;
        while (cap < w->meta_len + n) cap *= 2;
        uint8_t *m = realloc(w->meta, cap);
        if (!m) return fail(w, "out of memory writing metadata");
        w->meta = m;
        w->meta_cap = cap;
    }
    memcpy(w->meta + w->meta_len, p, n);
    w->meta_len += n;
    return 0;
}

static int put_le(gguf_writer *w, uint64_t v, size_t n) {
    uint8_t b[8];
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
    return put(w, b, n);
}

static int put_str(gguf_writer *w, const char *p, uint64_t n) {
    return put_le(w, n, 8) || put(w, p, (size_t)n);
}

/* ============================================================= values ===== */

static int put_scalar(gguf_writer *w, const gguf_value *v) {
    size_t n = gguf_type_size(v->type);
    switch (v->type) {
    case GGUF_F32: {
        float f = (float)v->v.f;
        uint32_t b;
        memcpy(&b, &f, 4);
        return put_le(w, b, 4);
    }
    case GGUF_F64: {
        uint64_t b;
        memcpy(&b, &v->v.f, 8);
        return put_le(w, b, 8);
    }
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64:
        return put_le(w, (uint64_t)v->v.i, n);
    default:
        return put_le(w, v->v.u, n);
    }
}

static int put_value(gguf_writer *w, const gguf_value *v, int with_type) {
    if ((unsigned)v->type >= GGUF_TYPE_COUNT) return fail(w, "invalid value type");
    if (with_type && put_le(w, v->type, 4)) return -1;
    if (v->type == GGUF_STR) return put_str(w, v->v.str.ptr, v->v.str.len);
    if (v->type != GGUF_ARR) return put_scalar(w, v);
    const gguf_arr *a = &v->v.arr;
    if ((unsigned)a->elem >= GGUF_TYPE_COUNT) return fail(w, "invalid array element type");
    if (put_le(w, a->elem, 4) || put_le(w, a->n, 8)) return -1;
    if (a->elem != GGUF_STR && a->elem != GGUF_ARR)
        return a->n ? put(w, a->raw, (size_t)(a->n * gguf_type_size(a->elem))) : 0;
    for (uint64_t i = 0; i < a->n; i++)
        if (put_value(w, &a->items[i], 0)) return -1;
    return 0;
}

static int add_key(gguf_writer *w, const char *key) {
    if (w->failed) return -1;
    if (!key || !*key) return fail(w, "empty metadata key");
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0) return fail(w, "duplicate metadata key '%s'", key);
    char **k = realloc(w->keys, (w->n_kv + 1) * sizeof *k);
    if (!k) return fail(w, "out of memory");
    w->keys = k;
    if (!(k[w->n_kv] = strdup(key))) return fail(w, "out of memory");
    w->n_kv++;
    return put_str(w, key, strlen(key));
}

int gguf_writer_add(gguf_writer *w, const char *key, const gguf_value *v) {
    if (add_key(w, key) || put_value(w, v, 1)) return -1;
    if (strcmp(key, "general.alignment") == 0) {
        uint64_t a = v->type == GGUF_U32 ? v->v.u : 0;
        if (a == 0 || (a & (a - 1)) || a > (1u << 30))
            return fail(w, "general.alignment must be a u32 power of two");
        w->alignment = (uint32_t)a;
    }
    return 0;
}

int gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t x) {
    gguf_value v = {.type = GGUF_U32, .v.u = x};
    return gguf_writer_add(w, key, &v);
}
int gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t x) {
    gguf_value v = {.type = GGUF_I32, .v.i = x};
    return gguf_writer_add(w, key, &v);
}
int gguf_writer_add_u64(gguf_writer *w, const char *key, uint64_t x) {
    gguf_value v = {.type = GGUF_U64, .v.u = x};
    return gguf_writer_add(w, key, &v);
}
int gguf_writer_add_f32(gguf_writer *w, const char *key, float x) {
    gguf_value v = {.type = GGUF_F32, .v.f = x};
    return gguf_writer_add(w, key, &v);
}
int gguf_writer_add_bool(gguf_writer *w, const char *key, int x) {
    gguf_value v = {.type = GGUF_BOOL, .v.u = x != 0};
    return gguf_writer_add(w, key, &v);
}
int gguf_writer_add_str(gguf_writer *w, const char *key, const char *s) {
    gguf_value v = {.type = GGUF_STR, .v.str = {s, strlen(s)}};
    return gguf_writer_add(w, key, &v);
}
int gguf_writer_add_arr(gguf_writer *w, const char *key, gguf_type elem, uint64_t n,
                        const void *raw) {
    if (elem == GGUF_STR || elem == GGUF_ARR || (unsigned)elem >= GGUF_TYPE_COUNT)
        return fail(w, "gguf_writer_add_arr('%s') takes scalar element types", key);
    gguf_value v = {.type = GGUF_ARR, .v.arr = {.elem = elem, .n = n, .raw = raw}};
    return gguf_writer_add(w, key, &v);
}
int gguf_writer_add_str_arr(gguf_writer *w, const char *key, uint64_t n,
                            const char *const *strs) {
    if (add_key(w, key) || put_le(w, GGUF_ARR, 4) || put_le(w, GGUF_STR, 4) || put_le(w, n, 8))
        return -1;
    for (uint64_t i = 0; i < n; i++)
        if (put_str(w, strs[i], strlen(strs[i]))) return -1;
    return 0;
}

/* ============================================================= tensors ===== */

int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const uint64_t *ne, const void *data, uint64_t size) {
    if (w->failed) return -1;
    if (!name || !*name || strlen(name) > 255) return fail(w, "bad tensor name '%s'", name ? name : "");
    if (!dtype_known(type)) return fail(w, "tensor '%s': unknown type", name);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) return fail(w, "tensor '%s': bad dimension count", name);
    for (uint64_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0) return fail(w, "duplicate tensor '%s'", name);
    uint64_t row, rows = 1;
    if (!dtype_row_bytes(type, ne[0], &row))
        return fail(w, "tensor '%s': row length is not a multiple of the block size", name);
    for (uint32_t d = 1; d < n_dims; d++) rows *= ne[d];
    if (row * rows != size) return fail(w, "tensor '%s': data size does not match shape and type", name);
    if (w->n_tensors == w->cap_tensors) {
        uint64_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        wtensor *t = realloc(w->tensors, cap * sizeof *t);
        if (!t) return fail(w, "out of memory");
        w->tensors = t;
        w->cap_tensors = cap;
    }
    wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return fail(w, "out of memory");
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->size = size;
    w->n_tensors++;
    return 0;
}

/* ============================================================= output ===== */

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static int fput_le(FILE *f, uint64_t v, size_t n) {
    uint8_t b[8];
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
    return fwrite(b, 1, n, f) == n ? 0 : -1;
}

static int fpad(FILE *f, uint64_t pos, uint64_t a) {
    static const uint8_t zeros[4096];
    uint64_t n = align_up(pos, a) - pos;
    while (n) {
        size_t k = n > sizeof zeros ? sizeof zeros : (size_t)n;
        if (fwrite(zeros, 1, k, f) != k) return -1;
        n -= k;
    }
    return 0;
}

static int write_to(gguf_writer *w, FILE *f) {
    uint64_t pos = 0, a = w->alignment;
    if (fput_le(f, GGUF_MAGIC, 4) || fput_le(f, 3, 4) || fput_le(f, w->n_tensors, 8) ||
        fput_le(f, w->n_kv, 8) || (w->meta_len && fwrite(w->meta, 1, w->meta_len, f) != w->meta_len))
        return -1;
    pos = 24 + w->meta_len;
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        size_t nl = strlen(t->name);
        if (fput_le(f, nl, 8) || fwrite(t->name, 1, nl, f) != nl || fput_le(f, t->n_dims, 4))
            return -1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (fput_le(f, t->ne[d], 8)) return -1;
        if (fput_le(f, t->type, 4) || fput_le(f, off, 8)) return -1;
        pos += 8 + nl + 4 + 8ull * t->n_dims + 4 + 8;
        off = align_up(off + t->size, a);
    }
    if (fpad(f, pos, a)) return -1;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        if (t->size && fwrite(t->data, 1, (size_t)t->size, f) != t->size) return -1;
        if (i + 1 < w->n_tensors && fpad(f, t->size, a)) return -1;
    }
    return 0;
}

int gguf_writer_write(gguf_writer *w, const char *path, sh_err *err) {
    if (w->failed) {
        sh_errf(err, "%s: %s", path, w->err.msg);
        return -1;
    }
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 5);
    if (!tmp) return sh_errf(err, "%s: out of memory", path);
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        sh_errf(err, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    int rc = write_to(w, f);
    int saved = errno;
    if (fclose(f) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -1;
        saved = errno;
    }
    if (rc) {
        unlink(tmp);
        sh_errf(err, "%s: write failed: %s", path, strerror(saved));
    }
    free(tmp);
    return rc;
}

int gguf_writer_write_mem(gguf_writer *w, uint8_t **out, size_t *len, sh_err *err) {
    if (w->failed) return sh_errf(err, "%s", w->err.msg);
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return sh_errf(err, "open_memstream: %s", strerror(errno));
    int rc = write_to(w, f);
    if (fclose(f) != 0) rc = -1;
    if (rc) {
        free(buf);
        return sh_errf(err, "writing GGUF to memory failed");
    }
    *out = (uint8_t *)buf;
    *len = n;
    return 0;
}

const char *gguf_writer_error(const gguf_writer *w) { return w->failed ? w->err.msg : NULL; }

/* ============================================================= lifetime ===== */

gguf_writer *gguf_writer_init(void) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (uint64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w->meta);
    free(w);
}
