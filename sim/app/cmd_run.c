/* cmd_run.c - `attnsim run`: execute distributed attention under MPI (one rank per "device":
 * the CPU, or one GPU with --backend cuda), count every byte, and compare with the model.
 *
 * For each point of the sweep (dtype x head dim x causal x N x algorithm): every rank builds its
 * shard from the seed, runs the algorithm's passes (exec_*.c) through the counting comm layer,
 * and sends its per-phase counters and times to rank 0, which computes the prediction with the
 * model's functions (models/predict.h), compares every rank and phase (any difference is an
 * error naming the first one), optionally checks the outputs against the float64 reference of
 * the whole problem, prints a table and writes one kind=distributed run.
 * Exit status: 0 all runs valid; 1 a count differed or a check failed; 2 bad input (one line on
 * rank 0, nothing written, every rank exits).
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agree.h"
#include "cli.h"
#include "commands.h"
#include "dist_record.h"
#include "comm_dev.h"
#include "exec.h"
#include "fail.h"
#include "exec_memory.h"
#include "h5out.h"
#include "hostmem.h"
#include "outputs.h"
#include "predict.h"
#include "ref_f64.h"
#include "sweep.h"
#ifdef ATTNSIM_HAVE_CUDA
#include "exec_cuda.h"
#include "gpu_bind.h"
#include "kc_attn.h"
#endif

static const opt_id run_opts[] = {
    OPT_ALGO,    OPT_LAYOUT, OPT_SEQ,          OPT_BATCH, OPT_HEADS, OPT_KV_HEADS, OPT_HEAD_DIM,
    OPT_CAUSAL,  OPT_GRID,   OPT_ULYSSES_SIZE, OPT_PASS,  OPT_DTYPE, OPT_BACKEND,  OPT_COMM,
    OPT_MACHINE, OPT_CHECK,  OPT_SEED,         OPT_REPS,  OPT_OUT,   OPT_END};

static const cli_command run_cmd = {
    "run",
    "execute distributed attention under MPI and record measured + predicted",
    "Executes Ring Attention, Attention2D (A2D-NO, A2D-O) and Ulysses across the MPI ranks\n"
    "(mpirun -n P: one rank per device), counting the bytes and messages of every phase on every\n"
    "rank, and compares them with the model's prediction (they must be equal). --check compares\n"
    "the outputs (and gradients) with a float64 single-device reference. --backend cuda: each\n"
    "rank drives one GPU (local rank modulo the GPUs of its node, or ATTNSIM_DEVICE), f16/bf16;\n"
    "--comm mpi stages device buffers through host memory (ranks may share a GPU), --comm nccl\n"
    "uses NCCL point-to-point (one rank per GPU). Defaults: --algo ring,a2d-no,a2d-o --layout\n"
    "contiguous --seq 512 --batch 1 --heads 4 --head-dim 32 --causal=no --pass fwd --dtype f32\n"
    "(bf16 with --backend cuda) --backend cpu --comm mpi --machine dgx-h100 --seed 1 --reps 1;\n"
    "--grid: the square grid (P must be a square) unless RxC or auto is given. --reps R runs the\n"
    "passes R times and reports the repetition of median total time (counts are per pass).",
    run_opts,
    NULL,
    256};

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

/* Host of every rank -> node index (first appearance order), on every rank; the ranks per
 * node when they are packed evenly in rank order. */
static void node_map(run_env *env)
{
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    env->hosts = kn_xmalloc((size_t)env->P * 64, "host names");
    MPICALL(MPI_Allgather(host, 64, MPI_CHAR, env->hosts, 64, MPI_CHAR, MPI_COMM_WORLD));
    env->node_of = kn_xmalloc((size_t)env->P * sizeof(int32_t), "node map");
    env->nodes = 0;
    for (int r = 0; r < env->P; r++) {
        env->node_of[r] = -1;
        for (int q = 0; q < r && env->node_of[r] < 0; q++)
            if (!strcmp(env->hosts + 64 * q, env->hosts + 64 * r))
                env->node_of[r] = env->node_of[q];
        if (env->node_of[r] < 0) env->node_of[r] = env->nodes++;
    }
    int per_node = 0, packed = 1;
    for (int r = 0; r < env->P; r++) per_node += env->node_of[r] == 0;
    for (int r = 0; r < env->P; r++) packed &= env->node_of[r] == r / per_node;
    env->ranks_per_node = packed && env->P % per_node == 0 ? (uint64_t)per_node : 0;
}

/* Every check of the command line that needs P; identical on every rank. */
static int validate(run_env *env)
{
    attn_opts *o = &env->o;
    uint64_t P = (uint64_t)env->P;
#ifndef ATTNSIM_HAVE_CUDA
    if (o->backend != BACKEND_CPU)
        return cli_error(o, "--backend",
                         "'cuda': this build has no CUDA (configure with nvcc present); accepted: "
                         "cpu");
#endif
    if (o->comm == COMM_NCCL && o->backend != BACKEND_CUDA)
        return cli_error(o, "--comm",
                         "'nccl' needs --backend cuda; accepted with --backend cpu: "
                         "mpi");
#ifndef ATTNSIM_HAVE_NCCL
    if (o->comm == COMM_NCCL)
        return cli_error(o, "--comm", "'nccl': this build has no NCCL; accepted: mpi");
#endif
    if (o->backend == BACKEND_CUDA && (o->dtypes & (1u << KN_F32)))
        return cli_error(o, "--dtype",
                         "'f32' is not run on the GPU (its kernels take half precision); "
                         "accepted with --backend cuda: f16, bf16");
    if (cli_resolve_kv_heads(o)) return 2;
    unsigned grid_algos = 0;
    for (int a = 0; a < AM_NUM_ALGOS; a++)
        if (am_algo_desc_of((am_algo)a)->grid == AM_GRID_2D) grid_algos |= 1u << a;
    if (o->algos & grid_algos) {
        if (!o->grid.is_auto && o->grid.rows && o->grid.rows * o->grid.cols != P)
            return cli_error(o, "--grid",
                             "%llux%llu has %llu devices but the job has P = %llu "
                             "ranks (mpirun -n); accepted: RxC with R C = P, or "
                             "auto",
                             (unsigned long long)o->grid.rows, (unsigned long long)o->grid.cols,
                             (unsigned long long)(o->grid.rows * o->grid.cols),
                             (unsigned long long)P);
        if (!o->grid.is_auto && !o->grid.rows && !am_square_side(P))
            return cli_error(o, "--grid",
                             "P = %llu ranks is not a square, so a2d-no/a2d-o have "
                             "no default grid; accepted: a square P, --grid RxC "
                             "with R C = P, or --grid auto",
                             (unsigned long long)P);
    }
    for (int a = 0; a < AM_NUM_ALGOS; a++) {
        const am_algo_desc *d = am_algo_desc_of((am_algo)a);
        if (!(o->algos & (1u << a))) continue;
        uint64_t u = o->ulysses_size ? o->ulysses_size : env->ranks_per_node;
        if (d->grid == AM_GRID_GROUPS && o->ulysses_size && P % u)
            return cli_error(o, "--ulysses-size",
                             "%llu does not divide the P = %llu ranks; accepted: a divisor of "
                             "P",
                             (unsigned long long)u, (unsigned long long)P);
        if (d->grid == AM_GRID_GROUPS && !u)
            return cli_error(o, "--ulysses-size",
                             "%s groups the ranks of a node, but the %llu ranks are not placed "
                             "evenly over the %d nodes in rank order; accepted: --ulysses-size "
                             "U with U dividing P",
                             d->name, (unsigned long long)P, env->nodes);
        if (d->head_split == AM_COMM_WORLD && o->kv_heads < P)
            return cli_error(o, "--kv-heads",
                             "%s splits the K/V heads over the ranks: "
                             "kv-heads %llu < P = %llu; accepted: kv-heads >= P",
                             d->name, (unsigned long long)o->kv_heads, (unsigned long long)P);
        if (d->head_split == AM_COMM_GROUP && o->kv_heads < u)
            return cli_error(o, "--kv-heads",
                             "%s splits the K/V heads over the u = %llu ranks of a group: "
                             "kv-heads %llu < u; accepted: kv-heads >= u, or a smaller "
                             "--ulysses-size",
                             d->name, (unsigned long long)u, (unsigned long long)o->kv_heads);
    }
#ifdef ATTNSIM_HAVE_CUDA
    for (size_t i = 0; o->backend == BACKEND_CUDA && i < o->head_dim.n; i++) {
        kc_shape ks = {KN_BF16, 1, 1, 1, 1, 1, o->head_dim.v[i], 0, NULL, NULL};
        if (kc_fa2_path(&ks) == KC_PATH_UNSUPPORTED || o->head_dim.v[i] % 2)
            return cli_error(o, "--head-dim",
                             "%llu has no CUDA kernel; accepted with --backend cuda: "
                             "even values up to 256 (64 and 128 on tensor cores)",
                             (unsigned long long)o->head_dim.v[i]);
    }
#endif
    for (size_t i = 0; i < o->seq.n; i++)
        if (o->seq.v[i] < P)
            return cli_error(o, "--seq",
                             "N = %llu is smaller than the P = %llu ranks; accepted: "
                             "N >= P (every rank holds at least one token)",
                             (unsigned long long)o->seq.v[i], (unsigned long long)P);
    return 0;
}

/* Host memory of every point of the sweep, before any work: each rank's need
 * against what its address-space limit leaves, each node's ranks together against 80% of its
 * memory. Returns 0, or 2 with the line kept (cli_defer) for agree_outcome. */
static int check_memory(run_env *env)
{
    attn_opts *o = &env->o;
    int local = 0, with_root = env->node_of[env->rank] == env->node_of[0]; /* node_map */
    for (int r = 0; r < env->P; r++) local += env->node_of[r] == env->node_of[env->rank];
    hostmem hm;
    hostmem_query(&hm);
    const int cuda = o->backend == BACKEND_CUDA;
    env->mem_rank = env->mem_root = 0;
    for (int dt = 0; dt < 3; dt++) {
        if (!(o->dtypes & (1u << dt))) continue;
        for (size_t di = 0; di < o->head_dim.n; di++)
            for (size_t si = 0; si < o->seq.n; si++)
                for (int a = 0; a < AM_NUM_ALGOS; a++) {
                    if (!(o->algos & (1u << a))) continue;
                    am_config c;
                    sweep_config(o, &env->m, a, (uint64_t)env->P, o->seq.v[si], o->head_dim.v[di],
                                 0, dt, 0, env->ranks_per_node, &c);
                    double root = exec_host_bytes(&c, dt, 0, o->check, cuda);
                    double other = env->P > 1 ? exec_host_bytes(&c, dt, 1, o->check, cuda) : root;
                    double mine = env->rank == 0 ? root : other;
                    double on_node = local * other + (with_root ? root - other : 0);
                    env->mem_rank = fmax(env->mem_rank, other);
                    env->mem_root = fmax(env->mem_root, root);
                    char why[300], b[32];
                    if (hostmem_fits(&hm, mine, on_node, local, 0.8, why, sizeof why))
                        return cli_error(o, "--seq",
                                         "N = %llu (%s %s, d = %llu, %s) needs %s of host memory "
                                         "on rank %d, %s; accepted: smaller shapes, or more "
                                         "ranks or nodes",
                                         (unsigned long long)c.N, am_algo_name((am_algo)a),
                                         am_pass_names[c.pass], (unsigned long long)c.head_dim,
                                         kn_dtype_name((kn_dtype)dt),
                                         hostmem_format(mine, b, sizeof b), env->rank, why);
                }
    }
    return 0;
}

/* Per-rank results sent to rank 0: counts and time of every phase. */
typedef struct {
    uint64_t v[AM_MAX_PHASES][4];
    uint64_t inter[AM_MAX_PHASES][2]; /* bytes and messages sent to ranks on other nodes */
    double t[AM_MAX_PHASES];          /* the rank's own time in the phase */
    double start[AM_MAX_PHASES];      /* when the rank entered the phase, from the start barrier */
    double end[AM_MAX_PHASES];        /* when it left the phase */
} rank_report;

typedef struct {
    double max_abs, max_ref;
    int bad;
} err_acc;

static void compare_into(err_acc *a, const double *x, const double *ref, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (isinf(ref[i]) || isnan(x[i])) {
            a->bad |= x[i] != ref[i];
            continue;
        }
        a->max_abs = fmax(a->max_abs, fabs(x[i] - ref[i]));
        a->max_ref = fmax(a->max_ref, fabs(ref[i]));
    }
}

/* Gathers one output tensor (per-rank shards in the algorithm's layout) on rank 0 into the
 * whole-problem layout [b][heads][N][d], as float64. */
static double *gather_output(const exec_ctx *x, const kn_tensor *shard, size_t heads)
{
    const am_config *c = &x->cfg;
    size_t e = kn_dtype_bytes(x->dtype), d = c->head_dim, P = c->P;
    int *counts = NULL, *displs = NULL;
    char *all = NULL;
    int mine = (int)(shard->elems * e);
    if (x->rank == 0) {
        counts = kn_xmalloc(P * sizeof(int), "counts");
        displs = kn_xmalloc(P * sizeof(int), "displacements");
    }
    MPICALL(MPI_Gather(&mine, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD));
    size_t total = 0;
    if (x->rank == 0) {
        for (size_t r = 0; r < P; r++) displs[r] = (int)total, total += (size_t)counts[r];
        all = kn_xmalloc(total + 1, "gathered outputs");
    }
    MPICALL(
        MPI_Gatherv(shard->data, mine, MPI_BYTE, all, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD));
    double *full = NULL;
    if (x->rank == 0) {
        full = kn_xmalloc(c->batch * heads * c->N * d * sizeof(double) + 1, "output");
        for (size_t r = 0; r < P; r++) {
            size_t n;
            uint64_t *pos = exec_tokens_of(c, r, &n);
            kn_tensor view = exec_view(all + displs[r], x->dtype, c->batch * heads * n * d);
            for (size_t p = 0; p < c->batch * heads; p++)
                for (size_t j = 0; j < n; j++)
                    for (size_t a = 0; a < d; a++)
                        full[(p * c->N + pos[j]) * d + a] =
                            kn_tensor_get(&view, (p * n + j) * d + a);
            free(pos);
        }
        free(all), free(counts), free(displs);
    }
    return full;
}

/* What --check compared with (rank 0; recorded with the run). */
static const char *check_method = "";

/* --check: outputs (and gradients) against the float64 reference of the whole problem (or,
 * on the GPU and for large problems, a single-GPU run of the CUDA kernel). */
static void check_run(const exec_ctx *x, int bwd, double *max_abs, double *max_rel, int *passed)
{
    const am_config *c = &x->cfg;
    double *o = gather_output(x, &x->o, c->heads);
    double *dq = NULL, *dk = NULL, *dv = NULL;
    if (bwd) {
        dq = gather_output(x, &x->dq, c->heads);
        dk = gather_output(x, &x->dk, c->kv_heads);
        dv = gather_output(x, &x->dv, c->kv_heads);
    }
    if (x->rank != 0) return;
    kn_shape s = {c->batch, c->heads, c->kv_heads, c->N, c->N, c->head_dim, c->causal, NULL, NULL};
    kn_problem p;
    kn_problem_init(&p, &s, x->dtype, KN_NEED_FWD | (bwd ? KN_NEED_BWD : 0), x->seed);
    size_t qe = kn_q_elems(&s), ke = kn_kv_elems(&s);
    double *oref = NULL, *rq = NULL, *rk = NULL, *rv = NULL;
    check_method = "float64 reference of the whole problem";
#ifdef ATTNSIM_HAVE_CUDA
    /* beyond ~2^34 multiply-adds the float64 reference takes too long: a single-GPU run of the
     * CUDA FA2 kernel on the whole problem is the reference instead */
    if (x->dev == &exec_dev_cuda &&
        (double)c->batch * c->heads * c->N * c->N * c->head_dim > 17179869184.0) {
        check_method = "single-GPU CUDA FA2 kernel on the whole problem";
        exec_cuda_reference(&p, bwd, &oref, &rq, &rk, &rv);
    }
#endif
    if (!oref) {
        double *q = kn_tensor_to_f64(&p.t.q), *k = kn_tensor_to_f64(&p.t.k),
               *v = kn_tensor_to_f64(&p.t.v);
        double *lse = kn_xmalloc(kn_row_elems(&s) * sizeof(double), "lse");
        oref = kn_xmalloc(qe * sizeof(double), "reference");
        ref_attn_fwd_f64(&s, q, k, v, oref, lse);
        if (bwd) {
            double *d_o = kn_tensor_to_f64(&p.t.d_o);
            rq = kn_xmalloc(qe * sizeof(double), "ref");
            rk = kn_xmalloc(ke * sizeof(double), "ref");
            rv = kn_xmalloc(ke * sizeof(double), "ref");
            ref_attn_bwd_f64(&s, q, k, v, d_o, rq, rk, rv);
            free(d_o);
        }
        free(q), free(k), free(v), free(lse);
    }
    double tol = ref_tolerance(x->dtype);
    *passed = 1;
    *max_abs = *max_rel = 0.0;
    err_acc a = {0, 0, 0};
    compare_into(&a, o, oref, qe);
    if (bwd) {
        err_acc g[3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}};
        compare_into(&g[0], dq, rq, qe);
        compare_into(&g[1], dk, rk, ke);
        compare_into(&g[2], dv, rv, ke);
        for (int i = 0; i < 3; i++) {
            *passed &= !g[i].bad && g[i].max_abs <= tol * fmax(1.0, g[i].max_ref);
            *max_abs = fmax(*max_abs, g[i].max_abs);
            *max_rel = fmax(*max_rel, g[i].max_abs / fmax(g[i].max_ref, 1e-30));
        }
        free(rq), free(rk), free(rv), free(dq), free(dk), free(dv);
    }
    *passed &= !a.bad && a.max_abs <= tol * fmax(1.0, a.max_ref);
    *max_abs = fmax(*max_abs, a.max_abs);
    *max_rel = fmax(*max_rel, a.max_abs / fmax(a.max_ref, 1e-30));
    free(o), free(oref);
    kn_problem_free(&p);
}

static void fmt_ms(double s, char *buf, size_t n)
{
    snprintf(buf, n, "%.3f", s * 1e3);
}

/* Rank 0: compares, prints and records one run. Returns 1 when valid. */
static int report(run_env *env, const exec_ctx *x, const rank_report *all, int checked,
                  double max_abs, double max_rel, int passed)
{
    const am_config *c = &x->cfg;
    int P = env->P;
    machine m = env->m;
    /* the tiers follow the actual placement when ranks are packed evenly in rank order */
    if (env->ranks_per_node) m.gpus_per_node = env->ranks_per_node;
    am_prediction pr;
    am_predict(c, &m, 1, &pr);
    int F = pr.F, match = 1;
    char first[300] = "";
    static const char *const what[4] = {"bytes_sent", "bytes_recv", "messages_sent",
                                        "messages_recv"};
    for (int r = 0; r < P && match; r++)
        for (int f = 0; f < F && match; f++) {
            const am_count *pc = &pr.per_rank[(size_t)r * F + f];
            uint64_t want[4] = {pc->bytes_sent, pc->bytes_recv, pc->msgs_sent, pc->msgs_recv};
            for (int k = 0; k < 4 && match; k++)
                if (all[r].v[f][k] != want[k]) {
                    match = 0;
                    snprintf(first, sizeof first,
                             "rank %d, phase %s: %s measured %llu, predicted %llu", r,
                             pr.phases[f]->name, what[k], (unsigned long long)all[r].v[f][k],
                             (unsigned long long)want[k]);
                }
        }
    /* the tier of every message: what each rank sent to other nodes, as the model places it */
    int64_t *tier_pred = kn_xmalloc((size_t)P * F * 2 * sizeof(int64_t) + 1, "tiers");
    int tiers_match = 1;
    uint64_t inter_msgs = 0;
    char first_tier[300] = "";
    for (int r = 0; r < P; r++) {
        am_count ic[AM_MAX_PHASES];
        am_rank_inter_counts(c, &m, (uint64_t)r, ic);
        for (int f = 0; f < F; f++) {
            int64_t *tp = tier_pred + 2 * ((size_t)r * F + f);
            tp[0] = (int64_t)ic[f].bytes_sent, tp[1] = (int64_t)ic[f].msgs_sent;
            inter_msgs += all[r].inter[f][1];
            if (tiers_match &&
                (all[r].inter[f][0] != ic[f].bytes_sent || all[r].inter[f][1] != ic[f].msgs_sent)) {
                tiers_match = 0;
                snprintf(first_tier, sizeof first_tier,
                         "rank %d, phase %s: sent to other nodes %llu bytes in %llu messages, "
                         "the model %llu in %llu",
                         r, pr.phases[f]->name, (unsigned long long)all[r].inter[f][0],
                         (unsigned long long)all[r].inter[f][1],
                         (unsigned long long)ic[f].bytes_sent, (unsigned long long)ic[f].msgs_sent);
            }
        }
    }
    const am_algo_desc *d = am_algo_desc_of(c->algo);
    char grid[32] = "-";
    if (d->grid != AM_GRID_LINE)
        snprintf(grid, sizeof grid, "%llux%llu", (unsigned long long)c->rows,
                 (unsigned long long)c->cols);
    printf(
        "# %s%s%s %s, P = %d, grid %s, N = %llu, batch %llu, heads %llu, kv-heads %llu, d = %llu, "
        "causal %s, %s\n",
        d->name, d->uses_layout ? " " : "", d->uses_layout ? am_layout_names[c->layout] : "",
        am_pass_names[c->pass], P, grid, (unsigned long long)c->N, (unsigned long long)c->batch,
        (unsigned long long)c->heads, (unsigned long long)c->kv_heads,
        (unsigned long long)c->head_dim, c->causal ? "yes" : "no", kn_dtype_name(x->dtype));
    /* a table: units in the column names, numbers in the cells (maxima over the ranks) */
    printf("#   %-24s %14s %14s %8s %9s %14s %12s %12s %7s\n", "phase", "sent_B_max", "pred_sent_B",
           "msgs_max", "pred_msgs", "recv_B_max", "crit_ms", "pred_ms", "err_pct");
    /* Measured phase time for the synchronous model: from the last rank to enter the phase to
     * the last to leave it (times from the barrier that starts the run). A rank's own phase
     * time also holds its wait for slower ranks; the local work between phases (packing,
     * assembling gathered blocks) belongs to no phase and shows in the total only. */
    double crit[AM_MAX_PHASES], last_end = 0.0;
    uint64_t meas_sent_max = 0;
    for (int r = 0; r < P; r++) {
        uint64_t s = 0;
        for (int f = 0; f < F; f++) s += all[r].v[f][0];
        meas_sent_max = s > meas_sent_max ? s : meas_sent_max;
    }
    for (int f = 0; f < F; f++) {
        uint64_t sent = 0, recv = 0, msgs = 0;
        double end = 0.0, start = 0.0;
        for (int r = 0; r < P; r++) {
            sent = all[r].v[f][0] > sent ? all[r].v[f][0] : sent;
            recv = all[r].v[f][1] > recv ? all[r].v[f][1] : recv;
            msgs = all[r].v[f][2] > msgs ? all[r].v[f][2] : msgs;
            end = fmax(end, all[r].end[f]);
            start = fmax(start, all[r].start[f]);
        }
        crit[f] = fmax(end - start, 0.0);
        last_end = fmax(last_end, end);
        char tm[32], tp[32];
        fmt_ms(crit[f], tm, sizeof tm);
        fmt_ms(pr.time.phase_s[f], tp, sizeof tp);
        printf("    %-24s %14llu %14llu %8llu %9llu %14llu %12s %12s %+7.1f\n", pr.phases[f]->name,
               (unsigned long long)sent, (unsigned long long)pr.max[f].bytes_sent,
               (unsigned long long)msgs, (unsigned long long)pr.max[f].msgs_sent,
               (unsigned long long)recv, tm, tp,
               crit[f] > 0 ? 100.0 * (pr.time.phase_s[f] - crit[f]) / crit[f] : 0.0);
    }
    double meas_total = last_end;
    char checktxt[120] = "not checked (--check)";
    if (checked)
        snprintf(checktxt, sizeof checktxt, "check %s (max abs err %.2e, rel %.2e)",
                 passed ? "passed" : "FAILED", max_abs, max_rel);
    int valid = match && (!checked || passed);
    if (match)
        printf("# %s: measured == predicted bytes and messages on all %d ranks and %d phases; %s; "
               "%.3f ms (predicted %.3f ms on %s, %+.1f%%). %s\n",
               am_algo_name(c->algo), P, F, checktxt, meas_total * 1e3, pr.time.total_s * 1e3,
               m.name, 100.0 * (pr.time.total_s - meas_total) / meas_total,
               valid ? "VALID" : "INVALID");
    else
        printf("# %s: COUNTS DIFFER: %s; %s. INVALID\n", am_algo_name(c->algo), first, checktxt);
    if (tiers_match)
        printf("# tiers: every message crossed nodes or stayed on its node as the model places it "
               "(%llu inter-node messages, %llu ranks per node)\n",
               (unsigned long long)inter_msgs, (unsigned long long)m.gpus_per_node);
    else
        printf("# warning: TIERS DIFFER from the model's placement (%llu ranks per node, in rank "
               "order): %s\n",
               (unsigned long long)m.gpus_per_node, first_tier);
    const char *warn = am_unmeasured_tier_note(&m, &pr.time);
    if (warn) printf("# warning: %s\n", warn);
    fflush(stdout);

    if (env->h) {
        int64_t id;
        hid_t g = h5out_run_begin(env->h, &id);
        record_config_attrs(g, "distributed", c, cli_backend_names[env->o.backend],
                            cli_comm_names[env->o.comm], &m);
        h5_attr_i64(g, "seed", (int64_t)x->seed);
        h5_attr_i64(g, "reps", env->o.reps ? (int64_t)env->o.reps : 1);
        h5_attr_i64(g, "counts_match", match);
        if (!match) h5_attr_str(g, "first_difference", first);
        h5_attr_i64(g, "tiers_match", tiers_match);
        if (!tiers_match) h5_attr_str(g, "first_tier_difference", first_tier);
        if (checked) {
            h5_attr_f64(g, "max_abs_err", max_abs);
            h5_attr_f64(g, "max_rel_err", max_rel);
            h5_attr_i64(g, "check_passed", passed);
            h5_attr_str(g, "check_method", check_method);
        }
        int32_t *map = kn_xmalloc((size_t)P * 4 * sizeof(int32_t), "rank map");
        for (int r = 0; r < P; r++) {
            map[4 * r] = r;
            map[4 * r + 1] = env->node_of[r];
            map[4 * r + 2] = (int32_t)grid_row((uint64_t)r, c->rows);
            map[4 * r + 3] = (int32_t)grid_col((uint64_t)r, c->rows);
        }
        record_prediction(g, &pr, map, NULL);
        hsize_t pf[2] = {(hsize_t)P, (hsize_t)F};
        int64_t *a = kn_xmalloc((size_t)P * F * sizeof(int64_t) + 1, "measured");
        double *tt = kn_xmalloc((size_t)P * F * sizeof(double) + 1, "measured");
        static const char *const paths[3] = {"measured/bytes_sent", "measured/bytes_recv",
                                             "measured/messages"};
        static const char *const units[3] = {"bytes", "bytes", "messages"};
        for (int k = 0; k < 3; k++) {
            for (int r = 0; r < P; r++)
                for (int f = 0; f < F; f++) a[(size_t)r * F + f] = (int64_t)all[r].v[f][k];
            h5_write(g, paths[k], H5T_NATIVE_INT64, 2, pf, a, units[k]);
        }
        static const char *const tier_paths[2][2] = {
            {"measured/bytes_sent_inter", "measured/messages_inter"},
            {"predicted/bytes_sent_inter", "predicted/messages_inter"}};
        for (int k = 0; k < 2; k++) {
            for (int r = 0; r < P; r++)
                for (int f = 0; f < F; f++) a[(size_t)r * F + f] = (int64_t)all[r].inter[f][k];
            h5_write(g, tier_paths[0][k], H5T_NATIVE_INT64, 2, pf, a, units[2 * k]);
            for (size_t i = 0; i < (size_t)P * F; i++) a[i] = tier_pred[2 * i + k];
            h5_write(g, tier_paths[1][k], H5T_NATIVE_INT64, 2, pf, a, units[2 * k]);
        }
        for (int r = 0; r < P; r++)
            for (int f = 0; f < F; f++) tt[(size_t)r * F + f] = all[r].t[f];
        h5_write(g, "measured/time_s", H5T_NATIVE_DOUBLE, 2, pf, tt, "s");
        for (int r = 0; r < P; r++)
            for (int f = 0; f < F; f++) tt[(size_t)r * F + f] = all[r].start[f];
        h5_write(g, "measured/phase_start_s", H5T_NATIVE_DOUBLE, 2, pf, tt, "s");
        for (int r = 0; r < P; r++)
            for (int f = 0; f < F; f++) tt[(size_t)r * F + f] = all[r].end[f];
        h5_write(g, "measured/phase_end_s", H5T_NATIVE_DOUBLE, 2, pf, tt, "s");
        hsize_t fd[1] = {(hsize_t)F};
        h5_write(g, "measured/critical_path_phase_s", H5T_NATIVE_DOUBLE, 1, fd, crit, "s");
        /* who sent how much to whom (the monitoring cross-check compares these) */
        hsize_t pp[2] = {(hsize_t)P, (hsize_t)P};
        h5_write(g, "measured/peer_bytes_sent", H5T_NATIVE_UINT64, 2, pp, env->peers, "bytes");
        h5_write(g, "measured/peer_messages_sent", H5T_NATIVE_UINT64, 2, pp,
                 env->peers + (size_t)P * P, "messages");
        h5_summary_row row;
        summary_from_prediction(&row, "distributed", &pr, cli_backend_names[env->o.backend]);
        row.check_passed = checked ? passed : -1;
        row.measured_time_s = meas_total;
        row.measured_bytes_max = (int64_t)meas_sent_max;
        h5out_run_commit(env->h, g, &row);
        free(a), free(tt), free(map);
    }
    free(tier_pred);
    am_prediction_free(&pr);
    return valid;
}

/* One configuration on every rank; returns 1 when valid (same answer on every rank). */
static int run_one(run_env *env, const am_config *cfg, kn_dtype dtype)
{
    exec_ctx x;
    memset(&x, 0, sizeof x);
    x.cfg = *cfg;
    x.dtype = dtype;
    x.seed = env->o.seed;
    size_t need = kn_fa2_bwd_working_set(1, 1, cfg->head_dim);
    x.sram = need * 2 > 32768 ? need * 2 : 32768;
    x.rank = env->rank;
    x.dev = &exec_dev_cpu;
    comm_mode mode = COMM_HOST;
#ifdef ATTNSIM_HAVE_CUDA
    if (env->o.backend == BACKEND_CUDA) {
        x.dev = &exec_dev_cuda;
        mode = env->o.comm == COMM_NCCL ? COMM_DEV_NCCL : COMM_STAGED;
    }
    void *stream = env->o.backend == BACKEND_CUDA ? exec_cuda_stream() : NULL;
#else
    void *stream = NULL;
#endif
    comm_init(&x.comm, cfg, MPI_COMM_WORLD, mode, stream, x.dev->alloc, x.dev->release);
    x.comm.node_of = env->node_of;
    x.pos = exec_pos_of(&x, (uint64_t)env->rank);
    x.n = x.pos.n;
    size_t qe = cfg->batch * cfg->heads * x.n * cfg->head_dim;
    size_t ke = cfg->batch * cfg->kv_heads * x.n * cfg->head_dim;
    int bwd = cfg->pass != AM_FWD;
    /* inputs: generated on the host, then put on the device */
    struct {
        kn_tensor *t;
        kn_gen_tensor which;
        size_t heads, elems;
        const char *what;
    } in[4] = {{&x.q, KN_GEN_Q, cfg->heads, qe, "Q shard"},
               {&x.k, KN_GEN_K, cfg->kv_heads, ke, "K shard"},
               {&x.v, KN_GEN_V, cfg->kv_heads, ke, "V shard"},
               {&x.d_o, KN_GEN_DO, cfg->heads, qe, "dO shard"}};
    for (int i = 0; i < (bwd ? 4 : 3); i++) {
        kn_tensor h;
        kn_tensor_alloc(&h, dtype, in[i].elems, in[i].what);
        exec_fill(&x, &h, in[i].which, in[i].heads, x.pos.h, x.n);
        xd_tensor(&x, in[i].t, dtype, in[i].elems, in[i].what);
        x.dev->upload(in[i].t->data, h.data, in[i].elems * kn_dtype_bytes(dtype));
        kn_tensor_free(&h);
    }
    xd_tensor(&x, &x.o, dtype, qe, "O shard");
    xd_tensor(&x, &x.lse, KN_F32, cfg->batch * cfg->heads * x.n, "LSE shard");
    if (bwd) {
        xd_tensor(&x, &x.dq, dtype, qe, "dQ shard");
        xd_tensor(&x, &x.dk, dtype, ke, "dK shard");
        xd_tensor(&x, &x.dv, dtype, ke, "dV shard");
    }
    x.dev->sync();
    const exec_algo *algo = exec_algo_of(cfg->algo);
    /* --reps: every repetition is recorded afresh; the one of median total time is reported */
    int reps = env->o.reps ? (int)env->o.reps : 1;
    comm_stats(*keep)[AM_MAX_PHASES] = kn_xmalloc((size_t)reps * sizeof *keep, "repetitions");
    double *total = kn_xmalloc((size_t)reps * sizeof *total, "repetitions");
    for (int r = 0; r < reps; r++) {
        memset(x.comm.st, 0, sizeof x.comm.st);
        memset(x.comm.peer_bytes, 0, (size_t)env->P * sizeof(uint64_t));
        memset(x.comm.peer_msgs, 0, (size_t)env->P * sizeof(uint64_t));
        MPICALL(MPI_Barrier(MPI_COMM_WORLD));
        comm_clock_arm(&x.comm); /* times count from the barrier at the first recorded phase */
        x.comm.recording = cfg->pass != AM_BWD; /* a bwd pass runs its forward unrecorded */
        algo->forward(&x);
        x.comm.recording = 1;
        if (bwd) algo->backward(&x);
        double end = 0.0;
        for (int f = 0; f < x.comm.F; f++) end = fmax(end, x.comm.st[f].end_s);
        MPICALL(MPI_Allreduce(&end, &total[r], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
        memcpy(keep[r], x.comm.st, sizeof x.comm.st);
    }
    int med = 0; /* the repetition of median total (the same on every rank) */
    for (int r = 0; r < reps; r++) {
        int below = 0, equal_before = 0;
        for (int q = 0; q < reps; q++) {
            below += total[q] < total[r];
            equal_before += total[q] == total[r] && q < r;
        }
        if (below + equal_before == (reps - 1) / 2) med = r;
    }
    memcpy(x.comm.st, keep[med], sizeof x.comm.st);
    free(keep), free(total);
    attn_kill_point("run:after_passes");
    /* outputs back to the host (the check reads them there); inputs released */
    kn_tensor *outs[] = {&x.o, &x.lse, &x.dq, &x.dk, &x.dv};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        if (!outs[i]->data) continue;
        kn_tensor h;
        kn_tensor_alloc(&h, outs[i]->dtype, outs[i]->elems, "output");
        x.dev->download(h.data, outs[i]->data, outs[i]->elems * kn_dtype_bytes(h.dtype));
        xd_tensor_free(&x, outs[i]);
        *outs[i] = h;
    }
    const char *fault = getenv("ATTNSIM_FAULT_OUTPUT"); /* test hook: spoil one output value */
    if (fault && atoi(fault) == env->rank && x.o.elems)
        kn_tensor_set(&x.o, 0, kn_tensor_get(&x.o, 0) + 1.0f);

    rank_report mine;
    memset(&mine, 0, sizeof mine);
    for (int f = 0; f < x.comm.F; f++) {
        mine.v[f][0] = x.comm.st[f].bytes_sent, mine.v[f][1] = x.comm.st[f].bytes_recv;
        mine.v[f][2] = x.comm.st[f].msgs_sent, mine.v[f][3] = x.comm.st[f].msgs_recv;
        mine.inter[f][0] = x.comm.st[f].bytes_sent_inter;
        mine.inter[f][1] = x.comm.st[f].msgs_sent_inter;
        mine.t[f] = x.comm.st[f].time_s;
        mine.start[f] = x.comm.st[f].start_s;
        mine.end[f] = x.comm.st[f].end_s;
    }
    rank_report *all = env->rank == 0 ? kn_xmalloc((size_t)env->P * sizeof *all, "reports") : NULL;
    uint64_t *peers =
        env->rank == 0 ? kn_xmalloc(2 * (size_t)env->P * env->P * sizeof(uint64_t), "peers") : NULL;
    MPICALL(MPI_Gather(x.comm.peer_bytes, env->P, MPI_UINT64_T, peers, env->P, MPI_UINT64_T, 0,
                       MPI_COMM_WORLD));
    MPICALL(MPI_Gather(x.comm.peer_msgs, env->P, MPI_UINT64_T,
                       peers ? peers + (size_t)env->P * env->P : NULL, env->P, MPI_UINT64_T, 0,
                       MPI_COMM_WORLD));
    env->peers = peers;
    MPICALL(MPI_Gather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, 0,
                       MPI_COMM_WORLD));
    double max_abs = 0, max_rel = 0;
    int passed = 1;
    if (env->o.check) check_run(&x, bwd, &max_abs, &max_rel, &passed);
    int valid = 1;
    if (env->rank == 0) valid = report(env, &x, all, env->o.check, max_abs, max_rel, passed);
    MPICALL(MPI_Bcast(&valid, 1, MPI_INT, 0, MPI_COMM_WORLD));
    algo->release(&x);
    kn_tensor *ts[] = {&x.q, &x.k, &x.v, &x.d_o};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) xd_tensor_free(&x, ts[i]);
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) kn_tensor_free(outs[i]);
    exec_pos_free(&x, &x.pos);
    x.dev->sync();
    free(all);
    free(peers);
    env->peers = NULL;
    comm_free(&x.comm);
    return valid;
}

int cmd_run(int argc, char **argv, int full_argc, char **full_argv)
{
    int init = 0;
    MPICALL(MPI_Initialized(&init));
    if (!init) MPICALL(MPI_Init(&full_argc, &full_argv));
    run_env env;
    memset(&env, 0, sizeof env);
    MPICALL(MPI_Comm_rank(MPI_COMM_WORLD, &env.rank));
    MPICALL(MPI_Comm_size(MPI_COMM_WORLD, &env.P));
    MPICALL(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    attn_fail_set_rank(env.rank);
    cli_set_root(env.rank == 0);
    cli_defer(1); /* until the ranks have compared what they parsed */
    attn_opts *o = &env.o;
    o->algos = (1u << ALGO_RING) | (1u << ALGO_A2D_NO) | (1u << ALGO_A2D_O);
    o->layout = LAYOUT_CONTIGUOUS;
    o->seq.n = 1, o->seq.v[0] = 512;
    o->batch = 1, o->heads = 4;
    o->head_dim.n = 1, o->head_dim.v[0] = 32;
    o->causal = 1;
    o->pass = AM_FWD;
    o->dtypes = 0; /* f32 on the CPU, bf16 on the GPU (after parsing) */
    o->backend = BACKEND_CPU, o->comm = COMM_MPI;
    o->machine = "dgx-h100";
    o->seed = 1;
    int rc = cli_parse(&run_cmd, argc, argv, o);
    if (!o->dtypes) o->dtypes = 1u << (o->backend == BACKEND_CUDA ? KN_BF16 : KN_F32);
    rc = agree_options(o, rc, MPI_COMM_WORLD); /* the same answer on every rank */
    if (rc) { /* every rank leaves here, whatever subcommand it runs */
        MPI_Finalize();
        return rc == 1 ? 0 : rc;
    }
    node_map(&env);
    rc = cli_check_outputs(o); /* rank 0 */
    if (rc == 0) rc = validate(&env);
    MPICALL(MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
#ifdef ATTNSIM_HAVE_CUDA
    if (rc == 0 && o->backend == BACKEND_CUDA) rc = gpu_bind(o, env.rank, env.P, &env.device);
#endif
    char err[600] = "";
    if (rc == 0 && env.rank == 0 && machine_load(o->machine, &env.m, err, sizeof err))
        rc = cli_error(o, "--machine", "%s", err);
    MPICALL(MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (rc) {
        free(env.node_of), free(env.hosts);
        MPI_Finalize();
        return rc == 1 ? 0 : rc;
    }
    MPICALL(MPI_Bcast(&env.m, (int)sizeof env.m, MPI_BYTE, 0, MPI_COMM_WORLD));
    cli_defer(1); /* every rank checks its own memory; rank 0 speaks for the job */
    rc = agree_outcome(o, check_memory(&env), MPI_COMM_WORLD);
    if (rc) {
        free(env.node_of), free(env.hosts);
        MPI_Finalize();
        return rc;
    }

    int ok = 1, runs = 0;
    if (env.rank == 0) {
        char **names = kn_xmalloc((size_t)env.P * sizeof(char *), "host names");
        for (int r = 0; r < env.P; r++) {
            names[r] = strdup(env.hosts + 64 * r);
            if (!names[r]) kn_fatal("strdup", "out of memory");
        }
        prov_init(&env.prov, full_argc, full_argv);
        prov_set_hosts(&env.prov, names, (size_t)env.P);
        env.h = o->out ? h5out_open(o->out, &env.prov) : NULL;
        printf("# attnsim run: %d ranks on %d node(s), backend %s, comm %s (%s); predictions on "
               "%s\n",
               env.P, env.nodes, cli_backend_names[o->backend], cli_comm_names[o->comm],
               o->backend == BACKEND_CPU ? "point-to-point rings"
               : o->comm == COMM_NCCL    ? "NCCL send/recv rings"
                                         : "point-to-point rings staged through host memory",
               env.m.name);
        char a[32], b[32];
        printf("# host memory: at most %s per rank, %s on rank 0 (estimate, checked before the "
               "run)\n",
               hostmem_format(env.mem_rank, a, sizeof a),
               hostmem_format(env.mem_root, b, sizeof b));
    }
    int total = 0;
    for (int dt = 0; dt < 3; dt++)
        for (int causal = 0; causal < 2; causal++)
            for (int a = 0; a < AM_NUM_ALGOS; a++)
                total += ((o->dtypes >> dt) & 1) * ((o->causal >> causal) & 1) *
                         ((o->algos >> a) & 1) * (int)(o->head_dim.n * o->seq.n);
    double sweep_t0 = MPI_Wtime();
    for (int dt = 0; dt < 3; dt++) {
        if (!(o->dtypes & (1u << dt))) continue;
        for (size_t di = 0; di < o->head_dim.n; di++)
            for (int causal = 0; causal < 2; causal++) {
                if (!(o->causal & (1u << causal))) continue;
                for (size_t si = 0; si < o->seq.n; si++)
                    for (int a = 0; a < AM_NUM_ALGOS; a++) {
                        if (!(o->algos & (1u << a))) continue;
                        if (runs > 0 && env.rank == 0) { /* progress of a sweep, on stderr */
                            double el = MPI_Wtime() - sweep_t0;
                            fprintf(stderr,
                                    "attnsim run: progress %d/%d runs, %.1f s elapsed, "
                                    "~%.1f s remaining\n",
                                    runs, total, el, el / runs * (total - runs));
                        }
                        am_config c;
                        sweep_config(o, &env.m, a, (uint64_t)env.P, o->seq.v[si], o->head_dim.v[di],
                                     causal, dt, 0, env.ranks_per_node, &c);
                        ok &= run_one(&env, &c, (kn_dtype)dt);
                        runs++;
                    }
            }
    }
    if (env.rank == 0) {
        /* exactly what was checked: the counts always, the outputs with --check */
        const char *checked = !o->check ? "outputs not checked (--check)"
                              : o->pass == AM_FWD
                                  ? "every output matches the reference"
                                  : "every output and gradient matches the reference";
        if (ok)
            printf("# %d runs: measured == predicted bytes and messages on every rank and phase; "
                   "%s. VALID\n",
                   runs, checked);
        else
            printf("# %d runs: some run is INVALID (see above)\n", runs);
        char shown[4200];
        if (o->out)
            printf("# wrote %d runs to %s\n", runs, outputs_display(o->out, shown, sizeof shown));
        h5out_close(env.h);
        prov_free(&env.prov);
    }
    free(env.node_of);
    free(env.hosts);
    MPICALL(MPI_Finalize());
    return ok ? 0 : 1;
}
