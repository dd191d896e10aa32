/* cmd_run.c - `attnsim run`: execute distributed attention under MPI (one rank per "device":
 * the CPU, or one GPU with --backend cuda), count every byte, and compare with the model.
 *
 * For each point of the sweep (dtype x head dim x causal x N x algorithm): every rank builds its
 * shard from the seed, runs the algorithm's passes (exec_*.c) through the counting comm layer,
 * and sends its per-phase counters and times to rank 0, which computes the prediction with the
 * model's functions (models/predict.h), compares every rank and phase (any difference is an
 * error naming the first one), optionally checks the outputs against the float64 reference of
 * the whole problem (run_check.c), prints a table and writes one kind=distributed run
 * (run_report.c).
 * Exit status: 0 all runs valid; 1 a count differed or a check failed; 2 bad input (one line on
 * rank 0, nothing written, every rank exits).
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cli.h"
#include "commands.h"
#include "comm_dev.h"
#include "fail.h"
#include "hostmem.h"
#include "outputs.h"
#include "progress.h"
#include "predict.h"
#include "run.h"
#include "sweep.h"
#include "timing.h"
#ifdef ATTNSIM_HAVE_CUDA
#include "dev_cuda.h"
#include "gpu_bind.h"
#endif

static const opt_id run_opts[] = {
    OPT_ALGO,         OPT_LAYOUT,   OPT_SEQ,     OPT_BATCH,         OPT_HEADS,
    OPT_KV_HEADS,     OPT_HEAD_DIM, OPT_CAUSAL,  OPT_GRID,          OPT_ULYSSES_SIZE,
    OPT_PASS,         OPT_DTYPE,    OPT_BACKEND, OPT_COMM,          OPT_MACHINE,
    OPT_CHECK,        OPT_SEED,     OPT_REPS,    OPT_RANK_ARRAYS,   OPT_OUT,
    OPT_LOCK_TIMEOUT, OPT_PROGRESS, OPT_PROFILE, OPT_OVERLAP_PROBE, OPT_END};

static const cli_command run_cmd = {
    "run",
    "execute distributed attention under MPI and record measured + predicted",
    "Executes the distributed attention algorithms (--algo) across the MPI ranks\n"
    "(mpirun -n P: one rank per device), counting the bytes and messages of every phase on every\n"
    "rank, and compares them with the model's prediction (they must be equal). --check compares\n"
    "the outputs (and gradients) with a float64 single-device reference. --backend cuda: each\n"
    "rank drives one GPU (local rank modulo the GPUs of its node, or ATTNSIM_DEVICE), f16/bf16;\n"
    "--comm mpi stages device buffers through host memory (ranks may share a GPU), --comm nccl\n"
    "uses NCCL point-to-point (one rank per GPU). Defaults: --algo ring,a2d-no,a2d-o --layout\n"
    "contiguous --seq 512 --batch 1 --heads 4 --head-dim 32 --causal=no --pass fwd --dtype f32\n"
    "(bf16 with --backend cuda) --backend cpu --comm mpi --machine dgx-h100 --seed 1 --reps 1\n"
    "--rank-arrays 4096; --grid: the square grid (P must be a square) unless RxC or auto is\n"
    "given; --ulysses-size: the ranks of one node. --reps R runs the passes R times and reports\n"
    "the repetition of median total time, the first left out where R > 1: it warms the device's\n"
    "memory pool and caches (counts are per pass).",
    run_opts,
    NULL,
    256};

/* Attention FLOPs a run executes: every visible pair of every head, its repetitions. */
static double run_flops(const attn_opts *o, uint64_t N, uint64_t d, int causal)
{
    double pairs =
        attn_tile_pairs(causal, (double)N, (double)N, 1) * (double)o->batch * (double)o->heads;
    double per = o->pass == AM_BWD     ? (double)attn_pair_flops(d, 1)
                 : o->pass == AM_TRAIN ? (double)(attn_pair_flops(d, 0) + attn_pair_flops(d, 1))
                                       : (double)attn_pair_flops(d, 0);
    return pairs * per * (double)(o->reps ? o->reps : 1);
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
    void *stream = env->o.backend == BACKEND_CUDA ? dev_cuda_stream() : NULL;
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
    comm_steps(*ksteps)[AM_MAX_PHASES] = kn_xcalloc((size_t)reps, sizeof *ksteps, "repetitions");
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
        comm_steps_save(&x.comm, ksteps[r]);
    }
    /* the repetition of median total (the same on every rank); where there are several, the
     * first only warms the device's memory pool and caches (a phase's blocks come from the pool
     * from the second on) and is not a candidate */
    size_t skip = reps > 1, med = skip + timing_median_index(total + skip, (size_t)reps - skip);
    /* --overlap-probe: once more with every overlapped step's transfers before its compute,
     * timed: what the transfers take alone (not a candidate for the reported repetition) */
    comm_steps probe[AM_MAX_PHASES];
    memset(probe, 0, sizeof probe);
    if (env->o.overlap_probe) {
        MPICALL(MPI_Barrier(MPI_COMM_WORLD));
        comm_clock_arm(&x.comm);
        x.comm.serial = 1;
        x.comm.recording = cfg->pass != AM_BWD;
        algo->forward(&x);
        x.comm.recording = 1;
        if (bwd) algo->backward(&x);
        x.comm.serial = 0;
        comm_steps_save(&x.comm, probe);
    }
    /* the timed passes are done: what the device kept for them goes (the outputs' host copies
     * and the check count on no pool) */
    if (x.dev->trim) x.dev->trim();
    memcpy(x.comm.st, keep[med], sizeof x.comm.st);
    comm_steps *chosen = ksteps[med];
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
    /* the overlapped phases' steps: sums in the report, every step gathered on rank 0 */
    const comm_steps *probed = env->o.overlap_probe ? probe : NULL;
    run_steps_sums(chosen, probed, x.comm.F, &mine);
    step_tables tables;
    run_steps_gather(chosen, probed, x.comm.F, env->rank, env->P, &tables);
    for (int r = 0; r < reps; r++) comm_steps_free(ksteps[r]);
    free(ksteps);
    comm_steps_free(probe);
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
    run_check_result chk = {0, 1, 0.0, 0.0, ""};
    if (env->o.check) run_check(&x, bwd, &chk);
    int valid = 1;
    if (env->rank == 0) valid = run_report(env, &x, all, &tables, &chk);
    run_steps_free(&tables);
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
    o->rank_arrays = 4096;
    int rc = cli_parse(&run_cmd, argc, argv, o);
    if (!o->dtypes) o->dtypes = 1u << (o->backend == BACKEND_CUDA ? KN_BF16 : KN_F32);
    rc = agree_options(o, rc, MPI_COMM_WORLD); /* the same answer on every rank */
    if (rc) { /* every rank leaves here, whatever subcommand it runs */
        MPI_Finalize();
        return rc == 1 ? 0 : rc;
    }
    run_node_map(&env);
    rc = cli_check_outputs(o); /* rank 0 */
    if (rc == 0) rc = run_validate(&env);
    MPICALL(MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
#ifdef ATTNSIM_HAVE_CUDA
    if (rc == 0 && o->backend == BACKEND_CUDA) rc = gpu_bind(o, env.rank, env.P, &env.device);
#endif
    char err[600] = "";
    if (rc == 0 && env.rank == 0 && machine_load(o->machine, &env.m, err, sizeof err))
        rc = cli_error(o, "--machine", "%s", err);
    if (rc == 0 && env.rank == 0 && o->profile &&
        profile_load(o->profile, &env.m.prof, err, sizeof err))
        rc = cli_error(o, "--profile", "%s", err);
    MPICALL(MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (rc) {
        free(env.node_of), free(env.hosts);
        MPI_Finalize();
        return rc == 1 ? 0 : rc;
    }
    MPICALL(MPI_Bcast(&env.m, (int)sizeof env.m, MPI_BYTE, 0, MPI_COMM_WORLD));
    cli_defer(1); /* every rank checks its own memory; rank 0 speaks for the job */
    rc = agree_outcome(o, run_check_memory(&env), MPI_COMM_WORLD);
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
        env.h = o->out ? h5out_open(o->out, &env.prov, cli_lock_timeout(o)) : NULL;
        printf("# attnsim run: %d ranks on %d node(s), backend %s, comm %s (%s); predictions on "
               "%s, implementation profile %s\n",
               env.P, env.nodes, cli_backend_names[o->backend], cli_comm_names[o->comm],
               o->backend == BACKEND_CPU ? "point-to-point rings"
               : o->comm == COMM_NCCL    ? "NCCL send/recv rings"
                                         : "point-to-point rings staged through host memory",
               env.m.name, env.m.prof.name);
        char a[32], b[32];
        printf("# host memory: at most %s per rank, %s on rank 0 (estimate, checked before the "
               "run)\n",
               hostmem_format(env.mem_rank, a, sizeof a),
               hostmem_format(env.mem_root, b, sizeof b));
    }
    /* progress (rank 0): the work of a run is the attention FLOPs of its repetitions */
    enum { DT, HD, CA, SQ, AL };
    sweep_iter sw = {0};
    double total_flops = 0;
    for (int pass = 0; pass < 2; pass++) { /* the sweep's work, then the sweep to run */
        memset(&sw, 0, sizeof sw);
        sweep_mask(&sw, o->dtypes, KN_NUM_DTYPES), sweep_list(&sw, &o->head_dim);
        sweep_mask(&sw, o->causal, 2), sweep_list(&sw, &o->seq);
        sweep_mask(&sw, o->algos, AM_NUM_ALGOS);
        while (pass == 0 && sweep_next(&sw))
            total_flops += run_flops(o, sw.v[SQ], sw.v[HD], (int)sw.v[CA]);
    }
    progress prog;
    progress_begin(&prog, "run", o->progress && env.rank == 0, (long)sweep_total(&sw), total_flops,
                   "FLOP");
    if (env.rank != 0) prog.on = 0;
    while (sweep_next(&sw)) {
        am_config c;
        sweep_config(o, &env.m, (int)sw.v[AL], (uint64_t)env.P, sw.v[SQ], sw.v[HD], (int)sw.v[CA],
                     (int)sw.v[DT], 0, env.ranks_per_node, &c);
        ok &= run_one(&env, &c, (kn_dtype)sw.v[DT]);
        runs++;
        progress_step(&prog, run_flops(o, c.N, c.head_dim, (int)sw.v[CA]));
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
        progress_end(&prog);
        prov_free(&env.prov);
    }
    free(env.node_of);
    free(env.hosts);
    MPICALL(MPI_Finalize());
    return ok ? 0 : 1;
}
