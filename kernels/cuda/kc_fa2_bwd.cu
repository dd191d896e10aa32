/* kc_fa2_bwd.cu - FlashAttention-2 backward on tensor cores (mma.sync, sm_80+; kc_attn.h).
 *
 * Pre-pass: D = rowsum(dO * O) (f32) and a zeroed f32 dQ accumulator. Main kernel: one CTA of
 * 8 warps per (128-key block, batch x K/V head), which walks every query block (64 rows) of
 * every query head sharing the K/V head (grouped-query attention needs no atomics on dK, dV),
 * with Q, dO, LSE and D double-buffered through shared memory (cp.async). Per query block:
 *   S = Q K^T, dP = dO V^T             (2 x 4 warps of 32 queries x 32 keys)
 *   P = exp(scale S - LSE), dS = P (dP - D), both to shared memory
 *   dV += P^T dO, dK += dS^T Q         (4 x 2 warps of 32 keys x d/2 columns, in registers)
 *   dQ += dS K                         (2 x 4 warps of 32 queries x d/4 columns; f32 atomics)
 * The warp tiles are square enough that each fragment read from shared memory feeds two to
 * four products. Post-pass: dQ = scale x accumulator in the storage type. Causal CTAs start at
 * the first query block that sees their keys and mask only blocks crossing the diagonal (with
 * token positions: the first query at or after the CTA's first key, found by bisection, and the
 * warp tiles whose last key lies after their first query).
 *
 * Tile mode (kc_attn_bwd_tile, one tile of a distributed attention): D is given, dQ is added
 * (times scale) straight into the caller's f32 accumulator, and each CTA adds its dK, dV rows
 * into the caller's f32 accumulators with a plain read-add-write (it owns those rows: one CTA per
 * key block and K/V head, walking the whole query-head group).
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
    void *dk, *dv; /* storage type; f32 accumulators in tile mode */
    const unsigned long long *qpos, *kpos;
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

template <typename T, int D, int MASK, bool TILE>
__global__ void __launch_bounds__(NTHREADS, 1) fa2_bwd_kernel(bwd_params p)
{
    constexpr bool CAUSAL = MASK != MASK_NONE, POS = MASK == MASK_POS;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T *sK = reinterpret_cast<T *>(smem_raw);
    T *sV = sK + BC * D;
    T *sQ = sV + BC * D;      /* two stages */
    T *sdO = sQ + 2 * BR * D; /* two stages */
    T *sP = sdO + 2 * BR * D; /* [BR][BC]: P, rows = queries, swizzled with rows of BC */
    T *sdS = sP + BR * BC;    /* [BR][BC]: dS */
    float *sL = reinterpret_cast<float *>(sdS + BR * BC); /* two stages of BR */
    float *sD = sL + 2 * BR;

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int kv0 = blockIdx.x * BC;
    const int bk = blockIdx.y, bi = bk / p.h_kv, hk = bk % p.h_kv;
    const int group = p.h / p.h_kv;
    const int diag = p.nk - p.nq;
    const T *K = static_cast<const T *>(p.k) + (size_t)bk * p.nk * D;
    const T *V = static_cast<const T *>(p.v) + (size_t)bk * p.nk * D;

    /* the query blocks that see any of these keys (kv0 < nk) */
    int qb0, per_head;
    kc_block_qrange<CAUSAL, POS>(p.qpos, p.kpos, p.nq, diag, kv0, BR, &qb0, &per_head);
    const int total = group * per_head;

    kc_load_tile<T, D, BC, NTHREADS>(sK, K, kv0, p.nk);
    kc_load_tile<T, D, BC, NTHREADS>(sV, V, kv0, p.nk);
    if (total > 0) load_q_stage<T, D>(p, sQ, sdO, sL, sD, hk * group, bi, qb0 * BR);
    kc_cp_async_commit();

    /* warp layouts (8 warps): S and dP as 2 x 4 warps of 32 queries x 32 keys; dK and dV as
     * 4 x 2 warps of 32 keys x D/2 columns; dQ as 2 x 4 warps of 32 queries x D/4 columns */
    const int wq = warp >> 2, wk = warp & 3;       /* S, dP, dQ: query half, key/column quarter */
    const int wkk = warp >> 1, wd = warp & 1;      /* dK, dV: key quarter, column half */
    constexpr int NB = D / 2 / 8, NCQ = D / 4 / 8; /* n-tiles of dK/dV and of dQ per warp */
    float dk[2][NB][4], dv[2][NB][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int i = 0; i < NB; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) dk[mt][i][e] = dv[mt][i][e] = 0.f;

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

        /* S = Q K^T and dP = dO V^T: this warp's 32 queries x 32 keys */
        {
            float sc[2][4][4], dp[2][4][4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) sc[mt][nt][e] = dp[mt][nt][e] = 0.f;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                uint32_t aq[2][4], ao[2][4], bk_[2][4], bv[2][4];
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    kc_frag_a<T, D>(aq[mt], cQ, wq * 32 + mt * 16, kk * 16, lane);
                    kc_frag_a<T, D>(ao[mt], cdO, wq * 32 + mt * 16, kk * 16, lane);
                }
#pragma unroll
                for (int nn = 0; nn < 2; nn++) {
                    kc_frag_b_nk<T, D>(bk_[nn], sK, wk * 32 + nn * 16, kk * 16, lane);
                    kc_frag_b_nk<T, D>(bv[nn], sV, wk * 32 + nn * 16, kk * 16, lane);
                }
#pragma unroll
                for (int mt = 0; mt < 2; mt++)
#pragma unroll
                    for (int nn = 0; nn < 2; nn++) {
                        kc_mma<T>(sc[mt][2 * nn], aq[mt], bk_[nn][0], bk_[nn][1]);
                        kc_mma<T>(sc[mt][2 * nn + 1], aq[mt], bk_[nn][2], bk_[nn][3]);
                        kc_mma<T>(dp[mt][2 * nn], ao[mt], bv[nn][0], bv[nn][1]);
                        kc_mma<T>(dp[mt][2 * nn + 1], ao[mt], bv[nn][2], bv[nn][3]);
                    }
            }
            /* P = exp(scale S - LSE), dS = P (dP - D); masked keys give 0; to shared memory */
            const bool ragged = kv0 + BC > p.nk;
            bool crosses; /* the warp tile's last key lies after its first query */
            if (POS)
                crosses =
                    p.kpos[min(kv0 + wk * 32 + 31, p.nk - 1)] > p.qpos[min(q0 + wq * 32, p.nq - 1)];
            else
                crosses = CAUSAL && kv0 + wk * 32 + 31 > q0 + wq * 32 + diag;
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int h2 = 0; h2 < 2; h2++) {
                    const int rl = wq * 32 + mt * 16 + g + 8 * h2; /* query, local */
                    const float lse2 = cL[rl], dsum = cD[rl];
                    /* with positions, the row's visible keys end at vend within the warp's 32
                     * keys (rows past nq, P = 0 anyway, take the last row's position) */
                    int vend = 0;
                    if (POS && crosses) {
                        const int lo = kv0 + wk * 32;
                        vend = kc_upper_bound(p.kpos, lo, max(lo, min(lo + 32, p.nk)),
                                              p.qpos[min(q0 + rl, p.nq - 1)]);
                    }
#pragma unroll
                    for (int nt = 0; nt < 4; nt++) {
                        float pv[2], ds[2];
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            const int cl = wk * 32 + nt * 8 + 2 * t + e; /* key, local */
                            float x = kc_exp2(fmaf(sc[mt][nt][2 * h2 + e], p.scale_log2, -lse2));
                            if (POS) {
                                if ((ragged && kv0 + cl >= p.nk) || (crosses && kv0 + cl >= vend))
                                    x = 0.f;
                            } else if ((ragged && kv0 + cl >= p.nk) ||
                                       (crosses && kv0 + cl > q0 + rl + diag)) {
                                x = 0.f;
                            }
                            pv[e] = x;
                            ds[e] = x * (dp[mt][nt][2 * h2 + e] - dsum);
                        }
                        const int off = kc_swz<BC>(rl, wk * 32 + nt * 8) + 2 * t;
                        *reinterpret_cast<uint32_t *>(sP + off) = kc_type<T>::pack(pv[0], pv[1]);
                        *reinterpret_cast<uint32_t *>(sdS + off) = kc_type<T>::pack(ds[0], ds[1]);
                    }
                }
        }
        __syncthreads(); /* P and dS complete */

        /* dV += P^T dO and dK += dS^T Q: this warp's 32 keys x D/2 columns */
#pragma unroll
        for (int kk = 0; kk < BR / 16; kk++) {
            uint32_t ap[2][4], as[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                kc_frag_a_trans<T, BC>(ap[mt], sP, wkk * 32 + mt * 16, kk * 16, lane);
                kc_frag_a_trans<T, BC>(as[mt], sdS, wkk * 32 + mt * 16, kk * 16, lane);
            }
#pragma unroll
            for (int nn = 0; nn < NB / 2; nn++) {
                uint32_t b[4];
                const int n0 = wd * (D / 2) + nn * 16;
                kc_frag_b_kn<T, D>(b, cdO, kk * 16, n0, lane);
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    kc_mma<T>(dv[mt][2 * nn], ap[mt], b[0], b[1]);
                    kc_mma<T>(dv[mt][2 * nn + 1], ap[mt], b[2], b[3]);
                }
                kc_frag_b_kn<T, D>(b, cQ, kk * 16, n0, lane);
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    kc_mma<T>(dk[mt][2 * nn], as[mt], b[0], b[1]);
                    kc_mma<T>(dk[mt][2 * nn + 1], as[mt], b[2], b[3]);
                }
            }
        }

        /* dQ += dS K: this warp's 32 queries x D/4 columns, added to the f32 accumulator in
         * HBM (vector atomics where the GPU has them) */
        {
            float dq[2][NCQ][4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int i = 0; i < NCQ; i++)
                    dq[mt][i][0] = dq[mt][i][1] = dq[mt][i][2] = dq[mt][i][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < BC / 16; kk++) {
                uint32_t a[2][4];
#pragma unroll
                for (int mt = 0; mt < 2; mt++)
                    kc_frag_a<T, BC>(a[mt], sdS, wq * 32 + mt * 16, kk * 16, lane);
#pragma unroll
                for (int nn = 0; nn < (NCQ + 1) / 2; nn++) {
                    uint32_t b[4];
                    kc_frag_b_kn<T, D>(b, sK, kk * 16, wk * (D / 4) + nn * 16, lane);
#pragma unroll
                    for (int mt = 0; mt < 2; mt++) {
                        kc_mma<T>(dq[mt][2 * nn], a[mt], b[0], b[1]);
                        if (2 * nn + 1 < NCQ) kc_mma<T>(dq[mt][2 * nn + 1], a[mt], b[2], b[3]);
                    }
                }
            }
            float *dQ = p.dq_acc + ((size_t)bi * p.h + hq) * p.nq * D;
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int h2 = 0; h2 < 2; h2++) {
                    const int r = q0 + wq * 32 + mt * 16 + g + 8 * h2;
                    if (r >= p.nq) continue;
#pragma unroll
                    for (int nt = 0; nt < NCQ; nt++) {
                        float *dst = dQ + (size_t)r * D + wk * (D / 4) + nt * 8 + 2 * t;
                        /* tile mode adds into the caller's accumulator: scaled here */
                        const float x0 = TILE ? dq[mt][nt][2 * h2] * p.scale : dq[mt][nt][2 * h2];
                        const float x1 =
                            TILE ? dq[mt][nt][2 * h2 + 1] * p.scale : dq[mt][nt][2 * h2 + 1];
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
                        atomicAdd(reinterpret_cast<float2 *>(dst), make_float2(x0, x1));
#else
                        atomicAdd(dst, x0);
                        atomicAdd(dst + 1, x1);
#endif
                    }
                }
        }
        __syncthreads(); /* stage, P and dS free */
    }
    kc_cp_async_wait<0>();

    /* dK = scale dS^T Q and dV = P^T dO: this warp's 32 keys x D/2 columns, added to the f32
     * accumulators (TILE: rows owned) or stored */
    if (TILE && total == 0) return; /* no query sees these keys: nothing to add */
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            const int r = kv0 + wkk * 32 + mt * 16 + g + 8 * h2;
            if (r >= p.nk) continue;
#pragma unroll
            for (int nt = 0; nt < NB; nt++)
                kc_put_dkdv<T, TILE>(p.dk, p.dv,
                                     ((size_t)bk * p.nk + r) * D + wd * (D / 2) + nt * 8 + 2 * t,
                                     dk[mt][nt][2 * h2] * p.scale, dk[mt][nt][2 * h2 + 1] * p.scale,
                                     dv[mt][nt][2 * h2], dv[mt][nt][2 * h2 + 1]);
        }
}

template <typename T, int D, int MASK, bool TILE>
cudaError_t launch(const kc_shape *s, const bwd_params &p, cudaStream_t st)
{
    auto kern = fa2_bwd_kernel<T, D, MASK, TILE>;
    const int smem = (2 * BC * D + 4 * BR * D + 2 * BC * BR) * (int)sizeof(T) + 4 * BR * 4;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((s->nk + BC - 1) / BC), (unsigned)(s->b * s->h_kv));
    kern<<<grid, NTHREADS, smem, st>>>(p);
    return cudaGetLastError();
}

cudaError_t dispatch(const kc_shape *s, bool tile, const bwd_params &p, cudaStream_t st)
{
    return kc_dispatch_tc(s, tile, KC_LAUNCH_TC(launch, s, p, st));
}

bwd_params make_params(const kc_shape *s, const void *q, const void *k, const void *v,
                       const void *d_o, const float *lse, const float *dsum, float *dq_acc,
                       void *dk, void *dv)
{
    bwd_params p = {};
    p.q = q, p.k = k, p.v = v, p.d_o = d_o, p.lse = lse, p.dsum = dsum, p.dq_acc = dq_acc;
    p.dk = dk, p.dv = dv, p.qpos = s->qpos, p.kpos = s->kpos;
    p.h = (int)s->h, p.h_kv = (int)s->h_kv, p.nq = (int)s->nq, p.nk = (int)s->nk;
    p.scale = (float)(1.0 / sqrt((double)s->d));
    p.scale_log2 = p.scale * KC_LOG2E;
    return p;
}

} // namespace

cudaError_t kc_fa2_bwd_tc(const kc_shape *s, int tile, const void *q, const void *k, const void *v,
                          const void *d_o, const float *lse, const float *dsum, float *dq_acc,
                          void *dk, void *dv, cudaStream_t st)
{
    return dispatch(s, tile != 0, make_params(s, q, k, v, d_o, lse, dsum, dq_acc, dk, dv), st);
}

void kc_fa2_bwd_tc_blocks(size_t *br, size_t *bc)
{
    *br = BR;
    *bc = BC;
}
