/* run.h - `attnsim run` across its files: the state of the command on every rank (run_env),
 * the checks before any work (run_setup.c), what each rank reports to rank 0 after a run
 * (rank_report), the --check against the reference (run_check.c), the steps of the overlapped
 * phases (run_steps.c) and rank 0's comparison, table and record of a run (run_report.c). */
#ifndef ATTNSIM_RUN_H
#define ATTNSIM_RUN_H

#include <stdint.h>

#include "cli.h"
#include "exec.h"
#include "h5out.h"
#include "machine.h"
#include "provenance.h"

typedef struct {
    attn_opts o;
    machine m;
    int rank, P;
    int32_t *node_of; /* node index of every rank (from the host names) */
    char *hosts;      /* host name of every rank, 64 bytes each */
    int nodes;
    uint64_t ranks_per_node; /* when the ranks are packed evenly in rank order, else 0 */
    int device;              /* --backend cuda: this rank's GPU */
    uint64_t *peers; /* rank 0, per run: bytes [P][P] then messages [P][P] sent rank -> peer */
    h5out *h;
    attn_provenance prov;
    double mem_rank, mem_root; /* host memory of a rank and of rank 0, at most over the sweep */
} run_env;

/* The checks before any work (run_setup.c). run_node_map: the node of every rank from the
 * host names (env's hosts, node_of, nodes), and ranks_per_node when the ranks are packed evenly
 * in rank order; collective. run_validate: every check of the command line that needs P,
 * identical on every rank (0, or 2 with the line said). run_check_memory: the host memory of
 * every point of the sweep, each rank's need against its address-space limit and each node's
 * ranks together against 80% of its memory (env's mem_rank, mem_root); 0, or 2 with the line
 * kept (cli_defer) for agree_outcome. */
void run_node_map(run_env *env);
int run_validate(run_env *env);
int run_check_memory(run_env *env);

/* Per-rank results sent to rank 0: counts and time of every phase. */
typedef struct {
    uint64_t v[AM_MAX_PHASES][4];
    uint64_t inter[AM_MAX_PHASES][2]; /* bytes and messages sent to ranks on other nodes */
    double t[AM_MAX_PHASES];          /* the rank's own time in the phase */
    double start[AM_MAX_PHASES];      /* when the rank entered the phase, from the start barrier */
    double end[AM_MAX_PHASES];        /* when it left the phase */
    /* overlapped phases, sums over the rank's steps: compute, exposed wait, transfers alone
     * (--overlap-probe; NAN without) */
    double ov[AM_MAX_PHASES][3];
    int nsteps[AM_MAX_PHASES];
} rank_report;

/* Rank 0: every rank's steps of each overlapped phase, [P][S] (S: the most steps of a rank;
 * missing steps NAN): compute, exposed, transfers alone. */
typedef struct {
    int S[AM_MAX_PHASES];
    double *a[AM_MAX_PHASES][3];
} step_tables;

/* The steps of the overlapped phases (run_steps.c), chosen: the reported repetition's, probe:
 * the --overlap-probe repetition's (NULL: none). Sums over the rank's steps into mine->ov and
 * mine->nsteps (transfers alone NAN without the probe); every rank's steps gathered into *t on
 * rank 0 (collective; NAN where a rank has fewer steps); run_steps_free releases them. */
void run_steps_sums(const comm_steps *chosen, const comm_steps *probe, int F, rank_report *mine);
void run_steps_gather(const comm_steps *chosen, const comm_steps *probe, int F, int rank, int P,
                      step_tables *t);
void run_steps_free(step_tables *t);

/* What --check found (rank 0). */
typedef struct {
    int checked, passed;
    double max_abs, max_rel; /* over the outputs (and gradients); rel: over max |reference| */
    const char *method;      /* what the outputs were compared with */
} run_check_result;

/* --check, collective: every rank sends its output shards to rank 0, which compares them with
 * the float64 reference of the whole problem (or, on the GPU and for large problems, a
 * single-GPU run of the CUDA kernel) and fills *r. */
void run_check(const exec_ctx *x, int bwd, run_check_result *r);

/* Rank 0: compares every rank's counts with the model, prints the run's table and verdict, the
 * hidden transfer time of each overlapped phase (predicted and measured, from the steps) and
 * the one-rate-per-tier model beside the pattern-aware one, and writes its record. Returns 1
 * when valid (counts equal, check passed if made). */
int run_report(run_env *env, const exec_ctx *x, const rank_report *all, const step_tables *steps,
               const run_check_result *chk);

#endif
