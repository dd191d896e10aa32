/* algo.h - the distributed attention algorithms as the model (and the executor) see them: the
 * phase list of each algorithm and pass, and the exact bytes and messages every rank sends and
 * receives in every phase (cost-model.md; derivations in docs/model.md).
 *
 * These counts are a contract with the MPI executor: it moves exactly this data, in exactly
 * these messages, and its counters must equal these numbers. The wire protocol each phase
 * follows (ring directions, packing, precision of what is sent) is documented in docs/model.md
 * and in the comment of each phase below. Pure C: no MPI, no CUDA.
 */
#ifndef ATTNSIM_ALGO_H
#define ATTNSIM_ALGO_H

#include <stddef.h>
#include <stdint.h>

#include "partition.h"

typedef enum { ALGO_RING = 0, ALGO_A2D_NO = 1, ALGO_A2D_O = 2, ALGO_ULYSSES = 3 } am_algo;
#define AM_NUM_ALGOS 4
typedef enum { AM_FWD = 0, AM_BWD = 1, AM_TRAIN = 2 } am_pass;
#define AM_MAX_PHASES 12

extern const char *const am_algo_names[];   /* ring, a2d-no, a2d-o, ulysses */
extern const char *const am_layout_names[]; /* contiguous, striped, zigzag */
extern const char *const am_pass_names[];   /* fwd, bwd, train */

typedef struct {
    am_algo algo;
    part_layout layout; /* ring only */
    am_pass pass;
    uint64_t P;
    uint64_t rows, cols; /* Attention2D grid, rows * cols = P; 1 x P for the others */
    uint64_t N, batch, heads, kv_heads, head_dim;
    int causal;
    int dtype; /* 0 f32, 1 f16, 2 bf16 (kn_dtype order) */
} am_config;

/* How a phase moves data. */
typedef enum {
    PH_RING,     /* group-1 steps around a ring (shift or all-gather) */
    PH_REDUCE,   /* a ring reduce-scatter: PH_RING's steps, each combining the block received */
    PH_RETURN,   /* one more hop along the ring */
    PH_PERMUTE,  /* at most one message to one partner (the K/V transposes) */
    PH_ALLTOALL, /* pairwise exchange: P-1 rounds, round k sends to rank + k */
    PH_COMPUTE   /* local attention, no communication */
} am_phase_kind;
typedef enum { GROUP_WORLD, GROUP_ROW, GROUP_COL, GROUP_NONE } am_group;

typedef struct {
    const char *name;
    am_phase_kind kind;
    am_group group;
    int overlap;  /* the algorithm computes while the phase communicates, step by step */
    am_pass part; /* AM_FWD or AM_BWD */
} am_phase;

typedef struct {
    uint64_t bytes_sent, bytes_recv;
    uint64_t msgs_sent, msgs_recv;
} am_count;

/* Element sizes: e of the storage type; statistics and f32 partial sums 4 bytes. */
uint64_t am_elem_bytes(const am_config *c);

/* Checks the configuration; returns 0, or -1 with a one-line reason (what is accepted). */
int am_validate(const am_config *c, char *err, size_t errlen);

/* The phases of the configuration's algorithm and pass (train = fwd then bwd). Returns F. */
int am_phases(const am_config *c, am_phase *out);

/* Bytes and messages of one rank in every phase (out[F]). O(1) per phase. */
void am_rank_counts(const am_config *c, uint64_t rank, am_count *out);

/* Bytes rank i sends to rank j in all-to-all phase ph (the per-peer terms that
 * am_rank_counts sums); 0 when i == j or ph is no all-to-all. */
uint64_t am_alltoall_bytes(const am_config *c, const am_phase *ph, uint64_t i, uint64_t j);

/* Largest single message of phase f over all ranks and steps (bytes). */
uint64_t am_phase_max_message(const am_config *c, int f);

/* Bytes each token contributes to a message of each payload kind (one rank's data). */
typedef struct {
    uint64_t q;       /* Q, O, dO or dQ in the storage type: b h d e */
    uint64_t kv;      /* K or V in the storage type: b h_kv d e */
    uint64_t stat;    /* one f32 statistic per query head: b h 4 */
    uint64_t partial; /* an unnormalised partial (o, m, l) in f32: b h (4 d + 8) */
    uint64_t dq32;    /* a dQ partial sum in f32: b h d 4 */
    uint64_t dkv32;   /* a dK or dV partial sum in f32: b h_kv d 4 */
} am_token_bytes;
am_token_bytes am_token_sizes(const am_config *c);

#endif
