/* kernel_io.c - predicted HBM traffic of the attention kernels (see kernel_io.h).
 *
 * Notation (per batch entry and query head unless said otherwise): e bytes per element, 4 bytes
 * per f32 statistic or accumulator, Q blocks i of R_i rows (B_r, last ragged), v_i the K/V blocks
 * Q block i visits (all T_c, or the causal prefix), keys_i = min(N_k, v_i B_c) the key rows
 * it loads, v_max = max_i v_i (a K/V block is loaded by the K/V-outer kernels iff j < v_max).
 */
#include "kernel_io.h"

#include "partition.h"

typedef struct {
    uint64_t sum_keys_rows;   /* sum_i R_i keys_i: scores computed, for FLOPs */
    uint64_t sum_keys;        /* sum_i keys_i */
    uint64_t sum_visits_rows; /* sum_i v_i R_i */
    uint64_t sum_repeat_rows; /* sum_i (v_i - 1)+ R_i */
    uint64_t empty_rows;      /* sum_i [v_i = 0] R_i */
    uint64_t keys_max;        /* min(N_k, v_max B_c): key rows of the blocks visited at all */
    uint64_t q_blocks;        /* T_r */
} q_block_sums;

static q_block_sums sum_over_q_blocks(const kn_shape *s, kn_blocks blk)
{
    q_block_sums t = {0};
    uint64_t vmax = 0;
    for (size_t r0 = 0; r0 < s->nq; r0 += blk.br) {
        uint64_t rows = s->nq - r0 < blk.br ? s->nq - r0 : blk.br;
        uint64_t v = kn_kv_blocks_visible(s, r0, rows, blk.bc);
        uint64_t keys = v * blk.bc < s->nk ? v * blk.bc : s->nk;
        t.sum_keys_rows += rows * keys;
        t.sum_keys += keys;
        t.sum_visits_rows += v * rows;
        t.sum_repeat_rows += (v > 0 ? v - 1 : 0) * rows;
        t.empty_rows += v == 0 ? rows : 0;
        if (v > vmax) vmax = v;
        t.q_blocks++;
    }
    t.keys_max = vmax * blk.bc < s->nk ? vmax * blk.bc : s->nk;
    return t;
}

void kio_predict(kio_kernel kernel, const kn_shape *s, uint64_t e, kn_blocks blk,
                 uint64_t softmax_chunk, kio_traffic *out)
{
    const uint64_t f = 4; /* f32 statistic / accumulator */
    uint64_t d = s->d, nq = s->nq, nk = s->nk;
    uint64_t bh = (uint64_t)s->batch * s->heads, bhkv = (uint64_t)s->batch * s->kv_heads;
    q_block_sums t = sum_over_q_blocks(s, blk);
    uint64_t rd = 0, wr = 0, flops = 0;

    /* Compulsory: read once the Q rows that see at least one key (under the causal mask with
     * N_q > N_k the first N_q - N_k rows see none: their output is fixed without reading
     * anything) and K, V; write every output once. Per-variant extras below. */
    uint64_t nq_live = s->causal && nk < nq ? nk : nq;
    uint64_t comp_rd = e * (bh * nq_live * d + 2 * bhkv * nk * d), comp_wr = e * bh * nq * d;

    switch (kernel) {
    case KIO_STANDARD_FWD: {
        /* pass 1: Q once, K once per Q block, S written; pass 2: S read once or twice
         * (row longer than the chunk), P written; pass 3: P read, V once per Q block, O. */
        uint64_t s_reads = nk <= softmax_chunk ? 1 : 2; /* S and P are f32 (e_S = 4) */
        rd = bh * (e * nq * d + 2 * t.q_blocks * e * nk * d + (s_reads + 1) * f * nq * nk);
        wr = bh * (2 * f * nq * nk + e * nq * d);
        flops = bh * attn_pair_flops(d, 0) * nq * nk;
        break;
    }
    case KIO_FA1_FWD:
        /* K_j, V_j once per visited block; Q_i on every visit; O_acc, m, l read on every visit
         * but the first; O_acc written on every visit but the last, O on the last; m, l on
         * every visit; empty Q blocks get O, m, l written once. */
        rd = bh * (2 * e * d * t.keys_max + e * d * t.sum_visits_rows +
                   (f * d + 2 * f) * t.sum_repeat_rows);
        wr = bh *
             (f * d * t.sum_repeat_rows + e * d * nq + 2 * f * (t.sum_visits_rows + t.empty_rows));
        flops = bh * attn_pair_flops(d, 0) * t.sum_keys_rows;
        comp_wr += bh * 2 * f * nq;
        break;
    case KIO_FA2_FWD:
        /* Q once; K and V rows of every visited block; O and LSE once. */
        rd = bh * (e * nq * d + 2 * e * d * t.sum_keys);
        wr = bh * (e * nq * d + f * nq);
        flops = bh * attn_pair_flops(d, 0) * t.sum_keys_rows;
        comp_wr += bh * f * nq;
        break;
    case KIO_FA2_BWD:
        /* pre-pass: O, dO read, D and the zeroed dQ_acc written;
         * per visit: Q_i, dO_i, LSE_i, D_i, dQ_acc_i read, dQ_acc_i written;
         * per (batch, kv head): K_j, V_j of the visited blocks read, dK, dV written;
         * final: dQ_acc read, dQ written. */
        rd = bh * (2 * e * nq * d + (2 * e * d + 2 * f + f * d) * t.sum_visits_rows + f * nq * d) +
             bhkv * 2 * e * d * t.keys_max;
        wr = bh * (f * nq + f * nq * d + f * d * t.sum_visits_rows + e * nq * d) +
             bhkv * 2 * e * nk * d;
        flops = bh * attn_pair_flops(d, 1) * t.sum_keys_rows;
        /* compulsory: Q, K, V, and O, dO, LSE of the live rows read; dQ, dK, dV written */
        comp_rd += bh * (2 * e * nq_live * d + f * nq_live);
        comp_wr += bhkv * 2 * e * nk * d;
        break;
    }
    out->bytes_read = rd;
    out->bytes_written = wr;
    out->flops = flops;
    out->compulsory_read = comp_rd;
    out->compulsory_written = comp_wr;
}
