/* run_check.c - `attnsim run --check`: the outputs (and gradients) of a distributed run,
 * gathered on rank 0 in the whole problem's layout, against the float64 reference of the whole
 * problem (ref_f64.c) or, on the GPU beyond ~2^34 multiply-adds, a single-GPU run of the CUDA
 * kernel; the tolerance is the storage type's (ref_tolerance). */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>

#include "fail.h"
#include "ref_f64.h"
#include "run.h"
#ifdef ATTNSIM_HAVE_CUDA
#include "dev_cuda.h"
#endif

typedef struct {
    double max_abs, max_ref;
    int bad;
} err_acc;

static void compare_into(err_acc *a, const double *x, const double *ref, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (isinf(ref[i]) || isnan(x[i])) {
            a->bad |= x[i] != ref[i];
            continue;
        }
        a->max_abs = fmax(a->max_abs, fabs(x[i] - ref[i]));
        a->max_ref = fmax(a->max_ref, fabs(ref[i]));
    }
}

/* Gathers one output tensor (per-rank shards in the algorithm's layout) on rank 0 into the
 * whole-problem layout [b][heads][N][d], as float64. */
static double *gather_output(const exec_ctx *x, const kn_tensor *shard, size_t heads)
{
    const am_config *c = &x->cfg;
    size_t e = kn_dtype_bytes(x->dtype), d = c->head_dim, P = c->P;
    int *counts = NULL, *displs = NULL;
    char *all = NULL;
    int mine = (int)(shard->elems * e);
    if (x->rank == 0) {
        counts = kn_xmalloc(P * sizeof(int), "counts");
        displs = kn_xmalloc(P * sizeof(int), "displacements");
    }
    MPICALL(MPI_Gather(&mine, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD));
    size_t total = 0;
    if (x->rank == 0) {
        for (size_t r = 0; r < P; r++) displs[r] = (int)total, total += (size_t)counts[r];
        all = kn_xmalloc(total + 1, "gathered outputs");
    }
    MPICALL(
        MPI_Gatherv(shard->data, mine, MPI_BYTE, all, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD));
    double *full = NULL;
    if (x->rank == 0) {
        full = kn_xmalloc(c->batch * heads * c->N * d * sizeof(double) + 1, "output");
        for (size_t r = 0; r < P; r++) {
            size_t n;
            uint64_t *pos = exec_tokens_of(c, r, &n);
            kn_tensor view = exec_view(all + displs[r], x->dtype, c->batch * heads * n * d);
            for (size_t p = 0; p < c->batch * heads; p++)
                for (size_t j = 0; j < n; j++)
                    for (size_t a = 0; a < d; a++)
                        full[(p * c->N + pos[j]) * d + a] =
                            kn_tensor_get(&view, (p * n + j) * d + a);
            free(pos);
        }
        free(all), free(counts), free(displs);
    }
    return full;
}

void run_check(const exec_ctx *x, int bwd, run_check_result *r)
{
    double *max_abs = &r->max_abs, *max_rel = &r->max_rel;
    int *passed = &r->passed;
    r->checked = 1;
    const am_config *c = &x->cfg;
    double *o = gather_output(x, &x->o, c->heads);
    double *dq = NULL, *dk = NULL, *dv = NULL;
    if (bwd) {
        dq = gather_output(x, &x->dq, c->heads);
        dk = gather_output(x, &x->dk, c->kv_heads);
        dv = gather_output(x, &x->dv, c->kv_heads);
    }
    if (x->rank != 0) return;
    kn_shape s = {c->batch, c->heads, c->kv_heads, c->N, c->N, c->head_dim, c->causal, NULL, NULL};
    kn_problem p;
    kn_problem_init(&p, &s, x->dtype, KN_NEED_FWD | (bwd ? KN_NEED_BWD : 0), x->seed);
    size_t qe = kn_q_elems(&s), ke = kn_kv_elems(&s);
    double *oref = NULL, *rq = NULL, *rk = NULL, *rv = NULL;
    r->method = "float64 reference of the whole problem";
#ifdef ATTNSIM_HAVE_CUDA
    /* beyond ~2^34 multiply-adds the float64 reference takes too long: a single-GPU run of the
     * CUDA FA2 kernel on the whole problem is the reference instead */
    if (x->dev == &exec_dev_cuda &&
        (double)c->batch * c->heads * c->N * c->N * c->head_dim > 17179869184.0) {
        r->method = "single-GPU CUDA FA2 kernel on the whole problem";
        dev_cuda_reference(&p, bwd, &oref, &rq, &rk, &rv);
    }
#endif
    if (!oref) {
        double *q = kn_tensor_to_f64(&p.t.q), *k = kn_tensor_to_f64(&p.t.k),
               *v = kn_tensor_to_f64(&p.t.v);
        double *lse = kn_xmalloc(kn_row_elems(&s) * sizeof(double), "lse");
        oref = kn_xmalloc(qe * sizeof(double), "reference");
        ref_attn_fwd_f64(&s, q, k, v, oref, lse);
        if (bwd) {
            double *d_o = kn_tensor_to_f64(&p.t.d_o);
            rq = kn_xmalloc(qe * sizeof(double), "ref");
            rk = kn_xmalloc(ke * sizeof(double), "ref");
            rv = kn_xmalloc(ke * sizeof(double), "ref");
            ref_attn_bwd_f64(&s, q, k, v, d_o, rq, rk, rv);
            free(d_o);
        }
        free(q), free(k), free(v), free(lse);
    }
    double tol = ref_tolerance(x->dtype);
    *passed = 1;
    *max_abs = *max_rel = 0.0;
    err_acc a = {0, 0, 0};
    compare_into(&a, o, oref, qe);
    if (bwd) {
        err_acc g[3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}};
        compare_into(&g[0], dq, rq, qe);
        compare_into(&g[1], dk, rk, ke);
        compare_into(&g[2], dv, rv, ke);
        for (int i = 0; i < 3; i++) {
            *passed &= !g[i].bad && g[i].max_abs <= tol * fmax(1.0, g[i].max_ref);
            *max_abs = fmax(*max_abs, g[i].max_abs);
            *max_rel = fmax(*max_rel, g[i].max_abs / fmax(g[i].max_ref, 1e-30));
        }
        free(rq), free(rk), free(rv), free(dq), free(dk), free(dv);
    }
    *passed &= !a.bad && a.max_abs <= tol * fmax(1.0, a.max_ref);
    *max_abs = fmax(*max_abs, a.max_abs);
    *max_rel = fmax(*max_rel, a.max_abs / fmax(a.max_ref, 1e-30));
    free(o), free(oref);
    kn_problem_free(&p);
}
