/* run_setup.c - the checks `attnsim run` makes before any work (run.h): the node of every rank
 * from the host names, every check of the command line that needs P (backend, comm, grid,
 * Ulysses groups, heads, head dimension, sequence lengths), and the host memory of every point
 * of the sweep against what each rank and node has. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fail.h"
#include "hostmem.h"
#include "memory_estimate.h"
#include "run.h"
#include "sweep.h"
#ifdef ATTNSIM_HAVE_CUDA
#include "kc_attn.h"
#endif

/* Host of every rank -> node index (first appearance order), on every rank; the ranks per
 * node when they are packed evenly in rank order. */
void run_node_map(run_env *env)
{
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    env->hosts = kn_xmalloc((size_t)env->P * 64, "host names");
    MPICALL(MPI_Allgather(host, 64, MPI_CHAR, env->hosts, 64, MPI_CHAR, MPI_COMM_WORLD));
    env->node_of = kn_xmalloc((size_t)env->P * sizeof(int32_t), "node map");
    env->nodes = 0;
    for (int r = 0; r < env->P; r++) {
        env->node_of[r] = -1;
        for (int q = 0; q < r && env->node_of[r] < 0; q++)
            if (!strcmp(env->hosts + 64 * q, env->hosts + 64 * r))
                env->node_of[r] = env->node_of[q];
        if (env->node_of[r] < 0) env->node_of[r] = env->nodes++;
    }
    int per_node = 0, packed = 1;
    for (int r = 0; r < env->P; r++) per_node += env->node_of[r] == 0;
    for (int r = 0; r < env->P; r++) packed &= env->node_of[r] == r / per_node;
    env->ranks_per_node = packed && env->P % per_node == 0 ? (uint64_t)per_node : 0;
}

/* Every check of the command line that needs P; identical on every rank. */
int run_validate(run_env *env)
{
    attn_opts *o = &env->o;
    uint64_t P = (uint64_t)env->P;
#ifndef ATTNSIM_HAVE_CUDA
    if (o->backend != BACKEND_CPU)
        return cli_error(o, "--backend",
                         "'cuda': this build has no CUDA (configure with nvcc present); accepted: "
                         "cpu");
#endif
    if (o->comm == COMM_NCCL && o->backend != BACKEND_CUDA)
        return cli_error(o, "--comm",
                         "'nccl' needs --backend cuda; accepted with --backend cpu: "
                         "mpi");
#ifndef ATTNSIM_HAVE_NCCL
    if (o->comm == COMM_NCCL)
        return cli_error(o, "--comm", "'nccl': this build has no NCCL; accepted: mpi");
#endif
    if (o->backend == BACKEND_CUDA && (o->dtypes & (1u << KN_F32)))
        return cli_error(o, "--dtype",
                         "'f32' is not run on the GPU (its kernels take half precision); "
                         "accepted with --backend cuda: f16, bf16");
    if (cli_resolve_kv_heads(o)) return 2;
    unsigned grid_algos = 0;
    for (int a = 0; a < AM_NUM_ALGOS; a++)
        if (am_algo_desc_of((am_algo)a)->grid == AM_GRID_2D) grid_algos |= 1u << a;
    if (o->algos & grid_algos) {
        if (!o->grid.is_auto && o->grid.rows && o->grid.rows * o->grid.cols != P)
            return cli_error(o, "--grid",
                             "%llux%llu has %llu devices but the job has P = %llu "
                             "ranks (mpirun -n); accepted: RxC with R C = P, or "
                             "auto",
                             (unsigned long long)o->grid.rows, (unsigned long long)o->grid.cols,
                             (unsigned long long)(o->grid.rows * o->grid.cols),
                             (unsigned long long)P);
        if (!o->grid.is_auto && !o->grid.rows && !am_square_side(P))
            return cli_error(o, "--grid",
                             "P = %llu ranks is not a square, so a2d-no/a2d-o have "
                             "no default grid; accepted: a square P, --grid RxC "
                             "with R C = P, or --grid auto",
                             (unsigned long long)P);
    }
    for (int a = 0; a < AM_NUM_ALGOS; a++) {
        const am_algo_desc *d = am_algo_desc_of((am_algo)a);
        if (!(o->algos & (1u << a))) continue;
        uint64_t u = o->ulysses_size ? o->ulysses_size : env->ranks_per_node;
        if (d->grid == AM_GRID_GROUPS && o->ulysses_size && P % u)
            return cli_error(o, "--ulysses-size",
                             "%llu does not divide the P = %llu ranks; accepted: a divisor of "
                             "P",
                             (unsigned long long)u, (unsigned long long)P);
        if (d->grid == AM_GRID_GROUPS && !u)
            return cli_error(o, "--ulysses-size",
                             "%s groups the ranks of a node, but the %llu ranks are not placed "
                             "evenly over the %d nodes in rank order; accepted: --ulysses-size "
                             "U with U dividing P",
                             d->name, (unsigned long long)P, env->nodes);
        if (d->head_split == AM_COMM_WORLD && o->kv_heads < P)
            return cli_error(o, "--kv-heads",
                             "%s splits the K/V heads over the ranks: "
                             "kv-heads %llu < P = %llu; accepted: kv-heads >= P",
                             d->name, (unsigned long long)o->kv_heads, (unsigned long long)P);
        if (d->head_split == AM_COMM_GROUP && o->kv_heads < u)
            return cli_error(o, "--kv-heads",
                             "%s splits the K/V heads over the u = %llu ranks of a group: "
                             "kv-heads %llu < u; accepted: kv-heads >= u, or a smaller "
                             "--ulysses-size",
                             d->name, (unsigned long long)u, (unsigned long long)o->kv_heads);
    }
#ifdef ATTNSIM_HAVE_CUDA
    for (size_t i = 0; o->backend == BACKEND_CUDA && i < o->head_dim.n; i++) {
        kc_shape ks = {KN_BF16, 1, 1, 1, 1, 1, o->head_dim.v[i], 0, NULL, NULL};
        if (kc_attn_path(&ks) == KC_PATH_UNSUPPORTED || o->head_dim.v[i] % 2)
            return cli_error(o, "--head-dim",
                             "%llu has no CUDA kernel; accepted with --backend cuda: "
                             "even values up to 256 (64 and 128 on tensor cores)",
                             (unsigned long long)o->head_dim.v[i]);
    }
#endif
    for (size_t i = 0; i < o->seq.n; i++)
        if (o->seq.v[i] < P)
            return cli_error(o, "--seq",
                             "N = %llu is smaller than the P = %llu ranks; accepted: "
                             "N >= P (every rank holds at least one token)",
                             (unsigned long long)o->seq.v[i], (unsigned long long)P);
    return 0;
}

/* Host memory of every point of the sweep, before any work: each rank's need
 * against what its address-space limit leaves, each node's ranks together against 80% of its
 * memory. Returns 0, or 2 with the line kept (cli_defer) for agree_outcome. */
int run_check_memory(run_env *env)
{
    attn_opts *o = &env->o;
    int local = 0, with_root = env->node_of[env->rank] == env->node_of[0]; /* run_node_map */
    for (int r = 0; r < env->P; r++) local += env->node_of[r] == env->node_of[env->rank];
    hostmem hm;
    hostmem_query(&hm);
    const int cuda = o->backend == BACKEND_CUDA;
    env->mem_rank = env->mem_root = 0;
    sweep_iter sw = {0};
    int DT = sweep_mask(&sw, o->dtypes, KN_NUM_DTYPES), HD = sweep_list(&sw, &o->head_dim),
        SQ = sweep_list(&sw, &o->seq), AL = sweep_mask(&sw, o->algos, AM_NUM_ALGOS);
    while (sweep_next(&sw)) {
        int dt = (int)sw.v[DT];
        am_config c;
        sweep_config(o, &env->m, (int)sw.v[AL], (uint64_t)env->P, sw.v[SQ], sw.v[HD], 0, dt, 0,
                     env->ranks_per_node, &c);
        double root = exec_host_bytes(&c, dt, 0, o->check, cuda);
        double other = env->P > 1 ? exec_host_bytes(&c, dt, 1, o->check, cuda) : root;
        double mine = env->rank == 0 ? root : other;
        double on_node = local * other + (with_root ? root - other : 0);
        env->mem_rank = fmax(env->mem_rank, other);
        env->mem_root = fmax(env->mem_root, root);
        char why[300], b[32];
        if (hostmem_fits(&hm, mine, on_node, local, 0.8, why, sizeof why)) {
            sweep_free(&sw);
            return cli_error(o, "--seq",
                             "N = %llu (%s %s, d = %llu, %s) needs %s of host memory on rank %d, "
                             "%s; accepted: smaller shapes, or more ranks or nodes",
                             (unsigned long long)c.N, am_algo_name(c.algo), am_pass_names[c.pass],
                             (unsigned long long)c.head_dim, kn_dtype_name((kn_dtype)dt),
                             hostmem_format(mine, b, sizeof b), env->rank, why);
        }
    }
    return 0;
}
