/* comm.h - the communication layer of `attnsim run`: every message an algorithm sends goes
 * through here, on the world, row or column communicator, and is counted (bytes sent, bytes
 * received, messages) in the current phase; each phase is timed on the rank itself (no
 * barrier). Phases are the model's (models/algo.h): an algorithm enters a phase by its id (an
 * enum constant of models/algo_<name>.h) and the layer finds it in the configuration's phase
 * list, so executor, model and HDF5 writer share one list. Collectives are written as
 * point-to-point rings (docs/model.md, "Rings"), so the counts are exactly what reaches MPI, and
 * Open MPI's pml monitoring sees every message.
 *
 * Transports (comm_mode): buffers in host memory go to MPI as they are (COMM_HOST, the CPU
 * device); buffers in GPU memory are staged through pinned host buffers for MPI (COMM_STAGED:
 * any MPI, and several ranks may share one GPU), or sent with NCCL point-to-point calls on a
 * communication stream (COMM_DEV_NCCL: one NCCL communicator per MPI communicator, bootstrapped
 * through it). The counts are taken before the transport, so they are the same on all three. */
#ifndef ATTNSIM_COMM_H
#define ATTNSIM_COMM_H

#include <mpi.h>
#include <stdint.h>

#include "algo.h"

typedef struct {
    uint64_t bytes_sent, bytes_recv, msgs_sent, msgs_recv;
    uint64_t bytes_sent_inter, msgs_sent_inter; /* of those sent, to a rank on another node */
    double time_s;                              /* time spent in the phase */
    double start_s;                             /* when the phase began, from `origin` */
    double end_s;                               /* when the phase ended, from `origin` */
} comm_stats;

typedef enum { COMM_HOST = 0, COMM_STAGED = 1, COMM_DEV_NCCL = 2 } comm_mode;

/* The steps of an overlapped phase as one rank lived them: per step, the time its compute took
 * and the time it then still waited for its transfers (exposed), and in the probe repetition
 * (comm_ctx.serial) the time its transfers took alone, before the compute. */
typedef struct {
    int n, cap;
    double *compute_s, *exposed_s, *transfer_s; /* transfer_s: NAN unless serial */
} comm_steps;

typedef struct {
    MPI_Comm world, row, col; /* row: the C members of this rank's grid row (rank = column);
                                 col: the R members of its column (rank = row) */
    int rank, P;
    int F;
    const am_phase_desc *phases[AM_MAX_PHASES];
    comm_stats st[AM_MAX_PHASES];
    int *row_world, *col_world;       /* world rank of each member of row and col */
    uint64_t *peer_bytes, *peer_msgs; /* [P]: sent to each world rank in recorded phases */
    const int32_t *node_of;           /* [P]: node of each world rank (NULL: one node); the
                                         caller's, set after comm_init */
    int cur;                          /* phase being recorded, or -1 */
    int recording;                    /* 0 while an unrecorded forward runs (pass bwd) */
    double t0;
    double origin;   /* MPI_Wtime at the barrier that starts the repetition's clock */
    int clock_armed; /* 1: the next recorded phase begins with that barrier (comm_clock_arm) */
    comm_mode mode;
    void *stream;                               /* the device's compute stream (cudaStream_t) */
    void *(*alloc)(size_t bytes, const char *); /* memory where the buffers live (scratch) */
    void (*release)(void *p);
    void *dev;                       /* the device transport's state (comm_dev.c) */
    comm_steps steps[AM_MAX_PHASES]; /* overlapped phases, this repetition */
    int serial;                      /* probe: an overlapped step waits for its transfers first */
    double step_b, step_t0, step_t1, step_transfer;
} comm_ctx;

/* mode COMM_HOST: buffers in host memory; otherwise GPU memory, `stream` the stream the
 * device computes on (transfers are ordered after the work queued on it), alloc/release the
 * device's allocator. */
void comm_init(comm_ctx *c, const am_config *cfg, MPI_Comm world, comm_mode mode, void *stream,
               void *(*alloc)(size_t, const char *), void (*release)(void *));
void comm_free(comm_ctx *c);
/* Arms the clock of a repetition: the first phase recorded after it begins with a barrier of
 * every rank (each rank's device work queued so far finished first) and times count from
 * there. So what an algorithm prepares before its first phase (buffers, gather maps) and, with
 * --pass bwd, the unrecorded forward are not in the measured times, and every rank enters
 * that first phase together, as the model assumes. Every rank records the same phase list, so
 * every rank reaches the barrier. */
void comm_clock_arm(comm_ctx *c);
/* Enters a phase of the model's list (an id not in it is a programming error, except while
 * not recording); ends it, adding its wall time. */
void comm_phase_begin(comm_ctx *c, am_phase_id id);
void comm_phase_end(comm_ctx *c);

#define COMM_MAX_REQS 16
typedef struct {
    void *buf;      /* the caller's buffer */
    void *host;     /* COMM_STAGED: its pinned staging buffer */
    uint64_t bytes; /* size */
    int send, peer; /* direction, peer rank in `on` */
    MPI_Comm on;
} comm_op;

typedef struct {
    MPI_Request r[COMM_MAX_REQS];
    int n;
    comm_op op[COMM_MAX_REQS]; /* device transports: the operations posted */
    int nops, started;
} comm_reqs;

/* Counted non-blocking point-to-point on communicator `on` (peer ranks in it). A send's data
 * is what the buffer holds once the device's queued work is done. */
void comm_isend(comm_ctx *c, comm_reqs *q, MPI_Comm on, int dest, const void *buf, uint64_t bytes);
void comm_irecv(comm_ctx *c, comm_reqs *q, MPI_Comm on, int src, void *buf, uint64_t bytes);
/* Puts the posted operations in flight (NCCL: one group on the communication stream, after
 * the work queued on the compute stream), so compute queued next overlaps them; MPI's are in
 * flight once posted. */
void comm_start(comm_ctx *c, comm_reqs *q);
/* Waits for every operation of q; received data is then in place for the device's next work. */
void comm_waitall(comm_ctx *c, comm_reqs *q);
/* The steps of an overlapped loop (recorded in c->steps of the current phase): comm_step_begin
 * when the step begins (before it posts and starts its transfers), comm_step_compute right
 * before the step's compute, comm_step_computed right after it, and comm_step_end once it has
 * waited for the transfers. A step's exposed time is its time from begin to end less its
 * compute. q: the transfers the compute runs beside (NULL: none may be waited for before the
 * compute, e.g. a send that carries the compute's result). In the probe repetition (c->serial)
 * comm_step_compute first waits for q, and the time from begin to then is the transfers alone.
 * On a GPU the compute is timed with events on the compute stream, and comm_step_end waits for
 * it (the next step's transfers are queued after it anyway). */
void comm_step_begin(comm_ctx *c);
void comm_step_compute(comm_ctx *c, comm_reqs *q);
void comm_step_computed(comm_ctx *c);
void comm_step_end(comm_ctx *c);
/* Copies of the step records of every phase (free with comm_steps_free). */
void comm_steps_save(const comm_ctx *c, comm_steps out[AM_MAX_PHASES]);
void comm_steps_free(comm_steps s[AM_MAX_PHASES]);

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
