/* comm_counts.h - the communication-count model shared by the algorithm descriptors: bytes per
 * token of each payload, and the exact per-member sums of the rings and all-to-alls every
 * algorithm is built from (docs/model.md, "Rings"). O(1) per rank and phase. Pure C. */
#ifndef ATTNSIM_COMM_COUNTS_H
#define ATTNSIM_COMM_COUNTS_H

#include "algo.h"

/* A ring all-gather (or shift) of g members, member k: its own block holds `own` tokens, its
 * successor's `next`, all blocks `total`; tok_bytes per token. Member k sends every block but
 * B_{k+1} and receives every block but B_k, in g - 1 messages each way. Adds into *o. */
void am_ring_allgather_counts(am_count *o, uint64_t tok_bytes, uint64_t total, uint64_t own,
                              uint64_t next, uint64_t g);
/* A ring reduce-scatter (step s sends the running partial of block k - s - 1): member k sends
 * every block but B_k and receives every block but B_{k-1} (`prev` tokens). Adds into *o. */
void am_ring_reduce_scatter_counts(am_count *o, uint64_t tok_bytes, uint64_t total, uint64_t own,
                                   uint64_t prev, uint64_t g);

/* The all-to-alls that turn a token split into a head split and back (Ulysses): g members
 * hold the balanced blocks of a list of T tokens and, after the exchange, the balanced blocks
 * of the K/V heads (with their g_q = heads / kv_heads query heads each). */
typedef enum {
    A2A_QKV_TO_HEADS,  /* Q|K|V of my tokens to the owners of their heads */
    A2A_O_TO_TOKENS,   /* O of my heads back to the token owners */
    A2A_DO_TO_HEADS,   /* dO of my tokens to the owners of their heads */
    A2A_DQKV_TO_TOKENS /* dQ|dK|dV of my heads back to the token owners */
} am_a2a_payload;
/* Counts of member i (g - 1 messages each way when g > 1). Sets *o. */
void am_heads_alltoall_counts(am_count *o, const am_config *c, am_a2a_payload what, uint64_t T,
                              uint64_t g, uint64_t i);
/* Bytes member i sends to member j of such an all-to-all (0 for i == j): the terms whose sums
 * am_heads_alltoall_counts gives. */
uint64_t am_heads_alltoall_bytes(const am_config *c, am_a2a_payload what, uint64_t T, uint64_t g,
                                 uint64_t i, uint64_t j);
/* The largest message of such an all-to-all when no member holds more than t_max tokens. */
uint64_t am_heads_alltoall_max(const am_config *c, am_a2a_payload what, uint64_t t_max, uint64_t g);

#endif
