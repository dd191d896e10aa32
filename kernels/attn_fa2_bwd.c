/* attn_fa2_bwd.c - FlashAttention-2 backward (C reference, Dao 2023, algorithm 2).
 *
 * Given Q, K, V, O, dO and the forward's LSE:
 *   pre-pass  D = rowsum(dO * O) per query row (reads O, dO; writes D, f32), and dQ_acc = 0
 *             (f32, written once);
 *   main      for each (batch, kv head) and K/V block j: load K_j, V_j once, zero dK_j, dV_j in
 *             SRAM; for each query head of the group and each Q block i that sees block j:
 *             load Q_i, LSE_i, D_i; S = scale Q_i K_j^T, P = exp(S - LSE) (masked -> 0);
 *             load dO_i; dV_j += P^T dO_i; dP = dO_i V_j^T; dS = P * (dP - D_i);
 *             dK_j += scale dS^T Q_i; load dQ_acc_i; dQ_acc_i += scale dS K_j; store dQ_acc_i.
 *             Store dK_j, dV_j (sums over the g query heads sharing K/V: no copies of K/V).
 *   final     dQ = dQ_acc converted to the storage type.
 * O is not re-read in the main loop (the FA2 paper's listing loads O_i there but only D needs
 * it, and D comes from the pre-pass). dQ accumulates in f32 across K/V blocks.
 * FLOPs 2.5x the forward: five B_r x B_c x d products per visited tile.
 * SRAM: K_j, V_j, dK_j, dV_j (4 B_c d), Q_i (B_r d), one slot for dO_i and then dQ_acc_i
 * (B_r d), the P and dP/dS tiles (2 B_r B_c), LSE_i and D_i (2 B_r).
 */
#include "kn_attn.h"
#include "kn_tile_ops.h"

size_t kn_fa2_bwd_working_set(size_t br, size_t bc, size_t d)
{
    return 4 * bc * d + 2 * br * d + 2 * br * bc + 2 * br;
}

kn_blocks kn_fa2_bwd_blocks(const kn_shape *s, size_t sram_elems)
{
    return kn_choose_blocks(sram_elems, s->d, s->nq, s->nk, kn_fa2_bwd_working_set);
}

typedef struct {
    float *k, *v, *dk, *dv, *q, *slot, *P, *dS, *lse, *dsum;
} bwd_sram;

/* D = rowsum(dO * O) and dQ_acc = 0, Q block by Q block. */
static void bwd_prepass(const kn_shape *s, kn_blocks blk, bwd_sram *w, kn_attn_io *t,
                        kn_counters *c)
{
    size_t d = s->d;
    for (size_t bh = 0; bh < s->batch * s->heads; bh++)
        for (size_t r0 = 0; r0 < s->nq; r0 += blk.br) {
            size_t rows = kn_min(blk.br, s->nq - r0);
            size_t at = (bh * s->nq + r0) * d;
            if (!t->bwd_dsum_given) {
                kn_hbm_read(c, &t->o, at, rows * d, w->q);
                kn_hbm_read(c, &t->d_o, at, rows * d, w->slot);
                for (size_t r = 0; r < rows; r++) {
                    float acc = 0.0f;
                    for (size_t x = 0; x < d; x++) acc += w->q[r * d + x] * w->slot[r * d + x];
                    w->dsum[r] = acc;
                }
                kn_hbm_write(c, &t->dsum, bh * s->nq + r0, rows, w->dsum);
            }
            for (size_t i = 0; i < rows * d; i++) w->slot[i] = 0.0f;
            kn_hbm_write(c, &t->dq_acc, at, rows * d, w->slot);
        }
}

/* One visited (Q block, K/V block) tile of the main loop. */
static void bwd_tile(const kn_shape *s, bwd_sram *w, kn_attn_io *t, kn_counters *c, size_t qat,
                     size_t statat, size_t r0, size_t rows, size_t c0, size_t cols, float scale)
{
    size_t d = s->d;
    kn_hbm_read(c, &t->q, qat, rows * d, w->q);
    kn_hbm_read(c, &t->lse, statat, rows, w->lse);
    kn_hbm_read(c, &t->dsum, statat, rows, w->dsum);
    kn_tile_scores(s, w->q, w->k, rows, cols, r0, c0, scale, w->P);
    for (size_t r = 0; r < rows; r++)
        for (size_t cc = 0; cc < cols; cc++) {
            float *p = &w->P[r * cols + cc];
            /* masked entries (and rows with LSE = -inf, which are all masked) give P = 0 */
            *p = *p == -INFINITY ? 0.0f : expf(*p - w->lse[r]);
        }
    kn_hbm_read(c, &t->d_o, qat, rows * d, w->slot);
    for (size_t r = 0; r < rows; r++) {
        const float *dor = w->slot + r * d;
        for (size_t cc = 0; cc < cols; cc++) {
            float p = w->P[r * cols + cc];
            float *dvc = w->dv + cc * d;
            const float *vc = w->v + cc * d;
            float dp = 0.0f;
            for (size_t x = 0; x < d; x++) {
                dvc[x] += p * dor[x];
                dp += dor[x] * vc[x];
            }
            w->dS[r * cols + cc] = p * (dp - w->dsum[r]);
        }
    }
    for (size_t r = 0; r < rows; r++) {
        const float *qr = w->q + r * d;
        for (size_t cc = 0; cc < cols; cc++) {
            float ds = scale * w->dS[r * cols + cc];
            if (ds == 0.0f) continue;
            float *dkc = w->dk + cc * d;
            for (size_t x = 0; x < d; x++) dkc[x] += ds * qr[x];
        }
    }
    kn_hbm_read(c, &t->dq_acc, qat, rows * d, w->slot);
    for (size_t r = 0; r < rows; r++) {
        float *dqr = w->slot + r * d;
        for (size_t cc = 0; cc < cols; cc++) {
            float ds = scale * w->dS[r * cols + cc];
            if (ds == 0.0f) continue;
            const float *kc = w->k + cc * d;
            for (size_t x = 0; x < d; x++) dqr[x] += ds * kc[x];
        }
    }
    kn_hbm_write(c, &t->dq_acc, qat, rows * d, w->slot);
    c->flops += 10ull * rows * cols * d;
}

void kn_fa2_bwd(const kn_shape *s, size_t sram_elems, kn_attn_io *t, kn_counters *c)
{
    kn_blocks blk = kn_fa2_bwd_blocks(s, sram_elems);
    if (!blk.br) kn_fatal("kn_fa2_bwd", "SRAM too small for 1 x 1 blocks");
    size_t d = s->d, g = s->heads / s->kv_heads;
    float scale = kn_softmax_scale(d);
    kn_sram sram;
    kn_sram_init(&sram, sram_elems);
    bwd_sram w;
    w.k = kn_sram_take(&sram, blk.bc * d, "fa2 bwd: K block");
    w.v = kn_sram_take(&sram, blk.bc * d, "fa2 bwd: V block");
    w.dk = kn_sram_take(&sram, blk.bc * d, "fa2 bwd: dK block");
    w.dv = kn_sram_take(&sram, blk.bc * d, "fa2 bwd: dV block");
    w.q = kn_sram_take(&sram, blk.br * d, "fa2 bwd: Q block");
    w.slot = kn_sram_take(&sram, blk.br * d, "fa2 bwd: dO/dQ slot");
    w.P = kn_sram_take(&sram, blk.br * blk.bc, "fa2 bwd: P tile");
    w.dS = kn_sram_take(&sram, blk.br * blk.bc, "fa2 bwd: dP/dS tile");
    w.lse = kn_sram_take(&sram, blk.br, "fa2 bwd: LSE");
    w.dsum = kn_sram_take(&sram, blk.br, "fa2 bwd: D");

    bwd_prepass(s, blk, &w, t, c);

    size_t tc = kn_ceil_div(s->nk, blk.bc);
    for (size_t b = 0; b < s->batch; b++)
        for (size_t hk = 0; hk < s->kv_heads; hk++) {
            size_t kvbase = (b * s->kv_heads + hk) * s->nk * d;
            for (size_t j = 0; j < tc; j++) {
                size_t c0 = j * blk.bc, cols = kn_min(blk.bc, s->nk - c0);
                int loaded = 0;
                for (size_t i = 0; i < cols * d; i++) w.dk[i] = w.dv[i] = 0.0f;
                for (size_t hq = hk * g; hq < (hk + 1) * g; hq++) {
                    size_t statbase = (b * s->heads + hq) * s->nq;
                    for (size_t r0 = 0; r0 < s->nq; r0 += blk.br) {
                        size_t rows = kn_min(blk.br, s->nq - r0);
                        if (j >= kn_kv_blocks_visible(s, r0, rows, blk.bc)) continue;
                        if (!loaded) {
                            kn_hbm_read(c, &t->k, kvbase + c0 * d, cols * d, w.k);
                            kn_hbm_read(c, &t->v, kvbase + c0 * d, cols * d, w.v);
                            loaded = 1;
                        }
                        bwd_tile(s, &w, t, c, (statbase + r0) * d, statbase + r0, r0, rows, c0,
                                 cols, scale);
                    }
                }
                kn_hbm_write(c, &t->dk, kvbase + c0 * d, cols * d, w.dk);
                kn_hbm_write(c, &t->dv, kvbase + c0 * d, cols * d, w.dv);
            }
        }

    for (size_t bh = 0; bh < s->batch * s->heads; bh++)
        for (size_t r0 = 0; r0 < s->nq; r0 += blk.br) {
            size_t rows = kn_min(blk.br, s->nq - r0);
            size_t at = (bh * s->nq + r0) * d;
            kn_hbm_read(c, &t->dq_acc, at, rows * d, w.slot);
            kn_hbm_write(c, &t->dq, at, rows * d, w.slot);
        }
    kn_sram_free(&sram);
}
