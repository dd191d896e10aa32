/* test_tiles.c - the kernels on tiles of a distributed algorithm: queries of one token class
 * against keys of another (positions scattered over the sequence, causal mask by position),
 * forward partials (m, l, o) merged with the merge operator, and backward tiles with D given,
 * summed over tiles: together they must reproduce the float64 reference of the whole problem. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kn_merge.h"
#include "kn_problem.h"
#include "ref_f64.h"
#include "test_util.h"

enum { N = 37, B = 1, H = 4, HK = 2, D = 16, CLASSES = 3 };

/* Copies rows of the tokens t = cls + CLASSES j of a [B][heads][N][D] array into a tensor. */
static size_t gather(const double *full, size_t heads, int cls, kn_tensor *t, uint64_t *pos)
{
    size_t n = 0;
    for (size_t tok = (size_t)cls; tok < N; tok += CLASSES) pos[n++] = tok;
    kn_tensor_alloc(t, KN_F32, B * heads * n * D, "tile");
    for (size_t bh = 0; bh < B * heads; bh++)
        for (size_t j = 0; j < n; j++)
            for (size_t x = 0; x < D; x++)
                kn_tensor_set(t, (bh * n + j) * D + x, (float)full[(bh * N + pos[j]) * D + x]);
    return n;
}

int main(void)
{
    double *q = malloc(B * H * N * D * sizeof(double)),
           *k = malloc(B * HK * N * D * sizeof(double));
    double *v = malloc(B * HK * N * D * sizeof(double)),
           *d_o = malloc(B * H * N * D * sizeof(double));
    double *o = malloc(B * H * N * D * sizeof(double)), *lse = malloc(B * H * N * sizeof(double));
    double *dq = malloc(B * H * N * D * sizeof(double)),
           *dk = malloc(B * HK * N * D * sizeof(double));
    double *dv = malloc(B * HK * N * D * sizeof(double));
    for (size_t i = 0; i < B * H * N * D; i++)
        q[i] = kn_gen_value(9, KN_GEN_Q, i), d_o[i] = kn_gen_value(9, KN_GEN_DO, i);
    for (size_t i = 0; i < B * HK * N * D; i++)
        k[i] = kn_gen_value(9, KN_GEN_K, i), v[i] = kn_gen_value(9, KN_GEN_V, i);
    for (int causal = 0; causal < 2; causal++) {
        kn_shape full = {B, H, HK, N, N, D, causal, NULL, NULL};
        ref_attn_fwd_f64(&full, q, k, v, o, lse);
        ref_attn_bwd_f64(&full, q, k, v, d_o, dq, dk, dv);
        double *dk_sum = calloc(B * HK * N * D, sizeof(double));
        double *dv_sum = calloc(B * HK * N * D, sizeof(double));
        for (int qc = 0; qc < CLASSES; qc++) {
            kn_attn_io t;
            memset(&t, 0, sizeof t);
            uint64_t qpos[N], kpos[N];
            size_t nq = gather(q, H, qc, &t.q, qpos);
            /* forward: merge the partials over the key classes */
            float *m = malloc(B * H * nq * sizeof(float)), *l = malloc(B * H * nq * sizeof(float));
            float *acc = calloc(B * H * nq * D, sizeof(float));
            for (size_t i = 0; i < B * H * nq; i++) m[i] = -INFINITY, l[i] = 0.0f;
            for (int kc = 0; kc < CLASSES; kc++) {
                size_t nk = gather(k, HK, kc, &t.k, kpos);
                gather(v, HK, kc, &t.v, kpos);
                kn_shape s = {B, H, HK, nq, nk, D, causal, qpos, kpos};
                kn_tensor_alloc(&t.o, KN_F32, B * H * nq * D, "o");
                kn_tensor_alloc(&t.m, KN_F32, B * H * nq, "m");
                kn_tensor_alloc(&t.l, KN_F32, B * H * nq, "l");
                t.fwd_partial = 1;
                kn_counters c = {0};
                kn_fa2_fwd(&s, 4096, &t, &c);
                for (size_t r = 0; r < B * H * nq; r++)
                    kn_merge_state(D, &m[r], &l[r], acc + r * D, kn_tensor_get(&t.m, r),
                                   kn_tensor_get(&t.l, r), (float *)t.o.data + r * D);
                kn_tensor_free(&t.k), kn_tensor_free(&t.v), kn_tensor_free(&t.o);
                kn_tensor_free(&t.m), kn_tensor_free(&t.l);
            }
            double err = 0.0;
            for (size_t bh = 0; bh < B * H; bh++)
                for (size_t j = 0; j < nq; j++) {
                    size_t r = bh * nq + j;
                    float lse_r;
                    kn_state_finalize(D, m[r], l[r], acc + r * D, &lse_r);
                    double want = lse[bh * N + qpos[j]];
                    err = fmax(err, isinf(want) ? (lse_r == want ? 0 : 1) : fabs(lse_r - want));
                    for (size_t x = 0; x < D; x++)
                        err = fmax(err, fabs(acc[r * D + x] - o[(bh * N + qpos[j]) * D + x]));
                }
            CHECK(err < 1e-5, "merged forward tiles (causal %d, query class %d): error %g", causal,
                  qc, err);

            /* backward: dQ summed over key classes, dK/dV over query classes */
            kn_tensor_free(&t.q);
            gather(q, H, qc, &t.q, qpos);
            gather(d_o, H, qc, &t.d_o, qpos);
            kn_tensor_alloc(&t.lse, KN_F32, B * H * nq, "lse");
            kn_tensor_alloc(&t.dsum, KN_F32, B * H * nq, "D");
            for (size_t bh = 0; bh < B * H; bh++)
                for (size_t j = 0; j < nq; j++) {
                    double dsum = 0.0;
                    for (size_t x = 0; x < D; x++)
                        dsum += d_o[(bh * N + qpos[j]) * D + x] * o[(bh * N + qpos[j]) * D + x];
                    kn_tensor_set(&t.lse, bh * nq + j, (float)lse[bh * N + qpos[j]]);
                    kn_tensor_set(&t.dsum, bh * nq + j, (float)dsum);
                }
            t.bwd_dsum_given = 1;
            double *dq_sum = calloc(B * H * nq * D, sizeof(double));
            for (int kc = 0; kc < CLASSES; kc++) {
                size_t nk = gather(k, HK, kc, &t.k, kpos);
                gather(v, HK, kc, &t.v, kpos);
                kn_shape s = {B, H, HK, nq, nk, D, causal, qpos, kpos};
                kn_tensor_alloc(&t.dq_acc, KN_F32, B * H * nq * D, "dq acc");
                kn_tensor_alloc(&t.dq, KN_F32, B * H * nq * D, "dq");
                kn_tensor_alloc(&t.dk, KN_F32, B * HK * nk * D, "dk");
                kn_tensor_alloc(&t.dv, KN_F32, B * HK * nk * D, "dv");
                kn_counters c = {0};
                kn_fa2_bwd(&s, 8192, &t, &c);
                for (size_t i = 0; i < B * H * nq * D; i++) dq_sum[i] += kn_tensor_get(&t.dq, i);
                for (size_t bh = 0; bh < B * HK; bh++)
                    for (size_t j = 0; j < nk; j++)
                        for (size_t x = 0; x < D; x++) {
                            size_t at = (bh * N + kpos[j]) * D + x, in = (bh * nk + j) * D + x;
                            dk_sum[at] += kn_tensor_get(&t.dk, in);
                            dv_sum[at] += kn_tensor_get(&t.dv, in);
                        }
                kn_tensor_free(&t.k), kn_tensor_free(&t.v), kn_tensor_free(&t.dq_acc);
                kn_tensor_free(&t.dq), kn_tensor_free(&t.dk), kn_tensor_free(&t.dv);
            }
            err = 0.0;
            for (size_t bh = 0; bh < B * H; bh++)
                for (size_t j = 0; j < nq; j++)
                    for (size_t x = 0; x < D; x++)
                        err = fmax(err, fabs(dq_sum[(bh * nq + j) * D + x] -
                                             dq[(bh * N + qpos[j]) * D + x]));
            CHECK(err < 1e-5, "dQ summed over key tiles (causal %d, class %d): error %g", causal,
                  qc, err);
            free(dq_sum), free(m), free(l), free(acc);
            kn_tensor_free(&t.q), kn_tensor_free(&t.d_o), kn_tensor_free(&t.lse);
            kn_tensor_free(&t.dsum);
        }
        double err = 0.0;
        for (size_t i = 0; i < B * HK * N * D; i++)
            err = fmax(err, fmax(fabs(dk_sum[i] - dk[i]), fabs(dv_sum[i] - dv[i])));
        CHECK(err < 1e-5, "dK, dV summed over query tiles (causal %d): error %g", causal, err);
        free(dk_sum), free(dv_sum);
    }
    free(q), free(k), free(v), free(d_o), free(o), free(lse), free(dq), free(dk), free(dv);
    return test_finish("test_tiles");
}
