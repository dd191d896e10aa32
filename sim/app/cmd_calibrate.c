/* cmd_calibrate.c - `attnsim calibrate`: measure this machine and fit the model's parameters
 * (cost-model.md, "Calibration"; docs/calibration.md). The measurements are in sim/calibrate/
 * (calibrate.h), the kind=calibration run in sim/calibrate/record.c; this file parses the
 * options, runs the measurements, fits the machine, prints the tables and writes the outputs.
 *
 * Under mpirun, on the ranks it is given:
 *   links        per tier present (same node, different nodes, from the host names): a ring
 *                shift with every rank of the tier sending at once (what a ring step does), a
 *                ping-pong between two ranks (others idle), and across nodes a ring shift with
 *                one rank per node (how many ranks share a NIC); message sizes 8 B ...
 *                --max-message (calibrate.h: samples, repetitions, when sizes stop);
 *   patterns     every communication pattern the configured runs use (--algo, --seq, ... as
 *                `run` takes them; without --seq every algorithm on the grid), on the
 *                communicators and grids they use, every group at once, up to the largest
 *                message they send: ring shifts, pairwise exchanges, all-gathers and
 *                reduce-scatters on the grid's rows and columns, all-to-alls;
 *   overlap      a ring step that computes while its transfer runs, per tier;
 *   kernels      the FA2 forward and backward tiles of the backend, on every rank at once, over
 *                tile shapes, causal and not, per storage type: FLOP rate and per-call overhead;
 *   memory       copy bandwidth of every rank at once.
 * Fits (models/fit.h, GSL): alpha and beta per tier and per pattern (robust, relative error, two
 * regimes when one line does not fit), R^2, residuals; a pattern's fit with R^2 < 0.9 or a
 * relative RMS above 15 % is reported as poor and written as a comment, not used. Output: a
 * terminal summary, a kind=calibration run with every data point (--out), and a machine file
 * (--machine-out, else printed) in which the tiers that were not measured keep the base machine's
 * (--machine) values and say so.
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
#include "sweep.h"
#ifdef ATTNSIM_HAVE_CUDA
#include "dev_cuda.h"
#include "gpu_bind.h"
#endif

static const opt_id calibrate_opts[] = {OPT_BACKEND,      OPT_COMM,         OPT_GRID,  OPT_MACHINE,
                                        OPT_MAX_MESSAGE,  OPT_MACHINE_OUT,  OPT_OUT,   OPT_ALGO,
                                        OPT_SEQ,          OPT_BATCH,        OPT_HEADS, OPT_KV_HEADS,
                                        OPT_HEAD_DIM,     OPT_PASS,         OPT_DTYPE, OPT_LAYOUT,
                                        OPT_ULYSSES_SIZE, OPT_LOCK_TIMEOUT, OPT_END};

static const cli_command calibrate_cmd = {
    "calibrate",
    "measure links and kernels on this machine, fit the model's parameters",
    "Measures, on the ranks it is given (mpirun -n P), message times per link tier (ring\n"
    "shift and ping-pong, 8 B ... --max-message), whether the ranks of a node share their\n"
    "NICs, every communication pattern the configured runs use (--algo, --seq, --heads,\n"
    "--kv-heads, --head-dim, --batch, --pass, --dtype as `run` takes them, on their grid: up to\n"
    "the largest message they send; without --seq every algorithm's patterns up to 16M or\n"
    "--max-message), how much of a transfer hides behind compute, the attention kernels' FLOP\n"
    "rate and fixed cost and the memory bandwidth; fits alpha and beta per tier and per\n"
    "pattern with GSL (poor fits are reported and not used) and writes a machine file\n"
    "(--machine-out; printed when not given) that --machine FILE reads back. Tiers not\n"
    "measured keep the values of the base machine (--machine) and the file says so.\n"
    "With --backend cuda every rank drives a GPU (as attnsim run does): links and collectives\n"
    "move GPU buffers with --comm (nccl, or mpi staged through host memory), the kernels are\n"
    "the CUDA FA2 kernels (f16, bf16), memory is a device copy. Defaults: --max-message 256M\n"
    "(with --seq: the largest message of the runs, at least 64k)\n"
    "--machine dgx-h100 --backend cpu --comm mpi --grid: square where P is a square, else auto;\n"
    "with --seq: --algo (every algorithm) --pass train --heads 4 --head-dim 32 --batch 1.",
    calibrate_opts,
    NULL,
    256};

/* Parses the options on every rank (the same answer everywhere) and checks them: backend and
 * comm against this build, the base machine (loaded on rank 0 into *base), the grid against P.
 * *max_given: --max-message was given (else it is 256M here). Returns 0, 1 (help printed) or 2
 * (bad input, said), the same on every rank. */
static int calibrate_options(int argc, char **argv, const cal_env *e, attn_opts *o, machine *base,
                             int *max_given)
{
    memset(o, 0, sizeof *o);
    o->machine = "dgx-h100";
    o->max_message = 0; /* not given: 256M, or with --seq the runs' largest message */
    o->pass = AM_TRAIN; /* the patterns of the configured runs: forward and backward */
    int rc = cli_parse(&calibrate_cmd, argc, argv, o);
    rc = agree_options(o, rc, MPI_COMM_WORLD); /* the same answer on every rank */
    if (rc) return rc;                         /* every rank leaves, whatever it runs */
    rc = cli_check_outputs(o);                 /* rank 0 */
    char err[600];
#ifndef ATTNSIM_HAVE_CUDA
    if (rc == 0 && o->backend != BACKEND_CPU)
        rc = cli_error(o, "--backend",
                       "'cuda': this build has no CUDA (configure with nvcc present); accepted: "
                       "cpu");
#endif
    if (rc == 0 && o->comm == COMM_NCCL && o->backend != BACKEND_CUDA)
        rc =
            cli_error(o, "--comm", "'nccl' needs --backend cuda; accepted with --backend cpu: mpi");
#ifndef ATTNSIM_HAVE_NCCL
    if (rc == 0 && o->comm == COMM_NCCL)
        rc = cli_error(o, "--comm", "'nccl': this build has no NCCL; accepted: mpi");
#endif
    *max_given = o->max_message != 0;
    if (!*max_given) o->max_message = 256u << 20;
    if (rc == 0 && e->rank == 0 && machine_load(o->machine, base, err, sizeof err))
        rc = cli_error(o, "--machine", "%s", err);
    if (rc == 0 && !o->grid.is_auto && o->grid.rows &&
        o->grid.rows * o->grid.cols != (uint64_t)e->P)
        rc = cli_error(o, "--grid",
                       "%llux%llu has %llu devices but the job has P = %d ranks; "
                       "accepted: RxC with R C = P, or auto",
                       (unsigned long long)o->grid.rows, (unsigned long long)o->grid.cols,
                       (unsigned long long)(o->grid.rows * o->grid.cols), e->P);
    MPICALL(MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    return rc;
}

/* The grid of the links and the comm layer: --grid, else square where P is a square, else the
 * model's choice on the base machine. */
static am_config calibrate_grid(const attn_opts *o, const machine *base, int P)
{
    am_config grid = {ALGO_A2D_NO,
                      LAYOUT_CONTIGUOUS,
                      AM_FWD,
                      (uint64_t)P,
                      1,
                      (uint64_t)P,
                      (uint64_t)P,
                      1,
                      1,
                      1,
                      8,
                      0,
                      0};
    am_grid_request req = {o->grid.is_auto ? 0 : o->grid.rows, o->grid.cols,
                           o->grid.is_auto || (!o->grid.rows && !am_square_side((uint64_t)P)), 0,
                           0};
    am_choose_grid(&grid, base, &req);
    return grid;
}

/* The nodes, from the host names: e's node_of, local_of, per_node and nodes; this rank's host
 * name in host. */
static void find_nodes(cal_env *e, char host[64])
{
    char *hosts = kn_xmalloc((size_t)e->P * 64, "hosts");
    gethostname(host, 63);
    MPICALL(MPI_Allgather(host, 64, MPI_CHAR, hosts, 64, MPI_CHAR, MPI_COMM_WORLD));
    e->node_of = kn_xmalloc((size_t)e->P * sizeof(int), "nodes");
    e->local_of = kn_xmalloc((size_t)e->P * sizeof(int), "nodes");
    e->per_node = kn_xcalloc((size_t)e->P, sizeof(int), "nodes");
    for (int r = 0; r < e->P; r++) {
        e->node_of[r] = -1;
        for (int q = 0; q < r; q++)
            if (!strcmp(hosts + 64 * q, hosts + 64 * r)) e->node_of[r] = e->node_of[q];
        if (e->node_of[r] < 0) e->node_of[r] = e->nodes++;
        e->local_of[r] = e->per_node[e->node_of[r]]++;
    }
    free(hosts);
}

/* The patterns of the configured runs into r (without --seq: every algorithm on the grid, up
 * to 16M or --max-message); the kernels' head dimension in e; with --seq and no
 * --max-message, the links up to the runs' largest message. */
static void configured_runs(cal_env *e, attn_opts *o, const machine *base, int max_given,
                            cal_results *r)
{
    int ncfg = 0;
    am_config *cfgs = kn_xmalloc(4096 * sizeof *cfgs, "configurations");
    r->configured = o->seq.n > 0;
    if (!r->configured) {
        o->seq.n = 1, o->seq.v[0] = 1024 * (uint64_t)e->P;
        o->heads = o->kv_heads = e->P > 8 ? (uint64_t)e->P : 8;
        o->head_dim.n = 1, o->head_dim.v[0] = 64;
        o->dtypes = 1u << KN_F32;
    }
    if (!o->algos) o->algos = (1u << AM_NUM_ALGOS) - 1;
    if (!o->batch) o->batch = 1;
    if (!o->heads) o->heads = 4;
    if (!o->kv_heads) o->kv_heads = o->heads;
    if (!o->head_dim.n) o->head_dim.n = 1, o->head_dim.v[0] = 32;
    if (!o->dtypes) o->dtypes = 1u << (o->backend == BACKEND_CUDA ? KN_BF16 : KN_F32);
    /* the kernels at the runs' head dimension (their smallest, where several are given) */
    if (r->configured)
        for (size_t di = 0; di < o->head_dim.n; di++)
            if (!e->head_dim || o->head_dim.v[di] < e->head_dim) e->head_dim = o->head_dim.v[di];
    for (int a = 0; a < AM_NUM_ALGOS; a++)
        for (size_t si = 0; si < o->seq.n; si++)
            for (size_t di = 0; di < o->head_dim.n; di++)
                for (int dt = 0; dt < 3; dt++) {
                    if (!(o->algos & (1u << a)) || !(o->dtypes & (1u << dt)) || ncfg == 4096)
                        continue;
                    am_config c;
                    char verr[300];
                    if (sweep_config(o, base, a, (uint64_t)e->P, o->seq.v[si], o->head_dim.v[di], 0,
                                     dt, 1, (uint64_t)e->per_node[0], &c) < 0 ||
                        am_validate(&c, verr, sizeof verr))
                        continue;
                    cfgs[ncfg++] = c;
                }
    r->pats = kn_xcalloc(CAL_MAX_PATTERNS, sizeof *r->pats, "patterns");
    r->npat = patterns_of(cfgs, ncfg, r->pats, CAL_MAX_PATTERNS);
    free(cfgs);                        /* the patterns keep their configurations */
    if (r->configured && !max_given) { /* the links up to the runs' largest message */
        uint64_t top = 65536;
        for (int p = 0; p < r->npat; p++)
            while (top < r->pats[p].max_bytes && top < (1u << 30)) top *= 2;
        o->max_message = top;
    }
}

/* Every measurement, on every rank: links per tier, the NIC, kernels, memory, overlap, the
 * patterns; r->took their time. */
static void measure_all(cal_env *e, const attn_opts *o, cal_results *r)
{
    double t_start = MPI_Wtime();
    for (int t = 0; t < 2; t++) {
        r->shift[t] = measure_link(e, t, LINK_SHIFT, o->max_message);
        r->pp[t] = measure_link(e, t, LINK_PINGPONG, o->max_message);
    }
    r->nic = measure_link(e, TIER_INTER, LINK_SHIFT_NIC, o->max_message);
    for (int d = 0; d < 3; d++) r->ks[d] = measure_kernels(e, (kn_dtype)d);
    r->copy_bps = measure_copy(e);
    for (int t = 0; t < 2; t++)
        r->ovl[t] = measure_overlap(e, t, &r->shift[t],
                                    o->max_message < (64u << 20) ? o->max_message : 64u << 20);
    uint64_t cap = r->configured                  ? (1u << 30)
                   : o->max_message < (16u << 20) ? o->max_message
                                                  : 16u << 20;
    for (int k = 0; k < r->npat; k++) {
        if (!r->configured || r->pats[k].max_bytes > cap) r->pats[k].max_bytes = cap;
        r->pats[k].runs_largest = r->configured;
        measure_pattern(e, &r->pats[k]);
    }
    r->took = MPI_Wtime() - t_start;
}

/* Rank 0's outputs: the fit, the tables, the machine file (--machine-out, else printed) and
 * the kind=calibration run (--out). */
static void write_outputs(cal_env *e, const attn_opts *o, cal_results *r, const machine *base,
                          const char *host, const attn_provenance *prov)
{
    machine m;
    cal_fit_machine(e, base, host, r, &m);
    cal_print_summary(e, r, &m, base);
    char *mtext = cal_machine_text(e, r, &m, base, host);
    char shown[4200];
    if (o->machine_out) {
        outputs_write_text(o->machine_out, mtext);
        outputs_display(o->machine_out, shown, sizeof shown);
        printf("# wrote the machine file %s (use --machine %s)\n", shown, shown);
    } else {
        printf("# machine file (save it and use --machine FILE):\n%s", mtext);
    }
    if (o->out) {
        cal_write_record(e, o->out, prov, cli_lock_timeout(o), r, &m, base, mtext);
        printf("# wrote the kind=calibration run to %s\n",
               outputs_display(o->out, shown, sizeof shown));
    }
    free(mtext);
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
    machine base;
    int max_given;
    int rc = calibrate_options(argc, argv, &e, &o, &base, &max_given);
    if (rc) { /* every rank leaves here, whatever subcommand it runs */
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
    am_config grid = calibrate_grid(&o, &base, e.P);
    char host[64] = "";
    find_nodes(&e, host);
    cal_results r;
    memset(&r, 0, sizeof r);
    configured_runs(&e, &o, &base, max_given, &r);
    r.grid_rows = grid.rows, r.grid_cols = grid.cols;
    r.backend = cli_backend_names[o.backend], r.comm = cli_comm_names[o.comm];
    e.dev = &exec_dev_cpu;
    comm_mode mode = COMM_HOST;
    void *stream = NULL;
#ifdef ATTNSIM_HAVE_CUDA
    if (o.backend == BACKEND_CUDA) {
        e.dev = &exec_dev_cuda, e.cuda = 1;
        mode = o.comm == COMM_NCCL ? COMM_DEV_NCCL : COMM_STAGED;
        stream = dev_cuda_stream();
        dev_cuda_device_name(r.gpu, sizeof r.gpu);
    }
#endif
    comm_init(&e.comm, &grid, MPI_COMM_WORLD, mode, stream, e.dev->alloc, e.dev->release);
    e.comm.recording = 0;
    attn_provenance prov;
    if (e.rank == 0) {
        prov_init(&prov, full_argc, full_argv);
        printf("# attnsim calibrate: %d ranks on %d node(s), backend %s%s%s, comm %s; messages "
               "8 B ... %llu B; grid %llux%llu\n",
               e.P, e.nodes, r.backend, e.cuda ? " on " : "", r.gpu, r.comm,
               (unsigned long long)o.max_message, (unsigned long long)grid.rows,
               (unsigned long long)grid.cols);
        fflush(stdout);
    }
    measure_all(&e, &o, &r);
    if (e.rank == 0) {
        write_outputs(&e, &o, &r, &base, host, &prov);
        prov_free(&prov);
    }
    for (int t = 0; t < 2; t++) series_free(&r.shift[t]), series_free(&r.pp[t]);
    series_free(&r.nic);
    for (int k = 0; k < r.npat; k++) pattern_meas_free(&r.pats[k]);
    for (int k = 0; k < r.nfit; k++) pattern_fit_free(&r.fits[k]);
    free(r.pats);
    comm_free(&e.comm);
    free(e.node_of), free(e.local_of), free(e.per_node);
    MPICALL(MPI_Finalize());
    return 0;
}
