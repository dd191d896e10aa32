/* comm_dev.h - the device transports of the comm layer (comm.h): MPI through pinned host
 * staging buffers (COMM_STAGED) and NCCL (COMM_DEV_NCCL). Called by comm.c only. */
#ifndef ATTNSIM_COMM_DEV_H
#define ATTNSIM_COMM_DEV_H

#include "comm.h"

/* Plain MPI point-to-point of one message of any size (comm.c). */
void comm_mpi_isend(comm_reqs *q, MPI_Comm on, int dest, const void *buf, uint64_t bytes);
void comm_mpi_irecv(comm_reqs *q, MPI_Comm on, int src, void *buf, uint64_t bytes);

/* Sets up the transport for communicators world, row, col (grid of R rows) of c. */
void comm_dev_init(comm_ctx *c, uint64_t R);
void comm_dev_free(comm_ctx *c);
/* Posts one operation (send 1: buf -> peer; 0: peer -> buf). */
void comm_dev_post(comm_ctx *c, comm_reqs *q, MPI_Comm on, int peer, void *buf, uint64_t bytes,
                   int send);
void comm_dev_start(comm_ctx *c, comm_reqs *q);
/* After the MPI requests completed: received data to the device, buffers back to the pool. */
void comm_dev_finish(comm_ctx *c, comm_reqs *q);
/* Waits until the work queued on the device has finished. */
void comm_dev_sync(comm_ctx *c);
/* Marks the start (0) or the end (1) of a step's compute on the compute stream; after
 * comm_dev_sync, the time between the two marks in seconds. */
void comm_dev_mark(comm_ctx *c, int which);
double comm_dev_marked_s(comm_ctx *c);

#endif
