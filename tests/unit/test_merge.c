/* test_merge.c - the merge operator (algorithms.md section 1): it reproduces a softmax computed
 * in one piece, is associative and commutative within rounding, handles -inf maxima, and a fully
 * masked row gives O = 0 and LSE = -inf, never NaN. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kn_merge.h"
#include "test_util.h"

#define D 8

typedef struct {
    float m, l, o[D];
} state;

static uint64_t rng = 12345;
static double urand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) * 0x1p-53;
}

/* Partial over keys [a, b) of fixed scores/values; an empty range is the empty state. */
static void partial(const float *s, const float (*v)[D], int a, int b, state *out)
{
    out->m = -INFINITY;
    out->l = 0.0f;
    memset(out->o, 0, sizeof out->o);
    for (int k = a; k < b; k++)
        if (s[k] > out->m) out->m = s[k];
    if (out->m == -INFINITY) return;
    for (int k = a; k < b; k++) {
        float p = s[k] == -INFINITY ? 0.0f : expf(s[k] - out->m);
        out->l += p;
        for (int x = 0; x < D; x++) out->o[x] += p * v[k][x];
    }
}

static void merge(state *a, const state *b)
{
    kn_merge_state(D, &a->m, &a->l, a->o, b->m, b->l, b->o);
}

static double final_diff(state a, state b)
{
    float la, lb;
    kn_state_finalize(D, a.m, a.l, a.o, &la);
    kn_state_finalize(D, b.m, b.l, b.o, &lb);
    double diff = 0.0;
    if (isinf(la) || isinf(lb))
        diff = (la == lb) ? 0.0 : INFINITY;
    else
        diff = fabs(la - lb);
    for (int x = 0; x < D; x++) diff = fmax(diff, fabs(a.o[x] - b.o[x]));
    return diff;
}

static int has_nan(const state *s)
{
    if (isnan(s->m) || isnan(s->l)) return 1;
    for (int x = 0; x < D; x++)
        if (isnan(s->o[x])) return 1;
    return 0;
}

int main(void)
{
    enum { NK = 40 };
    float s[NK], v[NK][D];
    for (int trial = 0; trial < 500; trial++) {
        double spread = trial % 3 == 0 ? 1.0 : (trial % 3 == 1 ? 30.0 : 300.0);
        for (int k = 0; k < NK; k++) {
            s[k] = (float)((urand() * 2 - 1) * spread);
            if (trial % 5 == 0 && urand() < 0.5) s[k] = -INFINITY; /* masked keys */
            for (int x = 0; x < D; x++) v[k][x] = (float)(urand() * 2 - 1);
        }
        int c1 = 1 + (int)(urand() * (NK - 3)), c2 = c1 + 1 + (int)(urand() * (NK - c1 - 2));
        state whole, a, b, c;
        partial(s, v, 0, NK, &whole);
        partial(s, v, 0, c1, &a);
        partial(s, v, c1, c2, &b);
        partial(s, v, c2, NK, &c);

        state ab_c = a, bc = b, a_bc = a, cb_a = c, tmp;
        merge(&ab_c, &b);
        merge(&ab_c, &c); /* (a.b).c */
        merge(&bc, &c);
        merge(&a_bc, &bc); /* a.(b.c) */
        merge(&cb_a, &b);
        merge(&cb_a, &a); /* (c.b).a: commuted */
        CHECK(final_diff(ab_c, whole) < 1e-5, "(a.b).c vs one piece: %g", final_diff(ab_c, whole));
        CHECK(final_diff(ab_c, a_bc) < 1e-5, "associativity: %g", final_diff(ab_c, a_bc));
        CHECK(final_diff(ab_c, cb_a) < 1e-5, "commutativity: %g", final_diff(ab_c, cb_a));
        CHECK(!has_nan(&ab_c) && !has_nan(&a_bc) && !has_nan(&cb_a), "NaN in merged state");

        /* the normalised form agrees with the unnormalised one */
        float oa[D], ob[D], lsea, lseb;
        memcpy(oa, a.o, sizeof oa);
        memcpy(ob, b.o, sizeof ob);
        kn_state_finalize(D, a.m, a.l, oa, &lsea);
        kn_state_finalize(D, b.m, b.l, ob, &lseb);
        kn_merge_normalized(D, oa, &lsea, ob, lseb);
        tmp = a;
        merge(&tmp, &b);
        float lt;
        kn_state_finalize(D, tmp.m, tmp.l, tmp.o, &lt);
        double dn = (isinf(lt) && isinf(lsea) && lt == lsea) ? 0.0 : fabs(lt - lsea);
        for (int x = 0; x < D; x++) dn = fmax(dn, fabs(tmp.o[x] - oa[x]));
        CHECK(dn < 1e-5, "normalised merge differs by %g", dn);
    }

    /* -inf maxima: merging with an empty (fully masked) partial changes nothing */
    state e = {-INFINITY, 0.0f, {0}}, x = {0.5f, 2.0f, {1, 2, 3, 4, 5, 6, 7, 8}}, y = x;
    merge(&y, &e);
    CHECK(y.m == x.m && y.l == x.l && memcmp(y.o, x.o, sizeof x.o) == 0, "x . empty != x");
    y = e;
    merge(&y, &x);
    CHECK(y.m == x.m && y.l == x.l && memcmp(y.o, x.o, sizeof x.o) == 0, "empty . x != x");

    /* fully masked row: empty . empty finalises to O = 0, LSE = -inf */
    state z = e;
    merge(&z, &e);
    float lse;
    kn_state_finalize(D, z.m, z.l, z.o, &lse);
    CHECK(!has_nan(&z) && lse == -INFINITY, "masked row: LSE %g", lse);
    for (int k = 0; k < D; k++) CHECK(z.o[k] == 0.0f, "masked row O[%d] = %g", k, z.o[k]);
    float o1[D] = {0}, o2[D] = {0}, l1 = -INFINITY;
    kn_merge_normalized(D, o1, &l1, o2, -INFINITY);
    CHECK(l1 == -INFINITY && o1[0] == 0.0f, "normalised masked merge");

    /* coefficients: both -inf, one -inf */
    float m, a1, a2;
    kn_merge_coeffs(-INFINITY, -INFINITY, &m, &a1, &a2);
    CHECK(m == -INFINITY && a1 == 0.0f && a2 == 0.0f, "coeffs(-inf, -inf)");
    kn_merge_coeffs(-INFINITY, 3.0f, &m, &a1, &a2);
    CHECK(m == 3.0f && a1 == 0.0f && a2 == 1.0f, "coeffs(-inf, 3)");
    kn_merge_coeffs(1.0f, 3.0f, &m, &a1, &a2);
    CHECK(m == 3.0f && fabsf(a1 - expf(-2.0f)) < 1e-7f && a2 == 1.0f, "coeffs(1, 3)");
    return test_finish("test_merge");
}
