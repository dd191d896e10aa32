/* kn_tiling.h - problem shape, block sizes and causal block visibility of the tiled kernels.
 *
 * Pure C, header only: the kernels (kernels/) and the kernel IO model (models/kernel_io.c) both
 * include it, so the block sizes a kernel runs with and the blocks it skips under the causal
 * mask are one fact with one owner. The model still derives every byte count on its own; the
 * tests compare those with the kernels' counted transfers.
 *
 * Layouts in HBM (row-major): Q, O, dO, dQ [batch][heads][nq][d]; K, V, dK, dV
 * [batch][kv_heads][nk][d]; per-row statistics (LSE, m, l, D) [batch][heads][nq], f32.
 * Query head hq reads K/V head hq / (heads / kv_heads) (grouped-query attention, no copies).
 */
#ifndef ATTNSIM_KN_TILING_H
#define ATTNSIM_KN_TILING_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t batch, heads, kv_heads; /* kv_heads divides heads */
    size_t nq, nk, d;              /* query rows, key rows, head dimension */
    int causal;                    /* bottom-right aligned: key k visible to query r iff
                                      k <= r + nk - nq */
    /* Optional token positions (both set or both NULL), each sorted increasing: then key k is
     * visible to query r iff k_pos[k] <= q_pos[r]. A distributed algorithm's tile holds tokens
     * scattered over the sequence; the positions carry the causal mask to it. */
    const uint64_t *q_pos, *k_pos;
} kn_shape;

typedef struct {
    size_t br; /* query rows per block (B_r); 0 when the SRAM is too small */
    size_t bc; /* key rows per block (B_c) */
} kn_blocks;

/* SRAM elements a kernel needs for blocks (br, bc) at head dimension d. */
typedef size_t (*kn_working_set_fn)(size_t br, size_t bc, size_t d);

/* Key k is visible to query row r. */
static inline int kn_key_visible(const kn_shape *s, size_t r, size_t k)
{
    if (s->q_pos) return !s->causal || s->k_pos[k] <= s->q_pos[r];
    return !s->causal || k + s->nq <= r + s->nk;
}

/* Keys visible to query row r (they are always the prefix [0, count)). */
static inline size_t kn_keys_visible(const kn_shape *s, size_t r)
{
    if (!s->causal) return s->nk;
    if (s->q_pos) { /* keys with k_pos <= q_pos[r]: a prefix, found by bisection */
        size_t lo = 0, hi = s->nk;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (s->k_pos[mid] <= s->q_pos[r])
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo;
    }
    if (r + s->nk + 1 <= s->nq) return 0;
    size_t n = r + s->nk + 1 - s->nq;
    return n < s->nk ? n : s->nk;
}

/* K/V blocks of bc keys that the query rows [r0, r0 + rows) must visit: a prefix of the blocks,
 * up to the one holding the last key visible to the last row. Blocks beyond it are entirely
 * masked and are skipped, not computed. */
static inline size_t kn_kv_blocks_visible(const kn_shape *s, size_t r0, size_t rows, size_t bc)
{
    size_t keys = kn_keys_visible(s, r0 + rows - 1);
    return (keys + bc - 1) / bc;
}

/* Block sizes for an SRAM of M elements: start from the FlashAttention paper's choice
 * B_c = floor(M / 4d), B_r = min(B_c, d), clip both to the problem, then shrink the larger of
 * the two (B_c on a tie, since B_r sets how often K/V are re-read) until the kernel's working
 * set fits in M. Returns {0, 0} if even 1 x 1 blocks do not fit. */
static inline kn_blocks kn_choose_blocks(size_t M, size_t d, size_t nq, size_t nk,
                                         kn_working_set_fn ws)
{
    kn_blocks b = {0, 0};
    size_t bc = M / (4 * d);
    if (bc < 1) bc = 1;
    size_t br = bc < d ? bc : d;
    if (bc > nk) bc = nk;
    if (br > nq) br = nq;
    if (bc < 1) bc = 1;
    if (br < 1) br = 1;
    while (ws(br, bc, d) > M) {
        if (br == 1 && bc == 1) return b;
        if (bc >= br && bc > 1)
            bc--;
        else
            br--;
    }
    b.br = br;
    b.bc = bc;
    return b;
}

#endif
