/* cuda_info.h - the CUDA stack and GPUs of this machine, for `attnsim --version` and the
 * provenance attributes of runs on the cuda backend. Built only with CUDA (ATTNSIM_HAVE_CUDA). */
#ifndef ATTNSIM_CUDA_INFO_H
#define ATTNSIM_CUDA_INFO_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes lines "CUDA runtime X, driver Y[, NCCL Z]" and "GPU i: NAME (sm_XY, N SMs, M GiB)" for
 * every visible GPU, or why there is none. Returns the number of GPUs. */
int attn_cuda_describe(char *buf, size_t n);

#ifdef __cplusplus
}
#endif

#endif
