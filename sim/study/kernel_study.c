/* kernel_study.c - catalogue and one run of a single-device kernel (see kernel_study.h). */
#include "kernel_study.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_f64.h"
#include "timing.h"

const ks_kernel ks_kernels[] = {
    {"standard", "fwd", kn_standard_fwd, kn_standard_blocks, kn_standard_working_set,
     KN_NEED_FWD | KN_NEED_STANDARD, KIO_STANDARD_FWD},
    {"fa1", "fwd", kn_fa1_fwd, kn_fa1_blocks, kn_fa1_working_set, KN_NEED_FWD | KN_NEED_FA1,
     KIO_FA1_FWD},
    {"fa2", "fwd", kn_fa2_fwd, kn_fa2_fwd_blocks, kn_fa2_fwd_working_set, KN_NEED_FWD, KIO_FA2_FWD},
    {"fa2", "bwd", kn_fa2_bwd, kn_fa2_bwd_blocks, kn_fa2_bwd_working_set, KN_NEED_FWD | KN_NEED_BWD,
     KIO_FA2_BWD},
};
const size_t ks_num_kernels = sizeof ks_kernels / sizeof ks_kernels[0];

const ks_kernel *ks_find(const char *name, const char *pass)
{
    for (size_t i = 0; i < ks_num_kernels; i++)
        if (strcmp(ks_kernels[i].name, name) == 0 && strcmp(ks_kernels[i].pass, pass) == 0)
            return &ks_kernels[i];
    return NULL;
}

size_t ks_min_sram(const ks_kernel *k, size_t d)
{
    return k->working_set(1, 1, d);
}

/* Error of one output tensor against its reference; an element passes when
 * |x - ref| <= tol * max(1, max |ref|). Infinite references (LSE of a masked row) must be
 * matched exactly. */
typedef struct {
    double max_abs, max_ref;
    int inf_mismatch;
} tensor_err;

static void compare(const double *x, const double *ref, size_t n, tensor_err *e)
{
    e->max_abs = 0.0;
    e->max_ref = 0.0;
    e->inf_mismatch = 0;
    for (size_t i = 0; i < n; i++) {
        if (isinf(ref[i]) || isinf(x[i]) || isnan(x[i])) {
            if (!(x[i] == ref[i])) e->inf_mismatch = 1;
            continue;
        }
        e->max_abs = fmax(e->max_abs, fabs(x[i] - ref[i]));
        e->max_ref = fmax(e->max_ref, fabs(ref[i]));
    }
}

static void accumulate(ks_result *r, const tensor_err *e, double tol)
{
    double scale = fmax(1.0, e->max_ref);
    r->max_abs_err = fmax(r->max_abs_err, e->max_abs);
    r->max_rel_err = fmax(r->max_rel_err, e->max_abs / fmax(e->max_ref, 1e-30));
    if (e->inf_mismatch || e->max_abs > tol * scale) r->check_passed = 0;
}

static void check_outputs(const ks_kernel *k, const kn_problem *p, ks_result *r)
{
    const kn_shape *s = &p->shape;
    double *q = kn_tensor_to_f64(&p->t.q), *kk = kn_tensor_to_f64(&p->t.k);
    double *v = kn_tensor_to_f64(&p->t.v);
    size_t nq = kn_q_elems(s), nkv = kn_kv_elems(s), nrows = kn_row_elems(s);
    double tol = ref_tolerance(p->dtype);
    tensor_err e;
    r->checked = 1;
    r->check_passed = 1;
    r->max_abs_err = r->max_rel_err = 0.0;
    if (strcmp(k->pass, "fwd") == 0) {
        double *o_ref = kn_xmalloc(nq * sizeof(double), "reference O");
        double *lse_ref = kn_xmalloc(nrows * sizeof(double), "reference LSE");
        ref_attn_fwd_f64(s, q, kk, v, o_ref, lse_ref);
        double *o = kn_tensor_to_f64(&p->t.o);
        compare(o, o_ref, nq, &e);
        accumulate(r, &e, tol);
        if (k->model != KIO_STANDARD_FWD) { /* standard attention writes no LSE */
            double *lse = kn_xmalloc(nrows * sizeof(double), "LSE");
            for (size_t i = 0; i < nrows; i++) {
                if (k->model == KIO_FA1_FWD) {
                    float m = kn_tensor_get(&p->t.m, i), l = kn_tensor_get(&p->t.l, i);
                    lse[i] = l > 0.0f ? (double)m + log((double)l) : -INFINITY;
                } else {
                    lse[i] = kn_tensor_get(&p->t.lse, i);
                }
            }
            compare(lse, lse_ref, nrows, &e);
            accumulate(r, &e, ref_tolerance(KN_F32) * 10); /* statistics are kept in f32 */
            free(lse);
        }
        free(o);
        free(o_ref);
        free(lse_ref);
    } else {
        double *d_o = kn_tensor_to_f64(&p->t.d_o);
        double *dq_ref = kn_xmalloc(nq * sizeof(double), "reference dQ");
        double *dk_ref = kn_xmalloc(nkv * sizeof(double), "reference dK");
        double *dv_ref = kn_xmalloc(nkv * sizeof(double), "reference dV");
        ref_attn_bwd_f64(s, q, kk, v, d_o, dq_ref, dk_ref, dv_ref);
        const kn_tensor *outs[3] = {&p->t.dq, &p->t.dk, &p->t.dv};
        double *refs[3] = {dq_ref, dk_ref, dv_ref};
        size_t ns[3] = {nq, nkv, nkv};
        for (int i = 0; i < 3; i++) {
            double *x = kn_tensor_to_f64(outs[i]);
            compare(x, refs[i], ns[i], &e);
            accumulate(r, &e, tol);
            free(x);
        }
        free(d_o);
        free(dq_ref);
        free(dk_ref);
        free(dv_ref);
    }
    free(q);
    free(kk);
    free(v);
}

int ks_run(const ks_kernel *k, const kn_shape *s, kn_dtype dtype, size_t sram_elems, uint64_t seed,
           int check, ks_result *r)
{
    memset(r, 0, sizeof *r);
    kn_problem p;
    kn_problem_init(&p, s, dtype, k->need, seed);
    if (strcmp(k->pass, "bwd") == 0) { /* the backward needs the forward's O and LSE */
        kn_counters fwd = {0};
        kn_fa2_fwd(s, sram_elems, &p.t, &fwd);
    }
    r->blocks = k->blocks(s, sram_elems);
    double t0 = timing_now_s();
    k->run(s, sram_elems, &p.t, &r->measured);
    r->time_s = timing_now_s() - t0;
    kio_predict(k->model, s, kn_dtype_bytes(dtype), r->blocks,
                kn_standard_softmax_chunk(sram_elems), &r->predicted);
    if (check) check_outputs(k, &p, r);
    kn_problem_free(&p);
    return 0;
}

int ks_counts_match(const ks_result *r)
{
    return r->measured.bytes_read == r->predicted.bytes_read &&
           r->measured.bytes_written == r->predicted.bytes_written &&
           r->measured.flops == r->predicted.flops;
}
