/* timing.h - how attnsim times things, in one place: a monotonic clock, the median of
 * repetitions, and (CUDA builds) CUDA events around launches on a stream and CUDA graphs of
 * many launches (OSU-style: warm-up, then short literal timed loops). */
#ifndef ATTNSIM_TIMING_H
#define ATTNSIM_TIMING_H

#include <stddef.h>
#include <stdint.h>

/* Seconds of a monotonic clock (CLOCK_MONOTONIC). */
double timing_now_s(void);
/* Seconds of CPU time the calling thread has used (CLOCK_THREAD_CPUTIME_ID). */
double timing_thread_cpu_s(void);

/* Sorts x[0..n) (n >= 1) and returns its median x[n / 2] (the upper middle when n is even). */
double timing_median(double *x, size_t n);
/* The index of the median of x[0..n) (the element of rank n / 2 in increasing order, the
 * first among equal values); x is not changed. */
size_t timing_median_index(const double *x, size_t n);
/* The smallest of x[0..n). */
double timing_min(const double *x, size_t n);

#ifdef ATTNSIM_HAVE_CUDA
/* One launch (or more) of the work being timed, queued on `stream` (a cudaStream_t); i counts
 * the calls. */
typedef void (*timing_launch_fn)(void *ctx, int i, void *stream);
/* `warmup` untimed calls, then `reps` calls each between two CUDA events on stream: times[r]
 * in seconds. */
void timing_cuda_events(timing_launch_fn fn, void *ctx, void *stream, int warmup, uint64_t reps,
                        double *times);
/* `calls` launches captured in one CUDA graph (after 2 warm-up calls outside it) on a stream of
 * its own, the graph replayed `reps` times between events: times[r] = seconds per call of
 * replay r. Returns the median per call. */
double timing_cuda_graph(timing_launch_fn fn, void *ctx, int calls, uint64_t reps, double *times);
#endif

#endif
