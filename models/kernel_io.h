/* kernel_io.h - predicted HBM traffic of the attention kernels (cost-model.md, "Kernel IO
 * model"; derivations in docs/kernels.md).
 *
 * The model predicts the *logical* HBM<->SRAM transfers of each kernel for the block sizes the
 * kernel actually uses (kn_*_blocks in kernels/) and its causal block skipping. On the CPU the
 * kernels count these transfers, so measured == predicted exactly; on a GPU the DRAM bytes lie
 * between the compulsory and the logical count. Pure C, no MPI, no CUDA.
 */
#ifndef ATTNSIM_KERNEL_IO_H
#define ATTNSIM_KERNEL_IO_H

#include <stdint.h>

#include "kn_tiling.h"

typedef enum { KIO_STANDARD_FWD, KIO_FA1_FWD, KIO_FA2_FWD, KIO_FA2_BWD } kio_kernel;

typedef struct {
    uint64_t bytes_read, bytes_written; /* logical HBM traffic of the kernel */
    uint64_t flops;                     /* matrix FLOPs of the tiles actually computed */
    uint64_t compulsory_read;           /* any exact kernel: each input read once */
    uint64_t compulsory_written;        /* ... and each output written once */
} kio_traffic;

/* elem_bytes: bytes of one stored Q/K/V/O element (e); statistics and f32 accumulators are 4
 * bytes. blk: the kernel's blocks. softmax_chunk: kn_standard_softmax_chunk(M), used by
 * KIO_STANDARD_FWD only. */
void kio_predict(kio_kernel kernel, const kn_shape *s, uint64_t elem_bytes, kn_blocks blk,
                 uint64_t softmax_chunk, kio_traffic *out);

#endif
