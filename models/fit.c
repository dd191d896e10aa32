/* fit.c - GSL fits of the link and kernel models (see fit.h). */
#include "fit.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_fit.h>
#include <gsl/gsl_multifit.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void quality(const double *x, const double *t, size_t n, lin_fit *f)
{
    double sw = 0, swt = 0, ss_res = 0, rel = 0;
    for (size_t i = 0; i < n; i++) {
        double w = 1.0 / (t[i] * t[i]);
        sw += w, swt += w * t[i];
    }
    double mean = swt / sw, ss_tot = 0;
    for (size_t i = 0; i < n; i++) {
        double w = 1.0 / (t[i] * t[i]), p = f->alpha + f->beta * x[i];
        ss_res += w * (t[i] - p) * (t[i] - p);
        ss_tot += w * (t[i] - mean) * (t[i] - mean);
        rel += (p - t[i]) * (p - t[i]) / (t[i] * t[i]);
    }
    f->r2 = ss_tot > 0 ? 1.0 - ss_res / ss_tot : 1.0;
    f->rel_rms = sqrt(rel / (double)n);
    f->n = n;
    f->outliers = 0;
}

static int weighted_line(const double *x, const double *t, size_t n, lin_fit *out)
{
    double *w = malloc(n * sizeof *w);
    for (size_t i = 0; i < n; i++) w[i] = 1.0 / (t[i] * t[i]);
    double c0, c1, c00, c01, c11, chisq;
    int rc = gsl_fit_wlinear(x, 1, w, 1, t, 1, n, &c0, &c1, &c00, &c01, &c11, &chisq);
    free(w);
    if (rc) return -1;
    out->alpha = c0, out->beta = c1;
    return 0;
}

/* Bisquare IRLS on the relative scale: 1 = alpha / t + beta x / t (no intercept). */
static int bisquare_line(const double *x, const double *t, size_t n, lin_fit *out)
{
    gsl_matrix *X = gsl_matrix_alloc(n, 2);
    gsl_vector *y = gsl_vector_alloc(n), *c = gsl_vector_alloc(2);
    gsl_matrix *cov = gsl_matrix_alloc(2, 2);
    for (size_t i = 0; i < n; i++) {
        gsl_matrix_set(X, i, 0, 1.0 / t[i]);
        gsl_matrix_set(X, i, 1, x[i] / t[i]);
        gsl_vector_set(y, i, 1.0);
    }
    gsl_multifit_robust_workspace *ws =
        gsl_multifit_robust_alloc(gsl_multifit_robust_bisquare, n, 2);
    int rc = gsl_multifit_robust(X, y, c, cov, ws);
    if (rc == 0 || rc == GSL_EMAXITER)
        out->alpha = gsl_vector_get(c, 0), out->beta = gsl_vector_get(c, 1), rc = 0;
    gsl_multifit_robust_free(ws);
    gsl_matrix_free(X), gsl_matrix_free(cov), gsl_vector_free(y), gsl_vector_free(c);
    return rc ? -1 : 0;
}

int fit_line(const double *x, const double *t, size_t n, int robust, lin_fit *out)
{
    size_t distinct = 0;
    for (size_t i = 1; i < n; i++) distinct |= x[i] != x[0];
    if (n < 2 || !distinct) return -1;
    gsl_set_error_handler_off();
    if (!robust || n < 6) {
        if (weighted_line(x, t, n, out)) return -1;
        quality(x, t, n, out);
        return 0;
    }
    /* Robust: a bisquare fit, then the points whose relative residual lies more than 3.5
     * robust standard deviations (1.4826 MAD) from the median are outliers; the line is the
     * weighted fit of the rest. */
    lin_fit first;
    if (bisquare_line(x, t, n, &first)) return -1;
    double *e = malloc(n * sizeof *e), *dev = malloc(n * sizeof *dev);
    for (size_t i = 0; i < n; i++) e[i] = (first.alpha + first.beta * x[i] - t[i]) / t[i];
    memcpy(dev, e, n * sizeof *e);
    gsl_sort(dev, 1, n);
    double med = gsl_stats_median_from_sorted_data(dev, 1, n);
    for (size_t i = 0; i < n; i++) dev[i] = fabs(e[i] - med);
    gsl_sort(dev, 1, n);
    double scale = 1.4826 * gsl_stats_median_from_sorted_data(dev, 1, n);
    double *xi = malloc(n * sizeof *xi), *ti = malloc(n * sizeof *ti);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(e[i] - med) <= 3.5 * scale || scale == 0.0) xi[k] = x[i], ti[k] = t[i], k++;
    int rc = -1;
    size_t distinct_in = 0;
    for (size_t i = 1; i < k; i++) distinct_in |= xi[i] != xi[0];
    if (k >= n / 2 && distinct_in && weighted_line(xi, ti, k, out) == 0) {
        quality(xi, ti, k, out);
        out->outliers = n - k;
        rc = 0;
    }
    free(e), free(dev), free(xi), free(ti);
    return rc;
}

/* Distinct values among the n sorted-by-size x. */
static size_t distinct(const double *x, size_t n)
{
    size_t c = n > 0;
    for (size_t i = 1; i < n; i++) c += x[i] != x[i - 1];
    return c;
}

static double sq_rel(const lin_fit *f, const double *x, const double *t, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double r = (f->alpha + f->beta * x[i] - t[i]) / t[i];
        s += r * r;
    }
    return s;
}

int fit_link(const double *x, const double *t, size_t n, link_fit *out)
{
    if (fit_line(x, t, n, 1, &out->single)) return -1;
    out->small = out->large = out->single;
    out->break_x = 0;
    out->two_regimes = 0;
    double best = sq_rel(&out->single, x, t, n);
    if (out->single.rel_rms <= 0.05) return 0;
    double single = best;
    for (size_t k = 4; k + 4 <= n; k++) {
        if (x[k] == x[k - 1]) continue; /* split between distinct sizes */
        /* each regime spans at least 3 distinct sizes: a line through 2 sizes (with repeated
         * samples) follows their noise, not a regime */
        if (distinct(x, k) < 3 || distinct(x + k, n - k) < 3) continue;
        lin_fit a, b;
        if (fit_line(x, t, k, 1, &a) || fit_line(x + k, t + k, n - k, 1, &b)) continue;
        if (a.beta <= 0 || b.beta <= 0) continue; /* time falling with size: noise, no regime */
        double cost = sq_rel(&a, x, t, k) + sq_rel(&b, x + k, t + k, n - k);
        if (cost < best && cost <= 0.5 * single) {
            best = cost;
            out->small = a, out->large = b;
            out->break_x = x[k];
            out->two_regimes = 1;
        }
    }
    return 0;
}

double link_fit_eval(const link_fit *f, double x)
{
    const lin_fit *l = f->two_regimes && x >= f->break_x ? &f->large : &f->small;
    return l->alpha + l->beta * x;
}

int fit_is_poor(const lin_fit *f)
{
    return !(f->r2 >= FIT_MIN_R2) || !(f->rel_rms <= FIT_MAX_REL_RMS);
}

int link_fit_is_poor(const link_fit *f)
{
    return f->two_regimes ? fit_is_poor(&f->small) || fit_is_poor(&f->large)
                          : fit_is_poor(&f->single);
}
