/* dev_cuda.c - the CUDA device of the executor (exec.h): one GPU per rank, buffers from the
 * stream-ordered allocator (a pool kept across runs), every operation queued on one compute
 * stream, local tiles on the CUDA FA2 kernels (kc_attn.h; token positions for the causal mask
 * of the algorithms' layouts), the merge operator and gathers as CUDA kernels. Errors go
 * through the one error path (CUDACALL names the rank, the call and the reason). */
#include "dev_cuda.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime.h>

#include "fail.h"
#include "kc_attn.h"
#include "timing.h"

static cudaStream_t stream;

int dev_cuda_bind(int device)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) return -1;
    if (device < 0 || device >= count) return -1;
    CUDACALL(cudaSetDevice(device));
    if (!stream) {
        CUDACALL(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        cudaMemPool_t pool;
        CUDACALL(cudaDeviceGetDefaultMemPool(&pool, device));
        uint64_t keep = UINT64_MAX; /* freed memory stays in the pool for the next run */
        CUDACALL(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    }
    return count;
}

void *dev_cuda_stream(void)
{
    return stream;
}

static void *cu_alloc(size_t bytes, const char *what)
{
    void *p = NULL;
    int rc = (int)cudaMallocAsync(&p, bytes ? bytes : 16, stream);
    if (rc != 0)
        attn_fail("cudaMallocAsync", __FILE__, __LINE__, "%zu bytes for %s: %s", bytes, what,
                  cudaGetErrorString((cudaError_t)rc));
    return p;
}

static void cu_release(void *p)
{
    CUDACALL(cudaFreeAsync(p, stream));
}

static void cu_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes) CUDACALL(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
}

static void cu_copy2d(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                      size_t height)
{
    if (width && height)
        CUDACALL(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height,
                                   cudaMemcpyDeviceToDevice, stream));
}

static void cu_zero(void *p, size_t bytes)
{
    if (bytes) CUDACALL(cudaMemsetAsync(p, 0, bytes, stream));
}

static void cu_upload(void *dst, const void *host, size_t bytes)
{
    if (bytes) CUDACALL(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream));
    CUDACALL(cudaStreamSynchronize(stream)); /* the host copy may go once this returns */
}

static void cu_download(void *host, const void *src, size_t bytes)
{
    if (bytes) CUDACALL(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, stream));
    CUDACALL(cudaStreamSynchronize(stream));
}

static void cu_sync(void)
{
    CUDACALL(cudaStreamSynchronize(stream));
}

static const void *cu_upload_pos(const uint64_t *host, size_t n)
{
    void *p = cu_alloc(n * sizeof(uint64_t), "positions");
    cu_upload(p, host, n * sizeof(uint64_t));
    return p;
}

static void cu_release_pos(const void *d, const uint64_t *host)
{
    (void)host;
    cu_release((void *)d);
}

static void cu_rows_copy(void *dst, const void *src, const void *index, size_t planes, size_t n,
                         size_t total, size_t rb, int scatter)
{
    CUDACALL(kc_rows_copy(dst, src, (const unsigned long long *)index, planes, n, total, rb,
                          scatter, stream));
}

static kc_shape tile_shape(const exec_ctx *x, size_t hq, size_t hk, const exec_pos *qpos,
                           const exec_pos *kpos)
{
    const am_config *c = &x->cfg;
    kc_shape s = {(int)x->dtype, c->batch,    hq,        hk,   qpos->n,
                  kpos->n,       c->head_dim, c->causal, NULL, NULL};
    if (c->causal) {
        s.qpos = (const unsigned long long *)qpos->d;
        s.kpos = (const unsigned long long *)kpos->d;
    }
    return s;
}

static void cu_tile_forward(const exec_ctx *x, size_t hq, size_t hk, const void *q,
                            const exec_pos *qpos, const void *k, const void *v,
                            const exec_pos *kpos, float *state, int accumulate)
{
    kc_shape s = tile_shape(x, hq, hk, qpos, kpos);
    size_t rows = s.b * s.h * s.nq;
    CUDACALL(kc_attn_fwd_partial(&s, q, k, v, 0, s.nk, accumulate, state + rows * s.d,
                                 state + rows * s.d + rows, state, stream));
}

static void cu_tile_backward(const exec_ctx *x, size_t hq, size_t hk, const void *q,
                             const void *d_o, const float *lse, const float *dsum,
                             const exec_pos *qpos, const void *k, const void *v,
                             const exec_pos *kpos, float *dq, float *dk, float *dv)
{
    kc_shape s = tile_shape(x, hq, hk, qpos, kpos);
    CUDACALL(kc_attn_bwd_tile(&s, q, k, v, d_o, lse, dsum, dq, dk, dv, stream));
}

static void cu_attn_forward(const exec_ctx *x, size_t hq, size_t hk, size_t n, const void *q,
                            const void *k, const void *v, void *o, float *lse)
{
    const am_config *c = &x->cfg;
    kc_shape s = {(int)x->dtype, c->batch, hq, hk, n, n, c->head_dim, c->causal, NULL, NULL};
    CUDACALL(kc_attn_fwd(&s, q, k, v, o, lse, stream));
}

static void cu_attn_backward(const exec_ctx *x, size_t hq, size_t hk, size_t n, const void *q,
                             const void *k, const void *v, const void *o, const void *d_o,
                             const float *lse, void *dq, void *dk, void *dv)
{
    const am_config *c = &x->cfg;
    kc_shape s = {(int)x->dtype, c->batch, hq, hk, n, n, c->head_dim, c->causal, NULL, NULL};
    void *ws = cu_alloc(kc_attn_bwd_workspace_bytes(&s), "backward workspace");
    CUDACALL(kc_attn_bwd(&s, q, k, v, o, d_o, lse, dq, dk, dv, ws, stream));
    cu_release(ws);
}

static void cu_state_empty(float *state, size_t rows, size_t d)
{
    CUDACALL(kc_state_empty(rows, d, state, state + rows * d, state + rows * d + rows, stream));
}

static void cu_state_merge(float *dst, const float *src, size_t rows, size_t d)
{
    CUDACALL(kc_state_merge(rows, d, dst, dst + rows * d, dst + rows * d + rows, src,
                            src + rows * d, src + rows * d + rows, stream));
}

static void cu_state_finalize(const float *state, size_t rows, size_t d, int dtype, void *o,
                              float *lse)
{
    kc_shape s = {dtype, 1, 1, 1, rows, rows, d, 0, NULL, NULL};
    CUDACALL(kc_finalize(&s, state + rows * d, state + rows * d + rows, state, o, lse, stream));
}

static void cu_rowdot(int dtype, const void *o, const void *d_o, size_t rows, size_t d, float *dsum)
{
    kc_shape s = {dtype, 1, 1, 1, rows, rows, d, 0, NULL, NULL};
    CUDACALL(kc_rowdot(&s, o, d_o, dsum, stream));
}

static void cu_add_f32(float *a, const float *b, size_t n)
{
    CUDACALL(kc_add_f32(a, b, n, stream));
}

static void cu_to_storage(int dtype, const float *src, void *dst, size_t n)
{
    CUDACALL(kc_to_storage(dtype, src, dst, n, stream));
}

const exec_dev exec_dev_cuda = {"cuda",
                                cu_alloc,
                                cu_release,
                                cu_copy,
                                cu_copy2d,
                                cu_zero,
                                cu_upload,
                                cu_download,
                                cu_sync,
                                cu_upload_pos,
                                cu_release_pos,
                                cu_rows_copy,
                                cu_tile_forward,
                                cu_tile_backward,
                                cu_attn_forward,
                                cu_attn_backward,
                                cu_state_empty,
                                cu_state_merge,
                                cu_state_finalize,
                                cu_rowdot,
                                cu_add_f32,
                                cu_to_storage,
                                NULL};

static void *dev_from_host(const kn_tensor *t)
{
    size_t bytes = t->elems * kn_dtype_bytes(t->dtype);
    void *d = cu_alloc(bytes, "reference input");
    cu_upload(d, t->data, bytes);
    return d;
}

static double *host_f64(const void *d, kn_dtype dtype, size_t elems)
{
    kn_tensor h;
    kn_tensor_alloc(&h, dtype, elems, "reference output");
    cu_download(h.data, d, elems * kn_dtype_bytes(dtype));
    double *out = kn_tensor_to_f64(&h);
    kn_tensor_free(&h);
    return out;
}

void dev_cuda_reference(const kn_problem *p, int bwd, double **o, double **dq, double **dk,
                        double **dv)
{
    const kn_shape *s = &p->shape;
    kc_shape ks = {(int)p->dtype, s->batch, s->heads,  s->kv_heads, s->nq,
                   s->nk,         s->d,     s->causal, NULL,        NULL};
    size_t qe = kn_q_elems(s), ke = kn_kv_elems(s), e = kn_dtype_bytes(p->dtype);
    void *q = dev_from_host(&p->t.q), *k = dev_from_host(&p->t.k), *v = dev_from_host(&p->t.v);
    void *od = cu_alloc(qe * e, "reference O");
    float *lse = cu_alloc(kn_row_elems(s) * sizeof(float), "reference LSE");
    CUDACALL(kc_attn_fwd(&ks, q, k, v, od, lse, stream));
    *o = host_f64(od, p->dtype, qe);
    if (bwd) {
        void *d_o = dev_from_host(&p->t.d_o);
        void *g[3] = {cu_alloc(qe * e, "reference dQ"), cu_alloc(ke * e, "reference dK"),
                      cu_alloc(ke * e, "reference dV")};
        void *ws = cu_alloc(kc_attn_bwd_workspace_bytes(&ks), "reference workspace");
        CUDACALL(kc_attn_bwd(&ks, q, k, v, od, d_o, lse, g[0], g[1], g[2], ws, stream));
        *dq = host_f64(g[0], p->dtype, qe);
        *dk = host_f64(g[1], p->dtype, ke);
        *dv = host_f64(g[2], p->dtype, ke);
        cu_release(d_o), cu_release(ws);
        for (int i = 0; i < 3; i++) cu_release(g[i]);
    }
    cu_release(q), cu_release(k), cu_release(v), cu_release(od), cu_release(lse);
    cu_sync();
}

/* One FA2 call of dev_cuda_time_fa2. */
typedef struct {
    const kc_shape *s;
    void *q, *k, *v, *o, *d_o, **g, *ws;
    float *lse;
    int fwd;
} fa2_call;

static void fa2_launch(void *ctx, int i, void *st)
{
    (void)i;
    fa2_call *c = ctx;
    if (c->fwd)
        CUDACALL(kc_attn_fwd(c->s, c->q, c->k, c->v, c->o, c->lse, st));
    else
        CUDACALL(kc_attn_bwd(c->s, c->q, c->k, c->v, c->o, c->d_o, c->lse, c->g[0], c->g[1],
                             c->g[2], c->ws, st));
}

double dev_cuda_time_fa2(int dtype, size_t h, size_t n, size_t d, int causal, int fwd, int reps)
{
    kc_shape s = {dtype, 1, h, h, n, n, d, causal, NULL, NULL};
    size_t elems = h * n * d, e = kn_dtype_bytes((kn_dtype)dtype);
    kn_tensor t;
    kn_tensor_alloc(&t, (kn_dtype)dtype, elems, "calibration input");
    for (size_t i = 0; i < elems; i++) kn_tensor_set(&t, i, 0.5f * sinf(0.37f * (float)i));
    void *q = dev_from_host(&t), *k = dev_from_host(&t), *v = dev_from_host(&t);
    void *o = cu_alloc(elems * e, "O"), *d_o = dev_from_host(&t);
    void *g[3] = {cu_alloc(elems * e, "dQ"), cu_alloc(elems * e, "dK"), cu_alloc(elems * e, "dV")};
    float *lse = cu_alloc(h * n * sizeof(float), "LSE");
    void *ws = cu_alloc(kc_attn_bwd_workspace_bytes(&s), "workspace");
    kn_tensor_free(&t);
    CUDACALL(kc_attn_fwd(&s, q, k, v, o, lse, stream));
    fa2_call call = {&s, q, k, v, o, d_o, g, ws, lse, fwd};
    double *times = kn_xmalloc((size_t)reps * sizeof(double), "timings");
    timing_cuda_events(fa2_launch, &call, stream, 1, (uint64_t)reps, times); /* 1 warm-up */
    double best = timing_min(times, (size_t)reps);
    free(times);
    cu_release(q), cu_release(k), cu_release(v), cu_release(o), cu_release(d_o);
    cu_release(lse), cu_release(ws);
    for (int i = 0; i < 3; i++) cu_release(g[i]);
    cu_sync();
    return best;
}

typedef struct {
    void *dst, *src;
    size_t bytes;
} copy_call;

static void copy_launch(void *ctx, int i, void *st)
{
    (void)i, (void)st; /* cu_copy queues on the device's stream */
    copy_call *c = ctx;
    cu_copy(c->dst, c->src, c->bytes);
}

double dev_cuda_copy_rate(size_t bytes)
{
    void *a = cu_alloc(bytes, "copy buffer"), *b = cu_alloc(bytes, "copy buffer");
    cu_zero(a, bytes);
    copy_call call = {b, a, bytes};
    double times[4];
    timing_cuda_events(copy_launch, &call, stream, 1, 4, times); /* 1 warm-up */
    double best = timing_min(times, 4);
    cu_release(a), cu_release(b);
    cu_sync();
    return 2.0 * (double)bytes / best;
}

void dev_cuda_device_name(char *name, size_t n)
{
    int dev = 0;
    struct cudaDeviceProp p;
    CUDACALL(cudaGetDevice(&dev));
    CUDACALL(cudaGetDeviceProperties(&p, dev));
    snprintf(name, n, "%s", p.name);
}
