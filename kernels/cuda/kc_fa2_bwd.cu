/* kc_fa2_bwd.cu - FlashAttention-2 backward on tensor cores (mma.sync, sm_80+; kc_attn.h).
 *
 * Pre-pass: D = rowsum(dO * O) (f32) and a zeroed f32 dQ accumulator. Main kernel: one CTA of
 * 8 warps per (128-key block, batch x K/V head); each warp owns 16 keys and keeps their dK and
 * dV accumulators in registers while the CTA walks every query block of every query head that
 * shares the K/V head (grouped-query attention needs no atomics on dK, dV). Per query block,
 * with Q, dO, LSE and D double-buffered through shared memory (cp.async):
 *   S^T = K Q^T, P^T = exp(scale S^T - LSE)    (recomputed, never stored)
 *   dV += P^T dO;  dP^T = V dO^T;  dS^T = P^T (dP^T - D);  dK += dS^T Q
 *   dQ += dS K     (dS^T through shared memory; f32 atomics into the accumulator)
 * Post-pass: dQ = scale x accumulator in the storage type. Causal CTAs start at the first
 * query block that sees their keys and mask only blocks crossing the diagonal.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "kc_attn.h"
#include "kc_common.cuh"
#include "kc_internal.h"

namespace
{

/* 8 warps of 16 keys: BC = 128 keys per CTA share every Q/dO tile loaded, and each query row
 * receives half as many dQ additions as with 64 keys */
constexpr int BR = 64, NWARPS = 8, BC = 16 * NWARPS, NTHREADS = 32 * NWARPS;

struct bwd_params {
    const void *q, *k, *v, *d_o;
    const float *lse, *dsum;
    float *dq_acc;
    void *dk, *dv;
    int h, h_kv, nq, nk;
    float scale, scale_log2;
};

template <typename T, int D>
__device__ __forceinline__ void load_q_stage(const bwd_params &p, T *sQ, T *sdO, float *sL,
                                             float *sD, int hq, int bi, int q0)
{
    const size_t bh = (size_t)bi * p.h + hq;
    kc_load_tile<T, D, BR, NTHREADS>(sQ, static_cast<const T *>(p.q) + bh * p.nq * D, q0, p.nq);
    kc_load_tile<T, D, BR, NTHREADS>(sdO, static_cast<const T *>(p.d_o) + bh * p.nq * D, q0, p.nq);
    for (int c = threadIdx.x; c < BR; c += NTHREADS) {
        const int i = q0 + c;
        float lse = i < p.nq ? p.lse[bh * p.nq + i] : INFINITY;
        /* rows past the end, and rows that saw no key (LSE = -inf), get P = 0 */
        sL[c] = lse == -INFINITY || lse == INFINITY ? INFINITY : lse * KC_LOG2E;
        sD[c] = i < p.nq ? p.dsum[bh * p.nq + i] : 0.f;
    }
}

template <typename T, int D, bool CAUSAL>
__global__ void __launch_bounds__(NTHREADS, 1) fa2_bwd_kernel(bwd_params p)
{
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T *sK = reinterpret_cast<T *>(smem_raw);
    T *sV = sK + BC * D;
    T *sQ = sV + BC * D;       /* two stages */
    T *sdO = sQ + 2 * BR * D;  /* two stages */
    T *sdS = sdO + 2 * BR * D; /* [BC][BR], swizzled with rows of BR elements */
    float *sL = reinterpret_cast<float *>(sdS + BC * BR); /* two stages of BR */
    float *sD = sL + 2 * BR;

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int kv0 = blockIdx.x * BC;
    const int bk = blockIdx.y, bi = bk / p.h_kv, hk = bk % p.h_kv;
    const int group = p.h / p.h_kv;
    const int diag = p.nk - p.nq;
    const T *K = static_cast<const T *>(p.k) + (size_t)bk * p.nk * D;
    const T *V = static_cast<const T *>(p.v) + (size_t)bk * p.nk * D;

    /* query blocks that see any of these keys: i >= kv0 - diag */
    int qb0 = 0;
    if (CAUSAL) qb0 = max(0, kv0 - diag) / BR;
    const int nqb = (p.nq + BR - 1) / BR;
    const int per_head = CAUSAL && kv0 - diag >= p.nq ? 0 : nqb - qb0;
    const int total = group * per_head;

    kc_load_tile<T, D, BC, NTHREADS>(sK, K, kv0, p.nk);
    kc_load_tile<T, D, BC, NTHREADS>(sV, V, kv0, p.nk);
    if (total > 0) load_q_stage<T, D>(p, sQ, sdO, sL, sD, hk * group, bi, qb0 * BR);
    kc_cp_async_commit();

    float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[i][e] = dv[i][e] = 0.f;
    int row[2]; /* this thread's keys */
    row[0] = kv0 + warp * 16 + g;
    row[1] = row[0] + 8;

    for (int it = 0; it < total; it++) {
        const int stage = it & 1;
        const int hq = hk * group + it / per_head, q0 = (qb0 + it % per_head) * BR;
        if (it + 1 < total) {
            const int n = it + 1;
            load_q_stage<T, D>(p, sQ + (stage ^ 1) * BR * D, sdO + (stage ^ 1) * BR * D,
                               sL + (stage ^ 1) * BR, sD + (stage ^ 1) * BR,
                               hk * group + n / per_head, bi, (qb0 + n % per_head) * BR);
            kc_cp_async_commit();
            kc_cp_async_wait<1>();
        } else {
            kc_cp_async_wait<0>();
        }
        __syncthreads();
        const T *cQ = sQ + stage * BR * D, *cdO = sdO + stage * BR * D;
        const float *cL = sL + stage * BR, *cD = sD + stage * BR;

        /* S^T and dP^T for this warp's 16 keys x BR queries */
        float st[BR / 8][4], dpt[BR / 8][4];
#pragma unroll
        for (int i = 0; i < BR / 8; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) st[i][e] = dpt[i][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t ak[4], av[4];
            kc_frag_a<T, D>(ak, sK, warp * 16, kk * 16, lane);
            kc_frag_a<T, D>(av, sV, warp * 16, kk * 16, lane);
#pragma unroll
            for (int nn = 0; nn < BR / 16; nn++) {
                uint32_t b[4];
                kc_frag_b_nk<T, D>(b, cQ, nn * 16, kk * 16, lane);
                kc_mma<T>(st[2 * nn], ak, b[0], b[1]);
                kc_mma<T>(st[2 * nn + 1], ak, b[2], b[3]);
                kc_frag_b_nk<T, D>(b, cdO, nn * 16, kk * 16, lane);
                kc_mma<T>(dpt[2 * nn], av, b[0], b[1]);
                kc_mma<T>(dpt[2 * nn + 1], av, b[2], b[3]);
            }
        }

        /* P^T and dS^T (in place: st becomes P^T, dpt becomes dS^T) */
        const bool ragged = kv0 + BC > p.nk;
        const bool crosses = CAUSAL && kv0 + warp * 16 + 15 > q0 + diag;
#pragma unroll
        for (int nn = 0; nn < BR / 8; nn++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int c = nn * 8 + 2 * t + (e & 1), r = row[e >> 1];
                float pv = kc_exp2(fmaf(st[nn][e], p.scale_log2, -cL[c]));
                if ((ragged && r >= p.nk) || (crosses && r > q0 + c + diag)) pv = 0.f;
                st[nn][e] = pv;
                dpt[nn][e] = pv * (dpt[nn][e] - cD[c]);
            }

            /* dV += P^T dO and dK += dS^T Q (A from the accumulators, B = dO, Q as [k][n]) */
#pragma unroll
        for (int kk = 0; kk < BR / 16; kk++) {
            uint32_t ap[4], as[4];
            ap[0] = kc_type<T>::pack(st[2 * kk][0], st[2 * kk][1]);
            ap[1] = kc_type<T>::pack(st[2 * kk][2], st[2 * kk][3]);
            ap[2] = kc_type<T>::pack(st[2 * kk + 1][0], st[2 * kk + 1][1]);
            ap[3] = kc_type<T>::pack(st[2 * kk + 1][2], st[2 * kk + 1][3]);
            as[0] = kc_type<T>::pack(dpt[2 * kk][0], dpt[2 * kk][1]);
            as[1] = kc_type<T>::pack(dpt[2 * kk][2], dpt[2 * kk][3]);
            as[2] = kc_type<T>::pack(dpt[2 * kk + 1][0], dpt[2 * kk + 1][1]);
            as[3] = kc_type<T>::pack(dpt[2 * kk + 1][2], dpt[2 * kk + 1][3]);
            /* dS^T to shared memory for dQ: rows = keys, columns = queries */
            const int r0 = warp * 16 + g;
            *reinterpret_cast<uint32_t *>(sdS + kc_swz<BR>(r0, kk * 16) + 2 * t) = as[0];
            *reinterpret_cast<uint32_t *>(sdS + kc_swz<BR>(r0 + 8, kk * 16) + 2 * t) = as[1];
            *reinterpret_cast<uint32_t *>(sdS + kc_swz<BR>(r0, kk * 16 + 8) + 2 * t) = as[2];
            *reinterpret_cast<uint32_t *>(sdS + kc_swz<BR>(r0 + 8, kk * 16 + 8) + 2 * t) = as[3];
#pragma unroll
            for (int nn = 0; nn < D / 16; nn++) {
                uint32_t b[4];
                kc_frag_b_kn<T, D>(b, cdO, kk * 16, nn * 16, lane);
                kc_mma<T>(dv[2 * nn], ap, b[0], b[1]);
                kc_mma<T>(dv[2 * nn + 1], ap, b[2], b[3]);
                kc_frag_b_kn<T, D>(b, cQ, kk * 16, nn * 16, lane);
                kc_mma<T>(dk[2 * nn], as, b[0], b[1]);
                kc_mma<T>(dk[2 * nn + 1], as, b[2], b[3]);
            }
        }
        __syncthreads(); /* dS^T complete */

        /* dQ += dS K: warp w takes 16 queries (w % 4) and half the columns (w / 4), added to
         * the f32 accumulator in HBM (vector atomics where the GPU has them) */
        {
            constexpr int CW = D / 2;
            const int qt = (warp & 3) * 16, c0 = (warp >> 2) * CW;
            float dq[CW / 8][4];
#pragma unroll
            for (int i = 0; i < CW / 8; i++) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < BC / 16; kk++) {
                uint32_t a[4];
                kc_frag_a_trans<T, BR>(a, sdS, qt, kk * 16, lane);
#pragma unroll
                for (int nn = 0; nn < CW / 16; nn++) {
                    uint32_t b[4];
                    kc_frag_b_kn<T, D>(b, sK, kk * 16, c0 + nn * 16, lane);
                    kc_mma<T>(dq[2 * nn], a, b[0], b[1]);
                    kc_mma<T>(dq[2 * nn + 1], a, b[2], b[3]);
                }
            }
            float *dQ = p.dq_acc + ((size_t)bi * p.h + hq) * p.nq * D;
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++) {
                const int r = q0 + qt + g + 8 * h2;
                if (r >= p.nq) continue;
#pragma unroll
                for (int nn = 0; nn < CW / 8; nn++) {
                    float *dst = dQ + (size_t)r * D + c0 + nn * 8 + 2 * t;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
                    atomicAdd(reinterpret_cast<float2 *>(dst),
                              make_float2(dq[nn][2 * h2], dq[nn][2 * h2 + 1]));
#else
                    atomicAdd(dst, dq[nn][2 * h2]);
                    atomicAdd(dst + 1, dq[nn][2 * h2 + 1]);
#endif
                }
            }
        }
        __syncthreads(); /* stage and dS^T free */
    }
    kc_cp_async_wait<0>();

    /* dK = scale dS^T Q, dV: this warp's 16 keys */
    T *dK = static_cast<T *>(p.dk) + (size_t)bk * p.nk * D;
    T *dV = static_cast<T *>(p.dv) + (size_t)bk * p.nk * D;
#pragma unroll
    for (int h2 = 0; h2 < 2; h2++) {
        const int r = row[h2];
        if (r >= p.nk) continue;
#pragma unroll
        for (int nn = 0; nn < D / 8; nn++) {
            const size_t off = (size_t)r * D + nn * 8 + 2 * t;
            *reinterpret_cast<uint32_t *>(dK + off) =
                kc_type<T>::pack(dk[nn][2 * h2] * p.scale, dk[nn][2 * h2 + 1] * p.scale);
            *reinterpret_cast<uint32_t *>(dV + off) =
                kc_type<T>::pack(dv[nn][2 * h2], dv[nn][2 * h2 + 1]);
        }
    }
}

template <typename T, int D, bool CAUSAL>
cudaError_t launch(const kc_shape *s, const bwd_params &p, cudaStream_t st)
{
    auto kern = fa2_bwd_kernel<T, D, CAUSAL>;
    const int smem = (2 * BC * D + 4 * BR * D + BC * BR) * (int)sizeof(T) + 4 * BR * 4;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((s->nk + BC - 1) / BC), (unsigned)(s->b * s->h_kv));
    kern<<<grid, NTHREADS, smem, st>>>(p);
    return cudaGetLastError();
}

template <typename T> cudaError_t dispatch(const kc_shape *s, const bwd_params &p, cudaStream_t st)
{
    if (s->d == 64)
        return s->causal ? launch<T, 64, true>(s, p, st) : launch<T, 64, false>(s, p, st);
    return s->causal ? launch<T, 128, true>(s, p, st) : launch<T, 128, false>(s, p, st);
}

} // namespace

extern "C" size_t kc_fa2_bwd_workspace_bytes(const kc_shape *s)
{
    const size_t rows = s->b * s->h * s->nq;
    if (kc_fa2_path(s) == KC_PATH_GENERIC) /* dsum, dk_acc, dv_acc */
        return (rows + 2 * s->b * s->h_kv * s->nk * s->d) * sizeof(float);
    return (rows * s->d + rows) * sizeof(float); /* dq_acc, dsum */
}

extern "C" int kc_fa2_bwd(const kc_shape *s, const void *q, const void *k, const void *v,
                          const void *o, const void *d_o, const float *lse, void *dq, void *dk,
                          void *dv, void *workspace, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    kc_path path = kc_fa2_path(s);
    if (path == KC_PATH_UNSUPPORTED) return (int)cudaErrorInvalidValue;
    const size_t rows = s->b * s->h * s->nq;
    float *ws = static_cast<float *>(workspace);
    if (path == KC_PATH_GENERIC) {
        const size_t nkv = s->b * s->h_kv * s->nk * s->d;
        return (int)kc_generic_bwd(s, q, k, v, o, d_o, lse, dq, dk, dv, ws, ws + rows,
                                   ws + rows + nkv, st);
    }
    float *dq_acc = ws, *dsum = ws + rows * s->d;
    cudaError_t e;
    if ((e = cudaMemsetAsync(dq_acc, 0, rows * s->d * sizeof(float), st)) != cudaSuccess)
        return (int)e;
    if ((e = kc_dsum(s, o, d_o, dsum, st)) != cudaSuccess) return (int)e;
    if (s->nk > 0 && s->b * s->h_kv > 0) {
        bwd_params p = {};
        p.q = q, p.k = k, p.v = v, p.d_o = d_o, p.lse = lse, p.dsum = dsum, p.dq_acc = dq_acc;
        p.dk = dk, p.dv = dv;
        p.h = (int)s->h, p.h_kv = (int)s->h_kv, p.nq = (int)s->nq, p.nk = (int)s->nk;
        p.scale = (float)(1.0 / sqrt((double)s->d));
        p.scale_log2 = p.scale * KC_LOG2E;
        e = s->dtype == 1 ? dispatch<__half>(s, p, st) : dispatch<__nv_bfloat16>(s, p, st);
        if (e != cudaSuccess) return (int)e;
    }
    return (int)kc_convert_scaled(s->dtype, dq_acc, dq, rows * s->d,
                                  (float)(1.0 / sqrt((double)s->d)), st);
}

extern "C" void kc_fa2_bwd_blocks(size_t d, size_t *br, size_t *bc)
{
    (void)d;
    *br = BR;
    *bc = BC;
}
