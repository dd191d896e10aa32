/* kc_generic.cu - the generic attention path (any storage type, d <= 256; kc_attn.h) and the
 * element-wise kernels both paths share. One warp per query row: the lanes split the head
 * dimension, every key costs a warp reduction. Correct for every shape the tensor-core kernels
 * do not take, and the slow path it says it is.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "kc_common.cuh"
#include "kc_internal.h"

namespace
{

constexpr int ROWS_PER_CTA = 4, MAXE = 8; /* d <= 32 * MAXE */

__device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
    return x;
}

struct gen_params {
    const void *q, *k, *v, *o, *d_o;
    void *o_out, *dq;
    const float *lse;
    float *lse_out, *m, *l, *oacc, *dsum, *dk_acc, *dv_acc, *dq_acc;
    const unsigned long long *qpos, *kpos;
    int h, h_kv, nq, nk, d, kv_begin, kv_end, accumulate, causal, tile;
    float scale;
};

/* Keys visible to query row i: a prefix [0, n) of the keys. */
__device__ __forceinline__ int visible_end(const gen_params &p, int i)
{
    if (!p.causal) return p.nk;
    if (p.qpos) return kc_upper_bound(p.kpos, 0, p.nk, p.qpos[i]);
    return max(0, min(p.nk, i + p.nk - p.nq + 1));
}

template <typename T>
__device__ __forceinline__ void load_row(float *x, const T *src, int d, int lane)
{
#pragma unroll
    for (int e = 0; e < MAXE; e++) {
        int c = lane + 32 * e;
        x[e] = c < d ? kc_type<T>::to_f(src[c]) : 0.f;
    }
}

template <typename T> __global__ void gen_fwd_kernel(gen_params p)
{
    const int lane = threadIdx.x & 31;
    const int i = blockIdx.x * ROWS_PER_CTA + (threadIdx.x >> 5);
    if (i >= p.nq) return;
    const int bh = blockIdx.y, bi = bh / p.h, hi = bh % p.h, hk = hi / (p.h / p.h_kv);
    const size_t ri = (size_t)bh * p.nq + i;
    const T *K = static_cast<const T *>(p.k) + (size_t)(bi * p.h_kv + hk) * p.nk * p.d;
    const T *V = static_cast<const T *>(p.v) + (size_t)(bi * p.h_kv + hk) * p.nk * p.d;
    float q[MAXE], o[MAXE], m = -INFINITY, l = 0.f;
    load_row(q, static_cast<const T *>(p.q) + ri * p.d, p.d, lane);
#pragma unroll
    for (int e = 0; e < MAXE; e++) o[e] = 0.f;
    if (p.accumulate) {
        m = p.m[ri];
        l = p.l[ri];
#pragma unroll
        for (int e = 0; e < MAXE; e++)
            if (lane + 32 * e < p.d) o[e] = p.oacc[ri * p.d + lane + 32 * e];
    }
    const int end = min(p.kv_end, visible_end(p, i));
    for (int j = p.kv_begin; j < end; j++) {
        float kr[MAXE], vr[MAXE], dot = 0.f;
        load_row(kr, K + (size_t)j * p.d, p.d, lane);
#pragma unroll
        for (int e = 0; e < MAXE; e++) dot += q[e] * kr[e];
        const float s = warp_sum(dot) * p.scale;
        const float mnew = fmaxf(m, s);
        const float alpha = expf(m - mnew), pj = expf(s - mnew); /* mnew is finite here */
        load_row(vr, V + (size_t)j * p.d, p.d, lane);
        l = l * alpha + pj;
#pragma unroll
        for (int e = 0; e < MAXE; e++) o[e] = o[e] * alpha + pj * vr[e];
        m = mnew;
    }
    if (p.o_out) {
        const float inv = l > 0.f ? 1.f / l : 0.f;
        T *O = static_cast<T *>(p.o_out) + ri * p.d;
#pragma unroll
        for (int e = 0; e < MAXE; e++)
            if (lane + 32 * e < p.d) O[lane + 32 * e] = kc_type<T>::from_f(o[e] * inv);
        if (lane == 0) p.lse_out[ri] = l > 0.f ? m + logf(l) : -INFINITY;
    } else {
        if (lane == 0) p.m[ri] = m, p.l[ri] = l;
#pragma unroll
        for (int e = 0; e < MAXE; e++)
            if (lane + 32 * e < p.d) p.oacc[ri * p.d + lane + 32 * e] = o[e];
    }
}

template <typename T> __global__ void dsum_kernel(gen_params p)
{
    const int lane = threadIdx.x & 31;
    const int i = blockIdx.x * ROWS_PER_CTA + (threadIdx.x >> 5);
    if (i >= p.nq) return;
    const size_t ri = (size_t)blockIdx.y * p.nq + i;
    const T *O = static_cast<const T *>(p.o) + ri * p.d,
            *dO = static_cast<const T *>(p.d_o) + ri * p.d;
    float acc = 0.f;
    for (int c = lane; c < p.d; c += 32) acc += kc_type<T>::to_f(O[c]) * kc_type<T>::to_f(dO[c]);
    acc = warp_sum(acc);
    if (lane == 0) p.dsum[ri] = acc;
}

template <typename T> __global__ void gen_bwd_kernel(gen_params p)
{
    const int lane = threadIdx.x & 31;
    const int i = blockIdx.x * ROWS_PER_CTA + (threadIdx.x >> 5);
    if (i >= p.nq) return;
    const int bh = blockIdx.y, bi = bh / p.h, hi = bh % p.h, hk = hi / (p.h / p.h_kv);
    const size_t ri = (size_t)bh * p.nq + i, kvh = (size_t)(bi * p.h_kv + hk) * p.nk;
    const T *K = static_cast<const T *>(p.k) + kvh * p.d,
            *V = static_cast<const T *>(p.v) + kvh * p.d;
    float q[MAXE], dor[MAXE], dq[MAXE];
    load_row(q, static_cast<const T *>(p.q) + ri * p.d, p.d, lane);
    load_row(dor, static_cast<const T *>(p.d_o) + ri * p.d, p.d, lane);
#pragma unroll
    for (int e = 0; e < MAXE; e++) dq[e] = 0.f;
    const float lse = p.lse[ri], D = p.dsum[ri];
    int end = visible_end(p, i);
    if (lse == -INFINITY) end = 0; /* a row that saw no key has no gradient */
    /* tile mode adds scale dS^T Q into the caller's dK accumulator (no conversion pass) */
    const float kscale = p.tile ? p.scale : 1.f;
    for (int j = 0; j < end; j++) {
        float kr[MAXE], vr[MAXE], dot = 0.f, dp = 0.f;
        load_row(kr, K + (size_t)j * p.d, p.d, lane);
        load_row(vr, V + (size_t)j * p.d, p.d, lane);
#pragma unroll
        for (int e = 0; e < MAXE; e++) dot += q[e] * kr[e], dp += dor[e] * vr[e];
        const float pj = expf(warp_sum(dot) * p.scale - lse);
        const float ds = pj * (warp_sum(dp) - D);
#pragma unroll
        for (int e = 0; e < MAXE; e++) {
            const int c = lane + 32 * e;
            if (c >= p.d) continue;
            dq[e] += ds * kr[e];
            atomicAdd(p.dk_acc + (kvh + j) * p.d + c, ds * q[e] * kscale);
            atomicAdd(p.dv_acc + (kvh + j) * p.d + c, pj * dor[e]);
        }
    }
    if (p.tile) { /* the row is this warp's: a plain read-add-write */
        if (end == 0) return;
        float *dQa = p.dq_acc + ri * p.d;
#pragma unroll
        for (int e = 0; e < MAXE; e++)
            if (lane + 32 * e < p.d) dQa[lane + 32 * e] += dq[e] * p.scale;
        return;
    }
    T *dQ = static_cast<T *>(p.dq) + ri * p.d;
#pragma unroll
    for (int e = 0; e < MAXE; e++)
        if (lane + 32 * e < p.d) dQ[lane + 32 * e] = kc_type<T>::from_f(dq[e] * p.scale);
}

template <typename T>
__global__ void convert_kernel(const float *src, T *dst, size_t n, float scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = kc_type<T>::from_f(src[i] * scale);
}

gen_params make(const kc_shape *s)
{
    gen_params p = {};
    p.h = (int)s->h, p.h_kv = (int)s->h_kv, p.nq = (int)s->nq, p.nk = (int)s->nk;
    p.d = (int)s->d, p.causal = s->causal;
    p.qpos = s->qpos, p.kpos = s->kpos;
    p.scale = (float)(1.0 / sqrt((double)s->d));
    return p;
}

dim3 row_grid(const kc_shape *s)
{
    return dim3((unsigned)((s->nq + ROWS_PER_CTA - 1) / ROWS_PER_CTA), (unsigned)(s->b * s->h));
}

} // namespace

#define KC_BY_DTYPE(dtype, KERNEL, GRID, BLOCK, ST, ...)                                           \
    do {                                                                                           \
        if ((dtype) == 0)                                                                          \
            KERNEL<float><<<GRID, BLOCK, 0, ST>>>(__VA_ARGS__);                                    \
        else if ((dtype) == 1)                                                                     \
            KERNEL<__half><<<GRID, BLOCK, 0, ST>>>(__VA_ARGS__);                                   \
        else                                                                                       \
            KERNEL<__nv_bfloat16><<<GRID, BLOCK, 0, ST>>>(__VA_ARGS__);                            \
    } while (0)

cudaError_t kc_generic_fwd(const kc_shape *s, const void *q, const void *k, const void *v,
                           size_t kv_begin, size_t kv_end, int accumulate, float *m, float *l,
                           float *o, void *o_out, float *lse, cudaStream_t st)
{
    if (s->nq == 0 || s->b * s->h == 0) return cudaSuccess;
    gen_params p = make(s);
    p.q = q, p.k = k, p.v = v, p.o_out = o_out, p.lse_out = lse, p.m = m, p.l = l, p.oacc = o;
    p.kv_begin = (int)kv_begin, p.kv_end = (int)kv_end, p.accumulate = accumulate;
    KC_BY_DTYPE(s->dtype, gen_fwd_kernel, row_grid(s), 32 * ROWS_PER_CTA, st, p);
    return cudaGetLastError();
}

cudaError_t kc_dsum(const kc_shape *s, const void *o, const void *d_o, float *dsum, cudaStream_t st)
{
    if (s->nq == 0 || s->b * s->h == 0) return cudaSuccess;
    gen_params p = make(s);
    p.o = o, p.d_o = d_o, p.dsum = dsum;
    KC_BY_DTYPE(s->dtype, dsum_kernel, row_grid(s), 32 * ROWS_PER_CTA, st, p);
    return cudaGetLastError();
}

cudaError_t kc_convert_scaled(int dtype, const float *src, void *dst, size_t n, float scale,
                              cudaStream_t st)
{
    if (n == 0) return cudaSuccess;
    unsigned blocks = (unsigned)((n + 255) / 256 < 65535 ? (n + 255) / 256 : 65535);
    if (dtype == 0)
        convert_kernel<float><<<blocks, 256, 0, st>>>(src, static_cast<float *>(dst), n, scale);
    else if (dtype == 1)
        convert_kernel<__half><<<blocks, 256, 0, st>>>(src, static_cast<__half *>(dst), n, scale);
    else
        convert_kernel<__nv_bfloat16>
            <<<blocks, 256, 0, st>>>(src, static_cast<__nv_bfloat16 *>(dst), n, scale);
    return cudaGetLastError();
}

cudaError_t kc_generic_bwd(const kc_shape *s, const void *q, const void *k, const void *v,
                           const void *o, const void *d_o, const float *lse, void *dq, void *dk,
                           void *dv, float *dsum, float *dk_acc, float *dv_acc, cudaStream_t st)
{
    const size_t nkv = s->b * s->h_kv * s->nk * s->d;
    cudaError_t e;
    if ((e = cudaMemsetAsync(dk_acc, 0, nkv * sizeof(float), st)) != cudaSuccess) return e;
    if ((e = cudaMemsetAsync(dv_acc, 0, nkv * sizeof(float), st)) != cudaSuccess) return e;
    if ((e = kc_dsum(s, o, d_o, dsum, st)) != cudaSuccess) return e;
    if (s->nq > 0 && s->b * s->h > 0) {
        gen_params p = make(s);
        p.q = q, p.k = k, p.v = v, p.d_o = d_o, p.lse = lse, p.dq = dq, p.dsum = dsum;
        p.dk_acc = dk_acc, p.dv_acc = dv_acc;
        KC_BY_DTYPE(s->dtype, gen_bwd_kernel, row_grid(s), 32 * ROWS_PER_CTA, st, p);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    if ((e = kc_convert_scaled(s->dtype, dk_acc, dk, nkv, (float)(1.0 / sqrt((double)s->d)), st)) !=
        cudaSuccess)
        return e;
    return kc_convert_scaled(s->dtype, dv_acc, dv, nkv, 1.f, st);
}

cudaError_t kc_generic_bwd_tile(const kc_shape *s, const void *q, const void *k, const void *v,
                                const void *d_o, const float *lse, const float *dsum, float *dq_acc,
                                float *dk_acc, float *dv_acc, cudaStream_t st)
{
    if (s->nq == 0 || s->nk == 0 || s->b * s->h == 0) return cudaSuccess;
    gen_params p = make(s);
    p.q = q, p.k = k, p.v = v, p.d_o = d_o, p.lse = lse, p.dsum = const_cast<float *>(dsum);
    p.dq_acc = dq_acc, p.dk_acc = dk_acc, p.dv_acc = dv_acc, p.tile = 1;
    KC_BY_DTYPE(s->dtype, gen_bwd_kernel, row_grid(s), 32 * ROWS_PER_CTA, st, p);
    return cudaGetLastError();
}
