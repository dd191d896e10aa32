/* cmd_calibrate.c - `attnsim calibrate`: measure this machine and fit the model's parameters
 * (cost-model.md, "Calibration"; docs/calibration.md). The measurements are in sim/calibrate/
 * (calibrate.h); this file parses the options, runs them, fits and writes the results.
 *
 * Under mpirun, on the ranks it is given:
 *   links        per tier present (same node, different nodes, from the host names): a ring
 *                shift with every rank of the tier sending at once (what a ring step does), a
 *                ping-pong between two ranks (others idle), and across nodes a ring shift with
 *                one rank per node (how many ranks share a NIC); message sizes 8 B ...
 *                --max-message (calibrate.h: samples, repetitions, when sizes stop);
 *   collectives  ring all-gather on the grid's rows and columns, ring reduce-scatter (sum) on
 *                the rows, pairwise all-to-all: measured against what the fitted links predict;
 *   kernels      the FA2 forward and backward tiles of the backend, on every rank at once, over
 *                tile shapes, causal and not, per storage type: FLOP rate and per-call overhead;
 *   memory       copy bandwidth of every rank at once.
 * Fits (models/fit.h, GSL): alpha and beta per tier (robust, relative error, two regimes when
 * one line does not fit), R^2, residuals. Output: a terminal summary, a kind=calibration run
 * with every data point (--out), and a machine file (--machine-out, else printed) in which the
 * tiers that were not measured keep the base machine's (--machine) values and say so.
 */
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agree.h"
#include "calibrate.h"
#include "cli.h"
#include "commands.h"
#include "fail.h"
#include "kn_problem.h"
#include "outputs.h"
#include "predict.h"
#ifdef ATTNSIM_HAVE_CUDA
#include "exec_cuda.h"
#include "gpu_bind.h"
#endif

static const opt_id calibrate_opts[] = {OPT_BACKEND,     OPT_COMM,        OPT_GRID, OPT_MACHINE,
                                        OPT_MAX_MESSAGE, OPT_MACHINE_OUT, OPT_OUT,  OPT_END};

static const cli_command calibrate_cmd = {
    "calibrate",
    "measure links and kernels on this machine, fit the model's parameters",
    "Measures, on the ranks it is given (mpirun -n P), message times per link tier (ring\n"
    "shift and ping-pong, 8 B ... --max-message), ring collectives on the grid, the attention\n"
    "kernels' FLOP rate and memory bandwidth; fits alpha and beta per tier with GSL and writes a\n"
    "machine file (--machine-out; printed when not given) that --machine FILE reads back. Tiers\n"
    "not measured keep the values of the base machine (--machine) and the file says so.\n"
    "With --backend cuda every rank drives a GPU (as attnsim run does): links and collectives\n"
    "move GPU buffers with --comm (nccl, or mpi staged through host memory), the kernels are\n"
    "the CUDA FA2 kernels (f16, bf16), memory is a device copy. Defaults: --max-message 256M\n"
    "--machine dgx-h100 --backend cpu --comm mpi --grid: square where P is a square, else auto.",
    calibrate_opts,
    NULL,
    256};

/* The machine file: base machine with the measured values in place, each line commented. */
static void write_machine(FILE *f, const machine *base, const machine *m, const char *host,
                          const char *when, int nodes, const char *backend, const char *comm,
                          double nic_ratio)
{
    static const char *const tiers[2] = {"intra", "inter"};
    fprintf(f, "# Written by attnsim calibrate on %s (%s), %d node(s), backend %s, comm %s.\n",
            host, when, nodes, backend, comm);
    fprintf(f, "# Measured values say so; the others are kept from the base machine '%s'.\n",
            base->origin);
    fprintf(f, "name = %s\ngpu = %s\n", m->name, m->gpu);
    fprintf(f, "gpus_per_node = %llu   # measured: ranks per node\n",
            (unsigned long long)m->gpus_per_node);
    fprintf(f, "sms = %llu   # kept from %s\n", (unsigned long long)m->sms, base->name);
    fprintf(f, "smem_per_sm = %.17g B   # kept\nl2 = %.17g B   # kept\n", m->smem_per_sm_bytes,
            m->l2_bytes);
    fprintf(
        f,
        "hbm_bandwidth = %.17g B/s   # measured: memory copy (read + write), every rank at once\n",
        m->hbm_bytes_per_s);
    static const char *const dn[3] = {"f32", "f16", "bf16"};
    for (int d = 0; d < 3; d++)
        fprintf(f, "peak_%s = %.17g FLOP/s   # %s\n", dn[d], m->peak_flops[d],
                m->peak_flops[d] == base->peak_flops[d]
                    ? "kept (no kernel of this type measured)"
                    : "measured: FA2 tiles, every rank at once");
    fprintf(f,
            "sustained_fraction = 1   # the peaks above are the kernels' measured forward rates\n");
    for (int t = 0; t < 2; t++) {
        const char *note = !m->measured[t] ? "NOT MEASURED: kept"
                           : t == TIER_INTER && nic_ratio > 0
                               ? "measured: ring shift, one rank per node (one NIC), robust fit"
                               : "measured: ring shift, robust fit";
        fprintf(f, "%s_alpha = %.17g s   # %s\n", tiers[t], m->alpha_s[t], note);
        fprintf(f, "%s_bandwidth = %.17g B/s   # %s\n", tiers[t], m->bytes_per_s[t], note);
    }
    if (nic_ratio > 0)
        fprintf(f,
                "gpus_per_nic = %llu   # measured: inter-node ring shift with one rank per node is "
                "%.2fx as fast as with every rank\n",
                (unsigned long long)m->gpus_per_nic, nic_ratio);
    else
        fprintf(f, "gpus_per_nic = %llu   # kept\n", (unsigned long long)m->gpus_per_nic);
    char opt[1024];
    machine_format_optional(m, opt, sizeof opt);
    fputs(opt, f);
}

/* A tier's alpha for the machine file (which needs it positive): the fitted intercept, or, when
 * noise drove it to zero or below, the fastest exchange measured (at most the true latency plus
 * the transfer of the smallest message). */
static double tier_alpha(double fitted, const series *s)
{
    if (fitted > 0) return fitted;
    double t = s->time[0];
    for (size_t i = 1; i < s->n; i++) t = fmin(t, s->time[i]);
    return t;
}

/* Bandwidth of a series' largest messages: its large regime's, or its one line's. */
static double large_bandwidth(const series *s)
{
    return 1.0 / (s->fit.two_regimes ? s->fit.large.beta : s->fit.small.beta);
}

/* A tier's values in the machine file from a fitted series (nothing when it has no fit). */
static void machine_set_tier(machine *m, int t, const series *s)
{
    m->measured[t] = s->ok;
    if (!s->ok) return;
    m->alpha_s[t] = tier_alpha(s->fit.small.alpha, s);
    m->bytes_per_s[t] = 1.0 / s->fit.small.beta;
    m->break_bytes[t] = 0;
    if (s->fit.two_regimes) {
        m->break_bytes[t] = s->fit.break_x;
        m->alpha_large_s[t] = tier_alpha(s->fit.large.alpha, s);
        m->bytes_per_s_large[t] = 1.0 / s->fit.large.beta;
    }
}

/* Ranks sharing one NIC: the inter-node ring shift's large-message bandwidth with one rank per
 * node over that with every rank (*ratio), rounded to the divisor of the ranks per node nearest
 * on a log scale. 0 when the ratio is not measured (one node, or either series without a fit).
 */
static uint64_t nic_sharing(const series *all, const series *one, int per_node, double *ratio)
{
    *ratio = 0.0;
    if (!all->ok || !one->ok) return 0;
    *ratio = large_bandwidth(one) / large_bandwidth(all);
    uint64_t best = 1;
    for (int d = 1; d <= per_node; d++)
        if (per_node % d == 0 && fabs(log(*ratio / d)) < fabs(log(*ratio / (double)best)))
            best = (uint64_t)d;
    return best;
}

/* The fits the machine file uses that are too poor to use silently (models/fit.h: R^2 below
 * 0.9 or relative RMS above 15 %): reported on stdout, appended to the machine file and marked in
 * the kind=calibration run (poor_fit on each fit's group, poor_fits on the run). */
typedef struct {
    int n;
    char what[8][48];  /* the fit */
    char keys[8][48];  /* the machine-file keys that come from it */
    char group[8][48]; /* its group in the kind=calibration run */
    double r2[8], rel_rms[8];
} poor_fits;

static void poor_add(poor_fits *pf, const char *what, const char *keys, const char *group,
                     const lin_fit *f)
{
    if (pf->n == 8 || !fit_is_poor(f)) return;
    snprintf(pf->what[pf->n], sizeof pf->what[0], "%s", what);
    snprintf(pf->keys[pf->n], sizeof pf->keys[0], "%s", keys);
    snprintf(pf->group[pf->n], sizeof pf->group[0], "%s", group);
    pf->r2[pf->n] = f->r2, pf->rel_rms[pf->n] = f->rel_rms;
    pf->n++;
}

static void collect_poor_fits(poor_fits *pf, const series *const *tier, const char *const *groups,
                              const kernel_series *ks)
{
    static const char *const tiers[2] = {"intra", "inter"}, *const dn[3] = {"f32", "f16", "bf16"};
    memset(pf, 0, sizeof *pf);
    for (int t = 0; t < 2; t++) {
        if (!tier[t]->ok) continue;
        const link_fit *f = &tier[t]->fit;
        char what[48], keys[48], group[48];
        snprintf(group, sizeof group, "%s", groups[t]);
        snprintf(what, sizeof what, "%s-node ring shift%s", tiers[t],
                 f->two_regimes ? ", small messages" : "");
        snprintf(keys, sizeof keys, "%s_alpha, %s_bandwidth", tiers[t], tiers[t]);
        poor_add(pf, what, keys, group, f->two_regimes ? &f->small : &f->single);
        if (f->two_regimes) {
            snprintf(what, sizeof what, "%s-node ring shift, large messages", tiers[t]);
            snprintf(keys, sizeof keys, "%s_large_alpha, %s_large_bandwidth", tiers[t], tiers[t]);
            poor_add(pf, what, keys, group, &f->large);
        }
    }
    for (int d = 0; d < 3; d++) {
        if (!ks[d].ok) continue;
        char what[48], keys[48], group[48];
        snprintf(group, sizeof group, "kernels/%s", dn[d]);
        snprintf(what, sizeof what, "%s forward kernel", dn[d]);
        snprintf(keys, sizeof keys, "peak_%s", dn[d]);
        poor_add(pf, what, keys, group, &ks[d].fit);
        snprintf(what, sizeof what, "%s backward kernel", dn[d]);
        poor_add(pf, what, "backward_rate_ratio", group, &ks[d].bwd_fit);
    }
}

/* One line per poor fit, each starting with `prefix` ("# WARNING: " on stdout, "# " in the
 * machine file). */
static void print_poor_fits(FILE *f, const poor_fits *pf, const char *prefix)
{
    for (int i = 0; i < pf->n; i++)
        fprintf(f,
                "%sPOOR FIT: %s: R^2 %.4f, rel RMS %.1f %% (accepted: R^2 >= %.2g and rel RMS "
                "<= %.0f %%); used for %s\n",
                prefix, pf->what[i], pf->r2[i], 100 * pf->rel_rms[i], FIT_MIN_R2,
                100 * FIT_MAX_REL_RMS, pf->keys[i]);
}

/* 1 when v is within the range the machine file accepts for `key` (docs/machine.md). */
static int in_range(const char *key, double v, double *lo)
{
    double hi;
    if (machine_key_range(key, lo, &hi) != 0) return 0;
    return isfinite(v) && v >= *lo && v <= hi;
}

/* The machine file holds only values it reads back (docs/machine.md, "Ranges"): a fitted
 * latency below the range (under the timer's resolution, or a negative intercept) is written as
 * the smallest accepted value; any other fitted value out of range is not used (the base
 * machine's is kept, or the optional key left out). Says so on stdout. */
static void keep_in_range(machine *m, const machine *base)
{
    static const char *const tier[2] = {"intra", "inter"};
    static const char *const dn[3] = {"f32", "f16", "bf16"};
    double lo;
    char key[64];
    if (!in_range("hbm_bandwidth", m->hbm_bytes_per_s, &lo)) {
        printf("# note: memory copy %g B/s is outside the machine file's range; kept %s's\n",
               m->hbm_bytes_per_s, base->name);
        m->hbm_bytes_per_s = base->hbm_bytes_per_s;
    }
    for (int d = 0; d < 3; d++) {
        snprintf(key, sizeof key, "peak_%s", dn[d]);
        if (in_range(key, m->peak_flops[d], &lo)) continue;
        printf("# note: %s rate %g FLOP/s is outside the machine file's range; kept %s's\n", dn[d],
               m->peak_flops[d], base->name);
        m->peak_flops[d] = base->peak_flops[d];
    }
    for (int t = 0; t < 2; t++) {
        if (!m->measured[t]) continue;
        double *alphas[2] = {&m->alpha_s[t], &m->alpha_large_s[t]};
        for (int a = 0; a < (m->break_bytes[t] > 0 ? 2 : 1); a++) {
            snprintf(key, sizeof key, "%s_alpha", tier[t]);
            if (!in_range(key, *alphas[a], &lo) && isfinite(*alphas[a]) && *alphas[a] < lo) {
                printf("# note: %s-node latency fit %g s is below the timer's resolution; "
                       "written as %g s, the smallest accepted\n",
                       tier[t], *alphas[a], lo);
                *alphas[a] = lo;
            }
        }
        snprintf(key, sizeof key, "%s_alpha", tier[t]);
        int ok = in_range(key, m->alpha_s[t], &lo);
        snprintf(key, sizeof key, "%s_bandwidth", tier[t]);
        ok &= in_range(key, m->bytes_per_s[t], &lo);
        if (!ok) {
            printf("# note: the %s-node fit (%g s, %g B/s) is outside the machine file's range; "
                   "the tier is kept from %s and marked NOT MEASURED\n",
                   tier[t], m->alpha_s[t], m->bytes_per_s[t], base->name);
            m->measured[t] = 0;
            m->alpha_s[t] = base->alpha_s[t], m->bytes_per_s[t] = base->bytes_per_s[t];
            m->break_bytes[t] = 0;
            continue;
        }
        if (m->break_bytes[t] > 0) {
            snprintf(key, sizeof key, "%s_break", tier[t]);
            ok = in_range(key, m->break_bytes[t], &lo);
            snprintf(key, sizeof key, "%s_large_alpha", tier[t]);
            ok &= in_range(key, m->alpha_large_s[t], &lo);
            snprintf(key, sizeof key, "%s_large_bandwidth", tier[t]);
            ok &= in_range(key, m->bytes_per_s_large[t], &lo);
            if (!ok) {
                printf("# note: the %s-node large-message regime is outside the machine file's "
                       "range; one regime is written\n",
                       tier[t]);
                m->break_bytes[t] = 0;
            }
        }
    }
    if (m->kernel_overhead_s > 0 && !in_range("kernel_overhead", m->kernel_overhead_s, &lo)) {
        printf("# note: kernel overhead %g s is outside the machine file's range; left out\n",
               m->kernel_overhead_s);
        m->kernel_overhead_s = 0;
    }
    if (!in_range("backward_rate_ratio", m->backward_rate_ratio, &lo)) {
        printf("# note: backward rate ratio %g is outside the machine file's range; left out\n",
               m->backward_rate_ratio);
        m->backward_rate_ratio = 1.0;
    }
}

int cmd_calibrate(int argc, char **argv, int full_argc, char **full_argv)
{
    int init = 0;
    MPICALL(MPI_Initialized(&init));
    if (!init) MPICALL(MPI_Init(&full_argc, &full_argv));
    cal_env e;
    memset(&e, 0, sizeof e);
    MPICALL(MPI_Comm_rank(MPI_COMM_WORLD, &e.rank));
    MPICALL(MPI_Comm_size(MPI_COMM_WORLD, &e.P));
    MPICALL(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    attn_fail_set_rank(e.rank);
    cli_set_root(e.rank == 0);
    cli_defer(1); /* until the ranks have compared what they parsed */
    attn_opts o;
    memset(&o, 0, sizeof o);
    o.machine = "dgx-h100";
    o.max_message = 256u << 20;
    int rc = cli_parse(&calibrate_cmd, argc, argv, &o);
    rc = agree_options(&o, rc, MPI_COMM_WORLD); /* the same answer on every rank */
    if (rc) { /* every rank leaves here, whatever subcommand it runs */
        MPI_Finalize();
        return rc == 1 ? 0 : rc;
    }
    rc = cli_check_outputs(&o); /* rank 0 */
    machine base;
    char err[600];
#ifndef ATTNSIM_HAVE_CUDA
    if (rc == 0 && o.backend != BACKEND_CPU)
        rc = cli_error(&o, "--backend",
                       "'cuda': this build has no CUDA (configure with nvcc present); accepted: "
                       "cpu");
#endif
    if (rc == 0 && o.comm == COMM_NCCL && o.backend != BACKEND_CUDA)
        rc = cli_error(&o, "--comm",
                       "'nccl' needs --backend cuda; accepted with --backend cpu: mpi");
#ifndef ATTNSIM_HAVE_NCCL
    if (rc == 0 && o.comm == COMM_NCCL)
        rc = cli_error(&o, "--comm", "'nccl': this build has no NCCL; accepted: mpi");
#endif
    if (rc == 0 && e.rank == 0 && machine_load(o.machine, &base, err, sizeof err))
        rc = cli_error(&o, "--machine", "%s", err);
    am_config grid = {ALGO_A2D_NO,
                      LAYOUT_CONTIGUOUS,
                      AM_FWD,
                      (uint64_t)e.P,
                      1,
                      (uint64_t)e.P,
                      (uint64_t)e.P,
                      1,
                      1,
                      1,
                      8,
                      0,
                      0};
    if (rc == 0 && !o.grid.is_auto && o.grid.rows && o.grid.rows * o.grid.cols != (uint64_t)e.P)
        rc = cli_error(&o, "--grid",
                       "%llux%llu has %llu devices but the job has P = %d ranks; "
                       "accepted: RxC with R C = P, or auto",
                       (unsigned long long)o.grid.rows, (unsigned long long)o.grid.cols,
                       (unsigned long long)(o.grid.rows * o.grid.cols), e.P);
    MPICALL(MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (rc) {
        MPI_Finalize();
        return rc == 1 ? 0 : rc;
    }
#ifdef ATTNSIM_HAVE_CUDA
    if (o.backend == BACKEND_CUDA) { /* collective: the same answer on every rank */
        int device;
        rc = gpu_bind(&o, e.rank, e.P, &device);
        if (rc) {
            MPI_Finalize();
            return rc;
        }
    }
#endif
    MPICALL(MPI_Bcast(&base, (int)sizeof base, MPI_BYTE, 0, MPI_COMM_WORLD));
    am_grid_request req = {o.grid.is_auto ? 0 : o.grid.rows, o.grid.cols,
                           o.grid.is_auto || (!o.grid.rows && !am_square_side((uint64_t)e.P)), 0,
                           0};
    am_choose_grid(&grid, &base, &req);

    /* nodes from the host names */
    char host[64] = "", *hosts = kn_xmalloc((size_t)e.P * 64, "hosts");
    gethostname(host, sizeof host - 1);
    MPICALL(MPI_Allgather(host, 64, MPI_CHAR, hosts, 64, MPI_CHAR, MPI_COMM_WORLD));
    e.node_of = kn_xmalloc((size_t)e.P * sizeof(int), "nodes");
    e.local_of = kn_xmalloc((size_t)e.P * sizeof(int), "nodes");
    e.per_node = kn_xcalloc((size_t)e.P, sizeof(int), "nodes");
    for (int r = 0; r < e.P; r++) {
        e.node_of[r] = -1;
        for (int q = 0; q < r; q++)
            if (!strcmp(hosts + 64 * q, hosts + 64 * r)) e.node_of[r] = e.node_of[q];
        if (e.node_of[r] < 0) e.node_of[r] = e.nodes++;
        e.local_of[r] = e.per_node[e.node_of[r]]++;
    }
    e.dev = &exec_dev_cpu;
    comm_mode mode = COMM_HOST;
    void *stream = NULL;
    char gpu_name[64] = "";
#ifdef ATTNSIM_HAVE_CUDA
    if (o.backend == BACKEND_CUDA) {
        e.dev = &exec_dev_cuda, e.cuda = 1;
        mode = o.comm == COMM_NCCL ? COMM_DEV_NCCL : COMM_STAGED;
        stream = exec_cuda_stream();
        exec_cuda_device_name(gpu_name, sizeof gpu_name);
    }
#endif
    const char *bname = cli_backend_names[o.backend], *cname = cli_comm_names[o.comm];
    comm_init(&e.comm, &grid, MPI_COMM_WORLD, mode, stream, e.dev->alloc, e.dev->release);
    e.comm.recording = 0;
    attn_provenance prov;
    if (e.rank == 0) {
        prov_init(&prov, full_argc, full_argv);
        printf("# attnsim calibrate: %d ranks on %d node(s), backend %s%s%s, comm %s; messages "
               "8 B ... %llu B; grid %llux%llu\n",
               e.P, e.nodes, bname, e.cuda ? " on " : "", gpu_name, cname,
               (unsigned long long)o.max_message, (unsigned long long)grid.rows,
               (unsigned long long)grid.cols);
        fflush(stdout);
    }
    double t_start = MPI_Wtime();

    series shift[2], pp[2], nic;
    for (int t = 0; t < 2; t++) {
        shift[t] = measure_link(&e, t, LINK_SHIFT, o.max_message);
        pp[t] = measure_link(&e, t, LINK_PINGPONG, o.max_message);
    }
    nic = measure_link(&e, TIER_INTER, LINK_SHIFT_NIC, o.max_message);
    kernel_series ks[3];
    for (int d = 0; d < 3; d++) ks[d] = measure_kernels(&e, (kn_dtype)d);
    double copy_bps = measure_copy(&e);
    /* the groups Attention2D's phases use (models/algo_a2d.c): all-gathers on rows and columns,
     * reduce-scatters on rows (partial O, dQ) and columns (dK, dV); Ulysses' all-to-all */
    enum { NCOLL = 5 };
    static const coll_def colls[NCOLL] = {{"allgather_row", AM_COMM_ROW, PAT_ALLGATHER},
                                          {"allgather_col", AM_COMM_COL, PAT_ALLGATHER},
                                          {"reduce_scatter_row", AM_COMM_ROW, PAT_REDUCE_SCATTER},
                                          {"reduce_scatter_col", AM_COMM_COL, PAT_REDUCE_SCATTER},
                                          {"alltoall_world", AM_COMM_WORLD, PAT_ALLTOALL}};
    double coll_t[NCOLL][8], coll_bytes[8];
    int ncb = 0;
    for (uint64_t b = 1024;
         b <= (o.max_message < (4u << 20) ? o.max_message : (4u << 20)) && ncb < 8; b *= 4)
        coll_bytes[ncb++] = (double)b;
    for (int c = 0; c < NCOLL; c++)
        for (int k = 0; k < ncb; k++)
            coll_t[c][k] = coll_time(&e, &colls[c], (size_t)coll_bytes[k]);
    double took = MPI_Wtime() - t_start;

    int rc_out = 0;
    if (e.rank == 0) {
        machine m = base;
        snprintf(m.name, sizeof m.name, "calibrated-%.40s", host);
        if (e.cuda)
            snprintf(m.gpu, sizeof m.gpu, "%s (attnsim backend cuda)", gpu_name);
        else
            snprintf(m.gpu, sizeof m.gpu, "cpu rank (attnsim backend cpu)");
        int most = 0;
        for (int n = 0; n < e.nodes; n++) most = e.per_node[n] > most ? e.per_node[n] : most;
        m.gpus_per_node = (uint64_t)most;
        m.hbm_bytes_per_s = copy_bps;
        m.sustained_fraction = 1.0;
        double overheads[6], ratios[3];
        size_t nk = 0;
        for (int d = 0; d < 3; d++) { /* medians over the storage types measured */
            if (!ks[d].ok) continue;
            m.peak_flops[d] = 1.0 / ks[d].fit.beta;
            overheads[2 * nk] = ks[d].fit.alpha;
            overheads[2 * nk + 1] = ks[d].bwd_fit.alpha;
            ratios[nk++] = ks[d].fit.beta / ks[d].bwd_fit.beta;
        }
        if (nk) {
            gsl_sort(overheads, 1, 2 * nk);
            gsl_sort(ratios, 1, nk);
            m.kernel_overhead_s = gsl_stats_median_from_sorted_data(overheads, 1, 2 * nk);
            m.backward_rate_ratio = gsl_stats_median_from_sorted_data(ratios, 1, nk);
        }
        m.calibrated = 1;
        /* across nodes, the tier is the NIC itself: the ring shift with one rank per node (the
         * model divides its bandwidth among the ranks that cross at once, gpus_per_nic of them
         * per NIC: how much slower the shift of every rank is) */
        double nic_ratio;
        uint64_t per_nic = nic_sharing(&shift[TIER_INTER], &nic, most, &nic_ratio);
        if (per_nic) m.gpus_per_nic = per_nic;
        const series *tier[2] = {&shift[TIER_INTRA], per_nic ? &nic : &shift[TIER_INTER]};
        static const char *const tier_group[2][2] = {
            {"links/intra/ring_shift", "links/inter/ring_shift"},
            {"links/intra/ring_shift", "links/inter/ring_shift_nic"}};
        const char *const *groups = tier_group[per_nic ? 1 : 0];
        for (int t = 0; t < 2; t++) machine_set_tier(&m, t, tier[t]);
        keep_in_range(&m, &base);
        /* tables: units in the column names, numbers in the cells, '#' lines around them */
        printf("# links: t(m) = alpha + m / bandwidth; a sample is the median of its exchanges, "
               "the robust fit (relative error) goes through the quietest of %d samples per size; "
               "a row per regime, from its first message size; fit: ok, or POOR (R^2 < %.2g or "
               "rel RMS > %.0f %%)\n",
               LINK_SAMPLES, FIT_MIN_R2, 100 * FIT_MAX_REL_RMS);
        print_series_header();
        print_series("intra_ring_shift", &shift[0]);
        print_series("intra_ping_pong", &pp[0]);
        print_series("inter_ring_shift", &shift[1]);
        print_series("inter_ping_pong", &pp[1]);
        print_series("inter_shift_1_per_node", &nic);
        if (per_nic)
            printf("# NIC: one rank per node %.2fx as fast as every rank: gpus_per_nic %llu; the "
                   "inter-node tier is the one-rank-per-node shift: %.4f GB/s fitted for large "
                   "messages, %.4f GB/s at its largest sizes (up to %.0f B)\n",
                   nic_ratio, (unsigned long long)per_nic, 1e-9 * large_bandwidth(&nic),
                   1e-9 * nic.largest_rate, nic.bytes[nic.n - 1]);
        if (!shift[1].ok)
            printf("# inter-node tier NOT MEASURED (one node): the machine file keeps %s's values "
                   "and says so; predictions across nodes with it are warned about\n",
                   base.name);
        printf("# kernels: FA2 forward and backward, %s, causal and not; t = overhead + FLOPs / "
               "rate\n",
               e.cuda ? "CUDA kernels on 1k..8k tokens, 8 heads, d = 128"
                      : "tiles 64..512, d = 64");
        printf("# %-5s %-8s %12s %12s %7s %11s %s\n", "dtype", "pass", "rate_GFLOPs", "overhead_us",
               "r2", "rel_rms_pct", "fit");
        static const char *const dn[3] = {"f32", "f16", "bf16"};
        for (int d = 0; d < 3; d++) {
            if (!ks[d].n) {
                printf("# %s: not measured (no kernel of this type on this backend)\n", dn[d]);
                continue;
            }
            const lin_fit *fits[2] = {&ks[d].fit, &ks[d].bwd_fit};
            for (int b = 0; b < 2; b++)
                printf("  %-5s %-8s %12.3f %12.2f %7.4f %11.1f %s\n", dn[d],
                       b ? "backward" : "forward", ks[d].ok ? 1e-9 / fits[b]->beta : 0.0,
                       fits[b]->alpha * 1e6, fits[b]->r2, 100 * fits[b]->rel_rms,
                       fit_is_poor(fits[b]) ? "POOR" : "ok");
        }
        printf("# machine file: forward rates as peaks, backward_rate_ratio %.3f, kernel_overhead "
               "%.2f us (medians)\n",
               m.backward_rate_ratio, m.kernel_overhead_s * 1e6);
        printf("# memory copy %.2f GB/s per rank (read + write), every rank at once%s\n",
               copy_bps * 1e-9, e.cuda ? " (device to device)" : "");
        printf("# ring collectives on the %llux%llu grid: error of (g-1)(alpha + m / bandwidth) "
               "of the fitted %s ring shift against the measured time, per chunk size ('-': a "
               "group of one rank moves nothing)\n",
               (unsigned long long)grid.rows, (unsigned long long)grid.cols,
               e.nodes > 1 ? "inter-node" : "intra-node");
        printf("# %-19s %5s", "collective", "group");
        for (int k = 0; k < ncb; k++) {
            char h[32];
            snprintf(h, sizeof h, "err_pct_%.0fB", coll_bytes[k]);
            printf(" %15s", h);
        }
        printf("\n");
        const int gsize[NCOLL] = {(int)grid.cols, (int)grid.rows, (int)grid.cols, (int)grid.rows,
                                  e.P};
        for (int c = 0; c < NCOLL; c++) {
            printf("  %-19s %5d", colls[c].name, gsize[c]);
            for (int k = 0; k < ncb; k++) {
                double pred = (gsize[c] - 1) * machine_message_s(&m, TIER_INTRA, coll_bytes[k], 1);
                if (e.nodes > 1)
                    pred = (gsize[c] - 1) * machine_message_s(&m, TIER_INTER, coll_bytes[k], 1);
                if (gsize[c] < 2)
                    printf(" %15s", "-");
                else
                    printf(" %15.0f", 100 * (pred - coll_t[c][k]) / coll_t[c][k]);
            }
            printf("\n");
        }
        printf("# calibration took %.1f s\n", took);
        poor_fits pf;
        collect_poor_fits(&pf, tier, groups, ks);
        if (pf.n) {
            print_poor_fits(stdout, &pf, "# WARNING: ");
            printf("# WARNING: %d poor fit%s: predictions with this machine file can miss by as "
                   "much (they are marked in it); calibrate on an idle machine, at most one rank "
                   "per core\n",
                   pf.n, pf.n > 1 ? "s" : "");
        }

        char when[32];
        prov_utc_now(when, sizeof when);
        /* the machine file's text, for --machine-out (or stdout) and the run's machine_file */
        char *mtext = NULL;
        size_t mlen = 0;
        FILE *mf = open_memstream(&mtext, &mlen);
        if (!mf) attn_fail("open_memstream", __FILE__, __LINE__, "%s", strerror(errno));
        write_machine(mf, &base, &m, host, when, e.nodes, bname, cname, nic_ratio);
        print_poor_fits(mf, &pf, "# ");
        if (fclose(mf) != 0) attn_fail("fclose", __FILE__, __LINE__, "%s", strerror(errno));
        char shown[4200];
        if (o.machine_out) {
            outputs_write_text(o.machine_out, mtext);
            outputs_display(o.machine_out, shown, sizeof shown);
            printf("# wrote the machine file %s (use --machine %s)\n", shown, shown);
        } else {
            printf("# machine file (save it and use --machine FILE):\n%s", mtext);
        }
        if (o.out) {
            e.h = h5out_open(o.out, &prov);
            int64_t id;
            hid_t g = h5out_run_begin(e.h, &id);
            h5_attr_str(g, "kind", "calibration");
            h5_attr_str(g, "algorithm", "calibrate");
            h5_attr_str(g, "pass", "-");
            h5_attr_i64(g, "P", e.P);
            h5_attr_i64(g, "nodes", e.nodes);
            h5_attr_i64(g, "grid_rows", (int64_t)grid.rows);
            h5_attr_i64(g, "grid_cols", (int64_t)grid.cols);
            h5_attr_str(g, "backend", bname);
            h5_attr_str(g, "comm", cname);
            if (e.cuda) h5_attr_str(g, "gpu", gpu_name);
            h5_attr_str(g, "machine", m.name);
            h5_attr_str(g, "base_machine", base.origin);
            h5_attr_f64(g, "duration_s", took);
            write_series(g, "links/intra/ring_shift", &shift[0]);
            write_series(g, "links/intra/ping_pong", &pp[0]);
            write_series(g, "links/inter/ring_shift", &shift[1]);
            write_series(g, "links/inter/ping_pong", &pp[1]);
            write_series(g, "links/inter/ring_shift_nic", &nic);
            h5_attr_i64(g, "gpus_per_nic", (int64_t)m.gpus_per_nic);
            h5_attr_f64(g, "nic_sharing_ratio", nic_ratio);
            for (int d = 0; d < 3; d++) {
                char p[96];
                hsize_t n = ks[d].n;
                if (!n) continue; /* not measured on this backend */
                snprintf(p, sizeof p, "kernels/%s/flops", dn[d]);
                h5_write(g, p, H5T_NATIVE_DOUBLE, 1, &n, ks[d].flops, "flop");
                snprintf(p, sizeof p, "kernels/%s/time_s", dn[d]);
                h5_write(g, p, H5T_NATIVE_DOUBLE, 1, &n, ks[d].time, "s");
                snprintf(p, sizeof p, "kernels/%s/tile_rows", dn[d]);
                h5_write(g, p, H5T_NATIVE_INT, 1, &n, ks[d].nq, "tokens");
                snprintf(p, sizeof p, "kernels/%s/forward", dn[d]);
                h5_write(g, p, H5T_NATIVE_INT, 1, &n, ks[d].fwd, NULL);
                snprintf(p, sizeof p, "kernels/%s/causal", dn[d]);
                h5_write(g, p, H5T_NATIVE_INT, 1, &n, ks[d].causal, NULL);
                snprintf(p, sizeof p, "kernels/%s", dn[d]);
                hid_t kg = H5CALL(H5Gopen2(g, p, H5P_DEFAULT));
                h5_attr_f64(kg, "rate_flop_per_s", ks[d].ok ? 1.0 / ks[d].fit.beta : 0.0);
                h5_attr_f64(kg, "overhead_s", ks[d].fit.alpha);
                h5_attr_f64(kg, "r2", ks[d].fit.r2);
                h5_attr_f64(kg, "rel_rms", ks[d].fit.rel_rms);
                h5_attr_f64(kg, "backward_rate_flop_per_s",
                            ks[d].ok ? 1.0 / ks[d].bwd_fit.beta : 0.0);
                h5_attr_f64(kg, "backward_r2", ks[d].bwd_fit.r2);
                h5_attr_f64(kg, "backward_rel_rms", ks[d].bwd_fit.rel_rms);
                H5CALL(H5Gclose(kg));
            }
            h5_attr_f64(g, "copy_bytes_per_s", copy_bps);
            for (int t = 0; t < 2; t++) { /* the large regime's RMS beside its R^2 */
                if (!tier[t]->ok || !tier[t]->fit.two_regimes) continue;
                hid_t lgid = H5CALL(H5Gopen2(g, groups[t], H5P_DEFAULT));
                h5_attr_f64(lgid, "large_rel_rms", tier[t]->fit.large.rel_rms);
                H5CALL(H5Gclose(lgid));
            }
            /* poor fits: poor_fit on each fit's group, and the list on the run */
            char list[8 * 48 * 2] = "";
            for (int i = 0; i < pf.n; i++) {
                hid_t fg = H5CALL(H5Gopen2(g, pf.group[i], H5P_DEFAULT));
                if (H5CALL(H5Aexists(fg, "poor_fit")) == 0) h5_attr_i64(fg, "poor_fit", 1);
                H5CALL(H5Gclose(fg));
                size_t len = strlen(list);
                snprintf(list + len, sizeof list - len, "%s%s", i ? "; " : "", pf.what[i]);
            }
            h5_attr_i64(g, "poor_fit_count", pf.n);
            h5_attr_str(g, "poor_fits", pf.n ? list : "none");
            for (int c = 0; c < NCOLL; c++) {
                char p[96];
                hsize_t n = (hsize_t)ncb;
                snprintf(p, sizeof p, "collectives/%s/bytes", colls[c].name);
                h5_write(g, p, H5T_NATIVE_DOUBLE, 1, &n, coll_bytes, "bytes");
                snprintf(p, sizeof p, "collectives/%s/time_s", colls[c].name);
                h5_write(g, p, H5T_NATIVE_DOUBLE, 1, &n, coll_t[c], "s");
            }
            h5_attr_str(g, "machine_file", mtext);
            h5_summary_row row;
            memset(&row, 0, sizeof row);
            snprintf(row.kind, sizeof row.kind, "calibration");
            snprintf(row.algorithm, sizeof row.algorithm, "calibrate");
            snprintf(row.backend, sizeof row.backend, "%s", bname);
            row.P = e.P, row.grid_rows = (int32_t)grid.rows, row.grid_cols = (int32_t)grid.cols;
            row.check_passed = -1;
            row.measured_time_s = took;
            row.predicted_time_s = NAN;
            row.measured_bytes_max = row.predicted_bytes_max = -1;
            h5out_run_commit(e.h, g, &row);
            h5out_close(e.h);
            printf("# wrote the kind=calibration run to %s\n",
                   outputs_display(o.out, shown, sizeof shown));
        }
        free(mtext);
        prov_free(&prov);
    }
    for (int t = 0; t < 2; t++) series_free(&shift[t]), series_free(&pp[t]);
    series_free(&nic);
    comm_free(&e.comm);
    free(hosts), free(e.node_of), free(e.local_of), free(e.per_node);
    MPICALL(MPI_Finalize());
    return rc_out;
}
