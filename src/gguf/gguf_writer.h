/*
 * gguf_writer — builds a GGUF v3 file: metadata of every type, tensors with alignment.
 *
 * Usage: gguf_writer_init(); add metadata and tensors in the order they should appear;
 * gguf_writer_write() (to a file, atomically via a temporary and rename) or
 * gguf_writer_write_mem(); gguf_writer_free().
 *
 * Errors are sticky: an add that fails (duplicate key or tensor name, bad shape, size that does
 * not match the type, out of memory) returns -1 and records the first message; every later
 * add is ignored and the write reports that message. So a sequence of adds can be checked once.
 *
 * Ownership: metadata is copied at once. Tensor data is BORROWED: it must stay valid until the
 * write returns. Setting "general.alignment" (u32, power of two) changes the alignment.
 */
#ifndef SHOAL_GGUF_WRITER_H
#define SHOAL_GGUF_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "gguf/gguf.h"

typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_init(void);
void gguf_writer_free(gguf_writer *w); /* NULL is fine */

/* Any value, deep-copied: strings, scalar arrays and nested arrays as a reader returns them,
 * so gguf_writer_add(w, kv->key, &kv->val) copies an entry from an open file. */
int gguf_writer_add(gguf_writer *w, const char *key, const gguf_value *v);

int gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_add_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_add_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_add_bool(gguf_writer *w, const char *key, int v);
int gguf_writer_add_str(gguf_writer *w, const char *key, const char *s); /* NUL-terminated */
/* A scalar array: n elements of type elem, packed little-endian in raw. */
int gguf_writer_add_arr(gguf_writer *w, const char *key, gguf_type elem, uint64_t n,
                        const void *raw);
/* An array of n NUL-terminated strings. */
int gguf_writer_add_str_arr(gguf_writer *w, const char *key, uint64_t n,
                            const char *const *strs);

/* A tensor of ggml type `type` with n_dims dims ne[] (ne[0] = row length). size must equal
 * the type's byte size for that shape. data is borrowed until the write. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const uint64_t *ne, const void *data, uint64_t size);

/* The first recorded failure, or NULL when every add so far succeeded. */
const char *gguf_writer_error(const gguf_writer *w);

/* Writes PATH.tmp, then renames it to PATH, so a failed write never leaves a partial PATH. */
int gguf_writer_write(gguf_writer *w, const char *path, sh_err *err);

/* Writes into a malloc'd buffer the caller frees. */
int gguf_writer_write_mem(gguf_writer *w, uint8_t **out, size_t *len, sh_err *err);

#endif
