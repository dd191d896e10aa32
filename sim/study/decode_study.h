/* decode_study.h - the decode study of `attnsim kernels --decode` across its files: a problem
 * (kernel_decode.c builds it from the options, with its float64 reference), one run's result,
 * the check of a run's outputs, and the CUDA side (decode_cuda.c). */
#ifndef ATTNSIM_DECODE_STUDY_H
#define ATTNSIM_DECODE_STUDY_H

#include "cli.h"
#include "decode.h"
#include "kn_attn_decode.h"

/* The CPU has no co-resident CTAs: the schedules run with this many (an H100's 132 SMs x 2). */
#define CPU_SLOTS 264

typedef struct {
    kn_dec_plan plan;
    kn_dtype dt;
    int *lens;
    size_t n_cap;
    kn_decode_io io;
    double *ro, *rlse; /* float64 reference */
} dec_problem;

typedef struct {
    kn_dec_scheme scheme;
    long long slots, splits;
    double *times; /* reps, sorted after the run */
    double median;
    kn_counters counted; /* cpu */
    uint64_t pred_read, pred_written;
    double kv_bytes;
    int checked, check_passed;
    double max_abs_err, max_rel_err;
    kdm_prediction pred; /* cuda */
    int have_pred;
    kdm_params params;
} dec_result;

/* O against the reference (relative to max |O|, the storage type's tolerance) and LSE
 * (absolute 2e-3; -inf exactly where the reference has it); nothing NaN. Sets r's check. */
void decode_check_outputs(dec_problem *p, dec_result *r);

#ifdef ATTNSIM_HAVE_CUDA
/* The HBM read rate where SMs take chunks as they free (the ceiling) and of a grid of equal
 * shares, bytes per second. */
void decode_measure_reads(double *ceiling, double *equal_share);
/* The decode model's parameters for a plan's head group: one CTA's streaming rate and fixed
 * cost, a Lean host's fix-up cost per merged partial and its latency. */
void decode_measure_cta(const kn_dec_plan *pl, kn_dtype dt, double *rate, double *fixed,
                        double *fixup, double *fixup_latency);
/* One run of r->scheme on the GPU: checked, then timed (r->times, r->median), and predicted
 * from the measured parameters. */
void decode_run_cuda(dec_problem *p, const attn_opts *o, dec_result *r, double hbm, double cta_rate,
                     double fixed, double fixup, double fixup_latency);
#endif

#endif
