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
 * [b][hn][n][d] block (to_block: array -> block). */
static void copy_heads(char *arr, size_t H, size_t T, char *block, size_t h0, size_t hn, size_t t0,
                       size_t n, size_t batch, size_t d, size_t e, int to_block)
{
    for (size_t b = 0; b < batch; b++)
        for (size_t h = 0; h < hn; h++) {
            char *a = arr + (((b * H + h0 + h) * T + t0) * d) * e;
            char *k = block + ((b * hn + h) * n * d) * e;
            if (to_block)
                memcpy(k, a, n * d * e);
            else
                memcpy(a, k, n * d * e);
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
    kn_tensor_alloc(&s->q, x->dtype, B * s->hq * N * d, "Q heads");
    kn_tensor_alloc(&s->k, x->dtype, B * s->hk * N * d, "K heads");
    kn_tensor_alloc(&s->v, x->dtype, B * s->hk * N * d, "V heads");
    kn_tensor_alloc(&s->o, x->dtype, B * s->hq * N * d, "O heads");
    kn_tensor_alloc(&s->lse, KN_F32, B * s->hq * N, "LSE heads");

    char **send = kn_xmalloc((size_t)P * sizeof *send, "blocks");
    char **recv = kn_xmalloc((size_t)P * sizeof *recv, "blocks");
    uint64_t *sb = kn_xmalloc((size_t)P * sizeof *sb, "sizes");
    uint64_t *rb = kn_xmalloc((size_t)P * sizeof *rb, "sizes");
    for (int j = 0; j < P; j++) { /* to j: my tokens of j's heads, Q | K | V */
        rank_part pj = part_of(x, j);
        size_t qe = B * pj.hq * x->n * d, ke = B * pj.hk * x->n * d;
        sb[j] = (qe + 2 * ke) * e;
        send[j] = kn_xmalloc(sb[j] + 1, "all-to-all block");
        copy_heads(x->q.data, c->heads, x->n, send[j], pj.hq0, pj.hq, 0, x->n, B, d, e, 1);
        copy_heads(x->k.data, c->kv_heads, x->n, send[j] + qe * e, pj.hk0, pj.hk, 0, x->n, B, d, e,
                   1);
        copy_heads(x->v.data, c->kv_heads, x->n, send[j] + (qe + ke) * e, pj.hk0, pj.hk, 0, x->n, B,
                   d, e, 1);
        rb[j] = (B * s->hq * pj.n * d + 2 * B * s->hk * pj.n * d) * e;
        recv[j] = j == me ? send[j] : kn_xmalloc(rb[j] + 1, "all-to-all block");
    }
    comm_phase_begin(&x->comm, "qkv_all_to_all");
    comm_alltoall(&x->comm, x->comm.world, (void **)send, sb, (void **)recv, rb);
    comm_phase_end(&x->comm);
    for (int j = 0; j < P; j++) { /* j's tokens of my heads into the whole sequence */
        rank_part pj = part_of(x, j);
        size_t qe = B * s->hq * pj.n * d, ke = B * s->hk * pj.n * d;
        copy_heads(s->q.data, s->hq, N, recv[j], 0, s->hq, pj.t0, pj.n, B, d, e, 0);
        copy_heads(s->k.data, s->hk, N, recv[j] + qe * e, 0, s->hk, pj.t0, pj.n, B, d, e, 0);
        copy_heads(s->v.data, s->hk, N, recv[j] + (qe + ke) * e, 0, s->hk, pj.t0, pj.n, B, d, e, 0);
    }
    for (int j = 0; j < P; j++) {
        if (j != me) free(recv[j]);
        free(send[j]);
    }

    comm_phase_begin(&x->comm, "attention");
    kn_shape sh = {B, s->hq, s->hk, N, N, d, c->causal, NULL, NULL};
    kn_attn_io t;
    memset(&t, 0, sizeof t);
    t.q = s->q, t.k = s->k, t.v = s->v, t.o = s->o, t.lse = s->lse;
    kn_counters cnt = {0};
    kn_fa2_fwd(&sh, x->sram, &t, &cnt);
    comm_phase_end(&x->comm);

    for (int j = 0; j < P; j++) { /* to j: O of j's tokens for my heads */
        rank_part pj = part_of(x, j);
        sb[j] = B * s->hq * pj.n * d * e;
        send[j] = kn_xmalloc(sb[j] + 1, "all-to-all block");
        copy_heads(s->o.data, s->hq, N, send[j], 0, s->hq, pj.t0, pj.n, B, d, e, 1);
        rb[j] = B * pj.hq * x->n * d * e;
        recv[j] = j == me ? send[j] : kn_xmalloc(rb[j] + 1, "all-to-all block");
    }
    comm_phase_begin(&x->comm, "o_all_to_all");
    comm_alltoall(&x->comm, x->comm.world, (void **)send, sb, (void **)recv, rb);
    comm_phase_end(&x->comm);
    for (int j = 0; j < P; j++) {
        rank_part pj = part_of(x, j);
        copy_heads(x->o.data, c->heads, x->n, recv[j], pj.hq0, pj.hq, 0, x->n, B, d, e, 0);
        if (j != me) free(recv[j]);
        free(send[j]);
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
    kn_tensor dOh, dQh, dKh, dVh, dqacc, dsum;
    kn_tensor_alloc(&dOh, x->dtype, B * s->hq * N * d, "dO heads");
    for (int j = 0; j < P; j++) { /* to j: my tokens' dO of j's heads */
        rank_part pj = part_of(x, j);
        sb[j] = B * pj.hq * x->n * d * e;
        send[j] = kn_xmalloc(sb[j] + 1, "all-to-all block");
        copy_heads(x->d_o.data, c->heads, x->n, send[j], pj.hq0, pj.hq, 0, x->n, B, d, e, 1);
        rb[j] = B * s->hq * pj.n * d * e;
        recv[j] = j == me ? send[j] : kn_xmalloc(rb[j] + 1, "all-to-all block");
    }
    comm_phase_begin(&x->comm, "do_all_to_all");
    comm_alltoall(&x->comm, x->comm.world, (void **)send, sb, (void **)recv, rb);
    comm_phase_end(&x->comm);
    for (int j = 0; j < P; j++) {
        rank_part pj = part_of(x, j);
        copy_heads(dOh.data, s->hq, N, recv[j], 0, s->hq, pj.t0, pj.n, B, d, e, 0);
        if (j != me) free(recv[j]);
        free(send[j]);
    }

    kn_tensor_alloc(&dQh, x->dtype, B * s->hq * N * d, "dQ heads");
    kn_tensor_alloc(&dKh, x->dtype, B * s->hk * N * d, "dK heads");
    kn_tensor_alloc(&dVh, x->dtype, B * s->hk * N * d, "dV heads");
    kn_tensor_alloc(&dqacc, KN_F32, B * s->hq * N * d, "dQ accumulator");
    kn_tensor_alloc(&dsum, KN_F32, B * s->hq * N, "D");
    comm_phase_begin(&x->comm, "attention_bwd");
    kn_shape sh = {B, s->hq, s->hk, N, N, d, c->causal, NULL, NULL};
    kn_attn_io t;
    memset(&t, 0, sizeof t);
    t.q = s->q, t.k = s->k, t.v = s->v, t.o = s->o, t.lse = s->lse, t.d_o = dOh;
    t.dq = dQh, t.dk = dKh, t.dv = dVh, t.dq_acc = dqacc, t.dsum = dsum;
    kn_counters cnt = {0};
    kn_fa2_bwd(&sh, x->sram, &t, &cnt);
    comm_phase_end(&x->comm);

    for (int j = 0; j < P; j++) { /* to j: dQ | dK | dV of j's tokens for my heads */
        rank_part pj = part_of(x, j);
        size_t qe = B * s->hq * pj.n * d, ke = B * s->hk * pj.n * d;
        sb[j] = (qe + 2 * ke) * e;
        send[j] = kn_xmalloc(sb[j] + 1, "all-to-all block");
        copy_heads(dQh.data, s->hq, N, send[j], 0, s->hq, pj.t0, pj.n, B, d, e, 1);
        copy_heads(dKh.data, s->hk, N, send[j] + qe * e, 0, s->hk, pj.t0, pj.n, B, d, e, 1);
        copy_heads(dVh.data, s->hk, N, send[j] + (qe + ke) * e, 0, s->hk, pj.t0, pj.n, B, d, e, 1);
        rb[j] = (B * pj.hq * x->n * d + 2 * B * pj.hk * x->n * d) * e;
        recv[j] = j == me ? send[j] : kn_xmalloc(rb[j] + 1, "all-to-all block");
    }
    comm_phase_begin(&x->comm, "dqkv_all_to_all");
    comm_alltoall(&x->comm, x->comm.world, (void **)send, sb, (void **)recv, rb);
    comm_phase_end(&x->comm);
    for (int j = 0; j < P; j++) {
        rank_part pj = part_of(x, j);
        size_t qe = B * pj.hq * x->n * d, ke = B * pj.hk * x->n * d;
        copy_heads(x->dq.data, c->heads, x->n, recv[j], pj.hq0, pj.hq, 0, x->n, B, d, e, 0);
        copy_heads(x->dk.data, c->kv_heads, x->n, recv[j] + qe * e, pj.hk0, pj.hk, 0, x->n, B, d, e,
                   0);
        copy_heads(x->dv.data, c->kv_heads, x->n, recv[j] + (qe + ke) * e, pj.hk0, pj.hk, 0, x->n,
                   B, d, e, 0);
        if (j != me) free(recv[j]);
        free(send[j]);
    }
    free(send), free(recv), free(sb), free(rb);
    kn_tensor_free(&dOh), kn_tensor_free(&dQh), kn_tensor_free(&dKh), kn_tensor_free(&dVh);
    kn_tensor_free(&dqacc), kn_tensor_free(&dsum);
}

static void ulysses_release(exec_ctx *x)
{
    ulysses_state *s = x->saved;
    if (!s) return;
    kn_tensor_free(&s->q), kn_tensor_free(&s->k), kn_tensor_free(&s->v);
    kn_tensor_free(&s->o), kn_tensor_free(&s->lse);
    free(s);
    x->saved = NULL;
}

const exec_algo exec_ulysses = {ulysses_forward, ulysses_backward, ulysses_release};
