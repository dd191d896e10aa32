/* kn_attn.h - the C reference attention kernels (algorithms.md section 2).
 *
 * Each kernel moves data between "HBM" tensors and an SRAM arena of M f32 elements through the
 * counted transfers of kn_mem.h, so its HBM traffic is measured exactly. Storage types f32, f16
 * and bf16 (converted on load and store); all arithmetic in f32. Causal masking is bottom-right
 * aligned, grouped-query attention reads K/V head hq / g without copying, nq may differ from nk
 * and the last block of either may be ragged. docs/kernels.md derives the traffic of each.
 *
 *   kn_standard_fwd  S = scale Q K^T and P = softmax(S) materialised in HBM, then O = P V.
 *   kn_fa1_fwd       FlashAttention-1: outer loop over K/V blocks, O/m/l re-read and
 *                    re-written per block (intermediate O kept in f32).
 *   kn_fa2_fwd       FlashAttention-2: outer loop over Q blocks, one rescale at the end,
 *                    writes O and LSE.
 *   kn_fa2_bwd       FlashAttention-2 backward: D = rowsum(dO * O) pre-pass, outer loop over
 *                    K/V blocks, P recomputed from the saved LSE, dQ accumulated in f32 in HBM.
 *
 * Every kernel picks its blocks with its *_blocks() function from M; a caller that wants the
 * model's prediction asks the same function (one owner of the block sizes).
 */
#ifndef ATTNSIM_KN_ATTN_H
#define ATTNSIM_KN_ATTN_H

#include "kn_mem.h"
#include "kn_tiling.h"

/* The tensors a kernel may use; each kernel documents which it reads and writes. Inputs and
 * outputs in the storage type; statistics and accumulators in f32. */
typedef struct {
    kn_tensor q, k, v, o; /* storage type */
    kn_tensor lse;        /* f32 [b][h][nq]: FA2 forward output, backward input */
    kn_tensor m, l;       /* f32 [b][h][nq]: FA1 outputs (running max and sum) */
    kn_tensor o_acc;      /* f32 [b][h][nq][d]: FA1 intermediate O between K/V blocks */
    kn_tensor s, p;       /* f32 [b][h][nq][nk]: standard attention's S and P */
    kn_tensor d_o;        /* storage type: dO, backward input */
    kn_tensor dq, dk, dv; /* storage type: backward outputs */
    kn_tensor dq_acc;     /* f32 [b][h][nq][d]: backward dQ accumulator */
    kn_tensor dsum;       /* f32 [b][h][nq]: backward D = rowsum(dO * O) */
    /* Modes for tiles of a distributed algorithm (not used by the kernel study, whose traffic
     * the IO model predicts):
     * fwd_partial: kn_fa2_fwd writes the unnormalised partial (m, l, o) into m, l and o
     *              instead of O and LSE, for the caller to merge (kn_merge.h);
     * bwd_dsum_given: kn_fa2_bwd reads D from dsum (computed by the rows' owner from the
     *              final O) instead of computing it from o and d_o. */
    int fwd_partial, bwd_dsum_given;
} kn_attn_io;

/* 1 / sqrt(d). */
float kn_softmax_scale(size_t d);

size_t kn_standard_working_set(size_t br, size_t bc, size_t d);
size_t kn_fa1_working_set(size_t br, size_t bc, size_t d);
size_t kn_fa2_fwd_working_set(size_t br, size_t bc, size_t d);
size_t kn_fa2_bwd_working_set(size_t br, size_t bc, size_t d);

kn_blocks kn_standard_blocks(const kn_shape *s, size_t sram_elems);
kn_blocks kn_fa1_blocks(const kn_shape *s, size_t sram_elems);
kn_blocks kn_fa2_fwd_blocks(const kn_shape *s, size_t sram_elems);
kn_blocks kn_fa2_bwd_blocks(const kn_shape *s, size_t sram_elems);

/* Standard attention's softmax pass handles one row of S in chunks of this many elements: a
 * row of nk <= chunk is read once, a longer one twice (max and sum first, then P). */
size_t kn_standard_softmax_chunk(size_t sram_elems);

/* Reads q, k, v; writes s, p (scratch) and o. */
void kn_standard_fwd(const kn_shape *s, size_t sram_elems, kn_attn_io *t, kn_counters *c);
/* Reads q, k, v; writes o, m, l, and o_acc between K/V blocks. LSE = m + log l. */
void kn_fa1_fwd(const kn_shape *s, size_t sram_elems, kn_attn_io *t, kn_counters *c);
/* Reads q, k, v; writes o and lse. */
void kn_fa2_fwd(const kn_shape *s, size_t sram_elems, kn_attn_io *t, kn_counters *c);
/* Reads q, k, v, o, d_o, lse; writes dsum, dq_acc (scratch) and dq, dk, dv. */
void kn_fa2_bwd(const kn_shape *s, size_t sram_elems, kn_attn_io *t, kn_counters *c);

#endif
