/* exec_ring.c - Ring Attention (algorithms.md section 4) on the executor: one ring pass
 * (ring_pass.c) over all P ranks, each holding its shard of the ring layout with every head.
 * Phases: ring_kv_steps (forward), ring_kv_grad_steps and ring_grad_return (backward). Counts:
 * models/algo_ring.c, docs/model.md "Ring".
 */
#include <stdlib.h>

#include "algo_ring.h"
#include "exec.h"

/* The ring of every rank, its block positions on the device (caller frees bpos). */
static ring_pass world_ring(const exec_ctx *x)
{
    ring_pass rp = {x->comm.world,      x->comm.P, x->rank,          x->cfg.heads,
                    x->cfg.kv_heads,    x->q.data, &x->pos,          x->k.data,
                    x->v.data,          NULL,      PH_RING_KV_STEPS, PH_RING_KV_GRAD_STEPS,
                    PH_RING_GRAD_RETURN};
    exec_pos *bp = kn_xmalloc((size_t)x->comm.P * sizeof *bp, "positions");
    for (int j = 0; j < x->comm.P; j++) bp[j] = exec_pos_of(x, (uint64_t)j);
    rp.bpos = bp;
    return rp;
}

static void free_ring(const exec_ctx *x, ring_pass *rp)
{
    for (int j = 0; j < rp->g; j++) exec_pos_free(x, (exec_pos *)&rp->bpos[j]);
    free((exec_pos *)rp->bpos);
}

static void ring_forward(exec_ctx *x)
{
    const am_config *c = &x->cfg;
    size_t rows = c->batch * c->heads * x->n, d = c->head_dim;
    float *state = xd_alloc(x, state_floats(rows, d) * sizeof(float), "state");
    ring_pass rp = world_ring(x);
    ring_pass_forward(x, &rp, state);
    x->dev->state_finalize(state, rows, d, (int)x->dtype, x->o.data, x->lse.data);
    x->dev->sync();
    free_ring(x, &rp);
    xd_free(x, state);
}

static void ring_backward(exec_ctx *x)
{
    const am_config *c = &x->cfg;
    const exec_dev *dv = x->dev;
    size_t qe = c->batch * c->heads * x->n * c->head_dim;
    size_t own = c->batch * c->kv_heads * x->n * c->head_dim;
    float *dq = xd_alloc(x, qe * sizeof(float), "dQ accumulator"), *D = exec_dsum(x);
    float *home = xd_alloc(x, 2 * own * sizeof(float), "dK dV");
    dv->zero(dq, qe * sizeof(float));
    ring_pass rp = world_ring(x);
    ring_pass_backward(x, &rp, x->d_o.data, x->lse.data, D, dq, home);
    dv->to_storage((int)x->dtype, home, x->dk.data, own);
    dv->to_storage((int)x->dtype, home + own, x->dv.data, own);
    dv->to_storage((int)x->dtype, dq, x->dq.data, qe);
    dv->sync();
    free_ring(x, &rp);
    xd_free(x, home), xd_free(x, dq), xd_free(x, D);
}

static void ring_release(exec_ctx *x)
{
    (void)x;
}

const exec_algo exec_ring = {ring_forward, ring_backward, ring_release};
