/*
 * engine/ew — see ew.h. The portable versions and the dispatch.
 */
#include "engine/ew.h"

#include <math.h>
#include <pthread.h>

#include "core/half.h"

#include "tensor/vecdot.h"

float ew_vexpf(float x) {
    const float shift = 0x1.8p23f;
    const float n = fmaf(x, 0x1.715476p+0f, shift) - shift; /* round(x / ln2), exact */
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    const float u = b * b;
    const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                              fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                         u, fmaf(0x1.ffffecp-1f, b, 1.0f));
    if (n != n) return j; /* NaN */
    if (fabsf(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
    /* j * 2^n with one rounding, as vscalefps: j is in [0.7, 1.5] and both factors below are
     * normal powers of two (|n1|, |n - n1| <= 96), so the first product is exact and only the
     * second rounds (to a subnormal, or to infinity, where the result lies) */
    const int ni = (int)n, n1 = ni / 2;
    return (j * ldexpf(1.0f, n1)) * ldexpf(1.0f, ni - n1);
}

static void silu_mul(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + ew_vexpf(0.0f - g[i])) * u[i];
}

static void softmax(float *s, int n) {
    float mx = -INFINITY;
    for (int t = 0; t < n; t++) mx = mx > s[t] ? mx : s[t];
    double sum = 0;
    for (int c = 0; c < n; c += 16) {
        float e[16] = {0};
        for (int l = 0; l < 16 && c + l < n; l++) e[l] = s[c + l] = ew_vexpf(s[c + l] - mx);
        for (int w = 8; w >= 1; w /= 2)
            for (int l = 0; l < w; l++) e[l] = e[l] + e[l + w];
        sum += (double)e[0];
    }
    const float inv = (float)(1.0 / sum);
    for (int t = 0; t < n; t++) s[t] *= inv;
}

void ew_rope_angles(float *cs, int pos, int n_rot, float base, float scale, const float *freqs) {
    const float step = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        const float angle = scale * (theta / (freqs ? freqs[i] : 1.0f));
        cs[2 * i] = cosf(angle);
        cs[2 * i + 1] = sinf(angle);
        theta *= step;
    }
}

static void rope(float *v, const float *cs, int n_rot, int neox) {
    const int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float x0 = v[a], x1 = v[b], c = cs[2 * i], s = cs[2 * i + 1];
        v[a] = fmaf(x0, c, -(x1 * s));
        v[b] = fmaf(x0, s, x1 * c);
    }
}

/* Squares rounded to float before the double sum, as llama.cpp: squares exact in double moved
 * the mean of 2 of 23 rows enough to change their 8-bit activations on a 3-layer Q6_K model. */
void ew_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)(x[i] * x[i]);
    const float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

int64_t ew_argmax_ref(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* The reference loop carries one dependency per element (compare with x[best], then move
 * best), about 9 cycles each: 150 us for a 49k vocabulary. Two passes of independent work
 * are ~10x faster: the maximum with four accumulators, then the first index holding it. */
static int64_t argmax(const float *x, int64_t n) {
    if (n <= 1 || x[0] != x[0]) return 0;
    float m[4] = {x[0], x[0], x[0], x[0]};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
    float mx = m[0];
    for (int j = 1; j < 4; j++) mx = m[j] > mx ? m[j] : mx;
    for (i = 0; i < n; i++)
        if (x[i] == mx) return i;
    return 0; /* not reached: mx is one of the x[i] */
}

static void layernorm(float *out, const float *x, const float *w, const float *b, int n,
                      float eps) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (double)x[i];
    const float mean = (float)sum / (float)n;
    double v = 0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        float q[16];
        for (int l = 0; l < 16; l++) {
            const float d = x[i + l] - mean;
            q[l] = d * d;
        }
        for (int h = 8; h >= 1; h /= 2)
            for (int l = 0; l < h; l++) q[l] = q[l] + q[l + h];
        v += (double)q[0];
    }
    for (; i < n; i++) {
        const float d = x[i] - mean;
        v += (double)(d * d);
    }
    const float var = (float)(v / n);
    const float scale = 1.0f / sqrtf(var + eps);
    for (int k = 0; k < n; k++) {
        const float y = ((x[k] - mean) * scale) * w[k];
        out[k] = b ? y + b[k] : y;
    }
}

float ew_gelu_f32(float x) {
    const float c = 0.79788456080286535587989211986876f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(c * x * (1.0f + 0.044715f * x * x)));
}

float ew_gelu_table[65536];

static void gelu_table_init(void) {
    for (uint32_t h = 0; h < 65536; h++)
        ew_gelu_table[h] = half_to_f32(half_from_f32(ew_gelu_f32(half_to_f32((uint16_t)h))));
}

static void gelu(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        if (v <= -10.0f) x[i] = 0.0f;
        else if (v < 10.0f) x[i] = ew_gelu_table[half_from_f32(v)]; /* NaN: the table's NaN */
    }
}

static void add(float *x, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float y = x[i];
        if (a) y += a[i];
        if (b) y += b[i];
        x[i] = y;
    }
}

const ew_ops ew_ops_scalar = {silu_mul, softmax, rope, argmax, layernorm, gelu, add};

/* As attn_get(): vecdot's AVX2 level is compiled with the same flags and chosen only when the
 * CPU supports them (SHOAL_ISA included). */
const ew_ops *ew_get(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, gelu_table_init);
    return vecdot_best_isa() >= ISA_AVX2 ? &ew_ops_avx2 : &ew_ops_scalar;
}
