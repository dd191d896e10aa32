/* algo_a2d.c - Attention2D's descriptors, A2D-NO and A2D-O (algorithms.md section 5;
 * docs/model.md, "Attention2D"), on any R x C grid.
 *
 * Rank x = (r, c) holds Q, K, V of the tokens t = x (mod P); after kv_transpose device (r, c)
 * holds the K/V class rC + c, so a row {(r, j)} holds the Q classes r + jR and a column
 * {(i, c)} the K/V classes iC + c (partition.h). A2D-NO all-gathers Q along the row and K|V
 * along the column, computes its tile, and reduce-scatters the partials along the row with the
 * merge operator. A2D-O runs the column gather as a ring overlapped with the own Q shard, then
 * the Q shards around the row ring with the partials accumulating behind them. The backward
 * (both): row all-gather of Q|dO|LSE|D, column all-gather of K|V, the tile's backward, row
 * reduce-scatter of dQ, column reduce-scatter of dK|dV (f32), dK|dV back to their owners.
 */
#include "algo_a2d.h"

#include "comm_counts.h"

static uint64_t shard_len(const am_config *c, uint64_t x)
{
    return part_cyclic_count(c->N, c->P, x);
}

static void shard_tokens(const am_config *c, uint64_t x, uint64_t *pos)
{
    uint64_t n = shard_len(c, x);
    for (uint64_t j = 0; j < n; j++) pos[j] = x + j * c->P;
}

/* Rank x's place: its row and column groups' token totals and its neighbours' blocks. */
typedef struct {
    am_token_bytes t;
    uint64_t R, C, row_total, col_total;
    uint64_t q_own, q_next, q_prev;    /* Q classes along the row */
    uint64_t kv_own, kv_next, kv_prev; /* K/V classes along the column */
    uint64_t dest, src;                /* the transpose: where my class goes, whose I get */
} place;

static place place_of(const am_config *c, uint64_t x)
{
    place p;
    uint64_t N = c->N, P = c->P, R = c->rows, C = c->cols;
    uint64_t r = grid_row(x, R), col = grid_col(x, R);
    p.t = am_token_sizes(c);
    p.R = R, p.C = C;
    /* row group: member j holds class r + j R; column group: member i holds K/V class i C + c */
    p.row_total = part_cyclic_count(N, R, r), p.col_total = part_cyclic_count(N, C, col);
    p.q_own = part_cyclic_count(N, P, x);
    p.q_next = part_cyclic_count(N, P, r + ((col + 1) % C) * R);
    p.q_prev = part_cyclic_count(N, P, r + ((col + C - 1) % C) * R);
    p.kv_own = part_cyclic_count(N, P, a2d_kv_class(r, col, C));
    p.kv_next = part_cyclic_count(N, P, a2d_kv_class((r + 1) % R, col, C));
    p.kv_prev = part_cyclic_count(N, P, a2d_kv_class((r + R - 1) % R, col, C));
    p.dest = a2d_transpose_dest(x, R, C);
    p.src = a2d_kv_class(r, col, C);
    return p;
}

/* send own K|V (class x) to the device that will hold class x; receive class r C + c from
 * rank r C + c; a device that keeps its own class sends nothing */
static void kv_transpose_counts(const am_config *c, uint64_t x, am_count *o)
{
    place p = place_of(c, x);
    if (p.dest != x) o->bytes_sent = 2 * p.t.kv * p.q_own, o->msgs_sent = 1;
    if (p.src != x) o->bytes_recv = 2 * p.t.kv * p.kv_own, o->msgs_recv = 1;
}

/* the inverse: dK|dV (storage type) of class r C + c go back to rank r C + c */
static void dkv_transpose_counts(const am_config *c, uint64_t x, am_count *o)
{
    place p = place_of(c, x);
    if (p.src != x) o->bytes_sent = 2 * p.t.kv * p.kv_own, o->msgs_sent = 1;
    if (p.dest != x) o->bytes_recv = 2 * p.t.kv * p.q_own, o->msgs_recv = 1;
}

static uint64_t kv_transpose_peer(const am_config *c, uint64_t x)
{
    return a2d_transpose_dest(x, c->rows, c->cols);
}

static uint64_t dkv_transpose_peer(const am_config *c, uint64_t x)
{
    return a2d_kv_class(grid_row(x, c->rows), grid_col(x, c->rows), c->cols);
}

/* row all-gathers and reduce-scatters of `tok` bytes per token; column ones of K/V classes */
static void row_allgather(const place *p, uint64_t tok, am_count *o)
{
    if (p->C > 1) am_ring_allgather_counts(o, tok, p->row_total, p->q_own, p->q_next, p->C);
}

static void row_reduce_scatter(const place *p, uint64_t tok, am_count *o)
{
    if (p->C > 1) am_ring_reduce_scatter_counts(o, tok, p->row_total, p->q_own, p->q_prev, p->C);
}

static void col_allgather(const place *p, uint64_t tok, am_count *o)
{
    if (p->R > 1) am_ring_allgather_counts(o, tok, p->col_total, p->kv_own, p->kv_next, p->R);
}

static void q_allgather_counts(const am_config *c, uint64_t x, am_count *o)
{
    place p = place_of(c, x);
    row_allgather(&p, p.t.q, o);
}

static void kv_allgather_counts(const am_config *c, uint64_t x, am_count *o)
{
    place p = place_of(c, x);
    col_allgather(&p, 2 * p.t.kv, o);
}

static void partial_reduce_scatter_counts(const am_config *c, uint64_t x, am_count *o)
{
    place p = place_of(c, x);
    row_reduce_scatter(&p, p.t.partial, o);
}

/* Q shards travel the row ring (as an all-gather) and the partial of each Q shard accumulates
 * along the same ring and ends at its owner (as a reduce-scatter) */
static void q_row_ring_counts(const am_config *c, uint64_t x, am_count *o)
{
    place p = place_of(c, x);
    row_allgather(&p, p.t.q, o);
    row_reduce_scatter(&p, p.t.partial, o);
}

/* Q|dO (storage type) and LSE|D (f32) of a shard, packed in one message */
static void q_do_allgather_counts(const am_config *c, uint64_t x, am_count *o)
{
    place p = place_of(c, x);
    row_allgather(&p, 2 * p.t.q + 2 * p.t.stat, o);
}

static void dq_reduce_scatter_counts(const am_config *c, uint64_t x, am_count *o)
{
    place p = place_of(c, x);
    row_reduce_scatter(&p, p.t.dq32, o);
}

static void dkv_reduce_scatter_counts(const am_config *c, uint64_t x, am_count *o)
{
    place p = place_of(c, x);
    if (p.R > 1)
        am_ring_reduce_scatter_counts(o, 2 * p.t.dkv32, p.col_total, p.kv_own, p.kv_prev, p.R);
}

/* Largest messages: one block of the largest cyclic class, ceil(N / P) tokens. */
static uint64_t largest_class(const am_config *c)
{
    return (c->N + c->P - 1) / c->P;
}

static uint64_t kv_block_max(const am_config *c)
{
    return largest_class(c) * 2 * am_token_sizes(c).kv;
}

static uint64_t q_block_max(const am_config *c)
{
    return largest_class(c) * am_token_sizes(c).q;
}

static uint64_t partial_block_max(const am_config *c)
{
    return largest_class(c) * am_token_sizes(c).partial;
}

static uint64_t q_or_partial_max(const am_config *c)
{
    am_token_bytes t = am_token_sizes(c);
    return largest_class(c) * (t.q > t.partial ? t.q : t.partial);
}

static uint64_t q_do_block_max(const am_config *c)
{
    am_token_bytes t = am_token_sizes(c);
    return largest_class(c) * (2 * t.q + 2 * t.stat);
}

static uint64_t dq_block_max(const am_config *c)
{
    return largest_class(c) * am_token_sizes(c).dq32;
}

static uint64_t dkv_block_max(const am_config *c)
{
    return largest_class(c) * 2 * am_token_sizes(c).dkv32;
}

/* q_row_ring: a Q shard and a partial cross each hop in the same step; then the last partial
 * goes home */
static uint64_t q_row_ring_step_bytes(const am_config *c)
{
    am_token_bytes t = am_token_sizes(c);
    return largest_class(c) * (t.q + t.partial);
}

/* Compute. The tile of device (r, c): Q class r mod R (ceil(N / R) rows) against K/V class
 * c mod C (ceil(N / C) keys), causal-balanced (a triangle where R = C). */
static int tile_of_grid(const am_config *c, uint64_t s, uint64_t steps, am_tile *t)
{
    (void)s, (void)steps;
    uint64_t N = c->N, R = c->rows, C = c->cols;
    t->nq = (double)((N + R - 1) / R), t->nk = (double)((N + C - 1) / C);
    t->pairs = attn_tile_pairs(c->causal, t->nq, t->nk, R == C);
    t->heads = (double)c->heads;
    return 1;
}

/* kv_column_ring, step s: the own Q shard against the K/V block held */
static int column_ring_tile(const am_config *c, uint64_t s, uint64_t steps, am_tile *t)
{
    (void)s, (void)steps;
    double n = (double)largest_class(c);
    t->nq = t->nk = n;
    t->pairs = attn_tile_pairs(c->causal, n, n, 1);
    t->heads = (double)c->heads;
    return 1;
}

/* q_row_ring, step s < steps: a received Q shard against the gathered K/V of the column */
static int row_ring_tile(const am_config *c, uint64_t s, uint64_t steps, am_tile *t)
{
    if (s >= steps) return 0;
    t->nq = (double)largest_class(c), t->nk = (double)((c->N + c->cols - 1) / c->cols);
    t->pairs = attn_tile_pairs(c->causal, t->nq, t->nk, 0);
    t->heads = (double)c->heads;
    return 1;
}

static const am_phase_desc kv_transpose = {.id = PH_A2D_KV_TRANSPOSE,
                                           .name = "kv_transpose",
                                           .pattern = PAT_PAIRWISE,
                                           .comm = AM_COMM_WORLD,
                                           .part = AM_FWD,
                                           .counts = kv_transpose_counts,
                                           .max_message = kv_block_max,
                                           .peer = kv_transpose_peer};
static const am_phase_desc q_allgather = {.id = PH_A2D_Q_ALLGATHER,
                                          .name = "q_allgather",
                                          .pattern = PAT_ALLGATHER,
                                          .comm = AM_COMM_ROW,
                                          .part = AM_FWD,
                                          .counts = q_allgather_counts,
                                          .max_message = q_block_max};
static const am_phase_desc kv_allgather = {.id = PH_A2D_KV_ALLGATHER,
                                           .name = "kv_allgather",
                                           .pattern = PAT_ALLGATHER,
                                           .comm = AM_COMM_COL,
                                           .part = AM_FWD,
                                           .counts = kv_allgather_counts,
                                           .max_message = kv_block_max};
static const am_phase_desc attention = {.id = PH_A2D_ATTENTION,
                                        .name = "attention",
                                        .pattern = PAT_NONE,
                                        .comm = AM_COMM_NONE,
                                        .part = AM_FWD,
                                        .tile = tile_of_grid};
static const am_phase_desc partial_reduce_scatter = {.id = PH_A2D_PARTIAL_REDUCE_SCATTER,
                                                     .name = "partial_reduce_scatter",
                                                     .pattern = PAT_REDUCE_SCATTER,
                                                     .comm = AM_COMM_ROW,
                                                     .part = AM_FWD,
                                                     .counts = partial_reduce_scatter_counts,
                                                     .max_message = partial_block_max};
static const am_phase_desc kv_column_ring = {.id = PH_A2D_KV_COLUMN_RING,
                                             .name = "kv_column_ring",
                                             .pattern = PAT_RING_SHIFT,
                                             .comm = AM_COMM_COL,
                                             .part = AM_FWD,
                                             .overlap = 1,
                                             .counts = kv_allgather_counts,
                                             .max_message = kv_block_max,
                                             .tile = column_ring_tile};
static const am_phase_desc q_row_ring = {.id = PH_A2D_Q_ROW_RING,
                                         .name = "q_row_ring",
                                         .pattern = PAT_RING_SHIFT,
                                         .comm = AM_COMM_ROW,
                                         .part = AM_FWD,
                                         .overlap = 1,
                                         .counts = q_row_ring_counts,
                                         .max_message = q_or_partial_max,
                                         .step_bytes = q_row_ring_step_bytes,
                                         .tail_bytes = partial_block_max,
                                         .tile = row_ring_tile};
static const am_phase_desc q_do_allgather = {.id = PH_A2D_Q_DO_ALLGATHER,
                                             .name = "q_do_allgather",
                                             .pattern = PAT_ALLGATHER,
                                             .comm = AM_COMM_ROW,
                                             .part = AM_BWD,
                                             .counts = q_do_allgather_counts,
                                             .max_message = q_do_block_max};
static const am_phase_desc kv_allgather_bwd = {.id = PH_A2D_KV_ALLGATHER_BWD,
                                               .name = "kv_allgather_bwd",
                                               .pattern = PAT_ALLGATHER,
                                               .comm = AM_COMM_COL,
                                               .part = AM_BWD,
                                               .counts = kv_allgather_counts,
                                               .max_message = kv_block_max};
static const am_phase_desc attention_bwd = {.id = PH_A2D_ATTENTION_BWD,
                                            .name = "attention_bwd",
                                            .pattern = PAT_NONE,
                                            .comm = AM_COMM_NONE,
                                            .part = AM_BWD,
                                            .tile = tile_of_grid};
static const am_phase_desc dq_reduce_scatter = {.id = PH_A2D_DQ_REDUCE_SCATTER,
                                                .name = "dq_reduce_scatter",
                                                .pattern = PAT_REDUCE_SCATTER,
                                                .comm = AM_COMM_ROW,
                                                .part = AM_BWD,
                                                .counts = dq_reduce_scatter_counts,
                                                .max_message = dq_block_max};
static const am_phase_desc dkv_reduce_scatter = {.id = PH_A2D_DKV_REDUCE_SCATTER,
                                                 .name = "dkv_reduce_scatter",
                                                 .pattern = PAT_REDUCE_SCATTER,
                                                 .comm = AM_COMM_COL,
                                                 .part = AM_BWD,
                                                 .counts = dkv_reduce_scatter_counts,
                                                 .max_message = dkv_block_max};
static const am_phase_desc dkv_transpose = {.id = PH_A2D_DKV_TRANSPOSE,
                                            .name = "dkv_transpose",
                                            .pattern = PAT_PAIRWISE,
                                            .comm = AM_COMM_WORLD,
                                            .part = AM_BWD,
                                            .counts = dkv_transpose_counts,
                                            .max_message = kv_block_max,
                                            .peer = dkv_transpose_peer};

static const am_phase_desc *const no_fwd[] = {&kv_transpose, &q_allgather, &kv_allgather,
                                              &attention, &partial_reduce_scatter};
static const am_phase_desc *const o_fwd[] = {&kv_transpose, &kv_column_ring, &q_row_ring};
static const am_phase_desc *const a2d_bwd[] = {&q_do_allgather,     &kv_allgather_bwd,
                                               &attention_bwd,      &dq_reduce_scatter,
                                               &dkv_reduce_scatter, &dkv_transpose};

const am_algo_desc am_a2d_no = {.name = "a2d-no",
                                .title = "Attention2D without overlap",
                                .grid = AM_GRID_2D,
                                .shard_len = shard_len,
                                .shard_tokens = shard_tokens,
                                .fwd = no_fwd,
                                .bwd = a2d_bwd,
                                .n_fwd = AM_COUNT(no_fwd),
                                .n_bwd = AM_COUNT(a2d_bwd)};
const am_algo_desc am_a2d_o = {.name = "a2d-o",
                               .title = "Attention2D with overlap",
                               .grid = AM_GRID_2D,
                               .shard_len = shard_len,
                               .shard_tokens = shard_tokens,
                               .fwd = o_fwd,
                               .bwd = a2d_bwd,
                               .n_fwd = AM_COUNT(o_fwd),
                               .n_bwd = AM_COUNT(a2d_bwd)};
