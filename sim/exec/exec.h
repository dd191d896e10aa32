/* exec.h - the MPI executor of `attnsim run`: the state of one rank ("device") and what the
 * algorithms (exec_ring.c, exec_a2d.c, exec_ulysses.c) share: the rank's shard, data generated
 * from the seed (so any rank can rebuild any other's), local tiles, assembly of gathered blocks
 * in token order, and online-softmax partial states.
 *
 * Where the data lives: every tensor and buffer an algorithm touches is in the memory of the
 * rank's device, and every operation on it goes through the device table `x->dev` (exec_dev):
 * host memory and the C reference kernels (exec_dev_cpu), or one GPU's memory and the CUDA
 * kernels (exec_dev_cuda, where the build has CUDA). The algorithms are written once, against
 * the table; the bytes they hand to the comm layer are the same on both, so the counts are too.
 *
 * Layouts: a tensor of `heads` heads over n tokens is [batch][heads][n][d]; statistics are
 * [batch][heads][n]. A partial state (for merging) is o [batch][heads][n][d], m and l
 * [batch][heads][n], all f32, stored one after the other: that is also its wire format
 * (b h n (4 d + 8) bytes, docs/model.md).
 */
#ifndef ATTNSIM_EXEC_H
#define ATTNSIM_EXEC_H

#include "comm.h"
#include "kn_problem.h"

/* Token positions (increasing): the host copy, and where the device reads them (the same
 * array on the CPU device). */
typedef struct {
    uint64_t *h;
    const void *d;
    size_t n;
} exec_pos;

typedef struct exec_ctx exec_ctx;

/* What a device does. Pointers to data are device pointers; sizes in bytes unless named
 * otherwise; calls are ordered (a device may run them asynchronously: sync() waits). */
typedef struct {
    const char *name; /* "cpu", "cuda" */
    void *(*alloc)(size_t bytes, const char *what);
    void (*release)(void *p);
    void (*copy)(void *dst, const void *src, size_t bytes);
    /* height rows of width bytes: dst + i dpitch <- src + i spitch */
    void (*copy2d)(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                   size_t height);
    void (*zero)(void *p, size_t bytes);
    void (*upload)(void *dst, const void *host, size_t bytes);
    void (*download)(void *host, const void *src, size_t bytes);
    void (*sync)(void);
    const void *(*upload_pos)(const uint64_t *host, size_t n); /* a device copy (or host) */
    void (*release_pos)(const void *d, const uint64_t *host);
    /* Gathered-order rows: scatter 1: dst[(p total + index[k]) row] = src[(p n + k) row];
     * scatter 0: the reverse (index: device array of n entries, see upload_pos). */
    void (*rows_copy)(void *dst, const void *src, const void *index, size_t planes, size_t n,
                      size_t total, size_t row_bytes, int scatter);
    /* Partial attention of q (nq tokens, hq heads) against k, v (nk tokens, hk heads) into
     * `state` (accumulate: merged into the state already there). */
    void (*tile_forward)(const exec_ctx *x, size_t hq, size_t hk, const void *q,
                         const exec_pos *qpos, const void *k, const void *v, const exec_pos *kpos,
                         float *state, int accumulate);
    /* Backward of a tile given LSE and D of the query rows: adds its dQ ([b][hq][nq][d]) and
     * dK, dV ([b][hk][nk][d]) contributions into f32 accumulators. */
    void (*tile_backward)(const exec_ctx *x, size_t hq, size_t hk, const void *q, const void *d_o,
                          const float *lse, const float *dsum, const exec_pos *qpos, const void *k,
                          const void *v, const exec_pos *kpos, float *dq, float *dk, float *dv);
    /* Whole attention of contiguous tokens (hq query heads, hk K/V heads, n tokens): forward
     * (O, LSE) and backward (dQ, dK, dV from O, dO, LSE), storage type. */
    void (*attn_forward)(const exec_ctx *x, size_t hq, size_t hk, size_t n, const void *q,
                         const void *k, const void *v, void *o, float *lse);
    void (*attn_backward)(const exec_ctx *x, size_t hq, size_t hk, size_t n, const void *q,
                          const void *k, const void *v, const void *o, const void *d_o,
                          const float *lse, void *dq, void *dk, void *dv);
    void (*state_empty)(float *state, size_t rows, size_t d);
    void (*state_merge)(float *dst, const float *src, size_t rows, size_t d);
    /* O (storage type dtype) and LSE (f32) from a state */
    void (*state_finalize)(const float *state, size_t rows, size_t d, int dtype, void *o,
                           float *lse);
    /* D = rowsum(dO * O), rows of d elements of the storage type */
    void (*rowdot)(int dtype, const void *o, const void *d_o, size_t rows, size_t d, float *dsum);
    void (*add_f32)(float *a, const float *b, size_t n);
    void (*to_storage)(int dtype, const float *src, void *dst, size_t n);
    /* releases the memory the device keeps for reuse (NULL: keeps none, or keeps it) */
    void (*trim)(void);
} exec_dev;

extern const exec_dev exec_dev_cpu;
#ifdef ATTNSIM_HAVE_CUDA
extern const exec_dev exec_dev_cuda;
#endif

struct exec_ctx {
    am_config cfg;
    kn_dtype dtype;
    uint64_t seed;
    size_t sram; /* SRAM elements of the local kernels (CPU device) */
    const exec_dev *dev;
    comm_ctx comm;
    int rank;
    size_t n;               /* own tokens */
    exec_pos pos;           /* their positions */
    kn_tensor q, k, v, d_o; /* storage type, device memory */
    kn_tensor o, lse;       /* forward outputs: storage type, f32 */
    kn_tensor dq, dk, dv;   /* backward outputs: storage type */
    void *saved;            /* what an algorithm keeps from its forward for its backward */
};

typedef struct {
    void (*forward)(exec_ctx *x);  /* fills o, lse */
    void (*backward)(exec_ctx *x); /* fills dq, dk, dv (after forward) */
    void (*release)(exec_ctx *x);  /* frees x->saved */
} exec_algo;

/* The executors of models/algorithms.def (its third column), one file exec_<name>.c each. */
#define ATTNSIM_ALGORITHM(id, descriptor, executor) extern const exec_algo executor;
#include "algorithms.def"
#undef ATTNSIM_ALGORITHM
/* The executor of algorithm a. */
const exec_algo *exec_algo_of(am_algo a);

/* Tokens rank `rank` owns under the algorithm's layout (increasing; caller frees). */
uint64_t *exec_tokens_of(const am_config *c, uint64_t rank, size_t *n);
/* Positions of rank `rank`'s tokens, also on the device. */
exec_pos exec_pos_of(const exec_ctx *x, uint64_t rank);
/* Takes `host` (n positions, malloc'ed) and puts a copy on the device. */
exec_pos exec_pos_make(const exec_ctx *x, uint64_t *host, size_t n);
void exec_pos_free(const exec_ctx *x, exec_pos *p);

/* Device memory: alloc (never NULL; fails through the error path), free. */
void *xd_alloc(const exec_ctx *x, size_t bytes, const char *what);
void xd_free(const exec_ctx *x, void *p);
/* A device tensor (and its release). */
void xd_tensor(const exec_ctx *x, kn_tensor *t, kn_dtype dtype, size_t elems, const char *what);
void xd_tensor_free(const exec_ctx *x, kn_tensor *t);
/* A tensor view on existing memory (not owned). */
kn_tensor exec_view(void *data, kn_dtype dtype, size_t elems);
/* Fills t ([batch][heads][n][d], host memory) with the generated values of tokens pos. */
void exec_fill(const exec_ctx *x, kn_tensor *t, kn_gen_tensor which, size_t heads,
               const uint64_t *pos, size_t n);

/* Tokens gathered from g members, in increasing position: total, positions, and for member j
 * the index in the gathered order of each of its tokens (host, and on the device). */
typedef struct {
    size_t g, total;
    exec_pos pos;
    size_t *count, **index;
    const void **dindex; /* [g]: index[j] as uint64 on the device */
} gather_map;
void gather_map_build(const exec_ctx *x, gather_map *gm, size_t g, uint64_t *const *member_pos,
                      const size_t *member_n);
void gather_map_free(const exec_ctx *x, gather_map *gm);
/* Positions of member j's tokens (its share of the gathered positions). */
exec_pos gather_member_pos(const exec_ctx *x, const gather_map *gm, size_t j);
/* Copies member j's block ([planes][n_j][row] elements of esize bytes) into / out of the
 * gathered array ([planes][total][row]). */
void gather_in(const exec_ctx *x, void *gathered, const void *block, const gather_map *gm, size_t j,
               size_t planes, size_t row, size_t esize);
void gather_out(const exec_ctx *x, void *block, const void *gathered, const gather_map *gm,
                size_t j, size_t planes, size_t row, size_t esize);

/* Partial states of `rows` rows (rows = batch x heads x tokens). */
size_t state_floats(size_t rows, size_t d);
/* Rows of a state in a gathered order -> the state of member j's rows (and back). */
void state_gather_out(const exec_ctx *x, float *block, const float *gathered, const gather_map *gm,
                      size_t j, size_t planes, size_t d);
void state_gather_in(const exec_ctx *x, float *gathered, const float *block, const gather_map *gm,
                     size_t j, size_t planes, size_t d);

/* D = rowsum(dO * O) of the own shard (f32 [b][h][n], device memory). */
float *exec_dsum(const exec_ctx *x);

/* ---- steps the algorithms share ---------------------------------------------------------- */

/* A Ring Attention pass (ring_pass.c) over a ring of g members (communicator `on`, this member
 * `me`): the queries (hq heads of the tokens qpos, storage type [b][hq][nq][d]) against the K/V
 * blocks of every member (hk heads; block j holds the tokens bpos[j]; the own block k, v
 * [b][hk][n][d]), in the phases steps (forward), grad_steps and grad_return (backward). */
typedef struct {
    MPI_Comm on;
    int g, me;
    size_t hq, hk;
    const void *q;
    const exec_pos *qpos;
    const void *k, *v;
    const exec_pos *bpos; /* [g] */
    am_phase_id steps, grad_steps, grad_return;
} ring_pass;
/* Forward: `state` (state_floats(b hq nq, d)) gets the queries' partial state over all blocks. */
void ring_pass_forward(exec_ctx *x, const ring_pass *rp, float *state);
/* Backward, given dO, LSE and D of the queries: adds into dq (f32 [b][hq][nq][d]) and leaves
 * the own block's dK|dV in home (f32, 2 [b][hk][n][d]). */
void ring_pass_backward(exec_ctx *x, const ring_pass *rp, const void *d_o, const float *lse,
                        const float *dsum, float *dq, float *home);

/* The all-to-alls between a token split and a head split over a group (heads_a2a.c): member j
 * of the group holds tokens [t0, t0 + n) of a list of T, or the heads of block j: query heads
 * [hq0, + hq) and K/V heads [hk0, + hk) (the balanced K/V head split, partition.h). */
typedef struct {
    size_t n, t0, hq, hq0, hk, hk0;
} heads_block;
typedef struct {
    MPI_Comm on;
    int g, me;
    size_t T;
    heads_block *at; /* [g] */
} heads_split;
void heads_split_init(heads_split *hs, const exec_ctx *x, MPI_Comm on, size_t T);
void heads_split_free(heads_split *hs);
/* One payload: the token side [b][H][n_me][d] (H = heads or kv_heads) and the head side
 * [b][h_me][T][d] (query heads, or K/V heads with kv). */
typedef struct {
    void *tokens;
    size_t H;
    void *heads;
    int kv;
} heads_payload;
/* Moves np payloads, packed per peer in their order, in phase `phase`: token side -> head side
 * (to_heads), or back. */
void heads_alltoall(exec_ctx *x, const heads_split *hs, am_phase_id phase, const heads_payload *p,
                    int np, int to_heads);

#endif
