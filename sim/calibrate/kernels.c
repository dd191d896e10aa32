/* kernels.c - the attention kernels' FLOP rate and per-call overhead, and the memory copy rate,
 * as calibrate measures them (calibrate.h). */
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"
#include "fail.h"
#include "kn_problem.h"
#include "timing.h"
#ifdef ATTNSIM_HAVE_CUDA
#include "dev_cuda.h"
#endif

/* One tile configuration on the CPU: the median of 3 samples, each the mean time per call over
 * calls repeated for at least CPU_SAMPLE_S. A sample that long spans several scheduler time
 * slices, so ranks that share a core (more ranks than cores) measure the rate they get in a run,
 * not a lucky slice of a whole core; the median, not the fastest, is what a run meets on a
 * machine with other load. */
#define CPU_SAMPLE_S 0.02
static double time_cpu_tile(kn_dtype dt, size_t n, size_t heads, size_t d, int causal, int fwd)
{
    kn_shape s = {1, heads, heads, n, n, d, causal, NULL, NULL};
    kn_problem p;
    kn_problem_init(&p, &s, dt, KN_NEED_FWD | (fwd ? 0 : KN_NEED_BWD), 3);
    double sample[3];
    for (int rep = 0; rep < 3; rep++) {
        double t0 = timing_now_s(), t = 0;
        int calls = 0;
        do {
            kn_counters ci = {0};
            if (fwd)
                kn_fa2_fwd(&s, 32768, &p.t, &ci);
            else
                kn_fa2_bwd(&s, 32768, &p.t, &ci);
            calls++;
            t = timing_now_s() - t0;
        } while (t < CPU_SAMPLE_S);
        sample[rep] = t / calls;
    }
    kn_problem_free(&p);
    gsl_sort(sample, 1, 3);
    return sample[1];
}

/* The FA2 forward and backward of the backend on every rank at once (as in a run), over tile
 * shapes, causal and not: CPU tiles of 64 ... 512 tokens, 4 heads (median of samples of at
 * least 20 ms); GPU problems of 1k ... 8k tokens, 8 heads (the CUDA kernels, timed with
 * events). The head dimension is the configured runs' (a kernel's rate per FLOP depends on it:
 * the softmax's work per query-key pair does not grow with d), else 64 on the CPU, 128 on the
 * GPU (calibrate_head_dim). */
size_t calibrate_head_dim(const cal_env *e)
{
    return e->head_dim ? e->head_dim : e->cuda ? 128 : 64;
}

kernel_series measure_kernels(const cal_env *e, kn_dtype dt)
{
    kernel_series k;
    memset(&k, 0, sizeof k);
    static const int cpu_sizes[] = {64, 128, 256, 512}, gpu_sizes[] = {1024, 2048, 4096, 8192};
    const int *sizes = e->cuda ? gpu_sizes : cpu_sizes;
    size_t heads = e->cuda ? 8 : 4, d = calibrate_head_dim(e);
    if (e->cuda && dt == KN_F32) return k; /* no f32 kernel on the GPU: not measured */
    for (size_t si = 0; si < 4; si++)
        for (int causal = 0; causal < 2; causal++)
            for (int fwd = 1; fwd >= 0; fwd--) {
                polite_barrier();
                double best = 0;
#ifdef ATTNSIM_HAVE_CUDA
                if (e->cuda)
                    best = dev_cuda_time_fa2((int)dt, heads, (size_t)sizes[si], d, causal, fwd, 3);
#endif
                if (!e->cuda) best = time_cpu_tile(dt, (size_t)sizes[si], heads, d, causal, fwd);
                MPICALL(MPI_Allreduce(MPI_IN_PLACE, &best, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
                /* FLOPs as the time model counts them (partition.h) */
                double n = (double)sizes[si], pairs = attn_tile_pairs(causal, n, n, 1);
                k.flops[k.n] = (double)attn_pair_flops(d, !fwd) * pairs * (double)heads;
                k.time[k.n] = best;
                k.nq[k.n] = sizes[si], k.fwd[k.n] = fwd, k.causal[k.n] = causal;
                k.n++;
            }
    for (int pass = 0; pass < 2; pass++) { /* pass 0 forward, 1 backward */
        double x[64], t[64];
        size_t n = 0;
        for (size_t i = 0; i < k.n; i++)
            if (k.fwd[i] == !pass) x[n] = k.flops[i], t[n] = k.time[i], n++;
        lin_fit *f = pass ? &k.bwd_fit : &k.fit;
        int ok = fit_line(x, t, n, 1, f) == 0 && f->beta > 0;
        if (ok && f->alpha < 0) { /* larger tiles run slower per FLOP: no overhead, the median
                                     rate */
            double rate[64];
            for (size_t i = 0; i < n; i++) rate[i] = t[i] / x[i];
            gsl_sort(rate, 1, n);
            f->beta = gsl_stats_median_from_sorted_data(rate, 1, n);
            f->alpha = 0.0;
            double rel = 0;
            for (size_t i = 0; i < n; i++) rel += pow((f->beta * x[i] - t[i]) / t[i], 2);
            f->rel_rms = sqrt(rel / (double)n);
        }
        k.ok = pass ? k.ok && ok : ok;
    }
    return k;
}

double measure_copy(const cal_env *e)
{
    size_t bytes = e->cuda ? (size_t)1 << 30 : (size_t)64 << 20;
    double best = 0;
    polite_barrier();
#ifdef ATTNSIM_HAVE_CUDA
    if (e->cuda) best = 2.0 * (double)bytes / dev_cuda_copy_rate(bytes); /* as a time */
#endif
    if (!e->cuda) {
        char *a = kn_xcalloc(bytes, 1, "copy buffer"), *b = kn_xcalloc(bytes, 1, "copy buffer");
        for (int rep = 0; rep < 4; rep++) {
            double t0 = timing_now_s();
            memcpy(b, a, bytes);
            double t = timing_now_s() - t0;
            best = rep == 0 || t < best ? t : best;
            a[rep] = b[rep + 1];
        }
        free(a), free(b);
    }
    MPICALL(MPI_Allreduce(MPI_IN_PLACE, &best, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    return 2.0 * (double)bytes / best; /* read + write */
}
