/* timing.c - clock and medians (see timing.h). */
#include "timing.h"

#include <stdlib.h>
#include <time.h>

double timing_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double timing_thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double timing_median(double *x, size_t n)
{
    qsort(x, n, sizeof *x, cmp_double);
    return x[n / 2];
}

size_t timing_median_index(const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t below = 0, equal_before = 0;
        for (size_t j = 0; j < n; j++) {
            below += x[j] < x[i];
            equal_before += x[j] == x[i] && j < i;
        }
        if (below + equal_before == n / 2) return i;
    }
    return 0;
}

double timing_min(const double *x, size_t n)
{
    double m = x[0];
    for (size_t i = 1; i < n; i++) m = x[i] < m ? x[i] : m;
    return m;
}
