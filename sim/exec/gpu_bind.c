/* gpu_bind.c - which GPU a rank drives (`attnsim run` and `attnsim calibrate` with
 * --backend cuda); see gpu_bind.h. */
#include "gpu_bind.h"

#include <cuda_runtime.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dev_cuda.h"
#include "fail.h"

/* 1 if every rank of `world` drives a different GPU, else 0 with the first two ranks sharing
 * one named in `why`. */
static int distinct_gpus(MPI_Comm world, int device, char *why, size_t n)
{
    struct {
        char host[64];
        char uuid[16];
    } me, *all;
    memset(&me, 0, sizeof me);
    gethostname(me.host, sizeof me.host - 1);
    struct cudaDeviceProp prop;
    CUDACALL(cudaGetDeviceProperties(&prop, device));
    memcpy(me.uuid, prop.uuid.bytes, 16);
    int P, ok = 1;
    MPICALL(MPI_Comm_size(world, &P));
    all = kn_xmalloc((size_t)P * sizeof *all, "device list");
    MPICALL(MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, world));
    for (int a = 0; a < P && ok; a++)
        for (int b = a + 1; b < P && ok; b++)
            if (!strcmp(all[a].host, all[b].host) && !memcmp(all[a].uuid, all[b].uuid, 16)) {
                snprintf(why, n, "ranks %d and %d share one GPU on %s", a, b, all[a].host);
                ok = 0;
            }
    free(all);
    return ok;
}

int gpu_bind(attn_opts *o, int rank, int P, int *device)
{
    MPI_Comm node;
    int local = 0, rc = 0;
    MPICALL(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
    MPICALL(MPI_Comm_rank(node, &local));
    MPICALL(MPI_Comm_free(&node));
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
    int dev = count > 0 ? local % count : 0;
    const char *env_dev = getenv("ATTNSIM_DEVICE");
    if (env_dev && *env_dev) {
        const char *p = env_dev;
        for (int i = 0; i < local && strchr(p, ','); i++) p = strchr(p, ',') + 1;
        char *end;
        long v = strtol(p, &end, 10);
        dev = (end == p || v < 0 || v > 1024) ? -1 : (int)v;
    }
    char why[200] = "";
    if (count == 0)
        snprintf(why, sizeof why,
                 "'cuda': rank %d sees no CUDA device; accepted: cpu, or run "
                 "where each rank sees a GPU",
                 rank);
    else if (dev < 0 || dev >= count || dev_cuda_bind(dev) < 0)
        snprintf(why, sizeof why,
                 "'cuda': ATTNSIM_DEVICE='%s' names no GPU of rank %d; "
                 "accepted: indices 0 to %d (one, or one per local rank, comma-separated)",
                 env_dev ? env_dev : "", rank, count - 1);
    int bad = why[0] != 0, any = 0;
    MPICALL(MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (any) { /* the lowest failing rank's reason, said once by rank 0 */
        int who = bad ? rank : P, first = 0;
        MPICALL(MPI_Allreduce(&who, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
        if (first != 0) {
            if (rank == first) MPICALL(MPI_Send(why, sizeof why, MPI_CHAR, 0, 7, MPI_COMM_WORLD));
            if (rank == 0)
                MPICALL(MPI_Recv(why, sizeof why, MPI_CHAR, first, 7, MPI_COMM_WORLD,
                                 MPI_STATUS_IGNORE));
        }
        return cli_error(o, "--backend", "%s", why);
    }
    *device = dev;
    if (o->comm == COMM_NCCL && !distinct_gpus(MPI_COMM_WORLD, dev, why, sizeof why))
        rc = cli_error(o, "--comm",
                       "'nccl' needs one GPU per rank, but %s; accepted: mpi (host-staged, "
                       "ranks may share a GPU), or no more ranks than GPUs",
                       why);
    return rc;
}
