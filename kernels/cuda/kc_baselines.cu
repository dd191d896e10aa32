/* kc_baselines.cu - the IO-study baselines on the GPU (standard attention with S and P in HBM;
 * FlashAttention-1 as a host loop of partial launches), the finalisation of a partial state,
 * the read-bandwidth probe (kc_attn.h).
 */
#include <cuda_runtime.h>
#include <math.h>

#include "kc_common.cuh"
#include "kc_internal.h"

namespace
{

constexpr int TS = 16; /* tile of the standard kernels */

struct std_params {
    const void *q, *k, *v;
    void *o;
    float *lse, *sp;
    int h, h_kv, nq, nk, d, causal;
    float scale;
};

/* S = scale Q K^T for a 16 x 16 tile; masked entries -inf */
template <typename T> __global__ void std_scores(std_params p)
{
    __shared__ float sq[TS][TS + 1], sk[TS][TS + 1];
    const int bh = blockIdx.z, bi = bh / p.h, hk = (bh % p.h) / (p.h / p.h_kv);
    const int i = blockIdx.y * TS + threadIdx.y, j = blockIdx.x * TS + threadIdx.x;
    const T *Q = static_cast<const T *>(p.q) + (size_t)bh * p.nq * p.d;
    const T *K = static_cast<const T *>(p.k) + (size_t)(bi * p.h_kv + hk) * p.nk * p.d;
    float acc = 0.f;
    for (int c0 = 0; c0 < p.d; c0 += TS) {
        const int qi = blockIdx.y * TS + threadIdx.y, kj = blockIdx.x * TS + threadIdx.y;
        const int c = c0 + threadIdx.x;
        sq[threadIdx.y][threadIdx.x] =
            qi < p.nq && c < p.d ? kc_type<T>::to_f(Q[(size_t)qi * p.d + c]) : 0.f;
        sk[threadIdx.y][threadIdx.x] =
            kj < p.nk && c < p.d ? kc_type<T>::to_f(K[(size_t)kj * p.d + c]) : 0.f;
        __syncthreads();
#pragma unroll
        for (int e = 0; e < TS; e++) acc += sq[threadIdx.y][e] * sk[threadIdx.x][e];
        __syncthreads();
    }
    if (i < p.nq && j < p.nk) {
        const bool masked = p.causal && j > i + p.nk - p.nq;
        p.sp[((size_t)bh * p.nq + i) * p.nk + j] = masked ? -INFINITY : acc * p.scale;
    }
}

/* P = softmax(S) in place, one warp per row; LSE */
__global__ void std_softmax(std_params p, int rows)
{
    const int lane = threadIdx.x & 31, r = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
    if (r >= rows) return;
    float *row = p.sp + (size_t)r * p.nk;
    float m = -INFINITY, l = 0.f;
    for (int j = lane; j < p.nk; j += 32) m = fmaxf(m, row[j]);
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    if (m != -INFINITY)
        for (int j = lane; j < p.nk; j += 32) l += expf(row[j] - m);
    for (int off = 16; off > 0; off >>= 1) l += __shfl_xor_sync(0xffffffffu, l, off);
    const float inv = l > 0.f ? 1.f / l : 0.f;
    for (int j = lane; j < p.nk; j += 32) row[j] = m == -INFINITY ? 0.f : expf(row[j] - m) * inv;
    if (lane == 0) p.lse[r] = l > 0.f ? m + logf(l) : -INFINITY;
}

/* O = P V for a tile of 16 rows x 16 columns of d */
template <typename T> __global__ void std_pv(std_params p)
{
    __shared__ float sp[TS][TS + 1], sv[TS][TS + 1];
    const int bh = blockIdx.z, bi = bh / p.h, hk = (bh % p.h) / (p.h / p.h_kv);
    const int i = blockIdx.y * TS + threadIdx.y, c = blockIdx.x * TS + threadIdx.x;
    const T *V = static_cast<const T *>(p.v) + (size_t)(bi * p.h_kv + hk) * p.nk * p.d;
    const float *P = p.sp + (size_t)bh * p.nq * p.nk;
    float acc = 0.f;
    for (int j0 = 0; j0 < p.nk; j0 += TS) {
        const int j = j0 + threadIdx.x, vj = j0 + threadIdx.y;
        sp[threadIdx.y][threadIdx.x] = i < p.nq && j < p.nk ? P[(size_t)i * p.nk + j] : 0.f;
        sv[threadIdx.y][threadIdx.x] =
            vj < p.nk && c < p.d ? kc_type<T>::to_f(V[(size_t)vj * p.d + c]) : 0.f;
        __syncthreads();
#pragma unroll
        for (int e = 0; e < TS; e++) acc += sp[threadIdx.y][e] * sv[e][threadIdx.x];
        __syncthreads();
    }
    if (i < p.nq && c < p.d)
        static_cast<T *>(p.o)[((size_t)bh * p.nq + i) * p.d + c] = kc_type<T>::from_f(acc);
}

template <typename T>
__global__ void finalize_kernel(const float *m, const float *l, const float *o, T *out, float *lse,
                                size_t rows, int d)
{
    for (size_t r = blockIdx.x * (size_t)blockDim.y + threadIdx.y; r < rows;
         r += (size_t)gridDim.x * blockDim.y) {
        const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
        for (int c = threadIdx.x; c < d; c += blockDim.x)
            out[r * d + c] = kc_type<T>::from_f(o[r * d + c] * inv);
        if (threadIdx.x == 0) lse[r] = l[r] > 0.f ? m[r] + logf(l[r]) : -INFINITY;
    }
}

/* The read ceiling: one CTA of 1024 threads per SM claims 64 KiB chunks in address order from a
 * counter, so a fast SM takes more chunks than a slow one and the whole grid reads a window that
 * moves through the buffer. The counters reset themselves: the last CTA out sets them to zero
 * (launches in one stream run one after the other). Every 32-bit word is added (mod 2^32) into
 * *sum, so a test can see that each chunk was read exactly once. */
constexpr int CEIL_THREADS = 1024, CEIL_LOADS = 4; /* 16 B per load: 64 KiB per chunk */
__device__ unsigned long long ceil_next, ceil_done;

__global__ void __launch_bounds__(CEIL_THREADS)
    read_ceiling(const uint4 *buf, size_t n, unsigned *sum)
{
    __shared__ unsigned long long chunk;
    __shared__ unsigned part[CEIL_THREADS / 32];
    constexpr size_t CHUNK = (size_t)CEIL_LOADS * CEIL_THREADS; /* in uint4 */
    unsigned acc = 0;
    for (;;) {
        if (threadIdx.x == 0) chunk = atomicAdd(&ceil_next, 1ull);
        __syncthreads();
        const size_t c0 = (size_t)chunk * CHUNK;
        __syncthreads(); /* everyone has read `chunk` before thread 0 claims the next */
        if (c0 >= n) break;
        uint4 v[CEIL_LOADS];
#pragma unroll
        for (int u = 0; u < CEIL_LOADS; u++) {
            const size_t i = c0 + (size_t)u * CEIL_THREADS + threadIdx.x;
            v[u] = i < n ? __ldcs(buf + i) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < CEIL_LOADS; u++) acc += v[u].x + v[u].y + v[u].z + v[u].w;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned t = 0;
        for (int w = 0; w < CEIL_THREADS / 32; w++) t += part[w];
        atomicAdd(sum, t);
        __threadfence();
        if (atomicAdd(&ceil_done, 1ull) == gridDim.x - 1) { /* the last CTA out */
            ceil_next = 0;
            ceil_done = 0;
            __threadfence();
        }
    }
}

__global__ void read_probe(const uint4 *buf, size_t n, float *sink)
{
    float acc = 0.f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint4 v = __ldcs(buf + i);
        acc += __uint_as_float(v.x ^ v.y ^ v.z ^ v.w);
    }
    if (acc == 1.2345f) *sink = acc; /* keeps the loads; practically never taken */
}

/* ---- FlashAttention-1, literally (Dao et al. 2022, algorithm 1) ------------------------------
 * One CTA per (batch, query head): outer loop over K/V blocks j (K_j, V_j read once), inner loop
 * over the Q blocks that see block j, which read Q_i and their running O_i (f32), m_i, l_i from
 * HBM and write them back; the last visit writes O_i in the storage type. The same transfers as
 * the C reference (kernels/attn_fa1.c) at B_r = B_c = fa1_block(d), so the IO model predicts them;
 * the arithmetic is plain f32 (this kernel is the IO study's baseline, not a fast path). */
constexpr int FA1_THREADS = 256;

/* B_r = B_c: 64 up to d = 128, 32 above (shared memory) */
__host__ __device__ inline int fa1_block(int d)
{
    return d <= 128 ? 64 : 32;
}

struct fa1_params {
    const void *q, *k, *v;
    void *o;
    float *m, *l, *oacc;
    int h, h_kv, nq, nk, d, causal;
    float scale;
};

__device__ __forceinline__ int fa1_blocks_visible(const fa1_params &p, int r0, int rows)
{
    const int B = fa1_block(p.d), tc = (p.nk + B - 1) / B;
    if (!p.causal) return tc;
    long keys = (long)(r0 + rows - 1) + p.nk - p.nq + 1; /* keys the last row sees */
    if (keys <= 0) return 0;
    if (keys > p.nk) keys = p.nk;
    return (int)((keys + B - 1) / B);
}

template <typename T> __global__ void __launch_bounds__(FA1_THREADS) fa1_kernel(fa1_params p)
{
    extern __shared__ float sm[];
    const int d = p.d, tid = threadIdx.x, B = fa1_block(d);
    float *K = sm, *V = K + B * d, *QO = V + B * d, *S = QO + B * d;
    float *m = S + B * B, *l = m + B, *mt = l + B, *lt = mt + B;
    float *cold = lt + B, *ctile = cold + B;
    const int bh = blockIdx.x, bi = bh / p.h, hk = (bh % p.h) / (p.h / p.h_kv);
    const T *Q = static_cast<const T *>(p.q) + (size_t)bh * p.nq * d;
    const T *Kg = static_cast<const T *>(p.k) + (size_t)(bi * p.h_kv + hk) * p.nk * d;
    const T *Vg = static_cast<const T *>(p.v) + (size_t)(bi * p.h_kv + hk) * p.nk * d;
    T *O = static_cast<T *>(p.o) + (size_t)bh * p.nq * d;
    float *Oacc = p.oacc + (size_t)bh * p.nq * d, *M = p.m + (size_t)bh * p.nq;
    float *L = p.l + (size_t)bh * p.nq;
    const int tc = (p.nk + B - 1) / B;

    /* Q blocks that see no key: O = 0, m = -inf, l = 0, written once */
    for (int r0 = 0; r0 < p.nq; r0 += B) {
        const int rows = min(B, p.nq - r0);
        if (fa1_blocks_visible(p, r0, rows) > 0) continue;
        for (int i = tid; i < rows * d; i += FA1_THREADS)
            O[(size_t)r0 * d + i] = kc_type<T>::from_f(0.f);
        for (int r = tid; r < rows; r += FA1_THREADS) M[r0 + r] = -INFINITY, L[r0 + r] = 0.f;
    }
    for (int j = 0; j < tc; j++) {
        const int c0 = j * B, cols = min(B, p.nk - c0);
        bool loaded = false;
        for (int r0 = 0; r0 < p.nq; r0 += B) {
            const int rows = min(B, p.nq - r0);
            const int nvis = fa1_blocks_visible(p, r0, rows);
            if (j >= nvis) continue;
            if (!loaded) {
                for (int i = tid; i < B * d; i += FA1_THREADS) {
                    const bool in = i < cols * d;
                    K[i] = in ? kc_type<T>::to_f(Kg[(size_t)c0 * d + i]) : 0.f;
                    V[i] = in ? kc_type<T>::to_f(Vg[(size_t)c0 * d + i]) : 0.f;
                }
                loaded = true;
            }
            for (int i = tid; i < rows * d; i += FA1_THREADS)
                QO[i] = kc_type<T>::to_f(Q[(size_t)r0 * d + i]);
            __syncthreads();
            for (int e = tid; e < rows * B; e += FA1_THREADS) {
                const int r = e / B, c = e % B;
                float acc = 0.f;
                for (int x = 0; x < d; x++) acc += QO[r * d + x] * K[c * d + x];
                const bool vis = c < cols && (!p.causal || c0 + c <= r0 + r + p.nk - p.nq);
                S[e] = vis ? acc * p.scale : -INFINITY;
            }
            __syncthreads();
            if (tid < rows) {
                float mx = -INFINITY, sum = 0.f;
                for (int c = 0; c < B; c++) mx = fmaxf(mx, S[tid * B + c]);
                for (int c = 0; c < B; c++) {
                    const float e = mx == -INFINITY ? 0.f : expf(S[tid * B + c] - mx);
                    S[tid * B + c] = e;
                    sum += e;
                }
                mt[tid] = mx, lt[tid] = sum;
            }
            /* Q is dead: the slot takes the running O_i (read back on every visit but the
             * first) */
            __syncthreads();
            if (j == 0) {
                for (int i = tid; i < rows * d; i += FA1_THREADS) QO[i] = 0.f;
                if (tid < rows) m[tid] = -INFINITY, l[tid] = 0.f;
            } else {
                for (int i = tid; i < rows * d; i += FA1_THREADS) QO[i] = Oacc[(size_t)r0 * d + i];
                if (tid < rows) m[tid] = M[r0 + tid], l[tid] = L[r0 + tid];
            }
            __syncthreads();
            if (tid < rows) { /* the merge coefficients (kn_merge_coeffs): -inf adds nothing */
                const float mo = m[tid], mtl = mt[tid], mn = fmaxf(mo, mtl);
                const float a_old = mn == -INFINITY || mo == -INFINITY ? 0.f : expf(mo - mn);
                const float a_tile = mn == -INFINITY || mtl == -INFINITY ? 0.f : expf(mtl - mn);
                const float lnew = a_old * l[tid] + a_tile * lt[tid];
                cold[tid] = lnew > 0.f ? a_old * l[tid] / lnew : 0.f; /* O_i is normalised */
                ctile[tid] = lnew > 0.f ? a_tile / lnew : 0.f;
                m[tid] = mn, l[tid] = lnew;
            }
            __syncthreads();
            /* O_i = c_old O_i + c_tile P V_j, written in place (each element by one thread) */
            for (int e = tid; e < rows * d; e += FA1_THREADS) {
                const int r = e / d, x = e % d;
                float acc = 0.f;
                for (int c = 0; c < cols; c++) acc += S[r * B + c] * V[c * d + x];
                QO[e] = QO[e] * cold[r] + acc * ctile[r];
            }
            __syncthreads();
            const bool last = j + 1 == nvis;
            for (int i = tid; i < rows * d; i += FA1_THREADS) {
                if (last)
                    O[(size_t)r0 * d + i] = kc_type<T>::from_f(QO[i]);
                else
                    Oacc[(size_t)r0 * d + i] = QO[i];
            }
            if (tid < rows) M[r0 + tid] = m[tid], L[r0 + tid] = l[tid];
            __syncthreads();
        }
    }
}

__global__ void ml_to_lse_kernel(const float *m, const float *l, float *lse, size_t rows)
{
    const size_t r = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (r < rows) lse[r] = l[r] > 0.f ? m[r] + logf(l[r]) : -INFINITY;
}

} // namespace

extern "C" size_t kc_standard_workspace_bytes(const kc_shape *s)
{
    return s->b * s->h * s->nq * s->nk * sizeof(float);
}

extern "C" int kc_standard_fwd(const kc_shape *s, const void *q, const void *k, const void *v,
                               void *o, float *lse, void *sp, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    if (kc_attn_path(s) == KC_PATH_UNSUPPORTED || kc_mask_kind(s) == MASK_POS) /* no positions */
        return (int)cudaErrorInvalidValue;
    if (s->nq == 0 || s->b * s->h == 0) return 0;
    std_params p = {};
    p.q = q, p.k = k, p.v = v, p.o = o, p.lse = lse, p.sp = static_cast<float *>(sp);
    p.h = (int)s->h, p.h_kv = (int)s->h_kv, p.nq = (int)s->nq, p.nk = (int)s->nk;
    p.d = (int)s->d, p.causal = s->causal, p.scale = (float)(1.0 / sqrt((double)s->d));
    const unsigned bh = (unsigned)(s->b * s->h);
    dim3 blk(TS, TS);
    if (s->nk > 0) {
        dim3 g1((unsigned)((s->nk + TS - 1) / TS), (unsigned)((s->nq + TS - 1) / TS), bh);
        if (s->dtype == 0)
            std_scores<float><<<g1, blk, 0, st>>>(p);
        else if (s->dtype == 1)
            std_scores<__half><<<g1, blk, 0, st>>>(p);
        else
            std_scores<__nv_bfloat16><<<g1, blk, 0, st>>>(p);
    }
    const int rows = (int)(s->b * s->h * s->nq);
    std_softmax<<<(rows + 3) / 4, 128, 0, st>>>(p, rows);
    dim3 g3((unsigned)((s->d + TS - 1) / TS), (unsigned)((s->nq + TS - 1) / TS), bh);
    if (s->dtype == 0)
        std_pv<float><<<g3, blk, 0, st>>>(p);
    else if (s->dtype == 1)
        std_pv<__half><<<g3, blk, 0, st>>>(p);
    else
        std_pv<__nv_bfloat16><<<g3, blk, 0, st>>>(p);
    return (int)cudaGetLastError();
}

extern "C" int kc_finalize(const kc_shape *s, const float *m, const float *l, const float *o,
                           void *o_out, float *lse, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    const size_t rows = s->b * s->h * s->nq;
    if (rows == 0) return 0;
    dim3 blk(32, 8);
    unsigned grid = (unsigned)((rows + 7) / 8 < 65535 ? (rows + 7) / 8 : 65535);
    const int d = (int)s->d;
    if (s->dtype == 0)
        finalize_kernel<float><<<grid, blk, 0, st>>>(m, l, o, (float *)o_out, lse, rows, d);
    else if (s->dtype == 1)
        finalize_kernel<__half><<<grid, blk, 0, st>>>(m, l, o, (__half *)o_out, lse, rows, d);
    else
        finalize_kernel<__nv_bfloat16>
            <<<grid, blk, 0, st>>>(m, l, o, (__nv_bfloat16 *)o_out, lse, rows, d);
    return (int)cudaGetLastError();
}

extern "C" size_t kc_fa1_workspace_bytes(const kc_shape *s)
{
    const size_t rows = s->b * s->h * s->nq;
    return (2 * rows + rows * s->d) * sizeof(float); /* m, l, o_acc */
}

extern "C" void kc_fa1_blocks(size_t d, size_t *br, size_t *bc)
{
    *br = *bc = (size_t)fa1_block((int)d);
}

extern "C" int kc_fa1_fwd(const kc_shape *s, const void *q, const void *k, const void *v, void *o,
                          float *lse, void *workspace, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    if (kc_attn_path(s) == KC_PATH_UNSUPPORTED || kc_mask_kind(s) == MASK_POS) /* no positions */
        return (int)cudaErrorInvalidValue;
    const size_t rows = s->b * s->h * s->nq;
    if (rows == 0) return 0;
    fa1_params p = {};
    p.q = q, p.k = k, p.v = v, p.o = o;
    p.m = static_cast<float *>(workspace), p.l = p.m + rows, p.oacc = p.l + rows;
    p.h = (int)s->h, p.h_kv = (int)s->h_kv, p.nq = (int)s->nq, p.nk = (int)s->nk;
    p.d = (int)s->d, p.causal = s->causal, p.scale = (float)(1.0 / sqrt((double)s->d));
    const size_t B = (size_t)fa1_block((int)s->d);
    const int smem = (int)((3 * B * s->d + B * B + 6 * B) * sizeof(float));
    cudaError_t e;
    const unsigned grid = (unsigned)(s->b * s->h);
    if (s->dtype == 0) {
        e = cudaFuncSetAttribute(fa1_kernel<float>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 smem);
        if (e == cudaSuccess) fa1_kernel<float><<<grid, FA1_THREADS, smem, st>>>(p);
    } else if (s->dtype == 1) {
        e = cudaFuncSetAttribute(fa1_kernel<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 smem);
        if (e == cudaSuccess) fa1_kernel<__half><<<grid, FA1_THREADS, smem, st>>>(p);
    } else {
        e = cudaFuncSetAttribute(fa1_kernel<__nv_bfloat16>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e == cudaSuccess) fa1_kernel<__nv_bfloat16><<<grid, FA1_THREADS, smem, st>>>(p);
    }
    if (e != cudaSuccess) return (int)e;
    if ((e = cudaGetLastError()) != cudaSuccess) return (int)e;
    /* LSE = m + log l, outside the FA1 kernel (not part of its traffic) */
    ml_to_lse_kernel<<<(unsigned)((rows + 255) / 256), 256, 0, st>>>(p.m, p.l, lse, rows);
    return (int)cudaGetLastError();
}

/* The SM count of the current device (the read probes' grids). */
static cudaError_t current_sms(int *sms)
{
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    return e != cudaSuccess ? e : cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev);
}

extern "C" int kc_read_ceiling_probe(const void *buf, size_t bytes, unsigned *sum, void *stream)
{
    int sms = 0;
    cudaError_t e = current_sms(&sms);
    if (e != cudaSuccess) return (int)e;
    read_ceiling<<<(unsigned)sms, CEIL_THREADS, 0, (cudaStream_t)stream>>>(
        static_cast<const uint4 *>(buf), bytes / 16, sum);
    return (int)cudaGetLastError();
}

extern "C" int kc_read_bandwidth_probe(const void *buf, size_t bytes, float *sink, void *stream)
{
    int sms = 0;
    cudaError_t e = current_sms(&sms);
    if (e != cudaSuccess) return (int)e;
    read_probe<<<(unsigned)(sms * 8), 512, 0, (cudaStream_t)stream>>>(
        static_cast<const uint4 *>(buf), bytes / 16, sink);
    return (int)cudaGetLastError();
}
