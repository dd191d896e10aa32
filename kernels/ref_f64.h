/* ref_f64.h - naive float64 attention, forward and backward: the ground truth every kernel is
 * checked against. Straight from the definitions (algorithms.md, notation), row by row, no
 * tiling. Same layouts and masking as kn_tiling.h. */
#ifndef ATTNSIM_REF_F64_H
#define ATTNSIM_REF_F64_H

#include "kn_tiling.h"

/* O [b][h][nq][d] and LSE [b][h][nq] (LSE = -inf and O = 0 for a row with no visible key). */
void ref_attn_fwd_f64(const kn_shape *s, const double *q, const double *k, const double *v,
                      double *o, double *lse);

/* Gradients of sum(O * dO): dQ [b][h][nq][d], dK and dV [b][h_kv][nk][d] (summed over the query
 * heads that share a K/V head). */
void ref_attn_bwd_f64(const kn_shape *s, const double *q, const double *k, const double *v,
                      const double *d_o, double *dq, double *dk, double *dv);

/* Tolerances of a checked kernel output, by storage type: an element passes when
 * |x - ref| <= tol * max(1, max |ref|) (the same bound for every output tensor). */
double ref_tolerance(int dtype);

#endif
