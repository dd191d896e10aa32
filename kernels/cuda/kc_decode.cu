/* kc_decode.cu - the decode kernels (algorithms.md section 3, kc_attn.h): FA2-style decode,
 * FlashDecoding (split-KV) with its combine kernel, and Lean Attention (stream-K).
 *
 * One kernel body serves the three schemes: a CTA streams a contiguous range of the plan's
 * global tile order (kernels/kn_decode.h, the same functions the C reference and the model
 * call) and the scheme decides only the range and what happens where a unit's segment ends.
 *   FA2    CTA = unit, range = the unit's tiles; writes O and LSE.
 *   SPLIT  CTA = (unit, split j), range = split j of the unit; writes a partial (or O and LSE
 *          when s = 1); combine_kernel merges the s partials of each unit.
 *   LEAN   a grid of co-resident CTAs, the W tiles cut into equal contiguous ranges; a CTA
 *          that starts inside a unit writes its partial to its own scratch slot and raises its
 *          flag; the unit's host (the CTA holding its first tile) waits for the flags of its
 *          higher-numbered contributors, merges and writes O and LSE.
 *
 * Inside a CTA: 8 warps (one CTA per SM); K and V flow through 3 shared-memory stages of
 * 64 KiB (128 keys at d = 128, 256 at d = 64) with cp.async and an L2 evict-first policy (the cache
 * is read once), prefetched across unit boundaries so a CTA that changes unit does not drain its
 * pipeline (the next unit's Q rides in the same copy group, and stage, as its first block). Each
 * warp takes an eighth of every block: S = Q K^T (the unit's <= 16 query heads as the rows of one
 * m16 tile, so a K/V tile is read once for all of them), online softmax in registers, O += P V on
 * tensor cores (mma.sync m16n8k16). At a segment's end the 8 warps' states are merged through
 * shared memory (the K and V stage just consumed serve as the buffers), in a fixed order, so the
 * output bits do not depend on timing. A Lean host folds its contributors' partials CH_LEAN at
 * a time: each waiting thread fetches its contributor's m and l as soon as the flag is up, and
 * the partials' o is gathered with independent loads.
 *
 * Every kernel here is launched with programmatic stream serialization where the GPU has it
 * (sm_90): it lets the next call launch at once (griddepcontrol.launch_dependents) and waits
 * for the previous kernel in the stream (griddepcontrol.wait) before it reads anything, so only
 * the launch overlaps, never the data.
 *
 * Lean's flags carry a per-launch epoch, one per CTA slot: a contributor c raises flag[c] to
 * ack[c] + 1, and its host, having waited for exactly that value and merged the partial, sets
 * ack[c] to it. Between launches flag[c] == ack[c] for every slot, so no launch clears anything,
 * a stale flag never equals the value a host waits for, and launches captured in a CUDA graph
 * replay correctly; no CTA needs to know when the others finish. Hosts wait only on
 * higher-numbered CTAs and the grid never exceeds the co-resident CTA count
 * (kc_decode_slots), so a wait always ends.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kc_attn.h"
#include "kc_common.cuh"
#include "kc_internal.h"
/* the plan in 32-bit integers on the device (W, tokens and units stay far below 2^31) */
#define KN_DEC_INT int
#include "kn_decode.h"

namespace
{

constexpr int NWARPS = 8, NTHREADS = 32 * NWARPS, ROWS = KN_DEC_MAX_GROUP;

/* Per head dim: keys per warp and block (a stage holds 64 KiB of K+V: 128 keys at d = 128,
 * 256 at d = 64, one block per tile), stages, blocks per tile. Three stages fill the shared
 * memory of an SM with one CTA of 8 warps, so the Lean grid is one CTA per SM. */
template <int D> struct dec_cfg {
    static constexpr int KPW = D <= 64 ? 32 : 16, BK = NWARPS * KPW;
    static constexpr int STAGES = 3;
    static constexpr int BPT = KN_DEC_TILE(D) / BK; /* blocks per tile of the plan */
    static_assert(BPT >= 1, "a tile holds whole blocks");
};

struct dec_params {
    const void *q, *k, *v;
    void *o;
    float *lse;
    const int *lens;
    kn_dec_plan plan;
    kn_dec_int n_cap;
    int splits;
    int prefetch; /* blocks of its range a CTA prefetches into L2 before the wait (lens = NULL) */
    float scale_log2;
    unsigned *flags, *acks; /* Lean: one of each per CTA slot */
    float *scratch;         /* partial slots: [slot][ROWS][D] o, then [ROWS] m (log2), [ROWS] l */
};

template <int D> __host__ __device__ constexpr size_t slot_floats()
{
    return (size_t)ROWS * (D + 2);
}

template <typename T, int D> __host__ __device__ constexpr size_t smem_bytes()
{
    return (size_t)dec_cfg<D>::STAGES * 2 * dec_cfg<D>::BK * D * sizeof(T) +
           (size_t)dec_cfg<D>::STAGES * ROWS * D * sizeof(T);
}

/* The unit's sequence, kv head, first query head and valid rows. */
struct unit_rows {
    kn_dec_int seq, kv, hq0;
    int nrows;
};

__device__ __forceinline__ unit_rows rows_of(const kn_dec_plan &pl, kn_dec_int u)
{
    unit_rows r;
    kn_dec_int per = kn_dec_units_per_seq(&pl), grp = u % pl.groups;
    r.seq = u / per;
    r.kv = (u % per) / pl.groups;
    r.hq0 = r.kv * pl.g + grp * pl.group;
    kn_dec_int left = (r.kv + 1) * pl.g - r.hq0;
    r.nrows = (int)(left < pl.group ? left : pl.group);
    return r;
}

/* Element (r, c) of a [ROWS][D] f32 state in shared memory: 8-float chunks XOR-swizzled by
 * row % 4, so the epilogue's float2 stores (8 rows x 4 threads per warp) do not all land in the
 * same banks. Whole-state element-wise passes (sums, folds, partials) need no mapping. */
template <int D> __device__ __forceinline__ int st_idx(int r, int c)
{
    return r * D + (c ^ ((r & 3) << 3));
}

/* A walk over a CTA's range, one 64-key block at a time. The divisions of the plan happen only
 * where the walk enters a unit; a step inside a unit is two increments. */
template <typename T, int D> struct cursor {
    kn_dec_int unit;
    int k, sub, ntiles, len, nrows;
    const T *kb, *vb, *q; /* the unit's K, V (at token 0) and Q rows */

    __device__ __forceinline__ void enter(const dec_params &p, kn_dec_int u, int k0)
    {
        unit = u;
        k = k0;
        sub = 0;
        unit_rows ur = rows_of(p.plan, u);
        len = (int)kn_dec_len(&p.plan, p.lens, ur.seq);
        ntiles = (int)kn_dec_seq_tiles(&p.plan, len);
        nrows = ur.nrows;
        const size_t base = (size_t)(ur.seq * p.plan.h_kv + ur.kv) * (size_t)p.n_cap * D;
        kb = static_cast<const T *>(p.k) + base;
        vb = static_cast<const T *>(p.v) + base;
        q = static_cast<const T *>(p.q) + (size_t)(ur.seq * p.plan.h + ur.hq0) * D;
    }
    __device__ __forceinline__ void start(const dec_params &p, kn_dec_int t0)
    {
        kn_dec_int first, n;
        kn_dec_int u = kn_dec_locate(&p.plan, p.lens, t0, &first, &n);
        enter(p, u, (int)(t0 - first));
    }
    __device__ __forceinline__ void next(const dec_params &p)
    {
        if (++sub < dec_cfg<D>::BPT) return;
        sub = 0;
        if (++k < ntiles) return;
        enter(p, unit + 1, 0);
    }
    __device__ __forceinline__ bool seg_first() const { return k == 0 && sub == 0; }
    __device__ __forceinline__ bool unit_last() const
    {
        return k == ntiles - 1 && sub == dec_cfg<D>::BPT - 1;
    }
    __device__ __forceinline__ int key0() const
    {
        return (k * dec_cfg<D>::BPT + sub) * dec_cfg<D>::BK;
    }
};

/* The K/V cache is read once per call: its copies carry an L2 evict-first policy, so they do
 * not push out what is reused (Q, the partials a host folds, the next call's flags). */
#ifndef KC_DEC_EVICT_FIRST
#define KC_DEC_EVICT_FIRST 1
#endif
__device__ __forceinline__ uint64_t evict_first_policy()
{
    uint64_t pol;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(pol));
    return pol;
}

/* kc_load_tile with the evict-first policy. */
template <typename T, int D, int NR, int NTH>
__device__ __forceinline__ void load_stream_tile(T *tile, const T *src, int row0, int n)
{
    if (!KC_DEC_EVICT_FIRST) {
        kc_load_tile<T, D, NR, NTH>(tile, src, row0, n);
        return;
    }
    const uint64_t pol = evict_first_policy();
    constexpr int CHUNKS = NR * D / 8;
    for (int c = threadIdx.x; c < CHUNKS; c += NTH) {
        int r = c / (D / 8), col = (c % (D / 8)) * 8;
        int gr = row0 + r;
        const T *p = src + (size_t)(gr < n ? gr : 0) * D + col;
        asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;\n" ::"r"(
                         kc_smem_addr(tile + kc_swz<D>(r, col))),
                     "l"(p), "r"(gr < n ? 16 : 0), "l"(pol));
    }
}

template <typename T, int D>
__device__ __forceinline__ void issue_block(const cursor<T, D> &c, bool first_of_seg, T *sK, T *sV,
                                            T *sQ)
{
    load_stream_tile<T, D, dec_cfg<D>::BK, NTHREADS>(sK, c.kb, c.key0(), c.len);
    load_stream_tile<T, D, dec_cfg<D>::BK, NTHREADS>(sV, c.vb, c.key0(), c.len);
    if (first_of_seg) kc_load_tile<T, D, ROWS, NTHREADS>(sQ, c.q, 0, c.nrows);
}

/* Asks L2 for the first n blocks of a CTA's range (K and V, bulk prefetches by one thread).
 * Only a hint: it reads nothing into the SM, so it may run before griddepcontrol.wait even
 * where the previous kernel writes the cache (L2 is the GPU's point of coherence). */
template <typename T, int D> __device__ __forceinline__ void prefetch_block(const cursor<T, D> &c)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const int rows = min(dec_cfg<D>::BK, c.len - c.key0());
    const T *srcs[2] = {c.kb + (size_t)c.key0() * D, c.vb + (size_t)c.key0() * D};
    for (int i = 0; i < 2 && rows > 0; i++)
        if ((reinterpret_cast<uintptr_t>(srcs[i]) & 15) == 0)
            asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(srcs[i]),
                         "r"((unsigned)(rows * D * sizeof(T)))
                         : "memory");
#else
    (void)c;
#endif
}

template <typename T, int D>
__device__ __forceinline__ void prefetch_l2(const dec_params &p, kn_dec_int t0, int nb, int n)
{
    if (threadIdx.x != 0 || nb == 0) return;
    cursor<T, D> c;
    c.start(p, t0);
    for (int b = 0; b < n && b < nb; b++) {
        if (b > 0) c.next(p);
        prefetch_block<T, D>(c);
    }
}

/* The warps' (rescaled) o at element e, summed in a fixed order: buffers 0 .. NWARPS / 2 - 1 in
 * the K stage (lo), the rest in the V stage (hi). */
template <int D> __device__ __forceinline__ float warp_sum(const float *lo, const float *hi, int e)
{
    float a = 0.f, b = 0.f;
#pragma unroll
    for (int w = 0; w < NWARPS / 2; w++) {
        a += lo[w * ROWS * D + e];
        b += hi[w * ROWS * D + e];
    }
    return a + b;
}

/* O = o / l (0 where l = 0) in the storage type, LSE = m ln 2 + log l (-inf where l = 0). */
template <typename T, int D>
__device__ __forceinline__ void write_output(const dec_params &p, const unit_rows &ur,
                                             const float *m, const float *l, const float *o)
{
    T *out = static_cast<T *>(p.o) + (size_t)(ur.seq * p.plan.h + ur.hq0) * D;
    for (int c = threadIdx.x; c < ur.nrows * D / 8; c += NTHREADS) {
        const int r = c / (D / 8), col = (c % (D / 8)) * 8;
        const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
        uint4 v;
        uint32_t *w = reinterpret_cast<uint32_t *>(&v);
#pragma unroll
        for (int i = 0; i < 4; i++)
            w[i] = kc_type<T>::pack(o[st_idx<D>(r, col) + 2 * i] * inv,
                                    o[st_idx<D>(r, col) + 2 * i + 1] * inv);
        *reinterpret_cast<uint4 *>(out + (size_t)r * D + col) = v;
    }
    if (threadIdx.x < ur.nrows) {
        const int r = threadIdx.x;
        p.lse[ur.seq * p.plan.h + ur.hq0 + r] = l[r] > 0.f ? m[r] * KC_LN2 + logf(l[r]) : -INFINITY;
    }
}

/* st.release after the CTA barrier: release cumulativity makes the partial every thread
 * wrote before the barrier visible to an acquirer of the flag. */
__device__ __forceinline__ void release_flag(unsigned *flag, unsigned epoch)
{
    asm volatile("st.release.gpu.global.u32 [%0], %1;\n" ::"l"(flag), "r"(epoch) : "memory");
}

__device__ __forceinline__ void acquire_flag(const unsigned *flag, unsigned epoch)
{
    unsigned v;
    for (;;) {
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(flag) : "memory");
        if (v == epoch) break;
        __nanosleep(32);
    }
}

/* A partial's values: from the scratch slots in L2 (bypassing L1: other CTAs wrote them), or
 * from shared memory where a Lean host has staged them. */
template <bool SMEM> __device__ __forceinline__ float ld_part(const float *p)
{
    return SMEM ? *p : __ldcg(p);
}
template <bool SMEM> __device__ __forceinline__ float4 ld_part4(const float *p)
{
    return SMEM ? *reinterpret_cast<const float4 *>(p)
                : __ldcg(reinterpret_cast<const float4 *>(p));
}

/* Folds n partial states into the shared state (m, l, o) of `nrows` rows, CH at a time.
 * Partial j starts at base + j * pitch: its o ([nrows][D], row-major), then its m (log2) and l
 * ([ROWS] each) at offset ml. The chunk's m and l are loaded by all threads at once (unless the
 * caller preloaded the first chunk's into cw, cl), each row's new maximum and the weights follow,
 * then every element gathers the chunk's values with independent loads (no chain of dependent
 * round trips). Summation order is fixed: the same bits on every launch. Ends with a barrier. */
constexpr int CH = 32;       /* the combine kernel's chunk (static shared memory) */
constexpr int CH_LEAN = 128; /* a Lean host's chunk: its m and l live in the free V stages */
template <int D, int CHK, bool SMEM>
__device__ __forceinline__ void
fold_partials(const float *base, size_t pitch, int ml, int n, int nrows, float *m, float *l,
              float *o, float (*cw)[ROWS], float (*cl)[ROWS], float *sc, bool preloaded)
{
    static_assert(CHK % 32 == 0, "whole warps of partials");
    constexpr int CH = CHK;
    for (int j0 = 0; j0 < n; j0 += CH) {
        const int cn = min(CH, n - j0);
        for (int i = threadIdx.x; i < cn * nrows && !(preloaded && j0 == 0); i += NTHREADS) {
            const int j = i / nrows, r = i % nrows;
            const float *sl = base + (size_t)(j0 + j) * pitch;
            cw[j][r] = ld_part<SMEM>(sl + ml + r);
            cl[j][r] = ld_part<SMEM>(sl + ml + ROWS + r);
        }
        __syncthreads();
        { /* one warp per row, CH / 32 partials per lane */
            const int lane = threadIdx.x & 31;
            for (int r = threadIdx.x >> 5; r < nrows; r += NWARPS) {
                float mj[CH / 32], mx = m[r];
#pragma unroll
                for (int q = 0; q < CH / 32; q++) {
                    mj[q] = lane + 32 * q < cn ? cw[lane + 32 * q][r] : -INFINITY;
                    mx = fmaxf(mx, mj[q]);
                }
#pragma unroll
                for (int o2 = 16; o2 > 0; o2 >>= 1)
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o2));
                float sum = 0.f;
#pragma unroll
                for (int q = 0; q < CH / 32; q++) {
                    const float w = mj[q] == -INFINITY ? 0.f : kc_exp2(mj[q] - mx);
                    if (lane + 32 * q < cn) {
                        sum += w * cl[lane + 32 * q][r];
                        cw[lane + 32 * q][r] = w;
                    }
                }
#pragma unroll
                for (int o2 = 16; o2 > 0; o2 >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o2);
                __syncwarp();
                if (lane == 0) {
                    const float a = m[r] == -INFINITY ? 0.f : kc_exp2(m[r] - mx);
                    l[r] = a * l[r] + sum;
                    m[r] = mx;
                    sc[r] = a;
                }
            }
        }
        __syncthreads();
        /* four consecutive elements per thread (one row: D is a multiple of 4); the chunk's
         * loads go out in batches of GB held in registers, so each batch is one round trip */
        constexpr int GB = 16;
        for (int e = 4 * threadIdx.x; e < nrows * D; e += 4 * NTHREADS) {
            const int r = e / D;
            const float *src = base + (size_t)j0 * pitch + e;
            float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
            for (int jb = 0; jb < cn; jb += GB) {
                float4 v[GB];
#pragma unroll
                for (int u = 0; u < GB; u++)
                    v[u] = jb + u < cn ? ld_part4<SMEM>(src + (size_t)(jb + u) * pitch)
                                       : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
                for (int u = 0; u < GB; u++) {
                    const float w = jb + u < cn ? cw[jb + u][r] : 0.f;
                    acc.x += w * v[u].x;
                    acc.y += w * v[u].y;
                    acc.z += w * v[u].z;
                    acc.w += w * v[u].w;
                }
            }
            float4 *dst = reinterpret_cast<float4 *>(o + e);
            const float4 cur = *dst;
            const float a = sc[r];
            *dst = make_float4(a * cur.x + acc.x, a * cur.y + acc.y, a * cur.z + acc.z,
                               a * cur.w + acc.w);
        }
        __syncthreads();
    }
}

/* A Lean host waits for contributors c0 .. c0 + nc - 1 and folds their partials into its state.
 * `fr` is free shared memory of `fr_floats` floats (the V and Q stages once the host's own state
 * is summed): the chunk weights cw, cl first, then, where the contributors' partials fit, one
 * buffer each. Then each warp takes contributors w, w + NWARPS, ...: its lanes wait for the flag
 * together and copy the partial in with cp.async at once, so the last flag is followed by one
 * round trip to L2 and a fold from shared memory. Otherwise each thread waits for one
 * contributor, loads its m and l, and the fold gathers o from L2. */
template <int D>
__device__ __forceinline__ void host_fixup(const dec_params &p, kn_dec_int c0, int nc, int nrows,
                                           float *m, float *l, float *o, float *fr,
                                           size_t fr_floats, float *sc)
{
    float(*cw)[ROWS] = reinterpret_cast<float(*)[ROWS]>(fr);
    float(*cl)[ROWS] = cw + CH_LEAN;
    float *buf = fr + 2 * CH_LEAN * ROWS;
    const size_t slot = slot_floats<D>(), pitch = (size_t)nrows * D + 2 * ROWS;
    const float *base = p.scratch + (size_t)c0 * slot;
    if ((size_t)nc * pitch <= fr_floats - 2 * CH_LEAN * ROWS) {
        const int lane = threadIdx.x & 31, ochunks = nrows * D / 4;
        for (int j = threadIdx.x >> 5; j < nc; j += NWARPS) {
            acquire_flag(p.flags + c0 + j, *(volatile unsigned *)(p.acks + c0 + j) + 1u);
            const float *src = base + (size_t)j * slot;
            float *dst = buf + (size_t)j * pitch;
            for (int c = lane; c < ochunks + 2 * ROWS / 4; c += 32) {
                const int off = c < ochunks ? 4 * c : ROWS * D + 4 * (c - ochunks);
                kc_cp_async16(kc_smem_addr(dst + 4 * c), src + off, 16);
            }
        }
        kc_cp_async_commit();
        kc_cp_async_wait<0>();
        __syncthreads();
        fold_partials<D, CH_LEAN, true>(buf, pitch, nrows * D, nc, nrows, m, l, o, cw, cl, sc,
                                        false);
    } else {
        for (int j = threadIdx.x; j < nc; j += NTHREADS) {
            acquire_flag(p.flags + c0 + j, *(volatile unsigned *)(p.acks + c0 + j) + 1u);
            if (nc <= CH_LEAN) /* the waiter loads its contributor's m and l right away */
                for (int r = 0; r < nrows; r++) {
                    cw[j][r] = __ldcg(base + (size_t)j * slot + ROWS * D + r);
                    cl[j][r] = __ldcg(base + (size_t)j * slot + ROWS * D + ROWS + r);
                }
        }
        __syncthreads();
        fold_partials<D, CH_LEAN, false>(base, slot, ROWS * D, nc, nrows, m, l, o, cw, cl, sc,
                                         nc <= CH_LEAN);
    }
    for (int j = threadIdx.x; j < nc; j += NTHREADS) p.acks[c0 + j] += 1u; /* consumed */
}

template <typename T, int D, int SCHEME>
__global__ void __launch_bounds__(NTHREADS, 1) decode_kernel(dec_params p)
{
    constexpr int STAGES = dec_cfg<D>::STAGES, BPT = dec_cfg<D>::BPT, BK = dec_cfg<D>::BK;
    constexpr int KPW = dec_cfg<D>::KPW, NT = KPW / 8; /* n8 tiles of S per warp */
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T *sK = reinterpret_cast<T *>(smem_raw); /* [STAGES][BK][D] */
    T *sV = sK + (size_t)STAGES * BK * D;    /* [STAGES][BK][D] */
    T *sQ =
        sV + (size_t)STAGES * BK * D; /* [STAGES][ROWS][D]: a segment's Q with its first block */
    __shared__ float wm[NWARPS][ROWS], wl[NWARPS][ROWS], sm_m[ROWS], sm_l[ROWS], sm_sc[ROWS];

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const kn_dec_plan &pl = p.plan;
    /* the next call may launch now; nothing is read before the previous one has finished (its
     * outputs may be this call's Q, K, V, lengths, and Lean's acknowledgements). Without a
     * length array the range is arithmetic on the parameters, so it is computed before the wait
     * and the range's first blocks are asked of L2 while the previous kernel ends. */
    kc_pdl_launch_dependents();
    const bool early = p.lens == nullptr;
    if (!early) kc_pdl_wait();

    /* this CTA's range of the global tile order */
    kn_dec_int t0 = 0, t1 = 0, cta = blockIdx.x, c_eff = gridDim.x, w_tiles = 0;
    if (SCHEME == KN_DEC_FA2) {
        kn_dec_int n;
        t0 = kn_dec_unit_first(&pl, p.lens, cta, &n);
        t1 = t0 + n;
    } else if (SCHEME == KN_DEC_SPLIT) {
        kn_dec_int n, u = cta / p.splits, j = cta % p.splits, b0, e0;
        kn_dec_int f = kn_dec_unit_first(&pl, p.lens, u, &n);
        kn_dec_split_range(n, p.splits, j, &b0, &e0);
        t0 = f + b0;
        t1 = f + e0;
    } else {
        w_tiles = kn_dec_total_tiles(&pl, p.lens);
        c_eff = kn_dec_lean_ctas(&pl, p.lens, w_tiles, gridDim.x);
        if (cta < c_eff) kn_dec_lean_range(w_tiles, c_eff, cta, &t0, &t1);
    }
    const int nb = (int)((t1 - t0) * BPT);
    if (early) {
        prefetch_l2<T, D>(p, t0, nb, p.prefetch);
        kc_pdl_wait();
    }

    if (SCHEME == KN_DEC_SPLIT && nb == 0) { /* an empty split: the empty state */
        unit_rows ur = rows_of(pl, cta / p.splits);
        float *s = p.scratch + (size_t)cta * slot_floats<D>();
        for (int e = threadIdx.x; e < ur.nrows * D; e += NTHREADS) s[e] = 0.f;
        if (threadIdx.x < ur.nrows) {
            s[ROWS * D + threadIdx.x] = -INFINITY;
            s[ROWS * D + ROWS + threadIdx.x] = 0.f;
        }
        return;
    }

    /* Lean: this slot's last acknowledged epoch, loaded before the copies are issued so it does
     * not queue behind them; only thread 0 uses it, when it raises the flag */
    unsigned ack = 0;
    if (SCHEME == KN_DEC_LEAN && threadIdx.x == 0 && cta < c_eff)
        ack = *(volatile unsigned *)(p.acks + cta);

    cursor<T, D> cur, pre; /* the block computed, the block prefetched */
    if (nb > 0) {
        cur.start(p, t0);
        pre = cur;
    }
    /* prologue: STAGES - 1 blocks in flight */
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < nb) {
            if (s > 0) pre.next(p);
            const bool first = s == 0 || pre.seg_first();
            issue_block<T, D>(pre, first, sK + (size_t)s * BK * D, sV + (size_t)s * BK * D,
                              sQ + (size_t)s * ROWS * D);
        }
        kc_cp_async_commit();
    }

    float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.f, 0.f}, o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    uint32_t qa[D / 16][4];

    for (int bi = 0; bi < nb; bi++) {
        kc_cp_async_wait<STAGES - 2>();
        __syncthreads();
        { /* prefetch block bi + STAGES - 1 into the stage block bi - 1 used */
            const int nx = bi + STAGES - 1;
            if (nx < nb) {
                pre.next(p);
                const bool first = pre.seg_first();
                const int st = nx % STAGES;
                issue_block<T, D>(pre, first, sK + (size_t)st * BK * D, sV + (size_t)st * BK * D,
                                  sQ + (size_t)st * ROWS * D);
            }
            kc_cp_async_commit();
        }
        const int st = bi % STAGES;
        const T *K = sK + (size_t)st * BK * D, *V = sV + (size_t)st * BK * D;
        if (bi > 0) cur.next(p);
        const bool seg_first = bi == 0 || cur.seg_first();
        const bool seg_last = bi == nb - 1 || cur.unit_last();
        if (seg_first) {
            const T *Qs = sQ + (size_t)st * ROWS * D;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) kc_frag_a<T, D>(qa[kk], Qs, 0, kk * 16, lane);
        }

        /* S = Q K^T for the warp's KPW keys */
        float s[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
            for (int n2 = 0; n2 < NT / 2; n2++) {
                uint32_t bf[4];
                kc_frag_b_nk<T, D>(bf, K, warp * KPW + 16 * n2, kk * 16, lane);
                kc_mma<T>(s[2 * n2], qa[kk], bf[0], bf[1]);
                kc_mma<T>(s[2 * n2 + 1], qa[kk], bf[2], bf[3]);
            }
        const int kbase = cur.key0() + warp * KPW;
        if (kbase + KPW > cur.len) { /* the ragged end of the cache */
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    if (kbase + nt * 8 + 2 * t + (j & 1) >= cur.len) s[nt][j] = -INFINITY;
        }
        /* online softmax for rows g (h2 = 0) and g + 8 (h2 = 1), in log2 units */
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            float mx = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < NT; nt++) mx = fmaxf(mx, fmaxf(s[nt][2 * h2], s[nt][2 * h2 + 1]));
            mx = kc_quad_max(mx * p.scale_log2);
            const float mnew = fmaxf(m_r[h2], mx), base = mnew == -INFINITY ? 0.f : mnew;
            const float alpha = kc_exp2(m_r[h2] - base);
            m_r[h2] = mnew;
            float sum = 0.f;
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    float e = kc_exp2(s[nt][2 * h2 + j] * p.scale_log2 - base);
                    s[nt][2 * h2 + j] = e;
                    sum += e;
                }
            l_r[h2] = l_r[h2] * alpha + sum;
#pragma unroll
            for (int i = 0; i < D / 8; i++) {
                o[i][2 * h2] *= alpha;
                o[i][2 * h2 + 1] *= alpha;
            }
        }
        /* O += P V: the S accumulators of two n8 tiles are one k16 A fragment of P */
#pragma unroll
        for (int ks = 0; ks < KPW / 16; ks++) {
            uint32_t pa[4];
            pa[0] = kc_type<T>::pack(s[2 * ks][0], s[2 * ks][1]);
            pa[1] = kc_type<T>::pack(s[2 * ks][2], s[2 * ks][3]);
            pa[2] = kc_type<T>::pack(s[2 * ks + 1][0], s[2 * ks + 1][1]);
            pa[3] = kc_type<T>::pack(s[2 * ks + 1][2], s[2 * ks + 1][3]);
#pragma unroll
            for (int np = 0; np < D / 16; np++) {
                uint32_t bf[4];
                kc_frag_b_kn<T, D>(bf, V, warp * KPW + 16 * ks, np * 16, lane);
                kc_mma<T>(o[2 * np], pa, bf[0], bf[1]);
                kc_mma<T>(o[2 * np + 1], pa, bf[2], bf[3]);
            }
        }
        if (!seg_last) continue;

            /* the segment ends: merge the warps' states in a fixed order through shared memory
             * (the K and V stage just read are free once every warp has passed the barrier) */
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            l_r[h2] = kc_quad_sum(l_r[h2]);
            if (t == 0) {
                wm[warp][g + 8 * h2] = m_r[h2];
                wl[warp][g + 8 * h2] = l_r[h2];
            }
        }
        __syncthreads();
        float *so = reinterpret_cast<float *>(sK + (size_t)st * BK * D); /* [ROWS][D] f32 */
        float *o2 = reinterpret_cast<float *>(sV + (size_t)st * BK * D);
        float *wo = (warp < NWARPS / 2 ? so : o2) + (warp % (NWARPS / 2)) * ROWS * D;
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            const int r = g + 8 * h2;
            float mx = wm[0][r];
#pragma unroll
            for (int w = 1; w < NWARPS; w++) mx = fmaxf(mx, wm[w][r]);
            const float sc = m_r[h2] == -INFINITY ? 0.f : kc_exp2(m_r[h2] - mx);
            if (r >= cur.nrows) continue; /* padding rows of the m16 tile */
#pragma unroll
            for (int i = 0; i < D / 8; i++)
                *reinterpret_cast<float2 *>(wo + st_idx<D>(r, i * 8) + 2 * t) =
                    make_float2(o[i][2 * h2] * sc, o[i][2 * h2 + 1] * sc);
        }
        if (threadIdx.x < ROWS) {
            const int r = threadIdx.x;
            float mx = wm[0][r];
#pragma unroll
            for (int w = 1; w < NWARPS; w++) mx = fmaxf(mx, wm[w][r]);
            float sum = 0.f;
#pragma unroll
            for (int w = 0; w < NWARPS; w++)
                if (wm[w][r] != -INFINITY) sum += kc_exp2(wm[w][r] - mx) * wl[w][r];
            sm_m[r] = mx;
            sm_l[r] = sum;
        }
        __syncthreads();
        const unit_rows ur = rows_of(pl, cur.unit);
        const kn_dec_int first_tile = t0 + bi / BPT - cur.k; /* the unit's first tile */
        if ((SCHEME == KN_DEC_SPLIT && p.splits > 1) ||
            (SCHEME == KN_DEC_LEAN && first_tile < t0)) {
            /* a partial (a FlashDecoding split, a Lean contributor): the warps' sum goes
             * straight to this CTA's scratch slot, then (Lean) the flag */
            float *sl = p.scratch + (size_t)cta * slot_floats<D>();
            for (int e = threadIdx.x; e < cur.nrows * D; e += NTHREADS)
                __stcg(sl + e, warp_sum<D>(so, o2, e));
            if (threadIdx.x < cur.nrows) {
                __stcg(sl + ROWS * D + threadIdx.x, sm_m[threadIdx.x]);
                __stcg(sl + ROWS * D + ROWS + threadIdx.x, sm_l[threadIdx.x]);
            }
            __syncthreads();
            if (SCHEME == KN_DEC_LEAN && threadIdx.x == 0) release_flag(p.flags + cta, ack + 1u);
        } else {
            for (int e = threadIdx.x; e < cur.nrows * D; e += NTHREADS)
                so[e] = warp_sum<D>(so, o2, e);
            __syncthreads();
            if (SCHEME != KN_DEC_LEAN) {
                write_output<T, D>(p, ur, sm_m, sm_l, so);
            } else { /* the host: fold in the contributors, then write O and LSE */
                const kn_dec_int last =
                    kn_dec_lean_cta(w_tiles, c_eff, first_tile + cur.ntiles - 1);
                if (last > cta) { /* the unit is this CTA's last: its V and Q stages are free */
                    constexpr size_t fr_floats =
                        (size_t)STAGES * (BK + ROWS) * D * sizeof(T) / sizeof(float);
                    static_assert(2 * CH_LEAN * ROWS <= fr_floats,
                                  "the free stages hold a Lean host's chunk");
                    host_fixup<D>(p, cta + 1, (int)(last - cta), ur.nrows, sm_m, sm_l, so,
                                  reinterpret_cast<float *>(sV), fr_floats, sm_sc);
                }
                write_output<T, D>(p, ur, sm_m, sm_l, so);
            }
        }
        /* fresh state for the next segment */
        m_r[0] = m_r[1] = -INFINITY;
        l_r[0] = l_r[1] = 0.f;
#pragma unroll
        for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    }
    kc_cp_async_wait<0>();
}

/* FlashDecoding's combine: one CTA per unit folds its s partials and writes O and LSE. */
template <typename T, int D>
__global__ void __launch_bounds__(NTHREADS) combine_kernel(dec_params p)
{
    __shared__ float sm_m[ROWS], sm_l[ROWS], sm_sc[ROWS], cw[CH][ROWS], cl[CH][ROWS];
    __shared__ __align__(16) float so[ROWS * D];
    kc_pdl_launch_dependents();
    kc_pdl_wait(); /* the split kernel's partials */
    const kn_dec_int u = blockIdx.x;
    const unit_rows ur = rows_of(p.plan, u);
    if (threadIdx.x < ROWS) {
        sm_m[threadIdx.x] = -INFINITY;
        sm_l[threadIdx.x] = 0.f;
    }
    for (int e = threadIdx.x; e < ROWS * D; e += NTHREADS) so[e] = 0.f;
    __syncthreads();
    fold_partials<D, CH, false>(p.scratch + (size_t)u * p.splits * slot_floats<D>(),
                                slot_floats<D>(), ROWS * D, p.splits, ur.nrows, sm_m, sm_l, so, cw,
                                cl, sm_sc, false);
    write_output<T, D>(p, ur, sm_m, sm_l, so);
}

template <typename T, int D, int SCHEME> cudaError_t prepare()
{
    static bool done = false;
    if (done) return cudaSuccess;
    cudaError_t e =
        cudaFuncSetAttribute(decode_kernel<T, D, SCHEME>,
                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_bytes<T, D>());
    if (e == cudaSuccess) done = true;
    return e;
}

/* SMs x occupancy of the Lean kernel on the current device (queried once per device). */
template <typename T, int D> cudaError_t slots_of(int *slots)
{
    constexpr int MAXDEV = 64;
    static int cache[MAXDEV];
    cudaError_t e = prepare<T, D, KN_DEC_LEAN>();
    if (e != cudaSuccess) return e;
    int dev, sms, per;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess) return e;
    if (dev < MAXDEV && cache[dev] > 0) {
        *slots = cache[dev];
        return cudaSuccess;
    }
    if ((e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess)
        return e;
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, decode_kernel<T, D, KN_DEC_LEAN>,
                                                      NTHREADS, smem_bytes<T, D>());
    if (e != cudaSuccess) return e;
    *slots = sms * per;
    if (dev < MAXDEV) cache[dev] = *slots;
    return cudaSuccess;
}

struct ws_layout {
    size_t flags_off, scratch_off, bytes;
};

/* Workspace: Lean's flags and acks (KC_DEC_FLAG_SLOTS each, whatever the call's slots, so one
 * workspace serves every scheme and slot count without a partial landing on a flag), then the
 * partial slots. */
constexpr size_t KC_DEC_FLAG_SLOTS = 4096;
ws_layout layout_of(const kc_dec_shape *s, int scheme, kn_dec_int slots, int max_len)
{
    kn_dec_plan pl =
        kn_dec_make_plan((kn_dec_int)s->b, (kn_dec_int)s->h, (kn_dec_int)s->h_kv, (kn_dec_int)s->d);
    const size_t sf = (size_t)ROWS * (s->d + 2);
    kn_dec_int nslots = 0;
    if (scheme == KN_DEC_LEAN) nslots = slots;
    if (scheme == KN_DEC_SPLIT)
        nslots = pl.units * kn_dec_splits(&pl, kn_dec_seq_tiles(&pl, max_len), slots);
    ws_layout w;
    w.flags_off = 0;
    w.scratch_off = 2 * KC_DEC_FLAG_SLOTS * sizeof(unsigned); /* flags, then acks */
    w.bytes = w.scratch_off + (size_t)nslots * sf * sizeof(float);
    return w;
}

/* Launches with programmatic stream serialization where the GPU has it (sm_90 and later), so
 * the launch of a call overlaps the end of the kernel before it in the stream (both kernels
 * wait for their predecessor before reading anything: kc_pdl_wait). ATTNSIM_KC_NO_PDL=1 turns
 * it off (to measure what it is worth). */
bool pdl_enabled()
{
    static const bool on = [] {
        const char *off = getenv("ATTNSIM_KC_NO_PDL");
        int dev = 0, major = 0;
        bool ok =
            !(off && *off && *off != '0') && cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            major >= 9;
        cudaGetLastError();
        return ok;
    }();
    return on;
}

/* Blocks a CTA asks of L2 before the wait (ATTNSIM_KC_DEC_PREFETCH overrides, 0 turns it
 * off; 3 measured best of 0, 2, 3, 5 and 8 on an H100, docs/performance.md). */
#ifndef KC_DEC_PREFETCH
#define KC_DEC_PREFETCH 3
#endif
int prefetch_blocks()
{
    static const int n = [] {
        const char *e = getenv("ATTNSIM_KC_DEC_PREFETCH");
        return e && *e ? atoi(e) : KC_DEC_PREFETCH;
    }();
    return n;
}

template <typename K>
cudaError_t launch_pdl(K kern, unsigned grid, size_t smem, cudaStream_t st, const dec_params &p)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(grid);
    cfg.blockDim = dim3(NTHREADS);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = pdl_enabled() ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kern, p);
}

template <typename T, int D>
cudaError_t launch(const kc_dec_shape *s, int scheme, const void *q, const void *k, const void *v,
                   const int *lens, int max_len, void *o, float *lse, void *ws, int slots,
                   cudaStream_t st)
{
    dec_params p;
    p.q = q;
    p.k = k;
    p.v = v;
    p.o = o;
    p.lse = lse;
    p.lens = lens;
    p.plan = kn_dec_make_plan((kn_dec_int)s->b, (kn_dec_int)s->h, (kn_dec_int)s->h_kv, D);
    if (!lens) p.plan.uniform_len = max_len; /* every sequence holds max_len tokens */
    p.n_cap = (kn_dec_int)s->n_cap;
    p.scale_log2 = KC_LOG2E / sqrtf((float)D);
    ws_layout w = layout_of(s, scheme, slots, max_len);
    unsigned char *wb = static_cast<unsigned char *>(ws);
    p.flags = reinterpret_cast<unsigned *>(wb + w.flags_off);
    p.acks = reinterpret_cast<unsigned *>(wb + w.flags_off + w.scratch_off / 2);
    p.scratch = reinterpret_cast<float *>(wb + w.scratch_off);
    p.splits = 1;
    p.prefetch = prefetch_blocks();
    const size_t smem = smem_bytes<T, D>();
    cudaError_t e;
    if (scheme == KN_DEC_FA2) {
        if ((e = prepare<T, D, KN_DEC_FA2>()) != cudaSuccess) return e;
        return launch_pdl(decode_kernel<T, D, KN_DEC_FA2>, (unsigned)p.plan.units, smem, st, p);
    }
    if (scheme == KN_DEC_SPLIT) {
        p.splits = (int)kn_dec_splits(&p.plan, kn_dec_seq_tiles(&p.plan, max_len), slots);
        if ((e = prepare<T, D, KN_DEC_SPLIT>()) != cudaSuccess) return e;
        e = launch_pdl(decode_kernel<T, D, KN_DEC_SPLIT>, (unsigned)(p.plan.units * p.splits), smem,
                       st, p);
        if (e != cudaSuccess || p.splits == 1) return e;
        return launch_pdl(combine_kernel<T, D>, (unsigned)p.plan.units, 0, st, p);
    }
    if ((e = prepare<T, D, KN_DEC_LEAN>()) != cudaSuccess) return e;
    int cap; /* more CTAs than fit at once could wait forever on an unscheduled contributor */
    if ((e = slots_of<T, D>(&cap)) != cudaSuccess) return e;
    if (slots > cap) return cudaErrorInvalidValue;
    return launch_pdl(decode_kernel<T, D, KN_DEC_LEAN>, (unsigned)slots, smem, st, p);
}

} // namespace

extern "C" int kc_decode_supported(const kc_dec_shape *s)
{
    return (s->dtype == 1 || s->dtype == 2) && (s->d == 64 || s->d == 128) && s->h_kv > 0 &&
           s->h % s->h_kv == 0 && s->b > 0 && s->n_cap > 0;
}

extern "C" int kc_decode_slots(int dtype, size_t d, int *slots)
{
    cudaError_t e = cudaErrorInvalidValue;
    if (dtype == 1 && d == 64) e = slots_of<__half, 64>(slots);
    if (dtype == 1 && d == 128) e = slots_of<__half, 128>(slots);
    if (dtype == 2 && d == 64) e = slots_of<__nv_bfloat16, 64>(slots);
    if (dtype == 2 && d == 128) e = slots_of<__nv_bfloat16, 128>(slots);
    return (int)e;
}

extern "C" size_t kc_decode_workspace_bytes(const kc_dec_shape *s, int scheme, int slots,
                                            int max_len)
{
    return layout_of(s, scheme, slots, max_len).bytes;
}

extern "C" int kc_decode_splits(const kc_dec_shape *s, int slots, int max_len)
{
    kn_dec_plan pl =
        kn_dec_make_plan((kn_dec_int)s->b, (kn_dec_int)s->h, (kn_dec_int)s->h_kv, (kn_dec_int)s->d);
    return (int)kn_dec_splits(&pl, kn_dec_seq_tiles(&pl, max_len), slots);
}

extern "C" int kc_decode(const kc_dec_shape *s, int scheme, const void *q, const void *k,
                         const void *v, const int *lens, int max_len, void *o, float *lse,
                         void *workspace, int slots, void *stream)
{
    if (!kc_decode_supported(s) || scheme < 0 || scheme > 2 || slots < 1 ||
        (size_t)slots > KC_DEC_FLAG_SLOTS || max_len < 0 || (size_t)max_len > s->n_cap)
        return (int)cudaErrorInvalidValue;
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    cudaError_t e = cudaErrorInvalidValue;
    if (s->dtype == 1 && s->d == 64)
        e = launch<__half, 64>(s, scheme, q, k, v, lens, max_len, o, lse, workspace, slots, st);
    if (s->dtype == 1 && s->d == 128)
        e = launch<__half, 128>(s, scheme, q, k, v, lens, max_len, o, lse, workspace, slots, st);
    if (s->dtype == 2 && s->d == 64)
        e = launch<__nv_bfloat16, 64>(s, scheme, q, k, v, lens, max_len, o, lse, workspace, slots,
                                      st);
    if (s->dtype == 2 && s->d == 128)
        e = launch<__nv_bfloat16, 128>(s, scheme, q, k, v, lens, max_len, o, lse, workspace, slots,
                                       st);
    return (int)e;
}
