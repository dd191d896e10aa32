/* cuda_info.cu - the CUDA stack and GPUs of this machine (see cuda_info.h). Queries only: no
 * kernels. A machine without a GPU is not an error here; the message says why none is usable. */
#include "cuda_info.h"

#include <cuda_runtime.h>
#include <stdio.h>
#ifdef ATTNSIM_HAVE_NCCL
#include <nccl.h>
#endif

static void ver(int v, char *buf, size_t n)
{
    snprintf(buf, n, "%d.%d", v / 1000, (v % 1000) / 10);
}

extern "C" int attn_cuda_describe(char *buf, size_t n)
{
    int rt = 0, drv = 0;
    char rts[16], drvs[16], nccl[32] = "";
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    ver(rt, rts, sizeof rts);
    ver(drv, drvs, sizeof drvs);
#ifdef ATTNSIM_HAVE_NCCL
    int nv = 0;
    if (ncclGetVersion(&nv) == ncclSuccess)
        snprintf(nccl, sizeof nccl, ", NCCL %d.%d.%d", nv / 10000, (nv % 10000) / 100, nv % 100);
#endif
    size_t len =
        (size_t)snprintf(buf, n, "CUDA runtime %s, driver %s%s", rts, drv ? drvs : "none", nccl);
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        if (len < n) snprintf(buf + len, n - len, "\nGPU: none usable (%s)", cudaGetErrorString(e));
        return 0;
    }
    for (int i = 0; i < count && len < n; i++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
        len += (size_t)snprintf(buf + len, n - len, "\nGPU %d: %s (sm_%d%d, %d SMs, %.0f GiB)", i,
                                p.name, p.major, p.minor, p.multiProcessorCount,
                                (double)p.totalGlobalMem / 1073741824.0);
    }
    return count;
}
