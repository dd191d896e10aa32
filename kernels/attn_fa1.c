/* attn_fa1.c - FlashAttention-1 forward (C reference, Dao et al. 2022, algorithm 1).
 *
 * Outer loop over K/V blocks j (K_j, V_j loaded once), inner loop over the Q blocks i that can
 * see block j: load Q_i and the running O_i, m_i, l_i, update, write them back. The first
 * visit of a block (j = 0) starts from the empty state instead of reading it; the last visit
 * writes O_i, normalised, in the storage type, while the visits before it keep O_i in an f32
 * buffer (o_acc), as flash-attn v1 did, so that low-precision storage does not round the
 * running output once per K/V block. Q blocks that see no key at all (causal, nq > nk) get
 * O = 0, m = -inf, l = 0 written once. Outputs O, m, l (LSE = m + log l).
 * Traffic per (batch, query head), with v_i the K/V blocks Q block i visits and R_i its rows:
 *   reads  2 e d sum_j [block j visited] B_c(j) + sum_i v_i e R_i d
 *          + sum_i (v_i - 1)+ (4 R_i d + 8 R_i)
 *   writes sum_i [(v_i - 1)+ 4 R_i d + e R_i d + max(v_i, 1) 8 R_i].
 * SRAM: K_j and V_j (2 B_c d) for the whole inner loop, one d-wide slot that holds Q_i and then
 * O_i (B_r d: Q is dead once S is formed), the score tile, and m_i, l_i and the tile's m, l
 * (4 B_r).
 */
#include "kn_attn.h"
#include "kn_merge.h"
#include "kn_tile_ops.h"

size_t kn_fa1_working_set(size_t br, size_t bc, size_t d)
{
    return 2 * bc * d + br * d + br * bc + 4 * br;
}

kn_blocks kn_fa1_blocks(const kn_shape *s, size_t sram_elems)
{
    return kn_choose_blocks(sram_elems, s->d, s->nq, s->nk, kn_fa1_working_set);
}

void kn_fa1_fwd(const kn_shape *s, size_t sram_elems, kn_attn_io *t, kn_counters *c)
{
    kn_blocks blk = kn_fa1_blocks(s, sram_elems);
    if (!blk.br) kn_fatal("kn_fa1_fwd", "SRAM too small for 1 x 1 blocks");
    size_t d = s->d, g = s->heads / s->kv_heads;
    float scale = kn_softmax_scale(d);
    kn_sram sram;
    kn_sram_init(&sram, sram_elems);
    float *k = kn_sram_take(&sram, blk.bc * d, "fa1: K block");
    float *v = kn_sram_take(&sram, blk.bc * d, "fa1: V block");
    float *qo = kn_sram_take(&sram, blk.br * d, "fa1: Q/O slot");
    float *S = kn_sram_take(&sram, blk.br * blk.bc, "fa1: score tile");
    float *m = kn_sram_take(&sram, blk.br, "fa1: m_i");
    float *l = kn_sram_take(&sram, blk.br, "fa1: l_i");
    float *mt = kn_sram_take(&sram, blk.br, "fa1: tile max");
    float *lt = kn_sram_take(&sram, blk.br, "fa1: tile sum");
    size_t tc = kn_ceil_div(s->nk, blk.bc);

    for (size_t b = 0; b < s->batch; b++)
        for (size_t hq = 0; hq < s->heads; hq++) {
            size_t qbase = (b * s->heads + hq) * s->nq * d;
            size_t kvbase = (b * s->kv_heads + hq / g) * s->nk * d;
            size_t statbase = (b * s->heads + hq) * s->nq;
            /* Q blocks that see no key: write the empty result once. */
            for (size_t r0 = 0; r0 < s->nq; r0 += blk.br) {
                size_t rows = kn_min(blk.br, s->nq - r0);
                if (kn_kv_blocks_visible(s, r0, rows, blk.bc) > 0) continue;
                for (size_t r = 0; r < rows; r++) {
                    m[r] = -INFINITY;
                    l[r] = 0.0f;
                }
                for (size_t i = 0; i < rows * d; i++) qo[i] = 0.0f;
                kn_hbm_write(c, &t->o, qbase + r0 * d, rows * d, qo);
                kn_hbm_write(c, &t->m, statbase + r0, rows, m);
                kn_hbm_write(c, &t->l, statbase + r0, rows, l);
            }
            for (size_t j = 0; j < tc; j++) {
                size_t c0 = j * blk.bc, cols = kn_min(blk.bc, s->nk - c0);
                int loaded = 0;
                for (size_t r0 = 0; r0 < s->nq; r0 += blk.br) {
                    size_t rows = kn_min(blk.br, s->nq - r0);
                    size_t nvis = kn_kv_blocks_visible(s, r0, rows, blk.bc);
                    if (j >= nvis) continue;
                    if (!loaded) {
                        kn_hbm_read(c, &t->k, kvbase + c0 * d, cols * d, k);
                        kn_hbm_read(c, &t->v, kvbase + c0 * d, cols * d, v);
                        loaded = 1;
                    }
                    kn_hbm_read(c, &t->q, qbase + r0 * d, rows * d, qo);
                    kn_tile_scores(s, qo, k, rows, cols, r0, c0, scale, S);
                    for (size_t r = 0; r < rows; r++) {
                        mt[r] = kn_row_max(S + r * cols, cols);
                        lt[r] = kn_row_exp(S + r * cols, cols, mt[r]);
                    }
                    /* Q is dead: the slot now takes the running O_i. */
                    if (j == 0) {
                        for (size_t r = 0; r < rows; r++) {
                            m[r] = -INFINITY;
                            l[r] = 0.0f;
                        }
                        for (size_t i = 0; i < rows * d; i++) qo[i] = 0.0f;
                    } else {
                        kn_hbm_read(c, &t->o_acc, qbase + r0 * d, rows * d, qo);
                        kn_hbm_read(c, &t->m, statbase + r0, rows, m);
                        kn_hbm_read(c, &t->l, statbase + r0, rows, l);
                    }
                    for (size_t r = 0; r < rows; r++) {
                        float mn, a_old, a_tile;
                        kn_merge_coeffs(m[r], mt[r], &mn, &a_old, &a_tile);
                        float lnew = a_old * l[r] + a_tile * lt[r];
                        /* O_i is stored normalised: unnormalised old part is l_i O_i. */
                        float c_old = lnew > 0.0f ? a_old * l[r] / lnew : 0.0f;
                        float c_tile = lnew > 0.0f ? a_tile / lnew : 0.0f;
                        float *orow = qo + r * d;
                        for (size_t x = 0; x < d; x++) orow[x] *= c_old;
                        for (size_t cc = 0; cc < cols; cc++) S[r * cols + cc] *= c_tile;
                        m[r] = mn;
                        l[r] = lnew;
                    }
                    kn_tile_pv(S, v, rows, cols, d, qo);
                    c->flops += 4ull * rows * cols * d;
                    if (j + 1 == nvis)
                        kn_hbm_write(c, &t->o, qbase + r0 * d, rows * d, qo);
                    else
                        kn_hbm_write(c, &t->o_acc, qbase + r0 * d, rows * d, qo);
                    kn_hbm_write(c, &t->m, statbase + r0, rows, m);
                    kn_hbm_write(c, &t->l, statbase + r0, rows, l);
                }
            }
        }
    kn_sram_free(&sram);
}
