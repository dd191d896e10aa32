/* cmd_kernels.c - `attnsim kernels`: the single-device kernel study.
 *
 * For every configuration (storage type x head dim x causal x N x N_k x SRAM size x kernel):
 * build the inputs from the seed, run the kernel (--reps times; the median time is reported),
 * optionally check it against the float64 reference, compare its counted HBM traffic and FLOPs
 * with the kernel IO model, print one row, and write one kind=kernel run to --out.
 * Exit status: 0 when every count matched and every check passed, 1 otherwise, 2 for bad input.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "fail.h"
#include "h5out.h"
#include "hostmem.h"
#include "outputs.h"
#include "kernel_study.h"
#ifdef ATTNSIM_HAVE_CUDA
#include "cuda_info.h"
#include "kc_attn.h"
#endif

#define MAX_KERNEL_NAMES 8 /* the catalogue's names and the two decode-only kernels */

static const char *kernel_names[MAX_KERNEL_NAMES + 1];

/* --kernel names: the catalogue's distinct names, in catalogue order. */
static void collect_kernel_names(void)
{
    size_t n = 0;
    for (size_t i = 0; i < ks_num_kernels && n < MAX_KERNEL_NAMES; i++) {
        int seen = 0;
        for (size_t j = 0; j < n; j++) seen |= strcmp(kernel_names[j], ks_kernels[i].name) == 0;
        if (!seen) kernel_names[n++] = ks_kernels[i].name;
    }
    /* the decode kernels (--decode): "fa2" above is also the FA2-style decode */
    kernel_names[n++] = "flash-decoding";
    kernel_names[n++] = "lean";
    kernel_names[n] = NULL;
}

/* Bit of `name` in kernel_names. */
static unsigned kernel_bit(const char *name)
{
    for (size_t i = 0; kernel_names[i]; i++)
        if (strcmp(kernel_names[i], name) == 0) return 1u << i;
    return 0;
}

/* The decode schemes selected (bit kn_dec_scheme: fa2, flash-decoding, lean). */
static unsigned decode_schemes(unsigned kernels)
{
    return ((kernels & kernel_bit("fa2")) ? 1u : 0u) |
           ((kernels & kernel_bit("flash-decoding")) ? 2u : 0u) |
           ((kernels & kernel_bit("lean")) ? 4u : 0u);
}

static const opt_id kernels_opts[] = {OPT_KERNEL, OPT_PASS,     OPT_SEQ,      OPT_SEQ_KV, OPT_BATCH,
                                      OPT_HEADS,  OPT_KV_HEADS, OPT_HEAD_DIM, OPT_CAUSAL, OPT_DTYPE,
                                      OPT_SRAM,   OPT_BACKEND,  OPT_CHECK,    OPT_REPS,   OPT_SEED,
                                      OPT_DRAM,   OPT_DECODE,   OPT_SLOTS,    OPT_OUT,    OPT_END};

static const cli_command kernels_cmd = {
    "kernels",
    "single-device kernel study: correctness, time, measured + predicted HBM bytes",
    "Runs attention kernels on one device, counts their HBM traffic and compares it with the\n"
    "kernel IO model (exactly, on the cpu backend), optionally checks them against a float64\n"
    "reference, and prints one row per configuration. Defaults: --kernel standard,fa1,fa2\n"
    "--pass train (the forward of each kernel, and the backward of those that have one)\n"
    "--seq 256,512,1k,2k --batch 1 --heads 4 --head-dim 64 --causal=no --dtype bf16\n"
    "--sram 32k --backend cpu --reps 1 --seed 1. With --backend cuda the kernels are the CUDA\n"
    "ones (kernels/cuda; their blocks are fixed, so --sram does not apply), each checked\n"
    "against the float64 reference before it is timed with CUDA events (--reps launches after\n"
    "two warm-up launches); bytes are the IO model's logical count at the CUDA blocks.\n"
    "With --decode: the decode kernels (--kernel fa2,flash-decoding,lean, the default) with\n"
    "one query token per sequence and head over a KV cache of each --seq length (--batch\n"
    "sequences, --heads query and --kv-heads KV heads); cpu runs the C reference schedules\n"
    "with counted bytes, cuda the CUDA kernels (f16/bf16, d 64 or 128), checked, timed in\n"
    "CUDA graphs over rotated K/V copies and predicted by the decode model.",
    kernels_opts,
    kernel_names,
    256};

typedef struct {
    const ks_kernel *k;
    kn_shape s;
    kn_dtype dtype;
    size_t sram;
} kernel_config;

static const unsigned ALL_KERNELS_UNSET = ~0u; /* --kernel not given */

static int validate_decode(attn_opts *o)
{
    const unsigned dec = kernel_bit("fa2") | kernel_bit("flash-decoding") | kernel_bit("lean");
    if (o->kernels == ALL_KERNELS_UNSET) o->kernels = dec;
    for (size_t i = 0; kernel_names[i]; i++)
        if ((o->kernels & (1u << i)) && !(dec & (1u << i)))
            return cli_error(o, "--kernel",
                             "%s has no decode kernel; accepted with --decode: fa2, "
                             "flash-decoding, lean",
                             kernel_names[i]);
    if (o->dram)
        return cli_error(o, "--dram",
                         "not measured for the decode kernels; accepted: --dram "
                         "without --decode");
    if (o->slots && o->backend == BACKEND_CPU && o->slots > 65536)
        return cli_error(o, "--slots", "%llu is more than 65536; accepted: 1 .. 65536",
                         (unsigned long long)o->slots);
    const cli_u64_list *lens = o->seq_kv.n ? &o->seq_kv : &o->seq;
    for (size_t i = 0; i < lens->n; i++)
        if (lens->v[i] > (1u << 30))
            return cli_error(o, o->seq_kv.n ? "--seq-kv" : "--seq",
                             "cache length %llu is too large; accepted: at most 1G tokens",
                             (unsigned long long)lens->v[i]);
    if (o->backend == BACKEND_CUDA) {
        if (o->dtypes & (1u << KN_F32))
            return cli_error(o, "--dtype",
                             "f32 has no CUDA decode kernel; accepted with "
                             "--backend cuda: f16, bf16");
        for (size_t di = 0; di < o->head_dim.n; di++)
            if (o->head_dim.v[di] != 64 && o->head_dim.v[di] != 128)
                return cli_error(o, "--head-dim",
                                 "%llu has no CUDA decode kernel; accepted with --backend "
                                 "cuda: 64, 128",
                                 (unsigned long long)o->head_dim.v[di]);
#ifdef ATTNSIM_HAVE_CUDA
        /* Lean's hosts wait for contributors that must be running: no more CTAs than fit */
        for (int dt = 0; o->slots && dt < KN_NUM_DTYPES; dt++)
            for (size_t di = 0; (o->dtypes & (1u << dt)) && di < o->head_dim.n; di++) {
                int cap = 0;
                if (kc_decode_slots(dt, o->head_dim.v[di], &cap) == 0 && o->slots > (uint64_t)cap)
                    return cli_error(o, "--slots",
                                     "%llu is more than the %d decode CTAs (%s, d = %llu) this "
                                     "GPU holds at once; accepted: 1 .. %d",
                                     (unsigned long long)o->slots, cap, kn_dtype_name((kn_dtype)dt),
                                     (unsigned long long)o->head_dim.v[di], cap);
            }
#endif
    }
    /* host memory: the cache in the storage type plus the float64 reference's inputs, against
     * half the machine and the address-space limit */
    hostmem hm;
    hostmem_query(&hm);
    for (size_t i = 0; i < lens->n; i++)
        for (size_t di = 0; di < o->head_dim.n; di++) {
            double bytes = 2.0 * (double)o->batch * (double)o->kv_heads * (double)lens->v[i] *
                           (double)o->head_dim.v[di] * 4.0;
            char why[300], b[32];
            if (hostmem_fits(&hm, bytes, bytes, 1, 0.5, why, sizeof why))
                return cli_error(o, o->seq_kv.n ? "--seq-kv" : "--seq",
                                 "a cache of %llu tokens needs %s of host memory, %s; accepted: "
                                 "smaller shapes",
                                 (unsigned long long)lens->v[i], hostmem_format(bytes, b, sizeof b),
                                 why);
        }
    return 0;
}

static int validate(attn_opts *o)
{
    if (o->dram && o->backend != BACKEND_CUDA)
        return cli_error(o, "--dram",
                         "DRAM bytes are measured on the GPU; accepted with "
                         "--backend cuda");
#ifdef ATTNSIM_HAVE_CUDA
    if (o->dram && !ks_cuda_ncu_path())
        return cli_error(o, "--dram",
                         "Nsight Compute (ncu) is not on PATH nor in /usr/local/cuda/bin; "
                         "accepted: --dram where ncu is installed");
    if (o->backend == BACKEND_CUDA) {
        char desc[1024];
        if (attn_cuda_describe(desc, sizeof desc) < 1) {
            const char *why = strstr(desc, "none usable ");
            return cli_error(o, "--backend", "cuda: no usable CUDA device %s; accepted: cpu",
                             why ? why + 12 : "(0 devices)");
        }
    }
#else
    if (o->backend != BACKEND_CPU)
        return cli_error(o, "--backend",
                         "'%s' kernels are not available in this build (built without CUDA); "
                         "accepted: cpu",
                         cli_backend_names[o->backend]);
#endif
    if (cli_resolve_kv_heads(o)) return 2;
    if (o->decode) return validate_decode(o);
    if (o->slots)
        return cli_error(o, "--slots",
                         "applies to the decode kernels; accepted with "
                         "--decode");
    if (o->kernels == ALL_KERNELS_UNSET)
        o->kernels = kernel_bit("standard") | kernel_bit("fa1") | kernel_bit("fa2");
    if (o->kernels & (kernel_bit("flash-decoding") | kernel_bit("lean")))
        return cli_error(o, "--kernel",
                         "%s is a decode kernel; accepted with --decode (without it: standard, "
                         "fa1, fa2)",
                         (o->kernels & kernel_bit("lean")) ? "lean" : "flash-decoding");
    /* every selected kernel needs a pass it has */
    for (size_t ni = 0; kernel_names[ni]; ni++) {
        if (!(o->kernels & (1u << ni))) continue;
        int has_fwd = ks_find(kernel_names[ni], "fwd") != NULL;
        int has_bwd = ks_find(kernel_names[ni], "bwd") != NULL;
        if (o->pass == AM_BWD && !has_bwd) {
            char with[120] = "";
            for (size_t i = 0; i < ks_num_kernels; i++)
                if (strcmp(ks_kernels[i].pass, "bwd") == 0) {
                    strcat(with, with[0] ? ", " : "");
                    strcat(with, ks_kernels[i].name);
                }
            return cli_error(o, "--pass",
                             "kernel %s has no backward; accepted with bwd: "
                             "--kernel %s",
                             kernel_names[ni], with);
        }
        if (o->pass == AM_FWD && !has_fwd)
            return cli_error(o, "--pass", "kernel %s has no forward", kernel_names[ni]);
    }
    /* SRAM large enough for every kernel at every head dimension (the cpu kernels' blocks
     * follow from it; the cuda kernels' are fixed) */
    for (size_t i = 0; o->backend == BACKEND_CPU && i < ks_num_kernels; i++) {
        const ks_kernel *k = &ks_kernels[i];
        size_t ni = 0;
        while (strcmp(kernel_names[ni], k->name) != 0) ni++;
        if (!(o->kernels & (1u << ni))) continue;
        if (o->pass != AM_TRAIN && strcmp(k->pass, am_pass_names[o->pass]) != 0) continue;
        for (size_t di = 0; di < o->head_dim.n; di++)
            for (size_t mi = 0; mi < o->sram.n; mi++) {
                size_t need = ks_min_sram(k, o->head_dim.v[di]);
                if (o->sram.v[mi] < need)
                    return cli_error(o, "--sram",
                                     "%llu elements is too small for %s %s at "
                                     "d = %llu; accepted: at least %zu",
                                     (unsigned long long)o->sram.v[mi], k->name, k->pass,
                                     (unsigned long long)o->head_dim.v[di], need);
            }
    }
    /* host memory: refuse shapes that cannot fit rather than fail half way (80% of the machine,
     * and the address-space limit) */
    hostmem hm;
    hostmem_query(&hm);
    const cli_u64_list *kvl = o->seq_kv.n ? &o->seq_kv : &o->seq;
    for (size_t i = 0; i < o->seq.n; i++)
        for (size_t j = 0; j < kvl->n; j++)
            for (size_t di = 0; di < o->head_dim.n; di++) {
                kn_shape s = {o->batch,          o->heads, o->kv_heads, o->seq.v[i], kvl->v[j],
                              o->head_dim.v[di], 0,        NULL,        NULL};
                unsigned need = KN_NEED_FWD | KN_NEED_FA1 | KN_NEED_BWD;
                if (o->kernels & 1u) need |= KN_NEED_STANDARD; /* "standard" is first */
                double bytes = (double)kn_problem_bytes(&s, KN_F32, need);
                char why[300], b[32];
                if (hostmem_fits(&hm, bytes, bytes, 1, 0.8, why, sizeof why))
                    return cli_error(o, "--seq",
                                     "N = %llu, N_k = %llu needs %s of host memory, %s; "
                                     "accepted: smaller shapes",
                                     (unsigned long long)s.nq, (unsigned long long)s.nk,
                                     hostmem_format(bytes, b, sizeof b), why);
            }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

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

static void write_run(h5out *h, const kernel_config *c, const ks_result *r, const double *times,
                      uint64_t reps, uint64_t seed, int counts_match, int cuda)
{
    const char *backend = cuda ? "cuda" : "cpu";
    int64_t id;
    hid_t g = h5out_run_begin(h, &id);
    h5_attr_str(g, "kind", "kernel");
    h5_attr_str(g, "algorithm", c->k->name);
    h5_attr_str(g, "pass", c->k->pass);
    h5_attr_i64(g, "P", 1);
    h5_attr_i64(g, "grid_rows", 1);
    h5_attr_i64(g, "grid_cols", 1);
    h5_attr_i64(g, "seq_len", (int64_t)c->s.nq);
    h5_attr_i64(g, "seq_len_kv", (int64_t)c->s.nk);
    h5_attr_i64(g, "batch", (int64_t)c->s.batch);
    h5_attr_i64(g, "heads", (int64_t)c->s.heads);
    h5_attr_i64(g, "kv_heads", (int64_t)c->s.kv_heads);
    h5_attr_i64(g, "head_dim", (int64_t)c->s.d);
    h5_attr_i64(g, "causal", c->s.causal);
    h5_attr_str(g, "dtype", kn_dtype_name(c->dtype));
    h5_attr_str(g, "backend", backend);
    h5_attr_str(g, "comm", "none");
    h5_attr_str(g, "machine", "none");
    if (cuda) {
        h5_attr_str(g, "gpu", device_desc);
        h5_attr_str(g, "check_method",
                    r->check_sampled ? "float64 reference, 64 sampled query rows and 64 "
                                       "sampled key rows of batch 0"
                                     : "float64 reference, every element");
    } else {
        h5_attr_i64(g, "sram_elems", (int64_t)c->sram);
    }
    h5_attr_i64(g, "block_rows", (int64_t)r->blocks.br);
    h5_attr_i64(g, "block_cols", (int64_t)r->blocks.bc);
    h5_attr_i64(g, "seed", (int64_t)seed);
    if (!cuda) h5_attr_i64(g, "counts_match", counts_match);
    if (r->checked) {
        h5_attr_f64(g, "max_abs_err", r->max_abs_err);
        h5_attr_f64(g, "max_rel_err", r->max_rel_err);
        h5_attr_i64(g, "check_passed", r->check_passed);
    }
    attn_kill_point("kernels:attrs");
    int64_t v;
    double median = times[reps / 2];
    hsize_t nreps = reps;
    if (r->dram) { /* DRAM bytes under ncu: checked against [compulsory, logical] */
        v = (int64_t)r->dram_read;
        h5_write(g, "measured/dram_bytes_read", H5T_NATIVE_INT64, 0, NULL, &v, "bytes");
        v = (int64_t)r->dram_written;
        h5_write(g, "measured/dram_bytes_written", H5T_NATIVE_INT64, 0, NULL, &v, "bytes");
        h5_attr_i64(g, "dram_in_band", r->dram_in_band);
        h5_attr_i64(g, "dram_kernel_launches", r->dram_launches);
    }
    if (!cuda) { /* the GPU does not count logical transfers */
        v = (int64_t)r->measured.bytes_read;
        h5_write(g, "measured/hbm_bytes_read", H5T_NATIVE_INT64, 0, NULL, &v, "bytes");
        v = (int64_t)r->measured.bytes_written;
        h5_write(g, "measured/hbm_bytes_written", H5T_NATIVE_INT64, 0, NULL, &v, "bytes");
    }
    v = (int64_t)r->measured.flops;
    h5_write(g, "measured/flops", H5T_NATIVE_INT64, 0, NULL, &v, "flop");
    h5_write(g, "measured/time_s", H5T_NATIVE_DOUBLE, 0, NULL, &median, "s");
    h5_write(g, "measured/time_s_reps", H5T_NATIVE_DOUBLE, 1, &nreps, times, "s");
    v = (int64_t)r->predicted.bytes_read;
    h5_write(g, "predicted/hbm_bytes_read", H5T_NATIVE_INT64, 0, NULL, &v, "bytes");
    v = (int64_t)r->predicted.bytes_written;
    h5_write(g, "predicted/hbm_bytes_written", H5T_NATIVE_INT64, 0, NULL, &v, "bytes");
    v = (int64_t)r->predicted.flops;
    h5_write(g, "predicted/flops", H5T_NATIVE_INT64, 0, NULL, &v, "flop");
    v = (int64_t)r->predicted.compulsory_read;
    h5_write(g, "predicted/compulsory_bytes_read", H5T_NATIVE_INT64, 0, NULL, &v, "bytes");
    v = (int64_t)r->predicted.compulsory_written;
    h5_write(g, "predicted/compulsory_bytes_written", H5T_NATIVE_INT64, 0, NULL, &v, "bytes");
    double nan = NAN;
    h5_write(g, "predicted/time_s", H5T_NATIVE_DOUBLE, 0, NULL, &nan, "s");
    hid_t ds = H5CALL(H5Dopen2(g, "predicted/time_s", H5P_DEFAULT));
    h5_attr_str(ds, "note",
                "NaN: the kernel study has no machine description, so its kernel "
                "time is not predicted");
    H5CALL(H5Dclose(ds));

    h5_summary_row row;
    memset(&row, 0, sizeof row);
    snprintf(row.kind, sizeof row.kind, "kernel");
    snprintf(row.algorithm, sizeof row.algorithm, "%s", c->k->name);
    snprintf(row.pass, sizeof row.pass, "%s", c->k->pass);
    snprintf(row.dtype, sizeof row.dtype, "%s", kn_dtype_name(c->dtype));
    snprintf(row.backend, sizeof row.backend, "%s", backend);
    row.P = row.grid_rows = row.grid_cols = 1;
    row.seq_len = (int64_t)c->s.nq;
    row.seq_len_kv = (int64_t)c->s.nk;
    row.batch = (int64_t)c->s.batch;
    row.heads = (int64_t)c->s.heads;
    row.kv_heads = (int64_t)c->s.kv_heads;
    row.head_dim = (int64_t)c->s.d;
    row.causal = c->s.causal;
    row.check_passed = r->checked ? r->check_passed : -1;
    row.measured_time_s = median;
    row.predicted_time_s = NAN;
    row.measured_bytes_max =
        cuda ? -1 : (int64_t)(r->measured.bytes_read + r->measured.bytes_written);
    row.predicted_bytes_max = (int64_t)(r->predicted.bytes_read + r->predicted.bytes_written);
    h5out_run_commit(h, g, &row);
}

/* Runs one configuration; returns 1 when counts match and the check (if any) passed. */
static int run_config(const kernel_config *c, const attn_opts *o, h5out *h)
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
    qsort(times, o->reps, sizeof(double), cmp_double);
    double t = times[o->reps / 2];
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
    if (h) write_run(h, c, &r, times, o->reps, o->seed, counts_match, cuda);
    attn_kill_point("kernels:after_write");
    free(times);
    return counts_match && (!r.checked || r.check_passed) && (!r.dram || r.dram_in_band);
}

int kernels_options(int argc, char **argv, attn_opts *o)
{
    collect_kernel_names();
    memset(o, 0, sizeof *o);
    o->kernels = ALL_KERNELS_UNSET;
    o->pass = AM_TRAIN;
    const uint64_t seqs[] = {256, 512, 1024, 2048};
    o->seq.n = 4;
    memcpy(o->seq.v, seqs, sizeof seqs);
    o->batch = 1;
    o->heads = 4;
    o->head_dim.n = 1;
    o->head_dim.v[0] = 64;
    o->causal = 1;
    o->dtypes = 1u << KN_BF16;
    o->sram.n = 1;
    o->sram.v[0] = 32 * 1024;
    o->backend = BACKEND_CPU;
    o->reps = 1;
    o->seed = 1;
    int rc = cli_parse(&kernels_cmd, argc, argv, o);
    if (rc == 0) rc = cli_check_outputs(o);
    return rc ? rc : validate(o);
}

int cmd_kernels(int argc, char **argv, int full_argc, char **full_argv)
{
    attn_opts o;
    int rc = kernels_options(argc, argv, &o);
    if (rc == 1) return 0;
    if (rc) return rc;

    attn_provenance prov;
    prov_init(&prov, full_argc, full_argv);
    h5out *h = o.out ? h5out_open(o.out, &prov) : NULL;
#ifdef ATTNSIM_HAVE_CUDA
    if (o.backend == BACKEND_CUDA) ks_cuda_device(device_desc, sizeof device_desc);
#endif
    if (o.decode) {
        int ok = kd_study(&o, decode_schemes(o.kernels), h, device_desc);
        h5out_close(h);
        prov_free(&prov);
        return ok ? 0 : 1;
    }
    print_header(&o);
    const cli_u64_list *kvl = o.seq_kv.n ? &o.seq_kv : &o.seq;
    long runs = 0, good = 0;
    for (int dt = 0; dt < KN_NUM_DTYPES; dt++) {
        if (!(o.dtypes & (1u << dt))) continue;
        for (size_t di = 0; di < o.head_dim.n; di++)
            for (int causal = 0; causal < 2; causal++) {
                if (!(o.causal & (1u << causal))) continue;
                for (size_t si = 0; si < o.seq.n; si++)
                    for (size_t ki = 0; ki < (o.seq_kv.n ? kvl->n : 1); ki++)
                        for (size_t mi = 0; mi < (o.backend == BACKEND_CUDA ? 1 : o.sram.n); mi++)
                            for (size_t i = 0; i < ks_num_kernels; i++) {
                                const ks_kernel *k = &ks_kernels[i];
                                size_t ni = 0;
                                while (strcmp(kernel_names[ni], k->name) != 0) ni++;
                                if (!(o.kernels & (1u << ni))) continue;
                                if (o.pass != AM_TRAIN &&
                                    strcmp(k->pass, am_pass_names[o.pass]) != 0)
                                    continue;
                                kernel_config c;
                                c.k = k;
                                c.dtype = (kn_dtype)dt;
                                c.sram = o.sram.v[mi];
                                c.s = (kn_shape){o.batch,
                                                 o.heads,
                                                 o.kv_heads,
                                                 o.seq.v[si],
                                                 o.seq_kv.n ? kvl->v[ki] : o.seq.v[si],
                                                 o.head_dim.v[di],
                                                 causal,
                                                 NULL,
                                                 NULL};
                                runs++;
                                good += run_config(&c, &o, h);
                            }
            }
    }
    h5out_close(h);
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
