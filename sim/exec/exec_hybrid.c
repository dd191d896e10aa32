/* exec_hybrid.c - Ulysses inside groups of u consecutive ranks x Ring across the r = P/u groups
 * (algorithms.md section 7) on the executor, from the steps Ulysses and Ring use.
 *
 * Rank x is member i = x mod u of group c = x div u (the grid's column-major map on u x r: the
 * group is the column communicator, the ring of the groups' i-th members the row one). Group c
 * holds the tokens of ring shard c (the layout over r groups), member i the i-th balanced block
 * of them. Forward: qkv_all_to_all in the group (heads_a2a.c) gives member i its block of K/V
 * heads (and their query heads) for all the group's tokens; a Ring Attention pass across the
 * groups (ring_pass.c: ring_kv_steps) on those heads; O finalised and o_all_to_all back to the
 * token owners. Backward: do_all_to_all, D = rowsum(dO O) on the head split, the ring's
 * backward (ring_kv_grad_steps, ring_grad_return), dqkv_all_to_all back. Counts:
 * models/algo_hybrid.c, docs/model.md "Hybrid".
 */
#include <stdlib.h>

#include "algo_hybrid.h"
#include "exec.h"

typedef struct {
    heads_split hs;            /* in the group: its token list <-> the head split */
    exec_pos *gpos;            /* [r]: every group's token positions */
    ring_pass ring;            /* across the groups, on my heads */
    kn_tensor q, k, v, o, lse; /* my heads, all my group's tokens */
} hybrid_state;

static void hybrid_release(exec_ctx *x);

static void hybrid_forward(exec_ctx *x)
{
    const am_config *c = &x->cfg;
    uint64_t u = c->rows, r = c->cols;
    size_t d = c->head_dim, B = c->batch;
    int group = (int)grid_col((uint64_t)x->rank, u);
    hybrid_release(x); /* a repeated forward starts afresh */
    hybrid_state *s = kn_xcalloc(1, sizeof *s, "hybrid state");
    x->saved = s;
    s->gpos = kn_xmalloc(r * sizeof *s->gpos, "group positions");
    for (uint64_t g = 0; g < r; g++) {
        size_t n = ring_shard_len(c->layout, c->N, r, g);
        uint64_t *pos = kn_xmalloc(n * sizeof *pos + 1, "group positions");
        for (size_t j = 0; j < n; j++) pos[j] = ring_shard_token(c->layout, c->N, r, g, j);
        s->gpos[g] = exec_pos_make(x, pos, n);
    }
    size_t T = s->gpos[group].n;
    heads_split_init(&s->hs, x, x->comm.col, T);
    const heads_block *me = &s->hs.at[s->hs.me];
    xd_tensor(x, &s->q, x->dtype, B * me->hq * T * d, "Q heads");
    xd_tensor(x, &s->k, x->dtype, B * me->hk * T * d, "K heads");
    xd_tensor(x, &s->v, x->dtype, B * me->hk * T * d, "V heads");
    xd_tensor(x, &s->o, x->dtype, B * me->hq * T * d, "O heads");
    xd_tensor(x, &s->lse, KN_F32, B * me->hq * T, "LSE heads");
    heads_payload qkv[3] = {{x->q.data, c->heads, s->q.data, 0},
                            {x->k.data, c->kv_heads, s->k.data, 1},
                            {x->v.data, c->kv_heads, s->v.data, 1}};
    heads_alltoall(x, &s->hs, PH_HYB_QKV_ALL_TO_ALL, qkv, 3, 1);

    ring_pass ring = {x->comm.row,
                      (int)r,
                      group,
                      me->hq,
                      me->hk,
                      s->q.data,
                      &s->gpos[group],
                      s->k.data,
                      s->v.data,
                      s->gpos,
                      PH_HYB_RING_KV_STEPS,
                      PH_HYB_RING_KV_GRAD_STEPS,
                      PH_HYB_RING_GRAD_RETURN};
    s->ring = ring;
    size_t rows = B * me->hq * T;
    float *state = xd_alloc(x, state_floats(rows, d) * sizeof(float), "state");
    ring_pass_forward(x, &s->ring, state);
    x->dev->state_finalize(state, rows, d, (int)x->dtype, s->o.data, s->lse.data);
    xd_free(x, state);

    /* LSE stays in the head split (the backward uses it there); it is not sent back */
    heads_payload o = {x->o.data, c->heads, s->o.data, 0};
    heads_alltoall(x, &s->hs, PH_HYB_O_ALL_TO_ALL, &o, 1, 0);
}

static void hybrid_backward(exec_ctx *x)
{
    const am_config *c = &x->cfg;
    const exec_dev *dv = x->dev;
    hybrid_state *s = x->saved;
    const heads_block *me = &s->hs.at[s->hs.me];
    size_t d = c->head_dim, B = c->batch, T = s->hs.T;
    size_t qe = B * me->hq * T * d, ke = B * me->hk * T * d;
    kn_tensor dOh, dQh, dKh, dVh;
    xd_tensor(x, &dOh, x->dtype, qe, "dO heads");
    heads_payload d_o = {x->d_o.data, c->heads, dOh.data, 0};
    heads_alltoall(x, &s->hs, PH_HYB_DO_ALL_TO_ALL, &d_o, 1, 1);

    float *D = xd_alloc(x, B * me->hq * T * sizeof(float), "D");
    dv->rowdot((int)x->dtype, s->o.data, dOh.data, B * me->hq * T, d, D);
    float *dq = xd_alloc(x, qe * sizeof(float), "dQ accumulator");
    float *home = xd_alloc(x, 2 * ke * sizeof(float), "dK dV");
    dv->zero(dq, qe * sizeof(float));
    ring_pass_backward(x, &s->ring, dOh.data, s->lse.data, D, dq, home);
    xd_tensor(x, &dQh, x->dtype, qe, "dQ heads");
    xd_tensor(x, &dKh, x->dtype, ke, "dK heads");
    xd_tensor(x, &dVh, x->dtype, ke, "dV heads");
    dv->to_storage((int)x->dtype, dq, dQh.data, qe);
    dv->to_storage((int)x->dtype, home, dKh.data, ke);
    dv->to_storage((int)x->dtype, home + ke, dVh.data, ke);

    heads_payload dqkv[3] = {{x->dq.data, c->heads, dQh.data, 0},
                             {x->dk.data, c->kv_heads, dKh.data, 1},
                             {x->dv.data, c->kv_heads, dVh.data, 1}};
    heads_alltoall(x, &s->hs, PH_HYB_DQKV_ALL_TO_ALL, dqkv, 3, 0);
    dv->sync();
    xd_free(x, D), xd_free(x, dq), xd_free(x, home);
    xd_tensor_free(x, &dOh), xd_tensor_free(x, &dQh), xd_tensor_free(x, &dKh),
        xd_tensor_free(x, &dVh);
}

static void hybrid_release(exec_ctx *x)
{
    hybrid_state *s = x->saved;
    if (!s) return;
    xd_tensor_free(x, &s->q), xd_tensor_free(x, &s->k), xd_tensor_free(x, &s->v);
    xd_tensor_free(x, &s->o), xd_tensor_free(x, &s->lse);
    for (uint64_t g = 0; g < x->cfg.cols; g++) exec_pos_free(x, &s->gpos[g]);
    free(s->gpos);
    heads_split_free(&s->hs);
    free(s);
    x->saved = NULL;
}

const exec_algo exec_hybrid = {hybrid_forward, hybrid_backward, hybrid_release};
