/* decode.h - the decode time model (cost-model.md, "Decode (Lean Attention) model").
 *
 * Pure C. The work plan (which CTA streams which tiles) is kn_decode.h's, the same functions the
 * CUDA kernels call. Time of a scheme: the CTAs of its grid are dispatched in index order onto
 * `slots` co-resident places (a CTA starts when a place frees); every running CTA streams its
 * tiles' K+V bytes at min(cta_rate, hbm_bw / running CTAs) (a fluid model, simulated event by
 * event); plus launch_s per kernel launch; plus, for FlashDecoding with s > 1, the combine
 * kernel (a second launch reading the partials and writing O); plus, for Lean where a host
 * merges partials, fixup_latency_s once and fixup_s per partial the busiest host merges. The
 * floor is the bytes of the call over hbm_bw.
 */
#ifndef ATTNSIM_DECODE_H
#define ATTNSIM_DECODE_H

#include <stddef.h>

#include "kn_decode.h"

typedef struct {
    double hbm_bw;          /* B/s: streaming read bandwidth of the device */
    double cta_rate;        /* B/s: what one CTA streams when alone */
    double launch_s;        /* fixed cost of one launch (GPU side) */
    double fixup_s;         /* one merged partial at a Lean host (its share of the fold) */
    double fixup_latency_s; /* a Lean host that merges any partial: the flag's round trip and
                             * the fold's fixed steps, once (0 if not measured) */
} kdm_params;

typedef struct {
    double time_s;           /* predicted time of the call */
    double floor_s;          /* (K/V cache bytes read once + Q + O) / hbm_bw */
    double stream_s;         /* the simulated streaming part */
    long long ctas, splits;  /* grid and FlashDecoding's s */
    long long busiest_tiles; /* tiles of the busiest CTA */
    long long waves;         /* ceil(ctas / slots) */
    double kv_bytes;         /* K and V bytes read (valid rows only): the cache once per head
                              * group, i.e. groups x the cache when g > KN_DEC_MAX_GROUP */
} kdm_prediction;

/* elem_bytes: storage type width. Returns 0, or -1 for an invalid input (zero slots, rates). */
int kdm_predict(const kn_dec_plan *p, const int *lens, kn_dec_scheme scheme, long long slots,
                size_t elem_bytes, const kdm_params *m, kdm_prediction *out);

/* "fa2", "flash-decoding", "lean". */
const char *kdm_scheme_name(kn_dec_scheme s);

#endif
