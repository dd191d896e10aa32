/* memory_estimate.c - the host memory of one rank of the executor (see memory_estimate.h).
 * The terms follow the allocations of run_one (cmd_run.c), the executors (exec_<name>.c) and
 * the steps they share (ring_pass.c, heads_a2a.c). */
#include "memory_estimate.h"

#include <math.h>

#include "kn_problem.h"
#include "partition.h"

double exec_host_bytes(const am_config *c, int dtype, int rank, int check, int cuda)
{
    const double e = (double)kn_dtype_bytes((kn_dtype)dtype), f = 4.0, d = (double)c->head_dim;
    const double P = (double)c->P, N = (double)c->N;
    uint64_t most = (c->N + c->P - 1) / c->P; /* the largest shard */
    if (c->algo == ALGO_RING) most = ring_shard_max(c->layout, c->N, c->P);
    if (c->algo == ALGO_HYBRID) /* a member's block of the largest group */
        most = (ring_shard_max(c->layout, c->N, c->cols) + c->rows - 1) / c->rows;
    const double n = (double)most;
    const double Q = (double)(c->batch * c->heads) * d;    /* Q elements per token */
    const double K = (double)(c->batch * c->kv_heads) * d; /* K (or V) elements per token */
    const double R = (double)(c->batch * c->heads);        /* rows (LSE, D) per token */
    const double S = R * (d + 2) * f;                      /* partial-state bytes per token */
    const int bwd = c->pass != AM_FWD;
    double need = 0;

    /* what run_one keeps for the whole run: inputs (Q K V, dO) and outputs (O, LSE; dQ dK dV),
     * and one input being generated on the host */
    double inputs = n * (Q + 2 * K) * e + (bwd ? n * Q * e : 0);
    double outputs = n * Q * e + n * R * f + (bwd ? n * (Q + 2 * K) * e : 0);
    double fill = n * (Q > K ? Q : K) * e;

    /* the largest working set of the algorithm's passes (a bwd pass runs its forward first) */
    double work_f = 0, work_b = 0;
    switch (c->algo) {
    case ALGO_RING: /* two blocks in flight, the running state and a tile's state; backward:
                     * the blocks with their accumulators, dQ, D, dK dV, a tile's workspace */
        work_f = 2 * (2 * n * K * e) + 2 * n * S;
        work_b = 2 * (2 * n * K * (e + f)) + n * Q * f + n * R * f + 2 * n * K * f +
                 (2 * n * Q + 2 * n * K) * f;
        break;
    case ALGO_A2D_NO:
    case ALGO_A2D_O: {
        const double Nq = (double)c->cols * n, Nk = (double)c->rows * n; /* gathered tokens */
        const double kvt = 2 * n * K * e, kv = 2 * (2 * Nk * K * e);     /* blocks + gathered K V */
        const double red = Nq * Q > 2 * Nk * K ? Nq * Q * f : 2 * Nk * K * f;
        if (c->algo == ALGO_A2D_NO) /* gathered Q, the tile's state, its partial blocks */
            work_f = kvt + 2 * n * K * e + kv + 2 * Nq * Q * e + 3 * Nq * S;
        else { /* own state; the column ring's blocks and gathered K V (+ a tile's state); then
                * gathered K V, two Q shards and three partials on the row ring */
            double ring = 2 * n * S + kv, row = 2 * Nk * K * e + 2 * n * Q * e + 5 * n * S;
            work_f = kvt + (ring > row ? ring : row);
        }
        work_b = kvt + Nq * (2 * Q * e + 2 * R * f) + 2 * Nq * Q * e + 2 * Nq * R * f + kv +
                 Nq * Q * f + 2 * Nk * K * f + red + 4 * n * K * e + n * R * f;
        break;
    }
    case ALGO_ULYSSES: { /* this rank's heads over all N tokens, and the all-to-all blocks */
        const double heads = n * (Q + 2 * K) * e;
        work_f = heads + n * Q * e + n * R * f + 2 * heads + N / P * S;
        work_b = work_f + 2 * n * (2 * Q + 2 * K) * e + n * (Q + 2 * K) * f;
        break;
    }
    case ALGO_HYBRID: { /* my heads over my group's T tokens, the all-to-all blocks, the ring */
        const double T = (double)ring_shard_max(c->layout, c->N, c->cols);
        const double hk = (double)ulysses_kv_heads_max(c->kv_heads, c->rows);
        const double Qh = (double)c->batch * hk * (double)(c->heads / c->kv_heads) * d;
        const double Kh = (double)c->batch * hk * d, Rh = Qh / d, Sh = Rh * (d + 2) * f;
        const double split = T * (2 * Qh + 2 * Kh) * e + T * Rh * f; /* q k v o, lse */
        double qkv = n * (Q + 2 * K) * e + T * (Qh + 2 * Kh) * e;
        double ring = 2 * (2 * T * Kh * e) + 2 * T * Sh, o_back = T * Qh * e + n * Q * e;
        work_f = split + fmax(qkv, fmax(ring, o_back));
        double grads = T * Qh * e + T * Rh * f + T * Qh * f + 2 * T * Kh * f; /* dO D dQ dK dV */
        double ring_b = 2 * (2 * T * Kh * (e + f)) + (2 * T * Qh + 2 * T * Kh) * f;
        double back = 2 * T * (Qh + 2 * Kh) * e + n * (Q + 2 * K) * e;
        work_b = split + grads + fmax(ring_b, back);
        break;
    }
    default:
        break;
    }
    double work = bwd && work_b > work_f ? work_b : work_f;
    if (!cuda) /* the inputs are made before the passes start */
        need = inputs + outputs + (fill > work ? fill : work);
    else /* on a GPU the host holds the outputs brought back, and staged messages */
        need = outputs + (fill > work / 2 ? fill : work / 2);

    if (rank == 0) { /* every rank's counts and peer matrices */
        need += P * (double)(AM_MAX_PHASES * (4 * 8 + 3 * 8)) + 2 * P * P * 8;
        if (check) { /* the gathered outputs and the float64 reference of the whole problem */
            kn_shape s = {c->batch,    c->heads,  c->kv_heads, c->N, c->N,
                          c->head_dim, c->causal, NULL,        NULL};
            need += (double)kn_problem_bytes(&s, (kn_dtype)dtype,
                                             KN_NEED_FWD | (bwd ? KN_NEED_BWD : 0));
            need += N * (Q + 2 * K) * 8 + N * R * 8 + 2 * N * Q * 8 +
                    N * Q * e; /* q k v lse, ref o, o */
            if (bwd) need += N * Q * 8 + 2 * N * (Q + 2 * K) * 8 + N * (Q + 2 * K) * e;
        }
    }
    /* the allocator's and MPI's own buffers (measured: a few MiB per rank; tests/run_memory.py) */
    return need * 1.05 + 8.0 * 1048576;
}
