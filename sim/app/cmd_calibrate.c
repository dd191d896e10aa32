/* cmd_calibrate.c - `attnsim calibrate`: measure this machine and fit the model's parameters
 * (cost-model.md, "Calibration"; docs/calibration.md).
 *
 * Under mpirun, on the ranks it is given:
 *   links        per tier present (same node, different nodes, from the host names): a ring
 *                shift with every rank of the tier sending at once (what a ring step does), and
 *                a ping-pong between two ranks (others idle), over message sizes 8 B ...
 *                --max-message, three samples per size, repetitions by size, after warm-up;
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
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "comm.h"
#include "commands.h"
#include "exec.h"
#include "fail.h"
#include "fit.h"
#include "h5out.h"
#include "kn_problem.h"
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

typedef struct {
    int rank, P, nodes;
    int *node_of, *local_of, *per_node; /* node and local index of every rank; ranks per node */
    comm_ctx comm;                      /* not recording: only its communicators and rings */
    const exec_dev *dev;                /* where the buffers live: host, or this rank's GPU */
    int cuda;
    h5out *h;
    hid_t g;
} cal_env;

/* Idle ranks wait without spinning (4 ranks share 2 cores in CI): an Ibarrier polled with
 * sleeps, so the measured ranks get the cores. */
static void polite_barrier(void)
{
    MPI_Request r;
    MPICALL(MPI_Ibarrier(MPI_COMM_WORLD, &r));
    int done = 0;
    while (!done) {
        MPICALL(MPI_Test(&r, &done, MPI_STATUS_IGNORE));
        if (!done) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }
}

static int reps_for(uint64_t bytes)
{
    return bytes <= 4096 ? 200 : bytes <= 1 << 20 ? 40 : 6;
}

/* One link measurement: every rank with a peer exchanges `bytes` with it; returns the slowest
 * rank's mean time per exchange (the step time of a synchronous ring). pingpong: a round trip
 * of one pair, halved. */
static double link_sample(const cal_env *e, int send_to, int recv_from, int pingpong, char *buf,
                          char *rbuf, uint64_t bytes)
{
    int reps = reps_for(bytes);
    double t = 0.0;
    polite_barrier();
    if (send_to >= 0 && e->cuda) { /* GPU buffers through the comm layer's transport */
        comm_ctx *c = (comm_ctx *)&e->comm;
        for (int warm = 0; warm < 2; warm++)
            comm_sendrecv(c, c->world, send_to, buf, bytes, recv_from, rbuf, bytes);
        double t0 = MPI_Wtime();
        for (int i = 0; i < reps; i++) {
            if (!pingpong) {
                comm_sendrecv(c, c->world, send_to, buf, bytes, recv_from, rbuf, bytes);
                continue;
            }
            for (int half = 0; half < 2; half++) { /* the first of the pair pings */
                comm_reqs q = {.n = 0};
                if ((e->rank < send_to) == (half == 0))
                    comm_isend(c, &q, c->world, send_to, buf, bytes);
                else
                    comm_irecv(c, &q, c->world, send_to, rbuf, bytes);
                comm_waitall(c, &q);
            }
        }
        t = (MPI_Wtime() - t0) / reps / (pingpong ? 2.0 : 1.0);
    } else if (send_to >= 0) {
        for (int warm = 0; warm < 2; warm++)
            MPICALL(MPI_Sendrecv(buf, (int)bytes, MPI_BYTE, send_to, 1, rbuf, (int)bytes, MPI_BYTE,
                                 recv_from, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        double t0 = MPI_Wtime();
        for (int i = 0; i < reps; i++) {
            if (!pingpong) {
                MPICALL(MPI_Sendrecv(buf, (int)bytes, MPI_BYTE, send_to, 1, rbuf, (int)bytes,
                                     MPI_BYTE, recv_from, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
            } else if (e->rank < send_to) { /* the first of the pair pings */
                MPICALL(MPI_Send(buf, (int)bytes, MPI_BYTE, send_to, 2, MPI_COMM_WORLD));
                MPICALL(MPI_Recv(rbuf, (int)bytes, MPI_BYTE, send_to, 2, MPI_COMM_WORLD,
                                 MPI_STATUS_IGNORE));
            } else {
                MPICALL(MPI_Recv(rbuf, (int)bytes, MPI_BYTE, send_to, 2, MPI_COMM_WORLD,
                                 MPI_STATUS_IGNORE));
                MPICALL(MPI_Send(buf, (int)bytes, MPI_BYTE, send_to, 2, MPI_COMM_WORLD));
            }
        }
        t = (MPI_Wtime() - t0) / reps / (pingpong ? 2.0 : 1.0);
    }
    polite_barrier();
    MPICALL(MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    return t;
}

typedef struct {
    size_t n;
    double *bytes, *time;
    link_fit fit;
    int ok;
} series;

/* Peers of this rank for a tier: intra, the next rank of its node (ring over the node's
 * ranks); inter, the same local rank on the next node. -1 when it sits out. */
static void tier_peers(const cal_env *e, int tier, int pingpong, int *to, int *from)
{
    *to = *from = -1;
    int me = e->rank, node = e->node_of[me], local = e->local_of[me];
    if (pingpong) { /* rank 0 and its first peer of the tier */
        int peer = -1;
        for (int r = 1; r < e->P && peer < 0; r++)
            if ((tier == TIER_INTRA) == (e->node_of[r] == e->node_of[0])) peer = r;
        if (peer < 0 || (me != 0 && me != peer)) return;
        *to = *from = me == 0 ? peer : 0;
        return;
    }
    if (tier == TIER_INTRA) {
        int c = e->per_node[node];
        if (c < 2) return;
        int want_to = (local + 1) % c, want_from = (local + c - 1) % c;
        for (int r = 0; r < e->P; r++)
            if (e->node_of[r] == node) {
                if (e->local_of[r] == want_to) *to = r;
                if (e->local_of[r] == want_from) *from = r;
            }
    } else {
        if (e->nodes < 2) return;
        int next = (node + 1) % e->nodes, prev = (node + e->nodes - 1) % e->nodes;
        int a = -1, b = -1;
        for (int r = 0; r < e->P; r++) {
            if (e->node_of[r] == next && e->local_of[r] == local) a = r;
            if (e->node_of[r] == prev && e->local_of[r] == local) b = r;
        }
        if (a >= 0 && b >= 0) *to = a, *from = b;
    }
}

static series measure_link(const cal_env *e, int tier, int pingpong, uint64_t max_bytes)
{
    series s;
    memset(&s, 0, sizeof s);
    int to, from;
    tier_peers(e, tier, pingpong, &to, &from);
    int active = to >= 0;
    MPICALL(MPI_Allreduce(MPI_IN_PLACE, &active, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (!active) return s;
    size_t sizes = 0;
    for (uint64_t b = 8; b <= max_bytes; b *= 2) sizes++;
    s.bytes = kn_xmalloc(3 * sizes * sizeof(double), "link samples");
    s.time = kn_xmalloc(3 * sizes * sizeof(double), "link samples");
    char *buf = e->dev->alloc(max_bytes, "link buffer"),
         *rbuf = e->dev->alloc(max_bytes, "link buffer");
    e->dev->zero(buf, max_bytes);
    for (uint64_t b = 8; b <= max_bytes; b *= 2)
        for (int k = 0; k < 3; k++) {
            s.bytes[s.n] = (double)b;
            s.time[s.n] = link_sample(e, to, from, pingpong, buf, rbuf, b);
            s.n++;
        }
    e->dev->release(buf), e->dev->release(rbuf);
    e->dev->sync();
    /* a slope <= 0 (time not growing with size) is no bandwidth: the tier counts as unmeasured */
    s.ok = fit_link(s.bytes, s.time, s.n, &s.fit) == 0 && s.fit.small.beta > 0;
    return s;
}

/* ---- kernels ------------------------------------------------------------------------------ */

typedef struct {
    size_t n;
    double flops[64], time[64];
    int nq[64], fwd[64], causal[64];
    lin_fit fit, bwd_fit; /* forward and backward tiles */
    int ok;
} kernel_series;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One tile configuration on the CPU: the fastest of 3 calls of the C reference FA2 kernel. */
static double time_cpu_tile(kn_dtype dt, size_t n, size_t heads, size_t d, int causal, int fwd)
{
    kn_shape s = {1, heads, heads, n, n, d, causal, NULL, NULL};
    kn_problem p;
    kn_problem_init(&p, &s, dt, KN_NEED_FWD | (fwd ? 0 : KN_NEED_BWD), 3);
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        kn_counters ci = {0};
        double t0 = now_s();
        if (fwd)
            kn_fa2_fwd(&s, 32768, &p.t, &ci);
        else
            kn_fa2_bwd(&s, 32768, &p.t, &ci);
        double t = now_s() - t0;
        best = rep == 0 || t < best ? t : best;
    }
    kn_problem_free(&p);
    return best;
}

/* The FA2 forward and backward of the backend on every rank at once (as in a run), over tile
 * shapes, causal and not: CPU tiles of 64 ... 512 tokens, 4 heads, d = 64; GPU problems of
 * 1k ... 8k tokens, 8 heads, d = 128 (the CUDA kernels, timed with events). */
static kernel_series measure_kernels(const cal_env *e, kn_dtype dt)
{
    kernel_series k;
    memset(&k, 0, sizeof k);
    static const int cpu_sizes[] = {64, 128, 256, 512}, gpu_sizes[] = {1024, 2048, 4096, 8192};
    const int *sizes = e->cuda ? gpu_sizes : cpu_sizes;
    size_t heads = e->cuda ? 8 : 4, d = e->cuda ? 128 : 64;
    if (e->cuda && dt == KN_F32) return k; /* no f32 kernel on the GPU: not measured */
    for (size_t si = 0; si < 4; si++)
        for (int causal = 0; causal < 2; causal++)
            for (int fwd = 1; fwd >= 0; fwd--) {
                polite_barrier();
                double best = 0;
#ifdef ATTNSIM_HAVE_CUDA
                if (e->cuda)
                    best = exec_cuda_time_fa2((int)dt, heads, (size_t)sizes[si], d, causal, fwd, 3);
#endif
                if (!e->cuda) best = time_cpu_tile(dt, (size_t)sizes[si], heads, d, causal, fwd);
                MPICALL(MPI_Allreduce(MPI_IN_PLACE, &best, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
                /* FLOPs as the time model counts them: 4 d (forward) or 10 d (backward) per
                 * visible query-key pair and head */
                double n = (double)sizes[si], pairs = causal ? n * (n + 1) / 2 : n * n;
                k.flops[k.n] = (fwd ? 4.0 : 10.0) * (double)d * pairs * (double)heads;
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

static double measure_copy(const cal_env *e)
{
    size_t bytes = e->cuda ? (size_t)1 << 30 : (size_t)64 << 20;
    double best = 0;
    polite_barrier();
#ifdef ATTNSIM_HAVE_CUDA
    if (e->cuda) best = 2.0 * (double)bytes / exec_cuda_copy_rate(bytes); /* as a time */
#endif
    if (!e->cuda) {
        char *a = kn_xcalloc(bytes, 1, "copy buffer"), *b = kn_xcalloc(bytes, 1, "copy buffer");
        for (int rep = 0; rep < 4; rep++) {
            double t0 = now_s();
            memcpy(b, a, bytes);
            double t = now_s() - t0;
            best = rep == 0 || t < best ? t : best;
            a[rep] = b[rep + 1];
        }
        free(a), free(b);
    }
    MPICALL(MPI_Allreduce(MPI_IN_PLACE, &best, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    return 2.0 * (double)bytes / best; /* read + write */
}

/* ---- collectives --------------------------------------------------------------------------- */

typedef struct {
    const exec_dev *dev;
    size_t chunk;
} sum_ctx;

static void sum_f32(void *own, const void *in, int j, void *ctx)
{
    (void)j;
    const sum_ctx *c = ctx;
    c->dev->add_f32(own, in, c->chunk / sizeof(float));
}

typedef struct {
    const char *name;
    int group; /* GROUP_ROW, GROUP_COL, GROUP_WORLD */
    int kind;  /* 0 all-gather, 1 reduce-scatter, 2 all-to-all */
} coll_def;

/* Time of one collective with chunks of `chunk` bytes (slowest rank). */
static double coll_time(cal_env *e, const coll_def *cd, size_t chunk)
{
    MPI_Comm on = cd->group == GROUP_ROW   ? e->comm.row
                  : cd->group == GROUP_COL ? e->comm.col
                                           : e->comm.world;
    int g;
    MPICALL(MPI_Comm_size(on, &g));
    void **blocks = kn_xmalloc((size_t)g * sizeof(void *), "blocks");
    void **recv = kn_xmalloc((size_t)g * sizeof(void *), "blocks");
    uint64_t *bytes = kn_xmalloc((size_t)g * sizeof(uint64_t), "sizes");
    for (int j = 0; j < g; j++) {
        blocks[j] = e->dev->alloc(chunk, "chunk"), recv[j] = e->dev->alloc(chunk, "chunk");
        e->dev->zero(blocks[j], chunk);
        bytes[j] = chunk;
    }
    sum_ctx sc = {e->dev, chunk};
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        MPICALL(MPI_Barrier(MPI_COMM_WORLD));
        double t0 = MPI_Wtime();
        if (cd->kind == 0)
            comm_ring_allgather(&e->comm, on, blocks, bytes);
        else if (cd->kind == 1)
            comm_ring_reduce_scatter(&e->comm, on, blocks, bytes, sum_f32, &sc);
        else
            comm_alltoall(&e->comm, on, blocks, bytes, recv, bytes);
        e->dev->sync();
        double t = MPI_Wtime() - t0;
        MPICALL(MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
        best = rep == 0 || t < best ? t : best;
    }
    for (int j = 0; j < g; j++) e->dev->release(blocks[j]), e->dev->release(recv[j]);
    free(blocks), free(recv), free(bytes);
    return best;
}

/* ---- output -------------------------------------------------------------------------------- */

static void write_series(hid_t g, const char *path, const series *s)
{
    if (!s->ok) return;
    hsize_t n = s->n;
    char p[160];
    double *fit = kn_xmalloc(s->n * sizeof(double), "fit"),
           *res = kn_xmalloc(s->n * sizeof(double), "fit");
    for (size_t i = 0; i < s->n; i++) {
        fit[i] = link_fit_eval(&s->fit, s->bytes[i]);
        res[i] = (fit[i] - s->time[i]) / s->time[i];
    }
    snprintf(p, sizeof p, "%s/bytes", path);
    h5_write(g, p, H5T_NATIVE_DOUBLE, 1, &n, s->bytes, "bytes");
    snprintf(p, sizeof p, "%s/time_s", path);
    h5_write(g, p, H5T_NATIVE_DOUBLE, 1, &n, s->time, "s");
    snprintf(p, sizeof p, "%s/fit_s", path);
    h5_write(g, p, H5T_NATIVE_DOUBLE, 1, &n, fit, "s");
    snprintf(p, sizeof p, "%s/residual_rel", path);
    h5_write(g, p, H5T_NATIVE_DOUBLE, 1, &n, res, "1");
    hid_t grp = H5CALL(H5Gopen2(g, path, H5P_DEFAULT));
    const lin_fit *small = &s->fit.small, *large = &s->fit.large;
    h5_attr_f64(grp, "alpha_s", small->alpha);
    h5_attr_f64(grp, "bandwidth_bytes_per_s", 1.0 / small->beta);
    h5_attr_f64(grp, "r2", small->r2);
    h5_attr_f64(grp, "rel_rms", small->rel_rms);
    h5_attr_i64(grp, "outliers",
                (int64_t)(small->outliers + (s->fit.two_regimes ? large->outliers : 0)));
    h5_attr_i64(grp, "two_regimes", s->fit.two_regimes);
    if (s->fit.two_regimes) {
        h5_attr_f64(grp, "break_bytes", s->fit.break_x);
        h5_attr_f64(grp, "large_alpha_s", large->alpha);
        h5_attr_f64(grp, "large_bandwidth_bytes_per_s", 1.0 / large->beta);
        h5_attr_f64(grp, "large_r2", large->r2);
    }
    H5CALL(H5Gclose(grp));
    free(fit), free(res);
}

static void print_series(const char *what, const series *s)
{
    if (!s->n) {
        printf("  %-26s not measured (no such pair of ranks)\n", what);
        return;
    }
    if (!s->ok) {
        printf("  %-26s %zu points, no fit\n", what, s->n);
        return;
    }
    const lin_fit *a = &s->fit.small;
    printf("  %-26s alpha %9.3f us  bandwidth %9.3f GB/s  R^2 %.4f  rel RMS %5.1f%%  outliers %zu",
           what, a->alpha * 1e6, 1e-9 / a->beta, a->r2, 100 * a->rel_rms, a->outliers);
    if (s->fit.two_regimes)
        printf(
            "\n  %-26s from %.0f B: alpha %9.3f us  bandwidth %9.3f GB/s  R^2 %.4f (one line: rel "
            "RMS %.1f%%)",
            "", s->fit.break_x, s->fit.large.alpha * 1e6, 1e-9 / s->fit.large.beta, s->fit.large.r2,
            100 * s->fit.single.rel_rms);
    printf("\n");
}

/* The machine file: base machine with the measured values in place, each line commented. */
static void write_machine(FILE *f, const machine *base, const machine *m, const char *host,
                          const char *when, int nodes, const char *backend, const char *comm)
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
        const char *note =
            m->measured[t] ? "measured: ring shift, robust fit" : "NOT MEASURED: kept";
        fprintf(f, "%s_alpha = %.17g s   # %s\n", tiers[t], m->alpha_s[t], note);
        fprintf(f, "%s_bandwidth = %.17g B/s   # %s\n", tiers[t], m->bytes_per_s[t], note);
    }
    fprintf(f, "gpus_per_nic = %llu   # kept\n", (unsigned long long)m->gpus_per_nic);
    char opt[1024];
    machine_format_optional(m, opt, sizeof opt);
    fputs(opt, f);
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
    attn_opts o;
    memset(&o, 0, sizeof o);
    o.machine = "dgx-h100";
    o.max_message = 256u << 20;
    int rc = cli_parse(&calibrate_cmd, argc, argv, &o);
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
    if (rc == 0 && o.max_message > (1u << 30))
        rc = cli_error(&o, "--max-message", "%llu is larger than 1G; accepted: 8 ... 1G bytes",
                       (unsigned long long)o.max_message);
    if (rc == 0 && o.max_message < 1024)
        rc = cli_error(&o, "--max-message",
                       "%llu is below 1k; accepted: 1k ... 1G bytes (the fit "
                       "needs sizes on both sides of the latency regime)",
                       (unsigned long long)o.max_message);
    if (rc == 0 && e.rank == 0 && machine_load(o.machine, &base, err, sizeof err))
        rc = cli_error(&o, "--machine", "%s", err);
    if (rc == 0 && o.machine_out && e.rank == 0 &&
        h5out_dir_writable(o.machine_out, err, sizeof err))
        rc = cli_error(&o, "--machine-out", "%s", err);
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
    am_choose_grid(&grid, &base, o.grid.is_auto ? 0 : o.grid.rows, o.grid.cols,
                   o.grid.is_auto || (!o.grid.rows && !am_square_side((uint64_t)e.P)));

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

    series shift[2], pp[2];
    for (int t = 0; t < 2; t++) {
        shift[t] = measure_link(&e, t, 0, o.max_message);
        pp[t] = measure_link(&e, t, 1, o.max_message);
    }
    kernel_series ks[3];
    for (int d = 0; d < 3; d++) ks[d] = measure_kernels(&e, (kn_dtype)d);
    double copy_bps = measure_copy(&e);
    /* the groups Attention2D's phases use (models/algo.c): all-gathers on rows and columns,
     * reduce-scatters on rows (partial O, dQ) and columns (dK, dV); Ulysses' all-to-all */
    enum { NCOLL = 5 };
    static const coll_def colls[NCOLL] = {{"allgather_row", GROUP_ROW, 0},
                                          {"allgather_col", GROUP_COL, 0},
                                          {"reduce_scatter_row", GROUP_ROW, 1},
                                          {"reduce_scatter_col", GROUP_COL, 1},
                                          {"alltoall_world", GROUP_WORLD, 2}};
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
        for (int t = 0; t < 2; t++) {
            m.measured[t] = shift[t].ok;
            if (!shift[t].ok) continue;
            m.alpha_s[t] = fmax(shift[t].fit.small.alpha, 0.0);
            m.bytes_per_s[t] = 1.0 / shift[t].fit.small.beta;
            m.break_bytes[t] = 0;
            if (shift[t].fit.two_regimes) {
                m.break_bytes[t] = shift[t].fit.break_x;
                m.alpha_large_s[t] = fmax(shift[t].fit.large.alpha, 0.0);
                m.bytes_per_s_large[t] = 1.0 / shift[t].fit.large.beta;
            }
        }
        printf("# links (alpha + m / bandwidth, robust fit of %s)\n",
               "3 samples per size, relative error");
        print_series("intra-node ring shift", &shift[0]);
        print_series("intra-node ping-pong", &pp[0]);
        print_series("inter-node ring shift", &shift[1]);
        print_series("inter-node ping-pong", &pp[1]);
        if (!shift[1].ok)
            printf("  inter-node tier NOT MEASURED (one node): the machine file keeps %s's values "
                   "and says so; predictions across nodes with it are warned about\n",
                   base.name);
        printf("# kernels (FA2 forward and backward, %s, causal and not; t = overhead + FLOPs / "
               "rate)\n",
               e.cuda ? "CUDA kernels on 1k..8k tokens, 8 heads, d = 128"
                      : "tiles 64..512, d = 64");
        static const char *const dn[3] = {"f32", "f16", "bf16"};
        for (int d = 0; d < 3; d++)
            if (!ks[d].n)
                printf("  %-5s not measured (no kernel of this type on this backend)\n", dn[d]);
            else
                printf("  %-5s forward %7.3f GFLOP/s + %7.2f us (rel RMS %4.1f%%), backward %7.3f "
                       "GFLOP/s + %7.2f us (rel RMS %4.1f%%)\n",
                       dn[d], ks[d].ok ? 1e-9 / ks[d].fit.beta : 0.0, ks[d].fit.alpha * 1e6,
                       100 * ks[d].fit.rel_rms, ks[d].ok ? 1e-9 / ks[d].bwd_fit.beta : 0.0,
                       ks[d].bwd_fit.alpha * 1e6, 100 * ks[d].bwd_fit.rel_rms);
        printf("  machine file: forward rates as peaks, backward_rate_ratio %.3f, kernel_overhead "
               "%.2f us (medians)\n",
               m.backward_rate_ratio, m.kernel_overhead_s * 1e6);
        printf("# memory copy %.2f GB/s per rank (read + write), every rank at once%s\n",
               copy_bps * 1e-9, e.cuda ? " (device to device)" : "");
        printf("# ring collectives on the %llux%llu grid: measured vs (g-1)(alpha + m / bandwidth) "
               "of the fitted intra-node ring shift\n",
               (unsigned long long)grid.rows, (unsigned long long)grid.cols);
        const int gsize[NCOLL] = {(int)grid.cols, (int)grid.rows, (int)grid.cols, (int)grid.rows,
                                  e.P};
        for (int c = 0; c < NCOLL; c++) {
            printf("  %-20s", colls[c].name);
            if (gsize[c] < 2) { /* a group of one moves nothing: no error to show */
                printf(" groups of one rank: nothing to compare\n");
                continue;
            }
            for (int k = 0; k < ncb; k++) {
                double pred = (gsize[c] - 1) * machine_message_s(&m, TIER_INTRA, coll_bytes[k], 1);
                if (e.nodes > 1)
                    pred = (gsize[c] - 1) * machine_message_s(&m, TIER_INTER, coll_bytes[k], 1);
                printf(" %6.0fk: %+5.0f%%", coll_bytes[k] / 1024,
                       100 * (pred - coll_t[c][k]) / coll_t[c][k]);
            }
            printf("\n");
        }
        printf("# calibration took %.1f s\n", took);

        char when[32];
        prov_utc_now(when, sizeof when);
        if (o.machine_out) {
            char tmp[4200];
            snprintf(tmp, sizeof tmp, "%s.tmp", o.machine_out);
            FILE *f = fopen(tmp, "w");
            if (!f) attn_fail("fopen", __FILE__, __LINE__, "%s", tmp);
            write_machine(f, &base, &m, host, when, e.nodes, bname, cname);
            if (fclose(f) != 0 || rename(tmp, o.machine_out) != 0)
                attn_fail("rename", __FILE__, __LINE__, "%s", o.machine_out);
            printf("# wrote the machine file %s (use --machine %s)\n", o.machine_out,
                   o.machine_out);
        } else {
            printf("# machine file (save it and use --machine FILE):\n");
            write_machine(stdout, &base, &m, host, when, e.nodes, bname, cname);
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
                H5CALL(H5Gclose(kg));
            }
            h5_attr_f64(g, "copy_bytes_per_s", copy_bps);
            for (int c = 0; c < NCOLL; c++) {
                char p[96];
                hsize_t n = (hsize_t)ncb;
                snprintf(p, sizeof p, "collectives/%s/bytes", colls[c].name);
                h5_write(g, p, H5T_NATIVE_DOUBLE, 1, &n, coll_bytes, "bytes");
                snprintf(p, sizeof p, "collectives/%s/time_s", colls[c].name);
                h5_write(g, p, H5T_NATIVE_DOUBLE, 1, &n, coll_t[c], "s");
            }
            char mtext[4096];
            FILE *mf = fmemopen(mtext, sizeof mtext, "w");
            write_machine(mf, &base, &m, host, when, e.nodes, bname, cname);
            fclose(mf);
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
            printf("# wrote the kind=calibration run to %s\n", o.out);
        }
        prov_free(&prov);
    }
    for (int t = 0; t < 2; t++)
        free(shift[t].bytes), free(shift[t].time), free(pp[t].bytes), free(pp[t].time);
    comm_free(&e.comm);
    free(hosts), free(e.node_of), free(e.local_of), free(e.per_node);
    MPICALL(MPI_Finalize());
    return rc_out;
}
