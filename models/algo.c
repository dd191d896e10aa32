/* algo.c - phases and exact per-rank communication counts (see algo.h, docs/model.md).
 *
 * Rings send "downstream": rank (or group member) k sends to k+1 and receives from k-1.
 * Over a ring of g members whose per-member blocks are B_0..B_{g-1}:
 *   shift / all-gather (g-1 steps, step s forwards the block received at step s-1, own first):
 *     member k sends every block but B_{k+1}, receives every block but B_k;
 *   reduce-scatter (g-1 steps, step s sends the running partial of block k-s-1, the receiver
 *     merges its own contribution; member k ends with the complete B_k):
 *     member k sends every block but B_k, receives every block but B_{k-1}.
 * Sums over a group come from partition.h in O(1), so any P (65536 and beyond) is cheap.
 */
#include "algo.h"

#include <stdio.h>
#include <string.h>

const char *const am_algo_names[] = {"ring", "a2d-no", "a2d-o", "ulysses", NULL};
const char *const am_layout_names[] = {"contiguous", "striped", "zigzag", NULL};
const char *const am_pass_names[] = {"fwd", "bwd", "train", NULL};

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

int am_validate(const am_config *c, char *err, size_t errlen)
{
    if (c->P < 1) return snprintf(err, errlen, "P must be at least 1"), -1;
    if (c->N < c->P)
        return snprintf(err, errlen,
                        "N = %llu is smaller than P = %llu; accepted: N >= P (every "
                        "rank holds at least one token)",
                        (unsigned long long)c->N, (unsigned long long)c->P),
               -1;
    if (c->kv_heads < 1 || c->heads % c->kv_heads)
        return snprintf(err, errlen, "kv-heads %llu does not divide heads %llu",
                        (unsigned long long)c->kv_heads, (unsigned long long)c->heads),
               -1;
    if ((c->algo == ALGO_A2D_NO || c->algo == ALGO_A2D_O) && c->rows * c->cols != c->P)
        return snprintf(err, errlen,
                        "grid %llux%llu has %llu devices, not P = %llu; accepted: "
                        "RxC with R C = P",
                        (unsigned long long)c->rows, (unsigned long long)c->cols,
                        (unsigned long long)(c->rows * c->cols), (unsigned long long)c->P),
               -1;
    if (c->algo == ALGO_ULYSSES && c->kv_heads < c->P)
        return snprintf(err, errlen,
                        "ulysses needs kv-heads >= P (it splits the K/V heads over "
                        "the ranks): kv-heads %llu, P %llu",
                        (unsigned long long)c->kv_heads, (unsigned long long)c->P),
               -1;
    return 0;
}

static const am_phase ring_fwd[] = {{"ring_kv_steps", PH_RING, GROUP_WORLD, 1, AM_FWD}};
static const am_phase ring_bwd[] = {{"ring_kv_grad_steps", PH_RING, GROUP_WORLD, 1, AM_BWD},
                                    {"ring_grad_return", PH_RETURN, GROUP_WORLD, 0, AM_BWD}};
static const am_phase a2d_no_fwd[] = {{"kv_transpose", PH_PERMUTE, GROUP_NONE, 0, AM_FWD},
                                      {"q_allgather", PH_RING, GROUP_ROW, 0, AM_FWD},
                                      {"kv_allgather", PH_RING, GROUP_COL, 0, AM_FWD},
                                      {"attention", PH_COMPUTE, GROUP_NONE, 0, AM_FWD},
                                      {"partial_reduce_scatter", PH_REDUCE, GROUP_ROW, 0, AM_FWD}};
static const am_phase a2d_o_fwd[] = {{"kv_transpose", PH_PERMUTE, GROUP_NONE, 0, AM_FWD},
                                     {"kv_column_ring", PH_RING, GROUP_COL, 1, AM_FWD},
                                     {"q_row_ring", PH_RING, GROUP_ROW, 1, AM_FWD}};
static const am_phase a2d_bwd[] = {{"q_do_allgather", PH_RING, GROUP_ROW, 0, AM_BWD},
                                   {"kv_allgather_bwd", PH_RING, GROUP_COL, 0, AM_BWD},
                                   {"attention_bwd", PH_COMPUTE, GROUP_NONE, 0, AM_BWD},
                                   {"dq_reduce_scatter", PH_REDUCE, GROUP_ROW, 0, AM_BWD},
                                   {"dkv_reduce_scatter", PH_REDUCE, GROUP_COL, 0, AM_BWD},
                                   {"dkv_transpose", PH_PERMUTE, GROUP_NONE, 0, AM_BWD}};
static const am_phase ulysses_fwd[] = {{"qkv_all_to_all", PH_ALLTOALL, GROUP_WORLD, 0, AM_FWD},
                                       {"attention", PH_COMPUTE, GROUP_NONE, 0, AM_FWD},
                                       {"o_all_to_all", PH_ALLTOALL, GROUP_WORLD, 0, AM_FWD}};
static const am_phase ulysses_bwd[] = {{"do_all_to_all", PH_ALLTOALL, GROUP_WORLD, 0, AM_BWD},
                                       {"attention_bwd", PH_COMPUTE, GROUP_NONE, 0, AM_BWD},
                                       {"dqkv_all_to_all", PH_ALLTOALL, GROUP_WORLD, 0, AM_BWD}};

#define N_OF(a) (int)(sizeof a / sizeof a[0])

int am_phases(const am_config *c, am_phase *out)
{
    const am_phase *fwd = NULL, *bwd = NULL;
    int nf = 0, nb = 0;
    switch (c->algo) {
    case ALGO_RING:
        fwd = ring_fwd, nf = N_OF(ring_fwd), bwd = ring_bwd, nb = N_OF(ring_bwd);
        break;
    case ALGO_A2D_NO:
        fwd = a2d_no_fwd, nf = N_OF(a2d_no_fwd), bwd = a2d_bwd, nb = N_OF(a2d_bwd);
        break;
    case ALGO_A2D_O:
        fwd = a2d_o_fwd, nf = N_OF(a2d_o_fwd), bwd = a2d_bwd, nb = N_OF(a2d_bwd);
        break;
    case ALGO_ULYSSES:
        fwd = ulysses_fwd, nf = N_OF(ulysses_fwd), bwd = ulysses_bwd, nb = N_OF(ulysses_bwd);
        break;
    }
    int n = 0;
    if (c->pass != AM_BWD)
        for (int i = 0; i < nf; i++) out[n++] = fwd[i];
    if (c->pass != AM_FWD)
        for (int i = 0; i < nb; i++) out[n++] = bwd[i];
    return n;
}

/* A ring of g members: member k, blocks given by their token counts (all-but sums). */
static void ring_allgather(am_count *o, uint64_t tok_bytes, uint64_t total, uint64_t own,
                           uint64_t next, uint64_t g)
{
    o->bytes_sent += tok_bytes * (total - next);
    o->bytes_recv += tok_bytes * (total - own);
    o->msgs_sent += g - 1;
    o->msgs_recv += g - 1;
}

static void ring_reduce_scatter(am_count *o, uint64_t tok_bytes, uint64_t total, uint64_t own,
                                uint64_t prev, uint64_t g)
{
    o->bytes_sent += tok_bytes * (total - own);
    o->bytes_recv += tok_bytes * (total - prev);
    o->msgs_sent += g - 1;
    o->msgs_recv += g - 1;
}

static void ring_counts(const am_config *c, uint64_t i, const am_phase *ph, am_count *o)
{
    am_token_bytes t = am_token_sizes(c);
    uint64_t P = c->P, N = c->N;
    uint64_t own = ring_shard_len(c->layout, N, P, i);
    uint64_t next = ring_shard_len(c->layout, N, P, ring_next(i, P));
    if (P == 1) return;
    if (strcmp(ph->name, "ring_kv_steps") == 0) {
        /* step s sends the K|V block held (rank i - s's), packed in one message */
        ring_allgather(o, 2 * t.kv, N, own, next, P);
    } else if (strcmp(ph->name, "ring_kv_grad_steps") == 0) {
        /* K|V (storage type) travel with their dK|dV accumulators (f32), one message */
        ring_allgather(o, 2 * t.kv + 2 * t.dkv32, N, own, next, P);
    } else { /* ring_grad_return: the accumulator of block i+1 goes home */
        o->bytes_sent = 2 * t.dkv32 * next;
        o->bytes_recv = 2 * t.dkv32 * own;
        o->msgs_sent = o->msgs_recv = 1;
    }
}

static void a2d_counts(const am_config *c, uint64_t x, const am_phase *ph, am_count *o)
{
    am_token_bytes t = am_token_sizes(c);
    uint64_t N = c->N, P = c->P, R = c->rows, C = c->cols;
    uint64_t r = grid_row(x, R), col = grid_col(x, R);
#define CLS(k) part_cyclic_count(N, P, (k))
    /* row group: member j holds class r + j R; column group: member i holds K/V class i C + c */
    uint64_t row_total = part_cyclic_count(N, R, r), col_total = part_cyclic_count(N, C, col);
    uint64_t q_own = CLS(x), q_next = CLS(r + ((col + 1) % C) * R),
             q_prev = CLS(r + ((col + C - 1) % C) * R);
    uint64_t kv_own = CLS(a2d_kv_class(r, col, C)),
             kv_next = CLS(a2d_kv_class((r + 1) % R, col, C)),
             kv_prev = CLS(a2d_kv_class((r + R - 1) % R, col, C));
    const char *n = ph->name;
    if (strcmp(n, "kv_transpose") == 0) {
        /* send own K|V (class x) to the device that will hold class x; receive class r C + c
         * from rank r C + c; a device that keeps its own class sends nothing */
        uint64_t dest = a2d_transpose_dest(x, R, C), src = a2d_kv_class(r, col, C);
        if (dest != x) o->bytes_sent = 2 * t.kv * q_own, o->msgs_sent = 1;
        if (src != x) o->bytes_recv = 2 * t.kv * kv_own, o->msgs_recv = 1;
    } else if (strcmp(n, "dkv_transpose") == 0) {
        /* the inverse: dK|dV (storage type) of class r C + c go back to rank r C + c */
        uint64_t dest = a2d_transpose_dest(x, R, C), src = a2d_kv_class(r, col, C);
        if (src != x) o->bytes_sent = 2 * t.kv * kv_own, o->msgs_sent = 1;
        if (dest != x) o->bytes_recv = 2 * t.kv * q_own, o->msgs_recv = 1;
    } else if (C > 1 && strcmp(n, "q_allgather") == 0) {
        ring_allgather(o, t.q, row_total, q_own, q_next, C);
    } else if (R > 1 && (strcmp(n, "kv_allgather") == 0 || strcmp(n, "kv_allgather_bwd") == 0 ||
                         strcmp(n, "kv_column_ring") == 0)) {
        ring_allgather(o, 2 * t.kv, col_total, kv_own, kv_next, R);
    } else if (C > 1 && strcmp(n, "partial_reduce_scatter") == 0) {
        ring_reduce_scatter(o, t.partial, row_total, q_own, q_prev, C);
    } else if (C > 1 && strcmp(n, "q_row_ring") == 0) {
        /* Q shards travel the row ring (as an all-gather) and the partial of each Q shard
         * accumulates along the same ring and ends at its owner (as a reduce-scatter) */
        ring_allgather(o, t.q, row_total, q_own, q_next, C);
        ring_reduce_scatter(o, t.partial, row_total, q_own, q_prev, C);
    } else if (C > 1 && strcmp(n, "q_do_allgather") == 0) {
        /* Q|dO (storage type) and LSE|D (f32) of a shard, packed in one message */
        ring_allgather(o, 2 * t.q + 2 * t.stat, row_total, q_own, q_next, C);
    } else if (C > 1 && strcmp(n, "dq_reduce_scatter") == 0) {
        ring_reduce_scatter(o, t.dq32, row_total, q_own, q_prev, C);
    } else if (R > 1 && strcmp(n, "dkv_reduce_scatter") == 0) {
        ring_reduce_scatter(o, 2 * t.dkv32, col_total, kv_own, kv_prev, R);
    }
#undef CLS
}

static void ulysses_counts(const am_config *c, uint64_t i, const am_phase *ph, am_count *o)
{
    uint64_t P = c->P, N = c->N, g = c->heads / c->kv_heads;
    if (P == 1 || ph->kind != PH_ALLTOALL) return;
    uint64_t per = c->batch * c->head_dim * am_elem_bytes(c); /* one token of one head */
    uint64_t own = part_block_count(N, P, i);
    uint64_t hk_i = ulysses_kv_heads(c->kv_heads, P, i), hq_i = g * hk_i;
    uint64_t all_heads = c->heads + 2 * c->kv_heads, my_heads = hq_i + 2 * hk_i;
    const char *n = ph->name;
    if (strcmp(n, "qkv_all_to_all") == 0) {
        /* to rank j: my tokens of j's heads (Q|K|V packed); from j: j's tokens of my heads */
        o->bytes_sent = per * own * (all_heads - my_heads);
        o->bytes_recv = per * (N - own) * my_heads;
    } else if (strcmp(n, "o_all_to_all") == 0) {
        o->bytes_sent = per * (N - own) * hq_i;
        o->bytes_recv = per * own * (c->heads - hq_i);
    } else if (strcmp(n, "do_all_to_all") == 0) {
        o->bytes_sent = per * own * (c->heads - hq_i);
        o->bytes_recv = per * (N - own) * hq_i;
    } else { /* dqkv_all_to_all: dQ|dK|dV back to the token owners */
        o->bytes_sent = per * (N - own) * my_heads;
        o->bytes_recv = per * own * (all_heads - my_heads);
    }
    o->msgs_sent = o->msgs_recv = P - 1;
}

uint64_t am_alltoall_bytes(const am_config *c, const am_phase *ph, uint64_t i, uint64_t j)
{
    if (i == j || ph->kind != PH_ALLTOALL || c->algo != ALGO_ULYSSES) return 0;
    uint64_t P = c->P, N = c->N, g = c->heads / c->kv_heads;
    uint64_t per = c->batch * c->head_dim * am_elem_bytes(c);
    uint64_t hk_i = ulysses_kv_heads(c->kv_heads, P, i), hk_j = ulysses_kv_heads(c->kv_heads, P, j);
    uint64_t n_i = part_block_count(N, P, i), n_j = part_block_count(N, P, j);
    const char *n = ph->name;
    if (strcmp(n, "qkv_all_to_all") == 0)
        return per * n_i * (g + 2) * hk_j;                           /* my tokens, j's heads */
    if (strcmp(n, "o_all_to_all") == 0) return per * n_j * g * hk_i; /* j's tokens, my heads */
    if (strcmp(n, "do_all_to_all") == 0) return per * n_i * g * hk_j;
    return per * n_j * (g + 2) * hk_i; /* dqkv_all_to_all */
}

void am_rank_counts(const am_config *c, uint64_t rank, am_count *out)
{
    am_phase ph[AM_MAX_PHASES];
    int F = am_phases(c, ph);
    for (int f = 0; f < F; f++) {
        memset(&out[f], 0, sizeof out[f]);
        if (ph[f].kind == PH_COMPUTE) continue;
        switch (c->algo) {
        case ALGO_RING:
            ring_counts(c, rank, &ph[f], &out[f]);
            break;
        case ALGO_A2D_NO:
        case ALGO_A2D_O:
            a2d_counts(c, rank, &ph[f], &out[f]);
            break;
        case ALGO_ULYSSES:
            ulysses_counts(c, rank, &ph[f], &out[f]);
            break;
        }
    }
}

/* Largest shard of a ring layout. */
static uint64_t ring_max_shard(const am_config *c)
{
    uint64_t N = c->N, P = c->P;
    if (c->layout != LAYOUT_ZIGZAG) return (N + P - 1) / P;
    uint64_t q = N / (2 * P), r = N % (2 * P);
    return 2 * q + (r > P ? 2 : r > 0 ? 1 : 0);
}

uint64_t am_phase_max_message(const am_config *c, int f)
{
    am_phase ph[AM_MAX_PHASES];
    am_phases(c, ph);
    am_token_bytes t = am_token_sizes(c);
    uint64_t n = (c->N + c->P - 1) / c->P; /* largest cyclic class or block */
    const char *name = ph[f].name;
    switch (c->algo) {
    case ALGO_RING: {
        uint64_t s = ring_max_shard(c);
        if (strcmp(name, "ring_kv_steps") == 0) return s * 2 * t.kv;
        if (strcmp(name, "ring_kv_grad_steps") == 0) return s * (2 * t.kv + 2 * t.dkv32);
        return s * 2 * t.dkv32;
    }
    case ALGO_A2D_NO:
    case ALGO_A2D_O:
        if (strstr(name, "transpose") || strstr(name, "kv_allgather") || strstr(name, "kv_column"))
            return n * 2 * t.kv;
        if (strcmp(name, "q_allgather") == 0) return n * t.q;
        if (strcmp(name, "partial_reduce_scatter") == 0) return n * t.partial;
        if (strcmp(name, "q_row_ring") == 0) return n * (t.q > t.partial ? t.q : t.partial);
        if (strcmp(name, "q_do_allgather") == 0) return n * (2 * t.q + 2 * t.stat);
        if (strcmp(name, "dq_reduce_scatter") == 0) return n * t.dq32;
        if (strcmp(name, "dkv_reduce_scatter") == 0) return n * 2 * t.dkv32;
        return 0;
    case ALGO_ULYSSES: {
        uint64_t per = c->batch * c->head_dim * am_elem_bytes(c);
        uint64_t hk = (c->kv_heads + c->P - 1) / c->P, hq = hk * (c->heads / c->kv_heads);
        if (ph[f].kind != PH_ALLTOALL) return 0;
        if (strcmp(name, "qkv_all_to_all") == 0 || strcmp(name, "dqkv_all_to_all") == 0)
            return per * n * (hq + 2 * hk);
        return per * n * hq;
    }
    }
    return 0;
}
