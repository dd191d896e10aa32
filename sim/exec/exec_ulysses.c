/* exec_ulysses.c - DeepSpeed-Ulysses (algorithms.md section 6) on the executor.
 *
 * Tokens are split contiguously; qkv_all_to_all turns the token split into a head split: rank j
 * gets the j-th balanced block of K/V heads and the g query heads of each (grouped-query: K/V
 * are never replicated), for the whole sequence. One local FA2 forward over the full sequence,
 * then o_all_to_all returns O to the token owners. Backward: do_all_to_all, a local FA2 backward
 * with the saved head-split Q, K, V, O and LSE, and dqkv_all_to_all back. Each all-to-all is
 * P-1 pairwise rounds (comm_alltoall); the own block is copied locally.
 */
#include <stdlib.h>
#include <string.h>

#include "algo_ulysses.h"
#include "exec.h"

typedef struct {
    size_t hq, hk, hq0;        /* this rank's query heads [hq0, hq0 + hq) and K/V head count */
    kn_tensor q, k, v, o, lse; /* head split, whole sequence */
} ulysses_state;

typedef struct {
    size_t hq, hk, hq0, hk0, n, t0; /* rank j's heads and tokens */
} rank_part;

static rank_part part_of(const exec_ctx *x, int j)
{
    const am_config *c = &x->cfg;
    size_t g = c->heads / c->kv_heads;
    rank_part p;
    p.hk = ulysses_kv_heads(c->kv_heads, c->P, (uint64_t)j);
    p.hk0 = ulysses_kv_head_start(c->kv_heads, c->P, (uint64_t)j);
    p.hq = g * p.hk;
    p.hq0 = g * p.hk0;
    p.n = part_block_count(c->N, c->P, (uint64_t)j);
    p.t0 = part_block_start(c->N, c->P, (uint64_t)j);
    return p;
}

/* Copies heads [h0, h0 + hn) of tokens [t0, t0 + n) between a [b][H][T][d] array and a dense
 * [b][hn][n][d] block (to_block: array -> block); one strided copy per batch entry. */
static void copy_heads(const exec_ctx *x, char *arr, size_t H, size_t T, char *block, size_t h0,
                       size_t hn, size_t t0, size_t n, size_t batch, size_t d, size_t e,
                       int to_block)
{
    if (!hn || !n) return;
    for (size_t b = 0; b < batch; b++) {
        char *a = arr + (((b * H + h0) * T + t0) * d) * e;
        char *k = block + ((b * hn) * n * d) * e;
        if (to_block)
            x->dev->copy2d(k, n * d * e, a, T * d * e, n * d * e, hn);
        else
            x->dev->copy2d(a, T * d * e, k, n * d * e, n * d * e, hn);
    }
}

static void ulysses_forward(exec_ctx *x)
{
    const am_config *c = &x->cfg;
    int P = x->comm.P, me = x->rank;
    size_t e = kn_dtype_bytes(x->dtype), d = c->head_dim, B = c->batch, N = c->N;
    exec_ulysses.release(x); /* a repeated forward starts afresh */
    ulysses_state *s = kn_xcalloc(1, sizeof *s, "ulysses state");
    x->saved = s;
    rank_part mine = part_of(x, me);
    s->hq = mine.hq, s->hk = mine.hk, s->hq0 = mine.hq0;
    xd_tensor(x, &s->q, x->dtype, B * s->hq * N * d, "Q heads");
    xd_tensor(x, &s->k, x->dtype, B * s->hk * N * d, "K heads");
    xd_tensor(x, &s->v, x->dtype, B * s->hk * N * d, "V heads");
    xd_tensor(x, &s->o, x->dtype, B * s->hq * N * d, "O heads");
    xd_tensor(x, &s->lse, KN_F32, B * s->hq * N, "LSE heads");

    char **send = kn_xmalloc((size_t)P * sizeof *send, "blocks");
    char **recv = kn_xmalloc((size_t)P * sizeof *recv, "blocks");
    uint64_t *sb = kn_xmalloc((size_t)P * sizeof *sb, "sizes");
    uint64_t *rb = kn_xmalloc((size_t)P * sizeof *rb, "sizes");
    for (int j = 0; j < P; j++) { /* to j: my tokens of j's heads, Q | K | V */
        rank_part pj = part_of(x, j);
        size_t qe = B * pj.hq * x->n * d, ke = B * pj.hk * x->n * d;
        sb[j] = (qe + 2 * ke) * e;
        send[j] = xd_alloc(x, sb[j], "all-to-all block");
        copy_heads(x, x->q.data, c->heads, x->n, send[j], pj.hq0, pj.hq, 0, x->n, B, d, e, 1);
        copy_heads(x, x->k.data, c->kv_heads, x->n, send[j] + qe * e, pj.hk0, pj.hk, 0, x->n, B, d,
                   e, 1);
        copy_heads(x, x->v.data, c->kv_heads, x->n, send[j] + (qe + ke) * e, pj.hk0, pj.hk, 0, x->n,
                   B, d, e, 1);
        rb[j] = (B * s->hq * pj.n * d + 2 * B * s->hk * pj.n * d) * e;
        recv[j] = j == me ? send[j] : xd_alloc(x, rb[j], "all-to-all block");
    }
    comm_phase_begin(&x->comm, PH_ULY_QKV_ALL_TO_ALL);
    comm_alltoall(&x->comm, x->comm.world, (void **)send, sb, (void **)recv, rb);
    comm_phase_end(&x->comm);
    for (int j = 0; j < P; j++) { /* j's tokens of my heads into the whole sequence */
        rank_part pj = part_of(x, j);
        size_t qe = B * s->hq * pj.n * d, ke = B * s->hk * pj.n * d;
        copy_heads(x, s->q.data, s->hq, N, recv[j], 0, s->hq, pj.t0, pj.n, B, d, e, 0);
        copy_heads(x, s->k.data, s->hk, N, recv[j] + qe * e, 0, s->hk, pj.t0, pj.n, B, d, e, 0);
        copy_heads(x, s->v.data, s->hk, N, recv[j] + (qe + ke) * e, 0, s->hk, pj.t0, pj.n, B, d, e,
                   0);
    }
    for (int j = 0; j < P; j++) {
        if (j != me) xd_free(x, recv[j]);
        xd_free(x, send[j]);
    }

    comm_phase_begin(&x->comm, PH_ULY_ATTENTION);
    x->dev->attn_forward(x, s->hq, s->hk, N, s->q.data, s->k.data, s->v.data, s->o.data,
                         s->lse.data);
    comm_phase_end(&x->comm);

    for (int j = 0; j < P; j++) { /* to j: O of j's tokens for my heads */
        rank_part pj = part_of(x, j);
        sb[j] = B * s->hq * pj.n * d * e;
        send[j] = xd_alloc(x, sb[j], "all-to-all block");
        copy_heads(x, s->o.data, s->hq, N, send[j], 0, s->hq, pj.t0, pj.n, B, d, e, 1);
        rb[j] = B * pj.hq * x->n * d * e;
        recv[j] = j == me ? send[j] : xd_alloc(x, rb[j], "all-to-all block");
    }
    comm_phase_begin(&x->comm, PH_ULY_O_ALL_TO_ALL);
    comm_alltoall(&x->comm, x->comm.world, (void **)send, sb, (void **)recv, rb);
    comm_phase_end(&x->comm);
    for (int j = 0; j < P; j++) {
        rank_part pj = part_of(x, j);
        copy_heads(x, x->o.data, c->heads, x->n, recv[j], pj.hq0, pj.hq, 0, x->n, B, d, e, 0);
        if (j != me) xd_free(x, recv[j]);
        xd_free(x, send[j]);
    }
    /* LSE stays in the head split (the backward uses it there); it is not sent back */
    free(send), free(recv), free(sb), free(rb);
}

static void ulysses_backward(exec_ctx *x)
{
    const am_config *c = &x->cfg;
    ulysses_state *s = x->saved;
    int P = x->comm.P, me = x->rank;
    size_t e = kn_dtype_bytes(x->dtype), d = c->head_dim, B = c->batch, N = c->N;
    char **send = kn_xmalloc((size_t)P * sizeof *send, "blocks");
    char **recv = kn_xmalloc((size_t)P * sizeof *recv, "blocks");
    uint64_t *sb = kn_xmalloc((size_t)P * sizeof *sb, "sizes");
    uint64_t *rb = kn_xmalloc((size_t)P * sizeof *rb, "sizes");
    kn_tensor dOh, dQh, dKh, dVh;
    xd_tensor(x, &dOh, x->dtype, B * s->hq * N * d, "dO heads");
    for (int j = 0; j < P; j++) { /* to j: my tokens' dO of j's heads */
        rank_part pj = part_of(x, j);
        sb[j] = B * pj.hq * x->n * d * e;
        send[j] = xd_alloc(x, sb[j], "all-to-all block");
        copy_heads(x, x->d_o.data, c->heads, x->n, send[j], pj.hq0, pj.hq, 0, x->n, B, d, e, 1);
        rb[j] = B * s->hq * pj.n * d * e;
        recv[j] = j == me ? send[j] : xd_alloc(x, rb[j], "all-to-all block");
    }
    comm_phase_begin(&x->comm, PH_ULY_DO_ALL_TO_ALL);
    comm_alltoall(&x->comm, x->comm.world, (void **)send, sb, (void **)recv, rb);
    comm_phase_end(&x->comm);
    for (int j = 0; j < P; j++) {
        rank_part pj = part_of(x, j);
        copy_heads(x, dOh.data, s->hq, N, recv[j], 0, s->hq, pj.t0, pj.n, B, d, e, 0);
        if (j != me) xd_free(x, recv[j]);
        xd_free(x, send[j]);
    }

    xd_tensor(x, &dQh, x->dtype, B * s->hq * N * d, "dQ heads");
    xd_tensor(x, &dKh, x->dtype, B * s->hk * N * d, "dK heads");
    xd_tensor(x, &dVh, x->dtype, B * s->hk * N * d, "dV heads");
    comm_phase_begin(&x->comm, PH_ULY_ATTENTION_BWD);
    x->dev->attn_backward(x, s->hq, s->hk, N, s->q.data, s->k.data, s->v.data, s->o.data, dOh.data,
                          s->lse.data, dQh.data, dKh.data, dVh.data);
    comm_phase_end(&x->comm);

    for (int j = 0; j < P; j++) { /* to j: dQ | dK | dV of j's tokens for my heads */
        rank_part pj = part_of(x, j);
        size_t qe = B * s->hq * pj.n * d, ke = B * s->hk * pj.n * d;
        sb[j] = (qe + 2 * ke) * e;
        send[j] = xd_alloc(x, sb[j], "all-to-all block");
        copy_heads(x, dQh.data, s->hq, N, send[j], 0, s->hq, pj.t0, pj.n, B, d, e, 1);
        copy_heads(x, dKh.data, s->hk, N, send[j] + qe * e, 0, s->hk, pj.t0, pj.n, B, d, e, 1);
        copy_heads(x, dVh.data, s->hk, N, send[j] + (qe + ke) * e, 0, s->hk, pj.t0, pj.n, B, d, e,
                   1);
        rb[j] = (B * pj.hq * x->n * d + 2 * B * pj.hk * x->n * d) * e;
        recv[j] = j == me ? send[j] : xd_alloc(x, rb[j], "all-to-all block");
    }
    comm_phase_begin(&x->comm, PH_ULY_DQKV_ALL_TO_ALL);
    comm_alltoall(&x->comm, x->comm.world, (void **)send, sb, (void **)recv, rb);
    comm_phase_end(&x->comm);
    for (int j = 0; j < P; j++) {
        rank_part pj = part_of(x, j);
        size_t qe = B * pj.hq * x->n * d, ke = B * pj.hk * x->n * d;
        copy_heads(x, x->dq.data, c->heads, x->n, recv[j], pj.hq0, pj.hq, 0, x->n, B, d, e, 0);
        copy_heads(x, x->dk.data, c->kv_heads, x->n, recv[j] + qe * e, pj.hk0, pj.hk, 0, x->n, B, d,
                   e, 0);
        copy_heads(x, x->dv.data, c->kv_heads, x->n, recv[j] + (qe + ke) * e, pj.hk0, pj.hk, 0,
                   x->n, B, d, e, 0);
        if (j != me) xd_free(x, recv[j]);
        xd_free(x, send[j]);
    }
    free(send), free(recv), free(sb), free(rb);
    xd_tensor_free(x, &dOh), xd_tensor_free(x, &dQh), xd_tensor_free(x, &dKh),
        xd_tensor_free(x, &dVh);
}

static void ulysses_release(exec_ctx *x)
{
    ulysses_state *s = x->saved;
    if (!s) return;
    xd_tensor_free(x, &s->q), xd_tensor_free(x, &s->k), xd_tensor_free(x, &s->v);
    xd_tensor_free(x, &s->o), xd_tensor_free(x, &s->lse);
    free(s);
    x->saved = NULL;
}

const exec_algo exec_ulysses = {ulysses_forward, ulysses_backward, ulysses_release};
