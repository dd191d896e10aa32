/* profile.h - implementation profiles (cost-model.md, "Time"; format in docs/profiles.md): how a
 * given implementation of the algorithms behaves on a machine, as data the time model reads,
 * so that users can model someone else's implementation (PyTorch context parallel, a paper's)
 * beside attnsim's own. A profile says, per algorithm (and for overlap per phase):
 *   overlap          how much of an overlapped step's transfer hides behind its compute:
 *                    `measured` (what attnsim calibrate measured on the machine; ideal where
 *                    it measured nothing), `ideal` (all of it: max(compute, transfer)), `off`
 *                    (none: compute + transfer), or a share in [0, 1];
 *   collectives      `ring` (point-to-point rings, a message per step, as attnsim runs them)
 *                    or `nccl` (one collective call: one latency, the steps pipelined, the
 *                    reduction fused into the transfer);
 *   staircase        `fused` (one kernel call per tile whatever its causal mask) or `split`
 *                    (a tile with a staircase mask runs as one call per step of the staircase,
 *                    each at staircase_efficiency of the machine's rate);
 *   link_fraction    the share of the machine's rate a pattern reaches (per pattern);
 *   compute_scale    the implementation's attention kernels' rate over the machine's (a
 *                    machine file gives one kernel's rate: its own, or attnsim's when calibrated);
 *   kernel_overhead  the fixed cost of one kernel call (else the machine's).
 * Plain-text files of `key[.ALGO[.PHASE]] = value` lines; presets in models/profiles/. */
#ifndef ATTNSIM_PROFILE_H
#define ATTNSIM_PROFILE_H

#include <stddef.h>

#include "algo.h"

#define PROF_MEASURED  (-1.0) /* overlap: the machine's measured share */
#define PROF_MAX_RULES 32
#define PROF_ALL       AM_NUM_ALGOS /* the index of "every algorithm" in per-algorithm arrays */

typedef struct {
    int algo;      /* am_algo, or PROF_ALL */
    int phase;     /* am_phase_id, or -1: every overlapped phase of algo */
    double hidden; /* PROF_MEASURED, or a share in [0, 1] */
} prof_overlap;

typedef enum { COLL_RING = 0, COLL_NCCL = 1 } prof_collectives;
typedef enum { STAIR_FUSED = 0, STAIR_SPLIT = 1 } prof_staircase;

typedef struct {
    char name[64];
    int n_overlap;
    prof_overlap overlap[PROF_MAX_RULES];
    /* per algorithm, index PROF_ALL for every algorithm; < 0: not set */
    int collectives[AM_NUM_ALGOS + 1];
    int staircase[AM_NUM_ALGOS + 1];
    double staircase_efficiency[AM_NUM_ALGOS + 1];
    double compute_scale[AM_NUM_ALGOS + 1];
    double link_fraction[AM_NUM_ALGOS + 1][AM_NUM_PATTERNS];
    double collective_alpha_s; /* latency of one collective call (nccl); < 0: the pattern's */
    double kernel_overhead_s;  /* < 0: the machine's */
    char origin[300];          /* "preset NAME", "default" or the file path */
} impl_profile;

/* attnsim's own behaviour, nothing set: overlap as measured, ring collectives, fused staircase
 * masks, the machine's rates and fixed costs. */
void profile_default(impl_profile *p);

/* Parses a profile. Returns 0, or -1 with one line in err: "FILE:LINE: key 'k': what is wrong;
 * accepted: ...". */
int profile_parse(const char *text, const char *filename, impl_profile *p, char *err,
                  size_t errlen);
/* A preset name (profile_preset_names) or a file path. */
int profile_load(const char *name_or_path, impl_profile *p, char *err, size_t errlen);
const char *const *profile_preset_names(void);
const char *profile_preset_text(const char *name);

/* The settings in profile syntax (round-trips through profile_parse). Returns the bytes (as
 * snprintf: more than n when cut). */
size_t profile_format(const impl_profile *p, char *buf, size_t n);

/* Resolved settings for algorithm a (and phase id): the most specific line wins (phase, then
 * algorithm, then every algorithm), else the default. */
double profile_overlap(const impl_profile *p, am_algo a, am_phase_id phase);
prof_collectives profile_collectives(const impl_profile *p, am_algo a);
prof_staircase profile_staircase(const impl_profile *p, am_algo a);
double profile_staircase_efficiency(const impl_profile *p, am_algo a);
double profile_compute_scale(const impl_profile *p, am_algo a);
double profile_link_fraction(const impl_profile *p, am_algo a, am_pattern pat);

#endif
