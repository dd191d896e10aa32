/* partition.h - who holds which tokens and heads: the one definition of every data layout,
 * used by the model (byte counts), the MPI executor (which data a rank sends) and the HDF5
 * writer (the rank -> node / grid map). Pure C.
 *
 * Ring layouts (algorithms.md section 4), P ranks, N tokens, ragged when P does not divide N:
 *   contiguous  rank i holds the i-th of P balanced blocks (sizes differ by at most one);
 *   striped     rank i holds tokens t with t mod P = i;
 *   zigzag      the sequence is cut into 2P balanced chunks; rank i holds chunks i and
 *               2P-1-i (causal work balanced).
 * Attention2D (section 5) on an R x C grid: rank x sits at (row x mod R, column x div R)
 * (column-major, as the spec's t mod P = r + c p), holds Q, K, V of tokens t mod P = x; after
 * the K/V transpose, device (r, c) holds the K/V of class r C + c (row-major). A row group is
 * {(r, j)}: C members; a column group {(i, c)}: R members.
 * Ulysses (section 6): tokens as the contiguous layout; after the all-to-all, rank j holds the
 * j-th balanced block of the K/V heads and the query heads that use them (grouped-query).
 */
#ifndef ATTNSIM_PARTITION_H
#define ATTNSIM_PARTITION_H

#include <stdint.h>

typedef enum { LAYOUT_CONTIGUOUS = 0, LAYOUT_STRIPED = 1, LAYOUT_ZIGZAG = 2 } part_layout;

/* Balanced split of n items into k parts: part i has n/k + (i < n mod k) items, starting at
 * part_block_start. */
uint64_t part_block_count(uint64_t n, uint64_t k, uint64_t i);
uint64_t part_block_start(uint64_t n, uint64_t k, uint64_t i);

/* Tokens t < n with t mod k = x. */
static inline uint64_t part_cyclic_count(uint64_t n, uint64_t k, uint64_t x)
{
    return n > x ? (n - x - 1) / k + 1 : 0;
}

/* Ring layouts: how many tokens rank i holds, and the position of its j-th token (tokens in
 * increasing position). */
uint64_t ring_shard_len(part_layout layout, uint64_t n, uint64_t p, uint64_t i);
uint64_t ring_shard_token(part_layout layout, uint64_t n, uint64_t p, uint64_t i, uint64_t j);

/* The largest shard of a ring layout: ceil(n/p) for contiguous and striped; for zigzag two of
 * the 2p balanced chunks (the longer ones while n mod 2p > p, else one longer one). */
uint64_t ring_shard_max(part_layout layout, uint64_t n, uint64_t p);

/* Ring neighbours. */
static inline uint64_t ring_next(uint64_t i, uint64_t p)
{
    return (i + 1) % p;
}
static inline uint64_t ring_prev(uint64_t i, uint64_t p)
{
    return (i + p - 1) % p;
}
/* Whose block rank i holds after s ring steps (step 0: its own). */
static inline uint64_t ring_block_at(uint64_t i, uint64_t s, uint64_t p)
{
    return (i + p - s % p) % p;
}

/* Grid mapping (column-major). */
static inline uint64_t grid_row(uint64_t rank, uint64_t rows)
{
    return rank % rows;
}
static inline uint64_t grid_col(uint64_t rank, uint64_t rows)
{
    return rank / rows;
}
static inline uint64_t grid_rank(uint64_t row, uint64_t col, uint64_t rows)
{
    return row + col * rows;
}
/* Attention2D token classes: Q (and the original K/V) of rank x is class x; after the K/V
 * transpose device (r, c) holds K/V class r C + c, which came from rank r C + c, and rank x
 * sends its K/V to the device that then holds class x: (x div C, x mod C). */
static inline uint64_t a2d_kv_class(uint64_t row, uint64_t col, uint64_t cols)
{
    return row * cols + col;
}
static inline uint64_t a2d_transpose_dest(uint64_t x, uint64_t rows, uint64_t cols)
{
    return grid_rank(x / cols, x % cols, rows);
}

/* Ulysses head split: K/V heads [kv_head_start, + kv_head_count) on rank j; its query heads are
 * g = heads / kv_heads times as many, starting at g * kv_head_start. */
static inline uint64_t ulysses_kv_heads(uint64_t kv_heads, uint64_t p, uint64_t j)
{
    return part_block_count(kv_heads, p, j);
}
static inline uint64_t ulysses_kv_head_start(uint64_t kv_heads, uint64_t p, uint64_t j)
{
    return part_block_start(kv_heads, p, j);
}
/* The most K/V heads any rank holds: ceil(kv_heads / p). */
static inline uint64_t ulysses_kv_heads_max(uint64_t kv_heads, uint64_t p)
{
    return (kv_heads + p - 1) / p;
}

/* Attention work. FLOPs of one visible query-key pair for one head and batch entry: the two
 * matrix products of the forward (QK^T, PV: 2 x 2 d) or the five of the backward (10 d, 2.5x).
 * Every FLOP count of attnsim (time model, kernel IO model, calibration fits) is this times a
 * number of visible pairs. */
static inline uint64_t attn_pair_flops(uint64_t head_dim, int backward)
{
    return (backward ? 10 : 4) * head_dim;
}
/* Visible query-key pairs of an nq x nk tile per (batch, head): all of them without the causal
 * mask; with it, an inclusive lower triangle on the diagonal (nq (nq + 1) / 2) or, off the
 * diagonal, half the tile plus half a row (the busiest rank of a strided layout). */
double attn_tile_pairs(int causal, double nq, double nk, int diagonal);
/* Visible pairs of the busiest rank at step s of Ring Attention (its Q shard against the K/V
 * block it holds), n = ceil(N / P): contiguous causal has a full block somewhere at every step
 * but the first; striped c (c + 1) / 2; zigzag two chunks of h = ceil(N / 2P): 2 h^2 (+ h at
 * step 0). */
double ring_step_pairs(part_layout layout, int causal, uint64_t n_tokens, uint64_t p, uint64_t s);

/* Node of a rank: ranks packed gpus_per_node per node, in order. */
static inline uint64_t rank_node(uint64_t rank, uint64_t gpus_per_node)
{
    return rank / gpus_per_node;
}

#endif
