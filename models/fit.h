/* fit.h - fitting the alpha-beta link model (and the kernel rate) to timings, with GSL
 * (cost-model.md, "Calibration"; docs/calibration.md).
 *
 * Timings span orders of magnitude (8 B to 256 MiB), so fits minimise the *relative* error:
 * t = alpha + beta m is fitted with weights 1/t^2 (gsl_fit_wlinear), or robustly with a bisquare
 * loss on the relative residuals (gsl_multifit_robust) so that outliers (a descheduled rank, a
 * page fault) do not move the line. When one line does not fit, the data are split into a
 * small- and a large-message regime at the break that minimises the total relative error.
 */
#ifndef ATTNSIM_FIT_H
#define ATTNSIM_FIT_H

#include <stddef.h>

typedef struct {
    double alpha;    /* intercept: seconds */
    double beta;     /* slope: seconds per byte (or per FLOP) */
    double r2;       /* weighted coefficient of determination */
    double rel_rms;  /* RMS of the relative residuals (t_fit - t) / t, over the points kept */
    size_t n;        /* points kept */
    size_t outliers; /* points rejected by the robust fit */
} lin_fit;

/* Fits t = alpha + beta x minimising relative error; robust when `robust`: a bisquare fit
 * (gsl_multifit_robust), outliers beyond 3.5 robust standard deviations of the relative residuals
 * (gsl_stats medians) dropped, and the weighted fit (gsl_fit_wlinear) of the rest.
 * Returns 0, or -1 when the data cannot determine a line (fewer than 2 distinct x). */
int fit_line(const double *x, const double *t, size_t n, int robust, lin_fit *out);

typedef struct {
    lin_fit single; /* one line over all points */
    lin_fit small;  /* x < break_x (equal to single without a break) */
    lin_fit large;  /* x >= break_x */
    double break_x; /* 0 without a break */
    int two_regimes;
} link_fit;

/* Fits a link: one robust line, or two regimes when that reduces the total squared relative
 * error at least twofold and the single line misses by more than 5 % RMS; a split whose small or
 * large part has a slope <= 0 (time falling with size: noise, not a protocol) is never taken.
 * Each regime spans at least 3 distinct sizes. Points must be sorted by x. Returns 0 or -1; the
 * caller checks single.beta > 0. */
int fit_link(const double *x, const double *t, size_t n, link_fit *out);

/* The fitted time at x. */
double link_fit_eval(const link_fit *f, double x);

/* A fit too poor to be used silently: R^2 below FIT_MIN_R2 or relative RMS above
 * FIT_MAX_REL_RMS (calibrate reports it, and marks it in the machine file and the HDF5 run). */
#define FIT_MIN_R2      0.9
#define FIT_MAX_REL_RMS 0.15
int fit_is_poor(const lin_fit *f);
/* A link fit is poor when a regime it uses is: the one line, or either of two regimes. */
int link_fit_is_poor(const link_fit *f);

#endif
