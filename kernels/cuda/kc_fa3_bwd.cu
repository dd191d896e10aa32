/* kc_fa3_bwd.cu - FlashAttention backward on Hopper warpgroup MMA (wgmma, sm_90a): the same
 * contract as the mma.sync backward of kc_fa2_bwd.cu (whole backward with the f32 dQ
 * accumulator and D = rowsum(dO O) prepared by the caller, or the tile backward adding into f32
 * accumulators), used in its place where kc_fa3_fwd_usable says the GPU and binary have sm_90a.
 *
 * One CTA of two warpgroups (256 threads) per 128 keys of one K/V head; warpgroup w owns keys
 * 64 w .. 64 w + 63 and keeps their dK and dV (64 x d each, f32) in registers while the CTA
 * walks every query block (BR = 64 queries at d = 128, 128 at d = 64) of every query head
 * sharing the K/V head. K and V arrive once by TMA; Q and dO of each query block come by TMA
 * into three stages (one mbarrier each), issued by thread 0 two blocks ahead, and its LSE and D
 * by cp.async from every thread, waited for a block ahead of their use. Per query
 * block, in each warpgroup (transposed products: keys are the M side, so the accumulators of
 * S^T and dP^T are the register A operand of the next products):
 *   S^T = K_w Q^T, dP^T = V_w dO^T   m64nBRk16, all operands from shared memory
 *   P^T = exp2(S^T scale log2e - LSE log2e), dS^T = P^T (dP^T - D), masks on the way
 *   dV_w += P^T dO, dK_w += dS^T Q   m64nDk16, A from registers, B (Q, dO) MN-major
 *   dS^T to shared memory (double-buffered), one CTA barrier, then
 *   dQ = dS K                        m64n64k16 with A (dS) and B (K) MN-major: at d = 128 each
 *                                    warpgroup takes 64 of the columns, at d = 64 64 of the
 *                                    queries; written to a swizzled f32 tile in shared memory
 *                                    that thread 0 adds into the f32 accumulator with TMA
 *                                    reduce-adds (rows past nq are clipped by the tensor map).
 * The barrier also frees the stage two blocks back (every thread has passed its last wait), so
 * the copies need no empty barriers. (dQ by float2 atomics from registers instead: 0.83-0.87x
 * of this at d = 128 on one H100, bench.py --pass bwd, each run against its own peers.)
 */
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>
#include <math.h>
#include <string.h>

#include "kc_attn.h"
#include "kc_common.cuh"
#include "kc_internal.h"
#include "kc_wgmma.cuh"

namespace
{

constexpr int NWG = 2, NTHREADS = 128 * NWG, BC = 64 * NWG, STAGES = 3;

template <int D> struct bwd_cfg {
    static constexpr int BR = D == 64 ? 128 : 64; /* queries per block */
};

struct fa3b_params {
    CUtensorMap tq, tdo, tk, tv, tdq; /* tdq: the f32 dQ accumulator, boxes of 32 columns */
    const float *lse, *dsum;
    float *dq_acc;
    void *dk, *dv; /* storage type; f32 accumulators in tile mode */
    const unsigned long long *qpos, *kpos;
    int h, h_kv, nq, nk;
    float scale, scale_log2;
};

/* Shared memory: K, V, the Q and dO stages, two dS^T buffers (all panelled, 128B swizzle, so
 * from a 1024-byte boundary), the dQ tile (f32, panels of 32 columns, 128B swizzle), the LSE
 * and D of two blocks (a block's are dead once the barrier after its use is passed, when the
 * copies of block + 2 start), then 1024 bytes of slack for the alignment that also hold the
 * mbarriers: behind the data where the gap in front is at most 992 bytes, else in that gap.
 * At d = 64 this is exactly the 227 KiB an H100 CTA may have. */
constexpr int LD_STAGES = 2;
template <typename T, int D> struct bwd_smem {
    static constexpr int BR = bwd_cfg<D>::BR;
    static constexpr int KV = BC * D, QT = BR * D, DS = BC * BR; /* elements */
    static constexpr int DQ = BR * D;                            /* floats */
    static constexpr size_t DATA = (size_t)(2 * KV + 2 * STAGES * QT + 2 * DS) * sizeof(T) +
                                   (size_t)(DQ + 2 * LD_STAGES * BR) * sizeof(float);
    static constexpr size_t BARS = (1 + STAGES) * 8, BYTES = DATA + 1024;
    static_assert(BARS <= 32, "the mbarriers fit the alignment slack");
};

/* S^T and dP^T: m64nBR, both operands K-major. */
template <typename T, int BR> struct sdp_mma;
template <typename T> struct sdp_mma<T, 64> {
    static __device__ __forceinline__ void run(float (&d)[32], uint64_t a, uint64_t b, int sc)
    {
        kc_wgmma<T>::template ss_n64<0>(d, a, b, sc);
    }
};
template <typename T> struct sdp_mma<T, 128> {
    static __device__ __forceinline__ void run(float (&d)[64], uint64_t a, uint64_t b, int sc)
    {
        kc_wgmma<T>::ss_n128(d, a, b, sc);
    }
};
template <typename T, int D, int MASK, bool TILE>
__global__ void __launch_bounds__(NTHREADS, 1) fa3_bwd_kernel(const __grid_constant__ fa3b_params p)
{
    constexpr bool CAUSAL = MASK != MASK_NONE, POS = MASK == MASK_POS;
    using SM = bwd_smem<T, D>;
    constexpr int BR = SM::BR, PANELS = D / 64;
    constexpr int NS = BR / 2; /* S^T accumulators per thread: 64 keys x BR queries / 128 */
    constexpr int ND = D / 2;  /* dK, dV accumulators per thread */
    constexpr unsigned Q_BYTES = 2 * BR * D * sizeof(T);
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sK =
        reinterpret_cast<T *>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
    T *sV = sK + SM::KV;
    T *sQ = sV + SM::KV;            /* STAGES */
    T *sdO = sQ + STAGES * SM::QT;  /* STAGES */
    T *sdS = sdO + STAGES * SM::QT; /* 2 buffers of [BC keys][BR queries] */
    float *sdQ = reinterpret_cast<float *>(sdS + 2 * SM::DS); /* [D / 32][BR][32] */
    float *sL = sdQ + SM::DQ;                                 /* LD_STAGES x BR */
    float *sDs = sL + LD_STAGES * BR;                         /* LD_STAGES x BR */
    unsigned char *tail = reinterpret_cast<unsigned char *>(sDs + LD_STAGES * BR);
    uint64_t *fullKV =
        reinterpret_cast<uint64_t *>(tail + SM::BARS <= smem_raw + SM::BYTES ? tail : smem_raw);
    uint64_t *fullQ = fullKV + 1;

    const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3, wg = threadIdx.x >> 7;
    const int g = lane >> 2, t = lane & 3;
    const bool leader = threadIdx.x == 0;
    const int kv0 = blockIdx.x * BC, bk = blockIdx.y, bi = bk / p.h_kv, hk = bk % p.h_kv;
    const int group = p.h / p.h_kv, diag = p.nk - p.nq;
    const int wkey = kv0 + 64 * wg;        /* the warpgroup's first key */
    const int krow = wkey + 16 * warp + g; /* this thread's keys: krow, krow + 8 */

    /* the query blocks that see any of these keys (kv0 < nk) */
    int qb0, per_head;
    kc_block_qrange<CAUSAL, POS>(p.qpos, p.kpos, p.nq, diag, kv0, BR, &qb0, &per_head);
    const int total = group * per_head;

    using RING = kc_ring<STAGES>;
    auto load_q = [&](int it) {
        const int st = RING::at(it).stage, hq = hk * group + it / per_head;
        const int q0 = (qb0 + it % per_head) * BR, bh = bi * p.h + hq;
        kc_mbar_expect_tx(fullQ + st, Q_BYTES);
#pragma unroll
        for (int pn = 0; pn < PANELS; pn++) {
            kc_tma_load_3d(sQ + st * SM::QT + pn * BR * 64, &p.tq, 64 * pn, q0, bh, fullQ + st);
            kc_tma_load_3d(sdO + st * SM::QT + pn * BR * 64, &p.tdo, 64 * pn, q0, bh, fullQ + st);
        }
    };
    /* LSE and D of query block `it`, by the threads (cp.async, 4 bytes: a row's offset need not
     * be 16-byte aligned, which a tensor map would require); zeros past nq */
    auto load_ld = [&](int it) {
        const int st = it % LD_STAGES, hq = hk * group + it / per_head;
        const int q0 = (qb0 + it % per_head) * BR, bh = bi * p.h + hq;
        const int i = threadIdx.x & 127, r = q0 + i;
        if (i < BR) {
            const float *src =
                (threadIdx.x < 128 ? p.lse : p.dsum) + (size_t)bh * p.nq + min(r, p.nq - 1);
            float *dst = (threadIdx.x < 128 ? sL : sDs) + st * BR + i;
            kc_cp_async4(kc_smem_addr(dst), src, r < p.nq ? 4 : 0);
        }
        kc_cp_async_commit();
    };
    if (leader) {
        kc_mbar_init(fullKV, 1);
        for (int i = 0; i < STAGES; i++) kc_mbar_init(fullQ + i, 1);
    }
    for (int it = 0; it < min(total, STAGES - 1); it++) load_ld(it);
    kc_cp_async_wait<0>();
    __syncthreads();
    if (leader && total > 0) {
        kc_mbar_expect_tx(fullKV, 2 * BC * D * sizeof(T));
#pragma unroll
        for (int pn = 0; pn < PANELS; pn++) {
            kc_tma_load_3d(sK + pn * BC * 64, &p.tk, 64 * pn, kv0, bk, fullKV);
            kc_tma_load_3d(sV + pn * BC * 64, &p.tv, 64 * pn, kv0, bk, fullKV);
        }
        for (int it = 0; it < min(total, STAGES - 1); it++) load_q(it);
    }

    float dk[ND], dv[ND];
#pragma unroll
    for (int i = 0; i < ND; i++) dk[i] = dv[i] = 0.f;
    const uint32_t aK = kc_smem_addr(sK), aV = kc_smem_addr(sV);
    if (total > 0) kc_mbar_wait(fullKV, 0);

    for (int it = 0; it < total; it++) {
        const RING rq = RING::at(it);
        const int hq = hk * group + it / per_head, q0 = (qb0 + it % per_head) * BR;
        kc_mbar_wait(fullQ + rq.stage, rq.phase);
        const uint32_t aQ = kc_smem_addr(sQ + rq.stage * SM::QT);
        const uint32_t aO = kc_smem_addr(sdO + rq.stage * SM::QT);

        /* S^T = K_w Q^T and dP^T = V_w dO^T (K-major A: the warpgroup's 64 rows), one commit
         * group each */
        float s[NS], dp[NS];
        auto product_t = [&](float(&acc)[NS], uint32_t a, uint32_t b) {
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                const uint32_t off = (uint32_t)(kk >> 2) * BC * 128 + 64 * wg * 128 + (kk & 3) * 32;
                const uint32_t offq = (uint32_t)(kk >> 2) * BR * 128 + (kk & 3) * 32;
                sdp_mma<T, BR>::run(acc, kc_wg_desc(a + off, 16, 1024),
                                    kc_wg_desc(b + offq, 16, 1024), kk > 0);
            }
            kc_wg_commit();
        };
        kc_wg_fence();
        product_t(s, aK, aQ);
        product_t(dp, aV, aO);

        /* masks: keys past nk, queries past nq, and causal ones */
        const bool ragged = wkey + 64 > p.nk || q0 + BR > p.nq;
        bool crosses = false;
        if (POS)
            crosses = p.kpos[min(wkey + 63, p.nk - 1)] > p.qpos[min(q0, p.nq - 1)];
        else if (CAUSAL)
            crosses = wkey + 63 > q0 + diag;
        const float *cL = sL + (it % LD_STAGES) * BR, *cD = sDs + (it % LD_STAGES) * BR;

        kc_wg_wait1(); /* S^T */
        kc_wg_fence_regs(s);
#pragma unroll
        for (int j = 0; j < BR / 8; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int qc = 8 * j + 2 * t + e; /* query, local */
                const float lse = cL[qc];
                /* rows that saw no key (LSE = -inf) get P = 0 */
                const float l2 = lse == -INFINITY ? INFINITY : lse * KC_LOG2E;
#pragma unroll
                for (int h2 = 0; h2 < 2; h2++)
                    s[4 * j + 2 * h2 + e] = kc_exp2(fmaf(s[4 * j + 2 * h2 + e], p.scale_log2, -l2));
            }
        if (ragged || crosses) {
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++) {
                const int kr = krow + 8 * h2;
                const unsigned long long kp = POS ? p.kpos[min(kr, p.nk - 1)] : 0ull;
#pragma unroll
                for (int j = 0; j < BR / 8; j++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int qg = q0 + 8 * j + 2 * t + e;
                        bool masked = kr >= p.nk || qg >= p.nq;
                        if constexpr (POS)
                            masked = masked || (crosses && kp > p.qpos[min(qg, p.nq - 1)]);
                        else if constexpr (CAUSAL)
                            masked = masked || kr > qg + diag;
                        if (masked) s[4 * j + 2 * h2 + e] = 0.f;
                    }
            }
        }
        kc_wg_wait0(); /* dP^T */
        kc_wg_fence_regs(dp);
#pragma unroll
        for (int j = 0; j < BR / 8; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const float dsum = cD[8 * j + 2 * t + e];
#pragma unroll
                for (int h2 = 0; h2 < 2; h2++)
                    dp[4 * j + 2 * h2 + e] =
                        s[4 * j + 2 * h2 + e] * (dp[4 * j + 2 * h2 + e] - dsum);
            }

        /* P^T and dS^T as register A fragments (k = queries); dS^T to shared memory */
        uint32_t pf[BR / 16][4], sf[BR / 16][4];
#pragma unroll
        for (int kk = 0; kk < BR / 16; kk++)
#pragma unroll
            for (int r = 0; r < 4; r++) {
                pf[kk][r] = kc_type<T>::pack(s[8 * kk + 2 * r], s[8 * kk + 2 * r + 1]);
                sf[kk][r] = kc_type<T>::pack(dp[8 * kk + 2 * r], dp[8 * kk + 2 * r + 1]);
            }
        T *dS = sdS + (it & 1) * SM::DS;
#pragma unroll
        for (int j = 0; j < BR / 8; j++)
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++)
                *reinterpret_cast<uint32_t *>(
                    dS + kc_wg_off<BC>(64 * wg + 16 * warp + g + 8 * h2, 8 * j + 2 * t)) =
                    sf[j >> 1][(j & 1) * 2 + h2];
        kc_fence_proxy_async();

        /* dV += P^T dO, dK += dS^T Q (B MN-major: 16 query rows per k step) */
        kc_wg_fence();
#pragma unroll
        for (int kk = 0; kk < BR / 16; kk++)
            kc_wgmma_rs<T, D>(dv, pf[kk], kc_wg_desc(aO + (uint32_t)kk * 16 * 128, BR * 128, 1024));
#pragma unroll
        for (int kk = 0; kk < BR / 16; kk++)
            kc_wgmma_rs<T, D>(dk, sf[kk], kc_wg_desc(aQ + (uint32_t)kk * 16 * 128, BR * 128, 1024));
        kc_wg_commit();

        kc_cp_async_wait<0>();           /* LSE and D of block it + 1 */
        if (leader) kc_bulk_wait_read(); /* block it - 1's dQ has left sdQ */
        __syncthreads();                 /* dS^T whole; every thread is past block it - 1 */
        if (it + STAGES - 1 < total) {
            if (leader) load_q(it + STAGES - 1);
            load_ld(it + STAGES - 1);
        }

        /* dQ = dS K: A = dS (queries x keys) read MN-major from the dS^T tile, B = K MN-major */
        float dq[32];
        const uint32_t aS = kc_smem_addr(dS);
        kc_wg_fence();
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            const uint32_t a0 = aS + (D == 64 ? wg * BC * 128 : 0) + (uint32_t)kk * 16 * 128;
            const uint32_t b0 = aK + (D == 128 ? wg * BC * 128 : 0) + (uint32_t)kk * 16 * 128;
            kc_wgmma<T>::template ss_n64<1>(dq, kc_wg_desc(a0, BC * 128, 1024),
                                            kc_wg_desc(b0, BC * 128, 1024), kk > 0);
        }
        kc_wg_commit();
        kc_wg_wait0();
        kc_wg_fence_regs(dq);
        kc_wg_fence_regs(dk);
        kc_wg_fence_regs(dv);

        const int qr0 = (D == 64 ? 64 * wg : 0) + 16 * warp + g, c0 = D == 128 ? 64 * wg : 0;
        { /* into the swizzled f32 tile, then one reduce-add per panel */
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++) {
                const int r = qr0 + 8 * h2;
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    const int c = c0 + 8 * j + 2 * t, ch = ((c & 31) >> 2) ^ (r & 7);
                    float x0 = dq[4 * j + 2 * h2], x1 = dq[4 * j + 2 * h2 + 1];
                    if (TILE) x0 *= p.scale, x1 *= p.scale; /* the caller's accumulator */
                    *reinterpret_cast<float2 *>(sdQ + (c >> 5) * BR * 32 + r * 32 + ch * 4 +
                                                (c & 3)) = make_float2(x0, x1);
                }
            }
            kc_fence_proxy_async();
            __syncthreads();
            if (leader) {
#pragma unroll
                for (int pn = 0; pn < D / 32; pn++)
                    kc_tma_reduce_add_3d(&p.tdq, 32 * pn, q0, bi * p.h + hq, sdQ + pn * BR * 32);
                kc_bulk_commit();
            }
        }
    }
    if (leader) {
        kc_bulk_wait(); /* the last dQ has landed before the CTA ends */
    }

    /* dK = scale dS^T Q and dV = P^T dO: this thread's rows krow, krow + 8, added to the f32
     * accumulators (TILE) or stored */
#pragma unroll
    for (int h2 = 0; h2 < 2; h2++) {
        const int r = krow + 8 * h2;
        if (r >= p.nk || (TILE && total == 0)) continue; /* TILE: no query sees these keys */
#pragma unroll
        for (int j = 0; j < D / 8; j++)
            kc_put_dkdv<T, TILE>(p.dk, p.dv, ((size_t)bk * p.nk + r) * D + 8 * j + 2 * t,
                                 dk[4 * j + 2 * h2] * p.scale, dk[4 * j + 2 * h2 + 1] * p.scale,
                                 dv[4 * j + 2 * h2], dv[4 * j + 2 * h2 + 1]);
    }
}

template <typename T, int D, int MASK, bool TILE>
cudaError_t launch(const kc_shape *s, const fa3b_params &p, cudaStream_t st)
{
    auto kern = fa3_bwd_kernel<T, D, MASK, TILE>;
    const int smem = (int)bwd_smem<T, D>::BYTES;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((s->nk + BC - 1) / BC), (unsigned)(s->b * s->h_kv));
    kern<<<grid, NTHREADS, smem, st>>>(p);
    return cudaGetLastError();
}

} // namespace

void kc_fa3_bwd_blocks(size_t d, size_t *br, size_t *bc)
{
    *br = d == 64 ? bwd_cfg<64>::BR : bwd_cfg<128>::BR;
    *bc = BC;
}

int kc_fa3_bwd_usable(const kc_shape *s, const void *q, const void *k, const void *v,
                      const void *d_o, const float *dq_acc)
{
    return kc_fa3_fwd_usable(s, q, k, v) && kc_tma_aligned(d_o) && kc_tma_aligned(dq_acc);
}

cudaError_t kc_fa3_bwd(const kc_shape *s, const void *q, const void *k, const void *v,
                       const void *d_o, const float *lse, const float *dsum, float *dq_acc,
                       void *dk, void *dv, int tile, cudaStream_t st)
{
    if (s->nk == 0 || s->b * s->h_kv == 0) return cudaSuccess;
    fa3b_params p;
    memset(&p, 0, sizeof p);
    p.dq_acc = dq_acc, p.dk = dk, p.dv = dv, p.qpos = s->qpos, p.kpos = s->kpos;
    p.h = (int)s->h, p.h_kv = (int)s->h_kv, p.nq = (int)s->nq, p.nk = (int)s->nk;
    p.scale = (float)(1.0 / sqrt((double)s->d));
    p.scale_log2 = p.scale * KC_LOG2E;
    const unsigned br = s->d == 64 ? bwd_cfg<64>::BR : bwd_cfg<128>::BR;
    p.lse = lse, p.dsum = dsum;
    cudaError_t e;
    if ((e = kc_tma_map_3d(&p.tq, s->dtype, q, s->d, s->nq, s->b * s->h, br)) != cudaSuccess ||
        (e = kc_tma_map_3d(&p.tdo, s->dtype, d_o, s->d, s->nq, s->b * s->h, br)) != cudaSuccess ||
        (e = kc_tma_map_3d(&p.tk, s->dtype, k, s->d, s->nk, s->b * s->h_kv, BC)) != cudaSuccess ||
        (e = kc_tma_map_3d(&p.tv, s->dtype, v, s->d, s->nk, s->b * s->h_kv, BC)) != cudaSuccess ||
        (e = kc_tma_map_3d(&p.tdq, 0, dq_acc, s->d, s->nq, s->b * s->h, br)) != cudaSuccess)
        return e;
    return kc_dispatch_tc(s, tile, KC_LAUNCH_TC(launch, s, p, st));
}
