/* kernel_cuda.c - one checked, timed run of a CUDA kernel for `attnsim kernels --backend cuda`
 * (see kernel_study.h). Inputs come from the same seeded generator as on the CPU; the kernel is
 * checked before it is timed; times are CUDA events around each of `reps` launches after two
 * warm-up launches; the predicted traffic is the kernel IO model at the CUDA kernels' blocks.
 */
#include <cuda_runtime.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "kc_attn.h"
#include "kernel_study.h"
#include "ref_f64.h"
#include "timing.h"

void attn_check_cuda(int ret, const char *call, const char *file, int line)
{
    if (ret != 0)
        attn_fail(call, file, line, "%s (%s)", cudaGetErrorString((cudaError_t)ret),
                  cudaGetErrorName((cudaError_t)ret));
}

/* Above this many multiply-adds (b h nq nk d) the check samples rows instead of computing the
 * whole float64 reference on the host. */
#define FULL_CHECK_MACS (1ull << 30)
#define SAMPLES         64

typedef struct {
    void *q, *k, *v, *o, *d_o, *dq, *dk, *dv, *ws;
    float *lse;
} dev_bufs;

static void *dmalloc(size_t bytes)
{
    void *p = NULL;
    CUDACALL(cudaMalloc(&p, bytes ? bytes : 16));
    return p;
}

static void *upload(const kn_tensor *t)
{
    size_t bytes = t->elems * kn_dtype_bytes(t->dtype);
    void *p = dmalloc(bytes);
    if (bytes) CUDACALL(cudaMemcpy(p, t->data, bytes, cudaMemcpyHostToDevice));
    return p;
}

static void download(kn_tensor *t, const void *p)
{
    size_t bytes = t->elems * kn_dtype_bytes(t->dtype);
    if (bytes) CUDACALL(cudaMemcpy(t->data, p, bytes, cudaMemcpyDeviceToHost));
}

static int is_fwd(const ks_kernel *k)
{
    return strcmp(k->pass, "fwd") == 0;
}

/* One launch of the kernel under test. */
static void launch(const ks_kernel *k, const kc_shape *cs, dev_bufs *b)
{
    switch (k->model) {
    case KIO_FA2_FWD:
        CUDACALL(kc_attn_fwd(cs, b->q, b->k, b->v, b->o, b->lse, NULL));
        break;
    case KIO_FA2_BWD:
        CUDACALL(kc_attn_bwd(cs, b->q, b->k, b->v, b->o, b->d_o, b->lse, b->dq, b->dk, b->dv, b->ws,
                             NULL));
        break;
    case KIO_STANDARD_FWD:
        CUDACALL(kc_standard_fwd(cs, b->q, b->k, b->v, b->o, b->lse, b->ws, NULL));
        break;
    case KIO_FA1_FWD:
        CUDACALL(kc_fa1_fwd(cs, b->q, b->k, b->v, b->o, b->lse, b->ws, NULL));
        break;
    }
}

typedef struct {
    const ks_kernel *k;
    const kc_shape *cs;
    dev_bufs *b;
} timed_launch;

static void timed(void *ctx, int i, void *stream)
{
    (void)i, (void)stream; /* launch() runs on the default stream */
    timed_launch *t = ctx;
    launch(t->k, t->cs, t->b);
}

size_t ks_cuda_workspace_bytes(const ks_kernel *k, const kn_shape *s, kn_dtype dtype)
{
    kc_shape cs = {(int)dtype, s->batch, s->heads,  s->kv_heads, s->nq,
                   s->nk,      s->d,     s->causal, NULL,        NULL};
    switch (k->model) {
    case KIO_FA2_BWD:
        return kc_attn_bwd_workspace_bytes(&cs);
    case KIO_STANDARD_FWD:
        return kc_standard_workspace_bytes(&cs);
    case KIO_FA1_FWD:
        return kc_fa1_workspace_bytes(&cs);
    default:
        return 0;
    }
}

kn_blocks ks_cuda_blocks(const ks_kernel *k, const kn_shape *s)
{
    kn_blocks b = {0, 0};
    if (k->model == KIO_FA2_BWD)
        kc_attn_bwd_blocks(s->d, &b.br, &b.bc);
    else if (k->model == KIO_STANDARD_FWD)
        b.br = b.bc = 16;
    else if (k->model == KIO_FA1_FWD)
        kc_fa1_blocks(s->d, &b.br, &b.bc);
    else
        kc_attn_fwd_blocks(s->d, &b.br, &b.bc);
    return b;
}

/* ---- checks --------------------------------------------------------------------------------- */

static void note_err(ks_result *r, double err, double ref_max, double tol, int inf_bad)
{
    double scale = fmax(1.0, ref_max);
    r->max_abs_err = fmax(r->max_abs_err, err);
    r->max_rel_err = fmax(r->max_rel_err, err / fmax(ref_max, 1e-30));
    if (inf_bad || err > tol * scale) r->check_passed = 0;
}

static void compare_all(ks_result *r, const kn_tensor *t, const double *ref, double tol)
{
    double err = 0, mx = 0;
    int bad = 0;
    for (size_t i = 0; i < t->elems; i++) {
        double x = kn_tensor_get(t, i);
        if (isinf(ref[i]) || isinf(x) || isnan(x)) {
            bad |= !(x == ref[i]);
            continue;
        }
        err = fmax(err, fabs(x - ref[i]));
        mx = fmax(mx, fabs(ref[i]));
    }
    note_err(r, err, mx, tol, bad);
}

static void compare_lse(ks_result *r, const float *lse, const double *ref, size_t n)
{
    double err = 0, mx = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (isinf(ref[i]) || isinf(lse[i]) || isnan(lse[i])) {
            bad |= !((double)lse[i] == ref[i]);
            continue;
        }
        err = fmax(err, fabs(lse[i] - ref[i]));
        mx = fmax(mx, fabs(ref[i]));
    }
    note_err(r, err, mx, ref_tolerance(KN_F32) * 10, bad);
}

static double dot(const kn_tensor *a, size_t ia, const kn_tensor *b, size_t ib, size_t d)
{
    double s = 0;
    for (size_t c = 0; c < d; c++) s += (double)kn_tensor_get(a, ia + c) * kn_tensor_get(b, ib + c);
    return s;
}

/* The whole float64 reference (small problems). */
static void check_full(const ks_kernel *k, kn_problem *p, const float *lse, ks_result *r)
{
    const kn_shape *s = &p->shape;
    double *q = kn_tensor_to_f64(&p->t.q), *kk = kn_tensor_to_f64(&p->t.k);
    double *v = kn_tensor_to_f64(&p->t.v);
    size_t nq = kn_q_elems(s), nkv = kn_kv_elems(s), rows = kn_row_elems(s);
    double tol = ref_tolerance(p->dtype);
    if (is_fwd(k)) {
        double *o = kn_xmalloc(nq * sizeof(double), "reference O");
        double *l = kn_xmalloc(rows * sizeof(double), "reference LSE");
        ref_attn_fwd_f64(s, q, kk, v, o, l);
        compare_all(r, &p->t.o, o, tol);
        compare_lse(r, lse, l, rows);
        free(o), free(l);
    } else {
        double *d_o = kn_tensor_to_f64(&p->t.d_o);
        double *dq = kn_xmalloc(nq * sizeof(double), "reference dQ");
        double *dk = kn_xmalloc(nkv * sizeof(double), "reference dK");
        double *dv = kn_xmalloc(nkv * sizeof(double), "reference dV");
        ref_attn_bwd_f64(s, q, kk, v, d_o, dq, dk, dv);
        compare_all(r, &p->t.dq, dq, tol);
        compare_all(r, &p->t.dk, dk, tol);
        compare_all(r, &p->t.dv, dv, tol);
        free(d_o), free(dq), free(dk), free(dv);
    }
    free(q), free(kk), free(v);
}

/* Sampled rows of batch 0 (large problems): SAMPLES query rows of head 0 (O, LSE and dQ from
 * the float64 definition of those rows), and SAMPLES key rows of K/V head 0 (dK, dV summed
 * over the query heads sharing it, with the kernel's LSE and D = rowsum(dO * O) of every query
 * row, which the sampled rows verify). */
static void check_sampled(const ks_kernel *k, kn_problem *p, const float *lse, ks_result *r)
{
    const kn_shape *s = &p->shape;
    const size_t d = s->d, nq = s->nq, nk = s->nk, g = s->heads / s->kv_heads;
    const double scale = 1.0 / sqrt((double)d), tol = ref_tolerance(p->dtype);
    double *sc = kn_xmalloc((nk + 1) * sizeof(double), "scores");
    double *acc = kn_xmalloc(d * sizeof(double), "row");
    double err_o = 0, max_o = 0, err_l = 0, max_l = 0, err_dq = 0, max_dq = 0;
    int bad = 0;
    for (size_t si = 0; si < SAMPLES && si < nq; si++) {
        size_t i = nq <= SAMPLES ? si : si * (nq - 1) / (SAMPLES - 1);
        size_t keys = kn_keys_visible(s, i);
        double m = -INFINITY, l = 0;
        for (size_t j = 0; j < keys; j++) {
            sc[j] = scale * dot(&p->t.q, i * d, &p->t.k, j * d, d);
            m = fmax(m, sc[j]);
        }
        for (size_t j = 0; j < keys; j++) l += exp(sc[j] - m);
        double lse_ref = keys ? m + log(l) : -INFINITY;
        if (is_fwd(k)) {
            if (isinf(lse_ref) || isnan(lse[i]))
                bad |= !((double)lse[i] == lse_ref);
            else
                err_l = fmax(err_l, fabs(lse[i] - lse_ref)), max_l = fmax(max_l, fabs(lse_ref));
            for (size_t c = 0; c < d; c++) acc[c] = 0;
            for (size_t j = 0; j < keys; j++)
                for (size_t c = 0; c < d; c++)
                    acc[c] += exp(sc[j] - lse_ref) * kn_tensor_get(&p->t.v, j * d + c);
            for (size_t c = 0; c < d; c++) {
                double x = kn_tensor_get(&p->t.o, i * d + c);
                bad |= isnan(x);
                err_o = fmax(err_o, fabs(x - acc[c])), max_o = fmax(max_o, fabs(acc[c]));
            }
        } else {
            /* dq_i = scale sum_j P_ij (dP_ij - D_i) k_j, D_i = dO_i . O_i (reference O row) */
            double *o_row = kn_xmalloc(d * sizeof(double), "O row");
            for (size_t c = 0; c < d; c++) o_row[c] = 0;
            for (size_t j = 0; j < keys; j++)
                for (size_t c = 0; c < d; c++)
                    o_row[c] += exp(sc[j] - lse_ref) * kn_tensor_get(&p->t.v, j * d + c);
            double D = 0;
            for (size_t c = 0; c < d; c++) D += o_row[c] * kn_tensor_get(&p->t.d_o, i * d + c);
            for (size_t c = 0; c < d; c++) acc[c] = 0;
            for (size_t j = 0; j < keys; j++) {
                double pij = exp(sc[j] - lse_ref);
                double ds = pij * (dot(&p->t.d_o, i * d, &p->t.v, j * d, d) - D);
                for (size_t c = 0; c < d; c++)
                    acc[c] += scale * ds * kn_tensor_get(&p->t.k, j * d + c);
            }
            for (size_t c = 0; c < d; c++) {
                double x = kn_tensor_get(&p->t.dq, i * d + c);
                bad |= isnan(x);
                err_dq = fmax(err_dq, fabs(x - acc[c])), max_dq = fmax(max_dq, fabs(acc[c]));
            }
            free(o_row);
        }
    }
    if (is_fwd(k)) {
        note_err(r, err_o, max_o, tol, bad);
        note_err(r, err_l, max_l, ref_tolerance(KN_F32) * 10, 0);
    } else {
        note_err(r, err_dq, max_dq, tol, bad);
        /* dK, dV rows of K/V head 0 from every query row of the heads sharing it */
        double *dk = kn_xmalloc(d * sizeof(double), "dK row"), *dv = acc;
        double err_k = 0, max_k = 0, err_v = 0, max_v = 0;
        for (size_t sj = 0; sj < SAMPLES && sj < nk; sj++) {
            size_t j = nk <= SAMPLES ? sj : sj * (nk - 1) / (SAMPLES - 1);
            for (size_t c = 0; c < d; c++) dk[c] = dv[c] = 0;
            for (size_t h = 0; h < g; h++)
                for (size_t i = 0; i < nq; i++) {
                    if (!kn_key_visible(s, i, j)) continue;
                    size_t qi = (h * nq + i) * d, ri = h * nq + i;
                    double Di = 0;
                    for (size_t c = 0; c < d; c++)
                        Di += (double)kn_tensor_get(&p->t.d_o, qi + c) *
                              kn_tensor_get(&p->t.o, qi + c);
                    double pij = exp(scale * dot(&p->t.q, qi, &p->t.k, j * d, d) - lse[ri]);
                    double ds = pij * (dot(&p->t.d_o, qi, &p->t.v, j * d, d) - Di);
                    for (size_t c = 0; c < d; c++) {
                        dv[c] += pij * kn_tensor_get(&p->t.d_o, qi + c);
                        dk[c] += scale * ds * kn_tensor_get(&p->t.q, qi + c);
                    }
                }
            for (size_t c = 0; c < d; c++) {
                double xk = kn_tensor_get(&p->t.dk, j * d + c),
                       xv = kn_tensor_get(&p->t.dv, j * d + c);
                bad |= isnan(xk) || isnan(xv);
                err_k = fmax(err_k, fabs(xk - dk[c])), max_k = fmax(max_k, fabs(dk[c]));
                err_v = fmax(err_v, fabs(xv - dv[c])), max_v = fmax(max_v, fabs(dv[c]));
            }
        }
        note_err(r, err_k, max_k, tol, bad);
        note_err(r, err_v, max_v, tol, bad);
        free(dk);
    }
    free(sc);
    free(acc);
}

/* ---- the run -------------------------------------------------------------------------------- */

int ks_run_cuda(const ks_kernel *k, const kn_shape *s, kn_dtype dtype, uint64_t seed, uint64_t reps,
                double *times, ks_result *r)
{
    memset(r, 0, sizeof *r);
    kn_problem p;
    kn_problem_init(&p, s, dtype, KN_NEED_FWD | (is_fwd(k) ? 0 : KN_NEED_BWD), seed);
    kc_shape cs = {(int)dtype, s->batch, s->heads,  s->kv_heads, s->nq,
                   s->nk,      s->d,     s->causal, NULL,        NULL};
    size_t eb = kn_dtype_bytes(dtype), nq = kn_q_elems(s), nkv = kn_kv_elems(s);
    size_t rows = kn_row_elems(s);
    dev_bufs b;
    memset(&b, 0, sizeof b);
    b.q = upload(&p.t.q), b.k = upload(&p.t.k), b.v = upload(&p.t.v);
    b.o = dmalloc(nq * eb);
    b.lse = dmalloc(rows * sizeof(float));
    b.ws = dmalloc(ks_cuda_workspace_bytes(k, s, dtype));
    if (!is_fwd(k)) {
        b.d_o = upload(&p.t.d_o);
        b.dq = dmalloc(nq * eb), b.dk = dmalloc(nkv * eb), b.dv = dmalloc(nkv * eb);
        CUDACALL(kc_attn_fwd(&cs, b.q, b.k, b.v, b.o, b.lse, NULL)); /* O and LSE */
    }

    if (getenv("ATTNSIM_DRAM_CHILD")) { /* under ncu (ks_cuda_dram): one launch, nothing else */
        launch(k, &cs, &b);
        CUDACALL(cudaDeviceSynchronize());
        for (uint64_t i = 0; i < reps; i++) times[i] = 0;
        void *all[] = {b.q, b.k, b.v, b.o, b.d_o, b.dq, b.dk, b.dv, b.ws, b.lse};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            if (all[i]) CUDACALL(cudaFree(all[i]));
        r->blocks = ks_cuda_blocks(k, s);
        kn_problem_free(&p);
        return 0;
    }

    /* check first */
    launch(k, &cs, &b);
    CUDACALL(cudaDeviceSynchronize());
    float *lse = kn_xmalloc(rows * sizeof(float) + 4, "LSE");
    CUDACALL(cudaMemcpy(lse, b.lse, rows * sizeof(float), cudaMemcpyDeviceToHost));
    download(&p.t.o, b.o);
    if (!is_fwd(k)) download(&p.t.dq, b.dq), download(&p.t.dk, b.dk), download(&p.t.dv, b.dv);
    r->checked = 1;
    r->check_passed = 1;
    double macs = (double)s->batch * s->heads * s->nq * s->nk * s->d;
    r->check_sampled = macs > (double)FULL_CHECK_MACS;
    if (r->check_sampled)
        check_sampled(k, &p, lse, r);
    else
        check_full(k, &p, lse, r);
    free(lse);

    /* then time: two warm-up launches, then `reps` launches between events */
    timed_launch tl = {k, &cs, &b};
    timing_cuda_events(timed, &tl, NULL, 2, reps, times);
    void *all[] = {b.q, b.k, b.v, b.o, b.d_o, b.dq, b.dk, b.dv, b.ws, b.lse};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]) CUDACALL(cudaFree(all[i]));

    r->blocks = ks_cuda_blocks(k, s);
    kio_predict(k->model, s, eb, r->blocks, s->nk, &r->predicted);
    r->measured.flops = r->predicted.flops; /* the tiles the kernel computes */
    r->time_s = times[0];
    kn_problem_free(&p);
    return 0;
}

const char *ks_cuda_device(char *buf, size_t n)
{
    int dev = 0;
    struct cudaDeviceProp prop;
    CUDACALL(cudaGetDevice(&dev));
    CUDACALL(cudaGetDeviceProperties(&prop, dev));
    snprintf(buf, n, "%s (sm_%d%d, %d SMs)", prop.name, prop.major, prop.minor,
             prop.multiProcessorCount);
    return buf;
}

uint64_t ks_cuda_free_bytes(void)
{
    size_t free_b = 0, total = 0;
    CUDACALL(cudaMemGetInfo(&free_b, &total));
    return free_b;
}
