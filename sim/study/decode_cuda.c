/* decode_cuda.c - the CUDA side of `attnsim kernels --decode` (see decode_study.h): the HBM read
 * probes, the decode model's parameters measured on one CTA and on Lean's fix-up, and one
 * checked, timed run of a decode kernel (a CUDA graph of back-to-back calls over rotated copies
 * of the K/V cache, so no call reads another's cache from L2). */
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "decode_study.h"
#include "fail.h"
#include "kc_attn.h"
#include "kernel_study.h"
#include "timing.h"

static void *dmalloc(size_t bytes)
{
    void *p = NULL;
    CUDACALL(cudaMalloc(&p, bytes ? bytes : 16));
    return p;
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

static void dev_launch(void *ctx, int i, void *st)
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

static void probe_launch(void *ctx, int i, void *st)
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
void decode_measure_reads(double *ceiling, double *equal_share)
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
    *ceiling = (double)p.bytes / timing_cuda_graph(probe_launch, &p, 3, 5, t);
    p.ceiling = 0;
    *equal_share = (double)p.bytes / timing_cuda_graph(probe_launch, &p, 3, 5, t);
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
    double t = timing_cuda_graph(dev_launch, &d, 20, 9, times);
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
void decode_measure_cta(const kn_dec_plan *pl, kn_dtype dt, double *rate, double *fixed,
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

void decode_run_cuda(dec_problem *p, const attn_opts *o, dec_result *r, double hbm, double cta_rate,
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
    decode_check_outputs(p, r);
    r->median = timing_cuda_graph(dev_launch, &d, 30, o->reps, r->times);
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
