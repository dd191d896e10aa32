/* algo.h - the distributed attention algorithms as one descriptor each, and the registry that
 * lists them (models/algorithms.def). A descriptor says everything the rest of attnsim needs to
 * know about an algorithm: its name, which configurations it accepts, which tokens each rank
 * holds (from partition.h), its grid rule, and its phase table. Each phase has an id (an enum
 * constant of the algorithm's header, so a misspelt phase is a compile error), its
 * communication pattern, the communicator it runs on, and functions for its exact per-rank
 * bytes and messages, its largest message, and its compute per step (visible query-key pairs;
 * FLOPs from attn_pair_flops). The model (registry.c, time_model.c, predict.c), the executor's
 * counting layer (comm_phase_begin(ctx, PHASE_ID)), the HDF5 writer and the command line read
 * them; nothing matches phase or algorithm names.
 *
 * The counts are a contract with the MPI executor: it moves exactly this data, in exactly these
 * messages, and its counters must equal these numbers (docs/model.md). Pure C: no MPI, no CUDA.
 */
#ifndef ATTNSIM_ALGO_H
#define ATTNSIM_ALGO_H

#include <stddef.h>
#include <stdint.h>

#include "partition.h"

typedef enum {
#define ATTNSIM_ALGORITHM(id, descriptor, executor) ALGO_##id,
#include "algorithms.def"
#undef ATTNSIM_ALGORITHM
    AM_NUM_ALGOS
} am_algo;

typedef enum { AM_FWD = 0, AM_BWD = 1, AM_TRAIN = 2 } am_pass;
#define AM_MAX_PHASES 12

extern const char *const am_layout_names[]; /* contiguous, striped, zigzag (= part_layout) */
extern const char *const am_pass_names[];   /* fwd, bwd, train (= am_pass) */
/* The algorithms' names, index = am_algo, NULL-terminated (from the descriptors). */
const char *const *am_algo_names(void);
const char *am_algo_name(am_algo a);

typedef struct {
    am_algo algo;
    part_layout layout; /* algorithms with a ring over the sequence (uses_layout) */
    am_pass pass;
    uint64_t P;
    uint64_t rows, cols; /* the grid, rows * cols = P (rank x at row x mod rows, column x div
                            rows): R x C for Attention2D, u x P/u for groups of u consecutive
                            ranks (a column is a group), 1 x P otherwise */
    uint64_t N, batch, heads, kv_heads, head_dim;
    int causal;
    int dtype; /* 0 f32, 1 f16, 2 bf16 (kn_dtype order) */
} am_config;

/* How a phase moves data (cost-model.md, "Communication cost"). Rings run downstream: member
 * k sends to k + 1 and receives from k - 1 (docs/model.md, "Rings"). */
typedef enum {
    PAT_NONE,           /* local compute, no communication */
    PAT_RING_SHIFT,     /* point-to-point ring shift over g members: g - 1 steps, each member
                           forwards the block it holds (and computes on it, overlapped) */
    PAT_ALLGATHER,      /* all-gather over g members as a ring: g - 1 steps */
    PAT_REDUCE_SCATTER, /* reduce-scatter over g members as a ring: g - 1 steps, each combining
                           the block received into its own */
    PAT_RETURN_HOP,     /* one hop along the ring: a block goes home */
    PAT_PAIRWISE,       /* pairwise exchange: at most one message to one partner */
    PAT_ALLTOALL,       /* all-to-all over g members: g - 1 pairwise rounds, round k to k + 1 */
    AM_NUM_PATTERNS
} am_pattern;
extern const char *const am_pattern_names[]; /* none, ring_shift, allgather, ... */

/* The communicator of a phase. Every group is an arithmetic progression of world ranks
 * (am_comm_group): world; a grid row {(r, j)} (C members, stride R); a grid column {(i, c)}
 * (R consecutive ranks). On a u x r grid of groups the column is the group of u consecutive
 * ranks and the row the ring of the r ranks at the same position in every group. */
typedef enum {
    AM_COMM_NONE,
    AM_COMM_WORLD,
    AM_COMM_ROW,
    AM_COMM_COL,
    AM_COMM_GROUP,        /* the u consecutive ranks of a group (the grid column) */
    AM_COMM_ACROSS_GROUPS /* the same position in every group (the grid row) */
} am_comm;
extern const char *const am_comm_names[]; /* none, world, row, column, group, across_groups */

typedef struct {
    uint64_t first, stride, size; /* members first + k stride, k < size */
    uint64_t index;               /* the rank's k */
} am_group;
/* The group of rank x on communicator `comm` (AM_COMM_NONE: x alone). */
static inline am_group am_comm_group(const am_config *c, am_comm comm, uint64_t x)
{
    uint64_t R = c->rows;
    am_group g = {x, 1, 1, 0};
    switch (comm) {
    case AM_COMM_NONE:
        break;
    case AM_COMM_WORLD:
        g.first = 0, g.size = c->P, g.index = x;
        break;
    case AM_COMM_ROW:
    case AM_COMM_ACROSS_GROUPS:
        g.first = grid_row(x, R), g.stride = R, g.size = c->cols, g.index = grid_col(x, R);
        break;
    case AM_COMM_COL:
    case AM_COMM_GROUP:
        g.first = grid_col(x, R) * R, g.size = R, g.index = grid_row(x, R);
        break;
    }
    return g;
}

typedef struct {
    uint64_t bytes_sent, bytes_recv;
    uint64_t msgs_sent, msgs_recv;
} am_count;

/* Local attention of the busiest rank in one step of a phase: visible query-key pairs per
 * (batch, query head), query and key rows, query heads. */
typedef struct {
    double pairs, nq, nk, heads;
} am_tile;

typedef int am_phase_id; /* an enum constant of the algorithm's header (algo_<name>.h) */
/* Phase ids are unique over all algorithms: the k-th phase of the family of algorithm a. */
#define AM_PHASE_ID(algo, k) ((int)(algo)*64 + (k))

typedef struct am_phase_desc {
    am_phase_id id;
    const char *name; /* for output only */
    am_pattern pattern;
    am_comm comm;
    am_pass part; /* AM_FWD or AM_BWD */
    int overlap;  /* computes while it communicates, step by step */
    /* Under a causal mask the tile of each step has a staircase mask that an implementation
     * without such masks runs as one call per member of this communicator (one ordinary
     * triangle each; implementation profiles, profile.h); AM_COMM_NONE: an ordinary mask. */
    am_comm staircase;
    /* Exact bytes and messages of rank x (out is zeroed before). NULL: none. */
    void (*counts)(const am_config *c, uint64_t x, am_count *out);
    /* Largest single message over all ranks and steps (bytes). NULL: 0. */
    uint64_t (*max_message)(const am_config *c);
    /* PAT_PAIRWISE: the rank x sends to (x itself: none). */
    uint64_t (*peer)(const am_config *c, uint64_t x);
    /* PAT_ALLTOALL: bytes rank x sends to rank y of its group (world ranks; the per-peer terms
     * of counts; 0 for x == y). */
    uint64_t (*peer_bytes)(const am_config *c, uint64_t x, uint64_t y);
    /* Bytes crossing one hop in one step where two payloads travel together (else NULL: the
     * largest message), and the last hop after the steps (NULL: none). */
    uint64_t (*step_bytes)(const am_config *c);
    uint64_t (*tail_bytes)(const am_config *c);
    /* Compute of step s of `steps` (a compute-only phase: s = steps = 0): returns 0 where the
     * step computes nothing, else fills *t. NULL: no compute. */
    int (*tile)(const am_config *c, uint64_t s, uint64_t steps, am_tile *t);
} am_phase_desc;

/* How an algorithm places its ranks on a grid (am_choose_grid). */
typedef enum {
    AM_GRID_LINE,  /* 1 x P */
    AM_GRID_2D,    /* R x C: given, the square one, or the least predicted time */
    AM_GRID_GROUPS /* u x P/u: groups of u consecutive ranks (u given, or ranks per node) */
} am_grid_rule;

typedef struct {
    const char *name;   /* --algo value, output */
    const char *title;  /* for help texts: "Ring Attention" */
    am_grid_rule grid;  /* see above */
    int uses_layout;    /* the ring layouts (contiguous, striped, zigzag) apply */
    am_comm head_split; /* the K/V heads are split over this group (needs kv_heads >= its
                           size; K/V are never replicated), or AM_COMM_NONE */
    /* Checks beyond the common ones (N >= P, kv_heads | heads, grid): 0, or -1 with one line
     * (what is accepted). NULL: none. */
    int (*validate)(const am_config *c, char *err, size_t errlen);
    /* The tokens rank x holds before and after a run, in increasing position. */
    uint64_t (*shard_len)(const am_config *c, uint64_t x);
    void (*shard_tokens)(const am_config *c, uint64_t x, uint64_t *pos);
    const am_phase_desc *const *fwd, *const *bwd; /* phase tables */
    int n_fwd, n_bwd;                             /* their lengths (AM_COUNT) */
} am_algo_desc;
#define AM_COUNT(table) ((int)(sizeof(table) / sizeof((table)[0])))

/* The descriptor of an algorithm. */
const am_algo_desc *am_algo_desc_of(am_algo a);

/* Checks the configuration; returns 0, or -1 with a one-line reason (what is accepted). */
int am_validate(const am_config *c, char *err, size_t errlen);

/* The phases of the configuration's algorithm and pass (train = fwd then bwd). Returns F. */
int am_phases(const am_config *c, const am_phase_desc **out);
/* Index of phase `id` in the configuration's phase list, or -1. */
int am_phase_index(const am_config *c, am_phase_id id);
/* The phase of any algorithm with this id, or NULL. */
const am_phase_desc *am_phase_by_id(am_phase_id id);

/* Bytes and messages of one rank in every phase (out[F]). O(1) per phase. */
void am_rank_counts(const am_config *c, uint64_t rank, am_count *out);

/* Largest single message of phase f over all ranks and steps (bytes). */
uint64_t am_phase_max_message(const am_config *c, int f);

/* Members of the group phase f communicates in (1 for local phases, 2 for a pairwise
 * exchange). */
uint64_t am_phase_group_size(const am_config *c, int f);

/* Element sizes: e of the storage type; statistics and f32 partial sums 4 bytes. */
uint64_t am_elem_bytes(const am_config *c);

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
