/* exec_ulysses.c - DeepSpeed-Ulysses (algorithms.md section 6) on the executor.
 *
 * Tokens are split contiguously; qkv_all_to_all (heads_a2a.c, over all P ranks) turns the token
 * split into a head split: rank j gets the j-th balanced block of K/V heads and the g query
 * heads of each (grouped-query: K/V are never replicated), for the whole sequence. One local
 * FA2 forward over the full sequence, then o_all_to_all returns O to the token owners.
 * Backward: do_all_to_all, a local FA2 backward with the saved head-split Q, K, V, O and LSE,
 * and dqkv_all_to_all back. Counts: models/algo_ulysses.c, docs/model.md "Ulysses".
 */
#include <stdlib.h>

#include "algo_ulysses.h"
#include "exec.h"

typedef struct {
    heads_split hs;
    kn_tensor q, k, v, o, lse; /* head split, whole sequence */
} ulysses_state;

static void ulysses_release(exec_ctx *x);

static void ulysses_forward(exec_ctx *x)
{
    const am_config *c = &x->cfg;
    size_t d = c->head_dim, B = c->batch, N = c->N;
    ulysses_release(x); /* a repeated forward starts afresh */
    ulysses_state *s = kn_xcalloc(1, sizeof *s, "ulysses state");
    x->saved = s;
    heads_split_init(&s->hs, x, x->comm.world, N);
    const heads_block *me = &s->hs.at[x->rank];
    xd_tensor(x, &s->q, x->dtype, B * me->hq * N * d, "Q heads");
    xd_tensor(x, &s->k, x->dtype, B * me->hk * N * d, "K heads");
    xd_tensor(x, &s->v, x->dtype, B * me->hk * N * d, "V heads");
    xd_tensor(x, &s->o, x->dtype, B * me->hq * N * d, "O heads");
    xd_tensor(x, &s->lse, KN_F32, B * me->hq * N, "LSE heads");
    heads_payload qkv[3] = {{x->q.data, c->heads, s->q.data, 0},
                            {x->k.data, c->kv_heads, s->k.data, 1},
                            {x->v.data, c->kv_heads, s->v.data, 1}};
    heads_alltoall(x, &s->hs, PH_ULY_QKV_ALL_TO_ALL, qkv, 3, 1);

    comm_phase_begin(&x->comm, PH_ULY_ATTENTION);
    x->dev->attn_forward(x, me->hq, me->hk, N, s->q.data, s->k.data, s->v.data, s->o.data,
                         s->lse.data);
    comm_phase_end(&x->comm);

    /* LSE stays in the head split (the backward uses it there); it is not sent back */
    heads_payload o = {x->o.data, c->heads, s->o.data, 0};
    heads_alltoall(x, &s->hs, PH_ULY_O_ALL_TO_ALL, &o, 1, 0);
}

static void ulysses_backward(exec_ctx *x)
{
    const am_config *c = &x->cfg;
    ulysses_state *s = x->saved;
    const heads_block *me = &s->hs.at[x->rank];
    size_t d = c->head_dim, B = c->batch, N = c->N;
    kn_tensor dOh, dQh, dKh, dVh;
    xd_tensor(x, &dOh, x->dtype, B * me->hq * N * d, "dO heads");
    heads_payload d_o = {x->d_o.data, c->heads, dOh.data, 0};
    heads_alltoall(x, &s->hs, PH_ULY_DO_ALL_TO_ALL, &d_o, 1, 1);

    xd_tensor(x, &dQh, x->dtype, B * me->hq * N * d, "dQ heads");
    xd_tensor(x, &dKh, x->dtype, B * me->hk * N * d, "dK heads");
    xd_tensor(x, &dVh, x->dtype, B * me->hk * N * d, "dV heads");
    comm_phase_begin(&x->comm, PH_ULY_ATTENTION_BWD);
    x->dev->attn_backward(x, me->hq, me->hk, N, s->q.data, s->k.data, s->v.data, s->o.data,
                          dOh.data, s->lse.data, dQh.data, dKh.data, dVh.data);
    comm_phase_end(&x->comm);

    heads_payload dqkv[3] = {{x->dq.data, c->heads, dQh.data, 0},
                             {x->dk.data, c->kv_heads, dKh.data, 1},
                             {x->dv.data, c->kv_heads, dVh.data, 1}};
    heads_alltoall(x, &s->hs, PH_ULY_DQKV_ALL_TO_ALL, dqkv, 3, 0);
    xd_tensor_free(x, &dOh), xd_tensor_free(x, &dQh), xd_tensor_free(x, &dKh),
        xd_tensor_free(x, &dVh);
}

static void ulysses_release(exec_ctx *x)
{
    ulysses_state *s = x->saved;
    if (!s) return;
    xd_tensor_free(x, &s->q), xd_tensor_free(x, &s->k), xd_tensor_free(x, &s->v);
    xd_tensor_free(x, &s->o), xd_tensor_free(x, &s->lse);
    heads_split_free(&s->hs);
    free(s);
    x->saved = NULL;
}

const exec_algo exec_ulysses = {ulysses_forward, ulysses_backward, ulysses_release};
