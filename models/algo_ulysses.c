/* algo_ulysses.c - DeepSpeed-Ulysses' descriptor (algorithms.md section 6; docs/model.md,
 * "Ulysses").
 *
 * Tokens are split contiguously; qkv_all_to_all turns the token split into a head split: rank j
 * gets the j-th balanced block of K/V heads and the g query heads of each (grouped-query: K/V
 * are never replicated; needs kv_heads >= P), for the whole sequence. One local attention over
 * the whole sequence, then o_all_to_all returns O to the token owners. Backward: do_all_to_all,
 * the local backward, dqkv_all_to_all back. Each all-to-all is P - 1 pairwise rounds.
 */
#include "algo_ulysses.h"

#include "comm_counts.h"

static uint64_t shard_len(const am_config *c, uint64_t x)
{
    return part_block_count(c->N, c->P, x);
}

static void shard_tokens(const am_config *c, uint64_t x, uint64_t *pos)
{
    uint64_t n = shard_len(c, x), start = part_block_start(c->N, c->P, x);
    for (uint64_t j = 0; j < n; j++) pos[j] = start + j;
}

#define ALL_TO_ALL(fn, what)                                                                       \
    static void fn##_counts(const am_config *c, uint64_t x, am_count *o)                           \
    {                                                                                              \
        am_heads_alltoall_counts(o, c, what, c->N, c->P, x);                                       \
    }                                                                                              \
    static uint64_t fn##_max(const am_config *c)                                                   \
    {                                                                                              \
        return am_heads_alltoall_max(c, what, (c->N + c->P - 1) / c->P, c->P);                     \
    }                                                                                              \
    static uint64_t fn##_peer_bytes(const am_config *c, uint64_t x, uint64_t y)                    \
    {                                                                                              \
        return am_heads_alltoall_bytes(c, what, c->N, c->P, x, y);                                 \
    }
ALL_TO_ALL(qkv, A2A_QKV_TO_HEADS)
ALL_TO_ALL(o, A2A_O_TO_TOKENS)
ALL_TO_ALL(d_o, A2A_DO_TO_HEADS)
ALL_TO_ALL(dqkv, A2A_DQKV_TO_TOKENS)
#undef ALL_TO_ALL

/* the whole sequence for the most heads a rank holds (causal: the inclusive triangle) */
static int attention_tile(const am_config *c, uint64_t s, uint64_t steps, am_tile *t)
{
    (void)s, (void)steps;
    t->nq = t->nk = (double)c->N;
    t->pairs = attn_tile_pairs(c->causal, (double)c->N, (double)c->N, 1);
    t->heads = (double)(ulysses_kv_heads_max(c->kv_heads, c->P) * (c->heads / c->kv_heads));
    return 1;
}

static const am_phase_desc qkv = {.id = PH_ULY_QKV_ALL_TO_ALL,
                                  .name = "qkv_all_to_all",
                                  .pattern = PAT_ALLTOALL,
                                  .comm = AM_COMM_WORLD,
                                  .part = AM_FWD,
                                  .counts = qkv_counts,
                                  .max_message = qkv_max,
                                  .peer_bytes = qkv_peer_bytes};
static const am_phase_desc attention = {.id = PH_ULY_ATTENTION,
                                        .name = "attention",
                                        .pattern = PAT_NONE,
                                        .comm = AM_COMM_NONE,
                                        .part = AM_FWD,
                                        .tile = attention_tile};
static const am_phase_desc o = {.id = PH_ULY_O_ALL_TO_ALL,
                                .name = "o_all_to_all",
                                .pattern = PAT_ALLTOALL,
                                .comm = AM_COMM_WORLD,
                                .part = AM_FWD,
                                .counts = o_counts,
                                .max_message = o_max,
                                .peer_bytes = o_peer_bytes};
static const am_phase_desc d_o = {.id = PH_ULY_DO_ALL_TO_ALL,
                                  .name = "do_all_to_all",
                                  .pattern = PAT_ALLTOALL,
                                  .comm = AM_COMM_WORLD,
                                  .part = AM_BWD,
                                  .counts = d_o_counts,
                                  .max_message = d_o_max,
                                  .peer_bytes = d_o_peer_bytes};
static const am_phase_desc attention_bwd = {.id = PH_ULY_ATTENTION_BWD,
                                            .name = "attention_bwd",
                                            .pattern = PAT_NONE,
                                            .comm = AM_COMM_NONE,
                                            .part = AM_BWD,
                                            .tile = attention_tile};
static const am_phase_desc dqkv = {.id = PH_ULY_DQKV_ALL_TO_ALL,
                                   .name = "dqkv_all_to_all",
                                   .pattern = PAT_ALLTOALL,
                                   .comm = AM_COMM_WORLD,
                                   .part = AM_BWD,
                                   .counts = dqkv_counts,
                                   .max_message = dqkv_max,
                                   .peer_bytes = dqkv_peer_bytes};

static const am_phase_desc *const fwd[] = {&qkv, &attention, &o};
static const am_phase_desc *const bwd[] = {&d_o, &attention_bwd, &dqkv};

const am_algo_desc am_ulysses = {.name = "ulysses",
                                 .title = "DeepSpeed-Ulysses",
                                 .grid = AM_GRID_LINE,
                                 .head_split = AM_COMM_WORLD,
                                 .shard_len = shard_len,
                                 .shard_tokens = shard_tokens,
                                 .fwd = fwd,
                                 .bwd = bwd,
                                 .n_fwd = AM_COUNT(fwd),
                                 .n_bwd = AM_COUNT(bwd)};
