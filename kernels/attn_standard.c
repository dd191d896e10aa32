/* attn_standard.c - standard attention with S and P materialised in HBM (C reference).
 *
 * Three passes per (batch, head):
 *   1. S = scale Q K^T, masked entries -inf: Q block i loaded once, every K block loaded for
 *      it (K is read T_r times), each S tile written.
 *   2. P = softmax(S) row by row: a row of S is read once if it fits the softmax chunk
 *      (M - 2 elements), otherwise twice (running max and sum first, then P); P written.
 *   3. O = P V: for each Q block every (P tile, V block) pair is read (V read T_r times), O
 *      written once.
 * S and P are stored in f32 whatever the storage type (e_S = 4): in f16 a score above 65504
 * would overflow to inf and the softmax would turn it into NaN. The causal mask is applied but
 * nothing is skipped: standard attention does the full N_q x N_k work, as a materialising kernel
 * does. SRAM: passes 1 and 3 hold one d-wide Q (or O) block, one d-wide K (or V) block and one B_r
 * x B_c tile: B_r d + B_c d + B_r B_c elements. Pass 2 holds the row chunk and (m, l).
 */
#include "kn_attn.h"
#include "kn_merge.h"
#include "kn_tile_ops.h"

size_t kn_standard_working_set(size_t br, size_t bc, size_t d)
{
    return br * d + bc * d + br * bc;
}

kn_blocks kn_standard_blocks(const kn_shape *s, size_t sram_elems)
{
    return kn_choose_blocks(sram_elems, s->d, s->nq, s->nk, kn_standard_working_set);
}

size_t kn_standard_softmax_chunk(size_t sram_elems)
{
    return sram_elems > 2 ? sram_elems - 2 : 0;
}

static void scores_pass(const kn_shape *s, kn_blocks blk, kn_sram *sram, kn_attn_io *t,
                        kn_counters *c)
{
    size_t d = s->d, g = s->heads / s->kv_heads;
    float scale = kn_softmax_scale(d);
    float *q = kn_sram_take(sram, blk.br * d, "standard: Q block");
    float *k = kn_sram_take(sram, blk.bc * d, "standard: K block");
    float *S = kn_sram_take(sram, blk.br * blk.bc, "standard: S tile");
    for (size_t b = 0; b < s->batch; b++)
        for (size_t hq = 0; hq < s->heads; hq++) {
            size_t qbase = (b * s->heads + hq) * s->nq * d;
            size_t kbase = (b * s->kv_heads + hq / g) * s->nk * d;
            size_t sbase = (b * s->heads + hq) * s->nq * s->nk;
            for (size_t r0 = 0; r0 < s->nq; r0 += blk.br) {
                size_t rows = kn_min(blk.br, s->nq - r0);
                kn_hbm_read(c, &t->q, qbase + r0 * d, rows * d, q);
                for (size_t c0 = 0; c0 < s->nk; c0 += blk.bc) {
                    size_t cols = kn_min(blk.bc, s->nk - c0);
                    kn_hbm_read(c, &t->k, kbase + c0 * d, cols * d, k);
                    kn_tile_scores(s, q, k, rows, cols, r0, c0, scale, S);
                    c->flops += 2ull * rows * cols * d;
                    kn_hbm_write_tile(c, &t->s, sbase + r0 * s->nk + c0, rows, cols, s->nk, S);
                }
            }
        }
}

static void softmax_pass(const kn_shape *s, size_t sram_elems, kn_sram *sram, kn_attn_io *t,
                         kn_counters *c)
{
    size_t chunk = kn_min(kn_standard_softmax_chunk(sram_elems), s->nk);
    float *x = kn_sram_take(sram, chunk, "standard: softmax row chunk");
    float *ml = kn_sram_take(sram, 2, "standard: row max and sum");
    size_t rows = s->batch * s->heads * s->nq;
    for (size_t row = 0; row < rows; row++) {
        size_t base = row * s->nk;
        if (s->nk <= chunk) { /* the whole row fits: one read */
            kn_hbm_read(c, &t->s, base, s->nk, x);
            float m = kn_row_max(x, s->nk);
            float l = kn_row_exp(x, s->nk, m);
            float inv = l > 0.0f ? 1.0f / l : 0.0f;
            for (size_t i = 0; i < s->nk; i++) x[i] *= inv;
            kn_hbm_write(c, &t->p, base, s->nk, x);
            continue;
        }
        /* Read A: running (max, sum) over the chunks with the merge operator. */
        ml[0] = -INFINITY;
        ml[1] = 0.0f;
        for (size_t c0 = 0; c0 < s->nk; c0 += chunk) {
            size_t n = kn_min(chunk, s->nk - c0);
            kn_hbm_read(c, &t->s, base + c0, n, x);
            float mt = kn_row_max(x, n), m, a1, a2;
            float lt = kn_row_exp(x, n, mt);
            kn_merge_coeffs(ml[0], mt, &m, &a1, &a2);
            ml[0] = m;
            ml[1] = a1 * ml[1] + a2 * lt;
        }
        /* Read B: P = exp(S - m) / l, chunk by chunk. */
        float inv = ml[1] > 0.0f ? 1.0f / ml[1] : 0.0f;
        for (size_t c0 = 0; c0 < s->nk; c0 += chunk) {
            size_t n = kn_min(chunk, s->nk - c0);
            kn_hbm_read(c, &t->s, base + c0, n, x);
            kn_row_exp(x, n, ml[0]);
            for (size_t i = 0; i < n; i++) x[i] *= inv;
            kn_hbm_write(c, &t->p, base + c0, n, x);
        }
    }
}

static void pv_pass(const kn_shape *s, kn_blocks blk, kn_sram *sram, kn_attn_io *t, kn_counters *c)
{
    size_t d = s->d, g = s->heads / s->kv_heads;
    float *o = kn_sram_take(sram, blk.br * d, "standard: O block");
    float *v = kn_sram_take(sram, blk.bc * d, "standard: V block");
    float *P = kn_sram_take(sram, blk.br * blk.bc, "standard: P tile");
    for (size_t b = 0; b < s->batch; b++)
        for (size_t hq = 0; hq < s->heads; hq++) {
            size_t obase = (b * s->heads + hq) * s->nq * d;
            size_t vbase = (b * s->kv_heads + hq / g) * s->nk * d;
            size_t pbase = (b * s->heads + hq) * s->nq * s->nk;
            for (size_t r0 = 0; r0 < s->nq; r0 += blk.br) {
                size_t rows = kn_min(blk.br, s->nq - r0);
                for (size_t i = 0; i < rows * d; i++) o[i] = 0.0f;
                for (size_t c0 = 0; c0 < s->nk; c0 += blk.bc) {
                    size_t cols = kn_min(blk.bc, s->nk - c0);
                    kn_hbm_read_tile(c, &t->p, pbase + r0 * s->nk + c0, rows, cols, s->nk, P);
                    kn_hbm_read(c, &t->v, vbase + c0 * d, cols * d, v);
                    kn_tile_pv(P, v, rows, cols, d, o);
                    c->flops += 2ull * rows * cols * d;
                }
                kn_hbm_write(c, &t->o, obase + r0 * d, rows * d, o);
            }
        }
}

void kn_standard_fwd(const kn_shape *s, size_t sram_elems, kn_attn_io *t, kn_counters *c)
{
    kn_blocks blk = kn_standard_blocks(s, sram_elems);
    if (!blk.br) kn_fatal("kn_standard_fwd", "SRAM too small for 1 x 1 blocks");
    kn_sram sram;
    kn_sram_init(&sram, sram_elems);
    scores_pass(s, blk, &sram, t, c);
    kn_sram_reset(&sram);
    softmax_pass(s, sram_elems, &sram, t, c);
    kn_sram_reset(&sram);
    pv_pass(s, blk, &sram, t, c);
    kn_sram_free(&sram);
}
