/* collectives.c - ring collectives on the grid's rows and columns and the all-to-all, as the
 * algorithms run them through the comm layer (calibrate.h). */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"
#include "fail.h"

typedef struct {
    const exec_dev *dev;
    size_t chunk;
} sum_ctx;

static void sum_f32(void *own, const void *in, int j, void *ctx)
{
    (void)j;
    const sum_ctx *c = ctx;
    c->dev->add_f32(own, in, c->chunk / sizeof(float));
}

/* Time of one collective with chunks of `chunk` bytes (slowest rank). */
double coll_time(cal_env *e, const coll_def *cd, size_t chunk)
{
    MPI_Comm on = cd->comm == AM_COMM_ROW   ? e->comm.row
                  : cd->comm == AM_COMM_COL ? e->comm.col
                                            : e->comm.world;
    int g;
    MPICALL(MPI_Comm_size(on, &g));
    void **blocks = kn_xmalloc((size_t)g * sizeof(void *), "blocks");
    void **recv = kn_xmalloc((size_t)g * sizeof(void *), "blocks");
    uint64_t *bytes = kn_xmalloc((size_t)g * sizeof(uint64_t), "sizes");
    for (int j = 0; j < g; j++) {
        blocks[j] = e->dev->alloc(chunk, "chunk"), recv[j] = e->dev->alloc(chunk, "chunk");
        e->dev->zero(blocks[j], chunk);
        bytes[j] = chunk;
    }
    sum_ctx sc = {e->dev, chunk};
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        MPICALL(MPI_Barrier(MPI_COMM_WORLD));
        double t0 = MPI_Wtime();
        if (cd->pattern == PAT_ALLGATHER)
            comm_ring_allgather(&e->comm, on, blocks, bytes);
        else if (cd->pattern == PAT_REDUCE_SCATTER)
            comm_ring_reduce_scatter(&e->comm, on, blocks, bytes, sum_f32, &sc);
        else
            comm_alltoall(&e->comm, on, blocks, bytes, recv, bytes);
        e->dev->sync();
        double t = MPI_Wtime() - t0;
        MPICALL(MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
        best = rep == 0 || t < best ? t : best;
    }
    for (int j = 0; j < g; j++) e->dev->release(blocks[j]), e->dev->release(recv[j]);
    free(blocks), free(recv), free(bytes);
    return best;
}
