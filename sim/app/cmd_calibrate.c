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
    o.max_message = 0; /* not given: 256M, or with --seq the runs' largest message */
    o.pass = AM_TRAIN; /* the patterns of the configured runs: forward and backward */
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
    int max_given = o.max_message != 0;
    if (!max_given) o.max_message = 256u << 20;
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
    /* the patterns of the configured runs (without --seq: every algorithm on the grid, up to
     * 16M or --max-message) */
    int ncfg = 0;
    am_config *cfgs = kn_xmalloc(4096 * sizeof *cfgs, "configurations");
    int configured = o.seq.n > 0;
    if (!configured) {
        o.seq.n = 1, o.seq.v[0] = 1024 * (uint64_t)e.P;
        o.heads = o.kv_heads = e.P > 8 ? (uint64_t)e.P : 8;
        o.head_dim.n = 1, o.head_dim.v[0] = 64;
        o.dtypes = 1u << KN_F32;
    }
    if (!o.algos) o.algos = (1u << AM_NUM_ALGOS) - 1;
    if (!o.batch) o.batch = 1;
    if (!o.heads) o.heads = 4;
    if (!o.kv_heads) o.kv_heads = o.heads;
    if (!o.head_dim.n) o.head_dim.n = 1, o.head_dim.v[0] = 32;
    if (!o.dtypes) o.dtypes = 1u << (e.cuda ? KN_BF16 : KN_F32);
    /* the kernels at the runs' head dimension (their smallest, where several are given) */
    if (configured)
        for (size_t di = 0; di < o.head_dim.n; di++)
            if (!e.head_dim || o.head_dim.v[di] < e.head_dim) e.head_dim = o.head_dim.v[di];
    for (int a = 0; a < AM_NUM_ALGOS; a++)
        for (size_t si = 0; si < o.seq.n; si++)
            for (size_t di = 0; di < o.head_dim.n; di++)
                for (int dt = 0; dt < 3; dt++) {
                    if (!(o.algos & (1u << a)) || !(o.dtypes & (1u << dt)) || ncfg == 4096)
                        continue;
                    am_config c;
                    char verr[300];
                    if (sweep_config(&o, &base, a, (uint64_t)e.P, o.seq.v[si], o.head_dim.v[di], 0,
                                     dt, 1, (uint64_t)e.per_node[0], &c) < 0 ||
                        am_validate(&c, verr, sizeof verr))
                        continue;
                    cfgs[ncfg++] = c;
                }
    enum { MAX_PATTERNS = 64 };
    pattern_meas *pats = kn_xcalloc(MAX_PATTERNS, sizeof *pats, "patterns");
    int npat = patterns_of(cfgs, ncfg, pats, MAX_PATTERNS);
    if (configured && !max_given) { /* the links up to the runs' largest message */
        uint64_t top = 65536;
        for (int p = 0; p < npat; p++)
            while (top < pats[p].max_bytes && top < (1u << 30)) top *= 2;
        o.max_message = top;
    }
    e.dev = &exec_dev_cpu;
    comm_mode mode = COMM_HOST;
    void *stream = NULL;
    char gpu_name[64] = "";
#ifdef ATTNSIM_HAVE_CUDA
    if (o.backend == BACKEND_CUDA) {
        e.dev = &exec_dev_cuda, e.cuda = 1;
        mode = o.comm == COMM_NCCL ? COMM_DEV_NCCL : COMM_STAGED;
        stream = dev_cuda_stream();
        dev_cuda_device_name(gpu_name, sizeof gpu_name);
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
    overlap_meas ovl[2];
    for (int t = 0; t < 2; t++)
        ovl[t] = measure_overlap(&e, t, &shift[t],
                                 o.max_message < (64u << 20) ? o.max_message : 64u << 20);
    uint64_t cap = configured                    ? (1u << 30)
                   : o.max_message < (16u << 20) ? o.max_message
                                                 : 16u << 20;
    for (int k = 0; k < npat; k++) {
        if (!configured || pats[k].max_bytes > cap) pats[k].max_bytes = cap;
        pats[k].runs_largest = configured;
        measure_pattern(&e, &pats[k]);
    }
    free(cfgs);
    double took = MPI_Wtime() - t_start;

    int rc_out = 0;
    pattern_fit fits[MAX_PATTERNS];
    int nfit = 0;
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
        uint64_t per_nic = cal_nic_sharing(&shift[TIER_INTER], &nic, most, &nic_ratio);
        if (per_nic) m.gpus_per_nic = per_nic;
        const series *tier[2] = {&shift[TIER_INTRA], per_nic ? &nic : &shift[TIER_INTER]};
        static const char *const tier_group[2][2] = {
            {"links/intra/ring_shift", "links/inter/ring_shift"},
            {"links/intra/ring_shift", "links/inter/ring_shift_nic"}};
        const char *const *groups = tier_group[per_nic ? 1 : 0];
        for (int t = 0; t < 2; t++) cal_set_tier(&m, t, tier[t]);
        for (int t = 0; t < 2; t++) /* measured overlap */
            if (ovl[t].ok) m.overlap_hidden[t] = ovl[t].hidden;
        if (ovl[0].ok || ovl[1].ok) m.overlap_compute_ratio = ovl[ovl[0].ok ? 0 : 1].ratio;
        /* the patterns, fitted with the NICs and the memory rate just measured */
        nfit = fit_patterns(&e, pats, npat, &m, fits, MAX_PATTERNS);
        m.n_links = 0;
        for (int k = 0; k < nfit; k++) /* the file holds only values it reads back */
            if (fits[k].ok && !fits[k].poor && !cal_link_in_range(&fits[k])) {
                fits[k].poor = 1;
                snprintf(fits[k].why, sizeof fits[k].why,
                         "a fitted value outside the machine file's range");
            }
        for (int k = 0; k < nfit; k++)
            if (!fits[k].poor && m.n_links < MACHINE_MAX_LINKS) {
                machine_link *l = &m.links[m.n_links++];
                l->tier = fits[k].tier, l->pattern = fits[k].pattern, l->group = fits[k].g;
                l->r = pattern_fit_rate(&fits[k]);
            }
        cal_keep_in_range(&m, &base);
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
        print_series_note("intra_ring_shift", &shift[0]);
        print_series_note("intra_ping_pong", &pp[0]);
        print_series_note("inter_ring_shift", &shift[1]);
        print_series_note("inter_ping_pong", &pp[1]);
        print_series_note("inter_shift_1_per_node", &nic);
        if (per_nic)
            printf("# NIC: one rank per node %.2fx as fast as every rank: gpus_per_nic %llu; the "
                   "inter-node tier is the one-rank-per-node shift: %.4f GB/s fitted for large "
                   "messages, %.4f GB/s at its largest sizes (up to %.0f B)\n",
                   nic_ratio, (unsigned long long)per_nic, 1e-9 * cal_large_bandwidth(&nic),
                   1e-9 * nic.largest_rate, nic.bytes[nic.n - 1]);
        if (!shift[1].ok)
            printf("# inter-node tier NOT MEASURED (one node): the machine file keeps %s's values "
                   "and says so; predictions across nodes with it are warned about\n",
                   base.name);
        printf("# kernels: FA2 forward and backward, %s, d = %zu, causal and not; t = overhead + "
               "FLOPs / rate\n",
               e.cuda ? "CUDA kernels on 1k..8k tokens, 8 heads" : "tiles 64..512, 4 heads",
               calibrate_head_dim(&e));
        printf("# %-5s %-8s %12s %12s %7s %11s %s\n", "dtype", "pass", "rate_GFLOPs", "overhead_us",
               "r2", "rel_rms_pct", "fit");
        static const char *const dn[3] = {"f32", "f16", "bf16"};
        for (int d = 0; d < 3; d++) {
            if (!ks[d].n) {
                printf("# %s: not measured (no kernel of this type on this backend)\n", dn[d]);
                continue;
            }
            const lin_fit *kf[2] = {&ks[d].fit, &ks[d].bwd_fit};
            for (int b = 0; b < 2; b++)
                printf("  %-5s %-8s %12.3f %12.2f %7.4f %11.1f %s\n", dn[d],
                       b ? "backward" : "forward", ks[d].ok ? 1e-9 / kf[b]->beta : 0.0,
                       kf[b]->alpha * 1e6, kf[b]->r2, 100 * kf[b]->rel_rms,
                       fit_is_poor(kf[b]) ? "POOR" : "ok");
        }
        printf("# machine file: forward rates as peaks, backward_rate_ratio %.3f, kernel_overhead "
               "%.2f us (medians)\n",
               m.backward_rate_ratio, m.kernel_overhead_s * 1e6);
        printf("# memory copy %.2f GB/s per rank (read + write), every rank at once%s\n",
               copy_bps * 1e-9, e.cuda ? " (device to device)" : "");
        print_overlap(ovl);
        print_patterns(pats, npat, configured);
        print_pattern_fits(fits, nfit, &m);
        printf("# calibration took %.1f s\n", took);
        cal_poor_fits pf;
        cal_collect_poor_fits(&pf, tier, groups, ks);
        if (pf.n) {
            cal_print_poor_fits(stdout, &pf, "# WARNING: ");
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
        cal_write_machine(mf, &base, &m, host, when, e.nodes, bname, cname, nic_ratio,
                          calibrate_head_dim(&e), fits, nfit);
        cal_print_poor_fits(mf, &pf, "# ");
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
            e.h = h5out_open(o.out, &prov, cli_lock_timeout(&o));
            h5node *g = h5out_run_begin(e.h);
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
                h5_write(g, p, H5_F64, 1, &n, ks[d].flops, "flop");
                snprintf(p, sizeof p, "kernels/%s/time_s", dn[d]);
                h5_write(g, p, H5_F64, 1, &n, ks[d].time, "s");
                snprintf(p, sizeof p, "kernels/%s/tile_rows", dn[d]);
                h5_write(g, p, H5_I32, 1, &n, ks[d].nq, "tokens");
                snprintf(p, sizeof p, "kernels/%s/forward", dn[d]);
                h5_write(g, p, H5_I32, 1, &n, ks[d].fwd, NULL);
                snprintf(p, sizeof p, "kernels/%s/causal", dn[d]);
                h5_write(g, p, H5_I32, 1, &n, ks[d].causal, NULL);
                snprintf(p, sizeof p, "kernels/%s", dn[d]);
                h5node *kg = h5_member(g, p);
                h5_attr_i64(kg, "head_dim", (int64_t)calibrate_head_dim(&e));
                h5_attr_f64(kg, "rate_flop_per_s", ks[d].ok ? 1.0 / ks[d].fit.beta : 0.0);
                h5_attr_f64(kg, "overhead_s", ks[d].fit.alpha);
                h5_attr_f64(kg, "r2", ks[d].fit.r2);
                h5_attr_f64(kg, "rel_rms", ks[d].fit.rel_rms);
                h5_attr_f64(kg, "backward_rate_flop_per_s",
                            ks[d].ok ? 1.0 / ks[d].bwd_fit.beta : 0.0);
                h5_attr_f64(kg, "backward_r2", ks[d].bwd_fit.r2);
                h5_attr_f64(kg, "backward_rel_rms", ks[d].bwd_fit.rel_rms);
            }
            h5_attr_f64(g, "copy_bytes_per_s", copy_bps);
            for (int t = 0; t < 2; t++) { /* the large regime's RMS beside its R^2 */
                if (!tier[t]->ok || !tier[t]->fit.two_regimes) continue;
                h5_attr_f64(h5_member(g, groups[t]), "large_rel_rms", tier[t]->fit.large.rel_rms);
            }
            /* poor fits: poor_fit on each fit's group, and the list on the run */
            char list[8 * 48 * 2] = "";
            for (int i = 0; i < pf.n; i++) {
                h5node *fg = h5_member(g, pf.group[i]);
                if (!h5_attr_exists(fg, "poor_fit")) h5_attr_i64(fg, "poor_fit", 1);
                size_t len = strlen(list);
                snprintf(list + len, sizeof list - len, "%s%s", i ? "; " : "", pf.what[i]);
            }
            h5_attr_i64(g, "poor_fit_count", pf.n);
            h5_attr_str(g, "poor_fits", pf.n ? list : "none");
            write_patterns(g, pats, npat);
            write_pattern_fits(g, fits, nfit);
            write_overlap(g, ovl);
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
    for (int k = 0; k < npat; k++) pattern_meas_free(&pats[k]);
    for (int k = 0; k < nfit; k++) pattern_fit_free(&fits[k]);
    free(pats);
    comm_free(&e.comm);
    free(hosts), free(e.node_of), free(e.local_of), free(e.per_node);
    MPICALL(MPI_Finalize());
    return rc_out;
}
