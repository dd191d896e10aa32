/* dev_cuda.h - binding a rank to its GPU for the CUDA device of the executor (exec.h). */
#ifndef ATTNSIM_DEV_CUDA_H
#define ATTNSIM_DEV_CUDA_H

#include "exec.h"

/* Makes `device` this rank's GPU (and creates the compute stream once). Returns the number of
 * GPUs this process sees, or -1 when there is none or `device` is not one of them. */
int dev_cuda_bind(int device);
/* The compute stream every operation of the CUDA device is queued on (cudaStream_t). */
void *dev_cuda_stream(void);

/* The whole problem p (inputs on the host) on this GPU with the CUDA FA2 kernels, the
 * reference of --check on shapes too large for the float64 one: O, and with bwd dQ, dK, dV,
 * as float64 arrays (caller frees). */
void dev_cuda_reference(const kn_problem *p, int bwd, double **o, double **dq, double **dk,
                        double **dv);

/* Calibration (attnsim calibrate --backend cuda): the fastest of `reps` calls (after one
 * warm-up; CUDA events) of the FA2 forward or backward on one sequence of n tokens, h heads,
 * head dim d, in seconds; the device-to-device copy rate (bytes read + written per second);
 * the GPU's name. */
double dev_cuda_time_fa2(int dtype, size_t h, size_t n, size_t d, int causal, int fwd, int reps);
double dev_cuda_copy_rate(size_t bytes);
void dev_cuda_device_name(char *name, size_t n);

#endif
