/* kc_internal.h - what the CUDA kernel files share (not part of the C API). */
#ifndef ATTNSIM_KC_INTERNAL_H
#define ATTNSIM_KC_INTERNAL_H

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <type_traits>

#include "kc_attn.h"

/* The causal mask a shape asks for: none, bottom-right aligned (the diagonal), or by token
 * positions (kc_shape.qpos, kpos). */
enum { MASK_NONE = 0, MASK_DIAG = 1, MASK_POS = 2 };
static inline int kc_mask_kind(const kc_shape *s)
{
    return !s->causal ? MASK_NONE : s->qpos ? MASK_POS : MASK_DIAG;
}

template <int V> using kc_int = std::integral_constant<int, V>;

/* The one switch from a call's shape to a tensor-core kernel's template arguments: calls
 * f(T(), kc_int<D>(), kc_int<MASK>(), kc_int<FLAG>()) with T the shape's storage type (__half
 * or __nv_bfloat16), D its head dim (64 or 128), MASK its mask kind and FLAG = flag (each kernel
 * file's own switch: partial state, tile mode). */
template <typename F> cudaError_t kc_dispatch_tc(const kc_shape *s, bool flag, F &&f)
{
    auto by_mask = [&](auto t, auto d, auto fl) -> cudaError_t {
        switch (kc_mask_kind(s)) {
        case MASK_NONE:
            return f(t, d, kc_int<MASK_NONE>(), fl);
        case MASK_DIAG:
            return f(t, d, kc_int<MASK_DIAG>(), fl);
        default:
            return f(t, d, kc_int<MASK_POS>(), fl);
        }
    };
    auto by_dim = [&](auto t, auto fl) -> cudaError_t {
        return s->d == 64 ? by_mask(t, kc_int<64>(), fl) : by_mask(t, kc_int<128>(), fl);
    };
    auto by_type = [&](auto fl) -> cudaError_t {
        return s->dtype == 1 ? by_dim(__half(), fl) : by_dim(__nv_bfloat16(), fl);
    };
    return flag ? by_type(kc_int<1>()) : by_type(kc_int<0>());
}
/* The launch the arguments of kc_dispatch_tc's callback name: launch<T, D, MASK, FLAG>. */
#define KC_LAUNCH_TC(launch, ...)                                                                  \
    [&](auto t_, auto d_, auto m_, auto f_) {                                                      \
        return launch<decltype(t_), decltype(d_)::value, decltype(m_)::value,                      \
                      (bool)decltype(f_)::value>(__VA_ARGS__);                                     \
    }

/* The generic path (any dtype, d <= 256): one warp per query row, f32 arithmetic. Final mode
 * when o_out != NULL (writes O and LSE), else the partial state (m, l, o) over
 * [kv_begin, kv_end), starting from it when `accumulate`. */
cudaError_t kc_generic_fwd(const kc_shape *s, const void *q, const void *k, const void *v,
                           size_t kv_begin, size_t kv_end, int accumulate, float *m, float *l,
                           float *o, void *o_out, float *lse, cudaStream_t st);
/* The generic backward: D = rowsum(dO * O) into dsum, then one warp per query row computes its
 * dQ and adds its dK, dV contributions into f32 accumulators (atomics), then converts. */
cudaError_t kc_generic_bwd(const kc_shape *s, const void *q, const void *k, const void *v,
                           const void *o, const void *d_o, const float *lse, void *dq, void *dk,
                           void *dv, float *dsum, float *dk_acc, float *dv_acc, cudaStream_t st);

/* The generic backward of one tile (kc_attn_bwd_tile): adds scale dS K, scale dS^T Q and P^T dO
 * into the f32 accumulators, with D given. */
cudaError_t kc_generic_bwd_tile(const kc_shape *s, const void *q, const void *k, const void *v,
                                const void *d_o, const float *lse, const float *dsum, float *dq_acc,
                                float *dk_acc, float *dv_acc, cudaStream_t st);

/* D = rowsum(dO * O) in f32 for every query row (both paths use it). */
cudaError_t kc_dsum(const kc_shape *s, const void *o, const void *d_o, float *dsum,
                    cudaStream_t st);
/* dst (storage type) = scale * src (f32), n elements. */
cudaError_t kc_convert_scaled(int dtype, const float *src, void *dst, size_t n, float scale,
                              cudaStream_t st);

/* The sm_80 tensor-core (mma.sync) kernels, kc_fa2_fwd.cu and kc_fa2_bwd.cu, for the shapes
 * kc_attn_path calls tensor-core where the Hopper kernels do not serve them (kc_dispatch.cu
 * picks). Forward: final mode (O, LSE) when o_out != NULL, else the partial state (m, l, o)
 * over keys [kv_begin, kv_end). Backward: the main kernel, with dq_acc zeroed and dsum =
 * rowsum(dO O) prepared (dK, dV in the storage type), or with `tile` one tile of a distributed
 * attention (f32 accumulators added into). Their query (br) and key (bc) blocks. */
cudaError_t kc_fa2_fwd_tc(const kc_shape *s, const void *q, const void *k, const void *v,
                          size_t kv_begin, size_t kv_end, int accumulate, float *m, float *l,
                          float *o, void *o_out, float *lse, cudaStream_t st);
cudaError_t kc_fa2_bwd_tc(const kc_shape *s, int tile, const void *q, const void *k, const void *v,
                          const void *d_o, const float *lse, const float *dsum, float *dq_acc,
                          void *dk, void *dv, cudaStream_t st);
void kc_fa2_fwd_tc_blocks(size_t *br, size_t *bc);
void kc_fa2_bwd_tc_blocks(size_t *br, size_t *bc);

/* The Hopper (wgmma) forward, kc_fa3_fwd.cu: 1 where the current GPU runs it (sm_90a binary,
 * compute capability 9.0, ATTNSIM_KC_NO_WGMMA unset). Same contract as the tensor-core forward
 * (d = 64 or 128, f16/bf16): final mode when o_out != NULL, else the partial state. */
int kc_fa3_fwd_available(void);
/* 1 where kc_fa3_fwd runs this call: available, a head dimension it serves, and Q, K, V on
 * 16-byte boundaries (its tensor maps need them). */
int kc_fa3_fwd_usable(const kc_shape *s, const void *q, const void *k, const void *v);
cudaError_t kc_fa3_fwd(const kc_shape *s, const void *q, const void *k, const void *v,
                       size_t kv_begin, size_t kv_end, int accumulate, float *m, float *l, float *o,
                       void *o_out, float *lse, cudaStream_t st);

/* The Hopper (wgmma) backward, kc_fa3_bwd.cu: the contract of kc_fa2_bwd_tc (dq_acc zeroed and
 * dsum = rowsum(dO O) prepared; dK, dV in the storage type) or, with `tile`, of
 * kc_attn_bwd_tile (f32 accumulators added into). Usable where the forward is, with dO and the dQ
 * accumulator on 16-byte boundaries too. */
int kc_fa3_bwd_usable(const kc_shape *s, const void *q, const void *k, const void *v,
                      const void *d_o, const float *dq_acc);
/* Their query (br) and key (bc) blocks at head dim d. */
void kc_fa3_fwd_blocks(size_t d, size_t *br, size_t *bc);
void kc_fa3_bwd_blocks(size_t d, size_t *br, size_t *bc);
cudaError_t kc_fa3_bwd(const kc_shape *s, const void *q, const void *k, const void *v,
                       const void *d_o, const float *lse, const float *dsum, float *dq_acc,
                       void *dk, void *dv, int tile, cudaStream_t st);

/* TMA tensor maps (kc_fa3_fwd.cu), encoded through the driver entry point the runtime gives
 * (no -lcuda). kc_tma_available: the driver has them. A [heads][rows][d] tensor of kn_dtype
 * dtype (0 f32, 1 f16, 2 bf16) in boxes of 128 bytes of columns (the 128-byte swizzle span)
 * x box_rows rows of one head: rows past the end read as zeros and are not written. */
int kc_tma_available(void);
cudaError_t kc_tma_map_3d(CUtensorMap *map, int dtype, const void *base, size_t d, size_t rows,
                          size_t heads, unsigned box_rows);
/* Tensor maps need 16-byte aligned bases. */
static inline int kc_tma_aligned(const void *p)
{
    return ((uintptr_t)p & 15u) == 0;
}

#endif
