/* test_fit.c - the GSL fits recover alpha and beta within 5 % from synthetic timings with noise
 * and outliers, find the break of a two-regime link, never fit a regime with a negative slope,
 * report a perfect line as R^2 = 1, and call a fit poor below R^2 0.9 or above 15 % relative
 * RMS. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fit.h"
#include "test_util.h"

static uint64_t rng = 7;
static double urand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) * 0x1p-53;
}

int main(void)
{
    enum { SIZES = 26, SAMPLES = 5 };
    double x[SIZES * SAMPLES], t[SIZES * SAMPLES];
    const double alphas[] = {2e-6, 5e-5, 1.1e-4}, betas[] = {1 / 5e9, 1 / 3.5e11, 1 / 2.5e10};
    for (int c = 0; c < 3; c++) {
        size_t n = 0;
        for (int s = 0; s < SIZES; s++)
            for (int k = 0; k < SAMPLES; k++) {
                double m = ldexp(8.0, s); /* 8 B ... 256 MiB */
                double clean = alphas[c] + betas[c] * m;
                double noise = 1.0 + 0.03 * (2 * urand() - 1);  /* +-3 % */
                if (urand() < 0.08) noise *= 1.5 + 3 * urand(); /* 8 % outliers, 1.5-4.5x slow */
                x[n] = m, t[n] = clean * noise;
                n++;
            }
        lin_fit plain, robust;
        CHECK(fit_line(x, t, n, 1, &robust) == 0, "robust fit failed");
        fit_line(x, t, n, 0, &plain);
        CHECK(fabs(robust.alpha / alphas[c] - 1) < 0.05 && fabs(robust.beta / betas[c] - 1) < 0.05,
              "case %d: robust alpha %g (true %g), beta %g (true %g)", c, robust.alpha, alphas[c],
              robust.beta, betas[c]);
        printf("  case %d: true alpha %.3g s, beta %.4g s/B; robust %.3g, %.4g; plain %.3g, %.4g\n",
               c, alphas[c], betas[c], robust.alpha, robust.beta, plain.alpha, plain.beta);
        link_fit lf;
        CHECK(fit_link(x, t, n, &lf) == 0 && !lf.two_regimes, "one regime expected (case %d)", c);
    }

    /* two regimes: a rendezvous protocol above 64 KiB (higher latency, better bandwidth) */
    size_t n = 0;
    for (int s = 0; s < SIZES; s++)
        for (int k = 0; k < 3; k++) {
            double m = ldexp(8.0, s);
            double clean = m < 65536 ? 1e-6 + m / 2e9 : 2e-5 + m / 8e9;
            x[n] = m, t[n] = clean * (1.0 + 0.01 * (2 * urand() - 1));
            n++;
        }
    link_fit lf;
    CHECK(fit_link(x, t, n, &lf) == 0, "two-regime fit failed");
    CHECK(lf.two_regimes && lf.break_x == 65536, "break at %g, two regimes %d", lf.break_x,
          lf.two_regimes);
    CHECK(fabs(lf.small.alpha / 1e-6 - 1) < 0.05 && fabs(lf.large.beta * 8e9 - 1) < 0.05,
          "regimes: small alpha %g, large beta %g", lf.small.alpha, lf.large.beta);
    CHECK(fabs(link_fit_eval(&lf, 1 << 20) / (2e-5 + 1048576 / 8e9) - 1) < 0.03, "evaluation");

    /* a link whose largest messages got faster (oversubscribed cores: seen on a 2-core CI
     * machine): no regime may have a negative slope, that is a negative bandwidth */
    n = 0;
    for (int s = 0; s < SIZES; s++)
        for (int k = 0; k < 3; k++) {
            double m = ldexp(8.0, s);
            double clean = m < (1 << 25) ? 1e-6 + m / 2e9 : 0.05 - m * 1e-10;
            x[n] = m, t[n] = clean * (1.0 + 0.01 * (2 * urand() - 1));
            n++;
        }
    CHECK(fit_link(x, t, n, &lf) == 0, "fit failed");
    CHECK(lf.small.beta > 0 && (!lf.two_regimes || lf.large.beta > 0),
          "a regime with a negative slope: two regimes %d, break %g, betas %g %g", lf.two_regimes,
          lf.break_x, lf.small.beta, lf.large.beta);

    /* a perfect line */
    double px[4] = {1, 2, 3, 4}, pt[4] = {3, 5, 7, 9};
    lin_fit p;
    CHECK(fit_line(px, pt, 4, 0, &p) == 0 && fabs(p.alpha - 1) < 1e-12 &&
              fabs(p.beta - 2) < 1e-12 && fabs(p.r2 - 1) < 1e-12 && p.rel_rms < 1e-12,
          "perfect line: %g %g r2 %g", p.alpha, p.beta, p.r2);
    double one[2] = {5, 5}, tt[2] = {1, 2};
    CHECK(fit_line(one, tt, 2, 0, &p) == -1, "a single x cannot determine a line");

    /* poor fits: R^2 < 0.9 or relative RMS > 15 % (and a fit without numbers) */
    CHECK(fit_line(px, pt, 4, 0, &p) == 0 && !fit_is_poor(&p), "a perfect line is not poor");
    lin_fit q = p;
    q.r2 = 0.5926, q.rel_rms = 0.510;
    CHECK(fit_is_poor(&q), "R^2 0.59, rel RMS 51 %% is poor");
    q.r2 = 0.95, q.rel_rms = 0.16;
    CHECK(fit_is_poor(&q), "rel RMS 16 %% is poor");
    q.r2 = 0.89, q.rel_rms = 0.05;
    CHECK(fit_is_poor(&q), "R^2 0.89 is poor");
    q.r2 = 0.9, q.rel_rms = 0.15;
    CHECK(!fit_is_poor(&q), "R^2 0.9 and rel RMS 15 %% are the limits, accepted");
    q.r2 = NAN;
    CHECK(fit_is_poor(&q), "a fit without R^2 is poor");
    /* noisy timings (a shared, oversubscribed machine): the fit says so */
    double nx[12], nt[12];
    for (int i = 0; i < 12; i++) {
        nx[i] = (double)(8 << i);
        nt[i] = (2e-6 + nx[i] / 5e9) * (i % 3 == 0 ? 3.0 : i % 3 == 1 ? 0.4 : 1.0);
    }
    CHECK(fit_line(nx, nt, 12, 0, &q) == 0 && fit_is_poor(&q), "noisy timings: r2 %g rel %g", q.r2,
          q.rel_rms);
    link_fit two;
    memset(&two, 0, sizeof two);
    two.single = two.small = two.large = p;
    CHECK(!link_fit_is_poor(&two), "a link of perfect lines is not poor");
    two.two_regimes = 1, two.large.rel_rms = 0.3;
    CHECK(link_fit_is_poor(&two), "a poor large-message regime makes the link poor");
    two.two_regimes = 0;
    CHECK(!link_fit_is_poor(&two), "without two regimes only the one line counts");
    return test_finish("test_fit");
}
