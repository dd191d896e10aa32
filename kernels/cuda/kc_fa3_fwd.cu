/* kc_fa3_fwd.cu - FlashAttention forward on Hopper warpgroup MMA (wgmma, sm_90a): the same
 * contract as the mma.sync forward of kc_fa2_fwd.cu (final O and LSE, or the partial state
 * m, l, o with accumulation; no mask, bottom-right causal, or causal by token positions), used
 * in its place where the GPU and the binary have sm_90a (kc_fa3_fwd_available).
 *
 * One CTA of two warpgroups (256 threads) per 128 query rows; each warpgroup owns 64 rows. The
 * Q tile and two stages of 128-key K and V tiles sit in shared memory in the panelled 128-byte
 * swizzle wgmma reads (kc_wgmma.cuh), loaded with cp.async by all threads (block j + 2 while
 * block j is computed). Per key block: S = Q K^T as m64n128k16 wgmmas with both operands read
 * from shared memory (no ldmatrix, no register copies of Q or K), the online softmax on the
 * accumulators, then O += P V with P straight from the S registers (the accumulator layout is
 * the register-A layout) and V read transposed from shared memory. O stays in registers.
 * Software pipelining: block j + 1's S is issued to the tensor cores before block j's softmax,
 * so the softmax runs while they work (two S register sets).
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>

#include "kc_attn.h"
#include "kc_common.cuh"
#include "kc_internal.h"
#include "kc_wgmma.cuh"

namespace
{

constexpr int NWG = 2, NTHREADS = 128 * NWG, BR = 64 * NWG, BC = 128;

struct fa3_params {
    const void *q, *k, *v;
    void *o;
    float *lse;
    float *m, *l, *oacc; /* partial mode */
    const unsigned long long *qpos, *kpos;
    int h, h_kv, nq, nk, kv_begin, kv_end, accumulate;
    float scale_log2;
};

/* S = Q K^T is m64n128 (128 keys); P V is m64nD. */
template <typename T, int D> struct mma_ops {
    static __device__ __forceinline__ void ss(float (&d)[64], uint64_t a, uint64_t b, int sc)
    {
        kc_wgmma<T>::ss_n128(d, a, b, sc);
    }
    static __device__ __forceinline__ void rs(float (&d)[D / 2], const uint32_t (&a)[4], uint64_t b)
    {
        if constexpr (D == 128)
            kc_wgmma<T>::rs_n128(d, a, b, 1);
        else
            kc_wgmma<T>::rs_n64(d, a, b, 1);
    }
};

/* Rows [row0, row0 + ROWS) of a [n][D] slice into a panelled tile; rows past n are zeros. */
template <typename T, int D, int ROWS>
__device__ __forceinline__ void load_panels(T *tile, const T *src, int row0, int n)
{
    constexpr int CHUNKS = ROWS * D / 8;
    for (int c = threadIdx.x; c < CHUNKS; c += NTHREADS) {
        const int r = c / (D / 8), col = (c % (D / 8)) * 8, gr = row0 + r;
        const T *p = src + (size_t)(gr < n ? gr : 0) * D + col;
        kc_cp_async16(kc_smem_addr(tile + kc_wg_off<ROWS>(r, col)), p, gr < n ? 16 : 0);
    }
}

template <typename T, int D, int MASK, bool PARTIAL>
__global__ void __launch_bounds__(NTHREADS, 1) fa3_fwd_kernel(fa3_params p)
{
    constexpr bool CAUSAL = MASK != MASK_NONE, POS = MASK == MASK_POS;
    constexpr int NO = D / 2; /* O accumulators per thread (64 rows x D / 128 threads) */
    extern __shared__ unsigned char smem_raw[];
    T *sQ =
        reinterpret_cast<T *>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
    T *sK = sQ + BR * D; /* two stages */
    T *sV = sK + 2 * BC * D;

    const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3, wg = threadIdx.x >> 7;
    const int g = lane >> 2, t = lane & 3;
    const int qb = gridDim.x - 1 - blockIdx.x; /* heaviest causal blocks first */
    const int bh = blockIdx.y, bi = bh / p.h, hi = bh % p.h, hk = hi / (p.h / p.h_kv);
    const int q0 = qb * BR, w0 = 64 * wg + 16 * warp; /* the warp's first row in the block */
    const T *Q = static_cast<const T *>(p.q) + (size_t)bh * p.nq * D;
    const T *K = static_cast<const T *>(p.k) + (size_t)(bi * p.h_kv + hk) * p.nk * D;
    const T *V = static_cast<const T *>(p.v) + (size_t)(bi * p.h_kv + hk) * p.nk * D;

    int kend = p.kv_end;
    const int diag = p.nk - p.nq; /* key j visible to query i iff j <= i + diag */
    if (POS)
        kend = min(kend, kc_upper_bound(p.kpos, 0, p.nk, p.qpos[min(q0 + BR - 1, p.nq - 1)]));
    else if (CAUSAL)
        kend = min(kend, min(q0 + BR - 1, p.nq - 1) + diag + 1);
    const int ntiles = kend > p.kv_begin ? (kend - p.kv_begin + BC - 1) / BC : 0;

    /* this thread's rows: h2 -> q0 + w0 + g + 8 h2 */
#define ROW(h2) (q0 + w0 + g + 8 * (h2))
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, o[NO], s[64];
#pragma unroll
    for (int i = 0; i < NO; i++) o[i] = 0.f;
#pragma unroll
    for (int i = 0; i < 64; i++) s[i] = 0.f;
    if (PARTIAL && p.accumulate) {
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            if (ROW(h2) >= p.nq) continue;
            const size_t ri = (size_t)bh * p.nq + ROW(h2);
            m[h2] = p.m[ri] * KC_LOG2E;     /* -inf stays -inf */
            l[h2] = t == 0 ? p.l[ri] : 0.f; /* one thread of the group carries the sum */
#pragma unroll
            for (int j = 0; j < D / 8; j++) {
                const float2 v2 =
                    *reinterpret_cast<const float2 *>(p.oacc + ri * D + 8 * j + 2 * t);
                o[4 * j + 2 * h2] = v2.x;
                o[4 * j + 2 * h2 + 1] = v2.y;
            }
        }
    }

    load_panels<T, D, BR>(sQ, Q, q0, p.nq);
    if (ntiles > 0) {
        load_panels<T, D, BC>(sK, K + (size_t)p.kv_begin * D, 0, p.nk - p.kv_begin);
        load_panels<T, D, BC>(sV, V + (size_t)p.kv_begin * D, 0, p.nk - p.kv_begin);
    }
    kc_cp_async_commit();
    if (ntiles > 1) {
        const int nxt = p.kv_begin + BC;
        load_panels<T, D, BC>(sK + BC * D, K + (size_t)nxt * D, 0, p.nk - nxt);
        load_panels<T, D, BC>(sV + BC * D, V + (size_t)nxt * D, 0, p.nk - nxt);
        kc_cp_async_commit();
        kc_cp_async_wait<1>();
    } else {
        kc_cp_async_wait<0>();
    }
    kc_fence_proxy_async();
    __syncthreads();
    const uint32_t aQ = kc_smem_addr(sQ) + (uint32_t)(64 * wg * 64 * sizeof(T));
    /* S = Q K^T of the block in `stage`, issued (not waited for): K-major A (this warpgroup's
     * 64 Q rows) and B (128 keys) */
    auto issue_s = [&](float(&dst)[64], int stage) {
        const uint32_t aK = kc_smem_addr(sK + stage * BC * D);
        kc_wg_fence();
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            const uint32_t panel = (uint32_t)(kk >> 2), within = (uint32_t)(kk & 3) * 32;
            const uint64_t da = kc_wg_desc(aQ + panel * BR * 128 + within, 16, 1024);
            const uint64_t db = kc_wg_desc(aK + panel * BC * 128 + within, 16, 1024);
            mma_ops<T, D>::ss(dst, da, db, kk > 0);
        }
        kc_wg_commit();
    };
    float sn[64]; /* S of the next block, computed while this one's softmax runs */
#pragma unroll
    for (int i = 0; i < 64; i++) sn[i] = 0.f;
    if (ntiles > 0) {
        issue_s(s, 0);
        kc_wg_wait0();
    }

    for (int it = 0; it < ntiles; it++) {
        const int stage = it & 1, kv0 = p.kv_begin + it * BC;
        if (it + 1 < ntiles) { /* block it + 1 has landed: its S goes to the tensor cores now */
            kc_cp_async_wait<0>();
            kc_fence_proxy_async();
            __syncthreads();
            issue_s(sn, stage ^ 1);
        }

        /* masks: keys past the range and, under causal masking, keys after the row */
        const bool ragged = kv0 + BC > kend;
        bool crosses;
        if (POS)
            crosses = p.kpos[min(kv0 + BC, kend) - 1] > p.qpos[min(q0 + w0, p.nq - 1)];
        else
            crosses = CAUSAL && kv0 + BC - 1 > q0 + w0 + diag;
        if (ragged || crosses) {
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++) {
                const unsigned long long qp = POS ? p.qpos[min(ROW(h2), p.nq - 1)] : 0ull;
#pragma unroll
                for (int j = 0; j < BC / 8; j++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int col = kv0 + 8 * j + 2 * t + e, r = ROW(h2);
                        const bool masked =
                            col >= kend || (POS ? p.kpos[col] > qp : CAUSAL && col > r + diag);
                        if (masked) s[4 * j + 2 * h2 + e] = -INFINITY;
                    }
            }
        }

        /* online softmax in log2 units of the scaled scores */
        float alpha[2];
        bool raised = false;
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < BC / 8; j++)
                mx = fmaxf(mx, fmaxf(s[4 * j + 2 * h2], s[4 * j + 2 * h2 + 1]));
            mx = kc_quad_max(mx);
            const float mnew = fmaxf(m[h2], mx * p.scale_log2);
            const float base = mnew == -INFINITY ? 0.f : mnew;
            alpha[h2] = kc_exp2(m[h2] - base);
            raised |= mnew != m[h2];
            float sum = 0.f;
#pragma unroll
            for (int j = 0; j < BC / 8; j++) {
                const float a0 = kc_exp2(fmaf(s[4 * j + 2 * h2], p.scale_log2, -base));
                const float a1 = kc_exp2(fmaf(s[4 * j + 2 * h2 + 1], p.scale_log2, -base));
                s[4 * j + 2 * h2] = a0;
                s[4 * j + 2 * h2 + 1] = a1;
                sum += a0 + a1;
            }
            l[h2] = l[h2] * alpha[h2] + sum;
            m[h2] = mnew;
        }
        if (__any_sync(0xffffffffu, raised)) {
#pragma unroll
            for (int j = 0; j < D / 8; j++) {
                o[4 * j] *= alpha[0];
                o[4 * j + 1] *= alpha[0];
                o[4 * j + 2] *= alpha[1];
                o[4 * j + 3] *= alpha[1];
            }
        }

        /* O += P V: P from the S registers, V transposed (MN-major) from shared memory */
        uint32_t a[BC / 16][4];
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            a[kk][0] = kc_type<T>::pack(s[8 * kk], s[8 * kk + 1]);
            a[kk][1] = kc_type<T>::pack(s[8 * kk + 2], s[8 * kk + 3]);
            a[kk][2] = kc_type<T>::pack(s[8 * kk + 4], s[8 * kk + 5]);
            a[kk][3] = kc_type<T>::pack(s[8 * kk + 6], s[8 * kk + 7]);
        }
        const uint32_t aV = kc_smem_addr(sV + stage * BC * D);
        kc_wg_fence();
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++)
            mma_ops<T, D>::rs(o, a[kk], kc_wg_desc(aV + (uint32_t)kk * 16 * 128, BC * 128, 1024));
        kc_wg_commit();
        kc_wg_wait0();   /* the next block's S and this block's P V */
        __syncthreads(); /* this stage is free for block it + 2 */
        if (it + 2 < ntiles) {
            const int nxt = kv0 + 2 * BC;
            load_panels<T, D, BC>(sK + stage * BC * D, K + (size_t)nxt * D, 0, p.nk - nxt);
            load_panels<T, D, BC>(sV + stage * BC * D, V + (size_t)nxt * D, 0, p.nk - nxt);
            kc_cp_async_commit();
        }
#pragma unroll
        for (int i = 0; i < 64; i++) s[i] = sn[i];
    }

    kc_cp_async_wait<0>(); /* without key blocks the Q load is still in flight */
#pragma unroll
    for (int h2 = 0; h2 < 2; h2++) l[h2] = kc_quad_sum(l[h2]);

    if (PARTIAL) {
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            if (ROW(h2) >= p.nq) continue;
            const size_t ri = (size_t)bh * p.nq + ROW(h2);
            if (t == 0) {
                p.m[ri] = m[h2] == -INFINITY ? -INFINITY : m[h2] * KC_LN2;
                p.l[ri] = l[h2];
            }
#pragma unroll
            for (int j = 0; j < D / 8; j++)
                *reinterpret_cast<float2 *>(p.oacc + ri * D + 8 * j + 2 * t) =
                    make_float2(o[4 * j + 2 * h2], o[4 * j + 2 * h2 + 1]);
        }
        return;
    }
    T *O = static_cast<T *>(p.o) + (size_t)bh * p.nq * D;
#pragma unroll
    for (int h2 = 0; h2 < 2; h2++) {
        const int r = ROW(h2);
        if (r >= p.nq) continue;
        const float inv = l[h2] > 0.f ? 1.f / l[h2] : 0.f;
#pragma unroll
        for (int j = 0; j < D / 8; j++)
            *reinterpret_cast<uint32_t *>(O + (size_t)r * D + 8 * j + 2 * t) =
                kc_type<T>::pack(o[4 * j + 2 * h2] * inv, o[4 * j + 2 * h2 + 1] * inv);
        if (t == 0)
            p.lse[(size_t)bh * p.nq + r] =
                l[h2] > 0.f ? (m[h2] + log2f(l[h2])) * KC_LN2 : -INFINITY;
    }
#undef ROW
}

template <typename T, int D, int MASK, bool PARTIAL>
cudaError_t launch(const kc_shape *s, const fa3_params &p, cudaStream_t st)
{
    auto kern = fa3_fwd_kernel<T, D, MASK, PARTIAL>;
    const int smem = (BR + 4 * BC) * D * (int)sizeof(T) + 1024;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((s->nq + BR - 1) / BR), (unsigned)(s->b * s->h));
    kern<<<grid, NTHREADS, smem, st>>>(p);
    return cudaGetLastError();
}

template <typename T, int D, bool PARTIAL>
cudaError_t by_mask(const kc_shape *s, const fa3_params &p, cudaStream_t st)
{
    switch (kc_mask_kind(s)) {
    case MASK_NONE:
        return launch<T, D, MASK_NONE, PARTIAL>(s, p, st);
    case MASK_DIAG:
        return launch<T, D, MASK_DIAG, PARTIAL>(s, p, st);
    default:
        return launch<T, D, MASK_POS, PARTIAL>(s, p, st);
    }
}

template <typename T, bool PARTIAL>
cudaError_t by_dim(const kc_shape *s, const fa3_params &p, cudaStream_t st)
{
    return s->d == 64 ? by_mask<T, 64, PARTIAL>(s, p, st) : by_mask<T, 128, PARTIAL>(s, p, st);
}

} // namespace

/* 1 where this GPU runs the kernel above: compute capability 9.0 and an sm_90a binary of it
 * (asked once per device), unless ATTNSIM_KC_NO_WGMMA is set (to compare with mma.sync). */
int kc_fa3_fwd_available(void)
{
    static int cached[64];
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 0;
    if (cached[dev] == 0) {
        int major = 0;
        cudaFuncAttributes fa;
        const char *off = getenv("ATTNSIM_KC_NO_WGMMA");
        int ok =
            !(off && *off && *off != '0') &&
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            major == 9 &&
            cudaFuncGetAttributes(&fa, fa3_fwd_kernel<__nv_bfloat16, 128, MASK_NONE, false>) ==
                cudaSuccess &&
            fa.binaryVersion >= 90;
        cudaGetLastError(); /* a missing kernel image is an answer, not an error */
        cached[dev] = ok ? 1 : -1;
    }
    return cached[dev] > 0;
}

cudaError_t kc_fa3_fwd(const kc_shape *s, const void *q, const void *k, const void *v,
                       size_t kv_begin, size_t kv_end, int accumulate, float *m, float *l, float *o,
                       void *o_out, float *lse, cudaStream_t st)
{
    fa3_params p = {};
    p.q = q, p.k = k, p.v = v, p.o = o_out, p.lse = lse, p.m = m, p.l = l, p.oacc = o;
    p.qpos = s->qpos, p.kpos = s->kpos;
    p.h = (int)s->h, p.h_kv = (int)s->h_kv, p.nq = (int)s->nq, p.nk = (int)s->nk;
    p.kv_begin = (int)kv_begin, p.kv_end = (int)kv_end, p.accumulate = accumulate;
    p.scale_log2 = (float)(1.0 / sqrt((double)s->d)) * KC_LOG2E;
    if (s->nq == 0 || s->b * s->h == 0) return cudaSuccess;
    const bool partial = o_out == NULL;
    if (s->dtype == 1)
        return partial ? by_dim<__half, true>(s, p, st) : by_dim<__half, false>(s, p, st);
    return partial ? by_dim<__nv_bfloat16, true>(s, p, st) : by_dim<__nv_bfloat16, false>(s, p, st);
}
