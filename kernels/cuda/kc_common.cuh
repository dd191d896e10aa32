/* kc_common.cuh - building blocks of the tensor-core attention kernels: element types, the
 * m16n8k16 MMA, ldmatrix, cp.async and the XOR swizzle of shared-memory tiles.
 *
 * Fragment layouts of mma.sync.m16n8k16 (PTX ISA, "Matrix fragments for mma.m16n8k16"), with
 * lane = threadIdx.x % 32, g = lane / 4 (group), t = lane % 4 (thread in group):
 *   A 16x16 row-major, 4 registers of 2 elements: a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..),
 *     a3 (g+8, 2t+8..)
 *   B 16x8 "col": 2 registers: b0 (k = 2t..2t+1, n = g), b1 (k = 2t+8.., n = g)
 *   C 16x8 f32: c0, c1 (g, 2t..2t+1), c2, c3 (g+8, 2t..2t+1)
 * so the accumulators of two adjacent n-tiles of S are, packed to 16 bits, the A fragment of the
 * next product (P V) without a trip through shared memory.
 *
 * Shared-memory tiles are [rows][D] elements with 16-byte chunks XOR-swizzled by row % 8: chunk
 * c of row r lives at chunk c ^ (r % 8). ldmatrix reads eight rows of one logical chunk per
 * phase, which land in eight distinct bank groups: no conflicts, for D = 64 and D = 128.
 */
#ifndef ATTNSIM_KC_COMMON_CUH
#define ATTNSIM_KC_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#define KC_LOG2E 1.4426950408889634f
#define KC_LN2   0.6931471805599453f

/* storage type traits */
template <typename T> struct kc_type;
template <> struct kc_type<__half> {
    static __device__ __forceinline__ uint32_t pack(float lo, float hi)
    {
        __half2 h = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&h);
    }
    static __device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
    static __device__ __forceinline__ __half from_f(float x) { return __float2half_rn(x); }
};
template <> struct kc_type<__nv_bfloat16> {
    static __device__ __forceinline__ uint32_t pack(float lo, float hi)
    {
        __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&h);
    }
    static __device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
    static __device__ __forceinline__ __nv_bfloat16 from_f(float x)
    {
        return __float2bfloat16_rn(x);
    }
};

template <> struct kc_type<float> {
    static __device__ __forceinline__ float to_f(float x) { return x; }
    static __device__ __forceinline__ float from_f(float x) { return x; }
};

/* D += A B (m16n8k16, f32 accumulate) */
template <typename T>
__device__ __forceinline__ void kc_mma(float *d, const uint32_t *a, uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void kc_mma<__half>(float *d, const uint32_t *a, uint32_t b0,
                                               uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void kc_mma<__nv_bfloat16>(float *d, const uint32_t *a, uint32_t b0,
                                                      uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t kc_smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void kc_ldmatrix_x4(uint32_t *r, uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void kc_ldmatrix_x4_trans(uint32_t *r, uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* 16-byte asynchronous copy global -> shared; src_bytes = 0 fills the chunk with zeros (rows
 * past the end of a tensor). */
__device__ __forceinline__ void kc_cp_async16(uint32_t dst, const void *src, int src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes));
}
/* Programmatic dependent launch (sm_90): the next kernel in the stream, launched with the
 * programmatic-serialization attribute, may start launching once every CTA of this grid has
 * called kc_pdl_launch_dependents; kc_pdl_wait returns once the previous grid has completed and
 * its memory is visible. No-ops on older GPUs and for launches without the attribute. */
__device__ __forceinline__ void kc_pdl_launch_dependents()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void kc_pdl_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
/* 4 bytes (zeros where src_bytes = 0), through L1. */
__device__ __forceinline__ void kc_cp_async4(uint32_t dst, const void *src, int src_bytes)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes));
}
__device__ __forceinline__ void kc_cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::);
}
template <int N> __device__ __forceinline__ void kc_cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* Element offset of (row, col) in a swizzled [rows][D] tile; col a multiple of 8 (one chunk). */
template <int D> __device__ __forceinline__ int kc_swz(int row, int col)
{
    return row * D + (((col >> 3) ^ (row & 7)) << 3);
}

/* Loads rows [row0, row0 + ROWS) of a [n][D] tensor slice into a swizzled tile with all
 * NTHREADS threads; rows at or past n are zero-filled. */
template <typename T, int D, int ROWS, int NTHREADS>
__device__ __forceinline__ void kc_load_tile(T *tile, const T *src, int row0, int n)
{
    constexpr int CHUNKS = ROWS * D / 8;
    for (int c = threadIdx.x; c < CHUNKS; c += NTHREADS) {
        int r = c / (D / 8), col = (c % (D / 8)) * 8;
        int gr = row0 + r;
        const T *p = src + (size_t)(gr < n ? gr : 0) * D + col;
        kc_cp_async16(kc_smem_addr(tile + kc_swz<D>(r, col)), p, gr < n ? 16 : 0);
    }
}

/* A fragment (16 x 16 at (row0, k0)) of a swizzled row-major tile. */
template <typename T, int D>
__device__ __forceinline__ void kc_frag_a(uint32_t *a, const T *tile, int row0, int k0, int lane)
{
    int r = row0 + (lane & 7) + ((lane >> 3) & 1) * 8, c = k0 + (lane >> 4) * 8;
    kc_ldmatrix_x4(a, kc_smem_addr(tile + kc_swz<D>(r, c)));
}
/* A fragment (16 x 16) of the transpose of a swizzled tile: rows of the fragment are columns
 * (col0..col0+15) of the tile, its k-columns are tile rows k0..k0+15. */
template <typename T, int D>
__device__ __forceinline__ void kc_frag_a_trans(uint32_t *a, const T *tile, int col0, int k0,
                                                int lane)
{
    int r = k0 + (lane & 7) + (lane >> 4) * 8, c = col0 + ((lane >> 3) & 1) * 8;
    kc_ldmatrix_x4_trans(a, kc_smem_addr(tile + kc_swz<D>(r, c)));
}
/* B fragments of two adjacent n-tiles (n0..n0+15) for k0..k0+15, from a tile stored [n][k]
 * (rows are n: K in S = Q K^T): b[0], b[1] for n-tile n0, b[2], b[3] for n0 + 8. */
template <typename T, int D>
__device__ __forceinline__ void kc_frag_b_nk(uint32_t *b, const T *tile, int n0, int k0, int lane)
{
    int r = n0 + (lane & 7) + (lane >> 4) * 8, c = k0 + ((lane >> 3) & 1) * 8;
    kc_ldmatrix_x4(b, kc_smem_addr(tile + kc_swz<D>(r, c)));
}
/* The same from a tile stored [k][n] (rows are k: V in O = P V), with ldmatrix.trans. */
template <typename T, int D>
__device__ __forceinline__ void kc_frag_b_kn(uint32_t *b, const T *tile, int k0, int n0, int lane)
{
    int r = k0 + (lane & 7) + ((lane >> 3) & 1) * 8, c = n0 + (lane >> 4) * 8;
    kc_ldmatrix_x4_trans(b, kc_smem_addr(tile + kc_swz<D>(r, c)));
}

/* 2^x on the special-function unit (ex2.approx.ftz: ~2 ulp, flushes subnormal results to 0;
 * exp2f without fast-math adds range handling around the same instruction). 2^-inf = 0. */
__device__ __forceinline__ float kc_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* Bisection over the increasing token positions pos[lo, hi): the first index whose position is
 * greater than x (upper bound) or at least x (lower bound); hi when there is none. */
__device__ __forceinline__ int kc_upper_bound(const unsigned long long *pos, int lo, int hi,
                                              unsigned long long x)
{
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        if (pos[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}
__device__ __forceinline__ int kc_lower_bound(const unsigned long long *pos, int lo, int hi,
                                              unsigned long long x)
{
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        if (pos[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The end of the keys [.., kv_end) a block of query rows [q0, q0 + br) sees: under causal
 * masking by the diagonal (key j visible to query i iff j <= i + diag, diag = nk - nq) or by
 * sorted token positions, up to the last row's last visible key. */
template <bool CAUSAL, bool POS>
__device__ __forceinline__ int kc_block_kend(const unsigned long long *qpos,
                                             const unsigned long long *kpos, int nq, int nk,
                                             int diag, int kv_end, int q0, int br)
{
    int kend = kv_end;
    if (POS)
        kend = min(kend, kc_upper_bound(kpos, 0, nk, qpos[min(q0 + br - 1, nq - 1)]));
    else if (CAUSAL)
        kend = min(kend, min(q0 + br - 1, nq - 1) + diag + 1);
    return kend;
}

/* The query blocks of br rows that see any key of a block starting at key kv0 (the backward's
 * loop over query blocks): from block *qb0 on, *per_head of them per head (0 if none). Under
 * the diagonal, query i sees key kv0 iff i >= kv0 - diag; under positions, from the first query
 * at or after the key's position. */
template <bool CAUSAL, bool POS>
__device__ __forceinline__ void kc_block_qrange(const unsigned long long *qpos,
                                                const unsigned long long *kpos, int nq, int diag,
                                                int kv0, int br, int *qb0, int *per_head)
{
    const int nqb = (nq + br - 1) / br;
    *qb0 = 0;
    *per_head = nqb;
    if (POS) {
        const int first = kc_lower_bound(qpos, 0, nq, kpos[kv0]);
        *qb0 = first / br;
        *per_head = first >= nq ? 0 : nqb - *qb0;
    } else if (CAUSAL) {
        *qb0 = max(0, kv0 - diag) / br;
        *per_head = kv0 - diag >= nq ? 0 : nqb - *qb0;
    }
}

/* Two adjacent elements of dK and of dV at offset off of [rows][D] tensors: added to f32
 * accumulators (ACC: the tile mode of a distributed run, which sums a key block's tiles) or
 * stored in the storage type (a whole backward). */
template <typename T, bool ACC>
__device__ __forceinline__ void kc_put_dkdv(void *dk, void *dv, size_t off, float k0, float k1,
                                            float v0, float v1)
{
    if (ACC) {
        float2 *a = reinterpret_cast<float2 *>(static_cast<float *>(dk) + off);
        float2 *b = reinterpret_cast<float2 *>(static_cast<float *>(dv) + off);
        const float2 x = *a, y = *b;
        *a = make_float2(x.x + k0, x.y + k1);
        *b = make_float2(y.x + v0, y.y + v1);
    } else {
        *reinterpret_cast<uint32_t *>(static_cast<T *>(dk) + off) = kc_type<T>::pack(k0, k1);
        *reinterpret_cast<uint32_t *>(static_cast<T *>(dv) + off) = kc_type<T>::pack(v0, v1);
    }
}

/* The partial state of attention rows, as the executor passes it between calls (kc_attn.h):
 * m (natural-log units of the scaled scores, -inf for a row that saw no key), l (the sum of
 * exponentials) and the unnormalised o, f32 [rows][D], row ri. A thread of the tensor-core
 * kernels holds rows h2 = 0, 1 of an m16n8 accumulator tile: o[4 j + 2 h2 + e] is column
 * 8 j + 2 t + e (t = lane % 4); it keeps m in log2 units, and each of a row's four threads a
 * part of l (thread t = 0 starts with the stored sum; kc_quad_sum before the store). */
template <int D>
__device__ __forceinline__ void kc_state_load_row(const float *pm, const float *pl, const float *po,
                                                  size_t ri, int t, int h2, float &m, float &l,
                                                  float (&o)[D / 2])
{
    m = pm[ri] * KC_LOG2E; /* -inf stays -inf */
    l = t == 0 ? pl[ri] : 0.f;
#pragma unroll
    for (int j = 0; j < D / 8; j++) {
        const float2 v2 = *reinterpret_cast<const float2 *>(po + ri * D + 8 * j + 2 * t);
        o[4 * j + 2 * h2] = v2.x;
        o[4 * j + 2 * h2 + 1] = v2.y;
    }
}
template <int D>
__device__ __forceinline__ void kc_state_store_row(float *pm, float *pl, float *po, size_t ri,
                                                   int t, int h2, float m, float l,
                                                   const float (&o)[D / 2])
{
    if (t == 0) {
        pm[ri] = m == -INFINITY ? -INFINITY : m * KC_LN2;
        pl[ri] = l;
    }
#pragma unroll
    for (int j = 0; j < D / 8; j++)
        *reinterpret_cast<float2 *>(po + ri * D + 8 * j + 2 * t) =
            make_float2(o[4 * j + 2 * h2], o[4 * j + 2 * h2 + 1]);
}
/* The log-sum-exp of a finished row (natural log) from m (log2 units) and the summed l; -inf
 * for a row that saw no key. */
__device__ __forceinline__ float kc_row_lse(float m, float l)
{
    return l > 0.f ? (m + log2f(l)) * KC_LN2 : -INFINITY;
}

/* Row reductions over the four threads of a group (they hold one row's columns). */
__device__ __forceinline__ float kc_quad_max(float x)
{
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float kc_quad_sum(float x)
{
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

#endif
