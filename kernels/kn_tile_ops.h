/* kn_tile_ops.h - SRAM-only tile arithmetic shared by the C reference kernels (internal).
 * Nothing here touches HBM; the kernels do all transfers through kn_mem.h. */
#ifndef ATTNSIM_KN_TILE_OPS_H
#define ATTNSIM_KN_TILE_OPS_H

#include <math.h>

#include "kn_tiling.h"

/* S[r][c] = scale * q[r] . k[c] for a rows x cols tile whose first query row is r0 and first key
 * c0; keys masked for a row (causal) get -inf. */
static inline void kn_tile_scores(const kn_shape *s, const float *q, const float *k, size_t rows,
                                  size_t cols, size_t r0, size_t c0, float scale, float *S)
{
    size_t d = s->d;
    for (size_t r = 0; r < rows; r++) {
        const float *qr = q + r * d;
        for (size_t c = 0; c < cols; c++) {
            float *out = &S[r * cols + c];
            if (!kn_key_visible(s, r0 + r, c0 + c)) {
                *out = -INFINITY;
                continue;
            }
            const float *kc = k + c * d;
            float acc = 0.0f;
            for (size_t x = 0; x < d; x++) acc += qr[x] * kc[x];
            *out = scale * acc;
        }
    }
}

/* o[r] += sum_c P[r][c] v[c] for a rows x cols tile. */
static inline void kn_tile_pv(const float *P, const float *v, size_t rows, size_t cols, size_t d,
                              float *o)
{
    for (size_t r = 0; r < rows; r++) {
        float *orow = o + r * d;
        for (size_t c = 0; c < cols; c++) {
            float p = P[r * cols + c];
            if (p == 0.0f) continue;
            const float *vc = v + c * d;
            for (size_t x = 0; x < d; x++) orow[x] += p * vc[x];
        }
    }
}

static inline float kn_row_max(const float *x, size_t n)
{
    float m = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (x[i] > m) m = x[i];
    return m;
}

/* x[i] = exp(x[i] - m) in place and returns the sum; masked (-inf) entries become 0, and a row
 * whose max is -inf (nothing visible) becomes all zeros. */
static inline float kn_row_exp(float *x, size_t n, float m)
{
    float sum = 0.0f;
    if (m == -INFINITY) {
        for (size_t i = 0; i < n; i++) x[i] = 0.0f;
        return 0.0f;
    }
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    return sum;
}

#endif
