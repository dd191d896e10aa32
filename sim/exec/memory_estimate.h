/* memory_estimate.h - host memory one rank of `attnsim run` needs for one configuration, known
 * before the run so that a shape that cannot fit is refused before any work (docs/executor.md,
 * "Memory"). The figure is the executor's own largest buffers at the peak of each pass (the
 * shards, the blocks in flight, the gathered tensors of Attention2D, the head-split tensors of
 * Ulysses, partial states and f32 accumulators), and on rank 0 the per-rank reports, and with
 * --check the whole problem and its float64 reference. It is an upper estimate; tests compare
 * it with the peak resident memory of real runs (tests/run_memory.py). */
#ifndef ATTNSIM_MEMORY_ESTIMATE_H
#define ATTNSIM_MEMORY_ESTIMATE_H

#include "predict.h"

/* Bytes of host memory rank `rank` holds at most while running configuration c in storage
 * type `dtype` on the cpu (device 0) or a GPU (device 1: host copies and staging only). */
double exec_host_bytes(const am_config *c, int dtype, int rank, int check, int cuda);

#endif
