/* test_kernels.c - every kernel against the float64 reference, per storage type, with the
 * tolerance of ref_tolerance(); and the float64 reference backward against central finite
 * differences of the float64 forward, so the ground truth itself is checked. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_study.h"
#include "ref_f64.h"
#include "test_util.h"

static void check_kernel(const ks_kernel *k, const kn_shape *s, kn_dtype dt, size_t M)
{
    if (M < ks_min_sram(k, s->d)) return;
    ks_result r;
    ks_run(k, s, dt, M, 42, 1, &r);
    CHECK(r.checked && r.check_passed,
          "%s %s %s b=%zu h=%zu hkv=%zu nq=%zu nk=%zu d=%zu causal=%d M=%zu: max abs err %.3g "
          "(rel %.3g, tolerance %.3g)",
          k->name, k->pass, kn_dtype_name(dt), s->batch, s->heads, s->kv_heads, s->nq, s->nk, s->d,
          s->causal, M, r.max_abs_err, r.max_rel_err, ref_tolerance(dt));
}

/* Loss L = sum(O * dO); dL/dx by central differences of the float64 forward. */
static double loss(const kn_shape *s, const double *q, const double *k, const double *v,
                   const double *d_o, double *o, double *lse)
{
    ref_attn_fwd_f64(s, q, k, v, o, lse);
    double L = 0.0;
    for (size_t i = 0; i < s->batch * s->heads * s->nq * s->d; i++) L += o[i] * d_o[i];
    return L;
}

static void finite_differences(const kn_shape *s)
{
    size_t nq = kn_q_elems(s), nkv = kn_kv_elems(s), rows = kn_row_elems(s);
    double *q = malloc(nq * sizeof(double)), *k = malloc(nkv * sizeof(double));
    double *v = malloc(nkv * sizeof(double)), *d_o = malloc(nq * sizeof(double));
    double *o = malloc(nq * sizeof(double)), *lse = malloc(rows * sizeof(double));
    double *dq = malloc(nq * sizeof(double)), *dk = malloc(nkv * sizeof(double));
    double *dv = malloc(nkv * sizeof(double));
    for (size_t i = 0; i < nq; i++) {
        q[i] = kn_gen_value(3, KN_GEN_Q, i);
        d_o[i] = kn_gen_value(3, KN_GEN_DO, i);
    }
    for (size_t i = 0; i < nkv; i++) {
        k[i] = kn_gen_value(3, KN_GEN_K, i);
        v[i] = kn_gen_value(3, KN_GEN_V, i);
    }
    ref_attn_bwd_f64(s, q, k, v, d_o, dq, dk, dv);
    double *xs[3] = {q, k, v}, *gs[3] = {dq, dk, dv};
    size_t ns[3] = {nq, nkv, nkv};
    const double h = 1e-5;
    for (int t = 0; t < 3; t++)
        for (size_t i = 0; i < ns[t]; i++) {
            double keep = xs[t][i];
            xs[t][i] = keep + h;
            double lp = loss(s, q, k, v, d_o, o, lse);
            xs[t][i] = keep - h;
            double lm = loss(s, q, k, v, d_o, o, lse);
            xs[t][i] = keep;
            double fd = (lp - lm) / (2 * h);
            CHECK(fabs(fd - gs[t][i]) <= 1e-7 + 1e-6 * fabs(fd),
                  "finite difference of %c[%zu] (nq=%zu nk=%zu causal=%d hkv=%zu): %.10g vs "
                  "analytic %.10g",
                  "QKV"[t], i, s -> nq, s -> nk, s -> causal, s -> kv_heads, fd, gs[t][i]);
        }
    free(q), free(k), free(v), free(d_o), free(o), free(lse), free(dq), free(dk), free(dv);
}

int main(void)
{
    /* the ground truth: float64 backward vs finite differences, small shapes */
    const size_t fd_shapes[][2] = {{5, 5}, {3, 7}, {7, 3}};
    for (size_t i = 0; i < 3; i++)
        for (int causal = 0; causal < 2; causal++)
            for (int gqa = 0; gqa < 2; gqa++) {
                kn_shape s = {1,      2,    gqa ? 1 : 2, fd_shapes[i][0], fd_shapes[i][1], 4,
                              causal, NULL, NULL};
                finite_differences(&s);
            }

    /* every kernel, every storage type, against the float64 reference */
    const size_t shapes[][2] = {{1, 1}, {17, 17}, {64, 64}, {130, 130}, {33, 100}, {100, 33}};
    const size_t dims[] = {16, 64, 256};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t di = 0; di < 3; di++)
            for (int causal = 0; causal < 2; causal++)
                for (int dt = 0; dt < KN_NUM_DTYPES; dt++) {
                    size_t d = dims[di];
                    if (d == 256 && shapes[si][0] > 64) continue; /* d = 256: keep it short */
                    kn_shape s = {2, 4,      causal ? 2 : 4, shapes[si][0], shapes[si][1],
                                  d, causal, NULL,           NULL};
                    size_t Ms[2] = {7 * d, 64 * d};
                    for (int mi = 0; mi < 2; mi++)
                        for (size_t ki = 0; ki < ks_num_kernels; ki++)
                            check_kernel(&ks_kernels[ki], &s, (kn_dtype)dt, Ms[mi]);
                }

    /* Huge scores: Q, K, V scaled by 1e4 (scores ~1e9): the online softmax subtracts the row
     * maximum, so O stays finite and inside the range of V, and the gradients stay finite, in
     * every storage type (1e4 fits f16's 65504). */
    for (int dt = 0; dt < KN_NUM_DTYPES; dt++)
        for (size_t ki = 0; ki < ks_num_kernels; ki++) {
            const ks_kernel *k = &ks_kernels[ki];
            kn_shape hs = {1, 2, 1, 40, 40, 16, 1, NULL, NULL};
            kn_problem p;
            kn_problem_init(&p, &hs, (kn_dtype)dt, k->need, 11);
            kn_tensor *in[4] = {&p.t.q, &p.t.k, &p.t.v, &p.t.d_o};
            for (int t = 0; t < (k->need & KN_NEED_BWD ? 4 : 3); t++)
                for (size_t i = 0; i < in[t]->elems; i++)
                    kn_tensor_set(in[t], i, 1e4f * kn_tensor_get(in[t], i));
            kn_counters c = {0};
            if (k->need & KN_NEED_BWD) kn_fa2_fwd(&hs, 4096, &p.t, &c);
            k->run(&hs, 4096, &p.t, &c);
            double vmax = 0;
            for (size_t i = 0; i < p.t.v.elems; i++)
                vmax = fmax(vmax, fabs(kn_tensor_get(&p.t.v, i)));
            int finite = 1, inside = 1;
            const kn_tensor *out[3] = {&p.t.o, &p.t.dq, &p.t.dk};
            for (int t = 0; t < (k->need & KN_NEED_BWD ? 3 : 1); t++)
                for (size_t i = 0; i < out[t]->elems; i++) {
                    float v = kn_tensor_get(out[t], i);
                    finite &= isfinite(v);
                    if (t == 0) inside &= fabs(v) <= vmax * 1.01;
                }
            CHECK(finite && inside, "%s %s %s with inputs x1e4: finite %d, O within |V| %d",
                  k->name, k->pass, kn_dtype_name((kn_dtype)dt), finite, inside);
            kn_problem_free(&p);
        }

    /* A rounding check that can fail: with f16 storage the error must be above f32's
     * tolerance but inside f16's, so the per-type tolerances are neither too loose nor void. */
    kn_shape s = {1, 2, 2, 64, 64, 64, 0, NULL, NULL};
    ks_result r32, r16;
    ks_run(ks_find("fa2", "fwd"), &s, KN_F32, 64 * 64, 5, 1, &r32);
    ks_run(ks_find("fa2", "fwd"), &s, KN_F16, 64 * 64, 5, 1, &r16);
    CHECK(r32.max_abs_err < ref_tolerance(KN_F32), "f32 error %.3g", r32.max_abs_err);
    CHECK(r16.max_abs_err > ref_tolerance(KN_F32) * 1e-2 && r16.check_passed,
          "f16 error %.3g is implausible", r16.max_abs_err);
    return test_finish("test_kernels");
}
