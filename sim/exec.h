/* exec.h - the MPI executor of `attnsim run`: the state of one rank ("device") and what the
 * algorithms (exec_ring.c, exec_a2d.c, exec_ulysses.c) share: the rank's shard, data generated
 * from the seed (so any rank can rebuild any other's), local tiles on the C reference kernels,
 * assembly of gathered blocks in token order, and online-softmax partial states.
 *
 * Layouts in memory: a tensor of `heads` heads over n tokens is [batch][heads][n][d]; statistics
 * are [batch][heads][n]. A partial state (for merging) is o [batch][heads][n][d], m and l
 * [batch][heads][n], all f32, stored one after the other: that is also its wire format
 * (b h n (4 d + 8) bytes, docs/model.md).
 */
#ifndef ATTNSIM_EXEC_H
#define ATTNSIM_EXEC_H

#include "comm.h"
#include "kn_problem.h"

typedef struct {
    am_config cfg;
    kn_dtype dtype;
    uint64_t seed;
    size_t sram; /* SRAM elements of the local kernels */
    comm_ctx comm;
    int rank;
    size_t n;               /* own tokens */
    uint64_t *pos;          /* their positions, increasing */
    kn_tensor q, k, v, d_o; /* storage type */
    kn_tensor o, lse;       /* forward outputs: storage type, f32 */
    kn_tensor dq, dk, dv;   /* backward outputs: storage type */
    void *saved;            /* what an algorithm keeps from its forward for its backward */
} exec_ctx;

typedef struct {
    void (*forward)(exec_ctx *x);  /* fills o, lse */
    void (*backward)(exec_ctx *x); /* fills dq, dk, dv (after forward) */
    void (*release)(exec_ctx *x);  /* frees x->saved */
} exec_algo;

extern const exec_algo exec_ring, exec_a2d, exec_ulysses;

/* Tokens rank `rank` owns under the algorithm's layout (increasing; caller frees). */
uint64_t *exec_tokens_of(const am_config *c, uint64_t rank, size_t *n);

/* A tensor view on existing memory (not owned). */
kn_tensor exec_view(void *data, kn_dtype dtype, size_t elems);
/* Fills t ([batch][heads][n][d]) with the generated values of tokens pos. */
void exec_fill(const exec_ctx *x, kn_tensor *t, kn_gen_tensor which, size_t heads,
               const uint64_t *pos, size_t n);

/* Tokens gathered from g members, in increasing position: total, positions, and for member j
 * the index in the gathered order of each of its tokens. */
typedef struct {
    size_t g, total;
    uint64_t *pos;
    size_t *count, **index;
} gather_map;
void gather_map_build(gather_map *gm, size_t g, uint64_t *const *member_pos,
                      const size_t *member_n);
void gather_map_free(gather_map *gm);
/* Copies member j's block ([planes][n_j][row] elements of esize bytes) into / out of the
 * gathered array ([planes][total][row]). */
void gather_in(void *gathered, const void *block, const gather_map *gm, size_t j, size_t planes,
               size_t row, size_t esize);
void gather_out(void *block, const void *gathered, const gather_map *gm, size_t j, size_t planes,
                size_t row, size_t esize);

/* Partial attention of q (nq tokens at qpos, x->cfg.heads heads) against k, v (nk tokens at
 * kpos, kv_heads heads) with the C reference FA2 kernel: writes the partial state (m, l, o). */
void exec_tile_forward(const exec_ctx *x, const kn_tensor *q, const uint64_t *qpos, size_t nq,
                       const kn_tensor *k, const kn_tensor *v, const uint64_t *kpos, size_t nk,
                       float *state);
/* Backward of a tile given LSE and D of the query rows: adds its dQ (f32, [b][h][nq][d]) and
 * dK, dV (f32, [b][hk][nk][d]) contributions. */
void exec_tile_backward(const exec_ctx *x, const kn_tensor *q, const kn_tensor *d_o,
                        const float *lse, const float *dsum, const uint64_t *qpos, size_t nq,
                        const kn_tensor *k, const kn_tensor *v, const uint64_t *kpos, size_t nk,
                        float *dq, float *dk, float *dv);

/* Partial states of `rows` rows (rows = batch x heads x tokens). */
size_t state_floats(size_t rows, size_t d);
void state_empty(float *state, size_t rows, size_t d);
/* Merges src into dst with the merge operator (kn_merge.h). */
void state_merge(float *dst, const float *src, size_t rows, size_t d);
/* Normalises a state into O (storage type) and LSE (f32). */
void state_finalize(const float *state, size_t rows, size_t d, kn_tensor *o, kn_tensor *lse);
/* Rows of a state in a gathered order -> the state of member j's rows (and back). */
void state_gather_out(float *block, const float *gathered, const gather_map *gm, size_t j,
                      size_t planes, size_t d);
void state_gather_in(float *gathered, const float *block, const gather_map *gm, size_t j,
                     size_t planes, size_t d);

/* D = rowsum(dO * O) of the own shard (f32 [b][h][n]). */
float *exec_dsum(const exec_ctx *x);

#endif
