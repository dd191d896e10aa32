/* calibrate.h - the measurements of `attnsim calibrate` (sim/app/cmd_calibrate.c drives them
 * and writes the machine file; cost-model.md, "Calibration"; docs/calibration.md):
 *   links.c        message times per link tier (ring shift, ping-pong) and their alpha-beta fits;
 *   kernels.c      the attention kernels' FLOP rate and per-call overhead, memory copy rate;
 *   collectives.c  ring collectives on the grid's rows and columns, and the all-to-all;
 *   machine_out.c  the machine file written from them, its poor fits marked.
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

/* The FA2 forward and backward of the backend for storage type dt, every rank at once, over
 * tile shapes, causal and not; fitted as time = overhead + FLOPs / rate (k.ok: both fits hold).
 * Not measured (k.n == 0) where the backend has no kernel of that type. */
kernel_series measure_kernels(const cal_env *e, kn_dtype dt);
/* Memory copy rate, every rank at once: bytes read + written per second (slowest rank). */
double measure_copy(const cal_env *e);

/* ---- collectives (collectives.c) ----------------------------------------------------------- */

typedef struct {
    const char *name;
    am_comm comm;       /* AM_COMM_ROW, AM_COMM_COL, AM_COMM_WORLD */
    am_pattern pattern; /* PAT_ALLGATHER, PAT_REDUCE_SCATTER, PAT_ALLTOALL */
} coll_def;

/* Time of one collective with chunks of `chunk` bytes (slowest rank, best of 3). */
double coll_time(cal_env *e, const coll_def *cd, size_t chunk);

/* ---- the machine file (machine_out.c) ------------------------------------------------------ */

/* Writes m (the base machine with the measured values in place) with a comment per key;
 * nic_ratio > 0: the inter-node tier and gpus_per_nic come from the one-rank-per-node shift
 * (cal_nic_sharing's ratio, said in their comments). */
void cal_write_machine(FILE *f, const machine *base, const machine *m, const char *host,
                       const char *when, int nodes, const char *backend, const char *comm,
                       double nic_ratio);
/* Tier t's values in m from a fitted series (measured[t] = 0 when it has no fit). */
void cal_set_tier(machine *m, int t, const series *s);
/* Bandwidth of a series' largest messages: its large regime's, or its one line's. */
double cal_large_bandwidth(const series *s);
/* Ranks sharing one NIC: the inter-node ring shift's large-message bandwidth with one rank per
 * node (`one`) over that with every rank (`all`) in *ratio, rounded to the divisor of per_node
 * nearest on a log scale. 0 (and *ratio 0) when not measured: one node, or either series
 * without a fit. */
uint64_t cal_nic_sharing(const series *all, const series *one, int per_node, double *ratio);
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

#endif
