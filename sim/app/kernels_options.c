/* kernels_options.c - the options of `attnsim kernels` (kernels_options.h): the option table and
 * help, the --kernel names, the defaults, and every check that needs no execution (backend,
 * --dram, the passes of the kernels selected, SRAM, host memory; with --decode the decode
 * kernels' own: kernels, slots, cache lengths, the CUDA shapes, host memory). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "hostmem.h"
#include "kernel_study.h"
#include "kernels_options.h"
#ifdef ATTNSIM_HAVE_CUDA
#include "cuda_info.h"
#include "kc_attn.h"
#endif

#define MAX_KERNEL_NAMES 8 /* the catalogue's names and the two decode-only kernels */

const char *kernel_names[MAX_KERNEL_NAMES + 1];

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

unsigned kernels_decode_schemes(unsigned kernels)
{
    return ((kernels & kernel_bit("fa2")) ? 1u : 0u) |
           ((kernels & kernel_bit("flash-decoding")) ? 2u : 0u) |
           ((kernels & kernel_bit("lean")) ? 4u : 0u);
}

static const opt_id kernels_opts[] = {
    OPT_KERNEL,   OPT_PASS,         OPT_SEQ,      OPT_SEQ_KV, OPT_BATCH,  OPT_HEADS,
    OPT_KV_HEADS, OPT_HEAD_DIM,     OPT_CAUSAL,   OPT_DTYPE,  OPT_SRAM,   OPT_BACKEND,
    OPT_CHECK,    OPT_REPS,         OPT_SEED,     OPT_DRAM,   OPT_DECODE, OPT_SLOTS,
    OPT_OUT,      OPT_LOCK_TIMEOUT, OPT_PROGRESS, OPT_END};

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
