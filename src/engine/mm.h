/*
 * engine/mm — the pieces every forward pass shares: a weight matrix times activation rows
 * (the vecdot kernel, packed or in the file's layout), and the work-sharing counters the
 * threads of one pool job take their chunks from. Used by the decoder (engine/engine.h) and
 * the encoder (engine/encode.h) forward passes; static inline, no state of its own.
 */
#ifndef SHOAL_ENGINE_MM_H
#define SHOAL_ENGINE_MM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/weights.h"
#include "tensor/vecdot.h"

/* Rows [r0, r1) of W times n activation rows (act_row bytes apart, in the kernel's act_type):
 * out[j * out_stride + r] = W[r] . act[j]. */
static inline void mm_rows(const model_mat *w, const uint8_t *act, size_t act_row, int n,
                           int64_t r0, int64_t r1, float *out, int64_t out_stride) {
    if (r0 >= r1) return;
    const vecdot_kernel *k = vecdot_get(w->type);
    if (w->packed)
        k->matmul_packed(w->n_cols, w->packed, w->packed_stride, r0, r1, act, act_row, n, out,
                         out_stride);
    else
        k->matmul(w->n_cols, w->data, w->row_bytes, r0, r1, act, act_row, n, out, out_stride);
}

/* [*lo, *hi): thread ith's share of n items, in chunks that are multiples of `align`. */
static inline void mm_split(int64_t n, int64_t align, int ith, int nth, int64_t *lo,
                            int64_t *hi) {
    int64_t chunks = (n + align - 1) / align;
    int64_t c0 = chunks * ith / nth, c1 = chunks * (ith + 1) / nth;
    *lo = c0 * align < n ? c0 * align : n;
    *hi = c1 * align < n ? c1 * align : n;
}

/* Dynamic work sharing: the threads take chunks of `chunk` items of an n-item phase from that
 * phase's counter (reset to 0 before the job) until none are left. Faster threads (or ones not
 * disturbed by other processes) take more; which thread computes a row never changes its
 * result. */
static inline bool mm_grab(atomic_llong *counter, int64_t n, int64_t chunk, int64_t *lo,
                           int64_t *hi) {
    int64_t c = atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
    if (c * chunk >= n) return false;
    *lo = c * chunk;
    *hi = *lo + chunk < n ? *lo + chunk : n;
    return true;
}

/* Guided work sharing for matmul rows: each grab takes 1/(2 nth) of the rows still left
 * (rounded up to a multiple of 16, the packed layout's group, and at least 16), so chunks
 * start large (few atomic operations) and shrink towards the end, where the threads then
 * finish within a 16-row chunk of each other instead of one large chunk (the other thread
 * waits at the barrier meanwhile, and in decode the memory bus idles). The counter holds the
 * next free row. */
static inline bool mm_grab_rows(atomic_llong *c, int64_t n, int nth, int64_t *lo, int64_t *hi) {
    long long pos = atomic_load_explicit(c, memory_order_relaxed);
    for (;;) {
        if (pos >= n) return false;
        int64_t chunk = (n - pos) / (2 * nth);
        chunk = chunk < 16 ? 16 : (chunk + 15) & ~(int64_t)15;
        const long long end = pos + chunk < n ? pos + chunk : n;
        if (atomic_compare_exchange_weak_explicit(c, &pos, end, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *lo = pos;
            *hi = end;
            return true;
        }
    }
}

#endif
