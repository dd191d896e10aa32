/* cmd_kernels.c - `attnsim kernels`: the single-device kernel study.
 *
 * For every configuration (storage type x head dim x causal x N x N_k x SRAM size x kernel):
 * build the inputs from the seed, run the kernel (--reps times; the median time is reported),
 * optionally check it against the float64 reference, compare its counted HBM traffic and FLOPs
 * with the kernel IO model, print one row, and write one kind=kernel run to --out.
 * Exit status: 0 when every count matched and every check passed, 1 otherwise, 2 for bad input.
 * The options, their defaults and checks are in kernels_options.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "fail.h"
#include "h5out.h"
#include "kernel_record.h"
#include "outputs.h"
#include "partition.h"
#include "progress.h"
#include "kernel_study.h"
#include "kernels_options.h"
#include "sweep.h"
#include "timing.h"

static char device_desc[256] = "cpu, one thread";

static void print_header(const attn_opts *o)
{
    if (o->backend == BACKEND_CUDA)
        printf("# attnsim kernels: backend cuda, %s; times are CUDA events (median of %llu "
               "launches); bytes are logical HBM transfers from the kernel IO model at the CUDA "
               "kernels' blocks (not measured: the GPU does not count them)\n",
               device_desc, (unsigned long long)o->reps);
    else
        printf("# attnsim kernels: backend cpu, one thread; bytes are logical HBM transfers, "
               "counted (measured) and from the kernel IO model (predicted)\n");
    printf("# batch %llu, heads %llu, kv-heads %llu, seed %llu, reps %llu\n",
           (unsigned long long)o->batch, (unsigned long long)o->heads,
           (unsigned long long)o->kv_heads, (unsigned long long)o->seed,
           (unsigned long long)o->reps);
    /* a table: units in the column names, one value per cell ("-": not applicable) */
    printf("# %-8s %-4s %-5s %7s %7s %4s %6s %8s %4s %4s %10s %8s %13s %13s %13s %13s %7s %-10s "
           "%11s %s\n",
           "kernel", "pass", "dtype", "N", "N_k", "d", "causal", "sram", "Br", "Bc", "time_ms",
           o->backend == BACKEND_CUDA ? "TFLOP/s" : "GFLOP/s", "read_B", "written_B", "pred_read_B",
           "pred_write_B", "x_comp", "check", "max_abs_err", "bytes");
}

static int run_config(const ks_config *c, const attn_opts *o, h5out *h)
{
    ks_result r;
    memset(&r, 0, sizeof r); /* filled by the first repetition (reps >= 1) */
    double *times = kn_xmalloc(o->reps * sizeof(double), "timings");
    int counts_match = 1;
    const int cuda = o->backend == BACKEND_CUDA;
#ifdef ATTNSIM_HAVE_CUDA
    if (cuda) {
        ks_run_cuda(c->k, &c->s, c->dtype, o->seed, o->reps, times, &r);
        if (o->dram) {
            ks_cuda_dram(c->k, &c->s, c->dtype, o->seed, &r.dram_read, &r.dram_written,
                         &r.dram_launches);
            r.dram = 1;
            r.dram_in_band =
                r.dram_read >= r.predicted.compulsory_read && r.dram_read <= r.predicted.bytes_read;
        }
    }
#endif
    for (uint64_t rep = 0; !cuda && rep < o->reps; rep++) {
        ks_result ri;
        ks_run(c->k, &c->s, c->dtype, c->sram, o->seed, o->check && rep == 0, &ri);
        times[rep] = ri.time_s;
        if (rep == 0) r = ri;
        counts_match &= ks_counts_match(&ri);
    }
    double t = timing_median(times, o->reps);
    /* check: ok or FAIL (ok_sampled, FAIL_sampled: rows sampled on large problems) */
    char check[40] = "-", err[24] = "-";
    if (r.checked) {
        snprintf(check, sizeof check, "%s%s", r.check_passed ? "ok" : "FAIL",
                 r.check_sampled ? "_sampled" : "");
        snprintf(err, sizeof err, "%.1e", r.max_abs_err);
    }
    char sram[24] = "-";
    if (!cuda) snprintf(sram, sizeof sram, "%zu", c->sram);
    uint64_t comp = r.predicted.compulsory_read + r.predicted.compulsory_written;
    /* x_comp: traffic over the compulsory traffic (on cuda, of the logical prediction) */
    uint64_t total = cuda ? r.predicted.bytes_read + r.predicted.bytes_written
                          : r.measured.bytes_read + r.measured.bytes_written;
    char mread[24] = "-", mwrite[24] = "-";
    if (!cuda || r.dram) {
        snprintf(mread, sizeof mread, "%llu",
                 (unsigned long long)(cuda ? r.dram_read : r.measured.bytes_read));
        snprintf(mwrite, sizeof mwrite, "%llu",
                 (unsigned long long)(cuda ? r.dram_written : r.measured.bytes_written));
    }
    /* bytes: counted == predicted (equal, DIFFER) on the cpu; DRAM read within [compulsory,
     * logical] (in_band, OUT_OF_BAND) with --dram; - otherwise */
    const char *bytes = !cuda            ? (counts_match ? "equal" : "DIFFER")
                        : !r.dram        ? "-"
                        : r.dram_in_band ? "in_band"
                                         : "OUT_OF_BAND";
    printf("  %-8s %-4s %-5s %7zu %7zu %4zu %6s %8s %4zu %4zu %10.3f %8.2f %13s %13s %13llu "
           "%13llu %7.2f %-10s %11s %s\n",
           c->k->name, c->k->pass, kn_dtype_name(c->dtype), c->s.nq, c->s.nk, c->s.d,
           c->s.causal ? "yes" : "no", sram, r.blocks.br, r.blocks.bc, 1e3 * t,
           t > 0 ? (cuda ? 1e-12 : 1e-9) * (double)r.measured.flops / t : 0.0, mread, mwrite,
           (unsigned long long)r.predicted.bytes_read,
           (unsigned long long)r.predicted.bytes_written, comp ? (double)total / (double)comp : 0.0,
           check, err, bytes);
    fflush(stdout);
    attn_kill_point("kernels:before_write");
    if (h) record_kernel_run(h, c, &r, times, o->reps, t, o->seed, counts_match, cuda, device_desc);
    attn_kill_point("kernels:after_write");
    free(times);
    return counts_match && (!r.checked || r.check_passed) && (!r.dram || r.dram_in_band);
}

/* FLOPs of a configuration's repetitions: every visible query-key pair of every head. */
static double config_flops(const ks_config *c, const attn_opts *o)
{
    double pairs = attn_tile_pairs(c->s.causal, (double)c->s.nq, (double)c->s.nk, 1);
    return pairs * (double)c->s.batch * (double)c->s.heads *
           (double)attn_pair_flops(c->s.d, strcmp(c->k->pass, "bwd") == 0) * (double)o->reps;
}

int cmd_kernels(int argc, char **argv, int full_argc, char **full_argv)
{
    attn_opts o;
    int rc = kernels_options(argc, argv, &o);
    if (rc == 1) return 0;
    if (rc) return rc;

    attn_provenance prov;
    prov_init(&prov, full_argc, full_argv);
    h5out *h = o.out ? h5out_open(o.out, &prov, cli_lock_timeout(&o)) : NULL;
#ifdef ATTNSIM_HAVE_CUDA
    if (o.backend == BACKEND_CUDA) ks_cuda_device(device_desc, sizeof device_desc);
#endif
    if (o.decode) {
        int ok = kd_study(&o, kernels_decode_schemes(o.kernels), h, device_desc);
        h5out_close(h);
        prov_free(&prov);
        return ok ? 0 : 1;
    }
    print_header(&o);
    const cli_u64_list *kvl = o.seq_kv.n ? &o.seq_kv : &o.seq;
    long runs = 0, good = 0;
    /* the sweep's configurations first: progress weighs each by its FLOPs */
    ks_config *cfg = NULL;
    size_t ncfg = 0, cap = 0;
    sweep_iter sw = {0};
    int DT = sweep_mask(&sw, o.dtypes, KN_NUM_DTYPES), HD = sweep_list(&sw, &o.head_dim),
        CA = sweep_mask(&sw, o.causal, 2), SQ = sweep_list(&sw, &o.seq),
        KV = sweep_range(&sw, o.seq_kv.n ? kvl->n : 1),
        SR = sweep_range(&sw, o.backend == BACKEND_CUDA ? 1 : o.sram.n),
        KI = sweep_range(&sw, ks_num_kernels);
    while (sweep_next(&sw)) {
        const ks_kernel *k = &ks_kernels[sw.v[KI]];
        size_t ni = 0;
        while (strcmp(kernel_names[ni], k->name) != 0) ni++;
        if (!(o.kernels & (1u << ni))) continue;
        if (o.pass != AM_TRAIN && strcmp(k->pass, am_pass_names[o.pass]) != 0) continue;
        ks_config c;
        c.k = k;
        c.dtype = (kn_dtype)sw.v[DT];
        c.sram = o.sram.v[sw.v[SR]];
        c.s = (kn_shape){
            o.batch,  o.heads,       o.kv_heads, sw.v[SQ], o.seq_kv.n ? kvl->v[sw.v[KV]] : sw.v[SQ],
            sw.v[HD], (int)sw.v[CA], NULL,       NULL};
        if (ncfg == cap) {
            cap = cap ? 2 * cap : 64;
            cfg = realloc(cfg, cap * sizeof *cfg);
            if (!cfg) kn_fatal("realloc", "out of memory");
        }
        cfg[ncfg++] = c;
    }
    double total_flops = 0;
    for (size_t i = 0; i < ncfg; i++) total_flops += config_flops(&cfg[i], &o);
    progress prog;
    progress_begin(&prog, "kernels", o.progress, (long)ncfg, total_flops, "FLOP");
    for (size_t i = 0; i < ncfg; i++) {
        runs++;
        good += run_config(&cfg[i], &o, h);
        progress_step(&prog, config_flops(&cfg[i], &o));
    }
    free(cfg);
    h5out_close(h);
    progress_end(&prog);
    prov_free(&prov);
    int ok = good == runs;
    if (o.backend == BACKEND_CUDA)
        printf("# %ld runs: %s\n", runs,
               ok ? "every kernel checked against the float64 reference before timing. VALID"
                  : "FAILED: see the rows marked FAIL or OUT_OF_BAND. INVALID");
    else
        printf("# %ld runs: %s%s%s\n", runs,
               ok ? "measured == predicted HBM bytes and FLOPs in every run" : "FAILED: ",
               ok ? "" : "see the rows marked DIFFER or FAIL",
               ok && o.check ? "; every output matches the float64 reference. VALID"
               : ok          ? "; outputs not checked (--check). VALID"
                             : ". INVALID");
    char shown[4200];
    if (o.out)
        printf("# wrote %ld runs to %s\n", runs, outputs_display(o.out, shown, sizeof shown));
    return ok ? 0 : 1;
}
