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
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "decode.h"
#include "fail.h"
#include "h5out.h"
#include "outputs.h"
#include "kernel_study.h"
#include "kn_attn_decode.h"
#include "ref_f64.h"
#ifdef ATTNSIM_HAVE_CUDA
#include <cuda_runtime.h>

#include "kc_attn.h"
#endif

static const char *const algo_names[3] = {"fa2-decode", "flash-decoding", "lean"};

/* The CPU has no co-resident CTAs: the schedules run with this many (an H100's 132 SMs x 2). */
#define CPU_SLOTS 264

typedef struct {
    kn_dec_plan plan;
    kn_dtype dt;
    int *lens;
    size_t n_cap;
    kn_decode_io io;
    double *ro, *rlse; /* float64 reference */
} dec_problem;

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

typedef struct {
    kn_dec_scheme scheme;
    long long slots, splits;
    double *times; /* reps, sorted after the run */
    double median;
    kn_counters counted; /* cpu */
    uint64_t pred_read, pred_written;
    double kv_bytes;
    int checked, check_passed;
    double max_abs_err, max_rel_err;
    kdm_prediction pred; /* cuda */
    int have_pred;
    kdm_params params;
} dec_result;

/* O against the reference (relative to max |O|, the storage type's tolerance) and LSE
 * (absolute 2e-3; -inf exactly where the reference has it); nothing NaN. */
static void check_outputs(dec_problem *p, dec_result *r)
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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
        double t0 = now_s();
        kn_decode(&p->plan, r->scheme, r->slots, &p->io, &c, &st);
        r->times[rep] = now_s() - t0;
        if (rep == 0) r->counted = c;
    }
    r->splits = st.splits;
    if (o->check) check_outputs(p, r);
}

#ifdef ATTNSIM_HAVE_CUDA
static void *dmalloc(size_t bytes)
{
    void *p = NULL;
    CUDACALL(cudaMalloc(&p, bytes ? bytes : 16));
    return p;
}

/* Median seconds per call of `calls` launches of fn(i) captured in one graph, over `reps`
 * replays (times[] gets each replay's per-call time). */
typedef void (*launch_fn)(void *ctx, int i, cudaStream_t st);
static double graph_time(launch_fn fn, void *ctx, int calls, uint64_t reps, double *times)
{
    cudaStream_t st;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    cudaEvent_t a, b;
    CUDACALL(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    for (int i = 0; i < 2; i++) fn(ctx, i, st); /* warm-up outside the graph */
    CUDACALL(cudaStreamSynchronize(st));
    CUDACALL(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < calls; i++) fn(ctx, i, st);
    CUDACALL(cudaStreamEndCapture(st, &graph));
    CUDACALL(cudaGraphInstantiate(&exec, graph, 0));
    CUDACALL(cudaGraphLaunch(exec, st));
    CUDACALL(cudaEventCreate(&a));
    CUDACALL(cudaEventCreate(&b));
    for (uint64_t r = 0; r < reps; r++) {
        CUDACALL(cudaEventRecord(a, st));
        CUDACALL(cudaGraphLaunch(exec, st));
        CUDACALL(cudaEventRecord(b, st));
        CUDACALL(cudaEventSynchronize(b));
        float ms = 0;
        CUDACALL(cudaEventElapsedTime(&ms, a, b));
        times[r] = 1e-3 * ms / calls;
    }
    CUDACALL(cudaEventDestroy(a));
    CUDACALL(cudaEventDestroy(b));
    CUDACALL(cudaGraphExecDestroy(exec));
    CUDACALL(cudaGraphDestroy(graph));
    CUDACALL(cudaStreamDestroy(st));
    double *s = kn_xmalloc(reps * sizeof(double), "timings");
    memcpy(s, times, reps * sizeof(double));
    qsort(s, reps, sizeof(double), cmp_double);
    double m = s[reps / 2];
    free(s);
    return m;
}

typedef struct {
    kc_dec_shape ks;
    int scheme, slots, max_len, copies;
    int uniform; /* every sequence holds max_len tokens: launched with lens = NULL */
    void **q, **k, **v;
    void *o, *ws;
    float *lse;
    int *lens;
} dev_problem;

static void dev_launch(void *ctx, int i, cudaStream_t st)
{
    dev_problem *d = ctx;
    int c = i % d->copies;
    CUDACALL(kc_decode(&d->ks, d->scheme, d->q[c], d->k[c], d->v[c], d->uniform ? NULL : d->lens,
                       d->max_len, d->o, d->lse, d->ws, d->slots, st));
}

typedef struct {
    void *buf;
    size_t bytes;
    float *sink;
    unsigned *sum;
    int ceiling; /* kc_read_ceiling_probe, else kc_read_bandwidth_probe */
} probe_ctx;

static void probe_launch(void *ctx, int i, cudaStream_t st)
{
    (void)i;
    probe_ctx *p = ctx;
    if (p->ceiling)
        CUDACALL(kc_read_ceiling_probe(p->buf, p->bytes, p->sum, st));
    else
        CUDACALL(kc_read_bandwidth_probe(p->buf, p->bytes, p->sink, st));
}

/* Streaming reads of min(2 GiB, free / 4) bytes: the HBM read ceiling (SMs take chunks as they
 * free) and the rate of a grid of equal shares (the decode model's HBM rate). */
static void measure_reads(double *ceiling, double *equal_share)
{
    probe_ctx p;
    p.bytes = (size_t)ks_cuda_free_bytes() / 4;
    if (p.bytes > ((size_t)2 << 30)) p.bytes = (size_t)2 << 30;
    p.bytes &= ~(size_t)4095;
    p.buf = dmalloc(p.bytes);
    p.sink = dmalloc(sizeof(float));
    p.sum = dmalloc(sizeof(unsigned));
    CUDACALL(cudaMemset(p.buf, 1, p.bytes));
    CUDACALL(cudaMemset(p.sum, 0, sizeof(unsigned)));
    double t[5];
    p.ceiling = 1;
    *ceiling = (double)p.bytes / graph_time(probe_launch, &p, 3, 5, t);
    p.ceiling = 0;
    *equal_share = (double)p.bytes / graph_time(probe_launch, &p, 3, 5, t);
    CUDACALL(cudaFree(p.buf));
    CUDACALL(cudaFree(p.sink));
    CUDACALL(cudaFree(p.sum));
}

/* Lean on a one-unit problem (the plan's head group, zero data) of `tiles` tiles over `ctas`
 * CTAs: the median seconds per call. */
static double time_one_unit(const kn_dec_plan *pl, kn_dtype dt, int tiles, int ctas)
{
    dev_problem d;
    memset(&d, 0, sizeof d);
    long long n = tiles * pl->tile;
    d.ks = (kc_dec_shape){(int)dt, 1, (size_t)pl->group, 1, (size_t)pl->d, (size_t)n};
    d.scheme = KN_DEC_LEAN;
    d.slots = ctas;
    d.max_len = (int)n;
    d.copies = 1;
    d.uniform = 1; /* launched as the runs of uniform caches are (lens = NULL) */
    size_t kvb = (size_t)n * (size_t)pl->d * kn_dtype_bytes(dt);
    size_t qb = (size_t)pl->group * (size_t)pl->d * kn_dtype_bytes(dt);
    void *q = dmalloc(qb), *k = dmalloc(kvb), *v = dmalloc(kvb);
    CUDACALL(cudaMemset(q, 0, qb));
    CUDACALL(cudaMemset(k, 0, kvb));
    CUDACALL(cudaMemset(v, 0, kvb));
    d.q = &q;
    d.k = &k;
    d.v = &v;
    d.o = dmalloc(qb);
    d.lse = dmalloc((size_t)pl->group * sizeof(float));
    d.lens = dmalloc(sizeof(int));
    CUDACALL(cudaMemcpy(d.lens, &d.max_len, sizeof(int), cudaMemcpyHostToDevice));
    size_t wsb = kc_decode_workspace_bytes(&d.ks, KN_DEC_LEAN, ctas, d.max_len);
    d.ws = dmalloc(wsb);
    CUDACALL(cudaMemset(d.ws, 0, wsb));
    double times[9];
    double t = graph_time(dev_launch, &d, 20, 9, times);
    CUDACALL(cudaFree(q));
    CUDACALL(cudaFree(k));
    CUDACALL(cudaFree(v));
    CUDACALL(cudaFree(d.o));
    CUDACALL(cudaFree(d.lse));
    CUDACALL(cudaFree(d.lens));
    CUDACALL(cudaFree(d.ws));
    return t;
}

/* The decode model's per-device parameters besides the ceiling, from Lean on one-unit
 * problems: one CTA over 8 and 72 tiles gives one CTA's streaming rate (the slope) and the
 * fixed cost of a call (the intercept); 2 CTAs over 2 tiles (the host merges 1 partial) and 32
 * CTAs over 32 tiles (31 partials), against the one-CTA line at one tile, give the cost of one
 * merged partial (the slope) and the latency of a host's fix-up (what is left at one). */
static void measure_cta(const kn_dec_plan *pl, kn_dtype dt, double *rate, double *fixed,
                        double *fixup, double *fixup_latency)
{
    const double tile_bytes = 2.0 * (double)pl->tile * (double)pl->d * (double)kn_dtype_bytes(dt);
    double t8 = time_one_unit(pl, dt, 8, 1), t72 = time_one_unit(pl, dt, 72, 1);
    double t2 = time_one_unit(pl, dt, 2, 2), t32 = time_one_unit(pl, dt, 32, 32);
    *rate = 64.0 * tile_bytes / (t72 - t8);
    *fixed = t8 - 8.0 * tile_bytes / *rate;
    if (*fixed < 0) *fixed = 0;
    *fixup = (t32 - t2) / 30.0;
    if (*fixup < 0) *fixup = 0;
    *fixup_latency = t2 - (*fixed + tile_bytes / *rate) - *fixup;
    if (*fixup_latency < 0) *fixup_latency = 0;
}

static void run_cuda(dec_problem *p, const attn_opts *o, dec_result *r, double hbm, double cta_rate,
                     double fixed, double fixup, double fixup_latency)
{
    dev_problem d;
    memset(&d, 0, sizeof d);
    d.ks = (kc_dec_shape){(int)p->dt,           (size_t)p->plan.b, (size_t)p->plan.h,
                          (size_t)p->plan.h_kv, (size_t)p->plan.d, p->n_cap};
    d.scheme = (int)r->scheme;
    CUDACALL(kc_decode_slots((int)p->dt, (size_t)p->plan.d, &d.slots));
    if (o->slots) d.slots = (int)o->slots; /* validated: at most the device's */
    r->slots = d.slots;
    for (long long i = 0; i < p->plan.b; i++)
        if (p->lens[i] > d.max_len) d.max_len = p->lens[i];
    d.uniform = 1;
    for (long long i = 0; i < p->plan.b; i++) d.uniform &= p->lens[i] == d.max_len;
    r->splits = r->scheme == KN_DEC_SPLIT ? kc_decode_splits(&d.ks, d.slots, d.max_len) : 1;
    /* copies of the cache rotated so none is in L2 when read: 4 x 50 MiB at least, within a
     * third of the free memory */
    const size_t qb = p->io.q.elems * kn_dtype_bytes(p->dt);
    const size_t kvb = p->io.k.elems * kn_dtype_bytes(p->dt);
    int dev;
    CUDACALL(cudaGetDevice(&dev));
    int l2 = 0;
    CUDACALL(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    size_t want = (4 * (size_t)l2 + 2 * kvb - 1) / (2 * kvb);
    size_t fit = (size_t)ks_cuda_free_bytes() / 3 / (2 * kvb + qb);
    d.copies = (int)(want < 1 ? 1 : want);
    if ((size_t)d.copies > fit) d.copies = fit > 0 ? (int)fit : 1;
    d.q = kn_xmalloc(d.copies * sizeof(void *), "decode copies");
    d.k = kn_xmalloc(d.copies * sizeof(void *), "decode copies");
    d.v = kn_xmalloc(d.copies * sizeof(void *), "decode copies");
    for (int c = 0; c < d.copies; c++) {
        d.q[c] = dmalloc(qb);
        d.k[c] = dmalloc(kvb);
        d.v[c] = dmalloc(kvb);
        CUDACALL(cudaMemcpy(d.q[c], p->io.q.data, qb, cudaMemcpyHostToDevice));
        CUDACALL(cudaMemcpy(d.k[c], p->io.k.data, kvb, cudaMemcpyHostToDevice));
        CUDACALL(cudaMemcpy(d.v[c], p->io.v.data, kvb, cudaMemcpyHostToDevice));
    }
    d.o = dmalloc(qb);
    d.lse = dmalloc(p->io.lse.elems * sizeof(float));
    d.lens = dmalloc((size_t)p->plan.b * sizeof(int));
    CUDACALL(cudaMemcpy(d.lens, p->lens, (size_t)p->plan.b * sizeof(int), cudaMemcpyHostToDevice));
    size_t wsb = kc_decode_workspace_bytes(&d.ks, d.scheme, d.slots, d.max_len);
    d.ws = dmalloc(wsb);
    CUDACALL(cudaMemset(d.ws, 0, wsb));
    /* checked before timed: poison the outputs, one call, compare */
    CUDACALL(cudaMemset(d.o, 0xff, qb));
    CUDACALL(cudaMemset(d.lse, 0xff, p->io.lse.elems * sizeof(float)));
    dev_launch(&d, 0, 0);
    CUDACALL(cudaDeviceSynchronize());
    CUDACALL(cudaMemcpy(p->io.o.data, d.o, qb, cudaMemcpyDeviceToHost));
    CUDACALL(
        cudaMemcpy(p->io.lse.data, d.lse, p->io.lse.elems * sizeof(float), cudaMemcpyDeviceToHost));
    check_outputs(p, r);
    r->median = graph_time(dev_launch, &d, 30, o->reps, r->times);
    for (int c = 0; c < d.copies; c++) {
        CUDACALL(cudaFree(d.q[c]));
        CUDACALL(cudaFree(d.k[c]));
        CUDACALL(cudaFree(d.v[c]));
    }
    free(d.q);
    free(d.k);
    free(d.v);
    CUDACALL(cudaFree(d.o));
    CUDACALL(cudaFree(d.lse));
    CUDACALL(cudaFree(d.lens));
    CUDACALL(cudaFree(d.ws));
    r->params = (kdm_params){hbm, cta_rate, fixed, fixup, fixup_latency};
    r->have_pred = kdm_predict(&p->plan, p->lens, r->scheme, r->slots, kn_dtype_bytes(p->dt),
                               &r->params, &r->pred) == 0;
}
#endif

static void write_run(h5out *h, const dec_problem *p, const dec_result *r, const attn_opts *o,
                      const char *device, double ceiling, double equal_share)
{
    const int cuda = o->backend == BACKEND_CUDA;
    int64_t id;
    hid_t g = h5out_run_begin(h, &id);
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
    h5_write(g, "measured/time_s", H5T_NATIVE_DOUBLE, 0, NULL, &r->median, "s");
    h5_write(g, "measured/time_s_reps", H5T_NATIVE_DOUBLE, 1, &nreps, r->times, "s");
    double flops = 4.0 * (r->kv_bytes / 2.0 / (double)kn_dtype_bytes(p->dt)) *
                   (double)p->plan.g; /* 4 d per (query head, key) */
    v = (int64_t)flops;
    h5_write(g, "measured/flops", H5T_NATIVE_INT64, 0, NULL, &v, "flop");
    if (!cuda) {
        v = (int64_t)r->counted.bytes_read;
        h5_write(g, "measured/hbm_bytes_read", H5T_NATIVE_INT64, 0, NULL, &v, "bytes");
        v = (int64_t)r->counted.bytes_written;
        h5_write(g, "measured/hbm_bytes_written", H5T_NATIVE_INT64, 0, NULL, &v, "bytes");
        h5_attr_i64(g, "counts_match",
                    r->counted.bytes_read == r->pred_read &&
                        r->counted.bytes_written == r->pred_written);
    }
    v = (int64_t)r->pred_read;
    h5_write(g, "predicted/hbm_bytes_read", H5T_NATIVE_INT64, 0, NULL, &v, "bytes");
    v = (int64_t)r->pred_written;
    h5_write(g, "predicted/hbm_bytes_written", H5T_NATIVE_INT64, 0, NULL, &v, "bytes");
    double pt = r->have_pred ? r->pred.time_s : NAN;
    h5_write(g, "predicted/time_s", H5T_NATIVE_DOUBLE, 0, NULL, &pt, "s");
    hid_t ds = H5CALL(H5Dopen2(g, "predicted/time_s", H5P_DEFAULT));
    if (r->have_pred) {
        char note[400];
        snprintf(note, sizeof note,
                 "decode model (models/decode.c) with parameters measured in this invocation: "
                 "HBM %.4g B/s, one CTA %.4g B/s, fixed cost %.3g s per launch, a Lean "
                 "host's fix-up %.3g s + %.3g s per partial it merges",
                 r->params.hbm_bw, r->params.cta_rate, r->params.launch_s,
                 r->params.fixup_latency_s, r->params.fixup_s);
        h5_attr_str(ds, "note", note);
        h5_write(g, "predicted/floor_time_s", H5T_NATIVE_DOUBLE, 0, NULL, &r->pred.floor_s, "s");
        v = r->pred.busiest_tiles;
        h5_write(g, "predicted/busiest_cta_tiles", H5T_NATIVE_INT64, 0, NULL, &v, "tiles");
    } else {
        h5_attr_str(ds, "note",
                    "NaN: on the cpu backend the decode model has no GPU parameters to use");
    }
    H5CALL(H5Dclose(ds));

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

int kd_study(const attn_opts *o, unsigned schemes, h5out *h, const char *device)
{
    const int cuda = o->backend == BACKEND_CUDA;
    const cli_u64_list *lens = o->seq_kv.n ? &o->seq_kv : &o->seq;
    double ceiling = NAN, equal_share = NAN;
#ifdef ATTNSIM_HAVE_CUDA
    if (cuda) measure_reads(&ceiling, &equal_share);
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
    for (int dt = 0; dt < KN_NUM_DTYPES; dt++) {
        if (!(o->dtypes & (1u << dt))) continue;
        for (size_t di = 0; di < o->head_dim.n; di++) {
            kn_dec_plan pl0 =
                kn_dec_make_plan((long long)o->batch, (long long)o->heads, (long long)o->kv_heads,
                                 (long long)o->head_dim.v[di]);
            double rate = NAN, fixed = NAN, fixup = NAN, fixup_lat = NAN;
            (void)pl0, (void)rate, (void)fixed, (void)fixup, (void)fixup_lat; /* cuda only */
#ifdef ATTNSIM_HAVE_CUDA
            if (cuda) {
                measure_cta(&pl0, (kn_dtype)dt, &rate, &fixed, &fixup, &fixup_lat);
                printf("# model parameters (%s, d = %lld, %lld heads per unit): one CTA %.1f "
                       "GB/s, fixed cost %.2f us, a host's fix-up %.2f us + %.3f us per merged "
                       "partial\n",
                       kn_dtype_name((kn_dtype)dt), pl0.d, pl0.group, rate / 1e9, 1e6 * fixed,
                       1e6 * fixup_lat, 1e6 * fixup);
            }
#endif
            for (size_t ni = 0; ni < lens->n; ni++) {
                dec_problem p;
                problem_init(&p, o, o->head_dim.v[di], lens->v[ni], (kn_dtype)dt);
                for (int sc = 0; sc < 3; sc++) {
                    if (!(schemes & (1u << sc))) continue;
                    dec_result r;
                    memset(&r, 0, sizeof r);
                    r.scheme = (kn_dec_scheme)sc;
                    r.times = kn_xcalloc(o->reps, sizeof(double), "timings");
                    r.kv_bytes = kv_bytes_of(&p);
#ifdef ATTNSIM_HAVE_CUDA
                    if (cuda) run_cuda(&p, o, &r, equal_share, rate, fixed, fixup, fixup_lat);
#endif
                    if (!cuda) {
                        run_cpu(&p, o, &r);
                        qsort(r.times, o->reps, sizeof(double), cmp_double);
                        r.median = r.times[o->reps / 2];
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
                        snprintf(extra, sizeof extra, "%10.2f %+7.1f",
                                 r.have_pred ? 1e6 * r.pred.time_s : NAN,
                                 r.have_pred ? 100.0 * (r.pred.time_s - r.median) / r.median : NAN);
                    else
                        snprintf(extra, sizeof extra, "%10llu %7s",
                                 (unsigned long long)r.counted.bytes_read,
                                 counts_ok ? "equal" : "DIFFER");
                    printf("  %-14s %-5s %3lld %4lld %4lld %8zu %4lld %5lld %6lld %10.2f %9.1f "
                           "%s %s\n",
                           algo_names[sc], kn_dtype_name(p.dt), p.plan.b, p.plan.h, p.plan.h_kv,
                           p.n_cap, p.plan.d, r.slots, r.splits, 1e6 * r.median,
                           r.kv_bytes / r.median / 1e9, extra, check);
                    fflush(stdout);
                    attn_kill_point("kernels:before_write");
                    if (h) write_run(h, &p, &r, o, device, ceiling, equal_share);
                    attn_kill_point("kernels:after_write");
                    runs++;
                    good += counts_ok && (!r.checked || r.check_passed);
                    free(r.times);
                }
                problem_free(&p);
            }
        }
    }
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
