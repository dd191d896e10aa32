/* kc_fa3_fwd.cu - FlashAttention forward on Hopper warpgroup MMA (wgmma, sm_90a): the same
 * contract as the mma.sync forward of kc_fa2_fwd.cu (final O and LSE, or the partial state
 * m, l, o with accumulation; no mask, bottom-right causal, or causal by token positions), used
 * in its place where the GPU and the binary have sm_90a (kc_fa3_fwd_available).
 *
 * One CTA of two warpgroups (256 threads) per 128 query rows; each warpgroup owns 64 rows. Q
 * and three stages each of 128-key K and V tiles sit in shared memory in the panelled 128-byte
 * swizzle wgmma reads (kc_wgmma.cuh), brought by TMA (3-D tensor maps [heads][rows][d], boxes of
 * 64 columns; rows past the end arrive as zeros) that one thread issues, each stage completing
 * on an mbarrier (full) and handed back through another (empty: every consumer warp arrives
 * once it is done reading). No CTA-wide barrier in the loop: the warpgroups drift freely.
 * Per key block j, in each warpgroup:
 *   issue S_j = Q K_j^T        m64n128k16, both operands from shared memory
 *   issue O += P_{j-1} V_{j-1} m64nDk16, P from registers (the accumulator layout is the
 *                              register-A layout), V transposed (MN-major) from shared memory
 *   (thread 0: the copies of K_{j+2} and V_{j+1} into the stages just released)
 *   wait for S_j; masks and online softmax of S_j while P V still runs on the tensor cores;
 *   wait for P V; rescale O.
 * Keys of block j + 2 are in flight two blocks ahead, values one and a half. Tried and measured
 * slower (H100, experiments/prefill-peers/bench.py): ping-pong of the two warpgroups through
 * named barriers (each taking turns to issue its GEMMs): 0.89-0.97x at d = 128, 0.81-0.92x at
 * d = 64 of this schedule.
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

constexpr int NWG = 2, NTHREADS = 128 * NWG, BR = 64 * NWG, BC = 128, STAGES = 3;

struct fa3_params {
    CUtensorMap tq, tk, tv; /* Q [b h][nq][d], K and V [b h_kv][nk][d]: boxes of 64 columns */
    void *o;
    float *lse;
    float *m, *l, *oacc; /* partial mode */
    const unsigned long long *qpos, *kpos;
    int h, h_kv, nq, nk, kv_begin, kv_end, accumulate;
    float scale_log2;
};

/* Shared memory: Q, then the K stages, then the V stages (panelled, 128B swizzle; 1024-byte
 * aligned), then the mbarriers. */
template <typename T, int D> struct fa3_smem {
    static constexpr int Q = BR * D, KV = BC * D; /* elements */
    static constexpr size_t BYTES =
        (size_t)(Q + 2 * STAGES * KV) * sizeof(T) + (1 + 4 * STAGES) * 8 + 1024;
};

template <typename T, int D, int MASK, bool PARTIAL>
__global__ void __launch_bounds__(NTHREADS, 1) fa3_fwd_kernel(const __grid_constant__ fa3_params p)
{
    constexpr bool CAUSAL = MASK != MASK_NONE, POS = MASK == MASK_POS;
    constexpr int NO = D / 2, PANELS = D / 64; /* O accumulators per thread; 64-column panels */
    constexpr unsigned KV_BYTES = BC * D * sizeof(T), Q_BYTES = BR * D * sizeof(T);
    using SM = fa3_smem<T, D>;
    extern __shared__ unsigned char smem_raw[];
    T *sQ =
        reinterpret_cast<T *>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
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
    const int q0 = qb * BR, w0 = 64 * wg + 16 * warp; /* the warp's first row in the block */

    const int diag = p.nk - p.nq; /* key j visible to query i iff j <= i + diag */
    const int kend = kc_block_kend<CAUSAL, POS>(p.qpos, p.kpos, p.nq, p.nk, diag, p.kv_end, q0, BR);
    const int ntiles = kend > p.kv_begin ? (kend - p.kv_begin + BC - 1) / BC : 0;

    /* the copies: block j of K or V into stage j % STAGES, one box per 64-column panel */
    auto load_kv = [&](const CUtensorMap &map, T *base, uint64_t *full, int j) {
        const int st = j % STAGES;
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

    const uint32_t aQ = kc_smem_addr(sQ) + (uint32_t)(64 * wg * 64 * sizeof(T));
    /* S = Q K^T of block j, issued and committed (not waited for): K-major A (this warpgroup's
     * 64 Q rows) and B (128 keys) */
    auto issue_s = [&](int j) {
        const uint32_t aK = kc_smem_addr(sK + (j % STAGES) * SM::KV);
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            const uint32_t panel = (uint32_t)(kk >> 2), within = (uint32_t)(kk & 3) * 32;
            const uint64_t da = kc_wg_desc(aQ + panel * BR * 128 + within, 16, 1024);
            const uint64_t db = kc_wg_desc(aK + panel * BC * 128 + within, 16, 1024);
            kc_wgmma<T>::ss_n128(s, da, db, kk > 0); /* 128 keys */
        }
        kc_wg_commit();
    };
    /* O += P V of block j: P packed from the softmax's registers, V MN-major from its stage */
    uint32_t a[BC / 16][4];
    auto issue_pv = [&](int j) {
        const uint32_t aV = kc_smem_addr(sV + (j % STAGES) * SM::KV);
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++)
            kc_wgmma_rs<T, D>(o, a[kk], kc_wg_desc(aV + (uint32_t)kk * 16 * 128, BC * 128, 1024));
        kc_wg_commit();
    };
    auto pack_p = [&]() {
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            a[kk][0] = kc_type<T>::pack(s[8 * kk], s[8 * kk + 1]);
            a[kk][1] = kc_type<T>::pack(s[8 * kk + 2], s[8 * kk + 3]);
            a[kk][2] = kc_type<T>::pack(s[8 * kk + 4], s[8 * kk + 5]);
            a[kk][3] = kc_type<T>::pack(s[8 * kk + 6], s[8 * kk + 7]);
        }
    };
    /* masks of block j, then the online softmax (log2 units of the scaled scores): s becomes
     * P, m and l move on, alpha is the factor O must be rescaled by */
    float alpha[2];
    bool raised;
    auto softmax = [&](int j) {
        const int kv0 = p.kv_begin + j * BC;
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
                for (int jj = 0; jj < BC / 8; jj++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int col = kv0 + 8 * jj + 2 * t + e, r = ROW(h2);
                        const bool masked =
                            col >= kend || (POS ? p.kpos[col] > qp : CAUSAL && col > r + diag);
                        if (masked) s[4 * jj + 2 * h2 + e] = -INFINITY;
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
    };
    auto rescale_o = [&]() {
        if (__any_sync(0xffffffffu, raised)) {
#pragma unroll
            for (int jj = 0; jj < D / 8; jj++) {
                o[4 * jj] *= alpha[0];
                o[4 * jj + 1] *= alpha[0];
                o[4 * jj + 2] *= alpha[1];
                o[4 * jj + 3] *= alpha[1];
            }
        }
    };

    if (ntiles > 0) { /* block 0: S, softmax */
        kc_mbar_wait(fullQ, 0);
        kc_mbar_wait(fullK, 0);
        kc_wg_fence();
        issue_s(0);
        kc_wg_wait0();
        kc_wg_fence_regs(s);
        if (lane == 0) kc_mbar_arrive(emptyK);
        softmax(0);
        rescale_o();
    }
    for (int j = 1; j < ntiles; j++) {
        pack_p(); /* P of block j - 1 */
        kc_mbar_wait(fullK + j % STAGES, (unsigned)(j / STAGES) & 1u);
        kc_mbar_wait(fullV + (j - 1) % STAGES, (unsigned)((j - 1) / STAGES) & 1u);
        kc_wg_fence();
        issue_s(j);
        issue_pv(j - 1);
        if (leader) { /* K of block j + 2 (stage of block j - 1), V of block j + 1 */
            if (j + 2 < ntiles) {
                if (j + 2 >= STAGES)
                    kc_mbar_wait(emptyK + (j + 2) % STAGES, (unsigned)((j + 2) / STAGES - 1) & 1u);
                load_kv(p.tk, sK, fullK, j + 2);
            }
            if (j + 1 < ntiles) {
                if (j + 1 >= STAGES)
                    kc_mbar_wait(emptyV + (j + 1) % STAGES, (unsigned)((j + 1) / STAGES - 1) & 1u);
                load_kv(p.tv, sV, fullV, j + 1);
            }
        }
        kc_wg_wait1(); /* S of block j */
        kc_wg_fence_regs(s);
        if (lane == 0) kc_mbar_arrive(emptyK + j % STAGES);
        softmax(j);
        kc_wg_wait0(); /* P V of block j - 1 */
        kc_wg_fence_regs(o);
        if (lane == 0) kc_mbar_arrive(emptyV + (j - 1) % STAGES);
        rescale_o();
    }
    if (ntiles > 0) { /* P V of the last block */
        pack_p();
        kc_mbar_wait(fullV + (ntiles - 1) % STAGES, (unsigned)((ntiles - 1) / STAGES) & 1u);
        kc_wg_fence();
        issue_pv(ntiles - 1);
        kc_wg_wait0();
        kc_wg_fence_regs(o);
    }

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
    const int smem = (int)fa3_smem<T, D>::BYTES;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((s->nq + BR - 1) / BR), (unsigned)(s->b * s->h));
    kern<<<grid, NTHREADS, smem, st>>>(p);
    return cudaGetLastError();
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
    (void)d;
    *br = BR;
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
    cudaError_t e;
    if ((e = kc_tma_map_3d(&p.tq, s->dtype, q, s->d, s->nq, s->b * s->h, BR)) != cudaSuccess ||
        (e = kc_tma_map_3d(&p.tk, s->dtype, k, s->d, s->nk, s->b * s->h_kv, BC)) != cudaSuccess ||
        (e = kc_tma_map_3d(&p.tv, s->dtype, v, s->d, s->nk, s->b * s->h_kv, BC)) != cudaSuccess)
        return e;
    const bool partial = o_out == NULL;
    return kc_dispatch_tc(s, partial, KC_LAUNCH_TC(launch, s, p, st));
}
