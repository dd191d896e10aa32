/* exec_ring.c - Ring Attention (algorithms.md section 4) on the executor.
 *
 * Forward (phase ring_kv_steps): P steps; at step s rank i holds the K|V block of rank i-s
 * (packed in one buffer), computes its own Q against it (a partial merged into the running
 * state with the merge operator) while the block travels on to rank i+1 and the next arrives
 * from rank i-1 (P-1 transfers; comm_start puts the transfer in flight before the compute, so
 * they overlap on a GPU). Backward (ring_kv_grad_steps): the K|V blocks travel again with their
 * dK|dV accumulators (f32) in the same buffer; every rank adds its contribution before passing
 * the block on; after P-1 transfers rank i holds block i+1's accumulators, which go home in one
 * more hop (ring_grad_return). Counts: docs/model.md, "Ring".
 */
#include <stdlib.h>
#include <string.h>

#include "algo_ring.h"
#include "exec.h"

/* Positions of every rank's block (on the device before the phase starts). */
static exec_pos *blocks_pos(const exec_ctx *x)
{
    exec_pos *p = kn_xmalloc((size_t)x->comm.P * sizeof *p, "positions");
    for (int j = 0; j < x->comm.P; j++) p[j] = exec_pos_of(x, (uint64_t)j);
    return p;
}

static void blocks_pos_free(const exec_ctx *x, exec_pos *p)
{
    for (int j = 0; j < x->comm.P; j++) exec_pos_free(x, &p[j]);
    free(p);
}

static size_t kv_elems_of(const exec_ctx *x, const exec_pos *p)
{
    return x->cfg.batch * x->cfg.kv_heads * p->n * x->cfg.head_dim;
}

static size_t max_block(const exec_ctx *x)
{
    size_t most = 0;
    for (int j = 0; j < x->comm.P; j++) {
        size_t n = ring_shard_len(x->cfg.layout, x->cfg.N, x->cfg.P, (uint64_t)j);
        most = n > most ? n : most;
    }
    return most;
}

static void ring_forward(exec_ctx *x)
{
    const am_config *c = &x->cfg;
    const exec_dev *dv = x->dev;
    int P = x->comm.P, i = x->rank, next = (i + 1) % P, prev = (i + P - 1) % P;
    size_t e = kn_dtype_bytes(x->dtype), d = c->head_dim;
    size_t cap = 2 * c->batch * c->kv_heads * max_block(x) * d * e;
    char *held = xd_alloc(x, cap, "ring block"), *incoming = xd_alloc(x, cap, "ring block");
    size_t rows = c->batch * c->heads * x->n;
    float *state = xd_alloc(x, state_floats(rows, d) * sizeof(float), "state");
    exec_pos *bp = blocks_pos(x);
    size_t he = kv_elems_of(x, &bp[i]);
    dv->copy(held, x->k.data, he * e);
    dv->copy(held + he * e, x->v.data, he * e);

    comm_phase_begin(&x->comm, PH_RING_KV_STEPS);
    for (int s = 0; s < P; s++) {
        int owner = (int)ring_block_at((uint64_t)i, (uint64_t)s, (uint64_t)P);
        comm_reqs q = {.n = 0};
        if (s + 1 < P) {
            int nxt = (int)ring_block_at((uint64_t)i, (uint64_t)s + 1, (uint64_t)P);
            comm_irecv(&x->comm, &q, x->comm.world, prev, incoming,
                       2 * kv_elems_of(x, &bp[nxt]) * e);
            comm_isend(&x->comm, &q, x->comm.world, next, held, 2 * he * e);
            comm_start(&x->comm, &q);
        }
        dv->tile_forward(x, x->q.data, &x->pos, held, held + he * e, &bp[owner], state, s > 0);
        comm_waitall(&x->comm, &q);
        if (s + 1 < P) {
            char *t = held;
            held = incoming, incoming = t;
            he = kv_elems_of(x, &bp[ring_block_at((uint64_t)i, (uint64_t)s + 1, (uint64_t)P)]);
        }
    }
    comm_phase_end(&x->comm);
    dv->state_finalize(state, rows, d, (int)x->dtype, x->o.data, x->lse.data);
    dv->sync();
    blocks_pos_free(x, bp);
    xd_free(x, held), xd_free(x, incoming), xd_free(x, state);
}

static void ring_backward(exec_ctx *x)
{
    const am_config *c = &x->cfg;
    const exec_dev *dv = x->dev;
    int P = x->comm.P, i = x->rank, next = (i + 1) % P, prev = (i + P - 1) % P;
    size_t e = kn_dtype_bytes(x->dtype), d = c->head_dim;
    size_t most = c->batch * c->kv_heads * max_block(x) * d;
    size_t cap = 2 * most * e + 2 * most * sizeof(float);
    char *held = xd_alloc(x, cap, "ring block"), *incoming = xd_alloc(x, cap, "ring block");
    size_t qe = c->batch * c->heads * x->n * d;
    float *dq = xd_alloc(x, qe * sizeof(float), "dQ accumulator"), *D = exec_dsum(x);
    dv->zero(dq, qe * sizeof(float));
    exec_pos *bp = blocks_pos(x);
    size_t he = kv_elems_of(x, &bp[i]);
    /* block buffer: K | V (storage type) | dK | dV (f32) */
#define GRADS(buf) ((float *)((buf) + 2 * he * e))
    dv->copy(held, x->k.data, he * e);
    dv->copy(held + he * e, x->v.data, he * e);
    dv->zero(GRADS(held), 2 * he * sizeof(float));

    comm_phase_begin(&x->comm, PH_RING_KV_GRAD_STEPS);
    for (int s = 0; s < P; s++) {
        int owner = (int)ring_block_at((uint64_t)i, (uint64_t)s, (uint64_t)P);
        comm_reqs q = {.n = 0};
        size_t ne = 0;
        if (s + 1 < P) {
            ne = kv_elems_of(x, &bp[ring_block_at((uint64_t)i, (uint64_t)s + 1, (uint64_t)P)]);
            comm_irecv(&x->comm, &q, x->comm.world, prev, incoming, 2 * ne * (e + sizeof(float)));
        }
        float *g = GRADS(held);
        dv->tile_backward(x, x->q.data, x->d_o.data, x->lse.data, D, &x->pos, held, held + he * e,
                          &bp[owner], dq, g, g + he);
        if (s + 1 < P) { /* the accumulators leave with this rank's contribution in them */
            comm_isend(&x->comm, &q, x->comm.world, next, held, 2 * he * (e + sizeof(float)));
            comm_waitall(&x->comm, &q);
            char *t = held;
            held = incoming, incoming = t;
            he = ne;
        }
    }
    comm_phase_end(&x->comm);

    /* rank i now holds block i+1's accumulators: they go home */
    size_t own = c->batch * c->kv_heads * x->n * d;
    float *mine = GRADS(held);
    float *home = xd_alloc(x, 2 * own * sizeof(float), "dK dV");
    comm_phase_begin(&x->comm, PH_RING_GRAD_RETURN);
    if (P > 1)
        comm_sendrecv(&x->comm, x->comm.world, next, mine, 2 * he * sizeof(float), prev, home,
                      2 * own * sizeof(float));
    else
        dv->copy(home, mine, 2 * own * sizeof(float));
    comm_phase_end(&x->comm);
    dv->to_storage((int)x->dtype, home, x->dk.data, own);
    dv->to_storage((int)x->dtype, home + own, x->dv.data, own);
    dv->to_storage((int)x->dtype, dq, x->dq.data, qe);
#undef GRADS
    dv->sync();
    blocks_pos_free(x, bp);
    xd_free(x, home), xd_free(x, held), xd_free(x, incoming), xd_free(x, dq), xd_free(x, D);
}

static void ring_release(exec_ctx *x)
{
    (void)x;
}

const exec_algo exec_ring = {ring_forward, ring_backward, ring_release};
