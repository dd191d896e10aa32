/* kc_fa2_fwd.cu - FlashAttention-2 forward on tensor cores (mma.sync, sm_80+), final (O, LSE)
 * or partial (m, l, o) output (kc_attn.h).
 *
 * One CTA of 4 warps per (128-row query block, batch x head); each warp owns 32 query rows (two
 * m-tiles, so every K/V fragment read from shared memory feeds two products) and keeps their O
 * accumulators in registers for the whole key loop (and their Q fragments too at d = 64). K/V
 * blocks of 64 keys stream through two shared-memory stages with cp.async (block j + 1 loads while
 * block j is computed). S = Q K^T and the online softmax stay in registers; P goes straight from
 * the S accumulators into the A fragments of O += P V. Causal CTAs stop at the last key their last
 * row can see and mask only the blocks that cross the diagonal (with token positions: the last key
 * whose position is at most the last row's, found by bisection, and the blocks whose last key lies
 * after the warp's first row); query blocks are scheduled heaviest first. O is normalised once at
 * the end and written through shared memory in 16-byte chunks.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "kc_attn.h"
#include "kc_common.cuh"
#include "kc_internal.h"

namespace
{

/* Per warp MT m-tiles of 16 query rows (each K/V fragment read from shared memory feeds MT
 * products); 4 warps; BR = 64 MT query rows and BC = 64 keys per block. */
constexpr int NWARPS = 4, NTHREADS = 32 * NWARPS, BC = 64, MT = 2, BR = 16 * MT * NWARPS;

struct fwd_params {
    const void *q, *k, *v;
    void *o;
    float *lse;
    float *m, *l, *oacc;                   /* partial mode */
    const unsigned long long *qpos, *kpos; /* MASK_POS */
    int h, h_kv, nq, nk, kv_begin, kv_end, accumulate;
    float scale_log2;
};

/* Q fragments stay in registers where they fit (d = 64); at d = 128 they are re-read from
 * shared memory, which leaves the registers to the 2 x 16 rows of O and S. */
template <int D> struct q_in_regs {
    static constexpr bool value = D <= 64;
};

template <typename T, int D, int MASK, bool PARTIAL>
__global__ void __launch_bounds__(NTHREADS, 2) fa2_fwd_kernel(fwd_params p)
{
    constexpr bool CAUSAL = MASK != MASK_NONE, POS = MASK == MASK_POS;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T *sQ = reinterpret_cast<T *>(smem_raw);
    T *sK = sQ + BR * D; /* two stages */
    T *sV = sK + 2 * BC * D;
    constexpr bool QREG = q_in_regs<D>::value;

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int qb = gridDim.x - 1 - blockIdx.x; /* heaviest causal blocks first */
    const int bh = blockIdx.y, bi = bh / p.h, hi = bh % p.h, hk = hi / (p.h / p.h_kv);
    const int q0 = qb * BR, w0 = warp * 16 * MT; /* the warp's first row in the block */
    const T *Q = static_cast<const T *>(p.q) + (size_t)bh * p.nq * D;
    const T *K = static_cast<const T *>(p.k) + (size_t)(bi * p.h_kv + hk) * p.nk * D;
    const T *V = static_cast<const T *>(p.v) + (size_t)(bi * p.h_kv + hk) * p.nk * D;

    const int diag = p.nk - p.nq; /* key j visible to query i iff j <= i + diag */
    const int kend = kc_block_kend<CAUSAL, POS>(p.qpos, p.kpos, p.nq, p.nk, diag, p.kv_end, q0, BR);
    const int ntiles = kend > p.kv_begin ? (kend - p.kv_begin + BC - 1) / BC : 0;

    /* this thread's rows: m-tile mt, half h2 -> q0 + w0 + 16 mt + g + 8 h2 */
#define ROW(mt, h2) (q0 + w0 + 16 * (mt) + g + 8 * (h2))
    float m[MT][2], l[MT][2], o[MT][D / 8][4];
    /* an m-tile's accumulators as the flat m16n8 layout the partial-state helpers take */
    auto o_flat = [&](int mt) -> float(&)[D / 2] {
        return reinterpret_cast<float(&)[D / 2]>(o[mt]);
    };
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            m[mt][h2] = -INFINITY;
            l[mt][h2] = 0.f;
        }
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < D / 8; i++) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
    if (PARTIAL && p.accumulate) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++) {
                if (ROW(mt, h2) >= p.nq) continue;
                kc_state_load_row<D>(p.m, p.l, p.oacc, (size_t)bh * p.nq + ROW(mt, h2), t, h2,
                                     m[mt][h2], l[mt][h2], o_flat(mt));
            }
    }

    kc_load_tile<T, D, BR, NTHREADS>(sQ, Q, q0, p.nq);
    kc_cp_async_commit();
    if (ntiles > 0) {
        kc_load_tile<T, D, BC, NTHREADS>(sK, K + (size_t)p.kv_begin * D, 0, p.nk - p.kv_begin);
        kc_load_tile<T, D, BC, NTHREADS>(sV, V + (size_t)p.kv_begin * D, 0, p.nk - p.kv_begin);
        kc_cp_async_commit();
        kc_cp_async_wait<1>();
    } else {
        kc_cp_async_wait<0>();
    }
    __syncthreads();
    uint32_t qf[QREG ? MT : 1][QREG ? D / 16 : 1][4];
    if (QREG) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int kk = 0; kk < (QREG ? D / 16 : 1); kk++)
                kc_frag_a<T, D>(qf[QREG ? mt : 0][kk], sQ, w0 + 16 * mt, kk * 16, lane);
    }

    for (int it = 0; it < ntiles; it++) {
        const int stage = it & 1, kv0 = p.kv_begin + it * BC;
        const T *cK = sK + stage * BC * D, *cV = sV + stage * BC * D;
        if (it + 1 < ntiles) {
            const int nxt = kv0 + BC;
            kc_load_tile<T, D, BC, NTHREADS>(sK + (stage ^ 1) * BC * D, K + (size_t)nxt * D, 0,
                                             p.nk - nxt);
            kc_load_tile<T, D, BC, NTHREADS>(sV + (stage ^ 1) * BC * D, V + (size_t)nxt * D, 0,
                                             p.nk - nxt);
            kc_cp_async_commit();
            kc_cp_async_wait<1>();
        } else {
            kc_cp_async_wait<0>();
        }
        __syncthreads();

        float s[MT][BC / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int i = 0; i < BC / 8; i++)
                s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t qa[MT][4];
            if (!QREG) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
                    kc_frag_a<T, D>(qa[mt], sQ, w0 + 16 * mt, kk * 16, lane);
            }
#pragma unroll
            for (int nn = 0; nn < BC / 16; nn++) {
                uint32_t b[4];
                kc_frag_b_nk<T, D>(b, cK, nn * 16, kk * 16, lane);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    const uint32_t *a = QREG ? qf[QREG ? mt : 0][QREG ? kk : 0] : qa[mt];
                    kc_mma<T>(s[mt][2 * nn], a, b[0], b[1]);
                    kc_mma<T>(s[mt][2 * nn + 1], a, b[2], b[3]);
                }
            }
        }

        /* masks: keys past the range (ragged tail, partial range) and, under causal masking,
         * keys right of the diagonal; only blocks that need it pay for it */
        const bool ragged = kv0 + BC > kend;
        bool crosses;
        if (POS) /* the block's last key (in range) lies after the warp's first row */
            crosses = p.kpos[min(kv0 + BC, kend) - 1] > p.qpos[min(q0 + w0, p.nq - 1)];
        else
            crosses = CAUSAL && kv0 + BC - 1 > q0 + w0 + diag;
        if (ragged || crosses) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int h2 = 0; h2 < 2; h2++) {
                    /* rows past nq (never written) take the last row's position */
                    const unsigned long long qp = POS ? p.qpos[min(ROW(mt, h2), p.nq - 1)] : 0ull;
#pragma unroll
                    for (int nn = 0; nn < BC / 8; nn++)
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            const int col = kv0 + nn * 8 + 2 * t + e, r = ROW(mt, h2);
                            /* col < kend <= nk before the position is read */
                            const bool masked =
                                col >= kend || (POS ? p.kpos[col] > qp : CAUSAL && col > r + diag);
                            if (masked) s[mt][nn][2 * h2 + e] = -INFINITY;
                        }
                }
        }

        /* online softmax, in log2 units of the scaled scores; O is rescaled only when some
         * row of the warp raised its maximum (after the first blocks, rarely) */
        float alpha[MT][2];
        bool raised = false;
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++) {
                float mx = -INFINITY;
#pragma unroll
                for (int nn = 0; nn < BC / 8; nn++)
                    mx = fmaxf(mx, fmaxf(s[mt][nn][2 * h2], s[mt][nn][2 * h2 + 1]));
                mx = kc_quad_max(mx);
                const float mnew = fmaxf(m[mt][h2], mx * p.scale_log2);
                const float base = mnew == -INFINITY ? 0.f : mnew; /* a row with no key yet */
                alpha[mt][h2] = kc_exp2(m[mt][h2] - base);
                raised |= mnew != m[mt][h2];
                float sum = 0.f;
#pragma unroll
                for (int nn = 0; nn < BC / 8; nn++) {
                    float a0 = kc_exp2(fmaf(s[mt][nn][2 * h2], p.scale_log2, -base));
                    float a1 = kc_exp2(fmaf(s[mt][nn][2 * h2 + 1], p.scale_log2, -base));
                    s[mt][nn][2 * h2] = a0;
                    s[mt][nn][2 * h2 + 1] = a1;
                    sum += a0 + a1;
                }
                l[mt][h2] = l[mt][h2] * alpha[mt][h2] + sum;
                m[mt][h2] = mnew;
            }
        if (__any_sync(0xffffffffu, raised)) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nn = 0; nn < D / 8; nn++) {
                    o[mt][nn][0] *= alpha[mt][0];
                    o[mt][nn][1] *= alpha[mt][0];
                    o[mt][nn][2] *= alpha[mt][1];
                    o[mt][nn][3] *= alpha[mt][1];
                }
        }

        /* O += P V */
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            uint32_t a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                a[mt][0] = kc_type<T>::pack(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                a[mt][1] = kc_type<T>::pack(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                a[mt][2] = kc_type<T>::pack(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                a[mt][3] = kc_type<T>::pack(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int nn = 0; nn < D / 16; nn++) {
                uint32_t b[4];
                kc_frag_b_kn<T, D>(b, cV, kk * 16, nn * 16, lane);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    kc_mma<T>(o[mt][2 * nn], a[mt], b[0], b[1]);
                    kc_mma<T>(o[mt][2 * nn + 1], a[mt], b[2], b[3]);
                }
            }
        }
        __syncthreads(); /* this stage is free for block it + 2 */
    }

#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) l[mt][h2] = kc_quad_sum(l[mt][h2]);

    if (PARTIAL) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++) {
                if (ROW(mt, h2) >= p.nq) continue;
                kc_state_store_row<D>(p.m, p.l, p.oacc, (size_t)bh * p.nq + ROW(mt, h2), t, h2,
                                      m[mt][h2], l[mt][h2], o_flat(mt));
            }
        return;
    }

    /* O = o / l through shared memory (sQ is free: the loop ends with a barrier, and without
     * iterations this one protects the Q fragments) */
    __syncthreads();
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            const float inv = l[mt][h2] > 0.f ? 1.f / l[mt][h2] : 0.f;
            const int r = w0 + 16 * mt + g + 8 * h2;
#pragma unroll
            for (int nn = 0; nn < D / 8; nn++)
                *reinterpret_cast<uint32_t *>(sQ + kc_swz<D>(r, nn * 8) + 2 * t) =
                    kc_type<T>::pack(o[mt][nn][2 * h2] * inv, o[mt][nn][2 * h2 + 1] * inv);
            if (t == 0 && ROW(mt, h2) < p.nq)
                p.lse[(size_t)bh * p.nq + ROW(mt, h2)] = kc_row_lse(m[mt][h2], l[mt][h2]);
        }
    __syncthreads();
    T *O = static_cast<T *>(p.o) + (size_t)bh * p.nq * D;
    for (int c = threadIdx.x; c < BR * D / 8; c += NTHREADS) {
        const int r = c / (D / 8), col = (c % (D / 8)) * 8;
        if (q0 + r < p.nq)
            *reinterpret_cast<uint4 *>(O + (size_t)(q0 + r) * D + col) =
                *reinterpret_cast<const uint4 *>(sQ + kc_swz<D>(r, col));
    }
}

template <typename T, int D, int MASK, bool PARTIAL>
cudaError_t launch(const kc_shape *s, const fwd_params &p, cudaStream_t st)
{
    auto kern = fa2_fwd_kernel<T, D, MASK, PARTIAL>;
    const int smem = (BR + 4 * BC) * D * (int)sizeof(T);
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((s->nq + BR - 1) / BR), (unsigned)(s->b * s->h));
    kern<<<grid, NTHREADS, smem, st>>>(p);
    return cudaGetLastError();
}

cudaError_t fwd_tc(const kc_shape *s, fwd_params p, bool partial, cudaStream_t st)
{
    p.h = (int)s->h, p.h_kv = (int)s->h_kv, p.nq = (int)s->nq, p.nk = (int)s->nk;
    p.scale_log2 = (float)(1.0 / sqrt((double)s->d)) * KC_LOG2E;
    p.qpos = s->qpos, p.kpos = s->kpos;
    if (s->nq == 0 || s->b * s->h == 0) return cudaSuccess;
    return kc_dispatch_tc(s, partial, KC_LAUNCH_TC(launch, s, p, st));
}

} // namespace

cudaError_t kc_fa2_fwd_tc(const kc_shape *s, const void *q, const void *k, const void *v,
                          size_t kv_begin, size_t kv_end, int accumulate, float *m, float *l,
                          float *o, void *o_out, float *lse, cudaStream_t st)
{
    fwd_params p = {};
    p.q = q, p.k = k, p.v = v, p.o = o_out, p.lse = lse;
    p.m = m, p.l = l, p.oacc = o;
    p.kv_begin = (int)kv_begin, p.kv_end = (int)kv_end, p.accumulate = accumulate;
    return fwd_tc(s, p, o_out == NULL, st);
}

void kc_fa2_fwd_tc_blocks(size_t *br, size_t *bc)
{
    *br = BR;
    *bc = BC;
}
