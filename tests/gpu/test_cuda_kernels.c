/* test_cuda_kernels.c - the CUDA kernels (kernels/cuda) against the float64 reference over a
 * grid of shapes: f16/bf16 on the tensor-core path (d = 64, 128) and the generic path (other d,
 * f32), causal and not, grouped-query attention, nq != nk with ragged tails, and rows that see
 * no key (causal with nq > nk: O = 0, LSE = -inf, dQ = 0, never NaN). Checks FA2 forward and
 * backward, standard attention, FA1, and the partial forward plus its merge (two key halves
 * then finalisation) against the whole forward.
 *
 * Token positions (kc_shape.qpos, kpos) of the kinds a distributed run's tiles have (striped,
 * cyclic with different strides, zigzag, contiguous blocks before / after / overlapping the
 * queries, 64-bit positions), with rows that see no key: FA2 forward, the partial forward in
 * two halves (accumulated, and merged with kc_state_merge), the backward, and the tile backward
 * kc_attn_bwd_tile on two key halves adding into pre-filled f32 accumulators (with LSE and
 * D = kc_rowdot from the whole forward), all against the float64 reference with the same
 * positions. The element-wise operations (kc_state_merge against kn_merge_state, kc_rows_copy
 * both ways against a host loop, kc_add_f32, kc_to_storage, kc_state_empty) separately.
 * `--small` runs a few small shapes (for compute-sanitizer) covering every function once.
 * Exit 77 (ctest: skipped) when no CUDA device is usable.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_attn.h"
#include "kn_merge.h"
#include "kn_problem.h"
#include "ref_f64.h"

static int failures, checks;
static char where[256]; /* the case being checked, for failure messages */

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (cudaError_t)(call);                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "test_cuda_kernels: %s failed: %s (%s:%d; case %s)\n", #call,          \
                    cudaGetErrorString(e_), __FILE__, __LINE__, where);                            \
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

static void set_where(const tcase *c, const char *pos)
{
    snprintf(where, sizeof where, "b=%zu h=%zu/%zu nq=%zu nk=%zu d=%zu causal=%d %s%s%s", c->b,
             c->h, c->h_kv, c->nq, c->nk, c->d, c->causal, kn_dtype_name(c->dt), pos ? " pos=" : "",
             pos ? pos : "");
}

/* |x - ref| <= tol * max(1, max |ref|) everywhere; -inf must match -inf; no NaN. */
static void expect_close(const char *what, const double *x, const double *ref, size_t n, double tol)
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
        printf("FAIL %-22s %s: max err %.3g (tol %.3g) at %zu: got %g, want %g\n", what, where,
               worst / scale, tol, at, n ? x[at] : 0.0, n ? ref[at] : 0.0);
    }
}

static double *f32_from_dev(const float *p, size_t n)
{
    return lse_from_dev(p, n);
}

/* A known nonzero f32 pattern, pre-filled into accumulators to prove the tile backward adds. */
static float pattern(size_t i)
{
    return 0.5f * (float)((int)(i % 11) - 5);
}

static float *dev_pattern(size_t n)
{
    float *h = malloc(n * sizeof(float) + 4), *d = NULL;
    for (size_t i = 0; i < n; i++) h[i] = pattern(i);
    CK(cudaMalloc((void **)&d, n ? n * sizeof(float) : 16));
    if (n) CK(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    free(h);
    return d;
}

/* Device copy of the keys [k0, k1) of every K/V head of a [b * h_kv][nk][d] host tensor. */
static void *dev_key_slice(const kn_tensor *t, size_t planes, size_t nk, size_t d, size_t k0,
                           size_t k1)
{
    const size_t eb = kn_dtype_bytes(t->dtype), row = d * eb, len = k1 - k0;
    unsigned char *h = malloc(planes * len * row + 16);
    for (size_t p = 0; p < planes; p++)
        memcpy(h + p * len * row, (const unsigned char *)t->data + (p * nk + k0) * row, len * row);
    void *dv = NULL;
    CK(cudaMalloc(&dv, planes * len * row + 16));
    CK(cudaMemcpy(dv, h, planes * len * row, cudaMemcpyHostToDevice));
    free(h);
    return dv;
}

/* One shape, optionally with token positions (host arrays qp[nq], kp[nk]; `pos` names them):
 * every FA2 entry point against the float64 reference. */
static void run_case_pos(const tcase *c, const uint64_t *qp, const uint64_t *kp, const char *pos)
{
    kn_shape s = {c->b, c->h, c->h_kv, c->nq, c->nk, c->d, c->causal, qp, kp};
    kc_shape ks = {(int)c->dt, c->b, c->h, c->h_kv, c->nq, c->nk, c->d, c->causal, NULL, NULL};
    unsigned long long *dqp = NULL, *dkp = NULL;
    if (qp) {
        CK(cudaMalloc((void **)&dqp, c->nq * 8 + 8));
        CK(cudaMalloc((void **)&dkp, c->nk * 8 + 8));
        if (c->nq) CK(cudaMemcpy(dqp, qp, c->nq * 8, cudaMemcpyHostToDevice));
        if (c->nk) CK(cudaMemcpy(dkp, kp, c->nk * 8, cudaMemcpyHostToDevice));
        ks.qpos = dqp, ks.kpos = dkp;
    }
    set_where(c, pos);
    kn_problem pr;
    kn_shape s0 = s;
    s0.q_pos = s0.k_pos = NULL; /* the generator ignores positions */
    kn_problem_init(&pr, &s0, c->dt, KN_NEED_FWD | KN_NEED_BWD, 7);
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
    void *ws = dev_zero(kc_attn_bwd_workspace_bytes(&ks));

    /* FA2 forward and backward */
    CK(kc_attn_fwd(&ks, dq_in, dk_in, dv_in, o, lse, NULL));
    CK(kc_attn_bwd(&ks, dq_in, dk_in, dv_in, o, ddo, lse, dq, dk, dv, ws, NULL));
    CK(cudaDeviceSynchronize());
    double *x = from_dev(o, c->dt, nqe);
    expect_close("fa2 fwd O", x, ro, nqe, tol);
    free(x);
    x = lse_from_dev(lse, rows);
    expect_close("fa2 fwd LSE", x, rl, rows, tol);
    free(x);
    x = from_dev(dq, c->dt, nqe);
    expect_close("fa2 bwd dQ", x, rdq, nqe, tol);
    free(x);
    x = from_dev(dk, c->dt, nkve);
    expect_close("fa2 bwd dK", x, rdk, nkve, tol);
    free(x);
    x = from_dev(dv, c->dt, nkve);
    expect_close("fa2 bwd dV", x, rdv, nkve, tol);
    free(x);

    /* the tile backward on two key halves (one whole tile under bottom-right causal masking,
     * whose alignment differs per tile), adding into pre-filled accumulators; LSE from the
     * forward above, D from kc_rowdot on its O */
    {
        float *dsum = dev_zero(rows * sizeof(float));
        CK(kc_rowdot(&ks, o, ddo, dsum, NULL));
        double *oo = from_dev(o, c->dt, nqe), *rsum = malloc(rows * sizeof(double) + 8);
        for (size_t r = 0; r < rows; r++) { /* rowsum of the kernel's own O times dO */
            rsum[r] = 0.0;
            for (size_t e = 0; e < c->d; e++) rsum[r] += oo[r * c->d + e] * dout[r * c->d + e];
        }
        CK(cudaDeviceSynchronize());
        x = f32_from_dev(dsum, rows);
        expect_close("rowdot D", x, rsum, rows, 1e-5);
        free(x), free(oo), free(rsum);

        const size_t planes = c->b * c->h_kv;
        size_t cut = c->nk / 2 + 3 < c->nk ? c->nk / 2 + 3 : c->nk / 2; /* not block aligned */
        if (c->causal && !qp) cut = c->nk;
        const size_t bounds[3] = {0, cut, c->nk};
        float *dq_acc = dev_pattern(nqe);
        double *tdk = calloc(nkve + 1, sizeof(double)), *tdv = calloc(nkve + 1, sizeof(double));
        for (int part = 0; part < 2; part++) {
            const size_t k0 = bounds[part], k1 = bounds[part + 1], len = k1 - k0;
            if (len == 0) continue;
            kc_shape ts = ks;
            ts.nk = len;
            if (qp) ts.kpos = dkp + k0;
            void *tk = dev_key_slice(&pr.t.k, planes, c->nk, c->d, k0, k1);
            void *tv = dev_key_slice(&pr.t.v, planes, c->nk, c->d, k0, k1);
            const size_t n = planes * len * c->d;
            float *dk_acc = dev_pattern(n), *dv_acc = dev_pattern(n);
            CK(kc_attn_bwd_tile(&ts, dq_in, tk, tv, ddo, lse, dsum, dq_acc, dk_acc, dv_acc, NULL));
            CK(cudaDeviceSynchronize());
            double *gk = f32_from_dev(dk_acc, n), *gv = f32_from_dev(dv_acc, n);
            for (size_t p = 0; p < planes; p++)
                for (size_t j = 0; j < len; j++)
                    for (size_t e = 0; e < c->d; e++) {
                        const size_t i = (p * len + j) * c->d + e;
                        const size_t full = (p * c->nk + k0 + j) * c->d + e;
                        tdk[full] = gk[i] - pattern(i);
                        tdv[full] = gv[i] - pattern(i);
                    }
            free(gk), free(gv);
            CK(cudaFree(tk));
            CK(cudaFree(tv));
            CK(cudaFree(dk_acc));
            CK(cudaFree(dv_acc));
        }
        x = f32_from_dev(dq_acc, nqe);
        for (size_t i = 0; i < nqe; i++) x[i] -= pattern(i);
        expect_close("bwd tile dQ", x, rdq, nqe, tol);
        expect_close("bwd tile dK", tdk, rdk, nkve, tol);
        expect_close("bwd tile dV", tdv, rdv, nkve, tol);
        free(x), free(tdk), free(tdv);
        CK(cudaFree(dq_acc));
        CK(cudaFree(dsum));
    }

    if (!qp) {
        /* standard attention */
        void *sp = dev_zero(kc_standard_workspace_bytes(&ks));
        CK(cudaMemset(o, 0xff, nqe * eb));
        CK(kc_standard_fwd(&ks, dq_in, dk_in, dv_in, o, lse, sp, NULL));
        CK(cudaDeviceSynchronize());
        x = from_dev(o, c->dt, nqe);
        expect_close("standard fwd O", x, ro, nqe, tol);
        free(x);
        x = lse_from_dev(lse, rows);
        expect_close("standard fwd LSE", x, rl, rows, tol);
        free(x);
        CK(cudaFree(sp));
    } else if (c->causal) { /* the baselines refuse positions rather than ignore them */
        checks++;
        if (kc_standard_fwd(&ks, dq_in, dk_in, dv_in, o, lse, NULL, NULL) == 0)
            failures++, printf("FAIL standard fwd accepted positions %s\n", where);
    }

    /* FA1: a partial launch per key block, then the finalisation (its workspace is the state
     * the partial checks below use) */
    void *w1 = dev_zero(kc_fa1_workspace_bytes(&ks));
    if (!qp) {
        CK(cudaMemset(o, 0xff, nqe * eb));
        CK(kc_fa1_fwd(&ks, dq_in, dk_in, dv_in, o, lse, w1, NULL));
        CK(cudaDeviceSynchronize());
        x = from_dev(o, c->dt, nqe);
        expect_close("fa1 fwd O", x, ro, nqe, tol);
        free(x);
        x = lse_from_dev(lse, rows);
        expect_close("fa1 fwd LSE", x, rl, rows, tol);
        free(x);
    }

    /* partial forward over two key halves, merged, against the whole */
    float *m = w1, *l = m + rows, *acc = l + rows;
    size_t half = c->nk / 2 + 3 < c->nk ? c->nk / 2 + 3 : c->nk; /* not block aligned */
    CK(kc_attn_fwd_partial(&ks, dq_in, dk_in, dv_in, half, c->nk, 0, m, l, acc, NULL));
    CK(kc_attn_fwd_partial(&ks, dq_in, dk_in, dv_in, 0, half, 1, m, l, acc, NULL));
    CK(cudaMemset(o, 0xff, nqe * eb));
    CK(kc_finalize(&ks, m, l, acc, o, lse, NULL));
    CK(cudaDeviceSynchronize());
    x = from_dev(o, c->dt, nqe);
    expect_close("partial+merge O", x, ro, nqe, tol);
    free(x);
    x = lse_from_dev(lse, rows);
    expect_close("partial+merge LSE", x, rl, rows, tol);
    free(x);

    /* the same halves as two separate states, merged by kc_state_merge */
    void *w2 = dev_zero(kc_fa1_workspace_bytes(&ks));
    float *m2 = w2, *l2 = m2 + rows, *acc2 = l2 + rows;
    CK(kc_attn_fwd_partial(&ks, dq_in, dk_in, dv_in, 0, half, 0, m, l, acc, NULL));
    CK(kc_attn_fwd_partial(&ks, dq_in, dk_in, dv_in, half, c->nk, 0, m2, l2, acc2, NULL));
    CK(kc_state_merge(rows, c->d, acc, m, l, acc2, m2, l2, NULL));
    CK(cudaMemset(o, 0xff, nqe * eb));
    CK(kc_finalize(&ks, m, l, acc, o, lse, NULL));
    CK(cudaDeviceSynchronize());
    x = from_dev(o, c->dt, nqe);
    expect_close("partial+state_merge O", x, ro, nqe, tol);
    free(x);
    x = lse_from_dev(lse, rows);
    expect_close("partial+state_merge LSE", x, rl, rows, tol);
    free(x);
    CK(cudaFree(w1));
    CK(cudaFree(w2));

    void *bufs[] = {dq_in, dk_in, dv_in, ddo, o, dq, dk, dv, lse, ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) CK(cudaFree(bufs[i]));
    if (dqp) {
        CK(cudaFree(dqp));
        CK(cudaFree(dkp));
    }
    free(q), free(k), free(v), free(dout), free(ro), free(rl), free(rdq), free(rdk), free(rdv);
    kn_problem_free(&pr);
}

static void run_case(const tcase *c)
{
    run_case_pos(c, NULL, NULL, NULL);
}

/* Token positions of the kinds a distributed run's tiles have; returns the kind's name. */
enum { NPOS = 11 };
static const char *make_pos(int kind, size_t nq, size_t nk, uint64_t *qp, uint64_t *kp)
{
    const uint64_t S = 8 * (uint64_t)(nq + nk) + 64, big = 5000000000ull; /* > 2^32 */
    const size_t n1 = nq / 2, n2 = nq - nq / 2, m1 = nk / 3, m2 = nk - nk / 3;
    for (size_t i = 0; i < nq || i < nk; i++) {
        uint64_t a = 0, b = 0;
        switch (kind) {
        case 0:
            a = 2 + 4 * i, b = 1 + 4 * i;
            break; /* striped, key offset < query offset */
        case 1:
            a = 2 + 4 * i, b = 2 + 4 * i;
            break; /* striped, equal offsets */
        case 2:
            a = 1 + 4 * i, b = 3 + 4 * i;
            break; /* striped, key offset > query offset */
        case 3:
            a = 5 + 3 * i, b = 2 * i;
            break; /* cyclic, strides 3 and 2 */
        case 4:
            a = 2 * i, b = 3 + 5 * i;
            break; /* cyclic, strides 2 and 5 (empty rows) */
        case 5:    /* zigzag: queries own chunks r and 2P-1-r, keys a later s: [n1, n1 + m1) and
                      the run just before the queries' second */
            a = i < n1 ? i : S - n2 + (i - n1);
            b = i < m1 ? n1 + i : S - n2 - m2 + (i - m1);
            break;
        case 6: /* zigzag, keys from an earlier rank: [0, m1) and the run after the queries' */
            a = i < n1 ? m1 + i : S - m2 - n2 + (i - n1);
            b = i < m1 ? i : S - m2 + (i - m1);
            break;
        case 7:
            a = nk + 10 + i, b = i;
            break; /* contiguous, keys entirely before */
        case 8:
            a = i, b = nq + 5 + i;
            break; /* contiguous, keys entirely after */
        case 9:
            a = big + i, b = big + 37 + i;
            break; /* overlapping, 64-bit positions */
        default:
            a = 3 * i, b = nq + i;
            break; /* queries spread over the keys' block */
        }
        if (i < nq) qp[i] = a;
        if (i < nk) kp[i] = b;
    }
    static const char *names[NPOS] = {"striped o<r",    "striped o=r",  "striped o>r",
                                      "cyclic 3/2",     "cyclic 2/5",   "zigzag later",
                                      "zigzag earlier", "block before", "block after",
                                      "overlap 64bit",  "spread"};
    return names[kind];
}

static void run_pos(const tcase *c, int kind)
{
    uint64_t *qp = malloc(c->nq * 8 + 8), *kp = malloc(c->nk * 8 + 8);
    const char *name = make_pos(kind, c->nq, c->nk, qp, kp);
    run_case_pos(c, qp, kp, name);
    free(qp), free(kp);
}

/* ---- the element-wise operations ---- */

static unsigned rng_state = 12345u;
static unsigned rnd(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}
static float frnd(void)
{
    return (float)rnd() / (float)(1u << 24) * 2.f - 1.f;
} /* [-1, 1) */

static void *dev_from(const void *h, size_t bytes)
{
    void *d = NULL;
    CK(cudaMalloc(&d, bytes ? bytes : 16));
    if (bytes) CK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    return d;
}

static void expect_f32(const char *what, const float *dev, const float *ref, size_t n, double tol)
{
    double *x = f32_from_dev(dev, n), *r = malloc(n * sizeof(double) + 8);
    for (size_t i = 0; i < n; i++) r[i] = ref[i];
    expect_close(what, x, r, n, tol);
    free(x), free(r);
}

static void test_state_merge(size_t rows, size_t d)
{
    snprintf(where, sizeof where, "rows=%zu d=%zu", rows, d);
    float *m1 = malloc(rows * 4), *l1 = malloc(rows * 4), *o1 = malloc(rows * d * 4 + 4);
    float *m2 = malloc(rows * 4), *l2 = malloc(rows * 4), *o2 = malloc(rows * d * 4 + 4);
    for (size_t r = 0; r < rows; r++) {
        const int kind = (int)(r % 6); /* 0 dst empty, 1 src empty, 2 both, 3 equal m, else any */
        m1[r] = 3.f * frnd(), m2[r] = kind == 3 ? m1[r] : 3.f * frnd();
        l1[r] = 1.f + 4.f * (frnd() + 1.f), l2[r] = 1.f + 4.f * (frnd() + 1.f);
        for (size_t e = 0; e < d; e++) o1[r * d + e] = 3.f * frnd(), o2[r * d + e] = 3.f * frnd();
        if (kind == 0 || kind == 2) m1[r] = -INFINITY, l1[r] = 0.f;
        if (kind == 1 || kind == 2) m2[r] = -INFINITY, l2[r] = 0.f;
        if (kind == 2) /* an empty state's o is 0 */
            for (size_t e = 0; e < d; e++) o1[r * d + e] = o2[r * d + e] = 0.f;
    }
    float *dm1 = dev_from(m1, rows * 4), *dl1 = dev_from(l1, rows * 4);
    float *do1 = dev_from(o1, rows * d * 4), *dm2 = dev_from(m2, rows * 4);
    float *dl2 = dev_from(l2, rows * 4), *do2 = dev_from(o2, rows * d * 4);
    for (size_t r = 0; r < rows; r++)
        kn_merge_state(d, &m1[r], &l1[r], o1 + r * d, m2[r], l2[r], o2 + r * d);
    CK(kc_state_merge(rows, d, do1, dm1, dl1, do2, dm2, dl2, NULL));
    CK(cudaDeviceSynchronize());
    expect_f32("state_merge m", dm1, m1, rows, 1e-6);
    expect_f32("state_merge l", dl1, l1, rows, 1e-5);
    expect_f32("state_merge o", do1, o1, rows * d, 1e-5);

    /* merging the empty state leaves a state unchanged (bit for bit), both ways round */
    CK(cudaMemcpy(m1, dm1, rows * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(l1, dl1, rows * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(o1, do1, rows * d * 4, cudaMemcpyDeviceToHost));
    CK(kc_state_empty(rows, d, do2, dm2, dl2, NULL));
    CK(kc_state_merge(rows, d, do1, dm1, dl1, do2, dm2, dl2, NULL));
    CK(cudaDeviceSynchronize());
    expect_f32("merge(x, empty) m", dm1, m1, rows, 0.0);
    expect_f32("merge(x, empty) l", dl1, l1, rows, 0.0);
    expect_f32("merge(x, empty) o", do1, o1, rows * d, 0.0);
    CK(kc_state_merge(rows, d, do2, dm2, dl2, do1, dm1, dl1, NULL));
    CK(cudaDeviceSynchronize());
    expect_f32("merge(empty, x) m", dm2, m1, rows, 0.0);
    expect_f32("merge(empty, x) l", dl2, l1, rows, 0.0);
    expect_f32("merge(empty, x) o", do2, o1, rows * d, 0.0);

    /* kc_state_empty itself, and empty + empty */
    CK(kc_state_empty(rows, d, do1, dm1, dl1, NULL));
    CK(kc_state_empty(rows, d, do2, dm2, dl2, NULL));
    CK(kc_state_merge(rows, d, do1, dm1, dl1, do2, dm2, dl2, NULL));
    CK(cudaDeviceSynchronize());
    for (size_t r = 0; r < rows; r++) m2[r] = -INFINITY, l2[r] = 0.f;
    for (size_t i = 0; i < rows * d; i++) o2[i] = 0.f;
    expect_f32("state_empty m", dm2, m2, rows, 0.0);
    expect_f32("state_empty l", dl2, l2, rows, 0.0);
    expect_f32("state_empty o", do2, o2, rows * d, 0.0);
    expect_f32("merge(empty, empty) m", dm1, m2, rows, 0.0);
    expect_f32("merge(empty, empty) l", dl1, l2, rows, 0.0);
    expect_f32("merge(empty, empty) o", do1, o2, rows * d, 0.0);

    void *bufs[] = {dm1, dl1, do1, dm2, dl2, do2};
    for (size_t i = 0; i < 6; i++) CK(cudaFree(bufs[i]));
    free(m1), free(l1), free(o1), free(m2), free(l2), free(o2);
}

/* kc_rows_copy both ways against a host loop; `misalign` offsets both device pointers by 4
 * bytes (the 4-byte path even where row_bytes % 16 == 0). */
static void test_rows_copy(size_t planes, size_t n, size_t total, size_t row_bytes, int misalign)
{
    snprintf(where, sizeof where, "planes=%zu n=%zu total=%zu row_bytes=%zu misalign=%d", planes, n,
             total, row_bytes, misalign);
    const size_t packed = planes * n * row_bytes, indexed = planes * total * row_bytes;
    unsigned long long *idx = malloc(n * 8 + 8);
    for (size_t k = 0; k < n; k++) idx[k] = (k * 7 + 3) % total; /* distinct: total % 7 != 0 */
    unsigned char *hp = malloc(packed + 16), *hi = malloc(indexed + 16);
    unsigned char *want = malloc(indexed + packed + 16), *got = malloc(indexed + packed + 16);
    for (int dir = 0; dir < 2; dir++) { /* 0 gather, 1 scatter */
        for (size_t i = 0; i < packed; i++) hp[i] = (unsigned char)rnd();
        for (size_t i = 0; i < indexed; i++) hi[i] = (unsigned char)rnd();
        const size_t out_bytes = dir ? indexed : packed;
        unsigned char *dbase_p = NULL, *dbase_i = NULL;
        CK(cudaMalloc((void **)&dbase_p, packed + 32));
        CK(cudaMalloc((void **)&dbase_i, indexed + 32));
        unsigned char *dp = dbase_p + (misalign ? 4 : 0), *di = dbase_i + (misalign ? 4 : 0);
        CK(cudaMemcpy(dp, hp, packed, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(di, hi, indexed, cudaMemcpyHostToDevice));
        unsigned long long *didx = dev_from(idx, n * 8);
        memcpy(want, dir ? hi : hp, out_bytes); /* rows not written keep their bytes */
        for (size_t p = 0; p < planes; p++)
            for (size_t k = 0; k < n; k++) {
                unsigned char *prow = (dir ? hp : want) + (p * n + k) * row_bytes;
                unsigned char *irow = (dir ? want : hi) + (p * total + idx[k]) * row_bytes;
                if (dir)
                    memcpy(irow, prow, row_bytes);
                else
                    memcpy(prow, irow, row_bytes);
            }
        if (dir)
            CK(kc_rows_copy(di, dp, didx, planes, n, total, row_bytes, 1, NULL));
        else
            CK(kc_rows_copy(dp, di, didx, planes, n, total, row_bytes, 0, NULL));
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(got, dir ? di : dp, out_bytes, cudaMemcpyDeviceToHost));
        checks++;
        if (memcmp(got, want, out_bytes) != 0) {
            size_t at = 0;
            while (got[at] == want[at]) at++;
            failures++;
            printf("FAIL rows_copy %s %s: first wrong byte %zu (row %zu)\n",
                   dir ? "scatter" : "gather", where, at, at / row_bytes);
        }
        CK(cudaFree(dbase_p));
        CK(cudaFree(dbase_i));
        CK(cudaFree(didx));
    }
    /* nothing to copy: success, no launch */
    checks++;
    if (kc_rows_copy(NULL, NULL, NULL, planes, 0, total, row_bytes, 1, NULL) != 0 ||
        kc_rows_copy(NULL, NULL, NULL, 0, n, total, row_bytes, 0, NULL) != 0)
        failures++, printf("FAIL rows_copy with n == 0 or planes == 0 %s\n", where);
    free(idx), free(hp), free(hi), free(want), free(got);
}

static void test_elementwise(size_t n)
{
    snprintf(where, sizeof where, "n=%zu", n);
    float *a = malloc(n * 4 + 4), *b = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) a[i] = 10.f * frnd(), b[i] = 10.f * frnd();
    float *da = dev_from(a, n * 4), *db = dev_from(b, n * 4);
    CK(kc_add_f32(da, db, n, NULL));
    CK(cudaDeviceSynchronize());
    for (size_t i = 0; i < n; i++) a[i] += b[i];
    expect_f32("add_f32", da, a, n, 0.0);
    for (int dt = 0; dt < 3; dt++) {
        kn_tensor t;
        kn_tensor_alloc(&t, (kn_dtype)dt, n, "to_storage check");
        for (size_t i = 0; i < n; i++) kn_tensor_set(&t, i, a[i]);
        const size_t bytes = n * kn_dtype_bytes((kn_dtype)dt);
        void *out = dev_zero(bytes);
        CK(kc_to_storage(dt, da, out, n, NULL));
        CK(cudaDeviceSynchronize());
        unsigned char *got = malloc(bytes + 4);
        CK(cudaMemcpy(got, out, bytes, cudaMemcpyDeviceToHost));
        checks++;
        if (memcmp(got, t.data, bytes) != 0)
            failures++, printf("FAIL to_storage %s %s\n", kn_dtype_name((kn_dtype)dt), where);
        free(got);
        CK(cudaFree(out));
        kn_tensor_free(&t);
    }
    CK(cudaFree(da));
    CK(cudaFree(db));
    free(a), free(b);
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
    /* the element-wise operations */
    test_state_merge(small ? 13 : 301, small ? 40 : 128);
    if (!small) test_state_merge(37, 1);
    test_rows_copy(3, 17, 50, 256, 0); /* 16-byte vectors */
    test_rows_copy(2, 9, 23, 4, 0);    /* single f32 values */
    if (!small) {
        test_rows_copy(3, 17, 50, 256, 1); /* 4-byte words: unaligned pointers */
        test_rows_copy(1, 31, 40, 12, 0);  /* 4-byte words: row_bytes % 16 != 0 */
        test_rows_copy(5, 40, 40, 48, 0);  /* every row, permuted */
        test_rows_copy(4, 333, 1000, 128, 0);
    }
    test_elementwise(small ? 1000 : 100003);

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

    /* token positions: every kind on the tensor-core path, several sizes (ragged, more than one
     * block of either side, GQA), then the generic path */
    const size_t pqk[][2] = {{200, 190}, {130, 300}, {77, 65}, {300, 129}, {64, 128}, {1, 50}};
    if (small) {
        const tcase c1 = {1, 2, 1, 77, 65, 64, 1, KN_BF16};
        run_pos(&c1, 2); /* striped with empty rows */
        run_pos(&c1, 5); /* zigzag */
        const tcase c2 = {1, 2, 2, 40, 31, 64, 1, KN_F32};
        run_pos(&c2, 3);
        cases += 3;
    } else {
        for (int ti = 0; ti < 2; ti++)
            for (int di = 0; di < 2; di++)
                for (int kind = 0; kind < NPOS; kind++) {
                    const size_t si = (size_t)(kind + ti + di) % (sizeof pqk / sizeof pqk[0]);
                    tcase c = {1, 4, kind % 2 ? 2 : 4, pqk[si][0], pqk[si][1], ds[di], 1, tc[ti]};
                    if (kind == 5) c.b = 2, c.h = 6, c.h_kv = 2; /* batch, GQA 3:1 */
                    run_pos(&c, kind);
                    cases++;
                }
        /* positions are ignored without causal masking */
        const tcase nc = {1, 2, 1, 100, 77, 64, 0, KN_F16};
        run_pos(&nc, 8), cases++;
        const tcase gpos[] = {{2, 2, 1, 40, 31, 64, 1, KN_F32},
                              {1, 2, 1, 50, 70, 32, 1, KN_BF16},
                              {1, 2, 2, 33, 45, 96, 1, KN_F16}};
        for (size_t i = 0; i < sizeof gpos / sizeof gpos[0]; i++)
            for (int kind = 0; kind < NPOS; kind += (int)i + 1) run_pos(&gpos[i], kind), cases++;
    }
    printf("test_cuda_kernels: %d cases, %d checks, %d failed\n", cases, checks, failures);
    return failures ? 1 : 0;
}
