/* comm.h - the communication layer of `attnsim run`: every message an algorithm sends goes
 * through here, on the world, row or column communicator, and is counted (bytes sent, bytes
 * received, messages) in the current phase; each phase is timed on the rank itself (no
 * barrier). Phases are the model's (models/algo.h): an algorithm names the phase it enters and
 * the layer finds it in the configuration's phase list, so executor, model and HDF5 writer share
 * one list. Collectives are written as point-to-point rings (docs/model.md, "Rings"), so the
 * counts are exactly what reaches MPI, and Open MPI's pml monitoring sees every message. */
#ifndef ATTNSIM_COMM_H
#define ATTNSIM_COMM_H

#include <mpi.h>
#include <stdint.h>

#include "algo.h"

typedef struct {
    uint64_t bytes_sent, bytes_recv, msgs_sent, msgs_recv;
    double time_s;  /* time spent in the phase */
    double start_s; /* when the phase began, from `origin` */
    double end_s;   /* when the phase ended, from `origin` */
} comm_stats;

typedef struct {
    MPI_Comm world, row, col; /* row: the C members of this rank's grid row (rank = column);
                                 col: the R members of its column (rank = row) */
    int rank, P;
    int F;
    am_phase phases[AM_MAX_PHASES];
    comm_stats st[AM_MAX_PHASES];
    int *row_world, *col_world;       /* world rank of each member of row and col */
    uint64_t *peer_bytes, *peer_msgs; /* [P]: sent to each world rank in recorded phases */
    int cur;                          /* phase being recorded, or -1 */
    int recording;                    /* 0 while an unrecorded forward runs (pass bwd) */
    double t0;
    double origin; /* MPI_Wtime at the run's start barrier */
} comm_ctx;

void comm_init(comm_ctx *c, const am_config *cfg, MPI_Comm world);
void comm_free(comm_ctx *c);
/* Enters a phase of the model's list (a name not in it is a programming error, except while
 * not recording); ends it, adding its wall time. */
void comm_phase_begin(comm_ctx *c, const char *name);
void comm_phase_end(comm_ctx *c);

typedef struct {
    MPI_Request r[16];
    int n;
} comm_reqs;

/* Counted non-blocking point-to-point on communicator `on` (peer ranks in it). */
void comm_isend(comm_ctx *c, comm_reqs *q, MPI_Comm on, int dest, const void *buf, uint64_t bytes);
void comm_irecv(comm_ctx *c, comm_reqs *q, MPI_Comm on, int src, void *buf, uint64_t bytes);
void comm_waitall(comm_reqs *q);
/* Send to dest and receive from src at once; either may be MPI_PROC_NULL. */
void comm_sendrecv(comm_ctx *c, MPI_Comm on, int dest, const void *sbuf, uint64_t sbytes, int src,
                   void *rbuf, uint64_t rbytes);

/* Ring all-gather over `on` (g members; this one is its rank k): blocks[j] holds bytes[j]
 * bytes for every member j, blocks[k] already filled; g-1 steps, each forwarding downstream the
 * block received in the previous step. */
void comm_ring_allgather(comm_ctx *c, MPI_Comm on, void **blocks, const uint64_t *bytes);

/* Ring reduce-scatter: blocks[j] is this member's contribution to block j; step s sends the
 * running partial of block k-s-1 downstream and combines the received partial of block k-s-2
 * into its own with reduce(own, received, j, ctx). Member k ends with block k complete. */
typedef void (*comm_reduce_fn)(void *own, const void *received, int block, void *ctx);
void comm_ring_reduce_scatter(comm_ctx *c, MPI_Comm on, void **blocks, const uint64_t *bytes,
                              comm_reduce_fn reduce, void *ctx);

/* Pairwise all-to-all over `on`: round k = 1..g-1 sends send[me+k] and receives recv[me-k];
 * the caller copies its own block. */
void comm_alltoall(comm_ctx *c, MPI_Comm on, void **send, const uint64_t *sbytes, void **recv,
                   const uint64_t *rbytes);

#endif
