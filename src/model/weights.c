/*
 * model/weights — see weights.h.
 */
#include "model/weights.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tensor/quant.h"
#include "tensor/vecdot.h"

/* ============================================================ row conversion ===== */

bool model_row_type_ok(uint32_t type) { return quant_supported(type); }

static void convert_row(uint32_t type, const void *src, float *dst, int64_t n) {
    int rc = quant_dequantize_row(type, src, dst, n);
    SH_ASSERT(rc == 0); /* the type and row length were checked at load time */
}

int model_mat_row(const model_mat *m, int64_t row, float *dst) {
    SH_ASSERT(row >= 0 && row < m->n_rows);
    if (!model_row_type_ok(m->type)) return -1;
    convert_row(m->type, (const uint8_t *)m->data + (size_t)row * m->row_bytes, dst, m->n_cols);
    return 0;
}

/* ============================================================ keys ===== */

int weights_int(weights_loader *L, const char *suffix, int64_t def, int64_t lo, int64_t hi,
                int *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", L->arch, suffix);
    uint64_t v;
    if (gguf_find(L->g, key)) {
        if (!gguf_get_u64(L->g, key, &v))
            return sh_errf(L->err, "metadata '%s' is not a non-negative integer", key);
    } else if (def < 0) {
        return sh_errf(L->err, "missing metadata '%s'", key);
    } else {
        v = (uint64_t)def;
    }
    if (v < (uint64_t)lo || v > (uint64_t)hi)
        return sh_errf(L->err, "metadata '%s' = %llu is out of range [%lld, %lld]", key,
                       (unsigned long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return 0;
}

int weights_float(weights_loader *L, const char *suffix, float def, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", L->arch, suffix);
    if (!gguf_find(L->g, key)) {
        *out = def;
        return 0;
    }
    double v;
    if (!gguf_get_f64(L->g, key, &v) || !isfinite(v))
        return sh_errf(L->err, "metadata '%s' is not a finite number", key);
    *out = (float)v;
    return 0;
}

/* ============================================================ tensors ===== */

const gguf_tensor *weights_find(weights_loader *L, const char *name, int64_t ne0, int64_t ne1,
                                bool required, bool *missing) {
    const gguf_tensor *t = gguf_find_tensor(L->g, name);
    *missing = t == NULL;
    if (!t) {
        if (required) sh_errf(L->err, "missing tensor '%s'", name);
        return NULL;
    }
    bool ok = t->ne[0] == (uint64_t)ne0 && t->ne[1] == (uint64_t)ne1 && t->ne[2] == 1 &&
              t->ne[3] == 1;
    if (!ok) {
        sh_errf(L->err, "tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%lld, %lld]",
                name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], (long long)ne0,
                (long long)ne1);
        return NULL;
    }
    return t;
}

int weights_mat(weights_loader *L, model_mat *out, const char *name, int64_t n_cols,
                int64_t n_rows, bool required) {
    bool missing;
    memset(out, 0, sizeof *out);
    const gguf_tensor *t = weights_find(L, name, n_cols, n_rows, required, &missing);
    if (!t) return (missing && !required) ? 0 : -1;
    const vecdot_kernel *k = vecdot_get(t->type);
    if (!k)
        return sh_errf(L->err, "tensor '%s' has type %s, which is not supported", name,
                       dtype_name(t->type));
    uint64_t rb;
    if (!dtype_row_bytes(t->type, (uint64_t)n_cols, &rb) ||
        n_cols % (int64_t)dtype_block_elems(k->act_type) != 0)
        return sh_errf(L->err, "tensor '%s': row length %lld does not fit type %s blocks", name,
                       (long long)n_cols, dtype_name(t->type));
    out->name = t->name;
    out->data = t->data;
    out->type = t->type;
    out->n_cols = n_cols;
    out->n_rows = n_rows;
    out->row_bytes = (size_t)rb;
    L->n_params += t->n_elems;
    L->n_bytes += t->size;
    L->type_count[t->type] += t->n_elems;
    return 0;
}

int weights_table(weights_loader *L, float **out, const char *name, int64_t n_cols,
                  int64_t n_rows, bool required) {
    bool missing;
    *out = NULL;
    const gguf_tensor *t = weights_find(L, name, n_cols, n_rows, required, &missing);
    if (!t) return (missing && !required) ? 0 : -1;
    uint64_t rb;
    if (!model_row_type_ok(t->type) || n_cols % (int64_t)dtype_block_elems(t->type) != 0 ||
        !dtype_row_bytes(t->type, (uint64_t)n_cols, &rb))
        return sh_errf(L->err, "tensor '%s' has type %s, which is not supported here", name,
                       dtype_name(t->type));
    float *v = malloc((size_t)n_cols * (size_t)n_rows * sizeof(float));
    if (!v) return sh_errf(L->err, "out of memory");
    for (int64_t r = 0; r < n_rows; r++)
        convert_row(t->type, (const uint8_t *)t->data + (size_t)r * rb, v + r * n_cols, n_cols);
    *out = v;
    L->n_params += t->n_elems;
    L->n_bytes += t->size;
    return 0;
}

int weights_vec(weights_loader *L, float **out, const char *name, int64_t n, bool required) {
    return weights_table(L, out, name, n, 1, required);
}

void weights_type_name(const weights_loader *L, char buf[32]) {
    uint32_t best = DT_F32;
    for (uint32_t t = 0; t < DT_COUNT; t++)
        if (L->type_count[t] > L->type_count[best]) best = t;
    snprintf(buf, 32, "%s", dtype_name(best));
}

/* ============================================================ repacking ===== */

static bool want_pack(const model_mat *w) {
    const vecdot_kernel *k = vecdot_get(w->type);
    return k && k->matmul_packed && vecdot_packed_group_bytes(w->type, w->n_cols) > 0;
}

/* Bytes a matrix takes in the repacked buffer: its packed form, or a plain copy (types without
 * a packed layout still gain from huge pages: no TLB misses while streaming), 64-aligned. */
static size_t repacked_bytes(const model_mat *w) {
    const size_t b = want_pack(w) ? vecdot_packed_bytes(w->type, w->n_cols, w->n_rows)
                                  : (size_t)w->n_rows * w->row_bytes;
    return (b + 63) & ~(size_t)63;
}

/* One loader thread's share of the repacking: matrices i = ith, ith + nth, ... */
typedef struct pack_job {
    model_mat *const *mats;
    const size_t *off; /* offset of each matrix in buf */
    int n, ith, nth;
    uint8_t *buf;
    bool drop;         /* release the file's pages afterwards (a real file mapping) */
} pack_job;

static void *pack_thread(void *arg) {
    const pack_job *j = arg;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int i = j->ith; i < j->n; i += j->nth) {
        model_mat *w = j->mats[i];
        if (w->n_rows == 0) continue;
        const void *file = w->data;
        uint8_t *dst = j->buf + j->off[i];
        if (want_pack(w)) {
            vecdot_pack(w->type, w->n_cols, file, w->row_bytes, w->n_rows, 0, w->n_rows, dst);
            w->packed = dst;
            w->packed_stride = vecdot_packed_group_bytes(w->type, w->n_cols);
        } else {
            memcpy(dst, file, (size_t)w->n_rows * w->row_bytes);
            w->data = dst;
        }
        /* the file's copy is no longer read (except token rows of tied embeddings, which fault
         * back in): drop it from this process (whole pages inside the tensor only) */
        if (j->drop) {
            uintptr_t a = ((uintptr_t)file + page - 1) & ~(page - 1);
            uintptr_t b = ((uintptr_t)file + (size_t)w->n_rows * w->row_bytes) & ~(page - 1);
            if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
        }
    }
    return NULL;
}

/* Matrices are spread over up to 8 threads (reading the file, zeroing fresh huge pages and
 * packing all scale with cores: m374 Q8_0 loads in half the time with 2). */
int weights_repack(model_mat *const *mats, int n, bool drop_file, weights_pack *out, sh_err *err) {
    memset(out, 0, sizeof *out);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        if (mats[i]->n_rows) total += repacked_bytes(mats[i]);
    if (total == 0) return 0;
    /* 2 MiB-aligned so that every huge page is fully ours; MADV_HUGEPAGE before the first
     * touch (THP is often in "madvise" mode). Failing to get huge pages is not an error. */
    const size_t huge = (size_t)2 << 20;
    const size_t bytes = (total + huge - 1) / huge * huge;
    uint8_t *raw = mmap(NULL, bytes + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
    if (raw == MAP_FAILED)
        return sh_errf(err, "cannot allocate %.1f MiB for the repacked weights (--no-repack "
                            "uses the file mapping instead)", (double)total / (1 << 20));
    uint8_t *buf = (uint8_t *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
    if (buf > raw) munmap(raw, (size_t)(buf - raw));
    munmap(buf + bytes, (size_t)(raw + huge - buf));
    madvise(buf, bytes, MADV_HUGEPAGE);
    out->buf = buf;
    out->bytes = bytes;
    size_t *off = malloc((size_t)n * sizeof *off);
    if (!off) return sh_errf(err, "out of memory");
    for (int i = 0; i < n; i++) {
        off[i] = i ? off[i - 1] + (mats[i - 1]->n_rows ? repacked_bytes(mats[i - 1]) : 0) : 0;
        if (!mats[i]->n_rows) continue;
        if (want_pack(mats[i])) out->n_packed++;
        else out->n_copied++;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nth = ncpu < 1 ? 1 : ncpu > 8 ? 8 : (int)ncpu;
    if (nth > n) nth = n;
    pack_job jobs[8];
    pthread_t tid[8];
    int started = 1; /* job 0 runs on this thread; a thread that cannot start leaves its share
                      * to this one */
    for (int t = 0; t < nth; t++) jobs[t] = (pack_job){mats, off, n, t, nth, buf, drop_file};
    for (int t = 1; t < nth; t++, started++)
        if (pthread_create(&tid[t], NULL, pack_thread, &jobs[t])) break;
    pack_thread(&jobs[0]);
    for (int t = 1; t < started; t++) pthread_join(tid[t], NULL);
    for (int t = started; t < nth; t++) pack_thread(&jobs[t]);
    free(off);
    return 0;
}

void weights_pack_free(weights_pack *p) {
    if (p && p->buf) munmap(p->buf, p->bytes);
    if (p) memset(p, 0, sizeof *p);
}
