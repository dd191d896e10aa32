/* gpu_bind.h - binding each MPI rank to its GPU for --backend cuda. */
#ifndef ATTNSIM_GPU_BIND_H
#define ATTNSIM_GPU_BIND_H

#include "cli.h"

/* This rank's GPU is ATTNSIM_DEVICE if set (one index for every rank, or a comma-separated list
 * indexed by the rank's index on its node), else its node-local rank modulo the GPUs it sees;
 * binds it (dev_cuda_bind). With --comm nccl every rank must have its own GPU. Collective over
 * MPI_COMM_WORLD; returns 0, or 2 after one line naming what is wrong (the same on every rank). */
int gpu_bind(attn_opts *o, int rank, int P, int *device);

#endif
