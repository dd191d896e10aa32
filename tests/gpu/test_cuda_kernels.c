/* test_cuda_kernels.c - the CUDA kernels (kernels/cuda) against the float64 reference over a
 * grid of shapes: f16/bf16 on the tensor-core path (d = 64, 128) and the generic path (other d,
 * f32), causal and not, grouped-query attention, nq != nk with ragged tails, and rows that see
 * no key (causal with nq > nk: O = 0, LSE = -inf, dQ = 0, never NaN). Checks FA2 forward and
 * backward, standard attention, FA1, and the partial forward plus its merge (two key halves
 * then finalisation) against the whole forward. `--small` runs a few small shapes (for
 * compute-sanitizer). Exit 77 (ctest: skipped) when no CUDA device is usable.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_attn.h"
#include "kn_problem.h"
#include "ref_f64.h"

static int failures, checks;

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (cudaError_t)(call);                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "test_cuda_kernels: %s failed: %s (%s:%d)\n", #call,                   \
                    cudaGetErrorString(e_), __FILE__, __LINE__);                                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct {
    size_t b, h, h_kv, nq, nk, d;
    int causal;
    kn_dtype dt;
} tcase;

static void *to_dev(const kn_tensor *t)
{
    void *p = NULL;
    size_t bytes = t->elems * kn_dtype_bytes(t->dtype);
    CK(cudaMalloc(&p, bytes ? bytes : 16));
    if (bytes) CK(cudaMemcpy(p, t->data, bytes, cudaMemcpyHostToDevice));
    return p;
}

static void *dev_zero(size_t bytes)
{
    void *p = NULL;
    CK(cudaMalloc(&p, bytes ? bytes : 16));
    CK(cudaMemset(p, 0xff, bytes ? bytes : 16)); /* NaN pattern: unwritten outputs show */
    return p;
}

/* Device tensor of storage type -> float64 host copy. */
static double *from_dev(const void *p, kn_dtype dt, size_t n)
{
    kn_tensor t;
    kn_tensor_alloc(&t, dt, n, "check copy");
    if (n) CK(cudaMemcpy(t.data, p, n * kn_dtype_bytes(dt), cudaMemcpyDeviceToHost));
    double *out = kn_tensor_to_f64(&t);
    kn_tensor_free(&t);
    return out;
}

static double *lse_from_dev(const float *p, size_t n)
{
    float *h = malloc(n * sizeof(float) + 1);
    double *out = malloc(n * sizeof(double) + 1);
    if (n) CK(cudaMemcpy(h, p, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) out[i] = h[i];
    free(h);
    return out;
}

/* |x - ref| <= tol * max(1, max |ref|) everywhere; -inf must match -inf; no NaN. */
static void expect_close(const char *what, const tcase *c, const double *x, const double *ref,
                         size_t n, double tol)
{
    double scale = 1.0, worst = 0.0;
    size_t at = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(ref[i]) && fabs(ref[i]) > scale) scale = fabs(ref[i]);
    for (size_t i = 0; i < n; i++) {
        if (isinf(ref[i]) || isinf(x[i]) || isnan(x[i])) {
            if (!(isinf(ref[i]) && x[i] == ref[i])) bad = 1, at = i;
            continue;
        }
        double e = fabs(x[i] - ref[i]);
        if (e > worst) worst = e, at = i;
    }
    checks++;
    if (bad || worst > tol * scale) {
        failures++;
        printf("FAIL %-22s b=%zu h=%zu/%zu nq=%zu nk=%zu d=%zu causal=%d %s: max err %.3g "
               "(tol %.3g) at %zu: got %g, want %g\n",
               what, c->b, c->h, c->h_kv, c->nq, c->nk, c->d, c->causal, kn_dtype_name(c->dt),
               worst / scale, tol, at, x[at], ref[at]);
    }
}

static void run_case(const tcase *c)
{
    kn_shape s = {c->b, c->h, c->h_kv, c->nq, c->nk, c->d, c->causal, NULL, NULL};
    kc_shape ks = {(int)c->dt, c->b, c->h, c->h_kv, c->nq, c->nk, c->d, c->causal};
    kn_problem pr;
    kn_problem_init(&pr, &s, c->dt, KN_NEED_FWD | KN_NEED_BWD, 7);
    size_t nqe = kn_q_elems(&s), nkve = kn_kv_elems(&s), rows = kn_row_elems(&s);
    double *q = kn_tensor_to_f64(&pr.t.q), *k = kn_tensor_to_f64(&pr.t.k);
    double *v = kn_tensor_to_f64(&pr.t.v), *dout = kn_tensor_to_f64(&pr.t.d_o);
    double *ro = malloc(nqe * sizeof(double) + 8), *rl = malloc(rows * sizeof(double) + 8);
    double *rdq = malloc(nqe * sizeof(double) + 8), *rdk = malloc(nkve * sizeof(double) + 8);
    double *rdv = malloc(nkve * sizeof(double) + 8);
    ref_attn_fwd_f64(&s, q, k, v, ro, rl);
    ref_attn_bwd_f64(&s, q, k, v, dout, rdq, rdk, rdv);
    const double tol = ref_tolerance(c->dt);
    const size_t eb = kn_dtype_bytes(c->dt);

    void *dq_in = to_dev(&pr.t.q), *dk_in = to_dev(&pr.t.k), *dv_in = to_dev(&pr.t.v);
    void *ddo = to_dev(&pr.t.d_o);
    void *o = dev_zero(nqe * eb), *dq = dev_zero(nqe * eb);
    void *dk = dev_zero(nkve * eb), *dv = dev_zero(nkve * eb);
    float *lse = dev_zero(rows * sizeof(float));
    void *ws = dev_zero(kc_fa2_bwd_workspace_bytes(&ks));

    /* FA2 forward and backward */
    CK(kc_fa2_fwd(&ks, dq_in, dk_in, dv_in, o, lse, NULL));
    CK(kc_fa2_bwd(&ks, dq_in, dk_in, dv_in, o, ddo, lse, dq, dk, dv, ws, NULL));
    CK(cudaDeviceSynchronize());
    double *x = from_dev(o, c->dt, nqe);
    expect_close("fa2 fwd O", c, x, ro, nqe, tol);
    free(x);
    x = lse_from_dev(lse, rows);
    expect_close("fa2 fwd LSE", c, x, rl, rows, tol);
    free(x);
    x = from_dev(dq, c->dt, nqe);
    expect_close("fa2 bwd dQ", c, x, rdq, nqe, tol);
    free(x);
    x = from_dev(dk, c->dt, nkve);
    expect_close("fa2 bwd dK", c, x, rdk, nkve, tol);
    free(x);
    x = from_dev(dv, c->dt, nkve);
    expect_close("fa2 bwd dV", c, x, rdv, nkve, tol);
    free(x);

    /* standard attention */
    void *sp = dev_zero(kc_standard_workspace_bytes(&ks));
    CK(cudaMemset(o, 0xff, nqe * eb));
    CK(kc_standard_fwd(&ks, dq_in, dk_in, dv_in, o, lse, sp, NULL));
    CK(cudaDeviceSynchronize());
    x = from_dev(o, c->dt, nqe);
    expect_close("standard fwd O", c, x, ro, nqe, tol);
    free(x);
    x = lse_from_dev(lse, rows);
    expect_close("standard fwd LSE", c, x, rl, rows, tol);
    free(x);
    CK(cudaFree(sp));

    /* FA1: a partial launch per key block, then the finalisation */
    void *w1 = dev_zero(kc_fa1_workspace_bytes(&ks));
    CK(cudaMemset(o, 0xff, nqe * eb));
    CK(kc_fa1_fwd(&ks, dq_in, dk_in, dv_in, o, lse, w1, NULL));
    CK(cudaDeviceSynchronize());
    x = from_dev(o, c->dt, nqe);
    expect_close("fa1 fwd O", c, x, ro, nqe, tol);
    free(x);
    x = lse_from_dev(lse, rows);
    expect_close("fa1 fwd LSE", c, x, rl, rows, tol);
    free(x);

    /* partial forward over two key halves, merged, against the whole */
    float *m = w1, *l = m + rows, *acc = l + rows;
    size_t half = c->nk / 2 + 3 < c->nk ? c->nk / 2 + 3 : c->nk; /* not block aligned */
    CK(kc_fa2_fwd_partial(&ks, dq_in, dk_in, dv_in, half, c->nk, 0, m, l, acc, NULL));
    CK(kc_fa2_fwd_partial(&ks, dq_in, dk_in, dv_in, 0, half, 1, m, l, acc, NULL));
    CK(cudaMemset(o, 0xff, nqe * eb));
    CK(kc_finalize(&ks, m, l, acc, o, lse, NULL));
    CK(cudaDeviceSynchronize());
    x = from_dev(o, c->dt, nqe);
    expect_close("partial+merge O", c, x, ro, nqe, tol);
    free(x);
    x = lse_from_dev(lse, rows);
    expect_close("partial+merge LSE", c, x, rl, rows, tol);
    free(x);
    CK(cudaFree(w1));

    void *bufs[] = {dq_in, dk_in, dv_in, ddo, o, dq, dk, dv, lse, ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) CK(cudaFree(bufs[i]));
    free(q), free(k), free(v), free(dout), free(ro), free(rl), free(rdq), free(rdk), free(rdv);
    kn_problem_free(&pr);
}

int main(int argc, char **argv)
{
    int small = argc > 1 && strcmp(argv[1], "--small") == 0;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        printf("SKIP: no usable CUDA device (%s)\n",
               e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 77;
    }
    const kn_dtype tc[2] = {KN_BF16, KN_F16};
    const size_t ds[2] = {64, 128};
    /* (nq, nk) pairs: equal and block aligned, ragged, nq > nk (rows with no key under causal
     * masking), nq < nk, a single row, fewer keys than a block */
    const size_t nqk[][2] = {{128, 128}, {100, 77}, {200, 130}, {70, 333}, {1, 65}, {64, 9}};
    const size_t nshapes = small ? 2 : sizeof nqk / sizeof nqk[0];
    int cases = 0;
    for (int ti = 0; ti < 2; ti++)
        for (int di = 0; di < 2; di++)
            for (size_t si = 0; si < nshapes; si++)
                for (int causal = 0; causal < 2; causal++) {
                    tcase c = {1,          4,      si % 2 ? 2 : 4, nqk[si][0],
                               nqk[si][1], ds[di], causal,         tc[ti]};
                    if (si == 0 && !small) c.b = 2, c.h = 6, c.h_kv = 2; /* batch, GQA 3:1 */
                    run_case(&c);
                    cases++;
                }
    /* the generic path: other head dims, f32 */
    const tcase gen[] = {{1, 2, 1, 50, 70, 32, 1, KN_BF16},
                         {1, 2, 2, 33, 33, 96, 0, KN_F16},
                         {2, 2, 1, 40, 31, 64, 1, KN_F32},
                         {1, 1, 1, 17, 29, 200, 0, KN_BF16}};
    for (size_t i = 0; i < (small ? 2 : sizeof gen / sizeof gen[0]); i++, cases++)
        run_case(&gen[i]);
    printf("test_cuda_kernels: %d cases, %d checks, %d failed\n", cases, checks, failures);
    return failures ? 1 : 0;
}
