/*
 * gguf — a hardened reader for GGUF v2/v3 files.
 *
 * The file is mmapped read-only (several processes loading the same model share its pages) and
 * parsed once, up front: every metadata value, every tensor info. Every count, length and offset
 * is checked against the bytes that remain before it is used, so a hostile file produces an
 * error message, never an out-of-bounds read, an allocation larger than a small multiple of the
 * file size, or a crash. After gguf_open() returns a context, every pointer in it is valid until
 * gguf_free().
 *
 * Layout of a GGUF file (all little-endian):
 *   u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv    x { string key | u32 value type | value }
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml type | u64 offset }
 *   padding to general.alignment (default 32) | tensor data (offsets relative to here)
 * A string is u64 length + bytes (no NUL). An array is u32 element type + u64 count + elements.
 *
 * Ownership: the context owns the mapping and all parsed structures. Strings handed out as
 * gguf_str point into the mapping and are NOT NUL-terminated; keys and tensor names are
 * NUL-terminated copies.
 */
#ifndef SHOAL_GGUF_GGUF_H
#define SHOAL_GGUF_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define GGUF_MAGIC             0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS          4

/* Metadata value types, numbered as in the file. */
typedef enum gguf_type {
    GGUF_U8 = 0,
    GGUF_I8 = 1,
    GGUF_U16 = 2,
    GGUF_I16 = 3,
    GGUF_U32 = 4,
    GGUF_I32 = 5,
    GGUF_F32 = 6,
    GGUF_BOOL = 7,
    GGUF_STR = 8,
    GGUF_ARR = 9,
    GGUF_U64 = 10,
    GGUF_I64 = 11,
    GGUF_F64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

typedef struct gguf_str {
    const char *ptr; /* not NUL-terminated; may contain any bytes */
    uint64_t len;
} gguf_str;

typedef struct gguf_value gguf_value;

typedef struct gguf_arr {
    gguf_type elem;       /* element type */
    uint64_t n;           /* element count */
    const uint8_t *raw;   /* scalar elements: n * size packed little-endian bytes (unaligned) */
    gguf_value *items;    /* GGUF_STR / GGUF_ARR elements: n parsed values; NULL otherwise */
} gguf_arr;

struct gguf_value {
    gguf_type type;
    union {
        uint64_t u;   /* U8, U16, U32, U64, BOOL (0/1) */
        int64_t i;    /* I8, I16, I32, I64 */
        double f;     /* F32, F64 */
        gguf_str str; /* STR */
        gguf_arr arr; /* ARR */
    } v;
};

typedef struct gguf_kv {
    char *key; /* NUL-terminated copy */
    gguf_value val;
} gguf_kv;

typedef struct gguf_tensor {
    char *name;               /* NUL-terminated copy */
    uint32_t n_dims;          /* 1..GGUF_MAX_DIMS */
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] = row length (fastest); unused dims are 1 */
    uint32_t type;            /* ggml type id (tensor/dtype.h); always a known id */
    uint64_t offset;          /* from the start of the data section; aligned */
    uint64_t n_elems;         /* product of ne */
    uint64_t size;            /* bytes */
    const void *data;         /* into the mapping: data section + offset */
} gguf_tensor;

typedef struct gguf_ctx {
    char *path;               /* as given to gguf_open, or "<memory>" */
    uint32_t version;         /* 2 or 3 */
    uint64_t n_kv;
    gguf_kv *kv;              /* n_kv entries, in file order, keys unique */
    uint64_t n_tensors;
    gguf_tensor *tensors;     /* n_tensors entries, in file order, names unique */
    uint32_t alignment;       /* general.alignment or 32 */
    uint64_t data_offset;     /* file offset of the data section */
    const uint8_t *base;      /* the whole file */
    uint64_t size;            /* file size in bytes */
    bool mapped;              /* base is an mmap owned by the context */
    /* private: indices sorted by key / name, for look-ups and the uniqueness check */
    uint64_t *kv_index_;
    uint64_t *tensor_index_;
} gguf_ctx;

/* Maps and parses the file. Returns NULL with a message in err ("PATH: what") on any I/O error
 * or malformed content. */
gguf_ctx *gguf_open(const char *path, sh_err *err);

/* Parses a file image held in memory (for fuzzing and tests). The buffer is borrowed: it must
 * stay valid and unchanged until gguf_free(). `name` is used in messages. */
gguf_ctx *gguf_open_mem(const void *buf, size_t len, const char *name, sh_err *err);

/* Releases everything, including the mapping. NULL is fine. */
void gguf_free(gguf_ctx *g);

/* ---- metadata look-ups ------------------------------------------------------------------ */

/* The entry with this key, or NULL. */
const gguf_kv *gguf_find(const gguf_ctx *g, const char *key);

/* Typed getters. Integer getters accept any integer type whose value fits (unsigned ones also
 * BOOL, as 0/1); gguf_get_bool accepts BOOL and 0/1 unsigned; float getters accept F32/F64
 * and integers. Each returns true and stores the
 * value when the key exists with a usable type and value, false otherwise (out untouched). */
bool gguf_get_u64(const gguf_ctx *g, const char *key, uint64_t *out);
bool gguf_get_u32(const gguf_ctx *g, const char *key, uint32_t *out);
bool gguf_get_i64(const gguf_ctx *g, const char *key, int64_t *out);
bool gguf_get_f64(const gguf_ctx *g, const char *key, double *out);
bool gguf_get_f32(const gguf_ctx *g, const char *key, float *out);
bool gguf_get_bool(const gguf_ctx *g, const char *key, bool *out);
bool gguf_get_str(const gguf_ctx *g, const char *key, gguf_str *out);
/* The array under key, optionally requiring its element type (pass GGUF_TYPE_COUNT for any). */
const gguf_arr *gguf_get_arr(const gguf_ctx *g, const char *key, gguf_type elem);

/* Element i of a scalar array, converted as the typed getters do; i must be < a->n. */
bool gguf_arr_u64(const gguf_arr *a, uint64_t i, uint64_t *out);
bool gguf_arr_i64(const gguf_arr *a, uint64_t i, int64_t *out);
bool gguf_arr_f64(const gguf_arr *a, uint64_t i, double *out);

/* True when s equals the NUL-terminated string z. */
bool gguf_str_eq(gguf_str s, const char *z);

/* ---- tensors -------------------------------------------------------------------------- */

/* The tensor with this name, or NULL. */
const gguf_tensor *gguf_find_tensor(const gguf_ctx *g, const char *name);

/* ---- small utilities ------------------------------------------------------------------ */

const char *gguf_type_name(gguf_type t); /* "u32", "str", "arr", ...; "?" when out of range */
size_t gguf_type_size(gguf_type t);      /* bytes of a scalar type, 0 for STR/ARR/invalid */

#endif
