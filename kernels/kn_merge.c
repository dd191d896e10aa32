/* kn_merge.c - the merge operator of online-softmax partials (see kn_merge.h). */
#include "kn_merge.h"

void kn_merge_state(size_t d, float *m1, float *l1, float *o1, float m2, float l2, const float *o2)
{
    float m, a1, a2;
    kn_merge_coeffs(*m1, m2, &m, &a1, &a2);
    *m1 = m;
    *l1 = a1 * *l1 + a2 * l2;
    for (size_t k = 0; k < d; k++) o1[k] = a1 * o1[k] + a2 * o2[k];
}

void kn_state_finalize(size_t d, float m, float l, float *o, float *lse)
{
    if (l > 0.0f) {
        float inv = 1.0f / l;
        for (size_t k = 0; k < d; k++) o[k] *= inv;
        *lse = m + logf(l);
    } else {
        for (size_t k = 0; k < d; k++) o[k] = 0.0f;
        *lse = -INFINITY;
    }
}

void kn_merge_normalized(size_t d, float *o1, float *lse1, const float *o2, float lse2)
{
    /* A normalised pair is the partial (m = LSE, l = 1, o = O); reuse the one operator. */
    float m, a1, a2;
    kn_merge_coeffs(*lse1, lse2, &m, &a1, &a2);
    float l = a1 + a2;
    if (l > 0.0f) {
        for (size_t k = 0; k < d; k++) o1[k] = (a1 * o1[k] + a2 * o2[k]) / l;
        *lse1 = m + logf(l);
    } else {
        for (size_t k = 0; k < d; k++) o1[k] = 0.0f;
        *lse1 = -INFINITY;
    }
}
