/* kc_dispatch.cu - the public attention entry points (kc_attn.h): which kernel serves a call.
 *
 * kc_attn_path sorts a shape: f16/bf16 with d in {64, 128} go to the tensor cores, every other
 * (dtype, d <= 256) to the generic kernels (kc_generic.cu: one warp per query row). On the
 * tensor cores, the Hopper kernels (kc_fa3_fwd.cu, kc_fa3_bwd.cu: wgmma and TMA, sm_90a) serve
 * a call where they are usable (kc_fa3_*_usable: the GPU, the head dimension, 16-byte aligned
 * operands), else the sm_80 kernels (kc_fa2_fwd.cu, kc_fa2_bwd.cu: mma.sync). The block sizes
 * the IO model uses follow the same choice.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "kc_attn.h"
#include "kc_internal.h"

extern "C" kc_path kc_attn_path(const kc_shape *s)
{
    if (s->d == 0 || s->d > 256 || s->h_kv == 0 || s->h % s->h_kv != 0 || s->dtype < 0 ||
        s->dtype > 2 || s->nq > 0x7fffffff || s->nk > 0x7fffffff ||
        (s->causal && !s->qpos != !s->kpos)) /* positions: both or neither */
        return KC_PATH_UNSUPPORTED;
    if (s->dtype != 0 && (s->d == 64 || s->d == 128)) return KC_PATH_TENSOR_CORE;
    return KC_PATH_GENERIC;
}

extern "C" const char *kc_path_name(kc_path p)
{
    return p == KC_PATH_TENSOR_CORE ? "tensor-core" : p == KC_PATH_GENERIC ? "generic" : "none";
}

extern "C" void kc_attn_fwd_blocks(size_t d, size_t *br, size_t *bc)
{
    if ((d == 64 || d == 128) && kc_fa3_fwd_available())
        kc_fa3_fwd_blocks(d, br, bc);
    else
        kc_fa2_fwd_tc_blocks(br, bc);
}

extern "C" void kc_attn_bwd_blocks(size_t d, size_t *br, size_t *bc)
{
    if ((d == 64 || d == 128) && kc_fa3_fwd_available())
        kc_fa3_bwd_blocks(d, br, bc);
    else
        kc_fa2_bwd_tc_blocks(br, bc);
}

/* The forward in final (o_out) or partial (m, l, o) mode on the kernel that serves it. */
static cudaError_t forward(const kc_shape *s, const void *q, const void *k, const void *v,
                           size_t kv_begin, size_t kv_end, int accumulate, float *m, float *l,
                           float *o, void *o_out, float *lse, cudaStream_t st)
{
    kc_path path = kc_attn_path(s);
    if (path == KC_PATH_UNSUPPORTED || kv_begin > kv_end || kv_end > s->nk)
        return cudaErrorInvalidValue;
    if (path == KC_PATH_GENERIC)
        return kc_generic_fwd(s, q, k, v, kv_begin, kv_end, accumulate, m, l, o, o_out, lse, st);
    if (kc_fa3_fwd_usable(s, q, k, v))
        return kc_fa3_fwd(s, q, k, v, kv_begin, kv_end, accumulate, m, l, o, o_out, lse, st);
    return kc_fa2_fwd_tc(s, q, k, v, kv_begin, kv_end, accumulate, m, l, o, o_out, lse, st);
}

extern "C" int kc_attn_fwd(const kc_shape *s, const void *q, const void *k, const void *v, void *o,
                           float *lse, void *stream)
{
    return (int)forward(s, q, k, v, 0, s->nk, 0, NULL, NULL, NULL, o, lse, (cudaStream_t)stream);
}

extern "C" int kc_attn_fwd_partial(const kc_shape *s, const void *q, const void *k, const void *v,
                                   size_t kv_begin, size_t kv_end, int accumulate, float *m,
                                   float *l, float *o, void *stream)
{
    return (int)forward(s, q, k, v, kv_begin, kv_end, accumulate, m, l, o, NULL, NULL,
                        (cudaStream_t)stream);
}

extern "C" size_t kc_attn_bwd_workspace_bytes(const kc_shape *s)
{
    const size_t rows = s->b * s->h * s->nq;
    if (kc_attn_path(s) == KC_PATH_GENERIC) /* dsum, dk_acc, dv_acc */
        return (rows + 2 * s->b * s->h_kv * s->nk * s->d) * sizeof(float);
    return (rows * s->d + rows) * sizeof(float); /* dq_acc, dsum */
}

extern "C" int kc_attn_bwd(const kc_shape *s, const void *q, const void *k, const void *v,
                           const void *o, const void *d_o, const float *lse, void *dq, void *dk,
                           void *dv, void *workspace, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    kc_path path = kc_attn_path(s);
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
    if (kc_fa3_bwd_usable(s, q, k, v, d_o, dq_acc)) {
        e = kc_fa3_bwd(s, q, k, v, d_o, lse, dsum, dq_acc, dk, dv, 0, st);
        if (e != cudaSuccess) return (int)e;
    } else if (s->nk > 0 && s->b * s->h_kv > 0) {
        e = kc_fa2_bwd_tc(s, 0, q, k, v, d_o, lse, dsum, dq_acc, dk, dv, st);
        if (e != cudaSuccess) return (int)e;
    }
    return (int)kc_convert_scaled(s->dtype, dq_acc, dq, rows * s->d,
                                  (float)(1.0 / sqrt((double)s->d)), st);
}

extern "C" int kc_attn_bwd_tile(const kc_shape *s, const void *q, const void *k, const void *v,
                                const void *d_o, const float *lse, const float *dsum, float *dq_acc,
                                float *dk_acc, float *dv_acc, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    kc_path path = kc_attn_path(s);
    if (path == KC_PATH_UNSUPPORTED) return (int)cudaErrorInvalidValue;
    if (s->nq == 0 || s->nk == 0 || s->b * s->h == 0) return 0; /* nothing to add */
    if (path == KC_PATH_GENERIC)
        return (int)kc_generic_bwd_tile(s, q, k, v, d_o, lse, dsum, dq_acc, dk_acc, dv_acc, st);
    if (kc_fa3_bwd_usable(s, q, k, v, d_o, dq_acc))
        return (int)kc_fa3_bwd(s, q, k, v, d_o, lse, dsum, dq_acc, dk_acc, dv_acc, 1, st);
    return (int)kc_fa2_bwd_tc(s, 1, q, k, v, d_o, lse, dsum, dq_acc, dk_acc, dv_acc, st);
}
