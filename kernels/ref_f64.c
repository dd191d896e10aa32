/* ref_f64.c - naive float64 attention (see ref_f64.h). */
#include "ref_f64.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kn_common.h"

/* Probabilities of one query row: p[k] = exp(S_k - LSE) over visible keys; returns LSE. */
static double row_probs(const kn_shape *s, const double *qr, const double *kh, size_t r, double *p)
{
    double scale = 1.0 / sqrt((double)s->d), mx = -INFINITY;
    size_t nvis = kn_keys_visible(s, r);
    for (size_t k = 0; k < nvis; k++) {
        double acc = 0.0;
        for (size_t x = 0; x < s->d; x++) acc += qr[x] * kh[k * s->d + x];
        p[k] = scale * acc;
        if (p[k] > mx) mx = p[k];
    }
    if (nvis == 0) return -INFINITY;
    double sum = 0.0;
    for (size_t k = 0; k < nvis; k++) sum += exp(p[k] - mx);
    double lse = mx + log(sum);
    for (size_t k = 0; k < nvis; k++) p[k] = exp(p[k] - lse);
    return lse;
}

void ref_attn_fwd_f64(const kn_shape *s, const double *q, const double *k, const double *v,
                      double *o, double *lse)
{
    size_t d = s->d, g = s->heads / s->kv_heads;
    double *p = kn_xmalloc((s->nk ? s->nk : 1) * sizeof(double), "reference row");
    for (size_t b = 0; b < s->batch; b++)
        for (size_t hq = 0; hq < s->heads; hq++) {
            size_t bh = b * s->heads + hq;
            const double *kh = k + (b * s->kv_heads + hq / g) * s->nk * d;
            const double *vh = v + (b * s->kv_heads + hq / g) * s->nk * d;
            for (size_t r = 0; r < s->nq; r++) {
                const double *qr = q + (bh * s->nq + r) * d;
                double *orow = o + (bh * s->nq + r) * d;
                lse[bh * s->nq + r] = row_probs(s, qr, kh, r, p);
                memset(orow, 0, d * sizeof(double));
                for (size_t kk = 0; kk < kn_keys_visible(s, r); kk++)
                    for (size_t x = 0; x < d; x++) orow[x] += p[kk] * vh[kk * d + x];
            }
        }
    free(p);
}

void ref_attn_bwd_f64(const kn_shape *s, const double *q, const double *k, const double *v,
                      const double *d_o, double *dq, double *dk, double *dv)
{
    size_t d = s->d, g = s->heads / s->kv_heads;
    double scale = 1.0 / sqrt((double)d);
    size_t nk1 = s->nk ? s->nk : 1;
    double *p = kn_xmalloc(nk1 * sizeof(double), "reference row");
    double *dp = kn_xmalloc(nk1 * sizeof(double), "reference row");
    double *orow = kn_xmalloc(d * sizeof(double), "reference row");
    memset(dq, 0, s->batch * s->heads * s->nq * d * sizeof(double));
    memset(dk, 0, s->batch * s->kv_heads * s->nk * d * sizeof(double));
    memset(dv, 0, s->batch * s->kv_heads * s->nk * d * sizeof(double));
    for (size_t b = 0; b < s->batch; b++)
        for (size_t hq = 0; hq < s->heads; hq++) {
            size_t bh = b * s->heads + hq, kvh = (b * s->kv_heads + hq / g) * s->nk * d;
            for (size_t r = 0; r < s->nq; r++) {
                const double *qr = q + (bh * s->nq + r) * d, *dor = d_o + (bh * s->nq + r) * d;
                double *dqr = dq + (bh * s->nq + r) * d;
                size_t nvis = kn_keys_visible(s, r);
                row_probs(s, qr, k + kvh, r, p);
                /* D = dO . O with O = sum_k p_k v_k */
                memset(orow, 0, d * sizeof(double));
                for (size_t kk = 0; kk < nvis; kk++)
                    for (size_t x = 0; x < d; x++) orow[x] += p[kk] * v[kvh + kk * d + x];
                double D = 0.0;
                for (size_t x = 0; x < d; x++) D += dor[x] * orow[x];
                for (size_t kk = 0; kk < nvis; kk++) {
                    double acc = 0.0;
                    for (size_t x = 0; x < d; x++) {
                        acc += dor[x] * v[kvh + kk * d + x];
                        dv[kvh + kk * d + x] += p[kk] * dor[x];
                    }
                    dp[kk] = p[kk] * (acc - D); /* dS */
                }
                for (size_t kk = 0; kk < nvis; kk++)
                    for (size_t x = 0; x < d; x++) {
                        dqr[x] += scale * dp[kk] * k[kvh + kk * d + x];
                        dk[kvh + kk * d + x] += scale * dp[kk] * qr[x];
                    }
            }
        }
    free(p);
    free(dp);
    free(orow);
}

double ref_tolerance(int dtype)
{
    switch ((kn_dtype)dtype) {
    case KN_F32:
        return 2e-5;
    case KN_F16:
        return 4e-3;
    case KN_BF16:
        return 3e-2;
    }
    return 0.0;
}
