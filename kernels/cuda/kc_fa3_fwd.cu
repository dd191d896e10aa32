/* kc_fa3_fwd.cu - FlashAttention forward on Hopper warpgroup MMA (wgmma, sm_90a): the same
 * contract as the mma.sync forward of kc_fa2_fwd.cu (final O and LSE, or the partial state
 * m, l, o with accumulation; no mask, bottom-right causal, or causal by token positions), used
 * in its place where the GPU and the binary have sm_90a (kc_fa3_fwd_available).
 *
 * Q and three stages each of 128-key K and V tiles sit in shared memory in the panelled 128-byte
 * swizzle wgmma reads (kc_wgmma.cuh), brought by TMA (3-D tensor maps [heads][rows][d], boxes of
 * 64 columns; rows past the end arrive as zeros) that one thread issues, each stage completing
 * on an mbarrier (full) and handed back through another (empty: every consumer warp arrives
 * once it is done reading; kc_ring keeps the stage and phase). No CTA-wide barrier in the loop.
 * Per key block j, each consumer warpgroup (64 query rows, fwd_rows):
 *   issue S_j = Q K_j^T        m64n128k16, both operands from shared memory
 *   issue O += P_{j-1} V_{j-1} m64nDk16, P from registers (the accumulator layout is the
 *                              register-A layout), V transposed (MN-major) from shared memory
 *   wait for S_j; masks and online softmax of S_j while P V still runs on the tensor cores;
 *   wait for P V; rescale O.
 * Two kernels run this loop (ATTNSIM_KC_FWD chooses; fwd_schedule_default says what a call
 * gets):
 * - fa3_fwd_kernel ("legacy"): one CTA of two warpgroups per 128 query rows; thread 0 of the
 *   first also issues the copies, K two blocks ahead, V one and a half.
 * - fa3_fwd_ws_kernel: warpgroup 0 produces (one thread issues every copy; setmaxnreg lowers the
 *   warpgroup to 24 or 32 registers a thread), 2 consumer warpgroups (240 registers) or, at
 *   d = 64 with wg3, 3 (160 registers, tiles of 192 rows). A CTA walks the tiles blockIdx.x,
 *   + gridDim.x, ...: "persistent" launches one CTA per SM, so the producer loads the next
 *   tile's K and Q while the consumers finish a tile. Causal tiles go longest first within
 *   groups of heads whose K and V fit in 32 MiB of L2 (l2=KiB). "pingpong": the consumers take
 *   turns to issue their products (named barriers), so one's softmax runs under another's
 *   GEMMs.
 * What each step gave, as ratios to cuDNN (SDPA) in the same process, one H100 80GB HBM3,
 * experiments/prefill-peers/schedules.sh (bf16, B N = 16k, N = 1k-16k; each trial times every
 * schedule and peer in turn; docs/performance.md has the table), one-tile kernel first:
 * - producer warpgroup + setmaxnreg, one CTA per tile (an earlier run that timed one schedule
 *   after another): without a mask 0.78-0.95 against 0.78-0.99, no gain by itself; causal
 *   tiles longest first over all heads lost up to a third at d = 128 (0.63-0.96 against
 *   0.80-1.00; persistent 0.63-0.86): 132 CTAs on 132 heads at once, whose K and V miss L2.
 *   With the head groups persistent causal d = 128 measured 0.83-0.98 in the later run.
 * - persistent: d = 128 without a mask 0.87-0.94 (one-tile 0.79-0.88), most at N = 1k-4k;
 *   d = 128 causal 0.83-0.98 against 0.83-0.99 (0.88 against 0.97 at N = 16k; not profiled:
 *   the first suspect is the static order balancing worse than the hardware's dispatch of
 *   one-tile CTAs; groups of 16 MiB measured worse, 0.76), so causal d = 128 stays one-tile;
 *   d = 64 0.89-0.94 (one-tile 0.77-0.87).
 * - ping-pong on top: within noise at d = 128 (0.83-0.99 against 0.83-0.98) and with two
 *   consumer warpgroups at d = 64.
 * - d = 64, three consumer warpgroups (192-row tiles) + persistent + ping-pong: 0.89-1.08,
 *   the best at d = 64 (the default); at N = 1k causal two warpgroups did better (0.94-0.97).
 * - a quarter or half of the d = 64 exponentials on the FMA pipe (a degree-3 polynomial and
 *   the exponent added as an integer) instead of the special-function unit: 0.82-0.93 and
 *   0.75-0.83 against 0.89-1.08 without: the extra instructions cost more than the MUFU time
 *   they free; not kept.
 */
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kc_attn.h"
#include "kc_common.cuh"
#include "kc_internal.h"
#include "kc_wgmma.cuh"

namespace
{

constexpr int BC = 128, STAGES = 3;

struct fa3_params {
    CUtensorMap tq, tk, tv; /* Q [b h][nq][d], K and V [b h_kv][nk][d]: boxes of 64 columns */
    void *o;
    float *lse;
    float *m, *l, *oacc; /* partial mode */
    const unsigned long long *qpos, *kpos;
    int h, h_kv, nq, nk, kv_begin, kv_end, accumulate;
    int nqb, nbh, ntile, hgroup, pingpong; /* the warp-specialized kernel's tiles, schedule */
    float scale_log2;
};

/* Shared memory: Q (BR rows), then the K stages, then the V stages (panelled, 128B swizzle;
 * 1024-byte aligned), then NBARS mbarriers. */
template <typename T, int D, int BR, int NBARS> struct fa3_smem {
    static constexpr int Q = BR * D, KV = BC * D; /* elements */
    static constexpr size_t BYTES =
        (size_t)(Q + 2 * STAGES * KV) * sizeof(T) + (size_t)NBARS * 8 + 1024;
};
template <typename T> __device__ __forceinline__ T *fa3_smem_base(unsigned char *raw)
{
    return reinterpret_cast<T *>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t(1023));
}

/* One warpgroup's 64 query rows of a tile of BR rows (Q panels BR x 64): per thread the rows
 * r0 = the warp's first row + lane / 4 and r0 + 8 (h2 = 0, 1), their running max m and sum l
 * (log2 units of the scaled scores), the O accumulators, the scores S of the current key block
 * and P of the block before as the register A operand of P V. */
template <typename T, int D, int MASK, bool PARTIAL, int BR> struct fwd_rows {
    static constexpr bool CAUSAL = MASK != MASK_NONE, POS = MASK == MASK_POS;
    float m[2], l[2], o[D / 2], s[64], alpha[2];
    uint32_t a[BC / 16][4];
    bool raised;

    /* empty rows, or the partial state the caller passes in (accumulate) */
    __device__ __forceinline__ void start(const fa3_params &p, int bh, int r0, int t)
    {
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) m[h2] = -INFINITY, l[h2] = 0.f;
#pragma unroll
        for (int i = 0; i < D / 2; i++) o[i] = 0.f;
#pragma unroll
        for (int i = 0; i < 64; i++) s[i] = 0.f;
        if (PARTIAL && p.accumulate) {
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++)
                if (r0 + 8 * h2 < p.nq)
                    kc_state_load_row<D>(p.m, p.l, p.oacc, (size_t)bh * p.nq + r0 + 8 * h2, t, h2,
                                         m[h2], l[h2], o);
        }
    }
    /* S = Q K^T of a key block, issued and committed (not waited for): K-major A (the
     * warpgroup's 64 Q rows at aq) and B (128 keys at ak) */
    __device__ __forceinline__ void issue_s(uint32_t aq, uint32_t ak)
    {
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            const uint32_t panel = (uint32_t)(kk >> 2), within = (uint32_t)(kk & 3) * 32;
            const uint64_t da = kc_wg_desc(aq + panel * BR * 128 + within, 16, 1024);
            const uint64_t db = kc_wg_desc(ak + panel * BC * 128 + within, 16, 1024);
            kc_wgmma<T>::ss_n128(s, da, db, kk > 0); /* 128 keys */
        }
        kc_wg_commit();
    }
    /* O += P V: P from registers (pack_p), V MN-major at av */
    __device__ __forceinline__ void issue_pv(uint32_t av)
    {
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++)
            kc_wgmma_rs<T, D>(o, a[kk], kc_wg_desc(av + (uint32_t)kk * 16 * 128, BC * 128, 1024));
        kc_wg_commit();
    }
    __device__ __forceinline__ void pack_p()
    {
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            a[kk][0] = kc_type<T>::pack(s[8 * kk], s[8 * kk + 1]);
            a[kk][1] = kc_type<T>::pack(s[8 * kk + 2], s[8 * kk + 3]);
            a[kk][2] = kc_type<T>::pack(s[8 * kk + 4], s[8 * kk + 5]);
            a[kk][3] = kc_type<T>::pack(s[8 * kk + 6], s[8 * kk + 7]);
        }
    }
    /* masks of the key block from kv0 (keys up to kend are visible at all; wr0 is the warp's
     * first row, r0 this thread's), then the online softmax: s becomes P, m and l move on,
     * alpha is the factor O must be rescaled by */
    __device__ __forceinline__ void softmax(const fa3_params &p, int kv0, int kend, int wr0, int r0,
                                            int t)
    {
        const int diag = p.nk - p.nq; /* key j visible to query i iff j <= i + diag */
        const bool ragged = kv0 + BC > kend;
        bool crosses;
        if (POS)
            crosses = p.kpos[min(kv0 + BC, kend) - 1] > p.qpos[min(wr0, p.nq - 1)];
        else
            crosses = CAUSAL && kv0 + BC - 1 > wr0 + diag;
        if (ragged || crosses) {
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++) {
                const int r = r0 + 8 * h2;
                if (POS) {
                    const unsigned long long qp = p.qpos[min(r, p.nq - 1)];
#pragma unroll
                    for (int jj = 0; jj < BC / 8; jj++)
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            const int col = kv0 + 8 * jj + 2 * t + e;
                            if (col >= kend || p.kpos[col] > qp) s[4 * jj + 2 * h2 + e] = -INFINITY;
                        }
                } else { /* the row's last visible key, relative to this thread's first column */
                    const int last = (CAUSAL ? min(kend - 1, r + diag) : kend - 1) - kv0 - 2 * t;
#pragma unroll
                    for (int jj = 0; jj < BC / 8; jj++)
#pragma unroll
                        for (int e = 0; e < 2; e++)
                            if (8 * jj + e > last) s[4 * jj + 2 * h2 + e] = -INFINITY;
                }
            }
        }
        raised = false;
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            float mx = -INFINITY;
#pragma unroll
            for (int jj = 0; jj < BC / 8; jj++)
                mx = fmaxf(mx, fmaxf(s[4 * jj + 2 * h2], s[4 * jj + 2 * h2 + 1]));
            mx = kc_quad_max(mx);
            const float mnew = fmaxf(m[h2], mx * p.scale_log2);
            const float base = mnew == -INFINITY ? 0.f : mnew;
            alpha[h2] = kc_exp2(m[h2] - base);
            raised |= mnew != m[h2];
            float sum = 0.f;
#pragma unroll
            for (int jj = 0; jj < BC / 8; jj++) {
                const float a0 = kc_exp2(fmaf(s[4 * jj + 2 * h2], p.scale_log2, -base));
                const float a1 = kc_exp2(fmaf(s[4 * jj + 2 * h2 + 1], p.scale_log2, -base));
                s[4 * jj + 2 * h2] = a0;
                s[4 * jj + 2 * h2 + 1] = a1;
                sum += a0 + a1;
            }
            l[h2] = l[h2] * alpha[h2] + sum;
            m[h2] = mnew;
        }
    }
    __device__ __forceinline__ void rescale_o()
    {
        if (__any_sync(0xffffffffu, raised)) {
#pragma unroll
            for (int jj = 0; jj < D / 8; jj++) {
                o[4 * jj] *= alpha[0];
                o[4 * jj + 1] *= alpha[0];
                o[4 * jj + 2] *= alpha[1];
                o[4 * jj + 3] *= alpha[1];
            }
        }
    }
    /* the rows' results: the partial state, or O = o / l in the storage type and the LSE */
    __device__ __forceinline__ void finish(const fa3_params &p, int bh, int r0, int t)
    {
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) l[h2] = kc_quad_sum(l[h2]);
        if (PARTIAL) {
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++)
                if (r0 + 8 * h2 < p.nq)
                    kc_state_store_row<D>(p.m, p.l, p.oacc, (size_t)bh * p.nq + r0 + 8 * h2, t, h2,
                                          m[h2], l[h2], o);
            return;
        }
        T *O = static_cast<T *>(p.o) + (size_t)bh * p.nq * D;
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            const int r = r0 + 8 * h2;
            if (r >= p.nq) continue;
            const float inv = l[h2] > 0.f ? 1.f / l[h2] : 0.f;
#pragma unroll
            for (int j = 0; j < D / 8; j++)
                *reinterpret_cast<uint32_t *>(O + (size_t)r * D + 8 * j + 2 * t) =
                    kc_type<T>::pack(o[4 * j + 2 * h2] * inv, o[4 * j + 2 * h2 + 1] * inv);
            if (t == 0) p.lse[(size_t)bh * p.nq + r] = kc_row_lse(m[h2], l[h2]);
        }
    }
};

/* The key blocks a tile of br query rows from q0 visits: the end of its visible keys. */
template <int MASK> __device__ __forceinline__ int fa3_kend(const fa3_params &p, int q0, int br)
{
    return kc_block_kend<MASK != MASK_NONE, MASK == MASK_POS>(p.qpos, p.kpos, p.nq, p.nk,
                                                              p.nk - p.nq, p.kv_end, q0, br);
}
__device__ __forceinline__ int fa3_nblocks(const fa3_params &p, int kend)
{
    return kend > p.kv_begin ? (kend - p.kv_begin + BC - 1) / BC : 0;
}

/* The one-tile-per-CTA kernel: two warpgroups of 64 rows, thread 0 issues the copies. */
constexpr int NWG = 2, NTHREADS = 128 * NWG, BR = 64 * NWG;

template <typename T, int D, int MASK, bool PARTIAL>
__global__ void __launch_bounds__(NTHREADS, 1) fa3_fwd_kernel(const __grid_constant__ fa3_params p)
{
    constexpr int PANELS = D / 64; /* 64-column panels */
    constexpr unsigned KV_BYTES = BC * D * sizeof(T), Q_BYTES = BR * D * sizeof(T);
    using SM = fa3_smem<T, D, BR, 1 + 4 * STAGES>;
    using RING = kc_ring<STAGES>;
    extern __shared__ unsigned char smem_raw[];
    T *sQ = fa3_smem_base<T>(smem_raw);
    T *sK = sQ + SM::Q; /* STAGES */
    T *sV = sK + STAGES * SM::KV;
    uint64_t *bars = reinterpret_cast<uint64_t *>(sV + STAGES * SM::KV);
    uint64_t *fullQ = bars, *fullK = bars + 1, *fullV = fullK + STAGES, *emptyK = fullV + STAGES,
             *emptyV = emptyK + STAGES;

    const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3, wg = threadIdx.x >> 7;
    const int g = lane >> 2, t = lane & 3;
    const bool leader = threadIdx.x == 0;      /* issues the copies */
    const int qb = gridDim.x - 1 - blockIdx.x; /* heaviest causal blocks first */
    const int bh = blockIdx.y, bi = bh / p.h, hi = bh % p.h, hk = hi / (p.h / p.h_kv);
    const int kvh = bi * p.h_kv + hk;
    const int q0 = qb * BR, wr0 = q0 + 64 * wg + 16 * warp; /* the warp's first row */

    const int kend = fa3_kend<MASK>(p, q0, BR);
    const int ntiles = fa3_nblocks(p, kend);

    /* the copies: block j of K or V into its stage, one box per 64-column panel */
    auto load_kv = [&](const CUtensorMap &map, T *base, uint64_t *full, int j) {
        const int st = RING::at(j).stage;
        kc_mbar_expect_tx(full + st, KV_BYTES);
#pragma unroll
        for (int pn = 0; pn < PANELS; pn++)
            kc_tma_load_3d(base + st * SM::KV + pn * BC * 64, &map, 64 * pn, p.kv_begin + j * BC,
                           kvh, full + st);
    };
    if (leader) {
        kc_mbar_init(fullQ, 1);
        for (int i = 0; i < STAGES; i++) {
            kc_mbar_init(fullK + i, 1);
            kc_mbar_init(fullV + i, 1);
            kc_mbar_init(emptyK + i, 4 * NWG); /* every consumer warp */
            kc_mbar_init(emptyV + i, 4 * NWG);
        }
    }
    __syncthreads();
    if (leader && ntiles > 0) {
        kc_mbar_expect_tx(fullQ, Q_BYTES);
#pragma unroll
        for (int pn = 0; pn < PANELS; pn++)
            kc_tma_load_3d(sQ + pn * BR * 64, &p.tq, 64 * pn, q0, bh, fullQ);
        for (int j = 0; j < min(ntiles, STAGES); j++) load_kv(p.tk, sK, fullK, j);
        for (int j = 0; j < min(ntiles, STAGES - 1); j++) load_kv(p.tv, sV, fullV, j);
    }

    fwd_rows<T, D, MASK, PARTIAL, BR> w;
    w.start(p, bh, wr0 + g, t);
    const uint32_t aQ = kc_smem_addr(sQ) + (uint32_t)(64 * wg * 128);
    auto aK = [&](int j) { return kc_smem_addr(sK + RING::at(j).stage * SM::KV); };
    auto aV = [&](int j) { return kc_smem_addr(sV + RING::at(j).stage * SM::KV); };
    auto kv0 = [&](int j) { return p.kv_begin + j * BC; };

    if (ntiles > 0) { /* block 0: S, softmax */
        kc_mbar_wait(fullQ, 0);
        kc_mbar_wait(fullK, 0);
        kc_wg_fence();
        w.issue_s(aQ, aK(0));
        kc_wg_wait0();
        kc_wg_fence_regs(w.s);
        if (lane == 0) kc_mbar_arrive(emptyK);
        w.softmax(p, kv0(0), kend, wr0, wr0 + g, t);
        w.rescale_o();
    }
    for (int j = 1; j < ntiles; j++) {
        const RING rk = RING::at(j), rv = RING::at(j - 1);
        w.pack_p(); /* P of block j - 1 */
        kc_mbar_wait(fullK + rk.stage, rk.phase);
        kc_mbar_wait(fullV + rv.stage, rv.phase);
        kc_wg_fence();
        w.issue_s(aQ, aK(j));
        w.issue_pv(aV(j - 1));
        if (leader) { /* K of block j + 2 (stage of block j - 1), V of block j + 1 */
            if (j + 2 < ntiles) {
                const RING r = RING::at(j + 2);
                kc_mbar_wait(emptyK + r.stage, r.phase ^ 1u);
                load_kv(p.tk, sK, fullK, j + 2);
            }
            if (j + 1 < ntiles) {
                const RING r = RING::at(j + 1);
                kc_mbar_wait(emptyV + r.stage, r.phase ^ 1u);
                load_kv(p.tv, sV, fullV, j + 1);
            }
        }
        kc_wg_wait1(); /* S of block j */
        kc_wg_fence_regs(w.s);
        if (lane == 0) kc_mbar_arrive(emptyK + rk.stage);
        w.softmax(p, kv0(j), kend, wr0, wr0 + g, t);
        kc_wg_wait0(); /* P V of block j - 1 */
        kc_wg_fence_regs(w.o);
        if (lane == 0) kc_mbar_arrive(emptyV + rv.stage);
        w.rescale_o();
    }
    if (ntiles > 0) { /* P V of the last block */
        const RING rv = RING::at(ntiles - 1);
        w.pack_p();
        kc_mbar_wait(fullV + rv.stage, rv.phase);
        kc_wg_fence();
        w.issue_pv(aV(ntiles - 1));
        kc_wg_wait0();
        kc_wg_fence_regs(w.o);
    }
    w.finish(p, bh, wr0 + g, t);
}

/* The warp-specialized kernel: warpgroup 0 produces (one thread issues every copy, the
 * warpgroup's registers lowered to the minimum), NC consumer warpgroups of 64 rows each (tiles
 * of 64 NC query rows) compute, with the registers the producer gave up. Each CTA walks tiles
 * blockIdx.x, + gridDim.x, ... of the tile order (causal: the query blocks of every head from the
 * last, the longest, down; otherwise head by head), so a grid of one CTA per SM is persistent:
 * the producer loads the next tile's keys and queries while the consumers finish a tile. The
 * stages run on continuously from tile to tile (kc_ring); Q has one buffer, handed back by the
 * consumers once the tile's last S has been computed. With p.pingpong the consumers take turns
 * to issue their products (named barriers 1..NC), so one's softmax runs under another's GEMMs. */
template <int NC> struct ws_cfg {
    static constexpr int THREADS = 128 * (NC + 1), BR = 64 * NC;
    static constexpr int PRODUCER_REGS = NC == 2 ? 24 : 32, CONSUMER_REGS = NC == 2 ? 240 : 160;
};

template <typename T, int D, int MASK, bool PARTIAL, int NC>
__global__ void __launch_bounds__(ws_cfg<NC>::THREADS, 1)
    fa3_fwd_ws_kernel(const __grid_constant__ fa3_params p)
{
    constexpr bool CAUSAL = MASK != MASK_NONE;
    constexpr int BRW = ws_cfg<NC>::BR, PANELS = D / 64;
    constexpr unsigned KV_BYTES = BC * D * sizeof(T), Q_BYTES = BRW * D * sizeof(T);
    using SM = fa3_smem<T, D, BRW, 2 + 4 * STAGES>;
    using RING = kc_ring<STAGES>;
    extern __shared__ unsigned char smem_raw[];
    T *sQ = fa3_smem_base<T>(smem_raw);
    T *sK = sQ + SM::Q; /* STAGES */
    T *sV = sK + STAGES * SM::KV;
    uint64_t *bars = reinterpret_cast<uint64_t *>(sV + STAGES * SM::KV);
    uint64_t *fullQ = bars, *emptyQ = bars + 1, *fullK = bars + 2, *fullV = fullK + STAGES,
             *emptyK = fullV + STAGES, *emptyV = emptyK + STAGES;

    if (threadIdx.x == 0) {
        kc_mbar_init(fullQ, 1);
        kc_mbar_init(emptyQ, 4 * NC); /* every consumer warp */
        for (int i = 0; i < STAGES; i++) {
            kc_mbar_init(fullK + i, 1);
            kc_mbar_init(fullV + i, 1);
            kc_mbar_init(emptyK + i, 4 * NC);
            kc_mbar_init(emptyV + i, 4 * NC);
        }
    }
    __syncthreads();

    /* tile `tile` of the order: its query block and (batch, head). Causal: groups of
     * p.hgroup heads (whose keys and values fit in L2 together), in each group the last query
     * block of every head, then the one before, ...; otherwise head by head. */
    auto coords = [&](int tile, int &qb, int &bh) {
        if (CAUSAL) {
            const int grp = tile / (p.hgroup * p.nqb), h0 = grp * p.hgroup;
            const int within = tile - h0 * p.nqb, heads = min(p.hgroup, p.nbh - h0);
            const int round = within / heads;
            qb = p.nqb - 1 - round;
            bh = h0 + within - round * heads;
        } else {
            bh = tile / p.nqb;
            qb = p.nqb - 1 - (tile - bh * p.nqb);
        }
    };

    const int wg = threadIdx.x >> 7;
    if (wg == 0) { /* the producer */
        kc_setmaxnreg_dec<ws_cfg<NC>::PRODUCER_REGS>();
        if (threadIdx.x != 0) return;
        RING kw, vw;
        unsigned qphase = 0;
        /* block j of K or V into the ring's next stage once the consumers have released it */
        auto load_kv = [&](const CUtensorMap &map, T *base, uint64_t *full, uint64_t *empty,
                           RING &r, int j, int kvh) {
            kc_mbar_wait(empty + r.stage, r.phase ^ 1u);
            kc_mbar_expect_tx(full + r.stage, KV_BYTES);
#pragma unroll
            for (int pn = 0; pn < PANELS; pn++)
                kc_tma_load_3d(base + r.stage * SM::KV + pn * BC * 64, &map, 64 * pn,
                               p.kv_begin + j * BC, kvh, full + r.stage);
            r.next();
        };
        for (int tile = blockIdx.x; tile < p.ntile; tile += gridDim.x) {
            int qb, bh;
            coords(tile, qb, bh);
            const int q0 = qb * BRW, bi = bh / p.h, hk = (bh - bi * p.h) / (p.h / p.h_kv);
            const int kvh = bi * p.h_kv + hk;
            const int nt = fa3_nblocks(p, fa3_kend<MASK>(p, q0, BRW));
            if (nt == 0) continue; /* the consumers write empty rows */
            load_kv(p.tk, sK, fullK, emptyK, kw, 0, kvh);
            kc_mbar_wait(emptyQ, qphase ^ 1u);
            kc_mbar_expect_tx(fullQ, Q_BYTES);
#pragma unroll
            for (int pn = 0; pn < PANELS; pn++)
                kc_tma_load_3d(sQ + pn * BRW * 64, &p.tq, 64 * pn, q0, bh, fullQ);
            qphase ^= 1u;
            for (int j = 1; j < nt; j++) { /* in the order the consumers use them */
                load_kv(p.tk, sK, fullK, emptyK, kw, j, kvh);
                load_kv(p.tv, sV, fullV, emptyV, vw, j - 1, kvh);
            }
            load_kv(p.tv, sV, fullV, emptyV, vw, nt - 1, kvh);
        }
        return;
    }

    /* the consumers */
    kc_setmaxnreg_inc<ws_cfg<NC>::CONSUMER_REGS>();
    const int cw = wg - 1, lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3;
    const int g = lane >> 2, t = lane & 3;
    const bool pp = p.pingpong != 0;
    if (pp && cw == NC - 1) kc_bar_arrive(1, 256); /* the first consumer's first turn */
    auto turn = [&] {                              /* wait for this consumer's turn to issue */
                      if (pp) kc_bar_sync(1 + cw, 256);
    };
    auto pass = [&] { /* hand the turn to the next consumer */
                      if (pp) kc_bar_arrive(1 + (cw + 1) % NC, 256);
    };
    const uint32_t aQ = kc_smem_addr(sQ) + (uint32_t)(64 * cw * 128);
    auto aK = [&](const RING &r) { return kc_smem_addr(sK + r.stage * SM::KV); };
    auto aV = [&](const RING &r) { return kc_smem_addr(sV + r.stage * SM::KV); };
    RING kr, vr;
    unsigned qphase = 0;
    for (int tile = blockIdx.x; tile < p.ntile; tile += gridDim.x) {
        int qb, bh;
        coords(tile, qb, bh);
        const int q0 = qb * BRW, wr0 = q0 + 64 * cw + 16 * warp; /* the warp's first row */
        const int kend = fa3_kend<MASK>(p, q0, BRW), nt = fa3_nblocks(p, kend);
        fwd_rows<T, D, MASK, PARTIAL, BRW> w;
        w.start(p, bh, wr0 + g, t);
        if (nt > 0) {
            /* block 0: S, softmax */
            kc_mbar_wait(fullQ, qphase);
            kc_mbar_wait(fullK + kr.stage, kr.phase);
            turn();
            kc_wg_fence();
            w.issue_s(aQ, aK(kr));
            pass();
            kc_wg_wait0();
            kc_wg_fence_regs(w.s);
            if (lane == 0) {
                kc_mbar_arrive(emptyK + kr.stage);
                if (nt == 1) kc_mbar_arrive(emptyQ);
            }
            kr.next();
            w.softmax(p, p.kv_begin, kend, wr0, wr0 + g, t);
            w.rescale_o();
            for (int j = 1; j < nt; j++) {
                w.pack_p(); /* P of block j - 1 */
                kc_mbar_wait(fullK + kr.stage, kr.phase);
                kc_mbar_wait(fullV + vr.stage, vr.phase);
                turn();
                kc_wg_fence();
                w.issue_s(aQ, aK(kr));
                w.issue_pv(aV(vr));
                pass();
                kc_wg_wait1(); /* S of block j */
                kc_wg_fence_regs(w.s);
                if (lane == 0) {
                    kc_mbar_arrive(emptyK + kr.stage);
                    if (j == nt - 1) kc_mbar_arrive(emptyQ); /* the tile's last S is done */
                }
                kr.next();
                w.softmax(p, p.kv_begin + j * BC, kend, wr0, wr0 + g, t);
                kc_wg_wait0(); /* P V of block j - 1 */
                kc_wg_fence_regs(w.o);
                if (lane == 0) kc_mbar_arrive(emptyV + vr.stage);
                vr.next();
                w.rescale_o();
            }
            /* P V of the last block */
            w.pack_p();
            kc_mbar_wait(fullV + vr.stage, vr.phase);
            turn();
            kc_wg_fence();
            w.issue_pv(aV(vr));
            pass();
            kc_wg_wait0();
            kc_wg_fence_regs(w.o);
            if (lane == 0) kc_mbar_arrive(emptyV + vr.stage);
            vr.next();
            qphase ^= 1u;
        }
        w.finish(p, bh, wr0 + g, t);
    }
    /* the last consumer's last hand-over (or the first turn, when there was none) is the one
     * arrival the first consumer has not waited for: take it, so no barrier is left mid-phase */
    if (pp && cw == 0) kc_bar_sync(1, 256);
}

/* The forward's schedule: the one-tile kernel (legacy), or the warp-specialized one with
 * optional persistence, ping-pong and, at d = 64, three consumer warpgroups; ctas caps the
 * persistent grid, l2_kib sizes the causal order's head groups (0: one group). */
struct fwd_schedule {
    bool ws, persistent, pingpong, wg3;
    int ctas, l2_kib;
};
constexpr fwd_schedule FWD_LEGACY = {false, false, false, false, 0, 32768};

/* What a call gets by default, the fastest of the schedules measured against each other in one
 * run on an H100 (docs/performance.md): d = 64, every mask: 3 consumer warpgroups, persistent,
 * ping-pong (0.89-1.08x cuDNN where the one-tile kernel was 0.77-0.87x); d = 128 without a mask:
 * persistent (0.87-0.94x against 0.79-0.88x); d = 128 causal: the one-tile kernel (the static
 * persistent order lost at N = 16k, 0.88x against 0.97x, and gained nothing at N <= 8k). */
fwd_schedule fwd_schedule_default(size_t d, bool causal)
{
    fwd_schedule sc = FWD_LEGACY;
    if (d == 64)
        sc.ws = sc.persistent = sc.pingpong = sc.wg3 = true;
    else if (!causal)
        sc.ws = sc.persistent = true;
    return sc;
}
/* ATTNSIM_KC_FWD (to compare schedules; unset or empty: the default): tokens separated by '+'
 * or ',' from the one-tile kernel: legacy, ws (the warp-specialized kernel, one CTA per tile),
 * persistent, pingpong, wg3 (d = 64), wg2, ctas=N, l2=KiB; each but legacy implies ws. */
fwd_schedule fwd_schedule_now(size_t d, bool causal)
{
    const char *e = getenv("ATTNSIM_KC_FWD");
    if (!e || !*e) return fwd_schedule_default(d, causal);
    fwd_schedule sc = FWD_LEGACY;
    char buf[128];
    strncpy(buf, e, sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, "+,", &save); tok; tok = strtok_r(NULL, "+,", &save)) {
        if (!strcmp(tok, "legacy"))
            sc = FWD_LEGACY;
        else if (!strcmp(tok, "ws"))
            sc.ws = true;
        else if (!strcmp(tok, "persistent"))
            sc.ws = sc.persistent = true;
        else if (!strcmp(tok, "pingpong"))
            sc.ws = sc.pingpong = true;
        else if (!strcmp(tok, "wg3"))
            sc.ws = sc.wg3 = true;
        else if (!strcmp(tok, "wg2"))
            sc.ws = true, sc.wg3 = false;
        else if (!strncmp(tok, "ctas=", 5))
            sc.ws = sc.persistent = true, sc.ctas = atoi(tok + 5);
        else if (!strncmp(tok, "l2=", 3))
            sc.ws = true, sc.l2_kib = atoi(tok + 3);
    }
    return sc;
}

template <typename T, int D, int MASK, bool PARTIAL>
cudaError_t launch_legacy(const kc_shape *s, const fa3_params &p, cudaStream_t st)
{
    auto kern = fa3_fwd_kernel<T, D, MASK, PARTIAL>;
    const int smem = (int)fa3_smem<T, D, BR, 1 + 4 * STAGES>::BYTES;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((s->nq + BR - 1) / BR), (unsigned)(s->b * s->h));
    kern<<<grid, NTHREADS, smem, st>>>(p);
    return cudaGetLastError();
}

template <typename T, int D, int MASK, bool PARTIAL, int NC>
cudaError_t launch_ws(const kc_shape *s, fa3_params p, const fwd_schedule &sc, cudaStream_t st)
{
    using C = ws_cfg<NC>;
    auto kern = fa3_fwd_ws_kernel<T, D, MASK, PARTIAL, NC>;
    const int smem = (int)fa3_smem<T, D, C::BR, 2 + 4 * STAGES>::BYTES;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    p.nqb = (int)((s->nq + C::BR - 1) / C::BR);
    p.nbh = (int)(s->b * s->h);
    p.ntile = p.nqb * p.nbh;
    p.pingpong = sc.pingpong;
    /* causal order: as many heads in a group as have their keys and values in l2_kib KiB */
    const size_t kv_head = 2 * (size_t)max(p.kv_end - p.kv_begin, 1) * s->d * sizeof(T);
    const size_t budget = (size_t)sc.l2_kib << 10;
    p.hgroup = sc.l2_kib <= 0 ? p.nbh : (int)min((size_t)p.nbh, max(budget / kv_head, (size_t)1));
    int grid = p.ntile;
    if (sc.persistent) {
        int dev = 0, sms = 0, per_sm = 0;
        if ((e = cudaGetDevice(&dev)) != cudaSuccess ||
            (e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) !=
                cudaSuccess ||
            (e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, C::THREADS, smem)) !=
                cudaSuccess)
            return e;
        grid = min(grid, max(1, sms * per_sm));
        if (sc.ctas > 0) grid = min(grid, sc.ctas);
    }
    kern<<<grid, C::THREADS, smem, st>>>(p);
    return cudaGetLastError();
}

template <typename T, int D, int MASK, bool PARTIAL>
cudaError_t launch(const kc_shape *s, const fa3_params &p, const fwd_schedule &sc, cudaStream_t st)
{
    if (!sc.ws) return launch_legacy<T, D, MASK, PARTIAL>(s, p, st);
    if constexpr (D == 64)
        if (sc.wg3) return launch_ws<T, D, MASK, PARTIAL, 3>(s, p, sc, st);
    return launch_ws<T, D, MASK, PARTIAL, 2>(s, p, sc, st);
}

/* Query rows per tile of a schedule at head dim d. */
int fwd_rows_per_tile(const fwd_schedule &sc, size_t d)
{
    return !sc.ws ? BR : d == 64 && sc.wg3 ? ws_cfg<3>::BR : ws_cfg<2>::BR;
}

/* The driver's tensor-map encoder, looked up once through the runtime (no -lcuda). */
PFN_cuTensorMapEncodeTiled_v12000 encoder()
{
    static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void *f = NULL;
        cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                             &q) != cudaSuccess ||
            q != cudaDriverEntryPointSuccess)
            f = NULL;
        cudaGetLastError();
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
    }();
    return fn;
}

} // namespace

/* A [heads][rows][d] tensor as a 3-D map whose boxes are 64 columns (128 bytes, the swizzle
 * span) x box_rows rows of one head; rows past the end read as zeros. */
cudaError_t kc_tma_map_3d(CUtensorMap *map, int dtype, const void *base, size_t d, size_t rows,
                          size_t heads, unsigned box_rows)
{
    /* kn_dtype: 0 f32 (boxes of 32 columns), 1 f16, 2 bf16 (boxes of 64) */
    const size_t es = dtype == 0 ? 4 : 2;
    cuuint64_t dims[3] = {(cuuint64_t)d, (cuuint64_t)(rows > 0 ? rows : 1),
                          (cuuint64_t)(heads > 0 ? heads : 1)};
    cuuint64_t strides[2] = {(cuuint64_t)(d * es), (cuuint64_t)(rows * d * es)};
    if (strides[1] == 0) strides[1] = strides[0];
    cuuint32_t box[3] = {(cuuint32_t)(128 / es), box_rows, 1}, step[3] = {1, 1, 1};
    PFN_cuTensorMapEncodeTiled_v12000 enc = encoder();
    if (!enc) return cudaErrorNotSupported;
    const CUtensorMapDataType ty = dtype == 0   ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32
                                   : dtype == 1 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                                                : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
    CUresult r = enc(map, ty, 3, const_cast<void *>(base), dims, strides, box, step,
                     CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                     CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

int kc_tma_available(void)
{
    return encoder() != NULL;
}

/* 1 where this GPU runs the kernel above: compute capability 9.0, an sm_90a binary of it and a
 * driver with tensor maps (asked once per device), unless ATTNSIM_KC_NO_WGMMA is set (to
 * compare with mma.sync). */
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
            !(off && *off && *off != '0') && kc_tma_available() &&
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

void kc_fa3_fwd_blocks(size_t d, size_t *br, size_t *bc)
{
    *br = (size_t)fwd_rows_per_tile(fwd_schedule_now(d, false), d);
    *bc = BC;
}

int kc_fa3_fwd_usable(const kc_shape *s, const void *q, const void *k, const void *v)
{
    const bool dim_ok = s->d == 128 || s->d == 64;
    /* tensor maps need 16-byte aligned bases */
    const bool aligned = (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) & 15u) == 0;
    return dim_ok && aligned && kc_fa3_fwd_available();
}

cudaError_t kc_fa3_fwd(const kc_shape *s, const void *q, const void *k, const void *v,
                       size_t kv_begin, size_t kv_end, int accumulate, float *m, float *l, float *o,
                       void *o_out, float *lse, cudaStream_t st)
{
    fa3_params p;
    memset(&p, 0, sizeof p);
    p.o = o_out, p.lse = lse, p.m = m, p.l = l, p.oacc = o;
    p.qpos = s->qpos, p.kpos = s->kpos;
    p.h = (int)s->h, p.h_kv = (int)s->h_kv, p.nq = (int)s->nq, p.nk = (int)s->nk;
    p.kv_begin = (int)kv_begin, p.kv_end = (int)kv_end, p.accumulate = accumulate;
    p.scale_log2 = (float)(1.0 / sqrt((double)s->d)) * KC_LOG2E;
    if (s->nq == 0 || s->b * s->h == 0) return cudaSuccess;
    const fwd_schedule sc = fwd_schedule_now(s->d, s->causal != 0);
    const unsigned br = (unsigned)fwd_rows_per_tile(sc, s->d);
    cudaError_t e;
    if ((e = kc_tma_map_3d(&p.tq, s->dtype, q, s->d, s->nq, s->b * s->h, br)) != cudaSuccess ||
        (e = kc_tma_map_3d(&p.tk, s->dtype, k, s->d, s->nk, s->b * s->h_kv, BC)) != cudaSuccess ||
        (e = kc_tma_map_3d(&p.tv, s->dtype, v, s->d, s->nk, s->b * s->h_kv, BC)) != cudaSuccess)
        return e;
    const bool partial = o_out == NULL;
    return kc_dispatch_tc(s, partial, KC_LAUNCH_TC(launch, s, p, sc, st));
}
