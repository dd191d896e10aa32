/* ring_pass.c - Ring Attention's passes over any ring of the executor (see exec.h; counts:
 * models/algo_ring.c, docs/model.md "Ring").
 *
 * Forward: g steps; at step s member i holds the K|V block of member i - s (packed in one
 * buffer), computes its own queries against it (a partial merged into the running state with
 * the merge operator) while the block travels on to member i + 1 and the next arrives from
 * member i - 1 (g - 1 transfers; comm_start puts the transfer in flight before the compute, so
 * they overlap on a GPU). Backward: the K|V blocks travel again with their dK|dV accumulators
 * (f32) in the same buffer; every member adds its contribution before passing the block on;
 * after g - 1 transfers member i holds block i + 1's accumulators, which go home in one more hop.
 */
#include <stdlib.h>

#include "exec.h"

static size_t kv_elems(const exec_ctx *x, const ring_pass *rp, size_t j)
{
    return x->cfg.batch * rp->hk * rp->bpos[j].n * x->cfg.head_dim;
}

static size_t max_block(const ring_pass *rp)
{
    size_t most = 0;
    for (int j = 0; j < rp->g; j++) most = rp->bpos[j].n > most ? rp->bpos[j].n : most;
    return most;
}

void ring_pass_forward(exec_ctx *x, const ring_pass *rp, float *state)
{
    const exec_dev *dv = x->dev;
    int P = rp->g, i = rp->me, next = (i + 1) % P, prev = (i + P - 1) % P;
    size_t e = kn_dtype_bytes(x->dtype);
    size_t cap = 2 * x->cfg.batch * rp->hk * max_block(rp) * x->cfg.head_dim * e;
    char *held = xd_alloc(x, cap, "ring block"), *incoming = xd_alloc(x, cap, "ring block");
    size_t he = kv_elems(x, rp, (size_t)i);
    dv->copy(held, rp->k, he * e);
    dv->copy(held + he * e, rp->v, he * e);

    comm_phase_begin(&x->comm, rp->steps);
    for (int s = 0; s < P; s++) {
        int owner = (int)ring_block_at((uint64_t)i, (uint64_t)s, (uint64_t)P);
        comm_reqs q = {.n = 0};
        if (s + 1 < P) {
            int nxt = (int)ring_block_at((uint64_t)i, (uint64_t)s + 1, (uint64_t)P);
            comm_irecv(&x->comm, &q, rp->on, prev, incoming, 2 * kv_elems(x, rp, (size_t)nxt) * e);
            comm_isend(&x->comm, &q, rp->on, next, held, 2 * he * e);
            comm_start(&x->comm, &q);
        }
        dv->tile_forward(x, rp->hq, rp->hk, rp->q, rp->qpos, held, held + he * e, &rp->bpos[owner],
                         state, s > 0);
        comm_waitall(&x->comm, &q);
        if (s + 1 < P) {
            char *t = held;
            held = incoming, incoming = t;
            he = kv_elems(x, rp, ring_block_at((uint64_t)i, (uint64_t)s + 1, (uint64_t)P));
        }
    }
    comm_phase_end(&x->comm);
    xd_free(x, held), xd_free(x, incoming);
}

void ring_pass_backward(exec_ctx *x, const ring_pass *rp, const void *d_o, const float *lse,
                        const float *dsum, float *dq, float *home)
{
    const exec_dev *dv = x->dev;
    int P = rp->g, i = rp->me, next = (i + 1) % P, prev = (i + P - 1) % P;
    size_t e = kn_dtype_bytes(x->dtype);
    size_t most = x->cfg.batch * rp->hk * max_block(rp) * x->cfg.head_dim;
    size_t cap = 2 * most * e + 2 * most * sizeof(float);
    char *held = xd_alloc(x, cap, "ring block"), *incoming = xd_alloc(x, cap, "ring block");
    size_t he = kv_elems(x, rp, (size_t)i);
    /* block buffer: K | V (storage type) | dK | dV (f32) */
#define GRADS(buf) ((float *)((buf) + 2 * he * e))
    dv->copy(held, rp->k, he * e);
    dv->copy(held + he * e, rp->v, he * e);
    dv->zero(GRADS(held), 2 * he * sizeof(float));

    comm_phase_begin(&x->comm, rp->grad_steps);
    for (int s = 0; s < P; s++) {
        int owner = (int)ring_block_at((uint64_t)i, (uint64_t)s, (uint64_t)P);
        comm_reqs q = {.n = 0};
        size_t ne = 0;
        if (s + 1 < P) {
            ne = kv_elems(x, rp, ring_block_at((uint64_t)i, (uint64_t)s + 1, (uint64_t)P));
            comm_irecv(&x->comm, &q, rp->on, prev, incoming, 2 * ne * (e + sizeof(float)));
        }
        float *g = GRADS(held);
        dv->tile_backward(x, rp->hq, rp->hk, rp->q, d_o, lse, dsum, rp->qpos, held, held + he * e,
                          &rp->bpos[owner], dq, g, g + he);
        if (s + 1 < P) { /* the accumulators leave with this member's contribution in them */
            comm_isend(&x->comm, &q, rp->on, next, held, 2 * he * (e + sizeof(float)));
            comm_waitall(&x->comm, &q);
            char *t = held;
            held = incoming, incoming = t;
            he = ne;
        }
    }
    comm_phase_end(&x->comm);

    /* member i now holds block i+1's accumulators: they go home */
    size_t own = kv_elems(x, rp, (size_t)i);
    float *mine = GRADS(held);
#undef GRADS
    comm_phase_begin(&x->comm, rp->grad_return);
    if (P > 1)
        comm_sendrecv(&x->comm, rp->on, next, mine, 2 * he * sizeof(float), prev, home,
                      2 * own * sizeof(float));
    else
        dv->copy(home, mine, 2 * own * sizeof(float));
    comm_phase_end(&x->comm);
    dv->sync();
    xd_free(x, held), xd_free(x, incoming);
}
