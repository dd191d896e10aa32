/* heads_a2a.c - the all-to-alls that turn a token split into a head split and back, over any
 * group of the executor (see exec.h; counts: models/comm_counts.c, am_heads_alltoall_counts).
 *
 * Member j holds the tokens [t0_j, t0_j + n_j) of a list of T (the token side: all heads, its
 * tokens) or the heads of block j (the head side: its query heads [hq0_j, + hq_j) and K/V heads
 * [hk0_j, + hk_j), all T tokens). One exchange moves several payloads (Q|K|V, O, dO, dQ|dK|dV)
 * packed per peer in the order given, in g - 1 pairwise rounds (comm_alltoall); the own block is
 * copied locally.
 */
#include <stdlib.h>

#include "exec.h"
#include "fail.h"

void heads_split_init(heads_split *hs, const exec_ctx *x, MPI_Comm on, size_t T)
{
    const am_config *c = &x->cfg;
    int g, me;
    MPICALL(MPI_Comm_size(on, &g));
    MPICALL(MPI_Comm_rank(on, &me));
    hs->on = on, hs->g = g, hs->me = me, hs->T = T;
    hs->at = kn_xmalloc((size_t)g * sizeof *hs->at, "head split");
    size_t gq = c->heads / c->kv_heads;
    for (int j = 0; j < g; j++) {
        heads_block *b = &hs->at[j];
        b->n = part_block_count(T, (uint64_t)g, (uint64_t)j);
        b->t0 = part_block_start(T, (uint64_t)g, (uint64_t)j);
        b->hk = ulysses_kv_heads(c->kv_heads, (uint64_t)g, (uint64_t)j);
        b->hk0 = ulysses_kv_head_start(c->kv_heads, (uint64_t)g, (uint64_t)j);
        b->hq = gq * b->hk, b->hq0 = gq * b->hk0;
    }
}

void heads_split_free(heads_split *hs)
{
    free(hs->at);
    hs->at = NULL;
}

/* Copies heads [h0, h0 + hn) of tokens [t0, t0 + n) between a [b][H][T][d] array and a dense
 * [b][hn][n][d] block (to_block: array -> block); one strided copy per batch entry. */
static void copy_heads(const exec_ctx *x, char *arr, size_t H, size_t T, char *block, size_t h0,
                       size_t hn, size_t t0, size_t n, int to_block)
{
    size_t d = x->cfg.head_dim, e = kn_dtype_bytes(x->dtype);
    if (!hn || !n) return;
    for (size_t b = 0; b < x->cfg.batch; b++) {
        char *a = arr + (((b * H + h0) * T + t0) * d) * e;
        char *k = block + ((b * hn) * n * d) * e;
        if (to_block)
            x->dev->copy2d(k, n * d * e, a, T * d * e, n * d * e, hn);
        else
            x->dev->copy2d(a, T * d * e, k, n * d * e, n * d * e, hn);
    }
}

/* Payload p's heads of member j: count and first (query or K/V heads). */
static size_t heads_of(const heads_block *b, const heads_payload *p, size_t *h0)
{
    *h0 = p->kv ? b->hk0 : b->hq0;
    return p->kv ? b->hk : b->hq;
}

void heads_alltoall(exec_ctx *x, const heads_split *hs, am_phase_id phase, const heads_payload *p,
                    int np, int to_heads)
{
    const am_config *c = &x->cfg;
    size_t e = kn_dtype_bytes(x->dtype), d = c->head_dim, B = c->batch, g = (size_t)hs->g;
    const heads_block *mine = &hs->at[hs->me];
    char **send = kn_xmalloc(g * sizeof *send, "blocks"),
         **recv = kn_xmalloc(g * sizeof *recv, "blocks");
    uint64_t *sb = kn_xmalloc(g * sizeof *sb, "sizes"), *rb = kn_xmalloc(g * sizeof *rb, "sizes");
    /* to heads: to j my tokens of j's heads, from j j's tokens of my heads; to tokens: the
     * reverse */
    for (size_t j = 0; j < g; j++) {
        const heads_block *pj = &hs->at[j];
        sb[j] = rb[j] = 0;
        for (int i = 0; i < np; i++) {
            size_t h0, hj = heads_of(pj, &p[i], &h0), hm = heads_of(mine, &p[i], &h0);
            sb[j] += B * (to_heads ? hj * mine->n : hm * pj->n) * d * e;
            rb[j] += B * (to_heads ? hm * pj->n : hj * mine->n) * d * e;
        }
        send[j] = xd_alloc(x, sb[j], "all-to-all block");
        char *at = send[j];
        for (int i = 0; i < np; i++) {
            size_t h0, hn = heads_of(to_heads ? pj : mine, &p[i], &h0);
            if (to_heads) /* my tokens of j's heads, from the token side */
                copy_heads(x, p[i].tokens, p[i].H, mine->n, at, h0, hn, 0, mine->n, 1);
            else /* j's tokens of my heads, from the head side */
                copy_heads(x, p[i].heads, hn, hs->T, at, 0, hn, pj->t0, pj->n, 1);
            at += B * hn * (to_heads ? mine->n : pj->n) * d * e;
        }
        recv[j] = j == (size_t)hs->me ? send[j] : xd_alloc(x, rb[j], "all-to-all block");
    }
    comm_phase_begin(&x->comm, phase);
    comm_alltoall(&x->comm, hs->on, (void **)send, sb, (void **)recv, rb);
    comm_phase_end(&x->comm);
    for (size_t j = 0; j < g; j++) {
        const heads_block *pj = &hs->at[j];
        char *at = recv[j];
        for (int i = 0; i < np; i++) {
            size_t h0, hn = heads_of(to_heads ? mine : pj, &p[i], &h0);
            if (to_heads) /* j's tokens of my heads, into the head side */
                copy_heads(x, p[i].heads, hn, hs->T, at, 0, hn, pj->t0, pj->n, 0);
            else /* my tokens of j's heads, into the token side */
                copy_heads(x, p[i].tokens, p[i].H, mine->n, at, h0, hn, 0, mine->n, 0);
            at += B * hn * (to_heads ? pj->n : mine->n) * d * e;
        }
        if (j != (size_t)hs->me) xd_free(x, recv[j]);
        xd_free(x, send[j]);
    }
    free(send), free(recv), free(sb), free(rb);
}
