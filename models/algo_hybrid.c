/* algo_hybrid.c - the hybrid's descriptor: Ulysses inside groups, Ring across them
 * (algorithms.md section 7, "unified sequence parallelism"; docs/model.md, "Hybrid").
 *
 * P = u x r ranks on a u x r grid (partition.h's column-major map): group c is the u
 * consecutive ranks c u .. c u + u - 1 (a grid column), and the r ranks at position i of every
 * group form a ring (a grid row). The sequence is split over the groups by a ring layout
 * (contiguous, striped or zigzag over r: group c holds T_c tokens), and inside a group over its
 * u members by balanced blocks of the group's token list. qkv_all_to_all (in the group) turns
 * the token split into a head split: member i gets the i-th balanced block of the K/V heads
 * (and their query heads) for all T_c tokens of its group; K/V are never replicated, so
 * kv_heads >= u. Then Ring Attention across the groups on those heads: r - 1 K|V steps, each
 * overlapped with the own Q (group tokens, own heads) against the block held; o_all_to_all
 * returns O to the token owners. Backward: do_all_to_all, a ring of K|V|dK|dV steps and the
 * return hop, dqkv_all_to_all. u = 1 is Ring, u = P is Ulysses.
 */
#include "algo_hybrid.h"

#include <stdio.h>

#include "comm_counts.h"

static int validate(const am_config *c, char *err, size_t errlen)
{
    if (c->rows * c->cols != c->P)
        return snprintf(err, errlen,
                        "groups of u = %llu ranks do not divide P = %llu; accepted: "
                        "--ulysses-size U with U dividing P",
                        (unsigned long long)c->rows, (unsigned long long)c->P),
               -1;
    return 0;
}

/* Group c's tokens (the ring layout over r groups) and member i's block of them. */
static uint64_t group_len(const am_config *c, uint64_t g)
{
    return ring_shard_len(c->layout, c->N, c->cols, g);
}

static uint64_t shard_len(const am_config *c, uint64_t x)
{
    return part_block_count(group_len(c, grid_col(x, c->rows)), c->rows, grid_row(x, c->rows));
}

static void shard_tokens(const am_config *c, uint64_t x, uint64_t *pos)
{
    uint64_t g = grid_col(x, c->rows), i = grid_row(x, c->rows), T = group_len(c, g);
    uint64_t n = part_block_count(T, c->rows, i), first = part_block_start(T, c->rows, i);
    for (uint64_t j = 0; j < n; j++)
        pos[j] = ring_shard_token(c->layout, c->N, c->cols, g, first + j);
}

/* ---- the all-to-alls in the group: Ulysses' counts over T_c tokens and u members ---------- */

#define ALL_TO_ALL(fn, what)                                                                       \
    static void fn##_counts(const am_config *c, uint64_t x, am_count *o)                           \
    {                                                                                              \
        am_heads_alltoall_counts(o, c, what, group_len(c, grid_col(x, c->rows)), c->rows,          \
                                 grid_row(x, c->rows));                                            \
    }                                                                                              \
    static uint64_t fn##_max(const am_config *c)                                                   \
    {                                                                                              \
        uint64_t t = ring_shard_max(c->layout, c->N, c->cols);                                     \
        return am_heads_alltoall_max(c, what, (t + c->rows - 1) / c->rows, c->rows);               \
    }                                                                                              \
    static uint64_t fn##_peer_bytes(const am_config *c, uint64_t x, uint64_t y)                    \
    {                                                                                              \
        return am_heads_alltoall_bytes(c, what, group_len(c, grid_col(x, c->rows)), c->rows,       \
                                       grid_row(x, c->rows), grid_row(y, c->rows));                \
    }
ALL_TO_ALL(qkv, A2A_QKV_TO_HEADS)
ALL_TO_ALL(o, A2A_O_TO_TOKENS)
ALL_TO_ALL(d_o, A2A_DO_TO_HEADS)
ALL_TO_ALL(dqkv, A2A_DQKV_TO_TOKENS)
#undef ALL_TO_ALL

/* ---- the ring across the groups: Ring's counts for member i's K/V heads -------------------- */

/* K|V of one token for hk heads (storage type), and their dK|dV accumulators (f32) */
static uint64_t kv_bytes(const am_config *c, uint64_t hk, int grads)
{
    uint64_t per = c->batch * hk * c->head_dim;
    return 2 * per * am_elem_bytes(c) + (grads ? 2 * per * 4 : 0);
}

static uint64_t my_kv_heads(const am_config *c, uint64_t x)
{
    return ulysses_kv_heads(c->kv_heads, c->rows, grid_row(x, c->rows));
}

static void shift_counts(const am_config *c, uint64_t x, int grads, am_count *o)
{
    uint64_t r = c->cols, g = grid_col(x, c->rows);
    if (r == 1) return;
    am_ring_allgather_counts(o, kv_bytes(c, my_kv_heads(c, x), grads), c->N, group_len(c, g),
                             group_len(c, ring_next(g, r)), r);
}

static void kv_steps_counts(const am_config *c, uint64_t x, am_count *o)
{
    shift_counts(c, x, 0, o);
}

static void kv_grad_steps_counts(const am_config *c, uint64_t x, am_count *o)
{
    shift_counts(c, x, 1, o);
}

/* the accumulators of the next group's block go home (member i of group g + 1) */
static void grad_return_counts(const am_config *c, uint64_t x, am_count *o)
{
    uint64_t r = c->cols, g = grid_col(x, c->rows);
    if (r == 1) return;
    uint64_t per = 2 * c->batch * my_kv_heads(c, x) * c->head_dim * 4;
    o->bytes_sent = per * group_len(c, ring_next(g, r));
    o->bytes_recv = per * group_len(c, g);
    o->msgs_sent = o->msgs_recv = 1;
}

static uint64_t kv_steps_max(const am_config *c)
{
    return ring_shard_max(c->layout, c->N, c->cols) *
           kv_bytes(c, ulysses_kv_heads_max(c->kv_heads, c->rows), 0);
}

static uint64_t kv_grad_steps_max(const am_config *c)
{
    return ring_shard_max(c->layout, c->N, c->cols) *
           kv_bytes(c, ulysses_kv_heads_max(c->kv_heads, c->rows), 1);
}

static uint64_t grad_return_max(const am_config *c)
{
    return ring_shard_max(c->layout, c->N, c->cols) * 2 * c->batch *
           ulysses_kv_heads_max(c->kv_heads, c->rows) * c->head_dim * 4;
}

/* step s: the group's Q (its most heads) against the K/V block held: Ring's busiest step over
 * r groups */
static int step_tile(const am_config *c, uint64_t s, uint64_t steps, am_tile *t)
{
    (void)steps;
    uint64_t r = c->cols;
    t->nq = t->nk = (double)((c->N + r - 1) / r);
    t->pairs = ring_step_pairs(c->layout, c->causal, c->N, r, s);
    t->heads = (double)(ulysses_kv_heads_max(c->kv_heads, c->rows) * (c->heads / c->kv_heads));
    return 1;
}

static const am_phase_desc qkv = {.id = PH_HYB_QKV_ALL_TO_ALL,
                                  .name = "qkv_all_to_all",
                                  .pattern = PAT_ALLTOALL,
                                  .comm = AM_COMM_GROUP,
                                  .part = AM_FWD,
                                  .counts = qkv_counts,
                                  .max_message = qkv_max,
                                  .peer_bytes = qkv_peer_bytes};
static const am_phase_desc kv_steps = {.id = PH_HYB_RING_KV_STEPS,
                                       .name = "ring_kv_steps",
                                       .pattern = PAT_RING_SHIFT,
                                       .comm = AM_COMM_ACROSS_GROUPS,
                                       .part = AM_FWD,
                                       .overlap = 1,
                                       .counts = kv_steps_counts,
                                       .max_message = kv_steps_max,
                                       .tile = step_tile};
static const am_phase_desc o = {.id = PH_HYB_O_ALL_TO_ALL,
                                .name = "o_all_to_all",
                                .pattern = PAT_ALLTOALL,
                                .comm = AM_COMM_GROUP,
                                .part = AM_FWD,
                                .counts = o_counts,
                                .max_message = o_max,
                                .peer_bytes = o_peer_bytes};
static const am_phase_desc d_o = {.id = PH_HYB_DO_ALL_TO_ALL,
                                  .name = "do_all_to_all",
                                  .pattern = PAT_ALLTOALL,
                                  .comm = AM_COMM_GROUP,
                                  .part = AM_BWD,
                                  .counts = d_o_counts,
                                  .max_message = d_o_max,
                                  .peer_bytes = d_o_peer_bytes};
static const am_phase_desc kv_grad_steps = {.id = PH_HYB_RING_KV_GRAD_STEPS,
                                            .name = "ring_kv_grad_steps",
                                            .pattern = PAT_RING_SHIFT,
                                            .comm = AM_COMM_ACROSS_GROUPS,
                                            .part = AM_BWD,
                                            .overlap = 1,
                                            .counts = kv_grad_steps_counts,
                                            .max_message = kv_grad_steps_max,
                                            .tile = step_tile};
static const am_phase_desc grad_return = {.id = PH_HYB_RING_GRAD_RETURN,
                                          .name = "ring_grad_return",
                                          .pattern = PAT_RETURN_HOP,
                                          .comm = AM_COMM_ACROSS_GROUPS,
                                          .part = AM_BWD,
                                          .counts = grad_return_counts,
                                          .max_message = grad_return_max};
static const am_phase_desc dqkv = {.id = PH_HYB_DQKV_ALL_TO_ALL,
                                   .name = "dqkv_all_to_all",
                                   .pattern = PAT_ALLTOALL,
                                   .comm = AM_COMM_GROUP,
                                   .part = AM_BWD,
                                   .counts = dqkv_counts,
                                   .max_message = dqkv_max,
                                   .peer_bytes = dqkv_peer_bytes};

static const am_phase_desc *const fwd[] = {&qkv, &kv_steps, &o};
static const am_phase_desc *const bwd[] = {&d_o, &kv_grad_steps, &grad_return, &dqkv};

const am_algo_desc am_hybrid = {.name = "hybrid",
                                .title = "Ulysses inside groups x Ring across them",
                                .grid = AM_GRID_GROUPS,
                                .uses_layout = 1,
                                .head_split = AM_COMM_GROUP,
                                .validate = validate,
                                .shard_len = shard_len,
                                .shard_tokens = shard_tokens,
                                .fwd = fwd,
                                .bwd = bwd,
                                .n_fwd = AM_COUNT(fwd),
                                .n_bwd = AM_COUNT(bwd)};
