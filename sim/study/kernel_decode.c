/* kernel_decode.c - `attnsim kernels --decode`: the decode kernels (FA2-style decode,
 * FlashDecoding, Lean Attention; algorithms.md section 3) checked, timed and predicted.
 *
 * cpu: the C reference schedules (kernels/attn_decode.c) with counted HBM traffic, which must
 * equal the plan's prediction exactly; wall time of each call.
 * cuda: the CUDA kernels (kernels/cuda/kc_decode.cu), each checked against the float64
 * reference before it is timed. Timing, like the peer benchmark: one CUDA graph of L
 * back-to-back calls, each on the next of C copies of the K/V cache (C x cache >= 4 L2 sizes, so
 * no call is served from L2 by the ones before it); --reps replays, the median per call. The
 * decode model (models/decode.c) predicts each call from parameters measured in the same
 * invocation, never from the timed calls themselves: the rate of a grid of equal streaming
 * reads (up to 2 GiB; kc_read_bandwidth_probe), one CTA's streaming rate and fixed cost (Lean on a
 * single CTA over 8 and 72 tiles of a one-unit problem with the same head group), and a Lean host's
 * fix-up: its latency and the cost per merged partial (2 and 32 one-tile CTAs on a 2- and a 32-tile
 * unit). The HBM read ceiling recorded with each run is the faster read where SMs take chunks as
 * they free (kc_read_ceiling_probe): what the memory delivers, against which the kernels are
 * judged.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "progress.h"
#include "cli.h"
#include "commands.h"
#include "decode.h"
#include "fail.h"
#include "h5out.h"
#include "decode_study.h"
#include "outputs.h"
#include "kernel_study.h"
#include "sweep.h"
#include "timing.h"
#include "kn_attn_decode.h"
#include "partition.h"
#include "ref_f64.h"

static const char *const algo_names[3] = {"fa2-decode", "flash-decoding", "lean"};

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static float uniform(uint64_t *s)
{
    return (float)((double)(xorshift(s) >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void problem_init(dec_problem *p, const attn_opts *o, size_t d, size_t n, kn_dtype dt)
{
    memset(p, 0, sizeof *p);
    p->plan = kn_dec_make_plan((long long)o->batch, (long long)o->heads, (long long)o->kv_heads,
                               (long long)d);
    p->dt = dt;
    p->n_cap = n;
    p->lens = kn_xmalloc(o->batch * sizeof(int), "decode cache lengths");
    for (size_t i = 0; i < o->batch; i++) p->lens[i] = (int)n;
    size_t nq = o->batch * o->heads * d, nkv = o->batch * o->kv_heads * n * d;
    kn_tensor_alloc(&p->io.q, dt, nq, "decode q");
    kn_tensor_alloc(&p->io.k, dt, nkv, "decode k");
    kn_tensor_alloc(&p->io.v, dt, nkv, "decode v");
    kn_tensor_alloc(&p->io.o, dt, nq, "decode o");
    kn_tensor_alloc(&p->io.lse, KN_F32, o->batch * o->heads, "decode lse");
    uint64_t s = o->seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
    for (size_t i = 0; i < nq; i++) kn_tensor_set(&p->io.q, i, 2.0f * uniform(&s));
    for (size_t i = 0; i < nkv; i++) {
        kn_tensor_set(&p->io.k, i, uniform(&s));
        kn_tensor_set(&p->io.v, i, uniform(&s));
    }
    p->io.n_cap = n;
    p->io.lens = p->lens;
}

static void problem_reference(dec_problem *p)
{
    if (p->ro) return;
    size_t rows = (size_t)(p->plan.b * p->plan.h);
    p->ro = kn_xmalloc(rows * (size_t)p->plan.d * sizeof(double), "decode reference");
    p->rlse = kn_xmalloc(rows * sizeof(double), "decode reference lse");
    kn_decode_ref_f64(&p->plan, &p->io, p->ro, p->rlse);
}

static void problem_free(dec_problem *p)
{
    kn_tensor_free(&p->io.q);
    kn_tensor_free(&p->io.k);
    kn_tensor_free(&p->io.v);
    kn_tensor_free(&p->io.o);
    kn_tensor_free(&p->io.lse);
    free(p->lens);
    free(p->ro);
    free(p->rlse);
}

void decode_check_outputs(dec_problem *p, dec_result *r)
{
    problem_reference(p);
    size_t rows = (size_t)(p->plan.b * p->plan.h), n = rows * (size_t)p->plan.d;
    double scale = 1e-30, worst = 0, worst_lse = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(p->ro[i]));
    for (size_t i = 0; i < n; i++) {
        double x = kn_tensor_get(&p->io.o, i);
        if (!isfinite(x)) bad = 1;
        worst = fmax(worst, fabs(x - p->ro[i]));
    }
    for (size_t i = 0; i < rows; i++) {
        double x = kn_tensor_get(&p->io.lse, i);
        if (isinf(p->rlse[i]) || !isfinite(x)) {
            if (!(isinf(p->rlse[i]) && x == p->rlse[i])) bad = 1;
            continue;
        }
        worst_lse = fmax(worst_lse, fabs(x - p->rlse[i]));
    }
    r->checked = 1;
    r->max_abs_err = worst;
    r->max_rel_err = worst / scale;
    r->check_passed = !bad && r->max_rel_err <= ref_tolerance(p->dt) && worst_lse <= 2e-3;
}

static double kv_bytes_of(const dec_problem *p)
{
    double tok = 0;
    for (long long i = 0; i < p->plan.b; i++) tok += p->lens[i];
    return 2.0 * tok * (double)p->plan.h_kv * (double)p->plan.d * (double)kn_dtype_bytes(p->dt);
}

static void run_cpu(dec_problem *p, const attn_opts *o, dec_result *r)
{
    r->slots = o->slots ? (long long)o->slots : CPU_SLOTS;
    kn_decode_stats st;
    for (uint64_t rep = 0; rep < o->reps; rep++) {
        kn_counters c;
        memset(&c, 0, sizeof c);
        double t0 = timing_now_s();
        kn_decode(&p->plan, r->scheme, r->slots, &p->io, &c, &st);
        r->times[rep] = timing_now_s() - t0;
        if (rep == 0) r->counted = c;
    }
    r->splits = st.splits;
    if (o->check) decode_check_outputs(p, r);
}

static void write_run(h5out *h, const dec_problem *p, const dec_result *r, const attn_opts *o,
                      const char *device, double ceiling, double equal_share)
{
    const int cuda = o->backend == BACKEND_CUDA;
    h5node *g = h5out_run_begin(h);
    h5_attr_str(g, "kind", "kernel");
    h5_attr_str(g, "algorithm", algo_names[r->scheme]);
    h5_attr_str(g, "pass", "decode");
    h5_attr_i64(g, "P", 1);
    h5_attr_i64(g, "grid_rows", 1);
    h5_attr_i64(g, "grid_cols", 1);
    h5_attr_i64(g, "seq_len", 1);
    h5_attr_i64(g, "seq_len_kv", (int64_t)p->n_cap);
    h5_attr_i64(g, "batch", p->plan.b);
    h5_attr_i64(g, "heads", p->plan.h);
    h5_attr_i64(g, "kv_heads", p->plan.h_kv);
    h5_attr_i64(g, "head_dim", p->plan.d);
    h5_attr_i64(g, "causal", 0);
    h5_attr_str(g, "dtype", kn_dtype_name(p->dt));
    h5_attr_str(g, "backend", cuda ? "cuda" : "cpu");
    h5_attr_str(g, "comm", "none");
    h5_attr_str(g, "machine", "none");
    h5_attr_str(g, "gpu", device);
    h5_attr_i64(g, "slots", r->slots);
    h5_attr_i64(g, "splits", r->splits);
    h5_attr_i64(g, "tile_tokens", p->plan.tile);
    h5_attr_i64(g, "seed", (int64_t)o->seed);
    h5_attr_f64(g, "kv_bytes", r->kv_bytes);
    if (cuda) {
        h5_attr_f64(g, "hbm_read_ceiling_bytes_per_s", ceiling);
        h5_attr_f64(g, "hbm_equal_share_read_bytes_per_s", equal_share);
        h5_attr_str(g, "timing",
                    "CUDA graph of back-to-back calls over rotated K/V copies (none served "
                    "from L2); median per call over the replays");
    }
    if (r->checked) {
        h5_attr_str(g, "check_method", "float64 reference, every element");
        h5_attr_f64(g, "max_abs_err", r->max_abs_err);
        h5_attr_f64(g, "max_rel_err", r->max_rel_err);
        h5_attr_i64(g, "check_passed", r->check_passed);
    }
    attn_kill_point("kernels:attrs");
    hsize_t nreps = o->reps;
    int64_t v;
    h5_write(g, "measured/time_s", H5_F64, 0, NULL, &r->median, "s");
    h5_write(g, "measured/time_s_reps", H5_F64, 1, &nreps, r->times, "s");
    /* one visible pair per (query head, cached key) */
    double pairs =
        r->kv_bytes / 2.0 / (double)kn_dtype_bytes(p->dt) / (double)p->plan.d * (double)p->plan.g;
    double flops = (double)attn_pair_flops((uint64_t)p->plan.d, 0) * pairs;
    v = (int64_t)flops;
    h5_write(g, "measured/flops", H5_I64, 0, NULL, &v, "flop");
    if (!cuda) {
        v = (int64_t)r->counted.bytes_read;
        h5_write(g, "measured/hbm_bytes_read", H5_I64, 0, NULL, &v, "bytes");
        v = (int64_t)r->counted.bytes_written;
        h5_write(g, "measured/hbm_bytes_written", H5_I64, 0, NULL, &v, "bytes");
        h5_attr_i64(g, "counts_match",
                    r->counted.bytes_read == r->pred_read &&
                        r->counted.bytes_written == r->pred_written);
    }
    v = (int64_t)r->pred_read;
    h5_write(g, "predicted/hbm_bytes_read", H5_I64, 0, NULL, &v, "bytes");
    v = (int64_t)r->pred_written;
    h5_write(g, "predicted/hbm_bytes_written", H5_I64, 0, NULL, &v, "bytes");
    double pt = r->have_pred ? r->pred.time_s : NAN;
    h5_write(g, "predicted/time_s", H5_F64, 0, NULL, &pt, "s");
    h5node *ds = h5_member(g, "predicted/time_s");
    if (r->have_pred) {
        char note[400];
        snprintf(note, sizeof note,
                 "decode model (models/decode.c) with parameters measured in this invocation: "
                 "HBM %.4g B/s, one CTA %.4g B/s, fixed cost %.3g s per launch, a Lean "
                 "host's fix-up %.3g s + %.3g s per partial it merges",
                 r->params.hbm_bw, r->params.cta_rate, r->params.launch_s,
                 r->params.fixup_latency_s, r->params.fixup_s);
        h5_attr_str(ds, "note", note);
        h5_write(g, "predicted/floor_time_s", H5_F64, 0, NULL, &r->pred.floor_s, "s");
        v = r->pred.busiest_tiles;
        h5_write(g, "predicted/busiest_cta_tiles", H5_I64, 0, NULL, &v, "tiles");
    } else {
        h5_attr_str(ds, "note",
                    "NaN: on the cpu backend the decode model has no GPU parameters to use");
    }

    h5_summary_row row;
    memset(&row, 0, sizeof row);
    snprintf(row.kind, sizeof row.kind, "kernel");
    snprintf(row.algorithm, sizeof row.algorithm, "%s", algo_names[r->scheme]);
    snprintf(row.pass, sizeof row.pass, "decode");
    snprintf(row.dtype, sizeof row.dtype, "%s", kn_dtype_name(p->dt));
    snprintf(row.backend, sizeof row.backend, "%s", cuda ? "cuda" : "cpu");
    row.P = row.grid_rows = row.grid_cols = 1;
    row.seq_len = 1;
    row.seq_len_kv = (int64_t)p->n_cap;
    row.batch = p->plan.b;
    row.heads = p->plan.h;
    row.kv_heads = p->plan.h_kv;
    row.head_dim = p->plan.d;
    row.check_passed = r->checked ? r->check_passed : -1;
    row.measured_time_s = r->median;
    row.predicted_time_s = pt;
    row.measured_bytes_max =
        cuda ? -1 : (int64_t)(r->counted.bytes_read + r->counted.bytes_written);
    row.predicted_bytes_max = (int64_t)(r->pred_read + r->pred_written);
    h5out_run_commit(h, g, &row);
}

/* Bytes of K and V the repetitions of one run read: the whole cache, every repetition. */
static double cache_bytes(const attn_opts *o, kn_dtype dt, uint64_t d, uint64_t n)
{
    return 2.0 * (double)o->batch * (double)o->kv_heads * (double)n * (double)d *
           (double)kn_dtype_bytes(dt) * (double)o->reps;
}

int kd_study(const attn_opts *o, unsigned schemes, h5out *h, const char *device)
{
    const int cuda = o->backend == BACKEND_CUDA;
    const cli_u64_list *lens = o->seq_kv.n ? &o->seq_kv : &o->seq;
    double ceiling = NAN, equal_share = NAN;
#ifdef ATTNSIM_HAVE_CUDA
    if (cuda) decode_measure_reads(&ceiling, &equal_share);
#endif
    if (cuda)
        printf("# attnsim kernels --decode: backend cuda, %s; HBM read ceiling %.0f GB/s "
               "(SMs take chunks as they free), a grid of equal shares %.0f GB/s (this run); "
               "times: CUDA graph of 30 calls over rotated K/V copies, median of %llu "
               "replays; predicted: decode model with this run's equal-share rate and "
               "one-CTA rate\n",
               device, ceiling / 1e9, equal_share / 1e9, (unsigned long long)o->reps);
    else
        printf("# attnsim kernels --decode: backend cpu, one thread, the schedules of %llu "
               "co-resident CTAs; bytes counted (measured) and from the plan (predicted)\n",
               (unsigned long long)(o->slots ? o->slots : CPU_SLOTS));
    printf("# %-14s %-5s %3s %4s %4s %8s %4s %5s %6s %10s %9s %10s %7s %-5s %s\n", "kernel",
           "dtype", "B", "h", "h_kv", "N", "d", "slots", "splits", "time_us", "GB/s_KV",
           cuda ? "pred_us" : "read_B", cuda ? "err_pct" : "counts", "check", "max_rel_err");
    long runs = 0, good = 0;
    /* progress: the work of a run is the K/V cache it reads, every repetition */
    enum { DT, HD, NL, SC };
    sweep_iter sw = {0};
    double total_bytes = 0;
    for (int pass = 0; pass < 2; pass++) { /* the sweep's work, then the sweep to run */
        memset(&sw, 0, sizeof sw);
        sweep_mask(&sw, o->dtypes, KN_NUM_DTYPES), sweep_list(&sw, &o->head_dim);
        sweep_list(&sw, lens), sweep_mask(&sw, schemes, 3);
        while (pass == 0 && sweep_next(&sw))
            total_bytes += cache_bytes(o, (kn_dtype)sw.v[DT], sw.v[HD], sw.v[NL]);
    }
    progress prog;
    progress_begin(&prog, "kernels", o->progress, (long)sweep_total(&sw), total_bytes,
                   "bytes of K/V read");
    dec_problem p;
    int have_problem = 0;
    double rate = NAN, fixed = NAN, fixup = NAN, fixup_lat = NAN; /* cuda only */
    (void)rate, (void)fixed, (void)fixup, (void)fixup_lat, (void)HD;
    while (sweep_next(&sw)) {
        kn_dtype dt = (kn_dtype)sw.v[DT];
#ifdef ATTNSIM_HAVE_CUDA
        if (cuda && sw.changed <= HD) { /* the model's parameters of this dtype and d */
            kn_dec_plan pl0 = kn_dec_make_plan((long long)o->batch, (long long)o->heads,
                                               (long long)o->kv_heads, (long long)sw.v[HD]);
            decode_measure_cta(&pl0, dt, &rate, &fixed, &fixup, &fixup_lat);
            printf("# model parameters (%s, d = %lld, %lld heads per unit): one CTA %.1f "
                   "GB/s, fixed cost %.2f us, a host's fix-up %.2f us + %.3f us per merged "
                   "partial\n",
                   kn_dtype_name(dt), pl0.d, pl0.group, rate / 1e9, 1e6 * fixed, 1e6 * fixup_lat,
                   1e6 * fixup);
        }
#endif
        if (sw.changed <= NL) { /* a new cache length (or dtype, d): a new problem */
            if (have_problem) problem_free(&p);
            problem_init(&p, o, sw.v[HD], sw.v[NL], dt);
            have_problem = 1;
        }
        int sc = (int)sw.v[SC];
        dec_result r;
        memset(&r, 0, sizeof r);
        r.scheme = (kn_dec_scheme)sc;
        r.times = kn_xcalloc(o->reps, sizeof(double), "timings");
        r.kv_bytes = kv_bytes_of(&p);
#ifdef ATTNSIM_HAVE_CUDA
        if (cuda) decode_run_cuda(&p, o, &r, equal_share, rate, fixed, fixup, fixup_lat);
#endif
        if (!cuda) {
            run_cpu(&p, o, &r);
            r.median = timing_median(r.times, o->reps);
        }
        kn_decode_stats st; /* the plan's bytes at the slots the run used */
        kn_decode_predict_bytes(&p.plan, r.scheme, r.slots, p.lens, p.dt, &r.pred_read,
                                &r.pred_written, &st);
        int counts_ok = cuda || (r.counted.bytes_read == r.pred_read &&
                                 r.counted.bytes_written == r.pred_written);
        char check[40] = "-     -", extra[48];
        if (r.checked)
            snprintf(check, sizeof check, "%-5s %.1e", r.check_passed ? "ok" : "FAIL",
                     r.max_rel_err);
        if (cuda)
            snprintf(extra, sizeof extra, "%10.2f %+7.1f", r.have_pred ? 1e6 * r.pred.time_s : NAN,
                     r.have_pred ? 100.0 * (r.pred.time_s - r.median) / r.median : NAN);
        else
            snprintf(extra, sizeof extra, "%10llu %7s", (unsigned long long)r.counted.bytes_read,
                     counts_ok ? "equal" : "DIFFER");
        printf("  %-14s %-5s %3lld %4lld %4lld %8zu %4lld %5lld %6lld %10.2f %9.1f %s %s\n",
               algo_names[sc], kn_dtype_name(p.dt), p.plan.b, p.plan.h, p.plan.h_kv, p.n_cap,
               p.plan.d, r.slots, r.splits, 1e6 * r.median, r.kv_bytes / r.median / 1e9, extra,
               check);
        fflush(stdout);
        attn_kill_point("kernels:before_write");
        if (h) write_run(h, &p, &r, o, device, ceiling, equal_share);
        attn_kill_point("kernels:after_write");
        runs++;
        good += counts_ok && (!r.checked || r.check_passed);
        free(r.times);
        progress_step(&prog, cache_bytes(o, dt, sw.v[HD], sw.v[NL]));
    }
    if (have_problem) problem_free(&p);
    progress_end(&prog);
    int ok = good == runs;
    printf("# %ld runs: %s\n", runs,
           ok ? (cuda ? "every kernel checked against the float64 reference before timing. VALID"
                      : (o->check ? "counted == predicted bytes in every run; every output "
                                    "matches the float64 reference. VALID"
                                  : "counted == predicted bytes in every run; outputs not "
                                    "checked (--check). VALID"))
              : "FAILED: see the rows marked FAIL or DIFFER. INVALID");
    char shown[4200];
    if (o->out)
        printf("# wrote %ld runs to %s\n", runs, outputs_display(o->out, shown, sizeof shown));
    return ok;
}
