/* kc_ops.cu - the element-wise operations a distributed attention runs around its tiles
 * (kc_attn.h): D = rowsum(dO * O), the merge of online-softmax states (algorithms.md section 1,
 * as kernels/kn_merge.c), the empty state, gathering and scattering rows by an index, f32 sums
 * and the conversion of f32 results to the storage type. All bandwidth-bound, grid-stride loops.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kc_common.cuh"
#include "kc_internal.h"

namespace
{

constexpr int NT = 256;              /* threads per CTA */
constexpr unsigned MAX_CTAS = 65535; /* grid-stride loops cover the rest */

unsigned ctas(size_t work, size_t per_cta)
{
    const size_t c = (work + per_cta - 1) / per_cta;
    return (unsigned)(c < MAX_CTAS ? c : MAX_CTAS);
}

/* One warp per row: the coefficients of kn_merge_coeffs (a side whose m is -inf contributes
 * nothing; both -inf give m = -inf and zero coefficients), then o, m, l updated in place. */
__global__ void merge_kernel(size_t rows, size_t d, float *dst_o, float *dst_m, float *dst_l,
                             const float *src_o, const float *src_m, const float *src_l)
{
    const int lane = threadIdx.x & 31;
    const size_t warps = (size_t)gridDim.x * (blockDim.x >> 5);
    for (size_t r = blockIdx.x * (size_t)(blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
         r += warps) {
        const float m1 = dst_m[r], m2 = src_m[r], l1 = dst_l[r], l2 = src_l[r];
        const float mx = m1 > m2 ? m1 : m2;
        float a1 = 0.f, a2 = 0.f;
        if (mx != -INFINITY) {
            a1 = m1 == -INFINITY ? 0.f : expf(m1 - mx);
            a2 = m2 == -INFINITY ? 0.f : expf(m2 - mx);
        }
        float *o1 = dst_o + r * d;
        const float *o2 = src_o + r * d;
        for (size_t c = lane; c < d; c += 32) o1[c] = a1 * o1[c] + a2 * o2[c];
        __syncwarp(); /* every lane has read m1, l1 before they are overwritten */
        if (lane == 0) {
            dst_m[r] = mx;
            dst_l[r] = a1 * l1 + a2 * l2;
        }
    }
}

__global__ void fill_kernel(float *x, size_t n, float value)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = value;
}

__global__ void add_kernel(float *a, const float *b, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        a[i] += b[i];
}

/* Rows of `words` words of type W; row (p, k) of the packed side is row (p, index[k]) of the
 * indexed side. */
template <typename W, bool SCATTER>
__global__ void rows_kernel(W *dst, const W *src, const unsigned long long *index, size_t n,
                            size_t total, size_t words, size_t count)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t row = i / words, w = i - row * words; /* row = p * n + k */
        const size_t p = row / n, k = row - p * n;
        const size_t indexed = (p * total + index[k]) * words + w, packed = row * words + w;
        if (SCATTER)
            dst[indexed] = src[packed];
        else
            dst[packed] = src[indexed];
    }
}

template <typename W>
cudaError_t rows_launch(void *dst, const void *src, const unsigned long long *index, size_t planes,
                        size_t n, size_t total, size_t words, int scatter, cudaStream_t st)
{
    const size_t count = planes * n * words;
    if (scatter)
        rows_kernel<W, true><<<ctas(count, NT), NT, 0, st>>>(
            static_cast<W *>(dst), static_cast<const W *>(src), index, n, total, words, count);
    else
        rows_kernel<W, false><<<ctas(count, NT), NT, 0, st>>>(
            static_cast<W *>(dst), static_cast<const W *>(src), index, n, total, words, count);
    return cudaGetLastError();
}

} // namespace

extern "C" int kc_rowdot(const kc_shape *s, const void *o, const void *d_o, float *dsum,
                         void *stream)
{
    if (s->dtype < 0 || s->dtype > 2) return (int)cudaErrorInvalidValue;
    return (int)kc_dsum(s, o, d_o, dsum, (cudaStream_t)stream);
}

extern "C" int kc_state_merge(size_t rows, size_t d, float *dst_o, float *dst_m, float *dst_l,
                              const float *src_o, const float *src_m, const float *src_l,
                              void *stream)
{
    if (rows == 0) return 0;
    merge_kernel<<<ctas(rows, NT / 32), NT, 0, (cudaStream_t)stream>>>(rows, d, dst_o, dst_m, dst_l,
                                                                       src_o, src_m, src_l);
    return (int)cudaGetLastError();
}

extern "C" int kc_state_empty(size_t rows, size_t d, float *o, float *m, float *l, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    if (rows == 0) return 0;
    cudaError_t e;
    if (d > 0 && (e = cudaMemsetAsync(o, 0, rows * d * sizeof(float), st)) != cudaSuccess)
        return (int)e;
    if ((e = cudaMemsetAsync(l, 0, rows * sizeof(float), st)) != cudaSuccess) return (int)e;
    fill_kernel<<<ctas(rows, NT), NT, 0, st>>>(m, rows, -INFINITY);
    return (int)cudaGetLastError();
}

extern "C" int kc_rows_copy(void *dst, const void *src, const unsigned long long *index,
                            size_t planes, size_t n, size_t total, size_t row_bytes, int scatter,
                            void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    if (row_bytes % 4 != 0) return (int)cudaErrorInvalidValue;
    if (n == 0 || planes == 0 || row_bytes == 0) return 0;
    const bool vec = row_bytes % 16 == 0 && ((uintptr_t)dst | (uintptr_t)src) % 16 == 0;
    if (vec)
        return (int)rows_launch<uint4>(dst, src, index, planes, n, total, row_bytes / 16, scatter,
                                       st);
    return (int)rows_launch<uint32_t>(dst, src, index, planes, n, total, row_bytes / 4, scatter,
                                      st);
}

extern "C" int kc_add_f32(float *a, const float *b, size_t n, void *stream)
{
    if (n == 0) return 0;
    add_kernel<<<ctas(n, NT), NT, 0, (cudaStream_t)stream>>>(a, b, n);
    return (int)cudaGetLastError();
}

extern "C" int kc_to_storage(int dtype, const float *src, void *dst, size_t n, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    if (dtype < 0 || dtype > 2) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    if (dtype == 0) /* f32: an exact copy */
        return (int)cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, st);
    return (int)kc_convert_scaled(dtype, src, dst, n, 1.f, st);
}
