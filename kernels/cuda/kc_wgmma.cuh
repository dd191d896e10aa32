/* kc_wgmma.cuh - Hopper warpgroup MMA (wgmma.mma_async, sm_90a) for the attention kernels:
 * shared-memory matrix descriptors for the 128-byte swizzle and the three shapes the forward
 * uses (PTX ISA, "Asynchronous Warpgroup Level Matrix Multiply-Accumulate").
 *
 * Shared-memory operands are stored in "panels" of 64 columns (128 bytes of f16/bf16) per row,
 * rows 128 bytes apart, the 16-byte chunk c of row r at chunk c ^ (r % 8) (the 128B swizzle:
 * address bits 4-6 XOR bits 7-9, atoms of 8 rows = 1024 bytes, aligned to 1024 bytes); a tile
 * of more than 64 columns is several panels one after the other (kc_wg_off).
 * - K-major operand (Q as A, K as B of S = Q K^T; k = the head dimension): consecutive groups
 *   of 8 rows are SBO = 1024 bytes apart; a k16 step moves the start 32 bytes within the panel,
 *   the next panel starts ROWS x 128 bytes further.
 * - MN-major operand (V as B of O = P V, n = the head dimension, transposed by the MMA): the
 *   8-row groups along k (keys) are SBO = 1024 bytes apart and the 64-column panels along n
 *   are LBO = ROWS x 128 bytes apart; a k16 step moves the start 16 rows = 2048 bytes.
 * Accumulators of m64nNk16 (f32): thread lane of warp w in the warpgroup holds d[4j .. 4j+3]
 * for columns 8j + 2t, +1 (t = lane % 4) of rows 16w + g and 16w + g + 8 (g = lane / 4): the
 * mma.sync m16n8 layout, so packed pairs of S are the register A operand of P V.
 */
#ifndef ATTNSIM_KC_WGMMA_CUH
#define ATTNSIM_KC_WGMMA_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

/* wgmma exists on sm_90a only: elsewhere (sm_80, the host pass) these compile to traps and
 * the host never launches the kernels that use them (kc_fa3_fwd_available). */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define KC_HAVE_WGMMA 1
#else
#define KC_HAVE_WGMMA 0
#endif

/* An sm_90a instruction: nothing elsewhere (never reached there: see above). */
#if KC_HAVE_WGMMA
#define KC_SM90_ASM(...) asm volatile(__VA_ARGS__)
#else
#define KC_SM90_ASM(...) ((void)0)
#endif

/* Element offset of (row, col) in a panelled, swizzled [ROWS][D] tile. */
template <int ROWS> __device__ __forceinline__ int kc_wg_off(int row, int col)
{
    return (col >> 6) * ROWS * 64 + row * 64 + ((((col >> 3) & 7) ^ (row & 7)) << 3) + (col & 7);
}

/* Matrix descriptor: start address, leading and stride byte offsets, 128B swizzle. */
__device__ __forceinline__ uint64_t kc_wg_desc(uint32_t smem_addr, uint32_t lbo, uint32_t sbo)
{
    return (uint64_t)((smem_addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo >> 4) & 0x3FFF) << 16) |
           ((uint64_t)((sbo >> 4) & 0x3FFF) << 32) | (1ull << 62);
}

__device__ __forceinline__ void kc_wg_fence()
{
    KC_SM90_ASM("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void kc_wg_commit()
{
    KC_SM90_ASM("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void kc_wg_wait0()
{
    KC_SM90_ASM("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
/* Makes this thread's generic-proxy shared-memory writes (cp.async, st.shared) visible to the
 * async proxy that wgmma reads through; then a barrier. */
__device__ __forceinline__ void kc_fence_proxy_async()
{
    KC_SM90_ASM("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/* mbarriers and TMA (cp.async.bulk.tensor), sm_90: a full barrier per stage completes when the
 * expected bytes have landed (the producer's arrive.expect_tx plus the copies' complete_tx);
 * an empty barrier counts the consumer warps that finished reading the stage. */
__device__ __forceinline__ void kc_mbar_init(uint64_t *bar, unsigned count)
{
    KC_SM90_ASM(
        "mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"((uint32_t)__cvta_generic_to_shared(bar)),
        "r"(count)
        : "memory");
    KC_SM90_ASM("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void kc_mbar_expect_tx(uint64_t *bar, unsigned bytes)
{
    KC_SM90_ASM("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(
                    (uint32_t)__cvta_generic_to_shared(bar)),
                "r"(bytes)
                : "memory");
}
__device__ __forceinline__ void kc_mbar_arrive(uint64_t *bar)
{
    KC_SM90_ASM(
        "mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"((uint32_t)__cvta_generic_to_shared(bar))
        : "memory");
}
/* Waits until the barrier's phase of the given parity has completed. */
__device__ __forceinline__ void kc_mbar_wait(uint64_t *bar, unsigned parity)
{
    KC_SM90_ASM("{\n.reg .pred done;\n"
                "WAIT:\n"
                "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
                "@!done bra WAIT;\n"
                "}\n" ::"r"((uint32_t)__cvta_generic_to_shared(bar)),
                "r"(parity)
                : "memory");
}
/* A position in a ring of S pipeline stages, each with its mbarriers: the stage index and the
 * parity of the phase a consumer waits for there. A consumer waits for `phase` on a stage's full
 * barrier; a producer waits for `phase ^ 1` on its empty barrier before refilling it, which a
 * fresh barrier passes at once (the phase before the first counts as complete), so the first
 * round needs no special case. next() moves on one stage; at(n) is the position after n steps. */
template <int S> struct kc_ring {
    int stage = 0;
    unsigned phase = 0;
    __device__ __forceinline__ void next()
    {
        if (++stage == S) stage = 0, phase ^= 1u;
    }
    static __device__ __forceinline__ kc_ring at(int n)
    {
        kc_ring r;
        r.stage = n % S;
        r.phase = (unsigned)(n / S) & 1u;
        return r;
    }
};

/* Named barriers 1..15 (0 is __syncthreads) for n threads: sync waits, arrive does not. */
__device__ __forceinline__ void kc_bar_sync(int id, int n)
{
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void kc_bar_arrive(int id, int n)
{
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}

/* Register reallocation between warpgroups (sm_90a): every warp of a warpgroup lowers (dec) or
 * raises (inc) its per-thread register count to N; needs a register cap at kernel entry
 * (__launch_bounds__ with a minimum of 1 block). */
template <int N> __device__ __forceinline__ void kc_setmaxnreg_dec()
{
    KC_SM90_ASM("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N> __device__ __forceinline__ void kc_setmaxnreg_inc()
{
    KC_SM90_ASM("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

/* One box of a 3-D tensor map (coordinates innermost first) into shared memory, completing
 * on `bar`. `map` is the generic address of a __grid_constant__ kernel parameter. */
__device__ __forceinline__ void kc_tma_load_3d(void *dst, const void *map, int c0, int c1, int c2,
                                               uint64_t *bar)
{
    KC_SM90_ASM("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                " [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"((uint32_t)__cvta_generic_to_shared(dst)),
                "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"((uint32_t)__cvta_generic_to_shared(bar))
                : "memory");
}
/* Adds a shared-memory box into a 3-D tensor map's tensor in global memory (f32 add; elements
 * outside the tensor are skipped), as one bulk group of this thread; then the group waits. */
__device__ __forceinline__ void kc_tma_reduce_add_3d(const void *map, int c0, int c1, int c2,
                                                     const void *src)
{
    KC_SM90_ASM("cp.reduce.async.bulk.tensor.3d.global.shared::cta.add.tile.bulk_group"
                " [%0, {%1, %2, %3}], [%4];\n" ::"l"(map),
                "r"(c0), "r"(c1), "r"(c2), "r"((uint32_t)__cvta_generic_to_shared(src))
                : "memory");
}
__device__ __forceinline__ void kc_bulk_commit()
{
    KC_SM90_ASM("cp.async.bulk.commit_group;\n" ::: "memory");
}
/* This thread's bulk groups have finished reading shared memory. */
__device__ __forceinline__ void kc_bulk_wait_read()
{
    KC_SM90_ASM("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}
/* This thread's bulk groups are complete. */
__device__ __forceinline__ void kc_bulk_wait()
{
    KC_SM90_ASM("cp.async.bulk.wait_group 0;\n" ::: "memory");
}
/* Keeps the compiler from moving accesses of an accumulator across an asynchronous MMA. */
template <int N> __device__ __forceinline__ void kc_wg_fence_regs(float (&r)[N])
{
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}
__device__ __forceinline__ void kc_wg_wait1()
{
    KC_SM90_ASM("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
}

/* d (64 x N, f32) = A B (+ d when scale_d), T = __nv_bfloat16 or __half: SS reads A and B
 * through descriptors (both K-major); RS takes A from registers and B MN-major (transposed).
 * One definition per shape, instantiated for the two PTX types (KC_WGMMA_SHAPES). */
template <typename T> struct kc_wgmma;

#if KC_HAVE_WGMMA
#define KC_WGMMA_ASM(...) asm volatile(__VA_ARGS__)
#else /* never launched: the host checks for an sm_90a binary first */
#define KC_WGMMA_ASM(...) __trap()
#endif

/* The accumulator operands of an m64nN wgmma (N / 2 f32 per thread): their PTX names and the
 * inline-asm operands of d[]; the 64-register lists extend the 32-register ones. */
#define KC_WG_REGS32                                                                               \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "   \
    "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define KC_WG_REGS64                                                                               \
    KC_WG_REGS32                                                                                   \
    ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, "      \
    "%49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define KC_WG_ACC32                                                                                \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),            \
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),    \
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), \
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define KC_WG_ACC64                                                                                \
    KC_WG_ACC32, "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]),     \
        "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), \
        "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), \
        "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), \
        "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])

#define KC_WGMMA_SHAPES(T_, TY)                                                                    \
    template <> struct kc_wgmma<T_> {                                                              \
        static __device__ __forceinline__ void ss_n128(float (&d)[64], uint64_t da, uint64_t db,   \
                                                       int scale_d)                                \
        {                                                                                          \
            (void)d, (void)scale_d, (void)da, (void)db;                                            \
            KC_WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                              \
                         "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " "              \
                         "{" KC_WG_REGS64 "}, "                                                    \
                         "%64, %65, p, 1, 1, 0, 0;\n"                                              \
                         "}\n"                                                                     \
                         : KC_WG_ACC64                                                             \
                         : "l"(da), "l"(db), "r"(scale_d));                                        \
        }                                                                                          \
        /* m64n64k16 from shared memory; TR = 1 reads A and B MN-major (transposed) */             \
        template <int TR>                                                                          \
        static __device__ __forceinline__ void ss_n64(float (&d)[32], uint64_t da, uint64_t db,    \
                                                      int scale_d)                                 \
        {                                                                                          \
            (void)d, (void)scale_d, (void)da, (void)db;                                            \
            KC_WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                              \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " "               \
                         "{" KC_WG_REGS32 "}, "                                                    \
                         "%32, %33, p, 1, 1, %35, %35;\n"                                          \
                         "}\n"                                                                     \
                         : KC_WG_ACC32                                                             \
                         : "l"(da), "l"(db), "r"(scale_d), "n"(TR));                               \
        }                                                                                          \
        static __device__ __forceinline__ void rs_n128(float (&d)[64], const uint32_t (&a)[4],     \
                                                       uint64_t db, int scale_d)                   \
        {                                                                                          \
            (void)d, (void)scale_d, (void)a, (void)db;                                             \
            KC_WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                              \
                         "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " "              \
                         "{" KC_WG_REGS64 "}, "                                                    \
                         "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n"                                \
                         "}\n"                                                                     \
                         : KC_WG_ACC64                                                             \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));     \
        }                                                                                          \
        static __device__ __forceinline__ void rs_n64(float (&d)[32], const uint32_t (&a)[4],      \
                                                      uint64_t db, int scale_d)                    \
        {                                                                                          \
            (void)d, (void)scale_d, (void)a, (void)db;                                             \
            KC_WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                              \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " "               \
                         "{" KC_WG_REGS32 "}, "                                                    \
                         "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n"                                \
                         "}\n"                                                                     \
                         : KC_WG_ACC32                                                             \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));     \
        }                                                                                          \
    }

KC_WGMMA_SHAPES(__nv_bfloat16, "bf16");
KC_WGMMA_SHAPES(__half, "f16");

/* d (64 x D) += A B with A from registers and B MN-major: the P V and dV, dK products. */
template <typename T, int D>
__device__ __forceinline__ void kc_wgmma_rs(float (&d)[D / 2], const uint32_t (&a)[4], uint64_t b)
{
    if constexpr (D == 128)
        kc_wgmma<T>::rs_n128(d, a, b, 1);
    else
        kc_wgmma<T>::rs_n64(d, a, b, 1);
}

#endif
