/* comm_counts.c - payload sizes and ring / all-to-all sums (see comm_counts.h, docs/model.md).
 *
 * Over a ring of g members whose per-member blocks are B_0..B_{g-1}:
 *   shift / all-gather (g-1 steps, step s forwards the block received at step s-1, own first):
 *     member k sends every block but B_{k+1}, receives every block but B_k;
 *   reduce-scatter (g-1 steps, step s sends the running partial of block k-s-1, the receiver
 *     merges its own contribution; member k ends with the complete B_k):
 *     member k sends every block but B_k, receives every block but B_{k-1}.
 * Sums over a group come from partition.h in O(1), so any P (65536 and beyond) is cheap.
 */
#include "comm_counts.h"

uint64_t am_elem_bytes(const am_config *c)
{
    return c->dtype == 0 ? 4 : 2;
}

am_token_bytes am_token_sizes(const am_config *c)
{
    uint64_t e = am_elem_bytes(c), b = c->batch, d = c->head_dim;
    am_token_bytes t = {b * c->heads * d * e, b * c->kv_heads * d * e,
                        b * c->heads * 4,     b * c->heads * (4 * d + 8),
                        b * c->heads * d * 4, b * c->kv_heads * d * 4};
    return t;
}

void am_ring_allgather_counts(am_count *o, uint64_t tok_bytes, uint64_t total, uint64_t own,
                              uint64_t next, uint64_t g)
{
    o->bytes_sent += tok_bytes * (total - next);
    o->bytes_recv += tok_bytes * (total - own);
    o->msgs_sent += g - 1;
    o->msgs_recv += g - 1;
}

void am_ring_reduce_scatter_counts(am_count *o, uint64_t tok_bytes, uint64_t total, uint64_t own,
                                   uint64_t prev, uint64_t g)
{
    o->bytes_sent += tok_bytes * (total - own);
    o->bytes_recv += tok_bytes * (total - prev);
    o->msgs_sent += g - 1;
    o->msgs_recv += g - 1;
}

void am_heads_alltoall_counts(am_count *o, const am_config *c, am_a2a_payload what, uint64_t T,
                              uint64_t g, uint64_t i)
{
    if (g == 1) return;
    uint64_t gq = c->heads / c->kv_heads;
    uint64_t per = c->batch * c->head_dim * am_elem_bytes(c); /* one token of one head */
    uint64_t own = part_block_count(T, g, i);
    uint64_t hk_i = ulysses_kv_heads(c->kv_heads, g, i), hq_i = gq * hk_i;
    uint64_t all_heads = c->heads + 2 * c->kv_heads, my_heads = hq_i + 2 * hk_i;
    switch (what) {
    case A2A_QKV_TO_HEADS: /* to j: my tokens of j's heads (Q|K|V packed); from j: j's tokens of
                              my heads */
        o->bytes_sent = per * own * (all_heads - my_heads);
        o->bytes_recv = per * (T - own) * my_heads;
        break;
    case A2A_O_TO_TOKENS:
        o->bytes_sent = per * (T - own) * hq_i;
        o->bytes_recv = per * own * (c->heads - hq_i);
        break;
    case A2A_DO_TO_HEADS:
        o->bytes_sent = per * own * (c->heads - hq_i);
        o->bytes_recv = per * (T - own) * hq_i;
        break;
    case A2A_DQKV_TO_TOKENS:
        o->bytes_sent = per * (T - own) * my_heads;
        o->bytes_recv = per * own * (all_heads - my_heads);
        break;
    }
    o->msgs_sent = o->msgs_recv = g - 1;
}

uint64_t am_heads_alltoall_bytes(const am_config *c, am_a2a_payload what, uint64_t T, uint64_t g,
                                 uint64_t i, uint64_t j)
{
    if (i == j) return 0;
    uint64_t gq = c->heads / c->kv_heads;
    uint64_t per = c->batch * c->head_dim * am_elem_bytes(c); /* one token of one head */
    uint64_t hk_i = ulysses_kv_heads(c->kv_heads, g, i), hk_j = ulysses_kv_heads(c->kv_heads, g, j);
    uint64_t n_i = part_block_count(T, g, i), n_j = part_block_count(T, g, j);
    switch (what) {
    case A2A_QKV_TO_HEADS: /* my tokens of j's heads, Q|K|V */
        return per * n_i * (gq + 2) * hk_j;
    case A2A_O_TO_TOKENS: /* j's tokens of my query heads */
        return per * n_j * gq * hk_i;
    case A2A_DO_TO_HEADS: /* my tokens of j's query heads */
        return per * n_i * gq * hk_j;
    case A2A_DQKV_TO_TOKENS: /* j's tokens of my heads, dQ|dK|dV */
        return per * n_j * (gq + 2) * hk_i;
    }
    return 0;
}

uint64_t am_heads_alltoall_max(const am_config *c, am_a2a_payload what, uint64_t t_max, uint64_t g)
{
    uint64_t per = c->batch * c->head_dim * am_elem_bytes(c);
    uint64_t hk = ulysses_kv_heads_max(c->kv_heads, g), hq = hk * (c->heads / c->kv_heads);
    if (what == A2A_QKV_TO_HEADS || what == A2A_DQKV_TO_TOKENS) return per * t_max * (hq + 2 * hk);
    return per * t_max * hq;
}
