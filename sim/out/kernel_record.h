/* kernel_record.h - a single-device kernel run of `attnsim kernels` in the HDF5 file (kind =
 * kernel, docs/hdf5-schema.md): its shape, blocks, check, measured and predicted HBM bytes and
 * FLOPs, times, and its /summary row. */
#ifndef ATTNSIM_KERNEL_RECORD_H
#define ATTNSIM_KERNEL_RECORD_H

#include "h5out.h"
#include "kernel_study.h"

/* times: the repetitions (sorted), median their median; device: the GPU's description (cuda). */
void record_kernel_run(h5out *h, const ks_config *c, const ks_result *r, const double *times,
                       uint64_t reps, double median, uint64_t seed, int counts_match, int cuda,
                       const char *device);

#endif
