/*
 * engine/ew — see ew.h. The portable versions and the dispatch.
 */
#include "engine/ew.h"

#include <math.h>

#include "tensor/vecdot.h"

static void silu_mul(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static const ew_ops ew_ops_scalar = {silu_mul};

/* As attn_get(): vecdot's AVX2 level is compiled with the same flags and chosen only when the
 * CPU supports them (SHOAL_ISA included). */
const ew_ops *ew_get(void) { return vecdot_best_isa() >= ISA_AVX2 ? &ew_ops_avx2 : &ew_ops_scalar; }
