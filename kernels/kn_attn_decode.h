/* kn_attn_decode.h - the C reference decode kernels (algorithms.md section 3): FA2-style
 * decode, FlashDecoding (split-KV + combine) and Lean Attention (stream-K with host fix-up),
 * each executing exactly the work plan of kn_decode.h on the CPU.
 *
 * Tensors (kn_mem.h, storage type f32/f16/bf16, arithmetic in f32):
 *   q, o  [b][h][d]           one query token per (sequence, query head)
 *   k, v  [b][h_kv][n_cap][d] the KV cache; sequence i holds lens[i] <= n_cap tokens
 *   lse   f32 [b][h]          natural log; a sequence with no token gets O = 0, LSE = -inf
 * Every K/V tile moves through kn_hbm_read_tile into a per-CTA buffer, so the counted bytes are
 * exactly the plan's: each valid K and V row once per unit (the g query heads of a KV head in
 * one unit share the read), Q once per (CTA, unit) segment, O and LSE once per row, plus the
 * partials (m, l, o in f32) written and read by FlashDecoding's combine and Lean's fix-up.
 * kn_decode_predict_bytes gives the same numbers from the plan alone.
 *
 * `slots` is the number of co-resident CTAs the schedule assumes (the Lean grid, FlashDecoding's
 * split heuristic); the reference runs the CTAs one after another in an order that respects the
 * waits (a Lean host merges after its contributors have written).
 */
#ifndef ATTNSIM_KN_ATTN_DECODE_H
#define ATTNSIM_KN_ATTN_DECODE_H

#include "kn_decode.h"
#include "kn_mem.h"

typedef struct {
    kn_tensor q, k, v, o, lse;
    size_t n_cap;
    const int *lens; /* [b] */
} kn_decode_io;

typedef struct {
    long long ctas;         /* CTAs launched (the grid) */
    long long splits;       /* FlashDecoding's s (1 for the other schemes) */
    long long busiest;      /* most tiles streamed by one CTA */
    long long partials;     /* partial states written to scratch */
    long long max_partials; /* most partials one host (or combine row block) merges */
} kn_decode_stats;

/* Runs `scheme` on the problem; fills counters (bytes, flops: 4 d flops per (query head, valid
 * key)) and stats. */
void kn_decode(const kn_dec_plan *p, kn_dec_scheme scheme, long long slots, kn_decode_io *t,
               kn_counters *c, kn_decode_stats *st);

/* The traffic kn_decode counts, from the plan alone (dtype = storage type of q, k, v, o). */
void kn_decode_predict_bytes(const kn_dec_plan *p, kn_dec_scheme scheme, long long slots,
                             const int *lens, kn_dtype dtype, uint64_t *bytes_read,
                             uint64_t *bytes_written, kn_decode_stats *st);

/* The float64 reference of decode attention (no plan): o, lse as above, in double. */
void kn_decode_ref_f64(const kn_dec_plan *p, const kn_decode_io *t, double *o, double *lse);

#endif
