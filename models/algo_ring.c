/* algo_ring.c - Ring Attention's descriptor (algorithms.md section 4; docs/model.md, "Ring").
 *
 * P ranks in a ring hold the shards of a ring layout (contiguous, striped, zigzag). Forward
 * (ring_kv_steps): P - 1 steps of a K|V shift, step s computing the own Q shard against the
 * block held (rank i - s's) while it travels on. Backward (ring_kv_grad_steps): the K|V blocks
 * travel again with their dK|dV accumulators (f32) in the same message; after P - 1 steps rank
 * i holds block i + 1's accumulators, which go home in one more hop (ring_grad_return).
 */
#include "algo_ring.h"

#include "comm_counts.h"

static uint64_t shard_len(const am_config *c, uint64_t x)
{
    return ring_shard_len(c->layout, c->N, c->P, x);
}

static void shard_tokens(const am_config *c, uint64_t x, uint64_t *pos)
{
    uint64_t n = shard_len(c, x);
    for (uint64_t j = 0; j < n; j++) pos[j] = ring_shard_token(c->layout, c->N, c->P, x, j);
}

/* K|V (storage type), and in the backward their dK|dV accumulators (f32), per token */
static uint64_t kv_token_bytes(const am_config *c)
{
    return 2 * am_token_sizes(c).kv;
}

static uint64_t kv_grad_token_bytes(const am_config *c)
{
    am_token_bytes t = am_token_sizes(c);
    return 2 * t.kv + 2 * t.dkv32;
}

static void shift_counts(const am_config *c, uint64_t i, uint64_t tok_bytes, am_count *o)
{
    if (c->P == 1) return;
    am_ring_allgather_counts(o, tok_bytes, c->N, shard_len(c, i), shard_len(c, ring_next(i, c->P)),
                             c->P);
}

/* step s sends the K|V block held (rank i - s's), packed in one message */
static void kv_steps_counts(const am_config *c, uint64_t i, am_count *o)
{
    shift_counts(c, i, kv_token_bytes(c), o);
}

static void kv_grad_steps_counts(const am_config *c, uint64_t i, am_count *o)
{
    shift_counts(c, i, kv_grad_token_bytes(c), o);
}

/* the accumulator of block i + 1 goes home */
static void grad_return_counts(const am_config *c, uint64_t i, am_count *o)
{
    if (c->P == 1) return;
    uint64_t per = 2 * am_token_sizes(c).dkv32;
    o->bytes_sent = per * shard_len(c, ring_next(i, c->P));
    o->bytes_recv = per * shard_len(c, i);
    o->msgs_sent = o->msgs_recv = 1;
}

static uint64_t kv_steps_max(const am_config *c)
{
    return ring_shard_max(c->layout, c->N, c->P) * kv_token_bytes(c);
}

static uint64_t kv_grad_steps_max(const am_config *c)
{
    return ring_shard_max(c->layout, c->N, c->P) * kv_grad_token_bytes(c);
}

static uint64_t grad_return_max(const am_config *c)
{
    return ring_shard_max(c->layout, c->N, c->P) * 2 * am_token_sizes(c).dkv32;
}

/* step s: the own Q shard against the block held, busiest rank (partition.h) */
static int step_tile(const am_config *c, uint64_t s, uint64_t steps, am_tile *t)
{
    (void)steps;
    double n = (double)((c->N + c->P - 1) / c->P);
    t->pairs = ring_step_pairs(c->layout, c->causal, c->N, c->P, s);
    t->nq = t->nk = n;
    t->heads = (double)c->heads;
    return 1;
}

static const am_phase_desc kv_steps = {.id = PH_RING_KV_STEPS,
                                       .name = "ring_kv_steps",
                                       .pattern = PAT_RING_SHIFT,
                                       .comm = AM_COMM_WORLD,
                                       .part = AM_FWD,
                                       .overlap = 1,
                                       .counts = kv_steps_counts,
                                       .max_message = kv_steps_max,
                                       .tile = step_tile};
static const am_phase_desc kv_grad_steps = {.id = PH_RING_KV_GRAD_STEPS,
                                            .name = "ring_kv_grad_steps",
                                            .pattern = PAT_RING_SHIFT,
                                            .comm = AM_COMM_WORLD,
                                            .part = AM_BWD,
                                            .overlap = 1,
                                            .counts = kv_grad_steps_counts,
                                            .max_message = kv_grad_steps_max,
                                            .tile = step_tile};
static const am_phase_desc grad_return = {.id = PH_RING_GRAD_RETURN,
                                          .name = "ring_grad_return",
                                          .pattern = PAT_RETURN_HOP,
                                          .comm = AM_COMM_WORLD,
                                          .part = AM_BWD,
                                          .counts = grad_return_counts,
                                          .max_message = grad_return_max};

static const am_phase_desc *const fwd[] = {&kv_steps};
static const am_phase_desc *const bwd[] = {&kv_grad_steps, &grad_return};

const am_algo_desc am_ring = {.name = "ring",
                              .title = "Ring Attention",
                              .grid = AM_GRID_LINE,
                              .uses_layout = 1,
                              .shard_len = shard_len,
                              .shard_tokens = shard_tokens,
                              .fwd = fwd,
                              .bwd = bwd,
                              .n_fwd = AM_COUNT(fwd),
                              .n_bwd = AM_COUNT(bwd)};
