/* calibrate.h - the measurements of `attnsim calibrate` (sim/app/cmd_calibrate.c drives them
 * and writes the machine file; cost-model.md, "Calibration"; docs/calibration.md):
 *   links.c        message times per link tier (ring shift, ping-pong) and their alpha-beta fits;
 *   kernels.c      the attention kernels' FLOP rate and per-call overhead, memory copy rate;
 *   patterns.c     the communication patterns of the configured runs;
 *   pattern_fits.c their fits into pattern lines, their tables and records;
 *   overlap.c      how much of a transfer hides behind compute;
 *   machine_out.c  the machine file written from them, its poor fits marked;
 *   summary.c      the terminal summary: the tables of every measurement and fit;
 *   record.c       the kind=calibration run: every data point, the fits and the machine file.
 * Every measurement is collective over MPI_COMM_WORLD: all ranks call it and get the slowest
 * rank's time.
 */
#ifndef ATTNSIM_CALIBRATE_H
#define ATTNSIM_CALIBRATE_H

#include <mpi.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "comm.h"
#include "exec.h"
#include "fit.h"
#include "h5out.h"
#include "machine.h"

/* The ranks being calibrated: nodes from the host names; the comm layer (not recording: only
 * its communicators and rings); the device whose memory the buffers are in. */
typedef struct {
    int rank, P, nodes;
    int *node_of, *local_of, *per_node; /* node and local index of every rank; ranks per node */
    comm_ctx comm;                      /* not recording: only its communicators and rings */
    const exec_dev *dev;                /* where the buffers live: host, or this rank's GPU */
    int cuda;
    size_t head_dim; /* of the kernels measured: the configured runs' (0: 64 on the CPU, 128 on
                        the GPU) */
    h5out *h;
} cal_env;

/* Idle ranks wait without spinning (4 ranks share 2 cores in CI): an Ibarrier polled with
 * sleeps, so the measured ranks get the cores. */
void polite_barrier(void);

/* ---- links (links.c) ----------------------------------------------------------------------- */

typedef struct {
    size_t n;
    double *bytes, *time; /* per sample: size, median exchange time (slowest rank per exchange) */
    double *fastest;      /* per sample: the fastest exchange */
    double largest_rate;  /* bytes per second where the link dominates: the best of the three
                             largest sizes' quietest samples (the fit also weighs smaller sizes) */
    link_fit fit;
    int ok;
} series;

/* How the ranks of a tier exchange: a ring shift with every rank of the tier sending at once
 * (what a ring step does); a ping-pong of one pair, the others idle; a ring shift across nodes
 * with one rank per node (the NIC to itself; with LINK_SHIFT, how many ranks share it). */
typedef enum { LINK_SHIFT = 0, LINK_PINGPONG = 1, LINK_SHIFT_NIC = 2 } link_mode;
enum {
    LINK_SAMPLES = 4 /* samples per message size */
};
#define LINK_LONGEST_S 0.25 /* sizes stop after the first whose quietest sample takes longer */

/* Message times of one tier (TIER_INTRA or TIER_INTER) in one mode over sizes 8 B ...
 * max_bytes (doubling; stopping after the first size whose quietest sample takes longer than
 * LINK_LONGEST_S):
 * LINK_SAMPLES samples per size, each the median of enough timed exchanges for ~15 ms (3 ...
 * 400) after a warm-up; fitted through the quietest sample of each size (s.ok: a fit with a
 * positive slope). s.n == 0: the job has no such pair of ranks. */
series measure_link(const cal_env *e, int tier, link_mode mode, uint64_t max_bytes);
void series_free(series *s);
/* The ring-shift peers of this rank on a tier (-1: it sits out). */
void cal_tier_peers(const cal_env *e, int tier, int *to, int *from);
/* The samples, the fit and its residuals under `path` in run group g (nothing when !s->ok). */
void write_series(h5node *g, const char *path, const series *s);
/* The terminal summary of the series as a table: the header, then a row per regime of a fit
 * (a '#' line for a series not measured or not fitted). */
void print_series_header(void);
void print_series(const char *what, const series *s);
/* After the table: a '#' line for a series fitted in two regimes (the one line's RMS). */
void print_series_note(const char *what, const series *s);

/* ---- kernels (kernels.c) ------------------------------------------------------------------- */

typedef struct {
    size_t n;
    double flops[64], time[64];
    int nq[64], fwd[64], causal[64];
    lin_fit fit, bwd_fit; /* forward and backward tiles */
    int ok;
} kernel_series;

/* The head dimension of the kernels calibrate measures: the configured runs' (e->head_dim),
 * else 64 on the CPU, 128 on the GPU. */
size_t calibrate_head_dim(const cal_env *e);
/* The FA2 forward and backward of the backend for storage type dt, every rank at once, over
 * tile shapes, causal and not; fitted as time = overhead + FLOPs / rate (k.ok: both fits hold).
 * Not measured (k.n == 0) where the backend has no kernel of that type. */
kernel_series measure_kernels(const cal_env *e, kn_dtype dt);
/* Memory copy rate, every rank at once: bytes read + written per second (slowest rank). */
double measure_copy(const cal_env *e);

/* ---- patterns (patterns.c) ---------------------------------------------------------------- */

/* A pattern as a configuration's phases use it: the pattern (a return hop counts as a ring
 * shift), its communicator on that configuration's grid (a pairwise exchange: the phase's
 * partners), the group size, and the largest message the configured runs send with it; then
 * the measured time per step by message size (per call the slowest rank's time; each sample
 * the median of its calls). Fitted through the quietest sample of each size. */
typedef struct {
    am_pattern pattern;
    am_comm comm;
    const am_phase_desc *ph;
    am_config cfg;
    uint64_t max_bytes, g;
    int runs_largest; /* max_bytes is a run's largest message: measured to twice it */
    char name[160];
    int steps; /* steps per call: 1 (shift, pairwise), g - 1 (the rest) */
    size_t n;
    double *bytes, *time;
} pattern_meas;

/* The distinct patterns of the configurations' phases. Returns how many (at most max). */
int patterns_of(const am_config *cfgs, int ncfg, pattern_meas *out, int max);
/* Measures one: 8 B ... the largest message (by fours to 64 KiB, then by twos), every rank at
 * once, sampled as the links are on a smaller budget (PATTERN_SAMPLES medians of ~10 ms of
 * calls per size; sizes stop after a call of LINK_LONGEST_S). */
enum { PATTERN_SAMPLES = 3 };
void measure_pattern(cal_env *e, pattern_meas *pm);
void pattern_meas_free(pattern_meas *pm);

/* ---- pattern fits (pattern_fits.c) ------------------------------------------------------- */

/* A pattern line of the machine file: the measurements of one (tier, pattern, group size),
 * as time per step against the bytes of one flow (intra-node) or of the busiest NIC
 * (inter-node), fitted (fit_link); poor when R^2 < 0.9 or the relative RMS > 15 % (then it is
 * reported and not used). */
typedef struct {
    int tier;
    am_pattern pattern;
    uint64_t g;
    size_t n;
    double *x, *t;
    link_fit fit;
    int ok, poor;
    double r2, rel_rms;
    char why[96];
    char source[400];
} pattern_fit;

/* Fits the measured patterns with machine m's NIC sharing (gpus_per_nic); a reduce-scatter's
 * steps keep their combine (the model adds none where the machine has the line). Returns the
 * number of fits (at most max). */
int fit_patterns(const cal_env *e, pattern_meas *pm, int n, const machine *m, pattern_fit *out,
                 int max);
void pattern_fit_free(pattern_fit *pf);
link_rate pattern_fit_rate(const pattern_fit *pf);
/* The terminal tables: the patterns measured (of the configured runs, or of every algorithm),
 * then the pattern lines fitted (with the error of machine m's tier rate at the largest size)
 * and the poor fits after them. */
void print_patterns(const pattern_meas *pats, int npat, int configured);
void print_pattern_fits(const pattern_fit *fits, int nfit, const machine *m);
/* Their records in the kind=calibration run g: patterns/K/ and pattern_fits/LINE/. */
void write_patterns(h5node *g, const pattern_meas *pats, int npat);
void write_pattern_fits(h5node *g, const pattern_fit *fits, int nfit);

/* ---- overlap (overlap.c) ------------------------------------------------------------------- */

/* A ring step that computes while its transfer runs, per tier present: the compute alone, the
 * transfer alone and the two together at three transfer/compute ratios. hidden: the median
 * share of min(compute, transfer) hidden; ratio: the median compute time while the transfer
 * runs over its time alone. ok 0: the tier has no pair of ranks. */
typedef struct {
    int ok;
    double hidden, ratio;
    int n;
    double compute_s[3], transfer_s[3], step_s[3], compute_during_s[3], bytes[3];
} overlap_meas;
overlap_meas measure_overlap(cal_env *e, int tier, const series *shift, uint64_t max_bytes);
/* The terminal table of both tiers' steps and the medians; their records under overlap/TIER/
 * in the kind=calibration run g (tiers measured only). */
void print_overlap(const overlap_meas ovl[2]);
void write_overlap(h5node *g, const overlap_meas ovl[2]);

/* ---- the machine file (machine_out.c) ------------------------------------------------------ */

/* Writes m (the base machine with the measured values in place) with a comment per key;
 * nic_ratio > 0: the inter-node tier and gpus_per_nic come from the one-rank-per-node shift
 * (cal_nic_sharing's ratio, said in their comments); head_dim: the kernels' (said in the peaks'
 * comments); then the pattern lines of the fits, each
 * with its source and quality, the poor ones commented out with the reason (m's own pattern
 * lines are not written: they come from the fits). */
void cal_write_machine(FILE *f, const machine *base, const machine *m, const char *host,
                       const char *when, int nodes, const char *backend, const char *comm,
                       double nic_ratio, size_t head_dim, const pattern_fit *fits, int nfit);
/* Tier t's values in m from a fitted series (measured[t] = 0 when it has no fit). */
void cal_set_tier(machine *m, int t, const series *s);
/* Bandwidth of a series' largest messages: its large regime's, or its one line's. */
double cal_large_bandwidth(const series *s);
/* Ranks sharing one NIC: the inter-node ring shift's large-message bandwidth with one rank per
 * node (`one`) over that with every rank (`all`) in *ratio, rounded to the divisor of per_node
 * nearest on a log scale. 0 (and *ratio 0) when not measured: one node, or either series
 * without a fit. */
uint64_t cal_nic_sharing(const series *all, const series *one, int per_node, double *ratio);
/* 1 when the values of a pattern line are within the ranges of the tier keys of their kinds. */
int cal_link_in_range(const pattern_fit *pf);
/* Keeps the file to values it reads back: a fitted latency below the range becomes the
 * smallest accepted, other values out of range are the base machine's (or left out); says so
 * on stdout. */
void cal_keep_in_range(machine *m, const machine *base);
/* A tier's alpha for the machine file (which needs it positive): the fitted intercept, or, when
 * noise drove it to zero or below, the fastest exchange measured (at most the true latency plus
 * the transfer of the smallest message). */
double cal_tier_alpha(double fitted, const series *s);

/* The fits the machine file uses that are too poor to use silently (models/fit.h: R^2 below
 * FIT_MIN_R2 or relative RMS above FIT_MAX_REL_RMS): reported on stdout, appended to the machine
 * file and marked in the kind=calibration run (poor_fit on each fit's group, poor_fits on the
 * run). */
typedef struct {
    int n;
    char what[8][48];  /* the fit */
    char keys[8][48];  /* the machine-file keys that come from it */
    char group[8][48]; /* its group in the kind=calibration run */
    double r2[8], rel_rms[8];
} cal_poor_fits;

/* The poor fits among the series the machine file's tiers come from (tier[t], recorded in the
 * run under groups[t]) and the kernels of the three types. */
void cal_collect_poor_fits(cal_poor_fits *pf, const series *const *tier, const char *const *groups,
                           const kernel_series *ks);
/* One line per poor fit, each starting with `prefix` ("# WARNING: " on stdout, "# " in the
 * machine file). */
void cal_print_poor_fits(FILE *f, const cal_poor_fits *pf, const char *prefix);

/* ---- one calibration's results and its outputs (machine_out.c, summary.c, record.c) -------- */

enum { CAL_MAX_PATTERNS = 64 };

/* What one calibration measured and fitted: the terminal tables, the machine file and the
 * kind=calibration run are written from it. */
typedef struct {
    const char *backend, *comm; /* their names */
    char gpu[64];               /* the GPU's name (backend cuda) */
    uint64_t grid_rows, grid_cols;
    series shift[2], pp[2], nic; /* per tier: ring shift, ping-pong; across nodes, one rank per
                                    node */
    kernel_series ks[3];         /* per storage type */
    double copy_bps;             /* memory copy rate */
    overlap_meas ovl[2];
    pattern_meas *pats; /* CAL_MAX_PATTERNS of them */
    int npat, configured;
    double took; /* seconds the measurements took */
    /* fitted (rank 0) */
    pattern_fit fits[CAL_MAX_PATTERNS];
    int nfit;
    uint64_t per_nic; /* ranks sharing a NIC, 0 when not measured (cal_nic_sharing) */
    double nic_ratio;
    const series *tier[2];     /* the series the machine file's tiers come from */
    const char *const *groups; /* their groups in the run */
    cal_poor_fits pf;
} cal_results;

/* The calibrated machine *m (rank 0; machine_out.c): the base machine with the measured values
 * in place (host: in its name), the tiers, NIC sharing, overlap and pattern lines fitted into r
 * (fits outside the file's ranges marked poor; the poor fits collected in r->pf). */
void cal_fit_machine(const cal_env *e, const machine *base, const char *host, cal_results *r,
                     machine *m);
/* The machine file's text (machine_out.c; the caller frees it), its poor fits listed at the end:
 * for --machine-out (or stdout) and the run's machine_file attribute. */
char *cal_machine_text(const cal_env *e, const cal_results *r, const machine *m,
                       const machine *base, const char *host);
/* The terminal summary (summary.c): links, kernels, memory, overlap, patterns and their fits,
 * the time it took and the poor fits. */
void cal_print_summary(const cal_env *e, const cal_results *r, const machine *m,
                       const machine *base);
/* Appends the kind=calibration run (record.c) to the HDF5 file at path (rank 0): every data point
 * and fit of r, the machine m written from them (base: the machine it started from; mtext: the
 * machine file's text), and its summary row. */
void cal_write_record(cal_env *e, const char *path, const attn_provenance *prov,
                      double lock_timeout_s, const cal_results *r, const machine *m,
                      const machine *base, const char *mtext);

#endif
