/* kn_merge.h - the online-softmax state and its merge operator (algorithms.md section 1).
 *
 * A partial attention result over a subset of keys, for one query row, is (m, l, o):
 * m = max score seen, l = sum exp(s - m), o = sum exp(s - m) v (unnormalised, d values).
 * Two partials over disjoint key sets merge as
 *     m = max(m1, m2), a1 = exp(m1 - m), a2 = exp(m2 - m)   (a = 0 where that m is -inf),
 *     l = a1 l1 + a2 l2, o = a1 o1 + a2 o2.
 * The operator is associative and commutative (up to rounding). Every kernel and, later, every
 * distributed merge uses the coefficients from kn_merge_coeffs, so the -inf rule (a fully
 * masked partial contributes nothing and never produces NaN) lives in exactly one place.
 */
#ifndef ATTNSIM_KN_MERGE_H
#define ATTNSIM_KN_MERGE_H

#include <math.h>
#include <stddef.h>

/* m = max(m1, m2) and the rescale factors of the two sides. Both -inf gives m = -inf and
 * a1 = a2 = 0. */
static inline void kn_merge_coeffs(float m1, float m2, float *m, float *a1, float *a2)
{
    float mx = m1 > m2 ? m1 : m2;
    *m = mx;
    if (mx == -INFINITY) {
        *a1 = 0.0f;
        *a2 = 0.0f;
        return;
    }
    *a1 = m1 == -INFINITY ? 0.0f : expf(m1 - mx);
    *a2 = m2 == -INFINITY ? 0.0f : expf(m2 - mx);
}

/* Merge the partial (m2, l2, o2) into (m1, l1, o1) in place; o has d values. */
void kn_merge_state(size_t d, float *m1, float *l1, float *o1, float m2, float l2, const float *o2);

/* Normalise a partial: O = o / l and LSE = m + log l in place of o; a row that saw no visible
 * key (l == 0) gives O = 0 and LSE = -inf. */
void kn_state_finalize(size_t d, float m, float l, float *o, float *lse);

/* The normalised form: merge (O2, LSE2) into (O1, LSE1):
 * LSE = log(exp(LSE1) + exp(LSE2)), O = exp(LSE1 - LSE) O1 + exp(LSE2 - LSE) O2. */
void kn_merge_normalized(size_t d, float *o1, float *lse1, const float *o2, float lse2);

#endif
