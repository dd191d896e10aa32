/* overlap.c - how much of a transfer hides behind compute on this machine and transport
 * (calibrate.h; docs/calibration.md, "Overlap"): a ring step as the executor runs it (post the
 * shift, start it, compute a tile with the device's own kernel, wait), against the compute alone
 * and the transfer alone; its terminal table and its record in the kind=calibration run. */
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"
#include "comm_dev.h"
#include "fail.h"
#include "timing.h"

typedef struct {
    exec_ctx x;
    void *q, *k, *v;
    float *state;
    exec_pos qp, kp;
} tile_job;

static void tile_setup(const cal_env *e, tile_job *j, size_t n)
{
    memset(j, 0, sizeof *j);
    exec_ctx *x = &j->x;
    size_t heads = e->cuda ? 8 : 4, d = e->cuda ? 128 : 64;
    am_config c = {ALGO_RING, LAYOUT_CONTIGUOUS,         AM_FWD, 1, 1, 1, n, 1, heads, heads, d,
                   0,         e->cuda ? KN_BF16 : KN_F32};
    x->cfg = c;
    x->dtype = e->cuda ? KN_BF16 : KN_F32;
    x->sram = 32768;
    x->dev = e->dev;
    x->rank = e->rank;
    uint64_t *qh = kn_xmalloc(n * sizeof(uint64_t), "positions"),
             *kh = kn_xmalloc(n * sizeof(uint64_t), "positions");
    for (size_t i = 0; i < n; i++) qh[i] = kh[i] = i;
    j->qp = exec_pos_make(x, qh, n);
    j->kp = exec_pos_make(x, kh, n);
    size_t bytes = heads * n * d * kn_dtype_bytes(x->dtype);
    j->q = e->dev->alloc(bytes, "tile"), j->k = e->dev->alloc(bytes, "tile");
    j->v = e->dev->alloc(bytes, "tile");
    e->dev->zero(j->q, bytes), e->dev->zero(j->k, bytes), e->dev->zero(j->v, bytes);
    j->state = e->dev->alloc(state_floats(heads * n, d) * sizeof(float), "tile state");
}

static void tile_free(const cal_env *e, tile_job *j)
{
    e->dev->release(j->q), e->dev->release(j->k), e->dev->release(j->v);
    e->dev->release(j->state);
    exec_pos_free(&j->x, &j->qp), exec_pos_free(&j->x, &j->kp);
}

/* The tile's compute on this rank: begin mark, kernel, end mark (on a GPU, events). */
static void compute_begin(cal_env *e, double *t0)
{
    if (e->cuda)
        comm_dev_mark(&e->comm, 0);
    else
        *t0 = MPI_Wtime();
}

static double compute_end(cal_env *e, double t0, int synced)
{
    if (!e->cuda) return MPI_Wtime() - t0;
    comm_dev_mark(&e->comm, 1);
    if (!synced) e->dev->sync();
    return comm_dev_marked_s(&e->comm);
}

/* The tile alone: the median of reps calls after a warm-up (first touch of its buffers), the
 * slowest rank's. */
static double compute_alone(cal_env *e, tile_job *j, int reps)
{
    double t[16];
    polite_barrier();
    for (int r = -1; r < reps && r < 16; r++) {
        double t0 = 0;
        compute_begin(e, &t0);
        e->dev->tile_forward(&j->x, j->x.cfg.heads, j->x.cfg.kv_heads, j->q, &j->qp, j->k, j->v,
                             &j->kp, j->state, 0);
        if (e->cuda) comm_dev_mark(&e->comm, 1), e->dev->sync();
        if (r >= 0) t[r] = e->cuda ? comm_dev_marked_s(&e->comm) : MPI_Wtime() - t0;
    }
    double m = timing_median(t, (size_t)reps);
    MPICALL(MPI_Allreduce(MPI_IN_PLACE, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    return m;
}

overlap_meas measure_overlap(cal_env *e, int tier, const series *shift, uint64_t max_bytes)
{
    overlap_meas o;
    memset(&o, 0, sizeof o);
    int to, from;
    cal_tier_peers(e, tier, &to, &from);
    int active = to >= 0;
    MPICALL(MPI_Allreduce(MPI_IN_PLACE, &active, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (!active || !shift->ok) return o;
    /* a tile of a few milliseconds (CPU) or a fraction of one (GPU) */
    tile_job job;
    size_t n = e->cuda ? 1024 : 64;
    double want = e->cuda ? 5e-4 : 2e-3, tc = 0.0;
    for (;;) {
        tile_setup(e, &job, n);
        tc = compute_alone(e, &job, 5);
        if (tc >= want || n >= (e->cuda ? 16384u : 1024u)) break;
        tile_free(e, &job);
        n *= 2;
    }
    comm_ctx *c = &e->comm;
    char *sbuf = e->dev->alloc(max_bytes, "overlap buffer"),
         *rbuf = e->dev->alloc(max_bytes, "overlap buffer");
    e->dev->zero(sbuf, max_bytes);
    static const double ratios[3] = {0.3, 1.0, 3.0};
    double hid[3], rat[3];
    const int reps = 5;
    for (int i = 0; i < 3; i++) {
        /* a message whose transfer alone takes about ratios[i] of the compute */
        double b = (ratios[i] * tc - shift->fit.small.alpha) / shift->fit.small.beta;
        if (shift->fit.two_regimes && b >= shift->fit.break_x)
            b = (ratios[i] * tc - shift->fit.large.alpha) / shift->fit.large.beta;
        uint64_t bytes = b < 1024 ? 1024 : b > (double)max_bytes ? max_bytes : (uint64_t)b;
        MPICALL(MPI_Bcast(&bytes, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD));
        if (o.n && bytes == (uint64_t)o.bytes[o.n - 1]) continue;
        double txs[8], tss[8], tcs[8];
        polite_barrier();
        for (int r = 0; r < reps + 1; r++) { /* the transfer alone (the first: warm-up) */
            double t0 = MPI_Wtime();
            if (to >= 0) comm_sendrecv(c, c->world, to, sbuf, bytes, from, rbuf, bytes);
            if (r) txs[r - 1] = MPI_Wtime() - t0;
        }
        polite_barrier();
        for (int r = 0; r < reps + 1; r++) { /* the step: transfer in flight, compute, wait */
            MPICALL(MPI_Barrier(MPI_COMM_WORLD));
            double t0 = MPI_Wtime(), c0 = 0;
            comm_reqs q = {.n = 0};
            if (to >= 0) {
                comm_irecv(c, &q, c->world, from, rbuf, bytes);
                comm_isend(c, &q, c->world, to, sbuf, bytes);
                comm_start(c, &q);
            }
            compute_begin(e, &c0);
            job.x.dev->tile_forward(&job.x, job.x.cfg.heads, job.x.cfg.kv_heads, job.q, &job.qp,
                                    job.k, job.v, &job.kp, job.state, 0);
            double cd = 0;
            if (!e->cuda) cd = compute_end(e, c0, 0);
            if (e->cuda) comm_dev_mark(c, 1);
            comm_waitall(c, &q);
            e->dev->sync();
            if (e->cuda) cd = comm_dev_marked_s(c);
            if (r) tss[r - 1] = MPI_Wtime() - t0, tcs[r - 1] = cd;
        }
        /* medians of the repetitions: a descheduled one moves none of them */
        double v[3] = {timing_median(txs, reps), timing_median(tss, reps),
                       timing_median(tcs, reps)};
        MPICALL(MPI_Allreduce(MPI_IN_PLACE, v, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
        o.bytes[o.n] = (double)bytes, o.transfer_s[o.n] = v[0], o.step_s[o.n] = v[1];
        o.compute_during_s[o.n] = v[2], o.compute_s[o.n] = tc;
        double shorter = v[2] < v[0] ? v[2] : v[0];
        double h = (v[2] + v[0] - v[1]) / shorter;
        hid[o.n] = h < 0 ? 0 : h > 1 ? 1 : h;
        rat[o.n] = v[2] / tc;
        o.n++;
    }
    e->dev->release(sbuf), e->dev->release(rbuf);
    tile_free(e, &job);
    gsl_sort(hid, 1, (size_t)o.n);
    gsl_sort(rat, 1, (size_t)o.n);
    o.hidden = gsl_stats_median_from_sorted_data(hid, 1, (size_t)o.n);
    /* a compute beside a transfer is never faster than alone: a ratio below 1 is ranks sharing
     * cores (oversubscribed, or a busy machine) that computed at different times here */
    o.ratio = fmax(gsl_stats_median_from_sorted_data(rat, 1, (size_t)o.n), 1.0);
    o.ok = o.n > 0;
    return o;
}

void print_overlap(const overlap_meas ovl[2])
{
    printf("# overlap: a ring step computing while its transfer runs (post, compute a tile of "
           "the device's kernel, wait) against each alone; hidden: the share of "
           "min(compute, transfer) hidden; compute_ratio: compute beside the transfer over "
           "alone\n");
    printf("# %-5s %10s %10s %11s %10s %17s %7s %13s\n", "tier", "message_B", "compute_ms",
           "transfer_ms", "step_ms", "compute_during_ms", "hidden", "compute_ratio");
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < ovl[t].n; k++) {
            double shorter = fmin(ovl[t].compute_during_s[k], ovl[t].transfer_s[k]);
            double h =
                (ovl[t].compute_during_s[k] + ovl[t].transfer_s[k] - ovl[t].step_s[k]) / shorter;
            printf("  %-5s %10.0f %10.3f %11.3f %10.3f %17.3f %7.2f %13.2f\n",
                   t ? "inter" : "intra", ovl[t].bytes[k], ovl[t].compute_s[k] * 1e3,
                   ovl[t].transfer_s[k] * 1e3, ovl[t].step_s[k] * 1e3,
                   ovl[t].compute_during_s[k] * 1e3,
                   h < 0   ? 0
                   : h > 1 ? 1
                           : h,
                   ovl[t].compute_during_s[k] / ovl[t].compute_s[k]);
        }
    for (int t = 0; t < 2; t++)
        if (ovl[t].ok)
            printf("# overlap.%s.hidden = %.2f, overlap.compute_ratio = %.2f (medians; a ratio "
                   "below 1 is written as 1)\n",
                   t ? "inter" : "intra", ovl[t].hidden, ovl[t].ratio);
        else
            printf("# overlap %s: not measured (no pair of ranks)\n", t ? "inter" : "intra");
}

void write_overlap(h5node *g, const overlap_meas ovl[2])
{
    for (int t = 0; t < 2; t++) {
        if (!ovl[t].ok) continue;
        char p[96];
        hsize_t n = (hsize_t)ovl[t].n;
        const char *tn = t ? "inter" : "intra";
        snprintf(p, sizeof p, "overlap/%s/bytes", tn);
        h5_write(g, p, H5_F64, 1, &n, ovl[t].bytes, "bytes");
        snprintf(p, sizeof p, "overlap/%s/transfer_s", tn);
        h5_write(g, p, H5_F64, 1, &n, ovl[t].transfer_s, "s");
        snprintf(p, sizeof p, "overlap/%s/step_s", tn);
        h5_write(g, p, H5_F64, 1, &n, ovl[t].step_s, "s");
        snprintf(p, sizeof p, "overlap/%s/compute_during_s", tn);
        h5_write(g, p, H5_F64, 1, &n, ovl[t].compute_during_s, "s");
        snprintf(p, sizeof p, "overlap/%s", tn);
        h5node *og = h5_member(g, p);
        h5_attr_f64(og, "compute_s", ovl[t].compute_s[0]);
        h5_attr_f64(og, "hidden", ovl[t].hidden);
        h5_attr_f64(og, "compute_ratio", ovl[t].ratio);
    }
}
