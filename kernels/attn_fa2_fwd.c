/* attn_fa2_fwd.c - FlashAttention-2 forward (C reference, Dao 2023, algorithm 1).
 *
 * Outer loop over Q blocks (one "CTA" per (Q block, head)), inner loop over the K/V blocks the
 * block can see; the running state (m, l, o) of each row is rescaled per K/V block with the
 * merge operator and normalised once at the end; only O and LSE are written.
 * Traffic per (batch, query head): reads e N_q d (Q once) + 2 e d sum_i keys(i), where keys(i)
 * is the key rows loaded for Q block i (all N_k, or under the causal mask the visible block
 * prefix); writes e N_q d (O) + 4 N_q (LSE, f32).
 * SRAM: Q block and O accumulator (2 B_r d), one d-wide slot that holds K_j and then V_j
 * (B_c d: K is dead once S is formed), the B_r x B_c score tile, and m, l (2 B_r).
 */
#include "kn_attn.h"
#include "kn_merge.h"
#include "kn_tile_ops.h"

size_t kn_fa2_fwd_working_set(size_t br, size_t bc, size_t d)
{
    return 2 * br * d + bc * d + br * bc + 2 * br;
}

kn_blocks kn_fa2_fwd_blocks(const kn_shape *s, size_t sram_elems)
{
    return kn_choose_blocks(sram_elems, s->d, s->nq, s->nk, kn_fa2_fwd_working_set);
}

void kn_fa2_fwd(const kn_shape *s, size_t sram_elems, kn_attn_io *t, kn_counters *c)
{
    kn_blocks blk = kn_fa2_fwd_blocks(s, sram_elems);
    if (!blk.br) kn_fatal("kn_fa2_fwd", "SRAM too small for 1 x 1 blocks");
    size_t d = s->d, g = s->heads / s->kv_heads;
    float scale = kn_softmax_scale(d);
    kn_sram sram;
    kn_sram_init(&sram, sram_elems);
    float *q = kn_sram_take(&sram, blk.br * d, "fa2: Q block");
    float *o = kn_sram_take(&sram, blk.br * d, "fa2: O accumulator");
    float *kv = kn_sram_take(&sram, blk.bc * d, "fa2: K/V slot");
    float *S = kn_sram_take(&sram, blk.br * blk.bc, "fa2: score tile");
    float *m = kn_sram_take(&sram, blk.br, "fa2: row max");
    float *l = kn_sram_take(&sram, blk.br, "fa2: row sum");

    for (size_t b = 0; b < s->batch; b++)
        for (size_t hq = 0; hq < s->heads; hq++) {
            size_t qbase = (b * s->heads + hq) * s->nq * d;
            size_t kvbase = (b * s->kv_heads + hq / g) * s->nk * d;
            size_t statbase = (b * s->heads + hq) * s->nq;
            for (size_t r0 = 0; r0 < s->nq; r0 += blk.br) {
                size_t rows = kn_min(blk.br, s->nq - r0);
                kn_hbm_read(c, &t->q, qbase + r0 * d, rows * d, q);
                for (size_t i = 0; i < rows * d; i++) o[i] = 0.0f;
                for (size_t r = 0; r < rows; r++) {
                    m[r] = -INFINITY;
                    l[r] = 0.0f;
                }
                size_t nvis = kn_kv_blocks_visible(s, r0, rows, blk.bc);
                for (size_t j = 0; j < nvis; j++) {
                    size_t c0 = j * blk.bc, cols = kn_min(blk.bc, s->nk - c0);
                    kn_hbm_read(c, &t->k, kvbase + c0 * d, cols * d, kv);
                    kn_tile_scores(s, q, kv, rows, cols, r0, c0, scale, S);
                    for (size_t r = 0; r < rows; r++) {
                        float *Sr = S + r * cols, mn, a_old, a_tile;
                        kn_merge_coeffs(m[r], kn_row_max(Sr, cols), &mn, &a_old, &a_tile);
                        /* exp(S - mn) is the tile's partial already scaled by a_tile. */
                        l[r] = a_old * l[r] + kn_row_exp(Sr, cols, mn);
                        m[r] = mn;
                        for (size_t x = 0; x < d; x++) o[r * d + x] *= a_old;
                    }
                    kn_hbm_read(c, &t->v, kvbase + c0 * d, cols * d, kv);
                    kn_tile_pv(S, kv, rows, cols, d, o);
                    c->flops += 4ull * rows * cols * d;
                }
                if (t->fwd_partial) { /* the caller merges the unnormalised partial */
                    kn_hbm_write(c, &t->o, qbase + r0 * d, rows * d, o);
                    kn_hbm_write(c, &t->m, statbase + r0, rows, m);
                    kn_hbm_write(c, &t->l, statbase + r0, rows, l);
                    continue;
                }
                for (size_t r = 0; r < rows; r++)
                    kn_state_finalize(d, m[r], l[r], o + r * d, &m[r]);
                kn_hbm_write(c, &t->o, qbase + r0 * d, rows * d, o);
                kn_hbm_write(c, &t->lse, statbase + r0, rows, m);
            }
        }
    kn_sram_free(&sram);
}
